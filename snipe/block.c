/*
 * block.c — a checkpoint block: its name is the BLAKE2b-256 hash of its bytes; it
 * travels and rests compressed with zstd. Whoever receives one checks it by
 * decompressing and hashing, so a bad copy is never taken for a good one.
 */
#include <sodium.h>
#include <stdlib.h>
#include <zstd.h>

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
