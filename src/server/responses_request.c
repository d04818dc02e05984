/* Reading an OpenAI Responses request (POST /v1/responses) into a completion_request. The
 * server keeps no state between requests, so the whole conversation comes in `input`, which is
 * translated into chat messages for the chat template:
 *
 *   instructions                             -> a system message first
 *   input as a string                        -> a user message
 *   message items (input_text, output_text)  -> messages of their role (developer as system)
 *   function_call items                      -> tool_calls of an assistant message
 *   function_call_output items               -> tool messages
 *   reasoning items                          -> the reasoning_content of the assistant message after
 *   tools [{"type": "function", name, parameters}], tool_choice, text.format (json_object,
 *   json_schema), reasoning.effort ("none" and "minimal" turn thinking off), max_output_tokens,
 *   temperature, top_p, stream
 * Items and tools of other types, and previous_response_id (there is nothing stored to refer
 * to), are refused with 400 naming where they are. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/responses.h"

static const char *str(const json_t *o, const char *key) { return json_string_value(json_object_get(o, key)); }

static bool is(const char *a, const char *b) { return a && !strcmp(a, b); }

typedef struct translation {
    json_t *messages;
    json_t *last_assistant;    /* the assistant message function calls attach to; NULL: none open */
    q3_buf reasoning;            /* from reasoning items, for the next assistant message */
} translation;

/* The text of a content list (input_text, output_text, refusal parts) or string. */
static bool content_text(const json_t *content, const char *where, q3_buf *out, api_error *err) {
    if (json_is_string(content)) {
        q3_buf_puts(out, json_string_value(content));
        return true;
    }
    if (!json_is_array(content)) return api_fail(err, 400, "invalid_type", where, "%s must be a string or a list of parts", where);
    size_t i;
    const json_t *part;
    json_array_foreach(content, i, part) {
        const char *type = str(part, "type"), *text = str(part, is(type, "refusal") ? "refusal" : "text");
        if (!(is(type, "input_text") || is(type, "output_text") || is(type, "refusal")) || !text)
            return api_fail(err, 400, "invalid_value", where, "%s[%zu]: parts of type \"%s\" are not supported", where, i,
                            type ? type : "(none)");
        q3_buf_puts(out, text);
    }
    return true;
}

static bool add_message(translation *t, const char *role, const char *content, api_error *err) {
    json_t *m = json_pack("{s:s, s:s}", "role", role, "content", content);
    if (!m || json_array_append_new(t->messages, m)) return api_fail(err, 500, NULL, NULL, "out of memory");
    t->last_assistant = NULL;
    if (!strcmp(role, "assistant")) {
        t->last_assistant = m;
        if (t->reasoning.len) json_object_set_new(m, "reasoning_content", json_string(t->reasoning.data));
        t->reasoning.len = 0;
    }
    return true;
}

static bool message_item(translation *t, const json_t *item, const char *where, api_error *err) {
    const char *role = str(item, "role");
    if (is(role, "developer")) role = "system";
    if (!is(role, "user") && !is(role, "assistant") && !is(role, "system"))
        return api_fail(err, 400, "invalid_value", where, "%s.role must be user, assistant, system or developer", where);
    q3_buf text = {0};
    char at[96];
    snprintf(at, sizeof at, "%s.content", where);
    bool ok = content_text(json_object_get(item, "content"), at, &text, err) &&
              add_message(t, role, text.data ? text.data : "", err);
    q3_buf_free(&text);
    return ok;
}

static bool function_call_item(translation *t, const json_t *item, const char *where, api_error *err) {
    const char *call_id = str(item, "call_id"), *name = str(item, "name"), *arguments = str(item, "arguments");
    if (!call_id || !name || !arguments)
        return api_fail(err, 400, "invalid_value", where, "%s: a function_call needs call_id, name and arguments", where);
    if (!t->last_assistant && !add_message(t, "assistant", "", err)) return false;
    json_t *calls = json_object_get(t->last_assistant, "tool_calls");
    if (!calls) json_object_set_new(t->last_assistant, "tool_calls", calls = json_array());
    /* Arguments that are JSON go in as an object, so the template prints them as it was trained. */
    json_t *args = json_loads(arguments, JSON_DECODE_ANY, NULL);
    if (!json_is_object(args)) json_decref(args), args = json_string(arguments);
    json_t *call = json_pack("{s:s, s:s, s:{s:s, s:o}}", "id", call_id, "type", "function", "function", "name", name,
                             "arguments", args);
    return (calls && call && !json_array_append_new(calls, call)) || api_fail(err, 500, NULL, NULL, "out of memory");
}

static bool function_output_item(translation *t, const json_t *item, const char *where, api_error *err) {
    const char *call_id = str(item, "call_id");
    const json_t *output = json_object_get(item, "output");
    if (!call_id || !output) return api_fail(err, 400, "invalid_value", where, "%s: a function_call_output needs call_id and output", where);
    q3_buf text = {0};
    bool ok = content_text(output, where, &text, err);
    json_t *m = ok ? json_pack("{s:s, s:s, s:s}", "role", "tool", "tool_call_id", call_id, "content", text.data ? text.data : "") : NULL;
    ok = ok && ((m && !json_array_append_new(t->messages, m)) || api_fail(err, 500, NULL, NULL, "out of memory"));
    q3_buf_free(&text);
    t->last_assistant = NULL;
    return ok;
}

static void reasoning_item(translation *t, const json_t *item) {
    const json_t *parts = json_object_get(item, "content");
    if (!json_array_size(parts)) parts = json_object_get(item, "summary");
    size_t i;
    const json_t *part;
    json_array_foreach(parts, i, part)
        if (str(part, "text")) q3_buf_puts(&t->reasoning, str(part, "text"));
}

static bool translate_input(translation *t, const json_t *input, api_error *err) {
    if (json_is_string(input)) return add_message(t, "user", json_string_value(input), err);
    if (!json_is_array(input) || json_array_size(input) == 0)
        return api_fail(err, 400, "invalid_type", "input", "input must be a string or a non-empty list of items");
    size_t i;
    const json_t *item;
    json_array_foreach(input, i, item) {
        char where[32];
        snprintf(where, sizeof where, "input[%zu]", i);
        const char *type = str(item, "type");
        bool ok = true;
        if (!json_is_object(item)) ok = api_fail(err, 400, "invalid_type", where, "%s must be an item object", where);
        else if (!type || is(type, "message")) ok = message_item(t, item, where, err);
        else if (is(type, "function_call")) ok = function_call_item(t, item, where, err);
        else if (is(type, "function_call_output")) ok = function_output_item(t, item, where, err);
        else if (is(type, "reasoning")) reasoning_item(t, item);
        else ok = api_fail(err, 400, "invalid_value", where, "%s: items of type \"%s\" are not supported", where, type);
        if (!ok) return false;
    }
    return true;
}

static bool translate_tools(const json_t *body, json_t *tools, api_error *err) {
    const json_t *list = field(body, "tools");
    if (!list) return true;
    if (!json_is_array(list)) return api_fail(err, 400, "invalid_type", "tools", "tools must be a list of tools");
    size_t i;
    const json_t *tool;
    json_array_foreach(list, i, tool) {
        const json_t *params = json_object_get(tool, "parameters");
        if (!is(str(tool, "type"), "function") || !str(tool, "name") || (params && !json_is_object(params) && !json_is_null(params)))
            return api_fail(err, 400, "invalid_value", "tools", "tools[%zu]: only function tools, with a name, are supported", i);
        json_t *f = json_pack("{s:s}", "name", str(tool, "name"));
        if (f && str(tool, "description")) json_object_set(f, "description", json_object_get(tool, "description"));
        if (f && json_is_object(params)) json_object_set(f, "parameters", (json_t *)params);
        if (!f || json_array_append_new(tools, json_pack("{s:s, s:o}", "type", "function", "function", f)))
            return api_fail(err, 500, NULL, NULL, "out of memory");
    }
    return true;
}

static bool parse_tool_choice(const json_t *body, completion_request *c, api_error *err) {
    const json_t *choice = field(body, "tool_choice");
    const char *how = json_string_value(choice);
    if (!choice || is(how, "auto")) return true;
    if (is(how, "none")) return set_tool_mode(c, TOOLS_NONE, NULL, "tool_choice", err);
    if (is(how, "required")) return set_tool_mode(c, TOOLS_REQUIRED, NULL, "tool_choice", err);
    if (is(str(choice, "type"), "function") && str(choice, "name"))
        return set_tool_mode(c, TOOLS_NAMED, str(choice, "name"), "tool_choice", err);
    return api_fail(err, 400, "invalid_value", "tool_choice",
                    "tool_choice must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"name\": ...}");
}

static bool parse_options(const json_t *body, completion_request *c, api_error *err) {
    const json_t *text = field(body, "text"), *reasoning = field(body, "reasoning");
    if (field(body, "previous_response_id"))
        return api_fail(err, 400, "unsupported_parameter", "previous_response_id",
                        "this server keeps no responses: send the whole conversation in input");
    if (text && field(text, "format") && !set_response_format(c, field(text, "format"), "text.format", err)) return false;
    const char *effort = str(reasoning, "effort");
    if (is(effort, "none") || is(effort, "minimal")) c->enable_thinking = false;
    long long max_tokens = -1;
    if (!get_int(body, "max_output_tokens", 1, INT32_MAX, &max_tokens, err) || !get_bool(body, "stream", &c->stream, err))
        return false;
    c->max_tokens = max_tokens;
    return parse_sampling(body, &c->sampling, err);
}

bool responses_request(const json_t *body, const q3_server *srv, completion_request *c, api_error *err) {
    *c = completion_request_new(srv, true);
    translation t = {json_array(), NULL, {0}};
    json_t *tools = json_array();
    if (!t.messages || !tools || !(c->owned = json_pack("{s:o, s:o}", "messages", t.messages, "tools", tools)))
        return api_fail(err, 500, NULL, NULL, "out of memory");
    const json_t *instructions = field(body, "instructions"), *input = field(body, "input");
    bool ok = check_model(body, srv, err);
    if (ok && instructions && !json_is_string(instructions))
        ok = api_fail(err, 400, "invalid_type", "instructions", "instructions must be a string");
    if (ok && instructions) ok = add_message(&t, "system", json_string_value(instructions), err);
    if (ok && !input) ok = api_fail(err, 400, "missing_field", "input", "input is required");
    ok = ok && translate_input(&t, input, err) && translate_tools(body, tools, err);
    q3_buf_free(&t.reasoning);
    if (!ok) return false;
    c->messages = t.messages;
    c->tools = json_array_size(tools) ? tools : NULL;
    return parse_tool_choice(body, c, err) && parse_options(body, c, err);
}
