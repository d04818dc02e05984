/* Text to token ids, in the order Hugging Face tokenizers applies its steps to Qwen's text:
 *   1. added tokens are cut out of the raw text (leftmost, then longest match);
 *   2. each stretch between them is normalised to NFC (utf8proc);
 *   3. the pre-tokenizer regex (PCRE2, JIT) cuts the stretch into words, the text between
 *      matches being words too ("Isolated" splitting);
 *   4. each word starts as one symbol per byte (the byte's token in GPT-2's byte-level
 *      alphabet), and adjacent symbols merge, lowest merge rank first and leftmost among equal
 *      ranks, until no rule joins two neighbours.
 * Step 4 keeps the word as a linked list over its bytes and the candidate merges in a binary
 * heap, so a word of n bytes costs O(n log n). Words repeat a lot in real text: a per-call cache
 * maps a word already seen to its ids. All scratch belongs to one call, so a tokenizer can be
 * shared by threads. */
#include "base/utf8.h"
#include "text/tok_internal.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* A word already encoded in this call: its bytes and its ids, in the encoder's arenas. */
typedef struct cached_word {
    uint64_t hash;
    uint32_t bytes, n_bytes; /* in word_bytes */
    uint32_t ids, n_ids;     /* in word_ids */
} cached_word;

/* Words longer than this are encoded afresh each time; they are rare and would fill the cache. */
#define CACHE_MAX_WORD 64
#define CACHE_MAX_WORDS (1 << 16)

typedef struct encoder {
    const q3_tokenizer *t;
    bool parse_special;
    int32_t *ids; /* the result so far */
    size_t n_ids, cap_ids;
    pcre2_match_data *match;

    /* One word's BPE state, indexed by the byte where a symbol starts. */
    int32_t *symbol;    /* its token, -1 once merged into its left neighbour */
    int32_t *next;      /* the start of the next symbol, the word's length at the end */
    int32_t *prev;      /* the start of the previous symbol, -1 at the start */
    uint64_t *heap;     /* candidate merges, rank << 32 | left symbol's start */
    size_t heap_n, word_cap;

    cached_word *cache; /* open addressing, n_bytes 0 in an empty slot */
    size_t cache_mask, cache_n;
    unsigned char *word_bytes;
    int32_t *word_ids;
    size_t bytes_used, bytes_cap, ids_used, ids_cap;
} encoder;

static q3_status out_of_memory(q3_error *e) { return q3_fail(e, Q3_ENOMEM, "encode: out of memory"); }

/* A buffer of *cap elements of size bytes, grown by doubling to hold need: the buffer (moved
 * perhaps) with *cap updated, or NULL with buf and *cap as they were. */
static void *grow(void *buf, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return buf;
    size_t cap2 = *cap ? *cap : 64;
    while (cap2 < need) cap2 *= 2;
    void *p = realloc(buf, cap2 * size);
    if (p) *cap = cap2;
    return p;
}

/* Room for n more ids in the result. */
static q3_status reserve_ids(encoder *x, size_t n, q3_error *e) {
    int32_t *ids = grow(x->ids, &x->cap_ids, x->n_ids + n, sizeof *ids);
    if (!ids) return out_of_memory(e);
    x->ids = ids;
    return Q3_OK;
}

static q3_status emit(encoder *x, const int32_t *ids, size_t n, q3_error *e) {
    q3_status st = reserve_ids(x, n, e);
    if (st) return st;
    memcpy(x->ids + x->n_ids, ids, n * sizeof *ids);
    x->n_ids += n;
    return Q3_OK;
}

/* ---- the merge heap: a binary min-heap of rank << 32 | position ---- */

static void heap_push(encoder *x, uint64_t v) {
    size_t i = x->heap_n++;
    while (i > 0 && x->heap[(i - 1) / 2] > v) {
        x->heap[i] = x->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    x->heap[i] = v;
}

static uint64_t heap_pop(encoder *x) {
    uint64_t top = x->heap[0], last = x->heap[--x->heap_n];
    size_t i = 0, n = x->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && x->heap[c + 1] < x->heap[c]) c++;
        if (x->heap[c] >= last) break;
        x->heap[i] = x->heap[c];
        i = c;
    }
    if (n > 0) x->heap[i] = last;
    return top;
}

/* Offers the merge of the symbol at pos with its right neighbour, if a rule joins them. */
static void offer_merge(encoder *x, int32_t pos, int32_t len) {
    int32_t right = x->next[pos], rank, merged;
    if (right < len && tok_merge_of(x->t, x->symbol[pos], x->symbol[right], &rank, &merged))
        heap_push(x, (uint64_t)rank << 32 | (uint32_t)pos);
}

/* ---- BPE over one word ---- */

static q3_status bpe_scratch(encoder *x, size_t n, q3_error *e) {
    if (n <= x->word_cap) return Q3_OK;
    size_t cap = n > 2 * x->word_cap ? n : 2 * x->word_cap;
    if (cap < 256) cap = 256;
    free(x->symbol);
    free(x->next);
    free(x->prev);
    free(x->heap);
    x->symbol = malloc(cap * sizeof *x->symbol);
    x->next = malloc(cap * sizeof *x->next);
    x->prev = malloc(cap * sizeof *x->prev);
    /* Each merge pops one candidate and offers at most two: never more than 2n wait at once. */
    x->heap = malloc(2 * cap * sizeof *x->heap);
    x->word_cap = x->symbol && x->next && x->prev && x->heap ? cap : 0;
    return x->word_cap ? Q3_OK : out_of_memory(e);
}

/* Merges the bytes w[0..n) into tokens, appending them to x->ids. */
static q3_status bpe_word(encoder *x, const unsigned char *w, size_t n, q3_error *e) {
    if (n > INT32_MAX) return q3_fail(e, Q3_EINVAL, "encode: a word of %zu bytes", n);
    q3_status st = bpe_scratch(x, n, e);
    if (st) return st;
    int32_t len = (int32_t)n;
    for (int32_t i = 0; i < len; i++) {
        x->symbol[i] = x->t->byte_token[w[i]];
        if (x->symbol[i] < 0)
            return q3_fail(e, Q3_EINVAL, "encode: byte 0x%02x has no token in this vocabulary", w[i]);
        x->next[i] = i + 1;
        x->prev[i] = i - 1;
    }
    x->heap_n = 0;
    for (int32_t i = 0; i + 1 < len; i++) offer_merge(x, i, len);
    while (x->heap_n > 0) {
        uint64_t top = heap_pop(x);
        int32_t pos = (int32_t)(uint32_t)top, right = x->next[pos], rank, merged;
        /* A candidate is stale once either symbol has changed: the pair then has another rank
         * or none (a rank names one pair). */
        if (x->symbol[pos] < 0 || right >= len ||
            !tok_merge_of(x->t, x->symbol[pos], x->symbol[right], &rank, &merged) ||
            (uint64_t)rank != top >> 32)
            continue;
        x->symbol[pos] = merged;
        x->symbol[right] = -1;
        x->next[pos] = x->next[right];
        if (x->next[pos] < len) x->prev[x->next[pos]] = pos;
        if (x->prev[pos] >= 0) offer_merge(x, x->prev[pos], len);
        offer_merge(x, pos, len);
    }
    if ((st = reserve_ids(x, n, e))) return st; /* n bytes make at most n tokens */
    for (int32_t i = 0; i < len; i = x->next[i]) x->ids[x->n_ids++] = x->symbol[i];
    return Q3_OK;
}

/* ---- the word cache ---- */

static uint64_t hash_word(const unsigned char *w, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ w[i]) * 0x100000001b3ull;
    return h ^ h >> 31;
}

static cached_word *cache_slot(encoder *x, const unsigned char *w, size_t n, uint64_t h) {
    for (size_t i = h & x->cache_mask;; i = (i + 1) & x->cache_mask) {
        cached_word *c = &x->cache[i];
        if (c->n_bytes == 0) return c;
        if (c->hash == h && c->n_bytes == n && !memcmp(x->word_bytes + c->bytes, w, n)) return c;
    }
}

/* Keeps the table at most half full: starts small, for the short texts of a chat turn. */
static q3_status cache_make_room(encoder *x, q3_error *e) {
    size_t size = x->cache ? x->cache_mask + 1 : 0;
    if (2 * (x->cache_n + 1) <= size) return Q3_OK;
    size_t size2 = size ? 2 * size : 1024;
    cached_word *old = x->cache, *table = calloc(size2, sizeof *table);
    if (!table) return out_of_memory(e);
    x->cache = table;
    x->cache_mask = size2 - 1;
    for (size_t i = 0; i < size; i++) {
        if (!old[i].n_bytes) continue;
        size_t j = old[i].hash & x->cache_mask;
        while (table[j].n_bytes) j = (j + 1) & x->cache_mask;
        table[j] = old[i];
    }
    free(old);
    return Q3_OK;
}

static q3_status remember(encoder *x, cached_word *slot, const unsigned char *w, size_t n,
                          uint64_t h, size_t first_id, q3_error *e) {
    size_t n_ids = x->n_ids - first_id;
    unsigned char *bytes = grow(x->word_bytes, &x->bytes_cap, x->bytes_used + n, 1);
    if (bytes) x->word_bytes = bytes;
    int32_t *ids = bytes ? grow(x->word_ids, &x->ids_cap, x->ids_used + n_ids, sizeof *ids) : NULL;
    if (!ids) return out_of_memory(e);
    x->word_ids = ids;
    memcpy(x->word_bytes + x->bytes_used, w, n);
    memcpy(x->word_ids + x->ids_used, x->ids + first_id, n_ids * sizeof *x->ids);
    *slot = (cached_word){.hash = h, .bytes = (uint32_t)x->bytes_used, .n_bytes = (uint32_t)n,
                          .ids = (uint32_t)x->ids_used, .n_ids = (uint32_t)n_ids};
    x->bytes_used += n;
    x->ids_used += n_ids;
    x->cache_n++;
    return Q3_OK;
}

static q3_status encode_word(encoder *x, const unsigned char *w, size_t n, q3_error *e) {
    if (n == 1 && x->t->byte_token[w[0]] >= 0) return emit(x, &x->t->byte_token[w[0]], 1, e);
    if (n > CACHE_MAX_WORD) return bpe_word(x, w, n, e);
    q3_status st = x->cache_n < CACHE_MAX_WORDS ? cache_make_room(x, e) : Q3_OK;
    if (st) return st;
    uint64_t h = hash_word(w, n);
    cached_word *slot = cache_slot(x, w, n, h);
    if (slot->n_bytes) return emit(x, x->word_ids + slot->ids, slot->n_ids, e);
    size_t first = x->n_ids;
    st = bpe_word(x, w, n, e);
    if (st || x->cache_n >= CACHE_MAX_WORDS) return st;
    return remember(x, slot, w, n, h, first, e);
}

/* ---- pre-tokenizing ---- */

/* Cuts normalised text into words: each regex match is a word, and so is any text between
 * matches (the Qwen2 pattern leaves none, but the format allows it). */
static q3_status pretokenize(encoder *x, const unsigned char *s, size_t n, q3_error *e) {
    size_t word_start = 0, search = 0;
    q3_status st;
    while (search < n) {
        int rc = pcre2_match(x->t->pretok, s, n, search, PCRE2_NO_UTF_CHECK, x->match, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return q3_fail(e, Q3_EINVAL, "encode: pre-tokenizer regex failed at byte %zu: %s",
                           search, (const char *)msg);
        }
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(x->match);
        if (ov[1] == ov[0]) { /* an empty match: step over one character and search again */
            if (ov[0] >= n) break;
            size_t len;
            q3_utf8_scan((const char *)s + ov[0], n - ov[0], &len);
            search = ov[0] + len;
            continue;
        }
        if (ov[0] > word_start && (st = encode_word(x, s + word_start, ov[0] - word_start, e)))
            return st;
        if ((st = encode_word(x, s + ov[0], ov[1] - ov[0], e))) return st;
        word_start = search = ov[1];
    }
    return word_start < n ? encode_word(x, s + word_start, n - word_start, e) : Q3_OK;
}

static bool is_ascii(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80) return false;
    return true;
}

/* One stretch of text between added tokens. ASCII is its own NFC, so it skips utf8proc. */
static q3_status encode_stretch(encoder *x, const char *s, size_t n, q3_error *e) {
    if (n == 0) return Q3_OK;
    if (!x->t->nfc || is_ascii(s, n)) return pretokenize(x, (const unsigned char *)s, n, e);
    utf8proc_uint8_t *nfc;
    utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &nfc,
                                      UTF8PROC_COMPOSE | UTF8PROC_STABLE);
    if (m < 0) return q3_fail(e, Q3_EINVAL, "encode: NFC normalisation failed: %s", utf8proc_errmsg(m));
    q3_status st = pretokenize(x, nfc, (size_t)m, e);
    free(nfc);
    return st;
}

/* ---- added tokens ---- */

/* The first added token at or after from (the longest there): its start, and *id; or len. */
static size_t next_added(const encoder *x, const char *s, size_t len, size_t from, int32_t *id) {
    const q3_tokenizer *t = x->t;
    for (size_t i = from; i < len; i++) {
        if (!t->added_starts_with[(unsigned char)s[i]]) continue;
        for (int k = 0; k < t->n_added; k++) {
            const tok_entry *a = &t->tokens[t->added[k]];
            if (a->kind == TOK_SPECIAL && !x->parse_special) continue;
            if (a->text_len <= len - i && !memcmp(s + i, t->text_pool + a->text, a->text_len)) {
                *id = t->added[k];
                return i;
            }
        }
    }
    return len;
}

/* ---- the whole call ---- */

static q3_status check_utf8(const char *text, size_t len, q3_error *e) {
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0, n; i < len; i += n) {
        if (s[i] < 0x80) {
            n = 1;
            continue;
        }
        if (q3_utf8_scan((const char *)s + i, len - i, &n) != Q3_UTF8_OK)
            return q3_fail(e, Q3_EINVAL, "encode: invalid UTF-8 at byte offset %zu", i);
    }
    return Q3_OK;
}

static q3_status encode_text(encoder *x, const char *text, size_t len, q3_error *e) {
    if (!(x->match = pcre2_match_data_create_from_pattern(x->t->pretok, NULL))) return out_of_memory(e);
    for (size_t pos = 0; pos < len;) {
        int32_t id = -1;
        size_t at = next_added(x, text, len, pos, &id);
        q3_status st = encode_stretch(x, text + pos, at - pos, e);
        if (st) return st;
        if (at == len) break;
        if ((st = emit(x, &id, 1, e))) return st;
        pos = at + x->t->tokens[id].text_len;
    }
    return Q3_OK;
}

static void encoder_free(encoder *x) {
    pcre2_match_data_free(x->match);
    free(x->symbol);
    free(x->next);
    free(x->prev);
    free(x->heap);
    free(x->cache);
    free(x->word_bytes);
    free(x->word_ids);
}

q3_status q3_tok_encode(const q3_tokenizer *t, const char *text, size_t len, bool parse_special,
                        int32_t **ids, int *n_ids, q3_error *e) {
    *ids = NULL;
    *n_ids = 0;
    q3_status st = check_utf8(text, len, e);
    if (st) return st;
    encoder x = {.t = t, .parse_special = parse_special};
    st = encode_text(&x, text, len, e);
    if (!st && x.n_ids > INT32_MAX) st = q3_fail(e, Q3_EINVAL, "encode: more than 2^31 tokens");
    if (st || x.n_ids == 0) {
        free(x.ids);
        x.ids = NULL;
    } else {
        *ids = x.ids;
        *n_ids = (int)x.n_ids;
    }
    encoder_free(&x);
    return st;
}
