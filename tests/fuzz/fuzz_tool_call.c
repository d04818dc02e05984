/* libFuzzer: any reply text must parse (both tool-call formats, with or without an opened think
 * block), and streaming it in pieces must give exactly what the whole-reply parse gives. The
 * first byte picks the format, the think block and the piece size; the rest is the reply. */
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "text/tool_call.h"

static const char TOOLS[] =
    "[{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {\"type\": \"object\", \"properties\":"
    " {\"s\": {\"type\": \"string\"}, \"i\": {\"type\": \"integer\"}, \"n\": {\"type\": \"number\"},"
    " \"b\": {\"type\": \"boolean\"}, \"o\": {\"type\": \"object\"}}}}}]";

typedef struct joined {
    q3_buf content, reasoning, args; /* args: each complete call's after a '|' */
    size_t calls, call_start;
} joined;

static void on_event(void *user, const q3_reply_event *ev) {
    joined *j = user;
    if (ev->kind == Q3_REPLY_CONTENT) q3_buf_put(&j->content, ev->text, ev->len);
    else if (ev->kind == Q3_REPLY_REASONING) q3_buf_put(&j->reasoning, ev->text, ev->len);
    else if (ev->kind == Q3_REPLY_CALL_START) {
        j->call_start = j->args.len;
        q3_buf_putc(&j->args, '|');
    } else if (ev->kind == Q3_REPLY_CALL_ARGS) {
        q3_buf_put(&j->args, ev->text, ev->len);
    } else if (ev->kind == Q3_REPLY_CALL_END) {
        j->calls++;
    } else if (ev->kind == Q3_REPLY_CALL_DROP) { /* forget the dropped call's arguments */
        j->args.len = j->call_start;
        j->args.data[j->call_start] = '\0';
    }
}

static const char *text(const q3_buf *b) { return b->data ? b->data : ""; }

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    static json_t *tools;
    if (!tools) tools = json_loads(TOOLS, 0, NULL);
    if (size < 1) return 0;
    q3_reply_options o = {.format = data[0] & 1 ? Q3_TOOL_FORMAT_XML : Q3_TOOL_FORMAT_JSON, .tool_calls = true,
                          .tools = tools, .in_reasoning = data[0] & 2};
    size_t piece = (data[0] >> 2) + 1;
    const char *reply = (const char *)data + 1;
    size_t len = size - 1;
    q3_reply whole;
    if (q3_reply_parse(&o, reply, len, &whole, NULL)) return 0;
    joined j = {0};
    q3_reply_parser *p;
    if (q3_reply_parser_new(&o, on_event, &j, &p, NULL)) abort();
    for (size_t at = 0; at < len; at += piece)
        if (q3_reply_parser_feed(p, reply + at, len - at < piece ? len - at : piece, NULL)) abort();
    if (q3_reply_parser_finish(p, NULL)) abort();
    q3_buf all = {0};
    for (size_t i = 0; i < whole.n_calls; i++) {
        q3_buf_putc(&all, '|');
        q3_buf_puts(&all, whole.calls[i].arguments);
    }
    if (strcmp(text(&j.content), whole.content) || strcmp(text(&j.reasoning), whole.reasoning) ||
        j.calls != whole.n_calls || strcmp(text(&j.args), text(&all)))
        abort(); /* the stream and the whole reply disagree */
    q3_buf_free(&all);
    q3_buf_free(&j.content);
    q3_buf_free(&j.reasoning);
    q3_buf_free(&j.args);
    q3_reply_parser_free(p);
    q3_reply_free(&whole);
    return 0;
}
