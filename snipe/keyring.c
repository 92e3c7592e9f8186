/*
 * keyring.c — a set of trusted Ed25519 public keys, found by key id. An open-addressing
 * table (linear probing, backward-shift deletion). It decides nothing about roles.
 */
#include <stdlib.h>
#include <string.h>

#include "sni.h"

struct slot {
	bool used;
	uint8_t id[SNIPE_KEYID_BYTES];
	uint8_t pk[SNIPE_PK_BYTES];
};

struct snipe_keyring {
	struct slot *slots;
	size_t cap; /* a power of two */
	size_t count;
};

int snipe_keyring_new(snipe_keyring **out)
{
	snipe_keyring *kr = calloc(1, sizeof(*kr));
	if (kr == NULL)
		return SNIPE_ENOMEM;
	kr->cap = 16;
	kr->slots = calloc(kr->cap, sizeof(struct slot));
	if (kr->slots == NULL) {
		free(kr);
		return SNIPE_ENOMEM;
	}
	*out = kr;
	return SNIPE_OK;
}

void snipe_keyring_free(snipe_keyring *kr)
{
	if (kr == NULL)
		return;
	free(kr->slots);
	free(kr);
}

static size_t home(const snipe_keyring *kr, const uint8_t *id)
{
	uint64_t h;
	memcpy(&h, id, sizeof(h)); /* ids are hash output: any 8 bytes are uniform */
	return (size_t)h & (kr->cap - 1);
}

/* The slot holding id, or the empty slot where it would go. */
static size_t probe(const snipe_keyring *kr, const uint8_t *id)
{
	size_t i = home(kr, id);
	while (kr->slots[i].used && memcmp(kr->slots[i].id, id, SNIPE_KEYID_BYTES) != 0)
		i = (i + 1) & (kr->cap - 1);
	return i;
}

static int grow(snipe_keyring *kr)
{
	struct slot *old = kr->slots;
	size_t old_cap = kr->cap;
	struct slot *slots = calloc(old_cap * 2, sizeof(struct slot));
	if (slots == NULL)
		return SNIPE_ENOMEM;
	kr->slots = slots;
	kr->cap = old_cap * 2;
	for (size_t i = 0; i < old_cap; i++)
		if (old[i].used)
			kr->slots[probe(kr, old[i].id)] = old[i];
	free(old);
	return SNIPE_OK;
}

int snipe_keyring_add(snipe_keyring *kr, const uint8_t pk[SNIPE_PK_BYTES])
{
	if (2 * (kr->count + 1) > kr->cap && grow(kr) != SNIPE_OK)
		return SNIPE_ENOMEM;
	uint8_t id[SNIPE_KEYID_BYTES];
	snipe_keyid(pk, id);
	struct slot *s = &kr->slots[probe(kr, id)];
	if (!s->used) {
		s->used = true;
		memcpy(s->id, id, sizeof(id));
		memcpy(s->pk, pk, SNIPE_PK_BYTES);
		kr->count++;
	}
	return SNIPE_OK;
}

const uint8_t *snipe_keyring_find(const snipe_keyring *kr,
                                  const uint8_t id[SNIPE_KEYID_BYTES])
{
	const struct slot *s = &kr->slots[probe(kr, id)];
	return s->used ? s->pk : NULL;
}

int snipe_keyring_remove(snipe_keyring *kr, const uint8_t id[SNIPE_KEYID_BYTES])
{
	size_t mask = kr->cap - 1;
	size_t i = probe(kr, id);
	if (!kr->slots[i].used)
		return SNIPE_ENOENT;
	/* Backward shift: pull later members of the run into the hole when their home
	 * position is not cyclically inside (hole, j]. */
	for (size_t j = (i + 1) & mask; kr->slots[j].used; j = (j + 1) & mask) {
		size_t h = home(kr, kr->slots[j].id);
		bool stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
		if (!stays) {
			kr->slots[i] = kr->slots[j];
			i = j;
		}
	}
	memset(&kr->slots[i], 0, sizeof(struct slot));
	kr->count--;
	return SNIPE_OK;
}

size_t snipe_keyring_count(const snipe_keyring *kr)
{
	return kr->count;
}

void snipe_keyring_clear(snipe_keyring *kr)
{
	memset(kr->slots, 0, kr->cap * sizeof(struct slot));
	kr->count = 0;
}
