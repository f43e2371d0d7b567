/*
 * test_api_fuzz: mutation fuzzing of the API's JSON body handling over real sockets.
 *
 * A real minicrm-api (apitest: private redis-server + devdb, both up for the whole run) gets a
 * few thousand bodies made from valid seed bodies by seeded random mutations, on the routes that
 * parse client JSON: POST /customers, /orders, /api/campaigns, /api/campaigns/preview, and
 * /api/receipts/delivery both unsigned (must stop at the signature: 401) and signed after the
 * mutation (so the parser and the validators are reached).
 *
 * Mutations are of two kinds, half each:
 *   - bytes: flip a bit, insert/delete/duplicate a slice, splice in a dictionary token
 *     (null, -1, 1e400, NaN, "\u0000", invalid UTF-8, deep brackets, huge numbers, ...);
 *   - structure (through jansson, so the body stays JSON): set a random member, or a member of
 *     `rules`, to a random value of a random type, delete a member, wrap the body in an array.
 *
 * Every answer must be 2xx or 4xx, never 5xx (no dependency is down here, so no 503 either);
 * every 4xx must be a JSON object with an "error" string; every 2xx must be JSON. At the end the
 * API must still answer /healthz and its process must still be running.
 *
 * MINICRM_FUZZ_SEED and MINICRM_FUZZ_ITERS override the seed (default fixed, so a failure
 * reproduces) and the number of requests per route.
 */
#include "apitest.h"
#include "hmac.h"
#include "test.h"

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>

#define SECRET   "test-vendor-secret"
#define BODY_MAX 8192

static apitest T;
static uint64_t g_rng;

/* xorshift64*: small, seeded, the same sequence on every machine. */
static uint64_t rnd(void)
{
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * UINT64_C(2685821657736338717);
}

static size_t below(size_t n)
{
    return n ? (size_t)(rnd() % n) : 0;
}

static const char *const TOKENS[] = {"null",
                                     "true",
                                     "-1",
                                     "0",
                                     "-0",
                                     "1e400",
                                     "-1e400",
                                     "NaN",
                                     "Infinity",
                                     "99999999999999999999",
                                     "1.7976931348623157e308",
                                     "\"\"",
                                     "\" \"",
                                     "\"\\u0000\"",
                                     "\"\\ud800\"",
                                     "\xff\xfe",
                                     "\xc3\x28",
                                     "{}",
                                     "[]",
                                     "[[[[[[[[[[[[[[[[",
                                     "}}}}",
                                     "\"x\":",
                                     ",",
                                     ":",
                                     "\"",
                                     "\"6b08469b2a9bb8fcce0b0000\"",
                                     "\"zz\"",
                                     "\"2026-02-30T00:00:00Z\"",
                                     "\"9999-12-31\"",
                                     "\"{{name}}\"",
                                     "\"{{nope}}\"",
                                     "\"{{\"",
                                     "\"SENT\"",
                                     "\"PENDING\"",
                                     "\"sent\"",
                                     "{\"$gt\":\"\"}",
                                     "\"a@b.co\"",
                                     "\"not-an-email\""};
#define NTOKENS (sizeof TOKENS / sizeof TOKENS[0])

/* A random JSON value of a random type (new reference). Depth-bounded. */
static json_t *random_value(int depth)
{
    switch (below(depth > 2 ? 8 : 10)) {
    case 0:
        return json_null();
    case 1:
        return json_boolean(below(2));
    case 2:
        return json_integer((json_int_t)(rnd() >> below(64)) * (below(2) ? 1 : -1));
    case 3: {
        static const double d[] = {0.0, -0.0, -1.5, 1e-300, 3999.99, 4000, 1e12, 1e13, 1e308};
        return json_real(d[below(sizeof d / sizeof d[0])]);
    }
    case 4:
    case 5: {
        static const char *const s[] = {"",
                                        " ",
                                        "x",
                                        "vip",
                                        "Diwali sale",
                                        "SENT",
                                        "FAILED",
                                        "example.com",
                                        "@x.io",
                                        "30",
                                        "4000",
                                        "1e400",
                                        "a@b.co",
                                        "{{email}}",
                                        "2026-01-31T12:00:00Z",
                                        "6b08469b2a9bb8fcce0b0291"};
        return json_string(s[below(sizeof s / sizeof s[0])]);
    }
    case 6: {
        char buf[512];
        size_t n = below(sizeof buf);
        memset(buf, 'a' + (int)below(26), n);
        return json_stringn(buf, n);
    }
    case 7:
        return json_stringn("a\0b", 3);
    case 8: {
        json_t *a = json_array();
        for (size_t i = below(4); i > 0; i--)
            json_array_append_new(a, random_value(depth + 1));
        return a;
    }
    default: {
        json_t *o = json_object();
        static const char *const k[] = {"min_spend",     "max_spend",    "inactive_days",
                                        "recent_signup", "email_domain", "x",
                                        "$where"};
        for (size_t i = below(4); i > 0; i--)
            json_object_set_new(o, k[below(sizeof k / sizeof k[0])], random_value(depth + 1));
        return o;
    }
    }
}

static const char *const KEYS[] = {
    "name",        "email",        "phone",  "total_spend", "last_visit_date",
    "customer_id", "amount",       "status", "date",        "rules",
    "message",     "selectedTags", "log_id", "vendorMsgId", "zzz"};
#define NKEYS (sizeof KEYS / sizeof KEYS[0])

/* Structural mutation of a valid seed: returns a malloc'd JSON text. */
static char *mutate_structure(const char *seed)
{
    json_t *v = json_loads(seed, 0, NULL);
    for (size_t n = 1 + below(3); n > 0 && v; n--) {
        json_t *target = json_is_array(v) ? json_array_get(v, 0) : v;
        if (!json_is_object(target))
            break;
        switch (below(5)) {
        case 0:
        case 1:
            json_object_set_new(target, KEYS[below(NKEYS)], random_value(0));
            break;
        case 2: {
            json_t *rules = json_object_get(target, "rules");
            if (json_is_object(rules))
                json_object_set_new(rules,
                                    KEYS[below(NKEYS)][0] == 'n' ? "min_spend" : "inactive_days",
                                    random_value(1));
            else
                json_object_set_new(target, "rules", random_value(1));
            break;
        }
        case 3:
            json_object_del(target, KEYS[below(NKEYS)]);
            break;
        default:
            if (!json_is_array(v)) {
                json_t *a = json_array();
                json_array_append_new(a, v);
                v = a;
            }
            break;
        }
    }
    char *s = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(v);
    return s ? s : strdup("{}");
}

/* Byte-level mutation into out (BODY_MAX). Returns the length. */
static size_t mutate_bytes(const char *seed, char *out)
{
    size_t n = strlen(seed);
    memcpy(out, seed, n);
    for (size_t k = 1 + below(4); k > 0; k--) {
        size_t at = below(n + 1);
        switch (below(5)) {
        case 0:
            if (n > 0)
                out[below(n)] ^= (char)(1u << below(8));
            break;
        case 1: { /* insert a random byte */
            if (n + 1 >= BODY_MAX)
                break;
            memmove(out + at + 1, out + at, n - at);
            out[at] = (char)below(256);
            n++;
            break;
        }
        case 2: { /* delete a slice */
            size_t len = below(n - at + 1);
            memmove(out + at, out + at + len, n - at - len);
            n -= len;
            break;
        }
        case 3: { /* duplicate a slice */
            size_t len = below(n - at + 1);
            if (n + len >= BODY_MAX)
                break;
            memmove(out + at + len, out + at, n - at);
            n += len;
            break;
        }
        default: { /* splice in a token */
            const char *t = TOKENS[below(NTOKENS)];
            size_t len = strlen(t);
            if (n + len >= BODY_MAX)
                break;
            memmove(out + at + len, out + at, n - at);
            memcpy(out + at, t, len);
            n += len;
            break;
        }
        }
    }
    return n;
}

typedef struct target {
    const char *path;
    const char *const *seeds;
    int sign; /* 0 API key, 1 unsigned receipt, 2 signed receipt */
} target;

/* One request; checks the answer. Returns 0 if acceptable. */
static int fire(const target *tg, const char *body, size_t len, long *status)
{
    char hs[128], ht[64];
    const char *h[3] = {NULL, NULL, NULL};
    if (tg->sign == 0) {
        h[0] = apitest_admin_auth(&T);
    } else if (tg->sign == 2) {
        char sig[HMAC_HEX_LEN + 1], ts[32];
        snprintf(ts, sizeof ts, "%lld", (long long)time(NULL));
        hmac_sign_receipt(SECRET, ts, body, len, sig);
        snprintf(hs, sizeof hs, "X-Signature: %s", sig);
        snprintf(ht, sizeof ht, "X-Timestamp: %s", ts);
        h[0] = hs;
        h[1] = ht;
    }
    apitest_resp r;
    if (apitest_request(&T, "POST", tg->path, h, body, len, &r) != 0)
        return -1;
    *status = r.status;
    int ok = 0;
    if (r.status >= 400 && r.status < 500)
        ok = json_is_object(r.json) && json_is_string(json_object_get(r.json, "error"));
    else if (r.status >= 200 && r.status < 300)
        ok = r.json != NULL;
    if (!ok)
        fprintf(stderr, "  BAD ANSWER %ld on %s: %.300s\n  body (%zu bytes): %.300s\n", r.status,
                tg->path, r.body ? r.body : "", len, body);
    apitest_resp_release(&r);
    return ok ? 0 : -1;
}

TEST(mutated_bodies_never_5xx)
{
    CHECK(apitest_ensure(&T, NULL) == 0);
    const char *es = getenv("MINICRM_FUZZ_SEED"), *ei = getenv("MINICRM_FUZZ_ITERS");
    g_rng = es ? strtoull(es, NULL, 10) : UINT64_C(0x6d696e6963726d);
    if (g_rng == 0)
        g_rng = 1;
    long iters = ei ? strtol(ei, NULL, 10) : 500;
    printf("  seed=%llu iters/route=%ld\n", (unsigned long long)g_rng, iters);

    /* a real customer and log, so that some mutations hit the success paths too */
    apitest_resp r;
    const char *ah[] = {apitest_admin_auth(&T), NULL};
    const char *cb = "{\"name\":\"Fuzz\",\"email\":\"fuzz@f.io\",\"total_spend\":5000}";
    apitest_request(&T, "POST", "/customers", ah, cb, strlen(cb), &r);
    CHECK_INT_EQ(r.status, 201);
    char cid[25];
    snprintf(cid, sizeof cid, "%s",
             json_string_value(json_object_get(json_object_get(r.json, "customer"), "_id")));
    apitest_resp_release(&r);

    char order[160], receipt[160], batch[400];
    snprintf(order, sizeof order,
             "{\"customer_id\":\"%s\",\"amount\":250,\"status\":\"completed\"}", cid);
    snprintf(receipt, sizeof receipt,
             "{\"log_id\":\"%s\",\"vendorMsgId\":\"v-1\",\"status\":\"SENT\"}", cid);
    snprintf(
        batch, sizeof batch,
        "[{\"log_id\":\"%s\",\"status\":\"FAILED\"},{\"log_id\":\"%s\",\"status\":\"PENDING\"}]",
        cid, cid);
    const char *customers[] = {
        "{\"name\":\"Asha\",\"email\":\"asha@example.com\",\"phone\":\"+91 98\","
        "\"total_spend\":5200,\"last_visit_date\":\"2026-01-31T12:00:00Z\"}",
        "{\"name\":\"B\",\"email\":\"b@x.io\"}", NULL};
    const char *orders[] = {order, "{\"customer_id\":\"6b08469b2a9bb8fcce0b0000\",\"amount\":1}",
                            NULL};
    const char *campaigns[] = {
        "{\"name\":\"VIP Diwali win-back\",\"rules\":{\"min_spend\":4000,\"inactive_days\":30},"
        "\"selectedTags\":[\"Q3\"],\"message\":\"Hi {{name}}\"}",
        "{\"name\":\"all\",\"rules\":{\"email_domain\":\"x.io\",\"max_spend\":\"100\","
        "\"recent_signup\":7}}",
        NULL};
    const char *receipts[] = {receipt, batch, NULL};
    const target targets[] = {
        {"/customers", customers, 0},
        {"/orders", orders, 0},
        {"/api/campaigns", campaigns, 0},
        {"/api/campaigns/preview", campaigns, 0},
        {"/api/receipts/delivery", receipts, 1},
        {"/api/receipts/delivery", receipts, 2},
    };

    char *buf = malloc(BODY_MAX);
    CHECK(buf != NULL);
    int bad = 0;
    long n2xx = 0, n4xx = 0;
    for (long i = 0; i < iters && bad < 5; i++) {
        for (size_t t = 0; t < sizeof targets / sizeof targets[0]; t++) {
            const target *tg = &targets[t];
            size_t ns = 0;
            while (tg->seeds[ns])
                ns++;
            const char *seed = tg->seeds[below(ns)];
            long st = 0;
            int rc;
            if (below(2)) {
                char *s = mutate_structure(seed);
                rc = fire(tg, s, strlen(s), &st);
                free(s);
            } else {
                size_t len = mutate_bytes(seed, buf);
                rc = fire(tg, buf, len, &st);
            }
            bad += rc != 0;
            n2xx += st >= 200 && st < 300;
            n4xx += st >= 400 && st < 500;
        }
    }
    free(buf);
    printf("  %ld requests: %ld 2xx, %ld 4xx, %d bad\n", iters * 6, n2xx, n4xx, bad);
    CHECK_INT_EQ(bad, 0);
    CHECK(n2xx > 0); /* the mutations also reach the success paths */

    /* still alive and answering */
    CHECK(apitest_request(&T, "GET", "/healthz", NULL, NULL, 0, &r) == 0);
    CHECK_INT_EQ(r.status, 200);
    apitest_resp_release(&r);
    CHECK(waitpid(T.api_pid, NULL, WNOHANG) == 0);
}

/* True if a line of the file at path contains needle (the reports are one-line headers). */
static bool file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char *line = NULL;
    size_t cap = 0;
    bool found = false;
    while (!found && getline(&line, &cap, f) > 0)
        found = strstr(line, needle) != NULL;
    free(line);
    fclose(f);
    return found;
}

/* After the storm the API stops cleanly on SIGTERM (exit 0) and, in the sanitizer build, its log
 * holds no AddressSanitizer/LeakSanitizer/UBSan report (apitest_stop ignores both). */
TEST(api_exits_clean)
{
    CHECK(apitest_ensure(&T, NULL) == 0);
    int st = apitest_stop_api(&T);
    CHECK(st >= 0 && WIFEXITED(st));
    CHECK_INT_EQ(WEXITSTATUS(st), 0);
    CHECK(!file_contains(T.log, "Sanitizer"));
    CHECK(!file_contains(T.log, "runtime error:"));
}

TEST_MAIN(TEST_ENTRY(mutated_bodies_never_5xx), TEST_ENTRY(api_exits_clean))
