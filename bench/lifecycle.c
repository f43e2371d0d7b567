/*
 * bench_lifecycle: how long the operator's moves take on a large campaign in flight.
 *
 *   bench_lifecycle [N] [--procs P]
 *
 * Seeds N customers (default 100000) into a private devdb, starts the real programs with their
 * default windows (vendor delay 100-900 ms, vendor_sim.max_inflight 200000), creates one
 * campaign matching every customer over HTTP and, once a tenth of it is final:
 *   - pause: the HTTP round trip and the API's own took_ms (MongoDB move + Redis flag + wait
 *     for the fan-out and the vendor to acknowledge), the final logs at the 200 and 3 s later
 *     (the messages already at the vendor, the stated bound), the held send jobs;
 *   - resume: round trip and took_ms, and the time until the next log becomes final;
 *   - cancel (once a third is final): round trip and took_ms (includes the snapshot of what the
 *     vendor holds and the bulk update_many), logs cancelled, counters checked
 *     (sent + failed + cancelled + pending = total).
 * Figures only; nothing is asserted.
 */
#include "campaign.h"
#include "dbpool.h"
#include "pipeharness.h"
#include "timeutil.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pipeh h;
static char key[200];

static size_t collect(char *p, size_t sz, size_t n, void *ud)
{
    char *b = ud;
    size_t have = strlen(b), add = sz * n;
    if (have + add >= 4096)
        add = 4095 - have;
    memcpy(b + have, p, add);
    b[have + add] = '\0';
    return sz * n;
}

/* method path body -> status; *ms the round trip; the answer's took_ms in *took (or -1). */
static long call(const char *method, const char *path, const char *body, double *ms,
                 long long *took, char *out)
{
    char url[300], auth[260];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", h.api_port, path);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
    out[0] = '\0';
    CURL *c = curl_easy_init();
    struct curl_slist *hd = curl_slist_append(NULL, auth);
    hd = curl_slist_append(hd, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 120000L);
    int64_t t0 = time_mono_us();
    long code = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (ms)
        *ms = (double)(time_mono_us() - t0) / 1000.0;
    curl_slist_free_all(hd);
    curl_easy_cleanup(c);
    if (took) {
        json_error_t je;
        json_t *j = json_loads(out, 0, &je);
        json_t *t = json_object_get(json_object_get(j, "transition"), "took_ms");
        *took = json_is_integer(t) ? (long long)json_integer_value(t) : -1;
        json_decref(j);
    }
    return code;
}

static long long finals(const bson_oid_t *cid)
{
    ph_campaign c;
    return pipeh_read(&h, cid, &c) == 0 ? c.sent + c.failed : -1;
}

static long long held(void)
{
    char k[300];
    snprintf(k, sizeof k, "%s{sends}:held:*", h.env.prefix);
    redisReply *r = rconn_command(h.rc, "KEYS %s", k);
    long long n = 0;
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        redisReply *l = rconn_command(h.rc, "LLEN %s", r->element[i]->str);
        n += l && l->type == REDIS_REPLY_INTEGER ? l->integer : 0;
        if (l)
            freeReplyObject(l);
    }
    if (r)
        freeReplyObject(r);
    return n;
}

int main(int argc, char **argv)
{
    long n = 100000;
    const char *procs = "2";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--procs") && i + 1 < argc) {
            procs = argv[++i];
        } else {
            char *end;
            n = strtol(argv[i], &end, 10);
            if (*end || n < 1000 || n > 20000000) {
                fprintf(stderr, "usage: bench_lifecycle [N >= 1000] [--procs P]\n");
                return 2;
            }
        }
    }
    setenv("MINICRM_LOG_LEVEL", "warn", 1);
    if (pipeh_start(&h) != 0) {
        pipeh_stop(&h);
        return 1;
    }
    setenv("MINICRM_VENDOR_SIM_MIN_DELAY_MS", "100", 1);
    setenv("MINICRM_VENDOR_SIM_MAX_DELAY_MS", "900", 1);
    setenv("MINICRM_VENDOR_SIM_SEED", "0", 1);
    setenv("MINICRM_MONGO_TIMEOUT_MS", "10000", 1);
    setenv("MINICRM_RECEIPTS_VENDOR_TIMEOUT_S", "120", 1);
    setenv("MINICRM_RECEIPTS_SWEEP_INTERVAL_S", "30", 1);
    setenv("MINICRM_RECEIPTS_RECOVER_AFTER_S", "60", 1);
    setenv("MINICRM_WORKERS_BATCH_SIZE", "1000", 1);
    int64_t t = time_mono_ms();
    if (pipeh_seed(&h, (int)n) != 0) {
        pipeh_stop(&h);
        return 1;
    }
    printf("seeded %ld customers in %.1f s\n", n, (time_mono_ms() - t) / 1000.0);
    const char *const wargs[] = {"--procs", procs, NULL};
    if (pipeh_make_key(&h, "admin", "bench", key, sizeof key) != 0 ||
        pipeh_spawn(&h, PH_API, NULL) || pipeh_spawn(&h, PH_WORKER, wargs) ||
        pipeh_spawn(&h, PH_RECEIPTS, NULL) || pipeh_spawn(&h, PH_VENDOR, NULL)) {
        pipeh_stop(&h);
        return 1;
    }
    char out[4096];
    /* The API answers once its indexes exist. */
    while (call("GET", "/api/campaigns?limit=1", NULL, NULL, NULL, out) != 200)
        pipeh_sleep_ms(200);
    double ms;
    long long took;
    long code = call("POST", "/api/campaigns", "{\"name\":\"bench-lifecycle\",\"rules\":{}}", &ms,
                     NULL, out);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    const char *id = json_string_value(json_object_get(json_object_get(j, "campaign"), "_id"));
    if (code != 201 || !id) {
        fprintf(stderr, "bench_lifecycle: create: %ld %s\n", code, out);
        json_decref(j);
        pipeh_stop(&h);
        return 1;
    }
    bson_oid_t cid;
    bson_oid_init_from_string(&cid, id);
    char path[200];
    json_decref(j);
    char hex[25];
    bson_oid_to_string(&cid, hex);
    while (finals(&cid) < n / 10)
        pipeh_sleep_ms(20);
    ph_campaign c;
    pipeh_read(&h, &cid, &c);
    printf("campaign of %ld: at the pause %lld logs written, %lld final\n", n, (long long)c.total,
           (long long)(c.sent + c.failed));

    snprintf(path, sizeof path, "/api/campaigns/%s/pause", hex);
    code = call("POST", path, "", &ms, &took, out);
    long long f0 = finals(&cid);
    printf("pause:  %ld in %.1f ms (API took_ms %lld)\n", code, ms, took);
    pipeh_sleep_ms(3000);
    long long f1 = finals(&cid);
    pipeh_sleep_ms(2000);
    long long f2 = finals(&cid);
    printf("        final logs: %lld at the 200, %lld +3 s, %lld +5 s (became final after the "
           "200: %lld); held send jobs %lld\n",
           f0, f1, f2, f2 - f0, held());

    snprintf(path, sizeof path, "/api/campaigns/%s/resume", hex);
    code = call("POST", path, "", &ms, &took, out);
    int64_t tr = time_mono_ms();
    while (finals(&cid) == f2 && time_mono_ms() - tr < 30000)
        pipeh_sleep_ms(5);
    printf("resume: %ld in %.1f ms (API took_ms %lld); next final log %lld ms after the 200\n",
           code, ms, took, (long long)(time_mono_ms() - tr));

    while (finals(&cid) < n / 3)
        pipeh_sleep_ms(20);
    snprintf(path, sizeof path, "/api/campaigns/%s/cancel", hex);
    pipeh_read(&h, &cid, &c);
    long long written = c.total;
    code = call("POST", path, "", &ms, &took, out);
    pipeh_read(&h, &cid, &c);
    printf("cancel: %ld in %.1f ms (API took_ms %lld); logs written before %lld, after: total "
           "%lld sent %lld failed %lld cancelled %lld pending %lld (sum ok: %s)\n",
           code, ms, took, written, (long long)c.total, (long long)c.sent, (long long)c.failed,
           (long long)c.cancelled, (long long)c.pending,
           c.sent + c.failed + c.cancelled + c.pending == c.total ? "yes" : "NO");
    int64_t td = time_mono_ms();
    while (c.pending > 0 && time_mono_ms() - td < 120000) {
        pipeh_sleep_ms(100);
        pipeh_read(&h, &cid, &c);
    }
    printf("        pending 0 after %.1f s: sent %lld failed %lld cancelled %lld total %lld\n",
           (time_mono_ms() - td) / 1000.0, (long long)c.sent, (long long)c.failed,
           (long long)c.cancelled, (long long)c.total);
    pipeh_stop(&h);
    return 0;
}
