/*
 * minicrm up: the whole system on one machine.
 *
 * Starts, in order: redis-server (own data dir and port, appendonly on) unless REDIS_URL is
 * set; minicrm-devdb unless MONGO_URI is set; minicrm-api; minicrm-worker --procs N;
 * minicrm-receipts; minicrm-vendor-sim; minicrm-ai when openai.api_key is set. Every child
 * gets up's effective configuration through MINICRM_* environment variables, so all agree on
 * ports, URLs and secrets whatever layer set them. It waits for /readyz, prints how to use the
 * system, and then supervises (see supervise.h) until SIGINT/SIGTERM, when it stops the
 * children in reverse order. minicrm-webhooks (outbound webhooks) starts after the simulator.
 *
 * The console is for people: api.access_log=auto becomes off here (on with --verbose), so the
 * API's per-request lines do not bury warnings, errors, lifecycle events and progress.
 *
 * State lives in --dir (default ./.minicrm, created 0700): redis/ and devdb/ data (0700),
 * up.lock (held with flock while up runs, so a second `up` refuses to start a second set),
 * up.state (what runs, URL passwords masked), vendor-secret, session-secret and, when up's
 * output is not a terminal, admin-key. Every file that holds a secret or data is 0600.
 *
 * Secrets: unless VENDOR_SECRET (or receipts.vendor_secret) was set to something else than
 * the public development default, the first start writes 256 random bits as hex to
 * DIR/vendor-secret and every later start reuses it; it reaches the API and the vendor
 * simulator like every other setting (MINICRM_RECEIPTS_VENDOR_SECRET). Unless SESSION_SECRET
 * is set, DIR/session-secret is made and reused the same way, so logins survive a restart.
 * The first admin API key
 * is printed only to a terminal; otherwise it goes to DIR/admin-key and up says where.
 */
#include "auth_keys.h"
#include "commands.h"
#include "dbpool.h"
#include "httpc.h"
#include "rconn.h"
#include "redact.h"
#include "signals.h"
#include "supervise.h"
#include "timeutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <mongoc/mongoc.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* Directory holding the minicrm-* programs: the one this executable is in. */
static int bin_dir(char *out, size_t n)
{
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0)
        return -1;
    exe[len] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return -1;
    *slash = '\0';
    snprintf(out, n, "%s", exe);
    return 0;
}

static bool port_in_use(const char *host, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, strcmp(host, "localhost") == 0 ? "127.0.0.1" : host, &a.sin_addr) != 1)
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool used = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return used;
}

static bool env_set(const char *a, const char *b)
{
    const char *x = getenv(a), *y = getenv(b);
    return (x && *x) || (y && *y);
}

/* Export every setting as MINICRM_SECTION_KEY so the children see up's configuration. */
static void export_config(const minicrm_config *cfg)
{
    size_t n;
    const cfg_setting_info *s = cfg_settings(&n);
    for (size_t i = 0; i < n; i++) {
        char env[128], val[2048];
        setenv(cfg_env_name(&s[i], env, sizeof env),
               cfg_value_text(cfg, &s[i], true, val, sizeof val), 1);
    }
}

/* Make dir (mode 0700) if missing, and tighten it to 0700 if it exists: for up's own data
 * directories (redis/, devdb/). 0, or -1 with errno. */
static int private_dir(const char *dir)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return -1;
    return chmod(dir, 0700);
}

/* Write text to path atomically (a temporary file, then rename), mode 0600. 0, or -1. */
static int write_private_file(const char *path, const char *text)
{
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -1;
    size_t len = strlen(text);
    bool ok = fchmod(fd, 0600) == 0 && write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* A secret of this state directory (`name`: vendor-secret, session-secret): read DIR/name, or
 * on the first start make 256 random bits (hex) and keep them there (0600). Into out; 0, or -1
 * with err. */
static int local_secret(const char *dir, const char *name, char *out, size_t n, char *err,
                        size_t errlen)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0) {
        char buf[256];
        ssize_t r = read(fd, buf, sizeof buf - 1);
        fchmod(fd, 0600); /* a copy made with a looser umask */
        close(fd);
        if (r > 0)
            buf[r] = '\0';
        size_t len = r > 0 ? strcspn(buf, "\r\n") : 0;
        if (len == 0 || len >= n) {
            snprintf(err, errlen, "%s: empty or longer than %zu bytes", path, n - 1);
            return -1;
        }
        snprintf(out, n, "%.*s", (int)len, buf);
        return 0;
    }
    if (errno != ENOENT) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    unsigned char raw[32];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw || n < 2 * sizeof raw + 2) {
        snprintf(err, errlen, "no randomness for %s", name);
        return -1;
    }
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    char line[2 * sizeof raw + 2];
    snprintf(line, sizeof line, "%s\n", out);
    if (write_private_file(path, line) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* On the first start (no active admin key in the store), create one and show it once: the
 * way in without Google. On a terminal it is printed; otherwise (a log file, a pipe) it is
 * written to DIR/admin-key (0600) and only that path is printed. 0 if a key exists or was
 * made. */
static int ensure_admin_key(supervisor *sup, const minicrm_config *cfg, const char *dir)
{
    char err[256];
    dbpool *db =
        dbpool_new(cfg->mongo.uri, 2, cfg->mongo.timeout_ms, "minicrm-up", err, sizeof err);
    if (!db) {
        sup_say(sup, "cannot check API keys: %s", err);
        return -1;
    }
    json_t *keys = NULL;
    int rc = auth_keys_list(db, 10000, &keys, err, sizeof err);
    bool have_admin = false;
    size_t i;
    json_t *k;
    json_array_foreach(keys, i, k)
    {
        auth_role role;
        if (!json_is_true(json_object_get(k, "revoked")) &&
            auth_role_parse(json_string_value(json_object_get(k, "role")), &role) == 0 &&
            role == AUTH_ROLE_ADMIN)
            have_admin = true;
    }
    json_decref(keys);
    if (rc == 0 && !have_admin) {
        char key[AUTH_KEY_LEN + 1];
        json_t *doc = NULL;
        rc = auth_keys_create(db, AUTH_ROLE_ADMIN, "first admin (minicrm up)", "minicrm up", key,
                              &doc, err, sizeof err);
        json_decref(doc);
        char path[PATH_MAX + 32], line[AUTH_KEY_LEN + 2];
        snprintf(path, sizeof path, "%s/admin-key", dir);
        snprintf(line, sizeof line, "%s\n", key);
        if (rc == 0 && isatty(STDOUT_FILENO)) {
            sup_say(sup, "first start: created an admin API key. It is shown only this once:");
            sup_say(sup, "    %s", key);
            sup_say(sup,
                    "use it as: curl -H 'Authorization: Bearer %s' http://localhost:%d/auth/me",
                    key, cfg->api.port);
        } else if (rc == 0 && write_private_file(path, line) == 0) {
            sup_say(sup,
                    "first start: created an admin API key; output is not a terminal, so it is "
                    "not printed but kept in %s (mode 0600)",
                    path);
            sup_say(sup,
                    "use it as: curl -H \"Authorization: Bearer $(cat %s)\" "
                    "http://localhost:%d/auth/me",
                    path, cfg->api.port);
        } else if (rc == 0) {
            snprintf(err, sizeof err, "cannot write %s: %s", path, strerror(errno));
            rc = -1;
        }
    }
    if (rc != 0)
        sup_say(sup, "cannot check or create the admin API key: %s", err);
    dbpool_free(db);
    return rc;
}

static void usage(void)
{
    printf("usage: minicrm up [--workers N] [--dir DIR] [--demo] [--verbose]\n\n"
           "Starts redis-server (unless REDIS_URL is set), minicrm-devdb (unless MONGO_URI is\n"
           "set), the API on PORT, N worker processes, the receipts worker, the vendor\n"
           "simulator, the webhooks worker and, with OPENAI_API_KEY set, minicrm-ai; Ctrl-C\n"
           "stops them all.\n"
           "State is kept in DIR (default ./.minicrm).\n"
           "--demo runs `minicrm demo` once the system is ready (a campaign end to end).\n"
           "--verbose also shows the API's per-request lines (api.access_log=on does too).\n");
}

int cmd_up(cli_ctx *ctx)
{
    minicrm_config *cfg = ctx->cfg;
    const char *dir = ".minicrm";
    int workers = cfg->workers.procs;
    bool demo = false, verbose = false;
    for (int i = 1; i < ctx->argc; i++) {
        if (!strcmp(ctx->argv[i], "--workers") && i + 1 < ctx->argc) {
            char *end;
            long v = strtol(ctx->argv[++i], &end, 10);
            if (*end || v < 1 || v > 256) {
                fprintf(stderr, "minicrm up: --workers expects 1 to 256\n");
                return 2;
            }
            workers = (int)v;
        } else if (!strcmp(ctx->argv[i], "--demo")) {
            demo = true;
        } else if (!strcmp(ctx->argv[i], "--verbose")) {
            verbose = true;
        } else if (!strcmp(ctx->argv[i], "--dir") && i + 1 < ctx->argc) {
            dir = ctx->argv[++i];
        } else {
            fprintf(stderr, "minicrm up: unknown argument %s\n", ctx->argv[i]);
            usage();
            return 2;
        }
    }
    if (ctx->help) {
        usage();
        return 0;
    }

    char bins[PATH_MAX], path[PATH_MAX + 64];
    if (bin_dir(bins, sizeof bins) != 0) {
        fprintf(stderr, "minicrm up: cannot find the directory of the minicrm programs\n");
        return 1;
    }
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/up.lock", dir);
    int lock = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock < 0 || flock(lock, LOCK_EX | LOCK_NB) != 0) {
        char state[2048] = "";
        snprintf(path, sizeof path, "%s/up.state", dir);
        FILE *f = fopen(path, "r");
        if (f) {
            size_t r = fread(state, 1, sizeof state - 1, f);
            state[r] = '\0';
            fclose(f);
        }
        fprintf(stderr, "minicrm up is already running from %s:\n%s", dir, state);
        return 1;
    }

    bool own_redis = !env_set("REDIS_URL", "MINICRM_REDIS_URL");
    bool own_devdb = !env_set("MONGO_URI", "MINICRM_MONGO_URI");
    char err[256];
    rconn_url ru;
    if (rconn_parse_url(cfg->redis.url, &ru, err, sizeof err) != 0) {
        fprintf(stderr, "minicrm up: redis.url: %s\n", err);
        return 2;
    }
    bson_error_t berr;
    mongoc_uri_t *mu = mongoc_uri_new_with_error(cfg->mongo.uri, &berr);
    if (!mu) {
        fprintf(stderr, "minicrm up: mongo.uri: %s\n", berr.message);
        return 2;
    }
    const mongoc_host_list_t *mh = mongoc_uri_get_hosts(mu);
    char mhost[256];
    snprintf(mhost, sizeof mhost, "%s", mh ? mh->host : "127.0.0.1");
    int mport = mh ? mh->port : 27017;
    mongoc_uri_destroy(mu);

    struct {
        bool check;
        const char *what;
        const char *host;
        int port;
    } ports[] = {{own_redis, "redis-server", ru.host, ru.port},
                 {own_devdb, "minicrm-devdb", mhost, mport},
                 {true, "minicrm-api", "127.0.0.1", cfg->api.port}};
    for (size_t i = 0; i < sizeof ports / sizeof ports[0]; i++) {
        if (ports[i].check && port_in_use(ports[i].host, ports[i].port)) {
            fprintf(stderr,
                    "minicrm up: port %d (for %s) is already in use by another process.\n"
                    "Stop it, or choose other ports (PORT, redis.url, mongo.uri), or point\n"
                    "REDIS_URL / MONGO_URI at services that are already running.\n",
                    ports[i].port, ports[i].what);
            return 1;
        }
    }

    /* The vendor simulator posts receipts to this API: follow the API's port unless the user
     * pointed API_BASE_URL elsewhere. */
    if (!env_set("API_BASE_URL", "MINICRM_VENDOR_SIM_API_BASE_URL") &&
        !strcmp(cfg->vendor_sim.api_base_url, "http://localhost:5000")) {
        char url[64];
        snprintf(url, sizeof url, "http://127.0.0.1:%d", cfg->api.port);
        if (cfg_set(cfg, "vendor_sim.api_base_url", url, "minicrm up", err, sizeof err) != 0) {
            fprintf(stderr, "minicrm up: %s\n", err);
            return 2;
        }
    }
    /* A real vendor secret instead of the public development one, unless one was given. */
    if (!env_set("VENDOR_SECRET", "MINICRM_RECEIPTS_VENDOR_SECRET") &&
        !strcmp(cfg->receipts.vendor_secret, CFG_DEV_VENDOR_SECRET)) {
        char secret[160];
        if (local_secret(dir, "vendor-secret", secret, sizeof secret, err, sizeof err) != 0 ||
            cfg_set(cfg, "receipts.vendor_secret", secret, "vendor-secret", err, sizeof err) != 0) {
            fprintf(stderr, "minicrm up: vendor secret: %s\n", err);
            return 1;
        }
    }
    /* The same for the session secret, so that logins survive a restart of up. */
    if (!cfg->auth.session_secret[0]) {
        char secret[160];
        if (local_secret(dir, "session-secret", secret, sizeof secret, err, sizeof err) != 0 ||
            cfg_set(cfg, "auth.session_secret", secret, "session-secret", err, sizeof err) != 0) {
            fprintf(stderr, "minicrm up: session secret: %s\n", err);
            return 1;
        }
    }
    /* One console for the whole system: the API's per-request lines would bury warnings,
     * lifecycle events and progress, so they are off here unless asked for. */
    if (!strcmp(cfg->api.access_log, "auto") &&
        cfg_set(cfg, "api.access_log", verbose ? "on" : "off", "minicrm up", err, sizeof err) !=
            0) {
        fprintf(stderr, "minicrm up: %s\n", err);
        return 2;
    }
    export_config(cfg);
    if (signals_install() != 0) {
        fprintf(stderr, "minicrm up: cannot install signal handlers\n");
        return 1;
    }
    supervisor sup;
    sup_init(&sup);
    char portbuf[16], redis_dir[PATH_MAX], devdb_dir[PATH_MAX], wbuf[16];
    int i_redis = -1, i_devdb = -1;
    if (own_redis) {
        snprintf(redis_dir, sizeof redis_dir, "%s/redis", dir);
        private_dir(redis_dir);
        snprintf(portbuf, sizeof portbuf, "%d", ru.port);
        char *argv[] = {"/usr/bin/redis-server",
                        "--port",
                        portbuf,
                        "--bind",
                        "127.0.0.1",
                        "--dir",
                        redis_dir,
                        "--appendonly",
                        "yes",
                        "--save",
                        "",
                        "--daemonize",
                        "no",
                        NULL};
        i_redis = sup_add(&sup, "redis", argv);
    }
    if (own_devdb) {
        char p[PATH_MAX + 32], mp[16];
        snprintf(p, sizeof p, "%s/minicrm-devdb", bins);
        snprintf(mp, sizeof mp, "%d", mport);
        snprintf(devdb_dir, sizeof devdb_dir, "%s/devdb", dir);
        private_dir(devdb_dir);
        char *argv[] = {p, "--port", mp, "--bind", mhost, "--dbpath", devdb_dir, NULL};
        i_devdb = sup_add(&sup, "devdb", argv);
    }
    const char *progs[][2] = {
        {"api", "minicrm-api"},           {"worker", "minicrm-worker"},
        {"receipts", "minicrm-receipts"}, {"vendor-sim", "minicrm-vendor-sim"},
        {"webhooks", "minicrm-webhooks"}, {"ai", "minicrm-ai"},
    };
    snprintf(wbuf, sizeof wbuf, "%d", workers);
    /* minicrm-ai only when AI is configured: it holds the key and calls the model server. */
    size_t nprogs = cfg->openai.api_key && *cfg->openai.api_key ? 6 : 5;
    for (size_t k = 0; k < nprogs; k++) {
        char p[PATH_MAX + 32];
        snprintf(p, sizeof p, "%s/%s", bins, progs[k][1]);
        char *argv[] = {p, NULL, NULL, NULL};
        if (k == 1) {
            argv[1] = "--procs";
            argv[2] = wbuf;
        }
        sup_add(&sup, progs[k][0], argv);
    }

    snprintf(path, sizeof path, "%s/up.state", dir);
    char state[2048], shown_redis[512], shown_mongo[1024];
    snprintf(state, sizeof state,
             "  pid %d\n  api http://127.0.0.1:%d\n  redis %s%s\n  mongo %s%s\n", (int)getpid(),
             cfg->api.port, redact_url(cfg->redis.url, shown_redis, sizeof shown_redis),
             own_redis ? " (own)" : "", redact_url(cfg->mongo.uri, shown_mongo, sizeof shown_mongo),
             own_devdb ? " (own devdb)" : "");
    if (write_private_file(path, state) != 0)
        sup_say(&sup, "cannot write %s: %s", path, strerror(errno));

    int rc = 0;
    /* Data stores first, each accepting connections before the programs that need them. */
    int stores[2] = {i_redis, i_devdb};
    int store_ports[2] = {ru.port, mport};
    for (int k = 0; k < 2; k++) {
        if (stores[k] < 0)
            continue;
        if (sup_start(&sup, stores[k]) != 0) {
            rc = 1;
            goto out;
        }
        int64_t deadline = time_mono_ms() + 20000;
        while (!port_in_use("127.0.0.1", store_ports[k])) {
            sup_poll(&sup, 50);
            if (signals_stop_requested())
                goto out;
            if (time_mono_ms() > deadline) {
                sup_say(&sup, "%s did not accept connections on port %d within 20 s",
                        sup.child[stores[k]].name, store_ports[k]);
                rc = 1;
                goto out;
            }
        }
    }
    for (int i = 0; i < sup.n; i++) {
        if (i != i_redis && i != i_devdb && sup_start(&sup, i) != 0) {
            rc = 1;
            goto out;
        }
    }
    char api_base[64], ready_url[96];
    snprintf(api_base, sizeof api_base, "http://127.0.0.1:%d", cfg->api.port);
    snprintf(ready_url, sizeof ready_url, "%s/readyz", api_base);
    httpc *probe = httpc_new(api_base, NULL, 500);
    int64_t t0 = time_mono_ms(), next_check = 0, next_note = t0 + 15000;
    bool ready = false;
    while (!signals_stop_requested()) {
        sup_poll(&sup, 100);
        int64_t now = time_mono_ms();
        if (!ready && now >= next_check) {
            next_check = now + 200;
            char perr[256];
            if (probe &&
                httpc_json(probe, "GET", "/readyz", NULL, NULL, perr, sizeof perr) == 200) {
                ready = true;
                sup_say(&sup, "ready in %.1f s", (double)(now - t0) / 1000.0);
                ensure_admin_key(&sup, cfg, dir);
                sup_say(&sup, "dashboard: http://localhost:%d/  (sign in with an API key)",
                        cfg->api.port);
                sup_say(&sup,
                        "API:    http://localhost:%d  (GET /healthz, /readyz; /metrics for admins)",
                        cfg->api.port);
                sup_say(&sup,
                        "login:  Google at http://localhost:%d/auth/google (needs "
                        "GOOGLE_CLIENT_ID and --set auth.allowed_domains=YOUR.DOMAIN or "
                        "auth.allowed_emails=...), or an API key: minicrm keys create --role admin",
                        cfg->api.port);
                char cli[640];
                sup_say(&sup,
                        "queues: minicrm queues --watch   (or redis-cli %s LLEN '%s{sends}:ready')",
                        rconn_cli_args(cfg->redis.url, cli, sizeof cli), cfg->redis.prefix);
                sup_say(&sup, "try:    minicrm demo      stop: Ctrl-C");
                if (demo) {
                    char self[PATH_MAX + 32];
                    snprintf(self, sizeof self, "%s/minicrm", bins);
                    char *argv[] = {self, "demo", NULL};
                    int d = sup_add(&sup, "demo", argv);
                    if (d >= 0) {
                        sup.child[d].oneshot = true;
                        sup_start(&sup, d);
                    }
                }
            } else if (now >= next_note) {
                next_note = now + 15000;
                sup_say(&sup, "still waiting for %s", ready_url);
            }
        }
    }
    sup_say(&sup, "stopping (signal %d)", signals_stop_signal());
    httpc_free(probe);
    probe = NULL;
out:
    sup_stop_all(&sup, cfg->workers.shutdown_timeout_s * 1000 + 5000);
    sup_say(&sup, "all stopped");
    sup_release(&sup);
    snprintf(path, sizeof path, "%s/up.state", dir);
    unlink(path);
    close(lock);
    return rc;
}
