/*
 * Integration tests of minicrm-devdb's server half through libmongoc (and a raw socket for
 * malformed messages) against a private devdb started by testenv: handshake, CRUD, cursors
 * with getMore, write errors, indexes, concurrency from a client pool, protocol robustness.
 */
#include "test.h"
#include "testenv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <mongoc/mongoc.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

static testenv env;
static mongoc_client_pool_t *pool;

static mongoc_collection_t *coll_get(mongoc_client_t *cl, const char *name)
{
    return mongoc_client_get_collection(cl, env.db_name, name);
}

/* Runs a command on the test database; returns true on ok:1, reply always initialised. */
static bool run_cmd(mongoc_client_t *cl, const bson_t *cmd, bson_t *reply, bson_error_t *err)
{
    return mongoc_client_command_simple(cl, env.db_name, cmd, NULL, reply, err);
}

static int64_t server_counter(mongoc_client_t *cl, const char *which)
{
    bson_t cmd = BSON_INITIALIZER, reply;
    bson_error_t err;
    BSON_APPEND_INT32(&cmd, "serverStatus", 1);
    int64_t v = -1;
    if (mongoc_client_command_simple(cl, "admin", &cmd, NULL, &reply, &err)) {
        bson_iter_t it, sub;
        char path[128];
        snprintf(path, sizeof path, "metrics.queryExecutor.%s", which);
        if (bson_iter_init(&it, &reply) && bson_iter_find_descendant(&it, path, &sub))
            v = bson_iter_as_int64(&sub);
    }
    bson_destroy(&cmd);
    bson_destroy(&reply);
    return v;
}

TEST(hello_reports_standalone_44)
{
    mongoc_client_t *cl = mongoc_client_pool_pop(pool);
    bson_t cmd = BSON_INITIALIZER, reply;
    bson_error_t err;
    BSON_APPEND_INT32(&cmd, "isMaster", 1);
    bool ok = mongoc_client_command_simple(cl, "admin", &cmd, NULL, &reply, &err);
    bson_iter_t it;
    CHECK_MSG(ok, "isMaster: %s", err.message);
    CHECK(bson_iter_init_find(&it, &reply, "ismaster") && BSON_ITER_HOLDS_BOOL(&it) &&
          bson_iter_bool(&it));
    CHECK(bson_iter_init_find(&it, &reply, "maxBsonObjectSize") && BSON_ITER_HOLDS_INT32(&it));
    CHECK_INT_EQ(bson_iter_int32(&it), 16777216);
    CHECK(bson_iter_init_find(&it, &reply, "maxWireVersion") && BSON_ITER_HOLDS_INT32(&it));
    CHECK_INT_EQ(bson_iter_int32(&it), 9);
    CHECK(bson_iter_init_find(&it, &reply, "connectionId") && BSON_ITER_HOLDS_INT32(&it));
    CHECK(bson_iter_init_find(&it, &reply, "logicalSessionTimeoutMinutes"));
    CHECK(!bson_has_field(&reply, "topologyVersion"));
    CHECK(!bson_has_field(&reply, "compression"));
    bson_destroy(&reply);
    bson_reinit(&cmd);
    BSON_APPEND_INT32(&cmd, "buildInfo", 1);
    CHECK(mongoc_client_command_simple(cl, "admin", &cmd, NULL, &reply, &err));
    CHECK(bson_iter_init_find(&it, &reply, "version"));
    CHECK_STR_EQ(bson_iter_utf8(&it, NULL), "4.4.29");
    bson_destroy(&reply);
    bson_destroy(&cmd);
    mongoc_client_pool_push(pool, cl);
}

TEST(unknown_command_is_59)
{
    mongoc_client_t *cl = mongoc_client_pool_pop(pool);
    bson_t cmd = BSON_INITIALIZER, reply;
    bson_error_t err;
    BSON_APPEND_INT32(&cmd, "frobnicate", 1);
    bool ok = run_cmd(cl, &cmd, &reply, &err);
    CHECK(!ok);
    CHECK_INT_EQ(err.code, 59);
    CHECK_STR_CONTAINS(err.message, "no such command: 'frobnicate'");
    bson_destroy(&reply);
    bson_destroy(&cmd);
    mongoc_client_pool_push(pool, cl);
}

TEST(crud_roundtrip)
{
    mongoc_client_t *cl = mongoc_client_pool_pop(pool);
    mongoc_collection_t *c = coll_get(cl, "crud");
    bson_error_t err;
    for (int i = 0; i < 20; i++) {
        bson_t *d = BCON_NEW("n", BCON_INT32(i), "tag", BCON_UTF8(i % 2 ? "odd" : "even"));
        CHECK_MSG(mongoc_collection_insert_one(c, d, NULL, NULL, &err), "%s", err.message);
        bson_destroy(d);
    }
    /* find: filter + sort desc + limit; _id was generated and is first */
    bson_t *filter = BCON_NEW("tag", "even");
    bson_t *opts = BCON_NEW("sort", "{", "n", BCON_INT32(-1), "}", "limit", BCON_INT64(3));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, filter, opts, NULL);
    const bson_t *doc;
    int expect[] = {18, 16, 14}, k = 0;
    while (mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it;
        CHECK(bson_iter_init(&it, doc) && bson_iter_next(&it));
        CHECK_STR_EQ(bson_iter_key(&it), "_id");
        CHECK(BSON_ITER_HOLDS_OID(&it));
        CHECK(bson_iter_init_find(&it, doc, "n"));
        CHECK(k < 3);
        CHECK_INT_EQ(bson_iter_int32(&it), expect[k]);
        k++;
    }
    CHECK(!mongoc_cursor_error(cur, &err));
    CHECK_INT_EQ(k, 3);
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    /* update many + count */
    bson_t *upd = BCON_NEW("$inc", "{", "n", BCON_INT32(100), "}");
    bson_t reply;
    CHECK(mongoc_collection_update_many(c, filter, upd, NULL, &reply, &err));
    bson_iter_t it;
    CHECK(bson_iter_init_find(&it, &reply, "modifiedCount"));
    CHECK_INT_EQ(bson_iter_as_int64(&it), 10);
    bson_destroy(&reply);
    bson_t *big = BCON_NEW("n", "{", "$gte", BCON_INT32(100), "}");
    CHECK_INT_EQ(mongoc_collection_count_documents(c, big, NULL, NULL, NULL, &err), 10);
    /* upsert */
    bson_t *uq = BCON_NEW("name", "new");
    bson_t *us = BCON_NEW("$set", "{", "v", BCON_INT32(1), "}");
    bson_t *uo = BCON_NEW("upsert", BCON_BOOL(true));
    CHECK(mongoc_collection_update_one(c, uq, us, uo, &reply, &err));
    CHECK(bson_iter_init_find(&it, &reply, "upsertedCount"));
    CHECK_INT_EQ(bson_iter_as_int64(&it), 1);
    bson_destroy(&reply);
    /* delete */
    CHECK(mongoc_collection_delete_many(c, big, NULL, &reply, &err));
    CHECK(bson_iter_init_find(&it, &reply, "deletedCount"));
    CHECK_INT_EQ(bson_iter_as_int64(&it), 10);
    bson_destroy(&reply);
    bson_t empty = BSON_INITIALIZER;
    CHECK_INT_EQ(mongoc_collection_count_documents(c, &empty, NULL, NULL, NULL, &err), 11);
    bson_destroy(filter);
    bson_destroy(upd);
    bson_destroy(big);
    bson_destroy(uq);
    bson_destroy(us);
    bson_destroy(uo);
    mongoc_collection_destroy(c);
    mongoc_client_pool_push(pool, cl);
}

TEST(find_and_modify_and_aggregate)
{
    mongoc_client_t *cl = mongoc_client_pool_pop(pool);
    mongoc_collection_t *c = coll_get(cl, "fam");
    bson_error_t err;
    for (int i = 0; i < 6; i++) {
        bson_t *d = BCON_NEW("_id", BCON_INT32(i), "g", BCON_INT32(i % 3), "v", BCON_INT32(i));
        CHECK(mongoc_collection_insert_one(c, d, NULL, NULL, &err));
        bson_destroy(d);
    }
    bson_t *q = BCON_NEW("_id", BCON_INT32(4));
    bson_t *u = BCON_NEW("$set", "{", "v", BCON_INT32(40), "}");
    bson_t reply;
    bson_iter_t it;
    CHECK(mongoc_collection_find_and_modify(c, q, NULL, u, NULL, false, false, true, &reply, &err));
    CHECK(bson_iter_init(&it, &reply) && bson_iter_find_descendant(&it, "value.v", &it));
    CHECK_INT_EQ(bson_iter_int32(&it), 40);
    CHECK(bson_iter_init(&it, &reply) &&
          bson_iter_find_descendant(&it, "lastErrorObject.updatedExisting", &it));
    CHECK(bson_iter_bool(&it));
    bson_destroy(&reply);
    /* $group by g, sum v: g=1 -> 1 + 40 = 41 */
    bson_t *pipe = BCON_NEW("pipeline", "[", "{", "$group", "{", "_id", BCON_UTF8("$g"), "s", "{",
                            "$sum", BCON_UTF8("$v"), "}", "}", "}", "{", "$sort", "{", "_id",
                            BCON_INT32(1), "}", "}", "]");
    mongoc_cursor_t *cur = mongoc_collection_aggregate(c, MONGOC_QUERY_NONE, pipe, NULL, NULL);
    const bson_t *doc;
    int32_t sums[3] = {0};
    int k = 0;
    while (mongoc_cursor_next(cur, &doc)) {
        CHECK(bson_iter_init_find(&it, doc, "s"));
        CHECK(k < 3);
        sums[k++] = (int32_t)bson_iter_as_int64(&it);
    }
    CHECK_MSG(!mongoc_cursor_error(cur, &err), "%s", err.message);
    CHECK_INT_EQ(k, 3);
    CHECK_INT_EQ(sums[0], 0 + 3);
    CHECK_INT_EQ(sums[1], 1 + 40);
    CHECK_INT_EQ(sums[2], 2 + 5);
    mongoc_cursor_destroy(cur);
    bson_destroy(pipe);
    bson_destroy(q);
    bson_destroy(u);
    mongoc_collection_destroy(c);
    mongoc_client_pool_push(pool, cl);
}

TEST(cursor_getmore_and_unknown_cursor)
{
    mongoc_client_t *cl = mongoc_client_pool_pop(pool);
    mongoc_collection_t *c = coll_get(cl, "cur");
    bson_error_t err;
    bson_t *docs[250];
    for (int i = 0; i < 250; i++)
        docs[i] = BCON_NEW("_id", BCON_INT32(i));
    CHECK(mongoc_collection_insert_many(c, (const bson_t **)docs, 250, NULL, NULL, &err));
    for (int i = 0; i < 250; i++)
        bson_destroy(docs[i]);
    bson_t filter = BSON_INITIALIZER;
    bson_t *opts = BCON_NEW("batchSize", BCON_INT32(7), "sort", "{", "_id", BCON_INT32(1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, &filter, opts, NULL);
    const bson_t *doc;
    int n = 0;
    bool in_order = true;
    while (mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it;
        if (!bson_iter_init_find(&it, doc, "_id") || bson_iter_int32(&it) != n)
            in_order = false;
        n++;
    }
    CHECK_MSG(!mongoc_cursor_error(cur, &err), "%s", err.message);
    CHECK_INT_EQ(n, 250);
    CHECK(in_order);
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);

    /* getMore on a cursor id that does not exist */
    bson_t *gm = BCON_NEW("getMore", BCON_INT64(123456789), "collection", BCON_UTF8("cur"));
    bson_t reply;
    CHECK(!run_cmd(cl, gm, &reply, &err));
    CHECK_INT_EQ(err.code, 43);
    bson_destroy(&reply);
    bson_destroy(gm);

    /* A cursor abandoned half-way is killed by the driver (killCursors) */
    opts = BCON_NEW("batchSize", BCON_INT32(5));
    cur = mongoc_collection_find_with_opts(c, &filter, opts, NULL);
    CHECK(mongoc_cursor_next(cur, &doc));
    int64_t id = mongoc_cursor_get_id(cur);
    CHECK(id != 0);
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    gm = BCON_NEW("getMore", BCON_INT64(id), "collection", BCON_UTF8("cur"));
    CHECK(!run_cmd(cl, gm, &reply, &err));
    CHECK_INT_EQ(err.code, 43);
    bson_destroy(&reply);
    bson_destroy(gm);
    mongoc_collection_destroy(c);
    mongoc_client_pool_push(pool, cl);
}

TEST(duplicate_key_error_shape)
{
    mongoc_client_t *cl = mongoc_client_pool_pop(pool);
    mongoc_collection_t *c = coll_get(cl, "dup");
    bson_error_t err;
    bson_t *cmd = BCON_NEW("createIndexes", BCON_UTF8("dup"), "indexes", "[", "{", "key", "{",
                           "name", BCON_INT32(1), "}", "name", BCON_UTF8("name_1"), "unique",
                           BCON_BOOL(true), "}", "]");
    bson_t reply;
    CHECK_MSG(run_cmd(cl, cmd, &reply, &err), "%s", err.message);
    bson_destroy(&reply);
    bson_t *d = BCON_NEW("name", "x");
    CHECK(mongoc_collection_insert_one(c, d, NULL, NULL, &err));
    bson_t *d2 = BCON_NEW("name", "x", "other", BCON_INT32(1));
    CHECK(!mongoc_collection_insert_one(c, d2, NULL, &reply, &err));
    CHECK_INT_EQ(err.code, 11000);
    char want[256];
    snprintf(want, sizeof want,
             "E11000 duplicate key error collection: %s.dup index: name_1 dup key: { name: \"x\" }",
             env.db_name);
    CHECK_STR_CONTAINS(err.message, want);
    bson_iter_t it;
    CHECK(bson_iter_init(&it, &reply) &&
          bson_iter_find_descendant(&it, "writeErrors.0.keyValue.name", &it));
    CHECK_STR_EQ(bson_iter_utf8(&it, NULL), "x");
    bson_destroy(&reply);

    /* Unordered batch: docs 1 and 3 collide, the others go in. */
    bson_t *b[5] = {BCON_NEW("name", "a"), BCON_NEW("name", "x"), BCON_NEW("name", "b"),
                    BCON_NEW("name", "a"), BCON_NEW("name", "c")};
    bson_t *uo = BCON_NEW("ordered", BCON_BOOL(false));
    CHECK(!mongoc_collection_insert_many(c, (const bson_t **)b, 5, uo, &reply, &err));
    CHECK(bson_iter_init_find(&it, &reply, "insertedCount"));
    CHECK_INT_EQ(bson_iter_as_int64(&it), 3);
    bson_iter_t e0, e1;
    CHECK(bson_iter_init(&e0, &reply) &&
          bson_iter_find_descendant(&e0, "writeErrors.0.index", &e0));
    CHECK(bson_iter_init(&e1, &reply) &&
          bson_iter_find_descendant(&e1, "writeErrors.1.index", &e1));
    CHECK_INT_EQ(bson_iter_as_int64(&e0), 1);
    CHECK_INT_EQ(bson_iter_as_int64(&e1), 3);
    CHECK(bson_iter_init(&e0, &reply) && bson_iter_find_descendant(&e0, "writeErrors.1.code", &e0));
    CHECK_INT_EQ(bson_iter_as_int64(&e0), 11000);
    bson_destroy(&reply);
    /* Ordered: stops at the first error. */
    bson_t *b2[3] = {BCON_NEW("name", "p"), BCON_NEW("name", "p"), BCON_NEW("name", "q")};
    CHECK(!mongoc_collection_insert_many(c, (const bson_t **)b2, 3, NULL, &reply, &err));
    CHECK(bson_iter_init_find(&it, &reply, "insertedCount"));
    CHECK_INT_EQ(bson_iter_as_int64(&it), 1);
    bson_destroy(&reply);
    for (int i = 0; i < 5; i++)
        bson_destroy(b[i]);
    for (int i = 0; i < 3; i++)
        bson_destroy(b2[i]);
    bson_destroy(uo);
    bson_destroy(d);
    bson_destroy(d2);
    bson_destroy(cmd);
    mongoc_collection_destroy(c);
    mongoc_client_pool_push(pool, cl);
}

/* A document `depth` levels deep (the document itself is level 1): {a: {a: ... {x: 1}}}. */
static bson_t *nested_doc(int depth)
{
    bson_t *d = BCON_NEW("x", BCON_INT32(1));
    for (int i = 1; i < depth; i++) {
        bson_t *w = bson_new();
        BSON_APPEND_DOCUMENT(w, "a", d);
        bson_destroy(d);
        d = w;
    }
    return d;
}

TEST(documents_deeper_than_180_levels_are_refused)
{
    mongoc_client_t *cl = mongoc_client_pool_pop(pool);
    mongoc_collection_t *c = coll_get(cl, "deep");
    bson_error_t err;
    bson_t reply;
    /* 180 levels is the limit and fits (the document is level 1). */
    bson_t *ok = nested_doc(180), *deep = nested_doc(181);
    bson_t *ok_id = bson_new(), *deep_id = bson_new();
    BSON_APPEND_INT32(ok_id, "_id", 1);
    bson_concat(ok_id, ok);
    BSON_APPEND_INT32(deep_id, "_id", 2);
    bson_concat(deep_id, deep);
    CHECK_MSG(mongoc_collection_insert_one(c, ok_id, NULL, NULL, &err), "%s", err.message);
    CHECK(!mongoc_collection_insert_one(c, deep_id, NULL, &reply, &err));
    CHECK_INT_EQ(err.code, 15);
    CHECK_STR_CONTAINS(err.message,
                       "cannot insert document because it exceeds 180 levels of nesting");
    bson_destroy(&reply);

    /* An update whose result is one level too deep is refused and changes nothing. */
    bson_t *small = BCON_NEW("_id", BCON_INT32(3), "v", BCON_INT32(0));
    CHECK(mongoc_collection_insert_one(c, small, NULL, NULL, &err));
    bson_t *sel = BCON_NEW("_id", BCON_INT32(3));
    bson_t *sub180 = nested_doc(180), *sub179 = nested_doc(179);
    bson_t *upd = bson_new(), set;
    BSON_APPEND_DOCUMENT_BEGIN(upd, "$set", &set);
    BSON_APPEND_DOCUMENT(&set, "v", sub180); /* v's value becomes level 2: 181 in all */
    bson_append_document_end(upd, &set);
    CHECK(!mongoc_collection_update_one(c, sel, upd, NULL, &reply, &err));
    CHECK_INT_EQ(err.code, 15);
    CHECK_STR_CONTAINS(err.message, "Document exceeds maximum nesting depth of 180");
    bson_destroy(&reply);
    /* Replacement with a too-deep document: same refusal. */
    CHECK(!mongoc_collection_replace_one(c, sel, deep, NULL, &reply, &err));
    CHECK_INT_EQ(err.code, 15);
    bson_destroy(&reply);
    bson_t *cnt = BCON_NEW("_id", BCON_INT32(3), "v", BCON_INT32(0));
    CHECK_INT_EQ(mongoc_collection_count_documents(c, cnt, NULL, NULL, NULL, &err), 1);
    /* One level less fits. */
    bson_t *upd2 = bson_new();
    BSON_APPEND_DOCUMENT_BEGIN(upd2, "$set", &set);
    BSON_APPEND_DOCUMENT(&set, "v", sub179);
    bson_append_document_end(upd2, &set);
    CHECK_MSG(mongoc_collection_update_one(c, sel, upd2, NULL, &reply, &err), "%s", err.message);
    bson_destroy(&reply);
    CHECK_INT_EQ(mongoc_collection_count_documents(c, cnt, NULL, NULL, NULL, &err), 0);

    bson_destroy(upd2);
    bson_destroy(cnt);
    bson_destroy(upd);
    bson_destroy(sub179);
    bson_destroy(sub180);
    bson_destroy(sel);
    bson_destroy(small);
    bson_destroy(ok_id);
    bson_destroy(deep_id);
    bson_destroy(ok);
    bson_destroy(deep);
    mongoc_collection_destroy(c);
    mongoc_client_pool_push(pool, cl);
}

/* Number of documents matching `filter` when the scan is forced through index `hint`. */
static int64_t count_hinted(mongoc_collection_t *c, const char *filter_json, const char *hint)
{
    bson_error_t err;
    bson_t *f = bson_new_from_json((const uint8_t *)filter_json, -1, &err);
    bson_t *o = BCON_NEW("hint", BCON_UTF8(hint));
    int64_t n = f ? mongoc_collection_count_documents(c, f, o, NULL, NULL, &err) : -1;
    bson_destroy(f);
    bson_destroy(o);
    return n;
}

/* Updates re-key only the indexes whose fields they touch: every index must still find each
 * document by its new values and never by its old ones. */
TEST(updates_keep_every_index_exact)
{
    mongoc_client_t *cl = mongoc_client_pool_pop(pool);
    mongoc_collection_t *c = coll_get(cl, "upd_idx");
    bson_error_t err;
    bson_t reply;
    bson_t *cmd =
        BCON_NEW("createIndexes", BCON_UTF8("upd_idx"), "indexes", "[", "{", "key", "{", "a",
                 BCON_INT32(1), "}", "name", BCON_UTF8("a_1"), "}", "{", "key", "{", "b.c",
                 BCON_INT32(1), "}", "name", BCON_UTF8("b.c_1"), "}", "{", "key", "{", "z",
                 BCON_INT32(1), "k", BCON_INT32(-1), "}", "name", BCON_UTF8("z_1_k_-1"), "}", "]");
    CHECK_MSG(run_cmd(cl, cmd, &reply, &err), "%s", err.message);
    bson_destroy(&reply);
    for (int i = 0; i < 50; i++) {
        bson_t *d = BCON_NEW("_id", BCON_INT32(i), "a", BCON_INT32(i), "b", "{", "c",
                             BCON_INT32(i % 5), "}", "k", BCON_INT32(0), "other", BCON_INT32(0));
        CHECK(mongoc_collection_insert_one(c, d, NULL, NULL, &err));
        bson_destroy(d);
    }
    const char *upds[] = {
        "{\"$inc\": {\"other\": 1}}",                       /* no indexed field */
        "{\"$set\": {\"b.c\": 7}}",                         /* dotted index path */
        "{\"$set\": {\"b\": {\"c\": 8}}}",                  /* parent of the path */
        "{\"$rename\": {\"a\": \"z\"}}",                    /* from a_1 into z_1_k_-1 */
        "{\"$inc\": {\"k\": 1}, \"$set\": {\"other\": 2}}", /* second field of z_1_k_-1 */
    };
    for (size_t u = 0; u < sizeof upds / sizeof upds[0]; u++) {
        bson_t *sel = BCON_NEW("_id", "{", "$lt", BCON_INT32(10), "}");
        bson_t *up = bson_new_from_json((const uint8_t *)upds[u], -1, &err);
        CHECK_MSG(mongoc_collection_update_many(c, sel, up, NULL, NULL, &err), "%s", err.message);
        bson_destroy(sel);
        bson_destroy(up);
    }
    CHECK_INT_EQ(count_hinted(c, "{\"a\": {\"$lt\": 10}}", "a_1"), 0);
    CHECK_INT_EQ(count_hinted(c, "{\"a\": {\"$gte\": 10}}", "a_1"), 40);
    CHECK_INT_EQ(count_hinted(c, "{\"b.c\": 8}", "b.c_1"), 10);
    CHECK_INT_EQ(count_hinted(c, "{\"b.c\": 7}", "b.c_1"), 0);
    CHECK_INT_EQ(count_hinted(c, "{\"b.c\": {\"$lt\": 5}}", "b.c_1"), 40);
    CHECK_INT_EQ(count_hinted(c, "{\"z\": {\"$gte\": 0}, \"k\": 1}", "z_1_k_-1"), 10);
    CHECK_INT_EQ(count_hinted(c, "{\"k\": 0}", "z_1_k_-1"), 40);
    bson_destroy(cmd);
    mongoc_collection_destroy(c);
    mongoc_client_pool_push(pool, cl);
}

TEST(indexes_avoid_scans)
{
    enum { N = 100000, BATCH = 1000 };
    mongoc_client_t *cl = mongoc_client_pool_pop(pool);
    mongoc_collection_t *c = coll_get(cl, "big");
    bson_error_t err;
    bson_t *docs[BATCH];
    for (int b = 0; b < N / BATCH; b++) {
        for (int i = 0; i < BATCH; i++) {
            int v = b * BATCH + i;
            docs[i] = BCON_NEW("k", BCON_INT32(v), "s", BCON_INT32(v % 1000));
        }
        bool ok = mongoc_collection_insert_many(c, (const bson_t **)docs, BATCH, NULL, NULL, &err);
        for (int i = 0; i < BATCH; i++)
            bson_destroy(docs[i]);
        CHECK_MSG(ok, "%s", err.message);
    }
    bson_t *cmd = BCON_NEW("createIndexes", BCON_UTF8("big"), "indexes", "[", "{", "key", "{", "k",
                           BCON_INT32(1), "}", "name", BCON_UTF8("k_1"), "}", "]");
    bson_t reply;
    CHECK_MSG(run_cmd(cl, cmd, &reply, &err), "%s", err.message);
    bson_destroy(&reply);
    bson_destroy(cmd);

    /* point lookup: examines one document */
    int64_t before = server_counter(cl, "scannedObjects");
    bson_t *f = BCON_NEW("k", BCON_INT32(76543));
    CHECK_INT_EQ(mongoc_collection_count_documents(c, f, NULL, NULL, NULL, &err), 1);
    int64_t after = server_counter(cl, "scannedObjects");
    CHECK(before >= 0);
    CHECK_MSG(after - before <= 1, "point lookup examined %lld documents",
              (long long)(after - before));
    bson_destroy(f);

    /* range: examines only the range */
    before = after;
    f = BCON_NEW("k", "{", "$gte", BCON_INT32(500), "$lt", BCON_INT32(600), "}");
    CHECK_INT_EQ(mongoc_collection_count_documents(c, f, NULL, NULL, NULL, &err), 100);
    after = server_counter(cl, "scannedObjects");
    CHECK_MSG(after - before <= 100, "range examined %lld", (long long)(after - before));
    bson_destroy(f);

    /* sort on the index with a limit: stops after the limit */
    before = after;
    bson_t empty = BSON_INITIALIZER;
    bson_t *o = BCON_NEW("sort", "{", "k", BCON_INT32(-1), "}", "limit", BCON_INT64(5));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, &empty, o, NULL);
    const bson_t *doc;
    int n = 0;
    while (mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it;
        CHECK(bson_iter_init_find(&it, doc, "k"));
        CHECK_INT_EQ(bson_iter_int32(&it), N - 1 - n);
        n++;
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(o);
    CHECK_INT_EQ(n, 5);
    after = server_counter(cl, "scannedObjects");
    CHECK_MSG(after - before <= 5, "sorted limit examined %lld", (long long)(after - before));

    /* hint naming a missing index is an error, an existing one works */
    o = BCON_NEW("hint", BCON_UTF8("nope_1"));
    cur = mongoc_collection_find_with_opts(c, &empty, o, NULL);
    CHECK(!mongoc_cursor_next(cur, &doc));
    CHECK(mongoc_cursor_error(cur, &err));
    CHECK_STR_CONTAINS(err.message, "hint provided does not correspond to an existing index");
    mongoc_cursor_destroy(cur);
    bson_destroy(o);
    o = BCON_NEW("hint", "{", "k", BCON_INT32(1), "}", "limit", BCON_INT64(1));
    cur = mongoc_collection_find_with_opts(c, &empty, o, NULL);
    CHECK(mongoc_cursor_next(cur, &doc));
    mongoc_cursor_destroy(cur);
    bson_destroy(o);
    mongoc_collection_destroy(c);
    mongoc_client_pool_push(pool, cl);
}

/* ---- concurrency ---- */

enum { NTHREADS = 8, PER_THREAD = 300 };

static void *worker(void *arg)
{
    intptr_t t = (intptr_t)arg;
    mongoc_client_t *cl = mongoc_client_pool_pop(pool);
    mongoc_collection_t *c = coll_get(cl, "conc");
    bson_error_t err;
    intptr_t failures = 0;
    for (int i = 0; i < PER_THREAD; i++) {
        bson_t *d = BCON_NEW("t", BCON_INT32((int32_t)t), "i", BCON_INT32(i), "v", BCON_INT32(0));
        if (!mongoc_collection_insert_one(c, d, NULL, NULL, &err))
            failures++;
        bson_destroy(d);
        if (i % 10 == 0) {
            bson_t *q = BCON_NEW("t", BCON_INT32((int32_t)t), "i", BCON_INT32(i));
            bson_t *u = BCON_NEW("$inc", "{", "v", BCON_INT32(1), "}");
            if (!mongoc_collection_update_one(c, q, u, NULL, NULL, &err))
                failures++;
            if (mongoc_collection_count_documents(c, q, NULL, NULL, NULL, &err) != 1)
                failures++;
            bson_destroy(q);
            bson_destroy(u);
        }
    }
    mongoc_collection_destroy(c);
    mongoc_client_pool_push(pool, cl);
    return (void *)failures;
}

TEST(pool_threads_concurrent_crud)
{
    pthread_t th[NTHREADS];
    for (intptr_t i = 0; i < NTHREADS; i++)
        CHECK(pthread_create(&th[i], NULL, worker, (void *)i) == 0);
    intptr_t fails = 0;
    for (int i = 0; i < NTHREADS; i++) {
        void *r;
        pthread_join(th[i], &r);
        fails += (intptr_t)r;
    }
    CHECK_INT_EQ(fails, 0);
    mongoc_client_t *cl = mongoc_client_pool_pop(pool);
    mongoc_collection_t *c = coll_get(cl, "conc");
    bson_t empty = BSON_INITIALIZER;
    bson_error_t err;
    CHECK_INT_EQ(mongoc_collection_count_documents(c, &empty, NULL, NULL, NULL, &err),
                 NTHREADS * PER_THREAD);
    bson_t *q = BCON_NEW("v", BCON_INT32(1));
    CHECK_INT_EQ(mongoc_collection_count_documents(c, q, NULL, NULL, NULL, &err),
                 NTHREADS * PER_THREAD / 10);
    bson_destroy(q);
    mongoc_collection_destroy(c);
    mongoc_client_pool_push(pool, cl);
}

/* ---- malformed messages over a raw socket ---- */

static int raw_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)env.devdb_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* One recv: bytes read, or 0 when the server closed the connection (EOF or reset); -1 when
 * nothing arrived before the 5 s receive timeout. */
static ssize_t read_some(int fd, uint8_t *buf, size_t n)
{
    ssize_t r = recv(fd, buf, n, 0);
    if (r < 0 && errno == ECONNRESET)
        return 0;
    return r;
}

static void put32(uint8_t *p, int32_t v)
{
    memcpy(p, &v, 4); /* little-endian host (x86-64/arm64) */
}

TEST(malformed_messages_do_not_kill_server)
{
    if (env.devdb_port == 0) /* MINICRM_TEST_MONGO_URI: no devdb of ours to poke */
        TEST_SKIP("raw wire-protocol checks need the test's own devdb");
    uint8_t buf[256];
    /* 1: absurd length -> connection closed */
    int fd = raw_connect();
    CHECK(fd >= 0);
    put32(buf, 0x7fffffff);
    put32(buf + 4, 1);
    put32(buf + 8, 0);
    put32(buf + 12, 2013);
    CHECK(send(fd, buf, 16, MSG_NOSIGNAL) == 16);
    CHECK_INT_EQ(read_some(fd, buf, sizeof buf), 0);
    close(fd);

    /* 2: truncated header then hang-up */
    fd = raw_connect();
    CHECK(fd >= 0);
    CHECK(send(fd, buf, 7, MSG_NOSIGNAL) == 7);
    close(fd);

    /* 3: well-framed OP_MSG whose body is garbage -> error reply, connection usable */
    fd = raw_connect();
    CHECK(fd >= 0);
    memset(buf, 0xAB, sizeof buf);
    put32(buf, 40);
    put32(buf + 4, 7);
    put32(buf + 8, 0);
    put32(buf + 12, 2013);
    put32(buf + 16, 0);  /* flags */
    buf[20] = 0;         /* kind 0 */
    put32(buf + 21, 19); /* claims 19 bytes, content garbage */
    CHECK(send(fd, buf, 40, MSG_NOSIGNAL) == 40);
    ssize_t r = read_some(fd, buf, sizeof buf);
    CHECK_MSG(r >= 16, "expected an error reply, got %zd", r);
    int32_t opcode;
    memcpy(&opcode, buf + 12, 4);
    CHECK_INT_EQ(opcode, 2013);
    close(fd);

    /* 4: unsupported opcode (legacy OP_INSERT) -> closed */
    fd = raw_connect();
    CHECK(fd >= 0);
    put32(buf, 16 + 8);
    put32(buf + 12, 2002);
    CHECK(send(fd, buf, 24, MSG_NOSIGNAL) == 24);
    CHECK_INT_EQ(read_some(fd, buf, sizeof buf), 0);
    close(fd);

    /* 5: random bytes */
    fd = raw_connect();
    CHECK(fd >= 0);
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 37 + 11);
    send(fd, buf, sizeof buf, MSG_NOSIGNAL);
    read_some(fd, buf, sizeof buf);
    close(fd);

    /* The server is still alive and serving. */
    mongoc_client_t *cl = mongoc_client_pool_pop(pool);
    bson_t cmd = BSON_INITIALIZER, reply;
    bson_error_t err;
    BSON_APPEND_INT32(&cmd, "ping", 1);
    CHECK_MSG(mongoc_client_command_simple(cl, "admin", &cmd, NULL, &reply, &err), "%s",
              err.message);
    bson_destroy(&reply);
    bson_destroy(&cmd);
    mongoc_client_pool_push(pool, cl);
}

/* ---- hand-built protocol messages ---- */

static uint32_t crc32c(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return c ^ 0xffffffffu;
}

/* Builds an OP_MSG: body, optional kind-1 sequence "documents", flags (checksum appended if
 * flag bit 0). Returns its length in buf. */
static size_t build_msg(uint8_t *buf, int32_t reqid, uint32_t flags, const bson_t *body,
                        const bson_t **seq, int nseq, bool corrupt_crc)
{
    size_t off = 16;
    put32(buf + off, (int32_t)flags);
    off += 4;
    buf[off++] = 0;
    memcpy(buf + off, bson_get_data(body), body->len);
    off += body->len;
    if (nseq > 0) {
        buf[off++] = 1;
        size_t size_at = off;
        off += 4;
        memcpy(buf + off, "documents", 10);
        off += 10;
        for (int i = 0; i < nseq; i++) {
            memcpy(buf + off, bson_get_data(seq[i]), seq[i]->len);
            off += seq[i]->len;
        }
        put32(buf + size_at, (int32_t)(off - size_at));
    }
    size_t total = off + ((flags & 1) ? 4 : 0);
    put32(buf, (int32_t)total);
    put32(buf + 4, reqid);
    put32(buf + 8, 0);
    put32(buf + 12, 2013);
    if (flags & 1) {
        uint32_t crc = crc32c(buf, off) ^ (corrupt_crc ? 1u : 0u);
        memcpy(buf + off, &crc, 4);
    }
    return total;
}

/* Reads one reply; fills the header fields and a static view of its (first) document. */
static int read_reply(int fd, uint8_t *buf, size_t cap, int32_t *response_to, int32_t *opcode,
                      bson_t *doc)
{
    size_t got = 0;
    while (got < 16) {
        ssize_t r = recv(fd, buf + got, 16 - got, 0);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    int32_t len;
    memcpy(&len, buf, 4);
    if (len < 16 || (size_t)len > cap)
        return -1;
    while (got < (size_t)len) {
        ssize_t r = recv(fd, buf + got, (size_t)len - got, 0);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    memcpy(response_to, buf + 8, 4);
    memcpy(opcode, buf + 12, 4);
    size_t at = *opcode == 1 ? 16 + 20 : 16 + 5;
    int32_t dl;
    memcpy(&dl, buf + at, 4);
    return bson_init_static(doc, buf + at, (size_t)dl) ? 0 : -1;
}

TEST(op_msg_sequences_checksum_more_to_come_and_op_query)
{
    if (env.devdb_port == 0) /* MINICRM_TEST_MONGO_URI: no devdb of ours to poke */
        TEST_SKIP("raw wire-protocol checks need the test's own devdb");
    static uint8_t buf[1 << 16], rb[1 << 16];
    int fd = raw_connect();
    CHECK(fd >= 0);
    bson_t *body = BCON_NEW("insert", BCON_UTF8("raw"), "$db", BCON_UTF8(env.db_name));
    bson_t *d1 = BCON_NEW("_id", BCON_INT32(1)), *d2 = BCON_NEW("_id", BCON_INT32(2));
    const bson_t *seq[] = {d1, d2};
    int32_t rt, op;
    bson_t reply;
    bson_iter_t it;

    /* kind-1 sequence with a valid checksum */
    size_t n = build_msg(buf, 11, 1, body, seq, 2, false);
    CHECK(send(fd, buf, n, MSG_NOSIGNAL) == (ssize_t)n);
    CHECK(read_reply(fd, rb, sizeof rb, &rt, &op, &reply) == 0);
    CHECK_INT_EQ(rt, 11);
    CHECK_INT_EQ(op, 2013);
    CHECK(bson_iter_init_find(&it, &reply, "n"));
    CHECK_INT_EQ(bson_iter_as_int64(&it), 2);

    /* a corrupted checksum is refused */
    n = build_msg(buf, 12, 1, body, seq, 2, true);
    CHECK(send(fd, buf, n, MSG_NOSIGNAL) == (ssize_t)n);
    CHECK(read_reply(fd, rb, sizeof rb, &rt, &op, &reply) == 0);
    CHECK_INT_EQ(rt, 12);
    CHECK(bson_iter_init_find(&it, &reply, "ok"));
    CHECK(bson_iter_as_double(&it) == 0.0);

    /* moreToCome: executed, no reply; the next reply answers the next request */
    bson_t *d3 = BCON_NEW("_id", BCON_INT32(3));
    const bson_t *seq3[] = {d3};
    n = build_msg(buf, 13, 2, body, seq3, 1, false);
    CHECK(send(fd, buf, n, MSG_NOSIGNAL) == (ssize_t)n);
    bson_t *cnt = BCON_NEW("count", BCON_UTF8("raw"), "$db", BCON_UTF8(env.db_name));
    n = build_msg(buf, 14, 0, cnt, NULL, 0, false);
    CHECK(send(fd, buf, n, MSG_NOSIGNAL) == (ssize_t)n);
    CHECK(read_reply(fd, rb, sizeof rb, &rt, &op, &reply) == 0);
    CHECK_INT_EQ(rt, 14);
    CHECK(bson_iter_init_find(&it, &reply, "n"));
    CHECK_INT_EQ(bson_iter_as_int64(&it), 3);

    /* OP_QUERY isMaster on admin.$cmd -> OP_REPLY */
    bson_t *im = BCON_NEW("isMaster", BCON_INT32(1));
    size_t off = 16;
    put32(buf + off, 0);
    off += 4;
    memcpy(buf + off, "admin.$cmd", 11);
    off += 11;
    put32(buf + off, 0);
    put32(buf + off + 4, -1);
    off += 8;
    memcpy(buf + off, bson_get_data(im), im->len);
    off += im->len;
    put32(buf, (int32_t)off);
    put32(buf + 4, 15);
    put32(buf + 8, 0);
    put32(buf + 12, 2004);
    CHECK(send(fd, buf, off, MSG_NOSIGNAL) == (ssize_t)off);
    CHECK(read_reply(fd, rb, sizeof rb, &rt, &op, &reply) == 0);
    CHECK_INT_EQ(rt, 15);
    CHECK_INT_EQ(op, 1);
    CHECK(bson_iter_init_find(&it, &reply, "ismaster") && bson_iter_as_bool(&it));
    close(fd);
    bson_destroy(body);
    bson_destroy(d1);
    bson_destroy(d2);
    bson_destroy(d3);
    bson_destroy(cnt);
    bson_destroy(im);
}

TEST(client_closing_mid_reply_does_not_kill_server)
{
    if (env.devdb_port == 0) /* MINICRM_TEST_MONGO_URI: no devdb of ours to poke */
        TEST_SKIP("raw wire-protocol checks need the test's own devdb");
    static uint8_t buf[4096];
    /* Ask for a multi-megabyte batch and hang up at once, many times. */
    for (int i = 0; i < 20; i++) {
        int fd = raw_connect();
        CHECK(fd >= 0);
        bson_t *find = BCON_NEW("find", BCON_UTF8("big"), "batchSize", BCON_INT32(100000), "$db",
                                BCON_UTF8(env.db_name));
        size_t n = build_msg(buf, 1, 0, find, NULL, 0, false);
        bson_destroy(find);
        CHECK(send(fd, buf, n, MSG_NOSIGNAL) == (ssize_t)n);
        if (i % 2 == 0) /* half the time: wait until the reply is being written */
            CHECK(recv(fd, buf, 16, MSG_WAITALL) == 16);
        struct linger lg = {.l_onoff = 1, .l_linger = 0}; /* close with RST */
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(fd);
    }
    mongoc_client_t *cl = mongoc_client_pool_pop(pool);
    bson_t cmd = BSON_INITIALIZER, reply;
    bson_error_t err;
    BSON_APPEND_INT32(&cmd, "ping", 1);
    CHECK_MSG(mongoc_client_command_simple(cl, "admin", &cmd, NULL, &reply, &err), "%s",
              err.message);
    bson_destroy(&reply);
    bson_destroy(&cmd);
    mongoc_client_pool_push(pool, cl);
}

/* A statement that fails to parse does not stop the statements before it: an ordered batch
 * applies 0..k-1 and reports k, an unordered one applies every other statement. Write batches
 * are prepared before the store lock is taken, so this pins the reporting order. */
static int64_t reply_int(const bson_t *reply, const char *path)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, reply) || !bson_iter_find_descendant(&it, path, &it))
        return -1;
    return bson_iter_as_int64(&it);
}

TEST(ordered_batches_stop_where_mongodb_does)
{
    mongoc_client_t *cl = mongoc_client_pool_pop(pool);
    mongoc_collection_t *c = coll_get(cl, "ordered_batches");
    bson_error_t err;
    bson_t reply;
    for (int ordered = 1; ordered >= 0; ordered--) {
        mongoc_collection_drop(c, NULL);
        /* insert: statement 2 has an array _id, which MongoDB refuses */
        bson_t *cmd = BCON_NEW("insert", BCON_UTF8("ordered_batches"), "ordered",
                               BCON_BOOL(ordered), "documents", "[", "{", "_id", BCON_INT32(1), "}",
                               "{", "_id", BCON_INT32(2), "}", "{", "_id", "[", BCON_INT32(1), "]",
                               "}", "{", "_id", BCON_INT32(4), "}", "]");
        CHECK_MSG(run_cmd(cl, cmd, &reply, &err), "%s", err.message);
        bson_destroy(cmd);
        CHECK_INT_EQ(reply_int(&reply, "n"), ordered ? 2 : 3);
        CHECK_INT_EQ(reply_int(&reply, "writeErrors.0.index"), 2);
        CHECK_INT_EQ(reply_int(&reply, "writeErrors.1.index"), -1);
        bson_destroy(&reply);
        CHECK_INT_EQ(
            mongoc_collection_count_documents(c, &(bson_t)BSON_INITIALIZER, NULL, NULL, NULL, &err),
            ordered ? 2 : 3);

        /* update: statement 1 is an empty $set (FailedToParse, 9) */
        cmd =
            BCON_NEW("update", BCON_UTF8("ordered_batches"), "ordered", BCON_BOOL(ordered),
                     "updates", "[", "{", "q", "{", "_id", BCON_INT32(1), "}", "u", "{", "$set",
                     "{", "a", BCON_INT32(1), "}", "}", "}", "{", "q", "{", "_id", BCON_INT32(2),
                     "}", "u", "{", "$set", "{", "}", "}", "}", "{", "q", "{", "_id", BCON_INT32(1),
                     "}", "u", "{", "$set", "{", "b", BCON_INT32(1), "}", "}", "}", "]");
        CHECK_MSG(run_cmd(cl, cmd, &reply, &err), "%s", err.message);
        bson_destroy(cmd);
        CHECK_INT_EQ(reply_int(&reply, "writeErrors.0.index"), 1);
        CHECK_INT_EQ(reply_int(&reply, "writeErrors.0.code"), 9);
        CHECK_INT_EQ(reply_int(&reply, "nModified"), ordered ? 1 : 2);
        bson_destroy(&reply);
        bson_t *f = BCON_NEW("_id", BCON_INT32(1), "a", BCON_INT32(1));
        CHECK_INT_EQ(mongoc_collection_count_documents(c, f, NULL, NULL, NULL, &err), 1);
        bson_destroy(f);
        f = BCON_NEW("_id", BCON_INT32(1), "b", BCON_INT32(1));
        CHECK_INT_EQ(mongoc_collection_count_documents(c, f, NULL, NULL, NULL, &err),
                     ordered ? 0 : 1);
        bson_destroy(f);
    }
    mongoc_collection_destroy(c);
    mongoc_client_pool_push(pool, cl);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        TEST_ENTRY(hello_reports_standalone_44),
        TEST_ENTRY(unknown_command_is_59),
        TEST_ENTRY(crud_roundtrip),
        TEST_ENTRY(find_and_modify_and_aggregate),
        TEST_ENTRY(cursor_getmore_and_unknown_cursor),
        TEST_ENTRY(duplicate_key_error_shape),
        TEST_ENTRY(ordered_batches_stop_where_mongodb_does),
        TEST_ENTRY(documents_deeper_than_180_levels_are_refused),
        TEST_ENTRY(updates_keep_every_index_exact),
        TEST_ENTRY(indexes_avoid_scans),
        TEST_ENTRY(pool_threads_concurrent_crud),
        TEST_ENTRY(malformed_messages_do_not_kill_server),
        TEST_ENTRY(op_msg_sequences_checksum_more_to_come_and_op_query),
        TEST_ENTRY(client_closing_mid_reply_does_not_kill_server),
    };
    if (testenv_start(&env, TESTENV_DEVDB) != 0)
        return 1;
    mongoc_init();
    mongoc_uri_t *uri = mongoc_uri_new(env.mongo_uri);
    pool = uri ? mongoc_client_pool_new(uri) : NULL;
    int rc = 1;
    if (pool) {
        mongoc_client_pool_max_size(pool, 16);
        rc = test_run_all(__FILE__, cases, sizeof cases / sizeof cases[0], argc, argv);
        mongoc_client_pool_destroy(pool);
    }
    mongoc_uri_destroy(uri);
    mongoc_cleanup();
    testenv_stop(&env);
    return rc;
}
