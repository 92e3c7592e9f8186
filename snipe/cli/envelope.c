/*
 * envelope.c — `snipe envelope seal|open`: signed envelopes from the shell, for
 * debugging and the demo. seal reads a body and writes the envelope to stdout; open
 * verifies one against trusted public keys and writes the body to stdout.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define BODY_MAX (16u << 20)

static void envelope_usage(FILE *to)
{
	fprintf(to, "usage: snipe envelope seal [--type N] [FILE]\n"
	            "       snipe envelope open --signer PUBKEY|FILE.pub ... [--type N] "
	            "[--skew MS] [FILE]\n"
	            "seal signs FILE (or stdin) with the client key and writes the envelope to "
	            "stdout.\nopen verifies an envelope from FILE (or stdin) and writes its "
	            "body to stdout.\n--type defaults to 1 (note); open accepts any type "
	            "unless --type is given.\n");
}

/* Reads all of FILE ("-" or NULL: stdin), at most BODY_MAX bytes. */
static int slurp(const char *path, uint8_t **out, size_t *len)
{
	FILE *f = (path == NULL || strcmp(path, "-") == 0) ? stdin : fopen(path, "rb");
	if (f == NULL)
		return cli_fail(CLI_FAIL, "envelope: cannot open %s", path);
	uint8_t *buf = malloc(BODY_MAX + 1);
	size_t n = buf != NULL ? fread(buf, 1, BODY_MAX + 1, f) : 0;
	bool bad = buf == NULL || ferror(f) || n > BODY_MAX;
	if (f != stdin)
		fclose(f);
	if (bad) {
		free(buf);
		return cli_fail(CLI_FAIL, "envelope: cannot read %s (at most %u bytes)",
		                path != NULL ? path : "stdin", BODY_MAX);
	}
	*out = buf;
	*len = n;
	return CLI_OK;
}

/* A trusted signer: 64 hex digits, or a .pub file holding them. */
static int add_signer(snipe_keyring *kr, const char *arg)
{
	uint8_t pk[SNIPE_PK_BYTES];
	char text[SNIPE_PK_HEX + 2] = {0};
	if (snipe_pk_parse(arg, pk) != SNIPE_OK) {
		FILE *f = fopen(arg, "r");
		if (f == NULL)
			return cli_fail(CLI_USAGE, "envelope: --signer %s is neither a public key "
			                           "nor a readable file", arg);
		size_t n = fread(text, 1, sizeof(text) - 1, f);
		fclose(f);
		if (n > 0 && text[n - 1] == '\n')
			text[n - 1] = '\0';
		if (snipe_pk_parse(text, pk) != SNIPE_OK)
			return cli_fail(CLI_FAIL, "envelope: %s does not hold a public key", arg);
	}
	return snipe_keyring_add(kr, pk) == SNIPE_OK ? CLI_OK : CLI_FAIL;
}

static int parse_u32(const char *s, const char *what, uint32_t min, uint32_t *out)
{
	uint64_t v;
	if (snipe_parse_u64(s, min, UINT32_MAX, &v) != SNIPE_OK)
		return cli_fail(CLI_USAGE, "envelope: %s must be a number from %u to %u, not '%s'",
		                what, min, UINT32_MAX, s);
	*out = (uint32_t)v;
	return CLI_OK;
}

static int do_seal(struct cli *c, uint32_t type, const char *file)
{
	snipe_key *k = NULL;
	uint8_t *body = NULL, *env = NULL;
	size_t len = 0, env_len = 0;
	int rc = cli_load_key(c, &k);
	if (rc == CLI_OK)
		rc = slurp(file, &body, &len);
	if (rc == CLI_OK && snipe_env_seal(k, type, body, len, &env, &env_len) != SNIPE_OK)
		rc = cli_fail(CLI_FAIL, "envelope: sealing failed");
	if (rc == CLI_OK && fwrite(env, 1, env_len, stdout) != env_len)
		rc = cli_fail(CLI_FAIL, "envelope: cannot write to stdout");
	free(env);
	free(body);
	snipe_key_free(k);
	return rc;
}

static int do_open(snipe_keyring *kr, uint32_t type, uint32_t skew, const char *file)
{
	snipe_verifier *v = NULL;
	uint8_t *buf = NULL;
	size_t len = 0;
	snipe_env_msg m = {0};
	char err[512];
	int rc = slurp(file, &buf, &len);
	if (rc == CLI_OK && snipe_verifier_new(kr, skew, 16, &v) != SNIPE_OK)
		rc = cli_fail(CLI_FAIL, "envelope: out of memory");
	if (rc == CLI_OK) {
		int e = snipe_env_open(v, buf, len, type, &m, err, sizeof(err));
		if (e != SNIPE_OK) {
			rc = cli_fail(CLI_FAIL, "envelope rejected (%s): %s", snipe_errname(e), err);
		} else {
			char id[SNIPE_KEYID_HEX];
			snipe_keyid_hex(m.signer, id);
			fprintf(stderr, "envelope ok: signer urn:snipe:key:%s type %u, %zu bytes\n",
			        id, m.type, m.body_len);
			if (fwrite(m.body, 1, m.body_len, stdout) != m.body_len)
				rc = cli_fail(CLI_FAIL, "envelope: cannot write to stdout");
		}
	}
	snipe_env_msg_clear(&m);
	snipe_verifier_free(v);
	free(buf);
	return rc;
}

int cmd_envelope(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{"type", required_argument, NULL, 't'},
		{"signer", required_argument, NULL, 's'},
		{"skew", required_argument, NULL, 'w'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	if (argc < 2 || (strcmp(argv[1], "seal") != 0 && strcmp(argv[1], "open") != 0)) {
		bool help = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
		envelope_usage(help ? stdout : stderr);
		return help ? CLI_OK : CLI_USAGE;
	}
	bool seal = strcmp(argv[1], "seal") == 0;
	snipe_keyring *kr = NULL;
	if (snipe_keyring_new(&kr) != SNIPE_OK)
		return cli_fail(CLI_FAIL, "out of memory");
	uint32_t type = seal ? SNIPE_MSG_NOTE : SNIPE_MSG_ANY, skew = SNIPE_SKEW_DEFAULT_MS;
	int rc = CLI_OK, opt;
	argc--;
	argv++;
	while (rc == CLI_OK && (opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 't': rc = parse_u32(optarg, "--type", 1, &type); break;
		case 's': rc = add_signer(kr, optarg); break;
		case 'w': rc = parse_u32(optarg, "--skew", 0, &skew); break;
		case 'h': envelope_usage(stdout); snipe_keyring_free(kr); return CLI_OK;
		default: envelope_usage(stderr); rc = CLI_USAGE; break;
		}
	}
	if (rc == CLI_OK && argc - optind > 1)
		rc = cli_fail(CLI_USAGE, "envelope: at most one FILE");
	if (rc == CLI_OK && !seal && snipe_keyring_count(kr) == 0)
		rc = cli_fail(CLI_USAGE, "envelope open: at least one --signer is required");
	const char *file = optind < argc ? argv[optind] : NULL;
	if (rc == CLI_OK)
		rc = seal ? do_seal(c, type, file) : do_open(kr, type, skew, file);
	snipe_keyring_free(kr);
	return rc;
}
