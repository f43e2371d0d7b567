/*
 * test_vendor_decide: vendor-sim's derived decisions (vendor-sim/decide.c) are what replaced the
 * stored per-message idempotency keys, so they must be deterministic per (secret, seed, log id)
 * across independent deciders (= across restarts and instances), differ between log ids and
 * deployments, and follow success_rate and the delay range; the receipt events (bounce,
 * complaint, open, click) follow their rates, are as deterministic, every click is an open, and
 * with every event rate 0 the decisions are the ones without events.
 */
#include "decide.h"
#include "test.h"

#include <stdio.h>
#include <string.h>

static void log_id_of(int i, char out[25])
{
    snprintf(out, 25, "65f0a1b2c3d4e5f6%08x", (unsigned)i);
}

TEST(same_log_id_same_decision_across_deciders)
{
    decider *a = decider_new("secret-1", 7, 0.5, 100, 900);
    decider *b = decider_new("secret-1", 7, 0.5, 100, 900);
    CHECK(a && b);
    char id[25];
    for (int i = 0; i < 200; i++) {
        log_id_of(i, id);
        decision x, y, z;
        CHECK_INT_EQ(decider_decide(a, id, 24, &x), 0);
        CHECK_INT_EQ(decider_decide(b, id, 24, &y), 0);
        CHECK_INT_EQ(decider_decide(a, id, 24, &z), 0); /* the same context again */
        CHECK_STR_EQ(x.vmid, y.vmid);
        CHECK_STR_EQ(x.vmid, z.vmid);
        CHECK_INT_EQ(x.status, y.status);
        CHECK_INT_EQ(x.delay_ms, y.delay_ms);
        CHECK_INT_EQ(x.delay_ms, z.delay_ms);
        CHECK_INT_EQ((long long)strlen(x.vmid), 19);
    }
    decider_free(a);
    decider_free(b);
}

TEST(ids_differ_by_log_id_secret_and_seed)
{
    decider *a = decider_new("secret-1", 7, 0.9, 0, 10);
    decider *s = decider_new("secret-2", 7, 0.9, 0, 10);
    decider *e = decider_new("secret-1", 8, 0.9, 0, 10);
    CHECK(a && s && e);
    char id[25];
    decision p, x, y, z;
    log_id_of(0, id);
    CHECK_INT_EQ(decider_decide(a, id, 24, &p), 0);
    log_id_of(1, id);
    CHECK_INT_EQ(decider_decide(a, id, 24, &x), 0);
    log_id_of(0, id);
    CHECK_INT_EQ(decider_decide(s, id, 24, &y), 0);
    CHECK_INT_EQ(decider_decide(e, id, 24, &z), 0);
    CHECK(strcmp(p.vmid, x.vmid) != 0);
    CHECK(strcmp(p.vmid, y.vmid) != 0);
    CHECK(strcmp(p.vmid, z.vmid) != 0);
    decider_free(a);
    decider_free(s);
    decider_free(e);
}

TEST(event_rates_deterministic)
{
    decider *a = decider_new("k", 3, 0.9, 100, 900);
    decider *b = decider_new("k", 3, 0.9, 100, 900);
    decider *plain = decider_new("k", 3, 0.9, 100, 900);
    decider *zero = decider_new("k", 3, 0.9, 100, 900);
    CHECK(a && b && plain && zero);
    CHECK_INT_EQ(decider_set_events(a, 0.02, 0.01, 0.30, 0.05), 0);
    CHECK_INT_EQ(decider_set_events(b, 0.02, 0.01, 0.30, 0.05), 0);
    CHECK_INT_EQ(decider_set_events(zero, 0, 0, 0, 0), 0);
    CHECK_INT_EQ(decider_set_events(b, 1.5, 0, 0, 0), -1);
    int n = 20000, bounced = 0, opened = 0, clicked = 0, complained = 0, sent = 0;
    char id[25];
    for (int i = 0; i < n; i++) {
        log_id_of(i, id);
        decision x, y, p, z;
        CHECK_INT_EQ(decider_decide(a, id, 24, &x), 0);
        CHECK_INT_EQ(decider_decide(b, id, 24, &y), 0);
        CHECK_INT_EQ(decider_decide(plain, id, 24, &p), 0);
        CHECK_INT_EQ(decider_decide(zero, id, 24, &z), 0);
        CHECK(x.bounced == y.bounced && x.opened == y.opened && x.clicked == y.clicked &&
              x.complained == y.complained && x.open_ms == y.open_ms && x.click_ms == y.click_ms &&
              x.complaint_ms == y.complaint_ms);
        CHECK(z.status == p.status && z.delay_ms == p.delay_ms && !z.bounced && !z.opened &&
              !z.complained && !strcmp(z.vmid, p.vmid));
        CHECK(!x.clicked || x.opened);
        CHECK(!x.bounced || x.status == CAMPAIGN_LOG_FAILED);
        CHECK(x.status == CAMPAIGN_LOG_SENT || (!x.opened && !x.complained));
        if (x.opened)
            CHECK(x.open_ms >= 100 && x.open_ms <= 900);
        if (x.clicked)
            CHECK(x.click_ms > x.open_ms);
        bounced += x.bounced;
        sent += x.status == CAMPAIGN_LOG_SENT;
        opened += x.opened;
        clicked += x.clicked;
        complained += x.complained;
    }
    /* rates of all messages (bounce) and of SENT ones (the rest), within a few sigma */
    CHECK_MSG(bounced > n * 0.015 && bounced < n * 0.025, "bounced %d", bounced);
    CHECK_MSG(opened > sent * 0.28 && opened < sent * 0.32, "opened %d of %d", opened, sent);
    CHECK_MSG(clicked > sent * 0.04 && clicked < sent * 0.06, "clicked %d of %d", clicked, sent);
    CHECK_MSG(complained > sent * 0.007 && complained < sent * 0.013, "complained %d of %d",
              complained, sent);
    decider_free(a);
    decider_free(b);
    decider_free(plain);
    decider_free(zero);
}

TEST(rate_and_delay_range)
{
    decider *d = decider_new("k", 0, 0.9, 100, 900);
    decider *all = decider_new("k", 0, 1.0, 5, 5);
    decider *none = decider_new("k", 0, 0.0, 0, 0);
    CHECK(d && all && none);
    int sent = 0, lo = 0, hi = 0;
    char id[25];
    for (int i = 0; i < 10000; i++) {
        log_id_of(i, id);
        decision x;
        CHECK_INT_EQ(decider_decide(d, id, 24, &x), 0);
        CHECK(x.delay_ms >= 100 && x.delay_ms <= 900);
        lo += x.delay_ms < 500;
        hi += x.delay_ms >= 500;
        sent += x.status == CAMPAIGN_LOG_SENT;
        CHECK_INT_EQ(decider_decide(all, id, 24, &x), 0);
        CHECK_INT_EQ(x.status, CAMPAIGN_LOG_SENT);
        CHECK_INT_EQ(x.delay_ms, 5);
        CHECK_INT_EQ(decider_decide(none, id, 24, &x), 0);
        CHECK_INT_EQ(x.status, CAMPAIGN_LOG_FAILED);
        CHECK_INT_EQ(x.delay_ms, 0);
    }
    /* 9,000 expected; 8,800..9,200 is more than 6 standard deviations (30) either side. */
    CHECK_MSG(sent > 8800 && sent < 9200, "sent=%d of 10000 at rate 0.9", sent);
    CHECK_MSG(lo > 4700 && hi > 4700, "delays below/above 500 ms: %d / %d", lo, hi);
    decider_free(d);
    decider_free(all);
    decider_free(none);
}

TEST(bad_arguments)
{
    CHECK(decider_new(NULL, 0, 0.5, 0, 1) == NULL);
    CHECK(decider_new("k", 0, 1.5, 0, 1) == NULL);
    CHECK(decider_new("k", 0, 0.5, 10, 1) == NULL);
    CHECK(decider_new("k", 0, 0.5, -1, 1) == NULL);
    decider_free(NULL);
}

TEST_MAIN(TEST_ENTRY(same_log_id_same_decision_across_deciders),
          TEST_ENTRY(ids_differ_by_log_id_secret_and_seed), TEST_ENTRY(rate_and_delay_range),
          TEST_ENTRY(event_rates_deterministic), TEST_ENTRY(bad_arguments))
