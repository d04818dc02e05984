/* One request in flight: the hand-over between the engine thread and the HTTP thread.
 *
 * A request may run as several engine sequences (OpenAI's n choices), each reporting through a
 * source of the job. The engine reports events on its own thread through job_on_event, which
 * copies each one into the job's queue and signals; the HTTP thread takes whatever has arrived
 * with job_take and turns it into JSON or server-sent events at its own pace. A source's last
 * event becomes an end event in the queue, after its text. A job has n + 1 owners, the engine
 * for each source (until its last event) and the HTTP side (until its response is finished
 * with); the last to let go frees it, so a client that disconnects and an engine that finishes
 * may do so in either order. */
#ifndef Q3_SERVER_JOB_H
#define Q3_SERVER_JOB_H

#include "engine/engine.h"
#include "server/metrics.h"

/* How a sequence ended, from its last event. */
typedef struct job_end {
    q3_finish finish;
    int stop_index;
    int prompt_tokens, completion_tokens, cached_tokens;
    char error[256];
} job_end;

/* A copied event: a generated token with the text it completed, a scored prompt token
 * (prompt), the text that came with the last event (token -1), or the end (is_end). */
typedef struct job_event {
    struct job_event *next;
    int choice;
    bool prompt, is_end;
    int32_t token;
    float logprob;
    int n_top;
    int32_t top_ids[Q3_MAX_TOP_LOGPROBS];
    float top_logprobs[Q3_MAX_TOP_LOGPROBS];
    job_end end;              /* is_end only */
    size_t text_len;
    char text[];
} job_event;

typedef struct job job;

/* A job of n sources (1 <= n), owned by each source and the HTTP side; NULL without memory.
 * metrics receives its latencies. */
job *job_new(q3_metrics *metrics, int n);
/* The q3_request.ctx of source i, for q3_request.on_event = job_on_event. */
void *job_source(job *j, int i);
/* The engine's callback. */
void job_on_event(void *source, const q3_event *ev);
/* Detaches every event that has arrived, oldest first, into *events (NULL when none), waiting
 * up to wait_s seconds for the first. Cannot fail. */
void job_take(job *j, double wait_s, job_event **events);
void job_events_free(job_event *ev);
/* Lets go of the HTTP side's ownership. */
void job_release(job *j);
/* Lets go of source i's ownership in place of its last event, when q3_engine_submit refused it. */
void job_release_source(job *j, int i);

#endif
