/* The Qwen3 chat template rendered in C (see chat.h), and the Python-style JSON writer it needs.
 *
 * The code follows the Jinja template in Qwen3's tokenizer_config.json statement by statement; the
 * comments quote the Jinja where the C would otherwise hide which branch it mirrors. Rendering has
 * two passes: the messages are checked and reduced to plain views (struct turn), so that the
 * second pass, the template itself, cannot fail and reads like the original.
 */
#include "text/chat.h"

#include <float.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

/* ---- a growing output string; an allocation failure sticks and is reported once at the end ---- */

typedef struct strbuf {
    char *data;
    size_t len, cap;
    bool oom;
} strbuf;

static void buf_put(strbuf *b, const char *s, size_t n) {
    if (b->oom || n == 0) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void buf_puts(strbuf *b, const char *s) { buf_put(b, s, strlen(s)); }

/* Hands the string to the caller, or frees it and fails if any append ran out of memory. */
static q3_status buf_finish(strbuf *b, char **out, q3_error *e) {
    if (!b->oom && !b->data) b->data = calloc(1, 1);
    if (b->oom || !b->data) {
        free(b->data);
        *out = NULL;
        return q3_fail(e, Q3_ENOMEM, "chat template: out of memory");
    }
    *out = b->data;
    return Q3_OK;
}

/* ---- Python's json.dumps(ensure_ascii=False) ---- */

static void put_json_string(strbuf *b, const char *s, size_t n) {
    buf_put(b, "\"", 1);
    size_t plain = 0; /* start of the bytes that need no escape, written in one go */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        buf_put(b, s + plain, i - plain);
        plain = i + 1;
        switch (c) {
        case '"': buf_puts(b, "\\\""); break;
        case '\\': buf_puts(b, "\\\\"); break;
        case '\n': buf_puts(b, "\\n"); break;
        case '\r': buf_puts(b, "\\r"); break;
        case '\t': buf_puts(b, "\\t"); break;
        case '\b': buf_puts(b, "\\b"); break;
        case '\f': buf_puts(b, "\\f"); break;
        default: {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", c); /* Python writes these in lower case */
            buf_puts(b, esc);
        }
        }
    }
    buf_put(b, s + plain, n - plain);
    buf_put(b, "\"", 1);
}

/* Adds one unit in the last digit of a non-negative "d.ddde+XX", carrying; 9.99e+05 becomes
 * 1.00e+06. */
static void bump_last_digit(char *sci, size_t size) {
    char *exponent = strchr(sci, 'e');
    for (ptrdiff_t i = exponent - sci - 1; i >= 0; i--) {
        if (sci[i] == '.') continue;
        if (sci[i] != '9') {
            sci[i]++;
            return;
        }
        sci[i] = '0';
    }
    sci[0] = '1';
    int exp10 = atoi(exponent + 1) + 1;
    snprintf(exponent, size - (size_t)(exponent - sci), "e%+03d", exp10);
}

/* The shortest digits that read back as x > 0, closest to x among those, as "d.ddde+XX": at each
 * precision the correctly rounded string, or, when x is a power of two (whose rounding interval
 * reaches twice as far up as down), the string one digit above it. */
static void shortest_digits(double x, char *sci, size_t size) {
    for (int prec = 0; prec < DBL_DECIMAL_DIG; prec++) {
        snprintf(sci, size, "%.*e", prec, x);
        double back = strtod(sci, NULL);
        if (back == x) return;
        if (back < x) {
            bump_last_digit(sci, size);
            if (strtod(sci, NULL) == x) return;
        }
    }
    snprintf(sci, size, "%.*e", DBL_DECIMAL_DIG - 1, x);
}

static void put_zeros(strbuf *b, int n) {
    for (; n > 0; n--) buf_put(b, "0", 1);
}

/* repr(float): the shortest round-trip digits, positional while the decimal point falls within
 * 4 places before the first digit to 16 after it, else d.ddde+XX; positional integers keep ".0". */
static void put_python_float(strbuf *b, double x) {
    if (isnan(x) || isinf(x)) { /* parsed JSON has none, but json.dumps spells them so */
        buf_puts(b, isnan(x) ? "NaN" : x < 0 ? "-Infinity" : "Infinity");
        return;
    }
    if (x == 0) {
        buf_puts(b, signbit(x) ? "-0.0" : "0.0");
        return;
    }
    char sci[40], digits[24];
    if (x < 0) buf_put(b, "-", 1);
    shortest_digits(fabs(x), sci, sizeof sci);
    const char *p = sci;
    int nd = 0;
    for (; *p != 'e'; p++)
        if (*p != '.') digits[nd++] = *p;
    int exp10 = atoi(p + 1);
    int point = exp10 + 1; /* where the decimal point goes, counted in digits from the first */
    if (point <= -4 || point > 16) {
        buf_put(b, digits, 1);
        if (nd > 1) {
            buf_put(b, ".", 1);
            buf_put(b, digits + 1, (size_t)nd - 1);
        }
        char exponent[16];
        snprintf(exponent, sizeof exponent, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
        buf_puts(b, exponent);
    } else if (point <= 0) {
        buf_puts(b, "0.");
        put_zeros(b, -point);
        buf_put(b, digits, (size_t)nd);
    } else if (point >= nd) {
        buf_put(b, digits, (size_t)nd);
        put_zeros(b, point - nd);
        buf_puts(b, ".0");
    } else {
        buf_put(b, digits, (size_t)point);
        buf_put(b, ".", 1);
        buf_put(b, digits + point, (size_t)(nd - point));
    }
}

static void put_json(strbuf *b, const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *value;
        bool first = true;
        buf_puts(b, "{");
        json_object_foreach((json_t *)v, key, value) {
            if (!first) buf_puts(b, ", ");
            first = false;
            put_json_string(b, key, strlen(key));
            buf_puts(b, ": ");
            put_json(b, value);
        }
        buf_puts(b, "}");
        break;
    }
    case JSON_ARRAY:
        buf_puts(b, "[");
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i) buf_puts(b, ", ");
            put_json(b, json_array_get(v, i));
        }
        buf_puts(b, "]");
        break;
    case JSON_STRING: put_json_string(b, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER: {
        char num[32];
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        buf_puts(b, num);
        break;
    }
    case JSON_REAL: put_python_float(b, json_real_value(v)); break;
    case JSON_TRUE: buf_puts(b, "true"); break;
    case JSON_FALSE: buf_puts(b, "false"); break;
    case JSON_NULL: buf_puts(b, "null"); break;
    }
}

q3_status q3_chat_tojson(const json_t *v, char **out, q3_error *e) {
    strbuf b = {0};
    put_json(&b, v);
    return buf_finish(&b, out, e);
}

/* ---- text views and the Python string methods the template calls ---- */

typedef struct text {
    const char *s;
    size_t n;
} text;

static const text EMPTY_TEXT = {"", 0};

static text text_of(const char *s) { return (text){s, strlen(s)}; }

static const char *text_find(text t, const char *needle) {
    return memmem(t.s, t.n, needle, strlen(needle));
}

static bool text_starts(text t, const char *prefix) {
    size_t n = strlen(prefix);
    return t.n >= n && !memcmp(t.s, prefix, n);
}

static bool text_ends(text t, const char *suffix) {
    size_t n = strlen(suffix);
    return t.n >= n && !memcmp(t.s + t.n - n, suffix, n);
}

/* s.lstrip('\n'), s.rstrip('\n'), s.strip('\n') */
static text lstrip_nl(text t) {
    while (t.n && t.s[0] == '\n') t.s++, t.n--;
    return t;
}

static text rstrip_nl(text t) {
    while (t.n && t.s[t.n - 1] == '\n') t.n--;
    return t;
}

static text strip_nl(text t) { return rstrip_nl(lstrip_nl(t)); }

/* s.split(sep)[0] and s.split(sep)[-1]: before the first, after the last occurrence. */
static text before_first(text t, const char *sep) {
    const char *at = text_find(t, sep);
    return at ? (text){t.s, (size_t)(at - t.s)} : t;
}

static text after_last(text t, const char *sep) {
    size_t n = strlen(sep);
    for (const char *at; (at = text_find(t, sep));) t = (text){at + n, t.n - (size_t)(at - t.s) - n};
    return t;
}

static void buf_text(strbuf *b, text t) { buf_put(b, t.s, t.n); }

/* Jinja's truthiness of a JSON value: null, false, 0, "" and empty containers are false. */
static bool json_truthy(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return json_object_size(v) > 0;
    case JSON_ARRAY: return json_array_size(v) > 0;
    case JSON_STRING: return json_string_length(v) > 0;
    case JSON_INTEGER: return json_integer_value(v) != 0;
    case JSON_REAL: return json_real_value(v) != 0;
    case JSON_TRUE: return true;
    case JSON_FALSE:
    case JSON_NULL: return false;
    }
    return false;
}

/* ---- pass 1: check the messages and reduce each to a turn ---- */

typedef enum role { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT, ROLE_TOOL } role;

static const char *const ROLE_NAMES[] = {"system", "user", "assistant", "tool"};

typedef struct turn {
    role role;
    text content;
    char *joined;              /* owns content when it came as an array of text parts */
    bool has_reasoning;        /* reasoning_content given and not null */
    text reasoning;
    const json_t *tool_calls;  /* NULL or a non-empty array of checked calls */
} turn;

static q3_status read_role(const json_t *msg, size_t i, role *out, q3_error *e) {
    const json_t *role = json_object_get(msg, "role");
    if (!role) return q3_fail(e, Q3_EINVAL, "messages[%zu].role: missing", i);
    if (!json_is_string(role)) return q3_fail(e, Q3_EINVAL, "messages[%zu].role: expected a string", i);
    for (size_t r = 0; r < sizeof ROLE_NAMES / sizeof *ROLE_NAMES; r++) {
        if (!strcmp(json_string_value(role), ROLE_NAMES[r])) {
            *out = (enum role)r;
            return Q3_OK;
        }
    }
    return q3_fail(e, Q3_EINVAL,
                   "messages[%zu].role: unknown role '%.64s' (expected system, user, assistant or tool)",
                   i, json_string_value(role));
}

/* Content as an array of parts, the other form the OpenAI API allows: the text parts joined with
 * "\n", as vLLM flattens them before a text-only template. */
static q3_status join_text_parts(const json_t *parts, size_t i, turn *t, q3_error *e) {
    strbuf b = {0};
    for (size_t j = 0; j < json_array_size(parts); j++) {
        const json_t *part = json_array_get(parts, j);
        const json_t *type = json_object_get(part, "type");
        const json_t *str = json_object_get(part, "text");
        if (!json_is_string(type) || strcmp(json_string_value(type), "text") || !json_is_string(str)) {
            free(b.data);
            return q3_fail(e, Q3_EINVAL,
                           "messages[%zu].content[%zu]: expected {\"type\": \"text\", \"text\": string}"
                           " (only text parts are supported)", i, j);
        }
        if (j) buf_put(&b, "\n", 1);
        buf_put(&b, json_string_value(str), json_string_length(str));
    }
    q3_status st = buf_finish(&b, &t->joined, e);
    if (st) return st;
    t->content = text_of(t->joined);
    return Q3_OK;
}

static q3_status read_content(const json_t *msg, size_t i, turn *t, q3_error *e) {
    const json_t *content = json_object_get(msg, "content");
    if (json_is_string(content)) {
        t->content = (text){json_string_value(content), json_string_length(content)};
        return Q3_OK;
    }
    if (json_is_array(content)) return join_text_parts(content, i, t, e);
    /* An assistant that only calls tools sends null or no content; the template needs a string. */
    if (t->role == ROLE_ASSISTANT && (!content || json_is_null(content))) {
        t->content = EMPTY_TEXT;
        return Q3_OK;
    }
    if (!content) return q3_fail(e, Q3_EINVAL, "messages[%zu].content: missing", i);
    return q3_fail(e, Q3_EINVAL, "messages[%zu].content: expected a string or an array of text parts", i);
}

static q3_status read_reasoning(const json_t *msg, size_t i, turn *t, q3_error *e) {
    const json_t *reasoning = json_object_get(msg, "reasoning_content");
    if (!reasoning || json_is_null(reasoning)) return Q3_OK;
    if (!json_is_string(reasoning))
        return q3_fail(e, Q3_EINVAL, "messages[%zu].reasoning_content: expected a string", i);
    t->has_reasoning = true;
    t->reasoning = (text){json_string_value(reasoning), json_string_length(reasoning)};
    return Q3_OK;
}

/* {% if tool_call.function %}{% set tool_call = tool_call.function %}: the OpenAI form nests name
 * and arguments under "function"; a flat {"name", "arguments"} is used as it is. */
static const json_t *call_function(const json_t *call) {
    const json_t *function = json_object_get(call, "function");
    return function && json_truthy(function) ? function : call;
}

static q3_status read_tool_call(const json_t *call, size_t i, size_t j, q3_error *e) {
    if (!json_is_object(call))
        return q3_fail(e, Q3_EINVAL, "messages[%zu].tool_calls[%zu]: expected an object", i, j);
    const json_t *function = call_function(call);
    const char *where = function == call ? "" : ".function";
    if (!json_is_object(function))
        return q3_fail(e, Q3_EINVAL, "messages[%zu].tool_calls[%zu].function: expected an object", i, j);
    if (!json_is_string(json_object_get(function, "name")))
        return q3_fail(e, Q3_EINVAL, "messages[%zu].tool_calls[%zu]%s.name: expected a string", i, j,
                       where);
    if (!json_object_get(function, "arguments"))
        return q3_fail(e, Q3_EINVAL, "messages[%zu].tool_calls[%zu]%s.arguments: missing", i, j, where);
    return Q3_OK;
}

static q3_status read_tool_calls(const json_t *msg, size_t i, turn *t, q3_error *e) {
    const json_t *calls = json_object_get(msg, "tool_calls");
    if (!calls || json_is_null(calls)) return Q3_OK;
    if (!json_is_array(calls))
        return q3_fail(e, Q3_EINVAL, "messages[%zu].tool_calls: expected an array", i);
    for (size_t j = 0; j < json_array_size(calls); j++) {
        q3_status st = read_tool_call(json_array_get(calls, j), i, j, e);
        if (st) return st;
    }
    if (json_array_size(calls) > 0) t->tool_calls = calls;
    return Q3_OK;
}

static q3_status read_turn(const json_t *msg, size_t i, turn *t, q3_error *e) {
    if (!json_is_object(msg)) return q3_fail(e, Q3_EINVAL, "messages[%zu]: expected an object", i);
    q3_status st = read_role(msg, i, &t->role, e);
    if (!st) st = read_content(msg, i, t, e);
    if (!st && t->role == ROLE_ASSISTANT) st = read_reasoning(msg, i, t, e);
    if (!st && t->role == ROLE_ASSISTANT) st = read_tool_calls(msg, i, t, e);
    return st;
}

static void free_turns(turn *turns, size_t n) {
    for (size_t i = 0; i < n && turns; i++) free(turns[i].joined);
    free(turns);
}

static q3_status read_turns(const json_t *messages, turn **out, q3_error *e) {
    *out = NULL;
    if (!json_is_array(messages)) return q3_fail(e, Q3_EINVAL, "messages: expected an array");
    size_t n = json_array_size(messages);
    if (n == 0) return q3_fail(e, Q3_EINVAL, "messages: empty (the template reads messages[0])");
    turn *turns = calloc(n, sizeof *turns);
    if (!turns) return q3_fail(e, Q3_ENOMEM, "messages: out of memory");
    for (size_t i = 0; i < n; i++) {
        q3_status st = read_turn(json_array_get(messages, i), i, &turns[i], e);
        if (st) {
            free_turns(turns, n);
            return st;
        }
    }
    *out = turns;
    return Q3_OK;
}

static q3_status check_tools(const json_t *tools, q3_error *e) {
    if (!tools || json_is_null(tools)) return Q3_OK;
    if (!json_is_array(tools)) return q3_fail(e, Q3_EINVAL, "tools: expected an array");
    for (size_t i = 0; i < json_array_size(tools); i++)
        if (!json_is_object(json_array_get(tools, i)))
            return q3_fail(e, Q3_EINVAL, "tools[%zu]: expected an object", i);
    return Q3_OK;
}

/* ---- pass 2: the template ---- */

static const char TOOLS_INTRO[] =
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>";
static const char TOOLS_OUTRO[] =
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments "
    "within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n";

/* The system turn: the first message's content when it is a system message, followed by the tool
 * signatures when there are tools. */
static void render_system(strbuf *b, const turn *first, const json_t *tools) {
    bool has_system = first->role == ROLE_SYSTEM;
    if (!tools || json_array_size(tools) == 0) {
        if (has_system) {
            buf_puts(b, "<|im_start|>system\n");
            buf_text(b, first->content);
            buf_puts(b, "<|im_end|>\n");
        }
        return;
    }
    buf_puts(b, "<|im_start|>system\n");
    if (has_system) {
        buf_text(b, first->content);
        buf_puts(b, "\n\n");
    }
    buf_puts(b, TOOLS_INTRO);
    for (size_t i = 0; i < json_array_size(tools); i++) {
        buf_puts(b, "\n");
        put_json(b, json_array_get(tools, i));
    }
    buf_puts(b, TOOLS_OUTRO);
}

/* ns.last_query_index: the last user message that is not a wrapped tool response; reasoning is
 * kept only for assistant turns after it. Without one it is the last message, which keeps none. */
static size_t last_query_index(const turn *turns, size_t n) {
    for (size_t i = n; i-- > 0;) {
        const turn *t = &turns[i];
        bool tool_response = text_starts(t->content, "<tool_response>") &&
                             text_ends(t->content, "</tool_response>");
        if (t->role == ROLE_USER && !tool_response) return i;
    }
    return n - 1;
}

static void render_tool_calls(strbuf *b, const json_t *calls, bool has_content) {
    for (size_t j = 0; j < json_array_size(calls); j++) {
        const json_t *function = call_function(json_array_get(calls, j));
        const json_t *name = json_object_get(function, "name");
        const json_t *arguments = json_object_get(function, "arguments");
        if (j > 0 || has_content) buf_puts(b, "\n");
        buf_puts(b, "<tool_call>\n{\"name\": \"");
        buf_put(b, json_string_value(name), json_string_length(name));
        buf_puts(b, "\", \"arguments\": ");
        if (json_is_string(arguments))
            buf_put(b, json_string_value(arguments), json_string_length(arguments));
        else
            put_json(b, arguments);
        buf_puts(b, "}\n</tool_call>");
    }
}

/* An assistant turn. Without reasoning_content, reasoning is read out of the content:
 * content.split('</think>')[-1].lstrip('\n') and
 * content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n'). */
static void render_assistant(strbuf *b, const turn *t, bool after_last_query, bool is_last) {
    text content = t->content, reasoning = EMPTY_TEXT;
    if (t->has_reasoning) {
        reasoning = t->reasoning;
    } else if (text_find(content, "</think>")) {
        content = lstrip_nl(after_last(t->content, "</think>"));
        reasoning = lstrip_nl(after_last(rstrip_nl(before_first(t->content, "</think>")), "<think>"));
    }
    buf_puts(b, "<|im_start|>assistant\n");
    if (after_last_query && (is_last || reasoning.n > 0)) {
        buf_puts(b, "<think>\n");
        buf_text(b, strip_nl(reasoning));
        buf_puts(b, "\n</think>\n\n");
        buf_text(b, lstrip_nl(content));
    } else {
        buf_text(b, content);
    }
    render_tool_calls(b, t->tool_calls, content.n > 0);
    buf_puts(b, "<|im_end|>\n");
}

/* Consecutive tool messages share one user turn, one <tool_response> block each. */
static void render_tool(strbuf *b, const turn *turns, size_t n, size_t i) {
    if (i == 0 || turns[i - 1].role != ROLE_TOOL) buf_puts(b, "<|im_start|>user");
    buf_puts(b, "\n<tool_response>\n");
    buf_text(b, turns[i].content);
    buf_puts(b, "\n</tool_response>");
    if (i + 1 == n || turns[i + 1].role != ROLE_TOOL) buf_puts(b, "<|im_end|>\n");
}

static void render_turn(strbuf *b, const turn *turns, size_t n, size_t i, size_t last_query) {
    const turn *t = &turns[i];
    switch (t->role) {
    case ROLE_SYSTEM:
        if (i == 0) break; /* already printed by render_system */
        /* fall through */
    case ROLE_USER:
        buf_puts(b, "<|im_start|>");
        buf_puts(b, ROLE_NAMES[t->role]);
        buf_puts(b, "\n");
        buf_text(b, t->content);
        buf_puts(b, "<|im_end|>\n");
        break;
    case ROLE_ASSISTANT: render_assistant(b, t, i > last_query, i + 1 == n); break;
    case ROLE_TOOL: render_tool(b, turns, n, i); break;
    }
}

q3_status q3_chat_render(const json_t *messages, const json_t *tools, const q3_chat_options *opt,
                         char **out, q3_error *e) {
    static const q3_chat_options defaults = {.add_generation_prompt = true, .enable_thinking = true};
    if (!opt) opt = &defaults;
    *out = NULL;
    turn *turns;
    q3_status st = check_tools(tools, e);
    if (!st) st = read_turns(messages, &turns, e);
    if (st) return st;
    size_t n = json_array_size(messages);

    strbuf b = {0};
    render_system(&b, &turns[0], json_is_array(tools) ? tools : NULL);
    size_t last_query = last_query_index(turns, n);
    for (size_t i = 0; i < n; i++) render_turn(&b, turns, n, i, last_query);
    if (opt->add_generation_prompt) {
        buf_puts(&b, "<|im_start|>assistant\n");
        if (!opt->enable_thinking) buf_puts(&b, "<think>\n\n</think>\n\n");
    }
    free_turns(turns, n);
    return buf_finish(&b, out, e);
}
