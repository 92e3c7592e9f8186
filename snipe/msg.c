/*
 * msg.c — messages by URN, the program's side (snipe.h "messages", msg.proto). One
 * nanomsg PAIR socket to the local agent's port for this process (asked for with a
 * signed MsgPort request), over which a channel (chan.c) is opened with the instance
 * key. Sending numbers each message per receiver and hands it to the
 * agent, within a window of messages the agent has not taken yet. Receiving keeps, per
 * sender, the last seq that arrived in order, the last the program took, and the last
 * it needs no more (durable), drops duplicates, asks for gaps, and tells the sender's
 * agent how far it got.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <nanomsg/nn.h>
#include <nanomsg/pair.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.pb-c.h"
#include "sni.h"

#define WINDOW 256             /* messages handed to the agent and not yet taken */
#define QUEUE_MAX 8192         /* messages arrived and not yet taken by the program */
#define QUEUE_BYTES (64u << 20)
#define ACK_EVERY 64           /* taken messages between acknowledgements */
#define EXPECT_AGAIN_MS 100    /* a gap is asked for at most this often */
#define HELLO_MS 5000
#define SEND_MS 10000          /* a blocked hand-over to the agent */
#define FIRST_MS 120000        /* a first message's answer (the agent's timeout is less) */
#define CLOSE_MS 5000
#define MORE_MSGS 64           /* SNIPE_MORE: messages held back to go in one frame */
#define MORE_BYTES (64u << 10)

struct dest {
	char *urn;
	uint64_t seq;   /* last used */
	bool known;     /* the agent has taken a message to it */
	int fail;       /* the agent gave up on it: returned by the next send */
	char *fail_err;
};

struct source {
	char *urn;
	uint8_t stream[16];
	uint32_t gen;              /* bumped when the sender's stream changes */
	char *origin;              /* the sender's agent */
	uint64_t received, consumed, durable;
	uint64_t acked_received, acked_consumed, acked_durable;
	uint64_t saved;            /* consumed, as of the snapshot being checkpointed */
	uint64_t expect_at_ms;     /* when a gap was last asked for */
	bool ask_gap;              /* the next acknowledgement asks for it */
	bool dirty;                /* an acknowledgement is due */
};

struct queued {
	uint32_t src, gen, tag;
	uint64_t seq;
	uint8_t *data;
	size_t len;
};

struct snipe_ctx {
	int sock;
	snipe_key *key;
	char self[SNIPE_URN_MAX];
	sni_chan ch;
	uint8_t stream[16];
	snipe_ckpt *ck;
	uint64_t sent, accepted;
	struct dest *dests;
	size_t ndests, capdests;
	struct source *srcs;
	size_t nsrcs, capsrcs;
	struct queued *q;          /* ring of QUEUE_MAX */
	size_t qhead, qlen, qbytes;
	Snipe__Msg more[MORE_MSGS];  /* sent with SNIPE_MORE, not yet handed over */
	Snipe__Msg *more_ptrs[MORE_MSGS];
	size_t nmore, more_bytes;
	char from[SNIPE_URN_MAX];  /* the last message's sender, for snipe_recv */
	char err[256];
};

static int fail(snipe_ctx *m, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(snipe_ctx *m, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m->err, sizeof(m->err), fmt, ap);
	va_end(ap);
	return code;
}

const char *snipe_error(const snipe_ctx *m)
{
	return m->err;
}

const char *snipe_self(const snipe_ctx *m)
{
	return m->self;
}

int snipe_fd(snipe_ctx *m)
{
	int fd = -1;
	size_t sz = sizeof(fd);
	if (nn_getsockopt(m->sock, NN_SOL_SOCKET, NN_RCVFD, &fd, &sz) < 0)
		return -1;
	return fd;
}

/* ------------------------------------------------------------------ tables */

static struct dest *dest_find(snipe_ctx *m, const char *urn, bool add)
{
	for (size_t i = 0; i < m->ndests; i++)
		if (strcmp(m->dests[i].urn, urn) == 0)
			return &m->dests[i];
	if (!add || !sni_grow(&m->dests, m->ndests, &m->capdests, sizeof(*m->dests)))
		return NULL;
	struct dest *d = &m->dests[m->ndests];
	memset(d, 0, sizeof(*d));
	if ((d->urn = strdup(urn)) == NULL)
		return NULL;
	m->ndests++;
	return d;
}

static struct source *source_find(snipe_ctx *m, const char *urn, bool add)
{
	for (size_t i = 0; i < m->nsrcs; i++)
		if (strcmp(m->srcs[i].urn, urn) == 0)
			return &m->srcs[i];
	if (!add || !sni_grow(&m->srcs, m->nsrcs, &m->capsrcs, sizeof(*m->srcs)))
		return NULL;
	struct source *s = &m->srcs[m->nsrcs];
	memset(s, 0, sizeof(*s));
	if ((s->urn = strdup(urn)) == NULL)
		return NULL;
	m->nsrcs++;
	return s;
}

/* --------------------------------------------------------------- the wire */

/* Seals and sends body to the agent, with the acknowledgements due (every sender with
 * news rides along: a reply carries the acknowledgement of what it answers). */
static int send_body(snipe_ctx *m, const Snipe__ChanBody *body)
{
	Snipe__ChanBody b = *body;
	Snipe__MsgAck *acks = NULL, **ptrs = NULL;
	size_t n = 0;
	for (size_t i = 0; i < m->nsrcs; i++)
		n += m->srcs[i].dirty;
	if (n > 0 && ((acks = calloc(n, sizeof(*acks))) == NULL ||
	              (ptrs = calloc(n, sizeof(*ptrs))) == NULL))
		n = 0; /* they go with the next frame */
	for (size_t i = 0, k = 0; k < n && i < m->nsrcs; i++) {
		struct source *s = &m->srcs[i];
		if (!s->dirty)
			continue;
		Snipe__MsgAck *a = &acks[k];
		snipe__msg_ack__init(a);
		a->from = s->urn;
		a->stream = (ProtobufCBinaryData){sizeof(s->stream), s->stream};
		a->origin = s->origin != NULL ? s->origin : "";
		a->received = s->received;
		a->consumed = s->consumed;
		a->durable = s->durable;
		a->expect = s->ask_gap ? s->received + 1 : 0;
		ptrs[k++] = a;
	}
	b.acks = ptrs;
	b.n_acks = n;
	uint8_t *frame = NULL;
	size_t len = 0;
	int rc = sni_chan_seal(&m->ch, &b, &frame, &len);
	int sent = rc == SNIPE_OK ? nn_send(m->sock, frame, len, 0) : -1;
	free(frame);
	free(acks);
	free(ptrs);
	if (rc != SNIPE_OK)
		return fail(m, rc, "cannot seal a message: %s", snipe_strerror(rc));
	if (sent < 0)
		return fail(m, SNIPE_EIO, "the agent does not take messages: %s",
		            nn_strerror(nn_errno()));
	for (size_t i = 0; n > 0 && i < m->nsrcs; i++) {
		struct source *s = &m->srcs[i];
		if (!s->dirty)
			continue;
		s->acked_received = s->received;
		s->acked_consumed = s->consumed;
		s->acked_durable = s->durable;
		s->ask_gap = s->dirty = false;
	}
	return SNIPE_OK;
}

/* Sends the acknowledgements due, if any, in a frame of their own. */
static void send_acks(snipe_ctx *m)
{
	bool due = false;
	for (size_t i = 0; !due && i < m->nsrcs; i++)
		due = m->srcs[i].dirty;
	Snipe__ChanBody body = SNIPE__CHAN_BODY__INIT;
	if (due)
		(void)send_body(m, &body);
}

/* Hands over the messages held back by SNIPE_MORE, and sync with them if asked. */
static int send_more(snipe_ctx *m, bool sync)
{
	if (m->nmore == 0 && !sync)
		return SNIPE_OK;
	Snipe__ChanBody body = SNIPE__CHAN_BODY__INIT;
	body.msgs = m->more_ptrs;
	body.n_msgs = m->nmore;
	body.sync = sync;
	int rc = send_body(m, &body);
	for (size_t i = 0; i < m->nmore; i++)
		free(m->more[i].data.data);
	m->nmore = m->more_bytes = 0;
	return rc;
}

/* Whether an acknowledgement cannot wait for the next frame to the agent, or for the
 * program to block in this library: a gap, or a window's worth of news. */
static bool acks_urgent(const snipe_ctx *m)
{
	for (size_t i = 0; i < m->nsrcs; i++) {
		const struct source *s = &m->srcs[i];
		if (s->dirty && (s->ask_gap || s->received - s->acked_received >= ACK_EVERY ||
		                 s->consumed - s->acked_consumed >= ACK_EVERY ||
		                 s->durable - s->acked_durable >= ACK_EVERY))
			return true;
	}
	return false;
}

/* A message from the agent: in order, a duplicate, or after a gap. */
static void take_msg(snipe_ctx *m, const Snipe__Msg *g)
{
	struct source *s = source_find(m, g->from, true);
	if (s == NULL || g->stream.len != sizeof(s->stream))
		return;
	if (s->origin == NULL || strcmp(s->origin, g->origin) != 0) {
		free(s->origin);
		s->origin = strdup(g->origin);
	}
	if (memcmp(s->stream, g->stream.data, sizeof(s->stream)) != 0) {
		/* a new stream: the sender restarted without a checkpoint of its numbers */
		memcpy(s->stream, g->stream.data, sizeof(s->stream));
		s->gen++;
		s->received = s->consumed = s->durable = s->saved = g->floor;
	}
	if (g->floor > s->received) {
		snipe_log(SNIPE_LOG_WARN, "msg",
		          "messages %" PRIu64 "-%" PRIu64 " from %s were acknowledged by an "
		          "earlier checkpoint than the one restored: skipped",
		          s->received + 1, g->floor, s->urn);
		s->received = g->floor;
		if (s->consumed < g->floor)
			s->consumed = s->durable = g->floor;
	}
	s->dirty = true;
	if (g->seq <= s->received)
		return; /* a duplicate: the acknowledgement tells the sender */
	if (g->seq > s->received + 1) {
		uint64_t now = sni_mono_ms();
		if (now - s->expect_at_ms >= EXPECT_AGAIN_MS) {
			s->expect_at_ms = now;
			s->ask_gap = true;
		}
		return;
	}
	if (m->qlen == QUEUE_MAX || m->qbytes + g->data.len > QUEUE_BYTES)
		return; /* full: it comes again */
	uint8_t *data = malloc(g->data.len > 0 ? g->data.len : 1);
	if (data == NULL)
		return;
	if (g->data.len > 0)
		memcpy(data, g->data.data, g->data.len);
	struct queued *e = &m->q[(m->qhead + m->qlen) % QUEUE_MAX];
	*e = (struct queued){(uint32_t)(s - m->srcs), s->gen, g->tag, g->seq, data, g->data.len};
	m->qlen++;
	m->qbytes += g->data.len;
	s->received = g->seq;
}

static void take_fail(snipe_ctx *m, const Snipe__MsgFail *f)
{
	struct dest *d = dest_find(m, f->to, false);
	if (d == NULL)
		return;
	d->fail = f->code < 0 ? f->code : SNIPE_ENOTFOUND;
	d->known = false;
	free(d->fail_err);
	d->fail_err = strdup(f->error);
}

/* Reads one frame, waiting at most timeout_ms: SNIPE_OK, SNIPE_ETIMEDOUT or SNIPE_EIO. */
static int pump(snipe_ctx *m, int timeout_ms)
{
	if (timeout_ms != 0) {
		struct pollfd p = {.fd = snipe_fd(m), .events = POLLIN};
		if (poll(&p, 1, timeout_ms) == 0)
			return SNIPE_ETIMEDOUT;
	}
	void *buf = NULL;
	int n = nn_recv(m->sock, &buf, NN_MSG, NN_DONTWAIT);
	if (n < 0)
		return nn_errno() == EAGAIN ? SNIPE_ETIMEDOUT : SNIPE_EIO;
	Snipe__ChanFrame *f = snipe__chan_frame__unpack(NULL, (size_t)n, buf);
	nn_freemsg(buf);
	Snipe__ChanBody *body = NULL;
	if (f == NULL || sni_chan_open(&m->ch, f, &body) != SNIPE_OK) {
		snipe_log(SNIPE_LOG_WARN, "msg", "dropped a frame from the agent that does not open");
		if (f != NULL)
			snipe__chan_frame__free_unpacked(f, NULL);
		return SNIPE_OK;
	}
	snipe__chan_frame__free_unpacked(f, NULL);
	if (body->accepted > m->accepted && body->accepted <= m->sent)
		m->accepted = body->accepted;
	for (size_t i = 0; i < body->n_fails; i++)
		take_fail(m, body->fails[i]);
	for (size_t i = 0; i < body->n_msgs; i++)
		take_msg(m, body->msgs[i]);
	snipe__chan_body__free_unpacked(body, NULL);
	if (acks_urgent(m))
		send_acks(m);
	return SNIPE_OK;
}

/* Pumps until done(m, arg) or the deadline (monotonic ms; 0: forever). */
static int pump_until(snipe_ctx *m, bool (*done)(snipe_ctx *, const void *), const void *arg,
                      uint64_t deadline)
{
	while (!done(m, arg)) {
		uint64_t now = sni_mono_ms();
		if (deadline != 0 && now >= deadline)
			return SNIPE_ETIMEDOUT;
		int wait = deadline == 0 ? 1000 : (int)(deadline - now);
		if (m->nmore > 0)
			(void)send_more(m, false);
		send_acks(m); /* before blocking: nothing else will carry them */
		int rc = pump(m, wait);
		if (rc == SNIPE_EIO)
			return fail(m, rc, "the agent's socket failed");
	}
	return SNIPE_OK;
}

static uint64_t deadline_of(int timeout_ms)
{
	return timeout_ms < 0 ? 0 : sni_mono_ms() + (uint64_t)timeout_ms;
}

/* ------------------------------------------------------------------ opening */

static void ctx_free(snipe_ctx *m)
{
	if (m->ck != NULL)
		sni_ckpt_bind_msg(m->ck, NULL);
	if (m->sock >= 0)
		nn_close(m->sock);
	for (size_t i = 0; i < m->ndests; i++) {
		free(m->dests[i].urn);
		free(m->dests[i].fail_err);
	}
	for (size_t i = 0; i < m->nsrcs; i++) {
		free(m->srcs[i].urn);
		free(m->srcs[i].origin);
	}
	for (size_t i = 0; i < m->qlen; i++)
		free(m->q[(m->qhead + i) % QUEUE_MAX].data);
	for (size_t i = 0; i < m->nmore; i++)
		free(m->more[i].data.data);
	free(m->dests);
	free(m->srcs);
	free(m->q);
	snipe_key_free(m->key);
	sodium_memzero(&m->ch, sizeof(m->ch));
	free(m);
}

static int restore(snipe_ctx *m, char *err, size_t errlen)
{
	void *buf = NULL;
	size_t len = 0;
	int rc = snipe_ckpt_load_part(m->ck, SNI_MSG_PART, &buf, &len, err, errlen);
	if (rc == SNIPE_ENOTFOUND)
		return SNIPE_OK; /* no checkpoint yet, or saved before messages were used */
	if (rc != SNIPE_OK)
		return rc;
	Snipe__MsgState *st = snipe__msg_state__unpack(NULL, len, buf);
	free(buf);
	if (st == NULL || st->stream.len != sizeof(m->stream)) {
		if (st != NULL)
			snipe__msg_state__free_unpacked(st, NULL);
		return sni_err(err, errlen, SNIPE_EDECODE, "checkpoint part %s is malformed",
		               SNI_MSG_PART);
	}
	memcpy(m->stream, st->stream.data, sizeof(m->stream));
	for (size_t i = 0; i < st->n_sent; i++) {
		struct dest *d = dest_find(m, st->sent[i]->urn, true);
		if (d == NULL) {
			rc = SNIPE_ENOMEM;
			break;
		}
		d->seq = st->sent[i]->seq;
	}
	for (size_t i = 0; rc == SNIPE_OK && i < st->n_received; i++) {
		const Snipe__MsgPos *p = st->received[i];
		struct source *s = source_find(m, p->urn, true);
		if (s == NULL || p->stream.len != sizeof(s->stream)) {
			rc = s == NULL ? SNIPE_ENOMEM : SNIPE_EDECODE;
			break;
		}
		memcpy(s->stream, p->stream.data, sizeof(s->stream));
		s->received = s->consumed = s->durable = s->saved = p->seq;
		s->acked_durable = p->seq;
	}
	snipe__msg_state__free_unpacked(st, NULL);
	return rc != SNIPE_OK ? sni_err(err, errlen, rc, "%s", snipe_strerror(rc)) : SNIPE_OK;
}

static int hello(snipe_ctx *m, const char *endpoint, char *err, size_t errlen)
{
	int ms = HELLO_MS, max = SNI_FRAME_MAX;
	m->sock = nn_socket(AF_SP, NN_PAIR);
	if (m->sock < 0 || nn_setsockopt(m->sock, NN_SOL_SOCKET, NN_RCVMAXSIZE, &max, sizeof(max)) < 0 ||
	    nn_setsockopt(m->sock, NN_SOL_SOCKET, NN_SNDTIMEO, &ms, sizeof(ms)) < 0 ||
	    nn_connect(m->sock, endpoint) < 0)
		return sni_err(err, errlen, SNIPE_EIO, "agent %s: %s", endpoint,
		               nn_strerror(nn_errno()));
	sni_chan_opener h;
	uint8_t *frame = NULL;
	size_t len = 0;
	int rc = sni_chan_hello(m->key, m->self, "", &h, &frame, &len);
	if (rc != SNIPE_OK)
		return sni_err(err, errlen, rc, "hello: %s", snipe_strerror(rc));
	int n = nn_send(m->sock, frame, len, 0);
	free(frame);
	if (n < 0) {
		sodium_memzero(&h, sizeof(h));
		return sni_err(err, errlen, SNIPE_EIO, "agent %s does not answer: %s", endpoint,
		               nn_strerror(nn_errno()));
	}
	ms = SEND_MS;
	nn_setsockopt(m->sock, NN_SOL_SOCKET, NN_SNDTIMEO, &ms, sizeof(ms));
	struct pollfd p = {.fd = snipe_fd(m), .events = POLLIN};
	void *buf = NULL;
	if (poll(&p, 1, HELLO_MS) <= 0 || (n = nn_recv(m->sock, &buf, NN_MSG, NN_DONTWAIT)) < 0) {
		sodium_memzero(&h, sizeof(h));
		return sni_err(err, errlen, SNIPE_ETIMEDOUT, "agent %s did not answer the hello",
		               endpoint);
	}
	Snipe__ChanFrame *f = snipe__chan_frame__unpack(NULL, (size_t)n, buf);
	nn_freemsg(buf);
	Snipe__ChanHello *w = f != NULL ? snipe__chan_hello__unpack(NULL, f->welcome.len,
	                                                            f->welcome.data) : NULL;
	if (w != NULL && w->code != SNIPE_OK)
		rc = sni_err(err, errlen, w->code < 0 ? w->code : SNIPE_EDENIED, "agent refused: %s",
		             w->error);
	else if ((rc = w != NULL ? sni_chan_complete(&h, w, &m->ch) : SNIPE_EDECODE) != SNIPE_OK)
		sni_err(err, errlen, rc, "agent %s answered the hello with a malformed welcome",
		        endpoint);
	sodium_memzero(&h, sizeof(h));
	if (w != NULL)
		snipe__chan_hello__free_unpacked(w, NULL);
	if (f != NULL)
		snipe__chan_frame__free_unpacked(f, NULL);
	return rc;
}

/* Asks the agent for this process's message port: its ipc endpoint into endpoint. */
static int port_of(snipe_ctx *m, const char *agent, char *endpoint, size_t len, char *err,
                   size_t errlen)
{
	Snipe__AgentRequest req = SNIPE__AGENT_REQUEST__INIT;
	Snipe__MsgPort port = SNIPE__MSG_PORT__INIT;
	Snipe__AgentReply *r = NULL;
	req.op_case = SNIPE__AGENT_REQUEST__OP_MSG_PORT;
	req.msg_port = &port;
	int rc = sni_agent_call(m->key, agent, &req, HELLO_MS, &r, err, errlen);
	if (rc == SNIPE_OK && r->code != SNIPE_OK)
		rc = sni_err(err, errlen, r->code < 0 ? r->code : SNIPE_EIO, "agent %s: %s", agent,
		             r->error);
	else if (rc == SNIPE_OK && strncmp(r->endpoint, "ipc://", 6) != 0)
		rc = sni_err(err, errlen, SNIPE_EDECODE, "agent %s gave no message port", agent);
	if (rc == SNIPE_OK)
		snprintf(endpoint, len, "%s", r->endpoint);
	if (r != NULL)
		snipe__agent_reply__free_unpacked(r, NULL);
	return rc;
}

int snipe_open(snipe_ckpt *ck, snipe_ctx **out, char *err, size_t errlen)
{
	int rc = sni_agent_env(err, errlen);
	if (rc != SNIPE_OK)
		return rc;
	snipe_ctx *m = calloc(1, sizeof(*m));
	if (m == NULL || (m->q = calloc(QUEUE_MAX, sizeof(*m->q))) == NULL) {
		free(m);
		return SNIPE_ENOMEM;
	}
	m->sock = -1;
	snprintf(m->self, sizeof(m->self), "%s", getenv("SNIPE_URN"));
	randombytes_buf(m->stream, sizeof(m->stream));
	m->ck = ck;
	rc = snipe_key_load(getenv("SNIPE_PROC_KEY"), &m->key, err, errlen);
	if (rc == SNIPE_OK && ck != NULL)
		rc = restore(m, err, errlen);
	char endpoint[300];
	if (rc == SNIPE_OK)
		rc = port_of(m, getenv("SNIPE_AGENT"), endpoint, sizeof(endpoint), err, errlen);
	if (rc == SNIPE_OK)
		rc = hello(m, endpoint, err, errlen);
	if (rc != SNIPE_OK) {
		m->ck = NULL;
		ctx_free(m);
		return rc;
	}
	if (ck != NULL)
		sni_ckpt_bind_msg(ck, m);
	*out = m;
	return SNIPE_OK;
}

/* ------------------------------------------------------------------ sending */

static bool window_open(snipe_ctx *m, const void *arg)
{
	(void)arg;
	return m->sent - m->accepted < WINDOW;
}

static bool all_taken(snipe_ctx *m, const void *arg)
{
	(void)arg;
	return m->accepted >= m->sent;
}

static bool taken_or_failed(snipe_ctx *m, const void *arg)
{
	const struct dest *d = &m->dests[(size_t)(uintptr_t)arg];
	return m->accepted >= m->sent || d->fail != SNIPE_OK;
}

/* The failure the agent reported for d, once. */
static int dest_failure(snipe_ctx *m, struct dest *d)
{
	int rc = d->fail;
	fail(m, rc, "%s: %s", d->urn, d->fail_err != NULL ? d->fail_err : snipe_strerror(rc));
	d->fail = SNIPE_OK;
	return rc;
}

int snipe_send(snipe_ctx *m, const char *urn, uint32_t tag, const void *buf, size_t len,
               int flags)
{
	snipe_urn u;
	char why[128];
	if (urn == NULL || snipe_urn_parse(urn, &u, why, sizeof(why)) != SNIPE_OK)
		return fail(m, SNIPE_EINVAL, "bad receiver URN: %s", urn == NULL ? "(null)" : why);
	if (u.kind != SNIPE_KIND_PROC)
		return fail(m, SNIPE_EINVAL, "%s is not a process URN", urn);
	if (len > SNIPE_MSG_MAX)
		return fail(m, SNIPE_ETOOBIG, "message of %zu bytes: at most %u", len, SNIPE_MSG_MAX);
	if (len > 0 && buf == NULL)
		return fail(m, SNIPE_EINVAL, "no buffer for %zu bytes", len);
	while (pump(m, 0) == SNIPE_OK)
		; /* what the agent said so far: acknowledgements, failures, messages */
	struct dest *d = dest_find(m, urn, true);
	if (d == NULL)
		return fail(m, SNIPE_ENOMEM, "out of memory");
	if (d->fail != SNIPE_OK)
		return dest_failure(m, d);
	if (!window_open(m, NULL)) {
		int rc = send_more(m, false);
		if (rc != SNIPE_OK)
			return rc;
		if (flags & SNIPE_NONBLOCK)
			return fail(m, SNIPE_EAGAIN, "%u messages wait for the agent", WINDOW);
		rc = pump_until(m, window_open, NULL, 0);
		if (rc != SNIPE_OK)
			return rc;
		d = dest_find(m, urn, false);
	}
	/* held back with the ones before it (SNIPE_MORE), then all go in one frame */
	uint8_t *copy = malloc(len > 0 ? len : 1);
	if (copy == NULL)
		return fail(m, SNIPE_ENOMEM, "out of memory");
	if (len > 0)
		memcpy(copy, buf, len);
	Snipe__Msg *g = &m->more[m->nmore];
	snipe__msg__init(g);
	g->to = d->urn;
	g->stream = (ProtobufCBinaryData){sizeof(m->stream), m->stream};
	g->seq = d->seq + 1;
	g->tag = tag;
	g->data = (ProtobufCBinaryData){len, copy};
	m->more_ptrs[m->nmore++] = g;
	m->more_bytes += len;
	d->seq++;
	m->sent++;
	int rc = SNIPE_OK;
	if (!(flags & SNIPE_MORE) || !d->known || m->nmore == MORE_MSGS ||
	    m->more_bytes >= MORE_BYTES)
		rc = send_more(m, !d->known); /* sync: the agent tells once it has found urn */
	if (rc != SNIPE_OK)
		return rc;
	if (d->known)
		return SNIPE_OK;
	/* the first message to urn: wait until the agent found it, or gave up */
	size_t di = (size_t)(d - m->dests);
	rc = pump_until(m, taken_or_failed, (const void *)(uintptr_t)di, sni_mono_ms() + FIRST_MS);
	d = &m->dests[di];
	if (rc == SNIPE_ETIMEDOUT)
		return fail(m, SNIPE_EIO, "the agent did not take the message to %s", urn);
	if (rc != SNIPE_OK)
		return rc;
	if (d->fail != SNIPE_OK)
		return dest_failure(m, d);
	d->known = true;
	return SNIPE_OK;
}

int snipe_flush(snipe_ctx *m, int timeout_ms)
{
	int rc = all_taken(m, NULL) ? send_more(m, false) : send_more(m, true);
	if (rc == SNIPE_OK)
		rc = pump_until(m, all_taken, NULL, deadline_of(timeout_ms));
	if (rc == SNIPE_ETIMEDOUT)
		return fail(m, rc, "%" PRIu64 " messages still wait for the agent",
		            m->sent - m->accepted);
	for (size_t i = 0; rc == SNIPE_OK && i < m->ndests; i++)
		if (m->dests[i].fail != SNIPE_OK)
			rc = dest_failure(m, &m->dests[i]);
	return rc;
}

void snipe_close(snipe_ctx *m)
{
	if (m == NULL)
		return;
	(void)snipe_flush(m, CLOSE_MS);
	send_acks(m);
	ctx_free(m);
}

/* ---------------------------------------------------------------- receiving */

static bool queued(snipe_ctx *m, const void *arg)
{
	(void)arg;
	return m->qlen > 0;
}

int snipe_recv(snipe_ctx *m, const char **from, uint32_t *tag, void **buf, size_t *len,
               int timeout_ms)
{
	if (m->nmore > 0) {
		int rc = send_more(m, false);
		if (rc != SNIPE_OK)
			return rc;
	}
	while (m->qlen == 0 && pump(m, 0) == SNIPE_OK)
		;
	if (m->qlen == 0 && timeout_ms != 0) {
		int rc = pump_until(m, queued, NULL, deadline_of(timeout_ms));
		if (rc != SNIPE_OK && rc != SNIPE_ETIMEDOUT)
			return rc;
	}
	if (m->qlen == 0)
		return fail(m, SNIPE_ETIMEDOUT, "no message");
	struct queued e = m->q[m->qhead];
	m->qhead = (m->qhead + 1) % QUEUE_MAX;
	m->qlen--;
	m->qbytes -= e.len;
	struct source *s = &m->srcs[e.src];
	if (s->gen == e.gen) {
		s->consumed = e.seq;
		if (m->ck == NULL)
			s->durable = e.seq;
		s->dirty = true; /* told with the next frame, before blocking, or now if urgent */
	}
	snprintf(m->from, sizeof(m->from), "%s", s->urn);
	if (acks_urgent(m))
		send_acks(m);
	*from = m->from;
	*tag = e.tag;
	*buf = e.data;
	*len = e.len;
	return SNIPE_OK;
}

/* -------------------------------------------------------------- checkpoints */

int sni_msg_snapshot(snipe_ctx *m, uint8_t **buf, size_t *len)
{
	(void)send_more(m, false); /* the numbers saved are of messages the agent has */
	Snipe__MsgState st = SNIPE__MSG_STATE__INIT;
	Snipe__MsgPos *pos = calloc(m->ndests + m->nsrcs + 1, sizeof(*pos));
	Snipe__MsgPos **sent = calloc(m->ndests + 1, sizeof(*sent));
	Snipe__MsgPos **recv = calloc(m->nsrcs + 1, sizeof(*recv));
	int rc = SNIPE_ENOMEM;
	if (pos == NULL || sent == NULL || recv == NULL)
		goto out;
	st.stream = (ProtobufCBinaryData){sizeof(m->stream), m->stream};
	Snipe__MsgPos *p = pos;
	for (size_t i = 0; i < m->ndests; i++, p++) {
		snipe__msg_pos__init(p);
		p->urn = m->dests[i].urn;
		p->seq = m->dests[i].seq;
		sent[st.n_sent++] = p;
	}
	for (size_t i = 0; i < m->nsrcs; i++, p++) {
		struct source *s = &m->srcs[i];
		snipe__msg_pos__init(p);
		p->urn = s->urn;
		p->stream = (ProtobufCBinaryData){sizeof(s->stream), s->stream};
		p->seq = s->saved = s->consumed;
		recv[st.n_received++] = p;
	}
	st.sent = sent;
	st.received = recv;
	*len = snipe__msg_state__get_packed_size(&st);
	if ((*buf = malloc(*len > 0 ? *len : 1)) == NULL)
		goto out;
	snipe__msg_state__pack(&st, *buf);
	rc = SNIPE_OK;
out:
	free(pos);
	free(sent);
	free(recv);
	return rc;
}

void sni_msg_committed(snipe_ctx *m)
{
	for (size_t i = 0; i < m->nsrcs; i++) {
		struct source *s = &m->srcs[i];
		if (s->saved > s->durable) {
			s->durable = s->saved;
			s->dirty = true;
		}
	}
	send_acks(m);
}
