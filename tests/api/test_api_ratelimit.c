/* api.rate_limit_per_min: a client over the limit gets 429 with Retry-After; health and
 * readiness are never limited. receipts.rate_limit_per_min: the receipts route has a limit of
 * its own, apart from the user-facing one. Runs its own API with limits of 20 and 5 per minute. */
#include "apitest.h"
#include "hmac.h"
#include "test.h"
#include "timeutil.h"

#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static apitest T;

TEST(limit_per_client)
{
    /* The window is the clock minute: start well inside one so the whole burst shares it. */
    while (time_now_ms() % 60000 > 50000)
        poll(NULL, 0, 100);
    const char *h[] = {apitest_staff_auth(&T), NULL};
    apitest_resp r;
    for (int i = 0; i < 20; i++) {
        CHECK(apitest_request(&T, "GET", "/customers?limit=1", h, NULL, 0, &r) == 0);
        CHECK_MSG(r.status == 200, "request %d: status %ld", i + 1, r.status);
        apitest_resp_release(&r);
    }
    CHECK(apitest_request(&T, "GET", "/customers?limit=1", h, NULL, 0, &r) == 0);
    CHECK_INT_EQ(r.status, 429);
    char buf[32];
    const char *ra = apitest_resp_header(&r, "Retry-After", buf, sizeof buf);
    CHECK(ra != NULL && atoi(ra) >= 1 && atoi(ra) <= 60);
    CHECK_STR_CONTAINS(json_string_value(json_object_get(r.json, "error")), "rate limit");
    apitest_resp_release(&r);
    /* Also refused without credentials: the limit comes before authentication. */
    CHECK(apitest_request(&T, "GET", "/customers", NULL, NULL, 0, &r) == 0);
    CHECK_INT_EQ(r.status, 429);
    apitest_resp_release(&r);
    for (int i = 0; i < 5; i++) {
        CHECK(apitest_request(&T, "GET", "/healthz", NULL, NULL, 0, &r) == 0);
        CHECK_INT_EQ(r.status, 200);
        apitest_resp_release(&r);
        CHECK(apitest_request(&T, "GET", "/readyz", NULL, NULL, 0, &r) == 0);
        CHECK_INT_EQ(r.status, 200);
        apitest_resp_release(&r);
    }
}

TEST(receipts_route_has_its_own_limit)
{
    while (time_now_ms() % 60000 > 50000)
        poll(NULL, 0, 100);
    apitest_resp r;
    long seen429 = 0, before = 0;
    char buf[32];
    /* Distinct signed bodies (an unknown log: 404 once past the limit checks), so no replay
     * answer hides the limit. Five pass the receipts limit, the sixth is refused. */
    for (int i = 0; i < 6; i++) {
        char body[160], sig[HMAC_HEX_LEN + 1], ts[32], hs[128], ht[64];
        snprintf(body, sizeof body,
                 "{\"log_id\":\"%024x\",\"vendorMsgId\":\"v%d\",\"status\":\"SENT\"}", 0xabc000 + i,
                 i);
        snprintf(ts, sizeof ts, "%lld", (long long)time(NULL));
        hmac_sign_receipt("test-vendor-secret", ts, body, strlen(body), sig);
        snprintf(hs, sizeof hs, "X-Signature: %s", sig);
        snprintf(ht, sizeof ht, "X-Timestamp: %s", ts);
        const char *h[] = {hs, ht, NULL};
        CHECK(apitest_request(&T, "POST", "/api/receipts/delivery", h, body, strlen(body), &r) ==
              0);
        if (r.status == 429) {
            seen429++;
            CHECK(apitest_resp_header(&r, "Retry-After", buf, sizeof buf) != NULL);
            CHECK_STR_CONTAINS(json_string_value(json_object_get(r.json, "error")), "receipt");
        } else {
            before++;
            CHECK_MSG(r.status == 404, "receipt %d: status %ld", i + 1, r.status);
        }
        apitest_resp_release(&r);
    }
    CHECK_INT_EQ(before, 5);
    CHECK_INT_EQ(seen429, 1);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {TEST_ENTRY(limit_per_client),
                                      TEST_ENTRY(receipts_route_has_its_own_limit)};
    const char *env[] = {"MINICRM_API_RATE_LIMIT_PER_MIN=20",
                         "MINICRM_RECEIPTS_RATE_LIMIT_PER_MIN=5", NULL};
    if (apitest_start(&T, env) != 0)
        return 1;
    int rc = test_run_all(__FILE__, cases, 2, argc, argv);
    apitest_stop(&T);
    return rc;
}
