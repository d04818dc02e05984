/* Writing an OpenAI reply (chat.completion, text_completion) from a generation in flight
 * (generation.h), whole (one JSON object) or as server-sent events.
 *
 * A stream writes one chunk per generated token of each choice (its delta may be empty while
 * text is held back: part of a tag, a possible stop string, half a character), so a client
 * counting chunks counts tokens; choices are told apart by their index. A whole reply gathers
 * them. Tool calls are read as the reply streams, in the chat template's format, when the request
 * offered tools; a stream passes each call on whole (id, name, arguments in one delta) as soon as
 * its text has closed, since a call still open may turn out not to be one. With echo (completions), the prompt comes back in front of each choice's text, and with
 * logprobs its tokens too, the first one without a log-probability (nothing comes before it).
 *
 * finish_reason: "stop" (end-of-sequence token, stop string, or a complete response format),
 * "length" (max_tokens, the context, or --timeout: a timed-out request is cancelled and answered
 * with what it has, as if max_tokens had been reached; 200 rather than 408/504, which clients
 * such as the openai package would retry), "tool_calls" (stopped after calling tools), "abort"
 * (the server is stopping: q3_server_stop gives running requests a moment to end so). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "server/openai.h"

#define KEEPALIVE_S 10.0 /* an SSE comment after this long without output */

struct openai_reply {
    gen *g;
    bool chat, include_usage, echo;
    int logprobs;              /* -1: none */
    char id[48];
    long long created;
    bool head_sent;
    bool final_sent[Q3_MAX_CHOICES];
    json_t *all_logprobs[Q3_MAX_CHOICES]; /* a whole reply's logprobs objects */
    size_t text_offset[Q3_MAX_CHOICES];   /* the legacy logprobs' text_offset */
    q3_buf *out;                 /* a stream's body while it is being produced */
    char *prompt_text;         /* echo: the prompt as its tokens spell it */
    size_t prompt_len;
};

/* ---- log-probabilities ---- */

/* A token as OpenAI spells it: its text when that is whole UTF-8, else vLLM's "bytes:\xNN...". */
static json_t *token_text(const q3_tokenizer *tok, int32_t id) {
    size_t len = 0;
    const char *piece = q3_tok_piece(tok, id, &len);
    if (!piece) return json_string("");
    if (q3_utf8_invalid_at(piece, len) == len) return json_stringn(piece, len);
    q3_buf b = {0};
    q3_buf_puts(&b, "bytes:");
    for (size_t i = 0; i < len; i++) q3_buf_printf(&b, "\\x%02x", (unsigned char)piece[i]);
    json_t *v = b.failed ? NULL : json_string(b.data);
    q3_buf_free(&b);
    return v;
}

static json_t *token_bytes(const q3_tokenizer *tok, int32_t id) {
    size_t len = 0;
    const unsigned char *piece = (const unsigned char *)q3_tok_piece(tok, id, &len);
    json_t *list = json_array();
    for (size_t i = 0; piece && i < len; i++) json_array_append_new(list, json_integer(piece[i]));
    return list;
}

/* JSON has no -inf; a token the model gives no chance at all gets the smallest float instead. */
static double finite_logprob(float lp) { return isfinite(lp) ? lp : -9999.0; }

static json_t *chat_logprob(const q3_tokenizer *tok, int32_t id, float lp) {
    return json_pack("{s:o, s:f, s:o}", "token", token_text(tok, id), "logprob", finite_logprob(lp), "bytes",
                     token_bytes(tok, id));
}

/* An empty logprobs object: chat's {"content": []}, or the completions API's legacy columns. */
static json_t *logprobs_new(bool chat) {
    if (chat) return json_pack("{s:[]}", "content");
    return json_pack("{s:[], s:[], s:[], s:[]}", "tokens", "token_logprobs", "top_logprobs", "text_offset");
}

/* One row of the legacy columns; no event: the first prompt token, which has no log-probability. */
static void legacy_add(openai_reply *a, json_t *into, int choice, int32_t token, const job_event *ev) {
    const q3_tokenizer *tok = a->g->srv->tok;
    json_t *top = ev ? json_object() : json_null();
    for (int i = 0; ev && i < ev->n_top; i++) {
        json_t *key = token_text(tok, ev->top_ids[i]);
        json_object_set_new(top, json_string_value(key), json_real(finite_logprob(ev->top_logprobs[i])));
        json_decref(key);
    }
    json_array_append_new(json_object_get(into, "tokens"), token_text(tok, token));
    json_array_append_new(json_object_get(into, "token_logprobs"), ev ? json_real(finite_logprob(ev->logprob)) : json_null());
    json_array_append_new(json_object_get(into, "top_logprobs"), top);
    json_array_append_new(json_object_get(into, "text_offset"), json_integer((json_int_t)a->text_offset[choice]));
}

static void logprobs_add(openai_reply *a, json_t *into, const job_event *ev) {
    const q3_tokenizer *tok = a->g->srv->tok;
    if (!a->chat) {
        legacy_add(a, into, ev->choice, ev->token, ev);
        return;
    }
    json_t *entry = chat_logprob(tok, ev->token, ev->logprob);
    json_t *top = json_array();
    for (int i = 0; i < ev->n_top; i++) json_array_append_new(top, chat_logprob(tok, ev->top_ids[i], ev->top_logprobs[i]));
    json_object_set_new(entry, "top_logprobs", top);
    json_array_append_new(json_object_get(into, "content"), entry);
}

/* ---- chunks and objects ---- */

static json_t *reply_object(const openai_reply *a, const char *object) {
    return json_pack("{s:s, s:s, s:I, s:s}", "id", a->id, "object", object, "created", (json_int_t)a->created,
                     "model", a->g->srv->model_name);
}

/* Usage over every choice: the prompt once, the completions added up. */
static json_t *usage_json(const openai_reply *a) {
    const gen *g = a->g;
    int completion = 0;
    for (int i = 0; i < g->n; i++) completion += g->choice[i].end.completion_tokens;
    const job_end *e = &g->choice[0].end;
    return json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", e->prompt_tokens, "completion_tokens", completion,
                     "total_tokens", e->prompt_tokens + completion, "prompt_tokens_details", "cached_tokens",
                     e->cached_tokens);
}

static void sse_write(q3_buf *out, json_t *v) {
    q3_buf_puts(out, "data: ");
    if (v) buf_put_json(out, v);
    else out->failed = true;
    q3_buf_puts(out, "\n\n");
    json_decref(v);
}

/* Moves the text gathered since the last chunk into a delta (chat) or a text (completions). */
static json_t *take_delta(openai_reply *a, int i) {
    gen_choice *ch = &a->g->choice[i];
    if (!a->chat) {
        json_t *text = json_text(ch->content.data ? ch->content.data : "", ch->content.len);
        ch->content.len = 0;
        return text;
    }
    json_t *delta = json_object();
    if (ch->reasoning.len) json_object_set_new(delta, "reasoning_content", json_text(ch->reasoning.data, ch->reasoning.len));
    if (ch->content.len) json_object_set_new(delta, "content", json_text(ch->content.data, ch->content.len));
    ch->reasoning.len = ch->content.len = 0;
    return delta;
}

static void write_chunk(openai_reply *a, int i, json_t *delta, json_t *logprobs, const char *finish) {
    json_t *chunk = reply_object(a, a->chat ? "chat.completion.chunk" : "text_completion");
    json_t *choice = json_pack("{s:i, s:o, s:o, s:o}", "index", i, a->chat ? "delta" : "text", delta, "logprobs",
                               logprobs ? logprobs : json_null(), "finish_reason",
                               finish ? json_string(finish) : json_null());
    json_object_set_new(chunk, "choices", json_pack("[o]", choice));
    sse_write(a->out, chunk);
}

/* A call as OpenAI writes it; a stream's delta also carries its index. */
static json_t *tool_call_json(const gen_call *call, size_t index, bool with_index) {
    json_t *j = json_pack("{s:o, s:s, s:{s:o, s:o}}", "id", json_text(call->id, strlen(call->id)), "type", "function",
                          "function", "name", json_text(call->name, strlen(call->name)), "arguments",
                          json_text(call->arguments.data ? call->arguments.data : "", call->arguments.len));
    if (j && with_index) json_object_set_new(j, "index", json_integer((json_int_t)index));
    return j;
}

/* Streaming: the calls of choice i that closed since the last chunk, each in a chunk of its own. */
static void write_calls(openai_reply *a, int i) {
    gen_call *call;
    while ((call = gen_next_call(a->g, i))) {
        size_t index = a->g->choice[i].calls_taken - 1;
        write_chunk(a, i, json_pack("{s:[o]}", "tool_calls", tool_call_json(call, index, true)), NULL, NULL);
    }
}

/* Every token: its logprobs (a chunk's or the whole reply's) and, streaming, its chunk. */
static void on_token(void *ctx, int i, const job_event *ev) {
    openai_reply *a = ctx;
    json_t *chunk_logprobs = NULL;
    if (a->logprobs >= 0 && a->out) logprobs_add(a, chunk_logprobs = logprobs_new(a->chat), ev);
    else if (a->logprobs >= 0) logprobs_add(a, a->all_logprobs[i], ev);
    size_t piece = 0;
    q3_tok_piece(a->g->srv->tok, ev->token, &piece);
    a->text_offset[i] += piece;
    if (!a->out) return;
    write_chunk(a, i, take_delta(a, i), chunk_logprobs, NULL);
    write_calls(a, i);
}

/* ---- the end ---- */

static const char *finish_reason(const openai_reply *a, int i, size_t n_calls) {
    switch (gen_choice_finish(a->g, i)) {
    case GEN_STOP: return n_calls ? "tool_calls" : "stop";
    case GEN_ABORT: return "abort";
    default: return "length";
    }
}

/* The last chunk of choice i: what was held back, and the finish reason. */
static void write_choice_end(openai_reply *a, int i) {
    gen_settle(a->g, i);
    write_calls(a, i);
    write_chunk(a, i, take_delta(a, i), NULL, finish_reason(a, i, a->g->choice[i].n_calls));
    a->final_sent[i] = true;
}

/* The first error among the choices, or NULL. */
static const char *failure(const openai_reply *a) {
    for (int i = 0; i < a->g->n; i++)
        if (a->g->choice[i].ended && gen_choice_finish(a->g, i) == GEN_ERROR) return a->g->choice[i].end.error;
    return NULL;
}

static void write_stream_end(openai_reply *a) {
    const char *error = failure(a);
    if (error) { /* the status line went out long ago: the error is an event */
        sse_write(a->out, json_pack("{s:{s:o, s:s, s:n, s:n}}", "error", "message", json_text(error, strlen(error)),
                                    "type", "server_error", "param", "code"));
    } else if (a->include_usage) {
        json_t *last = reply_object(a, a->chat ? "chat.completion.chunk" : "text_completion");
        json_object_set_new(last, "choices", json_array());
        json_object_set_new(last, "usage", usage_json(a));
        sse_write(a->out, last);
    }
    q3_buf_puts(a->out, "data: [DONE]\n\n");
}

static json_t *whole_choice(openai_reply *a, int i) {
    gen_settle(a->g, i);
    gen_choice *ch = &a->g->choice[i];
    json_t *choice = json_pack("{s:i, s:o, s:s}", "index", i, "logprobs",
                               a->all_logprobs[i] ? json_incref(a->all_logprobs[i]) : json_null(), "finish_reason",
                               finish_reason(a, i, ch->n_calls));
    const char *content = ch->content.data ? ch->content.data : "";
    if (!a->chat) {
        q3_buf text = {0};
        if (a->echo) q3_buf_put(&text, a->prompt_text, a->prompt_len);
        q3_buf_put(&text, content, ch->content.len);
        json_object_set_new(choice, "text", json_text(text.data ? text.data : "", text.len));
        q3_buf_free(&text);
        return choice;
    }
    json_t *message = json_pack("{s:s}", "role", "assistant");
    bool no_content = ch->content.len == 0 && ch->n_calls;
    json_object_set_new(message, "content", no_content ? json_null() : json_text(content, ch->content.len));
    if (ch->reasoning.len) json_object_set_new(message, "reasoning_content", json_text(ch->reasoning.data, ch->reasoning.len));
    if (ch->n_calls) {
        json_t *calls = json_array();
        for (size_t k = 0; k < ch->n_calls; k++) json_array_append_new(calls, tool_call_json(&ch->calls[k], k, false));
        json_object_set_new(message, "tool_calls", calls);
    }
    json_object_set_new(choice, "message", message);
    return choice;
}

/* ---- the two ways out ---- */

http_reply openai_reply_whole(openai_reply *a) {
    while (!gen_done(a->g)) {
        if (!gen_wait(a->g, NULL)) {
            openai_reply_free(a);
            api_error err; /* for the log of statuses: nobody is there to read it (nginx's 499) */
            api_fail(&err, 499, "client_closed_request", NULL, "the client closed the connection");
            return reply_error(&err);
        }
    }
    const char *error = failure(a);
    if (error) {
        api_error err;
        api_fail(&err, 500, NULL, NULL, "%s", error);
        openai_reply_free(a);
        return reply_error(&err);
    }
    json_t *reply = reply_object(a, a->chat ? "chat.completion" : "text_completion"), *choices = json_array();
    for (int i = 0; i < a->g->n; i++) json_array_append_new(choices, whole_choice(a, i));
    json_object_set_new(reply, "choices", choices);
    json_object_set_new(reply, "usage", usage_json(a));
    openai_reply_free(a);
    return reply_json(200, reply);
}

static stream_step stream_produce(void *ctx, q3_buf *out) {
    openai_reply *a = ctx;
    a->out = out;
    if (!a->head_sent) {
        a->head_sent = true;
        for (int i = 0; a->chat && i < a->g->n; i++)
            write_chunk(a, i, json_pack("{s:s, s:s}", "role", "assistant", "content", ""), NULL, NULL);
        if (a->chat) return STREAM_MORE;
    }
    double quiet_since = q3_now_s();
    while (out->len == 0 && !gen_done(a->g)) {
        if (!gen_wait(a->g, out)) return STREAM_ABORT;
        for (int i = 0; i < a->g->n; i++)
            if (a->g->choice[i].ended && !a->final_sent[i] && !failure(a)) write_choice_end(a, i);
        if (out->len == 0 && q3_now_s() - quiet_since > KEEPALIVE_S) q3_buf_puts(out, ": keep-alive\n\n");
    }
    if (!gen_done(a->g)) return STREAM_MORE;
    for (int i = 0; i < a->g->n; i++)
        if (!a->final_sent[i] && !failure(a)) write_choice_end(a, i);
    write_stream_end(a);
    return STREAM_END;
}

static void stream_close(void *ctx) { openai_reply_free(ctx); }

http_reply openai_reply_stream(openai_reply *a) {
    return (http_reply){.status = 200,
                        .content_type = "text/event-stream; charset=utf-8",
                        .stream = {stream_produce, stream_close, a}};
}

/* ---- life ---- */

/* Echo: the prompt's text as its tokens spell it, and its first token's row (the engine scores
 * the rest). */
static bool echo_prompt(openai_reply *a, const int32_t *prompt, int n_prompt) {
    q3_error e;
    if (q3_tok_decode(a->g->srv->tok, prompt, n_prompt, &a->prompt_text, &a->prompt_len, &e)) return false;
    for (int i = 0; a->logprobs >= 0 && i < a->g->n; i++) {
        legacy_add(a, a->all_logprobs[i], i, prompt[0], NULL);
        size_t piece = 0;
        q3_tok_piece(a->g->srv->tok, prompt[0], &piece);
        a->text_offset[i] = piece;
    }
    return true;
}

openai_reply *openai_reply_new(const http_request *r, const completion_request *c, bool in_reasoning,
                               const int32_t *prompt, int n_prompt) {
    static atomic_uint serial;
    openai_reply *a = calloc(1, sizeof *a);
    if (!a || !(a->g = gen_new(r, c, in_reasoning))) {
        free(a);
        return NULL;
    }
    a->g->on_token = on_token;
    a->g->ctx = a;
    a->chat = c->chat;
    a->include_usage = c->include_usage;
    a->echo = c->echo;
    a->logprobs = c->logprobs;
    a->created = (long long)time(NULL);
    snprintf(a->id, sizeof a->id, "%s%llx%08x", c->chat ? "chatcmpl-" : "cmpl-", (unsigned long long)a->created,
             atomic_fetch_add(&serial, 1));
    bool ok = true;
    for (int i = 0; ok && c->logprobs >= 0 && !c->stream && i < c->n; i++) ok = (a->all_logprobs[i] = logprobs_new(c->chat)) != NULL;
    if (ok && c->echo) ok = echo_prompt(a, prompt, n_prompt);
    if (!ok) {
        openai_reply_free(a);
        return NULL;
    }
    return a;
}

gen *openai_reply_gen(openai_reply *a) { return a->g; }

void openai_reply_free(openai_reply *a) {
    if (!a) return;
    gen_free(a->g);
    for (int i = 0; i < Q3_MAX_CHOICES; i++) json_decref(a->all_logprobs[i]);
    free(a->prompt_text);
    free(a);
}
