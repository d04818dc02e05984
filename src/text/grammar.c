/* Grammars and the pushdown matcher (see grammar.h).
 *
 * A compiled grammar is one flat array of elements: every alternative is a run of elements ended
 * by END, and element 0..1 is the start, [RULE root, END]. A thread is a position in that array
 * (plus a repeat count or a sub-state: characters of a string, bytes of a terminator matched) and
 * a stack of return positions. Stacks are chains of frames in an array, shared between threads
 * and never changed once made, so a thread is copied by copying three integers. A level is the
 * set of threads after some text, all of them standing on something that consumes a byte
 * (CHARS, STRING, UNTIL): expanding rules and finishing alternatives happens when a thread is
 * added (closure), so following a byte is a scan of the current level.
 *
 * One expansion waits: a thread inside a repeat that may end (a label of an e-mail address,
 * digits of a number) could leave it before every byte, and what follows may be several rules
 * deep. The thread carries a mark instead (LAZY_EXIT), and what follows is expanded only for a
 * byte that can begin it (first[], the bytes each position's remaining sequence can begin with,
 * through the stack when that sequence may be empty). A walk over the vocabulary then pays for
 * the run's bytes one thread at a time. */
#include "text/grammar.h"

#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

enum { G_END, G_CHARS, G_RULE, G_STRING, G_UNTIL };

#define MAX_THREADS 1024     /* per level; a grammar needing more is ambiguous beyond use */
#define MAX_CLOSURE_DEPTH 4096
#define MAX_TERMINATOR 64
#define MAX_SETS 1024        /* distinct byte sets in a grammar, */
#define SET_SLOTS 2048       /* found by hash: a set is looked up for every literal byte */

typedef struct q3_gelem {
    uint8_t kind;
    uint16_t min, max;
    uint32_t arg;            /* set, rule or terminator index */
} q3_gelem;

typedef struct terminator {
    uint8_t len;
    unsigned char text[MAX_TERMINATOR];
    uint8_t (*next)[256];    /* [len][256]: bytes of it matched after one more byte (KMP automaton) */
} terminator;

/* ---- building ---- */

typedef struct brule {
    q3_seq *alts;
    int n, cap;
} brule;

struct q3_grammar_builder {
    brule *rules;
    int n_rules, cap_rules;
    long n_elems;            /* in all alternatives */
    uint8_t (*sets)[32];
    int n_sets, cap_sets;
    int set_slots[SET_SLOTS]; /* hash table of sets: index + 1, 0 empty */
    terminator *terms;
    int n_terms, cap_terms;
    bool failed;
    bool too_large;          /* past Q3_GRAMMAR_MAX_RULES, Q3_GRAMMAR_MAX_ELEMS or MAX_SETS */
};

static bool grow(void **p, int *cap, int need, size_t size) {
    if (need <= *cap) return true;
    int c = *cap ? *cap : 8;
    while (c < need) c *= 2;
    void *q = realloc(*p, (size_t)c * size);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

q3_grammar_builder *q3_gb_new(void) { return calloc(1, sizeof(q3_grammar_builder)); }

void q3_seq_free(q3_seq *s) {
    free(s->e);
    *s = (q3_seq){0};
}

void q3_gb_free(q3_grammar_builder *b) {
    if (!b) return;
    for (int r = 0; r < b->n_rules; r++) {
        for (int a = 0; a < b->rules[r].n; a++) q3_seq_free(&b->rules[r].alts[a]);
        free(b->rules[r].alts);
    }
    for (int t = 0; t < b->n_terms; t++) free(b->terms[t].next);
    free(b->rules);
    free(b->sets);
    free(b->terms);
    free(b);
}

bool q3_gb_too_large(const q3_grammar_builder *b) { return b->too_large; }

int q3_gb_rule(q3_grammar_builder *b) {
    if (b->n_rules == Q3_GRAMMAR_MAX_RULES) b->too_large = true;
    if (b->too_large) return 0;
    if (!grow((void **)&b->rules, &b->cap_rules, b->n_rules + 1, sizeof *b->rules)) {
        b->failed = true;
        return 0;
    }
    b->rules[b->n_rules] = (brule){0};
    return b->n_rules++;
}

void q3_gb_add_alt(q3_grammar_builder *b, int rule, q3_seq *s) {
    brule *r = rule < b->n_rules ? &b->rules[rule] : NULL;
    if ((b->n_elems += s->n) > Q3_GRAMMAR_MAX_ELEMS) b->too_large = true;
    if (b->too_large) {
        q3_seq_free(s);
        return;
    }
    if (s->failed || !r || !grow((void **)&r->alts, &r->cap, r->n + 1, sizeof *r->alts)) {
        b->failed = true;
        q3_seq_free(s);
        return;
    }
    r->alts[r->n++] = *s;
    *s = (q3_seq){0};
}

static void seq_add(q3_seq *s, q3_gelem e) {
    if (s->failed || !grow((void **)&s->e, &s->cap, s->n + 1, sizeof *s->e)) {
        s->failed = true;
        return;
    }
    s->e[s->n++] = e;
}

/* The index of a set equal to in (sets are shared). */
static int set_index(q3_grammar_builder *b, const uint8_t in[32]) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (int i = 0; i < 32; i++) h = (h ^ in[i]) * 16777619u;
    int slot = (int)(h & (SET_SLOTS - 1));
    for (; b->set_slots[slot]; slot = (slot + 1) & (SET_SLOTS - 1))
        if (!memcmp(b->sets[b->set_slots[slot] - 1], in, 32)) return b->set_slots[slot] - 1;
    if (b->n_sets == MAX_SETS) {
        b->too_large = true;
        return 0;
    }
    if (!grow((void **)&b->sets, &b->cap_sets, b->n_sets + 1, sizeof *b->sets)) {
        b->failed = true;
        return 0;
    }
    memcpy(b->sets[b->n_sets], in, 32);
    b->set_slots[slot] = b->n_sets + 1;
    return b->n_sets++;
}

static void seq_bits(q3_grammar_builder *b, q3_seq *s, const uint8_t bits[32], int min, int max) {
    bool any = false;
    for (int i = 0; i < 32; i++) any |= bits[i] != 0;
    if (!any || max < 1 || min > max) {
        s->failed = true; /* a set that matches nothing, or an impossible count: a caller's bug */
        return;
    }
    seq_add(s, (q3_gelem){G_CHARS, (uint16_t)min, (uint16_t)max, (uint32_t)set_index(b, bits)});
}

void q3_seq_set(q3_grammar_builder *b, q3_seq *s, const bool in[256], int min, int max) {
    uint8_t bits[32] = {0};
    for (int c = 0; c < 256; c++)
        if (in[c]) bits[c >> 3] |= (uint8_t)(1u << (c & 7));
    seq_bits(b, s, bits, min, max);
}

void q3_seq_literal(q3_grammar_builder *b, q3_seq *s, const char *text, size_t len) {
    for (size_t i = 0; i < len; i++) {
        uint8_t bits[32] = {0};
        unsigned char c = (unsigned char)text[i];
        bits[c >> 3] = (uint8_t)(1u << (c & 7));
        seq_bits(b, s, bits, 1, 1);
    }
}

void q3_seq_class(q3_grammar_builder *b, q3_seq *s, const char *spec, int min, int max) {
    bool in[256] = {0}, negate = *spec == '^';
    const unsigned char *p = (const unsigned char *)spec + negate;
    while (*p) {
        unsigned lo = *p == '\\' && p[1] ? *++p : *p;
        unsigned hi = lo;
        if (p[1] == '-' && p[2]) {
            p += 2;
            hi = *p == '\\' && p[1] ? *++p : *p;
        }
        for (unsigned c = lo; c <= hi && c < 256; c++) in[c] = true;
        p++;
    }
    if (negate)
        for (int c = 0; c < 256; c++) in[c] = !in[c];
    q3_seq_set(b, s, in, min, max);
}

void q3_seq_append(q3_seq *s, const q3_seq *src) {
    if (src->failed) s->failed = true;
    for (int i = 0; i < src->n; i++) seq_add(s, src->e[i]);
}

void q3_seq_rule(q3_seq *s, int rule) { seq_add(s, (q3_gelem){G_RULE, 1, 1, (uint32_t)rule}); }

void q3_seq_string(q3_seq *s, int min_chars, int max_chars) {
    if (max_chars > Q3_GRAMMAR_UNBOUNDED) max_chars = Q3_GRAMMAR_UNBOUNDED;
    if (min_chars < 0 || min_chars > max_chars) s->failed = true;
    else seq_add(s, (q3_gelem){G_STRING, (uint16_t)min_chars, (uint16_t)max_chars, 0});
}

/* The automaton of a terminator: from j bytes matched, byte c leads to the longest prefix of the
 * terminator that ends the text matched so far plus c. */
static bool terminator_init(terminator *t, const char *text) {
    size_t n = strlen(text);
    if (n == 0 || n > MAX_TERMINATOR) return false;
    t->len = (uint8_t)n;
    memcpy(t->text, text, n);
    if (!(t->next = calloc(n, sizeof *t->next))) return false;
    for (size_t j = 0; j < n; j++)
        for (int c = 0; c < 256; c++) {
            size_t k = j + 1 < n + 1 ? j + 1 : n; /* try the longest candidate first */
            for (; k > 0; k--) {
                /* text[0..k) must equal (text[0..j) + c)'s last k bytes */
                if (t->text[k - 1] != c) continue;
                if (!memcmp(t->text, t->text + j - (k - 1), k - 1)) break;
            }
            t->next[j][c] = (uint8_t)k;
        }
    return true;
}

void q3_seq_until(q3_grammar_builder *b, q3_seq *s, const char *text) {
    if (!grow((void **)&b->terms, &b->cap_terms, b->n_terms + 1, sizeof *b->terms) ||
        !terminator_init(&b->terms[b->n_terms], text)) {
        s->failed = true;
        return;
    }
    seq_add(s, (q3_gelem){G_UNTIL, 1, 1, (uint32_t)b->n_terms++});
}

/* ---- the compiled grammar ---- */

struct q3_grammar {
    atomic_int refs;
    q3_gelem *elems;
    uint32_t n_elems;
    uint32_t *alt_start;     /* first element of each alternative, grouped by rule */
    uint32_t *rule_alts;     /* [n_rules + 1]: rule r's alternatives are alt_start[rule_alts[r] .. rule_alts[r + 1]) */
    int n_rules;
    uint8_t (*sets)[32];
    terminator *terms;
    int n_terms;
    uint8_t (*first)[32];    /* per element: the bytes its position's rest of the alternative can begin with */
    bool *to_end;            /* per element: that rest can be empty (what follows is the caller's) */
};

static bool nullable_elem(const q3_gelem *e, const bool *nullable_rule) {
    return (e->kind == G_CHARS && e->min == 0) || (e->kind == G_RULE && nullable_rule[e->arg]);
}

/* Which rules can match the empty text (a fixpoint over the rules). */
static void find_nullable(const q3_grammar_builder *b, bool *nullable) {
    for (bool changed = true; changed;) {
        changed = false;
        for (int r = 0; r < b->n_rules; r++) {
            for (int a = 0; a < b->rules[r].n && !nullable[r]; a++) {
                const q3_seq *s = &b->rules[r].alts[a];
                int i = 0;
                while (i < s->n && nullable_elem(&s->e[i], nullable)) i++;
                if (i == s->n) nullable[r] = changed = true;
            }
        }
    }
}

/* Depth-first search for a rule reached again before a byte is consumed. state: 0 unseen,
 * 1 on the path, 2 done. */
static bool reaches_itself(const q3_grammar_builder *b, const bool *nullable, uint8_t *state, int r) {
    if (state[r] == 1) return true;
    if (state[r] == 2) return false;
    state[r] = 1;
    for (int a = 0; a < b->rules[r].n; a++) {
        const q3_seq *s = &b->rules[r].alts[a];
        for (int i = 0; i < s->n; i++) {
            if (s->e[i].kind == G_RULE && reaches_itself(b, nullable, state, (int)s->e[i].arg)) return true;
            if (!nullable_elem(&s->e[i], nullable)) break;
        }
    }
    state[r] = 2;
    return false;
}

static q3_status check_rules(const q3_grammar_builder *b, q3_error *e) {
    for (int r = 0; r < b->n_rules; r++) {
        if (b->rules[r].n == 0) return q3_fail(e, Q3_EINVAL, "grammar: rule %d has no alternative", r);
        for (int a = 0; a < b->rules[r].n; a++)
            for (int i = 0; i < b->rules[r].alts[a].n; i++)
                if (b->rules[r].alts[a].e[i].kind == G_RULE && b->rules[r].alts[a].e[i].arg >= (uint32_t)b->n_rules)
                    return q3_fail(e, Q3_EINVAL, "grammar: rule %d refers to a rule that does not exist", r);
    }
    bool *nullable = calloc((size_t)b->n_rules + 1, sizeof *nullable);
    uint8_t *state = calloc((size_t)b->n_rules + 1, 1);
    if (!nullable || !state) {
        free(nullable);
        free(state);
        return q3_fail(e, Q3_ENOMEM, "grammar: out of memory");
    }
    find_nullable(b, nullable);
    bool cycle = false;
    for (int r = 0; r < b->n_rules && !cycle; r++) cycle = reaches_itself(b, nullable, state, r);
    free(nullable);
    free(state);
    if (cycle) return q3_fail(e, Q3_EINVAL, "grammar: a rule repeats something that may be empty, or recurses on the left");
    return Q3_OK;
}

void q3_grammar_release(q3_grammar *g) {
    if (!g || atomic_fetch_sub(&g->refs, 1) != 1) return;
    for (int t = 0; t < g->n_terms; t++) free(g->terms[t].next);
    free(g->terms);
    free(g->elems);
    free(g->alt_start);
    free(g->rule_alts);
    free(g->sets);
    free(g->first);
    free(g->to_end);
    free(g);
}

q3_grammar *q3_grammar_retain(q3_grammar *g) {
    atomic_fetch_add(&g->refs, 1);
    return g;
}

/* Lays the rules out flat: the start sequence, then every alternative followed by END. */
static bool flatten(q3_grammar *g, const q3_grammar_builder *b, int root) {
    uint32_t n = 2, n_alts = 0;
    for (int r = 0; r < b->n_rules; r++)
        for (int a = 0; a < b->rules[r].n; a++) n += (uint32_t)b->rules[r].alts[a].n + 1, n_alts++;
    g->elems = malloc(n * sizeof *g->elems);
    g->alt_start = malloc((n_alts + 1) * sizeof *g->alt_start);
    g->rule_alts = malloc(((size_t)b->n_rules + 1) * sizeof *g->rule_alts);
    if (!g->elems || !g->alt_start || !g->rule_alts) return false;
    g->elems[0] = (q3_gelem){G_RULE, 1, 1, (uint32_t)root};
    g->elems[1] = (q3_gelem){G_END, 0, 0, 0};
    uint32_t at = 2, alt = 0;
    for (int r = 0; r < b->n_rules; r++) {
        g->rule_alts[r] = alt;
        for (int a = 0; a < b->rules[r].n; a++) {
            const q3_seq *s = &b->rules[r].alts[a];
            g->alt_start[alt++] = at;
            if (s->n) memcpy(g->elems + at, s->e, (size_t)s->n * sizeof *s->e); /* an empty one has no array */
            at += (uint32_t)s->n;
            g->elems[at++] = (q3_gelem){G_END, 0, 0, 0};
        }
    }
    g->rule_alts[b->n_rules] = alt;
    g->n_elems = at;
    g->n_rules = b->n_rules;
    return true;
}

static void set_union(uint8_t *into, const uint8_t *from) {
    for (int i = 0; i < 32; i++) into[i] |= from[i];
}

/* One element's own first bytes and emptiness; STRING and UNTIL may begin with anything. */
static bool elem_first(const q3_grammar *g, uint32_t p, const uint8_t (*rule_first)[32], const bool *rule_empty,
                       uint8_t *first) {
    const q3_gelem *e = &g->elems[p];
    switch (e->kind) {
    case G_CHARS: set_union(first, g->sets[e->arg]); return e->min == 0;
    case G_RULE: set_union(first, rule_first[e->arg]); return rule_empty[e->arg];
    case G_END: return true;
    default: memset(first, 0xFF, 32); return false;
    }
}

/* first[] and to_end[] for every position, from the rules' first bytes and emptiness (a
 * fixpoint over the rules, then each alternative from its end back). */
static bool analyze(q3_grammar *g) {
    uint8_t (*rule_first)[32] = calloc((size_t)g->n_rules + 1, 32);
    bool *rule_empty = calloc((size_t)g->n_rules + 1, sizeof *rule_empty);
    g->first = calloc(g->n_elems, 32);
    g->to_end = calloc(g->n_elems, sizeof *g->to_end);
    bool ok = rule_first && rule_empty && g->first && g->to_end;
    for (bool changed = ok; changed;) {
        changed = false;
        for (int r = 0; r < g->n_rules; r++)
            for (uint32_t a = g->rule_alts[r]; a < g->rule_alts[r + 1]; a++) {
                uint8_t first[32] = {0};
                bool empty = true;
                for (uint32_t p = g->alt_start[a]; empty && g->elems[p].kind != G_END; p++)
                    empty = elem_first(g, p, (const uint8_t (*)[32])rule_first, rule_empty, first);
                for (int i = 0; i < 32; i++) changed |= (first[i] & ~rule_first[r][i]) != 0;
                set_union(rule_first[r], first);
                if (empty && !rule_empty[r]) rule_empty[r] = changed = true;
            }
    }
    for (uint32_t p = g->n_elems; ok && p-- > 0;) {
        bool empty = elem_first(g, p, (const uint8_t (*)[32])rule_first, rule_empty, g->first[p]);
        g->to_end[p] = g->elems[p].kind == G_END || (empty && g->to_end[p + 1]);
        if (g->elems[p].kind != G_END && empty) set_union(g->first[p], g->first[p + 1]);
    }
    free(rule_first);
    free(rule_empty);
    return ok;
}

q3_status q3_grammar_build(q3_grammar_builder *b, int root, q3_grammar **out, q3_error *e) {
    *out = NULL;
    if (b->too_large)
        return q3_fail(e, Q3_EINVAL, "grammar: larger than %d rules, %d elements or %d character sets",
                       Q3_GRAMMAR_MAX_RULES, Q3_GRAMMAR_MAX_ELEMS, MAX_SETS);
    if (b->failed) return q3_fail(e, Q3_ENOMEM, "grammar: out of memory while building");
    if (root < 0 || root >= b->n_rules) return q3_fail(e, Q3_EINVAL, "grammar: no root rule");
    q3_status st = check_rules(b, e);
    if (st) return st;
    q3_grammar *g = calloc(1, sizeof *g);
    if (!g) return q3_fail(e, Q3_ENOMEM, "grammar: out of memory");
    atomic_init(&g->refs, 1);
    bool ok = flatten(g, b, root) && (g->sets = malloc((size_t)(b->n_sets ? b->n_sets : 1) * sizeof *g->sets)) &&
              (g->terms = calloc((size_t)(b->n_terms ? b->n_terms : 1), sizeof *g->terms));
    if (ok) {
        if (b->n_sets) memcpy(g->sets, b->sets, (size_t)b->n_sets * sizeof *g->sets);
        ok = analyze(g);
        for (int t = 0; t < b->n_terms; t++) { /* the automata move to the grammar */
            g->terms[t] = b->terms[t];
            b->terms[t].next = NULL;
        }
        g->n_terms = b->n_terms;
    }
    if (!ok) {
        q3_grammar_release(g);
        return q3_fail(e, Q3_ENOMEM, "grammar: out of memory");
    }
    *out = g;
    return Q3_OK;
}

/* ---- the matcher ---- */

typedef struct frame {
    uint32_t ret;            /* where the caller goes on */
    uint32_t up;             /* the caller's own frame; 0: none */
} frame;

typedef struct thread {
    uint32_t pos;
    uint32_t stack;          /* frame index; 0: the empty stack */
    uint16_t count;          /* repeats of CHARS, characters of STRING */
    uint8_t sub;             /* STRING: escape / UTF-8 state; UNTIL: terminator bytes matched;
                              * CHARS: LAZY_EXIT when it may also leave the repeat (not expanded) */
} thread;

#define LAZY_EXIT 1

typedef struct level {
    uint32_t first;          /* its threads are threads[first .. the next level's first) */
    uint32_t frames_mark;    /* frames made after this level began go with it */
    bool accept;
} level;

struct q3_matcher {
    q3_grammar *g;
    frame *frames;
    int n_frames, cap_frames;
    thread *threads;
    int n_threads, cap_threads;
    level *levels;
    int n_levels, cap_levels;
    thread *scratch;         /* lazy exits expanded for one byte (a stack of regions) */
    int n_scratch, cap_scratch, scratch_from;
    bool into_scratch;       /* closure adds to scratch[scratch_from ..], not the level */
    bool failed;             /* out of memory, or a closure too deep, during the level being built */
};

static level *top(const q3_matcher *m) { return &m->levels[m->n_levels - 1]; }

/* A frame returning to ret above up. Returning to an END would pop at once, so the caller's
 * frame serves (tail calls: right-recursive rules do not grow the stack). */
static uint32_t push_frame(q3_matcher *m, uint32_t ret, uint32_t up) {
    if (m->g->elems[ret].kind == G_END) return up;
    if (!grow((void **)&m->frames, &m->cap_frames, m->n_frames + 1, sizeof *m->frames)) {
        m->failed = true;
        return up;
    }
    m->frames[m->n_frames] = (frame){ret, up};
    return (uint32_t)m->n_frames++;
}

static bool same_stack(const q3_matcher *m, uint32_t a, uint32_t b) {
    while (a != b) {
        if (!a || !b || m->frames[a].ret != m->frames[b].ret) return false;
        a = m->frames[a].up;
        b = m->frames[b].up;
    }
    return true;
}

/* Appends t to the region [from, *n) of list unless it is there already. */
static void add_unique(q3_matcher *m, thread **list, int *n, int *cap, int from, thread t) {
    for (int i = from; i < *n; i++) {
        const thread *u = &(*list)[i];
        if (u->pos == t.pos && u->count == t.count && u->sub == t.sub && same_stack(m, u->stack, t.stack)) return;
    }
    if (*n - from >= MAX_THREADS) return; /* see MAX_THREADS */
    if (!grow((void **)list, cap, *n + 1, sizeof **list)) {
        m->failed = true;
        return;
    }
    (*list)[(*n)++] = t;
}

static void add_thread(q3_matcher *m, thread t) {
    if (m->into_scratch) add_unique(m, &m->scratch, &m->n_scratch, &m->cap_scratch, m->scratch_from, t);
    else add_unique(m, &m->threads, &m->n_threads, &m->cap_threads, (int)top(m)->first, t);
}

static bool in_set(const uint8_t *set, unsigned char c) { return set[c >> 3] >> (c & 7) & 1; }

/* Whether leaving the repeat t stands in could reach the end of everything without a byte. */
static bool exit_reaches_end(const q3_matcher *m, thread t) {
    if (!m->g->to_end[t.pos + 1]) return false;
    for (uint32_t f = t.stack; f; f = m->frames[f].up)
        if (!m->g->to_end[m->frames[f].ret]) return false;
    return true;
}

/* Whether byte c could begin what follows the repeat t stands in (through the stack where the
 * rest of its alternative may be empty). */
static bool exit_takes(const q3_matcher *m, thread t, unsigned char c) {
    uint32_t p = t.pos + 1, f = t.stack;
    for (;;) {
        if (in_set(m->g->first[p], c)) return true;
        if (!m->g->to_end[p] || !f) return false;
        p = m->frames[f].ret;
        f = m->frames[f].up;
    }
}

/* Adds the threads that a thread at pos stands for once nothing more is consumed: rules are
 * entered, finished alternatives return, optional repeats are passed. */
static void closure(q3_matcher *m, thread t, int depth) {
    const q3_grammar *g = m->g;
    const q3_gelem *e = &g->elems[t.pos];
    if (depth > MAX_CLOSURE_DEPTH) {
        m->failed = true;
        return;
    }
    switch (e->kind) {
    case G_END:
        if (!t.stack) {
            if (!m->into_scratch) top(m)->accept = true; /* a lazy exit's end was counted when it was made */
        } else {
            frame f = m->frames[t.stack];
            closure(m, (thread){f.ret, f.up, 0, 0}, depth + 1);
        }
        return;
    case G_RULE: {
        uint32_t fr = push_frame(m, t.pos + 1, t.stack);
        for (uint32_t a = g->rule_alts[e->arg]; a < g->rule_alts[e->arg + 1]; a++)
            closure(m, (thread){g->alt_start[a], fr, 0, 0}, depth + 1);
        return;
    }
    case G_CHARS:
        if (t.count < e->max && t.count >= e->min) { /* may stay or leave: leaving waits (LAZY_EXIT) */
            t.sub = LAZY_EXIT;
            add_thread(m, t);
            if (!m->into_scratch && exit_reaches_end(m, t)) top(m)->accept = true;
        } else if (t.count < e->max) {
            add_thread(m, t);
        } else {
            closure(m, (thread){t.pos + 1, t.stack, 0, 0}, depth + 1);
        }
        return;
    default:
        add_thread(m, t);
    }
}

/* JSON string states: between characters; after a backslash; in \uXXXX with that many hex
 * digits still wanted (after \uD the next is 0-7, and \u000 is not followed by 0: unpaired
 * surrogates and NUL, which parsers such as jansson refuse, are not generated); in a UTF-8 sequence with that many continuation bytes still wanted, the
 * next one in 80..BF, or (after E0, ED, F0, F4) in the narrower range that keeps the character
 * from being overlong, a surrogate or past U+10FFFF (RFC 3629). */
enum { S_TEXT, S_ESCAPE, S_HEX4, S_HEX3, S_HEX2, S_HEX1, S_HEXD, S_ZERO3, S_ZERO2, S_ZERO1,
       S_CONT1, S_CONT2, S_CONT3, S_E0, S_ED, S_F0, S_F4 };
typedef enum { STEP_REJECT, STEP_MORE, STEP_CHAR, STEP_CLOSE } string_step;

static string_step lead_byte(unsigned char c, uint8_t *next) {
    if (c >= 0xC2 && c <= 0xDF) *next = S_CONT1;
    else if (c == 0xE0) *next = S_E0;
    else if (c == 0xED) *next = S_ED;
    else if (c >= 0xE1 && c <= 0xEF) *next = S_CONT2;
    else if (c == 0xF0) *next = S_F0;
    else if (c == 0xF4) *next = S_F4;
    else if (c >= 0xF1 && c <= 0xF3) *next = S_CONT3;
    else return STEP_REJECT;
    return STEP_MORE;
}

static string_step step_string(uint8_t sub, unsigned char c, uint8_t *next) {
    *next = S_TEXT;
    switch (sub) {
    case S_TEXT:
        if (c == '"') return STEP_CLOSE;
        if (c == '\\') return *next = S_ESCAPE, STEP_MORE;
        if (c < 0x20) return STEP_REJECT;
        return c < 0x80 ? STEP_CHAR : lead_byte(c, next);
    case S_ESCAPE:
        if (c == 'u') return *next = S_HEX4, STEP_MORE;
        return c && strchr("\"\\/bfnrt", c) ? STEP_CHAR : STEP_REJECT;
    case S_HEXD:
        return c >= '0' && c <= '7' ? (*next = S_HEX2, STEP_MORE) : STEP_REJECT;
    case S_HEX4: case S_HEX3: case S_HEX2: case S_HEX1: case S_ZERO3: case S_ZERO2: case S_ZERO1: {
        bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (!hex || (sub == S_ZERO1 && c == '0')) return STEP_REJECT;
        if (sub == S_HEX4 && (c | 0x20) == 'd') return *next = S_HEXD, STEP_MORE;
        if (sub == S_HEX4 && c == '0') return *next = S_ZERO3, STEP_MORE;
        if ((sub == S_ZERO3 || sub == S_ZERO2) && c == '0') return *next = (uint8_t)(sub + 1), STEP_MORE;
        if (sub == S_ZERO3) sub = S_HEX3; /* a nonzero digit: the rest is free */
        if (sub == S_ZERO2) sub = S_HEX2;
        return sub == S_HEX1 || sub == S_ZERO1 ? STEP_CHAR : (*next = (uint8_t)(sub + 1), STEP_MORE);
    }
    case S_E0: case S_ED: case S_F0: case S_F4: {
        static const unsigned char lo[] = {0xA0, 0x80, 0x90, 0x80}, hi[] = {0xBF, 0x9F, 0xBF, 0x8F};
        int k = sub - S_E0;
        if (c < lo[k] || c > hi[k]) return STEP_REJECT;
        return *next = sub <= S_ED ? S_CONT1 : S_CONT2, STEP_MORE;
    }
    default: /* S_CONT1..3 */
        if (c < 0x80 || c > 0xBF) return STEP_REJECT;
        return sub == S_CONT1 ? STEP_CHAR : (*next = (uint8_t)(sub - 1), STEP_MORE);
    }
}

/* The threads t leads to after byte c, added to the level being built. */
static void advance(q3_matcher *m, thread t, unsigned char c);

/* A lazy thread's way out, for byte c: what follows the repeat, expanded into a scratch region,
 * each thread of it then advanced by c into the level being built. */
static void advance_exit(q3_matcher *m, thread t, unsigned char c) {
    int from = m->n_scratch, was_from = m->scratch_from;
    bool was_into = m->into_scratch;
    m->into_scratch = true;
    m->scratch_from = from;
    closure(m, (thread){t.pos + 1, t.stack, 0, 0}, 0);
    int to = m->n_scratch;
    m->into_scratch = was_into;
    m->scratch_from = was_from;
    for (int i = from; i < to && !m->failed; i++) advance(m, m->scratch[i], c);
    m->n_scratch = from;
}

static void advance(q3_matcher *m, thread t, unsigned char c) {
    const q3_grammar *g = m->g;
    const q3_gelem *e = &g->elems[t.pos];
    if (e->kind == G_CHARS) {
        if (in_set(g->sets[e->arg], c)) closure(m, (thread){t.pos, t.stack, (uint16_t)(t.count + 1), 0}, 0);
        if (t.sub == LAZY_EXIT && exit_takes(m, t, c)) advance_exit(m, t, c);
    } else if (e->kind == G_STRING) {
        uint8_t sub;
        string_step s = step_string(t.sub, c, &sub);
        if (s == STEP_REJECT) return;
        if (s == STEP_CLOSE) {
            if (t.count >= e->min) closure(m, (thread){t.pos + 1, t.stack, 0, 0}, 0);
            return;
        }
        uint16_t count = t.count;
        if (t.sub == S_TEXT) { /* a character begins: counted now, so that a bound refuses its first byte */
            if (e->max != Q3_GRAMMAR_UNBOUNDED && count >= e->max) return;
            if (count < Q3_GRAMMAR_UNBOUNDED - 1) count++;
        }
        add_thread(m, (thread){t.pos, t.stack, count, s == STEP_CHAR ? (uint8_t)S_TEXT : sub});
    } else if (e->kind == G_UNTIL) {
        const terminator *term = &g->terms[e->arg];
        uint8_t k = term->next[t.sub][c];
        if (k == term->len) closure(m, (thread){t.pos + 1, t.stack, 0, 0}, 0);
        else add_thread(m, (thread){t.pos, t.stack, 0, k});
    }
}

static bool begin_level(q3_matcher *m) {
    if (!grow((void **)&m->levels, &m->cap_levels, m->n_levels + 1, sizeof *m->levels)) return false;
    m->levels[m->n_levels++] = (level){(uint32_t)m->n_threads, (uint32_t)m->n_frames, false};
    m->failed = false;
    return true;
}

static void drop_levels(q3_matcher *m, int keep) {
    if (m->n_levels <= keep) return;
    m->n_threads = (int)m->levels[keep].first;
    m->n_frames = (int)m->levels[keep].frames_mark;
    m->n_levels = keep;
}

q3_status q3_matcher_new(q3_matcher **out, q3_grammar *g, q3_error *e) {
    *out = NULL;
    q3_matcher *m = calloc(1, sizeof *m);
    if (!m) return q3_fail(e, Q3_ENOMEM, "grammar: out of memory");
    m->g = q3_grammar_retain(g);
    m->n_frames = 1; /* frame 0 is the empty stack */
    bool ok = grow((void **)&m->frames, &m->cap_frames, 64, sizeof *m->frames) && begin_level(m);
    if (ok) closure(m, (thread){0, 0, 0, 0}, 0);
    if (!ok || m->failed) {
        q3_matcher_free(m);
        return q3_fail(e, Q3_ENOMEM, "grammar: out of memory, or rules nested too deep, at the start");
    }
    *out = m;
    return Q3_OK;
}

void q3_matcher_free(q3_matcher *m) {
    if (!m) return;
    q3_grammar_release(m->g);
    free(m->frames);
    free(m->threads);
    free(m->levels);
    free(m->scratch);
    free(m);
}

/* One byte: a new level from the current one. False (and no new level) when nothing survives. */
static bool push_byte(q3_matcher *m, unsigned char c) {
    int from = (int)top(m)->first, to = m->n_threads, before = m->n_levels;
    if (!begin_level(m)) return false;
    for (int i = from; i < to && !m->failed; i++) advance(m, m->threads[i], c);
    if (m->failed || (m->n_threads == (int)top(m)->first && !top(m)->accept)) {
        drop_levels(m, before);
        return false;
    }
    return true;
}

bool q3_matcher_push(q3_matcher *m, const char *bytes, size_t n) {
    int before = m->n_levels;
    for (size_t i = 0; i < n; i++) {
        if (!push_byte(m, (unsigned char)bytes[i])) {
            drop_levels(m, before);
            return false;
        }
    }
    if (n > 1) { /* one level for the whole push: the last one's threads move down */
        level *first = &m->levels[before], last = *top(m);
        memmove(m->threads + first->first, m->threads + last.first,
                (size_t)(m->n_threads - (int)last.first) * sizeof *m->threads);
        m->n_threads = (int)first->first + (m->n_threads - (int)last.first);
        first->accept = last.accept;
        m->n_levels = before + 1;
    }
    return true;
}

void q3_matcher_pop(q3_matcher *m) {
    if (m->n_levels > 1) drop_levels(m, m->n_levels - 1);
}

/* Copies frame f (and those under it) into fresh, through remap (old index -> new, 0: not yet). */
static uint32_t copy_stack(const q3_matcher *m, frame *fresh, int *n_fresh, uint32_t *remap, uint32_t f) {
    if (!f) return 0;
    if (remap[f]) return remap[f];
    uint32_t up = copy_stack(m, fresh, n_fresh, remap, m->frames[f].up);
    fresh[*n_fresh] = (frame){m->frames[f].ret, up};
    return remap[f] = (uint32_t)(*n_fresh)++;
}

void q3_matcher_commit(q3_matcher *m) {
    level cur = *top(m);
    int n = m->n_threads - (int)cur.first;
    frame *fresh = malloc((size_t)m->n_frames * sizeof *fresh);
    uint32_t *remap = calloc((size_t)m->n_frames, sizeof *remap);
    if (fresh && remap) { /* keep only the frames the current threads stand on */
        int n_fresh = 1;
        for (int i = 0; i < n; i++) {
            thread *t = &m->threads[cur.first + (uint32_t)i];
            t->stack = copy_stack(m, fresh, &n_fresh, remap, t->stack);
        }
        free(m->frames);
        m->frames = fresh;
        m->cap_frames = m->n_frames;
        m->n_frames = n_fresh;
        fresh = NULL;
    }
    free(fresh);
    free(remap);
    if (n) memmove(m->threads, m->threads + cur.first, (size_t)n * sizeof *m->threads);
    m->n_threads = n;
    m->levels[0] = (level){0, (uint32_t)m->n_frames, cur.accept};
    m->n_levels = 1;
}

bool q3_matcher_accepting(const q3_matcher *m) { return top(m)->accept; }

bool q3_matcher_finished(const q3_matcher *m) { return m->n_threads == (int)top(m)->first; }

q3_free_text q3_matcher_free_text(const q3_matcher *m, unsigned char *stop, unsigned char *next, int *room) {
    if (m->n_threads - (int)top(m)->first != 1) return Q3_FREE_NONE;
    const thread *t = &m->threads[top(m)->first];
    const q3_gelem *e = &m->g->elems[t->pos];
    if (e->kind == G_STRING && t->sub == S_TEXT) {
        *room = e->max == Q3_GRAMMAR_UNBOUNDED ? INT_MAX : e->max - t->count;
        return Q3_FREE_STRING;
    }
    if (e->kind != G_UNTIL) return Q3_FREE_NONE;
    *stop = m->g->terms[e->arg].text[0];
    *next = m->g->terms[e->arg].text[t->sub];
    return Q3_FREE_UNTIL;
}
