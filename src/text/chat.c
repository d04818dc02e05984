/* The Qwen3 chat template rendered in C (see chat.h), and the Python-style JSON writer it needs.
 *
 * The code follows the Jinja template in Qwen3's tokenizer_config.json statement by statement; the
 * comments quote the Jinja where the C would otherwise hide which branch it mirrors. Rendering has
 * two passes: the messages are checked and reduced to plain views (struct turn), so that the
 * second pass, the template itself, cannot fail and reads like the original.
 */
#include "text/chat.h"

#include <float.h>
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
    size_t run = 0; /* bytes copied as they are, written in one go */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        buf_put(b, s + run, i - run);
        run = i + 1;
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
    buf_put(b, s + run, n - run);
    buf_put(b, "\"", 1);
}

/* The shortest digit string that reads back as x, as "d.ddde[+-]XX" from printf: the
 * correctly rounded string at the smallest precision that round-trips. */
static void shortest_digits(double x, char *sci, size_t size) {
    for (int prec = 0; prec < DBL_DECIMAL_DIG; prec++) {
        snprintf(sci, size, "%.*e", prec, x);
        if (strtod(sci, NULL) == x) return;
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
    shortest_digits(x, sci, sizeof sci);
    const char *p = sci;
    if (*p == '-') buf_put(b, p++, 1);
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
        char exponent[8];
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
