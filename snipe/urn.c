/*
 * urn.c — global names: urn:snipe:<kind>:<name>, parsed strictly (RFC 8141 shape,
 * DESIGN.md rules), formatted canonically, and generated from random UUIDs.
 * Not a general RFC 8141 parser: only the snipe namespace is accepted.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <uuid/uuid.h>

#include "sni.h"

static const char *const kind_names[] = {"host", "proc", "data", "ckpt", "key", "user"};
#define NKINDS (sizeof(kind_names) / sizeof(kind_names[0]))
#define PREFIX "urn:snipe:"
#define PREFIX_LEN (sizeof(PREFIX) - 1)

const char *snipe_kind_name(snipe_kind kind)
{
	if ((unsigned)kind >= NKINDS)
		return NULL;
	return kind_names[kind];
}

static bool name_char_ok(unsigned char c)
{
	return isascii(c) && (isalnum(c) || c == '.' || c == '_' || c == '-' || c == '/');
}

/* Checks a name; `base` is the 1-based position of its first character in the text the
 * caller is parsing, so errors point into what the user typed. */
static int check_name(const char *name, size_t base, char *err, size_t errlen)
{
	size_t len = strlen(name);
	if (len == 0 || len > SNIPE_URN_NAME_MAX)
		return sni_err(err, errlen, SNIPE_EURNLEN,
		               "URN name at position %zu is %zu characters; it must be 1-%d",
		               base, len, SNIPE_URN_NAME_MAX);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (!name_char_ok(c)) {
			if (isprint(c))
				return sni_err(err, errlen, SNIPE_EURNCHAR,
				               "invalid character '%c' at position %zu of URN "
				               "(allowed: A-Z a-z 0-9 . _ - /)",
				               c, base + i);
			return sni_err(err, errlen, SNIPE_EURNCHAR,
			               "invalid byte 0x%02x at position %zu of URN "
			               "(allowed: A-Z a-z 0-9 . _ - /)",
			               c, base + i);
		}
	}
	const char *dots = strstr(name, "..");
	if (dots != NULL)
		return sni_err(err, errlen, SNIPE_EURNPATH, "'..' at position %zu of URN",
		               base + (size_t)(dots - name));
	for (size_t start = 0; start <= len;) {
		size_t end = start;
		while (end < len && name[end] != '/')
			end++;
		if (end == start)
			return sni_err(err, errlen, SNIPE_EURNPATH,
			               "empty path segment at position %zu of URN "
			               "(no leading, trailing or doubled '/')",
			               base + start);
		if (end - start == 1 && name[start] == '.')
			return sni_err(err, errlen, SNIPE_EURNPATH,
			               "'.' segment at position %zu of URN", base + start);
		start = end + 1;
	}
	return SNIPE_OK;
}

int snipe_urn_parse(const char *s, snipe_urn *out, char *err, size_t errlen)
{
	if (s == NULL)
		return sni_err(err, errlen, SNIPE_EINVAL, "no URN given");
	for (size_t i = 0; i < PREFIX_LEN; i++) {
		if (tolower((unsigned char)s[i]) != PREFIX[i])
			return sni_err(err, errlen, SNIPE_EURNSCHEME,
			               "URN must start with '" PREFIX "' (mismatch at position "
			               "%zu)",
			               i + 1);
	}
	const char *kind = s + PREFIX_LEN;
	const char *colon = strchr(kind, ':');
	size_t klen = colon != NULL ? (size_t)(colon - kind) : strlen(kind);
	size_t k = 0;
	while (k < NKINDS &&
	       (strlen(kind_names[k]) != klen || strncmp(kind_names[k], kind, klen) != 0))
		k++;
	if (k == NKINDS || colon == NULL)
		return sni_err(err, errlen, SNIPE_EURNKIND,
		               "unknown URN kind '%.*s' at position %zu (one of host proc data "
		               "ckpt key user, followed by ':')",
		               (int)(klen > 16 ? 16 : klen), kind, PREFIX_LEN + 1);
	int rc = check_name(colon + 1, (size_t)(colon + 1 - s) + 1, err, errlen);
	if (rc != SNIPE_OK)
		return rc;
	if (out != NULL) {
		out->kind = (snipe_kind)k;
		strcpy(out->name, colon + 1);
	}
	return SNIPE_OK;
}

int snipe_urn_validate(const char *s, char *err, size_t errlen)
{
	return snipe_urn_parse(s, NULL, err, errlen);
}

int snipe_urn_make(snipe_kind kind, const char *name, snipe_urn *out, char *err,
                   size_t errlen)
{
	if (snipe_kind_name(kind) == NULL || name == NULL)
		return sni_err(err, errlen, SNIPE_EINVAL, "invalid kind or no name");
	int rc = check_name(name, 1, err, errlen);
	if (rc != SNIPE_OK)
		return rc;
	out->kind = kind;
	strcpy(out->name, name);
	return SNIPE_OK;
}

int snipe_urn_format(const snipe_urn *u, char *buf, size_t buflen)
{
	const char *kind = snipe_kind_name(u->kind);
	if (kind == NULL)
		return SNIPE_EINVAL;
	int n = snprintf(buf, buflen, PREFIX "%s:%s", kind, u->name);
	if (n < 0 || (size_t)n >= buflen)
		return SNIPE_ERANGE;
	return SNIPE_OK;
}

int snipe_urn_generate(snipe_kind kind, snipe_urn *out)
{
	if (snipe_kind_name(kind) == NULL)
		return SNIPE_EINVAL;
	uuid_t id;
	uuid_generate_random(id);
	out->kind = kind;
	uuid_unparse_lower(id, out->name);
	return SNIPE_OK;
}
