/*
 * minicrm campaigns list|show ID|pause ID|resume ID|cancel ID|reschedule ID SEND_AT [--json]
 * [--api URL]: the operator's view and moves of campaigns, through the HTTP API as any client
 * (GET /api/campaigns, GET /api/campaigns/:id, POST /api/campaigns/:id/<move>), on a temporary
 * API key (cli/session: staff, admin for cancel). --json prints the API's answer as it came;
 * otherwise one line per campaign: id, status, counters, name. A refused move prints the API's
 * message (409 names the current state) and exits 1.
 */
#include "auth_role.h"
#include "commands.h"
#include "httpc.h"
#include "session.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void)
{
    printf("usage: minicrm campaigns list [--limit N] [--json]\n"
           "       minicrm campaigns show ID [--json]\n"
           "       minicrm campaigns pause|resume|cancel ID [--json]\n"
           "       minicrm campaigns reschedule ID SEND_AT [--json]   (ISO 8601 with a zone)\n"
           "Options: --api URL (default http://127.0.0.1:<api.port>).\n"
           "States: SCHEDULED, QUEUED, SENDING, PAUSED, CANCELLED, COMPLETED. pause answers once\n"
           "the fan-out and the vendor consumers hold the campaign's sends; cancel needs admin\n"
           "(the temporary key is made with that role).\n");
}

static json_int_t num(const json_t *c, const char *k)
{
    return json_integer_value(json_object_get(c, k));
}

static void print_row(const json_t *c)
{
    const char *id = json_string_value(json_object_get(c, "_id"));
    const char *st = json_string_value(json_object_get(c, "status"));
    const char *name = json_string_value(json_object_get(c, "name"));
    printf("%-24s %-9s %9lld %9lld %9lld %9lld %9lld  %s\n", id ? id : "?", st ? st : "?",
           (long long)num(c, "total"), (long long)num(c, "sent"), (long long)num(c, "failed"),
           (long long)num(c, "cancelled"), (long long)num(c, "pending"), name ? name : "");
}

static void print_header(void)
{
    printf("%-24s %-9s %9s %9s %9s %9s %9s  %s\n", "ID", "STATUS", "TOTAL", "SENT", "FAILED",
           "CANCELLED", "PENDING", "NAME");
}

int cmd_campaigns(cli_ctx *ctx)
{
    bool as_json = false;
    const char *api = NULL, *words[3] = {0};
    long limit = 20;
    int nw = 0;
    for (int i = 1; i < ctx->argc; i++) {
        const char *a = ctx->argv[i];
        if (!strcmp(a, "--json")) {
            as_json = true;
        } else if ((!strcmp(a, "--api") || !strcmp(a, "--limit")) && i + 1 < ctx->argc) {
            if (!strcmp(a, "--api")) {
                api = ctx->argv[++i];
            } else {
                char *end;
                limit = strtol(ctx->argv[++i], &end, 10);
                if (*end || limit < 1 || limit > 1000) {
                    fprintf(stderr, "minicrm campaigns: --limit takes 1 to 1000\n");
                    return 2;
                }
            }
        } else if (a[0] != '-' && nw < 3) {
            words[nw++] = a;
        } else {
            fprintf(stderr, "minicrm campaigns: unknown argument '%s'\n", a);
            return 2;
        }
    }
    if (ctx->help) {
        usage();
        return 0;
    }
    const char *verb = words[0];
    bool list = verb && !strcmp(verb, "list");
    bool show = verb && !strcmp(verb, "show");
    bool resched = verb && !strcmp(verb, "reschedule");
    bool move = verb && (!strcmp(verb, "pause") || !strcmp(verb, "resume") ||
                         !strcmp(verb, "cancel") || resched);
    if (!verb || (!list && !show && !move) || (!list && nw < 2) || (resched && nw < 3)) {
        usage();
        return 2;
    }
    char err[256], path[200];
    cli_session s;
    int role = verb && !strcmp(verb, "cancel") ? AUTH_ROLE_ADMIN : AUTH_ROLE_STAFF;
    if (cli_session_open_as(&s, ctx->cfg, api, "campaigns", role, err, sizeof err) != 0) {
        fprintf(stderr, "minicrm campaigns: %s\n", err);
        return 1;
    }
    httpc *h = cli_session_client(&s);
    json_t *out = NULL, *body = NULL;
    long code;
    if (list) {
        snprintf(path, sizeof path, "/api/campaigns?limit=%ld", limit);
        code = httpc_json(h, "GET", path, NULL, &out, err, sizeof err);
    } else if (show) {
        snprintf(path, sizeof path, "/api/campaigns/%s", words[1]);
        code = httpc_json(h, "GET", path, NULL, &out, err, sizeof err);
    } else {
        snprintf(path, sizeof path, "/api/campaigns/%s/%s", words[1], verb);
        body = resched ? json_pack("{s:s}", "send_at", words[2]) : json_object();
        code = httpc_json(h, "POST", path, body, &out, err, sizeof err);
    }
    int rc = 0;
    if (code < 0) {
        fprintf(stderr, "minicrm campaigns: %s\n", err);
        rc = 1;
    } else if (code != 200) {
        const char *msg = json_string_value(json_object_get(out, "error"));
        fprintf(stderr, "minicrm campaigns: %ld %s\n", code, msg ? msg : "");
        rc = 1;
    } else if (as_json) {
        char *txt = json_dumps(out, JSON_COMPACT);
        printf("%s\n", txt ? txt : "null");
        free(txt);
    } else {
        print_header();
        if (json_is_array(out)) {
            size_t i;
            json_t *c;
            json_array_foreach(out, i, c) print_row(c);
        } else {
            print_row(out);
            json_t *t = json_object_get(out, "transition");
            if (t)
                printf("%s: %s -> %s in %lld ms\n", json_string_value(json_object_get(t, "move")),
                       json_string_value(json_object_get(t, "from")),
                       json_string_value(json_object_get(t, "to")), (long long)num(t, "took_ms"));
        }
    }
    json_decref(out);
    json_decref(body);
    httpc_free(h);
    cli_session_close(&s);
    return rc;
}
