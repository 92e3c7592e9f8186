/*
 * test_envelope.c — signed envelopes: seal/open round trips and the wire format, the
 * exact code for every tampered field, the type, skew and replay checks and their
 * order, the bounded replay cache, and malformed or random input never crashing open.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "envelope.pb-c.h"
#include "snipe.h"
#include "testutil.h"

/* The wire contract, spelled out here rather than taken from the library. */
#define ENV_DOMAIN "snipe/envelope/v1"
/* A fixed "now" for the fake clock (November 2023). */
#define T0 1700000000000ull
/* A real message type other than the NOTE the tests seal. */
#define OTHER_TYPE ((uint32_t)SNIPE_MSG_CATALOG_REQUEST)

#define assert_code(got, want)                                                      \
	do {                                                                        \
		int got_ = (got), want_ = (want);                                   \
		ck_assert_msg(got_ == want_, "%s: got %s (%d), want %s (%d)", #got, \
		              snipe_errname(got_), got_, snipe_errname(want_), want_); \
	} while (0)

/* ------------------------------------------------------------------ fixture */

/* ka and kb are in the keyring kr; kc is not. */
static snipe_key *ka, *kb, *kc;
static snipe_keyring *kr;

static void setup(void)
{
	ck_assert_int_eq(snipe_key_generate(&ka), SNIPE_OK);
	ck_assert_int_eq(snipe_key_generate(&kb), SNIPE_OK);
	ck_assert_int_eq(snipe_key_generate(&kc), SNIPE_OK);
	ck_assert_int_eq(snipe_keyring_new(&kr), SNIPE_OK);
	ck_assert_int_eq(snipe_keyring_add(kr, snipe_key_public(ka)), SNIPE_OK);
	ck_assert_int_eq(snipe_keyring_add(kr, snipe_key_public(kb)), SNIPE_OK);
}

static void teardown(void)
{
	snipe_keyring_free(kr);
	snipe_key_free(ka);
	snipe_key_free(kb);
	snipe_key_free(kc);
	kr = NULL;
	ka = kb = kc = NULL;
}

struct fake_clock {
	uint64_t now;
};

static uint64_t fake_now(void *arg)
{
	const struct fake_clock *clk = arg;
	return clk->now;
}

/* A verifier on kr; it reads the time from clk, or the wall clock if clk is NULL. */
static snipe_verifier *verifier(uint32_t skew_ms, size_t cap, struct fake_clock *clk)
{
	snipe_verifier *v = NULL;

	ck_assert_int_eq(snipe_verifier_new(kr, skew_ms, cap, &v), SNIPE_OK);
	ck_assert_ptr_nonnull(v);
	if (clk != NULL)
		snipe_verifier_set_clock(v, fake_now, clk);
	return v;
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

static struct env seal(const snipe_key *k, uint32_t type, const void *body, size_t len)
{
	struct env e = { NULL, 0 };

	assert_code(snipe_env_seal(k, type, body, len, &e.buf, &e.len), SNIPE_OK);
	ck_assert_ptr_nonnull(e.buf);
	ck_assert_uint_gt(e.len, 0);
	return e;
}

static struct env seal_at(const snipe_key *k, uint32_t type, uint64_t ts, const void *body,
                          size_t len)
{
	struct env e = { NULL, 0 };

	assert_code(snipe_env_seal_at(k, type, ts, body, len, &e.buf, &e.len), SNIPE_OK);
	ck_assert_ptr_nonnull(e.buf);
	ck_assert_uint_gt(e.len, 0);
	return e;
}

static struct env note_at(const snipe_key *k, uint64_t ts)
{
	return seal_at(k, SNIPE_MSG_NOTE, ts, "note", 4);
}

/* A heap copy of exactly len bytes, so ASan sees any read past the end. */
static uint8_t *exact_copy(const uint8_t *buf, size_t len)
{
	uint8_t *p = malloc(len ? len : 1);

	ck_assert_ptr_nonnull(p);
	if (len)
		memcpy(p, buf, len);
	return p;
}

/* Opens buf with v, releases the message on success, and returns the code. */
static int try_open(snipe_verifier *v, const uint8_t *buf, size_t len, uint32_t type)
{
	snipe_env_msg m;
	char err[256];
	int rc;

	memset(&m, 0, sizeof(m));
	rc = snipe_env_open(v, buf, len, type, &m, err, sizeof(err));
	if (rc == SNIPE_OK)
		snipe_env_msg_clear(&m);
	return rc;
}

/* Opens buf with a fresh verifier (default skew, wall clock) on kr. */
static int open_fresh(const uint8_t *buf, size_t len, uint32_t type)
{
	snipe_verifier *v = verifier(SNIPE_SKEW_DEFAULT_MS, 64, NULL);
	uint8_t *copy = exact_copy(buf, len);
	int rc = try_open(v, copy, len, type);

	free(copy);
	snipe_verifier_free(v);
	return rc;
}

/* --------------------------------------------------- protobuf-level access */

/* A sealed envelope decoded with protobuf-c; free with unpacked_free. */
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

static struct env pack_env(const uint8_t *content, size_t clen, const uint8_t *sig,
                           size_t siglen)
{
	Snipe__Envelope m = SNIPE__ENVELOPE__INIT;
	struct env e;

	m.content.data = (uint8_t *)content;
	m.content.len = clen;
	m.signature.data = (uint8_t *)sig;
	m.signature.len = siglen;
	e.len = snipe__envelope__get_packed_size(&m);
	e.buf = malloc(e.len ? e.len : 1);
	ck_assert_ptr_nonnull(e.buf);
	ck_assert_uint_eq(snipe__envelope__pack(&m, e.buf), e.len);
	return e;
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

/* Re-packs c and pairs it with an existing signature, as an attacker editing would. */
static struct env rebuild(const Snipe__EnvelopeContent *c, const ProtobufCBinaryData *sig)
{
	size_t clen;
	uint8_t *content = pack_content(c, &clen);
	struct env e = pack_env(content, clen, sig->data, sig->len);

	free(content);
	return e;
}

/* Packs c and signs it with k under domain: a hand-made envelope. */
static struct env sign_content(const snipe_key *k, const char *domain,
                               const Snipe__EnvelopeContent *c)
{
	size_t clen;
	uint8_t *content = pack_content(c, &clen);
	uint8_t sig[SNIPE_SIG_BYTES];
	struct env e;

	ck_assert_int_eq(snipe_sign(k, domain, content, clen, sig), SNIPE_OK);
	e = pack_env(content, clen, sig, sizeof(sig));
	free(content);
	return e;
}

/* Storage for a hand-made content's fields. */
struct content_fields {
	uint8_t signer[SNIPE_KEYID_BYTES];
	uint8_t nonce[SNIPE_NONCE_BYTES];
	Snipe__EnvelopeContent c;
};

/* A well-formed content as signer k would write it: fresh nonce, type NOTE, body. */
static void make_content(struct content_fields *f, const snipe_key *k, uint64_t ts,
                         const char *body)
{
	Snipe__EnvelopeContent init = SNIPE__ENVELOPE_CONTENT__INIT;

	snipe_keyid(snipe_key_public(k), f->signer);
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
}

/* e with bit `bit` of its signature flipped. */
static struct env flip_sig_bit(const struct env *e, unsigned bit)
{
	struct unpacked u = unpack(e);
	uint8_t sig[SNIPE_SIG_BYTES];
	struct env out;

	ck_assert_uint_eq(u.env->signature.len, SNIPE_SIG_BYTES);
	memcpy(sig, u.env->signature.data, sizeof(sig));
	sig[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	out = pack_env(u.env->content.data, u.env->content.len, sig, sizeof(sig));
	unpacked_free(&u);
	return out;
}

/* --------------------------------------------------------------- round trip */

START_TEST(test_round_trip_gives_body_signer_type_and_time)
{
	static const char body[] = "hello, envelope";
	snipe_verifier *v = verifier(SNIPE_SKEW_DEFAULT_MS, 64, NULL);
	struct env e = seal(ka, SNIPE_MSG_NOTE, body, sizeof(body));
	uint8_t id[SNIPE_KEYID_BYTES];
	snipe_env_msg m;
	uint64_t now;

	memset(&m, 0, sizeof(m));
	assert_code(snipe_env_open(v, e.buf, e.len, SNIPE_MSG_NOTE, &m, NULL, 0), SNIPE_OK);
	now = snipe_now_ms();
	ck_assert_uint_eq(m.body_len, sizeof(body));
	ck_assert_mem_eq(m.body, body, sizeof(body));
	snipe_keyid(snipe_key_public(ka), id);
	ck_assert_mem_eq(m.signer, id, sizeof(id));
	ck_assert_uint_eq(m.type, SNIPE_MSG_NOTE);
	ck_assert_uint_le(m.timestamp_ms, now);
	ck_assert_uint_le(now - m.timestamp_ms, 1000);
	snipe_env_msg_clear(&m);
	snipe_verifier_free(v);
	env_free(&e);
}
END_TEST

START_TEST(test_round_trip_of_second_key_names_it)
{
	snipe_verifier *v = verifier(SNIPE_SKEW_DEFAULT_MS, 64, NULL);
	struct env e = seal(kb, SNIPE_MSG_NOTE, "b", 1);
	uint8_t id[SNIPE_KEYID_BYTES];
	snipe_env_msg m;

	memset(&m, 0, sizeof(m));
	assert_code(snipe_env_open(v, e.buf, e.len, SNIPE_MSG_NOTE, &m, NULL, 0), SNIPE_OK);
	snipe_keyid(snipe_key_public(kb), id);
	ck_assert_mem_eq(m.signer, id, sizeof(id));
	snipe_env_msg_clear(&m);
	snipe_verifier_free(v);
	env_free(&e);
}
END_TEST

START_TEST(test_empty_body_round_trips)
{
	static const uint8_t nothing[1];
	snipe_verifier *v = verifier(SNIPE_SKEW_DEFAULT_MS, 64, NULL);
	struct env e = seal(ka, SNIPE_MSG_NOTE, nothing, 0);
	snipe_env_msg m;

	memset(&m, 0, sizeof(m));
	assert_code(snipe_env_open(v, e.buf, e.len, SNIPE_MSG_NOTE, &m, NULL, 0), SNIPE_OK);
	ck_assert_uint_eq(m.body_len, 0);
	ck_assert_uint_eq(m.type, SNIPE_MSG_NOTE);
	snipe_env_msg_clear(&m);
	snipe_verifier_free(v);
	env_free(&e);
}
END_TEST

START_TEST(test_one_mib_body_round_trips)
{
	const size_t n = 1u << 20;
	uint8_t *body = malloc(n);
	snipe_verifier *v = verifier(SNIPE_SKEW_DEFAULT_MS, 64, NULL);
	struct env e;
	snipe_env_msg m;

	ck_assert_ptr_nonnull(body);
	randombytes_buf(body, n);
	e = seal(ka, SNIPE_MSG_NOTE, body, n);
	ck_assert_uint_gt(e.len, n);
	memset(&m, 0, sizeof(m));
	assert_code(snipe_env_open(v, e.buf, e.len, SNIPE_MSG_NOTE, &m, NULL, 0), SNIPE_OK);
	ck_assert_uint_eq(m.body_len, n);
	ck_assert(memcmp(m.body, body, n) == 0);
	snipe_env_msg_clear(&m);
	snipe_verifier_free(v);
	env_free(&e);
	free(body);
}
END_TEST

/* What seal writes is exactly envelope.proto: checkable without libsnipe's open. */
START_TEST(test_sealed_bytes_follow_the_proto)
{
	static const char body[] = "wire";
	const uint8_t *pk = snipe_key_public(ka);
	uint64_t before = snipe_now_ms();
	struct env e = seal(ka, SNIPE_MSG_NOTE, body, 4);
	uint64_t after = snipe_now_ms();
	struct unpacked u = unpack(&e);
	uint8_t hash[32];
	uint8_t *signed_bytes;
	size_t dlen = sizeof(ENV_DOMAIN);
	size_t slen = dlen + u.env->content.len;

	crypto_generichash(hash, sizeof(hash), pk, SNIPE_PK_BYTES, NULL, 0);
	ck_assert_uint_eq(u.c->signer.len, SNIPE_KEYID_BYTES);
	ck_assert_mem_eq(u.c->signer.data, hash, SNIPE_KEYID_BYTES);
	ck_assert_uint_ge(u.c->timestamp_ms, before);
	ck_assert_uint_le(u.c->timestamp_ms, after);
	ck_assert_uint_eq(u.c->nonce.len, SNIPE_NONCE_BYTES);
	ck_assert_int_eq(u.c->type, SNIPE__MSG_TYPE__MSG_TYPE_NOTE);
	ck_assert_uint_eq(u.c->body.len, 4);
	ck_assert_mem_eq(u.c->body.data, body, 4);
	ck_assert_uint_eq(u.env->signature.len, SNIPE_SIG_BYTES);

	/* "snipe/envelope/v1" || 0x00 || content, checked with bare libsodium */
	signed_bytes = malloc(slen);
	ck_assert_ptr_nonnull(signed_bytes);
	memcpy(signed_bytes, ENV_DOMAIN, dlen);
	memcpy(signed_bytes + dlen, u.env->content.data, u.env->content.len);
	ck_assert_int_eq(crypto_sign_verify_detached(u.env->signature.data, signed_bytes,
	                                             slen, pk),
	                 0);
	assert_code(snipe_verify(pk, ENV_DOMAIN, u.env->content.data, u.env->content.len,
	                         u.env->signature.data),
	            SNIPE_OK);
	free(signed_bytes);
	unpacked_free(&u);
	env_free(&e);
}
END_TEST

/* An envelope built by another implementation of the .proto opens. */
START_TEST(test_hand_made_envelope_opens)
{
	struct content_fields f;
	struct env e;
	snipe_verifier *v = verifier(SNIPE_SKEW_DEFAULT_MS, 64, NULL);
	snipe_env_msg m;

	make_content(&f, kb, snipe_now_ms(), "made by hand");
	e = sign_content(kb, ENV_DOMAIN, &f.c);
	memset(&m, 0, sizeof(m));
	assert_code(snipe_env_open(v, e.buf, e.len, SNIPE_MSG_NOTE, &m, NULL, 0), SNIPE_OK);
	ck_assert_mem_eq(m.signer, f.signer, SNIPE_KEYID_BYTES);
	ck_assert_mem_eq(m.nonce, f.nonce, SNIPE_NONCE_BYTES);
	ck_assert_uint_eq(m.timestamp_ms, f.c.timestamp_ms);
	ck_assert_uint_eq(m.body_len, 12);
	ck_assert_mem_eq(m.body, "made by hand", 12);
	snipe_env_msg_clear(&m);
	snipe_verifier_free(v);
	env_free(&e);
}
END_TEST

START_TEST(test_each_seal_has_a_fresh_nonce)
{
	struct env e1 = seal(ka, SNIPE_MSG_NOTE, "same", 4);
	struct env e2 = seal(ka, SNIPE_MSG_NOTE, "same", 4);
	struct unpacked u1 = unpack(&e1), u2 = unpack(&e2);

	ck_assert_uint_eq(u1.c->nonce.len, SNIPE_NONCE_BYTES);
	ck_assert_uint_eq(u2.c->nonce.len, SNIPE_NONCE_BYTES);
	ck_assert(memcmp(u1.c->nonce.data, u2.c->nonce.data, SNIPE_NONCE_BYTES) != 0);
	unpacked_free(&u1);
	unpacked_free(&u2);
	env_free(&e1);
	env_free(&e2);
}
END_TEST

START_TEST(test_seal_at_keeps_the_given_timestamp)
{
	struct fake_clock clk = { T0 };
	snipe_verifier *v = verifier(SNIPE_SKEW_DEFAULT_MS, 64, &clk);
	struct env e = note_at(ka, T0 - 1234);
	snipe_env_msg m;

	memset(&m, 0, sizeof(m));
	assert_code(snipe_env_open(v, e.buf, e.len, SNIPE_MSG_NOTE, &m, NULL, 0), SNIPE_OK);
	ck_assert_uint_eq(m.timestamp_ms, T0 - 1234);
	snipe_env_msg_clear(&m);
	snipe_verifier_free(v);
	env_free(&e);
}
END_TEST

/* "body points into memory owned by the message", not into the input buffer. */
START_TEST(test_body_outlives_the_input_buffer)
{
	static const char body[] = "kept after the input is gone";
	snipe_verifier *v = verifier(SNIPE_SKEW_DEFAULT_MS, 64, NULL);
	struct env e = seal(ka, SNIPE_MSG_NOTE, body, sizeof(body));
	snipe_env_msg m;

	memset(&m, 0, sizeof(m));
	assert_code(snipe_env_open(v, e.buf, e.len, SNIPE_MSG_NOTE, &m, NULL, 0), SNIPE_OK);
	memset(e.buf, 0xa5, e.len);
	ck_assert_uint_eq(m.body_len, sizeof(body));
	ck_assert_mem_eq(m.body, body, sizeof(body));
	env_free(&e);
	ck_assert_mem_eq(m.body, body, sizeof(body));
	snipe_env_msg_clear(&m);
	snipe_verifier_free(v);
}
END_TEST

START_TEST(test_cleared_msg_can_be_reused)
{
	snipe_verifier *v = verifier(SNIPE_SKEW_DEFAULT_MS, 64, NULL);
	struct env e1 = seal(ka, SNIPE_MSG_NOTE, "first", 5);
	struct env e2 = seal(kb, SNIPE_MSG_NOTE, "second!", 7);
	snipe_env_msg m;

	memset(&m, 0, sizeof(m));
	assert_code(snipe_env_open(v, e1.buf, e1.len, SNIPE_MSG_NOTE, &m, NULL, 0), SNIPE_OK);
	ck_assert_uint_eq(m.body_len, 5);
	snipe_env_msg_clear(&m);
	assert_code(snipe_env_open(v, e2.buf, e2.len, SNIPE_MSG_NOTE, &m, NULL, 0), SNIPE_OK);
	ck_assert_uint_eq(m.body_len, 7);
	ck_assert_mem_eq(m.body, "second!", 7);
	snipe_env_msg_clear(&m);
	snipe_verifier_free(v);
	env_free(&e1);
	env_free(&e2);
}
END_TEST

/* ------------------------------------------------------------------ tamper */

/* The control for the tests below: re-packing unchanged content keeps it valid. */
START_TEST(test_repacked_unchanged_content_opens)
{
	struct env e = seal(ka, SNIPE_MSG_NOTE, "control", 7);
	struct unpacked u = unpack(&e);
	struct env t = rebuild(u.c, &u.env->signature);

	assert_code(open_fresh(t.buf, t.len, SNIPE_MSG_NOTE), SNIPE_OK);
	env_free(&t);
	unpacked_free(&u);
	env_free(&e);
}
END_TEST

START_TEST(test_signer_changed_to_registered_key_is_badsig)
{
	struct env e = seal(ka, SNIPE_MSG_NOTE, "x", 1);
	struct unpacked u = unpack(&e);
	Snipe__EnvelopeContent c = *u.c;
	uint8_t id[SNIPE_KEYID_BYTES];
	struct env t;

	snipe_keyid(snipe_key_public(kb), id);
	c.signer.data = id;
	c.signer.len = sizeof(id);
	t = rebuild(&c, &u.env->signature);
	assert_code(open_fresh(t.buf, t.len, SNIPE_MSG_NOTE), SNIPE_EBADSIG);
	env_free(&t);
	unpacked_free(&u);
	env_free(&e);
}
END_TEST

START_TEST(test_signer_changed_to_unknown_key_is_unknownsigner)
{
	struct env e = seal(ka, SNIPE_MSG_NOTE, "x", 1);
	struct unpacked u = unpack(&e);
	Snipe__EnvelopeContent c = *u.c;
	uint8_t id[SNIPE_KEYID_BYTES];
	struct env t;

	snipe_keyid(snipe_key_public(kc), id);
	c.signer.data = id;
	c.signer.len = sizeof(id);
	t = rebuild(&c, &u.env->signature);
	assert_code(open_fresh(t.buf, t.len, SNIPE_MSG_NOTE), SNIPE_EUNKNOWNSIGNER);
	env_free(&t);

	/* one flipped bit of the real id is just as unknown */
	memcpy(id, u.c->signer.data, sizeof(id));
	id[9] ^= 0x80;
	t = rebuild(&c, &u.env->signature);
	assert_code(open_fresh(t.buf, t.len, SNIPE_MSG_NOTE), SNIPE_EUNKNOWNSIGNER);
	env_free(&t);
	unpacked_free(&u);
	env_free(&e);
}
END_TEST

START_TEST(test_timestamp_changed_is_badsig)
{
	struct env e = seal(ka, SNIPE_MSG_NOTE, "x", 1);
	struct unpacked u = unpack(&e);
	Snipe__EnvelopeContent c = *u.c;
	struct env t;

	c.timestamp_ms = u.c->timestamp_ms + 1;
	t = rebuild(&c, &u.env->signature);
	assert_code(open_fresh(t.buf, t.len, SNIPE_MSG_NOTE), SNIPE_EBADSIG);
	env_free(&t);
	c.timestamp_ms = u.c->timestamp_ms - 1;
	t = rebuild(&c, &u.env->signature);
	assert_code(open_fresh(t.buf, t.len, SNIPE_MSG_NOTE), SNIPE_EBADSIG);
	env_free(&t);
	unpacked_free(&u);
	env_free(&e);
}
END_TEST

START_TEST(test_nonce_changed_is_badsig)
{
	struct env e = seal(ka, SNIPE_MSG_NOTE, "x", 1);
	struct unpacked u = unpack(&e);
	Snipe__EnvelopeContent c = *u.c;
	uint8_t nonce[SNIPE_NONCE_BYTES];
	struct env t;

	ck_assert_uint_eq(u.c->nonce.len, sizeof(nonce));
	memcpy(nonce, u.c->nonce.data, sizeof(nonce));
	nonce[7] ^= 0x04;
	c.nonce.data = nonce;
	t = rebuild(&c, &u.env->signature);
	assert_code(open_fresh(t.buf, t.len, SNIPE_MSG_NOTE), SNIPE_EBADSIG);
	env_free(&t);
	unpacked_free(&u);
	env_free(&e);
}
END_TEST

/* The signature is checked before the type, so a changed type is a bad signature. */
START_TEST(test_type_changed_is_badsig)
{
	struct env e = seal(ka, SNIPE_MSG_NOTE, "x", 1);
	struct unpacked u = unpack(&e);
	Snipe__EnvelopeContent c = *u.c;
	struct env t;

	c.type = (Snipe__MsgType)OTHER_TYPE;
	t = rebuild(&c, &u.env->signature);
	assert_code(open_fresh(t.buf, t.len, SNIPE_MSG_NOTE), SNIPE_EBADSIG);
	assert_code(open_fresh(t.buf, t.len, OTHER_TYPE), SNIPE_EBADSIG);
	assert_code(open_fresh(t.buf, t.len, SNIPE_MSG_ANY), SNIPE_EBADSIG);
	env_free(&t);
	unpacked_free(&u);
	env_free(&e);
}
END_TEST

START_TEST(test_body_changed_is_badsig)
{
	struct env e = seal(ka, SNIPE_MSG_NOTE, "pay 10", 6);
	struct unpacked u = unpack(&e);
	Snipe__EnvelopeContent c = *u.c;
	uint8_t body[6];
	struct env t;

	memcpy(body, u.c->body.data, sizeof(body));
	body[4] ^= 0x01;
	c.body.data = body;
	t = rebuild(&c, &u.env->signature);
	assert_code(open_fresh(t.buf, t.len, SNIPE_MSG_NOTE), SNIPE_EBADSIG);
	env_free(&t);

	/* dropping the body, or a byte of it, is a change too */
	c.body.len = 5;
	t = rebuild(&c, &u.env->signature);
	assert_code(open_fresh(t.buf, t.len, SNIPE_MSG_NOTE), SNIPE_EBADSIG);
	env_free(&t);
	c.body.len = 0;
	t = rebuild(&c, &u.env->signature);
	assert_code(open_fresh(t.buf, t.len, SNIPE_MSG_NOTE), SNIPE_EBADSIG);
	env_free(&t);
	unpacked_free(&u);
	env_free(&e);
}
END_TEST

START_TEST(test_every_signature_bit_flip_is_badsig)
{
	struct env e = seal(ka, SNIPE_MSG_NOTE, "sig", 3);
	snipe_verifier *v = verifier(SNIPE_SKEW_DEFAULT_MS, 64, NULL);

	for (unsigned bit = 0; bit < 8 * SNIPE_SIG_BYTES; bit++) {
		struct env t = flip_sig_bit(&e, bit);
		int rc = try_open(v, t.buf, t.len, SNIPE_MSG_NOTE);

		ck_assert_msg(rc == SNIPE_EBADSIG, "signature bit %u: got %s", bit,
		              snipe_errname(rc));
		env_free(&t);
	}
	ck_assert_uint_eq(snipe_verifier_cached(v), 0);
	assert_code(try_open(v, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_OK);
	snipe_verifier_free(v);
	env_free(&e);
}
END_TEST

START_TEST(test_signature_by_other_key_is_badsig)
{
	struct content_fields f;
	struct env e;

	make_content(&f, ka, snipe_now_ms(), "claims to be a");
	e = sign_content(kb, ENV_DOMAIN, &f.c);
	assert_code(open_fresh(e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_EBADSIG);
	env_free(&e);
}
END_TEST

/* A signature made for another purpose does not verify as an envelope. */
START_TEST(test_signature_under_other_domain_is_badsig)
{
	static const char *const domains[] = { "snipe/envelope/v2", "snipe/envelope",
		                               "snipe/envelope/v1\x01", "" };
	struct content_fields f;

	make_content(&f, ka, snipe_now_ms(), "domain");
	for (size_t i = 0; i < sizeof(domains) / sizeof(domains[0]); i++) {
		struct env e = sign_content(ka, domains[i], &f.c);

		assert_code(open_fresh(e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_EBADSIG);
		env_free(&e);
	}
}
END_TEST

/* Correctly signed, but a field has the wrong length: malformed, whatever else is true. */
START_TEST(test_wrong_field_lengths_are_edecode)
{
	static const size_t signer_lens[] = { 0, 1, 9, 11, 32 };
	static const size_t nonce_lens[] = { 0, 1, 15, 17, 32 };
	static const size_t sig_lens[] = { 0, 1, 63, 65, 128 };
	uint8_t big[SNIPE_PK_BYTES];
	struct content_fields f;
	struct env e;

	make_content(&f, ka, snipe_now_ms(), "lengths");
	memset(big, 0, sizeof(big));
	memcpy(big, f.signer, sizeof(f.signer));
	for (size_t i = 0; i < sizeof(signer_lens) / sizeof(signer_lens[0]); i++) {
		Snipe__EnvelopeContent c = f.c;

		c.signer.data = big;
		c.signer.len = signer_lens[i];
		e = sign_content(ka, ENV_DOMAIN, &c);
		ck_assert_msg(open_fresh(e.buf, e.len, SNIPE_MSG_NOTE) == SNIPE_EDECODE,
		              "signer of %zu bytes not EDECODE", signer_lens[i]);
		env_free(&e);
	}

	memset(big, 0x5a, sizeof(big));
	for (size_t i = 0; i < sizeof(nonce_lens) / sizeof(nonce_lens[0]); i++) {
		Snipe__EnvelopeContent c = f.c;

		c.nonce.data = big;
		c.nonce.len = nonce_lens[i];
		e = sign_content(ka, ENV_DOMAIN, &c);
		ck_assert_msg(open_fresh(e.buf, e.len, SNIPE_MSG_NOTE) == SNIPE_EDECODE,
		              "nonce of %zu bytes not EDECODE", nonce_lens[i]);
		env_free(&e);
	}

	for (size_t i = 0; i < sizeof(sig_lens) / sizeof(sig_lens[0]); i++) {
		uint8_t sig[128];
		size_t clen;
		uint8_t *content = pack_content(&f.c, &clen);

		memset(sig, 0, sizeof(sig));
		ck_assert_int_eq(snipe_sign(ka, ENV_DOMAIN, content, clen, sig), SNIPE_OK);
		e = pack_env(content, clen, sig, sig_lens[i]);
		ck_assert_msg(open_fresh(e.buf, e.len, SNIPE_MSG_NOTE) == SNIPE_EDECODE,
		              "signature of %zu bytes not EDECODE", sig_lens[i]);
		env_free(&e);
		free(content);
	}

	/* and the well-formed original opens */
	e = sign_content(ka, ENV_DOMAIN, &f.c);
	assert_code(open_fresh(e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_OK);
	env_free(&e);
}
END_TEST

/* A valid signature over bytes that are not an EnvelopeContent. */
START_TEST(test_signed_garbage_content_is_edecode)
{
	static const uint8_t junk[][6] = {
		{ 0xff, 0xff, 0xff, 0xff, 0xff, 0xff }, /* unterminated varint tag */
		{ 0x0a, 0x50, 0x00, 0x00, 0x00, 0x00 }, /* signer longer than the data */
		{ 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00 }, /* wire type 7 */
	};
	uint8_t sig[SNIPE_SIG_BYTES];

	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		struct env e;

		ck_assert_int_eq(snipe_sign(ka, ENV_DOMAIN, junk[i], sizeof(junk[i]), sig),
		                 SNIPE_OK);
		e = pack_env(junk[i], sizeof(junk[i]), sig, sizeof(sig));
		ck_assert_msg(open_fresh(e.buf, e.len, SNIPE_MSG_ANY) == SNIPE_EDECODE,
		              "junk %zu not EDECODE", i);
		env_free(&e);
	}
}
END_TEST

/* Every single-byte change of a small sealed envelope is refused, and none crashes. */
START_TEST(test_every_byte_flip_is_rejected)
{
	static const uint8_t masks[] = { 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff };
	struct env e = seal(ka, SNIPE_MSG_NOTE, "flip me", 7);
	snipe_verifier *v = verifier(SNIPE_SKEW_DEFAULT_MS, 1024, NULL);

	for (size_t pos = 0; pos < e.len; pos++) {
		for (size_t j = 0; j < sizeof(masks); j++) {
			uint8_t *t = exact_copy(e.buf, e.len);
			int rc;

			t[pos] ^= masks[j];
			rc = try_open(v, t, e.len, SNIPE_MSG_NOTE);
			ck_assert_msg(rc == SNIPE_EDECODE || rc == SNIPE_EUNKNOWNSIGNER ||
			                      rc == SNIPE_EBADSIG,
			              "byte %zu of %zu ^ 0x%02x: got %s", pos, e.len, masks[j],
			              snipe_errname(rc));
			free(t);
		}
	}
	ck_assert_uint_eq(snipe_verifier_cached(v), 0);
	assert_code(try_open(v, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_OK);
	snipe_verifier_free(v);
	env_free(&e);
}
END_TEST

/* The keyring is borrowed, not copied: removing a key takes effect at once. */
START_TEST(test_removed_key_is_unknownsigner)
{
	snipe_verifier *v = verifier(SNIPE_SKEW_DEFAULT_MS, 64, NULL);
	struct env e = seal(kb, SNIPE_MSG_NOTE, "x", 1);
	uint8_t id[SNIPE_KEYID_BYTES];

	snipe_keyid(snipe_key_public(kb), id);
	assert_code(snipe_keyring_remove(kr, id), SNIPE_OK);
	assert_code(try_open(v, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_EUNKNOWNSIGNER);
	snipe_verifier_free(v);
	env_free(&e);
}
END_TEST

/* -------------------------------------------------------------------- type */

START_TEST(test_open_with_other_type_is_wrongtype)
{
	snipe_verifier *v = verifier(SNIPE_SKEW_DEFAULT_MS, 64, NULL);
	struct env e = seal(ka, SNIPE_MSG_NOTE, "x", 1);

	assert_code(try_open(v, e.buf, e.len, OTHER_TYPE), SNIPE_EWRONGTYPE);
	assert_code(try_open(v, e.buf, e.len, 0xffffffffu), SNIPE_EWRONGTYPE);
	snipe_verifier_free(v);
	env_free(&e);
}
END_TEST

START_TEST(test_open_with_any_type_accepts)
{
	snipe_verifier *v = verifier(SNIPE_SKEW_DEFAULT_MS, 64, NULL);
	struct env e = seal(ka, SNIPE_MSG_NOTE, "any", 3);
	snipe_env_msg m;

	memset(&m, 0, sizeof(m));
	assert_code(snipe_env_open(v, e.buf, e.len, SNIPE_MSG_ANY, &m, NULL, 0), SNIPE_OK);
	ck_assert_uint_eq(m.type, SNIPE_MSG_NOTE);
	ck_assert_uint_eq(m.body_len, 3);
	snipe_env_msg_clear(&m);
	snipe_verifier_free(v);
	env_free(&e);
}
END_TEST

/* -------------------------------------------------------------------- skew */

START_TEST(test_default_skew_is_30_seconds)
{
	ck_assert_uint_eq(SNIPE_SKEW_DEFAULT_MS, 30000);
}
END_TEST

/* |now - timestamp| <= skew passes, one millisecond more does not, both directions. */
static void check_window(uint32_t skew)
{
	struct fake_clock clk = { T0 };
	snipe_verifier *v = verifier(skew, 64, &clk);
	struct env e;

	e = note_at(ka, T0 - skew - 1);
	assert_code(try_open(v, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_ESKEW);
	env_free(&e);
	e = note_at(ka, T0 + skew + 1);
	assert_code(try_open(v, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_ESKEW);
	env_free(&e);
	e = note_at(ka, T0 - skew);
	assert_code(try_open(v, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_OK);
	env_free(&e);
	e = note_at(ka, T0 + skew);
	assert_code(try_open(v, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_OK);
	env_free(&e);
	e = note_at(ka, T0);
	assert_code(try_open(v, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_OK);
	env_free(&e);
	snipe_verifier_free(v);
}

START_TEST(test_default_skew_window_is_inclusive)
{
	check_window(SNIPE_SKEW_DEFAULT_MS);
}
END_TEST

START_TEST(test_custom_skew_window_is_inclusive)
{
	check_window(1);
	check_window(250);
	check_window(3600000);
}
END_TEST

/* The distance is |now - timestamp| as numbers, not modulo 2^64. */
START_TEST(test_extreme_timestamps_are_skew)
{
	static const uint64_t far[] = { 0, 1, T0 - 10000000, T0 + 10000000, T0 + (1ull << 63),
		                        T0 - (1ull << 40), UINT64_MAX - 1, UINT64_MAX };
	struct fake_clock clk = { T0 };
	snipe_verifier *v = verifier(SNIPE_SKEW_DEFAULT_MS, 64, &clk);
	struct env e;

	for (size_t i = 0; i < sizeof(far) / sizeof(far[0]); i++) {
		e = note_at(ka, far[i]);
		ck_assert_msg(try_open(v, e.buf, e.len, SNIPE_MSG_NOTE) == SNIPE_ESKEW,
		              "timestamp %" PRIu64 " at now %" PRIu64 " not ESKEW", far[i],
		              clk.now);
		env_free(&e);
	}

	/* a clock near zero: UINT64_MAX is not "1001 ms ahead" */
	clk.now = 1000;
	e = note_at(ka, UINT64_MAX);
	assert_code(try_open(v, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_ESKEW);
	env_free(&e);
	e = note_at(ka, 0);
	assert_code(try_open(v, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_OK);
	env_free(&e);
	snipe_verifier_free(v);
}
END_TEST

/* ------------------------------------------------------------------ replay */

START_TEST(test_second_open_is_replay)
{
	snipe_verifier *v = verifier(SNIPE_SKEW_DEFAULT_MS, 64, NULL);
	struct env e = seal(ka, SNIPE_MSG_NOTE, "once", 4);

	ck_assert_uint_eq(snipe_verifier_cached(v), 0);
	assert_code(try_open(v, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_OK);
	ck_assert_uint_eq(snipe_verifier_cached(v), 1);
	assert_code(try_open(v, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_EREPLAY);
	assert_code(try_open(v, e.buf, e.len, SNIPE_MSG_ANY), SNIPE_EREPLAY);
	ck_assert_uint_eq(snipe_verifier_cached(v), 1);
	snipe_verifier_free(v);
	env_free(&e);
}
END_TEST

/* Each verifier has its own memory of nonces. */
START_TEST(test_replay_cache_is_per_verifier)
{
	snipe_verifier *v1 = verifier(SNIPE_SKEW_DEFAULT_MS, 64, NULL);
	snipe_verifier *v2 = verifier(SNIPE_SKEW_DEFAULT_MS, 64, NULL);
	struct env e = seal(ka, SNIPE_MSG_NOTE, "twice", 5);

	assert_code(try_open(v1, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_OK);
	assert_code(try_open(v2, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_OK);
	assert_code(try_open(v1, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_EREPLAY);
	assert_code(try_open(v2, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_EREPLAY);
	snipe_verifier_free(v1);
	snipe_verifier_free(v2);
	env_free(&e);
}
END_TEST

START_TEST(test_failed_open_does_not_consume_nonce)
{
	struct fake_clock clk = { T0 };
	snipe_verifier *v = verifier(SNIPE_SKEW_DEFAULT_MS, 64, &clk);
	struct env e;

	/* wrong type */
	e = note_at(ka, T0);
	assert_code(try_open(v, e.buf, e.len, OTHER_TYPE), SNIPE_EWRONGTYPE);
	ck_assert_uint_eq(snipe_verifier_cached(v), 0);
	assert_code(try_open(v, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_OK);
	assert_code(try_open(v, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_EREPLAY);
	env_free(&e);

	/* too early, then on time */
	e = note_at(ka, T0 + 40000);
	assert_code(try_open(v, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_ESKEW);
	ck_assert_uint_eq(snipe_verifier_cached(v), 1);
	clk.now = T0 + 20000;
	assert_code(try_open(v, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_OK);
	assert_code(try_open(v, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_EREPLAY);
	env_free(&e);

	/* unknown signer, then its key is added to the borrowed keyring */
	e = note_at(kc, clk.now);
	assert_code(try_open(v, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_EUNKNOWNSIGNER);
	ck_assert_uint_eq(snipe_verifier_cached(v), 2);
	assert_code(snipe_keyring_add(kr, snipe_key_public(kc)), SNIPE_OK);
	assert_code(try_open(v, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_OK);
	assert_code(try_open(v, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_EREPLAY);
	ck_assert_uint_eq(snipe_verifier_cached(v), 3);
	env_free(&e);
	snipe_verifier_free(v);
}
END_TEST

/* A nonce that failed its signature check is not remembered: the real one still opens. */
START_TEST(test_bad_signature_does_not_consume_nonce)
{
	snipe_verifier *v = verifier(SNIPE_SKEW_DEFAULT_MS, 64, NULL);
	struct env e = seal(ka, SNIPE_MSG_NOTE, "x", 1);
	struct env t = flip_sig_bit(&e, 100);

	assert_code(try_open(v, t.buf, t.len, SNIPE_MSG_NOTE), SNIPE_EBADSIG);
	ck_assert_uint_eq(snipe_verifier_cached(v), 0);
	assert_code(try_open(v, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_OK);
	snipe_verifier_free(v);
	env_free(&t);
	env_free(&e);
}
END_TEST

/* Decode, signer, signature, type, skew, replay: the first failing check names the code. */
START_TEST(test_checks_run_in_documented_order)
{
	struct fake_clock clk = { T0 };
	snipe_verifier *v = verifier(1000, 64, &clk);
	struct env e = note_at(ka, T0);
	struct env bad = flip_sig_bit(&e, 3);
	struct env ec = note_at(kc, T0);
	struct env ecbad = flip_sig_bit(&ec, 3);

	assert_code(try_open(v, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_OK);
	/* replayed, and: wrong type -> type wins */
	assert_code(try_open(v, e.buf, e.len, OTHER_TYPE), SNIPE_EWRONGTYPE);
	/* replayed, and: bad signature -> signature wins (even with the wrong type) */
	assert_code(try_open(v, bad.buf, bad.len, SNIPE_MSG_NOTE), SNIPE_EBADSIG);
	assert_code(try_open(v, bad.buf, bad.len, OTHER_TYPE), SNIPE_EBADSIG);
	/* unknown signer with a bad signature -> signer wins */
	assert_code(try_open(v, ecbad.buf, ecbad.len, OTHER_TYPE), SNIPE_EUNKNOWNSIGNER);

	clk.now = T0 + 5000;
	/* replayed and out of the window -> skew wins; wrong type still before skew */
	assert_code(try_open(v, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_ESKEW);
	assert_code(try_open(v, e.buf, e.len, OTHER_TYPE), SNIPE_EWRONGTYPE);
	assert_code(try_open(v, bad.buf, bad.len, OTHER_TYPE), SNIPE_EBADSIG);

	snipe_verifier_free(v);
	env_free(&ecbad);
	env_free(&ec);
	env_free(&bad);
	env_free(&e);
}
END_TEST

/* Cap 4, ten envelopes of increasing time: old ones are forgotten but never let back in. */
START_TEST(test_bounded_cache_refuses_evicted_and_older)
{
	struct fake_clock clk = { T0 + 100 };
	snipe_verifier *v = verifier(SNIPE_SKEW_DEFAULT_MS, 4, &clk);
	struct env e[10];
	struct env f;

	for (int i = 0; i < 10; i++) {
		e[i] = note_at(ka, T0 + (uint64_t)i);
		ck_assert_msg(try_open(v, e[i].buf, e[i].len, SNIPE_MSG_NOTE) == SNIPE_OK,
		              "envelope %d, newer than all before, refused", i);
		ck_assert_uint_le(snipe_verifier_cached(v), 4);
	}
	/*
	 * At least six of the ten were forgotten, all inside the window, so the refusal
	 * watermark is at least T0 + 5.
	 */
	for (int i = 0; i < 10; i++) {
		ck_assert_msg(try_open(v, e[i].buf, e[i].len, SNIPE_MSG_NOTE) == SNIPE_EREPLAY,
		              "replay of envelope %d let through", i);
		ck_assert_uint_le(snipe_verifier_cached(v), 4);
	}

	f = note_at(ka, T0 + 5); /* as old as an evicted one */
	assert_code(try_open(v, f.buf, f.len, SNIPE_MSG_NOTE), SNIPE_EREPLAY);
	env_free(&f);
	f = note_at(ka, T0); /* as old as the oldest */
	assert_code(try_open(v, f.buf, f.len, SNIPE_MSG_NOTE), SNIPE_EREPLAY);
	env_free(&f);
	f = note_at(kb, T0 - 1); /* older than all, other signer */
	assert_code(try_open(v, f.buf, f.len, SNIPE_MSG_NOTE), SNIPE_EREPLAY);
	env_free(&f);
	f = note_at(ka, T0 + 10); /* newer than all */
	assert_code(try_open(v, f.buf, f.len, SNIPE_MSG_NOTE), SNIPE_OK);
	ck_assert_uint_le(snipe_verifier_cached(v), 4);
	assert_code(try_open(v, f.buf, f.len, SNIPE_MSG_NOTE), SNIPE_EREPLAY);
	env_free(&f);

	for (int i = 0; i < 10; i++)
		env_free(&e[i]);
	snipe_verifier_free(v);
}
END_TEST

/*
 * Envelopes with random times inside the window (spread ms apart, so many are equal):
 * whatever the cache forgets, no accepted envelope is ever accepted twice, the count
 * stays within the cap, and one newer than everything accepted so far always opens.
 */
static void check_random_times(uint64_t spread)
{
	enum { N = 300, CAP = 4 };
	struct fake_clock clk = { T0 };
	snipe_verifier *v = verifier(SNIPE_SKEW_DEFAULT_MS, CAP, &clk);
	struct env acc[N];
	size_t nacc = 0;
	uint64_t newest = 0;

	for (int i = 0; i < N; i++) {
		uint64_t ts = T0 - spread / 2 + randombytes_uniform((uint32_t)spread);
		struct env e = note_at(ka, ts);
		int rc = try_open(v, e.buf, e.len, SNIPE_MSG_NOTE);

		ck_assert_msg(rc == SNIPE_OK || rc == SNIPE_EREPLAY, "step %d: %s", i,
		              snipe_errname(rc));
		if (nacc == 0 || ts > newest)
			ck_assert_msg(rc == SNIPE_OK, "step %d: newest envelope refused", i);
		ck_assert_uint_le(snipe_verifier_cached(v), CAP);
		if (rc == SNIPE_OK) {
			if (ts > newest)
				newest = ts;
			acc[nacc++] = e;
		} else {
			env_free(&e);
		}
		if (nacc > 0) {
			struct env *r = &acc[randombytes_uniform((uint32_t)nacc)];

			ck_assert_msg(try_open(v, r->buf, r->len, SNIPE_MSG_NOTE) == SNIPE_EREPLAY,
			              "step %d: a replay was let through", i);
		}
	}
	for (size_t i = 0; i < nacc; i++) {
		ck_assert_msg(try_open(v, acc[i].buf, acc[i].len, SNIPE_MSG_NOTE) == SNIPE_EREPLAY,
		              "accepted envelope %zu replayed at the end", i);
		env_free(&acc[i]);
	}
	ck_assert_uint_le(snipe_verifier_cached(v), CAP);
	snipe_verifier_free(v);
}

START_TEST(test_bounded_cache_random_times_never_admit_replay)
{
	check_random_times(20000);
}
END_TEST

START_TEST(test_bounded_cache_equal_times_never_admit_replay)
{
	check_random_times(3);
}
END_TEST

/*
 * Time moves on past the window. Whatever the cache drops, a remembered nonce whose
 * envelope is still inside the window is refused as a replay, and once outside, by
 * the skew check; the count never exceeds the cap.
 */
START_TEST(test_old_nonces_leave_by_skew_never_by_replay)
{
	enum { SKEW = 1000, CAP = 64 };
	struct fake_clock clk = { T0 };
	snipe_verifier *v = verifier(SKEW, CAP, &clk);
	struct env past = note_at(ka, T0 - SKEW);
	struct env future = note_at(ka, T0 + SKEW);
	struct env mid[3];
	struct env f;

	assert_code(try_open(v, past.buf, past.len, SNIPE_MSG_NOTE), SNIPE_OK);
	assert_code(try_open(v, future.buf, future.len, SNIPE_MSG_NOTE), SNIPE_OK);
	for (int i = 0; i < 3; i++) {
		mid[i] = note_at(kb, T0);
		assert_code(try_open(v, mid[i].buf, mid[i].len, SNIPE_MSG_NOTE), SNIPE_OK);
	}
	ck_assert_uint_eq(snipe_verifier_cached(v), 5);

	/* one past the window for `past`; `future` is at distance SKEW - 1 */
	clk.now = T0 + 1;
	assert_code(try_open(v, past.buf, past.len, SNIPE_MSG_NOTE), SNIPE_ESKEW);
	f = note_at(ka, clk.now);
	assert_code(try_open(v, f.buf, f.len, SNIPE_MSG_NOTE), SNIPE_OK);
	env_free(&f);
	assert_code(try_open(v, future.buf, future.len, SNIPE_MSG_NOTE), SNIPE_EREPLAY);
	assert_code(try_open(v, mid[0].buf, mid[0].len, SNIPE_MSG_NOTE), SNIPE_EREPLAY);
	ck_assert_uint_le(snipe_verifier_cached(v), 6);

	/* beyond the window of everything sealed at T0; `future` is still inside */
	clk.now = T0 + SKEW + 1;
	f = note_at(ka, clk.now);
	assert_code(try_open(v, f.buf, f.len, SNIPE_MSG_NOTE), SNIPE_OK);
	env_free(&f);
	for (int i = 0; i < 3; i++)
		assert_code(try_open(v, mid[i].buf, mid[i].len, SNIPE_MSG_NOTE), SNIPE_ESKEW);
	assert_code(try_open(v, future.buf, future.len, SNIPE_MSG_NOTE), SNIPE_EREPLAY);
	ck_assert_uint_le(snipe_verifier_cached(v), 7);

	/* the far edge of `future`'s window, inclusive */
	clk.now = T0 + 2 * SKEW;
	f = note_at(ka, clk.now);
	assert_code(try_open(v, f.buf, f.len, SNIPE_MSG_NOTE), SNIPE_OK);
	env_free(&f);
	assert_code(try_open(v, future.buf, future.len, SNIPE_MSG_NOTE), SNIPE_EREPLAY);

	/* and past it */
	clk.now = T0 + 2 * SKEW + 1;
	f = note_at(ka, clk.now);
	assert_code(try_open(v, f.buf, f.len, SNIPE_MSG_NOTE), SNIPE_OK);
	assert_code(try_open(v, future.buf, future.len, SNIPE_MSG_NOTE), SNIPE_ESKEW);
	assert_code(try_open(v, f.buf, f.len, SNIPE_MSG_NOTE), SNIPE_EREPLAY);
	ck_assert_uint_ge(snipe_verifier_cached(v), 1);
	ck_assert_uint_le(snipe_verifier_cached(v), 9);
	env_free(&f);

	for (int i = 0; i < 3; i++)
		env_free(&mid[i]);
	env_free(&future);
	env_free(&past);
	snipe_verifier_free(v);
}
END_TEST

/* A long quiet stream past the window, with a small cap: never above the cap. */
START_TEST(test_cache_stays_within_cap_as_time_passes)
{
	enum { CAP = 8, SKEW = 100 };
	struct fake_clock clk = { T0 };
	snipe_verifier *v = verifier(SKEW, CAP, &clk);

	for (int i = 0; i < 200; i++) {
		struct env e;

		clk.now = T0 + (uint64_t)i * 37;
		e = note_at(i % 2 ? ka : kb, clk.now - (uint64_t)(i % 5));
		assert_code(try_open(v, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_OK);
		ck_assert_uint_le(snipe_verifier_cached(v), CAP);
		assert_code(try_open(v, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_EREPLAY);
		env_free(&e);
	}
	snipe_verifier_free(v);
}
END_TEST

/* -------------------------------------------------------------------- args */

START_TEST(test_seal_type_zero_is_einval)
{
	uint8_t *out = NULL;
	size_t outlen = 0;

	assert_code(snipe_env_seal(ka, 0, "x", 1, &out, &outlen), SNIPE_EINVAL);
	assert_code(snipe_env_seal_at(ka, 0, T0, "x", 1, &out, &outlen), SNIPE_EINVAL);
	free(out);
}
END_TEST

START_TEST(test_open_empty_buffer_is_edecode)
{
	static const uint8_t nothing[1];
	snipe_verifier *v = verifier(SNIPE_SKEW_DEFAULT_MS, 64, NULL);

	assert_code(try_open(v, nothing, 0, SNIPE_MSG_NOTE), SNIPE_EDECODE);
	assert_code(try_open(v, nothing, 0, SNIPE_MSG_ANY), SNIPE_EDECODE);
	snipe_verifier_free(v);
}
END_TEST

START_TEST(test_msg_clear_of_null_or_zeroed_is_noop)
{
	snipe_env_msg m;

	snipe_env_msg_clear(NULL);
	memset(&m, 0, sizeof(m));
	snipe_env_msg_clear(&m);
	ck_assert_ptr_null(m.owner_);
	ck_assert_uint_eq(m.body_len, 0);
}
END_TEST

START_TEST(test_free_of_null_is_noop)
{
	snipe_verifier_free(NULL);
	snipe_keyring_free(NULL);
	snipe_key_free(NULL);
}
END_TEST

/* Every failure says why in err, within errlen; err may be NULL. */
START_TEST(test_open_failure_fills_err)
{
	struct fake_clock clk = { T0 };
	snipe_verifier *v = verifier(1000, 64, &clk);
	struct env ok = note_at(ka, T0);
	struct env bad = flip_sig_bit(&ok, 0);
	struct env unknown = note_at(kc, T0);
	struct env late = note_at(ka, T0 + 5000);
	static const uint8_t junk[] = { 0xff, 0xff, 0xff };
	const struct {
		const uint8_t *buf;
		size_t len;
		uint32_t type;
		int want;
	} cases[] = {
		{ junk, sizeof(junk), SNIPE_MSG_NOTE, SNIPE_EDECODE },
		{ unknown.buf, unknown.len, SNIPE_MSG_NOTE, SNIPE_EUNKNOWNSIGNER },
		{ bad.buf, bad.len, SNIPE_MSG_NOTE, SNIPE_EBADSIG },
		{ ok.buf, ok.len, OTHER_TYPE, SNIPE_EWRONGTYPE },
		{ late.buf, late.len, SNIPE_MSG_NOTE, SNIPE_ESKEW },
		{ ok.buf, ok.len, SNIPE_MSG_NOTE, SNIPE_EREPLAY },
	};

	assert_code(try_open(v, ok.buf, ok.len, SNIPE_MSG_NOTE), SNIPE_OK);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[128];
		char small[16];
		snipe_env_msg m;

		memset(&m, 0, sizeof(m));
		err[0] = '\0';
		assert_code(snipe_env_open(v, cases[i].buf, cases[i].len, cases[i].type, &m, err,
		                           sizeof(err)),
		            cases[i].want);
		ck_assert_msg(err[0] != '\0', "%s left err empty", snipe_errname(cases[i].want));

		memset(small, 'X', sizeof(small));
		assert_code(snipe_env_open(v, cases[i].buf, cases[i].len, cases[i].type, &m,
		                           small, 4),
		            cases[i].want);
		ck_assert_uint_lt(strnlen(small, 4), 4);
		for (size_t j = 4; j < sizeof(small); j++)
			ck_assert_msg(small[j] == 'X', "%s wrote past errlen",
			              snipe_errname(cases[i].want));

		assert_code(snipe_env_open(v, cases[i].buf, cases[i].len, cases[i].type, &m, NULL,
		                           0),
		            cases[i].want);
	}
	snipe_verifier_free(v);
	env_free(&late);
	env_free(&unknown);
	env_free(&bad);
	env_free(&ok);
}
END_TEST

/* -------------------------------------------------------------------- fuzz */

static bool is_rejection(int rc)
{
	return rc == SNIPE_EDECODE || rc == SNIPE_EUNKNOWNSIGNER || rc == SNIPE_EBADSIG;
}

START_TEST(test_every_prefix_is_rejected)
{
	static const size_t body_lens[] = { 0, 5, 300 };
	struct fake_clock clk = { T0 };
	snipe_verifier *v = verifier(SNIPE_SKEW_DEFAULT_MS, 64, &clk);
	uint8_t body[300];

	randombytes_buf(body, sizeof(body));
	for (size_t b = 0; b < sizeof(body_lens) / sizeof(body_lens[0]); b++) {
		struct env e = seal_at(ka, SNIPE_MSG_NOTE, T0, body, body_lens[b]);

		for (size_t n = 0; n < e.len; n++) {
			uint8_t *p = exact_copy(e.buf, n);
			int rc = try_open(v, p, n, SNIPE_MSG_NOTE);

			ck_assert_msg(rc == SNIPE_EDECODE || rc == SNIPE_EBADSIG,
			              "prefix %zu of %zu: got %s", n, e.len, snipe_errname(rc));
			free(p);
		}
		assert_code(try_open(v, e.buf, e.len, SNIPE_MSG_NOTE), SNIPE_OK);
		env_free(&e);
	}
	snipe_verifier_free(v);
}
END_TEST

START_TEST(test_random_buffers_are_rejected)
{
	enum { COUNT = 100000, MAXLEN = 300 };
	snipe_verifier *v = verifier(SNIPE_SKEW_DEFAULT_MS, 64, NULL);
	struct tu_rng r;

	tu_rng_init(&r, "test_envelope");
	for (int i = 0; i < COUNT; i++) {
		size_t n = tu_rng_below(&r, MAXLEN + 1);
		uint8_t *p = malloc(n ? n : 1);
		int rc;

		ck_assert_ptr_nonnull(p);
		tu_rng_bytes(&r, p, n);
		rc = try_open(v, p, n, i % 2 ? SNIPE_MSG_NOTE : SNIPE_MSG_ANY);
		ck_assert_msg(is_rejection(rc), "random buffer %d (%zu bytes): got %s", i, n,
		              snipe_errname(rc));
		free(p);
	}
	ck_assert_uint_eq(snipe_verifier_cached(v), 0);
	snipe_verifier_free(v);
}
END_TEST

/* A mutant that opened must carry the original's content and signature unchanged. */
static void check_benign(const uint8_t *buf, size_t len, const struct unpacked *orig)
{
	Snipe__Envelope *m = snipe__envelope__unpack(NULL, len, buf);

	ck_assert_msg(m != NULL, "accepted mutant does not decode");
	ck_assert_msg(m->content.len == orig->env->content.len &&
	                      memcmp(m->content.data, orig->env->content.data, m->content.len) == 0,
	              "accepted mutant has different content");
	ck_assert_msg(m->signature.len == orig->env->signature.len &&
	                      memcmp(m->signature.data, orig->env->signature.data,
	                             m->signature.len) == 0,
	              "accepted mutant has a different signature");
	snipe__envelope__free_unpacked(m, NULL);
}

START_TEST(test_mutations_never_crash_or_forge)
{
	enum { COUNT = 100000, SLACK = 8 };
	struct fake_clock clk = { T0 };
	snipe_verifier *v = verifier(SNIPE_SKEW_DEFAULT_MS, 64, &clk);
	struct env e = seal_at(ka, SNIPE_MSG_NOTE, T0, "mutate this body, please", 24);
	struct unpacked orig = unpack(&e);
	uint8_t *work = malloc(e.len + SLACK);
	struct tu_rng r;
	int accepted = 0;

	ck_assert_ptr_nonnull(work);
	tu_rng_init(&r, "test_envelope");
	for (int i = 0; i < COUNT; i++) {
		size_t n;
		uint8_t *p;
		int rc;

		memcpy(work, e.buf, e.len);
		n = tu_mutate(&r, work, e.len, e.len + SLACK);
		p = exact_copy(work, n);
		rc = try_open(v, p, n, SNIPE_MSG_NOTE);
		ck_assert_msg(rc == SNIPE_OK || is_rejection(rc), "mutant %d: got %s", i,
		              snipe_errname(rc));
		if (rc == SNIPE_OK) {
			/* benign: same signed bytes; start over so the nonce is fresh again */
			check_benign(p, n, &orig);
			accepted++;
			snipe_verifier_free(v);
			v = verifier(SNIPE_SKEW_DEFAULT_MS, 64, &clk);
		}
		free(p);
	}
	ck_assert_int_lt(accepted, COUNT);
	free(work);
	unpacked_free(&orig);
	env_free(&e);
	snipe_verifier_free(v);
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
	Suite *s = suite_create("envelope");
	TCase *tc;

	tc = tcase("roundtrip", 30);
	tcase_add_test(tc, test_round_trip_gives_body_signer_type_and_time);
	tcase_add_test(tc, test_round_trip_of_second_key_names_it);
	tcase_add_test(tc, test_empty_body_round_trips);
	tcase_add_test(tc, test_one_mib_body_round_trips);
	tcase_add_test(tc, test_sealed_bytes_follow_the_proto);
	tcase_add_test(tc, test_hand_made_envelope_opens);
	tcase_add_test(tc, test_each_seal_has_a_fresh_nonce);
	tcase_add_test(tc, test_seal_at_keeps_the_given_timestamp);
	tcase_add_test(tc, test_body_outlives_the_input_buffer);
	tcase_add_test(tc, test_cleared_msg_can_be_reused);
	suite_add_tcase(s, tc);

	tc = tcase("tamper", 30);
	tcase_add_test(tc, test_repacked_unchanged_content_opens);
	tcase_add_test(tc, test_signer_changed_to_registered_key_is_badsig);
	tcase_add_test(tc, test_signer_changed_to_unknown_key_is_unknownsigner);
	tcase_add_test(tc, test_timestamp_changed_is_badsig);
	tcase_add_test(tc, test_nonce_changed_is_badsig);
	tcase_add_test(tc, test_type_changed_is_badsig);
	tcase_add_test(tc, test_body_changed_is_badsig);
	tcase_add_test(tc, test_every_signature_bit_flip_is_badsig);
	tcase_add_test(tc, test_signature_by_other_key_is_badsig);
	tcase_add_test(tc, test_signature_under_other_domain_is_badsig);
	tcase_add_test(tc, test_wrong_field_lengths_are_edecode);
	tcase_add_test(tc, test_signed_garbage_content_is_edecode);
	tcase_add_test(tc, test_every_byte_flip_is_rejected);
	tcase_add_test(tc, test_removed_key_is_unknownsigner);
	suite_add_tcase(s, tc);

	tc = tcase("type", 30);
	tcase_add_test(tc, test_open_with_other_type_is_wrongtype);
	tcase_add_test(tc, test_open_with_any_type_accepts);
	suite_add_tcase(s, tc);

	tc = tcase("skew", 30);
	tcase_add_test(tc, test_default_skew_is_30_seconds);
	tcase_add_test(tc, test_default_skew_window_is_inclusive);
	tcase_add_test(tc, test_custom_skew_window_is_inclusive);
	tcase_add_test(tc, test_extreme_timestamps_are_skew);
	suite_add_tcase(s, tc);

	tc = tcase("replay", 30);
	tcase_add_test(tc, test_second_open_is_replay);
	tcase_add_test(tc, test_replay_cache_is_per_verifier);
	tcase_add_test(tc, test_failed_open_does_not_consume_nonce);
	tcase_add_test(tc, test_bad_signature_does_not_consume_nonce);
	tcase_add_test(tc, test_checks_run_in_documented_order);
	tcase_add_test(tc, test_bounded_cache_refuses_evicted_and_older);
	tcase_add_test(tc, test_bounded_cache_random_times_never_admit_replay);
	tcase_add_test(tc, test_bounded_cache_equal_times_never_admit_replay);
	tcase_add_test(tc, test_old_nonces_leave_by_skew_never_by_replay);
	tcase_add_test(tc, test_cache_stays_within_cap_as_time_passes);
	suite_add_tcase(s, tc);

	tc = tcase("args", 30);
	tcase_add_test(tc, test_seal_type_zero_is_einval);
	tcase_add_test(tc, test_open_empty_buffer_is_edecode);
	tcase_add_test(tc, test_msg_clear_of_null_or_zeroed_is_noop);
	tcase_add_test(tc, test_free_of_null_is_noop);
	tcase_add_test(tc, test_open_failure_fills_err);
	suite_add_tcase(s, tc);

	tc = tcase("fuzz", 120);
	tcase_add_test(tc, test_every_prefix_is_rejected);
	tcase_add_test(tc, test_random_buffers_are_rejected);
	tcase_add_test(tc, test_mutations_never_crash_or_forge);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(suite());
}
