/* The tokenizer's insides, shared by its files: tokenizer.c (the vocabulary, its hash tables,
 * lookups and decoding), tok_load.c (reading tokenizer.json and GGUF metadata into it) and
 * tok_encode.c (text to ids). Nothing outside src/text/tok*.c includes this. */
#ifndef Q3_TOK_INTERNAL_H
#define Q3_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include "text/tokenizer.h"

/* Qwen2's pre-tokenizer, as its tokenizer.json states it: contractions, letter runs (with one
 * leading non-letter), single digits, punctuation runs, newlines, and whitespace that keeps its
 * last space for the next word. GGUF files name it ("qwen2") instead of spelling it out. */
#define TOK_QWEN2_PATTERN                                                                       \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*" \
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

enum tok_kind {
    TOK_UNUSED = 0, /* an id the file leaves empty: decodes to nothing, never produced */
    TOK_NORMAL,     /* a BPE token, spelled in the byte-level alphabet */
    TOK_SPECIAL,    /* an added control token ("<|im_end|>"), spelled as its text */
    TOK_ADDED,      /* an added token that is not special ("<think>"), spelled as its text */
};

typedef struct tok_entry {
    uint32_t text, text_len;   /* the spelling, at text_pool + text (NUL-terminated) */
    uint32_t piece, piece_len; /* the raw bytes, at piece_pool + piece */
    uint8_t kind;              /* enum tok_kind */
} tok_entry;

/* One merge rule: the pair (left id << 32 | right id) becomes merged, earlier ranks first. */
typedef struct tok_merge {
    uint64_t pair; /* TOK_NO_PAIR in an empty slot */
    int32_t rank;
    int32_t merged;
} tok_merge;

#define TOK_NO_PAIR UINT64_MAX

struct q3_tokenizer {
    int n_vocab;
    tok_entry *tokens;                  /* [n_vocab] */
    char *text_pool, *piece_pool;
    size_t text_used, text_cap, piece_used;

    int32_t *by_text;                   /* open addressing: ids by spelling, -1 empty */
    size_t by_text_mask;
    tok_merge *merges;                  /* open addressing over pair */
    size_t merges_mask;
    int n_merges;

    int32_t byte_token[256];            /* the token of each single byte, -1 if none */
    int32_t *added;                     /* special and added token ids, longest text first */
    int n_added;
    bool added_starts_with[256];        /* some added token starts with this byte */
    size_t max_piece;                   /* longest piece_len */

    pcre2_code *pretok;
    bool nfc;
    int32_t eos, bos, pad;

    struct q3_chat_template *chat_template; /* what the files carry; NULL: none */
};

/* ---- building (tokenizer.c); src names the file in error messages ---- */

/* A tokenizer with n_vocab unused ids and room for n_merges merge rules. */
q3_status tok_create(q3_tokenizer **out, int n_vocab, int n_merges, const char *src, q3_error *e);
/* Gives id its spelling and kind; a later call for the same id replaces the earlier. */
q3_status tok_set_token(q3_tokenizer *t, int32_t id, const char *text, size_t len,
                        enum tok_kind kind, const char *src, q3_error *e);
/* After every token is set: decodes the pieces and builds the lookup tables. */
q3_status tok_index(q3_tokenizer *t, const char *src, q3_error *e);
/* After tok_index: adds merge rule number rank, "left right" -> "leftright". */
q3_status tok_add_merge(q3_tokenizer *t, const char *left, size_t left_len, const char *right,
                        size_t right_len, int rank, const char *src, q3_error *e);
/* Compiles the pre-tokenizer regex (JIT where the platform has it). */
q3_status tok_set_pattern(q3_tokenizer *t, const char *pattern, const char *src, q3_error *e);

/* The id spelled text[0..len), or -1. */
int32_t tok_lookup(const q3_tokenizer *t, const char *text, size_t len);
/* The rank and result of merging left then right, or false when no rule joins them. */
static inline bool tok_merge_of(const q3_tokenizer *t, int32_t left, int32_t right, int32_t *rank,
                                int32_t *merged) {
    uint64_t pair = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    uint64_t h = pair * 0x9E3779B97F4A7C15ull;
    size_t i = (size_t)(h ^ h >> 32) & t->merges_mask;
    for (;; i = (i + 1) & t->merges_mask) {
        const tok_merge *m = &t->merges[i];
        if (m->pair == pair) {
            *rank = m->rank;
            *merged = m->merged;
            return true;
        }
        if (m->pair == TOK_NO_PAIR) return false;
    }
}

#endif
