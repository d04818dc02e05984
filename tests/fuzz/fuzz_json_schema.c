/* libFuzzer: structured outputs end to end, as the server runs them for a request's response
 * format or forced tool calls: a JSON schema (or a tools list) from the input is compiled into a
 * grammar (text/json_schema.c), and a matcher follows generated text through it while the token
 * mask (text/token_mask.c) over the real Qwen3 vocabulary says which tokens may come next.
 *
 * Properties:
 *   - any schema is compiled or refused with Q3_EINVAL and a message, in bounded time and memory
 *     (a schema that would loop, nest or grow without bound is refused, not followed);
 *   - the mask agrees with the matcher: a token is in the mask exactly when its bytes can be
 *     pushed (checked on the 256 lowest ids, the byte tokens among them, and on ids the input
 *     names), and a token taken from the mask is always accepted;
 *   - text the grammar accepts as a whole sentence of a schema's grammar is JSON (jansson parses
 *     it; numbers too large for a double or a 64-bit integer are valid JSON jansson refuses).
 *
 * Input: a flags byte (bit 0: the schema text is a tools list for q3_tool_call_grammar; bit 1:
 * Qwen3-Coder's XML format; bit 2: only calls of the first tool), the schema's JSON text up to a
 * NUL byte, then the generation: a series of steps, each a control byte followed by its operand.
 *   control & 1 == 0: push the next (control >> 1) % 8 + 1 bytes of the input as a token's bytes;
 *                     stop at the first the matcher refuses;
 *   control & 1 == 1: compute the mask (at most MAX_MASKS times per input), check it, and take
 *                     the allowed token whose rank is the next two bytes (mod the allowed count). */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/json_schema.h"
#include "text/token_mask.h"

#define N_VOCAB 151936
#define MAX_MASKS 6
#define MAX_TEXT 65536

static q3_tokenizer *tok;
static q3_token_trie *trie;
static uint64_t *mask;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    q3_error e;
    if (q3_tok_load(&tok, Q3_FIXTURES "/qwen3-tokenizer", &e) || q3_token_trie_new(&trie, tok, N_VOCAB, &e)) {
        fprintf(stderr, "fuzz_json_schema: %s\n", e.msg);
        abort();
    }
    mask = calloc(q3_token_mask_words(trie), sizeof *mask);
    if (!mask) abort();
    /* The trie fills its table for JSON strings on first use, once per server (151936 matcher
     * pushes, seconds under the sanitizers): filled here, not charged to the first input. */
    json_t *string = json_pack("{s:s}", "type", "string");
    q3_grammar *g;
    q3_matcher *m;
    if (q3_json_schema_grammar(string, &g, &e) || q3_matcher_new(&m, g, &e) || !q3_matcher_push(m, "\"", 1)) abort();
    q3_token_mask(trie, m, mask);
    q3_matcher_free(m);
    q3_grammar_release(g);
    json_decref(string);
    return 0;
}

static bool allowed(int id) { return mask[id >> 6] >> (id & 63) & 1; }

/* The token's bytes as the mask sees them: NULL for special tokens and ids past the tokenizer's. */
static const char *piece_of(int id, size_t *len) {
    *len = 0;
    if (id >= q3_tok_vocab_size(tok) || q3_tok_is_special(tok, id)) return NULL;
    const char *p = q3_tok_piece(tok, id, len);
    return p && *len ? p : NULL;
}

static void check_token(q3_matcher *m, int id) {
    size_t len;
    const char *p = piece_of(id, &len);
    bool want = p && q3_matcher_push(m, p, len);
    if (want) q3_matcher_pop(m);
    if (want != allowed(id)) {
        fprintf(stderr, "token %d (%.*s): %s\n", id, (int)len, p ? p : "", want ? "missing from the mask" : "in the mask wrongly");
        abort();
    }
}

/* The mask at m's state, checked; the allowed token of the given rank (-1: none allowed). */
static int mask_step(q3_matcher *m, const unsigned char *names, size_t n_names, unsigned rank) {
    q3_token_mask(trie, m, mask);
    for (int id = 0; id < 256; id++) check_token(m, id);
    for (size_t i = 0; i + 3 <= n_names; i += 3)
        check_token(m, (int)((names[i] | names[i + 1] << 8 | (unsigned)names[i + 2] << 16) % N_VOCAB));
    size_t n_allowed = 0;
    for (size_t w = 0; w < q3_token_mask_words(trie); w++) n_allowed += (size_t)__builtin_popcountll(mask[w]);
    if (!n_allowed) return -1;
    size_t want = rank % n_allowed;
    for (int id = 0; id < N_VOCAB; id++)
        if (allowed(id) && want-- == 0) return id;
    abort();
}

/* Valid JSON, or a number jansson cannot hold. */
static void check_json(const char *text, size_t len) {
    json_error_t je;
    json_t *v = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (v) {
        json_decref(v);
        return;
    }
    if (strstr(je.text, "overflow") || strstr(je.text, "too big")) return;
    fprintf(stderr, "accepted text is not JSON (%s): %.*s\n", je.text, (int)len, text);
    abort();
}

static q3_status compile(unsigned flags, const char *schema_text, size_t len, q3_grammar **g, q3_error *e) {
    json_error_t je;
    json_t *schema = json_loadb(schema_text, len, JSON_DECODE_ANY, &je);
    *g = NULL;
    if (!schema) return Q3_EINVAL;
    q3_status st;
    if (flags & 1) {
        const char *name = flags & 4 ? json_string_value(json_object_get(
                                           json_object_get(json_array_get(schema, 0), "function"), "name"))
                                     : NULL;
        st = q3_tool_call_grammar(schema, name, flags & 2 ? Q3_TOOL_FORMAT_XML : Q3_TOOL_FORMAT_JSON, g, e);
    } else {
        st = q3_json_schema_grammar(schema, g, e);
    }
    json_decref(schema);
    if (st && (!e->msg[0] || (st != Q3_EINVAL && st != Q3_ENOMEM))) abort(); /* refused without a reason */
    return st;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    if (size < 2) return 0;
    const unsigned char *end = memchr(data + 1, 0, size - 1);
    if (!end) return 0;
    q3_error e = {0};
    q3_grammar *g;
    if (compile(data[0], (const char *)data + 1, (size_t)(end - data - 1), &g, &e)) return 0;
    q3_matcher *m;
    if (q3_matcher_new(&m, g, &e)) abort();
    q3_grammar_release(g);
    char *text = malloc(MAX_TEXT);
    size_t n_text = 0;
    int masks = 0;
    const unsigned char *p = end + 1, *stop = data + size;
    while (p < stop) {
        unsigned control = *p++;
        const char *bytes;
        size_t len;
        if (control & 1) {
            if (masks++ == MAX_MASKS || stop - p < 2) break;
            int id = mask_step(m, p + 2, (size_t)(stop - p - 2) < 24 ? (size_t)(stop - p - 2) : 24, p[0] | p[1] << 8);
            p += 2;
            if (id < 0) break;
            bytes = piece_of(id, &len);
            if (!bytes || !q3_matcher_push(m, bytes, len)) abort(); /* the mask allowed it */
        } else {
            len = (control >> 1) % 8 + 1;
            if (len > (size_t)(stop - p)) len = (size_t)(stop - p);
            bytes = (const char *)p;
            p += len;
            if (!q3_matcher_push(m, bytes, len)) break;
        }
        q3_matcher_commit(m);
        if (n_text + len > MAX_TEXT) {
            n_text = SIZE_MAX; /* not kept whole: not checked */
            break;
        }
        memcpy(text + n_text, bytes, len);
        n_text += len;
    }
    if (!(data[0] & 1) && n_text != SIZE_MAX && q3_matcher_accepting(m)) check_json(text, n_text);
    free(text);
    q3_matcher_free(m);
    return 0;
}
