/* Shared CLI helpers. */
#include "cli/common.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "model/model.h"
#include "quant/types.h"
#include "text/genconfig.h"

static bool exists(const char *p) { return access(p, R_OK) == 0; }

const char *q3_cli_model_path(const char *arg) {
    static char buf[PATH_MAX];
    if (arg) return arg;
    const char *env = getenv("Q3_MODEL");
    if (env && *env) return env;
    if (exists(Q3_DEMO_MODEL)) return Q3_DEMO_MODEL;
    /* Beside the binary: build/q3moe -> ../models/... */
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n > 0) {
        buf[n] = 0;
        char *slash = strrchr(buf, '/');
        for (int up = 0; up < 3 && slash; up++) {
            *slash = 0;
            char cand[PATH_MAX + 64];
            snprintf(cand, sizeof cand, "%s/%s", buf, Q3_DEMO_MODEL);
            if (exists(cand)) {
                snprintf(buf, sizeof buf, "%s", cand);
                return buf;
            }
            slash = strrchr(buf, '/');
        }
    }
    fprintf(stderr, "q3moe: no model given (-m) and the demo model %s was not found\n", Q3_DEMO_MODEL);
    return NULL;
}

bool q3_cli_parse_ids(const char *s, const char *what, int32_t **out, int *n) {
    int cap = 16, count = 0;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    if (!ids) return false;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            fprintf(stderr, "q3moe: %s: '%s' is not a comma-separated list of token ids\n", what, s);
            free(ids);
            return false;
        }
        if (count == cap) {
            int32_t *more = realloc(ids, (size_t)(cap *= 2) * sizeof *ids);
            if (!more) { free(ids); return false; }
            ids = more;
        }
        ids[count++] = (int32_t)v;
        p = *end ? end + 1 : end;
    }
    if (count == 0) {
        fprintf(stderr, "q3moe: %s: no token ids given\n", what);
        free(ids);
        return false;
    }
    *out = ids;
    *n = count;
    return true;
}

bool q3_cli_parse_int(const char *s, const char *option, long min, long max, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < min || v > max) {
        fprintf(stderr, "q3moe: %s: '%s' is not an integer in %ld..%ld\n", option, s, min, max);
        return false;
    }
    *out = v;
    return true;
}


static int parse_device(q3_load_options *o, int ch, const char *arg) {
    long n;
    switch (ch) {
    case Q3_OPT_DEVICE:
        if (!strcmp(arg, "cpu")) o->device = Q3_DEVICE_CPU;
        else if (!strcmp(arg, "cuda")) o->device = Q3_DEVICE_CUDA;
        else return fprintf(stderr, "q3moe: --device: '%s' is not cpu or cuda\n", arg), 1;
        return 0;
    case Q3_OPT_CPU_EXPERTS: o->cpu_experts = true; return 0;
    case Q3_OPT_REPACK: o->repack = true; return 0;
    case Q3_OPT_NO_REPACK: o->repack = false; return 0;
    case Q3_OPT_GPU_EXPERTS:
        if (!q3_cli_parse_int(arg, "--gpu-experts", 0, 4096, &n)) return 1;
        o->gpu_experts = (int)n;
        return 0;
    default: return -1;
    }
}

int q3_cli_parse_load_option(q3_load_options *o, int ch, const char *arg) {
    int r = parse_device(o, ch, arg);
    return r >= 0 ? r : q3_rope_options_parse(&o->rope_scaling, ch, arg);
}

bool q3_cli_open_model(const char *path, const q3_load_options *opts, q3_model **m, q3_tokenizer **tok,
                       q3_sampling *defaults) {
    q3_error e = {0};
    *m = NULL;
    *tok = NULL;
    *defaults = q3_sampling_defaults();
    if (q3_model_load(m, path, opts, &e)) goto fail;
    if ((*m)->kind == Q3_SOURCE_GGUF) {
        if (q3_tok_load_gguf(tok, &(*m)->gguf, &e) || q3_genconfig_from_gguf(&(*m)->gguf, defaults, &e)) goto fail;
    } else if (q3_tok_load(tok, path, &e) || q3_genconfig_load(path, defaults, &e)) {
        goto fail;
    }
    if (q3_tok_vocab_size(*tok) > q3_model_config(*m)->vocab_size) {
        snprintf(e.msg, sizeof e.msg, "%s: the tokenizer has %d tokens, the model only %d", path,
                 q3_tok_vocab_size(*tok), q3_model_config(*m)->vocab_size);
        goto fail;
    }
    return true;
fail:
    fprintf(stderr, "q3moe: %s\n", e.msg);
    q3_tok_free(*tok);
    q3_model_free(*m);
    *tok = NULL;
    *m = NULL;
    return false;
}

void q3_cli_unescape(char *s) {
    char *out = s;
    for (; *s; s++) {
        if (*s != '\\' || !s[1]) {
            *out++ = *s;
            continue;
        }
        switch (*++s) {
        case 'n': *out++ = '\n'; break;
        case 't': *out++ = '\t'; break;
        case 'r': *out++ = '\r'; break;
        case '\\': *out++ = '\\'; break;
        case '"': *out++ = '"'; break;
        case '\'': *out++ = '\''; break;
        default: *out++ = '\\'; *out++ = *s; break;
        }
    }
    *out = 0;
}

char *q3_cli_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "q3moe: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
        n += got;
        if (n + 1 < cap) continue;
        char *more = realloc(buf, cap *= 2);
        if (!more) free(buf);
        buf = more;
    }
    bool failed = !buf || ferror(f);
    fclose(f);
    if (failed) {
        fprintf(stderr, "q3moe: %s: cannot read\n", path);
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

bool q3_cli_parse_kv_type(const char *s, const char *option, q3_type *out) {
    if (q3_type_from_name(s, out) &&
        (*out == Q3_TYPE_F16 || *out == Q3_TYPE_BF16 || *out == Q3_TYPE_F32 || *out == Q3_TYPE_Q8_0))
        return true;
    fprintf(stderr, "q3moe: %s: '%s' is not f16, bf16, f32 or q8_0\n", option, s);
    return false;
}
