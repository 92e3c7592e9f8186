/* testutil.c — helpers shared by the Check suites (see testutil.h). */
#include <errno.h>
#include <signal.h>
#include <time.h>
#include "testutil.h"

#include <ctype.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

int tu_run(Suite *s)
{
	if (sodium_init() < 0)
		return EXIT_FAILURE;
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

char *tu_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *tmpl = NULL;
	if (asprintf(&tmpl, "%s/snipe-test-XXXXXX", base ? base : "/tmp") < 0)
		ck_abort_msg("asprintf failed");
	if (mkdtemp(tmpl) == NULL)
		ck_abort_msg("mkdtemp %s failed", tmpl);
	return tmpl;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void tu_rmtree(char *dir)
{
	if (dir == NULL)
		return;
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(dir);
}

char *tu_path(const char *dir, const char *name)
{
	char *p = NULL;
	if (asprintf(&p, "%s/%s", dir, name) < 0)
		ck_abort_msg("asprintf failed");
	return p;
}

void tu_write_file(const char *path, const void *data, size_t len, unsigned mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, (mode_t)mode);
	ck_assert_msg(fd >= 0, "open %s", path);
	ck_assert_int_eq(fchmod(fd, (mode_t)mode), 0);
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	close(fd);
}

char *tu_slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	for (size_t got; buf != NULL && (got = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
		n += got;
		if (n + 1 == cap) {
			char *grown = realloc(buf, cap *= 2);
			if (grown == NULL)
				free(buf);
			buf = grown;
		}
	}
	fclose(f);
	if (buf == NULL)
		return NULL;
	buf[n] = '\0';
	if (len != NULL)
		*len = n;
	return buf;
}

/* The first line (or the last, if last) of text starting with prefix, into out. */
static bool find_line(const char *text, const char *prefix, bool last, char *out, size_t len)
{
	bool found = false;
	size_t plen = strlen(prefix);
	for (const char *p = text; p != NULL && *p != '\0';) {
		const char *nl = strchr(p, '\n');
		size_t n = nl != NULL ? (size_t)(nl - p) : strlen(p);
		if (n >= plen && strncmp(p, prefix, plen) == 0) {
			snprintf(out, len, "%.*s", (int)n, p);
			found = true;
			if (!last)
				return true;
		}
		p = nl != NULL ? nl + 1 : NULL;
	}
	return found;
}

bool tu_find_line(const char *text, const char *prefix, char *out, size_t len)
{
	return find_line(text, prefix, false, out, len);
}

bool tu_find_last_line(const char *text, const char *prefix, char *out, size_t len)
{
	return find_line(text, prefix, true, out, len);
}

int tu_has_number(const char *s, unsigned long n)
{
	const char *p = s;
	while (*p != '\0') {
		if (!isdigit((unsigned char)*p)) {
			p++;
			continue;
		}
		const char *start = p;
		while (isdigit((unsigned char)*p))
			p++;
		char *end = NULL;
		unsigned long v = strtoul(start, &end, 10);
		if (end == p && v == n)
			return 1;
	}
	return 0;
}

uint8_t *tu_copy(const void *buf, size_t len)
{
	uint8_t *p = malloc(len ? len : 1);

	ck_assert_ptr_nonnull(p);
	if (len)
		memcpy(p, buf, len);
	return p;
}

_Static_assert(sizeof(((struct tu_rng *)0)->seed) == randombytes_SEEDBYTES,
               "tu_rng seed size");

void tu_rng_init(struct tu_rng *r, const char *who)
{
	const char *s = getenv("SNIPE_TEST_SEED");
	uint64_t seed;

	if (s != NULL)
		seed = strtoull(s, NULL, 0);
	else
		randombytes_buf(&seed, sizeof(seed));
	fprintf(stderr, "%s: fuzz seed %" PRIu64 " (set SNIPE_TEST_SEED to repeat)\n", who,
	        seed);
	memset(r, 0, sizeof(*r));
	memcpy(r->seed, &seed, sizeof(seed));
}

void tu_rng_bytes(struct tu_rng *r, void *buf, size_t n)
{
	memcpy(r->seed + 8, &r->ctr, sizeof(r->ctr));
	r->ctr++;
	randombytes_buf_deterministic(buf, n, r->seed);
}

size_t tu_rng_below(struct tu_rng *r, size_t n)
{
	uint64_t x;

	tu_rng_bytes(r, &x, sizeof(x));
	return (size_t)(x % n);
}

size_t tu_mutate(struct tu_rng *r, uint8_t *buf, size_t len, size_t cap)
{
	size_t ops = 1 + tu_rng_below(r, 4);

	for (size_t i = 0; i < ops; i++) {
		size_t pos = tu_rng_below(r, len + 1);
		uint8_t byte;

		tu_rng_bytes(r, &byte, 1);
		switch (tu_rng_below(r, 5)) {
		case 0:
			if (pos < len)
				buf[pos] = byte;
			break;
		case 1:
			if (pos < len)
				buf[pos] ^= (uint8_t)(1u << (byte % 8));
			break;
		case 2:
			if (len < cap) {
				memmove(buf + pos + 1, buf + pos, len - pos);
				buf[pos] = byte;
				len++;
			}
			break;
		case 3:
			if (pos < len) {
				memmove(buf + pos, buf + pos + 1, len - pos - 1);
				len--;
			}
			break;
		default:
			len = pos;
			break;
		}
	}
	return len;
}

uint64_t tu_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void tu_sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}
