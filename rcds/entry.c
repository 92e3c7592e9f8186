/*
 * entry.c — framing of Raft log entries: a 4-byte big-endian length, the serialised
 * Command, zero padding to a multiple of 8 bytes (libraft corrupts other lengths).
 */
#include <string.h>

#include "entry.h"
#include "snipe.h"

#define HEADER 4u

int rcds_entry_encode(const Snipe__Command *cmd, struct raft_buffer *buf)
{
	size_t len = snipe__command__get_packed_size(cmd);
	if (len > UINT32_MAX - 8)
		return SNIPE_ERANGE;
	size_t padded = (HEADER + len + 7u) & ~(size_t)7u;
	uint8_t *p = raft_calloc(1, padded);
	if (p == NULL)
		return SNIPE_ENOMEM;
	p[0] = (uint8_t)(len >> 24);
	p[1] = (uint8_t)(len >> 16);
	p[2] = (uint8_t)(len >> 8);
	p[3] = (uint8_t)len;
	snipe__command__pack(cmd, p + HEADER);
	buf->base = p;
	buf->len = padded;
	return SNIPE_OK;
}

Snipe__Command *rcds_entry_decode(const struct raft_buffer *buf)
{
	const uint8_t *p = buf->base;
	if (buf->len < HEADER)
		return NULL;
	size_t len = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
	if (len > buf->len - HEADER)
		return NULL;
	return snipe__command__unpack(NULL, len, p + HEADER);
}
