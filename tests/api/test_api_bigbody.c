/*
 * Bodies over api.max_body_bytes (1 MiB here) get their 413 with the JSON error even when the
 * client writes the whole body before it reads anything, as simple HTTP clients do (Python's
 * urllib, most scripts). curl is no use for this: it reads while it sends and stops early.
 *
 * The client here is a raw socket: request headers, then every byte of the body with blocking
 * writes (a failed write is a failure of the test: the server closed on it), then the answer.
 * Cases: Content-Length bodies of 2, 8 and 32 MiB several times in a row, a chunked body, an
 * `Expect: 100-continue` request (refused before any body is sent, as before), and a declared
 * length beyond the discard bound (refused at once, nothing read), and a chunked body beyond
 * it (the server stops reading and closes).
 */
#include "apitest.h"
#include "test.h"
#include "timeutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define CAP     (1024 * 1024)
#define MIB     ((size_t)1024 * 1024)
#define CHUNK   (64 * 1024)
#define TIMEOUT 30 /* seconds, per socket read or write */

static apitest T;

/* What one raw exchange gave. */
typedef struct raw_reply {
    int status;     /* of the first status line, 0 if none */
    json_t *json;   /* parsed body, or NULL */
    char why[200];  /* transport failure, "" if none */
    size_t sent;    /* body bytes written */
    int64_t dur_ms; /* from connect to the end of the answer */
} raw_reply;

static int connect_api(void)
{
    int fd = apitest_connect(T.port);
    if (fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = TIMEOUT};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Read the answer until the server closes or Content-Length bytes of body are in. */
static void read_reply(int fd, raw_reply *r)
{
    size_t cap = 64 * 1024, len = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        snprintf(r->why, sizeof r->why, "out of memory");
        return;
    }
    const char *body = NULL;
    long clen = -1;
    for (;;) {
        if (len == cap) {
            snprintf(r->why, sizeof r->why, "answer over %zu bytes", cap);
            break;
        }
        ssize_t k = recv(fd, buf + len, cap - len, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            snprintf(r->why, sizeof r->why, "read: %s", strerror(errno));
            break;
        }
        if (k == 0)
            break;
        len += (size_t)k;
        buf[len] = '\0';
        if (!body && (body = strstr(buf, "\r\n\r\n")) != NULL) {
            body += 4;
            for (const char *h = strstr(buf, "\r\n"); h && h < body; h = strstr(h + 2, "\r\n"))
                if (strncasecmp(h + 2, "Content-Length:", 15) == 0)
                    clen = strtol(h + 17, NULL, 10);
        }
        if (body && clen >= 0 && (size_t)(buf + len - body) >= (size_t)clen)
            break;
    }
    buf[len] = '\0';
    if (strncmp(buf, "HTTP/1.", 7) == 0 && len > 12)
        r->status = (int)strtol(buf + 9, NULL, 10);
    if (body)
        r->json = json_loadb(body, clen >= 0 ? (size_t)clen : (size_t)(buf + len - body), 0, NULL);
    free(buf);
}

/* POST /customers with a body of `total` bytes: the headers, then the whole body, then read.
 * `chunked` sends it with Transfer-Encoding: chunked instead of a Content-Length; `expect`
 * adds `Expect: 100-continue` and sends no body at all (reads right after the headers). */
static void raw_post(size_t declared, size_t total, bool chunked, bool expect, raw_reply *r)
{
    memset(r, 0, sizeof *r);
    int64_t t0 = time_mono_ms();
    int fd = connect_api();
    if (fd < 0) {
        snprintf(r->why, sizeof r->why, "connect: %s", strerror(errno));
        return;
    }
    char head[1024], len_line[64];
    if (chunked)
        snprintf(len_line, sizeof len_line, "Transfer-Encoding: chunked");
    else
        snprintf(len_line, sizeof len_line, "Content-Length: %zu", declared);
    int hn = snprintf(head, sizeof head,
                      "POST /customers HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s\r\n"
                      "Content-Type: application/json\r\n%s\r\n%sConnection: close\r\n\r\n",
                      T.port, apitest_admin_auth(&T), len_line,
                      expect ? "Expect: 100-continue\r\n" : "");
    static char chunk[CHUNK];
    memset(chunk, ' ', sizeof chunk);
    if (send_all(fd, head, (size_t)hn) != 0) {
        snprintf(r->why, sizeof r->why, "write headers: %s", strerror(errno));
        goto out;
    }
    while (!expect && r->sent < total) {
        size_t n = total - r->sent < CHUNK ? total - r->sent : CHUNK;
        char frame[32];
        int fn = snprintf(frame, sizeof frame, "%zx\r\n", n);
        if ((chunked && send_all(fd, frame, (size_t)fn) != 0) || send_all(fd, chunk, n) != 0 ||
            (chunked && send_all(fd, "\r\n", 2) != 0)) {
            snprintf(r->why, sizeof r->why, "write body after %zu of %zu bytes: %s", r->sent, total,
                     strerror(errno));
            goto out;
        }
        r->sent += n;
    }
    if (chunked && !expect && send_all(fd, "0\r\n\r\n", 5) != 0) {
        snprintf(r->why, sizeof r->why, "write last chunk: %s", strerror(errno));
        goto out;
    }
    read_reply(fd, r);
out:
    close(fd);
    r->dur_ms = time_mono_ms() - t0;
}

/* The answer is the 413 with {"error": "request body exceeds ..."}. */
#define CHECK_413(r)                                                                               \
    do {                                                                                           \
        CHECK_MSG((r).why[0] == '\0', "transport: %s", (r).why);                                   \
        CHECK_INT_EQ((r).status, 413);                                                             \
        CHECK((r).json != NULL);                                                                   \
        CHECK_STR_CONTAINS(json_string_value(json_object_get((r).json, "error")),                  \
                           "request body exceeds 1048576 bytes");                                  \
    } while (0)

TEST(whole_body_then_read_gets_413)
{
    static const size_t sizes[] = {2 * MIB, 8 * MIB, 32 * MIB};
    static const int times[] = {10, 5, 2};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int64_t worst = 0;
        for (int i = 0; i < times[s]; i++) {
            raw_reply r;
            raw_post(sizes[s], sizes[s], false, false, &r);
            CHECK_MSG(r.why[0] == '\0', "%zu MiB, try %d: %s", sizes[s] / MIB, i + 1, r.why);
            CHECK_413(r);
            CHECK_INT_EQ(r.sent, sizes[s]);
            json_decref(r.json);
            if (r.dur_ms > worst)
                worst = r.dur_ms;
        }
        fprintf(stderr, "  %zu MiB body x%d: 413 every time, slowest %lld ms\n", sizes[s] / MIB,
                times[s], (long long)worst);
    }
}

TEST(chunked_body_gets_413)
{
    for (int i = 0; i < 3; i++) {
        raw_reply r;
        raw_post(0, 4 * MIB, true, false, &r);
        CHECK_413(r);
        CHECK_INT_EQ(r.sent, 4 * MIB);
        json_decref(r.json);
    }
}

TEST(expect_continue_is_refused_before_the_body)
{
    /* A client that asks first gets the 413 instead of "100 Continue" and sends nothing. */
    raw_reply r;
    raw_post(2 * MIB, 2 * MIB, false, true, &r);
    CHECK_413(r);
    CHECK_INT_EQ(r.sent, 0);
    json_decref(r.json);
}

TEST(length_beyond_the_discard_bound_is_refused_at_once)
{
    /* 1 GiB declared: more than the server reads to throw away (64 MiB past the cap), so it
     * answers without reading; a client that reads before sending sees the 413. */
    raw_reply r;
    raw_post(1024 * MIB, 1024 * MIB, false, true, &r);
    CHECK_413(r);
    json_decref(r.json);
}

TEST(discard_is_bounded)
{
    /* Past 64 MiB over the cap the server stops reading and closes: the writer fails. */
    raw_reply r;
    raw_post(0, 96 * MIB, true, false, &r);
    CHECK_MSG(r.why[0] != '\0' && r.sent < 96 * MIB, "sent %zu bytes, status %d", r.sent, r.status);
    CHECK(r.sent >= 64 * MIB);
    json_decref(r.json);
}

TEST(api_still_serves)
{
    apitest_resp r;
    CHECK(apitest_request(&T, "GET", "/healthz", NULL, NULL, 0, &r) == 0);
    CHECK_INT_EQ(r.status, 200);
    apitest_resp_release(&r);
    /* A body at the cap is still read whole and handled (here: 400, not a customer). */
    size_t n = CAP;
    char *big = malloc(n + 1);
    CHECK(big != NULL);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    big[n] = '\0';
    const char *h[] = {apitest_admin_auth(&T), NULL};
    int rc = apitest_request(&T, "POST", "/customers", h, big, n, &r);
    free(big);
    CHECK(rc == 0);
    CHECK_INT_EQ(r.status, 400);
    apitest_resp_release(&r);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        TEST_ENTRY(whole_body_then_read_gets_413),
        TEST_ENTRY(chunked_body_gets_413),
        TEST_ENTRY(expect_continue_is_refused_before_the_body),
        TEST_ENTRY(length_beyond_the_discard_bound_is_refused_at_once),
        TEST_ENTRY(discard_is_bounded),
        TEST_ENTRY(api_still_serves),
    };
    const char *env[] = {"MINICRM_API_MAX_BODY_BYTES=1048576", NULL};
    if (apitest_start(&T, env) != 0)
        return 1;
    int rc = test_run_all(__FILE__, cases, sizeof cases / sizeof cases[0], argc, argv);
    apitest_stop(&T);
    return rc;
}
