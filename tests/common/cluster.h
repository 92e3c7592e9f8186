/*
 * cluster.h — a local catalog for integration tests: N real rcdsd replicas on loopback
 * ports picked at run time, in a scratch directory, trusting an admin key made for the
 * occasion, and the host agents (snipe-agentd) a test starts beside them. Tests kill,
 * restart and wipe replicas and agents through it. Not part of libsnipe.
 *
 * Every call that cannot do its job aborts the running test (ck_abort) after printing
 * the tail of each replica's and agent's log. Replicas and agents are started with
 * fork+execv from the calling thread and die with it (PR_SET_PDEATHSIG): start,
 * restart and wipe clusters from the test's main thread only. Leftover replicas and
 * agents are also killed at exit.
 *
 * Ports are picked below the kernel's ephemeral range and reserved among concurrent
 * test processes (flock on $TMPDIR/snipe-test-ports-<uid>/<port>) while the cluster
 * lives, so a restarted replica or agent gets its ports back and parallel runs do not
 * meet.
 *
 * Every replica has a key of its own (--key), and once the first leader is elected
 * the admin key is registered with role admin (agents check signers in the catalog)
 * and each replica's key with role replica (the leader signs host transitions and
 * process moves with it).
 *
 * The directory holds admin.key (+ admin.key.pub), cluster.key, rN/ (replica N's
 * data), rN.key and rN.log (its stderr); for an agent named NAME, host-NAME.key,
 * host-NAME/ (its --state) and host-NAME.log (its stdout and stderr). tc_cluster_stop
 * removes it unless $SNIPE_KEEP_TEST_DIRS is set; a failed test leaves it in place,
 * and its path is printed when the cluster starts. $SNIPE_TEST_LOG_LEVEL
 * (debug|info|warn|error), if set, is every replica's and agent's --log-level.
 */
#ifndef SNIPE_TEST_CLUSTER_H
#define SNIPE_TEST_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "rcds.h"
#include "snipe.h"

#define TC_MAX_REPLICAS 9
#define TC_MAX_AGENTS 8
#define TC_MAX_PORTS 4 /* tc_cluster_port, per cluster */

typedef struct tc_cluster tc_cluster;

/*
 * Starts `replicas` replicas of the rcdsd at path rcdsd (ids 1..replicas; index i is
 * id i+1), waits, at most 10 s, until all agree on a leader, and registers the admin
 * and replica keys (see above). extra: more rcdsd flags for every replica, a
 * NULL-terminated list such as {"--snapshot-threshold", "64", NULL}, copied; may be
 * NULL.
 */
tc_cluster *tc_cluster_launch(const char *rcdsd, int replicas, const char *const *extra);

typedef struct tc_cluster_opts {
	const char *const *extra; /* as tc_cluster_launch's extra */
	/* The replicas' client endpoints listen on every IPv4 address (tcp://0.0.0.0:PORT)
	 * instead of loopback only, so that an agent in another network namespace reaches
	 * them (tc_agent_opts.catalog_address). tc_cluster_endpoints still names 127.0.0.1. */
	bool listen_any;
} tc_cluster_opts;

/* tc_cluster_launch with options; o (borrowed for the call) may be NULL. */
tc_cluster *tc_cluster_launch_opts(const char *rcdsd, int replicas, const tc_cluster_opts *o);

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

static inline tc_cluster *tc_cluster_start_opts(int replicas, const tc_cluster_opts *o)
{
	return tc_cluster_launch_opts(RCDSD_PATH, replicas, o);
}
#endif
/*
 * SIGTERM (and SIGCONT, should one be stopped) to every running agent, then to every
 * running replica, up to 5 s each time for them to exit, then SIGKILL. Frees c and
 * removes its directory (see above). Returns how many replicas and agents did not end
 * cleanly during the cluster's life: exited non-zero or by a signal we did not send (a
 * crash, or a sanitizer report at exit); their log tails are printed.
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
 * trusting the same admin key, with a key of its own registered (role replica) before
 * it starts: the cluster must be able to write. extra: more flags for it only, as in
 * tc_cluster_launch (the launch's own extra flags are not repeated). Its endpoint is
 * appended to tc_cluster_endpoints. Waits until it answers status requests; returns
 * its index (its id is index + 1). At most TC_MAX_REPLICAS replicas in all.
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
 * Registers key, writing as the admin: urn:snipe:key:<id> gets pubkey and role (and
 * host, if not NULL). Waits until every running replica has applied it, so the key is
 * known to all of them. Returns the index of the write.
 */
uint64_t tc_cluster_register_key(tc_cluster *c, const snipe_key *key, const char *role,
                                 const char *host);

/* A free loopback port for a listener of the test's own (a fake host's, say), picked
 * and reserved as the replicas' ports are, until stop. At most TC_MAX_PORTS. */
int tc_cluster_port(tc_cluster *c);

/* Prints the last `lines` lines of every replica's and every agent's log to stderr. */
void tc_cluster_dump_logs(const tc_cluster *c, int lines);
/* True if replica i's log contains text. */
bool tc_cluster_log_contains(const tc_cluster *c, int i, const char *text);
/* Waits at most timeout_ms until the file at path (a test program's output, say) has
 * a line starting with prefix; the first such line into out (len bytes, without its
 * newline). Aborts the test otherwise, after printing the file and the tail of every
 * replica's and agent's log. */
void tc_wait_line(const tc_cluster *c, const char *path, const char *prefix, int timeout_ms,
                  char *out, size_t len);

/* ------------------------------------------------------------------- agents */

typedef struct tc_agent_opts {
	const char *const *extra; /* more snipe-agentd flags, NULL-terminated; copied */
	/* Run it in this network namespace (made with `ip netns add`: /run/netns/NAME);
	 * NULL: this process's. Copied. */
	const char *netns;
	const char *address;         /* the IPv4 address it listens on; NULL: 127.0.0.1 */
	/* The address at which it reaches the replicas' client ports (see
	 * tc_cluster_opts.listen_any); NULL: 127.0.0.1. */
	const char *catalog_address;
} tc_agent_opts;

/*
 * Starts snipe-agentd (path agentd) as host `name` (a URN name without '/', unique in
 * c): makes host-NAME.key and registers it (role host, host=NAME), picks and reserves
 * two ports as for the replicas, and runs `agentd -d --name NAME --catalog ... --key ...
 * --listen tcp://ADDRESS:PORT --msg-listen tcp://ADDRESS:PORT2 --state DIR/host-NAME`
 * then o->extra (o may be NULL).
 * Waits at most 10 s until the catalog records urn:snipe:host:NAME state=up,
 * registered by this run. Returns the agent's index (0, 1, ... in order of start); at
 * most TC_MAX_AGENTS.
 *
 * The processes an agent runs are its children, in sessions of their own; an agent
 * that dies leaves them to its watchdog (a child of the agent named snipe-watchdog),
 * which kills them and exits.
 */
int tc_agent_launch(tc_cluster *c, const char *agentd, const char *name,
                    const tc_agent_opts *o);

/* The build gives integration tests the path of snipe-agentd as AGENTD_PATH. */
#ifdef AGENTD_PATH
static inline int tc_agent_start(tc_cluster *c, const char *name, const char *const *extra)
{
	const tc_agent_opts o = {.extra = extra};
	return tc_agent_launch(c, AGENTD_PATH, name, &o);
}

static inline int tc_agent_start_opts(tc_cluster *c, const char *name, const tc_agent_opts *o)
{
	return tc_agent_launch(c, AGENTD_PATH, name, o);
}
#endif

/* Agent i's endpoint (its --listen, tcp://ADDRESS:PORT); valid until stop. */
const char *tc_agent_endpoint(const tc_cluster *c, int i);
/* Agent i's message endpoint (its --msg-listen, a second reserved port). */
const char *tc_agent_msg_endpoint(const tc_cluster *c, int i);
/* Agent i's pid, 0 if it is not running (one that ended on its own is reaped and
 * reported). */
pid_t tc_agent_pid(tc_cluster *c, int i);

/* SIGKILL agent i and reap it (its watchdog then kills its processes). */
void tc_agent_kill(tc_cluster *c, int i);
/* Sends sig to agent i (the agent only, not its watchdog or its processes). For
 * SIGSTOP, waits until it is stopped; for SIGCONT, until it runs again. */
void tc_agent_signal(tc_cluster *c, int i, int sig);
/* Starts agent i again with the same flags, key, port and state directory (it must not
 * be running) and waits as tc_agent_launch does. */
void tc_agent_restart(tc_cluster *c, int i);
/* True if agent i's log contains text. */
bool tc_agent_log_contains(const tc_cluster *c, int i, const char *text);

/* ------------------------------------------------------- process records */

/* urn's record into out; aborts the test if the catalog cannot give it. */
void tc_proc_get(rcds_client *cl, const char *urn, snipe_proc_info *out);
/* Waits at most timeout_ms until urn has ended; its last record into out. Aborts (after
 * dumping the logs) otherwise. */
void tc_wait_ended(tc_cluster *c, rcds_client *cl, const char *urn, int timeout_ms,
                   snipe_proc_info *out);
/* Waits at most timeout_ms until urn runs on host at epoch; its record into out. Aborts
 * (after dumping the logs) otherwise. */
void tc_wait_running_on(tc_cluster *c, rcds_client *cl, const char *urn, const char *host,
                        uint64_t epoch, int timeout_ms, snipe_proc_info *out);

#endif
