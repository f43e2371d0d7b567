/*
 * template: see template.h.
 *
 * One scanner serves validation and rendering: it walks the text, copies literal bytes and, at
 * each "{{", finds the closing "}}", trims spaces, and maps the key to a variable. Rendering
 * writes through a bounded cursor that keeps counting past the end of the buffer so the caller
 * learns the full length (snprintf semantics).
 */
#include "template.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef enum { VAR_NAME, VAR_EMAIL, VAR_SPEND, VAR_UNKNOWN } var_id;

static var_id lookup(const char *k, size_t n)
{
    if (n == 4 && memcmp(k, "name", 4) == 0)
        return VAR_NAME;
    if (n == 5 && memcmp(k, "email", 5) == 0)
        return VAR_EMAIL;
    if (n == 11 && memcmp(k, "total_spend", 11) == 0)
        return VAR_SPEND;
    return VAR_UNKNOWN;
}

typedef struct cursor {
    char *out;
    size_t n, len;
} cursor;

static void put(cursor *c, const char *s, size_t k)
{
    if (c->out && c->len < c->n) {
        size_t room = c->n - 1 - c->len;
        size_t w = k < room ? k : room;
        memcpy(c->out + c->len, s, w);
        c->out[c->len + w] = '\0';
    }
    c->len += k;
}

const char *template_format_money(double v, char *buf, size_t n)
{
    if (!isfinite(v))
        v = 0;
    double r = round(v * 100.0) / 100.0;
    if (r == floor(r) && fabs(r) < 1e15) {
        snprintf(buf, n, "%.0f", r);
        return buf;
    }
    snprintf(buf, n, "%.2f", r);
    size_t len = strlen(buf);
    while (len > 0 && buf[len - 1] == '0')
        buf[--len] = '\0';
    return buf;
}

/* Scan `tpl`; with v == NULL only validate. Returns the rendered length or -1 (err filled). */
static long scan(const char *tpl, const template_vars *v, cursor *c, char *err, size_t errlen)
{
    const char *p = tpl;
    while (*p) {
        const char *open = strstr(p, "{{");
        if (!open) {
            put(c, p, strlen(p));
            break;
        }
        put(c, p, (size_t)(open - p));
        const char *close = strstr(open + 2, "}}");
        if (!close) {
            if (err)
                snprintf(err, errlen, "message: unclosed \"{{\" at offset %ld", (long)(open - tpl));
            return -1;
        }
        const char *k = open + 2, *e = close;
        while (k < e && (*k == ' ' || *k == '\t'))
            k++;
        while (e > k && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        var_id id = lookup(k, (size_t)(e - k));
        if (id == VAR_UNKNOWN) {
            if (err)
                snprintf(err, errlen,
                         "message: unknown placeholder {{%.*s}} (allowed: {{name}}, {{email}}, "
                         "{{total_spend}})",
                         (int)((e - k) > 40 ? 40 : (e - k)), k);
            return -1;
        }
        if (v) {
            char money[64];
            const char *s = id == VAR_NAME ? (v->name ? v->name : "")
                            : id == VAR_EMAIL
                                ? (v->email ? v->email : "")
                                : template_format_money(v->total_spend, money, sizeof money);
            put(c, s, strlen(s));
        }
        p = close + 2;
    }
    return (long)c->len;
}

int template_validate(const char *tpl, char *err, size_t errlen)
{
    if (!tpl) {
        snprintf(err, errlen, "message: must be a string");
        return -1;
    }
    size_t n = strlen(tpl);
    if (n == 0) {
        snprintf(err, errlen, "message: must not be empty");
        return -1;
    }
    if (n > TEMPLATE_MAX_BYTES) {
        snprintf(err, errlen, "message: longer than %d bytes", TEMPLATE_MAX_BYTES);
        return -1;
    }
    cursor c = {0};
    return scan(tpl, NULL, &c, err, errlen) < 0 ? -1 : 0;
}

long template_render(const char *tpl, const template_vars *v, char *out, size_t n)
{
    static const template_vars empty = {0};
    cursor c = {.out = out, .n = n};
    if (out && n > 0)
        out[0] = '\0';
    return scan(tpl ? tpl : TEMPLATE_DEFAULT, v ? v : &empty, &c, NULL, 0);
}
