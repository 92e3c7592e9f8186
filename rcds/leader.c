/*
 * leader.c — leases, placement and rescheduling on the catalog's leader.
 *
 * A timer (every TICK_MS) follows this replica's leadership. On becoming leader it
 * waits for a Raft barrier (so its database holds every acknowledged write), then
 * gives every host recorded up a fresh lease (the grace a new leader owes them). From
 * then on it commits lease transitions (rcds/lease.h) and sweeps the processes: any in
 * an active state whose host holds no lease is moved to a live host with epoch + 1, or
 * ended (lost, failed, killed) as its policy says. Every write is an ordinary signed
 * batch authored by this replica's key, checked at apply like any other.
 *
 * Not here: the Raft glue (consensus.c), the client socket (server.c).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.pb-c.h"
#include <sodium.h>

#include "lease.h"
#include "leader.h"
#include "placement.h"
#include "rcds.h"
#include "sni.h"

#define TICK_MS 25
#define STALL_MS 200
#define SWEEP_MS 250
#define DEFAULT_LEASE_MS 1000
#define MAX_ASSIGNED 1000
#define MAX_HOSTS 4096

enum phase { PHASE_FOLLOWER, PHASE_TAKING_OVER, PHASE_LEADING };

struct pentry {
	char urn[SNIPE_URN_MAX];
	char host[SNIPE_URN_NAME_MAX + 1];
	uint64_t epoch;
	bool stop;
};

struct pindex {
	struct pentry *v; /* by URN */
	size_t n, cap;
	char (*dirty)[SNIPE_URN_MAX]; /* changed since the last refresh */
	size_t ndirty;
	bool stale;       /* rebuild from a full scan */
};

struct rcds_leader {
	uv_loop_t *loop;
	rcds_store *store;
	rcds_consensus *consensus;
	const snipe_key *key;
	rcds_leases *leases;
	uv_timer_t timer;
	enum phase phase;
	unsigned generation; /* bumped on every change of phase: stale callbacks see it */
	uint64_t next_sweep;
	unsigned outstanding; /* the sweep's writes in flight */
	bool warned_nokey;
	uint64_t last_tick; /* to notice a loop that was blocked (leases depend on it) */
	struct pindex procs;  /* the active processes, kept from the applied writes */
};

/* ----------------------------------------------------------------- writes */

/* A write of ours in flight: what to tell when it ends. */
struct pending {
	rcds_leader *l;
	unsigned generation;
	bool transition, up;
	char what[SNIPE_URN_MAX];
};

static void pending_done(void *arg, int code, const rcds_result *res)
{
	struct pending *p = arg;
	rcds_leader *l = p->l;
	int rc = code != SNIPE_OK ? code : res->code;
	if (rc != SNIPE_OK)
		snipe_log(SNIPE_LOG_WARN, "leader", "write for %s failed code=%s reason=\"%s\"",
		          p->what, snipe_errname(rc), code == SNIPE_OK ? res->reason : "");
	if (p->generation == l->generation) {
		if (p->transition) {
			rcds_lease_recorded(l->leases, p->what + strlen(SNI_HOST_PREFIX), p->up,
			                    rc == SNIPE_OK);
			if (rc == SNIPE_OK && !p->up)
				l->next_sweep = 0; /* move its processes now */
		} else if (l->outstanding > 0) {
			l->outstanding--;
		}
	}
	free(p);
}

/* Proposes b, signed with this replica's key; done is pending_done(p) exactly once if
 * SNIPE_OK is returned (p is then the callback's), never otherwise. */
static int propose(rcds_leader *l, const rcds_batch *b, struct pending *p)
{
	char err[160];
	if (l->key == NULL) {
		if (!l->warned_nokey)
			snipe_log(SNIPE_LOG_WARN, "leader",
			          "no --key: host leases are kept but not recorded, nothing is moved");
		l->warned_nokey = true;
		return SNIPE_EDENIED;
	}
	struct sni_write_msg m = {0};
	int rc = sni_write_msg_build(l->key, b, &m, err, sizeof(err));
	if (rc == SNIPE_OK) {
		uint8_t id[16];
		randombytes_buf(id, sizeof(id));
		Snipe__Command cmd = SNIPE__COMMAND__INIT;
		cmd.request_id = (ProtobufCBinaryData){sizeof(id), id};
		cmd.signer = (ProtobufCBinaryData){SNIPE_PK_BYTES, (uint8_t *)snipe_key_public(l->key)};
		cmd.time_ms = snipe_now_ms();
		cmd.write = &m.w;
		rc = rcds_consensus_propose(l->consensus, &cmd, pending_done, p);
	}
	sni_write_msg_free(&m);
	return rc;
}

/* ------------------------------------------------------------ transitions */

static void record_transition(void *arg, const char *host, bool up)
{
	rcds_leader *l = arg;
	struct pending *p = calloc(1, sizeof(*p));
	rcds_batch *b = NULL;
	int rc = p != NULL ? rcds_batch_new(&b) : SNIPE_ENOMEM;
	if (rc == SNIPE_OK) {
		*p = (struct pending){.l = l, .generation = l->generation, .transition = true,
		                      .up = up};
		snprintf(p->what, sizeof(p->what), SNI_HOST_PREFIX "%s", host);
		rc = rcds_batch_put_text(b, p->what, "state", up ? "up" : "down");
		if (rc == SNIPE_OK)
			rc = rcds_batch_putf(b, p->what, "state_ms", "%" PRIu64, snipe_now_ms());
	}
	if (rc == SNIPE_OK)
		rc = propose(l, b, p);
	rcds_batch_free(b);
	if (rc != SNIPE_OK) {
		free(p);
		rcds_lease_recorded(l->leases, host, up, false);
		return;
	}
	snipe_log(SNIPE_LOG_INFO, "leader", "host %s is %s", host, up ? "up" : "down");
}

/* ------------------------------------------------------------------- hosts */

struct host_row {
	char name[SNIPE_URN_NAME_MAX + 1];
	char address[256];
	char labels[512];
	char state[16];
	uint32_t cores, lease_ms;
};

struct host_list {
	struct host_row *v;
	size_t n, cap;
};

static void copy_text(char *buf, size_t cap, const rcds_row *row)
{
	size_t n = row->value_len < cap ? row->value_len : 0;
	if (n > 0)
		memcpy(buf, row->value, n);
	buf[n] = '\0';
}

static uint32_t row_u32(const rcds_row *row)
{
	char buf[16];
	uint64_t v;
	copy_text(buf, sizeof(buf), row);
	return snipe_parse_u64(buf, 0, UINT32_MAX, &v) == SNIPE_OK ? (uint32_t)v : 0;
}

static int collect_host(void *arg, const rcds_row *row)
{
	struct host_list *hl = arg;
	const char *name = row->urn + strlen(SNI_HOST_PREFIX);
	if (hl->n == 0 || strcmp(hl->v[hl->n - 1].name, name) != 0) {
		if (hl->n == MAX_HOSTS)
			return 1;
		if (hl->n == hl->cap) {
			size_t cap = hl->cap ? 2 * hl->cap : 16;
			struct host_row *grown = realloc(hl->v, cap * sizeof(*grown));
			if (grown == NULL)
				return 1;
			hl->v = grown;
			hl->cap = cap;
		}
		hl->v[hl->n] = (struct host_row){.cores = 1};
		snprintf(hl->v[hl->n].name, sizeof(hl->v[hl->n].name), "%s", name);
		hl->n++;
	}
	struct host_row *h = &hl->v[hl->n - 1];
	if (strcmp(row->attr, "address") == 0)
		copy_text(h->address, sizeof(h->address), row);
	else if (strcmp(row->attr, "labels") == 0)
		copy_text(h->labels, sizeof(h->labels), row);
	else if (strcmp(row->attr, "state") == 0)
		copy_text(h->state, sizeof(h->state), row);
	else if (strcmp(row->attr, "cores") == 0)
		h->cores = row_u32(row);
	else if (strcmp(row->attr, "lease_ms") == 0)
		h->lease_ms = row_u32(row);
	return 0;
}

/* Every host record (at most MAX_HOSTS); free hl->v. */
static int load_hosts(rcds_leader *l, struct host_list *hl)
{
	char after_urn[SNIPE_URN_MAX] = "", after_attr[SNI_ATTR_MAX + 1] = "";
	bool more = true;
	*hl = (struct host_list){0};
	while (more && hl->n < MAX_HOSTS) {
		rcds_scan q = {.prefix = SNI_HOST_PREFIX, .after_urn = after_urn,
		                .after_attr = after_attr, .limit = 4096};
		size_t before = hl->n;
		int rc = rcds_store_query(l->store, &q, snipe_now_ms(), collect_host, hl, &more);
		if (rc < 0)
			return rc;
		if (rc > 0)
			break; /* MAX_HOSTS, or out of memory: the hosts read so far */
		if (!more || hl->n == before + 1)
			break;
		/* the page may have cut the last host's rows: read it again, whole */
		hl->n--;
		snprintf(after_urn, sizeof(after_urn), SNI_HOST_PREFIX "%s", hl->v[hl->n].name);
		after_attr[0] = '\0';
	}
	return SNIPE_OK;
}

/* ------------------------------------------------------------- placement */

/* The live host to run a process needing labels, not exclude: index in hl or -1. */
static int choose(rcds_leader *l, const struct host_list *hl, char *const *labels,
                  size_t nlabels, const char *exclude)
{
	rcds_candidate *c = calloc(hl->n ? hl->n : 1, sizeof(*c));
	int *map = calloc(hl->n ? hl->n : 1, sizeof(*map));
	size_t n = 0;
	uint64_t now = sni_mono_ms();
	int best = -1;
	if (c != NULL && map != NULL) {
		for (size_t i = 0; i < hl->n; i++) {
			const struct host_row *h = &hl->v[i];
			if (h->address[0] == '\0' || !rcds_lease_live(l->leases, h->name, now))
				continue;
			c[n] = (rcds_candidate){.name = h->name, .labels = h->labels, .cores = h->cores,
			                        .load = rcds_lease_load(l->leases, h->name)};
			map[n++] = (int)i;
		}
		int k = rcds_place_choose(c, n, (const char *const *)labels, nlabels, exclude);
		best = k >= 0 ? map[k] : -1;
	}
	free(c);
	free(map);
	if (best >= 0)
		rcds_lease_add_load(l->leases, hl->v[best].name, 1);
	return best;
}

int rcds_leader_place(rcds_leader *l, const Snipe__PlaceRequest *p, char *host,
                      size_t hostlen, char *address, size_t addrlen, char *err,
                      size_t errlen)
{
	if (l->phase != PHASE_LEADING)
		return sni_err(err, errlen, SNIPE_EUNAVAIL, "the leader is still taking over");
	char **labels = calloc(p->n_labels ? p->n_labels : 1, sizeof(char *));
	struct host_list hl;
	int rc = labels != NULL ? load_hosts(l, &hl) : SNIPE_ENOMEM;
	if (rc != SNIPE_OK) {
		free(labels);
		return sni_err(err, errlen, rc, "cannot read the hosts");
	}
	for (size_t i = 0; i < p->n_labels && rc == SNIPE_OK; i++) {
		const Snipe__AttrFilter *f = p->labels[i];
		if (asprintf(&labels[i], "%s=%.*s", f->attr, (int)f->value.len,
		             (const char *)f->value.data) < 0) {
			labels[i] = NULL;
			rc = SNIPE_ENOMEM;
		}
	}
	int k = rc == SNIPE_OK ? choose(l, &hl, labels, p->n_labels,
	                                p->exclude[0] ? p->exclude : NULL)
	                       : -1;
	if (rc == SNIPE_OK && k < 0)
		rc = sni_err(err, errlen, SNIPE_ENOTFOUND, "no live host fits");
	if (rc == SNIPE_OK) {
		snprintf(host, hostlen, "%s", hl.v[k].name);
		snprintf(address, addrlen, "%s", hl.v[k].address);
	}
	for (size_t i = 0; i < p->n_labels; i++)
		free(labels[i]);
	free(labels);
	free(hl.v);
	return rc;
}

/* ------------------------------------------------------------------ sweep */

struct proc_list {
	sni_proc *v;
	size_t n, cap;
	bool open; /* v[n-1] is still taking rows */
};

static void proc_list_free(struct proc_list *pl)
{
	for (size_t i = 0; i < pl->n; i++)
		sni_proc_clear(&pl->v[i]);
	free(pl->v);
}

static int collect_proc(void *arg, const rcds_row *row)
{
	struct proc_list *pl = arg;
	if (pl->n == 0 || strcmp(pl->v[pl->n - 1].urn, row->urn) != 0) {
		if (pl->n == pl->cap) {
			size_t cap = pl->cap ? 2 * pl->cap : 64;
			sni_proc *grown = realloc(pl->v, cap * sizeof(*grown));
			if (grown == NULL)
				return 1;
			pl->v = grown;
			pl->cap = cap;
		}
		sni_proc_init(&pl->v[pl->n++], row->urn);
	}
	sni_proc_set(&pl->v[pl->n - 1], row->attr, row->value, row->value_len, row->version,
	             row->author);
	return 0;
}

/* Every process record matching where (NULL: all); free with proc_list_free. */
static int load_procs(rcds_leader *l, const rcds_filter *where, size_t nwhere,
                      struct proc_list *pl)
{
	char after_urn[SNIPE_URN_MAX] = "", after_attr[SNI_ATTR_MAX + 1] = "";
	bool more = true;
	*pl = (struct proc_list){0};
	while (more) {
		rcds_scan q = {.prefix = SNI_PROC_PREFIX, .where = where, .nwhere = nwhere,
		                .after_urn = after_urn, .after_attr = after_attr, .limit = 8192};
		size_t before = pl->n;
		int rc = rcds_store_query(l->store, &q, snipe_now_ms(), collect_proc, pl, &more);
		if (rc < 0)
			return rc;
		if (rc > 0)
			return SNIPE_ENOMEM;
		if (!more || pl->n == before + 1)
			break;
		/* the page may have cut the last process's rows: read it again, whole
		 * (the cursor is strictly after (urn, ""), so all of its rows come) */
		snprintf(after_urn, sizeof(after_urn), "%s", pl->v[pl->n - 1].urn);
		after_attr[0] = '\0';
		sni_proc_clear(&pl->v[--pl->n]);
	}
	return SNIPE_OK;
}

/* ---------------------------------------------------------- process index */

/*
 * The active processes (pending, running, backoff), by URN, with what heartbeats and
 * sweeps need: host, epoch, stop. Reading every process record per heartbeat would
 * cost the leader more with every process that ever ran; instead every applied write
 * marks the process URNs it touched, and those (only) are read again before the index
 * is used. A replay or snapshot restore (no command at hand) marks it all stale: it
 * is rebuilt from a full scan, as when this replica starts to lead.
 */
#define DIRTY_MAX 4096

static struct pentry *pindex_find(const struct pindex *x, const char *urn, size_t *pos)
{
	size_t lo = 0, hi = x->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(x->v[mid].urn, urn);
		if (c == 0) {
			*pos = mid;
			return &x->v[mid];
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*pos = lo;
	return NULL;
}

/* Records p as it now is: in the index if active, out of it if not. */
static int pindex_set(struct pindex *x, const sni_proc *p)
{
	size_t pos;
	struct pentry *e = pindex_find(x, p->urn, &pos);
	if (!sni_proc_state_active(p->state)) {
		if (e != NULL) {
			memmove(&x->v[pos], &x->v[pos + 1], (x->n - pos - 1) * sizeof(*x->v));
			x->n--;
		}
		return SNIPE_OK;
	}
	if (e == NULL) {
		if (!sni_grow(&x->v, x->n, &x->cap, sizeof(*x->v)))
			return SNIPE_ENOMEM;
		memmove(&x->v[pos + 1], &x->v[pos], (x->n - pos) * sizeof(*x->v));
		x->n++;
		e = &x->v[pos];
		snprintf(e->urn, sizeof(e->urn), "%s", p->urn);
	}
	snprintf(e->host, sizeof(e->host), "%s", p->host);
	e->epoch = p->epoch;
	e->stop = p->stop;
	return SNIPE_OK;
}

static void pindex_free(struct pindex *x)
{
	free(x->v);
	free(x->dirty);
	*x = (struct pindex){0};
}

void rcds_leader_applied(rcds_leader *l, const Snipe__Command *cmd, const rcds_result *res)
{
	struct pindex *x = &l->procs;
	if (cmd == NULL) {
		x->stale = true;
		return;
	}
	/* only a leading replica uses the index (a new leader rebuilds it from a scan) */
	if (l->phase != PHASE_LEADING || cmd->write == NULL || res->code != SNIPE_OK || x->stale)
		return;
	const Snipe__WriteRequest *w = cmd->write;
	for (size_t i = 0; i < w->n_puts + w->n_deletes && !x->stale; i++) {
		char urn[SNIPE_URN_MAX] = "";
		if (i < w->n_puts) {
			const Snipe__Assertion *a = w->puts[i]->assertion;
			Snipe__AssertionContent *ct =
				snipe__assertion_content__unpack(NULL, a->content.len, a->content.data);
			if (ct != NULL)
				snprintf(urn, sizeof(urn), "%s", ct->urn);
			if (ct != NULL)
				snipe__assertion_content__free_unpacked(ct, NULL);
		} else {
			snprintf(urn, sizeof(urn), "%s", w->deletes[i - w->n_puts]->urn);
		}
		if (strncmp(urn, SNI_PROC_PREFIX, strlen(SNI_PROC_PREFIX)) != 0)
			continue;
		if (x->ndirty > 0 && strcmp(x->dirty[x->ndirty - 1], urn) == 0)
			continue; /* the same process as the item before */
		if (x->ndirty == DIRTY_MAX) {
			x->stale = true;
			break;
		}
		if (x->dirty == NULL && (x->dirty = malloc(DIRTY_MAX * sizeof(*x->dirty))) == NULL) {
			x->stale = true;
			break;
		}
		snprintf(x->dirty[x->ndirty++], sizeof(x->dirty[0]), "%s", urn);
	}
}

static int read_proc_row(void *arg, const rcds_row *row)
{
	sni_proc_set(arg, row->attr, row->value, row->value_len, row->version, row->author);
	return 0;
}

/* One process's record from the store into *p (clear it after). */
static int store_proc(rcds_leader *l, const char *urn, sni_proc *p)
{
	sni_proc_init(p, urn);
	int rc = rcds_store_get(l->store, urn, snipe_now_ms(), read_proc_row, p);
	return rc == SNIPE_ENOTFOUND ? SNIPE_OK : rc;
}

/* Brings the index up to date: the dirty processes, or all of them if stale. */
static int pindex_refresh(rcds_leader *l)
{
	struct pindex *x = &l->procs;
	int rc = SNIPE_OK;
	if (x->stale) {
		struct proc_list pl;
		rc = load_procs(l, NULL, 0, &pl);
		if (rc == SNIPE_OK) {
			x->n = 0;
			for (size_t i = 0; rc == SNIPE_OK && i < pl.n; i++)
				rc = pindex_set(x, &pl.v[i]);
		}
		proc_list_free(&pl);
		if (rc == SNIPE_OK) {
			x->stale = false;
			x->ndirty = 0;
		}
		return rc;
	}
	for (size_t i = 0; rc == SNIPE_OK && i < x->ndirty; i++) {
		sni_proc p;
		rc = store_proc(l, x->dirty[i], &p);
		if (rc == SNIPE_OK)
			rc = pindex_set(x, &p);
		sni_proc_clear(&p);
	}
	if (rc == SNIPE_OK)
		x->ndirty = 0;
	return rc;
}

/* What happens to an active process whose host holds no lease; the batch to write. */
static int decide(rcds_leader *l, const struct host_list *hl, const sni_proc *p,
                  rcds_batch *b, char *what, size_t whatlen)
{
	const Snipe__ProcSpec *spec = p->spec;
	const char *policy = spec != NULL ? spec->restart : "never";
	bool started = strcmp(p->state, "pending") != 0;
	char epoch[24];
	snprintf(epoch, sizeof(epoch), "%" PRIu64, p->epoch);

	if (p->stop || spec == NULL || (started && strcmp(policy, "never") == 0) ||
	    (spec->max_restarts > 0 && started && p->restarts >= spec->max_restarts)) {
		const char *state = p->stop ? "killed" : spec == NULL ? "failed"
		                    : strcmp(policy, "never") == 0 ? "lost" : "failed";
		snprintf(what, whatlen, "%s: host %s is down, now %s", p->urn,
		         p->host[0] ? p->host : "(none)", state);
		int rc = rcds_batch_put_text(b, p->urn, "state", state);
		if (rc == SNIPE_OK)
			rc = rcds_batch_put_text(b, p->urn, "reason", p->stop ? "killed while its host was down"
			                                           : "its host went down");
		return rc == SNIPE_OK ? rcds_batch_put_text(b, p->urn, "epoch", epoch) : rc;
	}
	int k = choose(l, hl, spec->labels, spec->n_labels, NULL);
	if (k < 0 && p->host[0] == '\0')
		return SNIPE_ENOTFOUND; /* still no host: nothing to write */
	const char *to = k >= 0 ? hl->v[k].name : "";
	snprintf(what, whatlen, "%s: host %s is down, moved to %s (epoch %" PRIu64 ")", p->urn,
	         p->host[0] ? p->host : "(none)", k >= 0 ? to : "(no host fits)", p->epoch + 1);
	snprintf(epoch, sizeof(epoch), "%" PRIu64, p->epoch + 1);
	int rc = rcds_batch_put_if(b, p->urn, "epoch", epoch, strlen(epoch), 0, p->epoch_version);
	if (rc == SNIPE_OK)
		rc = rcds_batch_put_text(b, p->urn, "host", to);
	if (rc == SNIPE_OK)
		rc = rcds_batch_put_text(b, p->urn, "state", "pending");
	if (rc == SNIPE_OK)
		rc = rcds_batch_put_text(b, p->urn, "pid", "0");
	if (rc == SNIPE_OK && started)
		rc = rcds_batch_putf(b, p->urn, "restarts", "%u", p->restarts + 1u);
	return rc;
}

static void sweep(rcds_leader *l)
{
	struct host_list hl;
	uint64_t now = sni_mono_ms();
	if (pindex_refresh(l) != SNIPE_OK || load_hosts(l, &hl) != SNIPE_OK) {
		snipe_log(SNIPE_LOG_ERROR, "leader", "sweep: cannot read the catalog");
		return;
	}
	const struct pindex *x = &l->procs;
	rcds_leases_zero_load(l->leases);
	for (size_t i = 0; i < x->n; i++)
		rcds_lease_add_load(l->leases, x->v[i].host, 1);
	/* the processes to move: copied out, since proposing may change the index */
	size_t nmove = 0;
	char (*move)[SNIPE_URN_MAX] = malloc((x->n ? x->n : 1) * SNIPE_URN_MAX);
	for (size_t i = 0; move != NULL && i < x->n; i++)
		if (x->v[i].host[0] == '\0' || !rcds_lease_live(l->leases, x->v[i].host, now))
			snprintf(move[nmove++], SNIPE_URN_MAX, "%s", x->v[i].urn);
	for (size_t i = 0; i < nmove; i++) {
		sni_proc rec;
		if (store_proc(l, move[i], &rec) != SNIPE_OK || !sni_proc_state_active(rec.state)) {
			sni_proc_clear(&rec);
			continue;
		}
		const sni_proc *p = &rec;
		rcds_batch *b = NULL;
		struct pending *pd = calloc(1, sizeof(*pd));
		char what[512];
		int rc = pd != NULL ? rcds_batch_new(&b) : SNIPE_ENOMEM;
		if (rc == SNIPE_OK)
			rc = decide(l, &hl, p, b, what, sizeof(what));
		if (rc == SNIPE_OK) {
			*pd = (struct pending){.l = l, .generation = l->generation};
			snprintf(pd->what, sizeof(pd->what), "%.*s", (int)sizeof(pd->what) - 1, p->urn);
			rc = propose(l, b, pd);
		}
		rcds_batch_free(b);
		sni_proc_clear(&rec);
		if (rc != SNIPE_OK) {
			free(pd);
			continue;
		}
		l->outstanding++;
		snipe_log(SNIPE_LOG_INFO, "leader", "%s", what);
	}
	free(move);
	free(hl.v);
}

/* -------------------------------------------------------------- heartbeat */

struct key_info {
	char role[16], host[SNIPE_URN_NAME_MAX + 1];
};

static int collect_key(void *arg, const rcds_row *row)
{
	struct key_info *k = arg;
	if (strcmp(row->attr, "role") == 0)
		copy_text(k->role, sizeof(k->role), row);
	else if (strcmp(row->attr, "host") == 0)
		copy_text(k->host, sizeof(k->host), row);
	return 0;
}

static int assignments(rcds_leader *l, const char *host, Snipe__HeartbeatReply *out)
{
	int rc = pindex_refresh(l);
	const struct pindex *x = &l->procs;
	size_t n = 0, mine = 0;
	for (size_t i = 0; rc == SNIPE_OK && i < x->n; i++)
		mine += strcmp(x->v[i].host, host) == 0 && !x->v[i].stop;
	if (rc == SNIPE_OK && mine > 0) {
		out->assigned = calloc(mine < MAX_ASSIGNED ? mine : MAX_ASSIGNED,
		                       sizeof(*out->assigned));
		if (out->assigned == NULL)
			rc = SNIPE_ENOMEM;
	}
	for (size_t i = 0; rc == SNIPE_OK && i < x->n; i++) {
		if (strcmp(x->v[i].host, host) != 0 || x->v[i].stop)
			continue;
		if (n == MAX_ASSIGNED) {
			out->truncated = true;
			break;
		}
		Snipe__Assignment *a = malloc(sizeof(*a));
		char *urn = strdup(x->v[i].urn);
		if (a == NULL || urn == NULL) {
			free(a);
			free(urn);
			rc = SNIPE_ENOMEM;
			break;
		}
		snipe__assignment__init(a);
		a->urn = urn;
		a->epoch = x->v[i].epoch;
		out->assigned[n++] = a;
	}
	out->n_assigned = n;
	return rc;
}

int rcds_leader_heartbeat(rcds_leader *l, const uint8_t *signer,
                          const Snipe__HeartbeatRequest *hb, Snipe__HeartbeatReply *out,
                          char *err, size_t errlen)
{
	uint8_t id[SNIPE_KEYID_BYTES];
	char idhex[SNIPE_KEYID_HEX], urn[SNIPE_URN_MAX];
	struct key_info k = {0};

	snipe__heartbeat_reply__init(out);
	if (l->phase == PHASE_FOLLOWER)
		return sni_err(err, errlen, SNIPE_EUNAVAIL, "the leader is still taking over");
	if (signer == NULL)
		return sni_err(err, errlen, SNIPE_EDENIED, "heartbeat from an unknown key");
	snipe_keyid(signer, id);
	snipe_keyid_hex(id, idhex);
	snprintf(urn, sizeof(urn), "urn:snipe:key:%s", idhex);
	int rc = rcds_store_get(l->store, urn, snipe_now_ms(), collect_key, &k);
	if (rc != SNIPE_OK && rc != SNIPE_ENOTFOUND)
		return sni_err(err, errlen, rc, "cannot read %s", urn);
	if (strcmp(k.role, "host") != 0 || strcmp(k.host, hb->host) != 0)
		return sni_err(err, errlen, SNIPE_EDENIED,
		               "heartbeat for host '%s' from key %s, which is not that host's", hb->host,
		               idhex);
	rc = rcds_lease_renew(l->leases, hb->host, sni_mono_ms(), hb->lease_ms);
	if (rc == SNIPE_EINVAL)
		return sni_err(err, errlen, rc, "lease_ms %u outside [%u, %u]", hb->lease_ms,
		               RCDS_LEASE_MIN_MS, RCDS_LEASE_MAX_MS);
	if (rc == SNIPE_OK)
		rc = assignments(l, hb->host, out);
	if (rc != SNIPE_OK) {
		rcds_leader_reply_clear(out);
		return sni_err(err, errlen, rc, "heartbeat: %s", snipe_strerror(rc));
	}
	out->lease_ms = hb->lease_ms;
	return SNIPE_OK;
}

void rcds_leader_reply_clear(Snipe__HeartbeatReply *r)
{
	for (size_t i = 0; i < r->n_assigned; i++) {
		free(r->assigned[i]->urn);
		free(r->assigned[i]);
	}
	free(r->assigned);
	r->assigned = NULL;
	r->n_assigned = 0;
}

/* ----------------------------------------------------------------- timer */

struct takeover {
	rcds_leader *l;
	unsigned generation;
};

static void taken_over(void *arg, int code)
{
	struct takeover *t = arg;
	rcds_leader *l = t->l;
	bool current = t->generation == l->generation;
	free(t);
	if (!current || l->phase != PHASE_TAKING_OVER)
		return;
	struct host_list hl;
	if (code != SNIPE_OK || load_hosts(l, &hl) != SNIPE_OK) {
		l->phase = PHASE_FOLLOWER; /* try again on the next tick */
		l->generation++;
		return;
	}
	uint64_t now = sni_mono_ms();
	size_t up = 0;
	for (size_t i = 0; i < hl.n; i++) {
		const struct host_row *h = &hl.v[i];
		uint32_t lease = h->lease_ms >= RCDS_LEASE_MIN_MS && h->lease_ms <= RCDS_LEASE_MAX_MS
		                         ? h->lease_ms
		                         : DEFAULT_LEASE_MS;
		if (strcmp(h->state, "up") == 0 &&
		    rcds_lease_grace(l->leases, h->name, now, lease) == SNIPE_OK)
			up++;
	}
	free(hl.v);
	l->procs.stale = true; /* rebuilt by the first sweep */
	l->phase = PHASE_LEADING;
	l->next_sweep = 0;
	snipe_log(SNIPE_LOG_INFO, "leader", "leading: %zu hosts up get a fresh lease", up);
}

static void tick(uv_timer_t *t)
{
	rcds_leader *l = t->data;
	uint64_t was = l->last_tick;
	l->last_tick = sni_mono_ms();
	if (was != 0 && l->last_tick - was > STALL_MS)
		snipe_log(SNIPE_LOG_WARN, "leader", "the loop was blocked for %" PRIu64 " ms "
		          "(heartbeats waited as long)", l->last_tick - was - TICK_MS);
	bool leader = l->consensus != NULL && rcds_consensus_is_leader(l->consensus);
	if (!leader) {
		if (l->phase != PHASE_FOLLOWER) {
			rcds_leases_clear(l->leases);
			l->phase = PHASE_FOLLOWER;
			l->generation++;
			l->outstanding = 0;
		}
		return;
	}
	if (l->phase == PHASE_FOLLOWER) {
		struct takeover *to = malloc(sizeof(*to));
		if (to == NULL)
			return;
		l->generation++;
		*to = (struct takeover){l, l->generation};
		l->phase = PHASE_TAKING_OVER;
		if (rcds_consensus_barrier(l->consensus, taken_over, to) != SNIPE_OK) {
			free(to);
			l->phase = PHASE_FOLLOWER;
		}
		return;
	}
	if (l->phase != PHASE_LEADING)
		return;
	uint64_t now = sni_mono_ms();
	rcds_leases_due(l->leases, now, record_transition, l);
	if (now >= l->next_sweep && l->outstanding == 0) {
		l->next_sweep = now + SWEEP_MS;
		sweep(l);
	}
}

/* ------------------------------------------------------------- life cycle */

int rcds_leader_new(uv_loop_t *loop, rcds_store *store, const snipe_key *key,
                    rcds_leader **out)
{
	rcds_leader *l = calloc(1, sizeof(*l));
	if (l == NULL || rcds_leases_new(&l->leases) != SNIPE_OK) {
		free(l);
		return SNIPE_ENOMEM;
	}
	l->loop = loop;
	l->store = store;
	l->key = key;
	l->procs.stale = true;
	uv_timer_init(loop, &l->timer);
	l->timer.data = l;
	uv_timer_start(&l->timer, tick, TICK_MS, TICK_MS);
	*out = l;
	return SNIPE_OK;
}

void rcds_leader_attach(rcds_leader *l, rcds_consensus *c)
{
	l->consensus = c;
}

static void timer_closed(uv_handle_t *h)
{
	rcds_leader *l = h->data;
	pindex_free(&l->procs);
	rcds_leases_free(l->leases);
	free(l);
}

void rcds_leader_close(rcds_leader *l)
{
	if (l == NULL)
		return;
	l->generation++; /* writes still in flight find a stale generation */
	uv_timer_stop(&l->timer);
	uv_close((uv_handle_t *)&l->timer, timer_closed);
}
