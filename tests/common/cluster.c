/*
 * cluster.c — a local catalog of real rcdsd replicas for integration tests, and host
 * agents beside it (see cluster.h): scratch directory and keys, loopback ports,
 * starting, killing and watching the daemons, and waiting on their status. It checks
 * nothing about the catalog or the agents itself; the tests do.
 */
#include "cluster.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <sched.h>
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
#define SIGNAL_TIMEOUT_MS 2000

/* A process the cluster runs: a replica or an agent. */
struct daemon {
	pid_t pid;              /* 0 when not running */
	bool terminating;       /* we sent SIGTERM */
	char what[96];          /* "replica N" or "agent NAME", for messages */
	char *log;              /* its stdout and stderr */
	char **argv;            /* the command line, NULL-terminated; argv[0] is the binary */
};

struct replica {
	struct daemon d;
	char raft[32];          /* 127.0.0.1:port */
	char endpoint[64];      /* tcp://127.0.0.1:port */
	char listen[64];        /* its --listen: endpoint, or tcp://0.0.0.0:port */
	char watch[64];         /* tcp://127.0.0.1:port, its change stream */
	char *data;             /* DIR/rN */
	char *key;              /* DIR/rN.key, its own key (role replica) */
	char pk[SNIPE_PK_HEX];  /* that key's public half */
	rcds_client *status;    /* status requests, admin key, this endpoint only */
};

struct agent {
	struct daemon d;
	char name[SNIPE_URN_NAME_MAX + 1];
	char endpoint[64];      /* tcp://address:port, its --listen */
	char msg_endpoint[64];  /* tcp://address:port, its --msg-listen */
	char *state;            /* DIR/host-NAME */
	char *key;              /* DIR/host-NAME.key (role host, host=NAME) */
	char *netns;            /* the network namespace it runs in, or NULL */
};

struct tc_cluster {
	char *dir;
	char *rcdsd;
	int n;
	struct replica r[TC_MAX_REPLICAS];
	int nagents;
	struct agent a[TC_MAX_AGENTS];
	bool listen_any; /* the replicas' client endpoints listen on 0.0.0.0 */
	char *endpoints;
	snipe_key *admin;
	char *admin_path;
	char *cluster_path; /* the replicas' shared cluster key */
	int bad; /* replicas and agents that ended other than as we asked */
	pid_t owner; /* the process that started the replicas */
	/* see pick_ports: 3 per replica, 2 per agent, and tc_cluster_port's */
	int port_locks[3 * TC_MAX_REPLICAS + 2 * TC_MAX_AGENTS + TC_MAX_PORTS];
	int nlocks;
	int ntest_ports; /* handed out by tc_cluster_port */
	tc_cluster *next; /* in the list of live clusters, for the exit handler */
};

/* ------------------------------------------------------------------ helpers */

static tc_cluster *live_clusters;

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

/* SIGKILL and reap, asserting nothing: for the exit handler. */
static void kill_now(struct daemon *d)
{
	if (d->pid > 0) {
		kill(d->pid, SIGKILL);
		waitpid(d->pid, NULL, 0);
		d->pid = 0;
	}
}

/* Kills every replica and agent of every live cluster: the last resort when a test
 * exits without stopping its cluster. */
static void kill_all_at_exit(void)
{
	for (tc_cluster *c = live_clusters; c != NULL; c = c->next) {
		if (c->owner != getpid())
			continue;
		for (int i = 0; i < c->nagents; i++)
			kill_now(&c->a[i].d);
		for (int i = 0; i < c->n; i++)
			kill_now(&c->r[i].d);
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

/* -------------------------------------------------- ports for a test's own use */

int tc_cluster_port(tc_cluster *c)
{
	ck_assert_msg(c->ntest_ports < TC_MAX_PORTS, "cluster: already %d ports for the test",
	              c->ntest_ports);
	int port = 0;
	pick_ports(c, &port, 1);
	c->ntest_ports++;
	return port;
}

/* --------------------------------------------------------------- processes */

/* Records how d ended; counts it as bad unless it is what we asked for: killed by our
 * SIGKILL, or exited 0 (or by SIGTERM) after our SIGTERM. */
static void reaped(tc_cluster *c, struct daemon *d, int status, bool killed)
{
	bool ok;
	if (killed)
		ok = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
	else if (d->terminating)
		ok = (WIFEXITED(status) && WEXITSTATUS(status) == 0) ||
		     (WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
	else
		ok = false;
	if (!ok) {
		c->bad++;
		if (WIFEXITED(status))
			fprintf(stderr, "cluster: %s (pid %d) exited with status %d\n", d->what,
			        (int)d->pid, WEXITSTATUS(status));
		else if (WIFSIGNALED(status))
			fprintf(stderr, "cluster: %s (pid %d) died of signal %d\n", d->what, (int)d->pid,
			        WTERMSIG(status));
	}
	d->pid = 0;
	d->terminating = false;
}

/* Reaps d if it has ended; true if it did. */
static bool reap_if_ended(tc_cluster *c, struct daemon *d)
{
	int status;
	if (d->pid > 0 && waitpid(d->pid, &status, WNOHANG) == d->pid) {
		reaped(c, d, status, false);
		return true;
	}
	return false;
}

/* Notices replicas and agents that ended on their own (a crash, a bad flag). */
static void check_running(tc_cluster *c)
{
	bool ended = false;
	for (int i = 0; i < c->n; i++)
		ended = reap_if_ended(c, &c->r[i].d) || ended;
	for (int i = 0; i < c->nagents; i++)
		ended = reap_if_ended(c, &c->a[i].d) || ended;
	if (ended)
		tc_cluster_dump_logs(c, LOG_TAIL_LINES);
}

static void close_status(struct replica *r)
{
	rcds_client_close(r->status);
	r->status = NULL;
}

/* SIGKILL d, if it runs, and reap it. */
static void kill_daemon(tc_cluster *c, struct daemon *d)
{
	if (d->pid == 0)
		return;
	int status;
	kill(d->pid, SIGKILL);
	ck_assert_msg(waitpid(d->pid, &status, 0) == d->pid, "waitpid: %s", strerror(errno));
	reaped(c, d, status, true);
}

/* SIGTERM (and SIGCONT) to each running daemon of ds, up to STOP_TIMEOUT_MS for them
 * to end, then SIGKILL for the others, counted bad. */
static void stop_daemons(tc_cluster *c, struct daemon *const *ds, int n)
{
	for (int k = 0; k < n; k++)
		if (ds[k]->pid > 0) {
			ds[k]->terminating = true;
			kill(ds[k]->pid, SIGTERM);
			kill(ds[k]->pid, SIGCONT); /* a stopped one must run to end */
		}
	uint64_t deadline = tu_mono_ms() + STOP_TIMEOUT_MS;
	for (;;) {
		int left = 0;
		for (int k = 0; k < n; k++) {
			reap_if_ended(c, ds[k]);
			left += ds[k]->pid > 0;
		}
		if (left == 0 || tu_mono_ms() >= deadline)
			break;
		tu_sleep_ms(10);
	}
	for (int k = 0; k < n; k++)
		if (ds[k]->pid > 0) {
			fprintf(stderr, "cluster: %s did not stop within %d ms of SIGTERM\n", ds[k]->what,
			        STOP_TIMEOUT_MS);
			c->bad++;
			kill_daemon(c, ds[k]);
		}
}

/* fork + execv of d->argv with stdin from /dev/null and stdout, stderr appended to
 * d->log, in the network namespace netns if not NULL. The child does nothing between
 * fork and exec that is not async-signal-safe (the test may have threads). */
static void spawn_daemon(struct daemon *d, const char *netns)
{
	ck_assert_msg(d->pid == 0, "%s is already running", d->what);
	int logfd = open(d->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	ck_assert_msg(logfd >= 0 && nullfd >= 0, "open %s: %s", d->log, strerror(errno));
	int nsfd = -1;
	if (netns != NULL) {
		char *path = xprintf("/run/netns/%s", netns);
		nsfd = open(path, O_RDONLY | O_CLOEXEC);
		ck_assert_msg(nsfd >= 0, "open %s: %s", path, strerror(errno));
		free(path);
	}
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid == 0) {
		/* Die with the test, even if it crashes or is killed for a timeout. */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
			_exit(126);
		if (nsfd >= 0 && setns(nsfd, CLONE_NEWNET) != 0)
			_exit(125);
		if (dup2(nullfd, STDIN_FILENO) < 0 || dup2(logfd, STDOUT_FILENO) < 0 ||
		    dup2(logfd, STDERR_FILENO) < 0)
			_exit(126);
		close_range(3, ~0u, 0);
		execv(d->argv[0], d->argv);
		_exit(127);
	}
	close(logfd);
	close(nullfd);
	if (nsfd >= 0)
		close(nsfd);
	ck_assert_msg(pid > 0, "fork: %s", strerror(errno));
	d->pid = pid;
}

/* A NULL-terminated copy of fixed (its NULLs skipped: optional flags) then extra. */
static char **make_argv(const char *const *fixed, size_t nfixed, const char *const *extra)
{
	size_t nextra = 0, k = 0;
	while (extra != NULL && extra[nextra] != NULL)
		nextra++;
	char **argv = calloc(nfixed + nextra + 1, sizeof(char *));
	ck_assert_msg(argv != NULL, "out of memory");
	for (size_t j = 0; j < nfixed; j++)
		if (fixed[j] != NULL)
			argv[k++] = xstrdup(fixed[j]);
	for (size_t j = 0; j < nextra; j++)
		argv[k++] = xstrdup(extra[j]);
	return argv;
}

static void free_daemon(struct daemon *d)
{
	for (char **a = d->argv; a != NULL && *a != NULL; a++)
		free(*a);
	free(d->argv);
	free(d->log);
}

/* A new key saved at path; its public half as hex into pk. */
static void make_key(const char *path, char pk[SNIPE_PK_HEX])
{
	snipe_key *k = NULL;
	char err[256] = "";
	ck_assert_int_eq(snipe_key_generate(&k), SNIPE_OK);
	ck_assert_msg(snipe_key_save(k, path, false, err, sizeof(err)) == SNIPE_OK, "save %s: %s",
	              path, err);
	snipe_pk_hex(snipe_key_public(k), pk);
	snipe_key_free(k);
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
		"--listen", r->listen, "--watch", r->watch, "--peers", peers, "--admin-key", pub,
		"--cluster-key", c->cluster_path, "--key", r->key, "--election-ms", ELECTION_MS,
		"--heartbeat-ms", HEARTBEAT_MS,
		level != NULL && *level != '\0' ? "--log-level" : NULL,
		level != NULL && *level != '\0' ? level : NULL,
	};
	r->d.argv = make_argv(fixed, sizeof(fixed) / sizeof(fixed[0]), extra);
	free(pub);
}

/* Replica i's addresses (ports: Raft, client, watch) and its files in the directory. */
static void place(tc_cluster *c, int i, const int *ports)
{
	struct replica *r = &c->r[i];
	snprintf(r->d.what, sizeof(r->d.what), "replica %d", i + 1);
	snprintf(r->raft, sizeof(r->raft), "127.0.0.1:%d", ports[0]);
	snprintf(r->endpoint, sizeof(r->endpoint), "tcp://127.0.0.1:%d", ports[1]);
	snprintf(r->listen, sizeof(r->listen), "tcp://%s:%d",
	         c->listen_any ? "0.0.0.0" : "127.0.0.1", ports[1]);
	snprintf(r->watch, sizeof(r->watch), "tcp://127.0.0.1:%d", ports[2]);
	char name[24];
	snprintf(name, sizeof(name), "r%d", i + 1);
	r->data = tu_path(c->dir, name);
	snprintf(name, sizeof(name), "r%d.log", i + 1);
	r->d.log = tu_path(c->dir, name);
	snprintf(name, sizeof(name), "r%d.key", i + 1);
	r->key = tu_path(c->dir, name);
	make_key(r->key, r->pk);
}

/* Adds the puts registering a key (urn:snipe:key:<id>: pubkey, role, host) to b. */
static void put_key(rcds_batch *b, const char *pkhex, const char *role, const char *host)
{
	uint8_t pk[SNIPE_PK_BYTES];
	ck_assert_int_eq(snipe_pk_parse(pkhex, pk), SNIPE_OK);
	ck_assert_int_eq(rcds_batch_put_key(b, pk, role, host), SNIPE_OK);
}

/* Writes b as the admin and waits until every running replica has applied it. */
static uint64_t write_as_admin(tc_cluster *c, const rcds_batch *b, const char *what)
{
	char err[256] = "";
	uint64_t index = 0;
	rcds_client *admin = tc_cluster_client(c, -1, c->admin);
	int rc = rcds_write(admin, b, &index, err, sizeof(err));
	rcds_client_close(admin);
	if (rc != SNIPE_OK)
		tc_cluster_dump_logs(c, LOG_TAIL_LINES);
	ck_assert_msg(rc == SNIPE_OK, "%s: %s (%s)", what, snipe_errname(rc), err);
	if (tc_cluster_wait_all_applied(c, index, START_TIMEOUT_MS) != SNIPE_OK) {
		tc_cluster_dump_logs(c, LOG_TAIL_LINES);
		ck_abort_msg("%s: not applied everywhere within %d ms", what, START_TIMEOUT_MS);
	}
	return index;
}

/* The admin key as an admin (agents trust only keys the catalog lists) and every
 * replica's key as a replica (the leader signs its writes with it). */
static void register_identities(tc_cluster *c)
{
	char pk[SNIPE_PK_HEX];
	rcds_batch *b = NULL;
	ck_assert_int_eq(rcds_batch_new(&b), SNIPE_OK);
	snipe_pk_hex(snipe_key_public(c->admin), pk);
	put_key(b, pk, "admin", NULL);
	for (int i = 0; i < c->n; i++)
		put_key(b, c->r[i].pk, "replica", NULL);
	write_as_admin(c, b, "register the admin and replica keys");
	rcds_batch_free(b);
}

/* ---------------------------------------------------------------- lifecycle */

tc_cluster *tc_cluster_launch(const char *rcdsd, int replicas, const char *const *extra)
{
	const tc_cluster_opts o = {.extra = extra};
	return tc_cluster_launch_opts(rcdsd, replicas, &o);
}

tc_cluster *tc_cluster_launch_opts(const char *rcdsd, int replicas, const tc_cluster_opts *o)
{
	const char *const *extra = o != NULL ? o->extra : NULL;
	ck_assert_msg(replicas >= 1 && replicas <= TC_MAX_REPLICAS, "replicas: %d", replicas);
	tc_cluster *c = calloc(1, sizeof(*c));
	ck_assert_msg(c != NULL, "out of memory");
	c->n = replicas;
	c->listen_any = o != NULL && o->listen_any;
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
		spawn_daemon(&c->r[i].d, NULL);
	if (tc_cluster_wait_leader(c, START_TIMEOUT_MS) < 0) {
		tc_cluster_dump_logs(c, LOG_TAIL_LINES);
		ck_abort_msg("cluster: no leader agreed on within %d ms", START_TIMEOUT_MS);
	}
	register_identities(c);
	return c;
}

int tc_cluster_stop(tc_cluster *c)
{
	if (c == NULL)
		return 0;
	for (int i = 0; i < c->n; i++)
		close_status(&c->r[i]);
	check_running(c);
	struct daemon *ds[TC_MAX_AGENTS > TC_MAX_REPLICAS ? TC_MAX_AGENTS : TC_MAX_REPLICAS];
	/* agents first: they still reach the catalog while they stop */
	for (int i = 0; i < c->nagents; i++)
		ds[i] = &c->a[i].d;
	stop_daemons(c, ds, c->nagents);
	for (int i = 0; i < c->n; i++)
		ds[i] = &c->r[i].d;
	stop_daemons(c, ds, c->n);
	int bad = c->bad;
	if (bad > 0)
		tc_cluster_dump_logs(c, LOG_TAIL_LINES);
	registry_remove(c);
	for (int i = 0; i < c->n; i++) {
		free_daemon(&c->r[i].d);
		free(c->r[i].data);
		free(c->r[i].key);
	}
	for (int i = 0; i < c->nagents; i++) {
		free_daemon(&c->a[i].d);
		free(c->a[i].state);
		free(c->a[i].key);
		free(c->a[i].netns);
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
	close_status(&c->r[i]);
	kill_daemon(c, &c->r[i].d);
}

void tc_cluster_restart(tc_cluster *c, int i)
{
	ck_assert(i >= 0 && i < c->n);
	close_status(&c->r[i]);
	spawn_daemon(&c->r[i].d, NULL);
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

	rcds_batch *b = NULL;
	ck_assert_int_eq(rcds_batch_new(&b), SNIPE_OK);
	put_key(b, r->pk, "replica", NULL);
	write_as_admin(c, b, "register the new replica's key");
	rcds_batch_free(b);

	char *endpoints = xprintf("%s,%s", c->endpoints, r->endpoint);
	free(c->endpoints);
	c->endpoints = endpoints;
	c->n++;
	fprintf(stderr, "cluster: replica %d joins, raft %s, endpoint %s\n", i + 1, r->raft,
	        r->endpoint);
	spawn_daemon(&r->d, NULL);
	uint64_t deadline = tu_mono_ms() + START_TIMEOUT_MS;
	for (;;) {
		rcds_status st;
		check_running(c);
		if (tc_cluster_status(c, i, &st) == SNIPE_OK)
			return i;
		if (r->d.pid == 0 || tu_mono_ms() >= deadline)
			break;
		tu_sleep_ms(POLL_MS);
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
	return c->r[i].d.pid > 0;
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
	if (r->d.pid == 0)
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
		if (c->r[i].d.pid == 0)
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
	uint64_t deadline = tu_mono_ms() + (uint64_t)timeout_ms;
	for (;;) {
		check_running(c);
		int leader = agreed_leader(c);
		if (leader >= 0 || tu_mono_ms() >= deadline)
			return leader;
		tu_sleep_ms(POLL_MS);
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
	uint64_t deadline = tu_mono_ms() + (uint64_t)timeout_ms;
	for (;;) {
		rcds_status st;
		if (tc_cluster_status(c, i, &st) == SNIPE_OK && st.applied_index >= index)
			return SNIPE_OK;
		if (tu_mono_ms() >= deadline) {
			fprintf(stderr, "cluster: replica %d has not applied index %" PRIu64
			        " within %d ms\n", i + 1, index, timeout_ms);
			tc_cluster_dump_status(c);
			return SNIPE_ETIMEDOUT;
		}
		check_running(c);
		tu_sleep_ms(POLL_MS);
	}
}

int tc_cluster_wait_all_applied(tc_cluster *c, uint64_t index, int timeout_ms)
{
	uint64_t deadline = tu_mono_ms() + (uint64_t)timeout_ms;
	for (int i = 0; i < c->n; i++) {
		if (c->r[i].d.pid == 0)
			continue;
		uint64_t now = tu_mono_ms();
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
	char pk[SNIPE_PK_HEX], what[128];
	rcds_batch *b = NULL;
	snipe_pk_hex(snipe_key_public(key), pk);
	snprintf(what, sizeof(what), "register a key as %s", role);
	ck_assert_int_eq(rcds_batch_new(&b), SNIPE_OK);
	put_key(b, pk, role, host);
	uint64_t index = write_as_admin(c, b, what);
	rcds_batch_free(b);
	return index;
}

/* -------------------------------------------------------------------- logs */

/* Prints the last `lines` lines of the log at path, under a title. */
static void dump_tail(const char *what, const char *path, int lines)
{
	size_t len = 0;
	char *text = tu_slurp(path, &len);
	fprintf(stderr, "---- %s: last %d lines of %s\n", what, lines, path);
	if (text == NULL)
		return;
	size_t start = len;
	for (int seen = 0; start > 0; start--)
		if (text[start - 1] == '\n' && start != len && ++seen == lines)
			break;
	fputs(text + start, stderr);
	free(text);
}

void tc_cluster_dump_logs(const tc_cluster *c, int lines)
{
	for (int i = 0; i < c->n; i++)
		dump_tail(c->r[i].d.what, c->r[i].d.log, lines);
	for (int i = 0; i < c->nagents; i++)
		dump_tail(c->a[i].d.what, c->a[i].d.log, lines);
	fflush(stderr);
}

static bool file_contains(const char *path, const char *text)
{
	char *all = tu_slurp(path, NULL);
	bool found = all != NULL && strstr(all, text) != NULL;
	free(all);
	return found;
}

bool tc_cluster_log_contains(const tc_cluster *c, int i, const char *text)
{
	ck_assert(i >= 0 && i < c->n);
	return file_contains(c->r[i].d.log, text);
}

void tc_wait_line(const tc_cluster *c, const char *path, const char *prefix, int timeout_ms,
                  char *out, size_t len)
{
	uint64_t deadline = tu_mono_ms() + (uint64_t)timeout_ms;
	for (;;) {
		char *text = tu_slurp(path, NULL);
		bool found = tu_find_line(text, prefix, out, len);
		if (!found && text != NULL && tu_mono_ms() >= deadline)
			fprintf(stderr, "--- %s ---\n%s", path, text);
		free(text);
		if (found)
			return;
		if (tu_mono_ms() >= deadline)
			break;
		tu_sleep_ms(POLL_MS);
	}
	tc_cluster_dump_logs(c, LOG_TAIL_LINES);
	ck_abort_msg("no line '%s...' in %s after %d ms", prefix, path, timeout_ms);
}

/* ------------------------------------------------------------------ agents */

/* Waits until the catalog records agent i's host up, registered at or after since_ms
 * (wall clock): this run of it has registered and its lease is recorded. */
static void wait_host_up(tc_cluster *c, int i, uint64_t since_ms)
{
	struct agent *h = &c->a[i];
	char urn[SNIPE_URN_MAX];
	snprintf(urn, sizeof(urn), "urn:snipe:host:%s", h->name);
	rcds_client *cl = tc_cluster_client(c, -1, c->admin);
	rcds_client_set_timeout(cl, 1000);
	rcds_client_set_leader_reads(cl, true);
	uint64_t deadline = tu_mono_ms() + START_TIMEOUT_MS;
	char state[16] = "", last[256] = "no answer yet";
	for (;;) {
		rcds_list l = {0};
		uint64_t registered = 0;
		state[0] = '\0';
		int rc = rcds_get(cl, urn, &l, last, sizeof(last));
		for (size_t k = 0; rc == SNIPE_OK && k < l.count; k++) {
			const char *v = (const char *)l.items[k].value;
			if (strcmp(l.items[k].attr, "state") == 0)
				snprintf(state, sizeof(state), "%s", v);
			else if (strcmp(l.items[k].attr, "registered_ms") == 0)
				registered = strtoull(v, NULL, 10);
		}
		rcds_list_free(&l);
		if (rc == SNIPE_OK)
			snprintf(last, sizeof(last), "state '%s', registered_ms %llu (since %llu)", state,
			         (unsigned long long)registered, (unsigned long long)since_ms);
		if (rc == SNIPE_OK && strcmp(state, "up") == 0 && registered >= since_ms) {
			rcds_client_close(cl);
			return;
		}
		check_running(c);
		if (h->d.pid == 0 || tu_mono_ms() >= deadline)
			break;
		tu_sleep_ms(POLL_MS);
	}
	rcds_client_close(cl);
	tc_cluster_dump_logs(c, LOG_TAIL_LINES);
	ck_abort_msg("cluster: %s %s within %d ms: %s", h->d.what,
	             h->d.pid == 0 ? "ended before its host was up" : "did not come up",
	             START_TIMEOUT_MS, last);
}

/* Agent i's --catalog: the replicas' client ports at address (NULL: the endpoints). */
static char *agent_catalog(tc_cluster *c, const char *address)
{
	if (address == NULL)
		return xstrdup(c->endpoints);
	size_t cap = (size_t)c->n * 64, used = 0;
	char *list = calloc(1, cap);
	ck_assert_msg(list != NULL, "out of memory");
	for (int i = 0; i < c->n; i++) {
		const char *port = strrchr(c->r[i].endpoint, ':') + 1;
		used += (size_t)snprintf(list + used, cap - used, "%stcp://%s:%s", i ? "," : "",
		                         address, port);
	}
	return list;
}

int tc_agent_launch(tc_cluster *c, const char *agentd, const char *name,
                    const tc_agent_opts *o)
{
	static const tc_agent_opts none = {0};
	o = o != NULL ? o : &none;
	ck_assert_msg(c->nagents < TC_MAX_AGENTS, "cluster: already %d agents", c->nagents);
	ck_assert_msg(strlen(name) > 0 && strlen(name) <= SNIPE_URN_NAME_MAX &&
	              strchr(name, '/') == NULL, "agent name '%s': 1-%d characters, no '/'", name,
	              SNIPE_URN_NAME_MAX);
	for (int k = 0; k < c->nagents; k++)
		ck_assert_msg(strcmp(c->a[k].name, name) != 0, "cluster: agent %s exists", name);
	int i = c->nagents, port;
	struct agent *h = &c->a[i];
	*h = (struct agent){0};
	snprintf(h->name, sizeof(h->name), "%s", name);
	snprintf(h->d.what, sizeof(h->d.what), "agent %s", name);
	char *file = xprintf("host-%s.key", name);
	h->key = tu_path(c->dir, file);
	free(file);
	file = xprintf("host-%s.log", name);
	h->d.log = tu_path(c->dir, file);
	free(file);
	file = xprintf("host-%s", name);
	h->state = tu_path(c->dir, file);
	free(file);
	h->netns = o->netns != NULL ? xstrdup(o->netns) : NULL;

	char pk[SNIPE_PK_HEX], what[256];
	make_key(h->key, pk);
	rcds_batch *b = NULL;
	ck_assert_int_eq(rcds_batch_new(&b), SNIPE_OK);
	put_key(b, pk, "host", name);
	snprintf(what, sizeof(what), "register the key of host %s", name);
	write_as_admin(c, b, what);
	rcds_batch_free(b);

	int ports[2];
	pick_ports(c, ports, 2);
	port = ports[0];
	snprintf(h->endpoint, sizeof(h->endpoint), "tcp://%s:%d",
	         o->address != NULL ? o->address : "127.0.0.1", port);
	snprintf(h->msg_endpoint, sizeof(h->msg_endpoint), "tcp://%s:%d",
	         o->address != NULL ? o->address : "127.0.0.1", ports[1]);
	char *catalog = agent_catalog(c, o->catalog_address);
	const char *level = getenv("SNIPE_TEST_LOG_LEVEL");
	const char *fixed[] = {
		agentd, "-d", "--name", name, "--catalog", catalog, "--key", h->key,
		"--listen", h->endpoint, "--msg-listen", h->msg_endpoint, "--state", h->state,
		level != NULL && *level != '\0' ? "--log-level" : NULL,
		level != NULL && *level != '\0' ? level : NULL,
	};
	h->d.argv = make_argv(fixed, sizeof(fixed) / sizeof(fixed[0]), o->extra);
	free(catalog);
	c->nagents++;
	fprintf(stderr, "cluster: agent %s, listen %s%s%s\n", name, h->endpoint,
	        h->netns != NULL ? " in netns " : "", h->netns != NULL ? h->netns : "");
	tc_agent_restart(c, i);
	return i;
}

const char *tc_agent_endpoint(const tc_cluster *c, int i)
{
	ck_assert(i >= 0 && i < c->nagents);
	return c->a[i].endpoint;
}

const char *tc_agent_msg_endpoint(const tc_cluster *c, int i)
{
	ck_assert(i >= 0 && i < c->nagents);
	return c->a[i].msg_endpoint;
}

pid_t tc_agent_pid(tc_cluster *c, int i)
{
	ck_assert(i >= 0 && i < c->nagents);
	check_running(c);
	return c->a[i].d.pid;
}

void tc_agent_kill(tc_cluster *c, int i)
{
	ck_assert(i >= 0 && i < c->nagents);
	kill_daemon(c, &c->a[i].d);
}

/* The state letter of /proc/PID/stat (R, S, T, Z ...), or 0 if it cannot be read. */
static char proc_state(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	size_t n = f != NULL ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
	if (f != NULL)
		fclose(f);
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');
	return p != NULL && p[1] == ' ' ? p[2] : 0;
}

void tc_agent_signal(tc_cluster *c, int i, int sig)
{
	ck_assert(i >= 0 && i < c->nagents);
	struct agent *h = &c->a[i];
	ck_assert_msg(h->d.pid > 0, "cluster: %s is not running", h->d.what);
	ck_assert_msg(kill(h->d.pid, sig) == 0, "kill %s: %s", h->d.what, strerror(errno));
	if (sig != SIGSTOP && sig != SIGCONT)
		return;
	uint64_t deadline = tu_mono_ms() + SIGNAL_TIMEOUT_MS;
	for (;;) {
		char st = proc_state(h->d.pid);
		bool stopped = st == 'T' || st == 't';
		if (stopped == (sig == SIGSTOP))
			return;
		ck_assert_msg(tu_mono_ms() < deadline, "cluster: %s is still in state %c %d ms after "
		              "signal %d", h->d.what, st ? st : '?', SIGNAL_TIMEOUT_MS, sig);
		tu_sleep_ms(1);
	}
}

void tc_agent_restart(tc_cluster *c, int i)
{
	ck_assert(i >= 0 && i < c->nagents);
	uint64_t since = snipe_now_ms();
	spawn_daemon(&c->a[i].d, c->a[i].netns);
	wait_host_up(c, i, since);
}

bool tc_agent_log_contains(const tc_cluster *c, int i, const char *text)
{
	ck_assert(i >= 0 && i < c->nagents);
	return file_contains(c->a[i].d.log, text);
}

/* ------------------------------------------------------- process records */

#define TC_LOG_LINES 40
#define TC_POLL_MS 20

void tc_proc_get(rcds_client *cl, const char *urn, snipe_proc_info *out)
{
	char err[256] = "";
	int rc = snipe_proc_get(cl, urn, out, err, sizeof(err));
	ck_assert_msg(rc == SNIPE_OK, "get %s: %s (%s)", urn, snipe_errname(rc), err);
}

void tc_wait_ended(tc_cluster *c, rcds_client *cl, const char *urn, int timeout_ms,
                   snipe_proc_info *out)
{
	char err[256] = "";
	int rc = snipe_wait(cl, urn, timeout_ms, out, err, sizeof(err));
	if (rc != SNIPE_OK)
		tc_cluster_dump_logs(c, TC_LOG_LINES);
	ck_assert_msg(rc == SNIPE_OK, "wait %s: %s (%s)", urn, snipe_errname(rc), err);
}

void tc_wait_running_on(tc_cluster *c, rcds_client *cl, const char *urn, const char *host,
                        uint64_t epoch, int timeout_ms, snipe_proc_info *out)
{
	uint64_t deadline = tu_mono_ms() + (uint64_t)timeout_ms;
	for (;;) {
		tc_proc_get(cl, urn, out);
		if (strcmp(out->state, "running") == 0 && strcmp(out->host, host) == 0 &&
		    out->epoch == epoch)
			return;
		if (tu_mono_ms() >= deadline)
			break;
		tu_sleep_ms(TC_POLL_MS);
	}
	tc_cluster_dump_logs(c, TC_LOG_LINES);
	ck_abort_msg("%s is %s on '%s' at epoch %" PRIu64 " after %d ms, not running on %s at "
	             "epoch %" PRIu64, urn, out->state, out->host, out->epoch, timeout_ms, host,
	             epoch);
}
