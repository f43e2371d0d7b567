/*
 * webfiles: the dashboard's static files, served by minicrm-api itself at `GET /` and
 * `GET /ui/...` from one directory (api.web_root; issue 16 point 1).
 *
 * The directory: api.web_root when set; else `share/minicrm/web` next to the programs'
 * directory (an installed layout: bin/../share/minicrm/web); else the source tree's `web/`
 * found from the binary (build/bin/../../web), so `minicrm up` and the tests work from a build
 * directory without any setting. Resolved once at start (realpath).
 *
 * A request path maps to a file only when every segment is made of [A-Za-z0-9._~@+-], does not
 * start with '.', and the resolved file (symlinks followed) is a regular file inside the root:
 * anything else (.., %2e%2e, %00, a symlink out of the root, a hidden file, an unknown file
 * type) is a 404, the same answer as a missing file, so nothing about the disk leaks. `/` and
 * `/ui/` are index.html; a missing extension-less path under /ui/ is index.html too (page
 * routes of the dashboard survive a reload).
 *
 * Responses: the content type by extension; `ETag` (a 64-bit hash of the content, "-gz" for
 * the gzip form); `Cache-Control: no-cache` for HTML (always revalidated), `public,
 * max-age=31536000, immutable` for names carrying a content hash (`app.3f9a1c2e.js`: 8 or more
 * hex digits between dots), `public, max-age=300` for other assets; 304 on a matching
 * If-None-Match; gzip when the client accepts it and it pays (text types, at least 512 bytes,
 * the gzip form at most 90% of the original); the Content-Security-Policy of WEBFILES_CSP,
 * `X-Content-Type-Options: nosniff`, `Referrer-Policy: same-origin` (keeps `Origin` on the
 * page's own POSTs, which the CSRF check reads), `X-Frame-Options: DENY`.
 *
 * Memory: a file is read and compressed once, then kept while its size, mtime and inode stay
 * the same (an edited file is picked up at the next request). The cache is bounded:
 * WEBFILES_MAX_ENTRIES files and WEBFILES_MAX_BYTES bytes in total; a file that does not fit
 * is read from disk for each request, and no file above WEBFILES_MAX_FILE is served.
 *
 * Threads: any handler thread; the cache is behind one mutex, entries are reference-counted so
 * a request copies its answer out of an entry without holding the lock.
 */
#ifndef MINICRM_API_WEBFILES_H
#define MINICRM_API_WEBFILES_H

#include "router.h"

#define WEBFILES_MAX_ENTRIES 512
#define WEBFILES_MAX_BYTES   ((size_t)64 * 1024 * 1024)
#define WEBFILES_MAX_FILE    ((size_t)16 * 1024 * 1024)

#define WEBFILES_CSP                                                                               \
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

typedef struct webfiles webfiles;

/* Find the root (see above). Never fails for a missing directory: the routes then answer 404
 * and the start-up log says where it looked. NULL only when out of memory. Free with
 * webfiles_free (NULL-safe). */
webfiles *webfiles_new(const char *web_root);
void webfiles_free(webfiles *w);
/* The resolved root, or NULL when none was found. */
const char *webfiles_root(const webfiles *w);

/* GET / and GET /ui/... (public). */
int webfiles_register(router *r);

#endif
