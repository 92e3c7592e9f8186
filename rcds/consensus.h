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
	bool join;                /* joins an existing group: no bootstrap; the leader adds
	                           * it (rcds_consensus_add) and sends it the log or a snapshot */
	unsigned election_ms;     /* default 150 */
	unsigned heartbeat_ms;    /* default 50 */
	unsigned snapshot_threshold; /* entries between snapshots; default 65536 */
	const uint8_t *secret;    /* 32 bytes: replicas prove it to each other; NULL: the
	                             Raft transport is not authenticated (a warning) */
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
/* Proposes a write; done fires exactly once, later (at the earliest during a later
 * call for another write). Writes proposed during one turn of the loop become one
 * entry, proposed before the loop waits again. SNIPE_ENOTLEADER (and no callback) if
 * this replica does not lead; SNIPE_ERANGE if the command is over 1 MiB. */
int rcds_consensus_propose(rcds_consensus *c, const Snipe__Command *cmd, rcds_done_fn done,
                           void *arg);
bool rcds_consensus_is_leader(rcds_consensus *c);
/* Calls done(arg, SNIPE_OK) once every entry committed before the call is applied here
 * (a Raft barrier): what a new leader must wait for before it answers reads that must
 * see every acknowledged write. SNIPE_ENOTLEADER (and no callback) on a follower;
 * done gets SNIPE_ENOTLEADER if leadership is lost meanwhile. */
int rcds_consensus_barrier(rcds_consensus *c, void (*done)(void *arg, int code), void *arg);
/* Whether this replica leads, a barrier of its current term has completed, and it has
 * applied everything committed: then it may answer a leader read at once (no barrier).
 * (A leader deposed without knowing it yet could answer stale for up to an election
 * timeout; libraft offers no read-index to close that.) */
bool rcds_consensus_read_ready(rcds_consensus *c);

/* Called once when a membership change ends: code is SNIPE_OK or why it failed
 * (SNIPE_ENOTLEADER if leadership was lost, SNIPE_ETIMEDOUT if a new replica did not
 * catch up, SNIPE_EIO...); reason is for a person, valid during the call only. */
typedef void (*rcds_change_fn)(void *arg, int code, const char *reason);
/*
 * Membership changes, leader only, one at a time. Adding puts replica id (its Raft
 * transport at address, copied) in the configuration, sends it the log or a snapshot
 * and, once it has caught up, makes it a voter; an id already there but not yet a
 * voter (an add that failed to catch up) is only promoted. Removing takes id out of
 * the configuration; the removed replica keeps running until its operator stops it.
 * On SNIPE_OK done fires exactly once, later. Otherwise no callback and err says why:
 * SNIPE_ENOTLEADER, SNIPE_EEXIST (id or address already a member), SNIPE_ENOTFOUND
 * (remove: no such member), SNIPE_EBUSY (another change is in progress: retry),
 * SNIPE_EINVAL, SNIPE_ENOMEM, SNIPE_EIO.
 */
int rcds_consensus_add(rcds_consensus *c, uint64_t id, const char *address,
                       rcds_change_fn done, void *arg, char *err, size_t errlen);
int rcds_consensus_remove(rcds_consensus *c, uint64_t id, rcds_change_fn done, void *arg,
                          char *err, size_t errlen);
/* Fills st's Raft fields (id, leader, term, indexes, members, state). Strings point into
 * the consensus; valid until the next loop iteration. members is malloc'd: free with
 * rcds_consensus_status_clear. */
void rcds_consensus_status(rcds_consensus *c, Snipe__Status *st);
void rcds_consensus_status_clear(Snipe__Status *st);
/* Stops Raft and frees everything once closed; then calls done(arg). */
void rcds_consensus_close(rcds_consensus *c, void (*done)(void *arg), void *arg);

#endif
