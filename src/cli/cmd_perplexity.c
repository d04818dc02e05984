/* q3moe perplexity: perplexity of a model over a text file (or a token list) in windows of
 * --ctx tokens, and with --kl-base the KL divergence from another model on the same windows.
 * --llama-chunks scores as llama-perplexity does, so the two tools compare on one file; --kl-base
 * also takes llama-perplexity's saved log-probabilities (--kl-divergence-base), to measure how
 * far q3moe's distributions are from llama.cpp's own on the same tokens. */
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
               "                        [--windows N] [--kl-base MODEL|LLAMA_LOGITS] [--llama-chunks]\n"
               "                        [--kv-type f32|f16|bf16|q8_0] [-t THREADS] " Q3_LOAD_OPTIONS_USAGE "\n"
               "--llama-chunks: back-to-back windows of --ctx tokens scoring only their second half, as\n"
               "                llama-perplexity does (default: every prediction of windows of --ctx + 1)\n"
               "--kl-base LLAMA_LOGITS: a file from llama-perplexity --kl-divergence-base: its tokens and\n"
               "                chunks are evaluated (-f/--ids, if given, must tokenize to the same), KL as\n"
               "                llama-perplexity --kl-divergence computes it\n"
               "--kv-type: the KV cache's type (default f32)\n");
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

/* The tokens we would evaluate must be the ones llama.cpp saved: tells where they part. */
static bool same_tokens(const q3_llama_logits *f, const int32_t *ids, int n) {
    size_t want = (size_t)f->ctx * f->chunks;
    for (size_t i = 0; i < want; i++)
        if (i >= (size_t)n || ids[i] != q3_llama_logits_token(f, i)) {
            fprintf(stderr, "q3moe perplexity: %s: token %zu is %d there, %d here%s\n", f->map.path, i,
                    q3_llama_logits_token(f, i), i < (size_t)n ? ids[i] : -1, i < (size_t)n ? "" : " (text ended)");
            return false;
        }
    return true;
}

static void print_result(const q3_ppl_result *r, int ctx, const char *kl) {
    printf("perplexity: %.4f over %d windows of %d tokens (%d scored, mean NLL %.5f)\n", r->ppl, r->windows, ctx,
           r->scored, r->nll);
    if (!kl) return;
    printf("KL divergence from %s: %.6f (largest %.6f), top-1 agreement %.2f%%\n", kl, r->kld, r->kld_max,
           100 * r->top1_agree);
    const double *q = r->kld_quantile;
    printf("KL median %.6f, 90%% %.6f, 95%% %.6f, 99%% %.6f, 99.9%% %.6f; largest at window %d, position %d\n", q[0],
           q[1], q[2], q[3], q[4], r->kld_max_window, r->kld_max_pos);
}

/* Evaluates model path with options o: against a base model, llama.cpp's saved log-probabilities
 * (when kl names such a file), or alone. 0 or 1, having printed the result or the error. */
static int evaluate(const char *path, const char *kl, const int32_t *ids, int n, const q3_load_options *lo,
                    const q3_ppl_options *o) {
    q3_model *m = NULL, *base = NULL;
    q3_llama_logits saved = {0};
    q3_error e = {0};
    q3_ppl_result r;
    bool llama = kl && q3_llama_logits_is(kl);
    q3_ppl_options opt = *o;
    int rc = 1;
    if (llama && q3_llama_logits_open(&saved, kl, &e)) goto fail;
    if (llama) opt.ctx = saved.ctx, opt.scoring = Q3_PPL_SECOND_HALF;
    if (llama && ids && !same_tokens(&saved, ids, n)) goto done;
    if (q3_model_load(&m, path, lo, &e) || (kl && !llama && q3_model_load(&base, kl, lo, &e))) goto fail;
    if (llama ? q3_perplexity_vs_llama(m, &saved, &opt, &r, &e) : q3_perplexity(m, base, ids, n, &opt, &r, &e))
        goto fail;
    print_result(&r, opt.ctx, kl);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "q3moe perplexity: %s\n", e.msg);
done:
    q3_llama_logits_close(&saved);
    q3_model_free(m);
    q3_model_free(base);
    return rc;
}

int cmd_perplexity(int argc, char **argv) {
    enum { O_IDS = 500, O_CTX, O_WINDOWS, O_KL, O_LLAMA, O_KV };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"file", required_argument, 0, 'f'},
        {"ids", required_argument, 0, O_IDS}, {"ctx", required_argument, 0, O_CTX},
        {"windows", required_argument, 0, O_WINDOWS}, {"kl-base", required_argument, 0, O_KL},
        {"llama-chunks", no_argument, 0, O_LLAMA}, {"kv-type", required_argument, 0, O_KV},
        {"threads", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'}, Q3_LOAD_LONG_OPTIONS, {0, 0, 0, 0}};
    const char *model = NULL, *file = NULL, *ids_spec = NULL, *kl = NULL;
    q3_load_options lo = {0};
    q3_ppl_options o = {.ctx = 512, .scoring = Q3_PPL_ALL, .kv_type = Q3_TYPE_F32, .progress = show};
    long v;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "m:f:t:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'm': model = optarg; break;
        case 'f': file = optarg; break;
        case O_IDS: ids_spec = optarg; break;
        case O_CTX: if (!q3_cli_parse_int(optarg, "--ctx", 2, 1 << 20, &v)) return 2; o.ctx = (int)v; break;
        case O_WINDOWS: if (!q3_cli_parse_int(optarg, "--windows", 1, 1 << 20, &v)) return 2; o.max_windows = (int)v; break;
        case O_KL: kl = optarg; break;
        case O_LLAMA: o.scoring = Q3_PPL_SECOND_HALF; break;
        case O_KV: if (!q3_cli_parse_kv_type(optarg, "--kv-type", &o.kv_type)) return 2; break;
        case 't': if (!q3_cli_parse_int(optarg, "--threads", 1, 1024, &v)) return 2; o.threads = (int)v; break;
        case 'h': usage(stdout); return 0;
        default:
            if (q3_cli_parse_load_option(&lo, ch, optarg) == 0) break;
            usage(stderr);
            return 2;
        }
    }
    bool llama_base = kl && q3_llama_logits_is(kl);
    if ((file && ids_spec) || (!file && !ids_spec && !llama_base) || optind < argc) { usage(stderr); return 2; }
    const char *path = q3_cli_model_path(model);
    int32_t *ids = NULL;
    int n = 0, rc = 1;
    if (path && (!(file || ids_spec) || load_ids(path, file, ids_spec, &ids, &n)))
        rc = evaluate(path, kl, ids, n, &lo, &o);
    free(ids);
    return rc;
}
