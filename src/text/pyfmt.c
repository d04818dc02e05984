/* Python's spellings of floats, strings and JSON (see pyfmt.h). */
#include "text/pyfmt.h"

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include "base/utf8.h"

/* ---- repr(float) ---- */

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

static void put_zeros(q3_buf *b, int n) {
    for (; n > 0; n--) q3_buf_putc(b, '0');
}

static void put_digits(q3_buf *b, const char *digits, int nd, int exp10) {
    int point = exp10 + 1; /* where the decimal point goes, counted in digits from the first */
    if (point <= -4 || point > 16) {
        q3_buf_put(b, digits, 1);
        if (nd > 1) {
            q3_buf_putc(b, '.');
            q3_buf_put(b, digits + 1, (size_t)nd - 1);
        }
        q3_buf_printf(b, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
    } else if (point <= 0) {
        q3_buf_puts(b, "0.");
        put_zeros(b, -point);
        q3_buf_put(b, digits, (size_t)nd);
    } else if (point >= nd) {
        q3_buf_put(b, digits, (size_t)nd);
        put_zeros(b, point - nd);
        q3_buf_puts(b, ".0");
    } else {
        q3_buf_put(b, digits, (size_t)point);
        q3_buf_putc(b, '.');
        q3_buf_put(b, digits + point, (size_t)(nd - point));
    }
}

void q3_py_float(q3_buf *b, double x) {
    if (isnan(x) || isinf(x)) {
        q3_buf_puts(b, isnan(x) ? "NaN" : x < 0 ? "-Infinity" : "Infinity");
        return;
    }
    if (x == 0) {
        q3_buf_puts(b, signbit(x) ? "-0.0" : "0.0");
        return;
    }
    char sci[40], digits[24];
    if (x < 0) q3_buf_putc(b, '-');
    shortest_digits(fabs(x), sci, sizeof sci);
    const char *p = sci;
    int nd = 0;
    for (; *p != 'e'; p++)
        if (*p != '.') digits[nd++] = *p;
    put_digits(b, digits, nd, atoi(p + 1));
}

/* ---- strings ---- */

static void put_u_escape(q3_buf *b, int cp) {
    if (cp >= 0x10000) {
        cp -= 0x10000;
        q3_buf_printf(b, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
    } else {
        q3_buf_printf(b, "\\u%04x", cp); /* Python writes these in lower case */
    }
}

/* The escape json.dumps uses for an ASCII byte, or NULL when the byte stands for itself. */
static const char *json_escape(unsigned char c) {
    switch (c) {
    case '"': return "\\\"";
    case '\\': return "\\\\";
    case '\n': return "\\n";
    case '\r': return "\\r";
    case '\t': return "\\t";
    case '\b': return "\\b";
    case '\f': return "\\f";
    default: return NULL;
    }
}

void q3_py_json_string(q3_buf *b, const char *s, size_t n, bool ensure_ascii) {
    q3_buf_putc(b, '"');
    q3_py_json_chars(b, s, n, ensure_ascii);
    q3_buf_putc(b, '"');
}

void q3_py_json_chars(q3_buf *b, const char *s, size_t n, bool ensure_ascii) {
    size_t plain = 0; /* start of the bytes that need no escape, written in one go */
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\' && (c < 0x80 || !ensure_ascii)) {
            i++;
            continue;
        }
        q3_buf_put(b, s + plain, i - plain);
        const char *esc = json_escape(c);
        if (esc) {
            q3_buf_puts(b, esc);
            i++;
        } else if (c < 0x80) {
            put_u_escape(b, c);
            i++;
        } else {
            put_u_escape(b, q3_utf8_next(s, n, &i));
        }
        plain = i;
    }
    q3_buf_put(b, s + plain, n - plain);
}

/* str.isprintable() of one character: not a control, format, surrogate, private, unassigned or
 * separator character, the ASCII space excepted. */
static bool py_printable(int cp) {
    if (cp == ' ') return true;
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
    case UTF8PROC_CATEGORY_ZS: return false;
    default: return true;
    }
}

static void put_repr_char(q3_buf *b, int cp, char quote) {
    if (cp == quote || cp == '\\') {
        q3_buf_putc(b, '\\');
        q3_buf_putc(b, (char)cp);
    } else if (cp == '\t' || cp == '\n' || cp == '\r') {
        q3_buf_puts(b, cp == '\t' ? "\\t" : cp == '\n' ? "\\n" : "\\r");
    } else if (py_printable(cp)) {
        q3_buf_put_utf8(b, cp);
    } else if (cp < 0x100) {
        q3_buf_printf(b, "\\x%02x", cp);
    } else if (cp < 0x10000) {
        q3_buf_printf(b, "\\u%04x", cp);
    } else {
        q3_buf_printf(b, "\\U%08x", cp);
    }
}

void q3_py_repr_string(q3_buf *b, const char *s, size_t n) {
    char quote = memchr(s, '\'', n) && !memchr(s, '"', n) ? '"' : '\'';
    q3_buf_putc(b, quote);
    for (size_t i = 0; i < n;) {
        size_t start = i;
        int cp = q3_utf8_next(s, n, &i);
        if (cp >= 0x20 && cp < 0x7F && cp != quote && cp != '\\') q3_buf_put(b, s + start, i - start);
        else put_repr_char(b, cp, quote);
    }
    q3_buf_putc(b, quote);
}

/* ---- json.dumps of a jansson value ---- */

void q3_py_json(q3_buf *b, const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *value;
        bool first = true;
        q3_buf_putc(b, '{');
        json_object_foreach((json_t *)v, key, value) {
            if (!first) q3_buf_puts(b, ", ");
            first = false;
            q3_py_json_string(b, key, strlen(key), false);
            q3_buf_puts(b, ": ");
            q3_py_json(b, value);
        }
        q3_buf_putc(b, '}');
        break;
    }
    case JSON_ARRAY:
        q3_buf_putc(b, '[');
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i) q3_buf_puts(b, ", ");
            q3_py_json(b, json_array_get(v, i));
        }
        q3_buf_putc(b, ']');
        break;
    case JSON_STRING: q3_py_json_string(b, json_string_value(v), json_string_length(v), false); break;
    case JSON_INTEGER: q3_buf_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v)); break;
    case JSON_REAL: q3_py_float(b, json_real_value(v)); break;
    case JSON_TRUE: q3_buf_puts(b, "true"); break;
    case JSON_FALSE: q3_buf_puts(b, "false"); break;
    case JSON_NULL: q3_buf_puts(b, "null"); break;
    }
}
