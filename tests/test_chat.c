/* Tests of the Qwen3 chat template (src/text/chat.c, chat_reply.c) and `q3moe template`.
 *
 * The renderer must reproduce every case of fixtures/qwen3-tokenizer/chat_cases.json (written by
 * transformers' apply_chat_template) byte for byte; three more conversations, with expectations
 * worked out by hand from the Jinja text, show that it follows the template beyond those cases.
 * The reply parser and the streaming splitter are checked against each other over every way of
 * cutting a reply into pieces, and a parsed reply must render back to the text the model wrote.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "text/tokenizer_gguf.h"
#include "text/chat.h"
#include "text/tokenizer.h"

/* ---- helpers ---- */

static json_t *parse(const char *json_text) {
    json_error_t err;
    json_t *v = json_loads(json_text, 0, &err);
    if (!v) fail_msg("bad JSON in the test itself: %s (line %d)", err.text, err.line);
    return v;
}

/* Fails naming the case and the first byte where got and want part, with some context. */
static void assert_same_text(const char *name, const char *got, const char *want) {
    if (!strcmp(got, want)) return;
    size_t at = 0;
    while (got[at] && got[at] == want[at]) at++;
    size_t from = at > 40 ? at - 40 : 0;
    fail_msg("%s: differs at byte %zu of %zu (want %zu)\n  got:  ...%.80s\n  want: ...%.80s", name, at,
             strlen(got), strlen(want), got + from, want + from);
}

static char *render_ok(const json_t *messages, const json_t *tools, bool generation_prompt,
                       bool thinking) {
    q3_chat_options opt = {.add_generation_prompt = generation_prompt, .enable_thinking = thinking};
    q3_error err = {0};
    char *out = NULL;
    if (q3_chat_render(messages, tools, &opt, &out, &err)) fail_msg("render: %s", err.msg);
    return out;
}

static json_t *load_chat_cases(void) {
    const char *dir = getenv("Q3_FIXTURES");
    if (!dir) fail_msg("Q3_FIXTURES is not set (run the tests through ctest)");
    char path[4096];
    snprintf(path, sizeof path, "%s/qwen3-tokenizer/chat_cases.json", dir);
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    if (!root) fail_msg("%s: %s", path, err.text);
    json_t *cases = json_incref(json_object_get(root, "cases"));
    json_decref(root);
    assert_true(json_array_size(cases) > 0);
    return cases;
}

/* ---- the fixture: transformers' own renderings ---- */

static bool kwarg_flag(const json_t *kwargs, const char *key, bool otherwise) {
    const json_t *v = json_object_get(kwargs, key);
    return v ? json_is_true(v) : otherwise;
}

static void test_fixture_cases(void **state) {
    (void)state;
    json_t *cases = load_chat_cases();
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c) {
        const json_t *kwargs = json_object_get(c, "kwargs");
        char *got = render_ok(json_object_get(c, "messages"), json_object_get(kwargs, "tools"),
                              kwarg_flag(kwargs, "add_generation_prompt", true),
                              kwarg_flag(kwargs, "enable_thinking", true));
        assert_same_text(json_string_value(json_object_get(c, "name")), got,
                         json_string_value(json_object_get(c, "rendered")));
        free(got);
    }
    json_decref(cases);
}

/* ---- conversations not in the fixture, expected text derived by hand from the template ---- */

/* A system prompt with tools; a multi-step tool turn (reasoning_content, a string and an object
 * argument), two tool results grouped into one user turn, and a final answer whose reasoning sits
 * in the content. Everything after the last user query keeps its reasoning. */
static void test_system_tools_multi_step(void **state) {
    (void)state;
    json_t *messages = parse(
        "[{\"role\": \"system\", \"content\": \"You are a travel agent.\"},"
        " {\"role\": \"user\", \"content\": \"Plan a day in Z\u00fcrich.\"},"
        " {\"role\": \"assistant\", \"reasoning_content\": \"\\nCheck the weather first.\\n\","
        "  \"content\": \"\", \"tool_calls\": ["
        "   {\"id\": \"c1\", \"type\": \"function\", \"function\": {\"name\": \"get_weather\","
        "    \"arguments\": \"{\\\"city\\\": \\\"Z\u00fcrich\\\"}\"}},"
        "   {\"type\": \"function\", \"function\": {\"name\": \"get_events\", \"arguments\":"
        "    {\"city\": \"Z\u00fcrich\", \"max\": 3, \"outdoor\": false, \"score\": 0.5}}}]},"
        " {\"role\": \"tool\", \"tool_call_id\": \"c1\", \"content\": \"{\\\"temp\\\": 18.5}\"},"
        " {\"role\": \"tool\", \"content\": \"[\\\"Opera\\\"]\"},"
        " {\"role\": \"assistant\", \"content\":"
        "  \"<think>\\nMild weather.\\n</think>\\n\\nVisit the lake, then the opera.\"}]");
    json_t *tools = parse(
        "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\","
        "   \"description\": \"Current weather \u2014 in \u00b0C\", \"parameters\": {\"type\": \"object\","
        "   \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}},"
        " {\"type\": \"function\", \"function\": {\"name\": \"get_events\","
        "   \"description\": \"Events\\ttoday \\\"live\\\"\", \"parameters\": {\"type\": \"object\","
        "   \"properties\": {\"city\": {\"type\": \"string\"}, \"max\": {\"type\": \"integer\","
        "   \"default\": 5}, \"min_score\": {\"type\": \"number\", \"default\": 0.25}}}}}]");
    const char *want =
        "<|im_start|>system\nYou are a travel agent.\n\n"
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": "
        "\"Current weather \u2014 in \u00b0C\", \"parameters\": {\"type\": \"object\", \"properties\": "
        "{\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}\n"
        "{\"type\": \"function\", \"function\": {\"name\": \"get_events\", \"description\": "
        "\"Events\\ttoday \\\"live\\\"\", \"parameters\": {\"type\": \"object\", \"properties\": "
        "{\"city\": {\"type\": \"string\"}, \"max\": {\"type\": \"integer\", \"default\": 5}, "
        "\"min_score\": {\"type\": \"number\", \"default\": 0.25}}}}}\n"
        "</tools>\n\nFor each function call, return a json object with function name and arguments "
        "within <tool_call></tool_call> XML tags:\n<tool_call>\n"
        "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n"
        "<|im_start|>user\nPlan a day in Z\u00fcrich.<|im_end|>\n"
        "<|im_start|>assistant\n<think>\nCheck the weather first.\n</think>\n\n"
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Z\u00fcrich\"}}\n</tool_call>\n"
        "<tool_call>\n{\"name\": \"get_events\", \"arguments\": {\"city\": \"Z\u00fcrich\", \"max\": 3, "
        "\"outdoor\": false, \"score\": 0.5}}\n</tool_call><|im_end|>\n"
        "<|im_start|>user\n<tool_response>\n{\"temp\": 18.5}\n</tool_response>\n"
        "<tool_response>\n[\"Opera\"]\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n<think>\nMild weather.\n</think>\n\n"
        "Visit the lake, then the opera.<|im_end|>\n";
    char *got = render_ok(messages, tools, false, true);
    assert_same_text("system_tools_multi_step", got, want);
    free(got);
    json_decref(messages);
    json_decref(tools);
}

/* Reasoning before the last user query is dropped; a system message that is not first is an
 * ordinary turn; content given as text parts; thinking disabled. */
static void test_reasoning_before_last_query(void **state) {
    (void)state;
    json_t *messages = parse(
        "[{\"role\": \"user\", \"content\": \"What is 7*6?\"},"
        " {\"role\": \"assistant\", \"reasoning_content\": \"7 times 6 is 42.\", \"content\": \"42\"},"
        " {\"role\": \"system\", \"content\": \"Answer briefly.\"},"
        " {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"And 8*6?\"},"
        "                                 {\"type\": \"text\", \"text\": \"Only the number.\"}]}]");
    const char *want = "<|im_start|>user\nWhat is 7*6?<|im_end|>\n"
                       "<|im_start|>assistant\n42<|im_end|>\n"
                       "<|im_start|>system\nAnswer briefly.<|im_end|>\n"
                       "<|im_start|>user\nAnd 8*6?\nOnly the number.<|im_end|>\n"
                       "<|im_start|>assistant\n<think>\n\n</think>\n\n";
    char *got = render_ok(messages, NULL, true, false);
    assert_same_text("reasoning_before_last_query", got, want);
    free(got);
    json_decref(messages);
}

/* A user message that wraps a tool response is not a query, so the last query is the first
 * message; an empty think block in content is not reasoning (not the last turn), a flat tool call
 * with null content, and a trailing tool message closing its own user turn. */
static void test_tool_response_in_user_turn(void **state) {
    (void)state;
    json_t *messages = parse(
        "[{\"role\": \"user\", \"content\": \"Look up order 17.\"},"
        " {\"role\": \"assistant\", \"content\": null,"
        "  \"tool_calls\": [{\"name\": \"lookup\", \"arguments\": {\"id\": 17}}]},"
        " {\"role\": \"user\", \"content\": \"<tool_response>\\n{\\\"status\\\": \\\"shipped\\\"}\\n</tool_response>\"},"
        " {\"role\": \"assistant\", \"content\": \"<think>\\n\\n</think>\\n\\nIt has shipped.\"},"
        " {\"role\": \"tool\", \"content\": \"ack\"}]");
    const char *want =
        "<|im_start|>user\nLook up order 17.<|im_end|>\n"
        "<|im_start|>assistant\n<tool_call>\n{\"name\": \"lookup\", \"arguments\": {\"id\": 17}}\n"
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n<tool_response>\n{\"status\": \"shipped\"}\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\nIt has shipped.<|im_end|>\n"
        "<|im_start|>user\n<tool_response>\nack\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n";
    char *got = render_ok(messages, NULL, true, true);
    assert_same_text("tool_response_in_user_turn", got, want);
    free(got);
    json_decref(messages);
}

/* ---- malformed input ---- */

static void expect_invalid(const char *messages_json, const char *tools_json, const char *field) {
    json_t *messages = parse(messages_json);
    json_t *tools = tools_json ? parse(tools_json) : NULL;
    q3_error err = {0};
    char *out = (char *)"untouched";
    q3_status st = q3_chat_render(messages, tools, NULL, &out, &err);
    if (st != Q3_EINVAL || !strstr(err.msg, field))
        fail_msg("%s: want Q3_EINVAL naming '%s', got status %d: %s", messages_json, field, st, err.msg);
    assert_null(out);
    json_decref(messages);
    json_decref(tools);
}

static void test_malformed_messages(void **state) {
    (void)state;
    expect_invalid("{\"role\": \"user\"}", NULL, "messages: expected an array");
    expect_invalid("[]", NULL, "messages: empty");
    expect_invalid("[{\"role\": \"user\", \"content\": \"hi\"}, \"hello\"]", NULL, "messages[1]: expected an object");
    expect_invalid("[{\"role\": \"user\", \"content\": \"hi\"}, {\"content\": \"x\"}]", NULL, "messages[1].role: missing");
    expect_invalid("[{\"role\": 3, \"content\": \"hi\"}]", NULL, "messages[0].role: expected a string");
    expect_invalid("[{\"role\": \"developer\", \"content\": \"hi\"}]", NULL, "messages[0].role: unknown role 'developer'");
    expect_invalid("[{\"role\": \"user\", \"content\": 42}]", NULL, "messages[0].content: expected a string");
    expect_invalid("[{\"role\": \"user\"}]", NULL, "messages[0].content: missing");
    expect_invalid("[{\"role\": \"tool\", \"content\": null}]", NULL, "messages[0].content: expected a string");
    expect_invalid("[{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", \"image_url\": {}}]}]", NULL,
                   "messages[0].content[0]");
    expect_invalid("[{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", \"content\": \"a\","
                   " \"reasoning_content\": 1}]", NULL, "messages[1].reasoning_content: expected a string");
    expect_invalid("[{\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": {}}]", NULL,
                   "messages[0].tool_calls: expected an array");
    expect_invalid("[{\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": ["
                   "{\"function\": {\"arguments\": {}}}]}]", NULL, "messages[0].tool_calls[0].function.name");
    expect_invalid("[{\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": ["
                   "{\"function\": {\"name\": \"f\"}}]}]", NULL, "messages[0].tool_calls[0].function.arguments: missing");
    expect_invalid("[{\"role\": \"user\", \"content\": \"hi\"}]", "{\"type\": \"function\"}", "tools: expected an array");
    expect_invalid("[{\"role\": \"user\", \"content\": \"hi\"}]", "[\"f\"]", "tools[0]: expected an object");
}

/* ---- tojson: Python's json.dumps(ensure_ascii=False), expectations printed by Python ---- */

static void expect_json(const char *json_text, const char *want) {
    json_t *v = json_loads(json_text, JSON_DECODE_ANY, NULL);
    assert_non_null(v);
    char *got = NULL;
    assert_int_equal(q3_chat_tojson(v, &got, NULL), Q3_OK);
    assert_same_text(json_text, got, want);
    free(got);
    json_decref(v);
}

static void test_tojson(void **state) {
    (void)state;
    expect_json("{\"b\":1,\"a\":[true,false,null],\"e\":{},\"f\":[]}",
                "{\"b\": 1, \"a\": [true, false, null], \"e\": {}, \"f\": []}");
    expect_json("\"tab\\t nl\\n cr\\r bs\\b ff\\f q\\\" back\\\\ slash/ bell\\u0007 del\\u007f\"",
                "\"tab\\t nl\\n cr\\r bs\\b ff\\f q\\\" back\\\\ slash/ bell\\u0007 del\x7f\"");
    expect_json("\"caf\\u00e9 \\u4e2d\\u6587 \\ud83d\\ude00 <&>'\"", "\"caf\u00e9 \u4e2d\u6587 \U0001F600 <&>'\"");
    expect_json("[0.1, 1.0, -0.0, 100.0, 1e16, 1e15, 0.0001, 0.00001, 1.5e-7, 123.456, 1e300]",
                "[0.1, 1.0, -0.0, 100.0, 1e+16, 1000000000000000.0, 0.0001, 1e-05, 1.5e-07, 123.456, 1e+300]");
    expect_json("[5e-324, 1.7976931348623157e308, 2.2250738585072014e-308, 9007199254740993.0]",
                "[5e-324, 1.7976931348623157e+308, 2.2250738585072014e-308, 9007199254740992.0]");
    expect_json("[-9223372036854775808, 9223372036854775807, 0, -1]",
                "[-9223372036854775808, 9223372036854775807, 0, -1]");
}

/* ---- the reply parser ---- */

typedef struct reply_case {
    const char *name, *text;
    const char *reasoning, *content;
    size_t n_calls;
    const char *calls[2][2]; /* name, arguments */
} reply_case;

static const reply_case REPLIES[] = {
    {"thinking_and_content", "<think>\nLet me add.\n2+2=4\n</think>\n\nThe answer is 4.", "Let me add.\n2+2=4",
     "The answer is 4.", 0, {{0}}},
    {"think_opened_by_prompt", "The user greets me.\n</think>\n\nHello!<|im_end|>", "The user greets me.", "Hello!", 0,
     {{0}}},
    {"no_thinking", "\n\nJust an answer.\n", "", "Just an answer.", 0, {{0}}},
    {"empty_think", "<think>\n\n</think>\n\nHi there.", "", "Hi there.", 0, {{0}}},
    {"cut_off_thinking", "<think>\nStill thinking", "Still thinking", "", 0, {{0}}},
    {"single_tool_call",
     "<think>\nNeed the weather.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
     "{\"city\": \"Paris\", \"days\": 2.0}}\n</tool_call>",
     "Need the weather.", "", 1, {{"get_weather", "{\"city\": \"Paris\", \"days\": 2.0}"}}},
    {"two_tool_calls",
     "Checking both.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": [1, 2]}}\n</tool_call>\n"
     "<tool_call>\n{\"name\": \"b\", \"arguments\": \"{\\\"y\\\": \\\"\u00e9\\\"}\"}\n</tool_call><|im_end|>",
     "", "Checking both.", 2, {{"a", "{\"x\": [1, 2]}"}, {"b", "{\"y\": \"\u00e9\"}"}}},
    {"compact_call_json", "<tool_call>{\"name\":\"f\",\"arguments\":{\"k\":\"v\",\"n\":null}}</tool_call>", "", "", 1,
     {{"f", "{\"k\": \"v\", \"n\": null}"}}},
    {"call_without_arguments", "<tool_call>\n{\"name\": \"now\"}\n</tool_call>", "", "", 1, {{"now", "{}"}}},
    {"malformed_call_json", "Trying.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": }\n</tool_call>", "",
     "Trying.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": }\n</tool_call>", 0, {{0}}},
    {"call_without_name", "<tool_call>\n{\"arguments\": {}}\n</tool_call>", "",
     "<tool_call>\n{\"arguments\": {}}\n</tool_call>", 0, {{0}}},
    {"unclosed_then_good",
     "<tool_call>\n{\"name\": \"broken\"\n<tool_call>\n{\"name\": \"g\", \"arguments\": {}}\n</tool_call>", "",
     "<tool_call>\n{\"name\": \"broken\"", 1, {{"g", "{}"}}},
    {"tool_call_inside_reasoning",
     "<think>\nMaybe <tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>?\n</think>\n\nNo call.",
     "Maybe <tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>?", "No call.", 0, {{0}}},
};

static void check_reply(const reply_case *c) {
    q3_chat_reply r;
    q3_error err = {0};
    if (q3_chat_parse_reply(c->text, strlen(c->text), &r, &err)) fail_msg("%s: %s", c->name, err.msg);
    assert_same_text(c->name, r.reasoning, c->reasoning);
    assert_same_text(c->name, r.content, c->content);
    if (r.n_tool_calls != c->n_calls) fail_msg("%s: %zu tool calls, want %zu", c->name, r.n_tool_calls, c->n_calls);
    for (size_t i = 0; i < c->n_calls; i++) {
        assert_same_text(c->name, r.tool_calls[i].name, c->calls[i][0]);
        assert_same_text(c->name, r.tool_calls[i].arguments, c->calls[i][1]);
    }
    q3_chat_reply_free(&r);
}

static void test_parse_reply(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof REPLIES / sizeof *REPLIES; i++) check_reply(&REPLIES[i]);
}

/* A reply parsed into an assistant message renders back to the prompt plus the reply. */
static void test_reply_round_trip(void **state) {
    (void)state;
    json_t *messages = parse("[{\"role\": \"user\", \"content\": \"Weather in Paris and Rome?\"}]");
    const char *reply = "<think>\nTwo cities, two calls.\n</think>\n\nI will check.\n"
                        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n"
                        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}\n</tool_call>";
    char *prompt = render_ok(messages, NULL, true, true);

    q3_chat_reply r;
    assert_int_equal(q3_chat_parse_reply(reply, strlen(reply), &r, NULL), Q3_OK);
    json_t *calls = json_array();
    for (size_t i = 0; i < r.n_tool_calls; i++)
        json_array_append_new(calls, json_pack("{s:s, s:{s:s, s:s}}", "type", "function", "function", "name",
                                               r.tool_calls[i].name, "arguments", r.tool_calls[i].arguments));
    json_array_append_new(messages, json_pack("{s:s, s:s, s:s, s:o}", "role", "assistant", "reasoning_content",
                                              r.reasoning, "content", r.content, "tool_calls", calls));
    char *rendered = render_ok(messages, NULL, false, true);

    size_t n = strlen(prompt) + strlen(reply) + 32;
    char *want = malloc(n);
    snprintf(want, n, "%s%s<|im_end|>\n", prompt, reply);
    assert_same_text("reply_round_trip", rendered, want);
    free(want);
    free(rendered);
    free(prompt);
    q3_chat_reply_free(&r);
    json_decref(messages);
}

/* ---- the streaming splitter ---- */

typedef struct collected {
    char parts[3][1024];
    size_t len[3];
    size_t calls; /* emit calls, to see that pieces are not passed on byte by byte */
} collected;

static void collect(void *user, q3_chat_part part, const char *text, size_t len) {
    collected *c = user;
    assert_true(len > 0);
    assert_true(c->len[part] + len < sizeof c->parts[part]);
    memcpy(c->parts[part] + c->len[part], text, len);
    c->len[part] += len;
    c->calls++;
}

/* Streams text cut at the given positions (sorted, within text). */
static void stream_pieces(const char *text, bool in_reasoning, const size_t *cuts, size_t n_cuts, collected *c) {
    memset(c, 0, sizeof *c);
    q3_chat_stream s;
    q3_chat_stream_init(&s, in_reasoning, collect, c);
    size_t from = 0, len = strlen(text);
    for (size_t i = 0; i <= n_cuts; i++) {
        size_t to = i < n_cuts ? cuts[i] : len;
        q3_chat_stream_feed(&s, text + from, to - from);
        from = to;
    }
    q3_chat_stream_finish(&s);
}

/* The tool-call blocks after the reasoning of a reply, tags included, run together. */
static void raw_call_blocks(const char *text, char *out, size_t size) {
    const char *s = strstr(text, "</think>"), *open, *close;
    size_t n = 0;
    for (s = s ? s : text; (open = strstr(s, "<tool_call>")) && (close = strstr(open, "</tool_call>")); s = close) {
        close += strlen("</tool_call>");
        assert_true(n + (size_t)(close - open) < size);
        memcpy(out + n, open, (size_t)(close - open));
        n += (size_t)(close - open);
    }
    out[n] = '\0';
}

/* The stream agrees with the parser on reasoning and content, and passes each tool-call block on
 * verbatim, however the text is cut into three pieces (empty ones included). */
static void check_stream(const char *name, const char *text, bool in_reasoning) {
    q3_chat_reply r;
    assert_int_equal(q3_chat_parse_reply(text, strlen(text), &r, NULL), Q3_OK);
    char blocks[1024];
    raw_call_blocks(text, blocks, sizeof blocks);
    /* The stream is fed what the detokenizer gives, which leaves out the stop token. */
    size_t len = strlen(text);
    if (len >= 10 && !strcmp(text + len - 10, "<|im_end|>")) len -= 10;
    char streamed[1024];
    assert_true(len < sizeof streamed);
    memcpy(streamed, text, len);
    streamed[len] = '\0';
    for (size_t a = 0; a <= len; a++) {
        for (size_t b = a; b <= len; b++) {
            size_t cuts[2] = {a, b};
            collected c;
            stream_pieces(streamed, in_reasoning, cuts, 2, &c);
            c.parts[Q3_CHAT_REASONING][c.len[Q3_CHAT_REASONING]] = '\0';
            c.parts[Q3_CHAT_CONTENT][c.len[Q3_CHAT_CONTENT]] = '\0';
            c.parts[Q3_CHAT_TOOL_CALL][c.len[Q3_CHAT_TOOL_CALL]] = '\0';
            char label[128];
            snprintf(label, sizeof label, "%s cut at %zu,%zu", name, a, b);
            assert_same_text(label, c.parts[Q3_CHAT_REASONING], r.reasoning);
            assert_same_text(label, c.parts[Q3_CHAT_CONTENT], r.content);
            assert_same_text(label, c.parts[Q3_CHAT_TOOL_CALL], blocks);
        }
    }
    q3_chat_reply_free(&r);
}

static void test_stream(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof REPLIES / sizeof *REPLIES; i++) {
        const reply_case *c = &REPLIES[i];
        /* Only the whole reply can tell a bad tool call (see chat.h); and the stream must be told
         * that the prompt opened the think block. */
        if (strstr(c->name, "malformed") || strstr(c->name, "without_name") || strstr(c->name, "unclosed")) continue;
        check_stream(c->name, c->text, !strcmp(c->name, "think_opened_by_prompt"));
    }
    check_stream("near_tags", "\n<thinking>?</think</thin\n\nk> <tool <tool_cal\n\n", false);
    check_stream("newlines_inside", "<think>\n\na\n\nb\n\n</think>\n\nc\n\nd\n\n", false);
    check_stream("lone_lt", "<", false);
    check_stream("content_around_call", "A\n<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>\nB", false);

    collected c;
    stream_pieces("<think>\nabc\n</think>\n\n<tool_call>\n{}\n</tool_call>", false, NULL, 0, &c);
    assert_int_equal(c.len[Q3_CHAT_TOOL_CALL], strlen("<tool_call>\n{}\n</tool_call>"));
    assert_memory_equal(c.parts[Q3_CHAT_TOOL_CALL], "<tool_call>\n{}\n</tool_call>", c.len[Q3_CHAT_TOOL_CALL]);
    assert_true(c.calls <= 2);
}

/* ---- q3moe template ---- */

/* Runs a shell command line, capturing stdout; returns the exit status. */
static int run_capture(const char *cmd, char *out, size_t size) {
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, size - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_cli(void **state) {
    (void)state;
    const char *bin = getenv("Q3_BIN"), *tmp = getenv("Q3_TMP"), *fixtures = getenv("Q3_FIXTURES");
    if (!bin || !tmp || !fixtures || access(bin, X_OK) != 0) skip();
    char messages[4096], tools[4096], cmd[16384], out[8192];
    snprintf(messages, sizeof messages, "%s/chat_cli_messages.json", tmp);
    snprintf(tools, sizeof tools, "%s/chat_cli_tools.json", tmp);

    /* The fixture's tools case, tools from a separate file, model = the tokenizer directory. */
    json_t *cases = load_chat_cases();
    const json_t *tools_case = json_array_get(cases, 4);
    assert_string_equal(json_string_value(json_object_get(tools_case, "name")), "tools");
    json_dump_file(json_object_get(tools_case, "messages"), messages, 0);
    json_dump_file(json_object_get(json_object_get(tools_case, "kwargs"), "tools"), tools, 0);
    snprintf(cmd, sizeof cmd, "'%s' template -m '%s/qwen3-tokenizer' --messages '%s' --tools '%s'", bin, fixtures,
             messages, tools);
    assert_int_equal(run_capture(cmd, out, sizeof out), 0);
    assert_same_text("cli tools", out, json_string_value(json_object_get(tools_case, "rendered")));
    json_decref(cases);

    /* The object form, --no-think, --no-generation-prompt. */
    write_text(messages, "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}");
    snprintf(cmd, sizeof cmd, "'%s' template --messages '%s' --no-think", bin, messages);
    assert_int_equal(run_capture(cmd, out, sizeof out), 0);
    assert_string_equal(out, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
    snprintf(cmd, sizeof cmd, "'%s' template --messages '%s' --no-generation-prompt", bin, messages);
    assert_int_equal(run_capture(cmd, out, sizeof out), 0);
    assert_string_equal(out, "<|im_start|>user\nHi<|im_end|>\n");

    /* Errors: one line on stderr naming the file and the field, exit 1. */
    write_text(messages, "[{\"role\": \"user\", \"content\": \"Hi\"}, {\"content\": \"x\"}]");
    snprintf(cmd, sizeof cmd, "'%s' template --messages '%s' 2>&1 >/dev/null", bin, messages);
    assert_int_equal(run_capture(cmd, out, sizeof out), 1);
    assert_non_null(strstr(out, messages));
    assert_non_null(strstr(out, "messages[1].role: missing"));
    write_text(messages, "[{\"role\": \"user\",");
    assert_int_equal(run_capture(cmd, out, sizeof out), 1);
    assert_non_null(strstr(out, "not valid JSON"));
    snprintf(cmd, sizeof cmd, "'%s' template -m '%s/no-such-model' --messages '%s' 2>&1", bin, tmp, messages);
    assert_int_equal(run_capture(cmd, out, sizeof out), 1);
    assert_non_null(strstr(out, "no-such-model"));
    snprintf(cmd, sizeof cmd, "'%s' template --messages '%s/no-such-file.json' 2>&1", bin, tmp);
    assert_int_equal(run_capture(cmd, out, sizeof out), 1);
    assert_non_null(strstr(out, "no-such-file.json"));
}

/* ---- the model's own template, from its files and through the converter ---- */

static void write_text_file(const char *dir, const char *name, const char *text) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Renders "Hi" (with one tool or none) by the template the tokenizer at path carries. */
static char *render_with_model(const char *path, bool with_tools) {
    q3_tokenizer *tok = NULL;
    q3_error err = {0};
    if (q3_tok_load(&tok, path, &err)) fail_msg("%s: %s", path, err.msg);
    json_t *messages = parse("[{\"role\": \"user\", \"content\": \"Hi\"}]");
    json_t *tools = with_tools ? parse("[{\"type\": \"function\", \"function\": {\"name\": \"f\"}}]") : NULL;
    q3_chat_options opt = {.add_generation_prompt = true, .enable_thinking = true, .template = q3_tok_chat_template(tok)};
    char *out = NULL;
    if (q3_chat_render(messages, tools, &opt, &out, &err)) fail_msg("%s: %s", path, err.msg);
    json_decref(messages);
    json_decref(tools);
    q3_tok_free(tok);
    return out;
}

/* tokenizer_config.json's named templates (tool_use chosen with tools) and chat_template.jinja
 * (which replaces them) reach the prompt from a checkpoint directory, and through q3moe convert's
 * tokenizer metadata from a GGUF, special tokens included. */
static void test_model_templates(void **state) {
    (void)state;
    const char *tmp = getenv("Q3_TMP"), *fixtures = getenv("Q3_FIXTURES");
    if (!tmp || !fixtures) skip();
    char dir[4096], link[4096], target[4096], gguf[4096];
    snprintf(dir, sizeof dir, "%s/chat_model_templates", tmp);
    snprintf(link, sizeof link, "%s/tokenizer.json", dir);
    snprintf(target, sizeof target, "%s/qwen3-tokenizer/tokenizer.json", fixtures);
    snprintf(gguf, sizeof gguf, "%s/tokenizer.gguf", dir);
    mkdir(dir, 0755);
    unlink(link);
    char stale[4200];
    snprintf(stale, sizeof stale, "%s/chat_template.jinja", dir);
    unlink(stale); /* from an earlier run */
    assert_int_equal(symlink(target, link), 0);
    write_text_file(dir, "tokenizer_config.json",
                    "{\"eos_token\": \"<|im_end|>\", \"chat_template\": ["
                    "{\"name\": \"default\", \"template\": \"D:{{ messages[0].content }}{{ eos_token }}\"},"
                    "{\"name\": \"tool_use\", \"template\": \"T:{{ tools[0].function.name }}{{ eos_token }}\"}]}");
    for (int pass = 0; pass < 2; pass++) { /* without, then with chat_template.jinja */
        char config[4096];
        snprintf(config, sizeof config, "%s/tokenizer_config.json", dir);
        q3_gguf_writer *w;
        q3_error err = {0};
        assert_int_equal(q3_gguf_writer_new(&w, &err), Q3_OK);
        assert_int_equal(q3_gguf_set_str(w, "general.architecture", "qwen3moe"), Q3_OK);
        if (q3_tokenizer_json_to_gguf(w, link, config, 151936, 151643, &err) || q3_gguf_write(w, gguf, NULL, NULL, &err))
            fail_msg("%s: %s", gguf, err.msg);
        q3_gguf_writer_free(w);
        /* chat_template.jinja replaces the config's templates, tool_use too, as transformers loads it */
        const char *want_plain = pass ? "J:Hi" : "D:Hi<|im_end|>", *want_tools = pass ? "J:Hi" : "T:f<|im_end|>";
        for (int from_gguf = 0; from_gguf < 2; from_gguf++) {
            const char *path = from_gguf ? gguf : dir;
            char *plain = render_with_model(path, false), *with_tools = render_with_model(path, true);
            assert_same_text(path, plain, want_plain);
            assert_same_text(path, with_tools, want_tools);
            free(plain);
            free(with_tools);
        }
        write_text_file(dir, "chat_template.jinja", "J:{{ messages[0].content }}");
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_cases),
        cmocka_unit_test(test_system_tools_multi_step),
        cmocka_unit_test(test_reasoning_before_last_query),
        cmocka_unit_test(test_tool_response_in_user_turn),
        cmocka_unit_test(test_malformed_messages),
        cmocka_unit_test(test_tojson),
        cmocka_unit_test(test_parse_reply),
        cmocka_unit_test(test_reply_round_trip),
        cmocka_unit_test(test_stream),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_model_templates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
