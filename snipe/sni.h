/*
 * sni.h — internal helpers shared by libsnipe's modules. Not installed; the daemons
 * and tests may include it, applications must not.
 */
#ifndef SNI_H
#define SNI_H

#include <stddef.h>
#include <stdint.h>

#include "snipe.h"

/* Formats a reason into err (if err is not NULL) and returns code, so a failure can be
 * reported and returned in one statement: `return sni_err(err, errlen, SNIPE_EINVAL, ...)`. */
int sni_err(char *err, size_t errlen, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Lower-case hex of n bytes into out (2n+1 bytes). */
void sni_hex(const uint8_t *bytes, size_t n, char *out);

/* Signing domains. Each purpose has its own string; see snipe_sign. */
#define SNI_DOMAIN_ENVELOPE "snipe/envelope/v1"

/* ---- replay cache (replay.c): remembers nonces, bounded; see snipe_verifier. */
typedef struct sni_replay sni_replay;

int sni_replay_new(size_t cap, sni_replay **out);
void sni_replay_free(sni_replay *r);
/* SNIPE_EREPLAY if the nonce is remembered or ts is not newer than a forgotten one. */
int sni_replay_check(const sni_replay *r, const uint8_t nonce[SNIPE_NONCE_BYTES],
                     uint64_t ts);
/* Remembers a nonce checked just before. First forgets entries older than
 * expire_before (they fail the time window anyway); if still full, forgets the oldest
 * remembered and refuses timestamps up to its own from then on. */
void sni_replay_add(sni_replay *r, const uint8_t nonce[SNIPE_NONCE_BYTES], uint64_t ts,
                    uint64_t expire_before);
size_t sni_replay_count(const sni_replay *r);

#endif
