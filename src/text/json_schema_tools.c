/* Tool calls as grammars (see q3_tool_call_grammar in json_schema.h): tool_choice "required" or
 * a named function constrain the reply to calls written the way the chat template's model was
 * trained to write them.
 *
 *   JSON (Qwen3):        <tool_call>\n{"name": "NAME", "arguments": ARGS}\n</tool_call>
 *                        with ARGS the parameters schema's grammar, calls separated by "\n";
 *   XML (Qwen3-Coder):   <tool_call>\n<function=NAME>\n PARAMS </function>\n</tool_call>
 *                        with one <parameter=P>\nVALUE\n</parameter>\n per property, in the
 *                        schema's order (required ones always, the others optionally); a string
 *                        value is raw text up to "\n</parameter>" (an enum of strings one of its
 *                        values), any other value JSON text of its schema. */
#include <stdio.h>
#include <string.h>

#include "text/json_schema_compiler.h"

static const json_t *tool_function(const json_t *tool) {
    const json_t *f = json_object_get(tool, "function");
    return json_is_object(f) ? f : NULL;
}

static const char *tool_name(const json_t *tool) { return json_string_value(json_object_get(tool_function(tool), "name")); }

/* The parameters schema, or NULL for none (no arguments). */
static const json_t *tool_parameters(const json_t *tool) { return json_object_get(tool_function(tool), "parameters"); }

/* <tool_call>\n{"name": "NAME", "arguments": ARGS}\n</tool_call> */
static int json_call(compiler *c, const json_t *tool) {
    const json_t *params = tool_parameters(tool);
    json_t *name = json_string(tool_name(tool));
    char *quoted = name ? json_dumps(name, JSON_ENCODE_ANY) : NULL;
    json_decref(name);
    if (!quoted) return schema_fail(c, "tools", "a tool name cannot be written as JSON");
    c->root = params;
    int args = params ? schema_rule(c, params) : any_value_rule(c);
    q3_seq s = {0};
    seq_lit(c, &s, "<tool_call>\n{\"name\": ");
    seq_lit(c, &s, quoted);
    seq_lit(c, &s, ", \"arguments\": ");
    free(quoted);
    if (args < 0) return q3_seq_free(&s), -1;
    q3_seq_rule(&s, args);
    seq_lit(c, &s, "}\n</tool_call>");
    return rule_of(c, &s);
}

static bool plain_string(const json_t *schema) {
    const json_t *type = json_object_get(schema, "type");
    return json_is_string(type) && !strcmp(json_string_value(type), "string") && !json_object_get(schema, "enum") &&
           !json_object_get(schema, "const");
}

/* A string enum's values as raw text, each followed by the closing line; -1 when not one. */
static int raw_enum(compiler *c, const json_t *schema) {
    const json_t *values = json_object_get(schema, "enum");
    if (!json_is_array(values) || json_array_size(values) == 0) return -1;
    size_t i;
    const json_t *v;
    json_array_foreach(values, i, v)
        if (!json_is_string(v) || strstr(json_string_value(v), "\n</parameter>")) return -1;
    int r = q3_gb_rule(c->b);
    json_array_foreach(values, i, v) {
        q3_seq s = {0};
        seq_lit(c, &s, json_string_value(v));
        seq_lit(c, &s, "\n</parameter>\n");
        q3_gb_add_alt(c->b, r, &s);
    }
    return r;
}

/* <parameter=P>\nVALUE\n</parameter>\n */
static int xml_parameter(compiler *c, const char *name, const json_t *schema) {
    q3_seq s = {0};
    char head[320];
    snprintf(head, sizeof head, "<parameter=%s>\n", name);
    seq_lit(c, &s, head);
    int value;
    if (!json_is_object(schema) || plain_string(schema) || json_object_get(schema, "format") ||
        json_object_get(schema, "pattern")) {
        q3_seq_until(c->b, &s, "\n</parameter>");
        seq_lit(c, &s, "\n");
    } else if ((value = raw_enum(c, schema)) >= 0) {
        q3_seq_rule(&s, value);
    } else {
        size_t was = path_push(c, ".properties.%s", name);
        value = schema_rule(c, schema);
        path_pop(c, was);
        if (value < 0) return q3_seq_free(&s), -1;
        q3_seq_rule(&s, value);
        seq_lit(c, &s, "\n</parameter>\n");
    }
    return rule_of(c, &s);
}

static bool listed(const json_t *required, const char *key) {
    size_t i;
    const json_t *v;
    json_array_foreach(required, i, v)
        if (json_is_string(v) && !strcmp(json_string_value(v), key)) return true;
    return false;
}

/* <tool_call>\n<function=NAME>\n PARAMS </function>\n</tool_call> */
static int xml_call(compiler *c, const json_t *tool) {
    const json_t *params = tool_parameters(tool), *props = json_object_get(params, "properties");
    const json_t *required = json_object_get(params, "required");
    c->root = params;
    q3_seq s = {0};
    char head[320];
    snprintf(head, sizeof head, "<tool_call>\n<function=%s>\n", tool_name(tool));
    seq_lit(c, &s, head);
    const char *key;
    const json_t *schema;
    json_object_foreach((json_t *)props, key, schema) {
        int p = xml_parameter(c, key, schema);
        if (p < 0) return q3_seq_free(&s), -1;
        if (!listed(required, key)) { /* optional: p | (empty) */
            q3_seq one = {0}, none = {0};
            q3_seq_rule(&one, p);
            p = rule_of(c, &one);
            q3_gb_add_alt(c->b, p, &none);
        }
        q3_seq_rule(&s, p);
    }
    seq_lit(c, &s, "</function>\n</tool_call>");
    return rule_of(c, &s);
}

static bool check_tool(compiler *c, const json_t *tool, size_t i) {
    char at[32];
    snprintf(at, sizeof at, "tools[%zu]", i);
    const char *name = tool_name(tool);
    const json_t *params = tool_parameters(tool);
    if (!name || !*name) return schema_fail(c, "tools", "%s has no function name", at) && false;
    if (strchr(name, '>') || strchr(name, '\n') || strlen(name) > 256)
        return schema_fail(c, "tools", "%s: the function name \"%s\" cannot be written in a tool call", at, name) && false;
    if (params && !json_is_object(params)) return schema_fail(c, "tools", "%s: parameters must be a schema object", at) && false;
    return true;
}

q3_status q3_tool_call_grammar(const json_t *tools, const char *name, q3_tool_format format, q3_grammar **out,
                               q3_error *e) {
    *out = NULL;
    if (!json_is_array(tools) || json_array_size(tools) == 0)
        return q3_fail(e, Q3_EINVAL, "'tools': a tool call is required but no tools are given");
    compiler c;
    q3_status st = compiler_init(&c, NULL, e);
    if (st) return st;
    int any = q3_gb_rule(c.b), named = -1;
    size_t i;
    const json_t *tool;
    json_array_foreach(tools, i, tool) {
        if (!check_tool(&c, tool, i)) break;
        snprintf(c.path, sizeof c.path, "tools[%zu].function.parameters", i);
        c.path_len = strlen(c.path);
        int call = format == Q3_TOOL_FORMAT_XML ? xml_call(&c, tool) : json_call(&c, tool);
        if (call < 0) break;
        q3_seq s = {0};
        q3_seq_rule(&s, call);
        q3_gb_add_alt(c.b, any, &s);
        if (name && !strcmp(name, tool_name(tool))) named = call;
    }
    int root = -1;
    if (!c.st && name && named < 0) {
        schema_fail(&c, "tool_choice", "names \"%s\", which is not among the tools", name);
    } else if (!c.st && named >= 0) {
        root = named;
    } else if (!c.st) { /* calls ::= any ("\n" any)* */
        int more = q3_gb_rule(c.b);
        q3_seq s = {0}, none = {0};
        seq_lit(&c, &s, "\n"), q3_seq_rule(&s, any), q3_seq_rule(&s, more);
        q3_gb_add_alt(c.b, more, &s);
        q3_gb_add_alt(c.b, more, &none);
        q3_seq_rule(&s, any), q3_seq_rule(&s, more);
        root = rule_of(&c, &s);
    }
    return compiler_finish(&c, root, out);
}
