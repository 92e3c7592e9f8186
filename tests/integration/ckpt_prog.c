/*
 * ckpt_prog.c — the program test_ckpt.c spawns on its agents: it checkpoints a state
 * of known content in library mode (snipe_ckpt_*) and writes what it saw to a file the
 * test reads. The state is a pure function of (size, seed, step, change): bytes 0-7 hold
 * the step, 8-15 the size, and every later 8-byte word i is splitmix64(base + i), where
 * base is a hash of the seed, or of the seed and the step for the words in the first
 * `change` bytes. So a loaded state names the step it claims to be, and any block from
 * another step shows.
 *
 *   ckpt_prog roundtrip OUT SIZE SEED
 *       save SIZE bytes, load them back through a fresh handle, compare; OUT gets a
 *       "saved ..." and a "loaded ..." line
 *   ckpt_prog incremental OUT SIZE SEED
 *       save; rewrite 5 spots of SIZE/100 bytes and save; insert 1 KiB in the middle
 *       and save; load and compare; OUT gets "save1", "save2", "save3", "loaded" lines
 *   ckpt_prog steps OUT SIZE SEED CHANGE STEPS PAUSE_MS
 *       load the latest checkpoint and check it (or start at step 0), then step, save,
 *       pause, until STEPS; one line per event appended to OUT, each starting with
 *       "e<epoch> "
 *
 * Exit 0 when all went as it should, 3 if a loaded state is not what was saved, 4 if a
 * checkpoint call failed, 2 on bad usage. Not part of libsnipe.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "snipe.h"
#include "testprog.h"

#define HEADER 16u
#define SPOTS 5u
#define INSERT 1024u

/* --------------------------------------------------------------- the state */

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* The state of `step` (see above) into buf[0..size), size >= HEADER. */
static void fill(uint8_t *buf, size_t size, uint64_t seed, uint64_t step, size_t change)
{
	uint64_t hdr[2] = {step, size};
	memcpy(buf, hdr, HEADER);
	/* far apart: no run of one state's words is a run of another's */
	uint64_t base = splitmix64(seed), mixed = splitmix64(seed ^ splitmix64(step));
	for (size_t off = HEADER; off < size; off += 8) {
		uint64_t w = splitmix64((off < change ? mixed : base) + off / 8);
		memcpy(buf + off, &w, size - off < 8 ? size - off : 8);
	}
}

static void hash_hex(const void *buf, size_t len, char out[65])
{
	uint8_t h[32];
	crypto_generichash(h, sizeof(h), buf, len, NULL, 0);
	sodium_bin2hex(out, 65, h, sizeof(h));
}

/* ----------------------------------------------------------------- output */

static void say_stats(const char *what, const snipe_ckpt *c)
{
	snipe_ckpt_stats s;
	snipe_ckpt_get_stats(c, &s);
	tp_say("%s seq=%" PRIu64 " bytes=%" PRIu64 " sent_bytes=%" PRIu64 " sent_blocks=%" PRIu64
	       " blocks=%" PRIu64, what, s.seq, s.bytes, s.sent_bytes, s.sent_blocks, s.blocks);
}

static int fail(int code, const char *what, const char *err)
{
	tp_say("error %s: %s", what, err);
	fprintf(stderr, "ckpt_prog: %s: %s\n", what, err);
	return code;
}

/* Loads the latest checkpoint through a fresh handle and says whether it is want. */
static int load_and_compare(const uint8_t *want, size_t len)
{
	snipe_ckpt *c = NULL;
	char err[512] = "", hash[65];
	void *got = NULL;
	size_t got_len = 0;
	if (snipe_ckpt_open(&c, err, sizeof(err)) != SNIPE_OK)
		return fail(4, "open", err);
	int rc = snipe_ckpt_load(c, &got, &got_len, err, sizeof(err));
	if (rc != SNIPE_OK) {
		snipe_ckpt_close(c);
		return fail(4, "load", err);
	}
	snipe_ckpt_stats s;
	snipe_ckpt_get_stats(c, &s);
	bool equal = got_len == len && memcmp(got, want, len) == 0;
	hash_hex(got, got_len, hash);
	tp_say("loaded seq=%" PRIu64 " len=%zu hash=%s equal=%d", s.seq, got_len, hash, equal);
	free(got);
	snipe_ckpt_close(c);
	return equal ? 0 : 3;
}

/* ------------------------------------------------------------------ modes */

static int roundtrip(size_t size, uint64_t seed)
{
	snipe_ckpt *c = NULL;
	char err[512] = "", hash[65];
	uint8_t *buf = malloc(size);
	if (buf == NULL)
		return fail(4, "malloc", "out of memory");
	fill(buf, size, seed, 0, size);
	hash_hex(buf, size, hash);
	if (snipe_ckpt_open(&c, err, sizeof(err)) != SNIPE_OK)
		return fail(4, "open", err);
	if (snipe_ckpt_save(c, buf, size, err, sizeof(err)) != SNIPE_OK)
		return fail(4, "save", err);
	say_stats("saved", c);
	tp_say("hash=%s", hash);
	snipe_ckpt_close(c);
	int rc = load_and_compare(buf, size);
	free(buf);
	return rc;
}

static int incremental(size_t size, uint64_t seed)
{
	snipe_ckpt *c = NULL;
	char err[512] = "";
	uint8_t *buf = malloc(size + INSERT);
	if (buf == NULL)
		return fail(4, "malloc", "out of memory");
	fill(buf, size, seed, 0, size);
	if (snipe_ckpt_open(&c, err, sizeof(err)) != SNIPE_OK)
		return fail(4, "open", err);
	if (snipe_ckpt_save(c, buf, size, err, sizeof(err)) != SNIPE_OK)
		return fail(4, "save 1", err);
	say_stats("save1", c);

	/* 5% of it, rewritten in place: SPOTS runs of size/100 bytes at 10%, 30%, ... 90% */
	size_t run = size / 100;
	uint8_t *other = malloc(run);
	if (other == NULL)
		return fail(4, "malloc", "out of memory");
	for (size_t k = 0; k < SPOTS; k++) {
		fill(other, run, seed + 1 + k, 0, run);
		memcpy(buf + (2 * k + 1) * (size / 10), other, run);
	}
	free(other);
	if (snipe_ckpt_save(c, buf, size, err, sizeof(err)) != SNIPE_OK)
		return fail(4, "save 2", err);
	say_stats("save2", c);

	/* 1 KiB inserted at 40% (between two of the spots) */
	size_t at = 4 * (size / 10) + 12345;
	memmove(buf + at + INSERT, buf + at, size - at);
	memset(buf + at, 0xa5, INSERT);
	size += INSERT;
	if (snipe_ckpt_save(c, buf, size, err, sizeof(err)) != SNIPE_OK)
		return fail(4, "save 3", err);
	say_stats("save3", c);
	snipe_ckpt_close(c);
	int rc = load_and_compare(buf, size);
	free(buf);
	return rc;
}

static int steps(size_t size, uint64_t seed, size_t change, uint64_t last, uint64_t pause_ms)
{
	snipe_ckpt *c = NULL;
	char err[512] = "";
	uint8_t *buf = malloc(size), *want = malloc(size);
	void *got = NULL;
	size_t len = 0;
	uint64_t step = 0;
	if (buf == NULL || want == NULL)
		return fail(4, "malloc", "out of memory");
	if (snipe_ckpt_open(&c, err, sizeof(err)) != SNIPE_OK)
		return fail(4, "open", err);
	int rc = snipe_ckpt_load(c, &got, &len, err, sizeof(err));
	if (rc == SNIPE_ENOTFOUND) {
		tp_say("fresh start on %s", getenv("SNIPE_HOST"));
	} else if (rc != SNIPE_OK) {
		return fail(4, "load", err);
	} else {
		snipe_ckpt_stats s;
		snipe_ckpt_get_stats(c, &s);
		if (len >= HEADER)
			memcpy(&step, got, sizeof(step));
		fill(want, size, seed, step, change);
		bool ok = len == size && memcmp(got, want, size) == 0;
		tp_say("resumed at step %" PRIu64 " seq %" PRIu64 " on %s %s", step, s.seq,
		       getenv("SNIPE_HOST"), ok ? "ok" : "BAD");
		free(got);
		if (!ok)
			return 3;
	}
	while (step < last) {
		step++;
		fill(buf, size, seed, step, change);
		tp_say("saving step %" PRIu64, step);
		if (snipe_ckpt_save(c, buf, size, err, sizeof(err)) != SNIPE_OK)
			return fail(4, "save", err);
		snipe_ckpt_stats s;
		snipe_ckpt_get_stats(c, &s);
		tp_say("saved step %" PRIu64 " seq=%" PRIu64 " sent_bytes=%" PRIu64, step, s.seq,
		       s.sent_bytes);
		tp_sleep_ms(pause_ms);
	}
	tp_say("done at step %" PRIu64, step);
	snipe_ckpt_close(c);
	free(buf);
	free(want);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (sodium_init() < 0 || argc < 5)
		goto usage;
	tp_init("ckpt_prog", argv[2]);
	size_t size = tp_number(argv[3]);
	uint64_t seed = tp_number(argv[4]);
	if (size < HEADER)
		goto usage;
	if (strcmp(argv[1], "roundtrip") == 0 && argc == 5)
		return roundtrip(size, seed);
	if (strcmp(argv[1], "incremental") == 0 && argc == 5 && size >= 1000)
		return incremental(size, seed);
	if (strcmp(argv[1], "steps") == 0 && argc == 8)
		return steps(size, seed, tp_number(argv[5]), tp_number(argv[6]),
		             tp_number(argv[7]));
usage:
	fprintf(stderr, "usage: ckpt_prog roundtrip|incremental OUT SIZE SEED\n"
	                "       ckpt_prog steps OUT SIZE SEED CHANGE STEPS PAUSE_MS\n");
	return 2;
}
