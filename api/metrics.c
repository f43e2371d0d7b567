/*
 * metrics: see metrics.h.
 *
 * Layout: for each route slot (routes 0..n-1, then "unmatched"), a row of request counters per
 * tracked status code (plus "other"), and one latency histogram (cumulative-by-render buckets,
 * sum in microseconds, count). All cells are _Atomic uint64 updated with relaxed ordering.
 */
#include "metrics.h"

#include "campaign.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const int k_statuses[] = {0,   200, 201, 202, 204, 302, 400, 401, 403,
                                 404, 405, 409, 413, 415, 429, 500, 503};
#define NSTATUS ((int)(sizeof k_statuses / sizeof k_statuses[0]))
/* Bucket upper bounds in seconds (Prometheus convention), +Inf implied. */
static const double k_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                   0.1,   0.25,   0.5,   1,    2.5,   10};
#define NBUCKET ((int)(sizeof k_buckets / sizeof k_buckets[0]))

typedef struct slot {
    atomic_uint_fast64_t by_status[NSTATUS + 1]; /* last = other */
    atomic_uint_fast64_t buckets[NBUCKET + 1];   /* non-cumulative; last = +Inf */
    atomic_uint_fast64_t sum_us;
    atomic_uint_fast64_t count;
} slot;

struct api_metrics {
    /* campaign moves made by the API, by (from, to) state */
    atomic_uint_fast64_t moves[CAMPAIGN_STATUS_COUNT][CAMPAIGN_STATUS_COUNT];
    size_t nslots;
    slot *slots;
    char **labels; /* nslots - 1 owned copies */
};

api_metrics *metrics_new(const char *const *labels, size_t nlabels)
{
    api_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->nslots = nlabels + 1;
    m->slots = calloc(m->nslots, sizeof *m->slots);
    m->labels = calloc(m->nslots, sizeof *m->labels);
    if (!m->slots || !m->labels) {
        metrics_free(m);
        return NULL;
    }
    for (size_t i = 0; i < nlabels; i++) {
        m->labels[i] = strdup(labels[i] ? labels[i] : "");
        if (!m->labels[i]) {
            metrics_free(m);
            return NULL;
        }
    }
    return m;
}

void metrics_free(api_metrics *m)
{
    if (!m)
        return;
    for (size_t i = 0; m->labels && i + 1 < m->nslots; i++)
        free(m->labels[i]);
    free(m->labels);
    free(m->slots);
    free(m);
}

void metrics_observe(api_metrics *m, int route_index, int status, int64_t dur_us)
{
    if (!m)
        return;
    size_t si = (route_index >= 0 && (size_t)route_index < m->nslots - 1) ? (size_t)route_index
                                                                          : m->nslots - 1;
    slot *s = &m->slots[si];
    int k = NSTATUS;
    for (int i = 0; i < NSTATUS; i++)
        if (k_statuses[i] == status) {
            k = i;
            break;
        }
    atomic_fetch_add_explicit(&s->by_status[k], 1, memory_order_relaxed);
    double secs = (double)dur_us / 1e6;
    int b = NBUCKET;
    for (int i = 0; i < NBUCKET; i++)
        if (secs <= k_buckets[i]) {
            b = i;
            break;
        }
    atomic_fetch_add_explicit(&s->buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->sum_us, (uint_fast64_t)(dur_us > 0 ? dur_us : 0),
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
}

void mbuf_printf(mbuf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n =
            vsnprintf(b->data ? b->data + b->len : NULL, b->data ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if (b->data && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t want = b->cap ? b->cap * 2 : 4096;
        while (want < b->len + (size_t)n + 1)
            want *= 2;
        if (b->max && want > b->max) {
            if (b->len + (size_t)n + 1 > b->max) {
                b->failed = 1;
                return;
            }
            want = b->max;
        }
        char *nd = realloc(b->data, want);
        if (!nd) {
            b->failed = 1;
            return;
        }
        b->data = nd;
        b->cap = want;
    }
}

void mbuf_release(mbuf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

static const char *slot_label(const api_metrics *m, size_t i)
{
    if (i + 1 == m->nslots)
        return "unmatched";
    return m->labels[i];
}

void metrics_campaign_move(api_metrics *m, int from, int to)
{
    if (m && from >= 0 && from < CAMPAIGN_STATUS_COUNT && to >= 0 && to < CAMPAIGN_STATUS_COUNT)
        atomic_fetch_add_explicit(&m->moves[from][to], 1, memory_order_relaxed);
}

void metrics_render(const api_metrics *m, mbuf *out)
{
    mbuf_printf(out, "# HELP minicrm_campaign_transitions_total Campaign state moves made through "
                     "the API (pause, resume, cancel).\n"
                     "# TYPE minicrm_campaign_transitions_total counter\n");
    for (int f = 0; f < CAMPAIGN_STATUS_COUNT; f++)
        for (int t = 0; t < CAMPAIGN_STATUS_COUNT; t++) {
            uint_fast64_t v = atomic_load_explicit(&m->moves[f][t], memory_order_relaxed);
            if (v)
                mbuf_printf(out, "minicrm_campaign_transitions_total{from=\"%s\",to=\"%s\"} %llu\n",
                            campaign_status_name((campaign_status)f),
                            campaign_status_name((campaign_status)t), (unsigned long long)v);
        }
    mbuf_printf(out, "# HELP minicrm_http_requests_total HTTP requests by route and status.\n"
                     "# TYPE minicrm_http_requests_total counter\n");
    for (size_t i = 0; i < m->nslots; i++) {
        const slot *s = &m->slots[i];
        for (int k = 0; k <= NSTATUS; k++) {
            uint_fast64_t v = atomic_load_explicit(&s->by_status[k], memory_order_relaxed);
            if (!v)
                continue;
            char st[16];
            if (k == NSTATUS)
                snprintf(st, sizeof st, "other");
            else
                snprintf(st, sizeof st, "%d", k_statuses[k]);
            mbuf_printf(out, "minicrm_http_requests_total{route=\"%s\",status=\"%s\"} %llu\n",
                        slot_label(m, i), st, (unsigned long long)v);
        }
    }
    mbuf_printf(out, "# HELP minicrm_http_request_duration_seconds Request latency by route.\n"
                     "# TYPE minicrm_http_request_duration_seconds histogram\n");
    for (size_t i = 0; i < m->nslots; i++) {
        const slot *s = &m->slots[i];
        uint_fast64_t count = atomic_load_explicit(&s->count, memory_order_relaxed);
        if (!count)
            continue;
        const char *lab = slot_label(m, i);
        unsigned long long cum = 0;
        for (int b = 0; b < NBUCKET; b++) {
            cum += atomic_load_explicit(&s->buckets[b], memory_order_relaxed);
            mbuf_printf(out,
                        "minicrm_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} "
                        "%llu\n",
                        lab, k_buckets[b], cum);
        }
        cum += atomic_load_explicit(&s->buckets[NBUCKET], memory_order_relaxed);
        mbuf_printf(out,
                    "minicrm_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} "
                    "%llu\n",
                    lab, cum);
        mbuf_printf(out, "minicrm_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", lab,
                    (double)atomic_load_explicit(&s->sum_us, memory_order_relaxed) / 1e6);
        mbuf_printf(out, "minicrm_http_request_duration_seconds_count{route=\"%s\"} %llu\n", lab,
                    cum);
    }
}
