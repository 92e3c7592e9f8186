/*
 * ckpt.c — `snipe ckpt`: commit a directory-mode checkpoint from inside a process
 * (`snipe ckpt commit`), or list a process's checkpoints (`snipe ckpt URN`).
 */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "rcds.h"

static const char usage[] =
	"usage: snipe ckpt commit\n"
	"       snipe ckpt URN [--json]\n"
	"commit (run by a process spawned with --ckpt-dir) has its agent snapshot the\n"
	"directory and prints the checkpoint's number. URN lists a process's checkpoints:\n"
	"sequence, epoch, size, new bytes (not in the one before), and the hosts holding it.\n";

static int commit(void)
{
	snipe_ckpt *c = NULL;
	char err[512];
	uint64_t seq = 0;
	if (snipe_ckpt_open(&c, err, sizeof(err)) != SNIPE_OK)
		return cli_fail(CLI_FAIL, "ckpt commit: %s", err);
	int rc = snipe_ckpt_commit_dir(c, &seq, err, sizeof(err));
	snipe_ckpt_close(c);
	if (rc != SNIPE_OK)
		return cli_fail(CLI_FAIL, "ckpt commit: %s", err);
	printf("checkpoint %" PRIu64 "\n", seq);
	return CLI_OK;
}

static const char *attr(const rcds_list *l, size_t from, size_t to, const char *name)
{
	for (size_t i = from; i < to; i++)
		if (strcmp(l->items[i].attr, name) == 0)
			return (const char *)l->items[i].value;
	return "";
}

static int list(struct cli *cl, const char *urn, bool json)
{
	snipe_urn u;
	char err[512], prefix[SNIPE_URN_MAX + 2];
	if (snipe_urn_parse(urn, &u, err, sizeof(err)) != SNIPE_OK)
		return cli_fail(CLI_USAGE, "ckpt: %s", err);
	if (u.kind != SNIPE_KIND_PROC)
		return cli_fail(CLI_USAGE, "ckpt: %s is not a process URN", urn);
	snprintf(prefix, sizeof(prefix), "urn:snipe:ckpt:%s/", u.name);
	snipe_key *key = NULL;
	rcds_client *c = NULL;
	int rc = cli_open_catalog(cl, &key, &c);
	if (rc != CLI_OK)
		return rc;
	rcds_list l = {0};
	if (rcds_query(c, prefix, NULL, 0, &l, err, sizeof(err)) != SNIPE_OK) {
		rc = cli_fail(CLI_FAIL, "ckpt: %s", err);
		goto out;
	}
	json_t *a = json ? json_array() : NULL;
	if (!json)
		printf("%6s %6s %12s %12s  %s\n", "SEQ", "EPOCH", "SIZE", "NEW_BYTES", "HOSTS");
	for (size_t i = 0; i < l.count;) {
		size_t j = i;
		while (j < l.count && strcmp(l.items[j].urn, l.items[i].urn) == 0)
			j++;
		if (json)
			json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "urn",
			                                   l.items[i].urn, "seq", attr(&l, i, j, "seq"),
			                                   "epoch", attr(&l, i, j, "epoch"), "size",
			                                   attr(&l, i, j, "size"), "new_bytes",
			                                   attr(&l, i, j, "new_bytes"), "hosts",
			                                   attr(&l, i, j, "hosts")));
		else
			printf("%6s %6s %12s %12s  %s\n", attr(&l, i, j, "seq"), attr(&l, i, j, "epoch"),
			       attr(&l, i, j, "size"), attr(&l, i, j, "new_bytes"),
			       attr(&l, i, j, "hosts"));
		i = j;
	}
	if (json) {
		char *s = json_dumps(a, JSON_INDENT(2));
		if (s != NULL)
			puts(s);
		free(s);
		json_decref(a);
	}
out:
	rcds_list_free(&l);
	rcds_client_close(c);
	snipe_key_free(key);
	return rc;
}

int cmd_ckpt(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {0},
	};
	bool json = false;
	int opt;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (opt == 'j') {
			json = true;
		} else if (opt == 'h') {
			fputs(usage, stdout);
			return CLI_OK;
		} else {
			fputs(usage, stderr);
			return CLI_USAGE;
		}
	}
	if (optind + 1 != argc) {
		fputs(usage, stderr);
		return CLI_USAGE;
	}
	if (strcmp(argv[optind], "commit") == 0)
		return commit();
	return list(c, argv[optind], json);
}
