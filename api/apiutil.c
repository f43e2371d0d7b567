/* apiutil: see apiutil.h. */
#include "apiutil.h"

#include "jsonx.h"
#include "log.h"
#include "queue.h"
#include "rules.h"
#include "timeutil.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

bool api_is_dup_key(const bson_error_t *e)
{
    return e->code == 11000 || e->code == 11001 || strstr(e->message, "E11000") != NULL;
}

/* maxTimeMS of every read below (api_reads_init); read-only once the threads run. */
static int g_max_time_ms;

void api_reads_init(int max_time_ms)
{
    g_max_time_ms = max_time_ms;
}

/* Adds maxTimeMS to a command or its options. */
static void add_max_time(bson_t *b)
{
    if (g_max_time_ms > 0)
        BSON_APPEND_INT64(b, "maxTimeMS", g_max_time_ms);
}

bool api_is_timeout(const bson_error_t *e)
{
    return e->domain == MONGOC_ERROR_SERVER && e->code == API_MAX_TIME_MS_EXPIRED;
}

int api_db_status(http_request *req, const bson_error_t *e, const char *what)
{
    char msg[300];
    log_quote(msg, sizeof msg, e->message);
    bool down = e->domain == MONGOC_ERROR_SERVER_SELECTION || e->domain == MONGOC_ERROR_STREAM ||
                e->domain == MONGOC_ERROR_PROTOCOL || e->domain == MONGOC_ERROR_CLIENT;
    log_warn("db_error", "rid=%s what=%s domain=%u code=%u msg=%s", req->request_id, what,
             e->domain, e->code, msg);
    return api_is_timeout(e) ? 504 : down ? 503 : 500;
}

int api_db_fail(http_request *req, const bson_error_t *e, const char *what)
{
    int st = api_db_status(req, e, what);
    if (st == 503)
        http_error(req, 503, "database unavailable, retry later");
    else if (st == 504)
        http_error(req, 504, "database query timed out while %s (over %d ms), retry later", what,
                   g_max_time_ms);
    else
        http_error(req, 500, "database error while %s", what);
    return -1;
}

int api_parse_oid(http_request *req, const char *field, const char *hex, bson_oid_t *out)
{
    if (!hex || strlen(hex) != 24 || !bson_oid_is_valid(hex, 24)) {
        http_error(req, 400, "%s must be a 24-hex id", field);
        return -1;
    }
    bson_oid_init_from_string(out, hex);
    return 0;
}

rconn *api_redis(http_request *req)
{
    rconn *c = rpool_get(req->app->redis);
    if (!c)
        http_error(req, 503, "redis unavailable, retry later");
    return c;
}

int api_redis_fail(http_request *req, rconn *c, const char *what)
{
    char msg[300];
    log_quote(msg, sizeof msg, c ? rconn_error(c) : "no connection");
    log_warn("redis_error", "rid=%s what=%s msg=%s", req->request_id, what, msg);
    return http_error(req, 503, "redis unavailable, retry later"), -1;
}

const char *api_lower(const char *s, char *buf, size_t n)
{
    size_t i = 0;
    for (; s[i] && i + 1 < n; i++)
        buf[i] = (char)tolower((unsigned char)s[i]);
    buf[i] = '\0';
    return buf;
}

const char *api_key(const api_ctx *app, char *buf, size_t n, const char *fmt, ...)
{
    int k = snprintf(buf, n, "%s", app->cfg->redis.prefix);
    if (k < 0 || (size_t)k >= n)
        return buf;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + k, n - (size_t)k, fmt, ap);
    va_end(ap);
    return buf;
}

/* ------------------------------------------------------------------------------------------ */
/* MongoDB helpers                                                                            */
/* ------------------------------------------------------------------------------------------ */

/* An exact count of a whole collection: what drivers' countDocuments sends,
 * [{$match: {}}, {$group: {_id: 1, n: {$sum: 1}}}]. No document: 0. */
static int count_all_exact(mongoc_collection_t *coll, int64_t *n, bson_error_t *err)
{
    bson_t *pipeline =
        BCON_NEW("pipeline", "[", "{", "$match", "{", "}", "}", "{", "$group", "{", "_id",
                 BCON_INT32(1), "n", "{", "$sum", BCON_INT32(1), "}", "}", "}", "]");
    bson_t opts = BSON_INITIALIZER;
    add_max_time(&opts);
    mongoc_cursor_t *cur =
        mongoc_collection_aggregate(coll, MONGOC_QUERY_NONE, pipeline, &opts, NULL);
    const bson_t *doc;
    bson_iter_t it;
    *n = 0;
    if (mongoc_cursor_next(cur, &doc) && bson_iter_init_find(&it, doc, "n") &&
        BSON_ITER_HOLDS_NUMBER(&it))
        *n = bson_iter_as_int64(&it);
    int rc = mongoc_cursor_error(cur, err) ? -1 : 0;
    mongoc_cursor_destroy(cur);
    bson_destroy(&opts);
    bson_destroy(pipeline);
    return rc;
}

/* The count command (filter NULL: the collection's metadata count). */
static int count_cmd(mongoc_collection_t *coll, const bson_t *filter, int64_t *n, bson_error_t *err)
{
    bson_t cmd = BSON_INITIALIZER, reply;
    BSON_APPEND_UTF8(&cmd, "count", mongoc_collection_get_name(coll));
    if (filter)
        BSON_APPEND_DOCUMENT(&cmd, "query", filter);
    add_max_time(&cmd);
    bool ok = mongoc_collection_read_command_with_opts(coll, &cmd, NULL, NULL, &reply, err);
    bson_iter_t it;
    if (ok && bson_iter_init_find(&it, &reply, "n") && BSON_ITER_HOLDS_NUMBER(&it))
        *n = bson_iter_as_int64(&it);
    else if (ok) {
        bson_set_error(err, MONGOC_ERROR_SERVER, 1, "count: reply without n");
        ok = false;
    }
    bson_destroy(&reply);
    bson_destroy(&cmd);
    return ok ? 0 : -1;
}

int api_count(mongoc_collection_t *coll, const bson_t *filter, int64_t *n, bson_error_t *err)
{
    if (!filter || bson_empty(filter))
        return count_all_exact(coll, n, err);
    return count_cmd(coll, filter, n, err);
}

int api_count_audience(mongoc_collection_t *coll, const bson_t *filter, int64_t *n,
                       bson_error_t *err)
{
    bson_t base = BSON_INITIALIZER, minus = BSON_INITIALIZER;
    int64_t all = 0, out = 0;
    int rc;
    if (!rules_filter_split_ne(filter, &base, &minus))
        rc = api_count(coll, filter, n, err);
    else if ((rc = bson_empty(&base) ? count_cmd(coll, NULL, &all, err)
                                     : api_count(coll, &base, &all, err)) == 0 &&
             (rc = api_count(coll, &minus, &out, err)) == 0)
        *n = all > out ? all - out : 0;
    bson_destroy(&base);
    bson_destroy(&minus);
    return rc;
}

int api_count_estimate(mongoc_collection_t *coll, int64_t *n, bson_error_t *err)
{
    return count_cmd(coll, NULL, n, err);
}

int api_populate(api_ctx *app, mongoc_client_t *cl, json_t *docs, const char *field,
                 const char *coll_name, const char *const *fields, bson_error_t *err)
{
    size_t n = json_array_size(docs);
    if (n == 0)
        return 0;
    bson_t filter = BSON_INITIALIZER, sub, arr;
    BSON_APPEND_DOCUMENT_BEGIN(&filter, "_id", &sub);
    BSON_APPEND_ARRAY_BEGIN(&sub, "$in", &arr);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *hex = json_string_value(json_object_get(json_array_get(docs, i), field));
        if (!hex || !bson_oid_is_valid(hex, strlen(hex)))
            continue;
        bson_oid_t oid;
        bson_oid_init_from_string(&oid, hex);
        char key[16];
        const char *kp;
        bson_uint32_to_string((uint32_t)k++, &kp, key, sizeof key);
        bson_append_oid(&arr, kp, -1, &oid);
    }
    bson_append_array_end(&sub, &arr);
    bson_append_document_end(&filter, &sub);

    json_t *found = json_object(); /* hex -> projected doc */
    mongoc_collection_t *coll = dbpool_collection(app->db, cl, coll_name);
    /* The fields are picked here rather than with a projection: referenced documents are
     * small, and plain finds are the most portable operation across MongoDB and devdb. */
    bson_t opts = BSON_INITIALIZER;
    add_max_time(&opts);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
    bson_destroy(&opts);
    const bson_t *doc;
    while (mongoc_cursor_next(cur, &doc)) {
        json_t *j = jsonx_from_bson(doc);
        json_t *pick = json_object();
        for (const char *const *f = fields; *f; f++) {
            json_t *v = json_object_get(j, *f);
            if (v)
                json_object_set(pick, *f, v);
        }
        const char *id = json_string_value(json_object_get(j, "_id"));
        if (id)
            json_object_set(found, id, pick);
        json_decref(pick);
        json_decref(j);
    }
    int rc = mongoc_cursor_error(cur, err) ? -1 : 0;
    mongoc_cursor_destroy(cur);
    mongoc_collection_destroy(coll);
    bson_destroy(&filter);
    if (rc == 0) {
        for (size_t i = 0; i < n; i++) {
            json_t *d = json_array_get(docs, i);
            const char *hex = json_string_value(json_object_get(d, field));
            if (!hex)
                continue;
            json_t *ref = json_object_get(found, hex);
            json_object_set(d, field, ref ? ref : json_null());
        }
    }
    json_decref(found);
    return rc;
}

const char *const API_SORT_NEWEST[] = {"-createdAt", "-_id", NULL};
const char *const API_CUSTOMER_REF_FIELDS[] = {"_id", "name", "email", NULL};

long api_skip(long page, long limit)
{
    return page > 1 ? (page - 1) * limit : 0;
}

int api_page_skip(http_request *req, long page, long limit, long *skip)
{
    long max = req->app->cfg->api.max_skip;
    *skip = api_skip(page, limit);
    if (*skip <= max)
        return 0;
    http_error(req, 400,
               "page: pages deeper than %ld documents are served by ?after=<the X-Next-Cursor "
               "header of the previous page> (api.max_skip)",
               max);
    return -1;
}

int api_newest_position(http_request *req, long page, long limit, bson_t *filter, long *skip)
{
    const char *after = http_query(req, "after");
    *skip = 0;
    return after ? api_after_newest(req, after, filter) : api_page_skip(req, page, limit, skip);
}

int api_filter_customer(http_request *req, bson_t *filter)
{
    const char *cust = http_query(req, "customer_id");
    bson_oid_t oid;
    if (!cust || !*cust)
        return 0;
    if (api_parse_oid(req, "customer_id", cust, &oid) != 0)
        return -1;
    BSON_APPEND_OID(filter, "customer_id", &oid);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Keyset of the newest-first lists                                                           */
/* ------------------------------------------------------------------------------------------ */

const char API_CURSOR_NEWEST[] = "createdAt,_id";

/* The cursor after document d of a newest-first list: "<createdAt ms>_<_id hex>", or "" when
 * d lacks either (it then ends the keyset walk, as documents without createdAt sort last). */
static void newest_cursor(const bson_t *d, char cursor[API_CURSOR_MAX])
{
    bson_iter_t it;
    int64_t ms;
    char hex[25];
    cursor[0] = '\0';
    if (!bson_iter_init_find(&it, d, "createdAt") || !BSON_ITER_HOLDS_DATE_TIME(&it))
        return;
    ms = bson_iter_date_time(&it);
    if (!bson_iter_init_find(&it, d, "_id") || !BSON_ITER_HOLDS_OID(&it))
        return;
    bson_oid_to_string(bson_iter_oid(&it), hex);
    snprintf(cursor, API_CURSOR_MAX, "%lld_%s", (long long)ms, hex);
}

int api_after_newest(http_request *req, const char *after, bson_t *filter)
{
    const char *us = strchr(after, '_');
    char *end = NULL;
    errno = 0;
    long long ms = strtoll(after, &end, 10);
    if (!us || end != us || end == after || errno != 0 || strlen(us + 1) != 24 ||
        !bson_oid_is_valid(us + 1, 24)) {
        http_error(req, 400, "after: must be the X-Next-Cursor header of the previous page");
        return -1;
    }
    bson_oid_t oid;
    bson_oid_init_from_string(&oid, us + 1);
    /* createdAt < T, or createdAt == T and _id < id. The bound on createdAt alone lets the
     * index {createdAt: -1, _id: -1} start the walk at T; the $or drops the few entries of T
     * at or above id. */
    bson_t sub, and, or, arr, el;
    BSON_APPEND_DOCUMENT_BEGIN(filter, "createdAt", &sub);
    BSON_APPEND_DATE_TIME(&sub, "$lte", (int64_t)ms);
    bson_append_document_end(filter, &sub);
    /* inside an $and: the caller's filter may have an $or of its own */
    BSON_APPEND_ARRAY_BEGIN(filter, "$and", &and);
    BSON_APPEND_DOCUMENT_BEGIN(&and, "0", & or);
    BSON_APPEND_ARRAY_BEGIN(& or, "$or", &arr);
    BSON_APPEND_DOCUMENT_BEGIN(&arr, "0", &el);
    BSON_APPEND_DOCUMENT_BEGIN(&el, "createdAt", &sub);
    BSON_APPEND_DATE_TIME(&sub, "$lt", (int64_t)ms);
    bson_append_document_end(&el, &sub);
    bson_append_document_end(&arr, &el);
    BSON_APPEND_DOCUMENT_BEGIN(&arr, "1", &el);
    BSON_APPEND_DOCUMENT_BEGIN(&el, "_id", &sub);
    BSON_APPEND_OID(&sub, "$lt", &oid);
    bson_append_document_end(&el, &sub);
    bson_append_document_end(&arr, &el);
    bson_append_array_end(& or, &arr);
    bson_append_document_end(&and, & or);
    bson_append_array_end(filter, &and);
    return 0;
}

/* Appends q's "sort" ("-field" descending) and "projection" (q->exclude set to 0) to find
 * options; the list queries (api_query_json, api_query_text) start their options with these. */
static void add_sort_projection(bson_t *opts, const api_query *q)
{
    bson_t sub;
    if (q->sort) {
        BSON_APPEND_DOCUMENT_BEGIN(opts, "sort", &sub);
        for (const char *const *f = q->sort; *f; f++)
            BSON_APPEND_INT32(&sub, (*f)[0] == '-' ? *f + 1 : *f, (*f)[0] == '-' ? -1 : 1);
        bson_append_document_end(opts, &sub);
    }
    if (q->exclude) {
        BSON_APPEND_DOCUMENT_BEGIN(opts, "projection", &sub);
        for (const char *const *f = q->exclude; *f; f++)
            BSON_APPEND_INT32(&sub, *f, 0);
        bson_append_document_end(opts, &sub);
    }
}

int api_query_json(api_ctx *app, mongoc_client_t *cl, const api_query *q, json_t **out,
                   const char *cursor_field, char cursor[API_CURSOR_MAX], bson_error_t *err)
{
    bson_t empty = BSON_INITIALIZER, opts = BSON_INITIALIZER;
    add_sort_projection(&opts, q);
    BSON_APPEND_INT64(&opts, "limit", q->limit);
    if (q->skip > 0)
        BSON_APPEND_INT64(&opts, "skip", q->skip);
    add_max_time(&opts);
    mongoc_collection_t *coll = dbpool_collection(app->db, cl, q->coll);
    mongoc_cursor_t *cur =
        mongoc_collection_find_with_opts(coll, q->filter ? q->filter : &empty, &opts, NULL);
    json_t *arr = json_array();
    const bson_t *doc;
    while (mongoc_cursor_next(cur, &doc))
        json_array_append_new(arr, jsonx_from_bson(doc));
    int rc = mongoc_cursor_error(cur, err) ? -1 : 0;
    mongoc_cursor_destroy(cur);
    mongoc_collection_destroy(coll);
    bson_destroy(&opts);
    bson_destroy(&empty);
    if (cursor) {
        cursor[0] = '\0';
        size_t n = json_array_size(arr);
        json_t *lastdoc =
            cursor_field && n > 0 && (long)n == q->limit ? json_array_get(arr, n - 1) : NULL;
        const char *last = NULL;
        if (lastdoc && cursor_field == API_CURSOR_NEWEST) {
            /* The tree shows dates as ISO text: the cursor comes from the text path's rule. */
            int64_t ms;
            const char *id = json_string_value(json_object_get(lastdoc, "_id"));
            const char *at = json_string_value(json_object_get(lastdoc, "createdAt"));
            if (id && at && time_parse_iso8601(at, &ms) == 0)
                snprintf(cursor, API_CURSOR_MAX, "%lld_%s", (long long)ms, id);
        } else if (lastdoc) {
            last = json_string_value(json_object_get(lastdoc, cursor_field));
        }
        if (last)
            snprintf(cursor, API_CURSOR_MAX, "%s", last);
    }
    for (const api_ref *r = q->refs; rc == 0 && r && r->field; r++)
        rc = api_populate(app, cl, arr, r->field, r->coll, r->fields, err);
    if (rc != 0) {
        json_decref(arr);
        arr = NULL;
    }
    *out = arr;
    return rc;
}

/* ---- the text path: BSON straight to JSON (jsonx_buf_bson), the same bytes as above ---- */

#define MAX_REFS 4 /* references of one list */

/* One referenced document, written as its projected JSON object. Referenced documents are
 * found by {_id: {$in: [ObjectIds]}}, so each one's _id is an ObjectId. */
typedef struct ref_doc {
    uint8_t oid[12]; /* its _id */
    size_t off, len; /* its JSON {"_id":...,...} in the set's text */
} ref_doc;

/* The referenced documents of one api_ref, sorted by _id, their JSON in one buffer (no
 * allocation per document). */
typedef struct ref_set {
    const api_ref *ref;
    ref_doc *a;
    size_t n;
    jsonx_buf text;
} ref_set;

/* ObjectIds in byte order (memcmp's), compared as a big-endian 64-bit and 32-bit word
 * without a call into libc: the sorts and searches below make thousands of these per page. */
static inline int oid_order(const uint8_t *a, const uint8_t *b)
{
    uint64_t x, y;
    uint32_t u, v;
    memcpy(&x, a, 8);
    memcpy(&y, b, 8);
    if (x != y)
        return __builtin_bswap64(x) < __builtin_bswap64(y) ? -1 : 1;
    memcpy(&u, a + 8, 4);
    memcpy(&v, b + 8, 4);
    if (u != v)
        return __builtin_bswap32(u) < __builtin_bswap32(v) ? -1 : 1;
    return 0;
}

static int oid_cmp(const void *x, const void *y)
{
    return oid_order(x, y);
}

static int ref_doc_cmp(const void *x, const void *y)
{
    return oid_order(((const ref_doc *)x)->oid, ((const ref_doc *)y)->oid);
}

/* The string the jansson path would see for a value (json_string_value of its conversion) when
 * it is an id: OID as 24 hex, a UTF-8 string as itself. NULL for anything else. */
static const char *id_string(const bson_iter_t *it, char hex[25])
{
    if (BSON_ITER_HOLDS_OID(it)) {
        bson_oid_to_string(bson_iter_oid(it), hex);
        return hex;
    }
    if (BSON_ITER_HOLDS_UTF8(it)) {
        uint32_t len;
        const char *s = bson_iter_utf8(it, &len);
        return bson_utf8_validate(s, len, true) && strlen(s) == len ? s : NULL;
    }
    return NULL;
}

/* The ObjectId a page document's reference names, as the jansson path matched it: an
 * ObjectId value, or a string that is exactly the lower-case hex of one (the text a stored id
 * is compared with). False for anything else (the jansson path's null). */
static bool ref_oid(const bson_iter_t *it, bson_oid_t *out)
{
    if (BSON_ITER_HOLDS_OID(it)) {
        bson_oid_copy(bson_iter_oid(it), out);
        return true;
    }
    if (!BSON_ITER_HOLDS_UTF8(it))
        return false;
    uint32_t len;
    const char *s = bson_iter_utf8(it, &len);
    if (len != 24)
        return false;
    for (int i = 0; i < 24; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    bson_oid_init_from_string(out, s);
    return true;
}

/* True if a document repeats a top-level key (jansson would keep the last value). Keys are
 * compared only when a 64-bit filter on (length, first, last byte) says they may repeat. */
static bool has_repeated_key(const bson_t *doc)
{
    bson_iter_t a, b;
    uint64_t filter = 0;
    size_t nth = 0;
    if (!bson_iter_init(&a, doc))
        return false;
    while (bson_iter_next(&a)) {
        const char *k = bson_iter_key(&a);
        size_t kl = strlen(k);
        uint64_t bit =
            1ULL << ((kl * 31u + (unsigned char)k[0] * 7u + (kl ? (unsigned char)k[kl - 1] : 0u)) &
                     63u);
        if (filter & bit) { /* compare with the keys before this one */
            bson_iter_init(&b, doc);
            for (size_t i = 0; i < nth && bson_iter_next(&b); i++)
                if (strcmp(k, bson_iter_key(&b)) == 0)
                    return true;
        }
        filter |= bit;
        nth++;
    }
    return false;
}

static void ref_set_release(ref_set *rs)
{
    free(rs->a);
    jsonx_buf_free(&rs->text);
    rs->a = NULL;
    rs->n = 0;
}

/* Load the documents docs[*].field refer to (one $in query of the distinct ids), as
 * api_populate does. 0, 1 when a referenced document cannot be written exactly (repeated key:
 * use the jansson path), -1 with err. */
static int ref_set_load(api_ctx *app, mongoc_client_t *cl, bson_t **docs, size_t ndocs, ref_set *rs,
                        bson_error_t *err)
{
    const api_ref *r = rs->ref;
    /* The distinct ids: a page of one campaign's logs names one campaign a thousand times. */
    bson_oid_t *ids = ndocs ? malloc(ndocs * sizeof *ids) : NULL;
    size_t k = 0;
    if (ndocs && !ids) {
        bson_set_error(err, MONGOC_ERROR_CLIENT, 1, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < ndocs; i++) {
        bson_iter_t it;
        if (!bson_iter_init_find(&it, docs[i], r->field))
            continue;
        if (BSON_ITER_HOLDS_OID(&it)) {
            bson_oid_copy(bson_iter_oid(&it), &ids[k++]);
        } else {
            /* a string id: queried when it parses as one (any case), as before */
            char hex[25];
            const char *id = id_string(&it, hex);
            if (id && bson_oid_is_valid(id, strlen(id)))
                bson_oid_init_from_string(&ids[k++], id);
        }
    }
    if (k > 1) {
        /* Pages are often in the references' order already (a campaign's logs by customer) or
         * name one id throughout (its campaign): no sort then. */
        size_t sorted = 1;
        while (sorted < k && oid_order(ids[sorted - 1].bytes, ids[sorted].bytes) <= 0)
            sorted++;
        if (sorted < k)
            qsort(ids, k, sizeof *ids, oid_cmp);
        size_t u = 1;
        for (size_t i = 1; i < k; i++)
            if (oid_order(ids[i].bytes, ids[u - 1].bytes) != 0)
                ids[u++] = ids[i];
        k = u;
    }
    bson_t filter = BSON_INITIALIZER, sub, arr;
    BSON_APPEND_DOCUMENT_BEGIN(&filter, "_id", &sub);
    BSON_APPEND_ARRAY_BEGIN(&sub, "$in", &arr);
    for (size_t i = 0; i < k; i++) {
        char key[16];
        const char *kp;
        size_t kl = bson_uint32_to_string((uint32_t)i, &kp, key, sizeof key);
        bson_append_oid(&arr, kp, (int)kl, &ids[i]);
    }
    bson_append_array_end(&sub, &arr);
    bson_append_document_end(&filter, &sub);
    free(ids);
    /* Only the fields shown are fetched (an inclusion projection; _id comes with it). */
    bson_t opts = BSON_INITIALIZER, proj;
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &proj);
    for (const char *const *f = r->fields; *f; f++)
        BSON_APPEND_INT32(&proj, *f, 1);
    bson_append_document_end(&opts, &proj);
    if (k > 0) /* every referenced document in the first reply (no getMore) */
        BSON_APPEND_INT64(&opts, "batchSize", (int64_t)k);
    add_max_time(&opts);
    mongoc_collection_t *coll = dbpool_collection(app->db, cl, r->coll);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
    bson_destroy(&opts);
    const bson_t *doc;
    size_t cap = 0;
    int rc = 0;
    jsonx_buf *b = &rs->text;
    if (k > 0)
        jsonx_buf_reserve(b, k * 96);
    while (rc == 0 && mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it;
        if (!bson_iter_init_find(&it, doc, "_id") || !BSON_ITER_HOLDS_OID(&it))
            continue; /* cannot be: the query names ObjectIds */
        const bson_oid_t *oid = bson_iter_oid(&it);
        if (has_repeated_key(doc)) {
            rc = 1;
            break;
        }
        size_t off = b->len;
        jsonx_buf_raw(b, "{", 1);
        bool first = true;
        for (const char *const *f = r->fields; *f && rc == 0; f++)
            if (bson_iter_init_find(&it, doc, *f) && jsonx_buf_bson_member(b, &it, &first) != 0)
                rc = 1;
        jsonx_buf_raw(b, "}", 1);
        if (rc != 0)
            break;
        if (rs->n == cap) {
            cap = cap ? 2 * cap : (k > 0 ? k : 64);
            ref_doc *na = realloc(rs->a, cap * sizeof *na);
            if (!na) {
                b->failed = true;
                break;
            }
            rs->a = na;
        }
        memcpy(rs->a[rs->n].oid, oid->bytes, 12);
        rs->a[rs->n].off = off;
        rs->a[rs->n].len = b->len - off;
        rs->n++;
    }
    if (rc == 0 && mongoc_cursor_error(cur, err))
        rc = -1;
    if (rc == 0 && !jsonx_buf_ok(b)) {
        bson_set_error(err, MONGOC_ERROR_CLIENT, 1, "out of memory");
        rc = -1;
    }
    mongoc_cursor_destroy(cur);
    mongoc_collection_destroy(coll);
    bson_destroy(&filter);
    if (rc == 0 && rs->n > 1) {
        size_t i = 1; /* _id order is the order devdb and an _id index return them in */
        while (i < rs->n && ref_doc_cmp(&rs->a[i - 1], &rs->a[i]) <= 0)
            i++;
        if (i < rs->n)
            qsort(rs->a, rs->n, sizeof *rs->a, ref_doc_cmp);
    }
    /* Two documents with one id cannot exist (_id is unique). */
    return rc;
}

typedef struct populate_ctx {
    ref_set *sets;
    size_t nsets;
    size_t field_len[MAX_REFS]; /* strlen of each set's ref->field */
    ref_doc *last[MAX_REFS];    /* each set's last hit: neighbours often share a reference */
} populate_ctx;

/* Member hook: a referenced field becomes its document, or null when it is gone. */
static int populate_member(void *vctx, const bson_iter_t *it, const char **raw, size_t *rawlen)
{
    populate_ctx *c = vctx;
    const char *key = bson_iter_key_unsafe(it);
    size_t kl = it->d1 - it->key - 1; /* bson_iter_key_len */
    for (size_t i = 0; i < c->nsets; i++) {
        if (kl != c->field_len[i] || memcmp(key, c->sets[i].ref->field, kl) != 0)
            continue;
        bson_type_t t = bson_iter_type(it);
        /* Values the jansson path does not see as strings stay as they are. */
        if (t == BSON_TYPE_INT32 || t == BSON_TYPE_INT64 || t == BSON_TYPE_DOUBLE ||
            t == BSON_TYPE_BOOL || t == BSON_TYPE_NULL || t == BSON_TYPE_UNDEFINED ||
            t == BSON_TYPE_DOCUMENT || t == BSON_TYPE_ARRAY || t == BSON_TYPE_TIMESTAMP)
            return JSONX_MEMBER_KEEP;
        ref_doc probe, *hit = NULL;
        bson_oid_t oid;
        if (c->sets[i].n && ref_oid(it, &oid)) {
            memcpy(probe.oid, oid.bytes, 12);
            if (c->last[i] && oid_order(c->last[i]->oid, probe.oid) == 0)
                hit = c->last[i];
            else
                hit = c->last[i] =
                    bsearch(&probe, c->sets[i].a, c->sets[i].n, sizeof probe, ref_doc_cmp);
        }
        if (hit) {
            *raw = c->sets[i].text.data + hit->off;
            *rawlen = hit->len;
        } else {
            *raw = "null";
            *rawlen = 4;
        }
        return JSONX_MEMBER_RAW;
    }
    return JSONX_MEMBER_KEEP;
}

/* The X-Next-Cursor after `last`, the last document of a full page (see api_query_text). */
static void page_cursor(const bson_t *last, const char *cursor_field, char cursor[API_CURSOR_MAX])
{
    bson_iter_t it;
    cursor[0] = '\0';
    if (cursor_field == API_CURSOR_NEWEST) {
        newest_cursor(last, cursor);
    } else if (cursor_field && bson_iter_init_find(&it, last, cursor_field)) {
        char hex[25], date[32];
        const char *v = id_string(&it, hex);
        if (!v && BSON_ITER_HOLDS_DATE_TIME(&it))
            v = time_format_iso8601(bson_iter_date_time(&it), date);
        if (v)
            snprintf(cursor, API_CURSOR_MAX, "%s", v);
    }
}

int api_query_text(api_ctx *app, mongoc_client_t *cl, const api_query *q, jsonx_buf *out,
                   const char *cursor_field, char cursor[API_CURSOR_MAX], bson_error_t *err)
{
    bson_t empty = BSON_INITIALIZER, opts = BSON_INITIALIZER;
    add_sort_projection(&opts, q);
    BSON_APPEND_INT64(&opts, "limit", q->limit);
    /* The whole page in the first reply: no getMore round trip (the default first batch is
     * 101 documents). */
    BSON_APPEND_INT64(&opts, "batchSize", q->limit);
    if (q->skip > 0)
        BSON_APPEND_INT64(&opts, "skip", q->skip);
    add_max_time(&opts);
    mongoc_collection_t *coll = dbpool_collection(app->db, cl, q->coll);
    mongoc_cursor_t *cur =
        mongoc_collection_find_with_opts(coll, q->filter ? q->filter : &empty, &opts, NULL);
    /* Without references each document is written as it arrives (no copy of the page); with
     * them the page is kept until the referenced documents are in. */
    bool stream = !q->refs || !q->refs[0].field;
    bool tree = false; /* render through jansson instead (a repeated key somewhere) */
    size_t start = out->len;
    bson_t **docs = NULL;
    size_t n = 0, cap = 0;
    const bson_t *doc;
    bool oom = false;
    if (cursor)
        cursor[0] = '\0';
    if (stream)
        jsonx_buf_raw(out, "[", 1);
    while (!oom && !tree && mongoc_cursor_next(cur, &doc)) {
        if (stream) {
            if (n == 0) { /* room for a page of documents like the first, at most 8 MiB */
                size_t each = doc->len + doc->len / 2 + 16, most = ((size_t)8 << 20) / each;
                jsonx_buf_reserve(out, each * ((size_t)q->limit < most ? (size_t)q->limit : most));
            } else {
                jsonx_buf_raw(out, ",", 1);
            }
            if (jsonx_buf_bson(out, doc, NULL, NULL) != 0)
                tree = true;
            else if ((long)++n == q->limit && cursor)
                page_cursor(doc, cursor_field, cursor);
            continue;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 128;
            bson_t **nd = realloc(docs, cap * sizeof *nd);
            if (!nd) {
                oom = true;
                break;
            }
            docs = nd;
        }
        if (!(docs[n] = bson_copy(doc)))
            oom = true;
        else
            n++;
    }
    int rc = !tree && mongoc_cursor_error(cur, err) ? -1 : 0;
    mongoc_cursor_destroy(cur);
    mongoc_collection_destroy(coll);
    bson_destroy(&opts);
    bson_destroy(&empty);
    if (rc == 0 && oom) {
        bson_set_error(err, MONGOC_ERROR_CLIENT, 1, "out of memory");
        rc = -1;
    }
    if (stream) {
        jsonx_buf_raw(out, "]", 1);
        if (rc != 0 || tree) {
            out->len = start;
            if (out->data)
                out->data[start] = '\0';
        }
    }
    if (cursor && !stream && rc == 0 && n > 0 && (long)n == q->limit)
        page_cursor(docs[n - 1], cursor_field, cursor);
    if (cursor && rc != 0)
        cursor[0] = '\0';
    ref_set sets[MAX_REFS] = {{0}};
    size_t nsets = 0;
    for (const api_ref *r = q->refs; !stream && rc == 0 && !tree && r && r->field; r++) {
        if (nsets == MAX_REFS) {
            tree = true;
            break;
        }
        sets[nsets].ref = r;
        int lr = ref_set_load(app, cl, docs, n, &sets[nsets++], err);
        if (lr < 0)
            rc = -1;
        else if (lr > 0)
            tree = true;
    }
    if (!stream && rc == 0 && !tree) {
        populate_ctx pc = {.sets = sets, .nsets = nsets};
        for (size_t i = 0; i < nsets; i++)
            pc.field_len[i] = strlen(sets[i].ref->field);
        size_t need = 2;
        /* JSON is larger than BSON: 12-byte ids and 8-byte dates become 26 characters. Half
         * again as much is enough for the stored documents, so the page is written without a
         * realloc copying it. */
        for (size_t i = 0; i < n; i++)
            need += docs[i]->len + docs[i]->len / 2 + 16;
        jsonx_buf_reserve(out, need);
        jsonx_buf_raw(out, "[", 1);
        for (size_t i = 0; i < n && !tree; i++) {
            if (i)
                jsonx_buf_raw(out, ",", 1);
            if (jsonx_buf_bson(out, docs[i], nsets ? populate_member : NULL, &pc) != 0)
                tree = true;
        }
        jsonx_buf_raw(out, "]", 1);
        if (tree) {
            out->len = start;
            if (out->data)
                out->data[start] = '\0';
        }
    }
    for (size_t i = 0; i < nsets; i++)
        ref_set_release(&sets[i]);
    for (size_t i = 0; docs && i < n; i++)
        bson_destroy(docs[i]);
    free(docs);
    if (rc == 0 && tree) {
        /* The rare page jsonx_buf_bson cannot write exactly: the tree path, same answer. */
        json_t *arr = NULL;
        rc = api_query_json(app, cl, q, &arr, cursor_field, cursor, err);
        char *s = rc == 0 ? jsonx_dumps(arr) : NULL;
        json_decref(arr);
        if (rc == 0 && !s) {
            bson_set_error(err, MONGOC_ERROR_CLIENT, 1, "out of memory");
            rc = -1;
        }
        if (s)
            jsonx_buf_cat(out, s);
        free(s);
    }
    if (rc == 0 && !jsonx_buf_ok(out)) {
        bson_set_error(err, MONGOC_ERROR_CLIENT, 1, "out of memory");
        rc = -1;
    }
    return rc;
}

void api_send_query(api_ctx *app, http_request *req, const api_query *q, const char *cursor_field,
                    const char *what)
{
    mongoc_client_t *cl = dbpool_pop(app->db);
    jsonx_buf b = {0};
    char cursor[API_CURSOR_MAX];
    bson_error_t e;
    if (api_query_text(app, cl, q, &b, cursor_field, cursor, &e) != 0) {
        api_db_fail(req, &e, what);
    } else {
        if (cursor[0])
            http_add_header(req, "X-Next-Cursor", cursor);
        http_send_owned(req, 200, "application/json; charset=utf-8", b.data, b.len);
        b.data = NULL; /* MHD's now */
    }
    jsonx_buf_free(&b);
    dbpool_push(app->db, cl);
}

int api_find_by_id(api_ctx *app, mongoc_client_t *cl, const char *coll_name, const bson_oid_t *oid,
                   json_t **out, bson_error_t *err)
{
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER;
    BSON_APPEND_OID(&filter, "_id", oid);
    BSON_APPEND_INT64(&opts, "limit", 1);
    add_max_time(&opts);
    mongoc_collection_t *coll = dbpool_collection(app->db, cl, coll_name);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
    const bson_t *doc;
    int rc;
    *out = NULL;
    if (mongoc_cursor_next(cur, &doc)) {
        *out = jsonx_from_bson(doc);
        rc = 1;
    } else {
        rc = mongoc_cursor_error(cur, err) ? -1 : 0;
    }
    mongoc_cursor_destroy(cur);
    mongoc_collection_destroy(coll);
    bson_destroy(&filter);
    bson_destroy(&opts);
    return rc;
}

json_t *api_body_object(http_request *req, const char *hint)
{
    json_t *body = http_json_body(req);
    if (body && !json_is_object(body)) {
        http_error(req, 400, "body must be a JSON object%s", hint ? hint : "");
        return NULL;
    }
    return body;
}

int api_paging(http_request *req, long def, long *limit, long *page)
{
    long max = req->app->cfg->api.max_page_size;
    if (def > max)
        def = max;
    if (http_query_long(req, "limit", def, 1, max, limit) != 0)
        return -1;
    if (http_query_long(req, "page", 1, 1, 1000000000L, page) != 0)
        return -1;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Field validation                                                                           */
/* ------------------------------------------------------------------------------------------ */

int api_check_str(json_t *body, const char *field, bool required, size_t maxlen, const char **out,
                  char *err, size_t errlen)
{
    json_t *v = json_object_get(body, field);
    *out = NULL;
    if (!v || json_is_null(v)) {
        if (required)
            return snprintf(err, errlen, "%s is required", field), -1;
        return 0;
    }
    if (!json_is_string(v))
        return snprintf(err, errlen, "%s must be a string", field), -1;
    size_t len = json_string_length(v);
    const char *s = json_string_value(v);
    if (strlen(s) != len)
        return snprintf(err, errlen, "%s must not contain NUL characters", field), -1;
    size_t i = 0;
    while (i < len && isspace((unsigned char)s[i]))
        i++;
    if (i == len) {
        if (required)
            return snprintf(err, errlen, "%s must not be empty", field), -1;
        return 0;
    }
    if (len > maxlen)
        return snprintf(err, errlen, "%s must be at most %zu characters", field, maxlen), -1;
    *out = s;
    return 0;
}

int api_field_str(http_request *req, json_t *body, const char *field, bool required, size_t maxlen,
                  const char **out)
{
    char err[256];
    if (api_check_str(body, field, required, maxlen, out, err, sizeof err) != 0)
        return http_error(req, 400, "%s", err), -1;
    return 0;
}

int api_field_num(http_request *req, json_t *body, const char *field, bool required, double min,
                  bool min_exclusive, double max, double *out, bool *present)
{
    json_t *v = json_object_get(body, field);
    *present = false;
    if (!v || json_is_null(v)) {
        if (required)
            return http_error(req, 400, "%s is required", field), -1;
        return 0;
    }
    if (!json_is_number(v))
        return http_error(req, 400, "%s must be a number", field), -1;
    double d = json_number_value(v);
    if (min_exclusive ? !(d > min) : !(d >= min))
        return http_error(req, 400, "%s must be %s %g", field, min_exclusive ? ">" : ">=", min), -1;
    if (d > max)
        return http_error(req, 400, "%s must be <= %g", field, max), -1;
    *out = d;
    *present = true;
    return 0;
}

int api_push_jobs(http_request *req, const char *name, const char *const *jobs, const size_t *lens,
                  size_t n)
{
    rconn *c = rpool_get(req->app->redis);
    char err[256] = "no connection";
    queue *q =
        c ? queue_open(c, req->app->cfg->redis.prefix, name, NULL, NULL, err, sizeof err) : NULL;
    int rc = q ? queue_push_many(q, jobs, lens, n) : -1;
    if (rc != 0) {
        char m[300];
        log_warn("enqueue_failed", "rid=%s queue=%s err=%s", req->request_id, name,
                 log_quote(m, sizeof m, q ? queue_error(q) : err));
    }
    queue_close(q);
    if (c)
        rpool_put(req->app->redis, c);
    return rc == 0 ? 0 : -1;
}

int api_enqueue(http_request *req, const char *name, const char *const *jobs, const size_t *lens,
                size_t n)
{
    if (api_push_jobs(req, name, jobs, lens, n) == 0)
        return 0;
    http_error(req, 503, "redis unavailable, retry later");
    return -1;
}

int api_enqueue_once(http_request *req, const char *name, const char *once, int ttl_s,
                     const char *const *jobs, const size_t *lens, size_t n)
{
    rconn *c = rpool_get(req->app->redis);
    char err[256] = "no connection";
    queue *q =
        c ? queue_open(c, req->app->cfg->redis.prefix, name, NULL, NULL, err, sizeof err) : NULL;
    int rc = q ? queue_push_once(q, once, ttl_s, jobs, lens, n) : -1;
    if (rc < 0) {
        char m[300];
        log_warn("enqueue_failed", "rid=%s queue=%s err=%s", req->request_id, name,
                 log_quote(m, sizeof m, q ? queue_error(q) : err));
        http_error(req, 503, "redis unavailable, retry later");
    }
    queue_close(q);
    if (c)
        rpool_put(req->app->redis, c);
    return rc;
}

/* jsonx_member_fn of api_send_stored: leaves out the member named *ctx. */
static int skip_member(void *ctx, const bson_iter_t *it, const char **raw, size_t *rawlen)
{
    const char *const *name = ctx;
    (void)raw;
    (void)rawlen;
    return strcmp(bson_iter_key(it), *name) == 0 ? JSONX_MEMBER_SKIP : JSONX_MEMBER_KEEP;
}

void api_send_stored(http_request *req, int status, const char *message, const char *field,
                     const bson_t *doc, const char *skip)
{
    jsonx_buf b = {0};
    jsonx_buf_cat(&b, "{\"message\":");
    jsonx_buf_str(&b, message, strlen(message));
    jsonx_buf_raw(&b, ",", 1);
    jsonx_buf_str(&b, field, strlen(field));
    jsonx_buf_raw(&b, ":", 1);
    int wr = jsonx_buf_bson(&b, doc, skip ? skip_member : NULL, &skip);
    jsonx_buf_raw(&b, "}", 1);
    if (wr == 0 && jsonx_buf_ok(&b)) {
        http_send_owned(req, status, "application/json; charset=utf-8", b.data, b.len);
        b.data = NULL; /* MHD's now */
    } else {
        json_t *j = jsonx_from_bson(doc);
        if (skip)
            json_object_del(j, skip);
        http_send_json(req, status, json_pack("{s:s,s:o}", "message", message, field, j));
    }
    jsonx_buf_free(&b);
}
