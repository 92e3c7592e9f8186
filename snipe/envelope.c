/*
 * envelope.c — signed envelopes: seal a body with a key, open and verify it against a
 * keyring, a time window and a replay cache. What a body means is the caller's business.
 *
 * The signature covers the serialised EnvelopeContent exactly as carried on the wire,
 * so opening verifies the received bytes and decodes them only afterwards.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.pb-c.h"
#include "sni.h"

/* ------------------------------------------------------------------- seal */

int sni_env_content(const snipe_key *k, uint32_t type, uint64_t timestamp_ms,
                    uint64_t counter, const void *body, size_t len, uint8_t **out,
                    size_t *outlen)
{
	if (k == NULL || type == SNIPE_MSG_ANY || (body == NULL && len > 0))
		return SNIPE_EINVAL;
	uint8_t signer[SNIPE_KEYID_BYTES], nonce[SNIPE_NONCE_BYTES];
	snipe_keyid(snipe_key_public(k), signer);
	randombytes_buf(nonce, sizeof(nonce));
	Snipe__EnvelopeContent c = SNIPE__ENVELOPE_CONTENT__INIT;
	c.signer = (ProtobufCBinaryData){sizeof(signer), signer};
	c.timestamp_ms = timestamp_ms;
	c.nonce = (ProtobufCBinaryData){sizeof(nonce), nonce};
	c.type = (Snipe__MsgType)type;
	c.body = (ProtobufCBinaryData){len, (uint8_t *)body};
	c.counter = counter;
	*outlen = snipe__envelope_content__get_packed_size(&c);
	*out = malloc(*outlen);
	if (*out == NULL)
		return SNIPE_ENOMEM;
	snipe__envelope_content__pack(&c, *out);
	return SNIPE_OK;
}

int sni_env_pack(const uint8_t *content, size_t clen, const uint8_t *sig,
                 const uint8_t *session_id, const uint8_t *mac, uint8_t **out,
                 size_t *outlen)
{
	Snipe__Envelope e = SNIPE__ENVELOPE__INIT;
	e.content = (ProtobufCBinaryData){clen, (uint8_t *)content};
	if (sig != NULL)
		e.signature = (ProtobufCBinaryData){SNIPE_SIG_BYTES, (uint8_t *)sig};
	if (session_id != NULL) {
		e.session_id = (ProtobufCBinaryData){SNIPE_SESSION_ID_BYTES, (uint8_t *)session_id};
		e.mac = (ProtobufCBinaryData){SNI_MAC_BYTES, (uint8_t *)mac};
	}
	*outlen = snipe__envelope__get_packed_size(&e);
	*out = malloc(*outlen);
	if (*out == NULL)
		return SNIPE_ENOMEM;
	snipe__envelope__pack(&e, *out);
	return SNIPE_OK;
}

int snipe_env_seal_at(const snipe_key *k, uint32_t type, uint64_t timestamp_ms,
                      const void *body, size_t len, uint8_t **out, size_t *outlen)
{
	uint8_t *content = NULL, sig[SNIPE_SIG_BYTES];
	size_t clen = 0;
	int rc = sni_env_content(k, type, timestamp_ms, 0, body, len, &content, &clen);
	if (rc == SNIPE_OK)
		rc = snipe_sign(k, SNI_DOMAIN_ENVELOPE, content, clen, sig);
	if (rc == SNIPE_OK)
		rc = sni_env_pack(content, clen, sig, NULL, NULL, out, outlen);
	free(content);
	return rc;
}

int snipe_env_seal(const snipe_key *k, uint32_t type, const void *body, size_t len,
                   uint8_t **out, size_t *outlen)
{
	return snipe_env_seal_at(k, type, snipe_now_ms(), body, len, out, outlen);
}

/* --------------------------------------------------------------- verifier */

struct snipe_verifier {
	const snipe_keyring *kr;
	uint32_t skew_ms;
	sni_replay *seen;
	uint64_t (*now_ms)(void *arg);
	void *now_arg;
};

static uint64_t wall_clock(void *arg)
{
	(void)arg;
	return snipe_now_ms();
}

int snipe_verifier_new(const snipe_keyring *kr, uint32_t skew_ms, size_t replay_cap,
                       snipe_verifier **out)
{
	if (kr == NULL || sodium_init() < 0)
		return SNIPE_EINVAL;
	snipe_verifier *v = calloc(1, sizeof(*v));
	if (v == NULL)
		return SNIPE_ENOMEM;
	int rc = sni_replay_new(replay_cap, &v->seen);
	if (rc != SNIPE_OK) {
		free(v);
		return rc;
	}
	v->kr = kr;
	v->skew_ms = skew_ms;
	v->now_ms = wall_clock;
	*out = v;
	return SNIPE_OK;
}

void snipe_verifier_free(snipe_verifier *v)
{
	if (v == NULL)
		return;
	sni_replay_free(v->seen);
	free(v);
}

void snipe_verifier_set_clock(snipe_verifier *v, uint64_t (*now_ms)(void *arg), void *arg)
{
	v->now_ms = now_ms != NULL ? now_ms : wall_clock;
	v->now_arg = arg;
}

size_t snipe_verifier_cached(const snipe_verifier *v)
{
	return sni_replay_count(v->seen);
}

/* ------------------------------------------------------------------- open */

void snipe_env_msg_clear(snipe_env_msg *m)
{
	if (m == NULL)
		return;
	if (m->owner_ != NULL)
		snipe__envelope_content__free_unpacked(m->owner_, NULL);
	memset(m, 0, sizeof(*m));
}

void sni_env_msg_fill(snipe_env_msg *out, Snipe__EnvelopeContent *c)
{
	memcpy(out->signer, c->signer.data, SNIPE_KEYID_BYTES);
	out->timestamp_ms = c->timestamp_ms;
	memcpy(out->nonce, c->nonce.data, SNIPE_NONCE_BYTES);
	out->type = (uint32_t)c->type;
	out->body = c->body.data;
	out->body_len = c->body.len;
	out->owner_ = c;
}

/* Decodes the outer envelope and checks its signature's shape. */
static int decode_outer(const uint8_t *buf, size_t len, Snipe__Envelope **out, char *err,
                        size_t errlen)
{
	Snipe__Envelope *e = len > 0 ? snipe__envelope__unpack(NULL, len, buf) : NULL;
	if (e == NULL)
		return sni_err(err, errlen, SNIPE_EDECODE, "envelope: not a valid envelope (%zu bytes)",
		               len);
	size_t siglen = e->signature.len;
	if (siglen != SNIPE_SIG_BYTES) {
		snipe__envelope__free_unpacked(e, NULL);
		return sni_err(err, errlen, SNIPE_EDECODE, "envelope: signature is %zu bytes, not %d",
		               siglen, SNIPE_SIG_BYTES);
	}
	*out = e;
	return SNIPE_OK;
}

int sni_env_decode_content(const ProtobufCBinaryData *bytes, Snipe__EnvelopeContent **out,
                           char *err, size_t errlen)
{
	Snipe__EnvelopeContent *c = snipe__envelope_content__unpack(NULL, bytes->len, bytes->data);
	if (c == NULL)
		return sni_err(err, errlen, SNIPE_EDECODE, "envelope: content does not decode");
	if (c->signer.len != SNIPE_KEYID_BYTES || c->nonce.len != SNIPE_NONCE_BYTES) {
		snipe__envelope_content__free_unpacked(c, NULL);
		return sni_err(err, errlen, SNIPE_EDECODE,
		               "envelope: signer id or nonce has the wrong length");
	}
	*out = c;
	return SNIPE_OK;
}

int sni_env_check(const Snipe__EnvelopeContent *c, uint32_t type, uint64_t now,
                  uint32_t skew_ms, const char *signer, char *err, size_t errlen)
{
	if ((uint32_t)c->type == SNIPE_MSG_ANY || (type != SNIPE_MSG_ANY && (uint32_t)c->type != type))
		return sni_err(err, errlen, SNIPE_EWRONGTYPE,
		               "envelope from %s: type %u where %u was expected", signer,
		               (unsigned)c->type, type);
	uint64_t ts = c->timestamp_ms;
	uint64_t diff = now > ts ? now - ts : ts - now;
	if (diff > skew_ms)
		return sni_err(err, errlen, SNIPE_ESKEW,
		               "envelope from %s: timestamp %llu is %llu ms %s this host's clock "
		               "(window %u ms)",
		               signer, (unsigned long long)ts, (unsigned long long)diff,
		               ts > now ? "ahead of" : "behind", skew_ms);
	return SNIPE_OK;
}

static int check_content(snipe_verifier *v, const Snipe__EnvelopeContent *c, uint32_t type,
                         const char *signer, char *err, size_t errlen)
{
	int rc = sni_env_check(c, type, v->now_ms(v->now_arg), v->skew_ms, signer, err, errlen);
	if (rc != SNIPE_OK)
		return rc;
	if (sni_replay_check(v->seen, c->nonce.data, c->timestamp_ms) != SNIPE_OK)
		return sni_err(err, errlen, SNIPE_EREPLAY, "envelope from %s: replayed nonce",
		               signer);
	return SNIPE_OK;
}

int snipe_env_open(snipe_verifier *v, const uint8_t *buf, size_t len, uint32_t type,
                   snipe_env_msg *out, char *err, size_t errlen)
{
	Snipe__Envelope *e = NULL;
	Snipe__EnvelopeContent *c = NULL;
	memset(out, 0, sizeof(*out));
	int rc = decode_outer(buf, len, &e, err, errlen);
	if (rc != SNIPE_OK)
		return rc;
	rc = sni_env_decode_content(&e->content, &c, err, errlen);
	if (rc != SNIPE_OK)
		goto out;

	char signer[SNIPE_KEYID_HEX];
	snipe_keyid_hex(c->signer.data, signer);
	const uint8_t *pk = snipe_keyring_find(v->kr, c->signer.data);
	if (pk == NULL) {
		rc = sni_err(err, errlen, SNIPE_EUNKNOWNSIGNER,
		             "envelope signed by unknown key %s", signer);
		goto out;
	}
	if (snipe_verify(pk, SNI_DOMAIN_ENVELOPE, e->content.data, e->content.len,
	                 e->signature.data) != SNIPE_OK) {
		rc = sni_err(err, errlen, SNIPE_EBADSIG, "envelope from %s: bad signature", signer);
		goto out;
	}
	rc = check_content(v, c, type, signer, err, errlen);
	if (rc != SNIPE_OK)
		goto out;

	uint64_t now = v->now_ms(v->now_arg);
	sni_replay_add(v->seen, c->nonce.data, c->timestamp_ms,
	               now > v->skew_ms ? now - v->skew_ms : 0);
	sni_env_msg_fill(out, c);
	c = NULL;
out:
	if (c != NULL)
		snipe__envelope_content__free_unpacked(c, NULL);
	snipe__envelope__free_unpacked(e, NULL);
	return rc;
}

int snipe_env_peek_signer(const uint8_t *buf, size_t len, uint8_t id[SNIPE_KEYID_BYTES])
{
	Snipe__Envelope *e = NULL;
	Snipe__EnvelopeContent *c = NULL;
	int rc = decode_outer(buf, len, &e, NULL, 0);
	if (rc == SNIPE_OK)
		rc = sni_env_decode_content(&e->content, &c, NULL, 0);
	if (rc == SNIPE_OK)
		memcpy(id, c->signer.data, SNIPE_KEYID_BYTES);
	if (c != NULL)
		snipe__envelope_content__free_unpacked(c, NULL);
	if (e != NULL)
		snipe__envelope__free_unpacked(e, NULL);
	return rc;
}
