/* Tests of the Jinja renderer (src/text/jinja*.c).
 *
 * Two references: fixtures/chat-templates/render_cases.json, five Qwen-family chat templates x 9
 * conversations rendered by transformers' apply_chat_template, which must come out byte for
 * byte; and jinja_cases.json, small templates over the whole language rendered by Jinja2 itself
 * (set up as transformers sets it up), where output must match and what Jinja refuses must be
 * refused. Then what only this renderer has: error messages that name line and column, and the
 * limits that keep a hostile template from hanging or exhausting memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"
#include "text/jinja.h"

/* ---- helpers ---- */

static void assert_same_text(const char *name, const char *got, const char *want) {
    if (!strcmp(got, want)) return;
    size_t at = 0;
    while (got[at] && got[at] == want[at]) at++;
    size_t from = at > 40 ? at - 40 : 0;
    fail_msg("%s: differs at byte %zu of %zu (want %zu)\n  got:  ...%.80s\n  want: ...%.80s", name, at, strlen(got),
             strlen(want), got + from, want + from);
}

static json_t *load_json(const char *rel) {
    json_error_t err;
    json_t *root = json_load_file(fixture_path(0, rel), 0, &err);
    if (!root) fail_msg("%s: %s", rel, err.text);
    return root;
}

static char *read_text(const char *rel, size_t *len) {
    FILE *f = fopen(fixture_path(1, rel), "rb");
    if (!f) fail_msg("%s: cannot open", rel);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return s;
}

static q3_jinja *compile_ok(const char *src, const char *name) {
    q3_jinja *t = NULL;
    q3_error e = {0};
    if (q3_jinja_compile(src, strlen(src), name, &t, &e)) fail_msg("%s: compile: %s", name, e.msg);
    return t;
}

/* Renders src with the context (JSON text, may be NULL) and returns the status; *out gets the
 * text or the error message (the caller frees). */
static q3_status render_src(const char *src, const char *context_json, const q3_jinja_limits *lim, char **out) {
    q3_jinja *t = NULL;
    q3_error e = {0};
    q3_status st = q3_jinja_compile(src, strlen(src), "t", &t, &e);
    json_t *ctx = context_json ? json_loads(context_json, 0, NULL) : NULL;
    if (context_json && !ctx) fail_msg("bad JSON in the test itself: %s", context_json);
    char *text = NULL;
    if (!st) st = q3_jinja_render(t, ctx, lim, &text, &e);
    *out = st ? strdup(e.msg) : text;
    json_decref(ctx);
    q3_jinja_free(t);
    return st;
}

static void expect_render(const char *src, const char *ctx, const char *want) {
    char *got;
    q3_status st = render_src(src, ctx, NULL, &got);
    if (st) fail_msg("%s: failed: %s", src, got);
    assert_same_text(src, got, want);
    free(got);
}

/* The render (or compile) fails with status, and the message contains want. */
static void expect_error(const char *src, const char *ctx, const q3_jinja_limits *lim, q3_status status,
                         const char *want) {
    char *got;
    q3_status st = render_src(src, ctx, lim, &got);
    if (st != status || !strstr(got, want))
        fail_msg("%s: want status %d with '%s', got %d: %s", src, status, want, st, got);
    free(got);
}

/* ---- the references ---- */

static void test_jinja_reference_cases(void **state) {
    (void)state;
    json_t *root = load_json("chat-templates/jinja_cases.json");
    size_t i, checked = 0;
    json_t *c;
    json_array_foreach(json_object_get(root, "cases"), i, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        const char *src = json_string_value(json_object_get(c, "template"));
        q3_jinja *t = NULL;
        q3_error e = {0};
        char *out = NULL;
        q3_status st = q3_jinja_compile(src, strlen(src), name, &t, &e);
        if (!st) st = q3_jinja_render(t, json_object_get(c, "context"), NULL, &out, &e);
        const json_t *want = json_object_get(c, "rendered");
        if (want && st) fail_msg("%s: failed: %s", name, e.msg);
        if (want) assert_same_text(name, out, json_string_value(want));
        if (!want && !st) fail_msg("%s: rendered '%s' where Jinja refuses (%s)", name, out,
                                   json_string_value(json_object_get(c, "jinja_error")));
        if (!want && !strstr(e.msg, name)) fail_msg("%s: the error does not name the template: %s", name, e.msg);
        free(out);
        q3_jinja_free(t);
        checked++;
    }
    assert_true(checked > 100);
    json_decref(root);
}

/* The context transformers' apply_chat_template gives a template: messages, tools (None when
 * there are none), documents None, add_generation_prompt, then the extra keyword arguments. */
static json_t *chat_context(const json_t *c) {
    json_t *ctx = json_pack("{s:O, s:O, s:n, s:O}", "messages", json_object_get(c, "messages"), "tools",
                            json_object_get(c, "tools"), "documents", "add_generation_prompt",
                            json_object_get(c, "add_generation_prompt"));
    json_object_update(ctx, json_object_get(c, "kwargs"));
    return ctx;
}

static void test_render_cases(void **state) {
    (void)state;
    json_t *root = load_json("chat-templates/render_cases.json");
    size_t i, checked = 0;
    json_t *c;
    json_array_foreach(json_object_get(root, "cases"), i, c) {
        char rel[256], label[256];
        const char *tmpl = json_string_value(json_object_get(c, "template"));
        snprintf(rel, sizeof rel, "chat-templates/%s.jinja", tmpl);
        snprintf(label, sizeof label, "%s/%s", tmpl, json_string_value(json_object_get(c, "case")));
        size_t len;
        char *src = read_text(rel, &len), *out = NULL;
        q3_jinja *t = NULL;
        q3_error e = {0};
        json_t *ctx = chat_context(c);
        if (q3_jinja_compile(src, len, rel, &t, &e) || q3_jinja_render(t, ctx, NULL, &out, &e))
            fail_msg("%s: %s", label, e.msg);
        assert_same_text(label, out, json_string_value(json_object_get(c, "rendered")));
        free(out);
        free(src);
        json_decref(ctx);
        q3_jinja_free(t);
        checked++;
    }
    assert_int_equal(checked, 45);
    json_decref(root);
}

/* ---- beyond what Jinja2 can be asked ---- */

static void test_generation_block_and_globals(void **state) {
    (void)state;
    /* transformers' {% generation %} marks assistant text; it renders its body. */
    expect_render("a{% generation %}b{{ 1 }}{% endgeneration %}c", NULL, "ab1c");
    /* context variables override the globals, as render(**kwargs) does */
    expect_render("{{ range }}", "{\"range\": 5}", "5");
    /* strftime_now gives the date in the format asked for: four digits of year */
    char *got;
    assert_int_equal(render_src("{{ strftime_now('%Y') }}", NULL, NULL, &got), Q3_OK);
    assert_int_equal(strlen(got), 4);
    free(got);
}

static void test_syntax_errors(void **state) {
    (void)state;
    expect_error("line one\n  {% if x %}\nno end", NULL, NULL, Q3_EFORMAT, "t:2:6: 'if' is never closed (no {% endif %})");
    expect_error("{{ x | nofilter }}", NULL, NULL, Q3_EFORMAT, "t:1:8: no filter named 'nofilter'");
    expect_error("{% if x is notatest %}{% endif %}", NULL, NULL, Q3_EFORMAT, "t:1:12: no test named 'notatest'");
    expect_error("ab\n{{ 1 + }}", NULL, NULL, Q3_EFORMAT, "t:2:8: expected an expression, got '}}'");
    expect_error("{{ 'open", NULL, NULL, Q3_EFORMAT, "t:1:4: unterminated string");
    expect_error("x {{ 1", NULL, NULL, Q3_EFORMAT, "t:1:3: unterminated tag");
    expect_error("{# never closed", NULL, NULL, Q3_EFORMAT, "t:1:1: unterminated comment");
    expect_error("{% endfor %}", NULL, NULL, Q3_EFORMAT, "t:1:4: unexpected 'endfor'");
    expect_error("{% break %}", NULL, NULL, Q3_EFORMAT, "'break' outside a loop");
    expect_error("{% include 'x' %}", NULL, NULL, Q3_EFORMAT, "unknown or unsupported statement 'include'");
    expect_error("{{ a ? b }}", NULL, NULL, Q3_EFORMAT, "t:1:6: unexpected character '?'");
    expect_error("\xc3\x28", NULL, NULL, Q3_EFORMAT, "not UTF-8");
    /* columns count characters, not bytes */
    expect_error("\xc3\xa9\xc3\xa9{{ ) }}", NULL, NULL, Q3_EFORMAT, "t:1:6:");
}

static void test_render_errors(void **state) {
    (void)state;
    expect_error("a\n  {{ x.y }}", NULL, NULL, Q3_EINVAL, "t:2:7: 'x' is undefined");
    expect_error("{% if messages[0].role != 'user' %}\n{{ raise_exception('first must be user') }}{% endif %}",
                 "{\"messages\": [{\"role\": \"bot\"}]}", NULL, Q3_EINVAL, "t:2:4: raise_exception: first must be user");
    expect_error("{{ 1 + 'a' }}", NULL, NULL, Q3_EINVAL, "t:1:6: unsupported operand types for +: 'int' and 'str'");
    expect_error("{{ 9223372036854775807 + 1 }}", NULL, NULL, Q3_EINVAL, "integer overflow");
    expect_error("{{ [1].append(2) }}", NULL, NULL, Q3_EINVAL, "would change a list");
    expect_error("{{ x }}", "[1]", NULL, Q3_EINVAL, "the context must be a JSON object");
}

static void test_limits(void **state) {
    (void)state;
    q3_jinja_limits lim = q3_jinja_default_limits();
    lim.max_output = 1000;
    expect_error("{% for i in range(100) %}0123456789ab{% endfor %}", NULL, &lim, Q3_EINVAL,
                 "t:1:26: the output passes 1000 bytes");
    expect_error("{% macro m() %}{% for i in range(100) %}0123456789ab{% endfor %}{% endmacro %}{% set x = m() %}",
                 NULL, &lim, Q3_EINVAL, "the output passes 1000 bytes");
    lim = q3_jinja_default_limits();
    lim.max_steps = 5000;
    expect_error("{% for a in range(100) %}{% for b in range(100) %}{% endfor %}{% endfor %}", NULL, &lim, Q3_EINVAL,
                 "more than 5000 steps (loop iterations, macro calls");
    expect_error("{{ range(6000)|length }}", NULL, &lim, Q3_EINVAL, "past the step limit");
    lim = q3_jinja_default_limits();
    lim.max_memory = 4 << 20;
    expect_error("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
                 NULL, &lim, Q3_EINVAL, "more than 4 MiB of memory");
    expect_error("{{ 'ab' * 100000000000 }}", NULL, &lim, Q3_EINVAL, "memory limit");
    /* Work that builds nothing is counted too (found by fuzzing, tests/fuzz/corpus/jinja/found-*):
     * reading a big string again and again, and lists repeated inside lists, which are far
     * larger to read, compare or print than to make. */
    lim = q3_jinja_default_limits();
    expect_error("{% set big = 'x' * 1000000 %}{% for i in range(2000) %}{% if 'y' in big %}{% endif %}{% endfor %}",
                 NULL, &lim, Q3_EINVAL, "more than 1000000 steps");
    const char *nested = "{% set a = [1] * 1000 %}{% set b = [a] * 1000 %}{% set c = [b] * 1000 %}";
    char src[256];
    snprintf(src, sizeof src, "%s{{ c == c }}", nested);
    expect_error(src, NULL, &lim, Q3_EINVAL, "more than 1000000 steps");
    snprintf(src, sizeof src, "%s{{ (c ~ '')|length }}", nested);
    expect_error(src, NULL, &lim, Q3_EINVAL, "more than 1000000 steps");
    snprintf(src, sizeof src, "%s{{ c|tojson|length }}", nested);
    expect_error(src, NULL, &lim, Q3_EINVAL, "more than 1000000 steps");
    lim.max_memory = 16 << 20; /* a string built past the limit stops there, not at its end */
    expect_error("{{ ('x' * 1000000).replace('', 'abcdefghijklmnopqrstuvwxyz')|length }}", NULL, &lim, Q3_EINVAL,
                 "more than 16 MiB of memory");
    /* an empty sequence repeated any number of times is empty, at once */
    char *empty;
    assert_int_equal(render_src("{{ '' * 1000000000000000 }}{{ [] * 1000000000000000 }}", NULL, NULL, &empty), Q3_OK);
    assert_string_equal(empty, "[]");
    free(empty);
    lim = q3_jinja_default_limits();
    expect_error("{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}", NULL, &lim, Q3_EINVAL,
                 "macro calls and blocks nested more than 100 deep");
    /* deep nesting in the source is refused at compile time, not on the stack */
    char deep[4096] = "{{ ";
    for (int i = 0; i < 1000; i++) strcat(deep, "(");
    strcat(deep, "1");
    for (int i = 0; i < 1000; i++) strcat(deep, ")");
    strcat(deep, " }}");
    expect_error(deep, NULL, NULL, Q3_EFORMAT, "nested more than 200 deep");
    /* values nested deeper than printing goes print with an ellipsis instead of recursing */
    char *got;
    assert_int_equal(render_src("{% set ns = namespace(v=1) %}{% for i in range(2000) %}{% set ns.v = [ns.v] %}"
                                "{% endfor %}{{ (ns.v|string)[-5:] }}{{ ns.v == ns.v }}",
                                NULL, NULL, &got),
                     Q3_OK);
    assert_string_equal(got, "]]]]]False");
    free(got);
}

/* A render does not change the compiled template: the same one renders again identically. */
static void test_rerender(void **state) {
    (void)state;
    q3_jinja *t = compile_ok("{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
                             "{% endfor %}{{ ns.n }}",
                             "t");
    json_t *ctx = json_pack("{s:[i,i,i]}", "messages", 1, 2, 3);
    for (int k = 0; k < 3; k++) {
        char *out;
        assert_int_equal(q3_jinja_render(t, ctx, NULL, &out, NULL), Q3_OK);
        assert_string_equal(out, "3");
        free(out);
    }
    json_decref(ctx);
    q3_jinja_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jinja_reference_cases),
        cmocka_unit_test(test_render_cases),
        cmocka_unit_test(test_generation_block_and_globals),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_render_errors),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_rerender),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
