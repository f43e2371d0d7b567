/* What the dashboard needs of the API, against a real API, Redis and devdb:
 *  - the dead-letter routes (api/routes_dlq.c): three dead letters made with lib/queue on the
 *    ai queue (no consumer runs in this test), listed newest first with their error, paged, one
 *    requeued back to ready, one purged, the rest purged with "all"; unknown queue 404, bad
 *    index 400, missing index 404, staff 403, no credentials 401; every queue GET /api/queues
 *    names has its dead-letter list (events and webhooks too, as `minicrm dlq`);
 *  - GET /api/campaigns/:id/logs?status= (the campaign page's filter): logs of three statuses
 *    written straight into the database, each filter returns exactly its own; 400 otherwise;
 *  - GET /api/queues names the held sends of paused campaigns on the sends queue;
 *  - the customer page's reads: GET /customers?q= (name or email, any case, metacharacters
 *    literal), GET /orders?customer_id= and GET /communication?customer_id=. */
#include "apitest.h"
#include "queue.h"
#include "rconn.h"
#include "test.h"

#include <mongoc/mongoc.h>
#include <stdio.h>
#include <string.h>

static apitest T;

/* Three dead letters on the ai queue: job {"n":i} with error "boom i", i = 0..2 (2 newest). */
static int make_dead(rconn **out_c, queue **out_q)
{
    char err[256];
    rconn *c = rconn_new(T.env.redis_url, 2000, err, sizeof err);
    queue *q = c ? queue_open(c, T.env.prefix, QUEUE_AI, NULL, NULL, err, sizeof err) : NULL;
    if (!q) {
        fprintf(stderr, "make_dead: %s\n", err);
        rconn_free(c);
        return -1;
    }
    for (int i = 0; i < 3; i++) {
        char job[32], why[32];
        snprintf(job, sizeof job, "{\"n\":%d}", i);
        snprintf(why, sizeof why, "boom %d", i);
        const char *parts[] = {job}, *reasons[] = {why};
        size_t lens[] = {strlen(job)};
        if (queue_dead_parts(q, parts, lens, reasons, 1) != 0)
            return -1;
    }
    *out_c = c;
    *out_q = q;
    return 0;
}

TEST(list_requeue_purge)
{
    rconn *c = NULL;
    queue *q = NULL;
    CHECK(make_dead(&c, &q) == 0);
    const char *h[] = {apitest_admin_auth(&T), NULL};
    apitest_resp r;

    CHECK(apitest_request(&T, "GET", "/api/queues/ai/dead?limit=2", h, NULL, 0, &r) == 0);
    CHECK_INT_EQ(r.status, 200);
    CHECK_INT_EQ(json_integer_value(json_object_get(r.json, "total")), 3);
    json_t *dead = json_object_get(r.json, "dead");
    CHECK_INT_EQ(json_array_size(dead), 2);
    json_t *d0 = json_array_get(dead, 0);
    CHECK_INT_EQ(json_integer_value(json_object_get(d0, "index")), 0);
    CHECK_STR_EQ(json_string_value(json_object_get(d0, "error")), "boom 2");
    CHECK_INT_EQ(json_integer_value(json_object_get(json_object_get(d0, "job"), "n")), 2);
    apitest_resp_release(&r);

    CHECK(apitest_request(&T, "GET", "/api/queues/ai/dead?limit=2&page=2", h, NULL, 0, &r) == 0);
    CHECK_INT_EQ(r.status, 200);
    dead = json_object_get(r.json, "dead");
    CHECK_INT_EQ(json_array_size(dead), 1);
    CHECK_INT_EQ(json_integer_value(json_object_get(json_array_get(dead, 0), "index")), 2);
    CHECK_STR_EQ(json_string_value(json_object_get(json_array_get(dead, 0), "error")), "boom 0");
    apitest_resp_release(&r);

    /* Requeue the newest: its job is back on ready, bookkeeping removed. */
    CHECK(apitest_request(&T, "POST", "/api/queues/ai/dead/0/requeue", h, NULL, 0, &r) == 0);
    CHECK_INT_EQ(r.status, 200);
    CHECK_INT_EQ(json_integer_value(json_object_get(r.json, "requeued")), 1);
    apitest_resp_release(&r);
    queue_stats st;
    char err[256];
    CHECK(queue_stats_get(c, T.env.prefix, QUEUE_AI, &st, err, sizeof err) == 0);
    CHECK_INT_EQ(st.ready, 1);
    CHECK_INT_EQ(st.dead, 2);

    /* Purge index 1 (the oldest now), then past the end, then all. */
    CHECK(apitest_request(&T, "POST", "/api/queues/ai/dead/1/purge", h, NULL, 0, &r) == 0);
    CHECK_INT_EQ(r.status, 200);
    CHECK_INT_EQ(json_integer_value(json_object_get(r.json, "purged")), 1);
    apitest_resp_release(&r);
    CHECK(apitest_request(&T, "GET", "/api/queues/ai/dead", h, NULL, 0, &r) == 0);
    CHECK_INT_EQ(json_integer_value(json_object_get(r.json, "total")), 1);
    CHECK_STR_EQ(json_string_value(
                     json_object_get(json_array_get(json_object_get(r.json, "dead"), 0), "error")),
                 "boom 1");
    apitest_resp_release(&r);
    CHECK(apitest_request(&T, "POST", "/api/queues/ai/dead/5/purge", h, NULL, 0, &r) == 0);
    CHECK_INT_EQ(r.status, 404);
    apitest_resp_release(&r);
    CHECK(apitest_request(&T, "POST", "/api/queues/ai/dead/all/purge", h, NULL, 0, &r) == 0);
    CHECK_INT_EQ(r.status, 200);
    CHECK_INT_EQ(json_integer_value(json_object_get(r.json, "purged")), 1);
    apitest_resp_release(&r);
    CHECK(queue_stats_get(c, T.env.prefix, QUEUE_AI, &st, err, sizeof err) == 0);
    CHECK_INT_EQ(st.dead, 0);
    queue_close(q);
    rconn_free(c);
}

TEST(every_queue_has_dead_letters)
{
    const char *h[] = {apitest_admin_auth(&T), NULL};
    apitest_resp r;
    CHECK(apitest_request(&T, "GET", "/api/queues", h, NULL, 0, &r) == 0);
    CHECK_INT_EQ(r.status, 200);
    json_t *qs = json_incref(json_object_get(r.json, "queues"));
    apitest_resp_release(&r);
    CHECK(json_array_size(qs) >= 8);
    int ok = 0;
    for (size_t i = 0; i < json_array_size(qs); i++) {
        char path[128];
        const char *name = json_string_value(json_object_get(json_array_get(qs, i), "name"));
        snprintf(path, sizeof path, "/api/queues/%s/dead", name ? name : "?");
        memset(&r, 0, sizeof r);
        if (apitest_request(&T, "GET", path, h, NULL, 0, &r) == 0 && r.status == 200)
            ok++;
        else
            fprintf(stderr, "  %s: %ld\n", path, r.status);
        apitest_resp_release(&r);
    }
    CHECK_INT_EQ(ok, (int)json_array_size(qs));
    json_decref(qs);
}

TEST(errors)
{
    const char *h[] = {apitest_admin_auth(&T), NULL};
    const char *hs[] = {apitest_staff_auth(&T), NULL};
    apitest_resp r;
    CHECK(apitest_request(&T, "GET", "/api/queues/nope/dead", h, NULL, 0, &r) == 0);
    CHECK_INT_EQ(r.status, 404);
    CHECK_STR_CONTAINS(json_string_value(json_object_get(r.json, "error")), "queue");
    apitest_resp_release(&r);
    CHECK(apitest_request(&T, "POST", "/api/queues/sends/dead/-1/requeue", h, NULL, 0, &r) == 0);
    CHECK_INT_EQ(r.status, 400);
    apitest_resp_release(&r);
    CHECK(apitest_request(&T, "GET", "/api/queues/sends/dead?limit=0", h, NULL, 0, &r) == 0);
    CHECK_INT_EQ(r.status, 400);
    apitest_resp_release(&r);
    CHECK(apitest_request(&T, "GET", "/api/queues/sends/dead", hs, NULL, 0, &r) == 0);
    CHECK_INT_EQ(r.status, 403);
    apitest_resp_release(&r);
    CHECK(apitest_request(&T, "POST", "/api/queues/sends/dead/all/requeue", NULL, NULL, 0, &r) ==
          0);
    CHECK_INT_EQ(r.status, 401);
    apitest_resp_release(&r);
}

TEST(logs_filtered_by_status)
{
    const char *h[] = {apitest_admin_auth(&T), NULL};
    apitest_resp r;
    const char *body = "{\"name\":\"filter\",\"rules\":{\"min_spend\":999999999}}";
    CHECK(apitest_request(&T, "POST", "/api/campaigns", h, body, strlen(body), &r) == 0);
    CHECK_INT_EQ(r.status, 201);
    char cid[25];
    snprintf(cid, sizeof cid, "%s",
             json_string_value(json_object_get(json_object_get(r.json, "campaign"), "_id")));
    apitest_resp_release(&r);
    CHECK_INT_EQ(strlen(cid), 24);

    /* Logs of a fake audience: 2 SENT, 1 FAILED, 3 PENDING (no worker runs here). */
    mongoc_client_t *cl = mongoc_client_new(T.env.mongo_uri);
    CHECK(cl != NULL);
    mongoc_collection_t *logs =
        mongoc_client_get_collection(cl, T.env.db_name, "communication_logs1");
    bson_oid_t camp;
    bson_oid_init_from_string(&camp, cid);
    static const char *const statuses[] = {"SENT",    "SENT",    "FAILED",
                                           "PENDING", "PENDING", "PENDING"};
    for (int i = 0; i < 6; i++) {
        bson_oid_t cust;
        bson_oid_init(&cust, NULL);
        bson_t *d = BCON_NEW("campaign_id", BCON_OID(&camp), "customer_id", BCON_OID(&cust),
                             "message", BCON_UTF8("hi"), "status", BCON_UTF8(statuses[i]));
        bson_error_t e;
        CHECK_MSG(mongoc_collection_insert_one(logs, d, NULL, NULL, &e), "%s", e.message);
        bson_destroy(d);
    }
    mongoc_collection_destroy(logs);
    mongoc_client_destroy(cl);

    static const struct {
        const char *q;
        size_t n;
    } cases[] = {{"", 6},
                 {"?status=SENT", 2},
                 {"?status=FAILED", 1},
                 {"?status=PENDING", 3},
                 {"?status=CANCELLED", 0},
                 {"?status=PENDING&limit=2", 2}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[128];
        snprintf(path, sizeof path, "/api/campaigns/%s/logs%s", cid, cases[i].q);
        CHECK(apitest_request(&T, "GET", path, h, NULL, 0, &r) == 0);
        CHECK_MSG(r.status == 200, "%s: %ld", path, r.status);
        CHECK_MSG(json_array_size(r.json) == cases[i].n, "%s: %zu logs", path,
                  json_array_size(r.json));
        const char *want = strchr(cases[i].q, '=') ? strchr(cases[i].q, '=') + 1 : NULL;
        for (size_t j = 0; want && j < json_array_size(r.json); j++)
            CHECK(strncmp(json_string_value(json_object_get(json_array_get(r.json, j), "status")),
                          want, strcspn(want, "&")) == 0);
        apitest_resp_release(&r);
    }
    char path[128];
    snprintf(path, sizeof path, "/api/campaigns/%s/logs?status=sent", cid);
    CHECK(apitest_request(&T, "GET", path, h, NULL, 0, &r) == 0);
    CHECK_INT_EQ(r.status, 400);
    CHECK_STR_CONTAINS(json_string_value(json_object_get(r.json, "error")), "status");
    apitest_resp_release(&r);
}

TEST(queues_show_held_sends)
{
    const char *h[] = {apitest_admin_auth(&T), NULL};
    apitest_resp r;
    CHECK(apitest_request(&T, "GET", "/api/queues", h, NULL, 0, &r) == 0);
    CHECK_INT_EQ(r.status, 200);
    json_t *qs = json_object_get(r.json, "queues"), *q;
    size_t i;
    int seen = 0;
    json_array_foreach(qs, i, q)
    {
        const char *name = json_string_value(json_object_get(q, "name"));
        if (strcmp(name, "sends") == 0) {
            CHECK(json_is_integer(json_object_get(q, "held")));
            CHECK_INT_EQ(json_integer_value(json_object_get(q, "held")), 0);
            seen = 1;
        } else {
            CHECK(json_object_get(q, "held") == NULL);
        }
    }
    CHECK_INT_EQ(seen, 1);
    apitest_resp_release(&r);
}

/* POST body, expect status; returns the new document's _id into id (25 bytes) when given. */
static void create(const char *path, const char *body, char *id)
{
    const char *h[] = {apitest_admin_auth(&T), NULL};
    apitest_resp r;
    CHECK(apitest_request(&T, "POST", path, h, body, strlen(body), &r) == 0);
    CHECK_MSG(r.status == 201, "%s %s: %ld %s", path, body, r.status, r.body);
    if (id) {
        json_t *doc = json_object_get(r.json, strcmp(path, "/customers") ? "order" : "customer");
        snprintf(id, 25, "%s", json_string_value(json_object_get(doc, "_id")));
    }
    apitest_resp_release(&r);
}

/* GET path answers 200 with `want` items (the array itself, or the array under key). */
static void expect_count(const char *path, const char *key, size_t want)
{
    const char *h[] = {apitest_admin_auth(&T), NULL};
    apitest_resp r;
    CHECK(apitest_request(&T, "GET", path, h, NULL, 0, &r) == 0);
    CHECK_MSG(r.status == 200, "%s: %ld %s", path, r.status, r.body);
    size_t n = json_array_size(key ? json_object_get(r.json, key) : r.json);
    CHECK_MSG(n == want, "%s: %zu items, want %zu", path, n, want);
    apitest_resp_release(&r);
}

TEST(customer_search_and_history)
{
    char ann[25], bob[25];
    create("/customers", "{\"name\":\"Ann Search\",\"email\":\"ann.q@searchme.test\"}", ann);
    create("/customers", "{\"name\":\"Bob (vip)\",\"email\":\"bob@other.test\"}", bob);
    create("/customers", "{\"name\":\"Cy\",\"email\":\"cy@searchme.test\"}", NULL);
    expect_count("/customers?q=searchme", NULL, 2);
    expect_count("/customers?q=ANN", NULL, 1);
    expect_count("/customers?q=(vip)", NULL, 1);
    expect_count("/customers?q=.%2A", NULL, 0); /* ".*" is literal */
    expect_count("/customers?q=searchme&limit=1", NULL, 1);
    const char *h[] = {apitest_admin_auth(&T), NULL};
    apitest_resp r;
    char big[160] = "/customers?q=";
    memset(big + strlen(big), 'a', 120); /* 101 bytes and more: 400 */
    big[13 + 120] = '\0';
    CHECK(apitest_request(&T, "GET", big, h, NULL, 0, &r) == 0);
    CHECK_INT_EQ(r.status, 400);
    apitest_resp_release(&r);

    char body[200], path[160];
    for (int i = 0; i < 2; i++) {
        snprintf(body, sizeof body, "{\"customer_id\":\"%s\",\"amount\":%d}", ann, 10 + i);
        create("/orders", body, NULL);
    }
    snprintf(body, sizeof body, "{\"customer_id\":\"%s\",\"amount\":5}", bob);
    create("/orders", body, NULL);
    snprintf(path, sizeof path, "/orders?customer_id=%s", ann);
    expect_count(path, NULL, 2);
    snprintf(path, sizeof path, "/orders?customer_id=%s", bob);
    expect_count(path, NULL, 1);
    CHECK(apitest_request(&T, "GET", "/orders?customer_id=nope", h, NULL, 0, &r) == 0);
    CHECK_INT_EQ(r.status, 400);
    apitest_resp_release(&r);

    /* One-off messages write a log per call (no worker needed to see them listed). */
    snprintf(body, sizeof body, "{\"customer_id\":\"%s\",\"message\":\"hello\"}", ann);
    CHECK(apitest_request(&T, "POST", "/api/messages", h, body, strlen(body), &r) == 0);
    CHECK_INT_EQ(r.status, 202);
    apitest_resp_release(&r);
    snprintf(path, sizeof path, "/communication?customer_id=%s", ann);
    expect_count(path, "logs", 1);
    snprintf(path, sizeof path, "/communication?customer_id=%s", bob);
    expect_count(path, "logs", 0);
    CHECK(apitest_request(&T, "GET", "/communication?customer_id=zz", h, NULL, 0, &r) == 0);
    CHECK_INT_EQ(r.status, 400);
    apitest_resp_release(&r);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {TEST_ENTRY(list_requeue_purge),
                                      TEST_ENTRY(every_queue_has_dead_letters),
                                      TEST_ENTRY(errors),
                                      TEST_ENTRY(logs_filtered_by_status),
                                      TEST_ENTRY(queues_show_held_sends),
                                      TEST_ENTRY(customer_search_and_history)};
    if (apitest_start(&T, NULL) != 0)
        return 1;
    mongoc_init();
    int rc = test_run_all(__FILE__, cases, 5, argc, argv);
    apitest_stop(&T);
    return rc;
}
