/* Importance matrices (see imatrix.h): accumulation, and llama.cpp's two file formats. */
#include "formats/imatrix.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "formats/gguf.h"
#include "quant/types.h"

/* ---- the statistics ---- */

static q3_imatrix_entry *find(const q3_imatrix *m, const char *name) {
    for (int i = 0; i < m->n_entries; i++)
        if (strcmp(m->entries[i].name, name) == 0) return &m->entries[i];
    return NULL;
}

/* A new zeroed entry at the end of m->entries. */
static q3_status add_entry(q3_imatrix *m, const char *name, int64_t n_per_row, int n_mats, q3_imatrix_entry **out,
                           q3_error *e) {
    if (m->n_entries == m->cap) {
        int cap = m->cap ? 2 * m->cap : 64;
        q3_imatrix_entry *grown = realloc(m->entries, (size_t)cap * sizeof *grown);
        if (!grown) return q3_fail(e, Q3_ENOMEM, "imatrix: out of memory");
        m->entries = grown;
        m->cap = cap;
    }
    q3_imatrix_entry *en = &m->entries[m->n_entries];
    *en = (q3_imatrix_entry){strdup(name), n_per_row, n_mats, calloc((size_t)(n_per_row * n_mats), sizeof(double)),
                             calloc((size_t)n_mats, sizeof(int64_t))};
    if (!en->name || !en->sums || !en->counts) {
        free(en->name), free(en->sums), free(en->counts);
        return q3_fail(e, Q3_ENOMEM, "imatrix: out of memory");
    }
    m->n_entries++;
    *out = en;
    return Q3_OK;
}

q3_status q3_imatrix_entry_get(q3_imatrix *m, const char *name, int64_t n_per_row, int n_mats,
                               q3_imatrix_entry **out, q3_error *e) {
    q3_imatrix_entry *en = find(m, name);
    if (!en) return add_entry(m, name, n_per_row, n_mats, out, e);
    if (en->n_per_row != n_per_row || en->n_mats != n_mats)
        return q3_fail(e, Q3_EFORMAT, "imatrix: tensor %s has %lld x %d statistics, not %lld x %d", name,
                       (long long)en->n_per_row, en->n_mats, (long long)n_per_row, n_mats);
    *out = en;
    return Q3_OK;
}

void q3_imatrix_add(q3_imatrix_entry *en, int mat, const float *x, int n, int64_t stride) {
    double *sum = en->sums + (size_t)mat * en->n_per_row;
    for (int t = 0; t < n; t++) {
        const float *row = x + (size_t)t * stride;
        for (int64_t j = 0; j < en->n_per_row; j++) sum[j] += (double)row[j] * row[j];
    }
    en->counts[mat] += n;
}

bool q3_imatrix_importance(const q3_imatrix *m, const char *name, int mat, int64_t n_per_row, float *out) {
    const q3_imatrix_entry *en = find(m, name);
    if (!en || mat < 0 || n_per_row < 1) return false;
    /* A legacy file keeps stacked experts as one long row with one count. */
    bool flat = en->n_mats == 1 && en->n_per_row % n_per_row == 0 && mat < en->n_per_row / n_per_row;
    if (!flat && (en->n_per_row != n_per_row || mat >= en->n_mats)) return false;
    const double *sum = en->sums + (size_t)mat * n_per_row;
    int64_t count = en->counts[flat ? 0 : mat];
    for (int64_t j = 0; j < n_per_row; j++) out[j] = count > 0 ? (float)(sum[j] / (double)count) : 1.0f;
    return true;
}

void q3_imatrix_free(q3_imatrix *m) {
    for (int i = 0; i < m->n_entries; i++) {
        free(m->entries[i].name);
        free(m->entries[i].sums);
        free(m->entries[i].counts);
    }
    free(m->entries);
    free(m->dataset);
    memset(m, 0, sizeof *m);
}

/* ---- GGUF ---- */

/* Each entry's sums and counts as f32 arrays (two per entry), alive until the file is written. */
static q3_status add_tensors(q3_gguf_writer *w, const q3_imatrix *m, float **arrays, q3_error *e) {
    for (int i = 0; i < m->n_entries; i++) {
        const q3_imatrix_entry *en = &m->entries[i];
        size_t n = (size_t)(en->n_per_row * en->n_mats);
        float *sums = arrays[2 * i] = malloc(n * sizeof(float));
        float *counts = arrays[2 * i + 1] = malloc((size_t)en->n_mats * sizeof(float));
        if (!sums || !counts) return q3_fail(e, Q3_ENOMEM, "imatrix: out of memory");
        for (size_t j = 0; j < n; j++) sums[j] = (float)en->sums[j];
        for (int j = 0; j < en->n_mats; j++) counts[j] = (float)en->counts[j];
        char name[512];
        snprintf(name, sizeof name, "%s.in_sum2", en->name);
        q3_status st = q3_gguf_add_tensor(w, name, Q3_TYPE_F32, 2, (int64_t[]){en->n_per_row, en->n_mats}, sums, NULL,
                                          NULL, e);
        snprintf(name, sizeof name, "%s.counts", en->name);
        if (!st) st = q3_gguf_add_tensor(w, name, Q3_TYPE_F32, 2, (int64_t[]){1, en->n_mats}, counts, NULL, NULL, e);
        if (st) return st;
    }
    return Q3_OK;
}

q3_status q3_imatrix_save(const q3_imatrix *m, const char *path, q3_error *e) {
    q3_gguf_writer *w;
    q3_status st = q3_gguf_writer_new(&w, e);
    if (st) return st;
    float **arrays = calloc((size_t)m->n_entries * 2 + 1, sizeof *arrays);
    const char *dataset = m->dataset ? m->dataset : "";
    q3_gguf_str datasets = {dataset, strlen(dataset)};
    if (!arrays || q3_gguf_set_str(w, "general.type", "imatrix") ||
        q3_gguf_set_arr_str(w, "imatrix.datasets", &datasets, m->dataset ? 1 : 0) ||
        q3_gguf_set_u32(w, "imatrix.chunk_count", (uint32_t)m->chunk_count) ||
        q3_gguf_set_u32(w, "imatrix.chunk_size", (uint32_t)m->chunk_size))
        st = q3_fail(e, Q3_ENOMEM, "imatrix: out of memory");
    if (!st) st = add_tensors(w, m, arrays, e);
    if (!st) st = q3_gguf_write(w, path, NULL, NULL, e);
    for (int i = 0; arrays && i < 2 * m->n_entries; i++) free(arrays[i]);
    free(arrays);
    q3_gguf_writer_free(w);
    return st;
}

/* The entry of one .in_sum2 tensor and its .counts partner. */
static q3_status load_gguf_entry(q3_imatrix *m, const q3_gguf *g, const q3_gguf_tensor *sums, q3_error *e) {
    char name[512], counts_name[600];
    size_t len = strlen(sums->name) - strlen(".in_sum2");
    snprintf(name, sizeof name, "%.*s", (int)len, sums->name);
    snprintf(counts_name, sizeof counts_name, "%s.counts", name);
    const q3_gguf_tensor *counts = q3_gguf_find_tensor(g, counts_name);
    if (!counts) return q3_fail(e, Q3_EFORMAT, "%s: tensor %s has no %s", g->path, sums->name, counts_name);
    int64_t n_mats = 1;
    for (int d = 0; d < counts->n_dims; d++) n_mats *= counts->ne[d];
    if (sums->type != Q3_TYPE_F32 || counts->type != Q3_TYPE_F32 || n_mats < 1 || n_mats > 1 << 20 ||
        sums->ne[0] < 1 || sums->nbytes != (size_t)(sums->ne[0] * n_mats) * sizeof(float))
        return q3_fail(e, Q3_EFORMAT, "%s: tensors %s and %s: not F32 sums [n, mats] and counts [mats]", g->path,
                       sums->name, counts_name);
    if (find(m, name)) return q3_fail(e, Q3_EFORMAT, "%s: tensor %s appears twice", g->path, sums->name);
    q3_imatrix_entry *en;
    q3_status st = add_entry(m, name, sums->ne[0], (int)n_mats, &en, e);
    if (st) return st;
    for (int64_t j = 0; j < sums->ne[0] * n_mats; j++) {
        float v;
        memcpy(&v, (const char *)sums->data + 4 * j, 4);
        en->sums[j] = v;
    }
    for (int64_t j = 0; j < n_mats; j++) {
        float c;
        memcpy(&c, (const char *)counts->data + 4 * j, 4);
        if (!(c >= 0 && c < 9e18f)) return q3_fail(e, Q3_EFORMAT, "%s: tensor %s: bad count", g->path, counts_name);
        en->counts[j] = (int64_t)((double)c + 0.5); /* in float, c + 0.5f rounds odd counts past 2^23 up */
    }
    return Q3_OK;
}

static q3_status load_gguf(q3_imatrix *m, const char *path, q3_error *e) {
    q3_gguf g;
    q3_status st = q3_gguf_open(&g, path, e);
    if (st) return st;
    for (int64_t i = 0; !st && i < g.n_tensors; i++) {
        const char *name = g.tensors[i].name;
        size_t len = strlen(name);
        if (len > 8 && strcmp(name + len - 8, ".in_sum2") == 0) st = load_gguf_entry(m, &g, &g.tensors[i], e);
    }
    const q3_gguf_kv *datasets = q3_gguf_find_kv(&g, "imatrix.datasets");
    if (!st && datasets && datasets->type == Q3_GGUF_ARRAY && datasets->arr_type == Q3_GGUF_STRING && datasets->arr_n)
        m->dataset = strndup(datasets->strs[0].ptr, datasets->strs[0].len);
    int64_t v;
    q3_error ignored;
    if (!st && !q3_gguf_get_int(&g, "imatrix.chunk_count", &v, &ignored)) m->chunk_count = (int)v;
    if (!st && !q3_gguf_get_int(&g, "imatrix.chunk_size", &v, &ignored)) m->chunk_size = (int)v;
    if (!st && m->n_entries == 0) st = q3_fail(e, Q3_EFORMAT, "%s: no importance matrix tensors (*.in_sum2)", path);
    q3_gguf_close(&g);
    return st;
}

/* ---- llama.cpp's legacy binary format ---- */

/* int32 entry count; per entry int32 name length, the name, int32 ncall (chunks), int32 value
 * count, the float values (each a mean square times ncall); then optionally int32 chunk count,
 * int32 length and the dataset's name. Stacked experts come as one row of n_per_row * experts. */
static q3_status load_legacy_entry(q3_imatrix *m, FILE *f, long file_size, const char *path, q3_error *e) {
    int32_t len, ncall, nval;
    char name[512];
    if (fread(&len, 4, 1, f) != 1 || len <= 0 || len >= (int32_t)sizeof name || fread(name, 1, (size_t)len, f) != (size_t)len)
        return q3_fail(e, Q3_EFORMAT, "%s: truncated or bad entry name", path);
    name[len] = 0;
    if (strlen(name) != (size_t)len) return q3_fail(e, Q3_EFORMAT, "%s: an entry name holds a NUL byte", path);
    if (fread(&ncall, 4, 1, f) != 1 || fread(&nval, 4, 1, f) != 1 || ncall < 0 || nval < 1 || nval > 1 << 28)
        return q3_fail(e, Q3_EFORMAT, "%s: entry %s: bad counts", path, name);
    /* The values must be in the file before memory is taken for them: a count is not a promise. */
    if ((int64_t)nval * 4 > file_size - ftell(f))
        return q3_fail(e, Q3_EFORMAT, "%s: entry %s: %d values, but only %ld bytes are left", path, name, nval,
                       file_size - ftell(f));
    if (find(m, name)) return q3_fail(e, Q3_EFORMAT, "%s: entry %s appears twice", path, name);
    float *values = malloc((size_t)nval * sizeof *values);
    q3_imatrix_entry *en;
    q3_status st = values ? add_entry(m, name, nval, 1, &en, e) : q3_fail(e, Q3_ENOMEM, "%s: out of memory", path);
    if (!st && fread(values, sizeof *values, (size_t)nval, f) != (size_t)nval)
        st = q3_fail(e, Q3_EFORMAT, "%s: entry %s: truncated values", path, name);
    for (int32_t j = 0; !st && j < nval; j++) en->sums[j] = values[j];
    if (!st) en->counts[0] = ncall;
    free(values);
    return st;
}

static q3_status load_legacy(q3_imatrix *m, FILE *f, const char *path, q3_error *e) {
    long file_size = fseek(f, 0, SEEK_END) ? -1 : ftell(f);
    rewind(f);
    int32_t n;
    if (file_size < 0 || fread(&n, 4, 1, f) != 1 || n < 1 || n > 1 << 20)
        return q3_fail(e, Q3_EFORMAT, "%s: not an imatrix file", path);
    for (int32_t i = 0; i < n; i++) {
        q3_status st = load_legacy_entry(m, f, file_size, path, e);
        if (st) return st;
    }
    int32_t chunks, len;
    if (fread(&chunks, 4, 1, f) == 1) m->chunk_count = chunks;
    if (fread(&len, 4, 1, f) == 1 && len > 0 && len < 4096) {
        m->dataset = calloc((size_t)len + 1, 1);
        if (m->dataset && fread(m->dataset, 1, (size_t)len, f) != (size_t)len) m->dataset[0] = 0;
    }
    return Q3_OK;
}

q3_status q3_imatrix_load(q3_imatrix *m, const char *path, q3_error *e) {
    FILE *f = fopen(path, "rb");
    if (!f) return q3_fail(e, Q3_EIO, "%s: cannot open", path);
    char magic[4] = {0};
    size_t got = fread(magic, 1, 4, f);
    q3_status st;
    if (got == 4 && memcmp(magic, "GGUF", 4) == 0) {
        fclose(f);
        st = load_gguf(m, path, e);
    } else {
        st = load_legacy(m, f, path, e);
        fclose(f);
    }
    if (st) q3_imatrix_free(m);
    return st;
}
