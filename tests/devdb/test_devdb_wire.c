/*
 * Unit tests of devdb/wire/wire.c: exact parsing of OP_MSG (body + document sequences, checksum,
 * moreToCome) and OP_QUERY, reply framing, and a mutation fuzz loop: tens of thousands of
 * corrupted, truncated and resized messages must each parse or fail cleanly (run under ASan
 * in the sanitizer build, this is what proves the parser never reads out of bounds).
 */
#include "test.h"
#include "wire/wire.h"
#include "base/crc32c.h"

#include <stdlib.h>

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* OP_MSG {insert: "c", $db: "d"} + sequence documents [{_id: 1}, {_id: 2}]; returns length. */
static size_t sample_msg(uint8_t *buf, uint32_t flags)
{
    bson_t *body = BCON_NEW("insert", BCON_UTF8("c"), "$db", BCON_UTF8("d"));
    bson_t *d1 = BCON_NEW("_id", BCON_INT32(1)), *d2 = BCON_NEW("_id", BCON_INT32(2));
    size_t off = 16;
    put32(buf + off, flags);
    off += 4;
    buf[off++] = 0;
    memcpy(buf + off, bson_get_data(body), body->len);
    off += body->len;
    buf[off++] = 1;
    size_t size_at = off;
    off += 4;
    memcpy(buf + off, "documents", 10);
    off += 10;
    memcpy(buf + off, bson_get_data(d1), d1->len);
    off += d1->len;
    memcpy(buf + off, bson_get_data(d2), d2->len);
    off += d2->len;
    put32(buf + size_at, (uint32_t)(off - size_at));
    size_t total = off + ((flags & 1) ? 4 : 0);
    put32(buf, (uint32_t)total);
    put32(buf + 4, 42);
    put32(buf + 8, 0);
    put32(buf + 12, 2013);
    if (flags & 1)
        put32(buf + off, crc32c_sum(buf, off));
    bson_destroy(body);
    bson_destroy(d1);
    bson_destroy(d2);
    return total;
}

static size_t sample_query(uint8_t *buf)
{
    bson_t *q = BCON_NEW("$query", "{", "isMaster", BCON_INT32(1), "}", "$readPreference", "{",
                         "mode", BCON_UTF8("primary"), "}");
    size_t off = 16;
    put32(buf + off, 0);
    off += 4;
    memcpy(buf + off, "admin.$cmd", 11);
    off += 11;
    put32(buf + off, 0);
    put32(buf + off + 4, (uint32_t)-1);
    off += 8;
    memcpy(buf + off, bson_get_data(q), q->len);
    off += q->len;
    put32(buf, (uint32_t)off);
    put32(buf + 4, 7);
    put32(buf + 8, 0);
    put32(buf + 12, 2004);
    bson_destroy(q);
    return off;
}

TEST(crc32c_known_value)
{
    CHECK_INT_EQ(crc32c_sum((const uint8_t *)"123456789", 9), 0xE3069283u);
}

TEST(op_msg_sequences_merge_into_command)
{
    uint8_t buf[512];
    size_t n = sample_msg(buf, 1);
    wire_request req;
    char err[256];
    CHECK_MSG(wire_parse(buf, n, &req, err, sizeof err) == 0, "%s", err);
    CHECK_STR_EQ(req.db, "d");
    CHECK(!req.more_to_come);
    bson_iter_t it;
    CHECK(bson_iter_init(&it, &req.cmd) && bson_iter_find_descendant(&it, "documents.1._id", &it));
    CHECK_INT_EQ(bson_iter_int32(&it), 2);
    wire_request_release(&req);

    /* a flipped checksum bit is refused */
    buf[n - 1] ^= 0x10;
    CHECK_INT_EQ(wire_parse(buf, n, &req, err, sizeof err), -1);
    CHECK_STR_CONTAINS(err, "checksum");
    wire_request_release(&req);

    n = sample_msg(buf, 2);
    CHECK_INT_EQ(wire_parse(buf, n, &req, err, sizeof err), 0);
    CHECK(req.more_to_come);
    wire_request_release(&req);

    /* unknown required flag bit */
    n = sample_msg(buf, 1u << 5);
    CHECK_INT_EQ(wire_parse(buf, n, &req, err, sizeof err), -1);
    wire_request_release(&req);
}

TEST(op_query_unwraps_and_replies_with_op_reply)
{
    uint8_t buf[512];
    size_t n = sample_query(buf);
    wire_request req;
    char err[256];
    CHECK_MSG(wire_parse(buf, n, &req, err, sizeof err) == 0, "%s", err);
    CHECK_STR_EQ(req.db, "admin");
    bson_iter_t it;
    CHECK(bson_iter_init(&it, &req.cmd) && bson_iter_next(&it));
    CHECK_STR_EQ(bson_iter_key(&it), "isMaster");
    bson_t *body = BCON_NEW("ok", BCON_DOUBLE(1));
    size_t rlen;
    uint8_t *r = wire_build_reply(&req.hdr, 99, body, &rlen);
    CHECK(r != NULL);
    wire_header h;
    wire_header_decode(r, &h);
    CHECK_INT_EQ(h.opcode, WIRE_OP_REPLY);
    CHECK_INT_EQ(h.response_to, 7);
    CHECK_INT_EQ(h.length, (int32_t)rlen);
    CHECK_INT_EQ(rlen, 16 + 20 + body->len);
    free(r);
    bson_destroy(body);
    wire_request_release(&req);

    /* OP_QUERY to a collection (legacy find) is refused */
    memcpy(buf + 20, "admin.coll", 11);
    CHECK_INT_EQ(wire_parse(buf, n, &req, err, sizeof err), -1);
    wire_request_release(&req);
}

TEST(fuzzed_messages_parse_or_fail_cleanly)
{
    uint8_t orig[2][512], buf[600];
    size_t olen[2] = {sample_msg(orig[0], 0), sample_query(orig[1])};
    unsigned seed = 12345;
    int parsed = 0, failed = 0;
    for (int iter = 0; iter < 50000; iter++) {
        int which = iter & 1;
        size_t n = olen[which];
        memcpy(buf, orig[which], n);
        seed = seed * 1103515245u + 12345u;
        int nmut = 1 + (int)((seed >> 16) % 4);
        for (int m = 0; m < nmut; m++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = (seed >> 8) % n;
            switch ((seed >> 4) % 4) {
            case 0: /* flip a byte */
                buf[pos] ^= (uint8_t)(seed >> 24 | 1);
                break;
            case 1: /* truncate */
                n = pos < 16 ? 16 : pos;
                break;
            case 2: /* set a length-ish 32-bit field to something odd */
                if (pos + 4 <= n)
                    put32(buf + pos, (uint32_t)(seed >> 3) % 700);
                break;
            default: /* grow with junk */
                if (n + 8 < sizeof buf) {
                    memset(buf + n, (int)(seed >> 20), 8);
                    n += 8;
                }
            }
        }
        /* The server only hands over messages whose header length matches. */
        put32(buf, (uint32_t)n);
        wire_request req;
        char err[256];
        if (wire_parse(buf, n, &req, err, sizeof err) == 0) {
            size_t eoff = 0;
            CHECK_MSG(bson_validate(&req.cmd, BSON_VALIDATE_UTF8_ALLOW_NULL, &eoff),
                      "iter %d: invalid command at %zu, len %u", iter, eoff, req.cmd.len);
            CHECK(req.db[0] != '\0');
            parsed++;
        } else {
            CHECK(err[0] != '\0');
            failed++;
        }
        wire_request_release(&req);
    }
    CHECK(parsed > 0 && failed > 0);
}

/* OP_MSG whose body is {$db: "d", b: true, s: <string of n bytes>} with the string's bytes
 * given; then the byte at body offset `patch_at` (if >= 0) set to `patch`. Returns wire_parse's
 * result, after checking that it agrees with libbson's bson_validate of the body (UTF-8 with
 * NUL allowed, the validation the parser promises). */
static int parse_body_with(const char *str, size_t n, int patch_at, uint8_t patch)
{
    bson_t body = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&body, "$db", "d");
    BSON_APPEND_BOOL(&body, "b", true);
    bson_append_utf8(&body, "s", 1, "x", 1);
    uint8_t buf[512];
    size_t off = 16;
    put32(buf + off, 0);
    off += 4;
    buf[off++] = 0;
    size_t body_at = off;
    memcpy(buf + off, bson_get_data(&body), body.len);
    /* Replace the one-byte string "x" (the last element) by str: rewrite its length and bytes. */
    size_t sv = body_at + body.len - 1 - 2 - 4; /* int32 length of "x" */
    put32(buf + sv, (uint32_t)n + 1);
    memcpy(buf + sv + 4, str, n);
    buf[sv + 4 + n] = 0;
    buf[sv + 4 + n + 1] = 0; /* document terminator */
    uint32_t blen = (uint32_t)(sv + 4 + n + 2 - body_at);
    put32(buf + body_at, blen);
    if (patch_at >= 0)
        buf[body_at + (size_t)patch_at] = patch;
    off = body_at + blen;
    put32(buf, (uint32_t)off);
    put32(buf + 4, 1);
    put32(buf + 8, 0);
    put32(buf + 12, 2013);
    bson_destroy(&body);
    wire_request req;
    char err[256];
    int rc = wire_parse(buf, off, &req, err, sizeof err);
    wire_request_release(&req);
    bson_t b;
    size_t eoff;
    bool want = bson_init_static(&b, buf + body_at, blen) &&
                bson_validate(&b, BSON_VALIDATE_UTF8_ALLOW_NULL, &eoff);
    if (want != (rc == 0)) {
        fprintf(stderr, "  wire_parse %d but bson_validate %d\n", rc, want);
        return -2;
    }
    return rc;
}

TEST(body_validation_accepts_and_refuses_as_libbson)
{
    /* ASCII, embedded NUL, valid multi-byte UTF-8: accepted. */
    CHECK_INT_EQ(parse_body_with("PENDING", 7, -1, 0), 0);
    CHECK_INT_EQ(parse_body_with("a\0b", 3, -1, 0), 0);
    CHECK_INT_EQ(parse_body_with("h\xc3\xa9llo \xe2\x82\xac", 10, -1, 0), 0);
    /* Invalid UTF-8 in a string value: whatever libbson decides (1.23 lets it through, as
     * MongoDB does), checked inside parse_body_with. */
    CHECK(parse_body_with("\xc3(", 2, -1, 0) != -2);
    CHECK(parse_body_with("\xff", 1, -1, 0) != -2);
    /* A boolean byte other than 0 / 1 (offset: 4 + "$db" element 11 + type + "b\0"). */
    CHECK_INT_EQ(parse_body_with("x", 1, 4 + 11 + 3, 1), 0);
    CHECK_INT_EQ(parse_body_with("x", 1, 4 + 11 + 3, 2), -1);
    /* A non-UTF-8 key (the "b" of the boolean). */
    CHECK_INT_EQ(parse_body_with("x", 1, 4 + 11 + 1, 0xff), -1);
    /* An unknown element type. */
    CHECK_INT_EQ(parse_body_with("x", 1, 4 + 11, 0x77), -1);
}

TEST_MAIN(TEST_ENTRY(body_validation_accepts_and_refuses_as_libbson),
          TEST_ENTRY(crc32c_known_value), TEST_ENTRY(op_msg_sequences_merge_into_command),
          TEST_ENTRY(op_query_unwraps_and_replies_with_op_reply),
          TEST_ENTRY(fuzzed_messages_parse_or_fail_cleanly))
