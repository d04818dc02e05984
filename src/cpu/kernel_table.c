/* The traits table per instruction set: the reference rows (quant/types.c) with each ISA's
 * kernels patched in at first use (dot_dispatch.c), and q3_type_get serving the chosen ISA's. */
#include "cpu/kernel_table.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "cpu/dot.h"

static q3_type_traits isa_traits[Q3_ISA_COUNT][Q3_TYPE_COUNT];
static q3_isa active_isa = Q3_ISA_SCALAR;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* The ISA Q3_ISA asks for, or the best one supported. */
static q3_isa choose_isa(void) {
    q3_isa best = Q3_ISA_SCALAR;
    for (int isa = 0; isa < Q3_ISA_COUNT; isa++)
        if (q3_isa_supported((q3_isa)isa)) best = (q3_isa)isa;
    const char *want = getenv("Q3_ISA");
    if (!want || !*want) return best;
    for (int isa = 0; isa < Q3_ISA_COUNT; isa++) {
        if (strcasecmp(want, q3_isa_name((q3_isa)isa)) != 0) continue;
        if (q3_isa_supported((q3_isa)isa)) return (q3_isa)isa;
        fprintf(stderr, "q3moe: Q3_ISA=%s: this CPU cannot run it; using %s\n", want,
                q3_isa_name(best));
        return best;
    }
    fprintf(stderr, "q3moe: Q3_ISA=%s: unknown (scalar, avx2, avx512, neon, dotprod); using %s\n", want,
            q3_isa_name(best));
    return best;
}

static void build_tables(void) {
    for (int isa = 0; isa < Q3_ISA_COUNT; isa++) {
        for (int t = 0; t < Q3_TYPE_COUNT; t++)
            if (q3_type_info((q3_type)t)) isa_traits[isa][t] = *q3_type_info((q3_type)t);
        if (q3_isa_supported((q3_isa)isa)) q3_dot_install(isa_traits[isa], (q3_isa)isa);
    }
    active_isa = choose_isa();
}

void q3_quant_init(void) { pthread_once(&init_once, build_tables); }

q3_isa q3_isa_active(void) {
    q3_quant_init();
    return active_isa;
}

const q3_type_traits *q3_type_get_isa(q3_type t, q3_isa isa) {
    if (!q3_type_info(t)) return NULL;
    if ((unsigned)isa >= Q3_ISA_COUNT || !q3_isa_supported(isa)) return NULL;
    q3_quant_init();
    return &isa_traits[isa][t];
}

const q3_type_traits *q3_type_get(q3_type t) {
    if (!q3_type_info(t)) return NULL;
    q3_quant_init();
    return &isa_traits[active_isa][t];
}

