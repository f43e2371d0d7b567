/*
 * minicrm-vendor-sim: the delivery vendor simulator.
 *
 * One single-threaded consumer loop (lib/consumer, in its mode for consumers that hold jobs
 * across turns); per turn:
 *   1. claim send jobs (while fewer than vendor_sim.max_inflight messages wait), decide each
 *      message and put its delivery receipt on the timer heap (timers.c), due after its delay,
 *      and its later events (OPENED, CLICKED, COMPLAINED) on a heap of their own;
 *   2. move every due receipt to the in-memory outbox (events: to the events outbox);
 *   3. POST outbox receipts to the API in batches (JSON array, HMAC-signed, keep-alive),
 *      delivery receipts first, events in POSTs of their own with what is left of the turn's
 *      POSTs, once a full POST of them is waiting, or after at most EVENTS_POST_WAIT_MS, or
 *      when no delivery receipt waits at all; a send job is acknowledged once every receipt
 *      of it has been posted (2xx).
 *
 * Events never travel with delivery receipts: the API puts a POST of nothing but events on the
 * receipt events queue, which the receipts worker drains after the receipts queue, so a
 * delivery receipt never waits behind the events of earlier messages, here or there (with
 * both in one FIFO, a campaign's delivery receipts queued behind ~30% more event receipts;
 * bench/README.md, "Receipt events and delivery latency").
 *
 * Two queues: the priority queue (one-off sends of POST /api/messages) is claimed first at
 * every turn, then the bulk sends queue (lib/consumer's priority queue); a held job remembers
 * which queue it came from and is acked there. The receipts of priority sends wait in an outbox
 * of their own, posted before the bulk one at every turn, in POSTs of their own (to
 * /api/receipts/delivery?lane=priority: the API queues them on the priority receipts queue).
 *
 * A send job is one send {"log_id", "customer_id"?, "campaign_id"?, "message", "vendorMsgId"?}
 * (the API's /api/vendor/send, the sweeper's re-sends) or a fan-out batch {"campaign_id",
 * "sends": [...]}, read with lib/jobs; receipts are written with lib/jobs too. A send that
 * carries a vendorMsgId (the id /api/vendor/send answered) is reported with that id.
 * Receipts echo the campaign_id when the send had one (a real vendor echoes custom arguments),
 * which lets the receipts worker count a batch without reading the logs back.
 *
 * Decisions are idempotent per log_id like a real vendor's idempotency key, without storing
 * anything: decide.c derives vendorMsgId, outcome (SENT with probability
 * vendor_sim.success_rate, else FAILED) and delay (uniform in [min_delay_ms, max_delay_ms]) from
 * HMAC-SHA256(receipts.vendor_secret, seed + log_id), so a repeated send, on any instance, before
 * or after a restart, gets the same vendorMsgId and outcome. The RNG (xorshift64*, seeded from
 * vendor_sim.seed, 0: the clock) only jitters the POST back-off.
 *
 * Crash safety (kill -9 at any moment loses nothing): the claimed send job itself is the durable
 * record of every receipt still to post. It stays in this instance's processing list
 * (P{sends}:processing:vendor-sim:NAME) until all its receipts were posted; after a crash it is
 * handed back at the next start (the consumer id is stable) or by the reaper when the heartbeat
 * expires, and sent again: same decisions, so at worst some receipts are posted twice, and the
 * receipts worker treats a repeat as a no-op. No per-message Redis write at all: a fan-out batch
 * of 500 messages costs one claim and one ack. Receipts the API refuses for good (4xx other than
 * 401/408/429) are kept in P{vendor}:rejected:NAME before their job is acked, never dropped.
 *
 * Rate limits (lib/throttle, lib/pacer): with vendor.rate_per_s, a job's rate_per_s (its
 * campaign's own) or the 429 switch (fake429.c) set, the sends of a claimed job are not decided
 * at once but handed to the pacer, which decides them (hand_sends) as fast as the shared
 * limiters and the fake vendor allow; the job stays claimed, and counted as held, until all of
 * them were handed and posted, so a kill -9 loses nothing. A job of a campaign that already has
 * more than two seconds of its rate waiting here is deferred (lib/queue queue_defer) until about
 * when that backlog is through, so a slow campaign's jobs never fill the in-flight room that
 * other campaigns need. With none of the three set, nothing changes: no extra Redis call.
 * Each wall-clock second in which paced sends were handed is logged as vendor.handed
 * (second=, sends=), the figure bench_rate counts.
 *
 * SIGTERM/SIGINT: stop claiming, keep delivering what is in flight for up to
 * workers.stop_grace_s, then hand back the jobs still held and exit 0.
 */
#include "campctl.h"
#include "consumer.h"
#include "decide.h"
#include "fake429.h"
#include "jobs.h"
#include "jscan.h"
#include "jsonx.h"
#include "log.h"
#include "pacer.h"
#include "poster.h"
#include "progargs.h"
#include "queue.h"
#include "rconn.h"
#include "signals.h"
#include "throttle.h"
#include "timers.h"
#include "timeutil.h"
#include "unsubscriber.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const progargs_flag flags[] = {
    {"--name", "vendor_sim.name", "instance name (unique per running simulator)"},
    {"--seed", "vendor_sim.seed", "decision seed (with receipts.vendor_secret)"},
    {"--success-rate", "vendor_sim.success_rate", "probability of SENT"},
    {"--min-delay", "vendor_sim.min_delay_ms", "shortest delay, ms"},
    {"--max-delay", "vendor_sim.max_delay_ms", "longest delay, ms"},
    {"--api", "vendor_sim.api_base_url", "API base URL receipts are posted to"},
    {"--redis", "redis.url", "Redis URL"},
};

/* A claimed send job, held until every receipt of it is posted. */
typedef struct vjob {
    queue_job job;    /* the payload as claimed (owned): what the ack removes */
    queue *q;         /* the queue it was claimed from (sends or priority; borrowed) */
    size_t remaining; /* receipts of the job not yet posted */
    size_t sends;     /* sends scheduled from it (the ack counts them as items) */
} vjob;

/* A receipt due or waiting to be posted, with the job it belongs to. */
typedef struct outbox_entry {
    char *receipt;
    vjob *owner;
} outbox_entry;

/* A FIFO of receipts to post: [head, n) of e. */
typedef struct outbox {
    outbox_entry *e;
    size_t head, n, cap;
} outbox;

typedef struct vsim {
    minicrm_config *cfg;
    rconn *rc;
    queue *q;  /* sends (bulk) */
    queue *pq; /* priority: one-off sends, claimed first (lib/consumer) */
    poster *post;
    poster *ppost; /* the same, with ?lane=priority: receipts of priority sends */
    decider *dec;
    vunsub *unsub;         /* recipients pressing one-click unsubscribe (unsubscriber.h) */
    timers heap;           /* delivery receipts (SENT, FAILED, BOUNCED) waiting on their delay */
    timers eheap;          /* later events (OPENED, CLICKED, COMPLAINED) waiting on theirs */
    outbox out;            /* receipts of bulk sends */
    outbox eout;           /* due events, of bulk and priority sends: posted after deliveries */
    int64_t events_due_ms; /* monotonic: when the waiting events are posted even if few */
    outbox pout;           /* receipts of priority sends: posted first, in POSTs of their own */
    vjob **done;           /* fully posted jobs whose ack has not gone through yet */
    size_t ndone, capdone;
    size_t held;    /* jobs claimed and not yet acked */
    double per_job; /* running average of sends per job (sizes the next claim) */
    jscan js;       /* token array reused for every job */
    uint64_t rng;
    char k_rejected[300];
    int64_t next_post_ms;
    int post_backoff_ms;
    long long claimed, fired, posted, rejected; /* totals for progress logs (messages) */
    /* Pause and cancel (lib/campctl): the flags as read before this turn's claim, the epoch
     * acknowledged last, this consumer's processing list and id. */
    campctl_view view;
    long long acked_epoch;
    char k_proc[300];
    char procsuffix[QUEUE_MAX_CONSUMER + 16]; /* "processing:CID", for a job's own shard */
    const char *cons;
    long long held_jobs, dropped_jobs; /* jobs of paused (held) and cancelled (dropped) campaigns */
    /* Rate limits: the shared limiters, the pacer holding sends not yet allowed out, the fake
     * vendor's own limit; sends handed in wall-clock second `sec` (logged once it is over). */
    throttle *thr;
    pacer *pace;
    fake429 f429;
    long long deferred_jobs;
    int64_t sec;
    long sec_handed;
    bool got_jobs; /* a claim of this turn found jobs */
} vsim;

static uint64_t rng_next(vsim *v)
{
    uint64_t x = v->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    v->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static size_t outbox_len(const outbox *o)
{
    return o->n - o->head;
}

/* Receipts waiting to be posted, in every outbox. */
static size_t outbox_total(const vsim *v)
{
    return outbox_len(&v->out) + outbox_len(&v->pout) + outbox_len(&v->eout);
}

/* Events wait in their outbox until a full POST of them is there, or at most this long, or
 * until no delivery receipt is waiting at all: each POST is a round trip of this single
 * thread, and small POSTs of events would slow the claiming of sends. */
#define EVENTS_POST_WAIT_MS 500

/* May the waiting events be posted now? */
static bool events_due(const vsim *v)
{
    size_t n = outbox_len(&v->eout);
    return n > 0 &&
           (n >= (size_t)v->cfg->vendor_sim.post_batch || time_mono_ms() >= v->events_due_ms ||
            (timers_count(&v->heap) == 0 && outbox_len(&v->out) == 0 && outbox_len(&v->pout) == 0 &&
             pacer_waiting(v->pace) == 0));
}

/* Receipts to post now: the outboxes, the events outbox only when its events are due. */
static size_t outbox_ready(const vsim *v)
{
    return outbox_len(&v->out) + outbox_len(&v->pout) + (events_due(v) ? outbox_len(&v->eout) : 0);
}

/* Receipts and events waiting on their delay. */
static size_t timers_total(const vsim *v)
{
    return timers_count(&v->heap) + timers_count(&v->eheap);
}

/* The earliest due time of either heap (INT64_MAX when both are empty). */
static int64_t timers_first_due(const vsim *v)
{
    int64_t a = timers_next_due(&v->heap), b = timers_next_due(&v->eheap);
    return a < b ? a : b;
}

static int outbox_push(outbox *o, char *receipt, vjob *owner)
{
    if (o->n == o->cap) {
        if (o->head > 0) { /* slide the live part down before growing */
            memmove(o->e, o->e + o->head, outbox_len(o) * sizeof *o->e);
            o->n -= o->head;
            o->head = 0;
        }
        if (o->n == o->cap) {
            size_t cap = o->cap ? o->cap * 2 : 4096;
            outbox_entry *g = realloc(o->e, cap * sizeof *g);
            if (!g)
                return -1;
            o->e = g;
            o->cap = cap;
        }
    }
    o->e[o->n++] = (outbox_entry){receipt, owner};
    return 0;
}

static void vjob_free(vjob *j)
{
    if (j) {
        free(j->job.data);
        free(j);
    }
}

/* One receipt of `owner` is settled (posted or kept as rejected). */
static int settle_one(vsim *v, vjob *owner)
{
    if (--owner->remaining > 0)
        return 0;
    if (v->ndone == v->capdone) {
        size_t cap = v->capdone ? v->capdone * 2 : 64;
        vjob **g = realloc(v->done, cap * sizeof *g);
        if (!g)
            return -1;
        v->done = g;
        v->capdone = cap;
    }
    v->done[v->ndone++] = owner;
    return 0;
}

/* Ack the fully posted jobs (one round trip). On failure they stay listed and are acked on a
 * later call; if we crash first, they are sent again and their receipts are repeats. */
static int ack_done(vsim *v)
{
    if (v->ndone == 0)
        return 0;
    queue_job *jobs = calloc(v->ndone, sizeof *jobs);
    if (!jobs)
        return -1;
    /* One round trip per queue the jobs came from (priority jobs are few). */
    queue *qs[2] = {v->q, v->pq};
    int rc = 0;
    for (int k = 0; k < 2 && rc == 0; k++) {
        size_t n = 0;
        long long items = 0;
        for (size_t i = 0; i < v->ndone; i++)
            if (v->done[i]->q == qs[k]) {
                jobs[n++] = v->done[i]->job;
                items += (long long)v->done[i]->sends;
            }
        if (n && queue_ack_items(qs[k], jobs, n, items) != 0) {
            log_warn("vendor.redis_error", "detail=\"%s\"", queue_error(qs[k]));
            rc = -1;
        }
    }
    free(jobs);
    if (rc != 0)
        return -1; /* a repeated ack of the jobs already acked removes nothing */
    for (size_t i = 0; i < v->ndone; i++)
        vjob_free(v->done[i]);
    v->held -= v->ndone;
    v->ndone = 0;
    return 0;
}

/* ---- 1. send jobs -> decisions -> timers ------------------------------------------------ */

/* Put receipt r on heap `t`, due at `due`, as one more receipt of job vj. 0 or -1. */
static int schedule_receipt(timers *t, const jobs_receipt *r, int64_t due, vjob *vj)
{
    jsonx_buf buf = {0};
    if (jobs_receipt_encode(&buf, r) != 0 || timers_push(t, due, buf.data, vj) != 0) {
        jsonx_buf_free(&buf);
        return -1;
    }
    vj->remaining++;
    return 0;
}

/* Decide send `in` of job `vj` and put its receipt (lib/jobs) on the heap, and the later events
 * of a SENT message (OPENED, CLICKED, COMPLAINED, each after its own delay) on the events heap,
 * every one with an event id derived from the message (vendorMsgId ":" event). The receipt
 * carries the vendorMsgId the send was given (the id POST /api/vendor/send answered), else ours.
 * The job is acked once all of them are posted. `counted`: the pacer already counted this send in
 * vj->remaining (one per paced send, before it was handed). 0 scheduled, -1 out of memory / HMAC
 * failure. */
static int schedule_send(vsim *v, const jobs_send_in *in, vjob *vj, int64_t now, bool counted)
{
    decision dc;
    if (decider_decide(v->dec, in->log_id, 24, &dc) != 0) {
        log_warn("vendor.decide_failed", "detail=\"OpenSSL HMAC failed\"");
        return -1;
    }
    int64_t due = now + dc.delay_ms;
    jobs_receipt r;
    memcpy(r.log_id, in->log_id, sizeof r.log_id);
    memcpy(r.campaign_id, in->campaign_id, sizeof r.campaign_id);
    if (in->vendor_msg_id[0])
        memcpy(r.vendor_msg_id, in->vendor_msg_id, strlen(in->vendor_msg_id) + 1);
    else
        memcpy(r.vendor_msg_id, dc.vmid, sizeof dc.vmid);
    r.status = dc.status;
    r.kind = dc.bounced ? JOBS_RCPT_BOUNCED : JOBS_RCPT_DELIVERY;
    r.at = due;
    r.reason[0] = '\0';
    const struct {
        bool on;
        jobs_receipt_kind kind;
        int64_t after;
    } later[] = {{true, r.kind, 0},
                 {dc.opened, JOBS_RCPT_OPENED, dc.open_ms},
                 {dc.clicked, JOBS_RCPT_CLICKED, dc.click_ms},
                 {dc.complained, JOBS_RCPT_COMPLAINED, dc.complaint_ms}};
    for (size_t i = 0; i < sizeof later / sizeof later[0]; i++) {
        if (!later[i].on)
            continue;
        if (i > 0) {
            r.kind = later[i].kind;
            r.status = CAMPAIGN_LOG_PENDING; /* an event moves no status */
            r.at = due + later[i].after;
        }
        snprintf(r.event_id, sizeof r.event_id, "%s:%s", dc.vmid,
                 jobs_receipt_status_name(r.status, r.kind));
        if (schedule_receipt(i > 0 ? &v->eheap : &v->heap, &r, r.at, vj) != 0)
            return -1;
    }
    if (counted)
        vj->remaining--; /* the pacer's advance count; each receipt above counted itself */
    if (in->unsubscribe_url[0] && dc.status == CAMPAIGN_LOG_SENT &&
        vunsub_wants(v->unsub, in->log_id))
        vunsub_add(v->unsub, in->unsubscribe_url);
    return 0;
}

/* ---- rate limits: the pacer's hand-over ----------------------------------------------- */

/* Log the sends handed in the second that is over (when `now_s` is a later one). */
static void count_handed(vsim *v, int64_t now_s, long n)
{
    if (now_s != v->sec) {
        if (v->sec_handed > 0)
            log_info("vendor.handed", "second=%lld sends=%ld", (long long)v->sec, v->sec_handed);
        v->sec = now_s;
        v->sec_handed = 0;
    }
    v->sec_handed += n;
}

/* lib/pacer's hand function: the fake vendor takes what its own limit allows (fake429.c), and
 * those sends are decided and scheduled as usual. */
static int hand_sends(void *arg, void *owner, const jobs_send_in *sends, size_t n, size_t *accepted,
                      int64_t *retry_after_ms)
{
    vsim *v = arg;
    int retry_s = 0;
    int64_t now = time_now_ms();
    if (fake429_offer(&v->f429, now, n, accepted, &retry_s) != 0) {
        log_warn("vendor.redis_error", "detail=\"%s\"", rconn_error(v->rc));
        return -1;
    }
    if (*accepted < n)
        log_info("vendor.answered_429", "refused=%zu retry_after_s=%d", n - *accepted, retry_s);
    *retry_after_ms = (int64_t)retry_s * 1000;
    for (size_t i = 0; i < *accepted; i++) {
        if (schedule_send(v, &sends[i], owner, now, true) != 0) {
            /* Out of memory: the rest is handed again a little later. */
            *accepted = i;
            *retry_after_ms = 200;
            break;
        }
    }
    count_handed(v, now / 1000, (long)*accepted);
    return 0;
}

/* Whether the sends of a job are paced: some limit applies to them. */
static bool paced(const vsim *v, const jobs_reader *rd)
{
    return v->cfg->vendor.rate_per_s > 0 || v->f429.above_per_s > 0 || rd->rate_per_s > 0;
}

/* Take over the claimed jobs of b: schedule their receipts, dead-letter what is malformed.
 * Returns 0, or -1 if something could not be done (the job stays claimed: it is handed back at
 * the next start or by the reaper). Jobs are scanned with lib/jscan (no tree per send). */
static int process_jobs(vsim *v, queue *q, queue_batch *b)
{
    int64_t now = time_now_ms();
    int rc = 0;
    size_t sends = 0;
    for (size_t i = 0; i < b->n; i++) {
        queue_job *qj = &b->jobs[i];
        jobs_reader rd;
        const char *whole = NULL; /* reason when the job as a whole is unusable */
        if (jobs_sends_open(&rd, &v->js, qj->data, qj->len, &whole) != 0 && !rd.batch) {
            if (queue_dead(q, qj, whole) != 0)
                rc = -1;
            continue;
        }
        /* A job of a paused or cancelled campaign is never handed to the vendor: it moves to
         * the campaign's held list, or is dropped, in a script that checks the flag again
         * (a resume may have come in between). A batch job names its campaign; a single send
         * carries its own. */
        if (v->view.npaused + v->view.ncancelled > 0 && !whole) {
            jobs_reader peek = rd;
            jobs_send_in first;
            const char *pw = NULL;
            const char *chex = rd.batch ? rd.campaign_id : NULL;
            if (!chex && jobs_sends_next(&peek, &first, &pw) > 0)
                chex = first.campaign_id;
            if (chex && strlen(chex) == 24 && campctl_view_flag(&v->view, chex) != CAMPCTL_RUN) {
                /* the processing list of the shard the job was claimed from (queue.shards) */
                char kp[300];
                const char *pk =
                    q == v->q ? queue_job_key(q, qj, v->procsuffix, kp, sizeof kp) : v->k_proc;
                int hr = campctl_hold(v->rc, v->cfg->redis.prefix, pk, qj->data, qj->len, chex);
                if (hr < 0) {
                    log_warn("vendor.redis_error", "detail=\"%s\"", rconn_error(v->rc));
                    rc = -1;
                    continue;
                }
                if (hr > 0) {
                    if (hr == CAMPCTL_PAUSED)
                        v->held_jobs++;
                    else
                        v->dropped_jobs++;
                    continue;
                }
            }
        }
        /* A campaign with more than two seconds of its own rate already waiting here: its job
         * waits in the queue's delayed set instead, until about when that backlog is through. */
        if (!whole && rd.batch && rd.rate_per_s > 0 && rd.campaign_id[0]) {
            double backlog = (double)pacer_waiting_campaign(v->pace, rd.campaign_id);
            double room =
                2 * rd.rate_per_s > JOBS_SENDS_PER_JOB ? 2 * rd.rate_per_s : JOBS_SENDS_PER_JOB;
            if (backlog >= room) {
                if (queue_defer(q, qj, now + (int64_t)(backlog / rd.rate_per_s * 1000)) != 0) {
                    log_warn("vendor.redis_error", "detail=\"%s\"", queue_error(q));
                    rc = -1;
                } else {
                    v->deferred_jobs++;
                }
                continue;
            }
        }
        vjob *vj = calloc(1, sizeof *vj);
        if (!vj) {
            rc = -1;
            continue;
        }
        vj->job = *qj; /* the batch gives up the payload: the job owns it (tokens point into it) */
        vj->q = q;
        qj->data = NULL;
        qj->len = 0;
        v->held++;
        /* Malformed sends of a batch job become dead letters of their own (their raw text). */
        size_t cap = whole ? 0 : rd.n;
        const char **dead = calloc(cap ? cap : 1, sizeof *dead);
        size_t *dlen = calloc(cap ? cap : 1, sizeof *dlen);
        const char **dwhy = calloc(cap ? cap : 1, sizeof *dwhy);
        size_t ndead = 0, nsched = 0; /* sends scheduled (each has one receipt or more) */
        int st = dead && dlen && dwhy ? 0 : -1;
        /* Paced sends are copied for the pacer instead of decided now. */
        bool pace = st == 0 && !whole && paced(v, &rd);
        jobs_send_in *pend = pace ? malloc(rd.n * sizeof *pend) : NULL;
        size_t npend = 0;
        if (pace && !pend)
            st = -1;
        jobs_send_in in;
        const char *why = NULL;
        int r;
        while (st == 0 && !whole && (r = jobs_sends_next(&rd, &in, &why)) != 0) {
            if (r > 0 && pace) {
                pend[npend++] = in;
            } else if (r > 0) {
                if (schedule_send(v, &in, vj, now, false) != 0)
                    st = -1;
                else
                    nsched++;
            } else if (!rd.batch) {
                whole = why; /* a single send: the job is the dead letter */
            } else {
                dead[ndead] = rd.raw;
                dlen[ndead] = rd.rawlen;
                dwhy[ndead++] = why;
            }
        }
        if (st == 0 && ndead && queue_dead_parts(q, dead, dlen, dwhy, ndead) != 0) {
            log_warn("vendor.redis_error", "detail=\"%s\"", queue_error(q));
            st = -1;
        }
        free(dead);
        free(dlen);
        free(dwhy);
        if (st == 0 && !whole && npend > 0) {
            /* Counted as to be posted now, handed by the pacer as the limits allow. */
            const char *chex = rd.batch ? rd.campaign_id : pend[0].campaign_id;
            vj->remaining += npend;
            if (pacer_add(v->pace, vj, q == v->pq, chex, rd.rate_per_s, pend, npend) != 0) {
                vj->remaining -= npend;
                st = -1;
            }
            pend = NULL;
        }
        free(pend);
        if (st == 0 && whole) {
            /* Nothing usable in it: the whole job is the dead letter. */
            if (queue_dead(q, &vj->job, whole) != 0)
                rc = -1;
            v->held--;
            vjob_free(vj);
            continue;
        }
        if (st < 0) {
            /* Out of memory or Redis trouble midway: the receipts already on the heap still go
             * out, but the job must not be acked: one extra count keeps it held until the next
             * start hands it back (its sends are then decided again, identically). */
            vj->remaining++;
            rc = -1;
            continue;
        }
        sends += nsched;
        vj->sends = nsched + ndead;
        if (vj->remaining == 0) { /* every send was dead-lettered: nothing left to post */
            vj->remaining = 1;
            if (settle_one(v, vj) != 0)
                rc = -1;
        }
    }
    v->claimed += (long long)sends;
    if (b->n)
        v->per_job = 0.8 * v->per_job + 0.2 * ((double)sends / (double)b->n);
    return rc;
}

/* ---- 2. timers -> outbox ---------------------------------------------------------------- */

/* Move the due entries of heap t to their outbox: events to the events outbox, delivery
 * receipts of priority sends to the priority one, the rest to the bulk one. */
static size_t fire_heap(vsim *v, timers *t, int64_t now)
{
    timer_entry e;
    size_t n = 0;
    while (timers_pop_due(t, now, &e)) {
        const vjob *owner = e.owner;
        outbox *ob = t == &v->eheap ? &v->eout : owner && owner->q == v->pq ? &v->pout : &v->out;
        if (ob == &v->eout && outbox_len(ob) == 0)
            v->events_due_ms = time_mono_ms() + EVENTS_POST_WAIT_MS;
        if (outbox_push(ob, e.payload, e.owner) != 0) {
            /* Out of memory: retry this one shortly. */
            if (timers_push(t, now + 200, e.payload, e.owner) != 0)
                free(e.payload); /* its job is never acked: handed back at the next start */
            break;
        }
        n++;
    }
    return n;
}

static size_t fire_due(vsim *v)
{
    int64_t now = time_now_ms();
    size_t n = fire_heap(v, &v->heap, now) + fire_heap(v, &v->eheap, now);
    v->fired += (long long)n;
    return n;
}

/* ---- 3. outbox -> API ------------------------------------------------------------------- */

/* One POST of up to post_batch receipts. 1 posted, 0 nothing to do / backing off, -1 error. */
static int post_some(vsim *v, outbox *ob)
{
    size_t avail = outbox_len(ob);
    if (avail == 0 || time_mono_ms() < v->next_post_ms)
        return 0;
    size_t n = (size_t)v->cfg->vendor_sim.post_batch;
    if (n > avail)
        n = avail;
    outbox_entry *e = ob->e + ob->head;
    jsonx_buf body = {0};
    jsonx_buf_raw(&body, "[", 1);
    for (size_t i = 0; i < n; i++) {
        if (i)
            jsonx_buf_raw(&body, ",", 1);
        jsonx_buf_cat(&body, e[i].receipt);
    }
    jsonx_buf_raw(&body, "]", 1);
    if (!jsonx_buf_ok(&body)) {
        jsonx_buf_free(&body);
        return -1;
    }
    long status;
    char detail[200];
    poster_result pr = poster_post(ob == &v->pout ? v->ppost : v->post, body.data, body.len,
                                   &status, detail, sizeof detail);
    jsonx_buf_free(&body);
    if (pr == POSTER_RETRY) {
        log_warn("vendor.post_failed", "receipts=%zu detail=\"%s\" retry_in_ms=%d", n, detail,
                 v->post_backoff_ms);
        v->next_post_ms = time_mono_ms() + v->post_backoff_ms / 2 +
                          (int64_t)(rng_next(v) % (uint64_t)(v->post_backoff_ms / 2 + 1));
        v->post_backoff_ms = v->post_backoff_ms * 2 > 10000 ? 10000 : v->post_backoff_ms * 2;
        return 0;
    }
    if (pr == POSTER_REJECTED) {
        /* Keep them before their jobs can be acked; if Redis fails, try the POST again later. */
        log_error("vendor.post_rejected", "receipts=%zu detail=\"%s\" kept_in=%s", n, detail,
                  v->k_rejected);
        const char **argv = calloc(n + 2, sizeof *argv);
        redisReply *r = NULL;
        if (argv) {
            argv[0] = "RPUSH";
            argv[1] = v->k_rejected;
            for (size_t i = 0; i < n; i++)
                argv[2 + i] = e[i].receipt;
            r = rconn_command_argv(v->rc, (int)n + 2, argv, NULL);
            free(argv);
        }
        bool ok = r && r->type == REDIS_REPLY_INTEGER;
        if (r)
            freeReplyObject(r);
        if (!ok) {
            log_warn("vendor.redis_error", "detail=\"%s\"", rconn_error(v->rc));
            return -1;
        }
        v->rejected += (long long)n;
    } else {
        v->posted += (long long)n;
    }
    v->post_backoff_ms = 100;
    int rc = 1;
    for (size_t i = 0; i < n; i++) {
        free(e[i].receipt);
        if (settle_one(v, e[i].owner) != 0)
            rc = -1;
    }
    ob->head += n;
    if (ob->head == ob->n)
        ob->head = ob->n = 0;
    if (ack_done(v) != 0)
        rc = -1;
    return rc;
}

/* ---- the consumer loop's callbacks (lib/consumer) ------------------------------------- */

/* Claim about batch_size messages (bounded by the room left under max_inflight; a fan-out
 * batch job counts as its sends); block only while nothing is due to be posted or acked, and
 * no longer than the next timer. */
static size_t vs_want(void *arg, int *block_ms)
{
    vsim *v = arg;
    /* Before any claim: read the pause/cancel flags (acknowledged in vs_tick, after the claim
     * was checked against them). Without them this turn claims nothing. */
    if (campctl_view_sync(v->rc, v->cfg->redis.prefix, &v->view) != 0) {
        log_warn("vendor.redis_error", "detail=\"%s\"", rconn_error(v->rc));
        return 0;
    }
    size_t inflight = timers_total(v) + outbox_total(v) + pacer_waiting(v->pace);
    size_t max = (size_t)v->cfg->vendor_sim.max_inflight;
    if (inflight >= max)
        return 0;
    int64_t wait = timers_first_due(v) - time_now_ms();
    int64_t pwait = pacer_next_ms(v->pace, time_mono_ms()) - time_mono_ms();
    if (pwait < wait)
        wait = pwait;
    if (outbox_len(&v->eout) > 0 && v->events_due_ms - time_mono_ms() < wait)
        wait = v->events_due_ms - time_mono_ms();
    *block_ms = outbox_ready(v) > 0 || v->ndone > 0 ? 0
                : wait < 0                          ? 0
                : wait > 200                        ? 200
                                                    : (int)wait;
    /* Paced sends waiting: never block in the claim (a blocked BLMOVE wakes at the Redis
     * server's timer resolution, ~100 ms, far coarser than a limiter's wait); vs_tick sleeps
     * until the pacer's next step instead. */
    if (pacer_waiting(v->pace) > 0)
        *block_ms = 0;
    /* Hold about one claim's worth of paced sends, not a whole campaign: the other consumers
     * take their share (and a kill -9 has less to send again). Sends asleep on their own
     * campaign's limit do not count (the deferral in process_jobs bounds those). */
    if (pacer_waiting_ready(v->pace, time_mono_ms()) >= (size_t)v->cfg->vendor_sim.batch_size)
        return 0;
    if (v->cfg->vendor.rate_per_s > 0 || v->f429.above_per_s > 0)
        return 1; /* one job per turn: a first claim must not take a whole campaign */
    size_t room = max - inflight;
    size_t msgs =
        room < (size_t)v->cfg->vendor_sim.batch_size ? room : (size_t)v->cfg->vendor_sim.batch_size;
    size_t want = (size_t)((double)msgs / (v->per_job > 1 ? v->per_job : 1));
    return want ? want : 1;
}

/* The claimed jobs are held (process_jobs takes their payloads over) until their receipts are
 * posted. */
static consumer_result vs_handle(void *arg, queue_batch *b)
{
    vsim *v = arg;
    v->got_jobs = true;
    return process_jobs(v, v->q, b) == 0 ? CONSUMER_OK : CONSUMER_BACKOFF;
}

/* The same for one-off sends claimed from the priority queue. */
static consumer_result vs_handle_priority(void *arg, queue_batch *b)
{
    vsim *v = arg;
    v->got_jobs = true;
    return process_jobs(v, v->pq, b) == 0 ? CONSUMER_OK : CONSUMER_BACKOFF;
}

/* Timers -> outbox -> API, then ack the jobs fully posted. Without a claim this turn (the room
 * is full, or stopping), wait for the next timer (up to 100 ms) when nothing is to be posted. */
static void vs_tick(void *arg, bool claimed)
{
    vsim *v = arg;
    /* Also sleep after a claim that did not block and found nothing while paced sends wait
     * (see vs_want). */
    bool idle = !claimed || (pacer_waiting(v->pace) > 0 && !v->got_jobs);
    v->got_jobs = false;
    if (idle && outbox_ready(v) == 0) {
        int64_t wait = timers_first_due(v) - time_now_ms();
        int64_t pwait = pacer_next_ms(v->pace, time_mono_ms()) - time_mono_ms();
        if (pwait < wait)
            wait = pwait;
        if (outbox_len(&v->eout) > 0 && v->events_due_ms - time_mono_ms() < wait)
            wait = v->events_due_ms - time_mono_ms();
        if (wait > 0) {
            struct timespec ts = {0, (wait > 100 ? 100 : wait) * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    /* Paced sends the limits allow now (priority ones first), then the heap as usual. */
    if (pacer_run(v->pace, time_mono_ms()) < 0)
        log_warn("vendor.redis_error", "detail=\"%s\"", throttle_error(v->thr));
    count_handed(v, time_now_ms() / 1000, 0);
    fire_due(v);
    /* One-off receipts first, each time, so they never wait behind a backlog of bulk ones;
     * then delivery receipts, then events with what is left of the turn's eight POSTs. */
    while (post_some(v, &v->pout) == 1)
        ;
    int budget = 8;
    while (budget > 0 && post_some(v, &v->out) == 1)
        budget--;
    while (budget > 0 && events_due(v) && post_some(v, &v->eout) == 1)
        budget--;
    ack_done(v);
    vunsub_flush(v->unsub, 50);
    if (v->view.epoch >= 0 && v->view.epoch != v->acked_epoch &&
        campctl_ack(v->rc, v->cfg->redis.prefix, v->cons, v->view.epoch) == 0)
        v->acked_epoch = v->view.epoch;
}

static size_t vs_held(void *arg)
{
    return ((vsim *)arg)->held;
}

static void vs_progress(void *arg, char *buf, size_t n)
{
    vsim *v = arg;
    pacer_stats ps;
    pacer_get_stats(v->pace, &ps);
    snprintf(buf, n,
             "claimed=%lld fired=%lld posted=%lld rejected=%lld held_jobs=%zu waiting=%zu "
             "outbox=%zu paused_jobs=%lld cancelled_jobs=%lld paced_waiting=%zu paced_handed=%lld "
             "limit_waits=%lld answered_429=%lld deferred_jobs=%lld",
             v->claimed, v->fired, v->posted, v->rejected, v->held, timers_total(v),
             outbox_total(v), v->held_jobs, v->dropped_jobs, pacer_waiting(v->pace), ps.handed,
             ps.waits, ps.refused429, v->deferred_jobs);
}

static const consumer_ops vendor_ops = {.want = vs_want,
                                        .handle = vs_handle,
                                        .handle_priority = vs_handle_priority,
                                        .tick = vs_tick,
                                        .held = vs_held,
                                        .progress = vs_progress};

int main(int argc, char **argv)
{
    minicrm_config cfg;
    progargs pa;
    int st = prog_start("minicrm-vendor-sim", "[--name N] [--seed S]", argc, argv, flags,
                        sizeof flags / sizeof flags[0], false, &cfg, &pa);
    if (st != 0)
        return st == 1 ? 0 : st;
    int rc = 1;
    char err[256], cid[QUEUE_MAX_CONSUMER];
    vsim v = {.cfg = &cfg, .post_backoff_ms = 100, .acked_epoch = -1, .cons = cid};
    timers_init(&v.heap);
    timers_init(&v.eheap);
    campctl_view_init(&v.view);
    if (cfg.vendor_sim.min_delay_ms > cfg.vendor_sim.max_delay_ms) {
        fprintf(stderr, "minicrm-vendor-sim: vendor_sim.min_delay_ms > max_delay_ms\n");
        rc = 2;
        goto out;
    }
    if (signals_install() != 0)
        goto out;
    v.rng = cfg.vendor_sim.seed ? (uint64_t)cfg.vendor_sim.seed
                                : (uint64_t)time_mono_us() ^ ((uint64_t)getpid() << 32);
    if (!v.rng)
        v.rng = 88172645463325252ULL;
    v.rc = rconn_new(cfg.redis.url, cfg.redis.timeout_ms, err, sizeof err);
    if (!v.rc) {
        fprintf(stderr, "minicrm-vendor-sim: %s\n", err);
        goto out;
    }
    snprintf(cid, sizeof cid, "vendor-sim:%s", cfg.vendor_sim.name);
    queue_opts qo;
    queue_opts_from_config(&qo, &cfg);
    v.q = queue_open(v.rc, cfg.redis.prefix, QUEUE_SENDS, cid, &qo, err, sizeof err);
    v.pq =
        v.q ? queue_open(v.rc, cfg.redis.prefix, QUEUE_PRIORITY, cid, &qo, err, sizeof err) : NULL;
    v.post = poster_new(cfg.vendor_sim.api_base_url, cfg.receipts.vendor_secret,
                        cfg.vendor_sim.post_timeout_ms);
    v.ppost = poster_new_query(cfg.vendor_sim.api_base_url, "lane=priority",
                               cfg.receipts.vendor_secret, cfg.vendor_sim.post_timeout_ms);
    v.thr = throttle_new(v.rc, cfg.redis.prefix);
    v.pace = v.thr ? pacer_new(v.thr, cfg.vendor.rate_per_s, hand_sends, &v) : NULL;
    fake429_init(&v.f429, v.rc, cfg.redis.prefix, cfg.vendor_sim.fake_429_above_per_s);
    v.dec =
        decider_new(cfg.receipts.vendor_secret, cfg.vendor_sim.seed, cfg.vendor_sim.success_rate,
                    cfg.vendor_sim.min_delay_ms, cfg.vendor_sim.max_delay_ms);
    if (v.dec &&
        decider_set_events(v.dec, cfg.vendor_sim.bounce_rate, cfg.vendor_sim.complaint_rate,
                           cfg.vendor_sim.open_rate, cfg.vendor_sim.click_rate) != 0) {
        decider_free(v.dec);
        v.dec = NULL;
    }
    v.unsub = vunsub_new(cfg.receipts.vendor_secret, cfg.vendor_sim.seed,
                         cfg.vendor_sim.unsubscribe_rate, cfg.vendor_sim.post_timeout_ms);
    if (!v.q || !v.pq || !v.post || !v.ppost || !v.dec || !v.pace || !v.unsub) {
        fprintf(stderr, "minicrm-vendor-sim: %s\n",
                !v.q || !v.pq                     ? err
                : !v.post || !v.ppost || !v.unsub ? "cannot set up libcurl"
                : !v.pace                         ? "out of memory"
                                                  : "cannot set up HMAC-SHA256");
        goto out;
    }
    snprintf(v.procsuffix, sizeof v.procsuffix, "processing:%s", cid);
    queue_key(v.q, v.procsuffix, v.k_proc, sizeof v.k_proc);
    snprintf(v.k_rejected, sizeof v.k_rejected, "%s{vendor}:rejected:%s", cfg.redis.prefix,
             cfg.vendor_sim.name);
    /* The consumer loop (lib/consumer) holds jobs across turns: it claims fresh jobs only,
     * takes back at start what a previous run of this instance held (they are sent again), and
     * on SIGTERM keeps delivering for up to workers.shutdown_timeout_s before handing back. */
    v.per_job = 1;
    consumer c;
    consumer_init(&c, &(consumer_opts){.name = "vendor",
                                       .q = v.q,
                                       .priority = v.pq,
                                       .ops = &vendor_ops,
                                       .arg = &v,
                                       .backoff_min_ms = 50,
                                       .backoff_max_ms = 2000,
                                       .progress_ms = 10000,
                                       .holds_jobs = true,
                                       .grace_ms = cfg.workers.shutdown_timeout_s * 1000});
    if (consumer_start(&c) == 0) {
        log_info("vendor.started", "name=%s handed_back=%d", cfg.vendor_sim.name,
                 c.handed_back_at_start);
        consumer_run(&c);
    }
    log_info("vendor.stopped",
             "claimed=%lld fired=%lld posted=%lld handed_back_jobs=%d waiting=%zu outbox=%zu",
             v.claimed, v.fired, v.posted, c.handed_back, timers_total(&v), outbox_total(&v));
    consumer_release(&c);
    rc = 0;
out:
    timers_release(&v.heap);
    timers_release(&v.eheap);
    campctl_view_release(&v.view);
    for (size_t i = v.out.head; i < v.out.n; i++)
        free(v.out.e[i].receipt);
    free(v.out.e);
    for (size_t i = v.pout.head; i < v.pout.n; i++)
        free(v.pout.e[i].receipt);
    free(v.pout.e);
    for (size_t i = v.eout.head; i < v.eout.n; i++)
        free(v.eout.e[i].receipt);
    free(v.eout.e);
    free(v.done);
    jscan_release(&v.js);
    poster_free(v.post);
    poster_free(v.ppost);
    decider_free(v.dec);
    pacer_free(v.pace);
    throttle_free(v.thr);
    vunsub_free(v.unsub);
    queue_close(v.pq);
    queue_close(v.q);
    rconn_free(v.rc);
    cfg_release(&cfg);
    progargs_release(&pa);
    return rc;
}
