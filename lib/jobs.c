/*
 * jobs: see jobs.h for the payloads and their caps.
 *
 * Encoders append to a jsonx_buf by hand: ids are checked 24-hex strings and numbers are
 * integers, so only free text (message, vendorMsgId, reason) goes through jsonx_buf_str's
 * escaping. Decoders take the values they need from lib/jscan tokens; the error texts are the
 * dead-letter reasons operators see in `minicrm dlq list`, so they stay as they were.
 */
#include "jobs.h"

#include "rules.h"

#include <jansson.h>
#include <openssl/evp.h>

#include "timeutil.h"

#include <inttypes.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---------------------------------------------------------------------------- */

/* Append ,"key":"hex" (or without the comma when first). Ids are 24 hex digits, written as
 * they are; anything else (a caller's bug) is still written as a valid JSON string. */
static void put_id(jsonx_buf *b, bool first, const char *key, const char *hex)
{
    size_t n = 0;
    while (n < 25 && hex[n])
        n++;
    if (!first)
        jsonx_buf_raw(b, ",", 1);
    jsonx_buf_raw(b, "\"", 1);
    jsonx_buf_cat(b, key);
    jsonx_buf_raw(b, "\":", 2);
    if (n == 24 && oid_is_valid_hex(hex)) {
        jsonx_buf_raw(b, "\"", 1);
        jsonx_buf_raw(b, hex, 24);
        jsonx_buf_raw(b, "\"", 1);
    } else {
        jsonx_buf_str(b, hex, strlen(hex));
    }
}

/* Append ,"key":<escaped s> */
static void put_str(jsonx_buf *b, const char *key, const char *s)
{
    jsonx_buf_raw(b, ",\"", 2);
    jsonx_buf_cat(b, key);
    jsonx_buf_raw(b, "\":", 2);
    jsonx_buf_str(b, s, strlen(s));
}

static void put_int(jsonx_buf *b, const char *key, int64_t v)
{
    char num[32];
    int n = snprintf(num, sizeof num, ",\"%s\":%" PRId64, key, v);
    if (n > 0 && (size_t)n < sizeof num)
        jsonx_buf_raw(b, num, (size_t)n);
    else
        jsonx_buf_cat(b, ",\"?\":0"); /* keys are ours and short: never happens */
}

/* A 24-hex id held by string token tok into out (25 bytes); false if tok is not one. */
static bool hex_id(const jscan *js, int tok, char out[25])
{
    return tok >= 0 && jscan_str_copy(js, tok, out, 25) == 24 && oid_is_valid_hex(out);
}

/* Copy string token tok into out (cap bytes, NUL-terminated), cut at a UTF-8 character
 * boundary if it is longer (the text goes into MongoDB, which wants valid UTF-8). */
static void copy_cut(const jscan *js, int tok, char *out, size_t cap)
{
    size_t raw = js->t[tok].len + 1; /* the unescaped text is never longer than the raw one */
    char stack[512];
    char *tmp = raw <= sizeof stack ? stack : malloc(raw);
    size_t n = tmp ? jscan_str_copy(js, tok, tmp, raw) : (size_t)-1;
    if (n == (size_t)-1) {
        out[0] = '\0';
    } else {
        if (n >= cap) {
            n = cap - 1;
            while (n > 0 && ((unsigned char)tmp[n] & 0xC0) == 0x80)
                n--; /* tmp[n] would start the cut-off part: back to a character's first byte */
        }
        memcpy(out, tmp, n);
        out[n] = '\0';
    }
    if (tmp != stack)
        free(tmp);
}

/* Close batch text b (n items, "]}" appended) and hand it over. */
static int batch_take(jsonx_buf *buf, size_t *n, char **data, size_t *len)
{
    if (*n == 0)
        return 1;
    jsonx_buf_raw(buf, "]}", 2);
    if (!jsonx_buf_ok(buf))
        return -1;
    *data = buf->data;
    *len = buf->len;
    *buf = (jsonx_buf){0};
    *n = 0;
    return 0;
}

/* ---- campaigns ------------------------------------------------------------------------- */

int jobs_campaign_encode(const char *campaign_hex, char *out, size_t cap)
{
    if (!campaign_hex || !oid_is_valid_hex(campaign_hex))
        return -1;
    int n = snprintf(out, cap, "{\"campaign_id\":\"%s\"}", campaign_hex);
    return n > 0 && (size_t)n < cap ? n : -1;
}

int jobs_campaign_decode(const char *data, size_t len, char campaign_hex[25], char *why,
                         size_t whylen)
{
    jscan js = {0};
    int rc = -1;
    int t = -1;
    if (jscan_parse(&js, data, len) == 0 && js.t[0].type == JSCAN_OBJECT)
        t = jscan_get(&js, 0, "campaign_id");
    if (t < 0 || js.t[t].type != JSCAN_STRING)
        snprintf(why, whylen, "malformed campaign job: needs campaign_id");
    else if (!hex_id(&js, t, campaign_hex))
        snprintf(why, whylen, "campaign_id must be a 24-hex id");
    else
        rc = 0;
    jscan_release(&js);
    return rc;
}

/* ---- sends ----------------------------------------------------------------------------- */

/* ,"rate_per_s":R when R is a positive finite number (a campaign's own send rate). */
static void put_rate(jsonx_buf *b, double rate)
{
    if (rate > 0 && isfinite(rate)) {
        char num[48];
        int n = snprintf(num, sizeof num, ",\"rate_per_s\":%.17g", rate);
        jsonx_buf_raw(b, num, (size_t)n);
    }
}

int jobs_send_encode(jsonx_buf *out, const jobs_send *s)
{
    jsonx_buf_raw(out, "{", 1);
    put_id(out, true, "log_id", s->log_id);
    if (s->campaign_id)
        put_id(out, false, "campaign_id", s->campaign_id);
    if (s->customer_id)
        put_id(out, false, "customer_id", s->customer_id);
    put_str(out, "message", s->message ? s->message : "");
    if (s->vendor_msg_id)
        put_str(out, "vendorMsgId", s->vendor_msg_id);
    if (s->resend)
        put_int(out, "resend", s->resend);
    if (s->unsubscribe_url)
        put_str(out, "unsubscribe_url", s->unsubscribe_url);
    put_rate(out, s->rate_per_s);
    jsonx_buf_raw(out, "}", 1);
    return jsonx_buf_ok(out) ? 0 : -1;
}

int jobs_send_batch_add(jobs_send_batch *b, const char *campaign_hex, const jobs_send *s)
{
    jsonx_buf *o = &b->buf;
    if (b->n == 0) {
        jsonx_buf_raw(o, "{", 1);
        put_id(o, true, "campaign_id", campaign_hex);
        put_rate(o, b->rate_per_s);
        jsonx_buf_raw(o, ",\"sends\":[{", 11);
    } else {
        jsonx_buf_raw(o, ",{", 2);
    }
    put_id(o, true, "log_id", s->log_id);
    if (s->campaign_id)
        put_id(o, false, "campaign_id", s->campaign_id);
    if (s->customer_id)
        put_id(o, false, "customer_id", s->customer_id);
    put_str(o, "message", s->message ? s->message : "");
    if (s->unsubscribe_url)
        put_str(o, "unsubscribe_url", s->unsubscribe_url);
    jsonx_buf_raw(o, "}", 1);
    if (!jsonx_buf_ok(o))
        return -1;
    b->n++;
    return b->n >= JOBS_SENDS_PER_JOB || o->len >= JOBS_SEND_JOB_BYTES ? 1 : 0;
}

int jobs_send_batch_take(jobs_send_batch *b, char **data, size_t *len)
{
    return batch_take(&b->buf, &b->n, data, len);
}

void jobs_send_batch_reset(jobs_send_batch *b)
{
    jsonx_buf_reset(&b->buf);
    b->n = 0;
}

void jobs_send_batch_release(jobs_send_batch *b)
{
    jsonx_buf_free(&b->buf);
    b->n = 0;
}

int jobs_sends_open(jobs_reader *r, jscan *js, const char *data, size_t len, const char **why)
{
    memset(r, 0, sizeof *r);
    r->js = js;
    r->data = data;
    if (jscan_parse(js, data, len) != 0 || js->t[0].type != JSCAN_OBJECT) {
        *why = "malformed send: not a JSON object";
        return -1;
    }
    /* The campaign's own send rate (a batch's, or a single send's: the sweeper's re-sends): a
     * positive finite number, else none. */
    int rt = jscan_get(js, 0, "rate_per_s");
    if (rt >= 0 && js->t[rt].type == JSCAN_NUMBER && js->t[rt].len < 40) {
        char num[40];
        memcpy(num, data + js->t[rt].start, js->t[rt].len);
        num[js->t[rt].len] = '\0';
        double v = strtod(num, NULL);
        r->rate_per_s = v > 0 && isfinite(v) ? v : 0;
    }
    int arr = jscan_get(js, 0, "sends");
    if (arr < 0) {
        r->n = 1;
        r->tok = 0;
        return 0;
    }
    r->batch = true;
    r->n = js->t[arr].type == JSCAN_ARRAY ? js->t[arr].count : 0;
    if (r->n == 0) {
        *why = "malformed send job: sends must be a non-empty array";
        return -1;
    }
    r->tok = jscan_child(js, arr);
    if (!hex_id(js, jscan_get(js, 0, "campaign_id"), r->campaign_id))
        r->campaign_id[0] = '\0';
    return 0;
}

/* Step a batch reader to its next item: the item's token (raw/rawlen set to its bytes), or -1
 * when the batch is done. */
static int reader_step(jobs_reader *r)
{
    if (r->i >= r->n)
        return -1;
    int t = r->tok;
    r->i++;
    r->tok = (int)r->js->t[t].next;
    r->raw = r->data + r->js->t[t].start;
    r->rawlen = r->js->t[t].len;
    return t;
}

int jobs_sends_next(jobs_reader *r, jobs_send_in *out, const char **why)
{
    const jscan *js = r->js;
    int s = reader_step(r);
    if (s < 0)
        return 0;
    if (js->t[s].type != JSCAN_OBJECT) {
        *why = "malformed send: not a JSON object";
        return -1;
    }
    if (!hex_id(js, jscan_get(js, s, "log_id"), out->log_id)) {
        *why = "malformed send: log_id must be a 24-hex id";
        return -1;
    }
    /* A send's own campaign_id wins over its batch's; one that is not an id is not ours to
     * judge: the receipt then names no campaign and the receipts worker looks the log up. */
    int ct = jscan_get(js, s, "campaign_id");
    if (ct >= 0) {
        if (!hex_id(js, ct, out->campaign_id))
            out->campaign_id[0] = '\0';
    } else {
        memcpy(out->campaign_id, r->campaign_id, sizeof out->campaign_id);
    }
    int vt = jscan_get(js, s, "vendorMsgId");
    size_t vn = vt >= 0 ? jscan_str_copy(js, vt, out->vendor_msg_id, sizeof out->vendor_msg_id)
                        : (size_t)-1;
    if (vn == (size_t)-1 || vn == 0)
        out->vendor_msg_id[0] = '\0'; /* none, or unusable: the vendor picks its own */
    int ut = jscan_get(js, s, "unsubscribe_url");
    size_t un = ut >= 0 ? jscan_str_copy(js, ut, out->unsubscribe_url, sizeof out->unsubscribe_url)
                        : (size_t)-1;
    if (un == (size_t)-1)
        out->unsubscribe_url[0] = '\0'; /* none (an older producer), or too long */
    return 1;
}

/* ---- receipts -------------------------------------------------------------------------- */

static const char *const kind_names[JOBS_RCPT_KIND_COUNT] = {NULL, "BOUNCED", "COMPLAINED",
                                                             "OPENED", "CLICKED"};

int jobs_receipt_status_parse(const char *s, size_t len, campaign_log_status *status,
                              jobs_receipt_kind *kind)
{
    if (campaign_log_status_parse(s, len, status) == 0 && *status != CAMPAIGN_LOG_CANCELLED) {
        *kind = JOBS_RCPT_DELIVERY;
        return 0;
    }
    for (int k = 1; k < JOBS_RCPT_KIND_COUNT; k++)
        if (strlen(kind_names[k]) == len && memcmp(kind_names[k], s, len) == 0) {
            *kind = (jobs_receipt_kind)k;
            *status = k == JOBS_RCPT_BOUNCED ? CAMPAIGN_LOG_FAILED : CAMPAIGN_LOG_PENDING;
            return 0;
        }
    return -1;
}

const char *jobs_receipt_status_name(campaign_log_status status, jobs_receipt_kind kind)
{
    return kind > JOBS_RCPT_DELIVERY && kind < JOBS_RCPT_KIND_COUNT
               ? kind_names[kind]
               : campaign_log_status_name(status);
}

int jobs_receipt_encode(jsonx_buf *out, const jobs_receipt *r)
{
    jsonx_buf_raw(out, "{", 1);
    put_id(out, true, "log_id", r->log_id);
    if (r->campaign_id[0])
        put_id(out, false, "campaign_id", r->campaign_id);
    if (r->vendor_msg_id[0])
        put_str(out, "vendorMsgId", r->vendor_msg_id);
    else
        jsonx_buf_cat(out, ",\"vendorMsgId\":null");
    jsonx_buf_raw(out, ",\"status\":\"", 11);
    jsonx_buf_cat(out, jobs_receipt_status_name(r->status, r->kind));
    jsonx_buf_raw(out, "\"", 1);
    put_int(out, "at", r->at);
    if (r->reason[0] && r->kind != JOBS_RCPT_BOUNCED)
        put_str(out, "reason", r->reason);
    if (r->event_id[0])
        put_str(out, "event_id", r->event_id);
    jsonx_buf_raw(out, "}", 1);
    return jsonx_buf_ok(out) ? 0 : -1;
}

int jobs_receipt_batch_add(jobs_receipt_batch *b, const jobs_receipt *r)
{
    jsonx_buf_cat(&b->buf, b->n == 0 ? "{\"receipts\":[" : ",");
    if (jobs_receipt_encode(&b->buf, r) != 0)
        return -1;
    b->n++;
    return b->n >= JOBS_RECEIPTS_PER_JOB || b->buf.len >= JOBS_RECEIPT_JOB_BYTES ? 1 : 0;
}

int jobs_receipt_batch_add_raw(jobs_receipt_batch *b, const char *text, size_t len)
{
    jsonx_buf_cat(&b->buf, b->n == 0 ? "{\"receipts\":[" : ",");
    jsonx_buf_raw(&b->buf, text, len);
    if (!jsonx_buf_ok(&b->buf))
        return -1;
    b->n++;
    return b->n >= JOBS_RECEIPTS_PER_JOB || b->buf.len >= JOBS_RECEIPT_JOB_BYTES ? 1 : 0;
}

int jobs_receipt_batch_take(jobs_receipt_batch *b, char **data, size_t *len)
{
    return batch_take(&b->buf, &b->n, data, len);
}

void jobs_receipt_batch_release(jobs_receipt_batch *b)
{
    jsonx_buf_free(&b->buf);
    b->n = 0;
}

int jobs_receipts_open(jobs_reader *r, jscan *js, const char *data, size_t len, char *why,
                       size_t whylen)
{
    memset(r, 0, sizeof *r);
    r->js = js;
    r->data = data;
    if (jscan_parse(js, data, len) != 0) {
        snprintf(why, whylen, "malformed receipt: not JSON (%s)", js->err);
        r->n = 1;
        return -1;
    }
    int arr = js->t[0].type == JSCAN_OBJECT ? jscan_get(js, 0, "receipts") : -1;
    if (arr < 0) {
        r->n = 1;
        r->tok = 0;
        return 0;
    }
    r->batch = true;
    r->n = js->t[arr].type == JSCAN_ARRAY ? js->t[arr].count : 0;
    if (r->n == 0) {
        snprintf(why, whylen, "malformed receipt batch: receipts must be a non-empty array");
        r->n = 1;
        return -1;
    }
    r->tok = jscan_child(js, arr);
    return 0;
}

int jobs_receipts_next(jobs_reader *r, jobs_receipt *it, char *why, size_t whylen)
{
    const jscan *js = r->js;
    int o = reader_step(r);
    if (o < 0)
        return 0;
    if (js->t[o].type != JSCAN_OBJECT) {
        snprintf(why, whylen, "malformed receipt: not a JSON object");
        return -1;
    }
    if (!hex_id(js, jscan_get(js, o, "log_id"), it->log_id)) {
        snprintf(why, whylen, "malformed receipt: log_id must be a 24-hex id");
        return -1;
    }
    char st[16];
    int t = jscan_get(js, o, "status");
    size_t stlen = t >= 0 ? jscan_str_copy(js, t, st, sizeof st) : (size_t)-1;
    if (stlen == (size_t)-1 || jobs_receipt_status_parse(st, stlen, &it->status, &it->kind) != 0) {
        snprintf(why, whylen,
                 "malformed receipt: status must be SENT, FAILED, BOUNCED, COMPLAINED, OPENED or "
                 "CLICKED");
        return -1;
    }
    it->vendor_msg_id[0] = '\0';
    t = jscan_get(js, o, "vendorMsgId");
    if (t >= 0 && js->t[t].type == JSCAN_STRING) {
        size_t n = jscan_str_copy(js, t, it->vendor_msg_id, sizeof it->vendor_msg_id);
        if (n == 0 || n == (size_t)-1) {
            it->vendor_msg_id[0] = '\0';
            snprintf(why, whylen, "malformed receipt: vendorMsgId must be 1-128 characters");
            return -1;
        }
    } else if (t >= 0 && js->t[t].type != JSCAN_NULL) {
        snprintf(why, whylen, "malformed receipt: vendorMsgId must be a string");
        return -1;
    } else if (it->status == CAMPAIGN_LOG_SENT && it->kind == JOBS_RCPT_DELIVERY) {
        snprintf(why, whylen, "malformed receipt: a SENT receipt needs a vendorMsgId");
        return -1;
    }
    it->event_id[0] = '\0';
    t = jscan_get(js, o, "event_id");
    if (t < 0)
        t = jscan_get(js, o, "id");
    if (t >= 0 && js->t[t].type == JSCAN_STRING)
        copy_cut(js, t, it->event_id, sizeof it->event_id);
    it->campaign_id[0] = '\0';
    t = jscan_get(js, o, "campaign_id");
    if (t >= 0 && js->t[t].type != JSCAN_NULL && !hex_id(js, t, it->campaign_id)) {
        it->campaign_id[0] = '\0';
        snprintf(why, whylen, "malformed receipt: campaign_id must be a 24-hex id");
        return -1;
    }
    int64_t at;
    t = jscan_get(js, o, "at");
    it->at = t >= 0 && jscan_int(js, t, &at) && at > 0 ? at : time_now_ms();
    t = jscan_get(js, o, "reason");
    if (it->kind == JOBS_RCPT_BOUNCED)
        snprintf(it->reason, sizeof it->reason, "%s", JOBS_BOUNCE_REASON);
    else if (t >= 0 && js->t[t].type == JSCAN_STRING)
        copy_cut(js, t, it->reason, sizeof it->reason);
    else
        snprintf(it->reason, sizeof it->reason, "%s",
                 it->status == CAMPAIGN_LOG_FAILED ? "vendor reported FAILED" : "");
    return 1;
}

/* ---- ai ---------------------------------------------------------------------------------- */

static bool hex_of_len(const char *s, size_t n)
{
    return strlen(s) == n && strspn(s, "0123456789abcdef") == n;
}

int jobs_ai_encode(jsonx_buf *out, const jobs_ai *j)
{
    if (j->kind == JOBS_AI_CAMPAIGN) {
        if (!oid_is_valid_hex(j->campaign_id))
            return -1;
        jsonx_buf_cat(out, "{\"kind\":\"campaign\"");
        put_id(out, false, "campaign_id", j->campaign_id);
        jsonx_buf_raw(out, "}", 1);
        return jsonx_buf_ok(out) ? 0 : -1;
    }
    if (j->kind != JOBS_AI_SUGGEST || !hex_of_len(j->id, JOBS_AI_ID_LEN))
        return -1;
    size_t rl = strlen(j->rules);
    if (rl < 2 || j->rules[0] != '{' || j->rules[rl - 1] != '}')
        return -1;
    jsonx_buf_cat(out, "{\"kind\":\"suggest\"");
    put_str(out, "id", j->id);
    put_str(out, "name", j->name);
    jsonx_buf_cat(out, ",\"rules\":");
    jsonx_buf_raw(out, j->rules, rl);
    jsonx_buf_raw(out, "}", 1);
    return jsonx_buf_ok(out) ? 0 : -1;
}

int jobs_ai_decode(const char *data, size_t len, jobs_ai *out, char *why, size_t whylen)
{
    jscan js = {0};
    int rc = -1, t;
    memset(out, 0, sizeof *out);
    if (jscan_parse(&js, data, len) != 0 || js.t[0].type != JSCAN_OBJECT) {
        snprintf(why, whylen, "malformed ai job: not a JSON object");
        goto out;
    }
    t = jscan_get(&js, 0, "kind");
    if (jscan_str_eq(&js, t, "campaign")) {
        if (!hex_id(&js, jscan_get(&js, 0, "campaign_id"), out->campaign_id)) {
            snprintf(why, whylen, "campaign_id must be a 24-hex id");
            goto out;
        }
        out->kind = JOBS_AI_CAMPAIGN;
        rc = 0;
        goto out;
    }
    if (!jscan_str_eq(&js, t, "suggest")) {
        snprintf(why, whylen, "malformed ai job: kind must be campaign or suggest");
        goto out;
    }
    t = jscan_get(&js, 0, "id");
    if (t < 0 || jscan_str_copy(&js, t, out->id, sizeof out->id) != JOBS_AI_ID_LEN ||
        !hex_of_len(out->id, JOBS_AI_ID_LEN)) {
        snprintf(why, whylen, "id must be %d hex digits", JOBS_AI_ID_LEN);
        goto out;
    }
    t = jscan_get(&js, 0, "name");
    size_t nl = t >= 0 ? jscan_str_copy(&js, t, out->name, sizeof out->name) : (size_t)-1;
    if (nl == (size_t)-1 || nl == 0) {
        snprintf(why, whylen, "name must be a string of 1-%d bytes", JOBS_AI_NAME_MAX);
        goto out;
    }
    t = jscan_get(&js, 0, "rules");
    if (t < 0 || js.t[t].type != JSCAN_OBJECT) {
        snprintf(why, whylen, "rules must be an object");
        goto out;
    }
    if (js.t[t].len >= sizeof out->rules) {
        snprintf(why, whylen, "rules longer than %d bytes", JOBS_AI_RULES_MAX - 1);
        goto out;
    }
    memcpy(out->rules, data + js.t[t].start, js.t[t].len);
    out->rules[js.t[t].len] = '\0';
    /* rules_parse_json is the one validator of rules */
    char perr[160];
    rules r;
    json_t *jr = jsonx_parse(out->rules, js.t[t].len, perr, sizeof perr);
    int pr = jr ? rules_parse_json(jr, &r, why, whylen) : -1;
    json_decref(jr);
    if (!jr)
        snprintf(why, whylen, "rules: %s", perr);
    if (pr != 0)
        goto out;
    out->kind = JOBS_AI_SUGGEST;
    rc = 0;
out:
    jscan_release(&js);
    return rc;
}

/* ---- events ------------------------------------------------------------------------------- */

static const char *const event_names[JOBS_EV_COUNT] = {
    [JOBS_EV_CAMPAIGN_STARTED] = "campaign.started",
    [JOBS_EV_CAMPAIGN_COMPLETED] = "campaign.completed",
    [JOBS_EV_CAMPAIGN_PAUSED] = "campaign.paused",
    [JOBS_EV_CAMPAIGN_CANCELLED] = "campaign.cancelled",
    [JOBS_EV_MESSAGE_FAILED] = "message.failed",
    [JOBS_EV_MESSAGE_BOUNCED] = "message.bounced",
    [JOBS_EV_CONTACT_UNSUBSCRIBED] = "contact.unsubscribed",
    [JOBS_EV_CONTACT_COMPLAINED] = "contact.complained",
};

const char *jobs_event_type_name(jobs_event_type t)
{
    return (unsigned)t < JOBS_EV_COUNT ? event_names[t] : "?";
}

int jobs_event_type_parse(const char *s, size_t len, jobs_event_type *out)
{
    for (int i = 0; i < JOBS_EV_COUNT; i++)
        if (strlen(event_names[i]) == len && memcmp(event_names[i], s, len) == 0) {
            *out = (jobs_event_type)i;
            return 0;
        }
    return -1;
}

void jobs_event_id(jobs_event_type t, const char *subject, char out[JOBS_EVENT_ID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    const char *name = jobs_event_type_name(t);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, name, strlen(name) + 1) != 1 || /* the name and its NUL */
        EVP_DigestUpdate(ctx, subject, strlen(subject)) != 1 ||
        EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen < 12)
        memset(md, 0, sizeof md); /* out of memory in OpenSSL: an id that is still well formed */
    EVP_MD_CTX_free(ctx);
    memcpy(out, "evt_", 4);
    for (int i = 0; i < 12; i++) {
        out[4 + 2 * i] = hex[md[i] >> 4];
        out[5 + 2 * i] = hex[md[i] & 15];
    }
    out[JOBS_EVENT_ID_LEN] = '\0';
}

static bool event_id_ok(const char *id, size_t n)
{
    return n == JOBS_EVENT_ID_LEN && memcmp(id, "evt_", 4) == 0 && hex_of_len(id + 4, 24);
}

/* An event's data is a JSON object written by the caller: braces at both ends, within the cap. */
static bool event_data_ok(const char *data, size_t datalen)
{
    return data && datalen >= 2 && datalen <= JOBS_EVENT_DATA_MAX && data[0] == '{' &&
           data[datalen - 1] == '}';
}

/* Decode the "id" member (evt_ + 24 hex) into id. False (with why filled) when it is not one. */
static bool take_event_id(const jscan *js, char id[JOBS_EVENT_ID_LEN + 1], char *why, size_t whylen)
{
    int t = jscan_get(js, 0, "id");
    if (t < 0 || js->t[t].type != JSCAN_STRING ||
        jscan_str_copy(js, t, id, JOBS_EVENT_ID_LEN + 1) != JOBS_EVENT_ID_LEN ||
        !event_id_ok(id, JOBS_EVENT_ID_LEN)) {
        snprintf(why, whylen, "event id must be evt_ and 24 hex digits");
        return false;
    }
    return true;
}

/* Decode the "at" (ms) and "data" (object) members shared by events and deliveries. *data
 * points into src (the text js was parsed from): it lives as long as src does. */
static bool take_event_at_data(const jscan *js, const char *src, int64_t *at, const char **data,
                               size_t *datalen, char *why, size_t whylen)
{
    int t = jscan_get(js, 0, "at");
    if (t < 0 || !jscan_int(js, t, at)) {
        snprintf(why, whylen, "event at must be an integer (ms)");
        return false;
    }
    t = jscan_get(js, 0, "data");
    if (t < 0 || js->t[t].type != JSCAN_OBJECT || js->t[t].len > JOBS_EVENT_DATA_MAX) {
        snprintf(why, whylen, "event data must be an object of at most %d bytes",
                 JOBS_EVENT_DATA_MAX);
        return false;
    }
    *data = src + js->t[t].start;
    *datalen = js->t[t].len;
    return true;
}

int jobs_event_encode(jsonx_buf *out, const jobs_event *ev)
{
    if ((unsigned)ev->type >= JOBS_EV_COUNT || !event_id_ok(ev->id, strlen(ev->id)) ||
        !event_data_ok(ev->data, ev->datalen))
        return -1;
    jsonx_buf_cat(out, "{\"id\":");
    jsonx_buf_str(out, ev->id, strlen(ev->id));
    put_str(out, "type", jobs_event_type_name(ev->type));
    put_int(out, "at", ev->at);
    jsonx_buf_cat(out, ",\"data\":");
    jsonx_buf_raw(out, ev->data, ev->datalen);
    jsonx_buf_raw(out, "}", 1);
    return jsonx_buf_ok(out) ? 0 : -1;
}

int jobs_event_decode(const char *data, size_t len, jobs_event *out, char *why, size_t whylen)
{
    jscan js = {0};
    int rc = -1, t;
    memset(out, 0, sizeof *out);
    if (jscan_parse(&js, data, len) != 0 || js.t[0].type != JSCAN_OBJECT) {
        snprintf(why, whylen, "malformed event: not a JSON object");
        goto out;
    }
    if (!take_event_id(&js, out->id, why, whylen))
        goto out;
    t = jscan_get(&js, 0, "type");
    if (t < 0 || js.t[t].type != JSCAN_STRING || js.t[t].escaped ||
        jobs_event_type_parse(data + js.t[t].start, js.t[t].len, &out->type) != 0) {
        snprintf(why, whylen, "unknown event type");
        goto out;
    }
    if (!take_event_at_data(&js, data, &out->at, &out->data, &out->datalen, why, whylen))
        goto out;
    rc = 0;
out:
    jscan_release(&js);
    return rc;
}

/* ---- webhook deliveries ------------------------------------------------------------------- */

static bool delivery_type_ok(const char *s, size_t n)
{
    jobs_event_type t;
    return (n == strlen(JOBS_DELIVERY_TEST_TYPE) && memcmp(s, JOBS_DELIVERY_TEST_TYPE, n) == 0) ||
           jobs_event_type_parse(s, n, &t) == 0;
}

int jobs_delivery_encode(jsonx_buf *out, const jobs_delivery *d)
{
    if (strlen(d->endpoint_id) != 24 || !oid_is_valid_hex(d->endpoint_id) ||
        !event_id_ok(d->id, strlen(d->id)) || !delivery_type_ok(d->type, strlen(d->type)) ||
        !event_data_ok(d->data, d->datalen))
        return -1;
    jsonx_buf_raw(out, "{", 1);
    put_id(out, true, "endpoint_id", d->endpoint_id);
    put_str(out, "id", d->id);
    put_str(out, "type", d->type);
    put_int(out, "at", d->at);
    jsonx_buf_cat(out, ",\"data\":");
    jsonx_buf_raw(out, d->data, d->datalen);
    jsonx_buf_raw(out, "}", 1);
    return jsonx_buf_ok(out) ? 0 : -1;
}

int jobs_delivery_decode(const char *data, size_t len, jobs_delivery *out, char *why, size_t whylen)
{
    jscan js = {0};
    int rc = -1, t;
    memset(out, 0, sizeof *out);
    if (jscan_parse(&js, data, len) != 0 || js.t[0].type != JSCAN_OBJECT) {
        snprintf(why, whylen, "malformed delivery: not a JSON object");
        goto out;
    }
    if (!hex_id(&js, jscan_get(&js, 0, "endpoint_id"), out->endpoint_id)) {
        snprintf(why, whylen, "delivery endpoint_id must be 24 hex digits");
        goto out;
    }
    if (!take_event_id(&js, out->id, why, whylen))
        goto out;
    t = jscan_get(&js, 0, "type");
    if (t < 0 || js.t[t].type != JSCAN_STRING || js.t[t].escaped ||
        js.t[t].len > JOBS_EVENT_TYPE_MAX || !delivery_type_ok(data + js.t[t].start, js.t[t].len)) {
        snprintf(why, whylen, "unknown event type");
        goto out;
    }
    memcpy(out->type, data + js.t[t].start, js.t[t].len);
    out->type[js.t[t].len] = '\0';
    if (!take_event_at_data(&js, data, &out->at, &out->data, &out->datalen, why, whylen))
        goto out;
    int64_t a = 0;
    t = jscan_get(&js, 0, "_attempts");
    if (t >= 0 && jscan_int(&js, t, &a) && a > 0)
        out->attempts = a > 1000000 ? 1000000 : (int)a;
    rc = 0;
out:
    jscan_release(&js);
    return rc;
}
