/*
 * randbson.h: the random BSON values the devdb tests that compare two ways of answering a query
 * draw (test_engine_keyfilter: the covered count's key filter against the matcher;
 * test_devdb_count: the index-only count against a collection scan). Header-only, like
 * engine_util.h; test code only.
 *
 * A randbson holds a xorshift64 state (a fixed seed gives the same sequence every run) and the
 * finite doubles and strings a test wants among its values. randbson_value() draws one value of
 * every kind the comparisons order: int32, int64 (also past 2^53), double (the test's list,
 * small integers, NaN, +-Infinity), decimal128, strings, dates, null, bools, ObjectIds,
 * embedded documents, MinKey, MaxKey, and with RANDBSON_UNDEFINED undefined.
 */
#ifndef DEVDB_TEST_RANDBSON_H
#define DEVDB_TEST_RANDBSON_H

#include <bson/bson.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct randbson {
    uint64_t state;
    const double *dbl; /* finite doubles to draw from */
    size_t ndbl;
    const char *const *str; /* strings to draw from */
    size_t nstr;
} randbson;

enum {
    RANDBSON_UNDEFINED = 1, /* undefined is one more kind (never a query operand) */
    RANDBSON_CMP = 2,       /* a comparison operand: no NaN and int32 1 instead of decimal128 */
};

static inline uint32_t randbson_next(randbson *r)
{
    r->state ^= r->state << 13;
    r->state ^= r->state >> 7;
    r->state ^= r->state << 17;
    return (uint32_t)(r->state >> 11);
}

/* A random value under key k of b; flags: RANDBSON_*. */
static inline void randbson_value(randbson *r, bson_t *b, const char *k, unsigned flags)
{
    bson_oid_t oid;
    bson_decimal128_t dec;
    switch (randbson_next(r) % (flags & RANDBSON_UNDEFINED ? 16 : 15)) {
    case 0:
        BSON_APPEND_INT32(b, k, (int32_t)(randbson_next(r) % 7) - 3);
        break;
    case 1:
        BSON_APPEND_INT64(
            b, k, randbson_next(r) % 4 ? (int64_t)(randbson_next(r) % 7) - 3 : 9007199254740993ll);
        break;
    case 2:
    case 3:
        BSON_APPEND_DOUBLE(b, k, r->dbl[randbson_next(r) % r->ndbl]);
        break;
    case 4:
        if (flags & RANDBSON_CMP) {
            BSON_APPEND_DOUBLE(b, k, randbson_next(r) % 2 ? INFINITY : -INFINITY);
        } else {
            const double special[] = {NAN, INFINITY, -INFINITY};
            BSON_APPEND_DOUBLE(b, k, special[randbson_next(r) % 3]);
        }
        break;
    case 5: {
        /* A padded copy: libbson 1.23's append reads a little past a short value's NUL
         * (harmless in a heap buffer, reported by AddressSanitizer in a literal of that size). */
        char s[64] = {0};
        snprintf(s, sizeof s, "%s", r->str[randbson_next(r) % r->nstr]);
        BSON_APPEND_UTF8(b, k, s);
        break;
    }
    case 6:
        BSON_APPEND_DATE_TIME(b, k, ((int64_t)(randbson_next(r) % 5) - 2) * 86400000);
        break;
    case 7:
        BSON_APPEND_NULL(b, k);
        break;
    case 8:
        BSON_APPEND_BOOL(b, k, randbson_next(r) % 2);
        break;
    case 9:
        bson_oid_init_from_string(&oid, randbson_next(r) % 2 ? "5f0000000000000000000001"
                                                             : "5f0000000000000000000002");
        BSON_APPEND_OID(b, k, &oid);
        break;
    case 10: {
        bson_t sub;
        BSON_APPEND_DOCUMENT_BEGIN(b, k, &sub);
        BSON_APPEND_INT32(&sub, "x", (int32_t)(randbson_next(r) % 2));
        bson_append_document_end(b, &sub);
        break;
    }
    case 11:
        BSON_APPEND_MINKEY(b, k);
        break;
    case 12:
        BSON_APPEND_MAXKEY(b, k);
        break;
    case 13:
        if (flags & RANDBSON_CMP) {
            BSON_APPEND_INT32(b, k, 1);
        } else {
            bson_decimal128_from_string(randbson_next(r) % 2 ? "1.5" : "-1", &dec);
            BSON_APPEND_DECIMAL128(b, k, &dec);
        }
        break;
    case 14:
        BSON_APPEND_DOUBLE(b, k, (double)(randbson_next(r) % 5) - 2);
        break;
    default:
        BSON_APPEND_UNDEFINED(b, k);
        break;
    }
}

#endif
