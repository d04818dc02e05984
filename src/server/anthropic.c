/* The Anthropic Messages endpoints and their replies (see anthropic.h).
 *
 * A whole reply is one message object: content blocks in the order the model wrote them
 * (thinking, text, then tool_use blocks, read in the chat template's tool-call format), stop_reason
 * end_turn / max_tokens / stop_sequence / tool_use, usage in input and output tokens.
 *
 * A stream is Anthropic's event sequence:
 *   message_start, ping,
 *   for each block: content_block_start, content_block_delta* (thinking_delta, text_delta,
 *                   input_json_delta), content_block_stop,
 *   message_delta (stop_reason, stop_sequence, usage), message_stop.
 * Thinking and text stream as the tokens arrive (a block closes when the other kind begins); a
 * tool_use block comes as soon as its call's text has closed (a call still open may turn out not
 * to be one), with its input in one input_json_delta. A failure after the stream began is an
 * error event. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "server/anthropic.h"

#define KEEPALIVE_S 10.0 /* a ping event after this long without output */

typedef enum block_kind { BLOCK_NONE, BLOCK_THINKING, BLOCK_TEXT, BLOCK_TOOL } block_kind;

typedef struct anthropic_reply {
    gen *g;
    char id[48];
    char *stop[Q3_MAX_STOP];   /* copies: the request is gone while a stream runs */
    int n_stop;
    int input_tokens;
    /* a stream's state */
    q3_buf *out;
    bool started;
    block_kind open;           /* the block being streamed */
    int index;                 /* its index; the next one's when none is open */
} anthropic_reply;

/* ---- the shapes ---- */

static const char *stop_reason(const anthropic_reply *a, size_t n_calls, const char **sequence) {
    const gen_choice *ch = &a->g->choice[0];
    *sequence = NULL;
    switch (gen_choice_finish(a->g, 0)) {
    case GEN_LENGTH: return "max_tokens";
    case GEN_STOP:
        if (n_calls) return "tool_use";
        if (ch->end.stop_index >= 0 && ch->end.stop_index < a->n_stop) {
            *sequence = a->stop[ch->end.stop_index];
            return "stop_sequence";
        }
        return "end_turn";
    default: return "end_turn";
    }
}

/* The call's id with Anthropic's prefix in place of the parser's "call_". */
static json_t *tool_use_block(const gen_call *call, bool empty_input) {
    char id[128];
    snprintf(id, sizeof id, "toolu_%s", strncmp(call->id, "call_", 5) ? call->id : call->id + 5);
    json_t *input = empty_input ? json_object()
                                : json_loadb(call->arguments.data ? call->arguments.data : "", call->arguments.len,
                                             JSON_DECODE_ANY, NULL);
    if (!json_is_object(input)) {
        json_decref(input);
        input = json_object();
    }
    return json_pack("{s:s, s:s, s:o, s:o}", "type", "tool_use", "id", id, "name", json_text(call->name, strlen(call->name)),
                     "input", input);
}

static json_t *usage_json(const anthropic_reply *a) {
    return json_pack("{s:i, s:i}", "input_tokens", a->input_tokens, "output_tokens", a->g->choice[0].end.completion_tokens);
}

/* ---- whole ---- */

static json_t *message_json(anthropic_reply *a) {
    gen_settle(a->g, 0);
    gen_choice *ch = &a->g->choice[0];
    json_t *content = json_array();
    if (ch->reasoning.len)
        json_array_append_new(content, json_pack("{s:s, s:o, s:s}", "type", "thinking", "thinking",
                                                 json_text(ch->reasoning.data, ch->reasoning.len), "signature", ""));
    if (ch->content.len || (!ch->reasoning.len && !ch->n_calls))
        json_array_append_new(content, json_pack("{s:s, s:o}", "type", "text", "text",
                                                 json_text(ch->content.data ? ch->content.data : "", ch->content.len)));
    for (size_t i = 0; i < ch->n_calls; i++) json_array_append_new(content, tool_use_block(&ch->calls[i], false));
    const char *sequence, *reason = stop_reason(a, ch->n_calls, &sequence);
    return json_pack("{s:s, s:s, s:s, s:s, s:o, s:s, s:o, s:o}", "id", a->id, "type", "message", "role", "assistant",
                     "model", a->g->srv->model_name, "content", content, "stop_reason", reason, "stop_sequence",
                     sequence ? json_string(sequence) : json_null(), "usage", usage_json(a));
}

static void anthropic_reply_free(anthropic_reply *a);

static http_reply reply_whole(anthropic_reply *a, const char *path) {
    while (!gen_done(a->g)) {
        if (!gen_wait(a->g, NULL)) {
            anthropic_reply_free(a);
            api_error err;
            api_fail(&err, 499, "client_closed_request", NULL, "the client closed the connection");
            return reply_error_at(path, &err);
        }
    }
    if (gen_choice_finish(a->g, 0) == GEN_ERROR) {
        api_error err;
        api_fail(&err, 500, NULL, NULL, "%s", a->g->choice[0].end.error);
        anthropic_reply_free(a);
        return reply_error_at(path, &err);
    }
    json_t *message = message_json(a);
    anthropic_reply_free(a);
    return reply_json(200, message);
}

/* ---- streamed ---- */

static void event(anthropic_reply *a, const char *name, json_t *data) {
    q3_buf_printf(a->out, "event: %s\ndata: ", name);
    if (data) buf_put_json(a->out, data);
    else a->out->failed = true;
    q3_buf_puts(a->out, "\n\n");
    json_decref(data);
}

static void close_block(anthropic_reply *a) {
    if (a->open == BLOCK_NONE) return;
    if (a->open == BLOCK_THINKING) /* the signature Anthropic's clients expect; ours is empty */
        event(a, "content_block_delta", json_pack("{s:s, s:i, s:{s:s, s:s}}", "type", "content_block_delta", "index",
                                                  a->index, "delta", "type", "signature_delta", "signature", ""));
    event(a, "content_block_stop", json_pack("{s:s, s:i}", "type", "content_block_stop", "index", a->index));
    a->open = BLOCK_NONE;
    a->index++;
}

static void open_block(anthropic_reply *a, block_kind kind, json_t *block) {
    close_block(a);
    event(a, "content_block_start", json_pack("{s:s, s:i, s:o}", "type", "content_block_start", "index", a->index,
                                              "content_block", block));
    a->open = kind;
}

/* The text gathered since the last event, as deltas of the right blocks. */
static void stream_deltas(anthropic_reply *a) {
    gen_choice *ch = &a->g->choice[0];
    if (ch->reasoning.len) {
        if (a->open != BLOCK_THINKING) open_block(a, BLOCK_THINKING, json_pack("{s:s, s:s}", "type", "thinking", "thinking", ""));
        event(a, "content_block_delta", json_pack("{s:s, s:i, s:{s:s, s:o}}", "type", "content_block_delta", "index", a->index,
                                                  "delta", "type", "thinking_delta", "thinking",
                                                  json_text(ch->reasoning.data, ch->reasoning.len)));
        ch->reasoning.len = 0;
    }
    if (ch->content.len) {
        if (a->open != BLOCK_TEXT) open_block(a, BLOCK_TEXT, json_pack("{s:s, s:s}", "type", "text", "text", ""));
        event(a, "content_block_delta", json_pack("{s:s, s:i, s:{s:s, s:o}}", "type", "content_block_delta", "index", a->index,
                                                  "delta", "type", "text_delta", "text",
                                                  json_text(ch->content.data, ch->content.len)));
        ch->content.len = 0;
    }
}

/* The calls that closed since the last event, each a tool_use block of its own. */
static void stream_calls(anthropic_reply *a) {
    gen_call *call;
    while ((call = gen_next_call(a->g, 0))) {
        open_block(a, BLOCK_TOOL, tool_use_block(call, true));
        event(a, "content_block_delta", json_pack("{s:s, s:i, s:{s:s, s:o}}", "type", "content_block_delta", "index", a->index,
                                                  "delta", "type", "input_json_delta", "partial_json",
                                                  json_text(call->arguments.data ? call->arguments.data : "{}",
                                                            call->arguments.data ? call->arguments.len : 2)));
        close_block(a);
    }
}

static void on_token(void *ctx, int choice, const job_event *ev) {
    (void)choice, (void)ev;
    anthropic_reply *a = ctx;
    if (!a->out) return;
    stream_deltas(a);
    stream_calls(a);
}

static void stream_end(anthropic_reply *a) {
    if (gen_choice_finish(a->g, 0) == GEN_ERROR) {
        const char *error = a->g->choice[0].end.error;
        event(a, "error", json_pack("{s:s, s:{s:s, s:o}}", "type", "error", "error", "type", "api_error", "message",
                                    json_text(error, strlen(error))));
        return;
    }
    gen_settle(a->g, 0);
    stream_deltas(a);
    stream_calls(a);
    close_block(a);
    size_t n_calls = a->g->choice[0].n_calls;
    const char *sequence, *reason = stop_reason(a, n_calls, &sequence);
    event(a, "message_delta", json_pack("{s:s, s:{s:s, s:o}, s:{s:i}}", "type", "message_delta", "delta", "stop_reason",
                                        reason, "stop_sequence", sequence ? json_string(sequence) : json_null(), "usage",
                                        "output_tokens", a->g->choice[0].end.completion_tokens));
    event(a, "message_stop", json_pack("{s:s}", "type", "message_stop"));
}

static stream_step stream_produce(void *ctx, q3_buf *out) {
    anthropic_reply *a = ctx;
    a->out = out;
    if (!a->started) {
        a->started = true;
        event(a, "message_start", json_pack("{s:s, s:{s:s, s:s, s:s, s:s, s:[], s:n, s:n, s:{s:i, s:i}}}", "type",
                                            "message_start", "message", "id", a->id, "type", "message", "role",
                                            "assistant", "model", a->g->srv->model_name, "content", "stop_reason",
                                            "stop_sequence", "usage", "input_tokens", a->input_tokens,
                                            "output_tokens", 0));
        event(a, "ping", json_pack("{s:s}", "type", "ping"));
        return STREAM_MORE;
    }
    double quiet_since = q3_now_s();
    while (out->len == 0 && !gen_done(a->g)) {
        if (!gen_wait(a->g, out)) return STREAM_ABORT;
        if (out->len == 0 && q3_now_s() - quiet_since > KEEPALIVE_S) event(a, "ping", json_pack("{s:s}", "type", "ping"));
    }
    if (!gen_done(a->g)) return STREAM_MORE;
    stream_end(a);
    return STREAM_END;
}

static void stream_close(void *ctx) { anthropic_reply_free(ctx); }

/* ---- life ---- */

static anthropic_reply *anthropic_reply_new(const http_request *r, const completion_request *c, bool in_reasoning,
                                            int n_prompt) {
    static atomic_uint serial;
    anthropic_reply *a = calloc(1, sizeof *a);
    if (!a || !(a->g = gen_new(r, c, in_reasoning))) {
        free(a);
        return NULL;
    }
    a->g->on_token = on_token;
    a->g->ctx = a;
    a->input_tokens = n_prompt;
    snprintf(a->id, sizeof a->id, "msg_%llx%08x", (unsigned long long)time(NULL), atomic_fetch_add(&serial, 1));
    for (int i = 0; i < c->n_stop; i++)
        if (!(a->stop[a->n_stop++] = strdup(c->stop[i]))) {
            anthropic_reply_free(a);
            return NULL;
        }
    return a;
}

static void anthropic_reply_free(anthropic_reply *a) {
    if (!a) return;
    gen_free(a->g);
    for (int i = 0; i < a->n_stop; i++) free(a->stop[i]);
    free(a);
}

/* ---- the endpoints ---- */

http_reply anthropic_messages(const http_request *r) {
    api_error err;
    json_t *body = NULL;
    completion_request c = completion_request_new(r->srv, true);
    int32_t *prompt = NULL;
    int n_prompt = 0;
    bool in_reasoning = false;
    anthropic_reply *a = NULL;
    bool ok = read_body(r, &body, &err) && anthropic_request(body, r->srv, false, &c, &err) &&
              prompt_tokens(r->srv, &c, &prompt, &n_prompt, &in_reasoning, &err) &&
              check_length(r->srv, n_prompt, &c, &err) &&
              ((a = anthropic_reply_new(r, &c, in_reasoning, n_prompt)) || api_fail(&err, 500, NULL, NULL, "out of memory")) &&
              gen_submit(a->g, &c, prompt, n_prompt, &err);
    bool stream = c.stream;
    free(prompt);
    completion_request_free(&c);
    json_decref(body);
    if (!ok) {
        anthropic_reply_free(a);
        return reply_error_at(r->path, &err);
    }
    if (!stream) return reply_whole(a, r->path);
    return (http_reply){.status = 200, .content_type = "text/event-stream; charset=utf-8",
                        .stream = {stream_produce, stream_close, a}};
}

http_reply anthropic_count_tokens(const http_request *r) {
    api_error err;
    json_t *body = NULL;
    completion_request c = completion_request_new(r->srv, true);
    int32_t *prompt = NULL;
    int n_prompt = 0;
    bool in_reasoning;
    bool ok = read_body(r, &body, &err) && anthropic_request(body, r->srv, true, &c, &err) &&
              prompt_tokens(r->srv, &c, &prompt, &n_prompt, &in_reasoning, &err);
    free(prompt);
    completion_request_free(&c);
    json_decref(body);
    if (!ok) return reply_error_at(r->path, &err);
    return reply_json(200, json_pack("{s:i}", "input_tokens", n_prompt));
}
