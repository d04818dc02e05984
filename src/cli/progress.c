/* Progress reporting on stderr. */
#include "cli/progress.h"

#include <stdio.h>
#include <unistd.h>

void q3_progress_update(void *ctx, int done, int total) {
    q3_progress *p = ctx;
    int pct = total ? (int)(100LL * done / total) : 100;
    if (isatty(STDERR_FILENO)) {
        int filled = pct * 30 / 100;
        fprintf(stderr, "\r%s [%.*s%*s] %3d%% (%d/%d)", p->label, filled, "==============================",
                30 - filled, "", pct, done, total);
        if (done == total) fputc('\n', stderr);
        return;
    }
    if (pct / 10 > p->last_tenth || done == total) {
        p->last_tenth = pct / 10;
        fprintf(stderr, "%s: %d%% (%d/%d)\n", p->label, pct, done, total);
    }
}
