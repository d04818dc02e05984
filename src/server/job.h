/* One request in flight: the hand-over between the engine thread and the HTTP thread.
 *
 * The engine reports events on its own thread through job_on_event, which copies each one into
 * a queue and signals; the HTTP thread takes whatever has arrived with job_take and turns it into
 * JSON or server-sent events at its own pace. A job has two owners, the engine (until its last
 * event) and the HTTP side (until its response is finished with); the last to let go frees it, so
 * a client that disconnects and an engine that finishes may do so in either order. */
#ifndef Q3_SERVER_JOB_H
#define Q3_SERVER_JOB_H

#include "engine/engine.h"
#include "server/metrics.h"

/* A copied generated token with the text it completed. */
typedef struct job_event {
    struct job_event *next;
    int32_t token;
    float logprob;
    int n_top;
    int32_t top_ids[Q3_MAX_TOP_LOGPROBS];
    float top_logprobs[Q3_MAX_TOP_LOGPROBS];
    size_t text_len;
    char text[];
} job_event;

/* How a request ended, from its last event. */
typedef struct job_end {
    q3_finish finish;
    int stop_index;
    int prompt_tokens, completion_tokens, cached_tokens;
    char error[256];
} job_end;

typedef struct job job;

/* A job owned by both sides; NULL without memory. metrics receives its latencies. */
job *job_new(q3_metrics *metrics);
/* The engine's callback (q3_request.on_event with ctx = the job). Text that comes with the last
 * event arrives as one more job_event, before the end. */
void job_on_event(void *ctx, const q3_event *ev);
/* Detaches every event that has arrived, oldest first, into *events (NULL when none), waiting up
 * to wait_s seconds for the first. Returns true once the request has ended, *end then saying how;
 * the events taken by that same call are the request's last ones and come before the end. */
bool job_take(job *j, double wait_s, job_event **events, job_end *end);
void job_events_free(job_event *ev);
/* Lets go of one side's ownership: the HTTP side when it is done, or the engine side in place of
 * the last event when q3_engine_submit refused the request. */
void job_release(job *j);

#endif
