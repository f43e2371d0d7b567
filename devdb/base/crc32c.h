/*
 * crc32c.h: CRC-32C (Castagnoli), the one checksum devdb computes: over OP_MSG messages whose
 * checksumPresent flag is set (wire/) and over every journal and snapshot record (storage/).
 *
 * It lives in base/ because both layers need the same function and storage/ may not include
 * wire/. Table-driven, one byte per step; the table is built on first use (a benign race: every
 * thread computes the same table). Thread-safe, no allocation.
 */
#ifndef DEVDB_CRC32C_H
#define DEVDB_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32C of the `n` bytes at `p` (initial value and final xor 0xffffffff, as OP_MSG uses). */
uint32_t crc32c_sum(const uint8_t *p, size_t n);

#endif
