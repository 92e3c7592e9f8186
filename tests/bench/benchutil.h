/*
 * benchutil.h — what the benchmarks share: failing with a reason, percentiles,
 * verdicts, and finding and removing what a local cluster left behind. Compiled into
 * every tests/bench/bench_*.c; not part of libsnipe.
 */
#ifndef SNIPE_BENCHUTIL_H
#define SNIPE_BENCHUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Formats the reason into err and returns -1. */
int bu_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* qsort order of doubles. */
int bu_cmp_double(const void *a, const void *b);
/* "met" or "missed". */
const char *bu_verdict(bool met);
/* Removes a directory tree (not following symlinks). */
void bu_remove_tree(const char *path);
/* The last non-empty line of a file into buf, or a note that there is none. */
void bu_last_line(const char *path, char *buf, size_t len);
/* The live processes that belong to dir: their command line names it (daemons,
 * watchdogs) or their working directory is inside it (what the agents ran). Up to max
 * pids into pids; how many. */
int bu_belonging(const char *dir, pid_t *pids, int max);

#endif
