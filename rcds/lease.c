/*
 * lease.c — host leases on the leader: a sorted array of hosts, found by binary
 * search (heartbeats are frequent, new hosts rare). See lease.h.
 */
#include <stdlib.h>
#include <string.h>

#include "lease.h"
#include "sni.h"
#include "snipe.h"

struct lease {
	char *host;
	uint64_t deadline;
	bool live;      /* holds a lease (false: lapsed) */
	bool recorded;  /* the catalog's state for the host matches `live` */
	bool in_flight; /* a change is being committed */
	bool in_flight_up;
	uint32_t load;
};

struct rcds_leases {
	struct lease *v;
	size_t n, cap;
};

int rcds_leases_new(rcds_leases **out)
{
	*out = calloc(1, sizeof(rcds_leases));
	return *out != NULL ? SNIPE_OK : SNIPE_ENOMEM;
}

void rcds_leases_clear(rcds_leases *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].host);
	l->n = 0;
}

void rcds_leases_free(rcds_leases *l)
{
	if (l == NULL)
		return;
	rcds_leases_clear(l);
	free(l->v);
	free(l);
}

size_t rcds_leases_count(const rcds_leases *l)
{
	return l->n;
}

/* The position of host, or where it would go (*found false). */
static size_t find(const rcds_leases *l, const char *host, bool *found)
{
	size_t lo = 0, hi = l->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(l->v[mid].host, host);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static struct lease *lookup(const rcds_leases *l, const char *host)
{
	bool found;
	size_t i = find(l, host, &found);
	return found ? &l->v[i] : NULL;
}

static struct lease *insert(rcds_leases *l, const char *host)
{
	bool found;
	size_t i = find(l, host, &found);
	if (found)
		return &l->v[i];
	if (!sni_grow(&l->v, l->n, &l->cap, sizeof(*l->v)))
		return NULL;
	char *name = strdup(host);
	if (name == NULL)
		return NULL;
	memmove(&l->v[i + 1], &l->v[i], (l->n - i) * sizeof(*l->v));
	l->v[i] = (struct lease){.host = name};
	l->n++;
	return &l->v[i];
}

int rcds_lease_renew(rcds_leases *l, const char *host, uint64_t now, uint32_t lease_ms)
{
	if (lease_ms < RCDS_LEASE_MIN_MS || lease_ms > RCDS_LEASE_MAX_MS)
		return SNIPE_EINVAL;
	struct lease *e = insert(l, host);
	if (e == NULL)
		return SNIPE_ENOMEM;
	if (!e->live)
		e->recorded = false;
	e->live = true;
	e->deadline = now + lease_ms;
	return SNIPE_OK;
}

int rcds_lease_grace(rcds_leases *l, const char *host, uint64_t now, uint32_t lease_ms)
{
	if (lookup(l, host) != NULL)
		return SNIPE_OK;
	int rc = rcds_lease_renew(l, host, now, lease_ms);
	if (rc == SNIPE_OK)
		lookup(l, host)->recorded = true;
	return rc;
}

bool rcds_lease_live(const rcds_leases *l, const char *host, uint64_t now)
{
	const struct lease *e = lookup(l, host);
	return e != NULL && e->live && now < e->deadline;
}

size_t rcds_leases_due(rcds_leases *l, uint64_t now,
                       void (*fn)(void *arg, const char *host, bool up), void *arg)
{
	size_t calls = 0;
	for (size_t i = 0; i < l->n; i++) {
		struct lease *e = &l->v[i];
		if (e->live && now >= e->deadline) {
			e->live = false;
			e->recorded = false;
		}
		if (e->recorded || e->in_flight)
			continue;
		e->in_flight = true;
		e->in_flight_up = e->live;
		calls++;
		fn(arg, e->host, e->live);
	}
	return calls;
}

void rcds_lease_recorded(rcds_leases *l, const char *host, bool up, bool ok)
{
	struct lease *e = lookup(l, host);
	if (e == NULL || !e->in_flight || e->in_flight_up != up)
		return;
	e->in_flight = false;
	if (ok && e->live == up)
		e->recorded = true;
}

void rcds_leases_zero_load(rcds_leases *l)
{
	for (size_t i = 0; i < l->n; i++)
		l->v[i].load = 0;
}

void rcds_lease_add_load(rcds_leases *l, const char *host, uint32_t n)
{
	struct lease *e = lookup(l, host);
	if (e != NULL)
		e->load += n;
}

uint32_t rcds_lease_load(const rcds_leases *l, const char *host)
{
	const struct lease *e = lookup(l, host);
	return e != NULL ? e->load : 0;
}

int rcds_leases_each_live(const rcds_leases *l, uint64_t now,
                          int (*fn)(void *arg, const char *host, uint32_t load), void *arg)
{
	for (size_t i = 0; i < l->n; i++) {
		const struct lease *e = &l->v[i];
		if (!e->live || now >= e->deadline)
			continue;
		int rc = fn(arg, e->host, e->load);
		if (rc != 0)
			return rc;
	}
	return 0;
}
