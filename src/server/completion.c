/* The steps every API's completion shares (see completion.h): the request's defaults, the
 * grammar a response format or a forced tool call asks for, the developer role, the prompt's
 * tokens and the length checks. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "server/completion.h"
#include "text/chat.h"

completion_request completion_request_new(const q3_server *srv, bool chat) {
    return (completion_request){.chat = chat, .n = 1, .logprobs = -1, .max_tokens = -1, .sampling = srv->o.sampling,
                                .enable_thinking = true, .add_generation_prompt = true,
                                .tool_format = q3_chat_template_tool_format(q3_tok_chat_template(srv->tok))};
}

void completion_request_free(completion_request *c) {
    json_decref(c->owned);
    q3_grammar_release(c->grammar);
    free(c->bias_ids);
    free(c->bias);
    c->owned = NULL;
    c->grammar = NULL;
    c->bias_ids = NULL;
    c->bias = NULL;
}

/* ---- fields ---- */

/* A member that is absent or null is "not given". */
const json_t *field(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    return json_is_null(v) ? NULL : v;
}

bool get_float(const json_t *o, const char *key, double lo, double hi, float *out, api_error *err) {
    const json_t *v = field(o, key);
    if (!v) return true;
    if (!json_is_number(v)) return api_fail(err, 400, "invalid_type", key, "%s must be a number", key);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi))
        return api_fail(err, 400, "invalid_value", key, "%s must be between %g and %g, not %g", key, lo, hi, x);
    *out = (float)x;
    return true;
}

bool get_int(const json_t *o, const char *key, long long lo, long long hi, long long *out, api_error *err) {
    const json_t *v = field(o, key);
    if (!v) return true;
    if (!json_is_integer(v)) return api_fail(err, 400, "invalid_type", key, "%s must be an integer", key);
    long long x = json_integer_value(v);
    if (x < lo || x > hi)
        return api_fail(err, 400, "invalid_value", key, "%s must be between %lld and %lld, not %lld", key, lo, hi, x);
    *out = x;
    return true;
}

bool get_bool(const json_t *o, const char *key, bool *out, api_error *err) {
    const json_t *v = field(o, key);
    if (!v) return true;
    if (!json_is_boolean(v)) return api_fail(err, 400, "invalid_type", key, "%s must be true or false", key);
    *out = json_is_true(v);
    return true;
}

bool refuse(const json_t *o, const char *key, bool unsupported, const char *why, api_error *err) {
    return !(field(o, key) && unsupported) || api_fail(err, 400, "unsupported_parameter", key, "%s", why);
}

/* ---- a completion request ---- */

bool parse_stop(const json_t *body, const char *key, completion_request *c, api_error *err) {
    const json_t *stop = field(body, key);
    if (!stop) return true;
    if (json_is_string(stop)) {
        c->stop[c->n_stop++] = json_string_value(stop);
    } else if (json_is_array(stop)) {
        if (json_array_size(stop) > Q3_MAX_STOP)
            return api_fail(err, 400, "invalid_value", key, "%s takes at most %d strings", key, Q3_MAX_STOP);
        for (size_t i = 0; i < json_array_size(stop); i++) {
            const json_t *s = json_array_get(stop, i);
            if (!json_is_string(s)) return api_fail(err, 400, "invalid_type", key, "%s[%zu] must be a string", key, i);
            c->stop[c->n_stop++] = json_string_value(s);
        }
    } else {
        return api_fail(err, 400, "invalid_type", key, "%s must be a string or a list of strings", key);
    }
    for (int i = 0; i < c->n_stop; i++)
        if (!c->stop[i][0]) return api_fail(err, 400, "invalid_value", key, "%s: the strings must not be empty", key);
    return true;
}

bool parse_sampling(const json_t *body, q3_sampling *s, api_error *err) {
    long long top_k = s->top_k, seed = -1;
    bool has_seed = field(body, "seed") != NULL;
    if (!get_float(body, "temperature", 0, 100, &s->temperature, err) ||
        !get_float(body, "top_p", 0, 1, &s->top_p, err) || !get_float(body, "min_p", 0, 1, &s->min_p, err) ||
        !get_int(body, "top_k", -1, 1 << 30, &top_k, err) ||
        !get_float(body, "presence_penalty", -2, 2, &s->presence_penalty, err) ||
        !get_float(body, "frequency_penalty", -2, 2, &s->frequency_penalty, err) ||
        !get_float(body, "repetition_penalty", 1e-6, 100, &s->repetition_penalty, err) ||
        !get_int(body, "seed", INT64_MIN, INT64_MAX, &seed, err))
        return false;
    s->top_k = top_k > 0 ? (int)top_k : 0; /* vLLM's -1 and OpenAI's 0 both mean off */
    s->seed = has_seed ? (uint64_t)seed : Q3_SEED_RANDOM;
    q3_error e;
    if (q3_sampling_check(s, &e)) return api_fail(err, 400, "invalid_value", NULL, "%s", e.msg);
    return true;
}

/* ---- the body ---- */



bool read_body(const http_request *r, json_t **out, api_error *err) {
    size_t bad = q3_utf8_invalid_at(r->body, r->body_len);
    if (bad < r->body_len)
        return api_fail(err, 400, "invalid_utf8", NULL, "the request body is not valid UTF-8 (byte %zu)", bad);
    json_error_t je;
    json_t *v = json_loadb(r->body, r->body_len, 0, &je);
    if (!v)
        return api_fail(err, 400, "invalid_json", NULL, "the request body is not valid JSON: %s (line %d, column %d)",
                        je.text, je.line, je.column);
    if (!json_is_object(v)) {
        json_decref(v);
        return api_fail(err, 400, "invalid_json", NULL, "the request body must be a JSON object");
    }
    *out = v;
    return true;
}

bool check_model(const json_t *body, const q3_server *srv, api_error *err) {
    const json_t *model = field(body, "model");
    if (!model) return true;
    if (!json_is_string(model)) return api_fail(err, 400, "invalid_type", "model", "model must be a string");
    if (strcmp(json_string_value(model), srv->model_name))
        return api_fail(err, 404, "model_not_found", "model", "The model `%s` does not exist; this server serves `%s`",
                        json_string_value(model), srv->model_name);
    return true;
}

/* ---- grammars ---- */

/* A compiler's error ("'type' at $...: ...") as a 400 on param; out of memory as a 500. */
static bool grammar_error(const q3_error *e, const char *param, const char *what, api_error *err) {
    if (e->code == Q3_ENOMEM) return api_fail(err, 500, NULL, NULL, "%s", e->msg);
    return api_fail(err, 400, "invalid_value", param, "%s: %s", what, e->msg);
}

static void take_grammar(completion_request *c, q3_grammar *g) {
    q3_grammar_release(c->grammar);
    c->grammar = g;
}

bool set_json_grammar(completion_request *c, const json_t *schema, const char *param, api_error *err) {
    q3_grammar *g;
    q3_error e = {0};
    if (schema ? q3_json_schema_grammar(schema, &g, &e) : q3_json_object_grammar(&g, &e))
        return grammar_error(&e, param, "invalid JSON schema", err);
    take_grammar(c, g);
    return true;
}

bool set_response_format(completion_request *c, const json_t *format, const char *param, api_error *err) {
    const char *type = json_string_value(json_object_get(format, "type"));
    if (!json_is_object(format) || !type)
        return api_fail(err, 400, "invalid_type", param, "%s must be an object with a \"type\"", param);
    if (!strcmp(type, "text")) return true;
    if (!strcmp(type, "json_object")) return set_json_grammar(c, NULL, param, err);
    if (strcmp(type, "json_schema"))
        return api_fail(err, 400, "invalid_value", param, "%s.type must be \"text\", \"json_object\" or \"json_schema\"", param);
    const json_t *spec = json_object_get(format, "json_schema");
    const json_t *schema = json_object_get(spec, "schema");
    if (!schema && json_object_get(format, "schema")) schema = json_object_get(format, "schema"); /* Responses' flat form */
    if (!schema) return api_fail(err, 400, "missing_field", param, "%s.json_schema.schema is required", param);
    return set_json_grammar(c, schema, param, err);
}

static const char *function_name(const json_t *tool) {
    return json_string_value(json_object_get(json_object_get(tool, "function"), "name"));
}

bool set_tool_mode(completion_request *c, tool_mode mode, const char *name, const char *param, api_error *err) {
    if (mode == TOOLS_AUTO) return true;
    if (mode == TOOLS_NONE) {
        c->tools = NULL;
        return true;
    }
    if (!c->tools) return api_fail(err, 400, "invalid_value", param, "%s asks for a tool call, but no tools are given", param);
    if (mode == TOOLS_NAMED) {
        bool found = false;
        size_t i;
        const json_t *tool;
        json_array_foreach(c->tools, i, tool) found |= function_name(tool) && !strcmp(function_name(tool), name);
        if (!found)
            return api_fail(err, 400, "invalid_value", param, "%s names the tool \"%s\", which is not among the tools", param, name);
    }
    q3_grammar *g;
    q3_error e = {0};
    if (q3_tool_call_grammar(c->tools, mode == TOOLS_NAMED ? name : NULL, c->tool_format, &g, &e))
        return grammar_error(&e, param, "cannot constrain the reply to these tools", err);
    take_grammar(c, g);
    c->calls_forced = true;
    return true;
}

/* ---- the developer role ---- */

bool rewrite_developer_role(completion_request *c, api_error *err) {
    size_t i;
    const json_t *m;
    bool any = false;
    json_array_foreach(c->messages, i, m) any |= json_is_object(m) && json_is_string(json_object_get(m, "role")) &&
                                                 !strcmp(json_string_value(json_object_get(m, "role")), "developer");
    if (!any) return true;
    json_t *copy = json_deep_copy(c->messages);
    if (!copy) return api_fail(err, 500, NULL, NULL, "out of memory");
    json_t *msg;
    json_array_foreach(copy, i, msg)
        if (json_is_string(json_object_get(msg, "role")) && !strcmp(json_string_value(json_object_get(msg, "role")), "developer"))
            json_object_set_new(msg, "role", json_string("system"));
    if (!c->owned && !(c->owned = json_object())) {
        json_decref(copy);
        return api_fail(err, 500, NULL, NULL, "out of memory");
    }
    json_object_set_new(c->owned, "messages", copy);
    c->messages = copy;
    return true;
}

/* ---- the prompt ---- */

static bool encode(const q3_server *srv, const char *text, size_t len, int32_t **ids, int *n, const char *param,
                   api_error *err) {
    q3_error e;
    if (q3_tok_encode(srv->tok, text, len, true, ids, n, &e))
        return api_fail(err, e.code == Q3_ENOMEM ? 500 : 400, NULL, param, "%s: %s", param, e.msg);
    return true;
}

/* A completions prompt given as token ids, checked against the vocabulary. */
static bool copy_ids(const q3_server *srv, const json_t *list, int32_t **ids, int *n, api_error *err) {
    size_t count = json_array_size(list);
    int32_t *out = malloc((count ? count : 1) * sizeof *out);
    if (!out) return api_fail(err, 500, NULL, NULL, "out of memory");
    for (size_t i = 0; i < count; i++) {
        const json_t *v = json_array_get(list, i);
        long long id = json_is_integer(v) ? json_integer_value(v) : -1;
        if (id < 0 || id >= q3_tok_vocab_size(srv->tok)) {
            free(out);
            return api_fail(err, 400, "invalid_value", "prompt", "prompt[%zu] is not a token id of this model", i);
        }
        out[i] = (int32_t)id;
    }
    *ids = out;
    *n = (int)count;
    return true;
}

static bool completion_prompt(const q3_server *srv, const json_t *prompt, int32_t **ids, int *n, api_error *err) {
    /* One prompt per request: a string, or a list holding one string or one list of ids. */
    if (json_is_array(prompt) && json_array_size(prompt) == 1 &&
        (json_is_string(json_array_get(prompt, 0)) || json_is_array(json_array_get(prompt, 0))))
        prompt = json_array_get(prompt, 0);
    if (json_is_string(prompt))
        return encode(srv, json_string_value(prompt), json_string_length(prompt), ids, n, "prompt", err);
    if (json_is_array(prompt) && json_is_integer(json_array_get(prompt, 0))) return copy_ids(srv, prompt, ids, n, err);
    return api_fail(err, 400, "invalid_type", "prompt",
                    "prompt must be a string or a list of token ids (one prompt per request)");
}

bool prompt_tokens(const q3_server *srv, const completion_request *c, int32_t **ids, int *n, bool *in_reasoning,
                   api_error *err) {
    *ids = NULL;
    *n = 0;
    *in_reasoning = false;
    if (!c->chat) return completion_prompt(srv, c->prompt, ids, n, err);
    q3_chat_options opt = {.add_generation_prompt = c->add_generation_prompt, .enable_thinking = c->enable_thinking,
                           .template = q3_tok_chat_template(srv->tok)};
    char *text;
    q3_error e;
    if (q3_chat_render(c->messages, c->tools, &opt, &text, &e))
        return api_fail(err, e.code == Q3_ENOMEM ? 500 : 400, "invalid_value", "messages", "%s", e.msg);
    *in_reasoning = q3_chat_opens_reasoning(text);
    bool ok = encode(srv, text, strlen(text), ids, n, "messages", err);
    free(text);
    return ok;
}

bool check_length(const q3_server *srv, int n_prompt, completion_request *c, api_error *err) {
    const char *what = c->chat ? "messages" : "prompt";
    int context = srv->o.max_context;
    if (n_prompt == 0) return api_fail(err, 400, "invalid_value", what, "the prompt is empty");
    if (n_prompt >= context)
        return api_fail(err, 400, "context_length_exceeded", what,
                        "This model's maximum context length is %d tokens; the %s take %d tokens", context, what,
                        n_prompt);
    if (n_prompt + 1 > srv->o.cache_tokens)
        return api_fail(err, 400, "context_length_exceeded", what,
                        "the prompt (%d tokens) does not fit in the KV cache (%d tokens, --cache-lens)", n_prompt,
                        srv->o.cache_tokens);
    /* A sequence alone in the engine always has the whole cache, so a request within it cannot
     * run out of pages mid-way (with others beside it, the engine preempts and recomputes). */
    int room = context < srv->o.cache_tokens ? context : srv->o.cache_tokens;
    if (c->max_tokens < 0) {
        c->max_tokens = room - n_prompt;
    } else if (n_prompt + c->max_tokens > context) {
        return api_fail(err, 400, "context_length_exceeded", "max_tokens",
                        "This model's maximum context length is %d tokens. However, you requested %lld tokens "
                        "(%d in the %s, %lld in the completion)",
                        context, n_prompt + c->max_tokens, n_prompt, what, c->max_tokens);
    } else if (n_prompt + c->max_tokens > srv->o.cache_tokens) {
        return api_fail(err, 400, "context_length_exceeded", "max_tokens",
                        "the KV cache holds %d tokens (--cache-lens); the %s take %d and max_tokens asks for %lld more",
                        srv->o.cache_tokens, what, n_prompt, c->max_tokens);
    }
    return true;
}
