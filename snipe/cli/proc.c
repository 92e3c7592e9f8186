/*
 * proc.c — the process commands of `snipe`: spawn, ps, kill, wait, logs, and hosts.
 * Tables for people by default, --json for programs. The work is in libsnipe
 * (snipe/proc.c); this file parses arguments and prints.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "rcds.h"

#define MAX_LIST 64

/* Runs fn with an open catalog client, then closes it. */
static int with_catalog(struct cli *c, int (*fn)(rcds_client *cl, void *arg), void *arg)
{
	snipe_key *key = NULL;
	rcds_client *cl = NULL;
	int rc = cli_open_catalog(c, &key, &cl);
	if (rc != CLI_OK)
		return rc;
	rc = fn(cl, arg);
	rcds_client_close(cl);
	snipe_key_free(key);
	return rc;
}

static void age(uint64_t started_ms, char *buf, size_t len)
{
	uint64_t now = snipe_now_ms();
	if (started_ms == 0 || started_ms > now) {
		snprintf(buf, len, "-");
		return;
	}
	uint64_t s = (now - started_ms) / 1000;
	if (s < 120)
		snprintf(buf, len, "%llus", (unsigned long long)s);
	else if (s < 7200)
		snprintf(buf, len, "%llum", (unsigned long long)(s / 60));
	else
		snprintf(buf, len, "%lluh", (unsigned long long)(s / 3600));
}

static json_t *proc_json(const snipe_proc_info *p)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:I}", "urn", p->urn, "host",
	                      p->host, "state", p->state, "epoch", (json_int_t)p->epoch, "pid",
	                      (json_int_t)p->pid, "restarts", (json_int_t)p->restarts,
	                      "command", p->command, "started_ms", (json_int_t)p->started_ms);
	if (o != NULL && p->has_exit)
		json_object_set_new(o, "exit", json_integer(p->exit_code));
	if (o != NULL && p->reason[0] != '\0')
		json_object_set_new(o, "reason", json_string(p->reason));
	return o;
}

static int print_json(json_t *v)
{
	if (v == NULL)
		return cli_fail(CLI_FAIL, "out of memory");
	char *s = json_dumps(v, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(v);
	if (s == NULL)
		return cli_fail(CLI_FAIL, "out of memory");
	puts(s);
	free(s);
	return CLI_OK;
}

/* ------------------------------------------------------------------ spawn */

struct spawn_args {
	snipe_spawn_opts o;
	const char *env[MAX_LIST], *labels[MAX_LIST];
	bool json;
};

static int do_spawn(rcds_client *cl, void *arg)
{
	struct spawn_args *sa = arg;
	snipe_proc_info info;
	char err[512];
	int rc = snipe_spawn(cl, &sa->o, &info, err, sizeof(err));
	if (rc != SNIPE_OK)
		return cli_fail(CLI_FAIL, "spawn: %s", err);
	if (sa->json)
		return print_json(proc_json(&info));
	printf("%s\n", info.urn);
	return CLI_OK;
}

static void spawn_usage(FILE *to)
{
	fprintf(to, "usage: snipe spawn [--name NAME] [--host HOST] [--restart never|on-failure|"
	            "always]\n"
	            "                   [--max-restarts N] [--env K=V]... [--cwd DIR] "
	            "[--label k=v]... [--json]\n"
	            "                   [--ckpt-dir DIR]\n"
	            "                   -- CMD [ARGS...]\n"
	            "Starts CMD on a host of the cluster (the least loaded live one with every "
	            "--label,\nunless --host) and prints its URN once it runs. The catalog "
	            "restarts it as --restart\nsays (default never), on another host if its "
	            "host dies.\n"
	            "--ckpt-dir: the program keeps its state in DIR and runs 'snipe ckpt commit' "
	            "(or\nexits with 85) to checkpoint it; DIR is restored before every "
	            "restart.\n");
}

int cmd_spawn(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{"name", required_argument, NULL, 'N'}, {"host", required_argument, NULL, 'H'},
		{"restart", required_argument, NULL, 'r'},
		{"max-restarts", required_argument, NULL, 'm'}, {"env", required_argument, NULL, 'e'},
		{"cwd", required_argument, NULL, 'C'}, {"label", required_argument, NULL, 'l'},
		{"ckpt-dir", required_argument, NULL, 'k'},
		{"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {0},
	};
	struct spawn_args sa = {0};
	uint64_t n;
	int opt;
	sa.o.env = sa.env;
	sa.o.labels = sa.labels;
	while ((opt = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (opt) {
		case 'N': sa.o.name = optarg; break;
		case 'H': sa.o.host = optarg; break;
		case 'C': sa.o.cwd = optarg; break;
		case 'k': sa.o.ckpt_dir = optarg; break;
		case 'j': sa.json = true; break;
		case 'r':
			if (snipe_restart_parse(optarg, &sa.o.restart) != SNIPE_OK)
				return cli_fail(CLI_USAGE, "spawn: --restart '%s' is not never, on-failure "
				                           "or always", optarg);
			break;
		case 'm':
			if (snipe_parse_u64(optarg, 0, UINT32_MAX, &n) != SNIPE_OK)
				return cli_fail(CLI_USAGE, "spawn: --max-restarts '%s' is not a number", optarg);
			sa.o.max_restarts = (uint32_t)n;
			break;
		case 'e':
		case 'l': {
			size_t *count = opt == 'e' ? &sa.o.nenv : &sa.o.nlabels;
			const char **list = opt == 'e' ? sa.env : sa.labels;
			if (*count == MAX_LIST)
				return cli_fail(CLI_USAGE, "spawn: at most %d --%s", MAX_LIST,
				                opt == 'e' ? "env" : "label");
			if (strchr(optarg, '=') == NULL || optarg[0] == '=')
				return cli_fail(CLI_USAGE, "spawn: '%s' is not %s", optarg,
				                opt == 'e' ? "K=V" : "k=v");
			list[(*count)++] = optarg;
			break;
		}
		case 'h': spawn_usage(stdout); return CLI_OK;
		default: spawn_usage(stderr); return CLI_USAGE;
		}
	}
	if (optind >= argc) {
		spawn_usage(stderr);
		return cli_fail(CLI_USAGE, "spawn: no command (put it after --)");
	}
	sa.o.argv = (const char *const *)&argv[optind];
	sa.o.argc = (size_t)(argc - optind);
	return with_catalog(c, do_spawn, &sa);
}

/* --------------------------------------------------------------------- ps */

struct list_args {
	bool json, all;
};

static int do_ps(rcds_client *cl, void *arg)
{
	struct list_args *la = arg;
	snipe_proc_info *v = NULL;
	size_t n = 0;
	char err[512];
	if (snipe_proc_list(cl, &v, &n, err, sizeof(err)) != SNIPE_OK)
		return cli_fail(CLI_FAIL, "ps: %s", err);
	if (la->json) {
		json_t *a = json_array();
		for (size_t i = 0; a != NULL && i < n; i++)
			json_array_append_new(a, proc_json(&v[i]));
		free(v);
		return print_json(a);
	}
	printf("%-32s %-12s %-8s %5s %8s %8s %5s  %s\n", "URN", "HOST", "STATE", "EPOCH",
	       "RESTARTS", "PID", "AGE", "COMMAND");
	for (size_t i = 0; i < n; i++) {
		char a[16];
		age(v[i].started_ms, a, sizeof(a));
		printf("%-32s %-12s %-8s %5llu %8u %8lld %5s  %s\n", v[i].urn,
		       v[i].host[0] ? v[i].host : "-", v[i].state, (unsigned long long)v[i].epoch,
		       v[i].restarts, (long long)v[i].pid, a, v[i].command);
	}
	free(v);
	return CLI_OK;
}

static int list_opts(int argc, char **argv, struct list_args *la, const char *usage)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {0},
	};
	int opt;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (opt == 'j') {
			la->json = true;
		} else if (opt == 'h') {
			printf("%s", usage);
			return -1;
		} else {
			fprintf(stderr, "%s", usage);
			return CLI_USAGE;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "%s", usage);
		return CLI_USAGE;
	}
	return CLI_OK;
}

int cmd_ps(struct cli *c, int argc, char **argv)
{
	struct list_args la = {0};
	int rc = list_opts(argc, argv, &la, "usage: snipe ps [--json]\nLists every process "
	                   "in the catalog: URN, host, state, epoch, restarts, pid, age.\n");
	return rc == CLI_OK ? with_catalog(c, do_ps, &la) : rc < 0 ? CLI_OK : rc;
}

/* ------------------------------------------------------------------ hosts */

static const char *host_attr(const rcds_list *l, size_t from, size_t to, const char *attr)
{
	for (size_t i = from; i < to; i++)
		if (strcmp(l->items[i].attr, attr) == 0)
			return (const char *)l->items[i].value;
	return "";
}

static int do_hosts(rcds_client *cl, void *arg)
{
	struct list_args *la = arg;
	rcds_list l = {0};
	char err[512];
	if (rcds_query(cl, "urn:snipe:host:", NULL, 0, &l, err, sizeof(err)) != SNIPE_OK)
		return cli_fail(CLI_FAIL, "hosts: %s", err);
	json_t *a = la->json ? json_array() : NULL;
	if (!la->json)
		printf("%-16s %-6s %-28s %5s %9s  %s\n", "HOST", "STATE", "ADDRESS", "CORES",
		       "MEMORY_MB", "LABELS");
	for (size_t i = 0; i < l.count;) {
		size_t j = i;
		while (j < l.count && strcmp(l.items[j].urn, l.items[i].urn) == 0)
			j++;
		const char *name = l.items[i].urn + strlen("urn:snipe:host:");
		const char *state = host_attr(&l, i, j, "state");
		if (la->json) {
			json_array_append_new(
				a, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "name", name, "state",
			                 state[0] ? state : "unknown", "address",
			                 host_attr(&l, i, j, "address"), "cores",
			                 host_attr(&l, i, j, "cores"), "memory_mb",
			                 host_attr(&l, i, j, "memory_mb"), "labels",
			                 host_attr(&l, i, j, "labels"), "version",
			                 host_attr(&l, i, j, "version")));
		} else {
			printf("%-16s %-6s %-28s %5s %9s  %s\n", name, state[0] ? state : "?",
			       host_attr(&l, i, j, "address"), host_attr(&l, i, j, "cores"),
			       host_attr(&l, i, j, "memory_mb"), host_attr(&l, i, j, "labels"));
		}
		i = j;
	}
	rcds_list_free(&l);
	return la->json ? print_json(a) : CLI_OK;
}

int cmd_hosts(struct cli *c, int argc, char **argv)
{
	struct list_args la = {0};
	int rc = list_opts(argc, argv, &la, "usage: snipe hosts [--json]\nLists the hosts "
	                   "registered in the catalog, up or down.\n");
	return rc == CLI_OK ? with_catalog(c, do_hosts, &la) : rc < 0 ? CLI_OK : rc;
}

/* ------------------------------------------------------------ kill, wait */

struct urn_args {
	const char *urn;
	int timeout_ms;
	bool json;
};

static int one_urn(int argc, char **argv, const char *usage, struct urn_args *ua)
{
	static const struct option opts[] = {
		{"timeout", required_argument, NULL, 't'}, {"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'}, {0},
	};
	uint64_t n;
	int opt;
	ua->timeout_ms = -1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (opt == 'j') {
			ua->json = true;
		} else if (opt == 't') {
			if (snipe_parse_u64(optarg, 0, 86400, &n) != SNIPE_OK)
				return cli_fail(CLI_USAGE, "--timeout '%s' is not seconds (0..86400)", optarg);
			ua->timeout_ms = (int)n * 1000;
		} else if (opt == 'h') {
			printf("%s", usage);
			return -1;
		} else {
			fprintf(stderr, "%s", usage);
			return CLI_USAGE;
		}
	}
	if (optind + 1 != argc) {
		fprintf(stderr, "%s", usage);
		return CLI_USAGE;
	}
	ua->urn = argv[optind];
	return CLI_OK;
}

static int do_kill(rcds_client *cl, void *arg)
{
	struct urn_args *ua = arg;
	char err[512];
	if (snipe_kill(cl, ua->urn, err, sizeof(err)) != SNIPE_OK)
		return cli_fail(CLI_FAIL, "kill: %s", err);
	return CLI_OK;
}

int cmd_kill(struct cli *c, int argc, char **argv)
{
	struct urn_args ua = {0};
	int rc = one_urn(argc, argv, "usage: snipe kill URN\nStops a process (SIGTERM, then "
	                 "SIGKILL after 2 s) and waits until it has stopped.\n", &ua);
	return rc == CLI_OK ? with_catalog(c, do_kill, &ua) : rc < 0 ? CLI_OK : rc;
}

static int do_wait(rcds_client *cl, void *arg)
{
	struct urn_args *ua = arg;
	snipe_proc_info info;
	char err[512];
	int rc = snipe_wait(cl, ua->urn, ua->timeout_ms, &info, err, sizeof(err));
	if (rc != SNIPE_OK)
		return cli_fail(CLI_FAIL, "wait: %s", err);
	if (ua->json)
		return print_json(proc_json(&info));
	printf("%s %s", info.urn, info.state);
	if (info.has_exit)
		printf(" exit=%d", info.exit_code);
	printf("\n");
	return strcmp(info.state, "exited") == 0 && info.exit_code == 0 ? CLI_OK : CLI_FAIL;
}

int cmd_wait(struct cli *c, int argc, char **argv)
{
	struct urn_args ua = {0};
	int rc = one_urn(argc, argv, "usage: snipe wait URN [--timeout SECONDS] [--json]\n"
	                 "Waits until a process has ended; exits 0 if it exited with 0.\n", &ua);
	return rc == CLI_OK ? with_catalog(c, do_wait, &ua) : rc < 0 ? CLI_OK : rc;
}

/* ------------------------------------------------------------------- logs */

struct logs_args {
	const char *urn;
	bool follow, err_stream;
};

/* Copies new bytes of one stream to out from *offset; SNIPE_OK or the failure. */
static int drain(rcds_client *cl, const char *urn, bool err_stream, uint64_t *offset,
                 FILE *out, char *err, size_t errlen)
{
	for (;;) {
		uint8_t *data = NULL;
		size_t len = 0;
		uint64_t size = 0;
		int rc = snipe_proc_logs(cl, urn, err_stream, *offset, 0, &data, &len, &size, err,
		                         errlen);
		if (rc == SNIPE_ENOTFOUND && *offset == 0) {
			free(data);
			return SNIPE_OK; /* nothing captured yet */
		}
		if (rc != SNIPE_OK)
			return rc;
		fwrite(data, 1, len, out);
		free(data);
		*offset += len;
		if (len == 0 || *offset >= size)
			break;
	}
	fflush(out);
	return SNIPE_OK;
}

static int do_logs(rcds_client *cl, void *arg)
{
	struct logs_args *la = arg;
	uint64_t off_out = 0, off_err = 0;
	char err[512];
	for (;;) {
		int rc = la->err_stream ? SNIPE_OK
		                        : drain(cl, la->urn, false, &off_out, stdout, err, sizeof(err));
		if (rc == SNIPE_OK)
			rc = drain(cl, la->urn, true, &off_err, stderr, err, sizeof(err));
		if (rc != SNIPE_OK)
			return cli_fail(CLI_FAIL, "logs: %s", err);
		if (!la->follow)
			return CLI_OK;
		struct timespec ts = {0, 200 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}

int cmd_logs(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{"follow", no_argument, NULL, 'f'}, {"stderr", no_argument, NULL, 'e'},
		{"help", no_argument, NULL, 'h'}, {0},
	};
	static const char usage[] = "usage: snipe logs URN [-f] [--stderr]\nPrints a process's "
	                            "captured output, fetched from its host's agent: stdout to "
	                            "stdout,\nstderr to stderr (--stderr: only stderr). -f keeps "
	                            "following.\n";
	struct logs_args la = {0};
	int opt;
	while ((opt = getopt_long(argc, argv, "fh", opts, NULL)) != -1) {
		if (opt == 'f') {
			la.follow = true;
		} else if (opt == 'e') {
			la.err_stream = true;
		} else if (opt == 'h') {
			printf("%s", usage);
			return CLI_OK;
		} else {
			fprintf(stderr, "%s", usage);
			return CLI_USAGE;
		}
	}
	if (optind + 1 != argc) {
		fprintf(stderr, "%s", usage);
		return CLI_USAGE;
	}
	la.urn = argv[optind];
	return with_catalog(c, do_logs, &la);
}
