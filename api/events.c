/*
 * events: see events.h.
 *
 * A viewer's life:
 *
 *   h_events ──link──► [writing] ──frame done, nothing new──► [suspended]
 *                          ▲                                      │ ticker: new frame, heartbeat,
 *                          └──────────── MHD_resume_connection ───┘ end of life or stop
 *   [writing] ──stopping or past its life──► END_OF_STREAM ──MHD──► viewer_free (unlink)
 *
 * `suspended` is set by the reader right before MHD_suspend_connection and cleared by the
 * ticker right before MHD_resume_connection, both under the hub mutex, so a connection is
 * resumed exactly once per suspension and never after viewer_free unlinked it (libmicrohttpd
 * only frees a suspended connection at daemon stop, and events_hub_stop resumes them all
 * first).
 *
 * Frames are immutable, reference-counted (under the hub mutex) strings: the current event,
 * the greeting, the heartbeat and the history (rebuilt at most once per new sample). A viewer holds
 * a reference to the frame it is writing, so a new frame can replace the current one while slow
 * viewers still write the old one.
 */
#include "events.h"

#include "campctl.h"
#include "dbpool.h"
#include "http.h"
#include "jsonx.h"
#include "log.h"
#include "queue.h"
#include "rpool.h"
#include "timeutil.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct frame {
    int refs; /* under hub.mu */
    size_t len;
    char data[];
} frame;

/* A campaign's messages that reached an end (sent + failed; bounced is a part of failed). */
typedef struct rate_seen {
    bson_oid_t id;
    long long done;
} rate_seen;

typedef struct viewer {
    events_hub *hub;
    struct MHD_Connection *conn;
    frame *out; /* being written (a reference), or NULL */
    size_t off;
    uint64_t seq;   /* id of the last event handed to this viewer */
    uint64_t beats; /* heartbeats handed */
    bool greeted;
    bool told_history;
    bool suspended;
    int64_t end_ms; /* monotonic: the stream ends here (EVENTS_MAX_LIFE_S) */
    struct viewer *prev, *next;
} viewer;

struct events_hub {
    api_ctx *app;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t tid;
    bool started;
    bool stopping;
    bool force;       /* a viewer joined: publish at the next tick even if nothing changed */
    frame *current;   /* the latest event, or NULL before the first */
    uint64_t seq;     /* its id */
    int64_t frame_ms; /* monotonic time it was made */
    int64_t sent_ms;  /* last event or heartbeat */
    uint64_t beats;   /* heartbeats so far */
    char *last_body;  /* the last event's figures without "ts", to see a change */
    frame *greeting;  /* "retry: 3000" */
    frame *heartbeat; /* ": keepalive" */
    viewer *head;
    int nviewers;
    /* Messages per second, the last EVENTS_HISTORY_S seconds (under mu): slot sec % N holds
     * the messages that reached an end in wall-clock second hist_sec[slot]; a slot whose
     * second is older than the window counts as 0. */
    int64_t hist_sec[EVENTS_HISTORY_S];
    long long hist_n[EVENTS_HISTORY_S];
    uint64_t hist_ver; /* bumped by every sample */
    frame *hist_frame; /* the "history" event of hist_frame_ver at hist_frame_s, or NULL */
    uint64_t hist_frame_ver;
    int64_t hist_frame_s;
    /* The ticker's own (no lock): each campaign's finished messages at the last sample. */
    rate_seen prev[EVENTS_MAX_CAMPAIGNS];
    size_t nprev;
    bool based;      /* prev holds a sample (the first one only sets the baseline) */
    int64_t prev_ms; /* wall-clock time of that sample */
};

/* ---------------------------------------------------------------- frames */

static frame *frame_new(const char *s, size_t n)
{
    frame *f = malloc(sizeof *f + n + 1);
    if (!f)
        return NULL;
    f->refs = 1;
    f->len = n;
    memcpy(f->data, s, n);
    f->data[n] = '\0';
    return f;
}

/* Both under hub.mu. */
static frame *frame_ref(frame *f)
{
    if (f)
        f->refs++;
    return f;
}

static void frame_unref(frame *f)
{
    if (f && --f->refs == 0)
        free(f);
}

/* ---------------------------------------------------------------- the snapshot */

/* A counter of a campaign document as an integer (0 when absent). */
static long long doc_count(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_NUMBER(&it)
               ? (long long)bson_iter_as_int64(&it)
               : 0;
}

/* The messages that reached an end since the previous sample, from one campaign document, and
 * its figure for the next sample in cur[*ncur]. A campaign the previous sample did not hold
 * counts from 0 only when it was created since (a new campaign); otherwise (the first sample
 * after start, an old campaign coming back into the list) its figure is only a baseline. */
static long long sample_campaign(events_hub *h, const bson_t *doc, rate_seen *cur, size_t *ncur)
{
    bson_iter_t it;
    if (*ncur >= EVENTS_MAX_CAMPAIGNS || !bson_iter_init_find(&it, doc, "_id") ||
        !BSON_ITER_HOLDS_OID(&it))
        return 0;
    rate_seen *s = &cur[(*ncur)++];
    bson_oid_copy(bson_iter_oid(&it), &s->id);
    s->done = doc_count(doc, "sent") + doc_count(doc, "failed");
    for (size_t i = 0; i < h->nprev; i++)
        if (bson_oid_equal(&h->prev[i].id, &s->id))
            return s->done > h->prev[i].done ? s->done - h->prev[i].done : 0;
    bool fresh = h->based && bson_iter_init_find(&it, doc, "createdAt") &&
                 BSON_ITER_HOLDS_DATE_TIME(&it) &&
                 bson_iter_date_time(&it) >= h->prev_ms - EVENTS_TICK_MS;
    return fresh ? s->done : 0;
}

/* Under hub.mu: add n finished messages to wall-clock second sec. */
static void history_add(events_hub *h, int64_t sec, long long n)
{
    size_t slot = (size_t)(sec % EVENTS_HISTORY_S);
    if (h->hist_sec[slot] != sec) {
        h->hist_sec[slot] = sec;
        h->hist_n[slot] = 0;
    }
    h->hist_n[slot] += n;
    h->hist_ver++;
}

/* The campaigns a dashboard shows live: active ones and those changed in the last
 * EVENTS_RECENT_S, newest first, with their counters. Each read is also a sample of the
 * messages per second (the hub's history). With want_json false only the sample is taken (no
 * viewer: the history keeps filling). NULL when MongoDB failed or want_json is false. */
static json_t *read_campaigns(events_hub *h, bool want_json)
{
    api_ctx *app = h->app;
    int64_t now = time_now_ms();
    int64_t since = now - (int64_t)EVENTS_RECENT_S * 1000;
    bson_t *filter =
        BCON_NEW("$or", "[", "{", "status", "{", "$in", "[", BCON_UTF8("SENDING"),
                 BCON_UTF8("PAUSED"), BCON_UTF8("QUEUED"), BCON_UTF8("SCHEDULED"), "]", "}", "}",
                 "{", "updatedAt", "{", "$gte", BCON_DATE_TIME(since), "}", "}", "]");
    bson_t *opts = BCON_NEW(
        "projection", "{", "name", BCON_INT32(1), "status", BCON_INT32(1), "total", BCON_INT32(1),
        "pending", BCON_INT32(1), "sent", BCON_INT32(1), "failed", BCON_INT32(1), "cancelled",
        BCON_INT32(1), "bounced", BCON_INT32(1), "opened", BCON_INT32(1), "clicked", BCON_INT32(1),
        "complained", BCON_INT32(1), "audience_size", BCON_INT32(1), "createdAt", BCON_INT32(1),
        "startedAt", BCON_INT32(1), "completedAt", BCON_INT32(1), "send_at", BCON_INT32(1),
        "updatedAt", BCON_INT32(1), "}", "sort", "{", "createdAt", BCON_INT32(-1), "}", "limit",
        BCON_INT64(EVENTS_MAX_CAMPAIGNS), "batchSize", BCON_INT64(EVENTS_MAX_CAMPAIGNS),
        "maxTimeMS", BCON_INT64(2000));
    mongoc_client_t *cl = dbpool_pop(app->db);
    mongoc_collection_t *c = dbpool_collection(app->db, cl, DB_CAMPAIGNS);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, filter, opts, NULL);
    json_t *arr = json_array();
    rate_seen seen[EVENTS_MAX_CAMPAIGNS];
    size_t nseen = 0;
    long long moved = 0;
    const bson_t *doc;
    bson_error_t e;
    while (mongoc_cursor_next(cur, &doc)) {
        moved += sample_campaign(h, doc, seen, &nseen);
        json_t *v = want_json ? jsonx_from_bson(doc) : NULL;
        if (v)
            json_array_append_new(arr, v);
    }
    if (mongoc_cursor_error(cur, &e)) {
        json_decref(arr);
        arr = NULL;
    } else {
        memcpy(h->prev, seen, nseen * sizeof seen[0]);
        h->nprev = nseen;
        h->based = true;
        h->prev_ms = now;
        pthread_mutex_lock(&h->mu);
        history_add(h, now / 1000, moved);
        pthread_mutex_unlock(&h->mu);
    }
    if (!want_json) {
        json_decref(arr);
        arr = NULL;
    }
    mongoc_cursor_destroy(cur);
    mongoc_collection_destroy(c);
    dbpool_push(app->db, cl);
    bson_destroy(filter);
    bson_destroy(opts);
    return arr;
}

/* Every queue's figures and the held sends; NULL when Redis failed. */
static json_t *read_queues(api_ctx *app, long long *held)
{
    rconn *c = rpool_get(app->redis);
    if (!c)
        return NULL;
    json_t *arr = json_array();
    char err[256];
    for (size_t q = 0; q < QUEUE_COUNT && arr; q++) {
        queue_stats s;
        if (queue_stats_get(c, app->cfg->redis.prefix, queue_names[q], &s, err, sizeof err) != 0) {
            json_decref(arr);
            arr = NULL;
            break;
        }
        json_array_append_new(arr, json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:f}", "name",
                                             queue_names[q], "ready", (json_int_t)s.ready,
                                             "inflight", (json_int_t)s.inflight, "delayed",
                                             (json_int_t)s.delayed, "dead", (json_int_t)s.dead,
                                             "consumers", (json_int_t)s.consumers, "alive",
                                             (json_int_t)s.alive, "rate_1m", s.rate_1m));
    }
    *held = arr ? campctl_held_jobs(c, app->cfg->redis.prefix) : -1;
    rpool_put(app->redis, c);
    if (arr && *held < 0) {
        json_decref(arr);
        arr = NULL;
    }
    return arr;
}

/* The figures as compact JSON without "ts" (malloc'd), or NULL when out of memory. */
static char *snapshot(events_hub *h)
{
    long long held = 0;
    json_t *camps = read_campaigns(h, true);
    json_t *queues = read_queues(h->app, &held);
    json_t *o =
        json_pack("{s:o,s:o,s:I,s:s,s:s}", "campaigns", camps ? camps : json_array(), "queues",
                  queues ? queues : json_array(), "held", (json_int_t)(held > 0 ? held : 0),
                  "redis", queues ? "ok" : "down", "mongodb", camps ? "ok" : "down");
    char *s = o ? jsonx_dumps(o) : NULL;
    json_decref(o);
    return s;
}

/* ---------------------------------------------------------------- the ticker */

/* Under hub.mu: wake the suspended viewers that have something to do. */
static void wake_viewers(events_hub *h, int64_t now)
{
    for (viewer *v = h->head; v; v = v->next) {
        if (!v->suspended)
            continue;
        if (h->stopping || (h->current && v->seq != h->seq) || v->beats != h->beats ||
            now >= v->end_ms) {
            v->suspended = false;
            MHD_resume_connection(v->conn);
        }
    }
}

static void publish(events_hub *h, char *body, int64_t now)
{
    /* "ts" goes first in the event: {"ts":...,<the figures>}. */
    size_t cap = strlen(body) + 96;
    char *buf = malloc(cap);
    pthread_mutex_lock(&h->mu);
    bool changed = !h->last_body || strcmp(h->last_body, body) != 0;
    if (buf && (changed || h->force)) {
        int n = snprintf(buf, cap, "id: %llu\nevent: tick\ndata: {\"ts\":%lld,%s\n\n",
                         (unsigned long long)h->seq + 1, (long long)time_now_ms(), body + 1);
        frame *f = n > 0 && (size_t)n < cap ? frame_new(buf, (size_t)n) : NULL;
        if (f) {
            frame_unref(h->current);
            h->current = f;
            h->seq++;
            h->frame_ms = now;
            h->sent_ms = now;
            h->force = false;
            free(h->last_body);
            h->last_body = body;
            body = NULL;
        }
    } else if (now - h->sent_ms >= (int64_t)EVENTS_HEARTBEAT_S * 1000) {
        h->beats++;
        h->sent_ms = now;
    }
    wake_viewers(h, now);
    pthread_mutex_unlock(&h->mu);
    free(buf);
    free(body);
}

static void *ticker(void *arg)
{
    events_hub *h = arg;
    int64_t next = time_mono_ms() + EVENTS_TICK_MS, last = 0;
    pthread_mutex_lock(&h->mu);
    while (!h->stopping) {
        /* A joining viewer (force) brings the tick forward, so it gets fresh figures at once;
         * a burst of joins still makes at most one read per EVENTS_FORCE_GAP_MS. */
        int64_t now = time_mono_ms();
        int64_t due = next;
        if (h->force && last + EVENTS_FORCE_GAP_MS < due)
            due = last + EVENTS_FORCE_GAP_MS;
        if (now < due) {
            struct timespec ts = {.tv_sec = (time_t)(due / 1000),
                                  .tv_nsec = (long)(due % 1000) * 1000000L};
            pthread_cond_timedwait(&h->cv, &h->mu, &ts); /* monotonic clock (events_hub_new) */
            continue;
        }
        next = now + EVENTS_TICK_MS;
        last = now;
        if (h->nviewers == 0) { /* nobody watches: only the history's sample, no Redis */
            pthread_mutex_unlock(&h->mu);
            read_campaigns(h, false);
            pthread_mutex_lock(&h->mu);
            continue;
        }
        pthread_mutex_unlock(&h->mu);
        char *body = snapshot(h);
        now = time_mono_ms();
        if (body)
            publish(h, body, now);
        pthread_mutex_lock(&h->mu);
        if (!body) { /* out of memory: still end streams past their life, retry next tick */
            h->force = false;
            wake_viewers(h, now);
        }
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

/* ---------------------------------------------------------------- lifetime */

events_hub *events_hub_new(api_ctx *app)
{
    events_hub *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->app = app;
    pthread_mutex_init(&h->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* the ticker waits on time_mono_ms() */
    pthread_cond_init(&h->cv, &ca);
    pthread_condattr_destroy(&ca);
    static const char greet[] = "retry: 3000\n\n";
    static const char beat[] = ": keepalive\n\n";
    h->greeting = frame_new(greet, sizeof greet - 1);
    h->heartbeat = frame_new(beat, sizeof beat - 1);
    if (!h->greeting || !h->heartbeat || pthread_create(&h->tid, NULL, ticker, h) != 0) {
        events_hub_free(h);
        return NULL;
    }
    h->started = true;
    return h;
}

void events_hub_stop(events_hub *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    h->stopping = true;
    wake_viewers(h, time_mono_ms());
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    if (h->started) {
        pthread_join(h->tid, NULL);
        h->started = false;
    }
}

void events_hub_free(events_hub *h)
{
    if (!h)
        return;
    events_hub_stop(h);
    /* Viewers are gone once the daemon stopped (each one's free callback unlinked it). */
    frame_unref(h->current);
    frame_unref(h->greeting);
    frame_unref(h->heartbeat);
    frame_unref(h->hist_frame);
    free(h->last_body);
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

/* ---------------------------------------------------------------- one stream */

/* Under hub.mu: the "history" event for now (a reference), made again only when a sample came
 * or a second passed since the last one was made. NULL when out of memory. */
static frame *history_frame(events_hub *h)
{
    int64_t end = time_now_ms() / 1000;
    if (h->hist_frame && h->hist_frame_ver == h->hist_ver && h->hist_frame_s == end)
        return frame_ref(h->hist_frame);
    /* 21 bytes per figure at most, plus the frame's words. */
    size_t cap = 128 + (size_t)EVENTS_HISTORY_S * 21;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    int n = snprintf(buf, cap, "event: history\ndata: {\"ts\":%lld,\"step_ms\":1000,\"messages\":[",
                     (long long)end * 1000);
    size_t len = n > 0 ? (size_t)n : 0;
    for (int64_t sec = end - EVENTS_HISTORY_S + 1; sec <= end && len < cap; sec++) {
        size_t slot = (size_t)(sec % EVENTS_HISTORY_S);
        long long v = h->hist_sec[slot] == sec ? h->hist_n[slot] : 0;
        n = snprintf(buf + len, cap - len, "%s%lld", sec == end - EVENTS_HISTORY_S + 1 ? "" : ",",
                     v);
        len += n > 0 ? (size_t)n : 0;
    }
    if (len < cap)
        n = snprintf(buf + len, cap - len, "]}\n\n");
    frame *f = len < cap && n > 0 && len + (size_t)n < cap ? frame_new(buf, len + (size_t)n) : NULL;
    free(buf);
    if (!f)
        return NULL;
    frame_unref(h->hist_frame);
    h->hist_frame = f;
    h->hist_frame_ver = h->hist_ver;
    h->hist_frame_s = end;
    return frame_ref(f);
}

static ssize_t reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    viewer *v = cls;
    events_hub *h = v->hub;
    pthread_mutex_lock(&h->mu);
    for (;;) {
        if (v->out) {
            size_t n = v->out->len - v->off;
            if (n > max)
                n = max;
            memcpy(buf, v->out->data + v->off, n);
            v->off += n;
            if (v->off == v->out->len) {
                frame_unref(v->out);
                v->out = NULL;
                v->off = 0;
            }
            pthread_mutex_unlock(&h->mu);
            return (ssize_t)n;
        }
        if (!v->greeted) {
            v->greeted = true;
            v->out = frame_ref(h->greeting);
            continue;
        }
        if (!v->told_history) { /* out of memory: the stream goes on without it */
            v->told_history = true;
            v->out = history_frame(h);
            continue;
        }
        if (h->stopping || time_mono_ms() >= v->end_ms) {
            pthread_mutex_unlock(&h->mu);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        if (h->current && v->seq != h->seq) {
            v->seq = h->seq;
            v->out = frame_ref(h->current);
            continue;
        }
        if (v->beats != h->beats) {
            v->beats = h->beats;
            v->out = frame_ref(h->heartbeat);
            continue;
        }
        /* Nothing new: park the connection until the ticker has something (events.h). */
        v->suspended = true;
        MHD_suspend_connection(v->conn);
        pthread_mutex_unlock(&h->mu);
        return 0;
    }
}

static void viewer_free(void *cls)
{
    viewer *v = cls;
    events_hub *h = v->hub;
    pthread_mutex_lock(&h->mu);
    if (v->prev)
        v->prev->next = v->next;
    else
        h->head = v->next;
    if (v->next)
        v->next->prev = v->prev;
    h->nviewers--;
    frame_unref(v->out);
    pthread_mutex_unlock(&h->mu);
    free(v);
}

static void h_events(api_ctx *app, http_request *req)
{
    events_hub *h = app->events;
    viewer *v = h ? calloc(1, sizeof *v) : NULL;
    if (!v) {
        http_error(req, 503, "live updates are unavailable");
        return;
    }
    int64_t now = time_mono_ms();
    pthread_mutex_lock(&h->mu);
    if (h->stopping || h->nviewers >= app->cfg->api.events_max_streams) {
        bool stopping = h->stopping;
        /* Streams whose peers left stay counted until a write to them fails: an event now
         * finds them, so a retry (Retry-After) gets their places. */
        h->force = true;
        pthread_cond_signal(&h->cv);
        pthread_mutex_unlock(&h->mu);
        free(v);
        http_add_header(req, "Retry-After", "5");
        if (stopping)
            http_error(req, 503, "the API is shutting down");
        else
            http_error(req, 503, "too many live streams (api.events_max_streams = %d)",
                       app->cfg->api.events_max_streams);
        return;
    }
    v->hub = h;
    v->conn = req->conn;
    v->end_ms = now + (int64_t)EVENTS_MAX_LIFE_S * 1000;
    v->beats = h->beats;
    /* The latest event at once if it is fresh; else the ticker makes one now (force). */
    v->seq = h->current && now - h->frame_ms <= 2 * EVENTS_TICK_MS ? 0 : h->seq;
    v->next = h->head;
    if (h->head)
        h->head->prev = v;
    h->head = v;
    h->nviewers++;
    h->force = true;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    /* A stream is quiet between events: no idle timeout (heartbeats find dead peers). */
    MHD_set_connection_option(req->conn, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
    http_add_header(req, "Cache-Control", "no-cache");
    http_add_header(req, "X-Accel-Buffering", "no");
    http_send_stream(req, 200, "text/event-stream; charset=utf-8", reader, v, viewer_free);
}

int events_register(router *r)
{
    return router_add(r, HTTP_GET, "/api/events", h_events, ROUTE_AUTH, AUTH_ROLE_STAFF);
}
