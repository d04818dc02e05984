/* Grammars over bytes, and a pushdown matcher that follows generated text through one.
 *
 * A grammar is a set of rules; a rule is a list of alternatives; an alternative is a sequence of
 * elements, each one of:
 *   CHARS   a byte from a set, repeated min..max times (a literal is a run of one-byte sets);
 *   RULE    another rule (recursion allowed, except left recursion: see q3_grammar_build);
 *   STRING  the rest of a JSON string after its opening quote: characters (UTF-8, escapes
 *           \" \\ \/ \b \f \n \r \t \uXXXX, no control bytes) then the closing quote, with a
 *           number of characters in min..max;
 *   UNTIL   any bytes up to and including the first occurrence of a terminator (text of a
 *           tool-call parameter up to "\n</parameter>").
 * json_schema.c compiles JSON schemas into grammars; token_mask.c asks a matcher which tokens of
 * the vocabulary may come next.
 *
 * The matcher keeps the set of parse stacks the text so far allows (several when alternatives
 * are still open), as threads over immutable shared stack frames, and a history of such sets:
 * q3_matcher_push adds bytes as a new level, q3_matcher_pop goes back one level (what a walk
 * over the vocabulary's trie does), q3_matcher_commit makes the current level the base and
 * forgets the rest (what generating a token does). */
#ifndef Q3_GRAMMAR_H
#define Q3_GRAMMAR_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

#define Q3_GRAMMAR_UNBOUNDED 0xFFFF /* an element's max: no bound */
/* A builder holds at most this many rules and elements (about 16 MiB of grammar): grammars come
 * from requests, and building or matching one must stay bounded. */
#define Q3_GRAMMAR_MAX_RULES 100000
#define Q3_GRAMMAR_MAX_ELEMS 1000000

/* ---- building ---- */

typedef struct q3_grammar_builder q3_grammar_builder;

/* A sequence under construction: the caller owns it, fills it with the q3_seq_* functions, and
 * hands it to q3_gb_add_alt. Sequences can be built in any order and nesting. */
typedef struct q3_seq {
    struct q3_gelem *e;
    int n, cap;
    bool failed;
} q3_seq;

q3_grammar_builder *q3_gb_new(void);
void q3_gb_free(q3_grammar_builder *b);
/* A new rule without alternatives yet (so that rules can refer to each other); its id. */
int q3_gb_rule(q3_grammar_builder *b);
/* Adds s as an alternative of rule and empties s for reuse. */
void q3_gb_add_alt(q3_grammar_builder *b, int rule, q3_seq *s);
/* True once the builder went past Q3_GRAMMAR_MAX_RULES or Q3_GRAMMAR_MAX_ELEMS: what it builds
 * from then on is dropped, and q3_grammar_build refuses it. Cannot fail. */
bool q3_gb_too_large(const q3_grammar_builder *b);

void q3_seq_literal(q3_grammar_builder *b, q3_seq *s, const char *text, size_t len);
/* A set written as in a regex class without the brackets: "a-zA-Z0-9_.", "^\"\\\\" (a leading
 * ^ complements); each byte of it min..max times. */
void q3_seq_class(q3_grammar_builder *b, q3_seq *s, const char *spec, int min, int max);
/* A set given as 256 flags. */
void q3_seq_set(q3_grammar_builder *b, q3_seq *s, const bool in[256], int min, int max);
void q3_seq_rule(q3_seq *s, int rule);
void q3_seq_string(q3_seq *s, int min_chars, int max_chars);
void q3_seq_until(q3_grammar_builder *b, q3_seq *s, const char *terminator);
/* Appends a copy of src's elements to s. */
void q3_seq_append(q3_seq *s, const q3_seq *src);
void q3_seq_free(q3_seq *s);

typedef struct q3_grammar q3_grammar;

/* The grammar whose text is rule root. Q3_EINVAL when the builder went over its size limits, when
 * a rule has no alternative, when a rule can
 * reach itself without consuming a byte (left recursion, or a repeat of something that may be
 * empty: the matcher would never end expanding it), or for a builder that ran out of memory
 * (Q3_ENOMEM). The builder may be freed afterwards. The grammar is reference-counted: it starts
 * with one reference. */
q3_status q3_grammar_build(q3_grammar_builder *b, int root, q3_grammar **out, q3_error *e);
/* Adds a reference; cannot fail. */
q3_grammar *q3_grammar_retain(q3_grammar *g);
/* Drops a reference, freeing the grammar with the last; NULL is fine. */
void q3_grammar_release(q3_grammar *g);

/* ---- matching ---- */

typedef struct q3_matcher q3_matcher;

/* A matcher at the start of the grammar; it holds a reference to g. */
q3_status q3_matcher_new(q3_matcher **out, q3_grammar *g, q3_error *e);
void q3_matcher_free(q3_matcher *m);

/* Follows n bytes; true and a new level when the grammar allows them, false (and nothing
 * changed) when it does not. Out of memory reads as not allowed. */
bool q3_matcher_push(q3_matcher *m, const char *bytes, size_t n);
/* Back to the level before the last push; cannot fail (a no-op at the base). */
void q3_matcher_pop(q3_matcher *m);
/* The current level becomes the base: earlier levels can no longer be popped to. Cannot fail. */
void q3_matcher_commit(q3_matcher *m);
/* True when the text so far is a whole sentence of the grammar (generation may end here). */
bool q3_matcher_accepting(const q3_matcher *m);
/* True when no byte at all can follow (only the end may come). */
bool q3_matcher_finished(const q3_matcher *m);

/* Free text: the state is one thread inside a JSON string with no character pending
 * (Q3_FREE_STRING; *room: the characters the string may still take, INT_MAX without a bound), or
 * inside UNTIL text (Q3_FREE_UNTIL), where *stop is the terminator's first byte and *next the
 * byte that would take its match one further (== *stop when nothing of it is matched).
 * token_mask.c answers these from tables. */
typedef enum q3_free_text { Q3_FREE_NONE, Q3_FREE_STRING, Q3_FREE_UNTIL } q3_free_text;
q3_free_text q3_matcher_free_text(const q3_matcher *m, unsigned char *stop, unsigned char *next, int *room);

#endif
