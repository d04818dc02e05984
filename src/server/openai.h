/* The OpenAI API's two halves, shared by openai.c (the endpoints and the data flow):
 *   openai_request.c  request JSON -> a completion_request (completion.h)
 *   openai_reply.c    a generation in flight (generation.h) -> the reply: one JSON object, or
 *                     server-sent events */
#ifndef Q3_SERVER_OPENAI_H
#define Q3_SERVER_OPENAI_H

#include "server/completion.h"
#include "server/generation.h"

/* ---- openai_request.c ---- */

/* Every field of a completion request, with the server's defaults under them. */
bool parse_completion_request(const json_t *body, const q3_server *srv, bool chat, completion_request *c,
                              api_error *err);
/* Only what rendering a conversation needs (messages, tools, thinking), for /tokenize; c must
 * come from completion_request_new. */
bool parse_chat_fields(const json_t *body, completion_request *c, api_error *err);

/* ---- openai_reply.c ---- */

typedef struct openai_reply openai_reply;

/* The reply's state for a request about to be submitted, with its generation; NULL without
 * memory. The prompt is needed for echo. */
openai_reply *openai_reply_new(const http_request *r, const completion_request *c, bool in_reasoning,
                               const int32_t *prompt, int n_prompt);
gen *openai_reply_gen(openai_reply *a);
/* Waits for the whole reply and makes it one JSON response. Frees a. */
http_reply openai_reply_whole(openai_reply *a);
/* The reply as server-sent events; the stream owns a from here on. */
http_reply openai_reply_stream(openai_reply *a);
void openai_reply_free(openai_reply *a);

#endif
