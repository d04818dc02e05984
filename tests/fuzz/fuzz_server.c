/* libFuzzer: request bodies of every endpoint of the server, through the server's own code up to
 * the engine, with the real Qwen3 tokenizer (tests/fixtures/qwen3-tokenizer, its chat template
 * included) and no model:
 *   /v1/chat/completions, /v1/completions, /v1/messages, /v1/responses  the chain each endpoint
 *       runs before it submits: read_body -> the API's request parser (parse_completion_request,
 *       anthropic_request, responses_request: fields, response formats and tool choices compiled
 *       into grammars) -> prompt_tokens (chat template, tokenizer) -> check_length, and the error
 *       reply (in the API's shape) when a step refuses;
 *   /v1/messages/count_tokens, /tokenize, /detokenize, /v1/models/ID  the endpoints themselves
 *       (they need no engine).
 * Any body must be answered (a 4xx JSON error or a request the engine can take), never crash or
 * hang; an accepted completion request is one the engine's own checks accept too (its sampling,
 * stop strings, prompt ids and lengths).
 *
 * Input: the first byte picks the endpoint (mod 8: chat, completions, tokenize, detokenize, models,
 * messages, count_tokens, responses); the rest is the body (the path, for models). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/anthropic.h"
#include "server/openai.h"
#include "server/responses.h"
#include "text/stop.h"

static q3_server srv;

/* Loading the tokenizer takes seconds under the sanitizers: done before the first input. */
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    q3_error e;
    q3_tokenizer *tok;
    if (q3_tok_load(&tok, Q3_FIXTURES "/qwen3-tokenizer", &e)) {
        fprintf(stderr, "fuzz_server: %s\n", e.msg);
        abort();
    }
    srv.o = q3_server_defaults();
    srv.o.max_context = 4096;
    srv.o.cache_tokens = 8192;
    srv.o.sampling = q3_sampling_defaults();
    srv.model_name = "qwen3-fuzz";
    srv.o.model_name = srv.model_name;
    srv.tok = tok;
    return 0;
}

static void free_reply(http_reply *r) {
    if (r->status < 200 || r->status >= 600 || !(r->body || r->static_body)) abort(); /* no answer */
    free(r->body);
}

/* What the engine will check again: a request the server let through must pass. */
static void check_accepted(const completion_request *c, const int32_t *ids, int n) {
    q3_error e;
    q3_sampling s = c->sampling;
    q3_stop st;
    if (q3_sampling_check(&s, &e) || q3_stop_init(&st, c->stop, c->n_stop, &e)) abort();
    q3_stop_free(&st);
    if (n <= 0 || c->max_tokens <= 0 || n + c->max_tokens > srv.o.max_context) abort();
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= q3_tok_vocab_size(srv.tok)) abort();
}

/* The APIs' request parsers, which all fill a completion_request made by completion_request_new. */
typedef enum api { API_CHAT, API_COMPLETIONS, API_MESSAGES, API_RESPONSES } api;

static bool parse_request(api which, const json_t *body, completion_request *c, api_error *err) {
    switch (which) {
    case API_CHAT: return parse_completion_request(body, &srv, true, c, err);
    case API_COMPLETIONS: return parse_completion_request(body, &srv, false, c, err);
    case API_MESSAGES: return anthropic_request(body, &srv, false, c, err);
    case API_RESPONSES: return responses_request(body, &srv, c, err);
    }
    return false;
}

static void completion(const http_request *r, api which) {
    api_error err;
    json_t *body = NULL;
    completion_request c = completion_request_new(&srv, which != API_COMPLETIONS);
    int32_t *ids = NULL;
    int n = 0;
    bool in_reasoning = false;
    bool ok = read_body(r, &body, &err) && parse_request(which, body, &c, &err) &&
              prompt_tokens(&srv, &c, &ids, &n, &in_reasoning, &err) && check_length(&srv, n, &c, &err);
    if (ok) {
        check_accepted(&c, ids, n);
    } else {
        if (err.status < 400 || err.status >= 600) abort();
        http_reply reply = reply_error_at(r->path, &err);
        free_reply(&reply);
    }
    free(ids);
    completion_request_free(&c);
    json_decref(body);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    if (size < 1) return 0;
    /* The body as the HTTP layer hands it over: NUL-terminated, its length without the NUL. */
    char *body = malloc(size);
    memcpy(body, data + 1, size - 1);
    body[size - 1] = '\0';
    http_request r = {.srv = &srv, .method = "POST", .path = "/", .body = body, .body_len = size - 1, .fd = -1};
    http_reply reply;
    switch (data[0] % 8) {
    case 0: r.path = "/v1/chat/completions", completion(&r, API_CHAT); break;
    case 1: r.path = "/v1/completions", completion(&r, API_COMPLETIONS); break;
    case 2: reply = openai_tokenize(&r), free_reply(&reply); break;
    case 3: reply = openai_detokenize(&r), free_reply(&reply); break;
    case 4: {
        char path[128];
        snprintf(path, sizeof path, "/v1/models/%.*s", (int)(size - 1 < 100 ? size - 1 : 100), body);
        r.method = "GET";
        r.path = path;
        reply = openai_models(&r);
        free_reply(&reply);
        break;
    }
    case 5: r.path = "/v1/messages", completion(&r, API_MESSAGES); break;
    case 6: r.path = "/v1/messages/count_tokens", reply = anthropic_count_tokens(&r), free_reply(&reply); break;
    case 7: r.path = "/v1/responses", completion(&r, API_RESPONSES); break;
    }
    free(body);
    return 0;
}
