/*
 * testenv: private services for integration tests.
 *
 * testenv_start() makes a temporary directory and starts what the test asks for on free
 * ephemeral ports inside it: a real `redis-server` and `minicrm-devdb` (from the build's bin
 * directory). testenv_stop() stops them and removes the directory, so tests never touch a
 * developer's running services and can run in parallel.
 *
 * If MINICRM_TEST_REDIS_URL / MINICRM_TEST_MONGO_URI are set, no server is started for that
 * service; the test uses the given instance with a private key prefix / database name
 * (unique per process and env), so the same tests check the product against real MongoDB.
 *
 * Not thread-safe; one env per test process is the normal use.
 */
#ifndef MINICRM_TESTENV_H
#define MINICRM_TESTENV_H

#include <stdbool.h>
#include <sys/types.h>

enum { TESTENV_REDIS = 1, TESTENV_DEVDB = 2 };

typedef struct testenv {
    char dir[256];       /* temporary directory, removed by testenv_stop */
    char redis_url[256]; /* redis://127.0.0.1:PORT/0 (or the external one) */
    char mongo_uri[512]; /* mongodb://127.0.0.1:PORT/DB (or the external one, own DB) */
    char db_name[64];    /* database name inside mongo_uri */
    char prefix[64];     /* Redis key prefix private to this env, ends with ':' */
    int redis_port;      /* 0 when external */
    int devdb_port;      /* 0 when external */
    pid_t redis_pid;
    pid_t devdb_pid;
} testenv;

/* Start the services named in `what` (TESTENV_REDIS | TESTENV_DEVDB). Returns 0, or -1 with a
 * message on stderr (and everything started so far stopped). */
int testenv_start(testenv *env, int what);
/* Stop the services (SIGTERM, then SIGKILL after 5 s) and remove the directory. NULL-safe. */
void testenv_stop(testenv *env);

/* Restart devdb on the same port and data (the test killed or stopped it). */
int testenv_restart_devdb(testenv *env);

/* Absolute path of a built program, e.g. testenv_bin("minicrm-api"). Static storage. */
const char *testenv_bin(const char *name);
/* A port that was free a moment ago (bind to 0, read it back, close). */
int testenv_free_port(void);
/* Poll until something accepts TCP connections on 127.0.0.1:port; 0, or -1 after timeout. */
int testenv_wait_port(int port, int timeout_ms);
/* fork+exec argv with stdout/stderr appended to `logfile` (NULL: inherit). Returns pid or -1. */
pid_t testenv_spawn(char *const argv[], const char *logfile);
/* Send sig, then wait up to timeout_ms for the child to exit (SIGKILL after). Returns the
 * wait status, or -1. */
int testenv_kill_wait(pid_t pid, int sig, int timeout_ms);
/* Run the shell command line cmd (popen); its stdout into out (size n, NUL-terminated,
 * truncated to fit). Returns its exit status, or -1 when it could not run or did not exit. */
int testenv_run_cmd(const char *cmd, char *out, size_t n);

typedef struct rconn rconn;
/* The integer reply of rconn_command(c, fmt, a) (b NULL) or rconn_command(c, fmt, a, b), fmt
 * taking one or two %s; -1 for an error or any other reply. */
long long testenv_redis_int(rconn *c, const char *fmt, const char *a, const char *b);

#endif
