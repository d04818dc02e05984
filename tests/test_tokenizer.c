/* Tests of the Qwen3 tokenizer (src/text/tokenizer.h).
 *
 * The references are independent of the code under test: every case of
 * fixtures/qwen3-tokenizer/tokenizer_cases.json (ids and decoded text written by Hugging Face
 * tokenizers) must come out exactly, both from tokenizer.json and from a GGUF that this file
 * converts from tokenizer.json the way llama.cpp lays the metadata out. Random Unicode text must
 * survive encode then decode as its NFC form (utf8proc says what NFC is), the streaming decoder
 * must give the same text without ever cutting a character, and bad input must fail with an
 * error that says where.
 */
#include <jansson.h>
#include <sys/stat.h>
#include <utf8proc.h>

#include "testutil.h"
#include "text/tokenizer_gguf.h"
#include "text/tokenizer.h"
#include "utf8_oracle.h"

/* ---- fixtures shared by the tests ---- */

typedef struct fixture {
    q3_tokenizer *json;   /* from tokenizer.json */
    q3_tokenizer *gguf;   /* from the GGUF written by write_tokenizer_gguf */
    json_t *cases;        /* tokenizer_cases.json "cases" */
    int vocab_with_added; /* tokenizer_cases.json "vocab_size_with_added" */
} fixture;

/* The GGUF's vocabulary is padded to the model's size, as converters do for Qwen3. */
#define GGUF_VOCAB 151936

static json_t *load_json(const char *path) {
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    if (!root) fail_msg("%s: %s (line %d)", path, err.text, err.line);
    return root;
}

/* The GGUF a converter writes from tokenizer.json (llama.cpp's layout: tokens padded with [PADn]
 * to the model's 151936 rows, token types, "left right" merges, special ids): our converter's
 * q3_tokenizer_json_to_gguf, in a GGUF of no tensors. */
static void write_tokenizer_gguf(const char *json_path, const char *gguf_path) {
    q3_gguf_writer *w;
    q3_error err = {0};
    assert_int_equal(q3_gguf_writer_new(&w, &err), Q3_OK);
    assert_int_equal(q3_gguf_set_str(w, "general.architecture", "qwen3moe"), Q3_OK);
    if (q3_tokenizer_json_to_gguf(w, json_path, fixture_path(3, "qwen3-tokenizer/tokenizer_config.json"), GGUF_VOCAB,
                                  151643, &err) ||
        q3_gguf_write(w, gguf_path, NULL, NULL, &err))
        fail_msg("write %s: %s", gguf_path, err.msg);
    q3_gguf_writer_free(w);
}

static q3_tokenizer *load_ok(const char *path) {
    q3_tokenizer *t = NULL;
    q3_error err = {0};
    if (q3_tok_load(&t, path, &err)) fail_msg("load %s: %s", path, err.msg);
    return t;
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    const char *json_path = fixture_path(0, "qwen3-tokenizer/tokenizer.json");
    const char *gguf_path = tmp_path(0, "test_tokenizer.gguf");
    json_t *root = load_json(fixture_path(1, "qwen3-tokenizer/tokenizer_cases.json"));
    f->cases = json_incref(json_object_get(root, "cases"));
    f->vocab_with_added = (int)json_integer_value(json_object_get(root, "vocab_size_with_added"));
    json_decref(root);
    f->json = load_ok(json_path);
    write_tokenizer_gguf(json_path, gguf_path);
    f->gguf = load_ok(gguf_path);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    q3_tok_free(f->json);
    q3_tok_free(f->gguf);
    json_decref(f->cases);
    free(f);
    return 0;
}

/* ---- helpers ---- */

static int32_t *encode_ok(const q3_tokenizer *t, const char *text, size_t len, bool special, int *n) {
    int32_t *ids = NULL;
    q3_error err = {0};
    if (q3_tok_encode(t, text, len, special, &ids, n, &err)) fail_msg("encode: %s", err.msg);
    return ids;
}

static char *decode_ok(const q3_tokenizer *t, const int32_t *ids, int n, size_t *len) {
    char *text = NULL;
    q3_error err = {0};
    if (q3_tok_decode(t, ids, n, &text, len, &err)) fail_msg("decode: %s", err.msg);
    return text;
}

static void print_ids(const char *label, const int32_t *ids, int n) {
    fprintf(stderr, "  %s:", label);
    for (int i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
}

/* Encodes every fixture case with t and checks ids and decoded text against HF's. */
static void check_cases(const fixture *f, const q3_tokenizer *t, const char *which) {
    size_t i;
    json_t *c;
    assert_true(json_array_size(f->cases) >= 20);
    json_array_foreach(f->cases, i, c) {
        json_t *text = json_object_get(c, "text"), *want = json_object_get(c, "ids");
        const char *decoded_want = json_string_value(json_object_get(c, "decoded"));
        int n;
        int32_t *ids = encode_ok(t, json_string_value(text), json_string_length(text), true, &n);
        bool same = (size_t)n == json_array_size(want);
        for (int k = 0; same && k < n; k++)
            same = ids[k] == json_integer_value(json_array_get(want, (size_t)k));
        if (!same) {
            print_ids("got ", ids, n);
            fail_msg("%s: case %zu \"%s\": ids differ from HF's", which, i, json_string_value(text));
        }
        size_t len;
        char *back = decode_ok(t, ids, n, &len);
        if (len != strlen(decoded_want) || memcmp(back, decoded_want, len))
            fail_msg("%s: case %zu: decoded \"%s\", HF \"%s\"", which, i, back, decoded_want);
        free(back);
        free(ids);
    }
}

/* A validity check written apart from the tokenizer's own: utf8proc decodes s whole. */
/* Streams ids through the decoder; checks every chunk is whole characters; returns the text. */
static char *stream_decode(const q3_tokenizer *t, const int32_t *ids, int n, size_t *len) {
    size_t cap = q3_tok_stream_cap(t), used = 0;
    char *out = malloc(cap * (size_t)(n + 1)), *chunk = malloc(cap);
    assert_true(out && chunk);
    q3_tok_stream s;
    q3_tok_stream_init(&s);
    for (int i = 0; i < n; i++) {
        size_t k;
        q3_error err = {0};
        if (q3_tok_stream_push(t, &s, ids[i], chunk, cap, &k, &err)) fail_msg("push: %s", err.msg);
        if (!utf8proc_says_valid(chunk, k)) fail_msg("token %d (%d) gave a partial character", i, ids[i]);
        memcpy(out + used, chunk, k);
        used += k;
    }
    used += q3_tok_stream_flush(&s, out + used, cap);
    out[used] = 0;
    *len = used;
    free(chunk);
    return out;
}

/* ---- HF's cases ---- */

static void test_cases_from_tokenizer_json(void **state) {
    fixture *f = *state;
    check_cases(f, f->json, "tokenizer.json");
    assert_int_equal(q3_tok_vocab_size(f->json), f->vocab_with_added);
}

static void test_cases_from_gguf(void **state) {
    fixture *f = *state;
    check_cases(f, f->gguf, "gguf");
    assert_int_equal(q3_tok_vocab_size(f->gguf), GGUF_VOCAB);
    assert_int_equal(q3_tok_eos(f->gguf), 151645);
    assert_int_equal(q3_tok_bos(f->gguf), 151643);
    assert_int_equal(q3_tok_pad(f->gguf), 151643);
    assert_int_equal(q3_tok_eos(f->json), -1); /* tokenizer.json does not say */
}

/* Whitespace at the edges of what Oniguruma (HF's regex engine) and PCRE2 call \s, case folding
 * in the contractions, and special tokens left as text (HF's encode_special_tokens, our
 * parse_special false); ids from Hugging Face tokenizers 0.23.3 on the same tokenizer.json. */
static const struct {
    const char *text;
    int n;
    int32_t ids[12];
    bool no_special;
} MORE_HF_CASES[] = {
    {"\u180e x\xc2\x85" "y \u2028z", 10, {123970, 236, 856, 126, 227, 88, 220, 378, 101, 89}, false},
    {"a\u180e\u180eb  \u180e", 10, {64, 123970, 236, 123970, 236, 65, 220, 86089, 254, 236}, false},
    {"K\u212a \u017fS\u017f IT\u2019S it'\u017f", 10,
     {50457, 25917, 123, 50, 144815, 8700, 39602, 432, 6, 144815}, false},
    {"<|im_end|>\u0338 >\u0338", 5, {151645, 136, 116, 21103, 107}, false},
    {"x\u3000\u3000y\u00a0\u00a0 \t\n", 6, {87, 22441, 22441, 88, 9238, 17476}, false},
    {"<|im_start|>user", 7, {27, 91, 318, 4906, 91, 29, 872}, true},
    {"<think>x</think><|im_end|>", 9, {151667, 87, 151668, 27, 91, 318, 6213, 91, 29}, true},
    {"a<tool_call>b<|endoftext|>", 10, {64, 151657, 65, 27, 91, 8691, 723, 427, 91, 29}, true},
};

static void test_more_hf_cases(void **state) {
    fixture *f = *state;
    for (size_t i = 0; i < sizeof MORE_HF_CASES / sizeof *MORE_HF_CASES; i++) {
        const char *text = MORE_HF_CASES[i].text;
        for (int k = 0; k < 2; k++) {
            int n;
            int32_t *ids = encode_ok(k ? f->gguf : f->json, text, strlen(text),
                                     !MORE_HF_CASES[i].no_special, &n);
            if (n != MORE_HF_CASES[i].n || memcmp(ids, MORE_HF_CASES[i].ids, (size_t)n * sizeof *ids)) {
                print_ids("got", ids, n);
                fail_msg("extra case %zu \"%s\": ids differ from HF's", i, text);
            }
            free(ids);
        }
    }
}

/* A directory holding tokenizer.json loads like the file. */
static void test_load_directory(void **state) {
    (void)state;
    q3_tokenizer *t = load_ok(fixture_path(0, "qwen3-tokenizer"));
    int n;
    int32_t *ids = encode_ok(t, "Hello world", 11, true, &n);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 9707);
    assert_int_equal(ids[1], 1879);
    free(ids);
    q3_tok_free(t);
}

/* ---- lookups ---- */

static void test_find_and_pieces(void **state) {
    fixture *f = *state;
    const q3_tokenizer *tokenizers[] = {f->json, f->gguf};
    for (int k = 0; k < 2; k++) {
        const q3_tokenizer *t = tokenizers[k];
        assert_int_equal(q3_tok_find(t, "<|endoftext|>"), 151643);
        assert_int_equal(q3_tok_find(t, "<|im_start|>"), 151644);
        assert_int_equal(q3_tok_find(t, "<|im_end|>"), 151645);
        assert_int_equal(q3_tok_find(t, "<think>"), 151667);
        assert_int_equal(q3_tok_find(t, "</think>"), 151668);
        assert_int_equal(q3_tok_find(t, "\xc4\xa0world"), 1879); /* "Ġworld" */
        assert_int_equal(q3_tok_find(t, "no such token, surely"), -1);
        assert_true(q3_tok_is_special(t, 151645));
        assert_false(q3_tok_is_special(t, 151667)); /* added, but not a control token */
        assert_false(q3_tok_is_special(t, 9707));
        assert_false(q3_tok_is_special(t, -1));
        assert_false(q3_tok_is_special(t, q3_tok_vocab_size(t)));
        size_t len;
        const char *p = q3_tok_piece(t, 1879, &len);
        assert_int_equal(len, 6);
        assert_memory_equal(p, " world", 6);
        p = q3_tok_piece(t, 198, &len);
        assert_int_equal(len, 1);
        assert_int_equal(p[0], '\n');
        p = q3_tok_piece(t, 151645, &len);
        assert_int_equal(len, 10);
        assert_memory_equal(p, "<|im_end|>", 10);
        assert_null(q3_tok_piece(t, -1, &len));
        assert_null(q3_tok_piece(t, q3_tok_vocab_size(t), &len));
    }
    /* The GGUF's padding ids are unused: findable by name, empty when decoded. */
    size_t len;
    assert_int_equal(q3_tok_find(f->gguf, "[PAD151700]"), 151700);
    assert_non_null(q3_tok_piece(f->gguf, 151700, &len));
    assert_int_equal(len, 0);
}

/* ---- special tokens on and off ---- */

static void test_parse_special_off(void **state) {
    fixture *f = *state;
    const char *text = "<|im_start|>user\nhi<|im_end|><think>";
    int n_on, n_off;
    int32_t *on = encode_ok(f->json, text, strlen(text), true, &n_on);
    int32_t *off = encode_ok(f->json, text, strlen(text), false, &n_off);
    assert_int_equal(n_on, 6);
    assert_int_equal(on[0], 151644);
    assert_int_equal(on[4], 151645);
    assert_int_equal(on[5], 151667);
    for (int i = 0; i < n_off; i++) {
        assert_false(q3_tok_is_special(f->json, off[i]));
        assert_true(off[i] < 151643 || off[i] == 151667);
    }
    assert_int_equal(off[n_off - 1], 151667); /* "<think>" is not special: still one token */
    size_t len;
    char *back = decode_ok(f->json, off, n_off, &len);
    assert_string_equal(back, text);
    /* As plain text, "<|im_end|>" is what BPE makes of it, with no special token around. */
    int n_plain;
    int32_t *plain = encode_ok(f->json, "<|im_end|>", 10, false, &n_plain);
    assert_true(n_plain > 1);
    assert_memory_equal(plain, off + n_off - 1 - n_plain, (size_t)n_plain * sizeof *plain);
    free(plain);
    free(back);
    free(on);
    free(off);
}

/* ---- random text: decode(encode(s)) == NFC(s) ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rng(uint32_t n) {
    rng_state ^= rng_state << 13; /* xorshift64 */
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)((rng_state >> 11) % n);
}

/* Code points from many scripts, with the things that trip tokenizers: combining marks, Hangul
 * jamo that NFC composes, emoji with joiners and modifiers, odd whitespace and other digits. */
static const struct { uint32_t lo, hi; } RANGES[] = {
    {0x20, 0x7E},     {0x30, 0x39},     {0x41, 0x5A},     {0x61, 0x7A},     {0xA0, 0xFF},
    {0x100, 0x17F},   {0x300, 0x36F},   {0x391, 0x3C9},   {0x400, 0x44F},   {0x5D0, 0x5EA},
    {0x620, 0x64A},   {0x660, 0x669},   {0x900, 0x97F},   {0xE01, 0xE3A},   {0x1100, 0x1175},
    {0x11A8, 0x11C2}, {0x3040, 0x30FF}, {0x4E00, 0x9FFF}, {0xAC00, 0xD7A3}, {0xFF10, 0xFF19},
    {0x1F300, 0x1F64F}, {0x1F680, 0x1F6FF}, {0x1F3FB, 0x1F3FF}, {0x1D400, 0x1D7FF},
};
static const uint32_t ODD_CHARS[] = {' ', '\t', '\n', '\r', 0xA0, 0x2028, 0x3000, 0x200B, 0x200D,
                                     0xFE0F, 0x85, 0x2009, '\'', 0xFEFF, 0x180E};

static size_t random_char(char *out) {
    uint32_t cp;
    if (rng(4) == 0) cp = ODD_CHARS[rng(sizeof ODD_CHARS / sizeof *ODD_CHARS)];
    else {
        size_t r = rng(sizeof RANGES / sizeof *RANGES);
        cp = RANGES[r].lo + rng(RANGES[r].hi - RANGES[r].lo + 1);
    }
    return (size_t)utf8proc_encode_char((utf8proc_int32_t)cp, (utf8proc_uint8_t *)out);
}

/* Appends NFC(stretch) to *expected: HF normalises the text between added tokens, each stretch
 * apart (a combining mark after "<|im_end|>" must not compose with its '>'). */
static void append_nfc(char *expected, size_t *n_expected, char *stretch, size_t *n_stretch) {
    stretch[*n_stretch] = 0;
    char *nfc = (char *)utf8proc_NFC((const utf8proc_uint8_t *)stretch);
    assert_non_null(nfc);
    memcpy(expected + *n_expected, nfc, strlen(nfc));
    *n_expected += strlen(nfc);
    *n_stretch = 0;
    free(nfc);
}

/* Up to max_chars characters, some of them repeated into runs, now and then an added token.
 * expected receives what decode(encode(text)) must give. */
static size_t random_text(char *text, char *expected, int max_chars) {
    static const char *ADDED[] = {"<|im_end|>", "<think>", "<|endoftext|>"};
    char stretch[2048];
    size_t n = 0, n_expected = 0, n_stretch = 0;
    int chars = (int)rng((uint32_t)max_chars + 1);
    for (int i = 0; i < chars; i++) {
        if (rng(40) == 0) {
            const char *a = ADDED[rng(3)];
            append_nfc(expected, &n_expected, stretch, &n_stretch);
            memcpy(text + n, a, strlen(a));
            memcpy(expected + n_expected, a, strlen(a));
            n += strlen(a);
            n_expected += strlen(a);
            continue;
        }
        char c[4];
        size_t k = random_char(c);
        for (int rep = rng(6) == 0 ? 1 + (int)rng(8) : 1; rep > 0; rep--) {
            memcpy(text + n, c, k);
            memcpy(stretch + n_stretch, c, k);
            n += k;
            n_stretch += k;
        }
    }
    append_nfc(expected, &n_expected, stretch, &n_stretch);
    text[n] = expected[n_expected] = 0;
    return n;
}

static void test_random_round_trip(void **state) {
    fixture *f = *state;
    enum { STRINGS = 3000, MAX_CHARS = 40 };
    char text[MAX_CHARS * 32 + 1], expected[2 * sizeof text];
    rng_state = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < STRINGS; i++) {
        size_t len = random_text(text, expected, MAX_CHARS);
        const q3_tokenizer *t = i % 4 == 3 ? f->gguf : f->json;
        int n;
        int32_t *ids = encode_ok(t, text, len, true, &n);
        for (int k = 0; k < n; k++) assert_true(ids[k] >= 0 && ids[k] < 151669);
        size_t got_len, streamed_len;
        char *got = decode_ok(t, ids, n, &got_len);
        if (strcmp(got, expected)) {
            print_ids("ids", ids, n);
            fail_msg("string %d: decode(encode(s)) != NFC(s)\n  s:   %s\n  got: %s", i, text, got);
        }
        char *streamed = stream_decode(t, ids, n, &streamed_len);
        assert_int_equal(streamed_len, got_len);
        assert_string_equal(streamed, got);
        free(streamed);
        free(got);
        free(ids);
    }
}

/* ---- streaming ---- */

static void test_stream_whole_characters(void **state) {
    fixture *f = *state;
    const char *text = "Emoji 😀🚀👍🏽 and ∑∫√, 数字和中文，한국어 문장, Ünïcödé.";
    int n;
    int32_t *ids = encode_ok(f->json, text, strlen(text), true, &n);
    /* The text must really cut characters between tokens for the test to mean anything. */
    int cut = 0;
    for (int i = 0; i < n; i++) {
        size_t len;
        const char *p = q3_tok_piece(f->json, ids[i], &len);
        cut += !utf8proc_says_valid(p, len);
    }
    assert_true(cut >= 2);
    size_t len;
    char *out = stream_decode(f->json, ids, n, &len);
    assert_int_equal(len, strlen(text));
    assert_string_equal(out, text);
    free(out);
    free(ids);
}

static void test_stream_leftovers(void **state) {
    fixture *f = *state;
    /* Byte 0xE2 alone: spelled "â" (U+00E2) in the byte-level alphabet. */
    int32_t e2 = q3_tok_find(f->json, "\xc3\xa2"), a = q3_tok_find(f->json, "a");
    assert_true(e2 >= 0 && a >= 0);
    size_t cap = q3_tok_stream_cap(f->json), k;
    char out[64];
    char *buf = malloc(cap);
    assert_non_null(buf);
    q3_tok_stream s;
    q3_error err = {0};
    q3_tok_stream_init(&s);
    assert_int_equal(q3_tok_stream_push(f->json, &s, e2, buf, cap, &k, &err), Q3_OK);
    assert_int_equal(k, 0); /* waits for the rest of the character */
    assert_int_equal(q3_tok_stream_flush(&s, out, sizeof out), 3);
    assert_memory_equal(out, "\xef\xbf\xbd", 3); /* an unfinished character becomes U+FFFD */
    assert_int_equal(q3_tok_stream_flush(&s, out, sizeof out), 0);
    /* A character cut short by what follows: U+FFFD, then the next character. */
    assert_int_equal(q3_tok_stream_push(f->json, &s, e2, buf, cap, &k, &err), Q3_OK);
    assert_int_equal(q3_tok_stream_push(f->json, &s, a, buf, cap, &k, &err), Q3_OK);
    assert_int_equal(k, 4);
    assert_memory_equal(buf, "\xef\xbf\xbd" "a", 4);
    /* Errors: a bad id, a buffer too small. */
    assert_int_equal(q3_tok_stream_push(f->json, &s, -1, buf, cap, &k, &err), Q3_EINVAL);
    assert_int_equal(q3_tok_stream_push(f->json, &s, 151669, buf, cap, &k, &err), Q3_EINVAL);
    assert_int_equal(q3_tok_stream_push(f->json, &s, a, buf, 2, &k, &err), Q3_EINVAL);
    assert_non_null(strstr(err.msg, "buffer"));
    free(buf);
}

/* ---- errors ---- */

static void expect_invalid_utf8(const q3_tokenizer *t, const char *text, size_t len, size_t offset) {
    int32_t *ids = (int32_t *)1;
    int n = -1;
    q3_error err = {0};
    assert_int_equal(q3_tok_encode(t, text, len, true, &ids, &n, &err), Q3_EINVAL);
    assert_null(ids);
    assert_int_equal(n, 0);
    char want[64];
    snprintf(want, sizeof want, "invalid UTF-8 at byte offset %zu", offset);
    if (!strstr(err.msg, want)) fail_msg("message \"%s\" lacks \"%s\"", err.msg, want);
}

static void test_invalid_utf8(void **state) {
    fixture *f = *state;
    expect_invalid_utf8(f->json, "abc\xff", 4, 3);
    expect_invalid_utf8(f->json, "ok \xe2\x82", 5, 3);          /* truncated */
    expect_invalid_utf8(f->json, "\xc0\xaf", 2, 0);             /* overlong '/' */
    expect_invalid_utf8(f->json, "x\xed\xa0\x80", 4, 1);        /* a surrogate */
    expect_invalid_utf8(f->json, "xy\xf4\x90\x80\x80", 6, 2);   /* past U+10FFFF */
    expect_invalid_utf8(f->json, "caf\xc3\xa9 \x80", 7, 6);     /* a lone continuation byte */
    expect_invalid_utf8(f->gguf, "<|im_end|>\xfe", 11, 10);
    /* NUL is a character like any other when the length says so. */
    int n;
    int32_t *ids = encode_ok(f->json, "a\0b", 3, true, &n);
    assert_int_equal(n, 3);
    free(ids);
}

static void test_decode_errors(void **state) {
    fixture *f = *state;
    int32_t ids[] = {9707, 151669};
    char *text = (char *)1;
    size_t len;
    q3_error err = {0};
    assert_int_equal(q3_tok_decode(f->json, ids, 2, &text, &len, &err), Q3_EINVAL);
    assert_null(text);
    assert_non_null(strstr(err.msg, "151669"));
    ids[1] = -3;
    assert_int_equal(q3_tok_decode(f->json, ids, 2, &text, &len, &err), Q3_EINVAL);
    /* Nothing to decode is an empty string, not an error. */
    assert_int_equal(q3_tok_decode(f->json, ids, 0, &text, &len, &err), Q3_OK);
    assert_int_equal(len, 0);
    assert_string_equal(text, "");
    free(text);
}

static void expect_load_error(const char *path, q3_status code, const char *names) {
    q3_tokenizer *t = (q3_tokenizer *)1;
    q3_error err = {0};
    assert_int_equal(q3_tok_load(&t, path, &err), code);
    assert_null(t);
    if (!strstr(err.msg, names)) fail_msg("message \"%s\" does not name \"%s\"", err.msg, names);
}

static void write_file(const char *path, const char *text) {
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void test_load_errors(void **state) {
    (void)state;
    expect_load_error("/nonexistent/q3moe/tokenizer.json", Q3_EIO, "/nonexistent/q3moe/tokenizer.json");
    const char *dir = tmp_path(0, "test_tokenizer_empty_dir");
    mkdir(dir, 0755);
    expect_load_error(dir, Q3_EIO, "test_tokenizer_empty_dir");
    expect_load_error(dir, Q3_EIO, "no tokenizer.json");
    const char *bad = tmp_path(1, "test_tokenizer_bad.json");
    write_file(bad, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}");
    expect_load_error(bad, Q3_EFORMAT, bad);
    write_file(bad, "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}");
    expect_load_error(bad, Q3_EUNSUPPORTED, "Unigram");
    /* A merge whose parts are not tokens. */
    write_file(bad, "{\"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": "
                    "{\"Regex\": \"\\\\s+|\\\\S+\"}, \"behavior\": \"Isolated\", \"invert\": false},"
                    "\"added_tokens\": [], \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1},"
                    "\"merges\": [\"a c\"]}}");
    expect_load_error(bad, Q3_EFORMAT, "merge 0");
    /* A GGUF without tokenizer metadata. */
    const char *gguf = tmp_path(2, "test_tokenizer_empty.gguf");
    q3_gguf_writer *w;
    q3_error err = {0};
    assert_int_equal(q3_gguf_writer_new(&w, &err), Q3_OK);
    assert_int_equal(q3_gguf_set_str(w, "tokenizer.ggml.model", "gpt2"), Q3_OK);
    assert_int_equal(q3_gguf_write(w, gguf, NULL, NULL, &err), Q3_OK);
    q3_gguf_writer_free(w);
    expect_load_error(gguf, Q3_EFORMAT, "tokenizer.ggml.tokens");
}

/* A small tokenizer.json exercises the loader's own paths: string merges ("a b"), no
 * normalizer, a pattern other than Qwen's. */
static void test_small_json(void **state) {
    (void)state;
    const char *path = tmp_path(1, "test_tokenizer_small.json");
    write_file(path, "{\"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": "
                     "{\"Regex\": \"\\\\s+|\\\\S+\"}, \"behavior\": \"Isolated\", \"invert\": false},"
                     "\"added_tokens\": [{\"id\": 6, \"content\": \"<s>\", \"special\": true}],"
                     "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2,"
                     "\"abb\": 3, \"\\u0120\": 4, \"bb\": 5}, \"merges\": [\"a b\", \"b b\", \"ab b\"]}}");
    q3_tokenizer *t = load_ok(path);
    assert_int_equal(q3_tok_vocab_size(t), 7);
    int n;
    /* "abb": a·b ranks first, then ab·b; "bb" never forms. */
    int32_t *ids = encode_ok(t, "abb <s>bbb", 10, true, &n);
    int32_t want[] = {3, 4, 6, 5, 1};
    assert_int_equal(n, 5);
    assert_memory_equal(ids, want, sizeof want);
    free(ids);
    q3_error err = {0};
    /* "c" has no byte token in this vocabulary. */
    assert_int_equal(q3_tok_encode(t, "c", 1, true, &ids, &n, &err), Q3_EINVAL);
    assert_non_null(strstr(err.msg, "0x63"));
    q3_tok_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases_from_tokenizer_json),
        cmocka_unit_test(test_cases_from_gguf),
        cmocka_unit_test(test_more_hf_cases),
        cmocka_unit_test(test_load_directory),
        cmocka_unit_test(test_find_and_pieces),
        cmocka_unit_test(test_parse_special_off),
        cmocka_unit_test(test_random_round_trip),
        cmocka_unit_test(test_stream_whole_characters),
        cmocka_unit_test(test_stream_leftovers),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_decode_errors),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_small_json),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
