/*
 * assertion.c — signed assertions, (urn, attr) = value until expires, as authors make
 * them and as the catalog and its clients check them. Storing them is rcds's job.
 */
#include <stdlib.h>
#include <string.h>

#include "catalog.pb-c.h"
#include "sni.h"

int sni_attr_validate(const char *attr, char *err, size_t errlen)
{
	size_t len = strlen(attr);
	if (len == 0 || len > SNI_ATTR_MAX)
		return sni_err(err, errlen, SNIPE_EINVAL, "attribute name must be 1-%d characters",
		               SNI_ATTR_MAX);
	for (size_t i = 0; i < len; i++) {
		char c = attr[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
		if (!ok)
			return sni_err(err, errlen, SNIPE_EINVAL,
			               "invalid character at position %zu of attribute '%.64s' "
			               "(allowed: A-Z a-z 0-9 . _ -)",
			               i + 1, attr);
	}
	return SNIPE_OK;
}

int sni_assertion_sign(const snipe_key *k, const char *urn, const char *attr,
                       const void *value, size_t len, uint64_t expires_ms,
                       uint8_t **content, size_t *content_len,
                       uint8_t sig[SNIPE_SIG_BYTES])
{
	Snipe__AssertionContent c = SNIPE__ASSERTION_CONTENT__INIT;
	c.urn = (char *)urn;
	c.attr = (char *)attr;
	c.value = (ProtobufCBinaryData){len, (uint8_t *)value};
	c.expires_ms = expires_ms;
	*content_len = snipe__assertion_content__get_packed_size(&c);
	*content = malloc(*content_len ? *content_len : 1);
	if (*content == NULL)
		return SNIPE_ENOMEM;
	snipe__assertion_content__pack(&c, *content);
	return snipe_sign(k, SNI_DOMAIN_ASSERTION, *content, *content_len, sig);
}

int sni_assertion_check(const uint8_t *content, size_t content_len, const uint8_t *author,
                        size_t author_len, const uint8_t *sig, size_t sig_len, bool verify,
                        Snipe__AssertionContent **out, char *err, size_t errlen)
{
	if (author_len != SNIPE_PK_BYTES || sig_len != SNIPE_SIG_BYTES)
		return sni_err(err, errlen, SNIPE_EDECODE,
		               "assertion: author key or signature has the wrong length");
	Snipe__AssertionContent *c =
		snipe__assertion_content__unpack(NULL, content_len, content);
	if (c == NULL)
		return sni_err(err, errlen, SNIPE_EDECODE, "assertion: content does not decode");
	int rc = snipe_urn_validate(c->urn, err, errlen);
	if (rc == SNIPE_OK)
		rc = sni_attr_validate(c->attr, err, errlen);
	if (rc == SNIPE_OK && c->value.len > SNI_VALUE_MAX)
		rc = sni_err(err, errlen, SNIPE_EINVAL, "assertion %s %s: value is %zu bytes (at "
		             "most %u)", c->urn, c->attr, c->value.len, SNI_VALUE_MAX);
	if (rc == SNIPE_OK && verify &&
	    snipe_verify(author, SNI_DOMAIN_ASSERTION, content, content_len, sig) != SNIPE_OK)
		rc = sni_err(err, errlen, SNIPE_EBADSIG, "assertion %s %s: bad signature", c->urn,
		             c->attr);
	if (rc != SNIPE_OK || out == NULL)
		snipe__assertion_content__free_unpacked(c, NULL);
	else
		*out = c;
	return rc;
}
