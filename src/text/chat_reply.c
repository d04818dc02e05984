/* The way back from the Qwen3 template (see chat.h): a generated reply split into reasoning,
 * content and tool calls, whole (q3_chat_parse_reply) or piece by piece (q3_chat_stream).
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

/* ---- helpers over (pointer, length) ---- */

static const char *find(const char *s, const char *end, const char *needle) {
    return memmem(s, (size_t)(end - s), needle, strlen(needle));
}

static const char *find_last(const char *s, const char *end, const char *needle) {
    const char *last = NULL;
    for (const char *at; (at = find(s, end, needle)); s = at + 1) last = at;
    return last;
}

static bool starts_with(const char *s, const char *end, const char *prefix) {
    size_t n = strlen(prefix);
    return (size_t)(end - s) >= n && !memcmp(s, prefix, n);
}

static char *copy_stripped(const char *s, const char *end) {
    while (s < end && *s == '\n') s++;
    while (end > s && end[-1] == '\n') end--;
    return strndup(s, (size_t)(end - s));
}

/* ---- the whole reply ---- */

/* Where the reasoning and the rest lie: after a leading <think> up to the first </think> (or to
 * the end, when thinking was cut off), or, when the prompt opened the block, everything before
 * the first </think>. */
static void split_reasoning(const char *s, const char *end, const char **reasoning,
                            const char **reasoning_end, const char **rest) {
    const char *body = s;
    while (body < end && *body == '\n') body++;
    bool opened = starts_with(body, end, THINK_OPEN);
    if (opened) body += strlen(THINK_OPEN);
    else body = s;
    const char *close = find(body, end, THINK_CLOSE);
    if (!close && !opened) {
        *reasoning = *reasoning_end = *rest = s;
        return;
    }
    *reasoning = body;
    *reasoning_end = close ? close : end;
    *rest = close ? close + strlen(THINK_CLOSE) : end;
}

/* One <tool_call> block's inside: a JSON object with a string "name" and, usually, "arguments"
 * (kept as written when a string, re-serialised as the template prints it otherwise). Returns
 * Q3_EFORMAT, with nothing set, when it is not a call; that text then stays content. */
static q3_status parse_tool_call(const char *s, const char *end, q3_chat_tool_call *call,
                                 q3_error *e) {
    json_t *obj = json_loadb(s, (size_t)(end - s), 0, NULL);
    const json_t *name = json_object_get(obj, "name");
    const json_t *arguments = json_object_get(obj, "arguments");
    if (!json_is_object(obj) || !json_is_string(name)) {
        json_decref(obj);
        return Q3_EFORMAT;
    }
    q3_status st = Q3_OK;
    call->name = strdup(json_string_value(name));
    if (!arguments) call->arguments = strdup("{}");
    else if (json_is_string(arguments)) call->arguments = strdup(json_string_value(arguments));
    else st = q3_chat_tojson(arguments, &call->arguments, e);
    json_decref(obj);
    if (!st && (!call->name || !call->arguments)) st = q3_fail(e, Q3_ENOMEM, "reply: out of memory");
    if (st) {
        free(call->name);
        free(call->arguments);
    }
    return st;
}

static q3_status add_tool_call(q3_chat_reply *r, const q3_chat_tool_call *call, q3_error *e) {
    q3_chat_tool_call *calls = realloc(r->tool_calls, (r->n_tool_calls + 1) * sizeof *calls);
    if (!calls) {
        free(call->name);
        free(call->arguments);
        return q3_fail(e, Q3_ENOMEM, "reply: out of memory");
    }
    calls[r->n_tool_calls++] = *call;
    r->tool_calls = calls;
    return Q3_OK;
}

/* Takes the tool-call blocks out of s..end into r->tool_calls, and copies the text around them
 * (and any block that is not a call) into kept, which has room for all of s..end. Each block
 * ends at a </tool_call> and opens at the last <tool_call> before it, so an unclosed block
 * earlier on stays text rather than swallowing the next one. */
static q3_status take_tool_calls(const char *s, const char *end, q3_chat_reply *r, char *kept,
                                 size_t *kept_len, q3_error *e) {
    const char *close;
    *kept_len = 0;
    while ((close = find(s, end, CALL_CLOSE))) {
        const char *after = close + strlen(CALL_CLOSE);
        const char *open = find_last(s, close, CALL_OPEN);
        q3_chat_tool_call call = {0};
        q3_status st = open ? parse_tool_call(open + strlen(CALL_OPEN), close, &call, e) : Q3_EFORMAT;
        if (st && st != Q3_EFORMAT) return st;
        const char *text_end = st == Q3_EFORMAT ? after : open;
        memcpy(kept + *kept_len, s, (size_t)(text_end - s));
        *kept_len += (size_t)(text_end - s);
        if (!st && (st = add_tool_call(r, &call, e))) return st;
        s = after;
    }
    memcpy(kept + *kept_len, s, (size_t)(end - s));
    *kept_len += (size_t)(end - s);
    return Q3_OK;
}

static q3_status parse_content(const char *s, const char *end, q3_chat_reply *r, q3_error *e) {
    char *kept = malloc((size_t)(end - s) + 1);
    if (!kept) return q3_fail(e, Q3_ENOMEM, "reply: out of memory");
    size_t kept_len;
    q3_status st = take_tool_calls(s, end, r, kept, &kept_len, e);
    if (!st && !(r->content = copy_stripped(kept, kept + kept_len)))
        st = q3_fail(e, Q3_ENOMEM, "reply: out of memory");
    free(kept);
    return st;
}

q3_status q3_chat_parse_reply(const char *text, size_t len, q3_chat_reply *out, q3_error *e) {
    memset(out, 0, sizeof *out);
    const char *end = text + len;
    static const char *const STOPS[] = {"<|im_end|>", "<|endoftext|>"};
    for (size_t i = 0; i < sizeof STOPS / sizeof *STOPS; i++) {
        size_t n = strlen(STOPS[i]);
        if ((size_t)(end - text) >= n && !memcmp(end - n, STOPS[i], n)) end -= n;
    }
    const char *reasoning, *reasoning_end, *rest;
    split_reasoning(text, end, &reasoning, &reasoning_end, &rest);
    out->reasoning = copy_stripped(reasoning, reasoning_end);
    q3_status st = out->reasoning ? parse_content(rest, end, out, e)
                                  : q3_fail(e, Q3_ENOMEM, "reply: out of memory");
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
