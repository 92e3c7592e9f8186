/*
 * main.c — the `snipe` command: global options, then one subcommand per file in this
 * folder. Each subcommand parses its own options and returns an exit code.
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const struct command {
	const char *name;
	int (*run)(struct cli *c, int argc, char **argv);
	const char *summary;
} commands[] = {
	{"cluster", cmd_cluster, "a local cluster on loopback: up, down, status"},
	{"keygen", cmd_keygen, "create an Ed25519 identity (private key file + .pub)"},
	{"spawn", cmd_spawn, "start a process on a host of the cluster"},
	{"ps", cmd_ps, "list the processes: host, state, epoch, restarts"},
	{"kill", cmd_kill, "stop a process"},
	{"wait", cmd_wait, "wait until a process has ended"},
	{"logs", cmd_logs, "print a process's captured output"},
	{"send", cmd_send, "(in a process) send a text message to a process by URN"},
	{"recv", cmd_recv, "(in a process) print the messages sent to this process"},
	{"hosts", cmd_hosts, "list the hosts and whether they are up"},
	{"ckpt", cmd_ckpt, "commit a directory checkpoint, or list a process's checkpoints"},
	{"envelope", cmd_envelope, "seal or open a signed envelope (debugging aid)"},
	{"lookup", cmd_lookup, "show every assertion about a URN"},
	{"query", cmd_query, "list URNs by prefix and ATTR=VALUE"},
	{"assert", cmd_assert, "sign and write ATTR=VALUE assertions about a URN"},
	{"watch", cmd_watch, "print changes under a URN prefix as they are applied"},
	{"catalog", cmd_catalog, "catalog replicas: status, add, remove"},
};

static void usage(FILE *to)
{
	fprintf(to, "usage: snipe [--catalog ENDPOINTS] [--key FILE] [--config FILE] "
	            "COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(to, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(to, "\nenvironment: SNIPE_CATALOG (comma-separated endpoints), SNIPE_KEY "
	            "(private key file), SNIPE_CONFIG (ini file), SNIPE_LOG (log level)\n"
	            "'snipe COMMAND --help' describes a command.\n");
}

int cli_fail(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("snipe: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return code;
}

int cli_load_key(const struct cli *c, snipe_key **out)
{
	const char *path = snipe_client_key(c->cfg, c->key_flag);
	if (path == NULL)
		return cli_fail(CLI_USAGE, "no key: pass --key FILE or set SNIPE_KEY "
		                           "(create one with 'snipe keygen')");
	char err[512];
	if (snipe_key_load(path, out, err, sizeof(err)) != SNIPE_OK)
		return cli_fail(CLI_FAIL, "%s", err);
	return CLI_OK;
}

/*
 * The global options may also follow the command (`snipe lookup URN --catalog X`):
 * they are taken out of the command's arguments, up to a "--" (after which
 * everything belongs to the command, e.g. the program `snipe spawn` runs).
 */
static int take_global_options(int *argc, char **argv, struct cli *c, const char **config)
{
	const struct {
		const char *name;
		const char **value;
	} globals[] = {
		{"--catalog", &c->catalog_flag},
		{"--key", &c->key_flag},
		{"--config", config},
	};
	int out = 1;
	for (int i = 1; i < *argc; i++) {
		if (strcmp(argv[i], "--") == 0) {
			while (i < *argc)
				argv[out++] = argv[i++];
			break;
		}
		size_t g = 0, n = sizeof(globals) / sizeof(globals[0]);
		const char *value = NULL;
		for (; g < n; g++) {
			size_t len = strlen(globals[g].name);
			if (strcmp(argv[i], globals[g].name) == 0) {
				if (i + 1 == *argc)
					return cli_fail(CLI_USAGE, "%s needs a value", argv[i]);
				value = argv[++i];
				break;
			}
			if (strncmp(argv[i], globals[g].name, len) == 0 && argv[i][len] == '=') {
				value = argv[i] + len + 1;
				break;
			}
		}
		if (g == n) {
			argv[out++] = argv[i];
			continue;
		}
		*globals[g].value = value;
	}
	argv[out] = NULL;
	*argc = out;
	return CLI_OK;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"catalog", required_argument, NULL, 'c'},
		{"key", required_argument, NULL, 'k'},
		{"config", required_argument, NULL, 'f'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{0},
	};
	struct cli c = {0};
	const char *config_path = getenv("SNIPE_CONFIG");
	int opt;
	/* '+': stop at the first non-option, the subcommand. */
	while ((opt = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': c.catalog_flag = optarg; break;
		case 'k': c.key_flag = optarg; break;
		case 'f': config_path = optarg; break;
		case 'h': usage(stdout); return CLI_OK;
		case 'V': printf("snipe 0.1.0\n"); return CLI_OK;
		default: usage(stderr); return CLI_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return CLI_USAGE;
	}
	const char *name = argv[optind];
	const struct command *cmd = NULL;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, name) == 0)
			cmd = &commands[i];
	if (cmd == NULL)
		return cli_fail(CLI_USAGE, "unknown command '%s' (see 'snipe --help')", name);

	int sub_argc = argc - optind;
	char **sub_argv = argv + optind;
	if (take_global_options(&sub_argc, sub_argv, &c, &config_path) != CLI_OK)
		return CLI_USAGE;

	char err[512];
	int rc = config_path != NULL ? snipe_config_load(config_path, &c.cfg, err, sizeof(err))
	                             : snipe_config_new(&c.cfg);
	if (rc != SNIPE_OK)
		return cli_fail(CLI_FAIL, "%s", config_path != NULL ? err : snipe_strerror(rc));
	static const char *const client_keys[] = {"catalog", "key", NULL};
	if (snipe_config_check(c.cfg, "client", client_keys, err, sizeof(err)) != SNIPE_OK) {
		snipe_config_free(c.cfg);
		return cli_fail(CLI_FAIL, "%s: %s", config_path, err);
	}

	optind = 0; /* glibc: 0 re-initialises getopt for the subcommand's own arguments */
	rc = cmd->run(&c, sub_argc, sub_argv);
	snipe_config_free(c.cfg);
	return rc;
}
