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
 *   msg_prog ckrecv OUT FROM COUNT EVERY
 *       as recv, with a checkpoint (snipe_ckpt_open, snipe_open(ck)) of its counters
 *       saved after every EVERY-th message in order: "start on HOST restored-from N"
 *       (N: the last message of the checkpoint it loaded, 0 for none), "saved S" after
 *       each save, and at the end "received-up-to S dups D gaps G bad B restored-from
 *       N on HOST"
 *   msg_prog unknown OUT TO
 *       one message to TO, which names no process: "code C elapsed_ms X"
 *   msg_prog log OUT STOP
 *       "ready"; then every message as "msg from=URN tag=T len=L data=TEXT" until the
 *       file STOP exists, then "end count N"
 *
 * Exit 0 when it did its part, 1 if messages stopped coming (or a receiver saw
 * something wrong), 4 if a call failed, 2 on bad usage. Not part of libsnipe.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "snipe.h"

#define TAG 7u
#define SEQ_BYTES 8u
#define IDLE_MS 30000       /* a receiver gives up after this long without a message */
#define FLUSH_MS 60000
#define GO_POLL_MS 10
#define STALL_MS 1000       /* burst: how long the agent may take before it counts as full */

/* ----------------------------------------------------------------- output */

static const char *out_path;
static int out_fd = -1;

/* One line appended to OUT with a single write, so lines never interleave. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	char line[1024];
	const char *epoch = getenv("SNIPE_EPOCH");
	int n = snprintf(line, sizeof(line), "e%s ", epoch != NULL ? epoch : "0");
	va_list ap;
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	if (out_fd < 0)
		out_fd = open(out_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (out_fd < 0 || write(out_fd, line, (size_t)n) != n)
		fprintf(stderr, "msg_prog: cannot write %s: %s\n", out_path, strerror(errno));
	fputs(line, stdout);
	fflush(stdout);
}

static int fail(const char *what, int code, const char *err)
{
	say("error %s: %s (%s)", what, snipe_errname(code), err);
	fprintf(stderr, "msg_prog: %s: %s (%s)\n", what, snipe_errname(code), err);
	return 4;
}

static uint64_t number(const char *s)
{
	char *end = NULL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0') {
		fprintf(stderr, "msg_prog: '%s' is not a number\n", s);
		exit(2);
	}
	return v;
}

static void sleep_ms(uint64_t ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
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

/* Counts one message; true if it was the next in order. */
static bool count(struct tally *t, const char *want_from, const char *from, uint32_t tag,
                  const uint8_t *buf, size_t len)
{
	t->received++;
	uint64_t seq = seq_of(buf, len);
	if (strcmp(from, want_from) != 0 || tag != TAG || seq == 0) {
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

/* ------------------------------------------------------------------ modes */

static int do_send(const char *to, uint64_t n, size_t size, uint64_t pace_every,
                   uint64_t pace_ms)
{
	snipe_ctx *ctx = join(NULL);
	uint8_t *buf = malloc(size);
	if (buf == NULL)
		return fail("malloc", SNIPE_ENOMEM, "out of memory");
	for (uint64_t seq = 1; seq <= n; seq++) {
		fill(buf, size, seq);
		int rc = snipe_send(ctx, to, TAG, buf, size, 0);
		if (rc != SNIPE_OK) {
			char what[64];
			snprintf(what, sizeof(what), "send %" PRIu64, seq);
			return fail(what, rc, snipe_error(ctx));
		}
		if (pace_every != 0 && seq % pace_every == 0)
			sleep_ms(pace_ms);
	}
	int rc = snipe_flush(ctx, FLUSH_MS);
	say("sent %" PRIu64 " flush %d", n, rc);
	free(buf);
	snipe_close(ctx);
	return rc == SNIPE_OK ? 0 : 4;
}

static int do_burst(const char *to, uint64_t n, size_t size)
{
	snipe_ctx *ctx = join(NULL);
	uint8_t *buf = malloc(size);
	if (buf == NULL)
		return fail("malloc", SNIPE_ENOMEM, "out of memory");
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
	say("accepted %" PRIu64, seq - 1);
	for (; seq <= n; seq++) {
		fill(buf, size, seq);
		int rc = snipe_send(ctx, to, TAG, buf, size, 0);
		if (rc != SNIPE_OK) {
			char what[64];
			snprintf(what, sizeof(what), "send %" PRIu64, seq);
			return fail(what, rc, snipe_error(ctx));
		}
	}
	int rc = snipe_flush(ctx, FLUSH_MS);
	say("sent %" PRIu64 " flush %d", n, rc);
	free(buf);
	snipe_close(ctx);
	return rc == SNIPE_OK ? 0 : 4;
}

static void wait_file(const char *path)
{
	while (access(path, F_OK) != 0)
		sleep_ms(GO_POLL_MS);
}

static int do_recv(const char *want_from, uint64_t n, const char *go)
{
	snipe_ctx *ctx = join(NULL);
	say("ready");
	if (go != NULL)
		wait_file(go);
	struct tally t = {0};
	uint64_t idle_since = mono_ms();
	while (t.last < n) {
		const char *from = NULL;
		uint32_t tag = 0;
		void *buf = NULL;
		size_t len = 0;
		int rc = snipe_recv(ctx, &from, &tag, &buf, &len, 1000);
		if (rc == SNIPE_ETIMEDOUT) {
			if (mono_ms() - idle_since >= IDLE_MS)
				break;
			continue;
		}
		if (rc != SNIPE_OK)
			return fail("recv", rc, snipe_error(ctx));
		idle_since = mono_ms();
		count(&t, want_from, from, tag, buf, len);
		free(buf);
	}
	say("%s %" PRIu64 " in-order %" PRIu64 " dups %" PRIu64 " gaps %" PRIu64 " bad %" PRIu64,
	    t.last < n ? "stalled" : "received", t.received, t.in_order, t.dups, t.gaps, t.bad);
	snipe_close(ctx);
	return t.last < n || t.bad != 0 ? 1 : 0;
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
	say("start on %s restored-from %" PRIu64, host, restored);
	uint64_t idle_since = mono_ms();
	while (t.last < n) {
		const char *from = NULL;
		uint32_t tag = 0;
		void *buf = NULL;
		size_t len = 0;
		rc = snipe_recv(ctx, &from, &tag, &buf, &len, 1000);
		if (rc == SNIPE_ETIMEDOUT) {
			if (mono_ms() - idle_since >= IDLE_MS)
				break;
			continue;
		}
		if (rc != SNIPE_OK)
			return fail("recv", rc, snipe_error(ctx));
		idle_since = mono_ms();
		bool next = count(&t, want_from, from, tag, buf, len);
		free(buf);
		if (next && t.last % every == 0) {
			if (state_save(ck, &t) != SNIPE_OK)
				return 4;
			say("saved %" PRIu64, t.last);
		}
	}
	say("%s %" PRIu64 " dups %" PRIu64 " gaps %" PRIu64 " bad %" PRIu64
	    " restored-from %" PRIu64 " on %s",
	    t.last < n ? "stalled-at" : "received-up-to", t.last, t.dups, t.gaps, t.bad, restored,
	    host);
	snipe_close(ctx);
	snipe_ckpt_close(ck);
	return t.last < n || t.bad != 0 ? 1 : 0;
}

static int do_unknown(const char *to)
{
	snipe_ctx *ctx = join(NULL);
	uint8_t buf[SEQ_BYTES];
	fill(buf, sizeof(buf), 1);
	uint64_t t0 = mono_ms();
	int rc = snipe_send(ctx, to, TAG, buf, sizeof(buf), 0);
	uint64_t elapsed = mono_ms() - t0;
	say("code %d elapsed_ms %" PRIu64, rc, elapsed);
	snipe_close(ctx);
	return 0;
}

static int do_log(const char *stop)
{
	snipe_ctx *ctx = join(NULL);
	say("ready");
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
		say("msg from=%s tag=%" PRIu32 " len=%zu data=%s", from, tag, len, text);
		free(buf);
	}
	say("end count %" PRIu64, n);
	snipe_close(ctx);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (sodium_init() < 0 || argc < 3)
		goto usage;
	out_path = argv[2];
	const char *mode = argv[1];
	if (strcmp(mode, "send") == 0 && argc == 8 && number(argv[5]) >= SEQ_BYTES)
		return do_send(argv[3], number(argv[4]), number(argv[5]), number(argv[6]),
		               number(argv[7]));
	if (strcmp(mode, "burst") == 0 && argc == 6 && number(argv[5]) >= SEQ_BYTES)
		return do_burst(argv[3], number(argv[4]), number(argv[5]));
	if (strcmp(mode, "recv") == 0 && (argc == 5 || argc == 6))
		return do_recv(argv[3], number(argv[4]), argc == 6 ? argv[5] : NULL);
	if (strcmp(mode, "ckrecv") == 0 && argc == 6 && number(argv[5]) > 0)
		return do_ckrecv(argv[3], number(argv[4]), number(argv[5]));
	if (strcmp(mode, "unknown") == 0 && argc == 4)
		return do_unknown(argv[3]);
	if (strcmp(mode, "log") == 0 && argc == 4)
		return do_log(argv[3]);
usage:
	fprintf(stderr, "usage: msg_prog send OUT TO COUNT SIZE PACE_EVERY PACE_MS\n"
	                "       msg_prog burst OUT TO COUNT SIZE\n"
	                "       msg_prog recv OUT FROM COUNT [GO]\n"
	                "       msg_prog ckrecv OUT FROM COUNT EVERY\n"
	                "       msg_prog unknown OUT TO\n"
	                "       msg_prog log OUT STOP\n");
	return 2;
}
