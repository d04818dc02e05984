/* Quantization presets by llama.cpp's names: a base type plus the tensors that get more bits.
 * "_M" presets give attn_v and the expert down projections of some layers (the first and last
 * eighth, and every third in between) a larger type, and the output head Q6_K, because those
 * tensors' errors hurt perplexity most. */
#include <string.h>
#include <strings.h>
#include "model/export.h"
#include "model/presets.h"
#include "quant/types.h"

static bool more_bits(int layer, int n_layers) {
    return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

typedef struct preset {
    const char *name;
    q3_type base, more, head;
    int file_type;
} preset;

static const preset PRESETS[] = {
    {"q3_k_m", Q3_TYPE_Q3_K, Q3_TYPE_Q4_K, Q3_TYPE_Q6_K, 12},
    {"q4_k_s", Q3_TYPE_Q4_K, Q3_TYPE_Q4_K, Q3_TYPE_Q6_K, 14},
    {"q4_k_m", Q3_TYPE_Q4_K, Q3_TYPE_Q6_K, Q3_TYPE_Q6_K, 15},
    {"q5_k_s", Q3_TYPE_Q5_K, Q3_TYPE_Q5_K, Q3_TYPE_Q6_K, 16},
    {"q5_k_m", Q3_TYPE_Q5_K, Q3_TYPE_Q6_K, Q3_TYPE_Q6_K, 17},
};

bool q3_export_preset(const char *name, int n_layers, q3_export_options *o) {
    for (size_t i = 0; i < sizeof PRESETS / sizeof *PRESETS; i++) {
        const preset *p = &PRESETS[i];
        if (strcasecmp(name, p->name)) continue;
        q3_export_options_uniform(o, p->base);
        o->type[Q3_ROLE_HEAD] = p->head;
        o->file_type = p->file_type;
        for (int l = 0; l < n_layers && l < Q3_MAX_LAYERS; l++)
            if (more_bits(l, n_layers)) o->attn_v_layer[l] = o->expert_down_layer[l] = p->more;
        return true;
    }
    q3_type t;
    if (!q3_type_from_name(name, &t) || t == Q3_TYPE_Q8_K || t == Q3_TYPE_Q8_1 || !q3_type_info(t)->from_float)
        return false;
    q3_export_options_uniform(o, t);
    return true;
}
