/*
 * agent.h — snipe-agentd's parts and what they share. One libuv loop (the main
 * thread) owns the process table, the request socket and the children; catalog calls
 * block, so they run on libuv's thread pool (agent_io) with a client each; the lease is
 * renewed by its own thread (heartbeat.c) so a busy loop cannot cost the lease; a
 * separate watchdog process (watchdog.c) kills the children when the lease lapses or
 * the agent dies, whatever state the agent itself is in.
 */
#ifndef AGENT_H
#define AGENT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "agent.pb-c.h"
#include "rcds.h"
#include "snipe.h"

#define AGENT_VERSION "0.1.0"

typedef struct agent_settings {
	const char *name;      /* the host's name: urn:snipe:host:<name> */
	const char *catalog;   /* catalog endpoints */
	const char *key_path;  /* the host key (role host, registered for this name) */
	const char *listen;    /* this agent's nanomsg endpoint */
	const char *state;     /* state directory: logs, work dirs, pid records */
	const char *labels;    /* "k=v,k=v" or "" */
	uint32_t heartbeat_ms, lease_ms;
	uint32_t backoff_ms, backoff_max_ms;
	bool fence;            /* kill the children when the lease lapses (default on) */
	uint32_t cores, memory_mb;
	uint32_t ckpt_copies;  /* agents that must hold a checkpoint's blocks (default 2) */
	uint32_t ckpt_keep;    /* checkpoints kept per process (default 2) */
	const char *msg_listen;   /* where other agents send messages (tcp://) */
	uint32_t msg_timeout_ms;  /* a receiver not found for this long fails (default 5000) */
	uint32_t msg_buffer;      /* messages kept per (sender, receiver) pair (default 4096) */
} agent_settings;

typedef struct agent agent;
struct agent_inst;

/* ------------------------------------------------------------ agent.c */

struct agent {
	uv_loop_t *loop;
	const agent_settings *cfg;
	snipe_key *key;
	char host_urn[SNIPE_URN_MAX];
	char urn_prefix_logs[4096];

	/* lease: written by the heartbeat thread, read by the loop */
	_Atomic uint64_t fence_at;  /* monotonic ms when the lease is gone (0: never had one) */
	_Atomic uint64_t lease_index; /* catalog index of the latest heartbeat reply */

	/* process table (supervise.c), loop thread only */
	struct agent_inst **inst;
	size_t ninst, capinst;

	/* request socket (server.c) */
	int sock;
	uv_poll_t poll;
	uv_timer_t key_timer; /* forgets the fetched keys now and then */
	snipe_keyring *keys;
	snipe_verifier *verifier;
	snipe_keyring *proc_keys;      /* the instance keys of running processes */
	snipe_verifier *proc_verifier;
	struct agent_blocks *blocks;   /* checkpoint blocks (blocks.h) */
	uv_timer_t gc_timer;

	/* messages by URN (msg.c, peer.c; msg.h) */
	struct msgs *msg;

	/* watchdog (watchdog.c) */
	int watchdog_fd; /* write end of the pipe to it, -1 if fencing is off */

	/* heartbeat thread (heartbeat.c) → loop */
	uv_async_t assigned_async;
	pthread_mutex_t assigned_mu;
	rcds_lease_reply assigned; /* latest, taken by the loop */
	bool assigned_fresh;
	pthread_t hb_thread;
	atomic_bool stopping;

	/* catalog clients for the thread pool */
	pthread_mutex_t pool_mu;
	rcds_client *pool[8];
	size_t npool;
};

/* Whether this host holds its lease now. */
bool agent_lease_valid(agent *a);

/* A catalog call on the thread pool: work runs there with a client of its own, done
 * on the loop afterwards. */
typedef struct agent_io agent_io;
typedef void (*agent_io_fn)(agent_io *io, rcds_client *c);
struct agent_io {
	uv_work_t req;
	agent *a;
	agent_io_fn work, done;
	void *arg;
	int rc;
	char err[256];
};
/* Queues io (caller-allocated; done frees it if it must). SNIPE_EUNAVAIL once the agent
 * is stopping. */
int agent_io_queue(agent *a, agent_io *io);
/* Frees what the agent holds once its loop has ended (every handle closed). */
void agent_free(agent *a);

/* -------------------------------------------------------- supervise.c */

/* What a process calling its agent is, found by its instance key. */
typedef struct agent_proc_ref {
	char urn[SNIPE_URN_MAX];
	uint64_t epoch;
	char ckpt_dir[8200]; /* directory mode: the directory (absolute), or "" */
} agent_proc_ref;

/* The running instance whose key is pk: SNIPE_OK, or SNIPE_ENOTFOUND. */
int agent_inst_by_key(agent *a, const uint8_t *pk, agent_proc_ref *out);

/* The catalog says urn changed (a client's nudge with the index of its write, or a
 * heartbeat's assignments): read it and make it so. reply(arg, status, code, err) is
 * called once settled (may be NULL). */
typedef void (*agent_settled_fn)(void *arg, const Snipe__ProcStatus *st, int code,
                                 const char *err);
int agent_reconcile(agent *a, const char *urn, uint64_t min_index, agent_settled_fn fn,
                    void *arg);
/* The heartbeat's list of what this host should run, as of its index. */
void agent_assigned(agent *a, const rcds_lease_reply *r);
/* Kills every child (SIGKILL): the agent is stopping. */
void agent_kill_all(agent *a);
/* Frees the process table once the loop has ended. */
void agent_forget_all(agent *a);
/* The path of urn's captured stdout (err false) or stderr, into buf. */
void agent_log_path(agent *a, const char *urn, bool err, char *buf, size_t len);
/* Kills the processes recorded in the state directory by an earlier life of this
 * agent that are still running (orphans). Returns how many. */
int agent_kill_orphans(agent *a);

/* ----------------------------------------------------------- server.c */

int agent_server_start(agent *a, char *err, size_t errlen);
void agent_server_close(agent *a);
void agent_server_free(agent *a);

/* -------------------------------------------------------- heartbeat.c */

/* Registers the host, then renews its lease every heartbeat_ms from a thread. */
int agent_register(agent *a, rcds_client *c, char *err, size_t errlen);
int agent_heartbeat_start(agent *a, char *err, size_t errlen);
void agent_heartbeat_stop(agent *a);

/* ------------------------------------------------------------- ckpt.c */

struct agent_call;
/* Handles a block or checkpoint request on the thread pool and answers it. proc: the
 * calling process (NULL: another agent or a client). Takes req and frame (whose
 * attachment holds a BlocksPut's bytes). */
void agent_ckpt_request(agent *a, struct agent_call *c, Snipe__AgentRequest *req,
                        Snipe__AgentFrame *frame, const agent_proc_ref *proc);
/* Commits a snapshot of proc's checkpoint directory (directory mode), on the pool;
 * done(arg, code, seq) on the loop. */
int agent_ckpt_dir(agent *a, const agent_proc_ref *proc,
                   void (*done)(void *arg, int code, uint64_t seq), void *arg);
/* Makes proc's checkpoint directory hold checkpoint seq, on the pool; done on the loop. */
int agent_ckpt_restore_dir(agent *a, const agent_proc_ref *proc, uint64_t seq,
                           void (*done)(void *arg, int code, uint64_t seq), void *arg);
/* Starts the periodic garbage collection of unreferenced blocks. */
void agent_ckpt_start(agent *a);

/* ----------------------------------------------------------- server.c (calls) */

/* Answers a request taken by server.c; frees c. */
void agent_answer(struct agent_call *c, Snipe__AgentReply *r);
void agent_answer_code(struct agent_call *c, int code, const char *error);

/* --------------------------------------------------------- watchdog.c */

/* In a process started as the watchdog (argv "snipe-watchdog --watchdog-fd N"), runs
 * it and does not return; otherwise returns -1 at once. */
int agent_watchdog_exec_main(int argc, char **argv);
/* Forks the watchdog; must run before any thread exists. */
int agent_watchdog_start(agent *a, char *err, size_t errlen);
/* The lease now runs until `at` (monotonic ms). */
void agent_watchdog_lease(agent *a, uint64_t at);
void agent_watchdog_track(agent *a, int pid, bool add);

/* ----------------------------------------------------------- policy.c */

/* The pause before restart number `restarts` (1 = the first restart): base doubled each
 * time, at most max. */
uint64_t agent_backoff_ms(uint32_t restarts, uint32_t base_ms, uint32_t max_ms);
/* What becomes of a process that ended with code (-signal when killed by one): restart
 * it (true), or end in *state ("exited" or "failed"). */
bool agent_policy_restart(const Snipe__ProcSpec *spec, int code, uint32_t restarts,
                          const char **state);

#endif
