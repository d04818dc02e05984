/* The JSON-schema compiler's state, shared by json_schema.c (schemas) and json_schema_tools.c
 * (tool calls). Nothing outside those two includes this. */
#ifndef Q3_JSON_SCHEMA_COMPILER_H
#define Q3_JSON_SCHEMA_COMPILER_H

#include "text/json_schema.h"

typedef struct memo_entry {
    const json_t *schema;
    int rule;
} memo_entry;

typedef struct compiler {
    q3_grammar_builder *b;
    const json_t *root;
    memo_entry *memo;
    int n_memo, cap_memo;
    json_t *keep;             /* schemas made while compiling (merges): alive until the end */
    int any_value;            /* -1 until needed */
    int ws;                   /* the white space between tokens; -1 until needed */
    char path[512];
    size_t path_len;
    int depth;                /* schemas being compiled, one inside the other */
    q3_error *e;
    q3_status st;
} compiler;

/* Rules return their id, or -1 after schema_fail has recorded the first error. */
int schema_fail(compiler *c, const char *keyword, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Appends to the error path; path_pop(c, the value returned) undoes it. */
size_t path_push(compiler *c, const char *fmt, const char *name);
void path_pop(compiler *c, size_t was);

void seq_ws(compiler *c, q3_seq *s);
void seq_lit(compiler *c, q3_seq *s, const char *text);
/* A rule whose one alternative is s (emptied). */
int rule_of(compiler *c, q3_seq *s);
int any_value_rule(compiler *c);
/* A JSON string: the quote, then characters min..max. */
int free_string_rule(compiler *c, int min, int max);
/* The rule of one schema (made once per schema object). */
int schema_rule(compiler *c, const json_t *s);

/* root is the schema $refs resolve against (NULL: none). */
q3_status compiler_init(compiler *c, const json_t *root, q3_error *e);
/* The grammar: optional white space, rule value, optional white space; frees the compiler's
 * state whether or not it succeeds. */
q3_status compiler_finish(compiler *c, int value, q3_grammar **out);

#endif
