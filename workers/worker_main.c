/*
 * minicrm-worker: the campaign fan-out worker pool.
 *
 * `minicrm-worker --procs N` is a supervisor that forks N worker processes and restarts any that
 * dies (exponential backoff per slot, 100 ms doubling to 10 s, reset after a minute of uptime).
 * Each worker opens its own Redis and MongoDB connections after fork (never shared across
 * fork), claims campaign jobs from the campaigns queue and runs fanout_run on each (the claim,
 * housekeeping, backoff and hand-back loop is lib/consumer's). Instances on
 * other hosts share the same queues: the consumer id carries host and pid, and a dead host's
 * claims are reaped back once its heartbeats expire.
 *
 * SIGTERM/SIGINT to the supervisor: forwarded to the workers, which stop claiming, stop the
 * fan-out at the next batch boundary (checkpoint saved), hand the job back to the queue and exit
 * 0; after workers.shutdown_timeout_s the supervisor SIGKILLs stragglers (their claims are
 * reaped later, nothing is lost) and exits 0.
 */
#include "consumer.h"
#include "dbpool.h"
#include "fanout.h"
#include "jobs.h"
#include "log.h"
#include "progargs.h"
#include "queue.h"
#include "rconn.h"
#include "signals.h"
#include "timeutil.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const progargs_flag flags[] = {
    {"--procs", "workers.procs", "worker processes to run"},
    {"--batch", "workers.batch_size", "logs written and sends pushed per batch"},
    {"--redis", "redis.url", "Redis URL"},
    {"--mongo", "mongo.uri", "MongoDB URI"},
};

/* ---- one worker process ------------------------------------------------------------------ */

/* One campaign job per claim: run the fan-out and settle the job by its outcome. */
static consumer_result handle_campaign(void *arg, queue_batch *b)
{
    fanout_ctx *x = arg;
    queue *camps = x->campaigns;
    char why[300] = "", buf[25];
    const char *hex =
        jobs_campaign_decode(b->jobs[0].data, b->jobs[0].len, buf, why, sizeof why) == 0 ? buf
                                                                                         : NULL;
    fanout_result fr = hex ? fanout_run(x, hex, why, sizeof why) : FANOUT_UNKNOWN;
    switch (fr) {
    case FANOUT_DONE:
    case FANOUT_HALTED: /* paused or cancelled: a resume enqueues the campaign again */
        queue_ack(camps, b->jobs, 1);
        break;
    case FANOUT_LOST:
        /* The checkpoint moved under us: another worker is ahead, or our own update that
         * timed out was applied late. Either way, run again from the checkpoint as it
         * stands (a finished fan-out is then a no-op); acking here would abandon the
         * campaign in the second case. */
        log_warn("worker.checkpoint_moved", "campaign=%s", hex ? hex : "?");
        queue_retry(camps, &b->jobs[0], "checkpoint moved; resuming from it");
        break;
    case FANOUT_UNKNOWN:
        log_error("worker.dead_letter", "detail=\"%s\"", why);
        queue_dead(camps, &b->jobs[0], why);
        break;
    case FANOUT_RETRY:
        log_warn("worker.retry", "campaign=%s detail=\"%s\"", hex ? hex : "?", why);
        queue_retry(camps, &b->jobs[0], why);
        break;
    case FANOUT_STOPPED:
        break; /* the consumer hands it back when its loop ends */
    }
    return CONSUMER_OK;
}

/* Between claims: promote due scheduled campaigns (every turn: at most a second apart when idle),
 * rebuild the schedule from MongoDB once at start, repair the pause/cancel flags from MongoDB
 * and queue again the campaigns left without a job (fanout_rescue_stalled) and finish the cancels
 * left with PENDING logs (fanout_finish_cancels) every 3 s, and publish the campaign events a
 * crash left unpublished (fanout_rescue_events). */
static void tick_repair(void *arg, bool claimed)
{
    (void)claimed;
    fanout_ctx *x = arg;
    if (!x->schedule_rebuilt)
        x->schedule_rebuilt = fanout_schedule_rebuild(x) >= 0;
    if (fanout_schedule_tick(x) < 0)
        log_warn("worker.schedule_failed", "detail=\"%s\"", rconn_error(x->rc));
    int64_t now = time_mono_ms();
    if (now < x->next_repair_ms)
        return;
    x->next_repair_ms = now + 3000;
    if (fanout_repair_flags(x) < 0)
        log_warn("worker.flags_repair_failed", "detail=\"%s\"", rconn_error(x->rc));
    if (fanout_rescue_stalled(x) < 0)
        log_warn("worker.rescue_failed", "detail=\"%s\"", rconn_error(x->rc));
    if (fanout_finish_cancels(x) < 0)
        log_warn("worker.cancel_finish_failed", "detail=\"%s\"", rconn_error(x->rc));
    fanout_rescue_events(x); /* logs its own failure */
}

static const consumer_ops worker_ops = {.handle = handle_campaign, .tick = tick_repair};

static int worker_run(minicrm_config *cfg, int slot)
{
    char err[256], cid[QUEUE_MAX_CONSUMER], role[32];
    int rc = 1;
    queue *camps = NULL, *sends = NULL;
    rconn *r = rconn_new(cfg->redis.url, cfg->redis.timeout_ms, err, sizeof err);
    dbpool *db =
        r ? dbpool_new(cfg->mongo.uri, 2, cfg->mongo.timeout_ms, "minicrm-worker", err, sizeof err)
          : NULL;
    if (!r || !db || dbpool_set_durable_wc(db, cfg->mongo.write_concern, err, sizeof err) != 0) {
        log_error("worker.start_failed", "detail=\"%s\"", err);
        goto out;
    }
    queue_opts qo;
    queue_opts_from_config(&qo, cfg);
    snprintf(role, sizeof role, "worker%d", slot);
    camps = queue_open(r, cfg->redis.prefix, QUEUE_CAMPAIGNS,
                       queue_consumer_id(role, cid, sizeof cid), &qo, err, sizeof err);
    sends =
        camps ? queue_open(r, cfg->redis.prefix, QUEUE_SENDS, NULL, &qo, err, sizeof err) : NULL;
    if (!camps || !sends) {
        log_error("worker.start_failed", "detail=\"%s\"", err);
        goto out;
    }
    fanout_ctx x = {
        .cfg = cfg, .db = db, .campaigns = camps, .sends = sends, .rc = r, .owner = cid};
    /* One campaign at a time, blocking a second when idle; the sends queue it produces to is
     * maintained too (its due retries and dead consumers). */
    consumer c;
    consumer_init(&c, &(consumer_opts){.name = "worker",
                                       .q = camps,
                                       .also_maintain = sends,
                                       .ops = &worker_ops,
                                       .arg = &x,
                                       .block_ms = 1000,
                                       .backoff_min_ms = 100,
                                       .backoff_max_ms = 5000});
    if (consumer_start(&c) == 0) {
        log_info("worker.started", "consumer=%s", cid);
        consumer_run(&c);
    }
    log_info("worker.stopped", "logs_written=%lld handed_back=%d", x.written, c.handed_back);
    consumer_release(&c);
    rc = 0;
out:
    queue_close(camps);
    queue_close(sends);
    dbpool_free(db);
    rconn_free(r);
    return rc;
}

/* ---- supervisor -------------------------------------------------------------------------- */

typedef struct slot {
    pid_t pid;
    int64_t started_ms, restart_at_ms;
    int backoff_ms;
} slot;

static pid_t spawn(minicrm_config *cfg, int i)
{
    pid_t pid = fork();
    if (pid == 0) {
        signals_install(); /* own self-pipe in the child */
        int rc = worker_run(cfg, i);
        cfg_release(cfg);
        _exit(rc);
    }
    return pid;
}

int main(int argc, char **argv)
{
    minicrm_config cfg;
    progargs pa;
    int st = prog_start("minicrm-worker", "[--procs N]", argc, argv, flags,
                        sizeof flags / sizeof flags[0], false, &cfg, &pa);
    if (st != 0)
        return st == 1 ? 0 : st;
    progargs_release(&pa);
    if (signals_install() != 0) {
        cfg_release(&cfg);
        return 1;
    }
    int n = cfg.workers.procs;
    slot *s = calloc((size_t)n, sizeof *s);
    if (!s) {
        cfg_release(&cfg);
        return 1;
    }
    log_info("worker.supervisor", "procs=%d", n);
    for (int i = 0; i < n; i++) {
        s[i].backoff_ms = 100;
        s[i].pid = spawn(&cfg, i);
        s[i].started_ms = time_mono_ms();
    }
    while (!signals_stop_requested()) {
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            for (int i = 0; i < n; i++) {
                if (s[i].pid != pid)
                    continue;
                int64_t now = time_mono_ms();
                if (now - s[i].started_ms > 60000)
                    s[i].backoff_ms = 100;
                log_warn("worker.died", "slot=%d pid=%d status=%d signal=%d restart_in_ms=%d", i,
                         (int)pid, WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                         WIFSIGNALED(status) ? WTERMSIG(status) : 0, s[i].backoff_ms);
                s[i].pid = 0;
                s[i].restart_at_ms = now + s[i].backoff_ms;
                s[i].backoff_ms = s[i].backoff_ms * 2 > 10000 ? 10000 : s[i].backoff_ms * 2;
            }
        }
        int64_t now = time_mono_ms();
        for (int i = 0; i < n; i++) {
            if (s[i].pid == 0 && now >= s[i].restart_at_ms) {
                s[i].pid = spawn(&cfg, i);
                s[i].started_ms = now;
                if (s[i].pid < 0) {
                    log_error("worker.fork_failed", "detail=\"%s\"", strerror(errno));
                    s[i].pid = 0;
                    s[i].restart_at_ms = now + 1000;
                }
            }
        }
        signals_sleep_ms(100);
    }
    /* Stop: forward, wait up to the shutdown timeout, then SIGKILL. */
    for (int i = 0; i < n; i++)
        if (s[i].pid > 0)
            kill(s[i].pid, SIGTERM);
    int64_t deadline = time_mono_ms() + (int64_t)cfg.workers.shutdown_timeout_s * 1000;
    int alive = 0;
    do {
        alive = 0;
        for (int i = 0; i < n; i++) {
            if (s[i].pid <= 0)
                continue;
            int status;
            if (waitpid(s[i].pid, &status, WNOHANG) == s[i].pid)
                s[i].pid = 0;
            else
                alive++;
        }
        if (alive) {
            struct timespec ts = {0, 20 * 1000000L};
            nanosleep(&ts, NULL);
        }
    } while (alive && time_mono_ms() < deadline);
    for (int i = 0; i < n; i++) {
        if (s[i].pid > 0) {
            log_warn("worker.kill", "slot=%d pid=%d", i, (int)s[i].pid);
            kill(s[i].pid, SIGKILL);
            waitpid(s[i].pid, NULL, 0);
        }
    }
    log_info("worker.supervisor_stopped", NULL);
    free(s);
    cfg_release(&cfg);
    return 0;
}
