/*
 * auth.h — who may write what in the catalog. Pure decisions over a principal and a
 * target; the store looks up both and applies the verdict.
 *
 * Keys are registered by an admin as assertions on urn:snipe:key:<keyid>:
 *   pubkey = <64 hex digits>, role = admin|user|host|replica, host = <name> (role host).
 */
#ifndef RCDS_AUTH_H
#define RCDS_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "snipe.h"

typedef enum rcds_role {
	RCDS_ROLE_NONE = 0, /* not registered */
	RCDS_ROLE_USER,
	RCDS_ROLE_HOST,
	RCDS_ROLE_REPLICA,
	RCDS_ROLE_ADMIN, /* the trust root, or a key registered with role admin */
} rcds_role;

typedef struct rcds_principal {
	rcds_role role;
	const uint8_t *pk; /* SNIPE_PK_BYTES */
	const char *host;  /* role host: the host name it speaks for; else NULL */
} rcds_principal;

typedef struct rcds_target {
	const snipe_urn *urn;
	const uint8_t *owner;  /* the URN's owner (first writer), or NULL if it has none */
	const char *proc_host; /* proc URNs: the current value of attr "host"; ckpt URNs
	                        * <name>/<seq>: that of urn:snipe:proc:<name>; or NULL */
} rcds_target;

/*
 * SNIPE_OK or SNIPE_EDENIED (err says why). The rules:
 *   admin: anything.
 *   key and user URNs: admins only.
 *   host URNs: the host whose name it is; replicas (the leader records host state).
 *   proc URNs: the host it is assigned to (proc_host); replicas; else the owner rule.
 *   ckpt URNs <name>/<seq> of an existing process: only the host it is assigned to;
 *   other ckpt URNs: the owner rule.
 *   data URNs: the owner rule.
 *   owner rule: a user or host may write a URN nobody owns (and becomes its owner),
 *   or one it owns.
 *   A principal with no role may write nothing.
 */
int rcds_auth_write(const rcds_principal *p, const rcds_target *t, char *err,
                    size_t errlen);

/* "admin" | "user" | "host" | "replica" -> role; RCDS_ROLE_NONE for anything else. */
rcds_role rcds_role_parse(const char *s, size_t len);
const char *rcds_role_name(rcds_role role);

#endif
