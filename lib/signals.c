/*
 * signals: see signals.h. The handler only stores to a sig_atomic_t and writes one byte to a
 * non-blocking pipe, both async-signal-safe.
 */
#include "signals.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t g_stop_sig;
static int g_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
    int saved = errno;
    g_stop_sig = sig;
    if (g_pipe[1] >= 0) {
        ssize_t r = write(g_pipe[1], "x", 1);
        (void)r;
    }
    errno = saved;
}

int signals_install(void)
{
    if (g_pipe[0] >= 0) {
        close(g_pipe[0]);
        close(g_pipe[1]);
    }
    if (pipe(g_pipe) != 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        fcntl(g_pipe[i], F_SETFL, fcntl(g_pipe[i], F_GETFL) | O_NONBLOCK);
        fcntl(g_pipe[i], F_SETFD, FD_CLOEXEC);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0)
        return -1;
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    return 0;
}

bool signals_stop_requested(void)
{
    return g_stop_sig != 0;
}

int signals_stop_signal(void)
{
    return g_stop_sig;
}

void signals_request_stop(void)
{
    on_signal(SIGTERM);
}

int signals_fd(void)
{
    return g_pipe[0];
}

bool signals_sleep_ms(int ms)
{
    if (g_stop_sig)
        return true;
    struct pollfd p = {.fd = g_pipe[0], .events = POLLIN};
    if (g_pipe[0] < 0) {
        poll(NULL, 0, ms);
    } else {
        poll(&p, 1, ms);
    }
    return g_stop_sig != 0;
}
