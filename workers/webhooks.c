/*
 * webhooks: see webhooks.h for the queues, the outcomes of an attempt and the crash points.
 *
 * Layout: the endpoint cache is an array of the enabled endpoints (id, url, secret, a bit per
 * subscribed event type), reloaded when older than webhooks.cache_ttl_ms, or at once when a
 * delivery names an endpoint the cache does not hold (it may be newer than the cache). The
 * deliveries in flight are an array of `flight`, one per libcurl easy handle, each owning its
 * claimed job's text (the consumer's batch gives it up), its headers and its body.
 */
#include "webhooks.h"

#include "jobs.h"
#include "log.h"
#include "timeutil.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPLY_MAX 4096 /* bytes of an endpoint's answer kept (for the error text) */

typedef struct endpoint {
    char id[25];
    char *url;
    char secret[WEBHOOK_SECRET_MAX + 1];
    uint32_t events; /* bit per jobs_event_type */
} endpoint;

/* How a finished attempt is settled on the webhooks queue. */
typedef enum { SETTLE_ACK = 0, SETTLE_RETRY, SETTLE_DEAD } settle_kind;

typedef struct flight {
    CURL *h;
    settle_kind settle; /* set when the attempt finished */
    long long delay_ms; /* SETTLE_RETRY */
    char error[CURL_ERROR_SIZE + 128];
    queue_job job; /* owned: the claimed job's text */
    jobs_delivery d;
    struct curl_slist *hdrs;
    jsonx_buf body;
    char curl_err[CURL_ERROR_SIZE];
    size_t got; /* bytes of the answer read (discarded beyond REPLY_MAX) */
} flight;

struct webhooks_ctx {
    const minicrm_config *cfg;
    dbpool *db;
    queue *events, *q;
    CURLM *multi;
    int64_t sched[WEBHOOK_RETRY_MAX];
    size_t nsched;
    endpoint *eps;
    size_t neps;
    int64_t eps_loaded_ms; /* monotonic; 0 = never */
    flight **fl;
    size_t nfl;
    flight **unsettled; /* finished, but Redis failed to take the settle: tried again in tick */
    size_t nun;
    webhooks_stats st;
};

static void settle_or_keep(webhooks_ctx *x, flight *f);

/* ---- endpoints ------------------------------------------------------------------------------ */

static void eps_clear(webhooks_ctx *x)
{
    for (size_t i = 0; i < x->neps; i++) {
        free(x->eps[i].url);
        explicit_bzero(x->eps[i].secret, sizeof x->eps[i].secret);
    }
    free(x->eps);
    x->eps = NULL;
    x->neps = 0;
}

/* Load the enabled endpoints. 0 or -1 (the old cache is kept). */
static int eps_load(webhooks_ctx *x)
{
    mongoc_client_t *cl = dbpool_pop(x->db);
    mongoc_collection_t *c = dbpool_collection(x->db, cl, DB_WEBHOOKS);
    bson_t *f = BCON_NEW("enabled", BCON_BOOL(true));
    bson_t *o = BCON_NEW("projection", "{", "url", BCON_INT32(1), "secret", BCON_INT32(1), "events",
                         BCON_INT32(1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, f, o, NULL);
    endpoint *a = NULL;
    size_t n = 0, cap = 0;
    const bson_t *doc;
    bson_error_t e;
    int rc = 0;
    while (mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it, arr;
        endpoint ep = {0};
        if (!bson_iter_init_find(&it, doc, "_id") || !BSON_ITER_HOLDS_OID(&it))
            continue;
        bson_oid_to_string(bson_iter_oid(&it), ep.id);
        if (!bson_iter_init_find(&it, doc, "url") || !BSON_ITER_HOLDS_UTF8(&it))
            continue;
        const char *url = bson_iter_utf8(&it, NULL);
        if (!bson_iter_init_find(&it, doc, "secret") || !BSON_ITER_HOLDS_UTF8(&it))
            continue;
        snprintf(ep.secret, sizeof ep.secret, "%s", bson_iter_utf8(&it, NULL));
        if (bson_iter_init_find(&it, doc, "events") && BSON_ITER_HOLDS_ARRAY(&it) &&
            bson_iter_recurse(&it, &arr))
            while (bson_iter_next(&arr)) {
                uint32_t len;
                jobs_event_type t;
                const char *s = BSON_ITER_HOLDS_UTF8(&arr) ? bson_iter_utf8(&arr, &len) : NULL;
                if (s && jobs_event_type_parse(s, len, &t) == 0)
                    ep.events |= 1u << t;
            }
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            endpoint *g = realloc(a, nc * sizeof *g);
            if (!g) {
                rc = -1;
                break;
            }
            a = g;
            cap = nc;
        }
        ep.url = strdup(url);
        if (!ep.url) {
            rc = -1;
            break;
        }
        a[n++] = ep;
    }
    if (rc == 0 && mongoc_cursor_error(cur, &e)) {
        log_warn("webhooks.endpoints_error", "detail=\"%s\"", e.message);
        rc = -1;
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(f);
    bson_destroy(o);
    mongoc_collection_destroy(c);
    dbpool_push(x->db, cl);
    if (rc != 0) {
        for (size_t i = 0; i < n; i++)
            free(a[i].url);
        free(a);
        return -1;
    }
    eps_clear(x);
    x->eps = a;
    x->neps = n;
    x->eps_loaded_ms = time_mono_ms();
    return 0;
}

static int eps_fresh(webhooks_ctx *x)
{
    if (x->eps_loaded_ms && time_mono_ms() - x->eps_loaded_ms < x->cfg->webhooks.cache_ttl_ms)
        return 0;
    return eps_load(x);
}

static endpoint *eps_find(webhooks_ctx *x, const char *id)
{
    for (size_t i = 0; i < x->neps; i++)
        if (strcmp(x->eps[i].id, id) == 0)
            return &x->eps[i];
    return NULL;
}

/* Whether the cache holds the endpoint of a delivery job (a malformed job counts as held: it
 * is dead-lettered without the endpoint). */
static bool eps_find_delivery(webhooks_ctx *x, const queue_job *job)
{
    jobs_delivery d;
    char why[160];
    return jobs_delivery_decode(job->data, job->len, &d, why, sizeof why) != 0 ||
           eps_find(x, d.endpoint_id) != NULL;
}

/* Record an attempt's outcome on the endpoint document (best effort: GET /api/webhooks shows
 * it; the delivery itself does not depend on it). */
static void eps_record(webhooks_ctx *x, const char *id, bool ok, long status, const char *error,
                       bool disable)
{
    bson_oid_t oid;
    bson_oid_init_from_string(&oid, id);
    int64_t now = time_now_ms();
    bson_t *sel = BCON_NEW("_id", BCON_OID(&oid));
    bson_t upd = BSON_INITIALIZER, set, last, inc;
    BSON_APPEND_DOCUMENT_BEGIN(&upd, "$set", &set);
    BSON_APPEND_DOCUMENT_BEGIN(&set, "last", &last);
    BSON_APPEND_DATE_TIME(&last, "at", now);
    BSON_APPEND_BOOL(&last, "ok", ok);
    BSON_APPEND_INT32(&last, "status", (int32_t)status);
    if (error)
        BSON_APPEND_UTF8(&last, "error", error);
    bson_append_document_end(&set, &last);
    if (ok)
        BSON_APPEND_INT64(&set, "failures", 0);
    if (disable) {
        BSON_APPEND_BOOL(&set, "enabled", false);
        BSON_APPEND_UTF8(&set, "disabledReason", "the endpoint answered 410 Gone");
        BSON_APPEND_DATE_TIME(&set, "disabledAt", now);
    }
    bson_append_document_end(&upd, &set);
    if (!ok || !disable) {
        BSON_APPEND_DOCUMENT_BEGIN(&upd, "$inc", &inc);
        BSON_APPEND_INT64(&inc, ok ? "deliveries" : "failures", 1);
        bson_append_document_end(&upd, &inc);
    }
    mongoc_client_t *cl = dbpool_pop(x->db);
    mongoc_collection_t *c = dbpool_durable_collection(x->db, cl, DB_WEBHOOKS);
    bson_error_t e;
    if (!mongoc_collection_update_one(c, sel, &upd, NULL, NULL, &e))
        log_warn("webhooks.record_failed", "endpoint=%s detail=\"%s\"", id, e.message);
    mongoc_collection_destroy(c);
    dbpool_push(x->db, cl);
    bson_destroy(sel);
    bson_destroy(&upd);
}

/* ---- events -> deliveries ------------------------------------------------------------------- */

/* Push the deliveries of one event (once per event id). 0, or -1 on a Redis error. */
static int expand_event(webhooks_ctx *x, const jobs_event *ev)
{
    jsonx_buf bufs[QUEUE_PUSH_ONCE_MAX];
    const char *jobs[QUEUE_PUSH_ONCE_MAX];
    size_t lens[QUEUE_PUSH_ONCE_MAX], n = 0, chunk = 0;
    int rc = 0;
    memset(bufs, 0, sizeof bufs);
    for (size_t i = 0; i <= x->neps && rc == 0; i++) {
        bool last = i == x->neps;
        if (!last && (x->eps[i].events & (1u << ev->type))) {
            jobs_delivery d = {.at = ev->at, .data = ev->data, .datalen = ev->datalen};
            memcpy(d.endpoint_id, x->eps[i].id, sizeof d.endpoint_id);
            memcpy(d.id, ev->id, sizeof d.id);
            snprintf(d.type, sizeof d.type, "%s", jobs_event_type_name(ev->type));
            jsonx_buf_reset(&bufs[n]);
            if (jobs_delivery_encode(&bufs[n], &d) == 0) {
                jobs[n] = bufs[n].data;
                lens[n] = bufs[n].len;
                n++;
            }
        }
        if (n > 0 && (n == QUEUE_PUSH_ONCE_MAX || last)) {
            char once[64];
            snprintf(once, sizeof once, "ev:%s:%zu", ev->id, chunk++);
            int p = queue_push_once(x->q, once, WEBHOOKS_ONCE_TTL_S, jobs, lens, n);
            if (p < 0)
                rc = -1;
            else if (p > 0)
                x->st.queued += (long long)n;
            n = 0;
        }
    }
    for (size_t i = 0; i < QUEUE_PUSH_ONCE_MAX; i++)
        jsonx_buf_free(&bufs[i]);
    return rc;
}

static consumer_result handle_events(void *arg, queue_batch *b)
{
    webhooks_ctx *x = arg;
    if (eps_fresh(x) != 0)
        return CONSUMER_AGAIN; /* MongoDB trouble: the same events again after a pause */
    for (size_t i = 0; i < b->n; i++) {
        jobs_event ev;
        char why[160];
        if (jobs_event_decode(b->jobs[i].data, b->jobs[i].len, &ev, why, sizeof why) != 0) {
            if (queue_dead(x->events, &b->jobs[i], why) != 0)
                return CONSUMER_AGAIN;
            continue;
        }
        x->st.events++;
        if (expand_event(x, &ev) != 0 || queue_ack(x->events, &b->jobs[i], 1) != 0)
            return CONSUMER_AGAIN; /* the push is guarded by the event id: redo it */
    }
    return CONSUMER_OK;
}

/* ---- deliveries ----------------------------------------------------------------------------- */

static size_t discard(char *p, size_t size, size_t nmemb, void *arg)
{
    (void)p;
    flight *f = arg;
    f->got += size * nmemb;
    return size * nmemb;
}

static void flight_free(flight *f)
{
    if (!f)
        return;
    if (f->h)
        curl_easy_cleanup(f->h);
    curl_slist_free_all(f->hdrs);
    jsonx_buf_free(&f->body);
    free(f->job.data);
    free(f);
}

/* Start the attempt of f to ep. 0, or -1 (f is not in flight). */
static int flight_start(webhooks_ctx *x, flight *f, const endpoint *ep)
{
    char sig[WEBHOOK_SIG_MAX], line[256];
    int64_t ts = time_now_ms() / 1000;
    if (webhook_body(&f->body, f->d.type, f->d.at, f->d.data, f->d.datalen) != 0 ||
        webhook_sign(ep->secret, f->d.id, ts, f->body.data, f->body.len, sig, sizeof sig) != 0)
        return -1;
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, "Content-Type: application/json");
    snprintf(line, sizeof line, "webhook-id: %s", f->d.id);
    h = h ? curl_slist_append(h, line) : NULL;
    snprintf(line, sizeof line, "webhook-timestamp: %lld", (long long)ts);
    h = h ? curl_slist_append(h, line) : NULL;
    snprintf(line, sizeof line, "webhook-signature: %s", sig);
    h = h ? curl_slist_append(h, line) : NULL;
    h = h ? curl_slist_append(h, "Expect:") : NULL; /* no 100-continue round trip */
    f->hdrs = h;
    f->h = curl_easy_init();
    if (!h || !f->h)
        return -1;
    curl_easy_setopt(f->h, CURLOPT_URL, ep->url);
    curl_easy_setopt(f->h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(f->h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(f->h, CURLOPT_POST, 1L);
    curl_easy_setopt(f->h, CURLOPT_POSTFIELDS, f->body.data);
    curl_easy_setopt(f->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)f->body.len);
    curl_easy_setopt(f->h, CURLOPT_HTTPHEADER, f->hdrs);
    curl_easy_setopt(f->h, CURLOPT_USERAGENT, "minicrm-webhooks");
    curl_easy_setopt(f->h, CURLOPT_TIMEOUT_MS, (long)x->cfg->webhooks.timeout_ms);
    curl_easy_setopt(f->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(f->h, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(f->h, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(f->h, CURLOPT_ERRORBUFFER, f->curl_err);
    curl_easy_setopt(f->h, CURLOPT_PRIVATE, f);
    if (curl_multi_add_handle(x->multi, f->h) != CURLM_OK)
        return -1;
    flight **g = realloc(x->fl, (x->nfl + 1) * sizeof *g);
    if (!g) {
        curl_multi_remove_handle(x->multi, f->h);
        return -1;
    }
    x->fl = g;
    x->fl[x->nfl++] = f;
    return 0;
}

static size_t want(void *arg, int *block_ms)
{
    webhooks_ctx *x = arg;
    size_t max = (size_t)x->cfg->webhooks.max_inflight;
    if (x->nfl > 0)
        *block_ms = 0; /* transfers to drive: tick waits on them instead */
    return x->nfl >= max ? 0 : max - x->nfl;
}

static consumer_result handle_deliveries(void *arg, queue_batch *b)
{
    webhooks_ctx *x = arg;
    bool reloaded = false;
    /* MongoDB trouble: the batch is handled again after a pause (the jobs it already took are
     * NULL in it and skipped); never dropped for want of the endpoint list. */
    if (eps_fresh(x) != 0)
        return CONSUMER_AGAIN;
    for (size_t i = 0; i < b->n; i++) {
        if (!b->jobs[i].data)
            continue;
        if (!reloaded && !eps_find_delivery(x, &b->jobs[i])) {
            reloaded = true; /* a delivery for an endpoint newer than the cache? */
            if (eps_load(x) != 0)
                return CONSUMER_AGAIN;
        }
        flight *f = calloc(1, sizeof *f);
        if (!f)
            return CONSUMER_AGAIN;
        f->job = b->jobs[i];
        b->jobs[i].data = NULL; /* taken over (or settled below) */
        char why[160];
        if (jobs_delivery_decode(f->job.data, f->job.len, &f->d, why, sizeof why) != 0) {
            x->st.dead++;
            f->settle = SETTLE_DEAD;
            snprintf(f->error, sizeof f->error, "%s", why);
            settle_or_keep(x, f);
            continue;
        }
        endpoint *ep = eps_find(x, f->d.endpoint_id);
        if (!ep) {
            log_info("webhooks.dropped",
                     "endpoint=%s event=%s reason=\"endpoint deleted or "
                     "disabled\"",
                     f->d.endpoint_id, f->d.id);
            x->st.dropped++;
            f->settle = SETTLE_ACK;
            settle_or_keep(x, f);
            continue;
        }
        if (flight_start(x, f, ep) != 0) {
            x->st.failed++;
            f->settle = SETTLE_RETRY;
            f->delay_ms = x->sched[0];
            snprintf(f->error, sizeof f->error, "cannot start the request (out of memory?)");
            settle_or_keep(x, f);
        }
    }
    return CONSUMER_OK;
}

/* Apply f's settle to the webhooks queue. 0, or -1 (Redis error: try again later). */
static int settle(webhooks_ctx *x, flight *f)
{
    switch (f->settle) {
    case SETTLE_ACK:
        return queue_ack(x->q, &f->job, 1);
    case SETTLE_RETRY:
        return queue_retry_after(x->q, &f->job, f->error, f->delay_ms) < 0 ? -1 : 0;
    case SETTLE_DEAD:
        return queue_dead(x->q, &f->job, f->error);
    }
    return -1;
}

/* Settle f, or keep it for a later try (its job stays claimed meanwhile); takes f over. */
static void settle_or_keep(webhooks_ctx *x, flight *f)
{
    if (settle(x, f) == 0) {
        flight_free(f);
        return;
    }
    flight **g = realloc(x->unsettled, (x->nun + 1) * sizeof *g);
    if (!g) { /* the job stays claimed: it comes back at the next start of this worker */
        log_warn("webhooks.settle_lost", "event=%s endpoint=%s", f->d.id, f->d.endpoint_id);
        flight_free(f);
        return;
    }
    log_warn("webhooks.settle_failed", "event=%s detail=\"%s\"", f->d.id, queue_error(x->q));
    x->unsettled = g;
    x->unsettled[x->nun++] = f;
}

/* Decide how a finished attempt is settled and record it on the endpoint. */
static void finish(webhooks_ctx *x, flight *f, CURLcode cc)
{
    long status = 0;
    if (cc == CURLE_OK)
        curl_easy_getinfo(f->h, CURLINFO_RESPONSE_CODE, &status);
    if (cc == CURLE_OK && status >= 200 && status < 300) {
        x->st.delivered++;
        f->settle = SETTLE_ACK;
        eps_record(x, f->d.endpoint_id, true, status, NULL, false);
        return;
    }
    if (cc == CURLE_OK && status == 410) {
        x->st.disabled++;
        f->settle = SETTLE_ACK;
        eps_record(x, f->d.endpoint_id, false, status, "410 Gone: endpoint disabled", true);
        endpoint *ep = eps_find(x, f->d.endpoint_id);
        if (ep) /* no more deliveries from this cache either */
            ep->events = 0, ep->id[0] = '\0';
        log_warn("webhooks.endpoint_disabled", "endpoint=%s reason=\"answered 410 Gone\"",
                 f->d.endpoint_id);
        return;
    }
    char error[CURL_ERROR_SIZE + 64];
    if (cc != CURLE_OK)
        snprintf(error, sizeof error, "%s", f->curl_err[0] ? f->curl_err : curl_easy_strerror(cc));
    else
        snprintf(error, sizeof error, "endpoint answered HTTP %ld", status);
    x->st.failed++;
    eps_record(x, f->d.endpoint_id, false, status, error, false);
    if ((size_t)f->d.attempts >= x->nsched) {
        snprintf(f->error, sizeof f->error,
                 "gave up after %d attempts (webhooks.retry_schedule): %s", f->d.attempts + 1,
                 error);
        x->st.dead++;
        f->settle = SETTLE_DEAD;
        return;
    }
    snprintf(f->error, sizeof f->error, "%s", error);
    f->settle = SETTLE_RETRY;
    f->delay_ms = x->sched[f->d.attempts];
}

static void tick(void *arg, bool claimed)
{
    webhooks_ctx *x = arg;
    (void)claimed;
    for (size_t i = 0; i < x->nun;) { /* settles Redis refused earlier */
        if (settle(x, x->unsettled[i]) != 0)
            break;
        flight_free(x->unsettled[i]);
        x->unsettled[i] = x->unsettled[--x->nun];
    }
    if (x->nfl == 0)
        return;
    int running = 0;
    curl_multi_perform(x->multi, &running);
    if (running > 0)
        curl_multi_poll(x->multi, NULL, 0, 50, NULL);
    curl_multi_perform(x->multi, &running);
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(x->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        flight *f = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&f);
        CURLcode cc = m->data.result;
        curl_multi_remove_handle(x->multi, m->easy_handle);
        if (!f)
            continue;
        finish(x, f, cc);
        for (size_t i = 0; i < x->nfl; i++)
            if (x->fl[i] == f) {
                x->fl[i] = x->fl[--x->nfl];
                break;
            }
        settle_or_keep(x, f);
    }
}

static size_t held(void *arg)
{
    webhooks_ctx *x = arg;
    return x->nfl + x->nun;
}

static void progress(void *arg, char *buf, size_t n)
{
    webhooks_ctx *x = arg;
    snprintf(buf, n,
             "events=%lld queued=%lld delivered=%lld failed=%lld dead=%lld dropped=%lld "
             "disabled=%lld inflight=%zu",
             x->st.events, x->st.queued, x->st.delivered, x->st.failed, x->st.dead, x->st.dropped,
             x->st.disabled, x->nfl);
}

const consumer_ops webhooks_ops = {.want = want,
                                   .handle = handle_deliveries,
                                   .handle_priority = handle_events,
                                   .tick = tick,
                                   .held = held,
                                   .progress = progress};

/* ---- life ----------------------------------------------------------------------------------- */

webhooks_ctx *webhooks_new(const minicrm_config *cfg, dbpool *db, queue *events, queue *hooks,
                           char *err, size_t errlen)
{
    webhooks_ctx *x = calloc(1, sizeof *x);
    if (!x) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    x->cfg = cfg;
    x->db = db;
    x->events = events;
    x->q = hooks;
    if (webhook_schedule_parse(cfg->webhooks.retry_schedule, x->sched, WEBHOOK_RETRY_MAX,
                               &x->nsched, err, errlen) != 0) {
        free(x);
        return NULL;
    }
    x->multi = curl_multi_init();
    if (!x->multi) {
        snprintf(err, errlen, "curl_multi_init failed");
        free(x);
        return NULL;
    }
    return x;
}

void webhooks_free(webhooks_ctx *x)
{
    if (!x)
        return;
    for (size_t i = 0; i < x->nfl; i++) {
        curl_multi_remove_handle(x->multi, x->fl[i]->h);
        flight_free(x->fl[i]);
    }
    free(x->fl);
    for (size_t i = 0; i < x->nun; i++)
        flight_free(x->unsettled[i]);
    free(x->unsettled);
    eps_clear(x);
    curl_multi_cleanup(x->multi);
    free(x);
}

void webhooks_get_stats(const webhooks_ctx *x, webhooks_stats *out)
{
    *out = x->st;
    out->inflight = x->nfl;
}
