/*
 * fuzz_devdb_wire: libFuzzer target for devdb's request path: wire message parsing
 * (wire_parse: OP_MSG sections, checksums, OP_QUERY) and then, for a message that parses,
 * command dispatch and execution (commands_run) against a fresh in-memory store, and the
 * reply encoding (wire_build_reply), exactly as a connection thread runs them.
 *
 * The input is one whole message. Its length field is overwritten with the input size, as
 * the server's framing only ever hands wire_parse a message of exactly that length (the
 * framing rejects lengths outside 17..WIRE_MAX_MESSAGE before reading the body).
 *
 * Each input gets its own store and cursor table, freed afterwards, so every run is
 * independent and LeakSanitizer sees any leak of the path. Build: scripts/fuzz.sh.
 */
#include "commands/commands.h"
#include "commands/cursor.h"
#include "storage/store.h"
#include "wire/wire.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < WIRE_HEADER_LEN + 1 || size > (1u << 20))
        return 0;
    uint8_t *buf = malloc(size);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[0] = (uint8_t)size;
    buf[1] = (uint8_t)(size >> 8);
    buf[2] = (uint8_t)(size >> 16);
    buf[3] = (uint8_t)(size >> 24);
    wire_header hdr;
    wire_header_decode(buf, &hdr);
    if (hdr.opcode != WIRE_OP_MSG && hdr.opcode != WIRE_OP_QUERY) {
        free(buf);
        return 0;
    }
    cmd_env env = {0};
    env.st = store_new();
    env.cursors = cursor_table_new(60000);
    env.max_conns = 10;
    cmd_conn conn = {.env = &env, .conn_id = 1};
    wire_request req;
    char err[256];
    bson_t reply = BSON_INITIALIZER;
    if (env.st && env.cursors && wire_parse(buf, size, &req, err, sizeof err) == 0) {
        commands_run(&conn, req.db, &req.cmd, &reply);
        size_t len;
        uint8_t *m = wire_build_reply(&req.hdr, 1, &reply, &len);
        free(m);
    }
    wire_request_release(&req);
    bson_destroy(&reply);
    cursor_table_free(env.cursors);
    store_free(env.st);
    free(buf);
    return 0;
}
