/*
 * bench_db_floor: the client-side CPU of one MongoDB round trip through mongo-c-driver, the
 * floor under every route of minicrm-api that touches the database (issue 13 points 2 and 4).
 *
 *   bench_db_floor URI [N]     (URI of a running devdb or mongod; N round trips per case,
 *                               default 20000)
 *
 * Each case runs N times in this process, single-threaded, the way a route does it (a client
 * popped from a mongoc_client_pool_t and pushed back per operation, unless said otherwise),
 * and prints this process's own CPU (getrusage: user + system, all threads, the pool's monitor
 * included) per operation, with the wall time per operation beside it. The server's CPU is not
 * in these figures: that is "the database's share" of the issue. Cases:
 *   pop+push            the pool alone, no round trip
 *   ping                {ping: 1} by mongoc_client_command_simple
 *   find _id (cursor)   find_with_opts {_id} limit 1 + cursor_next + cursor_destroy
 * (api_find_by_id) find _id (command)  the same find as one prebuilt command
 * (read_command_with_opts) insert_one          a small customer-like document count {_id} the count
 * command (customer_exists, audience counts) find 100 (cursor)   a page of 100 documents, batchSize
 * 100 (api_query_text's first query) single client       find _id (cursor) on one mongoc_client_t
 * kept for all N (no pool) Asserts nothing; bench/README.md, "The floor", has the figures of this
 * box.
 */
#include <mongoc/mongoc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec * 1e6 + (double)ru.ru_utime.tv_usec +
           (double)ru.ru_stime.tv_sec * 1e6 + (double)ru.ru_stime.tv_usec;
}

static double wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

typedef struct bench {
    mongoc_client_pool_t *pool;
    mongoc_client_t *single;
    const char *db;
    bson_oid_t ids[100];
    long seq;
} bench;

typedef int (*op_fn)(bench *b, mongoc_client_t *cl, long i);

static int op_none(bench *b, mongoc_client_t *cl, long i)
{
    (void)b, (void)cl, (void)i;
    return 0;
}

static int op_ping(bench *b, mongoc_client_t *cl, long i)
{
    (void)b, (void)i;
    bson_t cmd = BSON_INITIALIZER;
    BSON_APPEND_INT32(&cmd, "ping", 1);
    bson_error_t e;
    bool ok = mongoc_client_command_simple(cl, "admin", &cmd, NULL, NULL, &e);
    bson_destroy(&cmd);
    return ok ? 0 : (fprintf(stderr, "ping: %s\n", e.message), -1);
}

static int op_find_cursor(bench *b, mongoc_client_t *cl, long i)
{
    mongoc_collection_t *c = mongoc_client_get_collection(cl, b->db, "floor");
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER;
    BSON_APPEND_OID(&filter, "_id", &b->ids[i % 100]);
    BSON_APPEND_INT64(&opts, "limit", 1);
    BSON_APPEND_INT64(&opts, "maxTimeMS", 10000);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, &filter, &opts, NULL);
    const bson_t *doc;
    int rc = mongoc_cursor_next(cur, &doc) ? 0 : -1;
    bson_error_t e;
    if (mongoc_cursor_error(cur, &e))
        fprintf(stderr, "find: %s\n", e.message);
    mongoc_cursor_destroy(cur);
    bson_destroy(&filter);
    bson_destroy(&opts);
    mongoc_collection_destroy(c);
    return rc;
}

static int op_find_command(bench *b, mongoc_client_t *cl, long i)
{
    mongoc_collection_t *c = mongoc_client_get_collection(cl, b->db, "floor");
    bson_t cmd = BSON_INITIALIZER, filter, reply;
    BSON_APPEND_UTF8(&cmd, "find", "floor");
    BSON_APPEND_DOCUMENT_BEGIN(&cmd, "filter", &filter);
    BSON_APPEND_OID(&filter, "_id", &b->ids[i % 100]);
    bson_append_document_end(&cmd, &filter);
    BSON_APPEND_INT64(&cmd, "limit", 1);
    BSON_APPEND_BOOL(&cmd, "singleBatch", true);
    BSON_APPEND_INT64(&cmd, "maxTimeMS", 10000);
    bson_error_t e;
    bool ok = mongoc_collection_read_command_with_opts(c, &cmd, NULL, NULL, &reply, &e);
    if (!ok)
        fprintf(stderr, "find command: %s\n", e.message);
    bson_destroy(&reply);
    bson_destroy(&cmd);
    mongoc_collection_destroy(c);
    return ok ? 0 : -1;
}

static int op_insert(bench *b, mongoc_client_t *cl, long i)
{
    (void)i;
    mongoc_collection_t *c = mongoc_client_get_collection(cl, b->db, "floor_ins");
    bson_t doc = BSON_INITIALIZER;
    bson_oid_t oid;
    bson_oid_init(&oid, NULL);
    char email[64];
    snprintf(email, sizeof email, "f%ld@floor.io", b->seq++);
    BSON_APPEND_OID(&doc, "_id", &oid);
    BSON_APPEND_UTF8(&doc, "name", "Floor");
    BSON_APPEND_UTF8(&doc, "email", email);
    BSON_APPEND_DOUBLE(&doc, "total_spend", 10);
    BSON_APPEND_DATE_TIME(&doc, "createdAt", 1700000000000LL);
    bson_error_t e;
    bool ok = mongoc_collection_insert_one(c, &doc, NULL, NULL, &e);
    if (!ok)
        fprintf(stderr, "insert: %s\n", e.message);
    bson_destroy(&doc);
    mongoc_collection_destroy(c);
    return ok ? 0 : -1;
}

static int op_count(bench *b, mongoc_client_t *cl, long i)
{
    mongoc_collection_t *c = mongoc_client_get_collection(cl, b->db, "floor");
    bson_t cmd = BSON_INITIALIZER, q, reply;
    BSON_APPEND_UTF8(&cmd, "count", "floor");
    BSON_APPEND_DOCUMENT_BEGIN(&cmd, "query", &q);
    BSON_APPEND_OID(&q, "_id", &b->ids[i % 100]);
    bson_append_document_end(&cmd, &q);
    bson_error_t e;
    bool ok = mongoc_collection_read_command_with_opts(c, &cmd, NULL, NULL, &reply, &e);
    if (!ok)
        fprintf(stderr, "count: %s\n", e.message);
    bson_destroy(&reply);
    bson_destroy(&cmd);
    mongoc_collection_destroy(c);
    return ok ? 0 : -1;
}

static int op_find_page(bench *b, mongoc_client_t *cl, long i)
{
    (void)i;
    mongoc_collection_t *c = mongoc_client_get_collection(cl, b->db, "floor");
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, sort;
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
    BSON_APPEND_INT32(&sort, "_id", 1);
    bson_append_document_end(&opts, &sort);
    BSON_APPEND_INT64(&opts, "limit", 100);
    BSON_APPEND_INT64(&opts, "batchSize", 100);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, &filter, &opts, NULL);
    const bson_t *doc;
    int n = 0;
    while (mongoc_cursor_next(cur, &doc))
        n++;
    mongoc_cursor_destroy(cur);
    bson_destroy(&filter);
    bson_destroy(&opts);
    mongoc_collection_destroy(c);
    return n == 100 ? 0 : -1;
}

/* Runs op n times (pool pop/push around each unless single), prints CPU and wall per op. */
static void run(bench *b, const char *name, op_fn op, long n, bool single)
{
    for (long i = 0; i < n / 10; i++) { /* warm up: connections made, caches filled */
        mongoc_client_t *cl = single ? b->single : mongoc_client_pool_pop(b->pool);
        op(b, cl, i);
        if (!single)
            mongoc_client_pool_push(b->pool, cl);
    }
    double c0 = cpu_us(), w0 = wall_us();
    long fails = 0;
    for (long i = 0; i < n; i++) {
        mongoc_client_t *cl = single ? b->single : mongoc_client_pool_pop(b->pool);
        if (op(b, cl, i) != 0)
            fails++;
        if (!single)
            mongoc_client_pool_push(b->pool, cl);
    }
    double c1 = cpu_us(), w1 = wall_us();
    printf("%-22s cpu %7.1f us/op   wall %7.1f us/op%s\n", name, (c1 - c0) / (double)n,
           (w1 - w0) / (double)n, fails ? "   (FAILURES)" : "");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_db_floor URI [N]\n");
        return 2;
    }
    long n = argc > 2 ? strtol(argv[2], NULL, 10) : 20000;
    if (n < 10)
        n = 10;
    setenv("MONGOC_DISABLE_SHM", "1", 0);
    mongoc_init();
    bson_error_t e;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(argv[1], &e);
    if (!uri) {
        fprintf(stderr, "bad URI: %s\n", e.message);
        return 2;
    }
    bench b = {.pool = mongoc_client_pool_new(uri), .single = mongoc_client_new_from_uri(uri)};
    b.db = mongoc_uri_get_database(uri) ? mongoc_uri_get_database(uri) : "floor";
    mongoc_client_pool_set_error_api(b.pool, MONGOC_ERROR_API_VERSION_2);
    mongoc_client_set_error_api(b.single, MONGOC_ERROR_API_VERSION_2);

    /* 100 documents of about 150 bytes, as the customers of api_bench. */
    mongoc_client_t *cl = mongoc_client_pool_pop(b.pool);
    mongoc_collection_t *c = mongoc_client_get_collection(cl, b.db, "floor");
    mongoc_collection_drop(c, NULL);
    for (int i = 0; i < 100; i++) {
        bson_t doc = BSON_INITIALIZER;
        char email[64];
        snprintf(email, sizeof email, "customer%d@example.com", i);
        bson_oid_init(&b.ids[i], NULL);
        BSON_APPEND_OID(&doc, "_id", &b.ids[i]);
        BSON_APPEND_UTF8(&doc, "name", "Floor Customer");
        BSON_APPEND_UTF8(&doc, "email", email);
        BSON_APPEND_UTF8(&doc, "phone", "+1 555 0100");
        BSON_APPEND_DOUBLE(&doc, "total_spend", 1000.0 + i);
        BSON_APPEND_DATE_TIME(&doc, "createdAt", 1700000000000LL + i);
        BSON_APPEND_DATE_TIME(&doc, "updatedAt", 1700000000000LL + i);
        if (!mongoc_collection_insert_one(c, &doc, NULL, NULL, &e)) {
            fprintf(stderr, "seed: %s\n", e.message);
            return 1;
        }
        bson_destroy(&doc);
    }
    mongoc_collection_destroy(c);
    mongoc_client_pool_push(b.pool, cl);

    printf("bench_db_floor: %ld ops per case, this process's CPU (user+sys) per op\n", n);
    run(&b, "pop+push", op_none, n * 10, false);
    run(&b, "ping", op_ping, n, false);
    run(&b, "find _id (cursor)", op_find_cursor, n, false);
    run(&b, "find _id (command)", op_find_command, n, false);
    run(&b, "insert_one", op_insert, n, false);
    run(&b, "count {_id}", op_count, n, false);
    run(&b, "find 100 (cursor)", op_find_page, n / 4, false);
    run(&b, "single: find _id", op_find_cursor, n, true);

    mongoc_client_destroy(b.single);
    mongoc_client_pool_destroy(b.pool);
    mongoc_uri_destroy(uri);
    mongoc_cleanup();
    return 0;
}
