/*
 * indexes: the MongoDB indexes of notes/design.md, created at start by minicrm-api.
 *
 * createIndexes is idempotent for an identical specification, so running this at every start
 * is safe; it is run from a background thread of main.c until it succeeds.
 */
#include "apiutil.h"
#include "routes.h"

#include <stdio.h>

typedef struct idx {
    const char *coll;
    const char *name;
    const char *keys_json; /* key document as JSON */
    bool unique;
} idx;

static const idx k_indexes[] = {
    {DB_CUSTOMERS, "email_1", "{\"email\": 1}", true},
    {DB_CUSTOMERS, "total_spend_1", "{\"total_spend\": 1}", false},
    {DB_CUSTOMERS, "last_visit_date_1", "{\"last_visit_date\": 1}", false},
    {DB_CUSTOMERS, "createdAt_1", "{\"createdAt\": 1}", false},
    {DB_ORDERS, "customer_id_1", "{\"customer_id\": 1}", false},
    {DB_ORDERS, "createdAt_-1", "{\"createdAt\": -1}", false},
    {DB_LOGS, "campaign_id_1_customer_id_1", "{\"campaign_id\": 1, \"customer_id\": 1}", true},
    {DB_LOGS, "status_1_updatedAt_1", "{\"status\": 1, \"updatedAt\": 1}", false},
    {DB_LOGS, "createdAt_-1", "{\"createdAt\": -1}", false},
    {DB_LOGS, "campaign_id_1_status_1", "{\"campaign_id\": 1, \"status\": 1}", false},
    {DB_CAMPAIGNS, "createdAt_-1", "{\"createdAt\": -1}", false},
};

int routes_ensure_indexes(api_ctx *app, char *err, size_t errlen)
{
    mongoc_client_t *cl = dbpool_pop(app->db);
    int rc = 0;
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
    dbpool_push(app->db, cl);
    return rc;
}
