/* The vocabulary trie and the per-step token mask (see token_mask.h).
 *
 * Nodes are stored in depth-first order: a node's children follow it, and `end` is the index
 * just past its subtree. The walk keeps the matcher's levels in step with the path from the
 * root: before trying node i it pops back to i's parent, then either pushes i's byte and goes on
 * to i + 1 (its first child), or, refused, jumps to end. */
#include "text/token_mask.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

typedef struct trie_node {
    uint32_t end;            /* one past the last node of its subtree */
    int32_t token;           /* the token whose bytes end here; -1: none */
    uint16_t depth;          /* bytes from the root: 1 for a first byte */
    uint8_t byte;
    bool has_dups;           /* more tokens with the same bytes: see dups */
} trie_node;

typedef struct dup {
    uint32_t node;
    int32_t token;
} dup;

/* Free text's answer: tokens allowed wholesale, and those to check one by one. */
typedef struct free_table {
    uint64_t *plain;
    int32_t *check;
    int n_check;
    uint8_t *chars;          /* strings: the characters each plain token adds (255: that many or more) */
} free_table;

struct q3_token_trie {
    const q3_tokenizer *tok;
    int n_vocab;
    size_t words;
    trie_node *nodes;
    uint32_t n_nodes;
    dup *dups;
    int n_dups;
    free_table *string;      /* NULL until first needed */
    struct until_table {     /* by the terminator's first byte and the byte it waits for */
        unsigned char stop, next;
        free_table *table;
    } *untils;
    int n_untils;
};

typedef struct item {
    const unsigned char *bytes;
    size_t len;
    int32_t id;
} item;

static int item_order(const void *a, const void *b) {
    const item *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->bytes, y->bytes, n);
    if (c) return c;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* The tokens the mask may allow: not special, with bytes. */
static item *collect(const q3_tokenizer *tok, int n_vocab, int *n_items) {
    int n = q3_tok_vocab_size(tok) < n_vocab ? q3_tok_vocab_size(tok) : n_vocab, k = 0;
    item *items = malloc((size_t)(n ? n : 1) * sizeof *items);
    if (!items) return NULL;
    for (int32_t id = 0; id < n; id++) {
        size_t len = 0;
        const char *piece = q3_tok_piece(tok, id, &len);
        if (!piece || len == 0 || len > UINT16_MAX || q3_tok_is_special(tok, id)) continue;
        items[k++] = (item){(const unsigned char *)piece, len, id};
    }
    qsort(items, (size_t)k, sizeof *items, item_order);
    *n_items = k;
    return items;
}

static bool add_dup(q3_token_trie *t, uint32_t node, int32_t token) {
    dup *d = realloc(t->dups, (size_t)(t->n_dups + 1) * sizeof *d);
    if (!d) return false;
    t->dups = d;
    t->dups[t->n_dups++] = (dup){node, token};
    t->nodes[node].has_dups = true;
    return true;
}

/* Sorted tokens into depth-first nodes: each token adds the nodes past its common prefix with
 * the one before; nodes leaving the current path get their end. */
static bool build(q3_token_trie *t, const item *items, int n) {
    size_t total = 0;
    for (int i = 0; i < n; i++) total += items[i].len;
    uint32_t *path = malloc((size_t)(UINT16_MAX + 1) * sizeof *path);
    t->nodes = malloc((total ? total : 1) * sizeof *t->nodes);
    if (!path || !t->nodes) {
        free(path);
        return false;
    }
    size_t depth = 0;
    bool ok = true;
    for (int i = 0; i < n && ok; i++) {
        size_t common = 0;
        if (i > 0) {
            size_t lim = items[i - 1].len < items[i].len ? items[i - 1].len : items[i].len;
            while (common < lim && items[i - 1].bytes[common] == items[i].bytes[common]) common++;
        }
        for (; depth > common; depth--) t->nodes[path[depth - 1]].end = t->n_nodes;
        if (common == items[i].len && depth > 0) { /* the same bytes as the token before */
            ok = add_dup(t, path[depth - 1], items[i].id);
            continue;
        }
        for (; depth < items[i].len; depth++) {
            path[depth] = t->n_nodes;
            t->nodes[t->n_nodes++] = (trie_node){0, -1, (uint16_t)(depth + 1), items[i].bytes[depth], false};
        }
        t->nodes[path[depth - 1]].token = items[i].id;
    }
    for (; depth > 0; depth--) t->nodes[path[depth - 1]].end = t->n_nodes;
    free(path);
    return ok;
}

q3_status q3_token_trie_new(q3_token_trie **out, const q3_tokenizer *tok, int n_vocab, q3_error *e) {
    *out = NULL;
    q3_token_trie *t = calloc(1, sizeof *t);
    int n = 0;
    item *items = t ? collect(tok, n_vocab, &n) : NULL;
    if (!items || !build(t, items, n)) {
        free(items);
        q3_token_trie_free(t);
        return q3_fail(e, Q3_ENOMEM, "token mask: out of memory for the vocabulary trie");
    }
    free(items);
    t->tok = tok;
    t->n_vocab = n_vocab;
    t->words = ((size_t)n_vocab + 63) / 64;
    *out = t;
    return Q3_OK;
}

static void table_free(free_table *f) {
    if (!f) return;
    free(f->plain);
    free(f->check);
    free(f->chars);
    free(f);
}

void q3_token_trie_free(q3_token_trie *t) {
    if (!t) return;
    table_free(t->string);
    for (int i = 0; i < t->n_untils; i++) table_free(t->untils[i].table);
    free(t->untils);
    free(t->nodes);
    free(t->dups);
    free(t);
}

size_t q3_token_mask_words(const q3_token_trie *t) { return t->words; }

static inline void allow_token(uint64_t *allow, int32_t id) { allow[id >> 6] |= 1ULL << (id & 63); }

/* ---- the walk ---- */

static void walk(const q3_token_trie *t, q3_matcher *m, uint64_t *allow) {
    int pushed = 0;
    for (uint32_t i = 0; i < t->n_nodes;) {
        const trie_node *nd = &t->nodes[i];
        for (; pushed >= nd->depth; pushed--) q3_matcher_pop(m);
        if (!q3_matcher_push(m, (const char *)&nd->byte, 1)) {
            i = nd->end;
            continue;
        }
        pushed++;
        if (nd->token >= 0) allow_token(allow, nd->token);
        for (int k = 0; nd->has_dups && k < t->n_dups; k++)
            if (t->dups[k].node == i) allow_token(allow, t->dups[k].token);
        i++;
    }
    for (; pushed > 0; pushed--) q3_matcher_pop(m);
}

/* ---- free text ---- */

static free_table *table_new(size_t words, int n_vocab) {
    free_table *f = calloc(1, sizeof *f);
    if (f && (!(f->plain = calloc(words, sizeof *f->plain)) || !(f->check = malloc((size_t)n_vocab * sizeof *f->check)))) {
        table_free(f);
        return NULL;
    }
    return f;
}

/* The characters a token adds to a JSON string it stays inside (a character begins at every
 * byte that is not a UTF-8 continuation and not the rest of an escape). */
static uint8_t string_chars(const char *piece, size_t len) {
    unsigned n = 0, escape_rest = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)piece[i];
        if (escape_rest) {
            escape_rest = escape_rest == 1 && c == 'u' ? 4 : escape_rest - 1;
            continue;
        }
        if (c == '\\') escape_rest = 1;
        if (c < 0x80 || c >= 0xC0) n++;
    }
    return n < 255 ? (uint8_t)n : 255;
}

/* Inside a JSON string: a probe grammar ("\"" then the string) tells which tokens stay inside
 * (plain, with how many characters each adds), and which hold a quote and so depend on what
 * follows the string (checked). */
static free_table *string_table(q3_token_trie *t) {
    free_table *f = table_new(t->words, t->n_vocab);
    if (f && !(f->chars = calloc((size_t)t->n_vocab, 1))) table_free(f), f = NULL;
    q3_grammar_builder *b = q3_gb_new();
    q3_grammar *g = NULL;
    q3_matcher *m = NULL;
    if (f && b) {
        int root = q3_gb_rule(b);
        q3_seq s = {0};
        q3_seq_literal(b, &s, "\"", 1);
        q3_seq_string(&s, 0, Q3_GRAMMAR_UNBOUNDED);
        q3_gb_add_alt(b, root, &s);
    }
    bool ok = f && b && !q3_grammar_build(b, 0, &g, NULL) && !q3_matcher_new(&m, g, NULL) && q3_matcher_push(m, "\"", 1);
    if (ok) q3_matcher_commit(m);
    for (int32_t id = 0; ok && id < t->n_vocab && id < q3_tok_vocab_size(t->tok); id++) {
        size_t len = 0;
        const char *piece = q3_tok_piece(t->tok, id, &len);
        if (!piece || !len || q3_tok_is_special(t->tok, id)) continue;
        bool inside = q3_matcher_push(m, piece, len), closed = inside && q3_matcher_accepting(m);
        if (inside) q3_matcher_pop(m);
        if (inside && !closed) allow_token(f->plain, id), f->chars[id] = string_chars(piece, len);
        else if (memchr(piece, '"', len)) f->check[f->n_check++] = id;
    }
    q3_matcher_free(m);
    q3_grammar_release(g);
    q3_gb_free(b);
    if (!ok) table_free(f);
    return ok ? f : NULL;
}

/* Inside UNTIL text: a token without the terminator's first byte (stop) that does not begin
 * with the byte the match waits for (next) leaves the match at nothing and the text going on,
 * whatever was matched before; the others are checked. */
static free_table *until_table(q3_token_trie *t, unsigned char stop, unsigned char next) {
    for (int i = 0; i < t->n_untils; i++)
        if (t->untils[i].stop == stop && t->untils[i].next == next) return t->untils[i].table;
    struct until_table *grown = realloc(t->untils, (size_t)(t->n_untils + 1) * sizeof *grown);
    free_table *f = grown ? table_new(t->words, t->n_vocab) : NULL;
    if (grown) t->untils = grown;
    for (int32_t id = 0; f && id < t->n_vocab && id < q3_tok_vocab_size(t->tok); id++) {
        size_t len = 0;
        const char *piece = q3_tok_piece(t->tok, id, &len);
        if (!piece || !len || q3_tok_is_special(t->tok, id)) continue;
        if (memchr(piece, stop, len) || (unsigned char)piece[0] == next) f->check[f->n_check++] = id;
        else allow_token(f->plain, id);
    }
    if (f) t->untils[t->n_untils++] = (struct until_table){stop, next, f};
    return f;
}

/* The plain tokens (those that add at most room characters, for a bounded string), then the
 * checked ones that the matcher accepts. */
static void from_table(const q3_token_trie *t, const free_table *f, q3_matcher *m, int room, uint64_t *allow) {
    memcpy(allow, f->plain, t->words * sizeof *allow);
    for (size_t w = 0; f->chars && room < 255 && w < t->words; w++)
        for (uint64_t bits = allow[w]; bits; bits &= bits - 1) {
            size_t id = w * 64 + (size_t)__builtin_ctzll(bits);
            if (f->chars[id] > room) allow[w] &= ~(1ULL << (id & 63));
        }
    for (int k = 0; k < f->n_check; k++) {
        size_t len = 0;
        const char *piece = q3_tok_piece(t->tok, f->check[k], &len);
        if (q3_matcher_push(m, piece, len)) {
            allow_token(allow, f->check[k]);
            q3_matcher_pop(m);
        }
    }
}

void q3_token_mask(q3_token_trie *t, q3_matcher *m, uint64_t *allow) {
    unsigned char stop = 0, next = 0;
    int room = INT_MAX;
    q3_free_text kind = q3_matcher_free_text(m, &stop, &next, &room);
    free_table *f = NULL;
    if (kind == Q3_FREE_STRING) f = t->string ? t->string : (t->string = string_table(t));
    if (kind == Q3_FREE_UNTIL) f = until_table(t, stop, next);
    if (f) {
        from_table(t, f, m, room, allow);
        return;
    }
    memset(allow, 0, t->words * sizeof *allow);
    walk(t, m, allow);
}
