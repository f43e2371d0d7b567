/* jsonx: see jsonx.h. */
#include "jsonx.h"

#include "timeutil.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

json_t *jsonx_from_bson_iter(const bson_iter_t *it_in)
{
    bson_iter_t it = *it_in;
    switch (bson_iter_type(&it)) {
    case BSON_TYPE_OID: {
        char hex[25];
        bson_oid_to_string(bson_iter_oid(&it), hex);
        return json_string(hex);
    }
    case BSON_TYPE_DATE_TIME: {
        char buf[32];
        return json_string(time_format_iso8601(bson_iter_date_time(&it), buf));
    }
    case BSON_TYPE_UTF8: {
        uint32_t len;
        const char *s = bson_iter_utf8(&it, &len);
        return json_stringn(s, len);
    }
    case BSON_TYPE_INT32:
        return json_integer(bson_iter_int32(&it));
    case BSON_TYPE_INT64:
        return json_integer(bson_iter_int64(&it));
    case BSON_TYPE_DOUBLE:
        return json_real(bson_iter_double(&it));
    case BSON_TYPE_BOOL:
        return json_boolean(bson_iter_bool(&it));
    case BSON_TYPE_NULL:
    case BSON_TYPE_UNDEFINED:
        return json_null();
    case BSON_TYPE_DECIMAL128: {
        bson_decimal128_t d;
        char buf[BSON_DECIMAL128_STRING];
        bson_iter_decimal128(&it, &d);
        bson_decimal128_to_string(&d, buf);
        return json_string(buf);
    }
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY: {
        bool is_array = bson_iter_type(&it) == BSON_TYPE_ARRAY;
        bson_iter_t child;
        if (!bson_iter_recurse(&it, &child))
            return json_null();
        json_t *out = is_array ? json_array() : json_object();
        while (out && bson_iter_next(&child)) {
            json_t *v = jsonx_from_bson_iter(&child);
            if (is_array)
                json_array_append_new(out, v);
            else
                json_object_set_new(out, bson_iter_key(&child), v);
        }
        return out;
    }
    case BSON_TYPE_TIMESTAMP: {
        uint32_t t, i;
        bson_iter_timestamp(&it, &t, &i);
        return json_integer(t);
    }
    default: {
        /* Rare types (binary, regex, code...): canonical extended JSON text keeps them visible. */
        bson_t tmp = BSON_INITIALIZER;
        bson_append_iter(&tmp, "v", 1, &it);
        char *s = bson_as_canonical_extended_json(&tmp, NULL);
        json_t *out = json_string(s ? s : "");
        bson_free(s);
        bson_destroy(&tmp);
        return out;
    }
    }
}

json_t *jsonx_from_bson(const bson_t *doc)
{
    json_t *out = json_object();
    bson_iter_t it;
    if (!out || !bson_iter_init(&it, doc))
        return out;
    while (bson_iter_next(&it))
        json_object_set_new(out, bson_iter_key(&it), jsonx_from_bson_iter(&it));
    return out;
}

json_t *jsonx_parse(const char *buf, size_t len, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *v = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!v)
        snprintf(err, errlen, "invalid JSON at line %d column %d: %s", jerr.line, jerr.column,
                 jerr.text);
    return v;
}

char *jsonx_dumps(const json_t *v)
{
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

json_t *jsonx_error(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return json_pack("{s:s}", "error", msg);
}

const char *jsonx_str(const json_t *obj, const char *key, const char *def)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : def;
}

long long jsonx_int(const json_t *obj, const char *key, long long def)
{
    json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? (long long)json_integer_value(v) : def;
}

bool jsonx_bool(const json_t *obj, const char *key, bool def)
{
    json_t *v = json_object_get(obj, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

/* ---- jsonx_buf ----------------------------------------------------------------------------- */

static bool buf_reserve(jsonx_buf *b, size_t more)
{
    if (b->failed)
        return false;
    if (b->len + more + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) {
        b->failed = true;
        return false;
    }
    b->data = d;
    b->cap = cap;
    return true;
}

bool jsonx_buf_reserve(jsonx_buf *b, size_t more)
{
    return buf_reserve(b, more);
}

/* Room for n more bytes and the NUL. Inline so that the writer's fixed-size appends (one
 * quote, a comma) compile to plain stores instead of calls into libc's memcpy. */
static inline bool room(jsonx_buf *b, size_t n)
{
    return (!b->failed && b->len + n + 1 <= b->cap) || buf_reserve(b, n);
}

static inline void put(jsonx_buf *b, const char *s, size_t n)
{
    if (!room(b, n))
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void jsonx_buf_raw(jsonx_buf *b, const char *s, size_t n)
{
    put(b, s, n);
}

void jsonx_buf_cat(jsonx_buf *b, const char *s)
{
    put(b, s, strlen(s));
}

void jsonx_buf_str(jsonx_buf *b, const char *s, size_t n)
{
    /* Upper-case hex, as jansson writes \\u escapes ("\\u001F"). */
    static const char hex[] = "0123456789ABCDEF";
    /* Worst case 6 bytes per input byte (\u00XX) plus the quotes. */
    if (!room(b, 6 * n + 2))
        return;
    char *o = b->data + b->len;
    *o++ = '"';
    /* Stored strings are short and nearly always plain: bytes are copied as they are scanned
     * (no call per run). */
    for (const unsigned char *p = (const unsigned char *)s, *end = p + n; p < end; p++) {
        unsigned char c = *p;
        if (c >= 0x20 && c != '"' && c != '\\') {
            *o++ = (char)c;
            continue;
        }
        char esc = 0;
        switch (c) {
        case '"':
            esc = '"';
            break;
        case '\\':
            esc = '\\';
            break;
        case '\b':
            esc = 'b';
            break;
        case '\f':
            esc = 'f';
            break;
        case '\n':
            esc = 'n';
            break;
        case '\r':
            esc = 'r';
            break;
        case '\t':
            esc = 't';
            break;
        default:
            break;
        }
        if (esc) {
            *o++ = '\\';
            *o++ = esc;
        } else {
            memcpy(o, "\\u00", 4);
            o += 4;
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    b->data[b->len] = '\0';
}

bool jsonx_buf_ok(const jsonx_buf *b)
{
    return !b->failed;
}

void jsonx_buf_reset(jsonx_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void jsonx_buf_free(jsonx_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = false;
}

/* ---- BSON -> JSON text ---------------------------------------------------------------------- */

void jsonx_buf_int(jsonx_buf *b, long long v)
{
    char tmp[24], *e = tmp + sizeof tmp, *p = e;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    put(b, p, (size_t)(e - p));
}

/* A double as jansson's dump writes it (jsonp_dtostr, precision 17): "%.17g", ".0" added when
 * there is neither '.' nor 'e', and the exponent without '+' or leading zeros. */
static void buf_real(jsonx_buf *b, double d)
{
    /* Whole numbers below 1e15 print as their digits under %.17g: skip the formatter. */
    if (d == (double)(int64_t)d && d > -1e15 && d < 1e15 && !(d == 0 && signbit(d))) {
        jsonx_buf_int(b, (long long)d);
        put(b, ".0", 2);
        return;
    }
    char tmp[64];
    int n = snprintf(tmp, sizeof tmp - 3, "%.17g", d);
    if (n < 0 || (size_t)n >= sizeof tmp - 3)
        return;
    size_t len = (size_t)n;
    if (!memchr(tmp, '.', len) && !memchr(tmp, 'e', len)) {
        memcpy(tmp + len, ".0", 3);
        len += 2;
    }
    char *start = memchr(tmp, 'e', len);
    if (start) {
        start++;
        char *end = start + 1;
        if (*start == '-')
            start++;
        while (*end == '0')
            end++;
        if (end != start) {
            memmove(start, end, len - (size_t)(end - tmp) + 1);
            len -= (size_t)(end - start);
        }
    }
    put(b, tmp, len);
}

/* jansson's UTF-8 rule (utf8_check_string): sequences of 1-4 bytes, no overlong forms, no
 * surrogates, nothing above U+10FFFF; NUL allowed (json_stringn). ASCII runs are skipped eight
 * bytes at a time: nearly every stored string is ASCII. */
static bool utf8_ok(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str, *end = s + n;
    while (s < end) {
        if ((size_t)(end - s) >= 8) {
            uint64_t w;
            memcpy(&w, s, 8);
            if (!(w & 0x8080808080808080ULL)) {
                s += 8;
                continue;
            }
        }
        unsigned c = *s;
        if (c < 0x80) {
            s++;
            continue;
        }
        size_t len;
        unsigned v, min;
        if (c >= 0xC2 && c <= 0xDF)
            len = 2, v = c & 0x1F, min = 0x80;
        else if (c >= 0xE0 && c <= 0xEF)
            len = 3, v = c & 0x0F, min = 0x800;
        else if (c >= 0xF0 && c <= 0xF4)
            len = 4, v = c & 0x07, min = 0x10000;
        else
            return false;
        if ((size_t)(end - s) < len)
            return false;
        for (size_t i = 1; i < len; i++) {
            if ((s[i] & 0xC0) != 0x80)
                return false;
            v = (v << 6) | (s[i] & 0x3F);
        }
        if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
            return false;
        s += len;
    }
    return true;
}

/* The writer below reads values with libbson's inline _unsafe accessors: bson_iter_next has
 * validated the element it stops at (its lengths lie inside the document), which is all they
 * assume, and they save a library call per member. */

/* Would jansson keep this value (json_* constructor not NULL)? */
static bool value_kept(const bson_iter_t *it)
{
    switch (bson_iter_type_unsafe(it)) {
    case BSON_TYPE_UTF8: {
        size_t len;
        const char *s = bson_iter_utf8_unsafe(it, &len);
        return utf8_ok(s, len);
    }
    case BSON_TYPE_DOUBLE:
        return isfinite(bson_iter_double_unsafe(it));
    default:
        return true;
    }
}

static int buf_value(jsonx_buf *b, const bson_iter_t *it);

/* A date as jsonx_from_bson writes it (time_format_iso8601, quoted). The calendar part of the
 * last day seen by this thread is kept: a page's dates mostly fall on a few days, and the
 * time of day is plain arithmetic. */
static void buf_date(jsonx_buf *b, int64_t ms)
{
    static _Thread_local int64_t cached_day = INT64_MIN;
    static _Thread_local char cached_ymd[11];
    int64_t secs = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
    int64_t msec = ms - secs * 1000;
    int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
    int64_t rem = secs - days * 86400;
    char out[32];
    if (days != cached_day) {
        time_format_iso8601(days * 86400000, out);
        memcpy(cached_ymd, out, 10);
        cached_day = days;
    }
    out[0] = '"';
    memcpy(out + 1, cached_ymd, 10);
    unsigned f[4] = {(unsigned)(rem / 3600), (unsigned)(rem / 60 % 60), (unsigned)(rem % 60),
                     (unsigned)msec};
    char *o = out + 11;
    *o++ = 'T';
    *o++ = (char)('0' + f[0] / 10);
    *o++ = (char)('0' + f[0] % 10);
    *o++ = ':';
    *o++ = (char)('0' + f[1] / 10);
    *o++ = (char)('0' + f[1] % 10);
    *o++ = ':';
    *o++ = (char)('0' + f[2] / 10);
    *o++ = (char)('0' + f[2] % 10);
    *o++ = '.';
    *o++ = (char)('0' + f[3] / 100);
    *o++ = (char)('0' + f[3] / 10 % 10);
    *o++ = (char)('0' + f[3] % 10);
    *o++ = 'Z';
    *o++ = '"';
    put(b, out, (size_t)(o - out));
}

/* A key of printable ASCII without '"' or '\\' (every key minicrm stores): valid UTF-8 that
 * needs no escape. */
static inline bool key_plain(const char *k, size_t n)
{
    unsigned bad = 0; /* no early exit: keys are short, a branch per byte costs more */
    for (size_t i = 0; i < n; i++) {
        unsigned c = (unsigned char)k[i];
        bad |= (c - 0x20u >= 0x5fu) | (c == '"') | (c == '\\');
    }
    return !bad;
}

/* [,]"key": for a plain key, in one reservation. */
static inline void put_plain_key(jsonx_buf *b, const char *k, size_t n, bool comma)
{
    if (!room(b, n + 4))
        return;
    char *o = b->data + b->len;
    if (comma)
        *o++ = ',';
    *o++ = '"';
    memcpy(o, k, n);
    o += n;
    *o++ = '"';
    *o++ = ':';
    *o = '\0';
    b->len = (size_t)(o - b->data);
}

/* Members of a document (is_array false) or elements of an array. -1 on a repeated key. */
static int buf_container(jsonx_buf *b, bson_iter_t *child, bool is_array, jsonx_member_fn fn,
                         void *ctx)
{
    put(b, is_array ? "[" : "{", 1);
    bool first = true;
    const char *seen[64];
    unsigned char seen_h[64];
    size_t nseen = 0;
    uint64_t filter = 0;
    while (bson_iter_next(child)) {
        if (!is_array) {
            const char *key = bson_iter_key_unsafe(child);
            /* A repeated key: jansson would keep the first position with the last value. A
             * 64-bit filter on (length, first, last byte) skips the comparisons for keys that
             * cannot repeat an earlier one. */
            size_t kl = child->d1 - child->key - 1; /* bson_iter_key_len */
            if (nseen < 64) {
                unsigned h = (unsigned)(kl * 31u + (unsigned char)key[0] * 7u +
                                        (kl ? (unsigned char)key[kl - 1] * 3u : 0u) +
                                        (kl > 1 ? (unsigned char)key[1] : 0u)) &
                             63u;
                uint64_t bit = 1ULL << h;
                if (filter & bit)
                    for (size_t i = 0; i < nseen; i++)
                        if (seen_h[i] == h && strcmp(seen[i], key) == 0)
                            return -1;
                filter |= bit;
                seen_h[nseen] = (unsigned char)h;
                seen[nseen++] = key;
            } else {
                return -1; /* over 64 members: left to jansson rather than checked slowly */
            }
            bool plain = key_plain(key, kl);
            if (!value_kept(child) || (!plain && !utf8_ok(key, kl)))
                continue;
            const char *raw = NULL;
            size_t rawlen = 0;
            int how = fn ? fn(ctx, child, &raw, &rawlen) : JSONX_MEMBER_KEEP;
            if (how == JSONX_MEMBER_SKIP)
                continue;
            if (plain) {
                put_plain_key(b, key, kl, !first);
            } else {
                if (!first)
                    put(b, ",", 1);
                jsonx_buf_str(b, key, kl);
                put(b, ":", 1);
            }
            first = false;
            if (how == JSONX_MEMBER_RAW) {
                put(b, raw, rawlen);
                continue;
            }
        } else {
            if (!value_kept(child))
                continue;
            if (!first)
                put(b, ",", 1);
            first = false;
        }
        if (buf_value(b, child) != 0)
            return -1;
    }
    put(b, is_array ? "]" : "}", 1);
    return 0;
}

static int buf_value(jsonx_buf *b, const bson_iter_t *it)
{
    switch (bson_iter_type_unsafe(it)) {
    case BSON_TYPE_OID: {
        if (!room(b, 27))
            return 0;
        char *o = b->data + b->len;
        o[0] = '"';
        bson_oid_to_string(bson_iter_oid_unsafe(it), o + 1); /* 24 hex and a NUL */
        o[25] = '"';
        o[26] = '\0';
        b->len += 26;
        return 0;
    }
    case BSON_TYPE_DATE_TIME:
        buf_date(b, bson_iter_int64_unsafe(it)); /* a date is an int64 */
        return 0;
    case BSON_TYPE_UTF8: {
        size_t len;
        const char *s = bson_iter_utf8_unsafe(it, &len);
        jsonx_buf_str(b, s, len);
        return 0;
    }
    case BSON_TYPE_INT32:
        jsonx_buf_int(b, bson_iter_int32_unsafe(it));
        return 0;
    case BSON_TYPE_INT64:
        jsonx_buf_int(b, bson_iter_int64_unsafe(it));
        return 0;
    case BSON_TYPE_DOUBLE:
        buf_real(b, bson_iter_double_unsafe(it));
        return 0;
    case BSON_TYPE_BOOL:
        if (bson_iter_bool_unsafe(it))
            put(b, "true", 4);
        else
            put(b, "false", 5);
        return 0;
    case BSON_TYPE_NULL:
    case BSON_TYPE_UNDEFINED:
        put(b, "null", 4);
        return 0;
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY: {
        bson_iter_t child;
        if (!bson_iter_recurse(it, &child)) {
            put(b, "null", 4);
            return 0;
        }
        return buf_container(b, &child, bson_iter_type_unsafe(it) == BSON_TYPE_ARRAY, NULL, NULL);
    }
    default: {
        /* Rare types: exactly what the jansson path writes. */
        json_t *v = jsonx_from_bson_iter(it);
        char *s = v ? jsonx_dumps(v) : NULL;
        json_decref(v);
        if (!s) {
            b->failed = true;
            return 0;
        }
        jsonx_buf_cat(b, s);
        free(s);
        return 0;
    }
    }
}

int jsonx_buf_bson(jsonx_buf *b, const bson_t *doc, jsonx_member_fn fn, void *ctx)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, doc)) {
        put(b, "{}", 2); /* jsonx_from_bson: an empty object */
        return 0;
    }
    return buf_container(b, &it, false, fn, ctx);
}

int jsonx_buf_bson_member(jsonx_buf *b, const bson_iter_t *it, bool *first)
{
    const char *key = bson_iter_key(it);
    if (!value_kept(it) || !utf8_ok(key, strlen(key)))
        return 0;
    if (!*first)
        put(b, ",", 1);
    *first = false;
    jsonx_buf_str(b, key, strlen(key));
    put(b, ":", 1);
    return buf_value(b, it);
}

typedef struct public_ctx {
    const char *const *drop;
    bool clash; /* a stored "id" member */
} public_ctx;

static int public_member(void *vctx, const bson_iter_t *it, const char **raw, size_t *rawlen)
{
    (void)raw;
    (void)rawlen;
    public_ctx *c = vctx;
    const char *key = bson_iter_key(it);
    if (!strcmp(key, "_id"))
        return JSONX_MEMBER_SKIP;
    if (!strcmp(key, "id"))
        c->clash = true;
    for (const char *const *d = c->drop; d && *d; d++)
        if (!strcmp(key, *d))
            return JSONX_MEMBER_SKIP;
    return JSONX_MEMBER_KEEP;
}

int jsonx_buf_bson_public(jsonx_buf *b, const bson_t *doc, const char *const *drop)
{
    size_t start = b->len;
    public_ctx c = {drop, false};
    bson_iter_t id;
    int rc = bson_iter_init_find(&id, doc, "_id") && value_kept(&id) ? 0 : -1;
    if (rc == 0)
        rc = jsonx_buf_bson(b, doc, public_member, &c);
    if (rc == 0 && !c.clash && jsonx_buf_ok(b) && b->len > start + 1) {
        b->len--; /* the closing brace */
        bool first = b->data[b->len - 1] == '{';
        if (!first)
            put(b, ",", 1);
        put(b, "\"id\":", 5);
        rc = buf_value(b, &id);
        put(b, "}", 1);
    } else if (rc == 0) {
        rc = -1;
    }
    if (rc != 0 && b->data) {
        b->len = start;
        b->data[start] = '\0';
    }
    return rc;
}
