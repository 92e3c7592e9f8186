/*
 * server.c — a catalog replica's client endpoint: receives signed requests on a
 * nanomsg raw REP socket (many clients at once), checks them, proposes writes to Raft
 * and answers reads from the local store. Not the place for what a write means
 * (store.c) or how it is replicated (consensus.c).
 */
#include <inttypes.h>
#include <nanomsg/nn.h>
#include <nanomsg/pubsub.h>
#include <nanomsg/reqrep.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"
#include "sni.h"

#define REQUEST_ID_BYTES 16
#define QUERY_LIMIT_DEFAULT 1000
#define QUERY_LIMIT_MAX 10000
#define RECV_BURST 64 /* messages handled per wakeup, so timers and Raft get their turn */
#define SESSION_CAP 4096
#define SESSION_TTL_MS (10u * 60u * 1000u)

/* A request that is answered later: a write waiting for commit or a read waiting
 * for min_index. */
struct call {
	rcds_server *s;
	void *control; /* nanomsg's routing header: the reply goes back along it */
	uint8_t id[REQUEST_ID_BYTES];
	Snipe__Request *req; /* parked reads only */
	uint64_t min_index, deadline_ms;
	struct call *next;
};

/* The membership change in flight (libraft makes one at a time) and the answer to the
 * last one: a client retrying the same request id (its wait ran out during a long
 * catch-up) gets that change's answer rather than starting it again. */
struct member_change {
	struct call *call; /* in flight, or NULL */
	bool answered;     /* last_* hold an answer */
	uint8_t last_id[REQUEST_ID_BYTES];
	int last_code;
	char last_reason[256];
};

struct rcds_server {
	uv_loop_t *loop;
	int sock;
	int pub; /* watch socket, or -1 */
	uint64_t pub_index; /* the last change published: its index... */
	uint32_t pub_item;  /* ...and the item the next change at that index gets */
	char *watch;
	uv_poll_t poll;
	uv_timer_t timer; /* expires parked reads */
	char *listen;
	uint8_t admin_pk[SNIPE_PK_BYTES];
	uint32_t read_wait_ms;
	rcds_store *store;
	rcds_consensus *consensus;
	rcds_leader *leader;
	snipe_keyring *keys;
	snipe_verifier *verifier;
	snipe_session_table *sessions;
	struct call *parked;
	struct member_change member;
	int open_handles; /* closed asynchronously before s is freed */
};

/* ----------------------------------------------------------------- replies */

static void send_reply(rcds_server *s, void *control, const Snipe__Reply *r)
{
	sni_rep_reply(s->sock, control, &r->base);
}

static void reply_code(rcds_server *s, void *control, const uint8_t *id, int code,
                       const char *error, uint64_t index)
{
	Snipe__Reply r = SNIPE__REPLY__INIT;
	if (id != NULL)
		r.id = (ProtobufCBinaryData){REQUEST_ID_BYTES, (uint8_t *)id};
	r.code = code;
	r.error = (char *)(error != NULL ? error : (code != SNIPE_OK ? snipe_strerror(code) : ""));
	r.index = index;
	send_reply(s, control, &r);
}

/* ENOTLEADER, with the Raft view of who leads, so the client can look elsewhere. */
static void reply_not_leader(rcds_server *s, void *control, const uint8_t *id)
{
	Snipe__Reply r = SNIPE__REPLY__INIT;
	Snipe__Status st = SNIPE__STATUS__INIT;
	r.id = (ProtobufCBinaryData){REQUEST_ID_BYTES, (uint8_t *)id};
	r.code = SNIPE_ENOTLEADER;
	r.error = (char *)snipe_strerror(SNIPE_ENOTLEADER);
	if (s->consensus != NULL) {
		rcds_consensus_status(s->consensus, &st);
		st.endpoint = s->listen;
		r.status = &st;
	}
	send_reply(s, control, &r);
	rcds_consensus_status_clear(&st);
}

static struct call *call_new(rcds_server *s, void *control, const uint8_t *id)
{
	struct call *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->s = s;
	c->control = control;
	memcpy(c->id, id, REQUEST_ID_BYTES);
	return c;
}

static void call_free(struct call *c)
{
	if (c->req != NULL)
		snipe__request__free_unpacked(c->req, NULL);
	free(c);
}

/* ------------------------------------------------------------------ writes */

/* Checks what the leader must check before proposing: every assertion is well formed,
 * signed by its author, and the author is the requester. Apply re-checks the rest. */
static int check_write(const Snipe__WriteRequest *w, const uint8_t *signer, char *err,
                       size_t errlen)
{
	if (w->n_puts == 0 && w->n_deletes == 0)
		return sni_err(err, errlen, SNIPE_EINVAL, "empty write");
	for (size_t i = 0; i < w->n_puts; i++) {
		const Snipe__Assertion *a = w->puts[i]->assertion;
		if (a == NULL)
			return sni_err(err, errlen, SNIPE_EDECODE, "put %zu has no assertion", i + 1);
		int rc = sni_assertion_check(a->content.data, a->content.len, a->author.data,
		                             a->author.len, a->signature.data, a->signature.len,
		                             true, NULL, err, errlen);
		if (rc != SNIPE_OK)
			return rc;
		if (memcmp(a->author.data, signer, SNIPE_PK_BYTES) != 0)
			return sni_err(err, errlen, SNIPE_EDENIED,
			               "put %zu: the assertion's author is not the requester", i + 1);
	}
	for (size_t i = 0; i < w->n_deletes; i++) {
		const Snipe__DeleteItem *d = w->deletes[i];
		int rc = snipe_urn_validate(d->urn, err, errlen);
		if (rc == SNIPE_OK && d->attr[0] != '\0')
			rc = sni_attr_validate(d->attr, err, errlen);
		if (rc != SNIPE_OK)
			return rc;
	}
	return SNIPE_OK;
}

static void write_done(void *arg, int code, const rcds_result *res)
{
	struct call *c = arg;
	if (code != SNIPE_OK)
		reply_code(c->s, c->control, c->id, code, NULL, 0);
	else
		reply_code(c->s, c->control, c->id, res->code,
		           res->code != SNIPE_OK ? res->reason : NULL, res->index);
	call_free(c);
}

static void do_write(rcds_server *s, void *control, const Snipe__Request *req,
                     const uint8_t *signer)
{
	if (s->consensus == NULL || !rcds_consensus_is_leader(s->consensus)) {
		reply_not_leader(s, control, req->id.data);
		return;
	}
	char err[256];
	int rc = check_write(req->write, signer, err, sizeof(err));
	if (rc != SNIPE_OK) {
		reply_code(s, control, req->id.data, rc, err, 0);
		return;
	}
	Snipe__Command cmd = SNIPE__COMMAND__INIT;
	cmd.request_id = req->id;
	cmd.signer = (ProtobufCBinaryData){SNIPE_PK_BYTES, (uint8_t *)signer};
	cmd.time_ms = snipe_now_ms();
	cmd.write = req->write;
	struct call *c = call_new(s, control, req->id.data);
	rc = c != NULL ? rcds_consensus_propose(s->consensus, &cmd, write_done, c) : SNIPE_ENOMEM;
	if (rc == SNIPE_ENOTLEADER) {
		reply_not_leader(s, control, req->id.data);
	} else if (rc != SNIPE_OK) {
		reply_code(s, control, req->id.data, rc, NULL, 0);
	}
	if (rc != SNIPE_OK)
		free(c);
}

/* ------------------------------------------------------------------- reads */

struct rows {
	Snipe__Assertion **items;
	size_t n, cap;
	char *last_urn, *last_attr;
};

static int collect(void *arg, const rcds_row *row)
{
	struct rows *r = arg;
	if (r->n == r->cap) {
		size_t cap = r->cap ? 2 * r->cap : 16;
		Snipe__Assertion **items = realloc(r->items, cap * sizeof(*items));
		if (items == NULL)
			return SNIPE_ENOMEM;
		r->items = items;
		r->cap = cap;
	}
	/* One block per row: the struct, then content, author and signature bytes. */
	size_t len = sizeof(Snipe__Assertion) + row->content_len + SNIPE_PK_BYTES + SNIPE_SIG_BYTES;
	Snipe__Assertion *a = malloc(len);
	if (a == NULL)
		return SNIPE_ENOMEM;
	snipe__assertion__init(a);
	uint8_t *p = (uint8_t *)(a + 1);
	memcpy(p, row->content, row->content_len);
	a->content = (ProtobufCBinaryData){row->content_len, p};
	p += row->content_len;
	memcpy(p, row->author, SNIPE_PK_BYTES);
	a->author = (ProtobufCBinaryData){SNIPE_PK_BYTES, p};
	p += SNIPE_PK_BYTES;
	memcpy(p, row->signature, SNIPE_SIG_BYTES);
	a->signature = (ProtobufCBinaryData){SNIPE_SIG_BYTES, p};
	a->version = row->version;
	r->items[r->n++] = a;
	free(r->last_urn);
	free(r->last_attr);
	r->last_urn = strdup(row->urn);
	r->last_attr = strdup(row->attr);
	return r->last_urn != NULL && r->last_attr != NULL ? SNIPE_OK : SNIPE_ENOMEM;
}

static void rows_free(struct rows *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->items[i]);
	free(r->items);
	free(r->last_urn);
	free(r->last_attr);
}

static int run_query(rcds_server *s, const Snipe__QueryRequest *q, struct rows *rows,
                     bool *more)
{
	rcds_filter *where = calloc(q->n_where ? q->n_where : 1, sizeof(*where));
	if (where == NULL)
		return SNIPE_ENOMEM;
	for (size_t i = 0; i < q->n_where; i++)
		where[i] = (rcds_filter){q->where[i]->attr, q->where[i]->value.data,
		                         q->where[i]->value.len};
	uint32_t limit = q->limit == 0 ? QUERY_LIMIT_DEFAULT : q->limit;
	rcds_scan query = {.prefix = q->prefix, .where = where, .nwhere = q->n_where,
	                    .after_urn = q->after_urn, .after_attr = q->after_attr,
	                    .limit = limit > QUERY_LIMIT_MAX ? QUERY_LIMIT_MAX : limit};
	int rc = rcds_store_query(s->store, &query, snipe_now_ms(), collect, rows, more);
	free(where);
	return rc;
}

static void serve_read(rcds_server *s, void *control, const Snipe__Request *req)
{
	struct rows rows = {0};
	bool more = false;
	int rc;
	if (req->op_case == SNIPE__REQUEST__OP_GET)
		rc = rcds_store_get(s->store, req->get->urn, snipe_now_ms(), collect, &rows);
	else
		rc = run_query(s, req->query, &rows, &more);
	Snipe__Reply r = SNIPE__REPLY__INIT;
	r.id = req->id;
	r.code = rc;
	r.error = (char *)(rc != SNIPE_OK ? snipe_strerror(rc) : "");
	r.index = rcds_store_applied(s->store);
	if (rc == SNIPE_OK) {
		r.assertions = rows.items;
		r.n_assertions = rows.n;
		if (more) {
			r.next_urn = rows.last_urn;
			r.next_attr = rows.last_attr;
		}
	}
	send_reply(s, control, &r);
	rows_free(&rows);
}

static void park_timer_cb(uv_timer_t *t);

/* Holds a read until this replica has applied min_index, or read_wait_ms pass. */
static void park(rcds_server *s, void *control, Snipe__Request *req, uint64_t min_index)
{
	struct call *c = call_new(s, control, req->id.data);
	if (c == NULL) {
		reply_code(s, control, req->id.data, SNIPE_ENOMEM, NULL, 0);
		snipe__request__free_unpacked(req, NULL);
		return;
	}
	c->req = req;
	c->min_index = min_index;
	c->deadline_ms = uv_now(s->loop) + s->read_wait_ms;
	c->next = s->parked;
	if (s->parked == NULL)
		uv_timer_start(&s->timer, park_timer_cb, 20, 20);
	s->parked = c;
}

/* Answers parked reads that are ready (applied) or due (timed out). */
static void wake_parked(rcds_server *s, bool only_due)
{
	uint64_t applied = rcds_store_applied(s->store), now = uv_now(s->loop);
	for (struct call **pp = &s->parked; *pp != NULL;) {
		struct call *c = *pp;
		bool ready = c->min_index <= applied && !only_due;
		bool due = now >= c->deadline_ms;
		if (!ready && !due) {
			pp = &c->next;
			continue;
		}
		*pp = c->next;
		if (ready)
			serve_read(s, c->control, c->req);
		else
			reply_code(s, c->control, c->id, SNIPE_ETIMEDOUT,
			           "this replica has not yet applied the index asked for", applied);
		call_free(c);
	}
	if (s->parked == NULL)
		uv_timer_stop(&s->timer);
}

static void park_timer_cb(uv_timer_t *t)
{
	wake_parked(t->data, true);
}

/* ------------------------------------------------------------------- watch */

/* One message: urn, a zero byte, the serialised event (see WatchEvent). */
static void publish(rcds_server *s, Snipe__WatchEvent *ev)
{
	size_t ulen = strlen(ev->urn), len = snipe__watch_event__get_packed_size(ev);
	uint8_t *msg = malloc(ulen + 1 + len);
	if (msg == NULL)
		return;
	memcpy(msg, ev->urn, ulen + 1);
	snipe__watch_event__pack(ev, msg + ulen + 1);
	if (nn_send(s->pub, msg, ulen + 1 + len, NN_DONTWAIT) < 0)
		snipe_log(SNIPE_LOG_DEBUG, "watch", "event dropped index=%llu error=%s",
		          (unsigned long long)ev->index, nn_strerror(nn_errno()));
	free(msg);
}

/* Publishes what a successfully applied write changed: each put, then each delete.
 * (index, item) names each change once: the writes of one entry share its index, and
 * their items go on counting from the previous write's. */
static void publish_write(rcds_server *s, uint64_t index, const Snipe__WriteRequest *w)
{
	uint32_t item = index == s->pub_index ? s->pub_item : 0;
	for (size_t i = 0; i < w->n_puts; i++, item++) {
		Snipe__Assertion a = *w->puts[i]->assertion;
		Snipe__AssertionContent *ct = snipe__assertion_content__unpack(NULL, a.content.len,
		                                                               a.content.data);
		if (ct == NULL)
			continue;
		Snipe__WatchEvent ev = SNIPE__WATCH_EVENT__INIT;
		a.version = index;
		ev.index = index;
		ev.item = item;
		ev.urn = ct->urn;
		ev.attr = ct->attr;
		ev.assertion = &a;
		publish(s, &ev);
		snipe__assertion_content__free_unpacked(ct, NULL);
	}
	for (size_t i = 0; i < w->n_deletes; i++, item++) {
		Snipe__WatchEvent ev = SNIPE__WATCH_EVENT__INIT;
		snipe_urn u;
		char urn[SNIPE_URN_MAX];
		/* The store keeps URNs in canonical form: announce them the same way. */
		if (snipe_urn_parse(w->deletes[i]->urn, &u, NULL, 0) != SNIPE_OK ||
		    snipe_urn_format(&u, urn, sizeof(urn)) != SNIPE_OK)
			continue;
		ev.index = index;
		ev.item = item;
		ev.urn = urn;
		ev.attr = w->deletes[i]->attr;
		ev.deleted = true;
		publish(s, &ev);
	}
	s->pub_index = index;
	s->pub_item = item;
}

static void add_key(void *keyring, const uint8_t *pk)
{
	snipe_keyring_add(keyring, pk);
}

void rcds_server_applied(void *server, uint64_t index, const Snipe__Command *cmd,
                         const rcds_result *res)
{
	rcds_server *s = server;
	if (cmd != NULL && cmd->write != NULL && res->code == SNIPE_OK && res->index == index &&
	    s->pub >= 0)
		publish_write(s, index, cmd->write);
	if (s->leader != NULL)
		rcds_leader_applied(s->leader, cmd, res);
	if (res->keys_changed && res->code == SNIPE_OK) {
		snipe_keyring_clear(s->keys);
		snipe_keyring_add(s->keys, s->admin_pk);
		rcds_store_keys(s->store, add_key, s->keys);
	}
	if (s->parked != NULL)
		wake_parked(s, false);
}

/* A leader-only read once the barrier before it is applied. */
static void barrier_read(void *arg, int code)
{
	struct call *c = arg;
	if (code == SNIPE_OK)
		serve_read(c->s, c->control, c->req);
	else
		reply_not_leader(c->s, c->control, c->id);
	call_free(c);
}

/* Leader-only reads wait for a Raft barrier: a leader elected a moment ago may not
 * yet have applied writes its predecessor acknowledged. */
static bool read_from_leader(rcds_server *s, void *control, Snipe__Request *req)
{
	struct call *c = NULL;
	int rc = SNIPE_ENOTLEADER;
	if (s->consensus != NULL && rcds_consensus_read_ready(s->consensus)) {
		serve_read(s, control, req);
		return false;
	}
	if (s->consensus != NULL && rcds_consensus_is_leader(s->consensus)) {
		c = call_new(s, control, req->id.data);
		rc = c != NULL ? rcds_consensus_barrier(s->consensus, barrier_read, c) : SNIPE_ENOMEM;
	}
	if (rc == SNIPE_OK) {
		c->req = req;
		return true;
	}
	free(c);
	if (rc == SNIPE_ENOTLEADER)
		reply_not_leader(s, control, req->id.data);
	else
		reply_code(s, control, req->id.data, rc, NULL, 0);
	return false;
}

/* Serves a read now, hands it to the leader path, or parks it until this replica has
 * applied min_index. Returns true if it kept req (waiting for a barrier or parked). */
static bool do_read(rcds_server *s, void *control, Snipe__Request *req)
{
	bool get = req->op_case == SNIPE__REQUEST__OP_GET;
	uint64_t min_index = get ? req->get->min_index : req->query->min_index;
	bool leader_only = get ? req->get->leader_only : req->query->leader_only;
	if (leader_only)
		return read_from_leader(s, control, req);
	if (min_index > rcds_store_applied(s->store)) {
		park(s, control, req, min_index);
		return true;
	}
	serve_read(s, control, req);
	return false;
}

/* ------------------------------------------------------------------ status */

static void do_status(rcds_server *s, void *control, const Snipe__Request *req)
{
	Snipe__Reply r = SNIPE__REPLY__INIT;
	Snipe__Status st = SNIPE__STATUS__INIT;
	r.id = req->id;
	r.index = rcds_store_applied(s->store);
	if (s->consensus != NULL)
		rcds_consensus_status(s->consensus, &st);
	st.endpoint = s->listen;
	st.watch_endpoint = s->watch != NULL ? s->watch : "";
	r.status = &st;
	send_reply(s, control, &r);
	rcds_consensus_status_clear(&st);
}

/* ------------------------------------------------------ leases, placement */

static bool leading(rcds_server *s, void *control, const Snipe__Request *req)
{
	if (s->leader != NULL && s->consensus != NULL && rcds_consensus_is_leader(s->consensus))
		return true;
	reply_not_leader(s, control, req->id.data);
	return false;
}

/* sent_ms: the envelope's timestamp (the agent's wall clock): a heartbeat taken late
 * is logged, the sign of a leader whose queue outgrows the lease. */
static void do_heartbeat(rcds_server *s, void *control, const Snipe__Request *req,
                         const uint8_t *signer, uint64_t sent_ms)
{
	if (!leading(s, control, req))
		return;
	uint64_t now = snipe_now_ms();
	if (req->heartbeat != NULL && now > sent_ms + req->heartbeat->lease_ms / 4)
		snipe_log(SNIPE_LOG_WARN, "server", "heartbeat from %s taken %" PRIu64 " ms after it "
		          "was sent (lease %u ms)", req->heartbeat->host, now - sent_ms,
		          req->heartbeat->lease_ms);
	Snipe__Reply r = SNIPE__REPLY__INIT;
	Snipe__HeartbeatReply hb;
	char err[256];
	int rc = rcds_leader_heartbeat(s->leader, signer, req->heartbeat, &hb, err, sizeof(err));
	if (rc != SNIPE_OK) {
		snipe_log(SNIPE_LOG_WARN, "server", "heartbeat refused code=%s reason=\"%s\"",
		          snipe_errname(rc), err);
		reply_code(s, control, req->id.data, rc, err, 0);
		return;
	}
	r.id = req->id;
	r.index = rcds_store_applied(s->store);
	r.heartbeat = &hb;
	send_reply(s, control, &r);
	rcds_leader_reply_clear(&hb);
}

static void do_place(rcds_server *s, void *control, const Snipe__Request *req)
{
	if (!leading(s, control, req))
		return;
	Snipe__Reply r = SNIPE__REPLY__INIT;
	Snipe__Placement pl = SNIPE__PLACEMENT__INIT;
	char host[SNIPE_URN_NAME_MAX + 1], address[256], err[256];
	int rc = rcds_leader_place(s->leader, req->place, host, sizeof(host), address,
	                           sizeof(address), err, sizeof(err));
	if (rc != SNIPE_OK) {
		reply_code(s, control, req->id.data, rc, err, 0);
		return;
	}
	pl.host = host;
	pl.address = address;
	r.id = req->id;
	r.index = rcds_store_applied(s->store);
	r.placement = &pl;
	send_reply(s, control, &r);
}

/* -------------------------------------------------------------- membership */

static void member_done(void *arg, int code, const char *reason)
{
	struct call *c = arg;
	struct member_change *mc = &c->s->member;
	mc->call = NULL;
	mc->answered = true;
	memcpy(mc->last_id, c->id, REQUEST_ID_BYTES);
	mc->last_code = code;
	snprintf(mc->last_reason, sizeof(mc->last_reason), "%s", reason);
	reply_code(c->s, c->control, c->id, code, code != SNIPE_OK ? reason : NULL, 0);
	call_free(c);
}

/* Adds or removes a replica: the admin only, on the leader only; answered when the
 * change is committed (or has failed). */
static void do_member(rcds_server *s, void *control, const Snipe__Request *req,
                      const uint8_t *signer)
{
	const Snipe__MemberRequest *m = req->member;
	struct member_change *mc = &s->member;
	if (signer == NULL || memcmp(signer, s->admin_pk, SNIPE_PK_BYTES) != 0) {
		snipe_log(SNIPE_LOG_WARN, "server", "membership change refused id=%llu "
		          "reason=\"the requester is not the admin\"", (unsigned long long)m->id);
		reply_code(s, control, req->id.data, SNIPE_EDENIED,
		           "only the admin may change the catalog's members", 0);
		return;
	}
	if (s->consensus == NULL || !rcds_consensus_is_leader(s->consensus)) {
		reply_not_leader(s, control, req->id.data);
		return;
	}
	if (mc->call != NULL && memcmp(mc->call->id, req->id.data, REQUEST_ID_BYTES) == 0) {
		nn_freemsg(mc->call->control); /* the earlier copy's client has given up on it */
		mc->call->control = control;
		return;
	}
	if (mc->answered && memcmp(mc->last_id, req->id.data, REQUEST_ID_BYTES) == 0) {
		reply_code(s, control, req->id.data, mc->last_code,
		           mc->last_code != SNIPE_OK ? mc->last_reason : NULL, 0);
		return;
	}
	char err[256] = "";
	struct call *c = call_new(s, control, req->id.data);
	int rc = SNIPE_ENOMEM;
	if (c != NULL && m->action == SNIPE__MEMBER_REQUEST__ACTION__ADD)
		rc = rcds_consensus_add(s->consensus, m->id, m->address, member_done, c, err,
		                        sizeof(err));
	else if (c != NULL && m->action == SNIPE__MEMBER_REQUEST__ACTION__REMOVE)
		rc = rcds_consensus_remove(s->consensus, m->id, member_done, c, err, sizeof(err));
	else if (c != NULL)
		rc = sni_err(err, sizeof(err), SNIPE_EINVAL, "unknown membership action %d",
		             (int)m->action);
	if (rc == SNIPE_OK) {
		mc->call = c;
		return;
	}
	free(c);
	if (rc == SNIPE_ENOTLEADER)
		reply_not_leader(s, control, req->id.data);
	else
		reply_code(s, control, req->id.data, rc, err[0] != '\0' ? err : NULL, 0);
}

/* ---------------------------------------------------------------- requests */

/* Answers a signed SESSION_OPEN: the session id and this side's X25519 key. */
static void do_session_open(rcds_server *s, void *control, const snipe_env_msg *m)
{
	Snipe__Reply r = SNIPE__REPLY__INIT;
	Snipe__SessionOpened opened = SNIPE__SESSION_OPENED__INIT;
	uint8_t id[SNIPE_SESSION_ID_BYTES], kx[SNIPE_KX_BYTES];
	char err[128];
	int rc = snipe_session_accept(s->sessions, m, id, kx, err, sizeof(err));
	if (rc != SNIPE_OK) {
		reply_code(s, control, NULL, rc, err, 0);
		return;
	}
	opened.session_id = (ProtobufCBinaryData){sizeof(id), id};
	opened.kx_public = (ProtobufCBinaryData){sizeof(kx), kx};
	opened.ttl_ms = SESSION_TTL_MS;
	r.session = &opened;
	send_reply(s, control, &r);
}

static void handle(rcds_server *s, const uint8_t *buf, size_t len, void *control)
{
	snipe_env_msg m = {0};
	char err[256];
	bool session = snipe_env_is_session(buf, len);
	int rc = session ? snipe_session_open(s->sessions, buf, len, SNIPE_MSG_CATALOG_REQUEST, &m,
	                                      err, sizeof(err))
	                 : snipe_env_open(s->verifier, buf, len, SNIPE_MSG_ANY, &m, err, sizeof(err));
	if (rc == SNIPE_OK && !session && m.type == SNIPE_MSG_SESSION_OPEN) {
		do_session_open(s, control, &m);
		snipe_env_msg_clear(&m);
		return;
	}
	if (rc == SNIPE_OK && m.type != SNIPE_MSG_CATALOG_REQUEST) {
		rc = SNIPE_EWRONGTYPE;
		snprintf(err, sizeof(err), "envelope type %u is not a catalog request", m.type);
		snipe_env_msg_clear(&m);
	}
	if (rc != SNIPE_OK) {
		/* An unknown session is routine (restart, eviction): the client reopens it. */
		snipe_log(rc == SNIPE_ESESSION ? SNIPE_LOG_DEBUG : SNIPE_LOG_WARN, "server",
		          "request rejected code=%s reason=\"%s\"", snipe_errname(rc), err);
		reply_code(s, control, NULL, rc, err, 0);
		return;
	}
	Snipe__Request *req = snipe__request__unpack(NULL, m.body_len, m.body);
	const uint8_t *signer = snipe_keyring_find(s->keys, m.signer);
	uint64_t sent_ms = m.timestamp_ms;
	snipe_env_msg_clear(&m);
	if (req == NULL || req->id.len != REQUEST_ID_BYTES) {
		reply_code(s, control, NULL, SNIPE_EDECODE, "request does not decode or has no id", 0);
		if (req != NULL)
			snipe__request__free_unpacked(req, NULL);
		return;
	}
	switch (req->op_case) {
	case SNIPE__REQUEST__OP_WRITE:
		do_write(s, control, req, signer);
		break;
	case SNIPE__REQUEST__OP_GET:
	case SNIPE__REQUEST__OP_QUERY:
		if (do_read(s, control, req))
			return; /* req is now the parked call's */
		break;
	case SNIPE__REQUEST__OP_STATUS:
		do_status(s, control, req);
		break;
	case SNIPE__REQUEST__OP_MEMBER:
		do_member(s, control, req, signer);
		break;
	case SNIPE__REQUEST__OP_HEARTBEAT:
		do_heartbeat(s, control, req, signer, sent_ms);
		break;
	case SNIPE__REQUEST__OP_PLACE:
		do_place(s, control, req);
		break;
	default:
		reply_code(s, control, req->id.data, SNIPE_EINVAL, "request has no operation", 0);
		break;
	}
	snipe__request__free_unpacked(req, NULL);
}

static void take(void *server, const uint8_t *buf, size_t len, void *control)
{
	handle(server, buf, len, control);
}

static void on_readable(uv_poll_t *h, int status, int events)
{
	rcds_server *s = h->data;
	(void)events;
	if (status >= 0)
		sni_rep_drain(s->sock, RECV_BURST, take, s);
}

/* -------------------------------------------------------------- life cycle */

/* Frees what start acquired; the libuv handles must be closed already (or never
 * initialised). */
static void server_free(rcds_server *s)
{
	if (s->sock >= 0)
		nn_close(s->sock);
	if (s->pub >= 0)
		nn_close(s->pub);
	free(s->watch);
	snipe_verifier_free(s->verifier);
	snipe_session_table_free(s->sessions);
	snipe_keyring_free(s->keys);
	free(s->listen);
	free(s);
}

int rcds_server_start(uv_loop_t *loop, const rcds_server_config *cfg, rcds_store *store,
                      rcds_server **out, char *err, size_t errlen)
{
	rcds_server *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return SNIPE_ENOMEM;
	s->loop = loop;
	s->store = store;
	s->sock = -1;
	s->pub = -1;
	s->read_wait_ms = cfg->read_wait_ms ? cfg->read_wait_ms : 2000;
	memcpy(s->admin_pk, cfg->admin_pk, SNIPE_PK_BYTES);
	int rc = SNIPE_ENOMEM;
	s->listen = strdup(cfg->listen);
	if (s->listen == NULL || snipe_keyring_new(&s->keys) != SNIPE_OK ||
	    snipe_verifier_new(s->keys, cfg->skew_ms ? cfg->skew_ms : SNIPE_SKEW_DEFAULT_MS,
	                       SNIPE_REPLAY_DEFAULT_CAP, &s->verifier) != SNIPE_OK ||
	    snipe_session_table_new(s->keys, SESSION_CAP, SESSION_TTL_MS,
	                            cfg->skew_ms ? cfg->skew_ms : SNIPE_SKEW_DEFAULT_MS,
	                            &s->sessions) != SNIPE_OK)
		goto fail;
	rcds_result reload = {.code = SNIPE_OK, .keys_changed = true};
	rcds_server_applied(s, 0, NULL, &reload);

	s->sock = nn_socket(AF_SP_RAW, NN_REP);
	int fd = -1;
	size_t fdlen = sizeof(fd);
	if (s->sock < 0 || nn_bind(s->sock, cfg->listen) < 0 ||
	    nn_getsockopt(s->sock, NN_SOL_SOCKET, NN_RCVFD, &fd, &fdlen) < 0) {
		rc = sni_err(err, errlen, SNIPE_ECONFIG, "cannot listen on %s: %s", cfg->listen,
		             nn_strerror(nn_errno()));
		goto fail;
	}
	if (cfg->watch != NULL && cfg->watch[0] != '\0') {
		s->watch = strdup(cfg->watch);
		s->pub = nn_socket(AF_SP, NN_PUB);
		if (s->watch == NULL || s->pub < 0 || nn_bind(s->pub, cfg->watch) < 0) {
			rc = sni_err(err, errlen, SNIPE_ECONFIG, "cannot publish on %s: %s", cfg->watch,
			             nn_strerror(nn_errno()));
			goto fail;
		}
	}
	uv_poll_init(loop, &s->poll, fd);
	uv_timer_init(loop, &s->timer);
	s->poll.data = s;
	s->timer.data = s;
	s->open_handles = 2;
	uv_poll_start(&s->poll, UV_READABLE, on_readable);
	*out = s;
	return SNIPE_OK;
fail:
	server_free(s);
	return rc;
}

void rcds_server_attach(rcds_server *s, rcds_consensus *c, rcds_leader *l)
{
	s->consensus = c;
	s->leader = l;
}

static void handle_closed(uv_handle_t *h)
{
	rcds_server *s = h->data;
	if (--s->open_handles == 0)
		server_free(s);
}

void rcds_server_close(rcds_server *s)
{
	s->consensus = NULL;
	s->leader = NULL;
	for (struct call *c = s->parked; c != NULL; c = c->next)
		c->deadline_ms = 0;
	wake_parked(s, true);
	uv_close((uv_handle_t *)&s->poll, handle_closed);
	uv_close((uv_handle_t *)&s->timer, handle_closed);
}
