/*
 * test_jscan: lib/jscan against its promise of being exactly as strict as jansson 2.14's
 * json_loadb(buf, len, 0, &err), and its navigation helpers.
 *
 * Two kinds of evidence:
 *  - tables of hand-written documents with the expected verdict; every entry is also run
 *    through jansson, so a wrong expectation in the table is caught too;
 *  - a differential test over generated and mutated documents (seeded, deterministic; set
 *    MINICRM_JSCAN_SEED / MINICRM_JSCAN_ITERS to explore further): jscan accepts exactly
 *    when jansson does, and for accepted documents both trees agree on types, counts,
 *    unescaped strings (keys included, with last-duplicate-wins), integers and reals.
 */
#include "jscan.h"
#include "test.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Helpers ----------------------------------------------------------------------------- */

static bool jansson_accepts(const char *buf, size_t len)
{
    json_error_t e;
    json_t *j = json_loadb(buf, len, 0, &e);
    json_decref(j);
    return j != NULL;
}

/* Compare the jscan subtree at tok with the jansson value j; on mismatch write why. */
static bool same_tree(const jscan *s, int tok, const json_t *j, char *why, size_t whylen)
{
    const jscan_tok *t = &s->t[tok];
    switch (t->type) {
    case JSCAN_OBJECT: {
        if (!json_is_object(j)) {
            snprintf(why, whylen, "token %d: object vs jansson type %d", tok, json_typeof(j));
            return false;
        }
        /* Unique keys: pairs whose key's last occurrence is this pair. */
        size_t unique = 0;
        int k = jscan_child(s, tok);
        for (uint32_t p = 0; p < t->count; p++) {
            /* Heap, not stack: this function recurses 2048 deep in the depth test. */
            char *key = malloc(s->t[k].len + 1);
            if (!key || jscan_str_copy(s, k, key, s->t[k].len + 1) == (size_t)-1) {
                free(key);
                snprintf(why, whylen, "token %d: key does not unescape", k);
                return false;
            }
            if (jscan_get(s, tok, key) == k + 1)
                unique++;
            free(key);
            k = (int)s->t[k + 1].next;
        }
        if (unique != json_object_size(j)) {
            snprintf(why, whylen, "token %d: %zu unique keys vs %zu", tok, unique,
                     json_object_size(j));
            return false;
        }
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)j, key, v)
        {
            int vt = jscan_get(s, tok, key);
            if (vt < 0) {
                snprintf(why, whylen, "token %d: key \"%s\" missing", tok, key);
                return false;
            }
            if (!same_tree(s, vt, v, why, whylen))
                return false;
        }
        return true;
    }
    case JSCAN_ARRAY: {
        if (!json_is_array(j) || json_array_size(j) != t->count) {
            snprintf(why, whylen, "token %d: array of %u", tok, t->count);
            return false;
        }
        int e = jscan_child(s, tok);
        for (size_t i = 0; i < t->count; i++) {
            if (!same_tree(s, e, json_array_get(j, i), why, whylen))
                return false;
            e = (int)s->t[e].next;
        }
        if (e >= 0 && (uint32_t)e != t->next && t->count > 0) {
            snprintf(why, whylen, "token %d: last element's next %d != %u", tok, e, t->next);
            return false;
        }
        return true;
    }
    case JSCAN_STRING: {
        if (!json_is_string(j)) {
            snprintf(why, whylen, "token %d: string vs type %d", tok, json_typeof(j));
            return false;
        }
        size_t cap = t->len + 1;
        char *out = malloc(cap);
        size_t n = jscan_str_copy(s, tok, out, cap);
        bool ok = n == json_string_length(j) && memcmp(out, json_string_value(j), n) == 0 &&
                  (memchr(out, '\0', n) || jscan_str_eq(s, tok, json_string_value(j)));
        free(out);
        if (!ok)
            snprintf(why, whylen, "token %d: string differs", tok);
        return ok;
    }
    case JSCAN_NUMBER: {
        if (t->integer) {
            int64_t v;
            if (!json_is_integer(j) || !jscan_int(s, tok, &v) || v != json_integer_value(j)) {
                snprintf(why, whylen, "token %d: integer differs", tok);
                return false;
            }
            return true;
        }
        char *tmp = malloc(t->len + 1);
        memcpy(tmp, s->buf + t->start, t->len);
        tmp[t->len] = '\0';
        int64_t dummy;
        bool ok = json_is_real(j) && strtod(tmp, NULL) == json_real_value(j) &&
                  !jscan_int(s, tok, &dummy);
        free(tmp);
        if (!ok)
            snprintf(why, whylen, "token %d: real differs", tok);
        return ok;
    }
    case JSCAN_TRUE:
        return json_is_true(j);
    case JSCAN_FALSE:
        return json_is_false(j);
    case JSCAN_NULL:
        return json_is_null(j);
    }
    return false;
}

/* The flags both parsers run with: 0, or the API's (see TEST(differential_with_api_flags)). */
static size_t g_jansson_flags;
static unsigned g_jscan_flags;

/* Parse with both; CHECK-style verdict. Returns NULL if they agree, else a static message. */
static const char *differs(jscan *s, const char *buf, size_t len)
{
    static char why[512];
    json_error_t e;
    json_t *j = json_loadb(buf, len, g_jansson_flags, &e);
    int rc = jscan_parse_opts(s, buf, len, g_jscan_flags);
    if ((rc == 0) != (j != NULL)) {
        snprintf(why, sizeof why, "jscan %s (%s), jansson %s (%s)", rc == 0 ? "accepts" : "rejects",
                 rc == 0 ? "" : s->err, j ? "accepts" : "rejects", j ? "" : e.text);
        json_decref(j);
        return why;
    }
    if (j) {
        bool same = same_tree(s, 0, j, why, sizeof why) && s->t[0].next == s->n;
        json_decref(j);
        if (!same)
            return why;
    }
    return NULL;
}

/* ---- Tables ------------------------------------------------------------------------------ */

typedef struct {
    const char *doc;
    size_t len; /* 0: strlen(doc) */
    bool ok;
} table_case;

#define OK(d)                                                                                      \
    {                                                                                              \
        d, sizeof(d) - 1, true                                                                     \
    }
#define BAD(d)                                                                                     \
    {                                                                                              \
        d, sizeof(d) - 1, false                                                                    \
    }

static const table_case cases[] = {
    /* Structure and top level (flags 0: only objects and arrays at the top). */
    OK("{}"),
    OK("[]"),
    OK(" \t\r\n[ ] \n"),
    OK("{\"a\":1}"),
    OK("[1,2,3]"),
    OK("[[],{},[[]],{\"a\":{}}]"),
    OK("{\"a\" : [ 1 , { \"b\" : null } ] }"),
    BAD(""),
    BAD(" "),
    BAD(" \n\t "),
    BAD("1"),
    BAD("\"a\""),
    BAD("null"),
    BAD("true"),
    BAD("-1"),
    BAD("["),
    BAD("]"),
    BAD("{"),
    BAD("[}"),
    BAD("{]"),
    BAD("[1,]"),
    BAD("[,1]"),
    BAD("[1,,2]"),
    BAD("{\"a\":1,}"),
    BAD("{,}"),
    BAD("{\"a\"}"),
    BAD("{\"a\":}"),
    BAD("{\"a\" 1}"),
    BAD("{1:1}"),
    BAD("{a:1}"),
    BAD("[1 2]"),
    BAD("[]]"),
    BAD("[][]"),
    BAD("{}x"),
    BAD("[] 1"),
    BAD("[]\x0c"),
    BAD("[\v]"),
    BAD("\xef\xbb\xbf[]"),
    BAD("[1]\0"),
    /* jansson's lost pushed-back NUL: one NUL right after a number or literal is skipped. */
    OK("[1\0]"),
    OK("[true\0]"),
    OK("[1.5\0,2]"),
    OK("[1e5\0 ]"),
    OK("[-0\0]"),
    OK("{\"a\":null\0}"),
    BAD("[1\0\0]"),
    BAD("[\"a\"\0]"),
    BAD("[[]\0]"),
    BAD("[1\0x]"),
    BAD("[null\0\0]"),
    BAD("[1 \0]"),
    BAD("[\0 1]"),
    BAD("\0[1]"),
    BAD("[\0]"),
    /* Literals. */
    OK("[true,false,null]"),
    BAD("[tru]"),
    BAD("[truex]"),
    BAD("[True]"),
    BAD("[nul]"),
    BAD("[nulll]"),
    BAD("[true1]"),
    BAD("[falsetrue]"),
    BAD("[NaN]"),
    BAD("[Infinity]"),
    /* Numbers. */
    OK("[0]"),
    OK("[-0]"),
    OK("[-0.0]"),
    OK("[1e5]"),
    OK("[1E5]"),
    OK("[1e+5]"),
    OK("[1e-5]"),
    OK("[0e0]"),
    OK("[0.5]"),
    OK("[123.456e-7]"),
    OK("[1e-400]"),
    OK("[-1e-400]"),
    OK("[9223372036854775807]"),
    OK("[-9223372036854775808]"),
    OK("[1e308]"),
    OK("[1.7976931348623157e308]"),
    OK("[-1.7976931348623157e308]"),
    OK("[1.7976931348623158e308]"),
    OK("[0.00017976931348623157e312]"),
    BAD("[9223372036854775808]"),
    BAD("[-9223372036854775809]"),
    BAD("[123456789012345678901234567890]"),
    BAD("[1e400]"),
    BAD("[-1e400]"),
    BAD("[1e309]"),
    BAD("[1.7976931348623159e308]"),
    BAD("[1e99999999999999999999999]"),
    BAD("[01]"),
    BAD("[-01]"),
    BAD("[00]"),
    BAD("[1.]"),
    BAD("[.5]"),
    BAD("[-.5]"),
    BAD("[-]"),
    BAD("[+1]"),
    BAD("[1e]"),
    BAD("[1e+]"),
    BAD("[1.e5]"),
    BAD("[0x10]"),
    BAD("[1.5.5]"),
    BAD("[--1]"),
    BAD("[1-]"),
    BAD("[- 1]"),
    OK("[1e-99999999999999999999999]"),
    OK("[0e99999999999999999999]"),
    /* Strings: escapes. */
    OK("[\"\"]"),
    OK("[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"]"),
    OK("[\"\\u0041\\u00e9\\u20AC\"]"),
    OK("[\"\\ud83d\\ude00\"]"),
    OK("[\"\\uDBFF\\uDFFF\"]"),
    OK("[\"\\u0001\"]"),
    OK("[\"\x7f\"]"),
    OK("[\"a/b\"]"),
    BAD("[\"\\u0000\"]"),
    BAD("{\"\\u0000\":1}"),
    BAD("{\"a\\u0000b\":1}"),
    BAD("[\"\\a\"]"),
    BAD("[\"\\x41\"]"),
    BAD("[\"\\'\"]"),
    BAD("[\"\\u12\"]"),
    BAD("[\"\\u12G4\"]"),
    BAD("[\"\\U0041\"]"),
    BAD("[\"\\ud800\"]"),
    BAD("[\"\\udc00\"]"),
    BAD("[\"\\ud800\\u0041\"]"),
    BAD("[\"\\ud800\\ud800\"]"),
    BAD("[\"\\ude00\\ud83d\"]"),
    BAD("[\"\\ud800x\"]"),
    BAD("[\"\\ud800\\\"]"),
    BAD("[\"\\ud800\\n\"]"),
    BAD("[\"\\\"]"),
    BAD("[\"abc]"),
    BAD("[\"abc"),
    BAD("[\"\\"),
    BAD("[\"\\u"),
    BAD("['a']"),
    /* Strings: control characters and UTF-8. */
    BAD("[\"a\nb\"]"),
    BAD("[\"a\tb\"]"),
    BAD("[\"\x01\"]"),
    BAD("[\"\x1f\"]"),
    {"[\"a\0b\"]", 7, false},
    OK("[\"\xc3\xa9\"]"),
    OK("[\"\xe2\x82\xac\"]"),
    OK("[\"\xf0\x9f\x98\x80\"]"),
    OK("[\"\xf4\x8f\xbf\xbf\"]"),
    OK("[\"\xef\xbf\xbf\"]"),
    OK("[\"\xed\x9f\xbf\"]"),
    OK("[\"\xee\x80\x80\"]"),
    OK("{\"\xc3\xa9\":\"\xc3\xa9\"}"),
    BAD("[\"\x80\"]"),
    BAD("[\"\xbf\"]"),
    BAD("[\"\xc0\x80\"]"),
    BAD("[\"\xc1\xbf\"]"),
    BAD("[\"\xc3\"]"),
    BAD("[\"\xc3\x28\"]"),
    BAD("[\"\xe0\x80\x80\"]"),
    BAD("[\"\xe0\x9f\xbf\"]"),
    BAD("[\"\xed\xa0\x80\"]"),
    BAD("[\"\xed\xbf\xbf\"]"),
    BAD("[\"\xe2\x82\"]"),
    BAD("[\"\xf0\x80\x80\x80\"]"),
    BAD("[\"\xf0\x8f\xbf\xbf\"]"),
    BAD("[\"\xf4\x90\x80\x80\"]"),
    BAD("[\"\xf5\x80\x80\x80\"]"),
    BAD("[\"\xf8\x88\x80\x80\x80\"]"),
    BAD("[\"\xff\"]"),
    BAD("[\"\xfe\"]"),
    BAD("[\"\xf0\x9f\x98\"]"),
    BAD("[\xc3\xa9]"),
    BAD("{\"\xc0\xaf\":1}"),
    /* Duplicate keys are fine (the last wins). */
    OK("{\"a\":1,\"a\":2}"),
    OK("{\"a\":1,\"b\":2,\"a\":{\"c\":[]}}"),
    OK("{\"\\u0061\":1,\"a\":2}"),
};

TEST(table_matches_expectation_and_jansson)
{
    jscan s;
    jscan_init(&s);
    size_t n = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < n; i++) {
        const table_case *c = &cases[i];
        int rc = jscan_parse(&s, c->doc, c->len);
        bool jok = jansson_accepts(c->doc, c->len);
        if (jok != c->ok || (rc == 0) != c->ok) {
            jscan_release(&s);
            TEST_FAIL_("case %zu '%.*s': expected %s, jscan %s (%s), jansson %s", i, (int)c->len,
                       c->doc, c->ok ? "ok" : "bad", rc == 0 ? "ok" : "bad", s.err,
                       jok ? "ok" : "bad");
        }
        const char *d = differs(&s, c->doc, c->len);
        if (d) {
            jscan_release(&s);
            TEST_FAIL_("case %zu '%.*s': %s", i, (int)c->len, c->doc, d);
        }
    }
    printf("  %zu table documents agree with jansson\n", n);
    jscan_release(&s);
}

/* 2^1024 - 2^970 rounds to infinity (the tie goes to even); one below does not. */
TEST(real_overflow_boundary_is_exact)
{
    static const char thr[] =
        "1797693134862315807937289714053034150799341327100378269361737789804449682927647509466490"
        "1797758720709633028641669288791094655554785194040263065748867150582068190890200070838367"
        "6273854845817711531764475730270069855571366959622842914819860834936475292719074168444365"
        "510704342711559699508093042880177904174497792";
    char doc[800];
    jscan s;
    jscan_init(&s);
    /* Prefix and suffix around the digits; the integer forms (0, 3) are out of int64 range
     * anyway, every real form must split exactly at the threshold. */
    static const char *const forms[][2] = {{"[", "]"},     {"[", ".0]"},       {"[", ".000001]"},
                                           {"[-", "]"},    {"[", ".0e0]"},     {"[0.", "e309]"},
                                           {"[", "0e-1]"}, {"[", "00000e-5]"}, {"[", "1e-1]"},
                                           {"[-", ".0]"},  {"[0.000", "e312]"}};
    for (size_t f = 0; f < sizeof forms / sizeof forms[0]; f++) {
        for (int below = 0; below < 2; below++) {
            char digits[400];
            snprintf(digits, sizeof digits, "%s", thr);
            if (below) /* threshold - 1: ends in ...791 */
                digits[strlen(digits) - 1] = '1';
            snprintf(doc, sizeof doc, "%s%s%s", forms[f][0], digits, forms[f][1]);
            const char *d = differs(&s, doc, strlen(doc));
            if (d) {
                jscan_release(&s);
                TEST_FAIL_("form %zu below=%d: %s", f, below, d);
            }
            bool isint = f == 0 || f == 3;
            CHECK_INT_EQ(jscan_parse(&s, doc, strlen(doc)) == 0, isint ? 0 : below);
        }
    }
    jscan_release(&s);
}

static char *nest(size_t depth, const char *inner, size_t *len)
{
    size_t il = strlen(inner);
    char *b = malloc(2 * depth + il + 1);
    memset(b, '[', depth);
    memcpy(b + depth, inner, il);
    memset(b + depth + il, ']', depth);
    *len = 2 * depth + il;
    b[*len] = '\0';
    return b;
}

TEST(depth_limit_matches_jansson)
{
    jscan s;
    jscan_init(&s);
    struct {
        size_t depth;
        const char *inner;
        bool ok;
    } d[] = {
        {2047, "1", true},           {2048, "", true},
        {2048, "1", false},          {2049, "", false},
        {2046, "{\"a\":1}", true},   {2047, "{\"a\":1}", false},
        {2047, "{\"a\":[]}", false}, {2047, "{}", true},
        {2045, "{\"a\":[1]}", true}, {2046, "{\"a\":[1]}", false},
        {10000, "", false},
    };
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) {
        size_t len;
        char *b = nest(d[i].depth, d[i].inner, &len);
        int rc = jscan_parse(&s, b, len);
        bool jok = jansson_accepts(b, len);
        const char *why = differs(&s, b, len);
        free(b);
        if ((rc == 0) != d[i].ok || jok != d[i].ok || why) {
            jscan_release(&s);
            TEST_FAIL_("depth %zu + '%s': expected %d, jscan %d, jansson %d (%s)", d[i].depth,
                       d[i].inner, d[i].ok, rc == 0, jok, why ? why : "");
        }
    }
    size_t len;
    char *b = nest(JSCAN_MAX_DEPTH, "", &len);
    CHECK_INT_EQ(jscan_parse(&s, b, len), 0);
    CHECK_INT_EQ(s.n, JSCAN_MAX_DEPTH);
    CHECK_INT_EQ(s.t[0].next, JSCAN_MAX_DEPTH);
    CHECK_INT_EQ(s.t[JSCAN_MAX_DEPTH - 1].count, 0);
    free(b);
    jscan_release(&s);
}

/* ---- Navigation -------------------------------------------------------------------------- */

TEST(navigates_a_send_batch)
{
    static const char doc[] =
        "{\"campaign_id\":\"c1\",\"sends\":[{\"log_id\":\"L1\",\"customer_id\":\"u1\","
        "\"message\":\"Hi \\u00e9\\n\\\"x\\\"\"},{\"log_id\":\"L2\",\"customer_id\":\"u2\","
        "\"message\":\"\"},{\"log_id\":\"L\\u0033\",\"extra\":[1,{\"a\":[]}],\"customer_id\":"
        "\"u3\",\"message\":\"m\"}],\"n\":-42,\"r\":1.5,\"t\":true}";
    jscan s;
    jscan_init(&s);
    CHECK_INT_EQ(jscan_parse(&s, doc, sizeof doc - 1), 0);
    CHECK_INT_EQ(s.t[0].type, JSCAN_OBJECT);
    CHECK_INT_EQ(s.t[0].count, 5);
    CHECK_INT_EQ(s.t[0].len, sizeof doc - 1);
    CHECK_INT_EQ(s.t[0].next, s.n);
    int cid = jscan_get(&s, 0, "campaign_id");
    CHECK(jscan_str_eq(&s, cid, "c1"));
    CHECK(!jscan_str_eq(&s, cid, "c"));
    CHECK(!jscan_str_eq(&s, cid, "c12"));
    CHECK_INT_EQ(jscan_get(&s, 0, "missing"), -1);
    CHECK_INT_EQ(jscan_get(&s, cid, "x"), -1); /* not an object */
    int sends = jscan_get(&s, 0, "sends");
    CHECK_INT_EQ(s.t[sends].type, JSCAN_ARRAY);
    CHECK_INT_EQ(s.t[sends].count, 3);
    const char *want_log[] = {"L1", "L2", "L3"}, *want_cust[] = {"u1", "u2", "u3"};
    int e = jscan_child(&s, sends);
    for (int i = 0; i < 3; i++) {
        char out[64];
        CHECK(e > 0 && (uint32_t)e < s.t[sends].next);
        CHECK_INT_EQ(jscan_str_copy(&s, jscan_get(&s, e, "log_id"), out, sizeof out), 2);
        CHECK_STR_EQ(out, want_log[i]);
        CHECK(jscan_str_eq(&s, jscan_get(&s, e, "customer_id"), want_cust[i]));
        e = (int)s.t[e].next;
    }
    CHECK_INT_EQ(e, (int)s.t[sends].next);
    char msg[64];
    int m = jscan_get(&s, jscan_child(&s, sends), "message");
    CHECK(s.t[m].escaped);
    CHECK_INT_EQ(jscan_str_copy(&s, m, msg, sizeof msg), strlen("Hi \xc3\xa9\n\"x\""));
    CHECK_STR_EQ(msg, "Hi \xc3\xa9\n\"x\"");
    CHECK(jscan_str_eq(&s, m, "Hi \xc3\xa9\n\"x\""));
    CHECK(!jscan_str_eq(&s, m, "Hi \xc3\xa9\n\"x"));
    /* Exactly fitting and one byte short. */
    size_t need = strlen("Hi \xc3\xa9\n\"x\"") + 1;
    CHECK_INT_EQ(jscan_str_copy(&s, m, msg, need), need - 1);
    CHECK(jscan_str_copy(&s, m, msg, need - 1) == (size_t)-1);
    CHECK(jscan_str_copy(&s, cid, msg, 2) == (size_t)-1);
    CHECK_INT_EQ(jscan_str_copy(&s, cid, msg, 3), 2);
    CHECK(jscan_str_copy(&s, sends, msg, sizeof msg) == (size_t)-1); /* not a string */
    int64_t v = 0;
    CHECK(jscan_int(&s, jscan_get(&s, 0, "n"), &v));
    CHECK_INT_EQ(v, -42);
    CHECK(!jscan_int(&s, jscan_get(&s, 0, "r"), &v));
    CHECK(!jscan_int(&s, jscan_get(&s, 0, "t"), &v));
    CHECK_INT_EQ(s.t[jscan_get(&s, 0, "t")].type, JSCAN_TRUE);
    CHECK_INT_EQ(jscan_child(&s, cid), -1);
    CHECK_INT_EQ(jscan_child(&s, -1), -1);
    CHECK_INT_EQ(jscan_get(&s, 9999, "a"), -1);
    jscan_release(&s);
}

TEST(duplicate_keys_last_wins_and_escaped_keys_match)
{
    static const char doc[] = "{\"a\":1,\"b\":[2],\"\\u0061\":3,\"c\\\"d\":4,\"\":5}";
    jscan s;
    jscan_init(&s);
    CHECK_INT_EQ(jscan_parse(&s, doc, sizeof doc - 1), 0);
    CHECK_INT_EQ(s.t[0].count, 5);
    int64_t v;
    CHECK(jscan_int(&s, jscan_get(&s, 0, "a"), &v));
    CHECK_INT_EQ(v, 3);
    CHECK(jscan_int(&s, jscan_get(&s, 0, "c\"d"), &v));
    CHECK_INT_EQ(v, 4);
    CHECK(jscan_int(&s, jscan_get(&s, 0, ""), &v));
    CHECK_INT_EQ(v, 5);
    /* Walking pairs: key at i, value at i + 1, next pair at t[i + 1].next. */
    int k = jscan_child(&s, 0);
    CHECK(jscan_str_eq(&s, k, "a"));
    k = (int)s.t[k + 1].next;
    CHECK(jscan_str_eq(&s, k, "b"));
    CHECK_INT_EQ(s.t[k + 1].type, JSCAN_ARRAY);
    k = (int)s.t[k + 1].next;
    CHECK(jscan_str_eq(&s, k, "a"));
    jscan_release(&s);
}

TEST(integer_range_edges)
{
    static const struct {
        const char *doc;
        int64_t v;
    } ok[] = {
        {"[0]", 0},
        {"[-0]", 0},
        {"[9223372036854775807]", INT64_MAX},
        {"[-9223372036854775808]", INT64_MIN},
        {"[-9223372036854775807]", -INT64_MAX},
        {"[1000000000000000000]", 1000000000000000000LL},
    };
    jscan s;
    jscan_init(&s);
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int64_t v = 1;
        CHECK_INT_EQ(jscan_parse(&s, ok[i].doc, strlen(ok[i].doc)), 0);
        CHECK(s.t[1].integer);
        CHECK(jscan_int(&s, 1, &v));
        CHECK_INT_EQ(v, ok[i].v);
    }
    CHECK_INT_EQ(jscan_parse(&s, "[9223372036854775808]", 21), -1);
    CHECK_STR_CONTAINS(s.err, "too big integer");
    CHECK_INT_EQ(jscan_parse(&s, "[-9223372036854775809]", 22), -1);
    CHECK_STR_CONTAINS(s.err, "too big negative integer");
    jscan_release(&s);
}

TEST(errors_name_the_position)
{
    jscan s;
    jscan_init(&s);
    CHECK_INT_EQ(jscan_parse(&s, "{\"a\":\n [1, \"x\\q\"]}", 18), -1);
    CHECK_STR_CONTAINS(s.err, "invalid escape");
    CHECK_STR_CONTAINS(s.err, "line 2");
    CHECK_INT_EQ(s.err_pos, 13);
    CHECK_INT_EQ(s.n, 0);
    CHECK_INT_EQ(jscan_parse(&s, "[1] x", 5), -1);
    CHECK_STR_CONTAINS(s.err, "end of file expected near 'x' at position 4");
    CHECK_INT_EQ(jscan_parse(&s, "[1", 2), -1);
    CHECK_STR_CONTAINS(s.err, "near end of file");
    CHECK_INT_EQ(jscan_parse(&s, "", 0), -1);
    CHECK_STR_CONTAINS(s.err, "'[' or '{' expected");
    CHECK_INT_EQ(jscan_parse(&s, "[\"\xff\"]", 4), -1);
    CHECK_STR_CONTAINS(s.err, "invalid UTF-8 near '\\xff");
    CHECK_INT_EQ(jscan_parse(&s, NULL, 0), -1);
    /* A failed parse leaves the struct reusable. */
    CHECK_INT_EQ(jscan_parse(&s, "[1]", 3), 0);
    CHECK_INT_EQ(s.n, 2);
    jscan_release(&s);
    jscan_release(&s); /* idempotent */
    jscan_release(NULL);
}

TEST(reuse_grows_once_and_keeps_capacity)
{
    size_t n = 5000, cap = n * 2 + 3;
    char *b = malloc(cap);
    size_t k = 0;
    b[k++] = '[';
    for (size_t i = 0; i < n; i++) {
        b[k++] = '1';
        b[k++] = i + 1 < n ? ',' : ']';
    }
    jscan s;
    jscan_init(&s);
    CHECK_INT_EQ(jscan_parse(&s, b, k), 0);
    CHECK_INT_EQ(s.n, n + 1);
    CHECK_INT_EQ(s.t[0].count, n);
    size_t grown = s.cap;
    jscan_tok *arr = s.t;
    CHECK_INT_EQ(jscan_parse(&s, "[[1]]", 5), 0);
    CHECK_INT_EQ(s.n, 3);
    CHECK_INT_EQ(jscan_parse(&s, b, k), 0);
    CHECK(s.cap == grown && s.t == arr);
    free(b);
    jscan_release(&s);
}

/* ---- Differential test ------------------------------------------------------------------- */

static uint64_t rng_state;
static uint64_t rnd(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}
static size_t rn(size_t n)
{
    return (size_t)(rnd() % n);
}

typedef struct {
    char *b;
    size_t n, cap;
} gbuf;

static void put(gbuf *g, const char *s, size_t n)
{
    if (g->n + n > g->cap)
        return; /* the generator stays inside the cap; a truncated doc is just another input */
    memcpy(g->b + g->n, s, n);
    g->n += n;
}
static void puts_(gbuf *g, const char *s)
{
    put(g, s, strlen(s));
}

static void gen_ws(gbuf *g)
{
    static const char *ws[] = {"", "", "", " ", "\n", "\t", "\r\n  "};
    puts_(g, ws[rn(sizeof ws / sizeof ws[0])]);
}

static void gen_string(gbuf *g)
{
    static const char *pieces[] = {
        "a", "log_id", "x", "Z", " ", "\\\"", "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t",
        "\\u0041", "\\u00e9", "\\u20ac", "\\uFFFF", "\\ud83d\\ude00", "\\uDBFF\\uDFFF", "\\u0001",
        "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf", "\xed\x9f\xbf", "\x7f",
        "/", "'",
        /* rarely: things jansson refuses */
        "\\u0000", "\\ud800", "\\udc00", "\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80",
        "\xe0\x80\xaf", "\x80", "\x01", "\\x", "\xc3"};
    size_t nsafe = 28, n = rn(6);
    puts_(g, "\"");
    for (size_t i = 0; i < n; i++)
        puts_(
            g,
            pieces[rn(50) == 0 ? nsafe + rn(sizeof pieces / sizeof pieces[0] - nsafe) : rn(nsafe)]);
    puts_(g, "\"");
}

static void gen_number(gbuf *g)
{
    static const char *nums[] = {"0",
                                 "-0",
                                 "1",
                                 "-1",
                                 "42",
                                 "9223372036854775807",
                                 "-9223372036854775808",
                                 "9223372036854775808",
                                 "-9223372036854775809",
                                 "18446744073709551616",
                                 "0.5",
                                 "-0.0",
                                 "1e5",
                                 "1E+5",
                                 "2.5e-3",
                                 "1e308",
                                 "1e309",
                                 "1e-400",
                                 "1.7976931348623157e308",
                                 "1.7976931348623159e308",
                                 "123456789.123456789e300",
                                 "0.000000001e317",
                                 "1e99999999999999999999"};
    if (rn(3) == 0) {
        char tmp[48];
        /* One draw per statement: argument evaluation order is unspecified. */
        uint64_t mag = rnd();
        mag >>= rn(64);
        bool neg = rn(2);
        snprintf(tmp, sizeof tmp, "%s%llu", neg ? "-" : "", (unsigned long long)mag);
        puts_(g, tmp);
        return;
    }
    puts_(g, nums[rn(sizeof nums / sizeof nums[0])]);
}

static void gen_value(gbuf *g, int depth)
{
    size_t kind = depth > 6 ? 2 + rn(5) : rn(7);
    gen_ws(g);
    switch (kind) {
    case 0:
    case 1: {
        bool obj = kind == 0;
        puts_(g, obj ? "{" : "[");
        size_t n = rn(5);
        for (size_t i = 0; i < n; i++) {
            if (i)
                puts_(g, ",");
            if (obj) {
                gen_ws(g);
                if (rn(4) == 0)
                    puts_(g, "\"a\""); /* duplicates */
                else
                    gen_string(g);
                gen_ws(g);
                puts_(g, ":");
            }
            gen_value(g, depth + 1);
        }
        gen_ws(g);
        puts_(g, obj ? "}" : "]");
        break;
    }
    case 2:
    case 3:
        gen_string(g);
        break;
    case 4:
        gen_number(g);
        break;
    default: {
        static const char *lits[] = {"true", "false", "null"};
        puts_(g, lits[rn(3)]);
    }
    }
    gen_ws(g);
}

static void gen_doc(gbuf *g)
{
    g->n = 0;
    if (rn(40) == 0) {
        gen_value(g, 7); /* sometimes a scalar at the top */
        return;
    }
    puts_(g, rn(2) ? "{" : "[");
    size_t n = 1 + rn(4);
    bool obj = g->b[0] == '{';
    for (size_t i = 0; i < n; i++) {
        if (i)
            puts_(g, ",");
        if (obj) {
            gen_string(g);
            puts_(g, ":");
        }
        gen_value(g, 1);
    }
    puts_(g, obj ? "}" : "]");
}

static void mutate(gbuf *g)
{
    static const char interesting[] = "{}[],:\"\\ \n\t0123456789-+.eEtfnu\x00\x7f\x80\xc3\xe0\xed"
                                      "\xf0\xf4\xff";
    size_t nmut = 1 + rn(3);
    for (size_t m = 0; m < nmut; m++) {
        size_t op = rn(6), at = g->n ? rn(g->n) : 0;
        if (op == 0 && g->n) { /* replace a byte */
            g->b[at] = rn(2) ? interesting[rn(sizeof interesting - 1)] : (char)rn(256);
        } else if (op == 1 && g->n < g->cap) { /* insert */
            memmove(g->b + at + 1, g->b + at, g->n - at);
            g->b[at] = interesting[rn(sizeof interesting - 1)];
            g->n++;
        } else if (op == 2 && g->n) { /* delete */
            memmove(g->b + at, g->b + at + 1, g->n - at - 1);
            g->n--;
        } else if (op == 3) { /* truncate */
            g->n = at;
        } else if (op == 4 && g->n) { /* duplicate a span */
            size_t len = 1 + rn(8);
            if (at + len <= g->n && g->n + len <= g->cap) {
                memmove(g->b + at + len, g->b + at, g->n - at);
                g->n += len;
            }
        } else if (g->n) { /* flip a bit */
            g->b[at] = (char)(g->b[at] ^ (1u << rn(8)));
        }
    }
}

static uint64_t env_u64(const char *name, uint64_t def)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return def;
    char *end;
    unsigned long long x = strtoull(v, &end, 10);
    return *end ? def : (uint64_t)x;
}

static void run_differential(bool mutated)
{
    uint64_t seed = env_u64("MINICRM_JSCAN_SEED", 20240611) + (mutated ? 1 : 0);
    size_t iters = (size_t)env_u64("MINICRM_JSCAN_ITERS", 30000);
    rng_state = seed ? seed : 1;
    gbuf g = {malloc(8192), 0, 8192};
    jscan s;
    jscan_init(&s);
    size_t accepted = 0;
    for (size_t i = 0; i < iters; i++) {
        gen_doc(&g);
        if (mutated)
            mutate(&g);
        const char *d = differs(&s, g.b, g.n);
        if (d) {
            fprintf(stderr,
                    "  seed %llu iteration %zu, document (%zu bytes): ", (unsigned long long)seed,
                    i, g.n);
            for (size_t k = 0; k < g.n; k++) {
                unsigned char c = (unsigned char)g.b[k];
                if (c >= 0x20 && c < 0x7f)
                    fputc(c, stderr);
                else
                    fprintf(stderr, "\\x%02x", c);
            }
            fputc('\n', stderr);
            free(g.b);
            jscan_release(&s);
            TEST_FAIL_("%s", d);
        }
        accepted += s.n > 0;
    }
    printf("  %zu %s documents, %zu accepted by both, the rest rejected by both\n", iters,
           mutated ? "mutated" : "generated", accepted);
    /* The corpus must exercise both verdicts, or the comparison proves little. */
    CHECK(accepted > iters / 50);
    CHECK(accepted < iters);
    free(g.b);
    jscan_release(&s);
}

TEST(differential_generated_documents)
{
    run_differential(false);
}

TEST(differential_mutated_documents)
{
    run_differential(true);
}

/* The flags the API's receipts route uses: jansson's JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL |
 * JSON_DECODE_ANY against jscan's counterparts, on the same corpora. */
TEST(differential_with_api_flags)
{
    g_jansson_flags = JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_ANY;
    g_jscan_flags = JSCAN_REJECT_DUPLICATES | JSCAN_ALLOW_NUL | JSCAN_DECODE_ANY;
    run_differential(false);
    run_differential(true);
    static const char *const docs[] = {"7",
                                       " \"x\" ",
                                       "null",
                                       "{\"a\":1,\"a\":2}",
                                       "{\"a\":1,\"\\u0061\":2}",
                                       "[{\"k\":\"a\\u0000b\"}]",
                                       "{\"a\\u0000\":1}",
                                       "{\"a\":{\"b\":1,\"b\":1}}",
                                       "7 8"};
    jscan s;
    jscan_init(&s);
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        const char *d = differs(&s, docs[i], strlen(docs[i]));
        CHECK_MSG(!d, "%s: %s", docs[i], d);
    }
    /* a large object: duplicates found among many keys */
    char big[40000];
    size_t k = 0;
    k += (size_t)snprintf(big + k, sizeof big - k, "{");
    for (int i = 0; i < 2000; i++)
        k += (size_t)snprintf(big + k, sizeof big - k, "\"k%d\":%d,", i, i);
    snprintf(big + k, sizeof big - k, "\"k1999\":0}");
    CHECK_INT_EQ(jscan_parse_opts(&s, big, strlen(big), g_jscan_flags), -1);
    CHECK_STR_CONTAINS(s.err, "duplicate object key");
    big[k - 1] = '}';
    big[k] = '\0';
    CHECK_INT_EQ(jscan_parse_opts(&s, big, k, g_jscan_flags), 0);
    jscan_release(&s);
    g_jansson_flags = 0;
    g_jscan_flags = 0;
}

TEST_MAIN(TEST_ENTRY(table_matches_expectation_and_jansson),
          TEST_ENTRY(real_overflow_boundary_is_exact), TEST_ENTRY(depth_limit_matches_jansson),
          TEST_ENTRY(navigates_a_send_batch),
          TEST_ENTRY(duplicate_keys_last_wins_and_escaped_keys_match),
          TEST_ENTRY(integer_range_edges), TEST_ENTRY(errors_name_the_position),
          TEST_ENTRY(reuse_grows_once_and_keeps_capacity),
          TEST_ENTRY(differential_generated_documents), TEST_ENTRY(differential_mutated_documents),
          TEST_ENTRY(differential_with_api_flags))
