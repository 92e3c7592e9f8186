/*
 * rcds.h — the catalog client: talk to the replicas of a SNIPE resource catalog.
 *
 * A client holds a list of replica endpoints and a key. Every request is sealed in a
 * signed envelope; writes sign each assertion with the client's key. Calls block for
 * at most the client's timeout (default 5 s) and fail over between replicas: a write
 * is retried with the same request id, so it applies at most once. Reads pass the
 * highest index this client has written or read, so a client always reads its own
 * writes, from any replica. Every assertion read is checked against its author's
 * signature before it is returned (the client remembers what it verified, so bytes
 * read again are not verified again). A client is used by one thread at a time.
 */
#ifndef RCDS_H
#define RCDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snipe.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rcds_client rcds_client;

/*
 * endpoints: comma-separated nanomsg endpoints ("tcp://127.0.0.1:7400,..."), copied.
 * key is borrowed and must outlive the client.
 */
int rcds_client_open(const char *endpoints, const snipe_key *key, rcds_client **out,
                     char *err, size_t errlen);
void rcds_client_close(rcds_client *c);
/* The longest any call may take, in ms (default 5000). */
void rcds_client_set_timeout(rcds_client *c, uint32_t ms);
/* How long one attempt waits for a replica's answer before the client tries another
 * (default 250 ms, doubling with each attempt that times out). A client that only
 * talks to the leader and prefers a late answer to none (heartbeats) raises it. */
void rcds_client_set_attempt(rcds_client *c, uint32_t ms);
/* Reads only from the leader, which has applied every acknowledged write: for short
 * lived clients (the CLI) that have no index of their own to wait for. Default off. */
void rcds_client_set_leader_reads(rcds_client *c, bool on);
bool rcds_client_leader_reads(const rcds_client *c);
/* The highest catalog index this client has seen. */
uint64_t rcds_client_index(const rcds_client *c);
/* Raises it to index (an index learnt elsewhere, e.g. another client's write), so the
 * next reads see at least that write. */
void rcds_client_see_index(rcds_client *c, uint64_t index);

/* ------------------------------------------------------------------ writes */

/* An atomic batch of puts and deletes, built up and then written with rcds_write. */
typedef struct rcds_batch rcds_batch;

int rcds_batch_new(rcds_batch **out);
void rcds_batch_free(rcds_batch *b);
/* (urn, attr) = value, until expires_ms (0: never). Values are copied. */
int rcds_batch_put(rcds_batch *b, const char *urn, const char *attr, const void *value,
                   size_t len, uint64_t expires_ms);
/* As rcds_batch_put with a text value (without its NUL), never expiring. */
int rcds_batch_put_text(rcds_batch *b, const char *urn, const char *attr, const char *value);
/* As rcds_batch_put_text with the value formatted like printf (at most 255 bytes:
 * SNIPE_ERANGE beyond). */
int rcds_batch_putf(rcds_batch *b, const char *urn, const char *attr, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* The puts that register a key: urn:snipe:key:<id> pubkey (hex), role, and host (if
 * not NULL). Only the admin may write them. */
int rcds_batch_put_key(rcds_batch *b, const uint8_t pk[SNIPE_PK_BYTES], const char *role,
                       const char *host);
/* Compare-and-set: only if the current version is expect_version (0: absent). */
int rcds_batch_put_if(rcds_batch *b, const char *urn, const char *attr, const void *value,
                      size_t len, uint64_t expires_ms, uint64_t expect_version);
/* attr NULL: every attribute of urn. */
int rcds_batch_delete(rcds_batch *b, const char *urn, const char *attr);

/* Writes the batch; on success *index (may be NULL) is the version it wrote. Codes:
 * SNIPE_EDENIED, SNIPE_ECONFLICT, SNIPE_ENOTFOUND, SNIPE_EEXPIRED, SNIPE_EINVAL ...
 * from the catalog; SNIPE_EUNAVAIL / SNIPE_ETIMEDOUT if no replica answered in time. */
int rcds_write(rcds_client *c, const rcds_batch *b, uint64_t *index, char *err,
               size_t errlen);

/* ------------------------------------------------------------------- reads */

typedef struct rcds_assertion {
	char urn[SNIPE_URN_MAX];
	char attr[65];
	uint8_t *value; /* value_len bytes, then a NUL so text values can be printed */
	size_t value_len;
	uint64_t expires_ms;
	uint64_t version;
	uint8_t author[SNIPE_PK_BYTES];
} rcds_assertion;

typedef struct rcds_list {
	rcds_assertion *items;
	size_t count;
	uint64_t index; /* the replica's applied index when it answered */
} rcds_list;

void rcds_list_free(rcds_list *l);

/* All assertions of urn; SNIPE_ENOTFOUND if it has none. *out is filled on success
 * and must be freed with rcds_list_free. */
int rcds_get(rcds_client *c, const char *urn, rcds_list *out, char *err, size_t errlen);

typedef struct rcds_where {
	const char *attr;
	const void *value;
	size_t value_len;
} rcds_where;

/* All assertions of the URNs starting with prefix (NULL or "": all) that have every
 * attr = value in where; follows the pages to the end. */
int rcds_query(rcds_client *c, const char *prefix, const rcds_where *where, size_t nwhere,
               rcds_list *out, char *err, size_t errlen);

/* ------------------------------------------------------------------ status */

typedef struct rcds_member {
	uint64_t id;
	char address[64];
	bool voter;
} rcds_member;

typedef struct rcds_status {
	char endpoint[256]; /* the endpoint that answered */
	uint64_t id, leader_id, term, applied_index, commit_index;
	char leader_address[64];
	char state[16];
	char watch_endpoint[256]; /* empty if the replica publishes no changes */
	rcds_member members[9];
	size_t nmembers;
} rcds_status;

/* Asks one replica (endpoint, or the first that answers if NULL) for its status. */
int rcds_status_get(rcds_client *c, const char *endpoint, rcds_status *out, char *err,
                    size_t errlen);

/* -------------------------------------------------------------- membership */

/*
 * Adds replica id (1..2^63-1) to the Raft group: raft_address is the HOST:PORT of its
 * Raft transport, and it must already run with --join. Returns once the leader has
 * brought it up to date and made it a voter, which may take a while: give the client a
 * timeout to match (rcds_client_set_timeout). Admin key only. Codes: SNIPE_EDENIED (not
 * the admin), SNIPE_EEXIST (id or address already a member), SNIPE_EBUSY (another
 * change is in progress: retry), SNIPE_ETIMEDOUT (the replica did not catch up: it
 * stays a non-voter until added again or removed), SNIPE_EINVAL; SNIPE_EUNAVAIL /
 * SNIPE_ETIMEDOUT if no leader answered in time. A retry after a leader change may
 * answer SNIPE_EEXIST for an add that did happen: check with rcds_status_get.
 */
int rcds_member_add(rcds_client *c, uint64_t id, const char *raft_address, char *err,
                    size_t errlen);
/* Removes replica id from the group (SNIPE_ENOTFOUND if it is not a member); codes as
 * above. The removed replica does not stop by itself: its operator must stop it. */
int rcds_member_remove(rcds_client *c, uint64_t id, char *err, size_t errlen);

/* ------------------------------------------------------- hosts, placement */

typedef struct rcds_assignment {
	char urn[SNIPE_URN_MAX];
	uint64_t epoch;
} rcds_assignment;

typedef struct rcds_lease_reply {
	rcds_assignment *assigned; /* the processes assigned to the host, active */
	size_t n;
	bool truncated;            /* more than the leader sends at once (1000) */
	uint64_t index;            /* the catalog index they are as of */
} rcds_lease_reply;

/*
 * Renews host's lease (lease_ms from when the leader gets it) with the catalog's
 * leader; the client's key must be registered as that host's key. On success *out
 * lists the processes assigned to host in an active state; clear it with
 * rcds_lease_reply_clear. SNIPE_EDENIED, SNIPE_EINVAL (lease outside 100..600000 ms),
 * SNIPE_EUNAVAIL (a new leader is still taking over, or none answered).
 */
int rcds_heartbeat(rcds_client *c, const char *host, uint32_t lease_ms, rcds_lease_reply *out,
                   char *err, size_t errlen);
void rcds_lease_reply_clear(rcds_lease_reply *h);

/* Asks the leader where a new process should run: the least loaded live host having
 * every label ("k=v") and not named exclude (NULL: none). Its name and agent endpoint
 * are copied out. SNIPE_ENOTFOUND if no live host fits. */
int rcds_place(rcds_client *c, const char *const *labels, size_t nlabels,
               const char *exclude, char *host, size_t hostlen, char *address,
               size_t addrlen, char *err, size_t errlen);

/* ------------------------------------------------------------------- watch */

/*
 * A stream of the changes applied under a URN prefix, from every replica that
 * publishes them (so it survives the loss of any one), in log order and without
 * duplicates. Best effort: a subscriber that falls behind loses events; compare
 * indexes and re-read with rcds_query when that matters.
 */
typedef struct rcds_watch rcds_watch;

typedef struct rcds_event {
	uint64_t index;   /* the Raft index of the write */
	uint32_t item;    /* position within the write */
	char urn[SNIPE_URN_MAX];
	char attr[65];    /* empty with deleted: every attribute of urn */
	bool deleted;
	rcds_assertion assertion; /* puts: checked against its author's signature */
} rcds_event;

/* Subscribes to prefix (NULL or "": everything; RCDS_WATCH_NONE: nothing until
 * rcds_watch_add) on every replica of c's endpoints that has a watch endpoint, waiting
 * (within c's timeout) until connected. c is only used during the call. */
extern const char RCDS_WATCH_NONE[];
int rcds_watch_open(rcds_client *c, const char *prefix, rcds_watch **out, char *err,
                    size_t errlen);
/* Also delivers the changes of exactly urn from now on (filtered by nanomsg, before any
 * decoding or signature check: a watcher of a few URNs pays nothing for the others). */
int rcds_watch_add(rcds_watch *w, const char *urn);
/* The next event, waiting at most timeout_ms (-1: forever). SNIPE_ETIMEDOUT if none came.
 * On success clear ev with rcds_event_clear. */
int rcds_watch_next(rcds_watch *w, int timeout_ms, rcds_event *ev, char *err,
                    size_t errlen);
/* A file descriptor that polls readable when an event may be waiting. */
int rcds_watch_fd(rcds_watch *w);
void rcds_event_clear(rcds_event *ev);
void rcds_watch_close(rcds_watch *w);

#ifdef __cplusplus
}
#endif
#endif
