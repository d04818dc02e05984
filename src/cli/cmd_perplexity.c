/* q3moe perplexity: perplexity of a model over a text file (or a token list) in windows of
 * --ctx tokens, and with --kl-base the KL divergence from another model on the same windows.
 * --llama-chunks scores as llama-perplexity does, so the two tools compare on one file. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/rope_options.h"
#include "eval/perplexity.h"
#include "formats/safetensors.h"
#include "text/tokenizer.h"

static void usage(FILE *f) {
    fprintf(f, "usage: q3moe perplexity [-m MODEL] (-f TEXT_FILE | --ids FILE.safetensors:TENSOR) [--ctx N]\n"
               "                        [--windows N] [--kl-base MODEL] [--llama-chunks] [-t THREADS]\n"
               "                        " Q3_LOAD_OPTIONS_USAGE "\n"
               "--llama-chunks: back-to-back windows of --ctx tokens scoring only their second half, as\n"
               "                llama-perplexity does (default: every prediction of windows of --ctx + 1)\n");
}


/* Token ids from a text file (with the model's tokenizer) or from an I32 safetensors tensor. */
static bool load_ids(const char *model_path, const char *text_file, const char *ids_spec, int32_t **ids, int *n) {
    q3_error e = {0};
    if (ids_spec) {
        char file[4096];
        const char *colon = strrchr(ids_spec, ':');
        if (!colon) { fprintf(stderr, "q3moe perplexity: --ids wants FILE:TENSOR\n"); return false; }
        snprintf(file, sizeof file, "%.*s", (int)(colon - ids_spec), ids_spec);
        q3_st_file st;
        if (q3_st_open(&st, file, &e)) { fprintf(stderr, "q3moe perplexity: %s\n", e.msg); return false; }
        const q3_tensor_view *t = q3_st_find(&st, colon + 1);
        bool ok = t && t->type == Q3_TYPE_I32 && t->n_dims == 1;
        if (ok && (*ids = malloc(t->nbytes))) {
            memcpy(*ids, t->data, t->nbytes);
            *n = (int)t->shape[0];
        } else {
            fprintf(stderr, "q3moe perplexity: %s: no 1-D I32 tensor %s\n", file, colon + 1);
            ok = false;
        }
        q3_st_close(&st);
        return ok;
    }
    size_t len;
    char *text = q3_cli_read_file(text_file, &len);
    if (!text) return false;
    q3_tokenizer *tok = NULL;
    bool ok = !q3_tok_load(&tok, model_path, &e) && !q3_tok_encode(tok, text, len, false, ids, n, &e);
    if (!ok) fprintf(stderr, "q3moe perplexity: %s\n", e.msg);
    q3_tok_free(tok);
    free(text);
    return ok;
}

static void show(void *ctx, int done, int total, double ppl) {
    (void)ctx;
    fprintf(stderr, "[%d/%d] perplexity so far %.4f\n", done, total, ppl);
}

int cmd_perplexity(int argc, char **argv) {
    enum { O_IDS = 500, O_CTX, O_WINDOWS, O_KL, O_LLAMA };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"file", required_argument, 0, 'f'},
        {"ids", required_argument, 0, O_IDS}, {"ctx", required_argument, 0, O_CTX},
        {"windows", required_argument, 0, O_WINDOWS}, {"kl-base", required_argument, 0, O_KL},
        {"llama-chunks", no_argument, 0, O_LLAMA},
        {"threads", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'}, Q3_LOAD_LONG_OPTIONS, {0, 0, 0, 0}};
    const char *model = NULL, *file = NULL, *ids_spec = NULL, *kl = NULL;
    q3_load_options lo = {0};
    long ctx = 512, windows = 0, threads = 0;
    q3_ppl_scoring scoring = Q3_PPL_ALL;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "m:f:t:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'm': model = optarg; break;
        case 'f': file = optarg; break;
        case O_IDS: ids_spec = optarg; break;
        case O_CTX: if (!q3_cli_parse_int(optarg, "--ctx", 2, 1 << 20, &ctx)) return 2; break;
        case O_WINDOWS: if (!q3_cli_parse_int(optarg, "--windows", 1, 1 << 20, &windows)) return 2; break;
        case O_KL: kl = optarg; break;
        case O_LLAMA: scoring = Q3_PPL_SECOND_HALF; break;
        case 't': if (!q3_cli_parse_int(optarg, "--threads", 1, 1024, &threads)) return 2; break;
        case 'h': usage(stdout); return 0;
        default:
            if (q3_cli_parse_load_option(&lo, ch, optarg) == 0) break;
            usage(stderr);
            return 2;
        }
    }
    if (!file == !ids_spec || optind < argc) { usage(stderr); return 2; }
    const char *path = q3_cli_model_path(model);
    int32_t *ids = NULL;
    int n = 0, rc = 1;
    q3_model *m = NULL, *base = NULL;
    q3_error e = {0};
    if (!path || !load_ids(path, file, ids_spec, &ids, &n)) goto done;
    if (q3_model_load(&m, path, &lo, &e) || (kl && q3_model_load(&base, kl, &lo, &e))) goto fail;
    q3_ppl_result r;
    if (q3_perplexity(m, base, ids, n, (int)ctx, scoring, (int)windows, (int)threads, show, NULL, &r, &e)) goto fail;
    printf("perplexity: %.4f over %d windows of %ld tokens (%d scored, mean NLL %.5f)\n", r.ppl, r.windows, ctx,
           r.scored, r.nll);
    if (base) printf("KL divergence from %s: %.6f, top-1 agreement %.2f%%\n", kl, r.kld, 100 * r.top1_agree);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "q3moe perplexity: %s\n", e.msg);
done:
    free(ids);
    q3_model_free(m);
    q3_model_free(base);
    return rc;
}
