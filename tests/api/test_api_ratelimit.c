/* api.rate_limit_per_min: a client over the limit gets 429 with Retry-After; health and
 * readiness are never limited. Runs its own API with a limit of 20 per minute. */
#include "apitest.h"
#include "test.h"
#include "timeutil.h"

#include <poll.h>

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

int main(int argc, char **argv)
{
    static const test_case cases[] = {TEST_ENTRY(limit_per_client)};
    const char *env[] = {"MINICRM_API_RATE_LIMIT_PER_MIN=20", NULL};
    if (apitest_start(&T, env) != 0)
        return 1;
    int rc = test_run_all(__FILE__, cases, 1, argc, argv);
    apitest_stop(&T);
    return rc;
}
