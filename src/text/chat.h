/* The Qwen3 chat template, both ways.
 *
 * Forward: q3_chat_render turns a conversation in the OpenAI chat format (a jansson array of
 * {"role", "content", ...} objects, plus optional tool schemas) into the prompt text that Hugging
 * Face's apply_chat_template makes from the Jinja template shipped with Qwen3
 * (tokenizer_config.json, key chat_template), byte for byte. The template is built in as C code;
 * there is no Jinja interpreter. Like the template, it keeps the reasoning of assistant turns only
 * after the last real user query, and prints tool schemas and call arguments with Python's
 * json.dumps (q3_chat_tojson).
 *
 * Back: q3_chat_parse_reply splits a finished reply into reasoning (<think>...</think>), content
 * and tool calls (<tool_call>{"name": ..., "arguments": ...}</tool_call>); q3_chat_stream does the
 * reasoning / content / tool-call split piece by piece while a reply is streamed.
 */
#ifndef Q3_CHAT_H
#define Q3_CHAT_H

#include <jansson.h>

#include "q3moe.h"

/* ---- rendering a conversation into a prompt ---- */

typedef struct q3_chat_options {
    bool add_generation_prompt; /* end with "<|im_start|>assistant\n" for the model to go on */
    bool enable_thinking;       /* false: the generation prompt also closes an empty think block */
} q3_chat_options;

/* Renders messages (an array of objects with "role" system | user | assistant | tool and
 * "content"; assistants may also carry "reasoning_content" and "tool_calls") and tools (NULL, or
 * an array of tool objects such as {"type": "function", "function": {...}}) into *out, a string
 * the caller frees. opt NULL means a generation prompt with thinking enabled.
 * Content is a string, or an array of {"type": "text", "text": ...} parts (joined with "\n", as
 * vLLM does); an assistant's content may be null or absent when it only calls tools.
 * Fails with Q3_EINVAL, naming the message index and field, when messages is not a non-empty
 * array, a message has no role or an unknown one, or a field has the wrong type. */
q3_status q3_chat_render(const json_t *messages, const json_t *tools, const q3_chat_options *opt,
                         char **out, q3_error *e);

/* Writes v as Python's json.dumps(v, ensure_ascii=False) does, which is what the template's
 * tojson filter prints under transformers: ", " and ": " separators, keys in insertion order,
 * non-ASCII bytes as they are, floats as Python's repr. *out is the caller's to free. */
q3_status q3_chat_tojson(const json_t *v, char **out, q3_error *e);

/* ---- parsing a finished reply ---- */

typedef struct q3_chat_tool_call {
    char *name;
    char *arguments; /* a JSON text: the model's string as written, or its object re-serialised */
} q3_chat_tool_call;

typedef struct q3_chat_reply {
    char *reasoning; /* inside <think>...</think>, newlines stripped; "" when there was none */
    char *content;   /* the rest, tool calls taken out, newlines stripped; may be "" */
    q3_chat_tool_call *tool_calls;
    size_t n_tool_calls;
} q3_chat_reply;

/* Splits a generated reply (the text after the generation prompt, with or without a final
 * <|im_end|>). Reasoning is the text inside a leading <think>...</think>, or everything before
 * the first </think> when the prompt already opened the block; a reply that opens <think> and
 * never closes it is all reasoning. Each <tool_call> block of the content whose JSON is an object
 * with a string "name" becomes a tool call (missing arguments read as {}); a block that does not
 * parse stays in the content. Fails only with Q3_ENOMEM. Free with q3_chat_reply_free. */
q3_status q3_chat_parse_reply(const char *text, size_t len, q3_chat_reply *out, q3_error *e);
void q3_chat_reply_free(q3_chat_reply *r);

/* ---- splitting a reply while it streams ---- */

typedef enum q3_chat_part {
    Q3_CHAT_REASONING, /* inside <think>...</think>; the tags are not passed on */
    Q3_CHAT_CONTENT,   /* the answer */
    Q3_CHAT_TOOL_CALL, /* the raw text of a <tool_call> block, tags included */
} q3_chat_part;

typedef void (*q3_chat_emit_fn)(void *user, q3_chat_part part, const char *text, size_t len);

/* Feed the reply's text pieces as they are decoded (not the stop token); emit receives the text
 * again, each run labelled with its part, with the same newline stripping as
 * q3_chat_parse_reply, so the reasoning and content runs concatenate to its reasoning and
 * content. Text that may be the start of a tag, and newlines that may end a section, are held
 * back until the next piece or q3_chat_stream_finish decides. Two things only the whole reply
 * can tell: a tool-call block whose JSON turns out bad (parse_reply puts it back in the content,
 * the stream has passed it on as Q3_CHAT_TOOL_CALL), and reasoning that the prompt opened (the
 * stream must be told with in_reasoning). Cannot fail. */
typedef struct q3_chat_stream {
    q3_chat_emit_fn emit;
    void *user;
    int state;          /* which section of the reply we are in */
    size_t matched;     /* bytes of the awaited tag seen so far, held back */
    size_t newlines;    /* newlines held back: dropped if the section ends right after them */
    bool section_start; /* nothing passed on yet in this section: leading newlines are dropped */
    q3_chat_part pending_part;
    size_t pending_len;
    char pending[256]; /* output gathered for one emit call */
} q3_chat_stream;

/* in_reasoning: the prompt ended inside an open <think> block, so the reply starts as reasoning.
 * With the built-in template it is false: the model opens <think> itself. */
void q3_chat_stream_init(q3_chat_stream *s, bool in_reasoning, q3_chat_emit_fn emit, void *user);
void q3_chat_stream_feed(q3_chat_stream *s, const char *piece, size_t len);
/* Passes on what was held back as text (a partial tag was only text) and drops held newlines. */
void q3_chat_stream_finish(q3_chat_stream *s);

#endif
