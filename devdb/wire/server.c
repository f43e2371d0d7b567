/*
 * server.c: listener, per-connection threads, framing (see server.h).
 *
 * Connection life (one thread each):
 *
 *   READ_HEADER --16 bytes--> READ_BODY --length-16 bytes--> RUN --> WRITE_REPLY --> READ_HEADER
 *        |                        |                           |            |
 *        +--- EOF / error / bad length / unsupported opcode / shutdown ----+--> CLOSED
 *
 * A header whose length is below 16+1 or above WIRE_MAX_MESSAGE closes the connection (we
 * cannot resynchronise); a well-framed but invalid OP_MSG/OP_QUERY gets an error reply and
 * the connection continues. OP_MSG with moreToCome is run and gets no reply.
 *
 * Shutdown: server_run notices stop_fd, closes the listener, then calls shutdown(2) on every
 * registered connection socket, which wakes threads blocked in recv; each thread unregisters
 * itself and decrements the live count; server_run waits for the count to reach zero so that
 * everything is freed before main returns (LeakSanitizer-clean exit).
 */
#include "wire/server.h"

#include "commands/cursor.h"
#include "log.h"
#include "wire/wire.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct server {
    int lfd;
    cmd_env *env;
    int max_conns;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int *fds; /* registered connection sockets, -1 = free slot */
    int nfds;
    int live;
    bool stopping;
};

typedef struct conn {
    server *srv;
    int fd;
    int slot;
    cmd_conn cc;
} conn;

/* ---- socket I/O ------------------------------------------------------------------------------ */

static int recv_all(int fd, uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t r = recv(fd, p, n, 0);
        if (r == 0)
            return -1;
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int send_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int send_reply(conn *c, const wire_header *hdr, const bson_t *body)
{
    size_t len;
    static int32_t next_id;
    int32_t id = __atomic_add_fetch(&next_id, 1, __ATOMIC_RELAXED) & 0x7fffffff;
    uint8_t *m = wire_build_reply(hdr, id, body, &len);
    if (!m) {
        /* The reply was too large for one message: tell the client instead. */
        bson_t e = BSON_INITIALIZER;
        BSON_APPEND_DOUBLE(&e, "ok", 0);
        BSON_APPEND_UTF8(&e, "errmsg", "reply exceeds the maximum message size");
        BSON_APPEND_INT32(&e, "code", 10334);
        BSON_APPEND_UTF8(&e, "codeName", "BSONObjectTooLarge");
        m = wire_build_reply(hdr, id, &e, &len);
        bson_destroy(&e);
        if (!m)
            return -1;
    }
    int rc = send_all(c->fd, m, len);
    free(m);
    return rc;
}

/* ---- connection thread ------------------------------------------------------------------------
 */

static void conn_unregister(conn *c)
{
    server *srv = c->srv;
    pthread_mutex_lock(&srv->mu);
    srv->fds[c->slot] = -1;
    srv->live--;
    pthread_cond_broadcast(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
}

static void *conn_main(void *arg)
{
    conn *c = arg;
    uint8_t hb[WIRE_HEADER_LEN];
    log_debug("conn_open", "conn=%lld", (long long)c->cc.conn_id);
    for (;;) {
        if (recv_all(c->fd, hb, sizeof hb) != 0)
            break;
        wire_header hdr;
        wire_header_decode(hb, &hdr);
        if (hdr.length < WIRE_HEADER_LEN + 1 || hdr.length > WIRE_MAX_MESSAGE) {
            log_warn("bad_message", "conn=%lld reason=bad_length length=%d",
                     (long long)c->cc.conn_id, hdr.length);
            break;
        }
        if (hdr.opcode != WIRE_OP_MSG && hdr.opcode != WIRE_OP_QUERY) {
            log_warn("bad_message", "conn=%lld reason=unsupported_opcode opcode=%d",
                     (long long)c->cc.conn_id, hdr.opcode);
            break;
        }
        uint8_t *buf = malloc((size_t)hdr.length);
        if (!buf)
            break;
        memcpy(buf, hb, sizeof hb);
        if (recv_all(c->fd, buf + WIRE_HEADER_LEN, (size_t)hdr.length - WIRE_HEADER_LEN) != 0) {
            free(buf);
            break;
        }
        wire_request req;
        char err[256];
        bson_t reply = BSON_INITIALIZER;
        int prc = wire_parse(buf, (size_t)hdr.length, &req, err, sizeof err);
        free(buf);
        if (prc != 0) {
            char q[300];
            log_warn("bad_message", "conn=%lld reason=%s", (long long)c->cc.conn_id,
                     log_quote(q, sizeof q, err));
            BSON_APPEND_DOUBLE(&reply, "ok", 0);
            BSON_APPEND_UTF8(&reply, "errmsg", err);
            BSON_APPEND_INT32(&reply, "code", 9);
            BSON_APPEND_UTF8(&reply, "codeName", "FailedToParse");
        } else {
            commands_run(&c->cc, req.db, &req.cmd, &reply);
        }
        int src = 0;
        if (prc != 0 || !req.more_to_come)
            src = send_reply(c, &hdr, &reply);
        bson_destroy(&reply);
        wire_request_release(&req);
        if (src != 0)
            break;
    }
    log_debug("conn_close", "conn=%lld", (long long)c->cc.conn_id);
    close(c->fd);
    __atomic_sub_fetch(&c->srv->env->current_conns, 1, __ATOMIC_RELAXED);
    conn_unregister(c);
    free(c);
    return NULL;
}

/* ---- listener
 * ------------------------------------------------------------------------------------ */

server *server_new(const server_opts *opts, cmd_env *env, char *err, size_t errlen)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char port[16];
    snprintf(port, sizeof port, "%d", opts->port);
    int gai = getaddrinfo(opts->bind, port, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "cannot resolve bind address '%s': %s", opts->bind,
                 gai_strerror(gai));
        return NULL;
    }
    int fd = -1;
    int saved = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1024) == 0)
            break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", opts->bind, opts->port,
                 strerror(saved));
        return NULL;
    }
    server *srv = calloc(1, sizeof *srv);
    if (!srv || !(srv->fds = malloc(sizeof(int) * (size_t)opts->max_conns))) {
        free(srv);
        close(fd);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (int i = 0; i < opts->max_conns; i++)
        srv->fds[i] = -1;
    srv->nfds = opts->max_conns;
    srv->lfd = fd;
    srv->env = env;
    srv->max_conns = opts->max_conns;
    pthread_mutex_init(&srv->mu, NULL);
    pthread_cond_init(&srv->cv, NULL);
    return srv;
}

static void accept_one(server *srv)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int fd = accept(srv->lfd, (struct sockaddr *)&ss, &sl);
    if (fd < 0)
        return;
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pthread_mutex_lock(&srv->mu);
    int slot = -1;
    if (!srv->stopping) {
        for (int i = 0; i < srv->nfds; i++) {
            if (srv->fds[i] < 0) {
                slot = i;
                break;
            }
        }
    }
    if (slot < 0) {
        pthread_mutex_unlock(&srv->mu);
        log_warn("conn_refused", "reason=too_many_connections max=%d", srv->max_conns);
        close(fd);
        return;
    }
    srv->fds[slot] = fd;
    srv->live++;
    pthread_mutex_unlock(&srv->mu);

    conn *c = calloc(1, sizeof *c);
    if (!c)
        goto fail;
    c->srv = srv;
    c->fd = fd;
    c->slot = slot;
    c->cc.env = srv->env;
    c->cc.conn_id = __atomic_add_fetch(&srv->env->total_conns, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&srv->env->current_conns, 1, __ATOMIC_RELAXED);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 2u << 20);
    pthread_t th;
    int rc = pthread_create(&th, &attr, conn_main, c);
    pthread_attr_destroy(&attr);
    if (rc == 0)
        return;
    __atomic_sub_fetch(&srv->env->current_conns, 1, __ATOMIC_RELAXED);
    free(c);
fail:
    log_warn("conn_refused", "reason=no_thread");
    close(fd);
    pthread_mutex_lock(&srv->mu);
    srv->fds[slot] = -1;
    srv->live--;
    pthread_mutex_unlock(&srv->mu);
}

int server_run(server *srv, int stop_fd)
{
    for (;;) {
        struct pollfd pf[2] = {{.fd = srv->lfd, .events = POLLIN},
                               {.fd = stop_fd, .events = POLLIN}};
        int n = poll(pf, 2, 1000);
        if (n < 0 && errno != EINTR)
            break;
        if (n > 0 && pf[1].revents)
            break;
        if (n > 0 && (pf[0].revents & POLLIN))
            accept_one(srv);
        cursor_table_reap(srv->env->cursors);
    }
    close(srv->lfd);
    srv->lfd = -1;
    pthread_mutex_lock(&srv->mu);
    srv->stopping = true;
    for (int i = 0; i < srv->nfds; i++) {
        if (srv->fds[i] >= 0)
            shutdown(srv->fds[i], SHUT_RDWR);
    }
    while (srv->live > 0)
        pthread_cond_wait(&srv->cv, &srv->mu);
    pthread_mutex_unlock(&srv->mu);
    return 0;
}

void server_free(server *srv)
{
    if (!srv)
        return;
    if (srv->lfd >= 0)
        close(srv->lfd);
    pthread_mutex_destroy(&srv->mu);
    pthread_cond_destroy(&srv->cv);
    free(srv->fds);
    free(srv);
}
