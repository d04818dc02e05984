/* Reading an OpenAI request: the JSON body, its fields checked one by one (a wrong type or value
 * is a 400 naming the field, in `param`), and the prompt made from it.
 *
 * Fields honoured: model, messages, prompt, stream, stream_options.include_usage, max_tokens,
 * max_completion_tokens, temperature, top_p, top_k, min_p, presence_penalty, frequency_penalty,
 * repetition_penalty, seed, stop, n (1 only), logprobs, top_logprobs, tools, tool_choice ("auto"
 * or "none"), enable_thinking and chat_template_kwargs.enable_thinking, ignore_eos. Fields we do
 * not implement are refused when they would change the answer (n > 1, best_of > 1, echo, suffix,
 * a logit_bias, a response_format other than text) and ignored otherwise (user, ...). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "server/openai.h"

/* ---- fields ---- */

/* A member that is absent or null is "not given". */
static const json_t *field(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    return json_is_null(v) ? NULL : v;
}

static bool get_float(const json_t *o, const char *key, double lo, double hi, float *out, api_error *err) {
    const json_t *v = field(o, key);
    if (!v) return true;
    if (!json_is_number(v)) return api_fail(err, 400, "invalid_type", key, "%s must be a number", key);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi))
        return api_fail(err, 400, "invalid_value", key, "%s must be between %g and %g, not %g", key, lo, hi, x);
    *out = (float)x;
    return true;
}

static bool get_int(const json_t *o, const char *key, long long lo, long long hi, long long *out, api_error *err) {
    const json_t *v = field(o, key);
    if (!v) return true;
    if (!json_is_integer(v)) return api_fail(err, 400, "invalid_type", key, "%s must be an integer", key);
    long long x = json_integer_value(v);
    if (x < lo || x > hi)
        return api_fail(err, 400, "invalid_value", key, "%s must be between %lld and %lld, not %lld", key, lo, hi, x);
    *out = x;
    return true;
}

static bool get_bool(const json_t *o, const char *key, bool *out, api_error *err) {
    const json_t *v = field(o, key);
    if (!v) return true;
    if (!json_is_boolean(v)) return api_fail(err, 400, "invalid_type", key, "%s must be true or false", key);
    *out = json_is_true(v);
    return true;
}

static bool refuse(const json_t *o, const char *key, bool unsupported, const char *why, api_error *err) {
    return !(field(o, key) && unsupported) || api_fail(err, 400, "unsupported_parameter", key, "%s", why);
}

/* ---- the body ---- */

bool read_body(const http_request *r, json_t **out, api_error *err) {
    size_t bad = utf8_invalid_at(r->body, r->body_len);
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

/* ---- a completion request ---- */

static bool parse_stop(const json_t *body, completion_request *c, api_error *err) {
    const json_t *stop = field(body, "stop");
    if (!stop) return true;
    if (json_is_string(stop)) {
        c->stop[c->n_stop++] = json_string_value(stop);
    } else if (json_is_array(stop)) {
        if (json_array_size(stop) > Q3_MAX_STOP)
            return api_fail(err, 400, "invalid_value", "stop", "stop takes at most %d strings", Q3_MAX_STOP);
        for (size_t i = 0; i < json_array_size(stop); i++) {
            const json_t *s = json_array_get(stop, i);
            if (!json_is_string(s)) return api_fail(err, 400, "invalid_type", "stop", "stop[%zu] must be a string", i);
            c->stop[c->n_stop++] = json_string_value(s);
        }
    } else {
        return api_fail(err, 400, "invalid_type", "stop", "stop must be a string or a list of strings");
    }
    for (int i = 0; i < c->n_stop; i++)
        if (!c->stop[i][0]) return api_fail(err, 400, "invalid_value", "stop", "stop strings must not be empty");
    return true;
}

static bool parse_sampling(const json_t *body, q3_sampling *s, api_error *err) {
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

static bool parse_stream(const json_t *body, completion_request *c, api_error *err) {
    if (!get_bool(body, "stream", &c->stream, err)) return false;
    const json_t *so = field(body, "stream_options");
    if (!so) return true;
    if (!json_is_object(so)) return api_fail(err, 400, "invalid_type", "stream_options", "stream_options must be an object");
    if (!c->stream)
        return api_fail(err, 400, "invalid_value", "stream_options", "stream_options is only allowed with stream: true");
    const json_t *iu = field(so, "include_usage");
    if (iu && !json_is_boolean(iu))
        return api_fail(err, 400, "invalid_type", "stream_options", "stream_options.include_usage must be true or false");
    c->include_usage = json_is_true(iu);
    return true;
}

/* What changes the answer in ways we do not do is refused rather than ignored. */
static bool refuse_unsupported(const json_t *body, api_error *err) {
    long long n = 1, best_of = 1;
    if (!get_int(body, "n", 1, 1, &n, err)) return api_fail(err, 400, "invalid_value", "n", "only n = 1 is supported");
    if (!get_int(body, "best_of", 1, 1, &best_of, err))
        return api_fail(err, 400, "invalid_value", "best_of", "only best_of = 1 is supported");
    const json_t *bias = field(body, "logit_bias");
    const json_t *format = field(body, "response_format");
    const json_t *format_type = json_object_get(format, "type");
    return refuse(body, "logit_bias", !json_is_object(bias) || json_object_size(bias) > 0, "logit_bias is not supported", err) &&
           refuse(body, "response_format", !json_is_string(format_type) || strcmp(json_string_value(format_type), "text"),
                  "only response_format {\"type\": \"text\"} is supported", err) &&
           refuse(body, "echo", json_is_true(field(body, "echo")), "echo is not supported", err) &&
           refuse(body, "suffix", true, "suffix is not supported", err);
}

bool parse_chat_fields(const json_t *body, completion_request *c, api_error *err) {
    c->messages = field(body, "messages");
    if (!c->messages) return api_fail(err, 400, "missing_field", "messages", "messages is required");
    if (!json_is_array(c->messages) || json_array_size(c->messages) == 0)
        return api_fail(err, 400, "invalid_type", "messages", "messages must be a non-empty list of messages");
    c->tools = field(body, "tools");
    if (c->tools && !json_is_array(c->tools))
        return api_fail(err, 400, "invalid_type", "tools", "tools must be a list of tools");
    if (c->tools && json_array_size(c->tools) == 0) c->tools = NULL;
    const json_t *choice = field(body, "tool_choice");
    if (choice) {
        const char *how = json_string_value(choice);
        if (!how || (strcmp(how, "auto") && strcmp(how, "none")))
            return api_fail(err, 400, "unsupported_parameter", "tool_choice", "tool_choice must be \"auto\" or \"none\"");
        if (!strcmp(how, "none")) c->tools = NULL;
    }
    c->enable_thinking = true;
    c->add_generation_prompt = true;
    const json_t *kwargs = field(body, "chat_template_kwargs");
    if (kwargs && !json_is_object(kwargs))
        return api_fail(err, 400, "invalid_type", "chat_template_kwargs", "chat_template_kwargs must be an object");
    return get_bool(body, "enable_thinking", &c->enable_thinking, err) &&
           (!kwargs || get_bool(kwargs, "enable_thinking", &c->enable_thinking, err)) &&
           get_bool(body, "add_generation_prompt", &c->add_generation_prompt, err);
}

static bool parse_logprobs(const json_t *body, bool chat, completion_request *c, api_error *err) {
    c->logprobs = -1;
    if (!chat) {
        long long n = -1;
        if (!get_int(body, "logprobs", 0, Q3_MAX_TOP_LOGPROBS, &n, err)) return false;
        c->logprobs = (int)n;
        return true;
    }
    bool want = false;
    long long top = -1;
    if (!get_bool(body, "logprobs", &want, err) || !get_int(body, "top_logprobs", 0, Q3_MAX_TOP_LOGPROBS, &top, err))
        return false;
    if (top >= 0 && !want)
        return api_fail(err, 400, "invalid_value", "top_logprobs", "top_logprobs needs logprobs: true");
    if (want) c->logprobs = top > 0 ? (int)top : 0;
    return true;
}

bool parse_completion_request(const json_t *body, const q3_server *srv, bool chat, completion_request *c,
                              api_error *err) {
    *c = (completion_request){.chat = chat, .sampling = srv->o.sampling};
    long long max_tokens = 0;
    if (!check_model(body, srv, err) || !refuse_unsupported(body, err) || !parse_stream(body, c, err) ||
        !get_int(body, "max_tokens", 1, INT32_MAX, &max_tokens, err) ||
        !get_int(body, "max_completion_tokens", 1, INT32_MAX, &max_tokens, err) ||
        !parse_sampling(body, &c->sampling, err) || !parse_stop(body, c, err) ||
        !parse_logprobs(body, chat, c, err) || !get_bool(body, "ignore_eos", &c->ignore_eos, err))
        return false;
    c->max_tokens = max_tokens;
    if (chat) return parse_chat_fields(body, c, err);
    c->prompt = field(body, "prompt");
    if (!c->prompt) return api_fail(err, 400, "missing_field", "prompt", "prompt is required");
    return true;
}

/* ---- the prompt ---- */

/* The rendered prompt leaves the model inside a <think> block when, after the last turn's start,
 * a <think> is not followed by </think>. The Qwen3 template never does (the model opens the
 * block itself), but templates that do exist, and so do conversations ending in an open one. */
static bool opens_reasoning(const char *prompt) {
    const char *turn = prompt, *p;
    while ((p = strstr(turn, "<|im_start|>"))) turn = p + 1;
    const char *open = NULL, *close = NULL;
    for (p = turn; (p = strstr(p, "<think>")); p++) open = p;
    for (p = turn; (p = strstr(p, "</think>")); p++) close = p;
    return open && (!close || close < open);
}

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
    *in_reasoning = opens_reasoning(text);
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
    if (c->max_tokens == 0) {
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
