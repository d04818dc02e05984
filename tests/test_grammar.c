/* The grammar matcher (src/text/grammar.c) and the JSON-schema compiler (json_schema.c,
 * json_schema_regex.c): known texts accepted or refused whole, invalid schemas refused naming
 * their keyword, and random walks through each grammar's sentences, every one of which must be
 * JSON that jansson parses and that meets the schema (checked here by hand, per schema). */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "text/json_schema.h"

/* Whether the whole of text is a sentence of g (bytes one push at a time, or all at once). */
static bool matches(q3_grammar *g, const char *text, bool bytewise) {
    q3_matcher *m;
    q3_error e;
    assert_int_equal(q3_matcher_new(&m, g, &e), Q3_OK);
    bool ok = true;
    size_t n = strlen(text);
    if (bytewise) {
        for (size_t i = 0; ok && i < n; i++) ok = q3_matcher_push(m, text + i, 1);
    } else if (n) {
        ok = q3_matcher_push(m, text, n);
    }
    ok = ok && q3_matcher_accepting(m);
    q3_matcher_free(m);
    return ok;
}

static q3_grammar *schema_grammar(const char *schema_text) {
    json_error_t je;
    json_t *schema = json_loads(schema_text, 0, &je);
    if (!schema) fail_msg("bad test schema: %s", je.text);
    q3_grammar *g;
    q3_error e;
    q3_status st = q3_json_schema_grammar(schema, &g, &e);
    json_decref(schema);
    if (st) fail_msg("schema refused: %s", e.msg);
    return g;
}

static void expect(q3_grammar *g, const char *text, bool accepted) {
    for (int way = 0; way < 2; way++)
        if (matches(g, text, way) != accepted) fail_msg("%s: %s", accepted ? "refused" : "accepted", text);
}

static void check_texts(const char *schema, const char *const *good, const char *const *bad) {
    q3_grammar *g = schema_grammar(schema);
    for (; *good; good++) expect(g, *good, true);
    for (; *bad; bad++) expect(g, *bad, false);
    q3_grammar_release(g);
}

/* ---- the matcher ---- */

static void test_matcher_levels(void **state) {
    (void)state;
    q3_grammar_builder *b = q3_gb_new();
    int root = q3_gb_rule(b);
    q3_seq s = {0};
    q3_seq_literal(b, &s, "ab", 2);
    q3_seq_class(b, &s, "0-9", 1, 3);
    q3_gb_add_alt(b, root, &s);
    q3_seq_literal(b, &s, "ac", 2);
    q3_seq_until(b, &s, "\n</x>");
    q3_gb_add_alt(b, root, &s);
    q3_grammar *g;
    q3_error e;
    assert_int_equal(q3_grammar_build(b, root, &g, &e), Q3_OK);
    q3_gb_free(b);
    q3_matcher *m;
    assert_int_equal(q3_matcher_new(&m, g, &e), Q3_OK);
    assert_false(q3_matcher_accepting(m));
    assert_true(q3_matcher_push(m, "ab1", 3));
    assert_true(q3_matcher_accepting(m));
    assert_true(q3_matcher_push(m, "2", 1));
    assert_true(q3_matcher_push(m, "3", 1));
    assert_true(q3_matcher_finished(m)); /* three digits at most */
    assert_false(q3_matcher_push(m, "4", 1));
    q3_matcher_pop(m);
    q3_matcher_pop(m);
    q3_matcher_pop(m);
    assert_false(q3_matcher_accepting(m));
    assert_true(q3_matcher_push(m, "a", 1)); /* both alternatives still open */
    q3_matcher_commit(m);
    unsigned char stop, next;
    int room;
    assert_int_equal(q3_matcher_free_text(m, &stop, &next, &room), Q3_FREE_NONE);
    assert_false(q3_matcher_push(m, "x", 1));
    assert_true(q3_matcher_push(m, "cxy", 3)); /* only the UNTIL one survives */
    assert_int_equal(q3_matcher_free_text(m, &stop, &next, &room), Q3_FREE_UNTIL);
    assert_int_equal(stop, '\n');
    /* a terminator whose prefix repeats: "\n<\n</x" then ">" ends it */
    assert_true(q3_matcher_push(m, "\n<\n</x", 6));
    assert_false(q3_matcher_accepting(m));
    assert_true(q3_matcher_push(m, ">", 1));
    assert_true(q3_matcher_accepting(m));
    assert_true(q3_matcher_finished(m));
    q3_matcher_free(m);
    q3_grammar_release(g);
}

static void test_refuses_empty_repeats(void **state) {
    (void)state;
    q3_grammar_builder *b = q3_gb_new();
    int root = q3_gb_rule(b), opt = q3_gb_rule(b);
    q3_seq s = {0};
    q3_seq_class(b, &s, "a", 0, 1); /* opt ::= a? */
    q3_gb_add_alt(b, opt, &s);
    q3_seq_rule(&s, opt), q3_seq_rule(&s, root); /* root ::= opt root | "b": loops on nothing */
    q3_gb_add_alt(b, root, &s);
    q3_seq_literal(b, &s, "b", 1);
    q3_gb_add_alt(b, root, &s);
    q3_grammar *g;
    q3_error e;
    assert_int_equal(q3_grammar_build(b, root, &g, &e), Q3_EINVAL);
    q3_gb_free(b);
}

/* ---- schemas: known texts ---- */

static void test_object_properties(void **state) {
    (void)state;
    const char *schema = "{\"type\": \"object\", \"properties\": {\"name\": {\"type\": \"string\"},"
                         " \"age\": {\"type\": \"integer\"}}, \"required\": [\"name\", \"age\"],"
                         " \"additionalProperties\": false}";
    const char *good[] = {"{\"name\":\"Bob\",\"age\":42}", "{ \"name\" : \"A\\\"b\\u00e9\xc3\xa9\" , \"age\" : -7 }",
                          "\n{\"name\": \"\", \"age\": 0}\n", NULL};
    const char *bad[] = {"{\"age\":42,\"name\":\"Bob\"}", "{\"name\":\"Bob\"}", "{\"name\":\"Bob\",\"age\":4.5}",
                         "{\"name\":\"Bob\",\"age\":42,\"x\":1}", "{\"name\":Bob,\"age\":1}",
                         "{\"name\":\"a\x01\",\"age\":1}", "{\"name\":\"\\q\",\"age\":1}", "{\"name\":\"\xc3\",\"age\":1}",
                         "{\"name\":\"a\",\"age\":01}", "{\"name\":\"a\",\"age\":1} x", NULL};
    check_texts(schema, good, bad);
}

static void test_optional_properties(void **state) {
    (void)state;
    const char *schema = "{\"properties\": {\"a\": {\"type\": \"integer\"}, \"b\": {\"type\": \"integer\"},"
                         " \"c\": {\"type\": \"integer\"}}, \"required\": [\"b\"]}";
    const char *good[] = {"{\"b\":1}", "{\"a\":1,\"b\":2}", "{\"b\":2,\"c\":3}", "{\"a\":1,\"b\":2,\"c\":3}", NULL};
    const char *bad[] = {"{}", "{\"a\":1}", "{,\"b\":1}", "{\"b\":1,}", "{\"a\":1,,\"b\":1}", "{\"c\":1,\"b\":1}", NULL};
    check_texts(schema, good, bad);
    const char *open = "{\"type\": \"object\"}"; /* no properties: any members */
    const char *good2[] = {"{}", "{\"x\": [1, {\"y\": null}], \"z\": true}", NULL};
    const char *bad2[] = {"[]", "{\"x\"}", "{\"x\": tru}", NULL};
    check_texts(open, good2, bad2);
}

static void test_values(void **state) {
    (void)state;
    const char *good[] = {"\"red\"", "7", "null", "{\"k\":[1,2]}", NULL};
    const char *bad[] = {"\"blue\"", "8", "\"7\"", "{\"k\":[1, 2]}", NULL};
    check_texts("{\"anyOf\": [{\"enum\": [\"red\", 7, null]}, {\"const\": {\"k\": [1, 2]}}]}", good, bad);
    const char *good_n[] = {"0", "-1.5", "3e10", "2.25E-3", "\"x\"", "null", NULL};
    const char *bad_n[] = {"1.", ".5", "+1", "1e", "true", NULL};
    check_texts("{\"type\": [\"number\", \"string\"], \"nullable\": true}", good_n, bad_n);
}

static void test_arrays(void **state) {
    (void)state;
    const char *good[] = {"[true]", "[true, false,true]", "[ false ]", NULL};
    const char *bad[] = {"[]", "[true,true,true,true]", "[true,]", "[,true]", "[1]", NULL};
    check_texts("{\"type\": \"array\", \"items\": {\"type\": \"boolean\"}, \"minItems\": 1, \"maxItems\": 3}", good, bad);
    const char *good2[] = {"[]", "[\"a\"]", "[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\"]", NULL};
    const char *bad2[] = {"[\"a\" \"b\"]", "[\"a\",]", NULL};
    check_texts("{\"type\": \"array\", \"items\": {\"type\": \"string\"}}", good2, bad2);
    const char *good3[] = {"[1,2]", NULL};
    const char *bad3[] = {"[1]", "[1,2,3]", NULL};
    check_texts("{\"type\": \"array\", \"items\": {\"type\": \"integer\"}, \"minItems\": 2, \"maxItems\": 2}", good3, bad3);
}

static void test_refs_and_recursion(void **state) {
    (void)state;
    const char *schema = "{\"$ref\": \"#/$defs/node\", \"$defs\": {\"node\": {\"type\": \"object\","
                         " \"properties\": {\"value\": {\"type\": \"integer\"}, \"children\": {\"type\": \"array\","
                         " \"items\": {\"$ref\": \"#/$defs/node\"}}}, \"required\": [\"value\"]}}}";
    const char *good[] = {"{\"value\":1}", "{\"value\":1,\"children\":[{\"value\":2,\"children\":[{\"value\":3}]},{\"value\":4}]}", NULL};
    const char *bad[] = {"{\"value\":1,\"children\":[{}]}", "{\"children\":[]}", NULL};
    check_texts(schema, good, bad);
    const char *all = "{\"allOf\": [{\"properties\": {\"a\": {\"type\": \"integer\"}}, \"required\": [\"a\"]},"
                      " {\"properties\": {\"b\": {\"type\": \"string\"}}, \"required\": [\"b\"]}],"
                      " \"additionalProperties\": false}";
    const char *good2[] = {"{\"a\":1,\"b\":\"x\"}", NULL};
    const char *bad2[] = {"{\"a\":1}", "{\"b\":\"x\"}", NULL};
    check_texts(all, good2, bad2);
}

static void test_formats_and_patterns(void **state) {
    (void)state;
    const char *good[] = {"\"2024-01-15\"", NULL};
    const char *bad[] = {"\"2024-13-01\"", "\"2024-1-15\"", "\"x\"", NULL};
    check_texts("{\"type\": \"string\", \"format\": \"date\"}", good, bad);
    const char *good_dt[] = {"\"2024-01-15T10:20:30Z\"", "\"2024-01-15T23:59:59.123+05:30\"", NULL};
    const char *bad_dt[] = {"\"2024-01-15 10:20:30Z\"", "\"2024-01-15T24:00:00Z\"", NULL};
    check_texts("{\"type\": \"string\", \"format\": \"date-time\"}", good_dt, bad_dt);
    const char *good_u[] = {"\"123e4567-e89b-12d3-a456-426614174000\"", NULL};
    const char *bad_u[] = {"\"123e4567e89b-12d3-a456-426614174000\"", "\"g23e4567-e89b-12d3-a456-426614174000\"", NULL};
    check_texts("{\"type\": \"string\", \"format\": \"uuid\"}", good_u, bad_u);
    const char *good_e[] = {"\"ada.lovelace@example.co.uk\"", NULL};
    const char *bad_e[] = {"\"ada@\"", "\"@example.com\"", "\"ada example.com\"", NULL};
    check_texts("{\"type\": \"string\", \"format\": \"email\"}", good_e, bad_e);
    const char *good_p[] = {"\"ABC-12\"", "\"XYZ-1234\"", NULL};
    const char *bad_p[] = {"\"AB-12\"", "\"ABC-1\"", "\"abc-123\"", "\"ABC-12345\"", NULL};
    check_texts("{\"type\": \"string\", \"pattern\": \"^[A-Z]{3}-\\\\d{2,4}$\"}", good_p, bad_p);
    /* characters JSON escapes come out as escapes: a quote in the pattern is \" in the text */
    const char *good_q[] = {"\"say \\\"hi\\\"\"", "\"say \\\"hoho\\\"\"", NULL};
    const char *bad_q[] = {"\"say \"hi\"\"", "\"say \\\"h\\\"\"", NULL};
    check_texts("{\"pattern\": \"^say \\\"(hi|ho(ho)*)\\\"$\"}", good_q, bad_q);
    const char *good_l[] = {"\"ab\"", "\"abc\"", NULL};
    const char *bad_l[] = {"\"a\"", "\"abcd\"", NULL};
    check_texts("{\"type\": \"string\", \"minLength\": 2, \"maxLength\": 3}", good_l, bad_l);
}

/* ---- schemas: refused, naming the keyword ---- */

static void test_invalid_schemas(void **state) {
    (void)state;
    static const struct {
        const char *schema, *keyword;
    } cases[] = {
        {"{\"type\": \"strnig\"}", "'type'"},
        {"{\"type\": 5}", "'type'"},
        {"{\"type\": \"object\", \"required\": \"a\"}", "'required'"},
        {"{\"type\": \"object\", \"properties\": []}", "'properties'"},
        {"{\"type\": \"integer\", \"minimum\": 1}", "'minimum'"},
        {"{\"$ref\": \"#/$defs/none\"}", "'$ref'"},
        {"{\"$ref\": \"http://example.com/schema\"}", "'$ref'"},
        {"{\"type\": \"array\", \"minItems\": 3, \"maxItems\": 1}", "'maxItems'"},
        {"{\"type\": \"array\", \"minItems\": -1}", "'minItems'"},
        {"{\"enum\": []}", "'enum'"},
        {"{\"anyOf\": {}}", "'anyOf'"},
        {"{\"pattern\": \"(a*)*\"}", "'pattern'"},
        {"{\"pattern\": \"a\\\\1\"}", "'pattern'"},
        {"{\"pattern\": \"(?=a)\"}", "'pattern'"},
        {"{\"pattern\": \"[b-a]\"}", "'pattern'"},
        {"{\"type\": \"object\", \"properties\": {\"x\": {\"type\": \"nope\"}}}", "$.properties.x"},
        {"false", "'schema'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *schema = json_loads(cases[i].schema, JSON_DECODE_ANY, NULL);
        assert_non_null(schema);
        q3_grammar *g = NULL;
        q3_error e = {0};
        assert_int_equal(q3_json_schema_grammar(schema, &g, &e), Q3_EINVAL);
        assert_null(g);
        if (!strstr(e.msg, cases[i].keyword)) fail_msg("%s: error \"%s\" does not name %s", cases[i].schema, e.msg, cases[i].keyword);
        json_decref(schema);
    }
}

/* A schema that asks for unbounded work is refused with a message naming the limit: groups nested
 * deeper than the regex parser recurses, a merge that recurses without end ($ref to "#" beside
 * other keywords, under anyOf), more subschemas than the compiler looks through, a grammar larger
 * than the builder holds. */
static void expect_refused(json_t *schema, const char *needle) {
    assert_non_null(schema);
    q3_grammar *g = NULL;
    q3_error e = {0};
    assert_int_equal(q3_json_schema_grammar(schema, &g, &e), Q3_EINVAL);
    assert_null(g);
    if (!strstr(e.msg, needle)) fail_msg("error \"%s\" does not say \"%s\"", e.msg, needle);
    json_decref(schema);
}

static void test_schema_limits(void **state) {
    (void)state;
    char pattern[128] = {0};
    for (int i = 0; i < 40; i++) pattern[i] = '(', pattern[41 + i] = ')';
    pattern[40] = 'a';
    expect_refused(json_pack("{s:s}", "pattern", pattern), "nested deeper than 32");
    expect_refused(json_loads("{\"anyOf\": [{\"$ref\": \"#\"}], \"type\": \"object\"}", 0, NULL),
                   "nests deeper than 128");
    json_t *props = json_object(), *arrays = json_object();
    for (int i = 0; i < 9000; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        json_object_set_new(props, name, json_pack("{s:s}", "type", "string"));
        if (i < 500) json_object_set_new(arrays, name, json_pack("{s:s,s:i}", "type", "array", "maxItems", 256));
    }
    expect_refused(json_pack("{s:o}", "properties", props), "more than 8192 subschemas");
    /* An enum is limited to the values the matcher can keep alive together: every one of the
     * largest allowed is still reachable, the last included. */
    json_t *values = json_array();
    for (int i = 0; i < 513; i++) json_array_append_new(values, json_sprintf("value-%d", i));
    expect_refused(json_pack("{s:O}", "enum", values), "has 513 values; at most 512");
    json_array_remove(values, 512);
    json_t *largest = json_pack("{s:o}", "enum", values);
    char *schema = json_dumps(largest, 0);
    json_decref(largest);
    q3_grammar *g = schema_grammar(schema);
    expect(g, "\"value-511\"", true);
    expect(g, "\"value-512\"", false);
    q3_grammar_release(g);
    free(schema);
    expect_refused(json_pack("{s:o}", "properties", arrays), "too large a grammar");
}

/* ---- random sentences ---- */

static uint64_t rng = 88172645463325252ULL;
static unsigned next_random(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (unsigned)(rng >> 11);
}

/* A random sentence of g into out (at most cap - 1 bytes); false when the walk got lost. Bytes
 * are tried in a random order; past half of cap the walk prefers bytes that close things. */
static bool random_sentence(q3_grammar *g, char *out, size_t cap) {
    q3_matcher *m;
    q3_error e;
    assert_int_equal(q3_matcher_new(&m, g, &e), Q3_OK);
    size_t n = 0;
    const char *closers = "\"}]0123456789eul";
    while (n + 1 < cap) {
        if (q3_matcher_accepting(m) && (q3_matcher_finished(m) || next_random() % 8 == 0 || n > cap / 2)) break;
        int choice = -1;
        for (const char *c = closers; n > cap / 2 && *c && choice < 0; c++)
            if (q3_matcher_push(m, c, 1)) choice = (unsigned char)*c, q3_matcher_pop(m);
        int allowed[256], n_allowed = 0;
        for (int c = 0; c < 256 && choice < 0; c++) {
            char ch = (char)c;
            if (q3_matcher_push(m, &ch, 1)) allowed[n_allowed++] = c, q3_matcher_pop(m);
        }
        if (choice < 0 && n_allowed == 0) break;
        if (choice < 0) choice = allowed[next_random() % (unsigned)n_allowed];
        char ch = (char)choice;
        assert_true(q3_matcher_push(m, &ch, 1));
        q3_matcher_commit(m);
        out[n++] = ch;
    }
    out[n] = 0;
    bool done = q3_matcher_accepting(m);
    q3_matcher_free(m);
    return done;
}

typedef void (*check_fn)(const json_t *v);

static void check_person(const json_t *v) {
    assert_true(json_is_object(v));
    assert_true(json_is_string(json_object_get(v, "name")));
    const json_t *tags = json_object_get(v, "tags");
    assert_true(json_is_array(tags) && json_array_size(tags) <= 2);
    for (size_t i = 0; i < json_array_size(tags); i++) {
        const char *t = json_string_value(json_array_get(tags, i));
        assert_true(t && (!strcmp(t, "a") || !strcmp(t, "b")));
    }
    const json_t *born = json_object_get(v, "born");
    if (born) assert_true(json_is_string(born) && strlen(json_string_value(born)) == 10);
    size_t keys = 2 + (born != NULL);
    assert_int_equal(json_object_size(v), keys);
}

static void check_any_object(const json_t *v) { assert_true(json_is_object(v)); }

static void walk(const char *schema, check_fn check) {
    q3_grammar *g = schema_grammar(schema);
    int done = 0;
    for (int i = 0; i < 200; i++) {
        char text[512];
        if (!random_sentence(g, text, sizeof text)) {
            if (getenv("Q3_SHOW_WALKS")) fprintf(stderr, "lost: %s\n", text);
            continue;
        }
        json_error_t je;
        json_t *v = json_loads(text, 0, &je);
        if (!v) fail_msg("not JSON (%s): %s", je.text, text);
        check(v);
        json_decref(v);
        done++;
    }
    if (done <= 100) fail_msg("only %d of 200 walks ended", done); /* most walks end */
    q3_grammar_release(g);
}

static void test_random_sentences_are_valid(void **state) {
    (void)state;
    walk("{\"type\": \"object\", \"properties\": {\"name\": {\"type\": \"string\", \"maxLength\": 12},"
         " \"born\": {\"type\": \"string\", \"format\": \"date\"}, \"tags\": {\"type\": \"array\","
         " \"items\": {\"enum\": [\"a\", \"b\"]}, \"maxItems\": 2}}, \"required\": [\"name\", \"tags\"]}",
         check_person);
    q3_grammar *g;
    q3_error e;
    assert_int_equal(q3_json_object_grammar(&g, &e), Q3_OK);
    char text[512];
    int done = 0;
    for (int i = 0; i < 200; i++) {
        if (!random_sentence(g, text, sizeof text)) continue;
        json_t *v = json_loads(text, 0, NULL);
        if (!v) fail_msg("not JSON: %s", text);
        check_any_object(v);
        json_decref(v);
        done++;
    }
    assert_true(done > 100);
    q3_grammar_release(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matcher_levels),       cmocka_unit_test(test_refuses_empty_repeats),
        cmocka_unit_test(test_object_properties),    cmocka_unit_test(test_optional_properties),
        cmocka_unit_test(test_values),               cmocka_unit_test(test_arrays),
        cmocka_unit_test(test_refs_and_recursion),   cmocka_unit_test(test_formats_and_patterns),
        cmocka_unit_test(test_invalid_schemas),      cmocka_unit_test(test_random_sentences_are_valid),
        cmocka_unit_test(test_schema_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
