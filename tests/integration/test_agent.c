/*
 * test_agent.c — snipe-agentd and the process calls of libsnipe end to end: real
 * replicas and real agents (tests/common/cluster.h) running real commands. What a
 * spawn starts (the pid /proc shows, its environment), kill, the restart policies, a
 * command that cannot start, placement by label and by host, and the failure cases:
 * an agent killed, stopped beyond its lease, cut off from the network, or restarted
 * after losing its watchdog. Failover tests run a job that logs its life to a shared
 * file, from which they check that two instances never ran at the same time.
 *
 * Not here: the catalog's own behaviour (test_catalog.c), the restart policy as pure
 * functions (unit/test_policy.c).
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "cluster.h"
#include "rcds.h"
#include "snipe.h"
#include "sni.h"
#include "testutil.h"

/* Asserts that a cluster stopped with every replica and agent ending cleanly. */
#define stop_cluster(c) ck_assert_int_eq(tc_cluster_stop(c), 0)

#define WAIT_MS 10000
#define POLL_MS 20
/* How long a failover may take: the default lease (1 s), a sweep (250 ms), a
 * heartbeat of the new host (200 ms), with room for a loaded machine. */
#define FAILOVER_MS 5000
#define LOG_LINES 40

static const char *const fast_backoff[] = {"--backoff-ms", "50", NULL};

/* ------------------------------------------------------------------ helpers */

/* A cluster of 3 replicas and an agent for each name (NULL-terminated), each with
 * flags extra; a client of the catalog holding the admin key into *cl. */
static tc_cluster *start_with_agents(const char *const *names, const char *const *extra,
                                     rcds_client **cl)
{
	tc_cluster *c = tc_cluster_start(3);
	for (size_t i = 0; names[i] != NULL; i++)
		ck_assert_int_eq(tc_agent_start(c, names[i], extra), (int)i);
	*cl = tc_cluster_client(c, -1, tc_cluster_admin_key(c));
	return c;
}

/* snipe_spawn, which must succeed: the logs are printed if it does not. */
static void spawn_ok(tc_cluster *c, rcds_client *cl, const snipe_spawn_opts *o,
                     snipe_proc_info *out)
{
	char err[256] = "";
	int rc = snipe_spawn(cl, o, out, err, sizeof(err));
	if (rc != SNIPE_OK)
		tc_cluster_dump_logs(c, LOG_LINES);
	ck_assert_msg(rc == SNIPE_OK, "spawn %s: %s (%s)", o->name ? o->name : "(unnamed)",
	              snipe_errname(rc), err);
}

/* A number of seconds for `sleep` that no other process on the machine has. */
static void unique_seconds(char buf[16])
{
	snprintf(buf, 16, "%u", 100000 + randombytes_uniform(800000));
}

/* Waits at most timeout_ms for pid to be gone; whether it is. */
static bool gone_within(pid_t pid, int timeout_ms)
{
	uint64_t deadline = tu_mono_ms() + (uint64_t)timeout_ms;
	while (sni_pid_alive(pid)) {
		if (tu_mono_ms() >= deadline)
			return false;
		tu_sleep_ms(5);
	}
	return true;
}

/* The whole of a /proc/PID file (NUL bytes kept) into buf; its length, or 0. */
static size_t proc_file(pid_t pid, const char *what, char *buf, size_t cap)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, what);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return 0;
	size_t n = fread(buf, 1, cap - 1, f);
	fclose(f);
	buf[n] = '\0';
	return n;
}

/* Whether /proc/PID/cmdline is exactly argv. */
static bool cmdline_is(pid_t pid, const char *const *argv, size_t argc)
{
	char want[1024], got[1024];
	size_t n = 0;
	for (size_t i = 0; i < argc; i++) {
		size_t len = strlen(argv[i]) + 1;
		ck_assert_uint_lt(n + len, sizeof(want));
		memcpy(want + n, argv[i], len);
		n += len;
	}
	return proc_file(pid, "cmdline", got, sizeof(got)) == n && memcmp(got, want, n) == 0;
}

/* The value of name in pid's environment, into out; false if it has none. */
static bool environ_get(pid_t pid, const char *name, char *out, size_t len)
{
	static char env[65536];
	size_t n = proc_file(pid, "environ", env, sizeof(env));
	size_t nlen = strlen(name);
	for (size_t at = 0; at < n; at += strlen(env + at) + 1)
		if (strncmp(env + at, name, nlen) == 0 && env[at + nlen] == '=') {
			snprintf(out, len, "%s", env + at + nlen + 1);
			return true;
		}
	return false;
}

/* Field 4 (the parent pid) or 6 (the session) of /proc/PID/stat, or -1. */
static pid_t stat_field(pid_t pid, int field)
{
	char buf[512];
	int v[3];
	if (proc_file(pid, "stat", buf, sizeof(buf)) == 0)
		return -1;
	const char *p = strrchr(buf, ')');
	if (p == NULL || sscanf(p + 1, " %*c %d %d %d", &v[0], &v[1], &v[2]) != 3)
		return -1;
	return (pid_t)v[field - 4];
}

static pid_t parent_of(pid_t pid)
{
	return stat_field(pid, 4);
}

/*
 * How many live processes that lead their session have needle in their command line;
 * the first into *pid. An agent starts each process in a session of its own; the
 * leader test leaves out the copies of a shell that forks for $(...).
 */
static int count_procs(const char *needle, pid_t *pid)
{
	DIR *d = opendir("/proc");
	ck_assert_ptr_nonnull(d);
	int count = 0;
	for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
		char buf[4096];
		pid_t p = (pid_t)atoi(e->d_name);
		size_t n = p > 0 ? proc_file(p, "cmdline", buf, sizeof(buf)) : 0;
		for (size_t k = 0; k + 1 < n; k++)
			buf[k] = buf[k] == '\0' ? ' ' : buf[k];
		if (n > 0 && strstr(buf, needle) != NULL && stat_field(p, 6) == p && sni_pid_alive(p)) {
			if (count++ == 0 && pid != NULL)
				*pid = p;
		}
	}
	closedir(d);
	return count;
}

/* The child of parent whose name (/proc/PID/comm) is comm, or -1. */
static pid_t child_named(pid_t parent, const char *comm)
{
	DIR *d = opendir("/proc");
	ck_assert_ptr_nonnull(d);
	pid_t found = -1;
	for (struct dirent *e = readdir(d); e != NULL && found < 0; e = readdir(d)) {
		char name[64];
		pid_t p = (pid_t)atoi(e->d_name);
		if (p <= 0 || parent_of(p) != parent || proc_file(p, "comm", name, sizeof(name)) == 0)
			continue;
		name[strcspn(name, "\n")] = '\0';
		if (strcmp(name, comm) == 0)
			found = p;
	}
	closedir(d);
	return found;
}

static size_t count_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	size_t n = 0;
	for (int ch; f != NULL && (ch = fgetc(f)) != EOF;)
		n += ch == '\n';
	if (f != NULL)
		fclose(f);
	return n;
}

/* ------------------------------------------------------------ the job's log */

/*
 * The failover job: a shell script that appends "start <epoch> <pid> <ns>" when it
 * starts and then "tick <epoch> <pid> <ns>" every 20 ms to the file named by its
 * argument (<ns>: wall clock in ns; each line one append). An instance's life is the
 * span of its lines; two instances ran at once if their spans overlap.
 */
static const char job_script[] =
	"#!/bin/sh\n"
	"echo \"start $SNIPE_EPOCH $$ $(date +%s%N)\" >> \"$1\"\n"
	"while :; do\n"
	"\techo \"tick $SNIPE_EPOCH $$ $(date +%s%N)\" >> \"$1\"\n"
	"\tsleep 0.02\n"
	"done\n";

struct job {
	char *script, *ticks;   /* in the cluster's directory */
	const char *argv[3];    /* /bin/sh script ticks */
	snipe_spawn_opts o;
};

static void job_init(struct job *j, tc_cluster *c, const char *host)
{
	j->script = tu_path(tc_cluster_dir(c), "job.sh");
	j->ticks = tu_path(tc_cluster_dir(c), "job.ticks");
	tu_write_file(j->script, job_script, strlen(job_script), 0755);
	j->argv[0] = "/bin/sh";
	j->argv[1] = j->script;
	j->argv[2] = j->ticks;
	j->o = (snipe_spawn_opts){.name = "job", .host = host, .restart = SNIPE_RESTART_ALWAYS,
	                          .argv = j->argv, .argc = 3};
}

static void job_free(struct job *j)
{
	free(j->script);
	free(j->ticks);
}

/* One instance's life as the file tells it. */
struct run {
	uint64_t epoch;
	long pid;
	uint64_t first, last; /* ns */
	int starts, ticks;
};

#define MAX_RUNS 16

/* The runs in the file, in order of their first line; how many. */
static int read_runs(const char *path, struct run *runs)
{
	FILE *f = fopen(path, "r");
	ck_assert_msg(f != NULL, "open %s: %s", path, strerror(errno));
	int n = 0;
	char line[256];
	while (fgets(line, sizeof(line), f) != NULL) {
		char kind[8];
		uint64_t epoch, ns;
		long pid;
		if (strchr(line, '\n') == NULL)
			break; /* being written */
		ck_assert_msg(sscanf(line, "%7s %" SCNu64 " %ld %" SCNu64, kind, &epoch, &pid, &ns) == 4,
		              "bad line in %s: %s", path, line);
		int k = 0;
		while (k < n && !(runs[k].epoch == epoch && runs[k].pid == pid))
			k++;
		if (k == n) {
			ck_assert_int_lt(n, MAX_RUNS);
			runs[n++] = (struct run){.epoch = epoch, .pid = pid, .first = ns, .last = ns};
		}
		runs[k].first = ns < runs[k].first ? ns : runs[k].first;
		runs[k].last = ns > runs[k].last ? ns : runs[k].last;
		runs[k].starts += strcmp(kind, "start") == 0;
		runs[k].ticks += strcmp(kind, "tick") == 0;
	}
	fclose(f);
	for (int a = 1; a < n; a++) /* few runs: insertion sort by first line */
		for (int b = a; b > 0 && runs[b].first < runs[b - 1].first; b--) {
			struct run t = runs[b];
			runs[b] = runs[b - 1];
			runs[b - 1] = t;
		}
	return n;
}

/*
 * Checks the file of a job that moved once: exactly two runs, epoch 1 by old_pid then
 * epoch 2 by new_pid, each started once, and the first's last line before the second's
 * first (they never ran at the same time). Prints the gap.
 */
static void assert_one_at_a_time(const char *path, pid_t old_pid, pid_t new_pid)
{
	struct run r[MAX_RUNS];
	int n = read_runs(path, r);
	for (int k = 0; k < n; k++)
		fprintf(stderr, "job: run %d epoch %" PRIu64 " pid %ld, %d start, %d ticks, %.3f s\n",
		        k, r[k].epoch, r[k].pid, r[k].starts, r[k].ticks,
		        (double)(r[k].last - r[k].first) / 1e9);
	ck_assert_int_eq(n, 2);
	ck_assert_uint_eq(r[0].epoch, 1);
	ck_assert_int_eq(r[0].pid, old_pid);
	ck_assert_uint_eq(r[1].epoch, 2);
	ck_assert_int_eq(r[1].pid, new_pid);
	ck_assert_int_eq(r[0].starts, 1);
	ck_assert_int_eq(r[1].starts, 1);
	ck_assert_int_gt(r[0].ticks, 0);
	ck_assert_int_gt(r[1].ticks, 0);
	ck_assert_msg(r[0].last < r[1].first, "epoch 1 ran until %" PRIu64 ", %.3f ms after "
	              "epoch 2 started", r[0].last, (double)(r[0].last - r[1].first) / 1e6);
	fprintf(stderr, "job: %.1f ms between the last line of epoch 1 and the start of epoch 2\n",
	        (double)(r[1].first - r[0].last) / 1e6);
}

/* Spawns the job on host and waits until it has written a few ticks; its record. */
static void job_start(tc_cluster *c, rcds_client *cl, struct job *j, snipe_proc_info *info)
{
	spawn_ok(c, cl, &j->o, info);
	ck_assert_str_eq(info->state, "running");
	ck_assert_str_eq(info->host, j->o.host);
	ck_assert_uint_eq(info->epoch, 1);
	uint64_t deadline = tu_mono_ms() + WAIT_MS;
	while (count_lines(j->ticks) < 4) {
		ck_assert_msg(tu_mono_ms() < deadline, "the job wrote no ticks to %s", j->ticks);
		tu_sleep_ms(POLL_MS);
	}
}

/* ---------------------------------------------------------------- spawning */

/* A spawned process runs on the chosen host as the pid the catalog records, with the
 * command line asked for and SNIPE_* in its environment; get and list agree. */
START_TEST(test_spawned_process_runs_on_its_host_with_the_recorded_pid)
{
	static const char *const names[] = {"a", "b", NULL};
	rcds_client *cl = NULL;
	tc_cluster *c = start_with_agents(names, NULL, &cl);
	char seconds[16];
	unique_seconds(seconds);
	const char *argv[] = {"sleep", seconds};
	snipe_spawn_opts o = {.name = "sleeper", .host = "b", .argv = argv, .argc = 2};
	snipe_proc_info info, got;
	spawn_ok(c, cl, &o, &info);

	ck_assert_str_eq(info.urn, "urn:snipe:proc:sleeper");
	ck_assert_str_eq(info.state, "running");
	ck_assert_str_eq(info.host, "b");
	ck_assert_uint_eq(info.epoch, 1);
	ck_assert_uint_eq(info.restarts, 0);
	ck_assert(!info.has_exit);
	ck_assert_int_gt(info.pid, 0);
	pid_t pid = (pid_t)info.pid;
	char needle[32], value[256];
	snprintf(needle, sizeof(needle), "sleep %s", seconds);
	pid_t seen = 0;
	ck_assert_int_eq(count_procs(needle, &seen), 1);
	ck_assert_int_eq(seen, pid);
	ck_assert(cmdline_is(pid, argv, 2));
	ck_assert_int_eq(parent_of(pid), tc_agent_pid(c, 1));
	ck_assert(environ_get(pid, "SNIPE_URN", value, sizeof(value)));
	ck_assert_str_eq(value, "urn:snipe:proc:sleeper");
	ck_assert(environ_get(pid, "SNIPE_EPOCH", value, sizeof(value)));
	ck_assert_str_eq(value, "1");
	ck_assert(environ_get(pid, "SNIPE_HOST", value, sizeof(value)));
	ck_assert_str_eq(value, "b");
	ck_assert(environ_get(pid, "SNIPE_AGENT", value, sizeof(value)));
	ck_assert_str_eq(value, tc_agent_endpoint(c, 1));

	tc_proc_get(cl, info.urn, &got);
	ck_assert_str_eq(got.state, "running");
	ck_assert_str_eq(got.host, "b");
	ck_assert_uint_eq(got.epoch, 1);
	ck_assert_int_eq(got.pid, pid);
	ck_assert_str_eq(got.command, needle);

	snipe_proc_info *all = NULL;
	size_t n = 0;
	char err[256] = "";
	ck_assert_msg(snipe_proc_list(cl, &all, &n, err, sizeof(err)) == SNIPE_OK, "list: %s", err);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(all[0].urn, "urn:snipe:proc:sleeper");
	ck_assert_str_eq(all[0].state, "running");
	ck_assert_str_eq(all[0].host, "b");
	ck_assert_uint_eq(all[0].epoch, 1);
	ck_assert_int_eq(all[0].pid, pid);
	free(all);

	rcds_client_close(cl);
	stop_cluster(c);
	ck_assert(gone_within(pid, 1000)); /* the agent's stop kills what it runs */
}
END_TEST

/* snipe_kill ends the process and records it killed by its owner; a second kill is
 * refused as the process no longer runs. */
START_TEST(test_kill_ends_the_process_and_records_it_killed)
{
	static const char *const names[] = {"a", NULL};
	rcds_client *cl = NULL;
	tc_cluster *c = start_with_agents(names, NULL, &cl);
	char seconds[16], needle[32];
	unique_seconds(seconds);
	snprintf(needle, sizeof(needle), "sleep %s", seconds);
	const char *argv[] = {"sleep", seconds};
	snipe_spawn_opts o = {.name = "victim", .argv = argv, .argc = 2};
	snipe_proc_info info, got;
	spawn_ok(c, cl, &o, &info);
	pid_t pid = (pid_t)info.pid;
	ck_assert(sni_pid_alive(pid));

	char err[256] = "";
	int rc = snipe_kill(cl, info.urn, err, sizeof(err));
	ck_assert_msg(rc == SNIPE_OK, "kill: %s (%s)", snipe_errname(rc), err);
	tc_proc_get(cl, info.urn, &got);
	ck_assert_str_eq(got.state, "killed");
	ck_assert_str_eq(got.reason, "stopped by its owner");
	ck_assert_str_eq(got.host, "a");
	ck_assert_uint_eq(got.epoch, 1);
	ck_assert_int_eq(got.pid, 0);
	ck_assert(got.has_exit);
	ck_assert_int_eq(got.exit_code, -SIGTERM);
	ck_assert(!sni_pid_alive(pid));
	ck_assert_int_eq(count_procs(needle, NULL), 0);

	tu_assert_code(snipe_kill(cl, info.urn, err, sizeof(err)), SNIPE_EINVAL);
	tu_assert_code(snipe_kill(cl, "urn:snipe:proc:nobody", err, sizeof(err)), SNIPE_ENOTFOUND);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* ---------------------------------------------------------- restart policy */

/* Runs `sh -c script FILE` under policy (max restarts max) until it ends; its last
 * record into out, and how many times it ran (lines in FILE) into *runs. */
static void run_to_end(tc_cluster *c, rcds_client *cl, const char *name, const char *script,
                       snipe_restart policy, uint32_t max, snipe_proc_info *out, size_t *runs)
{
	char file[64];
	snprintf(file, sizeof(file), "%s.runs", name);
	char *path = tu_path(tc_cluster_dir(c), file);
	const char *argv[] = {"sh", "-c", script, path};
	snipe_spawn_opts o = {.name = name, .restart = policy, .max_restarts = max,
	                      .argv = argv, .argc = 4};
	snipe_proc_info info;
	char urn[SNIPE_URN_MAX];
	spawn_ok(c, cl, &o, &info);
	snprintf(urn, sizeof(urn), "urn:snipe:proc:%s", name);
	tc_wait_ended(c, cl, urn, WAIT_MS, out);
	tu_sleep_ms(300); /* six backoffs: a wrong restart would show */
	snipe_proc_info later;
	tc_proc_get(cl, urn, &later);
	ck_assert_str_eq(later.state, out->state);
	ck_assert_uint_eq(later.restarts, out->restarts);
	*runs = count_lines(path);
	free(path);
}

START_TEST(test_never_records_a_failing_exit_and_does_not_restart)
{
	static const char *const names[] = {"a", NULL};
	rcds_client *cl = NULL;
	tc_cluster *c = start_with_agents(names, fast_backoff, &cl);
	snipe_proc_info info;
	size_t runs = 0;
	run_to_end(c, cl, "never", "echo run >> \"$0\"; exit 3", SNIPE_RESTART_NEVER, 0, &info,
	           &runs);
	ck_assert_str_eq(info.state, "failed");
	ck_assert(info.has_exit);
	ck_assert_int_eq(info.exit_code, 3);
	ck_assert_uint_eq(info.restarts, 0);
	ck_assert_uint_eq(info.epoch, 1);
	ck_assert_int_eq(info.pid, 0);
	ck_assert_uint_eq(runs, 1);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

START_TEST(test_on_failure_does_not_restart_a_clean_exit)
{
	static const char *const names[] = {"a", NULL};
	rcds_client *cl = NULL;
	tc_cluster *c = start_with_agents(names, fast_backoff, &cl);
	snipe_proc_info info;
	size_t runs = 0;
	run_to_end(c, cl, "clean", "echo run >> \"$0\"; exit 0", SNIPE_RESTART_ON_FAILURE, 0,
	           &info, &runs);
	ck_assert_str_eq(info.state, "exited");
	ck_assert(info.has_exit);
	ck_assert_int_eq(info.exit_code, 0);
	ck_assert_uint_eq(info.restarts, 0);
	ck_assert_uint_eq(runs, 1);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* Fails twice, then succeeds: two restarts, counted up one at a time, then exited. */
START_TEST(test_on_failure_restarts_a_failing_process_until_it_succeeds)
{
	static const char *const names[] = {"a", NULL};
	rcds_client *cl = NULL;
	tc_cluster *c = start_with_agents(names, fast_backoff, &cl);
	char *path = tu_path(tc_cluster_dir(c), "flaky.runs");
	const char *argv[] = {"sh", "-c",
	                      "echo run >> \"$0\"; sleep 0.1; [ $(wc -l < \"$0\") -ge 3 ]", path};
	snipe_spawn_opts o = {.name = "flaky", .restart = SNIPE_RESTART_ON_FAILURE,
	                      .argv = argv, .argc = 4};
	snipe_proc_info info;
	spawn_ok(c, cl, &o, &info);
	/* Watch the count go up while it runs: never down, never past 2. */
	uint32_t last = 0;
	uint64_t deadline = tu_mono_ms() + WAIT_MS;
	while (strcmp(info.state, "exited") != 0) {
		ck_assert_msg(tu_mono_ms() < deadline, "still %s after %d ms", info.state, WAIT_MS);
		ck_assert_msg(strcmp(info.state, "running") == 0 || strcmp(info.state, "backoff") == 0,
		              "state %s", info.state);
		ck_assert_uint_ge(info.restarts, last);
		ck_assert_uint_le(info.restarts, 2);
		last = info.restarts;
		tu_sleep_ms(POLL_MS);
		tc_proc_get(cl, "urn:snipe:proc:flaky", &info);
	}
	ck_assert(info.has_exit);
	ck_assert_int_eq(info.exit_code, 0);
	ck_assert_uint_eq(info.restarts, 2);
	ck_assert_uint_eq(info.epoch, 1);
	tu_sleep_ms(300);
	tc_proc_get(cl, "urn:snipe:proc:flaky", &info);
	ck_assert_str_eq(info.state, "exited");
	ck_assert_uint_eq(count_lines(path), 3);
	free(path);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* always restarts clean exits too; --max-restarts 2 ends it failed after the second
 * restart (the third run exits 1). */
START_TEST(test_always_restarts_until_max_restarts_then_fails)
{
	static const char *const names[] = {"a", NULL};
	rcds_client *cl = NULL;
	tc_cluster *c = start_with_agents(names, fast_backoff, &cl);
	snipe_proc_info info;
	size_t runs = 0;
	run_to_end(c, cl, "limited", "echo run >> \"$0\"; [ $(wc -l < \"$0\") -lt 3 ]",
	           SNIPE_RESTART_ALWAYS, 2, &info, &runs);
	ck_assert_str_eq(info.state, "failed");
	ck_assert(info.has_exit);
	ck_assert_int_eq(info.exit_code, 1);
	ck_assert_uint_eq(info.restarts, 2);
	ck_assert_uint_eq(info.epoch, 1);
	ck_assert_uint_eq(runs, 3);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* A command that does not exist: SNIPE_ESPAWN naming it, and the record goes from
 * pending to failed (exit 127) without ever saying running; restart=always does not
 * retry what cannot start. */
START_TEST(test_missing_command_fails_with_espawn_and_never_runs)
{
	static const char *const names[] = {"a", NULL};
	rcds_client *cl = NULL;
	tc_cluster *c = start_with_agents(names, NULL, &cl);
	rcds_watch *w = NULL;
	char err[256] = "";
	ck_assert_msg(rcds_watch_open(cl, "urn:snipe:proc:ghost", &w, err, sizeof(err)) ==
	              SNIPE_OK, "watch: %s", err);
	const char *argv[] = {"snipe-test-no-such-command", "--flag"};
	snipe_spawn_opts o = {.name = "ghost", .restart = SNIPE_RESTART_ALWAYS, .argv = argv,
	                      .argc = 2};
	snipe_proc_info info;
	tu_assert_code(snipe_spawn(cl, &o, &info, err, sizeof(err)), SNIPE_ESPAWN);
	ck_assert_msg(strstr(err, "snipe-test-no-such-command") != NULL, "err: %s", err);

	tc_wait_ended(c, cl, "urn:snipe:proc:ghost", WAIT_MS, &info);
	ck_assert_str_eq(info.state, "failed");
	ck_assert(info.has_exit);
	ck_assert_int_eq(info.exit_code, 127);
	ck_assert_int_eq(info.pid, 0);
	ck_assert_uint_eq(info.restarts, 0);
	ck_assert_msg(strstr(info.reason, "snipe-test-no-such-command") != NULL, "reason: %s",
	              info.reason);

	/* Every state the record went through, as the catalog applied them. */
	int pending = 0, failed = 0;
	rcds_event ev;
	while (rcds_watch_next(w, 500, &ev, err, sizeof(err)) == SNIPE_OK) {
		if (!ev.deleted && strcmp(ev.attr, "state") == 0) {
			const char *state = (const char *)ev.assertion.value;
			ck_assert_msg(strcmp(state, "running") != 0, "the record said running at %" PRIu64,
			              ev.index);
			pending += strcmp(state, "pending") == 0;
			failed += strcmp(state, "failed") == 0;
		}
		rcds_event_clear(&ev);
	}
	ck_assert_int_eq(pending, 1);
	ck_assert_int_eq(failed, 1);
	rcds_watch_close(w);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* --------------------------------------------------------------- placement */

/* A label only one host has takes every process asking for it there; a label no host
 * has is SNIPE_ENOTFOUND and writes no record. */
START_TEST(test_placement_honours_labels)
{
	tc_cluster *c = tc_cluster_start(3);
	static const char *const zone_x[] = {"--labels", "zone=x", NULL};
	static const char *const zone_y_gpu[] = {"--labels", "zone=y,gpu=1", NULL};
	tc_agent_start(c, "a", zone_x);
	tc_agent_start(c, "b", zone_y_gpu);
	rcds_client *cl = tc_cluster_client(c, -1, tc_cluster_admin_key(c));
	const char *argv[] = {"sleep", "3600"};
	static const char *const gpu[] = {"gpu=1"};
	static const char *const x[] = {"zone=x"};
	static const char *const both[] = {"zone=y", "gpu=1"};
	static const char *const none[] = {"gpu=2"};
	struct {
		const char *name;
		const char *const *labels;
		size_t n;
		const char *host;
	} cases[] = {
		{"gpu-1", gpu, 1, "b"}, {"gpu-2", gpu, 1, "b"}, {"gpu-3", gpu, 1, "b"},
		{"x-1", x, 1, "a"}, {"yz-1", both, 2, "b"},
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		snipe_spawn_opts o = {.name = cases[k].name, .labels = cases[k].labels,
		                      .nlabels = cases[k].n, .argv = argv, .argc = 2};
		snipe_proc_info info;
		spawn_ok(c, cl, &o, &info);
		ck_assert_msg(strcmp(info.host, cases[k].host) == 0, "%s ran on %s, not %s",
		              cases[k].name, info.host, cases[k].host);
		ck_assert_str_eq(info.state, "running");
	}

	snipe_spawn_opts o = {.name = "nowhere", .labels = none, .nlabels = 1, .argv = argv,
	                      .argc = 2};
	snipe_proc_info info;
	char err[256] = "";
	tu_assert_code(snipe_spawn(cl, &o, &info, err, sizeof(err)), SNIPE_ENOTFOUND);
	tu_assert_code(snipe_proc_get(cl, "urn:snipe:proc:nowhere", &info, err, sizeof(err)),
	               SNIPE_ENOTFOUND);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* --host runs it there, on b, where placement would not (both idle: a, by name, and
 * then a as the less loaded); an unknown host is SNIPE_ENOTFOUND. */
START_TEST(test_spawn_on_a_named_host_runs_there)
{
	static const char *const names[] = {"a", "b", NULL};
	rcds_client *cl = NULL;
	tc_cluster *c = start_with_agents(names, NULL, &cl);
	const char *argv[] = {"sleep", "3600"};
	char name[16];
	for (int k = 0; k < 3; k++) {
		snprintf(name, sizeof(name), "pinned-%d", k);
		snipe_spawn_opts o = {.name = name, .host = "b", .argv = argv, .argc = 2};
		snipe_proc_info info;
		spawn_ok(c, cl, &o, &info);
		ck_assert_str_eq(info.host, "b");
		ck_assert_str_eq(info.state, "running");
		ck_assert_int_eq(parent_of((pid_t)info.pid), tc_agent_pid(c, 1));
	}
	snipe_spawn_opts free_o = {.name = "unpinned", .argv = argv, .argc = 2};
	snipe_proc_info info;
	spawn_ok(c, cl, &free_o, &info);
	ck_assert_str_eq(info.host, "a");

	snipe_spawn_opts bad = {.name = "lost", .host = "nosuch", .argv = argv, .argc = 2};
	char err[256] = "";
	tu_assert_code(snipe_spawn(cl, &bad, &info, err, sizeof(err)), SNIPE_ENOTFOUND);
	ck_assert_msg(strstr(err, "nosuch") != NULL, "err: %s", err);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* ---------------------------------------------------------------- failover */

/* kill -9 of the agent running a restart=always job: its watchdog kills the job at
 * once, and the job runs on the other host with epoch 2 within seconds, never two at
 * a time. The watchdog's command line does not name snipe-agentd, so a pattern kill
 * (pkill -9 -f snipe-agentd) is this case too, not the one of the next test. */
START_TEST(test_job_of_a_killed_agent_moves_with_the_next_epoch)
{
	static const char *const names[] = {"a", "b", NULL};
	rcds_client *cl = NULL;
	tc_cluster *c = start_with_agents(names, NULL, &cl);
	struct job j;
	job_init(&j, c, "a");
	snipe_proc_info first, moved;
	job_start(c, cl, &j, &first);
	pid_t watchdog = child_named(tc_agent_pid(c, 0), "snipe-watchdog");
	char cmd[512];
	size_t n = proc_file(watchdog, "cmdline", cmd, sizeof(cmd));
	for (size_t i = 0; i < n; i++)
		cmd[i] = cmd[i] == '\0' ? ' ' : cmd[i];
	ck_assert_msg(n > 0 && strstr(cmd, "snipe-agentd") == NULL,
	              "the watchdog's command line is '%s'", cmd);

	uint64_t t0 = tu_mono_ms();
	tc_agent_kill(c, 0);
	tc_wait_running_on(c, cl, first.urn, "b", 2, FAILOVER_MS, &moved);
	fprintf(stderr, "job: moved to b %" PRIu64 " ms after kill -9 of a\n", tu_mono_ms() - t0);
	ck_assert(tc_agent_log_contains(c, 0, "(the agent is gone)"));
	ck_assert(!sni_pid_alive((pid_t)first.pid));
	ck_assert(sni_pid_alive((pid_t)moved.pid));
	ck_assert(cmdline_is((pid_t)moved.pid, j.argv, 3));
	ck_assert_uint_eq(moved.restarts, 1);
	tu_sleep_ms(300);
	ck_assert_int_eq(count_procs(j.script, NULL), 1);
	assert_one_at_a_time(j.ticks, (pid_t)first.pid, (pid_t)moved.pid);

	job_free(&j);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* SIGSTOP of the agent past its lease: its watchdog (not stopped) kills the job before
 * the catalog moves it; after SIGCONT the old agent does not start it again. */
START_TEST(test_stopped_agent_is_fenced_and_does_not_restart_its_job_when_continued)
{
	static const char *const names[] = {"a", "b", NULL};
	rcds_client *cl = NULL;
	tc_cluster *c = start_with_agents(names, NULL, &cl);
	struct job j;
	job_init(&j, c, "a");
	snipe_proc_info first, moved, now;
	job_start(c, cl, &j, &first);

	uint64_t t0 = tu_mono_ms();
	tc_agent_signal(c, 0, SIGSTOP);
	ck_assert_msg(gone_within((pid_t)first.pid, FAILOVER_MS),
	              "pid %d still runs %d ms after its agent stopped", (int)first.pid,
	              FAILOVER_MS);
	uint64_t fenced = tu_mono_ms() - t0;
	tc_wait_running_on(c, cl, first.urn, "b", 2, FAILOVER_MS, &moved);
	fprintf(stderr, "job: fenced %" PRIu64 " ms, moved to b %" PRIu64 " ms after SIGSTOP\n",
	        fenced, tu_mono_ms() - t0);
	ck_assert(tc_agent_log_contains(c, 0, "the lease lapsed"));
	uint64_t stopped = tu_mono_ms() - t0;
	if (stopped < 2500)
		tu_sleep_ms((unsigned)(2500 - stopped));

	tc_agent_signal(c, 0, SIGCONT);
	tu_sleep_ms(2000);
	pid_t only = 0;
	ck_assert_int_eq(count_procs(j.script, &only), 1);
	ck_assert_int_eq(only, moved.pid);
	ck_assert_int_eq(parent_of(only), tc_agent_pid(c, 1));
	tc_proc_get(cl, first.urn, &now);
	ck_assert_str_eq(now.state, "running");
	ck_assert_str_eq(now.host, "b");
	ck_assert_uint_eq(now.epoch, 2);
	ck_assert_int_eq(now.pid, moved.pid);
	ck_assert_uint_eq(now.restarts, 1);
	assert_one_at_a_time(j.ticks, (pid_t)first.pid, (pid_t)moved.pid);

	job_free(&j);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* An agent killed together with its watchdog leaves its process running; the agent
 * restarted on the same state directory kills that orphan before anything else, then
 * follows the catalog: the record (restart=always, still running here) has it start one
 * new instance. */
START_TEST(test_restarted_agent_kills_the_orphans_of_its_earlier_run)
{
	static const char *const names[] = {"a", NULL};
	rcds_client *cl = NULL;
	tc_cluster *c = start_with_agents(names, NULL, &cl);
	char seconds[16], needle[32];
	unique_seconds(seconds);
	snprintf(needle, sizeof(needle), "sleep %s", seconds);
	const char *argv[] = {"sleep", seconds};
	snipe_spawn_opts o = {.name = "orphan", .restart = SNIPE_RESTART_ALWAYS, .argv = argv,
	                      .argc = 2};
	snipe_proc_info info;
	spawn_ok(c, cl, &o, &info);
	pid_t orphan = (pid_t)info.pid;

	pid_t watchdog = child_named(tc_agent_pid(c, 0), "snipe-watchdog");
	ck_assert_int_gt(watchdog, 0);
	ck_assert_int_eq(kill(watchdog, SIGKILL), 0);
	ck_assert(gone_within(watchdog, 1000));
	tc_agent_kill(c, 0);
	tu_sleep_ms(300);
	ck_assert_msg(sni_pid_alive(orphan), "pid %d died with its agent and watchdog", (int)orphan);

	uint64_t t0 = tu_mono_ms();
	tc_agent_restart(c, 0);
	ck_assert_msg(gone_within(orphan, 2000 - (int)(tu_mono_ms() - t0)),
	              "orphan pid %d still runs 2 s after its agent restarted", (int)orphan);
	char line[64];
	snprintf(line, sizeof(line), "killing orphan pid=%d", (int)orphan);
	ck_assert(tc_agent_log_contains(c, 0, line));

	uint64_t deadline = tu_mono_ms() + WAIT_MS;
	do {
		ck_assert_msg(tu_mono_ms() < deadline, "%s is %s with pid %d %d ms after the restart",
		              info.urn, info.state, (int)info.pid, WAIT_MS);
		tu_sleep_ms(POLL_MS);
		tc_proc_get(cl, "urn:snipe:proc:orphan", &info);
	} while (info.pid == orphan || strcmp(info.state, "running") != 0);
	ck_assert_str_eq(info.host, "a");
	ck_assert_uint_eq(info.epoch, 1);
	pid_t only = 0;
	ck_assert_int_eq(count_procs(needle, &only), 1);
	ck_assert_int_eq(only, info.pid);
	ck_assert_int_eq(parent_of(only), tc_agent_pid(c, 0));
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* ---------------------------------------------------------- network cut-off */

/*
 * Agent a runs in a network namespace of its own, linked to this one by a veth pair
 * (10.213.X.Y/30); the replicas listen on every address. Deleting the link cuts a off:
 * its lease lapses, its watchdog kills the job, and the job runs on b with epoch 2.
 * Needs root and `ip netns`; skipped (with a message) otherwise.
 */
static pid_t runner_pid; /* the process running the suite, named in the netns */

static void netns_names(char *ns, char *veth_host, char *veth_ns, char *ip_host, char *ip_ns)
{
	unsigned block = (unsigned)runner_pid % 16384u;
	sprintf(ns, "snipe-test-%d", (int)runner_pid);
	sprintf(veth_host, "snv%dh", (int)runner_pid % 10000000);
	sprintf(veth_ns, "snv%dn", (int)runner_pid % 10000000);
	sprintf(ip_host, "10.213.%u.%u", block / 64, (block % 64) * 4 + 1);
	sprintf(ip_ns, "10.213.%u.%u", block / 64, (block % 64) * 4 + 2);
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	int rc = system(cmd);
	return rc == 0 ? 0 : -1;
}

/* Unchecked fixture: runs in the suite's process, around every test of the tcase. */
static void netns_setup(void)
{
	runner_pid = getpid();
}

static void netns_teardown(void)
{
	char ns[32], vh[16], vn[16], ih[20], in[20];
	netns_names(ns, vh, vn, ih, in);
	sh("ip link del %s >/dev/null 2>&1", vh);
	sh("ip netns del %s >/dev/null 2>&1", ns);
}

START_TEST(test_agent_cut_off_by_the_network_is_fenced_and_its_job_moves)
{
	char ns[32], vh[16], vn[16], ih[20], in[20];
	netns_names(ns, vh, vn, ih, in);
	if (geteuid() != 0) {
		fprintf(stderr, "SKIP test_agent_cut_off_by_the_network: needs root for ip netns\n");
		return;
	}
	if (sh("ip netns add %s >/dev/null 2>&1", ns) != 0) {
		fprintf(stderr, "SKIP test_agent_cut_off_by_the_network: 'ip netns add' is not "
		                "permitted here\n");
		return;
	}
	if (sh("ip link add %s type veth peer name %s && ip link set %s netns %s && "
	       "ip addr add %s/30 dev %s && ip link set %s up && "
	       "ip -n %s addr add %s/30 dev %s && ip -n %s link set %s up && "
	       "ip -n %s link set lo up", vh, vn, vn, ns, ih, vh, vh, ns, in, vn, ns, vn, ns) != 0) {
		fprintf(stderr, "SKIP test_agent_cut_off_by_the_network: cannot link a veth pair into "
		                "the namespace\n");
		return;
	}
	const tc_cluster_opts wide = {.listen_any = true};
	tc_cluster *c = tc_cluster_start_opts(3, &wide);
	const tc_agent_opts isolated = {.netns = ns, .address = in, .catalog_address = ih};
	tc_agent_start_opts(c, "a", &isolated);
	tc_agent_start(c, "b", NULL);
	rcds_client *cl = tc_cluster_client(c, -1, tc_cluster_admin_key(c));
	struct job j;
	job_init(&j, c, "a");
	snipe_proc_info first, moved;
	job_start(c, cl, &j, &first);

	uint64_t t0 = tu_mono_ms();
	ck_assert_int_eq(sh("ip link del %s", vh), 0);
	ck_assert_msg(gone_within((pid_t)first.pid, FAILOVER_MS),
	              "pid %d still runs %d ms after its agent was cut off", (int)first.pid,
	              FAILOVER_MS);
	uint64_t fenced = tu_mono_ms() - t0;
	tc_wait_running_on(c, cl, first.urn, "b", 2, FAILOVER_MS, &moved);
	fprintf(stderr, "job: fenced %" PRIu64 " ms, moved to b %" PRIu64 " ms after the cut\n",
	        fenced, tu_mono_ms() - t0);
	ck_assert(tc_agent_log_contains(c, 0, "the lease lapsed"));
	ck_assert(tc_agent_pid(c, 0) > 0); /* cut off, not dead */
	tu_sleep_ms(300);
	ck_assert_int_eq(count_procs(j.script, NULL), 1);
	assert_one_at_a_time(j.ticks, (pid_t)first.pid, (pid_t)moved.pid);

	job_free(&j);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* -------------------------------------------------------------------- suite */

static Suite *suite(void)
{
	Suite *s = suite_create("agent");
	TCase *tc = tcase_create("processes");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_spawned_process_runs_on_its_host_with_the_recorded_pid);
	tcase_add_test(tc, test_kill_ends_the_process_and_records_it_killed);
	tcase_add_test(tc, test_never_records_a_failing_exit_and_does_not_restart);
	tcase_add_test(tc, test_on_failure_does_not_restart_a_clean_exit);
	tcase_add_test(tc, test_on_failure_restarts_a_failing_process_until_it_succeeds);
	tcase_add_test(tc, test_always_restarts_until_max_restarts_then_fails);
	tcase_add_test(tc, test_missing_command_fails_with_espawn_and_never_runs);
	tcase_add_test(tc, test_placement_honours_labels);
	tcase_add_test(tc, test_spawn_on_a_named_host_runs_there);
	suite_add_tcase(s, tc);

	TCase *fail = tcase_create("failover");
	tcase_set_timeout(fail, 60);
	tcase_add_test(fail, test_job_of_a_killed_agent_moves_with_the_next_epoch);
	tcase_add_test(fail, test_stopped_agent_is_fenced_and_does_not_restart_its_job_when_continued);
	tcase_add_test(fail, test_restarted_agent_kills_the_orphans_of_its_earlier_run);
	suite_add_tcase(s, fail);

	TCase *net = tcase_create("network");
	tcase_set_timeout(net, 60);
	tcase_add_unchecked_fixture(net, netns_setup, netns_teardown);
	tcase_add_test(net, test_agent_cut_off_by_the_network_is_fenced_and_its_job_moves);
	suite_add_tcase(s, net);
	return s;
}

int main(void)
{
	return tu_run(suite());
}
