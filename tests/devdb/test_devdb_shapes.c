/*
 * test_devdb_shapes: the update command's per-shape shortcuts give exactly the general path's
 * results.
 *
 * devdb compiles a flat filter ({f: v, g: {$ne: w}, ...}) without the general parser
 * (match.c flat_compile) and re-binds the updater of a statement whose `{$set: {...}}` has the
 * field names of a recent statement of the same command (updater_rebind). The general path is
 * reached for the same statements by wrapping each filter in {$and: [q]} (a '$' key at the top
 * is never flat) and sending each statement in a command of its own (no earlier statement to
 * take a template from). The tests compare:
 *  - one update command mixing shapes (same names with other types, other operators, extra and
 *    missing fields, reordered fields, dotted paths, upserts, statements that fail to parse in
 *    the middle), ordered and unordered, against the statements one by one: n, nModified,
 *    upserted, writeErrors and the final documents;
 *  - random flat filters against their $and-wrapped form on random documents (matches and
 *    index bounds);
 *  - updater_rebind against updater_new on random values of every type, and the shapes it
 *    must refuse.
 * In-process (commands_run on a private in-memory store); no server, no timing.
 */
#include "base/bsonval.h"
#include "commands/commands.h"
#include "commands/cursor.h"
#include "engine_util.h"
#include "engine/match.h"
#include "storage/store.h"
#include "test.h"
#include "engine/update.h"

#include <stdint.h>

/* ---- helpers ------------------------------------------------------------------------------- */

typedef struct {
    cmd_env env;
    cmd_conn conn;
} db;

static void db_open(db *d)
{
    memset(d, 0, sizeof *d);
    d->env.st = store_new();
    d->env.cursors = cursor_table_new(60000);
    d->env.max_conns = 10;
    d->conn.env = &d->env;
    d->conn.conn_id = 1;
}

static void db_close(db *d)
{
    cursor_table_free(d->env.cursors);
    store_free(d->env.st);
}

/* Runs cmd (consumed) and returns the reply (caller destroys). */
static bson_t *run(db *d, bson_t *cmd)
{
    bson_t *reply = bson_new();
    commands_run(&d->conn, "t", cmd, reply);
    bson_destroy(cmd);
    return reply;
}

/* The JSON of field `key` of doc, or "" when absent (static buffer per call site slot). */
static void field_json(const bson_t *doc, const char *key, char *out, size_t cap)
{
    bson_iter_t it;
    out[0] = '\0';
    if (!bson_iter_init_find(&it, doc, key))
        return;
    bson_t tmp = BSON_INITIALIZER;
    bson_append_value(&tmp, "v", 1, bson_iter_value(&it));
    snprintf(out, cap, "%s", JS(&tmp));
    bson_destroy(&tmp);
}

static int64_t field_int(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, key) ? bson_iter_as_int64(&it) : -1;
}

/* The collection's documents in _id order, as JSON. */
static char *all_docs(db *d)
{
    bson_t *r = run(d, J("{'find': 'c', 'sort': {'_id': 1}, 'batchSize': 1000}"));
    bson_iter_t it, fb;
    char *s = NULL;
    if (bson_iter_init(&it, r) && bson_iter_find_descendant(&it, "cursor.firstBatch", &fb)) {
        bson_t tmp = BSON_INITIALIZER;
        bson_append_value(&tmp, "docs", 4, bson_iter_value(&fb));
        s = bson_as_relaxed_extended_json(&tmp, NULL);
        bson_destroy(&tmp);
    }
    bson_destroy(r);
    return s;
}

static void seed(db *d)
{
    bson_t *r = run(d, J("{'insert': 'c', 'documents': ["
                         "{'_id': {'$oid': '650000000000000000000001'}, 'status': 'PENDING', "
                         " 'campaign_id': {'$oid': '64000000000000000000000c'}, 'a': {'b': 1}},"
                         "{'_id': {'$oid': '650000000000000000000002'}, 'status': 'PENDING', "
                         " 'campaign_id': {'$oid': '64000000000000000000000c'}, 'a': {'b': 2}},"
                         "{'_id': {'$oid': '650000000000000000000003'}, 'status': 'PENDING', "
                         " 'campaign_id': {'$oid': '64000000000000000000000c'}, 'fence': 'x'},"
                         "{'_id': {'$oid': '650000000000000000000004'}, 'status': 'PENDING', "
                         " 'campaign_id': {'$oid': '64000000000000000000000c'}, 'n': 4},"
                         "{'_id': {'$oid': '650000000000000000000005'}, 'status': 'PENDING', "
                         " 'campaign_id': {'$oid': '64000000000000000000000c'}, 'n': 5},"
                         "{'_id': {'$oid': '650000000000000000000006'}, 'status': 'PENDING', "
                         " 'campaign_id': {'$oid': '64000000000000000000000c'}, 'n': 6},"
                         "{'_id': {'$oid': '650000000000000000000007'}, 'status': 'PENDING', "
                         " 'campaign_id': {'$oid': '64000000000000000000000c'}, 'n': 7},"
                         "{'_id': {'$oid': '650000000000000000000008'}, 'status': 'PENDING', "
                         " 'campaign_id': {'$oid': '64000000000000000000000c'}, 'a': {'b': 9}},"
                         "{'_id': {'$oid': '650000000000000000000009'}, 'status': 'PENDING', "
                         " 'campaign_id': {'$oid': '64000000000000000000000c'}, 'n': 9}]}"));
    bson_destroy(r);
    r = run(d, J("{'createIndexes': 'c', 'indexes': [{'key': {'campaign_id': 1, 'status': 1}, "
                 "'name': 'cs'}, {'key': {'vendorMsgId': 1}, 'name': 'v', 'unique': true, "
                 "'partialFilterExpression': {'vendorMsgId': {'%exists': true}}}]}"));
    bson_destroy(r);
}

#define OID(n) "{'$oid': '65000000000000000000000" #n "'}"
#define CAMP   "{'$oid': '64000000000000000000000c'}"
#define DATE   "{'$date': {'$numberLong': '1700000000000'}}"
#define RQ(n, fence)                                                                               \
    "{'_id': " OID(n) ", 'status': 'PENDING', 'fence': {'%ne': '" fence "'}, 'campaign_id': " CAMP \
                      "}"
#define SENT(v)                                                                                    \
    "{'%set': {'status': 'SENT', 'vendorMsgId': '" v "', 'deliveredAt': " DATE                     \
    ", 'updatedAt': " DATE ", 'ctok': 't" v "'}}"
#define FAILED(v)                                                                                  \
    "{'%set': {'status': 'FAILED', 'vendorMsgId': '" v "', 'deliveredAt': " DATE                   \
    ", 'updatedAt': " DATE ", 'ctok': 't" v "', 'failureReason': 'no'}}"

/* The mixed command's statements (JSON). */
static const char *const STMTS[] = {
    "{'q': " RQ(1, "f1") ", 'u': " SENT("v1") "}",
    "{'q': " RQ(2, "f2") ", 'u': " FAILED("v2") "}",
    "{'q': " RQ(3, "x") ", 'u': " SENT("v3") "}", /* fence == x: no match */
    "{'q': " RQ(3, "f3") ", 'u': " SENT("v3") "}",
    /* same names, other types (filter and update) */
    "{'q': {'_id': " OID(4) ", 'status': 5, 'fence': {'%ne': 7}, 'campaign_id': " CAMP "}, "
                            "'u': " SENT("v4x") "}",
    "{'q': {'_id': " OID(
        4) ", 'status': 'PENDING', 'fence': {'%ne': null}, 'campaign_id': " CAMP
           "}, 'u': {'%set': {'status': 7, 'vendorMsgId': {'x': 1}, 'deliveredAt': [1, 2], "
           "'updatedAt': null, 'ctok': 1.5}}}",
    /* a duplicate vendorMsgId: unique index error from a re-bound updater */
    "{'q': " RQ(5, "f5") ", 'u': " SENT("v1") "}",
    /* parse failures in the middle */
    "{'q': {'status': {'%foo': 1}}, 'u': " SENT("v9") "}",
    "{'q': " RQ(6, "f6") ", 'u': {'%set': {}}}",
    "{'q': " RQ(6, "f6") ", 'u': {'%bogus': {'x': 1}}}",
    "{'q': " RQ(6, "f6") ", 'u': 5}",
    "{'u': " SENT("v9") "}",
    "{'q': " RQ(6, "f6") ", 'u': {'%set': {'status': 'A'}, '%inc': {'status': 1}}}",
    "{'q': " RQ(6, "f6") ", 'u': {'%set': {'status': 'A', 'status': 'B'}}}",
    "{'q': " RQ(6, "f6") ", 'u': {'%set': {'status': 'SENT', 'vendorMsgId': 'v6', 'deliveredAt': "
                         "1, 'updatedAt': 2, 'ctok': 3}, '%unset': {'ctok': 1}}}",
    /* other operators */
    "{'q': {'_id': {'%gte': " OID(6) ", '%lte': " OID(
        6) "}, 'status': {'%eq': 'PENDING'}}, 'u': " SENT("v6") "}",
    "{'q': {'_id': {'%in': [" OID(7) "]}, 'status': {'%regex': '^PEND'}}, 'u': " SENT("v7") "}",
    "{'q': {'_id': " OID(9) ", 'n': {'%gt': 8, '%ne': 10, '%lt': 10}}, 'u': " FAILED("v9") "}",
    /* extra, missing and reordered fields; dotted paths; _id in $set */
    "{'q': {'_id': " OID(8) ", 'a.b': 9}, 'u': {'%set': {'status': 'SENT', 'vendorMsgId': 'v8', "
                            "'deliveredAt': 1, 'updatedAt': 2, 'ctok': 3, 'extra': true}}}",
    "{'q': {'_id': " OID(8) "}, 'u': {'%set': {'status': 'SENT', 'vendorMsgId': 'v8b', "
                            "'deliveredAt': 1, 'updatedAt': 2}}}",
    "{'q': {'_id': " OID(8) "}, 'u': {'%set': {'vendorMsgId': 'v8c', 'status': 'X', "
                            "'deliveredAt': 1, 'updatedAt': 2}}}",
    "{'q': {'_id': " OID(8) "}, 'u': {'%set': {'a.b': 10}}}",
    "{'q': {'_id': " OID(8) "}, 'u': {'%set': {'a': {'b': 11}}}}",
    "{'q': {'_id': " OID(8) "}, 'u': {'%set': {'a': 12}}}",
    "{'q': {'_id': " OID(8) "}, 'u': {'%set': {'_id': 5}}}",
    "{'q': {'a.b': 2}, 'u': {'%set': {'a': 3}}, 'multi': true}",
    "{'q': {'status': 'PENDING'}, 'u': {'status': 'R'}, 'multi': true}",
    /* upserts */
    "{'q': {'_id': {'$oid': '6500000000000000000000aa'}, 'status': 'PENDING', 'fence': {'%ne': "
    "'f'}, 'campaign_id': " CAMP "}, 'u': " SENT("va") ", 'upsert': true}",
    "{'q': {'_id': {'$oid': '6500000000000000000000ab'}, 'status': 'PENDING', 'fence': {'%ne': "
    "'f'}, 'campaign_id': " CAMP "}, 'u': " SENT("vb") ", 'upsert': true}",
    /* back to the receipts shapes after all that */
    "{'q': " RQ(7, "f7") ", 'u': " FAILED("v7b") "}",
    "{'q': " RQ(4, "f4") ", 'u': " SENT("v4") "}",
    "{'q': " RQ(9, "f9") ", 'u': " SENT("v9") "}",
    "{'q': {'status': 'PENDING', 'n': 5}, 'u': {'%set': {'status': 'SENT', 'vendorMsgId': 'v5'}}}",
};
#define NSTMTS (sizeof STMTS / sizeof STMTS[0])

/* stmt with q wrapped in {$and: [q]} when q is a document (general matcher path). */
static bson_t *wrapped(const bson_t *stmt)
{
    bson_t *out = bson_new();
    bson_iter_t it;
    bson_iter_init(&it, stmt);
    while (bson_iter_next(&it)) {
        if (strcmp(bson_iter_key(&it), "q") == 0 && BSON_ITER_HOLDS_DOCUMENT(&it)) {
            bson_t w, arr;
            bson_append_document_begin(out, "q", 1, &w);
            bson_append_array_begin(&w, "$and", 4, &arr);
            bson_append_value(&arr, "0", 1, bson_iter_value(&it));
            bson_append_array_end(&w, &arr);
            bson_append_document_end(out, &w);
        } else {
            bson_append_value(out, bson_iter_key(&it), -1, bson_iter_value(&it));
        }
    }
    return out;
}

/* The update command {update: c, updates: [stmts...], ordered}. */
static bson_t *update_cmd(bson_t **stmts, size_t n, bool ordered)
{
    bson_t *cmd = bson_new(), arr;
    BSON_APPEND_UTF8(cmd, "update", "c");
    bson_append_array_begin(cmd, "updates", -1, &arr);
    for (size_t i = 0; i < n; i++) {
        char k[16];
        snprintf(k, sizeof k, "%zu", i);
        bson_append_document(&arr, k, -1, stmts[i]);
    }
    bson_append_array_end(cmd, &arr);
    BSON_APPEND_BOOL(cmd, "ordered", ordered);
    return cmd;
}

/* Appends element 0 of array field `key` of reply r, re-indexed to `index`, to `arr`. */
static void add_reindexed(const bson_t *r, const char *key, int32_t index, bson_t *arr, uint32_t *n)
{
    bson_iter_t it, ai;
    if (!bson_iter_init_find(&it, r, key) || !bson_iter_recurse(&it, &ai))
        return;
    while (bson_iter_next(&ai)) {
        bson_t e, src;
        uint32_t len;
        const uint8_t *data;
        bson_iter_document(&ai, &len, &data);
        bson_init_static(&src, data, len);
        char k[16];
        snprintf(k, sizeof k, "%u", (*n)++);
        bson_append_document_begin(arr, k, -1, &e);
        bson_iter_t fi;
        bson_iter_init(&fi, &src);
        while (bson_iter_next(&fi)) {
            if (strcmp(bson_iter_key(&fi), "index") == 0)
                BSON_APPEND_INT32(&e, "index", index);
            else
                bson_append_value(&e, bson_iter_key(&fi), -1, bson_iter_value(&fi));
        }
        bson_append_document_end(arr, &e);
    }
}

static void mixed_command(bool ordered)
{
    bson_t *stmts[NSTMTS];
    for (size_t i = 0; i < NSTMTS; i++)
        stmts[i] = J(STMTS[i]);

    /* The fast paths: everything in one command. */
    db a;
    db_open(&a);
    seed(&a);
    bson_t *ra = run(&a, update_cmd(stmts, NSTMTS, ordered));

    /* The general path: one command per statement, filters wrapped in $and. */
    db b;
    db_open(&b);
    seed(&b);
    int64_t n = 0, nmod = 0;
    bson_t werr = BSON_INITIALIZER, ups = BSON_INITIALIZER;
    uint32_t nwerr = 0, nups = 0;
    for (size_t i = 0; i < NSTMTS; i++) {
        bson_t *w = wrapped(stmts[i]);
        bson_t *rb = run(&b, update_cmd(&w, 1, ordered));
        bson_destroy(w);
        CHECK_INT_EQ(field_int(rb, "ok"), 1);
        n += field_int(rb, "n");
        nmod += field_int(rb, "nModified");
        uint32_t before = nwerr;
        add_reindexed(rb, "writeErrors", (int32_t)i, &werr, &nwerr);
        add_reindexed(rb, "upserted", (int32_t)i, &ups, &nups);
        bson_destroy(rb);
        if (ordered && nwerr > before)
            break;
    }
    CHECK(nwerr >= (ordered ? 1u : 10u)); /* the batch does exercise its error statements */
    CHECK(nups == (ordered ? 0u : 2u));

    CHECK_INT_EQ(field_int(ra, "ok"), 1);
    CHECK_INT_EQ(field_int(ra, "n"), n);
    CHECK_INT_EQ(field_int(ra, "nModified"), nmod);
    char ja[8192], jb[8192];
    bson_t exp = BSON_INITIALIZER;
    if (nwerr)
        BSON_APPEND_ARRAY(&exp, "writeErrors", &werr);
    if (nups)
        BSON_APPEND_ARRAY(&exp, "upserted", &ups);
    field_json(ra, "writeErrors", ja, sizeof ja);
    field_json(&exp, "writeErrors", jb, sizeof jb);
    CHECK_STR_EQ(ja, jb);
    field_json(ra, "upserted", ja, sizeof ja);
    field_json(&exp, "upserted", jb, sizeof jb);
    CHECK_STR_EQ(ja, jb);
    char *da = all_docs(&a), *dbs = all_docs(&b);
    CHECK_STR_EQ(da, dbs);
    CHECK_STR_CONTAINS(da, "\"vendorMsgId\" : \"v1\"");

    bson_free(da);
    bson_free(dbs);
    bson_destroy(&exp);
    bson_destroy(&werr);
    bson_destroy(&ups);
    bson_destroy(ra);
    db_close(&a);
    db_close(&b);
    for (size_t i = 0; i < NSTMTS; i++)
        bson_destroy(stmts[i]);
}

TEST(mixed_command_unordered)
{
    mixed_command(false);
}

TEST(mixed_command_ordered)
{
    mixed_command(true);
}

/* ---- random flat filters against the general parser --------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

/* A random value of one of many types, small domains so that equalities happen. */
static void rand_value(bson_t *d, const char *k, bool allow_containers)
{
    static const char *const strs[] = {"", "a", "PENDING", "SENT", "b"};
    bson_oid_t oid;
    uint8_t ob[12] = {0};
    switch (rnd(allow_containers ? 13 : 10)) {
    case 0:
        BSON_APPEND_INT32(d, k, (int32_t)rnd(4));
        break;
    case 1:
        BSON_APPEND_INT64(d, k, (int64_t)rnd(4));
        break;
    case 2:
        BSON_APPEND_DOUBLE(d, k, rnd(5) == 0 ? 0.0 / 0.0 : rnd(8) / 2.0);
        break;
    case 3:
    case 4: {
        const char *str = strs[rnd(5)]; /* BSON_APPEND_UTF8 evaluates it twice */
        BSON_APPEND_UTF8(d, k, str);
        break;
    }
    case 5:
        ob[11] = (uint8_t)rnd(3);
        bson_oid_init_from_data(&oid, ob);
        BSON_APPEND_OID(d, k, &oid);
        break;
    case 6:
        BSON_APPEND_DATE_TIME(d, k, (int64_t)rnd(3));
        break;
    case 7:
        BSON_APPEND_NULL(d, k);
        break;
    case 8:
        BSON_APPEND_BOOL(d, k, rnd(2));
        break;
    case 9:
        BSON_APPEND_MINKEY(d, k);
        break;
    case 10: {
        bson_t a;
        bson_append_array_begin(d, k, -1, &a);
        unsigned m = rnd(3);
        for (unsigned i = 0; i < m; i++)
            rand_value(&a, i ? "1" : "0", false);
        bson_append_array_end(d, &a);
        break;
    }
    case 11: {
        bson_t s;
        bson_append_document_begin(d, k, -1, &s);
        if (rnd(2))
            rand_value(&s, "b", false);
        bson_append_document_end(d, &s);
        break;
    }
    default: {
        bson_t s; /* {$ref-like} values and empty documents are values, not operators */
        bson_append_document_begin(d, k, -1, &s);
        if (rnd(2))
            BSON_APPEND_UTF8(&s, "$ref", "x");
        bson_append_document_end(d, &s);
        break;
    }
    }
}

static const char *const FIELDS[] = {"a", "b", "a.b", "c"};

/* A random filter: mostly flat, sometimes with an operator outside the flat subset. */
static void rand_filter(bson_t *f)
{
    static const char *const ops[] = {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"};
    unsigned nf = rnd(4);
    for (unsigned i = 0; i < nf; i++) {
        const char *k = FIELDS[rnd(4)];
        unsigned form = rnd(10);
        if (form < 4) {
            rand_value(f, k, true);
            continue;
        }
        bson_t od;
        bson_append_document_begin(f, k, -1, &od);
        unsigned no = form < 8 ? 1 : 1 + rnd(3);
        for (unsigned j = 0; j < no; j++)
            rand_value(&od, ops[rnd(6)], true);
        if (rnd(12) == 0)
            BSON_APPEND_BOOL(&od, "$exists", true);
        bson_append_document_end(f, &od);
    }
}

static void rand_doc(bson_t *d)
{
    if (rnd(4))
        rand_value(d, "a", true);
    if (rnd(4))
        rand_value(d, "b", true);
    if (rnd(3))
        rand_value(d, "c", true);
}

static bool same_bounds(const matcher *x, const matcher *y, const char *path, bool multikey)
{
    match_bounds bx, by;
    bool rx = matcher_field_bounds(x, path, multikey, &bx);
    bool ry = matcher_field_bounds(y, path, multikey, &by);
    if (rx != ry)
        return false;
    if (!rx)
        return true;
    if (bx.n_points != by.n_points || bx.has_lo != by.has_lo || bx.has_hi != by.has_hi)
        return false;
    for (size_t i = 0; i < bx.n_points; i++)
        if (bx.points[i]->value_type != by.points[i]->value_type ||
            bv_compare(bx.points[i], by.points[i]) != 0)
            return false;
    if (bx.has_lo && (bx.lo_inclusive != by.lo_inclusive || bx.lo.value_type != by.lo.value_type ||
                      bv_compare(&bx.lo, &by.lo) != 0))
        return false;
    if (bx.has_hi && (bx.hi_inclusive != by.hi_inclusive || bx.hi.value_type != by.hi.value_type ||
                      bv_compare(&bx.hi, &by.hi) != 0))
        return false;
    return true;
}

TEST(random_flat_filters)
{
    enum { NDOCS = 60, NFILTERS = 3000 };
    bson_t docs[NDOCS];
    for (int i = 0; i < NDOCS; i++) {
        bson_init(&docs[i]);
        rand_doc(&docs[i]);
    }
    for (int t = 0; t < NFILTERS; t++) {
        bson_t f = BSON_INITIALIZER, w = BSON_INITIALIZER, arr;
        rand_filter(&f);
        bson_append_array_begin(&w, "$and", -1, &arr);
        BSON_APPEND_DOCUMENT(&arr, "0", &f);
        bson_append_array_end(&w, &arr);
        bson_error_t ef, ew;
        matcher *mf = matcher_new(&f, &ef), *mw = matcher_new(&w, &ew);
        CHECK_MSG(!mf == !mw, "compiles differently: %s", JS(&f));
        if (!mf) {
            CHECK_INT_EQ(ef.code, ew.code);
            CHECK_STR_EQ(ef.message, ew.message);
        } else {
            for (int i = 0; i < NDOCS; i++)
                CHECK_MSG(matcher_matches(mf, &docs[i]) == matcher_matches(mw, &docs[i]),
                          "filter %s doc %d", JS(&f), i);
            for (int p = 0; p < 4; p++)
                for (int mk = 0; mk < 2; mk++)
                    CHECK_MSG(same_bounds(mf, mw, FIELDS[p], mk), "bounds of %s on %s", JS(&f),
                              FIELDS[p]);
            CHECK(matcher_is_empty(mf) == (f.len == 5));
        }
        matcher_free(mf);
        matcher_free(mw);
        bson_destroy(&f);
        bson_destroy(&w);
    }
    for (int i = 0; i < NDOCS; i++)
        bson_destroy(&docs[i]);
}

/* ---- updater_rebind ------------------------------------------------------------------------ */

/* The result of applying up to doc: JSON, or "ERR code msg". */
static void apply_str(const updater *up, const bson_t *doc, char *out, size_t cap)
{
    bson_t res = BSON_INITIALIZER;
    bson_error_t err;
    bool mod = false;
    if (updater_apply(up, doc, false, &res, &mod, &err) != 0)
        snprintf(out, cap, "ERR %u %s", err.code, err.message);
    else
        snprintf(out, cap, "%s %d", JS(&res), mod);
    bson_destroy(&res);
}

TEST(rebind_random_values)
{
    static const char *const names[] = {"status", "vendorMsgId", "a", "zz", "b"};
    for (int t = 0; t < 2000; t++) {
        /* A template and an update with the same names in the same order. */
        unsigned nk = 1 + rnd(5);
        bson_t tu = BSON_INITIALIZER, uu = BSON_INITIALIZER, ts, us;
        bson_append_document_begin(&tu, "$set", -1, &ts);
        bson_append_document_begin(&uu, "$set", -1, &us);
        unsigned start = rnd(5);
        for (unsigned i = 0; i < nk; i++) {
            rand_value(&ts, names[(start + i) % 5], true);
            rand_value(&us, names[(start + i) % 5], true);
        }
        bson_append_document_end(&tu, &ts);
        bson_append_document_end(&uu, &us);
        bson_error_t e;
        updater *tmpl = updater_new(&tu, &e);
        CHECK(tmpl != NULL);
        updater *r = updater_rebind(tmpl, &uu), *g = updater_new(&uu, &e);
        CHECK(r != NULL && g != NULL);
        updater_free(tmpl); /* the re-bound updater does not depend on its template */
        for (int k = 0; k < 5; k++) {
            bson_t d = BSON_INITIALIZER;
            BSON_APPEND_INT32(&d, "_id", k);
            rand_doc(&d);
            if (rnd(2))
                rand_value(&d, "status", true);
            char sr[4096], sg[4096];
            apply_str(r, &d, sr, sizeof sr);
            apply_str(g, &d, sg, sizeof sg);
            CHECK_STR_EQ(sr, sg);
            for (int p = 0; p < 5; p++)
                CHECK(updater_may_touch(r, names[p]) == updater_may_touch(g, names[p]));
            bson_destroy(&d);
        }
        updater_free(r);
        updater_free(g);
        bson_destroy(&tu);
        bson_destroy(&uu);
    }
}

TEST(rebind_refuses_other_shapes)
{
    bson_error_t e;
    bson_t *t = J("{'%set': {'status': 'SENT', 'v': 'x', 'd': 1}}");
    updater *tmpl = updater_new(t, &e);
    CHECK(tmpl != NULL);
    static const char *const other[] = {
        "{'%set': {'status': 'SENT', 'v': 'x'}}",                           /* missing */
        "{'%set': {'status': 'SENT', 'v': 'x', 'd': 1, 'e': 2}}",           /* extra */
        "{'%set': {'v': 'x', 'status': 'SENT', 'd': 1}}",                   /* reordered */
        "{'%set': {'status': 'SENT', 'v.w': 'x', 'd': 1}}",                 /* dotted */
        "{'%set': {'status': 'SENT', 'v': 'x', 'd': 1}, '%inc': {'n': 1}}", /* another op */
        "{'%setOnInsert': {'status': 'SENT', 'v': 'x', 'd': 1}}",           /* another op */
        "{'%set': {'status': 'SENT', 'v': 'x', 'status': 1}}",              /* a repeated name */
        "{'%set': {}}",
        "{'status': 'SENT', 'v': 'x', 'd': 1}", /* replacement */
        "{'%set': 5}",
    };
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        bson_t *u = J(other[i]);
        updater *r = updater_rebind(tmpl, u);
        CHECK_MSG(r == NULL, "re-bound %s", other[i]);
        updater_free(r);
        bson_destroy(u);
    }
    /* A template that is not a flat $set is never used. */
    static const char *const not_flat[] = {"{'%set': {'a.b': 1}}", "{'%inc': {'a': 1}}",
                                           "{'%set': {'_id': 1}}", "{'a': 1}",
                                           "{'%set': {'a': 1}, '%unset': {'b': 1}}"};
    for (size_t i = 0; i < sizeof not_flat / sizeof not_flat[0]; i++) {
        bson_t *u = J(not_flat[i]);
        updater *nt = updater_new(u, &e);
        CHECK(nt != NULL);
        updater *r = updater_rebind(nt, u);
        CHECK_MSG(r == NULL, "re-bound from %s", not_flat[i]);
        updater_free(r);
        updater_free(nt);
        bson_destroy(u);
    }
    CHECK(updater_rebind(NULL, t) == NULL);
    updater_free(tmpl);
    bson_destroy(t);
}

TEST_MAIN(TEST_ENTRY(mixed_command_unordered), TEST_ENTRY(mixed_command_ordered),
          TEST_ENTRY(random_flat_filters), TEST_ENTRY(rebind_random_values),
          TEST_ENTRY(rebind_refuses_other_shapes))
