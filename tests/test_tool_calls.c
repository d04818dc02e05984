/* Tests of the reply parser (src/text/tool_call*.c): reasoning, content and tool calls in both
 * formats, whole and streamed.
 *
 * The reference is fixtures/chat-templates/tool_parse_cases.json (model output -> the OpenAI
 * message fields, with the rule each case checks); more cases below follow the rules of Qwen's
 * published parsers (Hermes-style JSON for Qwen3, Qwen3-Coder's XML parser) where the fixture
 * does not reach. Every case is also streamed, byte by byte and in random pieces, and the events
 * joined must equal the whole-reply result exactly; arguments must be Python's json.dumps
 * spelling of what they hold.
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
#include "text/chat.h"
#include "base/buf.h"
#include "text/tool_call.h"

/* ---- joining events ---- */

typedef struct joined {
    q3_buf reasoning, content;
    q3_buf args[16];
    char names[16][64], ids[16][64];
    size_t n_calls;       /* complete */
    bool open;            /* a call has started and not ended */
    const char *label;
} joined;

static void on_event(void *user, const q3_reply_event *ev) {
    joined *j = user;
    switch (ev->kind) {
    case Q3_REPLY_CONTENT:
    case Q3_REPLY_REASONING:
        if (j->open) fail_msg("%s: text while a call is open", j->label);
        assert_true(ev->len > 0);
        q3_buf_put(ev->kind == Q3_REPLY_CONTENT ? &j->content : &j->reasoning, ev->text, ev->len);
        break;
    case Q3_REPLY_CALL_START:
        if (j->open || ev->index != j->n_calls) fail_msg("%s: start of call %zu out of turn", j->label, ev->index);
        assert_true(j->n_calls < 16);
        j->open = true;
        snprintf(j->names[ev->index], sizeof j->names[0], "%s", ev->name);
        snprintf(j->ids[ev->index], sizeof j->ids[0], "%s", ev->id);
        j->args[ev->index].len = 0;
        break;
    case Q3_REPLY_CALL_ARGS:
        if (!j->open || ev->index != j->n_calls) fail_msg("%s: arguments outside their call", j->label);
        q3_buf_put(&j->args[ev->index], ev->text, ev->len);
        break;
    case Q3_REPLY_CALL_END:
    case Q3_REPLY_CALL_DROP:
        if (!j->open || ev->index != j->n_calls) fail_msg("%s: end of a call that did not start", j->label);
        j->open = false;
        if (ev->kind == Q3_REPLY_CALL_END) j->n_calls++;
        break;
    }
}

static void joined_free(joined *j) {
    q3_buf_free(&j->reasoning);
    q3_buf_free(&j->content);
    for (size_t i = 0; i < 16; i++) q3_buf_free(&j->args[i]);
}

static const char *text_of(const q3_buf *b) { return b->data ? b->data : ""; }

/* Streams text cut into pieces at the given lengths (cycled; 0 means one byte) and checks that
 * the events join to the whole-reply result. */
static void check_stream(const char *label, const q3_reply_options *o, const char *text, const q3_reply *whole,
                         const size_t *sizes, size_t n_sizes) {
    joined j = {.label = label};
    q3_reply_parser *p;
    assert_int_equal(q3_reply_parser_new(o, on_event, &j, &p, NULL), Q3_OK);
    size_t len = strlen(text);
    for (size_t at = 0, k = 0; at < len; k++) {
        size_t n = sizes[k % n_sizes] ? sizes[k % n_sizes] : 1;
        if (n > len - at) n = len - at;
        assert_int_equal(q3_reply_parser_feed(p, text + at, n, NULL), Q3_OK);
        at += n;
    }
    assert_int_equal(q3_reply_parser_finish(p, NULL), Q3_OK);
    if (j.open) fail_msg("%s: a call left open", label);
    if (strcmp(text_of(&j.content), whole->content) || strcmp(text_of(&j.reasoning), whole->reasoning))
        fail_msg("%s: streamed content/reasoning '%s'/'%s', whole '%s'/'%s'", label, text_of(&j.content),
                 text_of(&j.reasoning), whole->content, whole->reasoning);
    if (j.n_calls != whole->n_calls) fail_msg("%s: %zu calls streamed, %zu whole", label, j.n_calls, whole->n_calls);
    for (size_t i = 0; i < j.n_calls; i++) {
        if (strcmp(j.names[i], whole->calls[i].name) || strcmp(j.ids[i], whole->calls[i].id) ||
            strcmp(text_of(&j.args[i]), whole->calls[i].arguments))
            fail_msg("%s: call %zu streamed as %s %s %s, whole %s %s %s", label, i, j.ids[i], j.names[i],
                     text_of(&j.args[i]), whole->calls[i].id, whole->calls[i].name, whole->calls[i].arguments);
    }
    q3_reply_parser_free(p);
    joined_free(&j);
}

/* Whole, then streamed byte by byte, in pieces of 2, 3 and 7 bytes, and in 20 random cuttings. */
static void parse_both_ways(const char *label, const q3_reply_options *o, const char *text, q3_reply *whole) {
    if (q3_reply_parse(o, text, strlen(text), whole, NULL)) fail_msg("%s: parse failed", label);
    static const size_t FIXED[][1] = {{1}, {2}, {3}, {7}};
    for (size_t k = 0; k < 4; k++) check_stream(label, o, text, whole, FIXED[k], 1);
    uint64_t seed = 0x9E3779B97F4A7C15u ^ strlen(text);
    for (int round = 0; round < 20; round++) {
        size_t sizes[32];
        for (size_t k = 0; k < 32; k++) {
            seed = seed * 6364136223846793005u + 1442695040888963407u;
            sizes[k] = (size_t)(seed >> 59) + 1; /* 1..32 */
        }
        check_stream(label, o, text, whole, sizes, 32);
    }
}

/* Arguments are Python's json.dumps of their value: parsing and re-spelling gives them back. */
static json_t *python_spelled(const char *label, const char *arguments) {
    json_t *v = json_loads(arguments, JSON_DECODE_ANY, NULL);
    if (!v) fail_msg("%s: arguments are not JSON: %s", label, arguments);
    char *again = NULL;
    assert_int_equal(q3_chat_tojson(v, &again, NULL), Q3_OK);
    if (strcmp(again, arguments)) fail_msg("%s: arguments '%s' are not as json.dumps writes them ('%s')", label, arguments, again);
    free(again);
    return v;
}

/* ---- the fixture ---- */

static void test_fixture_cases(void **state) {
    (void)state;
    json_error_t err;
    json_t *root = json_load_file(fixture_path(0, "chat-templates/tool_parse_cases.json"), 0, &err);
    if (!root) fail_msg("tool_parse_cases.json: %s", err.text);
    size_t i, checked = 0;
    json_t *c;
    json_array_foreach(json_object_get(root, "cases"), i, c) {
        const char *label = json_string_value(json_object_get(c, "case"));
        q3_tool_format format;
        assert_int_equal(q3_tool_format_parse(json_string_value(json_object_get(c, "format")), &format, NULL), Q3_OK);
        q3_reply_options o = {.format = format, .tool_calls = true, .tools = json_object_get(c, "tools")};
        q3_reply r;
        parse_both_ways(label, &o, json_string_value(json_object_get(c, "model_output")), &r);
        const json_t *want = json_object_get(c, "expected"), *want_content = json_object_get(want, "content");
        const json_t *want_calls = json_object_get(want, "tool_calls");
        /* The API sends content null when it is empty and there are calls. */
        const char *content = r.n_calls && !*r.content ? NULL : r.content;
        if (json_is_null(want_content) ? content != NULL : strcmp(content ? content : "", json_string_value(want_content)))
            fail_msg("%s: content '%s', want %s", label, r.content, json_dumps(want_content, JSON_ENCODE_ANY));
        if (r.n_calls != json_array_size(want_calls))
            fail_msg("%s: %zu calls, want %zu", label, r.n_calls, json_array_size(want_calls));
        for (size_t k = 0; k < r.n_calls; k++) {
            const json_t *wc = json_array_get(want_calls, k);
            assert_string_equal(r.calls[k].name, json_string_value(json_object_get(wc, "name")));
            json_t *args = python_spelled(label, r.calls[k].arguments);
            if (!json_equal(args, json_object_get(wc, "arguments")))
                fail_msg("%s: call %zu arguments %s, want %s", label, k, r.calls[k].arguments,
                         json_dumps(json_object_get(wc, "arguments"), 0));
            json_decref(args);
        }
        if (!strcmp(label, "hermes_after_think")) assert_string_equal(r.reasoning, "The user wants weather.");
        q3_reply_free(&r);
        checked++;
    }
    assert_int_equal(checked, 10);
    json_decref(root);
}

/* ---- more rules ---- */

typedef struct rule_case {
    const char *name, *text;
    q3_tool_format format;
    bool in_reasoning;
    const char *reasoning, *content;
    size_t n_calls;
    const char *calls[3][2]; /* name, arguments exactly as written out */
} rule_case;

static const char TOOLS[] =
    "[{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {\"type\": \"object\", \"properties\": {"
    "\"s\": {\"type\": \"string\"}, \"i\": {\"type\": \"integer\"}, \"n\": {\"type\": \"number\"},"
    "\"b\": {\"type\": \"boolean\"}, \"a\": {\"type\": \"array\"}, \"o\": {\"type\": \"object\"},"
    "\"u\": {\"type\": [\"null\", \"integer\"]}, \"e\": {\"enum\": [\"x\"]}}}}}]";

#define X Q3_TOOL_FORMAT_XML
#define J Q3_TOOL_FORMAT_JSON
static const rule_case RULES[] = {
    /* XML: values and types */
    {"xml_null", "<tool_call>\n<function=f>\n<parameter=s>\nnull\n</parameter>\n<parameter=i>\nNULL\n</parameter>\n"
     "<parameter=e>\nnullable\n</parameter>\n</function>\n</tool_call>", X, false, "", "", 1,
     {{"f", "{\"s\": null, \"i\": null, \"e\": \"nullable\"}"}}},
    {"xml_numbers", "<tool_call><function=f><parameter=i>007</parameter><parameter=n>3.0</parameter>"
     "<parameter=u>-2</parameter><parameter=b>yes</parameter></function></tool_call>", X, false, "", "", 1,
     {{"f", "{\"i\": 7, \"n\": 3, \"u\": -2, \"b\": false}"}}},
    {"xml_bad_numbers_stay_strings", "<tool_call><function=f><parameter=i>many</parameter><parameter=n>1e400</parameter>"
     "<parameter=a>[1, 2</parameter><parameter=o>{\"k\": 1.50}</parameter></function></tool_call>", X, false, "", "", 1,
     {{"f", "{\"i\": \"many\", \"n\": \"1e400\", \"a\": \"[1, 2\", \"o\": {\"k\": 1.5}}"}}},
    {"xml_text_that_looks_like_tags", "<tool_call>\n<function=f>\n<parameter=s>\na < b and <b>bold</b> </param\n"
     "\"q\"\\ \u00e9\n\n</parameter>\n</function>\n</tool_call>", X, false, "", "", 1,
     {{"f", "{\"s\": \"a < b and <b>bold</b> </param\\n\\\"q\\\"\\\\ \u00e9\\n\"}"}}},
    {"xml_value_ends_at_next_parameter", "<tool_call>\n<function=f>\n<parameter=s>\nx\n<parameter=i>\n1\n</function>\n"
     "</tool_call>", X, false, "", "", 1, {{"f", "{\"s\": \"x\", \"i\": 1}"}}},
    {"xml_junk_between_parameters_ignored", "<tool_call>\n<function=f>\nthinking aloud\n<parameter=s>\nv\n</parameter>\n"
     "more <junk>\n</function>\n</tool_call>", X, false, "", "", 1, {{"f", "{\"s\": \"v\"}"}}},
    {"xml_no_close_tag_at_end", "Sure.\n<tool_call>\n<function=f>\n<parameter=s>\nv\n</parameter>\n</function>", X, false,
     "", "Sure.", 1, {{"f", "{\"s\": \"v\"}"}}},
    {"xml_cut_inside_value", "<tool_call>\n<function=f>\n<parameter=s>\nhalf", X, false, "",
     "<tool_call>\n<function=f>\n<parameter=s>\nhalf", 0, {{0}}},
    {"xml_not_a_function", "<tool_call>\n{\"name\": \"f\"}\n</tool_call>", X, false, "",
     "<tool_call>\n{\"name\": \"f\"}\n</tool_call>", 0, {{0}}},
    {"xml_three_calls_text_between", "<tool_call><function=f></function></tool_call>\nand\n<tool_call><function=g>"
     "<parameter=x>1</parameter></function></tool_call><tool_call><function=f></function></tool_call>\nafter", X, false,
     "", "and\n\nafter", 3, {{"f", "{}"}, {"g", "{\"x\": \"1\"}"}, {"f", "{}"}}},
    {"xml_after_prompt_opened_think", "Plan.\n</think>\n\n<tool_call>\n<function=f>\n</function>\n</tool_call>", X, true,
     "Plan.", "", 1, {{"f", "{}"}}},
    /* JSON */
    {"json_arguments_before_name", "<tool_call>\n{\"arguments\": {\"a\": [1, {\"b\": null}]}, \"name\": \"f\"}\n</tool_call>",
     J, false, "", "", 1, {{"f", "{\"a\": [1, {\"b\": null}]}"}}},
    {"json_respelled", "<tool_call>{\"name\":\"f\",\"arguments\":{\"x\":1.50,\"y\":1e5,\"z\":-0,\"w\":\"\\u00e9\\ud83d\\ude00\\/\\n\","
     "\"v\":[ ],\"big\":123456789012345678901234567890}}</tool_call>", J, false, "", "", 1,
     {{"f", "{\"x\": 1.5, \"y\": 100000.0, \"z\": 0, \"w\": \"\u00e9\U0001F600/\\n\", \"v\": [], "
            "\"big\": 123456789012345678901234567890}"}}},
    {"json_arguments_as_string", "<tool_call>\n{\"name\": \"f\", \"arguments\": \"{\\\"q\\\": \\\"\\u00e9\\\"}\"}\n</tool_call>",
     J, false, "", "", 1, {{"f", "{\"q\": \"\u00e9\"}"}}},
    {"json_no_close_tag_at_end", "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n", J, false, "", "", 1, {{"f", "{}"}}},
    {"json_bad_then_good", "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 01}}\n</tool_call>\n"
     "<tool_call>\n{\"name\": \"g\"}\n</tool_call>", J, false, "",
     "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 01}}\n</tool_call>", 1, {{"g", "{}"}}},
    {"json_name_not_string", "<tool_call>{\"name\": 3}</tool_call>", J, false, "", "<tool_call>{\"name\": 3}</tool_call>", 0,
     {{0}}},
    {"json_name_twice", "<tool_call>{\"name\": \"a\", \"name\": \"b\"}</tool_call>", J, false, "",
     "<tool_call>{\"name\": \"a\", \"name\": \"b\"}</tool_call>", 0, {{0}}},
    {"json_control_char_in_string", "<tool_call>{\"name\": \"a\nb\"}</tool_call>", J, false, "",
     "<tool_call>{\"name\": \"a\nb\"}</tool_call>", 0, {{0}}},
    {"json_think_then_text", "\n<think>\nr\n</think>\n\nhello <tool_ and <tool_call", J, false, "r",
     "hello <tool_ and <tool_call", 0, {{0}}},
};
#undef X
#undef J

static void test_rules(void **state) {
    (void)state;
    json_t *tools = json_loads(TOOLS, 0, NULL);
    assert_non_null(tools);
    for (size_t i = 0; i < sizeof RULES / sizeof *RULES; i++) {
        const rule_case *c = &RULES[i];
        q3_reply_options o = {.format = c->format, .tool_calls = true, .tools = tools, .in_reasoning = c->in_reasoning};
        q3_reply r;
        parse_both_ways(c->name, &o, c->text, &r);
        if (strcmp(r.reasoning, c->reasoning) || strcmp(r.content, c->content))
            fail_msg("%s: reasoning/content '%s'/'%s', want '%s'/'%s'", c->name, r.reasoning, r.content, c->reasoning,
                     c->content);
        if (r.n_calls != c->n_calls) fail_msg("%s: %zu calls, want %zu", c->name, r.n_calls, c->n_calls);
        for (size_t k = 0; k < r.n_calls; k++) {
            char id[16];
            snprintf(id, sizeof id, "call_%zu", k);
            assert_string_equal(r.calls[k].id, id);
            assert_string_equal(r.calls[k].name, c->calls[k][0]);
            if (strcmp(r.calls[k].arguments, c->calls[k][1]))
                fail_msg("%s: call %zu arguments\n  %s\nwant\n  %s", c->name, k, r.calls[k].arguments, c->calls[k][1]);
            /* (jansson cannot hold the 30-digit integer; that text is checked exactly above) */
            if (strcmp(c->name, "json_respelled")) json_decref(python_spelled(c->name, r.calls[k].arguments));
        }
        q3_reply_free(&r);
    }
    json_decref(tools);
}

/* Without tools offered, tool-call markup is content; ids take the prefix given. */
static void test_options(void **state) {
    (void)state;
    const char *text = "<tool_call>\n{\"name\": \"f\"}\n</tool_call>";
    q3_reply_options o = {.format = Q3_TOOL_FORMAT_JSON};
    q3_reply r;
    parse_both_ways("no tools", &o, text, &r);
    assert_string_equal(r.content, text);
    assert_int_equal(r.n_calls, 0);
    q3_reply_free(&r);
    o = (q3_reply_options){.format = Q3_TOOL_FORMAT_JSON, .tool_calls = true, .id_prefix = "call_abc_"};
    parse_both_ways("id prefix", &o, text, &r);
    assert_string_equal(r.calls[0].id, "call_abc_0");
    q3_reply_free(&r);

    q3_tool_format f;
    assert_int_equal(q3_tool_format_parse("qwen3_coder", &f, NULL), Q3_OK);
    assert_int_equal(f, Q3_TOOL_FORMAT_XML);
    assert_int_equal(q3_tool_format_parse("hermes", &f, NULL), Q3_OK);
    assert_int_equal(f, Q3_TOOL_FORMAT_JSON);
    q3_error e = {0};
    assert_int_equal(q3_tool_format_parse("yaml", &f, &e), Q3_EINVAL);
    assert_non_null(strstr(e.msg, "yaml"));
    /* a parser that has finished refuses more text */
    q3_reply_parser *p;
    assert_int_equal(q3_reply_parser_new(&o, NULL, NULL, &p, NULL), Q3_OK);
    assert_int_equal(q3_reply_parser_finish(p, NULL), Q3_OK);
    assert_int_equal(q3_reply_parser_feed(p, "x", 1, NULL), Q3_EINVAL);
    q3_reply_parser_free(p);
}

/* Which format a template teaches: the XML form where its text has "<function=". */
static void test_format_detection(void **state) {
    (void)state;
    static const struct {
        const char *file;
        q3_tool_format want;
    } T[] = {{"Qwen-Qwen3-0.6B", Q3_TOOL_FORMAT_JSON},  {"Qwen3-Coder", Q3_TOOL_FORMAT_XML},
             {"Qwen3.5-4B", Q3_TOOL_FORMAT_XML},        {"Qwen-QwQ-32B", Q3_TOOL_FORMAT_JSON},
             {"Qwen-Qwen2.5-7B-Instruct", Q3_TOOL_FORMAT_JSON}};
    for (size_t i = 0; i < sizeof T / sizeof *T; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "chat-templates/%s.jinja", T[i].file);
        FILE *f = fopen(fixture_path(0, rel), "rb");
        assert_non_null(f);
        char buf[16384];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        q3_chat_template *t;
        assert_int_equal(q3_chat_template_parse(buf, n, rel, &t, NULL), Q3_OK);
        if (q3_chat_template_tool_format(t) != T[i].want) fail_msg("%s: wrong tool-call format", T[i].file);
        q3_chat_template_free(t);
    }
    assert_int_equal(q3_chat_template_tool_format(NULL), Q3_TOOL_FORMAT_JSON);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_cases),
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_format_detection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
