/*
 * main.c — rcdsd, one replica of the resource catalog: reads its configuration
 * (ini [catalog] section, then flags), opens the store, serves clients and joins the
 * Raft group. Everything else is in store.c, consensus.c and server.c.
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
#include <unistd.h>
#include <uv.h>

#include "consensus.h"
#include "server.h"
#include "sni.h"
#include "store.h"

#define MAX_PEERS 9

static const char *const known_keys[] = {
	"id", "data", "raft", "listen", "watch", "peers", "admin_key", "election_ms", "heartbeat_ms",
	"snapshot_threshold", "skew_ms", "log_level", "join", "cluster_key", "key", NULL,
};

struct settings {
	uint64_t id;
	const char *data, *raft, *listen, *watch;
	uint8_t admin_pk[SNIPE_PK_BYTES];
	rcds_peer peers[MAX_PEERS];
	size_t npeers;
	uint64_t election_ms, heartbeat_ms, snapshot_threshold, skew_ms;
	bool join; /* joins a running group instead of bootstrapping one */
	bool have_secret;
	uint8_t secret[32]; /* from the cluster key: the replicas prove it to each other */
	snipe_key *key; /* this replica's own key (role replica): signs lease transitions */
};

static void usage(FILE *to)
{
	fprintf(to,
	        "usage: rcdsd [--config FILE] [--id N] [--data DIR] [--raft HOST:PORT]\n"
	        "             [--listen ENDPOINT] [--peers ID=HOST:PORT,...] "
	        "[--admin-key PUBKEY] [--join] [-d] [-n]\n"
	        "One replica of the SNIPE resource catalog. Flags override the [catalog] "
	        "section of FILE.\n"
	        "  --id N             this replica's Raft id (1..2^63)\n"
	        "  --data DIR         where the database and Raft log live\n"
	        "  --raft HOST:PORT   this replica's Raft address\n"
	        "  --listen ENDPOINT  client endpoint, e.g. tcp://127.0.0.1:7400\n"
	        "  --watch ENDPOINT   publish applied changes here (optional)\n"
	        "  --peers LIST       the initial members, id=host:port (this one may be "
	        "omitted)\n"
	        "  --admin-key HEX    the cluster's trust root (64 hex digits, or a .pub file)\n"
	        "  --join             join a running group (ini: join = true): do not bootstrap;\n"
	        "                     wait to be added with 'snipe catalog add ID HOST:PORT'\n"
	        "  --election-ms N    Raft election timeout (default 150; a new leader writes\n"
	        "                     about twice this after a crash)\n"
	        "  --heartbeat-ms N   Raft heartbeat (default 50)\n"
	        "  --snapshot-threshold N, --skew-ms N\n"
	        "  -d                 stay in the foreground (otherwise: daemon, log to "
	        "DIR/rcdsd.log)\n"
	        "  --cluster-key FILE a key file shared by the replicas (snipe keygen): they\n"
	        "                     prove it to each other before any Raft traffic\n"
	        "  --key FILE         this replica's key (snipe keygen; registered with role\n"
	        "                     replica): it signs host up/down and process moves as leader\n"
	        "  -n                 check the configuration and exit\n");
}

/* ------------------------------------------------------------ configuration */

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("rcdsd: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return -1;
}

static int parse_peers(const char *list, struct settings *st)
{
	char *copy = strdup(list), *save = NULL;
	int rc = copy != NULL ? 0 : -1;
	for (char *tok = strtok_r(copy, ",", &save); tok != NULL && rc == 0;
	     tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		uint64_t id = 0;
		if (eq == NULL || (*eq = '\0', snipe_parse_u64(tok, 1, INT64_MAX, &id)) != SNIPE_OK ||
		    strlen(eq + 1) == 0 || strlen(eq + 1) >= sizeof(st->peers[0].address) ||
		    strchr(eq + 1, ':') == NULL)
			rc = fail("peers: '%s' is not ID=HOST:PORT", eq != NULL ? (*eq = '=', tok) : tok);
		else if (st->npeers == MAX_PEERS)
			rc = fail("peers: at most %d members", MAX_PEERS);
		else {
			st->peers[st->npeers].id = id;
			snprintf(st->peers[st->npeers].address, sizeof(st->peers[0].address), "%s",
			         eq + 1);
			st->npeers++;
		}
	}
	free(copy);
	return rc;
}

static int parse_admin_key(const char *v, uint8_t *pk)
{
	if (snipe_pk_parse(v, pk) == SNIPE_OK)
		return 0;
	char text[SNIPE_PK_HEX + 2] = {0};
	FILE *f = fopen(v, "r");
	size_t n = f != NULL ? fread(text, 1, sizeof(text) - 1, f) : 0;
	if (f != NULL)
		fclose(f);
	if (n > 0 && text[n - 1] == '\n')
		text[n - 1] = '\0';
	if (snipe_pk_parse(text, pk) != SNIPE_OK)
		return fail("admin_key: '%s' is neither 64 hex digits nor a file holding them", v);
	return 0;
}

static int number(const snipe_config *cfg, const char *key, uint64_t min, uint64_t max,
                  uint64_t def, uint64_t *out)
{
	const char *v = snipe_config_get(cfg, "catalog", key);
	*out = def;
	if (v == NULL)
		return 0;
	int rc = snipe_parse_u64(v, min, max, out);
	if (rc != SNIPE_OK)
		return fail("%s: '%s' must be a number from %llu to %llu", key, v,
		            (unsigned long long)min, (unsigned long long)max);
	return 0;
}

static const char *required(const snipe_config *cfg, const char *key, int *bad)
{
	const char *v = snipe_config_get(cfg, "catalog", key);
	if (v == NULL || *v == '\0') {
		char flag[32];
		snprintf(flag, sizeof(flag), "%s", key);
		for (char *p = flag; *p != '\0'; p++)
			*p = *p == '_' ? '-' : *p;
		fail("%s is required (flag --%s or [catalog] %s)", key, flag, key);
		*bad = 1;
	}
	return v;
}

/* The cluster key: a key file (snipe keygen) shared by the replicas, private like any
 * key; what they prove to each other is derived from it. */
static int load_cluster_key(const char *path, struct settings *st)
{
	snipe_key *k = NULL;
	char err[512];
	if (snipe_key_load(path, &k, err, sizeof(err)) != SNIPE_OK)
		return fail("cluster_key: %s", err);
	snipe_key_derive(k, "snipe/raft-secret/v1", st->secret);
	snipe_key_free(k);
	st->have_secret = true;
	return 0;
}

/* Adds this replica to the peers if the list leaves it out; checks it agrees if not. */
static int add_self(struct settings *st)
{
	for (size_t i = 0; i < st->npeers; i++) {
		if (st->peers[i].id != st->id)
			continue;
		if (strcmp(st->peers[i].address, st->raft) != 0)
			return fail("peers give replica %llu the address %s, but --raft is %s",
			            (unsigned long long)st->id, st->peers[i].address, st->raft);
		return 0;
	}
	if (st->npeers == MAX_PEERS)
		return fail("peers: at most %d members", MAX_PEERS);
	st->peers[st->npeers].id = st->id;
	snprintf(st->peers[st->npeers].address, sizeof(st->peers[0].address), "%s", st->raft);
	st->npeers++;
	return 0;
}

static int settle(const snipe_config *cfg, struct settings *st)
{
	char err[512];
	if (snipe_config_check(cfg, "catalog", known_keys, err, sizeof(err)) != SNIPE_OK)
		return fail("%s", err);
	int bad = 0;
	const char *id = required(cfg, "id", &bad);
	st->data = required(cfg, "data", &bad);
	st->raft = required(cfg, "raft", &bad);
	st->listen = required(cfg, "listen", &bad);
	st->watch = snipe_config_get(cfg, "catalog", "watch");
	const char *admin = required(cfg, "admin_key", &bad);
	if (bad)
		return -1;
	if (snipe_parse_u64(id, 1, INT64_MAX, &st->id) != SNIPE_OK)
		return fail("id: '%s' must be a number from 1 to %lld", id, (long long)INT64_MAX);
	if (strchr(st->raft, ':') == NULL || strlen(st->raft) >= sizeof(st->peers[0].address))
		return fail("raft: '%s' is not HOST:PORT", st->raft);
	const char *level = snipe_config_get(cfg, "catalog", "log_level");
	snipe_log_level lvl;
	if (level != NULL && snipe_log_parse_level(level, &lvl) != SNIPE_OK)
		return fail("log_level: '%s' is not debug, info, warn or error", level);
	if (level != NULL)
		snipe_log_set_level(lvl);
	const char *peers = snipe_config_get(cfg, "catalog", "peers");
	if (parse_admin_key(admin, st->admin_pk) != 0 ||
	    (peers != NULL && parse_peers(peers, st) != 0) || add_self(st) != 0 ||
	    number(cfg, "election_ms", 50, 60000, 150, &st->election_ms) != 0 ||
	    number(cfg, "heartbeat_ms", 10, 10000, 50, &st->heartbeat_ms) != 0 ||
	    number(cfg, "snapshot_threshold", 16, UINT32_MAX, 65536, &st->snapshot_threshold) != 0 ||
	    number(cfg, "skew_ms", 100, 3600000, SNIPE_SKEW_DEFAULT_MS, &st->skew_ms) != 0)
		return -1;
	const char *join = snipe_config_get(cfg, "catalog", "join");
	if (join != NULL && snipe_parse_bool(join, &st->join) != SNIPE_OK)
		return fail("join: '%s' is not true or false", join);
	const char *ckey = snipe_config_get(cfg, "catalog", "cluster_key");
	if (ckey != NULL && load_cluster_key(ckey, st) != 0)
		return -1;
	const char *key = snipe_config_get(cfg, "catalog", "key");
	if (key != NULL && snipe_key_load(key, &st->key, err, sizeof(err)) != SNIPE_OK)
		return fail("key: %s", err);
	if (st->heartbeat_ms >= st->election_ms)
		return fail("heartbeat_ms (%llu) must be below election_ms (%llu)",
		            (unsigned long long)st->heartbeat_ms, (unsigned long long)st->election_ms);
	return 0;
}

/* Flags and config file into one snipe_config: flags win. */
static int load_config(int argc, char **argv, snipe_config **cfg, bool *foreground,
                       bool *check_only)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'}, {"id", required_argument, NULL, 1},
		{"data", required_argument, NULL, 2}, {"raft", required_argument, NULL, 3},
		{"listen", required_argument, NULL, 4}, {"peers", required_argument, NULL, 5},
		{"admin-key", required_argument, NULL, 6}, {"election-ms", required_argument, NULL, 7},
		{"heartbeat-ms", required_argument, NULL, 8},
		{"snapshot-threshold", required_argument, NULL, 9},
		{"skew-ms", required_argument, NULL, 10}, {"log-level", required_argument, NULL, 11},
		{"watch", required_argument, NULL, 12}, {"join", no_argument, NULL, 13},
		{"cluster-key", required_argument, NULL, 14}, {"key", required_argument, NULL, 15},
		{"help", no_argument, NULL, 'h'}, {0},
	};
	static const char *const flag_keys[] = {NULL, "id", "data", "raft", "listen", "peers",
	                                        "admin_key", "election_ms", "heartbeat_ms",
	                                        "snapshot_threshold", "skew_ms", "log_level",
	                                        "watch", "join", "cluster_key", "key"};
	const char *path = NULL;
	const char *flags[16] = {0};
	int opt;
	while ((opt = getopt_long(argc, argv, "c:dnh", opts, NULL)) != -1) {
		if (opt >= 1 && opt <= 15)
			flags[opt] = optarg != NULL ? optarg : "true";
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
	for (int i = 1; i <= 15; i++)
		if (flags[i] != NULL && snipe_config_set(*cfg, "catalog", flag_keys[i], flags[i]) != SNIPE_OK)
			return fail("out of memory");
	return 0;
}

/* ------------------------------------------------------------------ running */

struct replica {
	uv_loop_t loop;
	uv_signal_t sigterm, sigint;
	rcds_store *store;
	rcds_server *server;
	rcds_consensus *consensus;
	rcds_leader *leader;
	bool stopping;
};

static void consensus_closed(void *arg)
{
	struct replica *r = arg;
	rcds_server_close(r->server);
	rcds_leader_close(r->leader);
	uv_close((uv_handle_t *)&r->sigterm, NULL);
	uv_close((uv_handle_t *)&r->sigint, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct replica *r = h->data;
	if (r->stopping)
		return;
	r->stopping = true;
	snipe_log(SNIPE_LOG_INFO, "rcdsd", "stopping signal=%d", signum);
	rcds_consensus_close(r->consensus, consensus_closed, r);
}

static int daemonize(const char *data)
{
	char path[4096], err[4200];
	snprintf(path, sizeof(path), "%s/rcdsd.log", data);
	return sni_daemonize(path, err, sizeof(err)) == SNIPE_OK ? 0 : fail("%s", err);
}

static int run(struct settings *st, bool foreground)
{
	if (mkdir(st->data, 0700) != 0 && errno != EEXIST)
		return fail("cannot create %s: %s", st->data, strerror(errno));
	if (!foreground && daemonize(st->data) != 0)
		return -1;
	struct replica r = {0};
	char err[512], path[4096];
	uv_loop_init(&r.loop);
	snprintf(path, sizeof(path), "%s/catalog.db", st->data);
	if (rcds_store_open(path, st->admin_pk, &r.store, err, sizeof(err)) != SNIPE_OK)
		return fail("%s", err);
	rcds_server_config scfg = {.listen = st->listen, .watch = st->watch,
	                           .admin_pk = st->admin_pk,
	                           .skew_ms = (uint32_t)st->skew_ms};
	if (rcds_server_start(&r.loop, &scfg, r.store, &r.server, err, sizeof(err)) != SNIPE_OK)
		return fail("%s", err);
	snprintf(path, sizeof(path), "%s/raft", st->data);
	rcds_consensus_config ccfg = {.id = st->id, .dir = path, .peers = st->peers,
	                              .npeers = st->npeers, .join = st->join,
	                              .election_ms = (unsigned)st->election_ms,
	                              .heartbeat_ms = (unsigned)st->heartbeat_ms,
	                              .snapshot_threshold = (unsigned)st->snapshot_threshold,
	                              .secret = st->have_secret ? st->secret : NULL};
	if (rcds_consensus_start(&r.loop, &ccfg, r.store, rcds_server_applied, r.server,
	                         &r.consensus, err, sizeof(err)) != SNIPE_OK)
		return fail("%s", err);
	if (rcds_leader_new(&r.loop, r.store, st->key, &r.leader) != SNIPE_OK)
		return fail("out of memory");
	rcds_leader_attach(r.leader, r.consensus);
	rcds_server_attach(r.server, r.consensus, r.leader);
	uv_signal_init(&r.loop, &r.sigterm);
	uv_signal_init(&r.loop, &r.sigint);
	r.sigterm.data = r.sigint.data = &r;
	uv_signal_start(&r.sigterm, on_signal, SIGTERM);
	uv_signal_start(&r.sigint, on_signal, SIGINT);
	snipe_log(SNIPE_LOG_INFO, "rcdsd", "started id=%llu raft=%s listen=%s members=%zu join=%s",
	          (unsigned long long)st->id, st->raft, st->listen, st->npeers,
	          st->join ? "true" : "false");
	uv_run(&r.loop, UV_RUN_DEFAULT);
	uv_loop_close(&r.loop);
	rcds_store_close(r.store);
	snipe_log(SNIPE_LOG_INFO, "rcdsd", "stopped");
	return 0;
}

int main(int argc, char **argv)
{
	snipe_log_set_ident("rcdsd");
	/* A peer that dies mid-write must cost an EPIPE, not this process. */
	signal(SIGPIPE, SIG_IGN);
	rcds_store_init();
	snipe_config *cfg = NULL;
	bool foreground = false, check_only = false;
	struct settings st = {0};
	int rc = load_config(argc, argv, &cfg, &foreground, &check_only);
	if (rc == 0)
		rc = settle(cfg, &st);
	if (rc == 0 && check_only && st.join)
		printf("rcdsd: configuration ok (replica %llu, joining a running group)\n",
		       (unsigned long long)st.id);
	else if (rc == 0 && check_only)
		printf("rcdsd: configuration ok (replica %llu of %zu)\n", (unsigned long long)st.id,
		       st.npeers);
	else if (rc == 0)
		rc = run(&st, foreground);
	snipe_config_free(cfg);
	snipe_key_free(st.key);
	return rc == 0 ? 0 : 1;
}
