/*
 * supervise: see supervise.h.
 *
 * Each child gets a pipe for both stdout and stderr; the read ends are non-blocking and
 * multiplexed with poll() together with the signal self-pipe, so Ctrl-C interrupts a wait at
 * once. Children run in their own process group so a terminal's Ctrl-C reaches only us, and
 * we decide the order in which they stop.
 */
#include "supervise.h"

#include "signals.h"
#include "timeutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const int colors[] = {36, 33, 32, 35, 34, 31, 96, 93, 92, 95};

void sup_init(supervisor *s)
{
    memset(s, 0, sizeof *s);
    s->color = isatty(1);
    for (int i = 0; i < SUP_MAX_CHILDREN; i++)
        s->child[i].fd = -1;
}

int sup_add(supervisor *s, const char *name, char *const argv[])
{
    if (s->n >= SUP_MAX_CHILDREN)
        return -1;
    sup_child *c = &s->child[s->n];
    snprintf(c->name, sizeof c->name, "%s", name);
    for (int i = 0; argv[i] && i < SUP_MAX_ARGS - 1; i++)
        c->argv[i] = strdup(argv[i]);
    c->fd = -1;
    c->backoff_ms = 1000;
    return s->n++;
}

static void emit(const supervisor *s, const char *name, int color, const char *text, size_t len)
{
    char buf[4300];
    int n;
    if (s->color)
        n = snprintf(buf, sizeof buf, "\033[%dm%-12s|\033[0m %.*s\n", color, name, (int)len, text);
    else
        n = snprintf(buf, sizeof buf, "%-12s| %.*s\n", name, (int)len, text);
    if (n > (int)sizeof buf)
        n = (int)sizeof buf;
    ssize_t w = write(1, buf, (size_t)n);
    (void)w;
}

void sup_say(const supervisor *s, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    emit(s, "minicrm", 1, msg, n < 0 ? 0 : (size_t)n >= sizeof msg ? sizeof msg - 1 : (size_t)n);
}

int sup_start(supervisor *s, int i)
{
    sup_child *c = &s->child[i];
    int p[2];
    if (pipe(p) != 0) {
        sup_say(s, "cannot start %s: pipe: %s", c->name, strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        sup_say(s, "cannot start %s: fork: %s", c->name, strerror(errno));
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        dup2(p[1], 1);
        dup2(p[1], 2);
        close(p[0]);
        close(p[1]);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        execv(c->argv[0], c->argv);
        fprintf(stderr, "exec %s: %s\n", c->argv[0], strerror(errno));
        _exit(127);
    }
    close(p[1]);
    fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK);
    fcntl(p[0], F_SETFD, FD_CLOEXEC);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = p[0];
    c->pid = pid;
    c->linelen = 0;
    c->started_ms = time_mono_ms();
    c->restart_at = 0;
    return 0;
}

bool sup_running(const supervisor *s, int i)
{
    return s->child[i].pid > 0;
}

/* Read what child i wrote and emit complete lines. */
static void drain(supervisor *s, int i)
{
    sup_child *c = &s->child[i];
    for (;;) {
        ssize_t r = read(c->fd, c->line + c->linelen, sizeof c->line - c->linelen);
        if (r <= 0) {
            if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                if (c->linelen)
                    emit(s, c->name, colors[i % 10], c->line, c->linelen);
                c->linelen = 0;
                close(c->fd);
                c->fd = -1;
            }
            return;
        }
        c->linelen += (size_t)r;
        size_t start = 0;
        for (size_t k = 0; k < c->linelen; k++) {
            if (c->line[k] == '\n') {
                emit(s, c->name, colors[i % 10], c->line + start, k - start);
                start = k + 1;
            }
        }
        if (start == 0 && c->linelen == sizeof c->line) { /* a line longer than the buffer */
            emit(s, c->name, colors[i % 10], c->line, c->linelen);
            start = c->linelen;
        }
        memmove(c->line, c->line + start, c->linelen - start);
        c->linelen -= start;
    }
}

static void describe_exit(char *buf, size_t n, int status)
{
    if (WIFEXITED(status))
        snprintf(buf, n, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, n, "killed by signal %d", WTERMSIG(status));
    else
        snprintf(buf, n, "stopped");
}

void sup_poll(supervisor *s, int timeout_ms)
{
    struct pollfd pfd[SUP_MAX_CHILDREN + 1];
    int idx[SUP_MAX_CHILDREN + 1], np = 0;
    for (int i = 0; i < s->n; i++) {
        if (s->child[i].fd >= 0) {
            pfd[np] = (struct pollfd){.fd = s->child[i].fd, .events = POLLIN};
            idx[np++] = i;
        }
    }
    if (signals_fd() >= 0) {
        pfd[np] = (struct pollfd){.fd = signals_fd(), .events = POLLIN};
        idx[np++] = -1;
    }
    int r = poll(pfd, (nfds_t)np, timeout_ms);
    for (int k = 0; r > 0 && k < np; k++)
        if (idx[k] >= 0 && (pfd[k].revents & (POLLIN | POLLHUP | POLLERR)))
            drain(s, idx[k]);

    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < s->n; i++) {
            sup_child *c = &s->child[i];
            if (c->pid != pid)
                continue;
            if (c->fd >= 0)
                drain(s, i);
            c->pid = 0;
            if (s->stopping)
                break;
            char why[64];
            describe_exit(why, sizeof why, status);
            if (c->oneshot) { /* a task, not a service: report, never restart */
                c->exit_status = status;
                c->finished = true;
                sup_say(s, "%s %s", c->name, why);
                continue;
            }
            if (time_mono_ms() - c->started_ms > 60000)
                c->backoff_ms = 1000;
            c->restart_at = time_mono_ms() + c->backoff_ms;
            sup_say(s, "%s %s; restarting in %d ms", c->name, why, c->backoff_ms);
            c->backoff_ms = c->backoff_ms * 2 > 30000 ? 30000 : c->backoff_ms * 2;
        }
    }
    if (s->stopping)
        return;
    int64_t now = time_mono_ms();
    for (int i = 0; i < s->n; i++) {
        sup_child *c = &s->child[i];
        if (c->pid == 0 && c->restart_at && now >= c->restart_at) {
            c->restarts++;
            if (sup_start(s, i) != 0)
                c->restart_at = now + c->backoff_ms;
        }
    }
}

void sup_stop_all(supervisor *s, int grace_ms)
{
    s->stopping = true;
    for (int i = s->n - 1; i >= 0; i--) {
        sup_child *c = &s->child[i];
        c->restart_at = 0;
        if (c->pid <= 0)
            continue;
        sup_say(s, "stopping %s (pid %d)", c->name, (int)c->pid);
        kill(c->pid, SIGTERM);
        int64_t deadline = time_mono_ms() + grace_ms;
        while (c->pid > 0 && time_mono_ms() < deadline) {
            int status;
            pid_t r = waitpid(c->pid, &status, WNOHANG);
            if (r == c->pid || r < 0) {
                c->pid = 0;
                break;
            }
            if (c->fd >= 0) {
                struct pollfd p = {.fd = c->fd, .events = POLLIN};
                if (poll(&p, 1, 20) > 0)
                    drain(s, i);
            } else {
                poll(NULL, 0, 20);
            }
        }
        if (c->pid > 0) {
            sup_say(s, "%s did not stop within %d ms: killing it", c->name, grace_ms);
            kill(c->pid, SIGKILL);
            waitpid(c->pid, NULL, 0);
            c->pid = 0;
        }
        if (c->fd >= 0)
            drain(s, i);
    }
}

void sup_release(supervisor *s)
{
    for (int i = 0; i < s->n; i++) {
        for (int k = 0; k < SUP_MAX_ARGS && s->child[i].argv[k]; k++)
            free(s->child[i].argv[k]);
        if (s->child[i].fd >= 0)
            close(s->child[i].fd);
    }
    s->n = 0;
}
