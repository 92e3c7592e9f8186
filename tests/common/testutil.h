/*
 * testutil.h — helpers shared by the Check suites: running a suite, scratch
 * directories, writing files. Not part of libsnipe.
 */
#ifndef SNIPE_TESTUTIL_H
#define SNIPE_TESTUTIL_H

#include <check.h>
#include <stddef.h>

/* Runs the suite with normal verbosity; returns the process exit code (0 if all passed). */
int tu_run(Suite *s);
/* Creates a fresh directory under $TMPDIR (or /tmp); returns a malloc'd path. */
char *tu_tmpdir(void);
/* Removes a directory tree made by tu_tmpdir and frees the path. NULL is a no-op. */
void tu_rmtree(char *dir);
/* Joins dir and name into a malloc'd path. */
char *tu_path(const char *dir, const char *name);
/* Writes len bytes to path with the given mode, replacing it; aborts the test on failure. */
void tu_write_file(const char *path, const void *data, size_t len, unsigned mode);
/* True if s contains n as a whole decimal number (not part of a longer run of digits),
 * as in "line 3" or "at position 18". For checking that an err buffer names a place. */
int tu_has_number(const char *s, unsigned long n);

#endif
