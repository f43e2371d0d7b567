/*
 * receipts: see receipts.h for the guarantees.
 *
 * A job is one receipt {"log_id", "status", "vendorMsgId", "at", "campaign_id"?} or a batch
 * {"receipts": [...]} (one POST to the API), read with lib/jobs; every log move and the
 * completion check are lib/campaign's. A receipt is a delivery receipt (SENT, FAILED, or BOUNCED:
 * the move to FAILED marked as a bounce) or an event recorded without a move (OPENED, CLICKED,
 * COMPLAINED: openedAt / clickedAt / complainedAt, once per log, whatever its status). Each
 * (log, class) pair is one guard: the status move, or one event field. One claimed batch of
 * jobs, step by step (numbers are the crash points discussed below; each step is one apply_*
 * function):
 *   1. parse every job; a malformed job -> dead-letter now; a malformed receipt inside a batch
 *      job is set aside as a dead letter of its own (written in step 6, with the ack);
 *      duplicates of a (log_id, class) inside the batch are settled with the first one.
 *   2. tok = new ObjectId hex; ZADD P{receipts}:ctoks now tok, SET ctok:tok ids, HSET
 *      ctok-owners tok <consumer id>                                               (Redis)
 *   3. unordered bulk: updateOne {_id, status: PENDING, fence: {$ne: tok} (, campaign_id when
 *      the receipt names it)} -> $set status, vendorMsgId, deliveredAt, updatedAt, ctok: tok
 *      (+ failureReason, + bounced: true); an event: updateOne {_id, <field>: {$exists: false},
 *      fence: {$ne: tok} (, campaign_id)} -> $set <field>: at, <its token field>: tok
 *   4. if every receipt named its campaign and the bulk matched every statement, each log was
 *      moved by THIS batch: counted per campaign from the receipts themselves, no read back
 *      (the usual case: the vendor echoes the send's campaign_id). Otherwise
 *      find {_id: {$in: ids}} -> unknown ids (or a campaign_id that is not the log's) are
 *      dead-lettered; logs whose ctok == tok were moved by THIS batch and are counted (an
 *      event: its token field == tok).
 *   4b. what THIS batch moved, outside the logs: one find {_id: {$in}} of the logs it failed,
 *      bounced or got a complaint on (customer_id), one of their customers (email) when a
 *      bounce or complaint is among them; suppress those addresses (lib/suppress, reason
 *      bounced | complained, source the log); one LPUSH of the webhook events (message.failed,
 *      message.bounced, contact.complained).
 *   5. per campaign: updateOne {_id, ctoks: {$ne: tok}} -> $inc sent/failed/-pending (and
 *      bounced, complained, opened, clicked when not 0), $push ctoks tok (last 1000 kept);
 *      then COMPLETED if fanout_done and pending <= 0.
 *   6. ZREM ctoks tok; dead letters of single receipts of batch jobs; ack the jobs.
 * A crash (or MongoDB error) after 3 leaves logs final but maybe uncounted; the retried receipts
 * then see a foreign ctok and are no-ops, and receipts_recover() counts the orphaned token's logs
 * with the same guarded update, as soon as the owner's heartbeat has expired (the moment the
 * reaper hands the dead consumer's jobs back), or once the token is recover_after_s old; it also
 * redoes 4b for those logs: suppresses their addresses and pushes their webhook events (a crash
 * during 4b would otherwise lose them; done twice, a suppression stays one, and the events are
 * the same events, ids being deterministic per log). A crash after 5 but before 6 is harmless:
 * the guard finds tok already in ctoks.
 *
 * The fence. A bulk update whose call timed out is in doubt: the server may still hold it (a
 * stalled or frozen server applies what sits in its socket buffer when it resumes) and apply it
 * after the recovery has counted the token, leaving logs final but never counted. So step 2 also
 * stores the batch's log ids with the token (P{receipts}:ctok:TOKEN), every statement of step 3
 * requires fence != tok, and the recovery first sets fence = tok on the batch's logs (all of
 * them: an event statement may still be in doubt on a final log), then counts the logs carrying
 * ctok == tok (or otok, cltok, cptok == tok) among the batch's ids (an indexed _id $in, no
 * collection scan). A late statement of the batch then matches nothing: the log is either
 * final already / the event recorded already (counted by whoever did it) or fenced (left for
 * the retried receipt, which carries a fresh token). Per-document atomicity is all this needs.
 */
#include "receipts.h"

#include "campaign.h"
#include "campctl.h"
#include "campevents.h"
#include "jobs.h"
#include "log.h"
#include "suppress.h"
#include "timeutil.h"
#include "unsub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct item {
    jobs_receipt r;  /* as decoded (lib/jobs) */
    size_t job;      /* index into the batch */
    const char *raw; /* the receipt's JSON text inside its job (for a dead letter) */
    size_t rawlen;
    bool part;      /* one receipt of a batch job (not the whole job) */
    bool has_cid;   /* the receipt names its campaign (cid) */
    bson_oid_t oid; /* log id */
    int dup;        /* another item of the batch has this oid */
    int found;      /* the log exists */
    int counted;    /* moved by this batch's token */
    int mismatch;   /* the log exists but belongs to another campaign than the receipt says */
    int nocamp;     /* moved by this batch, a log of no campaign (a one-off message): no counter */
    bson_oid_t cid; /* campaign of the log (named by the receipt, or read back) */
} item;

/* The guard class of a receipt: 0 the status move (SENT, FAILED, BOUNCED), else 1 + the
 * campaign_log_event it records. */
static int item_cls(const item *it)
{
    switch (it->r.kind) {
    case JOBS_RCPT_OPENED:
        return 1 + CAMPAIGN_LOG_EV_OPENED;
    case JOBS_RCPT_CLICKED:
        return 1 + CAMPAIGN_LOG_EV_CLICKED;
    case JOBS_RCPT_COMPLAINED:
        return 1 + CAMPAIGN_LOG_EV_COMPLAINED;
    default:
        return 0;
    }
}

/* What a counted item adds to its campaign. */
enum { CNT_SENT, CNT_FAILED, CNT_BOUNCED, CNT_OPENED, CNT_CLICKED, CNT_COMPLAINED };

typedef struct camp_count {
    bson_oid_t cid;
    int64_t sent, failed, bounced, opened, clicked, complained;
} camp_count;

/* Items sort by log id, then guard class (duplicates are neighbours). */
static int cmp_item_oid(const void *a, const void *b)
{
    int c = bson_oid_compare(&((const item *)a)->oid, &((const item *)b)->oid);
    return c ? c : item_cls(a) - item_cls(b);
}

/* By log id only (a search key for any item of a log). */
static int cmp_oid_only(const void *a, const void *b)
{
    return bson_oid_compare(&((const item *)a)->oid, &((const item *)b)->oid);
}

/* ---- webhook events ------------------------------------------------------------------------ */

/* One webhook event to emit about a log (message.failed, message.bounced, contact.complained). */
typedef struct ev_item {
    jobs_event_type type;
    bson_oid_t lid, cid, uid;
    bool has_cid, has_uid;
    char vmid[JOBS_VENDOR_MSG_ID_MAX + 1]; /* "" = none */
    char reason[JOBS_REASON_MAX + 1];      /* "" = none */
    char email[256];                       /* "" = unknown */
} ev_item;

typedef struct ev_list {
    ev_item *a;
    size_t n, cap;
} ev_list;

/* A zeroed slot at the end of l, or NULL (out of memory). */
static ev_item *ev_add(ev_list *l)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 32;
        ev_item *g = realloc(l->a, cap * sizeof *g);
        if (!g)
            return NULL;
        l->a = g;
        l->cap = cap;
    }
    memset(&l->a[l->n], 0, sizeof *l->a);
    return &l->a[l->n++];
}

/* Append {"_id": {"$in": [...]}} of the oids to filter (a caller-built array). */
static void append_in(bson_t *filter, const char *key, const bson_oid_t *const *oids, size_t n)
{
    bson_t in, arr;
    char k[16];
    BSON_APPEND_DOCUMENT_BEGIN(filter, key, &in);
    BSON_APPEND_ARRAY_BEGIN(&in, "$in", &arr);
    for (size_t i = 0; i < n; i++) {
        const char *kp;
        bson_uint32_to_string((uint32_t)i, &kp, k, sizeof k);
        bson_append_oid(&arr, kp, -1, oids[i]);
    }
    bson_append_array_end(&in, &arr);
    bson_append_document_end(filter, &in);
}

/* The customer (and campaign, vendorMsgId) of every event of l not yet knowing it, read from
 * its log: one find {_id: {$in}}. 0 or -1 (e filled). */
static int ev_fill_from_logs(mongoc_collection_t *logs, ev_list *l, bson_error_t *e)
{
    const bson_oid_t **ids = calloc(l->n ? l->n : 1, sizeof *ids);
    if (!ids) {
        bson_set_error(e, 0, 0, "out of memory");
        return -1;
    }
    size_t n = 0;
    for (size_t i = 0; i < l->n; i++)
        if (!l->a[i].has_uid)
            ids[n++] = &l->a[i].lid;
    int rc = 0;
    if (n) {
        bson_t filter = BSON_INITIALIZER;
        append_in(&filter, "_id", ids, n);
        bson_t *opts =
            BCON_NEW("projection", "{", "customer_id", BCON_INT32(1), "campaign_id", BCON_INT32(1),
                     "vendorMsgId", BCON_INT32(1), "}", "batchSize", BCON_INT64((int64_t)n));
        mongoc_cursor_t *cur = mongoc_collection_find_with_opts(logs, &filter, opts, NULL);
        const bson_t *doc;
        while (mongoc_cursor_next(cur, &doc)) {
            bson_iter_t it;
            if (!bson_iter_init_find(&it, doc, "_id") || !BSON_ITER_HOLDS_OID(&it))
                continue;
            const bson_oid_t *lid = bson_iter_oid(&it);
            for (size_t i = 0; i < l->n; i++) {
                ev_item *ev = &l->a[i];
                if (ev->has_uid || !bson_oid_equal(&ev->lid, lid))
                    continue;
                if (bson_iter_init_find(&it, doc, "customer_id") && BSON_ITER_HOLDS_OID(&it)) {
                    bson_oid_copy(bson_iter_oid(&it), &ev->uid);
                    ev->has_uid = true;
                }
                if (!ev->has_cid && bson_iter_init_find(&it, doc, "campaign_id") &&
                    BSON_ITER_HOLDS_OID(&it)) {
                    bson_oid_copy(bson_iter_oid(&it), &ev->cid);
                    ev->has_cid = true;
                }
                if (!ev->vmid[0] && bson_iter_init_find(&it, doc, "vendorMsgId") &&
                    BSON_ITER_HOLDS_UTF8(&it))
                    snprintf(ev->vmid, sizeof ev->vmid, "%s", bson_iter_utf8(&it, NULL));
            }
        }
        if (mongoc_cursor_error(cur, e))
            rc = -1;
        mongoc_cursor_destroy(cur);
        bson_destroy(opts);
        bson_destroy(&filter);
    }
    free(ids);
    return rc;
}

/* The e-mail of the customer of every bounce and complaint of l: one find {_id: {$in}} on the
 * customers. 0 or -1 (e filled). */
static int ev_fill_emails(mongoc_collection_t *custs, ev_list *l, bson_error_t *e)
{
    const bson_oid_t **ids = calloc(l->n ? l->n : 1, sizeof *ids);
    if (!ids) {
        bson_set_error(e, 0, 0, "out of memory");
        return -1;
    }
    size_t n = 0;
    for (size_t i = 0; i < l->n; i++)
        if (l->a[i].has_uid && l->a[i].type != JOBS_EV_MESSAGE_FAILED)
            ids[n++] = &l->a[i].uid;
    int rc = 0;
    if (n) {
        bson_t filter = BSON_INITIALIZER;
        append_in(&filter, "_id", ids, n);
        bson_t *opts = BCON_NEW("projection", "{", "email", BCON_INT32(1), "}", "batchSize",
                                BCON_INT64((int64_t)n));
        mongoc_cursor_t *cur = mongoc_collection_find_with_opts(custs, &filter, opts, NULL);
        const bson_t *doc;
        while (mongoc_cursor_next(cur, &doc)) {
            bson_iter_t it, em;
            if (!bson_iter_init_find(&it, doc, "_id") || !BSON_ITER_HOLDS_OID(&it) ||
                !bson_iter_init_find(&em, doc, "email") || !BSON_ITER_HOLDS_UTF8(&em))
                continue;
            for (size_t i = 0; i < l->n; i++)
                if (l->a[i].has_uid && bson_oid_equal(&l->a[i].uid, bson_iter_oid(&it)))
                    snprintf(l->a[i].email, sizeof l->a[i].email, "%s", bson_iter_utf8(&em, NULL));
        }
        if (mongoc_cursor_error(cur, e))
            rc = -1;
        mongoc_cursor_destroy(cur);
        bson_destroy(opts);
        bson_destroy(&filter);
    }
    free(ids);
    return rc;
}

/* Append ,"key":"hex" or ,"key":null. */
static void put_oid(jsonx_buf *b, const char *key, const bson_oid_t *oid, bool has)
{
    char hex[25];
    jsonx_buf_raw(b, ",\"", 2);
    jsonx_buf_cat(b, key);
    jsonx_buf_raw(b, "\":", 2);
    if (!has) {
        jsonx_buf_raw(b, "null", 4);
        return;
    }
    bson_oid_to_string(oid, hex);
    jsonx_buf_str(b, hex, 24);
}

/* Encode and push every event of l on QUEUE_EVENTS (one round trip). Their ids are
 * deterministic per (type, log id), so pushing the same events again (a retried batch, the
 * recovery) repeats them, never adds new ones. 0, or -1 (Redis or memory: the caller keeps its
 * token, so the recovery pushes them). */
static int ev_push(receipts_ctx *x, const ev_list *l)
{
    if (!x->events || l->n == 0)
        return 0;
    char **jobs = calloc(l->n, sizeof *jobs);
    size_t *lens = calloc(l->n, sizeof *lens);
    int rc = jobs && lens ? 0 : -1;
    int64_t now = time_now_ms();
    for (size_t i = 0; rc == 0 && i < l->n; i++) {
        const ev_item *ev = &l->a[i];
        char lhex[25];
        bson_oid_to_string(&ev->lid, lhex);
        jsonx_buf data = {0}, job = {0};
        jsonx_buf_cat(&data, "{\"log_id\":");
        jsonx_buf_str(&data, lhex, 24);
        put_oid(&data, "campaign_id", &ev->cid, ev->has_cid);
        put_oid(&data, "customer_id", &ev->uid, ev->has_uid);
        if (ev->email[0]) {
            jsonx_buf_cat(&data, ",\"email\":");
            jsonx_buf_str(&data, ev->email, strlen(ev->email));
        }
        if (ev->reason[0]) {
            jsonx_buf_cat(&data, ",\"reason\":");
            jsonx_buf_str(&data, ev->reason, strlen(ev->reason));
        }
        jsonx_buf_cat(&data, ",\"vendorMsgId\":");
        if (ev->vmid[0])
            jsonx_buf_str(&data, ev->vmid, strlen(ev->vmid));
        else
            jsonx_buf_raw(&data, "null", 4);
        jsonx_buf_raw(&data, "}", 1);
        jobs_event je = {.type = ev->type, .at = now};
        jobs_event_id(ev->type, lhex, je.id);
        je.data = data.data;
        je.datalen = data.len;
        if (!jsonx_buf_ok(&data) || jobs_event_encode(&job, &je) != 0) {
            jsonx_buf_free(&job);
            rc = -1;
        } else {
            jobs[i] = job.data;
            lens[i] = job.len;
        }
        jsonx_buf_free(&data);
    }
    if (rc == 0 && queue_push_many(x->events, (const char *const *)jobs, lens, l->n) != 0) {
        log_warn("receipts.redis_error", "detail=\"%s\"", queue_error(x->events));
        rc = -1;
    }
    for (size_t i = 0; jobs && i < l->n; i++)
        free(jobs[i]);
    free(jobs);
    free(lens);
    return rc;
}

/* Suppress the address of every bounce and complaint of l (lib/suppress: idempotent, the
 * first suppression of an address wins), the log as its source. 0 or -1 (MongoDB, e filled).
 * An address lib/suppress refuses as no address is logged and skipped: retrying cannot fix it. */
static int ev_suppress(receipts_ctx *x, mongoc_client_t *cl, mongoc_collection_t *custs,
                       const ev_list *l, bson_error_t *e)
{
    mongoc_collection_t *supps = dbpool_durable_collection(x->db, cl, DB_SUPPRESSIONS);
    int64_t now = time_now_ms();
    int rc = 0;
    for (size_t i = 0; i < l->n && rc == 0; i++) {
        const ev_item *ev = &l->a[i];
        if (ev->type == JOBS_EV_MESSAGE_FAILED || !ev->email[0])
            continue;
        char lhex[25];
        bson_oid_to_string(&ev->lid, lhex);
        suppress_reason why =
            ev->type == JOBS_EV_MESSAGE_BOUNCED ? SUPPRESS_BOUNCED : SUPPRESS_COMPLAINED;
        if (suppress_add(supps, custs, ev->email, why, lhex, now, NULL, e) != 0) {
            if (e->domain == 0 && e->code == 0) {
                log_warn("receipts.suppress_skipped", "log=%s detail=\"%s\"", lhex, e->message);
                continue;
            }
            rc = -1;
        }
    }
    mongoc_collection_destroy(supps);
    return rc;
}

/* Emit the events of l: their customers (from the logs, when not known), the e-mails of the
 * bounced and complaining ones (whose addresses are suppressed here, before their events say
 * so), then one push. STEP-like: 0, -1 Redis/memory, -2 MongoDB. */
static int ev_emit(receipts_ctx *x, mongoc_client_t *cl, mongoc_collection_t *logs, ev_list *l,
                   bson_error_t *e)
{
    if (l->n == 0)
        return 0;
    bool need_email = false;
    for (size_t i = 0; i < l->n && !need_email; i++)
        need_email = l->a[i].type != JOBS_EV_MESSAGE_FAILED;
    if (!need_email && !x->events)
        return 0;
    if (ev_fill_from_logs(logs, l, e) != 0)
        return -2;
    if (need_email) {
        mongoc_collection_t *custs = dbpool_durable_collection(x->db, cl, DB_CUSTOMERS);
        int rc = ev_fill_emails(custs, l, e);
        if (rc == 0)
            rc = ev_suppress(x, cl, custs, l, e);
        mongoc_collection_destroy(custs);
        if (rc != 0)
            return -2;
    }
    if (!x->events)
        return 0;
    if (ev_push(x, l) != 0) {
        bson_set_error(e, 0, 0, "cannot push the webhook events");
        return -1;
    }
    return 0;
}

/* Dead letters for single receipts of batch jobs, written with the ack (step 6): the raw
 * text of each (pointing into its job) and the reason. */
typedef struct part_list {
    const char **text;
    size_t *len;
    char **why;
    size_t n, cap;
} part_list;

static int part_add(part_list *l, const char *raw, size_t len, const char *why)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        const char **t = realloc(l->text, cap * sizeof *t);
        if (t)
            l->text = t;
        size_t *n = t ? realloc(l->len, cap * sizeof *n) : NULL;
        if (n)
            l->len = n;
        char **w = n ? realloc(l->why, cap * sizeof *w) : NULL;
        if (!w)
            return -1;
        l->why = w;
        l->cap = cap;
    }
    l->why[l->n] = strdup(why);
    if (!l->why[l->n])
        return -1;
    l->text[l->n] = raw;
    l->len[l->n++] = len;
    return 0;
}

static void part_free(part_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->why[i]);
    free(l->text);
    free(l->len);
    free(l->why);
}

/* Guarded counter update for one campaign + completion check. 0 or -1 (bson error in e). */
static int count_campaign(receipts_ctx *x, mongoc_collection_t *camps, const camp_count *cc,
                          const char *tok, bson_error_t *e)
{
    int64_t now = time_now_ms();
    bson_t *sel = BCON_NEW("_id", BCON_OID(&cc->cid), "ctoks", "{", "$ne", BCON_UTF8(tok), "}");
    bson_t upd = BSON_INITIALIZER, inc;
    BSON_APPEND_DOCUMENT_BEGIN(&upd, "$inc", &inc);
    BSON_APPEND_INT64(&inc, "sent", cc->sent);
    BSON_APPEND_INT64(&inc, "failed", cc->failed);
    BSON_APPEND_INT64(&inc, "pending", -(cc->sent + cc->failed));
    /* The event counters only when they move (the usual batch has none of them). */
    if (cc->bounced)
        BSON_APPEND_INT64(&inc, "bounced", cc->bounced);
    if (cc->complained)
        BSON_APPEND_INT64(&inc, "complained", cc->complained);
    if (cc->opened)
        BSON_APPEND_INT64(&inc, "opened", cc->opened);
    if (cc->clicked)
        BSON_APPEND_INT64(&inc, "clicked", cc->clicked);
    bson_append_document_end(&upd, &inc);
    bson_t *rest =
        BCON_NEW("$push", "{", "ctoks", "{", "$each", "[", BCON_UTF8(tok), "]", "$slice",
                 BCON_INT32(-1000), "}", "}", "$set", "{", "updatedAt", BCON_DATE_TIME(now), "}");
    bson_concat(&upd, rest);
    bson_destroy(rest);
    bool ok = mongoc_collection_update_one(camps, sel, &upd, NULL, NULL, e);
    bson_destroy(sel);
    bson_destroy(&upd);
    bool done = false;
    int rc = ok ? campaign_try_complete_moved(camps, &cc->cid, &done, e) : -1;
    if (done) /* campaign.completed (lib/campevents; the worker's rescue if this fails) */
        campevents_flush(camps, x->rc, x->cfg->redis.prefix, &cc->cid, NULL, 0);
    return rc;
}

static int add_count(camp_count **a, size_t *n, size_t *cap, const bson_oid_t *cid, int what)
{
    size_t i;
    for (i = 0; i < *n; i++)
        if (bson_oid_equal(&(*a)[i].cid, cid))
            break;
    if (i == *n) {
        if (*n == *cap) {
            size_t nc = *cap ? *cap * 2 : 8;
            camp_count *g = realloc(*a, nc * sizeof *g);
            if (!g)
                return -1;
            *a = g;
            *cap = nc;
        }
        memset(&(*a)[i], 0, sizeof **a);
        bson_oid_copy(cid, &(*a)[i].cid);
        (*n)++;
    }
    camp_count *c = &(*a)[i];
    switch (what) {
    case CNT_SENT:
        c->sent++;
        break;
    case CNT_BOUNCED:
        c->bounced++;
        c->failed++; /* a bounce is a failure too */
        break;
    case CNT_OPENED:
        c->opened++;
        break;
    case CNT_CLICKED:
        c->clicked++;
        break;
    case CNT_COMPLAINED:
        c->complained++;
        break;
    default:
        c->failed++;
        break;
    }
    return 0;
}

/* ZADD the token, SET its batch's log ids and HSET its owner (this consumer's id), in one
 * MULTI. 0 or -1. */
static int token_register(receipts_ctx *x, const char *tok, const char *ids, size_t idlen)
{
    const char *p = x->cfg->redis.prefix;
    const char *owner = queue_consumer(x->q);
    int ok =
        rconn_append(x->rc, "MULTI") == 0 &&
        rconn_append(x->rc, "ZADD %s{%s}:ctoks %lld %s", p, QUEUE_RECEIPTS,
                     (long long)time_now_ms(), tok) == 0 &&
        rconn_append(x->rc, "SET %s{%s}:ctok:%s %b", p, QUEUE_RECEIPTS, tok, ids, idlen) == 0 &&
        rconn_append(x->rc, "HSET %s{%s}:ctok-owners %s %s", p, QUEUE_RECEIPTS, tok,
                     owner[0] ? owner : "-") == 0 &&
        rconn_append(x->rc, "EXEC") == 0;
    for (int i = 0; ok && i < 5; i++) {
        redisReply *r;
        if (rconn_get_reply(x->rc, &r) != 0) {
            ok = 0;
            break;
        }
        if (r->type == REDIS_REPLY_ERROR || (i == 4 && r->type != REDIS_REPLY_ARRAY))
            ok = 0;
        freeReplyObject(r);
    }
    if (!ok)
        log_warn("receipts.redis_error", "detail=\"%s\"", rconn_error(x->rc));
    return ok ? 0 : -1;
}

/* The token is settled: ZREM it, DEL its ids, HDEL its owner (best effort: a leftover token is
 * recovered, i.e. recounted under its guard, which counts nothing twice). */
static void token_forget(receipts_ctx *x, const char *tok)
{
    const char *p = x->cfg->redis.prefix;
    if (rconn_append(x->rc, "ZREM %s{%s}:ctoks %s", p, QUEUE_RECEIPTS, tok) != 0 ||
        rconn_append(x->rc, "DEL %s{%s}:ctok:%s", p, QUEUE_RECEIPTS, tok) != 0 ||
        rconn_append(x->rc, "HDEL %s{%s}:ctok-owners %s", p, QUEUE_RECEIPTS, tok) != 0)
        return;
    for (int i = 0; i < 3; i++) {
        redisReply *r;
        if (rconn_get_reply(x->rc, &r) != 0)
            return;
        freeReplyObject(r);
    }
}

/* ---- applying one claimed batch, step by step -------------------------------------------- */

/* Job fates, by position in the batch. */
enum { JOB_ACK = 0, JOB_DEAD = 1 };

/* Step results: go on, stop (Redis or memory trouble: the jobs stay claimed), or MongoDB
 * failed (every job is retried). */
enum { STEP_OK = 0, STEP_STOP = -1, STEP_MONGO = -2 };

/* Everything one receipts_apply_batch call owns (freed in apply_release). */
typedef struct apply {
    receipts_ctx *x;
    const queue_batch *b;
    jscan *js;           /* one token array per job (readers point into it) */
    jobs_reader *rd;     /* one reader per job */
    unsigned char *fate; /* JOB_* (JOB_DEAD: already dead-lettered whole) */
    queue_job *acks;
    item *items; /* every receipt of every job */
    size_t nitems;
    part_list parts;
    camp_count *counts;
    size_t ncounts, capcounts;
    ev_list evs; /* webhook events of what this batch moved (step 5b) */
    char tok[25];
    bool token_set;
    mongoc_client_t *cl;
    mongoc_collection_t *logs, *camps;
    bson_error_t e;
} apply;

/* Scan every job (lib/jobs over lib/jscan) and size the item array. 0 or -1 (out of memory). */
static int apply_init(apply *a, receipts_ctx *x, const queue_batch *b)
{
    memset(a, 0, sizeof *a);
    a->x = x;
    a->b = b;
    size_t nb = b->n ? b->n : 1;
    a->js = calloc(nb, sizeof *a->js);
    a->rd = calloc(nb, sizeof *a->rd);
    a->fate = calloc(nb, 1);
    a->acks = calloc(nb, sizeof *a->acks);
    if (!a->js || !a->rd || !a->fate || !a->acks)
        return -1;
    return 0;
}

static void apply_release(apply *a)
{
    if (a->logs)
        mongoc_collection_destroy(a->logs);
    if (a->camps)
        mongoc_collection_destroy(a->camps);
    if (a->cl)
        dbpool_push(a->x->db, a->cl);
    for (size_t i = 0; a->js && i < a->b->n; i++)
        jscan_release(&a->js[i]);
    free(a->js);
    free(a->rd);
    free(a->items);
    free(a->acks);
    free(a->fate);
    free(a->counts);
    free(a->evs.a);
    part_free(&a->parts);
}

/* 1. Parse every job; a malformed job is dead-lettered now, a malformed receipt of a batch job
 * is set aside (written with the ack); PENDING receipts change nothing. Then sort by log id and
 * mark duplicates. */
static int apply_parse(apply *a)
{
    receipts_ctx *x = a->x;
    const queue_batch *b = a->b;
    char why[256];
    size_t cap = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (jobs_receipts_open(&a->rd[i], &a->js[i], b->jobs[i].data, b->jobs[i].len, why,
                               sizeof why) != 0) {
            cap++;
            if (queue_dead(x->q, &b->jobs[i], why) != 0)
                return STEP_STOP;
            a->fate[i] = JOB_DEAD;
            x->dead++;
            continue;
        }
        cap += a->rd[i].n;
    }
    x->last_receipts = cap;
    a->items = calloc(cap ? cap : 1, sizeof *a->items);
    if (!a->items)
        return STEP_STOP;
    for (size_t i = 0; i < b->n; i++) {
        jobs_reader *rd = &a->rd[i];
        if (a->fate[i] == JOB_DEAD)
            continue;
        for (;;) {
            item *it = &a->items[a->nitems];
            int r = jobs_receipts_next(rd, &it->r, why, sizeof why);
            if (r == 0)
                break;
            it->job = i;
            it->raw = rd->raw;
            it->rawlen = rd->rawlen;
            it->part = rd->batch;
            it->dup = it->found = it->counted = it->mismatch = it->nocamp = 0;
            if (r < 0) {
                if (!it->part) { /* the job is that one receipt */
                    if (queue_dead(x->q, &b->jobs[i], why) != 0)
                        return STEP_STOP;
                    a->fate[i] = JOB_DEAD;
                    x->dead++;
                    break;
                }
                if (part_add(&a->parts, it->raw, it->rawlen, why) != 0)
                    return STEP_STOP;
                x->dead++;
                continue;
            }
            if (it->r.kind == JOBS_RCPT_DELIVERY && it->r.status == CAMPAIGN_LOG_PENDING) {
                /* a PENDING receipt changes nothing */
                x->noops++;
                continue;
            }
            bson_oid_init_from_string(&it->oid, it->r.log_id);
            it->has_cid = it->r.campaign_id[0] != '\0';
            if (it->has_cid)
                bson_oid_init_from_string(&it->cid, it->r.campaign_id);
            a->nitems++;
        }
    }
    qsort(a->items, a->nitems, sizeof *a->items, cmp_item_oid);
    for (size_t i = 1; i < a->nitems; i++)
        if (cmp_item_oid(&a->items[i], &a->items[i - 1]) == 0)
            a->items[i].dup = 1;
    return STEP_OK;
}

/* 2. A fresh token, registered in Redis with the batch's log ids. */
static int apply_register_token(apply *a)
{
    bson_oid_t toid;
    bson_oid_init(&toid, NULL);
    bson_oid_to_string(&toid, a->tok);
    /* The batch's log ids (24 hex each, concatenated) with the token, for the fence. */
    char *ids = malloc(24 * a->nitems + 1);
    size_t nid = 0;
    for (size_t i = 0; ids && i < a->nitems; i++)
        if (i == 0 || !bson_oid_equal(&a->items[i].oid, &a->items[i - 1].oid))
            bson_oid_to_string(&a->items[i].oid, ids + 24 * nid++);
    int rc = ids && token_register(a->x, a->tok, ids, 24 * nid) == 0 ? STEP_OK : STEP_STOP;
    free(ids);
    a->token_set = rc == STEP_OK;
    return rc;
}

/* 3. One unordered bulk: each PENDING log of the batch -> its final state, guarded by the fence
 * (and the campaign when the receipt names it). *moved_all: every receipt named its campaign
 * and every statement matched. */
static int apply_update_logs(apply *a, bool *moved_all)
{
    int64_t now = time_now_ms();
    size_t nstmt = 0;
    bool all_cids = true;
    bson_t reply = BSON_INITIALIZER;
    bson_t *opts = BCON_NEW("ordered", BCON_BOOL(false));
    mongoc_bulk_operation_t *bulk =
        mongoc_collection_create_bulk_operation_with_opts(a->logs, opts);
    bson_destroy(opts);
    int rc = STEP_MONGO;
    for (size_t i = 0; i < a->nitems; i++) {
        item *it = &a->items[i];
        if (it->dup)
            continue;
        bson_t sel = BSON_INITIALIZER, upd = BSON_INITIALIZER, set, fence;
        int cls = item_cls(it);
        BSON_APPEND_OID(&sel, "_id", &it->oid);
        if (cls == 0)
            campaign_log_match_pending(&sel);
        else
            campaign_log_match_event_unset(&sel, (campaign_log_event)(cls - 1));
        BSON_APPEND_DOCUMENT_BEGIN(&sel, "fence", &fence);
        BSON_APPEND_UTF8(&fence, "$ne", a->tok);
        bson_append_document_end(&sel, &fence);
        if (it->has_cid)
            BSON_APPEND_OID(&sel, "campaign_id", &it->cid);
        else
            all_cids = false;
        BSON_APPEND_DOCUMENT_BEGIN(&upd, "$set", &set);
        if (cls == 0) {
            campaign_log_append_final(&set, it->r.status,
                                      it->r.vendor_msg_id[0] ? it->r.vendor_msg_id : NULL, it->r.at,
                                      now, it->r.reason);
            if (it->r.kind == JOBS_RCPT_BOUNCED)
                campaign_log_append_bounce(&set);
            BSON_APPEND_UTF8(&set, "ctok", a->tok);
        } else {
            campaign_log_append_event(&set, (campaign_log_event)(cls - 1), it->r.at, a->tok);
        }
        bson_append_document_end(&upd, &set);
        bool ok = mongoc_bulk_operation_update_one_with_opts(bulk, &sel, &upd, NULL, &a->e);
        bson_destroy(&sel);
        bson_destroy(&upd);
        if (!ok) {
            log_error("receipts.bulk_build", "detail=\"%s\"", a->e.message);
            goto out;
        }
        nstmt++;
    }
    if (!mongoc_bulk_operation_execute(bulk, &reply, &a->e))
        goto out;
    bson_iter_t rit;
    int64_t matched = -1;
    if (bson_iter_init_find(&rit, &reply, "nMatched") && BSON_ITER_HOLDS_NUMBER(&rit))
        matched = bson_iter_as_int64(&rit);
    *moved_all = all_cids && matched == (int64_t)nstmt;
    rc = STEP_OK;
out:
    mongoc_bulk_operation_destroy(bulk);
    bson_destroy(&reply);
    return rc;
}

/* 4. Which logs did this batch move? Without the fast path: find {_id: {$in: ids}} -> unknown
 * ids, logs of another campaign than the receipt names, and ctok == tok (moved by us). */
static int apply_find_moved(apply *a, bool moved_all)
{
    item *items = a->items;
    size_t nitems = a->nitems;
    if (moved_all) {
        /* Every statement matched a PENDING log of the campaign the receipt names: all moved
         * by this batch, nothing to read back. */
        for (size_t i = 0; i < nitems; i++) {
            items[i].found = 1;
            items[i].counted = !items[i].dup;
        }
        return STEP_OK;
    }
    bson_t filter = BSON_INITIALIZER, in, arr;
    BSON_APPEND_DOCUMENT_BEGIN(&filter, "_id", &in);
    BSON_APPEND_ARRAY_BEGIN(&in, "$in", &arr);
    char k[16];
    for (size_t i = 0, n = 0; i < nitems; i++) {
        if (i > 0 && bson_oid_equal(&items[i].oid, &items[i - 1].oid))
            continue;
        const char *key;
        bson_uint32_to_string((uint32_t)n++, &key, k, sizeof k);
        bson_append_oid(&arr, key, -1, &items[i].oid);
    }
    bson_append_array_end(&in, &arr);
    bson_append_document_end(&filter, &in);
    /* batchSize: the whole answer in the first reply (no getMore round trip). */
    bson_t *opts =
        BCON_NEW("projection", "{", "status", BCON_INT32(1), "campaign_id", BCON_INT32(1), "ctok",
                 BCON_INT32(1), "otok", BCON_INT32(1), "cltok", BCON_INT32(1), "cptok",
                 BCON_INT32(1), "}", "batchSize", BCON_INT64((int64_t)nitems));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(a->logs, &filter, opts, NULL);
    bson_destroy(opts);
    bson_destroy(&filter);
    const bson_t *doc;
    while (mongoc_cursor_next(cur, &doc)) {
        bson_iter_t iter;
        item key;
        if (!bson_iter_init_find(&iter, doc, "_id") || !BSON_ITER_HOLDS_OID(&iter))
            continue;
        bson_oid_copy(bson_iter_oid(&iter), &key.oid);
        item *first = bsearch(&key, items, nitems, sizeof *items, cmp_oid_only);
        if (!first)
            continue;
        while (first > items && bson_oid_equal(&first[-1].oid, &key.oid))
            first--; /* the first item of this log */
        const char *dtok = NULL, *etok[CAMPAIGN_LOG_EV_COUNT] = {NULL};
        campaign_log_status st;
        bool has_st = false;
        bson_oid_t dcid;
        bool has_dcid = false;
        if (bson_iter_init_find(&iter, doc, "ctok") && BSON_ITER_HOLDS_UTF8(&iter))
            dtok = bson_iter_utf8(&iter, NULL);
        for (int ev = 0; ev < CAMPAIGN_LOG_EV_COUNT; ev++)
            if (bson_iter_init_find(&iter, doc, campaign_log_event_token((campaign_log_event)ev)) &&
                BSON_ITER_HOLDS_UTF8(&iter))
                etok[ev] = bson_iter_utf8(&iter, NULL);
        if (bson_iter_init_find(&iter, doc, "status") && BSON_ITER_HOLDS_UTF8(&iter)) {
            uint32_t len;
            const char *s = bson_iter_utf8(&iter, &len);
            has_st = campaign_log_status_parse(s, len, &st) == 0;
        }
        if (bson_iter_init_find(&iter, doc, "campaign_id") && BSON_ITER_HOLDS_OID(&iter)) {
            bson_oid_copy(bson_iter_oid(&iter), &dcid);
            has_dcid = true;
        }
        for (item *it = first; it < items + nitems && bson_oid_equal(&it->oid, &key.oid); it++) {
            if (it->dup)
                continue;
            it->found = 1;
            if (it->has_cid && (!has_dcid || !bson_oid_equal(&dcid, &it->cid))) {
                it->mismatch = 1;
                continue;
            }
            int cls = item_cls(it);
            const char *mine = cls == 0 ? dtok : etok[cls - 1];
            if (!mine || strcmp(mine, a->tok) != 0 || (cls == 0 && !has_st))
                continue; /* not moved (recorded) by this batch */
            it->counted = 1;
            if (cls == 0)
                it->r.status = st;
            if (has_dcid)
                bson_oid_copy(&dcid, &it->cid);
            else
                it->nocamp = 1; /* applied; counts in no campaign */
        }
    }
    bool cerr = mongoc_cursor_error(cur, &a->e);
    mongoc_cursor_destroy(cur);
    if (cerr)
        return STEP_MONGO;
    /* A duplicate shares the fate of its first copy. */
    for (size_t i = 1; i < nitems; i++)
        if (items[i].dup) {
            items[i].found = items[i - 1].found;
            items[i].mismatch = items[i - 1].mismatch;
        }
    return STEP_OK;
}

/* 5. Count per campaign, guarded by the token; complete the campaigns that are done. */
static int apply_count(apply *a)
{
    for (size_t i = 0; i < a->nitems; i++) {
        const item *it = &a->items[i];
        if (!it->counted || it->dup || it->nocamp)
            continue;
        int cls = item_cls(it), what = cls == 1 + CAMPAIGN_LOG_EV_OPENED    ? CNT_OPENED
                                       : cls == 1 + CAMPAIGN_LOG_EV_CLICKED ? CNT_CLICKED
                                       : cls != 0                           ? CNT_COMPLAINED
                                       : it->r.status == CAMPAIGN_LOG_SENT  ? CNT_SENT
                                       : it->r.kind == JOBS_RCPT_BOUNCED    ? CNT_BOUNCED
                                                                            : CNT_FAILED;
        if (add_count(&a->counts, &a->ncounts, &a->capcounts, &it->cid, what) != 0)
            return STEP_STOP;
    }
    for (size_t i = 0; i < a->ncounts; i++)
        if (count_campaign(a->x, a->camps, &a->counts[i], a->tok, &a->e) != 0)
            return STEP_MONGO;
    return STEP_OK;
}

/* 4b. The webhook events (and suppressions) of the logs this batch moved to FAILED (message.failed,
 * or message.bounced) and of the complaints it recorded (contact.complained). */
static int apply_emit(apply *a)
{
    for (size_t i = 0; i < a->nitems; i++) {
        const item *it = &a->items[i];
        if (!it->counted || it->dup)
            continue;
        jobs_event_type t;
        if (it->r.kind == JOBS_RCPT_COMPLAINED)
            t = JOBS_EV_CONTACT_COMPLAINED;
        else if (it->r.kind == JOBS_RCPT_BOUNCED)
            t = JOBS_EV_MESSAGE_BOUNCED;
        else if (it->r.kind == JOBS_RCPT_DELIVERY && it->r.status == CAMPAIGN_LOG_FAILED)
            t = JOBS_EV_MESSAGE_FAILED;
        else
            continue;
        ev_item *ev = ev_add(&a->evs);
        if (!ev)
            return STEP_STOP;
        ev->type = t;
        bson_oid_copy(&it->oid, &ev->lid);
        ev->has_cid = !it->nocamp;
        if (ev->has_cid)
            bson_oid_copy(&it->cid, &ev->cid);
        snprintf(ev->vmid, sizeof ev->vmid, "%s", it->r.vendor_msg_id);
        if (t != JOBS_EV_CONTACT_COMPLAINED)
            snprintf(ev->reason, sizeof ev->reason, "%s", it->r.reason);
    }
    int rc = ev_emit(a->x, a->cl, a->logs, &a->evs, &a->e);
    return rc == 0 ? STEP_OK : rc == -2 ? STEP_MONGO : STEP_STOP;
}

/* 6a. Receipts for unknown logs (or another campaign's) to the DLQ: a whole single-receipt job,
 * or a part of a batch job. */
static int apply_dead_unknown(apply *a)
{
    receipts_ctx *x = a->x;
    item *items = a->items;
    for (size_t i = 0; i < a->nitems; i++) {
        item *it = &items[i];
        if (it->dup && it->part && items[i - 1].part && !(it->found && !it->mismatch)) {
            x->dead++; /* the first copy's dead letter stands for both */
            continue;
        }
        if (it->found && !it->mismatch) {
            if (it->counted && !it->dup)
                x->applied++;
            else
                x->noops++;
            continue;
        }
        char why[120], hex[25];
        bson_oid_to_string(&it->oid, hex);
        if (it->mismatch)
            snprintf(why, sizeof why, "log %s does not belong to the campaign the receipt names",
                     hex);
        else
            snprintf(why, sizeof why, "unknown log_id %s", hex);
        if (!it->part) {
            if (a->fate[it->job] != JOB_DEAD) {
                if (queue_dead(x->q, &a->b->jobs[it->job], why) != 0)
                    return STEP_STOP;
                a->fate[it->job] = JOB_DEAD;
            }
        } else if (part_add(&a->parts, it->raw, it->rawlen, why) != 0) {
            return STEP_STOP;
        }
        x->dead++;
    }
    return STEP_OK;
}

/* 6b. Settle every job: after a MongoDB failure each job not already dead-lettered is retried
 * whole (its malformed parts were not written yet: they are found again on the next attempt);
 * otherwise the parts' dead letters are written and the jobs acked. 0 or -1 (Redis). */
static int apply_settle(apply *a, bool mongo_failed)
{
    receipts_ctx *x = a->x;
    const queue_batch *b = a->b;
    if (mongo_failed) {
        int rc = 0;
        for (size_t i = 0; i < b->n; i++)
            if (a->fate[i] != JOB_DEAD && queue_retry(x->q, &b->jobs[i], a->e.message) < 0)
                rc = -1;
        return rc;
    }
    if (a->parts.n && queue_dead_parts(x->q, a->parts.text, a->parts.len,
                                       (const char *const *)a->parts.why, a->parts.n) != 0)
        return -1;
    size_t na = 0;
    long long nitems_acked = 0;
    for (size_t i = 0; i < b->n; i++)
        if (a->fate[i] == JOB_ACK) {
            a->acks[na++] = b->jobs[i];
            nitems_acked += (long long)a->rd[i].n;
        }
    if (na && queue_ack_items(x->q, a->acks, na, nitems_acked) != 0)
        return -1;
    return 0;
}

int receipts_apply_batch(receipts_ctx *x, const queue_batch *b)
{
    apply a;
    int rc = -1, st = STEP_STOP;
    bool moved_all = false;
    if (apply_init(&a, x, b) != 0 || apply_parse(&a) != STEP_OK)
        goto out;
    if (a.nitems == 0) {
        rc = apply_settle(&a, false);
        goto out;
    }
    if (apply_register_token(&a) != STEP_OK)
        goto out;
    a.cl = dbpool_pop(x->db);
    a.logs = dbpool_durable_collection(x->db, a.cl, DB_LOGS);
    a.camps = dbpool_durable_collection(x->db, a.cl, DB_CAMPAIGNS);
    if ((st = apply_update_logs(&a, &moved_all)) == STEP_OK &&
        (st = apply_find_moved(&a, moved_all)) == STEP_OK && (st = apply_emit(&a)) == STEP_OK &&
        (st = apply_count(&a)) == STEP_OK)
        st = apply_dead_unknown(&a);
    if (st == STEP_STOP)
        goto out; /* the token stays in Redis: receipts_recover counts what was moved */
    if (st == STEP_MONGO) {
        log_warn("receipts.mongo_error", "batch=%zu detail=\"%s\"", b->n, a.e.message);
        /* keep the token in Redis: receipts_recover counts what was moved */
        rc = apply_settle(&a, true);
        goto out;
    }
    token_forget(x, a.tok);
    rc = apply_settle(&a, false);
out:
    apply_release(&a);
    return rc;
}

/* ---- token recovery ---------------------------------------------------------------------- */

/* The ids stored with tok ({"_id": {"$in": [...]}} appended to filter). 1 if found, 0 if the
 * token has no ids (written by an older version: the recovery then scans by ctok), -1 on a
 * Redis error. */
static int token_ids(receipts_ctx *x, const char *tok, bson_t *filter)
{
    redisReply *r =
        rconn_command(x->rc, "GET %s{%s}:ctok:%s", x->cfg->redis.prefix, QUEUE_RECEIPTS, tok);
    if (!r || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL)) {
        if (r)
            freeReplyObject(r);
        return -1;
    }
    int found = r->type == REDIS_REPLY_STRING;
    if (found) {
        bson_t in, arr;
        BSON_APPEND_DOCUMENT_BEGIN(filter, "_id", &in);
        BSON_APPEND_ARRAY_BEGIN(&in, "$in", &arr);
        char key[16], hex[25];
        for (size_t i = 0; i + 24 <= r->len; i += 24) {
            memcpy(hex, r->str + i, 24);
            hex[24] = '\0';
            if (!oid_is_valid_hex(hex))
                continue;
            bson_oid_t oid;
            bson_oid_init_from_string(&oid, hex);
            const char *k;
            bson_uint32_to_string((uint32_t)(i / 24), &k, key, sizeof key);
            bson_append_oid(&arr, k, -1, &oid);
        }
        bson_append_array_end(&in, &arr);
        bson_append_document_end(filter, &in);
    }
    freeReplyObject(r);
    return found;
}

static int recover_token(receipts_ctx *x, mongoc_client_t *cl, mongoc_collection_t *logs,
                         mongoc_collection_t *camps, const char *tok)
{
    /* Fence first: the batch's logs can no longer be moved (or get an event recorded) by a
     * late statement of this token (see "The fence" above); then count what the token did. */
    bson_t *filter = bson_new();
    int has_ids = token_ids(x, tok, filter);
    if (has_ids < 0) {
        bson_destroy(filter);
        return -1;
    }
    if (has_ids) {
        bson_t *fsel = bson_copy(filter);
        bson_t *fupd = BCON_NEW("$set", "{", "fence", BCON_UTF8(tok), "}");
        bson_error_t fe;
        bool ok = mongoc_collection_update_many(logs, fsel, fupd, NULL, NULL, &fe);
        bson_destroy(fsel);
        bson_destroy(fupd);
        if (!ok) {
            log_warn("receipts.recover_error", "token=%s detail=\"%s\"", tok, fe.message);
            bson_destroy(filter);
            return -1;
        }
    }
    /* The logs the token moved or recorded an event on: ctok, otok, cltok or cptok == tok. */
    bson_t ors, o;
    BSON_APPEND_ARRAY_BEGIN(filter, "$or", &ors);
    BSON_APPEND_DOCUMENT_BEGIN(&ors, "0", &o);
    BSON_APPEND_UTF8(&o, "ctok", tok);
    bson_append_document_end(&ors, &o);
    for (int ev = 0; ev < CAMPAIGN_LOG_EV_COUNT; ev++) {
        char k[4];
        snprintf(k, sizeof k, "%d", ev + 1);
        BSON_APPEND_DOCUMENT_BEGIN(&ors, k, &o);
        BSON_APPEND_UTF8(&o, campaign_log_event_token((campaign_log_event)ev), tok);
        bson_append_document_end(&ors, &o);
    }
    bson_append_array_end(filter, &ors);
    bson_t *opts =
        BCON_NEW("projection", "{", "status", BCON_INT32(1), "campaign_id", BCON_INT32(1),
                 "customer_id", BCON_INT32(1), "vendorMsgId", BCON_INT32(1), "failureReason",
                 BCON_INT32(1), "bounced", BCON_INT32(1), "ctok", BCON_INT32(1), "otok",
                 BCON_INT32(1), "cltok", BCON_INT32(1), "cptok", BCON_INT32(1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(logs, filter, opts, NULL);
    bson_destroy(filter);
    bson_destroy(opts);
    camp_count *counts = NULL;
    size_t n = 0, cap = 0;
    ev_list evs = {0};
    const bson_t *doc;
    bson_error_t e;
    int rc = -1;
    while (mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it;
        const bson_oid_t *cid = NULL, *uid = NULL, *lid = NULL;
        if (bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_OID(&it))
            lid = bson_iter_oid(&it);
        if (bson_iter_init_find(&it, doc, "campaign_id") && BSON_ITER_HOLDS_OID(&it))
            cid = bson_iter_oid(&it);
        if (bson_iter_init_find(&it, doc, "customer_id") && BSON_ITER_HOLDS_OID(&it))
            uid = bson_iter_oid(&it);
        bool bounced = bson_iter_init_find(&it, doc, "bounced") && BSON_ITER_HOLDS_BOOL(&it) &&
                       bson_iter_bool(&it);
        /* What the token did to this log: the status move (ctok) and each event (its field). */
        jobs_event_type evt[2];
        size_t nevt = 0;
        const char *dtok = bson_iter_init_find(&it, doc, "ctok") && BSON_ITER_HOLDS_UTF8(&it)
                               ? bson_iter_utf8(&it, NULL)
                               : NULL;
        if (dtok && !strcmp(dtok, tok)) {
            campaign_log_status st;
            uint32_t len = 0;
            const char *s = bson_iter_init_find(&it, doc, "status") && BSON_ITER_HOLDS_UTF8(&it)
                                ? bson_iter_utf8(&it, &len)
                                : NULL;
            if (s && campaign_log_status_parse(s, len, &st) == 0 && campaign_log_status_final(st)) {
                if (cid && add_count(&counts, &n, &cap, cid,
                                     st == CAMPAIGN_LOG_SENT ? CNT_SENT
                                     : bounced               ? CNT_BOUNCED
                                                             : CNT_FAILED) != 0)
                    goto out;
                if (st == CAMPAIGN_LOG_FAILED)
                    evt[nevt++] = bounced ? JOBS_EV_MESSAGE_BOUNCED : JOBS_EV_MESSAGE_FAILED;
            }
        }
        static const int ev_cnt[CAMPAIGN_LOG_EV_COUNT] = {CNT_OPENED, CNT_CLICKED, CNT_COMPLAINED};
        for (int ev = 0; ev < CAMPAIGN_LOG_EV_COUNT; ev++) {
            const char *t =
                bson_iter_init_find(&it, doc, campaign_log_event_token((campaign_log_event)ev)) &&
                        BSON_ITER_HOLDS_UTF8(&it)
                    ? bson_iter_utf8(&it, NULL)
                    : NULL;
            if (!t || strcmp(t, tok) != 0)
                continue;
            if (cid && add_count(&counts, &n, &cap, cid, ev_cnt[ev]) != 0)
                goto out;
            if (ev == CAMPAIGN_LOG_EV_COMPLAINED)
                evt[nevt++] = JOBS_EV_CONTACT_COMPLAINED;
        }
        for (size_t k = 0; lid && k < nevt; k++) {
            ev_item *ev = ev_add(&evs);
            if (!ev)
                goto out;
            ev->type = evt[k];
            bson_oid_copy(lid, &ev->lid);
            if ((ev->has_cid = cid != NULL))
                bson_oid_copy(cid, &ev->cid);
            if ((ev->has_uid = uid != NULL))
                bson_oid_copy(uid, &ev->uid);
            if (bson_iter_init_find(&it, doc, "vendorMsgId") && BSON_ITER_HOLDS_UTF8(&it))
                snprintf(ev->vmid, sizeof ev->vmid, "%s", bson_iter_utf8(&it, NULL));
            if (evt[k] != JOBS_EV_CONTACT_COMPLAINED &&
                bson_iter_init_find(&it, doc, "failureReason") && BSON_ITER_HOLDS_UTF8(&it))
                snprintf(ev->reason, sizeof ev->reason, "%s", bson_iter_utf8(&it, NULL));
        }
    }
    if (mongoc_cursor_error(cur, &e)) {
        log_warn("receipts.recover_error", "token=%s detail=\"%s\"", tok, e.message);
        goto out;
    }
    /* The crashed batch may have died before suppressing its addresses and pushing its
     * events: do both (again) before counting, in the order of a batch (4b before 5), so
     * that counted always means suppressed too; if this fails, the token stays and all of it
     * is redone later. */
    if (ev_emit(x, cl, logs, &evs, &e) != 0) {
        log_warn("receipts.recover_error", "token=%s detail=\"events: %s\"", tok, e.message);
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        if (count_campaign(x, camps, &counts[i], tok, &e) != 0) {
            log_warn("receipts.recover_error", "token=%s detail=\"%s\"", tok, e.message);
            goto out;
        }
    log_info("receipts.token_recovered", "token=%s campaigns=%zu events=%zu", tok, n, evs.n);
    rc = 0;
out:
    mongoc_cursor_destroy(cur);
    free(counts);
    free(evs.a);
    return rc;
}

/* Which of the n tokens in `toks` (scored by registration time in `at`) are to be recovered
 * now: older than min_age_ms, or registered by a consumer whose heartbeat has expired (the
 * reaper hands its jobs back at the same moment, so the counters converge with them). A token
 * without an owner (written by an older version) waits for its age. Sets due[i]. 0 or -1. */
static int tokens_due(receipts_ctx *x, redisReply *const *toks, redisReply *const *at, size_t n,
                      int64_t min_age_ms, bool *due)
{
    int64_t old = time_now_ms() - min_age_ms;
    size_t nyoung = 0;
    const char **argv = calloc(n + 2, sizeof *argv);
    if (!argv)
        return -1;
    char key[300];
    snprintf(key, sizeof key, "%s{%s}:ctok-owners", x->cfg->redis.prefix, QUEUE_RECEIPTS);
    argv[0] = "HMGET";
    argv[1] = key;
    for (size_t i = 0; i < n; i++) {
        due[i] = at[i]->str && strtoll(at[i]->str, NULL, 10) <= old;
        if (!due[i])
            argv[2 + nyoung++] = toks[i]->str;
    }
    int rc = 0;
    if (nyoung) {
        redisReply *r = rconn_command_argv(x->rc, (int)nyoung + 2, argv, NULL);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != nyoung) {
            rc = -1;
        } else {
            /* Owners are few (a consumer has at most one batch in flight): ask once per owner. */
            const char *dead[64];
            const char *live[64];
            size_t ndead = 0, nlive = 0;
            for (size_t i = 0, j = 0; i < n && rc == 0; i++) {
                if (due[i])
                    continue;
                redisReply *o = r->element[j++];
                if (o->type != REDIS_REPLY_STRING)
                    continue;
                bool known = false;
                for (size_t k = 0; k < ndead && !known; k++)
                    if (!strcmp(dead[k], o->str))
                        known = due[i] = true;
                for (size_t k = 0; k < nlive && !known; k++)
                    if (!strcmp(live[k], o->str))
                        known = true;
                if (known)
                    continue;
                int alive = queue_consumer_alive(x->q, o->str);
                if (alive < 0) {
                    rc = -1;
                } else if (alive == 0) {
                    due[i] = true;
                    if (ndead < 64)
                        dead[ndead++] = o->str;
                } else if (nlive < 64) {
                    live[nlive++] = o->str;
                }
            }
        }
        if (r)
            freeReplyObject(r);
    }
    free(argv);
    return rc;
}

int receipts_recover(receipts_ctx *x, int64_t min_age_ms)
{
    redisReply *r = rconn_command(x->rc, "ZRANGE %s{%s}:ctoks 0 99 WITHSCORES",
                                  x->cfg->redis.prefix, QUEUE_RECEIPTS);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        if (r)
            freeReplyObject(r);
        return -1;
    }
    int done = 0;
    size_t n = r->elements / 2;
    redisReply **toks = calloc(n ? n : 1, sizeof *toks), **at = calloc(n ? n : 1, sizeof *at);
    bool *due = calloc(n ? n : 1, sizeof *due);
    size_t ndue = 0;
    if (!toks || !at || !due) {
        done = -1;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        toks[i] = r->element[2 * i];
        at[i] = r->element[2 * i + 1];
    }
    if (n && tokens_due(x, toks, at, n, min_age_ms, due) != 0) {
        log_warn("receipts.redis_error", "detail=\"%s\"", queue_error(x->q));
        done = -1;
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        ndue += due[i];
    if (ndue) {
        mongoc_client_t *cl = dbpool_pop(x->db);
        mongoc_collection_t *logs = dbpool_durable_collection(x->db, cl, DB_LOGS);
        mongoc_collection_t *camps = dbpool_durable_collection(x->db, cl, DB_CAMPAIGNS);
        for (size_t i = 0; i < n; i++) {
            const char *tok = toks[i]->str;
            if (!due[i] || !tok || strlen(tok) != 24)
                continue;
            if (recover_token(x, cl, logs, camps, tok) != 0)
                break;
            token_forget(x, tok);
            done++;
        }
        mongoc_collection_destroy(logs);
        mongoc_collection_destroy(camps);
        dbpool_push(x->db, cl);
    }
out:
    free(toks);
    free(at);
    free(due);
    freeReplyObject(r);
    return done;
}

/* ---- sweeper ----------------------------------------------------------------------------- */

/* The sweeper's clock starts when the vendor has nothing waiting ahead of a log.
 *
 * A log's updatedAt is written at fan-out, but its send may then wait a long time for its turn:
 * behind a campaign's own rate_per_s or vendor.rate_per_s (paced in a simulator's pacer, held
 * claimed in its processing list, or deferred in the queue's delayed set), or simply behind a
 * long queue. Counting vendor_timeout_s from updatedAt would re-send such logs, and fail them
 * after max_resends, without their send ever being handed over. So the sweeper only sweeps a
 * log once the queues its send goes through have had vendor_timeout_s with nothing waiting:
 * ready + delayed + claimed (queue_stats_get, which covers every shard of a sharded queue).
 * Campaign logs wait on `sends` and `priority` (every sends consumer claims priority first);
 * one-off logs (campaign_id null) only on `priority`, which is also where their re-sends go
 * (a campaign log's re-send goes on `sends`).
 *
 * The memory of a backlog is one Redis key per gate, P{receipts}:sweep-busy (campaign logs) and
 * P{receipts}:sweep-busy:priority (one-off logs):
 *   backlog seen          -> SET key "b" (no expiry: the backlog may outlast any TTL between
 *                            two sweeps; the clock has not started)
 *   no backlog, key "b"   -> SET key "i" PX vendor_timeout_s*1000 (the last send handed over
 *                            no later than now: the clock starts now)
 *   no backlog, key "i"   -> wait for it to expire
 *   no backlog, no key    -> sweep (logs PENDING and older than the cutoff, as before)
 * The state lives in Redis, so it survives a kill -9 of any receipts worker and is shared by
 * whichever one wins the sweep lock next. A sweeper that cannot read the queues sweeps nothing
 * this turn. The cost is a few Redis round trips per sweep, no per-message work. The price: under
 * continuous traffic a send that was really lost is re-sent only once the queues drain. */
static const char *const SWEEP_GATE_CAMPAIGNS = "sweep-busy";
static const char *const SWEEP_GATE_ONEOFF = "sweep-busy:priority";

/* Work waiting in queue `name` (ready + delayed + claimed), or -1. */
static long long queue_waiting(receipts_ctx *x, const char *name)
{
    queue_stats st;
    char err[256];
    if (queue_stats_get(x->rc, x->cfg->redis.prefix, name, &st, err, sizeof err) != 0) {
        log_warn("receipts.sweep_error", "queue=%s detail=\"%s\"", name, err);
        return -1;
    }
    return st.ready + st.delayed + st.inflight;
}

/* Move gate `gate` on what was seen (backlog or not). 1 closed (do not sweep its logs), 0 open,
 * -1 Redis failed (treated as closed by the caller). */
static int sweep_gate(receipts_ctx *x, const char *gate, bool backlog)
{
    const char *pfx = x->cfg->redis.prefix;
    redisReply *r = NULL;
    int rc = -1;
    if (backlog) {
        r = rconn_command(x->rc, "SET %s{%s}:%s b", pfx, QUEUE_RECEIPTS, gate);
        rc = r && r->type == REDIS_REPLY_STATUS ? 1 : -1;
        goto out;
    }
    r = rconn_command(x->rc, "GET %s{%s}:%s", pfx, QUEUE_RECEIPTS, gate);
    if (!r || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL))
        goto out;
    if (r->type == REDIS_REPLY_NIL) {
        rc = 0;
        goto out;
    }
    if (r->len == 1 && r->str[0] == 'b') {
        freeReplyObject(r);
        r = rconn_command(x->rc, "SET %s{%s}:%s i PX %lld", pfx, QUEUE_RECEIPTS, gate,
                          (long long)x->cfg->receipts.vendor_timeout_s * 1000);
        if (!r || r->type != REDIS_REPLY_STATUS)
            goto out;
    }
    rc = 1;
out:
    if (rc < 0)
        log_warn("receipts.sweep_error", "gate=%s detail=\"%s\"", gate,
                 r && r->type == REDIS_REPLY_ERROR ? r->str : rconn_error(x->rc));
    if (r)
        freeReplyObject(r);
    return rc;
}

/* A campaign's own send rate, for its re-sends. */
typedef struct camp_rate {
    bson_oid_t cid;
    double rate_per_s; /* 0 = none */
} camp_rate;

/* The rate_per_s of every campaign among the logs (one find by _id $in); campaigns without one
 * get 0. *out (malloc'd, the caller frees) has *n entries. 0, or -1 (MongoDB: re-sends wait). */
static int campaign_rates(dbpool *db, mongoc_client_t *cl, bson_t **rows, size_t nrows,
                          camp_rate **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    camp_rate *a = calloc(nrows ? nrows : 1, sizeof *a);
    if (!a)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < nrows; i++) {
        bson_iter_t it;
        if (!bson_iter_init_find(&it, rows[i], "campaign_id") || !BSON_ITER_HOLDS_OID(&it))
            continue;
        const bson_oid_t *c = bson_iter_oid(&it);
        size_t j = 0;
        while (j < k && !bson_oid_equal(&a[j].cid, c))
            j++;
        if (j == k)
            bson_oid_copy(c, &a[k++].cid);
    }
    *out = a;
    *n = k;
    if (k == 0)
        return 0;
    mongoc_collection_t *camps = dbpool_collection(db, cl, DB_CAMPAIGNS);
    bson_t *filter = bson_new(), in, arr;
    BSON_APPEND_DOCUMENT_BEGIN(filter, "_id", &in);
    BSON_APPEND_ARRAY_BEGIN(&in, "$in", &arr);
    for (size_t i = 0; i < k; i++) {
        char key[16];
        const char *kp;
        bson_uint32_to_string((uint32_t)i, &kp, key, sizeof key);
        BSON_APPEND_OID(&arr, kp, &a[i].cid);
    }
    bson_append_array_end(&in, &arr);
    bson_append_document_end(filter, &in);
    bson_t *opts = BCON_NEW("projection", "{", "rate_per_s", BCON_INT32(1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(camps, filter, opts, NULL);
    const bson_t *doc;
    while (mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it;
        if (!bson_iter_init_find(&it, doc, "_id") || !BSON_ITER_HOLDS_OID(&it))
            continue;
        const bson_oid_t *c = bson_iter_oid(&it);
        for (size_t j = 0; j < k; j++)
            if (bson_oid_equal(&a[j].cid, c) && bson_iter_init_find(&it, doc, "rate_per_s") &&
                BSON_ITER_HOLDS_NUMBER(&it))
                a[j].rate_per_s = bson_iter_as_double(&it);
    }
    bson_error_t e;
    int rc = 0;
    if (mongoc_cursor_error(cur, &e)) {
        log_warn("receipts.sweep_error", "detail=\"%s\"", e.message);
        rc = -1;
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    bson_destroy(opts);
    mongoc_collection_destroy(camps);
    return rc;
}

/* Restrict filter's campaign_id: one-off logs only (campaigns closed), or campaign logs of no
 * paused campaign (plus the one-off logs unless oneoff_closed). */
static void sweep_filter_campaigns(receipts_ctx *x, bson_t *filter, bool campaigns_closed,
                                   bool oneoff_closed)
{
    if (campaigns_closed) {
        BSON_APPEND_NULL(filter, "campaign_id");
        return;
    }
    /* A paused campaign's logs wait for its resume: their sends are held, not lost. */
    campctl_view pv;
    campctl_view_init(&pv);
    size_t npaused = campctl_view_sync(x->rc, x->cfg->redis.prefix, &pv) == 0 ? pv.npaused : 0;
    if (npaused > 0 || oneoff_closed) {
        bson_t cf, nin;
        BSON_APPEND_DOCUMENT_BEGIN(filter, "campaign_id", &cf);
        BSON_APPEND_ARRAY_BEGIN(&cf, "$nin", &nin);
        for (size_t i = 0; i < npaused; i++) {
            char k[16];
            const char *kp;
            bson_oid_t o;
            bson_uint32_to_string((uint32_t)i, &kp, k, sizeof k);
            bson_oid_init_from_string(&o, pv.paused[i]);
            BSON_APPEND_OID(&nin, kp, &o);
        }
        if (oneoff_closed) {
            char k[16];
            const char *kp;
            bson_uint32_to_string((uint32_t)npaused, &kp, k, sizeof k);
            BSON_APPEND_NULL(&nin, kp);
        }
        bson_append_array_end(&cf, &nin);
        bson_append_document_end(filter, &cf);
    }
    campctl_view_release(&pv);
}

int receipts_sweep(receipts_ctx *x)
{
    /* One sweeper at a time across processes and hosts. */
    redisReply *lk = rconn_command(x->rc, "SET %s{%s}:sweep-lock 1 NX PX %d", x->cfg->redis.prefix,
                                   QUEUE_RECEIPTS, x->cfg->receipts.sweep_interval_s * 1000);
    bool won = lk && lk->type == REDIS_REPLY_STATUS;
    if (lk)
        freeReplyObject(lk);
    if (!won)
        return 0;
    /* Nothing is swept while its send may still be waiting for its turn (see above). */
    long long wsends = queue_waiting(x, QUEUE_SENDS);
    long long wprio = queue_waiting(x, QUEUE_PRIORITY);
    if (wsends < 0 || wprio < 0)
        return 0;
    int gc = sweep_gate(x, SWEEP_GATE_CAMPAIGNS, wsends + wprio > 0);
    int go = sweep_gate(x, SWEEP_GATE_ONEOFF, wprio > 0);
    bool campaigns_closed = gc != 0, oneoff_closed = go != 0;
    if (campaigns_closed && oneoff_closed)
        return 0;
    int64_t now = time_now_ms();
    int64_t cutoff = now - (int64_t)x->cfg->receipts.vendor_timeout_s * 1000;
    mongoc_client_t *cl = dbpool_pop(x->db);
    mongoc_collection_t *logs = dbpool_durable_collection(x->db, cl, DB_LOGS);
    bson_t *filter = bson_new();
    campaign_log_match_pending(filter);
    sweep_filter_campaigns(x, filter, campaigns_closed, oneoff_closed);
    bson_t lt;
    BSON_APPEND_DOCUMENT_BEGIN(filter, "updatedAt", &lt);
    BSON_APPEND_DATE_TIME(&lt, "$lt", cutoff);
    bson_append_document_end(filter, &lt);
    bson_t *opts = BCON_NEW("limit", BCON_INT64(1000));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(logs, filter, opts, NULL);
    bson_destroy(filter);
    bson_destroy(opts);
    char **sends = NULL, **prio = NULL, **fails = NULL;
    bson_t **rows = NULL;
    camp_rate *rates = NULL;
    size_t nsend = 0, nprio = 0, nfail = 0, nrows = 0, nrates = 0, cap = 1000;
    queue *pq = NULL;
    mongoc_bulk_operation_t *bulk = NULL;
    int rc = -1;
    sends = calloc(cap, sizeof *sends);
    prio = calloc(cap, sizeof *prio);
    fails = calloc(cap, sizeof *fails);
    rows = calloc(cap, sizeof *rows);
    bson_t *bopts = BCON_NEW("ordered", BCON_BOOL(false));
    bulk = mongoc_collection_create_bulk_operation_with_opts(logs, bopts);
    bson_destroy(bopts);
    const bson_t *doc;
    bson_error_t e;
    size_t nupd = 0;
    if (!sends || !prio || !fails || !rows)
        goto out;
    while (nrows < cap && mongoc_cursor_next(cur, &doc))
        rows[nrows++] = bson_copy(doc);
    if (mongoc_cursor_error(cur, &e)) {
        log_warn("receipts.sweep_error", "detail=\"%s\"", e.message);
        goto out;
    }
    /* Re-sends honour their campaign's own rate: one read for all of them. */
    if (nrows && campaign_rates(x->db, cl, rows, nrows, &rates, &nrates) != 0)
        goto out;
    for (size_t ri = 0; ri < nrows; ri++) {
        doc = rows[ri];
        bson_iter_t it;
        char lid[25], cid[25] = "", uid[25] = "";
        const char *msg = "";
        int64_t resends = 0;
        double rate = 0;
        if (!bson_iter_init_find(&it, doc, "_id") || !BSON_ITER_HOLDS_OID(&it))
            continue;
        bson_oid_t oid;
        bson_oid_copy(bson_iter_oid(&it), &oid);
        bson_oid_to_string(&oid, lid);
        if (bson_iter_init_find(&it, doc, "campaign_id") && BSON_ITER_HOLDS_OID(&it)) {
            bson_oid_to_string(bson_iter_oid(&it), cid);
            for (size_t j = 0; j < nrates; j++)
                if (bson_oid_equal(&rates[j].cid, bson_iter_oid(&it)))
                    rate = rates[j].rate_per_s;
        }
        if (bson_iter_init_find(&it, doc, "customer_id") && BSON_ITER_HOLDS_OID(&it))
            bson_oid_to_string(bson_iter_oid(&it), uid);
        if (bson_iter_init_find(&it, doc, "message") && BSON_ITER_HOLDS_UTF8(&it))
            msg = bson_iter_utf8(&it, NULL);
        if (bson_iter_init_find(&it, doc, "resends") && BSON_ITER_HOLDS_NUMBER(&it))
            resends = bson_iter_as_int64(&it);
        jsonx_buf job = {0};
        if (resends >= x->cfg->receipts.max_resends) {
            jobs_receipt r = {.status = CAMPAIGN_LOG_FAILED, .at = now};
            memcpy(r.log_id, lid, sizeof r.log_id);
            snprintf(r.reason, sizeof r.reason, "no delivery receipt after %lld re-sends",
                     (long long)resends);
            if (jobs_receipt_encode(&job, &r) == 0)
                fails[nfail++] = job.data;
            else
                jsonx_buf_free(&job);
        } else {
            /* A re-send carries minicrm's id for the log, so a message first handed over by
             * POST /api/vendor/send ends with the id that route answered. */
            char vid[CAMPAIGN_VMID_LEN + 1];
            campaign_vendor_msg_id(x->cfg->receipts.vendor_secret, lid, vid);
            char uurl[UNSUB_URL_MAX + 1];
            const unsub_signer *us = unsub_signer_get(x->cfg);
            jobs_send s = {.log_id = lid,
                           .campaign_id = cid[0] ? cid : NULL,
                           .customer_id = uid[0] ? uid : NULL,
                           .message = msg,
                           .vendor_msg_id = vid,
                           .resend = (int)(resends + 1),
                           .unsubscribe_url =
                               us && unsub_url(us, lid, uurl, sizeof uurl) > 0 ? uurl : NULL,
                           .rate_per_s = rate};
            /* A one-off message goes back on its own lane (the priority queue, whose backlog
             * alone its log waits on), a campaign's on the sends queue. */
            if (jobs_send_encode(&job, &s) != 0)
                jsonx_buf_free(&job);
            else if (cid[0])
                sends[nsend++] = job.data;
            else
                prio[nprio++] = job.data;
        }
        /* Push the clock forward so the log is not swept again before the next timeout. */
        bson_t *sel = BCON_NEW("_id", BCON_OID(&oid));
        campaign_log_match_pending(sel);
        bson_t *upd =
            resends >= x->cfg->receipts.max_resends
                ? BCON_NEW("$set", "{", "updatedAt", BCON_DATE_TIME(now), "}")
                : BCON_NEW("$inc", "{", "resends", BCON_INT32(1), "}", "$set", "{", "updatedAt",
                           BCON_DATE_TIME(now), "lastSentAt", BCON_DATE_TIME(now), "}");
        mongoc_bulk_operation_update_one_with_opts(bulk, sel, upd, NULL, &e);
        nupd++;
        bson_destroy(sel);
        bson_destroy(upd);
    }
    /* Push first, then move the clock: a crash in between only means an extra re-send. */
    if (nsend && queue_push_many(x->sends, (const char *const *)sends, NULL, nsend) != 0)
        goto out;
    if (nprio) {
        char err[256];
        pq = queue_open(x->rc, x->cfg->redis.prefix, QUEUE_PRIORITY, NULL, NULL, err, sizeof err);
        if (!pq || queue_push_many(pq, (const char *const *)prio, NULL, nprio) != 0) {
            log_warn("receipts.sweep_error", "queue=%s detail=\"%s\"", QUEUE_PRIORITY,
                     pq ? queue_error(pq) : err);
            goto out;
        }
    }
    if (nfail && queue_push_many(x->q, (const char *const *)fails, NULL, nfail) != 0)
        goto out;
    if (nupd) {
        bson_t reply;
        bool ok = mongoc_bulk_operation_execute(bulk, &reply, &e);
        bson_destroy(&reply);
        if (!ok) {
            log_warn("receipts.sweep_error", "detail=\"%s\"", e.message);
            goto out;
        }
    }
    if (nsend || nprio || nfail)
        log_info("receipts.swept", "resent=%zu failed=%zu", nsend + nprio, nfail);
    rc = (int)(nsend + nprio + nfail);
out:
    mongoc_cursor_destroy(cur);
    if (bulk)
        mongoc_bulk_operation_destroy(bulk);
    for (size_t i = 0; sends && i < nsend; i++)
        free(sends[i]);
    for (size_t i = 0; prio && i < nprio; i++)
        free(prio[i]);
    for (size_t i = 0; fails && i < nfail; i++)
        free(fails[i]);
    for (size_t i = 0; rows && i < nrows; i++)
        bson_destroy(rows[i]);
    queue_close(pq);
    free(sends);
    free(prio);
    free(fails);
    free(rows);
    free(rates);
    mongoc_collection_destroy(logs);
    dbpool_push(x->db, cl);
    return rc;
}
