/*
 * msg_prog.c — the program test_msg.c spawns on its agents: it sends or receives
 * messages by URN (snipe_open, snipe_send, snipe_recv) and writes what it saw, one line
 * per event, to a file the test reads. Every line starts with "e<epoch> " (SNIPE_EPOCH),
 * so a test tells a restarted instance's words from the first one's.
 *
 * A message of sequence number s (1, 2, ...) carries tag TAG, then s in 8 bytes
 * (little-endian), then padding whose byte i is (s + i) mod 256: a receiver finds any
 * message that is damaged, mislabelled or from another sender ("bad").
 *
 *   msg_prog send OUT TO COUNT SIZE PACE_EVERY PACE_MS
 *       sends messages 1..COUNT of SIZE bytes (>= 8) to TO, sleeping PACE_MS after
 *       every PACE_EVERY (0: never), then flushes: "sent N flush CODE"
 *   msg_prog burst OUT TO COUNT SIZE
 *       sends with SNIPE_NONBLOCK until the agent stops taking messages (SNIPE_EAGAIN
 *       still after a second's wait): "accepted N"; then blocking sends up to COUNT:
 *       "sent COUNT flush CODE"
 *   msg_prog recv OUT FROM COUNT [GO]
 *       "ready" once joined; if GO is given, waits until that file exists; then takes
 *       messages until number COUNT came in order: "received R in-order I dups D gaps G
 *       bad B" ("stalled ..." instead of "received" if none came for 30 s)
 *   msg_prog pollrecv OUT FROM COUNT
 *       as recv, waiting in poll(2) on snipe_fd and taking messages with snipe_recv
 *       without waiting (timeout 0), as a program with a loop of its own does
 *   msg_prog ckrecv OUT FROM COUNT EVERY
 *       as recv, with a checkpoint (snipe_ckpt_open, snipe_open(ck)) of its counters
 *       saved after every EVERY-th message in order: "start on HOST restored-from N"
 *       (N: the last message of the checkpoint it loaded, 0 for none), "saved S" after
 *       each save, and at the end "received-up-to S dups D gaps G bad B restored-from
 *       N on HOST"
 *   msg_prog more OUT TO COUNT SIZE GO
 *       sends messages 1..COUNT with SNIPE_MORE, the last one without; then waits,
 *       calling nothing, until the file GO exists (so only that last send can have
 *       handed the held-back messages over), then flushes: "sent N flush CODE"
 *   msg_prog ask OUT TO ROUNDS WAIT_MS
 *       ROUNDS times: message r with SNIPE_MORE, then snipe_recv for at most WAIT_MS,
 *       which must be TO's echo of it; "no reply to R after X ms: CODE" or "wrong
 *       reply to R" stops it; then "slowest reply X ms" and "asked ROUNDS replies P"
 *   msg_prog echo OUT COUNT
 *       "ready"; sends every message back to its sender, as it came, until COUNT
 *       went back: "echoed COUNT"
 *   msg_prog crashrecv OUT FROM COUNT CRASH_AT
 *       a receiver without a checkpoint that crashes once: "start life L" (L is 2 once
 *       the file OUT.crashed exists); in life 1, once message CRASH_AT came in order,
 *       creates OUT.crashed, says "crash after CRASH_AT" and _exit(1)s; otherwise takes
 *       messages until number COUNT came, counting from the first one this life got:
 *       "life L first F received-up-to S dups D gaps G bad B" ("stalled-at" instead
 *       of "received-up-to" if none came for 30 s)
 *   msg_prog cksend OUT TO COUNT EVERY CRASH_AT
 *       a sender with a checkpoint (snipe_ckpt_open, snipe_open(ck)) of its next
 *       number, saved after every EVERY-th message: "start restored-from N" (0: none),
 *       "saved S" after each save; unless OUT.crashed exists, once it sent message
 *       CRASH_AT it creates that file, says "crash after CRASH_AT" and _exit(1)s; at
 *       the end "sent COUNT flush CODE". Messages are SMALL_SIZE bytes.
 *   msg_prog unknown OUT TO
 *       one message to TO, which names no process: "code C elapsed_ms X"
 *   msg_prog log OUT STOP
 *       "ready"; then every message as "msg from=URN tag=T len=L data=TEXT" until the
 *       file STOP exists, then "end count N"
 *
 * Exit 0 when it did its part, 1 if messages stopped coming (or a receiver saw
 * something wrong, or on a crash on purpose), 4 if a call failed, 2 on bad usage. Not
 * part of libsnipe.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "snipe.h"
#include "testprog.h"

#define TAG 7u
#define SEQ_BYTES 8u
#define IDLE_MS 30000       /* a receiver gives up after this long without a message */
#define FLUSH_MS 60000
#define GO_POLL_MS 10
#define STALL_MS 1000       /* burst: how long the agent may take before it counts as full */
#define SMALL_SIZE 64       /* cksend, ask: bytes per message */

/* ----------------------------------------------------------------- output */

static const char *out_path; /* OUT: the crash marker is OUT.crashed */

static int fail(const char *what, int code, const char *err)
{
	tp_say("error %s: %s (%s)", what, snipe_errname(code), err);
	fprintf(stderr, "msg_prog: %s: %s (%s)\n", what, snipe_errname(code), err);
	return 4;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static snipe_ctx *join(snipe_ckpt *ck)
{
	snipe_ctx *ctx = NULL;
	char err[512] = "";
	int rc = snipe_open(ck, &ctx, err, sizeof(err));
	if (rc != SNIPE_OK) {
		fail("open", rc, err);
		exit(4);
	}
	return ctx;
}

/* OUT.crashed: exists once a life of this process crashed on purpose. */
static char *crash_marker(void)
{
	char *path = NULL;
	if (asprintf(&path, "%s.crashed", out_path) < 0) {
		fprintf(stderr, "msg_prog: out of memory\n");
		exit(4);
	}
	return path;
}

static bool crashed_before(void)
{
	char *path = crash_marker();
	bool crashed = access(path, F_OK) == 0;
	free(path);
	return crashed;
}

/* Marks the crash, says it, and exits at once with code 1, as a crash would: no
 * snipe_close, no flush, nothing handed over that was not already. */
static void crash(uint64_t seq)
{
	char *path = crash_marker();
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
	free(path);
	tp_say("crash after %" PRIu64, seq);
	_exit(1);
}

/* --------------------------------------------------------------- messages */

/* Message seq of size bytes into buf (see above). */
static void fill(uint8_t *buf, size_t size, uint64_t seq)
{
	for (size_t i = 0; i < SEQ_BYTES; i++)
		buf[i] = (uint8_t)(seq >> (8 * i));
	for (size_t i = SEQ_BYTES; i < size; i++)
		buf[i] = (uint8_t)(seq + i);
}

/* The seq a message carries, or 0 if it is not one of ours intact. */
static uint64_t seq_of(const uint8_t *buf, size_t len)
{
	if (len < SEQ_BYTES)
		return 0;
	uint64_t seq = 0;
	for (size_t i = 0; i < SEQ_BYTES; i++)
		seq |= (uint64_t)buf[i] << (8 * i);
	for (size_t i = SEQ_BYTES; i < len; i++)
		if (buf[i] != (uint8_t)(seq + i))
			return 0;
	return seq;
}

/* What a receiver counts. */
struct tally {
	uint64_t last;      /* the highest seq taken in order */
	uint64_t received, in_order, dups, gaps, bad;
};

/* A message taken: its sender, tag and bytes (free buf). */
struct msg {
	const char *from;
	uint32_t tag;
	void *buf;
	size_t len;
};

/* Counts one message; true if it was the next in order. */
static bool count(struct tally *t, const char *want_from, const struct msg *m)
{
	t->received++;
	uint64_t seq = seq_of(m->buf, m->len);
	if (strcmp(m->from, want_from) != 0 || m->tag != TAG || seq == 0) {
		t->bad++;
		return false;
	}
	if (seq <= t->last) {
		t->dups++;
		return false;
	}
	if (seq > t->last + 1)
		t->gaps += seq - t->last - 1;
	else
		t->in_order++;
	bool next = seq == t->last + 1;
	t->last = seq;
	return next;
}

/* The next message into m, waiting while messages keep coming: true, or false once none
 * came for IDLE_MS (since *idle_since). Exits 4 if snipe_recv fails. */
static bool poll_fd; /* pollrecv: wait in poll(2) on snipe_fd, never in snipe_recv */

static bool next_msg(snipe_ctx *ctx, uint64_t *idle_since, struct msg *m)
{
	static bool drained = true; /* snipe.h: poll only once snipe_recv said ETIMEDOUT */
	for (;;) {
		struct pollfd p = {.fd = snipe_fd(ctx), .events = POLLIN};
		if (poll_fd && drained && (p.fd < 0 || poll(&p, 1, 1000) < 0))
			exit(fail("poll", SNIPE_EIO, "snipe_fd cannot be polled"));
		int rc = snipe_recv(ctx, &m->from, &m->tag, &m->buf, &m->len, poll_fd ? 0 : 1000);
		drained = rc == SNIPE_ETIMEDOUT;
		if (rc == SNIPE_OK) {
			*idle_since = mono_ms();
			return true;
		}
		if (rc != SNIPE_ETIMEDOUT)
			exit(fail("recv", rc, snipe_error(ctx)));
		if (mono_ms() - *idle_since >= IDLE_MS)
			return false;
	}
}

/* ------------------------------------------------------------------ modes */

static int send_failed(snipe_ctx *ctx, uint64_t seq, int rc)
{
	char what[64];
	snprintf(what, sizeof(what), "send %" PRIu64, seq);
	return fail(what, rc, snipe_error(ctx));
}

/* Message seq of size bytes, in buf, sent to `to` with flags; exits 4 if that fails. */
static void send_one(snipe_ctx *ctx, const char *to, uint8_t *buf, size_t size, uint64_t seq,
                     int flags)
{
	fill(buf, size, seq);
	int rc = snipe_send(ctx, to, TAG, buf, size, flags);
	if (rc != SNIPE_OK)
		exit(send_failed(ctx, seq, rc));
}

/* A message buffer of size bytes; exits 4 if there is no memory. */
static uint8_t *msg_buf(size_t size)
{
	uint8_t *buf = malloc(size);
	if (buf == NULL)
		exit(fail("malloc", SNIPE_ENOMEM, "out of memory"));
	return buf;
}

/* A sender's end: flushes, says "sent N flush CODE", frees buf (may be NULL) and closes
 * ctx. The exit code: 0 if the flush saw every message taken, else 4. */
static int sent(snipe_ctx *ctx, uint64_t n, uint8_t *buf)
{
	int rc = snipe_flush(ctx, FLUSH_MS);
	tp_say("sent %" PRIu64 " flush %d", n, rc);
	free(buf);
	snipe_close(ctx);
	return rc == SNIPE_OK ? 0 : 4;
}

static int do_send(const char *to, uint64_t n, size_t size, uint64_t pace_every,
                   uint64_t pace_ms)
{
	snipe_ctx *ctx = join(NULL);
	uint8_t *buf = msg_buf(size);
	for (uint64_t seq = 1; seq <= n; seq++) {
		send_one(ctx, to, buf, size, seq, 0);
		if (pace_every != 0 && seq % pace_every == 0)
			tp_sleep_ms(pace_ms);
	}
	return sent(ctx, n, buf);
}

static int do_burst(const char *to, uint64_t n, size_t size)
{
	snipe_ctx *ctx = join(NULL);
	uint8_t *buf = msg_buf(size);
	uint64_t seq = 1;
	bool waited = false; /* EAGAIN once already: waited for the agent to take some */
	while (seq <= n) {
		fill(buf, size, seq);
		int rc = snipe_send(ctx, to, TAG, buf, size, SNIPE_NONBLOCK);
		if (rc == SNIPE_OK) {
			seq++;
			waited = false;
			continue;
		}
		if (rc != SNIPE_EAGAIN)
			return fail("nonblocking send", rc, snipe_error(ctx));
		if (waited)
			break;
		/* give the agent time to take what it will: SNIPE_EAGAIN after this means
		 * it holds all it may */
		rc = snipe_flush(ctx, STALL_MS);
		if (rc != SNIPE_OK && rc != SNIPE_ETIMEDOUT)
			return fail("flush", rc, snipe_error(ctx));
		waited = true;
	}
	tp_say("accepted %" PRIu64, seq - 1);
	for (; seq <= n; seq++)
		send_one(ctx, to, buf, size, seq, 0);
	return sent(ctx, n, buf);
}

static void wait_file(const char *path)
{
	while (access(path, F_OK) != 0)
		tp_sleep_ms(GO_POLL_MS);
}

static int do_more(const char *to, uint64_t n, size_t size, const char *go)
{
	snipe_ctx *ctx = join(NULL);
	uint8_t *buf = msg_buf(size);
	for (uint64_t seq = 1; seq <= n; seq++)
		send_one(ctx, to, buf, size, seq, seq < n ? SNIPE_MORE : 0);
	wait_file(go);
	return sent(ctx, n, buf);
}

static int do_recv(const char *want_from, uint64_t n, const char *go)
{
	snipe_ctx *ctx = join(NULL);
	tp_say("ready");
	if (go != NULL)
		wait_file(go);
	struct tally t = {0};
	struct msg m;
	uint64_t idle_since = mono_ms();
	while (t.last < n && next_msg(ctx, &idle_since, &m)) {
		count(&t, want_from, &m);
		free(m.buf);
	}
	tp_say("%s %" PRIu64 " in-order %" PRIu64 " dups %" PRIu64 " gaps %" PRIu64 " bad %" PRIu64,
	       t.last < n ? "stalled" : "received", t.received, t.in_order, t.dups, t.gaps, t.bad);
	snipe_close(ctx);
	return t.last < n || t.bad != 0 ? 1 : 0;
}

static int do_ask(const char *to, uint64_t rounds, uint64_t wait_ms)
{
	snipe_ctx *ctx = join(NULL);
	uint8_t buf[SMALL_SIZE];
	uint64_t replies = 0, slowest = 0;
	for (uint64_t r = 1; r <= rounds; r++) {
		send_one(ctx, to, buf, sizeof(buf), r, SNIPE_MORE);
		const char *from = NULL;
		uint32_t tag = 0;
		void *data = NULL;
		size_t len = 0;
		uint64_t t0 = mono_ms();
		int rc = snipe_recv(ctx, &from, &tag, &data, &len, (int)wait_ms);
		uint64_t ms = mono_ms() - t0;
		if (rc != SNIPE_OK) {
			tp_say("no reply to %" PRIu64 " after %" PRIu64 " ms: %s", r, ms,
			       snipe_errname(rc));
			break;
		}
		bool right = strcmp(from, to) == 0 && tag == TAG && seq_of(data, len) == r;
		free(data);
		if (!right) {
			tp_say("wrong reply to %" PRIu64, r);
			break;
		}
		replies++;
		slowest = ms > slowest ? ms : slowest;
	}
	tp_say("slowest reply %" PRIu64 " ms", slowest);
	tp_say("asked %" PRIu64 " replies %" PRIu64, rounds, replies);
	snipe_close(ctx);
	return replies == rounds ? 0 : 1;
}

static int do_echo(uint64_t n)
{
	snipe_ctx *ctx = join(NULL);
	tp_say("ready");
	struct msg m;
	uint64_t echoed = 0, idle_since = mono_ms();
	while (echoed < n && next_msg(ctx, &idle_since, &m)) {
		int rc = snipe_send(ctx, m.from, m.tag, m.buf, m.len, 0);
		free(m.buf);
		if (rc != SNIPE_OK)
			return send_failed(ctx, echoed + 1, rc);
		echoed++;
	}
	tp_say("%s %" PRIu64, echoed < n ? "stalled-after" : "echoed", echoed);
	snipe_close(ctx);
	return echoed < n ? 1 : 0;
}

/* The checkpointed counters, as text: "last dups gaps bad". */
static int state_save(snipe_ckpt *ck, const struct tally *t)
{
	char buf[128], err[512] = "";
	int n = snprintf(buf, sizeof(buf), "%" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64,
	                 t->last, t->dups, t->gaps, t->bad);
	int rc = snipe_ckpt_save(ck, buf, (size_t)n, err, sizeof(err));
	return rc == SNIPE_OK ? SNIPE_OK : fail("save", rc, err);
}

/* SNIPE_OK with t restored (or zero, the first time), else exits. */
static void state_load(snipe_ckpt *ck, struct tally *t)
{
	char err[512] = "", text[128];
	void *buf = NULL;
	size_t len = 0;
	memset(t, 0, sizeof(*t));
	int rc = snipe_ckpt_load(ck, &buf, &len, err, sizeof(err));
	if (rc == SNIPE_ENOTFOUND)
		return;
	if (rc != SNIPE_OK)
		exit(fail("load", rc, err));
	snprintf(text, sizeof(text), "%.*s", (int)len, (const char *)buf);
	free(buf);
	if (sscanf(text, "%" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64, &t->last, &t->dups,
	           &t->gaps, &t->bad) != 4)
		exit(fail("load", SNIPE_EDECODE, text));
}

static int do_ckrecv(const char *want_from, uint64_t n, uint64_t every)
{
	snipe_ckpt *ck = NULL;
	char err[512] = "";
	const char *host = getenv("SNIPE_HOST") != NULL ? getenv("SNIPE_HOST") : "?";
	int rc = snipe_ckpt_open(&ck, err, sizeof(err));
	if (rc != SNIPE_OK)
		return fail("ckpt open", rc, err);
	struct tally t;
	state_load(ck, &t);
	uint64_t restored = t.last;
	snipe_ctx *ctx = join(ck);
	tp_say("start on %s restored-from %" PRIu64, host, restored);
	struct msg m;
	uint64_t idle_since = mono_ms();
	while (t.last < n && next_msg(ctx, &idle_since, &m)) {
		bool next = count(&t, want_from, &m);
		free(m.buf);
		if (next && t.last % every == 0) {
			if (state_save(ck, &t) != SNIPE_OK)
				return 4;
			tp_say("saved %" PRIu64, t.last);
		}
	}
	tp_say("%s %" PRIu64 " dups %" PRIu64 " gaps %" PRIu64 " bad %" PRIu64
	       " restored-from %" PRIu64 " on %s",
	       t.last < n ? "stalled-at" : "received-up-to", t.last, t.dups, t.gaps, t.bad,
	       restored, host);
	snipe_close(ctx);
	snipe_ckpt_close(ck);
	return t.last < n || t.bad != 0 ? 1 : 0;
}

static int do_crashrecv(const char *want_from, uint64_t n, uint64_t crash_at)
{
	int life = crashed_before() ? 2 : 1;
	snipe_ctx *ctx = join(NULL);
	tp_say("start life %d", life);
	struct tally t = {0};
	struct msg m;
	uint64_t first = 0, idle_since = mono_ms();
	while (t.last < n && next_msg(ctx, &idle_since, &m)) {
		if (first == 0 && (first = seq_of(m.buf, m.len)) > 0)
			t.last = first - 1; /* in order from the first message this life got */
		bool next = count(&t, want_from, &m);
		free(m.buf);
		if (life == 1 && next && t.last == crash_at)
			crash(crash_at);
	}
	tp_say("life %d first %" PRIu64 " %s %" PRIu64 " dups %" PRIu64 " gaps %" PRIu64
	       " bad %" PRIu64, life, first, t.last < n ? "stalled-at" : "received-up-to", t.last,
	       t.dups, t.gaps, t.bad);
	snipe_close(ctx);
	return t.last < n || t.bad != 0 ? 1 : 0;
}

/* The next number to send, from the latest checkpoint (1 if none); exits on failure. */
static uint64_t next_load(snipe_ckpt *ck)
{
	char err[512] = "", text[32];
	void *buf = NULL;
	size_t len = 0;
	uint64_t next = 0;
	int rc = snipe_ckpt_load(ck, &buf, &len, err, sizeof(err));
	if (rc == SNIPE_ENOTFOUND)
		return 1;
	if (rc != SNIPE_OK)
		exit(fail("load", rc, err));
	snprintf(text, sizeof(text), "%.*s", (int)len, (const char *)buf);
	free(buf);
	if (sscanf(text, "%" SCNu64, &next) != 1 || next == 0)
		exit(fail("load", SNIPE_EDECODE, text));
	return next;
}

static int do_cksend(const char *to, uint64_t n, uint64_t every, uint64_t crash_at)
{
	snipe_ckpt *ck = NULL;
	char err[512] = "", text[32];
	int rc = snipe_ckpt_open(&ck, err, sizeof(err));
	if (rc != SNIPE_OK)
		return fail("ckpt open", rc, err);
	uint64_t next = next_load(ck);
	bool again = crashed_before();
	snipe_ctx *ctx = join(ck);
	tp_say("start restored-from %" PRIu64, next - 1);
	uint8_t buf[SMALL_SIZE];
	for (uint64_t seq = next; seq <= n; seq++) {
		send_one(ctx, to, buf, sizeof(buf), seq, 0);
		if (seq % every == 0) {
			int k = snprintf(text, sizeof(text), "%" PRIu64, seq + 1);
			rc = snipe_ckpt_save(ck, text, (size_t)k, err, sizeof(err));
			if (rc != SNIPE_OK)
				return fail("save", rc, err);
			tp_say("saved %" PRIu64, seq);
		}
		if (!again && seq == crash_at)
			crash(seq);
	}
	rc = sent(ctx, n, NULL);
	snipe_ckpt_close(ck);
	return rc;
}

static int do_unknown(const char *to)
{
	snipe_ctx *ctx = join(NULL);
	uint8_t buf[SEQ_BYTES];
	fill(buf, sizeof(buf), 1);
	uint64_t t0 = mono_ms();
	int rc = snipe_send(ctx, to, TAG, buf, sizeof(buf), 0);
	uint64_t elapsed = mono_ms() - t0;
	tp_say("code %d elapsed_ms %" PRIu64, rc, elapsed);
	snipe_close(ctx);
	return 0;
}

static int do_log(const char *stop)
{
	snipe_ctx *ctx = join(NULL);
	tp_say("ready");
	uint64_t n = 0;
	while (access(stop, F_OK) != 0) {
		const char *from = NULL;
		uint32_t tag = 0;
		void *buf = NULL;
		size_t len = 0;
		int rc = snipe_recv(ctx, &from, &tag, &buf, &len, 100);
		if (rc == SNIPE_ETIMEDOUT)
			continue;
		if (rc != SNIPE_OK)
			return fail("recv", rc, snipe_error(ctx));
		n++;
		/* printable bytes as they are, others as '.' */
		char text[256];
		size_t k = 0;
		for (; k < len && k < sizeof(text) - 1; k++) {
			char ch = ((const char *)buf)[k];
			text[k] = ch >= 0x20 && ch < 0x7f ? ch : '.';
		}
		text[k] = '\0';
		tp_say("msg from=%s tag=%" PRIu32 " len=%zu data=%s", from, tag, len, text);
		free(buf);
	}
	tp_say("end count %" PRIu64, n);
	snipe_close(ctx);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (sodium_init() < 0 || argc < 3)
		goto usage;
	out_path = argv[2];
	tp_init("msg_prog", out_path);
	const char *mode = argv[1];
	if (strcmp(mode, "send") == 0 && argc == 8 && tp_number(argv[5]) >= SEQ_BYTES)
		return do_send(argv[3], tp_number(argv[4]), tp_number(argv[5]), tp_number(argv[6]),
		               tp_number(argv[7]));
	if (strcmp(mode, "burst") == 0 && argc == 6 && tp_number(argv[5]) >= SEQ_BYTES)
		return do_burst(argv[3], tp_number(argv[4]), tp_number(argv[5]));
	poll_fd = strcmp(mode, "pollrecv") == 0;
	if (poll_fd && argc == 5)
		return do_recv(argv[3], tp_number(argv[4]), NULL);
	if (strcmp(mode, "recv") == 0 && (argc == 5 || argc == 6))
		return do_recv(argv[3], tp_number(argv[4]), argc == 6 ? argv[5] : NULL);
	if (strcmp(mode, "ckrecv") == 0 && argc == 6 && tp_number(argv[5]) > 0)
		return do_ckrecv(argv[3], tp_number(argv[4]), tp_number(argv[5]));
	if (strcmp(mode, "more") == 0 && argc == 7 && tp_number(argv[5]) >= SEQ_BYTES)
		return do_more(argv[3], tp_number(argv[4]), tp_number(argv[5]), argv[6]);
	if (strcmp(mode, "ask") == 0 && argc == 6 && tp_number(argv[5]) <= INT32_MAX)
		return do_ask(argv[3], tp_number(argv[4]), tp_number(argv[5]));
	if (strcmp(mode, "echo") == 0 && argc == 4)
		return do_echo(tp_number(argv[3]));
	if (strcmp(mode, "crashrecv") == 0 && argc == 6)
		return do_crashrecv(argv[3], tp_number(argv[4]), tp_number(argv[5]));
	if (strcmp(mode, "cksend") == 0 && argc == 7 && tp_number(argv[5]) > 0)
		return do_cksend(argv[3], tp_number(argv[4]), tp_number(argv[5]),
		                 tp_number(argv[6]));
	if (strcmp(mode, "unknown") == 0 && argc == 4)
		return do_unknown(argv[3]);
	if (strcmp(mode, "log") == 0 && argc == 4)
		return do_log(argv[3]);
usage:
	fprintf(stderr, "usage: msg_prog send OUT TO COUNT SIZE PACE_EVERY PACE_MS\n"
	                "       msg_prog burst OUT TO COUNT SIZE\n"
	                "       msg_prog recv OUT FROM COUNT [GO]\n"
	                "       msg_prog pollrecv OUT FROM COUNT\n"
	                "       msg_prog ckrecv OUT FROM COUNT EVERY\n"
	                "       msg_prog more OUT TO COUNT SIZE GO\n"
	                "       msg_prog ask OUT TO ROUNDS WAIT_MS\n"
	                "       msg_prog echo OUT COUNT\n"
	                "       msg_prog crashrecv OUT FROM COUNT CRASH_AT\n"
	                "       msg_prog cksend OUT TO COUNT EVERY CRASH_AT\n"
	                "       msg_prog unknown OUT TO\n"
	                "       msg_prog log OUT STOP\n");
	return 2;
}
