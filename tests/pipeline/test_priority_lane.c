/*
 * test_priority_lane: POST /api/messages, the one-off message through the priority queue,
 * with the real programs on private redis-server and minicrm-devdb.
 *
 *   - the route: by customer_id and by e-mail; 202 with the log id and vendorMsgId; the log has
 *     campaign_id null, kind "transactional", and ends SENT or FAILED with the vendorMsgId the
 *     route answered; two messages to the same customer are two logs; Idempotency-Key replays
 *     the first answer (one log); 400 for a bad body, 404 for an unknown customer.
 *   - the lane: a campaign's whole fan-out (NCUST sends) is queued while the vendor simulator
 *     is down; then the simulator and a deliberately slow receipts worker (one consumer, jobs
 *     of 20 receipts) start, so the campaign's receipts take seconds to drain, and N one-off
 *     messages are posted at once: each must reach its final state (receipt applied) within
 *     the vendor's longest delay plus 1 s, while the campaign is still sending. Through the
 *     bulk queues they would wait behind every campaign send and receipt.
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

#define NCUST        20000
#define NPRIO        20
#define MAX_DELAY_MS 300 /* vendor_sim.max_delay_ms, as pipeh_start sets it */

static pipeh h;
static char key[200];

typedef pipeh_answer answer;

/* POST /api/messages with body (and an Idempotency-Key when ik is not NULL). The status. */
static long post_message(const char *body, const char *ik, answer *a)
{
    char idem[260];
    if (ik)
        snprintf(idem, sizeof idem, "Idempotency-Key: %s", ik);
    return pipeh_post(&h, "/api/messages", key, body, ik ? idem : NULL, 10000L, a);
}

/* A member of the answer as a string (into out), "" if absent. */
static void answer_str(const answer *a, const char *name, char *out, size_t n)
{
    json_error_t je;
    json_t *j = json_loads(a->body, 0, &je);
    const char *s = json_string_value(json_object_get(j, name));
    snprintf(out, n, "%s", s ? s : "");
    json_decref(j);
}

/* The log's status, vendorMsgId, kind and whether campaign_id is null. 0 or -1 (no log). */
static int read_log(const char *lhex, char status[16], char vmid[130], char kind[32],
                    bool *cid_null)
{
    mongoc_collection_t *logs = pipeh_coll(&h, DB_LOGS);
    bson_oid_t lid;
    bson_oid_init_from_string(&lid, lhex);
    bson_t *f = BCON_NEW("_id", BCON_OID(&lid));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(logs, f, NULL, NULL);
    const bson_t *d;
    int rc = -1;
    status[0] = vmid[0] = kind[0] = '\0';
    if (mongoc_cursor_next(cur, &d)) {
        bson_iter_t it;
        if (bson_iter_init_find(&it, d, "status") && BSON_ITER_HOLDS_UTF8(&it))
            snprintf(status, 16, "%s", bson_iter_utf8(&it, NULL));
        if (bson_iter_init_find(&it, d, "vendorMsgId") && BSON_ITER_HOLDS_UTF8(&it))
            snprintf(vmid, 130, "%s", bson_iter_utf8(&it, NULL));
        if (bson_iter_init_find(&it, d, "kind") && BSON_ITER_HOLDS_UTF8(&it))
            snprintf(kind, 32, "%s", bson_iter_utf8(&it, NULL));
        *cid_null = bson_iter_init_find(&it, d, "campaign_id") && BSON_ITER_HOLDS_NULL(&it);
        rc = 0;
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(f);
    mongoc_collection_destroy(logs);
    return rc;
}

static bool is_final(const char *st)
{
    return !strcmp(st, "SENT") || !strcmp(st, "FAILED");
}

/* Poll until the log is final (or 20 s), then read it. */
static void wait_final(const char *lhex, char status[16], char vmid[130], char kind[32],
                       bool *cid_null)
{
    bson_oid_t lid;
    bson_oid_init_from_string(&lid, lhex);
    pipeh_wait_log_final(&h, &lid, 20000, status);
    read_log(lhex, status, vmid, kind, cid_null);
}

static long long logs_of_customer(const char *uhex)
{
    mongoc_collection_t *logs = pipeh_coll(&h, DB_LOGS);
    bson_oid_t uid;
    bson_oid_init_from_string(&uid, uhex);
    bson_t *f = BCON_NEW("customer_id", BCON_OID(&uid), "kind", BCON_UTF8("transactional"));
    bson_error_t e;
    int64_t n = mongoc_collection_count_documents(logs, f, NULL, NULL, NULL, &e);
    bson_destroy(f);
    mongoc_collection_destroy(logs);
    return n;
}

/* The _id of seeded customer c{i} (by its e-mail). */
static int customer_hex(int i, char out[25])
{
    mongoc_collection_t *custs = pipeh_coll(&h, DB_CUSTOMERS);
    char email[64];
    snprintf(email, sizeof email, "c%d@%c.example", i, pipeh_domain(i));
    bson_t *f = BCON_NEW("email", BCON_UTF8(email));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(custs, f, NULL, NULL);
    const bson_t *d;
    bson_iter_t it;
    int rc = -1;
    if (mongoc_cursor_next(cur, &d) && bson_iter_init_find(&it, d, "_id") &&
        BSON_ITER_HOLDS_OID(&it)) {
        bson_oid_to_string(bson_iter_oid(&it), out);
        rc = 0;
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(f);
    mongoc_collection_destroy(custs);
    return rc;
}

TEST(message_route)
{
    CHECK(pipeh_start_all(&h) == 0);
    answer a;
    char body[512], lid1[25], lid2[25], vid[130], uhex[25], got[25];
    CHECK(customer_hex(7, uhex) == 0);

    /* By e-mail (any case): 202, a transactional log that ends with the answered id. */
    snprintf(body, sizeof body, "{\"email\":\"C7@%c.EXAMPLE\",\"message\":\"your code is 1\"}",
             pipeh_domain(7));
    CHECK_INT_EQ(post_message(body, NULL, &a), 202);
    answer_str(&a, "log_id", lid1, sizeof lid1);
    answer_str(&a, "vendorMsgId", vid, sizeof vid);
    answer_str(&a, "customer_id", got, sizeof got);
    CHECK_STR_EQ(got, uhex);
    CHECK(strlen(lid1) == 24 && vid[0]);
    char st[16], vm[130], kind[32];
    bool cid_null = false;
    wait_final(lid1, st, vm, kind, &cid_null);
    CHECK_MSG(is_final(st), "log %s is %s", lid1, st);
    CHECK_STR_EQ(vm, vid);
    CHECK_STR_EQ(kind, "transactional");
    CHECK(cid_null);

    /* By customer_id, the same customer again: a second log. */
    snprintf(body, sizeof body, "{\"customer_id\":\"%s\",\"message\":\"your code is 2\"}", uhex);
    CHECK_INT_EQ(post_message(body, NULL, &a), 202);
    answer_str(&a, "log_id", lid2, sizeof lid2);
    CHECK(strlen(lid2) == 24 && strcmp(lid1, lid2) != 0);
    wait_final(lid2, st, vm, kind, &cid_null);
    CHECK_MSG(is_final(st), "log %s is %s", lid2, st);
    CHECK_INT_EQ(logs_of_customer(uhex), 2);

    /* Idempotency-Key: the same answer again, one more log only. */
    snprintf(body, sizeof body, "{\"customer_id\":\"%s\",\"message\":\"order 42 shipped\"}", uhex);
    CHECK_INT_EQ(post_message(body, "order-42", &a), 202);
    CHECK(!a.replayed);
    char first[2048];
    snprintf(first, sizeof first, "%s", a.body);
    CHECK_INT_EQ(post_message(body, "order-42", &a), 202);
    CHECK(a.replayed);
    CHECK_STR_EQ(a.body, first);
    CHECK_INT_EQ(logs_of_customer(uhex), 3);
    snprintf(body, sizeof body, "{\"customer_id\":\"%s\",\"message\":\"other\"}", uhex);
    CHECK_INT_EQ(post_message(body, "order-42", &a), 409);

    /* Refusals. */
    CHECK_INT_EQ(post_message("{\"message\":\"x\"}", NULL, &a), 400);
    snprintf(body, sizeof body,
             "{\"customer_id\":\"%s\",\"email\":\"c7@a.example\",\"message\":\"x\"}", uhex);
    CHECK_INT_EQ(post_message(body, NULL, &a), 400);
    snprintf(body, sizeof body, "{\"customer_id\":\"%s\"}", uhex);
    CHECK_INT_EQ(post_message(body, NULL, &a), 400);
    CHECK_INT_EQ(post_message("{\"customer_id\":\"nothex\",\"message\":\"x\"}", NULL, &a), 400);
    CHECK_INT_EQ(post_message("{\"email\":\"nobody@nowhere.example\",\"message\":\"x\"}", NULL, &a),
                 404);
    CHECK_INT_EQ(
        post_message("{\"customer_id\":\"0123456789abcdef01234567\",\"message\":\"x\"}", NULL, &a),
        404);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

TEST(priority_overtakes_a_draining_campaign)
{
    CHECK(pipeh_start_all(&h) == 0);
    /* A slow bulk: one receipts consumer taking one small job (20 receipts) per batch, so the
     * campaign's receipts drain for seconds. */
    pipeh_kill(&h, PH_RECEIPTS, SIGTERM);
    pipeh_kill(&h, PH_VENDOR, SIGTERM);
    setenv("MINICRM_RECEIPTS_CONSUMERS", "1", 1);
    setenv("MINICRM_RECEIPTS_BATCH_SIZE", "20", 1);
    setenv("MINICRM_VENDOR_SIM_POST_BATCH", "20", 1);
    /* The whole fan-out queued while the vendor is down. */
    bson_oid_t cid;
    CHECK(pipeh_campaign(&h, "lane", "{}", &cid) == 0);
    ph_campaign c;
    int64_t deadline = time_mono_ms() + 60000;
    while ((pipeh_read(&h, &cid, &c) != 0 || !c.fanout_done) && time_mono_ms() < deadline)
        pipeh_sleep_ms(50);
    CHECK_MSG(c.fanout_done && c.total == NCUST, "fan-out not done: total=%lld",
              (long long)c.total);
    CHECK(pipeh_start_all(&h) == 0);
    while ((pipeh_read(&h, &cid, &c) != 0 || c.sent + c.failed == 0) && time_mono_ms() < deadline)
        pipeh_sleep_ms(10);

    char lids[NPRIO][25];
    int64_t t0[NPRIO], lat[NPRIO];
    bool done[NPRIO] = {false};
    for (int i = 0; i < NPRIO; i++) {
        char body[256];
        answer a;
        snprintf(body, sizeof body, "{\"email\":\"c%d@%c.example\",\"message\":\"reset %d\"}",
                 100 + i, pipeh_domain(100 + i), i);
        t0[i] = time_mono_ms();
        CHECK_INT_EQ(post_message(body, NULL, &a), 202);
        answer_str(&a, "log_id", lids[i], sizeof lids[i]);
    }
    int left = NPRIO;
    deadline = time_mono_ms() + 30000;
    while (left && time_mono_ms() < deadline) {
        for (int i = 0; i < NPRIO; i++) {
            char st[16], vm[130], kind[32];
            bool cn;
            if (!done[i] && read_log(lids[i], st, vm, kind, &cn) == 0 && is_final(st)) {
                done[i] = true;
                lat[i] = time_mono_ms() - t0[i];
                left--;
            }
        }
        pipeh_sleep_ms(5);
    }
    CHECK_INT_EQ(left, 0);
    CHECK(pipeh_read(&h, &cid, &c) == 0);
    long long bulk_left = c.total - c.sent - c.failed;
    qsort(lat, NPRIO, sizeof lat[0], cmp_i64);
    fprintf(stderr,
            "  %d one-off messages, POST -> receipt applied: p50 %lld ms, max %lld ms (vendor "
            "delay <= %d ms); campaign logs still pending then: %lld of %d\n",
            NPRIO, (long long)lat[NPRIO / 2], (long long)lat[NPRIO - 1], MAX_DELAY_MS, bulk_left,
            NCUST);
    CHECK_MSG(bulk_left > 0, "the campaign finished first: the test proved nothing");
    CHECK_MSG(lat[NPRIO - 1] <= MAX_DELAY_MS + 1000, "slowest one-off message took %lld ms",
              (long long)lat[NPRIO - 1]);
    CHECK_INT_EQ(pipeh_wait_completed(&h, &cid, 120000, &c), 0);
    CHECK_INT_EQ(c.sent + c.failed, NCUST);
    CHECK_INT_EQ(c.pending, 0);
    unsetenv("MINICRM_RECEIPTS_CONSUMERS");
    unsetenv("MINICRM_RECEIPTS_BATCH_SIZE");
    unsetenv("MINICRM_VENDOR_SIM_POST_BATCH");
}

static const test_case cases[] = {TEST_ENTRY(message_route),
                                  TEST_ENTRY(priority_overtakes_a_draining_campaign)};

int main(int argc, char **argv)
{
    if (pipeh_start(&h) != 0) {
        fprintf(stderr, "test_priority_lane: cannot start services\n");
        pipeh_stop(&h);
        return 1;
    }
    setenv("MINICRM_TEST_DIR", h.env.dir, 1);
    if (pipeh_seed(&h, NCUST) != 0 || pipeh_make_key(&h, "staff", "lane", key, sizeof key) != 0) {
        fprintf(stderr, "test_priority_lane: cannot seed or make a staff key\n");
        pipeh_stop(&h);
        return 1;
    }
    int rc = test_run_all(__FILE__, cases, sizeof cases / sizeof cases[0], argc, argv);
    if (rc != 0)
        fprintf(stderr, "logs of the programs: %s\n", h.env.dir);
    pipeh_stop(&h);
    return rc;
}
