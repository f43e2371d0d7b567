/*
 * bench_rate: a rate-limited campaign through the whole pipeline with several vendor
 * simulators sharing the limit (issue 15 point 1).
 *
 *   bench_rate [N] [--rate R] [--vendors V]
 *
 * Seeds N customers (default 30000) into a private devdb, starts the real programs
 * (minicrm-api, minicrm-worker --procs 2, minicrm-receipts and V minicrm-vendor-sim instances,
 * default 2, named vs-1..vs-V) on a private redis-server with vendor.rate_per_s = R (default
 * 500), creates one campaign matching every customer and waits until it is COMPLETED. Prints:
 *   - the total time from campaign creation to the last receipt applied, next to N / R;
 *   - the largest number of sends handed to the vendor in any one wall-clock second, summed
 *     over every simulator (their vendor.handed lines: second=, sends=), and the smallest
 *     of the full seconds in between;
 *   - the sends each simulator handed.
 * receipts.vendor_timeout_s is 600 here (the harness's 20 s would have the sweeper re-send
 * logs that are only waiting for their turn). Figures only; nothing is asserted.
 */
#include "pipeharness.h"
#include "timeutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAXV = 8, MAXSEC = 100000 };

static long long secs[MAXSEC];
static long cnt[MAXSEC];
static int nsec;

/* Add the vendor.handed lines of one log; the sends of that log. */
static long add_log(const char *path)
{
    FILE *f = fopen(path, "r");
    long total = 0;
    char line[1024];
    while (f && fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "vendor.handed");
        const char *ps = p ? strstr(p, "second=") : NULL;
        const char *pn = p ? strstr(p, "sends=") : NULL;
        if (!ps || !pn)
            continue;
        long long s = strtoll(ps + 7, NULL, 10);
        long c = strtol(pn + 6, NULL, 10);
        total += c;
        int k = 0;
        while (k < nsec && secs[k] != s)
            k++;
        if (k == nsec && nsec < MAXSEC) {
            secs[nsec] = s;
            cnt[nsec++] = 0;
        }
        if (k < MAXSEC)
            cnt[k] += c;
    }
    if (f)
        fclose(f);
    return total;
}

int main(int argc, char **argv)
{
    int n = 30000, nv = 2;
    double rate = 500;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rate") && i + 1 < argc)
            rate = strtod(argv[++i], NULL);
        else if (!strcmp(argv[i], "--vendors") && i + 1 < argc)
            nv = (int)strtol(argv[++i], NULL, 10);
        else
            n = (int)strtol(argv[i], NULL, 10);
    }
    if (n <= 0 || !(rate > 0) || nv < 1 || nv > MAXV) {
        fprintf(stderr, "usage: bench_rate [N] [--rate R] [--vendors 1-%d]\n", MAXV);
        return 2;
    }
    pipeh h = {0};
    pid_t vpid[MAXV] = {0};
    char vlog[MAXV][400];
    int rc = 1;
    if (pipeh_start(&h) != 0)
        goto out;
    char rbuf[32];
    snprintf(rbuf, sizeof rbuf, "%g", rate);
    setenv("MINICRM_VENDOR_RATE_PER_S", rbuf, 1);
    setenv("MINICRM_RECEIPTS_VENDOR_TIMEOUT_S", "600", 1);
    fprintf(stderr, "seeding %d customers...\n", n);
    if (pipeh_seed(&h, n) != 0)
        goto out;
    if (pipeh_spawn(&h, PH_API, NULL) != 0 ||
        pipeh_spawn(&h, PH_WORKER, (const char *const[]){"--procs", "2", NULL}) != 0 ||
        pipeh_spawn(&h, PH_RECEIPTS, NULL) != 0)
        goto out;
    for (int i = 0; i < nv; i++) {
        char name[16];
        snprintf(name, sizeof name, "vs-%d", i + 1);
        snprintf(vlog[i], sizeof vlog[i], "%s/vendor-%d.log", h.env.dir, i + 1);
        char *av[] = {(char *)testenv_bin("minicrm-vendor-sim"), "--name", name, NULL};
        vpid[i] = testenv_spawn(av, vlog[i]);
        if (vpid[i] <= 0)
            goto out;
    }
    bson_oid_t cid;
    int64_t t0 = time_mono_ms();
    if (pipeh_campaign(&h, "bench-rate", "{}", &cid) != 0)
        goto out;
    ph_campaign c;
    int64_t next = t0 + 5000;
    while (pipeh_read(&h, &cid, &c) != 0 || strcmp(c.status, "COMPLETED") != 0) {
        if (time_mono_ms() > t0 + 20 * 60 * 1000) {
            fprintf(stderr, "not completed after 20 minutes\n");
            goto out;
        }
        if (time_mono_ms() >= next) {
            fprintf(stderr, "  %5.1f s: %lld of %d final\n", (time_mono_ms() - t0) / 1000.0,
                    (long long)(c.sent + c.failed), n);
            next += 5000;
        }
        pipeh_sleep_ms(20);
    }
    int64_t took = time_mono_ms() - t0;
    /* The last second's vendor.handed line is written once that second is over. */
    long per[MAXV], total = 0;
    int64_t until = time_mono_ms() + 5000;
    do {
        pipeh_sleep_ms(200);
        nsec = 0;
        total = 0;
        for (int i = 0; i < nv; i++)
            total += per[i] = add_log(vlog[i]);
    } while (total < n && time_mono_ms() < until);
    long worst = 0, least = -1;
    long long first = 0, last = 0;
    for (int k = 0; k < nsec; k++) {
        worst = cnt[k] > worst ? cnt[k] : worst;
        first = !first || secs[k] < first ? secs[k] : first;
        last = secs[k] > last ? secs[k] : last;
    }
    for (int k = 0; k < nsec; k++) /* the full seconds: not the first or the last */
        if (secs[k] != first && secs[k] != last && (least < 0 || cnt[k] < least))
            least = cnt[k];
    printf("bench_rate: %d messages, vendor.rate_per_s=%g, %d vendor simulators\n", n, rate, nv);
    printf("  total time (create -> last receipt applied): %.2f s (N/rate = %.2f s, %+.1f%%)\n",
           took / 1000.0, n / rate, 100.0 * (took / 1000.0 - n / rate) / (n / rate));
    printf("  sends handed: %ld over %lld wall-clock seconds; most in one second: %ld (bound "
           "%.0f); fewest in a full second: %ld\n",
           total, last - first + 1, worst, rate * 1.1, least);
    for (int i = 0; i < nv; i++)
        printf("  vs-%d handed %ld\n", i + 1, per[i]);
    printf("  campaign: sent %lld failed %lld pending %lld\n", (long long)c.sent,
           (long long)c.failed, (long long)c.pending);
    rc = 0;
out:
    for (int i = 0; i < nv; i++)
        if (vpid[i] > 0) {
            kill(-vpid[i], SIGTERM);
            testenv_kill_wait(vpid[i], SIGTERM, 15000);
        }
    pipeh_stop(&h);
    return rc;
}
