/*
 * webfiles: see webfiles.h.
 *
 * A request goes: path -> relative name (checked segment by segment) -> realpath inside the
 * root -> stat (regular file) -> cache entry (read + hashed + gzipped once; reused while the
 * file's size, mtime and inode are unchanged) -> 304 or the entry's bytes.
 *
 * Cache layout: a fixed array of WEBFILES_MAX_ENTRIES pointers scanned linearly (a dashboard
 * has tens of files; a scan of short names costs far less than the stat every request makes).
 * An entry is immutable once built; `refs` (under the mutex) counts the table's reference and
 * each request's. Replacing a changed file detaches the old entry, which is freed by its last
 * user. An entry that would exceed the bounds is never put in the table: it lives only for the
 * request that read it.
 */
#include "webfiles.h"

#include "http.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define WF_MAX_NAME     256
#define WF_GZIP_MIN     512
#define WF_ASSET_MAXAGE "public, max-age=300"
#define WF_IMMUTABLE    "public, max-age=31536000, immutable"

typedef struct wf_entry {
    char rel[WF_MAX_NAME];
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    unsigned char *data;
    size_t len;
    unsigned char *gz; /* NULL when gzip does not pay */
    size_t gz_len;
    char etag[24];    /* "<16 hex>" with quotes */
    char etag_gz[28]; /* "<16 hex>-gz" */
    int refs;         /* under webfiles.mu */
} wf_entry;

struct webfiles {
    char *root; /* realpath, no trailing '/'; NULL when no directory was found */
    size_t rootlen;
    pthread_mutex_t mu;
    wf_entry *entries[WEBFILES_MAX_ENTRIES];
    size_t n;
    size_t bytes;
};

static const struct {
    const char *ext, *type;
    bool text; /* worth compressing */
} k_types[] = {
    {"html", "text/html; charset=utf-8", true},
    {"js", "text/javascript; charset=utf-8", true},
    {"mjs", "text/javascript; charset=utf-8", true},
    {"css", "text/css; charset=utf-8", true},
    {"json", "application/json; charset=utf-8", true},
    {"map", "application/json; charset=utf-8", true},
    {"svg", "image/svg+xml", true},
    {"txt", "text/plain; charset=utf-8", true},
    {"png", "image/png", false},
    {"jpg", "image/jpeg", false},
    {"webp", "image/webp", false},
    {"ico", "image/x-icon", false},
    {"woff2", "font/woff2", false},
};

/* ---------------------------------------------------------------- lifetime */

static void entry_free(wf_entry *e)
{
    if (!e)
        return;
    free(e->data);
    free(e->gz);
    free(e);
}

/* Directory of the running binary into buf (no trailing '/'). 0 or -1. */
static int exe_dir(char *buf, size_t n)
{
    char exe[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k <= 0)
        return -1;
    exe[k] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return -1;
    *slash = '\0';
    return snprintf(buf, n, "%s", exe) < (int)n ? 0 : -1;
}

static char *dir_real(const char *path)
{
    struct stat st;
    char *r = realpath(path, NULL);
    if (r && (stat(r, &st) != 0 || !S_ISDIR(st.st_mode))) {
        free(r);
        r = NULL;
    }
    return r;
}

webfiles *webfiles_new(const char *web_root)
{
    webfiles *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    pthread_mutex_init(&w->mu, NULL);
    char dir[PATH_MAX], cand[PATH_MAX + 64];
    if (web_root && web_root[0]) {
        w->root = dir_real(web_root);
        if (!w->root)
            log_warn("web_root_missing",
                     "path=\"%s\" detail=\"api.web_root is not a directory: "
                     "the dashboard answers 404\"",
                     web_root);
    } else if (exe_dir(dir, sizeof dir) == 0) {
        snprintf(cand, sizeof cand, "%s/../share/minicrm/web", dir);
        w->root = dir_real(cand);
        if (!w->root) {
            snprintf(cand, sizeof cand, "%s/../../web", dir);
            w->root = dir_real(cand);
        }
        if (!w->root)
            log_warn("web_root_missing",
                     "detail=\"no dashboard files at %s/../share/minicrm/web or %s/../../web: set "
                     "api.web_root\"",
                     dir, dir);
    }
    if (w->root) {
        w->rootlen = strlen(w->root);
        log_info("web_root", "path=\"%s\"", w->root);
    }
    return w;
}

void webfiles_free(webfiles *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n; i++)
        entry_free(w->entries[i]);
    pthread_mutex_destroy(&w->mu);
    free(w->root);
    free(w);
}

const char *webfiles_root(const webfiles *w)
{
    return w ? w->root : NULL;
}

/* ---------------------------------------------------------------- names and types */

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-' || c == '~' || c == '@' || c == '+';
}

/* A relative name made only of plain segments: no empty, hidden, "." or ".." segment, only
 * name_char bytes, shorter than WF_MAX_NAME. */
static bool rel_ok(const char *rel)
{
    size_t n = strlen(rel);
    if (n == 0 || n >= WF_MAX_NAME)
        return false;
    bool seg_start = true;
    for (size_t i = 0; i < n; i++) {
        char c = rel[i];
        if (c == '/') {
            if (seg_start) /* empty segment */
                return false;
            seg_start = true;
            continue;
        }
        if (!name_char(c) || (seg_start && c == '.'))
            return false;
        seg_start = false;
    }
    return !seg_start;
}

static const char *base_name(const char *rel)
{
    const char *s = strrchr(rel, '/');
    return s ? s + 1 : rel;
}

static int type_of(const char *rel)
{
    const char *dot = strrchr(base_name(rel), '.');
    if (!dot)
        return -1;
    for (size_t i = 0; i < sizeof k_types / sizeof k_types[0]; i++)
        if (strcasecmp(dot + 1, k_types[i].ext) == 0)
            return (int)i;
    return -1;
}

/* True when a middle dot-separated part of the base name is 8 or more hex digits
 * ("app.3f9a1c2e.js"): the name changes with the content, so it may be cached for good. */
static bool hashed_name(const char *rel)
{
    const char *b = base_name(rel);
    const char *first = strchr(b, '.'), *last = strrchr(b, '.');
    if (!first || first == last)
        return false;
    const char *p = first + 1;
    while (p < last) {
        const char *q = memchr(p, '.', (size_t)(last - p));
        if (!q)
            q = last;
        size_t k = (size_t)(q - p);
        bool hex = k >= 8;
        for (size_t i = 0; hex && i < k; i++)
            hex = (p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f');
        if (hex)
            return true;
        p = q + 1;
    }
    return false;
}

/* ---------------------------------------------------------------- loading */

static uint64_t fnv1a64(const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* The gzip form of data, or NULL when it does not pay (or zlib fails). */
static unsigned char *gzip_of(const unsigned char *data, size_t len, size_t *out_len)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    size_t cap = deflateBound(&z, (uLong)len);
    unsigned char *out = malloc(cap);
    if (!out) {
        deflateEnd(&z);
        return NULL;
    }
    z.next_in = (Bytef *)data;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    size_t n = cap - z.avail_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END || n * 10 > len * 9) {
        free(out);
        return NULL;
    }
    *out_len = n;
    return out;
}

/* Read the open file fd (already fstat'ed as st) into a new entry with refs 1. */
static wf_entry *entry_load(int fd, const struct stat *st, const char *rel, bool text)
{
    wf_entry *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    snprintf(e->rel, sizeof e->rel, "%s", rel);
    e->dev = st->st_dev;
    e->ino = st->st_ino;
    e->size = st->st_size;
    e->mtime = st->st_mtim;
    e->refs = 1;
    e->data = malloc(st->st_size > 0 ? (size_t)st->st_size : 1);
    if (!e->data)
        goto fail;
    size_t got = 0;
    while (got < (size_t)st->st_size) {
        ssize_t k = read(fd, e->data + got, (size_t)st->st_size - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    e->len = got;
    uint64_t h = fnv1a64(e->data, e->len);
    snprintf(e->etag, sizeof e->etag, "\"%016llx\"", (unsigned long long)h);
    snprintf(e->etag_gz, sizeof e->etag_gz, "\"%016llx-gz\"", (unsigned long long)h);
    if (text && e->len >= WF_GZIP_MIN)
        e->gz = gzip_of(e->data, e->len, &e->gz_len);
    return e;
fail:
    entry_free(e);
    return NULL;
}

static bool entry_fresh(const wf_entry *e, const struct stat *st)
{
    return e->dev == st->st_dev && e->ino == st->st_ino && e->size == st->st_size &&
           e->mtime.tv_sec == st->st_mtim.tv_sec && e->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

static void entry_release(webfiles *w, wf_entry *e)
{
    pthread_mutex_lock(&w->mu);
    bool last = --e->refs == 0;
    pthread_mutex_unlock(&w->mu);
    if (last)
        entry_free(e);
}

/* The entry for rel (an open, fstat'ed regular file), from the cache or freshly read; the
 * caller holds one reference (entry_release). NULL when out of memory. */
static wf_entry *entry_get(webfiles *w, int fd, const struct stat *st, const char *rel, bool text)
{
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < w->n; i++) {
        wf_entry *e = w->entries[i];
        if (strcmp(e->rel, rel) != 0)
            continue;
        if (entry_fresh(e, st)) {
            e->refs++;
            pthread_mutex_unlock(&w->mu);
            return e;
        }
        /* Changed on disk: detach (freed by its last user). */
        w->bytes -= e->len + e->gz_len;
        w->entries[i] = w->entries[--w->n];
        if (--e->refs == 0)
            entry_free(e);
        break;
    }
    pthread_mutex_unlock(&w->mu);

    wf_entry *e = entry_load(fd, st, rel, text);
    if (!e)
        return NULL;
    pthread_mutex_lock(&w->mu);
    bool dup = false;
    for (size_t i = 0; i < w->n; i++)
        dup = dup || strcmp(w->entries[i]->rel, rel) == 0;
    size_t cost = e->len + e->gz_len;
    if (!dup && w->n < WEBFILES_MAX_ENTRIES && w->bytes + cost <= WEBFILES_MAX_BYTES) {
        w->entries[w->n++] = e;
        w->bytes += cost;
        e->refs++; /* the table's reference */
    }
    pthread_mutex_unlock(&w->mu);
    return e;
}

/* ---------------------------------------------------------------- the request */

/* Does the client accept gzip (Accept-Encoding: gzip or *, with q > 0)? */
static bool accepts_gzip(const char *ae)
{
    if (!ae)
        return false;
    const char *p = ae;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *name = p;
        while (*p && *p != ',' && *p != ';' && *p != ' ')
            p++;
        size_t nl = (size_t)(p - name);
        double q = 1.0;
        while (*p && *p != ',') {
            if (*p == ';') {
                const char *x = p + 1;
                while (*x == ' ')
                    x++;
                if ((x[0] == 'q' || x[0] == 'Q') && x[1] == '=')
                    q = strtod(x + 2, NULL);
            }
            p++;
        }
        if (((nl == 4 && strncasecmp(name, "gzip", 4) == 0) || (nl == 1 && name[0] == '*')) &&
            q > 0)
            return true;
    }
    return false;
}

/* Does If-None-Match name either form of the entry (weak comparison, as RFC 9110 asks)? */
static bool etag_matches(const char *inm, const wf_entry *e)
{
    if (!inm)
        return false;
    const char *p = inm;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (*p == '*')
            return true;
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        const char *tok = p;
        if (*p == '"') {
            p++;
            while (*p && *p != '"')
                p++;
            if (*p == '"')
                p++;
        } else {
            while (*p && *p != ',' && *p != ' ')
                p++;
        }
        size_t n = (size_t)(p - tok);
        if ((n == strlen(e->etag) && memcmp(tok, e->etag, n) == 0) ||
            (n == strlen(e->etag_gz) && memcmp(tok, e->etag_gz, n) == 0))
            return true;
        while (*p && *p != ',')
            p++;
    }
    return false;
}

static void not_found(http_request *req)
{
    http_add_header(req, "X-Content-Type-Options", "nosniff");
    http_error(req, 404, "no such file: %s", req->path);
}

/* Open root/rel if it resolves to a regular file inside the root: fd (and *st), or -1 with
 * errno (ENOENT for anything that must look missing). */
static int open_inside(const webfiles *w, const char *rel, struct stat *st)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", w->root, rel) >= (int)sizeof path) {
        errno = ENOENT;
        return -1;
    }
    char *real = realpath(path, NULL);
    if (!real)
        return -1;
    bool inside = strncmp(real, w->root, w->rootlen) == 0 && real[w->rootlen] == '/';
    int fd = inside ? open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
    free(real);
    if (fd < 0) {
        errno = ENOENT;
        return -1;
    }
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode) || (size_t)st->st_size > WEBFILES_MAX_FILE) {
        close(fd);
        errno = ENOENT;
        return -1;
    }
    return fd;
}

static void serve(api_ctx *app, http_request *req, const char *rel_in)
{
    webfiles *w = app->web;
    if (!w || !w->root) {
        http_error(req, 404, "the dashboard's files were not found (set api.web_root)");
        return;
    }
    const char *rel = rel_in;
    if (!rel_ok(rel) || type_of(rel) < 0) {
        /* A page route of the dashboard (no extension) is its index.html. */
        if (!rel_ok(rel) || strchr(base_name(rel), '.')) {
            not_found(req);
            return;
        }
        rel = "index.html";
    }
    struct stat st;
    int fd = open_inside(w, rel, &st);
    if (fd < 0) {
        not_found(req);
        return;
    }
    int t = type_of(rel);
    wf_entry *e = entry_get(w, fd, &st, rel, k_types[t].text);
    close(fd);
    if (!e) {
        http_error(req, 503, "out of memory");
        return;
    }
    bool html = strcmp(k_types[t].ext, "html") == 0;
    bool gz = e->gz && accepts_gzip(http_header(req, "Accept-Encoding"));
    http_add_header(req, "Cache-Control",
                    html               ? "no-cache"
                    : hashed_name(rel) ? WF_IMMUTABLE
                                       : WF_ASSET_MAXAGE);
    http_add_header(req, "ETag", gz ? e->etag_gz : e->etag);
    if (e->gz)
        http_add_header(req, "Vary", "Accept-Encoding");
    http_add_header(req, "Content-Security-Policy", WEBFILES_CSP);
    http_add_header(req, "X-Content-Type-Options", "nosniff");
    http_add_header(req, "Referrer-Policy", "same-origin");
    http_add_header(req, "X-Frame-Options", "DENY");
    if (etag_matches(http_header(req, "If-None-Match"), e)) {
        http_send_raw(req, 304, NULL, "", 0);
    } else {
        if (gz)
            http_add_header(req, "Content-Encoding", "gzip");
        http_send_raw(req, 200, k_types[t].type, gz ? e->gz : e->data, gz ? e->gz_len : e->len);
    }
    entry_release(w, e);
}

/* GET / */
static void h_root(api_ctx *app, http_request *req)
{
    serve(app, req, "index.html");
}

/* GET /ui and /ui/ (the router ignores the trailing slash: the path tells them apart). */
static void h_ui(api_ctx *app, http_request *req)
{
    size_t n = strlen(req->path);
    if (n > 0 && req->path[n - 1] == '/')
        serve(app, req, "index.html");
    else
        http_redirect(req, "/ui/");
}

/* GET /ui/<name> */
static void h_ui_file(api_ctx *app, http_request *req)
{
    /* The router matched "ui" as the first segment (it skips repeated slashes): the name is
     * what follows it. */
    const char *p = req->path;
    while (*p == '/')
        p++;
    p += 2;
    while (*p == '/')
        p++;
    serve(app, req, p);
}

int webfiles_register(router *r)
{
    if (router_add(r, HTTP_GET, "/", h_root, ROUTE_PUBLIC, AUTH_ROLE_NONE) ||
        router_add(r, HTTP_GET, "/ui", h_ui, ROUTE_PUBLIC, AUTH_ROLE_NONE) ||
        router_add(r, HTTP_GET, "/ui/*", h_ui_file, ROUTE_PUBLIC, AUTH_ROLE_NONE))
        return -1;
    return 0;
}
