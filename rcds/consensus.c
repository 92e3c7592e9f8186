/*
 * consensus.c — libraft glue: bootstrap and start a replica, apply committed entries
 * to the store, snapshot and restore it, propose writes, add and remove members. It
 * decides nothing about what a write means (store.c) or who sent it (server.c).
 */
#include <errno.h>
#include <raft.h>
#include <raft/uv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "consensus.h"
#include "entry.h"
#include "transport.h"
#include "sni.h"

struct rcds_consensus {
	struct raft raft;
	struct raft_io io;
	struct raft_uv_transport transport;
	bool authenticated; /* transport is rcds_transport (else plain raft_uv_tcp) */
	struct raft_fsm fsm;
	uv_prepare_t flush; /* commits the store's batch, at most every COMMIT_MS... */
	uv_timer_t commit;  /* ...or when this fires, if the loop has gone quiet */
	uint64_t committed_ms; /* loop time of the last commit */
	uv_check_t propose; /* proposes the writes gathered in this loop turn as one entry */
	rcds_store *store;
	rcds_applied_fn on_applied;
	void *arg;
	/* Writes proposed since the last entry: serialised commands and whom to tell. */
	ProtobufCBinaryData *pending;
	struct waiter *waiters;
	size_t npending, pending_cap, pending_bytes;
	/* The results of the entry being applied, one per command; see fsm_apply. */
	rcds_result *results;
	size_t results_cap;
	void (*closed)(void *arg);
	void *closed_arg;
	int open_handles;    /* while closing: libuv handles not yet closed */
	uint64_t ready_term; /* a barrier of this term completed: the leader had applied
	                        every entry committed before its term began */
};

#define COMMIT_MS 50 /* applied writes are committed to SQLite this often; see flush_cb */

/* Writes are gathered while the loop handles what woke it and proposed together, as
 * one entry, before it waits again: one log write, one message per follower and one
 * reply from each, instead of one per write. */
#define BATCH_WRITES 256       /* commands per entry at most */
#define BATCH_BYTES (1u << 20) /* and bytes of commands */

struct waiter {
	rcds_done_fn done;
	void *arg;
};

struct proposal {
	struct raft_apply req;
	size_t n;
	struct waiter waiters[];
};

static void propose_cb(uv_check_t *h);

static void transport_close(rcds_consensus *c)
{
	if (c->authenticated)
		rcds_transport_close(&c->transport);
	else
		raft_uv_tcp_close(&c->transport);
}

/* ------------------------------------------------------------ state machine */

/* The database failed with applies already reported: libraft cannot apply them again,
 * so the replica stops; on restart it replays its log onto the last commit. */
static void fatal_store(rcds_consensus *c)
{
	snipe_log(SNIPE_LOG_ERROR, "raft", "catalog database failed at index=%llu; stopping",
	          (unsigned long long)(c->raft.last_applied + 1));
	exit(1);
}

static void commit_now(rcds_consensus *c)
{
	uv_timer_stop(&c->commit);
	c->committed_ms = uv_now(c->commit.loop);
	if (rcds_store_flush(c->store) != SNIPE_OK)
		fatal_store(c);
}

static void commit_cb(uv_timer_t *t)
{
	commit_now(t->data);
}

/* Before the loop waits: commits the writes applied since the last commit if that was
 * COMMIT_MS ago, else makes sure they are committed when it will be. A commit writes
 * every page the batch dirtied to the WAL (two pwrites each); a page that many writes
 * dirty (a B-tree's growing end, its upper levels) is written once per commit, so rare
 * commits write less: at 64 writes in flight, committing at every turn of the loop
 * (about 1 ms) gave 5.2k writes/s, every 10 ms 5.8k, every 50 ms 6.8k, 100 or 200 ms no
 * more. A crash loses nothing: the log replays what was applied after the last commit. */
static void flush_cb(uv_prepare_t *h)
{
	rcds_consensus *c = h->data;
	if (!rcds_store_pending(c->store))
		return;
	uint64_t since = uv_now(h->loop) - c->committed_ms;
	if (since >= COMMIT_MS)
		commit_now(c);
	else if (!uv_is_active((uv_handle_t *)&c->commit))
		uv_timer_start(&c->commit, commit_cb, COMMIT_MS - since, 0);
}

/* Room for the results of an entry of n commands; false if out of memory. */
static bool results_reserve(rcds_consensus *c, size_t n)
{
	if (n <= c->results_cap)
		return true;
	rcds_result *r = realloc(c->results, n * sizeof(*r));
	if (r == NULL)
		return false;
	c->results = r;
	c->results_cap = n;
	return true;
}

/* libraft gives apply no index: it is the one after the last applied. A rejected write
 * is a result, not an error: a non-zero return would make libraft retry forever, which
 * is right only when the database itself failed. The result handed to the proposal's
 * callback is the array of the entry's results, one per command. */
static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
	rcds_consensus *c = fsm->data;
	uint64_t index = c->raft.last_applied + 1;
	Snipe__Command *entry = rcds_entry_decode(buf);
	/* A batch owns its commands, decoded here; a lone command is the entry itself. */
	bool batch = entry != NULL && entry->n_batch > 0;
	size_t n = batch ? entry->n_batch : 1;
	Snipe__Command *one[1] = {entry};
	Snipe__Command **cmds = batch ? calloc(n, sizeof(*cmds)) : one;
	if (cmds == NULL || !results_reserve(c, n))
		fatal_store(c);
	if (entry == NULL)
		snipe_log(SNIPE_LOG_ERROR, "raft", "undecodable entry skipped index=%llu",
		          (unsigned long long)index);
	for (size_t i = 0; batch && i < n; i++)
		cmds[i] = snipe__command__unpack(NULL, entry->batch[i].len, entry->batch[i].data);
	bool fresh = index > rcds_store_applied(c->store);
	if (rcds_store_apply(c->store, index, (const Snipe__Command *const *)cmds, n,
	                     c->results) != SNIPE_OK)
		fatal_store(c);
	for (size_t i = 0; i < n; i++) {
		if (cmds[i] != NULL && c->on_applied != NULL)
			c->on_applied(c->arg, index, fresh ? cmds[i] : NULL, &c->results[i]);
		if (cmds[i] != NULL && batch)
			snipe__command__free_unpacked(cmds[i], NULL);
	}
	if (batch)
		free(cmds);
	if (entry != NULL)
		snipe__command__free_unpacked(entry, NULL);
	*result = c->results;
	return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n)
{
	rcds_consensus *c = fsm->data;
	uint8_t *image = NULL;
	size_t len = 0;
	if (rcds_store_snapshot(c->store, &image, &len) != SNIPE_OK)
		return RAFT_IOERR;
	*bufs = raft_malloc(sizeof(struct raft_buffer));
	void *copy = raft_malloc(len);
	if (*bufs == NULL || copy == NULL) {
		raft_free(*bufs);
		raft_free(copy);
		free(image);
		return RAFT_NOMEM;
	}
	memcpy(copy, image, len);
	free(image);
	(*bufs)[0].base = copy;
	(*bufs)[0].len = len;
	*n = 1;
	return 0;
}

/* On success the FSM owns buf->base and frees it. */
static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
	rcds_consensus *c = fsm->data;
	if (rcds_store_restore(c->store, buf->base, buf->len) != SNIPE_OK)
		return RAFT_IOERR;
	raft_free(buf->base);
	snipe_log(SNIPE_LOG_INFO, "raft", "restored snapshot applied=%llu",
	          (unsigned long long)rcds_store_applied(c->store));
	rcds_result keys = {.code = SNIPE_OK, .keys_changed = true};
	if (c->on_applied != NULL)
		c->on_applied(c->arg, rcds_store_applied(c->store), NULL, &keys);
	return 0;
}

/* ---------------------------------------------------------------- start-up */

static int bootstrap(rcds_consensus *c, const rcds_consensus_config *cfg, char *err,
                     size_t errlen)
{
	struct raft_configuration conf;
	raft_configuration_init(&conf);
	int rv = 0;
	for (size_t i = 0; i < cfg->npeers && rv == 0; i++)
		rv = raft_configuration_add(&conf, cfg->peers[i].id, cfg->peers[i].address,
		                            RAFT_VOTER);
	if (rv == 0)
		rv = raft_bootstrap(&c->raft, &conf);
	raft_configuration_close(&conf);
	if (rv != 0 && rv != RAFT_CANTBOOTSTRAP) /* CANTBOOTSTRAP: a restart */
		return sni_err(err, errlen, SNIPE_EIO, "raft bootstrap: %s", raft_strerror(rv));
	return SNIPE_OK;
}

static const char *own_address(const rcds_consensus_config *cfg)
{
	for (size_t i = 0; i < cfg->npeers; i++)
		if (cfg->peers[i].id == cfg->id)
			return cfg->peers[i].address;
	return NULL;
}

int rcds_consensus_start(uv_loop_t *loop, const rcds_consensus_config *cfg,
                         rcds_store *store, rcds_applied_fn on_applied, void *arg,
                         rcds_consensus **out, char *err, size_t errlen)
{
	const char *address = own_address(cfg);
	if (address == NULL)
		return sni_err(err, errlen, SNIPE_ECONFIG, "replica id %llu is not among the peers",
		               (unsigned long long)cfg->id);
	if (mkdir(cfg->dir, 0700) != 0 && errno != EEXIST)
		return sni_err(err, errlen, SNIPE_EIO, "cannot create %s: %s", cfg->dir,
		               strerror(errno));
	rcds_consensus *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return SNIPE_ENOMEM;
	c->store = store;
	c->on_applied = on_applied;
	c->arg = arg;
	c->fsm = (struct raft_fsm){.version = 1, .data = c, .apply = fsm_apply,
	                           .snapshot = fsm_snapshot, .restore = fsm_restore};
	c->authenticated = cfg->secret != NULL;
	int rv = c->authenticated ? rcds_transport_init(&c->transport, loop, cfg->secret)
	                          : raft_uv_tcp_init(&c->transport, loop);
	if (!c->authenticated)
		snipe_log(SNIPE_LOG_WARN, "raft", "no cluster key: the Raft transport is not "
		          "authenticated (anyone who reaches the Raft port can append entries)");
	if (rv != 0) {
		free(c);
		return sni_err(err, errlen, SNIPE_EIO, "raft transport: %s", raft_strerror(rv));
	}
	rv = raft_uv_init(&c->io, loop, cfg->dir, &c->transport);
	if (rv != 0) {
		transport_close(c);
		free(c);
		return sni_err(err, errlen, SNIPE_EIO, "raft storage in %s: %s (the directory "
		               "must support direct I/O)", cfg->dir, raft_strerror(rv));
	}
	raft_uv_set_connect_retry_delay(&c->io, 100);
	rv = raft_init(&c->raft, &c->io, &c->fsm, cfg->id, address);
	if (rv != 0)
		goto fail_io;
	c->raft.data = c;
	raft_set_election_timeout(&c->raft, cfg->election_ms ? cfg->election_ms : 150);
	raft_set_heartbeat_timeout(&c->raft, cfg->heartbeat_ms ? cfg->heartbeat_ms : 50);
	raft_set_snapshot_threshold(&c->raft,
	                            cfg->snapshot_threshold ? cfg->snapshot_threshold : 65536);
	raft_set_snapshot_trailing(&c->raft, 1024);
	/* libraft 0.15 can leave a follower's progress in snapshot mode after the follower
	 * installed the snapshot (it then rejects every heartbeat and never catches up);
	 * only this timeout gets it out, and its default is 30 s. */
	raft_set_install_snapshot_timeout(&c->raft, 1000);
	raft_set_pre_vote(&c->raft, true);
	/* A joining replica starts with no configuration: it never campaigns, and takes the
	 * group's configuration from the leader once added (rcds_consensus_add). */
	if (!cfg->join && bootstrap(c, cfg, err, errlen) != SNIPE_OK)
		goto fail_raft;
	rv = raft_start(&c->raft);
	if (rv != 0) {
		sni_err(err, errlen, SNIPE_EIO, "raft start: %s (%s)", raft_strerror(rv),
		        raft_errmsg(&c->raft));
		goto fail_raft;
	}
	uv_timer_init(loop, &c->commit);
	c->commit.data = c;
	uv_prepare_init(loop, &c->flush);
	c->flush.data = c;
	uv_prepare_start(&c->flush, flush_cb);
	uv_check_init(loop, &c->propose);
	c->propose.data = c;
	uv_check_start(&c->propose, propose_cb);
	*out = c;
	return SNIPE_OK;
fail_io:
	sni_err(err, errlen, SNIPE_EIO, "raft init: %s", raft_strerror(rv));
	raft_uv_close(&c->io);
	transport_close(c);
	free(c);
	return SNIPE_EIO;
fail_raft:
	/* raft_init succeeded: its close is asynchronous; finish it with the others. */
	rcds_consensus_close(c, NULL, NULL);
	return SNIPE_EIO;
}

/* ---------------------------------------------------------------- writes */

static void proposal_done(struct raft_apply *req, int status, void *result)
{
	struct proposal *p = req->data;
	const rcds_result *res = result;
	int code = status == RAFT_LEADERSHIPLOST || status == RAFT_NOTLEADER ? SNIPE_ENOTLEADER
	                                                                       : SNIPE_EIO;
	for (size_t i = 0; i < p->n; i++)
		p->waiters[i].done(p->waiters[i].arg, status == 0 ? SNIPE_OK : code,
		                   status == 0 ? &res[i] : NULL);
	free(p);
}

/* Proposes the gathered writes as one entry. */
static void propose_pending(rcds_consensus *c)
{
	size_t n = c->npending;
	if (n == 0)
		return;
	struct proposal *p = malloc(sizeof(*p) + n * sizeof(p->waiters[0]));
	struct raft_buffer buf = {0};
	int rc = p != NULL ? rcds_entry_encode_batch(c->pending, n, &buf) : SNIPE_ENOMEM;
	if (rc == SNIPE_OK) {
		p->req.data = p;
		p->n = n;
		memcpy(p->waiters, c->waiters, n * sizeof(p->waiters[0]));
		int rv = raft_apply(&c->raft, &p->req, &buf, 1, proposal_done);
		if (rv != 0) {
			raft_free(buf.base);
			rc = rv == RAFT_NOTLEADER ? SNIPE_ENOTLEADER : SNIPE_EIO;
		}
	}
	for (size_t i = 0; i < n; i++)
		free(c->pending[i].data);
	c->npending = 0;
	c->pending_bytes = 0;
	if (rc == SNIPE_OK)
		return;
	free(p);
	for (size_t i = 0; i < n; i++)
		c->waiters[i].done(c->waiters[i].arg, rc, NULL);
}

static void propose_cb(uv_check_t *h)
{
	propose_pending(h->data);
}

int rcds_consensus_propose(rcds_consensus *c, const Snipe__Command *cmd, rcds_done_fn done,
                           void *arg)
{
	if (raft_state(&c->raft) != RAFT_LEADER)
		return SNIPE_ENOTLEADER;
	size_t len = snipe__command__get_packed_size(cmd);
	if (len > BATCH_BYTES)
		return SNIPE_ERANGE;
	/* A full batch goes first: a failure there tells earlier writes, never this one. */
	if (c->npending == BATCH_WRITES || c->pending_bytes + len > BATCH_BYTES)
		propose_pending(c);
	if (c->npending == c->pending_cap) {
		size_t cap = c->pending_cap;
		if (!sni_grow(&c->pending, c->npending, &cap, sizeof(*c->pending)) ||
		    !sni_grow(&c->waiters, c->npending, &c->pending_cap, sizeof(*c->waiters)))
			return SNIPE_ENOMEM;
	}
	uint8_t *bytes = malloc(len ? len : 1);
	if (bytes == NULL)
		return SNIPE_ENOMEM;
	snipe__command__pack(cmd, bytes);
	c->pending[c->npending] = (ProtobufCBinaryData){len, bytes};
	c->waiters[c->npending] = (struct waiter){done, arg};
	c->pending_bytes += len;
	c->npending++;
	return SNIPE_OK;
}

/* ------------------------------------------------------------ membership */

/* A membership change in flight. Adding is raft_add (the replica joins as a spare,
 * which libraft does not replicate to), then raft_assign(RAFT_VOTER) from its callback:
 * the leader brings the replica up to date in catch-up rounds before it may vote. */
struct change {
	struct raft_change req;
	rcds_consensus *c;
	uint64_t id;
	char address[64];
	const char *action; /* "add" or "remove", for the log */
	rcds_change_fn done;
	void *arg;
};

/* libraft's membership failures as SNIPE codes, with the reason for the operator. */
static int change_error(int rv, uint64_t id, const char *address, char *err, size_t errlen)
{
	unsigned long long n = (unsigned long long)id;
	switch (rv) {
	case RAFT_NOTLEADER:
	case RAFT_LEADERSHIPLOST:
		return sni_err(err, errlen, SNIPE_ENOTLEADER, "this replica is not the leader");
	case RAFT_DUPLICATEID:
		return sni_err(err, errlen, SNIPE_EEXIST, "replica %llu is already a member", n);
	case RAFT_DUPLICATEADDRESS:
		return sni_err(err, errlen, SNIPE_EEXIST, "address %s is already another member's",
		               address);
	case RAFT_BADID:
	case RAFT_NOTFOUND:
		return sni_err(err, errlen, SNIPE_ENOTFOUND, "replica %llu is not a member", n);
	case RAFT_CANTCHANGE:
		return sni_err(err, errlen, SNIPE_EBUSY,
		               "another membership change is in progress; retry when it is done");
	case RAFT_NOCONNECTION: /* the promotion was abandoned: too slow or unresponsive */
		return sni_err(err, errlen, SNIPE_ETIMEDOUT,
		               "replica %llu at %s did not catch up (is it running, with --join?); "
		               "it stays a non-voting member until added again or removed", n, address);
	case RAFT_NOMEM:
		return sni_err(err, errlen, SNIPE_ENOMEM, "out of memory");
	default:
		return sni_err(err, errlen, SNIPE_EIO, "membership change of replica %llu: %s", n,
		               raft_strerror(rv));
	}
}

static struct change *change_new(rcds_consensus *c, const char *action, uint64_t id,
                                 const char *address, rcds_change_fn done, void *arg)
{
	struct change *ch = calloc(1, sizeof(*ch));
	if (ch == NULL)
		return NULL;
	ch->req.data = ch;
	ch->c = c;
	ch->id = id;
	snprintf(ch->address, sizeof(ch->address), "%s", address);
	ch->action = action;
	ch->done = done;
	ch->arg = arg;
	return ch;
}

static void change_end(struct change *ch, int status)
{
	char reason[256] = "";
	int code = status == 0 ? SNIPE_OK
	                       : change_error(status, ch->id, ch->address, reason, sizeof(reason));
	snipe_log(code == SNIPE_OK ? SNIPE_LOG_INFO : SNIPE_LOG_WARN, "raft",
	          "membership change ended action=%s id=%llu address=%s code=%s reason=\"%s\"",
	          ch->action, (unsigned long long)ch->id, ch->address, snipe_errname(code), reason);
	ch->done(ch->arg, code, reason);
	free(ch);
}

static void change_cb(struct raft_change *req, int status)
{
	change_end(req->data, status);
}

/* libraft clears its pending change before calling back, so the promotion can start
 * here, with the same request. */
static void added_cb(struct raft_change *req, int status)
{
	struct change *ch = req->data;
	if (status == 0)
		status = raft_assign(&ch->c->raft, &ch->req, ch->id, RAFT_VOTER, change_cb);
	if (status != 0)
		change_end(ch, status);
}

static const struct raft_server *member(rcds_consensus *c, uint64_t id)
{
	for (unsigned i = 0; i < c->raft.configuration.n; i++)
		if (c->raft.configuration.servers[i].id == id)
			return &c->raft.configuration.servers[i];
	return NULL;
}

int rcds_consensus_add(rcds_consensus *c, uint64_t id, const char *address,
                       rcds_change_fn done, void *arg, char *err, size_t errlen)
{
	if (id == 0 || id > INT64_MAX || address == NULL || strchr(address, ':') == NULL ||
	    strlen(address) >= sizeof(((struct change *)NULL)->address))
		return sni_err(err, errlen, SNIPE_EINVAL, "a member needs an id from 1 to 2^63-1 "
		               "and a Raft address host:port of at most 63 characters");
	struct change *ch = change_new(c, "add", id, address, done, arg);
	if (ch == NULL)
		return SNIPE_ENOMEM;
	const struct raft_server *s = member(c, id);
	int rv;
	/* Already there but not voting: an earlier add whose catch-up was abandoned. */
	if (s != NULL && s->role != RAFT_VOTER && strcmp(s->address, address) == 0)
		rv = raft_assign(&c->raft, &ch->req, id, RAFT_VOTER, change_cb);
	else
		rv = raft_add(&c->raft, &ch->req, id, address, added_cb);
	if (rv != 0) {
		free(ch);
		return change_error(rv, id, address, err, errlen);
	}
	snipe_log(SNIPE_LOG_INFO, "raft", "membership change started action=add id=%llu "
	          "address=%s", (unsigned long long)id, address);
	return SNIPE_OK;
}

int rcds_consensus_remove(rcds_consensus *c, uint64_t id, rcds_change_fn done, void *arg,
                          char *err, size_t errlen)
{
	const struct raft_server *s = member(c, id);
	char address[64]; /* the configuration holding s is replaced by raft_remove */
	snprintf(address, sizeof(address), "%s", s != NULL ? s->address : "");
	struct change *ch = change_new(c, "remove", id, address, done, arg);
	if (ch == NULL)
		return SNIPE_ENOMEM;
	int rv = raft_remove(&c->raft, &ch->req, id, change_cb);
	if (rv != 0) {
		free(ch);
		return change_error(rv, id, address, err, errlen);
	}
	snipe_log(SNIPE_LOG_INFO, "raft", "membership change started action=remove id=%llu "
	          "address=%s", (unsigned long long)id, address);
	return SNIPE_OK;
}

struct barrier {
	struct raft_barrier req;
	rcds_consensus *c;
	uint64_t term;
	void (*done)(void *arg, int code);
	void *arg;
};

static void barrier_done(struct raft_barrier *req, int status)
{
	struct barrier *b = req->data;
	if (status == 0 && b->term == b->c->raft.current_term)
		b->c->ready_term = b->term;
	b->done(b->arg, status == 0 ? SNIPE_OK : SNIPE_ENOTLEADER);
	free(b);
}

bool rcds_consensus_read_ready(rcds_consensus *c)
{
	return raft_state(&c->raft) == RAFT_LEADER && c->ready_term == c->raft.current_term &&
	       c->raft.last_applied >= c->raft.commit_index;
}

int rcds_consensus_barrier(rcds_consensus *c, void (*done)(void *arg, int code), void *arg)
{
	if (raft_state(&c->raft) != RAFT_LEADER)
		return SNIPE_ENOTLEADER;
	struct barrier *b = calloc(1, sizeof(*b));
	if (b == NULL)
		return SNIPE_ENOMEM;
	b->req.data = b;
	b->c = c;
	b->term = c->raft.current_term;
	b->done = done;
	b->arg = arg;
	propose_pending(c); /* the barrier comes after every write proposed before it */
	int rv = raft_barrier(&c->raft, &b->req, barrier_done);
	if (rv != 0) {
		free(b);
		return rv == RAFT_NOTLEADER ? SNIPE_ENOTLEADER : SNIPE_EIO;
	}
	return SNIPE_OK;
}

/* ---------------------------------------------------------------- status */

bool rcds_consensus_is_leader(rcds_consensus *c)
{
	return raft_state(&c->raft) == RAFT_LEADER;
}

void rcds_consensus_status(rcds_consensus *c, Snipe__Status *st)
{
	static const char *const states[] = {"unavailable", "follower", "candidate", "leader"};
	raft_id leader = 0;
	const char *address = NULL;
	raft_leader(&c->raft, &leader, &address);
	int state = raft_state(&c->raft);
	st->id = c->raft.id;
	st->leader_id = leader;
	st->leader_address = (char *)(address != NULL ? address : "");
	st->term = c->raft.current_term;
	st->applied_index = c->raft.last_applied;
	st->commit_index = c->raft.commit_index;
	st->state = (char *)(state >= 0 && state < 4 ? states[state] : "unknown");
	st->members = NULL;
	st->n_members = 0;
	unsigned n = c->raft.configuration.n;
	Snipe__Member **list = calloc(n ? n : 1, sizeof(*list));
	Snipe__Member *m = calloc(n ? n : 1, sizeof(*m));
	if (n == 0 || list == NULL || m == NULL) {
		free(list);
		free(m);
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		const struct raft_server *s = &c->raft.configuration.servers[i];
		snipe__member__init(&m[i]);
		m[i].id = s->id;
		m[i].address = s->address;
		m[i].voter = s->role == RAFT_VOTER;
		list[i] = &m[i];
	}
	st->members = list;
	st->n_members = n;
}

void rcds_consensus_status_clear(Snipe__Status *st)
{
	if (st->members != NULL)
		free(st->members[0]); /* the array of members, allocated in one block */
	free(st->members);
	st->members = NULL;
	st->n_members = 0;
}

/* ---------------------------------------------------------------- shutdown */

static void finish_close(rcds_consensus *c)
{
	void (*closed)(void *) = c->closed;
	void *arg = c->closed_arg;
	free(c->pending);
	free(c->waiters);
	free(c->results);
	free(c);
	if (closed != NULL)
		closed(arg);
}

static void handle_closed(uv_handle_t *h)
{
	rcds_consensus *c = h->data;
	if (--c->open_handles == 0)
		finish_close(c);
}

static void transport_closed(struct raft *r)
{
	rcds_consensus *c = r->data;
	raft_uv_close(&c->io);
	transport_close(c);
	if (rcds_store_flush(c->store) != SNIPE_OK)
		snipe_log(SNIPE_LOG_ERROR, "raft", "last batch not committed; the log replays it");
	if (c->flush.data == NULL) { /* never started: see rcds_consensus_start */
		finish_close(c);
		return;
	}
	c->open_handles = 3;
	uv_close((uv_handle_t *)&c->commit, handle_closed);
	uv_close((uv_handle_t *)&c->flush, handle_closed);
	uv_close((uv_handle_t *)&c->propose, handle_closed);
}

void rcds_consensus_close(rcds_consensus *c, void (*done)(void *arg), void *arg)
{
	c->closed = done;
	c->closed_arg = arg;
	/* Writes gathered but not proposed: their clients retry at the next leader. */
	for (size_t i = 0; i < c->npending; i++) {
		free(c->pending[i].data);
		c->waiters[i].done(c->waiters[i].arg, SNIPE_ENOTLEADER, NULL);
	}
	c->npending = 0;
	raft_close(&c->raft, transport_closed);
}
