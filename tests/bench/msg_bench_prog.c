/*
 * msg_bench_prog.c — the program bench_msg runs on both ends of every measurement: the
 * SNIPE roles under two agents (started by snipe_spawn, talking through snipe_send and
 * snipe_recv), and the same roles over raw nanomsg on tcp loopback (started by the
 * bench itself), so that a figure and its baseline are timed by the same code. Not a
 * test and not part of libsnipe.
 *
 *   msg_bench_prog echo OUT COUNT                 SNIPE: COUNT messages back to their
 *                                                 senders, then snipe_flush and leave
 *   msg_bench_prog ping OUT URN WARM N SIZE       SNIPE: WARM + N round trips to URN,
 *                                                 the last N timed
 *   msg_bench_prog sink OUT N SIZE                SNIPE: N messages, timed from the first
 *                                                 to the last received
 *   msg_bench_prog source OUT URN N SIZE          SNIPE: N messages to URN as fast as
 *                                                 snipe_send takes them, then snipe_flush
 *   msg_bench_prog source-more OUT URN N SIZE     the same, every message sent with
 *                                                 SNIPE_MORE
 *   msg_bench_prog raw-echo OUT ENDPOINT          nanomsg PAIR, binds; echoes until SIGTERM
 *   msg_bench_prog raw-ping OUT ENDPOINT WARM N SIZE   nanomsg PAIR, connects
 *   msg_bench_prog raw-sink OUT ENDPOINT N SIZE   nanomsg PULL, binds
 *   msg_bench_prog raw-source OUT ENDPOINT N SIZE nanomsg PUSH, connects; having sent
 *                                                 all, waits for SIGTERM (nanomsg 1.1 does
 *                                                 not linger: closing at once could drop
 *                                                 the last messages)
 *
 * Every payload starts with its sequence number (0, 1, ...; 8 bytes, little-endian); the
 * receivers check that each message is the next one and has SIZE bytes, and the pinger
 * that each reply is the message it sent. OUT gets one line, written at the end:
 *   rtt n=N p50_us=.. p99_us=.. min_us=.. max_us=.. cpu_s=..
 *   tput n=N seconds=.. per_s=.. mib_s=.. cpu_s=..      (sinks; seconds first to last)
 *   sent n=N seconds=.. cpu_s=..                         (sources; first send to flushed)
 *   echoed n=N cpu_s=..
 *   error WHAT: REASON
 * cpu_s is the CPU (user + system) this process used in all. Exit 0; 3 if a message was
 * lost, duplicated, reordered or changed; 4 if a call failed; 2 on bad usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <nanomsg/nn.h>
#include <nanomsg/pair.h>
#include <nanomsg/pipeline.h>

#include "snipe.h"

#define TAG 7u
#define SEQ_BYTES 8u
#define FIRST_MS 30000   /* the first message: the other end may still be starting */
#define NEXT_MS 10000    /* any later one */
#define FLUSH_MS 30000
#define LINGER_MS 60000  /* a raw server waits at most this long for its SIGTERM */
#define POLL_MS 100

#define EXIT_LOST 3
#define EXIT_CALL 4
#define EXIT_USAGE 2

static const char *out_path;
static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static double cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ----------------------------------------------------------------- output */

/* OUT's one line, written with a single write; also to stdout (the process's log). */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, line, (size_t)n) != n)
		fprintf(stderr, "msg_bench_prog: cannot write %s: %s\n", out_path, strerror(errno));
	if (fd >= 0)
		close(fd);
	fwrite(line, 1, (size_t)n, stdout);
	fflush(stdout);
}

static int fail(int code, const char *what, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(int code, const char *what, const char *fmt, ...)
{
	char why[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	say("error %s: %s", what, why);
	fprintf(stderr, "msg_bench_prog: %s: %s\n", what, why);
	return code;
}

static uint64_t number(const char *s, uint64_t min, uint64_t max)
{
	uint64_t v = 0;
	if (snipe_parse_u64(s, min, max, &v) != SNIPE_OK) {
		fprintf(stderr, "msg_bench_prog: '%s' is not a number in %" PRIu64 "-%" PRIu64 "\n", s,
		        min, max);
		exit(EXIT_USAGE);
	}
	return v;
}

/* -------------------------------------------------------------- payloads */

static void put_seq(uint8_t *buf, uint64_t seq)
{
	for (unsigned i = 0; i < SEQ_BYTES; i++)
		buf[i] = (uint8_t)(seq >> (8 * i));
}

static uint64_t get_seq(const uint8_t *buf)
{
	uint64_t seq = 0;
	for (unsigned i = 0; i < SEQ_BYTES; i++)
		seq |= (uint64_t)buf[i] << (8 * i);
	return seq;
}

/* A payload of size bytes (at least SEQ_BYTES) whose body is not all zeroes. */
static uint8_t *payload(size_t size)
{
	uint8_t *buf = malloc(size);
	if (buf == NULL)
		exit(EXIT_CALL);
	for (size_t i = 0; i < size; i++)
		buf[i] = (uint8_t)(i * 131u + 7u);
	return buf;
}

/* What a receiver has seen; every message must be the next one, of size bytes. */
struct order {
	uint64_t want;     /* the next sequence number */
	uint64_t bad;      /* messages that were not */
	char first[160];   /* the first of those */
};

static void check(struct order *o, const uint8_t *buf, size_t len, size_t size)
{
	uint64_t seq = len >= SEQ_BYTES ? get_seq(buf) : UINT64_MAX;
	if (len == size && seq == o->want) {
		o->want++;
		return;
	}
	if (o->bad++ == 0)
		snprintf(o->first, sizeof(o->first), "message %" PRIu64 " of %zu bytes arrived where "
		         "%" PRIu64 " of %zu bytes was due", seq, len, o->want, size);
	if (seq != UINT64_MAX && seq >= o->want)
		o->want = seq + 1;
}

static int sort_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Sorts us[0..n) and writes the "rtt" line. */
static void say_rtt(double *us, size_t n)
{
	qsort(us, n, sizeof(double), sort_double);
	say("rtt n=%zu p50_us=%.2f p99_us=%.2f min_us=%.2f max_us=%.2f cpu_s=%.3f", n,
	    us[(n - 1) / 2], us[(size_t)(0.99 * (double)(n - 1))], us[0], us[n - 1], cpu_s());
}

static void say_tput(uint64_t n, double first, double last, size_t size)
{
	double s = (last - first) / 1e6;
	double per = s > 0 ? (double)(n - 1) / s : 0; /* n messages: n - 1 intervals */
	say("tput n=%" PRIu64 " seconds=%.4f per_s=%.0f mib_s=%.2f cpu_s=%.3f", n, s, per,
	    per * (double)size / (1024.0 * 1024.0), cpu_s());
}

/* A sink's last word, once it took n messages of size bytes from first to last (rc: 0 if
 * it did): the "tput" line, or a failure if any came out of order. Its exit code. */
static int sink_end(int rc, const struct order *o, uint64_t n, double first, double last,
                    size_t size)
{
	if (rc == 0 && o->bad > 0)
		rc = fail(EXIT_LOST, "order", "%" PRIu64 " of %" PRIu64 " messages not in order: %s",
		          o->bad, n, o->first);
	if (rc == 0)
		say_tput(n, first, last, size);
	return rc;
}

/* ---------------------------------------------------------------- SNIPE */

static int open_ctx(snipe_ctx **ctx)
{
	char err[512] = "";
	int rc = snipe_open(NULL, ctx, err, sizeof(err));
	return rc == SNIPE_OK ? 0 : fail(EXIT_CALL, "snipe_open", "%s: %s", snipe_errname(rc), err);
}

/* Hands the agent everything sent, then leaves. */
static int close_ctx(snipe_ctx *ctx)
{
	int rc = snipe_flush(ctx, FLUSH_MS);
	if (rc != SNIPE_OK)
		rc = fail(EXIT_CALL, "snipe_flush", "%s: %s", snipe_errname(rc), snipe_error(ctx));
	snipe_close(ctx);
	return rc;
}

/* A message received (free buf; from lives until the next snipe_recv), or why none was. */
struct got {
	const char *from;
	void *buf;
	size_t len;
	char why[256];
};

/* Message i (0, 1, ...), of our tag, into g: 0, or an exit code with the reason in
 * g->why. The first may take FIRST_MS to come, every later one NEXT_MS. */
static int recv_one(snipe_ctx *ctx, uint64_t i, struct got *g)
{
	uint32_t tag = 0;
	int ms = i == 0 ? FIRST_MS : NEXT_MS;
	int rc = snipe_recv(ctx, &g->from, &tag, &g->buf, &g->len, ms);
	if (rc == SNIPE_ETIMEDOUT) {
		snprintf(g->why, sizeof(g->why), "no message within %d ms", ms);
		return EXIT_LOST;
	}
	if (rc != SNIPE_OK) {
		snprintf(g->why, sizeof(g->why), "snipe_recv: %s: %s", snipe_errname(rc),
		         snipe_error(ctx));
		return EXIT_CALL;
	}
	if (tag != TAG) {
		free(g->buf);
		g->buf = NULL;
		snprintf(g->why, sizeof(g->why), "a message with tag %" PRIu32 ", not %u", tag, TAG);
		return EXIT_LOST;
	}
	return 0;
}

static int send_one(snipe_ctx *ctx, const char *urn, const void *buf, size_t len, int flags)
{
	int rc = snipe_send(ctx, urn, TAG, buf, len, flags);
	return rc == SNIPE_OK ? 0
	                      : fail(EXIT_CALL, "snipe_send", "to %s: %s: %s", urn, snipe_errname(rc),
	                             snipe_error(ctx));
}

static int snipe_echo(uint64_t count)
{
	snipe_ctx *ctx = NULL;
	int rc = open_ctx(&ctx);
	for (uint64_t i = 0; rc == 0 && i < count; i++) {
		struct got g = {0};
		rc = recv_one(ctx, i, &g);
		if (rc != 0)
			fail(rc, "echo", "message %" PRIu64 " of %" PRIu64 ": %s", i, count, g.why);
		else
			rc = send_one(ctx, g.from, g.buf, g.len, 0);
		free(g.buf);
	}
	if (ctx == NULL)
		return rc;
	int crc = close_ctx(ctx);
	if (rc == 0 && crc == 0)
		say("echoed n=%" PRIu64 " cpu_s=%.3f", count, cpu_s());
	return rc != 0 ? rc : crc;
}

static int snipe_ping(const char *urn, uint64_t warm, uint64_t n, size_t size)
{
	snipe_ctx *ctx = NULL;
	double *us = calloc(n, sizeof(double));
	uint8_t *msg = payload(size);
	int rc = us != NULL ? open_ctx(&ctx) : fail(EXIT_CALL, "calloc", "out of memory");
	for (uint64_t i = 0; rc == 0 && i < warm + n; i++) {
		struct got g = {0};
		put_seq(msg, i);
		double t0 = now_us();
		rc = send_one(ctx, urn, msg, size, 0);
		if (rc == 0 && (rc = recv_one(ctx, i, &g)) != 0)
			fail(rc, "ping", "round trip %" PRIu64 ": %s", i, g.why);
		double t1 = now_us();
		if (rc == 0 &&
		    (strcmp(g.from, urn) != 0 || g.len != size || memcmp(g.buf, msg, size) != 0))
			rc = fail(EXIT_LOST, "reply", "round trip %" PRIu64 ": a reply of %zu bytes from %s "
			          "is not the message sent (%zu bytes to %s)", i, g.len, g.from, size,
			          urn);
		free(g.buf);
		if (i >= warm)
			us[i - warm] = t1 - t0;
	}
	int crc = ctx != NULL ? close_ctx(ctx) : 0;
	if (rc == 0 && crc == 0)
		say_rtt(us, n);
	free(us);
	free(msg);
	return rc != 0 ? rc : crc;
}

static int snipe_sink(uint64_t n, size_t size)
{
	snipe_ctx *ctx = NULL;
	struct order o = {0};
	char sender[SNIPE_URN_MAX] = "";
	double first = 0, last = 0;
	int rc = open_ctx(&ctx);
	for (uint64_t i = 0; rc == 0 && i < n; i++) {
		struct got g = {0};
		rc = recv_one(ctx, i, &g);
		last = now_us();
		if (rc == 0 && i == 0) {
			first = last;
			snprintf(sender, sizeof(sender), "%s", g.from);
		}
		if (rc == 0 && strcmp(g.from, sender) != 0) {
			snprintf(g.why, sizeof(g.why), "a message from %s, not %s", g.from, sender);
			rc = EXIT_LOST;
		}
		if (rc == 0)
			check(&o, g.buf, g.len, size);
		free(g.buf);
		if (rc != 0)
			fail(rc, "sink", "after %" PRIu64 " of %" PRIu64 " messages (%" PRIu64 " not in "
			     "order%s%s): %s", i, n, o.bad, o.bad ? ", the first: " : "", o.first,
			     g.why);
	}
	if (ctx == NULL)
		return rc;
	/* no flush: the sink sent nothing; its acknowledgements go with close */
	snipe_close(ctx);
	return sink_end(rc, &o, n, first, last, size);
}

/* flags: snipe_send's, for every message. */
static int snipe_source(const char *urn, uint64_t n, size_t size, int flags)
{
	snipe_ctx *ctx = NULL;
	uint8_t *msg = payload(size);
	int rc = open_ctx(&ctx);
	double t0 = now_us();
	for (uint64_t i = 0; rc == 0 && i < n; i++) {
		put_seq(msg, i);
		rc = send_one(ctx, urn, msg, size, flags);
	}
	int crc = ctx != NULL ? close_ctx(ctx) : 0;
	if (rc == 0 && crc == 0)
		say("sent n=%" PRIu64 " seconds=%.4f cpu_s=%.3f", n, (now_us() - t0) / 1e6, cpu_s());
	free(msg);
	return rc != 0 ? rc : crc;
}

/* ---------------------------------------------------------------- nanomsg */

/* A socket of protocol proto bound (bind) or connected to endpoint, with a receive
 * timeout of rcv_ms and a send timeout of FIRST_MS (nanomsg's defaults otherwise); -1
 * after writing the error. */
static int raw_socket(int proto, const char *endpoint, bool bind, int rcv_ms)
{
	int s = nn_socket(AF_SP, proto), snd_ms = FIRST_MS;
	if (s < 0 || nn_setsockopt(s, NN_SOL_SOCKET, NN_RCVTIMEO, &rcv_ms, sizeof(rcv_ms)) < 0 ||
	    nn_setsockopt(s, NN_SOL_SOCKET, NN_SNDTIMEO, &snd_ms, sizeof(snd_ms)) < 0 ||
	    (bind ? nn_bind(s, endpoint) : nn_connect(s, endpoint)) < 0) {
		fail(EXIT_CALL, bind ? "nn_bind" : "nn_connect", "%s: %s", endpoint,
		     nn_strerror(nn_errno()));
		if (s >= 0)
			nn_close(s);
		return -1;
	}
	return s;
}

/* Sleeps until SIGTERM, at most LINGER_MS; 0 if it came. */
static int await_term(void)
{
	for (int waited = 0; !stop && waited < LINGER_MS; waited += POLL_MS) {
		struct timespec ts = {0, POLL_MS * 1000000L};
		nanosleep(&ts, NULL);
	}
	return stop ? 0 : fail(EXIT_CALL, "linger", "no SIGTERM within %d ms", LINGER_MS);
}

static int raw_echo(const char *endpoint)
{
	int s = raw_socket(NN_PAIR, endpoint, true, POLL_MS);
	if (s < 0)
		return EXIT_CALL;
	uint64_t n = 0;
	int rc = 0;
	double idle_since = now_us();
	while (!stop && rc == 0) {
		void *buf = NULL;
		int len = nn_recv(s, &buf, NN_MSG, 0);
		if (len < 0 && (nn_errno() == ETIMEDOUT || nn_errno() == EINTR)) {
			if ((now_us() - idle_since) / 1000 > LINGER_MS)
				rc = fail(EXIT_CALL, "raw-echo", "nothing, and no SIGTERM, for %d ms", LINGER_MS);
			continue;
		}
		if (len < 0) {
			rc = fail(EXIT_CALL, "raw-echo", "nn_recv: %s", nn_strerror(nn_errno()));
		} else if (nn_send(s, &buf, NN_MSG, 0) < 0) { /* on success nanomsg owns buf */
			nn_freemsg(buf);
			rc = fail(EXIT_CALL, "raw-echo", "nn_send: %s", nn_strerror(nn_errno()));
		} else {
			n++;
			idle_since = now_us();
		}
	}
	nn_close(s);
	if (rc == 0)
		say("echoed n=%" PRIu64 " cpu_s=%.3f", n, cpu_s());
	return rc;
}

static int raw_ping(const char *endpoint, uint64_t warm, uint64_t n, size_t size)
{
	double *us = calloc(n, sizeof(double));
	uint8_t *msg = payload(size);
	int s = us != NULL ? raw_socket(NN_PAIR, endpoint, false, NEXT_MS) : -1;
	int rc = s >= 0 ? 0 : EXIT_CALL;
	for (uint64_t i = 0; rc == 0 && i < warm + n; i++) {
		void *buf = NULL;
		put_seq(msg, i);
		double t0 = now_us();
		int len = -1;
		if (nn_send(s, msg, size, 0) == (int)size)
			len = nn_recv(s, &buf, NN_MSG, 0);
		double t1 = now_us();
		if (len < 0)
			rc = fail(EXIT_CALL, "raw-ping", "round trip %" PRIu64 ": %s", i,
			          nn_strerror(nn_errno()));
		else if ((size_t)len != size || memcmp(buf, msg, size) != 0)
			rc = fail(EXIT_LOST, "raw-ping", "round trip %" PRIu64 ": the reply (%d bytes) is not "
			          "the message sent", i, len);
		if (buf != NULL)
			nn_freemsg(buf);
		if (i >= warm)
			us[i - warm] = t1 - t0;
	}
	if (s >= 0)
		nn_close(s);
	if (rc == 0)
		say_rtt(us, n);
	free(us);
	free(msg);
	return rc;
}

static int raw_sink(const char *endpoint, uint64_t n, size_t size)
{
	struct order o = {0};
	double first = 0, last = 0;
	int s = raw_socket(NN_PULL, endpoint, true, FIRST_MS);
	int rc = s >= 0 ? 0 : EXIT_CALL;
	for (uint64_t i = 0; rc == 0 && i < n; i++) {
		void *buf = NULL;
		int len = nn_recv(s, &buf, NN_MSG, 0);
		last = now_us();
		if (len < 0) {
			rc = fail(EXIT_LOST, "raw-sink", "%" PRIu64 " of %" PRIu64 " messages arrived: %s", i,
			          n, nn_strerror(nn_errno()));
			break;
		}
		if (i == 0) {
			first = last;
			int ms = NEXT_MS;
			nn_setsockopt(s, NN_SOL_SOCKET, NN_RCVTIMEO, &ms, sizeof(ms));
		}
		check(&o, buf, (size_t)len, size);
		nn_freemsg(buf);
	}
	if (s >= 0)
		nn_close(s);
	return sink_end(rc, &o, n, first, last, size);
}

static int raw_source(const char *endpoint, uint64_t n, size_t size)
{
	uint8_t *msg = payload(size);
	int s = raw_socket(NN_PUSH, endpoint, false, FIRST_MS);
	int rc = s >= 0 ? 0 : EXIT_CALL;
	double t0 = now_us();
	for (uint64_t i = 0; rc == 0 && i < n; i++) {
		put_seq(msg, i);
		if (nn_send(s, msg, size, 0) != (int)size)
			rc = fail(EXIT_CALL, "raw-source", "message %" PRIu64 ": %s", i,
			          nn_strerror(nn_errno()));
	}
	double t1 = now_us();
	if (rc == 0)
		rc = await_term();
	if (s >= 0)
		nn_close(s);
	if (rc == 0)
		say("sent n=%" PRIu64 " seconds=%.4f cpu_s=%.3f", n, (t1 - t0) / 1e6, cpu_s());
	free(msg);
	return rc;
}

/* ------------------------------------------------------------------- main */

static int usage(void)
{
	fprintf(stderr,
	        "usage: msg_bench_prog echo OUT COUNT\n"
	        "       msg_bench_prog ping OUT URN WARM N SIZE\n"
	        "       msg_bench_prog sink OUT N SIZE\n"
	        "       msg_bench_prog source OUT URN N SIZE\n"
	        "       msg_bench_prog source-more OUT URN N SIZE\n"
	        "       msg_bench_prog raw-echo OUT ENDPOINT\n"
	        "       msg_bench_prog raw-ping OUT ENDPOINT WARM N SIZE\n"
	        "       msg_bench_prog raw-sink OUT ENDPOINT N SIZE\n"
	        "       msg_bench_prog raw-source OUT ENDPOINT N SIZE\n");
	return EXIT_USAGE;
}

int main(int argc, char **argv)
{
	const uint64_t max = 100000000;
	if (argc < 3)
		return usage();
	const char *mode = argv[1];
	out_path = argv[2];
	struct sigaction sa = {.sa_handler = on_term};
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (strcmp(mode, "echo") == 0 && argc == 4)
		return snipe_echo(number(argv[3], 1, max));
	if (strcmp(mode, "ping") == 0 && argc == 7)
		return snipe_ping(argv[3], number(argv[4], 0, max), number(argv[5], 1, max),
		                  (size_t)number(argv[6], SEQ_BYTES, SNIPE_MSG_MAX));
	if (strcmp(mode, "sink") == 0 && argc == 5)
		return snipe_sink(number(argv[3], 2, max), (size_t)number(argv[4], SEQ_BYTES,
		                                                            SNIPE_MSG_MAX));
	if ((strcmp(mode, "source") == 0 || strcmp(mode, "source-more") == 0) && argc == 6)
		return snipe_source(argv[3], number(argv[4], 1, max),
		                    (size_t)number(argv[5], SEQ_BYTES, SNIPE_MSG_MAX),
		                    strcmp(mode, "source-more") == 0 ? SNIPE_MORE : 0);
	if (strcmp(mode, "raw-echo") == 0 && argc == 4)
		return raw_echo(argv[3]);
	if (strcmp(mode, "raw-ping") == 0 && argc == 7)
		return raw_ping(argv[3], number(argv[4], 0, max), number(argv[5], 1, max),
		                (size_t)number(argv[6], SEQ_BYTES, SNIPE_MSG_MAX));
	if (strcmp(mode, "raw-sink") == 0 && argc == 6)
		return raw_sink(argv[3], number(argv[4], 2, max),
		                (size_t)number(argv[5], SEQ_BYTES, SNIPE_MSG_MAX));
	if (strcmp(mode, "raw-source") == 0 && argc == 6)
		return raw_source(argv[3], number(argv[4], 1, max),
		                  (size_t)number(argv[5], SEQ_BYTES, SNIPE_MSG_MAX));
	return usage();
}
