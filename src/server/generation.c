/* A completion in flight (see generation.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "server/generation.h"

#define WAIT_SLICE_S 0.2 /* how often a waiting thread looks at its client and the clock */
#define PROBE_S 2.0      /* how often a half-closed client is asked whether it is still there */

/* ---- the reply parser's events ---- */

static void call_free(gen_call *call) {
    free(call->id);
    free(call->name);
    q3_buf_free(&call->arguments);
    *call = (gen_call){0};
}

/* A call beginning at index (the parser numbers complete calls 0, 1, ...: a dropped call's index
 * is taken by the next). Without memory the call is lost, and with it the arguments that follow. */
static void call_start(gen_choice *ch, const q3_reply_event *ev) {
    while (ch->n_calls > ev->index) call_free(&ch->calls[--ch->n_calls]);
    if (ch->n_calls == ch->cap_calls) {
        size_t cap = ch->cap_calls ? 2 * ch->cap_calls : 4;
        gen_call *grown = realloc(ch->calls, cap * sizeof *grown);
        if (!grown) return;
        ch->calls = grown;
        ch->cap_calls = cap;
    }
    gen_call *call = &ch->calls[ch->n_calls++];
    *call = (gen_call){strdup(ev->id ? ev->id : ""), strdup(ev->name ? ev->name : ""), {0}, false};
}

static void on_reply(void *user, const q3_reply_event *ev) {
    gen_choice *ch = user;
    gen_call *call = ev->index < ch->n_calls ? &ch->calls[ev->index] : NULL;
    switch (ev->kind) {
    case Q3_REPLY_CONTENT: q3_buf_put(&ch->content, ev->text, ev->len); break;
    case Q3_REPLY_REASONING: q3_buf_put(&ch->reasoning, ev->text, ev->len); break;
    case Q3_REPLY_CALL_START: call_start(ch, ev); break;
    case Q3_REPLY_CALL_ARGS: if (call) q3_buf_put(&call->arguments, ev->text, ev->len); break;
    case Q3_REPLY_CALL_END: if (call) call->complete = true; break;
    case Q3_REPLY_CALL_DROP: /* its text comes again as content */
        if (call && ev->index == ch->n_calls - 1) call_free(&ch->calls[--ch->n_calls]);
        break;
    }
}

/* ---- folding events in ---- */

static void take_text(gen_choice *ch, const char *text, size_t len) {
    if (!ch->parser || q3_reply_parser_feed(ch->parser, text, len, NULL)) q3_buf_put(&ch->content, text, len);
}

static void absorb(gen *g, const job_event *ev) {
    for (; ev; ev = ev->next) {
        gen_choice *ch = &g->choice[ev->choice];
        if (ev->is_end) {
            ch->ended = true;
            ch->end = ev->end;
            g->n_ended++;
            continue;
        }
        if (ev->text_len) take_text(ch, ev->text, ev->text_len);
        if (ev->token >= 0 && g->on_token) g->on_token(g->ctx, ev->choice, ev);
    }
}

static void cancel_all(gen *g) {
    for (int i = 0; i < g->n; i++)
        if (g->submitted[i] && !g->choice[i].ended) q3_engine_cancel(g->srv->engine, g->ids[i]);
}

/* Whether the client is still there. One that shut only its sending side after the request
 * (`nc -N`) still reads, and one that closed looks the same until something is written to it: a
 * half-closed client is sent something harmless now and then (a stream an SSE comment, a whole
 * reply an interim 100 Continue), and a closed one answers that with a reset. */
static bool client_present(gen *g, q3_buf *stream) {
    client_state cs = http_client_state(&g->conn);
    if (cs == CLIENT_GONE) return false;
    if (cs == CLIENT_HALF_CLOSED && q3_now_s() - g->probed > PROBE_S) {
        g->probed = q3_now_s();
        if (stream) q3_buf_puts(stream, ": are you there\n\n");
        else http_probe_client(&g->conn);
    }
    return true;
}

bool gen_wait(gen *g, q3_buf *stream) {
    job_event *events;
    job_take(g->job, WAIT_SLICE_S, &events);
    absorb(g, events);
    job_events_free(events);
    if (gen_done(g)) return true;
    if (!client_present(g, stream)) {
        cancel_all(g);
        return false;
    }
    /* Out of time, or the server stops: the choices are cancelled, and the reply still ends
     * properly ("length" or "abort") once the engine confirms. */
    bool stopping = atomic_load(&g->srv->stopping), late = g->deadline > 0 && q3_now_s() > g->deadline;
    if ((stopping || late) && !g->cancelled) {
        g->cancelled = true;
        g->timed_out = !stopping;
        cancel_all(g);
    }
    return true;
}

/* ---- the end ---- */

void gen_settle(gen *g, int i) {
    gen_choice *ch = &g->choice[i];
    if (ch->parser) q3_reply_parser_finish(ch->parser, NULL);
    q3_reply_parser_free(ch->parser);
    ch->parser = NULL;
    while (ch->n_calls && !ch->calls[ch->n_calls - 1].complete) call_free(&ch->calls[--ch->n_calls]);
}

gen_call *gen_next_call(gen *g, int i) {
    gen_choice *ch = &g->choice[i];
    if (ch->calls_taken >= ch->n_calls || !ch->calls[ch->calls_taken].complete) return NULL;
    return &ch->calls[ch->calls_taken++];
}

gen_finish gen_choice_finish(const gen *g, int i) {
    switch (g->choice[i].end.finish) {
    case Q3_FINISH_STOP: return GEN_STOP;
    case Q3_FINISH_CANCELLED: return g->timed_out ? GEN_LENGTH : GEN_ABORT;
    case Q3_FINISH_ERROR: return GEN_ERROR;
    default: return GEN_LENGTH;
    }
}

/* ---- life ---- */

/* A chat choice's reply parser: the template's format, calls read only when tools were offered,
 * call ids unique to the request and the choice. */
static bool parser_new(gen *g, const completion_request *c, int i, bool in_reasoning) {
    static atomic_uint serial;
    char prefix[48];
    snprintf(prefix, sizeof prefix, "call_%llx%04x%d_", (unsigned long long)time(NULL), atomic_fetch_add(&serial, 1) & 0xFFFF, i);
    q3_reply_options o = {.format = c->tool_format, .tool_calls = g->tools != NULL, .tools = g->tools,
                          .in_reasoning = in_reasoning, .id_prefix = prefix};
    return !q3_reply_parser_new(&o, on_reply, &g->choice[i], &g->choice[i].parser, NULL);
}

gen *gen_new(const http_request *r, const completion_request *c, bool in_reasoning) {
    gen *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    if (!(g->job = job_new(&r->srv->metrics, c->n))) {
        free(g);
        return NULL;
    }
    atomic_fetch_add(&r->srv->answers, 1);
    g->srv = r->srv;
    g->conn = (http_request){.srv = r->srv, .fd = r->fd, .http11 = r->http11};
    g->n = c->n;
    g->chat = c->chat;
    g->tools = c->tools ? json_incref((json_t *)c->tools) : NULL;
    g->in_reasoning = in_reasoning;
    if (r->srv->o.timeout_s > 0) g->deadline = q3_now_s() + r->srv->o.timeout_s;
    for (int i = 0; g->chat && i < g->n; i++)
        if (!parser_new(g, c, i, in_reasoning)) {
            gen_free(g);
            return NULL;
        }
    return g;
}

static q3_request engine_request(gen *g, const completion_request *c, const int32_t *prompt, int n_prompt, int i) {
    q3_sampling s = c->sampling;
    if (s.seed != Q3_SEED_RANDOM) s.seed += (uint64_t)i;
    q3_grammar_reasoning reasoning = !c->chat ? Q3_GRAMMAR_AT_ONCE
                                     : g->in_reasoning ? Q3_GRAMMAR_THINKING
                                     : c->enable_thinking ? Q3_GRAMMAR_AFTER_THINK : Q3_GRAMMAR_AT_ONCE;
    return (q3_request){.prompt = prompt, .n_prompt = n_prompt, .sampling = s, .max_tokens = (int)c->max_tokens,
                        .stop = c->stop, .n_stop = c->n_stop, .ignore_eos = c->ignore_eos,
                        .top_logprobs = c->logprobs, .prompt_logprobs = c->echo && c->logprobs >= 0,
                        .grammar = c->grammar, .grammar_reasoning = reasoning, .bias_ids = c->bias_ids,
                        .bias = c->bias, .n_bias = c->n_bias, .on_event = job_on_event, .ctx = job_source(g->job, i)};
}

/* The job's sources no engine sequence will report to: their ownership is let go here. */
static void release_unsubmitted(gen *g) {
    for (int i = 0; i < g->n; i++)
        if (!g->submitted[i] && !g->released[i]) {
            g->released[i] = true;
            job_release_source(g->job, i);
        }
}

bool gen_submit(gen *g, const completion_request *c, const int32_t *prompt, int n_prompt, api_error *err) {
    for (int i = 0; i < g->n; i++) {
        if (atomic_load(&g->srv->stopping)) {
            release_unsubmitted(g);
            return api_fail(err, 503, "shutting_down", NULL, "the server is stopping");
        }
        q3_request q = engine_request(g, c, prompt, n_prompt, i);
        q3_error e = {0};
        q3_status st = q3_engine_submit(g->srv->engine, &q, &g->ids[i], &e);
        if (st == Q3_OK) {
            g->submitted[i] = true;
            continue;
        }
        release_unsubmitted(g); /* the engine will never report for them */
        if (st != Q3_EFULL) return api_fail(err, st == Q3_EINVAL ? 400 : 500, NULL, NULL, "%s", e.msg);
        api_fail(err, 503, "server_overloaded", NULL, "%s", e.msg);
        err->retry_after = 1;
        return false;
    }
    return true;
}

void gen_free(gen *g) {
    if (!g) return;
    cancel_all(g);
    release_unsubmitted(g);
    job_release(g->job);
    for (int i = 0; i < g->n; i++) {
        gen_choice *ch = &g->choice[i];
        q3_reply_parser_free(ch->parser);
        q3_buf_free(&ch->reasoning);
        q3_buf_free(&ch->content);
        while (ch->n_calls) call_free(&ch->calls[--ch->n_calls]);
        free(ch->calls);
    }
    json_decref(g->tools);
    atomic_fetch_sub(&g->srv->answers, 1);
    free(g);
}
