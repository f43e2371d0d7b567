/*
 * api_scale: seeds the collections of bench/api_scale.sh at millions of rows, straight into
 * MongoDB (or devdb) with unordered insert_many batches, in the shapes the programs write them
 * (issue 13 point 8: the latencies of points 5-7 at 1,000,000 and 3,000,000 rows).
 *
 *   bench_api_scale MONGO_URI CUSTOMERS ORDERS LOGS
 *
 *   - CUSTOMERS customers as POST /customers stores them (lower-case e-mail over six domains,
 *     its normalised domain, total_spend 0-10,000, last_visit_date within a year, createdAt
 *     within two years);
 *   - ORDERS completed orders of random customers, createdAt within a year (newest first is the
 *     list's order);
 *   - LOGS communication logs: campaigns of one log per customer (the fan-out's deterministic
 *     log ids), as many campaigns as LOGS needs (the last one partial), each COMPLETED with its
 *     counters equal to its logs (90% SENT, 10% FAILED), createdAt one ms apart.
 * Prints, one per line: "seeded customers N in S s", ... and "campaign <hex> logs N" for the
 * largest campaign. Fixed random seed: two runs store the same values (not the same ids).
 * Exit status 0, or 1 with a message on stderr. A bench tool, not a test: it asserts nothing.
 */
#include "campaign.h"
#include "dbpool.h"
#include "rules.h"
#include "timeutil.h"

#include <bson/bson.h>
#include <mongoc/mongoc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 10000
#define DAY   INT64_C(86400000)

static const char *const domains[] = {"gmail.com",   "yahoo.com", "outlook.com",
                                      "example.com", "proton.me", "acme.io"};

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void)
{
    uint64_t x = (rng_state += 0x9e3779b97f4a7c15ULL);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Insert docs[0..n) unordered, then free them. 0 or -1 (message printed). */
static int flush(mongoc_collection_t *coll, bson_t **docs, size_t n)
{
    bson_t *opts = BCON_NEW("ordered", BCON_BOOL(false));
    bson_error_t e;
    int rc = 0;
    if (n && !mongoc_collection_insert_many(coll, (const bson_t **)docs, n, opts, NULL, &e)) {
        fprintf(stderr, "api_scale: insert into %s: %s\n", mongoc_collection_get_name(coll),
                e.message);
        rc = -1;
    }
    for (size_t i = 0; i < n; i++)
        bson_destroy(docs[i]);
    bson_destroy(opts);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: bench_api_scale MONGO_URI CUSTOMERS ORDERS LOGS\n");
        return 2;
    }
    long n_cust = strtol(argv[2], NULL, 10), n_ord = strtol(argv[3], NULL, 10),
         n_logs = strtol(argv[4], NULL, 10);
    if (n_cust < 1 || n_ord < 0 || n_logs < 0) {
        fprintf(stderr, "api_scale: CUSTOMERS >= 1, ORDERS and LOGS >= 0\n");
        return 2;
    }
    mongoc_init();
    bson_error_t e;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(argv[1], &e);
    if (!uri) {
        fprintf(stderr, "api_scale: %s\n", e.message);
        return 1;
    }
    const char *dbname = mongoc_uri_get_database(uri);
    mongoc_client_t *cl = mongoc_client_new_from_uri(uri);
    mongoc_collection_t *custs = mongoc_client_get_collection(cl, dbname, DB_CUSTOMERS);
    mongoc_collection_t *orders = mongoc_client_get_collection(cl, dbname, DB_ORDERS);
    mongoc_collection_t *camps = mongoc_client_get_collection(cl, dbname, DB_CAMPAIGNS);
    mongoc_collection_t *logs = mongoc_client_get_collection(cl, dbname, DB_LOGS);
    bson_t **docs = calloc(BATCH, sizeof *docs);
    bson_oid_t *ids = calloc((size_t)n_cust, sizeof *ids);
    int status = 1;
    if (!docs || !ids)
        goto out;
    int64_t now = time_now_ms();

    int64_t t0 = time_mono_ms();
    size_t k = 0;
    for (long i = 0; i < n_cust; i++) {
        char name[48], email[96], dom[64];
        snprintf(name, sizeof name, "Customer %ld", i);
        snprintf(email, sizeof email, "c%ld@%s", i, domains[rnd() % 6]);
        bson_oid_init(&ids[i], NULL);
        bson_t *d = bson_new();
        BSON_APPEND_OID(d, "_id", &ids[i]);
        BSON_APPEND_UTF8(d, "name", name);
        BSON_APPEND_UTF8(d, "email", email);
        BSON_APPEND_DOUBLE(d, "total_spend", (double)(rnd() % 1000000) / 100.0);
        BSON_APPEND_DATE_TIME(d, "last_visit_date", now - (int64_t)(rnd() % (365 * DAY)));
        BSON_APPEND_DATE_TIME(d, "createdAt", now - (int64_t)(rnd() % (730 * DAY)));
        BSON_APPEND_DATE_TIME(d, "updatedAt", now);
        BSON_APPEND_UTF8(d, RULES_DOMAIN_FIELD, rules_email_domain(email, dom, sizeof dom));
        docs[k++] = d;
        if (k == BATCH) {
            if (flush(custs, docs, k) != 0)
                goto out;
            k = 0;
        }
    }
    if (flush(custs, docs, k) != 0)
        goto out;
    k = 0;
    printf("seeded customers %ld in %.1f s\n", n_cust, (double)(time_mono_ms() - t0) / 1000);
    fflush(stdout);

    t0 = time_mono_ms();
    for (long i = 0; i < n_ord; i++) {
        bson_oid_t oid;
        bson_oid_init(&oid, NULL);
        int64_t at = now - (int64_t)(rnd() % (365 * DAY));
        bson_t *d =
            BCON_NEW("_id", BCON_OID(&oid), "customer_id", BCON_OID(&ids[rnd() % (uint64_t)n_cust]),
                     "amount", BCON_DOUBLE((double)(rnd() % 100000) / 100.0), "status",
                     BCON_UTF8("completed"), "date", BCON_DATE_TIME(at), "createdAt",
                     BCON_DATE_TIME(at), "updatedAt", BCON_DATE_TIME(at));
        docs[k++] = d;
        if (k == BATCH) {
            if (flush(orders, docs, k) != 0)
                goto out;
            k = 0;
        }
    }
    if (flush(orders, docs, k) != 0)
        goto out;
    k = 0;
    printf("seeded orders %ld in %.1f s\n", n_ord, (double)(time_mono_ms() - t0) / 1000);
    fflush(stdout);

    t0 = time_mono_ms();
    long left = n_logs, biggest = 0;
    char big_hex[25] = "";
    for (int c = 0; left > 0; c++) {
        long m = left < n_cust ? left : n_cust;
        left -= m;
        long sent = 0, failed = 0;
        bson_oid_t cid;
        bson_oid_init(&cid, NULL);
        int64_t created = now - DAY + c; /* logs one ms apart, newest campaign last */
        for (long i = 0; i < m; i++) {
            bson_oid_t lid;
            campaign_log_id(&cid, &ids[i], &lid);
            bool ok = rnd() % 10 != 0;
            sent += ok;
            failed += !ok;
            char vmid[32];
            snprintf(vmid, sizeof vmid, "v%ld-%d", i, c);
            int64_t at = created + i;
            docs[k++] = BCON_NEW(
                "_id", BCON_OID(&lid), "campaign_id", BCON_OID(&cid), "customer_id",
                BCON_OID(&ids[i]), "message", BCON_UTF8("Hi there, 10% off everything this week!"),
                "status", BCON_UTF8(ok ? "SENT" : "FAILED"), "vendorMsgId", BCON_UTF8(vmid),
                "resends", BCON_INT32(0), "createdAt", BCON_DATE_TIME(at), "updatedAt",
                BCON_DATE_TIME(at + 500), "deliveredAt", BCON_DATE_TIME(at + 500));
            if (k == BATCH) {
                if (flush(logs, docs, k) != 0)
                    goto out;
                k = 0;
            }
        }
        if (flush(logs, docs, k) != 0)
            goto out;
        k = 0;
        char name[64];
        snprintf(name, sizeof name, "Scale campaign %d", c);
        bson_t *cd = BCON_NEW(
            "_id", BCON_OID(&cid), "name", BCON_UTF8(name), "rules", "{", "}", "message", BCON_NULL,
            "tags", "[", "]", "audience_size", BCON_INT64(m), "status", BCON_UTF8("COMPLETED"),
            "total", BCON_INT64(m), "pending", BCON_INT64(0), "sent", BCON_INT64(sent), "failed",
            BCON_INT64(failed), "cancelled", BCON_INT64(0), "fanout_done", BCON_BOOL(true),
            "rules_now", BCON_DATE_TIME(created), "createdAt", BCON_DATE_TIME(created), "updatedAt",
            BCON_DATE_TIME(now));
        if (!mongoc_collection_insert_one(camps, cd, NULL, NULL, &e)) {
            fprintf(stderr, "api_scale: insert campaign: %s\n", e.message);
            bson_destroy(cd);
            goto out;
        }
        bson_destroy(cd);
        if (m > biggest) {
            biggest = m;
            bson_oid_to_string(&cid, big_hex);
        }
    }
    printf("seeded logs %ld in %.1f s\n", n_logs, (double)(time_mono_ms() - t0) / 1000);
    if (big_hex[0])
        printf("campaign %s logs %ld\n", big_hex, biggest);
    status = 0;
out:
    free(docs);
    free(ids);
    mongoc_collection_destroy(custs);
    mongoc_collection_destroy(orders);
    mongoc_collection_destroy(camps);
    mongoc_collection_destroy(logs);
    mongoc_client_destroy(cl);
    mongoc_uri_destroy(uri);
    mongoc_cleanup();
    return status;
}
