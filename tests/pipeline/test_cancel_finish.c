/*
 * test_cancel_finish: minicrm-worker finishes a cancel that left logs PENDING (workers/fanout.c
 * fanout_finish_cancels), against a private redis-server and devdb and the real worker.
 *
 * The state a cancel leaves behind in its windows is written directly: a CANCELLED campaign
 * (cancelledAt now, flagged cancelled with lib/campctl as the API's cancel does) whose logs are
 * partly SENT and CANCELLED and partly still PENDING, some of them with no job anywhere (a send
 * job the snapshot saw in a processing list and the consumer then dropped; a fan-out batch
 * that landed after the cancel) and some whose send job sits in a sends consumer's processing
 * list (at the vendor: a live consumer, registered, heartbeating and acking the epoch, as
 * minicrm-vendor-sim does).
 *
 *   - within seconds the worker makes the logs without a job CANCELLED and the counters exact
 *     (sent + failed + cancelled + pending == total, pending == the logs at the vendor), and
 *     leaves the logs at the vendor PENDING;
 *   - a second such campaign whose fan-out holds its lease is left alone until the lease is
 *     gone (a fan-out still writing it), then finished, its total and pending exact again
 *     although its last batch's checkpoint counted the batch twice;
 *   - kill -9 of the worker before the second is finished, a new worker finishes it;
 *   - a campaign cancelled while a live sends consumer has not acked the flag is left alone
 *     until it acks (a send of it could still reach the vendor unseen).
 * test_cancel_finish_shards6 runs the same with queue.shards=6.
 */
#include "campaign.h"
#include "campctl.h"
#include "dbpool.h"
#include "jobs.h"
#include "pipeharness.h"
#include "test.h"
#include "timeutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NSENT = 3, NCANC = 2, NLOST = 30, NVENDOR = 5 };

static pipeh h;
static queue *vend; /* the sends consumer holding the jobs at the vendor */
static queue_batch claimed_a, claimed_b;
static const char *const VCONS = "vendor-sim-test-1";

/* Insert a CANCELLED campaign with NSENT SENT, NCANC CANCELLED and NLOST + NVENDOR PENDING
 * logs, counters exact but for total and pending both `inflate` too high (a fan-out batch whose
 * checkpoint landed after the cancel's recount: its logs counted twice); the PENDING logs' ids
 * into pend (NLOST + NVENDOR). */
static int insert_campaign(bson_oid_t *cid, bson_oid_t *pend, int inflate)
{
    bson_oid_init(cid, NULL);
    int64_t now = time_now_ms();
    int total = NSENT + NCANC + NLOST + NVENDOR;
    bson_t *doc = BCON_NEW(
        "_id", BCON_OID(cid), "name", BCON_UTF8("cancel-finish"), "rules", "{", "min_spend",
        BCON_INT32(1), "}", "message", BCON_NULL, "tags", "[", "]", "status",
        BCON_UTF8("CANCELLED"), "total", BCON_INT64(total + inflate), "pending",
        BCON_INT64(NLOST + NVENDOR + inflate), "sent", BCON_INT64(NSENT), "failed", BCON_INT64(0),
        "cancelled", BCON_INT64(NCANC), "fanout_done", BCON_BOOL(false), "createdAt",
        BCON_DATE_TIME(now), "updatedAt", BCON_DATE_TIME(now), "cancelledAt", BCON_DATE_TIME(now));
    mongoc_collection_t *c = pipeh_coll(&h, DB_CAMPAIGNS);
    bson_error_t e;
    bool ok = mongoc_collection_insert_one(c, doc, NULL, NULL, &e);
    mongoc_collection_destroy(c);
    bson_destroy(doc);
    c = pipeh_coll(&h, DB_LOGS);
    for (int i = 0; ok && i < total; i++) {
        bson_oid_t lid, cust;
        bson_oid_init(&cust, NULL);
        campaign_log_id(cid, &cust, &lid);
        const char *st = i < NSENT ? "SENT" : i < NSENT + NCANC ? "CANCELLED" : "PENDING";
        if (i >= NSENT + NCANC)
            pend[i - NSENT - NCANC] = lid;
        bson_t *l = BCON_NEW("_id", BCON_OID(&lid), "campaign_id", BCON_OID(cid), "customer_id",
                             BCON_OID(&cust), "status", BCON_UTF8(st), "createdAt",
                             BCON_DATE_TIME(now), "updatedAt", BCON_DATE_TIME(now));
        ok = mongoc_collection_insert_one(c, l, NULL, NULL, &e);
        bson_destroy(l);
    }
    mongoc_collection_destroy(c);
    if (!ok)
        fprintf(stderr, "test_cancel_finish: insert: %s\n", e.message);
    return ok ? 0 : -1;
}

/* The API's cancel, its Redis half: flag the campaign cancelled in every key set. */
static int flag_cancelled(const bson_oid_t *cid)
{
    char hex[25], err[256];
    long long ep;
    bson_oid_to_string(cid, hex);
    return campctl_cancel(h.rc, h.env.prefix, hex, &ep, NULL, err, sizeof err);
}

/* Push one send job of campaign cid for logs lids[0..n) and claim it with the test's sends
 * consumer: it sits in that consumer's processing list, at the vendor (the claim into qb). */
static int at_vendor(const bson_oid_t *cid, const bson_oid_t *lids, int n, queue_batch *qb)
{
    char hex[25], lhex[25];
    bson_oid_to_string(cid, hex);
    jobs_send_batch b = {0};
    for (int i = 0; i < n; i++) {
        bson_oid_to_string(&lids[i], lhex);
        jobs_send s = {.log_id = lhex, .message = "hi"};
        if (jobs_send_batch_add(&b, hex, &s) < 0)
            return -1;
    }
    char *job = NULL;
    size_t len = 0;
    int rc = jobs_send_batch_take(&b, &job, &len);
    jobs_send_batch_release(&b);
    if (rc != 0 || queue_push(vend, job, len) != 0) {
        free(job);
        return -1;
    }
    free(job);
    return queue_claim_fresh(vend, 1, 0, qb) == 1 ? 0 : -1;
}

/* What a live sends consumer does between claims: heartbeat and (ack) the epoch it read. */
static void vendor_beat(bool ack)
{
    long long ep = 0;
    if (queue_heartbeat(vend) == 1)
        fprintf(stderr, "test_cancel_finish: the test's sends consumer was reaped\n");
    if (ack && campctl_epoch(h.rc, h.env.prefix, &ep) == 0)
        campctl_ack(h.rc, h.env.prefix, VCONS, ep);
}

static void vendor_turn(void)
{
    vendor_beat(true);
}

static long long count(const bson_oid_t *cid, const char *status)
{
    mongoc_collection_t *c = pipeh_coll(&h, DB_LOGS);
    bson_t *f = BCON_NEW("campaign_id", BCON_OID(cid), "status", BCON_UTF8(status));
    bson_error_t e;
    long long n = mongoc_collection_count_documents(c, f, NULL, NULL, NULL, &e);
    bson_destroy(f);
    mongoc_collection_destroy(c);
    return n;
}

/* Poll (100 ms, the test's consumer taking its turns) until cid has `pending` PENDING logs and
 * its counters say pending == `pending`, at most timeout_ms. */
static bool wait_finished(const bson_oid_t *cid, long long pending, int timeout_ms)
{
    int64_t end = time_mono_ms() + timeout_ms;
    for (;;) {
        vendor_turn();
        ph_campaign pc;
        if (count(cid, "PENDING") == pending && pipeh_read(&h, cid, &pc) == 0 &&
            pc.pending == pending)
            return true;
        if (time_mono_ms() > end)
            return false;
        pipeh_sleep_ms(100);
    }
}

static void check_exact(const bson_oid_t *cid, long long pending)
{
    ph_campaign pc;
    CHECK(pipeh_read(&h, cid, &pc) == 0);
    CHECK_STR_EQ(pc.status, "CANCELLED");
    CHECK_INT_EQ(pc.sent + pc.failed + pc.cancelled + pc.pending, pc.total);
    CHECK_INT_EQ(pc.total, NSENT + NCANC + NLOST + NVENDOR);
    CHECK_INT_EQ(pc.pending, pending);
    CHECK_INT_EQ(pc.sent, NSENT);
    CHECK_INT_EQ(pc.cancelled, NSENT + NCANC + NLOST + NVENDOR - NSENT - pending);
    CHECK_INT_EQ(count(cid, "PENDING"), pending);
    CHECK_INT_EQ(count(cid, "CANCELLED"), pc.cancelled);
}

TEST(worker_finishes_cancel_keeps_logs_at_vendor)
{
    char err[256];
    vend = queue_open(h.rc, h.env.prefix, QUEUE_SENDS, VCONS, NULL, err, sizeof err);
    CHECK_MSG(vend != NULL, "%s", err);
    CHECK_INT_EQ(queue_register(vend), 0);
    vendor_turn();

    bson_oid_t a, b, pa[NLOST + NVENDOR], pb[NLOST + NVENDOR];
    CHECK(insert_campaign(&a, pa, 0) == 0);
    CHECK(insert_campaign(&b, pb, NLOST) == 0);
    CHECK_INT_EQ(flag_cancelled(&a), 0);
    CHECK_INT_EQ(flag_cancelled(&b), 0);
    /* The last NVENDOR PENDING logs of each are at the vendor. */
    CHECK_INT_EQ(at_vendor(&a, pa + NLOST, NVENDOR, &claimed_a), 0);
    CHECK_INT_EQ(at_vendor(&b, pb + NLOST, NVENDOR, &claimed_b), 0);
    /* b's fan-out is still writing it (it holds the lease; its last batch, the NLOST logs, was
     * counted again by its checkpoint after the cancel's recount). */
    char bhex[25];
    bson_oid_to_string(&b, bhex);
    CHECK_INT_EQ(campctl_fanout_beat(h.rc, h.env.prefix, bhex, "fanout-test", 120000),
                 CAMPCTL_CANCELLED);
    vendor_turn();

    static const char *const procs[] = {"--procs", "1", NULL};
    CHECK(pipeh_spawn(&h, PH_WORKER, procs) == 0);
    CHECK_MSG(wait_finished(&a, NVENDOR, 20000),
              "the cancel's PENDING logs without a job were not finished: %lld PENDING; see %s",
              count(&a, "PENDING"), pipeh_logfile(&h, PH_WORKER));
    check_exact(&a, NVENDOR);
    for (int i = NLOST; i < NLOST + NVENDOR; i++) {
        char st[16];
        CHECK(pipeh_wait_log_final(&h, &pa[i], 0, st) != 0); /* still PENDING */
    }
    /* b: leased, left alone through a few passes. */
    for (int i = 0; i < 40; i++) {
        vendor_turn();
        pipeh_sleep_ms(100);
    }
    CHECK_INT_EQ(count(&b, "PENDING"), NLOST + NVENDOR);
    ph_campaign pb0;
    CHECK(pipeh_read(&h, &b, &pb0) == 0);
    CHECK_INT_EQ(pb0.pending, NLOST + NVENDOR + NLOST);

    /* kill -9 of the worker, the fan-out stops (its lease goes), a new worker finishes b. */
    pipeh_kill(&h, PH_WORKER, SIGKILL);
    CHECK_INT_EQ(campctl_fanout_end(h.rc, h.env.prefix, bhex, "fanout-test"), 0);
    CHECK(pipeh_spawn(&h, PH_WORKER, procs) == 0);
    CHECK_MSG(wait_finished(&b, NVENDOR, 20000), "b not finished: %lld PENDING; see %s",
              count(&b, "PENDING"), pipeh_logfile(&h, PH_WORKER));
    check_exact(&b, NVENDOR);
    check_exact(&a, NVENDOR);

    /* The vendor drops a's job (the cancel's hold): its logs, no longer at the vendor, follow. */
    CHECK_INT_EQ(queue_ack(vend, claimed_a.jobs, claimed_a.n), 0);
    CHECK_MSG(wait_finished(&a, 0, 20000), "a's dropped logs not finished: %lld PENDING",
              count(&a, "PENDING"));
    check_exact(&a, 0);
    /* c: cancelled while a live sends consumer has not acked the flag yet (it may still hand a
     * send of c to the vendor): left alone until it acks. */
    bson_oid_t c, pc[NLOST + NVENDOR];
    CHECK(insert_campaign(&c, pc, 0) == 0);
    CHECK_INT_EQ(flag_cancelled(&c), 0);
    for (int i = 0; i < 40; i++) {
        vendor_beat(false);
        pipeh_sleep_ms(100);
    }
    CHECK_INT_EQ(count(&c, "PENDING"), NLOST + NVENDOR);
    CHECK_MSG(wait_finished(&c, 0, 20000), "c not finished once acked: %lld PENDING",
              count(&c, "PENDING"));
    queue_batch_release(&claimed_a);
    queue_batch_release(&claimed_b);
    queue_close(vend);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        TEST_ENTRY(worker_finishes_cancel_keeps_logs_at_vendor),
    };
    const char *sh = getenv("MINICRM_QUEUE_SHARDS");
    if (sh) {
        minicrm_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.queue.shards = (int)strtol(sh, NULL, 10);
        queue_use_config(&cfg);
    }
    if (pipeh_start(&h) != 0) {
        pipeh_stop(&h);
        return 1;
    }
    int rc = test_run_all(__FILE__, cases, sizeof cases / sizeof cases[0], argc, argv);
    pipeh_stop(&h);
    return rc;
}
