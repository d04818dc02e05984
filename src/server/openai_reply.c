/* Writing an OpenAI reply from engine events, whole (one JSON object) or as server-sent events.
 *
 * Both ways run the same loop on the request's HTTP thread: take the events that arrived (job.c),
 * pass each token's text through the chat splitter (reasoning / content / tool calls, text/chat.h)
 * and note its log-probabilities. A stream writes one chunk per generated token (its delta may be
 * empty while text is held back: part of a tag, a possible stop string, half a character), so a
 * client counting chunks counts tokens; a whole reply gathers them. At the end, tool calls are
 * parsed from the whole generated text when the request offered tools.
 *
 * finish_reason: "stop" (end-of-sequence token or stop string), "length" (max_tokens, the
 * context, or --timeout: a timed-out request is cancelled and answered with what it has, as if
 * max_tokens had been reached; 200 rather than 408/504, which clients such as the openai package
 * would retry), "tool_calls" (stopped after calling tools), "abort" (the server is stopping:
 * q3_server_stop gives running requests a moment to end so). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "server/openai.h"

#define WAIT_SLICE_S 0.2 /* how often a waiting thread looks at its client and the clock */
#define KEEPALIVE_S 10.0 /* an SSE comment after this long without output */
#define PROBE_S 2.0      /* how often a half-closed client is asked whether it is still there */

struct answer {
    q3_server *srv;
    http_request conn;         /* the connection (its socket), not the body */
    job *job;
    uint64_t seq;              /* the engine's id for the request */
    bool submitted, ended, cancelled, timed_out, head_sent;
    bool chat, include_usage, offers_tools;
    int logprobs;              /* -1: none */
    char id[48];
    long long created;
    double deadline;           /* monotonic seconds; 0: none */
    double probed;             /* when a half-closed client was last probed */
    q3_chat_stream split;
    sbuf reasoning, content, tool_text; /* since the last chunk (stream) or all of it (whole) */
    sbuf raw;                  /* everything generated, when tools were offered: for the tool-call parser */
    json_t *all_logprobs;      /* a whole reply's logprobs object */
    size_t text_offset;        /* the legacy logprobs' text_offset */
    job_end end;
};

/* ---- log-probabilities ---- */

/* A token as OpenAI spells it: its text when that is whole UTF-8, else vLLM's "bytes:\xNN...". */
static json_t *token_text(const q3_tokenizer *tok, int32_t id) {
    size_t len = 0;
    const char *piece = q3_tok_piece(tok, id, &len);
    if (!piece) return json_string("");
    if (utf8_invalid_at(piece, len) == len) return json_stringn(piece, len);
    sbuf b = {0};
    sbuf_puts(&b, "bytes:");
    for (size_t i = 0; i < len; i++) sbuf_printf(&b, "\\x%02x", (unsigned char)piece[i]);
    json_t *v = b.failed ? NULL : json_string(b.data);
    sbuf_free(&b);
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

static void logprobs_add(answer *a, json_t *into, const job_event *ev) {
    const q3_tokenizer *tok = a->srv->tok;
    if (a->chat) {
        json_t *entry = chat_logprob(tok, ev->token, ev->logprob);
        json_t *top = json_array();
        for (int i = 0; i < ev->n_top; i++)
            json_array_append_new(top, chat_logprob(tok, ev->top_ids[i], ev->top_logprobs[i]));
        json_object_set_new(entry, "top_logprobs", top);
        json_array_append_new(json_object_get(into, "content"), entry);
        return;
    }
    json_t *top = json_object();
    for (int i = 0; i < ev->n_top; i++) {
        json_t *key = token_text(tok, ev->top_ids[i]);
        json_object_set_new(top, json_string_value(key), json_real(finite_logprob(ev->top_logprobs[i])));
        json_decref(key);
    }
    json_array_append_new(json_object_get(into, "tokens"), token_text(tok, ev->token));
    json_array_append_new(json_object_get(into, "token_logprobs"), json_real(finite_logprob(ev->logprob)));
    json_array_append_new(json_object_get(into, "top_logprobs"), top);
    json_array_append_new(json_object_get(into, "text_offset"), json_integer((json_int_t)a->text_offset));
}

/* ---- chunks and objects ---- */

static json_t *reply_object(const answer *a, const char *object) {
    return json_pack("{s:s, s:s, s:I, s:s}", "id", a->id, "object", object, "created", (json_int_t)a->created,
                     "model", a->srv->model_name);
}

static json_t *usage_json(const answer *a) {
    return json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", a->end.prompt_tokens, "completion_tokens",
                     a->end.completion_tokens, "total_tokens", a->end.prompt_tokens + a->end.completion_tokens,
                     "prompt_tokens_details", "cached_tokens", a->end.cached_tokens);
}

static void sse_write(sbuf *out, json_t *v) {
    sbuf_puts(out, "data: ");
    if (v) sbuf_put_json(out, v);
    else out->failed = true;
    sbuf_puts(out, "\n\n");
    json_decref(v);
}

/* Moves the text gathered since the last chunk into a delta (chat) or a text (completions). */
static json_t *take_delta(answer *a) {
    if (!a->chat) {
        json_t *text = json_text(a->content.data ? a->content.data : "", a->content.len);
        a->content.len = 0;
        return text;
    }
    json_t *delta = json_object();
    if (a->reasoning.len) json_object_set_new(delta, "reasoning_content", json_text(a->reasoning.data, a->reasoning.len));
    if (a->content.len) json_object_set_new(delta, "content", json_text(a->content.data, a->content.len));
    a->reasoning.len = a->content.len = 0;
    return delta;
}

static void write_chunk(answer *a, sbuf *out, json_t *delta, json_t *logprobs, const char *finish) {
    json_t *chunk = reply_object(a, a->chat ? "chat.completion.chunk" : "text_completion");
    json_t *choice = json_pack("{s:i, s:o, s:o, s:o}", "index", 0, a->chat ? "delta" : "text", delta, "logprobs",
                               logprobs ? logprobs : json_null(), "finish_reason",
                               finish ? json_string(finish) : json_null());
    json_object_set_new(chunk, "choices", json_pack("[o]", choice));
    sse_write(out, chunk);
}

/* ---- folding events in ---- */

static void on_split(void *user, q3_chat_part part, const char *text, size_t len) {
    answer *a = user;
    sbuf *to = part == Q3_CHAT_REASONING                   ? &a->reasoning
               : part == Q3_CHAT_TOOL_CALL && a->offers_tools ? &a->tool_text
                                                           : &a->content;
    sbuf_put(to, text, len);
}

static void take_text(answer *a, const char *text, size_t len) {
    if (a->offers_tools) sbuf_put(&a->raw, text, len); /* settle() parses it only then */
    if (a->chat) q3_chat_stream_feed(&a->split, text, len);
    else sbuf_put(&a->content, text, len);
}

/* Folds events in; a stream (out set) gets a chunk per token. */
static void absorb(answer *a, const job_event *ev, sbuf *out) {
    for (; ev; ev = ev->next) {
        take_text(a, ev->text, ev->text_len);
        if (ev->token < 0) continue; /* the last text: it goes out with the end */
        json_t *chunk_logprobs = NULL; /* a stream's, for this token's chunk */
        if (a->logprobs >= 0 && out) logprobs_add(a, chunk_logprobs = logprobs_new(a->chat), ev);
        else if (a->logprobs >= 0) logprobs_add(a, a->all_logprobs, ev);
        size_t piece = 0;
        q3_tok_piece(a->srv->tok, ev->token, &piece);
        a->text_offset += piece;
        if (out) write_chunk(a, out, take_delta(a), chunk_logprobs, NULL);
    }
}

/* Whether the client is still there. One that shut only its sending side after the request
 * (`nc -N`) still reads, and one that closed looks the same until something is written to it: a
 * half-closed client is sent something harmless now and then (a stream an SSE comment, a whole
 * reply an interim 100 Continue), and a closed one answers that with a reset. */
static bool client_present(answer *a, sbuf *out) {
    client_state cs = http_client_state(&a->conn);
    if (cs == CLIENT_GONE) return false;
    if (cs == CLIENT_HALF_CLOSED && q3_now_s() - a->probed > PROBE_S) {
        a->probed = q3_now_s();
        if (out) sbuf_puts(out, ": are you there\n\n");
        else http_probe_client(&a->conn);
    }
    return true;
}

/* Waits up to one slice for events and folds them in. False when the client has gone: the
 * sequence is then cancelled, and nobody will read the reply. */
static bool wait_events(answer *a, sbuf *out) {
    job_event *events;
    a->ended = job_take(a->job, WAIT_SLICE_S, &events, &a->end);
    absorb(a, events, out);
    job_events_free(events);
    if (a->ended) return true;
    if (!client_present(a, out)) {
        q3_engine_cancel(a->srv->engine, a->seq);
        return false;
    }
    /* Out of time, or the server stops: the sequence is cancelled, and the reply still ends
     * properly ("length" or "abort") once the engine confirms. */
    bool stopping = atomic_load(&a->srv->stopping), late = a->deadline > 0 && q3_now_s() > a->deadline;
    if ((stopping || late) && !a->cancelled) {
        a->cancelled = true;
        a->timed_out = !stopping;
        q3_engine_cancel(a->srv->engine, a->seq);
    }
    return true;
}

/* ---- the end ---- */

static const char *finish_reason(const answer *a, size_t n_calls) {
    switch (a->end.finish) {
    case Q3_FINISH_STOP: return n_calls ? "tool_calls" : "stop";
    case Q3_FINISH_CANCELLED: return a->timed_out ? "length" : "abort";
    default: return "length";
    }
}

/* Tool calls in OpenAI's shape; a stream's deltas also carry their index. */
static json_t *tool_calls_json(const answer *a, const q3_chat_reply *parsed, bool with_index) {
    json_t *calls = json_array();
    for (size_t i = 0; i < parsed->n_tool_calls; i++) {
        char id[64];
        snprintf(id, sizeof id, "call_%s_%zu", a->id + strlen("chatcmpl-"), i);
        json_t *call = json_pack("{s:s, s:s, s:{s:o, s:o}}", "id", id, "type", "function", "function", "name",
                                 json_text(parsed->tool_calls[i].name, strlen(parsed->tool_calls[i].name)),
                                 "arguments",
                                 json_text(parsed->tool_calls[i].arguments, strlen(parsed->tool_calls[i].arguments)));
        if (with_index) json_object_set_new(call, "index", json_integer((json_int_t)i));
        json_array_append_new(calls, call);
    }
    return calls;
}

/* Ends the splitter and settles the tool calls: parsed from the whole text when tools were
 * offered; a tool-call block that does not parse is content after all. */
static void settle(answer *a, q3_chat_reply *parsed) {
    *parsed = (q3_chat_reply){0};
    if (!a->chat) return;
    q3_chat_stream_finish(&a->split);
    if (!a->tool_text.len) return;
    if (q3_chat_parse_reply(a->raw.data, a->raw.len, parsed, NULL) || parsed->n_tool_calls == 0) {
        q3_chat_reply_free(parsed);
        *parsed = (q3_chat_reply){0};
        sbuf_put(&a->content, a->tool_text.data, a->tool_text.len);
    }
}

static void write_stream_end(answer *a, sbuf *out) {
    if (a->end.finish == Q3_FINISH_ERROR) { /* the status line went out long ago: the error is an event */
        sse_write(out, json_pack("{s:{s:o, s:s, s:n, s:n}}", "error", "message",
                                 json_text(a->end.error, strlen(a->end.error)), "type", "server_error", "param",
                                 "code"));
    } else {
        q3_chat_reply parsed;
        settle(a, &parsed);
        json_t *delta = take_delta(a);
        if (parsed.n_tool_calls) json_object_set_new(delta, "tool_calls", tool_calls_json(a, &parsed, true));
        write_chunk(a, out, delta, NULL, finish_reason(a, parsed.n_tool_calls));
        q3_chat_reply_free(&parsed);
        if (a->include_usage) {
            json_t *last = reply_object(a, a->chat ? "chat.completion.chunk" : "text_completion");
            json_object_set_new(last, "choices", json_array());
            json_object_set_new(last, "usage", usage_json(a));
            sse_write(out, last);
        }
    }
    sbuf_puts(out, "data: [DONE]\n\n");
}

static json_t *whole_choice(answer *a) {
    q3_chat_reply parsed;
    settle(a, &parsed);
    json_t *choice = json_pack("{s:i, s:o, s:s}", "index", 0, "logprobs",
                               a->all_logprobs ? json_incref(a->all_logprobs) : json_null(), "finish_reason",
                               finish_reason(a, parsed.n_tool_calls));
    if (!a->chat) {
        json_object_set_new(choice, "text", json_text(a->content.data ? a->content.data : "", a->content.len));
    } else {
        json_t *message = json_pack("{s:s}", "role", "assistant");
        bool no_content = a->content.len == 0 && parsed.n_tool_calls;
        json_object_set_new(message, "content",
                            no_content ? json_null() : json_text(a->content.data ? a->content.data : "", a->content.len));
        if (a->reasoning.len)
            json_object_set_new(message, "reasoning_content", json_text(a->reasoning.data, a->reasoning.len));
        if (parsed.n_tool_calls) json_object_set_new(message, "tool_calls", tool_calls_json(a, &parsed, false));
        json_object_set_new(choice, "message", message);
    }
    q3_chat_reply_free(&parsed);
    return choice;
}

/* ---- the two ways out ---- */

http_reply answer_whole(answer *a) {
    while (!a->ended) {
        if (!wait_events(a, NULL)) {
            answer_free(a);
            api_error err; /* for the log of statuses: nobody is there to read it (nginx's 499) */
            api_fail(&err, 499, "client_closed_request", NULL, "the client closed the connection");
            return reply_error(&err);
        }
    }
    if (a->end.finish == Q3_FINISH_ERROR) {
        api_error err;
        api_fail(&err, 500, NULL, NULL, "%s", a->end.error);
        answer_free(a);
        return reply_error(&err);
    }
    json_t *reply = reply_object(a, a->chat ? "chat.completion" : "text_completion");
    json_object_set_new(reply, "choices", json_pack("[o]", whole_choice(a)));
    json_object_set_new(reply, "usage", usage_json(a));
    answer_free(a);
    return reply_json(200, reply);
}

static stream_step stream_produce(void *ctx, sbuf *out) {
    answer *a = ctx;
    if (!a->head_sent) {
        a->head_sent = true;
        if (a->chat) {
            write_chunk(a, out, json_pack("{s:s, s:s}", "role", "assistant", "content", ""), NULL, NULL);
            return STREAM_MORE;
        }
    }
    double quiet_since = q3_now_s();
    while (out->len == 0 && !a->ended) {
        if (!wait_events(a, out)) return STREAM_ABORT;
        if (out->len == 0 && q3_now_s() - quiet_since > KEEPALIVE_S) sbuf_puts(out, ": keep-alive\n\n");
    }
    if (!a->ended) return STREAM_MORE;
    write_stream_end(a, out);
    return STREAM_END;
}

static void stream_close(void *ctx) { answer_free(ctx); }

http_reply answer_stream(answer *a) {
    return (http_reply){.status = 200,
                        .content_type = "text/event-stream; charset=utf-8",
                        .stream = {stream_produce, stream_close, a}};
}

/* ---- life ---- */

answer *answer_new(const http_request *r, const completion_request *c, bool in_reasoning) {
    static atomic_uint serial;
    answer *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    if (!(a->job = job_new(&r->srv->metrics))) {
        free(a);
        return NULL;
    }
    atomic_fetch_add(&r->srv->answers, 1);
    a->srv = r->srv;
    a->conn = (http_request){.srv = r->srv, .fd = r->fd, .http11 = r->http11};
    a->chat = c->chat;
    a->include_usage = c->include_usage;
    a->offers_tools = c->tools != NULL;
    a->logprobs = c->logprobs;
    a->created = (long long)time(NULL);
    snprintf(a->id, sizeof a->id, "%s%llx%08x", c->chat ? "chatcmpl-" : "cmpl-", (unsigned long long)a->created,
             atomic_fetch_add(&serial, 1));
    if (r->srv->o.timeout_s > 0) a->deadline = q3_now_s() + r->srv->o.timeout_s;
    if (c->logprobs >= 0 && !c->stream && !(a->all_logprobs = logprobs_new(c->chat))) {
        answer_submitted(a, false, 0);
        answer_free(a);
        return NULL;
    }
    q3_chat_stream_init(&a->split, in_reasoning, on_split, a);
    return a;
}

q3_request answer_engine_request(answer *a, const completion_request *c, const int32_t *prompt, int n_prompt) {
    return (q3_request){.prompt = prompt,
                        .n_prompt = n_prompt,
                        .sampling = c->sampling,
                        .max_tokens = (int)c->max_tokens,
                        .stop = c->stop,
                        .n_stop = c->n_stop,
                        .ignore_eos = c->ignore_eos,
                        .top_logprobs = c->logprobs,
                        .on_event = job_on_event,
                        .ctx = a->job};
}

void answer_submitted(answer *a, bool ok, uint64_t id) {
    a->submitted = ok;
    a->seq = id;
    if (!ok) job_release(a->job); /* the engine's share: it will never report */
}

void answer_free(answer *a) {
    if (!a) return;
    if (a->submitted && !a->ended) q3_engine_cancel(a->srv->engine, a->seq);
    job_release(a->job);
    json_decref(a->all_logprobs);
    sbuf_free(&a->reasoning);
    sbuf_free(&a->content);
    sbuf_free(&a->tool_text);
    sbuf_free(&a->raw);
    atomic_fetch_sub(&a->srv->answers, 1);
    free(a);
}
