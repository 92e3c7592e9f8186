/*
 * test_chunk.c — checkpoint blocks: content-defined cut points (bounds, determinism,
 * and stability: an insertion or an overwrite changes only the blocks around it), the
 * block format (hash + zstd, every kind of damage caught), and manifests signed as
 * catalog assertions (a changed byte or another signer is caught).
 */
#include <stdlib.h>
#include <string.h>

#include "ckpt.pb-c.h"
#include "sni.h"
#include "testutil.h"

#define MIB (1024u * 1024u)

struct cuts {
	size_t *end; /* end offset of each block */
	size_t n;
};

static struct cuts cut_all(const uint8_t *p, size_t len)
{
	struct cuts c = {malloc((len / SNI_CHUNK_MIN + 2) * sizeof(size_t)), 0};
	ck_assert_ptr_nonnull(c.end);
	for (size_t off = 0; off < len;) {
		size_t n = sni_chunk_cut(p + off, len - off);
		ck_assert_uint_gt(n, 0);
		off += n;
		c.end[c.n++] = off;
	}
	return c;
}

/* How many blocks of b (by content) are not blocks of a. */
static size_t new_blocks(const uint8_t *a, struct cuts ca, const uint8_t *b, struct cuts cb)
{
	size_t fresh = 0;
	for (size_t j = 0; j < cb.n; j++) {
		size_t bs = j ? cb.end[j - 1] : 0, bl = cb.end[j] - bs;
		bool found = false;
		for (size_t i = 0; i < ca.n && !found; i++) {
			size_t as = i ? ca.end[i - 1] : 0, al = ca.end[i] - as;
			found = al == bl && memcmp(a + as, b + bs, bl) == 0;
		}
		fresh += !found;
	}
	return fresh;
}

/* n random bytes from a fresh seed each run (SNIPE_TEST_SEED picks one). */
static uint8_t *random_bytes(size_t n, const char *who)
{
	struct tu_rng r;
	uint8_t *p = malloc(n + 4096);
	ck_assert_ptr_nonnull(p);
	tu_rng_init(&r, who);
	tu_rng_bytes(&r, p, n);
	return p;
}

/* ------------------------------------------------------------------- cuts */

START_TEST(test_blocks_stay_within_bounds_and_cover_the_input)
{
	size_t len = 16 * MIB;
	uint8_t *p = random_bytes(len, "bounds");
	struct cuts c = cut_all(p, len);
	ck_assert_uint_eq(c.end[c.n - 1], len);
	for (size_t i = 0; i + 1 < c.n; i++) {
		size_t n = c.end[i] - (i ? c.end[i - 1] : 0);
		ck_assert_uint_ge(n, SNI_CHUNK_MIN);
		ck_assert_uint_le(n, SNI_CHUNK_MAX);
	}
	/* 16 MiB in blocks averaging 64 KiB: about 256 of them, not a handful or thousands */
	ck_assert_uint_gt(c.n, 128);
	ck_assert_uint_lt(c.n, 512);
	free(c.end);
	free(p);
}
END_TEST

START_TEST(test_small_inputs_are_one_block)
{
	uint8_t buf[SNI_CHUNK_MIN] = {0};
	ck_assert_uint_eq(sni_chunk_cut(buf, 0), 0);
	ck_assert_uint_eq(sni_chunk_cut(buf, 1), 1);
	ck_assert_uint_eq(sni_chunk_cut(buf, sizeof(buf)), sizeof(buf));
}
END_TEST

START_TEST(test_uniform_input_is_cut_at_the_maximum)
{
	size_t len = 3 * SNI_CHUNK_MAX + 5;
	uint8_t *p = calloc(1, len);
	ck_assert_ptr_nonnull(p);
	/* no content to cut on: the maximum size decides */
	ck_assert_uint_eq(sni_chunk_cut(p, len), SNI_CHUNK_MAX);
	free(p);
}
END_TEST

START_TEST(test_cuts_are_deterministic)
{
	size_t len = 4 * MIB;
	uint8_t *p = random_bytes(len, "deterministic");
	struct cuts a = cut_all(p, len), b = cut_all(p, len);
	ck_assert_uint_eq(a.n, b.n);
	ck_assert_mem_eq(a.end, b.end, a.n * sizeof(size_t));
	free(a.end);
	free(b.end);
	free(p);
}
END_TEST

START_TEST(test_an_insertion_changes_only_nearby_blocks)
{
	size_t len = 8 * MIB, at = 3 * MIB + 12345, ins = 1000;
	uint8_t *a = random_bytes(len, "insertion");
	uint8_t *b = malloc(len + ins);
	ck_assert_ptr_nonnull(b);
	memcpy(b, a, at);
	memset(b + at, 0x5a, ins);
	memcpy(b + at + ins, a + at, len - at);
	struct cuts ca = cut_all(a, len), cb = cut_all(b, len + ins);
	/* the block holding the insertion, now and then a few after it (snipe/chunk.c: over
	 * 3000 inputs, 1 block 2930 times, 2 or 3 69 times, 7 once): never the ~70 after it */
	size_t fresh = new_blocks(a, ca, b, cb);
	ck_assert_uint_ge(fresh, 1);
	ck_assert_uint_le(fresh, 10);
	free(ca.end);
	free(cb.end);
	free(a);
	free(b);
}
END_TEST

START_TEST(test_overwriting_5_percent_changes_about_5_percent_of_blocks)
{
	size_t len = 16 * MIB;
	uint8_t *a = random_bytes(len, "overwrite");
	uint8_t *b = tu_copy(a, len);
	/* 5% dirty, in 8 spots spread over the buffer */
	for (size_t k = 0; k < 8; k++)
		memset(b + k * (len / 8) + 1000, (int)k, len / 20 / 8);
	struct cuts ca = cut_all(a, len), cb = cut_all(b, len);
	size_t fresh = new_blocks(a, ca, b, cb);
	/* each spot changes a block or two (over 3000 inputs, 8 to 21 of ~212 blocks in
	 * all): never most of them */
	ck_assert_uint_ge(fresh, 8);
	ck_assert_uint_le(fresh, 30);
	free(ca.end);
	free(cb.end);
	free(a);
	free(b);
}
END_TEST

/* ----------------------------------------------------------------- blocks */

START_TEST(test_a_block_round_trips_and_any_damage_is_caught)
{
	size_t n = 70000;
	uint8_t *data = random_bytes(n, "block"), hash[SNI_HASH_BYTES], *z = NULL;
	size_t zlen = 0;
	ck_assert_int_eq(sni_block_make(data, n, hash, &z, &zlen), SNIPE_OK);
	uint8_t *out = malloc(n);
	ck_assert_int_eq(sni_block_open(hash, (uint32_t)n, z, zlen, out), SNIPE_OK);
	ck_assert_mem_eq(out, data, n);
	/* wrong size, wrong hash, flipped byte, truncated */
	tu_assert_code(sni_block_open(hash, (uint32_t)n - 1, z, zlen, out), SNIPE_ECORRUPT);
	uint8_t other[SNI_HASH_BYTES];
	memcpy(other, hash, sizeof(other));
	other[7] ^= 1;
	tu_assert_code(sni_block_open(other, (uint32_t)n, z, zlen, out), SNIPE_ECORRUPT);
	z[zlen / 2] ^= 0x10;
	tu_assert_code(sni_block_open(hash, (uint32_t)n, z, zlen, out), SNIPE_ECORRUPT);
	z[zlen / 2] ^= 0x10;
	tu_assert_code(sni_block_open(hash, (uint32_t)n, z, zlen / 2, out), SNIPE_ECORRUPT);
	ck_assert_int_eq(sni_block_open(hash, (uint32_t)n, z, zlen, out), SNIPE_OK);
	free(z);
	free(out);
	free(data);
}
END_TEST

START_TEST(test_compressible_blocks_shrink)
{
	size_t n = SNI_CHUNK_AVG;
	uint8_t *data = calloc(1, n), hash[SNI_HASH_BYTES], *z = NULL;
	size_t zlen = 0;
	ck_assert_int_eq(sni_block_make(data, n, hash, &z, &zlen), SNIPE_OK);
	ck_assert_uint_lt(zlen, n / 100);
	free(z);
	free(data);
}
END_TEST

/* -------------------------------------------------------------- manifests */

/* A manifest as the agent writes it: the `manifest` assertion of its ckpt URN. */
static void signed_manifest(const snipe_key *k, uint8_t **content, size_t *clen,
                            uint8_t sig[SNIPE_SIG_BYTES])
{
	uint8_t hash[SNI_HASH_BYTES] = {1, 2, 3};
	Snipe__BlockRef ref = SNIPE__BLOCK_REF__INIT, *refs[] = {&ref};
	Snipe__Part part = SNIPE__PART__INIT, *parts[] = {&part};
	Snipe__Manifest m = SNIPE__MANIFEST__INIT;
	char *hosts[] = {"host1", "host2"};
	ref.hash = (ProtobufCBinaryData){sizeof(hash), hash};
	ref.size = 65536;
	part.name = "";
	part.size = 65536;
	part.blocks = refs;
	part.n_blocks = 1;
	m.proc = "urn:snipe:proc:sim-42";
	m.epoch = 3;
	m.seq = 7;
	m.parts = parts;
	m.n_parts = 1;
	m.hosts = hosts;
	m.n_hosts = 2;
	uint8_t buf[512];
	size_t len = snipe__manifest__pack(&m, buf);
	ck_assert_int_eq(sni_assertion_sign(k, "urn:snipe:ckpt:sim-42/7", "manifest", buf, len, 0,
	                                    content, clen, sig),
	                 SNIPE_OK);
}

START_TEST(test_a_signed_manifest_verifies_and_decodes)
{
	snipe_key *k = NULL;
	uint8_t *content = NULL, sig[SNIPE_SIG_BYTES];
	size_t clen = 0;
	Snipe__AssertionContent *ct = NULL;
	ck_assert_int_eq(snipe_key_generate(&k), SNIPE_OK);
	signed_manifest(k, &content, &clen, sig);
	ck_assert_int_eq(sni_assertion_check(content, clen, snipe_key_public(k), SNIPE_PK_BYTES,
	                                     sig, sizeof(sig), true, &ct, NULL, 0),
	                 SNIPE_OK);
	Snipe__Manifest *m = snipe__manifest__unpack(NULL, ct->value.len, ct->value.data);
	ck_assert_ptr_nonnull(m);
	ck_assert_str_eq(m->proc, "urn:snipe:proc:sim-42");
	ck_assert_uint_eq(m->epoch, 3);
	ck_assert_uint_eq(m->seq, 7);
	ck_assert_uint_eq(m->n_hosts, 2);
	ck_assert_uint_eq(m->parts[0]->blocks[0]->size, 65536);
	snipe__manifest__free_unpacked(m, NULL);
	snipe__assertion_content__free_unpacked(ct, NULL);
	free(content);
	snipe_key_free(k);
}
END_TEST

START_TEST(test_a_changed_manifest_or_another_signer_is_refused)
{
	snipe_key *k = NULL, *other = NULL;
	uint8_t *content = NULL, sig[SNIPE_SIG_BYTES];
	size_t clen = 0;
	ck_assert_int_eq(snipe_key_generate(&k), SNIPE_OK);
	ck_assert_int_eq(snipe_key_generate(&other), SNIPE_OK);
	signed_manifest(k, &content, &clen, sig);
	/* every byte of the signed content matters */
	for (size_t i = 0; i < clen; i++) {
		content[i] ^= 0x01;
		int rc = sni_assertion_check(content, clen, snipe_key_public(k), SNIPE_PK_BYTES, sig,
		                             sizeof(sig), true, NULL, NULL, 0);
		ck_assert_msg(rc != SNIPE_OK, "byte %zu changed, still accepted", i);
		content[i] ^= 0x01;
	}
	tu_assert_code(sni_assertion_check(content, clen, snipe_key_public(other), SNIPE_PK_BYTES,
	                                   sig, sizeof(sig), true, NULL, NULL, 0),
	               SNIPE_EBADSIG);
	free(content);
	snipe_key_free(k);
	snipe_key_free(other);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("chunk");
	TCase *tc = tcase_create("cuts");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_blocks_stay_within_bounds_and_cover_the_input);
	tcase_add_test(tc, test_small_inputs_are_one_block);
	tcase_add_test(tc, test_uniform_input_is_cut_at_the_maximum);
	tcase_add_test(tc, test_cuts_are_deterministic);
	tcase_add_test(tc, test_an_insertion_changes_only_nearby_blocks);
	tcase_add_test(tc, test_overwriting_5_percent_changes_about_5_percent_of_blocks);
	suite_add_tcase(s, tc);
	tc = tcase_create("blocks");
	tcase_add_test(tc, test_a_block_round_trips_and_any_damage_is_caught);
	tcase_add_test(tc, test_compressible_blocks_shrink);
	suite_add_tcase(s, tc);
	tc = tcase_create("manifest");
	tcase_add_test(tc, test_a_signed_manifest_verifies_and_decodes);
	tcase_add_test(tc, test_a_changed_manifest_or_another_signer_is_refused);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(suite());
}
