/* JSON schema -> grammar (see json_schema.h).
 *
 * Every schema object becomes one rule, made once (a table from schema to rule), so that $ref
 * cycles become recursive rules. Objects generate their properties in the schema's order with
 * the first-or-rest construction: first_i stands for "properties i.. with none written yet",
 * rest_i for "properties i.. after at least one", so that commas fall right whichever optional
 * properties are left out. Between tokens, white space is nothing, a space, or one line break
 * with at most MAX_WS spaces or tabs of indentation (pretty-printed JSON, but no blank lines);
 * around the whole text, up to MAX_WS bytes of any white space. So a model cannot pad its way to
 * max_tokens; numbers have at most 16 digits in each part for the same reason. */
#include "text/json_schema_compiler.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ENUM_VALUES 512 /* half the matcher's live alternatives (MAX_THREADS in grammar.c) */

#define MAX_WS 20
/* Bounds on the work a schema can ask for (a request's schema is untrusted): subschemas compiled
 * (each is looked up among those before it), and nesting (compiling recurses; merges made by
 * $ref and anyOf beside other keywords can otherwise recurse without end). The grammar's own
 * size is bounded by the builder (Q3_GRAMMAR_MAX_RULES, Q3_GRAMMAR_MAX_ELEMS). */
#define MAX_SCHEMAS 8192
#define MAX_DEPTH 128
#define WS_CHARS " \t\n\r"

/* ---- errors and paths ---- */

int schema_fail(compiler *c, const char *keyword, const char *fmt, ...) {
    if (c->st) return -1;
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* A deep path keeps its last part, so that the reason still fits the error message. */
    const char *path = c->path_len > 160 ? c->path + c->path_len - 160 : c->path;
    c->st = q3_fail(c->e, Q3_EINVAL, "'%s' at $%s%s: %s", keyword, path == c->path ? "" : "...", path, msg);
    return -1;
}

size_t path_push(compiler *c, const char *fmt, const char *name) {
    size_t was = c->path_len;
    int n = snprintf(c->path + was, sizeof c->path - was, fmt, name);
    if (n > 0) c->path_len = was + (size_t)n < sizeof c->path ? was + (size_t)n : sizeof c->path - 1;
    return was;
}

void path_pop(compiler *c, size_t was) {
    c->path_len = was;
    c->path[was] = 0;
}

/* ---- keywords ---- */

static const char *const REFUSED[] = {
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "uniqueItems", "not", "if",
    "then", "else", "dependentRequired", "dependentSchemas", "dependencies", "patternProperties", "propertyNames",
    "minProperties", "maxProperties", "contains", "minContains", "maxContains", "prefixItems",
    "unevaluatedProperties", "unevaluatedItems", "additionalItems"};

static const char *const CONSTRAINTS[] = {
    "type", "enum", "const", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
    "minLength", "maxLength", "format", "pattern", "anyOf", "oneOf", "allOf", "$ref", "nullable"};

static bool in_list(const char *key, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(key, list[i])) return true;
    return false;
}

#define IN(key, list) in_list(key, list, sizeof list / sizeof *list)

static bool refuse_unsupported(compiler *c, const json_t *s) {
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)s, key, v) {
        (void)v;
        if (IN(key, REFUSED)) return schema_fail(c, key, "this keyword is not supported for constrained decoding") && false;
    }
    return true;
}

/* A non-negative integer keyword, or def when absent. */
static bool count_keyword(compiler *c, const json_t *s, const char *key, long long def, long long *out) {
    const json_t *v = json_object_get(s, key);
    *out = def;
    if (!v) return true;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1000000)
        return schema_fail(c, key, "must be a non-negative integer") && false;
    *out = json_integer_value(v);
    return true;
}

/* ---- small pieces ---- */

/* ws ::= (empty) | " " | "\n" [ \t]{0,MAX_WS} */
void seq_ws(compiler *c, q3_seq *s) {
    if (c->ws < 0) {
        c->ws = q3_gb_rule(c->b);
        q3_seq none = {0}, space = {0}, line = {0};
        seq_lit(c, &space, " ");
        seq_lit(c, &line, "\n");
        q3_seq_class(c->b, &line, " \t", 0, MAX_WS);
        q3_gb_add_alt(c->b, c->ws, &none);
        q3_gb_add_alt(c->b, c->ws, &space);
        q3_gb_add_alt(c->b, c->ws, &line);
    }
    q3_seq_rule(s, c->ws);
}

void seq_lit(compiler *c, q3_seq *s, const char *text) { q3_seq_literal(c->b, s, text, strlen(text)); }

/* A rule with one alternative: s. */
int rule_of(compiler *c, q3_seq *s) {
    int r = q3_gb_rule(c->b);
    q3_gb_add_alt(c->b, r, s);
    return r;
}

/* The JSON text of v, compact, as the value must appear. */
static int literal_rule(compiler *c, const json_t *v, const char *keyword) {
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text) return schema_fail(c, keyword, "value cannot be written as JSON");
    q3_seq s = {0};
    seq_lit(c, &s, text);
    free(text);
    return rule_of(c, &s);
}

static int alternatives(compiler *c, const int *rules, int n) {
    int r = q3_gb_rule(c->b);
    for (int i = 0; i < n; i++) {
        q3_seq s = {0};
        q3_seq_rule(&s, rules[i]);
        q3_gb_add_alt(c->b, r, &s);
    }
    return r;
}

static int integer_rule(compiler *c) {
    q3_seq s = {0}, zero = {0};
    q3_seq_class(c->b, &s, "-", 0, 1);
    q3_seq_class(c->b, &s, "1-9", 1, 1);
    q3_seq_class(c->b, &s, "0-9", 0, 15);
    q3_seq_class(c->b, &zero, "-", 0, 1);
    seq_lit(c, &zero, "0");
    int r = q3_gb_rule(c->b);
    q3_gb_add_alt(c->b, r, &s);
    q3_gb_add_alt(c->b, r, &zero);
    return r;
}

static int number_rule(compiler *c) {
    q3_seq frac = {0}, exp = {0}, none = {0}, s = {0};
    seq_lit(c, &frac, ".");
    q3_seq_class(c->b, &frac, "0-9", 1, 16);
    int f = rule_of(c, &frac);
    q3_gb_add_alt(c->b, f, &none);
    q3_seq_class(c->b, &exp, "eE", 1, 1);
    q3_seq_class(c->b, &exp, "+\\-", 0, 1);
    q3_seq_class(c->b, &exp, "0-9", 1, 2); /* up to e99: every parser reads it as a double */
    int x = rule_of(c, &exp);
    q3_gb_add_alt(c->b, x, &none);
    q3_seq_rule(&s, integer_rule(c));
    q3_seq_rule(&s, f);
    q3_seq_rule(&s, x);
    return rule_of(c, &s);
}

int free_string_rule(compiler *c, int min, int max) {
    q3_seq s = {0};
    seq_lit(c, &s, "\"");
    q3_seq_string(&s, min, max);
    return rule_of(c, &s);
}

/* ---- any JSON value ---- */

/* "{" ws (member ("," ws member)*)? "}", member = string ws ":" ws value ws; arrays alike. */
int any_value_rule(compiler *c) {
    if (c->any_value >= 0) return c->any_value;
    int value = c->any_value = q3_gb_rule(c->b);
    q3_seq s = {0};
    q3_seq_rule(&s, free_string_rule(c, 0, Q3_GRAMMAR_UNBOUNDED));
    seq_ws(c, &s);
    seq_lit(c, &s, ":");
    seq_ws(c, &s);
    q3_seq_rule(&s, value);
    seq_ws(c, &s);
    int member = rule_of(c, &s);
    q3_seq_rule(&s, value);
    seq_ws(c, &s);
    int element = rule_of(c, &s);
    int containers[2];
    for (int k = 0; k < 2; k++) {
        int item = k == 0 ? member : element, more = q3_gb_rule(c->b);
        seq_lit(c, &s, ","), seq_ws(c, &s), q3_seq_rule(&s, item), q3_seq_rule(&s, more);
        q3_gb_add_alt(c->b, more, &s);
        q3_gb_add_alt(c->b, more, &s); /* s is empty again: the end */
        int box = containers[k] = q3_gb_rule(c->b);
        seq_lit(c, &s, k == 0 ? "{" : "["), seq_ws(c, &s), q3_seq_rule(&s, item), q3_seq_rule(&s, more);
        seq_lit(c, &s, k == 0 ? "}" : "]");
        q3_gb_add_alt(c->b, box, &s);
        seq_lit(c, &s, k == 0 ? "{" : "["), seq_ws(c, &s), seq_lit(c, &s, k == 0 ? "}" : "]");
        q3_gb_add_alt(c->b, box, &s);
    }
    const char *words[] = {"true", "false", "null"};
    int alts[] = {containers[0], containers[1], free_string_rule(c, 0, Q3_GRAMMAR_UNBOUNDED), number_rule(c), 0, 0, 0};
    for (int i = 0; i < 3; i++) seq_lit(c, &s, words[i]), alts[4 + i] = rule_of(c, &s);
    for (int i = 0; i < 7; i++) q3_seq_rule(&s, alts[i]), q3_gb_add_alt(c->b, value, &s);
    return value;
}

/* ---- strings ---- */

/* The formats whose syntax is checked, as regexes over the string's characters. */
/* The calendar date of RFC 3339, days within their month: years 0001-9999 and no 29 February
 * (a leap year is more than a regex should say), so that every date is one that date parsers
 * (Python's date.fromisoformat, as jsonschema's format check uses) accept. */
#define DATE "([1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])-" \
             "((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))"
#define TIME "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+\\-]([01][0-9]|2[0-3]):[0-5][0-9])"

/* The formats whose syntax is checked, as regexes over the string's characters. */
static const struct {
    const char *name, *pattern;
} FORMATS[] = {
    {"date", DATE},
    {"time", TIME},
    {"date-time", DATE "T" TIME},
    {"uuid", "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"},
    {"email", "[a-zA-Z0-9._%+\\-]{1,32}@[a-zA-Z0-9\\-]{1,32}(\\.[a-zA-Z0-9\\-]{1,32}){0,2}\\.[a-zA-Z]{2,12}"},
    {"ipv4", "((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"},
    {"hostname", "[a-zA-Z0-9]([a-zA-Z0-9\\-]{0,61}[a-zA-Z0-9])?(\\.[a-zA-Z0-9]([a-zA-Z0-9\\-]{0,61}[a-zA-Z0-9])?){0,8}"},
    {"uri", "[a-zA-Z][a-zA-Z0-9+.\\-]{0,15}:[a-zA-Z0-9\\-._~:/?#@!$&'()*+,;=%\\[\\]]{1,2000}"},
};

static int string_rule(compiler *c, const json_t *s) {
    long long min, max;
    if (!count_keyword(c, s, "minLength", 0, &min) || !count_keyword(c, s, "maxLength", Q3_GRAMMAR_UNBOUNDED, &max))
        return -1;
    if (min > max) return schema_fail(c, "maxLength", "is below minLength");
    const json_t *pattern = json_object_get(s, "pattern"), *format = json_object_get(s, "format");
    if (pattern && !json_is_string(pattern)) return schema_fail(c, "pattern", "must be a string");
    if (format && !json_is_string(format)) return schema_fail(c, "format", "must be a string");
    const char *regex = pattern ? json_string_value(pattern) : NULL;
    for (size_t i = 0; !regex && format && i < sizeof FORMATS / sizeof *FORMATS; i++)
        if (!strcmp(json_string_value(format), FORMATS[i].name)) regex = FORMATS[i].pattern;
    if (!regex) return free_string_rule(c, (int)min, (int)max);
    if (json_object_get(s, "minLength") || json_object_get(s, "maxLength"))
        return schema_fail(c, pattern ? "pattern" : "format", "cannot be combined with minLength or maxLength");
    q3_seq q = {0};
    seq_lit(c, &q, "\"");
    q3_error why;
    if (q3_regex_append(c->b, &q, regex, &why)) {
        q3_seq_free(&q);
        return schema_fail(c, "pattern", "%s", why.msg + strlen("'pattern': "));
    }
    seq_lit(c, &q, "\"");
    return rule_of(c, &q);
}

/* ---- arrays ---- */


static int array_rule(compiler *c, const json_t *s) {
    long long min, max;
    const json_t *items = json_object_get(s, "items");
    if (!count_keyword(c, s, "minItems", 0, &min) || !count_keyword(c, s, "maxItems", -1, &max)) return -1;
    if (max >= 0 && min > max) return schema_fail(c, "maxItems", "is below minItems");
    if (min > 256 || max > 256) return schema_fail(c, min > 256 ? "minItems" : "maxItems", "above 256 is not supported");
    if (items && !json_is_object(items) && !json_is_boolean(items))
        return schema_fail(c, "items", "must be a schema (tuple forms are not supported)");
    size_t was = path_push(c, "%s", ".items");
    int item = items ? schema_rule(c, items) : any_value_rule(c);
    path_pop(c, was);
    if (item < 0) return -1;
    /* item ws, then min - 1 more each after "," ws, then the optional ones:
     * more ::= "," ws item ws more | (empty), or a chain of max - min of them */
    int tail = -1, optional = max < 0 ? 1 : (int)max - (min > 0 ? (int)min : 1);
    for (int k = 0; k < optional; k++) {
        int r = q3_gb_rule(c->b);
        q3_seq more = {0}, none = {0};
        seq_lit(c, &more, ","), seq_ws(c, &more), q3_seq_rule(&more, item), seq_ws(c, &more);
        if (max < 0) q3_seq_rule(&more, r);
        else if (tail >= 0) q3_seq_rule(&more, tail);
        q3_gb_add_alt(c->b, r, &more);
        q3_gb_add_alt(c->b, r, &none);
        tail = r;
    }
    q3_seq body = {0};
    q3_seq_rule(&body, item), seq_ws(c, &body);
    for (long long i = 1; i < min; i++) seq_lit(c, &body, ","), seq_ws(c, &body), q3_seq_rule(&body, item), seq_ws(c, &body);
    if (tail >= 0) q3_seq_rule(&body, tail);
    int r = q3_gb_rule(c->b);
    q3_seq box = {0};
    if (max != 0) {
        seq_lit(c, &box, "["), seq_ws(c, &box), q3_seq_append(&box, &body), seq_lit(c, &box, "]");
        q3_gb_add_alt(c->b, r, &box);
    }
    if (min == 0) seq_lit(c, &box, "["), seq_ws(c, &box), seq_lit(c, &box, "]"), q3_gb_add_alt(c->b, r, &box);
    q3_seq_free(&body);
    return r;
}

/* ---- objects ---- */

/* "KEY" ws ":" ws value ws, the key written as JSON writes it. */
static int member_rule(compiler *c, const char *key, int value) {
    json_t *k = json_string(key);
    char *text = k ? json_dumps(k, JSON_ENCODE_ANY) : NULL;
    json_decref(k);
    if (!text) return schema_fail(c, "properties", "a property name cannot be written as JSON");
    q3_seq s = {0};
    seq_lit(c, &s, text);
    free(text);
    seq_ws(c, &s), seq_lit(c, &s, ":"), seq_ws(c, &s), q3_seq_rule(&s, value), seq_ws(c, &s);
    return rule_of(c, &s);
}

static bool is_required(const json_t *required, const char *key) {
    size_t i;
    const json_t *v;
    json_array_foreach(required, i, v)
        if (json_is_string(v) && !strcmp(json_string_value(v), key)) return true;
    return false;
}

/* The members: rules first_i / rest_i from the last property back, then "{" ws first_0 "}". */
static int members_rule(compiler *c, const int *member, const bool *required, int n, int extra) {
    int first = q3_gb_rule(c->b), rest = q3_gb_rule(c->b);
    q3_seq s = {0};
    q3_gb_add_alt(c->b, first, &s); /* after the last property: nothing, or the extra members */
    q3_gb_add_alt(c->b, rest, &s);
    if (extra >= 0) {
        seq_lit(c, &s, ","), seq_ws(c, &s), q3_seq_rule(&s, extra), q3_seq_rule(&s, rest);
        q3_gb_add_alt(c->b, rest, &s);
        q3_seq_rule(&s, extra), q3_seq_rule(&s, rest);
        q3_gb_add_alt(c->b, first, &s);
    }
    for (int i = n - 1; i >= 0; i--) {
        int f = q3_gb_rule(c->b), r = q3_gb_rule(c->b);
        q3_seq_rule(&s, member[i]), q3_seq_rule(&s, rest), q3_gb_add_alt(c->b, f, &s);
        seq_lit(c, &s, ","), seq_ws(c, &s), q3_seq_rule(&s, member[i]), q3_seq_rule(&s, rest);
        q3_gb_add_alt(c->b, r, &s);
        if (!required[i]) {
            q3_seq_rule(&s, first), q3_gb_add_alt(c->b, f, &s);
            q3_seq_rule(&s, rest), q3_gb_add_alt(c->b, r, &s);
        }
        first = f, rest = r;
    }
    seq_lit(c, &s, "{"), seq_ws(c, &s), q3_seq_rule(&s, first), seq_lit(c, &s, "}");
    return rule_of(c, &s);
}

/* The extra members additionalProperties allows: -1 none, else the member rule. */
static int extra_member(compiler *c, const json_t *s, bool has_properties) {
    const json_t *add = json_object_get(s, "additionalProperties");
    if (add && !json_is_boolean(add) && !json_is_object(add)) return schema_fail(c, "additionalProperties", "must be a boolean or a schema") - 1;
    if (json_is_false(add) || (!add && has_properties)) return -1;
    size_t was = path_push(c, "%s", ".additionalProperties");
    int value = json_is_object(add) ? schema_rule(c, add) : any_value_rule(c);
    path_pop(c, was);
    if (value < 0) return -2;
    q3_seq s1 = {0};
    q3_seq_rule(&s1, free_string_rule(c, 0, Q3_GRAMMAR_UNBOUNDED));
    seq_ws(c, &s1), seq_lit(c, &s1, ":"), seq_ws(c, &s1), q3_seq_rule(&s1, value), seq_ws(c, &s1);
    return rule_of(c, &s1);
}

static int object_rule(compiler *c, const json_t *s) {
    const json_t *props = json_object_get(s, "properties"), *required = json_object_get(s, "required");
    if (props && !json_is_object(props)) return schema_fail(c, "properties", "must be an object of schemas");
    if (required && !json_is_array(required)) return schema_fail(c, "required", "must be a list of property names");
    size_t i;
    const json_t *v;
    json_array_foreach(required, i, v) {
        if (!json_is_string(v)) return schema_fail(c, "required", "must be a list of property names");
        if (!json_object_get(props, json_string_value(v)) && json_is_false(json_object_get(s, "additionalProperties")))
            return schema_fail(c, "required", "names \"%s\", which properties does not define", json_string_value(v));
    }
    int extra = extra_member(c, s, props != NULL);
    if (extra < -1) return -1;
    size_t n = json_object_size(props) + json_array_size(required), k = 0;
    int *member = malloc((n ? n : 1) * sizeof *member);
    bool *req = malloc((n ? n : 1) * sizeof *req);
    if (!member || !req) {
        free(member), free(req);
        return schema_fail(c, "properties", "out of memory");
    }
    const char *key;
    json_object_foreach((json_t *)props, key, v) {
        size_t was = path_push(c, ".properties.%s", key);
        int value = schema_rule(c, v);
        path_pop(c, was);
        if (value < 0 || (member[k] = member_rule(c, key, value)) < 0) break;
        req[k++] = is_required(required, key);
    }
    json_array_foreach(required, i, v) /* required but not described: any value */
        if (!c->st && !json_object_get(props, json_string_value(v))) {
            req[k] = true;
            member[k++] = member_rule(c, json_string_value(v), any_value_rule(c));
        }
    int r = c->st ? -1 : members_rule(c, member, req, (int)k, extra);
    free(member);
    free(req);
    return r;
}

/* ---- schemas ---- */

static bool type_known(const char *t) {
    static const char *const TYPES[] = {"null", "boolean", "integer", "number", "string", "array", "object"};
    return IN(t, TYPES);
}

static int typed_rule(compiler *c, const json_t *s, const char *type) {
    q3_seq q = {0};
    if (!strcmp(type, "null")) return seq_lit(c, &q, "null"), rule_of(c, &q);
    if (!strcmp(type, "boolean")) {
        int r = q3_gb_rule(c->b);
        seq_lit(c, &q, "true"), q3_gb_add_alt(c->b, r, &q);
        seq_lit(c, &q, "false"), q3_gb_add_alt(c->b, r, &q);
        return r;
    }
    if (!strcmp(type, "integer")) return integer_rule(c);
    if (!strcmp(type, "number")) return number_rule(c);
    if (!strcmp(type, "string")) return string_rule(c, s);
    if (!strcmp(type, "array")) return array_rule(c, s);
    return object_rule(c, s);
}

/* The types a schema allows, from "type" or guessed from its keywords; 0 types: anything. */
static int schema_types(compiler *c, const json_t *s, const char **types) {
    const json_t *t = json_object_get(s, "type");
    int n = 0;
    if (json_is_string(t)) {
        types[n++] = json_string_value(t);
    } else if (json_is_array(t) && json_array_size(t) > 0 && json_array_size(t) <= 7) {
        size_t i;
        const json_t *v;
        json_array_foreach(t, i, v) types[n++] = json_is_string(v) ? json_string_value(v) : "";
    } else if (t) {
        return schema_fail(c, "type", "must be a type name or a non-empty list of them");
    } else if (json_object_get(s, "properties") || json_object_get(s, "additionalProperties") ||
               json_object_get(s, "required")) {
        types[n++] = "object";
    } else if (json_object_get(s, "items") || json_object_get(s, "minItems") || json_object_get(s, "maxItems")) {
        types[n++] = "array";
    } else if (json_object_get(s, "pattern") || json_object_get(s, "format") || json_object_get(s, "minLength") ||
               json_object_get(s, "maxLength")) {
        types[n++] = "string";
    }
    for (int i = 0; i < n; i++)
        if (!type_known(types[i])) return schema_fail(c, "type", "unknown type \"%s\"", types[i]);
    if (json_is_true(json_object_get(s, "nullable")) && n > 0) types[n++] = "null";
    return n;
}

static int by_type(compiler *c, const json_t *s) {
    const char *types[8];
    int n = schema_types(c, s, types);
    if (n < 0) return -1;
    if (n == 0) return any_value_rule(c);
    int rules[8];
    for (int i = 0; i < n; i++)
        if ((rules[i] = typed_rule(c, s, types[i])) < 0) return -1;
    return n == 1 ? rules[0] : alternatives(c, rules, n);
}

static int enum_rule(compiler *c, const json_t *values) {
    if (!json_is_array(values) || json_array_size(values) == 0)
        return schema_fail(c, "enum", "must be a non-empty list of values");
    /* The matcher follows each value as its own alternative and keeps a bounded number of them
     * alive at once (grammar.c): past this, values beyond the bound could never be produced. */
    if (json_array_size(values) > MAX_ENUM_VALUES)
        return schema_fail(c, "enum", "has %zu values; at most %d", json_array_size(values), MAX_ENUM_VALUES);
    int r = q3_gb_rule(c->b);
    size_t i;
    const json_t *v;
    json_array_foreach(values, i, v) {
        int lit = literal_rule(c, v, "enum");
        if (lit < 0) return -1;
        q3_seq s = {0};
        q3_seq_rule(&s, lit);
        q3_gb_add_alt(c->b, r, &s);
    }
    return r;
}

/* A shallow copy of base with over's keywords on top ("properties" joined, "required" joined),
 * kept alive until the compiler ends. Shallow: the subschemas stay the same objects, so that
 * they are compiled once however many merges hold them. */
static json_t *merged(compiler *c, const json_t *base, const json_t *over, const char *drop) {
    json_t *m = json_copy((json_t *)base);
    if (!m || json_array_append_new(c->keep, m)) return NULL;
    json_object_del(m, drop);
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)over, key, v) {
        json_t *mine = json_object_get(m, key), *joined = NULL;
        if (!strcmp(key, "properties") && json_is_object(mine) && json_is_object(v)) {
            if (!(joined = json_copy(mine)) || json_object_update(joined, v)) return json_decref(joined), NULL;
        } else if (!strcmp(key, "required") && json_is_array(mine) && json_is_array(v)) {
            if (!(joined = json_copy(mine)) || json_array_extend(joined, v)) return json_decref(joined), NULL;
        }
        if (joined ? json_object_set_new(m, key, joined) : json_object_set(m, key, v)) return NULL;
    }
    return m;
}

static bool has_constraints(const json_t *s, const char *except) {
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)s, key, v) {
        (void)v;
        if (strcmp(key, except) && IN(key, CONSTRAINTS)) return true;
    }
    return false;
}

/* "#", "#/$defs/Name", or any JSON pointer into the root schema. */
static const json_t *resolve(compiler *c, const char *ref) {
    if (ref[0] != '#') return NULL;
    const json_t *at = c->root;
    for (const char *p = ref + 1; at && *p == '/';) {
        char part[256];
        size_t n = 0;
        for (p++; *p && *p != '/' && n + 1 < sizeof part; p++) {
            if (p[0] == '~' && (p[1] == '0' || p[1] == '1')) part[n++] = p[1] == '0' ? '~' : '/', p++;
            else part[n++] = *p;
        }
        part[n] = 0;
        at = json_is_array(at) ? json_array_get(at, (size_t)strtoul(part, NULL, 10)) : json_object_get(at, part);
    }
    return at;
}

static int ref_rule(compiler *c, const json_t *s) {
    const json_t *ref = json_object_get(s, "$ref");
    const json_t *target = json_is_string(ref) ? resolve(c, json_string_value(ref)) : NULL;
    if (!target) return schema_fail(c, "$ref", "does not name a schema of this document (\"#/$defs/Name\")");
    if (!has_constraints(s, "$ref")) return schema_rule(c, target);
    if (!json_is_object(target)) return schema_fail(c, "$ref", "names something that is not a schema object");
    json_t *m = merged(c, target, s, "$ref");
    return m ? (json_object_del(m, "$ref"), schema_rule(c, m)) : schema_fail(c, "$ref", "out of memory");
}

/* anyOf / oneOf (as alternatives: oneOf's exclusivity is not enforced) and allOf (merged). */
static int combination_rule(compiler *c, const json_t *s, const char *key) {
    const json_t *list = json_object_get(s, key);
    if (!json_is_array(list) || json_array_size(list) == 0 || json_array_size(list) > 64)
        return schema_fail(c, key, "must be a non-empty list of schemas");
    bool alone = !has_constraints(s, key);
    if (!strcmp(key, "allOf")) {
        json_t *m = json_copy((json_t *)s);
        if (!m || json_array_append_new(c->keep, m)) return schema_fail(c, key, "out of memory");
        json_object_del(m, key);
        size_t i;
        const json_t *v;
        json_array_foreach(list, i, v) {
            if (!json_is_object(v)) return schema_fail(c, key, "must be a list of schema objects");
            if (json_object_get(v, "$ref") && !(v = resolve(c, json_string_value(json_object_get(v, "$ref")))))
                return schema_fail(c, "$ref", "does not name a schema of this document");
            if (!(m = merged(c, m, v, ""))) return schema_fail(c, key, "out of memory");
        }
        return schema_rule(c, m);
    }
    int rules[64];
    size_t i;
    const json_t *v;
    json_array_foreach(list, i, v) {
        char index[16];
        snprintf(index, sizeof index, "%zu", i);
        size_t was = path_push(c, strcmp(key, "anyOf") ? ".oneOf[%s]" : ".anyOf[%s]", index);
        const json_t *branch = alone || !json_is_object(v) ? v : merged(c, s, v, key);
        rules[i] = branch ? schema_rule(c, branch) : schema_fail(c, key, "out of memory");
        path_pop(c, was);
        if (rules[i] < 0) return -1;
    }
    return alternatives(c, rules, (int)json_array_size(list));
}

static int schema_body(compiler *c, const json_t *s) {
    if (!refuse_unsupported(c, s)) return -1;
    if (json_object_get(s, "$ref")) return ref_rule(c, s);
    if (json_object_get(s, "allOf")) return combination_rule(c, s, "allOf");
    if (json_object_get(s, "anyOf")) return combination_rule(c, s, "anyOf");
    if (json_object_get(s, "oneOf")) return combination_rule(c, s, "oneOf");
    if (json_object_get(s, "const")) return literal_rule(c, json_object_get(s, "const"), "const");
    if (json_object_get(s, "enum")) return enum_rule(c, json_object_get(s, "enum"));
    return by_type(c, s);
}

int schema_rule(compiler *c, const json_t *s) {
    if (c->st) return -1;
    if (json_is_true(s)) return any_value_rule(c);
    if (!json_is_object(s)) return schema_fail(c, "schema", json_is_false(s) ? "false allows no value" : "must be an object");
    for (int i = 0; i < c->n_memo; i++)
        if (c->memo[i].schema == s) return c->memo[i].rule;
    if (c->n_memo == MAX_SCHEMAS) return schema_fail(c, "schema", "has more than %d subschemas", MAX_SCHEMAS);
    if (c->depth == MAX_DEPTH) return schema_fail(c, "schema", "nests deeper than %d levels", MAX_DEPTH);
    if (q3_gb_too_large(c->b))
        return schema_fail(c, "schema", "makes too large a grammar (over %d rules, %d elements or 1024 byte sets)",
                           Q3_GRAMMAR_MAX_RULES, Q3_GRAMMAR_MAX_ELEMS);
    if (c->n_memo == c->cap_memo) {
        int cap = c->cap_memo ? 2 * c->cap_memo : 32;
        memo_entry *m = realloc(c->memo, (size_t)cap * sizeof *m);
        if (!m) return schema_fail(c, "schema", "out of memory");
        c->memo = m, c->cap_memo = cap;
    }
    /* The rule exists before its body, so that a $ref back to s finds it. */
    int r = q3_gb_rule(c->b);
    c->memo[c->n_memo++] = (memo_entry){s, r};
    c->depth++;
    int body = schema_body(c, s);
    c->depth--;
    if (body < 0) return -1;
    q3_seq q = {0};
    q3_seq_rule(&q, body);
    q3_gb_add_alt(c->b, r, &q);
    return r;
}

/* ---- entry points ---- */

q3_status compiler_init(compiler *c, const json_t *root, q3_error *e) {
    *c = (compiler){.b = q3_gb_new(), .root = root, .keep = json_array(), .any_value = -1, .ws = -1, .e = e};
    if (!c->b || !c->keep) {
        q3_gb_free(c->b);
        json_decref(c->keep);
        return q3_fail(e, Q3_ENOMEM, "json schema: out of memory");
    }
    return Q3_OK;
}

/* ws value ws as the grammar; frees the compiler. */
q3_status compiler_finish(compiler *c, int value, q3_grammar **out) {
    q3_status st = c->st;
    if (!st) {
        q3_seq s = {0};
        q3_seq_class(c->b, &s, WS_CHARS, 0, MAX_WS), q3_seq_rule(&s, value), q3_seq_class(c->b, &s, WS_CHARS, 0, MAX_WS);
        st = q3_grammar_build(c->b, rule_of(c, &s), out, c->e);
    }
    q3_gb_free(c->b);
    json_decref(c->keep);
    free(c->memo);
    return st;
}

q3_status q3_json_schema_grammar(const json_t *schema, q3_grammar **out, q3_error *e) {
    *out = NULL;
    compiler c;
    q3_status st = compiler_init(&c, schema, e);
    return st ? st : compiler_finish(&c, schema_rule(&c, schema), out);
}

q3_status q3_json_object_grammar(q3_grammar **out, q3_error *e) {
    *out = NULL;
    json_t *schema = json_pack("{s:s}", "type", "object");
    compiler c;
    q3_status st = schema ? compiler_init(&c, schema, e) : q3_fail(e, Q3_ENOMEM, "json schema: out of memory");
    if (!st) {
        int obj = object_rule(&c, schema);
        st = compiler_finish(&c, obj, out);
    }
    json_decref(schema);
    return st;
}
