/*
 * engine_util.h: helpers shared by the devdb engine unit tests: JSON literals to BSON (canonical
 * extended JSON accepted, e.g. {"$numberLong": "5"}), and BSON back to relaxed JSON for exact
 * comparisons. Test code only: helpers abort on malformed literals (a bug in the test).
 */
#ifndef DEVDB_TEST_ENGINE_UTIL_H
#define DEVDB_TEST_ENGINE_UTIL_H

#include <bson/bson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Copies `src` into `dst`, renaming keys that start with '%' to start with '$' (recursively).
 * libbson's JSON parser reads {"$regex": ...}, {"$type": ...} and {"$options": ...} as legacy
 * extended JSON, so tests write those query operators as %regex, %type, %options. */
static inline void J_rename(const bson_t *src, bson_t *dst)
{
    bson_iter_t it;
    bson_iter_init(&it, src);
    while (bson_iter_next(&it)) {
        char key[128];
        snprintf(key, sizeof key, "%s", bson_iter_key(&it));
        if (key[0] == '%')
            key[0] = '$';
        if (BSON_ITER_HOLDS_DOCUMENT(&it) || BSON_ITER_HOLDS_ARRAY(&it)) {
            bson_t sub, child;
            uint32_t len;
            const uint8_t *data;
            if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
                bson_iter_document(&it, &len, &data);
                bson_append_document_begin(dst, key, -1, &child);
            } else {
                bson_iter_array(&it, &len, &data);
                bson_append_array_begin(dst, key, -1, &child);
            }
            bson_init_static(&sub, data, len);
            J_rename(&sub, &child);
            if (BSON_ITER_HOLDS_DOCUMENT(&it))
                bson_append_document_end(dst, &child);
            else
                bson_append_array_end(dst, &child);
        } else {
            bson_append_value(dst, key, -1, bson_iter_value(&it));
        }
    }
}

/* Parses a JSON literal; aborts on error. Caller destroys. Single quotes in `json` are turned
 * into double quotes so tests can write '{\'a\': 1}' as "{'a': 1}"; keys starting with '%'
 * become '$' keys (see J_rename). */
static inline bson_t *J(const char *json)
{
    size_t n = strlen(json);
    char *s = malloc(n + 1);
    if (!s)
        abort();
    for (size_t i = 0; i <= n; i++)
        s[i] = json[i] == '\'' ? '"' : json[i];
    bson_error_t err;
    bson_t *b = bson_new_from_json((const uint8_t *)s, (ssize_t)n, &err);
    if (!b) {
        fprintf(stderr, "bad JSON literal in test: %s: %s\n", json, err.message);
        abort();
    }
    free(s);
    if (strchr(json, '%')) {
        bson_t *r = bson_new();
        J_rename(b, r);
        bson_destroy(b);
        b = r;
    }
    return b;
}

/* Relaxed extended JSON of `b` with single quotes and no spaces after ':' / ','
 * normalised... Returns a static thread-unsafe buffer (test code). */
static inline const char *JS(const bson_t *b)
{
    static char buf[8192];
    char *s = bson_as_relaxed_extended_json(b, NULL);
    size_t w = 0;
    for (size_t i = 0; s && s[i] && w + 1 < sizeof buf; i++) {
        char c = s[i];
        if (c == ' ')
            continue;
        buf[w++] = c == '"' ? '\'' : c;
    }
    buf[w] = '\0';
    bson_free(s);
    return buf;
}

/* Table-driven cases (test code; the CHECK_* macros need test.h). Each row gives the two inputs
 * of the function under test and its expected result: a string (eng_str_case) or an int
 * (eng_int_case). CHECK_STR_CASES(fn, table) / CHECK_INT_CASES(fn, table) check the rows in
 * order and, like CHECK, end the test at the first wrong row, naming the table, the row and
 * its inputs. */
typedef struct {
    const char *a, *b, *want;
} eng_str_case;

typedef struct {
    const char *a, *b;
    int want;
} eng_int_case;

#define ENG_NCASES(table) (sizeof(table) / sizeof((table)[0]))

#define CHECK_STR_CASES(fn, table)                                                                 \
    do {                                                                                           \
        for (size_t i_ = 0; i_ < ENG_NCASES(table); i_++) {                                        \
            const char *got_ = fn((table)[i_].a, (table)[i_].b);                                   \
            CHECK_MSG(strcmp(got_, (table)[i_].want) == 0,                                         \
                      "%s[%zu]: %s(\"%s\", \"%s\") = \"%s\", want \"%s\"", #table, i_, #fn,        \
                      (table)[i_].a, (table)[i_].b, got_, (table)[i_].want);                       \
        }                                                                                          \
    } while (0)

#define CHECK_INT_CASES(fn, table)                                                                 \
    do {                                                                                           \
        for (size_t i_ = 0; i_ < ENG_NCASES(table); i_++) {                                        \
            int got_ = fn((table)[i_].a, (table)[i_].b);                                           \
            CHECK_MSG(got_ == (table)[i_].want, "%s[%zu]: %s(\"%s\", \"%s\") = %d, want %d",       \
                      #table, i_, #fn, (table)[i_].a, (table)[i_].b, got_, (table)[i_].want);      \
        }                                                                                          \
    } while (0)

#endif
