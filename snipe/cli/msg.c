/*
 * msg.c — `snipe send` and `snipe recv`: messages between processes, from a shell
 * script that a SNIPE agent started (the script speaks with the identity its agent
 * gave it). The work is in libsnipe (snipe/msg.c); this file parses arguments and prints.
 */
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "sni.h"

#define FLUSH_MS 30000 /* how long send waits until its agent has taken the message */

static const char send_usage[] =
	"usage: snipe send URN TEXT [--tag N]\n"
	"(in a process started by a SNIPE agent) sends TEXT to the process URN with tag N\n"
	"(0..4294967295, default 0) and waits until the agent has taken it.\n";

static const char recv_usage[] =
	"usage: snipe recv [--count N] [--timeout-ms MS] [--json]\n"
	"(in a process started by a SNIPE agent) prints N messages (default 1; 0: until a\n"
	"wait times out, which is then no failure), one line each: FROM TAG TEXT, where\n"
	"TEXT is as sent if it is printable UTF-8, else hex:<hex>. --json: one object\n"
	"{\"from\", \"tag\", \"data\"} a line. MS bounds the wait for each message (default\n"
	"-1: forever).\n";

/* The reason for a failure on ctx, for people. */
static const char *reason(const snipe_ctx *ctx, int rc)
{
	const char *e = snipe_error(ctx);
	return e[0] != '\0' ? e : snipe_strerror(rc);
}

/* ------------------------------------------------------------------- send */

int cmd_send(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{"tag", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'}, {0},
	};
	uint64_t tag = 0;
	int opt;
	(void)c;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (opt == 't') {
			if (snipe_parse_u64(optarg, 0, UINT32_MAX, &tag) != SNIPE_OK)
				return cli_fail(CLI_USAGE, "send: --tag '%s' is not a number "
				                           "(0..4294967295)", optarg);
		} else if (opt == 'h') {
			fputs(send_usage, stdout);
			return CLI_OK;
		} else {
			fputs(send_usage, stderr);
			return CLI_USAGE;
		}
	}
	if (optind + 2 != argc) {
		fputs(send_usage, stderr);
		if (optind + 2 < argc)
			return cli_fail(CLI_USAGE, "send: unexpected argument '%s'", argv[optind + 2]);
		return cli_fail(CLI_USAGE, "send: no %s", optind == argc ? "URN" : "TEXT");
	}
	const char *urn = argv[optind], *text = argv[optind + 1];
	snipe_urn u;
	char err[512];
	if (snipe_urn_parse(urn, &u, err, sizeof(err)) != SNIPE_OK)
		return cli_fail(CLI_USAGE, "send: %s", err);
	if (u.kind != SNIPE_KIND_PROC)
		return cli_fail(CLI_USAGE, "send: %s is not a process URN", urn);

	snipe_ctx *ctx = NULL;
	if (snipe_open(NULL, &ctx, err, sizeof(err)) != SNIPE_OK)
		return cli_fail(CLI_FAIL, "send: %s", err);
	int rc = snipe_send(ctx, urn, (uint32_t)tag, text, strlen(text), 0);
	if (rc == SNIPE_OK)
		rc = snipe_flush(ctx, FLUSH_MS);
	int code = rc == SNIPE_OK ? CLI_OK : cli_fail(CLI_FAIL, "send: %s", reason(ctx, rc));
	snipe_close(ctx);
	return code;
}

/* ------------------------------------------------------------------- recv */

/* Whether p prints as is: UTF-8 without control characters, and not "hex:..." (which
 * would read as an encoded message). */
static bool printable(const uint8_t *p, size_t len)
{
	static const uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000}; /* no overlong forms */
	if (len >= 4 && memcmp(p, "hex:", 4) == 0)
		return false;
	for (size_t i = 0; i < len;) {
		uint32_t ch = p[i];
		size_t n = ch < 0x80 ? 1 : (ch & 0xe0) == 0xc0 ? 2 : (ch & 0xf0) == 0xe0 ? 3
		         : (ch & 0xf8) == 0xf0 ? 4 : 0;
		if (n == 0 || n > len - i)
			return false;
		if (n > 1)
			ch &= 0x7fu >> n;
		for (size_t k = 1; k < n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			ch = ch << 6 | (p[i + k] & 0x3fu);
		}
		if (ch < least[n] || ch > 0x10ffff || (ch >= 0xd800 && ch <= 0xdfff) || ch < 0x20 ||
		    (ch >= 0x7f && ch < 0xa0))
			return false;
		i += n;
	}
	return true;
}

/* The message as printed: the text itself or "hex:<hex>". malloc'd; NULL if out of memory. */
static char *shown(const uint8_t *p, size_t len)
{
	bool plain = printable(p, len);
	char *s = malloc(plain ? len + 1 : 4 + 2 * len + 1);
	if (s == NULL)
		return NULL;
	if (plain) {
		memcpy(s, p, len);
		s[len] = '\0';
	} else {
		memcpy(s, "hex:", 4);
		sni_hex(p, len, s + 4);
	}
	return s;
}

static int print_msg(const char *from, uint32_t tag, const void *buf, size_t len, bool json)
{
	char *data = shown(buf, len);
	if (data == NULL)
		return cli_fail(CLI_FAIL, "out of memory");
	if (json) {
		json_t *o = json_pack("{s:s, s:I, s:s}", "from", from, "tag", (json_int_t)tag,
		                      "data", data);
		char *line = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
		json_decref(o);
		free(data);
		if (line == NULL)
			return cli_fail(CLI_FAIL, "out of memory");
		printf("%s\n", line);
		free(line);
	} else {
		printf("%s %u %s\n", from, tag, data);
		free(data);
	}
	fflush(stdout); /* scripts read the lines as they come */
	return CLI_OK;
}

int cmd_recv(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{"count", required_argument, NULL, 'n'}, {"timeout-ms", required_argument, NULL, 't'},
		{"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {0},
	};
	uint64_t count = 1, ms = 0;
	int timeout_ms = -1, opt;
	bool json = false;
	(void)c;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (opt == 'n') {
			if (snipe_parse_u64(optarg, 0, UINT32_MAX, &count) != SNIPE_OK)
				return cli_fail(CLI_USAGE, "recv: --count '%s' is not a number "
				                           "(0..4294967295)", optarg);
		} else if (opt == 't') {
			bool forever = strcmp(optarg, "-1") == 0;
			if (!forever && snipe_parse_u64(optarg, 0, INT_MAX, &ms) != SNIPE_OK)
				return cli_fail(CLI_USAGE, "recv: --timeout-ms '%s' is not milliseconds "
				                           "(0..%d, or -1: forever)", optarg, INT_MAX);
			timeout_ms = forever ? -1 : (int)ms;
		} else if (opt == 'j') {
			json = true;
		} else if (opt == 'h') {
			fputs(recv_usage, stdout);
			return CLI_OK;
		} else {
			fputs(recv_usage, stderr);
			return CLI_USAGE;
		}
	}
	if (optind != argc) {
		fputs(recv_usage, stderr);
		return cli_fail(CLI_USAGE, "recv: unexpected argument '%s'", argv[optind]);
	}

	snipe_ctx *ctx = NULL;
	char err[512];
	if (snipe_open(NULL, &ctx, err, sizeof(err)) != SNIPE_OK)
		return cli_fail(CLI_FAIL, "recv: %s", err);
	int code = CLI_OK;
	for (uint64_t i = 0; code == CLI_OK && (count == 0 || i < count); i++) {
		const char *from = NULL;
		uint32_t tag = 0;
		void *buf = NULL;
		size_t len = 0;
		int rc = snipe_recv(ctx, &from, &tag, &buf, &len, timeout_ms);
		if (rc == SNIPE_ETIMEDOUT && count == 0)
			break;
		if (rc == SNIPE_ETIMEDOUT)
			code = cli_fail(CLI_FAIL, "recv: no message within %d ms", timeout_ms);
		else if (rc != SNIPE_OK)
			code = cli_fail(CLI_FAIL, "recv: %s", reason(ctx, rc));
		else
			code = print_msg(from, tag, buf, len, json);
		free(buf);
	}
	snipe_close(ctx);
	return code;
}
