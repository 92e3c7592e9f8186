/*
 * entry.h — the bytes of one Raft log entry: a Command (catalog.proto) framed so its
 * length survives libraft's requirement that entries be a multiple of 8 bytes long.
 */
#ifndef RCDS_ENTRY_H
#define RCDS_ENTRY_H

#include <raft.h>

#include "catalog.pb-c.h"

/* Encodes cmd into buf; buf->base is raft_malloc'd (libraft takes ownership when the
 * buffer is given to raft_apply). */
int rcds_entry_encode(const Snipe__Command *cmd, struct raft_buffer *buf);
/* Encodes the n serialised commands of cmds (n >= 1) as one entry: the command itself
 * when n is 1, else a Command whose batch holds them. */
int rcds_entry_encode_batch(const ProtobufCBinaryData *cmds, size_t n, struct raft_buffer *buf);
/* Decodes an entry; NULL if it is malformed. Free with snipe__command__free_unpacked. */
Snipe__Command *rcds_entry_decode(const struct raft_buffer *buf);

#endif
