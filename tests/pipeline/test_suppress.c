/*
 * test_suppress: the suppression list and one-click unsubscribe (issue 15, points 2 and 3)
 * with the real programs on private redis-server and minicrm-devdb.
 *
 *   cli_import        `minicrm suppressions import` of a CSV with bad lines: every tenth
 *                     seeded customer suppressed, each bad line reported with its number, the
 *                     summary counts every line, exit 1; a second import counts them existing.
 *   routes            POST/GET/DELETE /api/suppressions: 400 naming the field, 201 then 200
 *                     (idempotent), the reason filter, 403 for staff on DELETE, 404, 401.
 *   audience          preview counts leave suppressed customers out (with and without rules);
 *                     a customer created after its address was suppressed carries the flag;
 *                     POST /api/messages to a suppressed address is 409 naming the reason.
 *   unsubscribe       the send job of a message carries unsubscribe_url; GET shows a page with
 *                     a form and suppresses nothing; POST with List-Unsubscribe=One-Click
 *                     suppresses (reason unsubscribed, source the log) and pushes ONE
 *                     contact.unsubscribed event; a repeat POST is 200 and pushes nothing; a
 *                     tampered or malformed token is 404; another body is 400.
 *   event_after_kill  the event push fails (the events list made unusable), the API is killed
 *                     with SIGKILL; once it runs again the event is pushed from the
 *                     suppression's notify mark.
 *   campaigns         a campaign with the vendor simulator unsubscribing 20% of its SENT
 *                     recipients (the simulator's own per-log decision, recomputed here): no log
 *                     for an imported suppression, every decided recipient suppressed, and a
 *                     second campaign to the same audience skips all of them.
 */
#include "dbpool.h"
#include "jobs.h"
#include "pipeharness.h"
#include "suppress.h"
#include "test.h"
#include "timeutil.h"
#include "unsub.h"
#include "unsubscriber.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define NCUST       3000
#define UNSUB_RATE  0.2
#define VENDOR_SEED 42 /* pipeh_start's MINICRM_VENDOR_SIM_SEED */
#define SECRET      "pipeline-test-secret"

static pipeh h;
static char admin[200], staff[200];

/* ---- HTTP ------------------------------------------------------------------------------- */

typedef pipeh_answer resp;

/* One request to the API (path relative) or to a full URL; key NULL: none; ctype NULL: JSON
 * when a body is given. The status in r->status (0: no answer). */
static long req(const char *method, const char *path_or_url, const char *key, const char *body,
                const char *ctype, resp *r)
{
    return pipeh_request(&h, method, path_or_url, key, body, ctype, NULL, 20000L, r);
}

/* A member of a JSON answer: integer (or -1) / string into out. */
static long long json_int(const char *body, const char *name)
{
    json_error_t je;
    json_t *j = json_loads(body, 0, &je);
    json_t *v = json_object_get(j, name);
    long long n = json_is_integer(v) ? json_integer_value(v) : -1;
    json_decref(j);
    return n;
}

static void json_str(const char *body, const char *name, char *out, size_t n)
{
    json_error_t je;
    json_t *j = json_loads(body, 0, &je);
    const char *s = json_string_value(json_object_get(j, name));
    snprintf(out, n, "%s", s ? s : "");
    json_decref(j);
}

/* ---- MongoDB and Redis ------------------------------------------------------------------ */

static void email_of(int i, char out[64])
{
    snprintf(out, 64, "c%d@%c.example", i, pipeh_domain(i));
}

static long long count(const char *coll, bson_t *filter)
{
    mongoc_collection_t *c = pipeh_coll(&h, coll);
    bson_error_t e;
    int64_t n = mongoc_collection_count_documents(c, filter, NULL, NULL, NULL, &e);
    bson_destroy(filter);
    mongoc_collection_destroy(c);
    return n;
}

/* The suppression of addr: reason and source into the buffers; false if none. *notify too. */
static bool suppression(const char *addr, char reason[32], char source[32], bool *notify)
{
    mongoc_collection_t *c = pipeh_coll(&h, DB_SUPPRESSIONS);
    bson_t *f = BCON_NEW("email", BCON_UTF8(addr));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, f, NULL, NULL);
    const bson_t *d;
    bool found = false;
    reason[0] = source[0] = '\0';
    if (notify)
        *notify = false;
    if (mongoc_cursor_next(cur, &d)) {
        found = true;
        bson_iter_t it;
        if (bson_iter_init_find(&it, d, "reason") && BSON_ITER_HOLDS_UTF8(&it))
            snprintf(reason, 32, "%s", bson_iter_utf8(&it, NULL));
        if (bson_iter_init_find(&it, d, "source") && BSON_ITER_HOLDS_UTF8(&it))
            snprintf(source, 32, "%s", bson_iter_utf8(&it, NULL));
        if (notify && bson_iter_init_find(&it, d, "notify"))
            *notify = bson_iter_as_bool(&it);
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(f);
    mongoc_collection_destroy(c);
    return found;
}

static void rkey(char *out, size_t n, const char *suffix)
{
    snprintf(out, n, "%s%s", h.env.prefix, suffix);
}

/* The events on the events queue whose id is id (each job decoded with lib/jobs). */
static int events_with_id(const char *id)
{
    char k[200];
    rkey(k, sizeof k, "{" QUEUE_EVENTS "}:ready");
    redisReply *r = rconn_command(h.rc, "LRANGE %s 0 -1", k);
    int n = 0;
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        jobs_event ev;
        char why[200];
        if (jobs_event_decode(r->element[i]->str, r->element[i]->len, &ev, why, sizeof why) == 0 &&
            !strcmp(ev.id, id) && ev.type == JOBS_EV_CONTACT_UNSUBSCRIBED)
            n++;
    }
    freeReplyObject(r);
    return n;
}

/* The unsubscribe_url of the newest job on the priority queue (a POST /api/messages send). */
static int newest_priority_url(char *out, size_t n)
{
    char k[200];
    rkey(k, sizeof k, "{" QUEUE_PRIORITY "}:ready");
    redisReply *r = rconn_command(h.rc, "LINDEX %s 0", k);
    int rc = -1;
    out[0] = '\0';
    if (r && r->type == REDIS_REPLY_STRING) {
        json_error_t je;
        json_t *j = json_loadb(r->str, r->len, 0, &je);
        const char *u = json_string_value(json_object_get(j, "unsubscribe_url"));
        if (u) {
            snprintf(out, n, "%s", u);
            rc = 0;
        }
        json_decref(j);
    }
    freeReplyObject(r);
    return rc;
}

/* POST /api/messages to customer i; the log id into lhex and its send's url into url. */
static long message_to(int i, char lhex[25], char *url, size_t urln)
{
    char em[64], body[200];
    resp r;
    email_of(i, em);
    snprintf(body, sizeof body, "{\"email\": \"%s\", \"message\": \"hello\"}", em);
    req("POST", "/api/messages", staff, body, NULL, &r);
    json_str(r.body, "log_id", lhex, 25);
    if (url && r.status == 202 && newest_priority_url(url, urln) != 0)
        url[0] = '\0';
    return r.status;
}

/* ---- cases ------------------------------------------------------------------------------ */

TEST(cli_import)
{
    char path[400], cmd[1200], out[2000] = "";
    snprintf(path, sizeof path, "%s/supp.csv", h.env.dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fprintf(f, "name,email,reason\r\n");
    int lines = 1, expect_added = 0;
    for (int i = 0; i < NCUST; i += 10) {
        char em[64];
        email_of(i, em);
        /* Upper case and spaces around some: the list stores addresses trimmed, lower-cased. */
        if (i % 20 == 0)
            em[0] = 'C';
        fprintf(f, "\"C %d, quoted\",%s%s,%s\r\n", i, i % 20 ? "" : " ", em,
                i % 30 ? "manual" : "bounced");
        lines++;
        expect_added++;
    }
    fprintf(f, "x,not-an-address,manual\n"); /* bad: line lines+1 */
    fprintf(f, "\n");                        /* blank */
    fprintf(f, "y,ok@z.example,sleepy\n");   /* bad reason */
    fprintf(f, "\"unterminated,a@b.example\n");
    fclose(f);
    int bad1 = lines + 1, bad2 = lines + 3, bad3 = lines + 4;
    snprintf(cmd, sizeof cmd, "'%s' suppressions import '%s' 2>'%s/import.err'",
             testenv_bin("minicrm"), path, h.env.dir);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    size_t got = fread(out, 1, sizeof out - 1, p);
    out[got] = '\0';
    int st = pclose(p);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 1, "import exit %d: %s", WEXITSTATUS(st), out);
    char want[200];
    snprintf(want, sizeof want, "added %d, existing 0, bad 3, blank 1", expect_added);
    CHECK_STR_CONTAINS(out, want);
    char errp[400], err[4000] = "";
    snprintf(errp, sizeof errp, "%s/import.err", h.env.dir);
    f = fopen(errp, "r");
    CHECK(f != NULL);
    got = fread(err, 1, sizeof err - 1, f);
    err[got] = '\0';
    fclose(f);
    char l1[64], l2[64], l3[64];
    snprintf(l1, sizeof l1, "supp.csv:%d: ", bad1);
    snprintf(l2, sizeof l2, "supp.csv:%d: ", bad2);
    snprintf(l3, sizeof l3, "supp.csv:%d: ", bad3);
    CHECK_STR_CONTAINS(err, l1);
    CHECK_STR_CONTAINS(err, l2);
    CHECK_STR_CONTAINS(err, l3);
    CHECK_INT_EQ(count(DB_SUPPRESSIONS, bson_new()), expect_added);
    CHECK_INT_EQ(count(DB_CUSTOMERS, BCON_NEW("suppressed", BCON_BOOL(true))), expect_added);
    char reason[32], source[32];
    CHECK(suppression("c0@a.example", reason, source, NULL));
    CHECK_STR_EQ(reason, "bounced");
    CHECK(suppression("c10@b.example", reason, source, NULL));
    CHECK_STR_EQ(reason, "manual");
    /* Again: nothing new, every line counted as existing. */
    p = popen(cmd, "r");
    got = fread(out, 1, sizeof out - 1, p);
    out[got] = '\0';
    pclose(p);
    snprintf(want, sizeof want, "added 0, existing %d, bad 3", expect_added);
    CHECK_STR_CONTAINS(out, want);
}

TEST(routes)
{
    resp r;
    CHECK_INT_EQ(req("POST", "/api/suppressions", staff, "{\"email\": \"nope\"}", NULL, &r), 400);
    CHECK_STR_CONTAINS(r.body, "email");
    CHECK_INT_EQ(req("POST", "/api/suppressions", staff,
                     "{\"email\": \"a@b.example\", \"reason\": \"x\"}", NULL, &r),
                 400);
    CHECK_STR_CONTAINS(r.body, "reason");
    CHECK_INT_EQ(req("POST", "/api/suppressions", staff, "{\"reason\": \"manual\"}", NULL, &r),
                 400);
    CHECK_STR_CONTAINS(r.body, "email");
    CHECK_INT_EQ(req("POST", "/api/suppressions", NULL, "{\"email\": \"a@b.example\"}", NULL, &r),
                 401);
    CHECK_INT_EQ(req("POST", "/api/suppressions", staff,
                     "{\"email\": \"Route@Test.example\", \"reason\": \"complained\"}", NULL, &r),
                 201);
    CHECK_STR_CONTAINS(r.body, "\"created\":true");
    CHECK_STR_CONTAINS(r.body, "route@test.example");
    CHECK_INT_EQ(
        req("POST", "/api/suppressions", staff, "{\"email\": \"route@test.example\"}", NULL, &r),
        200);
    CHECK_STR_CONTAINS(r.body, "\"created\":false");
    CHECK_STR_CONTAINS(r.body, "complained"); /* the first suppression stays */
    CHECK_INT_EQ(req("GET", "/api/suppressions?reason=complained", staff, NULL, NULL, &r), 200);
    CHECK_STR_CONTAINS(r.body, "route@test.example");
    CHECK(!strstr(r.body, "c10@b.example"));
    CHECK(!strstr(r.body, "notify"));
    CHECK_INT_EQ(req("GET", "/api/suppressions?limit=1", staff, NULL, NULL, &r), 200);
    CHECK_STR_CONTAINS(r.body, "route@test.example"); /* newest first */
    CHECK_INT_EQ(req("GET", "/api/suppressions?reason=sleepy", staff, NULL, NULL, &r), 400);
    CHECK_INT_EQ(req("GET", "/api/suppressions", NULL, NULL, NULL, &r), 401);
    CHECK_INT_EQ(req("DELETE", "/api/suppressions/route@test.example", staff, NULL, NULL, &r), 403);
    CHECK_INT_EQ(req("DELETE", "/api/suppressions/none%40test.example", admin, NULL, NULL, &r),
                 404);
    CHECK_INT_EQ(req("DELETE", "/api/suppressions/Route%40Test.example", admin, NULL, NULL, &r),
                 200);
    char reason[32], source[32];
    CHECK(!suppression("route@test.example", reason, source, NULL));
    CHECK_INT_EQ(req("DELETE", "/api/suppressions/route@test.example", admin, NULL, NULL, &r), 404);
}

TEST(audience)
{
    resp r;
    int suppressed = 0, rich = 0, rich_suppressed = 0;
    for (int i = 0; i < NCUST; i++) {
        bool s = i % 10 == 0;
        suppressed += s;
        if (pipeh_spend(i) >= 5000) {
            rich++;
            rich_suppressed += s;
        }
    }
    CHECK_INT_EQ(req("POST", "/api/campaigns/preview", staff, "{\"rules\": {}}", NULL, &r), 200);
    CHECK_INT_EQ(json_int(r.body, "audience_size"), NCUST - suppressed);
    CHECK_INT_EQ(req("POST", "/api/campaigns/preview", staff, "{\"rules\": {\"min_spend\": 5000}}",
                     NULL, &r),
                 200);
    CHECK_INT_EQ(json_int(r.body, "audience_size"), rich - rich_suppressed);

    /* A customer created after its address was suppressed is flagged at insert. */
    CHECK_INT_EQ(
        req("POST", "/api/suppressions", staff, "{\"email\": \"late@new.example\"}", NULL, &r),
        201);
    CHECK_INT_EQ(req("POST", "/customers", staff,
                     "{\"name\": \"Late\", \"email\": \"Late@New.example\", \"total_spend\": 9000}",
                     NULL, &r),
                 201);
    CHECK_INT_EQ(count(DB_CUSTOMERS, BCON_NEW("email", BCON_UTF8("late@new.example"), "suppressed",
                                              BCON_BOOL(true))),
                 1);
    CHECK_INT_EQ(req("POST", "/api/campaigns/preview", staff, "{\"rules\": {\"min_spend\": 5000}}",
                     NULL, &r),
                 200);
    CHECK_INT_EQ(json_int(r.body, "audience_size"), rich - rich_suppressed);
    /* ... and removing the suppression gives the customer back to the audience. */
    CHECK_INT_EQ(req("DELETE", "/api/suppressions/late@new.example", admin, NULL, NULL, &r), 200);
    CHECK_INT_EQ(req("POST", "/api/campaigns/preview", staff, "{\"rules\": {\"min_spend\": 5000}}",
                     NULL, &r),
                 200);
    CHECK_INT_EQ(json_int(r.body, "audience_size"), rich - rich_suppressed + 1);
    CHECK_INT_EQ(
        req("POST", "/api/suppressions", staff, "{\"email\": \"late@new.example\"}", NULL, &r),
        201);

    /* Priority messages: 409 naming the reason, no log written. */
    long long logs_before = count(DB_LOGS, bson_new());
    CHECK_INT_EQ(req("POST", "/api/messages", staff,
                     "{\"email\": \"c0@a.example\", \"message\": \"hi\"}", NULL, &r),
                 409);
    CHECK_STR_CONTAINS(r.body, "suppressed (bounced)");
    CHECK_INT_EQ(req("POST", "/api/messages", staff,
                     "{\"email\": \"C10@B.example\", \"message\": \"hi\"}", NULL, &r),
                 409);
    CHECK_STR_CONTAINS(r.body, "suppressed (manual)");
    CHECK_INT_EQ(count(DB_LOGS, bson_new()), logs_before);
}

TEST(unsubscribe)
{
    char lhex[25], url[600], reason[32], source[32], em[64];
    resp r;
    CHECK_INT_EQ(message_to(1, lhex, url, sizeof url), 202);
    email_of(1, em);
    char prefix[100];
    snprintf(prefix, sizeof prefix, "http://127.0.0.1:%d/u/", h.api_port);
    CHECK_MSG(!strncmp(url, prefix, strlen(prefix)), "send's unsubscribe_url: \"%s\"", url);
    CHECK_INT_EQ(strlen(url), strlen(prefix) + UNSUB_TOKEN_LEN);
    char hdr[800];
    CHECK(unsub_headers(url, hdr, sizeof hdr) > 0);
    CHECK_STR_CONTAINS(hdr, "List-Unsubscribe-Post: List-Unsubscribe=One-Click");

    /* GET: a page with a form, nothing suppressed (link scanners). */
    CHECK_INT_EQ(req("GET", url, NULL, NULL, NULL, &r), 200);
    CHECK_STR_CONTAINS(r.ctype, "text/html");
    CHECK_STR_CONTAINS(r.body, "<form method=\"post\"");
    CHECK_STR_CONTAINS(r.body, "name=\"List-Unsubscribe\" value=\"One-Click\"");
    CHECK(!suppression(em, reason, source, NULL));

    /* Another body: 400, nothing suppressed. */
    CHECK_INT_EQ(req("POST", url, NULL, "unsubscribe=yes", "application/x-www-form-urlencoded", &r),
                 400);
    CHECK(!suppression(em, reason, source, NULL));

    /* Tampered and malformed tokens: 404 (GET and POST). */
    char bad[600];
    snprintf(bad, sizeof bad, "%s", url);
    size_t k = strlen(prefix) + 20;
    bad[k] = bad[k] == 'A' ? 'B' : 'A';
    CHECK_INT_EQ(req("POST", bad, NULL, UNSUB_POST_BODY, "application/x-www-form-urlencoded", &r),
                 404);
    CHECK_INT_EQ(req("GET", bad, NULL, NULL, NULL, &r), 404);
    CHECK_INT_EQ(
        req("POST", "/u/short", NULL, UNSUB_POST_BODY, "application/x-www-form-urlencoded", &r),
        404);
    CHECK_INT_EQ(req("GET", "/u/!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!", NULL, NULL, NULL, &r), 404);
    CHECK(!suppression(em, reason, source, NULL));

    /* POST one-click: suppressed, one event. */
    CHECK_INT_EQ(req("POST", url, NULL, UNSUB_POST_BODY, "application/x-www-form-urlencoded", &r),
                 200);
    bool notify = true;
    CHECK(suppression(em, reason, source, &notify));
    CHECK_STR_EQ(reason, "unsubscribed");
    CHECK_STR_EQ(source, lhex);
    CHECK(!notify);
    char evid[JOBS_EVENT_ID_LEN + 1];
    jobs_event_id(JOBS_EV_CONTACT_UNSUBSCRIBED, em, evid);
    CHECK_INT_EQ(events_with_id(evid), 1);
    CHECK_INT_EQ(
        count(DB_CUSTOMERS, BCON_NEW("email", BCON_UTF8(em), "suppressed", BCON_BOOL(true))), 1);
    /* Repeat: 200, no second event. */
    CHECK_INT_EQ(req("POST", url, NULL, UNSUB_POST_BODY, "application/x-www-form-urlencoded", &r),
                 200);
    CHECK_INT_EQ(events_with_id(evid), 1);
    /* Multipart, as some mail clients post it: accepted too. */
    CHECK_INT_EQ(message_to(2, lhex, url, sizeof url), 202);
    CHECK_INT_EQ(req("POST", url, NULL,
                     "--xx\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\n"
                     "One-Click\r\n--xx--\r\n",
                     "multipart/form-data; boundary=xx", &r),
                 200);
    email_of(2, em);
    CHECK(suppression(em, reason, source, NULL));
}

TEST(event_after_kill)
{
    char lhex[25], url[600], em[64], reason[32], source[32], k[200];
    resp r;
    CHECK_INT_EQ(message_to(4, lhex, url, sizeof url), 202);
    email_of(4, em);
    /* Make every push to the events queue fail (a string where the list should be). */
    rkey(k, sizeof k, "{" QUEUE_EVENTS "}:ready");
    redisReply *rr = rconn_command(h.rc, "RENAME %s %s:saved", k, k);
    freeReplyObject(rr);
    rr = rconn_command(h.rc, "SET %s not-a-list", k);
    freeReplyObject(rr);
    CHECK_INT_EQ(req("POST", url, NULL, UNSUB_POST_BODY, "application/x-www-form-urlencoded", &r),
                 200);
    bool notify = false;
    CHECK(suppression(em, reason, source, &notify));
    CHECK_MSG(notify, "the suppression lost its notify mark although the push failed");
    /* The API dies before it could push; the list is usable again; the API comes back. */
    pipeh_kill(&h, PH_API, SIGKILL);
    rr = rconn_command(h.rc, "DEL %s", k);
    freeReplyObject(rr);
    rr = rconn_command(h.rc, "RENAME %s:saved %s", k, k);
    freeReplyObject(rr);
    char evid[JOBS_EVENT_ID_LEN + 1];
    jobs_event_id(JOBS_EV_CONTACT_UNSUBSCRIBED, em, evid);
    CHECK_INT_EQ(events_with_id(evid), 0);
    CHECK_INT_EQ(pipeh_spawn(&h, PH_API, NULL), 0);
    int64_t deadline = time_mono_ms() + 40000;
    while (events_with_id(evid) == 0 && time_mono_ms() < deadline)
        pipeh_sleep_ms(200);
    CHECK_INT_EQ(events_with_id(evid), 1);
    CHECK(suppression(em, reason, source, &notify));
    CHECK(!notify);
}

/* Post a campaign with empty rules; its id into out. The audience it answered. */
static long long campaign(const char *name, bson_oid_t *out)
{
    char body[200], hex[25];
    resp r;
    snprintf(body, sizeof body, "{\"name\": \"%s\", \"rules\": {}}", name);
    if (req("POST", "/api/campaigns", staff, body, NULL, &r) != 201)
        return -1;
    json_error_t je;
    json_t *j = json_loads(r.body, 0, &je);
    json_t *c = json_object_get(j, "campaign");
    const char *id = json_string_value(json_object_get(c, "_id"));
    long long n = json_integer_value(json_object_get(j, "logs_count"));
    snprintf(hex, sizeof hex, "%s", id ? id : "");
    json_decref(j);
    if (strlen(hex) != 24)
        return -1;
    bson_oid_init_from_string(out, hex);
    return n;
}

/* The customers flagged suppressed now: their ids into ids (cap), the count. */
static size_t suppressed_now(bson_oid_t *ids, size_t cap)
{
    mongoc_collection_t *custs = pipeh_coll(&h, DB_CUSTOMERS);
    bson_t *f = BCON_NEW("suppressed", BCON_BOOL(true));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(custs, f, NULL, NULL);
    const bson_t *d;
    size_t n = 0;
    while (n < cap && mongoc_cursor_next(cur, &d)) {
        bson_iter_t it;
        if (bson_iter_init_find(&it, d, "_id") && BSON_ITER_HOLDS_OID(&it))
            bson_oid_copy(bson_iter_oid(&it), &ids[n++]);
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(f);
    mongoc_collection_destroy(custs);
    return n;
}

/* Logs of campaign cid for the customers ids[0..n) (one count with $in). */
static long long logs_among(const bson_oid_t *cid, const bson_oid_t *ids, size_t n)
{
    bson_t *f = bson_new(), in, arr;
    BSON_APPEND_OID(f, "campaign_id", cid);
    BSON_APPEND_DOCUMENT_BEGIN(f, "customer_id", &in);
    BSON_APPEND_ARRAY_BEGIN(&in, "$in", &arr);
    for (size_t i = 0; i < n; i++) {
        char k[16];
        const char *key;
        bson_uint32_to_string((uint32_t)i, &key, k, sizeof k);
        bson_append_oid(&arr, key, -1, &ids[i]);
    }
    bson_append_array_end(&in, &arr);
    bson_append_document_end(f, &in);
    return count(DB_LOGS, f);
}

TEST(campaigns)
{
    setenv("MINICRM_VENDOR_SIM_UNSUBSCRIBE_RATE", "0.2", 1);
    CHECK_INT_EQ(pipeh_start_all(&h), 0);
    static bson_oid_t before[NCUST + 16];
    size_t nbefore = suppressed_now(before, NCUST + 16);
    long long suppressed_before = (long long)nbefore;
    long long custs = count(DB_CUSTOMERS, bson_new());
    bson_oid_t c1, c2;
    long long a1 = campaign("first", &c1);
    CHECK_INT_EQ(a1, custs - suppressed_before);
    ph_campaign st;
    CHECK_INT_EQ(pipeh_wait_completed(&h, &c1, 180000, &st), 0);
    CHECK_INT_EQ(st.total, a1);
    /* None for a customer suppressed before it started (the simulator is suppressing more of
     * its recipients meanwhile: those have logs, rightly). */
    CHECK_INT_EQ(logs_among(&c1, before, nbefore), 0);

    /* Which recipients the simulator decided to unsubscribe (its own function, recomputed). */
    mongoc_collection_t *logs = pipeh_coll(&h, DB_LOGS);
    bson_t *f = BCON_NEW("campaign_id", BCON_OID(&c1), "status", BCON_UTF8("SENT"));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(logs, f, NULL, NULL);
    const bson_t *d;
    long long sent = 0, decided = 0;
    static bson_oid_t who[NCUST];
    while (mongoc_cursor_next(cur, &d)) {
        bson_iter_t it;
        char lhex[25];
        sent++;
        if (!bson_iter_init_find(&it, d, "_id") || !BSON_ITER_HOLDS_OID(&it))
            continue;
        bson_oid_to_string(bson_iter_oid(&it), lhex);
        if (vunsub_decide(SECRET, VENDOR_SEED, UNSUB_RATE, lhex) &&
            bson_iter_init_find(&it, d, "customer_id") && BSON_ITER_HOLDS_OID(&it))
            bson_oid_copy(bson_iter_oid(&it), &who[decided++]);
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(f);
    mongoc_collection_destroy(logs);
    fprintf(stderr, "  campaign 1: %lld logs, %lld SENT, %lld recipients unsubscribe (%.1f%%)\n",
            a1, sent, decided, sent ? 100.0 * decided / sent : 0);
    CHECK(decided > sent * UNSUB_RATE * 0.7 && decided < sent * UNSUB_RATE * 1.3);
    /* Every one of them ends suppressed as unsubscribed (the simulator posts after its turn). */
    long long want = suppressed_before + decided;
    int64_t deadline = time_mono_ms() + 60000;
    while (count(DB_CUSTOMERS, BCON_NEW("suppressed", BCON_BOOL(true))) < want &&
           time_mono_ms() < deadline)
        pipeh_sleep_ms(200);
    CHECK_INT_EQ(count(DB_CUSTOMERS, BCON_NEW("suppressed", BCON_BOOL(true))), want);
    for (long long i = 0; i < decided; i++)
        CHECK_INT_EQ(
            count(DB_CUSTOMERS, BCON_NEW("_id", BCON_OID(&who[i]), "suppressed", BCON_BOOL(true))),
            1);
    CHECK_INT_EQ(count(DB_SUPPRESSIONS, BCON_NEW("reason", BCON_UTF8("unsubscribed"), "source", "{",
                                                 "$ne", BCON_NULL, "}")),
                 decided + 3 /* the unsubscribe cases' three */);

    /* The second campaign to the same audience skips them all. */
    nbefore = suppressed_now(before, NCUST + 16);
    CHECK_INT_EQ(nbefore, want);
    long long a2 = campaign("second", &c2);
    CHECK_INT_EQ(a2, a1 - decided);
    CHECK_INT_EQ(pipeh_wait_completed(&h, &c2, 180000, &st), 0);
    CHECK_INT_EQ(st.total, a2);
    CHECK_INT_EQ(logs_among(&c2, before, nbefore), 0);
    unsetenv("MINICRM_VENDOR_SIM_UNSUBSCRIBE_RATE");
}

static const test_case cases[] = {TEST_ENTRY(cli_import),       TEST_ENTRY(routes),
                                  TEST_ENTRY(audience),         TEST_ENTRY(unsubscribe),
                                  TEST_ENTRY(event_after_kill), TEST_ENTRY(campaigns)};

int main(int argc, char **argv)
{
    if (pipeh_start(&h) != 0) {
        fprintf(stderr, "test_suppress: cannot start services\n");
        pipeh_stop(&h);
        return 1;
    }
    setenv("MINICRM_TEST_DIR", h.env.dir, 1);
    if (pipeh_seed(&h, NCUST) != 0 || pipeh_spawn(&h, PH_API, NULL) != 0 ||
        pipeh_make_key(&h, "admin", "supp-admin", admin, sizeof admin) != 0 ||
        pipeh_make_key(&h, "staff", "supp-staff", staff, sizeof staff) != 0) {
        fprintf(stderr, "test_suppress: cannot seed, start the API or make keys\n");
        pipeh_stop(&h);
        return 1;
    }
    /* The unique email index the suppressions rely on: wait for the API's index builder. */
    int64_t deadline = time_mono_ms() + 30000;
    bool ready = false;
    while (!ready && time_mono_ms() < deadline) {
        mongoc_collection_t *c = pipeh_coll(&h, DB_SUPPRESSIONS);
        mongoc_cursor_t *cur = mongoc_collection_find_indexes_with_opts(c, NULL);
        const bson_t *d;
        while (mongoc_cursor_next(cur, &d)) {
            bson_iter_t it;
            if (bson_iter_init_find(&it, d, "name") && BSON_ITER_HOLDS_UTF8(&it) &&
                !strcmp(bson_iter_utf8(&it, NULL), "email_1"))
                ready = true;
        }
        mongoc_cursor_destroy(cur);
        mongoc_collection_destroy(c);
        if (!ready)
            pipeh_sleep_ms(100);
    }
    int rc = test_run_all(__FILE__, cases, sizeof cases / sizeof cases[0], argc, argv);
    if (rc != 0)
        fprintf(stderr, "logs of the programs: %s\n", h.env.dir);
    pipeh_stop(&h);
    return rc;
}
