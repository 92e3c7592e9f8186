/*
 * catalog.c — the catalog commands of `snipe`: lookup, query, assert, watch, and
 * `catalog status|add|remove`. Tables for people by default, --json (jansson) for
 * programs.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "rcds.h"

/* A membership change waits for the new replica to catch up: give it time. */
#define MEMBER_TIMEOUT_MS 30000

/* ------------------------------------------------------------------ helpers */

int cli_open_catalog(const struct cli *c, snipe_key **key, rcds_client **client)
{
	const char *endpoints = snipe_client_catalog(c->cfg, c->catalog_flag);
	if (endpoints == NULL)
		return cli_fail(CLI_USAGE, "no catalog: pass --catalog ENDPOINTS or set "
		                           "SNIPE_CATALOG (see 'snipe cluster up')");
	int rc = cli_load_key(c, key);
	if (rc != CLI_OK)
		return rc;
	char err[512];
	if (rcds_client_open(endpoints, *key, client, err, sizeof(err)) != SNIPE_OK) {
		snipe_key_free(*key);
		*key = NULL;
		return cli_fail(CLI_USAGE, "%s", err);
	}
	/* A command runs once and has no index of its own: read what the leader has. */
	rcds_client_set_leader_reads(*client, true);
	return CLI_OK;
}

static bool printable(const uint8_t *v, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (v[i] < 0x20 || v[i] == 0x7f)
			return false;
	return true;
}

/* Text values as they are; anything else as 0x<hex>. Returns a malloc'd string. */
static char *show_value(const rcds_assertion *a)
{
	if (printable(a->value, a->value_len))
		return strdup((const char *)a->value);
	char *s = malloc(2 * a->value_len + 3);
	if (s == NULL)
		return NULL;
	strcpy(s, "0x");
	for (size_t i = 0; i < a->value_len; i++)
		sprintf(s + 2 + 2 * i, "%02x", a->value[i]);
	return s;
}

static void author_id(const rcds_assertion *a, char out[SNIPE_KEYID_HEX])
{
	uint8_t id[SNIPE_KEYID_BYTES];
	snipe_keyid(a->author, id);
	snipe_keyid_hex(id, out);
}

static void print_table(const rcds_list *l, bool with_urn)
{
	if (with_urn)
		printf("%-40s ", "URN");
	printf("%-16s %-32s %8s  %s\n", "ATTR", "VALUE", "VERSION", "AUTHOR");
	for (size_t i = 0; i < l->count; i++) {
		const rcds_assertion *a = &l->items[i];
		char *v = show_value(a), id[SNIPE_KEYID_HEX];
		author_id(a, id);
		if (with_urn)
			printf("%-40s ", a->urn);
		printf("%-16s %-32s %8llu  %s\n", a->attr, v != NULL ? v : "?",
		       (unsigned long long)a->version, id);
		free(v);
	}
}

static void print_json(const rcds_list *l)
{
	json_t *root = json_object(), *arr = json_array();
	for (size_t i = 0; i < l->count; i++) {
		const rcds_assertion *a = &l->items[i];
		char *v = show_value(a), id[SNIPE_KEYID_HEX];
		author_id(a, id);
		json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:I, s:I, s:s}", "urn", a->urn,
		                                     "attr", a->attr, "value", v != NULL ? v : "",
		                                     "version", (json_int_t)a->version, "expires_ms",
		                                     (json_int_t)a->expires_ms, "author", id));
		free(v);
	}
	json_object_set_new(root, "index", json_integer((json_int_t)l->index));
	json_object_set_new(root, "assertions", arr);
	json_dumpf(root, stdout, JSON_INDENT(2));
	fputc('\n', stdout);
	json_decref(root);
}

/* Parses the common "[--json] ARGS..." of the read commands. */
static int read_opts(int argc, char **argv, const char *usage, bool *json)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {0}};
	int opt;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (opt == 'j') {
			*json = true;
		} else if (opt == 'h') {
			printf("%s", usage);
			return -1;
		} else {
			fprintf(stderr, "%s", usage);
			return CLI_USAGE;
		}
	}
	return CLI_OK;
}

/* ------------------------------------------------------------------ lookup */

int cmd_lookup(struct cli *c, int argc, char **argv)
{
	static const char usage[] = "usage: snipe lookup URN [--json]\n"
	                            "Shows every assertion about URN, each checked against its "
	                            "author's signature.\n";
	bool json = false;
	int rc = read_opts(argc, argv, usage, &json);
	if (rc != CLI_OK)
		return rc < 0 ? CLI_OK : rc;
	if (argc - optind != 1)
		return cli_fail(CLI_USAGE, "lookup: expected one URN (see 'snipe lookup --help')");
	char err[512];
	const char *urn = argv[optind];
	if (snipe_urn_validate(urn, err, sizeof(err)) != SNIPE_OK)
		return cli_fail(CLI_USAGE, "lookup: %s", err);
	snipe_key *key = NULL;
	rcds_client *client = NULL;
	if ((rc = cli_open_catalog(c, &key, &client)) != CLI_OK)
		return rc;
	rcds_list l;
	int e = rcds_get(client, urn, &l, err, sizeof(err));
	if (e == SNIPE_ENOTFOUND) {
		rc = cli_fail(CLI_FAIL, "lookup: %s: not found", urn);
	} else if (e != SNIPE_OK) {
		rc = cli_fail(CLI_FAIL, "lookup: %s", err);
	} else {
		if (json)
			print_json(&l);
		else
			print_table(&l, false);
		rcds_list_free(&l);
	}
	rcds_client_close(client);
	snipe_key_free(key);
	return rc;
}

/* ------------------------------------------------------------------- query */

/* "attr=value" into a where clause pointing into arg (modified). */
static int split_pair(char *arg, const char **attr, char **value)
{
	char *eq = strchr(arg, '=');
	if (eq == NULL || eq == arg)
		return -1;
	*eq = '\0';
	*attr = arg;
	*value = eq + 1;
	return 0;
}

int cmd_query(struct cli *c, int argc, char **argv)
{
	static const char usage[] =
		"usage: snipe query [PREFIX] [ATTR=VALUE ...] [--json]\n"
		"Lists the assertions of every URN that starts with PREFIX and has every "
		"ATTR=VALUE.\n";
	bool json = false;
	int rc = read_opts(argc, argv, usage, &json);
	if (rc != CLI_OK)
		return rc < 0 ? CLI_OK : rc;
	const char *prefix = "";
	int first = optind;
	if (first < argc && strchr(argv[first], '=') == NULL)
		prefix = argv[first++];
	size_t n = (size_t)(argc - first);
	rcds_where *where = calloc(n ? n : 1, sizeof(*where));
	if (where == NULL)
		return cli_fail(CLI_FAIL, "out of memory");
	for (size_t i = 0; i < n; i++) {
		char *value;
		if (split_pair(argv[first + (int)i], &where[i].attr, &value) != 0) {
			free(where);
			return cli_fail(CLI_USAGE, "query: '%s' is not ATTR=VALUE", argv[first + (int)i]);
		}
		where[i].value = value;
		where[i].value_len = strlen(value);
	}
	snipe_key *key = NULL;
	rcds_client *client = NULL;
	char err[512];
	if ((rc = cli_open_catalog(c, &key, &client)) == CLI_OK) {
		rcds_list l;
		if (rcds_query(client, prefix, where, n, &l, err, sizeof(err)) != SNIPE_OK) {
			rc = cli_fail(CLI_FAIL, "query: %s", err);
		} else {
			if (json)
				print_json(&l);
			else
				print_table(&l, true);
			rcds_list_free(&l);
		}
	}
	free(where);
	rcds_client_close(client);
	snipe_key_free(key);
	return rc;
}

/* ------------------------------------------------------------------ assert */

int cmd_assert(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {{"ttl", required_argument, NULL, 't'},
	                                     {"if-version", required_argument, NULL, 'v'},
	                                     {"help", no_argument, NULL, 'h'},
	                                     {0}};
	static const char usage[] =
		"usage: snipe assert URN ATTR=VALUE ... [--ttl SECONDS] [--if-version N]\n"
		"Signs each ATTR=VALUE about URN with your key and writes them in one atomic "
		"batch.\n--if-version N writes only if every ATTR is at version N (0: absent).\n";
	uint64_t ttl = 0, expect = 0;
	bool check = false;
	int opt;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (opt == 't' && snipe_parse_u64(optarg, 1, 100u * 365 * 86400, &ttl) == SNIPE_OK)
			continue;
		if (opt == 'v' && snipe_parse_u64(optarg, 0, INT64_MAX, &expect) == SNIPE_OK) {
			check = true;
			continue;
		}
		if (opt == 'h') {
			printf("%s", usage);
			return CLI_OK;
		}
		if (opt == 't' || opt == 'v')
			return cli_fail(CLI_USAGE, "assert: '%s' is not a valid number for --%s", optarg,
			                opt == 't' ? "ttl" : "if-version");
		fprintf(stderr, "%s", usage);
		return CLI_USAGE;
	}
	if (argc - optind < 2)
		return cli_fail(CLI_USAGE, "assert: expected URN and at least one ATTR=VALUE");
	char err[512];
	const char *urn = argv[optind];
	if (snipe_urn_validate(urn, err, sizeof(err)) != SNIPE_OK)
		return cli_fail(CLI_USAGE, "assert: %s", err);
	rcds_batch *b = NULL;
	if (rcds_batch_new(&b) != SNIPE_OK)
		return cli_fail(CLI_FAIL, "out of memory");
	uint64_t expires = ttl ? snipe_now_ms() + ttl * 1000 : 0;
	int rc = CLI_OK;
	for (int i = optind + 1; i < argc && rc == CLI_OK; i++) {
		const char *attr;
		char *value;
		if (split_pair(argv[i], &attr, &value) != 0)
			rc = cli_fail(CLI_USAGE, "assert: '%s' is not ATTR=VALUE", argv[i]);
		else if ((check ? rcds_batch_put_if(b, urn, attr, value, strlen(value), expires, expect)
		                : rcds_batch_put(b, urn, attr, value, strlen(value), expires)) != SNIPE_OK)
			rc = cli_fail(CLI_FAIL, "out of memory");
	}
	snipe_key *key = NULL;
	rcds_client *client = NULL;
	if (rc == CLI_OK)
		rc = cli_open_catalog(c, &key, &client);
	uint64_t version = 0;
	if (rc == CLI_OK) {
		int e = rcds_write(client, b, &version, err, sizeof(err));
		if (e != SNIPE_OK)
			rc = cli_fail(CLI_FAIL, "assert: %s (%s)", err, snipe_errname(e));
		else
			printf("%s: written at version %llu\n", urn, (unsigned long long)version);
	}
	rcds_batch_free(b);
	rcds_client_close(client);
	snipe_key_free(key);
	return rc;
}

/* ------------------------------------------------------------------- watch */

static void print_event(const rcds_event *ev, bool json)
{
	char *v = ev->deleted ? NULL : show_value(&ev->assertion);
	if (json) {
		json_t *o = json_pack("{s:I, s:s, s:s, s:b}", "index", (json_int_t)ev->index, "urn",
		                      ev->urn, "attr", ev->attr, "deleted", ev->deleted);
		if (v != NULL)
			json_object_set_new(o, "value", json_string(v));
		json_dumpf(o, stdout, JSON_COMPACT);
		fputc('\n', stdout);
		json_decref(o);
	} else if (ev->deleted) {
		printf("%llu delete %s %s\n", (unsigned long long)ev->index, ev->urn,
		       ev->attr[0] ? ev->attr : "*");
	} else {
		printf("%llu put %s %s=%s\n", (unsigned long long)ev->index, ev->urn, ev->attr,
		       v != NULL ? v : "?");
	}
	fflush(stdout);
	free(v);
}

int cmd_watch(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {{"count", required_argument, NULL, 'n'},
	                                     {"timeout", required_argument, NULL, 't'},
	                                     {"json", no_argument, NULL, 'j'},
	                                     {"help", no_argument, NULL, 'h'},
	                                     {0}};
	static const char usage[] =
		"usage: snipe watch [PREFIX] [--count N] [--timeout MS] [--json]\n"
		"Prints each change applied under PREFIX as it happens: INDEX put URN ATTR=VALUE,\n"
		"or INDEX delete URN ATTR. Stops after N changes, or after MS without one (exit 1).\n";
	uint64_t count = 0, timeout = 0;
	bool json = false;
	int opt;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if ((opt == 'n' && snipe_parse_u64(optarg, 1, UINT32_MAX, &count) != SNIPE_OK) ||
		    (opt == 't' && snipe_parse_u64(optarg, 1, INT32_MAX, &timeout) != SNIPE_OK))
			return cli_fail(CLI_USAGE, "watch: '%s' is not a valid number", optarg);
		if (opt == 'j')
			json = true;
		if (opt == 'h') {
			printf("%s", usage);
			return CLI_OK;
		}
		if (opt == '?') {
			fprintf(stderr, "%s", usage);
			return CLI_USAGE;
		}
	}
	if (argc - optind > 1)
		return cli_fail(CLI_USAGE, "watch: at most one PREFIX");
	const char *prefix = optind < argc ? argv[optind] : "";
	snipe_key *key = NULL;
	rcds_client *client = NULL;
	int rc = cli_open_catalog(c, &key, &client);
	if (rc != CLI_OK)
		return rc;
	rcds_watch *w = NULL;
	char err[512];
	if (rcds_watch_open(client, prefix, &w, err, sizeof(err)) != SNIPE_OK)
		rc = cli_fail(CLI_FAIL, "%s", err);
	for (uint64_t seen = 0; rc == CLI_OK && (count == 0 || seen < count); seen++) {
		rcds_event ev;
		int e = rcds_watch_next(w, timeout ? (int)timeout : -1, &ev, err, sizeof(err));
		if (e != SNIPE_OK) {
			rc = cli_fail(CLI_FAIL, "%s", err);
			break;
		}
		print_event(&ev, json);
		rcds_event_clear(&ev);
	}
	rcds_watch_close(w);
	rcds_client_close(client);
	snipe_key_free(key);
	return rc;
}

/* ------------------------------------------------------------------ status */

/* The Raft group as one replica sees it. */
static json_t *members_json(const rcds_status *st)
{
	json_t *arr = json_array();
	for (size_t i = 0; i < st->nmembers; i++)
		json_array_append_new(arr, json_pack("{s:I, s:s, s:b}", "id",
		                                     (json_int_t)st->members[i].id, "address",
		                                     st->members[i].address, "voter",
		                                     st->members[i].voter));
	return arr;
}

static void print_members(const rcds_status *st)
{
	printf("\nMEMBERS (as replica %llu, %s, sees them)\n", (unsigned long long)st->id,
	       st->state);
	for (size_t i = 0; i < st->nmembers; i++)
		printf("%4llu %-28s %s\n", (unsigned long long)st->members[i].id,
		       st->members[i].address, st->members[i].voter ? "voter" : "non-voter");
}

static int catalog_status(struct cli *c, bool json)
{
	const char *list = snipe_client_catalog(c->cfg, c->catalog_flag);
	snipe_key *key = NULL;
	rcds_client *client = NULL;
	int rc = cli_open_catalog(c, &key, &client);
	if (rc != CLI_OK)
		return rc;
	rcds_client_set_timeout(client, 1000);
	char *copy = strdup(list), *save = NULL;
	json_t *arr = json_array();
	int answered = 0;
	rcds_status view; /* the leader's answer, else the first one */
	bool have_view = false;
	if (!json)
		printf("%-28s %4s %-11s %6s %6s %9s %9s\n", "ENDPOINT", "ID", "STATE", "LEADER",
		       "TERM", "APPLIED", "COMMIT");
	for (char *ep = strtok_r(copy, ",", &save); ep != NULL; ep = strtok_r(NULL, ",", &save)) {
		rcds_status st;
		char err[256];
		int e = rcds_status_get(client, ep, &st, err, sizeof(err));
		if (e == SNIPE_OK)
			answered++;
		if (e == SNIPE_OK && (!have_view || strcmp(st.state, "leader") == 0)) {
			view = st;
			have_view = true;
		}
		if (json && e == SNIPE_OK) {
			json_t *o = json_pack("{s:s, s:I, s:s, s:I, s:I, s:I, s:I}", "endpoint", ep, "id",
			                      (json_int_t)st.id, "state", st.state, "leader",
			                      (json_int_t)st.leader_id, "term", (json_int_t)st.term,
			                      "applied", (json_int_t)st.applied_index, "commit",
			                      (json_int_t)st.commit_index);
			json_object_set_new(o, "members", members_json(&st));
			json_array_append_new(arr, o);
		} else if (json)
			json_array_append_new(arr, json_pack("{s:s, s:s}", "endpoint", ep, "error",
			                                     snipe_strerror(e)));
		else if (e == SNIPE_OK)
			printf("%-28s %4llu %-11s %6llu %6llu %9llu %9llu\n", ep,
			       (unsigned long long)st.id, st.state, (unsigned long long)st.leader_id,
			       (unsigned long long)st.term, (unsigned long long)st.applied_index,
			       (unsigned long long)st.commit_index);
		else
			printf("%-28s %4s %-11s (%s)\n", ep, "-", "down", snipe_strerror(e));
	}
	if (!json && have_view)
		print_members(&view);
	if (json) {
		json_dumpf(arr, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
	}
	json_decref(arr);
	free(copy);
	rcds_client_close(client);
	snipe_key_free(key);
	return answered > 0 ? CLI_OK : cli_fail(CLI_FAIL, "catalog: no replica answered");
}

/* -------------------------------------------------------------- membership */

/* argv[0] is "add" (ID HOST:PORT follow) or "remove" (ID follows). */
static int catalog_member(struct cli *c, int argc, char **argv, const char *usage)
{
	static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {0}};
	const char *what = argv[0];
	bool add = strcmp(what, "add") == 0;
	int opt = getopt_long(argc, argv, "h", opts, NULL);
	if (opt != -1) { /* --help, or an option these commands do not have */
		fprintf(opt == 'h' ? stdout : stderr, "%s", usage);
		return opt == 'h' ? CLI_OK : CLI_USAGE;
	}
	if (argc - optind != (add ? 2 : 1))
		return cli_fail(CLI_USAGE, "catalog %s: expected %s (see 'snipe catalog --help')",
		                what, add ? "ID HOST:PORT" : "ID");
	uint64_t id = 0;
	if (snipe_parse_u64(argv[optind], 1, INT64_MAX, &id) != SNIPE_OK)
		return cli_fail(CLI_USAGE, "catalog %s: '%s' is not a replica id (1 to 2^63-1)", what,
		                argv[optind]);
	const char *address = add ? argv[optind + 1] : NULL;
	if (add && (strchr(address, ':') == NULL || strlen(address) > 63))
		return cli_fail(CLI_USAGE, "catalog add: '%s' is not the HOST:PORT of a Raft "
		                "transport", address);
	snipe_key *key = NULL;
	rcds_client *client = NULL;
	int rc = cli_open_catalog(c, &key, &client);
	if (rc != CLI_OK)
		return rc;
	rcds_client_set_timeout(client, MEMBER_TIMEOUT_MS);
	char err[512];
	int e = add ? rcds_member_add(client, id, address, err, sizeof(err))
	            : rcds_member_remove(client, id, err, sizeof(err));
	if (e != SNIPE_OK)
		rc = cli_fail(CLI_FAIL, "catalog %s: %s (%s)", what, err, snipe_errname(e));
	else if (add)
		printf("replica %llu (%s) is a voting member\n", (unsigned long long)id, address);
	else
		printf("replica %llu is no longer a member: stop its rcdsd now\n",
		       (unsigned long long)id);
	rcds_client_close(client);
	snipe_key_free(key);
	return rc;
}

int cmd_catalog(struct cli *c, int argc, char **argv)
{
	static const char usage[] =
		"usage: snipe catalog status [--json]\n"
		"       snipe catalog add ID HOST:PORT\n"
		"       snipe catalog remove ID\n"
		"status  shows each catalog replica: its Raft state, leader, term and indexes.\n"
		"add     makes replica ID a voting member; it must already run 'rcdsd --join' with\n"
		"        its Raft transport at HOST:PORT. Waits (up to 30 s) while it catches up.\n"
		"remove  takes replica ID out of the group; its rcdsd keeps running until you\n"
		"        stop it. add and remove need the admin key.\n";
	if (argc >= 2 && (strcmp(argv[1], "add") == 0 || strcmp(argv[1], "remove") == 0))
		return catalog_member(c, argc - 1, argv + 1, usage);
	if (argc < 2 || strcmp(argv[1], "status") != 0) {
		bool help = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
		fprintf(help ? stdout : stderr, "%s", usage);
		return help ? CLI_OK : CLI_USAGE;
	}
	bool json = false;
	int rc = read_opts(argc - 1, argv + 1, usage, &json);
	if (rc != CLI_OK)
		return rc < 0 ? CLI_OK : rc;
	return catalog_status(c, json);
}
