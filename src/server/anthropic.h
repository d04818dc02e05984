/* The Anthropic Messages API (POST /v1/messages, POST /v1/messages/count_tokens), in two
 * halves like the OpenAI one:
 *   anthropic_request.c  request JSON -> a completion_request (the conversation translated into
 *                        OpenAI-shaped messages for the chat template)
 *   anthropic.c          the endpoints, and a generation (generation.h) -> a message object or
 *                        its event stream
 * Errors have Anthropic's shape: {"type": "error", "error": {"type", "message"}} (error_json). */
#ifndef Q3_SERVER_ANTHROPIC_H
#define Q3_SERVER_ANTHROPIC_H

#include "server/completion.h"
#include "server/generation.h"

/* Every field of a Messages request; counting: for count_tokens (max_tokens not required). */
bool anthropic_request(const json_t *body, const q3_server *srv, bool counting, completion_request *c, api_error *err);

#endif
