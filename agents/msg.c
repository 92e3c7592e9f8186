/*
 * msg.c — messages by URN, the agent's side (msg.h, docs/messages.md).
 *
 * Each process this agent runs may ask for a port (AgentRequest MsgPort, signed with
 * its instance key): a nanomsg PAIR socket at an ipc path, where it opens a channel
 * with that key. A message it sends is
 * held until its receiver's route is known (the catalog's record of the receiver: host
 * and epoch), then moved to the outbox of its (sender, stream, receiver) triple; the
 * number of messages taken from the port goes back to the process as its window.
 *
 * An outbox keeps every message from its floor (the receiver needs none at or below
 * it) to the last taken, and sends those above `sent`, at most SEND_WINDOW beyond what
 * the receiver has consumed, to the agent of the receiver's host (or delivers them
 * here). The receiving library acknowledges (received, consumed, durable, or "expect"
 * for a gap or a restart); acks and bounces ("not running here") come back to the
 * outbox. Nothing acknowledged for RTO_MS (doubling to 1 s): send again from `received`;
 * for STALLS_RESET rounds: look the receiver up again and reopen the channel to its
 * agent. A receiver
 * found on another host or at another epoch gets everything above the floor again; its
 * library drops what it already has. An outbox is bounded (--msg-buffer, OUTBOX_BYTES):
 * a full one leaves messages on the port, which stops the sender.
 */
#include <errno.h>
#include <inttypes.h>
#include <nanomsg/nn.h>
#include <nanomsg/pair.h>
#include <nanomsg/pipeline.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "msg.h"

#define SEND_WINDOW 1024          /* sent beyond what the receiver consumed */
#define FRAME_MSGS 512
#define FRAME_BYTES (64u << 10)   /* below malloc's mmap threshold: no page faults per frame */
#define OUTBOX_BYTES (64u << 20)
#define HELD_MAX 1024             /* per port: the library's window is 256 */
#define TELL_EVERY 128            /* messages taken between tellings (half its window) */
#define TICK_MS 50
#define RTO_MS 250
#define STALLS_RESET 3
#define RESOLVE_AGAIN_MS 100
#define BURST 256
#define IDLE_OUTBOX_MS 60000      /* an empty outbox whose sender is gone is forgotten */

struct omsg {
	uint64_t seq;
	uint32_t tag;
	bool gap;                 /* the sender skipped numbers before it */
	size_t len;
	uint8_t data[];
};

enum route_state { ROUTE_NEW, ROUTE_RESOLVING, ROUTE_OK, ROUTE_STALE, ROUTE_FAILED };

struct route {
	char urn[SNIPE_URN_MAX];
	enum route_state st;
	char host[SNIPE_URN_NAME_MAX + 1];
	uint64_t epoch;
	uint64_t first_ms;        /* unresolved since */
	uint64_t again_ms;        /* not resolved again before */
	uint64_t failed_ms;
	int code;
	char error[256];
};

struct outbox {
	char from[SNIPE_URN_MAX];
	uint8_t stream[16];
	struct route *to;
	struct omsg **ring;       /* seq ascending: the messages above floor */
	size_t head, n, cap, cursor; /* cursor: index (from head) of the first above sent */
	uint64_t floor, last, sent, received, consumed;
	size_t bytes;
	uint64_t progress_ms, idle_ms;
	unsigned stalls;
};

struct held {
	struct route *to;
	uint8_t stream[16];
	uint64_t at_ms;
	struct omsg *m;
};

struct port {
	struct msgs *ms;
	char urn[SNIPE_URN_MAX];
	uint64_t epoch;
	uint8_t key_pk[SNIPE_PK_BYTES];
	char path[256];
	int sock;
	uv_poll_t poll;
	sni_chan ch;
	bool ready;
	uint64_t taken, told;
	bool sync;                /* the library waits to hear that all it sent is taken */
	struct held *held;        /* ring of HELD_MAX */
	size_t hhead, hlen;
	Snipe__MsgFail **fails;   /* to tell the process */
	size_t nfails;
};

struct msgs {
	agent *a;
	int pull;
	uv_poll_t poll;
	uv_timer_t tick;
	bool started;
	peers *peers;
	struct port **ports;
	size_t nports, capports;
	struct route **routes;
	size_t nroutes, caproutes;
	struct outbox **obs;
	size_t nobs, capobs;
	unsigned next_port;
	sni_log_limit drops;
	/* the catalog's changes to the records of the processes messages go to (one
	 * subscription per route): a route that changes is looked up again at once,
	 * rather than after bounces or silence */
	rcds_watch *watch;
	uv_poll_t watch_poll;
	bool watch_opening, watch_polling;
	uint64_t watch_again_ms;
};

static void flush(struct msgs *ms);

static struct msgs *msgs_of(agent *a)
{
	return a->msg;
}

/* ------------------------------------------------------------------ routes */

static struct route *route_get(struct msgs *ms, const char *urn)
{
	for (size_t i = 0; i < ms->nroutes; i++)
		if (strcmp(ms->routes[i]->urn, urn) == 0)
			return ms->routes[i];
	if (!sni_grow(&ms->routes, ms->nroutes, &ms->caproutes, sizeof(*ms->routes)))
		return NULL;
	struct route *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return NULL;
	snprintf(r->urn, sizeof(r->urn), "%s", urn);
	r->first_ms = sni_mono_ms();
	ms->routes[ms->nroutes++] = r;
	if (ms->watch != NULL)
		(void)rcds_watch_add(ms->watch, urn); /* only the processes messages go to */
	return r;
}

struct resolve_io {
	agent_io io;
	struct route *r;
	sni_proc rec;
	bool found;
};

static void resolve_work(agent_io *io, rcds_client *c)
{
	struct resolve_io *x = (struct resolve_io *)io;
	rcds_list l = {0};
	io->rc = rcds_get(c, x->r->urn, &l, io->err, sizeof(io->err));
	sni_proc_init(&x->rec, x->r->urn);
	for (size_t i = 0; io->rc == SNIPE_OK && i < l.count; i++)
		sni_proc_set(&x->rec, l.items[i].attr, l.items[i].value, l.items[i].value_len,
		             l.items[i].version, l.items[i].author);
	x->found = io->rc == SNIPE_OK && l.count > 0;
	rcds_list_free(&l);
}

static void outbox_rewind(struct outbox *ob, uint64_t to);
static void fail_route(struct msgs *ms, struct route *r);

static void resolve_done(agent_io *io, rcds_client *c)
{
	struct resolve_io *x = (struct resolve_io *)io;
	struct route *r = x->r;
	struct msgs *ms = msgs_of(io->a);
	(void)c;
	uint64_t now = sni_mono_ms();
	const char *state = x->rec.state;
	if (atomic_load(&io->a->stopping)) {
		/* nothing more happens */
	} else if (io->rc == SNIPE_OK && x->found && sni_proc_state_active(state) &&
	           x->rec.host[0] != '\0') {
		bool moved = r->host[0] != '\0' &&
		             (strcmp(r->host, x->rec.host) != 0 || r->epoch != x->rec.epoch);
		snprintf(r->host, sizeof(r->host), "%s", x->rec.host);
		r->epoch = x->rec.epoch;
		r->st = ROUTE_OK;
		if (moved) {
			snipe_log(SNIPE_LOG_INFO, "msg", "%s is now on %s epoch=%" PRIu64
			          ": sending again what it may lack", r->urn, r->host, r->epoch);
			for (size_t i = 0; i < ms->nobs; i++)
				if (ms->obs[i]->to == r)
					outbox_rewind(ms->obs[i], ms->obs[i]->floor);
		}
	} else if (io->rc == SNIPE_OK && x->found && state[0] != '\0' &&
	           !sni_proc_state_active(state)) {
		r->code = SNIPE_ENOTFOUND;
		snprintf(r->error, sizeof(r->error), "the process has ended (%s)", state);
		fail_route(ms, r);
	} else if (now - r->first_ms >= io->a->cfg->msg_timeout_ms) {
		r->code = SNIPE_ENOTFOUND;
		if (io->rc == SNIPE_OK || io->rc == SNIPE_ENOTFOUND)
			snprintf(r->error, sizeof(r->error), "no such process in the catalog (waited %u ms)",
			         io->a->cfg->msg_timeout_ms);
		else
			snprintf(r->error, sizeof(r->error), "cannot look it up (waited %u ms): %.180s",
			         io->a->cfg->msg_timeout_ms, io->err);
		fail_route(ms, r);
	} else {
		r->st = ROUTE_STALE;
		r->again_ms = now + RESOLVE_AGAIN_MS;
	}
	bool stopping = atomic_load(&io->a->stopping);
	sni_proc_clear(&x->rec);
	free(x);
	if (!stopping)
		flush(ms);
}

/* Resolves r if it must be and may be now; true if it is usable. */
static bool route_ready(struct msgs *ms, struct route *r)
{
	if (r->st == ROUTE_OK)
		return true;
	uint64_t now = sni_mono_ms();
	if (r->st == ROUTE_RESOLVING || r->st == ROUTE_FAILED || (r->st == ROUTE_STALE && now < r->again_ms))
		return false;
	struct resolve_io *x = calloc(1, sizeof(*x));
	if (x == NULL)
		return false;
	x->r = r;
	x->io.work = resolve_work;
	x->io.done = resolve_done;
	r->st = ROUTE_RESOLVING;
	if (agent_io_queue(ms->a, &x->io) != SNIPE_OK) {
		r->st = ROUTE_STALE;
		r->again_ms = now + RESOLVE_AGAIN_MS;
		free(x);
	}
	return false;
}

/* Something says r is no longer where we thought: look again, soon. */
static void route_stale(struct route *r)
{
	if (r->st != ROUTE_OK)
		return;
	r->st = ROUTE_STALE;
	r->first_ms = sni_mono_ms();
	r->again_ms = r->first_ms + RESOLVE_AGAIN_MS;
}

/* ----------------------------------------------------------------- outboxes */

static struct outbox *outbox_find(struct msgs *ms, const char *from, const uint8_t *stream,
                                  const char *to)
{
	for (size_t i = 0; i < ms->nobs; i++) {
		struct outbox *ob = ms->obs[i];
		if (memcmp(ob->stream, stream, 16) == 0 && strcmp(ob->to->urn, to) == 0 &&
		    strcmp(ob->from, from) == 0)
			return ob;
	}
	return NULL;
}

static struct outbox *outbox_get(struct msgs *ms, const char *from, const uint8_t *stream,
                                 struct route *to, uint64_t first_seq)
{
	struct outbox *ob = outbox_find(ms, from, stream, to->urn);
	if (ob != NULL || !sni_grow(&ms->obs, ms->nobs, &ms->capobs, sizeof(*ms->obs)))
		return ob;
	if ((ob = calloc(1, sizeof(*ob))) == NULL)
		return NULL;
	snprintf(ob->from, sizeof(ob->from), "%s", from);
	memcpy(ob->stream, stream, 16);
	ob->to = to;
	/* what came before this agent saw the stream is not ours to send */
	ob->floor = ob->last = ob->sent = ob->received = ob->consumed = first_seq - 1;
	ms->obs[ms->nobs++] = ob;
	return ob;
}

static struct omsg *at(const struct outbox *ob, size_t i)
{
	return ob->ring[(ob->head + i) % ob->cap];
}

static bool outbox_room(const struct msgs *ms, const struct outbox *ob, size_t len)
{
	return ob->n < ms->a->cfg->msg_buffer && ob->bytes + len <= OUTBOX_BYTES;
}

static bool outbox_push(struct outbox *ob, struct omsg *m)
{
	if (ob->n == ob->cap) {
		size_t cap = ob->cap ? 2 * ob->cap : 64;
		struct omsg **ring = malloc(cap * sizeof(*ring));
		if (ring == NULL)
			return false;
		for (size_t i = 0; i < ob->n; i++)
			ring[i] = at(ob, i);
		free(ob->ring);
		ob->ring = ring;
		ob->head = 0;
		ob->cap = cap;
	}
	m->gap = m->seq != ob->last + 1;
	ob->ring[(ob->head + ob->n) % ob->cap] = m;
	ob->n++;
	ob->bytes += m->len;
	ob->last = m->seq;
	ob->idle_ms = 0;
	return true;
}

/* The receiver needs nothing at or below floor any more. */
static void outbox_forget(struct outbox *ob, uint64_t floor)
{
	while (ob->n > 0 && at(ob, 0)->seq <= floor) {
		struct omsg *m = at(ob, 0);
		ob->bytes -= m->len;
		free(m);
		ob->head = (ob->head + 1) % ob->cap;
		ob->n--;
		ob->cursor -= ob->cursor > 0;
	}
	if (floor > ob->floor)
		ob->floor = floor;
	if (floor > ob->last)
		ob->last = floor;
	if (ob->sent < ob->floor)
		ob->sent = ob->floor;
	if (ob->received < ob->floor)
		ob->received = ob->floor;
	if (ob->consumed < ob->floor)
		ob->consumed = ob->floor;
}

/* Sends again from after seq `to` (not below the floor). */
static void outbox_rewind(struct outbox *ob, uint64_t to)
{
	ob->sent = to > ob->floor ? to : ob->floor;
	size_t lo = 0, hi = ob->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (at(ob, mid)->seq <= ob->sent)
			lo = mid + 1;
		else
			hi = mid;
	}
	ob->cursor = lo;
	ob->progress_ms = sni_mono_ms();
}

static void outbox_free(struct msgs *ms, size_t i)
{
	struct outbox *ob = ms->obs[i];
	outbox_forget(ob, UINT64_MAX - 1);
	free(ob->ring);
	free(ob);
	ms->obs[i] = ms->obs[--ms->nobs];
}

/* An acknowledgement from the receiver's library. */
static void outbox_ack(struct outbox *ob, const Snipe__MsgAck *k)
{
	uint64_t before_r = ob->received, before_c = ob->consumed;
	if (k->durable > ob->floor)
		outbox_forget(ob, k->durable);
	if (k->expect > 0) {
		/* a gap, or a receiver that restarted: its word is the truth now */
		ob->received = k->received;
		ob->consumed = k->consumed;
		outbox_rewind(ob, k->expect - 1);
	} else {
		if (k->received > ob->received)
			ob->received = k->received;
		if (k->consumed > ob->consumed)
			ob->consumed = k->consumed;
		if (ob->received > ob->sent)
			outbox_rewind(ob, ob->received < ob->last ? ob->received : ob->last);
	}
	if (ob->received != before_r || ob->consumed != before_c) {
		ob->progress_ms = sni_mono_ms();
		ob->stalls = 0;
	}
}

/* ------------------------------------------------------------------- ports */

static struct port *port_by_urn(struct msgs *ms, const char *urn)
{
	for (size_t i = 0; i < ms->nports; i++)
		if (strcmp(ms->ports[i]->urn, urn) == 0)
			return ms->ports[i];
	return NULL;
}

static void port_send(struct port *p, const Snipe__ChanBody *body)
{
	uint8_t *frame = NULL;
	size_t len = 0;
	if (!p->ready || sni_chan_seal(&p->ch, body, &frame, &len) != SNIPE_OK)
		return;
	/* a process that does not read loses this; its sender's agent sends it again */
	(void)nn_send(p->sock, frame, len, NN_DONTWAIT);
	free(frame);
}

static void port_fail(struct port *p, const struct route *r)
{
	for (size_t i = 0; i < p->nfails; i++)
		if (strcmp(p->fails[i]->to, r->urn) == 0)
			return;
	Snipe__MsgFail **v = realloc(p->fails, (p->nfails + 1) * sizeof(*v));
	Snipe__MsgFail *f = calloc(1, sizeof(*f));
	if (v == NULL || f == NULL) {
		free(f);
		if (v != NULL)
			p->fails = v;
		return;
	}
	p->fails = v;
	snipe__msg_fail__init(f);
	f->to = strdup(r->urn);
	f->code = r->code;
	f->error = strdup(r->error);
	if (f->to == NULL || f->error == NULL) {
		free(f->to);
		free(f->error);
		free(f);
		return;
	}
	p->fails[p->nfails++] = f;
}

/* Tells the process how many of its messages were taken, and what failed: when it
 * waits to know (sync, with nothing held), every TELL_EVERY messages (so a full window
 * opens), and at once on a failure. Fewer frames to the sender, fewer wakeups. */
static void port_tell(struct port *p)
{
	bool waits = p->sync && p->hlen == 0;
	if (p->nfails == 0 && !waits && p->taken - p->told < TELL_EVERY)
		return;
	if (waits)
		p->sync = false;
	Snipe__ChanBody body = SNIPE__CHAN_BODY__INIT;
	body.accepted = p->taken;
	body.fails = p->fails;
	body.n_fails = p->nfails;
	port_send(p, &body);
	p->told = p->taken;
	for (size_t i = 0; i < p->nfails; i++) {
		free(p->fails[i]->to);
		free(p->fails[i]->error);
		free(p->fails[i]);
	}
	free(p->fails);
	p->fails = NULL;
	p->nfails = 0;
}

/* Moves held messages to their outboxes while their routes are known and there is
 * room; the first that cannot move stops the rest (order per sender is kept). */
static void port_advance(struct msgs *ms, struct port *p)
{
	while (p->hlen > 0) {
		struct held *h = &p->held[p->hhead];
		struct route *r = h->to;
		if (r->st == ROUTE_FAILED && h->at_ms > r->failed_ms) {
			r->st = ROUTE_NEW; /* sent after the failure was told: look again */
			r->first_ms = sni_mono_ms();
			r->host[0] = '\0';
		}
		if (r->st == ROUTE_FAILED) {
			port_fail(p, r);
			free(h->m);
		} else {
			if (!route_ready(ms, r))
				break;
			struct outbox *ob = outbox_get(ms, p->urn, h->stream, r, h->m->seq);
			if (ob == NULL || (h->m->seq > ob->last && !outbox_room(ms, ob, h->m->len)))
				break;
			if (h->m->seq <= ob->last || !outbox_push(ob, h->m))
				free(h->m); /* a sender resending from its checkpoint: known already */
		}
		p->hhead = (p->hhead + 1) % HELD_MAX;
		p->hlen--;
		p->taken++;
	}
	port_tell(p);
}

static void fail_route(struct msgs *ms, struct route *r)
{
	snipe_log(SNIPE_LOG_INFO, "msg", "giving up on %s: %s", r->urn, r->error);
	r->st = ROUTE_FAILED;
	r->failed_ms = sni_mono_ms();
	for (size_t i = ms->nobs; i-- > 0;) {
		struct outbox *ob = ms->obs[i];
		if (ob->to != r)
			continue;
		struct port *p = port_by_urn(ms, ob->from);
		if (p != NULL && ob->n > 0)
			port_fail(p, r);
		outbox_free(ms, i);
	}
	for (size_t i = 0; i < ms->nports; i++)
		port_advance(ms, ms->ports[i]);
}

/* -------------------------------------------------------------- acks, bounces */

static void ack_here(struct msgs *ms, const char *host, const Snipe__MsgAck *k)
{
	if (k->stream.len != 16)
		return;
	struct outbox *ob = outbox_find(ms, k->from, k->stream.data, k->to);
	/* only the agent of the receiver's host speaks for it */
	if (ob != NULL && strcmp(ob->to->host, host) == 0)
		outbox_ack(ob, k);
}

static void bounce_here(struct msgs *ms, const char *host, const Snipe__MsgBounce *b)
{
	if (b->stream.len != 16)
		return;
	struct outbox *ob = outbox_find(ms, b->from, b->stream.data, b->to);
	if (ob == NULL || strcmp(ob->to->host, host) != 0)
		return;
	route_stale(ob->to);
	outbox_rewind(ob, ob->received);
}

/* Sends body to host's agent, or takes it here. */
static void deliver(struct msgs *ms, const char *host, const Snipe__ChanBody *body);

static int send_to(struct msgs *ms, const char *host, const Snipe__ChanBody *body)
{
	if (strcmp(host, ms->a->cfg->name) == 0) {
		deliver(ms, host, body);
		return SNIPE_OK;
	}
	return peers_send(ms->peers, host, body);
}

/* The messages in body for processes here go to them; the others bounce. */
static void deliver(struct msgs *ms, const char *host, const Snipe__ChanBody *body)
{
	const char *me = ms->a->cfg->name;
	for (size_t i = 0; i < body->n_acks; i++)
		ack_here(ms, host, body->acks[i]);
	for (size_t i = 0; i < body->n_bounces; i++)
		bounce_here(ms, host, body->bounces[i]);
	if (body->n_msgs == 0)
		return;
	Snipe__Msg **out = calloc(body->n_msgs, sizeof(*out));
	Snipe__MsgBounce *b = calloc(body->n_msgs, sizeof(*b));
	Snipe__MsgBounce **bp = calloc(body->n_msgs, sizeof(*bp));
	bool *done = calloc(body->n_msgs, sizeof(*done));
	size_t nb = 0;
	for (size_t i = 0; out != NULL && b != NULL && bp != NULL && done != NULL &&
	                   i < body->n_msgs; i++) {
		if (done[i])
			continue;
		const Snipe__Msg *g = body->msgs[i];
		if (strcmp(g->origin, host) != 0 || g->stream.len != 16 || g->seq == 0 ||
		    g->data.len > SNIPE_MSG_MAX || strncmp(g->from, SNI_PROC_PREFIX,
		                                           sizeof(SNI_PROC_PREFIX) - 1) != 0) {
			msg_drop(&ms->drops, "dropped a malformed message from %s (origin %s)",
			          host, g->origin);
			continue;
		}
		struct port *p = port_by_urn(ms, g->to);
		if (p == NULL || !p->ready) {
			snipe__msg_bounce__init(&b[nb]);
			b[nb].from = g->from;
			b[nb].stream = g->stream;
			b[nb].to = g->to;
			bp[nb] = &b[nb];
			nb++;
			continue;
		}
		/* every message in this body for the same process, in one frame */
		size_t n = 0;
		for (size_t j = i; j < body->n_msgs; j++)
			if (!done[j] && strcmp(body->msgs[j]->to, g->to) == 0 &&
			    strcmp(body->msgs[j]->origin, host) == 0) {
				out[n++] = body->msgs[j];
				done[j] = true;
			}
		Snipe__ChanBody d = SNIPE__CHAN_BODY__INIT;
		d.msgs = out;
		d.n_msgs = n;
		port_send(p, &d);
	}
	if (nb > 0) {
		Snipe__ChanBody r = SNIPE__CHAN_BODY__INIT;
		r.bounces = bp;
		r.n_bounces = nb;
		if (strcmp(host, me) == 0)
			for (size_t i = 0; i < nb; i++)
				bounce_here(ms, host, bp[i]);
		else
			(void)peers_send(ms->peers, host, &r);
	}
	free(out);
	free(b);
	free(bp);
	free(done);
}

void msg_from_peer(agent *a, const char *host, const Snipe__ChanBody *body)
{
	deliver(msgs_of(a), host, body);
}

/* ------------------------------------------------------------------ sending */

/* Sends what ob may send now: one frame. */
static void outbox_send(struct msgs *ms, struct outbox *ob)
{
	struct route *r = ob->to;
	if (ob->cursor >= ob->n || !route_ready(ms, r))
		return;
	Snipe__Msg *msgs = calloc(FRAME_MSGS, sizeof(*msgs));
	Snipe__Msg **ptrs = calloc(FRAME_MSGS, sizeof(*ptrs));
	if (msgs == NULL || ptrs == NULL) {
		free(msgs);
		free(ptrs);
		return;
	}
	size_t n = 0, bytes = 0;
	for (size_t i = ob->cursor; i < ob->n && n < FRAME_MSGS; i++) {
		struct omsg *m = at(ob, i);
		if (m->seq > ob->consumed + SEND_WINDOW || (n > 0 && bytes + m->len > FRAME_BYTES))
			break;
		Snipe__Msg *g = &msgs[n];
		snipe__msg__init(g);
		g->from = ob->from;
		g->stream = (ProtobufCBinaryData){16, ob->stream};
		g->to = r->urn;
		g->seq = m->seq;
		g->floor = m->gap && m->seq - 1 > ob->floor ? m->seq - 1 : ob->floor;
		g->tag = m->tag;
		g->data = (ProtobufCBinaryData){m->len, m->data};
		g->origin = (char *)ms->a->cfg->name;
		ptrs[n++] = g;
		bytes += m->len;
	}
	if (n > 0) {
		Snipe__ChanBody body = SNIPE__CHAN_BODY__INIT;
		body.msgs = ptrs;
		body.n_msgs = n;
		if (ob->sent == ob->received)
			ob->progress_ms = sni_mono_ms(); /* the clock for an answer starts */
		if (send_to(ms, r->host, &body) == SNIPE_OK) {
			ob->sent = ptrs[n - 1]->seq;
			ob->cursor += n;
		}
	}
	free(msgs);
	free(ptrs);
}

/* Everything that may move now: held messages, then outboxes, until nothing does. */
static void flush(struct msgs *ms)
{
	for (size_t i = 0; i < ms->nports; i++)
		port_advance(ms, ms->ports[i]);
	for (size_t i = 0; i < ms->nobs; i++) {
		struct outbox *ob = ms->obs[i];
		for (int k = 0; k < 64; k++) {
			size_t before = ob->cursor;
			outbox_send(ms, ob);
			if (ob->cursor == before)
				break;
		}
	}
	for (size_t i = 0; i < ms->nports; i++)
		port_advance(ms, ms->ports[i]); /* room the acks made */
}

/* ------------------------------------------------------------------- watch */

struct watch_io {
	agent_io io;
	rcds_watch *w;
};

static void watch_work(agent_io *io, rcds_client *c)
{
	struct watch_io *x = (struct watch_io *)io;
	io->rc = rcds_watch_open(c, RCDS_WATCH_NONE, &x->w, io->err, sizeof(io->err));
}

static void watch_readable(uv_poll_t *h, int status, int events)
{
	struct msgs *ms = h->data;
	(void)status;
	(void)events;
	rcds_event ev;
	for (int k = 0; k < BURST && rcds_watch_next(ms->watch, 0, &ev, NULL, 0) == SNIPE_OK; k++) {
		bool where = ev.deleted || strcmp(ev.attr, "host") == 0 ||
		             strcmp(ev.attr, "epoch") == 0 || strcmp(ev.attr, "state") == 0;
		for (size_t i = 0; where && i < ms->nroutes; i++)
			if (strcmp(ms->routes[i]->urn, ev.urn) == 0)
				route_stale(ms->routes[i]);
		rcds_event_clear(&ev);
	}
	flush(ms);
}

static void watch_done(agent_io *io, rcds_client *c)
{
	struct watch_io *x = (struct watch_io *)io;
	struct msgs *ms = msgs_of(io->a);
	(void)c;
	ms->watch_opening = false;
	if (io->rc != SNIPE_OK || atomic_load(&io->a->stopping) || !ms->started) {
		if (io->rc != SNIPE_OK)
			snipe_log(SNIPE_LOG_WARN, "msg", "cannot watch the catalog (will retry): %s",
			          io->err);
		rcds_watch_close(x->w);
		ms->watch_again_ms = sni_mono_ms() + 1000;
	} else {
		ms->watch = x->w;
		for (size_t i = 0; i < ms->nroutes; i++)
			(void)rcds_watch_add(ms->watch, ms->routes[i]->urn);
		uv_poll_init(io->a->loop, &ms->watch_poll, rcds_watch_fd(ms->watch));
		ms->watch_poll.data = ms;
		uv_poll_start(&ms->watch_poll, UV_READABLE, watch_readable);
		ms->watch_polling = true;
	}
	free(x);
}

static void watch_start(struct msgs *ms)
{
	if (ms->watch != NULL || ms->watch_opening || sni_mono_ms() < ms->watch_again_ms)
		return;
	struct watch_io *x = calloc(1, sizeof(*x));
	if (x == NULL)
		return;
	x->io.work = watch_work;
	x->io.done = watch_done;
	ms->watch_opening = true;
	if (agent_io_queue(ms->a, &x->io) != SNIPE_OK) {
		ms->watch_opening = false;
		free(x);
	}
}

/* ------------------------------------------------------------------- ticks */

static void tick(uv_timer_t *t)
{
	struct msgs *ms = t->data;
	uint64_t now = sni_mono_ms();
	peers_tick(ms->peers);
	/* only once messages go somewhere: nanomsg filters on the subscriber's side, so
	 * a watch costs its agent a receive of every change in the cluster */
	if (ms->nroutes > 0)
		watch_start(ms);
	for (size_t i = ms->nobs; i-- > 0;) {
		struct outbox *ob = ms->obs[i];
		bool waiting = ob->sent > ob->received ||
		               (ob->cursor < ob->n && at(ob, ob->cursor)->seq > ob->consumed + SEND_WINDOW);
		if (ob->n == 0 && port_by_urn(ms, ob->from) == NULL) {
			if (ob->idle_ms == 0)
				ob->idle_ms = now;
			else if (now - ob->idle_ms > IDLE_OUTBOX_MS) {
				outbox_free(ms, i);
				continue;
			}
		}
		uint64_t rto = (uint64_t)RTO_MS << (ob->stalls < 2 ? ob->stalls : 2);
		if (!waiting || ob->to->st != ROUTE_OK || now - ob->progress_ms < rto)
			continue;
		/* no answer: send again from what arrived, or probe with the last one sent */
		ob->stalls++;
		outbox_rewind(ob, ob->sent > ob->received ? ob->received : ob->sent - (ob->sent > ob->floor));
		if (ob->stalls % STALLS_RESET == 0) {
			snipe_log(SNIPE_LOG_INFO, "msg", "no answer from %s for %s: looking again",
			          ob->to->host, ob->to->urn);
			if (strcmp(ob->to->host, ms->a->cfg->name) != 0)
				peers_reset(ms->peers, ob->to->host);
			route_stale(ob->to);
		}
	}
	flush(ms);
}

/* ---------------------------------------------------------------- the ports */

static void port_hello(struct msgs *ms, struct port *p, const Snipe__ChanFrame *f)
{
	agent *a = ms->a;
	snipe_env_msg m = {0};
	char why[256] = "";
	int rc = snipe_env_open(a->proc_verifier, f->hello.data, f->hello.len,
	                        SNIPE_MSG_CHAN_HELLO, &m, why, sizeof(why));
	Snipe__ChanHello *h = NULL;
	if (rc == SNIPE_OK) {
		const uint8_t *pk = snipe_keyring_find(a->proc_keys, m.signer);
		h = snipe__chan_hello__unpack(NULL, m.body_len, m.body);
		if (pk == NULL || memcmp(pk, p->key_pk, SNIPE_PK_BYTES) != 0)
			rc = sni_err(why, sizeof(why), SNIPE_EDENIED, "not the key of %s's instance",
			             p->urn);
		else if (h == NULL || strcmp(h->from, p->urn) != 0)
			rc = sni_err(why, sizeof(why), SNIPE_EDENIED, "hello from '%s' on the port of %s",
			             h != NULL ? h->from : "?", p->urn);
	}
	snipe_env_msg_clear(&m);
	uint8_t *frame = NULL;
	size_t len = 0;
	if (rc == SNIPE_OK) {
		rc = sni_chan_accept(NULL, a->cfg->name, h, &p->ch, &frame, &len);
		snprintf(why, sizeof(why), "unusable key");
	}
	if (rc == SNIPE_OK) {
		p->ready = true;
		p->taken = p->told = 0;
	} else {
		msg_drop(&ms->drops, "dropped hello (%s) on the port of %s", why, p->urn);
		Snipe__ChanHello no = SNIPE__CHAN_HELLO__INIT;
		no.code = rc;
		no.error = why;
		uint8_t body[512];
		size_t n = snipe__chan_hello__get_packed_size(&no) < sizeof(body)
		                   ? snipe__chan_hello__pack(&no, body) : 0;
		Snipe__ChanFrame w = SNIPE__CHAN_FRAME__INIT;
		w.welcome = (ProtobufCBinaryData){n, body};
		len = snipe__chan_frame__get_packed_size(&w);
		frame = malloc(len);
		if (frame != NULL)
			snipe__chan_frame__pack(&w, frame);
	}
	if (frame != NULL)
		(void)nn_send(p->sock, frame, len, NN_DONTWAIT);
	free(frame);
	if (h != NULL)
		snipe__chan_hello__free_unpacked(h, NULL);
}

/* Messages and acknowledgements from the process. */
static void port_body(struct msgs *ms, struct port *p, Snipe__ChanBody *body)
{
	const char *me = ms->a->cfg->name;
	uint64_t now = sni_mono_ms();
	p->sync = p->sync || body->sync;
	for (size_t i = 0; i < body->n_msgs; i++) {
		const Snipe__Msg *g = body->msgs[i];
		snipe_urn u;
		struct omsg *m = NULL;
		struct route *r = NULL;
		if (p->hlen == HELD_MAX || g->stream.len != 16 || g->seq == 0 ||
		    g->data.len > SNIPE_MSG_MAX || snipe_urn_parse(g->to, &u, NULL, 0) != SNIPE_OK ||
		    u.kind != SNIPE_KIND_PROC || (r = route_get(ms, g->to)) == NULL ||
		    (m = malloc(sizeof(*m) + g->data.len)) == NULL) {
			msg_drop(&ms->drops, "dropped a message from %s: %s", p->urn,
			          p->hlen == HELD_MAX ? "beyond its window" : "malformed");
			p->taken++;
			continue;
		}
		m->seq = g->seq;
		m->tag = g->tag;
		m->len = g->data.len;
		if (m->len > 0)
			memcpy(m->data, g->data.data, m->len);
		struct held *h = &p->held[(p->hhead + p->hlen) % HELD_MAX];
		h->to = r;
		memcpy(h->stream, g->stream.data, 16);
		h->at_ms = now;
		h->m = m;
		p->hlen++;
	}
	/* acknowledgements go to the senders' agents (copies naming this process as the
	 * receiver: a process speaks only for itself), one frame per agent */
	if (body->n_acks == 0)
		return;
	Snipe__MsgAck *acks = calloc(body->n_acks, sizeof(*acks));
	Snipe__MsgAck **group = calloc(body->n_acks, sizeof(*group));
	bool *done = calloc(body->n_acks, sizeof(*done));
	for (size_t i = 0; acks != NULL && group != NULL && done != NULL && i < body->n_acks; i++) {
		acks[i] = *body->acks[i];
		acks[i].to = p->urn;
	}
	for (size_t i = 0; acks != NULL && group != NULL && done != NULL && i < body->n_acks; i++) {
		const char *origin = acks[i].origin;
		if (done[i] || origin == NULL || origin[0] == '\0')
			continue;
		size_t n = 0;
		for (size_t j = i; j < body->n_acks; j++)
			if (!done[j] && acks[j].origin != NULL && strcmp(acks[j].origin, origin) == 0) {
				group[n++] = &acks[j];
				done[j] = true;
			}
		Snipe__ChanBody ab = SNIPE__CHAN_BODY__INIT;
		ab.acks = group;
		ab.n_acks = n;
		if (strcmp(origin, me) == 0)
			deliver(ms, me, &ab);
		else
			(void)peers_send(ms->peers, origin, &ab);
	}
	free(acks);
	free(group);
	free(done);
}

static void port_readable(uv_poll_t *h, int status, int events)
{
	struct port *p = h->data;
	struct msgs *ms = p->ms;
	(void)status;
	(void)events;
	for (int k = 0; k < BURST; k++) {
		void *buf = NULL;
		int n = nn_recv(p->sock, &buf, NN_MSG, NN_DONTWAIT);
		if (n < 0)
			break;
		Snipe__ChanFrame *f = snipe__chan_frame__unpack(NULL, (size_t)n, buf);
		nn_freemsg(buf);
		Snipe__ChanBody *body = NULL;
		if (f != NULL && f->hello.len > 0)
			port_hello(ms, p, f);
		else if (f != NULL && p->ready && sni_chan_open(&p->ch, f, &body) == SNIPE_OK) {
			port_body(ms, p, body);
			snipe__chan_body__free_unpacked(body, NULL);
		} else
			msg_drop(&ms->drops, "dropped frame (does not open) on the port of %s",
			          p->urn);
		if (f != NULL)
			snipe__chan_frame__free_unpacked(f, NULL);
	}
	flush(ms);
}

int agent_msg_attach(agent *a, const char *urn, uint64_t epoch, const uint8_t *key_pk,
                     char *endpoint, size_t len)
{
	struct msgs *ms = msgs_of(a);
	struct port *old = port_by_urn(ms, urn);
	if (old != NULL && memcmp(old->key_pk, key_pk, SNIPE_PK_BYTES) == 0) {
		snprintf(endpoint, len, "ipc://%s", old->path); /* opened again: the same port */
		return SNIPE_OK;
	}
	agent_msg_detach(a, urn);
	if (!sni_grow(&ms->ports, ms->nports, &ms->capports, sizeof(*ms->ports)))
		return SNIPE_ENOMEM;
	struct port *p = calloc(1, sizeof(*p));
	if (p == NULL || (p->held = calloc(HELD_MAX, sizeof(*p->held))) == NULL) {
		free(p);
		return SNIPE_ENOMEM;
	}
	p->ms = ms;
	snprintf(p->urn, sizeof(p->urn), "%s", urn);
	p->epoch = epoch;
	memcpy(p->key_pk, key_pk, SNIPE_PK_BYTES);
	int n = snprintf(p->path, sizeof(p->path), "%s/run/m%u.ipc", a->cfg->state, ms->next_port++);
	int fd = -1, max = SNI_FRAME_MAX, sndbuf = 4 << 20;
	size_t sz = sizeof(fd);
	unlink(p->path);
	snprintf(endpoint, len, "ipc://%s", p->path);
	if (n < 0 || (size_t)n >= 108 /* sun_path */)
		goto fail;
	p->sock = nn_socket(AF_SP, NN_PAIR);
	if (p->sock < 0 || nn_setsockopt(p->sock, NN_SOL_SOCKET, NN_RCVMAXSIZE, &max, sizeof(max)) < 0 ||
	    nn_setsockopt(p->sock, NN_SOL_SOCKET, NN_SNDBUF, &sndbuf, sizeof(sndbuf)) < 0 ||
	    nn_bind(p->sock, endpoint) < 0 ||
	    nn_getsockopt(p->sock, NN_SOL_SOCKET, NN_RCVFD, &fd, &sz) < 0)
		goto fail;
	uv_poll_init(a->loop, &p->poll, fd);
	p->poll.data = p;
	uv_poll_start(&p->poll, UV_READABLE, port_readable);
	ms->ports[ms->nports++] = p;
	return SNIPE_OK;
fail:
	snipe_log(SNIPE_LOG_WARN, "msg", "no message port for %s at %s: %s", urn, p->path,
	          n >= 108 ? "path too long" : nn_strerror(nn_errno()));
	if (p->sock >= 0)
		nn_close(p->sock);
	free(p->held);
	free(p);
	endpoint[0] = '\0';
	return SNIPE_EIO;
}

static void port_closed(uv_handle_t *h)
{
	struct port *p = h->data;
	for (size_t i = 0; i < p->hlen; i++)
		free(p->held[(p->hhead + i) % HELD_MAX].m);
	free(p->held);
	port_tell(p); /* frees the failures */
	sodium_memzero(&p->ch, sizeof(p->ch));
	free(p);
}

static void port_close(struct port *p)
{
	p->ready = false;
	nn_close(p->sock);
	unlink(p->path);
	if (!uv_is_closing((uv_handle_t *)&p->poll))
		uv_close((uv_handle_t *)&p->poll, port_closed);
}

void agent_msg_detach(agent *a, const char *urn)
{
	struct msgs *ms = msgs_of(a);
	if (ms == NULL)
		return;
	for (size_t i = 0; i < ms->nports; i++)
		if (strcmp(ms->ports[i]->urn, urn) == 0) {
			port_close(ms->ports[i]);
			ms->ports[i] = ms->ports[--ms->nports];
			return;
		}
}

/* ------------------------------------------------------------ the endpoint */

static void pull_readable(uv_poll_t *h, int status, int events)
{
	struct msgs *ms = h->data;
	(void)status;
	(void)events;
	for (int k = 0; k < BURST; k++) {
		void *buf = NULL;
		int n = nn_recv(ms->pull, &buf, NN_MSG, NN_DONTWAIT);
		if (n < 0)
			break;
		peers_receive(ms->peers, buf, (size_t)n);
		nn_freemsg(buf);
	}
	flush(ms);
}

int agent_msg_start(agent *a, char *err, size_t errlen)
{
	struct msgs *ms = calloc(1, sizeof(*ms));
	if (ms == NULL)
		return SNIPE_ENOMEM;
	a->msg = ms;
	ms->a = a;
	ms->pull = -1;
	int rc = peers_new(a, &ms->peers);
	if (rc != SNIPE_OK)
		return sni_err(err, errlen, rc, "messages: %s", snipe_strerror(rc));
	int fd = -1, max = SNI_FRAME_MAX, rcvbuf = 4 << 20;
	size_t sz = sizeof(fd);
	ms->pull = nn_socket(AF_SP, NN_PULL);
	if (ms->pull < 0 ||
	    nn_setsockopt(ms->pull, NN_SOL_SOCKET, NN_RCVMAXSIZE, &max, sizeof(max)) < 0 ||
	    nn_setsockopt(ms->pull, NN_SOL_SOCKET, NN_RCVBUF, &rcvbuf, sizeof(rcvbuf)) < 0 ||
	    nn_bind(ms->pull, a->cfg->msg_listen) < 0 ||
	    nn_getsockopt(ms->pull, NN_SOL_SOCKET, NN_RCVFD, &fd, &sz) < 0)
		return sni_err(err, errlen, SNIPE_EIO, "cannot listen for messages on %s: %s",
		               a->cfg->msg_listen, nn_strerror(nn_errno()));
	uv_poll_init(a->loop, &ms->poll, fd);
	ms->poll.data = ms;
	uv_poll_start(&ms->poll, UV_READABLE, pull_readable);
	uv_timer_init(a->loop, &ms->tick);
	ms->tick.data = ms;
	uv_timer_start(&ms->tick, tick, TICK_MS, TICK_MS);
	ms->started = true;
	return SNIPE_OK;
}

void agent_msg_close(agent *a)
{
	struct msgs *ms = msgs_of(a);
	if (ms == NULL)
		return;
	while (ms->nports > 0)
		port_close(ms->ports[--ms->nports]);
	if (ms->started) {
		uv_close((uv_handle_t *)&ms->poll, NULL);
		uv_close((uv_handle_t *)&ms->tick, NULL);
		ms->started = false;
	}
	if (ms->watch_polling) {
		uv_close((uv_handle_t *)&ms->watch_poll, NULL);
		ms->watch_polling = false;
	}
}

void agent_msg_free(agent *a)
{
	struct msgs *ms = msgs_of(a);
	if (ms == NULL)
		return;
	if (ms->pull >= 0)
		nn_close(ms->pull);
	rcds_watch_close(ms->watch);
	while (ms->nobs > 0)
		outbox_free(ms, ms->nobs - 1);
	for (size_t i = 0; i < ms->nroutes; i++)
		free(ms->routes[i]);
	free(ms->routes);
	free(ms->obs);
	free(ms->ports);
	peers_free(ms->peers);
	free(ms);
	a->msg = NULL;
}
