/*
 * routes_campaign_moves: the operator's moves of a campaign (lib/campaign's move table, the
 * Redis side in lib/campctl).
 *
 *   POST /api/campaigns/:id/pause   (staff)  QUEUED | SENDING | PAUSED -> PAUSED
 *        MongoDB first (the truth), then the Redis flag, then wait until the fan-out stopped at
 *        a batch boundary and every live sends consumer acknowledged the flag
 *        (campctl_wait, at most queue.heartbeat_ttl_s + 2 s: a killed worker's lease has
 *        expired by then) -> 200 with the campaign. A consumer that does
 *        not answer in time -> 503 naming it; the state is PAUSED already and a retry (legal:
 *        PAUSED -> PAUSED) waits again.
 *   POST /api/campaigns/:id/resume  (staff)  PAUSED -> SENDING (fan-out had started) | QUEUED
 *        MongoDB first, then the held sends back to the queue and the flag dropped (one
 *        script), then the campaign job again unless the fan-out had finished (it continues
 *        from its checkpoint), then the completion check (every receipt may be in) -> 200.
 *   POST /api/campaigns/:id/cancel  (admin)  SCHEDULED | QUEUED | SENDING | PAUSED | CANCELLED
 *        -> CANCELLED. MongoDB first, then the flag (held sends dropped), the same wait as a
 *        pause, then the logs whose send the vendor already has (campctl_snapshot, decoded
 *        with lib/jobs) are kept PENDING (their receipts still count) and every other PENDING
 *        log becomes CANCELLED in one update_many, then the counters are recounted
 *        (campaign_cancel_recount) -> 200. Re-running it on a CANCELLED campaign finishes an
 *        interrupted cancel.
 *   POST /api/campaigns/:id/reschedule (staff) {send_at}  SCHEDULED -> SCHEDULED
 *        send_at checked like at creation (400 naming send_at); the schedule's entry moves
 *        (ZADD XX: gone means a worker already promoted it -> 409), then MongoDB's send_at.
 *   An illegal move -> 409 "campaign is <STATE>: cannot <move> it" (the table decides); an
 *   unknown campaign -> 404.
 *
 * Every move writes one `campaign.move` line (campaign, move, from, to, who, took_ms) and counts
 * in minicrm_campaign_transitions_total{from,to}. The Redis connection is taken before MongoDB
 * is touched, so a Redis outage answers 503 before anything moved.
 */
#include "apiutil.h"
#include "campaign.h"
#include "campctl.h"
#include "campevents.h"
#include "jobs.h"
#include "log.h"
#include "metrics.h"
#include "queue.h"
#include "routes.h"
#include "rpool.h"
#include "timeutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void do_move(api_ctx *app, http_request *req, campaign_move m)
{
    bson_oid_t oid;
    if (api_parse_oid(req, "id", http_param(req, "id"), &oid) != 0)
        return;
    char hex[25], err[300] = "";
    bson_oid_to_string(&oid, hex);
    const char *prefix = app->cfg->redis.prefix;
    int64_t t0 = time_mono_ms();
    rconn *rc = api_redis(req);
    if (!rc)
        return;
    mongoc_client_t *cl = dbpool_pop(app->db);
    mongoc_collection_t *camps = dbpool_collection(app->db, cl, DB_CAMPAIGNS);
    mongoc_collection_t *logs = dbpool_collection(app->db, cl, DB_LOGS);
    campctl_logs keep = {0};
    bson_error_t e;
    campaign_status from = CAMPAIGN_QUEUED, to = CAMPAIGN_QUEUED;
    bool fanout_done = false;
    char reason[300];
    snprintf(reason, sizeof reason, "cancelled by %s",
             req->who.email[0] ? req->who.email : req->who.user_id);
    int r =
        campaign_move_apply(camps, &oid, m, reason, time_now_ms(), &from, &to, &fanout_done, &e);
    if (r < 0) {
        api_db_fail(req, &e, "moving the campaign");
        goto out;
    }
    if (r == CAMPAIGN_NOT_FOUND) {
        http_error(req, 404, "campaign not found");
        goto out;
    }
    if (r == CAMPAIGN_ILLEGAL) {
        http_error(req, 409, "campaign is %s: cannot %s it", campaign_status_name(from),
                   campaign_move_name(m));
        goto out;
    }
    long long epoch = 0, n = 0;
    int64_t modified = 0;
    if (m == CAMPAIGN_MOVE_RESUME) {
        if (campctl_resume(rc, prefix, hex, &n, err, sizeof err) != 0) {
            http_error(req, 503,
                       "campaign is %s but its held sends were not released (%s): "
                       "they are released within seconds by minicrm-worker",
                       campaign_status_name(to), err);
            goto out;
        }
        if (!fanout_done) {
            char job[JOBS_CAMPAIGN_BYTES];
            int len = jobs_campaign_encode(hex, job, sizeof job);
            const char *jobs[] = {job};
            size_t lens[] = {(size_t)len};
            rpool_put(app->redis, rc); /* api_enqueue takes its own connection */
            rc = NULL;
            if (api_enqueue(req, QUEUE_CAMPAIGNS, jobs, lens, 1) != 0)
                goto out;
        }
        if (campaign_try_complete(camps, &oid, &e) != 0) {
            api_db_fail(req, &e, "completing the campaign");
            goto out;
        }
    } else {
        int st = m == CAMPAIGN_MOVE_PAUSE
                     ? campctl_pause(rc, prefix, hex, &epoch, err, sizeof err)
                     : campctl_cancel(rc, prefix, hex, &epoch, &n, err, sizeof err);
        if (st == 0)
            st = campctl_wait(rc, prefix, hex, epoch, app->cfg->queue.heartbeat_ttl_s * 1000 + 2000,
                              err, sizeof err);
        if (st != 0) {
            http_error(req, 503,
                       "campaign is %s but the move has not taken effect yet (%s); "
                       "retry to confirm",
                       campaign_status_name(to), err);
            goto out;
        }
        if (m == CAMPAIGN_MOVE_CANCEL && from == CAMPAIGN_SCHEDULED) {
            /* Not promoted yet: take it out of the schedule (a promotion that came first is
             * harmless: the fan-out finds it CANCELLED). */
            char job[JOBS_CAMPAIGN_BYTES];
            int jl = jobs_campaign_encode(hex, job, sizeof job);
            if (jl > 0 && campctl_schedule_remove(rc, prefix, job, (size_t)jl) != 0)
                log_warn("campaign.unschedule_failed", "campaign=%s", hex);
        }
        if (m == CAMPAIGN_MOVE_CANCEL) {
            if (campctl_at_vendor(rc, prefix, hex, &keep, err, sizeof err) != 0) {
                http_error(req, 503, "campaign is CANCELLED, its logs not yet (%s); retry", err);
                goto out;
            }
            if (campaign_cancel_logs(logs, &oid, keep.a, keep.n, time_now_ms(), &modified, &e) !=
                    0 ||
                campaign_cancel_recount(camps, logs, &oid, &e) != 0) {
                api_db_fail(req, &e, "cancelling the logs");
                goto out;
            }
        }
    }
    /* campaign.paused / campaign.cancelled (lib/campevents; a failure is logged and the worker's
     * rescue pass publishes it within seconds) */
    if (rc && m != CAMPAIGN_MOVE_RESUME &&
        campevents_flush(camps, rc, prefix, &oid, err, sizeof err) < 0)
        log_warn("campaign.events_deferred", "rid=%s campaign=%s detail=\"%s\"", req->request_id,
                 hex, err);
    int64_t took = time_mono_ms() - t0;
    metrics_campaign_move(app->metrics, (int)from, (int)to);
    log_info("campaign.move",
             "rid=%s campaign=%s move=%s from=%s to=%s who=%s took_ms=%lld at_vendor=%zu "
             "logs_cancelled=%lld jobs=%lld",
             req->request_id, hex, campaign_move_name(m), campaign_status_name(from),
             campaign_status_name(to), req->who.email[0] ? req->who.email : req->who.user_id,
             (long long)took, keep.n, (long long)modified, n);
    json_t *camp = NULL;
    int fr = api_find_by_id(app, cl, DB_CAMPAIGNS, &oid, &camp, &e);
    if (fr != 1) {
        if (fr < 0)
            api_db_fail(req, &e, "reading the campaign");
        else
            http_error(req, 404, "campaign not found");
        goto out;
    }
    json_object_del(camp, "ctoks");
    json_object_del(camp, CAMPAIGN_EVENTS_DUE);
    json_object_set_new(camp, "transition",
                        json_pack("{s:s,s:s,s:s,s:I}", "move", campaign_move_name(m), "from",
                                  campaign_status_name(from), "to", campaign_status_name(to),
                                  "took_ms", (json_int_t)took));
    http_send_json(req, 200, camp);
out:
    campctl_logs_release(&keep);
    if (rc)
        rpool_put(app->redis, rc);
    mongoc_collection_destroy(camps);
    mongoc_collection_destroy(logs);
    dbpool_push(app->db, cl);
}

/* POST /api/campaigns/:id/reschedule {send_at}: the schedule first (ZADD XX: a job no longer
 * there was promoted, the campaign is starting: 409), then MongoDB. */
static void h_reschedule(api_ctx *app, http_request *req)
{
    bson_oid_t oid;
    if (api_parse_oid(req, "id", http_param(req, "id"), &oid) != 0)
        return;
    json_t *body = api_body_object(req, " {send_at}");
    if (!body)
        return;
    json_t *js = json_object_get(body, "send_at");
    char err[300], hex[25], job[JOBS_CAMPAIGN_BYTES];
    int64_t send_at, now = time_now_ms(), t0 = time_mono_ms();
    if (!json_is_string(js)) {
        http_error(req, 400, "send_at is required (ISO 8601 with a zone or Z)");
        return;
    }
    if (campaign_send_at_check(json_string_value(js), now, &send_at, err, sizeof err) != 0) {
        http_error(req, 400, "%s", err);
        return;
    }
    bson_oid_to_string(&oid, hex);
    int jl = jobs_campaign_encode(hex, job, sizeof job);
    rconn *rc = api_redis(req);
    if (!rc)
        return;
    mongoc_client_t *cl = dbpool_pop(app->db);
    mongoc_collection_t *camps = dbpool_collection(app->db, cl, DB_CAMPAIGNS);
    campaign_status from = CAMPAIGN_SCHEDULED;
    bson_error_t e;
    json_t *camp = NULL;
    /* The state first (404 / 409 from the table), then the schedule, then the new send_at. */
    int r = api_find_by_id(app, cl, DB_CAMPAIGNS, &oid, &camp, &e);
    if (r < 0) {
        api_db_fail(req, &e, "reading the campaign");
        goto out;
    }
    if (r == 0) {
        http_error(req, 404, "campaign not found");
        goto out;
    }
    const char *st = json_string_value(json_object_get(camp, "status"));
    if (!st || campaign_status_parse(st, strlen(st), &from) != 0 ||
        !campaign_move_legal(CAMPAIGN_MOVE_RESCHEDULE, from)) {
        http_error(req, 409, "campaign is %s: cannot reschedule it", st ? st : "unknown");
        goto out;
    }
    int zr = campctl_schedule_add(rc, app->cfg->redis.prefix, job, (size_t)jl, send_at, 'X');
    if (zr < 0) {
        api_redis_fail(req, rc, "rescheduling");
        goto out;
    }
    if (zr == 0) {
        http_error(req, 409, "campaign is SCHEDULED but already promoted: it is starting");
        goto out;
    }
    r = campaign_reschedule(camps, &oid, send_at, now, &from, &e);
    if (r < 0) {
        api_db_fail(req, &e, "rescheduling the campaign");
        goto out;
    }
    if (r != CAMPAIGN_MOVED) {
        http_error(req, r == CAMPAIGN_ILLEGAL ? 409 : 404, "campaign is %s: cannot reschedule it",
                   campaign_status_name(from));
        goto out;
    }
    int64_t took = time_mono_ms() - t0;
    metrics_campaign_move(app->metrics, (int)from, (int)from);
    log_info("campaign.move",
             "rid=%s campaign=%s move=reschedule from=%s to=%s who=%s took_ms=%lld",
             req->request_id, hex, campaign_status_name(from), campaign_status_name(from),
             req->who.email[0] ? req->who.email : req->who.user_id, (long long)took);
    json_decref(camp);
    camp = NULL;
    if (api_find_by_id(app, cl, DB_CAMPAIGNS, &oid, &camp, &e) != 1) {
        api_db_fail(req, &e, "reading the campaign");
        goto out;
    }
    json_object_del(camp, "ctoks");
    json_object_del(camp, CAMPAIGN_EVENTS_DUE);
    json_object_set_new(camp, "transition",
                        json_pack("{s:s,s:s,s:s,s:I}", "move", "reschedule", "from",
                                  campaign_status_name(from), "to", campaign_status_name(from),
                                  "took_ms", (json_int_t)took));
    http_send_json(req, 200, camp);
    camp = NULL;
out:
    json_decref(camp);
    rpool_put(app->redis, rc);
    mongoc_collection_destroy(camps);
    dbpool_push(app->db, cl);
}

static void h_pause(api_ctx *app, http_request *req)
{
    do_move(app, req, CAMPAIGN_MOVE_PAUSE);
}

static void h_resume(api_ctx *app, http_request *req)
{
    do_move(app, req, CAMPAIGN_MOVE_RESUME);
}

static void h_cancel(api_ctx *app, http_request *req)
{
    do_move(app, req, CAMPAIGN_MOVE_CANCEL);
}

int routes_campaign_moves_register(router *r)
{
    if (router_add(r, HTTP_POST, "/api/campaigns/:id/pause", h_pause, ROUTE_AUTH,
                   AUTH_ROLE_STAFF) ||
        router_add(r, HTTP_POST, "/api/campaigns/:id/resume", h_resume, ROUTE_AUTH,
                   AUTH_ROLE_STAFF) ||
        router_add(r, HTTP_POST, "/api/campaigns/:id/cancel", h_cancel, ROUTE_AUTH,
                   AUTH_ROLE_ADMIN) ||
        router_add(r, HTTP_POST, "/api/campaigns/:id/reschedule", h_reschedule, ROUTE_AUTH,
                   AUTH_ROLE_STAFF))
        return -1;
    return 0;
}
