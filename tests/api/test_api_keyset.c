/*
 * test_api_keyset: the paging of the list routes at scale (issue 13, points 6 and 7), against a
 * real minicrm-api on private redis-server + devdb with api.max_skip = 4.
 *
 *   newest_first_keyset_walks_every_document
 *        /communication, /orders and /api/campaigns (with and without ?tag=, whose filter has
 *        an $or of its own) walked with ?after= (X-Next-Cursor, and "next" in the body of
 *        /communication) return every document once, in the order {createdAt: -1, _id: -1},
 *        ties on createdAt included, the same pages ?page= returns; the last page has no cursor.
 *   deep_page_is_a_400_pointing_to_after
 *        a ?page= deeper than api.max_skip documents is a 400 naming ?after= on every list
 *        route; a malformed cursor is a 400; the page= form's JSON keeps its fields.
 */
#include "apitest.h"
#include "test.h"

#include <mongoc/mongoc.h>
#include <stdlib.h>
#include <string.h>

static apitest T;
static const char *const k_env[] = {"MINICRM_API_MAX_SKIP=4", NULL};

static int req(apitest_resp *r, const char *path)
{
    const char *h[] = {apitest_admin_auth(&T), NULL};
    return apitest_request(&T, "GET", path, h, NULL, 0, r);
}

#define N_DOCS 7

/* Insert N_DOCS documents into coll with createdAt t0, t0, t0, t0-1, t0-1, t0-2, t0-3 (ties) and
 * the given extra field; their ids in the expected newest-first order go to want. 0 or -1. */
static int insert_docs(const char *coll_name, const char *extra_key, const char *extra_val,
                       int64_t t0, char want[N_DOCS][25])
{
    static const int64_t dt[N_DOCS] = {0, 0, 0, -1, -1, -2, -3};
    mongoc_client_t *cl = mongoc_client_new(T.env.mongo_uri);
    mongoc_collection_t *coll = mongoc_client_get_collection(cl, T.env.db_name, coll_name);
    bson_oid_t ids[N_DOCS];
    int rc = 0;
    for (int i = 0; i < N_DOCS && rc == 0; i++) {
        bson_oid_init(&ids[i], NULL);
        bson_t *d = BCON_NEW("_id", BCON_OID(&ids[i]), extra_key, BCON_UTF8(extra_val), "createdAt",
                             BCON_DATE_TIME(t0 + dt[i]));
        if (!mongoc_collection_insert_one(coll, d, NULL, NULL, NULL))
            rc = -1;
        bson_destroy(d);
    }
    /* newest first: createdAt desc, then _id desc (ids grow with i) */
    static const int order[N_DOCS] = {2, 1, 0, 4, 3, 5, 6};
    for (int i = 0; i < N_DOCS; i++)
        bson_oid_to_string(&ids[order[i]], want[i]);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(cl);
    return rc;
}

/* The array of documents of an answer: the body, or its "logs" member. */
static json_t *docs_of(const apitest_resp *r)
{
    return json_is_array(r->json) ? r->json : json_object_get(r->json, "logs");
}

/* Walk `base` (a path with a query, e.g. "/orders?limit=2") with ?after= until no cursor is
 * left; collect the ids. Returns the number collected, or -1. */
static int walk(const char *base, bool body_next, char got[][25], int max)
{
    char path[512], cur[128] = "";
    int n = 0;
    for (int turn = 0; turn < 20; turn++) {
        if (cur[0])
            snprintf(path, sizeof path, "%s&after=%s", base, cur);
        else
            snprintf(path, sizeof path, "%s", base);
        apitest_resp r;
        if (req(&r, path) != 0 || r.status != 200) {
            fprintf(stderr, "GET %s: %ld %s\n", path, r.status, r.body ? r.body : "");
            apitest_resp_release(&r);
            return -1;
        }
        json_t *a = docs_of(&r), *d;
        size_t i;
        json_array_foreach(a, i, d)
        {
            if (n < max)
                snprintf(got[n], 25, "%s", json_string_value(json_object_get(d, "_id")));
            n++;
        }
        char hdr[128];
        const char *h = apitest_resp_header(&r, "X-Next-Cursor", hdr, sizeof hdr);
        if (body_next && cur[0]) {
            /* the keyset form's body names the same cursor (null at the end) */
            json_t *next = json_object_get(r.json, "next");
            if (h ? !json_is_string(next) || strcmp(json_string_value(next), h) != 0
                  : !json_is_null(next)) {
                fprintf(stderr, "GET %s: body next differs from the header\n", path);
                apitest_resp_release(&r);
                return -1;
            }
            if (json_object_get(r.json, "page") != NULL ||
                !json_is_integer(json_object_get(r.json, "total"))) {
                fprintf(stderr, "GET %s: unexpected shape %s\n", path, r.body);
                apitest_resp_release(&r);
                return -1;
            }
        }
        snprintf(cur, sizeof cur, "%s", h ? h : "");
        apitest_resp_release(&r);
        if (!h)
            return n;
    }
    return -1;
}

/* The ids of page `page` of `base` (?page= form) appended to got from *n. Status returned. */
static long page_ids(const char *base, int page, char got[][25], int *n, int max)
{
    char path[512];
    snprintf(path, sizeof path, "%s&page=%d", base, page);
    apitest_resp r;
    if (req(&r, path) != 0)
        return -1;
    long st = r.status;
    if (st == 200) {
        json_t *d;
        size_t i;
        json_array_foreach(docs_of(&r), i, d)
        {
            if (*n < max)
                snprintf(got[*n], 25, "%s", json_string_value(json_object_get(d, "_id")));
            (*n)++;
        }
    }
    apitest_resp_release(&r);
    return st;
}

/* Every route's walk equals want (newest first), and ?page= 1..3 gives the same first 6. */
static void check_list(const char *base, bool body_next, char want[N_DOCS][25])
{
    char got[32][25];
    int n = walk(base, body_next, got, 32);
    CHECK_INT_EQ(n, N_DOCS);
    for (int i = 0; i < N_DOCS && i < n; i++)
        CHECK_STR_EQ(got[i], want[i]);
    int m = 0;
    for (int p = 1; p <= 3; p++)
        CHECK_INT_EQ(page_ids(base, p, got, &m, 32), 200);
    CHECK_INT_EQ(m, 6);
    for (int i = 0; i < 6 && i < m; i++)
        CHECK_STR_EQ(got[i], want[i]);
}

TEST(newest_first_keyset_walks_every_document)
{
    CHECK(apitest_ensure(&T, k_env) == 0);
    /* far in the future: these are the newest documents of each collection */
    const int64_t t0 = 4102444800000LL; /* 2100-01-01 */
    char logs[N_DOCS][25], orders[N_DOCS][25], camps[N_DOCS][25], tagged[N_DOCS][25];
    CHECK(insert_docs("communication_logs1", "status", "PENDING", t0, logs) == 0);
    CHECK(insert_docs("orders1", "status", "completed", t0, orders) == 0);
    CHECK(insert_docs("campaigns1", "name", "walk", t0, camps) == 0);
    CHECK(insert_docs("campaigns1", "name", "keyset tagged", t0 - 100, tagged) == 0);
    check_list("/communication?limit=2", true, logs);
    check_list("/orders?limit=2", false, orders);
    check_list("/api/campaigns?limit=2&tag=keyset%20tagged", false, tagged);
    /* without a tag: the 14 campaigns above are the newest, in order */
    char got[32][25];
    int n = walk("/api/campaigns?limit=3", false, got, 32);
    CHECK(n >= 2 * N_DOCS);
    for (int i = 0; i < N_DOCS; i++) {
        CHECK_STR_EQ(got[i], camps[i]);
        CHECK_STR_EQ(got[N_DOCS + i], tagged[i]);
    }
    /* the page= form of /communication keeps its fields */
    apitest_resp r;
    CHECK(req(&r, "/communication?page=2&limit=2") == 0);
    CHECK_INT_EQ(r.status, 200);
    CHECK_INT_EQ(json_integer_value(json_object_get(r.json, "page")), 2);
    CHECK(json_is_false(json_object_get(r.json, "total_exact")));
    CHECK(json_object_get(r.json, "next") == NULL);
    apitest_resp_release(&r);
}

TEST(deep_page_is_a_400_pointing_to_after)
{
    CHECK(apitest_ensure(&T, k_env) == 0);
    static const char *const deep[] = {"/communication?limit=2&page=4",
                                       "/orders?limit=2&page=4",
                                       "/api/campaigns?limit=2&page=4",
                                       "/customers?limit=5&page=2",
                                       "/api/campaigns/000000000000000000000001/logs?page=2",
                                       NULL};
    for (int i = 0; deep[i]; i++) {
        apitest_resp r;
        CHECK(req(&r, deep[i]) == 0);
        CHECK_INT_EQ(r.status, 400);
        const char *e = json_string_value(json_object_get(r.json, "error"));
        CHECK(e != NULL && strstr(e, "?after=") != NULL);
        apitest_resp_release(&r);
    }
    static const char *const bad[] = {"/communication?after=x", "/orders?after=12_zz",
                                      "/api/campaigns?after=1_0123456789abcdef0123456",
                                      "/orders?after=_0123456789abcdef01234567", NULL};
    for (int i = 0; bad[i]; i++) {
        apitest_resp r;
        CHECK(req(&r, bad[i]) == 0);
        CHECK_INT_EQ(r.status, 400);
        apitest_resp_release(&r);
    }
    /* at the bound: still served */
    apitest_resp r;
    CHECK(req(&r, "/communication?limit=2&page=3") == 0);
    CHECK_INT_EQ(r.status, 200);
    apitest_resp_release(&r);
}

TEST_MAIN(TEST_ENTRY(newest_first_keyset_walks_every_document),
          TEST_ENTRY(deep_page_is_a_400_pointing_to_after))
