/* q3moe logits: run a token sequence through the model and write the logits of every position
 * as raw little-endian float32, row-major [tokens, vocab]. --decode feeds the tokens one at a
 * time through the KV cache instead of as one prefill; the two must agree. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/rope_options.h"
#include "q3moe.h"

static void usage(FILE *f) {
    fprintf(f, "usage: q3moe logits [-m MODEL] --tokens IDS --out FILE [--decode] [--kv-type f32|f16|bf16|q8_0] [-t THREADS]\n"
               "                    " Q3_LOAD_OPTIONS_USAGE "\n");
}

static int run(const char *model_path, const q3_load_options *lo, const int32_t *ids, int n, const char *out_path,
               bool decode, q3_type kv_type, int threads) {
    q3_error err = {0};
    q3_model *m = NULL;
    q3_kv_cache *kv = NULL;
    q3_runner *r = NULL;
    float *logits = NULL;
    FILE *f = NULL;
    int rc = 1;
    if (q3_model_load(&m, model_path, lo, &err)) goto fail;
    const q3_config *c = q3_model_config(m);
    q3_kv_options ko = {kv_type, 256, (n + 255) / 256, 1, n};
    if (q3_kv_cache_new(&kv, m, &ko, &err) || q3_runner_new(&r, m, decode ? 1 : n, threads, &err)) goto fail;
    logits = malloc((size_t)n * c->vocab_size * sizeof(float));
    int32_t *pos = malloc((size_t)n * sizeof *pos), *seq = calloc((size_t)n, sizeof *seq);
    if (!logits || !pos || !seq) {
        free(pos), free(seq);
        snprintf(err.msg, sizeof err.msg, "out of memory for %d x %d logits", n, c->vocab_size);
        goto fail;
    }
    for (int i = 0; i < n; i++) pos[i] = i;
    int step = decode ? 1 : n;
    for (int i = 0; i < n; i += step) {
        q3_batch b = {step, ids + i, pos + i, seq + i, NULL};
        if (q3_forward(r, kv, &b, logits + (size_t)i * c->vocab_size, &err)) break;
    }
    free(pos), free(seq);
    if (err.code) goto fail;
    if (!(f = fopen(out_path, "wb"))) {
        snprintf(err.msg, sizeof err.msg, "%s: cannot create", out_path);
        goto fail;
    }
    size_t total = (size_t)n * c->vocab_size;
    if (fwrite(logits, sizeof(float), total, f) != total || fclose(f) != 0) {
        f = NULL;
        snprintf(err.msg, sizeof err.msg, "%s: write failed", out_path);
        goto fail;
    }
    f = NULL;
    rc = 0;
fail:
    if (rc) fprintf(stderr, "q3moe logits: %s\n", err.msg);
    if (f) fclose(f);
    free(logits);
    q3_runner_free(r);
    q3_kv_cache_free(kv);
    q3_model_free(m);
    return rc;
}

int cmd_logits(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"tokens", required_argument, 0, 'k'},
        {"out", required_argument, 0, 'o'},   {"decode", no_argument, 0, 'd'},
        {"kv-type", required_argument, 0, 'v'}, {"threads", required_argument, 0, 't'},
        {"help", no_argument, 0, 'h'},        Q3_LOAD_LONG_OPTIONS, {0, 0, 0, 0}};
    const char *model = NULL, *tokens = NULL, *out = NULL;
    q3_load_options lo = {0};
    bool decode = false;
    q3_type kv_type = Q3_TYPE_F32;
    long threads = 0;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "m:o:t:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'm': model = optarg; break;
        case 'k': tokens = optarg; break;
        case 'o': out = optarg; break;
        case 'd': decode = true; break;
        case 'v': if (!q3_cli_parse_kv_type(optarg, "--kv-type", &kv_type)) return 2; break;
        case 't': if (!q3_cli_parse_int(optarg, "--threads", 1, 1024, &threads)) return 2; break;
        case 'h': usage(stdout); return 0;
        default:
            if (q3_cli_parse_load_option(&lo, ch, optarg) == 0) break;
            usage(stderr);
            return 2;
        }
    }
    if (!tokens || !out || optind < argc) {
        usage(stderr);
        return 2;
    }
    const char *path = q3_cli_model_path(model);
    if (!path) return 1;
    int32_t *ids;
    int n;
    if (!q3_cli_parse_ids(tokens, "--tokens", &ids, &n)) return 1;
    int rc = run(path, &lo, ids, n, out, decode, kv_type, (int)threads);
    free(ids);
    return rc;
}
