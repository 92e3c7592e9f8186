/*
 * bench_spawn.c — what starting a process under SNIPE costs on this machine, beside its
 * anchors measured in the same run: fork+execve+waitpid of /bin/true, and a catalog
 * write and read. Starts local clusters (3 replicas, 3 host agents) with `snipe cluster
 * up` (next to this binary) and reports spawn latency, spawns per second with 32 in
 * flight, whether spawn cost depends on the agents' open-file limit, and the time a
 * `--restart always` process takes to run again elsewhere after its agent is killed.
 * Not a test: it exits non-zero only when it cannot measure (a call fails, a cluster
 * does not start, a failover never completes). --keep leaves the cluster directories
 * (logs) in /tmp.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"
#include "sni.h"
#include "rcds.h"

#define HOSTS 3
#define ANCHOR_RUNS 500
#define LAT_RUNS 300     /* per cluster, per mode (placed, host given) */
#define LAT_BLOCKS 10
#define LAT_WARMUP 10
#define CATALOG_RUNS 300
#define INFLIGHT 32
#define TPUT_SECONDS 5.0
#define TPUT_MAX 20000
#define TPUT_BUCKETS 16
#define FAILOVERS 10
#define POLL_MS 10
#define ROUND_TIMEOUT_MS 15000
#define CLIENT_TIMEOUT_MS 20000
#define NOFILE_LOW 1024
#define NOFILE_HIGH 1048576

/* Targets. */
#define SPAWN_P50_MS 2.0
#define SPAWNS_PER_S 500.0
#define FAILOVER_P50_MS 1500.0
#define FAILOVER_MAX_MS 2500.0
#define NOFILE_RATIO 1.25 /* "independent": the high limit's p50 within this of the low's */

struct cluster {
	struct bu_cluster b;
	rlim_t nofile;        /* RLIMIT_NOFILE its daemons were started with */
	long agent_nofile;    /* what an agent's /proc/PID/limits says it has */
	int lat_spawned;      /* processes lat-0 .. lat-<n-1> were spawned */
};

struct latency {
	double p50, p99; /* ms */
};


static char snipe_bin[4096];
static bool keep_dirs;
static volatile sig_atomic_t interrupted;

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* Milliseconds since t0 (a now_us reading). */
static double ms_since(double t0)
{
	return (now_us() - t0) / 1000.0;
}

static void pause_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* The p-quantile of v[0..n) (sorts v). */
static double pct(double *v, size_t n, double p)
{
	qsort(v, n, sizeof(double), bu_cmp_double);
	return v[(size_t)(p * (double)(n - 1))];
}

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* ------------------------------------------------------------------ anchors */

/* fork + execve + waitpid of /bin/true: what any process start costs here. */
static int fork_exec_us(struct latency *out, char *err, size_t errlen)
{
	static double lat[ANCHOR_RUNS];
	char *const argv[] = {"/bin/true", NULL}, *const envp[] = {NULL};
	for (int i = 0; i < ANCHOR_RUNS; i++) {
		double t0 = now_us();
		pid_t pid = fork();
		if (pid < 0)
			return bu_fail(err, errlen, "fork: %s", strerror(errno));
		if (pid == 0) {
			execve(argv[0], argv, envp);
			_exit(127);
		}
		int st;
		if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
			return bu_fail(err, errlen, "/bin/true did not run cleanly");
		lat[i] = ms_since(t0);
	}
	out->p99 = pct(lat, ANCHOR_RUNS, 0.99);
	out->p50 = pct(lat, ANCHOR_RUNS, 0.5);
	return 0;
}

/* p50 of a catalog write (one 100-byte assertion) and of a read of it, in ms. */
static int catalog_ms(const struct cluster *c, double *write50, double *read50, char *err,
                      size_t errlen)
{
	static double wl[CATALOG_RUNS], rl[CATALOG_RUNS];
	rcds_client *cl = NULL;
	char cerr[256] = "";
	int rc = rcds_client_open(c->b.endpoints, c->b.admin, &cl, cerr, sizeof(cerr));
	if (rc != SNIPE_OK)
		return bu_fail(err, errlen, "catalog: %s", cerr);
	rcds_client_set_timeout(cl, CLIENT_TIMEOUT_MS);
	char value[100];
	memset(value, 'v', sizeof(value));
	for (int i = 0; rc == SNIPE_OK && i < CATALOG_RUNS + 20; i++) {
		char urn[64];
		rcds_batch *b = NULL;
		rcds_list l = {0};
		snprintf(urn, sizeof(urn), "urn:snipe:data:bench-spawn-%d", i);
		double t0 = now_us();
		rc = rcds_batch_new(&b);
		if (rc == SNIPE_OK)
			rc = rcds_batch_put(b, urn, "payload", value, sizeof(value), 0);
		if (rc == SNIPE_OK)
			rc = rcds_write(cl, b, NULL, cerr, sizeof(cerr));
		rcds_batch_free(b);
		double t1 = now_us();
		if (rc == SNIPE_OK)
			rc = rcds_get(cl, urn, &l, cerr, sizeof(cerr));
		rcds_list_free(&l);
		if (i >= 20) { /* the first ones find the leader and open a session */
			wl[i - 20] = (t1 - t0) / 1000.0;
			rl[i - 20] = ms_since(t1);
		}
	}
	rcds_client_close(cl);
	if (rc != SNIPE_OK)
		return bu_fail(err, errlen, "catalog write or read: %s", cerr);
	*write50 = pct(wl, CATALOG_RUNS, 0.5);
	*read50 = pct(rl, CATALOG_RUNS, 0.5);
	return 0;
}

/* ------------------------------------------------------------------ cluster */

/* The soft "Max open files" of pid, from /proc/PID/limits; -1 if unreadable. */
static long proc_nofile(pid_t pid)
{
	char path[64], line[256];
	long n = -1;
	snprintf(path, sizeof(path), "/proc/%d/limits", (int)pid);
	FILE *f = fopen(path, "r");
	while (f != NULL && fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "Max open files", 14) == 0)
			n = strtol(line + 14, NULL, 10);
	if (f != NULL)
		fclose(f);
	return n;
}

/* `snipe cluster up --hosts 3` in a fresh /tmp directory, its daemons with
 * RLIMIT_NOFILE = nofile. */
static int cluster_up(struct cluster *c, const char *tag, rlim_t nofile, char *err,
                      size_t errlen)
{
	char dir[128];
	memset(c, 0, sizeof(*c));
	c->nofile = nofile;
	snprintf(dir, sizeof(dir), "/tmp/snipe-bench-spawn-%d-%s", (int)getpid(), tag);
	if (bu_cluster_up(&c->b, snipe_bin, dir, HOSTS, nofile, err, errlen) != 0)
		return -1;
	c->agent_nofile = proc_nofile(bu_agent_pid(&c->b, "host1"));
	if (c->agent_nofile != (long)nofile)
		return bu_fail(err, errlen, "host1's agent runs with nofile %ld, not %llu",
		            c->agent_nofile, (unsigned long long)nofile);
	return 0;
}

/* `snipe cluster down` and the check that nothing is left; the directory stays if
 * --keep or failing. */
static int cluster_down(struct cluster *c, bool failing, char *err, size_t errlen)
{
	return bu_cluster_down(&c->b, snipe_bin, keep_dirs || failing, err, errlen);
}

/* Where the CPU goes: the catalog's leader, the other replicas, the agents (with the
 * processes they ran), this benchmark. */
struct cpu {
	double leader, replicas, agents, self;
};

static void cpu_sample(const struct cluster *c, uint64_t leader, struct cpu *out)
{
	char path[512], line[256], prog[64], name[64];
	int pid;
	memset(out, 0, sizeof(*out));
	snprintf(path, sizeof(path), "%s/pids", c->b.dir);
	FILE *f = fopen(path, "r");
	while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "%d %63s %63s", &pid, prog, name) != 3)
			continue;
		if (strcmp(prog, "snipe-agentd") == 0)
			out->agents += bu_cpu_s(pid, true);
		else if (strncmp(name, "replica", 7) == 0 && strtoull(name + 7, NULL, 10) == leader)
			out->leader += bu_cpu_s(pid, false);
		else
			out->replicas += bu_cpu_s(pid, false);
	}
	if (f != NULL)
		fclose(f);
	out->self = bu_cpu_s(getpid(), false);
}

/* The catalog's leader's replica id, or 0. */
static uint64_t leader_id(const struct cluster *c)
{
	rcds_client *cl = NULL;
	rcds_status st;
	char err[256];
	uint64_t id = 0;
	if (rcds_client_open(c->b.endpoints, c->b.admin, &cl, err, sizeof(err)) != SNIPE_OK)
		return 0;
	if (rcds_status_get(cl, NULL, &st, err, sizeof(err)) == SNIPE_OK)
		id = st.leader_id;
	rcds_client_close(cl);
	return id;
}

/* ---------------------------------------------------------------- spawning */

static int spawn(rcds_client *cl, const char *name, const char *host, snipe_restart restart,
                 const char *const *argv, size_t argc, snipe_proc_info *info, char *err,
                 size_t errlen)
{
	snipe_spawn_opts o = {.name = name, .host = host, .restart = restart, .argv = argv,
	                      .argc = argc};
	return snipe_spawn(cl, &o, info, err, errlen);
}

static int open_client(const struct cluster *c, rcds_client **cl, char *err, size_t errlen)
{
	if (rcds_client_open(c->b.endpoints, c->b.admin, cl, err, errlen) != SNIPE_OK)
		return -1;
	rcds_client_set_timeout(*cl, CLIENT_TIMEOUT_MS);
	return 0;
}

/* Spawn latency on one cluster, measured a block at a time so that two clusters'
 * blocks can alternate (what drifts during the run then weighs on both alike). */
struct lat_run {
	struct cluster *c;
	rcds_client *cl;
	double placed[LAT_RUNS], host[LAT_RUNS]; /* ms */
	int nplaced, nhost;
};

/* n spawns of `sleep 30`, one at a time: placed by the catalog (host NULL) or on
 * host1..3 in turn; recorded unless warming up. Each process is left running. */
static int lat_block(struct lat_run *r, bool placed, int n, bool record, char *err,
                     size_t errlen)
{
	static const char *const cmd[] = {"sleep", "30"};
	struct cluster *c = r->c;
	char serr[256] = "", name[64], host[16];
	for (int i = 0; i < n; i++) {
		snipe_proc_info info;
		if (interrupted)
			return bu_fail(err, errlen, "interrupted");
		int k = c->lat_spawned++;
		snprintf(name, sizeof(name), "lat-%d", k);
		snprintf(host, sizeof(host), "host%d", k % HOSTS + 1);
		double t0 = now_us();
		int rc = spawn(r->cl, name, placed ? NULL : host, SNIPE_RESTART_NEVER, cmd, 2, &info,
		               serr, sizeof(serr));
		double ms = ms_since(t0);
		if (rc == SNIPE_OK && strcmp(info.state, "running") != 0)
			rc = bu_fail(serr, sizeof(serr), "%s is %s, not running", info.urn, info.state);
		if (rc != SNIPE_OK)
			return bu_fail(err, errlen, "spawn (%s, nofile %llu): %s",
			            placed ? "placed" : "host given", (unsigned long long)c->nofile, serr);
		if (record && placed)
			r->placed[r->nplaced++] = ms;
		else if (record)
			r->host[r->nhost++] = ms;
	}
	return 0;
}

/* Spawn latencies on clusters a and b, placed and with a host, in alternating blocks. */
static int latencies(struct lat_run *a, struct lat_run *b, char *err, size_t errlen)
{
	struct lat_run *runs[2] = {a, b};
	int rc = 0;
	for (int i = 0; rc == 0 && i < 2; i++) {
		rc = open_client(runs[i]->c, &runs[i]->cl, err, errlen);
		if (rc == 0)
			rc = lat_block(runs[i], true, LAT_WARMUP, false, err, errlen);
		if (rc == 0)
			rc = lat_block(runs[i], false, LAT_WARMUP, false, err, errlen);
	}
	for (int blk = 0; rc == 0 && blk < LAT_BLOCKS; blk++) {
		for (int i = 0; rc == 0 && i < 2; i++) {
			struct lat_run *r = runs[(blk + i) % 2];
			rc = lat_block(r, true, LAT_RUNS / LAT_BLOCKS, true, err, errlen);
			if (rc == 0)
				rc = lat_block(r, false, LAT_RUNS / LAT_BLOCKS, true, err, errlen);
		}
	}
	for (int i = 0; i < 2; i++) {
		rcds_client_close(runs[i]->cl);
		runs[i]->cl = NULL;
	}
	return rc;
}

static struct latency summary(double *v, int n)
{
	struct latency l;
	l.p99 = pct(v, (size_t)n, 0.99);
	l.p50 = pct(v, (size_t)n, 0.5);
	return l;
}

/* ------------------------------------------------------------- many at once */

/* What the INFLIGHT threads share: kill the latency runs' processes, or spawn `true`
 * from the start signal until the deadline or the budget runs out; their totals. */
struct crew {
	const struct cluster *c;
	bool kill;
	atomic_int ready;
	atomic_bool go;
	atomic_long budget;
	double t0;                            /* the start signal (now_us) */
	atomic_long per_second[TPUT_BUCKETS]; /* spawns that ended in each second */
	long ok, failed;
	double seconds;                       /* from the start signal to the last's end */
	char first_err[256];
};

struct worker {
	struct crew *crew;
	int id;
	long ok, failed;
	char first_err[256];
};

static void worker_error(struct worker *w, int rc, const char *serr)
{
	if (w->failed++ == 0)
		snprintf(w->first_err, sizeof(w->first_err), "%s: %s", snipe_errname(rc), serr);
}

static void kill_share(struct worker *w, rcds_client *cl)
{
	for (int i = w->id; i < w->crew->c->lat_spawned && !interrupted; i += INFLIGHT) {
		char urn[SNIPE_URN_MAX], serr[256] = "";
		snprintf(urn, sizeof(urn), "urn:snipe:proc:lat-%d", i);
		int rc = snipe_kill(cl, urn, serr, sizeof(serr));
		if (rc == SNIPE_OK || rc == SNIPE_EINVAL) /* EINVAL: it had ended by itself */
			w->ok++;
		else
			worker_error(w, rc, serr);
	}
}

static void spawn_until(struct worker *w, rcds_client *cl)
{
	static const char *const cmd[] = {"true"};
	struct crew *cr = w->crew;
	snipe_proc_info info;
	char name[64], serr[256] = "";
	/* one first spawn, not counted: the client finds the leader, the agents this key */
	snprintf(name, sizeof(name), "tput-%d-warm", w->id);
	spawn(cl, name, NULL, SNIPE_RESTART_NEVER, cmd, 1, &info, serr, sizeof(serr));
	atomic_fetch_add(&cr->ready, 1);
	while (!atomic_load(&cr->go) && !interrupted)
		pause_ms(1);
	double end = cr->t0 + TPUT_SECONDS * 1e6;
	for (int i = 0; now_us() < end && !interrupted && atomic_fetch_sub(&cr->budget, 1) > 0;
	     i++) {
		snprintf(name, sizeof(name), "tput-%d-%d", w->id, i);
		int rc = spawn(cl, name, NULL, SNIPE_RESTART_NEVER, cmd, 1, &info, serr, sizeof(serr));
		size_t sec = (size_t)((now_us() - cr->t0) / 1e6);
		if (rc != SNIPE_OK) {
			worker_error(w, rc, serr);
			continue;
		}
		w->ok++;
		if (sec < TPUT_BUCKETS)
			atomic_fetch_add(&cr->per_second[sec], 1);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	rcds_client *cl = NULL;
	char serr[256] = "";
	if (open_client(w->crew->c, &cl, serr, sizeof(serr)) != 0) {
		worker_error(w, SNIPE_EUNAVAIL, serr);
		atomic_fetch_add(&w->crew->ready, 1);
		return NULL;
	}
	if (w->crew->kill)
		kill_share(w, cl);
	else
		spawn_until(w, cl);
	rcds_client_close(cl);
	return NULL;
}

/* Runs INFLIGHT workers on cr (c and kill set, the rest zero) and adds them up. */
static void run_workers(struct crew *cr)
{
	pthread_t t[INFLIGHT];
	struct worker w[INFLIGHT];
	int started = 0;
	atomic_store(&cr->budget, TPUT_MAX);
	for (int i = 0; i < INFLIGHT; i++) {
		w[i] = (struct worker){.crew = cr, .id = i};
		if (pthread_create(&t[i], NULL, worker_main, &w[i]) != 0) {
			snprintf(cr->first_err, sizeof(cr->first_err), "cannot start thread %d", i);
			cr->failed++;
			break;
		}
		started++;
	}
	while (!cr->kill && atomic_load(&cr->ready) < started && !interrupted)
		pause_ms(1);
	cr->t0 = now_us();
	atomic_store(&cr->go, true);
	for (int i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	cr->seconds = (now_us() - cr->t0) / 1e6;
	for (int i = 0; i < started; i++) {
		cr->ok += w[i].ok;
		cr->failed += w[i].failed;
		if (cr->first_err[0] == '\0' && w[i].first_err[0] != '\0')
			snprintf(cr->first_err, sizeof(cr->first_err), "%s", w[i].first_err);
	}
}

/* ---------------------------------------------------------------- failover */

/* The state attribute of urn:snipe:host:<host> and its version. */
static int host_state(rcds_client *cl, const char *host, char *state, size_t len,
                      uint64_t *version, char *err, size_t errlen)
{
	char urn[SNIPE_URN_MAX];
	rcds_list l = {0};
	snprintf(urn, sizeof(urn), "urn:snipe:host:%s", host);
	state[0] = '\0';
	*version = 0;
	if (rcds_get(cl, urn, &l, err, errlen) != SNIPE_OK)
		return -1;
	for (size_t i = 0; i < l.count; i++) {
		if (strcmp(l.items[i].attr, "state") == 0) {
			snprintf(state, len, "%s", (const char *)l.items[i].value);
			*version = l.items[i].version;
		}
	}
	rcds_list_free(&l);
	return 0;
}

/* The version of each host's state attribute into version[] (so a change shows a host
 * that went down and maybe up again); whether every host is up now. */
static bool host_states(rcds_client *cl, uint64_t version[HOSTS])
{
	bool all_up = true;
	for (int i = 0; i < HOSTS; i++) {
		char host[16], state[16], serr[256];
		snprintf(host, sizeof(host), "host%d", i + 1);
		if (host_state(cl, host, state, sizeof(state), &version[i], serr, sizeof(serr)) != 0)
			version[i] = 0;
		all_up = all_up && strcmp(state, "up") == 0;
	}
	return all_up;
}

/* Replaces the pid of host's agent in DIR/pids, so `snipe cluster down` stops the new
 * one. */
static int record_pid(const struct cluster *c, const char *host, pid_t old, pid_t pid)
{
	char path[512], text[4096] = "", line[256];
	snprintf(path, sizeof(path), "%s/pids", c->b.dir);
	FILE *f = fopen(path, "r");
	while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
		size_t u = strlen(text);
		if (atoi(line) == old)
			snprintf(text + u, sizeof(text) - u, "%d snipe-agentd %s\n", (int)pid, host);
		else
			snprintf(text + u, sizeof(text) - u, "%s", line);
	}
	if (f == NULL)
		return -1;
	fclose(f);
	f = fopen(path, "w");
	if (f == NULL)
		return -1;
	int rc = fputs(text, f) < 0 ? -1 : 0;
	return fclose(f) != 0 ? -1 : rc;
}

/* Starts an agent again with the argv it had (NUL-separated, from /proc before it died),
 * as cluster up does: its own session, output appended to DIR/<host>.log, the cluster's
 * open-file limit; not our child (so nothing waits on us to reap it). Its pid, or -1. */
static pid_t respawn(const struct cluster *c, const char *host, char *cmdline, size_t len)
{
	char *argv[64], log[512];
	int argc = 0, fds[2];
	for (size_t i = 0; i < len && argc < 63; i += strlen(cmdline + i) + 1)
		argv[argc++] = cmdline + i;
	argv[argc] = NULL;
	snprintf(log, sizeof(log), "%s/%s.log", c->b.dir, host);
	if (argc == 0 || pipe2(fds, O_CLOEXEC) != 0)
		return -1;
	pid_t mid = fork();
	if (mid == 0) {
		pid_t pid = fork();
		if (pid == 0) {
			struct rlimit rl = {c->nofile, c->nofile};
			int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
			int out = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
			if (in < 0 || out < 0 || setrlimit(RLIMIT_NOFILE, &rl) != 0)
				_exit(126);
			setsid();
			dup2(in, STDIN_FILENO);
			dup2(out, STDOUT_FILENO);
			dup2(out, STDERR_FILENO);
			close_range(3, ~0u, 0);
			execv(argv[0], argv);
			_exit(127);
		}
		ssize_t w = write(fds[1], &pid, sizeof(pid));
		_exit(w == (ssize_t)sizeof(pid) ? 0 : 1);
	}
	close(fds[1]);
	pid_t pid = -1;
	if (mid < 0 || read(fds[0], &pid, sizeof(pid)) != (ssize_t)sizeof(pid))
		pid = -1;
	close(fds[0]);
	if (mid > 0)
		waitpid(mid, NULL, 0);
	return pid;
}

/* One round: SIGKILL the agent running urn, time until the catalog shows urn running on
 * another host; then start that agent again and wait until its host is up. */
static int failover_round(const struct cluster *c, rcds_client *cl, const char *urn,
                          double *ms, char *err, size_t errlen)
{
	snipe_proc_info before, now;
	char serr[256], host[SNIPE_URN_NAME_MAX + 1], state[16], path[64], cmdline[4096];
	uint64_t v0, v;
	if (snipe_proc_get(cl, urn, &before, serr, sizeof(serr)) != SNIPE_OK)
		return bu_fail(err, errlen, "failover: %s", serr);
	if (strcmp(before.state, "running") != 0)
		return bu_fail(err, errlen, "failover: %s is %s before the kill", urn, before.state);
	snprintf(host, sizeof(host), "%s", before.host);
	pid_t pid = bu_agent_pid(&c->b, host);
	if (pid <= 0)
		return bu_fail(err, errlen, "failover: no agent pid for %s in %s/pids", host, c->b.dir);
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t len = fd >= 0 ? read(fd, cmdline, sizeof(cmdline)) : -1;
	if (fd >= 0)
		close(fd);
	if (len <= 0 || (size_t)len == sizeof(cmdline))
		return bu_fail(err, errlen, "failover: cannot read %s", path);
	if (host_state(cl, host, state, sizeof(state), &v0, serr, sizeof(serr)) != 0)
		return bu_fail(err, errlen, "failover: host %s: %s", host, serr);

	double t0 = now_us();
	kill(pid, SIGKILL);
	for (;;) {
		if (interrupted)
			return bu_fail(err, errlen, "interrupted");
		int rc = snipe_proc_get(cl, urn, &now, serr, sizeof(serr));
		if (rc == SNIPE_OK && strcmp(now.state, "running") == 0 && strcmp(now.host, host) != 0)
			break;
		if (ms_since(t0) > ROUND_TIMEOUT_MS)
			return bu_fail(err, errlen, "failover: %s not running elsewhere %d s after %s's agent "
			            "was killed (%s)", urn, ROUND_TIMEOUT_MS / 1000, host,
			            rc == SNIPE_OK ? now.state : serr);
		pause_ms(POLL_MS);
	}
	*ms = ms_since(t0);
	if (before.pid > 0 && sni_pid_alive((pid_t)before.pid))
		fprintf(stderr, "bench_spawn: %s's old run (pid %lld on %s) still runs after it moved "
		        "to %s\n", urn, (long long)before.pid, host, now.host);

	for (int waited = 0; sni_pid_alive(pid) && waited < 2000; waited += POLL_MS)
		pause_ms(POLL_MS);
	pid_t np = respawn(c, host, cmdline, (size_t)len);
	if (np <= 0 || record_pid(c, host, pid, np) != 0)
		return bu_fail(err, errlen, "failover: cannot restart %s's agent", host);
	double t1 = now_us();
	while (host_state(cl, host, state, sizeof(state), &v, serr, sizeof(serr)) != 0 ||
	       strcmp(state, "up") != 0 || v <= v0) {
		if (interrupted)
			return bu_fail(err, errlen, "interrupted");
		if (ms_since(t1) > ROUND_TIMEOUT_MS)
			return bu_fail(err, errlen, "failover: %s not up again %d s after its agent restarted "
			            "(see %s/%s.log)", host, ROUND_TIMEOUT_MS / 1000, c->b.dir, host);
		pause_ms(POLL_MS);
	}
	return 0;
}

/* FAILOVERS rounds on one `--restart always` process; p50 and max in ms. */
static int failover(const struct cluster *c, double *p50, double *max, char *err,
                    size_t errlen)
{
	static const char *const cmd[] = {"sleep", "600"};
	double ms[FAILOVERS];
	rcds_client *cl = NULL;
	snipe_proc_info info;
	char serr[256];
	if (open_client(c, &cl, err, errlen) != 0)
		return -1;
	rcds_client_set_leader_reads(cl, true); /* see a move as soon as it is committed */
	int rc = spawn(cl, "failover", NULL, SNIPE_RESTART_ALWAYS, cmd, 2, &info, serr,
	               sizeof(serr));
	if (rc != SNIPE_OK)
		rc = bu_fail(err, errlen, "failover: spawn: %s", serr);
	for (int i = 0; rc == 0 && i < FAILOVERS; i++)
		rc = failover_round(c, cl, info.urn, &ms[i], err, errlen);
	rcds_client_close(cl);
	if (rc != 0)
		return -1;
	*max = pct(ms, FAILOVERS, 1.0);
	*p50 = pct(ms, FAILOVERS, 0.5);
	return 0;
}

/* -------------------------------------------------------------------- main */

struct results {
	struct latency anchor, lo_placed, lo_host, hi_placed, hi_host;
	double write50, read50;
	struct crew kills, tput;
	struct cpu tput_cpu; /* CPU seconds used during the spawns with 32 in flight */
	char flapped[64];    /* hosts the catalog marked down meanwhile */
	double fo50, fomax;
	long lo_agent, hi_agent; /* the agents' limits as /proc shows them */
};

/* Whether a child may set RLIMIT_NOFILE to n (raising the hard limit needs
 * CAP_SYS_RESOURCE, which root in a container may lack). */
static bool nofile_settable(rlim_t n)
{
	pid_t pid = fork();
	if (pid == 0) {
		struct rlimit rl = {n, n};
		_exit(setrlimit(RLIMIT_NOFILE, &rl) == 0 ? 0 : 1);
	}
	int st;
	return pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* The open-file limit to compare 1024 with: 1048576, or the highest we may set. */
static rlim_t high_nofile(void)
{
	struct rlimit rl;
	rlim_t max = NOFILE_HIGH;
	FILE *f = fopen("/proc/sys/fs/nr_open", "r");
	unsigned long long nr = 0;
	if (f != NULL && fscanf(f, "%llu", &nr) == 1 && nr < max)
		max = (rlim_t)nr;
	if (f != NULL)
		fclose(f);
	if (!nofile_settable(max) && getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max < max)
		max = rl.rlim_max;
	return max;
}

static void print_table(const struct results *r)
{
	double fe = r->anchor.p50, fe99 = r->anchor.p99;
	double nf = r->hi_placed.p50 / r->lo_placed.p50;
	double rate = (double)r->tput.ok / r->tput.seconds;
	int last = (int)TPUT_SECONDS - 1;
	char lo[48], hi[48];
	printf("spawn: %d local hosts (3 catalog replicas, %d agents on loopback); `sleep 30` one at "
	       "a time, `true` %d at once\n\n", HOSTS, HOSTS, INFLIGHT);
	printf("  anchors (same run)     fork+execve+waitpid /bin/true p50 %5.0f us   p99 %5.0f us\n"
	       "                         catalog write p50 %5.0f us   catalog read p50 %5.0f us\n\n",
	       1000 * r->anchor.p50, 1000 * r->anchor.p99, 1000 * r->write50, 1000 * r->read50);
	printf("  %-28s %12s   %-16s %s\n", "measure", "value", "target", "verdict, ratio");
	printf("  %-28s %9.2f ms   <= %.0f ms          %-6s  %4.1f x fork+exec p50\n",
	       "spawn p50, placed", r->hi_placed.p50, SPAWN_P50_MS,
	       bu_verdict(r->hi_placed.p50 <= SPAWN_P50_MS), r->hi_placed.p50 / fe);
	printf("  %-28s %9.2f ms   %-16s %-6s  %4.1f x fork+exec p99\n", "spawn p99, placed",
	       r->hi_placed.p99, "", "", r->hi_placed.p99 / fe99);
	printf("  %-28s %9.2f ms   <= %.0f ms          %-6s  %4.1f x fork+exec p50\n",
	       "spawn p50, host given", r->hi_host.p50, SPAWN_P50_MS,
	       bu_verdict(r->hi_host.p50 <= SPAWN_P50_MS), r->hi_host.p50 / fe);
	printf("  %-28s %9.2f ms   %-16s %-6s  %4.1f x fork+exec p99\n", "spawn p99, host given",
	       r->hi_host.p99, "", "", r->hi_host.p99 / fe99);
	printf("  %-28s %9.0f /s   >= %.0f /s        %-6s  %ld ok, %ld failed in %.1f s; "
	       "%ld/s in the 1st s, %ld/s in the %dth\n", "spawns/s, 32 in flight", rate,
	       SPAWNS_PER_S, bu_verdict(rate >= SPAWNS_PER_S), r->tput.ok, r->tput.failed,
	       r->tput.seconds, atomic_load(&r->tput.per_second[0]),
	       atomic_load(&r->tput.per_second[last]), last + 1);
	if (r->tput.failed > 0)
		printf("  %-28s %s\n", "  first failure", r->tput.first_err);
	double per = 1000.0 / (double)r->tput.ok;
	const struct cpu *u = &r->tput_cpu;
	printf("  %-28s %9.2f ms   leader %.2f, other replicas %.2f, agents (with children) "
	       "%.2f, this bench %.2f; %ld CPUs\n", "  CPU per spawn",
	       per * (u->leader + u->replicas + u->agents + u->self), per * u->leader,
	       per * u->replicas, per * u->agents, per * u->self, sysconf(_SC_NPROCESSORS_ONLN));
	snprintf(lo, sizeof(lo), "spawn p50, nofile %ld", r->lo_agent);
	snprintf(hi, sizeof(hi), "spawn p50, nofile %ld", r->hi_agent);
	printf("  %-28s %9.2f ms   %-16s %-6s  placed; host given %.2f ms\n", lo, r->lo_placed.p50,
	       "", "", r->lo_host.p50);
	printf("  %-28s %9.2f ms   <= %.2f x above  %-6s  %.2f x; host given %.2f ms\n", hi,
	       r->hi_placed.p50, NOFILE_RATIO, bu_verdict(nf <= NOFILE_RATIO), nf, r->hi_host.p50);
	printf("  %-28s %9.0f ms   < %.0f ms        %-6s  agent SIGKILLed -> running elsewhere\n",
	       "failover p50", r->fo50, FAILOVER_P50_MS, bu_verdict(r->fo50 < FAILOVER_P50_MS));
	printf("  %-28s %9.0f ms   < %.0f ms        %-6s  over %d kills\n", "failover max",
	       r->fomax, FAILOVER_MAX_MS, bu_verdict(r->fomax < FAILOVER_MAX_MS), FAILOVERS);
	if (r->flapped[0] != '\0')
		printf("\n  note: the catalog marked %s down while %d spawns were in flight (a lease "
		       "not renewed in time): its processes were fenced and moved\n", r->flapped,
		       INFLIGHT);
	if (r->kills.failed > 0)
		printf("\n  note: %ld of the latency runs' processes could not be killed: %s\n",
		       r->kills.failed, r->kills.first_err);
}

/* Both clusters up, spawn latencies in alternating blocks, the low one down again. */
static int measure_both(struct cluster *lo, struct cluster *hi, rlim_t hi_nofile,
                        struct results *r, char *err, size_t errlen)
{
	static struct lat_run a, b;
	if (cluster_up(lo, "lo", NOFILE_LOW, err, errlen) != 0 ||
	    cluster_up(hi, "hi", hi_nofile, err, errlen) != 0)
		return -1;
	r->lo_agent = lo->agent_nofile;
	r->hi_agent = hi->agent_nofile;
	a.c = lo;
	b.c = hi;
	if (latencies(&a, &b, err, errlen) != 0)
		return -1;
	r->lo_placed = summary(a.placed, a.nplaced);
	r->lo_host = summary(a.host, a.nhost);
	r->hi_placed = summary(b.placed, b.nplaced);
	r->hi_host = summary(b.host, b.nhost);
	return cluster_down(lo, false, err, errlen);
}

/* On the high cluster: catalog anchors, spawns with 32 in flight, failover. */
static int measure_high(struct cluster *c, struct results *r, char *err, size_t errlen)
{
	rcds_client *cl = NULL;
	uint64_t v0[HOSTS], v1[HOSTS];
	if (catalog_ms(c, &r->write50, &r->read50, err, errlen) != 0 ||
	    open_client(c, &cl, err, errlen) != 0)
		return -1;
	rcds_client_set_leader_reads(cl, true);
	/* the latency runs' processes would otherwise all be lost at the first failover */
	r->kills.c = c;
	r->kills.kill = true;
	run_workers(&r->kills);
	r->tput.c = c;
	uint64_t leader = leader_id(c);
	struct cpu before, after;
	host_states(cl, v0);
	cpu_sample(c, leader, &before);
	run_workers(&r->tput);
	cpu_sample(c, leader, &after);
	r->tput_cpu = (struct cpu){after.leader - before.leader, after.replicas - before.replicas,
	                           after.agents - before.agents, after.self - before.self};
	double t0 = now_us();
	while (!host_states(cl, v1) && !interrupted && ms_since(t0) < ROUND_TIMEOUT_MS)
		pause_ms(POLL_MS);
	rcds_client_close(cl);
	for (int i = 0; i < HOSTS; i++) {
		size_t u = strlen(r->flapped);
		if (v1[i] != v0[i])
			snprintf(r->flapped + u, sizeof(r->flapped) - u, "%shost%d", u ? ", " : "", i + 1);
	}
	if (interrupted)
		return bu_fail(err, errlen, "interrupted");
	if (r->tput.ok == 0)
		return bu_fail(err, errlen, "no spawn succeeded with %d in flight: %s", INFLIGHT,
		            r->tput.first_err);
	if (ms_since(t0) >= ROUND_TIMEOUT_MS)
		return bu_fail(err, errlen, "not every host up %d s after the spawns with %d in flight",
		            ROUND_TIMEOUT_MS / 1000, INFLIGHT);
	return failover(c, &r->fo50, &r->fomax, err, errlen);
}

int main(int argc, char **argv)
{
	char self[4096], err[1024] = "", derr[512];
	static struct results r;
	static struct cluster lo, hi;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--keep") != 0) {
			fprintf(stderr, "usage: bench_spawn [--keep]\n");
			return 2;
		}
		keep_dirs = true;
	}
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	self[n > 0 ? n : 0] = '\0';
	const char *dir = dirname(self);
	snprintf(snipe_bin, sizeof(snipe_bin), "%s/snipe", dir);
	static const char *const needed[] = {"snipe", "rcdsd", "snipe-agentd"};
	for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++) {
		char path[4200];
		snprintf(path, sizeof(path), "%s/%s", dir, needed[i]);
		if (access(path, X_OK) != 0) {
			fprintf(stderr, "bench_spawn: no %s next to this binary (%s): build the snipe, "
			        "snipe-agentd and rcdsd targets\n", needed[i], path);
			return 1;
		}
	}
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	int rc = fork_exec_us(&r.anchor, err, sizeof(err));
	if (rc == 0)
		rc = measure_both(&lo, &hi, high_nofile(), &r, err, sizeof(err));
	if (rc == 0)
		rc = measure_high(&hi, &r, err, sizeof(err));
	if (cluster_down(&lo, rc != 0, derr, sizeof(derr)) != 0 && rc == 0)
		rc = bu_fail(err, sizeof(err), "%s", derr);
	if (cluster_down(&hi, rc != 0, derr, sizeof(derr)) != 0 && rc == 0)
		rc = bu_fail(err, sizeof(err), "%s", derr);
	if (rc != 0)
		fprintf(stderr, "bench_spawn: %s\n", err);
	if (lo.b.dir[0] != '\0' && access(lo.b.dir, F_OK) == 0)
		fprintf(stderr, "bench_spawn: logs kept in %s\n", lo.b.dir);
	if (hi.b.dir[0] != '\0' && access(hi.b.dir, F_OK) == 0)
		fprintf(stderr, "bench_spawn: logs kept in %s\n", hi.b.dir);
	if (rc != 0)
		return 1;
	print_table(&r);
	return 0;
}
