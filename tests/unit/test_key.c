/*
 * test_key.c — Ed25519 identities: generating, saving and loading key files (format,
 * permissions, corruption), key ids, public-key hex, domain-separated signatures, keyrings.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "snipe.h"
#include "testutil.h"

#define KEY_HEADER "snipe-ed25519-secret-v1 "
#define B64_LEN sodium_base64_ENCODED_LEN(crypto_sign_SECRETKEYBYTES, \
                                          sodium_base64_VARIANT_ORIGINAL)

/* --------------------------------------------------------------- helpers */

static void setup(void)
{
	ck_assert_int_ge(sodium_init(), 0);
}

/* The seed is the first half of the secret as written to the key file. */
static void seed_of(const char *path, uint8_t seed[32]);

/* Reads a whole file into a malloc'd, NUL-terminated buffer. */
static char *slurp(const char *path, size_t *lenp)
{
	FILE *f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "fopen %s", path);
	char *buf = malloc(65536);
	ck_assert_ptr_nonnull(buf);
	size_t n = fread(buf, 1, 65535, f);
	fclose(f);
	buf[n] = '\0';
	if (lenp != NULL)
		*lenp = n;
	return buf;
}

static unsigned file_mode(const char *path)
{
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	return (unsigned)(st.st_mode & 07777);
}

/* Writes a key file in the documented format holding the 64-byte libsodium secret sk,
 * after the given comment lines (may be ""). */
static void write_key_file(const char *path, const uint8_t sk[crypto_sign_SECRETKEYBYTES],
                           const char *comments, unsigned mode)
{
	char b64[B64_LEN];
	char text[1024];

	sodium_bin2base64(b64, sizeof(b64), sk, crypto_sign_SECRETKEYBYTES,
	                  sodium_base64_VARIANT_ORIGINAL);
	int n = snprintf(text, sizeof(text), "%s" KEY_HEADER "%s\n", comments, b64);
	ck_assert(n > 0 && (size_t)n < sizeof(text));
	tu_write_file(path, text, (size_t)n, mode);
}

/* Generates a key, saves it as dir/name, returns the key and the path. */
static snipe_key *saved_key(const char *dir, const char *name, char **pathp)
{
	snipe_key *k = NULL;
	char err[256] = "";

	ck_assert_int_eq(snipe_key_generate(&k), SNIPE_OK);
	ck_assert_ptr_nonnull(k);
	*pathp = tu_path(dir, name);
	ck_assert_msg(snipe_key_save(k, *pathp, false, err, sizeof(err)) == SNIPE_OK,
	              "save: %s", err);
	return k;
}

/* Loads path expecting code; on failure err must say something. */
static void expect_load(const char *path, int code)
{
	snipe_key *k = NULL;
	char err[256] = "";
	int rc = snipe_key_load(path, &k, err, sizeof(err));

	ck_assert_msg(rc == code, "load %s: got %s (%d), want %s (%d); err=\"%s\"", path,
	              snipe_errname(rc), rc, snipe_errname(code), code, err);
	if (code != SNIPE_OK)
		ck_assert_msg(err[0] != '\0', "load %s: err left empty", path);
	snipe_key_free(k);
}

static int is_lower_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strchr("0123456789abcdef", s[i]) == NULL || s[i] == '\0')
			return 0;
	return s[n] == '\0';
}

/* --------------------------------------------------------- generate/save */

START_TEST(test_generate_gives_distinct_keys)
{
	snipe_key *a = NULL, *b = NULL;
	ck_assert_int_eq(snipe_key_generate(&a), SNIPE_OK);
	ck_assert_int_eq(snipe_key_generate(&b), SNIPE_OK);
	ck_assert_ptr_nonnull(snipe_key_public(a));
	ck_assert_mem_ne(snipe_key_public(a), snipe_key_public(b), SNIPE_PK_BYTES);
	snipe_key_free(a);
	snipe_key_free(b);
}
END_TEST

START_TEST(test_save_load_round_trip_keeps_key)
{
	char *dir = tu_tmpdir();
	char *path = NULL;
	snipe_key *k = saved_key(dir, "id", &path);
	snipe_key *back = NULL;
	char err[256] = "";
	uint8_t sig[SNIPE_SIG_BYTES];
	static const char msg[] = "hello, snipe";

	ck_assert_int_eq(snipe_key_load(path, &back, err, sizeof(err)), SNIPE_OK);
	ck_assert_ptr_nonnull(back);
	ck_assert_mem_eq(snipe_key_public(back), snipe_key_public(k), SNIPE_PK_BYTES);
	ck_assert_int_eq(snipe_sign(back, "test/v1", msg, sizeof(msg), sig), SNIPE_OK);
	ck_assert_int_eq(snipe_verify(snipe_key_public(k), "test/v1", msg, sizeof(msg), sig),
	                 SNIPE_OK);

	snipe_key_free(back);
	snipe_key_free(k);
	free(path);
	tu_rmtree(dir);
}
END_TEST

START_TEST(test_save_writes_private_file_mode_0600)
{
	char *dir = tu_tmpdir();
	char *path = NULL;
	snipe_key *k = saved_key(dir, "id", &path);

	ck_assert_uint_eq(file_mode(path), 0600);

	snipe_key_free(k);
	free(path);
	tu_rmtree(dir);
}
END_TEST

START_TEST(test_save_writes_pub_file_with_hex)
{
	char *dir = tu_tmpdir();
	char *path = NULL;
	snipe_key *k = saved_key(dir, "id", &path);
	char *pub = tu_path(dir, "id.pub");
	char hex[SNIPE_PK_HEX];
	size_t len = 0;
	char *text = slurp(pub, &len);

	snipe_pk_hex(snipe_key_public(k), hex);
	ck_assert_uint_eq(len, 65);
	ck_assert_int_eq(text[64], '\n');
	text[64] = '\0';
	ck_assert(is_lower_hex(text, 64));
	ck_assert_str_eq(text, hex);

	free(text);
	free(pub);
	snipe_key_free(k);
	free(path);
	tu_rmtree(dir);
}
END_TEST

/* The saved private file: '#' lines, then one header line with the base64 of seed||pk. */
START_TEST(test_save_writes_documented_format)
{
	char *dir = tu_tmpdir();
	char *path = NULL;
	snipe_key *k = saved_key(dir, "id", &path);
	size_t len = 0;
	char *text = slurp(path, &len);
	uint8_t sk[crypto_sign_SECRETKEYBYTES];
	uint8_t pk[crypto_sign_PUBLICKEYBYTES];
	size_t binlen = 0;
	int key_lines = 0;

	ck_assert_uint_gt(len, 0);
	ck_assert_int_eq(text[len - 1], '\n');
	for (char *line = text; *line != '\0';) {
		char *nl = strchr(line, '\n');
		ck_assert_ptr_nonnull(nl);
		*nl = '\0';
		if (line[0] != '#') {
			ck_assert_int_eq(strncmp(line, KEY_HEADER, strlen(KEY_HEADER)), 0);
			const char *b64 = line + strlen(KEY_HEADER);
			ck_assert_uint_eq(strlen(b64), B64_LEN - 1);
			ck_assert_int_eq(sodium_base642bin(sk, sizeof(sk), b64, strlen(b64), NULL,
			                                   &binlen, NULL,
			                                   sodium_base64_VARIANT_ORIGINAL),
			                 0);
			key_lines++;
		}
		line = nl + 1;
	}
	ck_assert_int_eq(key_lines, 1);
	ck_assert_uint_eq(binlen, crypto_sign_SECRETKEYBYTES);
	ck_assert_mem_eq(sk + 32, snipe_key_public(k), SNIPE_PK_BYTES);
	ck_assert_int_eq(crypto_sign_ed25519_sk_to_pk(pk, sk), 0);
	ck_assert_mem_eq(pk, snipe_key_public(k), SNIPE_PK_BYTES);

	sodium_memzero(sk, sizeof(sk));
	free(text);
	snipe_key_free(k);
	free(path);
	tu_rmtree(dir);
}
END_TEST

START_TEST(test_save_refuses_to_overwrite)
{
	char *dir = tu_tmpdir();
	char *path = NULL;
	snipe_key *first = saved_key(dir, "id", &path);
	snipe_key *second = NULL;
	snipe_key *back = NULL;
	char err[256] = "";

	ck_assert_int_eq(snipe_key_generate(&second), SNIPE_OK);
	ck_assert_int_eq(snipe_key_save(second, path, false, err, sizeof(err)), SNIPE_EEXIST);
	ck_assert_str_ne(err, "");
	ck_assert_int_eq(snipe_key_load(path, &back, NULL, 0), SNIPE_OK);
	ck_assert_mem_eq(snipe_key_public(back), snipe_key_public(first), SNIPE_PK_BYTES);

	snipe_key_free(back);
	snipe_key_free(second);
	snipe_key_free(first);
	free(path);
	tu_rmtree(dir);
}
END_TEST

START_TEST(test_save_with_force_overwrites)
{
	char *dir = tu_tmpdir();
	char *path = NULL;
	snipe_key *first = saved_key(dir, "id", &path);
	snipe_key *second = NULL;
	snipe_key *back = NULL;
	char *pub = tu_path(dir, "id.pub");
	char hex[SNIPE_PK_HEX];
	char *text;

	ck_assert_int_eq(snipe_key_generate(&second), SNIPE_OK);
	ck_assert_int_eq(snipe_key_save(second, path, true, NULL, 0), SNIPE_OK);
	ck_assert_uint_eq(file_mode(path), 0600);
	ck_assert_int_eq(snipe_key_load(path, &back, NULL, 0), SNIPE_OK);
	ck_assert_mem_eq(snipe_key_public(back), snipe_key_public(second), SNIPE_PK_BYTES);
	snipe_pk_hex(snipe_key_public(second), hex);
	text = slurp(pub, NULL);
	ck_assert_int_eq(strncmp(text, hex, 64), 0);
	ck_assert_str_eq(text + 64, "\n");

	free(text);
	free(pub);
	snipe_key_free(back);
	snipe_key_free(second);
	snipe_key_free(first);
	free(path);
	tu_rmtree(dir);
}
END_TEST

START_TEST(test_key_free_null_is_noop)
{
	snipe_key_free(NULL);
	snipe_keyring_free(NULL);
}
END_TEST

/* ------------------------------------------------------------------ load */

START_TEST(test_load_missing_file_gives_enoent)
{
	char *dir = tu_tmpdir();
	char *path = tu_path(dir, "absent");
	char *deep = tu_path(dir, "no/such/dir/key");

	expect_load(path, SNIPE_ENOENT);
	expect_load(deep, SNIPE_ENOENT);

	free(deep);
	free(path);
	tu_rmtree(dir);
}
END_TEST

START_TEST(test_load_rejects_group_or_other_access)
{
	static const unsigned modes[] = { 0644, 0640, 0604, 0660, 0620, 0602, 0606, 0666 };
	char *dir = tu_tmpdir();
	char *path = NULL;
	snipe_key *k = saved_key(dir, "id", &path);

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		ck_assert_int_eq(chmod(path, modes[i]), 0);
		expect_load(path, SNIPE_EKEYPERM);
	}

	snipe_key_free(k);
	free(path);
	tu_rmtree(dir);
}
END_TEST

START_TEST(test_load_accepts_owner_only_modes)
{
	char *dir = tu_tmpdir();
	char *path = NULL;
	snipe_key *k = saved_key(dir, "id", &path);

	ck_assert_int_eq(chmod(path, 0400), 0);
	expect_load(path, SNIPE_OK);
	ck_assert_int_eq(chmod(path, 0600), 0);
	expect_load(path, SNIPE_OK);

	snipe_key_free(k);
	free(path);
	tu_rmtree(dir);
}
END_TEST

START_TEST(test_load_rejects_truncated_file)
{
	char *dir = tu_tmpdir();
	char *path = NULL;
	snipe_key *k = saved_key(dir, "id", &path);
	char *cut = tu_path(dir, "cut");
	size_t len = 0;
	char *text = slurp(path, &len);
	size_t lens[] = { 0, 10, len / 2, len - 2 };

	ck_assert_uint_gt(len, 10);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		tu_write_file(cut, text, lens[i], 0600);
		expect_load(cut, SNIPE_EKEYFORMAT);
	}

	free(text);
	free(cut);
	snipe_key_free(k);
	free(path);
	tu_rmtree(dir);
}
END_TEST

/* Replaces the base64 character at offset off of the payload, then expects EKEYFORMAT. */
static void expect_corrupt_rejected(const char *dir, const char *text, size_t len,
                                    size_t off, char with)
{
	char *bad = tu_path(dir, "bad");
	char *copy = malloc(len + 1);
	char *payload;

	ck_assert_ptr_nonnull(copy);
	memcpy(copy, text, len + 1);
	payload = strstr(copy, KEY_HEADER);
	ck_assert_ptr_nonnull(payload);
	payload += strlen(KEY_HEADER);
	if (with == '\0')
		with = payload[off] == 'A' ? 'B' : 'A';
	payload[off] = with;
	tu_write_file(bad, copy, len, 0600);
	expect_load(bad, SNIPE_EKEYFORMAT);
	free(copy);
	free(bad);
}

START_TEST(test_load_rejects_corrupted_payload)
{
	char *dir = tu_tmpdir();
	char *path = NULL;
	snipe_key *k = saved_key(dir, "id", &path);
	size_t len = 0;
	char *text = slurp(path, &len);

	/* another valid base64 character in the seed, then in the public half */
	expect_corrupt_rejected(dir, text, len, 5, '\0');
	expect_corrupt_rejected(dir, text, len, 20, '\0');
	expect_corrupt_rejected(dir, text, len, 60, '\0');
	expect_corrupt_rejected(dir, text, len, 80, '\0');
	/* characters outside the alphabet */
	expect_corrupt_rejected(dir, text, len, 5, '!');
	expect_corrupt_rejected(dir, text, len, 60, '-');
	expect_corrupt_rejected(dir, text, len, 30, ' ');

	free(text);
	snipe_key_free(k);
	free(path);
	tu_rmtree(dir);
}
END_TEST

START_TEST(test_load_reads_documented_format)
{
	char *dir = tu_tmpdir();
	char *path = tu_path(dir, "made");
	uint8_t pk[crypto_sign_PUBLICKEYBYTES];
	uint8_t sk[crypto_sign_SECRETKEYBYTES];
	snipe_key *k = NULL;

	crypto_sign_keypair(pk, sk);
	write_key_file(path, sk, "# a comment\n# another\n", 0600);
	ck_assert_int_eq(snipe_key_load(path, &k, NULL, 0), SNIPE_OK);
	ck_assert_mem_eq(snipe_key_public(k), pk, SNIPE_PK_BYTES);
	snipe_key_free(k);

	write_key_file(path, sk, "", 0600);
	k = NULL;
	ck_assert_int_eq(snipe_key_load(path, &k, NULL, 0), SNIPE_OK);
	ck_assert_mem_eq(snipe_key_public(k), pk, SNIPE_PK_BYTES);

	snipe_key_free(k);
	free(path);
	tu_rmtree(dir);
}
END_TEST

START_TEST(test_load_rejects_mismatched_public_half)
{
	char *dir = tu_tmpdir();
	char *path = tu_path(dir, "mixed");
	uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
	uint8_t pk2[crypto_sign_PUBLICKEYBYTES], sk2[crypto_sign_SECRETKEYBYTES];

	crypto_sign_keypair(pk, sk);
	crypto_sign_keypair(pk2, sk2);
	memcpy(sk + 32, pk2, 32);
	write_key_file(path, sk, "", 0600);
	expect_load(path, SNIPE_EKEYFORMAT);

	free(path);
	tu_rmtree(dir);
}
END_TEST

START_TEST(test_load_rejects_wrong_header_or_payload_size)
{
	char *dir = tu_tmpdir();
	char *path = tu_path(dir, "odd");
	uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
	char b64[B64_LEN];
	char b64short[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
	char text[1024];
	int n;

	crypto_sign_keypair(pk, sk);
	sodium_bin2base64(b64, sizeof(b64), sk, sizeof(sk), sodium_base64_VARIANT_ORIGINAL);
	sodium_bin2base64(b64short, sizeof(b64short), sk, 32, sodium_base64_VARIANT_ORIGINAL);

	n = snprintf(text, sizeof(text), "snipe-ed25519-secret-v2 %s\n", b64);
	tu_write_file(path, text, (size_t)n, 0600);
	expect_load(path, SNIPE_EKEYFORMAT);

	n = snprintf(text, sizeof(text), KEY_HEADER "%s\n", b64short);
	tu_write_file(path, text, (size_t)n, 0600);
	expect_load(path, SNIPE_EKEYFORMAT);

	n = snprintf(text, sizeof(text), "%s\n", b64);
	tu_write_file(path, text, (size_t)n, 0600);
	expect_load(path, SNIPE_EKEYFORMAT);

	n = snprintf(text, sizeof(text), "# only a comment\n");
	tu_write_file(path, text, (size_t)n, 0600);
	expect_load(path, SNIPE_EKEYFORMAT);

	/* exactly one key line */
	n = snprintf(text, sizeof(text), KEY_HEADER "%s\n" KEY_HEADER "%s\n", b64, b64);
	tu_write_file(path, text, (size_t)n, 0600);
	expect_load(path, SNIPE_EKEYFORMAT);

	free(path);
	tu_rmtree(dir);
}
END_TEST

/* ------------------------------------------------------------ ids and hex */

START_TEST(test_keyid_is_blake2b_256_prefix)
{
	for (int i = 0; i < 8; i++) {
		uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
		uint8_t hash[32];
		uint8_t id[SNIPE_KEYID_BYTES];

		crypto_sign_keypair(pk, sk);
		crypto_generichash(hash, sizeof(hash), pk, sizeof(pk), NULL, 0);
		snipe_keyid(pk, id);
		ck_assert_mem_eq(id, hash, SNIPE_KEYID_BYTES);
	}
}
END_TEST

START_TEST(test_keyid_hex_is_20_lower_hex_digits)
{
	static const uint8_t id[SNIPE_KEYID_BYTES] = { 0x00, 0x01, 0xab, 0xcd, 0xef,
		                                       0x10, 0x9f, 0xff, 0x7a, 0x42 };
	char out[SNIPE_KEYID_HEX];

	memset(out, 'Z', sizeof(out));
	snipe_keyid_hex(id, out);
	ck_assert_str_eq(out, "0001abcdef109fff7a42");
	ck_assert(is_lower_hex(out, 20));
}
END_TEST

START_TEST(test_pk_hex_is_64_lower_hex_digits)
{
	uint8_t pk[SNIPE_PK_BYTES];
	char out[SNIPE_PK_HEX];
	char want[SNIPE_PK_HEX];

	for (size_t i = 0; i < sizeof(pk); i++)
		pk[i] = (uint8_t)(i * 37 + 0xa5);
	sodium_bin2hex(want, sizeof(want), pk, sizeof(pk));
	snipe_pk_hex(pk, out);
	ck_assert(is_lower_hex(out, 64));
	ck_assert_str_eq(out, want);
}
END_TEST

START_TEST(test_pk_parse_accepts_lower_and_upper_case)
{
	uint8_t pk[SNIPE_PK_BYTES], back[SNIPE_PK_BYTES];
	char hex[SNIPE_PK_HEX];

	randombytes_buf(pk, sizeof(pk));
	snipe_pk_hex(pk, hex);
	ck_assert_int_eq(snipe_pk_parse(hex, back), SNIPE_OK);
	ck_assert_mem_eq(back, pk, sizeof(pk));

	for (size_t i = 0; i < 64; i++)
		if (hex[i] >= 'a' && hex[i] <= 'f')
			hex[i] = (char)(hex[i] - 'a' + 'A');
	memset(back, 0, sizeof(back));
	ck_assert_int_eq(snipe_pk_parse(hex, back), SNIPE_OK);
	ck_assert_mem_eq(back, pk, sizeof(pk));

	ck_assert_int_eq(snipe_pk_parse("00112233445566778899AaBbCcDdEeFf"
	                                "ffeeddccbbaa99887766554433221100",
	                                back),
	                 SNIPE_OK);
	ck_assert_int_eq(back[0], 0x00);
	ck_assert_int_eq(back[10], 0xaa);
	ck_assert_int_eq(back[15], 0xff);
	ck_assert_int_eq(back[31], 0x00);
}
END_TEST

START_TEST(test_pk_parse_rejects_wrong_length_and_non_hex)
{
	uint8_t pk[SNIPE_PK_BYTES];
	char hex[80];

	memset(hex, 'a', 63);
	hex[63] = '\0';
	ck_assert_int_eq(snipe_pk_parse(hex, pk), SNIPE_EKEYFORMAT);
	memset(hex, 'a', 65);
	hex[65] = '\0';
	ck_assert_int_eq(snipe_pk_parse(hex, pk), SNIPE_EKEYFORMAT);
	hex[64] = '\0';
	ck_assert_int_eq(snipe_pk_parse(hex, pk), SNIPE_OK);
	hex[64] = '\n';
	hex[65] = '\0';
	ck_assert_int_eq(snipe_pk_parse(hex, pk), SNIPE_EKEYFORMAT);
	hex[64] = '\0';
	hex[10] = 'g';
	ck_assert_int_eq(snipe_pk_parse(hex, pk), SNIPE_EKEYFORMAT);
	hex[10] = ' ';
	ck_assert_int_eq(snipe_pk_parse(hex, pk), SNIPE_EKEYFORMAT);
	hex[10] = 'a';
	hex[0] = '0';
	hex[1] = 'x';
	ck_assert_int_eq(snipe_pk_parse(hex, pk), SNIPE_EKEYFORMAT);
	ck_assert_int_eq(snipe_pk_parse("", pk), SNIPE_EKEYFORMAT);
}
END_TEST

/* ------------------------------------------------------------- signatures */

START_TEST(test_sign_verify_round_trip)
{
	snipe_key *k = NULL;
	uint8_t sig[SNIPE_SIG_BYTES];
	static const char msg[] = "the quick brown fox";

	ck_assert_int_eq(snipe_key_generate(&k), SNIPE_OK);
	ck_assert_int_eq(snipe_sign(k, "test/v1", msg, strlen(msg), sig), SNIPE_OK);
	ck_assert_int_eq(snipe_verify(snipe_key_public(k), "test/v1", msg, strlen(msg), sig),
	                 SNIPE_OK);
	snipe_key_free(k);
}
END_TEST

START_TEST(test_sign_verify_empty_message)
{
	snipe_key *k = NULL;
	uint8_t sig[SNIPE_SIG_BYTES];
	static const char msg[] = "";

	ck_assert_int_eq(snipe_key_generate(&k), SNIPE_OK);
	ck_assert_int_eq(snipe_sign(k, "test/empty", msg, 0, sig), SNIPE_OK);
	ck_assert_int_eq(snipe_verify(snipe_key_public(k), "test/empty", msg, 0, sig), SNIPE_OK);
	ck_assert_int_eq(snipe_verify(snipe_key_public(k), "test/other", msg, 0, sig),
	                 SNIPE_EBADSIG);
	snipe_key_free(k);
}
END_TEST

START_TEST(test_verify_rejects_other_domain)
{
	snipe_key *k = NULL;
	uint8_t sig[SNIPE_SIG_BYTES];
	static const char msg[] = "payload";

	ck_assert_int_eq(snipe_key_generate(&k), SNIPE_OK);
	ck_assert_int_eq(snipe_sign(k, "snipe/a/v1", msg, sizeof(msg), sig), SNIPE_OK);
	ck_assert_int_eq(snipe_verify(snipe_key_public(k), "snipe/b/v1", msg, sizeof(msg), sig),
	                 SNIPE_EBADSIG);
	ck_assert_int_eq(snipe_verify(snipe_key_public(k), "snipe/a/v", msg, sizeof(msg), sig),
	                 SNIPE_EBADSIG);
	ck_assert_int_eq(snipe_verify(snipe_key_public(k), "", msg, sizeof(msg), sig),
	                 SNIPE_EBADSIG);
	snipe_key_free(k);
}
END_TEST

/* "ab" + "c" and "a" + "bc" sign different bytes thanks to the NUL separator. */
START_TEST(test_verify_rejects_moved_domain_boundary)
{
	snipe_key *k = NULL;
	uint8_t sig[SNIPE_SIG_BYTES];

	ck_assert_int_eq(snipe_key_generate(&k), SNIPE_OK);
	ck_assert_int_eq(snipe_sign(k, "ab", "c", 1, sig), SNIPE_OK);
	ck_assert_int_eq(snipe_verify(snipe_key_public(k), "ab", "c", 1, sig), SNIPE_OK);
	ck_assert_int_eq(snipe_verify(snipe_key_public(k), "a", "bc", 2, sig), SNIPE_EBADSIG);
	ck_assert_int_eq(snipe_verify(snipe_key_public(k), "abc", "", 0, sig), SNIPE_EBADSIG);
	snipe_key_free(k);
}
END_TEST

START_TEST(test_verify_rejects_altered_message)
{
	snipe_key *k = NULL;
	uint8_t sig[SNIPE_SIG_BYTES];
	char msg[] = "transfer 10 units";

	ck_assert_int_eq(snipe_key_generate(&k), SNIPE_OK);
	ck_assert_int_eq(snipe_sign(k, "test/v1", msg, strlen(msg), sig), SNIPE_OK);
	msg[9] = '9';
	ck_assert_int_eq(snipe_verify(snipe_key_public(k), "test/v1", msg, strlen(msg), sig),
	                 SNIPE_EBADSIG);
	msg[9] = '1';
	ck_assert_int_eq(snipe_verify(snipe_key_public(k), "test/v1", msg, strlen(msg) - 1, sig),
	                 SNIPE_EBADSIG);
	ck_assert_int_eq(snipe_verify(snipe_key_public(k), "test/v1", msg, strlen(msg), sig),
	                 SNIPE_OK);
	snipe_key_free(k);
}
END_TEST

START_TEST(test_verify_rejects_altered_signature)
{
	snipe_key *k = NULL;
	uint8_t sig[SNIPE_SIG_BYTES];
	static const char msg[] = "message";
	static const size_t where[] = { 0, 31, 32, 63 };

	ck_assert_int_eq(snipe_key_generate(&k), SNIPE_OK);
	ck_assert_int_eq(snipe_sign(k, "test/v1", msg, sizeof(msg), sig), SNIPE_OK);
	for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
		sig[where[i]] ^= 0x01;
		ck_assert_int_eq(
			snipe_verify(snipe_key_public(k), "test/v1", msg, sizeof(msg), sig),
			SNIPE_EBADSIG);
		sig[where[i]] ^= 0x01;
	}
	ck_assert_int_eq(snipe_verify(snipe_key_public(k), "test/v1", msg, sizeof(msg), sig),
	                 SNIPE_OK);
	snipe_key_free(k);
}
END_TEST

START_TEST(test_verify_rejects_other_key)
{
	snipe_key *k = NULL, *other = NULL;
	uint8_t sig[SNIPE_SIG_BYTES];
	static const char msg[] = "message";

	ck_assert_int_eq(snipe_key_generate(&k), SNIPE_OK);
	ck_assert_int_eq(snipe_key_generate(&other), SNIPE_OK);
	ck_assert_int_eq(snipe_sign(k, "test/v1", msg, sizeof(msg), sig), SNIPE_OK);
	ck_assert_int_eq(snipe_verify(snipe_key_public(other), "test/v1", msg, sizeof(msg), sig),
	                 SNIPE_EBADSIG);
	snipe_key_free(other);
	snipe_key_free(k);
}
END_TEST

/* Pins the construction: Ed25519 over domain || 0x00 || msg with the key's secret. */
START_TEST(test_sign_covers_domain_nul_message)
{
	char *dir = tu_tmpdir();
	char *path = tu_path(dir, "made");
	uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
	snipe_key *k = NULL;
	static const char domain[] = "snipe/test/v1";
	static const uint8_t msg[] = { 'h', 'i', 0x00, 0xff, 0x10 };
	uint8_t signed_bytes[sizeof(domain) + sizeof(msg)];
	uint8_t sig[SNIPE_SIG_BYTES], want[crypto_sign_BYTES];

	crypto_sign_keypair(pk, sk);
	write_key_file(path, sk, "", 0600);
	ck_assert_int_eq(snipe_key_load(path, &k, NULL, 0), SNIPE_OK);

	/* sizeof(domain) counts the NUL, which is the separator */
	memcpy(signed_bytes, domain, sizeof(domain));
	memcpy(signed_bytes + sizeof(domain), msg, sizeof(msg));

	ck_assert_int_eq(snipe_sign(k, domain, msg, sizeof(msg), sig), SNIPE_OK);
	ck_assert_int_eq(crypto_sign_verify_detached(sig, signed_bytes, sizeof(signed_bytes), pk),
	                 0);
	crypto_sign_detached(want, NULL, signed_bytes, sizeof(signed_bytes), sk);
	ck_assert_mem_eq(sig, want, SNIPE_SIG_BYTES);
	ck_assert_int_eq(snipe_verify(pk, domain, msg, sizeof(msg), want), SNIPE_OK);

	sodium_memzero(sk, sizeof(sk));
	snipe_key_free(k);
	free(path);
	tu_rmtree(dir);
}
END_TEST

/* --------------------------------------------------------------- keyring */

START_TEST(test_keyring_add_find_count_remove)
{
	snipe_keyring *kr = NULL;
	snipe_key *k = NULL;
	uint8_t id[SNIPE_KEYID_BYTES];
	const uint8_t *found;

	ck_assert_int_eq(snipe_keyring_new(&kr), SNIPE_OK);
	ck_assert_uint_eq(snipe_keyring_count(kr), 0);
	ck_assert_int_eq(snipe_key_generate(&k), SNIPE_OK);
	snipe_keyid(snipe_key_public(k), id);

	ck_assert_ptr_null(snipe_keyring_find(kr, id));
	ck_assert_int_eq(snipe_keyring_add(kr, snipe_key_public(k)), SNIPE_OK);
	ck_assert_uint_eq(snipe_keyring_count(kr), 1);
	found = snipe_keyring_find(kr, id);
	ck_assert_ptr_nonnull(found);
	ck_assert_mem_eq(found, snipe_key_public(k), SNIPE_PK_BYTES);

	ck_assert_int_eq(snipe_keyring_remove(kr, id), SNIPE_OK);
	ck_assert_uint_eq(snipe_keyring_count(kr), 0);
	ck_assert_ptr_null(snipe_keyring_find(kr, id));
	ck_assert_int_eq(snipe_keyring_remove(kr, id), SNIPE_ENOENT);

	snipe_key_free(k);
	snipe_keyring_free(kr);
}
END_TEST

START_TEST(test_keyring_add_twice_keeps_one)
{
	snipe_keyring *kr = NULL;
	uint8_t pk[SNIPE_PK_BYTES], sk[crypto_sign_SECRETKEYBYTES];
	uint8_t id[SNIPE_KEYID_BYTES];

	crypto_sign_keypair(pk, sk);
	snipe_keyid(pk, id);
	ck_assert_int_eq(snipe_keyring_new(&kr), SNIPE_OK);
	ck_assert_int_eq(snipe_keyring_add(kr, pk), SNIPE_OK);
	ck_assert_int_eq(snipe_keyring_add(kr, pk), SNIPE_OK);
	ck_assert_uint_eq(snipe_keyring_count(kr), 1);
	ck_assert_int_eq(snipe_keyring_remove(kr, id), SNIPE_OK);
	ck_assert_uint_eq(snipe_keyring_count(kr), 0);
	ck_assert_ptr_null(snipe_keyring_find(kr, id));
	snipe_keyring_free(kr);
}
END_TEST

START_TEST(test_keyring_absent_key_not_found)
{
	snipe_keyring *kr = NULL;
	uint8_t pk[SNIPE_PK_BYTES], sk[crypto_sign_SECRETKEYBYTES];
	uint8_t pk2[SNIPE_PK_BYTES];
	uint8_t id2[SNIPE_KEYID_BYTES];

	crypto_sign_keypair(pk, sk);
	crypto_sign_keypair(pk2, sk);
	snipe_keyid(pk2, id2);
	ck_assert_int_eq(snipe_keyring_new(&kr), SNIPE_OK);
	ck_assert_int_eq(snipe_keyring_add(kr, pk), SNIPE_OK);
	ck_assert_ptr_null(snipe_keyring_find(kr, id2));
	ck_assert_int_eq(snipe_keyring_remove(kr, id2), SNIPE_ENOENT);
	ck_assert_uint_eq(snipe_keyring_count(kr), 1);
	snipe_keyring_free(kr);
}
END_TEST

START_TEST(test_keyring_holds_1000_keys)
{
	enum { N = 1000 };
	uint8_t (*pks)[SNIPE_PK_BYTES] = calloc(N, SNIPE_PK_BYTES);
	uint8_t sk[crypto_sign_SECRETKEYBYTES];
	uint8_t id[SNIPE_KEYID_BYTES];
	snipe_keyring *kr = NULL;

	ck_assert_ptr_nonnull(pks);
	ck_assert_int_eq(snipe_keyring_new(&kr), SNIPE_OK);
	for (size_t i = 0; i < N; i++) {
		crypto_sign_keypair(pks[i], sk);
		ck_assert_int_eq(snipe_keyring_add(kr, pks[i]), SNIPE_OK);
	}
	ck_assert_uint_eq(snipe_keyring_count(kr), N);
	for (size_t i = 0; i < N; i++) {
		snipe_keyid(pks[i], id);
		const uint8_t *found = snipe_keyring_find(kr, id);
		ck_assert_msg(found != NULL, "key %zu not found", i);
		ck_assert_mem_eq(found, pks[i], SNIPE_PK_BYTES);
	}
	/* remove the even ones; the odd ones stay findable */
	for (size_t i = 0; i < N; i += 2) {
		snipe_keyid(pks[i], id);
		ck_assert_int_eq(snipe_keyring_remove(kr, id), SNIPE_OK);
	}
	ck_assert_uint_eq(snipe_keyring_count(kr), N / 2);
	for (size_t i = 0; i < N; i++) {
		snipe_keyid(pks[i], id);
		const uint8_t *found = snipe_keyring_find(kr, id);
		if (i % 2 == 0) {
			ck_assert_msg(found == NULL, "removed key %zu still found", i);
		} else {
			ck_assert_msg(found != NULL, "key %zu lost", i);
			ck_assert_mem_eq(found, pks[i], SNIPE_PK_BYTES);
		}
	}

	snipe_keyring_free(kr);
	free(pks);
}
END_TEST

START_TEST(test_derive_is_keyed_blake2b_of_purpose_by_seed)
{
	char *dir = tu_tmpdir(), *path = NULL;
	snipe_key *k = saved_key(dir, "k", &path);
	uint8_t got[32], other[32], want[32], seed[32];
	ck_assert_int_eq(snipe_key_derive(k, "snipe/raft-secret/v1", got), SNIPE_OK);
	seed_of(path, seed);
	crypto_generichash(want, 32, (const uint8_t *)"snipe/raft-secret/v1", 20, seed, 32);
	ck_assert_mem_eq(got, want, 32);
	ck_assert_int_eq(snipe_key_derive(k, "another purpose", other), SNIPE_OK);
	ck_assert(memcmp(got, other, 32) != 0);
	ck_assert_int_eq(snipe_key_derive(k, NULL, other), SNIPE_EINVAL);
	ck_assert_int_eq(snipe_key_derive(NULL, "x", other), SNIPE_EINVAL);
	sodium_memzero(seed, sizeof(seed));
	snipe_key_free(k);
	free(path);
	tu_rmtree(dir);
}
END_TEST

START_TEST(test_derive_survives_save_and_load)
{
	char *dir = tu_tmpdir(), *path = NULL;
	snipe_key *k = saved_key(dir, "k", &path), *loaded = NULL;
	char err[256];
	ck_assert_int_eq(snipe_key_load(path, &loaded, err, sizeof(err)), SNIPE_OK);
	uint8_t a[32], b[32];
	ck_assert_int_eq(snipe_key_derive(k, "p", a), SNIPE_OK);
	ck_assert_int_eq(snipe_key_derive(loaded, "p", b), SNIPE_OK);
	ck_assert_mem_eq(a, b, 32);
	snipe_key_free(k);
	snipe_key_free(loaded);
	free(path);
	tu_rmtree(dir);
}
END_TEST

static void seed_of(const char *path, uint8_t seed[32])
{
	char text[512] = "";
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	const char *tag = strstr(text, "snipe-ed25519-secret-v1 ");
	ck_assert_ptr_nonnull(tag);
	const char *b64 = tag + strlen("snipe-ed25519-secret-v1 ");
	uint8_t sk[64];
	size_t len = 0;
	ck_assert_int_eq(sodium_base642bin(sk, sizeof(sk), b64, strcspn(b64, "\n"), NULL, &len,
	                                   NULL, sodium_base64_VARIANT_ORIGINAL),
	                 0);
	ck_assert_uint_eq(len, 64);
	memcpy(seed, sk, 32);
	sodium_memzero(sk, sizeof(sk));
}

static Suite *suite(void)
{
	Suite *s = suite_create("key");
	TCase *tc;

	tc = tcase_create("file");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_generate_gives_distinct_keys);
	tcase_add_test(tc, test_save_load_round_trip_keeps_key);
	tcase_add_test(tc, test_save_writes_private_file_mode_0600);
	tcase_add_test(tc, test_save_writes_pub_file_with_hex);
	tcase_add_test(tc, test_save_writes_documented_format);
	tcase_add_test(tc, test_save_refuses_to_overwrite);
	tcase_add_test(tc, test_save_with_force_overwrites);
	tcase_add_test(tc, test_key_free_null_is_noop);
	tcase_add_test(tc, test_load_missing_file_gives_enoent);
	tcase_add_test(tc, test_load_rejects_group_or_other_access);
	tcase_add_test(tc, test_load_accepts_owner_only_modes);
	tcase_add_test(tc, test_load_rejects_truncated_file);
	tcase_add_test(tc, test_load_rejects_corrupted_payload);
	tcase_add_test(tc, test_load_reads_documented_format);
	tcase_add_test(tc, test_load_rejects_mismatched_public_half);
	tcase_add_test(tc, test_load_rejects_wrong_header_or_payload_size);
	suite_add_tcase(s, tc);

	tc = tcase_create("id_hex");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_keyid_is_blake2b_256_prefix);
	tcase_add_test(tc, test_keyid_hex_is_20_lower_hex_digits);
	tcase_add_test(tc, test_pk_hex_is_64_lower_hex_digits);
	tcase_add_test(tc, test_pk_parse_accepts_lower_and_upper_case);
	tcase_add_test(tc, test_pk_parse_rejects_wrong_length_and_non_hex);
	suite_add_tcase(s, tc);

	tc = tcase_create("sign");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_sign_verify_round_trip);
	tcase_add_test(tc, test_sign_verify_empty_message);
	tcase_add_test(tc, test_verify_rejects_other_domain);
	tcase_add_test(tc, test_verify_rejects_moved_domain_boundary);
	tcase_add_test(tc, test_verify_rejects_altered_message);
	tcase_add_test(tc, test_verify_rejects_altered_signature);
	tcase_add_test(tc, test_verify_rejects_other_key);
	tcase_add_test(tc, test_sign_covers_domain_nul_message);
	tcase_add_test(tc, test_derive_is_keyed_blake2b_of_purpose_by_seed);
	tcase_add_test(tc, test_derive_survives_save_and_load);
	suite_add_tcase(s, tc);

	tc = tcase_create("keyring");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_keyring_add_find_count_remove);
	tcase_add_test(tc, test_keyring_add_twice_keeps_one);
	tcase_add_test(tc, test_keyring_absent_key_not_found);
	tcase_add_test(tc, test_keyring_holds_1000_keys);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(suite());
}
