/* What the subcommands share: finding the model to use, parsing lists, printing errors. */
#ifndef Q3_CLI_COMMON_H
#define Q3_CLI_COMMON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* The bundled demo model, looked up beside the working directory and beside the binary. */
#define Q3_DEMO_MODEL "models/qwen3-moe-demo-py.gguf"

/* The model path: the -m argument if given, else $Q3_MODEL, else the bundled demo model.
 * Returns NULL (after printing why) when none is found. */
const char *q3_cli_model_path(const char *arg);
/* Parses "17,300,4" into a malloc'd array; prints an error naming `what` and returns false on
 * bad input. */
bool q3_cli_parse_ids(const char *s, const char *what, int32_t **out, int *n);
/* Parses a positive integer option value; prints an error naming the option on failure. */
bool q3_cli_parse_int(const char *s, const char *option, long min, long max, long *out);


#include "cli/rope_options.h"
#include "q3moe.h"
#include "text/sampler.h"
#include "text/tokenizer.h"

/* What generation needs, opened from one path: the model (loaded with opts, which may be NULL),
 * its tokenizer (from the GGUF file or the checkpoint directory's tokenizer.json) and the
 * sampling defaults the model ships with (generation_config.json or GGUF general.sampling.*).
 * Prints the error and returns false. */
bool q3_cli_open_model(const char *path, const q3_load_options *opts, q3_model **m, q3_tokenizer **tok,
                       q3_sampling *defaults);

/* How a model-running command loads its model (run, chat, serve, bench, logits, perplexity):
 * where it computes (--device, --cpu-experts, --gpu-experts), the weights' layout (--repack) and RoPE scaling
 * (cli/rope_options.h): their long options, usage line, and one parser into load options. */
#define Q3_DEVICE_OPTIONS_USAGE "[--device cpu|cuda] [--cpu-experts] [--gpu-experts N] [--repack|--no-repack]"
#define Q3_LOAD_OPTIONS_USAGE Q3_DEVICE_OPTIONS_USAGE " " Q3_ROPE_OPTIONS_USAGE
enum { Q3_OPT_DEVICE = 700, Q3_OPT_CPU_EXPERTS, Q3_OPT_GPU_EXPERTS, Q3_OPT_REPACK, Q3_OPT_NO_REPACK };
#define Q3_LOAD_LONG_OPTIONS                                                                     \
    {"device", required_argument, 0, Q3_OPT_DEVICE}, {"cpu-experts", no_argument, 0, Q3_OPT_CPU_EXPERTS}, \
        {"gpu-experts", required_argument, 0, Q3_OPT_GPU_EXPERTS}, {"repack", no_argument, 0, Q3_OPT_REPACK}, \
        {"no-repack", no_argument, 0, Q3_OPT_NO_REPACK}, Q3_ROPE_LONG_OPTIONS
/* Handles getopt result ch: 0 when it was a load option and valid, 1 (after printing why) when
 * it was one and invalid, -1 when it is not one. */
int q3_cli_parse_load_option(q3_load_options *o, int ch, const char *arg);

/* The whole file, NUL-terminated (*len without the NUL; len may be NULL), or NULL after
 * printing why, naming the file. The caller frees. */
char *q3_cli_read_file(const char *path, size_t *len);
/* A KV cache type by name: f16, bf16 or f32. Prints an error naming option and returns false. */
bool q3_cli_parse_kv_type(const char *s, const char *option, q3_type *out);

/* Turns the escapes \n \t \r \\ \" \' in s into their characters, in place (llama.cpp's -p
 * convention); cannot fail. */
void q3_cli_unescape(char *s);

#endif
