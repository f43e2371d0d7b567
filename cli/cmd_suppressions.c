/*
 * minicrm suppressions: the suppression list from the operator's shell, straight against
 * MongoDB through lib/suppress (the same code the API uses; no API process needed).
 *
 *   minicrm suppressions list [--reason R] [--limit N] [--json]   newest first
 *   minicrm suppressions add EMAIL [--reason R]                   (default manual; idempotent)
 *   minicrm suppressions remove EMAIL
 *   minicrm suppressions import FILE.csv
 *   minicrm suppressions rebuild                                  recompute the customer flags
 *
 * import: the first line is a header naming the columns, one of them `email`, optionally
 * `reason` (others are ignored); fields are separated by commas and may be double-quoted.
 * Lines are written in batches of IMPORT_BATCH (lib/suppress: one bulk upsert and one flag
 * update per batch). Every line is accounted for: added, already suppressed (existing), blank,
 * or bad, each bad one printed on stderr as "FILE:LINE: why". The summary goes to stdout.
 *
 * Exit status: 0 done, 1 failed (database, no such suppression, bad lines in an import: the
 * good lines are written), 2 bad usage.
 */
#include "commands.h"
#include "dbpool.h"
#include "suppress.h"
#include "timeutil.h"

#include <bson/bson.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define IMPORT_BATCH    1000
#define IMPORT_LINE_MAX 4096
#define IMPORT_MAX_COLS 64

static void usage(FILE *f)
{
    fprintf(f, "usage: minicrm suppressions list [--reason R] [--limit N] [--json]\n"
               "       minicrm suppressions add EMAIL [--reason R]\n"
               "       minicrm suppressions remove EMAIL\n"
               "       minicrm suppressions import FILE.csv   (header: email[,reason])\n"
               "       minicrm suppressions rebuild           (recompute customer flags)\n"
               "reasons: unsubscribed, bounced, complained, manual\n");
}

typedef struct sdb {
    dbpool *db;
    mongoc_client_t *cl;
    mongoc_collection_t *supps, *custs;
} sdb;

static int sdb_open(const minicrm_config *cfg, sdb *s)
{
    char err[512];
    memset(s, 0, sizeof *s);
    s->db = dbpool_new(cfg->mongo.uri, 2, cfg->mongo.timeout_ms, "minicrm-suppressions", err,
                       sizeof err);
    if (!s->db || dbpool_set_durable_wc(s->db, cfg->mongo.write_concern, err, sizeof err) != 0) {
        fprintf(stderr, "minicrm suppressions: mongo: %s\n", err);
        dbpool_free(s->db);
        s->db = NULL;
        return -1;
    }
    s->cl = dbpool_pop(s->db);
    s->supps = dbpool_durable_collection(s->db, s->cl, DB_SUPPRESSIONS);
    s->custs = dbpool_collection(s->db, s->cl, DB_CUSTOMERS);
    return 0;
}

static void sdb_close(sdb *s)
{
    if (!s->db)
        return;
    mongoc_collection_destroy(s->supps);
    mongoc_collection_destroy(s->custs);
    dbpool_push(s->db, s->cl);
    dbpool_free(s->db);
}

static int parse_reason(const char *cmd, const char *s, suppress_reason *out)
{
    if (suppress_reason_parse(s, out) != 0) {
        fprintf(stderr,
                "minicrm suppressions %s: --reason must be one of unsubscribed, bounced, "
                "complained, manual\n",
                cmd);
        return -1;
    }
    return 0;
}

/* ---- list ------------------------------------------------------------------------------- */

static int s_list(cli_ctx *ctx)
{
    const char *reason = NULL;
    long limit = 100;
    bool as_json = false;
    suppress_reason why = SUPPRESS_MANUAL;
    for (int i = 2; i < ctx->argc; i++) {
        const char *a = ctx->argv[i];
        if (!strcmp(a, "--reason") && i + 1 < ctx->argc) {
            reason = ctx->argv[++i];
            if (parse_reason("list", reason, &why) != 0)
                return 2;
        } else if (!strcmp(a, "--limit") && i + 1 < ctx->argc) {
            char *end;
            errno = 0;
            limit = strtol(ctx->argv[++i], &end, 10);
            if (errno || *end || limit < 1 || limit > 1000000) {
                fprintf(stderr, "minicrm suppressions list: --limit must be 1-1000000\n");
                return 2;
            }
        } else if (!strcmp(a, "--json")) {
            as_json = true;
        } else {
            fprintf(stderr, "minicrm suppressions list: unexpected argument %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    sdb s;
    if (sdb_open(ctx->cfg, &s) != 0)
        return 1;
    bson_t filter = BSON_INITIALIZER;
    if (reason)
        BSON_APPEND_UTF8(&filter, "reason", suppress_reason_name(why));
    bson_t *opts = BCON_NEW("sort", "{", "at", BCON_INT32(-1), "_id", BCON_INT32(-1), "}", "limit",
                            BCON_INT64(limit), "projection", "{", "notify", BCON_INT32(0), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(s.supps, &filter, opts, NULL);
    const bson_t *doc;
    if (!as_json)
        printf("%-40s  %-12s  %-24s  %s\n", "EMAIL", "REASON", "AT", "SOURCE");
    else
        printf("[");
    bool first = true;
    while (mongoc_cursor_next(cur, &doc)) {
        if (as_json) {
            char *j = bson_as_relaxed_extended_json(doc, NULL);
            printf("%s\n  %s", first ? "" : ",", j ? j : "null");
            bson_free(j);
            first = false;
            continue;
        }
        bson_iter_t it;
        const char *email = "?", *rs = "?", *src = "-";
        char at[40] = "-";
        if (bson_iter_init_find(&it, doc, "email") && BSON_ITER_HOLDS_UTF8(&it))
            email = bson_iter_utf8(&it, NULL);
        if (bson_iter_init_find(&it, doc, "reason") && BSON_ITER_HOLDS_UTF8(&it))
            rs = bson_iter_utf8(&it, NULL);
        if (bson_iter_init_find(&it, doc, "source") && BSON_ITER_HOLDS_UTF8(&it))
            src = bson_iter_utf8(&it, NULL);
        if (bson_iter_init_find(&it, doc, "at") && BSON_ITER_HOLDS_DATE_TIME(&it))
            time_format_iso8601(bson_iter_date_time(&it), at);
        printf("%-40s  %-12s  %-24s  %s\n", email, rs, at, src);
    }
    if (as_json)
        printf("%s]\n", first ? "" : "\n");
    bson_error_t e;
    int status = 0;
    if (mongoc_cursor_error(cur, &e)) {
        fprintf(stderr, "minicrm suppressions list: %s\n", e.message);
        status = 1;
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    bson_destroy(&filter);
    sdb_close(&s);
    return status;
}

/* ---- add / remove / rebuild ------------------------------------------------------------- */

static int s_add(cli_ctx *ctx)
{
    const char *email = NULL;
    suppress_reason why = SUPPRESS_MANUAL;
    for (int i = 2; i < ctx->argc; i++) {
        if (!strcmp(ctx->argv[i], "--reason") && i + 1 < ctx->argc) {
            if (parse_reason("add", ctx->argv[++i], &why) != 0)
                return 2;
        } else if (!email && ctx->argv[i][0] != '-') {
            email = ctx->argv[i];
        } else {
            usage(stderr);
            return 2;
        }
    }
    char addr[SUPPRESS_EMAIL_MAX + 1];
    if (!email || suppress_email_norm(email, addr) != 0) {
        fprintf(stderr, "minicrm suppressions add: EMAIL must be a valid e-mail address\n");
        return 2;
    }
    sdb s;
    if (sdb_open(ctx->cfg, &s) != 0)
        return 1;
    bson_error_t e;
    bool created = false;
    int status = 0;
    if (suppress_add(s.supps, s.custs, addr, why, NULL, time_now_ms(), &created, &e) != 0) {
        fprintf(stderr, "minicrm suppressions add: %s\n", e.message);
        status = 1;
    } else {
        printf("%s %s (%s)\n", created ? "suppressed" : "already suppressed:", addr,
               suppress_reason_name(why));
    }
    sdb_close(&s);
    return status;
}

static int s_remove(cli_ctx *ctx)
{
    char addr[SUPPRESS_EMAIL_MAX + 1];
    if (ctx->argc != 3 || suppress_email_norm(ctx->argv[2], addr) != 0) {
        usage(stderr);
        return 2;
    }
    sdb s;
    if (sdb_open(ctx->cfg, &s) != 0)
        return 1;
    bson_error_t e;
    bool removed = false;
    int status = 0;
    if (suppress_remove(s.supps, s.custs, addr, &removed, &e) != 0) {
        fprintf(stderr, "minicrm suppressions remove: %s\n", e.message);
        status = 1;
    } else if (!removed) {
        fprintf(stderr, "minicrm suppressions remove: no suppression for %s\n", addr);
        status = 1;
    } else {
        printf("removed %s\n", addr);
    }
    sdb_close(&s);
    return status;
}

static int s_rebuild(cli_ctx *ctx)
{
    if (ctx->argc != 2) {
        usage(stderr);
        return 2;
    }
    sdb s;
    if (sdb_open(ctx->cfg, &s) != 0)
        return 1;
    bson_error_t e;
    int64_t set = 0, cleared = 0;
    int status = 0;
    if (suppress_rebuild_flags(s.supps, s.custs, &set, &cleared, &e) != 0) {
        fprintf(stderr, "minicrm suppressions rebuild: %s\n", e.message);
        status = 1;
    } else {
        printf("customer flags rebuilt: %lld set, %lld cleared\n", (long long)set,
               (long long)cleared);
    }
    sdb_close(&s);
    return status;
}

/* ---- import ----------------------------------------------------------------------------- */

/* Split a CSV line in place into at most max fields (double quotes around a field, "" inside
 * one). The number of fields, or -1 for an unterminated quote. */
static int csv_split(char *line, char **f, int max)
{
    int n = 0;
    char *p = line;
    for (;;) {
        if (n == max)
            return n + 1; /* too many: the caller reports it */
        char *out = p;
        f[n++] = p;
        if (*p == '"') {
            char *r = p + 1;
            for (;;) {
                if (!*r)
                    return -1;
                if (*r == '"' && r[1] == '"') {
                    *out++ = '"';
                    r += 2;
                } else if (*r == '"') {
                    r++;
                    break;
                } else {
                    *out++ = *r++;
                }
            }
            if (*r && *r != ',')
                return -1;
            *out = '\0';
            if (!*r)
                return n;
            p = r + 1;
        } else {
            char *c = strchr(p, ',');
            if (!c)
                return n;
            *c = '\0';
            p = c + 1;
        }
    }
}

/* Trim spaces around s in place. */
static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

typedef struct import_batch {
    char (*email)[SUPPRESS_EMAIL_MAX + 1];
    const char **ptr;
    suppress_reason *why;
    size_t n;
    long long added, existing;
} import_batch;

static int flush_batch(sdb *s, import_batch *b, int64_t now)
{
    if (b->n == 0)
        return 0;
    bson_error_t e;
    int64_t added = 0, existing = 0;
    if (suppress_add_batch(s->supps, s->custs, b->ptr, b->why, b->n, now, &added, &existing, &e) !=
        0) {
        fprintf(stderr, "minicrm suppressions import: %s\n", e.message);
        return -1;
    }
    b->added += added;
    b->existing += existing;
    b->n = 0;
    return 0;
}

static int s_import(cli_ctx *ctx)
{
    if (ctx->argc != 3) {
        usage(stderr);
        return 2;
    }
    const char *path = ctx->argv[2];
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "minicrm suppressions import: %s: %s\n", path, strerror(errno));
        return 1;
    }
    int status = 1;
    long lineno = 0, bad = 0, blank = 0;
    sdb s = {0};
    import_batch b = {0};
    char *line = malloc(IMPORT_LINE_MAX + 2);
    b.email = malloc(IMPORT_BATCH * sizeof *b.email);
    b.ptr = malloc(IMPORT_BATCH * sizeof *b.ptr);
    b.why = malloc(IMPORT_BATCH * sizeof *b.why);
    if (!line || !b.email || !b.ptr || !b.why) {
        fprintf(stderr, "minicrm suppressions import: out of memory\n");
        goto out;
    }
    for (size_t i = 0; i < IMPORT_BATCH; i++)
        b.ptr[i] = b.email[i];
    char *cols[IMPORT_MAX_COLS];
    int email_col = -1, reason_col = -1, ncols = 0;
    /* The header. */
    while (email_col < 0 && fgets(line, IMPORT_LINE_MAX + 2, f)) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        if (!*trim(line)) {
            blank++;
            continue;
        }
        ncols = csv_split(line, cols, IMPORT_MAX_COLS);
        for (int i = 0; i < ncols && i < IMPORT_MAX_COLS; i++) {
            char *c = trim(cols[i]);
            if (!strcasecmp(c, "email"))
                email_col = i;
            else if (!strcasecmp(c, "reason"))
                reason_col = i;
        }
        if (email_col < 0) {
            fprintf(stderr,
                    "minicrm suppressions import: %s:%ld: the header must name an email column "
                    "(email[,reason])\n",
                    path, lineno);
            status = 2;
            goto out;
        }
    }
    if (email_col < 0) {
        fprintf(stderr, "minicrm suppressions import: %s: empty file (no header)\n", path);
        status = 2;
        goto out;
    }
    if (sdb_open(ctx->cfg, &s) != 0)
        goto out;
    int64_t now = time_now_ms();
    while (fgets(line, IMPORT_LINE_MAX + 2, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len > IMPORT_LINE_MAX && line[len - 1] != '\n') {
            /* Too long: report it and skip the rest of the physical line. */
            int c;
            while ((c = fgetc(f)) != EOF && c != '\n')
                ;
            fprintf(stderr, "%s:%ld: line longer than %d bytes\n", path, lineno, IMPORT_LINE_MAX);
            bad++;
            continue;
        }
        line[strcspn(line, "\r\n")] = '\0';
        if (!*trim(line)) {
            blank++;
            continue;
        }
        int n = csv_split(line, cols, IMPORT_MAX_COLS);
        if (n < 0 || n > IMPORT_MAX_COLS || n <= email_col) {
            fprintf(stderr, "%s:%ld: %s\n", path, lineno,
                    n < 0 ? "unterminated quote" : "missing the email column");
            bad++;
            continue;
        }
        char *email = trim(cols[email_col]);
        suppress_reason why = SUPPRESS_MANUAL;
        if (reason_col >= 0 && reason_col < n && *trim(cols[reason_col]) &&
            suppress_reason_parse(trim(cols[reason_col]), &why) != 0) {
            fprintf(stderr,
                    "%s:%ld: reason \"%.40s\" is not one of unsubscribed, bounced, complained, "
                    "manual\n",
                    path, lineno, trim(cols[reason_col]));
            bad++;
            continue;
        }
        if (suppress_email_norm(email, b.email[b.n]) != 0) {
            fprintf(stderr, "%s:%ld: \"%.80s\" is not a valid e-mail address\n", path, lineno,
                    email);
            bad++;
            continue;
        }
        b.why[b.n++] = why;
        if (b.n == IMPORT_BATCH && flush_batch(&s, &b, now) != 0)
            goto out;
    }
    if (ferror(f)) {
        fprintf(stderr, "minicrm suppressions import: %s: read error\n", path);
        goto out;
    }
    if (flush_batch(&s, &b, now) != 0)
        goto out;
    printf("%s: %ld lines: header 1, added %lld, existing %lld, bad %ld, blank %ld\n", path, lineno,
           b.added, b.existing, bad, blank);
    status = bad ? 1 : 0;
    lineno = -1; /* done: the summary above says everything */
out:
    if (lineno >= 0 && status == 1 && (b.added || b.existing))
        fprintf(stderr,
                "minicrm suppressions import: written before stopping: %lld added, %lld "
                "existing\n",
                b.added, b.existing);
    fclose(f);
    free(line);
    free(b.email);
    free(b.ptr);
    free(b.why);
    sdb_close(&s);
    return status;
}

int cmd_suppressions(cli_ctx *ctx)
{
    static const cli_sub subs[] = {{"list", s_list},       {"add", s_add},
                                   {"remove", s_remove},   {"import", s_import},
                                   {"rebuild", s_rebuild}, {NULL, NULL}};
    return cli_dispatch(ctx, "suppressions", subs, usage);
}
