/*
 * transport.c — libraft's TCP transport wrapped with a handshake on each connection
 * (see transport.h). After raft_uv_tcp's own preamble the connecting side sends
 *   "SNRAFT1\0" | timestamp ms (8, big-endian) | nonce (16) | its id (8, big-endian)
 *   | keyed BLAKE2b-256 of all that under the cluster secret (domain "snipe/raft/v1")
 * and waits for one byte; the accepting side checks the MAC, the time window, the
 * nonce (once) and that the id is the one the preamble gave, answers 0x01, and only
 * then hands the stream to libraft. Either side drops a connection that does not
 * complete this within HANDSHAKE_MS.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "sni.h"
#include "transport.h"

#define MAGIC "SNRAFT1"
#define HELLO_MAC_AT (8 + 8 + 16 + 8)
#define HELLO_LEN (HELLO_MAC_AT + 32)
#define HANDSHAKE_MS 2000
#define SKEW_MS 30000
#define NONCES 4096
#define DOMAIN "snipe/raft/v1"
#define WARN_EVERY_MS 5000 /* libraft retries a refused peer every 100 ms */

struct auth;

/* One connection being authenticated. */
struct shake {
	struct auth *a;
	uv_stream_t *stream;   /* libraft's (raft_malloc'd); passed on, or closed */
	uv_timer_t timer;
	uint8_t buf[HELLO_LEN];
	size_t got, want;
	bool accepting;        /* the accepting side; else the connecting side */
	raft_id id;            /* accepting: the peer's id from the preamble */
	char *address;
	struct raft_uv_connect inner_req;  /* connecting: our request to raft_uv_tcp */
	struct raft_uv_connect *outer_req; /* connecting: libraft's request */
	raft_uv_connect_cb outer_cb;
	struct shake *next;
};

struct auth {
	struct raft_uv_transport inner; /* raft_uv_tcp */
	struct raft_uv_transport *outer;
	uint8_t secret[RCDS_SECRET_BYTES];
	raft_id id;
	raft_uv_accept_cb accept_cb;
	raft_uv_transport_close_cb close_cb;
	sni_replay *nonces;
	struct shake *shakes;
	uint64_t last_warn;   /* refusals are logged at most every WARN_EVERY_MS... */
	unsigned unlogged;    /* ...with how many were not */
	bool closing, inner_closed;
};

/* ---------------------------------------------------------------- the hello */

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void hello_mac(const struct auth *a, const uint8_t *hello, uint8_t *mac)
{
	crypto_generichash_state st;
	crypto_generichash_init(&st, a->secret, RCDS_SECRET_BYTES, 32);
	crypto_generichash_update(&st, (const uint8_t *)DOMAIN, sizeof(DOMAIN));
	crypto_generichash_update(&st, hello, HELLO_MAC_AT);
	crypto_generichash_final(&st, mac, 32);
}

static void hello_make(const struct auth *a, uint8_t *hello)
{
	memcpy(hello, MAGIC, 8);
	put_be64(hello + 8, snipe_now_ms());
	randombytes_buf(hello + 16, 16);
	put_be64(hello + 32, a->id);
	hello_mac(a, hello, hello + HELLO_MAC_AT);
}

/* Why a hello is refused, or NULL if it is good (and its nonce is now used). */
static const char *hello_check(struct auth *a, const uint8_t *hello, raft_id id)
{
	uint8_t mac[32];
	hello_mac(a, hello, mac);
	if (memcmp(hello, MAGIC, 8) != 0 || sodium_memcmp(mac, hello + HELLO_MAC_AT, 32) != 0)
		return "not this cluster's secret";
	if (get_be64(hello + 32) != id)
		return "id differs from the connection's";
	uint64_t ts = get_be64(hello + 8), now = snipe_now_ms();
	if ((now > ts ? now - ts : ts - now) > SKEW_MS)
		return "timestamp outside the window";
	if (sni_replay_check(a->nonces, hello + 16, ts) != SNIPE_OK)
		return "replayed";
	sni_replay_add(a->nonces, hello + 16, ts, now > SKEW_MS ? now - SKEW_MS : 0);
	return NULL;
}

/* ------------------------------------------------------- handshake plumbing */

static void maybe_closed(struct auth *a)
{
	if (a->closing && a->inner_closed && a->shakes == NULL && a->close_cb != NULL) {
		raft_uv_transport_close_cb cb = a->close_cb;
		a->close_cb = NULL;
		cb(a->outer);
	}
}

static void unlink_shake(struct shake *s)
{
	for (struct shake **pp = &s->a->shakes; *pp != NULL; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			return;
		}
}

static void shake_freed(uv_handle_t *h)
{
	struct shake *s = h->data;
	struct auth *a = s->a;
	unlink_shake(s);
	free(s->address);
	free(s);
	maybe_closed(a);
}

static void stream_freed(uv_handle_t *h)
{
	raft_free(h);
}

/* Ends a handshake: on success the stream goes to libraft, else it is closed. */
static void finish(struct shake *s, bool ok, const char *why)
{
	uv_timer_stop(&s->timer);
	uv_read_stop(s->stream);
	struct auth *a = s->a;
	uint64_t now = snipe_now_ms();
	if (!ok && why != NULL && now - a->last_warn < WARN_EVERY_MS) {
		a->unlogged++;
	} else if (!ok && why != NULL) {
		snipe_log(SNIPE_LOG_WARN, "raft", "connection %s id=%llu refused: %s (and %u more "
		          "refusals since the last report)", s->accepting ? "from" : "to",
		          (unsigned long long)s->id, why, a->unlogged);
		a->last_warn = now;
		a->unlogged = 0;
	}
	if (ok && !a->closing) {
		if (s->accepting)
			a->accept_cb(a->outer, s->id, s->address, s->stream);
		else
			s->outer_cb(s->outer_req, s->stream, 0);
	} else {
		uv_close((uv_handle_t *)s->stream, stream_freed);
		if (!s->accepting)
			s->outer_cb(s->outer_req, NULL, a->closing ? RAFT_CANCELED : RAFT_NOCONNECTION);
	}
	s->stream = NULL;
	uv_close((uv_handle_t *)&s->timer, shake_freed);
}

static void timed_out(uv_timer_t *t)
{
	finish(t->data, false, "no handshake in time");
}

/* A write that owns its bytes, so it may outlive the handshake (libuv calls back even
 * when the stream is closed under it). */
struct owned_write {
	uv_write_t req;
	uint8_t bytes[HELLO_LEN];
};

static void owned_written(uv_write_t *w, int status)
{
	(void)status; /* a failure shows as the peer closing or not answering */
	free(w->data);
}

static int send_bytes(uv_stream_t *stream, const uint8_t *bytes, size_t len)
{
	struct owned_write *w = malloc(sizeof(*w));
	if (w == NULL)
		return UV_ENOMEM;
	memcpy(w->bytes, bytes, len);
	w->req.data = w;
	uv_buf_t b = uv_buf_init((char *)w->bytes, (unsigned)len);
	int rc = uv_write(&w->req, stream, &b, 1, owned_written);
	if (rc != 0)
		free(w);
	return rc;
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct shake *s = h->data;
	(void)hint;
	*buf = uv_buf_init((char *)s->buf + s->got, (unsigned)(s->want - s->got));
}

static void read_cb(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf)
{
	struct shake *s = stream->data;
	(void)buf;
	if (n < 0) {
		finish(s, false, "closed during the handshake");
		return;
	}
	s->got += (size_t)n;
	if (s->got < s->want)
		return;
	if (!s->accepting) {
		finish(s, s->buf[0] == 1, "refused by the peer");
		return;
	}
	const char *why = hello_check(s->a, s->buf, s->id);
	if (why != NULL) {
		finish(s, false, why);
		return;
	}
	static const uint8_t ack = 1;
	finish(s, send_bytes(stream, &ack, 1) == 0, "cannot answer");
}

/* Starts a handshake on stream; false if it could not even start (stream closed). */
static bool shake_start(struct auth *a, struct shake *s, uv_stream_t *stream)
{
	s->a = a;
	s->stream = stream;
	stream->data = s;
	/* raft_uv_tcp leaves Nagle on: an AppendEntries then waits for the ack of the one
	 * before it, which the follower sends only with its reply, after its disk write. */
	if (stream->type == UV_TCP)
		uv_tcp_nodelay((uv_tcp_t *)stream, 1);
	uv_timer_init(stream->loop, &s->timer);
	s->timer.data = s;
	s->next = a->shakes;
	a->shakes = s;
	uv_timer_start(&s->timer, timed_out, HANDSHAKE_MS, 0);
	s->want = s->accepting ? HELLO_LEN : 1;
	if (!s->accepting) {
		uint8_t hello[HELLO_LEN];
		hello_make(a, hello);
		if (send_bytes(stream, hello, HELLO_LEN) != 0) {
			finish(s, false, "cannot send the handshake");
			return false;
		}
	}
	if (uv_read_start(stream, alloc_cb, read_cb) != 0) {
		finish(s, false, "cannot read");
		return false;
	}
	return true;
}

/* --------------------------------------------------------- the transport */

static void inner_accept(struct raft_uv_transport *inner, raft_id id, const char *address,
                         uv_stream_t *stream)
{
	struct auth *a = inner->data;
	struct shake *s = calloc(1, sizeof(*s));
	if (s == NULL || (s->address = strdup(address)) == NULL || a->closing) {
		free(s != NULL ? s->address : NULL);
		free(s);
		uv_close((uv_handle_t *)stream, stream_freed);
		return;
	}
	s->accepting = true;
	s->id = id;
	shake_start(a, s, stream);
}

static void inner_connected(struct raft_uv_connect *req, uv_stream_t *stream, int status)
{
	struct shake *s = req->data;
	if (status != 0 || s->a->closing) {
		if (stream != NULL)
			uv_close((uv_handle_t *)stream, stream_freed);
		s->outer_cb(s->outer_req, NULL, status != 0 ? status : RAFT_CANCELED);
		struct auth *a = s->a;
		free(s);
		maybe_closed(a);
		return;
	}
	shake_start(s->a, s, stream);
}

static int t_init(struct raft_uv_transport *t, raft_id id, const char *address)
{
	struct auth *a = t->impl;
	a->id = id;
	return a->inner.init(&a->inner, id, address);
}

static int t_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
	struct auth *a = t->impl;
	a->accept_cb = cb;
	return a->inner.listen(&a->inner, inner_accept);
}

static int t_connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                     const char *address, raft_uv_connect_cb cb)
{
	struct auth *a = t->impl;
	struct shake *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return RAFT_NOMEM;
	s->a = a;
	s->id = id;
	s->outer_req = req;
	s->outer_cb = cb;
	s->inner_req.data = s;
	int rv = a->inner.connect(&a->inner, &s->inner_req, id, address, inner_connected);
	if (rv != 0)
		free(s);
	return rv;
}

static void inner_closed(struct raft_uv_transport *inner)
{
	struct auth *a = inner->data;
	a->inner_closed = true;
	maybe_closed(a);
}

static void t_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
	struct auth *a = t->impl;
	a->closing = true;
	a->close_cb = cb;
	for (struct shake *s = a->shakes; s != NULL; s = s->next)
		if (s->stream != NULL)
			finish(s, false, NULL);
	a->inner.close(&a->inner, inner_closed);
}

int rcds_transport_init(struct raft_uv_transport *t, uv_loop_t *loop,
                        const uint8_t secret[RCDS_SECRET_BYTES])
{
	struct auth *a = calloc(1, sizeof(*a));
	if (a == NULL || sni_replay_new(NONCES, &a->nonces) != SNIPE_OK) {
		free(a);
		return RAFT_NOMEM;
	}
	int rv = raft_uv_tcp_init(&a->inner, loop);
	if (rv != 0) {
		sni_replay_free(a->nonces);
		free(a);
		return rv;
	}
	a->inner.data = a;
	a->outer = t;
	memcpy(a->secret, secret, RCDS_SECRET_BYTES);
	t->impl = a;
	t->init = t_init;
	t->listen = t_listen;
	t->connect = t_connect;
	t->close = t_close;
	return 0;
}

void rcds_transport_close(struct raft_uv_transport *t)
{
	struct auth *a = t->impl;
	raft_uv_tcp_close(&a->inner);
	sni_replay_free(a->nonces);
	sodium_memzero(a->secret, sizeof(a->secret));
	free(a);
}
