/*
 * minicrm-api: the HTTP API (libmicrohttpd).
 *
 * Start-up: configuration (prog_start), the exposure rule (cfg_check_api_exposure: a
 * non-loopback api.bind with the built-in development vendor secret is refused, exit 2), the
 * session secret (auth_module_prepare: random per start, with a warning, when SESSION_SECRET is
 * not set), signal handling, the MongoDB client pool, the Redis connection pool, the auth module,
 * the route table, metrics, then the MHD daemon with a thread pool of api.threads threads, at most
 * api.max_conns connections (api.max_conns_per_ip from one address), and the header deadline
 * of connguard. Indexes are
 * created in the background (retried until MongoDB answers), so the API starts even while the
 * database is still coming up; routes that need it answer 503 until then.
 *
 * Shutdown on SIGTERM/SIGINT: MHD_quiesce_daemon() stops accepting new connections, the
 * live-update streams are ended (events_hub_stop), requests already in flight are given up to
 * api.request_timeout_s to finish (http_inflight() reaches 0 when the last response is fully sent),
 * then the daemon stops and the process exits 0.
 */
#include "apiutil.h"
#include "app.h"
#include "auth.h"
#include "connguard.h"
#include "dbpool.h"
#include "events.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "progargs.h"
#include "queue.h"
#include "router.h"
#include "routes.h"
#include "rpool.h"
#include "signals.h"
#include "timeutil.h"
#include "webfiles.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const progargs_flag k_flags[] = {
    {"--port", "api.port", "TCP port to listen on"},
    {"--bind", "api.bind", "address to bind"},
    {"--threads", "api.threads", "HTTP worker threads"},
};

static atomic_bool g_indexes_done;

/* Background index creation (api/indexes.c): passes every 2 s until no index is left that a
 * retry could still create. Its own client, whose socket timeout (mongo.index_timeout_ms) lets
 * createIndexes run as long as a build over a large collection takes; the pool's clients give
 * up after their socket timeout. */
static void *index_thread(void *arg)
{
    api_ctx *app = arg;
    routes_index_state st = {0};
    char err[256];
    mongoc_client_t *cl =
        dbpool_client_new(app->db, app->cfg->mongo.index_timeout_ms, err, sizeof err);
    if (!cl) {
        log_error("indexes_failed", "err=\"%s\"", err);
        return NULL;
    }
    while (!signals_stop_requested()) {
        if (routes_ensure_indexes(app, cl, &st) == 0) {
            if (st.n_failed == 0)
                log_info("indexes_ready", NULL);
            else
                log_error("indexes_incomplete", "failed=%zu", st.n_failed);
            atomic_store(&g_indexes_done, true);
            break;
        }
        signals_sleep_ms(2000);
    }
    long filled = 0, n;
    while (!signals_stop_requested() && (n = routes_backfill_domains(app, cl)) != 0) {
        if (n < 0)
            signals_sleep_ms(2000);
        else
            filled += n;
    }
    if (filled > 0)
        log_info("domain_backfill_done", "customers=%ld", filled);
    mongoc_client_destroy(cl);
    return NULL;
}

/* The HTTP layer's way up to the router (app->dispatch). */
static void dispatch(api_ctx *app, http_request *req)
{
    router_dispatch(app->router, app, req);
}

/* Metrics get the route labels, not the router. */
static api_metrics *metrics_for(const router *r)
{
    size_t n = router_count(r);
    const char **labels = calloc(n ? n : 1, sizeof *labels);
    if (!labels)
        return NULL;
    for (size_t i = 0; i < n; i++)
        labels[i] = router_get(r, i)->label;
    api_metrics *m = metrics_new(labels, n);
    free(labels);
    return m;
}

static int build_routes(router *r)
{
    if (routes_ops_register(r) || routes_customers_register(r) || routes_orders_register(r) ||
        routes_campaigns_register(r) || routes_campaign_moves_register(r) ||
        routes_comm_register(r) || routes_delivery_register(r) || routes_messages_register(r) ||
        routes_webhooks_register(r) || routes_suppress_register(r) || routes_dlq_register(r) ||
        auth_register_routes(r) || webfiles_register(r) || events_register(r))
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    minicrm_config cfg;
    progargs pa;
    int rc = prog_start("minicrm-api", "[options]", argc, argv, k_flags,
                        sizeof k_flags / sizeof k_flags[0], false, &cfg, &pa);
    if (rc != 0)
        return rc == 1 ? 0 : rc;

    int status = 1;
    char err[512];
    if (cfg_check_api_exposure(&cfg, err, sizeof err) != 0) {
        fprintf(stderr, "minicrm-api: %s\n", err);
        cfg_release(&cfg);
        progargs_release(&pa);
        return 2;
    }
    if (auth_module_prepare(&cfg, err, sizeof err) != 0) {
        fprintf(stderr, "minicrm-api: auth: %s\n", err);
        cfg_release(&cfg);
        progargs_release(&pa);
        return 2;
    }
    if (!cfg.receipts.require_timestamp)
        log_warn("receipts_timestamp_optional",
                 "detail=\"receipts.require_timestamp is off: an unsigned-time receipt batch is "
                 "refused as a replay only while its signature is remembered (2 x "
                 "receipts.max_skew_s); set it to true unless a vendor cannot send X-Timestamp\"");
    queue_use_config(&cfg); /* queue.shards for the handles the routes open */
    api_ctx app = {.cfg = &cfg, .started_ms = time_now_ms()};
    struct MHD_Daemon *d = NULL;
    connguard *guard = NULL;
    pthread_t idx_tid;
    bool idx_started = false, auth_started = false;

    if (signals_install() != 0) {
        fprintf(stderr, "minicrm-api: cannot install signal handlers\n");
        goto out;
    }
    app.db = dbpool_new(cfg.mongo.uri, cfg.mongo.pool_max, cfg.mongo.timeout_ms, "minicrm-api", err,
                        sizeof err);
    if (!app.db || dbpool_set_durable_wc(app.db, cfg.mongo.write_concern, err, sizeof err) != 0) {
        fprintf(stderr, "minicrm-api: %s\n", err);
        goto out;
    }
    /* A read's maxTimeMS must end it on the server before the driver gives up on the socket:
     * then a slow query stops there too and the client gets a clear 504. */
    int sock_ms = dbpool_socket_timeout_ms(app.db);
    int max_time_ms = cfg.mongo.max_time_ms;
    if (max_time_ms == 0)
        max_time_ms = sock_ms > 0 && sock_ms / 2 < 10000 ? sock_ms / 2 : 10000;
    if (sock_ms > 0 && max_time_ms >= sock_ms) {
        fprintf(stderr,
                "minicrm-api: mongo.max_time_ms (%d) must be below the MongoDB socket timeout "
                "(%d ms: socketTimeoutMS in the URI, else 6 x mongo.timeout_ms)\n",
                max_time_ms, sock_ms);
        status = 2;
        goto out;
    }
    api_reads_init(max_time_ms);
    log_info("mongo_settings", "max_time_ms=%d socket_timeout_ms=%d write_concern=%s", max_time_ms,
             sock_ms, dbpool_durable_wc_name(app.db));
    app.redis =
        rpool_new(cfg.redis.url, cfg.redis.timeout_ms, cfg.api.threads + 4, err, sizeof err);
    if (!app.redis) {
        fprintf(stderr, "minicrm-api: redis.url: %s\n", err);
        goto out;
    }
    if (auth_module_init(&app, err, sizeof err) != 0) {
        fprintf(stderr, "minicrm-api: auth: %s\n", err);
        goto out;
    }
    auth_started = true;
    app.web = webfiles_new(cfg.api.web_root);
    if (!app.web) {
        fprintf(stderr, "minicrm-api: out of memory\n");
        goto out;
    }
    app.router = router_new();
    if (!app.router || build_routes(app.router) != 0) {
        fprintf(stderr, "minicrm-api: cannot build the route table\n");
        goto out;
    }
    app.events = events_hub_new(&app);
    if (!app.events) {
        fprintf(stderr, "minicrm-api: cannot start the live-updates ticker\n");
        goto out;
    }
    app.ratelimit = ratelimit_new(cfg.api.rate_limit_per_min);
    app.receipts_ratelimit = ratelimit_new(cfg.receipts.rate_limit_per_min);
    app.metrics = metrics_for(app.router);
    app.dispatch = dispatch;
    app.authenticate = auth_authenticate;
    if (!app.metrics) {
        fprintf(stderr, "minicrm-api: out of memory\n");
        goto out;
    }

    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)cfg.api.port);
    if (inet_pton(AF_INET, cfg.api.bind, &sa.sin_addr) != 1) {
        fprintf(stderr, "minicrm-api: api.bind: not an IPv4 address: %s\n", cfg.api.bind);
        goto out;
    }
    guard = connguard_new(cfg.api.request_timeout_s);
    if (!guard) {
        fprintf(stderr, "minicrm-api: cannot start the connection guard\n");
        goto out;
    }
    d = MHD_start_daemon(
        MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG,
        (uint16_t)cfg.api.port, NULL, NULL, http_access_handler, &app, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&sa, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg.api.threads,
        MHD_OPTION_NOTIFY_COMPLETED, http_request_completed, &app, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)cfg.api.request_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)(64 * 1024), MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u, MHD_OPTION_UNESCAPE_CALLBACK,
        http_unescape, NULL, MHD_OPTION_URI_LOG_CALLBACK, http_uri_log, NULL,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg.api.max_conns,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)cfg.api.max_conns_per_ip,
        MHD_OPTION_NOTIFY_CONNECTION, connguard_notify, guard, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "minicrm-api: cannot listen on %s:%d (port in use?)\n", cfg.api.bind,
                cfg.api.port);
        goto out;
    }
    if (pthread_create(&idx_tid, NULL, index_thread, &app) == 0)
        idx_started = true;
    if (routes_suppress_start(&app) != 0)
        log_warn("suppress_notifier_not_started", NULL);
    log_info("listening", "bind=%s port=%d threads=%d max_conns=%d max_conns_per_ip=%d",
             cfg.api.bind, cfg.api.port, cfg.api.threads, cfg.api.max_conns,
             cfg.api.max_conns_per_ip);

    /* Wait for SIGTERM/SIGINT. */
    struct pollfd pfd = {.fd = signals_fd(), .events = POLLIN};
    while (!signals_stop_requested())
        poll(&pfd, 1, 1000);

    log_info("stopping", "signal=%d inflight=%ld", signals_stop_signal(), http_inflight());
    MHD_socket lfd = MHD_quiesce_daemon(d);
    if (lfd != MHD_INVALID_SOCKET)
        close(lfd);
    /* Live-update streams never end by themselves: end them so the wait below can finish. */
    events_hub_stop(app.events);
    int64_t deadline = time_mono_ms() + (int64_t)cfg.api.request_timeout_s * 1000;
    while (http_inflight() > 0 && time_mono_ms() < deadline)
        usleep(10000);
    if (http_inflight() > 0)
        log_warn("shutdown_timeout", "inflight=%ld", http_inflight());
    MHD_stop_daemon(d);
    d = NULL;
    status = 0;
    log_info("stopped", NULL);

out:
    events_hub_stop(app.events); /* suspended streams must be resumed before the daemon stops */
    if (d)
        MHD_stop_daemon(d);
    events_hub_free(app.events);
    connguard_free(guard);
    if (idx_started) {
        signals_request_stop();
        pthread_join(idx_tid, NULL);
    }
    signals_request_stop();
    routes_suppress_join();
    metrics_free(app.metrics);
    ratelimit_free(app.ratelimit);
    ratelimit_free(app.receipts_ratelimit);
    router_free(app.router);
    webfiles_free(app.web);
    if (auth_started)
        auth_module_shutdown(&app);
    rpool_free(app.redis);
    dbpool_free(app.db);
    cfg_release(&cfg);
    progargs_release(&pa);
    return status;
}
