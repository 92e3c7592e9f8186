/*
 * test_chan.c — message channels (snipe/chan.c): the hello/accept/complete exchange
 * gives both sides matching keys, frames open on the other side in both directions and
 * follow msg.proto (checked with bare libsodium), and the exact code for a replayed,
 * older, damaged, truncated, reflected or foreign frame and for a welcome that does not
 * answer the hello; a frame that does not open moves no counter. Then random, mutated
 * and truncated frames, hellos and welcomes: nothing opens unless it is a real frame
 * not opened yet, and nothing crashes.
 *
 * Not here: the agents and the library that use channels (test_msg.c, test_msg_fuzz.c).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "envelope.pb-c.h"
#include "sni.h"
#include "snipe.h"
#include "testutil.h"

/* The wire contract, spelled out here rather than taken from the library. */
#define KX_BYTES 32
#define NONCE_BYTES 16
#define ID_BYTES 16
#define TAG_BYTES 16 /* ChaCha20-Poly1305-IETF */
#define OPENER "urn:snipe:proc:opener"
#define ANSWERER "host-b"
#define PEER_URN "urn:snipe:proc:peer"

/* ------------------------------------------------------------------ fixture */

/* ka signs hellos, kb welcomes; v opens what either signed. */
static snipe_key *ka, *kb;
static snipe_keyring *kr;
static snipe_verifier *v;

static void setup(void)
{
	ck_assert_int_eq(snipe_key_generate(&ka), SNIPE_OK);
	ck_assert_int_eq(snipe_key_generate(&kb), SNIPE_OK);
	ck_assert_int_eq(snipe_keyring_new(&kr), SNIPE_OK);
	ck_assert_int_eq(snipe_keyring_add(kr, snipe_key_public(ka)), SNIPE_OK);
	ck_assert_int_eq(snipe_keyring_add(kr, snipe_key_public(kb)), SNIPE_OK);
	ck_assert_int_eq(snipe_verifier_new(kr, SNIPE_SKEW_DEFAULT_MS, SNIPE_REPLAY_DEFAULT_CAP,
	                                    &v), SNIPE_OK);
}

static void teardown(void)
{
	snipe_verifier_free(v);
	snipe_keyring_free(kr);
	snipe_key_free(ka);
	snipe_key_free(kb);
	v = NULL;
	kr = NULL;
	ka = kb = NULL;
}

/* A packed frame, malloc'd. */
struct frame {
	uint8_t *buf;
	size_t len;
};

static void frame_free(struct frame *f)
{
	free(f->buf);
	f->buf = NULL;
	f->len = 0;
}

static Snipe__ChanFrame *unpack(const uint8_t *buf, size_t len)
{
	uint8_t *copy = tu_copy(buf, len);
	Snipe__ChanFrame *f = snipe__chan_frame__unpack(NULL, len, copy);
	free(copy);
	return f;
}

/* The ChanHello inside a signed hello or welcome envelope, checked by v. */
static Snipe__ChanHello *hello_of_env(const ProtobufCBinaryData *env, const snipe_key *signer)
{
	snipe_env_msg m = {0};
	uint8_t id[SNIPE_KEYID_BYTES];
	char err[256] = "";
	int rc = snipe_env_open(v, env->data, env->len, SNIPE_MSG_CHAN_HELLO, &m, err, sizeof(err));
	ck_assert_msg(rc == SNIPE_OK, "hello envelope: %s (%s)", snipe_errname(rc), err);
	snipe_keyid(snipe_key_public(signer), id);
	ck_assert_mem_eq(m.signer, id, sizeof(id));
	Snipe__ChanHello *h = snipe__chan_hello__unpack(NULL, m.body_len, m.body);
	ck_assert_ptr_nonnull(h);
	snipe_env_msg_clear(&m);
	return h;
}

/* Both ends of one channel, and the frames of the exchange that made it. */
struct pair {
	sni_chan a;         /* the opener (crypto_kx client) */
	sni_chan b;         /* the answerer */
	struct frame hello, welcome;
};

/* A hello by ka into *h and the hello frame; its checked ChanHello. */
static Snipe__ChanHello *make_hello(sni_chan_opener *h, struct frame *out)
{
	tu_assert_code(sni_chan_hello(ka, OPENER, "", h, &out->buf, &out->len), SNIPE_OK);
	Snipe__ChanFrame *f = unpack(out->buf, out->len);
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_gt(f->hello.len, 0);
	ck_assert_uint_eq(f->welcome.len, 0);
	Snipe__ChanHello *hello = hello_of_env(&f->hello, ka);
	snipe__chan_frame__free_unpacked(f, NULL);
	return hello;
}

/* The ChanHello of a welcome frame: signed by kb if signed, else bare. */
static Snipe__ChanHello *welcome_of(const struct frame *w, bool signed_)
{
	Snipe__ChanFrame *f = unpack(w->buf, w->len);
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(f->hello.len, 0);
	ck_assert_uint_gt(f->welcome.len, 0);
	Snipe__ChanHello *h = signed_ ? hello_of_env(&f->welcome, kb)
	                              : snipe__chan_hello__unpack(NULL, f->welcome.len,
	                                                          f->welcome.data);
	ck_assert_ptr_nonnull(h);
	snipe__chan_frame__free_unpacked(f, NULL);
	return h;
}

/* The whole exchange: a hello signed by ka, a welcome signed by kb (or bare). */
static void handshake(struct pair *p, bool signed_welcome)
{
	sni_chan_opener h;
	static const sni_chan_opener zero;
	memset(p, 0, sizeof(*p));
	Snipe__ChanHello *hello = make_hello(&h, &p->hello);
	tu_assert_code(sni_chan_accept(signed_welcome ? kb : NULL, ANSWERER, hello, &p->b,
	                               &p->welcome.buf, &p->welcome.len), SNIPE_OK);
	Snipe__ChanHello *w = welcome_of(&p->welcome, signed_welcome);
	tu_assert_code(sni_chan_complete(&h, w, &p->a), SNIPE_OK);
	ck_assert_mem_eq(&h, &zero, sizeof(h)); /* the opener's secret is wiped */
	snipe__chan_hello__free_unpacked(w, NULL);
	snipe__chan_hello__free_unpacked(hello, NULL);
}

static void pair_free(struct pair *p)
{
	frame_free(&p->hello);
	frame_free(&p->welcome);
	sodium_memzero(p, sizeof(*p));
}

/* ------------------------------------------------------------------- frames */

/* A body of one message: seq, and data "m<seq>". */
struct body {
	char data[32];
	uint8_t stream[16];
	Snipe__Msg msg;
	Snipe__Msg *msgs[1];
	Snipe__ChanBody b;
};

static void body_make(struct body *x, uint64_t seq)
{
	Snipe__Msg m = SNIPE__MSG__INIT;
	Snipe__ChanBody b = SNIPE__CHAN_BODY__INIT;
	snprintf(x->data, sizeof(x->data), "m%" PRIu64, seq);
	memset(x->stream, 0x5a, sizeof(x->stream));
	x->msg = m;
	x->msg.from = OPENER;
	x->msg.to = PEER_URN;
	x->msg.stream = (ProtobufCBinaryData){sizeof(x->stream), x->stream};
	x->msg.seq = seq;
	x->msg.tag = 7;
	x->msg.data = (ProtobufCBinaryData){strlen(x->data), (uint8_t *)x->data};
	x->msgs[0] = &x->msg;
	x->b = b;
	x->b.msgs = x->msgs;
	x->b.n_msgs = 1;
	x->b.accepted = seq * 10;
}

/* A frame sealed by ch holding message seq. */
static struct frame seal(sni_chan *ch, uint64_t seq)
{
	struct body x;
	struct frame f = {NULL, 0};
	body_make(&x, seq);
	tu_assert_code(sni_chan_seal(ch, &x.b, &f.buf, &f.len), SNIPE_OK);
	ck_assert_ptr_nonnull(f.buf);
	ck_assert_uint_gt(f.len, 0);
	return f;
}

/* Unpacks buf and opens it on ch; the body is checked to hold message seq if it opens
 * (seq 0: not checked) and freed. NULL frames (not a ChanFrame) give SNIPE_EDECODE. */
static int open_seq(sni_chan *ch, const uint8_t *buf, size_t len, uint64_t seq)
{
	Snipe__ChanFrame *f = unpack(buf, len);
	if (f == NULL)
		return SNIPE_EDECODE;
	Snipe__ChanBody *body = NULL;
	int rc = sni_chan_open(ch, f, &body);
	if (rc == SNIPE_OK) {
		ck_assert_ptr_nonnull(body);
		if (seq != 0) {
			char want[32];
			snprintf(want, sizeof(want), "m%" PRIu64, seq);
			ck_assert_uint_eq(body->n_msgs, 1);
			ck_assert_uint_eq(body->msgs[0]->seq, seq);
			ck_assert_uint_eq(body->accepted, seq * 10);
			ck_assert_str_eq(body->msgs[0]->from, OPENER);
			ck_assert_uint_eq(body->msgs[0]->data.len, strlen(want));
			ck_assert_mem_eq(body->msgs[0]->data.data, want, strlen(want));
		}
		snipe__chan_body__free_unpacked(body, NULL);
	}
	snipe__chan_frame__free_unpacked(f, NULL);
	return rc;
}

static int open_frame(sni_chan *ch, const struct frame *f, uint64_t seq)
{
	return open_seq(ch, f->buf, f->len, seq);
}

/* A frame packed from its fields (malloc'd). */
static struct frame pack_fields(const uint8_t *id, size_t idlen, uint64_t counter,
                                const uint8_t *sealed, size_t sealedlen)
{
	Snipe__ChanFrame m = SNIPE__CHAN_FRAME__INIT;
	struct frame f;
	m.id = (ProtobufCBinaryData){idlen, (uint8_t *)id};
	m.counter = counter;
	m.sealed = (ProtobufCBinaryData){sealedlen, (uint8_t *)sealed};
	f.len = snipe__chan_frame__get_packed_size(&m);
	f.buf = malloc(f.len > 0 ? f.len : 1);
	ck_assert_ptr_nonnull(f.buf);
	ck_assert_uint_eq(snipe__chan_frame__pack(&m, f.buf), f.len);
	return f;
}

/* f with its counter replaced (the sealed bytes kept). */
static struct frame with_counter(const struct frame *in, uint64_t counter)
{
	Snipe__ChanFrame *f = unpack(in->buf, in->len);
	ck_assert_ptr_nonnull(f);
	struct frame out = pack_fields(f->id.data, f->id.len, counter, f->sealed.data,
	                               f->sealed.len);
	snipe__chan_frame__free_unpacked(f, NULL);
	return out;
}

/* ---------------------------------------------------------------- handshake */

/* Opener and answerer end with the same id, counters at zero, and each one's send key
 * the other's receive key; the two directions have different keys. */
START_TEST(test_handshake_gives_both_sides_matching_keys)
{
	static const uint8_t zero[32];
	struct pair p;
	handshake(&p, true);
	ck_assert_mem_eq(p.a.id, p.b.id, ID_BYTES);
	ck_assert_mem_eq(p.a.tx, p.b.rx, sizeof(p.a.tx));
	ck_assert_mem_eq(p.a.rx, p.b.tx, sizeof(p.a.rx));
	ck_assert(memcmp(p.a.tx, p.a.rx, sizeof(p.a.tx)) != 0);
	ck_assert(memcmp(p.a.tx, zero, sizeof(zero)) != 0);
	ck_assert(memcmp(p.a.id, zero, ID_BYTES) != 0);
	ck_assert_uint_eq(p.a.tx_counter, 0);
	ck_assert_uint_eq(p.a.rx_counter, 0);
	ck_assert_uint_eq(p.b.tx_counter, 0);
	ck_assert_uint_eq(p.b.rx_counter, 0);
	pair_free(&p);
}
END_TEST

/* The hello carries from, to, a 32-byte key and a 16-byte nonce, no id; the welcome
 * names both sides, repeats the nonce, and carries its own key and the channel's id. */
START_TEST(test_hello_and_welcome_follow_the_proto)
{
	sni_chan_opener h;
	struct frame hf = {NULL, 0}, wf = {NULL, 0};
	sni_chan b;
	Snipe__ChanHello *hello = make_hello(&h, &hf);
	ck_assert_str_eq(hello->from, OPENER);
	ck_assert_str_eq(hello->to, "");
	ck_assert_uint_eq(hello->kx_public.len, KX_BYTES);
	ck_assert_mem_eq(hello->kx_public.data, h.kx_pk, KX_BYTES);
	ck_assert_uint_eq(hello->nonce.len, NONCE_BYTES);
	ck_assert_mem_eq(hello->nonce.data, h.nonce, NONCE_BYTES);
	ck_assert_uint_eq(hello->id.len, 0);
	tu_assert_code(sni_chan_accept(kb, ANSWERER, hello, &b, &wf.buf, &wf.len), SNIPE_OK);
	Snipe__ChanHello *w = welcome_of(&wf, true);
	ck_assert_str_eq(w->from, ANSWERER);
	ck_assert_str_eq(w->to, OPENER);
	ck_assert_uint_eq(w->kx_public.len, KX_BYTES);
	ck_assert(memcmp(w->kx_public.data, h.kx_pk, KX_BYTES) != 0);
	ck_assert_uint_eq(w->nonce.len, NONCE_BYTES);
	ck_assert_mem_eq(w->nonce.data, h.nonce, NONCE_BYTES);
	ck_assert_uint_eq(w->id.len, ID_BYTES);
	ck_assert_mem_eq(w->id.data, b.id, ID_BYTES);
	ck_assert_int_eq(w->code, 0);
	snipe__chan_hello__free_unpacked(w, NULL);
	snipe__chan_hello__free_unpacked(hello, NULL);
	sodium_memzero(&h, sizeof(h));
	frame_free(&hf);
	frame_free(&wf);
}
END_TEST

/* The welcome of a process channel is a bare ChanHello (k NULL): it completes as well. */
START_TEST(test_bare_welcome_completes)
{
	struct pair p;
	handshake(&p, false);
	ck_assert_mem_eq(p.a.id, p.b.id, ID_BYTES);
	ck_assert_mem_eq(p.a.tx, p.b.rx, sizeof(p.a.tx));
	ck_assert_mem_eq(p.a.rx, p.b.tx, sizeof(p.a.rx));
	struct frame f = seal(&p.a, 1);
	tu_assert_code(open_frame(&p.b, &f, 1), SNIPE_OK);
	frame_free(&f);
	pair_free(&p);
}
END_TEST

/* Two exchanges by the same keys make unrelated channels. */
START_TEST(test_two_channels_have_different_ids_and_keys)
{
	struct pair p, q;
	handshake(&p, true);
	handshake(&q, true);
	ck_assert(memcmp(p.a.id, q.a.id, ID_BYTES) != 0);
	ck_assert(memcmp(p.a.tx, q.a.tx, sizeof(p.a.tx)) != 0);
	ck_assert(memcmp(p.a.rx, q.a.rx, sizeof(p.a.rx)) != 0);
	pair_free(&p);
	pair_free(&q);
}
END_TEST

/* A welcome whose nonce is not the hello's (one bit, or another hello's) is
 * SNIPE_EDECODE, the opener is wiped all the same and the channel is left as it was. */
START_TEST(test_welcome_not_echoing_the_nonce_is_edecode)
{
	static const sni_chan_opener zero;
	for (int round = 0; round < 2; round++) {
		sni_chan_opener h, other;
		struct frame hf = {NULL, 0}, of = {NULL, 0}, wf = {NULL, 0};
		sni_chan a, b;
		Snipe__ChanHello *hello = make_hello(&h, &hf);
		Snipe__ChanHello *ohello = make_hello(&other, &of);
		/* round 0: the welcome answers another hello; 1: one bit of the nonce differs */
		const Snipe__ChanHello *answered = round == 0 ? ohello : hello;
		tu_assert_code(sni_chan_accept(kb, ANSWERER, answered, &b, &wf.buf, &wf.len),
		               SNIPE_OK);
		Snipe__ChanHello *w = welcome_of(&wf, true);
		if (round == 1)
			w->nonce.data[NONCE_BYTES - 1] ^= 0x01;
		memset(&a, 0xa5, sizeof(a));
		sni_chan before = a;
		tu_assert_code(sni_chan_complete(&h, w, &a), SNIPE_EDECODE);
		ck_assert_mem_eq(&h, &zero, sizeof(h));
		ck_assert_mem_eq(&a, &before, sizeof(a));
		snipe__chan_hello__free_unpacked(w, NULL);
		snipe__chan_hello__free_unpacked(ohello, NULL);
		snipe__chan_hello__free_unpacked(hello, NULL);
		sodium_memzero(&other, sizeof(other));
		frame_free(&hf);
		frame_free(&of);
		frame_free(&wf);
	}
}
END_TEST

/* A welcome with a key, nonce or id of the wrong length, or an all-zero key (a
 * low-order point), is SNIPE_EDECODE. */
START_TEST(test_welcome_with_wrong_lengths_or_zero_key_is_edecode)
{
	static const uint8_t zero[KX_BYTES];
	for (int c = 0; c < 7; c++) {
		sni_chan_opener h;
		struct frame hf = {NULL, 0}, wf = {NULL, 0};
		sni_chan a, b;
		Snipe__ChanHello *hello = make_hello(&h, &hf);
		tu_assert_code(sni_chan_accept(kb, ANSWERER, hello, &b, &wf.buf, &wf.len),
		               SNIPE_OK);
		Snipe__ChanHello *w = welcome_of(&wf, true);
		ProtobufCBinaryData keep_kx = w->kx_public, keep_id = w->id;
		switch (c) {
		case 0: w->kx_public.len = KX_BYTES - 1; break;
		case 1: w->kx_public.len = 0; break;
		case 2: w->nonce.len = NONCE_BYTES - 1; break;
		case 3: w->nonce.len = 0; break;
		case 4: w->id.len = ID_BYTES - 1; break;
		case 5: w->id.len = 0; break;
		default: w->kx_public.data = (uint8_t *)zero; break;
		}
		tu_assert_code(sni_chan_complete(&h, w, &a), SNIPE_EDECODE);
		w->kx_public = keep_kx;
		w->id = keep_id;
		w->nonce.len = NONCE_BYTES;
		snipe__chan_hello__free_unpacked(w, NULL);
		snipe__chan_hello__free_unpacked(hello, NULL);
		frame_free(&hf);
		frame_free(&wf);
	}
}
END_TEST

/* A hello with a key or nonce of the wrong length, or an all-zero key, is refused by the
 * answerer with SNIPE_EDECODE and no frame. */
START_TEST(test_accept_of_bad_hello_is_edecode)
{
	static const uint8_t zero[KX_BYTES];
	for (int c = 0; c < 5; c++) {
		sni_chan_opener h;
		struct frame hf = {NULL, 0};
		sni_chan b;
		uint8_t *frame = NULL;
		size_t len = 0;
		Snipe__ChanHello *hello = make_hello(&h, &hf);
		ProtobufCBinaryData keep_kx = hello->kx_public;
		size_t keep_nonce = hello->nonce.len;
		switch (c) {
		case 0: hello->kx_public.len = KX_BYTES + 1; break;
		case 1: hello->kx_public.len = 0; break;
		case 2: hello->nonce.len = NONCE_BYTES - 1; break;
		case 3: hello->nonce.len = 0; break;
		default: hello->kx_public.data = (uint8_t *)zero; break;
		}
		tu_assert_code(sni_chan_accept(kb, ANSWERER, hello, &b, &frame, &len),
		               SNIPE_EDECODE);
		ck_assert_ptr_null(frame);
		hello->kx_public = keep_kx;
		hello->nonce.len = keep_nonce;
		snipe__chan_hello__free_unpacked(hello, NULL);
		sodium_memzero(&h, sizeof(h));
		frame_free(&hf);
	}
}
END_TEST

/* ------------------------------------------------------------------- frames */

/* Frames open on the other side in both directions, each with its own counter. */
START_TEST(test_frames_open_in_both_directions)
{
	struct pair p;
	handshake(&p, true);
	for (uint64_t i = 1; i <= 5; i++) {
		struct frame ab = seal(&p.a, i), ba = seal(&p.b, 100 + i);
		ck_assert_uint_eq(p.a.tx_counter, i);
		ck_assert_uint_eq(p.b.tx_counter, i);
		tu_assert_code(open_frame(&p.b, &ab, i), SNIPE_OK);
		tu_assert_code(open_frame(&p.a, &ba, 100 + i), SNIPE_OK);
		ck_assert_uint_eq(p.a.rx_counter, i);
		ck_assert_uint_eq(p.b.rx_counter, i);
		frame_free(&ab);
		frame_free(&ba);
	}
	pair_free(&p);
}
END_TEST

/* What seal writes is msg.proto: id, counter, and ChaCha20-Poly1305-IETF of the packed
 * body under the sender's key, nonce = 4 zero bytes then the counter little-endian,
 * associated data = id. Checked with bare libsodium. */
START_TEST(test_sealed_frame_follows_the_proto)
{
	struct pair p;
	handshake(&p, true);
	struct frame skip = seal(&p.a, 1), fr = seal(&p.a, 2);
	Snipe__ChanFrame *f = unpack(fr.buf, fr.len);
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(f->hello.len, 0);
	ck_assert_uint_eq(f->welcome.len, 0);
	ck_assert_uint_eq(f->id.len, ID_BYTES);
	ck_assert_mem_eq(f->id.data, p.a.id, ID_BYTES);
	ck_assert_uint_eq(f->counter, 2);
	struct body x;
	body_make(&x, 2);
	size_t n = snipe__chan_body__get_packed_size(&x.b);
	ck_assert_uint_eq(f->sealed.len, n + TAG_BYTES);
	uint8_t nonce[12] = {0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0};
	uint8_t *plain = malloc(n), *want = malloc(n);
	unsigned long long plen = 0;
	ck_assert_ptr_nonnull(plain);
	ck_assert_ptr_nonnull(want);
	ck_assert_int_eq(crypto_aead_chacha20poly1305_ietf_decrypt(plain, &plen, NULL,
	                                                           f->sealed.data, f->sealed.len,
	                                                           p.a.id, ID_BYTES, nonce,
	                                                           p.b.rx), 0);
	ck_assert_uint_eq(plen, n);
	snipe__chan_body__pack(&x.b, want);
	ck_assert_mem_eq(plain, want, n);
	free(plain);
	free(want);
	snipe__chan_frame__free_unpacked(f, NULL);
	frame_free(&skip);
	frame_free(&fr);
	pair_free(&p);
}
END_TEST

/* The same frame again is SNIPE_EREPLAY, and changes nothing. */
START_TEST(test_replayed_frame_is_ereplay)
{
	struct pair p;
	handshake(&p, true);
	struct frame f = seal(&p.a, 1);
	tu_assert_code(open_frame(&p.b, &f, 1), SNIPE_OK);
	sni_chan before = p.b;
	for (int i = 0; i < 3; i++)
		tu_assert_code(open_frame(&p.b, &f, 1), SNIPE_EREPLAY);
	ck_assert_mem_eq(&p.b, &before, sizeof(before));
	frame_free(&f);
	pair_free(&p);
}
END_TEST

/* Counters may skip but never go back: once frame 3 opened, the authentic frames 1 and 2
 * are SNIPE_EREPLAY; frame 4 still opens. */
START_TEST(test_frame_below_the_last_opened_is_ereplay_even_if_authentic)
{
	struct pair p;
	handshake(&p, true);
	struct frame f[4];
	for (int i = 0; i < 4; i++)
		f[i] = seal(&p.a, (uint64_t)i + 1);
	tu_assert_code(open_frame(&p.b, &f[2], 3), SNIPE_OK);
	ck_assert_uint_eq(p.b.rx_counter, 3);
	tu_assert_code(open_frame(&p.b, &f[0], 1), SNIPE_EREPLAY);
	tu_assert_code(open_frame(&p.b, &f[1], 2), SNIPE_EREPLAY);
	ck_assert_uint_eq(p.b.rx_counter, 3);
	tu_assert_code(open_frame(&p.b, &f[3], 4), SNIPE_OK);
	ck_assert_uint_eq(p.b.rx_counter, 4);
	for (int i = 0; i < 4; i++)
		frame_free(&f[i]);
	pair_free(&p);
}
END_TEST

/* A forged frame moves no counter: not one that carries the next counter, nor one that
 * claims UINT64_MAX; the real frame with that counter still opens afterwards. */
START_TEST(test_forged_frame_does_not_advance_the_counter)
{
	struct pair p;
	handshake(&p, true);
	struct frame real = seal(&p.a, 1);
	Snipe__ChanFrame *f = unpack(real.buf, real.len);
	ck_assert_ptr_nonnull(f);
	uint8_t *bad = tu_copy(f->sealed.data, f->sealed.len);
	bad[0] ^= 0x01;
	struct frame same = pack_fields(f->id.data, f->id.len, 1, bad, f->sealed.len);
	struct frame max = pack_fields(f->id.data, f->id.len, UINT64_MAX, f->sealed.data,
	                               f->sealed.len);
	struct frame later = with_counter(&real, 2);
	sni_chan before = p.b;
	tu_assert_code(open_frame(&p.b, &same, 0), SNIPE_EBADSIG);
	tu_assert_code(open_frame(&p.b, &max, 0), SNIPE_EBADSIG);
	tu_assert_code(open_frame(&p.b, &later, 0), SNIPE_EBADSIG); /* the counter is the nonce */
	ck_assert_mem_eq(&p.b, &before, sizeof(before));
	tu_assert_code(open_frame(&p.b, &real, 1), SNIPE_OK);
	ck_assert_uint_eq(p.b.rx_counter, 1);
	frame_free(&same);
	frame_free(&max);
	frame_free(&later);
	free(bad);
	snipe__chan_frame__free_unpacked(f, NULL);
	frame_free(&real);
	pair_free(&p);
}
END_TEST

/*
 * Every byte of a small frame, flipped in turn by several masks: the result never opens.
 * It is SNIPE_EDECODE (not a frame, not this channel's id, or too short) or SNIPE_EBADSIG,
 * or SNIPE_EREPLAY exactly when the damaged counter is not above the last opened; the
 * receiver is unchanged each time, and the real frame then opens.
 */
START_TEST(test_every_byte_flip_is_refused)
{
	static const uint8_t masks[] = {0x01, 0x02, 0x10, 0x80, 0xff};
	struct pair p;
	handshake(&p, true);
	struct frame first = seal(&p.a, 1), fr = seal(&p.a, 2);
	tu_assert_code(open_frame(&p.b, &first, 1), SNIPE_OK);
	sni_chan before = p.b;
	size_t counts[3] = {0, 0, 0};
	for (size_t i = 0; i < fr.len; i++)
		for (size_t k = 0; k < sizeof(masks); k++) {
			uint8_t *m = tu_copy(fr.buf, fr.len);
			m[i] ^= masks[k];
			Snipe__ChanFrame *f = unpack(m, fr.len);
			int rc = open_seq(&p.b, m, fr.len, 0);
			bool replay = f != NULL && f->id.len == ID_BYTES &&
			              memcmp(f->id.data, p.b.id, ID_BYTES) == 0 &&
			              f->sealed.len >= TAG_BYTES && f->counter <= p.b.rx_counter;
			bool right = replay ? rc == SNIPE_EREPLAY
			                    : rc == SNIPE_EDECODE || rc == SNIPE_EBADSIG;
			ck_assert_msg(right, "byte %zu ^ 0x%02x: got %s", i, masks[k],
			              snipe_errname(rc));
			ck_assert_mem_eq(&p.b, &before, sizeof(before));
			counts[rc == SNIPE_EDECODE ? 0 : rc == SNIPE_EBADSIG ? 1 : 2]++;
			if (f != NULL)
				snipe__chan_frame__free_unpacked(f, NULL);
			free(m);
		}
	fprintf(stderr, "byte flips of a %zu-byte frame: %zu EDECODE, %zu EBADSIG, %zu EREPLAY\n",
	        fr.len, counts[0], counts[1], counts[2]);
	ck_assert_uint_gt(counts[0], 0);
	ck_assert_uint_gt(counts[1], 0);
	tu_assert_code(open_frame(&p.b, &fr, 2), SNIPE_OK);
	frame_free(&first);
	frame_free(&fr);
	pair_free(&p);
}
END_TEST

/* Every proper prefix of a frame is refused: not a ChanFrame, or SNIPE_EDECODE. */
START_TEST(test_truncated_frame_is_refused)
{
	struct pair p;
	handshake(&p, true);
	struct frame fr = seal(&p.a, 1);
	sni_chan before = p.b;
	for (size_t n = 0; n < fr.len; n++) {
		int rc = open_seq(&p.b, fr.buf, n, 0);
		ck_assert_msg(rc == SNIPE_EDECODE, "prefix %zu of %zu: got %s", n, fr.len,
		              snipe_errname(rc));
		ck_assert_mem_eq(&p.b, &before, sizeof(before));
	}
	tu_assert_code(open_frame(&p.b, &fr, 1), SNIPE_OK);
	frame_free(&fr);
	pair_free(&p);
}
END_TEST

/* A frame of another channel is SNIPE_EDECODE; one that carries this channel's id but
 * was sealed with another channel's key is SNIPE_EBADSIG. Neither moves the counter. */
START_TEST(test_frame_of_another_channel_is_edecode)
{
	struct pair p, q;
	handshake(&p, true);
	handshake(&q, true);
	struct frame fq = seal(&q.a, 1);
	sni_chan before = p.b;
	tu_assert_code(open_frame(&p.b, &fq, 0), SNIPE_EDECODE);
	sni_chan spoof = q.a;
	memcpy(spoof.id, p.a.id, ID_BYTES);
	struct frame fs = seal(&spoof, 1);
	tu_assert_code(open_frame(&p.b, &fs, 0), SNIPE_EBADSIG);
	ck_assert_mem_eq(&p.b, &before, sizeof(before));
	tu_assert_code(open_frame(&q.b, &fq, 1), SNIPE_OK);
	frame_free(&fq);
	frame_free(&fs);
	pair_free(&p);
	pair_free(&q);
}
END_TEST

/* A frame sent back to the side that sealed it (same id, same counter) does not open:
 * the two directions have different keys. */
START_TEST(test_reflected_frame_is_ebadsig)
{
	struct pair p;
	handshake(&p, true);
	struct frame f = seal(&p.a, 1);
	tu_assert_code(open_frame(&p.a, &f, 0), SNIPE_EBADSIG);
	ck_assert_uint_eq(p.a.rx_counter, 0);
	tu_assert_code(open_frame(&p.b, &f, 1), SNIPE_OK);
	frame_free(&f);
	pair_free(&p);
}
END_TEST

/* Frames with fields of the wrong length, or none at all, are SNIPE_EDECODE. */
START_TEST(test_frame_with_wrong_field_lengths_is_edecode)
{
	struct pair p;
	handshake(&p, true);
	uint8_t sealed[TAG_BYTES + 8];
	randombytes_buf(sealed, sizeof(sealed));
	struct frame cases[] = {
		pack_fields(p.a.id, ID_BYTES - 1, 1, sealed, sizeof(sealed)),
		pack_fields(p.a.id, 0, 1, sealed, sizeof(sealed)),
		pack_fields(p.a.id, ID_BYTES, 1, sealed, TAG_BYTES - 1),
		pack_fields(p.a.id, ID_BYTES, 1, sealed, 0),
		pack_fields(NULL, 0, 0, NULL, 0),
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tu_assert_code(open_frame(&p.b, &cases[i], 0), SNIPE_EDECODE);
		frame_free(&cases[i]);
	}
	ck_assert_uint_eq(p.b.rx_counter, 0);
	pair_free(&p);
}
END_TEST

/* An authentic frame whose plaintext is not a ChanBody is SNIPE_EDECODE (only the peer
 * can make one: its counter is used). */
START_TEST(test_authentic_frame_with_bad_body_is_edecode)
{
	struct pair p;
	handshake(&p, true);
	static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff};
	uint8_t sealed[sizeof(junk) + TAG_BYTES];
	uint8_t nonce[12] = {0, 0, 0, 0, 1};
	unsigned long long clen = 0;
	crypto_aead_chacha20poly1305_ietf_encrypt(sealed, &clen, junk, sizeof(junk), p.a.id,
	                                          ID_BYTES, NULL, nonce, p.a.tx);
	struct frame f = pack_fields(p.a.id, ID_BYTES, 1, sealed, (size_t)clen);
	tu_assert_code(open_frame(&p.b, &f, 0), SNIPE_EDECODE);
	tu_assert_code(open_frame(&p.b, &f, 0), SNIPE_EREPLAY);
	frame_free(&f);
	pair_free(&p);
}
END_TEST

/* --------------------------------------------------------------------- fuzz */

/* Random bytes: when they decode as a ChanFrame at all, they never open. */
START_TEST(test_random_buffers_never_open)
{
	enum { COUNT = 20000, MAXLEN = 200 };
	struct pair p;
	struct tu_rng r;
	handshake(&p, true);
	sni_chan before = p.b;
	size_t decoded = 0;
	tu_rng_init(&r, "test_chan");
	for (int i = 0; i < COUNT; i++) {
		size_t n = tu_rng_below(&r, MAXLEN + 1);
		uint8_t *buf = malloc(n ? n : 1);
		ck_assert_ptr_nonnull(buf);
		tu_rng_bytes(&r, buf, n);
		Snipe__ChanFrame *f = unpack(buf, n);
		decoded += f != NULL;
		if (f != NULL)
			snipe__chan_frame__free_unpacked(f, NULL);
		int rc = open_seq(&p.b, buf, n, 0);
		ck_assert_msg(rc == SNIPE_EDECODE, "random buffer %d (%zu bytes): got %s", i, n,
		              snipe_errname(rc));
		free(buf);
	}
	fprintf(stderr, "random buffers: %zu of %d decoded as a ChanFrame\n", decoded, COUNT);
	ck_assert_mem_eq(&p.b, &before, sizeof(before));
	struct frame f = seal(&p.a, 1);
	tu_assert_code(open_frame(&p.b, &f, 1), SNIPE_OK);
	frame_free(&f);
	pair_free(&p);
}
END_TEST

/* Random sealed bytes and counters under this channel's id (so they reach the AEAD):
 * SNIPE_EBADSIG, SNIPE_EDECODE if too short, SNIPE_EREPLAY for counter 0; nothing moves. */
START_TEST(test_random_frames_with_the_channel_id_never_open)
{
	enum { COUNT = 20000, MAXLEN = 120 };
	struct pair p;
	struct tu_rng r;
	handshake(&p, true);
	sni_chan before = p.b;
	tu_rng_init(&r, "test_chan");
	for (int i = 0; i < COUNT; i++) {
		size_t n = tu_rng_below(&r, MAXLEN + 1);
		uint8_t sealed[MAXLEN];
		uint64_t counter = 0;
		tu_rng_bytes(&r, sealed, n);
		tu_rng_bytes(&r, &counter, sizeof(counter));
		if (i % 4 == 0)
			counter %= 8; /* small counters too, 0 among them */
		struct frame f = pack_fields(p.a.id, ID_BYTES, counter, sealed, n);
		int rc = open_frame(&p.b, &f, 0);
		int want = n < TAG_BYTES ? SNIPE_EDECODE
		           : counter == 0 ? SNIPE_EREPLAY : SNIPE_EBADSIG;
		ck_assert_msg(rc == want, "random frame %d (counter %" PRIu64 ", %zu bytes): "
		              "got %s, want %s", i, counter, n, snipe_errname(rc),
		              snipe_errname(want));
		frame_free(&f);
	}
	ck_assert_mem_eq(&p.b, &before, sizeof(before));
	pair_free(&p);
}
END_TEST

/* A real frame: its bytes, its counter, whether it was opened. */
struct real {
	struct frame f;
	uint64_t counter;
};

/*
 * Mutants (tu_mutate) of real frames, and now and then a real frame as it is, fed to a
 * receiver in random order. A receiver that opens something opens a real frame not
 * opened yet and above the last one: the fields open reads (id, counter, sealed), packed
 * again, are byte-identical to such a frame. (Protobuf has more than one encoding of a
 * field, e.g. an over-long varint, and skips unknown fields, so a mutant's own bytes
 * may differ and still carry exactly a real frame.) Whatever does not open leaves the
 * receiver as it was. The receiver's counter follows a model of what opened.
 */
START_TEST(test_mutated_frames_open_only_as_real_unopened_frames)
{
	enum { COUNT = 30000, POOL = 32, SLACK = 8 };
	struct pair p;
	struct tu_rng r;
	struct real pool[POOL];
	handshake(&p, true);
	uint64_t model = 0; /* the last counter opened */
	size_t opened_mutants = 0, opened_real = 0, codes[3] = {0, 0, 0};
	tu_rng_init(&r, "test_chan");
	for (int i = 0; i < COUNT; i++) {
		if (i % 1000 == 0) { /* a fresh pool, above everything so far */
			if (i > 0)
				for (size_t k = 0; k < POOL; k++)
					frame_free(&pool[k].f);
			for (size_t k = 0; k < POOL; k++) {
				pool[k].f = seal(&p.a, p.a.tx_counter + 1);
				pool[k].counter = p.a.tx_counter;
			}
		}
		struct real *src = &pool[tu_rng_below(&r, POOL)];
		uint8_t *work = malloc(src->f.len + SLACK);
		ck_assert_ptr_nonnull(work);
		memcpy(work, src->f.buf, src->f.len);
		size_t n = tu_rng_below(&r, 50) == 0 ? src->f.len
		                                      : tu_mutate(&r, work, src->f.len,
		                                                  src->f.len + SLACK);
		sni_chan before = p.b;
		Snipe__ChanFrame *f = unpack(work, n);
		int rc = open_seq(&p.b, work, n, 0);
		if (rc == SNIPE_OK) {
			ck_assert_ptr_nonnull(f);
			struct frame canon = pack_fields(f->id.data, f->id.len, f->counter,
			                                 f->sealed.data, f->sealed.len);
			const struct real *match = NULL;
			for (size_t k = 0; k < POOL && match == NULL; k++)
				if (pool[k].f.len == canon.len &&
				    memcmp(pool[k].f.buf, canon.buf, canon.len) == 0)
					match = &pool[k];
			ck_assert_msg(match != NULL, "iteration %d: a frame not sealed opened", i);
			ck_assert_msg(match->counter > model, "iteration %d: frame %" PRIu64
			              " opened again (last %" PRIu64 ")", i, match->counter, model);
			model = match->counter;
			if (n == src->f.len && memcmp(work, src->f.buf, n) == 0)
				opened_real++;
			else
				opened_mutants++;
			frame_free(&canon);
		} else {
			ck_assert_msg(rc == SNIPE_EDECODE || rc == SNIPE_EBADSIG ||
			                      rc == SNIPE_EREPLAY,
			              "iteration %d: got %s", i, snipe_errname(rc));
			ck_assert_mem_eq(&p.b, &before, sizeof(before));
			codes[rc == SNIPE_EDECODE ? 0 : rc == SNIPE_EBADSIG ? 1 : 2]++;
		}
		ck_assert_uint_eq(p.b.rx_counter, model);
		if (f != NULL)
			snipe__chan_frame__free_unpacked(f, NULL);
		free(work);
	}
	fprintf(stderr, "mutants of real frames: %zu real and %zu re-encoded frames opened; "
	        "%zu EDECODE, %zu EBADSIG, %zu EREPLAY\n", opened_real, opened_mutants, codes[0],
	        codes[1], codes[2]);
	ck_assert_uint_gt(opened_real, 0);
	ck_assert_uint_gt(codes[1], 0);
	ck_assert_uint_gt(codes[2], 0);
	for (size_t k = 0; k < POOL; k++)
		frame_free(&pool[k].f);
	pair_free(&p);
}
END_TEST

/*
 * Mutants of a hello frame and of a bare welcome frame: whatever decodes goes to
 * sni_chan_accept or sni_chan_complete, which succeed only with a key and nonce of the
 * right length (and, for complete, the hello's nonce and an id). The welcome is not
 * authenticated here (the envelope or the local port does that), so a mutated key may
 * complete, but into a channel on which the answerer's frames do not open.
 */
START_TEST(test_mutated_hellos_and_welcomes_are_refused_or_harmless)
{
	enum { COUNT = 5000, SLACK = 8 };
	struct tu_rng r;
	size_t accepted = 0, completed = 0, useless = 0;
	tu_rng_init(&r, "test_chan");
	for (int i = 0; i < COUNT; i++) {
		sni_chan_opener h;
		struct frame hf = {NULL, 0}, wf = {NULL, 0};
		sni_chan a, b;
		Snipe__ChanHello *hello = make_hello(&h, &hf);
		tu_assert_code(sni_chan_accept(NULL, ANSWERER, hello, &b, &wf.buf, &wf.len),
		               SNIPE_OK);
		bool hello_side = i % 2 == 0;
		const struct frame *src = hello_side ? &hf : &wf;
		uint8_t *work = malloc(src->len + SLACK);
		ck_assert_ptr_nonnull(work);
		memcpy(work, src->buf, src->len);
		size_t n = tu_mutate(&r, work, src->len, src->len + SLACK);
		Snipe__ChanFrame *f = unpack(work, n);
		const ProtobufCBinaryData *inner = f == NULL ? NULL
		                                   : hello_side ? &f->hello : &f->welcome;
		Snipe__ChanHello *m = NULL;
		if (inner != NULL && hello_side) {
			/* the envelope is opened by the agent first: here, its body */
			Snipe__Envelope *env = snipe__envelope__unpack(NULL, inner->len,
			                                               inner->data);
			Snipe__EnvelopeContent *c = NULL;
			if (env != NULL &&
			    sni_env_decode_content(&env->content, &c, NULL, 0) == SNIPE_OK)
				m = snipe__chan_hello__unpack(NULL, c->body.len, c->body.data);
			if (c != NULL)
				snipe__envelope_content__free_unpacked(c, NULL);
			if (env != NULL)
				snipe__envelope__free_unpacked(env, NULL);
		} else if (inner != NULL)
			m = snipe__chan_hello__unpack(NULL, inner->len, inner->data);
		if (m != NULL && hello_side) {
			sni_chan b2;
			uint8_t *frame = NULL;
			size_t len = 0;
			int rc = sni_chan_accept(NULL, ANSWERER, m, &b2, &frame, &len);
			bool ok = m->kx_public.len == KX_BYTES && m->nonce.len == NONCE_BYTES;
			ck_assert_msg(rc == SNIPE_OK || (rc == SNIPE_EDECODE && frame == NULL),
			              "mutant hello %d: got %s", i, snipe_errname(rc));
			ck_assert_msg(ok || rc == SNIPE_EDECODE,
			              "mutant hello %d with a %zu-byte key and a %zu-byte nonce "
			              "accepted", i, m->kx_public.len, m->nonce.len);
			accepted += rc == SNIPE_OK;
			free(frame);
			sodium_memzero(&b2, sizeof(b2));
		} else if (m != NULL) {
			sni_chan_opener copy = h;
			int rc = sni_chan_complete(&copy, m, &a);
			bool ok = m->kx_public.len == KX_BYTES && m->nonce.len == NONCE_BYTES &&
			          memcmp(m->nonce.data, h.nonce, NONCE_BYTES) == 0 &&
			          m->id.len == ID_BYTES;
			ck_assert_msg(rc == SNIPE_OK || rc == SNIPE_EDECODE,
			              "mutant welcome %d: got %s", i, snipe_errname(rc));
			ck_assert_msg(ok || rc == SNIPE_EDECODE, "mutant welcome %d completed", i);
			if (rc == SNIPE_OK) {
				completed++;
				struct frame fb = seal(&b, 1);
				bool same = memcmp(a.id, b.id, ID_BYTES) == 0 &&
				            memcmp(a.rx, b.tx, sizeof(a.rx)) == 0;
				int orc = open_frame(&a, &fb, 1);
				ck_assert_msg(same ? orc == SNIPE_OK : orc != SNIPE_OK,
				              "mutant welcome %d: %s with %s keys", i,
				              snipe_errname(orc), same ? "the same" : "other");
				useless += !same;
				frame_free(&fb);
			}
		}
		if (m != NULL)
			snipe__chan_hello__free_unpacked(m, NULL);
		if (f != NULL)
			snipe__chan_frame__free_unpacked(f, NULL);
		free(work);
		snipe__chan_hello__free_unpacked(hello, NULL);
		sodium_memzero(&h, sizeof(h));
		sodium_memzero(&a, sizeof(a));
		sodium_memzero(&b, sizeof(b));
		frame_free(&hf);
		frame_free(&wf);
	}
	fprintf(stderr, "mutant hellos accepted: %zu; mutant welcomes completed: %zu (%zu into a "
	        "channel that does not work)\n", accepted, completed, useless);
}
END_TEST

/* -------------------------------------------------------------------- suite */

static TCase *tcase(const char *name, double timeout)
{
	TCase *tc = tcase_create(name);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, timeout);
	return tc;
}

static Suite *suite(void)
{
	Suite *s = suite_create("chan");
	TCase *tc;

	tc = tcase("handshake", 30);
	tcase_add_test(tc, test_handshake_gives_both_sides_matching_keys);
	tcase_add_test(tc, test_hello_and_welcome_follow_the_proto);
	tcase_add_test(tc, test_bare_welcome_completes);
	tcase_add_test(tc, test_two_channels_have_different_ids_and_keys);
	tcase_add_test(tc, test_welcome_not_echoing_the_nonce_is_edecode);
	tcase_add_test(tc, test_welcome_with_wrong_lengths_or_zero_key_is_edecode);
	tcase_add_test(tc, test_accept_of_bad_hello_is_edecode);
	suite_add_tcase(s, tc);

	tc = tcase("frames", 30);
	tcase_add_test(tc, test_frames_open_in_both_directions);
	tcase_add_test(tc, test_sealed_frame_follows_the_proto);
	tcase_add_test(tc, test_replayed_frame_is_ereplay);
	tcase_add_test(tc, test_frame_below_the_last_opened_is_ereplay_even_if_authentic);
	tcase_add_test(tc, test_forged_frame_does_not_advance_the_counter);
	tcase_add_test(tc, test_every_byte_flip_is_refused);
	tcase_add_test(tc, test_truncated_frame_is_refused);
	tcase_add_test(tc, test_frame_of_another_channel_is_edecode);
	tcase_add_test(tc, test_reflected_frame_is_ebadsig);
	tcase_add_test(tc, test_frame_with_wrong_field_lengths_is_edecode);
	tcase_add_test(tc, test_authentic_frame_with_bad_body_is_edecode);
	suite_add_tcase(s, tc);

	tc = tcase("fuzz", 120);
	tcase_add_test(tc, test_random_buffers_never_open);
	tcase_add_test(tc, test_random_frames_with_the_channel_id_never_open);
	tcase_add_test(tc, test_mutated_frames_open_only_as_real_unopened_frames);
	tcase_add_test(tc, test_mutated_hellos_and_welcomes_are_refused_or_harmless);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(suite());
}
