/* JSON schemas, and the other shapes structured outputs ask for, compiled into grammars
 * (grammar.h) whose every sentence is JSON text that validates against the schema.
 *
 * Understood: type (one or a list; "null", "boolean", "integer", "number", "string", "array",
 * "object"), enum, const, properties (generated in the schema's order), required,
 * additionalProperties (false, true or a schema; absent means false when properties are given,
 * which still validates, and any members when they are not), items, minItems, maxItems,
 * minLength, maxLength, format (date, time, date-time, uuid, email, ipv4, hostname, uri; other
 * formats are free strings, as format is an annotation by default), pattern (a regex subset:
 * json_schema_regex.c), anyOf and oneOf (as alternatives), allOf of one schema, $ref to "#",
 * "#/$defs/..." or "#/definitions/...", OpenAPI's nullable. Annotations (title, description,
 * default, examples, ...) and unknown keywords are ignored. Keywords that constrain values in
 * ways the grammar does not (minimum, maximum, multipleOf, uniqueItems, not, if/then/else,
 * patternProperties, prefixItems, ...) are refused rather than ignored, so that a schema
 * accepted is a schema obeyed.
 *
 * Errors are Q3_EINVAL with a message that starts with the keyword at fault and where it is:
 * "'type' at $.properties.age: unknown type \"strnig\"". */
#ifndef Q3_JSON_SCHEMA_H
#define Q3_JSON_SCHEMA_H

#include <jansson.h>

#include "text/grammar.h"
#include "text/tool_call.h"

/* One JSON value valid under schema, with optional white space around it. */
q3_status q3_json_schema_grammar(const json_t *schema, q3_grammar **out, q3_error *e);

/* Any JSON object (response_format {"type": "json_object"}). */
q3_status q3_json_object_grammar(q3_grammar **out, q3_error *e);

/* One or more tool calls of the tools given (OpenAI's [{"type": "function", "function":
 * {"name", "parameters"}}, ...]) in the template's format (tool_call.h: Qwen3's JSON, or
 * Qwen3-Coder's XML), and nothing else; only calls of the tool named when name is not NULL
 * (then exactly one call). Q3_EINVAL naming the tool for a bad
 * tools list or parameters schema, or when name is not among the tools. */
q3_status q3_tool_call_grammar(const json_t *tools, const char *name, q3_tool_format format, q3_grammar **out,
                               q3_error *e);

/* ---- for json_schema.c's parts ---- */

/* Appends a full match of a JSON-schema pattern (ECMA-262 subset: literals, escapes \d \w \s
 * \D \W \S and escaped punctuation, classes [...] and [^...], ., groups (...) and (?:...),
 * alternation |, quantifiers * + ? {m} {m,} {m,n}, with ^ and $ only at the ends) to s, as the
 * characters of a JSON string body: characters that JSON would escape (", \, controls) are left
 * out of classes and '.', and are refused as literals. Q3_EINVAL naming the construct not
 * understood. */
q3_status q3_regex_append(q3_grammar_builder *b, q3_seq *s, const char *pattern, q3_error *e);

#endif
