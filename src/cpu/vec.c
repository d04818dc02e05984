/* Portable vector routines and the per-ISA choice. */
#include "cpu/vec.h"

#include <math.h>
#include <stdatomic.h>
#include "base/half.h"
#include "quant/blocks.h"
#include "quant/float_types.h"
#include "cpu/kernel_table.h"

static void mix_rows(float *out, size_t out_stride, const float *w, size_t w_stride, int n_out, const float *v, int n,
                     int hd) {
    for (int o = 0; o < n_out; o++) {
        float *y = out + (size_t)o * out_stride;
        const float *wo = w + (size_t)o * w_stride;
        for (int d = 0; d < hd; d++) y[d] = 0;
        for (int p = 0; p < n; p++)
            for (int d = 0; d < hd; d++) y[d] += wo[p] * v[(size_t)p * hd + d];
    }
}

static void dot_rows(float *out, size_t out_stride, const float *q, int n_out, const float *k, int n, int hd) {
    for (int o = 0; o < n_out; o++)
        for (int p = 0; p < n; p++) {
            float s = 0;
            for (int d = 0; d < hd; d++) s += q[(size_t)o * hd + d] * k[(size_t)p * hd + d];
            out[(size_t)o * out_stride + p] = s;
        }
}

/* mix_rows over F16 rows by address, each half widened where it is used. */
static void mix_rows_f16(float *out, size_t out_stride, const float *w, size_t w_stride, int n_out,
                         const uint16_t *const *rows, int n, int hd) {
    for (int o = 0; o < n_out; o++) {
        float *y = out + (size_t)o * out_stride;
        const float *wo = w + (size_t)o * w_stride;
        for (int d = 0; d < hd; d++) y[d] = 0;
        for (int p = 0; p < n; p++)
            for (int d = 0; d < hd; d++) y[d] += wo[p] * q3_f16_to_f32(rows[p][d]);
    }
}

/* mix_rows over Q8_0 rows by address, each value dequantized where it is used. */
static void mix_rows_q8_0(float *out, size_t out_stride, const float *w, size_t w_stride, int n_out,
                          const void *const *rows, int n, int hd) {
    for (int o = 0; o < n_out; o++) {
        float *y = out + (size_t)o * out_stride;
        const float *wo = w + (size_t)o * w_stride;
        for (int d = 0; d < hd; d++) y[d] = 0;
        for (int p = 0; p < n; p++) {
            const q3_block_q8_0 *b = rows[p];
            for (int d = 0; d < hd; d++)
                y[d] += wo[p] * ((float)b[d / Q3_QK].qs[d % Q3_QK] * q3_f16_to_f32(b[d / Q3_QK].d));
        }
    }
}

/* dot_rows over F16 rows by address. */
static void dot_rows_f16(float *out, size_t out_stride, const float *q, int n_out, const uint16_t *const *rows, int n,
                         int hd) {
    for (int o = 0; o < n_out; o++)
        for (int p = 0; p < n; p++) {
            float s = 0;
            for (int d = 0; d < hd; d++) s += q[(size_t)o * hd + d] * q3_f16_to_f32(rows[p][d]);
            out[(size_t)o * out_stride + p] = s;
        }
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
