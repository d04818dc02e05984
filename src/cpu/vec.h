/* Small vector routines the forward pass uses outside the matrix kernels (attention's softmax and
 * value sums, KV cache conversions), each with a portable version and AVX2 / AVX-512 / NEON
 * versions chosen once per process by the same CPU detection as the type kernels (q3_isa_active). */
#ifndef Q3_VEC_H
#define Q3_VEC_H

#include <stdint.h>

typedef struct q3_vec_ops {
    void (*f16_to_f32)(const uint16_t *src, float *dst, int n);
    void (*bf16_to_f32)(const uint16_t *src, float *dst, int n);
    /* y += a * x */
    void (*axpy)(float *y, float a, const float *x, int n);
    /* x[i] = exp(x[i] - max); returns the sum of the new x (accurate to a few ulp of expf) */
    float (*exp_sum)(float *x, float max, int n);
} q3_vec_ops;

/* The routines of the active instruction set; cannot fail. */
const q3_vec_ops *q3_vec(void);
/* Those of a given instruction set (q3_isa), or NULL when this CPU cannot run it: for tests. */
const q3_vec_ops *q3_vec_isa(int isa);

/* Per-ISA tables (vec.c, vec_avx2.c, vec_avx512.c, vec_neon.c). */
extern const q3_vec_ops q3_vec_scalar_ops, q3_vec_avx2_ops, q3_vec_avx512_ops, q3_vec_neon_ops;

#endif
