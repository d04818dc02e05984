/* The OpenAI-compatible endpoints: POST /v1/chat/completions, POST /v1/completions,
 * GET /v1/models (and /v1/models/ID), and the llama.cpp / vLLM helpers POST /tokenize and
 * POST /detokenize.
 *
 * A completion goes straight through serve_completion, in this order:
 *   request JSON -> completion_request        (openai_request.c: every field checked; a response
 *                                              format or forced tool call becomes a grammar)
 *   messages -> chat template -> prompt text  (completion.c, text/chat.h)
 *   prompt text -> tokens                     (text/tokenizer.h)
 *   tokens -> q3_engine_submit, per choice    (generation.c; events go to a job, job.c)
 *   events -> one JSON object, or SSE chunks  (openai_reply.c)
 * Status codes: 400 for a malformed body or a bad field (named in error.param; an invalid JSON
 * schema names its keyword in the message), a prompt that does not fit the context or the KV
 * cache, max_tokens <= 0; 404 for another model; 503 with Retry-After when the engine's queue is
 * full; 500 when the engine fails. */
#include <stdlib.h>
#include <string.h>

#include "server/openai.h"

static http_reply serve_completion(const http_request *r, bool chat) {
    api_error err;
    json_t *body = NULL;
    completion_request c = completion_request_new(r->srv, chat);
    int32_t *prompt = NULL;
    int n_prompt = 0;
    bool in_reasoning = false;
    openai_reply *a = NULL;
    bool ok = read_body(r, &body, &err) &&                                         /* JSON */
              parse_completion_request(body, r->srv, chat, &c, &err) &&            /* fields, grammar */
              prompt_tokens(r->srv, &c, &prompt, &n_prompt, &in_reasoning, &err) && /* template, tokens */
              check_length(r->srv, n_prompt, &c, &err) &&
              ((a = openai_reply_new(r, &c, in_reasoning, prompt, n_prompt)) ||
               api_fail(&err, 500, NULL, NULL, "out of memory")) &&
              gen_submit(openai_reply_gen(a), &c, prompt, n_prompt, &err);        /* engine */
    http_reply reply = !ok ? reply_error(&err) : c.stream ? openai_reply_stream(a) : openai_reply_whole(a); /* events */
    if (!ok) openai_reply_free(a);
    free(prompt);
    completion_request_free(&c);
    json_decref(body);
    return reply;
}

http_reply openai_chat_completions(const http_request *r) { return serve_completion(r, true); }

http_reply openai_completions(const http_request *r) { return serve_completion(r, false); }

/* ---- models ---- */

http_reply openai_models(const http_request *r) {
    const q3_server *srv = r->srv;
    json_t *model = json_pack("{s:s, s:s, s:I, s:s, s:i}", "id", srv->model_name, "object", "model", "created",
                              (json_int_t)srv->started, "owned_by", "q3moe", "max_model_len", srv->o.max_context);
    const char *one = r->path + strlen("/v1/models");
    if (*one == '/') {
        if (!strcmp(one + 1, srv->model_name)) return reply_json(200, model);
        json_decref(model);
        api_error err;
        api_fail(&err, 404, "model_not_found", "model", "The model `%s` does not exist", one + 1);
        return reply_error(&err);
    }
    return reply_json(200, json_pack("{s:s, s:[o]}", "object", "list", "data", model));
}

/* ---- tokenize / detokenize ---- */

/* {"content" | "prompt": TEXT} or {"messages": [...], "tools", "enable_thinking", ...}
 *   -> {"tokens": [...], "count": N, "max_model_len": CONTEXT} */
http_reply openai_tokenize(const http_request *r) {
    api_error err;
    json_t *body = NULL;
    completion_request c = completion_request_new(r->srv, true);
    int32_t *ids = NULL;
    int n = 0;
    bool in_reasoning;
    if (!read_body(r, &body, &err)) return reply_error(&err);
    const json_t *text = json_object_get(body, "content");
    if (!text) text = json_object_get(body, "prompt");
    bool ok;
    if (!check_model(body, r->srv, &err)) {
        ok = false;
    } else if (json_object_get(body, "messages")) {
        ok = parse_chat_fields(body, &c, &err) && prompt_tokens(r->srv, &c, &ids, &n, &in_reasoning, &err);
    } else if (json_is_string(text)) {
        q3_error e;
        ok = !q3_tok_encode(r->srv->tok, json_string_value(text), json_string_length(text), true, &ids, &n, &e) ||
             api_fail(&err, 400, "invalid_value", "content", "%s", e.msg);
    } else {
        ok = api_fail(&err, 400, text ? "invalid_type" : "missing_field", "content",
                      "give the text to tokenize as a string in \"content\" or \"prompt\", or a conversation in "
                      "\"messages\"");
    }
    completion_request_free(&c);
    json_decref(body);
    if (!ok) return reply_error(&err);
    json_t *list = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(list, json_integer(ids[i]));
    free(ids);
    return reply_json(200, json_pack("{s:o, s:i, s:i}", "tokens", list, "count", n, "max_model_len",
                                     r->srv->o.max_context));
}

/* {"tokens": [...]} -> {"content": TEXT, "prompt": TEXT} (llama.cpp's and vLLM's names) */
http_reply openai_detokenize(const http_request *r) {
    api_error err;
    json_t *body = NULL;
    if (!read_body(r, &body, &err)) return reply_error(&err);
    const json_t *list = json_object_get(body, "tokens");
    size_t n = json_array_size(list);
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    bool ok = ids && (json_is_array(list) ||
                      api_fail(&err, 400, list ? "invalid_type" : "missing_field", "tokens", "tokens must be a list of token ids"));
    if (!ids) api_fail(&err, 500, NULL, NULL, "out of memory");
    for (size_t i = 0; ok && i < n; i++) {
        const json_t *v = json_array_get(list, i);
        long long id = json_is_integer(v) ? json_integer_value(v) : -1;
        ids[i] = (int32_t)id;
        if (id < 0 || id >= q3_tok_vocab_size(r->srv->tok))
            ok = api_fail(&err, 400, "invalid_value", "tokens", "tokens[%zu] is not a token id of this model", i);
    }
    json_decref(body);
    char *text = NULL;
    size_t len = 0;
    q3_error e;
    if (ok && q3_tok_decode(r->srv->tok, ids, (int)n, &text, &len, &e))
        ok = api_fail(&err, 500, NULL, NULL, "%s", e.msg);
    free(ids);
    if (!ok) return reply_error(&err);
    json_t *s = json_text(text ? text : "", len);
    free(text);
    return reply_json(200, json_pack("{s:O, s:o}", "content", s, "prompt", s));
}
