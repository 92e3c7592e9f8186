/*
 * consensus.h — the Raft glue of a catalog replica: libraft (raft_uv over TCP) driving
 * an rcds_store as its state machine. The only file that includes libraft's headers
 * besides entry.c, so the library can be swapped (cowsql/raft) in one place.
 */
#ifndef RCDS_CONSENSUS_H
#define RCDS_CONSENSUS_H

#include <stdint.h>
#include <uv.h>

#include "catalog.pb-c.h"
#include "store.h"

typedef struct rcds_peer {
	uint64_t id;
	char address[64]; /* host:port of its Raft transport */
} rcds_peer;

typedef struct rcds_consensus_config {
	uint64_t id;              /* this replica; must appear in peers */
	const char *dir;          /* Raft data directory (created if missing) */
	const rcds_peer *peers;   /* the initial voters, used to bootstrap a new group */
	size_t npeers;
	unsigned election_ms;     /* default 200 */
	unsigned heartbeat_ms;    /* default 50 */
	unsigned snapshot_threshold; /* entries between snapshots; default 8192 */
} rcds_consensus_config;

typedef struct rcds_consensus rcds_consensus;

/* Called after every applied entry (leader and followers), on the loop thread. cmd is
 * the entry's command when it was applied now for the first time, NULL when it was a
 * replay after restart, undecodable, or a snapshot restore. */
typedef void (*rcds_applied_fn)(void *arg, uint64_t index, const Snipe__Command *cmd,
                                const rcds_result *res);
/* Called once per proposal: res is NULL when the entry was not committed (code says why:
 * SNIPE_ENOTLEADER if leadership was lost, SNIPE_EIO otherwise). */
typedef void (*rcds_done_fn)(void *arg, int code, const rcds_result *res);

/* Starts the replica on loop. store is borrowed and must outlive the consensus. */
int rcds_consensus_start(uv_loop_t *loop, const rcds_consensus_config *cfg,
                         rcds_store *store, rcds_applied_fn on_applied, void *arg,
                         rcds_consensus **out, char *err, size_t errlen);
/* Proposes a write; done fires exactly once. SNIPE_ENOTLEADER (and no callback) if this
 * replica does not lead. */
int rcds_consensus_propose(rcds_consensus *c, const Snipe__Command *cmd, rcds_done_fn done,
                           void *arg);
bool rcds_consensus_is_leader(rcds_consensus *c);
/* Fills st's Raft fields (id, leader, term, indexes, members, state). Strings point into
 * the consensus; valid until the next loop iteration. members is malloc'd: free with
 * rcds_consensus_status_clear. */
void rcds_consensus_status(rcds_consensus *c, Snipe__Status *st);
void rcds_consensus_status_clear(Snipe__Status *st);
/* Stops Raft and frees everything once closed; then calls done(arg). */
void rcds_consensus_close(rcds_consensus *c, void (*done)(void *arg), void *arg);

#endif
