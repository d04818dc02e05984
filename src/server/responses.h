/* The OpenAI Responses API, stateless (POST /v1/responses), in two halves like the others:
 *   responses_request.c  request JSON -> a completion_request (input items translated into chat
 *                        messages)
 *   responses.c          the endpoint, and a generation (generation.h) -> a response object or
 *                        its event stream */
#ifndef Q3_SERVER_RESPONSES_H
#define Q3_SERVER_RESPONSES_H

#include "server/completion.h"
#include "server/generation.h"

/* Every field of a Responses request. */
bool responses_request(const json_t *body, const q3_server *srv, completion_request *c, api_error *err);

#endif
