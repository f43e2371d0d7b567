/*
 * fanout: see fanout.h for the guarantees.
 *
 * The loop, per batch of at most workers.batch_size matched customers (cursor sorted by _id,
 * filter = the campaign's rules at rules_now AND _id > checkpoint.last_customer_id):
 *   a. render each message (lib/template) and build the log document with its deterministic _id;
 *   b. insert_many unordered; write errors with code 11000 mean "already written" and are fine;
 *   c. queue_push_many the batch's send jobs, JOBS_SENDS_PER_JOB sends each (lib/jobs; one
 *      pipelined round trip);
 *   d. updateOne {_id, checkpoint.last_customer_id: previous} ->
 *        $set checkpoint {last_customer_id, written}, $inc {total: n, pending: n}.
 *      Matching nothing means the checkpoint moved: another worker (this job was reaped and
 *      claimed again) is ahead, or our own earlier checkpoint update timed out and was applied
 *      late. We stop (FANOUT_LOST) and the job is retried, resuming from the checkpoint as it
 *      stands.
 * Steps b-d run on a writer thread (below) while the reader builds the next batch.
 * After the cursor ends: $set fanout_done, then try COMPLETED (pending may already be 0 if all
 * receipts came in during the fan-out).
 */
#include "fanout.h"

#include "campaign.h"
#include "campctl.h"
#include "campevents.h"
#include "jobs.h"

#include "log.h"
#include "queue.h"
#include "rules.h"
#include "signals.h"
#include "template.h"
#include "timeutil.h"
#include "unsub.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Only E11000 write errors in an insert_many reply? */
static bool only_duplicates(const bson_t *reply)
{
    bson_iter_t it, arr;
    if (!bson_iter_init_find(&it, reply, "writeErrors") || !BSON_ITER_HOLDS_ARRAY(&it) ||
        !bson_iter_recurse(&it, &arr))
        return false;
    int n = 0;
    while (bson_iter_next(&arr)) {
        bson_iter_t doc, code;
        if (!BSON_ITER_HOLDS_DOCUMENT(&arr) || !bson_iter_recurse(&arr, &doc) ||
            !bson_iter_find(&doc, "code") || bson_iter_as_int64(&doc) != 11000)
            return false;
        (void)code;
        n++;
    }
    if (bson_iter_init_find(&it, reply, "writeConcernErrors") && BSON_ITER_HOLDS_ARRAY(&it)) {
        uint32_t len;
        const uint8_t *data;
        bson_iter_array(&it, &len, &data);
        if (len > 5)
            return false;
    }
    return n > 0;
}

/* A batch of logs and the send jobs of its sends. The sends are pushed as a few batch jobs
 * (lib/jobs: up to JOBS_SENDS_PER_JOB sends each) rather than one job per message, so Redis, the
 * vendor and the receipts path handle a few hundred messages per queue operation. */
typedef struct batch {
    bson_t **docs;
    size_t n, cap;
    char **jobs; /* closed send jobs */
    size_t *lens;
    size_t njobs, capjobs;
    jobs_send_batch cur; /* the send job being written */
} batch;

static void batch_clear(batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        bson_destroy(b->docs[i]);
    b->n = 0;
    for (size_t i = 0; i < b->njobs; i++)
        free(b->jobs[i]);
    b->njobs = 0;
    jobs_send_batch_reset(&b->cur);
}

static void batch_free(batch *b)
{
    batch_clear(b);
    free(b->docs);
    free(b->jobs);
    free(b->lens);
    jobs_send_batch_release(&b->cur);
}

/* Close the send job being written (if any). 0 or -1 (out of memory). */
static int close_job(batch *b)
{
    if (b->cur.n == 0)
        return 0;
    if (b->njobs == b->capjobs) {
        size_t nc = b->capjobs ? 2 * b->capjobs : 8;
        char **j = realloc(b->jobs, nc * sizeof *j);
        size_t *l = j ? realloc(b->lens, nc * sizeof *l) : NULL;
        if (j)
            b->jobs = j;
        if (!j || !l)
            return -1;
        b->lens = l;
        b->capjobs = nc;
    }
    if (jobs_send_batch_take(&b->cur, &b->jobs[b->njobs], &b->lens[b->njobs]) != 0)
        return -1;
    b->njobs++;
    return 0;
}

/* Append one send to the current send job. 0 or -1 (out of memory). */
static int add_send(batch *b, const char *campaign_hex, const char *log_hex,
                    const char *customer_hex, const char *msg, const char *unsub_url)
{
    jobs_send s = {.log_id = log_hex,
                   .customer_id = customer_hex,
                   .message = msg,
                   .unsubscribe_url = unsub_url};
    int r = jobs_send_batch_add(&b->cur, campaign_hex, &s);
    return r < 0 ? -1 : r == 1 ? close_job(b) : 0;
}

/* Write one batch (steps b-d). Returns FANOUT_DONE (continue), or another result. */
static fanout_result flush(fanout_ctx *x, mongoc_collection_t *logs, mongoc_collection_t *camps,
                           const bson_oid_t *cid, batch *b, bson_oid_t *last, bool *has_last,
                           const bson_oid_t *new_last, long long *written, char *why, size_t wl)
{
    bson_error_t e;
    bson_t reply;
    bson_t *opts = BCON_NEW("ordered", BCON_BOOL(false));
    bool ok = mongoc_collection_insert_many(logs, (const bson_t **)b->docs, b->n, opts, &reply, &e);
    bson_destroy(opts);
    if (!ok && !only_duplicates(&reply)) {
        snprintf(why, wl, "insert logs: %s", e.message);
        bson_destroy(&reply);
        return FANOUT_RETRY;
    }
    bson_destroy(&reply);
    if (close_job(b) != 0) {
        snprintf(why, wl, "out of memory");
        return FANOUT_RETRY;
    }
    if (queue_push_many(x->sends, (const char *const *)b->jobs, b->lens, b->njobs) != 0) {
        snprintf(why, wl, "push sends: %s", queue_error(x->sends));
        return FANOUT_RETRY;
    }
    int64_t now = time_now_ms();
    bson_t *sel =
        *has_last ? BCON_NEW("_id", BCON_OID(cid), "checkpoint.last_customer_id", BCON_OID(last))
                  : BCON_NEW("_id", BCON_OID(cid), "checkpoint.last_customer_id", BCON_NULL);
    bson_t *upd =
        BCON_NEW("$set", "{", "checkpoint", "{", "last_customer_id", BCON_OID(new_last), "written",
                 BCON_INT64(*written + (int64_t)b->n), "}", "updatedAt", BCON_DATE_TIME(now), "}",
                 "$inc", "{", "total", BCON_INT64(b->n), "pending", BCON_INT64(b->n), "}");
    bson_t r2;
    ok = mongoc_collection_update_one(camps, sel, upd, NULL, &r2, &e);
    bson_destroy(sel);
    bson_destroy(upd);
    int64_t matched = 0;
    bson_iter_t it;
    if (ok && bson_iter_init_find(&it, &r2, "matchedCount"))
        matched = bson_iter_as_int64(&it);
    bson_destroy(&r2);
    if (!ok) {
        snprintf(why, wl, "checkpoint: %s", e.message);
        return FANOUT_RETRY;
    }
    if (matched == 0)
        return FANOUT_LOST;
    *written += (long long)b->n;
    x->written += (long long)b->n;
    bson_oid_copy(new_last, last);
    *has_last = true;
    batch_clear(b);
    if (queue_heartbeat(x->campaigns) < 0)
        log_warn("fanout.heartbeat_failed", "detail=\"%s\"", queue_error(x->campaigns));
    /* A batch boundary with the checkpoint written: refresh the lease, stop if flagged. */
    char hex[25];
    bson_oid_to_string(cid, hex);
    int fl = campctl_fanout_beat(x->rc, x->cfg->redis.prefix, hex, x->owner,
                                 x->cfg->queue.heartbeat_ttl_s * 1000);
    if (fl > 0) {
        snprintf(why, wl, "%s", fl == CAMPCTL_PAUSED ? "paused" : "cancelled");
        return FANOUT_HALTED;
    }
    if (fl < 0)
        log_warn("fanout.lease_failed", "campaign=%s", hex);
    return FANOUT_DONE;
}

/* ---- the writer thread ---------------------------------------------------------------------
 * Steps b-d of a batch run on a thread of their own while the reader streams customers and
 * builds the next batch, so the worker's CPU work and the customer getMores overlap the log
 * inserts instead of alternating with them. Batches are written strictly in order (the
 * checkpoint guard needs that); at most two exist at once (one being built, one being written),
 * so memory stays bounded. The writer uses its own MongoDB client and is the only user of the
 * worker's Redis connection while a fan-out runs. */
typedef struct writer {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    batch *pending; /* handed over, not yet taken */
    bson_oid_t pending_last;
    bool busy, quit;
    fanout_result res; /* FANOUT_DONE while every flush succeeded */
    char why[256];
    fanout_ctx *x;
    mongoc_client_t *cl;
    mongoc_collection_t *logs, *camps;
    bson_oid_t cid, last;
    bool has_last;
    long long written;
} writer;

static void *writer_main(void *arg)
{
    writer *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->pending && !w->quit)
            pthread_cond_wait(&w->cv, &w->mu);
        if (!w->pending)
            break;
        batch *b = w->pending;
        bson_oid_t new_last;
        bson_oid_copy(&w->pending_last, &new_last);
        w->pending = NULL;
        w->busy = true;
        bool failed = w->res != FANOUT_DONE;
        pthread_mutex_unlock(&w->mu);
        char why[256] = "";
        fanout_result r = failed ? w->res
                                 : flush(w->x, w->logs, w->camps, &w->cid, b, &w->last,
                                         &w->has_last, &new_last, &w->written, why, sizeof why);
        pthread_mutex_lock(&w->mu);
        if (!failed && r != FANOUT_DONE) {
            w->res = r;
            snprintf(w->why, sizeof w->why, "%s", why);
        }
        batch_clear(b); /* flushed (or given up): the reader may fill it again */
        w->busy = false;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static int writer_start(writer *w, fanout_ctx *x, const bson_oid_t *cid, const bson_oid_t *last,
                        bool has_last, long long written)
{
    memset(w, 0, sizeof *w);
    w->x = x;
    w->res = FANOUT_DONE;
    bson_oid_copy(cid, &w->cid);
    if (has_last)
        bson_oid_copy(last, &w->last);
    w->has_last = has_last;
    w->written = written;
    w->cl = dbpool_pop(x->db);
    w->logs = dbpool_durable_collection(x->db, w->cl, DB_LOGS);
    w->camps = dbpool_durable_collection(x->db, w->cl, DB_CAMPAIGNS);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (pthread_create(&w->th, NULL, writer_main, w) != 0) {
        mongoc_collection_destroy(w->logs);
        mongoc_collection_destroy(w->camps);
        dbpool_push(x->db, w->cl);
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        return -1;
    }
    return 0;
}

/* Wait until the writer holds no batch; its result so far. */
static fanout_result writer_wait_idle(writer *w)
{
    pthread_mutex_lock(&w->mu);
    while (w->pending || w->busy)
        pthread_cond_wait(&w->cv, &w->mu);
    fanout_result r = w->res;
    pthread_mutex_unlock(&w->mu);
    return r;
}

/* Hand over *fill (ending at customer last) and get the writer's idle batch back in *fill.
 * Returns the writer's result so far: anything but FANOUT_DONE means stop reading. */
static fanout_result writer_hand(writer *w, batch **fill, batch **spare, const bson_oid_t *last)
{
    fanout_result r = writer_wait_idle(w);
    if (r != FANOUT_DONE)
        return r;
    pthread_mutex_lock(&w->mu);
    w->pending = *fill;
    bson_oid_copy(last, &w->pending_last);
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    batch *t = *fill;
    *fill = *spare;
    *spare = t;
    return FANOUT_DONE;
}

/* Let the writer finish what it holds, stop it. Returns its result (why filled on failure). */
static fanout_result writer_stop(writer *w, long long *written, char *why, size_t whylen)
{
    writer_wait_idle(w);
    pthread_mutex_lock(&w->mu);
    w->quit = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->th, NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    mongoc_collection_destroy(w->logs);
    mongoc_collection_destroy(w->camps);
    dbpool_push(w->x->db, w->cl);
    *written = w->written;
    if (w->res != FANOUT_DONE)
        snprintf(why, whylen, "%s", w->why);
    return w->res;
}

/* ---- fanout_run, step by step ----------------------------------------------------------- */

/* What a fan-out needs to know about its campaign (loaded once, step 1). */
typedef struct plan {
    bson_oid_t cid;
    const char *hex;
    campaign_status status;
    bool fanout_done;
    char *tpl; /* message template (owned), NULL = the default */
    rules rl;
    int64_t rules_now;
    bson_oid_t last; /* checkpoint: last customer written */
    bool has_last;
    long long written;
    bool unusable;     /* found, but its stored rules cannot be used */
    double rate_per_s; /* the campaign's own send rate (0 = none) */
} plan;

/* Step 1: read the campaign into p. FANOUT_DONE when loaded, else FANOUT_UNKNOWN/RETRY. */
static fanout_result load_plan(mongoc_collection_t *camps, plan *p, char *why, size_t whylen)
{
    fanout_result res = FANOUT_RETRY;
    bson_error_t e;
    bson_t *f = BCON_NEW("_id", BCON_OID(&p->cid));
    bson_t *o = BCON_NEW("projection", "{", "ctoks", BCON_INT32(0), "}");
    mongoc_cursor_t *c = mongoc_collection_find_with_opts(camps, f, o, NULL);
    bson_destroy(f);
    bson_destroy(o);
    const bson_t *doc;
    bool found = mongoc_cursor_next(c, &doc);
    if (!found && mongoc_cursor_error(c, &e)) {
        snprintf(why, whylen, "load campaign: %s", e.message);
        goto out;
    }
    if (!found) {
        snprintf(why, whylen, "unknown campaign %s", p->hex);
        res = FANOUT_UNKNOWN;
        goto out;
    }
    bson_iter_t it;
    p->status = CAMPAIGN_QUEUED;
    if (bson_iter_init_find(&it, doc, "status") && BSON_ITER_HOLDS_UTF8(&it)) {
        uint32_t len;
        const char *st = bson_iter_utf8(&it, &len);
        if (campaign_status_parse(st, len, &p->status) != 0) {
            snprintf(why, whylen, "campaign %s has an unknown status", p->hex);
            res = FANOUT_UNKNOWN;
            goto out;
        }
    }
    if (bson_iter_init_find(&it, doc, "rate_per_s") && BSON_ITER_HOLDS_NUMBER(&it))
        p->rate_per_s = bson_iter_as_double(&it);
    if (bson_iter_init_find(&it, doc, "fanout_done") && BSON_ITER_HOLDS_BOOL(&it))
        p->fanout_done = bson_iter_bool(&it);
    if (bson_iter_init_find(&it, doc, "message") && BSON_ITER_HOLDS_UTF8(&it))
        p->tpl = strdup(bson_iter_utf8(&it, NULL));
    if (bson_iter_init_find(&it, doc, "rules_now") && BSON_ITER_HOLDS_DATE_TIME(&it))
        p->rules_now = bson_iter_date_time(&it);
    else if (bson_iter_init_find(&it, doc, "createdAt") && BSON_ITER_HOLDS_DATE_TIME(&it))
        p->rules_now = bson_iter_date_time(&it);
    memset(&p->rl, 0, sizeof p->rl);
    if (bson_iter_init_find(&it, doc, "rules") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        uint32_t len;
        const uint8_t *data;
        bson_iter_document(&it, &len, &data);
        bson_t rdoc;
        char rerr[200];
        if (!bson_init_static(&rdoc, data, len) ||
            rules_parse_bson(&rdoc, &p->rl, rerr, sizeof rerr) != 0) {
            snprintf(why, whylen, "campaign %s has unusable rules: %s", p->hex, rerr);
            p->unusable = true;
            res = FANOUT_UNKNOWN;
            goto out;
        }
    }
    bson_iter_t cp;
    if (bson_iter_init_find(&it, doc, "checkpoint") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
        bson_iter_recurse(&it, &cp)) {
        while (bson_iter_next(&cp)) {
            if (!strcmp(bson_iter_key(&cp), "last_customer_id") && BSON_ITER_HOLDS_OID(&cp)) {
                bson_oid_copy(bson_iter_oid(&cp), &p->last);
                p->has_last = true;
            } else if (!strcmp(bson_iter_key(&cp), "written")) {
                p->written = bson_iter_as_int64(&cp);
            }
        }
    }
    res = FANOUT_DONE;
out:
    mongoc_cursor_destroy(c);
    return res;
}

/* Step 3: stream the audience from the checkpoint on, render, hand batches to the writer.
 * FANOUT_DONE when every matched customer has its log and send, else the reason to stop. */
static fanout_result stream_audience(fanout_ctx *x, mongoc_collection_t *custs, plan *p, char *why,
                                     size_t whylen)
{
    fanout_result res = FANOUT_RETRY;
    batch b = {0}, b2 = {0};
    /* The campaign's own send rate rides on every send job (lib/jobs) to the vendor's consumer,
     * which enforces it (lib/throttle). */
    b.cur.rate_per_s = b2.cur.rate_per_s = p->rate_per_s;
    writer w;
    bool writing = false, stopped = false;
    bson_error_t e;
    bson_t filter = BSON_INITIALIZER;
    rules_filter(&p->rl, p->rules_now, &filter);
    if (p->has_last) {
        bson_t gt;
        BSON_APPEND_DOCUMENT_BEGIN(&filter, "_id", &gt);
        BSON_APPEND_OID(&gt, "$gt", &p->last);
        bson_append_document_end(&filter, &gt);
    }
    int bs = x->cfg->workers.batch_size;
    /* hint: the _id index serves both the _id > last bound and the order, so no planner sorts
     * the whole audience in memory before the first batch. */
    bson_t *opts =
        BCON_NEW("sort", "{", "_id", BCON_INT32(1), "}", "hint", "{", "_id", BCON_INT32(1), "}",
                 "projection", "{", "name", BCON_INT32(1), "email", BCON_INT32(1), "total_spend",
                 BCON_INT32(1), "}", "batchSize", BCON_INT32(bs));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(custs, &filter, opts, NULL);
    bson_destroy(&filter);
    bson_destroy(opts);
    batch *fill = &b, *spare = &b2;
    b.cap = b2.cap = (size_t)bs;
    b.docs = calloc(b.cap, sizeof *b.docs);
    b2.docs = calloc(b2.cap, sizeof *b2.docs);
    if (!b.docs || !b2.docs) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    if (writer_start(&w, x, &p->cid, &p->last, p->has_last, p->written) != 0) {
        snprintf(why, whylen, "cannot start the writer thread");
        goto out;
    }
    writing = true;
    const bson_t *doc;
    bson_oid_t batch_last;
    char msg[TEMPLATE_MAX_BYTES * 4], chex[25], lhex[25], uurl[UNSUB_URL_MAX + 1];
    const unsub_signer *us = unsub_signer_get(x->cfg);
    int64_t now = time_now_ms();
    fanout_result wr = FANOUT_DONE;
    while (wr == FANOUT_DONE && mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it;
        bson_oid_t uid, lid;
        if (!bson_iter_init_find(&it, doc, "_id") || !BSON_ITER_HOLDS_OID(&it))
            continue;
        bson_oid_copy(bson_iter_oid(&it), &uid);
        template_vars tv = {0};
        if (bson_iter_init_find(&it, doc, "name") && BSON_ITER_HOLDS_UTF8(&it))
            tv.name = bson_iter_utf8(&it, NULL);
        if (bson_iter_init_find(&it, doc, "email") && BSON_ITER_HOLDS_UTF8(&it))
            tv.email = bson_iter_utf8(&it, NULL);
        if (bson_iter_init_find(&it, doc, "total_spend") && BSON_ITER_HOLDS_NUMBER(&it))
            tv.total_spend = bson_iter_as_double(&it);
        if (template_render(p->tpl, &tv, msg, sizeof msg) < 0)
            template_render(NULL, &tv, msg, sizeof msg);
        campaign_log_id(&p->cid, &uid, &lid);
        bson_t *ld = bson_sized_new(128 + strlen(msg));
        campaign_log_append_new(ld, &lid, &p->cid, &uid, msg, now);
        bson_oid_to_string(&lid, lhex);
        bson_oid_to_string(&uid, chex);
        fill->docs[fill->n++] = ld;
        /* The log's one-click unsubscribe link (lib/unsub: two SHA-256 blocks, no I/O). */
        if (!us || unsub_url(us, lhex, uurl, sizeof uurl) < 0)
            uurl[0] = '\0';
        if (add_send(fill, p->hex, lhex, chex, msg, uurl[0] ? uurl : NULL) != 0) {
            snprintf(why, whylen, "out of memory");
            goto out;
        }
        bson_oid_copy(&uid, &batch_last);
        if (fill->n == fill->cap) {
            wr = writer_hand(&w, &fill, &spare, &batch_last);
            now = time_now_ms();
            if (signals_stop_requested()) {
                stopped = true;
                break;
            }
        }
    }
    if (wr == FANOUT_DONE && !stopped && mongoc_cursor_error(cur, &e)) {
        snprintf(why, whylen, "read customers: %s", e.message);
        goto out;
    }
    if (wr == FANOUT_DONE && !stopped && fill->n)
        writer_hand(&w, &fill, &spare, &batch_last);
    writing = false;
    long long written;
    res = writer_stop(&w, &written, why, whylen);
    p->written = written;
    if (res == FANOUT_DONE && stopped)
        res = FANOUT_STOPPED;
out:
    if (writing) {
        long long ignored;
        char ignored_why[8];
        writer_stop(&w, &ignored, ignored_why, sizeof ignored_why);
    }
    mongoc_cursor_destroy(cur);
    batch_free(&b);
    batch_free(&b2);
    return res;
}

/* Publish the webhook events of the moves this worker just made (lib/campevents). A failure
 * only delays them: the entries stay on the campaign and fanout_rescue_events publishes them. */
static void publish_events(fanout_ctx *x, mongoc_collection_t *camps, const bson_oid_t *cid)
{
    char err[256], hex[25];
    if (campevents_flush(camps, x->rc, x->cfg->redis.prefix, cid, err, sizeof err) < 0) {
        bson_oid_to_string(cid, hex);
        log_warn("worker.events_deferred", "campaign=%s detail=\"%s\"", hex, err);
    }
}

int fanout_rescue_events(fanout_ctx *x)
{
    char err[256];
    mongoc_client_t *cl = dbpool_pop(x->db);
    mongoc_collection_t *camps = dbpool_durable_collection(x->db, cl, DB_CAMPAIGNS);
    int n = campevents_rescue(camps, x->rc, x->cfg->redis.prefix, FANOUT_EVENTS_RESCUE_MS, err,
                              sizeof err);
    if (n < 0)
        log_warn("worker.events_rescue_failed", "detail=\"%s\"", err);
    else if (n > 0)
        log_info("worker.events_rescued", "events=%d", n);
    mongoc_collection_destroy(camps);
    dbpool_push(x->db, cl);
    return n;
}

fanout_result fanout_run(fanout_ctx *x, const char *campaign_hex, char *why, size_t whylen)
{
    fanout_result res = FANOUT_RETRY;
    plan p = {.hex = campaign_hex, .rules_now = time_now_ms()};
    bson_error_t e;
    if (!oid_is_valid_hex(campaign_hex)) {
        snprintf(why, whylen, "campaign_id must be a 24-hex id");
        return FANOUT_UNKNOWN;
    }
    bson_oid_init_from_string(&p.cid, campaign_hex);
    mongoc_client_t *cl = dbpool_pop(x->db);
    mongoc_collection_t *camps = dbpool_durable_collection(x->db, cl, DB_CAMPAIGNS);
    mongoc_collection_t *custs = dbpool_collection(x->db, cl, DB_CUSTOMERS);

    /* 0. the lease (before the load: a pause that came first is seen here or in MongoDB) */
    int fl = campctl_fanout_beat(x->rc, x->cfg->redis.prefix, campaign_hex, x->owner,
                                 x->cfg->queue.heartbeat_ttl_s * 1000);
    if (fl < 0) {
        snprintf(why, whylen, "fan-out lease: %s", rconn_error(x->rc));
        res = FANOUT_RETRY;
        goto out;
    }
    if (fl > 0) {
        res = FANOUT_HALTED;
        goto out;
    }

    /* 1. load the campaign; one that can never start leaves QUEUED with the reason */
    if ((res = load_plan(camps, &p, why, whylen)) != FANOUT_DONE) {
        if (res == FANOUT_UNKNOWN && p.unusable && p.status == CAMPAIGN_QUEUED &&
            campaign_cancel_unsendable(camps, &p.cid, why, time_now_ms(), &e) != 0) {
            snprintf(why, whylen, "cancel unsendable campaign: %s", e.message);
            res = FANOUT_RETRY;
        } else if (res == FANOUT_UNKNOWN && p.unusable && p.status == CAMPAIGN_QUEUED) {
            publish_events(x, camps, &p.cid);
        }
        goto out;
    }
    if (p.status == CAMPAIGN_PAUSED || p.status == CAMPAIGN_CANCELLED) {
        log_info("fanout.not_runnable", "campaign=%s status=%s", campaign_hex,
                 campaign_status_name(p.status));
        res = FANOUT_HALTED;
        goto out;
    }
    if (campaign_status_final(p.status) || p.fanout_done) {
        /* A re-run after "fanout_done" was written but the completion check that follows it
         * failed (e.g. MongoDB timed out in between): that check may be the last one anybody
         * makes, since every receipt may already be counted. Make it again. */
        bool moved = false;
        if (p.fanout_done && p.status == CAMPAIGN_SENDING &&
            campaign_try_complete_moved(camps, &p.cid, &moved, &e) != 0) {
            snprintf(why, whylen, "finish: %s", e.message);
            res = FANOUT_RETRY;
        }
        if (moved)
            publish_events(x, camps, &p.cid);
        goto out;
    }

    /* 2. QUEUED -> SENDING (once) */
    bool started = false;
    if (campaign_mark_sending_moved(camps, &p.cid, time_now_ms(), &started, &e) != 0) {
        snprintf(why, whylen, "set SENDING: %s", e.message);
        res = FANOUT_RETRY;
        goto out;
    }
    if (started)
        publish_events(x, camps, &p.cid);
    log_info("fanout.start", "campaign=%s resume_after=%lld", campaign_hex, p.written);

    /* 3. logs and sends, batch by batch */
    if ((res = stream_audience(x, custs, &p, why, whylen)) != FANOUT_DONE)
        goto out;

    /* 4. done: mark it, and complete at once if every log is already final (or audience 0) */
    bool completed = false;
    if (campaign_mark_fanout_done(camps, &p.cid, time_now_ms(), &e) != 0 ||
        campaign_try_complete_moved(camps, &p.cid, &completed, &e) != 0) {
        snprintf(why, whylen, "finish: %s", e.message);
        res = FANOUT_RETRY;
        goto out;
    }
    if (completed)
        publish_events(x, camps, &p.cid);
    log_info("fanout.done", "campaign=%s logs=%lld", campaign_hex, p.written);
    res = FANOUT_DONE;
out:
    if (res == FANOUT_HALTED)
        log_info("fanout.halted", "campaign=%s logs=%lld", campaign_hex, p.written);
    if (campctl_fanout_end(x->rc, x->cfg->redis.prefix, campaign_hex, x->owner) != 0)
        log_warn("fanout.lease_failed", "campaign=%s", campaign_hex);
    free(p.tpl);
    mongoc_collection_destroy(camps);
    mongoc_collection_destroy(custs);
    dbpool_push(x->db, cl);
    return res;
}

/* ---- the flags' repair ------------------------------------------------------------------ */

/* Stream the _ids of the campaigns matching filter into the repair run as flag, one chunk of
 * CAMPCTL_REPAIR_CHUNK at a time. Takes filter over. 0 or -1. */
static int repair_stream(fanout_ctx *x, mongoc_collection_t *camps, bson_t *filter, int flag,
                         campctl_repair_run *run, size_t *count)
{
    bson_t *o = BCON_NEW("projection", "{", "_id", BCON_INT32(1), "}", "batchSize",
                         BCON_INT32(CAMPCTL_REPAIR_CHUNK));
    mongoc_cursor_t *c = mongoc_collection_find_with_opts(camps, filter, o, NULL);
    bson_destroy(filter);
    bson_destroy(o);
    char ids[CAMPCTL_REPAIR_CHUNK][25];
    const char *ap[CAMPCTL_REPAIR_CHUNK];
    size_t n = 0;
    int rc = 0;
    const bson_t *doc;
    bson_error_t e;
    for (bool more = true; rc == 0 && more;) {
        more = mongoc_cursor_next(c, &doc);
        bson_iter_t it;
        if (more && bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_OID(&it)) {
            bson_oid_to_string(bson_iter_oid(&it), ids[n]);
            ap[n] = ids[n];
            n++;
        }
        if (n == CAMPCTL_REPAIR_CHUNK || (!more && n > 0)) {
            rc = campctl_repair_add(x->rc, x->cfg->redis.prefix, run, flag, ap, n);
            *count += n;
            n = 0;
        }
    }
    if (mongoc_cursor_error(c, &e))
        rc = -1;
    mongoc_cursor_destroy(c);
    return rc;
}

int fanout_repair_flags(fanout_ctx *x)
{
    const char *prefix = x->cfg->redis.prefix;
    /* The epochs first, then MongoDB, then the sets: each key set is repaired only if no move
     * touched it meanwhile (campctl's scripts check its epoch). Every PAUSED campaign, and
     * those CANCELLED within campctl's window (campctl.h says why), streamed in chunks; the
     * paused flags MongoDB did not confirm are dropped only once its whole list was read. */
    campctl_repair_run run;
    if (campctl_repair_begin(x->rc, prefix, &run) != 0)
        return -1;
    mongoc_client_t *cl = dbpool_pop(x->db);
    mongoc_collection_t *camps = dbpool_collection(x->db, cl, DB_CAMPAIGNS);
    size_t np = 0, nc = 0;
    int rc = repair_stream(x, camps,
                           BCON_NEW("status", BCON_UTF8(campaign_status_name(CAMPAIGN_PAUSED))),
                           CAMPCTL_PAUSED, &run, &np);
    if (rc == 0)
        rc = repair_stream(x, camps,
                           BCON_NEW("status", BCON_UTF8(campaign_status_name(CAMPAIGN_CANCELLED)),
                                    "cancelledAt", "{", "$gte",
                                    BCON_DATE_TIME(time_now_ms() - CAMPCTL_CANCEL_REPAIR_WINDOW_MS),
                                    "}"),
                           CAMPCTL_CANCELLED, &run, &nc);
    mongoc_collection_destroy(camps);
    dbpool_push(x->db, cl);
    if (rc == 0)
        rc = campctl_repair_finish(x->rc, prefix, &run);
    campctl_repair_release(&run);
    if (rc > 0)
        log_warn("worker.flags_repaired", "changes=%d paused=%zu cancelled=%zu", rc, np, nc);
    return rc;
}

/* ---- campaigns left without a job --------------------------------------------------------- */

int fanout_rescue_stalled(fanout_ctx *x)
{
    enum { MAXIDS = 100 };
    int after_s = x->cfg->campaigns.rescue_after_s;
    int64_t now = time_now_ms();
    mongoc_client_t *cl = dbpool_pop(x->db);
    mongoc_collection_t *camps = dbpool_collection(x->db, cl, DB_CAMPAIGNS);
    bson_t *f =
        BCON_NEW("status", "{", "$in", "[", BCON_UTF8(campaign_status_name(CAMPAIGN_QUEUED)),
                 BCON_UTF8(campaign_status_name(CAMPAIGN_SENDING)), "]", "}", "fanout_done", "{",
                 "$ne", BCON_BOOL(true), "}", "updatedAt", "{", "$lt",
                 BCON_DATE_TIME(now - (int64_t)after_s * 1000), "}");
    bson_t *o = BCON_NEW("projection", "{", "_id", BCON_INT32(1), "}", "limit", BCON_INT64(MAXIDS));
    mongoc_cursor_t *c = mongoc_collection_find_with_opts(camps, f, o, NULL);
    bson_destroy(f);
    bson_destroy(o);
    char ids[MAXIDS][25];
    size_t n = 0;
    const bson_t *doc;
    bson_error_t e;
    while (n < MAXIDS && mongoc_cursor_next(c, &doc)) {
        bson_iter_t it;
        if (bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_OID(&it))
            bson_oid_to_string(bson_iter_oid(&it), ids[n++]);
    }
    bool failed = mongoc_cursor_error(c, &e);
    mongoc_cursor_destroy(c);
    mongoc_collection_destroy(camps);
    dbpool_push(x->db, cl);
    if (failed)
        return -1;
    int queued = 0;
    for (size_t i = 0; i < n; i++) {
        int leased = campctl_fanout_leased(x->rc, x->cfg->redis.prefix, ids[i]);
        if (leased != 0)
            continue; /* a fan-out is running it (or Redis failed: next round) */
        char job[JOBS_CAMPAIGN_BYTES], once[40];
        int jl = jobs_campaign_encode(ids[i], job, sizeof job);
        if (jl <= 0)
            continue;
        snprintf(once, sizeof once, "rescue:%s", ids[i]);
        const char *jobs[1] = {job};
        size_t lens[1] = {(size_t)jl};
        int r = queue_push_once(x->campaigns, once, 2 * after_s, jobs, lens, 1);
        if (r < 0)
            return -1;
        if (r == 1) {
            log_warn("worker.campaign_rescued",
                     "campaign=%s detail=\"no job and no fan-out "
                     "for %d s: queued again\"",
                     ids[i], after_s);
            queued++;
        }
    }
    return queued;
}

/* ---- cancels left unfinished -------------------------------------------------------------- */

/* Finish the cancel of campaign hex if Redis is quiet for it: its cancelled flag in every key
 * set, no fan-out lease, every live sends consumer acked the current epoch (checked once, not
 * waited for: a busy campaign is left for the next pass). Then the logs not at the vendor
 * become CANCELLED and the counters are recounted, as the API's cancel does. 1 if logs moved,
 * 0 if none did or the campaign was left for later, -1 on error. */
static int finish_cancel(fanout_ctx *x, mongoc_collection_t *camps, mongoc_collection_t *logs,
                         const char *hex)
{
    const char *prefix = x->cfg->redis.prefix;
    char err[256] = "";
    long long epoch = 0;
    if (campctl_fanout_leased(x->rc, prefix, hex) != 0)
        return 0; /* a fan-out runs it (it stops at its next batch), or Redis failed */
    if (campctl_flag_set(x->rc, prefix, hex, CAMPCTL_CANCELLED, err, sizeof err) != 0 ||
        campctl_epoch(x->rc, prefix, &epoch) != 0)
        return -1;
    int w = campctl_wait(x->rc, prefix, hex, epoch, 0, err, sizeof err);
    if (w != 0)
        return w < 0 ? -1 : 0;
    campctl_logs keep = {0};
    bson_oid_t oid;
    bson_oid_init_from_string(&oid, hex);
    bson_error_t e;
    int64_t moved = 0;
    int rc = -1;
    if (campctl_at_vendor(x->rc, prefix, hex, &keep, err, sizeof err) != 0) {
        log_warn("worker.cancel_finish_failed", "campaign=%s detail=\"%s\"", hex, err);
        goto out;
    }
    if (campaign_cancel_logs(logs, &oid, keep.a, keep.n, time_now_ms(), &moved, &e) != 0 ||
        campaign_cancel_recount(camps, logs, &oid, &e) != 0) {
        log_warn("worker.cancel_finish_failed", "campaign=%s detail=\"%s\"", hex, e.message);
        goto out;
    }
    if (moved > 0)
        log_warn("worker.cancel_finished",
                 "campaign=%s logs_cancelled=%lld at_vendor=%zu detail=\"PENDING logs without a "
                 "send at the vendor after the cancel\"",
                 hex, (long long)moved, keep.n);
    rc = moved > 0;
out:
    campctl_logs_release(&keep);
    return rc;
}

int fanout_finish_cancels(fanout_ctx *x)
{
    enum { MAXIDS = FANOUT_FINISH_CANCELS_BATCH };
    int64_t now = time_now_ms();
    int64_t from = now - CAMPCTL_CANCEL_REPAIR_WINDOW_MS;
    if (x->finish_after_ms > from)
        from = x->finish_after_ms;
    mongoc_client_t *cl = dbpool_pop(x->db);
    mongoc_collection_t *camps = dbpool_collection(x->db, cl, DB_CAMPAIGNS);
    mongoc_collection_t *logs = dbpool_collection(x->db, cl, DB_LOGS);
    bson_t *f =
        BCON_NEW("status", BCON_UTF8(campaign_status_name(CAMPAIGN_CANCELLED)), "cancelledAt", "{",
                 "$gt", BCON_DATE_TIME(from), "}", "pending", "{", "$gt", BCON_INT64(0), "}");
    bson_t *o =
        BCON_NEW("projection", "{", "_id", BCON_INT32(1), "cancelledAt", BCON_INT32(1), "}", "sort",
                 "{", "cancelledAt", BCON_INT32(1), "}", "limit", BCON_INT64(MAXIDS));
    mongoc_cursor_t *c = mongoc_collection_find_with_opts(camps, f, o, NULL);
    bson_destroy(f);
    bson_destroy(o);
    char ids[MAXIDS][25];
    size_t n = 0;
    int64_t last = 0;
    const bson_t *doc;
    bson_error_t e;
    while (n < MAXIDS && mongoc_cursor_next(c, &doc)) {
        bson_iter_t it;
        if (bson_iter_init_find(&it, doc, "cancelledAt") && BSON_ITER_HOLDS_DATE_TIME(&it))
            last = bson_iter_date_time(&it);
        if (bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_OID(&it))
            bson_oid_to_string(bson_iter_oid(&it), ids[n++]);
    }
    int rc = mongoc_cursor_error(c, &e) ? -1 : 0;
    mongoc_cursor_destroy(c);
    /* The next pass goes on after the last one seen; a short page starts over. */
    x->finish_after_ms = rc == 0 && n == MAXIDS ? last : 0;
    int finished = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        int r = finish_cancel(x, camps, logs, ids[i]);
        if (r < 0)
            rc = -1;
        else
            finished += r;
    }
    mongoc_collection_destroy(logs);
    mongoc_collection_destroy(camps);
    dbpool_push(x->db, cl);
    return rc < 0 ? -1 : finished;
}

/* ---- the schedule ----------------------------------------------------------------------- */

int fanout_schedule_tick(fanout_ctx *x)
{
    const char *prefix = x->cfg->redis.prefix;
    long long now = time_now_ms(), promoted = 0;
    long long expire_before = now - (long long)x->cfg->campaigns.schedule_expiry_s * 1000;
    redisReply *ex = campctl_schedule_promote(x->rc, prefix, now, expire_before, &promoted);
    if (!ex)
        return -1;
    if (promoted)
        log_info("worker.schedule_promoted", "campaigns=%lld", promoted);
    if (ex->elements) {
        mongoc_client_t *cl = dbpool_pop(x->db);
        mongoc_collection_t *camps = dbpool_collection(x->db, cl, DB_CAMPAIGNS);
        char reason[200];
        snprintf(reason, sizeof reason,
                 "send_at passed more than campaigns.schedule_expiry_s (%d s) before minicrm "
                 "could start it",
                 x->cfg->campaigns.schedule_expiry_s);
        for (size_t i = 0; i < ex->elements; i++) {
            const redisReply *j = ex->element[i];
            char hex[25], why[100];
            bson_oid_t oid;
            bson_error_t e;
            if (j->type != REDIS_REPLY_STRING ||
                jobs_campaign_decode(j->str, j->len, hex, why, sizeof why) != 0) {
                campctl_schedule_remove(x->rc, prefix, j->str, j->len); /* not ours to keep */
                continue;
            }
            bson_oid_init_from_string(&oid, hex);
            if (campaign_expire_scheduled(camps, &oid, reason, time_now_ms(), &e) != 0) {
                log_warn("worker.schedule_error", "campaign=%s detail=\"%s\"", hex, e.message);
                continue; /* stays in the set: tried again next turn */
            }
            log_warn("worker.schedule_expired", "campaign=%s reason=\"%s\"", hex, reason);
            publish_events(x, camps, &oid);
            campctl_schedule_remove(x->rc, prefix, j->str, j->len);
        }
        mongoc_collection_destroy(camps);
        dbpool_push(x->db, cl);
    }
    freeReplyObject(ex);
    return (int)promoted;
}

int fanout_schedule_rebuild(fanout_ctx *x)
{
    mongoc_client_t *cl = dbpool_pop(x->db);
    mongoc_collection_t *camps = dbpool_collection(x->db, cl, DB_CAMPAIGNS);
    bson_t *f = BCON_NEW("status", BCON_UTF8(campaign_status_name(CAMPAIGN_SCHEDULED)));
    bson_t *o = BCON_NEW("projection", "{", "send_at", BCON_INT32(1), "}");
    mongoc_cursor_t *c = mongoc_collection_find_with_opts(camps, f, o, NULL);
    bson_destroy(f);
    bson_destroy(o);
    const bson_t *doc;
    int added = 0;
    bson_error_t e;
    while (mongoc_cursor_next(c, &doc)) {
        bson_iter_t it;
        if (!bson_iter_init_find(&it, doc, "_id") || !BSON_ITER_HOLDS_OID(&it))
            continue;
        char hex[25], job[JOBS_CAMPAIGN_BYTES];
        bson_oid_to_string(bson_iter_oid(&it), hex);
        if (!bson_iter_init_find(&it, doc, "send_at") || !BSON_ITER_HOLDS_DATE_TIME(&it))
            continue;
        int64_t at = bson_iter_date_time(&it);
        int jl = jobs_campaign_encode(hex, job, sizeof job);
        if (jl > 0 &&
            campctl_schedule_add(x->rc, x->cfg->redis.prefix, job, (size_t)jl, at, 'N') == 1)
            added++;
    }
    bool failed = mongoc_cursor_error(c, &e);
    mongoc_cursor_destroy(c);
    mongoc_collection_destroy(camps);
    dbpool_push(x->db, cl);
    if (added)
        log_warn("worker.schedule_rebuilt", "campaigns=%d", added);
    return failed ? -1 : added;
}
