/* Wall-clock seconds for measuring: the monotonic clock, which NTP steps never move back. */
#ifndef Q3_CLOCK_H
#define Q3_CLOCK_H

#include <time.h>

/* Seconds since an arbitrary start; cannot fail. */
static inline double q3_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
