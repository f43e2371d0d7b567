/*
 * test_webhooks: outbound webhooks end to end, with the real programs (minicrm-api,
 * minicrm-webhooks, and for the campaign events the whole pipeline) on private redis-server and
 * minicrm-devdb, delivering to tests/pipeline/webhook_receiver.py, which verifies every
 * signature with its own implementation of the Standard Webhooks algorithm (Python hmac and
 * base64, written apart from lib/webhook).
 *
 *   - routes: 403 for a staff key; 400 naming the field for a url that is not http(s), that
 *     points at the API itself, an unknown event type, an empty list, an unknown field; 201
 *     answers the secret whsec_ once, GET never shows it; POST :id/test reaches that endpoint
 *     only, signed; DELETE removes it (404 after);
 *   - a receiver that answers 503 and then refuses connections for a while (short retry
 *     schedule) still gets every event once it is back, each verified, the webhook-id of every
 *     attempt the event's id;
 *   - an endpoint answering 410 is disabled (GET shows it) and gets nothing more;
 *   - kill -9 of minicrm-webhooks while deliveries are in flight (a slow receiver) loses none;
 *   - a campaign run emits campaign.started and campaign.completed (ids jobs_event_id of the
 *     campaign), pause and cancel emit campaign.paused and campaign.cancelled, and a move whose
 *     publication a crash cut off (the move made, the push never done) is published by the
 *     worker's rescue pass;
 *   - a slow endpoint (no answer for 20 s) does not hold back another endpoint's deliveries;
 *   - after the last delay of the schedule, the delivery is a dead letter naming the attempts
 *     and the last error; an event of an unknown type is a dead letter, the next one delivered.
 */
#include "campaign.h"
#include "dbpool.h"
#include "jobs.h"
#include "pipeharness.h"
#include "queue.h"
#include "test.h"
#include "timeutil.h"

#include <curl/curl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static pipeh h;
static char admin[200], staff[200];
static int rport;
static pid_t receiver_pid, hooks_pid;
static char rdir[512];
/* tally() counts only requests that arrived at or after this time (s since the epoch; 0: all) */
static double since;

/* ---- HTTP ----------------------------------------------------------------------------------- */

typedef pipeh_answer reply;

/* method path with the key; body (JSON) may be NULL. The status, 0 if no answer. */
static long http(const char *method, const char *path, const char *key, const char *body, reply *r)
{
    return pipeh_request(&h, method, path, key, body, NULL, NULL, 15000L, r);
}

/* ---- the receiver and the worker ------------------------------------------------------------ */

static void write_file(const char *name, const char *text)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s", rdir, name);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void set_mode(const char *name, const char *mode)
{
    char file[100];
    snprintf(file, sizeof file, "%s.mode", name);
    write_file(file, mode);
}

static int receiver_start(void)
{
    char port[16], log[700];
    snprintf(port, sizeof port, "%d", rport);
    snprintf(log, sizeof log, "%s/receiver.log", rdir);
    char *argv[] = {"python3", RECEIVER_PY, port, rdir, NULL};
    receiver_pid = testenv_spawn(argv, log);
    return receiver_pid > 0 ? testenv_wait_port(rport, 10000) : -1;
}

static void receiver_stop(void)
{
    if (receiver_pid > 0)
        testenv_kill_wait(receiver_pid, SIGKILL, 3000);
    receiver_pid = 0;
}

static int hooks_start(void)
{
    char log[700];
    snprintf(log, sizeof log, "%s/webhooks.log", h.env.dir);
    char *argv[] = {(char *)testenv_bin("minicrm-webhooks"), NULL};
    hooks_pid = testenv_spawn(argv, log);
    return hooks_pid > 0 ? 0 : -1;
}

static void hooks_kill(int sig)
{
    if (hooks_pid > 0)
        testenv_kill_wait(hooks_pid, sig, 8000);
    hooks_pid = 0;
}

/* ---- what the receiver got ------------------------------------------------------------------ */

typedef struct seen {
    int done, ok, verified_ok, bad_sig, status_other, start;
    char last_type[40];
} seen;

/* Tally the receiver's lines for endpoint `name` and event `id` (NULL: any id; type: NULL any). */
static void tally(const char *name, const char *id, const char *type, seen *s)
{
    char path[700], line[65536];
    memset(s, 0, sizeof *s);
    snprintf(path, sizeof path, "%s/received.jsonl", rdir);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        if (!j)
            continue;
        const char *n = json_string_value(json_object_get(j, "name"));
        const char *i = json_string_value(json_object_get(j, "id"));
        const char *t = json_string_value(json_object_get(j, "type"));
        const char *ph = json_string_value(json_object_get(j, "phase"));
        double arrived = json_number_value(
            json_object_get(j, !strcmp(ph ? ph : "", "done") ? "start_at" : "at"));
        if (arrived >= since && n && !strcmp(n, name) && (!id || (i && !strcmp(i, id))) &&
            (!type || !strcmp(ph, "start") || (t && !strcmp(t, type)))) {
            if (!strcmp(ph, "start")) {
                s->start++;
            } else {
                long st = (long)json_integer_value(json_object_get(j, "status"));
                bool v = json_is_true(json_object_get(j, "verified"));
                s->done++;
                if (!v)
                    s->bad_sig++;
                if (st >= 200 && st < 300) {
                    s->ok++;
                    if (v)
                        s->verified_ok++;
                } else {
                    s->status_other++;
                }
                if (t)
                    snprintf(s->last_type, sizeof s->last_type, "%s", t);
            }
        }
        json_decref(j);
    }
    fclose(f);
}

/* Poll until endpoint `name` answered 2xx to event id (verified), or timeout. 0 or -1. */
static int wait_delivered(const char *name, const char *id, const char *type, int timeout_ms)
{
    int64_t end = time_mono_ms() + timeout_ms;
    seen s;
    do {
        tally(name, id, type, &s);
        if (s.verified_ok > 0)
            return 0;
        pipeh_sleep_ms(100);
    } while (time_mono_ms() < end);
    return -1;
}

/* ---- endpoints and events ------------------------------------------------------------------- */

/* Create endpoint /hook/NAME for events (a JSON array's text); its id into id, its secret
 * written for the receiver. The status. */
static long create_endpoint(const char *name, const char *events, char id[25])
{
    char body[600];
    reply r;
    snprintf(body, sizeof body, "{\"url\":\"http://127.0.0.1:%d/hook/%s\",\"events\":%s}", rport,
             name, events);
    long st = http("POST", "/api/webhooks", admin, body, &r);
    json_error_t je;
    json_t *j = json_loads(r.body, 0, &je);
    const char *secret = json_string_value(json_object_get(j, "secret"));
    const char *wid = json_string_value(json_object_get(json_object_get(j, "webhook"), "id"));
    id[0] = '\0';
    if (secret && wid) {
        char file[100];
        snprintf(file, sizeof file, "%s.secret", name);
        write_file(file, secret);
        snprintf(id, 25, "%s", wid);
    }
    json_decref(j);
    return st;
}

/* Push an event of type t about subject onto the events queue, as every emitter does; its id
 * into id. 0 or -1. */
static int emit(jobs_event_type t, const char *subject, char id[JOBS_EVENT_ID_LEN + 1])
{
    char data[200];
    snprintf(data, sizeof data, "{\"subject\":\"%s\"}", subject);
    jobs_event ev = {.type = t, .at = time_now_ms(), .data = data, .datalen = strlen(data)};
    jobs_event_id(t, subject, ev.id);
    memcpy(id, ev.id, JOBS_EVENT_ID_LEN + 1);
    jsonx_buf b = {0};
    queue_opts qo;
    queue_opts_default(&qo);
    char err[200];
    queue *q = queue_open(h.rc, h.env.prefix, QUEUE_EVENTS, NULL, &qo, err, sizeof err);
    int rc = q && jobs_event_encode(&b, &ev) == 0 && queue_push(q, b.data, b.len) == 0 ? 0 : -1;
    queue_close(q);
    jsonx_buf_free(&b);
    return rc;
}

/* The endpoint's entry of GET /api/webhooks into out (the caller decrefs), or NULL. */
static json_t *listed(const char *id, reply *r)
{
    if (http("GET", "/api/webhooks", admin, NULL, r) != 200)
        return NULL;
    json_error_t je;
    json_t *arr = json_loads(r->body, 0, &je), *v, *out = NULL;
    size_t i;
    json_array_foreach(arr, i, v)
    {
        const char *vid = json_string_value(json_object_get(v, "id"));
        if (vid && !strcmp(vid, id))
            out = json_incref(v);
    }
    json_decref(arr);
    return out;
}

/* Depth of the webhooks queue: ready + inflight + delayed; dead into *dead. */
static long long hooks_pending(long long *dead)
{
    queue_stats st;
    char err[200];
    if (queue_stats_get(h.rc, h.env.prefix, QUEUE_WEBHOOKS, &st, err, sizeof err) != 0)
        return -1;
    *dead = st.dead;
    return st.ready + st.inflight + st.delayed;
}

/* ---- tests ---------------------------------------------------------------------------------- */

TEST(routes)
{
    reply r;
    char body[400], id[25];
    /* staff: 403 on every route */
    CHECK_INT_EQ(http("POST", "/api/webhooks", staff,
                      "{\"url\":\"http://x.example/\","
                      "\"events\":[\"campaign.started\"]}",
                      &r),
                 403);
    CHECK_INT_EQ(http("GET", "/api/webhooks", staff, NULL, &r), 403);
    CHECK_INT_EQ(http("DELETE", "/api/webhooks/0123456789abcdef01234567", staff, NULL, &r), 403);
    /* bad input: 400 naming the field */
    static const char *const bad_urls[] = {"ftp://hooks.example/x", "hooks.example/x",
                                           "javascript:alert(1)", "http://"};
    for (size_t i = 0; i < sizeof bad_urls / sizeof bad_urls[0]; i++) {
        snprintf(body, sizeof body, "{\"url\":\"%s\",\"events\":[\"campaign.started\"]}",
                 bad_urls[i]);
        CHECK_INT_EQ(http("POST", "/api/webhooks", admin, body, &r), 400);
        CHECK_STR_CONTAINS(r.body, "url");
    }
    static const char *const self_hosts[] = {
        "127.0.0.1", "localhost",  "[::1]",      "0.0.0.0",   "127.0.0.2",
        "127.1",     "2130706433", "localhost.", "LOCALHOST", "[::ffff:127.0.0.1]"};
    for (size_t i = 0; i < sizeof self_hosts / sizeof self_hosts[0]; i++) {
        snprintf(
            body, sizeof body,
            "{\"url\":\"http://%s:%d/api/receipts/delivery\",\"events\":[\"campaign.started\"]}",
            self_hosts[i], h.api_port);
        CHECK_INT_EQ(http("POST", "/api/webhooks", admin, body, &r), 400);
        CHECK_STR_CONTAINS(r.body, "must not point at the minicrm API");
    }
    CHECK_INT_EQ(http("POST", "/api/webhooks", admin,
                      "{\"url\":\"https://hooks.example/x\",\"events\":[\"message.sent\"]}", &r),
                 400);
    CHECK_STR_CONTAINS(r.body, "events: unknown event type \\\"message.sent\\\"");
    CHECK_INT_EQ(http("POST", "/api/webhooks", admin,
                      "{\"url\":\"https://hooks.example/x\",\"events\":[]}", &r),
                 400);
    CHECK_STR_CONTAINS(r.body, "events");
    CHECK_INT_EQ(http("POST", "/api/webhooks", admin,
                      "{\"url\":\"https://hooks.example/x\",\"events\":\"campaign.started\"}", &r),
                 400);
    CHECK_STR_CONTAINS(r.body, "events");
    CHECK_INT_EQ(http("POST", "/api/webhooks", admin, "{\"events\":[\"campaign.started\"]}", &r),
                 400);
    CHECK_STR_CONTAINS(r.body, "url");
    CHECK_INT_EQ(http("POST", "/api/webhooks", admin,
                      "{\"url\":\"https://hooks.example/x\",\"events\":[\"campaign.started\"],"
                      "\"secret\":\"mine\"}",
                      &r),
                 400);
    CHECK_STR_CONTAINS(r.body, "unknown field: secret");

    /* create: the secret once */
    CHECK_INT_EQ(create_endpoint("t", "[\"campaign.started\",\"campaign.started\"]", id), 201);
    CHECK_INT_EQ((int)strlen(id), 24);
    json_t *e = listed(id, &r);
    CHECK(e != NULL);
    CHECK(strstr(r.body, "whsec_") == NULL);
    CHECK(strstr(r.body, "\"secret\"") == NULL);
    CHECK_STR_EQ(json_string_value(json_object_get(e, "status")), "enabled");
    CHECK_INT_EQ(json_array_size(json_object_get(e, "events")), 1); /* duplicates dropped */
    json_decref(e);

    /* test event: to that endpoint only, signed */
    char path[100];
    snprintf(path, sizeof path, "/api/webhooks/%s/test", id);
    CHECK_INT_EQ(http("POST", path, admin, NULL, &r), 202);
    json_error_t je;
    json_t *j = json_loads(r.body, 0, &je);
    char evid[64];
    snprintf(evid, sizeof evid, "%s", json_string_value(json_object_get(j, "event_id")));
    json_decref(j);
    CHECK_MSG(wait_delivered("t", evid, "webhook.test", 15000) == 0,
              "the test event reached the receiver, verified");
    seen s;
    tally("t", NULL, NULL, &s);
    CHECK_INT_EQ(s.bad_sig, 0);
    e = listed(id, &r);
    CHECK(e && json_integer_value(json_object_get(e, "deliveries")) >= 1);
    CHECK(e && json_is_true(json_object_get(json_object_get(e, "last"), "ok")));
    json_decref(e);

    /* delete */
    snprintf(path, sizeof path, "/api/webhooks/%s", id);
    CHECK_INT_EQ(http("DELETE", path, admin, NULL, &r), 200);
    CHECK_INT_EQ(http("DELETE", path, admin, NULL, &r), 404);
    CHECK_INT_EQ(http("DELETE", "/api/webhooks/nothex", admin, NULL, &r), 400);
    snprintf(path, sizeof path, "/api/webhooks/%s/test", id);
    CHECK_INT_EQ(http("POST", path, admin, NULL, &r), 404);
}

#define NDOWN 6

TEST(a_receiver_down_for_a_while_gets_every_event)
{
    char id[25], ev[NDOWN][JOBS_EVENT_ID_LEN + 1];
    set_mode("down", "503");
    CHECK_INT_EQ(create_endpoint("down", "[\"message.failed\",\"contact.unsubscribed\"]", id), 201);
    pipeh_sleep_ms(400); /* the worker's endpoint cache (webhooks.cache_ttl_ms = 200) */
    for (int i = 0; i < NDOWN; i++) {
        char subject[40];
        snprintf(subject, sizeof subject, "down-%d-%lld", i, (long long)time_now_ms());
        CHECK(emit(i % 2 ? JOBS_EV_MESSAGE_FAILED : JOBS_EV_CONTACT_UNSUBSCRIBED, subject, ev[i]) ==
              0);
    }
    /* 503s first: every event attempted at least twice */
    int64_t end = time_mono_ms() + 20000;
    bool twice = false;
    while (!twice && time_mono_ms() < end) {
        twice = true;
        for (int i = 0; i < NDOWN; i++) {
            seen s;
            tally("down", ev[i], NULL, &s);
            if (s.status_other < 2)
                twice = false;
        }
        pipeh_sleep_ms(100);
    }
    CHECK_MSG(twice, "every event got at least two 503s");
    json_t *e;
    reply r;
    e = listed(id, &r);
    CHECK(e && json_integer_value(json_object_get(e, "failures")) >= 2);
    CHECK(e && json_integer_value(json_object_get(json_object_get(e, "last"), "status")) == 503);
    json_decref(e);
    /* then nobody listening at all for a while */
    receiver_stop();
    pipeh_sleep_ms(2500);
    set_mode("down", "200");
    CHECK(receiver_start() == 0);
    for (int i = 0; i < NDOWN; i++)
        CHECK_MSG(wait_delivered("down", ev[i], NULL, 30000) == 0, "event %d delivered", i);
    /* every attempt carried one of the events' ids, every signature verified */
    seen all;
    tally("down", NULL, NULL, &all);
    CHECK_INT_EQ(all.bad_sig, 0);
    int attempts = 0;
    for (int i = 0; i < NDOWN; i++) {
        seen s;
        tally("down", ev[i], NULL, &s);
        attempts += s.done;
    }
    CHECK_INT_EQ(attempts, all.done);
    long long dead = 0;
    end = time_mono_ms() + 10000;
    while (hooks_pending(&dead) != 0 && time_mono_ms() < end)
        pipeh_sleep_ms(100);
    CHECK_INT_EQ(hooks_pending(&dead), 0);
    CHECK_INT_EQ(dead, 0);
}

TEST(gone_disables_the_endpoint)
{
    char gone[25], other[25], e1[JOBS_EVENT_ID_LEN + 1], e2[JOBS_EVENT_ID_LEN + 1];
    set_mode("gone", "410");
    CHECK_INT_EQ(create_endpoint("gone", "[\"message.bounced\"]", gone), 201);
    CHECK_INT_EQ(create_endpoint("other", "[\"message.bounced\"]", other), 201);
    pipeh_sleep_ms(400);
    CHECK(emit(JOBS_EV_MESSAGE_BOUNCED, "gone-1", e1) == 0);
    CHECK(wait_delivered("other", e1, "message.bounced", 15000) == 0);
    reply r;
    json_t *e = NULL;
    int64_t end = time_mono_ms() + 10000;
    do {
        json_decref(e);
        e = listed(gone, &r);
        pipeh_sleep_ms(100);
    } while (e && strcmp(json_string_value(json_object_get(e, "status")), "disabled") != 0 &&
             time_mono_ms() < end);
    CHECK(e != NULL);
    CHECK_STR_EQ(json_string_value(json_object_get(e, "status")), "disabled");
    CHECK_STR_CONTAINS(json_string_value(json_object_get(e, "disabledReason")), "410");
    json_decref(e);
    CHECK(emit(JOBS_EV_MESSAGE_BOUNCED, "gone-2", e2) == 0);
    CHECK(wait_delivered("other", e2, NULL, 15000) == 0);
    pipeh_sleep_ms(500);
    seen s;
    tally("gone", NULL, NULL, &s);
    CHECK_INT_EQ(s.done, 1); /* the one 410, never retried, nothing after it */
    char path[100];
    snprintf(path, sizeof path, "/api/webhooks/%s/test", gone);
    CHECK_INT_EQ(http("POST", path, admin, NULL, &r), 409);
}

#define NKILL 8

TEST(kill9_mid_delivery_loses_nothing)
{
    char id[25], ev[NKILL][JOBS_EVENT_ID_LEN + 1];
    char fast[25];
    set_mode("slow", "slow:20"); /* nothing completes before the kill */
    CHECK_INT_EQ(create_endpoint("slow", "[\"contact.complained\"]", id), 201);
    CHECK_INT_EQ(create_endpoint("fast", "[\"contact.complained\"]", fast), 201);
    pipeh_sleep_ms(400);
    for (int i = 0; i < NKILL; i++) {
        char subject[40];
        snprintf(subject, sizeof subject, "slow-%d", i);
        CHECK(emit(JOBS_EV_CONTACT_COMPLAINED, subject, ev[i]) == 0);
    }
    /* wait until deliveries are in flight (the receiver saw them arrive), then kill -9 */
    int64_t end = time_mono_ms() + 15000;
    seen s;
    do {
        tally("slow", NULL, NULL, &s);
        pipeh_sleep_ms(20);
    } while (s.start < NKILL / 2 && time_mono_ms() < end);
    CHECK_MSG(s.start >= NKILL / 2, "deliveries in flight before the kill");
    /* a slow endpoint holds its own deliveries, never another endpoint's */
    for (int i = 0; i < NKILL; i++)
        CHECK_MSG(wait_delivered("fast", ev[i], NULL, 3000) == 0,
                  "event %d reached the fast endpoint while the slow one hangs", i);
    hooks_kill(SIGKILL);
    set_mode("slow", "200");
    since = (double)time_now_ms() / 1000; /* only what the new process delivers counts */
    CHECK(hooks_start() == 0);
    for (int i = 0; i < NKILL; i++)
        CHECK_MSG(wait_delivered("slow", ev[i], "contact.complained", 30000) == 0,
                  "event %d delivered after the kill", i);
    long long dead = 0;
    end = time_mono_ms() + 10000;
    while (hooks_pending(&dead) != 0 && time_mono_ms() < end)
        pipeh_sleep_ms(100);
    CHECK_INT_EQ(hooks_pending(&dead), 0);
    CHECK_INT_EQ(dead, 0);
    tally("slow", NULL, NULL, &s);
    CHECK_INT_EQ(s.bad_sig, 0);
    since = 0;
}

/* The campaign event of type t about the campaign (hex) was delivered to "camp". */
static int camp_event(jobs_event_type t, const char *hex, const char *subject_suffix)
{
    char subject[80], id[JOBS_EVENT_ID_LEN + 1];
    snprintf(subject, sizeof subject, "%s%s", hex, subject_suffix ? subject_suffix : "");
    jobs_event_id(t, subject, id);
    return wait_delivered("camp", id, jobs_event_type_name(t), 30000);
}

/* Whether the program's log file contains `what`. */
static bool log_has(int which, const char *what)
{
    FILE *f = fopen(pipeh_logfile(&h, which), "r");
    char line[4096];
    bool hit = false;
    while (f && !hit && fgets(line, sizeof line, f))
        hit = strstr(line, what) != NULL;
    if (f)
        fclose(f);
    return hit;
}

/* The id of the paused event of campaign hex: its subject carries the pause time; found by
 * looking at what the receiver got. 0 when one arrived with data.campaign_id = hex. */
static int paused_event(const char *hex)
{
    char path[700], line[65536];
    snprintf(path, sizeof path, "%s/received.jsonl", rdir);
    int64_t end = time_mono_ms() + 30000;
    do {
        FILE *f = fopen(path, "r");
        while (f && fgets(line, sizeof line, f)) {
            json_error_t je;
            json_t *j = json_loads(line, 0, &je);
            json_t *body = json_object_get(j, "body");
            const char *t = json_string_value(json_object_get(body, "type"));
            const char *c =
                json_string_value(json_object_get(json_object_get(body, "data"), "campaign_id"));
            bool hit = t && c && !strcmp(t, "campaign.paused") && !strcmp(c, hex) &&
                       json_is_true(json_object_get(j, "verified"));
            json_decref(j);
            if (hit) {
                fclose(f);
                return 0;
            }
        }
        if (f)
            fclose(f);
        pipeh_sleep_ms(100);
    } while (time_mono_ms() < end);
    return -1;
}

TEST(campaign_events)
{
    char id[25], hex[25];
    reply r;
    CHECK_INT_EQ(create_endpoint("camp",
                                 "[\"campaign.started\",\"campaign.completed\","
                                 "\"campaign.paused\",\"campaign.cancelled\"]",
                                 id),
                 201);
    pipeh_sleep_ms(400);
    CHECK(pipeh_start_all(&h) == 0);

    /* a run: started + completed */
    CHECK_INT_EQ(http("POST", "/api/campaigns", staff, "{\"name\":\"Hooks run\",\"rules\":{}}", &r),
                 201);
    json_error_t je;
    json_t *j = json_loads(r.body, 0, &je);
    snprintf(hex, sizeof hex, "%s",
             json_string_value(json_object_get(json_object_get(j, "campaign"), "_id")));
    json_decref(j);
    CHECK_INT_EQ((int)strlen(hex), 24);
    bson_oid_t cid;
    bson_oid_init_from_string(&cid, hex);
    ph_campaign pc;
    CHECK(pipeh_wait_completed(&h, &cid, 60000, &pc) == 0);
    CHECK_MSG(camp_event(JOBS_EV_CAMPAIGN_STARTED, hex, NULL) == 0, "campaign.started");
    CHECK_MSG(camp_event(JOBS_EV_CAMPAIGN_COMPLETED, hex, NULL) == 0, "campaign.completed");
    CHECK(strstr(r.body, "events_due") == NULL);

    /* pause and cancel: a campaign that stays QUEUED (no worker) */
    pipeh_kill(&h, PH_WORKER, SIGKILL);
    CHECK_INT_EQ(
        http("POST", "/api/campaigns", staff, "{\"name\":\"Hooks pause\",\"rules\":{}}", &r), 201);
    j = json_loads(r.body, 0, &je);
    snprintf(hex, sizeof hex, "%s",
             json_string_value(json_object_get(json_object_get(j, "campaign"), "_id")));
    json_decref(j);
    char path[100];
    snprintf(path, sizeof path, "/api/campaigns/%s/pause", hex);
    CHECK_INT_EQ(http("POST", path, staff, NULL, &r), 200);
    CHECK(strstr(r.body, "events_due") == NULL);
    CHECK_MSG(paused_event(hex) == 0, "campaign.paused");
    snprintf(path, sizeof path, "/api/campaigns/%s/cancel", hex);
    CHECK_INT_EQ(http("POST", path, admin, NULL, &r), 200);
    CHECK_MSG(camp_event(JOBS_EV_CAMPAIGN_CANCELLED, hex, NULL) == 0, "campaign.cancelled");

    /* every event so far was published by its mover, none by the rescue */
    CHECK(!log_has(PH_WORKER, "worker.events_rescued"));
    CHECK(!log_has(PH_WORKER, "worker.events_deferred"));
    CHECK(!log_has(PH_API, "campaign.events_deferred"));

    /* a crash between a move and its publication: the move made (lib/campaign, as the API
     * would), the publication never done; the worker's rescue pass publishes it */
    bson_oid_t lost;
    CHECK(pipeh_campaign(&h, "Hooks lost", "{}", &lost) == 0); /* QUEUED, its job queued */
    mongoc_collection_t *camps = pipeh_coll(&h, DB_CAMPAIGNS);
    campaign_status from, to;
    bson_error_t e;
    CHECK_INT_EQ(campaign_move_apply(camps, &lost, CAMPAIGN_MOVE_CANCEL, "a crashed API",
                                     time_now_ms(), &from, &to, NULL, &e),
                 CAMPAIGN_MOVED);
    mongoc_collection_destroy(camps);
    char lhex[25];
    bson_oid_to_string(&lost, lhex);
    pipeh_sleep_ms(1000);
    seen s;
    char lid[JOBS_EVENT_ID_LEN + 1];
    jobs_event_id(JOBS_EV_CAMPAIGN_CANCELLED, lhex, lid);
    tally("camp", lid, NULL, &s);
    CHECK_INT_EQ(s.done, 0); /* nothing published it yet */
    h.pid[PH_WORKER] = 0;
    CHECK(pipeh_start_all(&h) == 0); /* the worker again: its rescue pass */
    CHECK_MSG(camp_event(JOBS_EV_CAMPAIGN_CANCELLED, lhex, NULL) == 0,
              "the rescue published campaign.cancelled");
    CHECK(log_has(PH_WORKER, "worker.events_rescued"));
    tally("camp", NULL, NULL, &s);
    CHECK_INT_EQ(s.bad_sig, 0);
}

/* The dead letters of queue `name` (newest first) as one text, into out. */
static void dead_letters(const char *name, char *out, size_t n)
{
    queue_opts qo;
    queue_opts_default(&qo);
    char err[200], **a = NULL;
    out[0] = '\0';
    queue *q = queue_open(h.rc, h.env.prefix, name, NULL, &qo, err, sizeof err);
    long k = q ? queue_dlq_list(q, 0, 20, &a) : -1;
    for (long i = 0; i < k; i++) {
        size_t used = strlen(out);
        snprintf(out + used, n - used, "%s\n", a[i]);
        free(a[i]);
    }
    free(a);
    queue_close(q);
}

TEST(dead_letters_with_their_reason)
{
    char id[25], ev[JOBS_EVENT_ID_LEN + 1], text[16384];
    /* a worker with a three-delay schedule: the fourth failure is the last */
    hooks_kill(SIGTERM);
    setenv("MINICRM_WEBHOOKS_RETRY_SCHEDULE", "0.1,0.1,0.1", 1);
    CHECK(hooks_start() == 0);
    set_mode("never", "500");
    CHECK_INT_EQ(create_endpoint("never", "[\"message.failed\"]", id), 201);
    pipeh_sleep_ms(400);
    CHECK(emit(JOBS_EV_MESSAGE_FAILED, "never-1", ev) == 0);
    int64_t end = time_mono_ms() + 15000;
    do {
        pipeh_sleep_ms(100);
        dead_letters(QUEUE_WEBHOOKS, text, sizeof text);
    } while (!strstr(text, ev) && time_mono_ms() < end);
    CHECK_STR_CONTAINS(text, ev);
    CHECK_STR_CONTAINS(text, "gave up after 4 attempts");
    CHECK_STR_CONTAINS(text, "HTTP 500");
    seen s;
    tally("never", ev, NULL, &s);
    CHECK_INT_EQ(s.done, 4);
    CHECK_INT_EQ(s.bad_sig, 0);
    /* an event of an unknown type: a dead letter with the reason, the next one still goes */
    queue_opts qo;
    queue_opts_default(&qo);
    char err[200];
    queue *q = queue_open(h.rc, h.env.prefix, QUEUE_EVENTS, NULL, &qo, err, sizeof err);
    const char *bad = "{\"id\":\"evt_0123456789abcdef01234567\",\"type\":\"message.sent\","
                      "\"at\":1,\"data\":{}}";
    CHECK(q && queue_push(q, bad, strlen(bad)) == 0);
    queue_close(q);
    set_mode("never", "200");
    CHECK(emit(JOBS_EV_MESSAGE_FAILED, "never-2", ev) == 0);
    CHECK(wait_delivered("never", ev, NULL, 15000) == 0);
    dead_letters(QUEUE_EVENTS, text, sizeof text);
    CHECK_STR_CONTAINS(text, "unknown event type");
}

static const test_case cases[] = {TEST_ENTRY(routes),
                                  TEST_ENTRY(a_receiver_down_for_a_while_gets_every_event),
                                  TEST_ENTRY(gone_disables_the_endpoint),
                                  TEST_ENTRY(kill9_mid_delivery_loses_nothing),
                                  TEST_ENTRY(campaign_events),
                                  TEST_ENTRY(dead_letters_with_their_reason)};

int main(int argc, char **argv)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (pipeh_start(&h) != 0) {
        fprintf(stderr, "test_webhooks: cannot start services\n");
        pipeh_stop(&h);
        return 1;
    }
    setenv("MINICRM_TEST_DIR", h.env.dir, 1);
    /* a short schedule: 20 attempts over about 15 s */
    setenv("MINICRM_WEBHOOKS_RETRY_SCHEDULE", "0.2,0.3,0.5,0.5,0.5,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1",
           1);
    setenv("MINICRM_WEBHOOKS_CACHE_TTL_MS", "200", 1);
    setenv("MINICRM_WEBHOOKS_TIMEOUT_MS", "5000", 1);
    snprintf(rdir, sizeof rdir, "%s/receiver", h.env.dir);
    char mk[600];
    snprintf(mk, sizeof mk, "mkdir -p '%s'", rdir);
    rport = testenv_free_port();
    int rc = 1;
    if (system(mk) != 0 || pipeh_seed(&h, 50) != 0 ||
        pipeh_make_key(&h, "admin", "hooks", admin, sizeof admin) != 0 ||
        pipeh_make_key(&h, "staff", "hooks-staff", staff, sizeof staff) != 0 ||
        pipeh_spawn(&h, PH_API, NULL) != 0 || receiver_start() != 0 || hooks_start() != 0) {
        fprintf(stderr, "test_webhooks: cannot set up (dir %s)\n", h.env.dir);
        goto out;
    }
    rc = test_run_all(__FILE__, cases, sizeof cases / sizeof cases[0], argc, argv);
    if (rc != 0)
        fprintf(stderr, "logs of the programs: %s\n", h.env.dir);
out:
    hooks_kill(SIGTERM);
    receiver_stop();
    pipeh_stop(&h);
    curl_global_cleanup();
    return rc;
}
