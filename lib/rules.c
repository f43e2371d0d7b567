/*
 * rules: see rules.h.
 *
 * Parsing goes through one generic "value" step (number / numeric string / absent) so JSON and
 * BSON inputs share every check: one function per rule validates and stores, and both entry
 * points only translate their container into calls of set_rule().
 */
#include "rules.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DAY_MS INT64_C(86400000)

typedef enum { V_ABSENT, V_NUMBER, V_STRING, V_OTHER } vkind;

typedef struct rval {
    vkind kind;
    double num;
    const char *str;
    size_t len;
} rval;

/* A numeric string ("5000", " 12.5 ") -> number; false if it is not one. */
static bool parse_num_str(const char *s, size_t len, double *out)
{
    char buf[64];
    if (len == 0 || len >= sizeof buf)
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end = NULL;
    errno = 0;
    double d = strtod(buf, &end);
    while (end && isspace((unsigned char)*end))
        end++;
    if (errno || !end || *end || end == buf || !isfinite(d))
        return false;
    *out = d;
    return true;
}

static int get_number(const char *key, const rval *v, double lo, double hi, bool integer,
                      double *out, char *err, size_t errlen)
{
    double d;
    if (v->kind == V_NUMBER)
        d = v->num;
    else if (v->kind == V_STRING && parse_num_str(v->str, v->len, &d))
        ;
    else {
        snprintf(err, errlen, "rules.%s: must be a number", key);
        return -1;
    }
    if (!isfinite(d) || d < lo || d > hi) {
        snprintf(err, errlen, "rules.%s: must be between %g and %g", key, lo, hi);
        return -1;
    }
    if (integer && d != floor(d)) {
        snprintf(err, errlen, "rules.%s: must be a whole number of days", key);
        return -1;
    }
    *out = d;
    return 0;
}

static int set_domain(rules *r, const rval *v, char *err, size_t errlen)
{
    if (v->kind != V_STRING) {
        snprintf(err, errlen, "rules.email_domain: must be a string");
        return -1;
    }
    const char *s = v->str;
    size_t n = v->len;
    if (n > 0 && s[0] == '@') {
        s++;
        n--;
    }
    if (n == 0 || n >= sizeof r->email_domain) {
        snprintf(err, errlen, "rules.email_domain: must be a domain name of 1-253 characters");
        return -1;
    }
    /* Labels of letters, digits and '-', separated by single dots, not starting or ending with
     * '-' or '.'. */
    char prev = '.';
    for (size_t i = 0; i < n; i++) {
        char c = (char)tolower((unsigned char)s[i]);
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '-' && prev != '.') ||
                  (c == '.' && prev != '.' && prev != '-');
        if (!ok) {
            snprintf(err, errlen, "rules.email_domain: not a valid domain name");
            return -1;
        }
        r->email_domain[i] = c;
        prev = c;
    }
    if (prev == '.' || prev == '-') {
        snprintf(err, errlen, "rules.email_domain: not a valid domain name");
        return -1;
    }
    r->email_domain[n] = '\0';
    r->has |= RULE_EMAIL_DOMAIN;
    return 0;
}

static int set_rule(rules *r, const char *key, const rval *v, char *err, size_t errlen)
{
    /* null and "" mean "not set" (the original front end sends empty inputs that way) */
    bool absent = v->kind == V_ABSENT || (v->kind == V_STRING && v->len == 0);
    double d;
    if (strcmp(key, "min_spend") == 0) {
        if (absent)
            return 0;
        if (get_number(key, v, 0, RULES_MAX_SPEND, false, &d, err, errlen))
            return -1;
        r->min_spend = d;
        r->has |= RULE_MIN_SPEND;
    } else if (strcmp(key, "max_spend") == 0) {
        if (absent)
            return 0;
        if (get_number(key, v, 0, RULES_MAX_SPEND, false, &d, err, errlen))
            return -1;
        r->max_spend = d;
        r->has |= RULE_MAX_SPEND;
    } else if (strcmp(key, "inactive_days") == 0) {
        if (absent)
            return 0;
        if (get_number(key, v, 0, RULES_MAX_DAYS, true, &d, err, errlen))
            return -1;
        r->inactive_days = (int64_t)d;
        r->has |= RULE_INACTIVE_DAYS;
    } else if (strcmp(key, "recent_signup") == 0) {
        if (absent)
            return 0;
        if (get_number(key, v, 1, RULES_MAX_DAYS, true, &d, err, errlen))
            return -1;
        r->recent_signup = (int64_t)d;
        r->has |= RULE_RECENT_SIGNUP;
    } else if (strcmp(key, "email_domain") == 0) {
        if (absent)
            return 0;
        return set_domain(r, v, err, errlen);
    } else {
        snprintf(err, errlen,
                 "rules.%.64s: unknown rule (allowed: min_spend, max_spend, inactive_days, "
                 "recent_signup, email_domain)",
                 key);
        return -1;
    }
    return 0;
}

static int finish(rules *r, char *err, size_t errlen)
{
    if ((r->has & RULE_MIN_SPEND) && (r->has & RULE_MAX_SPEND) && r->min_spend > r->max_spend) {
        snprintf(err, errlen, "rules.max_spend: must be >= min_spend");
        return -1;
    }
    return 0;
}

int rules_parse_json(const json_t *obj, rules *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!json_is_object(obj)) {
        snprintf(err, errlen, "rules: must be an object");
        return -1;
    }
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)obj, key, val)
    {
        rval v = {V_OTHER, 0, NULL, 0};
        if (json_is_null(val))
            v.kind = V_ABSENT;
        else if (json_is_number(val)) {
            v.kind = V_NUMBER;
            v.num = json_number_value(val);
        } else if (json_is_string(val)) {
            v.kind = V_STRING;
            v.str = json_string_value(val);
            v.len = json_string_length(val);
        }
        if (set_rule(out, key, &v, err, errlen) != 0)
            return -1;
    }
    return finish(out, err, errlen);
}

int rules_parse_bson(const bson_t *doc, rules *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    bson_iter_t it;
    if (!doc || !bson_iter_init(&it, doc)) {
        snprintf(err, errlen, "rules: must be a document");
        return -1;
    }
    while (bson_iter_next(&it)) {
        rval v = {V_OTHER, 0, NULL, 0};
        switch (bson_iter_type(&it)) {
        case BSON_TYPE_NULL:
        case BSON_TYPE_UNDEFINED:
            v.kind = V_ABSENT;
            break;
        case BSON_TYPE_DOUBLE:
        case BSON_TYPE_INT32:
        case BSON_TYPE_INT64:
            v.kind = V_NUMBER;
            v.num = bson_iter_as_double(&it);
            break;
        case BSON_TYPE_UTF8: {
            uint32_t len;
            v.kind = V_STRING;
            v.str = bson_iter_utf8(&it, &len);
            v.len = len;
            break;
        }
        default:
            break;
        }
        if (set_rule(out, bson_iter_key(&it), &v, err, errlen) != 0)
            return -1;
    }
    return finish(out, err, errlen);
}

bool rules_append_bson(const rules *r, bson_t *doc)
{
    bool ok = true;
    if (r->has & RULE_MIN_SPEND)
        ok = ok && BSON_APPEND_DOUBLE(doc, "min_spend", r->min_spend);
    if (r->has & RULE_MAX_SPEND)
        ok = ok && BSON_APPEND_DOUBLE(doc, "max_spend", r->max_spend);
    if (r->has & RULE_INACTIVE_DAYS)
        ok = ok && BSON_APPEND_INT64(doc, "inactive_days", r->inactive_days);
    if (r->has & RULE_RECENT_SIGNUP)
        ok = ok && BSON_APPEND_INT64(doc, "recent_signup", r->recent_signup);
    if (r->has & RULE_EMAIL_DOMAIN)
        ok = ok && BSON_APPEND_UTF8(doc, "email_domain", r->email_domain);
    return ok;
}

json_t *rules_to_json(const rules *r)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    if (r->has & RULE_MIN_SPEND)
        json_object_set_new(o, "min_spend", json_real(r->min_spend));
    if (r->has & RULE_MAX_SPEND)
        json_object_set_new(o, "max_spend", json_real(r->max_spend));
    if (r->has & RULE_INACTIVE_DAYS)
        json_object_set_new(o, "inactive_days", json_integer(r->inactive_days));
    if (r->has & RULE_RECENT_SIGNUP)
        json_object_set_new(o, "recent_signup", json_integer(r->recent_signup));
    if (r->has & RULE_EMAIL_DOMAIN)
        json_object_set_new(o, "email_domain", json_string(r->email_domain));
    return o;
}

bool rules_filter(const rules *r, int64_t now_ms, bson_t *filter)
{
    bool ok = true;
    if (r->has & (RULE_MIN_SPEND | RULE_MAX_SPEND)) {
        bson_t sub;
        ok = ok && BSON_APPEND_DOCUMENT_BEGIN(filter, "total_spend", &sub);
        if (r->has & RULE_MIN_SPEND)
            ok = ok && BSON_APPEND_DOUBLE(&sub, "$gte", r->min_spend);
        if (r->has & RULE_MAX_SPEND)
            ok = ok && BSON_APPEND_DOUBLE(&sub, "$lte", r->max_spend);
        ok = ok && bson_append_document_end(filter, &sub);
    }
    if (r->has & RULE_INACTIVE_DAYS) {
        bson_t sub;
        ok = ok && BSON_APPEND_DOCUMENT_BEGIN(filter, "last_visit_date", &sub);
        ok = ok && BSON_APPEND_DATE_TIME(&sub, "$lte", now_ms - r->inactive_days * DAY_MS);
        ok = ok && bson_append_document_end(filter, &sub);
    }
    if (r->has & RULE_RECENT_SIGNUP) {
        bson_t sub;
        ok = ok && BSON_APPEND_DOCUMENT_BEGIN(filter, "createdAt", &sub);
        ok = ok && BSON_APPEND_DATE_TIME(&sub, "$gte", now_ms - r->recent_signup * DAY_MS);
        ok = ok && bson_append_document_end(filter, &sub);
    }
    if (r->has & RULE_EMAIL_DOMAIN)
        ok = ok && BSON_APPEND_UTF8(filter, RULES_DOMAIN_FIELD, r->email_domain);
    /* Every audience leaves suppressed customers out (lib/suppress keeps the flag): previews
     * and the fan-out read the same filter, so they agree, with no extra query per message. */
    bson_t sup;
    ok = ok && BSON_APPEND_DOCUMENT_BEGIN(filter, RULES_SUPPRESSED_FIELD, &sup) &&
         BSON_APPEND_BOOL(&sup, "$ne", true) && bson_append_document_end(filter, &sup);
    return ok;
}

const char *rules_email_domain(const char *email, char *out, size_t n)
{
    const char *at = strrchr(email, '@');
    size_t k = 0;
    for (const char *p = at ? at + 1 : ""; *p && k + 1 < n; p++)
        out[k++] = (char)tolower((unsigned char)*p);
    if (n > 0)
        out[k] = '\0';
    return out;
}

/* Is the value at it a document {$ne: v} with that one member? Sets *v. */
static bool is_ne_term(const bson_iter_t *it, bson_iter_t *v)
{
    bson_iter_t sub;
    if (!BSON_ITER_HOLDS_DOCUMENT(it) || !bson_iter_recurse(it, &sub) || !bson_iter_next(&sub) ||
        strcmp(bson_iter_key(&sub), "$ne") != 0)
        return false;
    *v = sub;
    if (bson_iter_next(&sub))
        return false;
    /* {f: {$ne: [..]}} or {$ne: {...}}: equality with an array or document is not the
     * complement the split relies on in every case; leave them to the plain count */
    return !BSON_ITER_HOLDS_ARRAY(v) && !BSON_ITER_HOLDS_DOCUMENT(v) && !BSON_ITER_HOLDS_REGEX(v);
}

bool rules_filter_split_ne(const bson_t *filter, bson_t *base, bson_t *minus)
{
    bson_iter_t it, v, found_v;
    const char *found = NULL;
    if (!bson_iter_init(&it, filter))
        return false;
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (k[0] == '$' || !is_ne_term(&it, &v))
            continue;
        if (found)
            return false; /* two such terms: not one subtraction */
        found = k;
        found_v = v;
    }
    if (!found || !bson_iter_init(&it, filter))
        return false;
    while (bson_iter_next(&it)) {
        if (strcmp(bson_iter_key(&it), found) == 0)
            continue;
        if (!bson_append_iter(base, NULL, 0, &it) || !bson_append_iter(minus, NULL, 0, &it))
            return false;
    }
    return bson_append_value(minus, found, -1, bson_iter_value(&found_v));
}
