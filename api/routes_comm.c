/*
 * routes_comm: GET /communication, every communication log newest first (index
 * {createdAt: -1, _id: -1}), each log with customer_id populated {_id, name, email} and
 * campaign_id populated {_id, name} (one $in query per reference per page).
 *
 *   ?page=P&limit=L (the original form; limit defaults to 20, max api.max_page_size)
 *        -> 200 {page, limit, total, total_exact, pages, logs}; a page deeper than
 *        api.max_skip documents is a 400 pointing to ?after= (a skip costs O(skip) on MongoDB
 *        too, so deep pages are served by the keyset instead).
 *   ?after=CURSOR&limit=L (the keyset form)
 *        -> 200 {limit, total, total_exact, pages, logs, next}: the logs after CURSOR in the
 *        same order, next = the cursor of the page after this one (null on the last page).
 *        Costs the same at any depth.
 * Both forms send the next page's cursor in the X-Next-Cursor header when the page is full
 * (api_after_newest: "<createdAt ms>_<_id hex>" of the page's last log).
 *
 * total is MongoDB's metadata count of the logs (O(1), but not exact after an unclean shutdown
 * or with orphans on a sharded cluster), so the reply says "total_exact": false; pages =
 * ceil(total / limit). No request counts the logs.
 * ?customer_id=<24 hex> keeps one customer's messages in either form (total stays the
 * metadata count of every log).
 */
#include "apiutil.h"
#include "jsonx.h"
#include "routes.h"

static void h_list(api_ctx *app, http_request *req)
{
    long limit, page, skip = 0;
    if (api_paging(req, 20, &limit, &page) != 0)
        return;
    /* ?customer_id= keeps one customer's messages (the dashboard's customer page). No index
     * has customer_id first: MongoDB walks the newest-first index and filters, which is quick
     * for a customer with recent messages and ends at maxTimeMS (504) otherwise. */
    bson_t filter = BSON_INITIALIZER;
    if (api_filter_customer(req, &filter) != 0 ||
        api_newest_position(req, page, limit, &filter, &skip) != 0) {
        bson_destroy(&filter);
        return;
    }
    static const char *const camp_fields[] = {"_id", "name", NULL};
    static const api_ref refs[] = {{"customer_id", DB_CUSTOMERS, API_CUSTOMER_REF_FIELDS},
                                   {"campaign_id", DB_CAMPAIGNS, camp_fields},
                                   {NULL, NULL, NULL}};
    api_query q = {.coll = DB_LOGS,
                   .filter = &filter,
                   .sort = API_SORT_NEWEST,
                   .limit = limit,
                   .skip = skip,
                   .refs = refs};
    mongoc_client_t *cl = dbpool_pop(app->db);
    mongoc_collection_t *coll = dbpool_collection(app->db, cl, DB_LOGS);
    bson_error_t e;
    int64_t total = 0;
    char cursor[API_CURSOR_MAX] = "";
    /* The answer written as text: the same bytes json_pack("{s:I,s:I,s:I,s:b,s:I,s:o}") gave,
     * with the page from api_query_text (no jansson tree). */
    jsonx_buf b = {0};
    const char *after = http_query(req, "after");
    int rc = api_count_estimate(coll, &total, &e);
    mongoc_collection_destroy(coll);
    if (rc == 0) {
        if (!after) {
            jsonx_buf_cat(&b, "{\"page\":");
            jsonx_buf_int(&b, page);
            jsonx_buf_cat(&b, ",\"limit\":");
        } else {
            jsonx_buf_cat(&b, "{\"limit\":");
        }
        jsonx_buf_int(&b, limit);
        jsonx_buf_cat(&b, ",\"total\":");
        jsonx_buf_int(&b, total);
        jsonx_buf_cat(&b, ",\"total_exact\":false,\"pages\":");
        jsonx_buf_int(&b, (total + limit - 1) / limit);
        jsonx_buf_cat(&b, ",\"logs\":");
        rc = api_query_text(app, cl, &q, &b, API_CURSOR_NEWEST, cursor, &e);
        if (after) {
            jsonx_buf_cat(&b, ",\"next\":");
            if (cursor[0]) {
                jsonx_buf_raw(&b, "\"", 1);
                jsonx_buf_cat(&b, cursor); /* digits, '_', '-' and hex: nothing to escape */
                jsonx_buf_raw(&b, "\"", 1);
            } else {
                jsonx_buf_cat(&b, "null");
            }
        }
        jsonx_buf_raw(&b, "}", 1);
    }
    dbpool_push(app->db, cl);
    if (rc != 0) {
        api_db_fail(req, &e, "listing logs");
    } else if (!jsonx_buf_ok(&b)) {
        http_error(req, 503, "out of memory");
    } else {
        if (cursor[0])
            http_add_header(req, "X-Next-Cursor", cursor);
        http_send_owned(req, 200, "application/json; charset=utf-8", b.data, b.len);
        b.data = NULL; /* MHD's now */
    }
    jsonx_buf_free(&b);
    bson_destroy(&filter);
}

int routes_comm_register(router *r)
{
    return router_add(r, HTTP_GET, "/communication", h_list, ROUTE_AUTH, AUTH_ROLE_STAFF);
}
