/* Tokenizer speed on one core: encodes generated English prose and Python source
 * (tests/fixtures/demo/heldout.py, repeated) with the Qwen3 tokenizer and prints MB/s.
 *
 * Each text is encoded twice: in 4 KiB calls, the size of a long prompt, where the encoder's
 * per-call word cache starts cold every time; and in one call over the whole text, the best
 * case for that cache. Decoding speed is printed too.
 *
 * usage: tokenizer_speed [TOKENIZER [HELDOUT_PY [MEGABYTES]]]
 *   defaults: tests/fixtures/qwen3-tokenizer/tokenizer.json, tests/fixtures/demo/heldout.py, 8
 *   (paths relative to the repository root, or $Q3_FIXTURES when set) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "base/clock.h"
#include "text/tokenizer.h"

#define CHUNK 4096

static uint64_t rng_state = 88172645463325252ull;

static uint32_t rng(uint32_t n) {
    rng_state ^= rng_state << 13; /* xorshift64 */
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)((rng_state >> 11) % n);
}

static const char *const WORDS[] = {
    "the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be",
    "by", "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have",
    "an", "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there",
    "been", "if", "more", "when", "will", "would", "who", "so", "no", "people", "time", "year",
    "government", "system", "number", "world", "house", "country", "problem", "question",
    "service", "company", "information", "development", "important", "different", "following",
    "without", "between", "through", "however", "because", "children", "education", "research",
    "community", "political", "economic", "particular", "experience", "understanding",
    "approximately", "environmental", "responsibility", "characteristics", "nevertheless",
    "tokenizer", "inference", "engine", "latency", "throughput", "benchmark", "river", "mountain",
    "quickly", "slowly", "beautiful", "ordinary", "remarkable", "yesterday", "tomorrow", "isn't",
    "don't", "they're", "we've", "I'm", "it's", "1998", "42", "3.5", "percent", "London", "Paris",
};

/* Writes about n bytes of English prose: sentences of common words, now and then a made-up
 * word (so BPE sees words it has not cached), commas, paragraphs. */
static size_t make_prose(char *out, size_t n) {
    size_t w = 0;
    while (w + 256 < n) {
        int words = 6 + (int)rng(20);
        for (int i = 0; i < words; i++) {
            char made_up[16];
            const char *word = WORDS[rng(sizeof WORDS / sizeof *WORDS)];
            if (rng(20) == 0) {
                int len = 3 + (int)rng(9);
                for (int k = 0; k < len; k++) made_up[k] = (char)('a' + rng(26));
                made_up[len] = 0;
                word = made_up;
            }
            if (i > 0) out[w++] = ' ';
            size_t len = strlen(word);
            memcpy(out + w, word, len);
            if (i == 0 && out[w] >= 'a' && out[w] <= 'z') out[w] = (char)(out[w] - 'a' + 'A');
            w += len;
            if (i + 1 < words && rng(8) == 0) out[w++] = ',';
        }
        out[w++] = rng(10) ? '.' : '?';
        if (rng(6) == 0) {
            memcpy(out + w, "\n\n", 2);
            w += 2;
        } else
            out[w++] = ' ';
    }
    return w;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n > 0 ? malloc((size_t)n) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* Repeats src until n bytes. */
static size_t repeat(char *out, size_t n, const char *src, size_t len) {
    size_t w = 0;
    for (; w + len <= n; w += len) memcpy(out + w, src, len);
    return w;
}

/* Encodes text in calls of chunk bytes (cut back to a UTF-8 character boundary); returns
 * MB/s and the token count. */
static double encode_speed(const q3_tokenizer *tok, const char *text, size_t len, size_t chunk,
                           size_t *n_tokens) {
    double t0 = q3_now_s();
    *n_tokens = 0;
    for (size_t at = 0; at < len;) {
        size_t n = len - at < chunk ? len - at : chunk;
        while (at + n < len && ((unsigned char)text[at + n] & 0xC0) == 0x80) n--;
        int32_t *ids;
        int count;
        q3_error err = {0};
        if (q3_tok_encode(tok, text + at, n, true, &ids, &count, &err)) {
            fprintf(stderr, "tokenizer_speed: %s\n", err.msg);
            exit(1);
        }
        *n_tokens += (size_t)count;
        free(ids);
        at += n;
    }
    return (double)len / 1e6 / (q3_now_s() - t0);
}

static double decode_speed(const q3_tokenizer *tok, const char *text, size_t len) {
    int32_t *ids;
    int n;
    q3_error err = {0};
    if (q3_tok_encode(tok, text, len, true, &ids, &n, &err)) exit(1);
    double t0 = q3_now_s();
    char *back;
    size_t back_len;
    if (q3_tok_decode(tok, ids, n, &back, &back_len, &err)) exit(1);
    double mbs = (double)back_len / 1e6 / (q3_now_s() - t0);
    if (back_len != len || memcmp(back, text, len))
        fprintf(stderr, "tokenizer_speed: round trip differs\n");
    free(back);
    free(ids);
    return mbs;
}

static void report(const q3_tokenizer *tok, const char *name, const char *text, size_t len) {
    size_t tokens;
    double chunked = encode_speed(tok, text, len, CHUNK, &tokens);
    double whole = encode_speed(tok, text, len, len, &tokens);
    printf("%-16s %6.2f MB  %8zu tokens  encode %6.2f MB/s (4 KiB calls)  %6.2f MB/s (one call)"
           "  decode %7.1f MB/s\n",
           name, (double)len / 1e6, tokens, chunked, whole, decode_speed(tok, text, len));
}

int main(int argc, char **argv) {
    const char *fixtures = getenv("Q3_FIXTURES") ? getenv("Q3_FIXTURES") : "tests/fixtures";
    char default_tok[4096], default_py[4096];
    snprintf(default_tok, sizeof default_tok, "%s/qwen3-tokenizer/tokenizer.json", fixtures);
    snprintf(default_py, sizeof default_py, "%s/demo/heldout.py", fixtures);
    const char *tok_path = argc > 1 ? argv[1] : default_tok, *py_path = argc > 2 ? argv[2] : default_py;
    size_t megabytes = argc > 3 ? (size_t)atoi(argv[3]) : 8;
    if (megabytes < 1 || megabytes > 1024) megabytes = 8;

    q3_tokenizer *tok;
    q3_error err = {0};
    double t0 = q3_now_s();
    if (q3_tok_load(&tok, tok_path, &err)) {
        fprintf(stderr, "tokenizer_speed: %s\n", err.msg);
        return 1;
    }
    printf("tokenizer: %s (%d tokens), loaded in %.2f s\n", tok_path, q3_tok_vocab_size(tok),
           q3_now_s() - t0);

    size_t n = megabytes << 20, py_len;
    char *text = malloc(n), *py = read_file(py_path, &py_len);
    if (!text || !py) {
        fprintf(stderr, "tokenizer_speed: cannot read %s\n", py_path);
        return 1;
    }
    report(tok, "English prose", text, make_prose(text, n));
    report(tok, "Python source", text, repeat(text, n, py, py_len));
    free(py);
    free(text);
    q3_tok_free(tok);
    return 0;
}
