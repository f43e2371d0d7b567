/*
 * supervise: runs a set of child programs as one system, for `minicrm up`.
 *
 * Children are started in the order added and stopped in reverse order (SIGTERM, then SIGKILL
 * after a grace period). Their stdout and stderr are merged into one stream, each line
 * prefixed with the child's name in its own colour (colours only on a terminal). A child
 * that exits while the system is running is reported and restarted with exponential backoff
 * (1 s doubling to 30 s; the backoff resets after a child stayed up for a minute). A child
 * marked oneshot is a task: its exit is reported, never restarted.
 *
 * Single-threaded: everything happens in sup_poll(), called in a loop by the owner.
 */
#ifndef MINICRM_CLI_SUPERVISE_H
#define MINICRM_CLI_SUPERVISE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

enum { SUP_MAX_CHILDREN = 16, SUP_MAX_ARGS = 24 };

typedef struct sup_child {
    char name[32];
    char *argv[SUP_MAX_ARGS]; /* owned copies */
    pid_t pid;
    int fd;             /* read end of the child's stdout+stderr pipe, -1 if none */
    int64_t started_ms; /* monotonic */
    int64_t restart_at; /* monotonic ms when a restart is due, 0 if none */
    int backoff_ms;
    int restarts;
    bool oneshot;    /* a task run once (never restarted); see finished/exit_status */
    bool finished;   /* oneshot child has exited */
    int exit_status; /* its wait status */
    char line[4096]; /* partial output line */
    size_t linelen;
} sup_child;

typedef struct supervisor {
    sup_child child[SUP_MAX_CHILDREN];
    int n;
    bool color;
    bool stopping;
} supervisor;

void sup_init(supervisor *s);
/* Add a child; argv is NULL-terminated and copied. Returns its index, or -1 if full. */
int sup_add(supervisor *s, const char *name, char *const argv[]);
/* Start child i. Returns 0, or -1 (the reason is printed). */
int sup_start(supervisor *s, int i);
/* Pump output, reap and restart children; waits at most timeout_ms. */
void sup_poll(supervisor *s, int timeout_ms);
/* True if child i is running. */
bool sup_running(const supervisor *s, int i);
/* Stop all children in reverse order, each within grace_ms. */
void sup_stop_all(supervisor *s, int grace_ms);
/* Print a line with the supervisor's own prefix. */
void sup_say(const supervisor *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sup_release(supervisor *s);

#endif
