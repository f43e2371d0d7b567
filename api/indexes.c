/*
 * indexes: the MongoDB indexes of notes/design.md, created at start by minicrm-api.
 *
 * Every sort a product query makes is served by one of these (README "MongoDB indexes"):
 * MongoDB 4.4 fails a sort it must do in memory once it holds 100 MB (code 292), so the list
 * routes' {createdAt: -1, _id: -1} has an index with exactly those keys per collection; a
 * campaign's logs sort by {campaign_id, customer_id} (the unique index); customers and the
 * fan-out by _id.
 *
 * The builder (main.c's index thread, on a client of its own whose socket timeout is
 * mongo.index_timeout_ms: a build over a large collection takes minutes) calls
 * routes_ensure_indexes() until it returns 0. One pass tries every index still pending, each
 * with its own createIndexes, so one bad index never keeps the others from existing. Each
 * index moves through
 *
 *     PENDING --created (or already there)------------------------> READY
 *     PENDING --11000 duplicate keys, 85/86 other options, 67/197--> FAILED (for good)
 *     PENDING --anything else (unreachable, interrupted, ...)-----> PENDING (next pass)
 *
 * and each failure is logged once with its reason (a retried one again only when its reason
 * changes): a FAILED index needs a person (remove the duplicate values, drop the old index),
 * not a retry every 2 s. createIndexes is idempotent for an identical specification, so
 * running this at every start is safe.
 *
 * Superseded indexes (a spec an older version created that one above replaces) are dropped
 * once their replacement is READY: the sweeper's partial index replaced {status: 1,
 * updatedAt: 1}; {createdAt: -1, _id: -1} replaced {createdAt: -1}, which could not serve the
 * list routes' tie-break on _id; the unique (campaign, customer) index covers campaign logs
 * only since one-off messages (campaign_id null, POST /api/messages) exist, and as its key
 * pattern is unchanged, the old one is dropped before it is built.
 *
 * After the indexes, the builder back-fills the normalised e-mail domain (lib/rules'
 * RULES_DOMAIN_FIELD) of customers stored without one (by a version before it, or a writer that
 * does not know it): routes_backfill_domains() gives the next 1,000 of them theirs, found
 * through the email_domain index ({email_domain: null}), until none is left. Until then the
 * email_domain rule does not see those customers.
 *
 * The sweeper's index holds only the logs still PENDING (a partial index, MongoDB 3.2+): it
 * stays as small as the logs in flight, and a delivery receipt only removes its log from it
 * instead of moving it to another key.
 */
#include "apiutil.h"
#include "log.h"
#include "routes.h"
#include "rules.h"
#include "suppress.h"

#include <stdio.h>
#include <string.h>

typedef struct idx {
    const char *coll;
    const char *name;
    const char *keys_json; /* key document as JSON */
    bool unique;
    const char *partial_json; /* partialFilterExpression as JSON, or NULL */
} idx;

/* The campaigns index comes last: bench_campaign waits for it. */
static const idx k_indexes[] = {
    {DB_CUSTOMERS, "email_1", "{\"email\": 1}", true, NULL},
    {DB_CUSTOMERS, "total_spend_1", "{\"total_spend\": 1}", false, NULL},
    {DB_CUSTOMERS, "last_visit_date_1", "{\"last_visit_date\": 1}", false, NULL},
    {DB_CUSTOMERS, "createdAt_1", "{\"createdAt\": 1}", false, NULL},
    /* the email_domain rule's equality (lib/rules' RULES_DOMAIN_FIELD); also finds the customers
     * the back-fill below has still to give one ({email_domain: null}) */
    {DB_CUSTOMERS, "email_domain_1", "{\"email_domain\": 1}", false, NULL},
    /* audience counts of several rules, answered from the keys alone (no document read): the
     * email_domain rule's point first, else the spend range, else the visit range; the other
     * rules' fields are tested on the key */
    {DB_CUSTOMERS, "audience_domain",
     "{\"email_domain\": 1, \"total_spend\": 1, \"last_visit_date\": 1, \"createdAt\": 1}", false,
     NULL},
    {DB_CUSTOMERS, "audience_spend",
     "{\"total_spend\": 1, \"last_visit_date\": 1, \"createdAt\": 1}", false, NULL},
    {DB_CUSTOMERS, "audience_visit", "{\"last_visit_date\": 1, \"createdAt\": 1}", false, NULL},
    /* the customers an audience leaves out ({suppressed: {$ne: true}}): an audience count is
     * count(rules) - count(rules and suppressed: true) (api_count_audience), whose second count
     * this small index answers; it holds only the suppressed customers */
    {DB_CUSTOMERS, "suppressed_1_true", "{\"suppressed\": 1}", false, "{\"suppressed\": true}"},
    {DB_ORDERS, "customer_id_1", "{\"customer_id\": 1}", false, NULL},
    {DB_ORDERS, "createdAt_-1__id_-1", "{\"createdAt\": -1, \"_id\": -1}", false, NULL},
    /* One log per (campaign, customer) among campaign logs only: a one-off message's log has
     * campaign_id null (POST /api/messages), and a customer may get many. The range filter
     * holds every ObjectId and no null, and an equality on campaign_id implies it, so the
     * index still answers {campaign_id: X} queries and their customer_id sort. */
    {DB_LOGS, "campaign_id_1_customer_id_1_campaigns", "{\"campaign_id\": 1, \"customer_id\": 1}",
     true, "{\"campaign_id\": {\"$gte\": {\"$oid\": \"000000000000000000000000\"}}}"},
    {DB_LOGS, "updatedAt_1_pending", "{\"updatedAt\": 1}", false, "{\"status\": \"PENDING\"}"},
    {DB_LOGS, "createdAt_-1__id_-1", "{\"createdAt\": -1, \"_id\": -1}", false, NULL},
    {DB_LOGS, "campaign_id_1_status_1", "{\"campaign_id\": 1, \"status\": 1}", false, NULL},
    /* lib/suppress: one suppression per address; the list route's newest-first order; the
     * suppressions whose webhook event may not be pushed yet (a partial index: only those). */
    {DB_SUPPRESSIONS, "email_1", "{\"email\": 1}", true, NULL},
    {DB_SUPPRESSIONS, "at_-1__id_-1", "{\"at\": -1, \"_id\": -1}", false, NULL},
    {DB_SUPPRESSIONS, "at_1_notify", "{\"at\": 1}", false, "{\"notify\": true}"},
    /* the workers' flag repair every 3 s (fanout_repair_flags): every PAUSED campaign and those
     * CANCELLED since a time, without reading the other campaigns */
    {DB_CAMPAIGNS, "status_1_cancelledAt_1", "{\"status\": 1, \"cancelledAt\": 1}", false, NULL},
    {DB_CAMPAIGNS, "createdAt_-1__id_-1", "{\"createdAt\": -1, \"_id\": -1}", false, NULL},
};
#define N_INDEXES (sizeof k_indexes / sizeof k_indexes[0])
_Static_assert(N_INDEXES <= ROUTES_MAX_INDEXES, "raise ROUTES_MAX_INDEXES");

/* Indexes of older versions, dropped once the index that replaces them is READY; one with the
 * same key pattern as its replacement (same_key) is dropped before the replacement is created
 * instead, as MongoDB keeps one index per key pattern (85 otherwise). */
static const struct {
    const char *coll, *name, *replaced_by;
    bool same_key;
} k_superseded[] = {
    {DB_LOGS, "status_1_updatedAt_1", "updatedAt_1_pending", false},
    /* the unique (campaign, customer) index over every log, before one-off messages: the
     * logs' deterministic _id keeps campaign logs unique while the replacement is built */
    {DB_LOGS, "campaign_id_1_customer_id_1", "campaign_id_1_customer_id_1_campaigns", true},
    {DB_ORDERS, "createdAt_-1", "createdAt_-1__id_-1", false},
    {DB_LOGS, "createdAt_-1", "createdAt_-1__id_-1", false},
    {DB_CAMPAIGNS, "createdAt_-1", "createdAt_-1__id_-1", false},
};
#define N_SUPERSEDED (sizeof k_superseded / sizeof k_superseded[0])
_Static_assert(N_SUPERSEDED <= ROUTES_MAX_INDEXES, "raise ROUTES_MAX_INDEXES");

/* Errors a retry cannot fix: the data or an existing index must change first. */
static bool permanent(const bson_error_t *e)
{
    if (e->domain != MONGOC_ERROR_SERVER && e->domain != MONGOC_ERROR_QUERY &&
        e->domain != MONGOC_ERROR_WRITE_CONCERN)
        return false;
    switch (e->code) {
    case 11000: /* DuplicateKey: a unique index over duplicate values */
    case 11001:
    case 85:  /* IndexOptionsConflict: same keys, other options or name */
    case 86:  /* IndexKeySpecsConflict: same name, other keys */
    case 67:  /* CannotCreateIndex */
    case 197: /* InvalidIndexSpecificationOption */
        return true;
    default:
        return false;
    }
}

static const char *hint_for(uint32_t code)
{
    switch (code) {
    case 11000:
    case 11001:
        return "remove the duplicate values, then restart minicrm-api";
    case 85:
    case 86:
        return "an index with this name or these keys exists with other options: drop it, then "
               "restart minicrm-api";
    default:
        return "fix the specification";
    }
}

/* One createIndexes for k_indexes[i]. true on success, else false with e. */
static bool create_one(mongoc_client_t *cl, const char *db, const idx *x, bson_error_t *e)
{
    bson_t *keys = bson_new_from_json((const uint8_t *)x->keys_json, -1, e);
    bson_t *partial =
        x->partial_json ? bson_new_from_json((const uint8_t *)x->partial_json, -1, e) : NULL;
    if (!keys || (x->partial_json && !partial)) {
        bson_destroy(keys);
        bson_destroy(partial);
        return false;
    }
    bson_t cmd = BSON_INITIALIZER, arr, one, reply;
    BSON_APPEND_UTF8(&cmd, "createIndexes", x->coll);
    BSON_APPEND_ARRAY_BEGIN(&cmd, "indexes", &arr);
    BSON_APPEND_DOCUMENT_BEGIN(&arr, "0", &one);
    BSON_APPEND_DOCUMENT(&one, "key", keys);
    BSON_APPEND_UTF8(&one, "name", x->name);
    if (x->unique)
        BSON_APPEND_BOOL(&one, "unique", true);
    if (partial)
        BSON_APPEND_DOCUMENT(&one, "partialFilterExpression", partial);
    bson_append_document_end(&arr, &one);
    bson_append_array_end(&cmd, &arr);
    bool ok = mongoc_client_command_simple(cl, db, &cmd, NULL, &reply, e);
    bson_destroy(&reply);
    bson_destroy(&cmd);
    bson_destroy(keys);
    bson_destroy(partial);
    return ok;
}

static int find_index(const char *coll, const char *name)
{
    for (size_t i = 0; i < N_INDEXES; i++)
        if (!strcmp(k_indexes[i].coll, coll) && !strcmp(k_indexes[i].name, name))
            return (int)i;
    return -1;
}

/* Drop superseded index i. true if it is gone (or was never there). */
static bool drop_one(mongoc_client_t *cl, const char *db, size_t i)
{
    bson_error_t e;
    bson_t reply;
    bson_t *cmd = BCON_NEW("dropIndexes", BCON_UTF8(k_superseded[i].coll), "index",
                           BCON_UTF8(k_superseded[i].name));
    /* 26 NamespaceNotFound, 27 IndexNotFound: nothing to drop. */
    bool ok =
        mongoc_client_command_simple(cl, db, cmd, NULL, &reply, &e) || e.code == 26 || e.code == 27;
    if (!ok) {
        char q[600];
        log_warn("index_drop_failed", "coll=%s name=%s code=%u err=%s", k_superseded[i].coll,
                 k_superseded[i].name, e.code, log_quote(q, sizeof q, e.message));
    }
    bson_destroy(&reply);
    bson_destroy(cmd);
    return ok;
}

int routes_ensure_indexes(api_ctx *app, mongoc_client_t *cl, routes_index_state *s)
{
    const char *db = dbpool_db_name(app->db);
    size_t pending = 0;
    bool blocked[N_INDEXES] = {false}; /* its same-key predecessor could not be dropped yet */
    for (size_t i = 0; i < N_SUPERSEDED; i++) {
        if (!k_superseded[i].same_key || s->dropped[i])
            continue;
        int r = find_index(k_superseded[i].coll, k_superseded[i].replaced_by);
        if (r < 0 || s->state[r] != ROUTES_IDX_PENDING)
            continue;
        if (drop_one(cl, db, i))
            s->dropped[i] = true;
        else
            blocked[r] = true;
    }
    for (size_t i = 0; i < N_INDEXES; i++) {
        if (s->state[i] != ROUTES_IDX_PENDING)
            continue;
        if (blocked[i]) {
            pending++;
            continue;
        }
        const idx *x = &k_indexes[i];
        bson_error_t e;
        if (create_one(cl, db, x, &e)) {
            s->state[i] = ROUTES_IDX_READY;
            if (s->code[i] != 0)
                log_info("index_ready", "coll=%s name=%s", x->coll, x->name);
            continue;
        }
        char q[600];
        log_quote(q, sizeof q, e.message);
        if (permanent(&e)) {
            s->state[i] = ROUTES_IDX_FAILED;
            s->n_failed++;
            log_error("index_failed", "coll=%s name=%s code=%u retry=no err=%s hint=\"%s\"",
                      x->coll, x->name, e.code, q, hint_for(e.code));
        } else {
            /* Reported once per reason: an unreachable MongoDB is not news every 2 s. */
            if (s->code[i] != (int)e.code + 1)
                log_warn("index_failed", "coll=%s name=%s code=%u retry=yes err=%s", x->coll,
                         x->name, e.code, q);
            pending++;
        }
        s->code[i] = (int)e.code + 1;
    }
    for (size_t i = 0; i < N_SUPERSEDED; i++) {
        if (s->dropped[i])
            continue;
        int r = find_index(k_superseded[i].coll, k_superseded[i].replaced_by);
        if (r < 0 || s->state[r] != ROUTES_IDX_READY) {
            /* Its replacement failed for good: the old index is all the queries have. */
            if (r < 0 || s->state[r] == ROUTES_IDX_PENDING)
                pending++;
            continue;
        }
        if (drop_one(cl, db, i))
            s->dropped[i] = true;
        else
            pending++;
    }
    return (int)pending;
}

/* ------------------------------------------------------------------------------------------ */
/* Back-fill of the normalised e-mail domain                                                  */
/* ------------------------------------------------------------------------------------------ */

#define BACKFILL_BATCH 1000

long routes_backfill_domains(api_ctx *app, mongoc_client_t *cl)
{
    mongoc_collection_t *coll =
        mongoc_client_get_collection(cl, dbpool_db_name(app->db), DB_CUSTOMERS);
    bson_t *filter = BCON_NEW(RULES_DOMAIN_FIELD, BCON_NULL);
    bson_t *opts = BCON_NEW("projection", "{", "email", BCON_INT32(1), "}", "limit",
                            BCON_INT64(BACKFILL_BATCH), "batchSize", BCON_INT64(BACKFILL_BATCH));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    mongoc_bulk_operation_t *bulk = mongoc_collection_create_bulk_operation_with_opts(coll, NULL);
    bson_error_t e;
    const bson_t *doc;
    long n = 0;
    while (mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it;
        const char *email = "";
        if (bson_iter_init_find(&it, doc, "email") && BSON_ITER_HOLDS_UTF8(&it))
            email = bson_iter_utf8(&it, NULL);
        if (!bson_iter_init_find(&it, doc, "_id"))
            continue;
        char domain[256];
        /* "" for an e-mail without '@': stored all the same, so it is not visited again */
        rules_email_domain(email, domain, sizeof domain);
        bson_t sel = BSON_INITIALIZER, upd = BSON_INITIALIZER, set;
        bson_append_iter(&sel, "_id", 3, &it);
        BSON_APPEND_NULL(&sel, RULES_DOMAIN_FIELD); /* a writer's own value wins */
        BSON_APPEND_DOCUMENT_BEGIN(&upd, "$set", &set);
        BSON_APPEND_UTF8(&set, RULES_DOMAIN_FIELD, domain);
        bson_append_document_end(&upd, &set);
        mongoc_bulk_operation_update_one(bulk, &sel, &upd, false);
        bson_destroy(&sel);
        bson_destroy(&upd);
        n++;
    }
    if (mongoc_cursor_error(cur, &e)) {
        n = -1;
    } else if (n > 0) {
        bson_t reply;
        if (!mongoc_bulk_operation_execute(bulk, &reply, &e))
            n = -1;
        bson_destroy(&reply);
    }
    if (n < 0) {
        char q[600];
        log_warn("domain_backfill_failed", "code=%u err=%s", e.code,
                 log_quote(q, sizeof q, e.message));
    }
    mongoc_bulk_operation_destroy(bulk);
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
    return n;
}
