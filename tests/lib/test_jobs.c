/*
 * test_jobs: lib/jobs round trips and rejects, and lib/campaign's names, parses and log ids.
 *
 *  - every encoder's text is valid JSON (jansson agrees) with today's field names, and decodes
 *    back to what was encoded (campaign, send single and batch, receipt single and batch);
 *  - batch caps close a job at JOBS_SENDS_PER_JOB / JOBS_RECEIPTS_PER_JOB items;
 *  - malformed jobs and items are rejected with the dead-letter reasons operators know;
 *  - ai jobs (a campaign's, a suggest-tags request's) round trip and bad ones are refused;
 *  - event jobs: names parse back, ids are deterministic per (type, subject) and differ across
 *    types, the encoding is jansson-valid and decodes back, bad ones are refused;
 *  - webhook delivery jobs round trip (with the queue's _attempts read back), the test type is
 *    accepted, unknown types and bad endpoint ids are refused;
 *  - free text (messages, vendorMsgId, reasons) with quotes, backslashes, control characters
 *    and non-ASCII survives the trip.
 */
#include "campaign.h"
#include "hmac.h"
#include "jobs.h"
#include "test.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LID "0123456789abcdef01234567"
#define CID "65f0c0ffee0000000000abcd"
#define UID "aaaaaaaaaaaaaaaaaaaaaaaa"

static json_t *parse(const char *s, size_t len)
{
    json_error_t e;
    return json_loadb(s, len, JSON_REJECT_DUPLICATES, &e);
}

TEST(status_names)
{
    for (int i = 0; i < CAMPAIGN_STATUS_COUNT; i++) {
        campaign_status st;
        const char *n = campaign_status_name((campaign_status)i);
        CHECK_INT_EQ(campaign_status_parse(n, strlen(n), &st), 0);
        CHECK_INT_EQ(st, i);
    }
    for (int i = 0; i < CAMPAIGN_LOG_STATUS_COUNT; i++) {
        campaign_log_status st;
        const char *n = campaign_log_status_name((campaign_log_status)i);
        CHECK_INT_EQ(campaign_log_status_parse(n, strlen(n), &st), 0);
        CHECK_INT_EQ(st, i);
    }
    campaign_status cs;
    campaign_log_status ls;
    CHECK_STR_EQ(campaign_status_name(CAMPAIGN_SENDING), "SENDING");
    CHECK_STR_EQ(campaign_log_status_name(CAMPAIGN_LOG_FAILED), "FAILED");
    CHECK_INT_EQ(campaign_status_parse("FAILED", 6, &cs), -1); /* no such campaign state */
    CHECK_INT_EQ(campaign_status_parse("QUEUE", 5, &cs), -1);
    CHECK_INT_EQ(campaign_log_status_parse("SENT\0", 5, &ls), -1);
    CHECK_INT_EQ(campaign_log_status_parse("sent", 4, &ls), -1);
    CHECK_INT_EQ(campaign_log_status_parse(NULL, 0, &ls), -1);
    CHECK(campaign_status_final(CAMPAIGN_COMPLETED) && !campaign_status_final(CAMPAIGN_SENDING));
    CHECK(!campaign_log_status_final(CAMPAIGN_LOG_PENDING) &&
          campaign_log_status_final(CAMPAIGN_LOG_SENT));
}

TEST(log_id_deterministic)
{
    bson_oid_t c, u, a, b;
    bson_oid_init_from_string(&c, CID);
    bson_oid_init_from_string(&u, UID);
    campaign_log_id(&c, &u, &a);
    campaign_log_id(&c, &u, &b);
    CHECK(bson_oid_equal(&a, &b));
    char hex[25];
    bson_oid_to_string(&a, hex);
    /* first 12 bytes of SHA-256(campaign || customer): pinned, log ids of running campaigns
     * must not change across versions */
    CHECK_STR_EQ(hex, "75328fdf07642189781cb009");
}

TEST(vendor_msg_id_is_the_routes_and_the_resends)
{
    /* POST /api/vendor/send answers this id and the sweeper's re-send of the same log carries
     * it: pinned to HMAC-SHA256("k", log hex), so both paths agree across versions. */
    char a[CAMPAIGN_VMID_LEN + 1], b[CAMPAIGN_VMID_LEN + 1], other[CAMPAIGN_VMID_LEN + 1];
    campaign_vendor_msg_id("k", CID, a);
    campaign_vendor_msg_id("k", CID, b);
    campaign_vendor_msg_id("other-secret", CID, other);
    CHECK_STR_EQ(a, b);
    CHECK(strlen(a) == CAMPAIGN_VMID_LEN && !strncmp(a, "msg_", 4));
    CHECK(strcmp(a, other) != 0);
    char mac[HMAC_HEX_LEN + 1], want[CAMPAIGN_VMID_LEN + 1];
    hmac_sha256_hex("k", 1, CID, strlen(CID), mac);
    snprintf(want, sizeof want, "msg_%.24s", mac);
    CHECK_STR_EQ(a, want);
}

TEST(campaign_job)
{
    char buf[JOBS_CAMPAIGN_BYTES], hex[25], why[128];
    int n = jobs_campaign_encode(CID, buf, sizeof buf);
    CHECK(n > 0);
    CHECK_STR_EQ(buf, "{\"campaign_id\":\"" CID "\"}");
    CHECK_INT_EQ(jobs_campaign_decode(buf, (size_t)n, hex, why, sizeof why), 0);
    CHECK_STR_EQ(hex, CID);
    CHECK_INT_EQ(jobs_campaign_encode("nope", buf, sizeof buf), -1);
    static const char *const bad[][2] = {
        {"{}", "needs campaign_id"},
        {"{\"campaign_id\":7}", "needs campaign_id"},
        {"[\"" CID "\"]", "needs campaign_id"},
        {"not json", "needs campaign_id"},
        {"{\"campaign_id\":\"xyz\"}", "24-hex"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_INT_EQ(jobs_campaign_decode(bad[i][0], strlen(bad[i][0]), hex, why, sizeof why), -1);
        CHECK_STR_CONTAINS(why, bad[i][1]);
    }
}

TEST(send_single_round_trip)
{
    jsonx_buf b = {0};
    const char *msg = "Hi \"Ann\"\\ \n\t\x01 caf\xc3\xa9 \xe2\x82\xac";
    jobs_send s = {.log_id = LID,
                   .campaign_id = CID,
                   .customer_id = UID,
                   .message = msg,
                   .vendor_msg_id = "msg_abc",
                   .resend = 2};
    CHECK_INT_EQ(jobs_send_encode(&b, &s), 0);
    json_t *j = parse(b.data, b.len);
    CHECK(j != NULL);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "log_id")), LID);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "campaign_id")), CID);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "customer_id")), UID);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "message")), msg);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "vendorMsgId")), "msg_abc");
    CHECK_INT_EQ(json_integer_value(json_object_get(j, "resend")), 2);
    /* exactly what the compact dump of the same members writes */
    char *dump = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    CHECK_STR_EQ(b.data, dump);
    free(dump);
    json_decref(j);

    jscan js = {0};
    jobs_reader r;
    jobs_send_in in;
    const char *why = NULL;
    CHECK_INT_EQ(jobs_sends_open(&r, &js, b.data, b.len, &why), 0);
    CHECK(!r.batch);
    CHECK_INT_EQ(r.n, 1);
    CHECK_INT_EQ(jobs_sends_next(&r, &in, &why), 1);
    CHECK_STR_EQ(in.log_id, LID);
    CHECK_STR_EQ(in.campaign_id, CID);
    CHECK_STR_EQ(in.vendor_msg_id, "msg_abc");
    CHECK_INT_EQ(jobs_sends_next(&r, &in, &why), 0);

    /* minimal: no optional member written, none decoded */
    jsonx_buf_reset(&b);
    jobs_send m = {.log_id = LID};
    CHECK_INT_EQ(jobs_send_encode(&b, &m), 0);
    CHECK_STR_EQ(b.data, "{\"log_id\":\"" LID "\",\"message\":\"\"}");
    CHECK_INT_EQ(jobs_sends_open(&r, &js, b.data, b.len, &why), 0);
    CHECK_INT_EQ(jobs_sends_next(&r, &in, &why), 1);
    CHECK_STR_EQ(in.campaign_id, "");
    CHECK_STR_EQ(in.vendor_msg_id, "");
    jsonx_buf_free(&b);
    jscan_release(&js);
}

TEST(send_unsubscribe_url_round_trip)
{
    const char *url = "https://crm.example/u/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    jsonx_buf b = {0};
    jobs_send s = {.log_id = LID, .message = "m", .unsubscribe_url = url};
    CHECK_INT_EQ(jobs_send_encode(&b, &s), 0);
    json_t *j = parse(b.data, b.len);
    CHECK(j != NULL);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "unsubscribe_url")), url);
    char *dump = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    CHECK_STR_EQ(b.data, dump);
    free(dump);
    json_decref(j);
    jscan js = {0};
    jobs_reader r;
    jobs_send_in in;
    const char *why = NULL;
    CHECK_INT_EQ(jobs_sends_open(&r, &js, b.data, b.len, &why), 0);
    CHECK_INT_EQ(jobs_sends_next(&r, &in, &why), 1);
    CHECK_STR_EQ(in.unsubscribe_url, url);

    /* in a batch, per send; a send without one decodes as "" */
    jobs_send_batch bb = {0};
    jobs_send s2 = {.log_id = LID, .customer_id = UID, .message = "x"};
    CHECK_INT_EQ(jobs_send_batch_add(&bb, CID, &s), 0);
    CHECK_INT_EQ(jobs_send_batch_add(&bb, CID, &s2), 0);
    char *data = NULL;
    size_t len = 0;
    CHECK_INT_EQ(jobs_send_batch_take(&bb, &data, &len), 0);
    CHECK_INT_EQ(jobs_sends_open(&r, &js, data, len, &why), 0);
    CHECK_INT_EQ(jobs_sends_next(&r, &in, &why), 1);
    CHECK_STR_EQ(in.unsubscribe_url, url);
    CHECK_INT_EQ(jobs_sends_next(&r, &in, &why), 1);
    CHECK_STR_EQ(in.unsubscribe_url, "");
    free(data);
    jobs_send_batch_release(&bb);
    jsonx_buf_free(&b);
    jscan_release(&js);
}

TEST(send_batch_round_trip_and_cap)
{
    jobs_send_batch bb = {0};
    char lid[25];
    int r = 0;
    size_t added = 0;
    while (r == 0) {
        snprintf(lid, sizeof lid, "%024zx", added);
        jobs_send s = {.log_id = lid, .customer_id = UID, .message = "m\xc3\xa9"};
        r = jobs_send_batch_add(&bb, CID, &s);
        added++;
    }
    CHECK_INT_EQ(r, 1);
    CHECK_INT_EQ(added, JOBS_SENDS_PER_JOB);
    char *data = NULL;
    size_t len = 0;
    CHECK_INT_EQ(jobs_send_batch_take(&bb, &data, &len), 0);
    CHECK_INT_EQ(jobs_send_batch_take(&bb, &data, &len) == 1, 1); /* empty now */
    json_t *j = parse(data, len);
    CHECK(j != NULL);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "campaign_id")), CID);
    CHECK_INT_EQ(json_array_size(json_object_get(j, "sends")), JOBS_SENDS_PER_JOB);
    json_decref(j);

    jscan js = {0};
    jobs_reader rd;
    jobs_send_in in;
    const char *why = NULL;
    CHECK_INT_EQ(jobs_sends_open(&rd, &js, data, len, &why), 0);
    CHECK(rd.batch);
    CHECK_INT_EQ(rd.n, JOBS_SENDS_PER_JOB);
    size_t k = 0;
    while (jobs_sends_next(&rd, &in, &why) == 1) {
        snprintf(lid, sizeof lid, "%024zx", k++);
        CHECK_STR_EQ(in.log_id, lid);
        CHECK_STR_EQ(in.campaign_id, CID); /* the batch's */
    }
    CHECK_INT_EQ(k, JOBS_SENDS_PER_JOB);
    free(data);
    jobs_send_batch_release(&bb);
    jscan_release(&js);
}

/* The campaign's own send rate rides on every batch job; a job without one (or with a value
 * that is not a positive number) reads as 0 (none), and unknown members are ignored. */
TEST(send_batch_rate)
{
    jobs_send_batch bb = {.rate_per_s = 12.5};
    jobs_send s = {.log_id = UID, .customer_id = UID, .message = "m"};
    CHECK_INT_EQ(jobs_send_batch_add(&bb, CID, &s), 0);
    char *data = NULL;
    size_t len = 0;
    CHECK_INT_EQ(jobs_send_batch_take(&bb, &data, &len), 0);
    json_t *j = parse(data, len);
    CHECK(j != NULL);
    CHECK(json_real_value(json_object_get(j, "rate_per_s")) == 12.5);
    json_decref(j);
    jscan js = {0};
    jobs_reader rd;
    const char *why = NULL;
    CHECK_INT_EQ(jobs_sends_open(&rd, &js, data, len, &why), 0);
    CHECK(rd.rate_per_s == 12.5);
    free(data);
    static const char *const others[] = {
        "{\"campaign_id\":\"" CID "\",\"sends\":[{\"log_id\":\"" UID "\"}]}",
        "{\"campaign_id\":\"" CID "\",\"rate_per_s\":-3,\"x\":1,\"sends\":[{\"log_id\":\"" UID
        "\"}]}",
        "{\"campaign_id\":\"" CID "\",\"rate_per_s\":\"9\",\"sends\":[{\"log_id\":\"" UID "\"}]}",
    };
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        CHECK_INT_EQ(jobs_sends_open(&rd, &js, others[i], strlen(others[i]), &why), 0);
        CHECK(rd.rate_per_s == 0);
    }
    jobs_send_batch_release(&bb);
    jscan_release(&js);
}

/* A single send (the sweeper's re-send) carries its campaign's rate the same way; one without
 * reads as 0, and the send itself reads as before. */
TEST(send_single_rate)
{
    jsonx_buf b = {0};
    jobs_send s = {
        .log_id = LID, .campaign_id = CID, .message = "m", .resend = 1, .rate_per_s = 14};
    CHECK_INT_EQ(jobs_send_encode(&b, &s), 0);
    json_t *j = parse(b.data, b.len);
    CHECK(j != NULL);
    CHECK(json_number_value(json_object_get(j, "rate_per_s")) == 14);
    json_decref(j);
    jscan js = {0};
    jobs_reader rd;
    jobs_send_in in;
    const char *why = NULL;
    CHECK_INT_EQ(jobs_sends_open(&rd, &js, b.data, b.len, &why), 0);
    CHECK(!rd.batch);
    CHECK(rd.rate_per_s == 14);
    CHECK_INT_EQ(jobs_sends_next(&rd, &in, &why), 1);
    CHECK_STR_EQ(in.log_id, LID);
    CHECK_STR_EQ(in.campaign_id, CID);
    jsonx_buf_free(&b);
    s.rate_per_s = 0;
    CHECK_INT_EQ(jobs_send_encode(&b, &s), 0);
    CHECK(strstr(b.data, "rate_per_s") == NULL);
    CHECK_INT_EQ(jobs_sends_open(&rd, &js, b.data, b.len, &why), 0);
    CHECK(rd.rate_per_s == 0);
    jsonx_buf_free(&b);
    jscan_release(&js);
}

TEST(send_rejects)
{
    jscan js = {0};
    jobs_reader rd;
    jobs_send_in in;
    const char *why = NULL;
    CHECK_INT_EQ(jobs_sends_open(&rd, &js, "[1]", 3, &why), -1);
    CHECK_STR_EQ(why, "malformed send: not a JSON object");
    const char *empty = "{\"campaign_id\":\"" CID "\",\"sends\":[]}";
    CHECK_INT_EQ(jobs_sends_open(&rd, &js, empty, strlen(empty), &why), -1);
    CHECK_STR_EQ(why, "malformed send job: sends must be a non-empty array");
    CHECK(rd.batch);
    const char *mixed = "{\"campaign_id\":\"" CID "\",\"sends\":[7,{\"log_id\":\"x\"},"
                        "{\"log_id\":\"" LID "\",\"campaign_id\":\"bad\"}]}";
    CHECK_INT_EQ(jobs_sends_open(&rd, &js, mixed, strlen(mixed), &why), 0);
    CHECK_INT_EQ(jobs_sends_next(&rd, &in, &why), -1);
    CHECK_STR_EQ(why, "malformed send: not a JSON object");
    CHECK_INT_EQ(rd.rawlen, 1);
    CHECK_INT_EQ(jobs_sends_next(&rd, &in, &why), -1);
    CHECK_STR_EQ(why, "malformed send: log_id must be a 24-hex id");
    CHECK_INT_EQ(jobs_sends_next(&rd, &in, &why), 1);
    CHECK_STR_EQ(in.campaign_id, ""); /* its own campaign_id wins, and is not an id */
    CHECK_INT_EQ(jobs_sends_next(&rd, &in, &why), 0);
    jscan_release(&js);
}

TEST(receipt_round_trip)
{
    jobs_receipt r = {.status = CAMPAIGN_LOG_FAILED, .at = 1700000000123LL};
    memcpy(r.log_id, LID, 25);
    memcpy(r.campaign_id, CID, 25);
    snprintf(r.vendor_msg_id, sizeof r.vendor_msg_id, "v\"1\\\xc3\xa9");
    snprintf(r.reason, sizeof r.reason, "bounced:\n\"full\"");
    jsonx_buf b = {0};
    CHECK_INT_EQ(jobs_receipt_encode(&b, &r), 0);
    json_t *j = parse(b.data, b.len);
    CHECK(j != NULL);
    char *dump = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    CHECK_STR_EQ(b.data, dump);
    free(dump);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "status")), "FAILED");
    CHECK_INT_EQ(json_integer_value(json_object_get(j, "at")), 1700000000123LL);
    json_decref(j);

    jscan js = {0};
    jobs_reader rd;
    jobs_receipt out;
    char why[256];
    CHECK_INT_EQ(jobs_receipts_open(&rd, &js, b.data, b.len, why, sizeof why), 0);
    CHECK(!rd.batch);
    CHECK_INT_EQ(jobs_receipts_next(&rd, &out, why, sizeof why), 1);
    CHECK_STR_EQ(out.log_id, LID);
    CHECK_STR_EQ(out.campaign_id, CID);
    CHECK_STR_EQ(out.vendor_msg_id, r.vendor_msg_id);
    CHECK_STR_EQ(out.reason, r.reason);
    CHECK_INT_EQ(out.status, CAMPAIGN_LOG_FAILED);
    CHECK_INT_EQ(out.at, r.at);

    /* no vendorMsgId: written as null; no campaign: not written */
    jobs_receipt p = {.status = CAMPAIGN_LOG_FAILED, .at = 5};
    memcpy(p.log_id, LID, 25);
    jsonx_buf_reset(&b);
    CHECK_INT_EQ(jobs_receipt_encode(&b, &p), 0);
    CHECK_STR_EQ(b.data, "{\"log_id\":\"" LID "\",\"vendorMsgId\":null,\"status\":\"FAILED\","
                         "\"at\":5}");
    CHECK_INT_EQ(jobs_receipts_open(&rd, &js, b.data, b.len, why, sizeof why), 0);
    CHECK_INT_EQ(jobs_receipts_next(&rd, &out, why, sizeof why), 1);
    CHECK_STR_EQ(out.reason, "vendor reported FAILED");
    jsonx_buf_free(&b);
    jscan_release(&js);
}

/* The event shapes: each status name round-trips with its kind, the event id travels (read
 * from "event_id" or "id"), a bounce always carries the reason "bounced", and an unknown type
 * passed on raw inside a batch is that item's error, not the batch's. */
TEST(receipt_event_kinds)
{
    static const struct {
        const char *name;
        campaign_log_status st;
        jobs_receipt_kind kind;
    } k[] = {{"SENT", CAMPAIGN_LOG_SENT, JOBS_RCPT_DELIVERY},
             {"FAILED", CAMPAIGN_LOG_FAILED, JOBS_RCPT_DELIVERY},
             {"PENDING", CAMPAIGN_LOG_PENDING, JOBS_RCPT_DELIVERY},
             {"BOUNCED", CAMPAIGN_LOG_FAILED, JOBS_RCPT_BOUNCED},
             {"COMPLAINED", CAMPAIGN_LOG_PENDING, JOBS_RCPT_COMPLAINED},
             {"OPENED", CAMPAIGN_LOG_PENDING, JOBS_RCPT_OPENED},
             {"CLICKED", CAMPAIGN_LOG_PENDING, JOBS_RCPT_CLICKED}};
    campaign_log_status st;
    jobs_receipt_kind kind;
    CHECK_INT_EQ(jobs_receipt_status_parse("CANCELLED", 9, &st, &kind), -1);
    CHECK_INT_EQ(jobs_receipt_status_parse("DELIVERED", 9, &st, &kind), -1);
    jobs_receipt_batch bb = {0};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        CHECK_INT_EQ(jobs_receipt_status_parse(k[i].name, strlen(k[i].name), &st, &kind), 0);
        CHECK_INT_EQ(st, k[i].st);
        CHECK_INT_EQ(kind, k[i].kind);
        CHECK_STR_EQ(jobs_receipt_status_name(st, kind), k[i].name);
        jobs_receipt r = {.status = st, .kind = kind, .at = 7};
        memcpy(r.log_id, LID, 25);
        snprintf(r.vendor_msg_id, sizeof r.vendor_msg_id, "vm-%zu", i);
        snprintf(r.event_id, sizeof r.event_id, "ev-%zu", i);
        if (kind == JOBS_RCPT_BOUNCED)
            snprintf(r.reason, sizeof r.reason, "mailbox full"); /* not written: "bounced" */
        CHECK_INT_EQ(jobs_receipt_batch_add(&bb, &r), 0);
    }
    const char *unk = "{\"log_id\":\"" LID "\",\"status\":\"DEFERRED\",\"id\":\"ev-x\"}";
    CHECK_INT_EQ(jobs_receipt_batch_add_raw(&bb, unk, strlen(unk)), 0);
    char *data;
    size_t len;
    CHECK_INT_EQ(jobs_receipt_batch_take(&bb, &data, &len), 0);
    json_t *j = parse(data, len);
    CHECK(j != NULL);
    char *dump = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    CHECK_STR_EQ(data, dump);
    free(dump);
    json_decref(j);
    jscan js = {0};
    jobs_reader rd;
    jobs_receipt out;
    char why[256], want[16];
    CHECK_INT_EQ(jobs_receipts_open(&rd, &js, data, len, why, sizeof why), 0);
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        CHECK_INT_EQ(jobs_receipts_next(&rd, &out, why, sizeof why), 1);
        CHECK_INT_EQ(out.status, k[i].st);
        CHECK_INT_EQ(out.kind, k[i].kind);
        snprintf(want, sizeof want, "ev-%zu", i);
        CHECK_STR_EQ(out.event_id, want);
        if (k[i].kind == JOBS_RCPT_BOUNCED)
            CHECK_STR_EQ(out.reason, "bounced");
    }
    CHECK_INT_EQ(jobs_receipts_next(&rd, &out, why, sizeof why), -1);
    CHECK_STR_CONTAINS(why, "status must be");
    CHECK(rd.rawlen == strlen(unk) && memcmp(rd.raw, unk, rd.rawlen) == 0);
    CHECK_INT_EQ(jobs_receipts_next(&rd, &out, why, sizeof why), 0);
    /* an engagement event needs no vendorMsgId; "id" is read as the event id */
    const char *open = "{\"log_id\":\"" LID "\",\"status\":\"OPENED\",\"id\":\"e1\"}";
    CHECK_INT_EQ(jobs_receipts_open(&rd, &js, open, strlen(open), why, sizeof why), 0);
    CHECK_INT_EQ(jobs_receipts_next(&rd, &out, why, sizeof why), 1);
    CHECK_INT_EQ(out.kind, JOBS_RCPT_OPENED);
    CHECK_STR_EQ(out.event_id, "e1");
    free(data);
    jobs_receipt_batch_release(&bb);
    jscan_release(&js);
}

TEST(receipt_batch_round_trip_and_cap)
{
    jobs_receipt_batch bb = {0};
    int r = 0;
    size_t added = 0;
    while (r == 0) {
        jobs_receipt x = {.status = added % 2 ? CAMPAIGN_LOG_FAILED : CAMPAIGN_LOG_SENT, .at = 9};
        snprintf(x.log_id, sizeof x.log_id, "%024zx", added);
        snprintf(x.vendor_msg_id, sizeof x.vendor_msg_id, "vm-%zu", added);
        r = jobs_receipt_batch_add(&bb, &x);
        added++;
    }
    CHECK_INT_EQ(r, 1);
    CHECK_INT_EQ(added, JOBS_RECEIPTS_PER_JOB);
    char *data;
    size_t len;
    CHECK_INT_EQ(jobs_receipt_batch_take(&bb, &data, &len), 0);
    json_t *j = parse(data, len);
    CHECK(j != NULL);
    CHECK_INT_EQ(json_array_size(json_object_get(j, "receipts")), JOBS_RECEIPTS_PER_JOB);
    json_decref(j);
    jscan js = {0};
    jobs_reader rd;
    jobs_receipt out;
    char why[256], want[32];
    CHECK_INT_EQ(jobs_receipts_open(&rd, &js, data, len, why, sizeof why), 0);
    CHECK(rd.batch);
    CHECK_INT_EQ(rd.n, JOBS_RECEIPTS_PER_JOB);
    size_t k = 0;
    while (jobs_receipts_next(&rd, &out, why, sizeof why) == 1) {
        snprintf(want, sizeof want, "vm-%zu", k);
        CHECK_STR_EQ(out.vendor_msg_id, want);
        CHECK_INT_EQ(out.status, k % 2 ? CAMPAIGN_LOG_FAILED : CAMPAIGN_LOG_SENT);
        k++;
    }
    CHECK_INT_EQ(k, JOBS_RECEIPTS_PER_JOB);
    free(data);
    jobs_receipt_batch_release(&bb);
    jscan_release(&js);
}

TEST(receipt_rejects)
{
    jscan js = {0};
    jobs_reader rd;
    jobs_receipt out;
    char why[256];
    CHECK_INT_EQ(jobs_receipts_open(&rd, &js, "{", 1, why, sizeof why), -1);
    CHECK_STR_CONTAINS(why, "malformed receipt: not JSON (");
    CHECK_INT_EQ(jobs_receipts_open(&rd, &js, "{\"receipts\":{}}", 15, why, sizeof why), -1);
    CHECK_STR_EQ(why, "malformed receipt batch: receipts must be a non-empty array");
    static const char *const bad[][2] = {
        {"[1]", "not a JSON object"},
        {"{\"log_id\":\"x\",\"status\":\"SENT\"}", "log_id must be a 24-hex id"},
        {"{\"log_id\":\"" LID "\",\"status\":\"DONE\"}", "status must be SENT, FAILED, BOUNCED"},
        {"{\"log_id\":\"" LID "\",\"status\":\"SENT\"}", "a SENT receipt needs a vendorMsgId"},
        {"{\"log_id\":\"" LID "\",\"status\":\"SENT\",\"vendorMsgId\":\"\"}", "1-128"},
        {"{\"log_id\":\"" LID "\",\"status\":\"SENT\",\"vendorMsgId\":3}", "must be a string"},
        {"{\"log_id\":\"" LID "\",\"status\":\"FAILED\",\"campaign_id\":\"z\"}", "campaign_id"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_INT_EQ(jobs_receipts_open(&rd, &js, bad[i][0], strlen(bad[i][0]), why, sizeof why),
                     0);
        CHECK_INT_EQ(jobs_receipts_next(&rd, &out, why, sizeof why), -1);
        CHECK_STR_CONTAINS(why, bad[i][1]);
    }
    /* an escaped status word is still that word; a PENDING receipt decodes (and changes
     * nothing downstream) */
    const char *esc = "{\"log_id\":\"" LID "\",\"status\":\"S\\u0045NT\",\"vendorMsgId\":\"v\"}";
    CHECK_INT_EQ(jobs_receipts_open(&rd, &js, esc, strlen(esc), why, sizeof why), 0);
    CHECK_INT_EQ(jobs_receipts_next(&rd, &out, why, sizeof why), 1);
    CHECK_INT_EQ(out.status, CAMPAIGN_LOG_SENT);
    jscan_release(&js);
}

/* An id that is not one (a caller's bug) still gives valid JSON, and the decoder refuses it. */
TEST(bad_id_stays_json)
{
    jsonx_buf b = {0};
    jobs_send s = {.log_id = "not\"an id", .customer_id = "0123456789abcdef0123456\""};
    CHECK_INT_EQ(jobs_send_encode(&b, &s), 0);
    json_t *j = parse(b.data, b.len);
    CHECK(j != NULL);
    json_decref(j);
    jscan js = {0};
    jobs_reader r;
    jobs_send_in in;
    const char *why = NULL;
    CHECK_INT_EQ(jobs_sends_open(&r, &js, b.data, b.len, &why), 0);
    CHECK_INT_EQ(jobs_sends_next(&r, &in, &why), -1);
    CHECK_STR_EQ(why, "malformed send: log_id must be a 24-hex id");
    jsonx_buf_free(&b);
    jscan_release(&js);
}

#define SID "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

/* ai jobs: both kinds round trip; the name's free text survives; bad ones are refused. */
TEST(ai_jobs)
{
    jsonx_buf b = {0};
    jobs_ai in = {.kind = JOBS_AI_CAMPAIGN, .campaign_id = CID}, out;
    char why[160];
    CHECK_INT_EQ(jobs_ai_encode(&b, &in), 0);
    CHECK_STR_EQ(b.data, "{\"kind\":\"campaign\",\"campaign_id\":\"" CID "\"}");
    CHECK_INT_EQ(jobs_ai_decode(b.data, b.len, &out, why, sizeof why), 0);
    CHECK_INT_EQ(out.kind, JOBS_AI_CAMPAIGN);
    CHECK_STR_EQ(out.campaign_id, CID);

    jsonx_buf_reset(&b);
    in = (jobs_ai){.kind = JOBS_AI_SUGGEST,
                   .id = SID,
                   .name = "Diwali \"VIP\" \\ sale \xe2\x82\xb9",
                   .rules = "{\"min_spend\":4000}"};
    CHECK_INT_EQ(jobs_ai_encode(&b, &in), 0);
    json_t *j = parse(b.data, b.len);
    CHECK(j != NULL);
    json_decref(j);
    /* queue bookkeeping members are ignored */
    char *text = malloc(b.len + 32);
    snprintf(text, b.len + 32, "%.*s,\"_attempts\":2}", (int)b.len - 1, b.data);
    CHECK_INT_EQ(jobs_ai_decode(text, strlen(text), &out, why, sizeof why), 0);
    free(text);
    CHECK_INT_EQ(out.kind, JOBS_AI_SUGGEST);
    CHECK_STR_EQ(out.id, SID);
    CHECK_STR_EQ(out.name, in.name);
    CHECK_STR_EQ(out.rules, "{\"min_spend\":4000}");
    jsonx_buf_free(&b);

    static const char *const bad[][2] = {
        {"[]", "not a JSON object"},
        {"{\"kind\":\"tags\"}", "kind must be"},
        {"{\"kind\":\"campaign\",\"campaign_id\":\"x\"}", "24-hex"},
        {"{\"kind\":\"suggest\",\"id\":\"abc\",\"name\":\"n\",\"rules\":{}}", "hex digits"},
        {"{\"kind\":\"suggest\",\"id\":\"" SID "\",\"name\":\"\",\"rules\":{}}", "name must"},
        {"{\"kind\":\"suggest\",\"id\":\"" SID "\",\"name\":\"n\",\"rules\":[]}", "rules must"},
        {"{\"kind\":\"suggest\",\"id\":\"" SID "\",\"name\":\"n\",\"rules\":{\"x\":1}}", "rules"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_INT_EQ(jobs_ai_decode(bad[i][0], strlen(bad[i][0]), &out, why, sizeof why), -1);
        CHECK_STR_CONTAINS(why, bad[i][1]);
    }
}

TEST(event_jobs)
{
    for (int i = 0; i < JOBS_EV_COUNT; i++) {
        jobs_event_type t;
        const char *n = jobs_event_type_name((jobs_event_type)i);
        CHECK_INT_EQ(jobs_event_type_parse(n, strlen(n), &t), 0);
        CHECK_INT_EQ((int)t, i);
    }
    jobs_event_type t;
    CHECK_INT_EQ(jobs_event_type_parse("message.sent", 12, &t), -1);

    char a[JOBS_EVENT_ID_LEN + 1], b2[JOBS_EVENT_ID_LEN + 1], c[JOBS_EVENT_ID_LEN + 1];
    jobs_event_id(JOBS_EV_MESSAGE_FAILED, LID, a);
    jobs_event_id(JOBS_EV_MESSAGE_FAILED, LID, b2);
    jobs_event_id(JOBS_EV_MESSAGE_BOUNCED, LID, c);
    CHECK_STR_EQ(a, b2);
    CHECK(strcmp(a, c) != 0);
    CHECK_INT_EQ((int)strlen(a), JOBS_EVENT_ID_LEN);
    CHECK(strncmp(a, "evt_", 4) == 0);

    const char *data = "{\"log_id\":\"" LID "\",\"reason\":\"a \\\"b\\\"\"}";
    jobs_event in = {
        .type = JOBS_EV_MESSAGE_FAILED, .at = 1700000000123, .data = data, .datalen = strlen(data)};
    memcpy(in.id, a, sizeof in.id);
    jsonx_buf b = {0};
    CHECK_INT_EQ(jobs_event_encode(&b, &in), 0);
    json_t *j = parse(b.data, b.len);
    CHECK(j != NULL);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "type")), "message.failed");
    CHECK_STR_EQ(json_string_value(json_object_get(j, "id")), a);
    json_decref(j);
    jobs_event out;
    char why[160];
    CHECK_INT_EQ(jobs_event_decode(b.data, b.len, &out, why, sizeof why), 0);
    CHECK_INT_EQ((int)out.type, JOBS_EV_MESSAGE_FAILED);
    CHECK_STR_EQ(out.id, a);
    CHECK(out.at == 1700000000123);
    CHECK_INT_EQ((int)out.datalen, (int)strlen(data));
    CHECK(memcmp(out.data, data, out.datalen) == 0);
    jsonx_buf_free(&b);

    jsonx_buf_reset(&b);
    in.data = "[]";
    in.datalen = 2;
    CHECK_INT_EQ(jobs_event_encode(&b, &in), -1);
    jsonx_buf_free(&b);

    static const char *const bad[][2] = {
        {"[]", "not a JSON object"},
        {"{\"id\":\"evt_x\",\"type\":\"message.failed\",\"at\":1,\"data\":{}}", "evt_"},
        {"{\"id\":\"evt_0123456789abcdef01234567\",\"type\":\"x\",\"at\":1,\"data\":{}}",
         "unknown event type"},
        {"{\"id\":\"evt_0123456789abcdef01234567\",\"type\":\"campaign.paused\",\"data\":{}}",
         "at must"},
        {"{\"id\":\"evt_0123456789abcdef01234567\",\"type\":\"campaign.paused\",\"at\":1,"
         "\"data\":3}",
         "data must"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_INT_EQ(jobs_event_decode(bad[i][0], strlen(bad[i][0]), &out, why, sizeof why), -1);
        CHECK_STR_CONTAINS(why, bad[i][1]);
    }
}

TEST(delivery_jobs)
{
    const char *data = "{\"campaign_id\":\"" LID "\"}";
    jobs_delivery in = {.at = 1700000000123, .data = data, .datalen = strlen(data)};
    memcpy(in.endpoint_id, LID, 25);
    jobs_event_id(JOBS_EV_CAMPAIGN_STARTED, LID, in.id);
    snprintf(in.type, sizeof in.type, "campaign.started");
    jsonx_buf b = {0};
    CHECK_INT_EQ(jobs_delivery_encode(&b, &in), 0);
    json_t *j = parse(b.data, b.len);
    CHECK(j != NULL);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "endpoint_id")), LID);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "type")), "campaign.started");
    /* the queue adds its bookkeeping on a retry: read back as attempts */
    json_object_set_new(j, "_attempts", json_integer(3));
    char *retried = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    jobs_delivery out;
    char why[160];
    CHECK_INT_EQ(jobs_delivery_decode(b.data, b.len, &out, why, sizeof why), 0);
    CHECK_INT_EQ(out.attempts, 0);
    CHECK_STR_EQ(out.id, in.id);
    CHECK_STR_EQ(out.endpoint_id, LID);
    CHECK(out.at == 1700000000123);
    CHECK(out.datalen == strlen(data) && memcmp(out.data, data, out.datalen) == 0);
    CHECK_INT_EQ(jobs_delivery_decode(retried, strlen(retried), &out, why, sizeof why), 0);
    CHECK_INT_EQ(out.attempts, 3);
    free(retried);

    jsonx_buf_reset(&b);
    snprintf(in.type, sizeof in.type, "%s", JOBS_DELIVERY_TEST_TYPE);
    CHECK_INT_EQ(jobs_delivery_encode(&b, &in), 0);
    CHECK_INT_EQ(jobs_delivery_decode(b.data, b.len, &out, why, sizeof why), 0);
    CHECK_STR_EQ(out.type, JOBS_DELIVERY_TEST_TYPE);
    jsonx_buf_reset(&b);
    snprintf(in.type, sizeof in.type, "message.sent");
    CHECK_INT_EQ(jobs_delivery_encode(&b, &in), -1);
    jsonx_buf_free(&b);

    static const char *const bad[][2] = {
        {"3", "not a JSON object"},
        {"{\"endpoint_id\":\"x\",\"id\":\"evt_0123456789abcdef01234567\",\"type\":"
         "\"campaign.paused\",\"at\":1,\"data\":{}}",
         "endpoint_id"},
        {"{\"endpoint_id\":\"" LID "\",\"id\":\"evt_0123456789abcdef01234567\",\"type\":"
         "\"nope\",\"at\":1,\"data\":{}}",
         "unknown event type"},
        {"{\"endpoint_id\":\"" LID "\",\"id\":\"evt_0123456789abcdef01234567\",\"type\":"
         "\"campaign.paused\",\"at\":1,\"data\":[]}",
         "data must"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_INT_EQ(jobs_delivery_decode(bad[i][0], strlen(bad[i][0]), &out, why, sizeof why), -1);
        CHECK_STR_CONTAINS(why, bad[i][1]);
    }
}

TEST_MAIN(TEST_ENTRY(delivery_jobs), TEST_ENTRY(event_jobs), TEST_ENTRY(send_batch_rate),
          TEST_ENTRY(send_single_rate), TEST_ENTRY(ai_jobs), TEST_ENTRY(status_names),
          TEST_ENTRY(bad_id_stays_json), TEST_ENTRY(log_id_deterministic),
          TEST_ENTRY(vendor_msg_id_is_the_routes_and_the_resends), TEST_ENTRY(campaign_job),
          TEST_ENTRY(send_single_round_trip), TEST_ENTRY(send_unsubscribe_url_round_trip),
          TEST_ENTRY(send_batch_round_trip_and_cap), TEST_ENTRY(send_rejects),
          TEST_ENTRY(receipt_round_trip), TEST_ENTRY(receipt_event_kinds),
          TEST_ENTRY(receipt_batch_round_trip_and_cap), TEST_ENTRY(receipt_rejects))
