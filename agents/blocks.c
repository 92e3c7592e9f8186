/*
 * blocks.c — the agent's block store (blocks.h): one file per block, DIR/<2 hex>/<64
 * hex>, holding the block's zstd bytes exactly as received. The uncompressed size is
 * not kept apart: it is the content size in the zstd frame header, which
 * sni_block_open requires to be present and right. A block is written to a temporary
 * name in its directory and renamed into place; a mutex orders those renames against
 * deletions, so a copy found corrupt or old enough to collect is deleted only if it
 * is still the file that was judged, never a good copy put meanwhile. Nothing here is
 * durable until agent_blocks_sync (one syncfs for the lot).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "blocks.h"

/* Chunks are at most SNI_CHUNK_MAX; the agent refuses references to blocks over 16
 * MiB. A size beyond that is damage: refused before anything is allocated for it. */
#define HEX_LEN (2 * SNI_HASH_BYTES)
/* "<2 hex>/<64 hex>"; temporary files are "<2 hex>/.tmp-<16 hex>" */
#define NAME_LEN (3 + HEX_LEN + 1)
#define TMP_PREFIX ".tmp-"

struct agent_blocks {
	int fd;             /* the store directory */
	char *dir;          /* its path, for messages */
	pthread_mutex_t mu; /* held around every rename into place and every deletion */
};

/* ------------------------------------------------------------------ names */

static void block_name(const uint8_t hash[SNI_HASH_BYTES], char hex[HEX_LEN + 1],
                       char name[NAME_LEN])
{
	sni_hex(hash, SNI_HASH_BYTES, hex);
	snprintf(name, NAME_LEN, "%.2s/%s", hex, hex);
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* The hash a file name stands for: exactly 64 lower-case hex digits. */
static bool name_hash(const char *name, uint8_t hash[SNI_HASH_BYTES])
{
	if (strlen(name) != HEX_LEN)
		return false;
	for (size_t i = 0; i < SNI_HASH_BYTES; i++) {
		int hi = hex_digit(name[2 * i]), lo = hex_digit(name[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		hash[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

static uint64_t mtime_ms(const struct stat *st)
{
	return (uint64_t)st->st_mtim.tv_sec * 1000u + (uint64_t)st->st_mtim.tv_nsec / 1000000u;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/* --------------------------------------------------------------- checking */

/* Whether zstd holds exactly size bytes hashing to hash: SNIPE_OK or SNIPE_ECORRUPT. */
static int check(const uint8_t hash[SNI_HASH_BYTES], uint64_t size, const uint8_t *zstd,
                 size_t zlen)
{
	if (zlen == 0 || zlen > ZSTD_compressBound(SNI_BLOCK_MAX) || size > SNI_BLOCK_MAX)
		return SNIPE_ECORRUPT;
	uint8_t *buf = malloc(size ? size : 1);
	if (buf == NULL)
		return SNIPE_ENOMEM;
	int rc = sni_block_open(hash, (uint32_t)size, zstd, zlen, buf);
	free(buf);
	return rc;
}

/* Deletes name if it is still the file st describes (not one renamed over it since). */
static void drop_if_same(agent_blocks *b, int dfd, const char *name, const struct stat *st)
{
	struct stat now;
	pthread_mutex_lock(&b->mu);
	if (fstatat(dfd, name, &now, AT_SYMLINK_NOFOLLOW) == 0 && same_file(&now, st))
		unlinkat(dfd, name, 0);
	pthread_mutex_unlock(&b->mu);
}

/* Reads up to n bytes; how many, or -1. */
static ssize_t read_all(int fd, uint8_t *p, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, p + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

/* ------------------------------------------------------------- open, close */

int agent_blocks_open(const char *dir, agent_blocks **out, char *err, size_t errlen)
{
	int rc = SNIPE_ENOMEM;
	*out = NULL;
	if (sodium_init() < 0)
		return sni_err(err, errlen, SNIPE_EIO, "block store %s: libsodium did not start",
		               dir);
	agent_blocks *b = calloc(1, sizeof(*b));
	if (b == NULL)
		return SNIPE_ENOMEM;
	b->fd = -1;
	pthread_mutex_init(&b->mu, NULL);
	b->dir = strdup(dir);
	if (b->dir == NULL)
		goto err;
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		rc = sni_err(err, errlen, SNIPE_EIO, "block store %s: mkdir: %s", dir,
		             strerror(errno));
		goto err;
	}
	b->fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (b->fd < 0) {
		rc = sni_err(err, errlen, SNIPE_EIO, "block store %s: %s", dir, strerror(errno));
		goto err;
	}
	*out = b;
	return SNIPE_OK;
err:
	agent_blocks_close(b);
	return rc;
}

void agent_blocks_close(agent_blocks *b)
{
	if (b == NULL)
		return;
	if (b->fd >= 0)
		close(b->fd);
	pthread_mutex_destroy(&b->mu);
	free(b->dir);
	free(b);
}

/* -------------------------------------------------------------- has, put, get */

bool agent_blocks_has(agent_blocks *b, const uint8_t hash[SNI_HASH_BYTES])
{
	char hex[HEX_LEN + 1], name[NAME_LEN];
	struct stat st;
	block_name(hash, hex, name);
	return fstatat(b->fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
}

bool agent_blocks_keep(agent_blocks *b, const uint8_t hash[SNI_HASH_BYTES])
{
	char hex[HEX_LEN + 1], name[NAME_LEN];
	struct stat st;
	block_name(hash, hex, name);
	/* under the lock gc deletes by, so a block found here is young when gc looks again */
	pthread_mutex_lock(&b->mu);
	bool present = fstatat(b->fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
	               utimensat(b->fd, name, NULL, AT_SYMLINK_NOFOLLOW) == 0;
	pthread_mutex_unlock(&b->mu);
	return present;
}

int agent_blocks_put(agent_blocks *b, const uint8_t hash[SNI_HASH_BYTES], uint32_t size,
                     const uint8_t *zstd, size_t zlen, char *err, size_t errlen)
{
	char hex[HEX_LEN + 1], name[NAME_LEN], sub[3], tmp[NAME_LEN], rnd[17];
	uint8_t r[8];
	int fd = -1, e = 0, done;
	block_name(hash, hex, name);
	int rc = check(hash, size, zstd, zlen);
	if (rc == SNIPE_ECORRUPT)
		return sni_err(err, errlen, rc, "block %s: its bytes do not match its hash and "
		               "size %u", hex, size);
	if (rc != SNIPE_OK)
		return rc;
	snprintf(sub, sizeof(sub), "%.2s", hex);
	randombytes_buf(r, sizeof(r));
	sni_hex(r, sizeof(r), rnd);
	snprintf(tmp, sizeof(tmp), "%s/" TMP_PREFIX "%s", sub, rnd);
	if (mkdirat(b->fd, sub, 0700) != 0 && errno != EEXIST) {
		e = errno;
		goto err;
	}
	fd = openat(b->fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		e = errno;
		goto err;
	}
	if (sni_write_all(fd, zstd, zlen) != 0) {
		e = errno;
		goto err_tmp;
	}
	done = close(fd);
	fd = -1;
	if (done != 0) {
		e = errno;
		goto err_tmp;
	}
	pthread_mutex_lock(&b->mu);
	done = renameat(b->fd, tmp, b->fd, name);
	e = errno;
	pthread_mutex_unlock(&b->mu);
	if (done != 0)
		goto err_tmp;
	return SNIPE_OK;
err_tmp:
	if (fd >= 0)
		close(fd);
	unlinkat(b->fd, tmp, 0);
err:
	return sni_err(err, errlen, SNIPE_EIO, "block store %s: writing block %s: %s", b->dir,
	               hex, strerror(e));
}

static int read_block(agent_blocks *b, const uint8_t hash[SNI_HASH_BYTES], bool verify,
                      uint8_t **zstd, size_t *zlen, uint32_t *size, char *err, size_t errlen);

int agent_blocks_get(agent_blocks *b, const uint8_t hash[SNI_HASH_BYTES], uint8_t **zstd,
                     size_t *zlen, uint32_t *size, char *err, size_t errlen)
{
	return read_block(b, hash, true, zstd, zlen, size, err, errlen);
}

int agent_blocks_read(agent_blocks *b, const uint8_t hash[SNI_HASH_BYTES], uint8_t **zstd,
                      size_t *zlen, uint32_t *size, char *err, size_t errlen)
{
	return read_block(b, hash, false, zstd, zlen, size, err, errlen);
}

static int read_block(agent_blocks *b, const uint8_t hash[SNI_HASH_BYTES], bool verify,
                      uint8_t **zstd, size_t *zlen, uint32_t *size, char *err, size_t errlen)
{
	char hex[HEX_LEN + 1], name[NAME_LEN];
	struct stat st;
	uint8_t *buf = NULL;
	int rc = SNIPE_OK;
	*zstd = NULL;
	*zlen = 0;
	*size = 0;
	block_name(hash, hex, name);
	errno = 0;
	int fd = openat(b->fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		return sni_err(err, errlen, SNIPE_ENOTFOUND, "block %s is not stored here", hex);
	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		const char *why = fd >= 0 && errno == 0 ? "not a regular file" : strerror(errno);
		rc = sni_err(err, errlen, SNIPE_EIO, "block store %s: reading block %s: %s",
		             b->dir, hex, why);
		goto err;
	}
	size_t len = (size_t)st.st_size;
	unsigned long long content = ZSTD_CONTENTSIZE_ERROR;
	if (len > 0 && len <= ZSTD_compressBound(SNI_BLOCK_MAX)) {
		buf = malloc(len);
		if (buf == NULL) {
			rc = SNIPE_ENOMEM;
			goto err;
		}
		ssize_t got = read_all(fd, buf, len);
		if (got < 0) {
			rc = sni_err(err, errlen, SNIPE_EIO, "block store %s: reading block %s: %s",
			             b->dir, hex, strerror(errno));
			goto err;
		}
		if ((size_t)got == len)
			content = ZSTD_getFrameContentSize(buf, len);
	}
	rc = content > SNI_BLOCK_MAX ? SNIPE_ECORRUPT : verify ? check(hash, content, buf, len)
	                                                 : SNIPE_OK;
	if (rc == SNIPE_ECORRUPT) {
		drop_if_same(b, b->fd, name, &st);
		snipe_log(SNIPE_LOG_WARN, "blocks", "deleted a corrupt copy block=%s dir=%s", hex,
		          b->dir);
		rc = sni_err(err, errlen, rc, "block %s: the stored copy was corrupt (deleted)",
		             hex);
	}
	if (rc != SNIPE_OK)
		goto err;
	close(fd);
	*zstd = buf;
	*zlen = len;
	*size = (uint32_t)content;
	return SNIPE_OK;
err:
	free(buf);
	if (fd >= 0)
		close(fd);
	return rc;
}

int agent_blocks_sync(agent_blocks *b)
{
	if (syncfs(b->fd) != 0) {
		snipe_log(SNIPE_LOG_ERROR, "blocks", "syncfs failed dir=%s error=\"%s\"", b->dir,
		          strerror(errno));
		return SNIPE_EIO;
	}
	return SNIPE_OK;
}

/* -------------------------------------------------------------- walking */

/* Called for each regular file in the store's 256 subdirectories: dfd is the
 * subdirectory, hash the block the name stands for (NULL for a name that is not a
 * block's: temporary files, strays). A code other than SNIPE_OK stops the walk. */
typedef int (*visit_fn)(agent_blocks *b, int dfd, const char *name,
                        const uint8_t *hash, const struct stat *st, void *ctx);

static int walk_sub(agent_blocks *b, const char *sub, visit_fn fn, void *ctx)
{
	int rc = SNIPE_OK;
	DIR *d = NULL;
	int fd = openat(b->fd, sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		return SNIPE_OK;
	if (fd < 0 || (d = fdopendir(fd)) == NULL)
		goto err;
	for (;;) {
		uint8_t hash[SNI_HASH_BYTES];
		struct stat st;
		errno = 0;
		struct dirent *de = readdir(d);
		if (de == NULL && errno != 0)
			goto err;
		if (de == NULL)
			break;
		if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
			if (errno == ENOENT) /* deleted meanwhile */
				continue;
			goto err;
		}
		if (!S_ISREG(st.st_mode))
			continue;
		bool is_block = name_hash(de->d_name, hash) && memcmp(de->d_name, sub, 2) == 0;
		rc = fn(b, fd, de->d_name, is_block ? hash : NULL, &st, ctx);
		if (rc != SNIPE_OK)
			goto err;
	}
	closedir(d);
	return SNIPE_OK;
err:
	rc = rc != SNIPE_OK ? rc : SNIPE_EIO;
	snipe_log(SNIPE_LOG_ERROR, "blocks", "walking the store failed dir=%s sub=%s "
	          "error=\"%s\"", b->dir, sub, strerror(errno));
	if (d != NULL)
		closedir(d);
	else if (fd >= 0)
		close(fd);
	return rc;
}

static int walk(agent_blocks *b, visit_fn fn, void *ctx)
{
	int rc = SNIPE_OK;
	for (unsigned i = 0; rc == SNIPE_OK && i < 256; i++) {
		char sub[3];
		snprintf(sub, sizeof(sub), "%02x", i);
		rc = walk_sub(b, sub, fn, ctx);
	}
	return rc;
}

/* ------------------------------------------------------------ gc, usage */

struct gc_ctx {
	const uint8_t (*keep)[SNI_HASH_BYTES];
	size_t nkeep;
	uint64_t now_ms, grace_ms;
	size_t deleted;
};

static bool is_old(const struct stat *st, uint64_t now_ms, uint64_t grace_ms)
{
	uint64_t t = mtime_ms(st);
	return now_ms > t && now_ms - t > grace_ms;
}

/* Deletes an old block not in keep, or an old temporary file left by a crash. */
static int gc_visit(agent_blocks *b, int dfd, const char *name, const uint8_t *hash,
                    const struct stat *st, void *ctx)
{
	struct gc_ctx *c = ctx;
	if (hash == NULL && strncmp(name, TMP_PREFIX, strlen(TMP_PREFIX)) != 0)
		return SNIPE_OK;
	if (hash != NULL && c->nkeep > 0 &&
	    bsearch(hash, c->keep, c->nkeep, SNI_HASH_BYTES, sni_hash_cmp) != NULL)
		return SNIPE_OK;
	if (!is_old(st, c->now_ms, c->grace_ms))
		return SNIPE_OK;
	int rc = SNIPE_OK;
	struct stat now;
	pthread_mutex_lock(&b->mu);
	/* a put may have renamed a fresh copy over it since it was looked at */
	if (fstatat(dfd, name, &now, AT_SYMLINK_NOFOLLOW) == 0 && same_file(&now, st) &&
	    is_old(&now, c->now_ms, c->grace_ms)) {
		if (unlinkat(dfd, name, 0) == 0)
			c->deleted += hash != NULL;
		else if (errno != ENOENT)
			rc = SNIPE_EIO;
	}
	pthread_mutex_unlock(&b->mu);
	return rc;
}

int agent_blocks_gc(agent_blocks *b, const uint8_t (*keep)[SNI_HASH_BYTES], size_t nkeep,
                    uint64_t now_ms, uint64_t grace_ms, size_t *deleted)
{
	struct gc_ctx c = {.keep = keep, .nkeep = nkeep, .now_ms = now_ms, .grace_ms = grace_ms};
	int rc = walk(b, gc_visit, &c);
	*deleted = c.deleted;
	return rc;
}

struct usage_ctx {
	uint64_t bytes;
	size_t count;
};

static int usage_visit(agent_blocks *b, int dfd, const char *name, const uint8_t *hash,
                       const struct stat *st, void *ctx)
{
	struct usage_ctx *c = ctx;
	(void)b;
	(void)dfd;
	(void)name;
	if (hash != NULL) {
		c->bytes += (uint64_t)st->st_size;
		c->count++;
	}
	return SNIPE_OK;
}

int agent_blocks_usage(agent_blocks *b, uint64_t *bytes, size_t *count)
{
	struct usage_ctx c = {0};
	int rc = walk(b, usage_visit, &c);
	*bytes = c.bytes;
	*count = c.count;
	return rc;
}
