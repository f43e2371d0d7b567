/*
 * test_api_contract: regression tests for the discrepancies found by the contract audit of
 * minicrm-api (an outside user's curl session against /work/shared/API-CONTRACT.md). Each test
 * names the bug it guards: a real minicrm-api on private redis-server + devdb (apitest).
 *
 *   error_bodies_are_always_json     invalid UTF-8 in a path, or a message cut inside a
 *                                    multi-byte character, gave `{}` (400/404) or a 503
 *                                    "out of memory" instead of {"error": "..."}
 *   nul_in_path_is_not_the_list      "/customers/%00" was cut to "/customers/" and answered the
 *                                    customer list (same for campaigns and their logs)
 *   tag_must_be_utf8                 ?tag=%ff reached the database as a $regex: 500
 *   campaign_text_fields             blank campaign name accepted, NUL silently cut name and
 *                                    message, blank selectedTags accepted
 *   loyalty_word_rule                vip|elite|prime is a word as in JavaScript's \b ('_' is a
 *                                    word character: "vip_club" is not the word "vip")
 *   body_of_wrong_shape              "null" / "3" bodies were called "malformed JSON"; a bad
 *                                    element of a receipt batch read "receipts[0]. must be ..."
 *   empty_paging_params              "?limit=&page=" (empty form fields) was a 400
 *   logs_cursor_is_customer_id      guards the shared list helper (cursor read before populate)
 *   single_receipt_says_updated      a first receipt answered without "updated" (a repeat says
 *                                    "updated": false, so clients need true for the first)
 */
#include "apitest.h"
#include "hmac.h"
#include "test.h"

#include <mongoc/mongoc.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SECRET "test-vendor-secret"

static apitest T;

static int req(apitest_resp *r, const char *method, const char *path, const char *body)
{
    const char *h[] = {apitest_admin_auth(&T), NULL};
    return apitest_request(&T, method, path, h, body, body ? strlen(body) : 0, r);
}

static const char *err_of(const apitest_resp *r)
{
    return r->json ? json_string_value(json_object_get(r->json, "error")) : NULL;
}

/* Status and error text of one admin request; the error text is copied into err. */
static long call(const char *method, const char *path, const char *body, char *err, size_t n)
{
    apitest_resp r;
    if (req(&r, method, path, body) != 0)
        return -1;
    long st = r.status;
    const char *e = err_of(&r);
    snprintf(err, n, "%s", e ? e : "");
    apitest_resp_release(&r);
    return st;
}

static long count_campaigns(void)
{
    apitest_resp r;
    req(&r, "GET", "/api/campaigns?limit=1000", NULL);
    long n = json_is_array(r.json) ? (long)json_array_size(r.json) : -1;
    apitest_resp_release(&r);
    return n;
}

/* ------------------------------------------------------------------------------------------ */

TEST(error_bodies_are_always_json)
{
    CHECK(apitest_ensure(&T, NULL) == 0);
    char e[512];
    CHECK_INT_EQ(call("GET", "/%ff%fe", NULL, e, sizeof e), 404);
    CHECK_STR_CONTAINS(e, "no such route");
    /* A 65-byte rule key: the message quotes 64 bytes of it, which ends inside an 'é'. */
    char body[256], key[96] = "a";
    for (int i = 0; i < 40; i++)
        strcat(key, "\xc3\xa9");
    snprintf(body, sizeof body, "{\"rules\":{\"%s\":1}}", key);
    CHECK_INT_EQ(call("POST", "/api/campaigns/preview", body, e, sizeof e), 400);
    CHECK_STR_CONTAINS(e, "unknown rule");
    snprintf(body, sizeof body, "{\"name\":\"n\",\"rules\":{\"%s\":1}}", key);
    CHECK_INT_EQ(call("POST", "/api/campaigns", body, e, sizeof e), 400);
    CHECK_STR_CONTAINS(e, "unknown rule");
}

TEST(nul_in_path_is_not_the_list)
{
    CHECK(apitest_ensure(&T, NULL) == 0);
    char e[512];
    CHECK_INT_EQ(call("GET", "/customers/%00", NULL, e, sizeof e), 400);
    CHECK_STR_CONTAINS(e, "id must be a 24-hex id");
    CHECK_INT_EQ(call("GET", "/api/campaigns/%00", NULL, e, sizeof e), 400);
    CHECK_INT_EQ(call("GET", "/api/campaigns/%00/logs", NULL, e, sizeof e), 400);
    CHECK_INT_EQ(call("GET", "/api/campaigns/6b08469b2a9bb8fcce0b0000%00", NULL, e, sizeof e), 400);
    /* a NUL in a query value is kept literal: no match, not an error */
    apitest_resp r;
    req(&r, "GET", "/api/campaigns?tag=%00", NULL);
    CHECK_INT_EQ(r.status, 200);
    CHECK(json_is_array(r.json));
    apitest_resp_release(&r);
    CHECK_INT_EQ(call("GET", "/orders?limit=1%00", NULL, e, sizeof e), 400);
    CHECK_STR_CONTAINS(e, "limit");
}

TEST(tag_must_be_utf8)
{
    CHECK(apitest_ensure(&T, NULL) == 0);
    char e[512];
    CHECK_INT_EQ(call("GET", "/api/campaigns?tag=%ff", NULL, e, sizeof e), 400);
    CHECK_STR_EQ(e, "tag must be valid UTF-8");
    CHECK_INT_EQ(call("GET", "/api/campaigns?tag=%c3%28", NULL, e, sizeof e), 400);
    CHECK_INT_EQ(call("GET", "/api/campaigns?tag=%ed%a0%80", NULL, e, sizeof e),
                 400); /* surrogate */
    CHECK_INT_EQ(call("GET", "/api/campaigns?tag=%c3%a9t%c3%a9", NULL, e, sizeof e), 200);
}

TEST(campaign_text_fields)
{
    CHECK(apitest_ensure(&T, NULL) == 0);
    long before = count_campaigns();
    CHECK(before >= 0);
    char e[512];
    CHECK_INT_EQ(call("POST", "/api/campaigns", "{\"name\":\"   \",\"rules\":{}}", e, sizeof e),
                 400);
    CHECK_STR_EQ(e, "name must not be empty");
    CHECK_INT_EQ(call("POST", "/api/campaigns", "{\"rules\":{}}", e, sizeof e), 400);
    CHECK_STR_EQ(e, "name is required");
    CHECK_INT_EQ(call("POST", "/api/campaigns", "{\"name\":7,\"rules\":{}}", e, sizeof e), 400);
    CHECK_STR_EQ(e, "name must be a string");
    CHECK_INT_EQ(
        call("POST", "/api/campaigns", "{\"name\":\"a\\u0000b\",\"rules\":{}}", e, sizeof e), 400);
    CHECK_STR_EQ(e, "name must not contain NUL characters");
    CHECK_INT_EQ(call("POST", "/api/campaigns",
                      "{\"name\":\"ok\",\"rules\":{},\"message\":\"Hi\\u0000{{x}}\"}", e, sizeof e),
                 400);
    CHECK_STR_EQ(e, "message must not contain NUL characters");
    CHECK_INT_EQ(call("POST", "/api/campaigns",
                      "{\"name\":\"ok\",\"rules\":{},\"selectedTags\":[\"Q3\",\"  \"]}", e,
                      sizeof e),
                 400);
    CHECK_STR_CONTAINS(e, "selectedTags[1]");
    CHECK_INT_EQ(call("POST", "/api/campaigns",
                      "{\"name\":\"ok\",\"rules\":{},\"selectedTags\":[\"a\\u0000b\"]}", e,
                      sizeof e),
                 400);
    CHECK_STR_CONTAINS(e, "selectedTags[0]");
    CHECK_INT_EQ(count_campaigns(), before); /* nothing stored by the refused requests */
}

/* Tags suggested for `name` with no rules (the audience is everyone: a customer exists). */
static int has_loyalty(const char *name)
{
    char body[256];
    snprintf(body, sizeof body, "{\"name\":\"%s\",\"rules\":{}}", name);
    apitest_resp r;
    req(&r, "POST", "/api/campaigns/suggest-tags", body);
    int found = -1;
    json_t *tags = json_object_get(r.json, "tags");
    if (r.status == 200 && json_is_array(tags)) {
        found = 0;
        size_t i;
        json_t *v;
        json_array_foreach(tags, i, v) if (strcmp(json_string_value(v), "Loyalty") == 0) found = 1;
    }
    apitest_resp_release(&r);
    return found;
}

TEST(loyalty_word_rule)
{
    CHECK(apitest_ensure(&T, NULL) == 0);
    char e[256];
    CHECK_INT_EQ(
        call("POST", "/customers", "{\"name\":\"L\",\"email\":\"l@loyal.io\"}", e, sizeof e), 201);
    CHECK_INT_EQ(has_loyalty("VIP-club"), 1);
    CHECK_INT_EQ(has_loyalty("the Elite few"), 1);
    CHECK_INT_EQ(has_loyalty("PRIME"), 1);
    CHECK_INT_EQ(has_loyalty("vip_club"), 0);
    CHECK_INT_EQ(has_loyalty("primetime"), 0);
    CHECK_INT_EQ(has_loyalty("supervip"), 0);
}

TEST(body_of_wrong_shape)
{
    CHECK(apitest_ensure(&T, NULL) == 0);
    static const char *const paths[] = {"/customers", "/orders", "/api/campaigns",
                                        "/api/campaigns/preview", "/api/vendor/send"};
    static const char *const bodies[] = {"null", "3", "\"x\"", "true", "[]"};
    char e[512];
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        for (size_t j = 0; j < sizeof bodies / sizeof bodies[0]; j++) {
            CHECK_INT_EQ(call("POST", paths[i], bodies[j], e, sizeof e), 400);
            CHECK_STR_EQ(e, "body must be a JSON object");
        }
    CHECK_INT_EQ(call("POST", "/customers", "{\"name\":", e, sizeof e), 400);
    CHECK_STR_CONTAINS(e, "malformed JSON");

    char sig[HMAC_HEX_LEN + 1], hs[128], ts[32], ht[64];
    const char *h[] = {hs, ht, NULL};
    static const char *const rb[] = {"[1]", "null", "\"x\""};
    static const char *const want[] = {"receipts[0] must be an object",
                                       "body must be a receipt object or an array of them",
                                       "body must be a receipt object or an array of them"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(ts, sizeof ts, "%lld", (long long)time(NULL));
        hmac_sign_receipt(SECRET, ts, rb[i], strlen(rb[i]), sig);
        snprintf(hs, sizeof hs, "X-Signature: %s", sig);
        snprintf(ht, sizeof ht, "X-Timestamp: %s", ts);
        apitest_resp r;
        apitest_request(&T, "POST", "/api/receipts/delivery", h, rb[i], strlen(rb[i]), &r);
        CHECK_INT_EQ(r.status, 400);
        CHECK_STR_EQ(err_of(&r), want[i]);
        apitest_resp_release(&r);
    }
}

TEST(empty_paging_params)
{
    CHECK(apitest_ensure(&T, NULL) == 0);
    apitest_resp r;
    req(&r, "GET", "/communication?page=&limit=", NULL);
    CHECK_INT_EQ(r.status, 200);
    CHECK_INT_EQ(json_integer_value(json_object_get(r.json, "page")), 1);
    CHECK_INT_EQ(json_integer_value(json_object_get(r.json, "limit")), 20);
    apitest_resp_release(&r);
    req(&r, "GET", "/orders?limit=", NULL);
    CHECK_INT_EQ(r.status, 200);
    CHECK(json_is_array(r.json));
    apitest_resp_release(&r);
    char e[256];
    CHECK_INT_EQ(call("GET", "/orders?limit=0", NULL, e, sizeof e), 400); /* still strict */
    CHECK_INT_EQ(call("GET", "/orders?page=x", NULL, e, sizeof e), 400);
}

/* Insert a PENDING log as the fan-out worker writes it; NULL hex ids make fresh ones. The log
 * id goes to out (25 bytes). 0 or -1. */
static int insert_log(const char *camp_hex, const char *cust_hex, char out[25])
{
    mongoc_client_t *cl = mongoc_client_new(T.env.mongo_uri);
    mongoc_collection_t *coll =
        mongoc_client_get_collection(cl, T.env.db_name, "communication_logs1");
    bson_oid_t id, camp, cust;
    bson_oid_init(&id, NULL);
    if (camp_hex)
        bson_oid_init_from_string(&camp, camp_hex);
    else
        bson_oid_init(&camp, NULL);
    if (cust_hex)
        bson_oid_init_from_string(&cust, cust_hex);
    else
        bson_oid_init(&cust, NULL);
    bson_t d = BSON_INITIALIZER;
    BSON_APPEND_OID(&d, "_id", &id);
    BSON_APPEND_OID(&d, "campaign_id", &camp);
    BSON_APPEND_OID(&d, "customer_id", &cust);
    BSON_APPEND_UTF8(&d, "message", "hi");
    BSON_APPEND_UTF8(&d, "status", "PENDING");
    BSON_APPEND_DATE_TIME(&d, "createdAt", (int64_t)time(NULL) * 1000);
    int rc = mongoc_collection_insert_one(coll, &d, NULL, NULL, NULL) ? 0 : -1;
    bson_oid_to_string(&id, out);
    bson_destroy(&d);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(cl);
    return rc;
}

static int new_id(const char *path, const char *body, const char *member, char out[25])
{
    apitest_resp r;
    req(&r, "POST", path, body);
    const char *id = json_string_value(json_object_get(json_object_get(r.json, member), "_id"));
    int rc = r.status == 201 && id ? 0 : -1;
    snprintf(out, 25, "%s", id ? id : "");
    apitest_resp_release(&r);
    return rc;
}

/* Guards the shared list helper (api_send_query): a full page of campaign logs carries
 * X-Next-Cursor = the last log's customer id (read before customer_id is populated), and
 * ?after= continues from it. */
TEST(logs_cursor_is_customer_id)
{
    CHECK(apitest_ensure(&T, NULL) == 0);
    char camp[25], c1[25], c2[25], l1[25], l2[25], path[160], buf[64];
    CHECK(new_id("/customers", "{\"name\":\"C1\",\"email\":\"c1@cur.io\"}", "customer", c1) == 0);
    CHECK(new_id("/customers", "{\"name\":\"C2\",\"email\":\"c2@cur.io\"}", "customer", c2) == 0);
    CHECK(new_id("/api/campaigns", "{\"name\":\"cursor\",\"rules\":{}}", "campaign", camp) == 0);
    CHECK(insert_log(camp, c1, l1) == 0);
    CHECK(insert_log(camp, c2, l2) == 0);
    apitest_resp r;
    snprintf(path, sizeof path, "/api/campaigns/%s/logs?limit=1", camp);
    req(&r, "GET", path, NULL);
    CHECK_INT_EQ(r.status, 200);
    CHECK_INT_EQ(json_array_size(r.json), 1);
    CHECK_STR_EQ(apitest_resp_header(&r, "X-Next-Cursor", buf, sizeof buf), c1);
    json_t *ref = json_object_get(json_array_get(r.json, 0), "customer_id");
    CHECK_STR_EQ(json_string_value(json_object_get(ref, "email")), "c1@cur.io");
    apitest_resp_release(&r);
    snprintf(path, sizeof path, "/api/campaigns/%s/logs?limit=1&after=%s", camp, c1);
    req(&r, "GET", path, NULL);
    CHECK_INT_EQ(json_array_size(r.json), 1);
    ref = json_object_get(json_array_get(r.json, 0), "customer_id");
    CHECK_STR_EQ(json_string_value(json_object_get(ref, "_id")), c2);
    CHECK_STR_EQ(json_string_value(json_object_get(ref, "name")), "C2");
    apitest_resp_release(&r);
    snprintf(path, sizeof path, "/api/campaigns/%s/logs?limit=5", camp);
    req(&r, "GET", path, NULL);
    CHECK_INT_EQ(json_array_size(r.json), 2);
    CHECK(apitest_resp_header(&r, "X-Next-Cursor", buf, sizeof buf) == NULL); /* not full */
    apitest_resp_release(&r);
}

TEST(single_receipt_says_updated)
{
    CHECK(apitest_ensure(&T, NULL) == 0);
    char hex[25], body[160], sig[HMAC_HEX_LEN + 1], hs[128], ts[32], ht[64];
    CHECK(insert_log(NULL, NULL, hex) == 0);
    snprintf(body, sizeof body, "{\"log_id\":\"%s\",\"vendorMsgId\":\"v1\",\"status\":\"SENT\"}",
             hex);
    snprintf(ts, sizeof ts, "%lld", (long long)time(NULL));
    hmac_sign_receipt(SECRET, ts, body, strlen(body), sig);
    snprintf(hs, sizeof hs, "X-Signature: %s", sig);
    snprintf(ht, sizeof ht, "X-Timestamp: %s", ts);
    const char *h[] = {hs, ht, NULL};
    apitest_resp r;
    apitest_request(&T, "POST", "/api/receipts/delivery", h, body, strlen(body), &r);
    CHECK_INT_EQ(r.status, 202);
    CHECK(json_is_true(json_object_get(r.json, "ok")));
    CHECK(json_is_true(json_object_get(r.json, "updated")));
    CHECK(json_is_true(json_object_get(r.json, "queued")));
    apitest_resp_release(&r);
}

/* Byte-for-byte: a list page of stored documents with every field type the lists show (escapes,
 * control characters, UTF-8, doubles of several shapes, int32/int64, bool, null, dates, arrays,
 * nested documents) and a populated list (campaign logs with their customer) answer exactly the
 * bytes stored in tests/api/expected/list_pages.txt, one line per page (and /api/users, whose
 * documents are renamed: _id -> id last, google_sub dropped). The documents have fixed
 * ids below any ObjectId made at run time, so they are the first page of /customers. */
static int insert_fixed(const char *coll_name, bson_t *d)
{
    mongoc_client_t *cl = mongoc_client_new(T.env.mongo_uri);
    mongoc_collection_t *coll = mongoc_client_get_collection(cl, T.env.db_name, coll_name);
    int rc = mongoc_collection_insert_one(coll, d, NULL, NULL, NULL) ? 0 : -1;
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(cl);
    bson_destroy(d);
    return rc;
}

TEST(list_page_bytes)
{
    CHECK(apitest_ensure(&T, NULL) == 0);
    bson_oid_t c1, c2, c3, camp, l1, l2;
    bson_oid_init_from_string(&c1, "000000000000000000000a01");
    bson_oid_init_from_string(&c2, "000000000000000000000a02");
    bson_oid_init_from_string(&c3, "000000000000000000000a03");
    bson_oid_init_from_string(&camp, "000000000000000000000c01");
    bson_oid_init_from_string(&l1, "000000000000000000000d01");
    bson_oid_init_from_string(&l2, "000000000000000000000d02");
    const int64_t t0 = 1700000000123;
    CHECK(insert_fixed(
              "customer1",
              BCON_NEW("_id", BCON_OID(&c1), "name",
                       BCON_UTF8("Asha \"A\" \\ / \n\t\x01\x1f caf\xc3\xa9 \xf0\x9f\x98\x80"),
                       "email", BCON_UTF8("asha@example.com"), "total_spend", BCON_DOUBLE(5200),
                       "visits", BCON_INT32(-7), "last_visit_date", BCON_DATE_TIME(t0), "createdAt",
                       BCON_DATE_TIME(t0 + 1), "updatedAt", BCON_DATE_TIME(-86400000), "__v",
                       BCON_INT32(0))) == 0);
    CHECK(insert_fixed("customer1",
                       BCON_NEW("_id", BCON_OID(&c2), "name", BCON_UTF8("B"), "email",
                                BCON_UTF8("b@example.com"), "total_spend", BCON_DOUBLE(0.1), "big",
                                BCON_INT64(9007199254740993LL), "ratio", BCON_DOUBLE(1e21), "tiny",
                                BCON_DOUBLE(-2.5e-7), "ok", BCON_BOOL(true), "none", BCON_NULL,
                                "tags", "[", BCON_UTF8("vip"), BCON_INT32(3), "]", "addr", "{",
                                "city", BCON_UTF8("Pune"), "zip", BCON_INT64(411001), "}",
                                "createdAt", BCON_DATE_TIME(t0))) == 0);
    CHECK(insert_fixed("customer1", BCON_NEW("_id", BCON_OID(&c3), "name", BCON_UTF8(""), "email",
                                             BCON_UTF8("c@example.com"), "total_spend",
                                             BCON_DOUBLE(123456789.125))) == 0);
    CHECK(insert_fixed("campaigns1", BCON_NEW("_id", BCON_OID(&camp), "name",
                                              BCON_UTF8("Fixed \xe2\x80\x94 campaign"), "createdAt",
                                              BCON_DATE_TIME(t0))) == 0);
    CHECK(insert_fixed("communication_logs1",
                       BCON_NEW("_id", BCON_OID(&l1), "campaign_id", BCON_OID(&camp), "customer_id",
                                BCON_OID(&c1), "message", BCON_UTF8("Hi \"Asha\""), "status",
                                BCON_UTF8("SENT"), "vendorMsgId", BCON_UTF8("v1"), "createdAt",
                                BCON_DATE_TIME(t0), "updatedAt", BCON_DATE_TIME(t0 + 999))) == 0);
    bson_oid_t gone;
    bson_oid_init_from_string(&gone, "000000000000000000000eee"); /* no such customer: null */
    CHECK(insert_fixed("communication_logs1",
                       BCON_NEW("_id", BCON_OID(&l2), "campaign_id", BCON_OID(&camp), "customer_id",
                                BCON_OID(&gone), "message", BCON_UTF8("x"), "status",
                                BCON_UTF8("PENDING"), "vendorMsgId", BCON_NULL, "createdAt",
                                BCON_DATE_TIME(t0))) == 0);
    bson_oid_t u1, u2;
    bson_oid_init_from_string(&u1, "000000000000000000000f01");
    bson_oid_init_from_string(&u2, "000000000000000000000f02");
    CHECK(insert_fixed("users", BCON_NEW("_id", BCON_OID(&u1), "google_sub", BCON_UTF8("g-1"),
                                         "email", BCON_UTF8("ann@example.com"), "displayName",
                                         BCON_UTF8("Ann \"A\" \xc3\x85"), "role",
                                         BCON_UTF8("admin"), "firstLogin", BCON_DATE_TIME(t0),
                                         "lastLogin", BCON_DATE_TIME(t0 + 5))) == 0);
    CHECK(insert_fixed("users",
                       BCON_NEW("_id", BCON_OID(&u2), "google_sub", BCON_UTF8("g-2"), "email",
                                BCON_UTF8("bob@example.com"), "role", BCON_UTF8("staff"),
                                "firstLogin", BCON_DATE_TIME(t0 + 1))) == 0);
    char path[256], want[8192];
    snprintf(path, sizeof path, "%s/tests/api/expected/list_pages.txt", MINICRM_SOURCE_DIR);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    const char *pages[] = {"/customers?limit=3",
                           "/api/campaigns/000000000000000000000c01/logs?limit=5", "/api/users",
                           NULL};
    for (int i = 0; pages[i]; i++) {
        CHECK(fgets(want, sizeof want, f) != NULL);
        want[strcspn(want, "\n")] = '\0';
        apitest_resp r;
        CHECK(req(&r, "GET", pages[i], NULL) == 0);
        CHECK_INT_EQ(r.status, 200);
        if (strcmp(r.body, want) != 0)
            fprintf(stderr, "GET %s\n got: %s\nwant: %s\n", pages[i], r.body, want);
        CHECK_STR_EQ(r.body, want);
        apitest_resp_release(&r);
    }
    fclose(f);
}

TEST_MAIN(TEST_ENTRY(error_bodies_are_always_json), TEST_ENTRY(nul_in_path_is_not_the_list),
          TEST_ENTRY(tag_must_be_utf8), TEST_ENTRY(campaign_text_fields),
          TEST_ENTRY(loyalty_word_rule), TEST_ENTRY(body_of_wrong_shape),
          TEST_ENTRY(empty_paging_params), TEST_ENTRY(logs_cursor_is_customer_id),
          TEST_ENTRY(list_page_bytes), TEST_ENTRY(single_receipt_says_updated))
