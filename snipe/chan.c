/*
 * chan.c — message channels (sni.h, msg.proto): one signed hello exchange with
 * ephemeral X25519 keys (crypto_kx), then frames sealed with ChaCha20-Poly1305-IETF.
 * The nonce is the frame's counter, which only goes up, so a frame opens once; the
 * channel id is associated data, so a frame opens in its own channel only.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "sni.h"

#define AEAD_ABYTES crypto_aead_chacha20poly1305_ietf_ABYTES

static int pack_frame(const Snipe__ChanFrame *f, uint8_t **out, size_t *len)
{
	size_t n = snipe__chan_frame__get_packed_size(f);
	uint8_t *buf = malloc(n > 0 ? n : 1);
	if (buf == NULL)
		return SNIPE_ENOMEM;
	*len = snipe__chan_frame__pack(f, buf);
	*out = buf;
	return SNIPE_OK;
}

/* The envelope (signed by k) or the bare bytes (k NULL) of a ChanHello. */
static int hello_bytes(const snipe_key *k, const Snipe__ChanHello *h, uint8_t **out,
                       size_t *len)
{
	uint8_t body[512];
	size_t n = snipe__chan_hello__get_packed_size(h);
	if (n > sizeof(body))
		return SNIPE_EINVAL;
	n = snipe__chan_hello__pack(h, body);
	if (k != NULL)
		return snipe_env_seal(k, SNIPE_MSG_CHAN_HELLO, body, n, out, len);
	*out = malloc(n > 0 ? n : 1);
	if (*out == NULL)
		return SNIPE_ENOMEM;
	memcpy(*out, body, n);
	*len = n;
	return SNIPE_OK;
}

/* A ChanFrame holding h as its hello, or its welcome. */
static int hello_frame(const snipe_key *k, const Snipe__ChanHello *h, bool welcome,
                       uint8_t **frame, size_t *len)
{
	uint8_t *env = NULL;
	size_t envlen = 0;
	int rc = hello_bytes(k, h, &env, &envlen);
	if (rc != SNIPE_OK)
		return rc;
	Snipe__ChanFrame f = SNIPE__CHAN_FRAME__INIT;
	if (welcome)
		f.welcome = (ProtobufCBinaryData){envlen, env};
	else
		f.hello = (ProtobufCBinaryData){envlen, env};
	rc = pack_frame(&f, frame, len);
	free(env);
	return rc;
}

int sni_chan_hello(const snipe_key *k, const char *from, const char *to, sni_chan_opener *h,
                   uint8_t **frame, size_t *len)
{
	crypto_kx_keypair(h->kx_pk, h->kx_sk);
	randombytes_buf(h->nonce, sizeof(h->nonce));
	Snipe__ChanHello hello = SNIPE__CHAN_HELLO__INIT;
	hello.from = (char *)from;
	hello.to = (char *)(to != NULL ? to : "");
	hello.kx_public = (ProtobufCBinaryData){sizeof(h->kx_pk), h->kx_pk};
	hello.nonce = (ProtobufCBinaryData){sizeof(h->nonce), h->nonce};
	return hello_frame(k, &hello, false, frame, len);
}

int sni_chan_accept(const snipe_key *k, const char *from, const Snipe__ChanHello *hello,
                    sni_chan *ch, uint8_t **frame, size_t *len)
{
	uint8_t pk[crypto_kx_PUBLICKEYBYTES], sk[crypto_kx_SECRETKEYBYTES];
	if (hello->kx_public.len != sizeof(pk) || hello->nonce.len != 16)
		return SNIPE_EDECODE;
	crypto_kx_keypair(pk, sk);
	int bad = crypto_kx_server_session_keys(ch->rx, ch->tx, pk, sk, hello->kx_public.data);
	sodium_memzero(sk, sizeof(sk));
	if (bad != 0)
		return SNIPE_EDECODE;
	randombytes_buf(ch->id, sizeof(ch->id));
	ch->tx_counter = ch->rx_counter = 0;
	Snipe__ChanHello w = SNIPE__CHAN_HELLO__INIT;
	w.from = (char *)from;
	w.to = hello->from;
	w.kx_public = (ProtobufCBinaryData){sizeof(pk), pk};
	w.nonce = hello->nonce;
	w.id = (ProtobufCBinaryData){sizeof(ch->id), ch->id};
	return hello_frame(k, &w, true, frame, len);
}

int sni_chan_complete(sni_chan_opener *h, const Snipe__ChanHello *welcome, sni_chan *ch)
{
	int rc = SNIPE_OK;
	if (welcome->kx_public.len != crypto_kx_PUBLICKEYBYTES ||
	    welcome->nonce.len != sizeof(h->nonce) || welcome->id.len != SNI_CHAN_ID_BYTES ||
	    sodium_memcmp(welcome->nonce.data, h->nonce, sizeof(h->nonce)) != 0 ||
	    crypto_kx_client_session_keys(ch->rx, ch->tx, h->kx_pk, h->kx_sk,
	                                  welcome->kx_public.data) != 0)
		rc = SNIPE_EDECODE;
	else {
		memcpy(ch->id, welcome->id.data, SNI_CHAN_ID_BYTES);
		ch->tx_counter = ch->rx_counter = 0;
	}
	sodium_memzero(h, sizeof(*h));
	return rc;
}

static void nonce_of(uint64_t counter, uint8_t nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES])
{
	memset(nonce, 0, crypto_aead_chacha20poly1305_ietf_NPUBBYTES);
	for (int i = 0; i < 8; i++)
		nonce[4 + i] = (uint8_t)(counter >> (8 * i));
}

int sni_chan_seal(sni_chan *ch, const Snipe__ChanBody *body, uint8_t **frame, size_t *len)
{
	size_t n = snipe__chan_body__get_packed_size(body);
	uint8_t *plain = malloc(n > 0 ? n : 1), *sealed = malloc(n + AEAD_ABYTES);
	if (plain == NULL || sealed == NULL) {
		free(plain);
		free(sealed);
		return SNIPE_ENOMEM;
	}
	snipe__chan_body__pack(body, plain);
	uint8_t nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES];
	nonce_of(++ch->tx_counter, nonce);
	unsigned long long clen = 0;
	crypto_aead_chacha20poly1305_ietf_encrypt(sealed, &clen, plain, n, ch->id,
	                                          sizeof(ch->id), NULL, nonce, ch->tx);
	free(plain);
	Snipe__ChanFrame f = SNIPE__CHAN_FRAME__INIT;
	f.id = (ProtobufCBinaryData){sizeof(ch->id), ch->id};
	f.counter = ch->tx_counter;
	f.sealed = (ProtobufCBinaryData){(size_t)clen, sealed};
	int rc = pack_frame(&f, frame, len);
	free(sealed);
	return rc;
}

int sni_chan_open(sni_chan *ch, const Snipe__ChanFrame *f, Snipe__ChanBody **body)
{
	if (f->id.len != SNI_CHAN_ID_BYTES || memcmp(f->id.data, ch->id, SNI_CHAN_ID_BYTES) != 0 ||
	    f->sealed.len < AEAD_ABYTES)
		return SNIPE_EDECODE;
	if (f->counter <= ch->rx_counter)
		return SNIPE_EREPLAY;
	uint8_t nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES];
	nonce_of(f->counter, nonce);
	size_t n = f->sealed.len - AEAD_ABYTES;
	uint8_t *plain = malloc(n > 0 ? n : 1);
	if (plain == NULL)
		return SNIPE_ENOMEM;
	unsigned long long plen = 0;
	if (crypto_aead_chacha20poly1305_ietf_decrypt(plain, &plen, NULL, f->sealed.data,
	                                              f->sealed.len, ch->id, sizeof(ch->id),
	                                              nonce, ch->rx) != 0) {
		free(plain);
		return SNIPE_EBADSIG;
	}
	/* authentic: only now does the counter move, so a forged frame cannot block
	 * the real one that carries the same number */
	ch->rx_counter = f->counter;
	*body = snipe__chan_body__unpack(NULL, (size_t)plen, plain);
	free(plain);
	return *body != NULL ? SNIPE_OK : SNIPE_EDECODE;
}
