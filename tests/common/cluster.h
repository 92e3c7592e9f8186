/*
 * cluster.h — a local catalog for integration tests: N real rcdsd replicas on loopback
 * ports picked at run time, in a scratch directory, trusting an admin key made for the
 * occasion. Tests kill, restart and wipe replicas through it. Not part of libsnipe.
 *
 * Every call that cannot do its job aborts the running test (ck_abort) after printing
 * the tail of each replica's log. Replicas are started with fork+execv from the
 * calling thread and die with it (PR_SET_PDEATHSIG): start, restart and wipe clusters
 * from the test's main thread only. Leftover replicas are also killed at exit.
 *
 * Ports are picked below the kernel's ephemeral range and reserved among concurrent
 * test processes (flock on $TMPDIR/snipe-test-ports-<uid>/<port>) while the cluster
 * lives, so a restarted replica gets its ports back and parallel runs do not meet.
 *
 * The directory holds admin.key (+ admin.key.pub), rN/ (replica N's data) and rN.log
 * (its stderr). tc_cluster_stop removes it unless $SNIPE_KEEP_TEST_DIRS is set; a
 * failed test leaves it in place, and its path is printed when the cluster starts.
 * $SNIPE_TEST_LOG_LEVEL (debug|info|warn|error), if set, is every replica's
 * --log-level.
 */
#ifndef SNIPE_TEST_CLUSTER_H
#define SNIPE_TEST_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>

#include "rcds.h"
#include "snipe.h"

#define TC_MAX_REPLICAS 9

typedef struct tc_cluster tc_cluster;

/*
 * Starts `replicas` replicas of the rcdsd at path rcdsd (ids 1..replicas; index i is
 * id i+1) and waits, at most 10 s, until all agree on a leader. extra: more rcdsd
 * flags for every replica, a NULL-terminated list such as
 * {"--snapshot-threshold", "64", NULL}, copied; may be NULL.
 */
tc_cluster *tc_cluster_launch(const char *rcdsd, int replicas, const char *const *extra);

/* The build gives integration tests (not this library) the path of rcdsd. */
#ifdef RCDSD_PATH
static inline tc_cluster *tc_cluster_start(int replicas)
{
	return tc_cluster_launch(RCDSD_PATH, replicas, NULL);
}

static inline tc_cluster *tc_cluster_start_with(int replicas, const char *const *extra)
{
	return tc_cluster_launch(RCDSD_PATH, replicas, extra);
}
#endif
/*
 * SIGTERM to every running replica, up to 5 s for them to exit, then SIGKILL. Frees c
 * and removes its directory (see above). Returns how many replicas did not end
 * cleanly during the cluster's life: exited non-zero or by a signal we did not send
 * (a crash, or a sanitizer report at exit); their log tails are printed.
 */
int tc_cluster_stop(tc_cluster *c);

int tc_cluster_size(const tc_cluster *c);
/* The scratch directory; valid until stop. */
const char *tc_cluster_dir(const tc_cluster *c);
/* "tcp://127.0.0.1:P1,tcp://127.0.0.1:P2,..." in replica order; valid until stop or
 * tc_cluster_add_replica. */
const char *tc_cluster_endpoints(const tc_cluster *c);
/* Replica i's client endpoint; valid until stop. */
const char *tc_cluster_endpoint(const tc_cluster *c, int i);
/* Replica i's Raft address, host:port; valid until stop. */
const char *tc_cluster_raft_address(const tc_cluster *c, int i);
/* The admin key (the cluster's trust root), and the path of its private key file. */
const snipe_key *tc_cluster_admin_key(const tc_cluster *c);
const char *tc_cluster_admin_key_path(const tc_cluster *c);
/* Whether replica i is running (one that ended on its own is reaped and reported). */
bool tc_cluster_running(tc_cluster *c, int i);

/* SIGKILL replica i and reap it. */
void tc_cluster_kill(tc_cluster *c, int i);
/* Starts replica i again with the same flags and data directory (it must be stopped). */
void tc_cluster_restart(tc_cluster *c, int i);
/* Kills replica i if running and deletes its data directory. */
void tc_cluster_wipe(tc_cluster *c, int i);
/*
 * Starts one more replica, with --join (it does not bootstrap; it waits to be added,
 * e.g. rcds_member_add with its tc_cluster_raft_address), on ports picked as above,
 * trusting the same admin key. extra: more flags for it only, as in tc_cluster_launch
 * (the launch's own extra flags are not repeated). Its endpoint is appended to
 * tc_cluster_endpoints. Waits until it answers status requests; returns its index
 * (its id is index + 1). At most TC_MAX_REPLICAS replicas in all.
 */
int tc_cluster_add_replica(tc_cluster *c, const char *const *extra);

/* Replica i's status (a short timeout); SNIPE_OK or the client's code. */
int tc_cluster_status(tc_cluster *c, int i, rcds_status *out);
/* The index of a running replica that says it leads (the highest term if several), or
 * -1. One round of status requests. */
int tc_cluster_leader(tc_cluster *c);
/* Waits until every running replica names the same leader and that one says it leads;
 * its index, or -1 after timeout_ms. */
int tc_cluster_wait_leader(tc_cluster *c, int timeout_ms);
/* Waits until replica i has applied index; SNIPE_OK, or SNIPE_ETIMEDOUT after
 * printing every replica's status. */
int tc_cluster_wait_applied(tc_cluster *c, int i, uint64_t index, int timeout_ms);
/* Prints every replica's state, term, leader, commit and applied index to stderr. */
void tc_cluster_dump_status(tc_cluster *c);
/* Waits until every running replica has applied index; SNIPE_OK or SNIPE_ETIMEDOUT. */
int tc_cluster_wait_all_applied(tc_cluster *c, uint64_t index, int timeout_ms);

/* A client of the cluster (i < 0: every replica; else replica i only) holding key
 * (borrowed). Aborts the test if it cannot be opened. */
rcds_client *tc_cluster_client(tc_cluster *c, int i, const snipe_key *key);
/*
 * Registers key as the admin: urn:snipe:key:<id> gets pubkey and role (and host, if
 * not NULL). Waits until every running replica has applied it, so the key is known
 * to all of them. Returns the index of the write.
 */
uint64_t tc_cluster_register_key(tc_cluster *c, const snipe_key *key, const char *role,
                                 const char *host);

/* Prints the last `lines` lines of every replica's log to stderr. */
void tc_cluster_dump_logs(const tc_cluster *c, int lines);
/* True if replica i's log contains text. */
bool tc_cluster_log_contains(const tc_cluster *c, int i, const char *text);

#endif
