/*
 * test_consumer: lib/consumer against a private redis-server: a loop that settles every batch
 * and stops at a batch boundary, CONSUMER_AGAIN handing the same batch back, the hand-back of
 * unsettled jobs at the end, a holding consumer (queue_claim_fresh, drain on stop, take-back at
 * the next start), the progress line written only when its figures changed, a priority
 * queue drained before the bulk one, and a low lane drained after it (yet never starved).
 */
#include "consumer.h"
#include "queue.h"
#include "rconn.h"
#include "test.h"
#include "testenv.h"
#include "timeutil.h"

#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static testenv env;
static rconn *rc;

static queue *open_q(const char *name, const char *cid)
{
    queue_opts o;
    queue_opts_default(&o);
    o.backoff_base_ms = 20;
    o.backoff_max_ms = 100;
    o.reap_interval_ms = 50;
    char err[256];
    queue *q = queue_open(rc, env.prefix, name, cid, &o, err, sizeof err);
    if (!q)
        fprintf(stderr, "queue_open: %s\n", err);
    return q;
}

static long long llen(queue *q, const char *suffix)
{
    char key[300];
    queue_key(q, suffix, key, sizeof key);
    redisReply *r = rconn_command(rc, "LLEN %s", key);
    long long n = r ? r->integer : -1;
    if (r)
        freeReplyObject(r);
    return n;
}

static long long is_member(queue *q, const char *cid)
{
    char key[300];
    queue_key(q, "consumers", key, sizeof key);
    redisReply *r = rconn_command(rc, "SISMEMBER %s %s", key, cid);
    long long n = r ? r->integer : -1;
    if (r)
        freeReplyObject(r);
    return n;
}

static int push_n(queue *p, int n)
{
    for (int i = 0; i < n; i++) {
        char job[32];
        snprintf(job, sizeof job, "{\"n\":%d}", i);
        if (queue_push(p, job, strlen(job)) != 0)
            return -1;
    }
    return 0;
}

/* What the callbacks of one test see and count. */
typedef struct probe {
    queue *q;
    size_t want;
    int handled_jobs, handle_calls, batches, turns, again_left;
    int stop_after_jobs;  /* stop once this many jobs were handled (0: never by count) */
    int stop_after_turns; /* stop after this many turns (0: never by turns) */
    bool settle;          /* ack what is handled */
    char first_seen[64];  /* payload of the first job of the first batch */
    int first_seen_calls; /* handle calls that got that payload first */
    queue_job held[16];   /* holding consumer: jobs taken over */
    size_t nheld;
    int release_per_tick; /* holding consumer: held jobs acked per tick */
    int figure;           /* progress figure */
    int bump_at_turn;     /* turn at which the figure changes */
} probe;

static size_t p_want(void *arg, int *block_ms)
{
    probe *p = arg;
    *block_ms = 0;
    return p->want;
}

static consumer_result p_handle(void *arg, queue_batch *b)
{
    probe *p = arg;
    p->handle_calls++;
    if (!p->first_seen[0])
        snprintf(p->first_seen, sizeof p->first_seen, "%s", b->jobs[0].data);
    if (!strcmp(p->first_seen, b->jobs[0].data))
        p->first_seen_calls++;
    if (p->again_left > 0) {
        p->again_left--;
        return CONSUMER_AGAIN;
    }
    p->batches++;
    p->handled_jobs += (int)b->n;
    if (p->settle && queue_ack(p->q, b->jobs, b->n) != 0)
        return CONSUMER_BACKOFF;
    return CONSUMER_OK;
}

/* Holding consumer: keep every job (take its payload over). */
static consumer_result p_hold(void *arg, queue_batch *b)
{
    probe *p = arg;
    for (size_t i = 0; i < b->n && p->nheld < 16; i++) {
        p->held[p->nheld++] = b->jobs[i];
        b->jobs[i].data = NULL;
        p->handled_jobs++;
    }
    return CONSUMER_OK;
}

static void p_tick(void *arg, bool claimed)
{
    (void)claimed;
    probe *p = arg;
    p->turns++;
    if (p->bump_at_turn && p->turns == p->bump_at_turn)
        p->figure++;
    for (int i = 0; i < p->release_per_tick && p->nheld > 0; i++) {
        queue_job *j = &p->held[--p->nheld];
        queue_ack(p->q, j, 1);
        free(j->data);
    }
    struct timespec ts = {0, 2 * 1000000L};
    nanosleep(&ts, NULL);
}

static size_t p_held(void *arg)
{
    return ((probe *)arg)->nheld;
}

static void p_progress(void *arg, char *buf, size_t n)
{
    snprintf(buf, n, "figure=%d", ((probe *)arg)->figure);
}

static bool p_stop(void *arg)
{
    probe *p = arg;
    return (p->stop_after_jobs && p->handled_jobs >= p->stop_after_jobs) ||
           (p->stop_after_turns && p->turns >= p->stop_after_turns);
}

static consumer_opts opts(const char *name, queue *q, const consumer_ops *ops, probe *p)
{
    return (consumer_opts){.name = name,
                           .q = q,
                           .ops = ops,
                           .arg = p,
                           .backoff_min_ms = 1,
                           .backoff_max_ms = 4,
                           .grace_ms = 2000};
}

TEST(settles_batches_and_stops_at_a_boundary)
{
    queue *p = open_q("c1", NULL), *q = open_q("c1", "k1");
    CHECK(p && q);
    CHECK_INT_EQ(push_n(p, 5), 0);
    probe pr = {.q = q, .want = 2, .settle = true, .stop_after_jobs = 5};
    consumer_ops ops = {.want = p_want, .handle = p_handle, .tick = p_tick, .stop = p_stop};
    consumer_opts o = opts("t1", q, &ops, &pr);
    consumer c;
    consumer_init(&c, &o);
    CHECK_INT_EQ(consumer_start(&c), 0);
    CHECK_INT_EQ(is_member(q, "k1"), 1);
    CHECK_INT_EQ(consumer_run(&c), 0);
    consumer_release(&c);
    CHECK_INT_EQ(pr.handled_jobs, 5);
    CHECK_INT_EQ(pr.batches, 3); /* 2 + 2 + 1 */
    CHECK_INT_EQ(c.handed_back, 0);
    CHECK_INT_EQ(llen(q, "ready"), 0);
    CHECK_INT_EQ(llen(q, "processing:k1"), 0);
    CHECK_INT_EQ(is_member(q, "k1"), 0); /* unregistered at the end */
    queue_close(p);
    queue_close(q);
}

TEST(again_hands_the_same_batch_back)
{
    queue *p = open_q("c2", NULL), *q = open_q("c2", "k2");
    CHECK(p && q);
    CHECK_INT_EQ(push_n(p, 1), 0);
    probe pr = {.q = q, .want = 1, .settle = true, .stop_after_jobs = 1, .again_left = 2};
    consumer_ops ops = {.want = p_want, .handle = p_handle, .stop = p_stop};
    consumer_opts o = opts("t2", q, &ops, &pr);
    consumer c;
    consumer_init(&c, &o);
    CHECK_INT_EQ(consumer_start(&c), 0);
    consumer_run(&c);
    consumer_release(&c);
    CHECK_INT_EQ(pr.handle_calls, 3);
    CHECK_INT_EQ(pr.first_seen_calls, 3);
    CHECK_STR_EQ(pr.first_seen, "{\"n\":0}");
    CHECK_INT_EQ(llen(q, "processing:k2"), 0);
    queue_close(p);
    queue_close(q);
}

TEST(unsettled_jobs_are_handed_back_at_the_end)
{
    queue *p = open_q("c3", NULL), *q = open_q("c3", "k3");
    CHECK(p && q);
    CHECK_INT_EQ(push_n(p, 3), 0);
    probe pr = {.q = q, .want = 3, .settle = false, .stop_after_jobs = 3};
    consumer_ops ops = {.want = p_want, .handle = p_handle, .stop = p_stop};
    consumer_opts o = opts("t3", q, &ops, &pr);
    consumer c;
    consumer_init(&c, &o);
    CHECK_INT_EQ(consumer_start(&c), 0);
    consumer_run(&c);
    consumer_release(&c);
    CHECK_INT_EQ(pr.handled_jobs, 3);
    CHECK_INT_EQ(c.handed_back, 3);
    CHECK_INT_EQ(llen(q, "ready"), 3);
    CHECK_INT_EQ(llen(q, "processing:k3"), 0);
    queue_close(p);
    queue_close(q);
}

TEST(holding_consumer_drains_then_takes_back_at_start)
{
    queue *p = open_q("c4", NULL), *q = open_q("c4", "k4");
    CHECK(p && q);
    CHECK_INT_EQ(push_n(p, 4), 0);
    /* Drain: stop once all 4 are held; one held job is acked per turn until none is left. */
    probe pr = {.q = q, .want = 4, .stop_after_jobs = 4, .release_per_tick = 1};
    consumer_ops ops = {
        .want = p_want, .handle = p_hold, .tick = p_tick, .held = p_held, .stop = p_stop};
    consumer_opts o = opts("t4", q, &ops, &pr);
    o.holds_jobs = true;
    consumer c;
    consumer_init(&c, &o);
    CHECK_INT_EQ(consumer_start(&c), 0);
    consumer_run(&c);
    consumer_release(&c);
    CHECK_INT_EQ(pr.nheld, 0);
    CHECK_INT_EQ(c.handed_back, 0);
    CHECK_INT_EQ(llen(q, "processing:k4"), 0);
    CHECK_INT_EQ(llen(q, "ready"), 0);

    /* A previous run that died holding two jobs: the next start takes them back. */
    CHECK_INT_EQ(push_n(p, 2), 0);
    queue_batch b = {0};
    CHECK_INT_EQ(queue_register(q), 0);
    CHECK_INT_EQ(queue_claim(q, 2, 0, &b), 2);
    queue_batch_release(&b);
    probe pr2 = {.q = q, .want = 0, .stop_after_turns = 1};
    consumer_opts o2 = opts("t4", q, &ops, &pr2);
    o2.holds_jobs = true;
    o2.grace_ms = 100;
    consumer_init(&c, &o2);
    CHECK_INT_EQ(consumer_start(&c), 0);
    CHECK_INT_EQ(c.handed_back_at_start, 2);
    CHECK_INT_EQ(llen(q, "ready"), 2);
    /* Fresh claims only, and what is still held after the grace goes back. */
    pr2.want = 2;
    pr2.stop_after_turns = 0;
    pr2.stop_after_jobs = 2;
    consumer_run(&c);
    consumer_release(&c);
    CHECK_INT_EQ(pr2.handled_jobs, 2);
    CHECK_INT_EQ(c.handed_back, 2);
    CHECK_INT_EQ(llen(q, "ready"), 2);
    for (size_t i = 0; i < pr2.nheld; i++)
        free(pr2.held[i].data);
    queue_close(p);
    queue_close(q);
}

TEST(progress_line_only_when_figures_change)
{
    queue *q = open_q("c5", "k5");
    CHECK(q);
    /* The log goes to stderr: catch it in a file for the run. */
    char path[300];
    snprintf(path, sizeof path, "%s/consumer-progress.log", env.dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600), saved = dup(2);
    CHECK(fd >= 0 && saved >= 0);
    fflush(stderr);
    dup2(fd, 2);
    probe pr = {.q = q, .want = 0, .stop_after_turns = 40, .bump_at_turn = 20};
    consumer_ops ops = {
        .want = p_want, .handle = p_handle, .tick = p_tick, .progress = p_progress, .stop = p_stop};
    consumer_opts o = opts("t5", q, &ops, &pr);
    o.progress_ms = 1; /* every turn (a turn is at least 2 ms) */
    consumer c;
    consumer_init(&c, &o);
    int st = consumer_start(&c);
    if (st == 0)
        consumer_run(&c);
    consumer_release(&c);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    CHECK_INT_EQ(st, 0);
    char buf[8192];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    CHECK(n > 0);
    buf[n] = '\0';
    int lines = 0;
    for (const char *s = buf; (s = strstr(s, "event=t5.progress")) != NULL; s++)
        lines++;
    CHECK_INT_EQ(pr.turns, 40);
    CHECK_MSG(lines == 2, "expected 2 progress lines (figure=0, figure=1), got %d:\n%s", lines,
              buf);
    CHECK_STR_CONTAINS(buf, "event=t5.progress figure=0");
    CHECK_STR_CONTAINS(buf, "event=t5.progress figure=1");
    queue_close(q);
}

/* The order in which jobs were handled: 'P' priority, 'B' bulk. */
static char order[32];

static consumer_result p_handle_bulk(void *arg, queue_batch *b)
{
    size_t n = strlen(order);
    for (size_t i = 0; i < b->n && n + 1 < sizeof order; i++)
        order[n++] = 'B';
    order[n] = '\0';
    return p_handle(arg, b);
}

static queue *prio_q;

static consumer_result p_handle_prio(void *arg, queue_batch *b)
{
    probe *p = arg;
    size_t n = strlen(order);
    for (size_t i = 0; i < b->n && n + 1 < sizeof order; i++)
        order[n++] = 'P';
    order[n] = '\0';
    p->handled_jobs += (int)b->n;
    return queue_ack(prio_q, b->jobs, b->n) == 0 ? CONSUMER_OK : CONSUMER_BACKOFF;
}

TEST(priority_queue_is_drained_first)
{
    queue *p = open_q("c6", NULL), *pp = open_q("c6p", NULL);
    queue *q = open_q("c6", "k6"), *pq = open_q("c6p", "k6");
    CHECK(p && pp && q && pq);
    prio_q = pq;
    CHECK_INT_EQ(push_n(p, 4), 0);
    CHECK_INT_EQ(push_n(pp, 3), 0);
    probe pr = {.q = q, .want = 2, .settle = true, .stop_after_jobs = 7};
    consumer_ops ops = {.want = p_want,
                        .handle = p_handle_bulk,
                        .handle_priority = p_handle_prio,
                        .tick = p_tick,
                        .stop = p_stop};
    consumer_opts o = opts("t6", q, &ops, &pr);
    o.priority = pq;
    consumer c;
    consumer_init(&c, &o);
    order[0] = '\0';
    CHECK_INT_EQ(consumer_start(&c), 0);
    CHECK_INT_EQ(is_member(pq, "k6"), 1);
    CHECK_INT_EQ(consumer_run(&c), 0);
    consumer_release(&c);
    /* 2 priority (a full claim: no bulk that turn), 1 priority + 2 bulk, then 2 bulk. */
    CHECK_STR_EQ(order, "PPPBBBB");
    CHECK_INT_EQ(llen(pq, "ready"), 0);
    CHECK_INT_EQ(llen(pq, "processing:k6"), 0);
    CHECK_INT_EQ(llen(q, "processing:k6"), 0);
    CHECK_INT_EQ(is_member(pq, "k6"), 0);
    queue_close(p);
    queue_close(pp);
    queue_close(q);
    queue_close(pq);
}

static queue *low_q;

static consumer_result p_handle_low(void *arg, queue_batch *b)
{
    probe *p = arg;
    size_t n = strlen(order);
    for (size_t i = 0; i < b->n && n + 1 < sizeof order; i++)
        order[n++] = 'L';
    order[n] = '\0';
    p->handled_jobs += (int)b->n;
    return queue_ack(low_q, b->jobs, b->n) == 0 ? CONSUMER_OK : CONSUMER_BACKOFF;
}

TEST(low_lane_is_drained_after_the_bulk_queue)
{
    queue *p = open_q("c7", NULL), *pl = open_q("c7l", NULL);
    queue *q = open_q("c7", "k7"), *lq = open_q("c7l", "k7");
    CHECK(p && pl && q && lq);
    low_q = lq;
    CHECK_INT_EQ(push_n(pl, 3), 0); /* the low jobs were there first */
    CHECK_INT_EQ(push_n(p, 4), 0);
    probe pr = {.q = q, .want = 2, .settle = true, .stop_after_jobs = 7};
    consumer_ops ops = {
        .want = p_want, .handle = p_handle_bulk, .handle_low = p_handle_low, .stop = p_stop};
    consumer_opts o = opts("t7", q, &ops, &pr);
    o.low = lq;
    o.low_max_wait_ms = 600000; /* only "bulk has no more ready work" opens the low lane */
    consumer c;
    consumer_init(&c, &o);
    order[0] = '\0';
    CHECK_INT_EQ(consumer_start(&c), 0);
    CHECK_INT_EQ(is_member(lq, "k7"), 1);
    CHECK_INT_EQ(consumer_run(&c), 0);
    consumer_release(&c);
    /* 2 bulk (a full claim: no low claim), 2 bulk, then (bulk empty) 2 low, 1 low. */
    CHECK_STR_EQ(order, "BBBBLLL");
    CHECK_INT_EQ(llen(lq, "ready"), 0);
    CHECK_INT_EQ(llen(lq, "processing:k7"), 0);
    CHECK_INT_EQ(is_member(lq, "k7"), 0);
    queue_close(p);
    queue_close(pl);
    queue_close(q);
    queue_close(lq);
}

TEST(low_lane_gets_its_turn_while_bulk_has_work)
{
    queue *p = open_q("c8", NULL), *pl = open_q("c8l", NULL);
    queue *q = open_q("c8", "k8"), *lq = open_q("c8l", "k8");
    CHECK(p && pl && q && lq);
    low_q = lq;
    CHECK_INT_EQ(push_n(pl, 2), 0);
    CHECK_INT_EQ(push_n(p, 12), 0);
    probe pr = {.q = q, .want = 2, .settle = true, .stop_after_jobs = 14};
    consumer_ops ops = {.want = p_want,
                        .handle = p_handle_bulk,
                        .handle_low = p_handle_low,
                        .tick = p_tick, /* 2 ms a turn */
                        .stop = p_stop};
    consumer_opts o = opts("t8", q, &ops, &pr);
    o.low = lq;
    o.low_max_wait_ms = 1;
    consumer c;
    consumer_init(&c, &o);
    order[0] = '\0';
    CHECK_INT_EQ(consumer_start(&c), 0);
    CHECK_INT_EQ(consumer_run(&c), 0);
    consumer_release(&c);
    /* The low jobs were taken while bulk work was still ready (not after all of it). */
    const char *first_low = strchr(order, 'L');
    CHECK_MSG(first_low && strrchr(order, 'B') > first_low, "order %s", order);
    CHECK_INT_EQ(llen(lq, "ready"), 0);
    CHECK_INT_EQ(llen(q, "ready"), 0);
    queue_close(p);
    queue_close(pl);
    queue_close(q);
    queue_close(lq);
}

static const test_case cases[] = {
    TEST_ENTRY(settles_batches_and_stops_at_a_boundary),
    TEST_ENTRY(again_hands_the_same_batch_back),
    TEST_ENTRY(unsettled_jobs_are_handed_back_at_the_end),
    TEST_ENTRY(holding_consumer_drains_then_takes_back_at_start),
    TEST_ENTRY(progress_line_only_when_figures_change),
    TEST_ENTRY(priority_queue_is_drained_first),
    TEST_ENTRY(low_lane_is_drained_after_the_bulk_queue),
    TEST_ENTRY(low_lane_gets_its_turn_while_bulk_has_work),
};

int main(int argc, char **argv)
{
    char err[256];
    if (testenv_start(&env, TESTENV_REDIS) != 0 ||
        !(rc = rconn_new(env.redis_url, 2000, err, sizeof err))) {
        fprintf(stderr, "test_consumer: cannot start redis\n");
        return 1;
    }
    int rcode = test_run_all(__FILE__, cases, sizeof cases / sizeof cases[0], argc, argv);
    rconn_free(rc);
    testenv_stop(&env);
    return rcode;
}
