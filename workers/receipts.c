/*
 * receipts: see receipts.h for the guarantees.
 *
 * A job is one receipt {"log_id", "status", "vendorMsgId", "at", "campaign_id"?} or a batch
 * {"receipts": [...]} (one POST to the API). One claimed batch of jobs, step by step (numbers
 * are the crash points discussed below):
 *   1. parse every job; a malformed job -> dead-letter now; a malformed receipt inside a batch
 *      job is set aside as a dead letter of its own (written in step 6, with the ack);
 *      duplicates of a log_id inside the batch are settled with the first one.
 *   2. tok = new ObjectId hex; ZADD P{receipts}:ctoks now tok, SET ctok:tok ids   (Redis)
 *   3. unordered bulk: updateOne {_id, status: PENDING, fence: {$ne: tok} (, campaign_id when
 *      the receipt names it)} -> $set status, vendorMsgId, deliveredAt, updatedAt, ctok: tok
 *      (+ failureReason)
 *   4. if every receipt named its campaign and the bulk matched every statement, each log was
 *      moved by THIS batch: counted per campaign from the receipts themselves, no read back
 *      (the usual case: the vendor echoes the send's campaign_id). Otherwise
 *      find {_id: {$in: ids}} -> unknown ids (or a campaign_id that is not the log's) are
 *      dead-lettered; logs whose ctok == tok were moved by THIS batch and are counted.
 *   5. per campaign: updateOne {_id, ctoks: {$ne: tok}} -> $inc sent/failed/-pending,
 *      $push ctoks tok (last 1000 kept); then COMPLETED if fanout_done and pending <= 0.
 *   6. ZREM ctoks tok; dead letters of single receipts of batch jobs; ack the jobs.
 * A crash (or MongoDB error) after 3 leaves logs final but maybe uncounted; the retried receipts
 * then see a foreign ctok and are no-ops, and receipts_recover() counts the orphaned token's logs
 * with the same guarded update. A crash after 5 but before 6 is harmless: the guard finds tok
 * already in ctoks.
 *
 * The fence. A bulk update whose call timed out is in doubt: the server may still hold it (a
 * stalled or frozen server applies what sits in its socket buffer when it resumes) and apply it
 * after the recovery has counted the token, leaving logs final but never counted. So step 2 also
 * stores the batch's log ids with the token (P{receipts}:ctok:TOKEN), every statement of step 3
 * requires fence != tok, and the recovery first sets fence = tok on those of the batch's logs
 * that are still PENDING, then counts the logs carrying ctok == tok among the batch's ids (an
 * indexed _id $in, no collection scan). A late statement of the batch then matches nothing: the
 * log is either final already (counted by whoever moved it) or fenced (left PENDING for the
 * retried receipt, which carries a fresh token). Per-document atomicity is all this needs.
 */
#include "receipts.h"

#include "jscan.h"
#include "jsonx.h"
#include "log.h"
#include "timeutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ST_SENT = 1, ST_FAILED = 2, ST_PENDING = 3 };

typedef struct item {
    size_t job;      /* index into the batch */
    const char *raw; /* the receipt's JSON text inside its job (for a dead letter) */
    size_t rawlen;
    bool part;        /* one receipt of a batch job (not the whole job) */
    bool has_cid;     /* the receipt names its campaign (cid) */
    bson_oid_t oid;   /* log id */
    int status;       /* ST_* */
    char vmid[129];   /* vendorMsgId ("" = none) */
    char reason[200]; /* failure reason (synthetic receipts) */
    int64_t at;       /* delivery time, ms */
    int dup;          /* another item of the batch has this oid */
    int found;        /* the log exists */
    int counted;      /* moved by this batch's token */
    int mismatch;     /* the log exists but belongs to another campaign than the receipt says */
    bson_oid_t cid;   /* campaign of the log (named by the receipt, or read back) */
} item;

typedef struct camp_count {
    bson_oid_t cid;
    int64_t sent, failed;
} camp_count;

static int cmp_item_oid(const void *a, const void *b)
{
    return bson_oid_compare(&((const item *)a)->oid, &((const item *)b)->oid);
}

/* Copy string token tok into out (cap bytes, NUL-terminated), cut at a UTF-8 character
 * boundary if it is longer (the text goes into MongoDB, which wants valid UTF-8). */
static void copy_cut(const jscan *js, int tok, char *out, size_t cap)
{
    size_t raw = js->t[tok].len + 1; /* the unescaped text is never longer than the raw one */
    char *tmp = malloc(raw);
    size_t n = tmp ? jscan_str_copy(js, tok, tmp, raw) : (size_t)-1;
    if (n == (size_t)-1) {
        out[0] = '\0';
    } else {
        if (n >= cap) {
            n = cap - 1;
            while (n > 0 && ((unsigned char)tmp[n] & 0xC0) == 0x80)
                n--; /* tmp[n] would start the cut-off part: back to a character's first byte */
        }
        memcpy(out, tmp, n);
        out[n] = '\0';
    }
    free(tmp);
}

/* Parse receipt object token o of js; 0 ok, -1 with reason in why. */
static int parse_receipt(const jscan *js, int o, item *it, char *why, size_t whylen)
{
    if (js->t[o].type != JSCAN_OBJECT) {
        snprintf(why, whylen, "malformed receipt: not a JSON object");
        return -1;
    }
    char lid[25];
    int t = jscan_get(js, o, "log_id");
    if (t < 0 || jscan_str_copy(js, t, lid, sizeof lid) != 24 || !oid_is_valid_hex(lid)) {
        snprintf(why, whylen, "malformed receipt: log_id must be a 24-hex id");
        return -1;
    }
    bson_oid_init_from_string(&it->oid, lid);
    t = jscan_get(js, o, "status");
    if (t >= 0 && jscan_str_eq(js, t, "SENT"))
        it->status = ST_SENT;
    else if (t >= 0 && jscan_str_eq(js, t, "FAILED"))
        it->status = ST_FAILED;
    else if (t >= 0 && jscan_str_eq(js, t, "PENDING"))
        it->status = ST_PENDING;
    else {
        snprintf(why, whylen, "malformed receipt: status must be SENT or FAILED");
        return -1;
    }
    it->vmid[0] = '\0';
    t = jscan_get(js, o, "vendorMsgId");
    if (t >= 0 && js->t[t].type == JSCAN_STRING) {
        size_t n = jscan_str_copy(js, t, it->vmid, sizeof it->vmid);
        if (n == 0 || n == (size_t)-1) {
            snprintf(why, whylen, "malformed receipt: vendorMsgId must be 1-128 characters");
            return -1;
        }
    } else if (t >= 0 && js->t[t].type != JSCAN_NULL) {
        snprintf(why, whylen, "malformed receipt: vendorMsgId must be a string");
        return -1;
    } else if (it->status == ST_SENT) {
        snprintf(why, whylen, "malformed receipt: a SENT receipt needs a vendorMsgId");
        return -1;
    }
    t = jscan_get(js, o, "campaign_id");
    it->has_cid = false;
    if (t >= 0 && js->t[t].type != JSCAN_NULL) {
        char cid[25];
        if (jscan_str_copy(js, t, cid, sizeof cid) != 24 || !oid_is_valid_hex(cid)) {
            snprintf(why, whylen, "malformed receipt: campaign_id must be a 24-hex id");
            return -1;
        }
        bson_oid_init_from_string(&it->cid, cid);
        it->has_cid = true;
    }
    int64_t at;
    t = jscan_get(js, o, "at");
    it->at = t >= 0 && jscan_int(js, t, &at) && at > 0 ? at : time_now_ms();
    t = jscan_get(js, o, "reason");
    if (t >= 0 && js->t[t].type == JSCAN_STRING)
        copy_cut(js, t, it->reason, sizeof it->reason);
    else
        snprintf(it->reason, sizeof it->reason, "%s",
                 it->status == ST_FAILED ? "vendor reported FAILED" : "");
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
    bson_t *upd =
        BCON_NEW("$inc", "{", "sent", BCON_INT64(cc->sent), "failed", BCON_INT64(cc->failed),
                 "pending", BCON_INT64(-(cc->sent + cc->failed)), "}", "$push", "{", "ctoks", "{",
                 "$each", "[", BCON_UTF8(tok), "]", "$slice", BCON_INT32(-1000), "}", "}", "$set",
                 "{", "updatedAt", BCON_DATE_TIME(now), "}");
    bool ok = mongoc_collection_update_one(camps, sel, upd, NULL, NULL, e);
    bson_destroy(sel);
    bson_destroy(upd);
    if (!ok)
        return -1;
    sel = BCON_NEW("_id", BCON_OID(&cc->cid), "status", BCON_UTF8("SENDING"), "fanout_done",
                   BCON_BOOL(true), "pending", "{", "$lte", BCON_INT64(0), "}");
    upd = BCON_NEW("$set", "{", "status", BCON_UTF8("COMPLETED"), "completedAt",
                   BCON_DATE_TIME(now), "updatedAt", BCON_DATE_TIME(now), "}");
    ok = mongoc_collection_update_one(camps, sel, upd, NULL, NULL, e);
    bson_destroy(sel);
    bson_destroy(upd);
    (void)x;
    return ok ? 0 : -1;
}

static int add_count(camp_count **a, size_t *n, size_t *cap, const bson_oid_t *cid, int status)
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
    if (status == ST_SENT)
        (*a)[i].sent++;
    else
        (*a)[i].failed++;
    return 0;
}

static int status_of(const char *s)
{
    return !strcmp(s, "SENT") ? ST_SENT : !strcmp(s, "FAILED") ? ST_FAILED : ST_PENDING;
}

/* ZADD the token and SET its batch's log ids, in one MULTI. 0 or -1. */
static int token_register(receipts_ctx *x, const char *tok, const char *ids, size_t idlen)
{
    const char *p = x->cfg->redis.prefix;
    int ok =
        rconn_append(x->rc, "MULTI") == 0 &&
        rconn_append(x->rc, "ZADD %s{%s}:ctoks %lld %s", p, QUEUE_RECEIPTS,
                     (long long)time_now_ms(), tok) == 0 &&
        rconn_append(x->rc, "SET %s{%s}:ctok:%s %b", p, QUEUE_RECEIPTS, tok, ids, idlen) == 0 &&
        rconn_append(x->rc, "EXEC") == 0;
    for (int i = 0; ok && i < 4; i++) {
        redisReply *r;
        if (rconn_get_reply(x->rc, &r) != 0) {
            ok = 0;
            break;
        }
        if (r->type == REDIS_REPLY_ERROR || (i == 3 && r->type != REDIS_REPLY_ARRAY))
            ok = 0;
        freeReplyObject(r);
    }
    if (!ok)
        log_warn("receipts.redis_error", "detail=\"%s\"", rconn_error(x->rc));
    return ok ? 0 : -1;
}

/* The token is settled: ZREM it and DEL its ids (best effort: a leftover token is recovered,
 * i.e. recounted under its guard, which counts nothing twice). */
static void token_forget(receipts_ctx *x, const char *tok)
{
    const char *p = x->cfg->redis.prefix;
    if (rconn_append(x->rc, "ZREM %s{%s}:ctoks %s", p, QUEUE_RECEIPTS, tok) != 0 ||
        rconn_append(x->rc, "DEL %s{%s}:ctok:%s", p, QUEUE_RECEIPTS, tok) != 0)
        return;
    for (int i = 0; i < 2; i++) {
        redisReply *r;
        if (rconn_get_reply(x->rc, &r) != 0)
            return;
        freeReplyObject(r);
    }
}

/* Job fates, by position in the batch. */
enum { JOB_ACK = 0, JOB_DEAD = 1 };

int receipts_apply_batch(receipts_ctx *x, const queue_batch *b)
{
    int rc = -1;
    size_t nb = b->n ? b->n : 1;
    jscan *js = calloc(nb, sizeof *js);  /* one token array per job (tokens point into it) */
    unsigned char *fate = calloc(nb, 1); /* JOB_* (JOB_DEAD: already dead-lettered whole) */
    queue_job *acks = calloc(nb, sizeof *acks);
    /* Scan every job first (lib/jscan): the item array holds every receipt of every job. */
    size_t cap = 0;
    for (size_t i = 0; js && i < b->n; i++) {
        if (jscan_parse(&js[i], b->jobs[i].data, b->jobs[i].len) != 0) {
            cap++;
            continue;
        }
        int arr = js[i].t[0].type == JSCAN_OBJECT ? jscan_get(&js[i], 0, "receipts") : -1;
        cap += arr >= 0 && js[i].t[arr].type == JSCAN_ARRAY ? js[i].t[arr].count : 1;
    }
    x->last_receipts = cap;
    item *items = calloc(cap ? cap : 1, sizeof *items);
    part_list parts = {0};
    camp_count *counts = NULL;
    size_t nitems = 0, ncounts = 0, capcounts = 0;
    mongoc_client_t *cl = NULL;
    mongoc_collection_t *logs = NULL, *camps = NULL;
    mongoc_bulk_operation_t *bulk = NULL;
    bson_t reply = BSON_INITIALIZER;
    bool token_set = false, mongo_failed = false;
    char tok[25];
    bson_error_t e;
    if (!items || !acks || !fate || !js)
        goto out;

    /* 1. parse */
    for (size_t i = 0; i < b->n; i++) {
        char why[256];
        const jscan *j = &js[i];
        const char *whole = NULL;
        int arr = -1;
        if (j->n == 0) {
            snprintf(why, sizeof why, "malformed receipt: not JSON (%s)", j->err);
            whole = why;
        } else if (j->t[0].type == JSCAN_OBJECT && (arr = jscan_get(j, 0, "receipts")) >= 0 &&
                   (j->t[arr].type != JSCAN_ARRAY || j->t[arr].count == 0)) {
            whole = "malformed receipt batch: receipts must be a non-empty array";
        }
        size_t m = arr >= 0 && !whole ? j->t[arr].count : 1;
        int o = arr >= 0 && !whole ? jscan_child(j, arr) : 0;
        for (size_t k = 0; !whole && k < m; k++, o = (int)j->t[o].next) {
            item *it = &items[nitems];
            memset(it, 0, sizeof *it);
            it->job = i;
            it->raw = b->jobs[i].data + j->t[o].start;
            it->rawlen = j->t[o].len;
            it->part = arr >= 0;
            if (parse_receipt(j, o, it, why, sizeof why) != 0) {
                if (!it->part) {
                    whole = why;
                    break;
                }
                if (part_add(&parts, it->raw, it->rawlen, why) != 0)
                    goto out;
                x->dead++;
                continue;
            }
            if (it->status == ST_PENDING) { /* a PENDING receipt changes nothing */
                x->noops++;
                continue;
            }
            nitems++;
        }
        if (whole) {
            if (queue_dead(x->q, &b->jobs[i], whole) != 0)
                goto out;
            fate[i] = JOB_DEAD;
            x->dead++;
        }
    }
    if (nitems == 0) {
        rc = 0;
        goto settle;
    }
    qsort(items, nitems, sizeof *items, cmp_item_oid);
    for (size_t i = 1; i < nitems; i++)
        if (bson_oid_equal(&items[i].oid, &items[i - 1].oid))
            items[i].dup = 1;

    /* 2. token */
    bson_oid_t toid;
    bson_oid_init(&toid, NULL);
    bson_oid_to_string(&toid, tok);
    {
        /* The batch's log ids (24 hex each, concatenated) with the token, for the fence. */
        char *ids = malloc(24 * nitems + 1);
        size_t nid = 0;
        for (size_t i = 0; ids && i < nitems; i++)
            if (!items[i].dup)
                bson_oid_to_string(&items[i].oid, ids + 24 * nid++);
        if (!ids || token_register(x, tok, ids, 24 * nid) != 0) {
            free(ids);
            goto out;
        }
        free(ids);
        token_set = true;
    }

    /* 3. bulk update PENDING -> final */
    cl = dbpool_pop(x->db);
    logs = dbpool_durable_collection(x->db, cl, DB_LOGS);
    camps = dbpool_durable_collection(x->db, cl, DB_CAMPAIGNS);
    int64_t now = time_now_ms();
    size_t nstmt = 0;
    bool all_cids = true;
    {
        bson_t *opts = BCON_NEW("ordered", BCON_BOOL(false));
        bulk = mongoc_collection_create_bulk_operation_with_opts(logs, opts);
        bson_destroy(opts);
        for (size_t i = 0; i < nitems; i++) {
            item *it = &items[i];
            if (it->dup)
                continue;
            bson_t sel = BSON_INITIALIZER, upd = BSON_INITIALIZER, set;
            BSON_APPEND_OID(&sel, "_id", &it->oid);
            BSON_APPEND_UTF8(&sel, "status", "PENDING");
            bson_t fence;
            BSON_APPEND_DOCUMENT_BEGIN(&sel, "fence", &fence);
            BSON_APPEND_UTF8(&fence, "$ne", tok);
            bson_append_document_end(&sel, &fence);
            if (it->has_cid)
                BSON_APPEND_OID(&sel, "campaign_id", &it->cid);
            else
                all_cids = false;
            BSON_APPEND_DOCUMENT_BEGIN(&upd, "$set", &set);
            BSON_APPEND_UTF8(&set, "status", it->status == ST_SENT ? "SENT" : "FAILED");
            if (it->vmid[0])
                BSON_APPEND_UTF8(&set, "vendorMsgId", it->vmid);
            BSON_APPEND_DATE_TIME(&set, "deliveredAt", it->at);
            BSON_APPEND_DATE_TIME(&set, "updatedAt", now);
            BSON_APPEND_UTF8(&set, "ctok", tok);
            if (it->status == ST_FAILED)
                BSON_APPEND_UTF8(&set, "failureReason", it->reason);
            bson_append_document_end(&upd, &set);
            bool ok = mongoc_bulk_operation_update_one_with_opts(bulk, &sel, &upd, NULL, &e);
            bson_destroy(&sel);
            bson_destroy(&upd);
            if (!ok) {
                log_error("receipts.bulk_build", "detail=\"%s\"", e.message);
                goto mongo_fail;
            }
            nstmt++;
        }
        if (!mongoc_bulk_operation_execute(bulk, &reply, &e))
            goto mongo_fail;
    }

    /* 4. which logs did this batch move */
    bson_iter_t rit;
    int64_t matched = -1;
    if (bson_iter_init_find(&rit, &reply, "nMatched") && BSON_ITER_HOLDS_NUMBER(&rit))
        matched = bson_iter_as_int64(&rit);
    if (all_cids && matched == (int64_t)nstmt) {
        /* Every statement matched a PENDING log of the campaign the receipt names: all moved
         * by this batch, nothing to read back. */
        for (size_t i = 0; i < nitems; i++) {
            items[i].found = 1;
            items[i].counted = !items[i].dup;
        }
    } else {
        bson_t filter = BSON_INITIALIZER, in, arr;
        BSON_APPEND_DOCUMENT_BEGIN(&filter, "_id", &in);
        BSON_APPEND_ARRAY_BEGIN(&in, "$in", &arr);
        char k[16];
        for (size_t i = 0, n = 0; i < nitems; i++) {
            if (items[i].dup)
                continue;
            const char *key;
            bson_uint32_to_string((uint32_t)n++, &key, k, sizeof k);
            bson_append_oid(&arr, key, -1, &items[i].oid);
        }
        bson_append_array_end(&in, &arr);
        bson_append_document_end(&filter, &in);
        /* batchSize: the whole answer in the first reply (no getMore round trip). */
        bson_t *opts =
            BCON_NEW("projection", "{", "status", BCON_INT32(1), "campaign_id", BCON_INT32(1),
                     "ctok", BCON_INT32(1), "}", "batchSize", BCON_INT64((int64_t)nitems));
        mongoc_cursor_t *cur = mongoc_collection_find_with_opts(logs, &filter, opts, NULL);
        bson_destroy(opts);
        bson_destroy(&filter);
        const bson_t *doc;
        while (mongoc_cursor_next(cur, &doc)) {
            bson_iter_t iter;
            item key;
            if (!bson_iter_init_find(&iter, doc, "_id") || !BSON_ITER_HOLDS_OID(&iter))
                continue;
            bson_oid_copy(bson_iter_oid(&iter), &key.oid);
            item *it = bsearch(&key, items, nitems, sizeof *items, cmp_item_oid);
            if (!it)
                continue;
            while (it > items && it->dup) /* the first copy of a duplicated id */
                it--;
            it->found = 1;
            const char *dtok = NULL, *st = NULL;
            bson_oid_t dcid;
            bool has_dcid = false;
            if (bson_iter_init_find(&iter, doc, "ctok") && BSON_ITER_HOLDS_UTF8(&iter))
                dtok = bson_iter_utf8(&iter, NULL);
            if (bson_iter_init_find(&iter, doc, "status") && BSON_ITER_HOLDS_UTF8(&iter))
                st = bson_iter_utf8(&iter, NULL);
            if (bson_iter_init_find(&iter, doc, "campaign_id") && BSON_ITER_HOLDS_OID(&iter)) {
                bson_oid_copy(bson_iter_oid(&iter), &dcid);
                has_dcid = true;
            }
            if (it->has_cid && (!has_dcid || !bson_oid_equal(&dcid, &it->cid))) {
                it->mismatch = 1;
                continue;
            }
            if (dtok && st && has_dcid && !strcmp(dtok, tok)) {
                it->counted = 1;
                it->status = status_of(st);
                bson_oid_copy(&dcid, &it->cid);
            }
        }
        bool cerr = mongoc_cursor_error(cur, &e);
        mongoc_cursor_destroy(cur);
        if (cerr)
            goto mongo_fail;
        /* A duplicate shares the fate of its first copy. */
        for (size_t i = 1; i < nitems; i++)
            if (items[i].dup) {
                items[i].found = items[i - 1].found;
                items[i].mismatch = items[i - 1].mismatch;
            }
    }

    /* 5. count per campaign, guarded by the token */
    for (size_t i = 0; i < nitems; i++)
        if (items[i].counted && !items[i].dup &&
            add_count(&counts, &ncounts, &capcounts, &items[i].cid, items[i].status) != 0)
            goto out;
    for (size_t i = 0; i < ncounts; i++)
        if (count_campaign(x, camps, &counts[i], tok, &e) != 0)
            goto mongo_fail;

    /* 6. unknown logs to the DLQ (a whole single-receipt job, or a part of a batch job) */
    for (size_t i = 0; i < nitems; i++) {
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
            if (fate[it->job] != JOB_DEAD) {
                if (queue_dead(x->q, &b->jobs[it->job], why) != 0)
                    goto out;
                fate[it->job] = JOB_DEAD;
            }
        } else if (part_add(&parts, it->raw, it->rawlen, why) != 0) {
            goto out;
        }
        x->dead++;
    }
    rc = 0;
    goto done_mongo;

mongo_fail:
    log_warn("receipts.mongo_error", "batch=%zu detail=\"%s\"", b->n, e.message);
    mongo_failed = true;
    token_set = false; /* keep the token in Redis: receipts_recover counts what was moved */
done_mongo:
    if (token_set)
        token_forget(x, tok);
settle:
    if (mongo_failed) {
        /* Every job not already dead-lettered is retried whole (its malformed parts were not
         * written yet: they are found again on the next attempt). */
        rc = 0;
        for (size_t i = 0; i < b->n; i++)
            if (fate[i] != JOB_DEAD && queue_retry(x->q, &b->jobs[i], e.message) < 0)
                rc = -1;
        goto out;
    }
    if (rc == 0) {
        if (parts.n) {
            if (queue_dead_parts(x->q, parts.text, parts.len, (const char *const *)parts.why,
                                 parts.n) != 0) {
                rc = -1;
                goto out;
            }
        }
        size_t na = 0;
        long long nitems_acked = 0;
        for (size_t i = 0; i < b->n; i++)
            if (fate[i] == JOB_ACK) {
                acks[na++] = b->jobs[i];
                int arr = js[i].n && js[i].t[0].type == JSCAN_OBJECT
                              ? jscan_get(&js[i], 0, "receipts")
                              : -1;
                nitems_acked += arr >= 0 ? (long long)js[i].t[arr].count : 1;
            }
        if (na && queue_ack_items(x->q, acks, na, nitems_acked) != 0)
            rc = -1;
    }
out:
    if (bulk)
        mongoc_bulk_operation_destroy(bulk);
    bson_destroy(&reply);
    if (logs)
        mongoc_collection_destroy(logs);
    if (camps)
        mongoc_collection_destroy(camps);
    if (cl)
        dbpool_push(x->db, cl);
    for (size_t i = 0; js && i < b->n; i++)
        jscan_release(&js[i]);
    free(js);
    free(items);
    free(acks);
    free(fate);
    free(counts);
    part_free(&parts);
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

static int recover_token(receipts_ctx *x, mongoc_collection_t *logs, mongoc_collection_t *camps,
                         const char *tok)
{
    /* Fence first: the batch's logs still PENDING can no longer be moved by a late statement
     * of this token (see "The fence" above); then count what the token did move. */
    bson_t *filter = bson_new();
    int has_ids = token_ids(x, tok, filter);
    if (has_ids < 0) {
        bson_destroy(filter);
        return -1;
    }
    if (has_ids) {
        bson_t *fsel = bson_copy(filter);
        BSON_APPEND_UTF8(fsel, "status", "PENDING");
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
    BSON_APPEND_UTF8(filter, "ctok", tok);
    bson_t *opts =
        BCON_NEW("projection", "{", "status", BCON_INT32(1), "campaign_id", BCON_INT32(1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(logs, filter, opts, NULL);
    bson_destroy(filter);
    bson_destroy(opts);
    camp_count *counts = NULL;
    size_t n = 0, cap = 0;
    const bson_t *doc;
    bson_error_t e;
    int rc = -1;
    while (mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it;
        const char *st = NULL;
        if (bson_iter_init_find(&it, doc, "status") && BSON_ITER_HOLDS_UTF8(&it))
            st = bson_iter_utf8(&it, NULL);
        if (!st || status_of(st) == ST_PENDING)
            continue;
        if (bson_iter_init_find(&it, doc, "campaign_id") && BSON_ITER_HOLDS_OID(&it))
            if (add_count(&counts, &n, &cap, bson_iter_oid(&it), status_of(st)) != 0)
                goto out;
    }
    if (mongoc_cursor_error(cur, &e)) {
        log_warn("receipts.recover_error", "token=%s detail=\"%s\"", tok, e.message);
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        if (count_campaign(x, camps, &counts[i], tok, &e) != 0) {
            log_warn("receipts.recover_error", "token=%s detail=\"%s\"", tok, e.message);
            goto out;
        }
    log_info("receipts.token_recovered", "token=%s campaigns=%zu", tok, n);
    rc = 0;
out:
    mongoc_cursor_destroy(cur);
    free(counts);
    return rc;
}

int receipts_recover(receipts_ctx *x, int64_t min_age_ms)
{
    redisReply *r = rconn_command(x->rc, "ZRANGEBYSCORE %s{%s}:ctoks -inf %lld LIMIT 0 100",
                                  x->cfg->redis.prefix, QUEUE_RECEIPTS,
                                  (long long)(time_now_ms() - min_age_ms));
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        if (r)
            freeReplyObject(r);
        return -1;
    }
    int done = 0;
    if (r->elements) {
        mongoc_client_t *cl = dbpool_pop(x->db);
        mongoc_collection_t *logs = dbpool_durable_collection(x->db, cl, DB_LOGS);
        mongoc_collection_t *camps = dbpool_durable_collection(x->db, cl, DB_CAMPAIGNS);
        for (size_t i = 0; i < r->elements; i++) {
            const char *tok = r->element[i]->str;
            if (!tok || strlen(tok) != 24)
                continue;
            if (recover_token(x, logs, camps, tok) != 0)
                break;
            token_forget(x, tok);
            done++;
        }
        mongoc_collection_destroy(logs);
        mongoc_collection_destroy(camps);
        dbpool_push(x->db, cl);
    }
    freeReplyObject(r);
    return done;
}

/* ---- sweeper ----------------------------------------------------------------------------- */

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
    int64_t now = time_now_ms();
    int64_t cutoff = now - (int64_t)x->cfg->receipts.vendor_timeout_s * 1000;
    mongoc_client_t *cl = dbpool_pop(x->db);
    mongoc_collection_t *logs = dbpool_durable_collection(x->db, cl, DB_LOGS);
    bson_t *filter = BCON_NEW("status", BCON_UTF8("PENDING"), "updatedAt", "{", "$lt",
                              BCON_DATE_TIME(cutoff), "}");
    bson_t *opts = BCON_NEW("limit", BCON_INT64(1000));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(logs, filter, opts, NULL);
    bson_destroy(filter);
    bson_destroy(opts);
    char **sends = NULL, **fails = NULL;
    size_t nsend = 0, nfail = 0, cap = 1000;
    mongoc_bulk_operation_t *bulk = NULL;
    int rc = -1;
    sends = calloc(cap, sizeof *sends);
    fails = calloc(cap, sizeof *fails);
    bson_t *bopts = BCON_NEW("ordered", BCON_BOOL(false));
    bulk = mongoc_collection_create_bulk_operation_with_opts(logs, bopts);
    bson_destroy(bopts);
    const bson_t *doc;
    bson_error_t e;
    size_t nupd = 0;
    if (!sends || !fails)
        goto out;
    while (mongoc_cursor_next(cur, &doc) && nsend + nfail < cap) {
        bson_iter_t it;
        char lid[25], cid[25] = "", uid[25] = "";
        const char *msg = "";
        int64_t resends = 0;
        if (!bson_iter_init_find(&it, doc, "_id") || !BSON_ITER_HOLDS_OID(&it))
            continue;
        bson_oid_t oid;
        bson_oid_copy(bson_iter_oid(&it), &oid);
        bson_oid_to_string(&oid, lid);
        if (bson_iter_init_find(&it, doc, "campaign_id") && BSON_ITER_HOLDS_OID(&it))
            bson_oid_to_string(bson_iter_oid(&it), cid);
        if (bson_iter_init_find(&it, doc, "customer_id") && BSON_ITER_HOLDS_OID(&it))
            bson_oid_to_string(bson_iter_oid(&it), uid);
        if (bson_iter_init_find(&it, doc, "message") && BSON_ITER_HOLDS_UTF8(&it))
            msg = bson_iter_utf8(&it, NULL);
        if (bson_iter_init_find(&it, doc, "resends") && BSON_ITER_HOLDS_NUMBER(&it))
            resends = bson_iter_as_int64(&it);
        json_t *j;
        if (resends >= x->cfg->receipts.max_resends) {
            char reason[120];
            snprintf(reason, sizeof reason, "no delivery receipt after %lld re-sends",
                     (long long)resends);
            j = json_pack("{s:s, s:s, s:n, s:I, s:s}", "log_id", lid, "status", "FAILED",
                          "vendorMsgId", "at", (json_int_t)now, "reason", reason);
            fails[nfail] = j ? json_dumps(j, JSON_COMPACT) : NULL;
            if (fails[nfail])
                nfail++;
        } else {
            j = json_pack("{s:s, s:s, s:s, s:s, s:I}", "log_id", lid, "campaign_id", cid,
                          "customer_id", uid, "message", msg, "resend", (json_int_t)(resends + 1));
            sends[nsend] = j ? json_dumps(j, JSON_COMPACT) : NULL;
            if (sends[nsend])
                nsend++;
        }
        json_decref(j);
        /* Push the clock forward so the log is not swept again before the next timeout. */
        bson_t *sel = BCON_NEW("_id", BCON_OID(&oid), "status", BCON_UTF8("PENDING"));
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
    if (mongoc_cursor_error(cur, &e)) {
        log_warn("receipts.sweep_error", "detail=\"%s\"", e.message);
        goto out;
    }
    /* Push first, then move the clock: a crash in between only means an extra re-send. */
    if (nsend && queue_push_many(x->sends, (const char *const *)sends, NULL, nsend) != 0)
        goto out;
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
    if (nsend || nfail)
        log_info("receipts.swept", "resent=%zu failed=%zu", nsend, nfail);
    rc = (int)(nsend + nfail);
out:
    mongoc_cursor_destroy(cur);
    if (bulk)
        mongoc_bulk_operation_destroy(bulk);
    for (size_t i = 0; sends && i < nsend; i++)
        free(sends[i]);
    for (size_t i = 0; fails && i < nfail; i++)
        free(fails[i]);
    free(sends);
    free(fails);
    mongoc_collection_destroy(logs);
    dbpool_push(x->db, cl);
    return rc;
}
