/* A completion request as every API of the server asks for one (OpenAI chat and completions,
 * Anthropic messages, OpenAI responses), and the steps they share on the way to the engine:
 *
 *   API request JSON -> completion_request     (openai_request.c, anthropic.c, responses.c; the
 *                                               last two translate into OpenAI-shaped messages)
 *   response format / tool choice -> grammar   (completion.c, with text/json_schema.h)
 *   messages -> chat template -> tokens        (completion.c, with text/chat.h)
 *   tokens -> engine requests, one per choice  (generation.c)
 *
 * The struct's pointers point into the request's JSON, which outlives it, or into `owned`. */
#ifndef Q3_SERVER_COMPLETION_H
#define Q3_SERVER_COMPLETION_H

#include "server/internal.h"
#include "text/json_schema.h"

#define Q3_MAX_STOP 16
#define Q3_MAX_CHOICES 16

typedef struct completion_request {
    bool chat;
    bool stream, include_usage;
    int n;                     /* choices (OpenAI's n) */
    int logprobs;              /* -1: none; else the alternatives to list for each token */
    bool echo;                 /* completions: the prompt comes back in front, scored when logprobs */
    long long max_tokens;      /* -1: whatever the context leaves; 0 only with echo */
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
    /* owned: freed by completion_request_free */
    json_t *owned;             /* translated or rewritten messages and tools */
    q3_grammar *grammar;       /* response format or forced tool calls; NULL: free text */
    bool calls_forced;         /* the grammar is tool calls (tool_choice required or named) */
    q3_tool_format tool_format; /* how the chat template writes tool calls */
    int32_t *bias_ids;         /* logit_bias */
    float *bias;
    int n_bias;
} completion_request;

/* ---- fields: a wrong type or value is a 400 naming the field (in param) ---- */

/* A member that is absent or null is "not given": NULL. */
const json_t *field(const json_t *o, const char *key);
/* Each leaves *out as it is when the field is not given. */
bool get_float(const json_t *o, const char *key, double lo, double hi, float *out, api_error *err);
bool get_int(const json_t *o, const char *key, long long lo, long long hi, long long *out, api_error *err);
bool get_bool(const json_t *o, const char *key, bool *out, api_error *err);
/* 400 unsupported_parameter (why) when key is given and unsupported is true. */
bool refuse(const json_t *o, const char *key, bool unsupported, const char *why, api_error *err);
/* Stop strings: a string or a list of up to Q3_MAX_STOP, from body[key]. */
bool parse_stop(const json_t *body, const char *key, completion_request *c, api_error *err);
/* temperature, top_p, top_k, min_p, the penalties and seed, those given, over s. */
bool parse_sampling(const json_t *body, q3_sampling *s, api_error *err);

/* The body as a JSON object; 400 naming the fault for anything else (invalid UTF-8 included). */
bool read_body(const http_request *r, json_t **out, api_error *err);
/* 404 model_not_found when the request names a model that is not the one served. */
bool check_model(const json_t *body, const q3_server *srv, api_error *err);

/* The defaults under every field: one choice, no logprobs, the server's sampling. */
completion_request completion_request_new(const q3_server *srv, bool chat);
void completion_request_free(completion_request *c);

/* response_format {"type": "text" | "json_object" | "json_schema", "json_schema": {"schema"}}:
 * the grammar for it. param names the field in errors (400, the keyword at fault named). */
bool set_response_format(completion_request *c, const json_t *format, const char *param, api_error *err);
/* JSON text valid under schema (NULL: any JSON object). */
bool set_json_grammar(completion_request *c, const json_t *schema, const char *param, api_error *err);

typedef enum tool_mode { TOOLS_AUTO, TOOLS_NONE, TOOLS_REQUIRED, TOOLS_NAMED } tool_mode;
/* What the reply may do with the tools offered (c->tools): none leaves them out of the prompt;
 * required and named constrain the reply to tool calls (named: of that tool, which must be
 * among them). param names the field in errors. */
bool set_tool_mode(completion_request *c, tool_mode mode, const char *name, const char *param, api_error *err);

/* Messages whose role is "developer" (OpenAI's newer name for system) as "system". */
bool rewrite_developer_role(completion_request *c, api_error *err);

/* The prompt's tokens: a conversation through the chat template and the tokenizer, a text through
 * the tokenizer, or ids as given. *in_reasoning: the prompt leaves a <think> block open, so the
 * reply starts as reasoning. *ids is the caller's to free. */
bool prompt_tokens(const q3_server *srv, const completion_request *c, int32_t **ids, int *n, bool *in_reasoning,
                   api_error *err);
/* 400 when the prompt and the completion do not fit the context or the KV cache; settles a
 * max_tokens left open to what they leave. */
bool check_length(const q3_server *srv, int n_prompt, completion_request *c, api_error *err);

#endif
