/*
 * testutil.h — helpers shared by the Check suites: running a suite, scratch
 * directories, reading and writing files, finding a line in text, asserting exact error
 * codes, exact-size copies and seeded randomness for fuzz loops. Not part of libsnipe.
 */
#ifndef SNIPE_TESTUTIL_H
#define SNIPE_TESTUTIL_H

#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snipe.h"

/* Starts libsodium and runs the suite with normal verbosity; returns the process exit
 * code (0 if all passed). */
int tu_run(Suite *s);
/* Creates a fresh directory under $TMPDIR (or /tmp); returns a malloc'd path. */
char *tu_tmpdir(void);
/* Removes a directory tree made by tu_tmpdir and frees the path. NULL is a no-op. */
void tu_rmtree(char *dir);
/* Joins dir and name into a malloc'd path. */
char *tu_path(const char *dir, const char *name);
/* Writes len bytes to path with the given mode, replacing it; aborts the test on failure. */
void tu_write_file(const char *path, const void *data, size_t len, unsigned mode);
/* The whole file at path, binary or text, NUL-terminated (malloc'd; free it), its length
 * without the NUL into *len (len may be NULL); NULL if it cannot be read. */
char *tu_slurp(const char *path, size_t *len);
/* The first line of text (NULL: none) that starts with prefix, into out (len bytes,
 * without its newline); false if there is none. */
bool tu_find_line(const char *text, const char *prefix, char *out, size_t len);
/* As tu_find_line, the last such line. */
bool tu_find_last_line(const char *text, const char *prefix, char *out, size_t len);
/* True if s contains n as a whole decimal number (not part of a longer run of digits),
 * as in "line 3" or "at position 18". For checking that an err buffer names a place. */
int tu_has_number(const char *s, unsigned long n);

/* Asserts that an expression gives exactly the SNIPE code want, naming both on failure. */
#define tu_assert_code(got, want)                                                     \
	do {                                                                          \
		int tu_got_ = (got), tu_want_ = (want);                               \
		ck_assert_msg(tu_got_ == tu_want_, "%s: got %s (%d), want %s (%d)", #got, \
		              snipe_errname(tu_got_), tu_got_, snipe_errname(tu_want_),  \
		              tu_want_);                                                \
	} while (0)

/* A heap copy of exactly len bytes (never NULL), so ASan sees any read past the end. */
uint8_t *tu_copy(const void *buf, size_t len);

/*
 * Reproducible randomness for fuzz loops: libsodium's randombytes_buf_deterministic
 * under a 64-bit seed, one call per draw. The seed is $SNIPE_TEST_SEED if set, else
 * random, and is printed to stderr with `who` so a failure can be repeated.
 */
struct tu_rng {
	uint8_t seed[32]; /* randombytes_SEEDBYTES */
	uint64_t ctr;
};

void tu_rng_init(struct tu_rng *r, const char *who);
void tu_rng_bytes(struct tu_rng *r, void *buf, size_t n);
/* Uniform enough in [0, n) for fuzzing; n > 0. */
size_t tu_rng_below(struct tu_rng *r, size_t n);
/* One to four random edits of buf (len bytes, room for cap): change, bit flip,
 * insert, delete, truncate. Returns the new length. */
size_t tu_mutate(struct tu_rng *r, uint8_t *buf, size_t len, size_t cap);

/* A monotonic clock in ms; a sleep that resumes after signals. */
uint64_t tu_mono_ms(void);
void tu_sleep_ms(unsigned ms);

#endif
