/* apitest: see apitest.h. */
#include "apitest.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Run `minicrm keys create` and keep the key it prints (first line). */
static int make_key(apitest *t, const char *role, char *out, size_t n)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "MONGO_URI='%s' REDIS_URL='%s' MINICRM_REDIS_PREFIX='%s' '%s' keys create --role %s "
             "--name test-%s 2>>'%s'",
             t->env.mongo_uri, t->env.redis_url, t->env.prefix, testenv_bin("minicrm"), role, role,
             t->log);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    char line[256] = "";
    char *ok = fgets(line, sizeof line, p);
    int st = pclose(p);
    line[strcspn(line, "\r\n")] = '\0';
    if (!ok || st != 0 || strncmp(line, "mck_", 4) != 0) {
        fprintf(stderr, "apitest: minicrm keys create failed (status %d): %s\n", st, line);
        return -1;
    }
    snprintf(out, n, "Authorization: Bearer %s", line);
    return 0;
}

/* Start minicrm-api with the environment set by apitest_start; 0 once /readyz answers 200. */
static int spawn_api(apitest *t)
{
    char *argv[] = {(char *)testenv_bin("minicrm-api"), NULL};
    t->api_pid = testenv_spawn(argv, t->log);
    if (t->api_pid <= 0 || testenv_wait_port(t->port, 10000) != 0) {
        fprintf(stderr, "apitest: minicrm-api did not start (log %s)\n", t->log);
        return -1;
    }
    /* Ready once both dependencies answer. */
    for (int i = 0; i < 200; i++) {
        apitest_resp r;
        if (apitest_request(t, "GET", "/readyz", NULL, NULL, 0, &r) == 0 && r.status == 200) {
            apitest_resp_release(&r);
            return 0;
        }
        apitest_resp_release(&r);
        usleep(50000);
    }
    fprintf(stderr, "apitest: /readyz never answered 200\n");
    return -1;
}

int apitest_start(apitest *t, const char *const *extra_env)
{
    memset(t, 0, sizeof *t);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (testenv_start(&t->env, TESTENV_REDIS | TESTENV_DEVDB) != 0)
        return -1;
    snprintf(t->log, sizeof t->log, "%s/api.log", t->env.dir);
    if (make_key(t, "admin", t->admin_auth, sizeof t->admin_auth) != 0 ||
        make_key(t, "staff", t->staff_auth, sizeof t->staff_auth) != 0)
        goto fail;
    t->port = testenv_free_port();
    snprintf(t->base, sizeof t->base, "http://127.0.0.1:%d", t->port);
    char port[16];
    snprintf(port, sizeof port, "%d", t->port);
    setenv("PORT", port, 1);
    setenv("MONGO_URI", t->env.mongo_uri, 1);
    setenv("REDIS_URL", t->env.redis_url, 1);
    setenv("MINICRM_REDIS_PREFIX", t->env.prefix, 1);
    setenv("MINICRM_API_BIND", "127.0.0.1", 1);
    setenv("MINICRM_MONGO_TIMEOUT_MS", "1000", 1);
    setenv("MINICRM_REDIS_TIMEOUT_MS", "500", 1);
    setenv("FRONTEND_URL", "http://front.test:3000", 1);
    setenv("VENDOR_SECRET", "test-vendor-secret", 1);
    for (const char *const *e = extra_env; e && *e; e++) {
        char name[128];
        const char *eq = strchr(*e, '=');
        if (!eq || (size_t)(eq - *e) >= sizeof name)
            continue;
        snprintf(name, sizeof name, "%.*s", (int)(eq - *e), *e);
        setenv(name, eq + 1, 1);
    }
    if (spawn_api(t) == 0)
        return 0;
fail:
    apitest_stop(t);
    return -1;
}

int apitest_restart_api(apitest *t, int sig)
{
    if (t->api_pid > 0)
        testenv_kill_wait(t->api_pid, sig, 10000);
    t->api_pid = 0;
    return spawn_api(t);
}

int apitest_stop_api(apitest *t)
{
    if (t->api_pid <= 0)
        return -1;
    int st = testenv_kill_wait(t->api_pid, SIGTERM, 10000);
    t->api_pid = 0;
    return st;
}

void apitest_stop(apitest *t)
{
    if (t->api_pid > 0)
        apitest_stop_api(t);
    if (getenv("APITEST_KEEP_LOG")) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "cat '%s' '%s/devdb.log' >&2", t->log, t->env.dir);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot print log\n");
    }
    testenv_stop(&t->env);
    curl_global_cleanup();
}

static apitest *g_shared;  /* the instance apitest_ensure started */
static int g_shared_state; /* 0 not yet, 1 running, -1 failed */

static void shared_stop(void)
{
    if (g_shared_state == 1)
        apitest_stop(g_shared);
}

int apitest_ensure(apitest *t, const char *const *extra_env)
{
    if (g_shared_state == 0) {
        g_shared = t;
        g_shared_state = apitest_start(t, extra_env) == 0 ? 1 : -1;
        if (g_shared_state == 1)
            atexit(shared_stop);
    }
    return g_shared_state == 1 && t == g_shared ? 0 : -1;
}

const char *apitest_admin_auth(const apitest *t)
{
    return t->admin_auth;
}

const char *apitest_staff_auth(const apitest *t)
{
    return t->staff_auth;
}

typedef struct grow {
    char *p;
    size_t len;
} grow;

static size_t on_data(char *ptr, size_t sz, size_t nm, void *ud)
{
    grow *g = ud;
    size_t n = sz * nm;
    char *np = realloc(g->p, g->len + n + 1);
    if (!np)
        return 0;
    memcpy(np + g->len, ptr, n);
    g->len += n;
    np[g->len] = '\0';
    g->p = np;
    return n;
}

int apitest_request(const apitest *t, const char *method, const char *path,
                    const char *const *headers, const char *body, size_t body_len,
                    apitest_resp *resp)
{
    memset(resp, 0, sizeof *resp);
    CURL *c = curl_easy_init();
    if (!c)
        return -1;
    char url[2048];
    snprintf(url, sizeof url, "%s%s", t->base, path);
    struct curl_slist *hl = NULL;
    int has_ct = 0;
    for (const char *const *h = headers; h && *h; h++) {
        hl = curl_slist_append(hl, *h);
        if (strncasecmp(*h, "Content-Type:", 13) == 0)
            has_ct = 1;
    }
    if (body && !has_ct)
        hl = curl_slist_append(hl, "Content-Type: application/json");
    hl = curl_slist_append(hl, "Expect:");
    grow b = {0}, h = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    resp->body = b.p ? b.p : calloc(1, 1);
    resp->len = b.len;
    resp->headers = h.p ? h.p : calloc(1, 1);
    if (resp->len)
        resp->json = json_loadb(resp->body, resp->len, 0, NULL);
    return rc == CURLE_OK ? 0 : -1;
}

void apitest_resp_release(apitest_resp *r)
{
    free(r->body);
    free(r->headers);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

const char *apitest_resp_header(const apitest_resp *r, const char *name, char *buf, size_t n)
{
    size_t nl = strlen(name);
    for (const char *p = r->headers; p && *p;) {
        const char *e = strstr(p, "\r\n");
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            snprintf(buf, n, "%.*s", (int)(len - (size_t)(v - p)), v);
            return buf;
        }
        p = e ? e + 2 : p + len;
    }
    return NULL;
}

int apitest_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}
