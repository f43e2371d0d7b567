/*
 * test_counter_recovery: campaign counters converge as soon as a dead receipts consumer's
 * heartbeat expires, not after receipts.recover_after_s.
 *
 * The real programs (minicrm-api, minicrm-worker, minicrm-receipts, minicrm-vendor-sim) run on
 * private redis-server and minicrm-devdb with queue.heartbeat_ttl_s = 2 and
 * receipts.recover_after_s = 60 (the default). The receipts worker is killed with SIGKILL while
 * a campaign's receipts are being applied, at a moment when it owns at least one counter token
 * whose batch moved logs it has not counted yet (checked after the kill, in Redis and MongoDB),
 * and is restarted at once. The test polls the logs and the campaign and measures the time
 * from the moment every log is final to the moment the campaign is COMPLETED: it must be within
 * the heartbeat TTL plus 5 s (with the age-only recovery it was recover_after_s), and the
 * counters must then equal the counts of the logs by status, and so must the progress the API
 * serves from them (GET /api/campaigns/:id against its ?verify=1, the exact log counts).
 */
#include "dbpool.h"
#include "pipeharness.h"
#include "test.h"
#include "timeutil.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NCUST           20000
#define HEARTBEAT_TTL_S 2 /* queue.heartbeat_ttl_s, as pipeh_start sets it */

static pipeh h;
static unsigned rnd_state = 4242;

/* A log moved by counter token tok carries it as its ctok. */
static void moved_by_ctok(bson_t *f, const char *tok)
{
    BSON_APPEND_UTF8(f, "ctok", tok);
}

/* Logs of the campaign that are final (SENT or FAILED), or -1. */
static long long final_logs(const bson_oid_t *cid)
{
    mongoc_collection_t *logs = pipeh_coll(&h, DB_LOGS);
    bson_t *f = BCON_NEW("campaign_id", BCON_OID(cid), "status", "{", "$in", "[", BCON_UTF8("SENT"),
                         BCON_UTF8("FAILED"), "]", "}");
    bson_error_t e;
    int64_t n = mongoc_collection_count_documents(logs, f, NULL, NULL, NULL, &e);
    bson_destroy(f);
    mongoc_collection_destroy(logs);
    return n;
}

TEST(counters_converge_after_receipts_kill9)
{
    CHECK(pipeh_start_all(&h) == 0);
    bson_oid_t cid;
    long long orphans = 0;
    int kills = 0, campaigns = 0;
    bool fresh = true;
    /* The kill must land between a batch's log update and its counter update (the token
     * stays behind with logs it moved and did not count); often it does, as the receipts
     * worker spends its time in MongoDB. Otherwise the worker is restarted and killed again
     * a moment later, on a new campaign once this one is done. */
    while (kills < 40 && orphans <= 0) {
        if (fresh) {
            char name[32];
            snprintf(name, sizeof name, "recover-%d", campaigns++);
            CHECK(pipeh_campaign(&h, name, "{}", &cid) == 0);
            if (pipeh_wait_mid_flight(&h, &cid, 1, 30000) != 0)
                continue;
            fresh = false;
        }
        pipeh_sleep_ms(pipeh_rand(&rnd_state, 20, 300));
        pipeh_kill(&h, PH_RECEIPTS, SIGKILL);
        kills++;
        orphans = pipeh_stale_tokens(&h, &cid, moved_by_ctok);
        CHECK(pipeh_start_all(&h) == 0);
        ph_campaign c;
        if (orphans <= 0 && pipeh_read(&h, &cid, &c) == 0 && !strcmp(c.status, "COMPLETED"))
            fresh = true;
    }
    CHECK_MSG(orphans > 0, "no kill left an uncounted token behind in %d kills", kills);
    fprintf(stderr, "  uncounted tokens left by the killed receipts worker: %lld (kill %d)\n",
            orphans, kills);

    /* Every log final at t_final, the campaign COMPLETED at t_done. */
    int64_t deadline = time_mono_ms() + 120000, t_final = 0, t_done = 0, t_kill = time_mono_ms();
    ph_campaign c = {0};
    while (time_mono_ms() < deadline && !t_done) {
        if (!t_final && final_logs(&cid) == NCUST)
            t_final = time_mono_ms();
        if (pipeh_read(&h, &cid, &c) == 0 && !strcmp(c.status, "COMPLETED")) {
            t_done = time_mono_ms();
            if (!t_final && final_logs(&cid) == NCUST)
                t_final = t_done;
        }
        pipeh_sleep_ms(20);
    }
    CHECK_MSG(t_done > 0,
              "campaign not COMPLETED: status=%s total=%lld pending=%lld sent=%lld failed=%lld",
              c.status, (long long)c.total, (long long)c.pending, (long long)c.sent,
              (long long)c.failed);
    CHECK(t_final > 0);
    fprintf(stderr,
            "  last log final %.2f s after the kill; campaign COMPLETED %.2f s after that "
            "(bound: heartbeat TTL %d s + 5 s; recover_after_s 60)\n",
            (double)(t_final - t_kill) / 1000.0, (double)(t_done - t_final) / 1000.0,
            HEARTBEAT_TTL_S);
    CHECK_MSG(t_done - t_final <= (HEARTBEAT_TTL_S + 5) * 1000,
              "COMPLETED %.2f s after the last final log", (double)(t_done - t_final) / 1000.0);

    /* Exact counters. */
    long long by[4];
    CHECK_INT_EQ(pipeh_count_logs(&h, &cid, by), NCUST);
    CHECK_INT_EQ(by[0], 0);
    CHECK_INT_EQ(c.total, NCUST);
    CHECK_INT_EQ(c.pending, 0);
    CHECK_INT_EQ(c.sent, by[1]);
    CHECK_INT_EQ(c.failed, by[2]);

    /* What the API serves (GET /api/campaigns/:id, from those counters) is the exact count of
     * the logs (?verify=1) after the kill, member for member. */
    char key[128], path[96], hex[25];
    CHECK(pipeh_make_key(&h, "staff", "progress", key, sizeof key) == 0);
    bson_oid_to_string(&cid, hex);
    json_t *p[2];
    for (int i = 0; i < 2; i++) {
        pipeh_answer a;
        snprintf(path, sizeof path, "/api/campaigns/%s%s", hex, i ? "?verify=1" : "");
        CHECK_INT_EQ(pipeh_get(&h, path, key, 30000, &a), 200);
        json_t *doc = json_loads(a.body, 0, NULL);
        p[i] = json_incref(json_object_get(doc, "progress"));
        json_decref(doc);
        CHECK(p[i] != NULL);
    }
    char *s0 = json_dumps(p[0], JSON_SORT_KEYS), *s1 = json_dumps(p[1], JSON_SORT_KEYS);
    fprintf(stderr, "  progress from counters: %s\n  exact (?verify=1):      %s\n", s0, s1);
    CHECK_STR_EQ(s0, s1);
    CHECK_INT_EQ(json_integer_value(json_object_get(p[0], "sent")), by[1]);
    CHECK(json_is_true(json_object_get(p[0], "complete")));
    free(s0);
    free(s1);
    json_decref(p[0]);
    json_decref(p[1]);
}

static const test_case cases[] = {TEST_ENTRY(counters_converge_after_receipts_kill9)};

int main(int argc, char **argv)
{
    if (pipeh_start(&h) != 0) {
        fprintf(stderr, "test_counter_recovery: cannot start services\n");
        pipeh_stop(&h);
        return 1;
    }
    /* Only the heartbeat can make the recovery fast: the age threshold is the default. */
    setenv("MINICRM_RECEIPTS_RECOVER_AFTER_S", "60", 1);
    /* Delays long enough that the kill lands while receipts are still coming in. */
    setenv("MINICRM_VENDOR_SIM_MAX_DELAY_MS", "1500", 1);
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
