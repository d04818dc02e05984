/* quant_speed: single-thread throughput of the vec_dot kernels, per type and instruction set,
 * as GB/s of weights streamed. Two sizes: a matrix far larger than the caches (the decode case:
 * every weight read once from DRAM per token) and one that fits in L2 (the kernel's own speed).
 * With --tokens N, the tile kernels (gemm, prefill's products; for one token the rows kernel,
 * vec_dot_rows, decode's) instead: 256 rows (L2-resident) against N tokens, in GMAC/s, next to
 * vec_dot doing the same pairs one at a time; and for the interleaved layouts (--repack) at up
 * to Q3_X4_COLS tokens, gemm_x4 next to vec_dot_rows_x4 run once per token.
 *
 *   quant_speed [--mib N] [--cols N] [--tokens N] [TYPE...]
 *       defaults: 256 MiB, 4096 columns, the hot types
 *
 * The weights are a small quantized random matrix tiled over the large one, so the blocks are
 * realistic without quantizing gigabytes first. Time is the measuring thread's CPU time: the
 * same as wall-clock time on an idle machine, and not inflated by the time other processes
 * take the core on a shared one (their effect on caches and memory bandwidth remains). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "cpu/kernel_table.h"
#include "quant/interleave.h"

/* CPU seconds of the calling thread. */
static double thread_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float random_value(uint64_t *state) {
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((int64_t)(*state >> 33) - (1ll << 30)) / (float)(1ll << 30);
}

/* rows x cols weights of type t: one quantized tile of up to 64 rows, repeated. */
static void *make_matrix(q3_type t, int64_t rows, int64_t cols) {
    size_t row_bytes = q3_row_bytes(t, cols);
    int64_t tile_rows = rows < 64 ? rows : 64;
    unsigned char *w = malloc(row_bytes * (size_t)rows);
    float *x = malloc(sizeof(float) * (size_t)cols);
    if (!w || !x) {
        fprintf(stderr, "quant_speed: out of memory\n");
        exit(1);
    }
    uint64_t state = 42;
    for (int64_t r = 0; r < tile_rows; r++) {
        for (int64_t c = 0; c < cols; c++) x[c] = 0.05f * random_value(&state);
        q3_type_get(t)->from_float(x, w + row_bytes * (size_t)r, cols);
    }
    for (int64_t r = tile_rows; r < rows; r++)
        memcpy(w + row_bytes * (size_t)r, w + row_bytes * (size_t)(r % tile_rows), row_bytes);
    free(x);
    return w;
}

/* GB/s of one matrix-vector product by vec_dot, repeated for at least min_seconds. */
static double measure(const q3_type_traits *tr, const void *w, const void *act, int64_t rows,
                      int64_t cols, double min_seconds) {
    size_t row_bytes = (size_t)(cols / tr->block_size) * tr->type_size;
    volatile float sink = 0;
    int reps = 0;
    double start = thread_seconds(), elapsed;
    do {
        float s = 0;
        for (int64_t r = 0; r < rows; r++)
            s += tr->vec_dot(cols, (const char *)w + row_bytes * (size_t)r, act);
        sink += s;
        reps++;
        elapsed = thread_seconds() - start;
    } while (elapsed < min_seconds);
    (void)sink;
    return (double)row_bytes * (double)rows * reps / elapsed / 1e9;
}

static void bench_type(q3_type t, double mib, int64_t cols) {
    const q3_type_traits *tr = q3_type_get(t);
    size_t row_bytes = q3_row_bytes(t, cols);
    if (!tr || !tr->vec_dot || !row_bytes) {
        fprintf(stderr, "quant_speed: %s: no vec_dot for %lld columns\n", q3_type_name(t), (long long)cols);
        return;
    }
    int64_t big_rows = (int64_t)(mib * 1048576 / (double)row_bytes);
    int64_t small_rows = (int64_t)(1048576 / row_bytes);
    if (big_rows < 1) big_rows = 1;
    if (small_rows < 1) small_rows = 1;
    void *w = make_matrix(t, big_rows, cols);
    float *x = malloc(sizeof(float) * (size_t)cols);
    uint64_t state = 7;
    for (int64_t c = 0; c < cols; c++) x[c] = random_value(&state);
    for (int isa = 0; isa < Q3_ISA_COUNT; isa++) {
        const q3_type_traits *ti = q3_type_get_isa(t, (q3_isa)isa);
        if (!ti) continue;
        const q3_type_traits *at = q3_type_get_isa(ti->vec_dot_type, (q3_isa)isa);
        void *act = malloc(q3_row_bytes(ti->vec_dot_type, cols));
        at->from_float(x, act, cols);
        double big = measure(ti, w, act, big_rows, cols, 1.0);
        double small = measure(ti, w, act, small_rows, cols, 0.3);
        printf("%-5s %-7s %8.2f GB/s (%.0f MiB matrix)  %8.2f GB/s (1 MiB, in cache)\n", tr->name,
               q3_isa_name((q3_isa)isa), big, (double)big_rows * row_bytes / 1048576, small);
        fflush(stdout);
        free(act);
    }
    free(w);
    free(x);
}

/* How measure_tiles runs a tile: the type's tile or rows kernel, vec_dot per pair, or over
 * interleaved rows vec_dot_rows_x4 once per token or gemm_x4 once for all. */
enum tile_path { BY_GEMM, BY_VEC_DOT, X4_PER_TOKEN, X4_GEMM };

/* GMAC/s of rows x tokens products along path, repeated for at least min_seconds. */
static double measure_tiles(const q3_type_traits *tr, enum tile_path path, const void *w, const void *const *x, int tokens,
                            int64_t rows, int64_t cols, float *out, double min_seconds) {
    size_t row_bytes = (size_t)(cols / tr->block_size) * tr->type_size;
    int reps = 0;
    double start = thread_seconds(), elapsed;
    do {
        for (int64_t r = 0; r < rows; r += Q3_GEMM_ROWS) {
            const char *wr = (const char *)w + row_bytes * (size_t)r;
            if (path == X4_PER_TOKEN) {
                for (int c = 0; c < tokens; c++) tr->vec_dot_rows_x4(cols, wr, row_bytes, Q3_GEMM_ROWS, x[c], out + c * rows + r);
                continue;
            }
            if (path == X4_GEMM) {
                tr->gemm_x4(cols, wr, row_bytes, Q3_GEMM_ROWS, x, tokens, out + r, (size_t)rows);
                continue;
            }
            if (path == BY_GEMM && tokens == 1 && tr->vec_dot_rows) {
                tr->vec_dot_rows(cols, wr, row_bytes, Q3_GEMM_ROWS, x[0], out + r);
                continue;
            }
            if (path == BY_GEMM) {
                tr->gemm(cols, wr, row_bytes, Q3_GEMM_ROWS, x, tokens, out + r, (size_t)rows);
                continue;
            }
            for (int c = 0; c < tokens; c++)
                for (int i = 0; i < Q3_GEMM_ROWS; i++) out[c * rows + r + i] = tr->vec_dot(cols, wr + i * row_bytes, x[c]);
        }
        reps++;
        elapsed = thread_seconds() - start;
    } while (elapsed < min_seconds);
    return (double)rows * (double)cols * tokens * reps / elapsed / 1e9;
}

static void bench_gemm(q3_type t, int64_t cols, int tokens) {
    const int64_t rows = 256;
    const q3_type_traits *tr = q3_type_get(t);
    size_t row_bytes = q3_row_bytes(t, cols);
    if (!tr || !row_bytes || tokens < 1 || tokens > Q3_GEMM_COLS) {
        fprintf(stderr, "quant_speed: %s: no tiles of %lld columns x %d tokens\n", q3_type_name(t), (long long)cols,
                tokens);
        return;
    }
    void *w = make_matrix(t, rows, cols), *w4 = malloc(row_bytes * (size_t)rows);
    for (int64_t g = 0; q3_interleave_supported(t) && g < rows / 4; g++)
        q3_interleave_group(t, cols, (char *)w + 4 * g * row_bytes, row_bytes, (char *)w4 + 4 * g * row_bytes);
    float *x = malloc(sizeof(float) * (size_t)cols), *out = malloc(sizeof(float) * (size_t)(rows * tokens));
    uint64_t state = 7;
    for (int64_t c = 0; c < cols; c++) x[c] = random_value(&state);
    for (int isa = 0; isa < Q3_ISA_COUNT; isa++) {
        const q3_type_traits *ti = q3_type_get_isa(t, (q3_isa)isa);
        if (!ti || !ti->vec_dot) continue;
        size_t ab = q3_row_bytes(ti->vec_dot_type, cols);
        char *act = malloc(ab * (size_t)tokens);
        const void *xs[Q3_GEMM_COLS];
        for (int c = 0; c < tokens; c++) {
            q3_type_get_isa(ti->vec_dot_type, (q3_isa)isa)->from_float(x, act + ab * (size_t)c, cols);
            xs[c] = act + ab * (size_t)c;
        }
        double by_dot = measure_tiles(ti, BY_VEC_DOT, w, xs, tokens, rows, cols, out, 0.5);
        if (tokens <= Q3_X4_COLS && ti->gemm_x4)
            printf("%-5s %-7s x4   %8.2f GMAC/s   rows_x4 per token %8.2f GMAC/s  (the same rows interleaved, --repack)\n",
                   tr->name, q3_isa_name((q3_isa)isa), measure_tiles(ti, X4_GEMM, w4, xs, tokens, rows, cols, out, 0.5),
                   measure_tiles(ti, X4_PER_TOKEN, w4, xs, tokens, rows, cols, out, 0.5));
        if (tokens == 1 && ti->vec_dot_rows)
            printf("%-5s %-7s rows %8.2f GMAC/s   vec_dot %8.2f GMAC/s  (%lld x %lld x 1 token)\n", tr->name,
                   q3_isa_name((q3_isa)isa), measure_tiles(ti, BY_GEMM, w, xs, tokens, rows, cols, out, 0.5), by_dot,
                   (long long)rows, (long long)cols);
        else if (ti->gemm)
            printf("%-5s %-7s gemm %8.2f GMAC/s   vec_dot %8.2f GMAC/s  (%lld x %lld x %d tokens)\n", tr->name,
                   q3_isa_name((q3_isa)isa), measure_tiles(ti, BY_GEMM, w, xs, tokens, rows, cols, out, 0.5), by_dot,
                   (long long)rows, (long long)cols, tokens);
        else
            printf("%-5s %-7s gemm        -          vec_dot %8.2f GMAC/s\n", tr->name, q3_isa_name((q3_isa)isa), by_dot);
        fflush(stdout);
        free(act);
    }
    free(w);
    free(w4);
    free(x);
    free(out);
}

int main(int argc, char **argv) {
    double mib = 256;
    int64_t cols = 4096;
    int tokens = 0;
    q3_type types[Q3_TYPE_COUNT];
    int n_types = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--mib") == 0 && i + 1 < argc) {
            mib = atof(argv[++i]);
        } else if (strcmp(argv[i], "--cols") == 0 && i + 1 < argc) {
            cols = atoll(argv[++i]);
        } else if (strcmp(argv[i], "--tokens") == 0 && i + 1 < argc) {
            tokens = atoi(argv[++i]);
        } else if (n_types < Q3_TYPE_COUNT && q3_type_from_name(argv[i], &types[n_types])) {
            n_types++;
        } else {
            fprintf(stderr, "usage: quant_speed [--mib N] [--cols N] [--tokens N] [TYPE...]\n");
            return 2;
        }
    }
    if (n_types == 0) {
        static const q3_type hot[] = {Q3_TYPE_Q4_K, Q3_TYPE_Q8_0, Q3_TYPE_Q5_K, Q3_TYPE_Q6_K,
                                      Q3_TYPE_BF16, Q3_TYPE_F16, Q3_TYPE_F32};
        n_types = (int)(sizeof hot / sizeof hot[0]);
        memcpy(types, hot, sizeof hot);
    }
    printf("single thread, %lld columns; active ISA %s\n", (long long)cols, q3_isa_name(q3_isa_active()));
    for (int i = 0; i < n_types; i++) {
        if (tokens) bench_gemm(types[i], cols, tokens);
        else bench_type(types[i], mib, cols);
    }
    return 0;
}
