/*
 * jscan: see jscan.h for what it guarantees.
 *
 * Design. jscan_parse is one left-to-right pass over the bytes, written as a small state
 * machine with three states instead of recursion:
 *
 *   VALUE  a value starts at pos (depth = open containers + 1, checked against the limit);
 *          a container pushes its token index on `open` and moves to VALUE/KEY or closes at
 *          once if empty; a scalar is scanned whole and moves to AFTER.
 *   KEY    inside an object, a "key" ':' must come next; then VALUE.
 *   AFTER  a value just ended: with no open container only whitespace may follow; else a ','
 *          (then KEY or VALUE) or the matching closing bracket (pop, fill the container's
 *          len and next, stay in AFTER).
 *
 * Tokens are appended in document order, so a container's subtree is the contiguous range
 * [i + 1, t[i].next). Indices, never pointers, are held across pushes because the array
 * may move when it grows.
 *
 * Strictness mirrors jansson 2.14's load.c (json_loadb with flags 0), rule by rule:
 * lex_scan_string (control characters, the escape set, \u with four hex digits, surrogate
 * pairs, \u0000 refused without JSON_ALLOW_NUL), utf.c (utf8_check_first/full: shortest
 * form, no surrogates, at most U+10FFFF), lex_scan_number (an integer must fit json_int_t;
 * a real must not overflow strtod), parse_value's depth counter (every value counts), and
 * parse_json (top level '[' or '{', then end of input). tests/lib/test_jscan.c checks the
 * equivalence differentially against the installed jansson.
 *
 * Real overflow is decided without strtod (no locale dependence, no copy of the digits):
 * a decimal rounds to infinity exactly when it is >= 2^1024 - 2^970, the midpoint between
 * DBL_MAX and 2^1024 (the tie rounds to the even neighbour, 2^1024). That threshold has 309
 * integer digits, so only numbers of exactly 309 integer digits need a digit comparison.
 */
#include "jscan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 2^1024 - 2^970: the smallest decimal that strtod rounds to infinity. */
static const char overflow_threshold[] =
    "17976931348623158079372897140530341507993413271003782693617377898044496829276475094664901"
    "79775872070963302864166928879109465555478519404026306574886715058206819089020007083836762"
    "73854845817711531764475730270069855571366959622842914819860834936475292719074168444365510"
    "704342711559699508093042880177904174497792";

void jscan_init(jscan *s)
{
    memset(s, 0, sizeof *s);
}

void jscan_release(jscan *s)
{
    if (!s)
        return;
    free(s->t);
    s->t = NULL;
    s->n = s->cap = 0;
}

/* ---- Errors ------------------------------------------------------------------------------ */

/* "msg near 'text' at position P (line L, column C)"; computed only on failure. */
static int fail(jscan *s, const unsigned char *b, size_t len, size_t pos, const char *msg)
{
    char near[48];
    size_t k = 0;
    if (pos >= len) {
        snprintf(near, sizeof near, "end of file");
    } else {
        near[k++] = '\'';
        for (size_t i = pos; i < len && i < pos + 16 && k + 6 < sizeof near; i++) {
            if (b[i] >= 0x20 && b[i] < 0x7f)
                near[k++] = (char)b[i];
            else
                k += (size_t)snprintf(near + k, sizeof near - k, "\\x%02x", b[i]);
        }
        near[k++] = '\'';
        near[k] = '\0';
    }
    size_t line = 1, col = 1;
    for (size_t i = 0; i < pos && i < len; i++) {
        if (b[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    snprintf(s->err, sizeof s->err, "%s near %s at position %zu (line %zu, column %zu)", msg, near,
             pos, line, col);
    s->err_pos = pos;
    s->n = 0;
    return -1;
}

/* ---- Lexical helpers --------------------------------------------------------------------- */

static inline size_t skip_ws(const unsigned char *b, size_t len, size_t pos)
{
    while (pos < len && (b[pos] == ' ' || b[pos] == '\n' || b[pos] == '\r' || b[pos] == '\t'))
        pos++;
    return pos;
}

/* jansson 2.14 quirk, reproduced so that both accept the same documents: its lexer ends a
 * number or a true/false/null word by reading one byte too far and pushing it back, and a
 * pushed-back NUL byte is lost (stream_get takes a NUL in its one-character cache for "cache
 * empty"). So exactly one NUL byte right after a number or literal is skipped: "[1\0]" and
 * "[true\0,2]" are accepted, "[1\0\0]", "[\"a\"\0]" and "[]\0" are not. */
static inline size_t skip_quirk_nul(const unsigned char *b, size_t len, size_t pos)
{
    return pos < len && b[pos] == '\0' ? pos + 1 : pos;
}

static inline int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Four hex digits at p (len bytes available) -> 0..0xFFFF, or -1. */
static inline long hex4(const unsigned char *p, size_t avail)
{
    if (avail < 4)
        return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return -1;
        v = (v << 4) | h;
    }
    return v;
}

static inline int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* Byte classes inside a string: 0 plain ASCII, 1 quote, 2 backslash, 3 control character,
 * 4/5/6 lead byte of a 2/3/4-byte UTF-8 sequence, 7 never valid (continuation byte out of
 * place, C0/C1 overlong leads, F5..FF). */
/* clang-format off */
static const unsigned char str_class[256] = {
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, /* 00 */
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, /* 10 */
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 20 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 30 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 40 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, /* 50 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 60 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 70 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* 80 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* 90 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* A0 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* B0 */
    7, 7, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* C0 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* D0 */
    5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, /* E0 */
    6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* F0 */
};
/* clang-format on */

/* A string's body starting at *ppos (after the opening quote). On success *ppos is the
 * closing quote's offset and *escaped says whether a backslash occurred; on failure *msg is
 * set and *ppos is where the problem is. */
static int scan_string(const unsigned char *b, size_t len, size_t *ppos, bool *escaped,
                       bool allow_nul, const char **msg)
{
    size_t pos = *ppos;
    bool esc = false;
    for (;;) {
        /* Fast path over plain ASCII. */
        while (pos < len && str_class[b[pos]] == 0)
            pos++;
        if (pos >= len) {
            *msg = "premature end of input";
            goto bad;
        }
        unsigned char c = b[pos];
        switch (str_class[c]) {
        case 1:
            *ppos = pos;
            *escaped = esc;
            return 0;
        case 2: {
            esc = true;
            if (pos + 1 >= len) {
                *msg = "premature end of input";
                goto bad;
            }
            unsigned char e = b[pos + 1];
            if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' ||
                e == 't') {
                pos += 2;
                break;
            }
            if (e != 'u') {
                *msg = "invalid escape";
                goto bad;
            }
            long v = hex4(b + pos + 2, len - pos - 2);
            if (v < 0) {
                *msg = "invalid escape";
                goto bad;
            }
            if (v == 0 && !allow_nul) {
                *msg = "\\u0000 is not allowed";
                goto bad;
            }
            if (v >= 0xDC00 && v <= 0xDFFF) {
                *msg = "invalid Unicode (lone low surrogate)";
                goto bad;
            }
            if (v >= 0xD800 && v <= 0xDBFF) {
                size_t q = pos + 6;
                long v2 = (q + 1 < len && b[q] == '\\' && b[q + 1] == 'u')
                              ? hex4(b + q + 2, len - q - 2)
                              : -1;
                if (v2 < 0xDC00 || v2 > 0xDFFF) {
                    *msg = "invalid Unicode (unpaired high surrogate)";
                    goto bad;
                }
                pos += 12;
            } else {
                pos += 6;
            }
            break;
        }
        case 3:
            *msg = c == '\n' ? "unexpected newline" : "control character";
            goto bad;
        case 4:
            if (pos + 1 >= len || (b[pos + 1] & 0xC0) != 0x80)
                goto bad_utf8;
            pos += 2;
            break;
        case 5: {
            if (pos + 2 >= len)
                goto bad_utf8;
            unsigned char c1 = b[pos + 1], lo = 0x80, hi = 0xBF;
            if (c == 0xE0)
                lo = 0xA0; /* shorter forms are overlong */
            else if (c == 0xED)
                hi = 0x9F; /* U+D800..U+DFFF are surrogates */
            if (c1 < lo || c1 > hi || (b[pos + 2] & 0xC0) != 0x80)
                goto bad_utf8;
            pos += 3;
            break;
        }
        case 6: {
            if (pos + 3 >= len)
                goto bad_utf8;
            unsigned char c1 = b[pos + 1], lo = 0x80, hi = 0xBF;
            if (c == 0xF0)
                lo = 0x90; /* overlong */
            else if (c == 0xF4)
                hi = 0x8F; /* above U+10FFFF */
            if (c1 < lo || c1 > hi || (b[pos + 2] & 0xC0) != 0x80 || (b[pos + 3] & 0xC0) != 0x80)
                goto bad_utf8;
            pos += 4;
            break;
        }
        default:
            goto bad_utf8;
        }
    }
bad_utf8:
    *msg = "invalid UTF-8";
bad:
    *ppos = pos;
    return -1;
}

/* Does the real number whose digits are in b[int0, int1) and b[frac0, frac1) times 10^exp
 * round to infinity? exp is already clamped to +-2^40 by the caller. */
static bool real_overflows(const unsigned char *b, size_t int0, size_t int1, size_t frac0,
                           size_t frac1, int64_t exp)
{
    /* Significant digits: skip leading zeros across the integer and fraction parts. */
    size_t i = int0, nfrac = frac1 - frac0;
    bool in_frac = false;
    for (;;) {
        if (!in_frac && i == int1) {
            in_frac = true;
            i = frac0;
        }
        if (in_frac && i == frac1)
            return false; /* the value is zero */
        if (b[i] != '0')
            break;
        i++;
    }
    /* nd significant digits remain; the value is D * 10^(exp - nfrac) with D of nd digits,
     * so it has E = nd + exp - nfrac integer digits. */
    int64_t nd = in_frac ? (int64_t)(frac1 - i) : (int64_t)(int1 - i) + (int64_t)nfrac;
    int64_t e = nd + exp - (int64_t)nfrac;
    const int64_t nthr = (int64_t)sizeof overflow_threshold - 1;
    if (e != nthr)
        return e > nthr;
    /* Same magnitude: compare digit by digit, the shorter side padded with zeros. */
    for (int64_t k = 0;; k++) {
        int d;
        if (!in_frac && i == int1) {
            in_frac = true;
            i = frac0;
        }
        if (in_frac && i == frac1)
            d = -1; /* digits exhausted: pad with zeros */
        else
            d = b[i++] - '0';
        if (d < 0) {
            /* D ended: it is >= the threshold only if the threshold's rest is all zeros. */
            for (; k < nthr; k++)
                if (overflow_threshold[k] != '0')
                    return false;
            return true;
        }
        if (k >= nthr) {
            if (d != 0)
                return true;
            continue;
        }
        int t = overflow_threshold[k] - '0';
        if (d != t)
            return d > t;
    }
}

/* A number at *ppos. jansson's grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?,
 * integers must fit int64_t, reals must not overflow. */
static int scan_number(const unsigned char *b, size_t len, size_t *ppos, bool *integer,
                       const char **msg)
{
    size_t pos = *ppos;
    bool neg = false;
    if (b[pos] == '-') {
        neg = true;
        pos++;
    }
    size_t int0 = pos;
    if (pos < len && b[pos] == '0') {
        pos++;
        if (pos < len && is_digit(b[pos])) {
            *msg = "invalid token (leading zero)";
            goto bad;
        }
    } else if (pos < len && is_digit(b[pos])) {
        while (pos < len && is_digit(b[pos]))
            pos++;
    } else {
        *msg = "invalid token";
        goto bad;
    }
    size_t int1 = pos, frac0 = pos, frac1 = pos;
    int64_t exp = 0;
    bool isint = true;
    if (pos < len && b[pos] == '.') {
        pos++;
        if (pos >= len || !is_digit(b[pos])) {
            *msg = "invalid token (fraction without digits)";
            goto bad;
        }
        frac0 = pos;
        while (pos < len && is_digit(b[pos]))
            pos++;
        frac1 = pos;
        isint = false;
    }
    if (pos < len && (b[pos] == 'e' || b[pos] == 'E')) {
        pos++;
        bool eneg = false;
        if (pos < len && (b[pos] == '+' || b[pos] == '-'))
            eneg = b[pos++] == '-';
        if (pos >= len || !is_digit(b[pos])) {
            *msg = "invalid token (exponent without digits)";
            goto bad;
        }
        while (pos < len && is_digit(b[pos])) {
            if (exp < ((int64_t)1 << 40))
                exp = exp * 10 + (b[pos] - '0');
            pos++;
        }
        if (eneg)
            exp = -exp;
        isint = false;
    }
    if (isint) {
        /* Magnitude limit: 2^63 - 1, or 2^63 for a negative number. */
        uint64_t lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, v = 0;
        for (size_t i = int0; i < int1; i++) {
            unsigned d = b[i] - '0';
            if (v > (lim - d) / 10) {
                *msg = neg ? "too big negative integer" : "too big integer";
                pos = *ppos;
                goto bad;
            }
            v = v * 10 + d;
        }
    } else if (real_overflows(b, int0, int1, frac0, frac1, exp)) {
        *msg = "real number overflow";
        pos = *ppos;
        goto bad;
    }
    *ppos = pos;
    *integer = isint;
    return 0;
bad:
    *ppos = pos;
    return -1;
}

/* ---- The parser -------------------------------------------------------------------------- */

/* Append a token; its index, or -1 when out of memory. */
static inline long push(jscan *s, jscan_type type, size_t start)
{
    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 256;
        jscan_tok *nt = realloc(s->t, ncap * sizeof *nt);
        if (!nt)
            return -1;
        s->t = nt;
        s->cap = ncap;
    }
    jscan_tok *t = &s->t[s->n];
    t->type = type;
    t->start = (uint32_t)start;
    t->len = 0;
    t->count = 0;
    t->next = (uint32_t)(s->n + 1);
    t->escaped = false;
    t->integer = false;
    return (long)s->n++;
}

static size_t unescape_one(const char *p, char out[4], size_t *nout);

/* ---- Duplicate keys (JSCAN_REJECT_DUPLICATES) ------------------------------------------- */

/* FNV-1a of the unescaped key. */
static uint64_t key_hash(const jscan *s, const jscan_tok *t)
{
    uint64_t h = 1469598103934665603ULL;
    const char *p = s->buf + t->start, *end = p + t->len;
    while (p < end) {
        char u[4];
        size_t nu = 1;
        const char *src = p;
        if (*p == '\\') {
            p += unescape_one(p, u, &nu);
            src = u;
        } else {
            p++;
        }
        for (size_t i = 0; i < nu; i++)
            h = (h ^ (unsigned char)src[i]) * 1099511628211ULL;
    }
    return h;
}

static bool str_eq_n(const jscan *s, const jscan_tok *t, const char *lit, size_t litlen);

/* Do key tokens a and b hold the same unescaped text? -1 out of memory. */
static int keys_equal(const jscan *s, uint32_t a, uint32_t b)
{
    const jscan_tok *ta = &s->t[a], *tb = &s->t[b];
    if (!ta->escaped && !tb->escaped)
        return ta->len == tb->len && memcmp(s->buf + ta->start, s->buf + tb->start, ta->len) == 0;
    char *tmp = malloc((size_t)ta->len + 1);
    if (!tmp)
        return -1;
    size_t n = jscan_str_copy(s, (int)a, tmp, (size_t)ta->len + 1);
    int eq = n != (size_t)-1 && str_eq_n(s, tb, tmp, n);
    free(tmp);
    return eq;
}

typedef struct keyref {
    uint64_t hash;
    uint32_t tok;
} keyref;

static int cmp_keyref(const void *x, const void *y)
{
    const keyref *a = x, *b = y;
    if (a->hash != b->hash)
        return a->hash < b->hash ? -1 : 1;
    return a->tok < b->tok ? -1 : a->tok > b->tok;
}

/* The later key token of a repeated key of object token obj, -1 if none, -2 out of memory.
 * Keys are compared by hash first (sorted, so a large object costs O(k log k)), then by their
 * unescaped text. */
static long duplicate_key(const jscan *s, uint32_t obj)
{
    uint32_t n = s->t[obj].count;
    keyref small[16];
    keyref *a = n <= 16 ? small : malloc((size_t)n * sizeof *a);
    if (!a)
        return -2;
    uint32_t k = obj + 1;
    for (uint32_t i = 0; i < n; i++) {
        a[i].tok = k;
        a[i].hash = key_hash(s, &s->t[k]);
        k = s->t[k + 1].next;
    }
    qsort(a, n, sizeof *a, cmp_keyref);
    long found = -1;
    for (uint32_t i = 1; i < n && found == -1; i++)
        for (uint32_t j = i; j-- > 0 && a[j].hash == a[i].hash;) {
            int eq = keys_equal(s, a[j].tok, a[i].tok);
            if (eq < 0) {
                found = -2;
                break;
            }
            if (eq) {
                found = (long)(a[i].tok > a[j].tok ? a[i].tok : a[j].tok);
                break;
            }
        }
    if (a != small)
        free(a);
    return found;
}

int jscan_parse(jscan *s, const char *buf, size_t len)
{
    return jscan_parse_opts(s, buf, len, 0);
}

int jscan_parse_opts(jscan *s, const char *buf, size_t len, unsigned flags)
{
    const unsigned char *b = (const unsigned char *)buf;
    uint32_t open[JSCAN_MAX_DEPTH]; /* token indices of the open containers */
    size_t depth = 0;               /* number of open containers */
    const char *msg = NULL;
    size_t pos;
    long idx;

    s->n = 0;
    s->buf = buf;
    s->err[0] = '\0';
    s->err_pos = 0;
    if (!buf)
        return fail(s, b, 0, 0, "no input");
    if (len > JSCAN_MAX_INPUT)
        return fail(s, b, 0, 0, "input too large");
    pos = skip_ws(b, len, 0);
    if (!(flags & JSCAN_DECODE_ANY) && (pos >= len || (b[pos] != '[' && b[pos] != '{')))
        return fail(s, b, len, pos, "'[' or '{' expected");

value:
    /* A value starts at pos, at depth `depth + 1`. */
    if (depth >= JSCAN_MAX_DEPTH)
        return fail(s, b, len, pos, "maximum parsing depth reached");
    if (depth > 0 && s->t[open[depth - 1]].type == JSCAN_ARRAY)
        s->t[open[depth - 1]].count++;
    if (pos >= len)
        return fail(s, b, len, pos, "unexpected end of input");
    switch (b[pos]) {
    case '{':
    case '[': {
        bool obj = b[pos] == '{';
        if ((idx = push(s, obj ? JSCAN_OBJECT : JSCAN_ARRAY, pos)) < 0)
            return fail(s, b, len, pos, "out of memory");
        open[depth++] = (uint32_t)idx;
        pos = skip_ws(b, len, pos + 1);
        if (pos < len && b[pos] == (obj ? '}' : ']'))
            goto close;
        if (obj)
            goto key;
        goto value;
    }
    case '"': {
        if ((idx = push(s, JSCAN_STRING, pos + 1)) < 0)
            return fail(s, b, len, pos, "out of memory");
        size_t end = pos + 1;
        bool esc;
        if (scan_string(b, len, &end, &esc, (flags & JSCAN_ALLOW_NUL) != 0, &msg) < 0)
            return fail(s, b, len, end, msg);
        s->t[idx].len = (uint32_t)(end - pos - 1);
        s->t[idx].escaped = esc;
        pos = end + 1;
        goto after;
    }
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9': {
        if ((idx = push(s, JSCAN_NUMBER, pos)) < 0)
            return fail(s, b, len, pos, "out of memory");
        size_t end = pos;
        bool isint;
        if (scan_number(b, len, &end, &isint, &msg) < 0)
            return fail(s, b, len, end, msg);
        s->t[idx].len = (uint32_t)(end - pos);
        s->t[idx].integer = isint;
        pos = skip_quirk_nul(b, len, end);
        goto after;
    }
    case 't':
    case 'f':
    case 'n': {
        static const char *const lits[] = {"true", "false", "null"};
        static const jscan_type types[] = {JSCAN_TRUE, JSCAN_FALSE, JSCAN_NULL};
        int k = b[pos] == 't' ? 0 : b[pos] == 'f' ? 1 : 2;
        size_t n = strlen(lits[k]);
        /* jansson lexes a whole run of letters as one word: "truex" is one invalid token. */
        if (len - pos < n || memcmp(b + pos, lits[k], n) != 0 ||
            (pos + n < len && ((b[pos + n] | 0x20) >= 'a' && (b[pos + n] | 0x20) <= 'z')))
            return fail(s, b, len, pos, "invalid token");
        if ((idx = push(s, types[k], pos)) < 0)
            return fail(s, b, len, pos, "out of memory");
        s->t[idx].len = (uint32_t)n;
        pos = skip_quirk_nul(b, len, pos + n);
        goto after;
    }
    default:
        return fail(s, b, len, pos, "invalid token");
    }

key:
    /* Inside an object, a key string, ':' and then a value. */
    if (pos >= len || b[pos] != '"')
        return fail(s, b, len, pos, "string or '}' expected");
    {
        s->t[open[depth - 1]].count++;
        if ((idx = push(s, JSCAN_STRING, pos + 1)) < 0)
            return fail(s, b, len, pos, "out of memory");
        size_t end = pos + 1;
        bool esc;
        if (scan_string(b, len, &end, &esc, false, &msg) < 0) /* keys: never \u0000 */
            return fail(s, b, len, end, msg);
        s->t[idx].len = (uint32_t)(end - pos - 1);
        s->t[idx].escaped = esc;
        pos = skip_ws(b, len, end + 1);
        if (pos >= len || b[pos] != ':')
            return fail(s, b, len, pos, "':' expected");
        pos = skip_ws(b, len, pos + 1);
        goto value;
    }

after:
    /* A value ended just before pos. */
    pos = skip_ws(b, len, pos);
    if (depth == 0) {
        if (pos != len)
            return fail(s, b, len, pos, "end of file expected");
        return 0;
    }
    {
        bool obj = s->t[open[depth - 1]].type == JSCAN_OBJECT;
        if (pos < len && b[pos] == ',') {
            pos = skip_ws(b, len, pos + 1);
            if (obj)
                goto key;
            goto value;
        }
        if (pos < len && b[pos] == (obj ? '}' : ']'))
            goto close;
        return fail(s, b, len, pos, obj ? "'}' expected" : "']' expected");
    }

close:
    /* b[pos] closes the innermost open container. */
    {
        uint32_t ci = open[--depth];
        jscan_tok *c = &s->t[ci];
        c->len = (uint32_t)(pos + 1 - c->start);
        c->next = (uint32_t)s->n;
        if ((flags & JSCAN_REJECT_DUPLICATES) && c->type == JSCAN_OBJECT && c->count > 1) {
            long dup = duplicate_key(s, ci);
            if (dup == -2)
                return fail(s, b, len, pos, "out of memory");
            if (dup >= 0)
                return fail(s, b, len, s->t[dup].start - 1, "duplicate object key");
        }
        pos++;
        goto after;
    }
}

/* ---- Navigation -------------------------------------------------------------------------- */

static inline bool valid_tok(const jscan *s, int tok)
{
    return tok >= 0 && (size_t)tok < s->n;
}

/* Decode the escape sequence at p (p[0] == '\\', already validated by the scan) into UTF-8
 * at out; returns the raw bytes consumed and sets *nout. */
static size_t unescape_one(const char *p, char out[4], size_t *nout)
{
    const unsigned char *u = (const unsigned char *)p;
    switch (u[1]) {
    case 'b':
        out[0] = '\b';
        break;
    case 'f':
        out[0] = '\f';
        break;
    case 'n':
        out[0] = '\n';
        break;
    case 'r':
        out[0] = '\r';
        break;
    case 't':
        out[0] = '\t';
        break;
    case 'u': {
        long cp = hex4(u + 2, 4);
        size_t used = 6;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (hex4(u + 8, 4) - 0xDC00);
            used = 12;
        }
        if (cp < 0x80) {
            out[0] = (char)cp;
            *nout = 1;
        } else if (cp < 0x800) {
            out[0] = (char)(0xC0 | (cp >> 6));
            out[1] = (char)(0x80 | (cp & 0x3F));
            *nout = 2;
        } else if (cp < 0x10000) {
            out[0] = (char)(0xE0 | (cp >> 12));
            out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
            out[2] = (char)(0x80 | (cp & 0x3F));
            *nout = 3;
        } else {
            out[0] = (char)(0xF0 | (cp >> 18));
            out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
            out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
            out[3] = (char)(0x80 | (cp & 0x3F));
            *nout = 4;
        }
        return used;
    }
    default: /* '"', '\\', '/' */
        out[0] = (char)u[1];
        break;
    }
    *nout = 1;
    return 2;
}

/* Compare the unescaped string token with lit[0..litlen). */
static bool str_eq_n(const jscan *s, const jscan_tok *t, const char *lit, size_t litlen)
{
    const char *p = s->buf + t->start, *end = p + t->len;
    if (!t->escaped)
        return t->len == litlen && memcmp(p, lit, litlen) == 0;
    if (litlen > t->len)
        return false; /* unescaping never lengthens a string */
    size_t k = 0;
    while (p < end) {
        const char *bs = memchr(p, '\\', (size_t)(end - p));
        size_t plain = (size_t)((bs ? bs : end) - p);
        if (plain > litlen - k || memcmp(p, lit + k, plain) != 0)
            return false;
        k += plain;
        p += plain;
        if (!bs)
            break;
        char u[4];
        size_t nu;
        p += unescape_one(p, u, &nu);
        if (nu > litlen - k || memcmp(u, lit + k, nu) != 0)
            return false;
        k += nu;
    }
    return k == litlen;
}

int jscan_get(const jscan *s, int obj, const char *key)
{
    if (!valid_tok(s, obj) || s->t[obj].type != JSCAN_OBJECT)
        return -1;
    size_t klen = strlen(key);
    int found = -1;
    uint32_t i = (uint32_t)obj + 1;
    for (uint32_t k = 0; k < s->t[obj].count; k++) {
        if (str_eq_n(s, &s->t[i], key, klen))
            found = (int)i + 1; /* keep going: the last duplicate wins */
        i = s->t[i + 1].next;
    }
    return found;
}

int jscan_child(const jscan *s, int tok)
{
    if (!valid_tok(s, tok))
        return -1;
    const jscan_tok *t = &s->t[tok];
    if ((t->type != JSCAN_OBJECT && t->type != JSCAN_ARRAY) || t->count == 0)
        return -1;
    return tok + 1;
}

bool jscan_str_eq(const jscan *s, int tok, const char *lit)
{
    if (!valid_tok(s, tok) || s->t[tok].type != JSCAN_STRING)
        return false;
    return str_eq_n(s, &s->t[tok], lit, strlen(lit));
}

size_t jscan_str_copy(const jscan *s, int tok, char *out, size_t cap)
{
    if (!valid_tok(s, tok) || s->t[tok].type != JSCAN_STRING || cap == 0)
        return (size_t)-1;
    const jscan_tok *t = &s->t[tok];
    const char *p = s->buf + t->start, *end = p + t->len;
    if (!t->escaped) {
        if (t->len >= cap)
            return (size_t)-1;
        memcpy(out, p, t->len);
        out[t->len] = '\0';
        return t->len;
    }
    size_t k = 0;
    while (p < end) {
        const char *bs = memchr(p, '\\', (size_t)(end - p));
        size_t plain = (size_t)((bs ? bs : end) - p);
        if (plain >= cap - k)
            return (size_t)-1;
        memcpy(out + k, p, plain);
        k += plain;
        p += plain;
        if (!bs)
            break;
        char u[4];
        size_t nu;
        p += unescape_one(p, u, &nu);
        if (nu >= cap - k)
            return (size_t)-1;
        memcpy(out + k, u, nu);
        k += nu;
    }
    out[k] = '\0';
    return k;
}

bool jscan_int(const jscan *s, int tok, int64_t *v)
{
    if (!valid_tok(s, tok) || s->t[tok].type != JSCAN_NUMBER || !s->t[tok].integer)
        return false;
    const unsigned char *p = (const unsigned char *)s->buf + s->t[tok].start;
    const unsigned char *end = p + s->t[tok].len;
    bool neg = *p == '-';
    if (neg)
        p++;
    /* The scan guaranteed the range; accumulate negatively to reach INT64_MIN. */
    int64_t acc = 0;
    for (; p < end; p++)
        acc = acc * 10 - (*p - '0');
    *v = neg ? acc : -acc;
    return true;
}
