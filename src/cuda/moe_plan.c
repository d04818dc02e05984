/* --gpu-experts N: which experts of a layer stay on the GPU. See moe_plan.h. */
#include "cuda/moe_plan.h"

#include <stdbool.h>

int q3_hot_experts(const uint64_t *counts, int n_experts, int n, int32_t *out) {
    if (n > n_experts) n = n_experts;
    if (n <= 0) return 0;
    /* n rounds of "the largest count not yet taken"; marks in out's order, then sorted by id */
    for (int k = 0; k < n; k++) {
        int best = -1;
        for (int x = 0; x < n_experts; x++) {
            bool taken = false;
            for (int j = 0; j < k; j++) taken |= out[j] == x;
            if (!taken && (best < 0 || counts[x] > counts[best])) best = x;
        }
        out[k] = best;
    }
    for (int i = 1; i < n; i++) /* insertion sort: n is a handful */
        for (int j = i; j > 0 && out[j - 1] > out[j]; j--) {
            int32_t t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
        }
    return n;
}
