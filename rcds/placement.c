/*
 * placement.c — choosing a host for a process. See placement.h.
 */
#include <string.h>

#include "placement.h"

bool rcds_labels_have(const char *labels, const char *kv)
{
	size_t len = strlen(kv);
	if (labels == NULL || len == 0)
		return false;
	for (const char *p = labels; *p != '\0';) {
		const char *end = strchr(p, ',');
		size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
		if (n == len && memcmp(p, kv, len) == 0)
			return true;
		if (end == NULL)
			break;
		p = end + 1;
	}
	return false;
}

static bool fits(const rcds_candidate *c, const char *const *need, size_t nneed,
                 const char *exclude)
{
	if (exclude != NULL && strcmp(c->name, exclude) == 0)
		return false;
	for (size_t i = 0; i < nneed; i++) {
		if (!rcds_labels_have(c->labels, need[i]))
			return false;
	}
	return true;
}

/* Whether a is a better choice than b. */
static bool better(const rcds_candidate *a, const rcds_candidate *b)
{
	uint64_t ca = a->cores ? a->cores : 1, cb = b->cores ? b->cores : 1;
	uint64_t la = (uint64_t)a->load * cb, lb = (uint64_t)b->load * ca;
	if (la != lb)
		return la < lb;
	if (a->load != b->load)
		return a->load < b->load;
	return strcmp(a->name, b->name) < 0;
}

int rcds_place_choose(const rcds_candidate *c, size_t n, const char *const *need,
                      size_t nneed, const char *exclude)
{
	int best = -1;
	for (size_t i = 0; i < n; i++) {
		if (!fits(&c[i], need, nneed, exclude))
			continue;
		if (best < 0 || better(&c[i], &c[best]))
			best = (int)i;
	}
	return best;
}
