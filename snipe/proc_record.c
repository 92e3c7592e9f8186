/*
 * proc_record.c — reading urn:snipe:proc:<name> records, attribute by attribute, as
 * the catalog returns them (to the leader from its store, to agents and the CLI from
 * rcds_get). The meaning of each attribute is in sni.h; what runs is in agent.proto.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.pb-c.h"
#include "sni.h"

void sni_proc_init(sni_proc *p, const char *urn)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->urn, sizeof(p->urn), "%s", urn);
}

void sni_proc_clear(sni_proc *p)
{
	if (p->spec != NULL)
		snipe__proc_spec__free_unpacked(p->spec, NULL);
	p->spec = NULL;
}

/* value as a NUL-terminated string in buf, or "" if it does not fit or holds a NUL. */
static void text(char *buf, size_t cap, const uint8_t *value, size_t len)
{
	if (len >= cap || (len > 0 && memchr(value, 0, len) != NULL))
		len = 0;
	if (len > 0)
		memcpy(buf, value, len);
	buf[len] = '\0';
}

static int64_t number(const uint8_t *value, size_t len)
{
	char buf[24];
	text(buf, sizeof(buf), value, len);
	char *end;
	long long v = strtoll(buf, &end, 10);
	return buf[0] != '\0' && *end == '\0' ? v : 0;
}

void sni_proc_set(sni_proc *p, const char *attr, const uint8_t *value, size_t len,
                  uint64_t version, const uint8_t *author)
{
	if (version > p->version)
		p->version = version;
	if (strcmp(attr, "host") == 0) {
		text(p->host, sizeof(p->host), value, len);
	} else if (strcmp(attr, "state") == 0) {
		text(p->state, sizeof(p->state), value, len);
	} else if (strcmp(attr, "reason") == 0) {
		text(p->reason, sizeof(p->reason), value, len);
	} else if (strcmp(attr, "command") == 0) {
		text(p->command, sizeof(p->command), value, len);
	} else if (strcmp(attr, "epoch") == 0) {
		int64_t e = number(value, len);
		p->epoch = e > 0 ? (uint64_t)e : 0;
		p->epoch_version = version;
	} else if (strcmp(attr, "restarts") == 0) {
		int64_t r = number(value, len);
		p->restarts = r > 0 && r < UINT32_MAX ? (uint32_t)r : 0;
	} else if (strcmp(attr, "pid") == 0) {
		p->pid = number(value, len);
	} else if (strcmp(attr, "exit") == 0) {
		p->exit_code = (int32_t)number(value, len);
		p->has_exit = len > 0;
	} else if (strcmp(attr, "ckpt") == 0) {
		int64_t s = number(value, len);
		p->ckpt = s > 0 ? (uint64_t)s : 0;
		p->ckpt_version = version;
	} else if (strcmp(attr, "started_ms") == 0) {
		int64_t t = number(value, len);
		p->started_ms = t > 0 ? (uint64_t)t : 0;
	} else if (strcmp(attr, "stop") == 0) {
		p->stop = len == 1 && value[0] == '1';
	} else if (strcmp(attr, "spec") == 0) {
		sni_proc_clear(p);
		p->spec = snipe__proc_spec__unpack(NULL, len, value);
		if (p->spec != NULL && p->spec->n_argv == 0) {
			sni_proc_clear(p);
		}
		if (author != NULL) {
			memcpy(p->owner, author, SNIPE_PK_BYTES);
			p->has_owner = true;
		}
	}
}

bool sni_proc_state_active(const char *state)
{
	return strcmp(state, "pending") == 0 || strcmp(state, "running") == 0 ||
	       strcmp(state, "backoff") == 0;
}

bool sni_proc_policy_restarts(const char *policy, int code)
{
	if (policy == NULL || strcmp(policy, "never") == 0 || policy[0] == '\0')
		return false;
	if (strcmp(policy, "always") == 0)
		return true;
	return strcmp(policy, "on-failure") == 0 && code != 0;
}
