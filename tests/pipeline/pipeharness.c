/*
 * pipeharness: see pipeharness.h. Programs are started with testenv_spawn (own process group,
 * so killing the group also kills minicrm-worker's children) and configured only through the
 * environment exported here, exactly as an operator would.
 */
#include "pipeharness.h"

#include "dbpool.h"
#include "jobs.h"
#include "rules.h"
#include "timeutil.h"

#include <curl/curl.h>
#include <jansson.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *const k_prog[PH_NPROCS] = {"minicrm-api", "minicrm-worker", "minicrm-receipts",
                                              "minicrm-vendor-sim"};

void pipeh_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

mongoc_collection_t *pipeh_coll(pipeh *h, const char *name)
{
    return mongoc_client_get_collection(h->mc, h->env.db_name, name);
}

const char *pipeh_logfile(pipeh *h, int which)
{
    static char path[PH_NPROCS][400];
    snprintf(path[which], sizeof path[which], "%s/%s.log", h->env.dir, k_prog[which]);
    return path[which];
}

static void setenv_int(const char *k, long v)
{
    char b[32];
    snprintf(b, sizeof b, "%ld", v);
    setenv(k, b, 1);
}

static int create_indexes(pipeh *h)
{
    bson_error_t e;
    /* as api/indexes.c: unique over campaign logs only (every ObjectId, no null) */
    bson_oid_t zero_oid;
    bson_oid_init_from_string(&zero_oid, "000000000000000000000000");
    bson_t *cmd = BCON_NEW("createIndexes", BCON_UTF8(DB_LOGS), "indexes", "[", "{", "key", "{",
                           "campaign_id", BCON_INT32(1), "customer_id", BCON_INT32(1), "}", "name",
                           BCON_UTF8("campaign_id_1_customer_id_1_campaigns"), "unique",
                           BCON_BOOL(true), "partialFilterExpression", "{", "campaign_id", "{",
                           "$gte", BCON_OID(&zero_oid), "}", "}", "}", "{", "key", "{", "updatedAt",
                           BCON_INT32(1), "}", "name", BCON_UTF8("updatedAt_1_pending"),
                           "partialFilterExpression", "{", "status", BCON_UTF8("PENDING"), "}", "}",
                           "{", "key", "{", "campaign_id", BCON_INT32(1), "status", BCON_INT32(1),
                           "}", "name", BCON_UTF8("campaign_id_1_status_1"), "}", "]");
    bool ok = mongoc_client_command_simple(h->mc, h->env.db_name, cmd, NULL, NULL, &e);
    bson_destroy(cmd);
    if (!ok)
        fprintf(stderr, "pipeharness: createIndexes: %s\n", e.message);
    cmd = BCON_NEW("createIndexes", BCON_UTF8(DB_CUSTOMERS), "indexes", "[", "{", "key", "{",
                   "total_spend", BCON_INT32(1), "}", "name", BCON_UTF8("total_spend_1"), "}", "]");
    ok = ok && mongoc_client_command_simple(h->mc, h->env.db_name, cmd, NULL, NULL, &e);
    bson_destroy(cmd);
    return ok ? 0 : -1;
}

int pipeh_start(pipeh *h)
{
    memset(h, 0, sizeof *h);
    if (testenv_start(&h->env, TESTENV_REDIS | TESTENV_DEVDB) != 0)
        return -1;
    char err[256];
    h->rc = rconn_new(h->env.redis_url, 5000, err, sizeof err);
    mongoc_init();
    h->mc = mongoc_client_new(h->env.mongo_uri);
    if (!h->rc || !h->mc) {
        fprintf(stderr, "pipeharness: cannot connect\n");
        return -1;
    }
    h->api_port = testenv_free_port();
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", h->api_port);
    setenv("REDIS_URL", h->env.redis_url, 1);
    /* The programs must use the env's private database. With an external MongoDB
     * (MINICRM_TEST_MONGO_URI) env.mongo_uri may still name the original database in its path
     * (mongoc_uri_get_string returns the string as given), so the path is rebuilt here. */
    char prog_uri[600];
    const char *hosts = strstr(h->env.mongo_uri, "://");
    const char *path = hosts ? strchr(hosts + 3, '/') : NULL;
    const char *query = path ? strchr(path, '?') : NULL;
    if (path)
        snprintf(prog_uri, sizeof prog_uri, "%.*s/%s%s", (int)(path - h->env.mongo_uri),
                 h->env.mongo_uri, h->env.db_name, query ? query : "");
    else
        snprintf(prog_uri, sizeof prog_uri, "%s", h->env.mongo_uri);
    setenv("MONGO_URI", prog_uri, 1);
    setenv("MINICRM_REDIS_PREFIX", h->env.prefix, 1);
    setenv_int("PORT", h->api_port);
    setenv("MINICRM_API_BIND", "127.0.0.1", 1);
    setenv("API_BASE_URL", url, 1);
    setenv("VENDOR_SECRET", "pipeline-test-secret", 1);
    setenv("SESSION_SECRET", "pipeline-test-session-secret", 1);
    /* Fast failure detection so kill -9 scenarios finish in seconds. */
    setenv_int("MINICRM_QUEUE_HEARTBEAT_TTL_S", 2);
    setenv_int("MINICRM_QUEUE_REAP_INTERVAL_MS", 200);
    setenv_int("MINICRM_QUEUE_BACKOFF_BASE_MS", 100);
    setenv_int("MINICRM_QUEUE_BACKOFF_MAX_MS", 2000);
    setenv_int("MINICRM_QUEUE_MAX_ATTEMPTS", 12);
    setenv_int("MINICRM_MONGO_TIMEOUT_MS", 1500);
    setenv_int("MINICRM_REDIS_TIMEOUT_MS", 3000);
    setenv_int("MINICRM_RECEIPTS_VENDOR_TIMEOUT_S", 20);
    setenv_int("MINICRM_RECEIPTS_SWEEP_INTERVAL_S", 2);
    setenv_int("MINICRM_RECEIPTS_RECOVER_AFTER_S", 3);
    /* No receipt events unless a test (or the caller's environment) asks for them: the
     * scenario tests count one receipt per log. */
    setenv("MINICRM_VENDOR_SIM_BOUNCE_RATE", "0", 0);
    setenv("MINICRM_VENDOR_SIM_COMPLAINT_RATE", "0", 0);
    setenv("MINICRM_VENDOR_SIM_OPEN_RATE", "0", 0);
    setenv("MINICRM_VENDOR_SIM_CLICK_RATE", "0", 0);
    setenv_int("MINICRM_VENDOR_SIM_MIN_DELAY_MS", 20);
    setenv_int("MINICRM_VENDOR_SIM_MAX_DELAY_MS", 300);
    setenv_int("MINICRM_VENDOR_SIM_SEED", 42);
    /* No simulated unsubscribes unless a test asks: the scenarios compute exact audiences. */
    setenv("MINICRM_VENDOR_SIM_UNSUBSCRIBE_RATE", "0", 1);
    setenv_int("MINICRM_WORKERS_BATCH_SIZE", 500);
    setenv_int("MINICRM_WORKERS_SHUTDOWN_TIMEOUT_S", 5);
    if (!getenv("MINICRM_LOG_LEVEL"))
        setenv("MINICRM_LOG_LEVEL", "info", 1);
    h->seed_now = time_now_ms();
    return create_indexes(h);
}

void pipeh_kill(pipeh *h, int which, int sig)
{
    if (h->pid[which] <= 0)
        return;
    kill(-h->pid[which], sig);
    testenv_kill_wait(h->pid[which], sig, 15000);
    /* SIGKILL of the group also took the worker's children; reap stragglers of the group. */
    kill(-h->pid[which], SIGKILL);
    h->pid[which] = 0;
}

void pipeh_stop(pipeh *h)
{
    for (int i = PH_NPROCS - 1; i >= 0; i--)
        pipeh_kill(h, i, SIGTERM);
    if (h->mc)
        mongoc_client_destroy(h->mc);
    h->mc = NULL;
    rconn_free(h->rc);
    h->rc = NULL;
    if (!getenv("MINICRM_KEEP_TESTENV"))
        testenv_stop(&h->env);
    else
        fprintf(stderr, "pipeharness: kept %s\n", h->env.dir);
}

int pipeh_spawn(pipeh *h, int which, const char *const *extra)
{
    char *argv[16];
    int n = 0;
    argv[n++] = (char *)testenv_bin(k_prog[which]);
    for (int i = 0; extra && extra[i] && n < 15; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    h->pid[which] = testenv_spawn(argv, pipeh_logfile(h, which));
    if (h->pid[which] < 0)
        return -1;
    if (which == PH_API && testenv_wait_port(h->api_port, 15000) != 0) {
        fprintf(stderr, "pipeharness: minicrm-api did not listen (see %s)\n",
                pipeh_logfile(h, which));
        return -1;
    }
    return 0;
}

double pipeh_spend(int i)
{
    return (double)(((long)i * 37) % 10000);
}

char pipeh_domain(int i)
{
    return (char)('a' + i % 3);
}

int pipeh_seed(pipeh *h, int n)
{
    mongoc_collection_t *c = pipeh_coll(h, DB_CUSTOMERS);
    enum { B = 1000 };
    bson_t *docs[B];
    int rc = 0;
    for (int off = 0; off < n && rc == 0; off += B) {
        int m = n - off < B ? n - off : B;
        for (int k = 0; k < m; k++) {
            int i = off + k;
            char name[32], email[64];
            snprintf(name, sizeof name, "Customer %d", i);
            snprintf(email, sizeof email, "c%d@%c.example", i, pipeh_domain(i));
            bson_oid_t oid;
            bson_oid_init(&oid, NULL);
            docs[k] =
                BCON_NEW("_id", BCON_OID(&oid), "name", BCON_UTF8(name), "email", BCON_UTF8(email),
                         "total_spend", BCON_DOUBLE(pipeh_spend(i)), "last_visit_date",
                         BCON_DATE_TIME(h->seed_now - (int64_t)(i % 100) * 86400000), "createdAt",
                         BCON_DATE_TIME(h->seed_now - (int64_t)i * 60000), "updatedAt",
                         BCON_DATE_TIME(h->seed_now));
            char domain[64]; /* as every writer of customer1 stores it (lib/rules) */
            BSON_APPEND_UTF8(docs[k], RULES_DOMAIN_FIELD,
                             rules_email_domain(email, domain, sizeof domain));
        }
        bson_error_t e;
        if (!mongoc_collection_insert_many(c, (const bson_t **)docs, (size_t)m, NULL, NULL, &e)) {
            fprintf(stderr, "pipeharness: seed: %s\n", e.message);
            rc = -1;
        }
        for (int k = 0; k < m; k++)
            bson_destroy(docs[k]);
    }
    mongoc_collection_destroy(c);
    return rc;
}

int pipeh_campaign(pipeh *h, const char *name, const char *rules_json, bson_oid_t *out)
{
    bson_error_t e;
    bson_t *rdoc = bson_new_from_json((const uint8_t *)rules_json, -1, &e);
    if (!rdoc)
        return -1;
    bson_oid_init(out, NULL);
    int64_t now = time_now_ms();
    bson_t *doc = BCON_NEW(
        "_id", BCON_OID(out), "name", BCON_UTF8(name), "rules", BCON_DOCUMENT(rdoc), "message",
        BCON_NULL, "tags", "[", "]", "status", BCON_UTF8("QUEUED"), "total", BCON_INT64(0),
        "pending", BCON_INT64(0), "sent", BCON_INT64(0), "failed", BCON_INT64(0), "rules_now",
        BCON_DATE_TIME(now), "createdAt", BCON_DATE_TIME(now), "updatedAt", BCON_DATE_TIME(now));
    mongoc_collection_t *c = pipeh_coll(h, DB_CAMPAIGNS);
    bool ok = mongoc_collection_insert_one(c, doc, NULL, NULL, &e);
    mongoc_collection_destroy(c);
    bson_destroy(doc);
    bson_destroy(rdoc);
    if (!ok) {
        fprintf(stderr, "pipeharness: campaign: %s\n", e.message);
        return -1;
    }
    char hex[25], job[JOBS_CAMPAIGN_BYTES], err[256];
    bson_oid_to_string(out, hex);
    int jl = jobs_campaign_encode(hex, job, sizeof job);
    queue *q = queue_open(h->rc, h->env.prefix, QUEUE_CAMPAIGNS, NULL, NULL, err, sizeof err);
    int rc = q && jl > 0 ? queue_push(q, job, (size_t)jl) : -1;
    queue_close(q);
    return rc;
}

int pipeh_read(pipeh *h, const bson_oid_t *cid, ph_campaign *out)
{
    memset(out, 0, sizeof *out);
    mongoc_collection_t *c = pipeh_coll(h, DB_CAMPAIGNS);
    bson_t *f = BCON_NEW("_id", BCON_OID(cid));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, f, NULL, NULL);
    const bson_t *doc;
    int rc = -1;
    if (mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it;
        if (bson_iter_init_find(&it, doc, "status") && BSON_ITER_HOLDS_UTF8(&it))
            snprintf(out->status, sizeof out->status, "%s", bson_iter_utf8(&it, NULL));
        const char *names[] = {"total",   "pending",    "sent",   "failed", "cancelled",
                               "bounced", "complained", "opened", "clicked"};
        int64_t *dst[] = {&out->total,      &out->pending,   &out->sent,
                          &out->failed,     &out->cancelled, &out->bounced,
                          &out->complained, &out->opened,    &out->clicked};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (bson_iter_init_find(&it, doc, names[i]) && BSON_ITER_HOLDS_NUMBER(&it))
                *dst[i] = bson_iter_as_int64(&it);
        if (bson_iter_init_find(&it, doc, "fanout_done") && BSON_ITER_HOLDS_BOOL(&it))
            out->fanout_done = bson_iter_bool(&it);
        rc = 0;
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(f);
    mongoc_collection_destroy(c);
    return rc;
}

int pipeh_wait_completed(pipeh *h, const bson_oid_t *cid, int timeout_ms, ph_campaign *out)
{
    int64_t deadline = time_mono_ms() + timeout_ms;
    while (time_mono_ms() < deadline) {
        if (pipeh_read(h, cid, out) == 0 && !strcmp(out->status, "COMPLETED"))
            return 0;
        pipeh_sleep_ms(100);
    }
    return -1;
}

long long pipeh_count_logs(pipeh *h, const bson_oid_t *cid, long long out[4])
{
    memset(out, 0, 4 * sizeof *out);
    mongoc_collection_t *c = pipeh_coll(h, DB_LOGS);
    bson_t *f = BCON_NEW("campaign_id", BCON_OID(cid));
    bson_t *o = BCON_NEW("projection", "{", "status", BCON_INT32(1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, f, o, NULL);
    const bson_t *doc;
    long long n = 0;
    while (mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it;
        const char *s = "";
        if (bson_iter_init_find(&it, doc, "status") && BSON_ITER_HOLDS_UTF8(&it))
            s = bson_iter_utf8(&it, NULL);
        out[!strcmp(s, "PENDING") ? 0 : !strcmp(s, "SENT") ? 1 : !strcmp(s, "FAILED") ? 2 : 3]++;
        n++;
    }
    bson_error_t e;
    if (mongoc_cursor_error(cur, &e)) {
        fprintf(stderr, "pipeharness: count logs: %s\n", e.message);
        n = -1;
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(f);
    bson_destroy(o);
    mongoc_collection_destroy(c);
    return n;
}

/* ---- Helpers shared by the scenario tests ---------------------------------------------------- */

int pipeh_start_all(pipeh *h)
{
    static const char *const procs[] = {"--procs", "2", NULL};
    if (h->pid[PH_API] <= 0 && pipeh_spawn(h, PH_API, NULL) != 0)
        return -1;
    if (h->pid[PH_WORKER] <= 0 && pipeh_spawn(h, PH_WORKER, procs) != 0)
        return -1;
    if (h->pid[PH_RECEIPTS] <= 0 && pipeh_spawn(h, PH_RECEIPTS, NULL) != 0)
        return -1;
    if (h->pid[PH_VENDOR] <= 0 && pipeh_spawn(h, PH_VENDOR, NULL) != 0)
        return -1;
    return 0;
}

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
    pipeh_answer *a = ud;
    size_t add = sz * n;
    if (a->n + add >= sizeof a->body)
        add = sizeof a->body - 1 - a->n;
    memcpy(a->body + a->n, p, add);
    a->n += add;
    a->body[a->n] = '\0';
    return sz * n;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
    pipeh_answer *a = ud;
    size_t len = sz * n;
    if (len >= 20 && !strncasecmp(p, "Idempotent-Replayed:", 20))
        a->replayed = true;
    if (len > 13 && !strncasecmp(p, "Content-Type:", 13)) {
        snprintf(a->ctype, sizeof a->ctype, "%.*s", (int)(len - 13), p + 13);
        a->ctype[strcspn(a->ctype, "\r\n")] = '\0';
    }
    return len;
}

long pipeh_request(pipeh *h, const char *method, const char *path_or_url, const char *key,
                   const char *body, const char *ctype, const char *header, long timeout_ms,
                   pipeh_answer *a)
{
    char url[700], auth[300], ct[200];
    memset(a, 0, sizeof *a);
    if (!strncmp(path_or_url, "http", 4))
        snprintf(url, sizeof url, "%s", path_or_url);
    else
        snprintf(url, sizeof url, "http://127.0.0.1:%d%s", h->api_port, path_or_url);
    CURL *c = curl_easy_init();
    if (!c)
        return 0;
    struct curl_slist *hd = NULL;
    if (key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
        hd = curl_slist_append(hd, auth);
    }
    if (body) {
        snprintf(ct, sizeof ct, "Content-Type: %s", ctype ? ctype : "application/json");
        hd = curl_slist_append(hd, ct);
    }
    if (header)
        hd = curl_slist_append(hd, header);
    if (!strcmp(method, "POST"))
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
    else if (strcmp(method, "GET") != 0)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body && strcmp(method, "POST") != 0)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, a);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a->status);
    curl_slist_free_all(hd);
    curl_easy_cleanup(c);
    return a->status;
}

long pipeh_post(pipeh *h, const char *path, const char *key, const char *body, const char *header,
                long timeout_ms, pipeh_answer *a)
{
    return pipeh_request(h, "POST", path, key, body, NULL, header, timeout_ms, a);
}

long pipeh_get(pipeh *h, const char *path, const char *key, long timeout_ms, pipeh_answer *a)
{
    return pipeh_request(h, "GET", path, key, NULL, NULL, NULL, timeout_ms, a);
}

int pipeh_make_key(pipeh *h, const char *role, const char *name, char *out, size_t n)
{
    char cmd[800];
    snprintf(cmd, sizeof cmd, "'%s' keys create --role %s --name %s 2>>'%s/cli.log'",
             testenv_bin("minicrm"), role, name, h->env.dir);
    out[0] = '\0';
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    char *got = fgets(out, (int)n, p);
    int st = pclose(p);
    out[strcspn(out, "\r\n")] = '\0';
    return got && st == 0 && !strncmp(out, "mck_", 4) ? 0 : -1;
}

int pipeh_wait_log_final(pipeh *h, const bson_oid_t *lid, int timeout_ms, char status[16])
{
    mongoc_collection_t *logs = pipeh_coll(h, DB_LOGS);
    int64_t deadline = time_mono_ms() + timeout_ms;
    snprintf(status, 16, "PENDING");
    while (!strcmp(status, "PENDING") && time_mono_ms() < deadline) {
        bson_t *f = BCON_NEW("_id", BCON_OID(lid));
        mongoc_cursor_t *cur = mongoc_collection_find_with_opts(logs, f, NULL, NULL);
        const bson_t *d;
        bson_iter_t it;
        if (mongoc_cursor_next(cur, &d) && bson_iter_init_find(&it, d, "status") &&
            BSON_ITER_HOLDS_UTF8(&it))
            snprintf(status, 16, "%s", bson_iter_utf8(&it, NULL));
        mongoc_cursor_destroy(cur);
        bson_destroy(f);
        if (!strcmp(status, "PENDING"))
            pipeh_sleep_ms(20);
    }
    mongoc_collection_destroy(logs);
    return strcmp(status, "PENDING") ? 0 : -1;
}

int pipeh_wait_mid_flight(pipeh *h, const bson_oid_t *cid, long long min_final, int timeout_ms)
{
    int64_t deadline = time_mono_ms() + timeout_ms;
    ph_campaign c;
    while (time_mono_ms() < deadline) {
        if (pipeh_read(h, cid, &c) == 0) {
            if (!strcmp(c.status, "COMPLETED"))
                return -1;
            if (c.sent + c.failed >= min_final)
                return 0;
        }
        pipeh_sleep_ms(5);
    }
    return -1;
}

long long pipeh_stale_tokens(pipeh *h, const bson_oid_t *cid,
                             void (*moved_by)(bson_t *filter, const char *tok))
{
    redisReply *z = rconn_command(h->rc, "ZRANGE %s{receipts}:ctoks 0 -1", h->env.prefix);
    if (!z || z->type != REDIS_REPLY_ARRAY) {
        if (z)
            freeReplyObject(z);
        return -1;
    }
    mongoc_collection_t *logs = pipeh_coll(h, DB_LOGS), *camps = pipeh_coll(h, DB_CAMPAIGNS);
    long long stale = 0;
    for (size_t i = 0; i < z->elements; i++) {
        const char *tok = z->element[i]->str;
        redisReply *ids = rconn_command(h->rc, "GET %s{receipts}:ctok:%s", h->env.prefix, tok);
        if (!ids || ids->type != REDIS_REPLY_STRING) {
            if (ids)
                freeReplyObject(ids);
            continue;
        }
        bson_t f = BSON_INITIALIZER, in, arr;
        BSON_APPEND_DOCUMENT_BEGIN(&f, "_id", &in);
        BSON_APPEND_ARRAY_BEGIN(&in, "$in", &arr);
        char hex[25], k[16];
        for (size_t j = 0; j + 24 <= ids->len; j += 24) {
            memcpy(hex, ids->str + j, 24);
            hex[24] = '\0';
            bson_oid_t oid;
            bson_oid_init_from_string(&oid, hex);
            const char *key;
            bson_uint32_to_string((uint32_t)(j / 24), &key, k, sizeof k);
            bson_append_oid(&arr, key, -1, &oid);
        }
        bson_append_array_end(&in, &arr);
        bson_append_document_end(&f, &in);
        moved_by(&f, tok);
        BSON_APPEND_OID(&f, "campaign_id", cid);
        freeReplyObject(ids);
        bson_error_t e;
        int64_t moved = mongoc_collection_count_documents(logs, &f, NULL, NULL, NULL, &e);
        bson_destroy(&f);
        bson_t *cf = BCON_NEW("_id", BCON_OID(cid), "ctoks", BCON_UTF8(tok));
        int64_t counted = mongoc_collection_count_documents(camps, cf, NULL, NULL, NULL, &e);
        bson_destroy(cf);
        if (moved > 0 && counted == 0)
            stale++;
    }
    freeReplyObject(z);
    mongoc_collection_destroy(logs);
    mongoc_collection_destroy(camps);
    return stale;
}

int pipeh_rand(unsigned *state, int lo, int hi)
{
    *state = *state * 1103515245u + 12345u;
    return lo + (int)((*state >> 8) % (unsigned)(hi - lo + 1));
}

long pipeh_post_move(pipeh *h, const char *key, const bson_oid_t *cid, const char *move,
                     long timeout_ms, pipeh_answer *a)
{
    char hex[25], path[200];
    bson_oid_to_string(cid, hex);
    snprintf(path, sizeof path, "/api/campaigns/%s/%s", hex, move);
    return pipeh_post(h, path, key, NULL, NULL, timeout_ms, a);
}

const char *pipeh_answer_status(const pipeh_answer *a, char out[16])
{
    json_error_t je;
    json_t *j = json_loads(a->body, 0, &je);
    snprintf(out, 16, "%s", j ? json_string_value(json_object_get(j, "status")) : "");
    json_decref(j);
    return out;
}

long long pipeh_answer_took_ms(const pipeh_answer *a)
{
    json_error_t je;
    json_t *j = json_loads(a->body, 0, &je);
    json_t *t = json_object_get(json_object_get(j, "transition"), "took_ms");
    long long v = json_is_integer(t) ? (long long)json_integer_value(t) : -1;
    json_decref(j);
    return v;
}

long long pipeh_final_logs(pipeh *h, const bson_oid_t *cid)
{
    long long by[4];
    if (pipeh_count_logs(h, cid, by) < 0)
        return -1;
    return by[1] + by[2];
}

void pipeh_use_shards(int shards)
{
    minicrm_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.queue.shards = shards;
    queue_use_config(&cfg);
}

void pipeh_use_shards_env(void)
{
    const char *sh = getenv("MINICRM_QUEUE_SHARDS");
    if (sh)
        pipeh_use_shards((int)strtol(sh, NULL, 10));
}

int pipeh_start_on_cluster(pipeh *h, const char *cluster_url, int shards)
{
    char n[16];
    snprintf(n, sizeof n, "%d", shards);
    /* The harness takes an external Redis from this variable; the programs get it as
     * REDIS_URL with a private prefix. */
    setenv("MINICRM_TEST_REDIS_URL", cluster_url, 1);
    setenv("MINICRM_QUEUE_SHARDS", n, 1);
    pipeh_use_shards(shards);
    if (pipeh_start(h) != 0)
        return -1;
    setenv("MINICRM_TEST_DIR", h->env.dir, 1);
    /* A failover takes the node timeout (1 s) plus an election: commands ride it out. */
    setenv("MINICRM_REDIS_TIMEOUT_MS", "8000", 1);
    setenv("MINICRM_VENDOR_SIM_MAX_DELAY_MS", "1500", 1);
    return 0;
}

int pipeh_run_cli(const char *args, char *out, size_t n, bool with_stderr)
{
    char cmd[800];
    snprintf(cmd, sizeof cmd, "'%s' %s%s", testenv_bin("minicrm"), args,
             with_stderr ? " 2>&1" : "");
    return testenv_run_cmd(cmd, out, n);
}
