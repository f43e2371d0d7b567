/*
 * test_receipt_lanes: receipt events (OPENED, CLICKED, COMPLAINED) travel apart from delivery
 * receipts (SENT, FAILED, BOUNCED), so a delivery never waits behind the events of earlier
 * messages, and the counters stay exact when the vendor simulator and the receipts worker are
 * killed with SIGKILL.
 *
 * The real programs run on private redis-server and minicrm-devdb, the vendor simulator with
 * high event rates. While the receipts worker is not running:
 *   1. the vendor simulator is killed (SIGKILL) once some receipts were posted and events still
 *      wait on its timers, then restarted: the job it held is sent again;
 *   2. once every send job is acknowledged (every receipt of it posted), the receipts queue
 *      holds delivery receipts only, one per log at least, and the receipt events queue holds
 *      events only: exactly the events the vendor's decisions (vendor-sim/decide.c, a pure
 *      function of the log id) give each log, each at least once (a resent job repeats some).
 * Then the receipts worker starts and is killed (SIGKILL) and restarted a few times while it
 * applies both queues; in the end the campaign is COMPLETED, both queues are empty, and
 * sent, failed, bounced, opened, clicked, complained equal the decisions exactly.
 *
 * The lane of the receipts worker (lib/consumer's low lane: the events queue drained after the
 * receipts queue) is checked in order by test_consumer; here, what goes where and the counts.
 */
#include "campaign.h"
#include "dbpool.h"
#include "decide.h"
#include "jobs.h"
#include "jscan.h"
#include "pipeharness.h"
#include "test.h"
#include "timeutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NCUST        600
#define SECRET       "pipeline-test-secret" /* VENDOR_SECRET, as pipeh_start sets it */
#define SUCCESS_RATE 0.85
#define BOUNCE       0.10
#define COMPLAINT    0.10
#define OPEN         0.50
#define CLICK        0.20
#define MIN_DELAY    200
#define MAX_DELAY    1500

static pipeh h;
static unsigned rnd_state = 4242;

/* Depths of queue qname: ready + in flight + delayed into *busy, ready into *ready. 0 or -1. */
static int depth(const char *qname, long long *ready, long long *busy)
{
    queue_stats s;
    char err[200];
    if (queue_stats_get(h.rc, h.env.prefix, qname, &s, err, sizeof err) != 0)
        return -1;
    *ready = s.ready;
    *busy = s.ready + s.inflight + s.delayed;
    return 0;
}

/* What the queued receipts say per log: index by log number (the order of `lids`). */
typedef struct seen {
    bool delivery, opened, clicked, complained;
    int ndelivery;
} seen;

static int find_lid(char (*lids)[25], size_t n, const char *hex)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(lids[i], hex))
            return (int)i;
    return -1;
}

/* Read every job ready in qname; record its receipts in s; count in *wrong the receipts that
 * belong in the other lane (events in the receipts queue, deliveries in the events queue). */
static int read_lane(const char *qname, bool events_lane, char (*lids)[25], size_t n, seen *s,
                     long long *wrong, long long *nreceipts)
{
    redisReply *r = rconn_command(h.rc, "LRANGE %s{%s}:ready 0 -1", h.env.prefix, qname);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        if (r)
            freeReplyObject(r);
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < r->elements && rc == 0; i++) {
        jscan js = {0};
        jobs_reader rd;
        char why[200];
        if (jobs_receipts_open(&rd, &js, r->element[i]->str, r->element[i]->len, why, sizeof why) !=
            0) {
            fprintf(stderr, "  unreadable job in %s: %s\n", qname, why);
            rc = -1;
        }
        jobs_receipt rcpt;
        int got;
        while (rc == 0 && (got = jobs_receipts_next(&rd, &rcpt, why, sizeof why)) != 0) {
            if (got < 0) {
                rc = -1;
                break;
            }
            (*nreceipts)++;
            bool ev = rcpt.kind == JOBS_RCPT_OPENED || rcpt.kind == JOBS_RCPT_CLICKED ||
                      rcpt.kind == JOBS_RCPT_COMPLAINED;
            if (ev != events_lane)
                (*wrong)++;
            int k = find_lid(lids, n, rcpt.log_id);
            if (k < 0)
                continue;
            if (rcpt.kind == JOBS_RCPT_OPENED)
                s[k].opened = true;
            else if (rcpt.kind == JOBS_RCPT_CLICKED)
                s[k].clicked = true;
            else if (rcpt.kind == JOBS_RCPT_COMPLAINED)
                s[k].complained = true;
            else {
                s[k].delivery = true;
                s[k].ndelivery++;
            }
        }
        jscan_release(&js);
    }
    freeReplyObject(r);
    return rc;
}

/* What the vendor decided, counted like the campaign's counters. */
typedef struct counts {
    long long sent, failed, bounced, complained, opened, clicked;
} counts;

TEST(events_apart_from_deliveries_exact_under_kill9)
{
    CHECK(pipeh_spawn(&h, PH_API, NULL) == 0);
    const char *const wargs[] = {"--procs", "1", NULL};
    CHECK(pipeh_spawn(&h, PH_WORKER, wargs) == 0);
    CHECK(pipeh_spawn(&h, PH_VENDOR, NULL) == 0);
    bson_oid_t cid;
    CHECK(pipeh_campaign(&h, "lanes", "{}", &cid) == 0);

    /* 1. Kill the vendor once some delivery receipts were posted (events of those messages
     * still wait on its timers: they come at least MIN_DELAY later). */
    long long ready = 0, busy = 0;
    int64_t deadline = time_mono_ms() + 60000;
    while (time_mono_ms() < deadline && depth(QUEUE_RECEIPTS, &ready, &busy) == 0 && ready < 3)
        pipeh_sleep_ms(10);
    CHECK_MSG(ready >= 3, "no delivery receipt was posted within 60 s");
    pipeh_sleep_ms(pipeh_rand(&rnd_state, 0, 150));
    pipeh_kill(&h, PH_VENDOR, SIGKILL);
    CHECK(pipeh_spawn(&h, PH_VENDOR, NULL) == 0);

    /* 2. Wait until every log is written and every send job acknowledged by the vendor (it
     * acks a job once all its receipts, events included, were posted). */
    ph_campaign pc;
    long long sready = 0, sbusy = 1, pready = 0, pbusy = 0;
    deadline = time_mono_ms() + 120000;
    while (time_mono_ms() < deadline) {
        if (pipeh_read(&h, &cid, &pc) == 0 && pc.fanout_done && pc.total == NCUST &&
            depth(QUEUE_SENDS, &sready, &sbusy) == 0 && sbusy == 0 &&
            depth(QUEUE_PRIORITY, &pready, &pbusy) == 0 && pbusy == 0)
            break;
        pipeh_sleep_ms(50);
    }
    CHECK_MSG(sbusy == 0, "the vendor did not finish its send jobs (%lld left)", sbusy);
    CHECK_INT_EQ(pc.total, NCUST);

    /* The logs and what the vendor decided for each. */
    char(*lids)[25] = calloc(NCUST, sizeof *lids);
    seen *s = calloc(NCUST, sizeof *s);
    CHECK(lids && s);
    size_t nl = 0;
    mongoc_collection_t *logs = pipeh_coll(&h, DB_LOGS);
    bson_t *f = BCON_NEW("campaign_id", BCON_OID(&cid));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(logs, f, NULL, NULL);
    const bson_t *doc;
    while (mongoc_cursor_next(cur, &doc) && nl < NCUST) {
        bson_iter_t it;
        if (bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_OID(&it))
            bson_oid_to_string(bson_iter_oid(&it), lids[nl++]);
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(f);
    mongoc_collection_destroy(logs);
    CHECK_INT_EQ((long long)nl, NCUST);

    /* 3. Each lane holds its own kind only, and together exactly the decided receipts. */
    long long wrong_d = 0, wrong_e = 0, nd = 0, ne = 0;
    CHECK(read_lane(QUEUE_RECEIPTS, false, lids, nl, s, &wrong_d, &nd) == 0);
    CHECK(read_lane(QUEUE_RECEIPT_EVENTS, true, lids, nl, s, &wrong_e, &ne) == 0);
    fprintf(stderr, "  receipts queue: %lld receipts; receipt events queue: %lld receipts\n", nd,
            ne);
    CHECK_MSG(wrong_d == 0, "%lld event receipts travel with the delivery receipts", wrong_d);
    CHECK_MSG(wrong_e == 0, "%lld delivery receipts travel with the events", wrong_e);
    decider *d = decider_new(SECRET, 0, SUCCESS_RATE, MIN_DELAY, MAX_DELAY);
    CHECK(d != NULL);
    CHECK_INT_EQ(decider_set_events(d, BOUNCE, COMPLAINT, OPEN, CLICK), 0);
    counts want = {0};
    long long mismatched = 0, repeats = 0;
    for (size_t i = 0; i < nl; i++) {
        decision dc;
        CHECK_INT_EQ(decider_decide(d, lids[i], 24, &dc), 0);
        if (dc.bounced) {
            want.bounced++;
            want.failed++;
        } else if (dc.status == CAMPAIGN_LOG_SENT) {
            want.sent++;
        } else {
            want.failed++;
        }
        want.opened += dc.opened;
        want.clicked += dc.clicked;
        want.complained += dc.complained;
        repeats += s[i].ndelivery > 1;
        if (!s[i].delivery || s[i].opened != dc.opened || s[i].clicked != dc.clicked ||
            s[i].complained != dc.complained)
            mismatched++;
    }
    decider_free(d);
    fprintf(stderr,
            "  decided: sent %lld failed %lld (bounced %lld) opened %lld clicked %lld "
            "complained %lld; logs with a repeated delivery receipt (resent job): %lld\n",
            want.sent, want.failed, want.bounced, want.opened, want.clicked, want.complained,
            repeats);
    CHECK_MSG(mismatched == 0, "%lld logs lack a decided receipt or have an undecided one",
              mismatched);
    CHECK(want.opened > 0 && want.clicked > 0 && want.complained > 0 && want.bounced > 0);

    /* 4. The receipts worker applies both lanes, killed and restarted a few times. */
    for (int k = 0; k < 4; k++) {
        CHECK(pipeh_spawn(&h, PH_RECEIPTS, NULL) == 0);
        pipeh_sleep_ms(pipeh_rand(&rnd_state, 100, 700));
        pipeh_kill(&h, PH_RECEIPTS, SIGKILL);
    }
    CHECK(pipeh_spawn(&h, PH_RECEIPTS, NULL) == 0);

    /* 5. Exact counters, both lanes empty (the killed consumers' jobs reaped and applied). */
    ph_campaign got = {0};
    long long rb = 1, eb = 1;
    deadline = time_mono_ms() + 120000;
    while (time_mono_ms() < deadline) {
        if (pipeh_read(&h, &cid, &got) == 0 && !strcmp(got.status, "COMPLETED") &&
            got.sent == want.sent && got.failed == want.failed && got.bounced == want.bounced &&
            got.opened == want.opened && got.clicked == want.clicked &&
            got.complained == want.complained && depth(QUEUE_RECEIPTS, &ready, &rb) == 0 &&
            rb == 0 && depth(QUEUE_RECEIPT_EVENTS, &ready, &eb) == 0 && eb == 0)
            break;
        pipeh_sleep_ms(100);
    }
    /* Let anything still in flight land, then read again: nothing may count twice. */
    pipeh_sleep_ms(1500);
    CHECK(pipeh_read(&h, &cid, &got) == 0);
    CHECK_STR_EQ(got.status, "COMPLETED");
    CHECK_INT_EQ(got.sent, want.sent);
    CHECK_INT_EQ(got.failed, want.failed);
    CHECK_INT_EQ(got.bounced, want.bounced);
    CHECK_INT_EQ(got.opened, want.opened);
    CHECK_INT_EQ(got.clicked, want.clicked);
    CHECK_INT_EQ(got.complained, want.complained);
    CHECK_INT_EQ(got.pending, 0);
    CHECK(depth(QUEUE_RECEIPTS, &ready, &rb) == 0 && depth(QUEUE_RECEIPT_EVENTS, &ready, &eb) == 0);
    CHECK_INT_EQ(rb, 0);
    CHECK_INT_EQ(eb, 0);
    free(lids);
    free(s);
}

static const test_case cases[] = {TEST_ENTRY(events_apart_from_deliveries_exact_under_kill9)};

int main(int argc, char **argv)
{
    if (pipeh_start(&h) != 0) {
        fprintf(stderr, "test_receipt_lanes: cannot start services\n");
        pipeh_stop(&h);
        return 1;
    }
    /* After pipeh_start (which sets its own defaults), before the programs start. */
    char v[32];
    snprintf(v, sizeof v, "%g", SUCCESS_RATE);
    setenv("MINICRM_VENDOR_SIM_SUCCESS_RATE", v, 1);
    snprintf(v, sizeof v, "%g", BOUNCE);
    setenv("MINICRM_VENDOR_SIM_BOUNCE_RATE", v, 1);
    snprintf(v, sizeof v, "%g", COMPLAINT);
    setenv("MINICRM_VENDOR_SIM_COMPLAINT_RATE", v, 1);
    snprintf(v, sizeof v, "%g", OPEN);
    setenv("MINICRM_VENDOR_SIM_OPEN_RATE", v, 1);
    snprintf(v, sizeof v, "%g", CLICK);
    setenv("MINICRM_VENDOR_SIM_CLICK_RATE", v, 1);
    setenv("MINICRM_VENDOR_SIM_SEED", "0", 1);
    snprintf(v, sizeof v, "%d", MIN_DELAY);
    setenv("MINICRM_VENDOR_SIM_MIN_DELAY_MS", v, 1);
    snprintf(v, sizeof v, "%d", MAX_DELAY);
    setenv("MINICRM_VENDOR_SIM_MAX_DELAY_MS", v, 1);
    /* small send jobs: the vendor's kill leaves most of the campaign still to come */
    setenv("MINICRM_WORKERS_BATCH_SIZE", "50", 1);
    if (pipeh_seed(&h, NCUST) != 0) {
        pipeh_stop(&h);
        return 1;
    }
    int rc = test_run_all(__FILE__, cases, sizeof cases / sizeof cases[0], argc, argv);
    if (rc != 0)
        fprintf(stderr, "logs of the programs: %s\n", h.env.dir);
    pipeh_stop(&h);
    return rc;
}
