/* Which i-quant kernels each instruction set brings (the rest of the dispatch is
 * dot_dispatch.c, whose per-ISA installs call this). Only the ISAs this build targets have
 * kernels to name. */
#include "cpu/dot.h"

#define INSTALL_IQ_DOTS(t, isa)                                 \
    do {                                                        \
        t[Q3_TYPE_IQ4_NL].vec_dot = q3_iq4_nl_vec_dot_##isa;   \
        t[Q3_TYPE_IQ4_XS].vec_dot = q3_iq4_xs_vec_dot_##isa;   \
        t[Q3_TYPE_IQ3_XXS].vec_dot = q3_iq3_xxs_vec_dot_##isa; \
        t[Q3_TYPE_IQ3_S].vec_dot = q3_iq3_s_vec_dot_##isa;     \
        t[Q3_TYPE_IQ2_XXS].vec_dot = q3_iq2_xxs_vec_dot_##isa; \
        t[Q3_TYPE_IQ2_XS].vec_dot = q3_iq2_xs_vec_dot_##isa;   \
        t[Q3_TYPE_IQ2_S].vec_dot = q3_iq2_s_vec_dot_##isa;     \
        t[Q3_TYPE_IQ1_S].vec_dot = q3_iq1_s_vec_dot_##isa;     \
        t[Q3_TYPE_IQ1_M].vec_dot = q3_iq1_m_vec_dot_##isa;     \
    } while (0)

void q3_dot_iq_install(q3_type_traits t[Q3_TYPE_COUNT], q3_isa isa) {
    switch (isa) {
#if defined(__x86_64__) || defined(__i386__)
    case Q3_ISA_AVX2: INSTALL_IQ_DOTS(t, avx2); break;
    case Q3_ISA_AVX512: INSTALL_IQ_DOTS(t, avx512); break;
#endif
#if defined(__aarch64__)
    case Q3_ISA_NEON: INSTALL_IQ_DOTS(t, neon); break;
    case Q3_ISA_DOTPROD: INSTALL_IQ_DOTS(t, dotprod); break;
#endif
    default: break;
    }
}
