/*
 * routes_comm: GET /communication?page=1&limit=20 -> 200 {page, limit, total, pages, logs},
 * newest first (index createdAt_-1), each log with customer_id populated {_id, name, email} and
 * campaign_id populated {_id, name}. limit defaults to 20 (max api.max_page_size); total is
 * MongoDB's metadata count of the logs (O(1), but not exact after an unclean shutdown or with
 * orphans on a sharded cluster), so the reply says "total_exact": false; pages =
 * ceil(total / limit).
 */
#include "apiutil.h"
#include "jsonx.h"
#include "routes.h"

static void h_list(api_ctx *app, http_request *req)
{
    long limit, page;
    if (api_paging(req, 20, &limit, &page) != 0)
        return;
    static const char *const camp_fields[] = {"_id", "name", NULL};
    static const api_ref refs[] = {{"customer_id", DB_CUSTOMERS, API_CUSTOMER_REF_FIELDS},
                                   {"campaign_id", DB_CAMPAIGNS, camp_fields},
                                   {NULL, NULL, NULL}};
    api_query q = {.coll = DB_LOGS,
                   .sort = API_SORT_NEWEST,
                   .limit = limit,
                   .skip = api_skip(page, limit),
                   .refs = refs};
    mongoc_client_t *cl = dbpool_pop(app->db);
    mongoc_collection_t *coll = dbpool_collection(app->db, cl, DB_LOGS);
    bson_error_t e;
    int64_t total = 0;
    json_t *logs = NULL;
    int rc = api_count_estimate(coll, &total, &e);
    mongoc_collection_destroy(coll);
    if (rc == 0)
        rc = api_query_json(app, cl, &q, &logs, NULL, NULL, &e);
    dbpool_push(app->db, cl);
    if (rc != 0) {
        api_db_fail(req, &e, "listing logs");
        return;
    }
    http_send_json(req, 200,
                   json_pack("{s:I,s:I,s:I,s:b,s:I,s:o}", "page", (json_int_t)page, "limit",
                             (json_int_t)limit, "total", (json_int_t)total, "total_exact", 0,
                             "pages", (json_int_t)((total + limit - 1) / limit), "logs", logs));
}

int routes_comm_register(router *r)
{
    return router_add(r, HTTP_GET, "/communication", h_list, ROUTE_AUTH, AUTH_ROLE_STAFF);
}
