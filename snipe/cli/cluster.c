/*
 * cluster.c — `snipe cluster up|down|status`: a whole SNIPE cluster on this machine,
 * on loopback, for trying SNIPE and for demos. It starts catalog replicas as local
 * processes, records their pids in DIR, and prints the environment to use them.
 * Not a deployment tool: real nodes run rcdsd under systemd (scripts/systemd).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <netinet/in.h>
#include <signal.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "rcds.h"
#include "sni.h"

#define MAX_REPLICAS 7
#define MAX_HOSTS 16
#define DEFAULT_DIR "/tmp/snipe-cluster"

static void cluster_usage(FILE *to)
{
	fprintf(to, "usage: snipe cluster up [--hosts N] [--replicas M] [--dir DIR]\n"
	            "       snipe cluster down [--dir DIR]\n"
	            "       snipe cluster status [--dir DIR] [--json]\n"
	            "up starts M catalog replicas (default 3) and N host agents (default 3, named\n"
	            "host1..hostN) on loopback, with new keys registered in the catalog, waits "
	            "until\nall are healthy, and prints the export lines for SNIPE_CATALOG and "
	            "SNIPE_KEY\n(the admin key). down stops exactly what up started. DIR "
	            "defaults to " DEFAULT_DIR ".\n");
}

/* --------------------------------------------------------------- helpers */

/* Whether port is free on loopback now. */
static bool port_free(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	                        .sin_port = htons((uint16_t)port)};
	bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/*
 * A free loopback TCP port from below the kernel's ephemeral range, never from it: a
 * port bind(0) hands out is soon handed out again as the local port of an outgoing
 * connection (nanomsg makes many), and a daemon then cannot listen on it ("address
 * already in use"). -1 if none was found.
 */
static int free_port(void)
{
	int lo = 32768;
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
	if (f != NULL) {
		if (fscanf(f, "%d", &lo) != 1)
			lo = 32768;
		fclose(f);
	}
	int base = 10000, span = lo - base;
	for (int tries = 0; span >= 1000 && tries < 200; tries++) {
		int port = base + (int)randombytes_uniform((uint32_t)span);
		if (port_free(port))
			return port;
	}
	return -1;
}

/* The daemon binary next to this `snipe`, else the one on PATH. */
static void find_binary(const char *name, char *out, size_t len)
{
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		snprintf(out, len, "%s/%s", dirname(self), name);
		if (access(out, X_OK) == 0)
			return;
	}
	snprintf(out, len, "%s", name);
}

/* Starts argv detached (own session, output to log), returns its pid or -1. */
static pid_t spawn_daemon(char *const argv[], const char *log)
{
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	setsid();
	int in = open("/dev/null", O_RDONLY);
	int out = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
	if (in < 0 || out < 0)
		_exit(127);
	dup2(in, STDIN_FILENO);
	dup2(out, STDOUT_FILENO);
	dup2(out, STDERR_FILENO);
	execvp(argv[0], argv);
	dprintf(out, "cannot run %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

static int write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return -1;
	int rc = fputs(text, f) < 0 ? -1 : 0;
	return fclose(f) != 0 ? -1 : rc;
}

/* ------------------------------------------------------------------ up */

struct replica {
	int raft_port, client_port, watch_port;
	pid_t pid;
	char endpoint[64], watch[64];
};

static int start_replicas(const char *dir, struct replica *r, int m, const char *admin_pub,
                          const char *cluster_key)
{
	char keys[MAX_REPLICAS][4200];
	char rcdsd[4096], peers[1024] = "";
	find_binary("rcdsd", rcdsd, sizeof(rcdsd));
	for (int i = 0; i < m; i++) {
		r[i].raft_port = free_port();
		r[i].client_port = free_port();
		r[i].watch_port = free_port();
		if (r[i].raft_port < 0 || r[i].client_port < 0 || r[i].watch_port < 0)
			return cli_fail(CLI_FAIL, "cluster: no free loopback port");
		snprintf(r[i].endpoint, sizeof(r[i].endpoint), "tcp://127.0.0.1:%d", r[i].client_port);
		snprintf(r[i].watch, sizeof(r[i].watch), "tcp://127.0.0.1:%d", r[i].watch_port);
		size_t used = strlen(peers);
		snprintf(peers + used, sizeof(peers) - used, "%s%d=127.0.0.1:%d", i ? "," : "", i + 1,
		         r[i].raft_port);
	}
	for (int i = 0; i < m; i++) {
		char id[16], data[4096], raft[64], log[4200];
		snprintf(id, sizeof(id), "%d", i + 1);
		snprintf(data, sizeof(data), "%s/replica%d", dir, i + 1);
		snprintf(raft, sizeof(raft), "127.0.0.1:%d", r[i].raft_port);
		snprintf(log, sizeof(log), "%s/replica%d.log", dir, i + 1);
		snprintf(keys[i], sizeof(keys[i]), "%s/replica%d.key", dir, i + 1);
		char *argv[] = {rcdsd, "-d", "--id", id, "--data", data, "--raft", raft, "--listen",
		                r[i].endpoint, "--watch", r[i].watch, "--peers", peers, "--admin-key",
		                (char *)admin_pub, "--cluster-key", (char *)cluster_key, "--key",
		                keys[i], NULL};
		r[i].pid = spawn_daemon(argv, log);
		if (r[i].pid < 0)
			return cli_fail(CLI_FAIL, "cluster: cannot start %s: %s", rcdsd, strerror(errno));
	}
	return CLI_OK;
}

/* Waits until every replica agrees on one leader (at most timeout_ms). */
static int wait_leader(const struct cli *c, struct replica *r, int m, const char *endpoints,
                       const snipe_key *key, int timeout_ms)
{
	rcds_client *client = NULL;
	char err[256];
	if (rcds_client_open(endpoints, key, &client, err, sizeof(err)) != SNIPE_OK)
		return cli_fail(CLI_FAIL, "cluster: %s", err);
	(void)c;
	rcds_client_set_timeout(client, 300);
	int rc = CLI_FAIL;
	for (int waited = 0; waited < timeout_ms && rc != CLI_OK; waited += 50) {
		uint64_t leader = 0;
		int agree = 0;
		for (int i = 0; i < m; i++) {
			rcds_status st;
			if (rcds_status_get(client, r[i].endpoint, &st, err, sizeof(err)) != SNIPE_OK ||
			    st.leader_id == 0 || (leader != 0 && st.leader_id != leader))
				break;
			leader = st.leader_id;
			agree++;
		}
		if (agree == m)
			rc = CLI_OK;
		else
			usleep(50 * 1000);
	}
	rcds_client_close(client);
	return rc;
}

/* Makes a key at DIR/<name>.key; its public key as 64 hex digits into pk_hex. */
static int make_key(const char *dir, const char *name, char pk_hex[SNIPE_PK_HEX])
{
	char path[4200], err[512];
	snipe_key *k = NULL;
	snprintf(path, sizeof(path), "%s/%s.key", dir, name);
	int rc = snipe_key_generate(&k);
	if (rc == SNIPE_OK)
		rc = snipe_key_save(k, path, true, err, sizeof(err));
	if (rc == SNIPE_OK)
		snipe_pk_hex(snipe_key_public(k), pk_hex);
	snipe_key_free(k);
	return rc == SNIPE_OK ? CLI_OK : cli_fail(CLI_FAIL, "cluster: cannot make %s: %s", path,
	                                          rc == SNIPE_ENOMEM ? "out of memory" : err);
}

static int register_key(rcds_batch *b, const char *pk_hex, const char *role, const char *host)
{
	uint8_t pk[SNIPE_PK_BYTES];
	int rc = snipe_pk_parse(pk_hex, pk);
	return rc == SNIPE_OK ? rcds_batch_put_key(b, pk, role, host) : rc;
}

/* Makes the replica and host keys (replicaI.key, hostI.key); their public keys in pks. */
static int make_keys(const char *dir, int m, int n, char (*pks)[SNIPE_PK_HEX])
{
	char name[32];
	for (int i = 0; i < m + n; i++) {
		snprintf(name, sizeof(name), i < m ? "replica%d" : "host%d", i < m ? i + 1 : i - m + 1);
		if (make_key(dir, name, pks[i]) != CLI_OK)
			return CLI_FAIL;
	}
	return CLI_OK;
}

/* Registers the replica and host keys with the admin key, in one write. */
static int register_keys(const char *endpoints, const snipe_key *admin, int m, int n,
                         char (*pks)[SNIPE_PK_HEX])
{
	rcds_client *client = NULL;
	rcds_batch *b = NULL;
	char err[512], name[32];
	int rc = rcds_client_open(endpoints, admin, &client, err, sizeof(err));
	if (rc == SNIPE_OK)
		rc = rcds_batch_new(&b);
	/* the admin key too: agents trust the keys the catalog lists */
	char admin_hex[SNIPE_PK_HEX];
	snipe_pk_hex(snipe_key_public(admin), admin_hex);
	if (rc == SNIPE_OK)
		rc = register_key(b, admin_hex, "admin", NULL);
	for (int i = 0; rc == SNIPE_OK && i < m + n; i++) {
		bool replica = i < m;
		snprintf(name, sizeof(name), "host%d", i - m + 1);
		rc = register_key(b, pks[i], replica ? "replica" : "host", replica ? NULL : name);
	}
	if (rc == SNIPE_OK)
		rc = rcds_write(client, b, NULL, err, sizeof(err));
	rcds_batch_free(b);
	rcds_client_close(client);
	return rc == SNIPE_OK ? CLI_OK : cli_fail(CLI_FAIL, "cluster: cannot register keys: %s", err);
}

/* Starts agents host1..hostN; their pids into pids[]. */
static int start_agents(const char *dir, const char *endpoints, int n, pid_t *pids)
{
	char agentd[4096];
	find_binary("snipe-agentd", agentd, sizeof(agentd));
	for (int i = 0; i < n; i++) {
		char name[32], key[4200], state[4200], log[4200], listen[64], msg[64];
		int port = free_port(), msg_port = free_port();
		if (port < 0 || msg_port < 0)
			return cli_fail(CLI_FAIL, "cluster: no free loopback port");
		snprintf(name, sizeof(name), "host%d", i + 1);
		snprintf(key, sizeof(key), "%s/%s.key", dir, name);
		snprintf(state, sizeof(state), "%s/%s", dir, name);
		snprintf(log, sizeof(log), "%s/%s.log", dir, name);
		snprintf(listen, sizeof(listen), "tcp://127.0.0.1:%d", port);
		snprintf(msg, sizeof(msg), "tcp://127.0.0.1:%d", msg_port);
		char *argv[] = {agentd, "-d", "--name", name, "--catalog", (char *)endpoints,
		                "--key", key, "--listen", listen, "--msg-listen", msg,
		                "--state", state, NULL};
		pids[i] = spawn_daemon(argv, log);
		if (pids[i] < 0)
			return cli_fail(CLI_FAIL, "cluster: cannot start %s: %s", agentd, strerror(errno));
	}
	return CLI_OK;
}

/* Waits until the catalog says n hosts are up (at most timeout_ms). */
static int wait_hosts(const char *endpoints, const snipe_key *key, int n, int timeout_ms)
{
	rcds_client *client = NULL;
	char err[256];
	if (rcds_client_open(endpoints, key, &client, err, sizeof(err)) != SNIPE_OK)
		return cli_fail(CLI_FAIL, "cluster: %s", err);
	rcds_client_set_timeout(client, 1000);
	rcds_client_set_leader_reads(client, true);
	int up = 0;
	for (int waited = 0; waited < timeout_ms; waited += 100) {
		rcds_list l = {0};
		rcds_where w = {.attr = "state", .value = "up", .value_len = 2};
		up = 0;
		if (rcds_query(client, "urn:snipe:host:", &w, 1, &l, err, sizeof(err)) == SNIPE_OK)
			for (size_t i = 0; i < l.count; i++)
				up += strcmp(l.items[i].attr, "state") == 0;
		rcds_list_free(&l);
		if (up >= n)
			break;
		usleep(100 * 1000);
	}
	rcds_client_close(client);
	return up >= n ? CLI_OK : CLI_FAIL;
}

static int cluster_up(const struct cli *c, const char *dir, int m, int hosts)
{
	char path[4096], pub[4200], text[8192];
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return cli_fail(CLI_FAIL, "cluster: cannot create %s: %s", dir, strerror(errno));
	snprintf(path, sizeof(path), "%s/pids", dir);
	if (access(path, F_OK) == 0)
		return cli_fail(CLI_FAIL, "cluster: %s already runs a cluster ('snipe cluster down "
		                          "--dir %s' first)", dir, dir);
	snprintf(path, sizeof(path), "%s/replica1", dir);
	if (access(path, F_OK) == 0)
		return cli_fail(CLI_FAIL, "cluster: %s holds the data of a stopped cluster; remove "
		                          "it or choose another --dir", dir);
	snipe_key *admin = NULL, *cluster = NULL;
	char err[512], cluster_key[4200];
	snprintf(path, sizeof(path), "%s/admin.key", dir);
	snprintf(pub, sizeof(pub), "%s.pub", path);
	snprintf(cluster_key, sizeof(cluster_key), "%s/cluster.key", dir);
	int rc = snipe_key_generate(&admin) == SNIPE_OK && snipe_key_generate(&cluster) == SNIPE_OK
	                 ? SNIPE_OK
	                 : SNIPE_ENOMEM;
	if (rc == SNIPE_OK)
		rc = snipe_key_save(admin, path, true, err, sizeof(err));
	if (rc == SNIPE_OK)
		rc = snipe_key_save(cluster, cluster_key, true, err, sizeof(err));
	snipe_key_free(cluster);
	if (rc != SNIPE_OK) {
		snipe_key_free(admin);
		return cli_fail(CLI_FAIL, "cluster: %s", rc == SNIPE_ENOMEM ? "out of memory" : err);
	}
	struct replica r[MAX_REPLICAS] = {0};
	char pks[MAX_REPLICAS + MAX_HOSTS][SNIPE_PK_HEX];
	rc = make_keys(dir, m, hosts, pks);
	if (rc == CLI_OK)
		rc = start_replicas(dir, r, m, pub, cluster_key);
	char endpoints[1024] = "", pids[2048] = "";
	for (int i = 0; i < m; i++) {
		size_t u = strlen(endpoints), p = strlen(pids);
		snprintf(endpoints + u, sizeof(endpoints) - u, "%s%s", i ? "," : "", r[i].endpoint);
		snprintf(pids + p, sizeof(pids) - p, "%d rcdsd replica%d\n", (int)r[i].pid, i + 1);
	}
	snprintf(text, sizeof(text), "%s/pids", dir);
	if (write_text(text, pids) != 0)
		rc = cli_fail(CLI_FAIL, "cluster: cannot write %s", text);
	if (rc == CLI_OK && wait_leader(c, r, m, endpoints, admin, 15000) != CLI_OK)
		rc = cli_fail(CLI_FAIL, "cluster: the catalog elected no leader within 15 s (logs: "
		                        "%s/replica*.log)", dir);
	if (rc == CLI_OK)
		rc = register_keys(endpoints, admin, m, hosts, pks);
	pid_t agents[MAX_HOSTS];
	if (rc == CLI_OK && hosts > 0) {
		rc = start_agents(dir, endpoints, hosts, agents);
		for (int i = 0; rc == CLI_OK && i < hosts; i++) {
			size_t p = strlen(pids);
			snprintf(pids + p, sizeof(pids) - p, "%d snipe-agentd host%d\n", (int)agents[i],
			         i + 1);
		}
		if (write_text(text, pids) != 0)
			rc = cli_fail(CLI_FAIL, "cluster: cannot write %s", text);
	}
	if (rc == CLI_OK && hosts > 0 && wait_hosts(endpoints, admin, hosts, 15000) != CLI_OK)
		rc = cli_fail(CLI_FAIL, "cluster: not every host came up within 15 s (logs: "
		                        "%s/host*.log)", dir);
	snipe_key_free(admin);
	if (rc != CLI_OK)
		return rc;
	snprintf(text, sizeof(text), "export SNIPE_CATALOG=%s\nexport SNIPE_KEY=%s\n", endpoints,
	         path);
	char envpath[4200];
	snprintf(envpath, sizeof(envpath), "%s/env", dir);
	write_text(envpath, text);
	fprintf(stderr, "cluster: %d catalog replicas and %d hosts up in %s (stop with: snipe "
	                "cluster down --dir %s)\n", m, hosts, dir, dir);
	fputs(text, stdout);
	return CLI_OK;
}

/* ----------------------------------------------------------------- down */

static int cluster_down(const char *dir)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/pids", dir);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return cli_fail(CLI_FAIL, "cluster: no cluster recorded in %s", dir);
	pid_t pids[64];
	int n = 0, pid;
	char line[256];
	while (n < 64 && fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "%d", &pid) == 1 && pid > 1)
			pids[n++] = pid;
	fclose(f);
	for (int i = 0; i < n; i++)
		kill(pids[i], SIGTERM);
	for (int waited = 0; waited < 5000; waited += 50) {
		int left = 0;
		for (int i = 0; i < n; i++)
			left += sni_pid_alive(pids[i]);
		if (left == 0)
			break;
		usleep(50 * 1000);
	}
	for (int i = 0; i < n; i++)
		if (sni_pid_alive(pids[i]))
			kill(pids[i], SIGKILL);
	unlink(path);
	fprintf(stderr, "cluster: stopped %d processes recorded in %s\n", n, dir);
	return CLI_OK;
}

/* --------------------------------------------------------------- status */

/* The cluster's own settings from DIR/env fill in what the user did not set. */
static int cluster_status(struct cli *c, const char *dir, bool json)
{
	char path[4096], line[2048], catalog[2048] = "", key[2048] = "";
	snprintf(path, sizeof(path), "%s/env", dir);
	FILE *f = fopen(path, "r");
	while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if (strncmp(line, "export SNIPE_CATALOG=", 21) == 0)
			snprintf(catalog, sizeof(catalog), "%s", line + 21);
		else if (strncmp(line, "export SNIPE_KEY=", 17) == 0)
			snprintf(key, sizeof(key), "%s", line + 17);
	}
	if (f != NULL)
		fclose(f);
	if (snipe_client_catalog(c->cfg, c->catalog_flag) == NULL && catalog[0] != '\0')
		c->catalog_flag = catalog;
	if (snipe_client_key(c->cfg, c->key_flag) == NULL && key[0] != '\0')
		c->key_flag = key;
	char *argv2[] = {"catalog", "status", json ? "--json" : NULL, NULL};
	optind = 0;
	int rc = cmd_catalog(c, json ? 3 : 2, argv2);
	if (rc != CLI_OK)
		return rc;
	char *argv3[] = {"hosts", json ? "--json" : NULL, NULL};
	optind = 0;
	if (!json)
		printf("\n");
	return cmd_hosts(c, json ? 2 : 1, argv3);
}

/* --------------------------------------------------------------- command */

int cmd_cluster(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {{"replicas", required_argument, NULL, 'r'},
	                                     {"hosts", required_argument, NULL, 'H'},
	                                     {"dir", required_argument, NULL, 'D'},
	                                     {"json", no_argument, NULL, 'j'},
	                                     {"help", no_argument, NULL, 'h'},
	                                     {0}};
	if (argc < 2 || argv[1][0] == '-') {
		bool help = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
		cluster_usage(help ? stdout : stderr);
		return help ? CLI_OK : CLI_USAGE;
	}
	const char *sub = argv[1], *dir = DEFAULT_DIR;
	uint64_t m = 3, hosts = 3;
	bool json = false;
	int opt;
	while ((opt = getopt_long(argc - 1, argv + 1, "h", opts, NULL)) != -1) {
		if (opt == 'r' && snipe_parse_u64(optarg, 1, MAX_REPLICAS, &m) != SNIPE_OK)
			return cli_fail(CLI_USAGE, "cluster: --replicas must be 1 to %d", MAX_REPLICAS);
		if (opt == 'H' && snipe_parse_u64(optarg, 0, MAX_HOSTS, &hosts) != SNIPE_OK)
			return cli_fail(CLI_USAGE, "cluster: --hosts must be 0 to %d", MAX_HOSTS);
		if (opt == 'D')
			dir = optarg;
		if (opt == 'j')
			json = true;
		if (opt == 'h') {
			cluster_usage(stdout);
			return CLI_OK;
		}
		if (opt == '?')
			return CLI_USAGE;
	}
	if (strcmp(sub, "up") == 0)
		return cluster_up(c, dir, (int)m, (int)hosts);
	if (strcmp(sub, "down") == 0)
		return cluster_down(dir);
	if (strcmp(sub, "status") == 0)
		return cluster_status(c, dir, json);
	return cli_fail(CLI_USAGE, "cluster: unknown subcommand '%s' (up, down, status)", sub);
}
