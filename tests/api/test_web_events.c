/*
 * test_web_events: GET /api/events, the dashboard's live updates as Server-Sent Events (issue
 * 16 point 4; api/events), against a real minicrm-api on private Redis + devdb, read over raw
 * sockets as a browser's EventSource reads them (HTTP/1.1, chunked).
 *
 *   login_required               no credentials: 401, no stream
 *   first_event_at_once          200 text/event-stream, `retry:` first, then an event with
 *                                `id:` and figures of every queue within 3 s
 *   campaign_progress_appears    a new campaign shows up in the next events with its status
 *                                and counters, and the campaigns queue's figures move
 *   one_read_per_tick            20 viewers end with the same event (id and bytes), and Redis sees
 *                                no more commands per second than with 1 viewer (x2 margin)
 *   stream_cap                   past api.events_max_streams (25 here): 503; closed streams
 *                                free their places
 *   heartbeat_when_idle          with nothing changing, a `: keepalive` comment within 15 s
 *   history_at_once              a new stream's first event is `history`: 600 per-second
 *                                figures; messages finished while nobody watched (counters
 *                                moved in MongoDB) are in the next stream's history, once
 *   clean_close_on_shutdown      SIGTERM: every open stream ends and the API exits 0 at once,
 *                                not after api.request_timeout_s (last: it stops the API)
 */
#define _GNU_SOURCE /* memmem, strcasestr */
#include "apitest.h"
#include "rconn.h"
#include "test.h"
#include "timeutil.h"

#include <arpa/inet.h>
#include <mongoc/mongoc.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static apitest T;

#define EVENTS_HEARTBEAT_MS 15000 /* api/events.h: EVENTS_HEARTBEAT_S */

static int start(void)
{
    static const char *const env[] = {"MINICRM_API_EVENTS_MAX_STREAMS=25",
                                      "MINICRM_API_REQUEST_TIMEOUT_S=30", NULL};
    return apitest_ensure(&T, env);
}

/* ---------------------------------------------------------------- an SSE client */

typedef struct sse {
    int fd;
    int status;
    char raw[65536]; /* bytes received, not yet de-chunked */
    size_t rlen;
    char text[262144]; /* the de-chunked stream */
    size_t tlen;
    size_t used;  /* text consumed by sse_next */
    long chunk;   /* bytes left in the current chunk; -1: expecting a size line */
    bool headers; /* headers parsed */
    bool chunked;
    bool eof;
    char hist[16384]; /* the data of the `history` event, once it came */
    int nevents;      /* data blocks seen: the history should be the first */
    int hist_at;      /* its place among them (1-based), 0 before it came */
} sse;

/* Open a stream; auth is a header line or NULL. 0 (the answer's status in s->status once
 * headers arrive through sse_pump) or -1. */
static int sse_open(sse *s, const char *auth)
{
    memset(s, 0, sizeof *s);
    s->chunk = -1;
    s->fd = apitest_connect(T.port);
    if (s->fd < 0)
        return -1;
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept: "
                     "text/event-stream\r\n%s%s\r\n",
                     T.port, auth ? auth : "", auth ? "\r\n" : "");
    return send(s->fd, req, (size_t)n, MSG_NOSIGNAL) == n ? 0 : -1;
}

static void sse_close(sse *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

/* Move what raw holds into text (headers parsed once, chunk framing removed). */
static void sse_decode(sse *s)
{
    if (!s->headers) {
        char *end = memmem(s->raw, s->rlen, "\r\n\r\n", 4);
        if (!end)
            return;
        *end = '\0';
        sscanf(s->raw, "HTTP/1.%*d %d", &s->status);
        s->chunked = strcasestr(s->raw, "Transfer-Encoding: chunked") != NULL;
        size_t hl = (size_t)(end + 4 - s->raw);
        memmove(s->raw, s->raw + hl, s->rlen - hl);
        s->rlen -= hl;
        s->headers = true;
    }
    size_t i = 0;
    while (i < s->rlen) {
        if (!s->chunked || s->chunk > 0) {
            size_t n = s->rlen - i;
            if (s->chunked && (long)n > s->chunk)
                n = (size_t)s->chunk;
            if (s->tlen + n >= sizeof s->text)
                n = sizeof s->text - 1 - s->tlen;
            memcpy(s->text + s->tlen, s->raw + i, n);
            s->tlen += n;
            s->text[s->tlen] = '\0';
            i += n;
            if (s->chunked)
                s->chunk -= (long)n;
            if (s->chunked && s->chunk == 0)
                s->chunk = -2; /* the CRLF after the chunk */
            continue;
        }
        char *nl = memmem(s->raw + i, s->rlen - i, "\r\n", 2);
        if (!nl)
            break;
        if (s->chunk == -2) {
            s->chunk = -1;
        } else {
            s->chunk = strtol(s->raw + i, NULL, 16);
            if (s->chunk == 0)
                s->eof = true;
        }
        i = (size_t)(nl + 2 - s->raw);
    }
    memmove(s->raw, s->raw + i, s->rlen - i);
    s->rlen -= i;
}

/* Read what arrives within ms. */
static void sse_pump(sse *s, int ms)
{
    struct pollfd p = {.fd = s->fd, .events = POLLIN};
    if (s->fd < 0 || s->eof || poll(&p, 1, ms) <= 0)
        return;
    ssize_t k = recv(s->fd, s->raw + s->rlen, sizeof s->raw - s->rlen, 0);
    if (k <= 0) {
        s->eof = true;
        return;
    }
    s->rlen += (size_t)k;
    sse_decode(s);
}

/* The next complete event (block ending in a blank line) with a data line, within ms: its id
 * and data (copied). true if one came. Comment and retry blocks are skipped (*retry set). */
static bool sse_next(sse *s, int ms, unsigned long long *id, char *data, size_t n, bool *retry)
{
    int64_t deadline = time_mono_ms() + ms;
    for (;;) {
        char *blk = s->text + s->used;
        char *end = strstr(blk, "\n\n");
        if (end) {
            *end = '\0';
            s->used = (size_t)(end + 2 - s->text);
            if (retry && strncmp(blk, "retry:", 6) == 0)
                *retry = true;
            char *d = strstr(blk, "data: ");
            char *i = strstr(blk, "id: ");
            if (d)
                s->nevents++;
            if (d && strncmp(blk, "event: history\n", 15) == 0) { /* kept apart, not returned */
                snprintf(s->hist, sizeof s->hist, "%.*s", (int)strcspn(d + 6, "\n"), d + 6);
                s->hist_at = s->nevents;
                continue;
            }
            if (d) {
                *id = i ? strtoull(i + 4, NULL, 10) : 0;
                snprintf(data, n, "%.*s", (int)strcspn(d + 6, "\n"), d + 6);
                return true;
            }
            continue;
        }
        int64_t left = deadline - time_mono_ms();
        if (left <= 0 || s->eof)
            return false;
        sse_pump(s, (int)(left < 200 ? left : 200));
    }
}

/* Wait for the status line (headers). */
static int sse_status(sse *s, int ms)
{
    int64_t deadline = time_mono_ms() + ms;
    while (!s->headers && !s->eof && time_mono_ms() < deadline)
        sse_pump(s, 100);
    return s->status;
}

static long long redis_commands(void)
{
    char err[256];
    rconn *c = rconn_new(T.env.redis_url, 2000, err, sizeof err);
    long long n = -1;
    redisReply *r = c ? rconn_command(c, "INFO stats") : NULL;
    if (r && r->type == REDIS_REPLY_STRING) {
        const char *p = strstr(r->str, "total_commands_processed:");
        if (p)
            n = strtoll(p + 25, NULL, 10);
    }
    if (r)
        freeReplyObject(r);
    rconn_free(c);
    return n;
}

/* ---------------------------------------------------------------- tests */

TEST(login_required)
{
    CHECK(start() == 0);
    sse s;
    CHECK(sse_open(&s, NULL) == 0);
    int st = sse_status(&s, 3000);
    sse_close(&s);
    CHECK_INT_EQ(st, 401);
}

TEST(first_event_at_once)
{
    CHECK(start() == 0);
    static sse s;
    CHECK(sse_open(&s, apitest_staff_auth(&T)) == 0);
    CHECK_INT_EQ(sse_status(&s, 3000), 200);
    unsigned long long id = 0;
    char data[65536];
    bool retry = false;
    int64_t t0 = time_mono_ms();
    bool got = sse_next(&s, 3000, &id, data, sizeof data, &retry);
    int64_t took = time_mono_ms() - t0;
    sse_close(&s);
    CHECK_MSG(got, "no event within 3 s");
    CHECK(retry);
    CHECK(id > 0);
    CHECK_MSG(took < 2500, "first event after %lld ms", (long long)took);
    json_t *v = json_loads(data, 0, NULL);
    CHECK(v != NULL);
    json_t *q = json_object_get(v, "queues");
    bool shape = json_array_size(q) == 9 && json_is_array(json_object_get(v, "campaigns")) &&
                 json_is_integer(json_object_get(v, "ts"));
    for (size_t i = 0; shape && i < json_array_size(q); i++) {
        json_t *e = json_array_get(q, i);
        shape = json_is_string(json_object_get(e, "name")) &&
                json_is_integer(json_object_get(e, "ready")) &&
                json_is_integer(json_object_get(e, "inflight")) &&
                json_is_integer(json_object_get(e, "delayed")) &&
                json_is_integer(json_object_get(e, "dead")) &&
                json_is_number(json_object_get(e, "rate_1m"));
    }
    const char *redis = json_string_value(json_object_get(v, "redis"));
    bool up = redis && !strcmp(redis, "ok");
    json_decref(v);
    CHECK(shape);
    CHECK(up);
}

/* The campaign `cid` in an event's data, or NULL (a new reference). */
static json_t *find_campaign(const char *data, const char *cid)
{
    json_t *v = json_loads(data, 0, NULL);
    json_t *c = json_object_get(v, "campaigns"), *hit = NULL;
    for (size_t i = 0; i < json_array_size(c); i++) {
        json_t *e = json_array_get(c, i);
        const char *id = json_string_value(json_object_get(e, "_id"));
        if (id && !strcmp(id, cid))
            hit = json_incref(e);
    }
    json_decref(v);
    return hit;
}

TEST(campaign_progress_appears)
{
    CHECK(start() == 0);
    static sse s;
    CHECK(sse_open(&s, apitest_staff_auth(&T)) == 0);
    CHECK_INT_EQ(sse_status(&s, 3000), 200);
    unsigned long long id = 0, first = 0;
    static char data[65536];
    CHECK(sse_next(&s, 3000, &first, data, sizeof data, NULL));
    /* No worker runs here: the campaign stays QUEUED with its job on the campaigns queue. */
    const char *h[] = {apitest_staff_auth(&T), NULL};
    const char *body = "{\"name\":\"Live view\",\"rules\":{\"min_spend\":1}}";
    apitest_resp r;
    CHECK(apitest_request(&T, "POST", "/api/campaigns", h, body, strlen(body), &r) == 0);
    char cid[32] = "";
    json_t *camp = json_object_get(r.json, "campaign");
    snprintf(cid, sizeof cid, "%s", json_string_value(json_object_get(camp, "_id")));
    long st = r.status;
    apitest_resp_release(&r);
    CHECK_INT_EQ(st, 201);
    json_t *seen = NULL;
    int64_t t0 = time_mono_ms();
    while (!seen && time_mono_ms() - t0 < 5000 && sse_next(&s, 3000, &id, data, sizeof data, NULL))
        seen = find_campaign(data, cid);
    sse_close(&s);
    CHECK_MSG(seen != NULL, "campaign %s never appeared in the stream", cid);
    const char *status = json_string_value(json_object_get(seen, "status"));
    bool queued = status && !strcmp(status, "QUEUED");
    bool counters = json_is_integer(json_object_get(seen, "total")) &&
                    json_is_integer(json_object_get(seen, "sent")) &&
                    json_is_integer(json_object_get(seen, "pending"));
    json_decref(seen);
    CHECK(id > first);
    CHECK(queued);
    CHECK(counters);
}

/* Redis commands per second while n viewers watch (over ~3 s). */
static double redis_rate_with(int n, sse *ss, unsigned long long *ids, char (*datas)[4096])
{
    for (int i = 0; i < n; i++)
        if (sse_open(&ss[i], apitest_staff_auth(&T)) != 0 || sse_status(&ss[i], 3000) != 200)
            return -1;
    for (int i = 0; i < n; i++) /* everyone has the first event */
        if (!sse_next(&ss[i], 3000, &ids[i], datas[i], sizeof datas[i], NULL))
            return -1;
    long long c0 = redis_commands();
    int64_t t0 = time_mono_ms();
    while (time_mono_ms() - t0 < 3000)
        for (int i = 0; i < n; i++) { /* keep each viewer's latest event */
            sse_pump(&ss[i], 10);
            while (sse_next(&ss[i], 0, &ids[i], datas[i], sizeof datas[i], NULL))
                ;
        }
    long long c1 = redis_commands();
    double secs = (double)(time_mono_ms() - t0) / 1000.0;
    return (double)(c1 - c0 - 1) / secs;
}

TEST(one_read_per_tick)
{
    CHECK(start() == 0);
    static sse ss[20];
    static unsigned long long ids[20];
    static char datas[20][4096];
    double one = redis_rate_with(1, ss, ids, datas);
    sse_close(&ss[0]);
    usleep(1500000); /* the closed one is found at the next event or heartbeat */
    double twenty = redis_rate_with(20, ss, ids, datas);
    /* Once the joins are over, every viewer holds the same latest event, byte for byte. */
    int same = 0;
    for (int i = 1; i < 20; i++)
        same += ids[i] == ids[0] && strcmp(datas[i], datas[0]) == 0;
    for (int i = 0; i < 20; i++)
        sse_close(&ss[i]);
    printf("  redis commands/s: 1 viewer %.1f, 20 viewers %.1f; %d of 19 same latest event\n", one,
           twenty, same);
    CHECK(one >= 0 && twenty >= 0);
    CHECK_MSG(twenty <= 2 * one + 10, "Redis load grows with viewers: %.1f vs %.1f", twenty, one);
    CHECK_MSG(same == 19, "only %d of 19 viewers had the same latest event", same);
}

TEST(stream_cap)
{
    CHECK(start() == 0);
    static sse ss[26];
    usleep(1500000);
    int open = 0;
    for (int i = 0; i < 25; i++) {
        CHECK(sse_open(&ss[i], apitest_staff_auth(&T)) == 0);
        open += sse_status(&ss[i], 3000) == 200;
    }
    /* Streams closed by the earlier tests may hold places until the next event finds them. */
    int64_t t0 = time_mono_ms();
    while (open < 25 && time_mono_ms() - t0 < 20000) {
        for (int i = 0; i < 25; i++)
            if (ss[i].status != 200) {
                sse_close(&ss[i]);
                CHECK(sse_open(&ss[i], apitest_staff_auth(&T)) == 0);
                open += sse_status(&ss[i], 3000) == 200;
            }
        usleep(500000);
    }
    CHECK_INT_EQ(open, 25);
    CHECK(sse_open(&ss[25], apitest_staff_auth(&T)) == 0);
    int st = sse_status(&ss[25], 3000);
    sse_close(&ss[25]);
    CHECK_INT_EQ(st, 503);
    /* Closing five frees five places (found when the next join makes an event). */
    for (int i = 0; i < 5; i++)
        sse_close(&ss[i]);
    int reopened = 0;
    t0 = time_mono_ms();
    while (reopened < 1 && time_mono_ms() - t0 < 20000) {
        CHECK(sse_open(&ss[0], apitest_staff_auth(&T)) == 0);
        if (sse_status(&ss[0], 3000) == 200)
            reopened++;
        else {
            sse_close(&ss[0]);
            usleep(500000);
        }
    }
    for (int i = 0; i < 25; i++)
        sse_close(&ss[i]);
    CHECK_INT_EQ(reopened, 1);
}

TEST(heartbeat_when_idle)
{
    CHECK(start() == 0);
    static sse s;
    CHECK(sse_open(&s, apitest_staff_auth(&T)) == 0);
    CHECK_INT_EQ(sse_status(&s, 3000), 200);
    unsigned long long id = 0;
    static char data[65536];
    CHECK(sse_next(&s, 3000, &id, data, sizeof data, NULL));
    /* Nothing changes now (no worker runs): a comment keeps the stream alive instead. */
    int64_t t0 = time_mono_ms();
    while (!strstr(s.text + s.used, ": keepalive\n\n") && !s.eof &&
           time_mono_ms() - t0 < (EVENTS_HEARTBEAT_MS + 5000))
        sse_pump(&s, 200);
    bool beat = strstr(s.text + s.used, ": keepalive\n\n") != NULL;
    int64_t took = time_mono_ms() - t0;
    sse_close(&s);
    CHECK_MSG(beat, "no heartbeat within %lld ms", (long long)took);
}

/* Open a stream, wait for its history event; the sum of its figures (-1: none or a bad shape). */
static long long history_sum(void)
{
    static sse s;
    if (sse_open(&s, apitest_staff_auth(&T)) != 0 || sse_status(&s, 3000) != 200) {
        sse_close(&s);
        return -1;
    }
    unsigned long long id;
    static char data[65536];
    sse_next(&s, 3000, &id, data, sizeof data, NULL); /* the history comes before it */
    sse_close(&s);
    json_t *v = json_loads(s.hist, 0, NULL);
    json_t *m = json_object_get(v, "messages");
    long long sum = -1;
    if (s.hist_at == 1 && json_array_size(m) == 600 &&
        json_integer_value(json_object_get(v, "step_ms")) == 1000 &&
        json_is_integer(json_object_get(v, "ts"))) {
        sum = 0;
        for (size_t i = 0; i < 600; i++)
            sum += json_integer_value(json_array_get(m, i));
    }
    json_decref(v);
    return sum;
}

TEST(history_at_once)
{
    CHECK(start() == 0);
    long long before = history_sum();
    CHECK_MSG(before >= 0, "no history event first on a new stream");
    /* A new campaign (QUEUED: no worker runs here), seen by the ticker in a tick event. */
    static sse s;
    CHECK(sse_open(&s, apitest_staff_auth(&T)) == 0);
    CHECK_INT_EQ(sse_status(&s, 3000), 200);
    const char *h[] = {apitest_staff_auth(&T), NULL};
    const char *body = "{\"name\":\"History\",\"rules\":{\"min_spend\":1}}";
    apitest_resp r;
    CHECK(apitest_request(&T, "POST", "/api/campaigns", h, body, strlen(body), &r) == 0);
    char cid[32] = "";
    snprintf(cid, sizeof cid, "%s",
             json_string_value(json_object_get(json_object_get(r.json, "campaign"), "_id")));
    apitest_resp_release(&r);
    unsigned long long id;
    static char data[65536];
    json_t *seen = NULL;
    int64_t t0 = time_mono_ms();
    while (!seen && time_mono_ms() - t0 < 5000 && sse_next(&s, 3000, &id, data, sizeof data, NULL))
        seen = find_campaign(data, cid);
    sse_close(&s);
    CHECK_MSG(seen != NULL, "campaign %s never appeared in the stream", cid);
    json_decref(seen);
    /* Nobody watches now; 30 sent and 7 failed messages land, as the receipts worker would
     * count them. */
    mongoc_client_t *cl = mongoc_client_new(T.env.mongo_uri);
    mongoc_collection_t *camps = mongoc_client_get_collection(cl, T.env.db_name, "campaigns1");
    bson_oid_t oid;
    bson_oid_init_from_string(&oid, cid);
    bson_t *sel = BCON_NEW("_id", BCON_OID(&oid));
    bson_t *inc = BCON_NEW("$inc", "{", "sent", BCON_INT64(30), "failed", BCON_INT64(7), "}");
    bool ok = mongoc_collection_update_one(camps, sel, inc, NULL, NULL, NULL);
    bson_destroy(sel);
    bson_destroy(inc);
    mongoc_collection_destroy(camps);
    mongoc_client_destroy(cl);
    CHECK(ok);
    /* The next stream's history holds them, counted once (streams opened again and again). */
    long long after = before;
    t0 = time_mono_ms();
    while (after != before + 37 && time_mono_ms() - t0 < 10000) {
        after = history_sum();
        if (after != before + 37)
            usleep(300000);
    }
    printf("  history: %lld messages before, %lld after\n", before, after);
    CHECK_MSG(after == before + 37, "history sum %lld, expected %lld", after, before + 37);
    usleep(1500000); /* a later sample must not count them again */
    CHECK_INT_EQ(history_sum(), before + 37);
}

TEST(clean_close_on_shutdown)
{
    CHECK(start() == 0);
    static sse ss[3];
    usleep(1500000);
    for (int i = 0; i < 3; i++) {
        CHECK(sse_open(&ss[i], apitest_staff_auth(&T)) == 0);
        CHECK_INT_EQ(sse_status(&ss[i], 3000), 200);
    }
    int64_t t0 = time_mono_ms();
    int st = apitest_stop_api(&T);
    int64_t took = time_mono_ms() - t0;
    int ended = 0;
    for (int i = 0; i < 3; i++) {
        int64_t d = time_mono_ms() + 3000;
        while (!ss[i].eof && time_mono_ms() < d)
            sse_pump(&ss[i], 100);
        ended += ss[i].eof;
        sse_close(&ss[i]);
    }
    CHECK_INT_EQ(st, 0);
    CHECK_MSG(took < 5000, "the API took %lld ms to stop with open streams", (long long)took);
    CHECK_INT_EQ(ended, 3);
}

TEST_MAIN(TEST_ENTRY(login_required), TEST_ENTRY(first_event_at_once),
          TEST_ENTRY(campaign_progress_appears), TEST_ENTRY(one_read_per_tick),
          TEST_ENTRY(stream_cap), TEST_ENTRY(heartbeat_when_idle), TEST_ENTRY(history_at_once),
          TEST_ENTRY(clean_close_on_shutdown))
