/*
 * indexes: the MongoDB indexes of notes/design.md, created at start by minicrm-api.
 *
 * createIndexes is idempotent for an identical specification, so running this at every start
 * is safe; it is run from a background thread of main.c until it succeeds.
 *
 * The sweeper's index holds only the logs still PENDING (a partial index, MongoDB 3.2+): it
 * stays as small as the logs in flight, and a delivery receipt only removes its log from it
 * instead of moving it to another key. It replaced {status: 1, updatedAt: 1}, which an older
 * version created; that one is dropped here once its replacement exists. The unique index of
 * (campaign, customer) covers campaign logs only (one-off messages have campaign_id null).
 */
#include "apiutil.h"
#include "routes.h"

#include <stdio.h>

typedef struct idx {
    const char *coll;
    const char *name;
    const char *keys_json; /* key document as JSON */
    bool unique;
    const char *partial_json; /* partialFilterExpression as JSON, or NULL */
} idx;

static const idx k_indexes[] = {
    {DB_CUSTOMERS, "email_1", "{\"email\": 1}", true, NULL},
    {DB_CUSTOMERS, "total_spend_1", "{\"total_spend\": 1}", false, NULL},
    {DB_CUSTOMERS, "last_visit_date_1", "{\"last_visit_date\": 1}", false, NULL},
    {DB_CUSTOMERS, "createdAt_1", "{\"createdAt\": 1}", false, NULL},
    {DB_ORDERS, "customer_id_1", "{\"customer_id\": 1}", false, NULL},
    {DB_ORDERS, "createdAt_-1", "{\"createdAt\": -1}", false, NULL},
    /* One log per (campaign, customer) among campaign logs only: a one-off message's log has
     * campaign_id null (POST /api/messages), and a customer may get many. The range filter
     * holds every ObjectId and no null, and an equality on campaign_id implies it, so the
     * index still answers {campaign_id: X} queries. */
    {DB_LOGS, "campaign_id_1_customer_id_1_campaigns", "{\"campaign_id\": 1, \"customer_id\": 1}",
     true, "{\"campaign_id\": {\"$gte\": {\"$oid\": \"000000000000000000000000\"}}}"},
    {DB_LOGS, "updatedAt_1_pending", "{\"updatedAt\": 1}", false, "{\"status\": \"PENDING\"}"},
    {DB_LOGS, "createdAt_-1", "{\"createdAt\": -1}", false, NULL},
    {DB_LOGS, "campaign_id_1_status_1", "{\"campaign_id\": 1, \"status\": 1}", false, NULL},
    {DB_CAMPAIGNS, "createdAt_-1", "{\"createdAt\": -1}", false, NULL},
};

/* Indexes of older versions that one above replaces. */
static const struct {
    const char *coll, *name;
    bool same_key; /* same key pattern as its replacement: MongoDB allows one index per key
                    * pattern, so it is dropped before the replacement is created */
} k_superseded[] = {
    {DB_LOGS, "status_1_updatedAt_1", false},
    /* the same key over every log: replaced by the one over campaign logs only (the logs'
     * deterministic _id keeps them unique while the replacement is built) */
    {DB_LOGS, "campaign_id_1_customer_id_1", true},
};

/* Drop the superseded indexes with same_key == same_key. 0 or -1 (err). */
static int drop_superseded(api_ctx *app, mongoc_client_t *cl, bool same_key, char *err,
                           size_t errlen)
{
    int rc = 0;
    for (size_t i = 0; i < sizeof k_superseded / sizeof k_superseded[0] && rc == 0; i++) {
        if (k_superseded[i].same_key != same_key)
            continue;
        bson_error_t e;
        bson_t reply;
        bson_t *cmd = BCON_NEW("dropIndexes", BCON_UTF8(k_superseded[i].coll), "index",
                               BCON_UTF8(k_superseded[i].name));
        /* 26 NamespaceNotFound, 27 IndexNotFound: nothing to drop. */
        if (!mongoc_client_command_simple(cl, dbpool_db_name(app->db), cmd, NULL, &reply, &e) &&
            e.code != 26 && e.code != 27) {
            snprintf(err, errlen, "%s: dropping %s: %s", k_superseded[i].coll, k_superseded[i].name,
                     e.message);
            rc = -1;
        }
        bson_destroy(&reply);
        bson_destroy(cmd);
    }
    return rc;
}

int routes_ensure_indexes(api_ctx *app, char *err, size_t errlen)
{
    mongoc_client_t *cl = dbpool_pop(app->db);
    int rc = drop_superseded(app, cl, true, err, errlen);
    for (size_t i = 0; i < sizeof k_indexes / sizeof k_indexes[0] && rc == 0; i++) {
        /* One createIndexes command per index: a conflict on one (an older definition under
         * the same name) is reported without hiding the others. */
        const idx *x = &k_indexes[i];
        bson_error_t e;
        bson_t *keys = bson_new_from_json((const uint8_t *)x->keys_json, -1, &e);
        bson_t cmd = BSON_INITIALIZER, arr, one, reply;
        BSON_APPEND_UTF8(&cmd, "createIndexes", x->coll);
        BSON_APPEND_ARRAY_BEGIN(&cmd, "indexes", &arr);
        BSON_APPEND_DOCUMENT_BEGIN(&arr, "0", &one);
        BSON_APPEND_DOCUMENT(&one, "key", keys);
        BSON_APPEND_UTF8(&one, "name", x->name);
        if (x->unique)
            BSON_APPEND_BOOL(&one, "unique", true);
        bson_t *partial =
            x->partial_json ? bson_new_from_json((const uint8_t *)x->partial_json, -1, &e) : NULL;
        if (partial) {
            BSON_APPEND_DOCUMENT(&one, "partialFilterExpression", partial);
            bson_destroy(partial);
        }
        bson_append_document_end(&arr, &one);
        bson_append_array_end(&cmd, &arr);
        if (!mongoc_client_command_simple(cl, dbpool_db_name(app->db), &cmd, NULL, &reply, &e)) {
            snprintf(err, errlen, "%s.%s: %s", x->coll, x->name, e.message);
            rc = -1;
        }
        bson_destroy(&reply);
        bson_destroy(&cmd);
        bson_destroy(keys);
    }
    if (rc == 0)
        rc = drop_superseded(app, cl, false, err, errlen);
    dbpool_push(app->db, cl);
    return rc;
}
