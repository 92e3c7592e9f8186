/*
 * test_msg.c — messages by URN end to end: real replicas and real agents
 * (tests/common/cluster.h) running tests/integration/msg_prog.c, which sends and
 * receives with snipe_open/snipe_send/snipe_recv and writes what it saw to a file in
 * the cluster's directory. 10,000 messages between two hosts, in order and once each;
 * 5,000 sent with SNIPE_MORE, and a message held back by SNIPE_MORE that snipe_recv
 * hands over; a checkpointing receiver whose host is killed mid-stream, resuming on
 * another host exactly after its checkpoint; a receiver without a checkpoint that
 * crashes and is restarted in place, resuming within the agent's send window; a
 * sender that crashes and resumes from its checkpoint, whose resent messages the
 * receiver gets once; a send to a URN that names no process; a receiver that
 * does not read, against which the senders' agents hold a bounded number of messages;
 * and frames from a fake host (registered in the catalog, played by the test itself)
 * that are replayed, forged, signed by the wrong key, or for no channel.
 *
 * Every message carries its sequence number and a pattern (msg_prog.c), so a receiver
 * counts exactly what came in order, twice, not at all, or damaged.
 *
 * Not here: channels as units (sealing, opening, counters: snipe/chan.c), the
 * checkpoints that carry a receiver's position (test_ckpt.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "cluster.h"
#include "msgtest.h"
#include "rcds.h"
#include "sni.h" /* the channel a fake host opens: sni_chan_*, msg.proto */
#include "snipe.h"
#include "testutil.h"

/* Asserts that a cluster stopped with every replica and agent ending cleanly. */
#define stop_cluster(c) ck_assert_int_eq(tc_cluster_stop(c), 0)

#define WAIT_MS 10000
#define POLL_MS 20
#define LOG_LINES 40
/* A job of a killed host runs elsewhere within a lease, a sweep and a heartbeat (test_agent.c
 * measures 1-1.5 s); with room for a loaded machine and a checkpoint to load. */
#define FAILOVER_MS 10000
/* 10,000 small messages from one host to another, checkpoints included, on 2 cores under a
 * sanitizer. */
#define STREAM_MS 40000
/* How long an agent may take to log a frame it dropped. */
#define DROP_MS 5000
#define COUNT 10000
#define CKPT_EVERY 500
#define KILL_AT 3000            /* the receiver's host dies once it saved this far */
#define SLOW_COUNT 5000
#define SLOW_SIZE 32768         /* bytes per message: an agent keeping them all shows */
#define SLOW_BUFFER "64"        /* --msg-buffer */
#define MAX_ACCEPTED 2000       /* 64 buffered + 256 in the library's window + slack */
#define RSS_GROWTH_KIB (64u * 1024u)
#define UNKNOWN_TIMEOUT "1000"  /* --msg-timeout-ms */
#define SENDER_URN "urn:snipe:proc:sender"
#define MORE_COUNT 5000         /* not a multiple of 64: the last send hands over a few */
#define ASK_ROUNDS 3
#define REPLY_MS 5000           /* an echo on another host answers in far less */
/* A receiver without a checkpoint crashes once it took CRASH_AT of CRASH_COUNT;
 * docs/messages.md: restarted, it resumes after the last acknowledgement that reached
 * its agent, so at most the agent's send window of what it took comes again. */
#define CRASH_COUNT 6000
#define CRASH_AT 2000
#define RESEND_WINDOW 1024
/* A sender checkpoints every CKSEND_EVERY of CKSEND_COUNT and crashes after sending
 * CKSEND_CRASH_AT. */
#define CKSEND_COUNT 4000
#define CKSEND_EVERY 500
#define CKSEND_CRASH_AT 1700

/* ------------------------------------------------------------------ helpers */

/* A cluster of 3 replicas and agents named names[0..n), each with flags extra (may be
 * NULL); a client of the catalog holding the admin key into *cl. */
static tc_cluster *start_cluster(const char *const *names, size_t n, const char *const *extra,
                                 rcds_client **cl)
{
	tc_cluster *c = tc_cluster_start(3);
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(tc_agent_start(c, names[i], extra), (int)i);
	*cl = tc_cluster_client(c, -1, tc_cluster_admin_key(c));
	rcds_client_set_timeout(*cl, 10000);
	return c;
}

/* Agents a and b with flags extra (may be NULL), as start_cluster. */
static tc_cluster *start_ab(const char *const *extra, rcds_client **cl)
{
	static const char *const names[] = {"a", "b"};
	return start_cluster(names, 2, extra, cl);
}

/* msg_prog MODE OUT args... (NULL-terminated) spawned as process name on host with
 * policy; it must start there. OUT is DIR/name.out. */
static void prog_start(tc_cluster *c, rcds_client *cl, struct tm_prog *p, const char *name,
                       const char *host, snipe_restart policy, const char *mode,
                       const char *const *args)
{
	const char *argv[TM_PROG_ARGS + 1] = {MSG_PROG_PATH, mode, "OUT"};
	size_t n = 3;
	for (size_t i = 0; args[i] != NULL; i++) {
		ck_assert_uint_lt(n, TM_PROG_ARGS);
		argv[n++] = args[i];
	}
	snipe_proc_info info;
	tm_prog_make(p, c, name, argv);
	tm_prog_spawn(c, cl, p, host, policy, &info);
}

/* Waits at most timeout_ms until p's output has a line starting with prefix; the first
 * such line must be want. */
static void expect_line(tc_cluster *c, const struct tm_prog *p, const char *prefix,
                        int timeout_ms, const char *want)
{
	char line[1024];
	tc_wait_line(c, p->out, prefix, timeout_ms, line, sizeof(line));
	ck_assert_str_eq(line, want);
}

/* A receiver's verdict (recv and ckrecv modes' last word): count messages taken, each
 * once, in order, intact. */
static void expect_received(tc_cluster *c, const struct tm_prog *recv, int count)
{
	char want[128];
	snprintf(want, sizeof(want), "e1 received %d in-order %d dups 0 gaps 0 bad 0", count,
	         count);
	expect_line(c, recv, "e1 received ", STREAM_MS, want);
}

/* Waits until p has ended with exit 0 after exactly one restart, its last run on host at
 * epoch. */
static void prog_wait_restarted(tc_cluster *c, rcds_client *cl, const struct tm_prog *p,
                                const char *host, uint64_t epoch)
{
	snipe_proc_info info;
	tm_prog_wait_ok(c, cl, p, WAIT_MS, &info);
	ck_assert_str_eq(info.host, host);
	ck_assert_uint_eq(info.epoch, epoch);
	ck_assert_uint_eq(info.restarts, 1);
}

/* A sender's end (send, burst and more modes): exit 0, its last word "e1 sent COUNT
 * flush 0", its flush having seen every message taken. */
static void expect_sent(tc_cluster *c, rcds_client *cl, const struct tm_prog *send, int count)
{
	snipe_proc_info info;
	char want[64];
	tm_prog_wait_ok(c, cl, send, WAIT_MS, &info);
	snprintf(want, sizeof(want), "e1 sent %d flush 0", count);
	expect_line(c, send, "e1 sent ", WAIT_MS, want);
}

/* The highest N of the lines "<prefix>N" in text (0 if none). */
static uint64_t last_saved(const char *text, const char *prefix)
{
	uint64_t max = 0;
	size_t plen = strlen(prefix);
	for (const char *p = text; p != NULL && *p != '\0';) {
		if (strncmp(p, prefix, plen) == 0) {
			uint64_t n = strtoull(p + plen, NULL, 10);
			max = n > max ? n : max;
		}
		p = strchr(p, '\n');
		p = p != NULL ? p + 1 : NULL;
	}
	return max;
}

/* A process's resident memory, in KiB, from /proc/PID/status. */
static uint64_t rss_kib(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
	uint64_t kib = 0;
	bool found = false;
	while (!found && fgets(line, sizeof(line), f) != NULL)
		found = sscanf(line, "VmRSS: %" SCNu64 " kB", &kib) == 1;
	fclose(f);
	ck_assert_msg(found, "no VmRSS in %s", path);
	return kib;
}

/* Under AddressSanitizer, memory an agent freed stays resident in ASan's quarantine (256
 * MiB by default), which VmRSS cannot tell from memory it holds: the daemons started
 * after this keep a small one. Without ASan, ASAN_OPTIONS means nothing. */
static void small_asan_quarantine(void)
{
	const char *old = getenv("ASAN_OPTIONS");
	char *v = NULL;
	ck_assert_int_ge(asprintf(&v, "%s%squarantine_size_mb=8", old != NULL ? old : "",
	                          old != NULL && *old != '\0' ? ":" : ""), 0);
	ck_assert_int_eq(setenv("ASAN_OPTIONS", v, 1), 0);
	free(v);
}

/* ---------------------------------------------------------------- delivery */

/* 10,000 messages from a process on a to one on b: each arrives once, in order, from the
 * sender's URN, intact; the sender's flush sees them all taken. */
/* COUNT messages from a sender on a to a receiver on b run in mode (recv: waiting in
 * snipe_recv; pollrecv: in poll(2) on snipe_fd) arrive once each, in order. */
static void order_run(const char *mode)
{
	rcds_client *cl = NULL;
	tc_cluster *c = start_ab(NULL, &cl);
	struct tm_prog recv, send;
	snipe_proc_info info;
	char count[24];
	snprintf(count, sizeof(count), "%d", COUNT);
	prog_start(c, cl, &recv, "recv", "b", SNIPE_RESTART_NEVER, mode,
	           (const char *const[]){SENDER_URN, count, NULL});
	expect_line(c, &recv, "e1 ", WAIT_MS, "e1 ready");

	uint64_t t0 = tu_mono_ms();
	prog_start(c, cl, &send, "sender", "a", SNIPE_RESTART_NEVER, "send",
	           (const char *const[]){recv.urn, count, "64", "0", "0", NULL});
	expect_received(c, &recv, COUNT);
	fprintf(stderr, "order (%s): %d messages a -> b in %" PRIu64 " ms\n", mode, COUNT,
	        tu_mono_ms() - t0);
	tm_prog_wait_ok(c, cl, &recv, WAIT_MS, &info);
	expect_sent(c, cl, &send, COUNT);
	rcds_client_close(cl);
	stop_cluster(c);
}

START_TEST(test_ten_thousand_messages_arrive_once_each_in_order)
{
	order_run("recv");
}
END_TEST

START_TEST(test_a_receiver_polling_snipe_fd_gets_them_all_in_order)
{
	order_run("pollrecv");
}
END_TEST

/* A receiver on b that does not read (agents with --msg-buffer 64): the sender's
 * non-blocking sends stop with SNIPE_EAGAIN after a bounded number, and neither agent's
 * memory grows by the 160 MiB the sender offers; once the receiver reads, the sender's
 * blocking sends go on and all 5,000 arrive in order. */
START_TEST(test_receiver_that_does_not_read_bounds_what_the_agents_hold)
{
	static const char *const buffer[] = {"--msg-buffer", SLOW_BUFFER, NULL};
	rcds_client *cl = NULL;
	small_asan_quarantine();
	tc_cluster *c = start_ab(buffer, &cl);
	struct tm_prog recv, send;
	snipe_proc_info info;
	char line[1024], count[24], size[24];
	char *go = tu_path(tc_cluster_dir(c), "go");
	snprintf(count, sizeof(count), "%d", SLOW_COUNT);
	snprintf(size, sizeof(size), "%d", SLOW_SIZE);
	prog_start(c, cl, &recv, "recv", "b", SNIPE_RESTART_NEVER, "recv",
	           (const char *const[]){SENDER_URN, count, go, NULL});
	expect_line(c, &recv, "e1 ", WAIT_MS, "e1 ready");
	uint64_t rss_a = rss_kib(tc_agent_pid(c, 0)), rss_b = rss_kib(tc_agent_pid(c, 1));

	prog_start(c, cl, &send, "sender", "a", SNIPE_RESTART_NEVER, "burst",
	           (const char *const[]){recv.urn, count, size, NULL});
	tc_wait_line(c, send.out, "e1 accepted ", WAIT_MS, line, sizeof(line));
	uint64_t accepted = strtoull(line + strlen("e1 accepted "), NULL, 10);
	fprintf(stderr, "slow: %" PRIu64 " messages of %d bytes taken before SNIPE_EAGAIN\n",
	        accepted, SLOW_SIZE);
	ck_assert_uint_gt(accepted, 0);
	ck_assert_uint_le(accepted, MAX_ACCEPTED);
	tu_sleep_ms(1000); /* the sender blocks now; an agent that keeps taking would grow */
	uint64_t grown_a = rss_kib(tc_agent_pid(c, 0)), grown_b = rss_kib(tc_agent_pid(c, 1));
	fprintf(stderr, "slow: VmRSS a %" PRIu64 " -> %" PRIu64 " KiB, b %" PRIu64 " -> %" PRIu64
	        " KiB\n", rss_a, grown_a, rss_b, grown_b);
	ck_assert_uint_lt(grown_a, rss_a + RSS_GROWTH_KIB);
	ck_assert_uint_lt(grown_b, rss_b + RSS_GROWTH_KIB);
	char *text = tu_slurp(recv.out, NULL);
	ck_assert_str_eq(text, "e1 ready\n"); /* it has not read yet */
	free(text);

	tu_write_file(go, "", 0, 0600);
	expect_received(c, &recv, SLOW_COUNT);
	expect_sent(c, cl, &send, SLOW_COUNT);
	tm_prog_wait_ok(c, cl, &recv, WAIT_MS, &info);
	free(go);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* ------------------------------------------------------------------- more */

/* 5,000 messages sent with SNIPE_MORE but the last, from a to b: each arrives once, in
 * order, intact, while the sender calls nothing after that last send (it waits for a
 * file before its flush), so that send handed over what was held back. */
START_TEST(test_messages_sent_with_more_arrive_once_each_in_order)
{
	rcds_client *cl = NULL;
	tc_cluster *c = start_ab(NULL, &cl);
	struct tm_prog recv, send;
	snipe_proc_info info;
	char count[24];
	char *go = tu_path(tc_cluster_dir(c), "go");
	snprintf(count, sizeof(count), "%d", MORE_COUNT);
	prog_start(c, cl, &recv, "recv", "b", SNIPE_RESTART_NEVER, "recv",
	           (const char *const[]){SENDER_URN, count, NULL});
	expect_line(c, &recv, "e1 ", WAIT_MS, "e1 ready");

	uint64_t t0 = tu_mono_ms();
	prog_start(c, cl, &send, "sender", "a", SNIPE_RESTART_NEVER, "more",
	           (const char *const[]){recv.urn, count, "64", go, NULL});
	expect_received(c, &recv, MORE_COUNT);
	fprintf(stderr, "more: %d messages a -> b in %" PRIu64 " ms\n", MORE_COUNT,
	        tu_mono_ms() - t0);
	char *text = tu_slurp(send.out, NULL);
	ck_assert_msg(text == NULL, "%s", text); /* it has not flushed yet: no line at all */

	tu_write_file(go, "", 0, 0600);
	expect_sent(c, cl, &send, MORE_COUNT);
	tm_prog_wait_ok(c, cl, &recv, WAIT_MS, &info);
	free(go);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* A process on a sends a message with SNIPE_MORE to an echo on b and waits in
 * snipe_recv for the answer, 3 times: the first message to a URN goes at once anyway,
 * the next two are held back until snipe_recv hands them over. Each answer comes
 * within REPLY_MS. */
START_TEST(test_recv_hands_over_a_message_held_back_by_more)
{
	rcds_client *cl = NULL;
	tc_cluster *c = start_ab(NULL, &cl);
	struct tm_prog echo, ask;
	snipe_proc_info info;
	char line[1024], rounds[24], wait[24];
	snprintf(rounds, sizeof(rounds), "%d", ASK_ROUNDS);
	snprintf(wait, sizeof(wait), "%d", REPLY_MS);
	prog_start(c, cl, &echo, "echo", "b", SNIPE_RESTART_NEVER, "echo",
	           (const char *const[]){rounds, NULL});
	expect_line(c, &echo, "e1 ", WAIT_MS, "e1 ready");

	prog_start(c, cl, &ask, "asker", "a", SNIPE_RESTART_NEVER, "ask",
	           (const char *const[]){echo.urn, rounds, wait, NULL});
	tc_wait_line(c, ask.out, "e1 asked ", WAIT_MS + ASK_ROUNDS * REPLY_MS, line, sizeof(line));
	char slowest[1024];
	tc_wait_line(c, ask.out, "e1 slowest reply ", WAIT_MS, slowest, sizeof(slowest));
	fprintf(stderr, "more: '%s'\n", slowest);
	if (strcmp(line, "e1 asked 3 replies 3") != 0) {
		char *said = tu_slurp(ask.out, NULL);
		fprintf(stderr, "--- %s ---\n%s", ask.out, said);
		free(said);
	}
	ck_assert_str_eq(line, "e1 asked 3 replies 3");
	tm_prog_wait_ok(c, cl, &ask, WAIT_MS, &info);
	tm_prog_wait_ok(c, cl, &echo, WAIT_MS, &info);
	char *text = tu_slurp(echo.out, NULL);
	ck_assert_str_eq(text, "e1 ready\ne1 echoed 3\n");
	free(text);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* ---------------------------------------------------------------- failover */

/* kill -9 of the host of a receiver that checkpoints its counters every 500 messages,
 * once it saved 3,000 of the 10,000 a sender on a sends: it runs again on c (idle) at
 * epoch 2, restores its last checkpoint, and gets every later message exactly once, in
 * order, up to the last. */
START_TEST(test_receiver_moved_by_a_host_kill_resumes_right_after_its_checkpoint)
{
	static const char *const names[] = {"a", "b", "c"};
	rcds_client *cl = NULL;
	tc_cluster *c = start_cluster(names, 3, NULL, &cl);
	struct tm_prog recv, send;
	char line[1024], count[24], every[24], prefix[64];
	snprintf(count, sizeof(count), "%d", COUNT);
	snprintf(every, sizeof(every), "%d", CKPT_EVERY);
	prog_start(c, cl, &recv, "recv", "b", SNIPE_RESTART_ON_FAILURE, "ckrecv",
	           (const char *const[]){SENDER_URN, count, every, NULL});
	expect_line(c, &recv, "e1 ", WAIT_MS, "e1 start on b restored-from 0");

	prog_start(c, cl, &send, "sender", "a", SNIPE_RESTART_NEVER, "send",
	           (const char *const[]){recv.urn, count, "64", "50", "1", NULL});
	snprintf(prefix, sizeof(prefix), "e1 saved %d", KILL_AT);
	tc_wait_line(c, recv.out, prefix, STREAM_MS, line, sizeof(line));
	uint64_t t0 = tu_mono_ms();
	tc_agent_kill(c, 1);

	tc_wait_line(c, recv.out, "e2 received-up-to ", FAILOVER_MS + STREAM_MS, line,
	             sizeof(line));
	fprintf(stderr, "failover: '%s' %" PRIu64 " ms after kill -9\n", line, tu_mono_ms() - t0);
	uint64_t upto = 0, dups = 0, gaps = 0, bad = 0, from = 0;
	char host[16];
	ck_assert_int_eq(sscanf(line, "e2 received-up-to %" SCNu64 " dups %" SCNu64 " gaps %" SCNu64
	                        " bad %" SCNu64 " restored-from %" SCNu64 " on %15s",
	                        &upto, &dups, &gaps, &bad, &from, host), 6);
	ck_assert_uint_eq(upto, COUNT);
	ck_assert_uint_eq(dups, 0);
	ck_assert_uint_eq(gaps, 0);
	ck_assert_uint_eq(bad, 0);
	ck_assert_str_eq(host, "c");
	ck_assert_uint_ge(from, KILL_AT);
	ck_assert_uint_lt(from, COUNT);
	ck_assert_uint_eq(from % CKPT_EVERY, 0);
	char *text = tu_slurp(recv.out, NULL);
	/* the kill came mid-stream: the first instance never got to the end */
	ck_assert_msg(!tu_find_line(text, "e1 received-up-to ", line, sizeof(line)), "%s", text);
	ck_assert_msg(!tu_find_line(text, "e1 stalled", line, sizeof(line)), "%s", text);
	/* the second said so when it started, on c */
	snprintf(prefix, sizeof(prefix), "e2 start on c restored-from %" PRIu64, from);
	ck_assert_msg(tu_find_line(text, prefix, line, sizeof(line)), "no '%s' in:\n%s", prefix,
	              text);
	ck_assert_str_eq(line, prefix);
	/* every checkpoint the first reported saved was committed, so the second restored
	 * the last of them or a later one (committed as the first died, unreported) */
	ck_assert_uint_le(last_saved(text, "e1 saved "), from);
	free(text);

	prog_wait_restarted(c, cl, &recv, "c", 2);
	expect_sent(c, cl, &send, COUNT);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* ----------------------------------------------------------------- restarts */

/* A receiver on b without a checkpoint handle crashes (exit 1) once it took message
 * 2,000 of the 6,000 a sender on a sends, and is restarted in place (on-failure: same
 * host, epoch 1, restarts 1). Its second life resumes after the last acknowledgement
 * that reached the agent (those sent just before the crash die with the process): its
 * first message is at most the agent's send window before 2,001 and at most 2,001, then
 * every one up to 6,000 in order, once each. */
START_TEST(test_receiver_restarted_without_a_checkpoint_resumes_within_the_send_window)
{
	rcds_client *cl = NULL;
	tc_cluster *c = start_ab(NULL, &cl);
	struct tm_prog recv, send;
	char line[1024], count[24], crash_at[24], want[1024];
	snprintf(count, sizeof(count), "%d", CRASH_COUNT);
	snprintf(crash_at, sizeof(crash_at), "%d", CRASH_AT);
	prog_start(c, cl, &recv, "recv", "b", SNIPE_RESTART_ON_FAILURE, "crashrecv",
	           (const char *const[]){SENDER_URN, count, crash_at, NULL});
	expect_line(c, &recv, "e1 ", WAIT_MS, "e1 start life 1");

	uint64_t t0 = tu_mono_ms();
	prog_start(c, cl, &send, "sender", "a", SNIPE_RESTART_NEVER, "send",
	           (const char *const[]){recv.urn, count, "64", "0", "0", NULL});
	expect_line(c, &recv, "e1 crash after ", STREAM_MS, "e1 crash after 2000");
	tc_wait_line(c, recv.out, "e1 life 2 first ", STREAM_MS, line, sizeof(line));
	fprintf(stderr, "restart: '%s' %" PRIu64 " ms after the sender started\n", line,
	        tu_mono_ms() - t0);
	uint64_t first = 0;
	ck_assert_int_eq(sscanf(line, "e1 life 2 first %" SCNu64, &first), 1);
	ck_assert_uint_ge(first, CRASH_AT - RESEND_WINDOW + 1);
	ck_assert_uint_le(first, CRASH_AT + 1);
	snprintf(want, sizeof(want), "e1 life 2 first %" PRIu64
	         " received-up-to 6000 dups 0 gaps 0 bad 0", first);
	ck_assert_str_eq(line, want);
	char *text = tu_slurp(recv.out, NULL);
	snprintf(want, sizeof(want), "e1 start life 1\ne1 crash after 2000\ne1 start life 2\n"
	         "e1 life 2 first %" PRIu64 " received-up-to 6000 dups 0 gaps 0 bad 0\n", first);
	ck_assert_str_eq(text, want);
	free(text);

	prog_wait_restarted(c, cl, &recv, "b", 1);
	expect_sent(c, cl, &send, CRASH_COUNT);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* A sender on a that checkpoints its next number every 500 messages (snipe_open with its
 * checkpoint handle) crashes (exit 1) after sending message 1,700 and is restarted in
 * place from its checkpoint of 1,500: it sends 1,501-4,000, numbered by the library as
 * before the crash. A receiver on b gets 1-4,000 once each, in order: the library drops
 * the second 1,501-1,700. */
START_TEST(test_sender_restarted_from_its_checkpoint_is_received_once)
{
	rcds_client *cl = NULL;
	tc_cluster *c = start_ab(NULL, &cl);
	struct tm_prog recv, send;
	snipe_proc_info info;
	char count[24], every[24], crash_at[24];
	snprintf(count, sizeof(count), "%d", CKSEND_COUNT);
	snprintf(every, sizeof(every), "%d", CKSEND_EVERY);
	snprintf(crash_at, sizeof(crash_at), "%d", CKSEND_CRASH_AT);
	prog_start(c, cl, &recv, "recv", "b", SNIPE_RESTART_NEVER, "recv",
	           (const char *const[]){SENDER_URN, count, NULL});
	expect_line(c, &recv, "e1 ", WAIT_MS, "e1 ready");

	uint64_t t0 = tu_mono_ms();
	prog_start(c, cl, &send, "sender", "a", SNIPE_RESTART_ON_FAILURE, "cksend",
	           (const char *const[]){recv.urn, count, every, crash_at, NULL});
	expect_received(c, &recv, CKSEND_COUNT);
	fprintf(stderr, "restart: sender resumed from its checkpoint, %d messages in %" PRIu64
	        " ms\n", CKSEND_COUNT, tu_mono_ms() - t0);
	tm_prog_wait_ok(c, cl, &recv, WAIT_MS, &info);

	prog_wait_restarted(c, cl, &send, "a", 1);
	char want[1024], *w = want, *end = want + sizeof(want);
	w += snprintf(w, (size_t)(end - w), "e1 start restored-from 0\n");
	for (int s = CKSEND_EVERY; s <= CKSEND_CRASH_AT; s += CKSEND_EVERY)
		w += snprintf(w, (size_t)(end - w), "e1 saved %d\n", s);
	w += snprintf(w, (size_t)(end - w), "e1 crash after %d\n", CKSEND_CRASH_AT);
	w += snprintf(w, (size_t)(end - w), "e1 start restored-from %d\n",
	              CKSEND_CRASH_AT / CKSEND_EVERY * CKSEND_EVERY);
	for (int s = CKSEND_CRASH_AT / CKSEND_EVERY * CKSEND_EVERY + CKSEND_EVERY;
	     s <= CKSEND_COUNT; s += CKSEND_EVERY)
		w += snprintf(w, (size_t)(end - w), "e1 saved %d\n", s);
	snprintf(w, (size_t)(end - w), "e1 sent %d flush 0\n", CKSEND_COUNT);
	char *text = tu_slurp(send.out, NULL);
	ck_assert_str_eq(text, want);
	free(text);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* ------------------------------------------------------------------ errors */

/* A send to a URN no process has (the agent gives up after --msg-timeout-ms 1000):
 * SNIPE_ENOTFOUND, after about that long. */
START_TEST(test_send_to_a_urn_naming_no_process_fails_with_enotfound)
{
	static const char *const names[] = {"a"};
	static const char *const timeout[] = {"--msg-timeout-ms", UNKNOWN_TIMEOUT, NULL};
	rcds_client *cl = NULL;
	tc_cluster *c = start_cluster(names, 1, timeout, &cl);
	struct tm_prog p;
	snipe_proc_info info;
	char line[1024];
	prog_start(c, cl, &p, "lost", "a", SNIPE_RESTART_NEVER, "unknown",
	           (const char *const[]){"urn:snipe:proc:nobody", NULL});
	tm_prog_wait_ok(c, cl, &p, WAIT_MS, &info);
	tc_wait_line(c, p.out, "e1 code ", WAIT_MS, line, sizeof(line));
	int code = 0;
	uint64_t elapsed = 0;
	ck_assert_int_eq(sscanf(line, "e1 code %d elapsed_ms %" SCNu64, &code, &elapsed), 2);
	tu_assert_code(code, SNIPE_ENOTFOUND);
	ck_assert_uint_ge(elapsed, 900);
	ck_assert_uint_le(elapsed, 4000);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* ---------------------------------------------------------------- security */

/* A hello signed by k from `from` to `to`, sent; the opener's half into h. */
static void mallory_hello(struct tm_fake_host *m, const snipe_key *k, const char *from,
                          const char *to, sni_chan_opener *h)
{
	uint8_t *frame = NULL;
	size_t len = 0;
	tu_assert_code(sni_chan_hello(k, from, to, h, &frame, &len), SNIPE_OK);
	tm_send(m->push, frame, len);
	free(frame);
}

/* A sealed frame (malloc'd) holding one message from mallory's process to `to`. */
static uint8_t *mallory_msg(sni_chan *ch, const uint8_t stream[16], const char *to,
                            uint64_t seq, const char *data, size_t *len)
{
	Snipe__Msg g = SNIPE__MSG__INIT;
	Snipe__Msg *gp = &g;
	g.from = TM_FAKE_PROC;
	g.stream = (ProtobufCBinaryData){16, (uint8_t *)stream};
	g.to = (char *)to;
	g.seq = seq;
	g.floor = 0;
	g.tag = 1;
	g.data = (ProtobufCBinaryData){strlen(data), (uint8_t *)data};
	g.origin = TM_FAKE_HOST;
	Snipe__ChanBody body = SNIPE__CHAN_BODY__INIT;
	body.msgs = &gp;
	body.n_msgs = 1;
	uint8_t *frame = NULL;
	tu_assert_code(sni_chan_seal(ch, &body, &frame, len), SNIPE_OK);
	return frame;
}

/* frame (len bytes) with one bit of its ciphertext flipped, repacked (malloc'd). */
static uint8_t *flip_sealed(const uint8_t *frame, size_t *len)
{
	Snipe__ChanFrame *f = snipe__chan_frame__unpack(NULL, *len, frame);
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_gt(f->sealed.len, 0);
	f->sealed.data[f->sealed.len / 2] ^= 0x01;
	*len = snipe__chan_frame__get_packed_size(f);
	uint8_t *out = malloc(*len);
	ck_assert_ptr_nonnull(out);
	snipe__chan_frame__pack(f, out);
	snipe__chan_frame__free_unpacked(f, NULL);
	return out;
}

/* How many times agent host's log holds text. */
static int log_count(tc_cluster *c, const char *host, const char *text)
{
	char name[64];
	snprintf(name, sizeof(name), "host-%s.log", host);
	char *path = tu_path(tc_cluster_dir(c), name), *log = tu_slurp(path, NULL);
	free(path);
	int n = 0;
	for (const char *p = log; p != NULL && (p = strstr(p, text)) != NULL; p += strlen(text))
		n++;
	free(log);
	return n;
}

/* Waits at most DROP_MS until agent host's log holds text n times, then checks it holds it
 * exactly n times. */
static void wait_log_count(tc_cluster *c, const char *host, const char *text, int n)
{
	uint64_t deadline = tu_mono_ms() + DROP_MS;
	while (log_count(c, host, text) < n && tu_mono_ms() < deadline)
		tu_sleep_ms(POLL_MS);
	int got = log_count(c, host, text);
	if (got != n)
		tc_cluster_dump_logs(c, LOG_LINES);
	ck_assert_msg(got == n, "agent %s logged '%s' %d times, not %d", host, text, got, n);
}

/* A hello agent b must drop: it logs "dropped hello (" once more (n times in all) and
 * sends no welcome. */
static void hello_dropped(tc_cluster *c, struct tm_fake_host *m, const snipe_key *k,
                          const char *from, const char *to, int n)
{
	sni_chan_opener h;
	mallory_hello(m, k, from, to, &h);
	wait_log_count(c, "b", "dropped hello (", n);
	Snipe__ChanFrame *f = tm_next_welcome(m->pull, 300);
	ck_assert_msg(f == NULL, "agent b welcomed hello number %d", n);
	sodium_memzero(&h, sizeof(h));
}

/* A fake host registered as "mallory" opens a channel with b and has one message
 * delivered to a process there; b then drops that very frame replayed, a frame with a
 * flipped ciphertext bit, hellos signed by an unregistered key, by another host's
 * registered key, or addressed to another host, and a frame for a channel it never
 * opened, each with its reason in its log. The process got exactly the one message. */
START_TEST(test_agent_drops_replayed_forged_and_unauthenticated_frames)
{
	rcds_client *cl = NULL;
	tc_cluster *c = start_ab(NULL, &cl);
	struct tm_prog recv;
	snipe_proc_info info;
	char want[512];
	char *stop = tu_path(tc_cluster_dir(c), "stop");
	prog_start(c, cl, &recv, "recv", "b", SNIPE_RESTART_NEVER, "log",
	           (const char *const[]){stop, NULL});
	expect_line(c, &recv, "e1 ", WAIT_MS, "e1 ready");

	struct tm_fake_host m;
	sni_chan ch;
	uint8_t stream[16];
	size_t len = 0;
	tm_fake_host_start(c, cl, 1, "b", &m);
	tm_fake_host_open(c, &m, "b", &ch, NULL, NULL);
	randombytes_buf(stream, sizeof(stream));

	/* one valid message */
	uint8_t *valid = mallory_msg(&ch, stream, recv.urn, 1, "hello", &len);
	tm_send(m.push, valid, len);
	expect_line(c, &recv, "e1 msg ", WAIT_MS,
	            "e1 msg from=" TM_FAKE_PROC " tag=1 len=5 data=hello");

	/* the same bytes again */
	ck_assert_int_eq(log_count(c, "b", "dropped frame (replayed)"), 0);
	tm_send(m.push, valid, len);
	wait_log_count(c, "b", "dropped frame (replayed)", 1);
	free(valid);

	/* the next counter, a bit of the ciphertext flipped */
	ck_assert_int_eq(log_count(c, "b", "dropped frame (forged)"), 0);
	uint8_t *next = mallory_msg(&ch, stream, recv.urn, 2, "forged", &len);
	uint8_t *forged = flip_sealed(next, &len);
	tm_send(m.push, forged, len);
	wait_log_count(c, "b", "dropped frame (forged)", 1);
	free(next);
	free(forged);

	/* hellos: a key the catalog does not know; host a's key (registered, role host, for
	 * a); mallory's own key, but addressed to a */
	snipe_key *stranger = NULL, *host_a = NULL;
	char *a_key = tu_path(tc_cluster_dir(c), "host-a.key"), err[256] = "";
	ck_assert_int_eq(snipe_key_generate(&stranger), SNIPE_OK);
	tu_assert_code(snipe_key_load(a_key, &host_a, err, sizeof(err)), SNIPE_OK);
	ck_assert_int_eq(log_count(c, "b", "dropped hello ("), 0);
	hello_dropped(c, &m, stranger, TM_FAKE_HOST, "b", 1);
	hello_dropped(c, &m, host_a, TM_FAKE_HOST, "b", 2);
	hello_dropped(c, &m, m.key, TM_FAKE_HOST, "a", 3);
	snipe_key_free(stranger);
	snipe_key_free(host_a);
	free(a_key);

	/* a sealed frame for a channel b never opened */
	ck_assert_int_eq(log_count(c, "b", "dropped frame (unknown channel)"), 0);
	sni_chan fake = {.tx_counter = 0};
	randombytes_buf(fake.id, sizeof(fake.id));
	randombytes_buf(fake.tx, sizeof(fake.tx));
	uint8_t *unknown = mallory_msg(&fake, stream, recv.urn, 2, "unknown", &len);
	tm_send(m.push, unknown, len);
	wait_log_count(c, "b", "dropped frame (unknown channel)", 1);
	free(unknown);

	/* nothing else reached the process */
	tu_write_file(stop, "", 0, 0600);
	expect_line(c, &recv, "e1 end ", WAIT_MS, "e1 end count 1");
	tm_prog_wait_ok(c, cl, &recv, WAIT_MS, &info);
	char *text = tu_slurp(recv.out, NULL);
	snprintf(want, sizeof(want), "e1 ready\ne1 msg from=%s tag=1 len=5 data=hello\n"
	         "e1 end count 1\n", TM_FAKE_PROC);
	ck_assert_str_eq(text, want);
	free(text);
	free(stop);
	sodium_memzero(&ch, sizeof(ch));
	tm_fake_host_stop(&m);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* -------------------------------------------------------------------- suite */

static Suite *suite(void)
{
	Suite *s = suite_create("msg");
	TCase *del = tcase_create("delivery");
	tcase_set_timeout(del, 90);
	tcase_add_test(del, test_ten_thousand_messages_arrive_once_each_in_order);
	tcase_add_test(del, test_a_receiver_polling_snipe_fd_gets_them_all_in_order);
	tcase_add_test(del, test_receiver_that_does_not_read_bounds_what_the_agents_hold);
	suite_add_tcase(s, del);

	TCase *more = tcase_create("more");
	tcase_set_timeout(more, 60);
	tcase_add_test(more, test_messages_sent_with_more_arrive_once_each_in_order);
	tcase_add_test(more, test_recv_hands_over_a_message_held_back_by_more);
	suite_add_tcase(s, more);

	TCase *fail = tcase_create("failover");
	tcase_set_timeout(fail, 90);
	tcase_add_test(fail, test_receiver_moved_by_a_host_kill_resumes_right_after_its_checkpoint);
	suite_add_tcase(s, fail);

	TCase *rs = tcase_create("restart");
	tcase_set_timeout(rs, 90);
	tcase_add_test(rs, test_receiver_restarted_without_a_checkpoint_resumes_within_the_send_window);
	tcase_add_test(rs, test_sender_restarted_from_its_checkpoint_is_received_once);
	suite_add_tcase(s, rs);

	TCase *err = tcase_create("errors");
	tcase_set_timeout(err, 30);
	tcase_add_test(err, test_send_to_a_urn_naming_no_process_fails_with_enotfound);
	suite_add_tcase(s, err);

	TCase *sec = tcase_create("security");
	tcase_set_timeout(sec, 60);
	tcase_add_test(sec, test_agent_drops_replayed_forged_and_unauthenticated_frames);
	suite_add_tcase(s, sec);
	return s;
}

int main(void)
{
	return tu_run(suite());
}
