/*
 * test_devdb_partial: partial indexes (partialFilterExpression) in minicrm-devdb, through
 * libmongoc against a private devdb: which filters createIndexes accepts and refuses (codes and
 * MongoDB 4.4's messages), option conflicts, index membership across insert / update /
 * replace / findAndModify / delete and when built over existing documents, uniqueness among
 * matching documents only, the planner using a partial index only for queries that imply its
 * filter (proved with serverStatus scannedObjects) and giving correct results otherwise, hint
 * (4.4 obeys it), listIndexes output, and the index surviving a clean restart (snapshot) and a
 * kill -9 (journal replay).
 *
 * Membership is observed by hinting the partial index with an empty filter: MongoDB 4.4 (and
 * devdb) then answers from the index alone, so the count is the number of indexed documents.
 */
#include "test.h"
#include "testenv.h"

#include <mongoc/mongoc.h>
#include <signal.h>
#include <sys/stat.h>

static testenv env;
/* The server the helpers talk to: testenv's devdb (in memory), or the durability test's own
 * devdb with --dbpath. */
static char uri[600];
static pid_t dur_pid = -1; /* the durability test's devdb, stopped by main if a CHECK failed */

static mongoc_client_t *client(void)
{
    mongoc_client_t *cl = mongoc_client_new(uri);
    if (cl)
        mongoc_client_set_error_api(cl, MONGOC_ERROR_API_VERSION_2);
    return cl;
}

/* Runs a command given as JSON on the test database; true on ok: 1. reply always initialised
 * (may be NULL). */
static bool cmdj(mongoc_client_t *cl, const char *json, bson_t *reply, bson_error_t *err)
{
    bson_t *cmd = bson_new_from_json((const uint8_t *)json, -1, err);
    if (!cmd) {
        if (reply)
            bson_init(reply);
        return false;
    }
    bson_t tmp;
    bool ok = mongoc_client_command_simple(cl, env.db_name, cmd, NULL, reply ? reply : &tmp, err);
    if (!reply)
        bson_destroy(&tmp);
    bson_destroy(cmd);
    return ok;
}

/* createIndexes on `coll` with one index spec given as JSON. */
static bool create_index(mongoc_client_t *cl, const char *coll, const char *spec_json,
                         bson_t *reply, bson_error_t *err)
{
    char buf[2048];
    snprintf(buf, sizeof buf, "{\"createIndexes\": \"%s\", \"indexes\": [%s]}", coll, spec_json);
    return cmdj(cl, buf, reply, err);
}

static int64_t scanned_objects(mongoc_client_t *cl)
{
    bson_t cmd = BSON_INITIALIZER, reply;
    bson_error_t err;
    BSON_APPEND_INT32(&cmd, "serverStatus", 1);
    int64_t v = -1;
    if (mongoc_client_command_simple(cl, "admin", &cmd, NULL, &reply, &err)) {
        bson_iter_t it, sub;
        if (bson_iter_init(&it, &reply) &&
            bson_iter_find_descendant(&it, "metrics.queryExecutor.scannedObjects", &sub))
            v = bson_iter_as_int64(&sub);
    }
    bson_destroy(&cmd);
    bson_destroy(&reply);
    return v;
}

/* count_documents(filter_json) on coll, optionally hinted by index name; -1 on error. */
static int64_t count_json(mongoc_client_t *cl, const char *coll, const char *filter_json,
                          const char *hint)
{
    bson_error_t err;
    mongoc_collection_t *c = mongoc_client_get_collection(cl, env.db_name, coll);
    bson_t *f = bson_new_from_json((const uint8_t *)filter_json, -1, &err);
    bson_t *o = hint ? BCON_NEW("hint", BCON_UTF8(hint)) : NULL;
    int64_t n = f ? mongoc_collection_count_documents(c, f, o, NULL, NULL, &err) : -1;
    if (n < 0)
        fprintf(stderr, "count %s: %s\n", filter_json, err.message);
    bson_destroy(f);
    bson_destroy(o);
    mongoc_collection_destroy(c);
    return n;
}

/* Number of entries of a partial index (see the file comment). */
static int64_t index_entries(mongoc_client_t *cl, const char *coll, const char *name)
{
    return count_json(cl, coll, "{}", name);
}

/* The listIndexes entry named `name` copied into out (caller-initialised); false if absent. */
static bool index_spec(mongoc_client_t *cl, const char *coll, const char *name, bson_t *out)
{
    mongoc_collection_t *c = mongoc_client_get_collection(cl, env.db_name, coll);
    mongoc_cursor_t *cur = mongoc_collection_find_indexes_with_opts(c, NULL);
    const bson_t *d;
    bool found = false;
    while (!found && mongoc_cursor_next(cur, &d)) {
        bson_iter_t it;
        if (bson_iter_init_find(&it, d, "name") && BSON_ITER_HOLDS_UTF8(&it) &&
            strcmp(bson_iter_utf8(&it, NULL), name) == 0) {
            bson_copy_to_excluding_noinit(d, out, "", NULL);
            found = true;
        }
    }
    bson_error_t err;
    if (!found && mongoc_cursor_error(cur, &err))
        fprintf(stderr, "listIndexes %s: %s\n", coll, err.message);
    mongoc_cursor_destroy(cur);
    mongoc_collection_destroy(c);
    return found;
}

/* The spec's partialFilterExpression as canonical extended JSON (caller bson_free), or NULL. */
static char *spec_filter_json(const bson_t *spec)
{
    bson_iter_t it;
    uint32_t len;
    const uint8_t *data;
    if (!bson_iter_init_find(&it, spec, "partialFilterExpression") ||
        !BSON_ITER_HOLDS_DOCUMENT(&it))
        return NULL;
    bson_iter_document(&it, &len, &data);
    bson_t d;
    bson_init_static(&d, data, len);
    return bson_as_canonical_extended_json(&d, NULL);
}

static char *canonical(const char *json)
{
    bson_error_t err;
    bson_t *b = bson_new_from_json((const uint8_t *)json, -1, &err);
    char *s = b ? bson_as_canonical_extended_json(b, NULL) : NULL;
    bson_destroy(b);
    return s;
}

/* ---- creation --------------------------------------------------------------------------- */

TEST(create_accepts_mongodb_44_subset)
{
    mongoc_client_t *cl = client();
    bson_error_t err;
    const char *ok[] = {
        "{\"key\": {\"a\": 1}, \"name\": \"p1\", \"partialFilterExpression\": {\"status\": \"P\"}}",
        "{\"key\": {\"b\": 1}, \"name\": \"p2\", \"partialFilterExpression\": {\"status\": "
        "{\"$eq\": \"P\"}}}",
        "{\"key\": {\"c\": 1}, \"name\": \"p3\", \"partialFilterExpression\": {\"x\": "
        "{\"$exists\": true}}}",
        "{\"key\": {\"d\": 1}, \"name\": \"p4\", \"partialFilterExpression\": {\"x\": {\"$gt\": "
        "1, \"$lte\": 5}}}",
        "{\"key\": {\"f\": 1}, \"name\": \"p6\", \"partialFilterExpression\": {\"$and\": [{\"x\": "
        "1}, {\"y\": {\"$lt\": 2}}]}}",
        "{\"key\": {\"g\": 1}, \"name\": \"p7\", \"partialFilterExpression\": {\"x\": 1, \"y\": "
        "{\"$gte\": 2}, \"z\": {\"$exists\": 1}}}",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        bson_t reply;
        CHECK_MSG(create_index(cl, "pc_ok", ok[i], &reply, &err), "%s: %s", ok[i], err.message);
        bson_destroy(&reply);
    }
    /* $type (built with BCON: libbson's JSON reader takes "$type" for extended JSON) */
    bson_t *cmd =
        BCON_NEW("createIndexes", BCON_UTF8("pc_ok"), "indexes", "[", "{", "key", "{", "e",
                 BCON_INT32(1), "}", "name", BCON_UTF8("p5"), "partialFilterExpression", "{", "x",
                 "{", "$type", BCON_UTF8("string"), "}", "}", "}", "{", "key", "{", "h",
                 BCON_INT32(1), "i", BCON_INT32(-1), "}", "name", BCON_UTF8("p8"), "unique",
                 BCON_BOOL(true), "partialFilterExpression", "{", "x", "{", "$type", "[",
                 BCON_UTF8("int"), BCON_INT32(18), "]", "}", "}", "}", "]");
    bson_t reply;
    CHECK_MSG(mongoc_client_command_simple(cl, env.db_name, cmd, NULL, &reply, &err), "%s",
              err.message);
    bson_destroy(&reply);
    bson_destroy(cmd);
    bson_t spec = BSON_INITIALIZER;
    for (int i = 1; i <= 8; i++) {
        char nm[8];
        snprintf(nm, sizeof nm, "p%d", i);
        CHECK_MSG(index_spec(cl, "pc_ok", nm, &spec), "index %s missing", nm);
    }
    bson_destroy(&spec);
    /* $type membership: only string x values */
    mongoc_collection_t *c = mongoc_client_get_collection(cl, env.db_name, "pc_ok");
    bson_t *d = BCON_NEW("x", BCON_UTF8("s"));
    CHECK(mongoc_collection_insert_one(c, d, NULL, NULL, &err));
    bson_destroy(d);
    d = BCON_NEW("x", BCON_INT32(1));
    CHECK(mongoc_collection_insert_one(c, d, NULL, NULL, &err));
    bson_destroy(d);
    mongoc_collection_destroy(c);
    CHECK_INT_EQ(index_entries(cl, "pc_ok", "p5"), 1);
    CHECK_INT_EQ(index_entries(cl, "pc_ok", "p8"), 1);
    CHECK_INT_EQ(index_entries(cl, "pc_ok", "p3"), 2);
    mongoc_client_destroy(cl);
}

TEST(create_refuses_what_mongodb_44_refuses)
{
    mongoc_client_t *cl = client();
    bson_error_t err;
    struct {
        const char *spec;
        int code;
        const char *msg;
    } bad[] = {
        {"{\"key\": {\"a\": 1}, \"name\": \"b1\", \"partialFilterExpression\": {\"s\": {\"$ne\": "
         "\"P\"}}}",
         67, "unsupported expression in partial index: $not\n    s $eq \"P\"\n"},
        {"{\"key\": {\"a\": 1}, \"name\": \"b2\", \"partialFilterExpression\": {\"s\": {\"$in\": "
         "[1, 2]}}}",
         67, "unsupported expression in partial index: s $in [ 1 2 ]\n"},
        {"{\"key\": {\"a\": 1}, \"name\": \"b3\", \"partialFilterExpression\": {\"$or\": "
         "[{\"s\": 1}, {\"t\": 1}]}}",
         67, "unsupported expression in partial index: $or"},
        {"{\"key\": {\"a\": 1}, \"name\": \"b4\", \"partialFilterExpression\": {\"s\": "
         "{\"$exists\": false}}}",
         67, "unsupported expression in partial index: $not\n    s exists\n"},
        {"{\"key\": {\"a\": 1}, \"name\": \"b5\", \"partialFilterExpression\": {\"$and\": "
         "[{\"s\": 1}], \"t\": 1}}",
         67, "$and only supported in partialFilterExpression at top level"},
        {"{\"key\": {\"a\": 1}, \"name\": \"b6\", \"partialFilterExpression\": {\"$and\": "
         "[{\"s\": 1, \"t\": 1}]}}",
         67, "$and only supported in partialFilterExpression at top level"},
        {"{\"key\": {\"a\": 1}, \"name\": \"b7\", \"partialFilterExpression\": {\"s\": "
         "{\"$regularExpression\": {\"pattern\": \"x\", \"options\": \"\"}}}}",
         67, "unsupported expression in partial index: s regex /x/"},
        {"{\"key\": {\"a\": 1}, \"name\": \"b8\", \"partialFilterExpression\": {\"s\": "
         "{\"$nin\": [1]}}}",
         67, "unsupported expression in partial index: $not\n    s $in [ 1 ]\n"},
        {"{\"key\": {\"a\": 1}, \"name\": \"b9\", \"partialFilterExpression\": 5}", 14,
         "The field 'partialFilterExpression' must be an object, but got int"},
        {"{\"key\": {\"a\": 1}, \"name\": \"b10\", \"sparse\": true, \"partialFilterExpression\": "
         "{\"s\": 1}}",
         67, "cannot mix \"partialFilterExpression\" and \"sparse\" options"},
        {"{\"key\": {\"a\": 1}, \"name\": \"b11\", \"partialFilterExpression\": {\"s\": "
         "{\"$foo\": 1}}}",
         2, "unknown operator: $foo"},
        {"{\"key\": {\"_id\": 1}, \"name\": \"b12\", \"partialFilterExpression\": {\"s\": 1}}", 67,
         "_id index cannot be a partial index"},
        {"{\"key\": {\"a\": 1}, \"name\": \"b13\", \"partialFilterExpression\": {\"s\": "
         "{\"$size\": 2}}}",
         67, "unsupported expression in partial index: s $size : 2"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bson_t reply;
        bool ok = create_index(cl, "pc_bad", bad[i].spec, &reply, &err);
        bson_destroy(&reply);
        CHECK_MSG(!ok, "accepted: %s", bad[i].spec);
        CHECK_MSG(err.code == (uint32_t)bad[i].code, "%s: code %u (%s)", bad[i].spec, err.code,
                  err.message);
        CHECK_STR_CONTAINS(err.message, bad[i].msg);
    }
    /* Nothing was created (the collection exists only if a refusal created it). */
    bson_t spec = BSON_INITIALIZER;
    for (int i = 1; i <= 13; i++) {
        char nm[8];
        snprintf(nm, sizeof nm, "b%d", i);
        CHECK_MSG(!index_spec(cl, "pc_bad", nm, &spec), "index %s exists", nm);
    }
    bson_destroy(&spec);
    mongoc_client_destroy(cl);
}

TEST(recreate_identical_is_noop_other_filter_conflicts)
{
    mongoc_client_t *cl = client();
    bson_error_t err;
    bson_t reply;
    const char *spec = "{\"key\": {\"updatedAt\": 1}, \"name\": \"updatedAt_1_pending\", "
                       "\"partialFilterExpression\": {\"status\": \"PENDING\"}}";
    CHECK_MSG(create_index(cl, "pc_re", spec, &reply, &err), "%s", err.message);
    bson_destroy(&reply);
    CHECK_MSG(create_index(cl, "pc_re", spec, &reply, &err), "%s", err.message);
    bson_iter_t it;
    CHECK(bson_iter_init_find(&it, &reply, "note") && BSON_ITER_HOLDS_UTF8(&it));
    CHECK_STR_EQ(bson_iter_utf8(&it, NULL), "all indexes already exist");
    CHECK(bson_iter_init_find(&it, &reply, "numIndexesAfter"));
    CHECK_INT_EQ(bson_iter_as_int64(&it), 2);
    bson_destroy(&reply);
    /* same name and key, another filter */
    CHECK(!create_index(cl, "pc_re",
                        "{\"key\": {\"updatedAt\": 1}, \"name\": \"updatedAt_1_pending\", "
                        "\"partialFilterExpression\": {\"status\": \"SENT\"}}",
                        &reply, &err));
    bson_destroy(&reply);
    CHECK_INT_EQ(err.code, 85);
    /* same name and key, no filter */
    CHECK(!create_index(cl, "pc_re",
                        "{\"key\": {\"updatedAt\": 1}, \"name\": \"updatedAt_1_pending\"}", &reply,
                        &err));
    bson_destroy(&reply);
    CHECK_INT_EQ(err.code, 85);
    /* same key, another name and filter: 4.4 allows one index per key pattern */
    CHECK(!create_index(cl, "pc_re",
                        "{\"key\": {\"updatedAt\": 1}, \"name\": \"other\", "
                        "\"partialFilterExpression\": {\"status\": \"SENT\"}}",
                        &reply, &err));
    bson_destroy(&reply);
    CHECK_INT_EQ(err.code, 85);
    CHECK_STR_CONTAINS(err.message, "already exists with different options");
    /* same name, another key */
    CHECK(!create_index(cl, "pc_re",
                        "{\"key\": {\"createdAt\": 1}, \"name\": \"updatedAt_1_pending\", "
                        "\"partialFilterExpression\": {\"status\": \"PENDING\"}}",
                        &reply, &err));
    bson_destroy(&reply);
    CHECK_INT_EQ(err.code, 86);
    mongoc_client_destroy(cl);
}

TEST(list_indexes_returns_filter_as_given)
{
    mongoc_client_t *cl = client();
    bson_error_t err;
    bson_t reply;
    /* mixed number types: returned exactly as given, not normalised */
    const char *filter = "{\"status\": \"PENDING\", \"n\": {\"$gte\": {\"$numberLong\": "
                         "\"3\"}, \"$lt\": 10.5}}";
    char spec[512];
    snprintf(spec, sizeof spec,
             "{\"key\": {\"updatedAt\": 1}, \"name\": \"u_p\", \"partialFilterExpression\": %s}",
             filter);
    CHECK_MSG(create_index(cl, "pc_list", spec, &reply, &err), "%s", err.message);
    bson_destroy(&reply);
    bson_t got = BSON_INITIALIZER;
    CHECK(index_spec(cl, "pc_list", "u_p", &got));
    char *a = spec_filter_json(&got), *b = canonical(filter);
    CHECK(a && b);
    CHECK_STR_EQ(a, b);
    bson_iter_t it;
    CHECK(bson_iter_init_find(&it, &got, "key"));
    CHECK(!bson_iter_init_find(&it, &got, "sparse"));
    bson_free(a);
    bson_free(b);
    bson_destroy(&got);
    mongoc_client_destroy(cl);
}

/* ---- membership --------------------------------------------------------------------------- */

static void insert_log(mongoc_collection_t *c, int id, const char *status, int64_t t)
{
    bson_error_t err;
    bson_t *d = BCON_NEW("_id", BCON_INT32(id), "status", BCON_UTF8(status), "updatedAt",
                         BCON_DATE_TIME(t), "other", BCON_INT32(0));
    CHECK_MSG(mongoc_collection_insert_one(c, d, NULL, NULL, &err), "%s", err.message);
    bson_destroy(d);
}

static void update_one_json(mongoc_collection_t *c, const char *sel, const char *upd)
{
    bson_error_t err;
    bson_t *s = bson_new_from_json((const uint8_t *)sel, -1, &err);
    bson_t *u = bson_new_from_json((const uint8_t *)upd, -1, &err);
    CHECK(s && u);
    CHECK_MSG(mongoc_collection_update_one(c, s, u, NULL, NULL, &err), "%s", err.message);
    bson_destroy(s);
    bson_destroy(u);
}

TEST(membership_follows_every_write)
{
    mongoc_client_t *cl = client();
    mongoc_collection_t *c = mongoc_client_get_collection(cl, env.db_name, "pm");
    bson_error_t err;
    bson_t reply;
    /* Documents before the index: the build indexes only the matching ones. */
    for (int i = 0; i < 10; i++)
        insert_log(c, i, i % 2 ? "SENT" : "PENDING", 1000 + i);
    CHECK_MSG(create_index(cl, "pm",
                           "{\"key\": {\"updatedAt\": 1}, \"name\": \"up\", "
                           "\"partialFilterExpression\": {\"status\": \"PENDING\"}}",
                           &reply, &err),
              "%s", err.message);
    bson_destroy(&reply);
    CHECK_INT_EQ(index_entries(cl, "pm", "up"), 5);
    insert_log(c, 10, "PENDING", 2000);
    insert_log(c, 11, "FAILED", 2001);
    CHECK_INT_EQ(index_entries(cl, "pm", "up"), 6);
    /* leaving PENDING (the delivery receipt): out of the index */
    update_one_json(c, "{\"_id\": 0}",
                    "{\"$set\": {\"status\": \"DELIVERED\", \"updatedAt\": {\"$date\": 5000}}}");
    CHECK_INT_EQ(index_entries(cl, "pm", "up"), 5);
    /* entering PENDING */
    update_one_json(c, "{\"_id\": 1}", "{\"$set\": {\"status\": \"PENDING\"}}");
    CHECK_INT_EQ(index_entries(cl, "pm", "up"), 6);
    /* re-keyed while PENDING: found by its new key only */
    update_one_json(c, "{\"_id\": 2}", "{\"$set\": {\"updatedAt\": {\"$date\": 100}}}");
    CHECK_INT_EQ(index_entries(cl, "pm", "up"), 6);
    CHECK_INT_EQ(count_json(cl, "pm", "{\"updatedAt\": {\"$lt\": {\"$date\": 500}}}", "up"), 1);
    CHECK_INT_EQ(count_json(cl, "pm", "{\"updatedAt\": {\"$date\": 1002}}", "up"), 0);
    /* an update of fields the index does not read leaves it alone */
    update_one_json(c, "{\"_id\": 4}", "{\"$inc\": {\"other\": 1}}");
    CHECK_INT_EQ(index_entries(cl, "pm", "up"), 6);
    /* a non-matching document updated: still out */
    update_one_json(c, "{\"_id\": 3}", "{\"$set\": {\"updatedAt\": {\"$date\": 1}}}");
    CHECK_INT_EQ(index_entries(cl, "pm", "up"), 6);
    CHECK_INT_EQ(count_json(cl, "pm", "{\"updatedAt\": {\"$lt\": {\"$date\": 500}}}", "up"), 1);
    /* replace: out, then in */
    bson_t *sel = BCON_NEW("_id", BCON_INT32(4));
    bson_t *rep = BCON_NEW("status", BCON_UTF8("SENT"), "updatedAt", BCON_DATE_TIME(7));
    CHECK_MSG(mongoc_collection_replace_one(c, sel, rep, NULL, NULL, &err), "%s", err.message);
    CHECK_INT_EQ(index_entries(cl, "pm", "up"), 5);
    bson_destroy(rep);
    rep = BCON_NEW("status", BCON_UTF8("PENDING"), "updatedAt", BCON_DATE_TIME(8));
    CHECK_MSG(mongoc_collection_replace_one(c, sel, rep, NULL, NULL, &err), "%s", err.message);
    CHECK_INT_EQ(index_entries(cl, "pm", "up"), 6);
    bson_destroy(rep);
    bson_destroy(sel);
    /* findAndModify out of PENDING */
    CHECK_MSG(cmdj(cl,
                   "{\"findAndModify\": \"pm\", \"query\": {\"_id\": 6}, \"update\": "
                   "{\"$set\": {\"status\": \"FAILED\"}}}",
                   NULL, &err),
              "%s", err.message);
    CHECK_INT_EQ(index_entries(cl, "pm", "up"), 5);
    /* deletes: a matching one leaves, a non-matching one changes nothing */
    sel = BCON_NEW("_id", BCON_INT32(8));
    CHECK(mongoc_collection_delete_one(c, sel, NULL, NULL, &err));
    bson_destroy(sel);
    CHECK_INT_EQ(index_entries(cl, "pm", "up"), 4);
    sel = BCON_NEW("_id", BCON_INT32(11));
    CHECK(mongoc_collection_delete_one(c, sel, NULL, NULL, &err));
    bson_destroy(sel);
    CHECK_INT_EQ(index_entries(cl, "pm", "up"), 4);
    /* the index holds exactly the PENDING documents */
    CHECK_INT_EQ(count_json(cl, "pm", "{\"status\": \"PENDING\"}", NULL), 4);
    CHECK_INT_EQ(count_json(cl, "pm", "{\"status\": \"PENDING\"}", "up"), 4);
    /* update_many moving everything out */
    bson_t *all = bson_new();
    bson_t *u = BCON_NEW("$set", "{", "status", BCON_UTF8("DONE"), "}");
    CHECK_MSG(mongoc_collection_update_many(c, all, u, NULL, NULL, &err), "%s", err.message);
    bson_destroy(u);
    bson_destroy(all);
    CHECK_INT_EQ(index_entries(cl, "pm", "up"), 0);
    mongoc_collection_destroy(c);
    mongoc_client_destroy(cl);
}

TEST(unique_partial_only_among_matching)
{
    mongoc_client_t *cl = client();
    mongoc_collection_t *c = mongoc_client_get_collection(cl, env.db_name, "pu");
    bson_error_t err;
    bson_t reply;
    /* duplicates only among non-matching documents: the build succeeds */
    const char *pre[] = {"{\"_id\": 1, \"email\": \"a\", \"active\": false}",
                         "{\"_id\": 2, \"email\": \"a\", \"active\": false}",
                         "{\"_id\": 3, \"email\": \"a\", \"active\": true}"};
    for (size_t i = 0; i < 3; i++) {
        bson_t *d = bson_new_from_json((const uint8_t *)pre[i], -1, &err);
        CHECK_MSG(mongoc_collection_insert_one(c, d, NULL, NULL, &err), "%s", err.message);
        bson_destroy(d);
    }
    CHECK_MSG(create_index(cl, "pu",
                           "{\"key\": {\"email\": 1}, \"name\": \"email_active\", \"unique\": "
                           "true, \"partialFilterExpression\": {\"active\": true}}",
                           &reply, &err),
              "%s", err.message);
    bson_destroy(&reply);
    bson_t *d = BCON_NEW("_id", BCON_INT32(4), "email", BCON_UTF8("a"), "active", BCON_BOOL(false));
    CHECK_MSG(mongoc_collection_insert_one(c, d, NULL, NULL, &err), "%s", err.message);
    bson_destroy(d);
    d = BCON_NEW("_id", BCON_INT32(5), "email", BCON_UTF8("a"), "active", BCON_BOOL(true));
    CHECK(!mongoc_collection_insert_one(c, d, NULL, NULL, &err));
    CHECK_INT_EQ(err.code, 11000);
    CHECK_STR_CONTAINS(err.message, "index: email_active dup key: { email: \"a\" }");
    bson_destroy(d);
    /* activating a duplicate is refused and changes nothing */
    update_one_json(c, "{\"_id\": 3}", "{\"$set\": {\"active\": false}}");
    update_one_json(c, "{\"_id\": 1}", "{\"$set\": {\"active\": true}}");
    bson_t *sel = BCON_NEW("_id", BCON_INT32(2));
    bson_t *u = BCON_NEW("$set", "{", "active", BCON_BOOL(true), "}");
    CHECK(!mongoc_collection_update_one(c, sel, u, NULL, &reply, &err));
    bson_destroy(&reply);
    CHECK_INT_EQ(err.code, 11000);
    bson_destroy(u);
    bson_destroy(sel);
    CHECK_INT_EQ(count_json(cl, "pu", "{\"active\": true}", NULL), 1);
    CHECK_INT_EQ(index_entries(cl, "pu", "email_active"), 1);
    /* a unique partial index over duplicates among matching documents fails with 11000 */
    CHECK(!create_index(cl, "pu",
                        "{\"key\": {\"email\": 1, \"x\": 1}, \"name\": \"email_inactive\", "
                        "\"unique\": true, \"partialFilterExpression\": {\"active\": false}}",
                        &reply, &err));
    bson_destroy(&reply);
    CHECK_INT_EQ(err.code, 11000);
    mongoc_collection_destroy(c);
    mongoc_client_destroy(cl);
}

/* ---- planner ----------------------------------------------------------------------------- */

enum { SWEEP_N = 4000 };

/* communication_logs-like: every 10th document PENDING, updatedAt = i seconds. */
static void load_sweep(mongoc_client_t *cl)
{
    mongoc_collection_t *c = mongoc_client_get_collection(cl, env.db_name, "sweep");
    bson_error_t err;
    bson_t *docs[SWEEP_N];
    for (int i = 0; i < SWEEP_N; i++)
        docs[i] = BCON_NEW("_id", BCON_INT32(i), "status", BCON_UTF8(i % 10 ? "SENT" : "PENDING"),
                           "updatedAt", BCON_DATE_TIME((int64_t)i * 1000));
    CHECK_MSG(mongoc_collection_insert_many(c, (const bson_t **)docs, SWEEP_N, NULL, NULL, &err),
              "%s", err.message);
    for (int i = 0; i < SWEEP_N; i++)
        bson_destroy(docs[i]);
    mongoc_collection_destroy(c);
    bson_t reply;
    /* a plain status index too: the partial one must still win for the sweeper */
    CHECK_MSG(create_index(cl, "sweep", "{\"key\": {\"status\": 1}, \"name\": \"status_1\"}",
                           &reply, &err),
              "%s", err.message);
    bson_destroy(&reply);
    CHECK_MSG(create_index(cl, "sweep",
                           "{\"key\": {\"updatedAt\": 1}, \"name\": \"updatedAt_1_pending\", "
                           "\"partialFilterExpression\": {\"status\": \"PENDING\"}}",
                           &reply, &err),
              "%s", err.message);
    bson_destroy(&reply);
}

/* count with the examined-documents delta in *examined. */
static int64_t count_examined(mongoc_client_t *cl, const char *coll, const char *filter,
                              int64_t *examined)
{
    int64_t before = scanned_objects(cl);
    int64_t n = count_json(cl, coll, filter, NULL);
    *examined = scanned_objects(cl) - before;
    return n;
}

TEST(planner_uses_partial_index_when_query_implies_filter)
{
    mongoc_client_t *cl = client();
    load_sweep(cl);
    int64_t ex;
    /* the sweeper: PENDING with updatedAt < 1000 s: ids 0, 10, ..., 990 */
    CHECK_INT_EQ(count_examined(cl, "sweep",
                                "{\"status\": \"PENDING\", \"updatedAt\": {\"$lt\": {\"$date\": "
                                "1000000}}}",
                                &ex),
                 100);
    CHECK_MSG(ex == 100, "sweeper examined %lld documents", (long long)ex);
    /* the same through $eq and inside $and */
    CHECK_INT_EQ(count_examined(cl, "sweep",
                                "{\"$and\": [{\"status\": {\"$eq\": \"PENDING\"}}, {\"updatedAt\": "
                                "{\"$lt\": {\"$date\": 1000000}}}]}",
                                &ex),
                 100);
    CHECK_MSG(ex == 100, "$and sweeper examined %lld documents", (long long)ex);
    /* sorted with a limit: stops after the limit, in order */
    mongoc_collection_t *c = mongoc_client_get_collection(cl, env.db_name, "sweep");
    bson_error_t err;
    bson_t *f = bson_new_from_json(
        (const uint8_t *)"{\"status\": \"PENDING\", \"updatedAt\": {\"$lt\": {\"$date\": "
                         "2000000}}}",
        -1, &err);
    bson_t *o = BCON_NEW("sort", "{", "updatedAt", BCON_INT32(-1), "}", "limit", BCON_INT64(5));
    int64_t before = scanned_objects(cl);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, f, o, NULL);
    const bson_t *d;
    int n = 0;
    while (mongoc_cursor_next(cur, &d)) {
        bson_iter_t it;
        CHECK(bson_iter_init_find(&it, d, "_id"));
        CHECK_INT_EQ(bson_iter_int32(&it), 1990 - 10 * n);
        n++;
    }
    CHECK(!mongoc_cursor_error(cur, &err));
    mongoc_cursor_destroy(cur);
    CHECK_INT_EQ(n, 5);
    ex = scanned_objects(cl) - before;
    CHECK_MSG(ex <= 5, "sorted sweeper examined %lld", (long long)ex);
    bson_destroy(o);
    bson_destroy(f);
    /* PENDING alone, sorted by updatedAt with a limit: the partial index gives the order */
    f = BCON_NEW("status", BCON_UTF8("PENDING"));
    o = BCON_NEW("sort", "{", "updatedAt", BCON_INT32(1), "}", "limit", BCON_INT64(3));
    before = scanned_objects(cl);
    cur = mongoc_collection_find_with_opts(c, f, o, NULL);
    n = 0;
    while (mongoc_cursor_next(cur, &d)) {
        bson_iter_t it;
        CHECK(bson_iter_init_find(&it, d, "_id"));
        CHECK_INT_EQ(bson_iter_int32(&it), 10 * n);
        n++;
    }
    mongoc_cursor_destroy(cur);
    CHECK_INT_EQ(n, 3);
    ex = scanned_objects(cl) - before;
    CHECK_MSG(ex <= 3, "sorted PENDING examined %lld", (long long)ex);
    bson_destroy(o);
    bson_destroy(f);
    mongoc_collection_destroy(c);
    mongoc_client_destroy(cl);
}

TEST(planner_ignores_partial_index_the_query_does_not_imply)
{
    mongoc_client_t *cl = client();
    int64_t ex;
    /* (the sweep collection from the previous test; load it if this test runs alone) */
    if (count_json(cl, "sweep", "{}", NULL) != SWEEP_N)
        load_sweep(cl);
    /* no status condition: every document below the cutoff, PENDING or not */
    CHECK_INT_EQ(count_json(cl, "sweep", "{\"updatedAt\": {\"$lt\": {\"$date\": 1000000}}}", NULL),
                 1000);
    CHECK_INT_EQ(count_json(cl, "sweep",
                            "{\"status\": \"SENT\", \"updatedAt\": {\"$lt\": {\"$date\": "
                            "1000000}}}",
                            NULL),
                 900);
    /* $in / $or / $ne on status do not imply the equality: correct, complete results */
    CHECK_INT_EQ(count_json(cl, "sweep",
                            "{\"status\": {\"$in\": [\"PENDING\", \"SENT\"]}, \"updatedAt\": "
                            "{\"$lt\": {\"$date\": 100000}}}",
                            NULL),
                 100);
    CHECK_INT_EQ(count_json(cl, "sweep",
                            "{\"$or\": [{\"status\": \"PENDING\"}, {\"status\": \"SENT\"}], "
                            "\"updatedAt\": {\"$lt\": {\"$date\": 100000}}}",
                            NULL),
                 100);
    CHECK_INT_EQ(count_json(cl, "sweep",
                            "{\"status\": {\"$ne\": \"PENDING\"}, \"updatedAt\": {\"$gte\": "
                            "{\"$date\": 3900000}}}",
                            NULL),
                 90);
    /* sorted by updatedAt with a limit and no status: the first documents overall */
    mongoc_collection_t *c = mongoc_client_get_collection(cl, env.db_name, "sweep");
    bson_t empty = BSON_INITIALIZER;
    bson_t *o = BCON_NEW("sort", "{", "updatedAt", BCON_INT32(1), "}", "limit", BCON_INT64(3));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, &empty, o, NULL);
    const bson_t *d;
    int n = 0;
    while (mongoc_cursor_next(cur, &d)) {
        bson_iter_t it;
        CHECK(bson_iter_init_find(&it, d, "_id"));
        CHECK_INT_EQ(bson_iter_int32(&it), n);
        n++;
    }
    mongoc_cursor_destroy(cur);
    CHECK_INT_EQ(n, 3);
    bson_destroy(o);
    mongoc_collection_destroy(c);

    /* range filters: {x: 1} indexed only where y > 5; x = i % 10, y = i % 20 */
    c = mongoc_client_get_collection(cl, env.db_name, "prange");
    bson_error_t err;
    bson_t *docs[1000];
    for (int i = 0; i < 1000; i++)
        docs[i] = BCON_NEW("x", BCON_INT32(i % 10), "y", BCON_INT32(i % 20));
    CHECK_MSG(mongoc_collection_insert_many(c, (const bson_t **)docs, 1000, NULL, NULL, &err), "%s",
              err.message);
    for (int i = 0; i < 1000; i++)
        bson_destroy(docs[i]);
    mongoc_collection_destroy(c);
    bson_t reply;
    CHECK_MSG(create_index(cl, "prange",
                           "{\"key\": {\"x\": 1}, \"name\": \"x_y_gt_5\", "
                           "\"partialFilterExpression\": {\"y\": {\"$gt\": 5}}}",
                           &reply, &err),
              "%s", err.message);
    bson_destroy(&reply);
    /* y > 7 implies y > 5: only the 50 indexed x = 3 documents (y = 13) are examined */
    CHECK_INT_EQ(count_examined(cl, "prange", "{\"x\": 3, \"y\": {\"$gt\": 7}}", &ex), 50);
    CHECK_MSG(ex == 50, "implied range examined %lld", (long long)ex);
    /* y = 13 (equality inside the range) implies it too */
    CHECK_INT_EQ(count_examined(cl, "prange", "{\"x\": 3, \"y\": 13}", &ex), 50);
    CHECK_MSG(ex == 50, "implied equality examined %lld", (long long)ex);
    /* y > 4 does not: a collection scan, and the y = 3 ... documents are found */
    CHECK_INT_EQ(count_examined(cl, "prange", "{\"x\": 3, \"y\": {\"$gt\": 2}}", &ex), 100);
    CHECK_MSG(ex == 1000, "non-implied range examined %lld", (long long)ex);
    /* y = 3: none of these are in the index; using it would find nothing */
    CHECK_INT_EQ(count_json(cl, "prange", "{\"x\": 3, \"y\": 3}", NULL), 50);
    CHECK_INT_EQ(count_json(cl, "prange", "{\"x\": 3}", NULL), 100);
    /* a different type bracket never implies a numeric range */
    CHECK_INT_EQ(count_json(cl, "prange", "{\"x\": 3, \"y\": {\"$gt\": \"a\"}}", NULL), 0);
    mongoc_client_destroy(cl);
}

/* MongoDB 4.4 obeys a hint naming a partial index even when the query does not imply the filter
 * (SERVER-26413): the answer is what the index holds. devdb does the same. */
TEST(hint_on_partial_index_answers_from_the_index)
{
    mongoc_client_t *cl = client();
    if (count_json(cl, "sweep", "{}", NULL) != SWEEP_N)
        load_sweep(cl);
    CHECK_INT_EQ(count_json(cl, "sweep", "{\"updatedAt\": {\"$lt\": {\"$date\": 1000000}}}",
                            "updatedAt_1_pending"),
                 100);
    CHECK_INT_EQ(count_json(cl, "sweep", "{\"status\": \"SENT\"}", "updatedAt_1_pending"), 0);
    CHECK_INT_EQ(count_json(cl, "sweep",
                            "{\"status\": \"PENDING\", \"updatedAt\": {\"$lt\": {\"$date\": "
                            "1000000}}}",
                            "updatedAt_1_pending"),
                 100);
    mongoc_client_destroy(cl);
}

/* ---- durability ---------------------------------------------------------------------------- */

static void check_durable_state(mongoc_client_t *cl, int64_t pending_below_1000s)
{
    bson_t spec = BSON_INITIALIZER;
    CHECK(index_spec(cl, "sweep", "updatedAt_1_pending", &spec));
    char *a = spec_filter_json(&spec), *b = canonical("{\"status\": \"PENDING\"}");
    CHECK(a && b);
    if (a && b)
        CHECK_STR_EQ(a, b);
    bson_free(a);
    bson_free(b);
    bson_destroy(&spec);
    int64_t ex;
    CHECK_INT_EQ(count_examined(cl, "sweep",
                                "{\"status\": \"PENDING\", \"updatedAt\": {\"$lt\": {\"$date\": "
                                "1000000}}}",
                                &ex),
                 pending_below_1000s);
    CHECK_MSG(ex == pending_below_1000s, "examined %lld after restart", (long long)ex);
    CHECK_INT_EQ(index_entries(cl, "sweep", "updatedAt_1_pending"),
                 count_json(cl, "sweep", "{\"status\": \"PENDING\"}", NULL));
    /* the unique partial index is still enforced among matching documents only */
    mongoc_collection_t *c = mongoc_client_get_collection(cl, env.db_name, "pu");
    bson_error_t err;
    bson_t *d = BCON_NEW("email", BCON_UTF8("a"), "active", BCON_BOOL(true));
    CHECK(!mongoc_collection_insert_one(c, d, NULL, NULL, &err));
    CHECK_INT_EQ(err.code, 11000);
    bson_destroy(d);
    mongoc_collection_destroy(c);
    CHECK_INT_EQ(index_entries(cl, "pu", "email_active"), 1);
}

/* Starts a devdb with --dbpath dir on port; its pid once the port accepts, -1 otherwise. */
static pid_t start_durable(const char *dir, int port)
{
    char portbuf[16], log[600];
    snprintf(portbuf, sizeof portbuf, "%d", port);
    snprintf(log, sizeof log, "%s/devdb-partial.log", env.dir);
    char *argv[] = {(char *)testenv_bin("minicrm-devdb"),
                    "--port",
                    portbuf,
                    "--bind",
                    "127.0.0.1",
                    "--dbpath",
                    (char *)dir,
                    NULL};
    pid_t pid = testenv_spawn(argv, log);
    if (pid > 0 && testenv_wait_port(port, 10000) != 0) {
        testenv_kill_wait(pid, SIGKILL, 2000);
        pid = -1;
    }
    return pid;
}

TEST(partial_index_survives_restart_and_kill_9)
{
    if (env.devdb_port == 0)
        TEST_SKIP("MongoDB is external (MINICRM_TEST_MONGO_URI): no devdb of ours to restart");
    char dir[600];
    snprintf(dir, sizeof dir, "%s/partial-dbpath", env.dir);
    mkdir(dir, 0755);
    int port = testenv_free_port();
    dur_pid = start_durable(dir, port);
    CHECK(dur_pid > 0);
    snprintf(uri, sizeof uri, "mongodb://127.0.0.1:%d/%s", port, env.db_name);
    mongoc_client_t *cl = client();
    load_sweep(cl);
    mongoc_collection_t *c = mongoc_client_get_collection(cl, env.db_name, "pu");
    bson_error_t err;
    bson_t reply;
    for (int i = 0; i < 3; i++) {
        bson_t *d =
            BCON_NEW("_id", BCON_INT32(i), "email", BCON_UTF8("a"), "active", BCON_BOOL(i == 0));
        CHECK_MSG(mongoc_collection_insert_one(c, d, NULL, NULL, &err), "%s", err.message);
        bson_destroy(d);
    }
    mongoc_collection_destroy(c);
    CHECK_MSG(create_index(cl, "pu",
                           "{\"key\": {\"email\": 1}, \"name\": \"email_active\", \"unique\": "
                           "true, \"partialFilterExpression\": {\"active\": true}}",
                           &reply, &err),
              "%s", err.message);
    bson_destroy(&reply);
    /* move ten PENDING logs below the cutoff out of PENDING */
    c = mongoc_client_get_collection(cl, env.db_name, "sweep");
    bson_t *sel = BCON_NEW("_id", "{", "$lt", BCON_INT32(100), "}", "status", BCON_UTF8("PENDING"));
    bson_t *u = BCON_NEW("$set", "{", "status", BCON_UTF8("DELIVERED"), "}");
    CHECK_MSG(mongoc_collection_update_many(c, sel, u, NULL, NULL, &err), "%s", err.message);
    bson_destroy(u);
    bson_destroy(sel);
    mongoc_collection_destroy(c);
    mongoc_client_destroy(cl);

    /* clean stop (final snapshot), restart from the snapshot */
    testenv_kill_wait(dur_pid, SIGTERM, 10000);
    dur_pid = start_durable(dir, port);
    CHECK(dur_pid > 0);
    cl = client();
    check_durable_state(cl, 90);
    /* more writes, then kill -9: the journal replays them */
    c = mongoc_client_get_collection(cl, env.db_name, "sweep");
    sel = BCON_NEW("_id", "{", "$gte", BCON_INT32(100), "$lt", BCON_INT32(200), "}", "status",
                   BCON_UTF8("PENDING"));
    u = BCON_NEW("$set", "{", "status", BCON_UTF8("DELIVERED"), "}");
    CHECK_MSG(mongoc_collection_update_many(c, sel, u, NULL, NULL, &err), "%s", err.message);
    bson_destroy(u);
    bson_destroy(sel);
    mongoc_collection_destroy(c);
    CHECK_MSG(create_index(cl, "sweep",
                           "{\"key\": {\"updatedAt\": -1}, \"name\": \"late\", "
                           "\"partialFilterExpression\": {\"updatedAt\": {\"$gte\": {\"$date\": "
                           "3000000}}}}",
                           &reply, &err),
              "%s", err.message);
    bson_destroy(&reply);
    mongoc_client_destroy(cl);
    testenv_kill_wait(dur_pid, SIGKILL, 5000);
    dur_pid = start_durable(dir, port);
    CHECK(dur_pid > 0);
    cl = client();
    check_durable_state(cl, 80);
    CHECK_INT_EQ(index_entries(cl, "sweep", "late"), 1000);
    bson_t spec = BSON_INITIALIZER;
    CHECK(index_spec(cl, "sweep", "late", &spec));
    bson_destroy(&spec);
    mongoc_client_destroy(cl);
    testenv_kill_wait(dur_pid, SIGTERM, 10000);
    dur_pid = -1;
    snprintf(uri, sizeof uri, "%s", env.mongo_uri);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        TEST_ENTRY(create_accepts_mongodb_44_subset),
        TEST_ENTRY(create_refuses_what_mongodb_44_refuses),
        TEST_ENTRY(recreate_identical_is_noop_other_filter_conflicts),
        TEST_ENTRY(list_indexes_returns_filter_as_given),
        TEST_ENTRY(membership_follows_every_write),
        TEST_ENTRY(unique_partial_only_among_matching),
        TEST_ENTRY(planner_uses_partial_index_when_query_implies_filter),
        TEST_ENTRY(planner_ignores_partial_index_the_query_does_not_imply),
        TEST_ENTRY(hint_on_partial_index_answers_from_the_index),
        TEST_ENTRY(partial_index_survives_restart_and_kill_9),
    };
    if (testenv_start(&env, TESTENV_DEVDB) != 0)
        return 1;
    mongoc_init();
    snprintf(uri, sizeof uri, "%s", env.mongo_uri);
    int rc = test_run_all(__FILE__, cases, sizeof cases / sizeof cases[0], argc, argv);
    if (dur_pid > 0)
        testenv_kill_wait(dur_pid, SIGKILL, 5000);
    mongoc_cleanup();
    testenv_stop(&env);
    return rc;
}
