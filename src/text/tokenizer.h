/* The Qwen2/Qwen3 tokenizer: byte-level BPE as Hugging Face tokenizers runs it.
 *
 * Encoding splits the added tokens ("<|im_start|>", "<think>", ...) out of the text first
 * (leftmost, longest match), NFC-normalises the rest, cuts it into words with the pre-tokenizer
 * regex, maps each word's bytes to GPT-2's printable byte alphabet and merges adjacent symbols
 * by merge rank until no merge applies. Decoding concatenates the tokens' bytes; the streaming
 * decoder holds back the bytes of a character that is not complete yet.
 *
 * The vocabulary comes from a tokenizer.json or from a GGUF's tokenizer.ggml.* metadata (the
 * llama.cpp layout). A loaded tokenizer is read-only: any number of threads may encode and
 * decode with it at once. */
#ifndef Q3_TOKENIZER_H
#define Q3_TOKENIZER_H

#include "base/error.h"
#include "formats/gguf.h"

typedef struct q3_tokenizer q3_tokenizer;
typedef struct q3_chat_template q3_chat_template; /* text/chat.h */

/* path: a GGUF file, a tokenizer.json, or a directory holding tokenizer.json. */
q3_status q3_tok_load(q3_tokenizer **out, const char *path, q3_error *e);
/* Reads tokenizer.ggml.* from a GGUF already open (the model loader's); g may be closed
 * afterwards, the tokenizer keeps copies. */
q3_status q3_tok_load_gguf(q3_tokenizer **out, const q3_gguf *g, q3_error *e);
q3_status q3_tok_load_json(q3_tokenizer **out, const char *path, q3_error *e);
/* Frees NULL happily; cannot fail. */
void q3_tok_free(q3_tokenizer *tok);

/* Encodes len bytes of UTF-8 text into *ids (malloc'd, the caller frees; NULL when empty).
 * parse_special false leaves the special (control) tokens such as "<|im_end|>" as plain text,
 * to be BPE-encoded like any other; added tokens that are not special ("<think>",
 * "<tool_call>") are still recognised, as Hugging Face and llama.cpp do.
 * Invalid UTF-8 is Q3_EINVAL naming the byte offset. */
q3_status q3_tok_encode(const q3_tokenizer *tok, const char *text, size_t len, bool parse_special,
                        int32_t **ids, int *n_ids, q3_error *e);
/* Concatenates the bytes of n tokens into *text (malloc'd and NUL-terminated, the caller
 * frees; *len excludes the NUL). Special tokens give their text. The bytes are returned as
 * they are: ids that cut a character in two give invalid UTF-8 (the stream decoder does not).
 * An id outside the vocabulary is Q3_EINVAL. */
q3_status q3_tok_decode(const q3_tokenizer *tok, const int32_t *ids, int n, char **text,
                        size_t *len, q3_error *e);

/* Streaming decode: push ids as they are sampled and get back only whole UTF-8 characters.
 * The bytes of a character cut by a token boundary wait in the state for the next push.
 * Bytes that can never form a character become U+FFFD, so the output is always valid UTF-8. */
typedef struct q3_tok_stream {
    unsigned char pending[4]; /* the start of an incomplete character */
    int n_pending;
} q3_tok_stream;

/* Cannot fail. */
void q3_tok_stream_init(q3_tok_stream *s);
/* Writes the characters completed by token id to out (no NUL), *out_len bytes. cap must be at
 * least q3_tok_stream_cap(tok); Q3_EINVAL for a bad id or a smaller cap. */
q3_status q3_tok_stream_push(const q3_tokenizer *tok, q3_tok_stream *s, int32_t id, char *out,
                             size_t cap, size_t *out_len, q3_error *e);
/* Ends the stream: an incomplete character left waiting becomes U+FFFD. Returns the bytes
 * written (at most 3; cap below 3 writes nothing) and resets s; cannot fail. */
size_t q3_tok_stream_flush(q3_tok_stream *s, char *out, size_t cap);
/* An output capacity that is enough for any one push; cannot fail. */
size_t q3_tok_stream_cap(const q3_tokenizer *tok);

/* Lookups; none can fail. */
/* Tokens, added tokens included: every id in [0, size) is valid. */
int q3_tok_vocab_size(const q3_tokenizer *tok);
/* The id of a token as the vocabulary spells it (byte-level form, e.g. "Ġworld"; added tokens
 * by their text, e.g. "<|im_end|>"), or -1. */
int32_t q3_tok_find(const q3_tokenizer *tok, const char *token_text);
/* True for control tokens ("<|endoftext|>", "<|im_end|>", ...); false for a bad id. */
bool q3_tok_is_special(const q3_tokenizer *tok, int32_t id);
/* The raw bytes one token stands for (not NUL-terminated; *len set), NULL for a bad id. */
const char *q3_tok_piece(const q3_tokenizer *tok, int32_t id, size_t *len);
/* The ids a GGUF names in tokenizer.ggml.{eos,bos,padding}_token_id, or -1 where it does not
 * (always -1 from tokenizer.json, which does not say: config.json does). */
int32_t q3_tok_eos(const q3_tokenizer *tok);
int32_t q3_tok_bos(const q3_tokenizer *tok);
int32_t q3_tok_pad(const q3_tokenizer *tok);
/* The chat template the model's files carry (tokenizer_config.json or chat_template.jinja beside
 * a tokenizer.json, or the GGUF's tokenizer.chat_template), loaded with the tokenizer, special
 * tokens included; NULL when they carry none, which means the built-in Qwen3 template
 * (q3_chat_options.template = NULL). */
const q3_chat_template *q3_tok_chat_template(const q3_tokenizer *tok);

#endif
