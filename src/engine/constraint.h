/* The grammar side of a sequence (constrained decoding), for the engine loop: before each draw,
 * which tokens the sequence's grammar allows; after it, the grammar following the token.
 *
 * A reasoning model may think first: with Q3_GRAMMAR_AFTER_THINK the first token may also be
 * <think>, which opens an unconstrained block that </think> closes; the grammar holds from the
 * token after it (Q3_GRAMMAR_THINKING starts inside the block, when the prompt opened it).
 * End-of-sequence tokens are allowed exactly when the text so far completes the grammar. */
#ifndef Q3_ENGINE_CONSTRAINT_H
#define Q3_ENGINE_CONSTRAINT_H

#include "engine/engine.h"
#include "text/token_mask.h"

/* What every constrained sequence of an engine shares; the engine thread's alone. */
typedef struct constraint_vocab {
    const q3_tokenizer *tok;
    int n_vocab;
    q3_token_trie *trie;       /* built at the first constrained request */
    uint64_t *mask;
    const int32_t *eos;
    int n_eos;
    int32_t think_open, think_close;
} constraint_vocab;

typedef struct constraint {
    q3_matcher *matcher;       /* NULL: the sequence is not constrained */
    q3_grammar_reasoning phase;
} constraint;

/* Cannot fail; tok may be NULL (then no request can be constrained). */
void constraint_vocab_init(constraint_vocab *v, const q3_tokenizer *tok, int n_vocab, const int32_t *eos, int n_eos);
void constraint_vocab_free(constraint_vocab *v);

/* A constraint for a new sequence; g NULL: none. Q3_EINVAL without a tokenizer, Q3_ENOMEM. */
q3_status constraint_start(constraint *c, const constraint_vocab *v, q3_grammar *g, q3_grammar_reasoning r,
                           q3_error *e);
void constraint_free(constraint *c);

/* The tokens the next draw may take (a mask over the vocabulary), or NULL when nothing
 * constrains it (no grammar, or inside a think block). Q3_ENOMEM when the trie cannot be made. */
q3_status constraint_allowed(constraint_vocab *v, constraint *c, const uint64_t **allow, q3_error *e);
/* Follows a drawn token. True when the grammar is complete and nothing may follow: the reply is
 * over. Cannot fail (the token was allowed). */
bool constraint_follow(constraint_vocab *v, constraint *c, int32_t token);

#endif
