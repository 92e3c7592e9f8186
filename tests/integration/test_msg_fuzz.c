/*
 * test_msg_fuzz.c — agents under a rain of bad frames, with real replicas and agents
 * (tests/common/cluster.h). Thousands of random, truncated and mutated frames go to an
 * agent's --msg-listen endpoint (from a fake host registered in the catalog, whose real
 * hello, welcome and sealed frames are the seeds, and whose open channel also carries
 * authentic frames with damaged plaintext), and to a process's port (before the process
 * opens it: unsigned and foreign hellos, frames of no channel; then, with the process's
 * own key, authentic frames with damaged plaintext). Afterwards the agent runs with
 * the same pid, logged what it dropped, and carries 300 messages from a process on
 * another host to that process once each, in order (tests/integration/msg_prog.c).
 *
 * The inputs come from the shared seeded generator (testutil.h): a failure prints the
 * seed, and SNIPE_TEST_SEED repeats it.
 *
 * Not here: channels as units (test_chan.c); the drops of single, chosen bad frames
 * and their log lines (test_msg.c).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <nanomsg/nn.h>
#include <nanomsg/pair.h>
#include <nanomsg/pipeline.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "agent.pb-c.h"
#include "cluster.h"
#include "msgtest.h"
#include "rcds.h"
#include "sni.h" /* channels (sni_chan_*), msg.proto */
#include "snipe.h"
#include "testutil.h"

/* Asserts that a cluster stopped with every replica and agent ending cleanly (no crash,
 * no sanitizer report at exit). */
#define stop_cluster(c) ck_assert_int_eq(tc_cluster_stop(c), 0)

#define WAIT_MS 10000
#define POLL_MS 20
#define LOG_LINES 40
#define STREAM_MS 30000
#define FUZZ_FRAMES 3000
#define MAX_RANDOM 400     /* bytes of a random frame */
#define SLACK 16           /* bytes a mutant may grow by */
#define BIG_FRAME (1u << 20)
#define TRAFFIC "300"      /* messages sent afterwards */
#define TRAFFIC_DONE "e1 received 300 in-order 300 dups 0 gaps 0 bad 0"
#define SENDER_URN "urn:snipe:proc:sender"
#define NOBODY_URN "urn:snipe:proc:nobody-here"
#define HELLO_AGAIN_MS 1000
/* Messages to URNs that name nothing fail after this long (a short --msg-timeout-ms,
 * so the failures come while the test still holds the port). */
#define MSG_TIMEOUT "1000"

/* ------------------------------------------------------------------ helpers */

/* A cluster of 3 replicas and agents "a" and "b" with flags extra (may be NULL); a
 * catalog client holding the admin key into *cl. */
static tc_cluster *start_cluster(const char *const *extra, rcds_client **cl)
{
	tc_cluster *c = tc_cluster_start(3);
	ck_assert_int_eq(tc_agent_start(c, "a", extra), 0);
	ck_assert_int_eq(tc_agent_start(c, "b", extra), 1);
	*cl = tc_cluster_client(c, -1, tc_cluster_admin_key(c));
	rcds_client_set_timeout(*cl, 10000);
	return c;
}

/* Once recv (msg_prog recv on b) is ready, the sender on host a: TRAFFIC messages to
 * recv (msg_prog send); they must all arrive once, in order, intact, and both processes
 * end well. */
static void traffic(tc_cluster *c, rcds_client *cl, const struct tm_prog *recv)
{
	struct tm_prog send;
	snipe_proc_info info;
	char line[1024];
	tc_wait_line(c, recv->out, "e1 ready", WAIT_MS, line, sizeof(line));
	tm_prog_make(&send, c, "sender", (const char *const[]){MSG_PROG_PATH, "send", "OUT",
	                                                      recv->urn, TRAFFIC, "64", "0", "0",
	                                                      NULL});
	tm_prog_spawn(c, cl, &send, "a", SNIPE_RESTART_NEVER, &info);
	tc_wait_line(c, recv->out, "e1 received ", STREAM_MS, line, sizeof(line));
	ck_assert_str_eq(line, TRAFFIC_DONE);
	tm_prog_wait_ok(c, cl, recv, WAIT_MS, &info);
	tm_prog_wait_ok(c, cl, &send, WAIT_MS, &info);
	tc_wait_line(c, send.out, "e1 sent ", WAIT_MS, line, sizeof(line));
	ck_assert_str_eq(line, "e1 sent " TRAFFIC " flush 0");
}

/* traffic to a receiver on b spawned for it. */
static void traffic_to_b(tc_cluster *c, rcds_client *cl)
{
	struct tm_prog recv;
	snipe_proc_info info;
	tm_prog_make(&recv, c, "recv", (const char *const[]){MSG_PROG_PATH, "recv", "OUT",
	                                                    SENDER_URN, TRAFFIC, NULL});
	tm_prog_spawn(c, cl, &recv, "b", SNIPE_RESTART_NEVER, &info);
	traffic(c, cl, &recv);
}

/* The agent i still runs, as pid, and logged drops. */
static void agent_survived(tc_cluster *c, int i, pid_t pid, const char *dropped)
{
	pid_t now = tc_agent_pid(c, i);
	if (now != pid)
		tc_cluster_dump_logs(c, LOG_LINES);
	ck_assert_msg(now == pid, "agent %d was pid %d, now %d", i, (int)pid, (int)now);
	uint64_t deadline = tu_mono_ms() + WAIT_MS;
	while (!tc_agent_log_contains(c, i, dropped) && tu_mono_ms() < deadline)
		tu_sleep_ms(POLL_MS);
	ck_assert_msg(tc_agent_log_contains(c, i, dropped), "agent %d logged no '%s'", i, dropped);
}

/* ------------------------------------------------------------------- frames */

static void frames_free(struct tm_frame *f, size_t n)
{
	for (size_t i = 0; i < n; i++)
		tm_frame_free(&f[i]);
}

static struct tm_frame frame_copy(const void *buf, size_t len)
{
	struct tm_frame f = {tu_copy(buf, len), len};
	return f;
}

/* An authentic frame of ch whose plaintext is plain (any bytes, len of them), sealed as
 * chan.c seals (msg.proto: the counter little-endian after 4 zero bytes is the nonce,
 * the id the associated data): its receiver cannot tell it from a real one until it
 * decodes the plaintext. */
static struct tm_frame seal_raw(sni_chan *ch, const uint8_t *plain, size_t len)
{
	uint8_t nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES] = {0};
	uint8_t *sealed = malloc(len + crypto_aead_chacha20poly1305_ietf_ABYTES);
	unsigned long long slen = 0;
	ck_assert_ptr_nonnull(sealed);
	uint64_t counter = ++ch->tx_counter;
	for (int i = 0; i < 8; i++)
		nonce[4 + i] = (uint8_t)(counter >> (8 * i));
	crypto_aead_chacha20poly1305_ietf_encrypt(sealed, &slen, plain, len, ch->id,
	                                          sizeof(ch->id), NULL, nonce, ch->tx);
	Snipe__ChanFrame m = SNIPE__CHAN_FRAME__INIT;
	m.id = (ProtobufCBinaryData){sizeof(ch->id), ch->id};
	m.counter = counter;
	m.sealed = (ProtobufCBinaryData){(size_t)slen, sealed};
	struct tm_frame f = tm_pack(&m.base);
	free(sealed);
	return f;
}

/* Plaintext seeds: ChanBodies as a peer or a process might send them, none addressed to
 * a process of the test (from, origin: the sender's names; ack_origin: where acks go). */
static size_t body_seeds(struct tm_frame *out, size_t cap, const char *from, const char *origin,
                         const char *ack_origin)
{
	uint8_t stream[16];
	memset(stream, 0x33, sizeof(stream));
	Snipe__Msg g[3];
	Snipe__Msg *gp[3];
	for (size_t i = 0; i < 3; i++) {
		snipe__msg__init(&g[i]);
		g[i].from = (char *)from;
		g[i].stream = (ProtobufCBinaryData){sizeof(stream), stream};
		g[i].to = NOBODY_URN;
		g[i].seq = i + 1;
		g[i].floor = i;
		g[i].tag = 7;
		g[i].data = (ProtobufCBinaryData){5, (uint8_t *)"hello"};
		g[i].origin = (char *)origin;
		gp[i] = &g[i];
	}
	Snipe__MsgAck k = SNIPE__MSG_ACK__INIT;
	Snipe__MsgAck *kp = &k;
	k.from = (char *)from;
	k.stream = (ProtobufCBinaryData){sizeof(stream), stream};
	k.to = NOBODY_URN;
	k.origin = (char *)ack_origin;
	k.received = 2;
	k.consumed = 1;
	k.durable = 1;
	k.expect = 3;
	Snipe__MsgBounce bo = SNIPE__MSG_BOUNCE__INIT;
	Snipe__MsgBounce *bop = &bo;
	bo.from = (char *)from;
	bo.stream = (ProtobufCBinaryData){sizeof(stream), stream};
	bo.to = NOBODY_URN;
	Snipe__MsgFail fl = SNIPE__MSG_FAIL__INIT;
	Snipe__MsgFail *flp = &fl;
	fl.to = NOBODY_URN;
	fl.code = SNIPE_ENOTFOUND;
	fl.error = "nobody";

	size_t n = 0;
	Snipe__ChanBody b = SNIPE__CHAN_BODY__INIT;
	ck_assert_uint_ge(cap, 4);
	b.msgs = gp;
	b.n_msgs = 3;
	out[n++] = tm_pack(&b.base);
	b = (Snipe__ChanBody)SNIPE__CHAN_BODY__INIT;
	b.acks = &kp;
	b.n_acks = 1;
	b.bounces = &bop;
	b.n_bounces = 1;
	out[n++] = tm_pack(&b.base);
	b = (Snipe__ChanBody)SNIPE__CHAN_BODY__INIT;
	b.msgs = gp;
	b.n_msgs = 1;
	b.acks = &kp;
	b.n_acks = 1;
	b.fails = &flp;
	b.n_fails = 1;
	b.accepted = 12;
	b.sync = true;
	out[n++] = tm_pack(&b.base);
	b = (Snipe__ChanBody)SNIPE__CHAN_BODY__INIT;
	b.sync = true;
	out[n++] = tm_pack(&b.base);
	return n;
}

/*
 * One fuzz input from seeds into *out (malloc'd): random bytes (1 in 8), a truncated
 * seed (1 in 8), or a seed with one to four random edits (tu_mutate).
 */
static struct tm_frame fuzz_one(struct tu_rng *r, const struct tm_frame *seeds, size_t nseeds)
{
	size_t kind = tu_rng_below(r, 8);
	const struct tm_frame *s = &seeds[tu_rng_below(r, nseeds)];
	struct tm_frame f;
	if (kind == 0) {
		f.len = tu_rng_below(r, MAX_RANDOM + 1);
		f.buf = malloc(f.len > 0 ? f.len : 1);
		ck_assert_ptr_nonnull(f.buf);
		tu_rng_bytes(r, f.buf, f.len);
	} else if (kind == 1) {
		f = frame_copy(s->buf, s->len);
		f.len = s->len > 0 ? tu_rng_below(r, s->len) : 0;
	} else {
		f.buf = malloc(s->len + SLACK);
		ck_assert_ptr_nonnull(f.buf);
		memcpy(f.buf, s->buf, s->len);
		f.len = tu_mutate(r, f.buf, s->len, s->len + SLACK);
	}
	return f;
}

static void send_frame(int s, const struct tm_frame *f)
{
	tm_send(s, f->buf, f->len);
}

/* Drops whatever came on s so far (bounces, refusals): an agent whose answers are not
 * read drops them, and the test then waits for one in vain. */
static void drain(int s)
{
	void *buf = NULL;
	while (nn_recv(s, &buf, NN_MSG, NN_DONTWAIT) >= 0)
		nn_freemsg(buf);
}

/* Edge inputs sent on s: nothing, one zero byte, a megabyte of random bytes, a
 * megabyte of 0xff (a varint that never ends). */
static void send_edges(int s)
{
	struct tm_frame edge[4];
	edge[0] = frame_copy("", 0);
	edge[1] = frame_copy("\0", 1);
	edge[2].len = edge[3].len = BIG_FRAME;
	edge[2].buf = malloc(BIG_FRAME);
	edge[3].buf = malloc(BIG_FRAME);
	ck_assert_ptr_nonnull(edge[2].buf);
	ck_assert_ptr_nonnull(edge[3].buf);
	randombytes_buf(edge[2].buf, BIG_FRAME);
	memset(edge[3].buf, 0xff, BIG_FRAME);
	for (size_t i = 0; i < 4; i++) {
		send_frame(s, &edge[i]);
		tm_frame_free(&edge[i]);
	}
}

/* What a fuzz loop draws from: seeds to damage, and plaintexts to damage and seal as
 * authentic frames of ch, one input in one_in (ch NULL: none). */
struct corpus {
	const struct tm_frame *seeds, *plains;
	size_t nseeds, nplains;
	sni_chan *ch;
	size_t one_in;
};

/* n inputs drawn from k sent on s; what came back on back is drained every 256 inputs.
 * Returns how many were authentic. */
static size_t fuzz_send(struct tu_rng *r, const struct corpus *k, int n, int s, int back)
{
	size_t authentic = 0;
	for (int i = 0; i < n; i++) {
		struct tm_frame f;
		if (k->ch != NULL && tu_rng_below(r, k->one_in) == 0) {
			struct tm_frame p = fuzz_one(r, k->plains, k->nplains);
			f = seal_raw(k->ch, p.buf, p.len);
			tm_frame_free(&p);
			authentic++;
		} else
			f = fuzz_one(r, k->seeds, k->nseeds);
		send_frame(s, &f);
		tm_frame_free(&f);
		if (i % 256 == 0)
			drain(back);
	}
	return authentic;
}

/* The next frame on s within timeout_ms that opens on channel ch, opened (welcomes and
 * frames that do not open are skipped), or NULL. Free with
 * snipe__chan_body__free_unpacked. */
static Snipe__ChanBody *next_body(int s, sni_chan *ch, int timeout_ms)
{
	uint64_t deadline = tu_mono_ms() + (uint64_t)timeout_ms;
	for (uint64_t now = tu_mono_ms(); now < deadline; now = tu_mono_ms()) {
		Snipe__ChanFrame *f = tm_next_frame(s, (int)(deadline - now));
		if (f == NULL)
			break;
		Snipe__ChanBody *body = NULL;
		bool opened = f->welcome.len == 0 && sni_chan_open(ch, f, &body) == SNIPE_OK;
		snipe__chan_frame__free_unpacked(f, NULL);
		if (opened)
			return body;
	}
	return NULL;
}

/* -------------------------------------------------------------- fake host */

/* The fake host itself (registered, its channel opened) is msgtest.h's. */

/* A sealed frame of ch holding body b. */
static struct tm_frame seal_body(sni_chan *ch, const struct tm_frame *plain)
{
	Snipe__ChanBody *b = snipe__chan_body__unpack(NULL, plain->len, plain->buf);
	ck_assert_ptr_nonnull(b);
	struct tm_frame f = {NULL, 0};
	tu_assert_code(sni_chan_seal(ch, b, &f.buf, &f.len), SNIPE_OK);
	snipe__chan_body__free_unpacked(b, NULL);
	return f;
}

/* A welcome signed by mallory to b, answering a hello b never sent. */
static struct tm_frame unasked_welcome(const struct tm_fake_host *m)
{
	sni_chan_opener h;
	sni_chan unused;
	struct tm_frame hello = {NULL, 0}, w = {NULL, 0};
	tu_assert_code(sni_chan_hello(m->key, "b", TM_FAKE_HOST, &h, &hello.buf, &hello.len),
	               SNIPE_OK);
	Snipe__ChanFrame *f = snipe__chan_frame__unpack(NULL, hello.len, hello.buf);
	ck_assert_ptr_nonnull(f);
	Snipe__Envelope *env = snipe__envelope__unpack(NULL, f->hello.len, f->hello.data);
	ck_assert_ptr_nonnull(env);
	Snipe__EnvelopeContent *content = NULL;
	tu_assert_code(sni_env_decode_content(&env->content, &content, NULL, 0), SNIPE_OK);
	Snipe__ChanHello *hh = snipe__chan_hello__unpack(NULL, content->body.len,
	                                                 content->body.data);
	ck_assert_ptr_nonnull(hh);
	tu_assert_code(sni_chan_accept(m->key, TM_FAKE_HOST, hh, &unused, &w.buf, &w.len),
	               SNIPE_OK);
	snipe__chan_hello__free_unpacked(hh, NULL);
	snipe__envelope_content__free_unpacked(content, NULL);
	snipe__envelope__free_unpacked(env, NULL);
	snipe__chan_frame__free_unpacked(f, NULL);
	tm_frame_free(&hello);
	sodium_memzero(&h, sizeof(h));
	sodium_memzero(&unused, sizeof(unused));
	return w;
}

/*
 * Mallory's channel with b still works both ways: a message from mallory's process to
 * nobody, sealed now, opens at b, which bounces it back on the channel within WAIT_MS.
 */
static void channel_works(tc_cluster *c, struct tm_fake_host *m, sni_chan *ch)
{
	uint8_t stream[16];
	randombytes_buf(stream, sizeof(stream));
	Snipe__Msg g = SNIPE__MSG__INIT;
	Snipe__Msg *gp = &g;
	g.from = TM_FAKE_PROC;
	g.stream = (ProtobufCBinaryData){sizeof(stream), stream};
	g.to = NOBODY_URN;
	g.seq = 1;
	g.data = (ProtobufCBinaryData){2, (uint8_t *)"hi"};
	g.origin = TM_FAKE_HOST;
	Snipe__ChanBody b = SNIPE__CHAN_BODY__INIT;
	b.msgs = &gp;
	b.n_msgs = 1;
	struct tm_frame f = {NULL, 0};
	drain(m->pull);
	tu_assert_code(sni_chan_seal(ch, &b, &f.buf, &f.len), SNIPE_OK);
	send_frame(m->push, &f);
	tm_frame_free(&f);
	uint64_t deadline = tu_mono_ms() + WAIT_MS;
	bool bounced = false;
	for (uint64_t now = tu_mono_ms(); !bounced && now < deadline; now = tu_mono_ms()) {
		Snipe__ChanBody *body = next_body(m->pull, ch, (int)(deadline - now));
		if (body == NULL)
			break;
		for (size_t i = 0; i < body->n_bounces; i++) {
			const ProtobufCBinaryData *st = &body->bounces[i]->stream;
			if (st->len == sizeof(stream) &&
			    memcmp(st->data, stream, sizeof(stream)) == 0)
				bounced = true;
		}
		snipe__chan_body__free_unpacked(body, NULL);
	}
	if (!bounced)
		tc_cluster_dump_logs(c, LOG_LINES);
	ck_assert_msg(bounced, "b did not bounce mallory's message on their channel");
}

/* ---------------------------------------------------------- the endpoint */

/*
 * FUZZ_FRAMES inputs at agent b's --msg-listen from a registered fake host with an open
 * channel: random bytes, truncated and mutated copies of its real hello (signed by
 * it, to b), of b's welcome to it, of a welcome from it that b never asked for, of
 * sealed frames of its channel and of a channel b does not know; a quarter of them
 * authentic frames of its channel whose plaintext is a mutated ChanBody; and empty
 * and megabyte frames. b keeps its pid, logs drops, and then carries TRAFFIC messages
 * from a process on a to one on b, once each and in order.
 */
START_TEST(test_agent_survives_fuzzed_frames_on_its_message_endpoint)
{
	rcds_client *cl = NULL;
	tc_cluster *c = start_cluster(NULL, &cl);
	pid_t pid_a = tc_agent_pid(c, 0), pid_b = tc_agent_pid(c, 1);
	struct tm_fake_host m;
	sni_chan ch, stranger;
	struct tm_frame seeds[16], plains[8], hello = {NULL, 0}, welcome = {NULL, 0};
	size_t nseeds = 0, nplains = 0;
	tm_fake_host_start(c, cl, 1, "b", &m);
	tm_fake_host_open(c, &m, "b", &ch, &hello, &welcome);

	/* seeds: the hello and welcome that opened the channel (replays now) */
	seeds[nseeds++] = hello;
	seeds[nseeds++] = welcome;
	seeds[nseeds++] = unasked_welcome(&m);
	/* plaintexts, and sealed frames of the channel and of one b does not know */
	nplains = body_seeds(plains, 8, TM_FAKE_PROC, TM_FAKE_HOST, TM_FAKE_HOST);
	memset(&stranger, 0, sizeof(stranger));
	randombytes_buf(stranger.id, sizeof(stranger.id));
	randombytes_buf(stranger.tx, sizeof(stranger.tx));
	size_t sealed = nseeds;
	for (size_t i = 0; i < nplains; i++) {
		seeds[nseeds++] = seal_body(&ch, &plains[i]);
		seeds[nseeds++] = seal_body(&stranger, &plains[i]);
	}
	/* the sealed seeds once as they are (those of the channel open; the others are of
	 * an unknown channel) */
	for (size_t i = sealed; i < nseeds; i++)
		send_frame(m.push, &seeds[i]);

	send_edges(m.push);
	struct tu_rng r;
	struct corpus k = {seeds, plains, nseeds, nplains, &ch, 4};
	tu_rng_init(&r, "test_msg_fuzz endpoint");
	uint64_t t0 = tu_mono_ms();
	size_t authentic = fuzz_send(&r, &k, FUZZ_FRAMES, m.push, m.pull);
	fprintf(stderr, "endpoint: %d frames (%zu authentic with damaged plaintext) sent to b in "
	        "%" PRIu64 " ms\n", FUZZ_FRAMES, authentic, tu_mono_ms() - t0);
	agent_survived(c, 1, pid_b, "dropped frame (");
	ck_assert_int_eq(tc_agent_pid(c, 0), pid_a);

	channel_works(c, &m, &ch);
	traffic_to_b(c, cl);
	ck_assert_int_eq(tc_agent_pid(c, 1), pid_b);

	frames_free(seeds, nseeds);
	frames_free(plains, nplains);
	sodium_memzero(&ch, sizeof(ch));
	tm_fake_host_stop(&m);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* ---------------------------------------------------------------- the port */

/* The value of name in process pid's environment (/proc/PID/environ) into out. */
static void proc_env(pid_t pid, const char *name, char *out, size_t len)
{
	char path[64];
	size_t n = 0, nlen = strlen(name);
	snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
	char *env = tu_slurp(path, &n);
	ck_assert_msg(env != NULL, "%s: %s", path, strerror(errno));
	bool found = false;
	for (size_t at = 0; !found && at < n; at += strlen(env + at) + 1)
		if (strncmp(env + at, name, nlen) == 0 && env[at + nlen] == '=') {
			snprintf(out, len, "%s", env + at + nlen + 1);
			found = true;
		}
	free(env);
	ck_assert_msg(found, "no %s in %s", name, path);
}

/* Opens a channel on the port (PAIR socket s) as the process urn with key k: a hello,
 * and the bare welcome answering it (a hello unanswered for HELLO_AGAIN_MS is sent
 * again, fresh). The hello that opened it into *hello. */
static void port_open(tc_cluster *c, int s, const snipe_key *k, const char *urn, sni_chan *ch,
                      struct tm_frame *hello)
{
	uint64_t deadline = tu_mono_ms() + WAIT_MS;
	bool open = false;
	while (!open && tu_mono_ms() < deadline) {
		sni_chan_opener h;
		tm_frame_free(hello);
		drain(s);
		tu_assert_code(sni_chan_hello(k, urn, "", &h, &hello->buf, &hello->len), SNIPE_OK);
		send_frame(s, hello);
		uint64_t until = tu_mono_ms() + HELLO_AGAIN_MS;
		for (uint64_t now = tu_mono_ms(); !open && now < until; now = tu_mono_ms()) {
			Snipe__ChanFrame *f = tm_next_welcome(s, (int)(until - now));
			if (f == NULL)
				break;
			Snipe__ChanHello *w = snipe__chan_hello__unpack(NULL, f->welcome.len,
			                                                f->welcome.data);
			ck_assert_ptr_nonnull(w);
			if (w->nonce.len == sizeof(h.nonce) &&
			    memcmp(w->nonce.data, h.nonce, sizeof(h.nonce)) == 0) {
				ck_assert_msg(w->code == 0, "the process's hello refused: %s (%s)",
				              snipe_errname(w->code), w->error);
				tu_assert_code(sni_chan_complete(&h, w, ch), SNIPE_OK);
				open = true;
			}
			snipe__chan_hello__free_unpacked(w, NULL);
			snipe__chan_frame__free_unpacked(f, NULL);
		}
		sodium_memzero(&h, sizeof(h));
	}
	if (!open)
		tc_cluster_dump_logs(c, LOG_LINES);
	ck_assert_msg(open, "the agent did not answer the process's hello");
}

/* The agent tells the process on the port (socket s, channel ch), within WAIT_MS, that
 * its messages to urn failed: a MsgFail with SNIPE_ENOTFOUND and a reason. */
static void told_failure(tc_cluster *c, int s, sni_chan *ch, const char *urn)
{
	uint64_t deadline = tu_mono_ms() + WAIT_MS;
	bool told = false;
	for (uint64_t now = tu_mono_ms(); !told && now < deadline; now = tu_mono_ms()) {
		Snipe__ChanBody *body = next_body(s, ch, (int)(deadline - now));
		if (body == NULL)
			break;
		for (size_t i = 0; i < body->n_fails; i++)
			if (strcmp(body->fails[i]->to, urn) == 0) {
				tu_assert_code(body->fails[i]->code, SNIPE_ENOTFOUND);
				ck_assert_str_ne(body->fails[i]->error, "");
				told = true;
			}
		snipe__chan_body__free_unpacked(body, NULL);
	}
	if (!told)
		tc_cluster_dump_logs(c, LOG_LINES);
	ck_assert_msg(told, "the agent did not tell the process that %s failed", urn);
}

/*
 * A process on b whose program waits (a shell loop) for a file before it runs msg_prog
 * recv, so that its port is free: the test asks the agent for it with the process's
 * instance key (SNIPE_AGENT and SNIPE_PROC_KEY, from its /proc environment), connects
 * to it and sends FUZZ_FRAMES inputs. First as a stranger: a
 * hello signed by a key the agent does not know is answered with a refusal that says
 * why; random bytes, mutated hellos and frames of no channel follow. Then as the
 * process itself, with its instance key (SNIPE_PROC_KEY): a channel opens, and
 * authentic frames with mutated plaintexts (messages to nobody, acknowledgements to
 * hosts that do not exist, sync) and mutated sealed frames and hellos follow; the
 * agent says on the channel that the messages to nobody failed (SNIPE_ENOTFOUND, with
 * a reason). The test lets go of the port, the program starts and opens it, and
 * TRAFFIC messages from a process on a arrive once each, in order; b kept its pid and
 * logged what it dropped.
 */
/* The message port the agent at endpoint gives the process whose instance key is key
 * (a MsgPort request, as snipe_open makes it). */
static void port_of(const snipe_key *key, const char *endpoint, char *port, size_t len)
{
	Snipe__AgentRequest req = SNIPE__AGENT_REQUEST__INIT;
	Snipe__MsgPort mp = SNIPE__MSG_PORT__INIT;
	Snipe__AgentReply *r = NULL;
	char err[256] = "";
	req.op_case = SNIPE__AGENT_REQUEST__OP_MSG_PORT;
	req.msg_port = &mp;
	tu_assert_code(sni_agent_call(key, endpoint, &req, WAIT_MS, &r, err, sizeof(err)),
	               SNIPE_OK);
	ck_assert_msg(r->code == SNIPE_OK, "msg port: %s", r->error);
	snprintf(port, len, "%s", r->endpoint);
	snipe__agent_reply__free_unpacked(r, NULL);
}

START_TEST(test_agent_survives_fuzzed_frames_on_a_process_port)
{
	static const char *const extra[] = {"--msg-timeout-ms", MSG_TIMEOUT, NULL};
	rcds_client *cl = NULL;
	tc_cluster *c = start_cluster(extra, &cl);
	pid_t pid_b = tc_agent_pid(c, 1);
	char *go = tu_path(tc_cluster_dir(c), "go");
	struct tm_prog recv;
	snipe_proc_info info;
	tm_prog_make(&recv, c, "recv", (const char *const[]){
		"/bin/sh", "-c", "while [ ! -e \"$1\" ]; do sleep 0.05; done; shift; exec \"$@\"",
		"gate", go, MSG_PROG_PATH, "recv", "OUT", SENDER_URN, TRAFFIC, NULL});
	tm_prog_spawn(c, cl, &recv, "b", SNIPE_RESTART_NEVER, &info);
	ck_assert_int_gt(info.pid, 0);
	char port[512], keypath[512], agent[512], err[256] = "";
	proc_env((pid_t)info.pid, "SNIPE_AGENT", agent, sizeof(agent));
	proc_env((pid_t)info.pid, "SNIPE_PROC_KEY", keypath, sizeof(keypath));
	snipe_key *pkey = NULL, *stranger = NULL;
	tu_assert_code(snipe_key_load(keypath, &pkey, err, sizeof(err)), SNIPE_OK);
	port_of(pkey, agent, port, sizeof(port));
	ck_assert_int_eq(snipe_key_generate(&stranger), SNIPE_OK);
	int s = tm_connect(NN_PAIR, port);

	/* a stranger's hello: refused, with a reason */
	struct tm_frame seeds[16], plains[8];
	size_t nseeds = 0;
	sni_chan_opener h;
	tu_assert_code(sni_chan_hello(stranger, recv.urn, "", &h, &seeds[nseeds].buf,
	                              &seeds[nseeds].len), SNIPE_OK);
	send_frame(s, &seeds[nseeds++]);
	Snipe__ChanFrame *f = tm_next_welcome(s, WAIT_MS);
	ck_assert_msg(f != NULL, "no answer to a stranger's hello");
	Snipe__ChanHello *w = snipe__chan_hello__unpack(NULL, f->welcome.len, f->welcome.data);
	ck_assert_ptr_nonnull(w);
	ck_assert_int_lt(w->code, 0);
	ck_assert_uint_eq(w->id.len, 0);
	ck_assert_uint_eq(w->kx_public.len, 0);
	ck_assert_str_ne(w->error, "");
	fprintf(stderr, "port: a stranger's hello is refused: %s (%s)\n", snipe_errname(w->code),
	        w->error);
	snipe__chan_hello__free_unpacked(w, NULL);
	snipe__chan_frame__free_unpacked(f, NULL);
	sodium_memzero(&h, sizeof(h));

	/* seeds: hellos from the stranger, and a hello of the process's own that opens a
	 * channel and is then a replay; sealed frames of no channel */
	tu_assert_code(sni_chan_hello(stranger, "urn:snipe:proc:other", "", &h,
	                              &seeds[nseeds].buf, &seeds[nseeds].len), SNIPE_OK);
	nseeds++;
	sodium_memzero(&h, sizeof(h));
	size_t nplains = body_seeds(plains, 8, recv.urn, "", "nowhere");
	sni_chan none;
	memset(&none, 0, sizeof(none));
	randombytes_buf(none.id, sizeof(none.id));
	randombytes_buf(none.tx, sizeof(none.tx));
	for (size_t i = 0; i < nplains; i++)
		seeds[nseeds++] = seal_body(&none, &plains[i]);

	send_edges(s);
	struct tu_rng r;
	struct corpus k = {seeds, plains, nseeds, nplains, NULL, 0};
	tu_rng_init(&r, "test_msg_fuzz port");
	uint64_t t0 = tu_mono_ms();
	fuzz_send(&r, &k, FUZZ_FRAMES / 2, s, s);

	/* as the process: a channel, then authentic frames with damaged plaintext; the
	 * hello that opened it is a seed too (a replay now) */
	sni_chan ch;
	seeds[nseeds] = (struct tm_frame){NULL, 0};
	port_open(c, s, pkey, recv.urn, &ch, &seeds[nseeds++]);
	size_t base = nseeds;
	for (size_t i = 0; i < nplains; i++)
		seeds[nseeds++] = seal_body(&ch, &plains[i]);
	for (size_t i = base; i < nseeds; i++)
		send_frame(s, &seeds[i]);
	k = (struct corpus){seeds, plains, nseeds, nplains, &ch, 2};
	fuzz_send(&r, &k, FUZZ_FRAMES / 2, s, s);
	fprintf(stderr, "port: %d frames sent to b's port of %s in %" PRIu64 " ms\n", FUZZ_FRAMES,
	        recv.urn, tu_mono_ms() - t0);
	agent_survived(c, 1, pid_b, "dropped frame (does not open) on the port of");
	ck_assert(tc_agent_log_contains(c, 1, "dropped hello ("));
	/* a process cannot flood its agent's log: drops are logged at most 20 a second */
	char *path = tu_path(tc_cluster_dir(c), "host-b.log"), *log = tu_slurp(path, NULL);
	size_t drops = 0;
	for (const char *at = log; at != NULL && (at = strstr(at, "on the port of")) != NULL; at++)
		drops++;
	uint64_t seconds = (tu_mono_ms() - t0) / 1000 + 2;
	ck_assert_msg(drops <= 20 * seconds, "%zu drop lines in %" PRIu64 " s", drops, seconds);
	free(log);
	free(path);
	told_failure(c, s, &ch, NOBODY_URN);
	nn_close(s);

	/* the program opens its port and gets every message */
	tu_write_file(go, "", 0, 0600);
	traffic(c, cl, &recv);
	ck_assert_int_eq(tc_agent_pid(c, 1), pid_b);

	frames_free(seeds, nseeds);
	frames_free(plains, nplains);
	sodium_memzero(&ch, sizeof(ch));
	snipe_key_free(pkey);
	snipe_key_free(stranger);
	free(go);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* ------------------------------------------------------------ the transport */

/* A TCP connection to endpoint ("tcp://127.0.0.1:PORT") that has said nanomsg's
 * greeting as a PUSH socket (the SP header: 0x00 'S' 'P' 0x00, protocol 0x0050, two
 * zero bytes) and read the peer's. */
static int sp_connect(const char *endpoint)
{
	int port = 0;
	ck_assert_int_eq(sscanf(endpoint, "tcp://127.0.0.1:%d", &port), 1);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect %s: %s",
	              endpoint, strerror(errno));
	static const uint8_t hdr[8] = {0x00, 'S', 'P', 0x00, 0x00, 0x50, 0x00, 0x00};
	uint8_t peer[8];
	ck_assert_int_eq(write(fd, hdr, sizeof(hdr)), (ssize_t)sizeof(hdr));
	ck_assert_int_eq(read(fd, peer, sizeof(peer)), (ssize_t)sizeof(peer));
	ck_assert_int_eq(memcmp(peer, "\0SP\0", 4), 0);
	return fd;
}

/*
 * nanomsg's TCP framing announces each message's size in 8 bytes before the message,
 * and allocates that much on reading them, before any byte of the message comes: a
 * peer that announces 2^62 bytes (16 bytes in all, no key, nothing registered) must
 * not end the agent, which then still carries messages.
 */
START_TEST(test_agent_survives_a_frame_header_announcing_an_exabyte)
{
	rcds_client *cl = NULL;
	tc_cluster *c = start_cluster(NULL, &cl);
	pid_t pid_b = tc_agent_pid(c, 1);
	int fd = sp_connect(tc_agent_msg_endpoint(c, 1));
	uint8_t size[8];
	for (int i = 0; i < 8; i++)
		size[i] = (uint8_t)((UINT64_C(1) << 62) >> (56 - 8 * i));
	ck_assert_int_eq(write(fd, size, sizeof(size)), (ssize_t)sizeof(size));
	tu_sleep_ms(1000);
	pid_t now = tc_agent_pid(c, 1);
	if (now != pid_b)
		tc_cluster_dump_logs(c, LOG_LINES);
	ck_assert_msg(now == pid_b, "agent b (pid %d) ended after a header announcing 2^62 bytes",
	              (int)pid_b);
	close(fd);

	traffic_to_b(c, cl);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* ------------------------------------------------------------------- the log */

#define FORGED "FORGED-LINE"

/* Whether a line of agent b's log starts with prefix. */
static bool log_line_starts(tc_cluster *c, const char *prefix)
{
	char *path = tu_path(tc_cluster_dir(c), "host-b.log"), line[1024];
	char *log = tu_slurp(path, NULL);
	free(path);
	bool found = log != NULL && tu_find_line(log, prefix, line, sizeof(line));
	free(log);
	return found;
}

/*
 * Names in a hello are the sender's to choose, and an agent reads them before it checks
 * any signature: a hello (signed by a key nobody registered) from "mallory" to
 * "b\n" FORGED "...", sent by anyone who reaches b's message endpoint, is dropped and
 * logged, and puts no line of its own into b's log.
 */
START_TEST(test_agent_log_has_no_line_forged_by_a_hello)
{
	rcds_client *cl = NULL;
	tc_cluster *c = start_cluster(NULL, &cl);
	snipe_key *k = NULL;
	sni_chan_opener h;
	struct tm_frame f = {NULL, 0};
	ck_assert_int_eq(snipe_key_generate(&k), SNIPE_OK);
	tu_assert_code(sni_chan_hello(k, TM_FAKE_HOST, "b\n" FORGED " agentd: all is well", &h,
	                              &f.buf, &f.len), SNIPE_OK);
	int s = tm_connect(NN_PUSH, tc_agent_msg_endpoint(c, 1));
	send_frame(s, &f);
	uint64_t deadline = tu_mono_ms() + WAIT_MS;
	while (!tc_agent_log_contains(c, 1, "dropped hello (meant for host") &&
	       tu_mono_ms() < deadline)
		tu_sleep_ms(POLL_MS);
	ck_assert(tc_agent_log_contains(c, 1, "dropped hello (meant for host"));
	if (log_line_starts(c, FORGED))
		tc_cluster_dump_logs(c, 5);
	ck_assert_msg(!log_line_starts(c, FORGED), "a line of b's log was written by a hello");
	nn_close(s);
	tm_frame_free(&f);
	sodium_memzero(&h, sizeof(h));
	snipe_key_free(k);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* -------------------------------------------------------------------- suite */

static Suite *suite(void)
{
	Suite *s = suite_create("msg_fuzz");
	TCase *tc = tcase_create("fuzz");
	tcase_set_timeout(tc, 90);
	tcase_add_test(tc, test_agent_survives_fuzzed_frames_on_its_message_endpoint);
	tcase_add_test(tc, test_agent_survives_fuzzed_frames_on_a_process_port);
	suite_add_tcase(s, tc);

	tc = tcase_create("transport");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_agent_survives_a_frame_header_announcing_an_exabyte);
	suite_add_tcase(s, tc);

	tc = tcase_create("log");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_agent_log_has_no_line_forged_by_a_hello);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(suite());
}
