/*
 * test_blocks.c — the agent's block store: round trips of blocks of every size, blocks
 * refused when their bytes do not match, corrupt copies found on the way out, deleted
 * and repaired, garbage collection by reference and age, usage, and concurrent puts.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "blocks.h"
#include "sni.h"
#include "testutil.h"

/* --------------------------------------------------------------- helpers */

struct blk {
	uint8_t hash[SNI_HASH_BYTES];
	uint8_t *data;
	size_t n;
	uint8_t *z;
	size_t zlen;
};

static struct tu_rng rng;

/* A block of n random bytes (compressible if half is zeros). */
static struct blk blk_random(size_t n)
{
	struct blk b = {.n = n};
	b.data = malloc(n ? n : 1);
	ck_assert_ptr_nonnull(b.data);
	tu_rng_bytes(&rng, b.data, n);
	memset(b.data, 0, n / 2);
	tu_assert_code(sni_block_make(b.data, n, b.hash, &b.z, &b.zlen), SNIPE_OK);
	return b;
}

static void blk_free(struct blk *b)
{
	free(b->data);
	free(b->z);
}

/* DIR/<2 hex>/<64 hex>, malloc'd. */
static char *blk_path(const char *dir, const uint8_t *hash)
{
	char hex[2 * SNI_HASH_BYTES + 1], *p = NULL;
	sni_hex(hash, SNI_HASH_BYTES, hex);
	ck_assert_int_ge(asprintf(&p, "%s/%.2s/%s", dir, hex, hex), 0);
	return p;
}

static bool exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

static size_t nfiles;

static int count_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)path;
	(void)st;
	(void)ftw;
	nfiles += flag == FTW_F;
	return 0;
}

/* Regular files anywhere under dir (blocks and temporary files alike). */
static size_t count_files(const char *dir)
{
	nfiles = 0;
	ck_assert_int_eq(nftw(dir, count_one, 16, FTW_PHYS), 0);
	return nfiles;
}

/* Sets a file's mtime to now - age_ms. */
static void age_file(const char *path, uint64_t age_ms)
{
	uint64_t t = snipe_now_ms() - age_ms;
	struct timespec ts[2] = {
		{.tv_sec = (time_t)(t / 1000), .tv_nsec = (long)(t % 1000) * 1000000},
		{.tv_sec = (time_t)(t / 1000), .tv_nsec = (long)(t % 1000) * 1000000},
	};
	ck_assert_int_eq(utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW), 0);
}

static void expect_get(agent_blocks *s, const struct blk *b)
{
	uint8_t *z = NULL;
	size_t zlen = 0;
	uint32_t size = 99;
	char err[256] = "";
	tu_assert_code(agent_blocks_get(s, b->hash, &z, &zlen, &size, err, sizeof(err)),
	               SNIPE_OK);
	ck_assert_uint_eq(size, b->n);
	ck_assert_uint_eq(zlen, b->zlen);
	ck_assert_mem_eq(z, b->z, zlen);
	uint8_t *out = malloc(size ? size : 1);
	tu_assert_code(sni_block_open(b->hash, size, z, zlen, out), SNIPE_OK);
	if (size > 0)
		ck_assert_mem_eq(out, b->data, size);
	free(out);
	free(z);
}

static int cmp_hash(const void *a, const void *b)
{
	return memcmp(a, b, SNI_HASH_BYTES);
}

static char *dir;
static agent_blocks *store;

static void setup(void)
{
	char err[256] = "";
	tu_rng_init(&rng, "test_blocks");
	dir = tu_tmpdir();
	char *p = tu_path(dir, "blocks");
	tu_assert_code(agent_blocks_open(p, &store, err, sizeof(err)), SNIPE_OK);
	free(p);
}

static void teardown(void)
{
	agent_blocks_close(store);
	store = NULL;
	tu_rmtree(dir);
	dir = NULL;
}

/* The store's own directory. */
static char *sdir(void)
{
	return tu_path(dir, "blocks");
}

/* ------------------------------------------------------------ round trips */

START_TEST(test_put_get_round_trips_blocks_of_every_size)
{
	static const size_t sizes[] = {0, 1, 64 * 1024, 256 * 1024};
	char *d = sdir();
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct blk b = blk_random(sizes[i]);
		char err[256] = "";
		ck_assert(!agent_blocks_has(store, b.hash));
		tu_assert_code(agent_blocks_put(store, b.hash, (uint32_t)b.n, b.z, b.zlen, err,
		                                sizeof(err)),
		               SNIPE_OK);
		ck_assert(agent_blocks_has(store, b.hash));
		char *p = blk_path(d, b.hash);
		ck_assert_msg(exists(p), "%s not written", p);
		free(p);
		expect_get(store, &b);
		blk_free(&b);
	}
	ck_assert_uint_eq(count_files(d), 4);
	tu_assert_code(agent_blocks_sync(store), SNIPE_OK);
	free(d);
}
END_TEST

START_TEST(test_blocks_survive_reopening_the_store)
{
	char err[256] = "";
	struct blk b = blk_random(5000);
	tu_assert_code(agent_blocks_put(store, b.hash, (uint32_t)b.n, b.z, b.zlen, err,
	                                sizeof(err)),
	               SNIPE_OK);
	agent_blocks_close(store);
	char *d = sdir();
	tu_assert_code(agent_blocks_open(d, &store, err, sizeof(err)), SNIPE_OK);
	ck_assert(agent_blocks_has(store, b.hash));
	expect_get(store, &b);
	free(d);
	blk_free(&b);
}
END_TEST

START_TEST(test_open_refuses_a_directory_it_cannot_create)
{
	agent_blocks *s = store; /* must come back NULL */
	char err[256] = "";
	char *p = tu_path(dir, "missing/blocks");
	tu_assert_code(agent_blocks_open(p, &s, err, sizeof(err)), SNIPE_EIO);
	ck_assert_ptr_null(s);
	ck_assert_ptr_nonnull(strstr(err, p));
	free(p);
}
END_TEST

START_TEST(test_get_of_an_absent_block_is_not_found)
{
	struct blk b = blk_random(100);
	uint8_t *z = (uint8_t *)&z;
	size_t zlen = 7;
	uint32_t size = 7;
	char err[256] = "";
	tu_assert_code(agent_blocks_get(store, b.hash, &z, &zlen, &size, err, sizeof(err)),
	               SNIPE_ENOTFOUND);
	ck_assert_ptr_null(z);
	ck_assert_uint_eq(zlen, 0);
	ck_assert_uint_eq(size, 0);
	blk_free(&b);
}
END_TEST

/* ------------------------------------------------------------ bad blocks */

/* A put that must fail with ECORRUPT and leave the store empty. */
static void expect_refused(const uint8_t *hash, uint32_t size, const uint8_t *z, size_t zlen,
                           const char *what)
{
	char err[256] = "";
	int rc = agent_blocks_put(store, hash, size, z, zlen, err, sizeof(err));
	ck_assert_msg(rc == SNIPE_ECORRUPT, "%s: got %s", what, snipe_errname(rc));
	ck_assert_msg(err[0] != '\0', "%s: err left empty", what);
	ck_assert(!agent_blocks_has(store, hash));
	char *d = sdir();
	ck_assert_msg(count_files(d) == 0, "%s: something was stored", what);
	free(d);
}

START_TEST(test_put_refuses_a_wrong_hash_size_or_bytes)
{
	struct blk b = blk_random(1000);
	uint8_t hash[SNI_HASH_BYTES];

	memcpy(hash, b.hash, sizeof(hash));
	hash[5] ^= 0x01;
	expect_refused(hash, (uint32_t)b.n, b.z, b.zlen, "wrong hash");
	ck_assert(!agent_blocks_has(store, b.hash));

	expect_refused(b.hash, (uint32_t)b.n + 1, b.z, b.zlen, "size too big");
	expect_refused(b.hash, (uint32_t)b.n - 1, b.z, b.zlen, "size too small");
	expect_refused(b.hash, 0, b.z, b.zlen, "size zero");
	expect_refused(b.hash, UINT32_MAX, b.z, b.zlen, "size huge");

	uint8_t *z = tu_copy(b.z, b.zlen);
	z[b.zlen - 10] ^= 0x40;
	expect_refused(b.hash, (uint32_t)b.n, z, b.zlen, "flipped byte");
	free(z);
	z = tu_copy(b.z, b.zlen - 1);
	expect_refused(b.hash, (uint32_t)b.n, z, b.zlen - 1, "truncated");
	free(z);
	expect_refused(b.hash, (uint32_t)b.n, b.z, 0, "empty");

	/* the real thing still goes in */
	char err[256] = "";
	tu_assert_code(agent_blocks_put(store, b.hash, (uint32_t)b.n, b.z, b.zlen, err,
	                                sizeof(err)),
	               SNIPE_OK);
	expect_get(store, &b);
	blk_free(&b);
}
END_TEST

/* Damages the stored copy of b: flips a byte in its middle, or cuts it in half. */
static void damage(const char *path, const struct blk *b, int how)
{
	int fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	if (how == 0) {
		uint8_t c;
		off_t at = (off_t)b->zlen / 2;
		ck_assert_int_eq(pread(fd, &c, 1, at), 1);
		c ^= 0x10;
		ck_assert_int_eq(pwrite(fd, &c, 1, at), 1);
	} else {
		ck_assert_int_eq(ftruncate(fd, (off_t)b->zlen / 2), 0);
	}
	close(fd);
}

START_TEST(test_get_deletes_a_corrupt_copy_and_put_repairs_it)
{
	char *d = sdir();
	for (int how = 0; how < 2; how++) {
		struct blk b = blk_random(64 * 1024);
		char err[256] = "";
		uint8_t *z = (uint8_t *)&z;
		size_t zlen = 0;
		uint32_t size = 0;
		tu_assert_code(agent_blocks_put(store, b.hash, (uint32_t)b.n, b.z, b.zlen, err,
		                                sizeof(err)),
		               SNIPE_OK);
		char *p = blk_path(d, b.hash);
		damage(p, &b, how);
		tu_assert_code(agent_blocks_get(store, b.hash, &z, &zlen, &size, err, sizeof(err)),
		               SNIPE_ECORRUPT);
		ck_assert_ptr_null(z);
		ck_assert_msg(!exists(p), "corrupt copy %s left in place", p);
		ck_assert(!agent_blocks_has(store, b.hash));
		tu_assert_code(agent_blocks_get(store, b.hash, &z, &zlen, &size, err, sizeof(err)),
		               SNIPE_ENOTFOUND);
		tu_assert_code(agent_blocks_put(store, b.hash, (uint32_t)b.n, b.z, b.zlen, err,
		                                sizeof(err)),
		               SNIPE_OK);
		expect_get(store, &b);
		free(p);
		blk_free(&b);
	}
	free(d);
}
END_TEST

START_TEST(test_put_replaces_a_corrupt_copy_in_place)
{
	char err[256] = "";
	struct blk b = blk_random(20000);
	char *d = sdir();
	tu_assert_code(agent_blocks_put(store, b.hash, (uint32_t)b.n, b.z, b.zlen, err,
	                                sizeof(err)),
	               SNIPE_OK);
	char *p = blk_path(d, b.hash);
	damage(p, &b, 0);
	tu_assert_code(agent_blocks_put(store, b.hash, (uint32_t)b.n, b.z, b.zlen, err,
	                                sizeof(err)),
	               SNIPE_OK);
	expect_get(store, &b);
	ck_assert_uint_eq(count_files(d), 1);
	free(p);
	free(d);
	blk_free(&b);
}
END_TEST

/* ------------------------------------------------------------------- gc */

START_TEST(test_gc_deletes_exactly_the_unreferenced_old_blocks)
{
	enum { REF_OLD1, REF_OLD2, UNREF_OLD1, UNREF_OLD2, UNREF_YOUNG, REF_YOUNG, N };
	struct blk b[N];
	char err[256] = "";
	char *d = sdir();
	for (int i = 0; i < N; i++) {
		b[i] = blk_random(3000 + (size_t)i);
		tu_assert_code(agent_blocks_put(store, b[i].hash, (uint32_t)b[i].n, b[i].z,
		                                b[i].zlen, err, sizeof(err)),
		               SNIPE_OK);
		char *p = blk_path(d, b[i].hash);
		if (i != UNREF_YOUNG && i != REF_YOUNG)
			age_file(p, 3600 * 1000);
		else
			age_file(p, 30 * 1000);
		free(p);
	}
	/* a temporary file left by a crash, old: collected but not counted */
	char hex[2 * SNI_HASH_BYTES + 1];
	sni_hex(b[0].hash, SNI_HASH_BYTES, hex);
	char *tmp = NULL;
	ck_assert_int_ge(asprintf(&tmp, "%s/%.2s/.tmp-0123456789abcdef", d, hex), 0);
	tu_write_file(tmp, "x", 1, 0600);
	age_file(tmp, 3600 * 1000);

	uint8_t keep[3][SNI_HASH_BYTES];
	memcpy(keep[0], b[REF_OLD1].hash, SNI_HASH_BYTES);
	memcpy(keep[1], b[REF_OLD2].hash, SNI_HASH_BYTES);
	memcpy(keep[2], b[REF_YOUNG].hash, SNI_HASH_BYTES);
	qsort(keep, 3, SNI_HASH_BYTES, cmp_hash);

	size_t deleted = 99;
	tu_assert_code(agent_blocks_gc(store, (const uint8_t(*)[SNI_HASH_BYTES])keep, 3,
	                               snipe_now_ms(), 60 * 1000, &deleted),
	               SNIPE_OK);
	ck_assert_uint_eq(deleted, 2);
	ck_assert(agent_blocks_has(store, b[REF_OLD1].hash));
	ck_assert(agent_blocks_has(store, b[REF_OLD2].hash));
	ck_assert(!agent_blocks_has(store, b[UNREF_OLD1].hash));
	ck_assert(!agent_blocks_has(store, b[UNREF_OLD2].hash));
	ck_assert(agent_blocks_has(store, b[UNREF_YOUNG].hash));
	ck_assert(agent_blocks_has(store, b[REF_YOUNG].hash));
	ck_assert(!exists(tmp));
	ck_assert_uint_eq(count_files(d), 4);

	/* again: nothing more to do */
	tu_assert_code(agent_blocks_gc(store, (const uint8_t(*)[SNI_HASH_BYTES])keep, 3,
	                               snipe_now_ms(), 60 * 1000, &deleted),
	               SNIPE_OK);
	ck_assert_uint_eq(deleted, 0);

	/* with nothing referenced, every old block goes; the young one stays */
	tu_assert_code(agent_blocks_gc(store, NULL, 0, snipe_now_ms(), 60 * 1000, &deleted),
	               SNIPE_OK);
	ck_assert_uint_eq(deleted, 2);
	ck_assert(agent_blocks_has(store, b[UNREF_YOUNG].hash));
	ck_assert(agent_blocks_has(store, b[REF_YOUNG].hash));
	ck_assert_uint_eq(count_files(d), 2);
	for (int i = 0; i < N; i++)
		blk_free(&b[i]);
	free(tmp);
	free(d);
}
END_TEST

START_TEST(test_gc_of_an_empty_store_deletes_nothing)
{
	size_t deleted = 99;
	tu_assert_code(agent_blocks_gc(store, NULL, 0, snipe_now_ms(), 0, &deleted), SNIPE_OK);
	ck_assert_uint_eq(deleted, 0);
}
END_TEST

/* ---------------------------------------------------------------- usage */

START_TEST(test_usage_counts_blocks_and_their_bytes)
{
	uint64_t bytes = 99, want = 0;
	size_t count = 99;
	char err[256] = "";
	tu_assert_code(agent_blocks_usage(store, &bytes, &count), SNIPE_OK);
	ck_assert_uint_eq(bytes, 0);
	ck_assert_uint_eq(count, 0);
	struct blk b[3];
	for (int i = 0; i < 3; i++) {
		b[i] = blk_random(10000 * (size_t)(i + 1));
		want += b[i].zlen;
		tu_assert_code(agent_blocks_put(store, b[i].hash, (uint32_t)b[i].n, b[i].z,
		                                b[i].zlen, err, sizeof(err)),
		               SNIPE_OK);
	}
	/* a second copy of one replaces it */
	tu_assert_code(agent_blocks_put(store, b[1].hash, (uint32_t)b[1].n, b[1].z, b[1].zlen,
	                                err, sizeof(err)),
	               SNIPE_OK);
	tu_assert_code(agent_blocks_usage(store, &bytes, &count), SNIPE_OK);
	ck_assert_uint_eq(count, 3);
	ck_assert_uint_eq(bytes, want);
	for (int i = 0; i < 3; i++)
		blk_free(&b[i]);
}
END_TEST

/* ---------------------------------------------------------- concurrency */

#define PUTTERS 4
#define ROUNDS 50

struct putter {
	pthread_t t;
	const struct blk *b;
	int fails;
	int last_rc;
};

static void *put_loop(void *arg)
{
	struct putter *p = arg;
	for (int i = 0; i < ROUNDS; i++) {
		char err[256];
		int rc = agent_blocks_put(store, p->b->hash, (uint32_t)p->b->n, p->b->z, p->b->zlen,
		                          err, sizeof(err));
		if (rc != SNIPE_OK) {
			p->fails++;
			p->last_rc = rc;
		}
	}
	return NULL;
}

START_TEST(test_concurrent_puts_of_one_block_all_succeed)
{
	struct blk b = blk_random(128 * 1024);
	struct putter p[PUTTERS];
	for (int i = 0; i < PUTTERS; i++) {
		p[i] = (struct putter){.b = &b};
		ck_assert_int_eq(pthread_create(&p[i].t, NULL, put_loop, &p[i]), 0);
	}
	for (int i = 0; i < PUTTERS; i++) {
		pthread_join(p[i].t, NULL);
		ck_assert_msg(p[i].fails == 0, "thread %d: %d puts failed, last %s", i, p[i].fails,
		              snipe_errname(p[i].last_rc));
	}
	expect_get(store, &b);
	char *d = sdir();
	ck_assert_uint_eq(count_files(d), 1);
	free(d);
	blk_free(&b);
}
END_TEST

/* ---------------------------------------------------------------- suite */

static Suite *blocks_suite(void)
{
	Suite *s = suite_create("blocks");
	TCase *tc = tcase_create("store");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_put_get_round_trips_blocks_of_every_size);
	tcase_add_test(tc, test_blocks_survive_reopening_the_store);
	tcase_add_test(tc, test_open_refuses_a_directory_it_cannot_create);
	tcase_add_test(tc, test_get_of_an_absent_block_is_not_found);
	tcase_add_test(tc, test_put_refuses_a_wrong_hash_size_or_bytes);
	tcase_add_test(tc, test_get_deletes_a_corrupt_copy_and_put_repairs_it);
	tcase_add_test(tc, test_put_replaces_a_corrupt_copy_in_place);
	tcase_add_test(tc, test_gc_deletes_exactly_the_unreferenced_old_blocks);
	tcase_add_test(tc, test_gc_of_an_empty_store_deletes_nothing);
	tcase_add_test(tc, test_usage_counts_blocks_and_their_bytes);
	tcase_add_test(tc, test_concurrent_puts_of_one_block_all_succeed);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(blocks_suite());
}
