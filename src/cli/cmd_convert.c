/* q3moe convert: a Hugging Face checkpoint or a GGUF file -> a GGUF file of the chosen type,
 * with per-role overrides for mixed precision (e.g. --attn-type q8_0 --expert-type q4_k). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include "cli/commands.h"
#include "cli/progress.h"
#include "formats/imatrix.h"
#include "model/presets.h"
#include "cpu/kernel_table.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: q3moe convert SOURCE -o OUT.gguf [--type TYPE] [--attn-type T] [--expert-type T]\n"
            "                     [--embed-type T] [--head-type T] [--dense-type T] [--name NAME]\n"
            "                     [--tokenizer tokenizer.json|DIR] [--imatrix FILE]\n"
            "SOURCE is a checkpoint directory (config.json + safetensors) or a GGUF file.\n"
            "TYPE: f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k q4_k q5_k q6_k iq4_nl iq4_xs\n"
            "      iq3_s iq3_xxs iq2_s, with --imatrix also iq2_xs iq2_xxs iq1_m iq1_s,\n"
            "      or a preset: q3_k_m q4_k_s q4_k_m q5_k_s q5_k_m (default bf16).\n"
            "--imatrix: an importance matrix (q3moe imatrix or llama-imatrix, GGUF or .dat) that the\n"
            "      i-quants fit to. The router and norms stay f32.\n");
}

/* Below 2.5 bits a weight an even fit loses too much: these types need an importance matrix
 * (as llama.cpp's quantizer requires one for them). */
static bool needs_imatrix(q3_type t) {
    return t == Q3_TYPE_IQ2_XXS || t == Q3_TYPE_IQ2_XS || t == Q3_TYPE_IQ1_S || t == Q3_TYPE_IQ1_M;
}

/* The first type of o that needs an importance matrix, or Q3_TYPE_COUNT. */
static q3_type type_needing_imatrix(const q3_export_options *o) {
    for (int r = 0; r < Q3_ROLE_COUNT; r++)
        if (needs_imatrix(o->type[r])) return o->type[r];
    for (int l = 0; l < Q3_MAX_LAYERS; l++) {
        if (needs_imatrix(o->expert_down_layer[l])) return o->expert_down_layer[l];
        if (needs_imatrix(o->attn_v_layer[l])) return o->attn_v_layer[l];
    }
    return Q3_TYPE_COUNT;
}

/* Overrides take plain types only: a preset is a whole-file recipe, not one role's type. */
static bool parse_type(const char *s, const char *option, q3_type *out) {
    if (q3_type_from_name(s, out) && q3_type_get(*out)->from_float && *out != Q3_TYPE_Q8_K && *out != Q3_TYPE_Q8_1)
        return true;
    fprintf(stderr, "q3moe convert: %s: unknown or unwritable type '%s'\n", option, s);
    return false;
}

int cmd_convert(int argc, char **argv) {
    enum { O_ATTN = 256, O_EXPERT, O_EMBED, O_HEAD, O_DENSE, O_NAME, O_TOKENIZER, O_IMATRIX };
    static const struct option opts[] = {
        {"out", required_argument, 0, 'o'},           {"type", required_argument, 0, 'T'},
        {"attn-type", required_argument, 0, O_ATTN},  {"expert-type", required_argument, 0, O_EXPERT},
        {"embed-type", required_argument, 0, O_EMBED},{"head-type", required_argument, 0, O_HEAD},
        {"dense-type", required_argument, 0, O_DENSE},{"name", required_argument, 0, O_NAME},
        {"tokenizer", required_argument, 0, O_TOKENIZER}, {"imatrix", required_argument, 0, O_IMATRIX},
        {"help", no_argument, 0, 'h'},                {0, 0, 0, 0}};
    const char *out = NULL, *type = "bf16", *name = NULL, *tokenizer = NULL, *imatrix_path = NULL;
    const char *over[O_NAME - O_ATTN] = {0};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        if (ch == 'o') out = optarg;
        else if (ch == 'T') type = optarg;
        else if (ch == O_NAME) name = optarg;
        else if (ch == O_TOKENIZER) tokenizer = optarg;
        else if (ch == O_IMATRIX) imatrix_path = optarg;
        else if (ch >= O_ATTN && ch < O_NAME) over[ch - O_ATTN] = optarg;
        else if (ch == 'h') { usage(stdout); return 0; }
        else { usage(stderr); return 2; }
    }
    if (!out || optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    const char *src = argv[optind];
    q3_error err = {0};
    q3_imatrix imatrix = {0};
    if (imatrix_path && q3_imatrix_load(&imatrix, imatrix_path, &err)) {
        fprintf(stderr, "q3moe convert: %s\n", err.msg);
        return 1;
    }
    q3_model *m;
    /* Each weight is read once, in order: placing the experts on NUMA nodes would gain nothing. */
    if (q3_model_load(&m, src, &(q3_load_options){.numa = Q3_NUMA_OFF}, &err)) {
        fprintf(stderr, "q3moe convert: %s\n", err.msg);
        q3_imatrix_free(&imatrix);
        return 1;
    }
    q3_export_options o;
    int rc = 1;
    if (!q3_export_preset(type, m->cfg.n_layers, &o)) {
        fprintf(stderr, "q3moe convert: --type: unknown or unwritable type '%s'\n", type);
        goto done;
    }
    static const q3_role roles[][3] = {
        {Q3_ROLE_ATTN_QKV, Q3_ROLE_ATTN_V, Q3_ROLE_ATTN_OUT},
        {Q3_ROLE_EXPERT_GATE_UP, Q3_ROLE_EXPERT_DOWN, Q3_ROLE_EXPERT_DOWN},
        {Q3_ROLE_EMBED, Q3_ROLE_EMBED, Q3_ROLE_EMBED},
        {Q3_ROLE_HEAD, Q3_ROLE_HEAD, Q3_ROLE_HEAD},
        {Q3_ROLE_DENSE, Q3_ROLE_DENSE, Q3_ROLE_DENSE}};
    static const char *names[] = {"--attn-type", "--expert-type", "--embed-type", "--head-type", "--dense-type"};
    for (int i = 0; i < O_NAME - O_ATTN; i++) {
        if (!over[i]) continue;
        q3_type t;
        if (!parse_type(over[i], names[i], &t)) goto done;
        for (int j = 0; j < 3; j++) o.type[roles[i][j]] = t;
        for (int l = 0; l < Q3_MAX_LAYERS; l++) {
            if (i == 0) o.attn_v_layer[l] = Q3_TYPE_COUNT;
            if (i == 1) o.expert_down_layer[l] = Q3_TYPE_COUNT;
        }
    }
    q3_type low = type_needing_imatrix(&o);
    if (low != Q3_TYPE_COUNT && !imatrix_path) {
        fprintf(stderr, "q3moe convert: %s needs an importance matrix: make one with `q3moe imatrix` (or llama-imatrix) "
                        "and pass it with --imatrix FILE\n", q3_type_name(low));
        goto done;
    }
    o.name = name;
    o.tokenizer = tokenizer;
    o.imatrix = imatrix_path ? &imatrix : NULL;
    q3_progress prog = {"convert", -1};
    o.progress = q3_progress_update;
    o.progress_ctx = &prog;
    if (q3_export_gguf(m, out, &o, &err)) {
        fprintf(stderr, "q3moe convert: %s\n", err.msg);
        goto done;
    }
    fprintf(stderr, "wrote %s\n", out);
    rc = 0;
done:
    q3_model_free(m);
    q3_imatrix_free(&imatrix);
    return rc;
}
