/* A request in flight (see job.h): a mutex-guarded queue of copied events, filled on the engine
 * thread, emptied on the HTTP thread. The engine thread only copies and signals, so it is never
 * held up by a slow client; latencies are measured here, where events arrive. */
#include "base/clock.h"
#include "server/job.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct job {
    pthread_mutex_t lock;
    pthread_cond_t arrived;
    int owners;                    /* 2, then 1, then freed */
    job_event *head, *tail;
    bool ended;
    job_end end;
    q3_metrics *metrics;
    double t_start, t_last_token;  /* for the latency histograms */
    bool got_token;
};

job *job_new(q3_metrics *metrics) {
    job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    pthread_mutex_init(&j->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&j->arrived, &attr);
    pthread_condattr_destroy(&attr);
    j->owners = 2;
    j->metrics = metrics;
    j->t_start = q3_now_s();
    return j;
}

static void job_free(job *j) {
    job_events_free(j->head);
    pthread_mutex_destroy(&j->lock);
    pthread_cond_destroy(&j->arrived);
    free(j);
}

void job_release(job *j) {
    pthread_mutex_lock(&j->lock);
    bool last = --j->owners == 0;
    pthread_mutex_unlock(&j->lock);
    if (last) job_free(j);
}

static void observe_latency(job *j, const q3_event *ev) {
    double t = q3_now_s();
    if (ev->token >= 0) {
        if (!j->got_token) metrics_observe(j->metrics, &j->metrics->ttft, ev->ttft_s);
        else metrics_observe(j->metrics, &j->metrics->itl, t - j->t_last_token);
        j->got_token = true;
        j->t_last_token = t;
    }
    if (ev->finish != Q3_FINISH_NONE) metrics_observe(j->metrics, &j->metrics->e2e, t - j->t_start);
}

/* A token, or the text that comes with the last event; NULL when there is nothing to pass on or
 * no memory (the text is then lost, but the end still gets through). */
static job_event *copy_event(const q3_event *ev) {
    if (ev->token < 0 && ev->text_len == 0) return NULL;
    job_event *c = malloc(sizeof *c + ev->text_len + 1);
    if (!c) return NULL;
    c->next = NULL;
    c->token = ev->token;
    c->logprob = ev->logprob;
    c->n_top = ev->n_top < 0 ? 0 : ev->n_top > Q3_MAX_TOP_LOGPROBS ? Q3_MAX_TOP_LOGPROBS : ev->n_top;
    memcpy(c->top_ids, ev->top_ids, (size_t)c->n_top * sizeof *c->top_ids);
    memcpy(c->top_logprobs, ev->top_logprobs, (size_t)c->n_top * sizeof *c->top_logprobs);
    c->text_len = ev->text_len;
    if (ev->text_len) memcpy(c->text, ev->text, ev->text_len);
    c->text[ev->text_len] = 0;
    return c;
}

void job_on_event(void *ctx, const q3_event *ev) {
    job *j = ctx;
    observe_latency(j, ev);
    job_event *c = copy_event(ev);
    bool last = ev->finish != Q3_FINISH_NONE;
    pthread_mutex_lock(&j->lock);
    if (c) {
        if (j->tail) j->tail->next = c;
        else j->head = c;
        j->tail = c;
    }
    if (last) {
        j->ended = true;
        j->end = (job_end){ev->finish, ev->stop_index, ev->prompt_tokens, ev->completion_tokens,
                           ev->cached_tokens, ""};
        if (ev->error) snprintf(j->end.error, sizeof j->end.error, "%s", ev->error);
    }
    pthread_cond_signal(&j->arrived);
    pthread_mutex_unlock(&j->lock);
    if (last) job_release(j);
}

bool job_take(job *j, double wait_s, job_event **events, job_end *end) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    long long ns = until.tv_nsec + (long long)(wait_s * 1e9);
    until.tv_sec += (time_t)(ns / 1000000000);
    until.tv_nsec = (long)(ns % 1000000000);
    pthread_mutex_lock(&j->lock);
    while (!j->head && !j->ended)
        if (pthread_cond_timedwait(&j->arrived, &j->lock, &until) == ETIMEDOUT) break;
    *events = j->head;
    j->head = j->tail = NULL;
    bool ended = j->ended;
    if (ended) *end = j->end;
    pthread_mutex_unlock(&j->lock);
    return ended;
}

void job_events_free(job_event *ev) {
    while (ev) {
        job_event *next = ev->next;
        free(ev);
        ev = next;
    }
}
