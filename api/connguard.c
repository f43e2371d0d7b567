/*
 * connguard: see connguard.h.
 *
 * The watchdog wakes every CONNGUARD_TICK_MS and walks the list: a handful of open connections
 * in practice, api.max_conns at most, so a walk costs microseconds. The deadline is therefore
 * kept within one tick of timeout_s.
 */
#include "connguard.h"

#include "log.h"
#include "timeutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#define CONNGUARD_TICK_MS 200

typedef enum { CG_WAITING = 0, CG_IN_REQUEST, CG_CUT } cg_state;

typedef struct cg_node {
    connguard *g;
    int fd;
    cg_state state;
    int64_t since_ms; /* monotonic: opened, or last request completed */
    struct cg_node *prev, *next;
} cg_node;

struct connguard {
    int64_t timeout_ms;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stop;
    cg_node *head;
    pthread_t thread;
    atomic_long cut;
};

static void *watchdog(void *arg)
{
    connguard *g = arg;
    pthread_mutex_lock(&g->lock);
    while (!g->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += CONNGUARD_TICK_MS * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&g->wake, &g->lock, &ts);
        int64_t now = time_mono_ms();
        for (cg_node *n = g->head; n && !g->stop; n = n->next) {
            if (n->state != CG_WAITING || now - n->since_ms < g->timeout_ms)
                continue;
            n->state = CG_CUT;
            shutdown(n->fd, SHUT_RDWR);
            atomic_fetch_add(&g->cut, 1);
            log_warn("header_timeout", "fd=%d waited_ms=%lld", n->fd,
                     (long long)(now - n->since_ms));
        }
    }
    pthread_mutex_unlock(&g->lock);
    return NULL;
}

connguard *connguard_new(int timeout_s)
{
    connguard *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->timeout_ms = (int64_t)timeout_s * 1000;
    atomic_init(&g->cut, 0);
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->wake, NULL);
    if (pthread_create(&g->thread, NULL, watchdog, g) != 0) {
        pthread_cond_destroy(&g->wake);
        pthread_mutex_destroy(&g->lock);
        free(g);
        return NULL;
    }
    return g;
}

void connguard_free(connguard *g)
{
    if (!g)
        return;
    pthread_mutex_lock(&g->lock);
    g->stop = true;
    pthread_cond_signal(&g->wake);
    pthread_mutex_unlock(&g->lock);
    pthread_join(g->thread, NULL);
    /* MHD_stop_daemon has sent CLOSED for every connection, so the list should be empty here;
     * whatever is left is no longer referenced by MHD. */
    for (cg_node *n = g->head, *next; n; n = next) {
        next = n->next;
        free(n);
    }
    pthread_cond_destroy(&g->wake);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

void connguard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                      enum MHD_ConnectionNotificationCode toe)
{
    connguard *g = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        cg_node *n = ci ? calloc(1, sizeof *n) : NULL;
        *socket_context = n;
        if (!n)
            return; /* not guarded: MHD's idle timeout still applies */
        n->g = g;
        n->fd = ci->connect_fd;
        n->state = CG_WAITING;
        n->since_ms = time_mono_ms();
        pthread_mutex_lock(&g->lock);
        n->next = g->head;
        if (g->head)
            g->head->prev = n;
        g->head = n;
        pthread_mutex_unlock(&g->lock);
        return;
    }
    cg_node *n = *socket_context;
    if (!n)
        return;
    pthread_mutex_lock(&g->lock);
    if (n->prev)
        n->prev->next = n->next;
    else
        g->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    pthread_mutex_unlock(&g->lock);
    free(n);
    *socket_context = NULL;
}

static void set_state(struct MHD_Connection *conn, cg_state st)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    cg_node *n = ci ? ci->socket_context : NULL;
    if (!n)
        return;
    pthread_mutex_lock(&n->g->lock);
    if (n->state != CG_CUT) {
        n->state = st;
        n->since_ms = time_mono_ms();
    }
    pthread_mutex_unlock(&n->g->lock);
}

void connguard_request_started(struct MHD_Connection *conn)
{
    set_state(conn, CG_IN_REQUEST);
}

void connguard_request_done(struct MHD_Connection *conn)
{
    set_state(conn, CG_WAITING);
}

long connguard_cut_count(const connguard *g)
{
    return g ? atomic_load(&g->cut) : 0;
}
