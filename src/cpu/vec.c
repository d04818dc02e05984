/* Portable vector routines and the per-ISA choice. */
#include "cpu/vec.h"

#include <math.h>
#include <stdatomic.h>
#include "base/half.h"
#include "quant/blocks.h"
#include "quant/float_types.h"
#include "cpu/kernel_table.h"
#include "cpu/row_src.h"

#define INLINE static inline __attribute__((always_inline))

INLINE float row_value(row_src s, int kind, int p, int d) {
    if (kind == ROW_F16) return q3_f16_to_f32(s.h[p][d]);
    if (kind == ROW_Q8_0) {
        const q3_block_q8_0 *b = (const q3_block_q8_0 *)s.b[p] + d / Q3_QK;
        return (float)b->qs[d % Q3_QK] * q3_f16_to_f32(b->d);
    }
    return s.v[(size_t)p * s.hd + d];
}

INLINE void mix_any(float *out, size_t out_stride, const float *w, size_t w_stride, int n_out, row_src s, int kind,
                    int n) {
    for (int o = 0; o < n_out; o++) {
        float *y = out + (size_t)o * out_stride;
        const float *wo = w + (size_t)o * w_stride;
        for (int d = 0; d < s.hd; d++) y[d] = 0;
        for (int p = 0; p < n; p++)
            for (int d = 0; d < s.hd; d++) y[d] += wo[p] * row_value(s, kind, p, d);
    }
}

INLINE void dot_any(float *out, size_t out_stride, const float *q, int n_out, row_src s, int kind, int n) {
    for (int o = 0; o < n_out; o++)
        for (int p = 0; p < n; p++) {
            float sum = 0;
            for (int d = 0; d < s.hd; d++) sum += q[(size_t)o * s.hd + d] * row_value(s, kind, p, d);
            out[(size_t)o * out_stride + p] = sum;
        }
}

static void mix_rows(float *out, size_t out_stride, const float *w, size_t w_stride, int n_out, const float *v, int n,
                     int hd) {
    mix_any(out, out_stride, w, w_stride, n_out, (row_src){v, NULL, NULL, hd}, ROW_F32, n);
}

static void mix_rows_f16(float *out, size_t out_stride, const float *w, size_t w_stride, int n_out,
                         const uint16_t *const *rows, int n, int hd) {
    mix_any(out, out_stride, w, w_stride, n_out, (row_src){NULL, rows, NULL, hd}, ROW_F16, n);
}

static void mix_rows_q8_0(float *out, size_t out_stride, const float *w, size_t w_stride, int n_out,
                          const void *const *rows, int n, int hd) {
    mix_any(out, out_stride, w, w_stride, n_out, (row_src){NULL, NULL, rows, hd}, ROW_Q8_0, n);
}

static void dot_rows(float *out, size_t out_stride, const float *q, int n_out, const float *k, int n, int hd) {
    dot_any(out, out_stride, q, n_out, (row_src){k, NULL, NULL, hd}, ROW_F32, n);
}

static void dot_rows_f16(float *out, size_t out_stride, const float *q, int n_out, const uint16_t *const *rows, int n,
                         int hd) {
    dot_any(out, out_stride, q, n_out, (row_src){NULL, rows, NULL, hd}, ROW_F16, n);
}

static float exp_sum(float *x, float max, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += (x[i] = expf(x[i] - max));
    return s;
}

const q3_vec_ops q3_vec_scalar_ops = {q3_f16_to_float, q3_bf16_to_float, mix_rows,    dot_rows,
                                      exp_sum,         dot_rows_f16,     mix_rows_f16,
                                      mix_rows_q8_0};

const q3_vec_ops *q3_vec_isa(int isa) {
    if (!q3_isa_supported((q3_isa)isa)) return NULL;
#if defined(__x86_64__)
    if (isa == Q3_ISA_AVX512) return &q3_vec_avx512_ops;
    if (isa == Q3_ISA_AVX2) return &q3_vec_avx2_ops;
#elif defined(__aarch64__)
    if (isa == Q3_ISA_NEON || isa == Q3_ISA_DOTPROD) return &q3_vec_neon_ops; /* these need no SDOT */
#endif
    return isa == Q3_ISA_SCALAR ? &q3_vec_scalar_ops : NULL;
}

/* Detecting the CPU costs cpuid calls: done once. Threads that race here store the same value. */
const q3_vec_ops *q3_vec(void) {
    static _Atomic(const q3_vec_ops *) chosen;
    const q3_vec_ops *v = atomic_load_explicit(&chosen, memory_order_acquire);
    if (v) return v;
    v = q3_vec_isa(q3_isa_active());
    if (!v) v = &q3_vec_scalar_ops;
    atomic_store_explicit(&chosen, v, memory_order_release);
    return v;
}
