/*
 * session.c — cheap authenticated envelopes between two parties that opened a
 * session: a signed SESSION_OPEN carrying an X25519 key (crypto_kx), then envelopes
 * MACed with the derived key (keyed BLAKE2b-256) and numbered against replay.
 * Confidentiality is not its job: bodies travel in the clear, as in signed envelopes.
 *
 * A receiver's session id names a slot of its table (first 4 bytes) plus 12 random
 * bytes, so lookup is an index and a compare, and a forgotten session's id never
 * matches again.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.pb-c.h"
#include "sni.h"

/* ------------------------------------------------------------------ the MAC */

static void session_mac(const uint8_t *key, const uint8_t *id, const uint8_t *content,
                        size_t len, uint8_t mac[SNI_MAC_BYTES])
{
	crypto_generichash_state st;
	crypto_generichash_init(&st, key, crypto_kx_SESSIONKEYBYTES, SNI_MAC_BYTES);
	crypto_generichash_update(&st, (const uint8_t *)SNI_DOMAIN_SESSION,
	                          sizeof(SNI_DOMAIN_SESSION));
	crypto_generichash_update(&st, id, SNIPE_SESSION_ID_BYTES);
	crypto_generichash_update(&st, content, len);
	crypto_generichash_final(&st, mac, SNI_MAC_BYTES);
}

/* ------------------------------------------------------------- the opener */

struct snipe_session {
	const snipe_key *key;
	uint8_t kx_pk[crypto_kx_PUBLICKEYBYTES], kx_sk[crypto_kx_SECRETKEYBYTES];
	uint8_t id[SNIPE_SESSION_ID_BYTES];
	uint8_t tx[crypto_kx_SESSIONKEYBYTES]; /* opener -> receiver */
	uint64_t counter;
	bool ready;
};

int snipe_session_begin(const snipe_key *k, snipe_session **out, uint8_t **env,
                        size_t *env_len)
{
	snipe_session *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return SNIPE_ENOMEM;
	s->key = k;
	crypto_kx_keypair(s->kx_pk, s->kx_sk);
	Snipe__SessionOpen open = SNIPE__SESSION_OPEN__INIT;
	open.kx_public = (ProtobufCBinaryData){sizeof(s->kx_pk), s->kx_pk};
	uint8_t body[64];
	size_t len = snipe__session_open__pack(&open, body);
	int rc = snipe_env_seal(k, SNIPE_MSG_SESSION_OPEN, body, len, env, env_len);
	if (rc != SNIPE_OK) {
		snipe_session_free(s);
		return rc;
	}
	*out = s;
	return SNIPE_OK;
}

int snipe_session_complete(snipe_session *s, const uint8_t *id, size_t id_len,
                           const uint8_t *kx_public, size_t kx_len)
{
	uint8_t rx[crypto_kx_SESSIONKEYBYTES];
	if (s->ready) /* its X25519 secret is gone: a second answer cannot be taken */
		return SNIPE_EINVAL;
	if (id_len != SNIPE_SESSION_ID_BYTES || kx_len != crypto_kx_PUBLICKEYBYTES ||
	    crypto_kx_client_session_keys(rx, s->tx, s->kx_pk, s->kx_sk, kx_public) != 0)
		return SNIPE_EDECODE;
	sodium_memzero(rx, sizeof(rx));
	sodium_memzero(s->kx_sk, sizeof(s->kx_sk));
	memcpy(s->id, id, SNIPE_SESSION_ID_BYTES);
	s->ready = true;
	return SNIPE_OK;
}

bool snipe_session_ready(const snipe_session *s)
{
	return s != NULL && s->ready;
}

void snipe_session_free(snipe_session *s)
{
	if (s == NULL)
		return;
	sodium_memzero(s, sizeof(*s));
	free(s);
}

int snipe_session_seal(snipe_session *s, uint32_t type, const void *body, size_t len,
                       uint8_t **out, size_t *outlen)
{
	if (!s->ready || type == SNIPE_MSG_SESSION_OPEN)
		return SNIPE_EINVAL;
	uint8_t *content = NULL, mac[SNI_MAC_BYTES];
	size_t clen = 0;
	int rc = sni_env_content(s->key, type, snipe_now_ms(), ++s->counter, body, len, &content,
	                         &clen);
	if (rc == SNIPE_OK) {
		session_mac(s->tx, s->id, content, clen, mac);
		rc = sni_env_pack(content, clen, NULL, s->id, mac, out, outlen);
	}
	free(content);
	return rc;
}

/* ------------------------------------------------------------ the receiver */

struct slot {
	bool used;
	uint8_t id[SNIPE_SESSION_ID_BYTES];
	uint8_t rx[crypto_kx_SESSIONKEYBYTES]; /* opener -> receiver */
	uint8_t signer[SNIPE_KEYID_BYTES];
	uint64_t counter;
	uint64_t last_used; /* ms: for the idle timeout */
	uint64_t recency;   /* the table's tick when last used: for eviction */
};

struct snipe_session_table {
	const snipe_keyring *kr;
	struct slot *slots;
	size_t cap, count;
	uint64_t tick; /* counts uses; orders sessions exactly, unlike the clock */
	uint32_t ttl_ms, skew_ms;
};

int snipe_session_table_new(const snipe_keyring *kr, size_t cap, uint32_t ttl_ms,
                            uint32_t skew_ms, snipe_session_table **out)
{
	if (kr == NULL || cap == 0 || cap > UINT32_MAX || sodium_init() < 0)
		return SNIPE_EINVAL;
	snipe_session_table *t = calloc(1, sizeof(*t));
	if (t == NULL || (t->slots = calloc(cap, sizeof(struct slot))) == NULL) {
		free(t);
		return SNIPE_ENOMEM;
	}
	t->kr = kr;
	t->cap = cap;
	t->ttl_ms = ttl_ms;
	t->skew_ms = skew_ms;
	*out = t;
	return SNIPE_OK;
}

void snipe_session_table_free(snipe_session_table *t)
{
	if (t == NULL)
		return;
	sodium_memzero(t->slots, t->cap * sizeof(struct slot));
	free(t->slots);
	free(t);
}

size_t snipe_session_count(const snipe_session_table *t)
{
	return t->count;
}

static void forget(snipe_session_table *t, struct slot *s)
{
	sodium_memzero(s, sizeof(*s));
	t->count--;
}

/* A free slot: an unused one, else an idle one, else the least recently used. */
static size_t free_slot(snipe_session_table *t, uint64_t now)
{
	size_t lru = 0;
	for (size_t i = 0; i < t->cap; i++) {
		struct slot *s = &t->slots[i];
		if (!s->used)
			return i;
		if (now - s->last_used > t->ttl_ms) {
			forget(t, s);
			return i;
		}
		if (s->recency < t->slots[lru].recency)
			lru = i;
	}
	forget(t, &t->slots[lru]);
	return lru;
}

int snipe_session_accept(snipe_session_table *t, const snipe_env_msg *m, uint8_t *id,
                         uint8_t *kx_public, char *err, size_t errlen)
{
	if (m->type != SNIPE_MSG_SESSION_OPEN)
		return sni_err(err, errlen, SNIPE_EWRONGTYPE, "session open: message type %u",
		               m->type);
	Snipe__SessionOpen *open = snipe__session_open__unpack(NULL, m->body_len, m->body);
	if (open == NULL || open->kx_public.len != crypto_kx_PUBLICKEYBYTES) {
		if (open != NULL)
			snipe__session_open__free_unpacked(open, NULL);
		return sni_err(err, errlen, SNIPE_EDECODE, "session open: malformed");
	}
	/* The key exchange first: a refused open must not cost a live session its slot. */
	uint8_t sk[crypto_kx_SECRETKEYBYTES], rx[crypto_kx_SESSIONKEYBYTES],
		tx[crypto_kx_SESSIONKEYBYTES];
	crypto_kx_keypair(kx_public, sk);
	int rc = crypto_kx_server_session_keys(rx, tx, kx_public, sk, open->kx_public.data);
	snipe__session_open__free_unpacked(open, NULL);
	sodium_memzero(sk, sizeof(sk));
	sodium_memzero(tx, sizeof(tx));
	if (rc != 0)
		return sni_err(err, errlen, SNIPE_EDECODE, "session open: unusable key");
	uint64_t now = snipe_now_ms();
	size_t i = free_slot(t, now);
	struct slot *s = &t->slots[i];
	memcpy(s->rx, rx, sizeof(rx));
	sodium_memzero(rx, sizeof(rx));
	s->id[0] = (uint8_t)(i >> 24);
	s->id[1] = (uint8_t)(i >> 16);
	s->id[2] = (uint8_t)(i >> 8);
	s->id[3] = (uint8_t)i;
	randombytes_buf(s->id + 4, SNIPE_SESSION_ID_BYTES - 4);
	memcpy(s->signer, m->signer, SNIPE_KEYID_BYTES);
	s->counter = 0;
	s->last_used = now;
	s->recency = ++t->tick;
	s->used = true;
	t->count++;
	memcpy(id, s->id, SNIPE_SESSION_ID_BYTES);
	return SNIPE_OK;
}

bool snipe_env_is_session(const uint8_t *buf, size_t len)
{
	Snipe__Envelope *e = len > 0 ? snipe__envelope__unpack(NULL, len, buf) : NULL;
	bool yes = e != NULL && e->session_id.len > 0;
	if (e != NULL)
		snipe__envelope__free_unpacked(e, NULL);
	return yes;
}

/* The live session an id names, or NULL. */
static struct slot *find(snipe_session_table *t, const ProtobufCBinaryData *id, uint64_t now)
{
	if (id->len != SNIPE_SESSION_ID_BYTES)
		return NULL;
	size_t i = (size_t)id->data[0] << 24 | (size_t)id->data[1] << 16 |
	           (size_t)id->data[2] << 8 | id->data[3];
	if (i >= t->cap)
		return NULL;
	struct slot *s = &t->slots[i];
	if (!s->used || sodium_memcmp(s->id, id->data, SNIPE_SESSION_ID_BYTES) != 0)
		return NULL;
	if (now - s->last_used > t->ttl_ms || snipe_keyring_find(t->kr, s->signer) == NULL) {
		forget(t, s);
		return NULL;
	}
	return s;
}

/* Checks the MAC, the content and the counter; on success the content is the
 * message's. */
static int open_in(snipe_session_table *t, struct slot *s, const Snipe__Envelope *e,
                   uint32_t type, uint64_t now, snipe_env_msg *out, char *err, size_t errlen)
{
	char signer[SNIPE_KEYID_HEX];
	snipe_keyid_hex(s->signer, signer);
	uint8_t mac[SNI_MAC_BYTES];
	session_mac(s->rx, s->id, e->content.data, e->content.len, mac);
	if (e->mac.len != SNI_MAC_BYTES || sodium_memcmp(mac, e->mac.data, SNI_MAC_BYTES) != 0)
		return sni_err(err, errlen, SNIPE_EBADSIG, "session envelope from %s: bad MAC",
		               signer);
	Snipe__EnvelopeContent *c = NULL;
	int rc = sni_env_decode_content(&e->content, &c, err, errlen);
	if (rc != SNIPE_OK)
		return rc;
	if (sodium_memcmp(c->signer.data, s->signer, SNIPE_KEYID_BYTES) != 0)
		rc = sni_err(err, errlen, SNIPE_EBADSIG, "session envelope: signer is not the "
		                                         "session's");
	if (rc == SNIPE_OK)
		rc = sni_env_check(c, type, now, t->skew_ms, signer, err, errlen);
	if (rc == SNIPE_OK && c->counter <= s->counter)
		rc = sni_err(err, errlen, SNIPE_EREPLAY, "session envelope from %s: counter %llu "
		             "is not above %llu", signer, (unsigned long long)c->counter,
		             (unsigned long long)s->counter);
	if (rc != SNIPE_OK) {
		snipe__envelope_content__free_unpacked(c, NULL);
		return rc;
	}
	s->counter = c->counter;
	s->last_used = now;
	s->recency = ++t->tick;
	sni_env_msg_fill(out, c);
	return SNIPE_OK;
}

int snipe_session_open(snipe_session_table *t, const uint8_t *buf, size_t len,
                       uint32_t type, snipe_env_msg *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	Snipe__Envelope *e = len > 0 ? snipe__envelope__unpack(NULL, len, buf) : NULL;
	if (e == NULL)
		return sni_err(err, errlen, SNIPE_EDECODE, "session envelope: does not decode");
	uint64_t now = snipe_now_ms();
	struct slot *s = find(t, &e->session_id, now);
	int rc = s != NULL ? open_in(t, s, e, type, now, out, err, errlen)
	                   : sni_err(err, errlen, SNIPE_ESESSION,
	                             "session unknown, expired or no longer trusted");
	snipe__envelope__free_unpacked(e, NULL);
	return rc;
}
