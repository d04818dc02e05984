/* The tool-call parser's insides, shared by tool_call.c (sections, events, calls starting,
 * ending and being dropped) and the two readers of a call's body: tool_call_json.c (Qwen3's
 * {"name", "arguments"}) and tool_call_xml.c (Qwen3-Coder's <function=...><parameter=...>).
 * Nothing outside src/text/tool_call*.c includes this. */
#ifndef Q3_TOOL_CALL_INTERNAL_H
#define Q3_TOOL_CALL_INTERNAL_H

#include "base/buf.h"
#include "text/tool_call.h"

#define CALL_CLOSE "</tool_call>"

/* What a body reader says of the byte it was given. */
typedef enum scan_result {
    SCAN_MORE,        /* part of the call; go on */
    SCAN_DONE,        /* the call is complete with this byte */
    SCAN_DONE_UNREAD, /* the call was already complete; this byte is not part of it */
    SCAN_BAD,         /* the call is malformed at this byte */
} scan_result;

/* ---- what the readers tell the parser (tool_call.c) ---- */

/* The call's function name is known: the call starts. */
void call_named(q3_reply_parser *p, const char *name, size_t len);
/* A piece of the arguments' JSON text (held until the call has started). */
void call_args(q3_reply_parser *p, const char *text, size_t len);
/* The tools offered (NULL when none). */
const json_t *call_tools(const q3_reply_parser *p);
/* Records an allocation failure; the parser reports it. */
void call_out_of_memory(q3_reply_parser *p);

/* ---- JSON bodies (tool_call_json.c) ---- */

#define JSON_MAX_DEPTH 128

typedef struct json_scan {
    int top;                     /* where in {"name": ..., "arguments": ...} </tool_call> we are */
    int expect;                  /* what the value reader awaits next */
    char stack[JSON_MAX_DEPTH];  /* open containers: '{' or '[' */
    int depth;
    int member;                  /* the top-level member being read: name, arguments, other */
    int args_depth;              /* depth at which the arguments value sits; 0: not inside it */
    bool in_key;                 /* the string being read is a key */
    bool args_string;            /* the arguments value is a string: its text is the arguments */
    bool have_name, have_args;
    q3_buf key, name, token;  /* a top-level key, the name, a number or literal being read */
    int escape, hex_n;           /* the state of a backslash escape being read; \u digits seen */
    unsigned code, high;         /* a \u escape's value; a high surrogate waiting for its low half */
    size_t close_matched;        /* of "</tool_call>" */
} json_scan;

void json_scan_init(json_scan *s);
scan_result json_scan_byte(json_scan *s, q3_reply_parser *p, char c);
/* The reply ended: SCAN_DONE when the call is complete, else SCAN_BAD. */
scan_result json_scan_finish(json_scan *s, q3_reply_parser *p);
void json_scan_free(json_scan *s);

/* ---- XML bodies (tool_call_xml.c) ---- */

typedef struct xml_scan {
    int state;
    q3_buf tag;         /* a tag being matched, or a name being read */
    q3_buf value;       /* a parameter value that waits to be typed */
    const json_t *props;   /* the function's parameter schemas (properties), or NULL */
    int type;              /* how the current value is typed */
    bool any_param;        /* a parameter has been written (the next one needs ", ") */
    bool value_started;    /* the first byte of the value has been seen (its leading newline goes) */
    bool quote_open;       /* a string value's opening quote is out */
    bool held_newline;     /* a newline that ends the value, unless more text follows */
} xml_scan;

void xml_scan_init(xml_scan *s);
scan_result xml_scan_byte(xml_scan *s, q3_reply_parser *p, char c);
scan_result xml_scan_finish(xml_scan *s, q3_reply_parser *p);
void xml_scan_free(xml_scan *s);

#endif
