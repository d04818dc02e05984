/* Generation defaults from generation_config.json (Hugging Face) and general.sampling.* (GGUF).
 * Values are read into a copy and checked as a request's would be; the caller's q3_sampling
 * changes only when the whole file is good. */
#include "text/genconfig.h"
#include "base/path.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define KEY_TEMP "general.sampling.temp"
#define KEY_TOP_K "general.sampling.top_k"
#define KEY_TOP_P "general.sampling.top_p"
#define KEY_MIN_P "general.sampling.min_p"
#define KEY_PENALTY_REPEAT "general.sampling.penalty_repeat"
#define KEY_PENALTY_LAST_N "general.sampling.penalty_last_n"

/* ---- generation_config.json ---- */

/* A member absent or null leaves *out as it is. */
static q3_status json_float(const json_t *root, const char *key, const char *path, float *out,
                            q3_error *e) {
    const json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return Q3_OK;
    if (!json_is_number(v)) return q3_fail(e, Q3_EFORMAT, "%s: %s is not a number", path, key);
    *out = (float)json_number_value(v);
    return Q3_OK;
}

/* An integer, also when written as a whole real (20.0). */
static q3_status json_int(const json_t *root, const char *key, const char *path, int *out,
                          q3_error *e) {
    const json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return Q3_OK;
    double d = json_is_number(v) ? json_number_value(v) : 0.5;
    /* The range first: converting a double out of int's range is undefined. */
    if (!(d >= INT_MIN && d <= INT_MAX) || d != (double)(int)d)
        return q3_fail(e, Q3_EFORMAT, "%s: %s is not an integer", path, key);
    *out = (int)d;
    return Q3_OK;
}

static q3_status json_bool(const json_t *root, const char *key, const char *path, bool *out,
                           q3_error *e) {
    const json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return Q3_OK;
    if (!json_is_boolean(v))
        return q3_fail(e, Q3_EFORMAT, "%s: %s is not true or false", path, key);
    *out = json_is_true(v);
    return Q3_OK;
}

static q3_status read_generation_config(const json_t *root, const char *path, q3_sampling *s,
                                        q3_error *e) {
    if (!json_is_object(root)) return q3_fail(e, Q3_EFORMAT, "%s: not a JSON object", path);
    bool do_sample = true;
    q3_status st;
    if ((st = json_float(root, "temperature", path, &s->temperature, e)) ||
        (st = json_int(root, "top_k", path, &s->top_k, e)) ||
        (st = json_float(root, "top_p", path, &s->top_p, e)) ||
        (st = json_float(root, "min_p", path, &s->min_p, e)) ||
        (st = json_float(root, "repetition_penalty", path, &s->repetition_penalty, e)) ||
        (st = json_bool(root, "do_sample", path, &do_sample, e)))
        return st;
    /* Transformers decodes greedily when do_sample is false, whatever the temperature says. */
    if (!do_sample) s->temperature = 0;
    return Q3_OK;
}

static bool is_directory(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

q3_status q3_genconfig_load(const char *model_path, q3_sampling *s, q3_error *e) {
    if (!is_directory(model_path)) return Q3_OK;
    char path[4096];
    q3_status st = q3_pathf(path, sizeof path, e, "%s/generation_config.json", model_path);
    if (st) return st;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) return Q3_OK;
        return q3_fail(e, Q3_EIO, "%s: %s", path, strerror(errno));
    }
    json_error_t jerr;
    json_t *root = json_loadf(f, 0, &jerr);
    fclose(f);
    if (!root) return q3_fail(e, Q3_EFORMAT, "%s: line %d: %s", path, jerr.line, jerr.text);
    q3_sampling t = *s;
    st = read_generation_config(root, path, &t, e);
    json_decref(root);
    if (st) return st;
    q3_error why;
    if (q3_sampling_check(&t, &why)) return q3_fail(e, Q3_EFORMAT, "%s: %s", path, why.msg);
    *s = t;
    return Q3_OK;
}

/* ---- GGUF ---- */

/* A key absent leaves *out as it is. */
static q3_status gguf_float(const q3_gguf *g, const char *key, float *out, q3_error *e) {
    if (!q3_gguf_find_kv(g, key)) return Q3_OK;
    double v;
    q3_status st = q3_gguf_get_float(g, key, &v, e);
    if (!st) *out = (float)v;
    return st;
}

static q3_status gguf_int(const q3_gguf *g, const char *key, int *out, q3_error *e) {
    if (!q3_gguf_find_kv(g, key)) return Q3_OK;
    int64_t v;
    q3_status st = q3_gguf_get_int(g, key, &v, e);
    if (st) return st;
    if (v < INT_MIN || v > INT_MAX)
        return q3_fail(e, Q3_EFORMAT, "%s: metadata %s = %lld is out of range", g->path, key,
                       (long long)v);
    *out = (int)v;
    return Q3_OK;
}

q3_status q3_genconfig_from_gguf(const q3_gguf *g, q3_sampling *s, q3_error *e) {
    q3_sampling t = *s;
    q3_status st;
    if ((st = gguf_float(g, KEY_TEMP, &t.temperature, e)) ||
        (st = gguf_int(g, KEY_TOP_K, &t.top_k, e)) ||
        (st = gguf_float(g, KEY_TOP_P, &t.top_p, e)) ||
        (st = gguf_float(g, KEY_MIN_P, &t.min_p, e)) ||
        (st = gguf_float(g, KEY_PENALTY_REPEAT, &t.repetition_penalty, e)) ||
        (st = gguf_int(g, KEY_PENALTY_LAST_N, &t.penalty_last_n, e)))
        return st;
    /* llama.cpp reads a negative temperature as greedy too. */
    if (t.temperature < 0) t.temperature = 0;
    q3_error why;
    if (q3_sampling_check(&t, &why))
        return q3_fail(e, Q3_EFORMAT, "%s: general.sampling: %s", g->path, why.msg);
    *s = t;
    return Q3_OK;
}

q3_status q3_genconfig_to_gguf(q3_gguf_writer *w, const q3_sampling *s, q3_error *e) {
    if (q3_gguf_set_f32(w, KEY_TEMP, s->temperature) ||
        q3_gguf_set_i32(w, KEY_TOP_K, s->top_k > 0 ? s->top_k : 0) ||
        q3_gguf_set_f32(w, KEY_TOP_P, s->top_p))
        goto oom;
    if (s->min_p > 0 && q3_gguf_set_f32(w, KEY_MIN_P, s->min_p)) goto oom;
    /* llama.cpp looks back 64 tokens unless told; Transformers looks at the whole sequence. */
    if (s->repetition_penalty != 1 &&
        (q3_gguf_set_f32(w, KEY_PENALTY_REPEAT, s->repetition_penalty) ||
         q3_gguf_set_i32(w, KEY_PENALTY_LAST_N, s->penalty_last_n)))
        goto oom;
    return Q3_OK;
oom:
    return q3_fail(e, Q3_ENOMEM, "gguf writer: out of memory for general.sampling metadata");
}
