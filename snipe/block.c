/*
 * block.c — a checkpoint block: its name is the BLAKE2b-256 hash of its bytes; it
 * travels and rests compressed with zstd. Whoever receives one checks it by
 * decompressing and hashing, so a bad copy is never taken for a good one. Also the
 * sets of block hashes a checkpoint's parts name.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "ckpt.pb-c.h"
#include "sni.h"

#define ZSTD_LEVEL 1

int sni_block_make(const uint8_t *data, size_t n, uint8_t hash[SNI_HASH_BYTES],
                   uint8_t **zstd, size_t *zlen)
{
	crypto_generichash(hash, SNI_HASH_BYTES, data, n, NULL, 0);
	return sni_block_compress(data, n, zstd, zlen);
}

int sni_block_compress(const uint8_t *data, size_t n, uint8_t **zstd, size_t *zlen)
{
	size_t cap = ZSTD_compressBound(n);
	*zstd = malloc(cap ? cap : 1);
	if (*zstd == NULL)
		return SNIPE_ENOMEM;
	size_t z = ZSTD_compress(*zstd, cap, data, n, ZSTD_LEVEL);
	if (ZSTD_isError(z)) {
		free(*zstd);
		*zstd = NULL;
		return SNIPE_EIO;
	}
	*zlen = z;
	return SNIPE_OK;
}

int sni_block_open(const uint8_t hash[SNI_HASH_BYTES], uint32_t size, const uint8_t *zstd,
                   size_t zlen, uint8_t *out)
{
	uint8_t got[SNI_HASH_BYTES];
	unsigned long long frame = ZSTD_getFrameContentSize(zstd, zlen);
	if (frame != size)
		return SNIPE_ECORRUPT;
	size_t n = ZSTD_decompress(out, size, zstd, zlen);
	if (ZSTD_isError(n) || n != size)
		return SNIPE_ECORRUPT;
	crypto_generichash(got, sizeof(got), out, size, NULL, 0);
	return sodium_memcmp(got, hash, SNI_HASH_BYTES) == 0 ? SNIPE_OK : SNIPE_ECORRUPT;
}

/* ------------------------------------------------------------ hash sets */

int sni_hash_cmp(const void *a, const void *b)
{
	return memcmp(a, b, SNI_HASH_BYTES);
}

int sni_hashset_of_parts(Snipe__Part *const *parts, size_t nparts, sni_hashset *out)
{
	size_t n = 0;
	for (size_t p = 0; p < nparts; p++)
		n += parts[p]->n_blocks;
	out->n = 0;
	out->v = malloc((n ? n : 1) * SNI_HASH_BYTES);
	if (out->v == NULL)
		return SNIPE_ENOMEM;
	for (size_t p = 0; p < nparts; p++) {
		for (size_t b = 0; b < parts[p]->n_blocks; b++) {
			const Snipe__BlockRef *r = parts[p]->blocks[b];
			if (r->hash.len != SNI_HASH_BYTES || r->size > SNI_BLOCK_MAX)
				return SNIPE_EINVAL;
			memcpy(out->v[out->n++], r->hash.data, SNI_HASH_BYTES);
		}
	}
	qsort(out->v, out->n, SNI_HASH_BYTES, sni_hash_cmp);
	size_t k = 0;
	for (size_t i = 0; i < out->n; i++)
		if (k == 0 || memcmp(out->v[k - 1], out->v[i], SNI_HASH_BYTES) != 0)
			memmove(out->v[k++], out->v[i], SNI_HASH_BYTES);
	out->n = k;
	return SNIPE_OK;
}

bool sni_hashset_has(const sni_hashset *s, const uint8_t hash[SNI_HASH_BYTES])
{
	return s->n > 0 && bsearch(hash, s->v, s->n, SNI_HASH_BYTES, sni_hash_cmp) != NULL;
}
