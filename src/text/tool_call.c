/* The reply parser (see tool_call.h): sections, held-back text, and the life of each call.
 *
 * The reply is read byte by byte through a small machine: before anything, a <think> opens the
 * reasoning; </think> ends it; in the content, <tool_call> opens a call, whose body the format's
 * reader (tool_call_json.c, tool_call_xml.c) takes until it says the call is complete or
 * malformed. The bytes of a tag being matched are held back (no tag has a '<' past its first
 * byte, so a held run can only be the tag or text). Newlines at a section's start are dropped,
 * those at its end are held until text follows. A malformed call is dropped: its bytes after
 * "<tool_call>" are read again as content, so a later call inside them is still found, and the
 * whole-reply result is, by construction, what the events add up to.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "text/tool_call_internal.h"

#define THINK_OPEN "<think>"
#define THINK_CLOSE "</think>"
#define CALL_OPEN "<tool_call>"

enum section { S_AWAIT_THINK, S_REASONING, S_CONTENT, S_CALL };

struct q3_reply_parser {
    q3_reply_options o;
    char *id_prefix;
    q3_reply_emit_fn emit;
    void *user;

    enum section sec;
    size_t matched;     /* bytes of the awaited tag seen, held back */
    size_t newlines;    /* newlines held back: dropped if the section ends right after them */
    bool section_start; /* nothing passed on yet in this section: leading newlines go */

    q3_buf queue;    /* input not read yet: the piece being fed, and a dropped call's text */
    size_t queue_pos;

    q3_reply_event_kind pend_kind; /* text gathered for one event */
    q3_buf pend;

    q3_buf raw;      /* the current call's bytes after <tool_call> */
    bool started;       /* its CALL_START has gone out */
    q3_buf early;    /* arguments written before the name was known */
    json_scan js;
    xml_scan xs;
    char id[96];

    q3_buf reasoning, content, args; /* the whole result */
    q3_tool_call *calls;                /* complete calls, then the started one */
    size_t n_complete, n_calls, cap;

    bool finished, oom;
};

/* ---- events ---- */

static void flush(q3_reply_parser *p) {
    if (!p->pend.len) return;
    if (p->emit) {
        q3_reply_event ev = {.kind = p->pend_kind, .index = p->n_complete, .text = p->pend.data, .len = p->pend.len};
        p->emit(p->user, &ev);
    }
    p->pend.len = 0;
}

static void emit_mark(q3_reply_parser *p, q3_reply_event_kind kind, const char *name) {
    flush(p);
    if (!p->emit) return;
    q3_reply_event ev = {.kind = kind, .index = p->n_complete, .id = p->id, .name = name};
    p->emit(p->user, &ev);
}

static void out_text(q3_reply_parser *p, q3_reply_event_kind kind, const char *s, size_t n) {
    if (p->pend.len && p->pend_kind != kind) flush(p);
    p->pend_kind = kind;
    if (p->emit) q3_buf_put(&p->pend, s, n);
    q3_buf *whole = kind == Q3_REPLY_REASONING ? &p->reasoning : kind == Q3_REPLY_CONTENT ? &p->content : &p->args;
    q3_buf_put(whole, s, n);
}

void call_out_of_memory(q3_reply_parser *p) { p->oom = true; }
const json_t *call_tools(const q3_reply_parser *p) { return p->o.tools; }

void call_args(q3_reply_parser *p, const char *text, size_t len) {
    if (p->started) out_text(p, Q3_REPLY_CALL_ARGS, text, len);
    else q3_buf_put(&p->early, text, len);
}

void call_named(q3_reply_parser *p, const char *name, size_t len) {
    if (p->n_calls == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 4;
        q3_tool_call *calls = realloc(p->calls, cap * sizeof *calls);
        if (!calls) return call_out_of_memory(p);
        p->calls = calls;
        p->cap = cap;
    }
    snprintf(p->id, sizeof p->id, "%s%zu", p->id_prefix, p->n_complete);
    q3_tool_call *c = &p->calls[p->n_calls++];
    *c = (q3_tool_call){.id = strdup(p->id), .name = strndup(name, len)};
    if (!c->id || !c->name) call_out_of_memory(p);
    p->started = true;
    p->args.len = 0;
    emit_mark(p, Q3_REPLY_CALL_START, c->name ? c->name : "");
    if (p->early.len) out_text(p, Q3_REPLY_CALL_ARGS, p->early.data, p->early.len);
    p->early.len = 0;
}

/* ---- sections ---- */

static const char *awaited_tag(const q3_reply_parser *p) {
    switch (p->sec) {
    case S_AWAIT_THINK: return THINK_OPEN;
    case S_REASONING: return THINK_CLOSE;
    case S_CONTENT: return p->o.tool_calls ? CALL_OPEN : NULL;
    default: return NULL;
    }
}

static void enter(q3_reply_parser *p, enum section sec) {
    p->sec = sec;
    p->section_start = true;
    p->newlines = 0;
}

/* A byte of section text, with the newline rules. */
static void text_byte(q3_reply_parser *p, char c) {
    q3_reply_event_kind kind = p->sec == S_REASONING ? Q3_REPLY_REASONING : Q3_REPLY_CONTENT;
    if (c == '\n') {
        if (!p->section_start) p->newlines++;
        return;
    }
    for (; p->newlines; p->newlines--) out_text(p, kind, "\n", 1);
    p->section_start = false;
    out_text(p, kind, &c, 1);
}

static void text_bytes(q3_reply_parser *p, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) text_byte(p, s[i]);
}

static void begin_call(q3_reply_parser *p) {
    p->sec = S_CALL; /* held newlines stay held: content may go on after the call */
    p->raw.len = 0;
    p->early.len = 0;
    p->started = false;
    if (p->o.format == Q3_TOOL_FORMAT_XML) xml_scan_init(&p->xs);
    else json_scan_init(&p->js);
}

static void end_scan(q3_reply_parser *p) {
    if (p->js.key.failed || p->js.name.failed || p->js.token.failed || p->xs.tag.failed || p->xs.value.failed)
        call_out_of_memory(p);
    if (p->o.format == Q3_TOOL_FORMAT_XML) xml_scan_free(&p->xs);
    else json_scan_free(&p->js);
}

static void drop_call(q3_reply_parser *p);

static void end_call(q3_reply_parser *p) {
    if (!p->started) { /* a reader said complete before naming the function: not a call */
        drop_call(p);
        return;
    }
    end_scan(p);
    q3_tool_call *c = &p->calls[p->n_calls - 1];
    if (!(c->arguments = strndup(p->args.data ? p->args.data : "", p->args.len))) call_out_of_memory(p);
    emit_mark(p, Q3_REPLY_CALL_END, NULL);
    p->n_complete++;
    p->started = false;
    p->sec = S_CONTENT;
}

/* The call is not one: forget it, and read its text again as content. */
static void drop_call(q3_reply_parser *p) {
    end_scan(p);
    if (p->started) {
        emit_mark(p, Q3_REPLY_CALL_DROP, NULL);
        q3_tool_call *c = &p->calls[--p->n_calls];
        free(c->id);
        free(c->name);
        p->started = false;
    }
    q3_buf replay = {0};
    q3_buf_put(&replay, p->raw.data ? p->raw.data : "", p->raw.len);
    q3_buf_put(&replay, p->queue.data ? p->queue.data + p->queue_pos : "", p->queue.len - p->queue_pos);
    if (replay.failed) call_out_of_memory(p);
    q3_buf_free(&p->queue);
    p->queue = replay;
    p->queue_pos = 0;
    p->sec = S_CONTENT;
    text_bytes(p, CALL_OPEN, strlen(CALL_OPEN));
}

static void step(q3_reply_parser *p, char c);

static void call_byte(q3_reply_parser *p, char c) {
    q3_buf_putc(&p->raw, c);
    scan_result r = p->o.format == Q3_TOOL_FORMAT_XML ? xml_scan_byte(&p->xs, p, c) : json_scan_byte(&p->js, p, c);
    if (r == SCAN_DONE) {
        end_call(p);
    } else if (r == SCAN_DONE_UNREAD) {
        p->raw.len--;
        end_call(p);
        step(p, c);
    } else if (r == SCAN_BAD) {
        drop_call(p);
    }
}

/* The awaited tag is complete: move on. */
static void on_tag(q3_reply_parser *p) {
    switch (p->sec) {
    case S_AWAIT_THINK: enter(p, S_REASONING); break;
    case S_REASONING: enter(p, S_CONTENT); break;
    default: begin_call(p); break;
    }
}

/* The held bytes (the start of the awaited tag) were text after all. */
static void release_held(q3_reply_parser *p) {
    const char *tag = awaited_tag(p);
    size_t held = p->matched;
    p->matched = 0;
    if (tag) text_bytes(p, tag, held);
}

/* Something other than <think> began the reply: all content, the held bytes included (they may
 * begin a <tool_call>). */
static void give_up_think(q3_reply_parser *p) {
    size_t held = p->matched;
    p->matched = 0;
    enter(p, S_CONTENT);
    for (size_t i = 0; i < held; i++) step(p, THINK_OPEN[i]);
}

static void step(q3_reply_parser *p, char c) {
    if (p->sec == S_CALL) {
        call_byte(p, c);
        return;
    }
    const char *tag = awaited_tag(p);
    if (tag && c == tag[p->matched]) {
        if (tag[++p->matched] == '\0') {
            p->matched = 0;
            on_tag(p);
        }
        return;
    }
    if (p->sec == S_AWAIT_THINK) {
        if (p->matched == 0 && c == '\n') return; /* newlines before <think> */
        give_up_think(p);
    } else if (p->matched) {
        release_held(p);
    } else {
        text_byte(p, c);
        return;
    }
    step(p, c); /* c may itself open the tag */
}

static void run(q3_reply_parser *p) {
    while (p->queue_pos < p->queue.len) step(p, p->queue.data[p->queue_pos++]);
    p->queue.len = p->queue_pos = 0;
}

static q3_status status(q3_reply_parser *p, q3_error *e) {
    bool failed = p->oom || p->queue.failed || p->pend.failed || p->raw.failed || p->early.failed ||
                  p->reasoning.failed || p->content.failed || p->args.failed || p->js.key.failed ||
                  p->js.name.failed || p->js.token.failed || p->xs.tag.failed || p->xs.value.failed;
    return failed ? q3_fail(e, Q3_ENOMEM, "reply parser: out of memory") : Q3_OK;
}

/* ---- the API ---- */

q3_status q3_reply_parser_new(const q3_reply_options *o, q3_reply_emit_fn emit, void *user, q3_reply_parser **out,
                              q3_error *e) {
    q3_reply_parser *p = calloc(1, sizeof *p);
    if (!p || !(p->id_prefix = strdup(o->id_prefix ? o->id_prefix : "call_"))) {
        free(p);
        return q3_fail(e, Q3_ENOMEM, "reply parser: out of memory");
    }
    p->o = *o;
    p->o.id_prefix = p->id_prefix;
    p->emit = emit;
    p->user = user;
    enter(p, o->in_reasoning ? S_REASONING : S_AWAIT_THINK);
    *out = p;
    return Q3_OK;
}

q3_status q3_reply_parser_feed(q3_reply_parser *p, const char *text, size_t len, q3_error *e) {
    if (p->finished) return q3_fail(e, Q3_EINVAL, "reply parser: fed after the end");
    q3_buf_put(&p->queue, text, len);
    run(p);
    flush(p);
    return status(p, e);
}

q3_status q3_reply_parser_finish(q3_reply_parser *p, q3_error *e) {
    if (p->finished) return status(p, e);
    p->finished = true;
    while (p->sec == S_CALL) { /* a call still open: complete if its reader says so, else content */
        scan_result r = p->o.format == Q3_TOOL_FORMAT_XML ? xml_scan_finish(&p->xs, p) : json_scan_finish(&p->js, p);
        if (r == SCAN_DONE) end_call(p);
        else drop_call(p);
        run(p);
    }
    if (p->sec == S_AWAIT_THINK) give_up_think(p);
    while (p->sec == S_CALL) { /* the held bytes of "<think" cannot open a call; kept for safety */
        drop_call(p);
        run(p);
    }
    release_held(p);
    p->newlines = 0;
    flush(p);
    return status(p, e);
}

static void free_calls(q3_tool_call *calls, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(calls[i].id);
        free(calls[i].name);
        free(calls[i].arguments);
    }
    free(calls);
}

void q3_reply_parser_free(q3_reply_parser *p) {
    if (!p) return;
    if (p->sec == S_CALL) end_scan(p);
    free_calls(p->calls, p->n_calls);
    q3_buf *bufs[] = {&p->queue, &p->pend, &p->raw, &p->early, &p->reasoning, &p->content, &p->args};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) q3_buf_free(bufs[i]);
    free(p->id_prefix);
    free(p);
}

q3_status q3_reply_parser_result(q3_reply_parser *p, q3_reply *out, q3_error *e) {
    *out = (q3_reply){0};
    out->reasoning = strndup(p->reasoning.data ? p->reasoning.data : "", p->reasoning.len);
    out->content = strndup(p->content.data ? p->content.data : "", p->content.len);
    out->calls = p->n_complete ? calloc(p->n_complete, sizeof *out->calls) : NULL;
    bool ok = out->reasoning && out->content && (!p->n_complete || out->calls);
    for (size_t i = 0; ok && i < p->n_complete; i++, out->n_calls++) {
        const q3_tool_call *c = &p->calls[i];
        out->calls[i] = (q3_tool_call){strdup(c->id), strdup(c->name), strdup(c->arguments)};
        ok = out->calls[i].id && out->calls[i].name && out->calls[i].arguments;
    }
    if (ok) return Q3_OK;
    q3_reply_free(out);
    return q3_fail(e, Q3_ENOMEM, "reply parser: out of memory");
}

q3_status q3_reply_parse(const q3_reply_options *o, const char *text, size_t len, q3_reply *out, q3_error *e) {
    q3_reply_parser *p;
    *out = (q3_reply){0};
    q3_status st = q3_reply_parser_new(o, NULL, NULL, &p, e);
    if (st) return st;
    if (!(st = q3_reply_parser_feed(p, text, len, e)) && !(st = q3_reply_parser_finish(p, e)))
        st = q3_reply_parser_result(p, out, e);
    q3_reply_parser_free(p);
    return st;
}

void q3_reply_free(q3_reply *r) {
    if (!r) return;
    free(r->reasoning);
    free(r->content);
    free_calls(r->calls, r->n_calls);
    *r = (q3_reply){0};
}

q3_status q3_tool_format_parse(const char *name, q3_tool_format *out, q3_error *e) {
    if (!strcmp(name, "json") || !strcmp(name, "qwen3") || !strcmp(name, "hermes")) *out = Q3_TOOL_FORMAT_JSON;
    else if (!strcmp(name, "xml") || !strcmp(name, "qwen3_coder")) *out = Q3_TOOL_FORMAT_XML;
    else return q3_fail(e, Q3_EINVAL, "tool-call format '%s': expected json (qwen3, hermes) or xml (qwen3_coder)", name);
    return Q3_OK;
}

const char *q3_tool_format_name(q3_tool_format f) { return f == Q3_TOOL_FORMAT_XML ? "xml" : "json"; }
