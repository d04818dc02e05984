/* libFuzzer: quantized Hugging Face checkpoints (FP8 block-scaled e4m3, GPTQ 4-bit): the
 * quantization_config of config.json (model/hf_quant.c) and the tensors' metadata (names,
 * dtypes, shapes, offsets: what model/load_hf.c checks before it repacks a weight), through the
 * whole load of a checkpoint directory, with the real weights of the small fixtures
 * tests/fixtures/{fp8,gptq}-qwen3moe under them. A checkpoint must load or be refused with a
 * message; nothing may be read outside a tensor's bytes (ASan), and a loaded model's weights
 * must be views of their stated size.
 *
 * Input: a byte choosing the fixture (bit 0: GPTQ, else FP8), the quantization_config's JSON
 * text up to a NUL byte (spliced into the fixture's config.json in place of its own), then the
 * safetensors header's JSON text, written in front of the fixture's data section. The
 * checkpoint is written to a directory under /dev/shm (or TMPDIR) for each input. */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/model.h"

typedef struct fixture {
    char *config; /* config.json without its quantization_config, as text ending in '}' */
    size_t config_len;
    unsigned char *data; /* the safetensors data section */
    size_t data_len;
} fixture;

static fixture fixtures[2];
static char dir[256], config_path[300], weights_path[300];

static unsigned char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long n;
    if (f && !fseek(f, 0, SEEK_END) && (n = ftell(f)) > 0 && !fseek(f, 0, SEEK_SET) && (buf = malloc((size_t)n)) &&
        fread(buf, 1, (size_t)n, f) == (size_t)n)
        *len = (size_t)n;
    else
        free(buf), buf = NULL;
    if (f) fclose(f);
    if (!buf) fprintf(stderr, "fuzz_hf_quant: cannot read %s\n", path), abort();
    return buf;
}

static void load_fixture(fixture *fx, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s/config.json", Q3_FIXTURES, name);
    json_t *cfg = json_load_file(path, 0, NULL);
    if (!cfg) abort();
    json_object_del(cfg, "quantization_config");
    fx->config = json_dumps(cfg, JSON_COMPACT);
    fx->config_len = strlen(fx->config);
    json_decref(cfg);
    snprintf(path, sizeof path, "%s/%s/model.safetensors", Q3_FIXTURES, name);
    size_t len;
    unsigned char *file = read_all(path, &len);
    uint64_t header = 0;
    for (int i = 7; i >= 0; i--) header = header << 8 | file[i];
    if (len < 8 || header > len - 8) abort();
    fx->data_len = len - 8 - header;
    fx->data = malloc(fx->data_len);
    memcpy(fx->data, file + 8 + header, fx->data_len);
    free(file);
}

static void remove_checkpoint(void) {
    unlink(config_path);
    unlink(weights_path);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    load_fixture(&fixtures[0], "fp8-qwen3moe");
    load_fixture(&fixtures[1], "gptq-qwen3moe");
    const char *tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, sizeof dir, "%s/fuzz_hf_quant.%d", tmp, (int)getpid());
    snprintf(config_path, sizeof config_path, "%s/config.json", dir);
    snprintf(weights_path, sizeof weights_path, "%s/model.safetensors", dir);
    if (mkdir(dir, 0700) && errno != EEXIST) abort();
    atexit(remove_checkpoint);
    return 0;
}

static void write_file(const char *path, const void *a, size_t na, const void *b, size_t nb, const void *c, size_t nc) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(a, 1, na, f) != na || fwrite(b, 1, nb, f) != nb || fwrite(c, 1, nc, f) != nc || fclose(f))
        abort();
}

/* Every weight of a loaded model is a view of rows * row_bytes bytes that can be read. */
static void check_model(const q3_model *m) {
    volatile unsigned char sink = 0;
    const q3_mat *mats[] = {&m->embed, &m->lm_head};
    for (int i = 0; i < 2; i++)
        if (mats[i]->rows) sink ^= ((const unsigned char *)mats[i]->data)[mats[i]->rows * (int64_t)mats[i]->row_bytes - 1];
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const q3_layer *L = &m->layers[l];
        const q3_mat *w[] = {&L->wq, &L->wk, &L->wv, &L->wo, L->is_moe ? &L->experts[0].down : &L->dense.down};
        for (int i = 0; i < 5; i++) sink ^= ((const unsigned char *)w[i]->data)[w[i]->rows * (int64_t)w[i]->row_bytes - 1];
    }
    (void)sink;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    if (size < 2) return 0;
    const unsigned char *sep = memchr(data + 1, 0, size - 1);
    if (!sep) return 0;
    const fixture *fx = &fixtures[data[0] & 1];
    const char *qc = (const char *)data + 1, *header = (const char *)sep + 1;
    size_t qc_len = (size_t)(sep - data - 1), header_len = size - (size_t)(sep - data) - 1;
    const char splice[] = ",\"quantization_config\":";
    write_file(config_path, fx->config, fx->config_len - 1, splice, sizeof splice - 1, qc, qc_len);
    FILE *f = fopen(config_path, "ab");
    if (!f || fputc('}', f) == EOF || fclose(f)) abort();
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)header_len >> (8 * i));
    write_file(weights_path, len, 8, header, header_len, fx->data, fx->data_len);
    q3_model *m;
    q3_error e = {0};
    q3_load_options opts = {.numa = Q3_NUMA_OFF};
    if (q3_model_open(&m, dir, &opts, 0, 1, 1, &e)) {
        if (!e.msg[0]) abort(); /* refused without a reason */
        return 0;
    }
    check_model(m);
    q3_model_close(m);
    return 0;
}
