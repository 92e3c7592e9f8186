/*
 * auth.c — the catalog's write rules: given who signs (a principal with a role) and what
 * is written (a URN with its owner and, for processes, its host), allow or deny.
 *
 * Pure decisions: no database, no keyring. Looking the principal and target up, and
 * recording the owner of a newly written URN, is the store's job (rcds/store.c).
 */
#include <string.h>

#include "auth.h"
#include "sni.h"

/* ------------------------------------------------------------------ roles */

static const char *const role_names[] = {
	[RCDS_ROLE_NONE] = "none",
	[RCDS_ROLE_USER] = "user",
	[RCDS_ROLE_HOST] = "host",
	[RCDS_ROLE_REPLICA] = "replica",
	[RCDS_ROLE_ADMIN] = "admin",
};

#define NROLES (sizeof(role_names) / sizeof(role_names[0]))

rcds_role rcds_role_parse(const char *s, size_t len)
{
	if (s == NULL)
		return RCDS_ROLE_NONE;
	for (size_t r = RCDS_ROLE_USER; r < NROLES; r++) {
		if (strlen(role_names[r]) == len && memcmp(role_names[r], s, len) == 0)
			return (rcds_role)r;
	}
	return RCDS_ROLE_NONE;
}

const char *rcds_role_name(rcds_role role)
{
	if ((size_t)role >= NROLES)
		return "unknown";
	return role_names[role];
}

/* ------------------------------------------------------------------ rules */

static bool same_host(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* A user or host may write a URN nobody owns, or one it owns. */
static int owner_rule(const rcds_principal *p, const rcds_target *t, const char *kind,
                      char *err, size_t errlen)
{
	if (p->role != RCDS_ROLE_USER && p->role != RCDS_ROLE_HOST)
		return sni_err(err, errlen, SNIPE_EDENIED, "role %s may not write %s URNs",
		               rcds_role_name(p->role), kind);
	if (t->owner == NULL || memcmp(t->owner, p->pk, SNIPE_PK_BYTES) == 0)
		return SNIPE_OK;
	return sni_err(err, errlen, SNIPE_EDENIED, "urn:snipe:%s:%s is owned by another key",
	               kind, t->urn->name);
}

int rcds_auth_write(const rcds_principal *p, const rcds_target *t, char *err,
                    size_t errlen)
{
	const char *kind = snipe_kind_name(t->urn->kind);

	if (kind == NULL)
		return sni_err(err, errlen, SNIPE_EDENIED, "invalid URN kind");
	if (p->role == RCDS_ROLE_NONE)
		return sni_err(err, errlen, SNIPE_EDENIED, "signer is not a registered key");
	if (p->role == RCDS_ROLE_ADMIN)
		return SNIPE_OK;
	switch (t->urn->kind) {
	case SNIPE_KIND_KEY:
	case SNIPE_KIND_USER:
		return sni_err(err, errlen, SNIPE_EDENIED, "only an admin may write %s URNs", kind);
	case SNIPE_KIND_HOST:
		if (p->role == RCDS_ROLE_REPLICA ||
		    (p->role == RCDS_ROLE_HOST && same_host(p->host, t->urn->name)))
			return SNIPE_OK;
		return sni_err(err, errlen, SNIPE_EDENIED,
		               "urn:snipe:host:%s may be written only by that host or a replica",
		               t->urn->name);
	case SNIPE_KIND_PROC:
		if (p->role == RCDS_ROLE_REPLICA ||
		    (p->role == RCDS_ROLE_HOST && same_host(p->host, t->proc_host)))
			return SNIPE_OK;
		return owner_rule(p, t, kind, err, errlen);
	case SNIPE_KIND_CKPT:
		/* a process's checkpoints: only the host it runs on, never a replaced one */
		if (t->proc_host != NULL) {
			if (p->role == RCDS_ROLE_HOST && same_host(p->host, t->proc_host))
				return SNIPE_OK;
			return sni_err(err, errlen, SNIPE_EDENIED,
			               "urn:snipe:ckpt:%s may be written only by the host its process "
			               "runs on (%s)", t->urn->name, t->proc_host);
		}
		return owner_rule(p, t, kind, err, errlen);
	case SNIPE_KIND_DATA:
		return owner_rule(p, t, kind, err, errlen);
	}
	return sni_err(err, errlen, SNIPE_EDENIED, "invalid URN kind");
}
