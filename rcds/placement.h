/*
 * placement.h — where a process goes: the least loaded live host that fits. Pure
 * choice over candidates the leader gathers (rcds/leader.c); no I/O.
 */
#ifndef RCDS_PLACEMENT_H
#define RCDS_PLACEMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rcds_candidate {
	const char *name;    /* the host's name */
	const char *labels;  /* its labels, "k=v,k=v" ("" or NULL: none) */
	uint32_t cores;      /* at least 1 (0 is taken as 1) */
	uint32_t load;       /* active processes assigned to it */
} rcds_candidate;

/* Whether labels ("k=v,k=v") holds the label kv ("k=v") exactly. */
bool rcds_labels_have(const char *labels, const char *kv);

/*
 * The index of the candidate to choose, or -1 if none fits. A candidate fits if it is
 * not named exclude (NULL: none) and has every label in need. Among those: the lowest
 * load per core, then the lowest load, then the first name in strcmp order, so the
 * same inputs always give the same host.
 */
int rcds_place_choose(const rcds_candidate *c, size_t n, const char *const *need,
                      size_t nneed, const char *exclude);

#endif
