/*
 * benchutil.h — what the benchmarks share: failing with a reason, percentiles,
 * verdicts, a local cluster started and stopped with `snipe cluster up|down`, CPU
 * readings, and finding and removing what a cluster left behind. Compiled into every
 * tests/bench/bench_*.c; not part of libsnipe.
 */
#ifndef SNIPE_BENCHUTIL_H
#define SNIPE_BENCHUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "snipe.h"

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

/* CPU seconds pid has used (user + system; with its waited-for children if children),
 * from /proc/PID/stat; 0 if unreadable. */
double bu_cpu_s(pid_t pid, bool children);

/* Runs argv (argv[0] a path) with RLIMIT_NOFILE set to nofile (0: as ours), stdout and
 * stderr to the file out, no other descriptor of ours; its exit status, or -1. */
int bu_run(char *const argv[], rlim_t nofile, const char *out);

/* A cluster of `snipe cluster up` (3 catalog replicas, agents host1..hostN). */
struct bu_cluster {
	char dir[256];        /* its directory, made by bu_cluster_up */
	char endpoints[2048]; /* SNIPE_CATALOG */
	char key_path[2048];  /* SNIPE_KEY, the admin key */
	snipe_key *admin;     /* loaded from key_path */
	bool started;         /* cluster up ran: cluster down must run too */
};

/* Makes dir and runs `snipe_bin cluster up --hosts hosts --dir dir` (its daemons with
 * RLIMIT_NOFILE nofile; 0: as ours), output to DIR/up.out; fills c from what it prints.
 * On failure c->started says whether bu_cluster_down is still due. */
int bu_cluster_up(struct bu_cluster *c, const char *snipe_bin, const char *dir, int hosts,
                  rlim_t nofile, char *err, size_t errlen);
/* `snipe cluster down` (if up ran), then a check that nothing of the cluster is left:
 * what is (a product bug) is named on stderr, killed by pid, and makes this fail.
 * Removes the directory unless keep, or this fails. No-op on a zeroed c. */
int bu_cluster_down(struct bu_cluster *c, const char *snipe_bin, bool keep, char *err,
                    size_t errlen);
/* The pid of host's agent from DIR/pids ("<pid> snipe-agentd <host>" lines), or -1. */
pid_t bu_agent_pid(const struct bu_cluster *c, const char *host);

#endif
