/*
 * bench_campaign: one campaign through the whole pipeline, timed.
 *
 *   bench_campaign [N] [--procs P] [--min-delay MS] [--max-delay MS] [--durable[=MODE]]
 *                  [--priority K] [--suppressed PCT] [--cluster[=S]] [--replicas=0|1]
 *                  [--events on|off]
 *
 * Seeds N customers (default 100000) into a private devdb (in memory; --durable: with its
 * journal on disk, --sync always unless given), starts the real programs
 * (minicrm-api, minicrm-worker --procs P (default 2), minicrm-receipts, minicrm-vendor-sim with
 * the vendor delay on, 100-900 ms by default) on a private redis-server, creates one campaign
 * matching every customer and waits until it is COMPLETED. Prints:
 *   - messages per second from campaign creation to the last receipt applied,
 *   - p50 / p99 of send -> receipt-applied latency (log createdAt -> updatedAt of the update
 *     that made it final; includes the vendor's delay), and p50 / p90 of its two parts: the
 *     log written -> the vendor's delivery (createdAt -> deliveredAt: the sends queue, the claim
 *     and the vendor's delay) and the vendor's delivery -> the receipt applied (deliveredAt ->
 *     updatedAt: the vendor's outbox, the POST, the receipts queue and worker),
 *   - the peak RSS (VmHWM) of each program (for minicrm-worker: the largest of its processes),
 *   - CPU seconds and microseconds per message of each program, from campaign creation on;
 *   - the priority lane: while the campaign drains, a thread posts K one-off messages
 *     (POST /api/messages, default 50, one every 200 ms, to customers of the audience); p50 /
 *     p99 / max of their POST -> receipt-applied latency (the wall clock before the POST ->
 *     updatedAt of the log made final), next to the bulk figures;
 * and every 2 s, on stderr, the logs written and final so far, the receipt jobs (one per POST of
 * the vendor) waiting in the receipts queue and in the receipt events queue, and each
 * program's %CPU.
 * --suppressed PCT puts PCT% of the customers (i % 100 < PCT) on the suppression list before
 * the clock starts (lib/suppress, batches of 1000): the campaign then skips them inside its
 * audience query, and the figures show what that costs (issue 15: within noise of none).
 * --cluster[=S]: the same on a local Redis Cluster of 3 masters and 3 replicas
 * (scripts/cluster.sh through tests/cluster's clusterenv) with queue.shards=S (default 6);
 * "redis" CPU is then the sum over the six nodes (replication included), and the bench also
 * prints how evenly the shards of sends and receipts were used (items acked per shard);
 * --replicas=0: 3 masters only, to see what the replicas cost.
 * Redis's own figures from campaign creation on: CPU of the one server, or of the masters and
 * of the replicas separately, and each group's INFO commandstats (calls and microseconds per
 * command; CONFIG RESETSTAT at creation), so one Redis and the cluster compare command by
 * command.
 * --events on runs the simulator's receipt events at the configured defaults (bounce 2%,
 * complaint 0.1%, open 30%, click 5%); off (the default: the delivery pipeline alone, as the
 * headline figure and the BullMQ comparison measure it) sets their rates to 0.
 * Figures only; nothing is asserted.
 */
#include "campaign.h"
#include "clusterenv.h"
#include "dbpool.h"
#include "pipeharness.h"
#include "suppress.h"
#include "timeutil.h"

#include <curl/curl.h>
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

/* Largest VmHWM (kB) among the processes of process group pgid; their CPU time (utime + stime,
 * seconds) summed in *cpu_s when cpu_s is not NULL. */
static long peak_rss_kb(pid_t pgid, int *nprocs, double *cpu_s)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    long best = 0;
    *nprocs = 0;
    while (d && (e = readdir(d))) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0)
            continue;
        char path[64], buf[4096];
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *rp = strrchr(buf, ')');
        if (!rp)
            continue;
        char state;
        long ppid, pgrp, ign;
        unsigned long ut, st;
        if (sscanf(rp + 2, "%c %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %lu %lu", &state, &ppid,
                   &pgrp, &ign, &ign, &ign, &ign, &ign, &ign, &ign, &ign, &ut, &st) != 13 ||
            pgrp != pgid)
            continue;
        if (cpu_s)
            *cpu_s += (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
        snprintf(path, sizeof path, "/proc/%ld/status", pid);
        f = fopen(path, "r");
        if (!f)
            continue;
        char line[256];
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "VmHWM:", 6)) {
                long kb = strtol(line + 6, NULL, 10);
                if (kb > best)
                    best = kb;
                (*nprocs)++;
            }
        fclose(f);
    }
    if (d)
        closedir(d);
    return best;
}

static clusterenv g_cluster; /* --cluster: the local cluster (else not started) */
static int g_shards;         /* --cluster: queue.shards */
static int g_replicas = 1;   /* --replicas=0: the cluster without replicas (3 masters only) */

/* CPU seconds of Redis so far: the one redis-server, or every node of the cluster (each a
 * daemon, its own process group). */
static double redis_cpu_s(pipeh *h)
{
    int ign;
    double cpu = 0;
    if (!g_cluster.started) {
        peak_rss_kb(h->env.redis_pid, &ign, &cpu);
        return cpu;
    }
    for (int i = 0; i < g_cluster.nodes; i++) {
        pid_t pid = clusterenv_pid(&g_cluster, g_cluster.ports[i]);
        if (pid > 0)
            peak_rss_kb(pid, &ign, &cpu);
    }
    return cpu;
}

/* ---- Redis's own accounting: CPU per node and INFO commandstats, from campaign start -------- */

enum { RS_MAXCMD = 96 };
typedef struct rs_cmd {
    char name[64];
    long long calls, usec;
} rs_cmd;
/* One group of nodes (the one redis-server; or the masters, or the replicas, of the cluster). */
typedef struct rs_group {
    double cpu_s;
    long long repl_bytes; /* replication stream written (masters with replicas) */
    int nodes;
    rs_cmd cmd[RS_MAXCMD];
    int ncmd;
} rs_group;

static int g_nnodes;               /* nodes measured: 1, or the cluster's */
static int g_node_port[16];        /* their ports */
static pid_t g_node_pid[16];       /* and pids */
static double g_node_cpu0[16];     /* CPU seconds at campaign start */
static long long g_node_repl0[16]; /* master_repl_offset at campaign start */

/* master_repl_offset of a node (bytes of its replication stream so far), or 0. */
static long long rs_repl_offset(redisContext *ctx)
{
    long long v = 0;
    redisReply *r = ctx ? redisCommand(ctx, "INFO replication") : NULL;
    const char *at =
        r && r->type == REDIS_REPLY_STRING ? strstr(r->str, "master_repl_offset:") : NULL;
    if (at)
        v = strtoll(at + 19, NULL, 10);
    if (r)
        freeReplyObject(r);
    return v;
}

static redisContext *rs_connect(int port)
{
    struct timeval tv = {2, 0};
    redisContext *ctx = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (ctx && ctx->err) {
        redisFree(ctx);
        return NULL;
    }
    return ctx;
}

/* Remember every node's CPU and zero its command statistics: the campaign's figures start here. */
static void rs_start(pipeh *h)
{
    int ign;
    g_nnodes = 0;
    if (!g_cluster.started) {
        if (h->env.redis_port > 0) {
            g_node_port[0] = h->env.redis_port;
            g_node_pid[0] = h->env.redis_pid;
            g_nnodes = 1;
        }
    } else {
        for (int i = 0; i < g_cluster.nodes && i < 16; i++) {
            g_node_port[g_nnodes] = g_cluster.ports[i];
            g_node_pid[g_nnodes++] = clusterenv_pid(&g_cluster, g_cluster.ports[i]);
        }
    }
    for (int i = 0; i < g_nnodes; i++) {
        g_node_cpu0[i] = 0;
        if (g_node_pid[i] > 0)
            peak_rss_kb(g_node_pid[i], &ign, &g_node_cpu0[i]);
        redisContext *ctx = rs_connect(g_node_port[i]);
        g_node_repl0[i] = rs_repl_offset(ctx);
        redisReply *r = ctx ? redisCommand(ctx, "CONFIG RESETSTAT") : NULL;
        if (r)
            freeReplyObject(r);
        if (ctx)
            redisFree(ctx);
    }
}

/* Add one node's "cmdstat_NAME:calls=C,usec=U,..." lines to g. */
static void rs_add_commandstats(rs_group *g, const char *info)
{
    for (const char *l = strstr(info, "cmdstat_"); l; l = strstr(l + 1, "cmdstat_")) {
        const char *name = l + 8, *colon = strchr(name, ':');
        const char *calls = colon ? strstr(colon, "calls=") : NULL;
        const char *usec = colon ? strstr(colon, "usec=") : NULL;
        if (!calls || !usec)
            break;
        size_t nl = (size_t)(colon - name);
        int k;
        for (k = 0; k < g->ncmd; k++)
            if (strlen(g->cmd[k].name) == nl && !strncmp(g->cmd[k].name, name, nl))
                break;
        if (k == g->ncmd) {
            if (g->ncmd == RS_MAXCMD || nl >= sizeof g->cmd[0].name)
                continue;
            snprintf(g->cmd[k].name, sizeof g->cmd[k].name, "%.*s", (int)nl, name);
            g->ncmd++;
        }
        g->cmd[k].calls += strtoll(calls + 6, NULL, 10);
        g->cmd[k].usec += strtoll(usec + 5, NULL, 10);
    }
}

static int cmp_cmd_usec(const void *a, const void *b)
{
    const rs_cmd *x = a, *y = b;
    return x->usec < y->usec ? 1 : x->usec > y->usec ? -1 : 0;
}

static void rs_print_group(const char *what, rs_group *g, long long msgs)
{
    /* (no sum over commands: a script's time includes the commands it ran, listed too) */
    printf("redis %-8s %d node%s: CPU %.2f s = %.2f us/message\n", what, g->nodes,
           g->nodes == 1 ? "" : "s", g->cpu_s, g->cpu_s * 1e6 / (double)msgs);
    if (g->repl_bytes > 0)
        printf("    replication stream to the replicas: %.1f MB = %.0f bytes/message\n",
               g->repl_bytes / 1e6, (double)g->repl_bytes / (double)msgs);
    qsort(g->cmd, (size_t)g->ncmd, sizeof g->cmd[0], cmp_cmd_usec);
    for (int k = 0; k < g->ncmd && k < 12; k++)
        printf("    %-16s calls %9lld (%7.4f/message)  usec %9lld (%.3f us/message, %.2f "
               "us/call)\n",
               g->cmd[k].name, g->cmd[k].calls, (double)g->cmd[k].calls / (double)msgs,
               g->cmd[k].usec, (double)g->cmd[k].usec / (double)msgs,
               g->cmd[k].calls ? (double)g->cmd[k].usec / (double)g->cmd[k].calls : 0);
}

/* Print CPU since rs_start per group (one redis; or masters and replicas as they are now) and
 * each group's commands by time spent. */
static void rs_report(long long msgs)
{
    static rs_group g[2]; /* [0] masters (or the one redis), [1] replicas */
    int ign;
    memset(g, 0, sizeof g);
    for (int i = 0; i < g_nnodes; i++) {
        redisContext *ctx = rs_connect(g_node_port[i]);
        redisReply *role = ctx ? redisCommand(ctx, "ROLE") : NULL;
        int k = role && role->type == REDIS_REPLY_ARRAY && role->elements > 0 &&
                        role->element[0]->type == REDIS_REPLY_STRING &&
                        !strcmp(role->element[0]->str, "slave")
                    ? 1
                    : 0;
        double cpu = 0;
        if (g_node_pid[i] > 0)
            peak_rss_kb(g_node_pid[i], &ign, &cpu);
        g[k].cpu_s += cpu - g_node_cpu0[i];
        if (k == 0 && g_cluster.started && g_cluster.nodes == 6)
            g[k].repl_bytes += rs_repl_offset(ctx) - g_node_repl0[i];
        g[k].nodes++;
        redisReply *r = ctx ? redisCommand(ctx, "INFO commandstats") : NULL;
        if (r && r->type == REDIS_REPLY_STRING)
            rs_add_commandstats(&g[k], r->str);
        if (r)
            freeReplyObject(r);
        if (role)
            freeReplyObject(role);
        if (ctx)
            redisFree(ctx);
    }
    if (!g_cluster.started) {
        rs_print_group("server", &g[0], msgs);
        return;
    }
    rs_print_group("masters", &g[0], msgs);
    if (g[1].nodes)
        rs_print_group("replicas", &g[1], msgs);
}

/* CPU seconds of every program so far: [0..PH_NPROCS) as pipeh, then devdb, redis. */
static void cpu_now(pipeh *h, double out[PH_NPROCS + 2])
{
    int ign;
    for (int i = 0; i < PH_NPROCS + 2; i++)
        out[i] = 0;
    for (int i = 0; i < PH_NPROCS; i++)
        peak_rss_kb(h->pid[i], &ign, &out[i]);
    peak_rss_kb(h->env.devdb_pid, &ign, &out[PH_NPROCS]);
    out[PH_NPROCS + 1] = redis_cpu_s(h);
}

/* How evenly the shards of queue qname carried the campaign: items acked per shard. */
static void print_shard_use(pipeh *h, const char *qname)
{
    long long v[256], pushed[256], sum = 0, lo = -1, hi = 0;
    int n = g_shards > 256 ? 256 : g_shards;
    for (int i = 0; i < n; i++) {
        redisReply *r = rconn_command(h->rc, "HGET %s{%s:%d}:stats items", h->env.prefix, qname, i);
        v[i] = r && r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
        if (r)
            freeReplyObject(r);
        r = rconn_command(h->rc, "HGET %s{%s:%d}:stats pushed", h->env.prefix, qname, i);
        pushed[i] = r && r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
        if (r)
            freeReplyObject(r);
        sum += v[i];
        lo = lo < 0 || v[i] < lo ? v[i] : lo;
        hi = v[i] > hi ? v[i] : hi;
    }
    double mean = n ? (double)sum / n : 0;
    printf("shards %-9s jobs pushed per shard:", qname);
    for (int i = 0; i < n; i++)
        printf(" %lld", pushed[i]);
    printf("; items acked per shard:");
    for (int i = 0; i < n; i++)
        printf(" %lld", v[i]);
    printf("  (min/mean %.2f, max/mean %.2f)\n", mean > 0 ? lo / mean : 0,
           mean > 0 ? hi / mean : 0);
}

/* ---- the priority lane: one-off messages posted while the campaign drains ---------------- */

typedef struct prio_run {
    int port;
    const char *key; /* staff API key */
    int want;        /* messages to post */
    atomic_bool stop;
    int n; /* posted (202) */
    char (*lids)[25];
    int64_t *posted_at; /* wall ms just before each POST */
    int errors;
} prio_run;

static size_t prio_body(char *p, size_t sz, size_t n, void *ud)
{
    char *buf = ud;
    size_t have = strlen(buf), add = sz * n;
    if (have + add >= 1024)
        add = 1023 - have;
    memcpy(buf + have, p, add);
    buf[have + add] = '\0';
    return sz * n;
}

static void *prio_thread(void *arg)
{
    prio_run *pr = arg;
    char url[100], auth[260];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/api/messages", pr->port);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", pr->key);
    CURL *c = curl_easy_init();
    struct curl_slist *hd = curl_slist_append(NULL, auth);
    hd = curl_slist_append(hd, "Content-Type: application/json");
    for (int i = 0; i < pr->want && !atomic_load(&pr->stop); i++) {
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
        char body[200], answer[1024] = "";
        int cust = 1 + i * 7;
        snprintf(body, sizeof body, "{\"email\":\"c%d@%c.example\",\"message\":\"code %d\"}", cust,
                 pipeh_domain(cust), i);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hd);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, prio_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, answer);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
        int64_t at = time_now_ms();
        long code = 0;
        if (curl_easy_perform(c) == CURLE_OK)
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        const char *l = strstr(answer, "\"log_id\":\"");
        if (code != 202 || !l || strlen(l) < 10 + 24) {
            pr->errors++;
            continue;
        }
        memcpy(pr->lids[pr->n], l + 10, 24);
        pr->lids[pr->n][24] = '\0';
        pr->posted_at[pr->n++] = at;
    }
    curl_slist_free_all(hd);
    curl_easy_cleanup(c);
    return NULL;
}

/* A staff key made the way an operator does (minicrm keys create). 0 or -1. */
static int make_staff_key(pipeh *h, char *key, size_t n)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "'%s' keys create --role staff --name bench 2>>'%s/cli.log'",
             testenv_bin("minicrm"), h->env.dir);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    char *got = fgets(key, (int)n, p);
    int st = pclose(p);
    key[strcspn(key, "\r\n")] = '\0';
    return got && st == 0 && !strncmp(key, "mck_", 4) ? 0 : -1;
}

/* The latencies (updatedAt of the final log - posted_at) of the one-off messages into lat, and
 * the part of it after the vendor's delivery (updatedAt - deliveredAt: the receipt's way back)
 * into back (waiting up to 30 s for the last ones). Returns how many are final. */
static size_t prio_latencies(pipeh *h, const prio_run *pr, long long *lat, long long *back)
{
    mongoc_collection_t *logs = pipeh_coll(h, DB_LOGS);
    size_t nl = 0;
    int64_t deadline = time_mono_ms() + 30000;
    for (int i = 0; i < pr->n; i++) {
        bson_oid_t lid;
        bson_oid_init_from_string(&lid, pr->lids[i]);
        for (;;) {
            bson_t *f = BCON_NEW("_id", BCON_OID(&lid));
            mongoc_cursor_t *cur = mongoc_collection_find_with_opts(logs, f, NULL, NULL);
            const bson_t *doc;
            bool fin = false;
            if (mongoc_cursor_next(cur, &doc)) {
                bson_iter_t it;
                const char *st =
                    bson_iter_init_find(&it, doc, "status") && BSON_ITER_HOLDS_UTF8(&it)
                        ? bson_iter_utf8(&it, NULL)
                        : "";
                if (strcmp(st, "PENDING") != 0 && bson_iter_init_find(&it, doc, "updatedAt") &&
                    BSON_ITER_HOLDS_DATE_TIME(&it)) {
                    int64_t upd = bson_iter_date_time(&it);
                    back[nl] = bson_iter_init_find(&it, doc, "deliveredAt") &&
                                       BSON_ITER_HOLDS_DATE_TIME(&it)
                                   ? upd - bson_iter_date_time(&it)
                                   : -1;
                    lat[nl++] = upd - pr->posted_at[i];
                    fin = true;
                }
            }
            mongoc_cursor_destroy(cur);
            bson_destroy(f);
            if (fin || time_mono_ms() > deadline)
                break;
            struct timespec ts = {0, 50 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    mongoc_collection_destroy(logs);
    return nl;
}

/* Poll the campaign until COMPLETED; every 2 s print to stderr the logs written by the fan-out
 * (campaign total), the logs final (sent + failed) and each program's share of a core over the
 * interval, which shows which stage limits the pipeline at each moment. 0 when completed. */
static int wait_with_progress(pipeh *h, const bson_oid_t *cid, int64_t limit_ms, ph_campaign *c)
{
    int64_t t0 = time_mono_ms(), deadline = t0 + limit_ms, next = t0 + 2000, tprev = t0;
    double prev[PH_NPROCS + 2], cur[PH_NPROCS + 2];
    cpu_now(h, prev);
    long long final_prev = 0;
    while (time_mono_ms() < deadline) {
        if (pipeh_read(h, cid, c) == 0 &&
            !strcmp(c->status, campaign_status_name(CAMPAIGN_COMPLETED)))
            return 0;
        int64_t now = time_mono_ms();
        if (now >= next) {
            cpu_now(h, cur);
            double dt = (double)(now - tprev) / 1000.0;
            long long fin = c->sent + c->failed;
            /* receipt jobs (one per POST) waiting: delivery receipts, and events only */
            queue_stats rs = {0}, es = {0};
            char qerr[200];
            if (queue_stats_get(h->rc, h->env.prefix, QUEUE_RECEIPTS, &rs, qerr, sizeof qerr) != 0)
                rs.ready = -1;
            if (queue_stats_get(h->rc, h->env.prefix, QUEUE_RECEIPT_EVENTS, &es, qerr,
                                sizeof qerr) != 0)
                es.ready = -1;
            fprintf(stderr,
                    "  t=%4.0fs written %8lld  final %8lld (%6.0f/s)  receipt jobs ready %4lld, "
                    "event jobs ready %4lld  %%CPU devdb %3.0f redis %3.0f api %3.0f worker %3.0f "
                    "receipts %3.0f vendor %3.0f\n",
                    (double)(now - t0) / 1000.0, (long long)c->total, fin,
                    (double)(fin - final_prev) / dt, rs.ready, es.ready,
                    100 * (cur[PH_NPROCS] - prev[PH_NPROCS]) / dt,
                    100 * (cur[PH_NPROCS + 1] - prev[PH_NPROCS + 1]) / dt,
                    100 * (cur[PH_API] - prev[PH_API]) / dt,
                    100 * (cur[PH_WORKER] - prev[PH_WORKER]) / dt,
                    100 * (cur[PH_RECEIPTS] - prev[PH_RECEIPTS]) / dt,
                    100 * (cur[PH_VENDOR] - prev[PH_VENDOR]) / dt);
            memcpy(prev, cur, sizeof prev);
            final_prev = fin;
            tprev = now;
            next = now + 2000;
        }
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return -1;
}

/* Poll until campaigns1 has the index minicrm-api creates last (api/indexes.c). 0 or -1. */
static int wait_api_indexes(pipeh *h)
{
    int64_t deadline = time_mono_ms() + 600000;
    while (time_mono_ms() < deadline) {
        mongoc_collection_t *c = pipeh_coll(h, DB_CAMPAIGNS);
        mongoc_cursor_t *cur = mongoc_collection_find_indexes_with_opts(c, NULL);
        const bson_t *doc;
        bool found = false;
        while (mongoc_cursor_next(cur, &doc)) {
            bson_iter_t it;
            if (bson_iter_init_find(&it, doc, "name") && BSON_ITER_HOLDS_UTF8(&it) &&
                !strcmp(bson_iter_utf8(&it, NULL), "createdAt_-1__id_-1"))
                found = true;
        }
        mongoc_cursor_destroy(cur);
        mongoc_collection_destroy(c);
        if (found)
            return 0;
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return -1;
}

/* Suppress the customers i with i % 100 < pct (the unique index exists: the API built it). */
static int suppress_share(pipeh *h, long n, long pct)
{
    enum { B = 1000 };
    static char emails[B][64];
    const char *ptr[B];
    suppress_reason why[B];
    mongoc_collection_t *supps = pipeh_coll(h, DB_SUPPRESSIONS);
    mongoc_collection_t *custs = pipeh_coll(h, DB_CUSTOMERS);
    int64_t t = time_mono_ms(), total = 0;
    int rc = 0;
    size_t k = 0;
    for (long i = 0; i < n && rc == 0; i++) {
        if (i % 100 < pct) {
            snprintf(emails[k], sizeof emails[k], "c%ld@%c.example", i, pipeh_domain((int)i));
            ptr[k] = emails[k];
            why[k++] = SUPPRESS_MANUAL;
        }
        if (k == B || (i == n - 1 && k > 0)) {
            bson_error_t e;
            int64_t added = 0;
            if (suppress_add_batch(supps, custs, ptr, why, k, time_now_ms(), &added, NULL, &e)) {
                fprintf(stderr, "bench_campaign: suppress: %s\n", e.message);
                rc = -1;
            }
            total += added;
            k = 0;
        }
    }
    mongoc_collection_destroy(supps);
    mongoc_collection_destroy(custs);
    if (rc == 0)
        printf("suppressed %lld customers (%ld%%) in %.1f s\n", (long long)total, pct,
               (time_mono_ms() - t) / 1000.0);
    return rc;
}

int main(int argc, char **argv)
{
    long n = 100000;
    const char *procs = "2", *min_delay = "100", *max_delay = "900";
    int nprio = 50;
    long supp_pct = 0;
    bool events = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--procs") && i + 1 < argc)
            procs = argv[++i];
        else if (!strcmp(argv[i], "--min-delay") && i + 1 < argc)
            min_delay = argv[++i];
        else if (!strcmp(argv[i], "--max-delay") && i + 1 < argc)
            max_delay = argv[++i];
        else if (!strcmp(argv[i], "--suppressed") && i + 1 < argc)
            supp_pct = strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--priority") && i + 1 < argc)
            nprio = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--events") && i + 1 < argc)
            events = strcmp(argv[++i], "off") != 0;
        else if (!strncmp(argv[i], "--replicas=", 11))
            g_replicas = (int)strtol(argv[i] + 11, NULL, 10) > 0 ? 1 : 0;
        else if (!strncmp(argv[i], "--cluster", 9))
            g_shards = argv[i][9] == '=' ? (int)strtol(argv[i] + 10, NULL, 10) : 6;
        else if (!strncmp(argv[i], "--durable", 9))
            /* devdb with a journal (--dbpath, --sync MODE; default always) instead of in memory */
            setenv("MINICRM_TEST_DEVDB_SYNC", argv[i][9] == '=' ? argv[i] + 10 : "always", 1);
        else {
            char *end;
            n = strtol(argv[i], &end, 10);
            if (*end || n < 1 || n > 20000000) {
                fprintf(stderr, "usage: bench_campaign [N] [--procs P] [--min-delay MS] "
                                "[--max-delay MS] [--durable[=always|everysec|never]] "
                                "[--priority K] [--suppressed PCT] [--cluster[=SHARDS]] "
                                "[--replicas=0|1] [--events on|off]\n");
                return 2;
            }
        }
    }
    setenv("MINICRM_LOG_LEVEL", "warn", 1);
    if (g_shards > 0) {
        if (g_shards > 256 || clusterenv_start_replicas(&g_cluster, g_replicas) != 0) {
            fprintf(stderr, "bench_campaign: cannot start a local Redis Cluster\n");
            return 1;
        }
        /* the harness takes it as its external Redis (a private key prefix) */
        setenv("MINICRM_TEST_REDIS_URL", g_cluster.url, 1);
        char sb[16];
        snprintf(sb, sizeof sb, "%d", g_shards);
        setenv("MINICRM_QUEUE_SHARDS", sb, 1);
        minicrm_config qc;
        memset(&qc, 0, sizeof qc);
        qc.queue.shards = g_shards;
        queue_use_config(&qc);
        printf("redis: local cluster, 3 masters + %d replicas, queue.shards=%d\n", 3 * g_replicas,
               g_shards);
    } else {
        printf("redis: one redis-server\n");
    }
    pipeh h;
    if (pipeh_start(&h) != 0) {
        pipeh_stop(&h);
        clusterenv_stop(&g_cluster);
        return 1;
    }
    setenv("MINICRM_VENDOR_SIM_MIN_DELAY_MS", min_delay, 1);
    setenv("MINICRM_VENDOR_SIM_MAX_DELAY_MS", max_delay, 1);
    setenv("MINICRM_VENDOR_SIM_SEED", "0", 1);
    setenv("MINICRM_MONGO_TIMEOUT_MS", "10000", 1);
    setenv("MINICRM_RECEIPTS_VENDOR_TIMEOUT_S", "120", 1);
    setenv("MINICRM_RECEIPTS_SWEEP_INTERVAL_S", "30", 1);
    setenv("MINICRM_RECEIPTS_RECOVER_AFTER_S", "60", 1);
    setenv("MINICRM_WORKERS_BATCH_SIZE", "1000", 1);
    /* The harness turns the events off unless they are set; on: the defaults of lib/config. */
    setenv("MINICRM_VENDOR_SIM_BOUNCE_RATE", events ? "0.02" : "0", 1);
    setenv("MINICRM_VENDOR_SIM_COMPLAINT_RATE", events ? "0.001" : "0", 1);
    setenv("MINICRM_VENDOR_SIM_OPEN_RATE", events ? "0.3" : "0", 1);
    setenv("MINICRM_VENDOR_SIM_CLICK_RATE", events ? "0.05" : "0", 1);
    printf("receipt events: %s\n",
           events ? "on (bounce 2%, complaint 0.1%, open 30%, click 5%)" : "off (all rates 0)");
    int64_t t = time_mono_ms();
    if (pipeh_seed(&h, (int)n) != 0) {
        pipeh_stop(&h);
        clusterenv_stop(&g_cluster);
        return 1;
    }
    printf("seeded %ld customers in %.1f s\n", n, (time_mono_ms() - t) / 1000.0);
    const char *const wargs[] = {"--procs", procs, NULL};
    if (pipeh_spawn(&h, PH_API, NULL) || pipeh_spawn(&h, PH_WORKER, wargs) ||
        pipeh_spawn(&h, PH_RECEIPTS, NULL) || pipeh_spawn(&h, PH_VENDOR, NULL)) {
        pipeh_stop(&h);
        clusterenv_stop(&g_cluster);
        return 1;
    }
    /* minicrm-api builds its indexes at start (over N customers here): that is the first
     * start's work, not the campaign's, so the clock starts once the last one exists. */
    if (wait_api_indexes(&h) != 0) {
        fprintf(stderr, "bench_campaign: the API did not finish creating its indexes\n");
        pipeh_stop(&h);
        clusterenv_stop(&g_cluster);
        return 1;
    }
    if (supp_pct > 0 && suppress_share(&h, n, supp_pct) != 0) {
        pipeh_stop(&h);
        return 1;
    }
    struct timespec pause = {0, 300 * 1000000L};
    nanosleep(&pause, NULL);
    char key[200] = "";
    setenv("MINICRM_TEST_DIR", h.env.dir, 1);
    if (nprio > 0 && make_staff_key(&h, key, sizeof key) != 0) {
        fprintf(stderr, "bench_campaign: cannot make a staff key (logs in %s)\n", h.env.dir);
        pipeh_stop(&h);
        clusterenv_stop(&g_cluster);
        return 1;
    }
    if (nprio < 0 || nprio > 100000 || nprio >= n / 7)
        nprio = 0;
    prio_run pr = {.port = h.api_port,
                   .key = key,
                   .want = nprio,
                   .lids = calloc((size_t)nprio + 1, sizeof *pr.lids),
                   .posted_at = calloc((size_t)nprio + 1, sizeof *pr.posted_at)};
    atomic_init(&pr.stop, false);
    pthread_t pth;
    bool prio_started = false;
    bson_oid_t cid;
    /* CPU spent seeding, subtracted from the figures below. */
    double devdb_cpu0 = 0, redis_cpu0 = 0;
    int ign;
    peak_rss_kb(h.env.devdb_pid, &ign, &devdb_cpu0);
    redis_cpu0 = redis_cpu_s(&h);
    rs_start(&h);
    int64_t t0 = time_mono_ms();
    if (pipeh_campaign(&h, "bench", "{}", &cid) != 0) {
        pipeh_stop(&h);
        clusterenv_stop(&g_cluster);
        return 1;
    }
    ph_campaign c;
    int64_t limit_ms = 60000 + n * 2;
    if (nprio > 0 && pr.lids && pr.posted_at)
        prio_started = pthread_create(&pth, NULL, prio_thread, &pr) == 0;
    int waited = wait_with_progress(&h, &cid, limit_ms, &c);
    double secs_done = (time_mono_ms() - t0) / 1000.0;
    atomic_store(&pr.stop, true);
    if (prio_started)
        pthread_join(pth, NULL);
    if (waited != 0) {
        fprintf(stderr,
                "bench_campaign: not completed after %lld ms: status=%s total=%lld "
                "pending=%lld sent=%lld failed=%lld (logs in %s)\n",
                (long long)limit_ms, c.status, (long long)c.total, (long long)c.pending,
                (long long)c.sent, (long long)c.failed, h.env.dir);
        pipeh_stop(&h);
        clusterenv_stop(&g_cluster);
        return 1;
    }
    double secs = secs_done;
    /* Peak RSS before anything stops. */
    const char *names[] = {"minicrm-api", "minicrm-worker", "minicrm-receipts",
                           "minicrm-vendor-sim"};
    long rss[PH_NPROCS];
    int np[PH_NPROCS];
    double cpu[PH_NPROCS] = {0}, devdb_cpu = 0, redis_cpu = 0;
    for (int i = 0; i < PH_NPROCS; i++)
        rss[i] = peak_rss_kb(h.pid[i], &np[i], &cpu[i]);
    long devdb_np = 0;
    int dn;
    devdb_np = peak_rss_kb(h.env.devdb_pid, &dn, &devdb_cpu);
    redis_cpu = redis_cpu_s(&h);
    devdb_cpu -= devdb_cpu0;
    redis_cpu -= redis_cpu0;
    /* Latencies from the logs. */
    long long *lat = malloc((size_t)n * sizeof *lat);
    long long *lat_out = malloc((size_t)n * sizeof *lat_out);   /* createdAt -> deliveredAt */
    long long *lat_back = malloc((size_t)n * sizeof *lat_back); /* deliveredAt -> updatedAt */
    size_t nl = 0, nd = 0;
    mongoc_collection_t *logs = pipeh_coll(&h, DB_LOGS);
    bson_t *f = BCON_NEW("campaign_id", BCON_OID(&cid));
    bson_t *o = BCON_NEW("projection", "{", "createdAt", BCON_INT32(1), "updatedAt", BCON_INT32(1),
                         "deliveredAt", BCON_INT32(1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(logs, f, o, NULL);
    const bson_t *doc;
    while (lat && lat_out && lat_back && mongoc_cursor_next(cur, &doc) && nl < (size_t)n) {
        bson_iter_t it;
        int64_t a = 0, b = 0;
        if (bson_iter_init_find(&it, doc, "createdAt") && BSON_ITER_HOLDS_DATE_TIME(&it))
            a = bson_iter_date_time(&it);
        if (bson_iter_init_find(&it, doc, "updatedAt") && BSON_ITER_HOLDS_DATE_TIME(&it))
            b = bson_iter_date_time(&it);
        lat[nl++] = b - a;
        if (bson_iter_init_find(&it, doc, "deliveredAt") && BSON_ITER_HOLDS_DATE_TIME(&it)) {
            int64_t d = bson_iter_date_time(&it);
            lat_out[nd] = d - a;
            lat_back[nd++] = b - d;
        }
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(f);
    bson_destroy(o);
    mongoc_collection_destroy(logs);
    qsort(lat, nl, sizeof *lat, cmp_ll);
    qsort(lat_out, nd, sizeof *lat_out, cmp_ll);
    qsort(lat_back, nd, sizeof *lat_back, cmp_ll);
    printf("campaign: %lld recipients, %lld SENT, %lld FAILED, completed in %.2f s\n",
           (long long)c.total, (long long)c.sent, (long long)c.failed, secs);
    const char *sync = getenv("MINICRM_TEST_DEVDB_SYNC");
    printf("devdb: %s%s\n", sync ? "journal on disk, --sync " : "in memory (no --dbpath)",
           sync ? sync : "");
    printf("throughput: %.0f messages/s (creation -> last receipt applied)\n",
           (double)c.total / secs);
    if (nl)
        printf("send->receipt-applied latency: p50 %lld ms, p90 %lld ms, p99 %lld ms (vendor delay "
               "%s-%s ms included)\n",
               lat[nl / 2], lat[(nl * 9) / 10], lat[(nl * 99) / 100], min_delay, max_delay);
    if (nd)
        printf("  of which log written -> vendor delivery p50 %lld ms, p90 %lld ms; vendor "
               "delivery -> receipt applied p50 %lld ms, p90 %lld ms (%zu logs)\n",
               lat_out[nd / 2], lat_out[(nd * 9) / 10], lat_back[nd / 2], lat_back[(nd * 9) / 10],
               nd);
    long long *plat = calloc((size_t)pr.n + 1, sizeof *plat);
    long long *pback = calloc((size_t)pr.n + 1, sizeof *pback);
    size_t npl = plat && pback ? prio_latencies(&h, &pr, plat, pback) : 0;
    qsort(plat, npl, sizeof *plat, cmp_ll);
    qsort(pback, npl, sizeof *pback, cmp_ll);
    if (nprio > 0)
        printf("priority lane: %d one-off messages posted during the drain (%d refused), %zu "
               "final; POST->receipt-applied p50 %lld ms, p99 %lld ms, max %lld ms (target: "
               "vendor max delay + 300 = %ld ms)\n",
               pr.n, pr.errors, npl, npl ? plat[npl / 2] : -1LL,
               npl ? plat[(npl * 99) / 100] : -1LL, npl ? plat[npl - 1] : -1LL,
               strtol(max_delay, NULL, 10) + 300);
    if (npl)
        printf("priority lane: of which vendor delivery -> receipt applied p50 %lld ms, p99 %lld "
               "ms\n",
               pback[npl / 2], pback[(npl * 99) / 100]);
    free(plat);
    free(pback);
    free(pr.lids);
    free(pr.posted_at);
    for (int i = 0; i < PH_NPROCS; i++)
        printf("peak RSS %-20s %7.1f MB (%d process%s)\n", names[i], rss[i] / 1024.0, np[i],
               np[i] == 1 ? "" : "es");
    printf("peak RSS %-20s %7.1f MB\n", "minicrm-devdb", devdb_np / 1024.0);
    /* CPU from campaign creation on (the programs start just before it). */
    double all = devdb_cpu + redis_cpu;
    for (int i = 0; i < PH_NPROCS; i++)
        all += cpu[i];
    printf("CPU s (per message us): devdb %.1f (%.0f), redis %.1f (%.0f)", devdb_cpu,
           devdb_cpu * 1e6 / (double)c.total, redis_cpu, redis_cpu * 1e6 / (double)c.total);
    for (int i = 0; i < PH_NPROCS; i++)
        printf(", %s %.1f (%.0f)", names[i] + 8, cpu[i], cpu[i] * 1e6 / (double)c.total);
    printf("; all %.1f (%.0f)\n", all, all * 1e6 / (double)c.total);
    printf("redis share of CPU: %.1f%%\n", all > 0 ? 100.0 * redis_cpu / all : 0);
    rs_report((long long)c.total);
    if (g_shards > 1) {
        print_shard_use(&h, QUEUE_SENDS);
        print_shard_use(&h, QUEUE_RECEIPTS);
    }
    free(lat);
    free(lat_out);
    free(lat_back);
    pipeh_stop(&h);
    clusterenv_stop(&g_cluster);
    return 0;
}
