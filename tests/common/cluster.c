/*
 * cluster.c — a local catalog of real rcdsd replicas for integration tests (see
 * cluster.h): scratch directory and admin key, loopback ports, starting, killing and
 * watching the replica processes, and waiting on their status. It checks nothing about
 * the catalog itself; the tests do.
 */
#include "cluster.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "testutil.h"

#define POLL_MS 20
#define STATUS_TIMEOUT_MS 250
#define START_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS 5000
#define ELECTION_MS "300"
#define HEARTBEAT_MS "50"
#define LOG_TAIL_LINES 30

struct replica {
	pid_t pid;              /* 0 when not running */
	bool terminating;       /* we sent SIGTERM */
	char raft[32];          /* 127.0.0.1:port */
	char endpoint[64];      /* tcp://127.0.0.1:port */
	char watch[64];         /* tcp://127.0.0.1:port, its change stream */
	char *data;             /* DIR/rN */
	char *log;              /* DIR/rN.log */
	char **argv;            /* the command line, NULL-terminated */
	rcds_client *status;    /* status requests, admin key, this endpoint only */
};

struct tc_cluster {
	char *dir;
	char *rcdsd;
	int n;
	struct replica r[TC_MAX_REPLICAS];
	char *endpoints;
	snipe_key *admin;
	char *admin_path;
	char *cluster_path; /* the replicas' shared cluster key */
	int bad; /* replicas that ended other than as we asked */
	pid_t owner; /* the process that started the replicas */
	int port_locks[3 * TC_MAX_REPLICAS]; /* see pick_ports */
	int nlocks;
	tc_cluster *next; /* in the list of live clusters, for the exit handler */
};

/* ------------------------------------------------------------------ helpers */

static tc_cluster *live_clusters;

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static char *xstrdup(const char *s)
{
	char *p = strdup(s);
	ck_assert_msg(p != NULL, "out of memory");
	return p;
}

static char *xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xprintf(const char *fmt, ...)
{
	va_list ap;
	char *p = NULL;
	va_start(ap, fmt);
	int n = vasprintf(&p, fmt, ap);
	va_end(ap);
	ck_assert_msg(n >= 0, "out of memory");
	return p;
}

/* The whole of a file, NUL-terminated; NULL if it cannot be read. */
static char *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return NULL;
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	while (buf != NULL) {
		n += fread(buf + n, 1, cap - n - 1, f);
		if (n < cap - 1)
			break;
		cap *= 2;
		char *bigger = realloc(buf, cap);
		if (bigger == NULL)
			free(buf);
		buf = bigger;
	}
	fclose(f);
	if (buf == NULL)
		return NULL;
	buf[n] = '\0';
	if (len != NULL)
		*len = n;
	return buf;
}

/* Kills every replica of every live cluster: the last resort when a test exits
 * without stopping its cluster. */
static void kill_all_at_exit(void)
{
	for (tc_cluster *c = live_clusters; c != NULL; c = c->next)
		for (int i = 0; i < c->n && c->owner == getpid(); i++)
			if (c->r[i].pid > 0) {
				kill(c->r[i].pid, SIGKILL);
				waitpid(c->r[i].pid, NULL, 0);
				c->r[i].pid = 0;
			}
}

static void registry_add(tc_cluster *c)
{
	static bool registered;
	if (!registered) {
		atexit(kill_all_at_exit);
		registered = true;
	}
	c->next = live_clusters;
	live_clusters = c;
}

static void registry_remove(tc_cluster *c)
{
	for (tc_cluster **pp = &live_clusters; *pp != NULL; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			return;
		}
}

/* ------------------------------------------------------------------- ports */

/*
 * Ports come from below the kernel's ephemeral range, never from it: a port handed out
 * by bind(0) is soon handed out again, to a parallel test run or as the local port of
 * an outgoing connection, and a killed replica could then not listen again on
 * restart (or a replica would receive another cluster's Raft traffic). Each port is
 * reserved among test processes by an flock on a file named after it, held while the
 * cluster lives and dropped by the kernel if the test dies, and checked free by
 * binding it.
 */
#define PORT_SPAN 12000

static void ephemeral_range(int *lo, int *hi)
{
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
	if (f == NULL || fscanf(f, "%d %d", lo, hi) != 2) {
		*lo = 32768;
		*hi = 60999;
	}
	if (f != NULL)
		fclose(f);
}

static bool port_free(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* The lock file's descriptor; -1 if another test holds the port; -2 if ports cannot be
 * locked here at all (then they are only checked free). */
static int port_lock(const char *dir, int port)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%d", dir, port);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -2;
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* n distinct free ports, reserved for c until tc_cluster_stop. */
static void pick_ports(tc_cluster *c, int *ports, int n)
{
	int lo, hi, base, span;
	ephemeral_range(&lo, &hi);
	if (lo - PORT_SPAN >= 1024) {
		base = lo - PORT_SPAN;
		span = PORT_SPAN;
	} else {
		base = hi + 1;
		span = 65536 - base;
	}
	ck_assert_msg(span >= 1000, "no port range outside the ephemeral ports %d-%d", lo, hi);
	const char *tmp = getenv("TMPDIR");
	char *dir = xprintf("%s/snipe-test-ports-%u", tmp != NULL ? tmp : "/tmp",
	                    (unsigned)getuid());
	mkdir(dir, 0700);
	for (int k = 0; k < n; k++) {
		int tries = 0;
		for (ports[k] = 0; ports[k] == 0 && tries < 1000; tries++) {
			int port = base + (int)randombytes_uniform((uint32_t)span);
			bool taken = false;
			for (int j = 0; j < k; j++)
				taken = taken || ports[j] == port;
			int fd = taken ? -1 : port_lock(dir, port);
			if (fd == -1)
				continue;
			if (!port_free(port)) {
				if (fd >= 0)
					close(fd);
				continue;
			}
			ports[k] = port;
			if (fd >= 0)
				c->port_locks[c->nlocks++] = fd;
		}
		ck_assert_msg(ports[k] != 0, "no free port in %d-%d", base, base + span - 1);
	}
	free(dir);
}

/* --------------------------------------------------------------- processes */

/* Records how replica i ended; counts it as bad unless it is what we asked for:
 * killed by our SIGKILL, or exited 0 (or by SIGTERM) after our SIGTERM. */
static void reaped(tc_cluster *c, int i, int status, bool killed)
{
	struct replica *r = &c->r[i];
	bool ok;
	if (killed)
		ok = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
	else if (r->terminating)
		ok = (WIFEXITED(status) && WEXITSTATUS(status) == 0) ||
		     (WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
	else
		ok = false;
	if (!ok) {
		c->bad++;
		if (WIFEXITED(status))
			fprintf(stderr, "cluster: replica %d (pid %d) exited with status %d\n", i + 1,
			        (int)r->pid, WEXITSTATUS(status));
		else if (WIFSIGNALED(status))
			fprintf(stderr, "cluster: replica %d (pid %d) died of signal %d\n", i + 1,
			        (int)r->pid, WTERMSIG(status));
	}
	r->pid = 0;
	r->terminating = false;
}

/* Notices replicas that ended on their own (a crash, a bad flag). */
static void check_running(tc_cluster *c)
{
	for (int i = 0; i < c->n; i++) {
		int status;
		if (c->r[i].pid > 0 && waitpid(c->r[i].pid, &status, WNOHANG) == c->r[i].pid) {
			reaped(c, i, status, false);
			tc_cluster_dump_logs(c, LOG_TAIL_LINES);
		}
	}
}

static void close_status(struct replica *r)
{
	rcds_client_close(r->status);
	r->status = NULL;
}

/* fork + execv with stdin from /dev/null and stdout, stderr appended to rN.log. The
 * child does nothing between fork and exec that is not async-signal-safe (the test may
 * have threads). */
static void spawn(tc_cluster *c, int i)
{
	struct replica *r = &c->r[i];
	ck_assert_msg(r->pid == 0, "replica %d is already running", i + 1);
	int logfd = open(r->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	ck_assert_msg(logfd >= 0 && nullfd >= 0, "open %s: %s", r->log, strerror(errno));
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid == 0) {
		/* Die with the test, even if it crashes or is killed for a timeout. */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
			_exit(126);
		if (dup2(nullfd, STDIN_FILENO) < 0 || dup2(logfd, STDOUT_FILENO) < 0 ||
		    dup2(logfd, STDERR_FILENO) < 0)
			_exit(126);
		close_range(3, ~0u, 0);
		execv(c->rcdsd, r->argv);
		_exit(127);
	}
	close(logfd);
	close(nullfd);
	ck_assert_msg(pid > 0, "fork: %s", strerror(errno));
	r->pid = pid;
}

/* The command line of replica i: fixed flags, $SNIPE_TEST_LOG_LEVEL, then extra. */
static void build_argv(tc_cluster *c, int i, const char *peers, const char *const *extra)
{
	struct replica *r = &c->r[i];
	char id[16];
	snprintf(id, sizeof(id), "%d", i + 1);
	char *pub = xprintf("%s.pub", c->admin_path);
	const char *level = getenv("SNIPE_TEST_LOG_LEVEL");
	const char *fixed[] = {
		c->rcdsd, "-d", "--id", id, "--data", r->data, "--raft", r->raft,
		"--listen", r->endpoint, "--watch", r->watch, "--peers", peers, "--admin-key", pub,
		"--cluster-key", c->cluster_path, "--election-ms", ELECTION_MS, "--heartbeat-ms", HEARTBEAT_MS,
		level != NULL && *level != '\0' ? "--log-level" : NULL, level,
	};
	size_t nfixed = sizeof(fixed) / sizeof(fixed[0]), nextra = 0, k = 0;
	while (extra != NULL && extra[nextra] != NULL)
		nextra++;
	r->argv = calloc(nfixed + nextra + 1, sizeof(char *));
	ck_assert_msg(r->argv != NULL, "out of memory");
	for (size_t j = 0; j < nfixed && fixed[j] != NULL; j++)
		r->argv[k++] = xstrdup(fixed[j]);
	for (size_t j = 0; j < nextra; j++)
		r->argv[k++] = xstrdup(extra[j]);
	free(pub);
}

/* Replica i's addresses (ports: Raft, client, watch) and its files in the directory. */
static void place(tc_cluster *c, int i, const int *ports)
{
	struct replica *r = &c->r[i];
	snprintf(r->raft, sizeof(r->raft), "127.0.0.1:%d", ports[0]);
	snprintf(r->endpoint, sizeof(r->endpoint), "tcp://127.0.0.1:%d", ports[1]);
	snprintf(r->watch, sizeof(r->watch), "tcp://127.0.0.1:%d", ports[2]);
	char name[24];
	snprintf(name, sizeof(name), "r%d", i + 1);
	r->data = tu_path(c->dir, name);
	snprintf(name, sizeof(name), "r%d.log", i + 1);
	r->log = tu_path(c->dir, name);
}

/* ---------------------------------------------------------------- lifecycle */

tc_cluster *tc_cluster_launch(const char *rcdsd, int replicas, const char *const *extra)
{
	ck_assert_msg(replicas >= 1 && replicas <= TC_MAX_REPLICAS, "replicas: %d", replicas);
	tc_cluster *c = calloc(1, sizeof(*c));
	ck_assert_msg(c != NULL, "out of memory");
	c->n = replicas;
	c->owner = getpid();
	c->rcdsd = xstrdup(rcdsd);
	c->dir = tu_tmpdir();
	c->admin_path = tu_path(c->dir, "admin.key");
	char err[256];
	ck_assert_int_eq(snipe_key_generate(&c->admin), SNIPE_OK);
	ck_assert_msg(snipe_key_save(c->admin, c->admin_path, false, err, sizeof(err)) == SNIPE_OK,
	              "save admin key: %s", err);
	c->cluster_path = tu_path(c->dir, "cluster.key");
	snipe_key *cluster = NULL;
	ck_assert_int_eq(snipe_key_generate(&cluster), SNIPE_OK);
	ck_assert_msg(snipe_key_save(cluster, c->cluster_path, false, err, sizeof(err)) == SNIPE_OK,
	              "save cluster key: %s", err);
	snipe_key_free(cluster);

	int ports[3 * TC_MAX_REPLICAS];
	pick_ports(c, ports, 3 * replicas);
	size_t cap = (size_t)replicas * 64;
	char *peers = calloc(1, cap);
	c->endpoints = calloc(1, cap);
	ck_assert_msg(peers != NULL && c->endpoints != NULL, "out of memory");
	for (int i = 0; i < replicas; i++) {
		struct replica *r = &c->r[i];
		place(c, i, &ports[3 * i]);
		snprintf(peers + strlen(peers), cap - strlen(peers), "%s%d=%s", i ? "," : "", i + 1,
		         r->raft);
		snprintf(c->endpoints + strlen(c->endpoints), cap - strlen(c->endpoints), "%s%s",
		         i ? "," : "", r->endpoint);
	}
	for (int i = 0; i < replicas; i++)
		build_argv(c, i, peers, extra);
	free(peers);

	registry_add(c);
	fprintf(stderr, "cluster: %d replicas in %s\n", replicas, c->dir);
	for (int i = 0; i < replicas; i++)
		spawn(c, i);
	if (tc_cluster_wait_leader(c, START_TIMEOUT_MS) < 0) {
		tc_cluster_dump_logs(c, LOG_TAIL_LINES);
		ck_abort_msg("cluster: no leader agreed on within %d ms", START_TIMEOUT_MS);
	}
	return c;
}

int tc_cluster_stop(tc_cluster *c)
{
	if (c == NULL)
		return 0;
	for (int i = 0; i < c->n; i++)
		close_status(&c->r[i]);
	check_running(c);
	for (int i = 0; i < c->n; i++)
		if (c->r[i].pid > 0) {
			c->r[i].terminating = true;
			kill(c->r[i].pid, SIGTERM);
		}
	uint64_t deadline = now_ms() + STOP_TIMEOUT_MS;
	for (;;) {
		int left = 0;
		for (int i = 0; i < c->n; i++) {
			int status;
			if (c->r[i].pid > 0 && waitpid(c->r[i].pid, &status, WNOHANG) == c->r[i].pid)
				reaped(c, i, status, false);
			left += c->r[i].pid > 0;
		}
		if (left == 0 || now_ms() >= deadline)
			break;
		sleep_ms(10);
	}
	for (int i = 0; i < c->n; i++)
		if (c->r[i].pid > 0) {
			fprintf(stderr, "cluster: replica %d did not stop within %d ms of SIGTERM\n",
			        i + 1, STOP_TIMEOUT_MS);
			c->bad++;
			tc_cluster_kill(c, i);
		}
	int bad = c->bad;
	if (bad > 0)
		tc_cluster_dump_logs(c, LOG_TAIL_LINES);
	registry_remove(c);
	for (int i = 0; i < c->n; i++) {
		for (char **a = c->r[i].argv; a != NULL && *a != NULL; a++)
			free(*a);
		free(c->r[i].argv);
		free(c->r[i].data);
		free(c->r[i].log);
	}
	if (getenv("SNIPE_KEEP_TEST_DIRS") != NULL) {
		fprintf(stderr, "cluster: kept %s\n", c->dir);
		free(c->dir);
	} else {
		tu_rmtree(c->dir);
	}
	for (int k = 0; k < c->nlocks; k++)
		close(c->port_locks[k]);
	snipe_key_free(c->admin);
	free(c->admin_path);
	free(c->cluster_path);
	free(c->endpoints);
	free(c->rcdsd);
	free(c);
	return bad;
}

void tc_cluster_kill(tc_cluster *c, int i)
{
	ck_assert(i >= 0 && i < c->n);
	struct replica *r = &c->r[i];
	close_status(r);
	if (r->pid == 0)
		return;
	int status;
	kill(r->pid, SIGKILL);
	ck_assert_msg(waitpid(r->pid, &status, 0) == r->pid, "waitpid: %s", strerror(errno));
	reaped(c, i, status, true);
}

void tc_cluster_restart(tc_cluster *c, int i)
{
	ck_assert(i >= 0 && i < c->n);
	close_status(&c->r[i]);
	spawn(c, i);
}

void tc_cluster_wipe(tc_cluster *c, int i)
{
	tc_cluster_kill(c, i);
	tu_rmtree(xstrdup(c->r[i].data));
	struct stat st;
	ck_assert_msg(stat(c->r[i].data, &st) != 0, "%s is still there", c->r[i].data);
}

int tc_cluster_add_replica(tc_cluster *c, const char *const *extra)
{
	ck_assert_msg(c->n < TC_MAX_REPLICAS, "cluster: already %d replicas", c->n);
	int i = c->n, ports[3];
	pick_ports(c, ports, 3);
	place(c, i, ports);
	struct replica *r = &c->r[i];

	size_t nextra = 0;
	while (extra != NULL && extra[nextra] != NULL)
		nextra++;
	const char **flags = calloc(nextra + 2, sizeof(*flags));
	ck_assert_msg(flags != NULL, "out of memory");
	flags[0] = "--join";
	for (size_t j = 0; j < nextra; j++)
		flags[j + 1] = extra[j];
	char *self = xprintf("%d=%s", i + 1, r->raft);
	build_argv(c, i, self, flags);
	free(self);
	free(flags);

	char *endpoints = xprintf("%s,%s", c->endpoints, r->endpoint);
	free(c->endpoints);
	c->endpoints = endpoints;
	c->n++;
	fprintf(stderr, "cluster: replica %d joins, raft %s, endpoint %s\n", i + 1, r->raft,
	        r->endpoint);
	spawn(c, i);
	uint64_t deadline = now_ms() + START_TIMEOUT_MS;
	for (;;) {
		rcds_status st;
		check_running(c);
		if (tc_cluster_status(c, i, &st) == SNIPE_OK)
			return i;
		if (r->pid == 0 || now_ms() >= deadline)
			break;
		sleep_ms(POLL_MS);
	}
	tc_cluster_dump_logs(c, LOG_TAIL_LINES);
	ck_abort_msg("cluster: replica %d did not answer within %d ms", i + 1, START_TIMEOUT_MS);
	return -1;
}

/* ------------------------------------------------------------------ access */

int tc_cluster_size(const tc_cluster *c)
{
	return c->n;
}

const char *tc_cluster_dir(const tc_cluster *c)
{
	return c->dir;
}

const char *tc_cluster_endpoints(const tc_cluster *c)
{
	return c->endpoints;
}

const char *tc_cluster_endpoint(const tc_cluster *c, int i)
{
	ck_assert(i >= 0 && i < c->n);
	return c->r[i].endpoint;
}

const char *tc_cluster_raft_address(const tc_cluster *c, int i)
{
	ck_assert(i >= 0 && i < c->n);
	return c->r[i].raft;
}

const snipe_key *tc_cluster_admin_key(const tc_cluster *c)
{
	return c->admin;
}

const char *tc_cluster_admin_key_path(const tc_cluster *c)
{
	return c->admin_path;
}

bool tc_cluster_running(tc_cluster *c, int i)
{
	ck_assert(i >= 0 && i < c->n);
	check_running(c);
	return c->r[i].pid > 0;
}

rcds_client *tc_cluster_client(tc_cluster *c, int i, const snipe_key *key)
{
	const char *endpoints = i < 0 ? c->endpoints : tc_cluster_endpoint(c, i);
	rcds_client *cl = NULL;
	char err[256] = "";
	int rc = rcds_client_open(endpoints, key, &cl, err, sizeof(err));
	ck_assert_msg(rc == SNIPE_OK, "rcds_client_open %s: %s (%s)", endpoints,
	              snipe_errname(rc), err);
	return cl;
}

/* ------------------------------------------------------------------ status */

int tc_cluster_status(tc_cluster *c, int i, rcds_status *out)
{
	ck_assert(i >= 0 && i < c->n);
	struct replica *r = &c->r[i];
	if (r->pid == 0)
		return SNIPE_EUNAVAIL;
	if (r->status == NULL) {
		r->status = tc_cluster_client(c, i, c->admin);
		rcds_client_set_timeout(r->status, STATUS_TIMEOUT_MS);
	}
	return rcds_status_get(r->status, NULL, out, NULL, 0);
}

int tc_cluster_leader(tc_cluster *c)
{
	int leader = -1;
	uint64_t term = 0;
	check_running(c);
	for (int i = 0; i < c->n; i++) {
		rcds_status st;
		if (tc_cluster_status(c, i, &st) == SNIPE_OK && strcmp(st.state, "leader") == 0 &&
		    (leader < 0 || st.term > term)) {
			leader = i;
			term = st.term;
		}
	}
	return leader;
}

/* The leader every running replica names, if they agree and it says it leads. */
static int agreed_leader(tc_cluster *c)
{
	uint64_t leader_id = 0;
	bool leader_says_so = false;
	for (int i = 0; i < c->n; i++) {
		rcds_status st;
		if (c->r[i].pid == 0)
			continue;
		if (tc_cluster_status(c, i, &st) != SNIPE_OK || st.leader_id == 0 ||
		    (leader_id != 0 && st.leader_id != leader_id))
			return -1;
		leader_id = st.leader_id;
		if (st.id == leader_id && strcmp(st.state, "leader") == 0)
			leader_says_so = true;
	}
	if (!leader_says_so || leader_id > (uint64_t)c->n)
		return -1;
	return (int)leader_id - 1;
}

int tc_cluster_wait_leader(tc_cluster *c, int timeout_ms)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
	for (;;) {
		check_running(c);
		int leader = agreed_leader(c);
		if (leader >= 0 || now_ms() >= deadline)
			return leader;
		sleep_ms(POLL_MS);
	}
}

void tc_cluster_dump_status(tc_cluster *c)
{
	for (int i = 0; i < c->n; i++) {
		rcds_status st;
		int rc = tc_cluster_status(c, i, &st);
		if (rc != SNIPE_OK)
			fprintf(stderr, "cluster: replica %d: %s\n", i + 1, snipe_errname(rc));
		else
			fprintf(stderr,
			        "cluster: replica %d: %s term=%" PRIu64 " leader=%" PRIu64
			        " commit=%" PRIu64 " applied=%" PRIu64 "\n",
			        i + 1, st.state, st.term, st.leader_id, st.commit_index,
			        st.applied_index);
	}
}

int tc_cluster_wait_applied(tc_cluster *c, int i, uint64_t index, int timeout_ms)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
	for (;;) {
		rcds_status st;
		if (tc_cluster_status(c, i, &st) == SNIPE_OK && st.applied_index >= index)
			return SNIPE_OK;
		if (now_ms() >= deadline) {
			fprintf(stderr, "cluster: replica %d has not applied index %" PRIu64
			        " within %d ms\n", i + 1, index, timeout_ms);
			tc_cluster_dump_status(c);
			return SNIPE_ETIMEDOUT;
		}
		check_running(c);
		sleep_ms(POLL_MS);
	}
}

int tc_cluster_wait_all_applied(tc_cluster *c, uint64_t index, int timeout_ms)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
	for (int i = 0; i < c->n; i++) {
		if (c->r[i].pid == 0)
			continue;
		uint64_t now = now_ms();
		int left = deadline > now ? (int)(deadline - now) : 0;
		if (tc_cluster_wait_applied(c, i, index, left) != SNIPE_OK)
			return SNIPE_ETIMEDOUT;
	}
	return SNIPE_OK;
}

/* ---------------------------------------------------------------- identities */

uint64_t tc_cluster_register_key(tc_cluster *c, const snipe_key *key, const char *role,
                                 const char *host)
{
	uint8_t id[SNIPE_KEYID_BYTES];
	char idhex[SNIPE_KEYID_HEX], pkhex[SNIPE_PK_HEX], urn[SNIPE_URN_MAX], err[256] = "";
	snipe_keyid(snipe_key_public(key), id);
	snipe_keyid_hex(id, idhex);
	snipe_pk_hex(snipe_key_public(key), pkhex);
	snprintf(urn, sizeof(urn), "urn:snipe:key:%s", idhex);

	rcds_batch *b = NULL;
	ck_assert_int_eq(rcds_batch_new(&b), SNIPE_OK);
	ck_assert_int_eq(rcds_batch_put(b, urn, "pubkey", pkhex, strlen(pkhex), 0), SNIPE_OK);
	ck_assert_int_eq(rcds_batch_put(b, urn, "role", role, strlen(role), 0), SNIPE_OK);
	if (host != NULL)
		ck_assert_int_eq(rcds_batch_put(b, urn, "host", host, strlen(host), 0), SNIPE_OK);
	rcds_client *admin = tc_cluster_client(c, -1, c->admin);
	uint64_t index = 0;
	int rc = rcds_write(admin, b, &index, err, sizeof(err));
	rcds_client_close(admin);
	rcds_batch_free(b);
	ck_assert_msg(rc == SNIPE_OK, "register %s as %s: %s (%s)", urn, role, snipe_errname(rc),
	              err);
	ck_assert_msg(tc_cluster_wait_all_applied(c, index, START_TIMEOUT_MS) == SNIPE_OK,
	              "register %s: not applied everywhere within %d ms", urn, START_TIMEOUT_MS);
	return index;
}

/* -------------------------------------------------------------------- logs */

void tc_cluster_dump_logs(const tc_cluster *c, int lines)
{
	for (int i = 0; i < c->n; i++) {
		size_t len = 0;
		char *text = read_all(c->r[i].log, &len);
		fprintf(stderr, "---- replica %d: last %d lines of %s\n", i + 1, lines, c->r[i].log);
		if (text == NULL)
			continue;
		size_t start = len;
		for (int seen = 0; start > 0; start--)
			if (text[start - 1] == '\n' && start != len && ++seen == lines)
				break;
		fputs(text + start, stderr);
		free(text);
	}
	fflush(stderr);
}

bool tc_cluster_log_contains(const tc_cluster *c, int i, const char *text)
{
	ck_assert(i >= 0 && i < c->n);
	char *all = read_all(c->r[i].log, NULL);
	bool found = all != NULL && strstr(all, text) != NULL;
	free(all);
	return found;
}
