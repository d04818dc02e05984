/* libFuzzer: the streamed reasoning / content / tool-call split of a reply (q3_chat_stream, which
 * the server streams replies through) against the whole-reply parse (q3_chat_parse_reply), on any
 * model output:
 *   - the split does not depend on how the text is cut: fed in pieces of any size it emits the
 *     same reasoning, content and tool-call text as fed in one piece;
 *   - its reasoning is the whole-reply parse's, and so is its content when every tool-call block
 *     the stream passed on is a call (a block whose JSON is bad goes back into the parse's
 *     content, which only the whole reply can tell: chat.h).
 *
 * Input: the first byte is the piece size less one; the rest is the reply (without a stop token,
 * as the stream is fed). */
#include <stdlib.h>
#include <string.h>

#include "text/chat.h"
#include "base/buf.h"

typedef struct split {
    q3_buf part[3]; /* by q3_chat_part */
} split;

static void on_part(void *user, q3_chat_part part, const char *text, size_t len) {
    split *s = user;
    q3_buf_put(&s->part[part], text, len);
}

static const char *text_of(const q3_buf *b) { return b->data ? b->data : ""; }

static void run(split *s, const char *text, size_t len, size_t piece, bool in_reasoning) {
    memset(s, 0, sizeof *s);
    q3_chat_stream st;
    q3_chat_stream_init(&st, in_reasoning, on_part, s);
    for (size_t at = 0; at < len; at += piece) q3_chat_stream_feed(&st, text + at, len - at < piece ? len - at : piece);
    q3_chat_stream_finish(&st);
}

/* Whether every tool-call block the stream passed on (each from its <tool_call> to the first
 * </tool_call> after it, as the stream cuts them) holds a JSON object with a string "name": then
 * the whole-reply parse takes each as a call too, and their contents must agree. A block that is
 * not (or not closed) is the case chat.h leaves to the whole reply; so is one with a member
 * given twice, which the parse refuses since it streams "arguments" out as it reads them
 * (text/tool_call_json.c). */
static bool blocks_all_calls(const char *calls) {
    while (*calls) {
        if (strncmp(calls, "<tool_call>", 11)) return false;
        const char *body = calls + 11, *end = strstr(body, "</tool_call>");
        if (!end) return false;
        json_t *v = json_loadb(body, (size_t)(end - body), JSON_REJECT_DUPLICATES, NULL);
        bool call = json_is_object(v) && json_is_string(json_object_get(v, "name"));
        json_decref(v);
        if (!call) return false;
        calls = end + 12;
    }
    return true;
}

static void free_split(split *s) {
    for (int i = 0; i < 3; i++) q3_buf_free(&s->part[i]);
}

static bool ends_with(const char *s, size_t n, const char *suffix) {
    size_t k = strlen(suffix);
    return n >= k && !memcmp(s + n - k, suffix, k);
}

/* As the whole-reply parse decides it: the reply closes a think block it never opened. */
static bool opened_by_prompt(const char *s, size_t n) {
    size_t i = 0;
    while (i < n && s[i] == '\n') i++;
    return !(n - i >= 7 && !memcmp(s + i, "<think>", 7)) && memmem(s, n, "</think>", 8);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    if (size < 1) return 0;
    size_t piece = (size_t)data[0] + 1;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    if (memchr(text, '\0', len)) return 0; /* the parse's tag search stops at none, the strbufs would */
    bool in_reasoning = opened_by_prompt(text, len);
    split whole, cut;
    run(&whole, text, len, len ? len : 1, in_reasoning);
    run(&cut, text, len, piece, in_reasoning);
    for (int i = 0; i < 3; i++)
        if (strcmp(text_of(&whole.part[i]), text_of(&cut.part[i]))) abort(); /* depends on the cuts */
    q3_chat_reply r;
    q3_error e;
    if (!ends_with(text, len, "<|im_end|>") && !ends_with(text, len, "<|endoftext|>") &&
        q3_chat_parse_reply(text, len, &r, &e) == Q3_OK) {
        if (strcmp(r.reasoning, text_of(&whole.part[Q3_CHAT_REASONING]))) abort();
        if (blocks_all_calls(text_of(&whole.part[Q3_CHAT_TOOL_CALL])) &&
            strcmp(r.content, text_of(&whole.part[Q3_CHAT_CONTENT])))
            abort();
        q3_chat_reply_free(&r);
    }
    free_split(&whole);
    free_split(&cut);
    return 0;
}
