/*
 * apitest: support for the API integration tests. Starts private Redis + devdb (testenv), makes
 * admin and staff API keys with `minicrm keys create`, starts a real minicrm-api on a free port
 * with the test's settings, and talks HTTP to it with libcurl.
 *
 * Credentials: apitest_admin_auth() / apitest_staff_auth() return the header line to send
 * ("Authorization: Bearer mck_..."), created through the real auth module's CLI.
 *
 * Not thread-safe except apitest_request(), which may be called from several threads at once
 * (each call uses its own curl handle). Responses are owned by the caller (apitest_resp_release).
 */
#ifndef MINICRM_APITEST_H
#define MINICRM_APITEST_H

#include "testenv.h"

#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct apitest {
    testenv env;
    int port;
    pid_t api_pid;
    char base[64];
    char log[300];
    char admin_auth[200];
    char staff_auth[200];
} apitest;

typedef struct apitest_resp {
    long status;
    char *body; /* NUL-terminated */
    size_t len;
    char *headers; /* raw header block, NUL-terminated */
    json_t *json;  /* parsed body, or NULL */
} apitest_resp;

/* Start everything. `extra_env` is a NULL-terminated list of "NAME=value" for the API process
 * (may be NULL). Returns 0 or -1 (message on stderr, everything stopped). */
int apitest_start(apitest *t, const char *const *extra_env);
void apitest_stop(apitest *t);
/* Stop the API with SIGTERM; returns its exit status (or -1). */
int apitest_stop_api(apitest *t);
/* Stop the API with `sig` (SIGKILL: a crash) and start it again on the same port with the same
 * environment; 0 once /readyz answers 200, else -1. */
int apitest_restart_api(apitest *t, int sig);
/* The one lazily started API of a test program: the first call starts `t` with `extra_env`
 * (apitest_start) and arranges apitest_stop at exit; later calls only report. 0 while it runs,
 * -1 if it failed to start (not retried) or `t` is not the instance started first. */
int apitest_ensure(apitest *t, const char *const *extra_env);

const char *apitest_admin_auth(const apitest *t);
const char *apitest_staff_auth(const apitest *t);

/* One request. `headers` is NULL-terminated (may be NULL); body may be NULL; content type is
 * added as application/json when body is set and no Content-Type header is given.
 * Returns 0 (resp filled) or -1 on a transport error. */
int apitest_request(const apitest *t, const char *method, const char *path,
                    const char *const *headers, const char *body, size_t body_len,
                    apitest_resp *resp);
void apitest_resp_release(apitest_resp *r);
/* Value of a response header (case-insensitive) into buf, or NULL. */
const char *apitest_resp_header(const apitest_resp *r, const char *name, char *buf, size_t n);

/* A blocking TCP connection to 127.0.0.1:port (the port of an API apitest started), for tests
 * that write raw HTTP; close-on-exec. The socket (the caller closes it), or -1. */
int apitest_connect(int port);

#endif
