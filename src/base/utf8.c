/* UTF-8 checking, walking and writing (see utf8.h). */
#include "base/utf8.h"

q3_utf8_verdict q3_utf8_scan(const char *s, size_t n, size_t *len) {
    const unsigned char *u = (const unsigned char *)s;
    unsigned c = u[0], lo = 0x80, hi = 0xBF;
    size_t need;
    *len = 1;
    if (c < 0x80) return Q3_UTF8_OK;
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c >= 0xE0 && c <= 0xEF) need = 3;
    else if (c >= 0xF0 && c <= 0xF4) need = 4;
    else return Q3_UTF8_BAD;
    /* The second byte's range is what excludes overlong forms, surrogates and code points past
     * U+10FFFF. */
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
    for (size_t k = 1; k < need; k++, lo = 0x80, hi = 0xBF) {
        *len = k;
        if (k >= n) return Q3_UTF8_SHORT;
        if (u[k] < lo || u[k] > hi) return Q3_UTF8_BAD;
    }
    *len = need;
    return Q3_UTF8_OK;
}

size_t q3_utf8_invalid_at(const char *s, size_t n) {
    size_t len;
    for (size_t i = 0; i < n; i += len)
        if (q3_utf8_scan(s + i, n - i, &len) != Q3_UTF8_OK) return i;
    return n;
}

int q3_utf8_next(const char *s, size_t n, size_t *i) {
    const unsigned char *u = (const unsigned char *)s + *i;
    size_t len;
    if (q3_utf8_scan(s + *i, n - *i, &len) != Q3_UTF8_OK) {
        (*i)++;
        return u[0];
    }
    static const unsigned char LEAD_BITS[5] = {0, 0x7F, 0x1F, 0x0F, 0x07};
    int cp = u[0] & LEAD_BITS[len];
    for (size_t k = 1; k < len; k++) cp = cp << 6 | (u[k] & 0x3F);
    *i += len;
    return cp;
}

size_t q3_utf8_count(const char *s, size_t n) {
    size_t count = 0;
    for (size_t i = 0; i < n; count++) q3_utf8_next(s, n, &i);
    return count;
}

size_t q3_utf8_encode(unsigned cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

void q3_buf_put_utf8(q3_buf *b, unsigned cp) {
    char u[4];
    q3_buf_put(b, u, q3_utf8_encode(cp, u));
}
