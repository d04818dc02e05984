/* A completion in flight, whatever API asked for it: one engine sequence per choice, their
 * events gathered on the request's HTTP thread, each choice's text split into reasoning, content
 * and tool calls as it arrives (the reply parser of text/tool_call.h, in the chat template's
 * tool-call format, values typed by the tools' schemas), the client watched and the clock kept.
 * The API writers (openai_reply.c, anthropic.c, responses.c) read the choices and write their
 * own shapes; they see every token event through on_token (log-probabilities, a chunk per token).
 *
 * Endings: a choice ends with its engine sequence. A request past --timeout is cancelled and
 * reads as max_tokens reached; a server that stops cancels it too (gen_choice_finish tells which). */
#ifndef Q3_SERVER_GENERATION_H
#define Q3_SERVER_GENERATION_H

#include "server/completion.h"
#include "server/job.h"
#include "text/tool_call.h"

/* A tool call as the reply parser read it; complete once its text has closed. */
typedef struct gen_call {
    char *id, *name;
    q3_buf arguments;            /* JSON text */
    bool complete;
} gen_call;

typedef struct gen_choice {
    q3_reply_parser *parser;   /* chat: the template's tool-call format, reasoning split (tool_call.h) */
    q3_buf reasoning, content;   /* since the writer last took them (it empties them) */
    gen_call *calls;           /* in the reply's order */
    size_t n_calls, cap_calls;
    size_t calls_taken;        /* complete calls the writer has passed on */
    bool ended;
    job_end end;
} gen_choice;

typedef enum gen_finish {
    GEN_STOP,                  /* an end-of-sequence token, a stop string, or a complete grammar */
    GEN_LENGTH,                /* max_tokens, the context, or --timeout */
    GEN_ABORT,                 /* the server is stopping */
    GEN_ERROR,                 /* the engine failed: end.error says why */
} gen_finish;

typedef void (*gen_token_fn)(void *ctx, int choice, const job_event *ev);

typedef struct gen {
    q3_server *srv;
    http_request conn;         /* the connection (its socket), not the body */
    job *job;
    int n, n_ended;
    uint64_t ids[Q3_MAX_CHOICES];
    bool submitted[Q3_MAX_CHOICES];
    bool released[Q3_MAX_CHOICES]; /* sources let go without a sequence (generation.c) */
    bool chat, in_reasoning, cancelled, timed_out;
    json_t *tools;             /* the tools offered (a reference: the parsers read their schemas); NULL: none */
    double deadline;           /* monotonic seconds; 0: none */
    double probed;             /* when a half-closed client was last probed */
    gen_choice choice[Q3_MAX_CHOICES];
    gen_token_fn on_token;     /* may be NULL */
    void *ctx;
} gen;

/* A generation for c's choices; NULL without memory. in_reasoning: the prompt opened a think
 * block, so replies start as reasoning. */
gen *gen_new(const http_request *r, const completion_request *c, bool in_reasoning);
/* One engine request per choice (seeded requests get seed, seed + 1, ... so that choices
 * differ); 503 when the queue is full, 400/500 as the engine says. On failure the choices
 * already submitted are cancelled by gen_free. */
bool gen_submit(gen *g, const completion_request *c, const int32_t *prompt, int n_prompt, api_error *err);
/* Waits up to one slice for events and folds them in. False when the client has gone (every
 * choice is then cancelled). stream: the body being streamed (a probe of a half-closed client
 * goes there), NULL for a whole reply. */
bool gen_wait(gen *g, q3_buf *stream);
/* Every choice has ended. */
static inline bool gen_done(const gen *g) { return g->n_ended == g->n; }
/* The reply of choice i is over: what its parser held back is settled (a partial tag is text, a
 * call still open goes back into the content). Cannot fail (without memory, held text is lost). */
void gen_settle(gen *g, int i);
/* The next complete call of choice i not yet passed on, or NULL. */
gen_call *gen_next_call(gen *g, int i);
gen_finish gen_choice_finish(const gen *g, int i);
void gen_free(gen *g);

#endif
