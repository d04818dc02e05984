/* What machine a benchmark ran on, in the words a results table needs: the CPU's name, its
 * cores, memory, last-level cache and how busy it was. Read from /proc, sysfs and sysconf;
 * nothing here can fail (an unknown field reads "unknown", 0, or -1 for the load). */
#ifndef Q3_BENCH_MACHINE_H
#define Q3_BENCH_MACHINE_H

#include <stdint.h>

typedef struct q3_machine {
    char cpu[128];           /* /proc/cpuinfo "model name" */
    int cores;               /* online CPUs */
    uint64_t ram_bytes;      /* physical memory */
    uint64_t available_bytes;/* memory available without swapping (MemAvailable) */
    uint64_t llc_bytes;      /* last-level cache; 0 when unknown */
    double load_average;     /* 1-minute load when described: other work that skews timings */
} q3_machine;

void q3_machine_describe(q3_machine *m);

#endif
