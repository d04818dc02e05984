/* The way back from the Qwen3 template (see chat.h): a generated reply split into reasoning,
 * content and tool calls, whole (q3_chat_parse_reply, through the JSON-format parser of
 * tool_call.h) or piece by piece (q3_chat_stream, which passes tool-call blocks on as raw text).
 *
 * The model writes "<think>\nreasoning\n</think>\n\ncontent" and, to call tools, blocks of
 * "<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>" after the content. Both readers
 * strip the newlines around each section as the template's own reasoning handling and Qwen's
 * published parsers do (str.strip('\n')), so an assistant message built from the parts renders
 * back to the text the model wrote.
 */
#include "text/chat.h"

#include <stdlib.h>
#include <string.h>

#include "base/error.h"

#define THINK_OPEN "<think>"
#define THINK_CLOSE "</think>"
#define CALL_OPEN "<tool_call>"
#define CALL_CLOSE "</tool_call>"

/* ---- the whole reply: the JSON-format parser of tool_call.h ---- */

static bool starts_with(const char *s, const char *end, const char *prefix) {
    size_t n = strlen(prefix);
    return (size_t)(end - s) >= n && !memcmp(s, prefix, n);
}

/* Whether the prompt opened the think block: the reply closes one it never opened. */
static bool reasoning_opened_by_prompt(const char *s, const char *end) {
    const char *body = s;
    while (body < end && *body == '\n') body++;
    return !starts_with(body, end, THINK_OPEN) && memmem(s, (size_t)(end - s), THINK_CLOSE, strlen(THINK_CLOSE));
}

static q3_status copy_reply(q3_reply *r, q3_chat_reply *out, q3_error *e) {
    out->reasoning = r->reasoning;
    out->content = r->content;
    r->reasoning = r->content = NULL;
    if (r->n_calls && !(out->tool_calls = calloc(r->n_calls, sizeof *out->tool_calls)))
        return q3_fail(e, Q3_ENOMEM, "reply: out of memory");
    for (size_t i = 0; i < r->n_calls; i++, out->n_tool_calls++) {
        out->tool_calls[i] = (q3_chat_tool_call){r->calls[i].name, r->calls[i].arguments};
        r->calls[i].name = r->calls[i].arguments = NULL;
    }
    return Q3_OK;
}

q3_status q3_chat_parse_reply(const char *text, size_t len, q3_chat_reply *out, q3_error *e) {
    memset(out, 0, sizeof *out);
    const char *end = text + len;
    static const char *const STOPS[] = {"<|im_end|>", "<|endoftext|>"};
    for (size_t i = 0; i < sizeof STOPS / sizeof *STOPS; i++) {
        size_t n = strlen(STOPS[i]);
        if ((size_t)(end - text) >= n && !memcmp(end - n, STOPS[i], n)) end -= n;
    }
    q3_reply_options o = {.format = Q3_TOOL_FORMAT_JSON, .tool_calls = true,
                          .in_reasoning = reasoning_opened_by_prompt(text, end)};
    q3_reply r;
    q3_status st = q3_reply_parse(&o, text, (size_t)(end - text), &r, e);
    if (!st) st = copy_reply(&r, out, e);
    q3_reply_free(&r);
    if (st) q3_chat_reply_free(out);
    return st;
}

void q3_chat_reply_free(q3_chat_reply *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n_tool_calls; i++) {
        free(r->tool_calls[i].name);
        free(r->tool_calls[i].arguments);
    }
    free(r->tool_calls);
    free(r->reasoning);
    free(r->content);
    memset(r, 0, sizeof *r);
}

/* ---- the reply as it streams ---- */

/* The sections of a reply, each waiting for the tag that ends it. */
enum stream_state {
    AWAIT_THINK, /* only newlines so far: a <think> here opens the reasoning */
    IN_REASONING,
    IN_CONTENT,
    IN_TOOL_CALL,
};

static const char *const AWAITED_TAG[] = {
    [AWAIT_THINK] = THINK_OPEN,
    [IN_REASONING] = THINK_CLOSE,
    [IN_CONTENT] = CALL_OPEN,
    [IN_TOOL_CALL] = CALL_CLOSE,
};

static void flush(q3_chat_stream *s) {
    if (s->pending_len) s->emit(s->user, s->pending_part, s->pending, s->pending_len);
    s->pending_len = 0;
}

static void out_byte(q3_chat_stream *s, q3_chat_part part, char c) {
    if (s->pending_len && (part != s->pending_part || s->pending_len == sizeof s->pending)) flush(s);
    s->pending_part = part;
    s->pending[s->pending_len++] = c;
}

static void out_str(q3_chat_stream *s, q3_chat_part part, const char *str) {
    for (; *str; str++) out_byte(s, part, *str);
}

/* A byte of section text: newlines at a section's start are dropped, and those that may end it are
 * held until more text shows they do not. */
static void text_byte(q3_chat_stream *s, char c) {
    if (s->state == IN_TOOL_CALL) {
        out_byte(s, Q3_CHAT_TOOL_CALL, c);
        return;
    }
    q3_chat_part part = s->state == IN_REASONING ? Q3_CHAT_REASONING : Q3_CHAT_CONTENT;
    if (c == '\n') {
        if (!s->section_start) s->newlines++;
        return;
    }
    for (; s->newlines; s->newlines--) out_byte(s, part, '\n');
    s->section_start = false;
    out_byte(s, part, c);
}

static void enter(q3_chat_stream *s, enum stream_state state) {
    s->state = state;
    s->section_start = true;
    s->newlines = 0;
}

/* The awaited tag is complete: move to the next section. */
static void on_tag(q3_chat_stream *s) {
    switch ((enum stream_state)s->state) {
    case AWAIT_THINK: enter(s, IN_REASONING); break;
    case IN_REASONING: enter(s, IN_CONTENT); break;
    case IN_CONTENT: /* held newlines stay held: content may go on after the call */
        s->state = IN_TOOL_CALL;
        out_str(s, Q3_CHAT_TOOL_CALL, CALL_OPEN);
        break;
    case IN_TOOL_CALL:
        s->state = IN_CONTENT;
        out_str(s, Q3_CHAT_TOOL_CALL, CALL_CLOSE);
        break;
    }
}

/* The bytes held as the start of the awaited tag were text after all. No tag has a '<' past its
 * first byte, so none of them can start the tag again. */
static void release_held(q3_chat_stream *s) {
    const char *tag = AWAITED_TAG[s->state];
    size_t held = s->matched;
    s->matched = 0;
    for (size_t i = 0; i < held; i++) text_byte(s, tag[i]);
}

static void step(q3_chat_stream *s, char c);

/* Something other than <think> began the reply: it is all content, held bytes included (they may
 * begin a <tool_call>). */
static void give_up_think(q3_chat_stream *s) {
    size_t held = s->matched;
    s->matched = 0;
    enter(s, IN_CONTENT);
    for (size_t i = 0; i < held; i++) step(s, THINK_OPEN[i]);
}

static void step(q3_chat_stream *s, char c) {
    const char *tag = AWAITED_TAG[s->state];
    if (c == tag[s->matched]) {
        if (tag[++s->matched] == '\0') {
            s->matched = 0;
            on_tag(s);
        }
        return;
    }
    if (s->state == AWAIT_THINK) {
        if (s->matched == 0 && c == '\n') return; /* newlines before <think> */
        give_up_think(s);
    } else if (s->matched) {
        release_held(s);
    } else {
        text_byte(s, c);
        return;
    }
    step(s, c); /* c may itself open the tag */
}

void q3_chat_stream_init(q3_chat_stream *s, bool in_reasoning, q3_chat_emit_fn emit, void *user) {
    memset(s, 0, sizeof *s);
    s->emit = emit;
    s->user = user;
    enter(s, in_reasoning ? IN_REASONING : AWAIT_THINK);
}

void q3_chat_stream_feed(q3_chat_stream *s, const char *piece, size_t len) {
    for (size_t i = 0; i < len; i++) step(s, piece[i]);
    flush(s);
}

void q3_chat_stream_finish(q3_chat_stream *s) {
    if (s->state == AWAIT_THINK) give_up_think(s);
    release_held(s);
    s->newlines = 0;
    flush(s);
}
