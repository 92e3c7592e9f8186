/*
 * bench_msg.c — what a message between two SNIPE processes costs on this machine,
 * beside raw nanomsg between two processes over tcp loopback measured in the same run.
 * Every figure is timed by msg_bench_prog (built beside this, its path compiled in as
 * MSG_BENCH_PROG): the bench runs it itself for the baselines, and has the agents of a
 * local cluster (3 catalog replicas, 2 host agents, started with `snipe cluster up` next
 * to this binary) run it for the SNIPE figures, the sender on host1 and the receiver on
 * host2, so each message goes process -> agent (ipc) -> agent (tcp) -> process (ipc).
 *
 * Round trip: 64-byte messages echoed back, p50 and p99 of ROUNDS after WARMUP.
 * Throughput: 1 KiB messages one way as fast as the sender may send (snipe_send waits
 * while the window is full; raw nanomsg: PUSH -> PULL), timed at the receiver from the
 * first to the last message received; the receiver checks that every message arrived,
 * once and in order. Also the CPU each process used per message. SNIPE is run twice:
 * every message sent without flags, then every message sent with SNIPE_MORE (the library
 * hands the agent up to 64 in a frame).
 *
 * Each baseline is run RAW_RUNS times, half before and half after the SNIPE figures, and
 * its median reported beside every run's value: on a small machine a raw round trip
 * takes two or three times longer when its two processes' threads run on different CPUs
 * than when they share one, and the scheduler decides which, run by run.
 *
 * Not a test: a missed target is printed, not failed; it exits non-zero only when it
 * cannot measure (a cluster that does not start, a program that fails, a message lost,
 * duplicated or out of order). --keep leaves the scratch directory (the cluster's logs,
 * the programs' result files) in /tmp.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"
#include "rcds.h"
#include "snipe.h"

#ifndef MSG_BENCH_PROG
#error "the build defines MSG_BENCH_PROG, the path of msg_bench_prog"
#endif

#define HOSTS 2
#define SENDER_HOST "host1"
#define RECEIVER_HOST "host2"
#define WARMUP 200
#define ROUNDS 2000
#define RTT_BYTES 64
#define TPUT_BYTES 1024
#define RAW_MSGS 200000
#define SNIPE_MSGS 100000
#define RAW_RUNS 6              /* each baseline: half before the SNIPE figures, half after */
#define RTT_DEADLINE_MS 60000   /* a round-trip run, from start to both ends exited */
#define TPUT_DEADLINE_MS 90000  /* a throughput run */
#define STOP_MS 5000            /* a raw server, after its SIGTERM */
#define POLL_MS 10
#define CLIENT_TIMEOUT_MS 20000

/* Targets. */
#define TPUT_VS_RAW 0.5 /* one-way messages/s at least this share of raw PUSH/PULL */
#define RTT_VS_RAW 4.0  /* round trip p50 at most this many times raw nanomsg's */

struct rtt {
	double p50, p99, min, max; /* us */
	double cpu_ping, cpu_echo; /* s, each end in all */
};

struct tput {
	double per_s, mib_s, seconds; /* at the receiver, first to last */
	double send_s;                /* at the sender, first send to all handed over */
	double cpu_source, cpu_sink;  /* s, each end in all */
	double cpu_agent[HOSTS];      /* s, each agent (not its children) meanwhile */
	double cpu_catalog;           /* s, the replicas meanwhile */
};

/* The ways the SNIPE sender sends, each a throughput run of its own. */
static const struct tput_mode {
	const char *suffix; /* of msg_bench_prog's mode ("source..."), names and files */
	const char *label;  /* its row in the report */
} tput_modes[] = {
	{"", "one way, 1 KiB"},
	{"-more", "one way, 1 KiB, SNIPE_MORE"},
};
#define TPUT_MODES (int)(sizeof(tput_modes) / sizeof(tput_modes[0]))

struct results {
	struct rtt raw_rtts[RAW_RUNS], rtt;
	struct tput raw_tputs[RAW_RUNS], tput[TPUT_MODES];
	struct rtt raw_rtt;   /* the median of each figure over the runs */
	struct tput raw_tput;
	int raw_runs;         /* runs of each baseline done */
	bool snipe;           /* the SNIPE figures were measured */
};

static char snipe_bin[4096];
static char dir[256];
static bool keep_dir;
static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void pause_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* ----------------------------------------------------------- result files */

/* A number after "key=" in line; -1 if absent. */
static double field(const char *line, const char *key)
{
	char k[32];
	snprintf(k, sizeof(k), " %s=", key);
	const char *p = strstr(line, k);
	return p != NULL ? strtod(p + strlen(k), NULL) : -1;
}

/* The line of the result file path that starts with "kind ": into line; fails with the
 * program's own "error ..." line, or with why when there is neither (why: where to
 * look). */
static int result(const char *path, const char *kind, char *line, size_t len,
                  const char *why, char *err, size_t errlen)
{
	char got[1024] = "";
	size_t kl = strlen(kind);
	FILE *f = fopen(path, "r");
	if (f != NULL && fgets(got, sizeof(got), f) != NULL)
		got[strcspn(got, "\n")] = '\0';
	if (f != NULL)
		fclose(f);
	if (strncmp(got, kind, kl) == 0 && got[kl] == ' ') {
		snprintf(line, len, "%s", got);
		return 0;
	}
	if (strncmp(got, "error ", 6) == 0)
		return bu_fail(err, errlen, "%s: %s", path, got + 6);
	return bu_fail(err, errlen, "no '%s' line in %s: %s", kind, path, why);
}

static int read_rtt(const char *path, struct rtt *r, const char *why, char *err, size_t errlen)
{
	char line[1024];
	if (result(path, "rtt", line, sizeof(line), why, err, errlen) != 0)
		return -1;
	r->p50 = field(line, "p50_us");
	r->p99 = field(line, "p99_us");
	r->min = field(line, "min_us");
	r->max = field(line, "max_us");
	r->cpu_ping = field(line, "cpu_s");
	return r->p50 > 0 && r->p99 > 0 ? 0 : bu_fail(err, errlen, "%s: cannot read '%s'", path, line);
}

static int read_tput(const char *path, struct tput *t, const char *why, char *err,
                     size_t errlen)
{
	char line[1024];
	if (result(path, "tput", line, sizeof(line), why, err, errlen) != 0)
		return -1;
	t->per_s = field(line, "per_s");
	t->mib_s = field(line, "mib_s");
	t->seconds = field(line, "seconds");
	t->cpu_sink = field(line, "cpu_s");
	return t->per_s > 0 ? 0 : bu_fail(err, errlen, "%s: cannot read '%s'", path, line);
}

/* The "sent" or "echoed" line of the other end: its CPU (and, for "sent", its seconds). */
static int read_other(const char *path, const char *kind, double *cpu, double *seconds,
                      const char *why, char *err, size_t errlen)
{
	char line[1024];
	if (result(path, kind, line, sizeof(line), why, err, errlen) != 0)
		return -1;
	*cpu = field(line, "cpu_s");
	if (seconds != NULL)
		*seconds = field(line, "seconds");
	return 0;
}

/* ------------------------------------------------------- raw nanomsg runs */

/* A free loopback TCP port: bind to port 0 and read what the kernel chose. */
static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int port = -1;
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* Starts msg_bench_prog with args (NULL-terminated), stdout and stderr to DIR/NAME.log;
 * it dies with us. Its pid, or -1. */
static pid_t start_prog(const char *name, char *const args[])
{
	char log[512], *argv[16] = {MSG_BENCH_PROG};
	int n = 1;
	for (; args[n - 1] != NULL && n < 15; n++)
		argv[n] = args[n - 1];
	argv[n] = NULL;
	snprintf(log, sizeof(log), "%s/%s.log", dir, name);
	int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	pid_t parent = getpid(), pid = fork();
	if (pid == 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
			_exit(126);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		close_range(3, ~0u, 0);
		execv(argv[0], argv);
		_exit(127);
	}
	close(fd);
	return pid;
}

/* Waits at most ms for pid to exit; 0 if it exited 0. Otherwise kills and reaps it and
 * fails naming what. */
static int wait_prog(pid_t pid, const char *what, int ms, char *err, size_t errlen)
{
	int st = 0;
	double t0 = now_ms();
	pid_t got;
	while ((got = waitpid(pid, &st, WNOHANG)) == 0 && !interrupted && now_ms() - t0 < ms)
		pause_ms(POLL_MS);
	if (got == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	if (got == pid)
		return bu_fail(err, errlen, "%s ended with %s %d (see %s/%s.log)", what,
		               WIFEXITED(st) ? "status" : "signal",
		               WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), dir, what);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return bu_fail(err, errlen, "%s %s", what,
	               interrupted ? "interrupted" : "did not end in time: killed");
}

/* One raw run: the server (echo, source), then the client (ping, sink); waits for the
 * client, then SIGTERMs the server and waits for it. */
static int raw_pair(const char *server, char *const sargs[], const char *client,
                    char *const cargs[], int deadline_ms, char *err, size_t errlen)
{
	pid_t s = start_prog(server, sargs);
	if (s < 0)
		return bu_fail(err, errlen, "cannot start %s: %s", MSG_BENCH_PROG, strerror(errno));
	pid_t c = start_prog(client, cargs);
	int rc = c >= 0 ? wait_prog(c, client, deadline_ms, err, errlen)
	                : bu_fail(err, errlen, "cannot start %s: %s", MSG_BENCH_PROG, strerror(errno));
	kill(s, SIGTERM);
	char serr[512];
	if (wait_prog(s, server, STOP_MS, serr, sizeof(serr)) != 0 && rc == 0)
		rc = bu_fail(err, errlen, "%s", serr);
	return rc;
}

/* One end of a raw run: its name (MODE-K), result file (DIR/NAME.out) and where to look
 * when that says nothing (its log, DIR/NAME.log). */
struct raw_end {
	char name[32], out[512], why[600];
};

static void raw_end_init(struct raw_end *e, const char *mode, int k)
{
	snprintf(e->name, sizeof(e->name), "%s-%d", mode, k);
	snprintf(e->out, sizeof(e->out), "%s/%s.out", dir, e->name);
	snprintf(e->why, sizeof(e->why), "see %s/%s.log", dir, e->name);
}

/* nanomsg PAIR over tcp loopback: 64-byte round trips (run k). */
static int raw_rtt(int k, struct rtt *r, char *err, size_t errlen)
{
	char ep[64], warm[16], n[16], size[16];
	struct raw_end echo, ping;
	snprintf(ep, sizeof(ep), "tcp://127.0.0.1:%d", free_port());
	raw_end_init(&echo, "raw-echo", k);
	raw_end_init(&ping, "raw-ping", k);
	snprintf(warm, sizeof(warm), "%d", WARMUP);
	snprintf(n, sizeof(n), "%d", ROUNDS);
	snprintf(size, sizeof(size), "%d", RTT_BYTES);
	char *const eargs[] = {"raw-echo", echo.out, ep, NULL};
	char *const pargs[] = {"raw-ping", ping.out, ep, warm, n, size, NULL};
	if (raw_pair(echo.name, eargs, ping.name, pargs, RTT_DEADLINE_MS, err, errlen) != 0 ||
	    read_rtt(ping.out, r, ping.why, err, errlen) != 0)
		return -1;
	return read_other(echo.out, "echoed", &r->cpu_echo, NULL, echo.why, err, errlen);
}

/* nanomsg PUSH -> PULL over tcp loopback: 1 KiB messages one way (run k). */
static int raw_tput(int k, struct tput *t, char *err, size_t errlen)
{
	char ep[64], n[16], size[16];
	struct raw_end source, sink;
	snprintf(ep, sizeof(ep), "tcp://127.0.0.1:%d", free_port());
	raw_end_init(&source, "raw-source", k);
	raw_end_init(&sink, "raw-sink", k);
	snprintf(n, sizeof(n), "%d", RAW_MSGS);
	snprintf(size, sizeof(size), "%d", TPUT_BYTES);
	char *const sargs[] = {"raw-source", source.out, ep, n, size, NULL};
	char *const kargs[] = {"raw-sink", sink.out, ep, n, size, NULL};
	if (raw_pair(source.name, sargs, sink.name, kargs, TPUT_DEADLINE_MS, err, errlen) != 0 ||
	    read_tput(sink.out, t, sink.why, err, errlen) != 0)
		return -1;
	return read_other(source.out, "sent", &t->cpu_source, &t->send_s, source.why, err, errlen);
}

/* n more runs of each baseline. */
static int raw_runs(struct results *r, int n, char *err, size_t errlen)
{
	for (int i = 0; i < n; i++, r->raw_runs++)
		if (raw_rtt(r->raw_runs + 1, &r->raw_rtts[r->raw_runs], err, errlen) != 0 ||
		    raw_tput(r->raw_runs + 1, &r->raw_tputs[r->raw_runs], err, errlen) != 0)
			return -1;
	return 0;
}

/* The median of the n values at base, base + stride, ... (n <= RAW_RUNS). */
static double median(const double *base, size_t stride, int n)
{
	double v[RAW_RUNS];
	for (int i = 0; i < n; i++)
		v[i] = *(const double *)((const char *)base + (size_t)i * stride);
	qsort(v, (size_t)n, sizeof(double), bu_cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Each baseline figure: its median over the runs. */
static void raw_summary(struct results *r)
{
	int n = r->raw_runs;
	const struct rtt *a = r->raw_rtts;
	const struct tput *b = r->raw_tputs;
	r->raw_rtt = (struct rtt){
		median(&a->p50, sizeof(*a), n), median(&a->p99, sizeof(*a), n),
		median(&a->min, sizeof(*a), n), median(&a->max, sizeof(*a), n),
		median(&a->cpu_ping, sizeof(*a), n), median(&a->cpu_echo, sizeof(*a), n)};
	r->raw_tput = (struct tput){
		.per_s = median(&b->per_s, sizeof(*b), n), .mib_s = median(&b->mib_s, sizeof(*b), n),
		.seconds = median(&b->seconds, sizeof(*b), n),
		.send_s = median(&b->send_s, sizeof(*b), n),
		.cpu_source = median(&b->cpu_source, sizeof(*b), n),
		.cpu_sink = median(&b->cpu_sink, sizeof(*b), n)};
}

/* ------------------------------------------------------------- SNIPE runs */

/* Where an agent-run program's stderr goes: CLUSTER/HOST/logs/NAME.err. */
static void err_log(const struct bu_cluster *c, const char *host, const char *name, char *buf,
                    size_t len)
{
	snprintf(buf, len, "see %s/%s/logs/%s.err", c->dir, host, name);
}

/* Spawns `msg_bench_prog ARGS` as name on host; its URN into urn. */
static int spawn_prog(rcds_client *cl, const char *name, const char *host,
                      const char *const *args, size_t nargs, char *urn, char *err,
                      size_t errlen)
{
	const char *argv[8] = {MSG_BENCH_PROG};
	char serr[512] = "";
	snipe_proc_info info;
	for (size_t i = 0; i < nargs && i < 7; i++)
		argv[i + 1] = args[i];
	snipe_spawn_opts o = {.name = name, .host = host, .restart = SNIPE_RESTART_NEVER,
	                      .argv = argv, .argc = nargs + 1};
	int rc = snipe_spawn(cl, &o, &info, serr, sizeof(serr));
	if (rc != SNIPE_OK)
		return bu_fail(err, errlen, "spawn of %s on %s: %s: %s", name, host, snipe_errname(rc),
		               serr);
	snprintf(urn, SNIPE_URN_MAX, "%s", info.urn);
	return 0;
}

/* Waits at most ms (from t0, a now_ms reading) for urn to end; fails unless it exited
 * 0, with the program's error line or the last line of its stderr. */
static int wait_spawned(const struct bu_cluster *c, rcds_client *cl, const char *urn,
                        const char *host, const char *out, double t0, int ms, char *err,
                        size_t errlen)
{
	snipe_proc_info info;
	char serr[512] = "", why[1024], path[4200];
	const char *name = strrchr(urn, ':') + 1;
	int rc;
	while ((rc = snipe_wait(cl, urn, 100, &info, serr, sizeof(serr))) == SNIPE_ETIMEDOUT &&
	       !interrupted && now_ms() - t0 < ms)
		;
	if (rc == SNIPE_OK && strcmp(info.state, "exited") == 0 && info.has_exit &&
	    info.exit_code == 0)
		return 0;
	if (rc == SNIPE_ETIMEDOUT) {
		char kerr[256];
		snipe_kill(cl, urn, kerr, sizeof(kerr));
	}
	bu_last_line(out, why, sizeof(why));
	if (strncmp(why, "error ", 6) != 0) {
		snprintf(path, sizeof(path), "%s/%s/logs/%s.err", c->dir, host, name);
		bu_last_line(path, why, sizeof(why));
	}
	if (interrupted)
		return bu_fail(err, errlen, "interrupted");
	if (rc == SNIPE_ETIMEDOUT)
		return bu_fail(err, errlen, "%s on %s did not end within %d s: killed; %s", name, host,
		               ms / 1000, why);
	if (rc != SNIPE_OK)
		return bu_fail(err, errlen, "waiting for %s: %s: %s", name, snipe_errname(rc), serr);
	return bu_fail(err, errlen, "%s on %s ended %s (exit %d): %s", name, host, info.state,
	               info.exit_code, why);
}

/* The receiver failed with reason: fails with it, after the sender's reason if rc says
 * the sender failed too. */
static int both(int rc, char *err, size_t errlen, const char *reason)
{
	if (rc == 0)
		return bu_fail(err, errlen, "%s", reason);
	if (strcmp(err, reason) == 0)
		return -1;
	size_t used = strlen(err);
	snprintf(err + used, errlen - used, "; and %s", reason);
	return -1;
}

/*
 * One SNIPE run: `msg_bench_prog SARGS` spawned as sname on the receiving host, then
 * `msg_bench_prog CARGS` as cname on the sending host; waits at most ms for both to end.
 * args[1] is each one's result file. The server's URN goes into surn before the client
 * is spawned, so cargs may point to surn.
 */
static int snipe_pair(const struct bu_cluster *c, rcds_client *cl, const char *sname,
                      const char *const *sargs, size_t sn, char *surn, const char *cname,
                      const char *const *cargs, size_t cn, int ms, char *err, size_t errlen)
{
	char curn[SNIPE_URN_MAX], serr[1024];
	double t0 = now_ms();
	if (spawn_prog(cl, sname, RECEIVER_HOST, sargs, sn, surn, err, errlen) != 0)
		return -1;
	int rc = spawn_prog(cl, cname, SENDER_HOST, cargs, cn, curn, err, errlen);
	if (rc == 0)
		rc = wait_spawned(c, cl, curn, SENDER_HOST, cargs[1], t0, ms, err, errlen);
	if (wait_spawned(c, cl, surn, RECEIVER_HOST, sargs[1], t0, ms, serr, sizeof(serr)) != 0)
		rc = both(rc, err, errlen, serr);
	return rc;
}

/* Round trips: echo on the receiving host, ping on the sending host. */
static int snipe_rtt(const struct bu_cluster *c, rcds_client *cl, struct rtt *r, char *err,
                     size_t errlen)
{
	char eout[512], pout[512], count[16], warm[16], n[16], size[16];
	char echo[SNIPE_URN_MAX], ewhy[4300], pwhy[4300];
	snprintf(eout, sizeof(eout), "%s/echo.out", dir);
	snprintf(pout, sizeof(pout), "%s/ping.out", dir);
	snprintf(count, sizeof(count), "%d", WARMUP + ROUNDS);
	snprintf(warm, sizeof(warm), "%d", WARMUP);
	snprintf(n, sizeof(n), "%d", ROUNDS);
	snprintf(size, sizeof(size), "%d", RTT_BYTES);
	err_log(c, RECEIVER_HOST, "msg-echo", ewhy, sizeof(ewhy));
	err_log(c, SENDER_HOST, "msg-ping", pwhy, sizeof(pwhy));
	const char *eargs[] = {"echo", eout, count};
	const char *pargs[] = {"ping", pout, echo, warm, n, size};
	if (snipe_pair(c, cl, "msg-echo", eargs, 3, echo, "msg-ping", pargs, 6, RTT_DEADLINE_MS,
	               err, errlen) != 0 ||
	    read_rtt(pout, r, pwhy, err, errlen) != 0)
		return -1;
	return read_other(eout, "echoed", &r->cpu_echo, NULL, ewhy, err, errlen);
}

/* CPU seconds of each agent (not its children), and of all the replicas. */
static void cpu_sample(const struct bu_cluster *c, double agents[HOSTS], double *catalog)
{
	char path[512], line[256], prog[64], name[64];
	int pid;
	for (int h = 0; h < HOSTS; h++) {
		char host[16];
		snprintf(host, sizeof(host), "host%d", h + 1);
		agents[h] = bu_cpu_s(bu_agent_pid(c, host), false);
	}
	*catalog = 0;
	snprintf(path, sizeof(path), "%s/pids", c->dir);
	FILE *f = fopen(path, "r");
	while (f != NULL && fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "%d %63s %63s", &pid, prog, name) == 3 && strcmp(prog, "rcdsd") == 0)
			*catalog += bu_cpu_s(pid, false);
	if (f != NULL)
		fclose(f);
}

/* One-way throughput, the sender sending as m says: sink on the receiving host, source
 * on the sending host. */
static int snipe_tput(const struct bu_cluster *c, rcds_client *cl, const struct tput_mode *m,
                      struct tput *t, char *err, size_t errlen)
{
	char kout[512], sout[512], n[16], size[16], kname[32], sname[48], mode[32];
	char sink[SNIPE_URN_MAX], kwhy[4300], swhy[4300];
	double a0[HOSTS], a1[HOSTS], cat0, cat1;
	snprintf(mode, sizeof(mode), "source%s", m->suffix);
	snprintf(kname, sizeof(kname), "msg-sink%s", m->suffix);
	snprintf(sname, sizeof(sname), "msg-%s", mode);
	snprintf(kout, sizeof(kout), "%s/sink%s.out", dir, m->suffix);
	snprintf(sout, sizeof(sout), "%s/%s.out", dir, mode);
	snprintf(n, sizeof(n), "%d", SNIPE_MSGS);
	snprintf(size, sizeof(size), "%d", TPUT_BYTES);
	err_log(c, RECEIVER_HOST, kname, kwhy, sizeof(kwhy));
	err_log(c, SENDER_HOST, sname, swhy, sizeof(swhy));
	cpu_sample(c, a0, &cat0);
	const char *kargs[] = {"sink", kout, n, size};
	const char *sargs[] = {mode, sout, sink, n, size};
	int rc = snipe_pair(c, cl, kname, kargs, 4, sink, sname, sargs, 5, TPUT_DEADLINE_MS, err,
	                    errlen);
	cpu_sample(c, a1, &cat1);
	for (int h = 0; h < HOSTS; h++)
		t->cpu_agent[h] = a1[h] - a0[h];
	t->cpu_catalog = cat1 - cat0;
	if (rc != 0 || read_tput(kout, t, kwhy, err, errlen) != 0)
		return -1;
	return read_other(sout, "sent", &t->cpu_source, &t->send_s, swhy, err, errlen);
}

/* The cluster, the baselines' first half, the SNIPE figures, their second half. A
 * cluster or SNIPE failure still lets every baseline run (unless interrupted); any
 * failure fails. */
static int bench(struct bu_cluster *c, struct results *r, char *err, size_t errlen)
{
	char cdir[300], cerr[256], serr[2048] = "";
	rcds_client *cl = NULL;
	snprintf(cdir, sizeof(cdir), "%s/cluster", dir);
	int rc = bu_cluster_up(c, snipe_bin, cdir, HOSTS, 0, serr, sizeof(serr));
	if (raw_runs(r, RAW_RUNS / 2, err, errlen) != 0)
		return -1;
	if (rc == 0 && rcds_client_open(c->endpoints, c->admin, &cl, cerr, sizeof(cerr)) != SNIPE_OK)
		rc = bu_fail(serr, sizeof(serr), "catalog: %s", cerr);
	if (rc == 0) {
		rcds_client_set_timeout(cl, CLIENT_TIMEOUT_MS);
		rc = snipe_rtt(c, cl, &r->rtt, serr, sizeof(serr));
	}
	for (int m = 0; m < TPUT_MODES && rc == 0; m++)
		rc = snipe_tput(c, cl, &tput_modes[m], &r->tput[m], serr, sizeof(serr));
	rcds_client_close(cl);
	r->snipe = rc == 0;
	int raw = interrupted ? bu_fail(err, errlen, "interrupted")
	                      : raw_runs(r, RAW_RUNS - RAW_RUNS / 2, err, errlen);
	if (rc != 0) /* what went wrong with SNIPE says more than a baseline after it */
		return bu_fail(err, errlen, "%s", serr);
	return raw;
}

/* ------------------------------------------------------------------ report */

/* "a, b, c": the values at base, base + stride, ... of the n runs, rounded. */
static void list_runs(char *buf, size_t len, const double *base, size_t stride, int n)
{
	size_t used = 0;
	buf[0] = '\0';
	for (int i = 0; i < n && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%.0f", i ? ", " : "",
		                         *(const double *)((const char *)base + (size_t)i * stride));
}

/* A throughput run's rows: st measured as m says, beside the baseline bt. */
static void print_tput(const struct tput_mode *m, const struct tput *st, const struct tput *bt)
{
	char target[48];
	snprintf(target, sizeof(target), ">= %.0f%% raw (%.0f/s)", 100 * TPUT_VS_RAW,
	         TPUT_VS_RAW * bt->per_s);
	printf("  %-30s %8.0f msg/s   %-22s %-6s  %.2f x raw; %.1f MiB/s\n", m->label,
	       st->per_s, target, bu_verdict(st->per_s >= TPUT_VS_RAW * bt->per_s),
	       st->per_s / bt->per_s, st->mib_s);
	printf("  %-30s %14s   %-22s %-6s  %d of %d, each once, in order (checked by the "
	       "receiver)\n", "  delivery", "", "", "", SNIPE_MSGS, SNIPE_MSGS);
	printf("  %-30s %12.2f s   %-22s %-6s  first send to all handed over (raw: %.2f s for %d); "
	       "receiver, first to last: %.2f s\n", "  sender's time", st->send_s, "", "",
	       bt->send_s, RAW_MSGS, st->seconds);
	double us = 1e6 / SNIPE_MSGS, raw_us = 1e6 / RAW_MSGS;
	printf("  %-30s %11.1f us   sender %.1f, %s agent %.1f, %s agent %.1f, receiver %.1f, "
	       "catalog %.1f; raw: sender %.1f, receiver %.1f; %ld CPUs\n", "  CPU per message",
	       us * (st->cpu_source + st->cpu_agent[0] + st->cpu_agent[1] + st->cpu_sink +
	             st->cpu_catalog),
	       us * st->cpu_source, SENDER_HOST, us * st->cpu_agent[0], RECEIVER_HOST,
	       us * st->cpu_agent[1], us * st->cpu_sink, us * st->cpu_catalog,
	       raw_us * bt->cpu_source, raw_us * bt->cpu_sink, sysconf(_SC_NPROCESSORS_ONLN));
}

static void print_report(struct results *r)
{
	raw_summary(r);
	const struct rtt *br = &r->raw_rtt, *sr = &r->rtt;
	const struct tput *bt = &r->raw_tput;
	char target[48], runs[160], what[64];
	printf("messages: %d-byte round trips and one-way %d-byte messages between two processes "
	       "on a local cluster (3 catalog replicas, %d agents on loopback), sender on %s, "
	       "receiver on %s; every hop sealed (ChaCha20-Poly1305)\n\n", RTT_BYTES, TPUT_BYTES,
	       HOSTS, SENDER_HOST, RECEIVER_HOST);
	printf("  baselines (same run): two processes over tcp loopback; the median of %d runs, half "
	       "before the SNIPE figures, half after\n", r->raw_runs);
	list_runs(runs, sizeof(runs), &r->raw_rtts[0].p50, sizeof(struct rtt), r->raw_runs);
	snprintf(what, sizeof(what), "nanomsg PAIR round trip, %d B", RTT_BYTES);
	printf("    %-36s p50 %.1f us, p99 %.1f us   (%d after %d warm-up; p50 of each run: %s "
	       "us)\n", what, br->p50, br->p99, ROUNDS, WARMUP, runs);
	list_runs(runs, sizeof(runs), &r->raw_tputs[0].per_s, sizeof(struct tput), r->raw_runs);
	snprintf(what, sizeof(what), "nanomsg PUSH->PULL one way, %d B", TPUT_BYTES);
	printf("    %-36s %.0f msg/s, %.1f MiB/s   (%d messages, first to last received; each "
	       "run: %s /s)\n\n", what, bt->per_s, bt->mib_s, RAW_MSGS, runs);
	if (!r->snipe) {
		printf("  SNIPE figures: not measured (see the error below)\n");
		return;
	}
	printf("  %-30s %14s   %-22s %s\n", "measure", "value", "target", "verdict, ratio");
	snprintf(target, sizeof(target), "<= %.0f x raw (%.0f us)", RTT_VS_RAW, RTT_VS_RAW * br->p50);
	printf("  %-30s %11.1f us   %-22s %-6s  %.1f x raw p50\n", "round trip p50, 64 B", sr->p50,
	       target, bu_verdict(sr->p50 <= RTT_VS_RAW * br->p50), sr->p50 / br->p50);
	printf("  %-30s %11.1f us   %-22s %-6s  %.1f x raw p99; min %.1f us, max %.1f us\n",
	       "round trip p99, 64 B", sr->p99, "", "", sr->p99 / br->p99, sr->min, sr->max);
	for (int m = 0; m < TPUT_MODES; m++)
		print_tput(&tput_modes[m], &r->tput[m], bt);
}

/* -------------------------------------------------------------------- main */

int main(int argc, char **argv)
{
	char self[4096], err[1024] = "", derr[512];
	static struct results r;
	static struct bu_cluster c;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--keep") != 0) {
			fprintf(stderr, "usage: bench_msg [--keep]\n");
			return 2;
		}
		keep_dir = true;
	}
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	self[n > 0 ? n : 0] = '\0';
	const char *bin = dirname(self);
	snprintf(snipe_bin, sizeof(snipe_bin), "%s/snipe", bin);
	static const char *const needed[] = {"snipe", "rcdsd", "snipe-agentd"};
	for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++) {
		char path[4200];
		snprintf(path, sizeof(path), "%s/%s", bin, needed[i]);
		if (access(path, X_OK) != 0) {
			fprintf(stderr, "bench_msg: no %s next to this binary (%s): build the snipe, "
			        "snipe-agentd and rcdsd targets\n", needed[i], path);
			return 1;
		}
	}
	if (access(MSG_BENCH_PROG, X_OK) != 0) {
		fprintf(stderr, "bench_msg: no %s: build the msg_bench_prog target\n", MSG_BENCH_PROG);
		return 1;
	}
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	snprintf(dir, sizeof(dir), "/tmp/snipe-bench-msg-%d", (int)getpid());
	int rc = mkdir(dir, 0700) == 0 ? 0
	                               : bu_fail(err, sizeof(err), "cannot create %s: %s", dir,
	                                         strerror(errno));
	if (rc == 0)
		rc = bench(&c, &r, err, sizeof(err));
	if (bu_cluster_down(&c, snipe_bin, keep_dir || rc != 0, derr, sizeof(derr)) != 0 && rc == 0)
		rc = bu_fail(err, sizeof(err), "%s", derr);
	if (r.raw_runs > 0)
		print_report(&r);
	if (rc != 0)
		fprintf(stderr, "bench_msg: %s\n", err);
	if (!keep_dir && rc == 0)
		bu_remove_tree(dir);
	else if (dir[0] != '\0' && access(dir, F_OK) == 0)
		fprintf(stderr, "bench_msg: logs kept in %s\n", dir);
	return rc == 0 ? 0 : 1;
}
