/*
 * chunk.c — content-defined chunking for checkpoints (FastCDC's normalised gear
 * hash): cut points depend only on the bytes just before them, so inserting or
 * deleting bytes moves the cuts near the change and leaves every later block as it
 * was. Blocks are 16 KiB to 256 KiB, 64 KiB on average.
 */
#include <pthread.h>

#include "sni.h"

/* Before the average size a cut needs 18 zero bits (rarer), after it 14 (likelier):
 * sizes cluster around the average instead of spreading geometrically. */
#define MASK_HARD 0x94a5294a52900000ull /* 18 bits, spread over the high half */
#define MASK_EASY 0x9124492248900000ull /* 14 bits */

static uint64_t gear[256];
static pthread_once_t gear_once = PTHREAD_ONCE_INIT;

/* A fixed table: splitmix64 from a constant seed, the same on every machine. */
static void gear_init(void)
{
	uint64_t x = 0x534e495045434443ull; /* "SNIPECDC" */
	for (int i = 0; i < 256; i++) {
		uint64_t z = (x += 0x9e3779b97f4a7c15ull);
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		gear[i] = z ^ (z >> 31);
	}
}

size_t sni_chunk_cut(const uint8_t *p, size_t n)
{
	pthread_once(&gear_once, gear_init);
	if (n <= SNI_CHUNK_MIN)
		return n;
	size_t end = n < SNI_CHUNK_MAX ? n : SNI_CHUNK_MAX;
	size_t normal = end < SNI_CHUNK_AVG ? end : SNI_CHUNK_AVG;
	uint64_t h = 0;
	size_t i = SNI_CHUNK_MIN;
	for (; i < normal; i++) {
		h = (h << 1) + gear[p[i]];
		if ((h & MASK_HARD) == 0)
			return i + 1;
	}
	for (; i < end; i++) {
		h = (h << 1) + gear[p[i]];
		if ((h & MASK_EASY) == 0)
			return i + 1;
	}
	return end;
}
