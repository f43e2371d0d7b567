/*
 * metrics: request counters and latency histograms of minicrm-api, rendered in the Prometheus
 * text exposition format by GET /metrics.
 *
 * Sized once for the route labels it is given (plus one "unmatched" slot); it knows nothing of
 * the router and updated lock-free with relaxed
 * atomics from every handler thread; reading while writing gives a consistent-enough snapshot
 * (each counter is exact, the set may be a few requests apart), as Prometheus expects.
 *
 * Ownership: metrics_new() returns an object freed with metrics_free(); metrics_render()
 * appends to a caller-owned growable buffer.
 */
#ifndef MINICRM_API_METRICS_H
#define MINICRM_API_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct api_metrics api_metrics;

/* One slot per route label (labels[i] is route index i, e.g. "GET /customers/:id"; copied), plus
 * "unmatched". NULL when out of memory. */
api_metrics *metrics_new(const char *const *labels, size_t nlabels);
void metrics_free(api_metrics *m);

/* Record one finished request. route_index -1 = unmatched; status 0 = no response. */
void metrics_observe(api_metrics *m, int route_index, int status, int64_t dur_us);

/* Count one campaign move (campaign_status values) for minicrm_campaign_transitions_total. */
void metrics_campaign_move(api_metrics *m, int from, int to);

/* A growable text buffer with a size cap. */
typedef struct mbuf {
    char *data;
    size_t len, cap, max;
    int failed; /* out of memory or over max */
} mbuf;
void mbuf_printf(mbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mbuf_release(mbuf *b);

/* Append the request metrics in Prometheus text format. */
void metrics_render(const api_metrics *m, mbuf *out);

#endif
