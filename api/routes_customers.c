/*
 * routes_customers: the customer1 collection.
 *
 *   POST /customers      {name, email, phone?, total_spend?, last_visit_date?}
 *                        -> 201 {"message": "Customer created", "customer": {...}}
 *                        400 naming the field; 409 duplicate email (unique index email_1)
 *   GET  /customers      -> 200 [customer...] in insertion (_id) order, bounded pages:
 *                        ?limit= (default 100, max api.max_page_size) and either ?after=<id>
 *                        (keyset cursor, cheap at any depth) or ?page=N (skip). When a page is
 *                        full, X-Next-Cursor carries the id to pass as ?after= for the next one.
 *                        ?q= (at most CUSTOMER_SEARCH_MAX bytes): only customers whose name or
 *                        email contains it, any case.
 *   GET  /customers/:id  -> 200 customer, 400 bad id, 404 unknown
 *
 * Emails are stored lower-cased so the unique index and the email_domain rule are exact; the
 * e-mail's domain is stored too (lib/rules' RULES_DOMAIN_FIELD, indexed: the email_domain rule
 * is an indexed equality) and left out of every answer.
 */
#include "apiutil.h"
#include "jsonx.h"
#include "log.h"
#include "routes.h"
#include "rules.h"
#include "suppress.h"
#include "timeutil.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* Stored for the email_domain rule's index (lib/rules), never shown: the contract's customer
 * has no such field. */
static const char *const CUSTOMER_HIDDEN[] = {RULES_DOMAIN_FIELD, NULL};

/* Longest ?q= of GET /customers, bytes. */
#define CUSTOMER_SEARCH_MAX 100

#define NAME_MAX_LEN  200
#define PHONE_MAX_LEN 32

static bool phone_valid(const char *s)
{
    size_t digits = 0;
    for (const char *p = s; *p; p++) {
        if (isdigit((unsigned char)*p))
            digits++;
        else if (!strchr("+-() .", *p))
            return false;
    }
    return digits >= 3;
}

static void h_create(api_ctx *app, http_request *req)
{
    json_t *body = api_body_object(req, NULL);
    if (!body)
        return;
    const char *name, *email, *phone, *lvd;
    double spend = 0;
    bool has_spend;
    if (api_field_str(req, body, "name", true, NAME_MAX_LEN, &name) ||
        api_field_str(req, body, "email", true, 254, &email) ||
        api_field_str(req, body, "phone", false, PHONE_MAX_LEN, &phone) ||
        api_field_num(req, body, "total_spend", false, 0, false, 1e12, &spend, &has_spend) ||
        api_field_str(req, body, "last_visit_date", false, 64, &lvd))
        return;
    if (!suppress_email_valid(email)) {
        http_error(req, 400, "email must be a valid e-mail address");
        return;
    }
    if (phone && !phone_valid(phone)) {
        http_error(req, 400, "phone must contain digits and only + - ( ) . or spaces");
        return;
    }
    int64_t lvd_ms = 0;
    if (lvd && time_parse_iso8601(lvd, &lvd_ms) != 0) {
        http_error(req, 400, "last_visit_date must be an ISO-8601 date");
        return;
    }
    char lower[256];
    api_lower(email, lower, sizeof lower);
    int64_t now = time_now_ms();
    bson_oid_t oid;
    bson_oid_init(&oid, NULL);
    bson_t doc = BSON_INITIALIZER;
    BSON_APPEND_OID(&doc, "_id", &oid);
    BSON_APPEND_UTF8(&doc, "name", name);
    BSON_APPEND_UTF8(&doc, "email", lower);
    if (phone)
        BSON_APPEND_UTF8(&doc, "phone", phone);
    BSON_APPEND_DOUBLE(&doc, "total_spend", spend);
    if (lvd)
        BSON_APPEND_DATE_TIME(&doc, "last_visit_date", lvd_ms);
    BSON_APPEND_DATE_TIME(&doc, "createdAt", now);
    BSON_APPEND_DATE_TIME(&doc, "updatedAt", now);
    char domain[256];
    BSON_APPEND_UTF8(&doc, RULES_DOMAIN_FIELD, rules_email_domain(lower, domain, sizeof domain));

    mongoc_client_t *cl = dbpool_pop(app->db);
    mongoc_collection_t *coll = dbpool_collection(app->db, cl, DB_CUSTOMERS);
    bson_error_t e;
    bool ok = mongoc_collection_insert_one(coll, &doc, NULL, NULL, &e);
    if (ok) {
        /* After the insert, never before (lib/suppress: a suppression written meanwhile is
         * seen here or sets the flag itself). A failure here leaves the flag to the rebuild. */
        mongoc_collection_t *supps = dbpool_collection(app->db, cl, DB_SUPPRESSIONS);
        bool sup = false;
        bson_error_t se;
        if (suppress_flag_customer(supps, coll, lower, &sup, &se) != 0)
            log_warn("customers.suppress_flag_failed", "detail=\"%s\"", se.message);
        else if (sup)
            BSON_APPEND_BOOL(&doc, "suppressed", true);
        mongoc_collection_destroy(supps);
    }
    mongoc_collection_destroy(coll);
    dbpool_push(app->db, cl);
    if (!ok) {
        if (api_is_dup_key(&e))
            http_error(req, 409, "email already exists: %s", lower);
        else
            api_db_fail(req, &e, "creating a customer");
    } else {
        /* The stored domain is not shown. */
        api_send_stored(req, 201, "Customer created", "customer", &doc, RULES_DOMAIN_FIELD);
    }
    bson_destroy(&doc);
}

static void h_list(api_ctx *app, http_request *req)
{
    long limit, page, skip = 0;
    if (api_paging(req, 100, &limit, &page) != 0)
        return;
    const char *after = http_query(req, "after");
    bson_oid_t after_oid;
    if (after ? api_parse_oid(req, "after", after, &after_oid) != 0
              : api_page_skip(req, page, limit, &skip) != 0)
        return;
    /* ?q= (the dashboard's search): a case-insensitive substring of the name or the email, as
     * a regex with every metacharacter escaped. It walks the _id order until a page is found
     * (no index serves a substring); a rare word on a large collection ends at maxTimeMS (504). */
    const char *search = http_query(req, "q");
    char re[2 * CUSTOMER_SEARCH_MAX + 1];
    if (search && *search) {
        size_t n = 0;
        for (const char *p = search; *p; p++) {
            if (p - search >= CUSTOMER_SEARCH_MAX) {
                http_error(req, 400, "q: at most %d bytes", CUSTOMER_SEARCH_MAX);
                return;
            }
            if (strchr(".^$*+?()[]{}|\\", *p))
                re[n++] = '\\';
            re[n++] = *p;
        }
        re[n] = '\0';
    }
    bson_t filter = BSON_INITIALIZER, sub;
    if (after) {
        BSON_APPEND_DOCUMENT_BEGIN(&filter, "_id", &sub);
        BSON_APPEND_OID(&sub, "$gt", &after_oid);
        bson_append_document_end(&filter, &sub);
    }
    if (search && *search) {
        bson_t or, alt, cond;
        BSON_APPEND_ARRAY_BEGIN(&filter, "$or", & or);
        static const char *const fields[] = {"name", "email"};
        for (int i = 0; i < 2; i++) {
            BSON_APPEND_DOCUMENT_BEGIN(& or, i ? "1" : "0", &alt);
            BSON_APPEND_DOCUMENT_BEGIN(&alt, fields[i], &cond);
            BSON_APPEND_UTF8(&cond, "$regex", re);
            BSON_APPEND_UTF8(&cond, "$options", "i");
            bson_append_document_end(&alt, &cond);
            bson_append_document_end(& or, &alt);
        }
        bson_append_array_end(&filter, & or);
    }
    static const char *const by_id[] = {"_id", NULL};
    api_query q = {.coll = DB_CUSTOMERS,
                   .filter = &filter,
                   .sort = by_id,
                   .limit = limit,
                   .skip = skip,
                   .exclude = CUSTOMER_HIDDEN};
    api_send_query(app, req, &q, "_id", "listing customers");
    bson_destroy(&filter);
}

static void h_get(api_ctx *app, http_request *req)
{
    bson_oid_t oid;
    if (api_parse_oid(req, "id", http_param(req, "id"), &oid) != 0)
        return;
    mongoc_client_t *cl = dbpool_pop(app->db);
    json_t *doc;
    bson_error_t e;
    int rc = api_find_by_id(app, cl, DB_CUSTOMERS, &oid, &doc, &e);
    dbpool_push(app->db, cl);
    if (rc > 0)
        json_object_del(doc, RULES_DOMAIN_FIELD);
    if (rc > 0)
        http_send_json(req, 200, doc);
    else if (rc < 0)
        api_db_fail(req, &e, "reading a customer");
    else
        http_error(req, 404, "customer not found");
}

int routes_customers_register(router *r)
{
    if (router_add(r, HTTP_POST, "/customers", h_create, ROUTE_AUTH, AUTH_ROLE_STAFF) ||
        router_add(r, HTTP_GET, "/customers", h_list, ROUTE_AUTH, AUTH_ROLE_STAFF) ||
        router_add(r, HTTP_GET, "/customers/:id", h_get, ROUTE_AUTH, AUTH_ROLE_STAFF))
        return -1;
    return 0;
}
