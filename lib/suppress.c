/*
 * suppress: see suppress.h (the collection, the derived flag, the order of writes that makes a
 * concurrent customer insert and suppression converge, and the crash points).
 */
#include "suppress.h"

#include "jobs.h"
#include "jsonx.h"
#include "queue.h"
#include "rules.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REBUILD_BATCH 500 /* addresses per update_many of the rebuild */

static int flag_batch(mongoc_collection_t *custs, char (*emails)[SUPPRESS_EMAIL_MAX + 1], int n,
                      bool on, int64_t *changed, bson_error_t *e);

static void append_new(bson_t *upd, bson_oid_t *oid, suppress_reason why, const char *source,
                       int64_t now);

static const char *const reason_names[SUPPRESS_REASON_COUNT] = {
    [SUPPRESS_UNSUBSCRIBED] = "unsubscribed",
    [SUPPRESS_BOUNCED] = "bounced",
    [SUPPRESS_COMPLAINED] = "complained",
    [SUPPRESS_MANUAL] = "manual",
};

const char *suppress_reason_name(suppress_reason r)
{
    return (unsigned)r < SUPPRESS_REASON_COUNT ? reason_names[r] : "?";
}

int suppress_reason_parse(const char *s, suppress_reason *out)
{
    if (!s)
        return -1;
    for (int i = 0; i < SUPPRESS_REASON_COUNT; i++)
        if (strcmp(reason_names[i], s) == 0) {
            *out = (suppress_reason)i;
            return 0;
        }
    return -1;
}

static void set_err(bson_error_t *e, const char *msg)
{
    if (e)
        bson_set_error(e, 0, 0, "%s", msg);
}

bool suppress_email_valid(const char *s)
{
    if (!s)
        return false;
    size_t n = strlen(s);
    if (n < 3 || n > SUPPRESS_EMAIL_MAX)
        return false;
    const char *at = strchr(s, '@');
    if (!at || at == s || strchr(at + 1, '@') || (size_t)(at - s) > 64)
        return false;
    for (const char *p = s; p < at; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= ' ' || c >= 127 || strchr("()<>,;:\\\"[]", c))
            return false;
    }
    const char *d = at + 1;
    if (!*d || !strchr(d, '.'))
        return false;
    char prev = '.';
    for (const char *p = d; *p; p++) {
        char c = (char)tolower((unsigned char)*p);
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '-' && prev != '.') ||
                  (c == '.' && prev != '.' && prev != '-');
        if (!ok)
            return false;
        prev = c;
    }
    return prev != '.' && prev != '-';
}

int suppress_email_norm(const char *in, char out[SUPPRESS_EMAIL_MAX + 1])
{
    out[0] = '\0';
    if (!suppress_email_valid(in))
        return -1;
    size_t n = strlen(in);
    for (size_t i = 0; i <= n; i++)
        out[i] = (char)tolower((unsigned char)in[i]);
    return 0;
}

/* Copy doc's "email" string into out. False when doc has none or it is longer than an address
 * can be (such a document is skipped, not an error). */
static bool doc_email(const bson_t *doc, char out[SUPPRESS_EMAIL_MAX + 1])
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, "email") || !BSON_ITER_HOLDS_UTF8(&it))
        return false;
    uint32_t len;
    const char *s = bson_iter_utf8(&it, &len);
    if (len > SUPPRESS_EMAIL_MAX)
        return false;
    memcpy(out, s, len + 1);
    return true;
}

static bool hex24(const char *s)
{
    if (!s || strlen(s) != 24)
        return false;
    for (int i = 0; i < 24; i++)
        if (!isxdigit((unsigned char)s[i]))
            return false;
    return true;
}

/* update_many {email} with `update` on customers. */
static int flag_customers(mongoc_collection_t *custs, const char *email, bool on, bson_error_t *e)
{
    bson_t sel = BSON_INITIALIZER, upd = BSON_INITIALIZER, sub;
    BSON_APPEND_UTF8(&sel, "email", email);
    if (on) {
        BSON_APPEND_DOCUMENT_BEGIN(&upd, "$set", &sub);
        BSON_APPEND_BOOL(&sub, RULES_SUPPRESSED_FIELD, true);
    } else {
        BSON_APPEND_DOCUMENT_BEGIN(&upd, "$unset", &sub);
        BSON_APPEND_UTF8(&sub, RULES_SUPPRESSED_FIELD, "");
    }
    bson_append_document_end(&upd, &sub);
    bool ok = mongoc_collection_update_many(custs, &sel, &upd, NULL, NULL, e);
    bson_destroy(&sel);
    bson_destroy(&upd);
    return ok ? 0 : -1;
}

static bool dup_key(const bson_error_t *e)
{
    return e->code == 11000 || e->code == 11001;
}

int suppress_add(mongoc_collection_t *supps, mongoc_collection_t *custs, const char *email,
                 suppress_reason why, const char *source_log_hex, int64_t now, bool *created,
                 bson_error_t *e)
{
    char addr[SUPPRESS_EMAIL_MAX + 1];
    if (created)
        *created = false;
    if (suppress_email_norm(email, addr) != 0) {
        set_err(e, "email must be a valid e-mail address");
        return -1;
    }
    if ((unsigned)why >= SUPPRESS_REASON_COUNT) {
        set_err(e, "reason must be unsubscribed, bounced, complained or manual");
        return -1;
    }
    if (source_log_hex && !hex24(source_log_hex)) {
        set_err(e, "source must be a log id (24 hex digits)");
        return -1;
    }
    bson_oid_t oid;
    bson_oid_init(&oid, NULL);
    bson_t sel = BSON_INITIALIZER, upd = BSON_INITIALIZER, opts = BSON_INITIALIZER,
           reply = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&sel, "email", addr);
    char low[25];
    if (source_log_hex)
        for (int i = 0; i < 25; i++)
            low[i] = (char)tolower((unsigned char)source_log_hex[i]);
    append_new(&upd, &oid, why, source_log_hex ? low : NULL, now);
    BSON_APPEND_BOOL(&opts, "upsert", true);
    int rc = -1;
    /* Two concurrent upserts of one address: the unique index lets one insert, the other gets
     * a duplicate key and, retried, matches the document the first wrote. */
    for (int attempt = 0; attempt < 3; attempt++) {
        bson_reinit(&reply);
        if (mongoc_collection_update_one(supps, &sel, &upd, &opts, &reply, e)) {
            bson_iter_t it;
            if (created && bson_iter_init_find(&it, &reply, "upsertedCount") &&
                bson_iter_as_int64(&it) > 0)
                *created = true;
            rc = 0;
            break;
        }
        if (!dup_key(e))
            break;
    }
    bson_destroy(&sel);
    bson_destroy(&upd);
    bson_destroy(&opts);
    bson_destroy(&reply);
    if (rc != 0)
        return -1;
    return flag_customers(custs, addr, true, e);
}

/* The $setOnInsert document of a new suppression. */
static void append_new(bson_t *upd, bson_oid_t *oid, suppress_reason why, const char *source,
                       int64_t now)
{
    bson_t soi;
    BSON_APPEND_DOCUMENT_BEGIN(upd, "$setOnInsert", &soi);
    BSON_APPEND_OID(&soi, "_id", oid);
    BSON_APPEND_UTF8(&soi, "reason", suppress_reason_name(why));
    BSON_APPEND_DATE_TIME(&soi, "at", now);
    if (source)
        BSON_APPEND_UTF8(&soi, "source", source);
    else
        BSON_APPEND_NULL(&soi, "source");
    if (why == SUPPRESS_UNSUBSCRIBED)
        BSON_APPEND_BOOL(&soi, "notify", true);
    bson_append_document_end(upd, &soi);
}

int suppress_add_batch(mongoc_collection_t *supps, mongoc_collection_t *custs,
                       const char *const *emails, const suppress_reason *why, size_t n, int64_t now,
                       int64_t *added, int64_t *existing, bson_error_t *e)
{
    if (added)
        *added = 0;
    if (existing)
        *existing = 0;
    if (n == 0)
        return 0;
    bson_t *bopts = BCON_NEW("ordered", BCON_BOOL(true));
    mongoc_bulk_operation_t *bulk = mongoc_collection_create_bulk_operation_with_opts(supps, bopts);
    bson_destroy(bopts);
    bson_t *uopts = BCON_NEW("upsert", BCON_BOOL(true));
    bool ok = true;
    for (size_t i = 0; ok && i < n; i++) {
        bson_oid_t oid;
        bson_oid_init(&oid, NULL);
        bson_t sel = BSON_INITIALIZER, upd = BSON_INITIALIZER;
        BSON_APPEND_UTF8(&sel, "email", emails[i]);
        append_new(&upd, &oid, why[i], NULL, now);
        ok = mongoc_bulk_operation_update_one_with_opts(bulk, &sel, &upd, uopts, e);
        bson_destroy(&sel);
        bson_destroy(&upd);
    }
    bson_destroy(uopts);
    bson_t reply;
    ok = ok && mongoc_bulk_operation_execute(bulk, &reply, e);
    if (ok) {
        bson_iter_t it;
        int64_t up = bson_iter_init_find(&it, &reply, "nUpserted") ? bson_iter_as_int64(&it) : 0;
        if (added)
            *added = up;
        if (existing)
            *existing = (int64_t)n - up;
    }
    bson_destroy(&reply);
    mongoc_bulk_operation_destroy(bulk);
    if (!ok)
        return -1;
    /* The flags of the whole batch in one statement. */
    char(*batch)[SUPPRESS_EMAIL_MAX + 1] = malloc(n * sizeof *batch);
    if (!batch) {
        set_err(e, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        snprintf(batch[i], sizeof batch[i], "%s", emails[i]);
    int rc = flag_batch(custs, batch, (int)n, true, NULL, e);
    free(batch);
    return rc;
}

int suppress_find(mongoc_collection_t *supps, const char *email, bool *found, suppress_reason *why,
                  bson_error_t *e)
{
    char addr[SUPPRESS_EMAIL_MAX + 1];
    *found = false;
    if (suppress_email_norm(email, addr) != 0)
        return 0; /* not an address: nothing can be suppressed under it */
    bson_t sel = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&sel, "email", addr);
    bson_t *opts =
        BCON_NEW("limit", BCON_INT64(1), "projection", "{", "reason", BCON_INT32(1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(supps, &sel, opts, NULL);
    const bson_t *doc;
    if (mongoc_cursor_next(cur, &doc)) {
        *found = true;
        bson_iter_t it;
        suppress_reason r = SUPPRESS_MANUAL;
        if (bson_iter_init_find(&it, doc, "reason") && BSON_ITER_HOLDS_UTF8(&it))
            (void)suppress_reason_parse(bson_iter_utf8(&it, NULL), &r);
        if (why)
            *why = r;
    }
    int rc = mongoc_cursor_error(cur, e) ? -1 : 0;
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    bson_destroy(&sel);
    return rc;
}

int suppress_remove(mongoc_collection_t *supps, mongoc_collection_t *custs, const char *email,
                    bool *removed, bson_error_t *e)
{
    char addr[SUPPRESS_EMAIL_MAX + 1];
    if (removed)
        *removed = false;
    if (suppress_email_norm(email, addr) != 0) {
        set_err(e, "email must be a valid e-mail address");
        return -1;
    }
    bson_t sel = BSON_INITIALIZER, reply;
    BSON_APPEND_UTF8(&sel, "email", addr);
    bool ok = mongoc_collection_delete_one(supps, &sel, NULL, &reply, e);
    if (ok && removed) {
        bson_iter_t it;
        *removed = bson_iter_init_find(&it, &reply, "deletedCount") && bson_iter_as_int64(&it) > 0;
    }
    bson_destroy(&reply);
    bson_destroy(&sel);
    if (!ok || flag_customers(custs, addr, false, e) != 0)
        return -1;
    /* An add that ran between the delete and the unset set the flag before this unset: look
     * again, the suppression is the truth. */
    bool again = false;
    if (suppress_find(supps, addr, &again, NULL, e) != 0)
        return -1;
    return again ? flag_customers(custs, addr, true, e) : 0;
}

int suppress_flag_customer(mongoc_collection_t *supps, mongoc_collection_t *custs,
                           const char *email, bool *suppressed, bson_error_t *e)
{
    bool found = false;
    if (suppressed)
        *suppressed = false;
    if (suppress_find(supps, email, &found, NULL, e) != 0)
        return -1;
    if (!found)
        return 0;
    if (suppressed)
        *suppressed = true;
    char addr[SUPPRESS_EMAIL_MAX + 1];
    if (suppress_email_norm(email, addr) != 0)
        return 0;
    return flag_customers(custs, addr, true, e);
}

/* ---- rebuild ---------------------------------------------------------------------------- */

/* update_many {email: {$in: emails}} (+ extra) with $set / $unset suppressed. */
static int flag_batch(mongoc_collection_t *custs, char (*emails)[SUPPRESS_EMAIL_MAX + 1], int n,
                      bool on, int64_t *changed, bson_error_t *e)
{
    bson_t sel = BSON_INITIALIZER, in, arr, upd = BSON_INITIALIZER, sub, reply;
    BSON_APPEND_DOCUMENT_BEGIN(&sel, "email", &in);
    BSON_APPEND_ARRAY_BEGIN(&in, "$in", &arr);
    for (int i = 0; i < n; i++) {
        char k[16];
        const char *key;
        bson_uint32_to_string((uint32_t)i, &key, k, sizeof k);
        bson_append_utf8(&arr, key, -1, emails[i], -1);
    }
    bson_append_array_end(&in, &arr);
    bson_append_document_end(&sel, &in);
    if (on) {
        BSON_APPEND_DOCUMENT_BEGIN(&sel, RULES_SUPPRESSED_FIELD, &sub);
        BSON_APPEND_BOOL(&sub, "$ne", true);
        bson_append_document_end(&sel, &sub);
        BSON_APPEND_DOCUMENT_BEGIN(&upd, "$set", &sub);
        BSON_APPEND_BOOL(&sub, RULES_SUPPRESSED_FIELD, true);
    } else {
        BSON_APPEND_DOCUMENT_BEGIN(&upd, "$unset", &sub);
        BSON_APPEND_UTF8(&sub, RULES_SUPPRESSED_FIELD, "");
    }
    bson_append_document_end(&upd, &sub);
    bool ok = mongoc_collection_update_many(custs, &sel, &upd, NULL, &reply, e);
    if (ok && changed) {
        bson_iter_t it;
        if (bson_iter_init_find(&it, &reply, "modifiedCount"))
            *changed += bson_iter_as_int64(&it);
    }
    bson_destroy(&reply);
    bson_destroy(&sel);
    bson_destroy(&upd);
    return ok ? 0 : -1;
}

/* Stream `filter` on coll (projection email), handing batches of addresses to fn. */
typedef int (*batch_fn)(void *ctx, char (*emails)[SUPPRESS_EMAIL_MAX + 1], int n, bson_error_t *e);

static int stream_emails(mongoc_collection_t *coll, const bson_t *filter, batch_fn fn, void *ctx,
                         bson_error_t *e)
{
    char(*batch)[SUPPRESS_EMAIL_MAX + 1] = malloc(REBUILD_BATCH * sizeof *batch);
    if (!batch) {
        set_err(e, "out of memory");
        return -1;
    }
    bson_t *opts = BCON_NEW("projection", "{", "email", BCON_INT32(1), "_id", BCON_INT32(0), "}",
                            "batchSize", BCON_INT32(REBUILD_BATCH));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    const bson_t *doc;
    int n = 0, rc = 0;
    while (rc == 0 && mongoc_cursor_next(cur, &doc)) {
        if (!doc_email(doc, batch[n]))
            continue;
        if (++n == REBUILD_BATCH) {
            rc = fn(ctx, batch, n, e);
            n = 0;
        }
    }
    if (rc == 0 && mongoc_cursor_error(cur, e))
        rc = -1;
    if (rc == 0 && n > 0)
        rc = fn(ctx, batch, n, e);
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    free(batch);
    return rc;
}

typedef struct rebuild_ctx {
    mongoc_collection_t *supps, *custs;
    int64_t set, cleared;
} rebuild_ctx;

static int set_batch(void *ctx, char (*emails)[SUPPRESS_EMAIL_MAX + 1], int n, bson_error_t *e)
{
    rebuild_ctx *c = ctx;
    return flag_batch(c->custs, emails, n, true, &c->set, e);
}

/* Flagged customers of this batch whose address has no suppression: clear them. */
static int clear_batch(void *ctx, char (*emails)[SUPPRESS_EMAIL_MAX + 1], int n, bson_error_t *e)
{
    rebuild_ctx *c = ctx;
    char(*stale)[SUPPRESS_EMAIL_MAX + 1] = malloc(REBUILD_BATCH * sizeof *stale);
    if (!stale) {
        set_err(e, "out of memory");
        return -1;
    }
    int nstale = 0, rc = 0;
    for (int i = 0; rc == 0 && i < n; i++) {
        bool found = false;
        rc = suppress_find(c->supps, emails[i], &found, NULL, e);
        if (rc == 0 && !found)
            memcpy(stale[nstale++], emails[i], sizeof stale[0]);
    }
    if (rc == 0 && nstale)
        rc = flag_batch(c->custs, stale, nstale, false, &c->cleared, e);
    free(stale);
    return rc;
}

int suppress_rebuild_flags(mongoc_collection_t *supps, mongoc_collection_t *custs, int64_t *set,
                           int64_t *cleared, bson_error_t *e)
{
    rebuild_ctx c = {supps, custs, 0, 0};
    bson_t all = BSON_INITIALIZER, flagged = BSON_INITIALIZER;
    BSON_APPEND_BOOL(&flagged, RULES_SUPPRESSED_FIELD, true);
    int rc = stream_emails(supps, &all, set_batch, &c, e);
    if (rc == 0)
        rc = stream_emails(custs, &flagged, clear_batch, &c, e);
    bson_destroy(&all);
    bson_destroy(&flagged);
    if (set)
        *set = c.set;
    if (cleared)
        *cleared = c.cleared;
    return rc;
}

/* ---- events ----------------------------------------------------------------------------- */

int suppress_notify(mongoc_collection_t *supps, struct queue *events, const char *email, int64_t at,
                    bson_error_t *e)
{
    char addr[SUPPRESS_EMAIL_MAX + 1];
    if (suppress_email_norm(email, addr) != 0) {
        set_err(e, "email must be a valid e-mail address");
        return -1;
    }
    jsonx_buf data = {0}, job = {0};
    jsonx_buf_cat(&data, "{\"email\":");
    jsonx_buf_str(&data, addr, strlen(addr));
    jsonx_buf_cat(&data, ",\"reason\":\"unsubscribed\"}");
    jobs_event ev = {.type = JOBS_EV_CONTACT_UNSUBSCRIBED, .at = at};
    jobs_event_id(ev.type, addr, ev.id);
    int rc = -1;
    if (!jsonx_buf_ok(&data)) {
        set_err(e, "out of memory");
        goto out;
    }
    ev.data = data.data;
    ev.datalen = data.len;
    if (jobs_event_encode(&job, &ev) != 0) {
        set_err(e, "out of memory");
        goto out;
    }
    if (queue_push((queue *)events, job.data, job.len) != 0) {
        set_err(e, "could not push the event to Redis");
        goto out;
    }
    /* Pushed: clear the mark. A crash before this line pushes the same event again later. */
    bson_t sel = BSON_INITIALIZER, upd = BSON_INITIALIZER, sub;
    BSON_APPEND_UTF8(&sel, "email", addr);
    BSON_APPEND_DOCUMENT_BEGIN(&upd, "$unset", &sub);
    BSON_APPEND_UTF8(&sub, "notify", "");
    bson_append_document_end(&upd, &sub);
    bool ok = mongoc_collection_update_one(supps, &sel, &upd, NULL, NULL, e);
    bson_destroy(&sel);
    bson_destroy(&upd);
    rc = ok ? 0 : -1;
out:
    jsonx_buf_free(&data);
    jsonx_buf_free(&job);
    return rc;
}

int suppress_notify_pending(mongoc_collection_t *supps, struct queue *events, int64_t older_than,
                            int max, int *pushed, bson_error_t *e)
{
    if (pushed)
        *pushed = 0;
    bson_t *filter =
        BCON_NEW("notify", BCON_BOOL(true), "at", "{", "$lt", BCON_DATE_TIME(older_than), "}");
    bson_t *opts = BCON_NEW("limit", BCON_INT64(max), "projection", "{", "email", BCON_INT32(1),
                            "at", BCON_INT32(1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(supps, filter, opts, NULL);
    const bson_t *doc;
    int rc = 0;
    /* Collect first, then push: the cursor is closed before the writes. */
    char emails[64][SUPPRESS_EMAIL_MAX + 1];
    int64_t ats[64];
    int n = 0;
    while (n < 64 && n < max && mongoc_cursor_next(cur, &doc)) {
        if (!doc_email(doc, emails[n]))
            continue;
        bson_iter_t it;
        ats[n] = bson_iter_init_find(&it, doc, "at") && BSON_ITER_HOLDS_DATE_TIME(&it)
                     ? bson_iter_date_time(&it)
                     : older_than;
        n++;
    }
    if (mongoc_cursor_error(cur, e))
        rc = -1;
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    bson_destroy(opts);
    for (int i = 0; rc == 0 && i < n; i++) {
        rc = suppress_notify(supps, events, emails[i], ats[i], e);
        if (rc == 0 && pushed)
            (*pushed)++;
    }
    return rc;
}
