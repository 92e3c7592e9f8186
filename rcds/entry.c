/*
 * entry.c — framing of Raft log entries: a 4-byte big-endian length, the serialised
 * Command, zero padding to a multiple of 8 bytes (libraft corrupts other lengths).
 */
#include <string.h>

#include "entry.h"
#include "snipe.h"

#define HEADER 4u

/* A zeroed frame for a command of len bytes, its header written; NULL if too long or
 * out of memory. */
static uint8_t *frame(size_t len, struct raft_buffer *buf)
{
	if (len > UINT32_MAX - 8)
		return NULL;
	size_t padded = (HEADER + len + 7u) & ~(size_t)7u;
	uint8_t *p = raft_calloc(1, padded);
	if (p == NULL)
		return NULL;
	p[0] = (uint8_t)(len >> 24);
	p[1] = (uint8_t)(len >> 16);
	p[2] = (uint8_t)(len >> 8);
	p[3] = (uint8_t)len;
	buf->base = p;
	buf->len = padded;
	return p + HEADER;
}

int rcds_entry_encode(const Snipe__Command *cmd, struct raft_buffer *buf)
{
	uint8_t *p = frame(snipe__command__get_packed_size(cmd), buf);
	if (p == NULL)
		return SNIPE_ENOMEM;
	snipe__command__pack(cmd, p);
	return SNIPE_OK;
}

int rcds_entry_encode_batch(const ProtobufCBinaryData *cmds, size_t n, struct raft_buffer *buf)
{
	if (n == 1) {
		uint8_t *p = frame(cmds[0].len, buf);
		if (p == NULL)
			return SNIPE_ENOMEM;
		memcpy(p, cmds[0].data, cmds[0].len);
		return SNIPE_OK;
	}
	Snipe__Command batch = SNIPE__COMMAND__INIT;
	batch.batch = (ProtobufCBinaryData *)cmds;
	batch.n_batch = n;
	return rcds_entry_encode(&batch, buf);
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
