/* Parsing --rope-scaling, --rope-scale and --yarn-orig-ctx into q3_load_options' rope_scaling;
 * q3_model_load checks the values against the model (q3_config_set_rope_scaling). */
#include "cli/rope_options.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/common.h"

int q3_rope_options_parse(q3_rope_scaling *s, int ch, const char *arg) {
    char *end;
    long ctx;
    switch (ch) {
    case Q3_OPT_ROPE_SCALING:
        if (strcmp(arg, "yarn")) {
            fprintf(stderr, "q3moe: --rope-scaling: '%s' is not supported (yarn)\n", arg);
            return 1;
        }
        s->type = Q3_ROPE_SCALING_YARN;
        return 0;
    case Q3_OPT_ROPE_SCALE:
        s->factor = strtof(arg, &end);
        if (end == arg || *end || !(s->factor >= 1 && s->factor <= 1024)) {
            fprintf(stderr, "q3moe: --rope-scale: '%s' is not a number in 1..1024\n", arg);
            return 1;
        }
        s->type = Q3_ROPE_SCALING_YARN;
        return 0;
    case Q3_OPT_YARN_ORIG_CTX:
        if (!q3_cli_parse_int(arg, "--yarn-orig-ctx", 1, 1 << 24, &ctx)) return 1;
        s->original_context = (int)ctx;
        s->type = Q3_ROPE_SCALING_YARN;
        return 0;
    default: return -1;
    }
}
