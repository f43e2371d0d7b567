/*
 * minicrm demo: one campaign end to end against a running `minicrm up`, the way a client
 * would do it over HTTP: seed a small data set if the store is empty, preview the audience,
 * create the campaign, follow its live progress until every log is final, then print a
 * summary and the curl commands that reproduce each step.
 */
#include "commands.h"
#include "seed.h"
#include "timeutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(void)
{
    printf("usage: minicrm demo [--api URL] [--customers N] [--min-spend X] [--timeout S]\n\n"
           "Against a running `minicrm up`: seeds N customers (default 2000) if there are none,\n"
           "creates a campaign for customers who spent at least X (default 500), shows its\n"
           "progress until complete, and prints a summary and the equivalent curl commands.\n");
}

static long long jint(const json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? (long long)json_integer_value(v)
           : json_is_real(v)  ? (long long)json_real_value(v)
                              : 0;
}

static const char *jerr(const json_t *o)
{
    const char *e = json_string_value(json_object_get(o, "error"));
    return e ? e : "no error message";
}

int cmd_demo(cli_ctx *ctx)
{
    if (ctx->help) {
        usage();
        return 0;
    }
    const char *api = NULL;
    long customers = 2000, timeout_s = 300;
    double min_spend = 500;
    for (int i = 1; i < ctx->argc; i++) {
        const char *a = ctx->argv[i], *v = i + 1 < ctx->argc ? ctx->argv[i + 1] : NULL;
        char *end = NULL;
        if (!v) {
            fprintf(stderr, "minicrm demo: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--api"))
            api = v;
        else if (!strcmp(a, "--customers"))
            customers = strtol(v, &end, 10);
        else if (!strcmp(a, "--min-spend"))
            min_spend = strtod(v, &end);
        else if (!strcmp(a, "--timeout"))
            timeout_s = strtol(v, &end, 10);
        else {
            fprintf(stderr, "minicrm demo: unknown argument %s\n", a);
            usage();
            return 2;
        }
        if (end &&
            (*end || customers < 1 || customers > 1000000 || min_spend < 0 || timeout_s < 1)) {
            fprintf(stderr, "minicrm demo: bad value for %s: %s\n", a, v);
            return 2;
        }
        i++;
    }
    bool tty = isatty(1);
    cli_session s;
    char err[512];
    if (cli_session_open(&s, ctx->cfg, api, "demo", err, sizeof err) != 0) {
        fprintf(stderr, "minicrm demo: %s\n", err);
        return 1;
    }
    httpc *h = cli_session_client(&s);
    int rc = 1;
    json_t *out = NULL, *body = NULL;
    char path[256], camp_id[32] = "";

    /* 1. Data: seed if the store is empty. */
    long st = httpc_json(h, "GET", "/customers?limit=1", NULL, &out, err, sizeof err);
    if (st != 200) {
        fprintf(stderr, "minicrm demo: GET /customers: %s\n", st < 0 ? err : jerr(out));
        goto out;
    }
    if (json_array_size(out) == 0) {
        printf("1. the store is empty: seeding %ld customers and %ld orders (seed 42)\n", customers,
               customers * 3);
        seed_opts o = {.customers = customers,
                       .orders = customers * 3,
                       .seed = 42,
                       .concurrency = 8,
                       .progress = isatty(2)};
        seed_result r;
        if (seed_run(&s, &o, &r) != 0) {
            fprintf(stderr, "minicrm demo: seeding failed: %s\n", r.first_error);
            goto out;
        }
        printf("   %ld customers, %ld orders in %.1f s\n", r.created + r.existed, r.orders_created,
               r.seconds);
    } else {
        printf("1. the store has customers: not seeding\n");
    }
    json_decref(out);
    out = NULL;

    /* 2. Preview the audience. */
    json_t *rules = json_pack("{s:f}", "min_spend", min_spend);
    body = json_pack("{s:O}", "rules", rules);
    st = httpc_json(h, "POST", "/api/campaigns/preview", body, &out, err, sizeof err);
    json_decref(body);
    body = NULL;
    if (st != 200) {
        fprintf(stderr, "minicrm demo: preview: %s\n", st < 0 ? err : jerr(out));
        json_decref(rules);
        goto out;
    }
    long long preview = jint(out, "audience_size");
    printf("2. preview: %lld customers spent at least %.2f\n", preview, min_spend);
    json_decref(out);
    out = NULL;

    /* 3. Create the campaign. */
    char name[96];
    snprintf(name, sizeof name, "Demo offer %lld", (long long)(time_now_ms() / 1000));
    body = json_pack("{s:s,s:o,s:s}", "name", name, "rules", rules, "message",
                     "Hi {{name}}, thanks for spending {{total_spend}} with us: here is 10% off.");
    int64_t t0 = time_mono_ms();
    st = httpc_json(h, "POST", "/api/campaigns", body, &out, err, sizeof err);
    if (st != 201) {
        fprintf(stderr, "minicrm demo: create campaign: %s\n", st < 0 ? err : jerr(out));
        goto out;
    }
    json_t *camp = json_object_get(out, "campaign");
    snprintf(camp_id, sizeof camp_id, "%s", json_string_value(json_object_get(camp, "_id")));
    long long audience = jint(out, "logs_count");
    printf("3. campaign %s created (%lld recipients), status %s\n", camp_id, audience,
           json_string_value(json_object_get(camp, "status")));
    json_decref(out);
    out = NULL;

    /* 4. Follow the progress until every log is final. */
    snprintf(path, sizeof path, "/api/campaigns/%s", camp_id);
    long long sent = 0, failed = 0, pending = 0, logs = 0;
    bool complete = false;
    const char *status = "?";
    char status_buf[32] = "?";
    while (!complete) {
        if (time_mono_ms() - t0 > timeout_s * 1000) {
            fprintf(stderr, "\nminicrm demo: campaign not complete after %ld s\n", timeout_s);
            goto out;
        }
        st = httpc_json(h, "GET", path, NULL, &out, err, sizeof err);
        if (st != 200) {
            fprintf(stderr, "\nminicrm demo: GET %s: %s\n", path, st < 0 ? err : jerr(out));
            goto out;
        }
        json_t *p = json_object_get(out, "progress");
        sent = jint(p, "sent");
        failed = jint(p, "failed");
        pending = jint(p, "pending");
        logs = jint(p, "logs");
        complete = json_is_true(json_object_get(p, "complete"));
        snprintf(status_buf, sizeof status_buf, "%s",
                 json_string_value(json_object_get(out, "status")) ?: "?");
        status = status_buf;
        json_decref(out);
        out = NULL;
        double secs = (double)(time_mono_ms() - t0) / 1000.0;
        long long done = sent + failed;
        int width = 30, fill = audience > 0 ? (int)(width * done / audience) : width;
        char bar[40];
        for (int k = 0; k < width; k++)
            bar[k] = k < fill ? '#' : '.';
        bar[width] = '\0';
        printf("%s4. [%s] sent %lld  failed %lld  pending %lld  (%s, %.0f msg/s)%s",
               tty ? "\r" : "", bar, sent, failed, pending, status,
               secs > 0 ? (double)done / secs : 0, tty ? "   " : "\n");
        fflush(stdout);
        if (!complete)
            usleep(tty ? 200000 : 1000000);
    }
    double secs = (double)(time_mono_ms() - t0) / 1000.0;
    printf("\n\n  campaign    %s\n  status      %s\n  recipients  %lld\n  logs        %lld\n"
           "  sent        %lld (%.1f%%)\n  failed      %lld (%.1f%%)\n  pending     %lld\n"
           "  time        %.2f s (%.0f messages/s)\n\n",
           camp_id, status, audience, logs, sent,
           audience ? 100.0 * (double)sent / (double)audience : 0, failed,
           audience ? 100.0 * (double)failed / (double)audience : 0, pending, secs,
           secs > 0 ? (double)(sent + failed) / secs : 0);
    if (sent + failed != audience || logs != audience || pending != 0) {
        fprintf(stderr,
                "minicrm demo: counts do not add up: sent + failed = %lld, logs = %lld, "
                "recipients = %lld\n",
                sent + failed, logs, audience);
        goto out;
    }
    printf("The same steps with curl (get a key with: minicrm keys create --role staff):\n"
           "  export KEY=mck_...\n"
           "  curl -H \"Authorization: Bearer $KEY\" '%s/customers?limit=1'\n"
           "  curl -H \"Authorization: Bearer $KEY\" -H 'Content-Type: application/json' \\\n"
           "       -d '{\"rules\":{\"min_spend\":%g}}' %s/api/campaigns/preview\n"
           "  curl -H \"Authorization: Bearer $KEY\" -H 'Content-Type: application/json' \\\n"
           "       -d '{\"name\":\"%s\",\"rules\":{\"min_spend\":%g}}' %s/api/campaigns\n"
           "  curl -H \"Authorization: Bearer $KEY\" %s/api/campaigns/%s\n"
           "  curl -H \"Authorization: Bearer $KEY\" '%s/api/campaigns/%s/logs?limit=5'\n",
           s.base, min_spend, s.base, name, min_spend, s.base, s.base, camp_id, s.base, camp_id);
    rc = 0;
out:
    json_decref(out);
    json_decref(body);
    httpc_free(h);
    cli_session_close(&s);
    return rc;
}
