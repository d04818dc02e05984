/* Small vector routines the forward pass uses outside the matrix kernels (attention's scores,
 * softmax and value sums, KV cache conversions), each with a portable version and AVX2 / AVX-512 / NEON
 * versions chosen once per process by the same CPU detection as the type kernels (q3_isa_active). */
#ifndef Q3_VEC_H
#define Q3_VEC_H

#include <stddef.h>
#include <stdint.h>

typedef struct q3_vec_ops {
    /* exact widening of n halves or bfloat16s; the SIMD ISAs install them as the F16 and BF16
     * types' to_float (src/cpu/dot_dispatch.c) */
    void (*f16_to_f32)(const void *src, float *dst, int64_t n);
    void (*bf16_to_f32)(const void *src, float *dst, int64_t n);
    /* out[o * out_stride + d] = sum over p < n of w[o * w_stride + p] * v[p * hd + d], for o < n_out
     * and d < hd: the weighted sums of value rows that attention takes. Every output is summed in
     * order of p with one rounding per term (fused multiply-add where the ISA has one), so it does
     * not depend on which other outputs share the call. */
    void (*mix_rows)(float *out, size_t out_stride, const float *w, size_t w_stride, int n_out, const float *v, int n,
                     int hd);
    /* out[o * out_stride + p] = sum over d < hd of q[o * hd + d] * k[p * hd + d], for o < n_out and
     * p < n: attention's scores of query rows against key rows. Every score is summed in one fixed
     * order of d, so it does not depend on the other rows and positions of the call. */
    void (*dot_rows)(float *out, size_t out_stride, const float *q, int n_out, const float *k, int n, int hd);
    /* x[i] = exp(x[i] - max); returns the sum of the new x (accurate to a few ulp of expf) */
    float (*exp_sum)(float *x, float max, int n);
    /* dot_rows and mix_rows over F16 rows given by address (row p at rows[p], hd halves each):
     * the bits of dot_rows / mix_rows of this same table on the rows widened to floats. Decode
     * at depth streams every cached key and value once a token; widened in a pass of their own,
     * the cores waited on that stream with no arithmetic to overlap it (a third of the rate the
     * weights stream at). NULL where an ISA has none: the caller widens the rows first. */
    void (*dot_rows_f16)(float *out, size_t out_stride, const float *q, int n_out, const uint16_t *const *rows, int n,
                         int hd);
    void (*mix_rows_f16)(float *out, size_t out_stride, const float *w, size_t w_stride, int n_out,
                         const uint16_t *const *rows, int n, int hd);
    /* mix_rows over Q8_0 rows by address (rows[p]: hd / 32 blocks), each value its level times
     * its block's scale as Q8_0's to_float gives it: the bits of mix_rows on the dequantized
     * rows, for a Q8_0 cache's values. NULL where an ISA has none. */
    void (*mix_rows_q8_0)(float *out, size_t out_stride, const float *w, size_t w_stride, int n_out,
                          const void *const *rows, int n, int hd);
} q3_vec_ops;

/* The routines of the active instruction set; cannot fail. */
const q3_vec_ops *q3_vec(void);
/* Those of a given instruction set (q3_isa), or NULL when this CPU cannot run it: for tests. */
const q3_vec_ops *q3_vec_isa(int isa);

/* Per-ISA tables (vec.c, vec_avx2.c, vec_avx512.c, vec_neon.c). */
extern const q3_vec_ops q3_vec_scalar_ops, q3_vec_avx2_ops, q3_vec_avx512_ops, q3_vec_neon_ops;

#endif
