/* q3moe imatrix: an importance matrix for the i-quants from a model and a text, in llama.cpp's
 * imatrix GGUF format (llama-quantize reads it; `q3moe convert --imatrix` reads it and
 * llama-imatrix's). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/commands.h"
#include "cli/common.h"
#include "eval/imatrix.h"
#include "text/tokenizer.h"

static void usage(FILE *f) {
    fprintf(f, "usage: q3moe imatrix [-m MODEL] -f TEXT_FILE -o IMATRIX.gguf [--ctx N] [--chunks N] [-t THREADS]\n"
               "Runs the model over the text in chunks of --ctx tokens (default 512) and writes, for every\n"
               "weight matrix, the summed squares of its inputs: what `q3moe convert --imatrix` (and\n"
               "llama-quantize --imatrix) fit the i-quants to.\n");
}

static void show(void *ctx, int done, int total) {
    (void)ctx;
    fprintf(stderr, "\rimatrix: chunk %d/%d", done, total);
    if (done == total) fputc('\n', stderr);
}

/* The text's token ids, by the model's tokenizer. */
static bool load_ids(const char *model_path, const char *text_file, int32_t **ids, int *n) {
    size_t len;
    char *text = q3_cli_read_file(text_file, &len);
    if (!text) return false;
    q3_error e = {0};
    q3_tokenizer *tok = NULL;
    bool ok = !q3_tok_load(&tok, model_path, &e) && !q3_tok_encode(tok, text, len, false, ids, n, &e);
    if (!ok) fprintf(stderr, "q3moe imatrix: %s\n", e.msg);
    q3_tok_free(tok);
    free(text);
    return ok;
}

int cmd_imatrix(int argc, char **argv) {
    enum { O_CTX = 600, O_CHUNKS };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"file", required_argument, 0, 'f'},
        {"out", required_argument, 0, 'o'},   {"ctx", required_argument, 0, O_CTX},
        {"chunks", required_argument, 0, O_CHUNKS}, {"threads", required_argument, 0, 't'},
        {"help", no_argument, 0, 'h'},        {0, 0, 0, 0}};
    const char *model = NULL, *file = NULL, *out = NULL;
    long ctx = 512, chunks = 0, threads = 0;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "m:f:o:t:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'm': model = optarg; break;
        case 'f': file = optarg; break;
        case 'o': out = optarg; break;
        case O_CTX: if (!q3_cli_parse_int(optarg, "--ctx", 2, 1 << 20, &ctx)) return 2; break;
        case O_CHUNKS: if (!q3_cli_parse_int(optarg, "--chunks", 1, 1 << 20, &chunks)) return 2; break;
        case 't': if (!q3_cli_parse_int(optarg, "--threads", 1, 1024, &threads)) return 2; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!file || !out || optind < argc) {
        usage(stderr);
        return 2;
    }
    const char *path = q3_cli_model_path(model);
    int32_t *ids = NULL;
    int n = 0, rc = 1;
    q3_model *m = NULL;
    q3_imatrix im = {0};
    q3_error e = {0};
    if (!path || !load_ids(path, file, &ids, &n)) goto done;
    const char *base = strrchr(file, '/');
    q3_imatrix_run run = {(int)ctx, (int)chunks, (int)threads, base ? base + 1 : file, show, NULL};
    if (q3_model_load(&m, path, NULL, &e) || q3_imatrix_collect(m, ids, n, &run, &im, &e) ||
        q3_imatrix_save(&im, out, &e)) {
        fprintf(stderr, "q3moe imatrix: %s\n", e.msg);
        goto done;
    }
    fprintf(stderr, "wrote %s: %d matrices, %d chunks of %ld tokens\n", out, im.n_entries, im.chunk_count, ctx);
    rc = 0;
done:
    free(ids);
    q3_model_free(m);
    q3_imatrix_free(&im);
    return rc;
}
