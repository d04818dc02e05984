/* A completion in flight (see generation.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "server/generation.h"

#define WAIT_SLICE_S 0.2 /* how often a waiting thread looks at its client and the clock */
#define PROBE_S 2.0      /* how often a half-closed client is asked whether it is still there */

/* ---- folding events in ---- */

/* Tool-call text is held apart only when tools were offered: without, it is just content. */
static void on_split(void *user, q3_chat_part part, const char *text, size_t len) {
    gen_choice *ch = user;
    sbuf *to = part == Q3_CHAT_REASONING                    ? &ch->reasoning
               : part == Q3_CHAT_TOOL_CALL && ch->offers_tools ? &ch->tool_text
                                                            : &ch->content;
    sbuf_put(to, text, len);
}

static void take_text(gen *g, gen_choice *ch, const char *text, size_t len) {
    if (g->offers_tools) sbuf_put(&ch->raw, text, len); /* gen_settle parses it */
    if (g->chat) q3_chat_stream_feed(&ch->split, text, len);
    else sbuf_put(&ch->content, text, len);
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
        if (ev->text_len) take_text(g, ch, ev->text, ev->text_len);
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
static bool client_present(gen *g, sbuf *stream) {
    client_state cs = http_client_state(&g->conn);
    if (cs == CLIENT_GONE) return false;
    if (cs == CLIENT_HALF_CLOSED && q3_now_s() - g->probed > PROBE_S) {
        g->probed = q3_now_s();
        if (stream) sbuf_puts(stream, ": are you there\n\n");
        else http_probe_client(&g->conn);
    }
    return true;
}

bool gen_wait(gen *g, sbuf *stream) {
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

void gen_settle(gen *g, int i, q3_chat_reply *parsed) {
    gen_choice *ch = &g->choice[i];
    *parsed = (q3_chat_reply){0};
    if (!g->chat) return;
    q3_chat_stream_finish(&ch->split);
    if (!ch->tool_text.len) return;
    if (q3_chat_parse_reply(ch->raw.data, ch->raw.len, parsed, NULL) || parsed->n_tool_calls == 0) {
        q3_chat_reply_free(parsed);
        *parsed = (q3_chat_reply){0};
        sbuf_put(&ch->content, ch->tool_text.data, ch->tool_text.len);
    }
    ch->tool_text.len = 0;
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
    g->offers_tools = c->tools != NULL;
    g->in_reasoning = in_reasoning;
    if (r->srv->o.timeout_s > 0) g->deadline = q3_now_s() + r->srv->o.timeout_s;
    for (int i = 0; i < g->n; i++) {
        g->choice[i].offers_tools = g->offers_tools;
        q3_chat_stream_init(&g->choice[i].split, in_reasoning, on_split, &g->choice[i]);
    }
    return g;
}

static q3_request engine_request(gen *g, const completion_request *c, const int32_t *prompt, int n_prompt, int i,
                                 bool in_reasoning) {
    q3_sampling s = c->sampling;
    if (s.seed != Q3_SEED_RANDOM) s.seed += (uint64_t)i;
    q3_grammar_reasoning reasoning = !c->chat ? Q3_GRAMMAR_AT_ONCE
                                     : in_reasoning ? Q3_GRAMMAR_THINKING
                                     : c->enable_thinking ? Q3_GRAMMAR_AFTER_THINK : Q3_GRAMMAR_AT_ONCE;
    return (q3_request){.prompt = prompt, .n_prompt = n_prompt, .sampling = s, .max_tokens = (int)c->max_tokens,
                        .stop = c->stop, .n_stop = c->n_stop, .ignore_eos = c->ignore_eos,
                        .top_logprobs = c->logprobs, .prompt_logprobs = c->echo && c->logprobs >= 0,
                        .grammar = c->grammar, .grammar_reasoning = reasoning, .bias_ids = c->bias_ids,
                        .bias = c->bias, .n_bias = c->n_bias, .on_event = job_on_event, .ctx = job_source(g->job, i)};
}

bool gen_submit(gen *g, const completion_request *c, const int32_t *prompt, int n_prompt, api_error *err) {
    for (int i = 0; i < g->n; i++) {
        if (atomic_load(&g->srv->stopping)) {
            for (int k = i; k < g->n; k++) job_release_source(g->job, k);
            return api_fail(err, 503, "shutting_down", NULL, "the server is stopping");
        }
        q3_request q = engine_request(g, c, prompt, n_prompt, i, g->in_reasoning);
        q3_error e = {0};
        q3_status st = q3_engine_submit(g->srv->engine, &q, &g->ids[i], &e);
        if (st == Q3_OK) {
            g->submitted[i] = true;
            continue;
        }
        for (int k = i; k < g->n; k++) job_release_source(g->job, k); /* the engine will never report */
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
    job_release(g->job);
    for (int i = 0; i < g->n; i++) {
        gen_choice *ch = &g->choice[i];
        sbuf_free(&ch->reasoning);
        sbuf_free(&ch->content);
        sbuf_free(&ch->tool_text);
        sbuf_free(&ch->raw);
    }
    atomic_fetch_sub(&g->srv->answers, 1);
    free(g);
}
