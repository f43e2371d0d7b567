/*
 * wire.c: MongoDB wire protocol framing for devdb (see wire.h).
 *
 * Design: a request arrives as one contiguous buffer (the server reads exactly the length the
 * header announces, capped at WIRE_MAX_MESSAGE). Parsing walks that buffer with an explicit
 * remaining-length at every step; every embedded BSON document is length-checked against the
 * rest of the buffer and validated with bson_validate before it is copied, so a hostile or
 * truncated message can only ever produce an error string.
 *
 * OP_MSG layout:   header | uint32 flagBits | sections... | [uint32 crc32c]
 *   section kind 0: a single BSON document (the command body)
 *   section kind 1: int32 size | cstring identifier | BSON documents...
 * OP_QUERY layout: header | int32 flags | cstring ns | int32 skip | int32 nreturn | query [|
 * fields] OP_REPLY layout: header | int32 flags | int64 cursorId | int32 startingFrom | int32 n |
 * docs
 */
#include "wire/wire.h"

#include "base/crc32c.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    MSG_CHECKSUM_PRESENT = 1u << 0,
    MSG_MORE_TO_COME = 1u << 1,
    MSG_EXHAUST_ALLOWED = 1u << 16,
    /* Bits 0-15 are "required": a receiver must reject unknown ones. */
    MSG_REQUIRED_MASK = 0xffffu,
};

static int32_t rd32(const uint8_t *p)
{
    uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    return (int32_t)v;
}

static void wr32(uint8_t *p, int32_t v)
{
    uint32_t u = (uint32_t)v;
    p[0] = (uint8_t)u;
    p[1] = (uint8_t)(u >> 8);
    p[2] = (uint8_t)(u >> 16);
    p[3] = (uint8_t)(u >> 24);
}

void wire_header_decode(const uint8_t *p, wire_header *out)
{
    out->length = rd32(p);
    out->request_id = rd32(p + 4);
    out->response_to = rd32(p + 8);
    out->opcode = rd32(p + 12);
}

/* ---- parsing --------------------------------------------------------------------------- */

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        snprintf(err, errlen, __VA_ARGS__);                                                        \
        goto fail;                                                                                 \
    } while (0)

/* Every nested document and array of b has a consistent length prefix, recursively (depth
 * capped). bson_validate alone let nested length mismatches through, which made libbson
 * assert later in the commands (found by fuzz_devdb_wire). */
static bool nested_ok(const bson_t *b, int depth)
{
    if (depth > 200)
        return false;
    bson_iter_t it;
    if (!bson_iter_init(&it, b))
        return false;
    while (bson_iter_next(&it)) {
        if (BSON_ITER_HOLDS_DOCUMENT(&it) || BSON_ITER_HOLDS_ARRAY(&it)) {
            const uint8_t *d;
            uint32_t l;
            bson_t sub;
            if (BSON_ITER_HOLDS_DOCUMENT(&it))
                bson_iter_document(&it, &l, &d);
            else
                bson_iter_array(&it, &l, &d);
            if (!d || !bson_init_static(&sub, d, l) || !nested_ok(&sub, depth + 1))
                return false;
        } else if (BSON_ITER_HOLDS_CODEWSCOPE(&it)) {
            const uint8_t *d;
            uint32_t l, cl;
            bson_t sub;
            bson_iter_codewscope(&it, &cl, &l, &d);
            if (!d || !bson_init_static(&sub, d, l) || !nested_ok(&sub, depth + 1))
                return false;
        }
    }
    return !it.err_off;
}

/* Are the n bytes at p all ASCII (NUL included)? Eight at a time. */
static bool ascii_only(const uint8_t *p, size_t n)
{
    uint64_t acc = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        acc |= w;
    }
    for (; i < n; i++)
        acc |= p[i];
    return (acc & UINT64_C(0x8080808080808080)) == 0;
}

/*
 * The common case of doc_len_at in one pass: a document (n bytes at p, length prefix and
 * terminator already checked) made only of ASCII keys and doubles, ASCII strings, documents,
 * arrays, ObjectIds, booleans (0 or 1), dates, nulls, int32s and int64s, every length
 * consistent with its container, nested at most 100 deep. True means bson_validate
 * (UTF-8, NUL allowed in strings) and nested_ok would both accept it; false means "not sure"
 * (another type, a non-ASCII byte, a bad length) and the caller asks them, so what is accepted
 * is exactly what it was. The receipts worker's 500-statement updates and the fan-out's
 * 1000-document inserts are all of this kind; libbson's visitor-based validation plus the
 * separate nested walk cost ~10% of devdb's CPU on them.
 */
static bool simple_doc_ok(const uint8_t *p, uint32_t n, int depth)
{
    if (depth > 100)
        return false;
    const uint8_t *q = p + 4, *end = p + n - 1; /* end: the document's terminating NUL */
    while (q < end) {
        uint8_t t = *q++;
        const uint8_t *z = memchr(q, 0, (size_t)(end - q));
        if (!z || !ascii_only(q, (size_t)(z - q)))
            return false;
        q = z + 1;
        size_t rest = (size_t)(end - q), need;
        switch (t) {
        case 0x01: /* double */
        case 0x09: /* date */
        case 0x12: /* int64 */
            need = 8;
            break;
        case 0x07: /* ObjectId */
            need = 12;
            break;
        case 0x10: /* int32 */
            need = 4;
            break;
        case 0x0A: /* null */
            need = 0;
            break;
        case 0x08: /* bool */
            if (rest < 1 || q[0] > 1)
                return false;
            need = 1;
            break;
        case 0x02: { /* string: int32 length with the NUL, bytes, NUL */
            if (rest < 4)
                return false;
            int32_t l = rd32(q);
            if (l < 1 || (size_t)l > rest - 4 || q[4 + l - 1] != 0 ||
                !ascii_only(q + 4, (size_t)l - 1))
                return false;
            need = 4 + (size_t)l;
            break;
        }
        case 0x03:   /* document */
        case 0x04: { /* array */
            if (rest < 5)
                return false;
            int32_t l = rd32(q);
            if (l < 5 || (size_t)l > rest || q[l - 1] != 0 ||
                !simple_doc_ok(q, (uint32_t)l, depth + 1))
                return false;
            need = (size_t)l;
            break;
        }
        default:
            return false;
        }
        if (need > rest)
            return false;
        q += need;
    }
    return q == end;
}

/* Check that a BSON document of valid framing starts at p with at most `avail` bytes.
 * Returns its length, or -1. */
static int32_t doc_len_at(const uint8_t *p, size_t avail)
{
    if (avail < 5)
        return -1;
    int32_t n = rd32(p);
    if (n < 5 || (size_t)n > avail || n > WIRE_MAX_BSON || p[n - 1] != 0)
        return -1;
    if (simple_doc_ok(p, (uint32_t)n, 0))
        return n;
    bson_t b;
    if (!bson_init_static(&b, p, (size_t)n))
        return -1;
    size_t off;
    if (!bson_validate(&b, BSON_VALIDATE_UTF8_ALLOW_NULL, &off) || !nested_ok(&b, 0))
        return -1;
    return n;
}

static int copy_db(char *dst, const char *src, size_t n)
{
    if (n == 0 || n >= WIRE_DB_MAX || !bson_utf8_validate(src, n, false))
        return -1;
    memcpy(dst, src, n);
    dst[n] = '\0';
    return 0;
}

static int parse_msg(const uint8_t *buf, size_t len, wire_request *out, char *err, size_t errlen)
{
    const uint8_t *p = buf + WIRE_HEADER_LEN;
    size_t rest = len - WIRE_HEADER_LEN;
    if (rest < 4)
        FAIL("OP_MSG too short");
    uint32_t flags = (uint32_t)rd32(p);
    p += 4;
    rest -= 4;
    if (flags & MSG_REQUIRED_MASK & ~(uint32_t)(MSG_CHECKSUM_PRESENT | MSG_MORE_TO_COME))
        FAIL("OP_MSG has unknown required flag bits 0x%x", flags);
    out->more_to_come = (flags & MSG_MORE_TO_COME) != 0;
    if (flags & MSG_CHECKSUM_PRESENT) {
        if (rest < 4)
            FAIL("OP_MSG checksum missing");
        uint32_t want = (uint32_t)rd32(buf + len - 4);
        if (crc32c_sum(buf, len - 4) != want)
            FAIL("OP_MSG checksum mismatch");
        rest -= 4;
    }

    const uint8_t *body = NULL;
    int32_t body_len = 0;
    /* Sequences are merged after the body is known; remember where they are. */
    enum { MAX_SEQ = 8 };
    struct {
        const char *id;
        size_t id_len;
        const uint8_t *docs;
        size_t docs_len;
    } seq[MAX_SEQ];
    int nseq = 0;

    while (rest > 0) {
        uint8_t kind = *p++;
        rest--;
        if (kind == 0) {
            if (body)
                FAIL("OP_MSG has more than one body section");
            body_len = doc_len_at(p, rest);
            if (body_len < 0)
                FAIL("OP_MSG body is not a valid BSON document");
            body = p;
            p += body_len;
            rest -= (size_t)body_len;
        } else if (kind == 1) {
            if (rest < 4)
                FAIL("OP_MSG document sequence truncated");
            int32_t size = rd32(p);
            if (size < 5 || (size_t)size > rest)
                FAIL("OP_MSG document sequence size %d invalid", size);
            const uint8_t *end = p + size;
            const uint8_t *q = p + 4;
            const uint8_t *nul = memchr(q, 0, (size_t)(end - q));
            if (!nul)
                FAIL("OP_MSG document sequence identifier unterminated");
            if (nseq == MAX_SEQ)
                FAIL("OP_MSG has too many document sequences");
            seq[nseq].id = (const char *)q;
            seq[nseq].id_len = (size_t)(nul - q);
            if (!bson_utf8_validate(seq[nseq].id, seq[nseq].id_len, false))
                FAIL("OP_MSG document sequence identifier is not valid UTF-8");
            q = nul + 1;
            seq[nseq].docs = q;
            seq[nseq].docs_len = (size_t)(end - q);
            /* Validate every document now so merging cannot fail half-way. */
            while (q < end) {
                int32_t dl = doc_len_at(q, (size_t)(end - q));
                if (dl < 0)
                    FAIL("OP_MSG document sequence '%.*s' holds an invalid document",
                         (int)seq[nseq].id_len, seq[nseq].id);
                q += dl;
            }
            nseq++;
            p = end;
            rest -= (size_t)size;
        } else {
            FAIL("OP_MSG section kind %u is not supported", kind);
        }
    }
    if (!body)
        FAIL("OP_MSG has no body section");

    /* The merged command is written once into a buffer of its exact size (body elements, then
     * one array per sequence with keys "0", "1", ...: the bytes bson_concat and
     * bson_append_array / bson_append_document would produce) instead of growing a bson_t
     * through a dozen reallocations of a command of up to 48 MB. */
    bson_t b;
    bson_init_static(&b, body, (size_t)body_len);
    size_t total = (size_t)body_len;
    for (int i = 0; i < nseq; i++) {
        char key[256];
        if (seq[i].id_len == 0 || seq[i].id_len >= sizeof key)
            FAIL("OP_MSG document sequence identifier invalid");
        memcpy(key, seq[i].id, seq[i].id_len);
        key[seq[i].id_len] = '\0';
        if (bson_has_field(&b, key))
            FAIL("OP_MSG field '%s' appears both in the body and as a document sequence", key);
        total += 1 + seq[i].id_len + 1 + 5; /* type, key, NUL, array length and terminator */
        const uint8_t *q = seq[i].docs, *end = seq[i].docs + seq[i].docs_len;
        for (uint32_t n = 0; q < end; n++) {
            char ibuf[16];
            const char *ikey;
            size_t ilen = bson_uint32_to_string(n, &ikey, ibuf, sizeof ibuf);
            int32_t dl = rd32(q);
            total += 1 + ilen + 1 + (size_t)dl;
            q += dl;
        }
        if (total > WIRE_MAX_MESSAGE)
            FAIL("command too large");
    }
    if (total > WIRE_MAX_MESSAGE)
        FAIL("command too large");
    uint8_t *cb = malloc(total);
    if (!cb)
        FAIL("out of memory");
    size_t w = (size_t)body_len - 1; /* the body without its terminator */
    memcpy(cb, body, w);
    for (int i = 0; i < nseq; i++) {
        cb[w++] = 0x04;
        memcpy(cb + w, seq[i].id, seq[i].id_len);
        w += seq[i].id_len;
        cb[w++] = 0;
        size_t arr_at = w;
        w += 4;
        const uint8_t *q = seq[i].docs, *end = seq[i].docs + seq[i].docs_len;
        for (uint32_t n = 0; q < end; n++) {
            char ibuf[16];
            const char *ikey;
            size_t ilen = bson_uint32_to_string(n, &ikey, ibuf, sizeof ibuf);
            int32_t dl = rd32(q);
            cb[w++] = 0x03;
            memcpy(cb + w, ikey, ilen);
            w += ilen;
            cb[w++] = 0;
            memcpy(cb + w, q, (size_t)dl);
            w += (size_t)dl;
            q += dl;
        }
        cb[w++] = 0;
        wr32(cb + arr_at, (int32_t)(w - arr_at));
    }
    cb[w++] = 0;
    wr32(cb, (int32_t)w);
    if (w != total || !bson_init_static(&out->cmd, cb, w)) {
        free(cb);
        FAIL("internal error merging document sequences");
    }
    out->cmd_buf = cb;

    bson_iter_t it;
    if (!bson_iter_init_find(&it, &out->cmd, "$db") || !BSON_ITER_HOLDS_UTF8(&it))
        FAIL("OP_MSG command has no string $db field");
    uint32_t dlen;
    const char *db = bson_iter_utf8(&it, &dlen);
    if (copy_db(out->db, db, dlen) != 0 || memchr(db, '\0', dlen))
        FAIL("invalid database name in $db");
    return 0;
fail:
    return -1;
}

static int parse_query(const uint8_t *buf, size_t len, wire_request *out, char *err, size_t errlen)
{
    const uint8_t *p = buf + WIRE_HEADER_LEN;
    size_t rest = len - WIRE_HEADER_LEN;
    if (rest < 4)
        FAIL("OP_QUERY too short");
    p += 4; /* flags: tailable/slaveOk/... are irrelevant for commands */
    rest -= 4;
    const uint8_t *nul = memchr(p, 0, rest);
    if (!nul)
        FAIL("OP_QUERY namespace unterminated");
    const char *ns = (const char *)p;
    size_t ns_len = (size_t)(nul - p);
    p = nul + 1;
    rest -= ns_len + 1;
    if (rest < 8)
        FAIL("OP_QUERY truncated");
    p += 8; /* numberToSkip, numberToReturn: a command reply is always one document */
    rest -= 8;
    int32_t qlen = doc_len_at(p, rest);
    if (qlen < 0)
        FAIL("OP_QUERY query is not a valid BSON document");

    const char *dot = memchr(ns, '.', ns_len);
    if (!dot || copy_db(out->db, ns, (size_t)(dot - ns)) != 0)
        FAIL("OP_QUERY namespace '%.*s' invalid", (int)(ns_len > 200 ? 200 : ns_len), ns);
    if (strcmp(dot + 1, "$cmd") != 0)
        FAIL("OP_QUERY is only supported for commands (<db>.$cmd); use OP_MSG for '%.*s'",
             (int)(ns_len > 200 ? 200 : ns_len), ns);

    bson_t q;
    bson_init_static(&q, p, (size_t)qlen);
    bson_iter_t it;
    /* Drivers wrap commands carrying a read preference as {$query: cmd, $readPreference: ..}. */
    if (bson_iter_init(&it, &q) && bson_iter_next(&it) &&
        (strcmp(bson_iter_key(&it), "$query") == 0 || strcmp(bson_iter_key(&it), "query") == 0) &&
        BSON_ITER_HOLDS_DOCUMENT(&it)) {
        uint32_t dl;
        const uint8_t *dd;
        bson_iter_document(&it, &dl, &dd);
        bson_t inner;
        if (!bson_init_static(&inner, dd, dl))
            FAIL("OP_QUERY $query invalid");
        bson_copy_to(&inner, &out->cmd);
    } else {
        bson_copy_to(&q, &out->cmd);
    }
    return 0;
fail:
    return -1;
}

int wire_parse(const uint8_t *buf, size_t len, wire_request *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (len < WIRE_HEADER_LEN) {
        snprintf(err, errlen, "message shorter than its header");
        return -1;
    }
    wire_header_decode(buf, &out->hdr);
    if ((size_t)out->hdr.length != len) {
        snprintf(err, errlen, "message length field %d does not match %zu", out->hdr.length, len);
        return -1;
    }
    int rc;
    if (out->hdr.opcode == WIRE_OP_MSG) {
        rc = parse_msg(buf, len, out, err, errlen);
    } else if (out->hdr.opcode == WIRE_OP_QUERY) {
        rc = parse_query(buf, len, out, err, errlen);
    } else {
        snprintf(err, errlen, "unsupported opcode %d", out->hdr.opcode);
        rc = -1;
    }
    if (rc != 0) {
        /* A half-built command must not leak; cmd was either never inited or is valid. */
        if (out->cmd.len)
            bson_destroy(&out->cmd);
        memset(&out->cmd, 0, sizeof out->cmd);
        free(out->cmd_buf);
        out->cmd_buf = NULL;
    }
    return rc;
}

void wire_request_release(wire_request *req)
{
    if (req && req->cmd.len)
        bson_destroy(&req->cmd);
    if (req) {
        memset(&req->cmd, 0, sizeof req->cmd);
        free(req->cmd_buf);
        req->cmd_buf = NULL;
    }
}

/* ---- replies ---------------------------------------------------------------------------- */

uint8_t *wire_build_reply(const wire_header *req, int32_t request_id, const bson_t *body,
                          size_t *len)
{
    size_t n;
    bool is_reply = req->opcode == WIRE_OP_QUERY;
    if (is_reply)
        n = WIRE_HEADER_LEN + 4 + 8 + 4 + 4 + body->len;
    else
        n = WIRE_HEADER_LEN + 4 + 1 + body->len;
    if (n > WIRE_MAX_MESSAGE)
        return NULL;
    uint8_t *m = malloc(n);
    if (!m)
        return NULL;
    wr32(m, (int32_t)n);
    wr32(m + 4, request_id);
    wr32(m + 8, req->request_id);
    uint8_t *p = m + WIRE_HEADER_LEN;
    if (is_reply) {
        wr32(m + 12, WIRE_OP_REPLY);
        wr32(p, 8); /* AwaitCapable */
        memset(p + 4, 0, 8);
        wr32(p + 12, 0);
        wr32(p + 16, 1);
        p += 20;
    } else {
        wr32(m + 12, WIRE_OP_MSG);
        wr32(p, 0);
        p[4] = 0;
        p += 5;
    }
    memcpy(p, bson_get_data(body), body->len);
    *len = n;
    return m;
}
