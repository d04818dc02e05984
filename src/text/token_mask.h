/* Which tokens of the vocabulary a grammar allows next: the per-step mask of constrained
 * decoding.
 *
 * The vocabulary's byte strings are kept as a trie laid out in depth-first order, each node
 * knowing where its subtree ends, so that one pass over the array with a matcher (grammar.h)
 * checks every token: a byte the matcher refuses skips the whole subtree under it, and tokens
 * sharing a prefix share its work. Inside free text, where nearly every token is allowed and a
 * walk would visit the whole trie, tables answer instead: the tokens that stay inside a JSON
 * string from its plain state, or that never hold the first byte of an UNTIL terminator, are
 * allowed wholesale, and only the rest are checked one by one.
 *
 * Special (control) tokens are never in the mask; the caller adds the end-of-sequence tokens
 * when q3_matcher_accepting says the text may end. */
#ifndef Q3_TOKEN_MASK_H
#define Q3_TOKEN_MASK_H

#include "text/grammar.h"
#include "text/tokenizer.h"

typedef struct q3_token_trie q3_token_trie;

/* The trie of tok's tokens, for masks over n_vocab tokens (the model's vocabulary, which may be
 * larger than the tokenizer's: the extra ids are never allowed). */
q3_status q3_token_trie_new(q3_token_trie **out, const q3_tokenizer *tok, int n_vocab, q3_error *e);
void q3_token_trie_free(q3_token_trie *t);

/* Words of a mask: (n_vocab + 63) / 64. */
size_t q3_token_mask_words(const q3_token_trie *t);

/* Sets allow (q3_token_mask_words words, bit i of word i / 64 for token i) to the tokens whose
 * bytes m accepts next. m is left as it was. Not thread-safe for one trie (it fills its tables
 * on first use); cannot fail: without memory for a table the walk serves instead. */
void q3_token_mask(q3_token_trie *t, q3_matcher *m, uint64_t *allow);

#endif
