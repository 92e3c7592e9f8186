/* keygen.c — `snipe keygen`: create an Ed25519 identity and say its key id. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static void keygen_usage(FILE *to)
{
	fprintf(to, "usage: snipe keygen [--out FILE] [--force]\n"
	            "Writes a new private key to FILE (mode 0600) and its public key to "
	            "FILE.pub.\nFILE defaults to the client key (--key, $SNIPE_KEY), else "
	            "~/.snipe/key.\n--force replaces existing files.\n");
}

/* ~/.snipe/key, creating ~/.snipe (0700) if needed. */
static int default_path(char *buf, size_t len)
{
	const char *home = getenv("HOME");
	if (home == NULL || *home == '\0')
		return cli_fail(CLI_USAGE, "HOME is not set; pass --out FILE");
	snprintf(buf, len, "%s/.snipe", home);
	if (mkdir(buf, 0700) != 0 && errno != EEXIST)
		return cli_fail(CLI_FAIL, "cannot create %s: %s", buf, strerror(errno));
	strncat(buf, "/key", len - strlen(buf) - 1);
	return CLI_OK;
}

int cmd_keygen(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{"out", required_argument, NULL, 'o'},
		{"force", no_argument, NULL, 'F'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *out = NULL;
	bool force = false;
	int opt;
	while ((opt = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'o': out = optarg; break;
		case 'F': force = true; break;
		case 'h': keygen_usage(stdout); return CLI_OK;
		default: keygen_usage(stderr); return CLI_USAGE;
		}
	}
	if (optind != argc)
		return cli_fail(CLI_USAGE, "keygen: unexpected argument '%s'", argv[optind]);
	char path[4096];
	if (out == NULL)
		out = snipe_client_key(c->cfg, c->key_flag);
	if (out == NULL) {
		int rc = default_path(path, sizeof(path));
		if (rc != CLI_OK)
			return rc;
		out = path;
	}

	snipe_key *k = NULL;
	if (snipe_key_generate(&k) != SNIPE_OK)
		return cli_fail(CLI_FAIL, "keygen: cannot generate a key");
	char err[512];
	int rc = snipe_key_save(k, out, force, err, sizeof(err));
	if (rc == SNIPE_OK) {
		char pk[SNIPE_PK_HEX], id[SNIPE_KEYID_HEX];
		uint8_t raw_id[SNIPE_KEYID_BYTES];
		snipe_pk_hex(snipe_key_public(k), pk);
		snipe_keyid(snipe_key_public(k), raw_id);
		snipe_keyid_hex(raw_id, id);
		printf("private key: %s (mode 0600)\n"
		       "public key:  %s.pub\n"
		       "public:      %s\n"
		       "key id:      urn:snipe:key:%s\n",
		       out, out, pk, id);
	}
	snipe_key_free(k);
	return rc == SNIPE_OK ? CLI_OK : cli_fail(CLI_FAIL, "keygen: %s", err);
}
