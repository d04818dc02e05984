/* GGUF writer. Metadata is serialised into a growing buffer as it is set; tensors are laid out
 * with 32-byte alignment, and their bytes are copied or produced one at a time at write time. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/buf.h"
#include "base/path.h"
#include "formats/gguf.h"
#include "quant/types.h"

#define ALIGNMENT 32

typedef struct kv_entry {
    char *key;
    q3_buf value; /* type id + encoded value */
} kv_entry;

typedef struct tensor_entry {
    char *name;
    q3_type type;
    int n_dims;
    int64_t ne[4];
    size_t nbytes;
    uint64_t offset;
    const void *data;
    q3_gguf_fill_fn fill;
    void *ctx;
} tensor_entry;

struct q3_gguf_writer {
    kv_entry *kv;
    int n_kv, cap_kv;
    tensor_entry *tensors;
    int n_tensors, cap_tensors;
    uint64_t data_size;
};

static q3_status put(q3_buf *b, const void *p, size_t n) {
    q3_buf_put(b, p, n);
    return b->failed ? Q3_ENOMEM : Q3_OK;
}

static q3_status put_u32(q3_buf *b, uint32_t v) { return put(b, &v, 4); }
static q3_status put_u64(q3_buf *b, uint64_t v) { return put(b, &v, 8); }
static q3_status put_str(q3_buf *b, const char *s, uint64_t len) {
    return put_u64(b, len) ? Q3_ENOMEM : put(b, s, len);
}

q3_status q3_gguf_writer_new(q3_gguf_writer **out, q3_error *e) {
    *out = calloc(1, sizeof **out);
    return *out ? Q3_OK : q3_fail(e, Q3_ENOMEM, "gguf writer: out of memory");
}

void q3_gguf_writer_free(q3_gguf_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        q3_buf_free(&w->kv[i].value);
    }
    for (int i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->kv);
    free(w->tensors);
    free(w);
}

/* The entry for key, emptied for a new value; a new entry if the key is new. */
static q3_buf *slot(q3_gguf_writer *w, const char *key) {
    for (int i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, key) == 0) {
            w->kv[i].value.len = 0;
            return &w->kv[i].value;
        }
    if (w->n_kv == w->cap_kv) {
        int cap = w->cap_kv ? w->cap_kv * 2 : 32;
        kv_entry *p = realloc(w->kv, (size_t)cap * sizeof *p);
        if (!p) return NULL;
        w->kv = p;
        w->cap_kv = cap;
    }
    kv_entry *k = &w->kv[w->n_kv];
    memset(k, 0, sizeof *k);
    if (!(k->key = strdup(key))) return NULL;
    w->n_kv++;
    return &k->value;
}

static q3_status set_scalar(q3_gguf_writer *w, const char *key, uint32_t type, const void *v, size_t n) {
    q3_buf *b = slot(w, key);
    if (!b || put_u32(b, type) || put(b, v, n)) return Q3_ENOMEM;
    return Q3_OK;
}

q3_status q3_gguf_set_u32(q3_gguf_writer *w, const char *key, uint32_t v) {
    return set_scalar(w, key, Q3_GGUF_U32, &v, 4);
}
q3_status q3_gguf_set_i32(q3_gguf_writer *w, const char *key, int32_t v) {
    return set_scalar(w, key, Q3_GGUF_I32, &v, 4);
}
q3_status q3_gguf_set_f32(q3_gguf_writer *w, const char *key, float v) {
    return set_scalar(w, key, Q3_GGUF_F32, &v, 4);
}
q3_status q3_gguf_set_bool(q3_gguf_writer *w, const char *key, bool v) {
    uint8_t b = v;
    return set_scalar(w, key, Q3_GGUF_BOOL, &b, 1);
}
q3_status q3_gguf_set_str(q3_gguf_writer *w, const char *key, const char *v) {
    q3_buf *b = slot(w, key);
    if (!b || put_u32(b, Q3_GGUF_STRING) || put_str(b, v, strlen(v))) return Q3_ENOMEM;
    return Q3_OK;
}

static q3_status set_array(q3_gguf_writer *w, const char *key, uint32_t type, const void *v,
                           uint64_t n, size_t es) {
    q3_buf *b = slot(w, key);
    if (!b || put_u32(b, Q3_GGUF_ARRAY) || put_u32(b, type) || put_u64(b, n) || put(b, v, n * es))
        return Q3_ENOMEM;
    return Q3_OK;
}
q3_status q3_gguf_set_arr_i32(q3_gguf_writer *w, const char *key, const int32_t *v, uint64_t n) {
    return set_array(w, key, Q3_GGUF_I32, v, n, 4);
}
q3_status q3_gguf_set_arr_f32(q3_gguf_writer *w, const char *key, const float *v, uint64_t n) {
    return set_array(w, key, Q3_GGUF_F32, v, n, 4);
}
q3_status q3_gguf_set_arr_str(q3_gguf_writer *w, const char *key, const q3_gguf_str *v, uint64_t n) {
    q3_buf *b = slot(w, key);
    if (!b || put_u32(b, Q3_GGUF_ARRAY) || put_u32(b, Q3_GGUF_STRING) || put_u64(b, n)) return Q3_ENOMEM;
    for (uint64_t i = 0; i < n; i++)
        if (put_str(b, v[i].ptr, v[i].len)) return Q3_ENOMEM;
    return Q3_OK;
}

static size_t vsize(uint32_t t) {
    static const size_t sz[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < sizeof sz / sizeof *sz ? sz[t] : 0;
}

q3_status q3_gguf_copy_kv(q3_gguf_writer *w, const q3_gguf_kv *kv) {
    if (kv->type == Q3_GGUF_STRING) {
        q3_buf *b = slot(w, kv->key);
        if (!b || put_u32(b, Q3_GGUF_STRING) || put_str(b, kv->strs[0].ptr, kv->strs[0].len))
            return Q3_ENOMEM;
        return Q3_OK;
    }
    if (kv->type == Q3_GGUF_ARRAY) {
        if (kv->arr_type == Q3_GGUF_STRING) return q3_gguf_set_arr_str(w, kv->key, kv->strs, kv->arr_n);
        return set_array(w, kv->key, kv->arr_type, kv->arr_data, kv->arr_n, vsize(kv->arr_type));
    }
    /* Scalars: re-narrow the widened value to the stored width (little-endian). */
    if (kv->type == Q3_GGUF_F32) return q3_gguf_set_f32(w, kv->key, (float)kv->v.f);
    return set_scalar(w, kv->key, kv->type, &kv->v, vsize(kv->type));
}

q3_status q3_gguf_add_tensor(q3_gguf_writer *w, const char *name, q3_type type, int n_dims,
                             const int64_t *ne, const void *data, q3_gguf_fill_fn fill, void *ctx,
                             q3_error *e) {
    const q3_type_traits *tr = q3_type_info(type);
    if (!tr) return q3_fail(e, Q3_EINVAL, "gguf writer: tensor %s: unknown type %d", name, (int)type);
    if (n_dims < 1 || n_dims > 4) return q3_fail(e, Q3_EINVAL, "gguf writer: tensor %s: %d dims", name, n_dims);
    if (ne[0] % tr->block_size)
        return q3_fail(e, Q3_EINVAL, "gguf writer: tensor %s: row of %lld is not whole %s blocks", name,
                       (long long)ne[0], tr->name);
    if (w->n_tensors == w->cap_tensors) {
        int cap = w->cap_tensors ? w->cap_tensors * 2 : 64;
        tensor_entry *p = realloc(w->tensors, (size_t)cap * sizeof *p);
        if (!p) return q3_fail(e, Q3_ENOMEM, "gguf writer: out of memory");
        w->tensors = p;
        w->cap_tensors = cap;
    }
    tensor_entry *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) return q3_fail(e, Q3_ENOMEM, "gguf writer: out of memory");
    t->type = type;
    t->n_dims = n_dims;
    uint64_t numel = 1;
    for (int i = 0; i < 4; i++) {
        t->ne[i] = i < n_dims ? ne[i] : 1;
        numel *= (uint64_t)t->ne[i];
    }
    t->nbytes = (size_t)(numel / (uint64_t)tr->block_size * tr->type_size);
    t->offset = w->data_size;
    w->data_size += (t->nbytes + ALIGNMENT - 1) / ALIGNMENT * ALIGNMENT;
    t->data = data;
    t->fill = fill;
    t->ctx = ctx;
    w->n_tensors++;
    return Q3_OK;
}

static q3_status write_header(q3_gguf_writer *w, FILE *f) {
    q3_buf h = {0};
    q3_status st = Q3_ENOMEM;
    if (put_u32(&h, 0x46554747u) || put_u32(&h, 3) || put_u64(&h, (uint64_t)w->n_tensors) ||
        put_u64(&h, (uint64_t)w->n_kv))
        goto done;
    for (int i = 0; i < w->n_kv; i++)
        if (put_str(&h, w->kv[i].key, strlen(w->kv[i].key)) || put(&h, w->kv[i].value.data, w->kv[i].value.len))
            goto done;
    for (int i = 0; i < w->n_tensors; i++) {
        tensor_entry *t = &w->tensors[i];
        if (put_str(&h, t->name, strlen(t->name)) || put_u32(&h, (uint32_t)t->n_dims)) goto done;
        for (int d = 0; d < t->n_dims; d++)
            if (put_u64(&h, (uint64_t)t->ne[d])) goto done;
        if (put_u32(&h, (uint32_t)t->type) || put_u64(&h, t->offset)) goto done;
    }
    static const unsigned char zeros[ALIGNMENT];
    if (put(&h, zeros, (ALIGNMENT - h.len % ALIGNMENT) % ALIGNMENT)) goto done;
    st = fwrite(h.data, 1, h.len, f) == h.len ? Q3_OK : Q3_EIO;
done:
    q3_buf_free(&h);
    return st;
}

q3_status q3_gguf_write(q3_gguf_writer *w, const char *path,
                        void (*progress)(void *ctx, int done, int total), void *progress_ctx,
                        q3_error *e) {
    /* general.alignment states what we do, so any reader agrees. */
    if (q3_gguf_set_u32(w, "general.alignment", ALIGNMENT)) return q3_fail(e, Q3_ENOMEM, "out of memory");
    char tmp[4096];
    q3_status st = q3_pathf(tmp, sizeof tmp, e, "%s.tmp", path);
    if (st) return st;
    FILE *f = fopen(tmp, "wb");
    if (!f) return q3_fail(e, Q3_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    st = write_header(w, f);
    if (st) {
        q3_fail(e, st, "%s: cannot write the header", tmp);
        goto fail;
    }
    static const unsigned char zeros[ALIGNMENT];
    for (int i = 0; i < w->n_tensors; i++) {
        tensor_entry *t = &w->tensors[i];
        void *scratch = NULL;
        const void *bytes = t->data;
        if (!bytes) {
            if (!(scratch = malloc(t->nbytes ? t->nbytes : 1))) {
                st = q3_fail(e, Q3_ENOMEM, "%s: out of memory for tensor %s", tmp, t->name);
                goto fail;
            }
            if ((st = t->fill(t->ctx, i, scratch, t->nbytes, e))) {
                free(scratch);
                goto fail;
            }
            bytes = scratch;
        }
        size_t pad = (ALIGNMENT - t->nbytes % ALIGNMENT) % ALIGNMENT;
        bool ok = fwrite(bytes, 1, t->nbytes, f) == t->nbytes && fwrite(zeros, 1, pad, f) == pad;
        free(scratch);
        if (!ok) {
            st = q3_fail(e, Q3_EIO, "%s: write failed at tensor %s: %s", tmp, t->name, strerror(errno));
            goto fail;
        }
        if (progress) progress(progress_ctx, i + 1, w->n_tensors);
    }
    if (fclose(f) != 0) {
        f = NULL;
        st = q3_fail(e, Q3_EIO, "%s: write failed: %s", tmp, strerror(errno));
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        remove(tmp);
        return q3_fail(e, Q3_EIO, "%s: cannot rename into place: %s", path, strerror(errno));
    }
    return Q3_OK;
fail:
    if (f) fclose(f);
    remove(tmp);
    return st;
}
