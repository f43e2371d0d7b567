/*
 * routes_suppress: the suppression list over HTTP and one-click unsubscribe (RFC 8058).
 *
 *   POST   /api/suppressions         (staff)  {email, reason?: "manual"}
 *          -> 201 {"created": true, "suppression": {...}} | 200 {"created": false, ...} (the
 *          address was already suppressed: the first suppression stays); 400 naming the field
 *          (email not an address, reason not one of unsubscribed|bounced|complained|manual).
 *   GET    /api/suppressions         (staff)  ?reason=&limit=&page= -> 200 [...] newest first
 *          (index at_-1__id_-1); 400 for an unknown reason.
 *   DELETE /api/suppressions/:email  (admin)  -> 200 {"ok": true, "email"}; 404 none; 403 staff.
 *
 *   GET    /u/:token   (public) a small HTML page with a confirm button: a form POSTing
 *          List-Unsubscribe=One-Click to the same URL. Never suppresses (link scanners follow
 *          GETs). 404 for a bad or tampered token.
 *   POST   /u/:token   (public) body List-Unsubscribe=One-Click (form-encoded or multipart):
 *          suppresses the address of the log's customer (reason unsubscribed, source the log
 *          id), 200 with a small HTML page; a repeat is 200 too. 404 bad token, unknown log or
 *          customer; 400 another body.
 *   The token is the credential (lib/unsub): no login, no cookie, so no CSRF rule applies, and
 *   a token names one log only.
 *
 * The contact.unsubscribed event. A new unsubscribed suppression is written with notify: true
 * (lib/suppress); the route then pushes the event on QUEUE_EVENTS and clears the mark. A crash
 * (or Redis down) between the two leaves the mark: a thread of minicrm-api of its own
 * (routes_suppress_start; a MongoDB or Redis outage must not stall the main loop's signal
 * handling) pushes every marked suppression older than SUPPRESS_NOTIFY_GRACE_MS, every
 * SUPPRESS_TICK_MS, and clears the mark.
 * Pushing before the suppression would be wrong (a crash then announces an unsubscribe that
 * never happened); pushing twice is harmless (the event id is deterministic per address).
 */
#include "apiutil.h"
#include "log.h"
#include "queue.h"
#include "routes.h"
#include "signals.h"
#include "suppress.h"
#include "timeutil.h"
#include "unsub.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SUPPRESS_NOTIFY_GRACE_MS 10000 /* a route still pushing its own event */
#define SUPPRESS_TICK_MS         5000  /* how often the notifier thread looks */

/* ---- helpers ---------------------------------------------------------------------------- */

/* The suppression of addr as JSON (new reference), or NULL. */
static json_t *find_doc(mongoc_collection_t *supps, const char *addr, bson_error_t *e, int *rc)
{
    bson_t *sel = BCON_NEW("email", BCON_UTF8(addr));
    bson_t *opts =
        BCON_NEW("limit", BCON_INT64(1), "projection", "{", "notify", BCON_INT32(0), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(supps, sel, opts, NULL);
    const bson_t *doc;
    json_t *out = NULL;
    if (mongoc_cursor_next(cur, &doc))
        out = jsonx_from_bson(doc);
    *rc = mongoc_cursor_error(cur, e) ? -1 : 0;
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    bson_destroy(sel);
    return out;
}

/* Push the event of a new unsubscribed suppression (best effort: the mark stays on failure and
 * the notifier thread pushes it later). */
static void notify(api_ctx *app, mongoc_collection_t *supps, const char *addr, int64_t at)
{
    rconn *c = rpool_get(app->redis);
    char err[256] = "no Redis connection";
    queue *q =
        c ? queue_open(c, app->cfg->redis.prefix, QUEUE_EVENTS, NULL, NULL, err, sizeof err) : NULL;
    bson_error_t e;
    if (!q || suppress_notify(supps, (struct queue *)q, addr, at, &e) != 0) {
        char m[300];
        log_warn("suppress.notify_deferred", "err=%s", log_quote(m, sizeof m, q ? e.message : err));
    }
    queue_close(q);
    if (c)
        rpool_put(app->redis, c);
}

/* ---- /api/suppressions ------------------------------------------------------------------ */

static void h_add(api_ctx *app, http_request *req)
{
    json_t *body = api_body_object(req, " {email, reason?}");
    if (!body)
        return;
    const char *email, *reason;
    if (api_field_str(req, body, "email", true, SUPPRESS_EMAIL_MAX, &email) ||
        api_field_str(req, body, "reason", false, 32, &reason))
        return;
    char addr[SUPPRESS_EMAIL_MAX + 1];
    if (suppress_email_norm(email, addr) != 0) {
        http_error(req, 400, "email must be a valid e-mail address");
        return;
    }
    suppress_reason why = SUPPRESS_MANUAL;
    if (reason && suppress_reason_parse(reason, &why) != 0) {
        http_error(req, 400, "reason must be one of unsubscribed, bounced, complained, manual");
        return;
    }
    mongoc_client_t *cl = dbpool_pop(app->db);
    mongoc_collection_t *supps = dbpool_durable_collection(app->db, cl, DB_SUPPRESSIONS);
    mongoc_collection_t *custs = dbpool_collection(app->db, cl, DB_CUSTOMERS);
    bson_error_t e;
    bool created = false;
    int64_t now = time_now_ms();
    int rc = 0;
    json_t *doc = NULL;
    if (suppress_add(supps, custs, addr, why, NULL, now, &created, &e) != 0) {
        api_db_fail(req, &e, "adding a suppression");
        goto out;
    }
    if (created && why == SUPPRESS_UNSUBSCRIBED)
        notify(app, supps, addr, now);
    doc = find_doc(supps, addr, &e, &rc);
    if (rc != 0) {
        api_db_fail(req, &e, "reading a suppression");
        goto out;
    }
    http_send_json(
        req, created ? 201 : 200,
        json_pack("{s:b,s:o}", "created", created, "suppression", doc ? doc : json_null()));
    doc = NULL;
out:
    json_decref(doc);
    mongoc_collection_destroy(supps);
    mongoc_collection_destroy(custs);
    dbpool_push(app->db, cl);
}

static void h_list(api_ctx *app, http_request *req)
{
    long limit, page;
    if (api_paging(req, 100, &limit, &page) != 0)
        return;
    const char *reason = http_query(req, "reason");
    suppress_reason why;
    if (reason && *reason && suppress_reason_parse(reason, &why) != 0) {
        http_error(req, 400, "reason must be one of unsubscribed, bounced, complained, manual");
        return;
    }
    bson_t filter = BSON_INITIALIZER;
    if (reason && *reason)
        BSON_APPEND_UTF8(&filter, "reason", suppress_reason_name(why));
    static const char *const newest[] = {"-at", "-_id", NULL};
    static const char *const hidden[] = {"notify", NULL};
    api_query q = {.coll = DB_SUPPRESSIONS,
                   .filter = &filter,
                   .sort = newest,
                   .limit = limit,
                   .skip = api_skip(page, limit),
                   .exclude = hidden};
    api_send_query(app, req, &q, NULL, "listing suppressions");
    bson_destroy(&filter);
}

static void h_delete(api_ctx *app, http_request *req)
{
    char addr[SUPPRESS_EMAIL_MAX + 1];
    if (suppress_email_norm(http_param(req, "email"), addr) != 0) {
        http_error(req, 400, "email must be a valid e-mail address");
        return;
    }
    mongoc_client_t *cl = dbpool_pop(app->db);
    mongoc_collection_t *supps = dbpool_durable_collection(app->db, cl, DB_SUPPRESSIONS);
    mongoc_collection_t *custs = dbpool_collection(app->db, cl, DB_CUSTOMERS);
    bson_error_t e;
    bool removed = false;
    if (suppress_remove(supps, custs, addr, &removed, &e) != 0)
        api_db_fail(req, &e, "removing a suppression");
    else if (!removed)
        http_error(req, 404, "no suppression for %s", addr);
    else
        http_send_json(req, 200, json_pack("{s:b,s:s}", "ok", 1, "email", addr));
    mongoc_collection_destroy(supps);
    mongoc_collection_destroy(custs);
    dbpool_push(app->db, cl);
}

/* ---- /u/:token -------------------------------------------------------------------------- */

/* A small HTML page; with_form adds the confirm button: a form without an action, so it posts
 * to the page's own URL whatever prefix a proxy in front of the API adds. */
static void send_page(http_request *req, int status, const char *title, const char *text,
                      bool with_form)
{
    char page[2048];
    int n = snprintf(page, sizeof page,
                     "<!doctype html>\n<html><head><meta charset=\"utf-8\">"
                     "<meta name=\"robots\" content=\"noindex\"><title>%s</title></head>\n"
                     "<body style=\"font-family:sans-serif;max-width:32em;margin:3em auto\">\n"
                     "<h1>%s</h1>\n<p>%s</p>\n%s</body></html>\n",
                     title, title, text,
                     with_form ? "<form method=\"post\"><input type=\"hidden\" "
                                 "name=\"List-Unsubscribe\" value=\"One-Click\"><button "
                                 "type=\"submit\">Unsubscribe</button></form>\n"
                               : "");
    if (n < 0 || (size_t)n >= sizeof page)
        n = 0;
    http_add_header(req, "Cache-Control", "no-store");
    http_add_header(req, "X-Robots-Tag", "noindex");
    http_send_raw(req, status, "text/html; charset=utf-8", page, (size_t)n);
}

static void not_found(http_request *req)
{
    send_page(req, 404, "Link not valid", "This unsubscribe link is not valid.", false);
}

static void h_unsub_page(api_ctx *app, http_request *req)
{
    const char *tok = http_param(req, "token");
    char lhex[25];
    const unsub_signer *us = unsub_signer_get(app->cfg);
    if (!us || unsub_token_check(us, tok, lhex) != 0) {
        not_found(req);
        return;
    }
    send_page(req, 200, "Unsubscribe", "Press the button to stop receiving these messages.", true);
}

/* Does b[0..n) contain the NUL-terminated `lit`? */
static bool contains(const char *b, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    for (size_t i = 0; i + l <= n; i++)
        if (b[i] == lit[0] && memcmp(b + i, lit, l) == 0)
            return true;
    return false;
}

/* Is the body List-Unsubscribe=One-Click (form-encoded: one of its pairs; multipart: a part
 * named List-Unsubscribe whose value is One-Click)? */
static bool one_click_body(const http_request *req)
{
    const char *b = req->body ? req->body : "";
    size_t n = req->body_len;
    const char *ct = http_header(req, "Content-Type");
    if (ct && strncasecmp(ct, "multipart/form-data", 19) == 0)
        return contains(b, n, "name=\"List-Unsubscribe\"") && contains(b, n, "One-Click");
    static const char pair[] = UNSUB_POST_BODY;
    size_t pl = sizeof pair - 1;
    for (size_t i = 0; i + pl <= n;) {
        const char *amp = memchr(b + i, '&', n - i);
        size_t end = amp ? (size_t)(amp - b) : n;
        size_t len = end - i;
        while (len > 0 && (b[i + len - 1] == '\r' || b[i + len - 1] == '\n'))
            len--;
        if (len == pl && memcmp(b + i, pair, pl) == 0)
            return true;
        i = end + 1;
    }
    return false;
}

/* The e-mail of log lhex's customer into addr. 1 found, 0 no such log or customer, -1 error. */
static int log_email(mongoc_client_t *cl, api_ctx *app, const char *lhex,
                     char addr[SUPPRESS_EMAIL_MAX + 1], bson_error_t *e)
{
    bson_oid_t lid, uid;
    bson_oid_init_from_string(&lid, lhex);
    bson_t *sel = BCON_NEW("_id", BCON_OID(&lid));
    bson_t *opts =
        BCON_NEW("limit", BCON_INT64(1), "projection", "{", "customer_id", BCON_INT32(1), "}");
    mongoc_collection_t *logs = dbpool_collection(app->db, cl, DB_LOGS);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(logs, sel, opts, NULL);
    const bson_t *doc;
    bson_iter_t it;
    int rc = 0;
    bool have = false;
    if (mongoc_cursor_next(cur, &doc) && bson_iter_init_find(&it, doc, "customer_id") &&
        BSON_ITER_HOLDS_OID(&it)) {
        bson_oid_copy(bson_iter_oid(&it), &uid);
        have = true;
    }
    if (mongoc_cursor_error(cur, e))
        rc = -1;
    mongoc_cursor_destroy(cur);
    mongoc_collection_destroy(logs);
    bson_destroy(sel);
    bson_destroy(opts);
    if (rc != 0 || !have)
        return rc;
    sel = BCON_NEW("_id", BCON_OID(&uid));
    opts = BCON_NEW("limit", BCON_INT64(1), "projection", "{", "email", BCON_INT32(1), "}");
    mongoc_collection_t *custs = dbpool_collection(app->db, cl, DB_CUSTOMERS);
    cur = mongoc_collection_find_with_opts(custs, sel, opts, NULL);
    if (mongoc_cursor_next(cur, &doc) && bson_iter_init_find(&it, doc, "email") &&
        BSON_ITER_HOLDS_UTF8(&it) && suppress_email_norm(bson_iter_utf8(&it, NULL), addr) == 0)
        rc = 1;
    if (mongoc_cursor_error(cur, e))
        rc = -1;
    mongoc_cursor_destroy(cur);
    mongoc_collection_destroy(custs);
    bson_destroy(sel);
    bson_destroy(opts);
    return rc;
}

static void h_unsub_post(api_ctx *app, http_request *req)
{
    const char *tok = http_param(req, "token");
    char lhex[25];
    const unsub_signer *us = unsub_signer_get(app->cfg);
    if (!us || unsub_token_check(us, tok, lhex) != 0) {
        not_found(req);
        return;
    }
    if (!one_click_body(req)) {
        http_error(req, 400, "body must be " UNSUB_POST_BODY);
        return;
    }
    mongoc_client_t *cl = dbpool_pop(app->db);
    bson_error_t e;
    char addr[SUPPRESS_EMAIL_MAX + 1];
    int found = log_email(cl, app, lhex, addr, &e);
    if (found < 0) {
        api_db_fail(req, &e, "reading the log of an unsubscribe");
    } else if (found == 0) {
        not_found(req);
    } else {
        mongoc_collection_t *supps = dbpool_durable_collection(app->db, cl, DB_SUPPRESSIONS);
        mongoc_collection_t *custs = dbpool_collection(app->db, cl, DB_CUSTOMERS);
        bool created = false;
        int64_t now = time_now_ms();
        if (suppress_add(supps, custs, addr, SUPPRESS_UNSUBSCRIBED, lhex, now, &created, &e) != 0) {
            api_db_fail(req, &e, "suppressing an unsubscribed address");
        } else {
            if (created)
                notify(app, supps, addr, now);
            send_page(req, 200, "Unsubscribed", "You will not receive these messages any more.",
                      NULL);
        }
        mongoc_collection_destroy(supps);
        mongoc_collection_destroy(custs);
    }
    dbpool_push(app->db, cl);
}

/* ---- recovery of events ----------------------------------------------------------------- */

/* One recovery pass. */
static void notify_pass(api_ctx *app)
{
    rconn *c = rpool_get(app->redis);
    if (!c)
        return;
    char err[256];
    queue *q = queue_open(c, app->cfg->redis.prefix, QUEUE_EVENTS, NULL, NULL, err, sizeof err);
    mongoc_client_t *cl = dbpool_pop(app->db);
    mongoc_collection_t *supps = dbpool_collection(app->db, cl, DB_SUPPRESSIONS);
    bson_error_t e;
    int pushed = 0;
    if (q &&
        suppress_notify_pending(supps, (struct queue *)q, time_now_ms() - SUPPRESS_NOTIFY_GRACE_MS,
                                64, &pushed, &e) != 0) {
        char m[300];
        log_warn("suppress.notify_recovery_failed", "err=%s", log_quote(m, sizeof m, e.message));
    }
    if (pushed > 0)
        log_info("suppress.notify_recovered", "events=%d", pushed);
    mongoc_collection_destroy(supps);
    dbpool_push(app->db, cl);
    queue_close(q);
    rpool_put(app->redis, c);
}

static pthread_t g_notifier;
static bool g_notifier_started;

static void *notifier_thread(void *arg)
{
    api_ctx *app = arg;
    while (!signals_stop_requested()) {
        signals_sleep_ms(SUPPRESS_TICK_MS);
        if (!signals_stop_requested())
            notify_pass(app);
    }
    return NULL;
}

int routes_suppress_start(api_ctx *app)
{
    if (g_notifier_started)
        return 0;
    g_notifier_started = pthread_create(&g_notifier, NULL, notifier_thread, app) == 0;
    return g_notifier_started ? 0 : -1;
}

void routes_suppress_join(void)
{
    if (g_notifier_started)
        pthread_join(g_notifier, NULL);
    g_notifier_started = false;
}

int routes_suppress_register(router *r)
{
    if (router_add(r, HTTP_POST, "/api/suppressions", h_add, ROUTE_AUTH, AUTH_ROLE_STAFF) ||
        router_add(r, HTTP_GET, "/api/suppressions", h_list, ROUTE_AUTH, AUTH_ROLE_STAFF) ||
        router_add(r, HTTP_DELETE, "/api/suppressions/:email", h_delete, ROUTE_AUTH,
                   AUTH_ROLE_ADMIN) ||
        router_add(r, HTTP_GET, "/u/:token", h_unsub_page, ROUTE_PUBLIC, AUTH_ROLE_NONE) ||
        router_add(r, HTTP_POST, "/u/:token", h_unsub_post, ROUTE_PUBLIC, AUTH_ROLE_NONE))
        return -1;
    return 0;
}
