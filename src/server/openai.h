/* The OpenAI API's two halves, shared by openai.c (the endpoints and the data flow):
 *   openai_request.c  request JSON -> a completion_request and the prompt's tokens
 *   openai_reply.c    engine events -> the reply: one JSON object, or server-sent events */
#ifndef Q3_SERVER_OPENAI_H
#define Q3_SERVER_OPENAI_H

#include "server/internal.h"
#include "server/job.h"
#include "text/chat.h"

#define Q3_MAX_STOP 16

/* One /v1/chat/completions or /v1/completions request, read and checked. Pointers point into the
 * request's JSON, which outlives the struct. */
typedef struct completion_request {
    bool chat;
    bool stream, include_usage;
    int logprobs;              /* -1: none; else the alternatives to list for each token */
    long long max_tokens;      /* 0: whatever the context leaves */
    q3_sampling sampling;
    const char *stop[Q3_MAX_STOP];
    int n_stop;
    bool ignore_eos;
    /* chat */
    const json_t *messages;
    const json_t *tools;       /* NULL: none, or tool_choice "none" */
    bool enable_thinking;
    bool add_generation_prompt;
    /* completions */
    const json_t *prompt;
} completion_request;

/* ---- openai_request.c ---- */

/* The body as a JSON object; 400 naming the fault for anything else (invalid UTF-8 included). */
bool read_body(const http_request *r, json_t **out, api_error *err);
/* 404 model_not_found when the request names a model that is not the one served. */
bool check_model(const json_t *body, const q3_server *srv, api_error *err);
/* Every field of a completion request, with the server's defaults under them. */
bool parse_completion_request(const json_t *body, const q3_server *srv, bool chat, completion_request *c,
                              api_error *err);
/* Only what rendering a conversation needs (messages, tools, thinking), for /tokenize. */
bool parse_chat_fields(const json_t *body, completion_request *c, api_error *err);
/* The prompt's tokens: a conversation through the chat template and the tokenizer, a text through
 * the tokenizer, or ids as given. *in_reasoning: the prompt leaves a <think> block open, so the
 * reply starts as reasoning. *ids is the caller's to free. */
bool prompt_tokens(const q3_server *srv, const completion_request *c, int32_t **ids, int *n, bool *in_reasoning,
                   api_error *err);
/* 400 when the prompt and the completion do not fit the context or the KV cache; settles a
 * max_tokens left open to what the context leaves. */
bool check_length(const q3_server *srv, int n_prompt, completion_request *c, api_error *err);

/* ---- openai_reply.c ---- */

typedef struct answer answer;

/* The reply's state for a request about to be submitted, with its job; NULL without memory. */
answer *answer_new(const http_request *r, const completion_request *c, bool in_reasoning);
/* The engine request that reports into the answer's job. */
q3_request answer_engine_request(answer *a, const completion_request *c, const int32_t *prompt, int n_prompt);
/* Records the engine's id for the submitted request, or, when submit failed, gives up the
 * engine's share of the job. */
void answer_submitted(answer *a, bool ok, uint64_t id);
/* Waits for the whole reply and makes it one JSON response. Frees a. */
http_reply answer_whole(answer *a);
/* The reply as server-sent events; the stream owns a from here on. */
http_reply answer_stream(answer *a);
void answer_free(answer *a);

#endif
