/*
 * config: the one configuration loader of every minicrm program (symbol prefix cfg_, since
 * libconfig itself owns config_).
 *
 * Layers, later winning:
 *   1. built-in defaults (the table in config.c, mirrored by config/minicrm.cfg),
 *   2. the libconfig file: --config PATH, else $MINICRM_CONFIG, else ./config/minicrm.cfg if it
 *      exists (no file at all is fine: defaults apply),
 *   3. a `.env` file in the working directory (KEY=VALUE lines), if present,
 *   4. real environment variables,
 *   5. command-line flags, each turned into a "section.key=value" assignment.
 *
 * Every setting `section.key` can be set from the environment as MINICRM_SECTION_KEY (upper
 * case); some also have the original Mini CRM's names (MONGO_URI, PORT, VENDOR_SECRET, ...).
 * A bad value fails with `file:line: section.key: expected ...` or `VARNAME: expected ...`;
 * values of secret settings are never echoed, and the password inside a URL (MONGO_URI,
 * REDIS_URL) is masked wherever a value is shown (lib/redact).
 *
 * Ownership: strings in minicrm_config are owned by it and freed by cfg_release(). The
 * struct is filled once at start-up and then only read, so it may be shared by threads.
 */
#ifndef MINICRM_CONFIG_H
#define MINICRM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

typedef struct minicrm_config {
    struct {
        char *uri;            /* MONGO_URI */
        int pool_max;         /* clients per process pool */
        int timeout_ms;       /* server selection / socket timeout */
        int max_time_ms;      /* maxTimeMS of the API's reads */
        int index_timeout_ms; /* socket timeout of the start-up index builder */
        char *write_concern;  /* auto | journal | majority | acknowledged (dbpool_durable_wc) */
    } mongo;
    struct {
        char *url;      /* REDIS_URL: redis://[:pass@]host:port/db */
        char *prefix;   /* key prefix of every minicrm key */
        int timeout_ms; /* connect and command timeout */
    } redis;
    struct {
        char *bind;
        int port; /* PORT */
        int threads;
        long max_body_bytes;
        int max_page_size;
        long max_skip; /* deepest ?page= skip of a list (400 past it) */
        int request_timeout_s;
        char *frontend_url; /* FRONTEND_URL */
        int idempotency_ttl_s;
        int rate_limit_per_min;
        int max_conns;        /* global connection cap */
        int max_conns_per_ip; /* per client address */
        char *access_log;     /* "auto" | "on" | "off": per-request log lines */
        /* The dashboard: its files (empty: found next to the programs) and the most
         * concurrent GET /api/events streams. */
        char *web_root;
        int events_max_streams;

        char *public_url;         /* base of unsubscribe links (lib/unsub); "" = from bind/port */
        char *unsubscribe_secret; /* key of unsubscribe tokens (secret); "" = derived */
    } api;
    struct {
        char *google_client_id;     /* GOOGLE_CLIENT_ID */
        char *google_client_secret; /* GOOGLE_CLIENT_SECRET (secret) */
        char *google_callback_url;  /* GOOGLE_CALLBACK_URL */
        char *google_auth_url;      /* GOOGLE_AUTH_URL */
        char *google_token_url;     /* GOOGLE_TOKEN_URL */
        char *google_userinfo_url;  /* GOOGLE_USERINFO_URL */
        char *session_secret;       /* SESSION_SECRET (secret) */
        int session_ttl_s;
        bool cookie_secure;
        char *cookie_samesite;
        char *admin_emails;    /* comma-separated */
        char *allowed_domains; /* comma-separated: who may log in with Google */
        char *allowed_emails;  /* comma-separated */
        int login_rate_per_min;
        int state_ttl_s;
        int key_cache_ttl_s;
        int http_timeout_ms;
    } auth;
    struct {
        char *vendor_secret; /* VENDOR_SECRET (secret) */
        bool require_timestamp;
        int rate_limit_per_min;
        int max_skew_s;
        int max_batch;
        int batch_size;       /* receipts worker claim batch */
        int consumers;        /* consumer threads per minicrm-receipts process */
        int vendor_timeout_s; /* sweeper: PENDING older than this is re-sent */
        int max_resends;
        int sweep_interval_s;
        int recover_after_s; /* recount any counter token after this age (dead owner: sooner) */
    } receipts;
    struct {
        char *api_key; /* OPENAI_API_KEY (secret) */
        char *model;
        char *base_url;          /* OpenAI-compatible root, ".../v1" */
        int timeout_ms;          /* total timeout of one call */
        int max_attempts;        /* calls per AI job before it fails */
        long max_tokens_per_day; /* 0 = no limit */
        int cache_ttl_s;         /* suggest-tags answers kept this long */
    } openai;
    struct {
        int procs;
        int batch_size;
        int shutdown_timeout_s;
    } workers;
    struct {
        int schedule_expiry_s; /* a scheduled campaign this late is cancelled, not started */
        int rescue_after_s;    /* fanout_rescue_stalled: age of a campaign without a job */
    } campaigns;
    struct {
        int max_attempts;
        int backoff_base_ms;
        int backoff_max_ms;
        int heartbeat_ttl_s;
        int reap_interval_ms;
        int shards; /* lists per sharded queue (queue_is_sharded), 1 = unsharded */
    } queue;
    struct {
        double rate_per_s; /* sends handed to the vendor per second, all hosts (0 = no limit) */
    } vendor;
    struct {
        double success_rate;
        double bounce_rate, complaint_rate, open_rate, click_rate; /* receipt events */
        int min_delay_ms;
        int max_delay_ms;
        long seed; /* 0 = seed from the clock */
        int batch_size;
        int max_inflight;
        char *api_base_url; /* API_BASE_URL */
        int post_batch;
        int post_timeout_ms;
        char *name;                  /* instance name (keys and consumer id) */
        double fake_429_above_per_s; /* answer 429 above this rate (0 = never) */

        double unsubscribe_rate; /* share who unsubscribe (vendor-sim/unsubscriber.c) */
    } vendor_sim;
    struct {
        char *retry_schedule; /* delays between attempts, seconds, comma-separated */
        int timeout_ms;       /* total timeout of one delivery attempt */
        int max_inflight;     /* deliveries in flight at once in one minicrm-webhooks */
        int cache_ttl_ms;     /* how long the endpoint list is cached */
    } webhooks;
    struct {
        char *level;
        char *format;
    } log;
    struct {
        char *bind;
        int port;
        char *dbpath; /* empty: in memory */
        char *sync;
        int max_conns;
        int compact_multiple; /* compact the journal when it exceeds this x live data */
        int compact_min_kb;   /* ... and is larger than this */
    } devdb;
} minicrm_config;

/* The built-in receipts.vendor_secret: public, for development on this machine only. */
#define CFG_DEV_VENDOR_SECRET "dev-vendor-secret"

typedef enum { CFG_STRING, CFG_INT, CFG_LONG, CFG_DOUBLE, CFG_BOOL } cfg_type;

/* One row of the settings table (read-only, static storage). */
typedef struct cfg_setting_info {
    const char *path; /* "section.key" */
    cfg_type type;
    size_t offset;     /* into minicrm_config */
    const char *def;   /* default, as text */
    const char *alias; /* original env name (MONGO_URI...), or NULL */
    bool secret;
    double min, max;     /* numeric bounds (inclusive); for strings, min 1 = must be non-empty */
    const char *choices; /* "a|b|c" for enumerated strings, or NULL */
    const char *help;    /* one line */
} cfg_setting_info;

/* The settings table and its length. */
const cfg_setting_info *cfg_settings(size_t *n);
/* The environment variable of a setting: MINICRM_SECTION_KEY. Writes into buf, returns it. */
const char *cfg_env_name(const cfg_setting_info *s, char *buf, size_t n);

/* Fill cfg with the defaults. Returns 0 (or -1 only on out-of-memory). */
int cfg_init(minicrm_config *cfg);
void cfg_release(minicrm_config *cfg);

/* Apply one value from `source` (used in messages: a file:line, a variable name, a flag).
 * Returns 0, or -1 with a message in err. */
int cfg_set(minicrm_config *cfg, const char *path, const char *value, const char *source, char *err,
            size_t errlen);

/* Layers 2-5 above. `config_path` may be NULL (search as described); `assignments` are
 * "section.key=value" strings from flags. Returns 0, or -1 with the message in err. */
int cfg_load(minicrm_config *cfg, const char *config_path, char *const *assignments, size_t nassign,
             char *err, size_t errlen);

/* Individual layers, for tests and tools. */
int cfg_load_file(minicrm_config *cfg, const char *path, char *err, size_t errlen);
int cfg_load_dotenv(minicrm_config *cfg, const char *path, char *err, size_t errlen);
int cfg_load_environ(minicrm_config *cfg, char *err, size_t errlen);

/* Write the whole configuration as a libconfig file (secrets masked unless show_secrets). */
void cfg_write(const minicrm_config *cfg, bool show_secrets, void *FILE_ptr);

/* The setting's current value as text into buf (unless show_secrets: secrets as "***" if set,
 * and the userinfo password of a URL value as "***"). */
const char *cfg_value_text(const minicrm_config *cfg, const cfg_setting_info *s, bool show_secrets,
                           char *buf, size_t n);

/* True if addr (an api.bind value) is a loopback address: 127.0.0.0/8, ::1 or "localhost". */
bool cfg_addr_is_loopback(const char *addr);
/* The start-up rule of minicrm-api: listening on a non-loopback address with the built-in
 * development vendor secret is refused (anyone on the network could sign receipts). Returns 0
 * if the configuration is acceptable, else -1 with a message naming what to set. */
int cfg_check_api_exposure(const minicrm_config *cfg, char *err, size_t errlen);

/* Apply the log.* settings to the log module; -1 with err on a bad value. */
int cfg_apply_logging(const minicrm_config *cfg, char *err, size_t errlen);

#endif
