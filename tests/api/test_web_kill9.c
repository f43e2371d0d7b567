/*
 * test_web_kill9: what the dashboard's server side keeps when minicrm-api is killed -9 (issue
 * 16; the preamble's kill -9 rule for what is added). Nothing of it lives only in the API's
 * memory: sessions are in Redis (under SESSION_SECRET), the event stream's figures are read
 * again from Redis and MongoDB, the static files from disk. So a crash may cut streams, never
 * sign anyone out or leave a stream that never recovers.
 *
 *   session_and_stream_survive_kill9   a session opened with a key (POST /auth/key) and an open
 *                                      event stream; kill -9 and restart: the stream ends (the
 *                                      browser's EventSource reconnects), the cookie still signs
 *                                      in, a new stream gets an event at once, / is served;
 *                                      revoking the key afterwards still ends the session
 */
#include "apitest.h"
#include "test.h"
#include "timeutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static apitest T;

/* An event stream over HTTP/1.0 (no chunking): the socket, or -1. */
static int stream_open(const char *cookie)
{
    int fd = apitest_connect(T.port);
    if (fd < 0)
        return -1;
    char req[512];
    int n = snprintf(req, sizeof req, "GET /api/events HTTP/1.0\r\nHost: 127.0.0.1\r\n%s\r\n\r\n",
                     cookie);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Read the stream for up to ms: 1 when an event arrived, 0 when the server closed it first,
 * -1 on timeout. */
static int stream_wait(int fd, int ms, bool want_event)
{
    static char buf[262144];
    size_t len = 0;
    int64_t deadline = time_mono_ms() + ms;
    while (time_mono_ms() < deadline) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t k = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (k <= 0)
            return 0;
        len += (size_t)k;
        buf[len] = '\0';
        if (want_event && strstr(buf, "event: tick\ndata: {"))
            return 1;
        if (len + 1 >= sizeof buf)
            len = 0;
    }
    return -1;
}

static long get(const char *path, const char *h1)
{
    const char *h[] = {h1, NULL};
    apitest_resp r;
    if (apitest_request(&T, "GET", path, h1 ? h : NULL, NULL, 0, &r) != 0)
        return -1;
    long st = r.status;
    apitest_resp_release(&r);
    return st;
}

TEST(session_and_stream_survive_kill9)
{
    static const char *const env[] = {
        "SESSION_SECRET=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "MINICRM_AUTH_KEY_CACHE_TTL_S=2", NULL};
    CHECK(apitest_ensure(&T, env) == 0);
    /* A key of its own, revoked at the end. */
    const char *ah[] = {apitest_admin_auth(&T), NULL};
    const char *kb = "{\"role\":\"staff\",\"name\":\"kill9\"}";
    apitest_resp r;
    CHECK(apitest_request(&T, "POST", "/api/keys", ah, kb, strlen(kb), &r) == 0);
    char key[80] = "", kid[32] = "";
    snprintf(key, sizeof key, "%s", json_string_value(json_object_get(r.json, "key")));
    snprintf(kid, sizeof kid, "%s",
             json_string_value(json_object_get(json_object_get(r.json, "api_key"), "id")));
    apitest_resp_release(&r);
    CHECK(key[0] != '\0');
    char body[200], sc[512] = "", cookie[200];
    snprintf(body, sizeof body, "{\"key\":\"%s\"}", key);
    CHECK(apitest_request(&T, "POST", "/auth/key", NULL, body, strlen(body), &r) == 0);
    apitest_resp_header(&r, "Set-Cookie", sc, sizeof sc);
    long st = r.status;
    apitest_resp_release(&r);
    CHECK_INT_EQ(st, 200);
    snprintf(cookie, sizeof cookie, "Cookie: %.*s", (int)strcspn(sc, ";"), sc);

    int fd = stream_open(cookie);
    CHECK(fd >= 0);
    CHECK_INT_EQ(stream_wait(fd, 3000, true), 1);

    CHECK_INT_EQ(apitest_restart_api(&T, SIGKILL), 0);
    int ended = stream_wait(fd, 3000, false);
    close(fd);
    CHECK_MSG(ended == 0, "the old stream did not end with the killed API (%d)", ended);

    CHECK_INT_EQ(get("/auth/me", cookie), 200);
    fd = stream_open(cookie);
    CHECK(fd >= 0);
    int got = stream_wait(fd, 3000, true);
    close(fd);
    CHECK_MSG(got == 1, "no event on a new stream after the restart (%d)", got);
    CHECK_INT_EQ(get("/", NULL), 200);

    /* The restarted API still ends the session with its key. */
    char path[64];
    snprintf(path, sizeof path, "/api/keys/%s", kid);
    CHECK(apitest_request(&T, "DELETE", path, ah, NULL, 0, &r) == 0);
    st = r.status;
    apitest_resp_release(&r);
    CHECK_INT_EQ(st, 200);
    CHECK_INT_EQ(get("/auth/me", cookie), 401);
}

TEST_MAIN(TEST_ENTRY(session_and_stream_survive_kill9))
