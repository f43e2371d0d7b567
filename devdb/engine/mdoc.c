/*
 * mdoc.c: the mutable document tree (see mdoc.h for what it owns and its invariants).
 *
 * Levels are growable arrays of fields (doubling from 8) searched by a linear scan in document
 * order: documents are small and an update touches few paths. Only levels on an operation's
 * path are expanded, so recursion (mdoc_free, mdoc_serialize) is bounded by the longest path
 * (BV_PATH_MAX_PARTS components).
 */
#include "engine/mdoc.h"

#include "base/bsonval.h"
#include "base/errors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#define MAX_PARTS BV_PATH_MAX_PARTS

/* ---------------------------------------------------------------------------------------------
 * Paths
 * ------------------------------------------------------------------------------------------- */

size_t mdoc_split_path(const char *path, mdoc_part *parts, size_t cap)
{
    size_t n = 0;
    const char *p = path;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (n == cap)
            return 0;
        parts[n].s = p;
        parts[n].n = len;
        n++;
        if (!dot)
            return n;
        p = dot + 1;
    }
}

static bool parse_index(const mdoc_part *p, size_t *out)
{
    if (p->n == 0 || p->n > 9)
        return false;
    size_t v = 0;
    for (size_t i = 0; i < p->n; i++) {
        if (p->s[i] < '0' || p->s[i] > '9')
            return false;
        v = v * 10 + (size_t)(p->s[i] - '0');
    }
    *out = v;
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * The tree
 * ------------------------------------------------------------------------------------------- */

void mdoc_free(mdoc *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n; i++)
        mdoc_free(d->f[i].kids);
    free(d->f);
    free(d);
}

mdoc_field *mdoc_append(mdoc *d, const char *name, size_t nlen, bson_error_t *err)
{
    if (d->n == d->cap) {
        size_t ncap = d->cap ? d->cap * 2 : 8;
        mdoc_field *nf = realloc(d->f, ncap * sizeof *nf);
        if (!nf) {
            mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
            return NULL;
        }
        d->f = nf;
        d->cap = ncap;
    }
    mdoc_field *f = &d->f[d->n++];
    memset(f, 0, sizeof *f);
    f->name = name;
    f->nlen = nlen;
    f->v.value_type = BSON_TYPE_NULL;
    return f;
}

mdoc *mdoc_from(const uint8_t *data, uint32_t len, bool is_array, bson_error_t *err)
{
    mdoc *d = calloc(1, sizeof *d);
    bson_iter_t it;
    if (!d) {
        mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
        return NULL;
    }
    d->is_array = is_array;
    if (data && bson_iter_init_from_data(&it, data, len)) {
        while (bson_iter_next(&it)) {
            mdoc_field *f = mdoc_append(d, bson_iter_key(&it), bson_iter_key_len(&it), err);
            if (!f) {
                mdoc_free(d);
                return NULL;
            }
            f->v = *bson_iter_value(&it);
        }
    }
    return d;
}

static bool is_container(const mdoc_field *f)
{
    return f->kids || f->v.value_type == BSON_TYPE_DOCUMENT || f->v.value_type == BSON_TYPE_ARRAY;
}

bool mdoc_field_is_array(const mdoc_field *f)
{
    return f->kids ? f->kids->is_array : f->v.value_type == BSON_TYPE_ARRAY;
}

mdoc *mdoc_expand(mdoc_field *f, bson_error_t *err)
{
    if (f->kids)
        return f->kids;
    f->kids = mdoc_from(f->v.value.v_doc.data, f->v.value.v_doc.data_len,
                        f->v.value_type == BSON_TYPE_ARRAY, err);
    return f->kids;
}

void mdoc_field_set(mdoc_field *f, const bson_value_t *v)
{
    mdoc_free(f->kids);
    f->kids = NULL;
    f->v = *v;
}

/* Index of a live element/field named p in d, or -1. */
static ssize_t mdoc_find(const mdoc *d, const mdoc_part *p)
{
    if (d->is_array) {
        size_t idx;
        if (!parse_index(p, &idx))
            return -1;
        /* Arrays never hold deleted slots: $unset of an element stores null instead. */
        return idx < d->n ? (ssize_t)idx : -1;
    }
    for (size_t i = 0; i < d->n; i++)
        if (!d->f[i].deleted && d->f[i].nlen == p->n && memcmp(d->f[i].name, p->s, p->n) == 0)
            return (ssize_t)i;
    return -1;
}

static void render_field(const mdoc_field *f, char *buf, size_t cap)
{
    char v[400];
    if (f->kids) {
        bson_t tmp;
        bson_init(&tmp);
        mdoc_serialize(f->kids, &tmp, false);
        bv_render_shell_doc(bson_get_data(&tmp), tmp.len, f->kids->is_array, v, sizeof v);
        bson_destroy(&tmp);
    } else {
        bv_render_shell(&f->v, v, sizeof v);
    }
    snprintf(buf, cap, "{%.*s: %s}", (int)f->nlen, f->name ? f->name : "", v);
}

int mdoc_resolve(mdoc *root, const char *path, bool create, mdoc **parent, size_t *idx,
                 bson_error_t *err)
{
    mdoc_part parts[MAX_PARTS];
    size_t n = mdoc_split_path(path, parts, MAX_PARTS);
    mdoc *cur = root;
    mdoc_field *holder = NULL; /* the field holding cur, for messages */
    for (size_t i = 0; i < n; i++) {
        const mdoc_part *p = &parts[i];
        ssize_t at = mdoc_find(cur, p);
        if (at < 0) {
            if (!create)
                return 0;
            size_t want = 0;
            if (cur->is_array && !parse_index(p, &want)) {
                char where[500];
                if (holder)
                    render_field(holder, where, sizeof where);
                else
                    snprintf(where, sizeof where, "{}");
                return mdb_error(err, MDB_PATH_NOT_VIABLE,
                                 "Cannot create field '%.*s' in element %s", (int)p->n, p->s,
                                 where);
            }
            if (cur->is_array) {
                if (want > 1500000)
                    return mdb_error(err, MDB_BAD_VALUE,
                                     "can't backfill array to larger than 1,500,000 elements");
                while (cur->n < want)
                    if (!mdoc_append(cur, NULL, 0, err))
                        return -1;
            }
            mdoc_field *f = mdoc_append(cur, p->s, p->n, err);
            if (!f)
                return -1;
            at = (ssize_t)cur->n - 1;
            /* A fresh last slot holds EOD until the operation stores its value; operations tell
             * "created" from "existing null" by it. */
            if (i + 1 == n)
                f->v.value_type = BSON_TYPE_EOD;
            if (i + 1 < n) {
                f->kids = mdoc_from(NULL, 0, false, err);
                if (!f->kids)
                    return -1;
            }
        }
        if (i + 1 == n) {
            *parent = cur;
            *idx = (size_t)at;
            return 1;
        }
        mdoc_field *f = &cur->f[at];
        if (!is_container(f)) {
            if (!create)
                return 0;
            char where[500];
            render_field(f, where, sizeof where);
            return mdb_error(err, MDB_PATH_NOT_VIABLE, "Cannot create field '%.*s' in element %s",
                             (int)parts[i + 1].n, parts[i + 1].s, where);
        }
        if (f->kids == NULL && cur->is_array && !create) {
            /* fine: descend into the element */
        }
        holder = f;
        if (!f->name) {
            /* Padding element: give it the index text for messages. */
            f->name = p->s;
            f->nlen = p->n;
        }
        cur = mdoc_expand(f, err);
        if (!cur)
            return -1;
    }
    return 0;
}

bool mdoc_field_value(const mdoc_field *f, bson_value_t *out, bson_t *scratch)
{
    if (!f->kids) {
        *out = f->v;
        return true;
    }
    bson_reinit(scratch);
    mdoc_serialize(f->kids, scratch, false);
    out->value_type = f->kids->is_array ? BSON_TYPE_ARRAY : BSON_TYPE_DOCUMENT;
    out->value.v_doc.data = (uint8_t *)bson_get_data(scratch);
    out->value.v_doc.data_len = scratch->len;
    return true;
}

int mdoc_serialize(const mdoc *d, bson_t *out, bool id_first)
{
    size_t w = 0;
    char key[16];
    if (id_first) {
        for (size_t i = 0; i < d->n; i++) {
            const mdoc_field *f = &d->f[i];
            if (!f->deleted && f->nlen == 3 && memcmp(f->name, "_id", 3) == 0) {
                if (f->kids) {
                    bson_t sub;
                    bson_append_document_begin(out, "_id", 3, &sub);
                    mdoc_serialize(f->kids, &sub, false);
                    bson_append_document_end(out, &sub);
                } else {
                    bv_append(out, "_id", 3, &f->v);
                }
                break;
            }
        }
    }
    for (size_t i = 0; i < d->n; i++) {
        const mdoc_field *f = &d->f[i];
        if (f->deleted)
            continue;
        const char *name = f->name;
        int nlen = (int)f->nlen;
        if (d->is_array) {
            nlen = snprintf(key, sizeof key, "%zu", w);
            name = key;
        } else if (id_first && f->nlen == 3 && memcmp(f->name, "_id", 3) == 0) {
            continue;
        }
        w++;
        if (f->kids) {
            bson_t sub;
            if (f->kids->is_array)
                bson_append_array_begin(out, name, nlen, &sub);
            else
                bson_append_document_begin(out, name, nlen, &sub);
            mdoc_serialize(f->kids, &sub, false);
            if (f->kids->is_array)
                bson_append_array_end(out, &sub);
            else
                bson_append_document_end(out, &sub);
        } else if (f->v.value_type != BSON_TYPE_EOD) {
            bson_append_value(out, name, nlen, &f->v);
        }
    }
    return 0;
}
