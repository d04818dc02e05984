/* libFuzzer: the tokenizer files of a downloaded checkpoint. tokenizer.json (fuzzed, alone) or
 * tokenizer_config.json (fuzzed, beside a small valid tokenizer.json) must load or be refused with
 * an error naming the file; a tokenizer that loads must encode and decode any text without
 * crashing (its vocabulary may lack bytes or merge into nothing sensible), and a chat template the
 * config carries must compile or be kept with its error.
 *
 * Input: the first byte picks the file (bit 0: tokenizer_config.json, else tokenizer.json); the
 * rest is its text. The files go to a directory of their own under /dev/shm. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "text/chat.h"
#include "text/tokenizer.h"

static char dir[64], json_path[128], config_path[128];
static char *seed_tokenizer; /* a small valid tokenizer.json, for the config's turn */
static size_t seed_len;

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f)) abort();
}

static void remove_files(void) {
    unlink(json_path);
    unlink(config_path);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    snprintf(dir, sizeof dir, "/dev/shm/q3-fuzz-tokenizer-%d", (int)getpid());
    snprintf(json_path, sizeof json_path, "%s/tokenizer.json", dir);
    snprintf(config_path, sizeof config_path, "%s/tokenizer_config.json", dir);
    if (mkdir(dir, 0700) && access(dir, W_OK)) abort();
    atexit(remove_files);
    FILE *f = fopen(Q3_ROOT "/tests/fuzz/corpus/tokenizer_files/seed-small-tokenizer.json", "rb");
    if (!f) abort();
    static char buf[1 << 20];
    seed_len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    if (seed_len < 1) abort();
    seed_tokenizer = buf + 1; /* past the mode byte */
    seed_len--;
    return 0;
}

static void use(const q3_tokenizer *tok) {
    static const char TEXT[] = "Hello, wörld! <|im_start|>user\n  12345 \xe2\x89\xaf <think>x</think>";
    int32_t *ids = NULL;
    int n = 0;
    char *text = NULL;
    size_t len;
    q3_error e;
    if (!q3_tok_encode(tok, TEXT, sizeof TEXT - 1, true, &ids, &n, &e) && !q3_tok_decode(tok, ids, n, &text, &len, &e))
        free(text);
    free(ids);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    if (size < 1) return 0;
    bool config = data[0] & 1;
    if (config) {
        write_file(json_path, seed_tokenizer, seed_len);
        write_file(config_path, data + 1, size - 1);
    } else {
        unlink(config_path);
        write_file(json_path, data + 1, size - 1);
    }
    q3_tokenizer *tok;
    q3_error e;
    if (!q3_tok_load_json(&tok, json_path, &e)) {
        use(tok);
        q3_tok_free(tok);
    }
    return 0;
}
