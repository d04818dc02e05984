/* The token mask (src/text/token_mask.c) over the real Qwen3 vocabulary, against brute force:
 * at each of a series of grammar states, the mask must hold exactly the tokens whose bytes the
 * matcher accepts when pushed one by one, whether the trie walk or a free-text table answered. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "testutil.h"
#include "text/json_schema.h"
#include "text/token_mask.h"

static q3_tokenizer *tok;
static q3_token_trie *trie;

static int setup(void **state) {
    (void)state;
    q3_error e;
    if (q3_tok_load(&tok, fixture_path(0, "qwen3-tokenizer/tokenizer.json"), &e)) fail_msg("%s", e.msg);
    if (q3_token_trie_new(&trie, tok, 151936, &e)) fail_msg("%s", e.msg);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    q3_token_trie_free(trie);
    q3_tok_free(tok);
    return 0;
}

static bool allowed(const uint64_t *mask, int id) { return mask[id >> 6] >> (id & 63) & 1; }

/* Compares the mask at m's state with pushing every token; returns how many are allowed. */
static int compare_with_brute_force(q3_matcher *m, const char *where) {
    size_t words = q3_token_mask_words(trie);
    uint64_t *mask = calloc(words, sizeof *mask);
    assert_non_null(mask);
    q3_token_mask(trie, m, mask);
    int n_allowed = 0;
    for (int id = 0; id < 151936; id++) {
        size_t len = 0;
        const char *piece = id < q3_tok_vocab_size(tok) ? q3_tok_piece(tok, id, &len) : NULL;
        bool want = piece && len && !q3_tok_is_special(tok, id) && q3_matcher_push(m, piece, len);
        if (want) q3_matcher_pop(m);
        if (want != allowed(mask, id)) fail_msg("%s: token %d (%.*s) %s", where, id, (int)len, piece ? piece : "",
                                                want ? "missing from the mask" : "in the mask wrongly");
        n_allowed += want;
    }
    free(mask);
    return n_allowed;
}

static void follow(q3_matcher *m, const char *text) {
    assert_true(q3_matcher_push(m, text, strlen(text)));
    q3_matcher_commit(m);
}

static void test_schema_states(void **state) {
    (void)state;
    json_t *schema = json_loads("{\"type\": \"object\", \"properties\": {\"name\": {\"type\": \"string\"},"
                                " \"n\": {\"type\": \"number\"}, \"when\": {\"type\": \"string\", \"format\": \"date\"},"
                                " \"tags\": {\"type\": \"array\", \"items\": {\"enum\": [\"red\", \"green\"]}},"
                                " \"mail\": {\"type\": \"string\", \"format\": \"email\"},"
                                " \"nick\": {\"type\": \"string\", \"minLength\": 2, \"maxLength\": 5}},"
                                " \"required\": [\"name\", \"n\", \"when\", \"tags\", \"mail\", \"nick\"]}", 0, NULL);
    q3_grammar *g;
    q3_matcher *m;
    q3_error e;
    assert_int_equal(q3_json_schema_grammar(schema, &g, &e), Q3_OK);
    assert_int_equal(q3_matcher_new(&m, g, &e), Q3_OK);
    static const struct {
        const char *text, *where;
    } steps[] = {
        {"", "the start"},                 {"{", "after {"},
        {"\"name\": \"", "a free string"}, {"Ada \\u00e9 L", "inside the string"},
        {"\\", "after a backslash"},       {"n\", \"n\": ", "before a number"},
        {"12", "inside a number"},         {".5, \"when\": \"20", "inside a date"},
        {"24-01-02\", \"tags\": [", "an enum list"}, {"\"gr", "inside an enum value"},
        {"een\"], \"mail\": \"ada", "an e-mail's name"}, {".b@ex", "an e-mail's domain"},
        {"ample.c", "a domain's last label"}, {"om\", \"nick\": \"", "a bounded string"},
        {"\u00e9", "three characters left"}, {"ab", "one left"}, {"c\"", "before the end"}, {" }", "the end"},
    };
    int counts[sizeof steps / sizeof *steps];
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
        if (*steps[i].text) follow(m, steps[i].text);
        counts[i] = compare_with_brute_force(m, steps[i].where);
    }
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) printf("%-22s %6d tokens\n", steps[i].where, counts[i]);
    assert_true(counts[2] > 100000); /* inside a string nearly everything goes */
    assert_true(counts[0] < 1000);   /* white space or { */
    assert_true(counts[17] > 0 && counts[17] < 1000); /* only white space may follow */
    assert_true(q3_matcher_accepting(m));
    q3_matcher_free(m);
    q3_grammar_release(g);
    json_decref(schema);
}

static void test_until_states(void **state) {
    (void)state;
    json_t *tools = json_loads("[{\"type\": \"function\", \"function\": {\"name\": \"write_file\", \"parameters\":"
                               " {\"type\": \"object\", \"properties\": {\"path\": {\"type\": \"string\"},"
                               " \"mode\": {\"type\": \"integer\"}}, \"required\": [\"path\"]}}}]", 0, NULL);
    q3_grammar *g;
    q3_matcher *m;
    q3_error e;
    assert_int_equal(q3_tool_call_grammar(tools, NULL, Q3_TOOL_FORMAT_XML, &g, &e), Q3_OK);
    assert_int_equal(q3_matcher_new(&m, g, &e), Q3_OK);
    compare_with_brute_force(m, "the start of a call");
    follow(m, "<tool_call>\n<function=write_file>\n<parameter=path>\n");
    assert_true(compare_with_brute_force(m, "free parameter text") > 100000);
    follow(m, "a/b.c\n</para");
    compare_with_brute_force(m, "inside the terminator");
    follow(m, "meter>\n");
    compare_with_brute_force(m, "after a parameter");
    q3_matcher_free(m);
    q3_grammar_release(g);
    json_decref(tools);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_schema_states), cmocka_unit_test(test_until_states)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
