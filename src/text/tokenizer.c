/* The tokenizer's vocabulary as data: token spellings and their raw bytes in two pools, a hash
 * table from spelling to id, a hash table from an adjacent id pair to its merge rule, and the
 * list of added tokens. The loaders (tok_load.c) fill it through tok_create / tok_set_token /
 * tok_index / tok_add_merge; the encoder (tok_encode.c) reads it. Decoding, whole and streamed,
 * lives here too: it needs nothing but the pieces. */
#include "base/utf8.h"
#include "text/tok_internal.h"
#include "text/chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- GPT-2's byte-level alphabet ---- */

/* Every byte is spelled as one printable character so that BPE merges never see control bytes
 * or spaces: the 188 printable Latin-1 bytes stand for themselves, the other 68 (controls,
 * space, DEL, NBSP, soft hyphen) take the code points from U+0100 on, in byte order. */
static uint32_t byte_to_char(int b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) return (uint32_t)b;
    int rank = 0; /* how many non-printable bytes come before b */
    for (int x = 0; x < b; x++)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174)) rank++;
    return 256u + (uint32_t)rank;
}

#define ALPHABET_END (256 + 68)

/* The inverse, over code points below ALPHABET_END; -1 where no byte maps. */
static void char_to_byte_table(int16_t table[ALPHABET_END]) {
    for (int c = 0; c < ALPHABET_END; c++) table[c] = -1;
    for (int b = 0; b < 256; b++) table[byte_to_char(b)] = (int16_t)b;
}

/* ---- building ---- */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h ^ h >> 29;
}

static size_t pow2_at_least(size_t n) {
    size_t p = 16;
    while (p < n) p *= 2;
    return p;
}

q3_status tok_create(q3_tokenizer **out, int n_vocab, int n_merges, const char *src, q3_error *e) {
    *out = NULL;
    if (n_vocab <= 0 || n_vocab > (1 << 24))
        return q3_fail(e, Q3_EFORMAT, "%s: implausible vocabulary size %d", src, n_vocab);
    if (n_merges < 0 || n_merges > (1 << 24))
        return q3_fail(e, Q3_EFORMAT, "%s: implausible merge count %d", src, n_merges);
    q3_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return q3_fail(e, Q3_ENOMEM, "%s: out of memory", src);
    t->n_vocab = n_vocab;
    t->eos = t->bos = t->pad = -1;
    t->tokens = calloc((size_t)n_vocab, sizeof *t->tokens);
    t->merges_mask = pow2_at_least(2 * (size_t)n_merges) - 1;
    t->merges = malloc((t->merges_mask + 1) * sizeof *t->merges);
    t->text_cap = 16 * (size_t)n_vocab;
    t->text_pool = malloc(t->text_cap);
    if (!t->tokens || !t->merges || !t->text_pool) {
        q3_tok_free(t);
        return q3_fail(e, Q3_ENOMEM, "%s: out of memory", src);
    }
    for (size_t i = 0; i <= t->merges_mask; i++) t->merges[i].pair = TOK_NO_PAIR;
    *out = t;
    return Q3_OK;
}

q3_status tok_set_token(q3_tokenizer *t, int32_t id, const char *text, size_t len,
                        enum tok_kind kind, const char *src, q3_error *e) {
    if (id < 0 || id >= t->n_vocab)
        return q3_fail(e, Q3_EFORMAT, "%s: token id %d outside the vocabulary of %d", src, id,
                       t->n_vocab);
    if (len > 0xFFFF) return q3_fail(e, Q3_EFORMAT, "%s: token %d is %zu bytes long", src, id, len);
    if (t->text_used + len + 1 > t->text_cap) {
        size_t cap = 2 * t->text_cap + len + 1;
        if (cap > UINT32_MAX) return q3_fail(e, Q3_EFORMAT, "%s: token spellings too large", src);
        char *p = realloc(t->text_pool, cap);
        if (!p) return q3_fail(e, Q3_ENOMEM, "%s: out of memory", src);
        t->text_pool = p;
        t->text_cap = cap;
    }
    memcpy(t->text_pool + t->text_used, text, len);
    t->text_pool[t->text_used + len] = 0;
    t->tokens[id] = (tok_entry){.text = (uint32_t)t->text_used, .text_len = (uint32_t)len,
                                .kind = (uint8_t)kind};
    t->text_used += len + 1;
    return Q3_OK;
}

int32_t tok_lookup(const q3_tokenizer *t, const char *text, size_t len) {
    for (size_t i = hash_bytes(text, len) & t->by_text_mask;; i = (i + 1) & t->by_text_mask) {
        int32_t id = t->by_text[i];
        if (id < 0) return -1;
        const tok_entry *k = &t->tokens[id];
        if (k->text_len == len && !memcmp(t->text_pool + k->text, text, len)) return id;
    }
}

/* Maps a BPE token's spelling back to the bytes it stands for. */
static q3_status decode_spelling(q3_tokenizer *t, int32_t id, const int16_t *char_to_byte,
                                 const char *src, q3_error *e) {
    tok_entry *k = &t->tokens[id];
    const unsigned char *s = (const unsigned char *)t->text_pool + k->text;
    unsigned char *out = (unsigned char *)t->piece_pool + t->piece_used;
    size_t n = 0;
    for (size_t i = 0, len; i < k->text_len; i += len) {
        if (q3_utf8_scan((const char *)s + i, k->text_len - i, &len) != Q3_UTF8_OK)
            return q3_fail(e, Q3_EFORMAT, "%s: token %d is not valid UTF-8", src, id);
        uint32_t cp = len == 1 ? s[i] : len == 2 ? (uint32_t)(s[i] & 0x1F) << 6 | (s[i + 1] & 0x3F)
                                                 : ALPHABET_END;
        if (cp >= ALPHABET_END || char_to_byte[cp] < 0)
            return q3_fail(e, Q3_EFORMAT,
                           "%s: token %d \"%s\" is not spelled in the byte-level alphabet", src, id,
                           (const char *)s);
        out[n++] = (unsigned char)char_to_byte[cp];
    }
    k->piece = (uint32_t)t->piece_used;
    k->piece_len = (uint32_t)n;
    t->piece_used += n;
    return Q3_OK;
}

static q3_status make_pieces(q3_tokenizer *t, const char *src, q3_error *e) {
    int16_t char_to_byte[ALPHABET_END];
    char_to_byte_table(char_to_byte);
    /* A piece is never longer than its spelling. */
    if (!(t->piece_pool = malloc(t->text_used + 1)))
        return q3_fail(e, Q3_ENOMEM, "%s: out of memory", src);
    for (int32_t id = 0; id < t->n_vocab; id++) {
        tok_entry *k = &t->tokens[id];
        if (k->kind == TOK_NORMAL) {
            q3_status st = decode_spelling(t, id, char_to_byte, src, e);
            if (st) return st;
        } else if (k->kind != TOK_UNUSED) { /* added tokens are spelled as their text */
            memcpy(t->piece_pool + t->piece_used, t->text_pool + k->text, k->text_len);
            k->piece = (uint32_t)t->piece_used;
            k->piece_len = k->text_len;
            t->piece_used += k->text_len;
        }
        if (k->piece_len > t->max_piece) t->max_piece = k->piece_len;
    }
    return Q3_OK;
}

typedef struct added_key {
    uint32_t len;
    int32_t id;
} added_key;

static int longest_text_first(const void *a, const void *b) {
    const added_key *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static q3_status list_added(q3_tokenizer *t, const char *src, q3_error *e) {
    added_key *keys = malloc((size_t)t->n_vocab * sizeof *keys);
    if (!keys || !(t->added = malloc((size_t)t->n_vocab * sizeof *t->added))) {
        free(keys);
        return q3_fail(e, Q3_ENOMEM, "%s: out of memory", src);
    }
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const tok_entry *k = &t->tokens[id];
        if ((k->kind == TOK_SPECIAL || k->kind == TOK_ADDED) && k->text_len > 0) {
            keys[t->n_added++] = (added_key){k->text_len, id};
            t->added_starts_with[(unsigned char)t->text_pool[k->text]] = true;
        }
    }
    /* Longest first, so that the first added token that matches is the longest. */
    qsort(keys, (size_t)t->n_added, sizeof *keys, longest_text_first);
    for (int i = 0; i < t->n_added; i++) t->added[i] = keys[i].id;
    free(keys);
    return Q3_OK;
}

q3_status tok_index(q3_tokenizer *t, const char *src, q3_error *e) {
    t->by_text_mask = pow2_at_least(2 * (size_t)t->n_vocab) - 1;
    if (!(t->by_text = malloc((t->by_text_mask + 1) * sizeof *t->by_text)))
        return q3_fail(e, Q3_ENOMEM, "%s: out of memory", src);
    memset(t->by_text, 0xFF, (t->by_text_mask + 1) * sizeof *t->by_text);
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const tok_entry *k = &t->tokens[id];
        const char *s = t->text_pool + k->text;
        if (k->text_len == 0 || tok_lookup(t, s, k->text_len) >= 0) continue; /* lowest id wins */
        size_t i = hash_bytes(s, k->text_len) & t->by_text_mask;
        while (t->by_text[i] >= 0) i = (i + 1) & t->by_text_mask;
        t->by_text[i] = id;
    }
    q3_status st = make_pieces(t, src, e);
    if (!st) st = list_added(t, src, e);
    if (st) return st;
    for (int b = 0; b < 256; b++) {
        char spelling[4];
        int32_t id = tok_lookup(t, spelling, q3_utf8_encode(byte_to_char(b), spelling));
        t->byte_token[b] = id >= 0 && t->tokens[id].kind == TOK_NORMAL ? id : -1;
    }
    return Q3_OK;
}

q3_status tok_add_merge(q3_tokenizer *t, const char *left, size_t left_len, const char *right,
                        size_t right_len, int rank, const char *src, q3_error *e) {
    int32_t l = tok_lookup(t, left, left_len), r = tok_lookup(t, right, right_len);
    if (l < 0 || r < 0)
        return q3_fail(e, Q3_EFORMAT, "%s: merge %d: \"%.*s\" is not in the vocabulary", src, rank,
                       (int)(l < 0 ? left_len : right_len), l < 0 ? left : right);
    char joined[1024];
    if (left_len + right_len > sizeof joined)
        return q3_fail(e, Q3_EFORMAT, "%s: merge %d is %zu bytes long", src, rank, left_len + right_len);
    memcpy(joined, left, left_len);
    memcpy(joined + left_len, right, right_len);
    int32_t merged = tok_lookup(t, joined, left_len + right_len);
    if (merged < 0)
        return q3_fail(e, Q3_EFORMAT, "%s: merge %d: the result \"%.*s\" is not in the vocabulary",
                       src, rank, (int)(left_len + right_len), joined);
    int32_t old_rank, old_merged;
    if (tok_merge_of(t, l, r, &old_rank, &old_merged)) return Q3_OK; /* the earlier rule wins */
    if ((size_t)t->n_merges * 2 >= t->merges_mask + 1)
        return q3_fail(e, Q3_EFORMAT, "%s: more merges than the file announced", src);
    uint64_t pair = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    uint64_t h = pair * 0x9E3779B97F4A7C15ull;
    size_t i = (size_t)(h ^ h >> 32) & t->merges_mask;
    while (t->merges[i].pair != TOK_NO_PAIR) i = (i + 1) & t->merges_mask;
    t->merges[i] = (tok_merge){.pair = pair, .rank = rank, .merged = merged};
    t->n_merges++;
    return Q3_OK;
}

/* Hugging Face runs the pattern with Oniguruma, whose \s is Unicode's White_Space: \t-\r, U+0085
 * and the separators \p{Z}. PCRE2's \s also takes U+180E (Mongolian vowel separator, a format
 * character since Unicode 6.3), which would split words that HF keeps whole. So \s and \S are
 * spelled out before compiling. */
#define WHITE_SPACE "\\t-\\r\\x{85}\\p{Z}"

static q3_status spell_out_white_space(const char *pattern, char **out, const char *src, q3_error *e) {
    size_t n = strlen(pattern);
    char *p = malloc(n * (sizeof WHITE_SPACE + 3) + 1); /* each escape grows at most this much */
    if (!p) return q3_fail(e, Q3_ENOMEM, "%s: out of memory", src);
    size_t w = 0;
    bool in_class = false;
    for (size_t i = 0; i < n; i++) {
        char c = pattern[i];
        if (c == '\\' && i + 1 < n && (pattern[i + 1] == 's' || pattern[i + 1] == 'S')) {
            bool negated = pattern[++i] == 'S';
            if (in_class && negated) {
                free(p);
                return q3_fail(e, Q3_EUNSUPPORTED, "%s: pre-tokenizer regex has \\S inside [...]", src);
            }
            const char *open = in_class ? "" : negated ? "[^" : "[", *close = in_class ? "" : "]";
            w += (size_t)sprintf(p + w, "%s%s%s", open, WHITE_SPACE, close);
            continue;
        }
        p[w++] = c;
        if (c == '\\' && i + 1 < n) p[w++] = pattern[++i]; /* an escaped character stays as it is */
        else if (c == '[' && !in_class) {
            in_class = true;
            if (i + 1 < n && pattern[i + 1] == '^') p[w++] = pattern[++i];
            if (i + 1 < n && pattern[i + 1] == ']') p[w++] = pattern[++i]; /* a literal ']' */
        } else if (c == ']' && in_class) in_class = false;
    }
    p[w] = 0;
    *out = p;
    return Q3_OK;
}

q3_status tok_set_pattern(q3_tokenizer *t, const char *pattern, const char *src, q3_error *e) {
    char *spelled;
    q3_status st = spell_out_white_space(pattern, &spelled, src, e);
    if (st) return st;
    int code;
    PCRE2_SIZE at;
    t->pretok = pcre2_compile((PCRE2_SPTR)spelled, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                              &code, &at, NULL);
    free(spelled);
    if (!t->pretok) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return q3_fail(e, Q3_EFORMAT, "%s: pre-tokenizer regex \"%s\": %s", src, pattern,
                       (const char *)msg);
    }
    /* Without a JIT for this CPU PCRE2 interprets the same pattern, only slower. */
    pcre2_jit_compile(t->pretok, PCRE2_JIT_COMPLETE);
    return Q3_OK;
}

void q3_tok_free(q3_tokenizer *t) {
    if (!t) return;
    free(t->tokens);
    free(t->text_pool);
    free(t->piece_pool);
    free(t->by_text);
    free(t->merges);
    free(t->added);
    pcre2_code_free(t->pretok);
    q3_chat_template_free(t->chat_template);
    free(t);
}

/* ---- lookups ---- */

int q3_tok_vocab_size(const q3_tokenizer *t) { return t->n_vocab; }

int32_t q3_tok_find(const q3_tokenizer *t, const char *token_text) {
    return tok_lookup(t, token_text, strlen(token_text));
}

bool q3_tok_is_special(const q3_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && t->tokens[id].kind == TOK_SPECIAL;
}

const char *q3_tok_piece(const q3_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab) return NULL;
    *len = t->tokens[id].piece_len;
    return t->piece_pool + t->tokens[id].piece;
}

int32_t q3_tok_eos(const q3_tokenizer *t) { return t->eos; }
int32_t q3_tok_bos(const q3_tokenizer *t) { return t->bos; }
int32_t q3_tok_pad(const q3_tokenizer *t) { return t->pad; }
const q3_chat_template *q3_tok_chat_template(const q3_tokenizer *t) { return t->chat_template; }

/* ---- decoding ---- */

q3_status q3_tok_decode(const q3_tokenizer *t, const int32_t *ids, int n, char **text, size_t *len,
                        q3_error *e) {
    *text = NULL;
    *len = 0;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return q3_fail(e, Q3_EINVAL, "token %d (at position %d) is outside the vocabulary of %d",
                           ids[i], i, t->n_vocab);
        total += t->tokens[ids[i]].piece_len;
    }
    char *out = malloc(total + 1);
    if (!out) return q3_fail(e, Q3_ENOMEM, "decode: out of memory");
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        const tok_entry *k = &t->tokens[ids[i]];
        memcpy(out + at, t->piece_pool + k->piece, k->piece_len);
        at += k->piece_len;
    }
    out[at] = 0;
    *text = out;
    *len = at;
    return Q3_OK;
}

void q3_tok_stream_init(q3_tok_stream *s) { memset(s, 0, sizeof *s); }

static const char REPLACEMENT[3] = {(char)0xEF, (char)0xBF, (char)0xBD}; /* U+FFFD */

/* Emits what the waiting bytes settle: whole characters, and U+FFFD for bytes that cannot
 * start one. Stops at a character still missing bytes. */
static size_t settle_pending(q3_tok_stream *s, char *out) {
    size_t w = 0, len;
    while (s->n_pending > 0) {
        q3_utf8_verdict v = q3_utf8_scan((const char *)s->pending, (size_t)s->n_pending, &len);
        if (v == Q3_UTF8_SHORT) break;
        if (v == Q3_UTF8_OK) memcpy(out + w, s->pending, len);
        else memcpy(out + w, REPLACEMENT, sizeof REPLACEMENT);
        w += v == Q3_UTF8_OK ? len : sizeof REPLACEMENT;
        s->n_pending -= (int)len;
        memmove(s->pending, s->pending + len, (size_t)s->n_pending);
    }
    return w;
}

/* Every input byte comes out once, as itself or inside a U+FFFD of at most 3 bytes. */
static size_t stream_bound(size_t piece_len) { return 3 * (piece_len + 3); }

size_t q3_tok_stream_cap(const q3_tokenizer *t) { return stream_bound(t->max_piece); }

q3_status q3_tok_stream_push(const q3_tokenizer *t, q3_tok_stream *s, int32_t id, char *out,
                             size_t cap, size_t *out_len, q3_error *e) {
    *out_len = 0;
    if (id < 0 || id >= t->n_vocab)
        return q3_fail(e, Q3_EINVAL, "token %d is outside the vocabulary of %d", id, t->n_vocab);
    const tok_entry *k = &t->tokens[id];
    if (cap < stream_bound(k->piece_len))
        return q3_fail(e, Q3_EINVAL, "stream decode: output buffer of %zu bytes, token %d needs %zu",
                       cap, id, stream_bound(k->piece_len));
    const unsigned char *p = (const unsigned char *)t->piece_pool + k->piece;
    size_t w = 0;
    for (uint32_t i = 0; i < k->piece_len; i++) {
        if (s->n_pending == 0 && p[i] < 0x80) { /* the common case: ASCII passes straight on */
            out[w++] = (char)p[i];
            continue;
        }
        s->pending[s->n_pending++] = p[i];
        w += settle_pending(s, out + w);
    }
    *out_len = w;
    return Q3_OK;
}

size_t q3_tok_stream_flush(q3_tok_stream *s, char *out, size_t cap) {
    /* What waits is the valid start of a character that never ended: one U+FFFD, as a lossy
     * UTF-8 decoder would give. */
    size_t w = 0;
    if (s->n_pending > 0 && cap >= sizeof REPLACEMENT) {
        memcpy(out, REPLACEMENT, sizeof REPLACEMENT);
        w = sizeof REPLACEMENT;
    }
    q3_tok_stream_init(s);
    return w;
}
