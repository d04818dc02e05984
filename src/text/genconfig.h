/* Generation defaults: the sampling parameters a model's authors recommend, from a Hugging Face
 * checkpoint's generation_config.json or from a GGUF's general.sampling.* metadata (llama.cpp's
 * keys), and written back into a GGUF by the converter. Only the values a file states are
 * applied, over whatever the q3_sampling already holds, as vLLM does. */
#ifndef Q3_GENCONFIG_H
#define Q3_GENCONFIG_H

#include "formats/gguf.h"
#include "text/sampler.h"

/* For a checkpoint directory: reads temperature, top_k, top_p, min_p, repetition_penalty and
 * do_sample (false means greedy: temperature 0) from model_path/generation_config.json into s.
 * A path that is not a directory, or a directory without the file: Q3_OK, s untouched.
 * Malformed JSON, a value of the wrong type or out of range: Q3_EFORMAT naming the file. */
q3_status q3_genconfig_load(const char *model_path, q3_sampling *s, q3_error *e);

/* Reads general.sampling.{temp,top_k,top_p,min_p,penalty_repeat,penalty_last_n}, those present,
 * into s. Q3_EFORMAT naming the key when one is not a number or is out of range. */
q3_status q3_genconfig_from_gguf(const q3_gguf *g, q3_sampling *s, q3_error *e);

/* Writes s as general.sampling.* keys: temp, top_k and top_p always; min_p when it is on;
 * penalty_repeat, with penalty_last_n, when the repetition penalty is on. Meant for a model that
 * has a generation config: for one without, writing nothing leaves each runtime's defaults. */
q3_status q3_genconfig_to_gguf(q3_gguf_writer *w, const q3_sampling *s, q3_error *e);

#endif
