/*
 * replay.c — the bounded nonce cache behind snipe_env_open's replay check.
 *
 * Entries sit in a FIFO ring (arrival order) and in an open-addressing index keyed by
 * nonce. Forgetting an entry raises a floor: no timestamp at or below a forgotten
 * entry's is accepted again, so bounded memory never re-admits a replay. Nonces are
 * random, so their first 8 bytes are a good hash.
 */
#include <stdlib.h>
#include <string.h>

#include "sni.h"

struct entry {
	uint8_t nonce[SNIPE_NONCE_BYTES];
	uint64_t ts;
};

struct sni_replay {
	struct entry *ring; /* cap entries; head is the oldest */
	size_t cap, head, count;
	uint32_t *index; /* ring position + 1, 0 = empty; index_cap slots */
	size_t index_cap;
	uint64_t floor; /* timestamps <= floor are refused */
	bool have_floor;
};

int sni_replay_new(size_t cap, sni_replay **out)
{
	if (cap == 0 || cap > UINT32_MAX / 4)
		return SNIPE_EINVAL;
	sni_replay *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return SNIPE_ENOMEM;
	r->cap = cap;
	r->index_cap = 4;
	while (r->index_cap < 2 * cap)
		r->index_cap *= 2;
	r->ring = calloc(cap, sizeof(struct entry));
	r->index = calloc(r->index_cap, sizeof(uint32_t));
	if (r->ring == NULL || r->index == NULL) {
		sni_replay_free(r);
		return SNIPE_ENOMEM;
	}
	*out = r;
	return SNIPE_OK;
}

void sni_replay_free(sni_replay *r)
{
	if (r == NULL)
		return;
	free(r->ring);
	free(r->index);
	free(r);
}

static size_t home(const sni_replay *r, const uint8_t *nonce)
{
	uint64_t h;
	memcpy(&h, nonce, sizeof(h));
	return (size_t)h & (r->index_cap - 1);
}

/* The index slot holding nonce, or the empty slot where it would go. */
static size_t probe(const sni_replay *r, const uint8_t *nonce)
{
	size_t i = home(r, nonce);
	while (r->index[i] != 0 &&
	       memcmp(r->ring[r->index[i] - 1].nonce, nonce, SNIPE_NONCE_BYTES) != 0)
		i = (i + 1) & (r->index_cap - 1);
	return i;
}

int sni_replay_check(const sni_replay *r, const uint8_t nonce[SNIPE_NONCE_BYTES],
                     uint64_t ts)
{
	if (r->have_floor && ts <= r->floor)
		return SNIPE_EREPLAY;
	return r->index[probe(r, nonce)] != 0 ? SNIPE_EREPLAY : SNIPE_OK;
}

/* Forgets the oldest entry: removes it from the index (backward shift) and raises
 * the floor to its timestamp. */
static void forget_oldest(sni_replay *r)
{
	struct entry *e = &r->ring[r->head];
	size_t mask = r->index_cap - 1;
	size_t i = probe(r, e->nonce);
	for (size_t j = (i + 1) & mask; r->index[j] != 0; j = (j + 1) & mask) {
		size_t h = home(r, r->ring[r->index[j] - 1].nonce);
		bool stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
		if (!stays) {
			r->index[i] = r->index[j];
			i = j;
		}
	}
	r->index[i] = 0;
	if (!r->have_floor || e->ts > r->floor)
		r->floor = e->ts;
	r->have_floor = true;
	r->head = (r->head + 1) % r->cap;
	r->count--;
}

void sni_replay_add(sni_replay *r, const uint8_t nonce[SNIPE_NONCE_BYTES], uint64_t ts,
                    uint64_t expire_before)
{
	while (r->count > 0 && r->ring[r->head].ts < expire_before)
		forget_oldest(r);
	if (r->count == r->cap)
		forget_oldest(r);
	size_t pos = (r->head + r->count) % r->cap;
	memcpy(r->ring[pos].nonce, nonce, SNIPE_NONCE_BYTES);
	r->ring[pos].ts = ts;
	r->index[probe(r, nonce)] = (uint32_t)pos + 1;
	r->count++;
}

size_t sni_replay_count(const sni_replay *r)
{
	return r->count;
}
