/*
 * routes_comm: GET /communication?page=1&limit=20 -> 200 {page, limit, total, pages, logs},
 * newest first (index createdAt_-1), each log with customer_id populated {_id, name, email} and
 * campaign_id populated {_id, name}. limit defaults to 20 (max api.max_page_size); total is an
 * exact count; pages = ceil(total / limit).
 */
#include "apiutil.h"
#include "jsonx.h"
#include "routes.h"

static void h_list(api_ctx *app, http_request *req)
{
    long limit, page;
    if (api_paging(req, 20, &limit, &page) != 0)
        return;
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, sub;
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sub);
    BSON_APPEND_INT32(&sub, "createdAt", -1);
    BSON_APPEND_INT32(&sub, "_id", -1);
    bson_append_document_end(&opts, &sub);
    BSON_APPEND_INT64(&opts, "limit", limit);
    if (page > 1)
        BSON_APPEND_INT64(&opts, "skip", (page - 1) * limit);
    mongoc_client_t *cl = dbpool_pop(app->db);
    mongoc_collection_t *coll = dbpool_collection(app->db, cl, DB_LOGS);
    bson_error_t e;
    int64_t total = 0;
    json_t *logs = json_array();
    static const char *const cust_fields[] = {"_id", "name", "email", NULL};
    static const char *const camp_fields[] = {"_id", "name", NULL};
    if (api_count(coll, &filter, &total, &e) != 0) {
        api_db_fail(req, &e, "counting logs");
        goto out;
    }
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
    const bson_t *doc;
    while (mongoc_cursor_next(cur, &doc))
        json_array_append_new(logs, jsonx_from_bson(doc));
    bool failed = mongoc_cursor_error(cur, &e);
    mongoc_cursor_destroy(cur);
    if (failed || api_populate(app, cl, logs, "customer_id", DB_CUSTOMERS, cust_fields, &e) ||
        api_populate(app, cl, logs, "campaign_id", DB_CAMPAIGNS, camp_fields, &e)) {
        api_db_fail(req, &e, "listing logs");
        goto out;
    }
    http_send_json(req, 200,
                   json_pack("{s:I,s:I,s:I,s:I,s:O}", "page", (json_int_t)page, "limit",
                             (json_int_t)limit, "total", (json_int_t)total, "pages",
                             (json_int_t)((total + limit - 1) / limit), "logs", logs));
out:
    json_decref(logs);
    mongoc_collection_destroy(coll);
    dbpool_push(app->db, cl);
    bson_destroy(&filter);
    bson_destroy(&opts);
}

int routes_comm_register(router *r)
{
    return router_add(r, HTTP_GET, "/communication", h_list, ROUTE_AUTH, ROLE_STAFF);
}
