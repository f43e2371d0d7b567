/*
 * api_seed: fills the collections that bench/api_bench.sh lists but cannot fill quickly through
 * the API, straight into MongoDB (or devdb), in the shapes the programs write them.
 *
 *   bench_api_seed MONGO_URI WHAT N        WHAT: a comma-separated subset of campaigns,logs,users
 *
 * Needs at least one campaign and N customers already stored (the bench makes them through the
 * API). Then, with the oldest campaign as the template:
 *   - campaigns: N - 1 more campaigns, copies of the template with new _ids and createdAt one
 *     ms apart;
 *   - logs: N communication logs of the template campaign, one per customer of the first N (by
 *     _id), written with campaign_log_append_new as the fan-out writes them;
 *   - users: N users in the shape auth_users_login stores.
 * Prints the template campaign's id on stdout. Exit status 0, or 1 with a message on stderr.
 * A bench tool, not a test: it asserts nothing.
 */
#include "campaign.h"
#include "dbpool.h"

#include <bson/bson.h>
#include <mongoc/mongoc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 1000

/* insert_many of docs[0..n) into coll in batches; 0 or -1 (message printed). */
static int insert_all(mongoc_collection_t *coll, bson_t **docs, size_t n)
{
    for (size_t i = 0; i < n; i += BATCH) {
        size_t k = n - i < BATCH ? n - i : BATCH;
        bson_error_t e;
        if (!mongoc_collection_insert_many(coll, (const bson_t **)docs + i, k, NULL, NULL, &e)) {
            fprintf(stderr, "api_seed: insert into %s: %s\n", mongoc_collection_get_name(coll),
                    e.message);
            return -1;
        }
    }
    return 0;
}

static void free_all(bson_t **docs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        bson_destroy(docs[i]);
    free(docs);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: bench_api_seed MONGO_URI campaigns,logs,users N\n");
        return 2;
    }
    bool b_camps = strstr(argv[2], "campaigns") != NULL, b_logs = strstr(argv[2], "logs") != NULL,
         b_users = strstr(argv[2], "users") != NULL;
    char *end;
    long n = strtol(argv[3], &end, 10);
    if (*end || n < 1 || n > 1000000) {
        fprintf(stderr, "api_seed: N must be 1..1000000\n");
        return 2;
    }
    mongoc_init();
    bson_error_t e;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(argv[1], &e);
    if (!uri) {
        fprintf(stderr, "api_seed: %s\n", e.message);
        return 1;
    }
    const char *dbname = mongoc_uri_get_database(uri);
    mongoc_client_t *cl = mongoc_client_new_from_uri(uri);
    mongoc_collection_t *camps = mongoc_client_get_collection(cl, dbname, DB_CAMPAIGNS);
    mongoc_collection_t *custs = mongoc_client_get_collection(cl, dbname, DB_CUSTOMERS);
    mongoc_collection_t *logs = mongoc_client_get_collection(cl, dbname, DB_LOGS);
    mongoc_collection_t *users = mongoc_client_get_collection(cl, dbname, DB_USERS);
    int status = 1;
    bson_t *tmpl = NULL;
    bson_oid_t cid;

    /* The template campaign: the oldest one. */
    bson_t q = BSON_INITIALIZER;
    bson_t *o = BCON_NEW("sort", "{", "_id", BCON_INT32(1), "}", "limit", BCON_INT64(1));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(camps, &q, o, NULL);
    const bson_t *doc;
    if (mongoc_cursor_next(cur, &doc))
        tmpl = bson_copy(doc);
    mongoc_cursor_destroy(cur);
    bson_destroy(o);
    bson_iter_t it;
    if (!tmpl || !bson_iter_init_find(&it, tmpl, "_id") || !BSON_ITER_HOLDS_OID(&it)) {
        fprintf(stderr, "api_seed: no campaign to copy (create one through the API first)\n");
        goto out;
    }
    bson_oid_copy(bson_iter_oid(&it), &cid);
    int64_t now = (int64_t)time(NULL) * 1000;

    bson_t **docs = calloc((size_t)n, sizeof *docs);
    size_t k = 0;
    for (long i = 1; b_camps && i < n; i++) {
        bson_t *d = bson_new();
        bson_oid_t oid;
        bson_oid_init(&oid, NULL);
        BSON_APPEND_OID(d, "_id", &oid);
        bson_copy_to_excluding_noinit(tmpl, d, "_id", "createdAt", NULL);
        BSON_APPEND_DATE_TIME(d, "createdAt", now - n + i);
        docs[k++] = d;
    }
    int rc = insert_all(camps, docs, k);
    free_all(docs, k);
    if (rc != 0)
        goto out;

    /* One log per customer of the first n. */
    docs = calloc((size_t)n, sizeof *docs);
    k = 0;
    o = BCON_NEW("sort", "{", "_id", BCON_INT32(1), "}", "limit", BCON_INT64(n));
    cur = mongoc_collection_find_with_opts(custs, &q, o, NULL);
    while (b_logs && mongoc_cursor_next(cur, &doc)) {
        if (!bson_iter_init_find(&it, doc, "_id") || !BSON_ITER_HOLDS_OID(&it))
            continue;
        bson_oid_t uid, lid;
        bson_oid_copy(bson_iter_oid(&it), &uid);
        campaign_log_id(&cid, &uid, &lid);
        bson_t *d = bson_new();
        campaign_log_append_new(d, &lid, &cid, &uid, "Hi there, 10% off everything this week!",
                                now);
        docs[k++] = d;
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(o);
    rc = insert_all(logs, docs, k);
    free_all(docs, k);
    if (rc != 0)
        goto out;

    docs = calloc((size_t)n, sizeof *docs);
    k = 0;
    for (long i = 0; b_users && i < n; i++) {
        char sub[25], email[64], name[64];
        bson_oid_t soid;
        bson_oid_init(&soid, NULL);
        bson_oid_to_string(&soid, sub);
        snprintf(email, sizeof email, "user%s@bench.example.com", sub);
        snprintf(name, sizeof name, "Bench User %ld", i);
        docs[k++] = BCON_NEW("google_sub", BCON_UTF8(sub), "email", BCON_UTF8(email), "displayName",
                             BCON_UTF8(name), "role", BCON_UTF8(i % 10 ? "staff" : "admin"),
                             "firstLogin", BCON_DATE_TIME(now), "lastLogin", BCON_DATE_TIME(now));
    }
    rc = insert_all(users, docs, k);
    free_all(docs, k);
    if (rc != 0)
        goto out;

    char hex[25];
    bson_oid_to_string(&cid, hex);
    printf("%s\n", hex);
    status = 0;
out:
    bson_destroy(&q);
    bson_destroy(tmpl);
    mongoc_collection_destroy(camps);
    mongoc_collection_destroy(custs);
    mongoc_collection_destroy(logs);
    mongoc_collection_destroy(users);
    mongoc_client_destroy(cl);
    mongoc_uri_destroy(uri);
    mongoc_cleanup();
    return status;
}
