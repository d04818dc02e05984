/* Tests of the importance matrix files (src/formats/imatrix.c): accumulation against sums computed
 * here, a save -> load round trip through llama.cpp's GGUF layout (checked field by field with
 * our GGUF reader: general.type, the metadata keys, NAME.in_sum2 [n, mats] and NAME.counts
 * [1, mats] as F32), llama.cpp's legacy .dat files (written byte by byte here from the format's
 * description), and bad files refused with a message naming the file and tensor. */
#include <math.h>
#include "formats/imatrix.h"
#include "formats/gguf.h"
#include "testutil.h"

static void test_accumulates_squares(void **state) {
    (void)state;
    q3_imatrix m = {0};
    q3_error e = {0};
    q3_imatrix_entry *en;
    assert_int_equal(q3_imatrix_entry_get(&m, "blk.0.ffn_up_exps.weight", 4, 3, &en, &e), 0);
    float x[3][6] = {{1, 2, 3, 4, 99, 99}, {-1, 0.5f, 0, 2, 99, 99}, {0, 0, 0, 1, 99, 99}};
    q3_imatrix_add(en, 1, &x[0][0], 3, 6); /* three rows of 4, stride 6 */
    q3_imatrix_add(en, 2, &x[1][0], 1, 6);
    assert_int_equal(en->counts[0], 0);
    assert_int_equal(en->counts[1], 3);
    assert_int_equal(en->counts[2], 1);
    float imp[4];
    assert_true(q3_imatrix_importance(&m, "blk.0.ffn_up_exps.weight", 1, 4, imp));
    const float want[4] = {(1 + 1 + 0) / 3.0f, (4 + 0.25f + 0) / 3.0f, 9 / 3.0f, (16 + 4 + 1) / 3.0f};
    for (int j = 0; j < 4; j++) assert_float_equal(imp[j], want[j], 1e-6);
    assert_true(q3_imatrix_importance(&m, "blk.0.ffn_up_exps.weight", 0, 4, imp)); /* no tokens: all 1 */
    for (int j = 0; j < 4; j++) assert_true(imp[j] == 1.0f);
    assert_false(q3_imatrix_importance(&m, "blk.0.ffn_up_exps.weight", 3, 4, imp));
    assert_false(q3_imatrix_importance(&m, "blk.0.ffn_up_exps.weight", 0, 5, imp));
    assert_false(q3_imatrix_importance(&m, "blk.1.attn_q.weight", 0, 4, imp));
    /* The same name with another shape is an error, not a silent mix. */
    assert_int_not_equal(q3_imatrix_entry_get(&m, "blk.0.ffn_up_exps.weight", 8, 3, &en, &e), 0);
    assert_non_null(strstr(e.msg, "blk.0.ffn_up_exps.weight"));
    q3_imatrix_free(&m);
}

static void test_gguf_round_trip(void **state) {
    (void)state;
    q3_imatrix m = {0}, back = {0};
    q3_error e = {0};
    q3_imatrix_entry *a, *b;
    assert_int_equal(q3_imatrix_entry_get(&m, "blk.0.attn_q.weight", 256, 1, &a, &e), 0);
    assert_int_equal(q3_imatrix_entry_get(&m, "blk.0.ffn_down_exps.weight", 128, 16, &b, &e), 0);
    for (int j = 0; j < 256; j++) a->sums[j] = 0.5 * j;
    a->counts[0] = 512;
    for (int j = 0; j < 128 * 16; j++) b->sums[j] = j % 7;
    for (int k = 0; k < 16; k++) b->counts[k] = k;
    m.dataset = strdup("calibration.txt");
    m.chunk_count = 2;
    m.chunk_size = 256;
    const char *path = tmp_path(0, "imatrix-round-trip.gguf");
    assert_int_equal(q3_imatrix_save(&m, path, &e), 0);

    q3_gguf g;
    assert_int_equal(q3_gguf_open(&g, path, &e), 0);
    q3_gguf_str type;
    assert_int_equal(q3_gguf_get_str(&g, "general.type", &type, &e), 0);
    assert_int_equal((int)type.len, 7);
    assert_memory_equal(type.ptr, "imatrix", 7);
    int64_t v;
    assert_int_equal(q3_gguf_get_int(&g, "imatrix.chunk_size", &v, &e), 0);
    assert_int_equal(v, 256);
    const q3_gguf_tensor *sums = q3_gguf_find_tensor(&g, "blk.0.ffn_down_exps.weight.in_sum2");
    const q3_gguf_tensor *counts = q3_gguf_find_tensor(&g, "blk.0.ffn_down_exps.weight.counts");
    assert_non_null(sums);
    assert_non_null(counts);
    assert_int_equal(sums->type, Q3_TYPE_F32);
    assert_int_equal(sums->ne[0], 128);
    assert_int_equal(sums->ne[1], 16);
    assert_int_equal(counts->ne[0], 1);
    assert_int_equal(counts->ne[1], 16);
    q3_gguf_close(&g);

    assert_int_equal(q3_imatrix_load(&back, path, &e), 0);
    assert_int_equal(back.n_entries, 2);
    assert_string_equal(back.dataset, "calibration.txt");
    assert_int_equal(back.chunk_count, 2);
    float imp[128];
    assert_true(q3_imatrix_importance(&back, "blk.0.ffn_down_exps.weight", 5, 128, imp));
    for (int j = 0; j < 128; j++) assert_float_equal(imp[j], (float)((5 * 128 + j) % 7) / 5, 1e-6);
    assert_true(q3_imatrix_importance(&back, "blk.0.ffn_down_exps.weight", 0, 128, imp)); /* count 0 */
    assert_true(imp[3] == 1.0f);
    q3_imatrix_free(&back);
    q3_imatrix_free(&m);
    remove(path);
}

static void put_i32(FILE *f, int32_t v) { assert_int_equal(fwrite(&v, 4, 1, f), 1); }

/* llama.cpp's legacy layout: sums are mean squares times ncall; stacked experts one long row. */
static void test_legacy_dat(void **state) {
    (void)state;
    const char *path = tmp_path(0, "imatrix-legacy.dat");
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    put_i32(f, 2);
    const char *names[2] = {"blk.0.attn_k.weight", "blk.0.ffn_gate_exps.weight"};
    const int32_t nval[2] = {8, 8 * 3};
    for (int i = 0; i < 2; i++) {
        put_i32(f, (int32_t)strlen(names[i]));
        assert_int_equal(fwrite(names[i], 1, strlen(names[i]), f), strlen(names[i]));
        put_i32(f, 4); /* ncall */
        put_i32(f, nval[i]);
        for (int j = 0; j < nval[i]; j++) {
            float v = 4.0f * (float)(j + 1);
            assert_int_equal(fwrite(&v, 4, 1, f), 1);
        }
    }
    put_i32(f, 4);
    put_i32(f, 8);
    assert_int_equal(fwrite("wiki.txt", 1, 8, f), 8);
    fclose(f);
    q3_imatrix m = {0};
    q3_error e = {0};
    assert_int_equal(q3_imatrix_load(&m, path, &e), 0);
    assert_string_equal(m.dataset, "wiki.txt");
    float imp[8];
    assert_true(q3_imatrix_importance(&m, "blk.0.attn_k.weight", 0, 8, imp));
    assert_float_equal(imp[7], 8.0f, 1e-6);
    assert_true(q3_imatrix_importance(&m, "blk.0.ffn_gate_exps.weight", 2, 8, imp)); /* expert 2 */
    assert_float_equal(imp[0], 17.0f, 1e-6);
    assert_false(q3_imatrix_importance(&m, "blk.0.ffn_gate_exps.weight", 3, 8, imp));
    q3_imatrix_free(&m);
    remove(path);
}

static void expect_load_error(const char *path, const char *needle) {
    q3_imatrix m = {0};
    q3_error e = {0};
    assert_int_not_equal(q3_imatrix_load(&m, path, &e), 0);
    if (!strstr(e.msg, needle)) fail_msg("error '%s' does not mention '%s'", e.msg, needle);
    assert_int_equal(m.n_entries, 0);
}

static void test_bad_files(void **state) {
    (void)state;
    expect_load_error(tmp_path(0, "no-such-imatrix.gguf"), "no-such-imatrix.gguf");
    const char *path = tmp_path(1, "imatrix-bad.dat");
    FILE *f = fopen(path, "wb");
    put_i32(f, 1);
    put_i32(f, 5);
    assert_int_equal(fwrite("blk.0", 1, 5, f), 5);
    put_i32(f, 1);
    put_i32(f, 100); /* promises 100 values, holds 2 */
    put_i32(f, 0);
    put_i32(f, 0);
    fclose(f);
    expect_load_error(path, "blk.0");
    /* A GGUF whose sums have no counts. */
    q3_gguf_writer *w;
    q3_error e = {0};
    float sums[4] = {1, 2, 3, 4};
    assert_int_equal(q3_gguf_writer_new(&w, &e), 0);
    assert_int_equal(q3_gguf_add_tensor(w, "blk.0.attn_q.weight.in_sum2", Q3_TYPE_F32, 1, (int64_t[]){4}, sums, NULL,
                                        NULL, &e), 0);
    path = tmp_path(2, "imatrix-no-counts.gguf");
    assert_int_equal(q3_gguf_write(w, path, NULL, NULL, &e), 0);
    q3_gguf_writer_free(w);
    expect_load_error(path, "blk.0.attn_q.weight.counts");
    remove(path);
    remove(tmp_path(1, "imatrix-bad.dat"));
}

static void put_entry(FILE *f, const char *name, size_t name_len, int32_t ncall, int32_t nval, int32_t stored) {
    put_i32(f, (int32_t)name_len);
    assert_int_equal(fwrite(name, 1, name_len, f), name_len);
    put_i32(f, ncall);
    put_i32(f, nval);
    for (int32_t j = 0; j < stored; j++) put_i32(f, 0x3f800000); /* 1.0f */
}

/* What the fuzz target found (tests/fuzz/corpus/imatrix/found-*): a count the file cannot hold
 * is refused before memory is taken for it, names are whole and unique, and a count of a
 * million tokens comes back exactly (c + 0.5f rounded odd counts past 2^23 up). */
static void test_fuzz_findings(void **state) {
    (void)state;
    const char *path = tmp_path(0, "imatrix-found.dat");
    FILE *f = fopen(path, "wb");
    put_i32(f, 1);
    put_entry(f, "blk.0", 5, 1, 1 << 28, 1); /* 1 GiB of values promised, 4 bytes held */
    fclose(f);
    expect_load_error(path, "but only 4 bytes are left");
    f = fopen(path, "wb");
    put_i32(f, 2);
    put_entry(f, "blk.0", 5, 1, 2, 2);
    put_entry(f, "blk.0", 5, 1, 2, 2);
    fclose(f);
    expect_load_error(path, "blk.0 appears twice");
    f = fopen(path, "wb");
    put_i32(f, 1);
    put_entry(f, "blk\0.0", 5, 1, 2, 2);
    fclose(f);
    expect_load_error(path, "NUL");
    f = fopen(path, "wb");
    put_i32(f, 1);
    put_entry(f, "blk.0", 5, 10289155, 2, 2);
    fclose(f);
    q3_imatrix m = {0}, back = {0};
    q3_error e = {0};
    assert_int_equal(q3_imatrix_load(&m, path, &e), 0);
    const char *saved = tmp_path(1, "imatrix-found.gguf");
    assert_int_equal(q3_imatrix_save(&m, saved, &e), 0);
    assert_int_equal(q3_imatrix_load(&back, saved, &e), 0);
    assert_int_equal(back.entries[0].counts[0], 10289155);
    q3_imatrix_free(&m);
    q3_imatrix_free(&back);
    remove(saved);
    remove(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accumulates_squares),
        cmocka_unit_test(test_gguf_round_trip),
        cmocka_unit_test(test_legacy_dat),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_fuzz_findings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
