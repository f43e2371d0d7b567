/*
 * wire: the MongoDB wire protocol, as far as devdb speaks it.
 *
 * Parses one complete request message (header included) into a command document, and builds
 * the reply message for it. Two request formats are understood:
 *
 *   OP_MSG (2013)   kind-0 body plus kind-1 document sequences; each sequence is merged into
 *                   the command as an array named by its identifier. checksumPresent is
 *                   verified (CRC-32C); moreToCome means the client wants no reply.
 *   OP_QUERY (2004) only on "<db>.$cmd": the query document is the command ({$query: cmd,
 *                   ...} is unwrapped). Drivers use it for the opening isMaster handshake and
 *                   libmongoc's monitor keeps using it; the reply is an OP_REPLY.
 *
 * Guarantees: never reads outside the given buffer, validates every BSON document, bounds all
 * sizes by WIRE_MAX_MESSAGE. Pure functions, no I/O, thread-safe.
 */
#ifndef DEVDB_WIRE_H
#define DEVDB_WIRE_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    WIRE_OP_REPLY = 1,
    WIRE_OP_QUERY = 2004,
    WIRE_OP_MSG = 2013,
    WIRE_HEADER_LEN = 16,
    WIRE_MAX_MESSAGE = 48000000, /* maxMessageSizeBytes we advertise */
    WIRE_MAX_BSON = 16777216,    /* maxBsonObjectSize we advertise */
    WIRE_DB_MAX = 128,
};

/* The fixed message header (all fields little-endian on the wire). */
typedef struct wire_header {
    int32_t length;
    int32_t request_id;
    int32_t response_to;
    int32_t opcode;
} wire_header;

/* A parsed request. Release with wire_request_release. */
typedef struct wire_request {
    wire_header hdr;
    bool more_to_come;    /* OP_MSG moreToCome: send no reply */
    bson_t cmd;           /* the command, sequences merged in (owned) */
    uint8_t *cmd_buf;     /* OP_MSG: cmd's bytes (cmd is a static view of them), or NULL */
    char db[WIRE_DB_MAX]; /* target database ($db, or the OP_QUERY namespace) */
} wire_request;

/* Decode a header from 16 bytes. */
void wire_header_decode(const uint8_t *p, wire_header *out);

/* Parse the complete message `buf` (`len` bytes, header included). On success returns 0 and
 * fills `out` (caller releases). On failure returns -1 and writes a message to err; out->hdr is
 * still filled so that the caller can answer the request with an error. */
int wire_parse(const uint8_t *buf, size_t len, wire_request *out, char *err, size_t errlen);

/* Release what wire_parse filled. Safe on a zeroed struct and after a failed parse. */
void wire_request_release(wire_request *req);

/* Build the reply message for request `req` carrying `body`: an OP_MSG for OP_MSG requests,
 * an OP_REPLY for OP_QUERY requests. Returns a malloc'd buffer (caller frees) and its length
 * in *len, or NULL if the reply would exceed WIRE_MAX_MESSAGE. */
uint8_t *wire_build_reply(const wire_header *req, int32_t request_id, const bson_t *body,
                          size_t *len);

#endif
