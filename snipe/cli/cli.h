/*
 * cli.h — shared pieces of the `snipe` command: the context every subcommand gets and
 * the helpers for reporting errors the same way everywhere.
 */
#ifndef SNIPE_CLI_H
#define SNIPE_CLI_H

#include <stdio.h>

#include "snipe.h"

/* Exit codes: 0 success, 1 the operation failed, 2 the command line was wrong. */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

struct cli {
	snipe_config *cfg;       /* from --config or $SNIPE_CONFIG; never NULL */
	const char *catalog_flag; /* --catalog, or NULL */
	const char *key_flag;     /* --key, or NULL */
};

/* Prints "snipe: <message>" to stderr and returns code. */
int cli_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Loads the client's key (--key, $SNIPE_KEY, [client] key), or fails with a reason. */
int cli_load_key(const struct cli *c, snipe_key **out);

/* Loads the key and opens a catalog client (--catalog, $SNIPE_CATALOG, [client] catalog). */
struct rcds_client;
int cli_open_catalog(const struct cli *c, snipe_key **key, struct rcds_client **client);

int cmd_keygen(struct cli *c, int argc, char **argv);
int cmd_lookup(struct cli *c, int argc, char **argv);
int cmd_query(struct cli *c, int argc, char **argv);
int cmd_assert(struct cli *c, int argc, char **argv);
int cmd_catalog(struct cli *c, int argc, char **argv);
int cmd_cluster(struct cli *c, int argc, char **argv);
int cmd_watch(struct cli *c, int argc, char **argv);
int cmd_envelope(struct cli *c, int argc, char **argv);
int cmd_spawn(struct cli *c, int argc, char **argv);
int cmd_ps(struct cli *c, int argc, char **argv);
int cmd_hosts(struct cli *c, int argc, char **argv);
int cmd_kill(struct cli *c, int argc, char **argv);
int cmd_wait(struct cli *c, int argc, char **argv);
int cmd_logs(struct cli *c, int argc, char **argv);
int cmd_ckpt(struct cli *c, int argc, char **argv);
int cmd_send(struct cli *c, int argc, char **argv);
int cmd_recv(struct cli *c, int argc, char **argv);

#endif
