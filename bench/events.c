/*
 * bench_events: what open dashboards cost the API while a campaign runs (issue 16 point 4).
 *
 *   bench_events [N] [--viewers V]
 *
 * Seeds N customers (default 20000) into a private devdb, starts the real programs
 * (minicrm-api, minicrm-worker, minicrm-receipts, minicrm-vendor-sim on a private redis-server;
 * the vendor posts its receipts to the API, which is the API's load during a campaign), then
 * runs three campaigns over every customer, one after the other:
 *   A  with no viewer,
 *   B  with V viewers (default 100) holding GET /api/events open (raw sockets read by one
 *      thread of this program, which counts the events each receives),
 *   A2 with no viewer again (the spread between A and A2 is the noise of the measure).
 * For each: the wall time from creation to COMPLETED and the API's CPU over it (utime + stime
 * of its process, as a percentage of one core). Prints the difference B - mean(A, A2) in
 * percentage points of one core, and the events per viewer. Figures only; nothing is asserted.
 */
#include "pipeharness.h"
#include "timeutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_VIEWERS 1000

static double api_cpu_s(pid_t pid)
{
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *rp = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (!rp || sscanf(rp + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* ---- viewers: V event streams read by one thread -------------------------------------- */

static int g_fd[MAX_VIEWERS];
static long g_events[MAX_VIEWERS];
static int g_nviewers;
static atomic_bool g_stop;

static int open_stream(int port, const char *key)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept: "
                     "text/event-stream\r\nAuthorization: Bearer %s\r\n\r\n",
                     port, key);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        close(fd);
        return -1;
    }
    return fd;
}

static void *read_streams(void *arg)
{
    (void)arg;
    struct pollfd p[MAX_VIEWERS];
    char buf[65536];
    while (!atomic_load(&g_stop)) {
        for (int i = 0; i < g_nviewers; i++)
            p[i] = (struct pollfd){.fd = g_fd[i], .events = POLLIN};
        if (poll(p, (nfds_t)g_nviewers, 200) <= 0)
            continue;
        for (int i = 0; i < g_nviewers; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t k = recv(g_fd[i], buf, sizeof buf - 1, 0);
            if (k <= 0) {
                g_fd[i] = -1; /* poll ignores negative descriptors */
                continue;
            }
            buf[k] = '\0';
            for (char *s = buf; (s = strstr(s, "event: tick")) != NULL; s += 11)
                g_events[i]++;
        }
    }
    return NULL;
}

/* ---- one campaign, measured ----------------------------------------------------------- */

typedef struct run {
    double wall_s, cpu_s;
} run;

static int one_campaign(pipeh *h, const char *name, run *out)
{
    bson_oid_t cid;
    double c0 = api_cpu_s(h->pid[PH_API]);
    int64_t t0 = time_mono_ms();
    if (pipeh_campaign(h, name, "{}", &cid) != 0)
        return -1;
    ph_campaign c;
    if (pipeh_wait_completed(h, &cid, 600000, &c) != 0) {
        fprintf(stderr, "bench_events: %s did not complete\n", name);
        return -1;
    }
    out->wall_s = (double)(time_mono_ms() - t0) / 1000.0;
    out->cpu_s = api_cpu_s(h->pid[PH_API]) - c0;
    printf("%-22s %8.1f s  API CPU %6.2f s = %5.1f%% of one core  (sent %lld, failed %lld)\n", name,
           out->wall_s, out->cpu_s, 100.0 * out->cpu_s / out->wall_s, (long long)c.sent,
           (long long)c.failed);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    int n = 20000, viewers = 100;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--viewers") && i + 1 < argc)
            viewers = (int)strtol(argv[++i], NULL, 10);
        else
            n = (int)strtol(argv[i], NULL, 10);
    }
    if (n <= 0 || viewers <= 0 || viewers > MAX_VIEWERS) {
        fprintf(stderr, "usage: bench_events [N] [--viewers V (1..%d)]\n", MAX_VIEWERS);
        return 2;
    }
    char vmax[32];
    snprintf(vmax, sizeof vmax, "%d", viewers + 10);
    setenv("MINICRM_API_EVENTS_MAX_STREAMS", vmax, 1);
    pipeh h;
    if (pipeh_start(&h) != 0)
        return 1;
    int status = 1;
    char key[128];
    pthread_t tid;
    bool reader = false;
    if (pipeh_seed(&h, n) != 0 || pipeh_start_all(&h) != 0 ||
        pipeh_make_key(&h, "staff", "bench-viewers", key, sizeof key) != 0) {
        fprintf(stderr, "bench_events: the system did not start\n");
        goto out;
    }
    printf("bench_events: %d customers, %d viewers, %ld cores\n", n, viewers,
           sysconf(_SC_NPROCESSORS_ONLN));
    run a, b, a2;
    if (one_campaign(&h, "A  (0 viewers)", &a) != 0)
        goto out;
    for (int i = 0; i < viewers; i++) {
        g_fd[i] = open_stream(h.api_port, key);
        if (g_fd[i] < 0) {
            fprintf(stderr, "bench_events: stream %d did not open\n", i);
            goto out;
        }
    }
    g_nviewers = viewers;
    if (pthread_create(&tid, NULL, read_streams, NULL) != 0)
        goto out;
    reader = true;
    pipeh_sleep_ms(2000); /* pacing: let every stream get its first event before measuring */
    long before = 0;
    for (int i = 0; i < viewers; i++)
        before += g_events[i];
    char label[64];
    snprintf(label, sizeof label, "B  (%d viewers)", viewers);
    if (one_campaign(&h, label, &b) != 0)
        goto out;
    long events = 0, open = 0;
    for (int i = 0; i < viewers; i++) {
        events += g_events[i];
        open += g_fd[i] >= 0;
    }
    atomic_store(&g_stop, true);
    pthread_join(tid, NULL);
    reader = false;
    for (int i = 0; i < viewers; i++)
        if (g_fd[i] >= 0)
            close(g_fd[i]);
    pipeh_sleep_ms(2000); /* pacing: the closed streams are found at the next event */
    if (one_campaign(&h, "A2 (0 viewers)", &a2) != 0)
        goto out;
    double pa = 100.0 * a.cpu_s / a.wall_s, pa2 = 100.0 * a2.cpu_s / a2.wall_s;
    double pb = 100.0 * b.cpu_s / b.wall_s;
    printf("API CPU: %.1f%% / %.1f%% of one core with 0 viewers, %.1f%% with %d viewers: "
           "%+.1f points (%+.0f%% of the 0-viewer figure)\n",
           pa, pa2, pb, viewers, pb - (pa + pa2) / 2,
           100.0 * (pb - (pa + pa2) / 2) / ((pa + pa2) / 2));
    printf("events per viewer during B: %.1f over %.1f s (%ld of %d streams still open)\n",
           (double)(events - before) / viewers, b.wall_s, open, viewers);
    status = 0;
out:
    if (reader) {
        atomic_store(&g_stop, true);
        pthread_join(tid, NULL);
    }
    pipeh_stop(&h);
    return status;
}
