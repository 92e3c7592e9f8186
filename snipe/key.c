/*
 * key.c — Ed25519 identities: generate, save and load key files, key ids, and
 * domain-separated signatures. Trust decisions (who may sign what) live elsewhere.
 *
 * Key file: optional '#' comment lines, then one line
 *   snipe-ed25519-secret-v1 <base64 of the 64-byte secret key (seed || public)>
 * Keeping the public half lets a load detect corruption: it must match the seed.
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sni.h"

#define KEY_TAG "snipe-ed25519-secret-v1 "
#define KEY_FILE_MAX 4096

struct snipe_key {
	uint8_t sk[crypto_sign_SECRETKEYBYTES];
	uint8_t pk[crypto_sign_PUBLICKEYBYTES];
};

/* ------------------------------------------------------------- life cycle */

static snipe_key *key_alloc(void)
{
	if (sodium_init() < 0)
		return NULL;
	return calloc(1, sizeof(snipe_key));
}

void snipe_key_free(snipe_key *k)
{
	if (k == NULL)
		return;
	sodium_memzero(k, sizeof(*k));
	free(k);
}

int snipe_key_generate(snipe_key **out)
{
	snipe_key *k = key_alloc();
	if (k == NULL)
		return SNIPE_ENOMEM;
	crypto_sign_keypair(k->pk, k->sk);
	*out = k;
	return SNIPE_OK;
}

const uint8_t *snipe_key_public(const snipe_key *k)
{
	return k->pk;
}

/* ------------------------------------------------------------------ files */

/* Writes all of data to a new file `tmp` (mode) and, if durable, syncs it. */
static int write_new(const char *tmp, const char *data, size_t len, mode_t mode,
                     bool durable, char *err, size_t errlen)
{
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0)
		return sni_err(err, errlen, errno == ENOENT ? SNIPE_ENOENT : SNIPE_EIO,
		               "cannot create %s: %s", tmp, strerror(errno));
	ssize_t n = write(fd, data, len);
	int rc = (n == (ssize_t)len && (!durable || fsync(fd) == 0)) ? SNIPE_OK : SNIPE_EIO;
	if (close(fd) != 0)
		rc = SNIPE_EIO;
	if (rc != SNIPE_OK) {
		unlink(tmp);
		return sni_err(err, errlen, rc, "cannot write %s", tmp);
	}
	return SNIPE_OK;
}

/* Puts data at path atomically: via a temporary file, then link (refuses to replace)
 * or rename (replaces). */
static int install_file(const char *path, const char *data, size_t len, mode_t mode,
                        bool force, bool durable, char *err, size_t errlen)
{
	char tmp[4096];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp%ld", path, (long)getpid()) >= (int)sizeof(tmp))
		return sni_err(err, errlen, SNIPE_EINVAL, "path too long: %s", path);
	unlink(tmp);
	int rc = write_new(tmp, data, len, mode, durable, err, errlen);
	if (rc != SNIPE_OK)
		return rc;
	if (force ? rename(tmp, path) != 0 : link(tmp, path) != 0) {
		int e = errno;
		unlink(tmp);
		if (e == EEXIST)
			return sni_err(err, errlen, SNIPE_EEXIST,
			               "%s exists; use --force to replace it", path);
		return sni_err(err, errlen, SNIPE_EIO, "cannot create %s: %s", path, strerror(e));
	}
	if (!force)
		unlink(tmp);
	return SNIPE_OK;
}

/* The secret key file alone: durable (fsynced) or not. */
static int save_secret(const snipe_key *k, const char *path, bool force, bool durable,
                       char *err, size_t errlen)
{
	char b64[sodium_base64_ENCODED_LEN(crypto_sign_SECRETKEYBYTES,
	                                   sodium_base64_VARIANT_ORIGINAL)];
	sodium_bin2base64(b64, sizeof(b64), k->sk, sizeof(k->sk),
	                  sodium_base64_VARIANT_ORIGINAL);
	char text[256];
	int n = snprintf(text, sizeof(text),
	                 "# SNIPE private key. Keep it secret: mode 0600.\n" KEY_TAG "%s\n",
	                 b64);
	int rc = install_file(path, text, (size_t)n, 0600, force, durable, err, errlen);
	sodium_memzero(b64, sizeof(b64));
	sodium_memzero(text, sizeof(text));
	return rc;
}

int sni_key_save_instance(const snipe_key *k, const char *path, char *err, size_t errlen)
{
	return save_secret(k, path, true, false, err, errlen);
}

int snipe_key_save(const snipe_key *k, const char *path, bool force, char *err,
                   size_t errlen)
{
	char pubpath[4096];
	if (snprintf(pubpath, sizeof(pubpath), "%s.pub", path) >= (int)sizeof(pubpath))
		return sni_err(err, errlen, SNIPE_EINVAL, "path too long: %s", path);
	if (!force && access(pubpath, F_OK) == 0)
		return sni_err(err, errlen, SNIPE_EEXIST, "%s exists; use --force to replace it",
		               pubpath);

	int rc = save_secret(k, path, force, true, err, errlen);
	if (rc != SNIPE_OK)
		return rc;

	char pub[SNIPE_PK_HEX + 1];
	snipe_pk_hex(k->pk, pub);
	strcat(pub, "\n");
	return install_file(pubpath, pub, strlen(pub), 0644, true, true, err, errlen);
}

/* Reads a whole small file that only its owner may access. */
static int read_private(const char *path, char *buf, size_t cap, size_t *len, char *err,
                        size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return sni_err(err, errlen, errno == ENOENT ? SNIPE_ENOENT : SNIPE_EIO,
		               "cannot open key file %s: %s", path, strerror(errno));
	struct stat st;
	int rc = SNIPE_OK;
	if (fstat(fd, &st) != 0) {
		rc = sni_err(err, errlen, SNIPE_EIO, "cannot stat %s", path);
	} else if ((st.st_mode & 077) != 0) {
		rc = sni_err(err, errlen, SNIPE_EKEYPERM,
		             "key file %s has mode %04o; other users may read it "
		             "(run: chmod 600 %s)",
		             path, (unsigned)(st.st_mode & 07777), path);
	} else {
		ssize_t n = read(fd, buf, cap);
		if (n < 0)
			rc = sni_err(err, errlen, SNIPE_EIO, "cannot read %s", path);
		else if ((size_t)n == cap)
			rc = sni_err(err, errlen, SNIPE_EKEYFORMAT, "key file %s is too large",
			             path);
		else
			*len = (size_t)n;
	}
	close(fd);
	return rc;
}

/* Finds the key line (skipping '#' comments) and decodes it into sk. */
static int parse_key_text(const char *text, size_t len, uint8_t *sk)
{
	const char *p = text, *end = text + len;
	while (p < end && *p == '#') {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			return SNIPE_EKEYFORMAT;
		p = nl + 1;
	}
	size_t tag = strlen(KEY_TAG);
	if ((size_t)(end - p) < tag || memcmp(p, KEY_TAG, tag) != 0)
		return SNIPE_EKEYFORMAT;
	p += tag;
	const char *nl = memchr(p, '\n', (size_t)(end - p));
	if (nl == NULL || nl + 1 != end)
		return SNIPE_EKEYFORMAT;
	size_t bin_len = 0;
	const char *b64_end = NULL;
	if (sodium_base642bin(sk, crypto_sign_SECRETKEYBYTES, p, (size_t)(nl - p), NULL,
	                      &bin_len, &b64_end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    bin_len != crypto_sign_SECRETKEYBYTES || b64_end != nl)
		return SNIPE_EKEYFORMAT;
	return SNIPE_OK;
}

int snipe_key_load(const char *path, snipe_key **out, char *err, size_t errlen)
{
	char text[KEY_FILE_MAX];
	size_t len = 0;
	int rc = read_private(path, text, sizeof(text), &len, err, errlen);
	if (rc != SNIPE_OK)
		return rc;
	snipe_key *k = key_alloc();
	if (k == NULL) {
		rc = SNIPE_ENOMEM;
		goto out;
	}
	if (parse_key_text(text, len, k->sk) != SNIPE_OK) {
		rc = sni_err(err, errlen, SNIPE_EKEYFORMAT,
		             "key file %s is truncated or malformed", path);
		goto out;
	}
	uint8_t seed_sk[crypto_sign_SECRETKEYBYTES];
	crypto_sign_seed_keypair(k->pk, seed_sk, k->sk);
	bool match = sodium_memcmp(seed_sk, k->sk, sizeof(seed_sk)) == 0;
	sodium_memzero(seed_sk, sizeof(seed_sk));
	if (!match) {
		rc = sni_err(err, errlen, SNIPE_EKEYFORMAT,
		             "key file %s is corrupt: its public half does not match its seed",
		             path);
		goto out;
	}
	*out = k;
	k = NULL;
out:
	snipe_key_free(k);
	sodium_memzero(text, sizeof(text));
	return rc;
}

int snipe_key_derive(const snipe_key *k, const char *purpose, uint8_t out[32])
{
	if (k == NULL || purpose == NULL)
		return SNIPE_EINVAL;
	crypto_generichash(out, 32, (const uint8_t *)purpose, strlen(purpose), k->sk,
	                   crypto_sign_SEEDBYTES);
	return SNIPE_OK;
}

/* ---------------------------------------------------------- ids and hex */

void snipe_keyid(const uint8_t pk[SNIPE_PK_BYTES], uint8_t id[SNIPE_KEYID_BYTES])
{
	uint8_t h[32];
	crypto_generichash(h, sizeof(h), pk, SNIPE_PK_BYTES, NULL, 0);
	memcpy(id, h, SNIPE_KEYID_BYTES);
}

void snipe_keyid_hex(const uint8_t id[SNIPE_KEYID_BYTES], char out[SNIPE_KEYID_HEX])
{
	sni_hex(id, SNIPE_KEYID_BYTES, out);
}

void snipe_pk_hex(const uint8_t pk[SNIPE_PK_BYTES], char out[SNIPE_PK_HEX])
{
	sni_hex(pk, SNIPE_PK_BYTES, out);
}

int snipe_pk_parse(const char *hex, uint8_t pk[SNIPE_PK_BYTES])
{
	size_t bin_len = 0;
	const char *end = NULL;
	if (hex == NULL || strlen(hex) != 2 * SNIPE_PK_BYTES ||
	    sodium_hex2bin(pk, SNIPE_PK_BYTES, hex, 2 * SNIPE_PK_BYTES, NULL, &bin_len, &end) !=
	            0 ||
	    bin_len != SNIPE_PK_BYTES || *end != '\0')
		return SNIPE_EKEYFORMAT;
	return SNIPE_OK;
}

/* ------------------------------------------------------------- signatures */

/* Calls fn over domain || 0x00 || msg, built on the stack when small. */
#define SIGN_STACK 1024

static int with_domain(const char *domain, const void *msg, size_t len,
                       int (*fn)(const uint8_t *buf, size_t n, void *arg), void *arg)
{
	size_t dlen = strlen(domain) + 1;
	uint8_t stack[SIGN_STACK];
	uint8_t *buf = dlen + len <= sizeof(stack) ? stack : malloc(dlen + len);
	if (buf == NULL)
		return SNIPE_ENOMEM;
	memcpy(buf, domain, dlen);
	if (len > 0)
		memcpy(buf + dlen, msg, len);
	int rc = fn(buf, dlen + len, arg);
	if (buf != stack)
		free(buf);
	return rc;
}

struct sign_args {
	const snipe_key *k;  /* signing */
	uint8_t *sig_out;
	const uint8_t *pk;   /* verifying */
	const uint8_t *sig_in;
};

static int sign_fn(const uint8_t *buf, size_t n, void *arg)
{
	struct sign_args *a = arg;
	crypto_sign_detached(a->sig_out, NULL, buf, n, a->k->sk);
	return SNIPE_OK;
}

static int verify_fn(const uint8_t *buf, size_t n, void *arg)
{
	struct sign_args *a = arg;
	return crypto_sign_verify_detached(a->sig_in, buf, n, a->pk) == 0 ? SNIPE_OK
	                                                                : SNIPE_EBADSIG;
}

int snipe_sign(const snipe_key *k, const char *domain, const void *msg, size_t len,
               uint8_t sig[SNIPE_SIG_BYTES])
{
	struct sign_args a = {.k = k, .sig_out = sig};
	return with_domain(domain, msg, len, sign_fn, &a);
}

int snipe_verify(const uint8_t pk[SNIPE_PK_BYTES], const char *domain, const void *msg,
                 size_t len, const uint8_t sig[SNIPE_SIG_BYTES])
{
	struct sign_args a = {.pk = pk, .sig_in = sig};
	return with_domain(domain, msg, len, verify_fn, &a);
}
