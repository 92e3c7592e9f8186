/*
 * transport.h — the replicas' Raft transport: libraft's TCP transport (raft_uv_tcp)
 * with a cluster secret. A replica takes Raft messages on a connection only after the
 * connecting replica proved, once per connection, that it knows the secret; strays
 * and other clusters' replicas are refused. No encryption and no per-message MAC: it
 * does not stop an attacker who can splice into an established TCP connection.
 */
#ifndef RCDS_TRANSPORT_H
#define RCDS_TRANSPORT_H

#include <raft.h>
#include <raft/uv.h>
#include <stdint.h>

#define RCDS_SECRET_BYTES 32

/* Like raft_uv_tcp_init, with the secret (copied). */
int rcds_transport_init(struct raft_uv_transport *t, uv_loop_t *loop,
                        const uint8_t secret[RCDS_SECRET_BYTES]);
/* Like raft_uv_tcp_close: frees what init allocated, once libraft has closed t. */
void rcds_transport_close(struct raft_uv_transport *t);

#endif
