/* GGUF reader. A cursor walks the header with bounds checks on every read, so a truncated or
 * hostile file yields an error naming what was being read, never a read past the mapping. */
#include "formats/gguf.h"

#include <stdlib.h>
#include <string.h>
#include "quant/types.h"

#define GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define MAX_COUNT (1ull << 24) /* sanity limit on key, tensor and array counts */

typedef struct cursor {
    const unsigned char *p, *end;
    const char *path;
    q3_error *e;
} cursor;

static q3_status need(cursor *c, uint64_t n, const char *what) {
    if ((uint64_t)(c->end - c->p) < n)
        return q3_fail(c->e, Q3_EFORMAT, "%s: truncated while reading %s", c->path, what);
    return Q3_OK;
}

static q3_status rd(cursor *c, void *dst, size_t n, const char *what) {
    q3_status st = need(c, n, what);
    if (st) return st;
    memcpy(dst, c->p, n);
    c->p += n;
    return Q3_OK;
}

static q3_status rd_str(cursor *c, q3_gguf_str *s, const char *what) {
    q3_status st = rd(c, &s->len, 8, what);
    if (st) return st;
    if ((st = need(c, s->len, what))) return st;
    s->ptr = (const char *)c->p;
    c->p += s->len;
    return Q3_OK;
}

static size_t scalar_size(uint32_t t) {
    static const size_t sz[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < sizeof sz / sizeof *sz ? sz[t] : 0;
}

/* Reads a scalar of type t at p, widened into v. */
static void widen(uint32_t t, const unsigned char *p, q3_gguf_kv *kv) {
    union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
            float f32; uint64_t u64; int64_t i64; double f64; } x;
    memcpy(&x, p, scalar_size(t));
    switch (t) {
    case Q3_GGUF_U8: case Q3_GGUF_BOOL: kv->v.u = x.u8; break;
    case Q3_GGUF_I8: kv->v.i = x.i8; break;
    case Q3_GGUF_U16: kv->v.u = x.u16; break;
    case Q3_GGUF_I16: kv->v.i = x.i16; break;
    case Q3_GGUF_U32: kv->v.u = x.u32; break;
    case Q3_GGUF_I32: kv->v.i = x.i32; break;
    case Q3_GGUF_F32: kv->v.f = x.f32; break;
    case Q3_GGUF_U64: kv->v.u = x.u64; break;
    case Q3_GGUF_I64: kv->v.i = x.i64; break;
    case Q3_GGUF_F64: kv->v.f = x.f64; break;
    }
}

static q3_status read_kv(cursor *c, q3_gguf_kv *kv) {
    q3_gguf_str key;
    q3_status st = rd_str(c, &key, "a metadata key");
    if (st) return st;
    if (!(kv->key = strndup(key.ptr, key.len))) return q3_fail(c->e, Q3_ENOMEM, "out of memory");
    if ((st = rd(c, &kv->type, 4, kv->key))) return st;
    if (kv->type == Q3_GGUF_STRING) {
        if (!(kv->strs = malloc(sizeof *kv->strs))) return q3_fail(c->e, Q3_ENOMEM, "out of memory");
        return rd_str(c, kv->strs, kv->key);
    }
    if (kv->type == Q3_GGUF_ARRAY) {
        if ((st = rd(c, &kv->arr_type, 4, kv->key)) || (st = rd(c, &kv->arr_n, 8, kv->key)))
            return st;
        if (kv->arr_n > MAX_COUNT * 4)
            return q3_fail(c->e, Q3_EFORMAT, "%s: metadata %s: array of %llu elements", c->path,
                           kv->key, (unsigned long long)kv->arr_n);
        if (kv->arr_type == Q3_GGUF_STRING) {
            if (kv->arr_n > (uint64_t)(c->end - c->p) / 8)
                return q3_fail(c->e, Q3_EFORMAT, "%s: truncated while reading %s", c->path, kv->key);
            if (!(kv->strs = malloc((kv->arr_n ? kv->arr_n : 1) * sizeof *kv->strs)))
                return q3_fail(c->e, Q3_ENOMEM, "out of memory");
            for (uint64_t i = 0; i < kv->arr_n; i++)
                if ((st = rd_str(c, &kv->strs[i], kv->key))) return st;
            return Q3_OK;
        }
        size_t es = scalar_size(kv->arr_type);
        if (!es)
            return q3_fail(c->e, Q3_EFORMAT, "%s: metadata %s: array of unknown type %u", c->path,
                           kv->key, kv->arr_type);
        if ((st = need(c, kv->arr_n * es, kv->key))) return st;
        kv->arr_data = c->p;
        c->p += kv->arr_n * es;
        return Q3_OK;
    }
    size_t sz = scalar_size(kv->type);
    if (!sz) return q3_fail(c->e, Q3_EFORMAT, "%s: metadata %s has unknown type %u", c->path, kv->key, kv->type);
    if ((st = need(c, sz, kv->key))) return st;
    widen(kv->type, c->p, kv);
    c->p += sz;
    return Q3_OK;
}

static q3_status read_tensor_info(cursor *c, q3_gguf_tensor *t) {
    q3_gguf_str name;
    uint32_t n_dims, type;
    q3_status st = rd_str(c, &name, "a tensor name");
    if (st) return st;
    if (!(t->name = strndup(name.ptr, name.len))) return q3_fail(c->e, Q3_ENOMEM, "out of memory");
    if ((st = rd(c, &n_dims, 4, t->name))) return st;
    if (n_dims < 1 || n_dims > 4)
        return q3_fail(c->e, Q3_EFORMAT, "%s: tensor %s has %u dimensions", c->path, t->name, n_dims);
    t->n_dims = (int)n_dims;
    uint64_t numel = 1;
    for (int i = 0; i < 4; i++) t->ne[i] = 1;
    for (uint32_t i = 0; i < n_dims; i++) {
        uint64_t d;
        if ((st = rd(c, &d, 8, t->name))) return st;
        /* checked before multiplying: [2^32, 2^32] must not wrap around to 0 elements */
        if (d > (1ull << 40) || (d && numel > (1ull << 42) / d))
            return q3_fail(c->e, Q3_EFORMAT, "%s: tensor %s: dimension too large", c->path, t->name);
        numel *= d;
        t->ne[i] = (int64_t)d;
    }
    if ((st = rd(c, &type, 4, t->name)) || (st = rd(c, &t->offset, 8, t->name))) return st;
    t->type = (q3_type)type;
    const q3_type_traits *tr = t->type < Q3_TYPE_GGML_END ? q3_type_info(t->type) : NULL;
    if (!tr) return q3_fail(c->e, Q3_EUNSUPPORTED, "%s: tensor %s has unknown type %u", c->path, t->name, type);
    if (t->ne[0] % tr->block_size)
        return q3_fail(c->e, Q3_EFORMAT, "%s: tensor %s: row of %lld is not a whole number of %s blocks",
                       c->path, t->name, (long long)t->ne[0], tr->name);
    t->nbytes = (size_t)(numel / (uint64_t)tr->block_size * tr->type_size);
    return Q3_OK;
}

static int by_offset(const void *a, const void *b) {
    const q3_gguf_tensor *x = *(q3_gguf_tensor *const *)a, *y = *(q3_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Tensor data must lie inside the file, aligned, and not overlap. */
static q3_status place_tensors(q3_gguf *g, const unsigned char *data_start, size_t data_size,
                               q3_error *e) {
    for (int64_t i = 0; i < g->n_tensors; i++) {
        q3_gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment)
            return q3_fail(e, Q3_EFORMAT, "%s: tensor %s: offset %llu not aligned to %u", g->path,
                           t->name, (unsigned long long)t->offset, g->alignment);
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return q3_fail(e, Q3_EFORMAT, "%s: tensor %s: bytes [%llu, +%zu) beyond the file's data",
                           g->path, t->name, (unsigned long long)t->offset, t->nbytes);
        t->data = data_start + t->offset;
    }
    q3_gguf_tensor **order = malloc((size_t)(g->n_tensors ? g->n_tensors : 1) * sizeof *order);
    if (!order) return q3_fail(e, Q3_ENOMEM, "out of memory");
    for (int64_t i = 0; i < g->n_tensors; i++) order[i] = &g->tensors[i];
    qsort(order, (size_t)g->n_tensors, sizeof *order, by_offset);
    q3_status st = Q3_OK;
    for (int64_t i = 1; i < g->n_tensors && !st; i++)
        if (order[i - 1]->offset + order[i - 1]->nbytes > order[i]->offset)
            st = q3_fail(e, Q3_EFORMAT, "%s: tensors %s and %s overlap", g->path, order[i - 1]->name,
                         order[i]->name);
    free(order);
    return st;
}

q3_status q3_gguf_parse(q3_gguf *g, const unsigned char *data, size_t size, const char *path,
                        q3_error *e) {
    memset(g, 0, sizeof *g);
    g->path = path;
    g->alignment = 32;
    cursor c = {data, data + size, path, e};
    uint32_t magic;
    q3_status st;
    if ((st = rd(&c, &magic, 4, "the magic"))) return st;
    if (magic != GGUF_MAGIC) return q3_fail(e, Q3_EFORMAT, "%s: not a GGUF file (bad magic)", path);
    if ((st = rd(&c, &g->version, 4, "the version"))) return st;
    if (g->version < 2 || g->version > 3)
        return q3_fail(e, Q3_EUNSUPPORTED, "%s: GGUF version %u (2 and 3 are supported)", path, g->version);
    uint64_t nt, nkv;
    if ((st = rd(&c, &nt, 8, "the tensor count")) || (st = rd(&c, &nkv, 8, "the metadata count")))
        return st;
    /* Each key takes at least 13 bytes of the file (its length, a type, a value byte) and each
     * tensor 24 (name length, dimensions, type, offset): counts past what the file holds are
     * refused before memory is taken for them. */
    uint64_t left = (uint64_t)(c.end - c.p);
    if (nt > MAX_COUNT || nkv > MAX_COUNT || nkv > left / 13 || nt > left / 24)
        return q3_fail(e, Q3_EFORMAT, "%s: implausible counts (%llu tensors, %llu keys) for %llu bytes", path,
                       (unsigned long long)nt, (unsigned long long)nkv, (unsigned long long)left);
    g->kv = calloc(nkv ? nkv : 1, sizeof *g->kv);
    g->tensors = calloc(nt ? nt : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors) return q3_fail(e, Q3_ENOMEM, "%s: out of memory", path);
    for (; g->n_kv < (int64_t)nkv; g->n_kv++)
        if ((st = read_kv(&c, &g->kv[g->n_kv]))) { g->n_kv++; goto fail; }
    const q3_gguf_kv *al = q3_gguf_find_kv(g, "general.alignment");
    if (al) {
        if (al->type != Q3_GGUF_U32 || al->v.u == 0 || (al->v.u & (al->v.u - 1)) || al->v.u > 65536) {
            st = q3_fail(e, Q3_EFORMAT, "%s: general.alignment must be a power of two u32", path);
            goto fail;
        }
        g->alignment = (uint32_t)al->v.u;
    }
    for (; g->n_tensors < (int64_t)nt; g->n_tensors++)
        if ((st = read_tensor_info(&c, &g->tensors[g->n_tensors]))) { g->n_tensors++; goto fail; }
    size_t header = (size_t)(c.p - data), start = (header + g->alignment - 1) / g->alignment * g->alignment;
    if (start > size) start = size;
    if ((st = place_tensors(g, data + start, size - start, e))) goto fail;
    return Q3_OK;
fail:
    q3_gguf_close(g);
    return st;
}

q3_status q3_gguf_open(q3_gguf *g, const char *path, q3_error *e) {
    q3_mapfile map;
    q3_status st = q3_mapfile_open(&map, path, e);
    if (st) return st;
    if ((st = q3_gguf_parse(g, map.data, map.size, map.path, e))) {
        q3_mapfile_close(&map);
        return st;
    }
    g->map = map;
    g->path = g->map.path;
    return Q3_OK;
}

void q3_gguf_close(q3_gguf *g) {
    for (int64_t i = 0; i < g->n_kv; i++) {
        free(g->kv[i].key);
        free(g->kv[i].strs);
    }
    for (int64_t i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->kv);
    free(g->tensors);
    q3_mapfile_close(&g->map);
    memset(g, 0, sizeof *g);
}

const q3_gguf_kv *q3_gguf_find_kv(const q3_gguf *g, const char *key) {
    for (int64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key && strcmp(g->kv[i].key, key) == 0) return &g->kv[i];
    return NULL;
}

const q3_gguf_tensor *q3_gguf_find_tensor(const q3_gguf *g, const char *name) {
    for (int64_t i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0) return &g->tensors[i];
    return NULL;
}

static bool is_int_type(uint32_t t) {
    return t <= Q3_GGUF_I32 || t == Q3_GGUF_BOOL || t == Q3_GGUF_U64 || t == Q3_GGUF_I64;
}
static bool is_signed(uint32_t t) {
    return t == Q3_GGUF_I8 || t == Q3_GGUF_I16 || t == Q3_GGUF_I32 || t == Q3_GGUF_I64;
}

q3_status q3_gguf_get_int(const q3_gguf *g, const char *key, int64_t *out, q3_error *e) {
    const q3_gguf_kv *kv = q3_gguf_find_kv(g, key);
    if (!kv) return q3_fail(e, Q3_EFORMAT, "%s: metadata %s is missing", g->path, key);
    if (!is_int_type(kv->type)) return q3_fail(e, Q3_EFORMAT, "%s: metadata %s is not an integer", g->path, key);
    *out = is_signed(kv->type) ? kv->v.i : (int64_t)kv->v.u;
    return Q3_OK;
}

q3_status q3_gguf_get_float(const q3_gguf *g, const char *key, double *out, q3_error *e) {
    const q3_gguf_kv *kv = q3_gguf_find_kv(g, key);
    if (!kv) return q3_fail(e, Q3_EFORMAT, "%s: metadata %s is missing", g->path, key);
    if (kv->type == Q3_GGUF_F32 || kv->type == Q3_GGUF_F64) *out = kv->v.f;
    else if (is_int_type(kv->type)) *out = is_signed(kv->type) ? (double)kv->v.i : (double)kv->v.u;
    else return q3_fail(e, Q3_EFORMAT, "%s: metadata %s is not a number", g->path, key);
    return Q3_OK;
}

q3_status q3_gguf_get_str(const q3_gguf *g, const char *key, q3_gguf_str *out, q3_error *e) {
    const q3_gguf_kv *kv = q3_gguf_find_kv(g, key);
    if (!kv) return q3_fail(e, Q3_EFORMAT, "%s: metadata %s is missing", g->path, key);
    if (kv->type != Q3_GGUF_STRING) return q3_fail(e, Q3_EFORMAT, "%s: metadata %s is not a string", g->path, key);
    *out = kv->strs[0];
    return Q3_OK;
}

int64_t q3_gguf_arr_int(const q3_gguf_kv *kv, uint64_t i) {
    q3_gguf_kv x = {.type = kv->arr_type};
    size_t es = scalar_size(kv->arr_type);
    widen(kv->arr_type, (const unsigned char *)kv->arr_data + i * es, &x);
    if (kv->arr_type == Q3_GGUF_F32 || kv->arr_type == Q3_GGUF_F64) return (int64_t)x.v.f;
    return is_signed(kv->arr_type) ? x.v.i : (int64_t)x.v.u;
}

double q3_gguf_arr_float(const q3_gguf_kv *kv, uint64_t i) {
    q3_gguf_kv x = {.type = kv->arr_type};
    size_t es = scalar_size(kv->arr_type);
    widen(kv->arr_type, (const unsigned char *)kv->arr_data + i * es, &x);
    if (kv->arr_type == Q3_GGUF_F32 || kv->arr_type == Q3_GGUF_F64) return x.v.f;
    return is_signed(kv->arr_type) ? (double)x.v.i : (double)x.v.u;
}
