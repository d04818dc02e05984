/* POST /v1/responses and its reply (see responses.h).
 *
 * The response's output items, in the order the model wrote them: a reasoning item (its text as
 * reasoning_text content), a message with one output_text part, then function_call items (read
 * in the chat template's tool-call format). status is "completed", or "incomplete" with
 * incomplete_details.reason "max_output_tokens" when the length ran out.
 *
 * A stream is the Responses event sequence, every event with its sequence_number:
 *   response.created, response.in_progress,
 *   per item: response.output_item.added, then for reasoning and message a content part
 *             (response.content_part.added, response.reasoning_text.delta or
 *             response.output_text.delta, ..._done, response.content_part.done), for a function
 *             call response.function_call_arguments.delta and .done, then response.output_item.done,
 *   response.completed (or response.incomplete), whose response holds everything.
 * Reasoning and text stream as the tokens arrive; a function call comes as soon as its text has
 * closed, with its arguments in one delta. A failure after the stream began is response.failed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "server/responses.h"

#define KEEPALIVE_S 10.0

typedef enum item_kind { ITEM_NONE, ITEM_REASONING, ITEM_MESSAGE } item_kind;

typedef struct responses_reply {
    gen *g;
    char id[48];
    long long created;
    int input_tokens;
    json_t *echo;              /* the request's settings the response repeats (tools, tool_choice, ...) */
    json_t *output;            /* the items, as they are finished */
    /* a stream's state */
    q3_buf *out;
    int sequence;
    item_kind open;
    char item_id[64];
    q3_buf item_text;            /* the open item's text so far */
} responses_reply;

/* ---- items ---- */

static void item_id(const responses_reply *a, const char *prefix, int index, char *out, size_t cap) {
    snprintf(out, cap, "%s_%s_%d", prefix, a->id + strlen("resp_"), index);
}

static json_t *reasoning_item(const char *id, const char *text, size_t len) {
    return json_pack("{s:s, s:s, s:[], s:[{s:s, s:o}], s:s}", "type", "reasoning", "id", id, "summary", "content", "type",
                     "reasoning_text", "text", json_text(text, len), "status", "completed");
}

static json_t *message_item(const char *id, const char *text, size_t len, const char *status) {
    return json_pack("{s:s, s:s, s:s, s:s, s:[{s:s, s:o, s:[]}]}", "type", "message", "id", id, "status", status, "role",
                     "assistant", "content", "type", "output_text", "text", json_text(text, len), "annotations");
}

/* A function_call item: the parser's call id is its call_id, and with "fc_" for "call_" its id. */
static json_t *call_item(const gen_call *call) {
    char id[128];
    snprintf(id, sizeof id, "fc_%s", strncmp(call->id, "call_", 5) ? call->id : call->id + 5);
    return json_pack("{s:s, s:s, s:s, s:o, s:o, s:s}", "type", "function_call", "id", id, "call_id", call->id, "name",
                     json_text(call->name, strlen(call->name)), "arguments",
                     json_text(call->arguments.data ? call->arguments.data : "", call->arguments.len), "status",
                     "completed");
}

static bool incomplete(const responses_reply *a) { return gen_choice_finish(a->g, 0) == GEN_LENGTH; }

/* The response object; status "in_progress" before the end. */
static json_t *response_json(const responses_reply *a, const char *status) {
    json_t *r = json_pack("{s:s, s:s, s:I, s:s, s:s, s:O, s:n, s:n}", "id", a->id, "object", "response", "created_at",
                          (json_int_t)a->created, "status", status, "model", a->g->srv->model_name, "output", a->output,
                          "error", "incomplete_details");
    if (!r) return NULL;
    json_object_update(r, a->echo);
    if (!strcmp(status, "incomplete"))
        json_object_set_new(r, "incomplete_details", json_pack("{s:s}", "reason", "max_output_tokens"));
    if (strcmp(status, "in_progress")) {
        int out = a->g->choice[0].end.completion_tokens;
        json_object_set_new(r, "usage", json_pack("{s:i, s:{s:i}, s:i, s:{s:i}, s:i}", "input_tokens", a->input_tokens,
                                                  "input_tokens_details", "cached_tokens",
                                                  a->g->choice[0].end.cached_tokens, "output_tokens", out,
                                                  "output_tokens_details", "reasoning_tokens", 0, "total_tokens",
                                                  a->input_tokens + out));
    }
    return r;
}

static const char *final_status(const responses_reply *a) { return incomplete(a) ? "incomplete" : "completed"; }

/* ---- whole ---- */

static void responses_reply_free(responses_reply *a);

static http_reply reply_whole(responses_reply *a) {
    while (!gen_done(a->g)) {
        if (!gen_wait(a->g, NULL)) {
            responses_reply_free(a);
            api_error err;
            api_fail(&err, 499, "client_closed_request", NULL, "the client closed the connection");
            return reply_error(&err);
        }
    }
    api_error err;
    if (gen_choice_finish(a->g, 0) == GEN_ERROR) {
        api_fail(&err, 500, NULL, NULL, "%s", a->g->choice[0].end.error);
        responses_reply_free(a);
        return reply_error(&err);
    }
    gen_settle(a->g, 0);
    gen_choice *ch = &a->g->choice[0];
    char id[64];
    int n = 0;
    if (ch->reasoning.len) item_id(a, "rs", n++, id, sizeof id), json_array_append_new(a->output, reasoning_item(id, ch->reasoning.data, ch->reasoning.len));
    if (ch->content.len || !ch->n_calls) {
        item_id(a, "msg", n++, id, sizeof id);
        json_array_append_new(a->output, message_item(id, ch->content.data ? ch->content.data : "", ch->content.len,
                                                      incomplete(a) ? "incomplete" : "completed"));
    }
    for (size_t i = 0; i < ch->n_calls; i++) json_array_append_new(a->output, call_item(&ch->calls[i]));
    json_t *r = response_json(a, final_status(a));
    responses_reply_free(a);
    return reply_json(200, r);
}

/* ---- streamed ---- */

/* Writes one event; data gets its type and sequence number. */
static void event(responses_reply *a, const char *type, json_t *data) {
    if (!data) {
        a->out->failed = true;
        return;
    }
    json_object_set_new(data, "type", json_string(type));
    json_object_set_new(data, "sequence_number", json_integer(a->sequence++));
    q3_buf_printf(a->out, "event: %s\ndata: ", type);
    buf_put_json(a->out, data);
    q3_buf_puts(a->out, "\n\n");
    json_decref(data);
}

static int output_index(const responses_reply *a) { return (int)json_array_size(a->output); }

static void close_item(responses_reply *a) {
    if (a->open == ITEM_NONE) return;
    int at = output_index(a);
    bool reasoning = a->open == ITEM_REASONING;
    const char *text = a->item_text.data ? a->item_text.data : "";
    json_t *part = json_pack("{s:s, s:o}", "type", reasoning ? "reasoning_text" : "output_text", "text", json_text(text, a->item_text.len));
    if (!reasoning) json_object_set_new(part, "annotations", json_array());
    json_t *text_done = json_pack("{s:s, s:i, s:i, s:o}", "item_id", a->item_id, "output_index", at, "content_index", 0,
                                  "text", json_text(text, a->item_text.len));
    if (!reasoning && text_done) json_object_set_new(text_done, "logprobs", json_array());
    event(a, reasoning ? "response.reasoning_text.done" : "response.output_text.done", text_done);
    event(a, "response.content_part.done",
          json_pack("{s:s, s:i, s:i, s:O}", "item_id", a->item_id, "output_index", at, "content_index", 0, "part", part));
    json_decref(part);
    json_t *item = reasoning ? reasoning_item(a->item_id, text, a->item_text.len)
                             : message_item(a->item_id, text, a->item_text.len, incomplete(a) ? "incomplete" : "completed");
    event(a, "response.output_item.done", json_pack("{s:i, s:O}", "output_index", at, "item", item));
    json_array_append_new(a->output, item);
    a->open = ITEM_NONE;
    a->item_text.len = 0;
}

static void open_item(responses_reply *a, item_kind kind) {
    close_item(a);
    int at = output_index(a);
    bool reasoning = kind == ITEM_REASONING;
    item_id(a, reasoning ? "rs" : "msg", at, a->item_id, sizeof a->item_id);
    json_t *item = reasoning ? json_pack("{s:s, s:s, s:[], s:[], s:s}", "type", "reasoning", "id", a->item_id, "summary",
                                         "content", "status", "in_progress")
                             : json_pack("{s:s, s:s, s:s, s:s, s:[]}", "type", "message", "id", a->item_id, "status",
                                         "in_progress", "role", "assistant", "content");
    event(a, "response.output_item.added", json_pack("{s:i, s:o}", "output_index", at, "item", item));
    json_t *part = json_pack("{s:s, s:s}", "type", reasoning ? "reasoning_text" : "output_text", "text", "");
    if (!reasoning && part) json_object_set_new(part, "annotations", json_array());
    event(a, "response.content_part.added",
          json_pack("{s:s, s:i, s:i, s:o}", "item_id", a->item_id, "output_index", at, "content_index", 0, "part", part));
    a->open = kind;
}

static void delta(responses_reply *a, item_kind kind, q3_buf *text) {
    if (!text->len) return;
    if (a->open != kind) open_item(a, kind);
    json_t *data = json_pack("{s:s, s:i, s:i, s:o}", "item_id", a->item_id, "output_index", output_index(a),
                             "content_index", 0, "delta", json_text(text->data, text->len));
    if (kind == ITEM_MESSAGE && data) json_object_set_new(data, "logprobs", json_array());
    event(a, kind == ITEM_REASONING ? "response.reasoning_text.delta" : "response.output_text.delta", data);
    q3_buf_put(&a->item_text, text->data, text->len);
    text->len = 0;
}

static void stream_deltas(responses_reply *a) {
    delta(a, ITEM_REASONING, &a->g->choice[0].reasoning);
    delta(a, ITEM_MESSAGE, &a->g->choice[0].content);
}

/* The calls that closed since the last event, each a function_call item of its own. */
static void stream_calls(responses_reply *a) {
    gen_call *call;
    while ((call = gen_next_call(a->g, 0))) {
        close_item(a);
        int at = output_index(a);
        json_t *item = call_item(call), *start = json_deep_copy(item);
        json_t *args = json_object_get(item, "arguments");
        const char *id = json_string_value(json_object_get(item, "id"));
        if (start) json_object_set_new(start, "arguments", json_string("")), json_object_set_new(start, "status", json_string("in_progress"));
        event(a, "response.output_item.added", json_pack("{s:i, s:o}", "output_index", at, "item", start));
        event(a, "response.function_call_arguments.delta", json_pack("{s:s, s:i, s:O}", "item_id", id, "output_index", at, "delta", args));
        event(a, "response.function_call_arguments.done", json_pack("{s:s, s:i, s:O}", "item_id", id, "output_index", at, "arguments", args));
        event(a, "response.output_item.done", json_pack("{s:i, s:O}", "output_index", at, "item", item));
        json_array_append_new(a->output, item);
    }
}

static void on_token(void *ctx, int choice, const job_event *ev) {
    (void)choice, (void)ev;
    responses_reply *a = ctx;
    if (!a->out) return;
    stream_deltas(a);
    stream_calls(a);
}

static void stream_end(responses_reply *a) {
    if (gen_choice_finish(a->g, 0) == GEN_ERROR) {
        const char *error = a->g->choice[0].end.error;
        json_t *r = response_json(a, "failed");
        if (r) json_object_set_new(r, "error", json_pack("{s:s, s:o}", "code", "server_error", "message", json_text(error, strlen(error))));
        event(a, "response.failed", json_pack("{s:o}", "response", r));
        return;
    }
    gen_settle(a->g, 0);
    stream_deltas(a);
    stream_calls(a);
    if (a->open == ITEM_NONE && !json_array_size(a->output)) open_item(a, ITEM_MESSAGE); /* an empty reply is an empty message */
    close_item(a);
    const char *status = final_status(a);
    event(a, incomplete(a) ? "response.incomplete" : "response.completed", json_pack("{s:o}", "response", response_json(a, status)));
}

static stream_step stream_produce(void *ctx, q3_buf *out) {
    responses_reply *a = ctx;
    a->out = out;
    if (a->sequence == 0) {
        event(a, "response.created", json_pack("{s:o}", "response", response_json(a, "in_progress")));
        event(a, "response.in_progress", json_pack("{s:o}", "response", response_json(a, "in_progress")));
        return STREAM_MORE;
    }
    double quiet_since = q3_now_s();
    while (out->len == 0 && !gen_done(a->g)) {
        if (!gen_wait(a->g, out)) return STREAM_ABORT;
        if (out->len == 0 && q3_now_s() - quiet_since > KEEPALIVE_S) q3_buf_puts(out, ": keep-alive\n\n");
    }
    if (!gen_done(a->g)) return STREAM_MORE;
    stream_end(a);
    return STREAM_END;
}

static void stream_close(void *ctx) { responses_reply_free(ctx); }

/* ---- life ---- */

/* The request's settings the response object repeats, as the API does. */
static json_t *settings(const json_t *body, const completion_request *c) {
    const json_t *tools = json_object_get(body, "tools"), *choice = json_object_get(body, "tool_choice");
    const json_t *instructions = json_object_get(body, "instructions"), *metadata = json_object_get(body, "metadata");
    json_t *s = json_pack("{s:o, s:o, s:b, s:f, s:f, s:o, s:o, s:n}", "tools",
                          json_is_array(tools) ? json_incref((json_t *)tools) : json_array(), "tool_choice",
                          choice ? json_incref((json_t *)choice) : json_string("auto"), "parallel_tool_calls", 1,
                          "temperature", (double)c->sampling.temperature, "top_p", (double)c->sampling.top_p,
                          "instructions", instructions ? json_incref((json_t *)instructions) : json_null(), "metadata",
                          json_is_object(metadata) ? json_incref((json_t *)metadata) : json_object(),
                          "previous_response_id");
    if (s && json_object_get(body, "max_output_tokens")) json_object_set(s, "max_output_tokens", json_object_get(body, "max_output_tokens"));
    if (s && json_object_get(body, "reasoning")) json_object_set(s, "reasoning", json_object_get(body, "reasoning"));
    if (s && json_object_get(body, "text")) json_object_set(s, "text", json_object_get(body, "text"));
    return s;
}

static responses_reply *responses_reply_new(const http_request *r, const json_t *body, const completion_request *c,
                                            bool in_reasoning, int n_prompt) {
    static atomic_uint serial;
    responses_reply *a = calloc(1, sizeof *a);
    if (!a || !(a->g = gen_new(r, c, in_reasoning))) {
        free(a);
        return NULL;
    }
    a->g->on_token = on_token;
    a->g->ctx = a;
    a->input_tokens = n_prompt;
    a->created = (long long)time(NULL);
    snprintf(a->id, sizeof a->id, "resp_%llx%08x", (unsigned long long)a->created, atomic_fetch_add(&serial, 1));
    if (!(a->output = json_array()) || !(a->echo = settings(body, c))) {
        responses_reply_free(a);
        return NULL;
    }
    return a;
}

static void responses_reply_free(responses_reply *a) {
    if (!a) return;
    gen_free(a->g);
    json_decref(a->echo);
    json_decref(a->output);
    q3_buf_free(&a->item_text);
    free(a);
}

http_reply responses_create(const http_request *r) {
    api_error err;
    json_t *body = NULL;
    completion_request c = completion_request_new(r->srv, true);
    int32_t *prompt = NULL;
    int n_prompt = 0;
    bool in_reasoning = false;
    responses_reply *a = NULL;
    bool ok = read_body(r, &body, &err) && responses_request(body, r->srv, &c, &err) &&
              prompt_tokens(r->srv, &c, &prompt, &n_prompt, &in_reasoning, &err) &&
              check_length(r->srv, n_prompt, &c, &err) &&
              ((a = responses_reply_new(r, body, &c, in_reasoning, n_prompt)) || api_fail(&err, 500, NULL, NULL, "out of memory")) &&
              gen_submit(a->g, &c, prompt, n_prompt, &err);
    bool stream = c.stream;
    free(prompt);
    completion_request_free(&c);
    json_decref(body);
    if (!ok) {
        responses_reply_free(a);
        return reply_error(&err);
    }
    if (!stream) return reply_whole(a);
    return (http_reply){.status = 200, .content_type = "text/event-stream; charset=utf-8",
                        .stream = {stream_produce, stream_close, a}};
}
