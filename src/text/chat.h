/* Chat templates, both ways.
 *
 * Forward: q3_chat_render turns a conversation in the OpenAI chat format (a jansson array of
 * {"role", "content", ...} objects, plus optional tool schemas) into the prompt text that Hugging
 * Face's apply_chat_template makes, byte for byte, by rendering the checkpoint's own Jinja chat
 * template (q3_chat_template: tokenizer_config.json's chat_template, chat_template.jinja, or the
 * GGUF's tokenizer.chat_template) with the renderer of jinja.h. Files that carry no template get
 * Qwen3's, built in as template text and rendered the same way. Before rendering, the messages
 * are checked and brought to the shape templates expect, as vLLM does: content given as text parts
 * joined into one string, an assistant's missing content made "", and tool-call arguments given
 * as a JSON string parsed into an object.
 *
 * Back: q3_chat_parse_reply splits a finished reply into reasoning (<think>...</think>), content
 * and tool calls; q3_chat_stream does the reasoning / content / tool-call split piece by piece
 * while a reply is streamed. Both read Qwen3's JSON tool calls; tool_call.h has the parser that
 * follows a template's own tool-call format (JSON or XML) and streams tool-call deltas.
 */
#ifndef Q3_CHAT_H
#define Q3_CHAT_H

#include <jansson.h>

#include "formats/gguf.h"
#include "q3moe.h"
#include "text/tool_call.h"

/* ---- a checkpoint's chat template ---- */

typedef struct q3_chat_template q3_chat_template;

/* The template text built in for files that carry none (Qwen3's). */
extern const char q3_chat_builtin_template[];

/* Compiles template text; name is how errors call it. A syntax error is Q3_EFORMAT naming the
 * line and column. Once made, a template is read-only: any number of threads may render it. */
q3_status q3_chat_template_parse(const char *source, size_t len, const char *name, q3_chat_template **out,
                                 q3_error *e);
/* The template a model carries. path: a checkpoint directory (chat_template.jinja, with
 * additional_chat_templates/tool_use.jinja, else tokenizer_config.json's chat_template: one
 * string, or a list of {"name", "template"} of which "default" and "tool_use" are used), a
 * tokenizer.json (its directory), or a GGUF file (tokenizer.chat_template and
 * tokenizer.chat_template.tool_use). *out is NULL when there is none. The special tokens the
 * config names (bos_token, eos_token, pad_token, unk_token, additional_special_tokens) become
 * template variables, as transformers passes them. A template that does not compile still loads:
 * rendering with it fails with the compile error (q3_chat_template_error), so a model whose
 * template this renderer refuses still serves plain completions. Unreadable or malformed files are
 * Q3_EIO / Q3_EFORMAT naming the file. */
q3_status q3_chat_template_load(const char *path, q3_chat_template **out, q3_error *e);
q3_status q3_chat_template_from_gguf(const q3_gguf *g, q3_chat_template **out, q3_error *e);
/* Sets a variable every render of t sees (the tokenizer's special tokens); takes value's reference. */
q3_status q3_chat_template_set_var(q3_chat_template *t, const char *name, json_t *value, q3_error *e);
/* The compile error of a template that loaded without compiling, else NULL; cannot fail. */
const char *q3_chat_template_error(const q3_chat_template *t);
/* The tool-call format the template teaches the model: XML when its text (the tool_use variant's,
 * if any) holds "<function=", as Qwen3-Coder's and Qwen3.5's do, else Qwen3's JSON. NULL means
 * the built-in template (JSON). Cannot fail. */
q3_tool_format q3_chat_template_tool_format(const q3_chat_template *t);
/* Frees NULL happily. */
void q3_chat_template_free(q3_chat_template *t);

/* ---- rendering a conversation into a prompt ---- */

typedef struct q3_chat_options {
    bool add_generation_prompt; /* end with the assistant's turn opened for the model to go on */
    bool enable_thinking;       /* false: the template gets enable_thinking=False (Qwen3 then closes an
                                 * empty think block); true: the variable is left out, as transformers
                                 * leaves it without kwargs, and the template's default holds */
    const json_t *template_kwargs;    /* NULL, or an object of more template variables (the API's
                                       * chat_template_kwargs); they win over enable_thinking */
    const q3_chat_template *template; /* NULL: the built-in Qwen3 template */
} q3_chat_options;

/* Renders messages (an array of objects with "role" system | user | assistant | tool and
 * "content"; assistants may also carry "reasoning_content" and "tool_calls") and tools (NULL, or
 * an array of tool objects such as {"type": "function", "function": {...}}) into *out, a string
 * the caller frees. opt NULL means the built-in template, a generation prompt, thinking enabled.
 * Content is a string, or an array of {"type": "text", "text": ...} parts (joined with "\n", as
 * vLLM does); an assistant's content may be null or absent when it only calls tools.
 * Fails with Q3_EINVAL, naming the message index and field, when messages is not a non-empty
 * array, a message has no role or an unknown one, or a field has the wrong type; and with
 * Q3_EINVAL naming the template's line and column when the template refuses the conversation
 * (raise_exception) or fails on it. */
q3_status q3_chat_render(const json_t *messages, const json_t *tools, const q3_chat_options *opt,
                         char **out, q3_error *e);

/* Whether a rendered prompt leaves the model inside a <think> block: after the start of the last
 * turn, a <think> with no </think> after it (Qwen3.5's and QwQ's generation prompts do this; the
 * reply then starts as reasoning). Cannot fail. */
bool q3_chat_opens_reasoning(const char *prompt);

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
 * parse stays in the content. This is q3_reply_parse (tool_call.h) in the JSON format. Fails
 * only with Q3_ENOMEM. Free with q3_chat_reply_free. */
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
