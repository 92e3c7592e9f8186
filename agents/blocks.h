/*
 * blocks.h — an agent's block store: checkpoint blocks as files under
 * STATE/blocks/<first 2 hex digits>/<64 hex digits>, each holding the block's zstd
 * bytes as received. Every block is checked (sni_block_open) when it comes in and when
 * it goes out, so a corrupt copy is found and dropped, never served. Safe to call from
 * several threads at once (files are written to a temporary name and renamed).
 */
#ifndef AGENT_BLOCKS_H
#define AGENT_BLOCKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sni.h"

typedef struct agent_blocks agent_blocks;

/* Opens (creating if needed) the store in dir. */
int agent_blocks_open(const char *dir, agent_blocks **out, char *err, size_t errlen);
void agent_blocks_close(agent_blocks *b);

/* Whether a copy of the block is present (not checked). */
bool agent_blocks_has(agent_blocks *b, const uint8_t hash[SNI_HASH_BYTES]);

/* As has, and makes a present block young again, so a collection running now or within
 * the grace period keeps it: for a block about to be named by a new checkpoint. */
bool agent_blocks_keep(agent_blocks *b, const uint8_t hash[SNI_HASH_BYTES]);

/* Stores a block given as its hash, uncompressed size and zstd bytes, after checking
 * them (SNIPE_ECORRUPT if they do not match: nothing is stored). A block already
 * present is replaced (that is how a corrupt copy is repaired). Not yet durable: see
 * agent_blocks_sync. */
int agent_blocks_put(agent_blocks *b, const uint8_t hash[SNI_HASH_BYTES], uint32_t size,
                     const uint8_t *zstd, size_t zlen, char *err, size_t errlen);

/* The block's zstd bytes (*zstd malloc'd) and size, checked: SNIPE_ENOTFOUND, or
 * SNIPE_ECORRUPT if the stored copy is bad (it is deleted, so it can be fetched again
 * from elsewhere). */
int agent_blocks_get(agent_blocks *b, const uint8_t hash[SNI_HASH_BYTES], uint8_t **zstd,
                     size_t *zlen, uint32_t *size, char *err, size_t errlen);

/* As get, without decompressing and hashing the copy: for sending it to a receiver
 * that checks it (only a wrong size in the zstd frame is caught here). */
int agent_blocks_read(agent_blocks *b, const uint8_t hash[SNI_HASH_BYTES], uint8_t **zstd,
                      size_t *zlen, uint32_t *size, char *err, size_t errlen);

/* Makes every block stored so far durable (one syncfs on the store's file system). */
int agent_blocks_sync(agent_blocks *b);

/* Deletes every block whose hash is not in keep (sorted with memcmp order, nkeep
 * entries) and whose file is older than grace_ms at now_ms (wall clock): a block just
 * received may belong to a checkpoint not yet committed. *deleted says how many. */
int agent_blocks_gc(agent_blocks *b, const uint8_t (*keep)[SNI_HASH_BYTES], size_t nkeep,
                    uint64_t now_ms, uint64_t grace_ms, size_t *deleted);

/* Bytes and blocks stored (a walk of the store). */
int agent_blocks_usage(agent_blocks *b, uint64_t *bytes, size_t *count);

#endif
