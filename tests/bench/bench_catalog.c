/*
 * bench_catalog.c — the catalog's speed on this machine, beside its anchors measured
 * in the same run: a raw nanomsg REQ/REP round trip and an fsync of a small write.
 * Starts 3 local replicas with `snipe cluster up` (next to this binary), writes signed
 * 100-byte assertions as the admin, and reports latency, throughput and failover.
 */
#include <fcntl.h>
#include <libgen.h>
#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rcds.h"

#define VALUE_LEN 100

static char dir[256], snipe_bin[4096], endpoints[2048], key_path[2048];
static snipe_key *admin;

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double pct(double *v, size_t n, double p)
{
	qsort(v, n, sizeof(double), cmp_double);
	size_t i = (size_t)(p * (double)(n - 1));
	return v[i];
}

/* ------------------------------------------------------------------ anchors */

static void *echo_server(void *arg)
{
	int s = *(int *)arg;
	for (;;) {
		void *msg = NULL;
		int n = nn_recv(s, &msg, NN_MSG, 0);
		if (n < 0)
			return NULL;
		nn_send(s, &msg, NN_MSG, 0);
	}
}

static double nanomsg_rtt_us(void)
{
	int rep = nn_socket(AF_SP, NN_REP), req = nn_socket(AF_SP, NN_REQ);
	nn_bind(rep, "tcp://127.0.0.1:0");
	char ep[64] = "";
	/* nanomsg cannot report an ephemeral port; use a fixed one from our pid instead. */
	nn_close(rep);
	rep = nn_socket(AF_SP, NN_REP);
	snprintf(ep, sizeof(ep), "tcp://127.0.0.1:%d", 30000 + getpid() % 20000);
	nn_bind(rep, ep);
	nn_connect(req, ep);
	pthread_t t;
	pthread_create(&t, NULL, echo_server, &rep);
	char buf[VALUE_LEN + 200] = {0};
	enum { N = 5000 };
	static double lat[N];
	for (int i = 0; i < N + 200; i++) {
		double t0 = now_us();
		nn_send(req, buf, sizeof(buf), 0);
		void *msg = NULL;
		nn_recv(req, &msg, NN_MSG, 0);
		nn_freemsg(msg);
		if (i >= 200)
			lat[i - 200] = now_us() - t0;
	}
	nn_close(req);
	nn_close(rep);
	pthread_join(t, NULL);
	return pct(lat, N, 0.5);
}

static double tv_us(const struct timeval *tv)
{
	return (double)tv->tv_sec * 1e6 + (double)tv->tv_usec;
}

/* The reads' anchor: plain nanomsg REQ/REP round trips of a reply-sized message from
 * 4 client threads for 2 s, spread over 3 echo processes (as the reads are over the 3
 * replicas); round trips per second. */
struct raw_client {
	int server;
	long done;
	double end;
};

static void *raw_client_main(void *arg)
{
	struct raw_client *rc = arg;
	char ep[64], buf[VALUE_LEN + 300] = {0};
	int req = nn_socket(AF_SP, NN_REQ);
	snprintf(ep, sizeof(ep), "tcp://127.0.0.1:%d", rc->server);
	nn_connect(req, ep);
	while (now_us() < rc->end) {
		void *msg = NULL;
		if (nn_send(req, buf, sizeof(buf), 0) < 0 || nn_recv(req, &msg, NN_MSG, 0) < 0)
			break;
		nn_freemsg(msg);
		rc->done++;
	}
	nn_close(req);
	return NULL;
}

static double nanomsg_reqs_per_s(double *cpu_us)
{
	struct rusage self0, self1, kids;
	getrusage(RUSAGE_SELF, &self0);
	pid_t servers[3];
	int base = 30000 + (getpid() + 1) % 19000; /* ports base..base+2 */
	for (int i = 0; i < 3; i++) {
		if ((servers[i] = fork()) == 0) {
			char ep[64];
			int rep = nn_socket(AF_SP, NN_REP);
			snprintf(ep, sizeof(ep), "tcp://127.0.0.1:%d", base + i);
			if (nn_bind(rep, ep) < 0)
				_exit(1);
			echo_server(&rep);
			_exit(0);
		}
	}
	usleep(100 * 1000);
	pthread_t t[4];
	struct raw_client rc[4];
	double end = now_us() + 2e6;
	for (int i = 0; i < 4; i++) {
		rc[i] = (struct raw_client){.server = base + i % 3, .end = end};
		pthread_create(&t[i], NULL, raw_client_main, &rc[i]);
	}
	long total = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		total += rc[i].done;
	}
	getrusage(RUSAGE_SELF, &self1);
	for (int i = 0; i < 3; i++) {
		kill(servers[i], SIGKILL);
		waitpid(servers[i], NULL, 0);
	}
	getrusage(RUSAGE_CHILDREN, &kids); /* only the echo servers have ended so far */
	double us = tv_us(&self1.ru_utime) + tv_us(&self1.ru_stime) - tv_us(&self0.ru_utime) -
	            tv_us(&self0.ru_stime) + tv_us(&kids.ru_utime) + tv_us(&kids.ru_stime);
	*cpu_us = total > 0 ? us / (double)total : 0;
	return (double)total / 2.0;
}

static double fsync_us(void)
{
	char path[300];
	snprintf(path, sizeof(path), "%s/fsync.bench", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	char buf[4096] = {0};
	enum { N = 300 };
	double lat[N];
	for (int i = 0; i < N; i++) {
		double t0 = now_us();
		pwrite(fd, buf, sizeof(buf), 0);
		fdatasync(fd);
		lat[i] = now_us() - t0;
	}
	close(fd);
	unlink(path);
	return pct(lat, N, 0.5);
}

/* ------------------------------------------------------------------ cluster */

static int run(const char *cmd)
{
	int rc = system(cmd);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static int cluster_up(void)
{
	char cmd[8192];
	snprintf(cmd, sizeof(cmd), "%s cluster up --replicas 3 --hosts 0 --dir %s > %s/up.out", snipe_bin,
	         dir, dir);
	if (run(cmd) != 0)
		return -1;
	snprintf(cmd, sizeof(cmd), "%s/up.out", dir);
	FILE *f = fopen(cmd, "r");
	char line[2048];
	while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if (strncmp(line, "export SNIPE_CATALOG=", 21) == 0)
			snprintf(endpoints, sizeof(endpoints), "%s", line + 21);
		if (strncmp(line, "export SNIPE_KEY=", 17) == 0)
			snprintf(key_path, sizeof(key_path), "%s", line + 17);
	}
	if (f != NULL)
		fclose(f);
	char err[256];
	return snipe_key_load(key_path, &admin, err, sizeof(err)) == SNIPE_OK ? 0 : -1;
}

static int write_one(rcds_client *c, int worker, int i)
{
	char urn[64], value[VALUE_LEN];
	snprintf(urn, sizeof(urn), "urn:snipe:data:bench-%d-%d", worker, i);
	memset(value, 'v', sizeof(value));
	rcds_batch *b = NULL;
	rcds_batch_new(&b);
	rcds_batch_put(b, urn, "payload", value, sizeof(value), 0);
	char err[256];
	int rc = rcds_write(c, b, NULL, err, sizeof(err));
	rcds_batch_free(b);
	return rc;
}

/* -------------------------------------------------------------- measurements */

static void single_writer(double *p50, double *p99)
{
	enum { N = 2000 };
	static double lat[N];
	rcds_client *c = NULL;
	char err[256];
	rcds_client_open(endpoints, admin, &c, err, sizeof(err));
	for (int i = 0; i < 100; i++)
		write_one(c, 999, i); /* warm up: find the leader */
	for (int i = 0; i < N; i++) {
		double t0 = now_us();
		write_one(c, 0, i);
		lat[i] = now_us() - t0;
	}
	rcds_client_close(c);
	*p99 = pct(lat, N, 0.99);
	*p50 = pct(lat, N, 0.5);
}

struct worker {
	int id, count, done;
	bool reads;
	double seconds;
	pthread_barrier_t *start;
};

static bool read_one(rcds_client *c, int i)
{
	rcds_list l;
	char urn[64], err[256];
	snprintf(urn, sizeof(urn), "urn:snipe:data:bench-0-%d", i % 2000);
	if (rcds_get(c, urn, &l, err, sizeof(err)) != SNIPE_OK)
		return false;
	rcds_list_free(&l);
	return true;
}

/* Readers first read each record once, untimed: a client checks the signature of an
 * assertion the first time it sees it (43 us) and remembers it; the timed reads are
 * the steady state of a client reading what it has read before. */
static void *worker_main(void *arg)
{
	struct worker *w = arg;
	rcds_client *c = NULL;
	char err[256];
	rcds_client_open(endpoints, admin, &c, err, sizeof(err));
	for (int i = 0; w->reads && i < 2000; i++)
		read_one(c, i);
	pthread_barrier_wait(w->start);
	double end = now_us() + w->seconds * 1e6;
	while (now_us() < end) {
		if (w->reads ? read_one(c, w->done) : write_one(c, w->id + 1, w->done) == SNIPE_OK)
			w->done++;
	}
	rcds_client_close(c);
	return NULL;
}

static int replica_pid(uint64_t id);

/* CPU time used so far by this process and the 3 replicas, in microseconds. */
static double cluster_cpu_us(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double us = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
	            (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
	for (uint64_t id = 1; id <= 3; id++) {
		char path[64];
		unsigned long ut = 0, st = 0;
		snprintf(path, sizeof(path), "/proc/%d/stat", replica_pid(id));
		FILE *f = fopen(path, "r");
		if (f != NULL && fscanf(f, "%*d (%*[^)]) %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
		                           "%lu %lu", &ut, &st) == 2)
			us += (double)(ut + st) * 1e6 / (double)sysconf(_SC_CLK_TCK);
		if (f != NULL)
			fclose(f);
	}
	return us;
}

/* Operations per second from n clients; *cpu_us: CPU per operation, all processes. */
static double parallel(int n, bool reads, double seconds, double *cpu_us)
{
	pthread_t t[64];
	struct worker w[64];
	pthread_barrier_t start;
	pthread_barrier_init(&start, NULL, (unsigned)n + 1);
	for (int i = 0; i < n; i++) {
		w[i] = (struct worker){.id = i, .reads = reads, .seconds = seconds, .start = &start};
		pthread_create(&t[i], NULL, worker_main, &w[i]);
	}
	pthread_barrier_wait(&start);
	double cpu0 = cluster_cpu_us();
	long total = 0;
	for (int i = 0; i < n; i++) {
		pthread_join(t[i], NULL);
		total += w[i].done;
	}
	*cpu_us = total > 0 ? (cluster_cpu_us() - cpu0) / (double)total : 0;
	pthread_barrier_destroy(&start);
	return (double)total / seconds;
}

/* The pid of replica `id` from DIR/pids ("<pid> rcdsd replica<id>" lines). */
static int replica_pid(uint64_t id)
{
	char path[512], line[256], name[64];
	snprintf(path, sizeof(path), "%s/pids", dir);
	FILE *f = fopen(path, "r");
	int pid = -1, p;
	while (f != NULL && fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "%d rcdsd %63s", &p, name) == 2 &&
		    strtoull(name + 7, NULL, 10) == id)
			pid = p;
	if (f != NULL)
		fclose(f);
	return pid;
}

/* Replaces replica id's pid in DIR/pids, so `snipe cluster down` stops the new one. */
static void record_pid(uint64_t id, int old, int pid)
{
	char path[512], text[2048] = "", line[256];
	snprintf(path, sizeof(path), "%s/pids", dir);
	FILE *f = fopen(path, "r");
	while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
		int p = atoi(line);
		size_t u = strlen(text);
		if (p == old)
			snprintf(text + u, sizeof(text) - u, "%d rcdsd replica%llu\n", pid,
			         (unsigned long long)id);
		else
			snprintf(text + u, sizeof(text) - u, "%s", line);
	}
	if (f != NULL)
		fclose(f);
	f = fopen(path, "w");
	if (f != NULL) {
		fputs(text, f);
		fclose(f);
	}
}

/* Starts a process again with the argv it had (read from /proc before it died). */
static int respawn(char *cmdline, size_t len, uint64_t id)
{
	char *argv[64];
	int argc = 0;
	for (size_t i = 0; i < len && argc < 63; i += strlen(cmdline + i) + 1)
		argv[argc++] = cmdline + i;
	argv[argc] = NULL;
	pid_t pid = fork();
	if (pid == 0) {
		char log[512];
		snprintf(log, sizeof(log), "%s/replica%llu.log", dir, (unsigned long long)id);
		setsid();
		int fd = open(log, O_WRONLY | O_APPEND | O_CREAT, 0600);
		dup2(fd, 1);
		dup2(fd, 2);
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

/* Kills the leader (SIGKILL) and times until a write succeeds again; then restarts the
 * killed replica and waits until it has caught up, so the next round has 3 again. */
static double failover_ms(rcds_client *c)
{
	char err[256], path[64];
	rcds_status st;
	if (rcds_status_get(c, NULL, &st, err, sizeof(err)) != SNIPE_OK || st.leader_id == 0)
		return -1;
	uint64_t leader = st.leader_id;
	int pid = replica_pid(leader);
	snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
	char cmdline[4096];
	int fd = open(path, O_RDONLY);
	ssize_t len = fd >= 0 ? read(fd, cmdline, sizeof(cmdline)) : -1;
	if (fd >= 0)
		close(fd);
	if (pid < 0 || len <= 0)
		return -1;
	double t0 = now_us();
	kill(pid, SIGKILL);
	int i = 0;
	while (write_one(c, 7777, i++) != SNIPE_OK)
		;
	double ms = (now_us() - t0) / 1000.0;
	waitpid(pid, NULL, WNOHANG);
	int np = respawn(cmdline, (size_t)len, leader);
	record_pid(leader, pid, np);
	for (int waited = 0; waited < 10000; waited += 50) {
		rcds_status a, b;
		char ep[64];
		snprintf(ep, sizeof(ep), "%s", "");
		if (rcds_status_get(c, NULL, &a, err, sizeof(err)) == SNIPE_OK) {
			/* the restarted replica answers with a non-zero applied index near the leader's */
			bool caught = false;
			char *list = strdup(endpoints), *save = NULL;
			for (char *e = strtok_r(list, ",", &save); e != NULL; e = strtok_r(NULL, ",", &save))
				if (rcds_status_get(c, e, &b, err, sizeof(err)) == SNIPE_OK && b.id == leader &&
				    b.applied_index + 10 >= a.applied_index && b.leader_id != 0)
					caught = true;
			free(list);
			if (caught)
				break;
		}
		usleep(50 * 1000);
	}
	return ms;
}

int main(int argc, char **argv)
{
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	self[n > 0 ? n : 0] = '\0';
	snprintf(snipe_bin, sizeof(snipe_bin), "%s/snipe", dirname(self));
	const char *base = getenv("BENCH_DIR"); /* where the cluster lives; /tmp by default */
	snprintf(dir, sizeof(dir), "%s/snipe-bench-%d", base != NULL ? base : "/tmp",
	         (int)getpid());

	mkdir(dir, 0700);
	double raw_cpu = 0, wcpu = 0, rcpu = 0;
	double raw_rps = nanomsg_reqs_per_s(&raw_cpu); /* first: it forks (nanomsg is not fork-safe) */
	double rtt = nanomsg_rtt_us();
	if (cluster_up() != 0) {
		fprintf(stderr, "bench_catalog: cluster up failed (see %s)\n", dir);
		return 1;
	}
	double fs = fsync_us();
	/* "bench_catalog writes" (or single, reads): that measurement alone, for profiling. */
	const char *only = argc > 1 ? argv[1] : NULL;
	double p50 = 0, p99 = 0, wps = 0, rps = 0;
	if (only == NULL || strcmp(only, "single") == 0 || strcmp(only, "reads") == 0)
		single_writer(&p50, &p99); /* also writes what the reads read */
	int writers = argc > 2 ? atoi(argv[2]) : 64;
	if (writers < 1 || writers > 64)
		writers = 64;
	if (only == NULL || strcmp(only, "writes") == 0)
		wps = parallel(writers, false, 3.0, &wcpu);
	if (only == NULL || strcmp(only, "reads") == 0)
		rps = parallel(only != NULL && argc > 2 ? writers : 4, true, 3.0, &rcpu);
	if (only != NULL) {
		printf("single p50 %.0f us p99 %.0f us (rtt %.0f fsync %.0f); writes %.0f/s (%.0f us "
		       "cpu); reads %.0f/s (%.0f us cpu); raw req/rep %.0f/s (%.0f us cpu)\n", p50, p99,
		       rtt, fs, wps, wcpu, rps, rcpu, raw_rps, raw_cpu);
		goto down;
	}
	rcds_client *fc = NULL;
	char err[256];
	rcds_client_open(endpoints, admin, &fc, err, sizeof(err));
	rcds_client_set_timeout(fc, 10000);
	double fo[5];
	int kills = 0;
	for (int i = 0; i < 5; i++)
		if ((fo[kills] = failover_ms(fc)) >= 0)
			kills++;
	rcds_client_close(fc);
	double fo_max = 0;
	for (int i = 0; i < kills; i++)
		fo_max = fo[i] > fo_max ? fo[i] : fo_max;
	double fo50 = kills ? pct(fo, (size_t)kills, 0.5) : -1;

	printf("catalog: 3 local replicas, signed %d-byte assertions\n\n", VALUE_LEN);
	printf("  anchors (same run)          nanomsg REQ/REP rtt p50 %7.1f us   fsync p50 %7.1f us\n",
	       rtt, fs);
	printf("                              nanomsg REQ/REP, 4 clients over 3 echo servers: "
	       "%.0f /s, %.0f us CPU each\n", raw_rps, raw_cpu);
	printf("  %-28s %10s  %-30s %s\n", "measure", "value", "target", "ratio / verdict");
	printf("  %-28s %7.0f us  <= 1.5 x (rtt + fsync) = %5.0f us  %.2f x (rtt+fsync)\n",
	       "single writer p50", p50, 1.5 * (rtt + fs), p50 / (rtt + fs));
	printf("  %-28s %7.0f us  <= 2000 us                     %s\n", "single writer p99", p99,
	       p99 <= 2000 ? "met" : "missed");
	printf("  %-28s %7.0f /s  >= 11000 /s                    %s; %.0f us CPU each (all "
	       "processes)\n", "writes, 64 in flight", wps, wps >= 11000 ? "met" : "missed", wcpu);
	printf("  %-28s %7.0f /s  >= 20000 /s                    %s; %.2f x raw REQ/REP; %.0f us "
	       "CPU each\n", "reads, 4 clients", rps, rps >= 20000 ? "met" : "missed",
	       rps / raw_rps, rcpu);
	printf("  %-28s %7.0f ms  p50 <= 500 ms                  %s (max %.0f ms, %d kills)\n",
	       "leader kill -> write ok", fo50, fo50 >= 0 && fo50 <= 500 ? "met" : "missed", fo_max,
	       kills);

down:;
	char cmd[8192];
	/* BENCH_KEEP=1 keeps the cluster's directory (logs, databases) for a look after. */
	snprintf(cmd, sizeof(cmd),
	         "%s cluster down --dir %s 2>/dev/null; [ -n \"$BENCH_KEEP\" ] || rm -rf %s",
	         snipe_bin, dir, dir);
	run(cmd);
	snipe_key_free(admin);
	return 0;
}
