/*
 * leader.h — what only the catalog's leader does beyond Raft: host leases (in memory;
 * only the transitions host up / host down are committed), placement of new
 * processes, and moving the processes of a host that went down to live hosts with
 * their epoch incremented. It writes to the catalog as this replica, with its own key
 * (registered with role replica); without a key it tracks leases but records nothing.
 */
#ifndef RCDS_LEADER_H
#define RCDS_LEADER_H

#include <uv.h>

#include "catalog.pb-c.h"
#include "consensus.h"
#include "store.h"

typedef struct rcds_leader rcds_leader;

/* key (borrowed, may be NULL) signs the leader's writes. store is borrowed. */
int rcds_leader_new(uv_loop_t *loop, rcds_store *store, const snipe_key *key,
                    rcds_leader **out);
void rcds_leader_attach(rcds_leader *l, rcds_consensus *c);
/* Stops the timer and frees l once it is closed. */
void rcds_leader_close(rcds_leader *l);

/* The consensus's applied hook, through the server: notes which processes a write
 * changed (cmd NULL: a replay or restore; everything may have). */
void rcds_leader_applied(rcds_leader *l, const Snipe__Command *cmd, const rcds_result *res);

/* A heartbeat from signer (a registered host key for hb->host), on the leader. Fills
 * out (its assigned array is malloc'd: free with rcds_leader_reply_clear). SNIPE_EDENIED,
 * SNIPE_EINVAL, SNIPE_EUNAVAIL (this replica is still taking over: retry). */
int rcds_leader_heartbeat(rcds_leader *l, const uint8_t *signer,
                          const Snipe__HeartbeatRequest *hb, Snipe__HeartbeatReply *out,
                          char *err, size_t errlen);
void rcds_leader_reply_clear(Snipe__HeartbeatReply *r);

/* Chooses a host for a new process. host and address are copied into the buffers.
 * SNIPE_ENOTFOUND if no live host fits; SNIPE_EUNAVAIL while taking over. */
int rcds_leader_place(rcds_leader *l, const Snipe__PlaceRequest *p, char *host,
                      size_t hostlen, char *address, size_t addrlen, char *err,
                      size_t errlen);

#endif
