/* Reading an OpenAI request: the JSON body and its fields, checked one by one (a wrong type or
 * value is a 400 naming the field, in `param`).
 *
 * Fields honoured: model, messages (the developer role read as system), prompt, stream,
 * stream_options.include_usage, max_tokens, max_completion_tokens, temperature, top_p, top_k,
 * min_p, presence_penalty, frequency_penalty, repetition_penalty, seed, stop, n (up to 16
 * choices), logprobs, top_logprobs, echo (completions, not streamed: the prompt and its
 * log-probabilities in front), logit_bias, response_format (text, json_object, json_schema),
 * tools, tool_choice (auto, none, required, or a named function), enable_thinking and
 * chat_template_kwargs.enable_thinking, ignore_eos. Fields we do not implement are refused when
 * they would change the answer (best_of other than n, suffix) and ignored otherwise (user, ...). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <stdio.h>

#include "server/openai.h"

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
static bool refuse_unsupported(const json_t *body, const completion_request *c, api_error *err) {
    long long best_of = c->n;
    if (!get_int(body, "best_of", c->n, c->n, &best_of, err))
        return api_fail(err, 400, "invalid_value", "best_of", "best_of is supported only equal to n");
    return refuse(body, "suffix", true, "suffix is not supported", err);
}

/* {"TOKEN_ID": BIAS, ...}: ids of this model, biases in [-100, 100]. */
static bool parse_logit_bias(const json_t *body, const q3_server *srv, completion_request *c, api_error *err) {
    const json_t *bias = field(body, "logit_bias");
    if (!bias || json_object_size(bias) == 0) return true;
    if (!json_is_object(bias)) return api_fail(err, 400, "invalid_type", "logit_bias", "logit_bias must map token ids to numbers");
    size_t n = json_object_size(bias);
    c->bias_ids = malloc(n * sizeof *c->bias_ids);
    c->bias = malloc(n * sizeof *c->bias);
    if (!c->bias_ids || !c->bias) return api_fail(err, 500, NULL, NULL, "out of memory");
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)bias, key, v) {
        char *end;
        long id = strtol(key, &end, 10);
        if (!*key || *end || id < 0 || id >= q3_tok_vocab_size(srv->tok))
            return api_fail(err, 400, "invalid_value", "logit_bias", "logit_bias: \"%s\" is not a token id of this model", key);
        if (!json_is_number(v) || !(json_number_value(v) >= -100 && json_number_value(v) <= 100))
            return api_fail(err, 400, "invalid_value", "logit_bias", "logit_bias: the bias of token %ld must be between -100 and 100", id);
        c->bias_ids[c->n_bias] = (int32_t)id;
        c->bias[c->n_bias++] = (float)json_number_value(v);
    }
    return true;
}

/* "auto", "none", "required", or {"type": "function", "function": {"name": NAME}}. */
static bool parse_tool_choice(const json_t *body, completion_request *c, api_error *err) {
    const json_t *choice = field(body, "tool_choice");
    if (!choice) return true;
    const char *how = json_string_value(choice);
    if (how && !strcmp(how, "auto")) return set_tool_mode(c, TOOLS_AUTO, NULL, "tool_choice", err);
    if (how && !strcmp(how, "none")) return set_tool_mode(c, TOOLS_NONE, NULL, "tool_choice", err);
    if (how && !strcmp(how, "required")) return set_tool_mode(c, TOOLS_REQUIRED, NULL, "tool_choice", err);
    const char *name = json_string_value(json_object_get(json_object_get(choice, "function"), "name"));
    const char *type = json_string_value(json_object_get(choice, "type"));
    if (!json_is_object(choice) || !type || strcmp(type, "function") || !name)
        return api_fail(err, 400, "invalid_value", "tool_choice",
                        "tool_choice must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}");
    return set_tool_mode(c, TOOLS_NAMED, name, "tool_choice", err);
}

/* n choices, echo (completions only: the prompt in front, not streamed), response_format. */
static bool parse_shape(const json_t *body, completion_request *c, api_error *err) {
    long long n = 1;
    if (!get_int(body, "n", 1, Q3_MAX_CHOICES, &n, err)) return false;
    c->n = (int)n;
    if (!get_bool(body, "echo", &c->echo, err)) return false;
    if (c->echo && c->chat) return api_fail(err, 400, "unsupported_parameter", "echo", "echo is a /v1/completions field");
    if (c->echo && c->stream) return api_fail(err, 400, "unsupported_parameter", "echo", "echo is not supported with stream");
    const json_t *format = field(body, "response_format");
    return !format || set_response_format(c, format, "response_format", err);
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
    if (!rewrite_developer_role(c, err) || !parse_tool_choice(body, c, err)) return false;
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

/* max_tokens or max_completion_tokens: positive, or 0 with echo (score the prompt only). */
static bool parse_max_tokens(const json_t *body, completion_request *c, api_error *err) {
    long long max_tokens = -1;
    const char *key = field(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    if (!get_int(body, key, 0, INT32_MAX, &max_tokens, err)) return false;
    if (max_tokens == 0 && !c->echo) return api_fail(err, 400, "invalid_value", key, "%s must be at least 1", key);
    c->max_tokens = max_tokens;
    return true;
}

bool parse_completion_request(const json_t *body, const q3_server *srv, bool chat, completion_request *c,
                              api_error *err) {
    *c = completion_request_new(srv, chat);
    if (!check_model(body, srv, err) || !parse_stream(body, c, err) || !parse_shape(body, c, err) ||
        !refuse_unsupported(body, c, err) || !parse_max_tokens(body, c, err) ||
        !parse_sampling(body, &c->sampling, err) || !parse_stop(body, "stop", c, err) ||
        !parse_logprobs(body, chat, c, err) || !parse_logit_bias(body, srv, c, err) ||
        !get_bool(body, "ignore_eos", &c->ignore_eos, err))
        return false;
    if (chat) return parse_chat_fields(body, c, err);
    c->prompt = field(body, "prompt");
    if (!c->prompt) return api_fail(err, 400, "missing_field", "prompt", "prompt is required");
    return true;
}

