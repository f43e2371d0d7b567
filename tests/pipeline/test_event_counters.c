/*
 * test_event_counters: receipt events (BOUNCED, COMPLAINED, OPENED, CLICKED) mixed with SENT and
 * FAILED give exact campaign counters and every webhook event, although the receipts worker is
 * killed with SIGKILL again and again while they are applied.
 *
 * The real programs run on private redis-server and minicrm-devdb; the vendor simulator
 * produces every event type at high rates (bounce 10%, complaint 5%, open 50%, click 20%),
 * opens and clicks and complaints as later events of their own (which travel on the receipt
 * events queue, applied after the delivery receipts). The receipts worker is killed (and
 * restarted at once; while it holds a batch of events, until that has happened once, then
 * every other kill) until a kill has left behind a counter token whose batch recorded events
 * it did not count (checked in Redis and MongoDB after the kill: the recovery path must do
 * that counting), and a few more times after that.
 *
 * The expected figures do not come from the logs but from the vendor's decisions themselves:
 * vendor-sim/decide.c is a pure function of (secret, seed, log id), so the test computes, for
 * every log of the campaign, whether it bounced, failed, was sent, opened, clicked, complained.
 * Then, once the counters stop moving: sent, failed (bounces included), bounced, complained,
 * opened, clicked equal those figures exactly, the logs carry the matching fields, and the
 * events queue holds exactly one distinct message.failed / message.bounced /
 * contact.complained id per log that should have one (repeats are allowed: ids are
 * deterministic), and the suppressions list holds exactly the bounced and the complaining
 * addresses, with their reasons, their customers flagged.
 *
 * events_through_the_route posts events by hand to POST /api/receipts/delivery, in every
 * shape the route takes (a single receipt, an array, {"receipts": [...]}), for a campaign of
 * two PENDING logs no vendor knows: an OPENED before the log's SENT is kept and counted once,
 * a repeated event id (in a later POST and inside one batch) is a no-op, an unknown event type
 * and an event for an unknown log become dead letters with their reason while the valid
 * events around them apply, a BOUNCED log ends FAILED "bounced" with its message.bounced event
 * (naming the customer's e-mail), a COMPLAINED one gets contact.complained.
 */
#include "campaign.h"
#include "dbpool.h"
#include "decide.h"
#include "hmac.h"
#include "jobs.h"
#include "pipeharness.h"
#include "suppress.h"
#include "test.h"
#include "timeutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NCUST        8000
#define SECRET       "pipeline-test-secret" /* VENDOR_SECRET, as pipeh_start sets it */
#define SUCCESS_RATE 0.85
#define BOUNCE       0.10
#define COMPLAINT    0.05
#define OPEN         0.50
#define CLICK        0.20
#define MIN_DELAY    100
#define MAX_DELAY    1200

static pipeh h;
static unsigned rnd_state = 777;

/* A log whose event (opened, clicked, complained) was recorded by counter token tok carries
 * tok as that event's token (campaign_log_event_token). */
static void moved_by_event_token(bson_t *f, const char *tok)
{
    bson_t ors, o;
    char k[16];
    BSON_APPEND_ARRAY_BEGIN(f, "$or", &ors);
    for (int ev = 0; ev < CAMPAIGN_LOG_EV_COUNT; ev++) {
        snprintf(k, sizeof k, "%d", ev);
        BSON_APPEND_DOCUMENT_BEGIN(&ors, k, &o);
        BSON_APPEND_UTF8(&o, campaign_log_event_token((campaign_log_event)ev), tok);
        bson_append_document_end(&ors, &o);
    }
    bson_append_array_end(f, &ors);
}

typedef struct counts {
    long long sent, failed, bounced, complained, opened, clicked, total;
} counts;

/* Sorted list of event ids (strings of JOBS_EVENT_ID_LEN + 1). */
typedef struct idset {
    char (*id)[JOBS_EVENT_ID_LEN + 1];
    size_t n, cap;
} idset;

static int idset_add(idset *s, const char *id)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        void *g = realloc(s->id, cap * sizeof *s->id);
        if (!g)
            return -1;
        s->id = g;
        s->cap = cap;
    }
    snprintf(s->id[s->n++], JOBS_EVENT_ID_LEN + 1, "%s", id);
    return 0;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Sort and drop repeats. */
static void idset_unique(idset *s)
{
    if (!s->n)
        return;
    qsort(s->id, s->n, sizeof *s->id, cmp_id);
    size_t w = 1;
    for (size_t i = 1; i < s->n; i++)
        if (strcmp(s->id[i], s->id[w - 1]) != 0)
            memcpy(s->id[w++], s->id[i], sizeof *s->id);
    s->n = w;
}

static bool idset_has(const idset *s, const char *id)
{
    return s->n && bsearch(id, s->id, s->n, sizeof *s->id, cmp_id) != NULL;
}

/* The ids of the message and contact events on QUEUE_EVENTS (nothing consumes it in this
 * test; the campaign's own started/completed events are not the receipts worker's), unique.
 * 0 or -1. */
static int queued_events(idset *out)
{
    redisReply *r = rconn_command(h.rc, "LRANGE %s{%s}:ready 0 -1", h.env.prefix, QUEUE_EVENTS);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        if (r)
            freeReplyObject(r);
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < r->elements && rc == 0; i++) {
        jobs_event ev;
        char why[128];
        if (jobs_event_decode(r->element[i]->str, r->element[i]->len, &ev, why, sizeof why) != 0)
            rc = -1;
        else if (strncmp(jobs_event_type_name(ev.type), "campaign.", 9) != 0)
            rc = idset_add(out, ev.id);
    }
    freeReplyObject(r);
    idset_unique(out);
    return rc;
}

TEST(exact_event_counters_under_receipts_kill9)
{
    CHECK(pipeh_start_all(&h) == 0);
    bson_oid_t cid;
    CHECK(pipeh_campaign(&h, "events", "{}", &cid) == 0);
    /* Kill the receipts worker while receipts and events are being applied (the later events
     * keep coming after the last delivery), at least 8 times and until a kill has left an
     * uncounted event token behind. */
    int kills = 0;
    long long stale = 0;
    int64_t deadline = time_mono_ms() + 60000;
    ph_campaign cr;
    while (time_mono_ms() < deadline &&
           !(pipeh_read(&h, &cid, &cr) == 0 && cr.sent + cr.failed > 0))
        pipeh_sleep_ms(10);
    while (kills < 40 && (stale == 0 || kills < 8)) {
        /* Kill a worker that is applying: wait until the counters move after its (re)start
         * (on a loaded box a restarted worker may need a while before its first batch). */
        long long before = cr.sent + cr.failed + cr.opened + cr.clicked + cr.complained;
        int64_t until = time_mono_ms() + 5000;
        while (time_mono_ms() < until && pipeh_read(&h, &cid, &cr) == 0 &&
               cr.sent + cr.failed + cr.opened + cr.clicked + cr.complained == before)
            pipeh_sleep_ms(10);
        /* Events travel apart from deliveries (the receipt events queue, applied after the
         * receipts queue), so most batches hold no event at all: until a kill has left an
         * event token behind, and then every other kill, wait until a batch has recorded
         * events and not counted them yet (what the check after the kill looks for, read
         * while the worker lives: its window lasts a few milliseconds), and kill at once. */
        bool in_events = false;
        until = time_mono_ms() + 5000;
        while ((stale == 0 || kills % 2 == 1) && !in_events && time_mono_ms() < until) {
            in_events = pipeh_stale_tokens(&h, &cid, moved_by_event_token) > 0;
            if (!in_events)
                pipeh_sleep_ms(1);
        }
        if (!in_events)
            pipeh_sleep_ms(pipeh_rand(&rnd_state, 20, 300));
        pipeh_kill(&h, PH_RECEIPTS, SIGKILL);
        kills++;
        long long s = pipeh_stale_tokens(&h, &cid, moved_by_event_token);
        if (s > 0)
            stale += s;
        CHECK(pipeh_start_all(&h) == 0);
    }
    fprintf(stderr, "  %d kills; uncounted event tokens left behind: %lld\n", kills, stale);
    CHECK_MSG(stale > 0, "no kill left an uncounted event token behind in %d kills", kills);

    /* The expected figures, from the vendor's decisions for every log of the campaign. */
    decider *d = decider_new(SECRET, 0, SUCCESS_RATE, MIN_DELAY, MAX_DELAY);
    CHECK(d != NULL);
    CHECK_INT_EQ(decider_set_events(d, BOUNCE, COMPLAINT, OPEN, CLICK), 0);
    counts want = {0};
    idset want_ev = {0};
    mongoc_collection_t *logs = pipeh_coll(&h, DB_LOGS);
    deadline = time_mono_ms() + 60000;
    /* every log written (the fan-out may still run after the kills) */
    while (time_mono_ms() < deadline && !(pipeh_read(&h, &cid, &cr) == 0 && cr.total == NCUST))
        pipeh_sleep_ms(20);
    CHECK_INT_EQ(cr.total, NCUST);
    bson_t *f = BCON_NEW("campaign_id", BCON_OID(&cid));
    bson_t *opts = BCON_NEW("projection", "{", "_id", BCON_INT32(1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(logs, f, opts, NULL);
    const bson_t *doc;
    while (mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it;
        CHECK(bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_OID(&it));
        char hex[25], evid[JOBS_EVENT_ID_LEN + 1];
        bson_oid_to_string(bson_iter_oid(&it), hex);
        decision dc;
        CHECK_INT_EQ(decider_decide(d, hex, 24, &dc), 0);
        want.total++;
        if (dc.status == CAMPAIGN_LOG_SENT)
            want.sent++;
        else
            want.failed++;
        want.bounced += dc.bounced;
        want.opened += dc.opened;
        want.clicked += dc.clicked;
        want.complained += dc.complained;
        if (dc.status == CAMPAIGN_LOG_FAILED) {
            jobs_event_id(dc.bounced ? JOBS_EV_MESSAGE_BOUNCED : JOBS_EV_MESSAGE_FAILED, hex, evid);
            CHECK(idset_add(&want_ev, evid) == 0);
        }
        if (dc.complained) {
            jobs_event_id(JOBS_EV_CONTACT_COMPLAINED, hex, evid);
            CHECK(idset_add(&want_ev, evid) == 0);
        }
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(f);
    bson_destroy(opts);
    decider_free(d);
    idset_unique(&want_ev);
    CHECK_INT_EQ(want.total, NCUST);
    CHECK(want.bounced > 0 && want.complained > 0 && want.opened > 0 && want.clicked > 0);

    /* Poll until the campaign is COMPLETED and every event is counted (the last ones come up
     * to 2 x MAX_DELAY after the last SENT). */
    deadline = time_mono_ms() + 120000;
    bool done = false;
    while (time_mono_ms() < deadline && !done) {
        done = pipeh_read(&h, &cid, &cr) == 0 && !strcmp(cr.status, "COMPLETED") &&
               cr.sent == want.sent && cr.failed == want.failed && cr.bounced == want.bounced &&
               cr.complained == want.complained && cr.opened == want.opened &&
               cr.clicked == want.clicked;
        if (!done)
            pipeh_sleep_ms(50);
    }
    fprintf(stderr,
            "  want sent=%lld failed=%lld bounced=%lld complained=%lld opened=%lld "
            "clicked=%lld\n  have sent=%lld failed=%lld bounced=%lld complained=%lld "
            "opened=%lld clicked=%lld status=%s pending=%lld\n",
            want.sent, want.failed, want.bounced, want.complained, want.opened, want.clicked,
            (long long)cr.sent, (long long)cr.failed, (long long)cr.bounced,
            (long long)cr.complained, (long long)cr.opened, (long long)cr.clicked, cr.status,
            (long long)cr.pending);
    CHECK_MSG(done, "counters did not reach the vendor's figures");
    CHECK_INT_EQ(cr.pending, 0);

    /* The logs carry what the counters say. */
    static const char *const fields[] = {"bounced", "complainedAt", "openedAt", "clickedAt"};
    const long long *wants[] = {&want.bounced, &want.complained, &want.opened, &want.clicked};
    for (int i = 0; i < 4; i++) {
        bson_t *lf = BCON_NEW("campaign_id", BCON_OID(&cid), fields[i], "{", "$exists",
                              BCON_BOOL(true), "}");
        bson_error_t e;
        int64_t n = mongoc_collection_count_documents(logs, lf, NULL, NULL, NULL, &e);
        bson_destroy(lf);
        CHECK_MSG(n == *wants[i], "logs with %s: %lld, want %lld", fields[i], (long long)n,
                  *wants[i]);
    }
    bson_t *bf = BCON_NEW("campaign_id", BCON_OID(&cid), "failureReason", BCON_UTF8("bounced"),
                          "status", BCON_UTF8("FAILED"));
    bson_error_t e;
    CHECK_INT_EQ(mongoc_collection_count_documents(logs, bf, NULL, NULL, NULL, &e), want.bounced);
    bson_destroy(bf);
    mongoc_collection_destroy(logs);

    /* The bounced and complaining addresses are suppressed, with their reason, and flagged. */
    mongoc_collection_t *supps = pipeh_coll(&h, DB_SUPPRESSIONS);
    mongoc_collection_t *custs = pipeh_coll(&h, DB_CUSTOMERS);
    bson_t *sf = BCON_NEW("reason", BCON_UTF8("bounced"));
    CHECK_INT_EQ(mongoc_collection_count_documents(supps, sf, NULL, NULL, NULL, &e), want.bounced);
    bson_destroy(sf);
    sf = BCON_NEW("reason", BCON_UTF8("complained"));
    CHECK_INT_EQ(mongoc_collection_count_documents(supps, sf, NULL, NULL, NULL, &e),
                 want.complained);
    bson_destroy(sf);
    sf = BCON_NEW("suppressed", BCON_BOOL(true));
    CHECK_INT_EQ(mongoc_collection_count_documents(custs, sf, NULL, NULL, NULL, &e),
                 want.bounced + want.complained);
    bson_destroy(sf);
    mongoc_collection_destroy(supps);
    mongoc_collection_destroy(custs);

    /* Every webhook event, none missing, none extra. */
    idset have = {0};
    deadline = time_mono_ms() + 10000;
    do {
        have.n = 0;
        CHECK(queued_events(&have) == 0);
        if (have.n < want_ev.n)
            pipeh_sleep_ms(50);
    } while (have.n < want_ev.n && time_mono_ms() < deadline);
    size_t missing = 0;
    for (size_t i = 0; i < want_ev.n; i++)
        missing += !idset_has(&have, want_ev.id[i]);
    fprintf(stderr, "  webhook events: %zu distinct queued, %zu expected, %zu missing\n", have.n,
            want_ev.n, missing);
    CHECK_INT_EQ(missing, 0);
    CHECK_INT_EQ(have.n, want_ev.n);
    free(have.id);
    free(want_ev.id);
}

/* POST body, signed with the vendor secret (receipts.require_timestamp is off in this test). */
static long post_receipts(const char *body, pipeh_answer *a)
{
    char sig[HMAC_HEX_LEN + 1], hdr[128];
    hmac_sign_receipt(SECRET, NULL, body, strlen(body), sig);
    snprintf(hdr, sizeof hdr, "X-Signature: %s", sig);
    return pipeh_post(&h, "/api/receipts/delivery", NULL, body, hdr, 10000, a);
}

/* Poll until log lid has field `field` (NULL: any) and status `status` (NULL: any). 0 or -1. */
static int wait_log(const bson_oid_t *lid, const char *field, const char *status)
{
    mongoc_collection_t *logs = pipeh_coll(&h, DB_LOGS);
    int64_t deadline = time_mono_ms() + 20000;
    int rc = -1;
    while (rc != 0 && time_mono_ms() < deadline) {
        bson_t *f = BCON_NEW("_id", BCON_OID(lid));
        if (field)
            BCON_APPEND(f, field, "{", "$exists", BCON_BOOL(true), "}");
        if (status)
            BCON_APPEND(f, "status", BCON_UTF8(status));
        bson_error_t e;
        if (mongoc_collection_count_documents(logs, f, NULL, NULL, NULL, &e) == 1)
            rc = 0;
        else
            pipeh_sleep_ms(20);
        bson_destroy(f);
    }
    mongoc_collection_destroy(logs);
    return rc;
}

/* The dead letters of the receipts queue containing both a and b. */
static int dead_with(const char *a, const char *b)
{
    redisReply *r = rconn_command(h.rc, "LRANGE %s{%s}:dead 0 -1", h.env.prefix, QUEUE_RECEIPTS);
    int n = 0;
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
        n += strstr(r->element[i]->str, a) && strstr(r->element[i]->str, b);
    if (r)
        freeReplyObject(r);
    return n;
}

/* The data of the queued event with id `id` (its JSON text, malloc'd), or NULL. */
static char *queued_event_data(const char *id)
{
    redisReply *r = rconn_command(h.rc, "LRANGE %s{%s}:ready 0 -1", h.env.prefix, QUEUE_EVENTS);
    char *out = NULL;
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements && !out; i++) {
        jobs_event ev;
        char why[128];
        if (jobs_event_decode(r->element[i]->str, r->element[i]->len, &ev, why, sizeof why) == 0 &&
            !strcmp(ev.id, id))
            out = strndup(ev.data, ev.datalen);
    }
    if (r)
        freeReplyObject(r);
    return out;
}

TEST(events_through_the_route)
{
    CHECK(pipeh_start_all(&h) == 0);
    /* A SENDING campaign of two PENDING logs whose sends no vendor has. */
    mongoc_collection_t *custs = pipeh_coll(&h, DB_CUSTOMERS), *logs = pipeh_coll(&h, DB_LOGS),
                        *camps = pipeh_coll(&h, DB_CAMPAIGNS);
    bson_oid_t uid[2], cid, lid[2];
    char email[2][64];
    bson_t *q = BCON_NEW("suppressed", "{", "$ne", BCON_BOOL(true), "}"); /* not yet */
    bson_t *qo = BCON_NEW("limit", BCON_INT64(2), "sort", "{", "_id", BCON_INT32(1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(custs, q, qo, NULL);
    const bson_t *doc;
    for (int i = 0; i < 2; i++) {
        CHECK(mongoc_cursor_next(cur, &doc));
        bson_iter_t it;
        CHECK(bson_iter_init_find(&it, doc, "_id"));
        bson_oid_copy(bson_iter_oid(&it), &uid[i]);
        CHECK(bson_iter_init_find(&it, doc, "email"));
        snprintf(email[i], sizeof email[i], "%s", bson_iter_utf8(&it, NULL));
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(q);
    bson_destroy(qo);
    bson_oid_init(&cid, NULL);
    int64_t now = time_now_ms();
    bson_t *cd =
        BCON_NEW("_id", BCON_OID(&cid), "name", BCON_UTF8("by-hand"), "status",
                 BCON_UTF8("SENDING"), "fanout_done", BCON_BOOL(true), "total", BCON_INT64(2),
                 "pending", BCON_INT64(2), "sent", BCON_INT64(0), "failed", BCON_INT64(0),
                 "cancelled", BCON_INT64(0), "createdAt", BCON_DATE_TIME(now));
    bson_error_t e;
    CHECK(mongoc_collection_insert_one(camps, cd, NULL, NULL, &e));
    bson_destroy(cd);
    char lhex[2][25], chex[25];
    bson_oid_to_string(&cid, chex);
    for (int i = 0; i < 2; i++) {
        campaign_log_id(&cid, &uid[i], &lid[i]);
        bson_oid_to_string(&lid[i], lhex[i]);
        bson_t ld = BSON_INITIALIZER;
        campaign_log_append_new(&ld, &lid[i], &cid, &uid[i], "hi", now);
        CHECK(mongoc_collection_insert_one(logs, &ld, NULL, NULL, &e));
        bson_destroy(&ld);
    }

    /* An OPENED before the log's SENT: kept, counted, the status left PENDING. */
    char body[4096];
    pipeh_answer a;
    snprintf(body, sizeof body,
             "{\"log_id\":\"%s\",\"status\":\"OPENED\",\"event_id\":\"e-open-1\"}", lhex[0]);
    CHECK_INT_EQ(post_receipts(body, &a), 202);
    CHECK(wait_log(&lid[0], "openedAt", "PENDING") == 0);

    /* A batch: the same open again (its id repeated), a click twice with one id, an unknown
     * event type, an event for an unknown log, and the SENT. */
    snprintf(body, sizeof body,
             "[{\"log_id\":\"%s\",\"status\":\"OPENED\",\"id\":\"e-open-1\"},"
             "{\"log_id\":\"%s\",\"status\":\"CLICKED\",\"event_id\":\"e-click-1\"},"
             "{\"log_id\":\"%s\",\"status\":\"CLICKED\",\"event_id\":\"e-click-1\"},"
             "{\"log_id\":\"%s\",\"status\":\"DEFERRED\",\"id\":\"e-deferred\"},"
             "{\"log_id\":\"ffffffffffffffffffffffff\",\"status\":\"OPENED\",\"id\":\"e-nolog\"},"
             "{\"log_id\":\"%s\",\"status\":\"SENT\",\"vendorMsgId\":\"vx-0\","
             "\"campaign_id\":\"%s\",\"id\":\"e-sent\"}]",
             lhex[0], lhex[0], lhex[0], lhex[0], lhex[0], chex);
    CHECK_INT_EQ(post_receipts(body, &a), 202);
    CHECK_STR_CONTAINS(a.body, "\"accepted\":5");
    CHECK_STR_CONTAINS(a.body, "\"unknown\":1");
    CHECK(wait_log(&lid[0], "clickedAt", "SENT") == 0);
    int64_t deadline = time_mono_ms() + 20000;
    while (dead_with("e-deferred", "status must be") + dead_with("e-nolog", "unknown log_id") < 2 &&
           time_mono_ms() < deadline)
        pipeh_sleep_ms(20);
    CHECK_INT_EQ(dead_with("e-deferred", "status must be"), 1);
    CHECK_INT_EQ(dead_with("e-nolog", "unknown log_id"), 1);

    /* {"receipts": [...]}: another open (a new id: still one open per log) and a complaint;
     * the other log bounces. */
    snprintf(body, sizeof body,
             "{\"receipts\":[{\"log_id\":\"%s\",\"status\":\"OPENED\",\"id\":\"e-open-2\"},"
             "{\"log_id\":\"%s\",\"status\":\"COMPLAINED\",\"id\":\"e-spam\"},"
             "{\"log_id\":\"%s\",\"status\":\"BOUNCED\",\"vendorMsgId\":\"vx-1\",\"id\":\"e-b\"}]}",
             lhex[0], lhex[0], lhex[1]);
    CHECK_INT_EQ(post_receipts(body, &a), 202);
    CHECK(wait_log(&lid[0], "complainedAt", "SENT") == 0);
    CHECK(wait_log(&lid[1], "bounced", "FAILED") == 0);
    /* A single event already recorded is answered as a repeat; an unknown type is a 400, an
     * unknown log a 404. */
    snprintf(body, sizeof body, "{\"log_id\":\"%s\",\"status\":\"OPENED\",\"id\":\"e-open-3\"}",
             lhex[0]);
    CHECK_INT_EQ(post_receipts(body, &a), 200);
    CHECK_STR_CONTAINS(a.body, "\"updated\":false");
    snprintf(body, sizeof body, "{\"log_id\":\"%s\",\"status\":\"DEFERRED\"}", lhex[0]);
    CHECK_INT_EQ(post_receipts(body, &a), 400);
    CHECK_INT_EQ(post_receipts("[{\"log_id\":\"ffffffffffffffffffffffff\",\"status\":\"X\"}]", &a),
                 400);
    CHECK_INT_EQ(
        post_receipts("{\"log_id\":\"ffffffffffffffffffffffff\",\"status\":\"OPENED\"}", &a), 404);

    /* Counters: once each. */
    ph_campaign cr;
    deadline = time_mono_ms() + 20000;
    while (time_mono_ms() < deadline &&
           !(pipeh_read(&h, &cid, &cr) == 0 && !strcmp(cr.status, "COMPLETED")))
        pipeh_sleep_ms(20);
    CHECK_STR_EQ(cr.status, "COMPLETED");
    CHECK_INT_EQ(cr.sent, 1);
    CHECK_INT_EQ(cr.failed, 1);
    CHECK_INT_EQ(cr.bounced, 1);
    CHECK_INT_EQ(cr.opened, 1);
    CHECK_INT_EQ(cr.clicked, 1);
    CHECK_INT_EQ(cr.complained, 1);
    CHECK_INT_EQ(cr.pending, 0);
    bson_t *bf = BCON_NEW("_id", BCON_OID(&lid[1]), "failureReason", BCON_UTF8("bounced"));
    CHECK_INT_EQ(mongoc_collection_count_documents(logs, bf, NULL, NULL, NULL, &e), 1);
    bson_destroy(bf);

    /* The webhook events: the bounce names the customer's e-mail, the complaint too. */
    char id[JOBS_EVENT_ID_LEN + 1];
    jobs_event_id(JOBS_EV_MESSAGE_BOUNCED, lhex[1], id);
    char *data = queued_event_data(id);
    CHECK_MSG(data != NULL, "no message.bounced event for %s", lhex[1]);
    CHECK_STR_CONTAINS(data, email[1]);
    CHECK_STR_CONTAINS(data, "\"reason\":\"bounced\"");
    CHECK_STR_CONTAINS(data, "\"vendorMsgId\":\"vx-1\"");
    CHECK_STR_CONTAINS(data, chex);
    free(data);
    jobs_event_id(JOBS_EV_CONTACT_COMPLAINED, lhex[0], id);
    data = queued_event_data(id);
    CHECK_MSG(data != NULL, "no contact.complained event for %s", lhex[0]);
    CHECK_STR_CONTAINS(data, email[0]);
    free(data);
    jobs_event_id(JOBS_EV_MESSAGE_FAILED, lhex[1], id);
    CHECK(queued_event_data(id) == NULL); /* a bounce is not also a plain failure */
    /* Both addresses suppressed, with the reason and the log they came from. */
    mongoc_collection_t *supps = pipeh_coll(&h, DB_SUPPRESSIONS);
    for (int i = 0; i < 2; i++) {
        bson_t *sf =
            BCON_NEW("email", BCON_UTF8(email[i]), "reason",
                     BCON_UTF8(i ? "bounced" : "complained"), "source", BCON_UTF8(lhex[i]));
        CHECK_MSG(mongoc_collection_count_documents(supps, sf, NULL, NULL, NULL, &e) == 1,
                  "no %s suppression of %s", i ? "bounced" : "complained", email[i]);
        bson_destroy(sf);
    }
    mongoc_collection_destroy(supps);
    mongoc_collection_destroy(custs);
    mongoc_collection_destroy(logs);
    mongoc_collection_destroy(camps);
}

static const test_case cases[] = {TEST_ENTRY(exact_event_counters_under_receipts_kill9),
                                  TEST_ENTRY(events_through_the_route)};

int main(int argc, char **argv)
{
    if (pipeh_start(&h) != 0) {
        fprintf(stderr, "test_event_counters: cannot start services\n");
        pipeh_stop(&h);
        return 1;
    }
    /* After pipeh_start (which sets its own defaults), before the programs start. */
    char v[32];
    setenv("MINICRM_RECEIPTS_RECOVER_AFTER_S", "60", 1);      /* the heartbeat path only */
    setenv("MINICRM_RECEIPTS_REQUIRE_TIMESTAMP", "false", 1); /* hand-signed posts */
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
