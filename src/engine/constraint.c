/* Constrained decoding for the engine loop (see constraint.h). */
#include "engine/constraint.h"

#include <stdlib.h>
#include <string.h>

void constraint_vocab_init(constraint_vocab *v, const q3_tokenizer *tok, int n_vocab, const int32_t *eos, int n_eos) {
    *v = (constraint_vocab){.tok = tok, .n_vocab = n_vocab, .eos = eos, .n_eos = n_eos,
                            .think_open = tok ? q3_tok_find(tok, "<think>") : -1,
                            .think_close = tok ? q3_tok_find(tok, "</think>") : -1};
}

void constraint_vocab_free(constraint_vocab *v) {
    q3_token_trie_free(v->trie);
    free(v->mask);
    *v = (constraint_vocab){0};
}

q3_status constraint_start(constraint *c, const constraint_vocab *v, q3_grammar *g, q3_grammar_reasoning r,
                           q3_error *e) {
    *c = (constraint){0};
    if (!g) return Q3_OK;
    if (!v->tok) return q3_fail(e, Q3_EINVAL, "constrained decoding needs the model's tokenizer");
    /* Without <think> in the vocabulary there is no block to wait for. */
    c->phase = v->think_open < 0 || v->think_close < 0 ? Q3_GRAMMAR_AT_ONCE : r;
    return q3_matcher_new(&c->matcher, g, e);
}

void constraint_free(constraint *c) {
    q3_matcher_free(c->matcher);
    c->matcher = NULL;
}

static void allow(uint64_t *mask, int32_t id) { mask[id >> 6] |= 1ULL << (id & 63); }

q3_status constraint_allowed(constraint_vocab *v, constraint *c, const uint64_t **out, q3_error *e) {
    *out = NULL;
    if (!c->matcher || c->phase == Q3_GRAMMAR_THINKING) return Q3_OK;
    if (!v->trie) {
        q3_status st = q3_token_trie_new(&v->trie, v->tok, v->n_vocab, e);
        if (st) return st;
        if (!(v->mask = malloc(q3_token_mask_words(v->trie) * sizeof *v->mask)))
            return q3_fail(e, Q3_ENOMEM, "constrained decoding: out of memory for the token mask");
    }
    q3_token_mask(v->trie, c->matcher, v->mask);
    if (q3_matcher_accepting(c->matcher))
        for (int i = 0; i < v->n_eos; i++) allow(v->mask, v->eos[i]);
    if (c->phase == Q3_GRAMMAR_AFTER_THINK) allow(v->mask, v->think_open);
    *out = v->mask;
    return Q3_OK;
}

bool constraint_follow(constraint_vocab *v, constraint *c, int32_t token) {
    if (!c->matcher) return false;
    if (c->phase == Q3_GRAMMAR_THINKING) {
        if (token == v->think_close) c->phase = Q3_GRAMMAR_AT_ONCE;
        return false;
    }
    if (c->phase == Q3_GRAMMAR_AFTER_THINK) {
        c->phase = token == v->think_open ? Q3_GRAMMAR_THINKING : Q3_GRAMMAR_AT_ONCE;
        if (token == v->think_open) return false;
    }
    for (int i = 0; i < v->n_eos; i++)
        if (token == v->eos[i]) return false; /* the end: nothing to follow */
    size_t len = 0;
    const char *piece = q3_tok_piece(v->tok, token, &len);
    if (piece && len && q3_matcher_push(c->matcher, piece, len)) q3_matcher_commit(c->matcher);
    return q3_matcher_finished(c->matcher);
}
