/* A model's reply split into reasoning, content and tool calls, in the tool-call format its chat
 * template teaches, whole or while it streams.
 *
 * Two formats:
 *   JSON (Qwen3, Qwen3-2507, Qwen2.5, QwQ):  <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>
 *   XML  (Qwen3-Coder, Qwen3.5):             <tool_call>\n<function=f>\n<parameter=p>\nvalue\n</parameter>\n
 *                                            </function>\n</tool_call>
 * A reply may hold several calls (parallel calls), with content before, between or after them.
 * Reasoning is the text of a leading <think>...</think> (or, when the prompt opened the block,
 * everything before the first </think>); newlines around each section are stripped, as Qwen's
 * own parsers do.
 *
 * Arguments come out as JSON text in Python's json.dumps spelling (", " and ": ", non-ASCII as
 * is). JSON calls: the object the model wrote, re-spelled, or the text of a string it wrote;
 * no arguments read as {}. XML calls: each parameter's value loses one leading and one trailing
 * newline and is typed by the tool's JSON schema as Qwen3-Coder's parser types it: "null" is
 * null; string types (and parameters the schema does not name) stay strings; integer and number
 * types become numbers (a number with no fraction an integer), boolean types true or false
 * (true only for "true", any case); object, array and other types are parsed as JSON, and stay
 * strings when they do not parse. A call to a function that was not offered is still a call (the
 * client decides). A call is only a call when it is complete: cut off, or malformed (JSON that
 * does not parse, no name), its text is content.
 *
 * Streaming: the parser takes the reply's text in pieces of any size (a token's text, a byte)
 * and reports events: content and reasoning deltas, the start of a call (index, id, name), pieces
 * of its arguments' JSON text, and its end. Joined, the events give exactly what the whole-reply
 * parse gives. Text that may be the start of a tag, newlines that may end a section, and the
 * parts of a value whose spelling is not settled yet are held back until more text or the end
 * decides. A call that turns out not to be one after it started is dropped with
 * Q3_REPLY_CALL_DROP, and its text follows as content: a client that must never see a call
 * retracted waits for Q3_REPLY_CALL_END before passing a call on.
 */
#ifndef Q3_TOOL_CALL_H
#define Q3_TOOL_CALL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"

typedef enum q3_tool_format {
    Q3_TOOL_FORMAT_JSON, /* "json" (also "qwen3", "hermes") */
    Q3_TOOL_FORMAT_XML,  /* "xml" (also "qwen3_coder") */
} q3_tool_format;

/* Reads a format name (for an option that overrides what the template says). Q3_EINVAL naming
 * the accepted names otherwise. */
q3_status q3_tool_format_parse(const char *name, q3_tool_format *out, q3_error *e);
/* "json" or "xml"; cannot fail. */
const char *q3_tool_format_name(q3_tool_format f);

typedef enum q3_reply_event_kind {
    Q3_REPLY_CONTENT,    /* text: a piece of the content */
    Q3_REPLY_REASONING,  /* text: a piece of the reasoning */
    Q3_REPLY_CALL_START, /* index, id, name: a call begins */
    Q3_REPLY_CALL_ARGS,  /* index, text: a piece of the call's arguments (JSON text) */
    Q3_REPLY_CALL_END,   /* index: the call is complete */
    Q3_REPLY_CALL_DROP,  /* index: the call that started is not one after all; forget it (the next
                          * call takes its index; its text comes again as content) */
} q3_reply_event_kind;

typedef struct q3_reply_event {
    q3_reply_event_kind kind;
    size_t index;     /* the call's place among the reply's complete calls: 0, 1, ... */
    const char *id;   /* CALL_START: id_prefix followed by the index */
    const char *name; /* CALL_START: the function's name */
    const char *text; /* CONTENT, REASONING, CALL_ARGS: not NUL-terminated */
    size_t len;
} q3_reply_event;

/* Receives events; the pointers live until it returns. */
typedef void (*q3_reply_emit_fn)(void *user, const q3_reply_event *ev);

typedef struct q3_reply_options {
    q3_tool_format format;
    bool tool_calls;       /* read tool calls at all (the request offered tools); false: their text is content */
    const json_t *tools;   /* the tools offered, OpenAI-style: the XML format types values by their schemas;
                            * NULL: none (values stay strings). Borrowed: must outlive the parser. */
    bool in_reasoning;     /* the prompt opened a <think> block (q3_chat_opens_reasoning) */
    const char *id_prefix; /* call ids are this followed by the index; NULL: "call_" */
} q3_reply_options;

typedef struct q3_reply_parser q3_reply_parser;

/* emit may be NULL to only gather the whole result (q3_reply_parser_result). */
q3_status q3_reply_parser_new(const q3_reply_options *o, q3_reply_emit_fn emit, void *user, q3_reply_parser **out,
                              q3_error *e);
/* Feeds the next piece of the reply (the text the detokenizer gives, stop tokens left out).
 * Events for what the piece settles are emitted before it returns. Fails only with Q3_ENOMEM. */
q3_status q3_reply_parser_feed(q3_reply_parser *p, const char *text, size_t len, q3_error *e);
/* The reply is over: what was held back is settled (a partial tag is text; a call still open is
 * dropped into the content). Fails only with Q3_ENOMEM. Feeding after finishing is an error. */
q3_status q3_reply_parser_finish(q3_reply_parser *p, q3_error *e);
void q3_reply_parser_free(q3_reply_parser *p);

/* ---- the whole reply ---- */

typedef struct q3_tool_call {
    char *id;
    char *name;
    char *arguments; /* JSON text */
} q3_tool_call;

typedef struct q3_reply {
    char *reasoning; /* "" when there was none */
    char *content;   /* "" when there was none */
    q3_tool_call *calls;
    size_t n_calls;
} q3_reply;

/* After q3_reply_parser_finish: everything the events said, joined. The strings are the
 * caller's (free with q3_reply_free). Fails only with Q3_ENOMEM. */
q3_status q3_reply_parser_result(q3_reply_parser *p, q3_reply *out, q3_error *e);
/* Parses a whole reply: feed it all, finish, result. */
q3_status q3_reply_parse(const q3_reply_options *o, const char *text, size_t len, q3_reply *out, q3_error *e);
/* Frees the strings; NULL and a zeroed reply are fine. */
void q3_reply_free(q3_reply *r);

#endif
