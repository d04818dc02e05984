/* A Jinja template engine for chat templates, as Hugging Face transformers runs them.
 *
 * transformers renders a checkpoint's chat template with Jinja2's ImmutableSandboxedEnvironment,
 * trim_blocks and lstrip_blocks on, the loopcontrols extension ({% break %}, {% continue %}), its
 * own tojson filter (json.dumps with ensure_ascii=False) and the globals raise_exception and
 * strftime_now. This engine renders the same language the same way: statements (if/elif/else,
 * for with loop variables, `for ... if` and `else`, set and block set, macro, filter, with,
 * generation), expressions with Python's semantics (ints, floats, strings by character, lists,
 * dicts, None, Undefined), the filters and tests the templates use, the string and dict methods
 * they call, and Python's str() and repr() for output. Values are immutable, as in the immutable
 * sandbox; only namespace() objects take attribute assignments.
 *
 * Rendering is sandboxed: no I/O, and every render is bounded in output size, memory, steps (loop
 * iterations, calls, and the data operations read) and nesting depth (q3_jinja_limits), and so in
 * time; passing a bound is an error that names it.
 * Errors name the template and the line and column they arise at ("NAME:LINE:COL: message").
 */
#ifndef Q3_JINJA_H
#define Q3_JINJA_H

#include <jansson.h>
#include <stdint.h>

#include "base/error.h"

typedef struct q3_jinja q3_jinja;

typedef struct q3_jinja_limits {
    size_t max_output; /* bytes of rendered text */
    size_t max_memory; /* bytes of values one render may build */
    uint64_t max_steps; /* loop iterations, macro calls, and a step per 256 bytes that operations
                         * read (comparing, searching, printing): so time is bounded too */
    int max_depth;      /* macro calls and statement blocks nested in each other */
} q3_jinja_limits;

/* 8 MiB of output, 64 MiB of values, 1,000,000 steps, depth 100: together about a quarter of a
 * second of a release build at worst (tests/fuzz/RESULTS.md); cannot fail. */
q3_jinja_limits q3_jinja_default_limits(void);

/* Compiles len bytes of template source. name is how errors call the template (a file name).
 * A syntax error is Q3_EFORMAT naming the line and column; source that is not UTF-8 is
 * Q3_EFORMAT too. The template is read-only once compiled: any number of threads may render it
 * at once. */
q3_status q3_jinja_compile(const char *source, size_t len, const char *name, q3_jinja **out,
                           q3_error *e);

/* Renders with the members of context (a JSON object, may be NULL) as variables, into *out (the
 * caller frees). limits NULL means the defaults. A failure at render time (raise_exception, an
 * undefined value used wrongly, a type error, a limit) is Q3_EINVAL naming the template's line
 * and column; Q3_ENOMEM when memory runs out. */
q3_status q3_jinja_render(const q3_jinja *t, const json_t *context, const q3_jinja_limits *limits,
                          char **out, q3_error *e);

/* The source as compiled (newlines normalised to \n); cannot fail. */
const char *q3_jinja_source(const q3_jinja *t);

/* Frees NULL happily. */
void q3_jinja_free(q3_jinja *t);

#endif
