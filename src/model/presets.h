/* Named output types for `q3moe convert --type`: a plain type (f32, bf16, q8_0, q4_k, ...) or a
 * llama.cpp preset (q4_k_m, q5_k_m, ...). */
#ifndef Q3_PRESETS_H
#define Q3_PRESETS_H

#include "model/export.h"

/* Fills o for the named type or preset; false when the name is unknown or not writable. */
bool q3_export_preset(const char *name, int n_layers, q3_export_options *o);

#endif
