/* Reading llama-perplexity's --kl-divergence-base files (the layout is in llama_logits.h). The
 * file is mapped; every field is read with memcpy, as its rows are only 2-byte aligned when the
 * vocabulary is odd. */
#include "formats/llama_logits.h"

#include <stdio.h>
#include <string.h>

static const char MAGIC[8] = {'_', 'l', 'o', 'g', 'i', 't', 's', '_'};

bool q3_llama_logits_is(const char *path) {
    char head[8];
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    bool is = fread(head, 1, 8, f) == 8 && !memcmp(head, MAGIC, 8);
    fclose(f);
    return is;
}

static int32_t read_i32(const unsigned char *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

q3_status q3_llama_logits_open(q3_llama_logits *f, const char *path, q3_error *e) {
    memset(f, 0, sizeof *f);
    q3_status st = q3_mapfile_open(&f->map, path, e);
    if (st) return st;
    const unsigned char *d = f->map.data;
    if (f->map.size < 20 || memcmp(d, MAGIC, 8)) {
        q3_llama_logits_close(f);
        return q3_fail(e, Q3_EFORMAT, "%s: not a llama-perplexity log-probability file (no _logits_ magic)", path);
    }
    f->ctx = read_i32(d + 8), f->vocab = read_i32(d + 12), f->chunks = read_i32(d + 16);
    if (f->ctx < 4 || f->ctx > (1 << 24) || f->vocab < 2 || f->vocab > (1 << 24) || f->chunks < 1 ||
        f->chunks > (1 << 24)) {
        q3_status bad = q3_fail(e, Q3_EFORMAT, "%s: implausible header: n_ctx %d, n_vocab %d, n_chunk %d", path,
                                f->ctx, f->vocab, f->chunks);
        q3_llama_logits_close(f);
        return bad;
    }
    f->rows_per_chunk = f->ctx - 1 - f->ctx / 2;
    f->row_u16 = 2 * (((size_t)f->vocab + 1) / 2) + 4;
    size_t tokens = (size_t)f->ctx * f->chunks * 4, rows, want = 0;
    bool overflow = __builtin_mul_overflow((size_t)f->chunks * f->rows_per_chunk, f->row_u16 * 2, &rows) ||
                    __builtin_add_overflow(20 + tokens, rows, &want);
    if (overflow || f->map.size != want) {
        q3_status bad = q3_fail(e, Q3_EFORMAT, "%s: %zu bytes, but its header (n_ctx %d, n_vocab %d, n_chunk %d) "
                                "makes %zu", path, f->map.size, f->ctx, f->vocab, f->chunks, want);
        q3_llama_logits_close(f);
        return bad;
    }
    f->tokens = d + 20;
    f->rows = d + 20 + tokens;
    return Q3_OK;
}

void q3_llama_logits_close(q3_llama_logits *f) {
    q3_mapfile_close(&f->map);
    memset(f, 0, sizeof *f);
}

int32_t q3_llama_logits_token(const q3_llama_logits *f, size_t i) { return read_i32(f->tokens + 4 * i); }

int q3_llama_logits_row(const q3_llama_logits *f, int c, int r, float *lp) {
    const unsigned char *row = f->rows + ((size_t)c * f->rows_per_chunk + r) * f->row_u16 * 2;
    float scale, min_log_prob;
    memcpy(&scale, row, 4);
    memcpy(&min_log_prob, row + 4, 4);
    row += 8;
    int best = 0;
    uint16_t best_q = 0;
    for (int i = 0; i < f->vocab; i++) {
        uint16_t q;
        memcpy(&q, row + 2 * (size_t)i, 2);
        lp[i] = scale * q + min_log_prob;
        if (i == 0 || q > best_q) best = i, best_q = q;
    }
    return best;
}
