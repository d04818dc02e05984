/* The machine description of a benchmark report: CPU model name from /proc/cpuinfo, cores and
 * memory from sysconf, MemAvailable from /proc/meminfo (what a model can occupy in the page
 * cache without evicting itself), and the largest cache level sysconf knows. */
#include "bench/machine.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The value of the first "key<spaces>: value" line of a /proc file, or false. */
static bool proc_field(const char *path, const char *key, char *out, size_t cap) {
    FILE *f = fopen(path, "r");
    if (!f) return false;
    char line[512];
    size_t klen = strlen(key);
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) != 0) continue;
        char *colon = strchr(line + klen, ':');
        if (!colon) continue;
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t') v++;
        v[strcspn(v, "\n")] = 0;
        snprintf(out, cap, "%s", v);
        found = true;
    }
    fclose(f);
    return found;
}

/* The largest cache sysfs lists for CPU 0 (the size of one instance, e.g. "32768K"). */
static uint64_t largest_cache_sysfs(void) {
    uint64_t best = 0;
    for (int i = 0; i < 8; i++) {
        char path[96], text[64];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        FILE *f = fopen(path, "r");
        if (!f) break;
        unsigned long long v = 0;
        char unit = 0;
        if (fgets(text, sizeof text, f) && sscanf(text, "%llu%c", &v, &unit) >= 1) {
            uint64_t bytes = v << (unit == 'K' ? 10 : unit == 'M' ? 20 : unit == 'G' ? 30 : 0);
            if (bytes > best) best = bytes;
        }
        fclose(f);
    }
    return best;
}

/* sysfs first: under some hypervisors sysconf reports the cache of the whole host. */
static uint64_t largest_cache(void) {
    uint64_t sysfs = largest_cache_sysfs();
    if (sysfs) return sysfs;
    const int levels[] = {_SC_LEVEL4_CACHE_SIZE, _SC_LEVEL3_CACHE_SIZE, _SC_LEVEL2_CACHE_SIZE};
    for (size_t i = 0; i < sizeof levels / sizeof *levels; i++) {
        long v = sysconf(levels[i]);
        if (v > 0) return (uint64_t)v;
    }
    return 0;
}

void q3_machine_describe(q3_machine *m) {
    memset(m, 0, sizeof *m);
    if (!proc_field("/proc/cpuinfo", "model name", m->cpu, sizeof m->cpu)) snprintf(m->cpu, sizeof m->cpu, "unknown");
    long cores = sysconf(_SC_NPROCESSORS_ONLN), pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    m->cores = cores > 0 ? (int)cores : 1;
    if (pages > 0 && page > 0) m->ram_bytes = (uint64_t)pages * (uint64_t)page;
    char avail[64];
    unsigned long long kib;
    if (proc_field("/proc/meminfo", "MemAvailable", avail, sizeof avail) && sscanf(avail, "%llu", &kib) == 1)
        m->available_bytes = (uint64_t)kib * 1024;
    m->llc_bytes = largest_cache();
    double load[1];
    m->load_average = getloadavg(load, 1) == 1 ? load[0] : -1;
}
