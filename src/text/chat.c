/* A conversation rendered into a prompt by a chat template (see chat.h).
 *
 * Two passes: the messages are checked (every error names the message and field) and brought to
 * the shape templates expect; then the template renders them with the variables transformers
 * passes (messages, tools, documents, add_generation_prompt, the special tokens, the extra
 * keyword arguments). The checking is the same whichever template renders, so a request is
 * refused for the same reasons on every model.
 */
#include "text/chat.h"

#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "text/chat_internal.h"
#include "text/pyfmt.h"

q3_status q3_chat_tojson(const json_t *v, char **out, q3_error *e) {
    q3_buf b = {0};
    q3_py_json(&b, v);
    if (!(*out = q3_buf_take(&b))) return q3_fail(e, Q3_ENOMEM, "chat template: out of memory");
    return Q3_OK;
}

/* ---- pass 1: check each message and bring it to the templates' shape ---- */

static const char *const ROLES[] = {"system", "user", "assistant", "tool"};

static q3_status check_role(const json_t *msg, size_t i, const char **role, q3_error *e) {
    const json_t *r = json_object_get(msg, "role");
    if (!r) return q3_fail(e, Q3_EINVAL, "messages[%zu].role: missing", i);
    if (!json_is_string(r)) return q3_fail(e, Q3_EINVAL, "messages[%zu].role: expected a string", i);
    for (size_t k = 0; k < sizeof ROLES / sizeof *ROLES; k++) {
        if (!strcmp(json_string_value(r), ROLES[k])) {
            *role = ROLES[k];
            return Q3_OK;
        }
    }
    return q3_fail(e, Q3_EINVAL,
                   "messages[%zu].role: unknown role '%.64s' (expected system, user, assistant or tool)", i,
                   json_string_value(r));
}

/* Content as an array of parts, the other form the OpenAI API allows: the text parts joined with
 * "\n", as vLLM flattens them for a text-only template. */
static q3_status join_text_parts(const json_t *parts, size_t i, json_t **out, q3_error *e) {
    q3_buf b = {0};
    for (size_t j = 0; j < json_array_size(parts); j++) {
        const json_t *part = json_array_get(parts, j);
        const json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_string(type) || strcmp(json_string_value(type), "text") || !json_is_string(text)) {
            q3_buf_free(&b);
            return q3_fail(e, Q3_EINVAL,
                           "messages[%zu].content[%zu]: expected {\"type\": \"text\", \"text\": string}"
                           " (only text parts are supported)", i, j);
        }
        if (j) q3_buf_putc(&b, '\n');
        q3_buf_put(&b, json_string_value(text), json_string_length(text));
    }
    size_t len = b.len;
    char *joined = q3_buf_take(&b);
    *out = joined ? json_stringn_nocheck(joined, len) : NULL;
    free(joined);
    return *out ? Q3_OK : q3_fail(e, Q3_ENOMEM, "chat template: out of memory");
}

static q3_status norm_content(json_t *msg, size_t i, const char *role, q3_error *e) {
    const json_t *content = json_object_get(msg, "content");
    json_t *fixed = NULL;
    if (json_is_string(content)) return Q3_OK;
    if (json_is_array(content)) {
        q3_status st = join_text_parts(content, i, &fixed, e);
        if (st) return st;
    } else if (!strcmp(role, "assistant") && (!content || json_is_null(content))) {
        fixed = json_string(""); /* an assistant that only calls tools: the templates want a string */
    } else if (!content) {
        return q3_fail(e, Q3_EINVAL, "messages[%zu].content: missing", i);
    } else {
        return q3_fail(e, Q3_EINVAL, "messages[%zu].content: expected a string or an array of text parts", i);
    }
    if (json_object_set_new(msg, "content", fixed)) return q3_fail(e, Q3_ENOMEM, "chat template: out of memory");
    return Q3_OK;
}

/* {"function": {...}} as the OpenAI API nests a call, or a flat {"name", "arguments"}. */
static json_t *call_function(json_t *call) {
    json_t *function = json_object_get(call, "function");
    return function && !json_is_null(function) && !json_is_false(function) ? function : call;
}

/* Arguments given as a JSON string (the API's form) become the object templates iterate, as
 * vLLM passes them; a string that is not a JSON object stays as it is. */
static q3_status norm_arguments(json_t *function, q3_error *e) {
    const json_t *args = json_object_get(function, "arguments");
    if (!json_is_string(args)) return Q3_OK;
    json_t *obj = json_loadb(json_string_value(args), json_string_length(args), JSON_DECODE_ANY, NULL);
    if (!json_is_object(obj)) {
        json_decref(obj);
        return Q3_OK;
    }
    return json_object_set_new(function, "arguments", obj) ? q3_fail(e, Q3_ENOMEM, "chat template: out of memory")
                                                           : Q3_OK;
}

static q3_status norm_tool_call(json_t *calls, size_t i, size_t j, q3_error *e) {
    json_t *call = json_copy(json_array_get(calls, j));
    if (!json_is_object(json_array_get(calls, j)))
        return json_decref(call), q3_fail(e, Q3_EINVAL, "messages[%zu].tool_calls[%zu]: expected an object", i, j);
    if (!call || json_array_set_new(calls, j, call)) return q3_fail(e, Q3_ENOMEM, "chat template: out of memory");
    json_t *function = call_function(call);
    const char *where = function == call ? "" : ".function";
    if (!json_is_object(function))
        return q3_fail(e, Q3_EINVAL, "messages[%zu].tool_calls[%zu].function: expected an object", i, j);
    if (function != call) {
        function = json_copy(function);
        if (!function || json_object_set_new(call, "function", function))
            return q3_fail(e, Q3_ENOMEM, "chat template: out of memory");
    }
    if (!json_is_string(json_object_get(function, "name")))
        return q3_fail(e, Q3_EINVAL, "messages[%zu].tool_calls[%zu]%s.name: expected a string", i, j, where);
    if (!json_object_get(function, "arguments"))
        return q3_fail(e, Q3_EINVAL, "messages[%zu].tool_calls[%zu]%s.arguments: missing", i, j, where);
    return norm_arguments(function, e);
}

static q3_status norm_assistant(json_t *msg, size_t i, q3_error *e) {
    const json_t *reasoning = json_object_get(msg, "reasoning_content");
    if (reasoning && !json_is_null(reasoning) && !json_is_string(reasoning))
        return q3_fail(e, Q3_EINVAL, "messages[%zu].reasoning_content: expected a string", i);
    const json_t *calls = json_object_get(msg, "tool_calls");
    if (!calls || json_is_null(calls)) return Q3_OK;
    if (!json_is_array(calls)) return q3_fail(e, Q3_EINVAL, "messages[%zu].tool_calls: expected an array", i);
    json_t *copy = json_copy((json_t *)calls);
    if (!copy || json_object_set_new(msg, "tool_calls", copy)) return q3_fail(e, Q3_ENOMEM, "chat template: out of memory");
    for (size_t j = 0; j < json_array_size(copy); j++) {
        q3_status st = norm_tool_call(copy, i, j, e);
        if (st) return st;
    }
    return Q3_OK;
}

static q3_status norm_message(const json_t *msg, size_t i, json_t **out, q3_error *e) {
    *out = NULL;
    if (!json_is_object(msg)) return q3_fail(e, Q3_EINVAL, "messages[%zu]: expected an object", i);
    const char *role = NULL;
    q3_status st = check_role(msg, i, &role, e);
    if (st) return st;
    json_t *copy = json_copy((json_t *)msg); /* shallow: the fields we change are replaced, not edited */
    if (!copy) return q3_fail(e, Q3_ENOMEM, "chat template: out of memory");
    st = norm_content(copy, i, role, e);
    if (!st && !strcmp(role, "assistant")) st = norm_assistant(copy, i, e);
    if (st) json_decref(copy);
    else *out = copy;
    return st;
}

static q3_status norm_messages(const json_t *messages, json_t **out, q3_error *e) {
    *out = NULL;
    if (!json_is_array(messages)) return q3_fail(e, Q3_EINVAL, "messages: expected an array");
    if (json_array_size(messages) == 0)
        return q3_fail(e, Q3_EINVAL, "messages: empty (the template reads messages[0])");
    json_t *list = json_array();
    if (!list) return q3_fail(e, Q3_ENOMEM, "chat template: out of memory");
    for (size_t i = 0; i < json_array_size(messages); i++) {
        json_t *msg;
        q3_status st = norm_message(json_array_get(messages, i), i, &msg, e);
        if (!st && json_array_append_new(list, msg)) st = q3_fail(e, Q3_ENOMEM, "chat template: out of memory");
        if (st) {
            json_decref(list);
            return st;
        }
    }
    *out = list;
    return Q3_OK;
}

static q3_status check_tools(const json_t *tools, q3_error *e) {
    if (!tools || json_is_null(tools)) return Q3_OK;
    if (!json_is_array(tools)) return q3_fail(e, Q3_EINVAL, "tools: expected an array");
    for (size_t i = 0; i < json_array_size(tools); i++)
        if (!json_is_object(json_array_get(tools, i))) return q3_fail(e, Q3_EINVAL, "tools[%zu]: expected an object", i);
    return Q3_OK;
}

/* ---- pass 2: the template ---- */

static const char *const FIXED[] = {"messages", "tools", "documents", "add_generation_prompt"};

/* The variables of a render: special tokens, enable_thinking=False when thinking is off, the
 * extra keyword arguments (which win), then what every render gets. */
static json_t *context_for(const q3_chat_template *t, json_t *messages, const json_t *tools,
                           const q3_chat_options *opt) {
    json_t *ctx = json_object();
    if (!ctx) return NULL;
    int failed = t ? json_object_update(ctx, (json_t *)chat_template_vars(t)) : 0;
    if (!opt->enable_thinking) failed |= json_object_set_new(ctx, "enable_thinking", json_false());
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)opt->template_kwargs, key, value) {
        bool fixed = false;
        for (size_t k = 0; k < sizeof FIXED / sizeof *FIXED; k++) fixed |= !strcmp(key, FIXED[k]);
        if (!fixed) failed |= json_object_set(ctx, key, value);
    }
    failed |= json_object_set(ctx, "messages", messages);
    failed |= json_object_set_new(ctx, "tools", tools && !json_is_null(tools) ? json_incref((json_t *)tools) : json_null());
    failed |= json_object_set_new(ctx, "documents", json_null());
    failed |= json_object_set_new(ctx, "add_generation_prompt", json_boolean(opt->add_generation_prompt));
    if (failed) {
        json_decref(ctx);
        return NULL;
    }
    return ctx;
}

static q3_status render_with(const q3_chat_template *t, json_t *messages, const json_t *tools,
                             const q3_chat_options *opt, char **out, q3_error *e) {
    q3_chat_template *builtin = NULL;
    q3_status st = Q3_OK;
    if (!t) {
        st = q3_chat_template_parse(q3_chat_builtin_template, strlen(q3_chat_builtin_template),
                                    "the built-in Qwen3 chat template", &builtin, e);
        t = builtin;
    }
    const q3_jinja *j = NULL;
    if (!st) st = chat_template_pick(t, tools && !json_is_null(tools), &j, e);
    json_t *ctx = st ? NULL : context_for(t, messages, tools, opt);
    if (!st && !ctx) st = q3_fail(e, Q3_ENOMEM, "chat template: out of memory");
    if (!st) st = q3_jinja_render(j, ctx, NULL, out, e);
    json_decref(ctx);
    q3_chat_template_free(builtin);
    return st;
}

q3_status q3_chat_render(const json_t *messages, const json_t *tools, const q3_chat_options *opt, char **out,
                         q3_error *e) {
    static const q3_chat_options defaults = {.add_generation_prompt = true, .enable_thinking = true};
    if (!opt) opt = &defaults;
    *out = NULL;
    if (opt->template_kwargs && !json_is_object(opt->template_kwargs))
        return q3_fail(e, Q3_EINVAL, "chat_template_kwargs: expected an object");
    json_t *norm;
    q3_status st = check_tools(tools, e);
    if (!st) st = norm_messages(messages, &norm, e);
    if (st) return st;
    st = render_with(opt->template, norm, tools, opt, out, e);
    json_decref(norm);
    return st;
}

bool q3_chat_opens_reasoning(const char *prompt) {
    const char *turn = prompt, *p;
    while ((p = strstr(turn, "<|im_start|>"))) turn = p + 1;
    const char *open = NULL, *close = NULL;
    for (p = turn; (p = strstr(p, "<think>")); p++) open = p;
    for (p = turn; (p = strstr(p, "</think>")); p++) close = p;
    return open && (!close || close < open);
}
