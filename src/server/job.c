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

typedef struct source {
    struct job *job;
    int index;
    job_event *end;           /* made with the job, so that the end always gets through */
    double t_last_token;      /* for the inter-token histogram */
    bool got_token;
} source;

struct job {
    pthread_mutex_t lock;
    pthread_cond_t arrived;
    int owners;                    /* n + 1, then fewer, then freed */
    job_event *head, *tail;
    q3_metrics *metrics;
    double t_start;                /* for the request-duration histogram */
    int n;
    source sources[];
};

static void job_free(job *j);

job *job_new(q3_metrics *metrics, int n) {
    job *j = calloc(1, sizeof *j + (size_t)n * sizeof *j->sources);
    if (!j) return NULL;
    pthread_mutex_init(&j->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&j->arrived, &attr);
    pthread_condattr_destroy(&attr);
    j->owners = n + 1;
    j->n = n;
    j->metrics = metrics;
    j->t_start = q3_now_s();
    for (int i = 0; i < n; i++) {
        j->sources[i] = (source){j, i, calloc(1, sizeof(job_event) + 1), 0, false};
        if (!j->sources[i].end) {
            j->owners = 0;
            job_free(j);
            return NULL;
        }
    }
    return j;
}

void *job_source(job *j, int i) { return &j->sources[i]; }

static void job_free(job *j) {
    job_events_free(j->head);
    for (int i = 0; i < j->n; i++) free(j->sources[i].end); /* those not handed out */
    pthread_mutex_destroy(&j->lock);
    pthread_cond_destroy(&j->arrived);
    free(j);
}

static void let_go(job *j) {
    pthread_mutex_lock(&j->lock);
    bool last = --j->owners == 0;
    pthread_mutex_unlock(&j->lock);
    if (last) job_free(j);
}

void job_release(job *j) { let_go(j); }

void job_release_source(job *j, int i) {
    (void)i;
    let_go(j);
}

static void observe_latency(source *s, const q3_event *ev) {
    q3_metrics *m = s->job->metrics;
    double t = q3_now_s();
    if (ev->token >= 0 && !ev->prompt) {
        if (!s->got_token) metrics_observe(m, &m->ttft, ev->ttft_s);
        else metrics_observe(m, &m->itl, t - s->t_last_token);
        s->got_token = true;
        s->t_last_token = t;
    }
    if (ev->finish != Q3_FINISH_NONE) metrics_observe(m, &m->e2e, t - s->job->t_start);
}

/* A token, or the text that comes with the last event; NULL when there is nothing to pass on or
 * no memory (the text is then lost, but the end still gets through). */
static job_event *copy_event(const q3_event *ev, int choice) {
    if (ev->token < 0 && ev->text_len == 0) return NULL;
    job_event *c = malloc(sizeof *c + ev->text_len + 1);
    if (!c) return NULL;
    memset(c, 0, sizeof *c);
    c->choice = choice;
    c->prompt = ev->prompt;
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

/* The end of a source, as an event of its own (the one made with the job, handed out once). */
static job_event *end_event(source *s, const q3_event *ev) {
    job_event *c = s->end;
    if (!c) return NULL;
    s->end = NULL;
    c->choice = s->index;
    c->is_end = true;
    c->token = -1;
    c->end = (job_end){ev->finish, ev->stop_index, ev->prompt_tokens, ev->completion_tokens, ev->cached_tokens, ""};
    if (ev->error) snprintf(c->end.error, sizeof c->end.error, "%s", ev->error);
    return c;
}

static void append(job *j, job_event *e) {
    if (!e) return;
    if (j->tail) j->tail->next = e;
    else j->head = e;
    j->tail = e;
}

void job_on_event(void *ctx, const q3_event *ev) {
    source *s = ctx;
    job *j = s->job;
    observe_latency(s, ev);
    job_event *c = copy_event(ev, s->index);
    bool last = ev->finish != Q3_FINISH_NONE;
    job_event *end = last ? end_event(s, ev) : NULL;
    pthread_mutex_lock(&j->lock);
    append(j, c);
    append(j, end);
    pthread_cond_signal(&j->arrived);
    pthread_mutex_unlock(&j->lock);
    if (last) let_go(j);
}

void job_take(job *j, double wait_s, job_event **events) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    long long ns = until.tv_nsec + (long long)(wait_s * 1e9);
    until.tv_sec += (time_t)(ns / 1000000000);
    until.tv_nsec = (long)(ns % 1000000000);
    pthread_mutex_lock(&j->lock);
    while (!j->head)
        if (pthread_cond_timedwait(&j->arrived, &j->lock, &until) == ETIMEDOUT) break;
    *events = j->head;
    j->head = j->tail = NULL;
    pthread_mutex_unlock(&j->lock);
}

void job_events_free(job_event *ev) {
    while (ev) {
        job_event *next = ev->next;
        free(ev);
        ev = next;
    }
}
