/*
 * bench_envelope.c — what a signed envelope costs: snipe_env_seal + snipe_env_open
 * per second against bare crypto_sign_detached + crypto_sign_verify_detached of the
 * same body, in one run. Not a test; exits nonzero only if a call fails.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "snipe.h"

#define ROUNDS 5
#define ROUND_SECONDS 0.5
#define BATCH 16
#define REPLAY_CAP (1u << 20)
#define TARGET 1.30

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct raw_ctx {
	unsigned char pk[crypto_sign_PUBLICKEYBYTES];
	unsigned char sk[crypto_sign_SECRETKEYBYTES];
	const uint8_t *body;
	size_t len;
};

struct env_ctx {
	snipe_key *k;
	snipe_verifier *v;
	const uint8_t *body;
	size_t len;
};

/* The baseline: sign and verify the body, nothing else. */
static int raw_once(void *arg)
{
	struct raw_ctx *c = arg;
	unsigned char sig[crypto_sign_BYTES];

	if (crypto_sign_detached(sig, NULL, c->body, c->len, c->sk) != 0)
		return -1;
	if (crypto_sign_verify_detached(sig, c->body, c->len, c->pk) != 0) {
		fprintf(stderr, "bench_envelope: raw signature did not verify\n");
		return -1;
	}
	return 0;
}

/* One envelope's whole life: seal, open (with replay check), clear, free. */
static int env_once(void *arg)
{
	struct env_ctx *c = arg;
	uint8_t *buf = NULL;
	size_t len = 0;
	snipe_env_msg m;
	char err[128] = "";
	int rc;

	rc = snipe_env_seal(c->k, SNIPE_MSG_NOTE, c->body, c->len, &buf, &len);
	if (rc != SNIPE_OK) {
		fprintf(stderr, "bench_envelope: seal: %s\n", snipe_strerror(rc));
		return -1;
	}
	memset(&m, 0, sizeof(m));
	rc = snipe_env_open(c->v, buf, len, SNIPE_MSG_NOTE, &m, err, sizeof(err));
	free(buf);
	if (rc != SNIPE_OK) {
		fprintf(stderr, "bench_envelope: open: %s (%s)\n", snipe_errname(rc), err);
		return -1;
	}
	if (m.body_len != c->len) {
		fprintf(stderr, "bench_envelope: open gave %zu body bytes, want %zu\n", m.body_len,
		        c->len);
		snipe_env_msg_clear(&m);
		return -1;
	}
	snipe_env_msg_clear(&m);
	return 0;
}

/* Runs op in batches for about ROUND_SECONDS; operations per second, or -1 on failure. */
static double measure(int (*op)(void *), void *arg)
{
	unsigned long n = 0;
	double start = now_s();
	double elapsed;

	do {
		for (int i = 0; i < BATCH; i++)
			if (op(arg) != 0)
				return -1;
		n += BATCH;
		elapsed = now_s() - start;
	} while (elapsed < ROUND_SECONDS);
	return (double)n / elapsed;
}

/* Best of ROUNDS interleaved rounds of each, so both see the same machine state. */
static int bench_size(struct raw_ctx *raw, struct env_ctx *env, double *raw_best,
                      double *env_best)
{
	*raw_best = 0;
	*env_best = 0;
	for (int r = 0; r < ROUNDS; r++) {
		double a = measure(raw_once, raw);
		double b = measure(env_once, env);

		if (a < 0 || b < 0)
			return -1;
		if (a > *raw_best)
			*raw_best = a;
		if (b > *env_best)
			*env_best = b;
	}
	return 0;
}

int main(void)
{
	static const size_t sizes[] = { 64, 1024 };
	struct raw_ctx raw;
	struct env_ctx env = { 0 };
	snipe_keyring *kr = NULL;
	uint8_t *body = NULL;
	int status = EXIT_FAILURE;
	int rc;

	if (sodium_init() < 0) {
		fprintf(stderr, "bench_envelope: sodium_init failed\n");
		return EXIT_FAILURE;
	}
	crypto_sign_keypair(raw.pk, raw.sk);
	body = malloc(1024);
	if (body == NULL)
		goto out;
	randombytes_buf(body, 1024);

	if ((rc = snipe_key_generate(&env.k)) != SNIPE_OK ||
	    (rc = snipe_keyring_new(&kr)) != SNIPE_OK ||
	    (rc = snipe_keyring_add(kr, snipe_key_public(env.k))) != SNIPE_OK ||
	    (rc = snipe_verifier_new(kr, SNIPE_SKEW_DEFAULT_MS, REPLAY_CAP, &env.v)) !=
	            SNIPE_OK) {
		fprintf(stderr, "bench_envelope: setup: %s\n", snipe_strerror(rc));
		goto out;
	}

	printf("envelope (seal + open + clear) vs raw Ed25519 (sign + verify), same body\n");
	printf("best of %d interleaved rounds of %.1f s; replay cap %u\n\n", ROUNDS,
	       ROUND_SECONDS, REPLAY_CAP);
	printf("%8s  %12s  %14s  %6s  %7s\n", "body", "raw ops/s", "envelope ops/s", "ratio",
	       "target");
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		double raw_ops, env_ops;

		raw.body = env.body = body;
		raw.len = env.len = sizes[i];
		if (bench_size(&raw, &env, &raw_ops, &env_ops) != 0)
			goto out;
		printf("%6zu B  %12.0f  %14.0f  %6.2f  %7s\n", sizes[i], raw_ops, env_ops,
		       raw_ops / env_ops, "<= 1.30");
		fflush(stdout);
	}
	printf("\nratio = raw ops/s / envelope ops/s (envelope cost per raw cost); "
	       "target <= %.2f\n",
	       TARGET);
	printf("verifier held %zu nonces at the end (cap %u%s)\n", snipe_verifier_cached(env.v),
	       REPLAY_CAP,
	       snipe_verifier_cached(env.v) >= REPLAY_CAP ? ", full: eviction was measured too"
	                                                  : ", never evicted");
	status = EXIT_SUCCESS;
out:
	snipe_verifier_free(env.v);
	snipe_keyring_free(kr);
	snipe_key_free(env.k);
	sodium_memzero(raw.sk, sizeof(raw.sk));
	free(body);
	return status;
}
