/*
 * pacer: sends waiting on the rate limits, handed out as the limits allow (design in pacer.h).
 *
 * Layout: two FIFO arrays of groups (lane 0 priority, lane 1 bulk); a group is the not yet
 * handed part [pos, n) of one claimed job's sends, with its campaign, rate and the time before
 * which its campaign's limiter said not to ask again. Finished groups are removed at the end of
 * a run (one compaction per lane), so a run costs O(groups) plus one throttle call per group
 * that is allowed to ask.
 */
#include "pacer.h"

#include <stdlib.h>
#include <string.h>

typedef struct group {
    void *owner;
    jobs_send_in *sends; /* owned */
    size_t pos, n;
    char campaign[25];
    double rate;
    int64_t not_before; /* mono ms: its campaign's limiter said wait until then */
} group;

typedef struct lane {
    group *g;
    size_t n, cap;
} lane;

struct pacer {
    throttle *t;
    double global_rate;
    pacer_hand_fn fn;
    void *arg;
    lane lanes[2];       /* 0 priority, 1 bulk */
    int64_t pause_until; /* mono ms: the global limiter or a 429 said wait until then */
    size_t waiting;
    pacer_stats st;
};

pacer *pacer_new(throttle *t, double global_rate, pacer_hand_fn fn, void *arg)
{
    pacer *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->t = t;
    p->global_rate = global_rate;
    p->fn = fn;
    p->arg = arg;
    return p;
}

void pacer_free(pacer *p)
{
    if (!p)
        return;
    for (int l = 0; l < 2; l++) {
        for (size_t i = 0; i < p->lanes[l].n; i++)
            free(p->lanes[l].g[i].sends);
        free(p->lanes[l].g);
    }
    free(p);
}

int pacer_add(pacer *p, void *owner, bool priority, const char *campaign_hex, double campaign_rate,
              jobs_send_in *sends, size_t n)
{
    if (n == 0) {
        free(sends);
        return 0;
    }
    lane *ln = &p->lanes[priority ? 0 : 1];
    if (ln->n == ln->cap) {
        size_t cap = ln->cap ? ln->cap * 2 : 16;
        group *g = realloc(ln->g, cap * sizeof *g);
        if (!g) {
            free(sends);
            return -1;
        }
        ln->g = g;
        ln->cap = cap;
    }
    group *g = &ln->g[ln->n++];
    memset(g, 0, sizeof *g);
    g->owner = owner;
    g->sends = sends;
    g->n = n;
    g->rate = priority ? 0 : campaign_rate; /* one-off sends: the global limiter only */
    if (campaign_hex && strlen(campaign_hex) == 24)
        memcpy(g->campaign, campaign_hex, 25);
    p->waiting += n;
    return 0;
}

static int64_t at_least(int64_t w)
{
    return w < PACER_MIN_WAIT_MS ? PACER_MIN_WAIT_MS : w;
}

/* Drop finished groups of a lane, keeping the order of the others. */
static void compact(lane *ln)
{
    size_t k = 0;
    for (size_t i = 0; i < ln->n; i++) {
        if (ln->g[i].pos < ln->g[i].n)
            ln->g[k++] = ln->g[i];
        else
            free(ln->g[i].sends);
    }
    ln->n = k;
}

/* One group's turn. 1 go on with the next group, 0 stop the run (the pacer sleeps), -1 error. */
static int serve(pacer *p, lane *ln, group *g, int64_t now, long *handed)
{
    long want = (long)(g->n - g->pos), granted;
    int64_t wait;
    throttle_by by;
    if (throttle_take_sends(p->t, p->global_rate, g->campaign, g->rate, want, &granted, &wait,
                            &by) != 0)
        return -1;
    if (granted > 0) {
        size_t accepted = 0;
        int64_t retry_after = 0;
        if (p->fn(p->arg, g->owner, g->sends + g->pos, (size_t)granted, &accepted, &retry_after) !=
            0)
            return -1;
        g->pos += accepted;
        p->waiting -= accepted;
        p->st.handed += (long long)accepted;
        *handed += (long)accepted;
        if (accepted < (size_t)granted) {
            /* The vendor's own limit: everyone here waits for its Retry-After. */
            p->st.refused429 += (long long)((size_t)granted - accepted);
            p->pause_until = now + at_least(retry_after);
            return 0;
        }
    }
    if (granted < want) {
        p->st.waits++;
        if (by == THROTTLE_CAMPAIGN) {
            for (size_t i = 0; i < ln->n; i++)
                if (!strcmp(ln->g[i].campaign, g->campaign))
                    ln->g[i].not_before = now + at_least(wait);
            return 1;
        }
        p->pause_until = now + at_least(wait);
        return 0;
    }
    return 1;
}

long pacer_run(pacer *p, int64_t now_ms)
{
    if (now_ms < p->pause_until || p->waiting == 0)
        return 0;
    long handed = 0;
    int rc = 1;
    for (int l = 0; l < 2 && rc == 1; l++) {
        lane *ln = &p->lanes[l];
        for (size_t i = 0; i < ln->n && rc == 1; i++) {
            group *g = &ln->g[i];
            if (g->pos < g->n && g->not_before <= now_ms)
                rc = serve(p, ln, g, now_ms, &handed);
        }
        compact(ln);
    }
    if (rc < 0) {
        p->pause_until = now_ms + 200; /* Redis or the vendor trouble: try again shortly */
        return -1;
    }
    return handed;
}

int64_t pacer_next_ms(const pacer *p, int64_t now_ms)
{
    if (p->waiting == 0)
        return INT64_MAX;
    if (p->pause_until > now_ms)
        return p->pause_until;
    int64_t next = INT64_MAX;
    for (int l = 0; l < 2; l++)
        for (size_t i = 0; i < p->lanes[l].n; i++) {
            const group *g = &p->lanes[l].g[i];
            if (g->pos < g->n && g->not_before < next)
                next = g->not_before;
        }
    return next < now_ms ? now_ms : next;
}

size_t pacer_waiting(const pacer *p)
{
    return p->waiting;
}

size_t pacer_waiting_campaign(const pacer *p, const char *campaign_hex)
{
    size_t n = 0;
    const lane *ln = &p->lanes[1];
    for (size_t i = 0; i < ln->n; i++)
        if (!strcmp(ln->g[i].campaign, campaign_hex))
            n += ln->g[i].n - ln->g[i].pos;
    return n;
}

size_t pacer_waiting_ready(const pacer *p, int64_t now_ms)
{
    size_t n = 0;
    for (int l = 0; l < 2; l++)
        for (size_t i = 0; i < p->lanes[l].n; i++) {
            const group *g = &p->lanes[l].g[i];
            if (g->not_before <= now_ms)
                n += g->n - g->pos;
        }
    return n;
}

void pacer_get_stats(const pacer *p, pacer_stats *out)
{
    *out = p->st;
}
