/*
 * config: the settings table and the layered loader (see config.h).
 *
 * The table below is the single source of truth: defaults, bounds, environment names and the
 * one-line help. config/minicrm.cfg mirrors it (a test checks that every setting is there with
 * the same default), and the README's configuration table is generated from it
 * (`minicrm config --table`). Every layer goes through cfg_set(), so a value is validated
 * the same way whether it came from the file, .env, the environment or a flag.
 */
#include "config.h"

#include "log.h"
#include "redact.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OFF(field) offsetof(minicrm_config, field)
#define NOLIM      0, 0

/* clang-format off */
static const cfg_setting_info settings[] = {
    {"mongo.uri", CFG_STRING, OFF(mongo.uri), "mongodb://127.0.0.1:27017/minicrm", "MONGO_URI", false, 1, 0, NULL,
     "MongoDB connection string; the database comes from its path (default minicrm)"},
    {"mongo.pool_max", CFG_INT, OFF(mongo.pool_max), "32", NULL, false, 1, 1000, NULL,
     "most MongoDB connections one process opens"},
    {"mongo.timeout_ms", CFG_INT, OFF(mongo.timeout_ms), "5000", NULL, false, 100, 600000, NULL,
     "server selection and socket timeout for MongoDB, milliseconds"},
    {"mongo.max_time_ms", CFG_INT, OFF(mongo.max_time_ms), "0", NULL, false, 0, 3600000, NULL,
     "server-side time limit (maxTimeMS) of the API's reads, milliseconds; below the socket timeout (6 x timeout_ms unless the URI sets socketTimeoutMS); 0 = half of it, at most 10000"},
    {"mongo.index_timeout_ms", CFG_INT, OFF(mongo.index_timeout_ms), "3600000", NULL, false, 1000, 86400000, NULL,
     "socket timeout of the API's start-up index builder, milliseconds (an index build on a large collection takes minutes)"},
    {"mongo.write_concern", CFG_STRING, OFF(mongo.write_concern), "auto", NULL, false, 1, 0, "auto|journal|majority|acknowledged",
     "write concern of the writes a campaign depends on (logs, checkpoints, receipts, counters, campaign create): auto = the URI's w/journal when it names one, else majority with replicaSet=, else journal"},

    {"redis.url", CFG_STRING, OFF(redis.url), "redis://127.0.0.1:6379/0", "REDIS_URL", false, 1, 0, NULL,
     "Redis connection: redis://[:password@]host:port/db, or redis+cluster://[:password@]host1:port1,host2:port2/ for a Redis Cluster"},
    {"redis.prefix", CFG_STRING, OFF(redis.prefix), "minicrm:", NULL, false, 1, 0, NULL,
     "prefix of every Redis key minicrm uses"},
    {"redis.timeout_ms", CFG_INT, OFF(redis.timeout_ms), "5000", NULL, false, 100, 600000, NULL,
     "Redis connect and command timeout, milliseconds"},

    {"api.bind", CFG_STRING, OFF(api.bind), "127.0.0.1", NULL, false, 1, 0, NULL,
     "address the HTTP API listens on (0.0.0.0: every interface; needs a real receipts.vendor_secret)"},
    {"api.port", CFG_INT, OFF(api.port), "5000", "PORT", false, 1, 65535, NULL,
     "port the HTTP API listens on"},
    {"api.threads", CFG_INT, OFF(api.threads), "4", NULL, false, 1, 256, NULL,
     "HTTP worker threads"},
    {"api.max_body_bytes", CFG_LONG, OFF(api.max_body_bytes), "1048576", NULL, false, 1024, 67108864, NULL,
     "largest request body accepted (413 above)"},
    {"api.max_page_size", CFG_INT, OFF(api.max_page_size), "1000", NULL, false, 1, 100000, NULL,
     "largest ?limit= accepted by list routes"},
    {"api.max_skip", CFG_LONG, OFF(api.max_skip), "10000", NULL, false, 0, 100000000, NULL,
     "most documents a list's ?page= may skip; a deeper page is a 400 pointing to ?after= (the keyset form, as fast at any depth)"},
    {"api.request_timeout_s", CFG_INT, OFF(api.request_timeout_s), "30", NULL, false, 1, 3600, NULL,
     "idle connection timeout, and the most time a client may take to send a request's headers, seconds"},
    {"api.frontend_url", CFG_STRING, OFF(api.frontend_url), "http://localhost:3000", "FRONTEND_URL", false, 1, 0, NULL,
     "front end origin: CORS allowed origin and login redirect target"},
    {"api.idempotency_ttl_s", CFG_INT, OFF(api.idempotency_ttl_s), "86400", NULL, false, 60, 604800, NULL,
     "how long Idempotency-Key answers are kept, seconds"},
    {"api.rate_limit_per_min", CFG_INT, OFF(api.rate_limit_per_min), "0", NULL, false, 0, 1000000, NULL,
     "requests per minute per client before 429 (0 = no limit)"},
    {"api.max_conns", CFG_INT, OFF(api.max_conns), "1000", NULL, false, 1, 100000, NULL,
     "most concurrent HTTP connections (more are closed at once)"},
    {"api.max_conns_per_ip", CFG_INT, OFF(api.max_conns_per_ip), "256", NULL, false, 1, 100000, NULL,
     "most concurrent HTTP connections from one client address (more are closed at once)"},
    {"api.access_log", CFG_STRING, OFF(api.access_log), "auto", NULL, false, 1, 0, "auto|on|off",
     "one log line per request: on, off, or auto (on; off under `minicrm up` unless --verbose)"},
    {"api.web_root", CFG_STRING, OFF(api.web_root), "", NULL, false, NOLIM, NULL,
     "directory of the dashboard's files served at / and /ui/ (empty: share/minicrm/web next to the programs, else the source tree's web/)"},
    {"api.events_max_streams", CFG_INT, OFF(api.events_max_streams), "200", NULL, false, 1, 100000, NULL,
     "most concurrent GET /api/events streams (503 above)"},
    {"api.public_url", CFG_STRING, OFF(api.public_url), "", NULL, false, NOLIM, NULL,
     "public base URL of the API in unsubscribe links (empty: http://api.bind:api.port)"},
    {"api.unsubscribe_secret", CFG_STRING, OFF(api.unsubscribe_secret), "", NULL, true, NOLIM, NULL,
     "HMAC key of unsubscribe tokens (empty: derived from receipts.vendor_secret)"},

    {"auth.google_client_id", CFG_STRING, OFF(auth.google_client_id), "", "GOOGLE_CLIENT_ID", false, NOLIM, NULL,
     "Google OAuth client id (empty: Google login disabled)"},
    {"auth.google_client_secret", CFG_STRING, OFF(auth.google_client_secret), "", "GOOGLE_CLIENT_SECRET", true, NOLIM, NULL,
     "Google OAuth client secret"},
    {"auth.google_callback_url", CFG_STRING, OFF(auth.google_callback_url), "http://localhost:5000/auth/google/callback", "GOOGLE_CALLBACK_URL", false, NOLIM, NULL,
     "OAuth redirect URI registered with Google"},
    {"auth.google_auth_url", CFG_STRING, OFF(auth.google_auth_url), "https://accounts.google.com/o/oauth2/v2/auth", "GOOGLE_AUTH_URL", false, 1, 0, NULL,
     "OAuth authorization endpoint"},
    {"auth.google_token_url", CFG_STRING, OFF(auth.google_token_url), "https://oauth2.googleapis.com/token", "GOOGLE_TOKEN_URL", false, 1, 0, NULL,
     "OAuth token endpoint"},
    {"auth.google_userinfo_url", CFG_STRING, OFF(auth.google_userinfo_url), "https://openidconnect.googleapis.com/v1/userinfo", "GOOGLE_USERINFO_URL", false, 1, 0, NULL,
     "OpenID Connect userinfo endpoint"},
    {"auth.session_secret", CFG_STRING, OFF(auth.session_secret), "", "SESSION_SECRET", true, NOLIM, NULL,
     "key of the HMAC under which sessions are stored in Redis (empty: random per start, logins end at restart; minicrm up keeps one)"},
    {"auth.session_ttl_s", CFG_INT, OFF(auth.session_ttl_s), "86400", NULL, false, 60, 2592000, NULL,
     "session lifetime, seconds (cookie Max-Age too)"},
    {"auth.cookie_secure", CFG_BOOL, OFF(auth.cookie_secure), "false", NULL, false, NOLIM, NULL,
     "mark the session cookie Secure (HTTPS only)"},
    {"auth.cookie_samesite", CFG_STRING, OFF(auth.cookie_samesite), "Lax", NULL, false, 1, 0, "Strict|Lax|None",
     "SameSite attribute of the session cookie"},
    {"auth.admin_emails", CFG_STRING, OFF(auth.admin_emails), "", NULL, false, NOLIM, NULL,
     "comma-separated emails of admins (verified, and allowed to log in); no one else is admin"},
    {"auth.allowed_domains", CFG_STRING, OFF(auth.allowed_domains), "", NULL, false, NOLIM, NULL,
     "comma-separated email domains whose Google accounts may log in (empty with allowed_emails empty: no Google login)"},
    {"auth.allowed_emails", CFG_STRING, OFF(auth.allowed_emails), "", NULL, false, NOLIM, NULL,
     "comma-separated emails of Google accounts that may log in"},
    {"auth.login_rate_per_min", CFG_INT, OFF(auth.login_rate_per_min), "20", NULL, false, 1, 100000, NULL,
     "GET /auth/google per minute per client address before 429"},
    {"auth.state_ttl_s", CFG_INT, OFF(auth.state_ttl_s), "600", NULL, false, 10, 3600, NULL,
     "lifetime of an OAuth state, seconds"},
    {"auth.key_cache_ttl_s", CFG_INT, OFF(auth.key_cache_ttl_s), "10", NULL, false, 0, 300, NULL,
     "seconds a checked API key is trusted without MongoDB; a revocation holds within it (0: off)"},
    {"auth.http_timeout_ms", CFG_INT, OFF(auth.http_timeout_ms), "10000", NULL, false, 100, 120000, NULL,
     "timeout of token and userinfo calls, milliseconds"},

    {"receipts.vendor_secret", CFG_STRING, OFF(receipts.vendor_secret), CFG_DEV_VENDOR_SECRET, "VENDOR_SECRET", true, 1, 0, NULL,
     "HMAC-SHA256 key of delivery receipts"},
    {"receipts.require_timestamp", CFG_BOOL, OFF(receipts.require_timestamp), "true", NULL, false, NOLIM, NULL,
     "reject receipts without X-Timestamp (off is warned at start)"},
    {"receipts.rate_limit_per_min", CFG_INT, OFF(receipts.rate_limit_per_min), "120000", NULL, false, 0, 100000000, NULL,
     "receipt POSTs per minute per client before 429 (0 = no limit)"},
    {"receipts.max_skew_s", CFG_INT, OFF(receipts.max_skew_s), "300", NULL, false, 1, 86400, NULL,
     "largest accepted X-Timestamp distance from now, seconds"},
    {"receipts.max_batch", CFG_INT, OFF(receipts.max_batch), "1000", NULL, false, 1, 10000, NULL,
     "most receipts in one POST"},
    {"receipts.batch_size", CFG_INT, OFF(receipts.batch_size), "500", NULL, false, 1, 10000, NULL,
     "receipts the receipts worker claims and applies at once"},
    {"receipts.consumers", CFG_INT, OFF(receipts.consumers), "3", NULL, false, 1, 64, NULL,
     "consumer threads in one minicrm-receipts process"},
    {"receipts.vendor_timeout_s", CFG_INT, OFF(receipts.vendor_timeout_s), "120", NULL, false, 1, 86400, NULL,
     "a log PENDING longer than this is re-sent to the vendor"},
    {"receipts.max_resends", CFG_INT, OFF(receipts.max_resends), "3", NULL, false, 0, 100, NULL,
     "re-sends before a PENDING log is marked FAILED"},
    {"receipts.sweep_interval_s", CFG_INT, OFF(receipts.sweep_interval_s), "30", NULL, false, 1, 3600, NULL,
     "how often the PENDING sweeper runs, seconds"},

    {"receipts.recover_after_s", CFG_INT, OFF(receipts.recover_after_s), "60", NULL, false, 1, 86400, NULL,
     "age after which a receipts batch's counter token is recounted even if its consumer is alive, "
     "seconds (a dead consumer's tokens: at its heartbeat expiry)"},

    {"openai.api_key", CFG_STRING, OFF(openai.api_key), "", "OPENAI_API_KEY", true, NOLIM, NULL,
     "OpenAI key for AI tags and messages (empty: off)"},
    {"openai.model", CFG_STRING, OFF(openai.model), "gpt-4o-mini", NULL, false, 1, 0, NULL,
     "OpenAI model name"},
    {"openai.base_url", CFG_STRING, OFF(openai.base_url), "https://api.openai.com/v1", "OPENAI_BASE_URL", false, 1, 0, NULL,
     "OpenAI-compatible API root; POST {base_url}/chat/completions (a local llama.cpp or Ollama works)"},
    {"openai.timeout_ms", CFG_INT, OFF(openai.timeout_ms), "30000", NULL, false, 100, 600000, NULL,
     "total timeout of one model call, milliseconds"},
    {"openai.max_attempts", CFG_INT, OFF(openai.max_attempts), "5", NULL, false, 1, 100, NULL,
     "model calls for one AI job before it fails (ai.status failed + dead letter)"},
    {"openai.max_tokens_per_day", CFG_LONG, OFF(openai.max_tokens_per_day), "200000", NULL, false, 0, 1000000000000, NULL,
     "tokens (the answers' usage) minicrm-ai may spend per UTC day; 0 = no limit"},
    {"openai.cache_ttl_s", CFG_INT, OFF(openai.cache_ttl_s), "604800", NULL, false, 60, 31536000, NULL,
     "how long a suggest-tags answer of the model is kept for the same name and rules, seconds"},

    {"workers.procs", CFG_INT, OFF(workers.procs), "2", NULL, false, 1, 256, NULL,
     "worker processes started by minicrm-worker"},
    {"workers.batch_size", CFG_INT, OFF(workers.batch_size), "1000", NULL, false, 1, 100000, NULL,
     "logs inserted and sends pushed per batch during fan-out"},
    {"workers.shutdown_timeout_s", CFG_INT, OFF(workers.shutdown_timeout_s), "10", NULL, false, 1, 600, NULL,
     "time a worker gets to finish or hand back its batch on SIGTERM"},
    {"campaigns.schedule_expiry_s", CFG_INT, OFF(campaigns.schedule_expiry_s), "3600", NULL, false, 1, 31622400, NULL,
     "a scheduled campaign whose send_at passed longer ago than this (system down) is cancelled"},
    {"campaigns.rescue_after_s", CFG_INT, OFF(campaigns.rescue_after_s), "30", NULL, false, 1, 86400, NULL,
     "a QUEUED or SENDING campaign unchanged this long, with no fan-out running, gets its job again"},

    {"queue.max_attempts", CFG_INT, OFF(queue.max_attempts), "8", NULL, false, 1, 1000, NULL,
     "attempts before a job goes to the dead-letter list"},
    {"queue.backoff_base_ms", CFG_INT, OFF(queue.backoff_base_ms), "200", NULL, false, 1, 3600000, NULL,
     "first retry delay; doubles each attempt, with jitter"},
    {"queue.backoff_max_ms", CFG_INT, OFF(queue.backoff_max_ms), "60000", NULL, false, 1, 86400000, NULL,
     "longest retry delay"},
    {"queue.heartbeat_ttl_s", CFG_INT, OFF(queue.heartbeat_ttl_s), "15", NULL, false, 2, 3600, NULL,
     "a consumer silent this long is dead and its claimed jobs are returned"},
    {"queue.reap_interval_ms", CFG_INT, OFF(queue.reap_interval_ms), "2000", NULL, false, 50, 600000, NULL,
     "how often consumers look for dead consumers and due retries"},
    {"queue.shards", CFG_INT, OFF(queue.shards), "1", NULL, false, 1, 256, NULL,
     "queues of per-message work (sends, receipts) split into this many lists, each its own Redis Cluster slot ({sends:0}...); 1 = one list per queue"},

    {"vendor.rate_per_s", CFG_DOUBLE, OFF(vendor.rate_per_s), "0", NULL, false, 0, 1000000, NULL,
     "most sends handed to the vendor per second, shared by every consumer on every host (GCRA in Redis; 0 = no limit)"},

    {"vendor_sim.success_rate", CFG_DOUBLE, OFF(vendor_sim.success_rate), "0.9", NULL, false, 0, 1, NULL,
     "probability that a message is SENT (else FAILED)"},
    {"vendor_sim.bounce_rate", CFG_DOUBLE, OFF(vendor_sim.bounce_rate), "0.02", NULL, false, 0, 1, NULL,
     "probability that a message hard-bounces (BOUNCED instead of SENT/FAILED)"},
    {"vendor_sim.complaint_rate", CFG_DOUBLE, OFF(vendor_sim.complaint_rate), "0.001", NULL, false, 0, 1, NULL,
     "probability that a SENT message is reported as spam later (COMPLAINED)"},
    {"vendor_sim.open_rate", CFG_DOUBLE, OFF(vendor_sim.open_rate), "0.30", NULL, false, 0, 1, NULL,
     "probability that a SENT message is opened later (OPENED; a click implies an open)"},
    {"vendor_sim.click_rate", CFG_DOUBLE, OFF(vendor_sim.click_rate), "0.05", NULL, false, 0, 1, NULL,
     "probability that a SENT message is clicked later (CLICKED, and OPENED)"},
    {"vendor_sim.min_delay_ms", CFG_INT, OFF(vendor_sim.min_delay_ms), "100", NULL, false, 0, 600000, NULL,
     "shortest delivery delay"},
    {"vendor_sim.max_delay_ms", CFG_INT, OFF(vendor_sim.max_delay_ms), "900", NULL, false, 0, 600000, NULL,
     "longest delivery delay"},
    {"vendor_sim.seed", CFG_LONG, OFF(vendor_sim.seed), "0", NULL, false, 0, 9.2e18, NULL,
     "decision seed: outcome, delay and vendorMsgId are HMAC(receipts.vendor_secret, seed + log_id)"},
    {"vendor_sim.batch_size", CFG_INT, OFF(vendor_sim.batch_size), "500", NULL, false, 1, 100000, NULL,
     "messages claimed at once (a fan-out batch job counts as its sends)"},
    {"vendor_sim.max_inflight", CFG_INT, OFF(vendor_sim.max_inflight), "200000", NULL, false, 1, 10000000, NULL,
     "most messages waiting on their delay at once"},
    {"vendor_sim.api_base_url", CFG_STRING, OFF(vendor_sim.api_base_url), "http://localhost:5000", "API_BASE_URL", false, 1, 0, NULL,
     "where receipts are posted (POST {url}/api/receipts/delivery)"},
    {"vendor_sim.post_batch", CFG_INT, OFF(vendor_sim.post_batch), "500", NULL, false, 1, 1000, NULL,
     "receipts per POST"},
    {"vendor_sim.name", CFG_STRING, OFF(vendor_sim.name), "vendor-sim", NULL, false, 1, 0, NULL,
     "instance name: its consumer id and rejected-receipts key (unique per running simulator)"},
    {"vendor_sim.post_timeout_ms", CFG_INT, OFF(vendor_sim.post_timeout_ms), "10000", NULL, false, 100, 600000, NULL,
     "timeout of one receipts POST"},
    {"vendor_sim.unsubscribe_rate", CFG_DOUBLE, OFF(vendor_sim.unsubscribe_rate), "0.01", NULL, false, 0, 1, NULL,
     "share of recipients who click one-click unsubscribe (POST to the send's unsubscribe_url)"},

    {"vendor_sim.fake_429_above_per_s", CFG_DOUBLE, OFF(vendor_sim.fake_429_above_per_s), "0", NULL, false, 0, 1000000, NULL,
     "answer sends above this rate (shared by every simulator) with 429 + Retry-After, like a vendor's own limit (0 = never)"},
    {"webhooks.retry_schedule", CFG_STRING, OFF(webhooks.retry_schedule), "5,300,1800,7200,18000,36000,50400", NULL, false, 1, 0, NULL,
     "delays between the attempts of a webhook delivery, seconds, comma-separated (after the last: dead letter)"},
    {"webhooks.timeout_ms", CFG_INT, OFF(webhooks.timeout_ms), "10000", NULL, false, 100, 600000, NULL,
     "total timeout of one webhook delivery attempt, milliseconds"},
    {"webhooks.max_inflight", CFG_INT, OFF(webhooks.max_inflight), "32", NULL, false, 1, 10000, NULL,
     "webhook deliveries in flight at once in one minicrm-webhooks (a slow endpoint holds one each)"},
    {"webhooks.cache_ttl_ms", CFG_INT, OFF(webhooks.cache_ttl_ms), "2000", NULL, false, 0, 600000, NULL,
     "how long minicrm-webhooks caches the endpoint list, milliseconds (a new or deleted endpoint counts within it)"},

    {"log.level", CFG_STRING, OFF(log.level), "info", NULL, false, 1, 0, "debug|info|warn|error",
     "least severe level written"},
    {"log.format", CFG_STRING, OFF(log.format), "text", NULL, false, 1, 0, "text|json",
     "log line format: key=value text or JSON"},

    {"devdb.bind", CFG_STRING, OFF(devdb.bind), "127.0.0.1", NULL, false, 1, 0, NULL,
     "address minicrm-devdb listens on"},
    {"devdb.port", CFG_INT, OFF(devdb.port), "27017", NULL, false, 1, 65535, NULL,
     "port minicrm-devdb listens on"},
    {"devdb.dbpath", CFG_STRING, OFF(devdb.dbpath), "", NULL, false, NOLIM, NULL,
     "directory for devdb's journal and snapshots (empty: in memory)"},
    {"devdb.sync", CFG_STRING, OFF(devdb.sync), "everysec", NULL, false, 1, 0, "always|everysec|never",
     "when devdb fsyncs its journal"},
    {"devdb.max_conns", CFG_INT, OFF(devdb.max_conns), "1000", NULL, false, 1, 100000, NULL,
     "most concurrent connections to minicrm-devdb"},
    {"devdb.compact_multiple", CFG_INT, OFF(devdb.compact_multiple), "4", NULL, false, 1, 1000, NULL,
     "devdb compacts its journal into a snapshot when the journal exceeds this multiple of the live data"},
    {"devdb.compact_min_kb", CFG_INT, OFF(devdb.compact_min_kb), "65536", NULL, false, 0, 100000000, NULL,
     "... and the journal is larger than this many KiB"},
};
/* clang-format on */

const cfg_setting_info *cfg_settings(size_t *n)
{
    *n = sizeof settings / sizeof settings[0];
    return settings;
}

static const cfg_setting_info *find_setting(const char *path)
{
    for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++)
        if (strcmp(settings[i].path, path) == 0)
            return &settings[i];
    return NULL;
}

const char *cfg_env_name(const cfg_setting_info *s, char *buf, size_t n)
{
    size_t o = (size_t)snprintf(buf, n, "MINICRM_");
    for (const char *p = s->path; *p && o + 1 < n; p++)
        buf[o++] = *p == '.' ? '_' : (char)toupper((unsigned char)*p);
    buf[o < n ? o : n - 1] = '\0';
    return buf;
}

static void *field(minicrm_config *cfg, const cfg_setting_info *s)
{
    return (char *)cfg + s->offset;
}

static const void *cfield(const minicrm_config *cfg, const cfg_setting_info *s)
{
    return (const char *)cfg + s->offset;
}

/* Describes the expected value of s into buf, for error messages. */
static const char *expected(const cfg_setting_info *s, char *buf, size_t n)
{
    switch (s->type) {
    case CFG_INT:
    case CFG_LONG:
        snprintf(buf, n, "an integer from %.0f to %.0f", s->min, s->max);
        break;
    case CFG_DOUBLE:
        snprintf(buf, n, "a number from %g to %g", s->min, s->max);
        break;
    case CFG_BOOL:
        snprintf(buf, n, "true or false");
        break;
    case CFG_STRING:
        if (s->choices)
            snprintf(buf, n, "one of %s", s->choices);
        else
            snprintf(buf, n, "a non-empty string");
        break;
    }
    return buf;
}

int cfg_set(minicrm_config *cfg, const char *path, const char *value, const char *source, char *err,
            size_t errlen)
{
    const cfg_setting_info *s = find_setting(path);
    if (!s) {
        snprintf(err, errlen, "%s: unknown setting '%s'", source, path);
        return -1;
    }
    char exp[96];
    bool ok = true;
    switch (s->type) {
    case CFG_INT:
    case CFG_LONG: {
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        ok = *value && !errno && end != value && *end == '\0' && v >= s->min && v <= s->max;
        if (ok && s->type == CFG_INT)
            *(int *)field(cfg, s) = (int)v;
        else if (ok)
            *(long *)field(cfg, s) = (long)v;
        break;
    }
    case CFG_DOUBLE: {
        char *end;
        errno = 0;
        double v = strtod(value, &end);
        ok = *value && !errno && *end == '\0' && isfinite(v) && v >= s->min && v <= s->max;
        if (ok)
            *(double *)field(cfg, s) = v;
        break;
    }
    case CFG_BOOL:
        if (!strcmp(value, "true") || !strcmp(value, "1") || !strcmp(value, "yes"))
            *(bool *)field(cfg, s) = true;
        else if (!strcmp(value, "false") || !strcmp(value, "0") || !strcmp(value, "no"))
            *(bool *)field(cfg, s) = false;
        else
            ok = false;
        break;
    case CFG_STRING: {
        if (s->min >= 1 && !*value)
            ok = false;
        if (ok && s->choices) {
            ok = false;
            size_t vl = strlen(value);
            for (const char *c = s->choices; *c;) {
                const char *bar = strchr(c, '|');
                size_t cl = bar ? (size_t)(bar - c) : strlen(c);
                if (cl == vl && strncmp(c, value, cl) == 0)
                    ok = true;
                c += cl + (bar ? 1 : 0);
            }
        }
        if (ok) {
            char *copy = strdup(value);
            if (!copy) {
                snprintf(err, errlen, "%s: out of memory", source);
                return -1;
            }
            char **slot = (char **)field(cfg, s);
            free(*slot);
            *slot = copy;
        }
        break;
    }
    }
    if (!ok) {
        if (s->secret)
            snprintf(err, errlen, "%s: %s: expected %s", source, s->path,
                     expected(s, exp, sizeof exp));
        else {
            char shown[96];
            snprintf(err, errlen, "%s: %s: expected %s, got \"%s\"", source, s->path,
                     expected(s, exp, sizeof exp), redact_url(value, shown, 81));
        }
        return -1;
    }
    return 0;
}

int cfg_init(minicrm_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    char err[256];
    for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++) {
        /* Defaults are validated like any value; a failure here is a bug in the table. */
        if (cfg_set(cfg, settings[i].path, settings[i].def, "default", err, sizeof err) != 0) {
            log_error("config.bad_default", "detail=\"%s\"", err);
            return -1;
        }
    }
    return 0;
}

void cfg_release(minicrm_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++) {
        if (settings[i].type == CFG_STRING) {
            char **slot = (char **)field(cfg, &settings[i]);
            free(*slot);
            *slot = NULL;
        }
    }
}

/* ---- libconfig file ------------------------------------------------------------------- */

/* Render a scalar libconfig setting as text for config_set; -1 if it is a group/list. */
static int setting_text(config_setting_t *st, char *buf, size_t n, const char **out)
{
    switch (config_setting_type(st)) {
    case CONFIG_TYPE_STRING:
        *out = config_setting_get_string(st);
        return 0;
    case CONFIG_TYPE_INT:
        snprintf(buf, n, "%d", config_setting_get_int(st));
        break;
    case CONFIG_TYPE_INT64:
        snprintf(buf, n, "%lld", config_setting_get_int64(st));
        break;
    case CONFIG_TYPE_FLOAT:
        snprintf(buf, n, "%.17g", config_setting_get_float(st));
        break;
    case CONFIG_TYPE_BOOL:
        snprintf(buf, n, "%s", config_setting_get_bool(st) ? "true" : "false");
        break;
    default:
        return -1;
    }
    *out = buf;
    return 0;
}

int cfg_load_file(minicrm_config *cfg, const char *path, char *err, size_t errlen)
{
    config_t lc;
    config_init(&lc);
    int rc = -1;
    if (!config_read_file(&lc, path)) {
        if (config_error_type(&lc) == CONFIG_ERR_FILE_IO)
            snprintf(err, errlen, "%s: cannot read the file", path);
        else
            snprintf(err, errlen, "%s:%d: %s",
                     config_error_file(&lc) ? config_error_file(&lc) : path, config_error_line(&lc),
                     config_error_text(&lc));
        goto out;
    }
    config_setting_t *root = config_root_setting(&lc);
    for (int i = 0; i < config_setting_length(root); i++) {
        config_setting_t *group = config_setting_get_elem(root, (unsigned)i);
        const char *gname = config_setting_name(group);
        if (config_setting_type(group) != CONFIG_TYPE_GROUP) {
            snprintf(err, errlen, "%s:%d: '%s' must be a group like %s = { ... }", path,
                     config_setting_source_line(group), gname, gname);
            goto out;
        }
        for (int j = 0; j < config_setting_length(group); j++) {
            config_setting_t *st = config_setting_get_elem(group, (unsigned)j);
            char spath[128], source[300], buf[64];
            snprintf(spath, sizeof spath, "%s.%s", gname, config_setting_name(st));
            snprintf(source, sizeof source, "%s:%d", path, config_setting_source_line(st));
            const char *text;
            const cfg_setting_info *info = find_setting(spath);
            if (setting_text(st, buf, sizeof buf, &text) != 0) {
                snprintf(err, errlen, "%s: %s: expected a single value", source, spath);
                goto out;
            }
            /* A string where a number is expected (or the reverse) is a type error even if
             * the text would parse: the file is typed. */
            if (info &&
                (info->type == CFG_STRING) != (config_setting_type(st) == CONFIG_TYPE_STRING)) {
                char exp[96];
                snprintf(err, errlen, "%s: %s: expected %s", source, spath,
                         expected(info, exp, sizeof exp));
                goto out;
            }
            if (cfg_set(cfg, spath, text, source, err, errlen) != 0)
                goto out;
        }
    }
    rc = 0;
out:
    config_destroy(&lc);
    return rc;
}

/* ---- environment and .env ----------------------------------------------------------------- */

/* The setting named by environment variable `name` (alias or MINICRM_ form), or NULL. */
static const cfg_setting_info *setting_for_env(const char *name)
{
    char buf[128];
    for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++) {
        if (settings[i].alias && strcmp(settings[i].alias, name) == 0)
            return &settings[i];
        if (strcmp(cfg_env_name(&settings[i], buf, sizeof buf), name) == 0)
            return &settings[i];
    }
    return NULL;
}

int cfg_load_environ(minicrm_config *cfg, char *err, size_t errlen)
{
    /* Aliases first, then MINICRM_ names, so the specific MINICRM_ form wins when both are set. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++) {
            char buf[128];
            const char *name =
                pass == 0 ? settings[i].alias : cfg_env_name(&settings[i], buf, sizeof buf);
            const char *v = name ? getenv(name) : NULL;
            if (v && cfg_set(cfg, settings[i].path, v, name, err, errlen) != 0)
                return -1;
        }
    }
    return 0;
}

int cfg_load_dotenv(minicrm_config *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0; /* absent is fine */
    char line[4096];
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strlen(line);
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        char *p = line;
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '\0' || *p == '#')
            continue;
        if (strncmp(p, "export ", 7) == 0)
            p += 7;
        char *eq = strchr(p, '=');
        if (!eq) {
            snprintf(err, errlen, "%s:%d: expected KEY=VALUE", path, lineno);
            rc = -1;
            break;
        }
        *eq = '\0';
        char *key = p, *val = eq + 1;
        for (char *e = eq - 1; e >= key && isspace((unsigned char)*e); e--)
            *e = '\0';
        size_t vl = strlen(val);
        if (vl >= 2 && (val[0] == '"' || val[0] == '\'') && val[vl - 1] == val[0]) {
            val[vl - 1] = '\0';
            val++;
        }
        const cfg_setting_info *s = setting_for_env(key);
        if (!s)
            continue; /* other programs' variables may share the file */
        char source[300];
        snprintf(source, sizeof source, "%s:%d: %s", path, lineno, key);
        if (cfg_set(cfg, s->path, val, source, err, errlen) != 0) {
            rc = -1;
            break;
        }
    }
    fclose(f);
    return rc;
}

int cfg_load(minicrm_config *cfg, const char *config_path, char *const *assignments, size_t nassign,
             char *err, size_t errlen)
{
    const char *path = config_path;
    if (!path || !*path)
        path = getenv("MINICRM_CONFIG");
    if (path && *path) {
        if (cfg_load_file(cfg, path, err, errlen) != 0)
            return -1;
    } else if (access("config/minicrm.cfg", R_OK) == 0) {
        if (cfg_load_file(cfg, "config/minicrm.cfg", err, errlen) != 0)
            return -1;
    }
    if (cfg_load_dotenv(cfg, ".env", err, errlen) != 0)
        return -1;
    if (cfg_load_environ(cfg, err, errlen) != 0)
        return -1;
    for (size_t i = 0; i < nassign; i++) {
        const char *eq = strchr(assignments[i], '=');
        char path_buf[128], source[160];
        if (!eq || (size_t)(eq - assignments[i]) >= sizeof path_buf) {
            snprintf(err, errlen, "--set %.80s: expected section.key=value", assignments[i]);
            return -1;
        }
        snprintf(path_buf, sizeof path_buf, "%.*s", (int)(eq - assignments[i]), assignments[i]);
        snprintf(source, sizeof source, "flag --set %s", path_buf);
        if (cfg_set(cfg, path_buf, eq + 1, source, err, errlen) != 0)
            return -1;
    }
    if (cfg->vendor_sim.min_delay_ms > cfg->vendor_sim.max_delay_ms) {
        snprintf(err, errlen,
                 "vendor_sim.min_delay_ms (%d) must not exceed vendor_sim.max_delay_ms (%d)",
                 cfg->vendor_sim.min_delay_ms, cfg->vendor_sim.max_delay_ms);
        return -1;
    }
    if (cfg->queue.backoff_base_ms > cfg->queue.backoff_max_ms) {
        snprintf(err, errlen, "queue.backoff_base_ms must not exceed queue.backoff_max_ms");
        return -1;
    }
    return 0;
}

/* ---- output ------------------------------------------------------------------------------- */

const char *cfg_value_text(const minicrm_config *cfg, const cfg_setting_info *s, bool show_secrets,
                           char *buf, size_t n)
{
    const void *f = cfield(cfg, s);
    switch (s->type) {
    case CFG_STRING: {
        const char *v = *(char *const *)f;
        if (s->secret && !show_secrets && v && *v)
            snprintf(buf, n, "***");
        else if (!show_secrets)
            redact_url(v, buf, n); /* a password inside MONGO_URI / REDIS_URL */
        else
            snprintf(buf, n, "%s", v ? v : "");
        break;
    }
    case CFG_INT:
        snprintf(buf, n, "%d", *(const int *)f);
        break;
    case CFG_LONG:
        snprintf(buf, n, "%ld", *(const long *)f);
        break;
    case CFG_DOUBLE:
        snprintf(buf, n, "%g", *(const double *)f);
        break;
    case CFG_BOOL:
        snprintf(buf, n, "%s", *(const bool *)f ? "true" : "false");
        break;
    }
    return buf;
}

void cfg_write(const minicrm_config *cfg, bool show_secrets, void *file)
{
    FILE *out = file;
    const char *section = "";
    size_t slen = 0;
    for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++) {
        const cfg_setting_info *s = &settings[i];
        const char *dot = strchr(s->path, '.');
        size_t len = (size_t)(dot - s->path);
        if (len != slen || strncmp(section, s->path, len) != 0) {
            if (*section)
                fprintf(out, "};\n\n");
            fprintf(out, "%.*s = {\n", (int)len, s->path);
            section = s->path;
            slen = len;
        }
        char val[512], env[128];
        cfg_value_text(cfg, s, show_secrets, val, sizeof val);
        cfg_env_name(s, env, sizeof env);
        fprintf(out, "  # %s (env %s%s%s)\n", s->help, s->alias ? s->alias : "",
                s->alias ? " or " : "", env);
        if (s->type == CFG_STRING) {
            fprintf(out, "  %s = \"", dot + 1);
            for (const char *c = val; *c; c++)
                fprintf(out, (*c == '"' || *c == '\\') ? "\\%c" : "%c", *c);
            fprintf(out, "\";\n");
        } else if (s->type == CFG_DOUBLE && !strpbrk(val, ".e")) {
            fprintf(out, "  %s = %s.0;\n", dot + 1, val);
        } else if (s->type == CFG_LONG) {
            fprintf(out, "  %s = %sL;\n", dot + 1, val);
        } else {
            fprintf(out, "  %s = %s;\n", dot + 1, val);
        }
    }
    if (*section)
        fprintf(out, "};\n");
}

bool cfg_addr_is_loopback(const char *addr)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (!addr)
        return false;
    if (!strcmp(addr, "localhost"))
        return true;
    if (inet_pton(AF_INET, addr, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, addr, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return false;
}

int cfg_check_api_exposure(const minicrm_config *cfg, char *err, size_t errlen)
{
    if (cfg_addr_is_loopback(cfg->api.bind) ||
        strcmp(cfg->receipts.vendor_secret, CFG_DEV_VENDOR_SECRET) != 0)
        return 0;
    snprintf(err, errlen,
             "refusing to listen on %s with the built-in development vendor secret: anyone who "
             "can reach the API could forge delivery receipts. Set VENDOR_SECRET (or "
             "receipts.vendor_secret) to a random value, e.g. `openssl rand -hex 32`, in the "
             "API's and the vendor's environment, or bind to 127.0.0.1 (api.bind, "
             "MINICRM_API_BIND)",
             cfg->api.bind);
    return -1;
}

int cfg_apply_logging(const minicrm_config *cfg, char *err, size_t errlen)
{
    log_level level;
    log_format format;
    if (log_parse_level(cfg->log.level, &level) != 0 ||
        log_parse_format(cfg->log.format, &format) != 0) {
        snprintf(err, errlen, "log settings: bad level or format");
        return -1;
    }
    log_set_level(level);
    log_set_format(format);
    return 0;
}
