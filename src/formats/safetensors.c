/* safetensors reader. Every offset and size in the header is checked against the mapping before
 * a tensor view is handed out, so no later read can leave the file. */
#include "formats/safetensors.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/path.h"
#include "quant/types.h"

#define MAX_HEADER_BYTES (512u << 20)

static bool dtype_from_name(const char *s, q3_type *t) {
    if (!strcmp(s, "BF16")) *t = Q3_TYPE_BF16;
    else if (!strcmp(s, "F16")) *t = Q3_TYPE_F16;
    else if (!strcmp(s, "F32")) *t = Q3_TYPE_F32;
    else if (!strcmp(s, "I32")) *t = Q3_TYPE_I32;
    else if (!strcmp(s, "F8_E4M3")) *t = Q3_TYPE_F8_E4M3;
    else return false;
    return true;
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const q3_tensor_view *)a)->name, ((const q3_tensor_view *)b)->name);
}

static int by_offset(const void *a, const void *b) {
    const q3_tensor_view *x = a, *y = b;
    uintptr_t p = (uintptr_t)x->data, q = (uintptr_t)y->data;
    return p < q ? -1 : p > q;
}

/* Reads one header entry into t; names point into f->names at offset *name_pos. */
static q3_status parse_entry(const char *path, const char *key, json_t *v, const unsigned char *base,
                             size_t data_size, q3_tensor_view *t, q3_error *e) {
    json_t *dtype = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
           *offs = json_object_get(v, "data_offsets");
    if (!json_is_string(dtype) || !json_is_array(shape) || !json_is_array(offs) ||
        json_array_size(offs) != 2)
        return q3_fail(e, Q3_EFORMAT, "%s: tensor %s: header entry lacks dtype, shape or data_offsets",
                       path, key);
    if (!dtype_from_name(json_string_value(dtype), &t->type))
        return q3_fail(e, Q3_EUNSUPPORTED, "%s: tensor %s has dtype %s, not supported (BF16, F16, F32, I32, F8_E4M3)",
                       path, key, json_string_value(dtype));
    size_t nd = json_array_size(shape);
    if (nd > Q3_MAX_DIMS)
        return q3_fail(e, Q3_EFORMAT, "%s: tensor %s has %zu dimensions (at most %d)", path, key, nd,
                       Q3_MAX_DIMS);
    t->n_dims = (int)nd;
    uint64_t numel = 1;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0 || json_integer_value(d) > (1ll << 40))
            return q3_fail(e, Q3_EFORMAT, "%s: tensor %s: bad shape", path, key);
        t->shape[i] = json_integer_value(d);
        /* checked before multiplying: [2^32, 2^32] must not wrap around to 0 elements */
        if (t->shape[i] && numel > (1ull << 42) / (uint64_t)t->shape[i])
            return q3_fail(e, Q3_EFORMAT, "%s: tensor %s: shape too large", path, key);
        numel *= (uint64_t)t->shape[i];
    }
    json_t *b = json_array_get(offs, 0), *en = json_array_get(offs, 1);
    if (!json_is_integer(b) || !json_is_integer(en))
        return q3_fail(e, Q3_EFORMAT, "%s: tensor %s: bad data_offsets", path, key);
    json_int_t begin = json_integer_value(b), end = json_integer_value(en);
    if (begin < 0 || end < begin || (uint64_t)end > data_size)
        return q3_fail(e, Q3_EFORMAT,
                       "%s: tensor %s: data_offsets [%lld, %lld] outside the %zu data bytes", path,
                       key, (long long)begin, (long long)end, data_size);
    uint64_t want = numel * q3_type_info(t->type)->type_size;
    if ((uint64_t)(end - begin) != want)
        return q3_fail(e, Q3_EFORMAT, "%s: tensor %s: %lld bytes stored, shape needs %llu", path, key,
                       (long long)(end - begin), (unsigned long long)want);
    /* The kernels read elements in place: a 2- or 4-byte element at an odd address is undefined
     * behaviour in C (writers pad the header to 8 bytes so that this never happens). */
    size_t elem = q3_type_info(t->type)->type_size;
    if ((uintptr_t)(base + begin) % elem)
        return q3_fail(e, Q3_EFORMAT, "%s: tensor %s: its data (at %lld after the header) is not aligned to its "
                       "%zu-byte elements (a writer pads the header to keep them aligned)", path, key, (long long)begin, elem);
    t->data = base + begin;
    t->nbytes = (size_t)want;
    return Q3_OK;
}

/* The header checks over bytes already mapped; f->map is the caller's. */
static q3_status parse_header(q3_st_file *f, const unsigned char *data, size_t size, const char *path,
                              q3_error *e) {
    f->n_tensors = 0;
    f->tensors = NULL;
    f->names = NULL;
    if (size < 8) return q3_fail(e, Q3_EFORMAT, "%s: truncated: %zu bytes, no header", path, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | data[i];
    if (hlen > size - 8 || hlen > MAX_HEADER_BYTES)
        return q3_fail(e, Q3_EFORMAT, "%s: header length %llu beyond the file's %zu bytes", path,
                       (unsigned long long)hlen, size);
    json_error_t je;
    json_t *root = json_loadb((const char *)data + 8, (size_t)hlen, 0, &je);
    if (!root) return q3_fail(e, Q3_EFORMAT, "%s: header is not JSON: %s", path, je.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return q3_fail(e, Q3_EFORMAT, "%s: header is not a JSON object", path);
    }
    const unsigned char *base = data + 8 + hlen;
    size_t data_size = size - 8 - (size_t)hlen, names_bytes = 0, n = 0;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) continue;
        names_bytes += strlen(key) + 1;
        n++;
    }
    q3_status st = Q3_OK;
    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    f->names = malloc(names_bytes ? names_bytes : 1);
    if (!f->tensors || !f->names) {
        st = q3_fail(e, Q3_ENOMEM, "%s: out of memory for %zu tensors", path, n);
        goto done;
    }
    char *np = f->names;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) continue;
        q3_tensor_view *t = &f->tensors[f->n_tensors];
        if (!json_is_object(v)) {
            st = q3_fail(e, Q3_EFORMAT, "%s: tensor %s: header entry is not an object", path, key);
            goto done;
        }
        if ((st = parse_entry(path, key, v, base, data_size, t, e))) goto done;
        size_t kl = strlen(key) + 1;
        memcpy(np, key, kl);
        t->name = np;
        np += kl;
        f->n_tensors++;
    }
    /* Overlapping tensors mean a corrupt or hostile header. */
    qsort(f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, by_offset);
    for (int i = 1; i < f->n_tensors; i++) {
        const q3_tensor_view *a = &f->tensors[i - 1], *b = &f->tensors[i];
        if ((const unsigned char *)a->data + a->nbytes > (const unsigned char *)b->data) {
            st = q3_fail(e, Q3_EFORMAT, "%s: tensors %s and %s overlap", path, a->name, b->name);
            goto done;
        }
    }
    qsort(f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, by_name);
done:
    json_decref(root);
    if (st) {
        free(f->tensors);
        free(f->names);
        f->tensors = NULL;
        f->names = NULL;
        f->n_tensors = 0;
    }
    return st;
}

q3_status q3_st_parse(q3_st_file *f, const unsigned char *data, size_t size, const char *path,
                      q3_error *e) {
    memset(&f->map, 0, sizeof f->map);
    return parse_header(f, data, size, path, e);
}

q3_status q3_st_open(q3_st_file *f, const char *path, q3_error *e) {
    memset(f, 0, sizeof *f);
    q3_status st = q3_mapfile_open(&f->map, path, e);
    if (st) return st;
    st = parse_header(f, f->map.data, f->map.size, path, e);
    if (st) q3_mapfile_close(&f->map);
    return st;
}

void q3_st_close(q3_st_file *f) {
    free(f->tensors);
    free(f->names);
    q3_mapfile_close(&f->map);
    memset(f, 0, sizeof *f);
}

const q3_tensor_view *q3_st_find(const q3_st_file *f, const char *name) {
    q3_tensor_view key = {.name = name};
    return bsearch(&key, f->tensors, (size_t)f->n_tensors, sizeof key, by_name);
}

/* ---- sharded checkpoints ---- */

static q3_status open_shards(q3_st_checkpoint *c, const char *dir, const char *index_path,
                             q3_error *e) {
    json_error_t je;
    json_t *root = json_load_file(index_path, 0, &je);
    if (!root) return q3_fail(e, Q3_EFORMAT, "%s: not JSON: %s (line %d)", index_path, je.text, je.line);
    json_t *map = json_object_get(root, "weight_map");
    q3_status st = Q3_OK;
    if (!json_is_object(map)) {
        st = q3_fail(e, Q3_EFORMAT, "%s: no weight_map object", index_path);
        goto done;
    }
    /* Distinct shard names, in first-seen order. */
    size_t cap = json_object_size(map);
    const char **shards = calloc(cap ? cap : 1, sizeof *shards);
    c->files = calloc(cap ? cap : 1, sizeof *c->files);
    if (!shards || !c->files) {
        free(shards);
        st = q3_fail(e, Q3_ENOMEM, "%s: out of memory", index_path);
        goto done;
    }
    int n = 0;
    const char *key;
    json_t *v;
    json_object_foreach(map, key, v) {
        if (!json_is_string(v) || strchr(json_string_value(v), '/')) {
            st = q3_fail(e, Q3_EFORMAT, "%s: weight_map[%s] is not a file name", index_path, key);
            break;
        }
        int k = 0;
        while (k < n && strcmp(shards[k], json_string_value(v))) k++;
        if (k == n) shards[n++] = json_string_value(v);
    }
    for (int k = 0; k < n && !st; k++) {
        char path[4096];
        st = q3_pathf(path, sizeof path, e, "%s/%s", dir, shards[k]);
        if (!st) st = q3_st_open(&c->files[k], path, e);
        if (!st) c->n_files++;
    }
    /* Every tensor the index names must be in the shard it names. */
    json_object_foreach(map, key, v) {
        if (st) break;
        for (int k = 0; k < c->n_files; k++) {
            if (strcmp(shards[k], json_string_value(v))) continue;
            if (!q3_st_find(&c->files[k], key))
                st = q3_fail(e, Q3_EFORMAT, "%s: tensor %s is not in %s", index_path, key, shards[k]);
        }
    }
    free(shards);
done:
    json_decref(root);
    return st;
}

q3_status q3_st_checkpoint_open(q3_st_checkpoint *c, const char *dir, q3_error *e) {
    memset(c, 0, sizeof *c);
    char path[4096];
    q3_status st = q3_pathf(path, sizeof path, e, "%s/model.safetensors.index.json", dir);
    if (st) return st;
    FILE *probe = fopen(path, "rb");
    if (probe) {
        fclose(probe);
        st = open_shards(c, dir, path, e);
    } else {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        c->files = calloc(1, sizeof *c->files);
        if (!c->files) return q3_fail(e, Q3_ENOMEM, "%s: out of memory", dir);
        st = q3_st_open(&c->files[0], path, e);
        if (!st) c->n_files = 1;
    }
    if (st) q3_st_checkpoint_close(c);
    return st;
}

void q3_st_checkpoint_close(q3_st_checkpoint *c) {
    for (int i = 0; i < c->n_files; i++) q3_st_close(&c->files[i]);
    free(c->files);
    memset(c, 0, sizeof *c);
}

const q3_tensor_view *q3_st_checkpoint_find(const q3_st_checkpoint *c, const char *name) {
    for (int i = 0; i < c->n_files; i++) {
        const q3_tensor_view *t = q3_st_find(&c->files[i], name);
        if (t) return t;
    }
    return NULL;
}

size_t q3_st_checkpoint_bytes(const q3_st_checkpoint *c) {
    size_t n = 0;
    for (int i = 0; i < c->n_files; i++) n += c->files[i].map.size;
    return n;
}
