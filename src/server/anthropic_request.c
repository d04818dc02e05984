/* Reading an Anthropic Messages request (POST /v1/messages, /v1/messages/count_tokens) into a
 * completion_request: the conversation is translated into OpenAI-shaped messages, which the chat
 * template renders as it renders every other conversation.
 *
 *   system (a string or text blocks)         -> a system message
 *   user: text blocks                        -> a user message (texts joined by "\n")
 *   user: tool_result blocks                 -> tool messages (tool_call_id, their text), first
 *   assistant: text / thinking / tool_use    -> content / reasoning_content / tool_calls
 *   tools [{name, description, input_schema}] -> [{"type": "function", "function": {...}}]
 *   tool_choice auto / any / tool / none     -> auto / required / the named function / none
 *   thinking {"type": "enabled"}             -> enable_thinking (absent or disabled: off)
 *   max_tokens (required), stop_sequences, temperature, top_p, top_k, stream
 * Block types we cannot take (image, document, ...) are refused with 400, naming where they are;
 * redacted_thinking is passed over. The model name is not checked: Anthropic's clients name their
 * own models, and this server has one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/anthropic.h"

static const char *type_of(const json_t *block) { return json_string_value(json_object_get(block, "type")); }

static bool is_type(const json_t *block, const char *type) {
    return type_of(block) && !strcmp(type_of(block), type);
}

/* The text of a string or of a list of text blocks, joined by "\n"; where names the field. */
static bool text_of(const json_t *content, const char *where, q3_buf *out, api_error *err) {
    if (json_is_string(content)) {
        q3_buf_put(out, json_string_value(content), json_string_length(content));
        return true;
    }
    if (!json_is_array(content)) return api_fail(err, 400, NULL, NULL, "%s must be a string or a list of text blocks", where);
    size_t i;
    const json_t *block;
    json_array_foreach(content, i, block) {
        if (!is_type(block, "text") || !json_is_string(json_object_get(block, "text")))
            return api_fail(err, 400, NULL, NULL, "%s.%zu: only text blocks are supported here, not \"%s\"", where, i,
                            type_of(block) ? type_of(block) : "(no type)");
        if (i) q3_buf_puts(out, "\n");
        q3_buf_puts(out, json_string_value(json_object_get(block, "text")));
    }
    return true;
}

static bool add_text_message(json_t *messages, const char *role, q3_buf *text, const char *reasoning) {
    json_t *m = json_pack("{s:s, s:s}", "role", role, "content", text->data ? text->data : "");
    if (m && reasoning) json_object_set_new(m, "reasoning_content", json_string(reasoning));
    return m && !json_array_append_new(messages, m);
}

/* A user turn: its tool results become tool messages, its text one user message. */
static bool user_turn(const json_t *content, size_t index, json_t *messages, api_error *err) {
    char where[64];
    snprintf(where, sizeof where, "messages.%zu.content", index);
    if (json_is_string(content)) {
        q3_buf text = {0};
        q3_buf_puts(&text, json_string_value(content));
        bool ok = add_text_message(messages, "user", &text, NULL);
        q3_buf_free(&text);
        return ok || api_fail(err, 500, NULL, NULL, "out of memory");
    }
    if (!json_is_array(content)) return api_fail(err, 400, NULL, NULL, "%s must be a string or a list of blocks", where);
    q3_buf text = {0};
    bool ok = true, any_text = false;
    size_t i;
    const json_t *block;
    json_array_foreach(content, i, block) {
        char at[96];
        snprintf(at, sizeof at, "%s.%zu", where, i);
        if (is_type(block, "text") && json_is_string(json_object_get(block, "text"))) {
            if (any_text) q3_buf_puts(&text, "\n");
            q3_buf_puts(&text, json_string_value(json_object_get(block, "text")));
            any_text = true;
        } else if (is_type(block, "tool_result") && json_is_string(json_object_get(block, "tool_use_id"))) {
            q3_buf result = {0};
            const json_t *rc = json_object_get(block, "content");
            ok = !rc || text_of(rc, at, &result, err);
            json_t *m = ok ? json_pack("{s:s, s:s, s:s}", "role", "tool", "tool_call_id",
                                       json_string_value(json_object_get(block, "tool_use_id")), "content",
                                       result.data ? result.data : "") : NULL;
            ok = ok && (m ? !json_array_append_new(messages, m) : api_fail(err, 500, NULL, NULL, "out of memory"));
            q3_buf_free(&result);
        } else {
            ok = api_fail(err, 400, NULL, NULL, "%s: a user turn takes text and tool_result blocks, not \"%s\"", at,
                          type_of(block) ? type_of(block) : "(no type)");
        }
        if (!ok) break;
    }
    if (ok && any_text) ok = add_text_message(messages, "user", &text, NULL) || api_fail(err, 500, NULL, NULL, "out of memory");
    q3_buf_free(&text);
    return ok;
}

static bool tool_use_call(const json_t *block, const char *at, json_t *calls, api_error *err) {
    const json_t *id = json_object_get(block, "id"), *name = json_object_get(block, "name");
    const json_t *input = json_object_get(block, "input");
    if (!json_is_string(id) || !json_is_string(name) || (input && !json_is_object(input)))
        return api_fail(err, 400, NULL, NULL, "%s: a tool_use block needs an id, a name and an input object", at);
    json_t *call = json_pack("{s:O, s:s, s:{s:O, s:o}}", "id", id, "type", "function", "function", "name", name,
                             "arguments", input ? json_incref((json_t *)input) : json_object());
    return (call && !json_array_append_new(calls, call)) || api_fail(err, 500, NULL, NULL, "out of memory");
}

/* An assistant turn: its text, thinking and tool calls in one assistant message. */
static bool assistant_turn(const json_t *content, size_t index, json_t *messages, api_error *err) {
    if (json_is_string(content)) {
        q3_buf text = {0};
        q3_buf_puts(&text, json_string_value(content));
        bool ok = add_text_message(messages, "assistant", &text, NULL);
        q3_buf_free(&text);
        return ok || api_fail(err, 500, NULL, NULL, "out of memory");
    }
    if (!json_is_array(content)) return api_fail(err, 400, NULL, NULL, "messages.%zu.content must be a string or a list of blocks", index);
    q3_buf text = {0}, thinking = {0};
    json_t *calls = json_array();
    bool ok = calls != NULL;
    size_t i;
    const json_t *block;
    json_array_foreach(content, i, block) {
        char at[96];
        snprintf(at, sizeof at, "messages.%zu.content.%zu", index, i);
        if (is_type(block, "text") && json_is_string(json_object_get(block, "text"))) q3_buf_puts(&text, json_string_value(json_object_get(block, "text")));
        else if (is_type(block, "thinking") && json_is_string(json_object_get(block, "thinking"))) q3_buf_puts(&thinking, json_string_value(json_object_get(block, "thinking")));
        else if (is_type(block, "tool_use")) ok = tool_use_call(block, at, calls, err);
        else if (!is_type(block, "redacted_thinking"))
            ok = api_fail(err, 400, NULL, NULL, "%s: an assistant turn takes text, thinking and tool_use blocks, not \"%s\"", at,
                          type_of(block) ? type_of(block) : "(no type)");
        if (!ok) break;
    }
    if (ok) {
        ok = add_text_message(messages, "assistant", &text, thinking.data);
        json_t *m = json_array_get(messages, json_array_size(messages) - 1);
        if (ok && json_array_size(calls)) json_object_set(m, "tool_calls", calls);
        if (!ok) api_fail(err, 500, NULL, NULL, "out of memory");
    }
    json_decref(calls);
    q3_buf_free(&text);
    q3_buf_free(&thinking);
    return ok;
}

static bool translate_messages(const json_t *body, json_t *messages, api_error *err) {
    const json_t *system = field(body, "system"), *list = field(body, "messages");
    if (system) {
        q3_buf text = {0};
        bool ok = text_of(system, "system", &text, err) && (add_text_message(messages, "system", &text, NULL) ||
                                                           api_fail(err, 500, NULL, NULL, "out of memory"));
        q3_buf_free(&text);
        if (!ok) return false;
    }
    if (!json_is_array(list) || json_array_size(list) == 0)
        return api_fail(err, 400, NULL, NULL, "messages: a non-empty list of messages is required");
    size_t i;
    const json_t *m;
    json_array_foreach(list, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        const json_t *content = json_object_get(m, "content");
        bool ok = role && !strcmp(role, "user")        ? user_turn(content, i, messages, err)
                  : role && !strcmp(role, "assistant") ? assistant_turn(content, i, messages, err)
                                                       : api_fail(err, 400, NULL, NULL, "messages.%zu.role must be \"user\" or \"assistant\"", i);
        if (!ok) return false;
    }
    return true;
}

static bool translate_tools(const json_t *body, json_t *tools, api_error *err) {
    const json_t *list = field(body, "tools");
    if (!list) return true;
    if (!json_is_array(list)) return api_fail(err, 400, NULL, NULL, "tools must be a list of tools");
    size_t i;
    const json_t *t;
    json_array_foreach(list, i, t) {
        const json_t *name = json_object_get(t, "name"), *schema = json_object_get(t, "input_schema");
        if (!json_is_string(name) || (schema && !json_is_object(schema)))
            return api_fail(err, 400, NULL, NULL, "tools.%zu: a tool needs a name and an input_schema object", i);
        json_t *f = json_pack("{s:O, s:o}", "name", name, "parameters", schema ? json_incref((json_t *)schema) : json_object());
        if (f && json_is_string(json_object_get(t, "description"))) json_object_set(f, "description", json_object_get(t, "description"));
        if (!f || json_array_append_new(tools, json_pack("{s:s, s:o}", "type", "function", "function", f)))
            return api_fail(err, 500, NULL, NULL, "out of memory");
    }
    return true;
}

static bool parse_tool_choice(const json_t *body, completion_request *c, api_error *err) {
    const json_t *choice = field(body, "tool_choice");
    if (!choice) return true;
    const char *type = json_string_value(json_object_get(choice, "type"));
    const char *name = json_string_value(json_object_get(choice, "name"));
    if (type && !strcmp(type, "auto")) return true;
    if (type && !strcmp(type, "none")) return set_tool_mode(c, TOOLS_NONE, NULL, "tool_choice", err);
    if (type && !strcmp(type, "any")) return set_tool_mode(c, TOOLS_REQUIRED, NULL, "tool_choice", err);
    if (type && !strcmp(type, "tool") && name) return set_tool_mode(c, TOOLS_NAMED, name, "tool_choice", err);
    return api_fail(err, 400, NULL, "tool_choice", "tool_choice.type must be \"auto\", \"any\", \"none\", or \"tool\" with a name");
}

static bool parse_thinking(const json_t *body, completion_request *c, api_error *err) {
    const json_t *thinking = field(body, "thinking");
    const char *type = json_string_value(json_object_get(thinking, "type"));
    c->enable_thinking = type && !strcmp(type, "enabled");
    if (thinking && (!type || (strcmp(type, "enabled") && strcmp(type, "disabled"))))
        return api_fail(err, 400, NULL, "thinking", "thinking.type must be \"enabled\" or \"disabled\"");
    return true;
}

bool anthropic_request(const json_t *body, const q3_server *srv, bool counting, completion_request *c, api_error *err) {
    *c = completion_request_new(srv, true);
    json_t *messages = json_array(), *tools = json_array();
    if (!messages || !tools || !(c->owned = json_pack("{s:o, s:o}", "messages", messages, "tools", tools)))
        return api_fail(err, 500, NULL, NULL, "out of memory");
    long long max_tokens = -1;
    if (!translate_messages(body, messages, err) || !translate_tools(body, tools, err) ||
        !get_int(body, "max_tokens", 1, INT32_MAX, &max_tokens, err) || !get_bool(body, "stream", &c->stream, err) ||
        !parse_sampling(body, &c->sampling, err) || !parse_stop(body, "stop_sequences", c, err) || !parse_thinking(body, c, err))
        return false;
    if (max_tokens < 0 && !counting) return api_fail(err, 400, NULL, "max_tokens", "max_tokens is required");
    c->max_tokens = max_tokens;
    c->messages = messages;
    c->tools = json_array_size(tools) ? tools : NULL;
    return parse_tool_choice(body, c, err);
}
