/*
 * sortspec.c: sort specifications and a stable merge sort over precomputed keys.
 *
 * Sorting computes each document's sort key once (bv_sort_key per spec field, values pointing
 * into the documents), then merge-sorts an index array, so an N-document sort costs N key
 * extractions and N log N value comparisons, and ties keep their input order.
 */
#include "engine/sortspec.h"
#include "base/bsonval.h"
#include "base/errors.h"

#include <stdlib.h>
#include <string.h>

struct sortspec {
    size_t n;
    char *paths[SORTSPEC_MAX_KEYS];
    int dirs[SORTSPEC_MAX_KEYS];
};

void sortspec_free(sortspec *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        free(s->paths[i]);
    free(s);
}

sortspec *sortspec_new(const bson_t *spec, bool for_aggregate, bson_error_t *err)
{
    sortspec *s = calloc(1, sizeof *s);
    bson_iter_t it;
    if (!s) {
        mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
        return NULL;
    }
    if (!spec)
        return s;
    if (!bson_iter_init(&it, spec)) {
        mdb_error(err, MDB_BAD_VALUE, "invalid BSON in sort specification");
        goto fail;
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        char buf[200];
        if (v->value_type == BSON_TYPE_DOCUMENT) {
            mdb_error(err, MDB_BAD_VALUE, "$meta sort is not supported by devdb (%s)", k);
            goto fail;
        }
        if (!bv_is_number(v->value_type)) {
            mdb_error(err, 15974, "Illegal key in $sort specification: %s: %s", k,
                      bv_render_json(v, buf, sizeof buf));
            goto fail;
        }
        /* MongoDB 4.4 truncates the number to an int (numberInt) before checking it. */
        double d = bv_as_double(v);
        int dir = d >= 1 && d < 2 ? 1 : (d <= -1 && d > -2 ? -1 : 0);
        if (!dir) {
            mdb_error(err, 15975,
                      "$sort key ordering must be 1 (for ascending) or -1 (for descending)");
            goto fail;
        }
        if (k[0] == '\0' || k[0] == '$' || strlen(k) > BV_PATH_MAX) {
            mdb_error(err, MDB_BAD_VALUE, "FieldPath field names may not %s",
                      k[0] == '$' ? "start with '$'." : "be empty strings.");
            goto fail;
        }
        if (s->n == SORTSPEC_MAX_KEYS) {
            mdb_error(err, MDB_BAD_VALUE, "too many sort keys (max %d)", SORTSPEC_MAX_KEYS);
            goto fail;
        }
        s->paths[s->n] = strdup(k);
        if (!s->paths[s->n]) {
            mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
            goto fail;
        }
        s->dirs[s->n++] = dir;
    }
    if (for_aggregate && s->n == 0) {
        mdb_error(err, 15976, "$sort stage must have at least one sort key");
        goto fail;
    }
    return s;
fail:
    sortspec_free(s);
    return NULL;
}

size_t sortspec_nkeys(const sortspec *s)
{
    return s->n;
}

const char *sortspec_path(const sortspec *s, size_t i)
{
    return s->paths[i];
}

int sortspec_dir(const sortspec *s, size_t i)
{
    return s->dirs[i];
}

int sortspec_compare(const sortspec *s, const bson_t *a, const bson_t *b)
{
    for (size_t i = 0; i < s->n; i++) {
        bson_value_t ka, kb;
        bv_sort_key(a, s->paths[i], s->dirs[i], &ka);
        bv_sort_key(b, s->paths[i], s->dirs[i], &kb);
        int c = bv_compare(&ka, &kb);
        if (c)
            return s->dirs[i] < 0 ? -c : c;
    }
    return 0;
}

typedef struct {
    const sortspec *s;
    const bson_value_t *keys; /* n * s->n */
} sort_ctx;

static int cmp_idx(const sort_ctx *c, size_t x, size_t y)
{
    size_t nk = c->s->n;
    for (size_t i = 0; i < nk; i++) {
        int r = bv_compare(&c->keys[x * nk + i], &c->keys[y * nk + i]);
        if (r)
            return c->s->dirs[i] < 0 ? -r : r;
    }
    return 0;
}

/* Bottom-up stable merge sort of idx[0..n) using tmp. */
static void merge_sort(const sort_ctx *c, size_t *idx, size_t *tmp, size_t n)
{
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n;
            size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                tmp[k++] = cmp_idx(c, idx[j], idx[i]) < 0 ? idx[j++] : idx[i++];
            while (i < mid)
                tmp[k++] = idx[i++];
            while (j < hi)
                tmp[k++] = idx[j++];
        }
        memcpy(idx, tmp, n * sizeof *idx);
    }
}

int sortspec_sort(const sortspec *s, const bson_t **docs, size_t n, bson_error_t *err)
{
    if (s->n == 0 || n < 2)
        return 0;
    int rc = -1;
    bson_value_t *keys = NULL;
    size_t *idx = NULL, *tmp = NULL;
    const bson_t **sorted = NULL;
    if (n > SIZE_MAX / (sizeof *keys * s->n)) {
        mdb_error(err, MDB_INTERNAL_ERROR, "too many documents to sort");
        goto out;
    }
    keys = malloc(n * s->n * sizeof *keys);
    idx = malloc(n * sizeof *idx);
    tmp = malloc(n * sizeof *tmp);
    sorted = malloc(n * sizeof *sorted);
    if (!keys || !idx || !tmp || !sorted) {
        mdb_error(err, MDB_INTERNAL_ERROR, "out of memory sorting %zu documents", n);
        goto out;
    }
    for (size_t d = 0; d < n; d++) {
        idx[d] = d;
        for (size_t i = 0; i < s->n; i++)
            bv_sort_key(docs[d], s->paths[i], s->dirs[i], &keys[d * s->n + i]);
    }
    sort_ctx c = {s, keys};
    merge_sort(&c, idx, tmp, n);
    for (size_t d = 0; d < n; d++)
        sorted[d] = docs[idx[d]];
    memcpy(docs, sorted, n * sizeof *docs);
    rc = 0;
out:
    free(keys);
    free(idx);
    free(tmp);
    free(sorted);
    return rc;
}
