/*
 * bench_jscan: parsing a vendor send batch with jansson versus lib/jscan.
 *
 * The input has the shape the fan-out worker queues and the vendor simulator parses:
 * {"campaign_id": "<24 hex>", "sends": [{"log_id": "<24 hex>", "customer_id": "<24 hex>",
 * "message": "..."}, ...]} with 500 sends of ~200 bytes each (~100 KB; every tenth message
 * carries escapes). Each round parses the batch and copies out the log_id of every send, the
 * work the simulator does per batch:
 *   - jansson: json_loadb(buf, len, 0) + json_object_get(send, "log_id") per send + decref;
 *   - jscan:   jscan_parse into one reused jscan + jscan_get / jscan_str_copy per send.
 * Rounds (default 1000, argv[1] overrides) are timed with a monotonic clock; the figures are
 * microseconds per send and per batch. No assertions: figures only (bench/README.md).
 */
#include "jscan.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SENDS 500

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The batch text in a malloc'd buffer (caller frees); *len its length. */
static char *make_batch(size_t *len)
{
    size_t cap = 256 + SENDS * 400, n = 0;
    char *b = malloc(cap);
    if (!b)
        return NULL;
    n += (size_t)snprintf(b + n, cap - n,
                          "{\"campaign_id\":\"65f0c0ffee0000000000abcd\",\"sends\":[");
    for (int i = 0; i < SENDS; i++) {
        const char *msg = i % 10 == 0
                              ? "Hi Ren\\u00e9e, your \\\"spring\\\" offer:\\n10% off everything "
                                "until Sunday. Reply STOP to opt out."
                              : "Hi Alice Johnson, as one of our loyal customers you get 10% off "
                                "your next order at the Main Street store until Sunday, 31 March. "
                                "Show this message at the till. Reply STOP to opt out.";
        n += (size_t)snprintf(b + n, cap - n,
                              "%s{\"log_id\":\"65f0c0ffee%014d\",\"customer_id\":"
                              "\"65f0beef00%014d\",\"message\":\"%s\"}",
                              i ? "," : "", i, i * 7, msg);
    }
    n += (size_t)snprintf(b + n, cap - n, "]}");
    *len = n;
    return b;
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? strtol(argv[1], NULL, 10) : 1000;
    if (rounds <= 0)
        rounds = 1000;
    size_t len;
    char *buf = make_batch(&len);
    if (!buf) {
        fprintf(stderr, "bench_jscan: out of memory\n");
        return 1;
    }
    char lid[64];
    unsigned long check_jansson = 0, check_jscan = 0;

    /* jansson */
    double t0 = now_s();
    for (long r = 0; r < rounds; r++) {
        json_error_t err;
        json_t *root = json_loadb(buf, len, 0, &err);
        if (!root) {
            fprintf(stderr, "bench_jscan: jansson: %s\n", err.text);
            return 1;
        }
        json_t *sends = json_object_get(root, "sends");
        size_t i;
        json_t *s;
        json_array_foreach(sends, i, s)
        {
            const char *v = json_string_value(json_object_get(s, "log_id"));
            size_t n = strlen(v);
            memcpy(lid, v, n + 1);
            check_jansson += (unsigned char)lid[n - 1];
        }
        json_decref(root);
    }
    double t_jansson = now_s() - t0;

    /* jscan */
    jscan js;
    jscan_init(&js);
    t0 = now_s();
    for (long r = 0; r < rounds; r++) {
        if (jscan_parse(&js, buf, len) < 0) {
            fprintf(stderr, "bench_jscan: jscan: %s\n", js.err);
            return 1;
        }
        int sends = jscan_get(&js, 0, "sends");
        for (int e = jscan_child(&js, sends); e > 0 && (uint32_t)e < js.t[sends].next;
             e = (int)js.t[e].next) {
            size_t n = jscan_str_copy(&js, jscan_get(&js, e, "log_id"), lid, sizeof lid);
            check_jscan += (unsigned char)lid[n - 1];
        }
    }
    double t_jscan = now_s() - t0;

    /* jscan parse only, to separate validation from the lookups. */
    t0 = now_s();
    for (long r = 0; r < rounds; r++)
        jscan_parse(&js, buf, len);
    double t_parse = now_s() - t0;
    size_t ntok = js.n;
    jscan_release(&js);
    free(buf);

    double per = (double)rounds * SENDS;
    printf("batch: %d sends, %zu bytes, %zu tokens; %ld rounds\n", SENDS, len, ntok, rounds);
    printf("jansson  json_loadb + log_id per send: %8.3f us/send  %8.1f us/batch  %7.1f MB/s\n",
           t_jansson * 1e6 / per, t_jansson * 1e6 / (double)rounds,
           (double)len * (double)rounds / t_jansson / 1e6);
    printf("jscan    parse + log_id per send:      %8.3f us/send  %8.1f us/batch  %7.1f MB/s\n",
           t_jscan * 1e6 / per, t_jscan * 1e6 / (double)rounds,
           (double)len * (double)rounds / t_jscan / 1e6);
    printf("jscan    parse only:                   %8.3f us/send  %8.1f us/batch  %7.1f MB/s\n",
           t_parse * 1e6 / per, t_parse * 1e6 / (double)rounds,
           (double)len * (double)rounds / t_parse / 1e6);
    printf("speed-up (jansson / jscan, with lookups): %.1fx\n", t_jansson / t_jscan);
    if (check_jansson != check_jscan) {
        fprintf(stderr, "bench_jscan: the two parsers extracted different log_ids\n");
        return 1;
    }
    return 0;
}
