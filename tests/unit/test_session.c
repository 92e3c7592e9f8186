/*
 * test_session.c — sessions: the signed SESSION_OPEN handshake, MACed session envelopes
 * and their wire format (checked against bare libsodium on both sides), counters
 * against replay, the exact code for every tampered field, revocation through the
 * keyring, the bounded table (LRU and TTL), the skew window, and malformed or random
 * input never opening.
 *
 * The table has no clock hook, so the time-dependent tests use the wall clock with
 * wide margins, and short sleeps where an order in time must be unambiguous.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "envelope.pb-c.h"
#include "snipe.h"
#include "testutil.h"

/* The wire contract, spelled out here rather than taken from the library. */
#define SESSION_DOMAIN "snipe/session/v1"
#define MAC_BYTES 32
/* A real message type other than the NOTE the tests seal. */
#define OTHER_TYPE ((uint32_t)SNIPE_MSG_CATALOG_REQUEST)
/* Table settings for tests that do not exercise them: room, no expiry, default skew. */
#define CAP 8
#define TTL_LONG 600000u
#define SKEW SNIPE_SKEW_DEFAULT_MS

/* ------------------------------------------------------------------ fixture */

/* ka and kb are in the keyring kr; kc is not. v opens SESSION_OPEN envelopes on kr. */
static snipe_key *ka, *kb, *kc;
static snipe_keyring *kr;
static snipe_verifier *v;

static void setup(void)
{
	ck_assert_int_eq(snipe_key_generate(&ka), SNIPE_OK);
	ck_assert_int_eq(snipe_key_generate(&kb), SNIPE_OK);
	ck_assert_int_eq(snipe_key_generate(&kc), SNIPE_OK);
	ck_assert_int_eq(snipe_keyring_new(&kr), SNIPE_OK);
	ck_assert_int_eq(snipe_keyring_add(kr, snipe_key_public(ka)), SNIPE_OK);
	ck_assert_int_eq(snipe_keyring_add(kr, snipe_key_public(kb)), SNIPE_OK);
	ck_assert_int_eq(snipe_verifier_new(kr, SNIPE_SKEW_DEFAULT_MS, 1024, &v), SNIPE_OK);
}

static void teardown(void)
{
	snipe_verifier_free(v);
	snipe_keyring_free(kr);
	snipe_key_free(ka);
	snipe_key_free(kb);
	snipe_key_free(kc);
	v = NULL;
	kr = NULL;
	ka = kb = kc = NULL;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0)
		;
}

static snipe_session_table *table(size_t cap, uint32_t ttl_ms, uint32_t skew_ms)
{
	snipe_session_table *t = NULL;

	tu_assert_code(snipe_session_table_new(kr, cap, ttl_ms, skew_ms, &t), SNIPE_OK);
	ck_assert_ptr_nonnull(t);
	ck_assert_uint_eq(snipe_session_count(t), 0);
	return t;
}

static void keyid_of(const snipe_key *k, uint8_t id[SNIPE_KEYID_BYTES])
{
	snipe_keyid(snipe_key_public(k), id);
}

/* ------------------------------------------------------------ envelopes */

/* A serialised envelope, malloc'd. */
struct env {
	uint8_t *buf;
	size_t len;
};

static void env_free(struct env *e)
{
	free(e->buf);
	e->buf = NULL;
	e->len = 0;
}

/* A signed envelope from k. */
static struct env signed_env(const snipe_key *k, uint32_t type, const void *body, size_t len)
{
	struct env e = { NULL, 0 };

	tu_assert_code(snipe_env_seal(k, type, body, len, &e.buf, &e.len), SNIPE_OK);
	ck_assert_ptr_nonnull(e.buf);
	return e;
}

/* Opens a SESSION_OPEN envelope with the fixture's verifier; clear m afterwards. */
static void open_signed(const struct env *e, snipe_env_msg *m)
{
	memset(m, 0, sizeof(*m));
	tu_assert_code(snipe_env_open(v, e->buf, e->len, SNIPE_MSG_SESSION_OPEN, m, NULL, 0),
	               SNIPE_OK);
	ck_assert_uint_eq(m->type, SNIPE_MSG_SESSION_OPEN);
}

/* The library's opener, after a complete handshake with a table. */
struct peer {
	snipe_session *s;
	uint8_t id[SNIPE_SESSION_ID_BYTES];
};

static struct peer handshake(snipe_session_table *t, const snipe_key *k)
{
	struct peer p = { NULL, { 0 } };
	struct env e = { NULL, 0 };
	uint8_t kx[SNIPE_KX_BYTES];
	snipe_env_msg m;

	tu_assert_code(snipe_session_begin(k, &p.s, &e.buf, &e.len), SNIPE_OK);
	open_signed(&e, &m);
	tu_assert_code(snipe_session_accept(t, &m, p.id, kx, NULL, 0), SNIPE_OK);
	tu_assert_code(snipe_session_complete(p.s, p.id, sizeof(p.id), kx, sizeof(kx)),
	               SNIPE_OK);
	ck_assert(snipe_session_ready(p.s));
	snipe_env_msg_clear(&m);
	env_free(&e);
	return p;
}

static void peer_free(struct peer *p)
{
	snipe_session_free(p->s);
	p->s = NULL;
}

static struct env session_seal(struct peer *p, uint32_t type, const void *body, size_t len)
{
	struct env e = { NULL, 0 };

	tu_assert_code(snipe_session_seal(p->s, type, body, len, &e.buf, &e.len), SNIPE_OK);
	ck_assert_ptr_nonnull(e.buf);
	ck_assert_uint_gt(e.len, 0);
	return e;
}

static struct env note(struct peer *p)
{
	return session_seal(p, SNIPE_MSG_NOTE, "note", 4);
}

/* Opens an exact-size copy of buf in t, releases the message on success, returns the
 * code. */
static int try_open(snipe_session_table *t, const uint8_t *buf, size_t len, uint32_t type)
{
	uint8_t *copy = tu_copy(buf, len);
	snipe_env_msg m;
	char err[256];
	int rc;

	memset(&m, 0, sizeof(m));
	rc = snipe_session_open(t, copy, len, type, &m, err, sizeof(err));
	if (rc == SNIPE_OK)
		snipe_env_msg_clear(&m);
	free(copy);
	return rc;
}

/* Seals a fresh NOTE in p's session and opens it in t. */
static int round_trip(snipe_session_table *t, struct peer *p)
{
	struct env e = note(p);
	int rc = try_open(t, e.buf, e.len, SNIPE_MSG_NOTE);

	env_free(&e);
	return rc;
}

/* --------------------------------------------------- protobuf-level access */

/* An envelope decoded with protobuf-c; free with unpacked_free. */
struct unpacked {
	Snipe__Envelope *env;
	Snipe__EnvelopeContent *c;
};

static struct unpacked unpack(const struct env *e)
{
	struct unpacked u;

	u.env = snipe__envelope__unpack(NULL, e->len, e->buf);
	ck_assert_ptr_nonnull(u.env);
	u.c = snipe__envelope_content__unpack(NULL, u.env->content.len, u.env->content.data);
	ck_assert_ptr_nonnull(u.c);
	return u;
}

static void unpacked_free(struct unpacked *u)
{
	snipe__envelope_content__free_unpacked(u->c, NULL);
	snipe__envelope__free_unpacked(u->env, NULL);
}

/* A session envelope from its parts, any lengths. */
static struct env pack_env(const uint8_t *content, size_t clen, const uint8_t *id,
                           size_t idlen, const uint8_t *mac, size_t maclen)
{
	Snipe__Envelope m = SNIPE__ENVELOPE__INIT;
	struct env e;

	m.content.data = (uint8_t *)content;
	m.content.len = clen;
	m.session_id.data = (uint8_t *)id;
	m.session_id.len = idlen;
	m.mac.data = (uint8_t *)mac;
	m.mac.len = maclen;
	e.len = snipe__envelope__get_packed_size(&m);
	e.buf = malloc(e.len ? e.len : 1);
	ck_assert_ptr_nonnull(e.buf);
	ck_assert_uint_eq(snipe__envelope__pack(&m, e.buf), e.len);
	return e;
}

/* e with its session id and MAC replaced (same content). */
static struct env repack(const struct env *e, const uint8_t *id, const uint8_t *mac)
{
	struct unpacked u = unpack(e);
	struct env out;

	out = pack_env(u.env->content.data, u.env->content.len,
	               id ? id : u.env->session_id.data, u.env->session_id.len,
	               mac ? mac : u.env->mac.data, u.env->mac.len);
	unpacked_free(&u);
	return out;
}

static uint8_t *pack_content(const Snipe__EnvelopeContent *c, size_t *len)
{
	uint8_t *buf;

	*len = snipe__envelope_content__get_packed_size(c);
	buf = malloc(*len ? *len : 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(snipe__envelope_content__pack(c, buf), *len);
	return buf;
}

/* Keyed BLAKE2b-256 over domain (dlen bytes, normally with its NUL) || id || content. */
static void mac_of(const uint8_t key[crypto_kx_SESSIONKEYBYTES], const char *domain,
                   size_t dlen, const uint8_t *id, size_t idlen, const uint8_t *content,
                   size_t clen, uint8_t mac[MAC_BYTES])
{
	crypto_generichash_state st;

	ck_assert_int_eq(crypto_generichash_init(&st, key, crypto_kx_SESSIONKEYBYTES, MAC_BYTES),
	                 0);
	crypto_generichash_update(&st, (const uint8_t *)domain, dlen);
	crypto_generichash_update(&st, id, idlen);
	crypto_generichash_update(&st, content, clen);
	crypto_generichash_final(&st, mac, MAC_BYTES);
}

/* Storage for a hand-made content's fields. */
struct content_fields {
	uint8_t signer[SNIPE_KEYID_BYTES];
	uint8_t nonce[SNIPE_NONCE_BYTES];
	Snipe__EnvelopeContent c;
};

/* A well-formed session content as k's opener would write it: type NOTE. */
static void make_content(struct content_fields *f, const snipe_key *k, uint64_t ts,
                         uint64_t counter, const char *body)
{
	Snipe__EnvelopeContent init = SNIPE__ENVELOPE_CONTENT__INIT;

	keyid_of(k, f->signer);
	randombytes_buf(f->nonce, sizeof(f->nonce));
	f->c = init;
	f->c.signer.data = f->signer;
	f->c.signer.len = sizeof(f->signer);
	f->c.timestamp_ms = ts;
	f->c.nonce.data = f->nonce;
	f->c.nonce.len = sizeof(f->nonce);
	f->c.type = SNIPE__MSG_TYPE__MSG_TYPE_NOTE;
	f->c.body.data = (uint8_t *)body;
	f->c.body.len = strlen(body);
	f->c.counter = counter;
}

/*
 * The opener's side done by hand with bare libsodium, as another implementation of
 * envelope.proto would: its own SessionOpen, crypto_kx client keys, its own MACs.
 */
struct hand {
	const snipe_key *k;
	uint8_t kx_pk[crypto_kx_PUBLICKEYBYTES], kx_sk[crypto_kx_SECRETKEYBYTES];
	uint8_t rx[crypto_kx_SESSIONKEYBYTES], tx[crypto_kx_SESSIONKEYBYTES];
	uint8_t id[SNIPE_SESSION_ID_BYTES];
};

/* A signed SESSION_OPEN from k with the given kx_public bytes, opened by v. */
static void session_open_msg(const snipe_key *k, const uint8_t *kx, size_t kxlen,
                             struct env *e, snipe_env_msg *m)
{
	Snipe__SessionOpen open = SNIPE__SESSION_OPEN__INIT;
	uint8_t body[128];
	size_t blen;

	open.kx_public.data = (uint8_t *)kx;
	open.kx_public.len = kxlen;
	blen = snipe__session_open__get_packed_size(&open);
	ck_assert_uint_le(blen, sizeof(body));
	ck_assert_uint_eq(snipe__session_open__pack(&open, body), blen);
	*e = signed_env(k, SNIPE_MSG_SESSION_OPEN, body, blen);
	open_signed(e, m);
}

static void hand_handshake(snipe_session_table *t, const snipe_key *k, struct hand *h)
{
	uint8_t server_pk[SNIPE_KX_BYTES];
	struct env e;
	snipe_env_msg m;

	h->k = k;
	crypto_kx_keypair(h->kx_pk, h->kx_sk);
	session_open_msg(k, h->kx_pk, sizeof(h->kx_pk), &e, &m);
	tu_assert_code(snipe_session_accept(t, &m, h->id, server_pk, NULL, 0), SNIPE_OK);
	ck_assert_int_eq(crypto_kx_client_session_keys(h->rx, h->tx, h->kx_pk, h->kx_sk,
	                                               server_pk),
	                 0);
	snipe_env_msg_clear(&m);
	env_free(&e);
}

/* c packed and MACed in h's session with h's opener-to-receiver key. */
static struct env hand_env(const struct hand *h, const Snipe__EnvelopeContent *c)
{
	size_t clen;
	uint8_t *content = pack_content(c, &clen);
	uint8_t mac[MAC_BYTES];
	struct env e;

	mac_of(h->tx, SESSION_DOMAIN, sizeof(SESSION_DOMAIN), h->id, sizeof(h->id), content,
	       clen, mac);
	e = pack_env(content, clen, h->id, sizeof(h->id), mac, sizeof(mac));
	free(content);
	return e;
}

/* A hand-made NOTE in h's session with the given time and counter. */
static struct env hand_note(const struct hand *h, uint64_t ts, uint64_t counter)
{
	struct content_fields f;

	make_content(&f, h->k, ts, counter, "by hand");
	return hand_env(h, &f.c);
}

/* -------------------------------------------------------------- handshake */

START_TEST(test_handshake_then_round_trip_gives_body_type_and_signer)
{
	static const char body[] = "hello, session";
	snipe_session_table *t = table(CAP, TTL_LONG, SKEW);
	snipe_session *s = NULL;
	struct env open_env = { NULL, 0 }, e = { NULL, 0 };
	uint8_t id[SNIPE_SESSION_ID_BYTES], kx[SNIPE_KX_BYTES], signer[SNIPE_KEYID_BYTES];
	snipe_env_msg m;
	uint64_t before, after;

	keyid_of(ka, signer);
	tu_assert_code(snipe_session_begin(ka, &s, &open_env.buf, &open_env.len), SNIPE_OK);
	ck_assert_ptr_nonnull(s);
	ck_assert_ptr_nonnull(open_env.buf);
	ck_assert(!snipe_session_ready(s));

	memset(&m, 0, sizeof(m));
	tu_assert_code(snipe_env_open(v, open_env.buf, open_env.len, SNIPE_MSG_SESSION_OPEN, &m,
	                              NULL, 0),
	               SNIPE_OK);
	ck_assert_uint_eq(m.type, SNIPE_MSG_SESSION_OPEN);
	ck_assert_mem_eq(m.signer, signer, sizeof(signer));
	tu_assert_code(snipe_session_accept(t, &m, id, kx, NULL, 0), SNIPE_OK);
	ck_assert_uint_eq(snipe_session_count(t), 1);
	snipe_env_msg_clear(&m);

	tu_assert_code(snipe_session_complete(s, id, sizeof(id), kx, sizeof(kx)), SNIPE_OK);
	ck_assert(snipe_session_ready(s));

	before = snipe_now_ms();
	tu_assert_code(snipe_session_seal(s, SNIPE_MSG_NOTE, body, sizeof(body), &e.buf, &e.len),
	               SNIPE_OK);
	after = snipe_now_ms();
	ck_assert(snipe_env_is_session(e.buf, e.len));
	tu_assert_code(snipe_session_open(t, e.buf, e.len, SNIPE_MSG_NOTE, &m, NULL, 0), SNIPE_OK);
	ck_assert_uint_eq(m.type, SNIPE_MSG_NOTE);
	ck_assert_uint_eq(m.body_len, sizeof(body));
	ck_assert_mem_eq(m.body, body, sizeof(body));
	ck_assert_mem_eq(m.signer, signer, sizeof(signer));
	ck_assert_uint_ge(m.timestamp_ms, before);
	ck_assert_uint_le(m.timestamp_ms, after);
	ck_assert_uint_eq(snipe_session_count(t), 1);
	snipe_env_msg_clear(&m);

	env_free(&e);
	env_free(&open_env);
	snipe_session_free(s);
	snipe_session_table_free(t);
}
END_TEST

/* SESSION_OPEN is signed by the opener, and each carries a fresh X25519 key. */
START_TEST(test_session_open_is_signed_and_ephemeral)
{
	uint8_t keys[2][SNIPE_KX_BYTES];
	snipe_session *s[2] = { NULL, NULL };
	struct env e[2] = { { NULL, 0 }, { NULL, 0 } };
	snipe_env_msg m;

	for (int i = 0; i < 2; i++) {
		Snipe__SessionOpen *open;

		tu_assert_code(snipe_session_begin(ka, &s[i], &e[i].buf, &e[i].len), SNIPE_OK);
		ck_assert(!snipe_env_is_session(e[i].buf, e[i].len));
		open_signed(&e[i], &m);
		open = snipe__session_open__unpack(NULL, m.body_len, m.body);
		ck_assert_ptr_nonnull(open);
		ck_assert_uint_eq(open->kx_public.len, SNIPE_KX_BYTES);
		memcpy(keys[i], open->kx_public.data, SNIPE_KX_BYTES);
		snipe__session_open__free_unpacked(open, NULL);
		snipe_env_msg_clear(&m);
	}
	ck_assert(memcmp(keys[0], keys[1], SNIPE_KX_BYTES) != 0);

	/* a key the receiver does not trust cannot open one */
	snipe_session_free(s[0]);
	env_free(&e[0]);
	tu_assert_code(snipe_session_begin(kc, &s[0], &e[0].buf, &e[0].len), SNIPE_OK);
	memset(&m, 0, sizeof(m));
	tu_assert_code(snipe_env_open(v, e[0].buf, e[0].len, SNIPE_MSG_SESSION_OPEN, &m, NULL, 0),
	               SNIPE_EUNKNOWNSIGNER);

	for (int i = 0; i < 2; i++) {
		snipe_session_free(s[i]);
		env_free(&e[i]);
	}
}
END_TEST

START_TEST(test_is_session_tells_session_from_signed)
{
	static const uint8_t garbage[] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	static const uint8_t truncated[] = { 0x1a, 0x10, 0x00, 0x01 }; /* id cut short */
	snipe_session_table *t = table(CAP, TTL_LONG, SKEW);
	struct peer p = handshake(t, ka);
	struct env e = note(&p);
	struct env s = signed_env(ka, SNIPE_MSG_NOTE, "signed", 6);

	ck_assert(snipe_env_is_session(e.buf, e.len));
	ck_assert(!snipe_env_is_session(s.buf, s.len));
	ck_assert(!snipe_env_is_session(garbage, sizeof(garbage)));
	ck_assert(!snipe_env_is_session(truncated, sizeof(truncated)));
	ck_assert(!snipe_env_is_session(e.buf, 0));
	ck_assert(!snipe_env_is_session(NULL, 0));
	env_free(&s);
	env_free(&e);
	peer_free(&p);
	snipe_session_table_free(t);
}
END_TEST

/* The receiver done by hand: what seal writes is exactly envelope.proto. */
START_TEST(test_sealed_session_envelope_follows_the_proto)
{
	uint8_t server_pk[crypto_kx_PUBLICKEYBYTES], server_sk[crypto_kx_SECRETKEYBYTES];
	uint8_t rx[crypto_kx_SESSIONKEYBYTES], tx[crypto_kx_SESSIONKEYBYTES];
	uint8_t id[SNIPE_SESSION_ID_BYTES], signer[SNIPE_KEYID_BYTES], mac[MAC_BYTES];
	struct env open_env = { NULL, 0 };
	snipe_session *s = NULL;
	Snipe__SessionOpen *open;
	snipe_env_msg m;

	keyid_of(ka, signer);
	tu_assert_code(snipe_session_begin(ka, &s, &open_env.buf, &open_env.len), SNIPE_OK);
	open_signed(&open_env, &m);
	open = snipe__session_open__unpack(NULL, m.body_len, m.body);
	ck_assert_ptr_nonnull(open);
	ck_assert_uint_eq(open->kx_public.len, crypto_kx_PUBLICKEYBYTES);
	crypto_kx_keypair(server_pk, server_sk);
	ck_assert_int_eq(crypto_kx_server_session_keys(rx, tx, server_pk, server_sk,
	                                               open->kx_public.data),
	                 0);
	snipe__session_open__free_unpacked(open, NULL);
	snipe_env_msg_clear(&m);
	randombytes_buf(id, sizeof(id));
	tu_assert_code(snipe_session_complete(s, id, sizeof(id), server_pk, sizeof(server_pk)),
	               SNIPE_OK);

	for (uint64_t i = 1; i <= 3; i++) {
		struct peer p = { s, { 0 } };
		uint64_t before = snipe_now_ms();
		struct env e = session_seal(&p, SNIPE_MSG_NOTE, "wire", 4);
		uint64_t after = snipe_now_ms();
		struct unpacked u = unpack(&e);

		ck_assert_uint_eq(u.env->signature.len, 0);
		ck_assert_uint_eq(u.env->session_id.len, SNIPE_SESSION_ID_BYTES);
		ck_assert_mem_eq(u.env->session_id.data, id, sizeof(id));
		ck_assert_uint_eq(u.env->mac.len, MAC_BYTES);
		/* keyed with the receiver's rx (= the opener's tx) */
		mac_of(rx, SESSION_DOMAIN, sizeof(SESSION_DOMAIN), id, sizeof(id),
		       u.env->content.data, u.env->content.len, mac);
		ck_assert_mem_eq(u.env->mac.data, mac, MAC_BYTES);
		ck_assert_uint_eq(u.c->signer.len, SNIPE_KEYID_BYTES);
		ck_assert_mem_eq(u.c->signer.data, signer, sizeof(signer));
		ck_assert_uint_eq(u.c->counter, i);
		ck_assert_int_eq(u.c->type, SNIPE__MSG_TYPE__MSG_TYPE_NOTE);
		ck_assert_uint_eq(u.c->body.len, 4);
		ck_assert_mem_eq(u.c->body.data, "wire", 4);
		ck_assert_uint_eq(u.c->nonce.len, SNIPE_NONCE_BYTES);
		ck_assert_uint_ge(u.c->timestamp_ms, before);
		ck_assert_uint_le(u.c->timestamp_ms, after);
		unpacked_free(&u);
		env_free(&e);
	}
	env_free(&open_env);
	snipe_session_free(s);
}
END_TEST

/* The opener done by hand: a session envelope from another implementation opens. */
START_TEST(test_hand_made_session_envelope_opens)
{
	snipe_session_table *t = table(CAP, TTL_LONG, SKEW);
	uint8_t signer[SNIPE_KEYID_BYTES];
	struct hand h;
	struct env e;
	snipe_env_msg m;

	keyid_of(kb, signer);
	hand_handshake(t, kb, &h);
	ck_assert_uint_eq(snipe_session_count(t), 1);
	e = hand_note(&h, snipe_now_ms(), 1);
	ck_assert(snipe_env_is_session(e.buf, e.len));
	memset(&m, 0, sizeof(m));
	tu_assert_code(snipe_session_open(t, e.buf, e.len, SNIPE_MSG_NOTE, &m, NULL, 0), SNIPE_OK);
	ck_assert_uint_eq(m.body_len, 7);
	ck_assert_mem_eq(m.body, "by hand", 7);
	ck_assert_mem_eq(m.signer, signer, sizeof(signer));
	ck_assert_uint_eq(m.type, SNIPE_MSG_NOTE);
	snipe_env_msg_clear(&m);
	env_free(&e);
	snipe_session_table_free(t);
}
END_TEST

/* Two sessions of one key: different ids, their own counters, both work. */
START_TEST(test_two_sessions_of_one_key_are_independent)
{
	snipe_session_table *t = table(CAP, TTL_LONG, SKEW);
	struct peer a = handshake(t, ka);
	struct peer b = handshake(t, ka);
	struct env ea = note(&a), eb = note(&b);
	struct unpacked ua = unpack(&ea), ub = unpack(&eb);

	ck_assert(memcmp(a.id, b.id, sizeof(a.id)) != 0);
	ck_assert_uint_eq(snipe_session_count(t), 2);
	ck_assert_uint_eq(ua.c->counter, 1);
	ck_assert_uint_eq(ub.c->counter, 1);
	tu_assert_code(try_open(t, eb.buf, eb.len, SNIPE_MSG_NOTE), SNIPE_OK);
	tu_assert_code(try_open(t, ea.buf, ea.len, SNIPE_MSG_NOTE), SNIPE_OK);
	tu_assert_code(round_trip(t, &a), SNIPE_OK);
	tu_assert_code(round_trip(t, &b), SNIPE_OK);
	unpacked_free(&ua);
	unpacked_free(&ub);
	env_free(&ea);
	env_free(&eb);
	peer_free(&a);
	peer_free(&b);
	snipe_session_table_free(t);
}
END_TEST

/* ------------------------------------------------------------------ replay */

START_TEST(test_second_open_is_replay)
{
	snipe_session_table *t = table(CAP, TTL_LONG, SKEW);
	struct peer p = handshake(t, ka);
	struct env e = note(&p);

	tu_assert_code(try_open(t, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_OK);
	tu_assert_code(try_open(t, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_EREPLAY);
	tu_assert_code(try_open(t, e.buf, e.len, SNIPE_MSG_ANY), SNIPE_EREPLAY);
	ck_assert_uint_eq(snipe_session_count(t), 1);
	tu_assert_code(round_trip(t, &p), SNIPE_OK);
	env_free(&e);
	peer_free(&p);
	snipe_session_table_free(t);
}
END_TEST

START_TEST(test_older_counter_after_newer_is_replay)
{
	snipe_session_table *t = table(CAP, TTL_LONG, SKEW);
	struct peer p = handshake(t, ka);
	struct env e1 = note(&p), e2 = note(&p), e3 = note(&p);

	tu_assert_code(try_open(t, e3.buf, e3.len, SNIPE_MSG_NOTE), SNIPE_OK);
	tu_assert_code(try_open(t, e1.buf, e1.len, SNIPE_MSG_NOTE), SNIPE_EREPLAY);
	tu_assert_code(try_open(t, e2.buf, e2.len, SNIPE_MSG_NOTE), SNIPE_EREPLAY);
	tu_assert_code(try_open(t, e3.buf, e3.len, SNIPE_MSG_NOTE), SNIPE_EREPLAY);
	tu_assert_code(round_trip(t, &p), SNIPE_OK);
	env_free(&e1);
	env_free(&e2);
	env_free(&e3);
	peer_free(&p);
	snipe_session_table_free(t);
}
END_TEST

/* 1, 2, 3, ... per session, as envelope.proto says; each opens in order. */
START_TEST(test_counters_strictly_increase_across_seals)
{
	enum { N = 50 };
	snipe_session_table *t = table(CAP, TTL_LONG, SKEW);
	struct peer p = handshake(t, ka);

	for (uint64_t i = 1; i <= N; i++) {
		struct env e = note(&p);
		struct unpacked u = unpack(&e);

		ck_assert_uint_eq(u.c->counter, i);
		tu_assert_code(try_open(t, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_OK);
		unpacked_free(&u);
		env_free(&e);
	}
	peer_free(&p);
	snipe_session_table_free(t);
}
END_TEST

/* Gaps are fine (lost messages); going back, repeating, or the signed value 0 are not. */
START_TEST(test_counter_may_skip_but_never_go_back)
{
	static const struct {
		uint64_t counter;
		int want;
	} steps[] = {
		{ 0, SNIPE_EREPLAY }, { 1, SNIPE_OK },      { 5, SNIPE_OK },
		{ 3, SNIPE_EREPLAY }, { 5, SNIPE_EREPLAY }, { 6, SNIPE_OK },
		{ 0, SNIPE_EREPLAY }, { UINT64_MAX, SNIPE_OK }, { UINT64_MAX, SNIPE_EREPLAY },
	};
	snipe_session_table *t = table(CAP, TTL_LONG, SKEW);
	struct hand h;

	hand_handshake(t, ka, &h);
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		struct env e = hand_note(&h, snipe_now_ms(), steps[i].counter);
		int rc = try_open(t, e.buf, e.len, SNIPE_MSG_NOTE);

		ck_assert_msg(rc == steps[i].want, "step %zu, counter %" PRIu64 ": got %s, want %s",
		              i, steps[i].counter, snipe_errname(rc), snipe_errname(steps[i].want));
		env_free(&e);
	}
	snipe_session_table_free(t);
}
END_TEST

/* A refused envelope does not use up its counter: the genuine one still opens. */
START_TEST(test_failed_open_does_not_consume_counter)
{
	snipe_session_table *t = table(CAP, TTL_LONG, SKEW);
	struct peer p = handshake(t, ka);
	struct env e = note(&p);
	struct unpacked u = unpack(&e);
	uint8_t mac[MAC_BYTES];
	struct env bad;

	memcpy(mac, u.env->mac.data, sizeof(mac));
	mac[0] ^= 0x01;
	bad = repack(&e, NULL, mac);
	tu_assert_code(try_open(t, e.buf, e.len, OTHER_TYPE), SNIPE_EWRONGTYPE);
	tu_assert_code(try_open(t, bad.buf, bad.len, SNIPE_MSG_NOTE), SNIPE_EBADSIG);
	tu_assert_code(try_open(t, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_OK);
	tu_assert_code(try_open(t, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_EREPLAY);
	env_free(&bad);
	unpacked_free(&u);
	env_free(&e);
	peer_free(&p);
	snipe_session_table_free(t);
}
END_TEST

/* ------------------------------------------------------------------ tamper */

START_TEST(test_every_mac_bit_flip_is_badsig)
{
	snipe_session_table *t = table(CAP, TTL_LONG, SKEW);
	struct peer p = handshake(t, ka);
	struct env e = note(&p);
	struct unpacked u = unpack(&e);

	ck_assert_uint_eq(u.env->mac.len, MAC_BYTES);
	for (unsigned bit = 0; bit < 8 * MAC_BYTES; bit++) {
		uint8_t mac[MAC_BYTES];
		struct env bad;
		int rc;

		memcpy(mac, u.env->mac.data, sizeof(mac));
		mac[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		bad = repack(&e, NULL, mac);
		rc = try_open(t, bad.buf, bad.len, SNIPE_MSG_NOTE);
		ck_assert_msg(rc == SNIPE_EBADSIG, "MAC bit %u: got %s", bit, snipe_errname(rc));
		env_free(&bad);
	}
	tu_assert_code(try_open(t, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_OK);
	unpacked_free(&u);
	env_free(&e);
	peer_free(&p);
	snipe_session_table_free(t);
}
END_TEST

/* The MAC is checked before the content is read, so any content change is EBADSIG. */
START_TEST(test_every_content_bit_flip_is_badsig)
{
	snipe_session_table *t = table(CAP, TTL_LONG, SKEW);
	struct peer p = handshake(t, ka);
	struct env e = session_seal(&p, SNIPE_MSG_NOTE, "pay 10", 6);
	struct unpacked u = unpack(&e);
	size_t clen = u.env->content.len;
	uint8_t *content = tu_copy(u.env->content.data, clen);

	for (size_t bit = 0; bit < 8 * clen; bit++) {
		struct env bad;
		int rc;

		content[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		bad = pack_env(content, clen, u.env->session_id.data, u.env->session_id.len,
		               u.env->mac.data, u.env->mac.len);
		content[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		rc = try_open(t, bad.buf, bad.len, SNIPE_MSG_NOTE);
		ck_assert_msg(rc == SNIPE_EBADSIG, "content bit %zu of %zu: got %s", bit, 8 * clen,
		              snipe_errname(rc));
		env_free(&bad);
	}
	tu_assert_code(try_open(t, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_OK);
	free(content);
	unpacked_free(&u);
	env_free(&e);
	peer_free(&p);
	snipe_session_table_free(t);
}
END_TEST

/* A changed id names no live session, whichever bit (slot index or random part). */
START_TEST(test_every_session_id_bit_flip_is_esession)
{
	snipe_session_table *t = table(4, TTL_LONG, SKEW);
	struct peer p = handshake(t, ka);
	struct peer q = handshake(t, kb);
	struct env e = note(&p);

	for (unsigned bit = 0; bit < 8 * SNIPE_SESSION_ID_BYTES; bit++) {
		uint8_t id[SNIPE_SESSION_ID_BYTES];
		struct env bad;
		int rc;

		memcpy(id, p.id, sizeof(id));
		id[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		bad = repack(&e, id, NULL);
		rc = try_open(t, bad.buf, bad.len, SNIPE_MSG_NOTE);
		ck_assert_msg(rc == SNIPE_ESESSION, "id bit %u: got %s", bit, snipe_errname(rc));
		env_free(&bad);
	}
	ck_assert_uint_eq(snipe_session_count(t), 2);
	tu_assert_code(try_open(t, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_OK);
	tu_assert_code(round_trip(t, &q), SNIPE_OK);
	env_free(&e);
	peer_free(&p);
	peer_free(&q);
	snipe_session_table_free(t);
}
END_TEST

/* Another live session's id: the session exists, but the MAC is not under its key. */
START_TEST(test_other_sessions_id_is_badsig)
{
	snipe_session_table *t = table(CAP, TTL_LONG, SKEW);
	struct peer a = handshake(t, ka);
	struct peer b = handshake(t, kb);
	struct env ea = note(&a), eb = note(&b);
	struct env a_as_b = repack(&ea, b.id, NULL), b_as_a = repack(&eb, a.id, NULL);

	tu_assert_code(try_open(t, a_as_b.buf, a_as_b.len, SNIPE_MSG_NOTE), SNIPE_EBADSIG);
	tu_assert_code(try_open(t, b_as_a.buf, b_as_a.len, SNIPE_MSG_NOTE), SNIPE_EBADSIG);
	tu_assert_code(try_open(t, ea.buf, ea.len, SNIPE_MSG_NOTE), SNIPE_OK);
	tu_assert_code(try_open(t, eb.buf, eb.len, SNIPE_MSG_NOTE), SNIPE_OK);
	env_free(&a_as_b);
	env_free(&b_as_a);
	env_free(&ea);
	env_free(&eb);
	peer_free(&a);
	peer_free(&b);
	snipe_session_table_free(t);
}
END_TEST

START_TEST(test_open_with_other_type_is_wrongtype)
{
	snipe_session_table *t = table(CAP, TTL_LONG, SKEW);
	struct peer p = handshake(t, ka);
	struct env e = note(&p);
	snipe_env_msg m;

	tu_assert_code(try_open(t, e.buf, e.len, OTHER_TYPE), SNIPE_EWRONGTYPE);
	tu_assert_code(try_open(t, e.buf, e.len, SNIPE_MSG_SESSION_OPEN), SNIPE_EWRONGTYPE);
	tu_assert_code(try_open(t, e.buf, e.len, 0xffffffffu), SNIPE_EWRONGTYPE);
	memset(&m, 0, sizeof(m));
	tu_assert_code(snipe_session_open(t, e.buf, e.len, SNIPE_MSG_ANY, &m, NULL, 0), SNIPE_OK);
	ck_assert_uint_eq(m.type, SNIPE_MSG_NOTE);
	snipe_env_msg_clear(&m);
	env_free(&e);
	peer_free(&p);
	snipe_session_table_free(t);
}
END_TEST

/* A correctly MACed content naming a signer other than the session's. */
START_TEST(test_signer_other_than_the_sessions_is_badsig)
{
	const snipe_key *others[] = { kb, kc };
	snipe_session_table *t = table(CAP, TTL_LONG, SKEW);
	struct hand h;
	struct env e;

	hand_handshake(t, ka, &h);
	for (size_t i = 0; i < 2; i++) {
		struct content_fields f;

		make_content(&f, ka, snipe_now_ms(), 1, "impostor");
		keyid_of(others[i], f.signer);
		e = hand_env(&h, &f.c);
		tu_assert_code(try_open(t, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_EBADSIG);
		env_free(&e);
	}
	e = hand_note(&h, snipe_now_ms(), 1);
	tu_assert_code(try_open(t, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_OK);
	env_free(&e);
	snipe_session_table_free(t);
}
END_TEST

/* Only the opener-to-receiver key under "snipe/session/v1" || 0 || id || content. */
START_TEST(test_mac_with_other_key_domain_or_coverage_is_badsig)
{
	static const char *const domains[] = { "snipe/session/v2", "snipe/envelope/v1",
		                               "snipe/session" };
	snipe_session_table *t = table(CAP, TTL_LONG, SKEW);
	uint8_t random_key[crypto_kx_SESSIONKEYBYTES], mac[MAC_BYTES];
	struct content_fields f;
	uint8_t *content;
	size_t clen;
	struct hand h;
	struct env e;

	hand_handshake(t, ka, &h);
	randombytes_buf(random_key, sizeof(random_key));
	make_content(&f, ka, snipe_now_ms(), 1, "coverage");
	content = pack_content(&f.c, &clen);

#define TRY_MAC(key, dom, dlen, covered, covered_len)                                       \
	do {                                                                                \
		mac_of(key, dom, dlen, covered, covered_len, content, clen, mac);           \
		e = pack_env(content, clen, h.id, sizeof(h.id), mac, sizeof(mac));           \
		tu_assert_code(try_open(t, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_EBADSIG);    \
		env_free(&e);                                                               \
	} while (0)

	/* the receiver-to-opener key, a random key */
	TRY_MAC(h.rx, SESSION_DOMAIN, sizeof(SESSION_DOMAIN), h.id, sizeof(h.id));
	TRY_MAC(random_key, SESSION_DOMAIN, sizeof(SESSION_DOMAIN), h.id, sizeof(h.id));
	/* other domains; the domain without its zero byte */
	for (size_t i = 0; i < sizeof(domains) / sizeof(domains[0]); i++)
		TRY_MAC(h.tx, domains[i], strlen(domains[i]) + 1, h.id, sizeof(h.id));
	TRY_MAC(h.tx, SESSION_DOMAIN, strlen(SESSION_DOMAIN), h.id, sizeof(h.id));
	/* not covering the id */
	TRY_MAC(h.tx, SESSION_DOMAIN, sizeof(SESSION_DOMAIN), h.id, 0);
#undef TRY_MAC

	/* the right construction opens */
	mac_of(h.tx, SESSION_DOMAIN, sizeof(SESSION_DOMAIN), h.id, sizeof(h.id), content, clen,
	       mac);
	e = pack_env(content, clen, h.id, sizeof(h.id), mac, sizeof(mac));
	tu_assert_code(try_open(t, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_OK);
	env_free(&e);
	free(content);
	snipe_session_table_free(t);
}
END_TEST

/* A signed envelope has no session id: no session to open it in. */
START_TEST(test_signed_envelope_is_esession)
{
	snipe_session_table *t = table(CAP, TTL_LONG, SKEW);
	struct peer p = handshake(t, ka);
	struct env s = signed_env(ka, SNIPE_MSG_NOTE, "signed", 6);

	tu_assert_code(try_open(t, s.buf, s.len, SNIPE_MSG_NOTE), SNIPE_ESESSION);
	tu_assert_code(try_open(t, s.buf, s.len, SNIPE_MSG_ANY), SNIPE_ESESSION);
	ck_assert_uint_eq(snipe_session_count(t), 1);
	env_free(&s);
	peer_free(&p);
	snipe_session_table_free(t);
}
END_TEST

/*
 * Wrong-length fields. An id of another length names no session (ESESSION); a MAC of
 * another length does not match (EBADSIG); with a valid MAC, a content that does not
 * decode or whose signer or nonce has the wrong length is malformed (EDECODE).
 */
START_TEST(test_wrong_field_lengths)
{
	static const size_t id_lens[] = { 0, 1, 15, 17, 32 };
	static const size_t mac_lens[] = { 0, 1, 31, 33, 64 };
	static const uint8_t junk[] = { 0xff, 0xff, 0xff, 0xff }; /* unterminated varint */
	snipe_session_table *t = table(CAP, TTL_LONG, SKEW);
	uint8_t big[64], mac[MAC_BYTES];
	struct content_fields f;
	struct hand h;
	struct env e;
	uint8_t *content;
	size_t clen;

	hand_handshake(t, ka, &h);
	make_content(&f, ka, snipe_now_ms(), 1, "lengths");
	content = pack_content(&f.c, &clen);
	mac_of(h.tx, SESSION_DOMAIN, sizeof(SESSION_DOMAIN), h.id, sizeof(h.id), content, clen,
	       mac);

	memset(big, 0, sizeof(big));
	memcpy(big, h.id, sizeof(h.id));
	for (size_t i = 0; i < sizeof(id_lens) / sizeof(id_lens[0]); i++) {
		e = pack_env(content, clen, big, id_lens[i], mac, sizeof(mac));
		ck_assert_msg(try_open(t, e.buf, e.len, SNIPE_MSG_NOTE) == SNIPE_ESESSION,
		              "id of %zu bytes not ESESSION", id_lens[i]);
		env_free(&e);
	}
	memset(big, 0, sizeof(big));
	memcpy(big, mac, sizeof(mac));
	for (size_t i = 0; i < sizeof(mac_lens) / sizeof(mac_lens[0]); i++) {
		e = pack_env(content, clen, h.id, sizeof(h.id), big, mac_lens[i]);
		ck_assert_msg(try_open(t, e.buf, e.len, SNIPE_MSG_NOTE) == SNIPE_EBADSIG,
		              "MAC of %zu bytes not EBADSIG", mac_lens[i]);
		env_free(&e);
	}
	free(content);

	/* correctly MACed junk */
	mac_of(h.tx, SESSION_DOMAIN, sizeof(SESSION_DOMAIN), h.id, sizeof(h.id), junk,
	       sizeof(junk), mac);
	e = pack_env(junk, sizeof(junk), h.id, sizeof(h.id), mac, sizeof(mac));
	tu_assert_code(try_open(t, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_EDECODE);
	env_free(&e);

	/* correctly MACed, signer or nonce of the wrong length */
	f.c.signer.len = SNIPE_KEYID_BYTES - 1;
	e = hand_env(&h, &f.c);
	tu_assert_code(try_open(t, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_EDECODE);
	env_free(&e);
	f.c.signer.len = SNIPE_KEYID_BYTES;
	f.c.nonce.len = 0;
	e = hand_env(&h, &f.c);
	tu_assert_code(try_open(t, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_EDECODE);
	env_free(&e);

	/* none of that used up counter 1 */
	f.c.nonce.len = SNIPE_NONCE_BYTES;
	e = hand_env(&h, &f.c);
	tu_assert_code(try_open(t, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_OK);
	env_free(&e);
	snipe_session_table_free(t);
}
END_TEST

/* -------------------------------------------------------------- revocation */

/* The keyring is borrowed: removing a key ends that key's sessions, and only those. */
START_TEST(test_removed_key_ends_its_sessions)
{
	snipe_session_table *t = table(CAP, TTL_LONG, SKEW);
	struct peer a1 = handshake(t, ka), b = handshake(t, kb), a2 = handshake(t, ka);
	struct env e1 = note(&a1), e2 = note(&a2);
	uint8_t id[SNIPE_KEYID_BYTES];

	ck_assert_uint_eq(snipe_session_count(t), 3);
	keyid_of(ka, id);
	tu_assert_code(snipe_keyring_remove(kr, id), SNIPE_OK);
	tu_assert_code(try_open(t, e1.buf, e1.len, SNIPE_MSG_NOTE), SNIPE_ESESSION);
	ck_assert_uint_eq(snipe_session_count(t), 2);
	tu_assert_code(try_open(t, e2.buf, e2.len, SNIPE_MSG_NOTE), SNIPE_ESESSION);
	ck_assert_uint_eq(snipe_session_count(t), 1);
	tu_assert_code(round_trip(t, &b), SNIPE_OK);
	ck_assert_uint_eq(snipe_session_count(t), 1);

	/* forgotten, not suspended: trusting the key again does not revive them */
	tu_assert_code(snipe_keyring_add(kr, snipe_key_public(ka)), SNIPE_OK);
	tu_assert_code(try_open(t, e1.buf, e1.len, SNIPE_MSG_NOTE), SNIPE_ESESSION);
	tu_assert_code(round_trip(t, &a1), SNIPE_ESESSION);
	tu_assert_code(round_trip(t, &a2), SNIPE_ESESSION);
	ck_assert_uint_eq(snipe_session_count(t), 1);
	env_free(&e1);
	env_free(&e2);
	peer_free(&a1);
	peer_free(&a2);
	peer_free(&b);
	snipe_session_table_free(t);
}
END_TEST

/* ------------------------------------------------------------------- table */

START_TEST(test_table_new_rejects_bad_arguments)
{
	snipe_session_table *t = NULL;

	tu_assert_code(snipe_session_table_new(NULL, CAP, TTL_LONG, SKEW, &t), SNIPE_EINVAL);
	tu_assert_code(snipe_session_table_new(kr, 0, TTL_LONG, SKEW, &t), SNIPE_EINVAL);
	ck_assert_ptr_null(t);
	tu_assert_code(snipe_session_table_new(kr, 1, TTL_LONG, SKEW, &t), SNIPE_OK);
	snipe_session_table_free(t);
}
END_TEST

/* Cap 2, sessions opened a few ms apart: the third evicts the first. */
START_TEST(test_full_table_evicts_least_recently_used)
{
	snipe_session_table *t = table(2, TTL_LONG, SKEW);
	struct peer p[3];
	struct env e[3];

	for (int i = 0; i < 3; i++) {
		if (i > 0)
			sleep_ms(3);
		p[i] = handshake(t, i == 1 ? kb : ka);
		e[i] = note(&p[i]);
		ck_assert_uint_le(snipe_session_count(t), 2);
	}
	ck_assert_uint_eq(snipe_session_count(t), 2);
	tu_assert_code(try_open(t, e[0].buf, e[0].len, SNIPE_MSG_NOTE), SNIPE_ESESSION);
	tu_assert_code(try_open(t, e[1].buf, e[1].len, SNIPE_MSG_NOTE), SNIPE_OK);
	tu_assert_code(try_open(t, e[2].buf, e[2].len, SNIPE_MSG_NOTE), SNIPE_OK);
	tu_assert_code(round_trip(t, &p[0]), SNIPE_ESESSION);
	ck_assert_uint_eq(snipe_session_count(t), 2);
	for (int i = 0; i < 3; i++) {
		env_free(&e[i]);
		peer_free(&p[i]);
	}
	snipe_session_table_free(t);
}
END_TEST

/* Using a session makes it recent: of A, B, after A is used, B is the one to go. */
START_TEST(test_use_makes_a_session_recent)
{
	snipe_session_table *t = table(2, TTL_LONG, SKEW);
	struct peer a = handshake(t, ka), b, c;

	sleep_ms(3);
	b = handshake(t, kb);
	sleep_ms(3);
	tu_assert_code(round_trip(t, &a), SNIPE_OK);
	sleep_ms(3);
	c = handshake(t, ka);
	ck_assert_uint_eq(snipe_session_count(t), 2);
	tu_assert_code(round_trip(t, &b), SNIPE_ESESSION);
	tu_assert_code(round_trip(t, &a), SNIPE_OK);
	tu_assert_code(round_trip(t, &c), SNIPE_OK);
	peer_free(&a);
	peer_free(&b);
	peer_free(&c);
	snipe_session_table_free(t);
}
END_TEST

/*
 * As above, without sleeps: B's accept and A's use usually fall in the same
 * millisecond. "Least recently used" is about order, not clock resolution: B must
 * still be the one evicted.
 */
START_TEST(test_lru_order_holds_within_one_millisecond)
{
	for (int round = 0; round < 10; round++) {
		snipe_session_table *t = table(2, TTL_LONG, SKEW);
		struct peer a = handshake(t, ka), b = { NULL, { 0 } }, c;
		struct env a_env = note(&a), b_open = { NULL, 0 };
		uint8_t kx[SNIPE_KX_BYTES];
		snipe_env_msg m;

		/* prepared beforehand, so that only accept and open run back to back */
		tu_assert_code(snipe_session_begin(kb, &b.s, &b_open.buf, &b_open.len), SNIPE_OK);
		open_signed(&b_open, &m);
		tu_assert_code(snipe_session_accept(t, &m, b.id, kx, NULL, 0), SNIPE_OK);
		tu_assert_code(try_open(t, a_env.buf, a_env.len, SNIPE_MSG_NOTE), SNIPE_OK);
		tu_assert_code(snipe_session_complete(b.s, b.id, sizeof(b.id), kx, sizeof(kx)),
		               SNIPE_OK);
		snipe_env_msg_clear(&m);

		c = handshake(t, ka);
		ck_assert_msg(round_trip(t, &a) == SNIPE_OK,
		              "round %d: A, used after B was accepted, was evicted", round);
		tu_assert_code(round_trip(t, &b), SNIPE_ESESSION);
		tu_assert_code(round_trip(t, &c), SNIPE_OK);
		env_free(&b_open);
		env_free(&a_env);
		peer_free(&a);
		peer_free(&b);
		peer_free(&c);
		snipe_session_table_free(t);
	}
}
END_TEST

/* Many sessions through a small table: never more than cap, the newest always works. */
START_TEST(test_count_never_exceeds_cap)
{
	snipe_session_table *t = table(3, TTL_LONG, SKEW);

	for (int i = 0; i < 12; i++) {
		struct peer p = handshake(t, i % 2 ? ka : kb);

		ck_assert_uint_eq(snipe_session_count(t), i < 3 ? (size_t)i + 1 : 3);
		tu_assert_code(round_trip(t, &p), SNIPE_OK);
		peer_free(&p);
	}
	snipe_session_table_free(t);
}
END_TEST

START_TEST(test_idle_session_expires)
{
	snipe_session_table *t = table(CAP, 1, SKEW);
	struct peer p = handshake(t, ka);
	struct env e = note(&p);

	ck_assert_uint_eq(snipe_session_count(t), 1);
	sleep_ms(20);
	tu_assert_code(try_open(t, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_ESESSION);
	ck_assert_uint_eq(snipe_session_count(t), 0);
	tu_assert_code(round_trip(t, &p), SNIPE_ESESSION);
	env_free(&e);
	peer_free(&p);
	snipe_session_table_free(t);
}
END_TEST

/* The TTL counts idle time: a session used every quarter TTL outlives it. */
START_TEST(test_session_in_use_stays_alive)
{
	snipe_session_table *t = table(CAP, 200, SKEW);
	struct peer p = handshake(t, ka);

	for (int i = 0; i < 6; i++) {
		sleep_ms(50);
		ck_assert_msg(round_trip(t, &p) == SNIPE_OK, "use %d after 50 ms idle refused", i);
	}
	ck_assert_uint_eq(snipe_session_count(t), 1);
	peer_free(&p);
	snipe_session_table_free(t);
}
END_TEST

/* -------------------------------------------------------------------- skew */

START_TEST(test_timestamp_outside_window_is_eskew)
{
	snipe_session_table *t = table(CAP, TTL_LONG, 1000);
	struct hand h;
	struct env e;
	uint64_t now;

	hand_handshake(t, ka, &h);
	now = snipe_now_ms();
	e = hand_note(&h, now - 10000, 1);
	tu_assert_code(try_open(t, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_ESKEW);
	env_free(&e);
	e = hand_note(&h, now + 10000, 1);
	tu_assert_code(try_open(t, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_ESKEW);
	env_free(&e);
	/* refused for its time, counter 1 is still unused */
	e = hand_note(&h, snipe_now_ms(), 1);
	tu_assert_code(try_open(t, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_OK);
	env_free(&e);
	snipe_session_table_free(t);
}
END_TEST

/* The window is the table's: 30 s by default, so 20 s off passes and 60 s does not. */
START_TEST(test_window_is_the_tables)
{
	snipe_session_table *t = table(CAP, TTL_LONG, SNIPE_SKEW_DEFAULT_MS);
	struct hand h;
	struct env e;
	uint64_t now;

	hand_handshake(t, ka, &h);
	now = snipe_now_ms();
	e = hand_note(&h, now - 60000, 1);
	tu_assert_code(try_open(t, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_ESKEW);
	env_free(&e);
	e = hand_note(&h, now + 60000, 1);
	tu_assert_code(try_open(t, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_ESKEW);
	env_free(&e);
	e = hand_note(&h, now - 20000, 1);
	tu_assert_code(try_open(t, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_OK);
	env_free(&e);
	e = hand_note(&h, now + 20000, 2);
	tu_assert_code(try_open(t, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_OK);
	env_free(&e);
	snipe_session_table_free(t);
}
END_TEST

/* The distance is |now - timestamp| as numbers, not modulo 2^64. */
START_TEST(test_extreme_timestamps_are_eskew)
{
	static const uint64_t far[] = { 0, 1, UINT64_C(1) << 63, UINT64_MAX - 1, UINT64_MAX };
	snipe_session_table *t = table(CAP, TTL_LONG, SKEW);
	struct hand h;

	hand_handshake(t, ka, &h);
	for (size_t i = 0; i < sizeof(far) / sizeof(far[0]); i++) {
		struct env e = hand_note(&h, far[i], 1);

		ck_assert_msg(try_open(t, e.buf, e.len, SNIPE_MSG_NOTE) == SNIPE_ESKEW,
		              "timestamp %" PRIu64 " not ESKEW", far[i]);
		env_free(&e);
	}
	snipe_session_table_free(t);
}
END_TEST

/* Session, MAC, signer, type, skew, counter: the first failing check names the code. */
START_TEST(test_checks_run_in_documented_order)
{
	snipe_session_table *t = table(CAP, TTL_LONG, 1000);
	uint8_t unknown[SNIPE_SESSION_ID_BYTES];
	struct hand h;
	struct env ok, skewed, bad_mac, nowhere;
	struct content_fields f;
	uint8_t mac[MAC_BYTES];

	hand_handshake(t, ka, &h);
	ok = hand_note(&h, snipe_now_ms(), 1);
	tu_assert_code(try_open(t, ok.buf, ok.len, SNIPE_MSG_NOTE), SNIPE_OK);

	/* replayed, and: wrong type -> type wins */
	tu_assert_code(try_open(t, ok.buf, ok.len, OTHER_TYPE), SNIPE_EWRONGTYPE);
	/* replayed and out of the window -> skew wins; with the wrong type, type wins */
	skewed = hand_note(&h, snipe_now_ms() - 10000, 1);
	tu_assert_code(try_open(t, skewed.buf, skewed.len, SNIPE_MSG_NOTE), SNIPE_ESKEW);
	tu_assert_code(try_open(t, skewed.buf, skewed.len, OTHER_TYPE), SNIPE_EWRONGTYPE);
	/* another signer, skewed and of the wrong type -> signer wins */
	make_content(&f, kb, snipe_now_ms() - 10000, 1, "x");
	env_free(&skewed);
	skewed = hand_env(&h, &f.c);
	tu_assert_code(try_open(t, skewed.buf, skewed.len, OTHER_TYPE), SNIPE_EBADSIG);
	/* bad MAC, replayed, wrong type -> MAC wins */
	memset(mac, 0, sizeof(mac));
	bad_mac = repack(&ok, NULL, mac);
	tu_assert_code(try_open(t, bad_mac.buf, bad_mac.len, OTHER_TYPE), SNIPE_EBADSIG);
	/* unknown session, bad MAC -> session wins */
	memcpy(unknown, h.id, sizeof(unknown));
	unknown[15] ^= 0x01;
	nowhere = repack(&bad_mac, unknown, NULL);
	tu_assert_code(try_open(t, nowhere.buf, nowhere.len, OTHER_TYPE), SNIPE_ESESSION);

	env_free(&nowhere);
	env_free(&bad_mac);
	env_free(&skewed);
	env_free(&ok);
	snipe_session_table_free(t);
}
END_TEST

/* -------------------------------------------------------------------- args */

/* Signed SESSION_OPEN messages whose body is not a usable SessionOpen. */
START_TEST(test_accept_of_malformed_session_open_is_edecode)
{
	static const uint8_t not_proto[] = { 0xff, 0xff, 0xff, 0xff };
	static const uint8_t wrong_wire_type[] = { 0x08, 0x01 }; /* field 1 as a varint */
	static const struct {
		const uint8_t *body;
		size_t len;
	} bodies[] = { { not_proto, sizeof(not_proto) },
		       { wrong_wire_type, sizeof(wrong_wire_type) } };
	static const size_t kx_lens[] = { 0, 1, 31, 33, 64 };
	snipe_session_table *t = table(CAP, TTL_LONG, SKEW);
	uint8_t kx[64], id[SNIPE_SESSION_ID_BYTES], server_kx[SNIPE_KX_BYTES];
	struct env e;
	snipe_env_msg m;
	char err[256];

	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		e = signed_env(kb, SNIPE_MSG_SESSION_OPEN, bodies[i].body, bodies[i].len);
		open_signed(&e, &m);
		err[0] = '\0';
		tu_assert_code(snipe_session_accept(t, &m, id, server_kx, err, sizeof(err)),
		               SNIPE_EDECODE);
		ck_assert_str_ne(err, "");
		snipe_env_msg_clear(&m);
		env_free(&e);
	}

	randombytes_buf(kx, sizeof(kx));
	for (size_t i = 0; i < sizeof(kx_lens) / sizeof(kx_lens[0]); i++) {
		session_open_msg(kb, kx, kx_lens[i], &e, &m);
		ck_assert_msg(snipe_session_accept(t, &m, id, server_kx, NULL, 0) == SNIPE_EDECODE,
		              "kx_public of %zu bytes not EDECODE", kx_lens[i]);
		snipe_env_msg_clear(&m);
		env_free(&e);
	}

	/* 32 bytes, but a low-order point: no usable shared secret */
	memset(kx, 0, sizeof(kx));
	session_open_msg(kb, kx, SNIPE_KX_BYTES, &e, &m);
	tu_assert_code(snipe_session_accept(t, &m, id, server_kx, NULL, 0), SNIPE_EDECODE);
	snipe_env_msg_clear(&m);
	env_free(&e);
	ck_assert_uint_eq(snipe_session_count(t), 0);
	snipe_session_table_free(t);
}
END_TEST

/* A refused SessionOpen must not cost a live session its slot. */
START_TEST(test_refused_accept_keeps_live_sessions)
{
	snipe_session_table *t = table(1, TTL_LONG, SKEW);
	struct peer p = handshake(t, ka);
	uint8_t kx[SNIPE_KX_BYTES], id[SNIPE_SESSION_ID_BYTES], server_kx[SNIPE_KX_BYTES];
	struct env e;
	snipe_env_msg m;

	memset(kx, 0, sizeof(kx)); /* low-order point: refused after decoding */
	session_open_msg(kb, kx, sizeof(kx), &e, &m);
	tu_assert_code(snipe_session_accept(t, &m, id, server_kx, NULL, 0), SNIPE_EDECODE);
	ck_assert_uint_eq(snipe_session_count(t), 1);
	tu_assert_code(round_trip(t, &p), SNIPE_OK);
	snipe_env_msg_clear(&m);
	env_free(&e);
	peer_free(&p);
	snipe_session_table_free(t);
}
END_TEST

START_TEST(test_complete_with_wrong_lengths_is_edecode)
{
	static const size_t id_lens[] = { 0, 15, 17 };
	static const size_t kx_lens[] = { 0, 31, 33 };
	snipe_session_table *t = table(CAP, TTL_LONG, SKEW);
	uint8_t id[SNIPE_SESSION_ID_BYTES + 1], kx[SNIPE_KX_BYTES + 1], zero[SNIPE_KX_BYTES];
	struct peer p = { NULL, { 0 } };
	struct env e = { NULL, 0 }, out = { NULL, 0 };
	snipe_env_msg m;

	tu_assert_code(snipe_session_begin(ka, &p.s, &e.buf, &e.len), SNIPE_OK);
	open_signed(&e, &m);
	tu_assert_code(snipe_session_accept(t, &m, id, kx, NULL, 0), SNIPE_OK);
	snipe_env_msg_clear(&m);
	id[SNIPE_SESSION_ID_BYTES] = 0;
	kx[SNIPE_KX_BYTES] = 0;

	for (size_t i = 0; i < sizeof(id_lens) / sizeof(id_lens[0]); i++) {
		ck_assert_msg(snipe_session_complete(p.s, id, id_lens[i], kx, SNIPE_KX_BYTES) ==
		                      SNIPE_EDECODE,
		              "id of %zu bytes not EDECODE", id_lens[i]);
		ck_assert(!snipe_session_ready(p.s));
	}
	for (size_t i = 0; i < sizeof(kx_lens) / sizeof(kx_lens[0]); i++) {
		ck_assert_msg(snipe_session_complete(p.s, id, SNIPE_SESSION_ID_BYTES, kx,
		                                     kx_lens[i]) == SNIPE_EDECODE,
		              "kx of %zu bytes not EDECODE", kx_lens[i]);
		ck_assert(!snipe_session_ready(p.s));
	}
	memset(zero, 0, sizeof(zero)); /* low-order point */
	tu_assert_code(snipe_session_complete(p.s, id, SNIPE_SESSION_ID_BYTES, zero, sizeof(zero)),
	               SNIPE_EDECODE);
	ck_assert(!snipe_session_ready(p.s));
	tu_assert_code(snipe_session_seal(p.s, SNIPE_MSG_NOTE, "x", 1, &out.buf, &out.len),
	               SNIPE_EINVAL);

	/* the refusals left the session usable with the right answer */
	tu_assert_code(snipe_session_complete(p.s, id, SNIPE_SESSION_ID_BYTES, kx, SNIPE_KX_BYTES),
	               SNIPE_OK);
	ck_assert(snipe_session_ready(p.s));
	memcpy(p.id, id, sizeof(p.id));
	tu_assert_code(round_trip(t, &p), SNIPE_OK);
	env_free(&e);
	peer_free(&p);
	snipe_session_table_free(t);
}
END_TEST

/*
 * Completing twice is a misuse: the X25519 secret was wiped by the first complete, so
 * a second one could only derive a key from public values. It must be refused and
 * leave the session as it was.
 */
START_TEST(test_second_complete_is_einval)
{
	snipe_session_table *t = table(CAP, TTL_LONG, SKEW);
	struct peer p = handshake(t, ka);
	uint8_t id[SNIPE_SESSION_ID_BYTES], kx[SNIPE_KX_BYTES], sk[crypto_kx_SECRETKEYBYTES];

	randombytes_buf(id, sizeof(id));
	crypto_kx_keypair(kx, sk);
	tu_assert_code(snipe_session_complete(p.s, id, sizeof(id), kx, sizeof(kx)), SNIPE_EINVAL);
	ck_assert(snipe_session_ready(p.s));
	tu_assert_code(round_trip(t, &p), SNIPE_OK);
	peer_free(&p);
	snipe_session_table_free(t);
}
END_TEST

START_TEST(test_seal_before_complete_or_of_type_any_is_einval)
{
	snipe_session_table *t = table(CAP, TTL_LONG, SKEW);
	struct env e = { NULL, 0 }, out = { NULL, 0 };
	uint8_t id[SNIPE_SESSION_ID_BYTES], kx[SNIPE_KX_BYTES];
	struct peer p = { NULL, { 0 } };
	snipe_env_msg m;

	tu_assert_code(snipe_session_begin(ka, &p.s, &e.buf, &e.len), SNIPE_OK);
	tu_assert_code(snipe_session_seal(p.s, SNIPE_MSG_NOTE, "x", 1, &out.buf, &out.len),
	               SNIPE_EINVAL);
	open_signed(&e, &m);
	tu_assert_code(snipe_session_accept(t, &m, id, kx, NULL, 0), SNIPE_OK);
	snipe_env_msg_clear(&m);
	tu_assert_code(snipe_session_complete(p.s, id, sizeof(id), kx, sizeof(kx)), SNIPE_OK);
	tu_assert_code(snipe_session_seal(p.s, SNIPE_MSG_ANY, "x", 1, &out.buf, &out.len),
	               SNIPE_EINVAL);
	memcpy(p.id, id, sizeof(id));
	tu_assert_code(round_trip(t, &p), SNIPE_OK);
	env_free(&e);
	peer_free(&p);
	snipe_session_table_free(t);
}
END_TEST

START_TEST(test_free_of_null_is_noop)
{
	snipe_session_free(NULL);
	snipe_session_table_free(NULL);
	snipe_env_msg_clear(NULL);
	ck_assert(!snipe_session_ready(NULL));
}
END_TEST

/* A refusal says why, naming the peer where it is known, and leaves out empty. */
START_TEST(test_open_failure_fills_err_and_clears_msg)
{
	snipe_session_table *t = table(CAP, TTL_LONG, SKEW);
	struct peer p = handshake(t, ka);
	struct env e = note(&p);
	struct env s = signed_env(ka, SNIPE_MSG_NOTE, "signed", 6);
	uint8_t mac[MAC_BYTES], id[SNIPE_KEYID_BYTES];
	char hex[SNIPE_KEYID_HEX], err[256];
	struct env bad;
	snipe_env_msg m;

	keyid_of(ka, id);
	snipe_keyid_hex(id, hex);
	memset(mac, 0, sizeof(mac));
	bad = repack(&e, NULL, mac);

	memset(&m, 0xa5, sizeof(m));
	err[0] = '\0';
	tu_assert_code(snipe_session_open(t, s.buf, s.len, SNIPE_MSG_NOTE, &m, err, sizeof(err)),
	               SNIPE_ESESSION);
	ck_assert_str_ne(err, "");
	ck_assert_ptr_null(m.body);
	ck_assert_uint_eq(m.body_len, 0);

	memset(&m, 0xa5, sizeof(m));
	err[0] = '\0';
	tu_assert_code(snipe_session_open(t, bad.buf, bad.len, SNIPE_MSG_NOTE, &m, err,
	                                  sizeof(err)),
	               SNIPE_EBADSIG);
	ck_assert_msg(strstr(err, hex) != NULL, "err \"%s\" does not name %s", err, hex);
	ck_assert_ptr_null(m.body);
	ck_assert_uint_eq(m.body_len, 0);

	err[0] = '\0';
	tu_assert_code(snipe_session_open(t, e.buf, e.len, OTHER_TYPE, &m, err, sizeof(err)),
	               SNIPE_EWRONGTYPE);
	ck_assert_msg(strstr(err, hex) != NULL, "err \"%s\" does not name %s", err, hex);

	/* err may be NULL */
	tu_assert_code(snipe_session_open(t, bad.buf, bad.len, SNIPE_MSG_NOTE, &m, NULL, 0),
	               SNIPE_EBADSIG);
	env_free(&bad);
	env_free(&s);
	env_free(&e);
	peer_free(&p);
	snipe_session_table_free(t);
}
END_TEST

/* -------------------------------------------------------------------- fuzz */

START_TEST(test_every_prefix_is_rejected)
{
	static const size_t body_lens[] = { 0, 5, 300 };
	snipe_session_table *t = table(CAP, TTL_LONG, SKEW);
	struct peer p = handshake(t, ka);
	uint8_t body[300];

	randombytes_buf(body, sizeof(body));
	for (size_t b = 0; b < sizeof(body_lens) / sizeof(body_lens[0]); b++) {
		struct env e = session_seal(&p, SNIPE_MSG_NOTE, body, body_lens[b]);

		for (size_t n = 0; n < e.len; n++) {
			int rc = try_open(t, e.buf, n, SNIPE_MSG_NOTE);

			ck_assert_msg(rc == SNIPE_EDECODE || rc == SNIPE_ESESSION ||
			                      rc == SNIPE_EBADSIG,
			              "prefix %zu of %zu: got %s", n, e.len, snipe_errname(rc));
		}
		tu_assert_code(try_open(t, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_OK);
		env_free(&e);
	}
	ck_assert_uint_eq(snipe_session_count(t), 1);
	peer_free(&p);
	snipe_session_table_free(t);
}
END_TEST

START_TEST(test_random_buffers_are_rejected)
{
	enum { COUNT = 20000, MAXLEN = 300 };
	snipe_session_table *t = table(CAP, TTL_LONG, SKEW);
	struct peer p = handshake(t, ka);
	struct tu_rng r;

	tu_rng_init(&r, "test_session");
	for (int i = 0; i < COUNT; i++) {
		size_t n = tu_rng_below(&r, MAXLEN + 1);
		uint8_t *buf = malloc(n ? n : 1);
		int rc;

		ck_assert_ptr_nonnull(buf);
		tu_rng_bytes(&r, buf, n);
		rc = try_open(t, buf, n, i % 2 ? SNIPE_MSG_NOTE : SNIPE_MSG_ANY);
		ck_assert_msg(rc == SNIPE_EDECODE || rc == SNIPE_ESESSION,
		              "random buffer %d (%zu bytes): got %s", i, n, snipe_errname(rc));
		free(buf);
	}
	ck_assert_uint_eq(snipe_session_count(t), 1);
	tu_assert_code(round_trip(t, &p), SNIPE_OK);
	peer_free(&p);
	snipe_session_table_free(t);
}
END_TEST

/*
 * Mutants of an envelope whose counter is already used: none may open. Those that keep
 * id, MAC and content intact are replays; anything else is refused before the counter.
 */
START_TEST(test_mutations_never_open)
{
	enum { COUNT = 20000, SLACK = 8 };
	snipe_session_table *t = table(CAP, TTL_LONG, SKEW);
	struct peer p = handshake(t, ka);
	struct env e = session_seal(&p, SNIPE_MSG_NOTE, "mutate this body, please", 24);
	struct unpacked orig = unpack(&e);
	uint8_t *work = malloc(e.len + SLACK);
	struct tu_rng r;

	ck_assert_ptr_nonnull(work);
	tu_assert_code(try_open(t, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_OK);
	tu_rng_init(&r, "test_session");
	for (int i = 0; i < COUNT; i++) {
		size_t n;
		int rc;

		memcpy(work, e.buf, e.len);
		n = tu_mutate(&r, work, e.len, e.len + SLACK);
		rc = try_open(t, work, n, SNIPE_MSG_NOTE);
		ck_assert_msg(rc == SNIPE_EDECODE || rc == SNIPE_ESESSION || rc == SNIPE_EBADSIG ||
		                      rc == SNIPE_EREPLAY,
		              "mutant %d: got %s", i, snipe_errname(rc));
		if (rc == SNIPE_EREPLAY) {
			Snipe__Envelope *m = snipe__envelope__unpack(NULL, n, work);

			ck_assert_ptr_nonnull(m);
			ck_assert(m->content.len == orig.env->content.len &&
			          memcmp(m->content.data, orig.env->content.data, m->content.len) == 0);
			ck_assert(m->mac.len == MAC_BYTES &&
			          memcmp(m->mac.data, orig.env->mac.data, MAC_BYTES) == 0);
			snipe__envelope__free_unpacked(m, NULL);
		}
	}
	ck_assert_uint_eq(snipe_session_count(t), 1);
	tu_assert_code(round_trip(t, &p), SNIPE_OK);
	free(work);
	unpacked_free(&orig);
	env_free(&e);
	peer_free(&p);
	snipe_session_table_free(t);
}
END_TEST

/* ------------------------------------------------------------------- suite */

static TCase *tcase(const char *name, double timeout)
{
	TCase *tc = tcase_create(name);

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, timeout);
	return tc;
}

static Suite *suite(void)
{
	Suite *s = suite_create("session");
	TCase *tc;

	tc = tcase("handshake", 30);
	tcase_add_test(tc, test_handshake_then_round_trip_gives_body_type_and_signer);
	tcase_add_test(tc, test_session_open_is_signed_and_ephemeral);
	tcase_add_test(tc, test_is_session_tells_session_from_signed);
	tcase_add_test(tc, test_sealed_session_envelope_follows_the_proto);
	tcase_add_test(tc, test_hand_made_session_envelope_opens);
	tcase_add_test(tc, test_two_sessions_of_one_key_are_independent);
	suite_add_tcase(s, tc);

	tc = tcase("replay", 30);
	tcase_add_test(tc, test_second_open_is_replay);
	tcase_add_test(tc, test_older_counter_after_newer_is_replay);
	tcase_add_test(tc, test_counters_strictly_increase_across_seals);
	tcase_add_test(tc, test_counter_may_skip_but_never_go_back);
	tcase_add_test(tc, test_failed_open_does_not_consume_counter);
	suite_add_tcase(s, tc);

	tc = tcase("tamper", 30);
	tcase_add_test(tc, test_every_mac_bit_flip_is_badsig);
	tcase_add_test(tc, test_every_content_bit_flip_is_badsig);
	tcase_add_test(tc, test_every_session_id_bit_flip_is_esession);
	tcase_add_test(tc, test_other_sessions_id_is_badsig);
	tcase_add_test(tc, test_open_with_other_type_is_wrongtype);
	tcase_add_test(tc, test_signer_other_than_the_sessions_is_badsig);
	tcase_add_test(tc, test_mac_with_other_key_domain_or_coverage_is_badsig);
	tcase_add_test(tc, test_signed_envelope_is_esession);
	tcase_add_test(tc, test_wrong_field_lengths);
	suite_add_tcase(s, tc);

	tc = tcase("revocation", 30);
	tcase_add_test(tc, test_removed_key_ends_its_sessions);
	suite_add_tcase(s, tc);

	tc = tcase("table", 30);
	tcase_add_test(tc, test_table_new_rejects_bad_arguments);
	tcase_add_test(tc, test_full_table_evicts_least_recently_used);
	tcase_add_test(tc, test_use_makes_a_session_recent);
	tcase_add_test(tc, test_lru_order_holds_within_one_millisecond);
	tcase_add_test(tc, test_count_never_exceeds_cap);
	tcase_add_test(tc, test_idle_session_expires);
	tcase_add_test(tc, test_session_in_use_stays_alive);
	suite_add_tcase(s, tc);

	tc = tcase("skew", 30);
	tcase_add_test(tc, test_timestamp_outside_window_is_eskew);
	tcase_add_test(tc, test_window_is_the_tables);
	tcase_add_test(tc, test_extreme_timestamps_are_eskew);
	tcase_add_test(tc, test_checks_run_in_documented_order);
	suite_add_tcase(s, tc);

	tc = tcase("args", 30);
	tcase_add_test(tc, test_accept_of_malformed_session_open_is_edecode);
	tcase_add_test(tc, test_refused_accept_keeps_live_sessions);
	tcase_add_test(tc, test_complete_with_wrong_lengths_is_edecode);
	tcase_add_test(tc, test_second_complete_is_einval);
	tcase_add_test(tc, test_seal_before_complete_or_of_type_any_is_einval);
	tcase_add_test(tc, test_free_of_null_is_noop);
	tcase_add_test(tc, test_open_failure_fills_err_and_clears_msg);
	suite_add_tcase(s, tc);

	tc = tcase("fuzz", 60);
	tcase_add_test(tc, test_every_prefix_is_rejected);
	tcase_add_test(tc, test_random_buffers_are_rejected);
	tcase_add_test(tc, test_mutations_never_open);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(suite());
}
