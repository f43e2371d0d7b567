/*
 * routes_orders: the orders1 collection.
 *
 *   POST /orders  {customer_id (24 hex), amount (> 0), status? (completed|cancelled), date?}
 *                 -> 201 {"message": "Order created", "order": {...}}; 400; 404 unknown customer
 *   GET  /orders  -> 200 [order...] newest first (index {createdAt: -1, _id: -1}), customer_id
 *                 populated {_id, name, email} (one $in query per page); ?limit= (default 100)
 *                 and ?page= (at most api.max_skip documents deep, else 400) or ?after= (the
 *                 keyset, api_after_newest; X-Next-Cursor on a full page);
 *                 ?customer_id=<24 hex> keeps one customer's orders.
 *
 * A completed order changes the customer with ONE update,
 *   {$inc: {total_spend: amount}, $max: {last_visit_date: date}, $set: {updatedAt: now}},
 * which MongoDB applies atomically per document, so concurrent orders for one customer never
 * lose an increment; its matched count also tells us whether the customer exists (404), so the
 * check costs no extra round trip. The order document is inserted after that update; if the
 * insert fails the increment is undone (best effort, logged). A cancelled order only checks
 * that the customer exists.
 */
#include "apiutil.h"
#include "jsonx.h"
#include "log.h"
#include "routes.h"
#include "timeutil.h"

#include <stdio.h>
#include <string.h>

/* Apply a completed order to its customer. 1 updated, 0 no such customer, -1 error. */
static int apply_to_customer(mongoc_collection_t *coll, const bson_oid_t *cid, double amount,
                             int64_t date, int64_t now, bson_error_t *e)
{
    bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER, sub, reply;
    BSON_APPEND_OID(&filter, "_id", cid);
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$inc", &sub);
    BSON_APPEND_DOUBLE(&sub, "total_spend", amount);
    bson_append_document_end(&update, &sub);
    if (date != INT64_MIN) {
        BSON_APPEND_DOCUMENT_BEGIN(&update, "$max", &sub);
        BSON_APPEND_DATE_TIME(&sub, "last_visit_date", date);
        bson_append_document_end(&update, &sub);
    }
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &sub);
    BSON_APPEND_DATE_TIME(&sub, "updatedAt", now);
    bson_append_document_end(&update, &sub);
    int rc = -1;
    if (mongoc_collection_update_one(coll, &filter, &update, NULL, &reply, e)) {
        bson_iter_t it;
        rc = (bson_iter_init_find(&it, &reply, "matchedCount") && bson_iter_as_int64(&it) > 0) ? 1
                                                                                               : 0;
    }
    bson_destroy(&reply);
    bson_destroy(&filter);
    bson_destroy(&update);
    return rc;
}

static int customer_exists(mongoc_collection_t *coll, const bson_oid_t *cid, bson_error_t *e)
{
    int64_t n = 0;
    bson_t filter = BSON_INITIALIZER;
    BSON_APPEND_OID(&filter, "_id", cid);
    int rc = api_count(coll, &filter, &n, e);
    bson_destroy(&filter);
    return rc < 0 ? -1 : n > 0;
}

static void h_create(api_ctx *app, http_request *req)
{
    json_t *body = api_body_object(req, NULL);
    if (!body)
        return;
    const char *cid_hex, *status, *date_s;
    double amount;
    bool has_amount;
    if (api_field_str(req, body, "customer_id", true, 24, &cid_hex))
        return;
    bson_oid_t cid;
    if (api_parse_oid(req, "customer_id", cid_hex, &cid) ||
        api_field_num(req, body, "amount", true, 0, true, 1e12, &amount, &has_amount) ||
        api_field_str(req, body, "status", false, 16, &status) ||
        api_field_str(req, body, "date", false, 64, &date_s))
        return;
    if (!status)
        status = "completed";
    if (strcmp(status, "completed") != 0 && strcmp(status, "cancelled") != 0) {
        http_error(req, 400, "status must be \"completed\" or \"cancelled\"");
        return;
    }
    int64_t now = time_now_ms(), date = now;
    if (date_s && time_parse_iso8601(date_s, &date) != 0) {
        http_error(req, 400, "date must be an ISO-8601 date");
        return;
    }
    bool completed = strcmp(status, "completed") == 0;

    mongoc_client_t *cl = dbpool_pop(app->db);
    mongoc_collection_t *customers = dbpool_collection(app->db, cl, DB_CUSTOMERS);
    mongoc_collection_t *orders = dbpool_collection(app->db, cl, DB_ORDERS);
    bson_error_t e;
    bson_t doc = BSON_INITIALIZER;
    int found = completed ? apply_to_customer(customers, &cid, amount, date, now, &e)
                          : customer_exists(customers, &cid, &e);
    if (found < 0) {
        api_db_fail(req, &e, "updating the customer");
        goto out;
    }
    if (found == 0) {
        http_error(req, 404, "customer not found: %s", cid_hex);
        goto out;
    }
    bson_oid_t oid;
    bson_oid_init(&oid, NULL);
    BSON_APPEND_OID(&doc, "_id", &oid);
    BSON_APPEND_OID(&doc, "customer_id", &cid);
    BSON_APPEND_DOUBLE(&doc, "amount", amount);
    BSON_APPEND_UTF8(&doc, "status", status);
    BSON_APPEND_DATE_TIME(&doc, "date", date);
    BSON_APPEND_DATE_TIME(&doc, "createdAt", now);
    BSON_APPEND_DATE_TIME(&doc, "updatedAt", now);
    if (!mongoc_collection_insert_one(orders, &doc, NULL, NULL, &e)) {
        if (completed) {
            bson_error_t e2;
            if (apply_to_customer(customers, &cid, -amount, INT64_MIN, now, &e2) < 0)
                log_error("order_undo_failed", "rid=%s customer=%s amount=%g", req->request_id,
                          cid_hex, amount);
        }
        api_db_fail(req, &e, "storing the order");
        goto out;
    }
    api_send_stored(req, 201, "Order created", "order", &doc, NULL);
out:
    bson_destroy(&doc);
    mongoc_collection_destroy(customers);
    mongoc_collection_destroy(orders);
    dbpool_push(app->db, cl);
}

static void h_list(api_ctx *app, http_request *req)
{
    long limit, page, skip = 0;
    if (api_paging(req, 100, &limit, &page) != 0)
        return;
    /* ?customer_id= keeps one customer's orders (index customer_id_1; the dashboard's
     * customer page). */
    bson_t filter = BSON_INITIALIZER;
    if (api_filter_customer(req, &filter) == 0 &&
        api_newest_position(req, page, limit, &filter, &skip) == 0) {
        static const api_ref refs[] = {{"customer_id", DB_CUSTOMERS, API_CUSTOMER_REF_FIELDS},
                                       {NULL, NULL, NULL}};
        api_query q = {.coll = DB_ORDERS,
                       .filter = &filter,
                       .sort = API_SORT_NEWEST,
                       .limit = limit,
                       .skip = skip,
                       .refs = refs};
        api_send_query(app, req, &q, API_CURSOR_NEWEST, "listing orders");
    }
    bson_destroy(&filter);
}

int routes_orders_register(router *r)
{
    if (router_add(r, HTTP_POST, "/orders", h_create, ROUTE_AUTH, AUTH_ROLE_STAFF) ||
        router_add(r, HTTP_GET, "/orders", h_list, ROUTE_AUTH, AUTH_ROLE_STAFF))
        return -1;
    return 0;
}
