/* Values spelled as Python spells them, which is what a chat template's output holds under
 * transformers: repr() of floats and strings, and json.dumps (the templates' tojson filter and
 * the arguments of parsed tool calls). */
#ifndef Q3_PYFMT_H
#define Q3_PYFMT_H

#include <jansson.h>
#include <stdbool.h>

#include "base/buf.h"

/* repr(float): the shortest digits that read back as x, positional from 1e-4 up to 1e16,
 * exponent form (1e+16, 1.5e-07) outside; integral values keep ".0"; inf and nan as
 * json.dumps spells them (Infinity, -Infinity, NaN). */
void q3_py_float(q3_buf *b, double x);

/* A JSON string literal as json.dumps writes it: \" \\ \n \r \t \b \f, other control characters
 * as \u00XX; with ensure_ascii, every non-ASCII character as \uXXXX (surrogate pairs above
 * U+FFFF), else the UTF-8 as it is. */
void q3_py_json_string(q3_buf *b, const char *s, size_t n, bool ensure_ascii);
/* The same without the quotes: the inside of a string literal, for text that arrives in pieces
 * (a piece may end inside a UTF-8 character only when ensure_ascii is false). */
void q3_py_json_chars(q3_buf *b, const char *s, size_t n, bool ensure_ascii);

/* repr(str): single quotes unless the text holds ' and no ", backslash escapes for the quote,
 * \\, \t, \n, \r, and \xXX / \uXXXX / \UXXXXXXXX for characters Python does not print. */
void q3_py_repr_string(q3_buf *b, const char *s, size_t n);

/* json.dumps(v, ensure_ascii=False): ", " and ": " separators, keys in insertion order. */
void q3_py_json(q3_buf *b, const json_t *v);

#endif
