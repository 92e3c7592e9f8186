/*
 * peer.c — channels between agents (msg.h). Each agent binds a PULL socket at its
 * --msg-listen endpoint, registered as `msg_address` of its host record beside its
 * `pubkey`; it reaches another agent through a PUSH socket to that agent's endpoint.
 *
 * A channel opens with a hello signed by the opener's host key, checked against the
 * `pubkey` the catalog records for the host it claims to be, and a welcome signed the
 * same way; both carry ephemeral X25519 keys (chan.c). Frames are then sealed in the
 * channel, in both directions. The transport may lose frames (a peer restarting, a
 * full buffer): msg.c resends what was not acknowledged. Each peer keeps its current
 * channel and the one before, so frames in flight when a channel is replaced still open.
 */
#include <inttypes.h>
#include <nanomsg/nn.h>
#include <nanomsg/pipeline.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"

#define HELLO_AGAIN_MS 1000   /* an unanswered hello is sent again */
#define LOOKUP_AGAIN_MS 1000  /* a host the catalog did not know is looked up again */
#define SNDBUF (4 << 20)
#define PEERS_MAX 1024        /* hosts remembered; one the catalog did not know goes first */

enum peer_state { P_UNKNOWN, P_LOOKING, P_KNOWN, P_GONE };

struct peer {
	char name[SNIPE_URN_NAME_MAX + 1];
	enum peer_state st;
	uint64_t looked_ms;
	uint8_t pk[SNIPE_PK_BYTES];
	char endpoint[256];
	int push;
	sni_chan cur, prev;
	bool has_cur, has_prev;
	sni_chan_opener opener;
	bool opening;
	uint64_t hello_ms;
	uint8_t *stash; /* a hello that came before the host was looked up */
	size_t stash_len;
	uint8_t *pending; /* a hello or welcome not sent yet (a socket still connecting) */
	size_t pending_len;
	uint64_t pending_ms;
};

struct peers {
	agent *a;
	struct peer **v;
	size_t n, cap;
	snipe_keyring *keys; /* the host keys of known peers */
	snipe_verifier *verifier;
	sni_log_limit drops;
};

#define drop(p, ...) msg_drop(&(p)->drops, __VA_ARGS__)

int peers_new(agent *a, peers **out)
{
	peers *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return SNIPE_ENOMEM;
	p->a = a;
	if (snipe_keyring_new(&p->keys) != SNIPE_OK ||
	    snipe_verifier_new(p->keys, SNIPE_SKEW_DEFAULT_MS, SNIPE_REPLAY_DEFAULT_CAP,
	                       &p->verifier) != SNIPE_OK) {
		peers_free(p);
		return SNIPE_ENOMEM;
	}
	*out = p;
	return SNIPE_OK;
}

static void peer_free(struct peer *e)
{
	if (e->push >= 0)
		nn_close(e->push);
	free(e->stash);
	free(e->pending);
	sodium_memzero(e, sizeof(*e));
	free(e);
}

void peers_free(peers *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->n; i++)
		peer_free(p->v[i]);
	free(p->v);
	snipe_verifier_free(p->verifier);
	snipe_keyring_free(p->keys);
	free(p);
}

static struct peer *peer_find(peers *p, const char *name, bool add)
{
	for (size_t i = 0; i < p->n; i++)
		if (strcmp(p->v[i]->name, name) == 0)
			return p->v[i];
	if (!add)
		return NULL;
	if (p->n >= PEERS_MAX) {
		/* hellos naming hosts nobody registered must not grow this without bound */
		size_t i = 0;
		while (i < p->n && p->v[i]->st != P_GONE)
			i++;
		if (i == p->n)
			return NULL;
		peer_free(p->v[i]);
		p->v[i] = p->v[--p->n];
	}
	struct peer *e = NULL;
	if (!sni_grow(&p->v, p->n, &p->cap, sizeof(*p->v)) || (e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	snprintf(e->name, sizeof(e->name), "%s", name);
	e->push = -1;
	p->v[p->n++] = e;
	return e;
}

/* ------------------------------------------------------------------ lookup */

struct lookup_io {
	agent_io io;
	peers *p;
	char name[SNIPE_URN_NAME_MAX + 1];
	uint8_t pk[SNIPE_PK_BYTES];
	char endpoint[256];
};

static void lookup_work(agent_io *io, rcds_client *c)
{
	struct lookup_io *x = (struct lookup_io *)io;
	char urn[SNIPE_URN_MAX];
	rcds_list l = {0};
	bool pk = false;
	snprintf(urn, sizeof(urn), SNI_HOST_PREFIX "%s", x->name);
	io->rc = rcds_get(c, urn, &l, io->err, sizeof(io->err));
	for (size_t i = 0; io->rc == SNIPE_OK && i < l.count; i++) {
		const char *v = (const char *)l.items[i].value;
		if (strcmp(l.items[i].attr, "pubkey") == 0)
			pk = snipe_pk_parse(v, x->pk) == SNIPE_OK;
		else if (strcmp(l.items[i].attr, "msg_address") == 0)
			snprintf(x->endpoint, sizeof(x->endpoint), "%s", v);
	}
	rcds_list_free(&l);
	if (io->rc == SNIPE_OK && (!pk || x->endpoint[0] == '\0'))
		io->rc = sni_err(io->err, sizeof(io->err), SNIPE_ENOTFOUND,
		                 "the catalog has no pubkey and msg_address for %s", urn);
}

static void send_hello(peers *p, struct peer *e);
static void handle(peers *p, const uint8_t *buf, size_t len);

static void lookup_done(agent_io *io, rcds_client *c)
{
	struct lookup_io *x = (struct lookup_io *)io;
	peers *p = x->p;
	(void)c;
	struct peer *e = peer_find(p, x->name, false);
	if (e == NULL || atomic_load(&io->a->stopping)) {
		free(x);
		return;
	}
	e->looked_ms = sni_mono_ms();
	int sndbuf = SNDBUF;
	if (io->rc == SNIPE_OK && (e->push < 0 || strcmp(e->endpoint, x->endpoint) != 0)) {
		if (e->push >= 0)
			nn_close(e->push);
		e->push = nn_socket(AF_SP, NN_PUSH);
		if (e->push < 0 ||
		    nn_setsockopt(e->push, NN_SOL_SOCKET, NN_SNDBUF, &sndbuf, sizeof(sndbuf)) < 0 ||
		    nn_connect(e->push, x->endpoint) < 0)
			io->rc = sni_err(io->err, sizeof(io->err), SNIPE_EIO, "cannot reach %s at %s: %s",
			                 x->name, x->endpoint, nn_strerror(nn_errno()));
	}
	if (io->rc != SNIPE_OK) {
		snipe_log(SNIPE_LOG_WARN, "msg", "peer %s unknown: %s", x->name, io->err);
		e->st = P_GONE;
	} else {
		e->st = P_KNOWN;
		memcpy(e->pk, x->pk, sizeof(e->pk));
		snprintf(e->endpoint, sizeof(e->endpoint), "%s", x->endpoint);
		snipe_keyring_add(p->keys, e->pk);
	}
	uint8_t *stash = e->stash;
	size_t stash_len = e->stash_len;
	e->stash = NULL;
	if (stash != NULL) {
		handle(p, stash, stash_len);
		free(stash);
	}
	e = peer_find(p, x->name, false);
	if (e != NULL && e->st == P_KNOWN && !e->has_cur && !e->opening)
		send_hello(p, e);
	free(x);
}

/* Looks e up in the catalog unless it is being or was just looked up. */
static void lookup(peers *p, struct peer *e)
{
	if (e->st == P_LOOKING || (e->st == P_GONE && sni_mono_ms() - e->looked_ms < LOOKUP_AGAIN_MS))
		return;
	struct lookup_io *x = calloc(1, sizeof(*x));
	if (x == NULL)
		return;
	x->p = p;
	snprintf(x->name, sizeof(x->name), "%s", e->name);
	x->io.work = lookup_work;
	x->io.done = lookup_done;
	e->st = P_LOOKING;
	if (agent_io_queue(p->a, &x->io) != SNIPE_OK) {
		e->st = P_GONE;
		free(x);
	}
}

/* ------------------------------------------------------------------ frames */

/* Sealed frames that nanomsg cannot take now are lost (msg.c sends their messages
 * again); a hello or welcome is kept (keep) and tried again by peers_tick, since a
 * socket just connected to a new peer takes nothing for a moment. */
static void send_frame(struct peer *e, const uint8_t *frame, size_t len, bool keep)
{
	if (e->push >= 0 && nn_send(e->push, frame, len, NN_DONTWAIT) >= 0)
		return;
	if (!keep)
		return;
	uint8_t *copy = malloc(len);
	if (copy == NULL)
		return;
	memcpy(copy, frame, len);
	free(e->pending);
	e->pending = copy;
	e->pending_len = len;
	e->pending_ms = sni_mono_ms();
}

static void send_hello(peers *p, struct peer *e)
{
	uint8_t *frame = NULL;
	size_t len = 0;
	if (sni_chan_hello(p->a->key, p->a->cfg->name, e->name, &e->opener, &frame, &len) != SNIPE_OK)
		return;
	e->opening = true;
	e->hello_ms = sni_mono_ms();
	send_frame(e, frame, len, true);
	free(frame);
}

static void take_channel(struct peer *e, const sni_chan *ch)
{
	if (e->has_cur) {
		e->prev = e->cur;
		e->has_prev = true;
	}
	e->cur = *ch;
	e->has_cur = true;
}

/* The ChanHello a hello or welcome envelope claims, before any check: to know which
 * host's key to check it with. NULL if it is not one. */
static Snipe__ChanHello *claimed(const ProtobufCBinaryData *env)
{
	Snipe__Envelope *e = snipe__envelope__unpack(NULL, env->len, env->data);
	Snipe__EnvelopeContent *c = NULL;
	Snipe__ChanHello *h = NULL;
	if (e != NULL && sni_env_decode_content(&e->content, &c, NULL, 0) == SNIPE_OK &&
	    (uint32_t)c->type == SNIPE_MSG_CHAN_HELLO)
		h = snipe__chan_hello__unpack(NULL, c->body.len, c->body.data);
	if (c != NULL)
		snipe__envelope_content__free_unpacked(c, NULL);
	if (e != NULL)
		snipe__envelope__free_unpacked(e, NULL);
	return h;
}

/*
 * Checks a hello or welcome envelope from host e: signed (within the time window, not
 * replayed) by the key the catalog records for e. The checked ChanHello into *out.
 */
static int check_signed(peers *p, struct peer *e, const ProtobufCBinaryData *env,
                        Snipe__ChanHello **out, char *why, size_t whylen)
{
	snipe_env_msg m = {0};
	int rc = snipe_env_open(p->verifier, env->data, env->len, SNIPE_MSG_CHAN_HELLO, &m, why,
	                        whylen);
	if (rc != SNIPE_OK)
		return rc;
	const uint8_t *pk = snipe_keyring_find(p->keys, m.signer);
	if (pk == NULL || memcmp(pk, e->pk, SNIPE_PK_BYTES) != 0) {
		snipe_env_msg_clear(&m);
		return sni_err(why, whylen, SNIPE_EDENIED, "signed by a key that is not host %s's",
		               e->name);
	}
	*out = snipe__chan_hello__unpack(NULL, m.body_len, m.body);
	snipe_env_msg_clear(&m);
	return *out != NULL ? SNIPE_OK : sni_err(why, whylen, SNIPE_EDECODE, "malformed body");
}

/* The peer a hello or welcome claims to be from, checked as far as it can be before
 * the host is known; NULL (dropped, logged) if it cannot be. buf is stashed until the
 * host has been looked up. */
static struct peer *claimant(peers *p, const char *what, const Snipe__ChanHello *h,
                             const uint8_t *buf, size_t len)
{
	snipe_urn u;
	char why[128];
	if (h == NULL)
		return drop(p, "dropped %s (malformed)", what), NULL;
	if (snipe_urn_make(SNIPE_KIND_HOST, h->from, &u, why, sizeof(why)) != SNIPE_OK)
		return drop(p, "dropped %s (bad host name: %s)", what, why), NULL;
	if (strcmp(h->to, p->a->cfg->name) != 0)
		return drop(p, "dropped %s (meant for host '%s', this is %s)", what, h->to,
		            p->a->cfg->name), NULL;
	struct peer *e = peer_find(p, h->from, true);
	if (e == NULL)
		return NULL;
	if (e->st == P_KNOWN)
		return e;
	if (e->st == P_GONE && sni_mono_ms() - e->looked_ms < LOOKUP_AGAIN_MS)
		return drop(p, "dropped %s (host %s is not in the catalog)", what, h->from), NULL;
	/* look it up first, then handle this again */
	free(e->stash);
	e->stash = malloc(len);
	e->stash_len = len;
	if (e->stash != NULL)
		memcpy(e->stash, buf, len);
	lookup(p, e);
	return NULL;
}

static void on_hello(peers *p, const Snipe__ChanFrame *f, const uint8_t *buf, size_t len)
{
	Snipe__ChanHello *h = claimed(&f->hello), *ok = NULL;
	struct peer *e = claimant(p, "hello", h, buf, len);
	char why[256];
	if (e != NULL && check_signed(p, e, &f->hello, &ok, why, sizeof(why)) != SNIPE_OK)
		drop(p, "dropped hello (%s) from %s", why, e->name);
	if (ok != NULL) {
		sni_chan ch;
		uint8_t *frame = NULL;
		size_t flen = 0;
		if (sni_chan_accept(p->a->key, p->a->cfg->name, ok, &ch, &frame, &flen) == SNIPE_OK) {
			take_channel(e, &ch);
			send_frame(e, frame, flen, true);
			free(frame);
			snipe_log(SNIPE_LOG_DEBUG, "msg", "channel from %s opened", e->name);
		} else
			drop(p, "dropped hello (unusable key) from %s", e->name);
		sodium_memzero(&ch, sizeof(ch));
		snipe__chan_hello__free_unpacked(ok, NULL);
	}
	if (h != NULL)
		snipe__chan_hello__free_unpacked(h, NULL);
}

static void on_welcome(peers *p, const Snipe__ChanFrame *f, const uint8_t *buf, size_t len)
{
	Snipe__ChanHello *h = claimed(&f->welcome), *ok = NULL;
	struct peer *e = claimant(p, "welcome", h, buf, len);
	char why[256];
	if (e != NULL && !e->opening)
		drop(p, "dropped welcome (no hello pending) from %s", e->name);
	else if (e != NULL && check_signed(p, e, &f->welcome, &ok, why, sizeof(why)) != SNIPE_OK)
		drop(p, "dropped welcome (%s) from %s", why, e->name);
	if (ok != NULL && (ok->nonce.len != sizeof(e->opener.nonce) ||
	                   sodium_memcmp(ok->nonce.data, e->opener.nonce, sizeof(e->opener.nonce)) != 0)) {
		/* an answer to an earlier hello, late: completing with it would wipe the
		 * secret the answer to the latest one needs */
		drop(p, "dropped welcome (answers an earlier hello) from %s", e->name);
		snipe__chan_hello__free_unpacked(ok, NULL);
		ok = NULL;
	}
	if (ok != NULL) {
		sni_chan ch;
		if (sni_chan_complete(&e->opener, ok, &ch) == SNIPE_OK) {
			take_channel(e, &ch);
			e->opening = false;
			snipe_log(SNIPE_LOG_DEBUG, "msg", "channel to %s opened", e->name);
		} else
			drop(p, "dropped welcome (does not answer our hello) from %s", e->name);
		sodium_memzero(&ch, sizeof(ch));
		snipe__chan_hello__free_unpacked(ok, NULL);
	}
	if (h != NULL)
		snipe__chan_hello__free_unpacked(h, NULL);
}

static void on_sealed(peers *p, const Snipe__ChanFrame *f)
{
	struct peer *e = NULL;
	sni_chan *ch = NULL;
	for (size_t i = 0; ch == NULL && i < p->n; i++) {
		e = p->v[i];
		if (f->id.len != SNI_CHAN_ID_BYTES)
			break;
		if (e->has_cur && memcmp(e->cur.id, f->id.data, SNI_CHAN_ID_BYTES) == 0)
			ch = &e->cur;
		else if (e->has_prev && memcmp(e->prev.id, f->id.data, SNI_CHAN_ID_BYTES) == 0)
			ch = &e->prev;
	}
	if (ch == NULL) {
		drop(p, "dropped frame (unknown channel)");
		return;
	}
	Snipe__ChanBody *body = NULL;
	int rc = sni_chan_open(ch, f, &body);
	if (rc == SNIPE_EREPLAY)
		drop(p, "dropped frame (replayed) from %s counter=%" PRIu64, e->name, f->counter);
	else if (rc == SNIPE_EBADSIG)
		drop(p, "dropped frame (forged) from %s", e->name);
	else if (rc != SNIPE_OK)
		drop(p, "dropped frame (malformed) from %s", e->name);
	else {
		msg_from_peer(p->a, e->name, body);
		snipe__chan_body__free_unpacked(body, NULL);
	}
}

static void handle(peers *p, const uint8_t *buf, size_t len)
{
	Snipe__ChanFrame *f = snipe__chan_frame__unpack(NULL, len, buf);
	if (f == NULL)
		drop(p, "dropped frame (malformed, %zu bytes)", len);
	else if (f->hello.len > 0)
		on_hello(p, f, buf, len);
	else if (f->welcome.len > 0)
		on_welcome(p, f, buf, len);
	else
		on_sealed(p, f);
	if (f != NULL)
		snipe__chan_frame__free_unpacked(f, NULL);
}

void peers_receive(peers *p, const uint8_t *buf, size_t len)
{
	handle(p, buf, len);
}

int peers_send(peers *p, const char *host, const Snipe__ChanBody *body)
{
	struct peer *e = peer_find(p, host, true);
	if (e == NULL)
		return SNIPE_ENOMEM;
	if (e->st != P_KNOWN) {
		lookup(p, e);
		return SNIPE_EAGAIN;
	}
	if (!e->has_cur) {
		if (!e->opening)
			send_hello(p, e);
		return SNIPE_EAGAIN;
	}
	uint8_t *frame = NULL;
	size_t len = 0;
	int rc = sni_chan_seal(&e->cur, body, &frame, &len);
	if (rc == SNIPE_OK)
		send_frame(e, frame, len, false);
	free(frame);
	return rc;
}

void peers_reset(peers *p, const char *host)
{
	struct peer *e = peer_find(p, host, false);
	if (e == NULL || e->st == P_LOOKING)
		return;
	if (e->has_cur) {
		e->prev = e->cur;
		e->has_prev = true;
		e->has_cur = false;
	}
	e->opening = false;
	e->st = P_UNKNOWN; /* it may have come back elsewhere, with another key */
	lookup(p, e);
}

void peers_tick(peers *p)
{
	uint64_t now = sni_mono_ms();
	for (size_t i = 0; i < p->n; i++) {
		struct peer *e = p->v[i];
		if (e->pending != NULL && e->push >= 0 &&
		    (nn_send(e->push, e->pending, e->pending_len, NN_DONTWAIT) >= 0 ||
		     now - e->pending_ms >= HELLO_AGAIN_MS)) {
			free(e->pending);
			e->pending = NULL;
		}
		if (e->opening && e->st == P_KNOWN && now - e->hello_ms >= HELLO_AGAIN_MS)
			send_hello(p, e);
	}
}
