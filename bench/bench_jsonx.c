/*
 * bench_jsonx: CPU per document of jsonx_buf_bson (lib/jsonx), the writer of every list page
 * of minicrm-api, on documents shaped like the ones api_bench.sh lists: a customer (~150 bytes
 * of JSON), a campaign (~700 bytes, 22 members, 4 dates, a nested document) and a
 * communication log (~350 bytes). Single-threaded, no I/O: the slope of issue 13 point 2
 * without the HTTP and MongoDB parts.
 *
 *   bench_jsonx [N]     (documents per shape, default 200000)
 *
 * Prints us per document (CPU time of this thread) and the JSON bytes per document. Asserts
 * nothing (test_jsonx checks the bytes against jansson).
 */
#include "jsonx.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void customer(bson_t *d, int i)
{
    bson_oid_t oid;
    char name[32], email[48];
    bson_oid_init(&oid, NULL);
    snprintf(name, sizeof name, "Bench %d", i);
    snprintf(email, sizeof email, "b%d@bench%d.io", i, i % 7);
    BSON_APPEND_OID(d, "_id", &oid);
    BSON_APPEND_UTF8(d, "name", name);
    BSON_APPEND_UTF8(d, "email", email);
    BSON_APPEND_DOUBLE(d, "total_spend", (double)(i * 37 % 9000));
    BSON_APPEND_DATE_TIME(d, "createdAt", 1764700000000LL + i);
    BSON_APPEND_DATE_TIME(d, "updatedAt", 1764700000000LL + i);
}

static void campaign(bson_t *d, int i)
{
    bson_oid_t oid;
    bson_t sub;
    bson_oid_init(&oid, NULL);
    BSON_APPEND_OID(d, "_id", &oid);
    BSON_APPEND_UTF8(d, "name", "Bench win-back");
    BSON_APPEND_DOCUMENT_BEGIN(d, "rules", &sub);
    BSON_APPEND_DOUBLE(&sub, "min_spend", 1.0);
    bson_append_document_end(d, &sub);
    BSON_APPEND_UTF8(d, "message", "Hi {{name}}, 10% off!");
    BSON_APPEND_ARRAY_BEGIN(d, "tags", &sub);
    bson_append_array_end(d, &sub);
    BSON_APPEND_DATE_TIME(d, "tagUpdatedAt", 1764700000000LL + i);
    BSON_APPEND_INT64(d, "audience_size", 1000);
    BSON_APPEND_UTF8(d, "status", "QUEUED");
    static const char *const counters[] = {"total",   "pending",    "sent",   "failed", "cancelled",
                                           "bounced", "complained", "opened", "clicked"};
    for (size_t k = 0; k < sizeof counters / sizeof counters[0]; k++)
        BSON_APPEND_INT64(d, counters[k], i % 5);
    BSON_APPEND_DOCUMENT_BEGIN(d, "checkpoint", &sub);
    BSON_APPEND_NULL(&sub, "last_customer_id");
    BSON_APPEND_INT64(&sub, "written", 0);
    bson_append_document_end(d, &sub);
    BSON_APPEND_OID(d, "created_by", &oid);
    BSON_APPEND_DATE_TIME(d, "rules_now", 1764700000000LL + i);
    BSON_APPEND_DATE_TIME(d, "createdAt", 1764700000000LL + i);
    BSON_APPEND_DATE_TIME(d, "updatedAt", 1764700000000LL + i);
}

static void logdoc(bson_t *d, int i)
{
    bson_oid_t oid;
    bson_oid_init(&oid, NULL);
    BSON_APPEND_OID(d, "_id", &oid);
    BSON_APPEND_OID(d, "campaign_id", &oid);
    BSON_APPEND_OID(d, "customer_id", &oid);
    BSON_APPEND_UTF8(d, "message", "Hi there, 10% off everything this week!");
    BSON_APPEND_UTF8(d, "status", "PENDING");
    BSON_APPEND_NULL(d, "vendorMsgId");
    BSON_APPEND_INT32(d, "resends", 0);
    BSON_APPEND_DATE_TIME(d, "createdAt", 1764700000000LL + i);
    BSON_APPEND_DATE_TIME(d, "updatedAt", 1764700000000LL + i);
}

static void run(const char *name, void (*make)(bson_t *, int), int n)
{
    enum { NDOCS = 1000 };
    bson_t *docs = calloc(NDOCS, sizeof *docs);
    if (!docs)
        return;
    for (int i = 0; i < NDOCS; i++) {
        bson_init(&docs[i]);
        make(&docs[i], i);
    }
    jsonx_buf b = {0};
    size_t bytes = 0;
    double t0 = cpu_us();
    for (int i = 0; i < n; i++) {
        if (i % NDOCS == 0) {
            bytes = b.len;
            jsonx_buf_reset(&b);
        }
        jsonx_buf_bson(&b, &docs[i % NDOCS], NULL, NULL);
    }
    double t1 = cpu_us();
    printf("%-10s %6.3f us/doc  %5zu bytes/doc\n", name, (t1 - t0) / n, bytes / NDOCS);
    jsonx_buf_free(&b);
    for (int i = 0; i < NDOCS; i++)
        bson_destroy(&docs[i]);
    free(docs);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 200000;
    if (n < 1000)
        n = 1000;
    run("customer", customer, n);
    run("campaign", campaign, n);
    run("log", logdoc, n);
    return 0;
}
