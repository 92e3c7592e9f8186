/*
 * lease.h — the leader's table of host leases, in memory only. A host's heartbeat
 * renews its lease; a lease that runs out lapses. The catalog records only the
 * transitions (host up, host down): the table says which hosts' recorded state is
 * behind their lease, and the leader commits those one at a time per host.
 *
 * Pure bookkeeping on a caller-supplied clock (ms, monotonic), so it is tested with a
 * deterministic one. Not thread-safe; the leader's loop owns it.
 */
#ifndef RCDS_LEASE_H
#define RCDS_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RCDS_LEASE_MIN_MS 100u
#define RCDS_LEASE_MAX_MS 600000u

typedef struct rcds_leases rcds_leases;

int rcds_leases_new(rcds_leases **out);
void rcds_leases_free(rcds_leases *l);
/* Forgets every host (this replica stopped leading). */
void rcds_leases_clear(rcds_leases *l);
size_t rcds_leases_count(const rcds_leases *l);

/* A heartbeat from host at now: its lease runs until now + lease_ms. A host that had
 * no lease or a lapsed one gets a new lease whose "up" the catalog does not know yet.
 * SNIPE_ENOMEM, or SNIPE_EINVAL for a lease outside [RCDS_LEASE_MIN_MS, MAX]. */
int rcds_lease_renew(rcds_leases *l, const char *host, uint64_t now, uint32_t lease_ms);
/* A host the catalog records as up when this replica starts to lead: a fresh lease of
 * lease_ms from now (the grace a new leader gives every host), already recorded. A host
 * already in the table keeps its lease. */
int rcds_lease_grace(rcds_leases *l, const char *host, uint64_t now, uint32_t lease_ms);
/* Whether host holds a lease that has not run out at now. */
bool rcds_lease_live(const rcds_leases *l, const char *host, uint64_t now);

/* Lapses every lease that ran out at now, then calls fn once for each host whose
 * recorded state is behind (up: a new lease; down: a lapsed one) and that has no
 * change in flight, marking the change in flight. Returns how many fn calls. */
size_t rcds_leases_due(rcds_leases *l, uint64_t now,
                       void (*fn)(void *arg, const char *host, bool up), void *arg);
/* The change for host (up or down) ended: ok if the catalog recorded it. A failed one
 * is offered again by the next rcds_leases_due, as is one overtaken by the lease
 * (recorded down while a heartbeat came back meanwhile). */
void rcds_lease_recorded(rcds_leases *l, const char *host, bool up, bool ok);

/* Load bookkeeping for placement: the number of active processes assigned to each
 * host, recounted by the leader's sweeps (zero, then add) and raised by placements. */
void rcds_leases_zero_load(rcds_leases *l);
void rcds_lease_add_load(rcds_leases *l, const char *host, uint32_t n);
uint32_t rcds_lease_load(const rcds_leases *l, const char *host);

/* Live hosts at now, in name order: calls fn for each; stops at a non-zero return. */
int rcds_leases_each_live(const rcds_leases *l, uint64_t now,
                          int (*fn)(void *arg, const char *host, uint32_t load), void *arg);

#endif
