/* Progress of long work: a redrawn bar on a terminal, a plain line every 10% otherwise. */
#ifndef Q3_PROGRESS_H
#define Q3_PROGRESS_H

typedef struct q3_progress {
    const char *label;
    int last_tenth;
} q3_progress;

/* Matches q3_export_options.progress: ctx is a q3_progress. */
void q3_progress_update(void *ctx, int done, int total);

#endif
