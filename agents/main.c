/*
 * main.c — snipe-agentd, the host agent: reads its configuration ([agent] section of
 * an ini file, then flags), forks the watchdog, registers the host in the catalog,
 * and runs the loop (requests, children) with the heartbeat thread beside it.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "blocks.h"
#include "msg.h"
#include "sni.h"

#define REGISTER_RETRY_MS 500

static const char *const known_keys[] = {
	"name", "catalog", "key", "listen", "state", "labels", "heartbeat_ms", "lease_ms",
	"backoff_ms", "backoff_max_ms", "fence", "cores", "memory_mb", "log_level",
	"ckpt_copies", "ckpt_keep", "msg_listen", "msg_timeout_ms", "msg_buffer", NULL,
};

/* Flag names, in the order of their getopt values 1.. (ini key: '-' becomes '_'). */
static const char *const flag_names[] = {
	NULL, "name", "catalog", "key", "listen", "state", "labels", "heartbeat-ms", "lease-ms",
	"backoff-ms", "backoff-max-ms", "fence", "cores", "memory-mb", "log-level",
	"ckpt-copies", "ckpt-keep", "msg-listen", "msg-timeout-ms", "msg-buffer",
};
#define NFLAGS ((int)(sizeof(flag_names) / sizeof(flag_names[0])))

static void usage(FILE *to)
{
	fprintf(to,
	        "usage: snipe-agentd [--config FILE] --name NAME --catalog ENDPOINTS --key FILE\n"
	        "                    --listen ENDPOINT --state DIR [--labels k=v,...] [-d] [-n]\n"
	        "The SNIPE host agent: registers this host in the catalog, keeps its lease,\n"
	        "and runs the processes the catalog assigns to it. Flags override the [agent]\n"
	        "section of FILE.\n"
	        "  --name NAME          this host's name (urn:snipe:host:NAME)\n"
	        "  --catalog LIST       catalog replica endpoints, comma-separated\n"
	        "  --key FILE           this host's key (registered with role host for NAME)\n"
	        "  --listen ENDPOINT    where clients reach this agent, e.g. tcp://10.0.0.5:7500\n"
	        "  --state DIR          logs, working directories and pid records\n"
	        "  --labels k=v,...     labels processes may ask for\n"
	        "  --heartbeat-ms N     lease renewal period (default 200)\n"
	        "  --lease-ms N         lease length (default 1000; at least 2 heartbeats)\n"
	        "  --backoff-ms N       first restart delay (default 100), doubling up to\n"
	        "  --backoff-max-ms N   (default 30000)\n"
	        "  --fence yes|no       kill the processes when the lease lapses (default yes)\n"
	        "  --cores N, --memory-mb N   what to advertise (default: this machine's)\n"
	        "  --ckpt-copies N      agents holding a checkpoint before it counts (default 2)\n"
	        "  --ckpt-keep N        checkpoints kept per process (default 2)\n"
	        "  --msg-listen ENDPOINT  where other agents send messages (default: --listen's\n"
	        "                       port + 1)\n"
	        "  --msg-timeout-ms N   give up on a message to a URN that names no running\n"
	        "                       process after N ms (default 5000)\n"
	        "  --msg-buffer N       messages kept per sender and receiver until the\n"
	        "                       receiver no longer needs them (default 4096)\n"
	        "  --log-level LEVEL    debug, info, warn or error\n"
	        "  -d                   stay in the foreground (otherwise: daemon, log to "
	        "DIR/agentd.log)\n"
	        "  -n                   check the configuration and exit\n");
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("snipe-agentd: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return -1;
}

/* ------------------------------------------------------------ configuration */

static int number(const snipe_config *cfg, const char *key, uint64_t min, uint64_t max,
                  uint64_t def, uint32_t *out)
{
	const char *v = snipe_config_get(cfg, "agent", key);
	uint64_t n = def;
	if (v != NULL && snipe_parse_u64(v, min, max, &n) != SNIPE_OK)
		return fail("%s: '%s' must be a number from %llu to %llu", key, v,
		            (unsigned long long)min, (unsigned long long)max);
	*out = (uint32_t)n;
	return 0;
}

static const char *required(const snipe_config *cfg, const char *key, int *bad)
{
	const char *v = snipe_config_get(cfg, "agent", key);
	if (v == NULL || *v == '\0') {
		fail("%s is required (flag --%s or [agent] %s)", key, key, key);
		*bad = 1;
	}
	return v;
}

/* "k=v,k=v": each k and v 1-64 characters of [A-Za-z0-9._/-]. */
static int check_labels(const char *labels)
{
	if (labels[0] == '\0')
		return 0;
	const char *p = labels;
	while (*p != '\0') {
		size_t k = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._/-");
		if (k == 0 || k > 64 || p[k] != '=')
			return fail("labels: '%s' is not k=v,k=v (at '%s')", labels, p);
		p += k + 1;
		size_t v = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._/-");
		if (v == 0 || v > 64 || (p[v] != ',' && p[v] != '\0'))
			return fail("labels: '%s' is not k=v,k=v (at '%s')", labels, p);
		p += v + (p[v] == ',');
	}
	return 0;
}

/* The message endpoint: given (tcp://), or the --listen port + 1. */
static int msg_listen(const snipe_config *cfg, agent_settings *st)
{
	static char derived[300];
	const char *v = snipe_config_get(cfg, "agent", "msg_listen");
	if (v != NULL && *v != '\0') {
		if (strncmp(v, "tcp://", 6) != 0)
			return fail("msg_listen: '%s' is not a tcp:// endpoint", v);
		st->msg_listen = v;
		return 0;
	}
	const char *colon = strrchr(st->listen, ':');
	uint64_t port = 0;
	if (strncmp(st->listen, "tcp://", 6) != 0 || colon == NULL ||
	    snipe_parse_u64(colon + 1, 1, 65534, &port) != SNIPE_OK)
		return fail("msg_listen is required when listen (%s) is not tcp://HOST:PORT",
		            st->listen);
	snprintf(derived, sizeof(derived), "%.*s:%llu", (int)(colon - st->listen), st->listen,
	         (unsigned long long)port + 1);
	st->msg_listen = derived;
	return 0;
}

static int settle(const snipe_config *cfg, agent_settings *st)
{
	char err[512];
	int bad = 0;
	if (snipe_config_check(cfg, "agent", known_keys, err, sizeof(err)) != SNIPE_OK)
		return fail("%s", err);
	st->name = required(cfg, "name", &bad);
	st->catalog = required(cfg, "catalog", &bad);
	st->key_path = required(cfg, "key", &bad);
	st->listen = required(cfg, "listen", &bad);
	st->state = required(cfg, "state", &bad);
	if (bad)
		return -1;
	snipe_urn u;
	if (snipe_urn_make(SNIPE_KIND_HOST, st->name, &u, err, sizeof(err)) != SNIPE_OK)
		return fail("name: %s", err);
	if (strncmp(st->listen, "tcp://", 6) != 0 && strncmp(st->listen, "ipc://", 6) != 0)
		return fail("listen: '%s' is not a tcp:// or ipc:// endpoint", st->listen);
	if (msg_listen(cfg, st) != 0)
		return -1;
	const char *labels = snipe_config_get(cfg, "agent", "labels");
	st->labels = labels != NULL ? labels : "";
	if (check_labels(st->labels) != 0)
		return -1;
	const char *level = snipe_config_get(cfg, "agent", "log_level");
	snipe_log_level lvl;
	if (level != NULL && snipe_log_parse_level(level, &lvl) != SNIPE_OK)
		return fail("log_level: '%s' is not debug, info, warn or error", level);
	if (level != NULL)
		snipe_log_set_level(lvl);
	const char *fence = snipe_config_get(cfg, "agent", "fence");
	st->fence = true;
	if (fence != NULL && snipe_parse_bool(fence, &st->fence) != SNIPE_OK)
		return fail("fence: '%s' is not yes or no", fence);
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	struct sysinfo si;
	uint64_t mem = sysinfo(&si) == 0 ? (uint64_t)si.totalram * si.mem_unit >> 20 : 1024;
	if (number(cfg, "heartbeat_ms", 10, 60000, 200, &st->heartbeat_ms) != 0 ||
	    number(cfg, "lease_ms", 100, 600000, 1000, &st->lease_ms) != 0 ||
	    number(cfg, "backoff_ms", 1, 3600000, 100, &st->backoff_ms) != 0 ||
	    number(cfg, "backoff_max_ms", 1, 3600000, 30000, &st->backoff_max_ms) != 0 ||
	    number(cfg, "cores", 1, 65536, cores > 0 ? (uint64_t)cores : 1, &st->cores) != 0 ||
	    number(cfg, "memory_mb", 1, UINT32_MAX, mem, &st->memory_mb) != 0 ||
	    number(cfg, "ckpt_copies", 1, 16, 2, &st->ckpt_copies) != 0 ||
	    number(cfg, "ckpt_keep", 1, 1000, 2, &st->ckpt_keep) != 0 ||
	    number(cfg, "msg_timeout_ms", 10, 3600000, 5000, &st->msg_timeout_ms) != 0 ||
	    number(cfg, "msg_buffer", 16, 1u << 20, 4096, &st->msg_buffer) != 0)
		return -1;
	if (st->lease_ms < 2 * st->heartbeat_ms)
		return fail("lease_ms (%u) must be at least twice heartbeat_ms (%u)", st->lease_ms,
		            st->heartbeat_ms);
	if (st->backoff_max_ms < st->backoff_ms)
		return fail("backoff_max_ms (%u) is below backoff_ms (%u)", st->backoff_max_ms,
		            st->backoff_ms);
	return 0;
}

static int load_config(int argc, char **argv, snipe_config **cfg, bool *foreground,
                       bool *check_only)
{
	struct option opts[NFLAGS + 2];
	const char *flags[NFLAGS];
	const char *path = NULL;
	memset(flags, 0, sizeof(flags));
	for (int i = 1; i < NFLAGS; i++)
		opts[i - 1] = (struct option){flag_names[i], required_argument, NULL, i};
	opts[NFLAGS - 1] = (struct option){"config", required_argument, NULL, 'c'};
	opts[NFLAGS] = (struct option){"help", no_argument, NULL, 'h'};
	opts[NFLAGS + 1] = (struct option){0};
	int opt;
	while ((opt = getopt_long(argc, argv, "c:dnh", opts, NULL)) != -1) {
		if (opt >= 1 && opt < NFLAGS)
			flags[opt] = optarg;
		else if (opt == 'c')
			path = optarg;
		else if (opt == 'd')
			*foreground = true;
		else if (opt == 'n')
			*check_only = true;
		else if (opt == 'h') {
			usage(stdout);
			exit(0);
		} else {
			usage(stderr);
			return -1;
		}
	}
	if (optind != argc)
		return fail("unexpected argument '%s'", argv[optind]);
	char err[512];
	int rc = path != NULL ? snipe_config_load(path, cfg, err, sizeof(err))
	                      : snipe_config_new(cfg);
	if (rc != SNIPE_OK)
		return fail("%s", path != NULL ? err : snipe_strerror(rc));
	for (int i = 1; i < NFLAGS; i++) {
		char key[32];
		if (flags[i] == NULL)
			continue;
		snprintf(key, sizeof(key), "%s", flag_names[i]);
		for (char *p = key; *p != '\0'; p++)
			*p = *p == '-' ? '_' : *p;
		if (snipe_config_set(*cfg, "agent", key, flags[i]) != SNIPE_OK)
			return fail("out of memory");
	}
	return 0;
}

/* ------------------------------------------------------------------ running */

static int make_dirs(const char *state)
{
	const char *const sub[] = {"", "/logs", "/run", "/work"};
	for (size_t i = 0; i < sizeof(sub) / sizeof(sub[0]); i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s%s", state, sub[i]);
		if (mkdir(path, 0700) != 0 && errno != EEXIST)
			return fail("cannot create %s: %s", path, strerror(errno));
	}
	return 0;
}

static int daemonize(const char *state)
{
	char path[4096], err[4200];
	snprintf(path, sizeof(path), "%s/agentd.log", state);
	return sni_daemonize(path, err, sizeof(err)) == SNIPE_OK ? 0 : fail("%s", err);
}

/* Registers the host, retrying while the catalog is unreachable; a refusal is final. */
static int register_host(agent *a)
{
	rcds_client *c = NULL;
	char err[512];
	if (rcds_client_open(a->cfg->catalog, a->key, &c, err, sizeof(err)) != SNIPE_OK)
		return fail("catalog: %s", err);
	uint64_t last_log = 0;
	int rc;
	while ((rc = agent_register(a, c, err, sizeof(err))) == SNIPE_EUNAVAIL ||
	       rc == SNIPE_ETIMEDOUT) {
		if (sni_mono_ms() - last_log > 5000) {
			snipe_log(SNIPE_LOG_WARN, "agentd", "catalog unreachable, retrying: %s", err);
			last_log = sni_mono_ms();
		}
		struct timespec ts = {0, REGISTER_RETRY_MS * 1000000L};
		nanosleep(&ts, NULL);
	}
	rcds_client_close(c);
	if (rc != SNIPE_OK)
		return fail("cannot register %s: %s", a->host_urn, err);
	return 0;
}

static void take_assigned(uv_async_t *h)
{
	agent *a = h->data;
	rcds_lease_reply r = {0};
	pthread_mutex_lock(&a->assigned_mu);
	if (a->assigned_fresh) {
		r = a->assigned;
		memset(&a->assigned, 0, sizeof(a->assigned));
		a->assigned_fresh = false;
	}
	pthread_mutex_unlock(&a->assigned_mu);
	agent_assigned(a, &r);
	rcds_lease_reply_clear(&r);
}

static uv_signal_t sigterm, sigint;

static void close_handle(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/* Stops everything: the heartbeat thread first (it signals the loop), then the
 * children, then every handle; the loop ends once catalog calls in flight are done. */
static void on_signal(uv_signal_t *h, int signum)
{
	agent *a = h->data;
	if (atomic_load(&a->stopping))
		return;
	snipe_log(SNIPE_LOG_INFO, "agentd", "stopping signal=%d: killing the processes", signum);
	agent_heartbeat_stop(a);
	agent_kill_all(a);
	agent_server_close(a);
	agent_msg_close(a);
	uv_walk(a->loop, close_handle, NULL);
}

static int run(agent_settings *st, bool foreground)
{
	static agent a; /* lives as long as the process */
	char err[512];
	uv_loop_t loop;
	a.cfg = st;
	a.sock = -1;
	snprintf(a.host_urn, sizeof(a.host_urn), SNI_HOST_PREFIX "%s", st->name);
	if (make_dirs(st->state) != 0 || (!foreground && daemonize(st->state) != 0))
		return -1;
	if (snipe_key_load(st->key_path, &a.key, err, sizeof(err)) != SNIPE_OK)
		return fail("key: %s", err);
	/* before any thread: the watchdog is a fork of this process */
	if (agent_watchdog_start(&a, err, sizeof(err)) != SNIPE_OK)
		return fail("%s", err);
	int orphans = agent_kill_orphans(&a);
	if (orphans > 0)
		snipe_log(SNIPE_LOG_WARN, "agentd", "killed %d processes left by an earlier run",
		          orphans);
	uv_loop_init(&loop);
	a.loop = &loop;
	pthread_mutex_init(&a.pool_mu, NULL);
	pthread_mutex_init(&a.assigned_mu, NULL);
	snprintf(err, sizeof(err), "%s/blocks", st->state);
	char path[4200];
	snprintf(path, sizeof(path), "%s", err);
	if (agent_blocks_open(path, &a.blocks, err, sizeof(err)) != SNIPE_OK)
		return fail("%s", err);
	if (agent_server_start(&a, err, sizeof(err)) != SNIPE_OK ||
	    agent_msg_start(&a, err, sizeof(err)) != SNIPE_OK)
		return fail("%s", err);
	if (register_host(&a) != 0)
		return -1;
	uv_async_init(&loop, &a.assigned_async, take_assigned);
	a.assigned_async.data = &a;
	if (agent_heartbeat_start(&a, err, sizeof(err)) != SNIPE_OK)
		return fail("%s", err);
	agent_ckpt_start(&a);
	uv_signal_init(&loop, &sigterm);
	uv_signal_init(&loop, &sigint);
	sigterm.data = sigint.data = &a;
	uv_signal_start(&sigterm, on_signal, SIGTERM);
	uv_signal_start(&sigint, on_signal, SIGINT);
	snipe_log(SNIPE_LOG_INFO, "agentd", "started host=%s listen=%s lease=%ums heartbeat=%ums "
	          "fence=%s", st->name, st->listen, st->lease_ms, st->heartbeat_ms,
	          st->fence ? "on" : "off");
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	agent_free(&a);
	snipe_log(SNIPE_LOG_INFO, "agentd", "stopped");
	return 0;
}

int main(int argc, char **argv)
{
	snipe_log_set_ident("snipe-agentd");
	agent_watchdog_exec_main(argc, argv); /* returns unless this is the watchdog */
	signal(SIGPIPE, SIG_IGN);
	snipe_config *cfg = NULL;
	bool foreground = false, check_only = false;
	agent_settings st = {0};
	int rc = load_config(argc, argv, &cfg, &foreground, &check_only);
	if (rc == 0)
		rc = settle(cfg, &st);
	if (rc == 0 && check_only) {
		snipe_key *k = NULL;
		char err[512];
		if (snipe_key_load(st.key_path, &k, err, sizeof(err)) != SNIPE_OK)
			rc = fail("key: %s", err);
		snipe_key_free(k);
	}
	if (rc == 0 && check_only)
		printf("snipe-agentd: configuration ok (host %s, lease %u ms, heartbeat %u ms)\n",
		       st.name, st.lease_ms, st.heartbeat_ms);
	else if (rc == 0)
		rc = run(&st, foreground);
	snipe_config_free(cfg);
	return rc == 0 ? 0 : 1;
}
