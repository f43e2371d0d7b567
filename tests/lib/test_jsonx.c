/*
 * test_jsonx: jsonx_buf_bson writes exactly the bytes of jsonx_dumps(jsonx_from_bson(doc)).
 *
 * Fixed cases for every shape the lists show, then 20,000 seeded random documents (strings with
 * escapes, control bytes, UTF-8 and invalid UTF-8, doubles of every form including NaN,
 * infinities, -0 and subnormals, int32/int64 extremes, dates before 1970 and far ahead, nested
 * documents and arrays, decimal128, binary, timestamps) compared byte for byte; a document with
 * a repeated key must be refused (-1), never written differently.
 */
#include "jsonx.h"
#include "test.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t g_rng = 0x9E3779B97F4A7C15ULL;

static uint64_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

static void rand_str(char *out, size_t *len)
{
    static const char *const parts[] = {"a",
                                        "\"",
                                        "\\",
                                        "/",
                                        "\n",
                                        "\t",
                                        "\b",
                                        "\f",
                                        "\r",
                                        "\x01",
                                        "\x1f",
                                        "\x7f",
                                        "\xc3\xa9",
                                        "\xf0\x9f\x98\x80",
                                        "\xe2\x80\xa8",
                                        "\xff",
                                        "\xc3",
                                        "Z",
                                        " ",
                                        "\0"};
    size_t n = rnd() % 12, l = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = rnd() % (sizeof parts / sizeof *parts);
        size_t pl = k == sizeof parts / sizeof *parts - 1 ? 1 : strlen(parts[k]);
        memcpy(out + l, parts[k], pl);
        l += pl;
    }
    out[l] = '\0';
    *len = l;
}

static double rand_double(void)
{
    switch (rnd() % 12) {
    case 0:
        return NAN;
    case 1:
        return rnd() % 2 ? INFINITY : -INFINITY;
    case 2:
        return -0.0;
    case 3:
        return DBL_MIN / 4;
    case 4:
        return DBL_MAX;
    case 5:
        return (double)(int64_t)(rnd() % 2000000) - 1000000;
    case 6:
        return 1e21 * (double)(rnd() % 100);
    case 7:
        return 1.0 / (double)(1 + rnd() % 1000);
    default: {
        uint64_t u = rnd();
        double d;
        memcpy(&d, &u, sizeof d);
        return d;
    }
    }
}

static void rand_doc(bson_t *d, int depth, bool array)
{
    size_t n = rnd() % 7;
    for (size_t i = 0; i < n; i++) {
        char key[64], s[256];
        size_t sl;
        if (array)
            snprintf(key, sizeof key, "%zu", i);
        else if (rnd() % 8 == 0)
            snprintf(key, sizeof key, "%s",
                     rnd() % 2 ? "\xff"
                                 "bad"
                               : "caf\xc3\xa9");
        else if (rnd() % 8 == 0) /* keys the writer must escape or pass on as they are */
            snprintf(
                key, sizeof key, "%s",
                (const char *const[]){"q\"k", "b\\k", "t\tk", "d\x7fk", "\x01", " "}[rnd() % 6]);
        else
            snprintf(key, sizeof key, "k%u", (unsigned)(rnd() % (rnd() % 16 == 0 ? 3 : 1000)));
        switch (rnd() % 13) {
        case 0:
            rand_str(s, &sl);
            bson_append_utf8(d, key, -1, s, (int)sl);
            break;
        case 1:
            bson_append_double(d, key, -1, rand_double());
            break;
        case 2:
            bson_append_int32(d, key, -1, (int32_t)rnd());
            break;
        case 3:
            bson_append_int64(d, key, -1, rnd() % 4 ? (int64_t)rnd() : INT64_MIN);
            break;
        case 4:
            bson_append_bool(d, key, -1, rnd() % 2);
            break;
        case 5:
            bson_append_null(d, key, -1);
            break;
        case 6:
            bson_append_date_time(d, key, -1,
                                  (int64_t)(rnd() % 400000000000000ULL) - 100000000000000LL);
            break;
        case 7: {
            bson_oid_t o;
            bson_oid_init(&o, NULL);
            bson_append_oid(d, key, -1, &o);
            break;
        }
        case 8:
        case 9:
            if (depth < 3) {
                bson_t child;
                bool arr = rnd() % 2;
                if (arr)
                    bson_append_array_begin(d, key, -1, &child);
                else
                    bson_append_document_begin(d, key, -1, &child);
                rand_doc(&child, depth + 1, arr);
                if (arr)
                    bson_append_array_end(d, &child);
                else
                    bson_append_document_end(d, &child);
            }
            break;
        case 10: {
            bson_decimal128_t dec;
            bson_decimal128_from_string(rnd() % 2 ? "12.50" : "-1E+3", &dec);
            bson_append_decimal128(d, key, -1, &dec);
            break;
        }
        case 11:
            bson_append_timestamp(d, key, -1, (uint32_t)rnd(), 1);
            break;
        default: {
            uint8_t bin[3] = {1, 2, 3};
            bson_append_binary(d, key, -1, BSON_SUBTYPE_BINARY, bin, 3);
            break;
        }
        }
    }
}

/* 0 same bytes, 1 refused (repeated key), -1 different. */
static int compare(const bson_t *d)
{
    jsonx_buf b = {0};
    int rc = jsonx_buf_bson(&b, d, NULL, NULL);
    json_t *j = jsonx_from_bson(d);
    char *want = jsonx_dumps(j);
    json_decref(j);
    int out = rc != 0 ? 1 : strcmp(b.data, want) == 0 ? 0 : -1;
    if (out < 0)
        fprintf(stderr, " got: %s\nwant: %s\n", b.data, want);
    free(want);
    jsonx_buf_free(&b);
    return out;
}

TEST(fixed_shapes)
{
    bson_t *d = BCON_NEW("_id", BCON_INT32(1), "s", BCON_UTF8("a\"b\\c\n\x01\x1f/\xc3\xa9"), "d",
                         BCON_DOUBLE(5200), "e", BCON_DOUBLE(0.1), "f", BCON_DOUBLE(1e21), "g",
                         BCON_DOUBLE(-2.5e-7), "h", BCON_DOUBLE(-0.0), "i", BCON_INT64(-1), "t",
                         BCON_DATE_TIME(-1), "n", BCON_NULL, "b", BCON_BOOL(false), "a", "[",
                         BCON_INT32(1), "{", "x", BCON_UTF8(""), "}", "]");
    CHECK_INT_EQ(compare(d), 0);
    bson_destroy(d);
    bson_t *nan = BCON_NEW("a", BCON_INT32(1), "nan", BCON_DOUBLE(NAN), "z", BCON_INT32(2));
    CHECK_INT_EQ(compare(nan), 0); /* the NaN member is dropped by both */
    bson_destroy(nan);
    bson_t *dup = BCON_NEW("a", BCON_INT32(1), "a", BCON_INT32(2));
    CHECK_INT_EQ(compare(dup), 1);
    bson_destroy(dup);
    bson_t empty = BSON_INITIALIZER;
    CHECK_INT_EQ(compare(&empty), 0);
}

TEST(random_documents_match_jansson)
{
    int same = 0, refused = 0;
    for (int i = 0; i < 20000; i++) {
        bson_t d = BSON_INITIALIZER;
        rand_doc(&d, 0, false);
        int r = compare(&d);
        bson_destroy(&d);
        CHECK(r >= 0);
        if (r < 0)
            return;
        same += r == 0;
        refused += r == 1;
    }
    CHECK(same > 15000); /* refusals (repeated keys) stay the exception */
    (void)refused;
}

/* jsonx_buf_bson_public against jansson's set "id" / del "_id" / del the dropped field. */
TEST(public_view_matches_jansson)
{
    static const char *const drop[] = {"k1", NULL};
    int same = 0;
    for (int i = 0; i < 5000; i++) {
        bson_t d = BSON_INITIALIZER;
        bson_oid_t o;
        bson_oid_init(&o, NULL);
        if (i % 50)
            bson_append_oid(&d, "_id", -1, &o);
        rand_doc(&d, 0, false);
        if (i % 7 == 0)
            bson_append_utf8(&d, "k1", -1, "dropped", -1);
        jsonx_buf b = {0};
        int rc = jsonx_buf_bson_public(&b, &d, drop);
        json_t *v = jsonx_from_bson(&d);
        json_object_set(v, "id", json_object_get(v, "_id"));
        json_object_del(v, "_id");
        json_object_del(v, "k1");
        char *want = jsonx_dumps(v);
        json_decref(v);
        if (rc == 0) {
            if (strcmp(b.data, want) != 0)
                fprintf(stderr, " got: %s\nwant: %s\n", b.data, want);
            CHECK_STR_EQ(b.data, want);
            same++;
        } else {
            CHECK(b.len == 0);
        }
        free(want);
        jsonx_buf_free(&b);
        bson_destroy(&d);
    }
    CHECK(same > 3500);
}

static int hook(void *ctx, const bson_iter_t *it, const char **raw, size_t *rawlen)
{
    (void)ctx;
    if (!strcmp(bson_iter_key(it), "drop"))
        return JSONX_MEMBER_SKIP;
    if (!strcmp(bson_iter_key(it), "ref")) {
        *raw = "{\"_id\":\"x\"}";
        *rawlen = strlen(*raw);
        return JSONX_MEMBER_RAW;
    }
    return JSONX_MEMBER_KEEP;
}

TEST(member_hook)
{
    bson_t *d = BCON_NEW("drop", BCON_INT32(1), "a", BCON_INT32(2), "ref", BCON_UTF8("id"), "drop2",
                         BCON_NULL);
    jsonx_buf b = {0};
    CHECK_INT_EQ(jsonx_buf_bson(&b, d, hook, NULL), 0);
    CHECK_STR_EQ(b.data, "{\"a\":2,\"ref\":{\"_id\":\"x\"},\"drop2\":null}");
    jsonx_buf_free(&b);
    bson_destroy(d);
}

TEST_MAIN(TEST_ENTRY(fixed_shapes), TEST_ENTRY(random_documents_match_jansson),
          TEST_ENTRY(public_view_matches_jansson), TEST_ENTRY(member_hook))
