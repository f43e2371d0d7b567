/*
 * campevents: see campevents.h for the outbox and its crash points.
 */
#include "campevents.h"

#include "campaign.h"
#include "jobs.h"
#include "queue.h"
#include "timeutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DUE 32 /* entries published per flush (a campaign has a handful) */

static int64_t doc_int(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_NUMBER(&it)
               ? bson_iter_as_int64(&it)
               : 0;
}

static const char *doc_str(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it)
               ? bson_iter_utf8(&it, NULL)
               : NULL;
}

/* The event type of a move to `to` (a status name). 0, or -1 for a state without an event. */
static int type_of(const char *to, jobs_event_type *t)
{
    campaign_status st;
    if (!to || campaign_status_parse(to, strlen(to), &st) != 0)
        return -1;
    switch (st) {
    case CAMPAIGN_SENDING:
        *t = JOBS_EV_CAMPAIGN_STARTED;
        return 0;
    case CAMPAIGN_COMPLETED:
        *t = JOBS_EV_CAMPAIGN_COMPLETED;
        return 0;
    case CAMPAIGN_PAUSED:
        *t = JOBS_EV_CAMPAIGN_PAUSED;
        return 0;
    case CAMPAIGN_CANCELLED:
        *t = JOBS_EV_CAMPAIGN_CANCELLED;
        return 0;
    default:
        return -1;
    }
}

/* Publish the entries of one campaign document and pull them. Count or -1. */
static int publish(mongoc_collection_t *camps, queue *q, const bson_t *doc, char *err,
                   size_t errlen)
{
    bson_iter_t it, arr;
    if (!bson_iter_init_find(&it, doc, "_id") || !BSON_ITER_HOLDS_OID(&it))
        return 0;
    bson_oid_t cid;
    bson_oid_copy(bson_iter_oid(&it), &cid);
    char hex[25];
    bson_oid_to_string(&cid, hex);
    if (!bson_iter_init_find(&it, doc, CAMPAIGN_EVENTS_DUE) || !BSON_ITER_HOLDS_ARRAY(&it) ||
        !bson_iter_recurse(&it, &arr))
        return 0;

    /* The data object, the same for every entry but its status. */
    const char *name = doc_str(doc, "name"), *reason = doc_str(doc, "cancelReason");
    char *jobs[MAX_DUE] = {0};
    size_t lens[MAX_DUE], n = 0;
    bson_t pulled = BSON_INITIALIZER; /* the entries as read, for $pullAll */
    bson_t list;
    int rc = -1;
    BSON_APPEND_ARRAY_BEGIN(&pulled, CAMPAIGN_EVENTS_DUE, &list);
    while (bson_iter_next(&arr) && n < MAX_DUE) {
        const uint8_t *raw;
        uint32_t rawlen;
        bson_t entry;
        if (!BSON_ITER_HOLDS_DOCUMENT(&arr))
            continue;
        bson_iter_document(&arr, &rawlen, &raw);
        if (!bson_init_static(&entry, raw, rawlen))
            continue;
        char key[16];
        snprintf(key, sizeof key, "%zu", n);
        BSON_APPEND_DOCUMENT(&list, key, &entry);
        jobs_event_type t;
        const char *to = doc_str(&entry, "to");
        int64_t at = doc_int(&entry, "at");
        if (type_of(to, &t) != 0) { /* not ours to publish: pulled, as nothing will */
            jobs[n] = NULL;
            lens[n++] = 0;
            continue;
        }
        char subject[64];
        if (t == JOBS_EV_CAMPAIGN_PAUSED)
            snprintf(subject, sizeof subject, "%s:%lld", hex, (long long)at);
        else
            snprintf(subject, sizeof subject, "%s", hex);
        jsonx_buf data = {0}, job = {0};
        char num[200];
        jsonx_buf_cat(&data, "{\"campaign_id\":\"");
        jsonx_buf_cat(&data, hex);
        jsonx_buf_cat(&data, "\",\"name\":");
        jsonx_buf_str(&data, name ? name : "", name ? strlen(name) : 0);
        jsonx_buf_cat(&data, ",\"status\":");
        jsonx_buf_str(&data, to, strlen(to));
        snprintf(num, sizeof num,
                 ",\"total\":%lld,\"sent\":%lld,\"failed\":%lld,\"cancelled\":%lld,"
                 "\"pending\":%lld",
                 (long long)doc_int(doc, "total"), (long long)doc_int(doc, "sent"),
                 (long long)doc_int(doc, "failed"), (long long)doc_int(doc, "cancelled"),
                 (long long)doc_int(doc, "pending"));
        jsonx_buf_cat(&data, num);
        if (t == JOBS_EV_CAMPAIGN_CANCELLED && reason) {
            jsonx_buf_cat(&data, ",\"cancelReason\":");
            jsonx_buf_str(&data, reason, strlen(reason) > 500 ? 500 : strlen(reason));
        }
        jsonx_buf_raw(&data, "}", 1);
        jobs_event ev = {.type = t, .at = at, .data = data.data, .datalen = data.len};
        jobs_event_id(t, subject, ev.id);
        bool ok = jsonx_buf_ok(&data) && jobs_event_encode(&job, &ev) == 0;
        jsonx_buf_free(&data);
        if (!ok) {
            jsonx_buf_free(&job);
            snprintf(err, errlen, "encode event: out of memory");
            goto out;
        }
        jobs[n] = job.data; /* taken over */
        lens[n++] = job.len;
    }
    bson_append_array_end(&pulled, &list);
    if (n == 0) {
        rc = 0;
        goto out;
    }
    const char *pj[MAX_DUE];
    size_t pl[MAX_DUE], np = 0;
    for (size_t i = 0; i < n; i++)
        if (jobs[i]) {
            pj[np] = jobs[i];
            pl[np++] = lens[i];
        }
    if (np > 0 && queue_push_many(q, pj, pl, np) != 0) {
        snprintf(err, errlen, "push events: %s", queue_error(q));
        goto out;
    }
    bson_t *sel = BCON_NEW("_id", BCON_OID(&cid));
    bson_t upd = BSON_INITIALIZER;
    BSON_APPEND_DOCUMENT(&upd, "$pullAll", &pulled);
    bson_error_t e;
    bool ok = mongoc_collection_update_one(camps, sel, &upd, NULL, NULL, &e);
    bson_destroy(sel);
    bson_destroy(&upd);
    if (!ok) { /* published; the rescue publishes them again (same ids), harmless */
        snprintf(err, errlen, "pull published events: %s", e.message);
        goto out;
    }
    rc = (int)np;
out:
    for (size_t i = 0; i < n; i++)
        free(jobs[i]);
    bson_destroy(&pulled);
    return rc;
}

static queue *events_queue(rconn *rc, const char *prefix, char *err, size_t errlen)
{
    queue_opts qo;
    queue_opts_default(&qo);
    return queue_open(rc, prefix, QUEUE_EVENTS, NULL, &qo, err, errlen);
}

static bson_t *projection(void)
{
    return BCON_NEW("projection", "{", "name", BCON_INT32(1), "cancelReason", BCON_INT32(1),
                    "total", BCON_INT32(1), "sent", BCON_INT32(1), "failed", BCON_INT32(1),
                    "cancelled", BCON_INT32(1), "pending", BCON_INT32(1), CAMPAIGN_EVENTS_DUE,
                    BCON_INT32(1), "}");
}

/* Publish every campaign matching filter (at most limit). Count or -1. */
static int flush_matching(mongoc_collection_t *camps, rconn *rc, const char *prefix, bson_t *filter,
                          int64_t limit, char *err, size_t errlen)
{
    queue *q = events_queue(rc, prefix, err, errlen);
    if (!q)
        return -1;
    bson_t *opts = projection();
    BSON_APPEND_INT64(opts, "limit", limit);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(camps, filter, opts, NULL);
    const bson_t *doc;
    int total = 0, rc_ = 0;
    while (mongoc_cursor_next(cur, &doc)) {
        int n = publish(camps, q, doc, err, errlen);
        if (n < 0) {
            rc_ = -1;
            break;
        }
        total += n;
    }
    bson_error_t e;
    if (rc_ == 0 && mongoc_cursor_error(cur, &e)) {
        snprintf(err, errlen, "find campaigns with due events: %s", e.message);
        rc_ = -1;
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    queue_close(q);
    return rc_ < 0 ? -1 : total;
}

int campevents_flush(mongoc_collection_t *camps, rconn *rc, const char *prefix,
                     const bson_oid_t *cid, char *err, size_t errlen)
{
    bson_t *f = BCON_NEW("_id", BCON_OID(cid));
    int n = flush_matching(camps, rc, prefix, f, 1, err, errlen);
    bson_destroy(f);
    return n;
}

int campevents_rescue(mongoc_collection_t *camps, rconn *rc, const char *prefix, int64_t older_ms,
                      char *err, size_t errlen)
{
    bson_t *f =
        BCON_NEW(CAMPAIGN_EVENTS_DUE ".at", "{", "$lte", BCON_INT64(time_now_ms() - older_ms), "}");
    int n = flush_matching(camps, rc, prefix, f, 100, err, errlen);
    bson_destroy(f);
    return n;
}
