/*
 * poster: POSTs batches of delivery receipts to the API, signed, over one keep-alive connection.
 *
 * One reused libcurl easy handle (so the TCP connection is kept alive between POSTs) sends
 * `[r1,r2,...]` to {API_BASE_URL}/api/receipts/delivery with
 *   Content-Type: application/json
 *   X-Timestamp: unix seconds
 *   X-Signature: hex HMAC-SHA256(VENDOR_SECRET, timestamp "." body)     (lib/hmac)
 * Outcomes are classified so the caller can retry or set aside: POSTER_OK (2xx), POSTER_RETRY
 * (network error, timeout, 5xx, 401, 408, 429), POSTER_REJECTED (any other 4xx: the API will
 * never accept these bytes). Not thread-safe; one poster per thread.
 */
#ifndef MINICRM_VENDOR_POSTER_H
#define MINICRM_VENDOR_POSTER_H

#include <stddef.h>

typedef enum { POSTER_OK = 0, POSTER_RETRY = 1, POSTER_REJECTED = 2 } poster_result;

typedef struct poster poster;

/* base_url and secret are copied. NULL on out-of-memory or libcurl failure. */
poster *poster_new(const char *base_url, const char *secret, int timeout_ms);
/* The same, posting to .../api/receipts/delivery?QUERY (e.g. "lane=priority"; copied). */
poster *poster_new_query(const char *base_url, const char *query, const char *secret,
                         int timeout_ms);
void poster_free(poster *p);
/* POST the JSON body (len bytes). *status gets the HTTP status (0 if none); detail gets a short
 * description of a failure. */
poster_result poster_post(poster *p, const char *body, size_t len, long *status, char *detail,
                          size_t detaillen);

#endif
