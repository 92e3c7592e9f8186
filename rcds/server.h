/*
 * server.h — the client side of a catalog replica: a nanomsg raw REP socket on the
 * libuv loop, signed requests in, replies out. Writes go to Raft (consensus.h), reads
 * are served from the local store, waiting for min_index when asked. Membership
 * changes (admin only) are made by the leader and answered once committed.
 */
#ifndef RCDS_SERVER_H
#define RCDS_SERVER_H

#include <stdint.h>
#include <uv.h>

#include "consensus.h"
#include "leader.h"
#include "store.h"

typedef struct rcds_server_config {
	const char *listen;       /* nanomsg endpoint, e.g. tcp://127.0.0.1:7400 */
	const char *watch;        /* PUB endpoint for applied changes, or NULL for none */
	const uint8_t *admin_pk;  /* the trust root, SNIPE_PK_BYTES */
	uint32_t skew_ms;         /* envelope clock window; default 30000 */
	uint32_t read_wait_ms;    /* longest wait for min_index; default 2000 */
} rcds_server_config;

typedef struct rcds_server rcds_server;

/* Binds the socket and loads the keyring from the store. store is borrowed. */
int rcds_server_start(uv_loop_t *loop, const rcds_server_config *cfg, rcds_store *store,
                      rcds_server **out, char *err, size_t errlen);
/* Gives the server the consensus it proposes writes to (created after the server,
 * since the consensus reports applied entries to rcds_server_applied) and the leader
 * duties (heartbeats, placement; may be NULL). */
void rcds_server_attach(rcds_server *s, rcds_consensus *c, rcds_leader *l);
/* The consensus's applied hook: publishes the change on the watch socket, wakes reads
 * waiting for this index, reloads keys. */
void rcds_server_applied(void *server, uint64_t index, const Snipe__Command *cmd,
                         const rcds_result *res);
/* Closes the socket; parked reads are answered ETIMEDOUT. Frees s. The consensus must
 * already be closed (its pending writes hold pointers into the server). */
void rcds_server_close(rcds_server *s);

#endif
