/*
 * consumer: the consumer loop (see consumer.h for what it owns and the threading rules).
 *
 * One turn, in order:
 *   1. stop? A non-holding consumer ends here at once (it settles every batch before the next
 *      turn, so this is a batch boundary). A holding consumer enters its drain: no more claims,
 *      turns go on until ops->held() is 0 or grace_ms has passed.
 *   2. queue_maintain of q (and also_maintain). Redis error: back off, next turn.
 *   3. claim ops->want() jobs (skipped while draining or when want says 0). Redis error: back
 *      off, next turn.
 *   4. ops->handle(batch); CONSUMER_AGAIN repeats it with backoff (the jobs are still ours),
 *      giving up only when a stop is requested and the backoff is already at its longest (the
 *      jobs are then handed back at the end); CONSUMER_BACKOFF pauses once.
 *   4b. the low lane (consumer_opts.low), when the claim of 3 came back empty or the low lane
 *      has waited low_max_wait_ms: claim without blocking, ops->handle_low, as in 4.
 *   5. ops->tick(claimed).
 *   6. the progress figures, every progress_ms, logged only when they changed.
 *
 * Backoff sleeps end early on a stop request, except while a holding consumer drains: there a
 * sleep must really pause, or a Redis outage during the drain would spin the loop.
 */
#include "consumer.h"

#include "log.h"
#include "signals.h"
#include "timeutil.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

void consumer_init(consumer *c, const consumer_opts *o)
{
    memset(c, 0, sizeof *c);
    c->o = *o;
    if (c->o.backoff_min_ms < 1)
        c->o.backoff_min_ms = 1;
    if (c->o.backoff_max_ms < c->o.backoff_min_ms)
        c->o.backoff_max_ms = c->o.backoff_min_ms;
    if (c->o.low_max_wait_ms <= 0)
        c->o.low_max_wait_ms = CONSUMER_LOW_MAX_WAIT_MS;
    c->pause_ms = c->o.backoff_min_ms;
    queue_batch_init(&c->batch);
}

void consumer_release(consumer *c)
{
    if (c)
        queue_batch_release(&c->batch);
}

static bool stop_requested(const consumer *c)
{
    return c->o.ops->stop ? c->o.ops->stop(c->o.arg) : signals_stop_requested();
}

/* Sleep the current backoff, then double it (up to backoff_max_ms). Returns true if a stop
 * request cut short a sleep that was already the longest: the caller then stops retrying. */
static bool backoff(consumer *c)
{
    bool cut;
    if (c->stopping) {
        struct timespec ts = {c->pause_ms / 1000, (long)(c->pause_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        cut = false;
    } else {
        cut = signals_sleep_ms(c->pause_ms);
    }
    bool longest = c->pause_ms >= c->o.backoff_max_ms;
    c->pause_ms = c->pause_ms * 2 > c->o.backoff_max_ms ? c->o.backoff_max_ms : c->pause_ms * 2;
    return cut && longest;
}

static void progress(consumer *c, bool force, const char *event)
{
    if (!c->o.ops->progress)
        return;
    char buf[sizeof c->last_progress];
    buf[0] = '\0';
    c->o.ops->progress(c->o.arg, buf, sizeof buf);
    if (!force && strcmp(buf, c->last_progress) == 0)
        return;
    log_info(event, "%s", buf);
    memcpy(c->last_progress, buf, sizeof buf);
}

int consumer_start(consumer *c)
{
    char ev[64];
    snprintf(ev, sizeof ev, "%s.redis_wait", c->o.name);
    while (!stop_requested(c)) {
        int back = c->o.holds_jobs ? queue_release_claimed(c->o.q) : 0;
        if (back >= 0 && c->o.priority && c->o.holds_jobs) {
            int pb = queue_release_claimed(c->o.priority);
            back = pb < 0 ? -1 : back + pb;
        }
        if (back >= 0 && c->o.low && c->o.holds_jobs) {
            int lb = queue_release_claimed(c->o.low);
            back = lb < 0 ? -1 : back + lb;
        }
        if (back >= 0 && c->o.priority && queue_register(c->o.priority) != 0)
            back = -1;
        if (back >= 0 && c->o.low && queue_register(c->o.low) != 0)
            back = -1;
        if (back >= 0 && queue_register(c->o.q) == 0) {
            c->handed_back_at_start = back;
            c->next_progress_ms = time_mono_ms() + c->o.progress_ms;
            c->next_low_ms = time_mono_ms() + c->o.low_max_wait_ms;
            return 0;
        }
        log_warn(ev, "detail=\"%s\"", queue_error(c->o.q));
        signals_sleep_ms(500);
    }
    return -1;
}

/* Hand the claimed batch to `handle` until it is not CONSUMER_AGAIN (backing off between
 * tries), then free it. Returns true (a batch was handled). */
static bool handle_batch(consumer *c, consumer_result (*handle)(void *, queue_batch *),
                         const char *ev_again, queue *from)
{
    consumer_result r;
    while ((r = handle(c->o.arg, &c->batch)) == CONSUMER_AGAIN) {
        log_warn(ev_again, "jobs=%zu detail=\"%s\"", c->batch.n, queue_error(from));
        if (backoff(c))
            break;
    }
    if (r == CONSUMER_BACKOFF)
        backoff(c);
    queue_batch_release(&c->batch);
    return true;
}

int consumer_run(consumer *c)
{
    const consumer_ops *ops = c->o.ops;
    char ev_err[64], ev_again[64], ev_progress[64], ev_stopping[64];
    snprintf(ev_err, sizeof ev_err, "%s.redis_error", c->o.name);
    snprintf(ev_again, sizeof ev_again, "%s.batch_retry", c->o.name);
    snprintf(ev_progress, sizeof ev_progress, "%s.progress", c->o.name);
    snprintf(ev_stopping, sizeof ev_stopping, "%s.stopping", c->o.name);
    int64_t drain_until = 0;
    for (;;) {
        if (!c->stopping && stop_requested(c)) {
            c->stopping = true;
            if (!c->o.holds_jobs)
                break;
            drain_until = time_mono_ms() + c->o.grace_ms;
            progress(c, true, ev_stopping);
        }
        if (c->stopping &&
            (!ops->held || ops->held(c->o.arg) == 0 || time_mono_ms() >= drain_until))
            break;
        if (queue_maintain(c->o.q) != 0) {
            log_warn(ev_err, "detail=\"%s\"", queue_error(c->o.q));
            backoff(c);
            continue;
        }
        if (c->o.priority && queue_maintain(c->o.priority) != 0) {
            log_warn(ev_err, "detail=\"%s\"", queue_error(c->o.priority));
            backoff(c);
            continue;
        }
        if (c->o.low && queue_maintain(c->o.low) != 0) {
            log_warn(ev_err, "detail=\"%s\"", queue_error(c->o.low));
            backoff(c);
            continue;
        }
        if (c->o.also_maintain && queue_maintain(c->o.also_maintain) != 0) {
            log_warn(ev_err, "detail=\"%s\"", queue_error(c->o.also_maintain));
            backoff(c);
            continue;
        }
        bool claimed = false;
        int block = c->o.block_ms;
        size_t want = c->stopping ? 0 : ops->want ? ops->want(c->o.arg, &block) : 1;
        if (!c->stopping && c->o.priority && time_mono_ms() >= c->next_priority_ms) {
            /* The priority queue first, without blocking; also when the program wants no bulk
             * jobs now (a full in-flight window), so one-off sends are not held back by it. */
            size_t pwant = want ? want : CONSUMER_PRIORITY_MIN_CLAIM;
            int n = c->o.holds_jobs ? queue_claim_fresh(c->o.priority, pwant, 0, &c->batch)
                                    : queue_claim(c->o.priority, pwant, 0, &c->batch);
            if (n < 0) {
                log_warn(ev_err, "detail=\"%s\"", queue_error(c->o.priority));
                backoff(c);
                continue;
            }
            c->next_priority_ms = n > 0 ? 0 : time_mono_ms() + CONSUMER_PRIORITY_POLL_MS;
            if (n > 0 && handle_batch(c, ops->handle_priority ? ops->handle_priority : ops->handle,
                                      ev_again, c->o.priority))
                block = 0;
            if (want > 0 && (size_t)n >= want)
                want = 0; /* a full priority claim: maybe more of them, no bulk claim yet */
        }
        if (c->o.priority && block > CONSUMER_PRIORITY_BLOCK_MS)
            block = CONSUMER_PRIORITY_BLOCK_MS;
        if (c->o.low && c->low_more)
            block = 0; /* low work is ready: do not wait for bulk work */
        if (want > 0) {
            int n = c->o.holds_jobs ? queue_claim_fresh(c->o.q, want, block, &c->batch)
                                    : queue_claim(c->o.q, want, block, &c->batch);
            if (n < 0) {
                log_warn(ev_err, "detail=\"%s\"", queue_error(c->o.q));
                backoff(c);
                continue;
            }
            claimed = true;
            c->pause_ms = c->o.backoff_min_ms;
            if (n > 0)
                handle_batch(c, ops->handle, ev_again, c->o.q);
            /* The low lane: only when q has no ready work (nothing in q waits behind it), or
             * when it has waited its longest. */
            if (c->o.low && !c->stopping && (n == 0 || time_mono_ms() >= c->next_low_ms)) {
                int nl = c->o.holds_jobs ? queue_claim_fresh(c->o.low, want, 0, &c->batch)
                                         : queue_claim(c->o.low, want, 0, &c->batch);
                if (nl < 0) {
                    log_warn(ev_err, "detail=\"%s\"", queue_error(c->o.low));
                    backoff(c);
                    continue;
                }
                c->next_low_ms = time_mono_ms() + c->o.low_max_wait_ms;
                c->low_more = (size_t)nl >= want;
                if (nl > 0)
                    handle_batch(c, ops->handle_low ? ops->handle_low : ops->handle, ev_again,
                                 c->o.low);
            }
        }
        if (ops->tick)
            ops->tick(c->o.arg, claimed);
        c->pause_ms = c->o.backoff_min_ms;
        if (c->o.progress_ms > 0 && time_mono_ms() >= c->next_progress_ms) {
            c->next_progress_ms = time_mono_ms() + c->o.progress_ms;
            progress(c, false, ev_progress);
        }
    }
    bool holds = !c->o.holds_jobs || (ops->held && ops->held(c->o.arg) > 0);
    c->handed_back = holds ? queue_release_claimed(c->o.q) : 0;
    if (holds && c->o.priority) {
        int pb = queue_release_claimed(c->o.priority);
        c->handed_back = pb < 0 || c->handed_back < 0 ? -1 : c->handed_back + pb;
    }
    if (holds && c->o.low) {
        int lb = queue_release_claimed(c->o.low);
        c->handed_back = lb < 0 || c->handed_back < 0 ? -1 : c->handed_back + lb;
    }
    return 0;
}
