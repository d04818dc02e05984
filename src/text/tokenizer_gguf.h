/* A Hugging Face tokenizer as GGUF metadata, for the exporter (model/export.c) and tests. */
#ifndef Q3_TOKENIZER_GGUF_H
#define Q3_TOKENIZER_GGUF_H

#include "formats/gguf.h"

/* Tokenizer metadata (tokenizer.ggml.*) from a Hugging Face tokenizer.json, as llama.cpp's
 * converter writes it: tokens padded with [PADn] up to vocab_size (the embedding's rows), token
 * types, merges, special ids, and the chat template from tokenizer_config.json when that path
 * is not NULL. bos_id is config.json's bos_token_id (-1: none). */
q3_status q3_tokenizer_json_to_gguf(q3_gguf_writer *w, const char *tokenizer_json,
                                    const char *tokenizer_config_json, int vocab_size, int bos_id,
                                    q3_error *e);

#endif
