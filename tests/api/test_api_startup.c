/*
 * test_api_startup: minicrm-api's start-up rule for an open port (issue 11, point 10).
 *
 * Bound to a non-loopback address with the built-in development vendor secret, anyone on the
 * network could sign delivery receipts, so the API must refuse to start, say what to set and
 * exit non-zero, before it opens any port. On loopback the development secret is fine, and on
 * any address a real secret is. Real minicrm-api processes against a private redis-server
 * and minicrm-devdb.
 */
#include "config.h"
#include "test.h"
#include "testenv.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static testenv env;

/* Read a whole (small) file; caller frees. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *buf = calloc(1, 65537);
    if (buf)
        buf[fread(buf, 1, 65536, f)] = '\0';
    fclose(f);
    return buf;
}

/* The API's environment: api.bind, VENDOR_SECRET (NULL: the built-in default) and port. */
static void set_api_env(const char *bind, const char *secret, int port)
{
    char portbuf[16];
    snprintf(portbuf, sizeof portbuf, "%d", port);
    setenv("MINICRM_API_BIND", bind, 1);
    setenv("PORT", portbuf, 1);
    if (secret)
        setenv("VENDOR_SECRET", secret, 1);
    else
        unsetenv("VENDOR_SECRET");
}

/* Start minicrm-api with that environment; its output goes to log. */
static pid_t start_api(const char *bind, const char *secret, int port, const char *log)
{
    unlink(log);
    set_api_env(bind, secret, port);
    char *argv[] = {(char *)testenv_bin("minicrm-api"), NULL};
    return testenv_spawn(argv, log);
}

/* Wait for pid to exit on its own within timeout_ms; its exit status, or -1 if it is still
 * running (then it is killed) or died of a signal. */
static int exit_status_within(pid_t pid, int timeout_ms)
{
    int st;
    for (int waited = 0; waited < timeout_ms; waited += 20) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        usleep(20000);
    }
    testenv_kill_wait(pid, SIGKILL, 2000);
    return -1;
}

TEST(open_port_with_dev_secret_is_refused)
{
    const char *binds[] = {"0.0.0.0", "10.1.2.3"};
    for (size_t i = 0; i < sizeof binds / sizeof binds[0]; i++) {
        char log[400];
        snprintf(log, sizeof log, "%s/refused.log", env.dir);
        int port = testenv_free_port();
        pid_t pid = start_api(binds[i], NULL, port, log);
        CHECK(pid > 0);
        int rc = exit_status_within(pid, 10000);
        CHECK_MSG(rc > 0, "minicrm-api bound to %s with the dev secret: exit %d", binds[i], rc);
        char *out = slurp(log);
        CHECK_STR_CONTAINS(out, "refusing to listen on");
        CHECK_STR_CONTAINS(out, binds[i]);
        CHECK_STR_CONTAINS(out, "VENDOR_SECRET");
        CHECK_STR_CONTAINS(out, "receipts.vendor_secret");
        CHECK(strstr(out, CFG_DEV_VENDOR_SECRET) == NULL); /* a secret is never printed */
        free(out);
        CHECK_MSG(testenv_wait_port(port, 200) != 0, "a refused API opened its port");
    }
    /* The same through the command-line flag. */
    char log[400];
    snprintf(log, sizeof log, "%s/refused-flag.log", env.dir);
    set_api_env("127.0.0.1", NULL, testenv_free_port());
    char *argv[] = {(char *)testenv_bin("minicrm-api"), "--bind", "0.0.0.0", NULL};
    pid_t pid = testenv_spawn(argv, log);
    CHECK(pid > 0);
    CHECK(exit_status_within(pid, 10000) > 0);
    char *out = slurp(log);
    CHECK_STR_CONTAINS(out, "refusing to listen on 0.0.0.0");
    free(out);
}

/* Allowed: loopback with the dev secret, and every interface with a real secret. Each must
 * accept connections and stop with exit 0 on SIGTERM. */
TEST(loopback_with_dev_secret_and_open_port_with_real_secret_start)
{
    struct {
        const char *bind, *secret;
    } ok[] = {{"127.0.0.1", NULL}, {"0.0.0.0", "a-real-random-secret-for-this-test"}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char log[400];
        snprintf(log, sizeof log, "%s/allowed-%zu.log", env.dir, i);
        int port = testenv_free_port();
        pid_t pid = start_api(ok[i].bind, ok[i].secret, port, log);
        CHECK(pid > 0);
        int up = testenv_wait_port(port, 15000);
        int st = testenv_kill_wait(pid, SIGTERM, 15000);
        char *out = slurp(log);
        CHECK_MSG(up == 0, "minicrm-api on %s did not listen: %s", ok[i].bind, out ? out : "");
        CHECK_MSG(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d: %s", st,
                  out ? out : "");
        CHECK(!out || strstr(out, "refusing") == NULL);
        free(out);
    }
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        TEST_ENTRY(open_port_with_dev_secret_is_refused),
        TEST_ENTRY(loopback_with_dev_secret_and_open_port_with_real_secret_start),
    };
    if (testenv_start(&env, TESTENV_REDIS | TESTENV_DEVDB) != 0)
        return 1;
    unsetenv("MINICRM_CONFIG");
    unsetenv("MINICRM_RECEIPTS_VENDOR_SECRET");
    setenv("MONGO_URI", env.mongo_uri, 1);
    setenv("REDIS_URL", env.redis_url, 1);
    setenv("MINICRM_REDIS_PREFIX", env.prefix, 1);
    setenv("MINICRM_MONGO_TIMEOUT_MS", "1000", 1);
    int rc = test_run_all(__FILE__, cases, sizeof cases / sizeof cases[0], argc, argv);
    testenv_stop(&env);
    return rc;
}
