/*
 * config.c — the ini configuration shared by the daemons and the CLI, plus
 * strict parsers for the values and the client's flag > environment > file precedence.
 * Which keys mean what is decided by each program, not here.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sni.h"

static const char *const known_sections[] = {"client", "catalog", "agent", NULL};

struct item {
	char *section, *key, *value;
};

struct snipe_config {
	struct item *items;
	size_t count, cap;
};

struct load_state {
	snipe_config *cfg;
	char reason[256]; /* why the first bad line is bad */
};

int snipe_config_new(snipe_config **out)
{
	*out = calloc(1, sizeof(snipe_config));
	return *out != NULL ? SNIPE_OK : SNIPE_ENOMEM;
}

void snipe_config_free(snipe_config *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < cfg->count; i++) {
		free(cfg->items[i].section);
		free(cfg->items[i].key);
		free(cfg->items[i].value);
	}
	free(cfg->items);
	free(cfg);
}

static struct item *find(const snipe_config *cfg, const char *section, const char *key)
{
	for (size_t i = 0; i < cfg->count; i++)
		if (strcmp(cfg->items[i].section, section) == 0 &&
		    strcmp(cfg->items[i].key, key) == 0)
			return &cfg->items[i];
	return NULL;
}

const char *snipe_config_get(const snipe_config *cfg, const char *section, const char *key)
{
	const struct item *it = cfg != NULL ? find(cfg, section, key) : NULL;
	return it != NULL ? it->value : NULL;
}

int snipe_config_set(snipe_config *cfg, const char *section, const char *key,
                     const char *value)
{
	char *v = strdup(value);
	if (v == NULL)
		return SNIPE_ENOMEM;
	struct item *it = find(cfg, section, key);
	if (it != NULL) {
		free(it->value);
		it->value = v;
		return SNIPE_OK;
	}
	if (cfg->count == cfg->cap) {
		size_t cap = cfg->cap ? 2 * cfg->cap : 16;
		struct item *items = realloc(cfg->items, cap * sizeof(*items));
		if (items == NULL) {
			free(v);
			return SNIPE_ENOMEM;
		}
		cfg->items = items;
		cfg->cap = cap;
	}
	it = &cfg->items[cfg->count];
	it->section = strdup(section);
	it->key = strdup(key);
	it->value = v;
	if (it->section == NULL || it->key == NULL) {
		free(it->section);
		free(it->key);
		free(v);
		return SNIPE_ENOMEM;
	}
	cfg->count++;
	return SNIPE_OK;
}

static bool section_known(const char *section)
{
	for (int i = 0; known_sections[i] != NULL; i++)
		if (strcmp(known_sections[i], section) == 0)
			return true;
	return false;
}

/* One key = value of a known section. Returns 0 (with st->reason) on an error. */
static int on_entry(struct load_state *st, const char *section, const char *key,
                    const char *value)
{
	if (find(st->cfg, section, key) != NULL) {
		snprintf(st->reason, sizeof(st->reason), "duplicate key '%s' in [%s]", key,
		         section);
		return 0;
	}
	if (snipe_config_set(st->cfg, section, key, value) != SNIPE_OK) {
		snprintf(st->reason, sizeof(st->reason), "out of memory");
		return 0;
	}
	return 1;
}

/* ------------------------------------------------------------------ parser */

#define CONFIG_FILE_MAX (1u << 20)

/* The format: blank lines; whole-line comments starting with '#' or ';'; "[section]";
 * "key = value" (blanks around both trimmed; the value may hold anything else,
 * including '=', ';' and '#'). No line-length limit. libinih was the first choice, but
 * Debian builds it with a 200-byte line buffer that splits longer lines silently, and
 * it cannot report an unknown section at its own line; this is the small strict
 * parser those two needs call for. */

static void trim(const char **p, size_t *len)
{
	while (*len > 0 && (**p == ' ' || **p == '\t')) {
		(*p)++;
		(*len)--;
	}
	while (*len > 0 && ((*p)[*len - 1] == ' ' || (*p)[*len - 1] == '\t' ||
	                    (*p)[*len - 1] == '\r'))
		(*len)--;
}

static int parse_section(struct load_state *st, const char *line, size_t len, char *section,
                         size_t cap)
{
	if (line[len - 1] != ']' || len - 2 >= cap) {
		snprintf(st->reason, sizeof(st->reason), "malformed section header");
		return -1;
	}
	snprintf(section, cap, "%.*s", (int)(len - 2), line + 1);
	if (!section_known(section)) {
		snprintf(st->reason, sizeof(st->reason),
		         "unknown section [%s] (known: client, catalog, agent)", section);
		return -1;
	}
	return 0;
}

static int parse_entry(struct load_state *st, const char *line, size_t len,
                       const char *section)
{
	const char *eq = memchr(line, '=', len);
	if (eq == NULL) {
		snprintf(st->reason, sizeof(st->reason), "syntax error (expected key = value)");
		return -1;
	}
	if (section[0] == '\0') {
		snprintf(st->reason, sizeof(st->reason), "key outside of any [section]");
		return -1;
	}
	const char *k = line, *v = eq + 1;
	size_t klen = (size_t)(eq - line), vlen = len - klen - 1;
	trim(&k, &klen);
	trim(&v, &vlen);
	if (klen == 0) {
		snprintf(st->reason, sizeof(st->reason), "empty key");
		return -1;
	}
	char *key = strndup(k, klen), *value = strndup(v, vlen);
	int rc = key != NULL && value != NULL ? on_entry(st, section, key, value) : 0;
	free(key);
	free(value);
	return rc ? 0 : -1;
}

/* Returns 0, or the number of the first bad line with st->reason saying why. */
static int parse(struct load_state *st, const char *text)
{
	char section[64] = "";
	int lineno = 1;
	for (const char *p = text; *p != '\0'; lineno++) {
		const char *nl = strchr(p, '\n');
		const char *line = p;
		size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);
		trim(&line, &len);
		int bad = 0;
		if (len == 0 || *line == '#' || *line == ';')
			bad = 0;
		else if (*line == '[')
			bad = parse_section(st, line, len, section, sizeof(section));
		else
			bad = parse_entry(st, line, len, section);
		if (bad)
			return lineno;
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	return 0;
}

static int read_text(const char *path, char **out, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return sni_err(err, errlen, errno == ENOENT ? SNIPE_ENOENT : SNIPE_EIO,
		               "cannot open config %s: %s", path, strerror(errno));
	char *text = malloc(CONFIG_FILE_MAX + 1);
	size_t n = text != NULL ? fread(text, 1, CONFIG_FILE_MAX + 1, f) : 0;
	bool bad = text == NULL || ferror(f) || n > CONFIG_FILE_MAX;
	fclose(f);
	if (bad) {
		free(text);
		return sni_err(err, errlen, SNIPE_ECONFIG, "cannot read config %s (at most %u "
		               "bytes)", path, CONFIG_FILE_MAX);
	}
	text[n] = '\0';
	if (memchr(text, '\0', n) != NULL) {
		free(text);
		return sni_err(err, errlen, SNIPE_ECONFIG, "config %s is not text", path);
	}
	*out = text;
	return SNIPE_OK;
}

int snipe_config_load(const char *path, snipe_config **out, char *err, size_t errlen)
{
	char *text = NULL;
	int rc = read_text(path, &text, err, errlen);
	if (rc != SNIPE_OK)
		return rc;
	struct load_state st = {0};
	rc = snipe_config_new(&st.cfg);
	int line = rc == SNIPE_OK ? parse(&st, text) : 0;
	free(text);
	if (rc != SNIPE_OK)
		return rc;
	if (line != 0) {
		snipe_config_free(st.cfg);
		return sni_err(err, errlen, SNIPE_ECONFIG, "%s line %d: %s", path, line,
		               st.reason);
	}
	*out = st.cfg;
	return SNIPE_OK;
}

int snipe_config_check(const snipe_config *cfg, const char *section,
                       const char *const *known, char *err, size_t errlen)
{
	for (size_t i = 0; i < cfg->count; i++) {
		const struct item *it = &cfg->items[i];
		if (strcmp(it->section, section) != 0)
			continue;
		size_t k = 0;
		while (known[k] != NULL && strcmp(known[k], it->key) != 0)
			k++;
		if (known[k] == NULL)
			return sni_err(err, errlen, SNIPE_ECONFIG, "unknown key '%s' in [%s]",
			               it->key, section);
	}
	return SNIPE_OK;
}

/* ----------------------------------------------------------------- values */

int snipe_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	if (s == NULL || *s < '0' || *s > '9')
		return SNIPE_EINVAL;
	uint64_t v = 0;
	for (const char *p = s; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return SNIPE_EINVAL;
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return SNIPE_EINVAL;
		v = v * 10 + d;
	}
	if (v < min || v > max)
		return SNIPE_ERANGE;
	*out = v;
	return SNIPE_OK;
}

int snipe_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"true", "yes", "on", "1"};
	static const char *const no[] = {"false", "no", "off", "0"};
	for (int i = 0; s != NULL && i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0 || strcasecmp(s, no[i]) == 0) {
			*out = strcasecmp(s, yes[i]) == 0;
			return SNIPE_OK;
		}
	}
	return SNIPE_EINVAL;
}

/* ----------------------------------------------------------------- client */

static const char *layered(const snipe_config *cfg, const char *flag, const char *env,
                           const char *key)
{
	if (flag != NULL)
		return flag;
	const char *e = getenv(env);
	if (e != NULL && *e != '\0')
		return e;
	return snipe_config_get(cfg, "client", key);
}

const char *snipe_client_catalog(const snipe_config *cfg, const char *flag)
{
	return layered(cfg, flag, "SNIPE_CATALOG", "catalog");
}

const char *snipe_client_key(const snipe_config *cfg, const char *flag)
{
	return layered(cfg, flag, "SNIPE_KEY", "key");
}
