/*
 * test_config.c — the ini configuration: loading and its errors (with line numbers),
 * overrides, key checks, strict number and boolean parsing, and client precedence.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snipe.h"
#include "testutil.h"

/* --------------------------------------------------------------- helpers */

/* A scratch directory holding one config file with the given text. */
struct cfgfile {
	char *dir;
	char *path;
};

static struct cfgfile write_cfg(const char *text)
{
	struct cfgfile f;
	f.dir = tu_tmpdir();
	f.path = tu_path(f.dir, "snipe.ini");
	tu_write_file(f.path, text, strlen(text), 0644);
	return f;
}

static void drop_cfg(struct cfgfile *f)
{
	free(f->path);
	tu_rmtree(f->dir);
}

/* err with every copy of path blanked out, so digits in the path name no line. */
static void strip_path(char *err, const char *path)
{
	size_t n = strlen(path);
	char *p;
	while ((p = strstr(err, path)) != NULL)
		memset(p, ' ', n);
}

/* Loading text must fail with SNIPE_ECONFIG and a reason naming line. */
static void expect_config_error(const char *text, unsigned long line)
{
	struct cfgfile f = write_cfg(text);
	snipe_config *cfg = NULL;
	char err[512] = "";
	int rc = snipe_config_load(f.path, &cfg, err, sizeof(err));

	/* clean up first, so a failed check leaves nothing behind */
	strip_path(err, f.path);
	snipe_config_free(cfg);
	drop_cfg(&f);
	ck_assert_msg(rc == SNIPE_ECONFIG, "got %s (%d), want ECONFIG; err=\"%s\"",
	              snipe_errname(rc), rc, err);
	ck_assert_msg(err[0] != '\0', "err left empty");
	ck_assert_msg(tu_has_number(err, line), "err \"%s\" does not name line %lu", err, line);
}

static const char sample[] = "# SNIPE configuration\n"
                             "[client]\n"
                             "catalog = tcp://10.0.0.1:7000\n"
                             "key = /home/alice/.snipe/id\n"
                             "\n"
                             "[catalog]\n"
                             "listen = tcp://*:7000\n"
                             "db = /var/lib/snipe/catalog.db\n"
                             "\n"
                             "[agent]\n"
                             "name = node-17\n"
                             "key = /etc/snipe/agent.key\n";

/* ------------------------------------------------------------------ load */

START_TEST(test_load_reads_all_sections)
{
	struct cfgfile f = write_cfg(sample);
	snipe_config *cfg = NULL;
	char err[512] = "";

	ck_assert_msg(snipe_config_load(f.path, &cfg, err, sizeof(err)) == SNIPE_OK, "load: %s",
	              err);
	ck_assert_ptr_nonnull(cfg);
	ck_assert_str_eq(snipe_config_get(cfg, "client", "catalog"), "tcp://10.0.0.1:7000");
	ck_assert_str_eq(snipe_config_get(cfg, "client", "key"), "/home/alice/.snipe/id");
	ck_assert_str_eq(snipe_config_get(cfg, "catalog", "listen"), "tcp://*:7000");
	ck_assert_str_eq(snipe_config_get(cfg, "catalog", "db"), "/var/lib/snipe/catalog.db");
	ck_assert_str_eq(snipe_config_get(cfg, "agent", "name"), "node-17");
	ck_assert_str_eq(snipe_config_get(cfg, "agent", "key"), "/etc/snipe/agent.key");

	snipe_config_free(cfg);
	drop_cfg(&f);
}
END_TEST

START_TEST(test_get_missing_gives_null)
{
	struct cfgfile f = write_cfg(sample);
	snipe_config *cfg = NULL;

	ck_assert_int_eq(snipe_config_load(f.path, &cfg, NULL, 0), SNIPE_OK);
	ck_assert_ptr_null(snipe_config_get(cfg, "client", "listen"));
	ck_assert_ptr_null(snipe_config_get(cfg, "catalog", "catalog"));
	ck_assert_ptr_null(snipe_config_get(cfg, "bogus", "key"));
	ck_assert_ptr_null(snipe_config_get(cfg, "Client", "key"));

	snipe_config_free(cfg);
	drop_cfg(&f);
}
END_TEST

START_TEST(test_load_empty_file_has_no_values)
{
	struct cfgfile f = write_cfg("");
	snipe_config *cfg = NULL;

	ck_assert_int_eq(snipe_config_load(f.path, &cfg, NULL, 0), SNIPE_OK);
	ck_assert_ptr_nonnull(cfg);
	ck_assert_ptr_null(snipe_config_get(cfg, "client", "catalog"));

	snipe_config_free(cfg);
	drop_cfg(&f);
}
END_TEST

START_TEST(test_load_same_key_in_two_sections_is_allowed)
{
	struct cfgfile f = write_cfg("[client]\nkey = a\n[agent]\nkey = b\n");
	snipe_config *cfg = NULL;

	ck_assert_int_eq(snipe_config_load(f.path, &cfg, NULL, 0), SNIPE_OK);
	ck_assert_str_eq(snipe_config_get(cfg, "client", "key"), "a");
	ck_assert_str_eq(snipe_config_get(cfg, "agent", "key"), "b");

	snipe_config_free(cfg);
	drop_cfg(&f);
}
END_TEST

START_TEST(test_load_rejects_unknown_section)
{
	expect_config_error("[client]\n"
	                    "catalog = x\n"
	                    "[bogus]\n"
	                    "a = b\n",
	                    3);
}
END_TEST

START_TEST(test_load_rejects_empty_unknown_section)
{
	expect_config_error("[client]\n"
	                    "catalog = x\n"
	                    "\n"
	                    "\n"
	                    "[servers]\n",
	                    5);
}
END_TEST

START_TEST(test_load_rejects_duplicate_key)
{
	expect_config_error("[client]\n"
	                    "catalog = a\n"
	                    "key = k\n"
	                    "catalog = c\n",
	                    4);
}
END_TEST

START_TEST(test_load_rejects_syntax_error)
{
	expect_config_error("[client]\n"
	                    "catalog = a\n"
	                    "this line is not ini\n",
	                    3);
	expect_config_error("[agent]\n"
	                    "name = n\n"
	                    "\n"
	                    "[client\n",
	                    4);
}
END_TEST

START_TEST(test_load_rejects_key_before_any_section)
{
	expect_config_error("\n"
	                    "catalog = a\n"
	                    "[client]\n"
	                    "key = k\n",
	                    2);
}
END_TEST

/* With several bad lines, the reason given is the one for the line named. */
START_TEST(test_load_names_first_bad_line_with_its_reason)
{
	struct cfgfile f = write_cfg("[client]\n"
	                             "this line is not ini\n"
	                             "catalog = a\n"
	                             "catalog = b\n");
	snipe_config *cfg = NULL;
	char err[512] = "";
	int rc = snipe_config_load(f.path, &cfg, err, sizeof(err));

	strip_path(err, f.path);
	snipe_config_free(cfg);
	drop_cfg(&f);
	ck_assert_int_eq(rc, SNIPE_ECONFIG);
	ck_assert_msg(tu_has_number(err, 2), "err \"%s\" does not name line 2", err);
	ck_assert_msg(strstr(err, "duplicate") == NULL,
	              "err \"%s\" gives line 4's reason for line 2", err);
}
END_TEST

/* Paths may be long: a value is read back whole, however long its line. */
START_TEST(test_load_keeps_long_value)
{
	static const char *const known[] = { "catalog", "key", NULL };
	char value[600];
	char text[800];
	char got[800] = "(null)";
	char err[512] = "";
	struct cfgfile f;
	snipe_config *cfg = NULL;
	int rc, check = SNIPE_EINVAL;

	strcpy(value, "/srv/");
	memset(value + 5, 'p', 500);
	strcpy(value + 505, "/id=x");
	snprintf(text, sizeof(text), "[client]\nkey = %s\ncatalog = c\n", value);
	f = write_cfg(text);

	rc = snipe_config_load(f.path, &cfg, err, sizeof(err));
	if (rc == SNIPE_OK) {
		const char *v = snipe_config_get(cfg, "client", "key");
		if (v != NULL)
			snprintf(got, sizeof(got), "%s", v);
		check = snipe_config_check(cfg, "client", known, NULL, 0);
	}
	snipe_config_free(cfg);
	drop_cfg(&f);
	ck_assert_msg(rc == SNIPE_OK, "load: %s", err);
	ck_assert_str_eq(got, value);
	ck_assert_int_eq(check, SNIPE_OK);
}
END_TEST

START_TEST(test_load_missing_file_gives_enoent)
{
	char *dir = tu_tmpdir();
	char *path = tu_path(dir, "absent.ini");
	snipe_config *cfg = NULL;
	char err[512] = "";

	ck_assert_int_eq(snipe_config_load(path, &cfg, err, sizeof(err)), SNIPE_ENOENT);
	ck_assert_int_eq(snipe_config_load(path, &cfg, NULL, 0), SNIPE_ENOENT);

	free(path);
	tu_rmtree(dir);
}
END_TEST

START_TEST(test_config_free_null_is_noop)
{
	snipe_config_free(NULL);
}
END_TEST

/* --------------------------------------------------------- set and check */

START_TEST(test_set_fills_new_config)
{
	snipe_config *cfg = NULL;

	ck_assert_int_eq(snipe_config_new(&cfg), SNIPE_OK);
	ck_assert_ptr_nonnull(cfg);
	ck_assert_ptr_null(snipe_config_get(cfg, "client", "catalog"));
	ck_assert_int_eq(snipe_config_set(cfg, "client", "catalog", "tcp://h:1"), SNIPE_OK);
	ck_assert_str_eq(snipe_config_get(cfg, "client", "catalog"), "tcp://h:1");
	ck_assert_ptr_null(snipe_config_get(cfg, "agent", "catalog"));
	snipe_config_free(cfg);
}
END_TEST

START_TEST(test_set_overrides_loaded_value)
{
	struct cfgfile f = write_cfg(sample);
	snipe_config *cfg = NULL;
	char value[] = "tcp://override:9";

	ck_assert_int_eq(snipe_config_load(f.path, &cfg, NULL, 0), SNIPE_OK);
	ck_assert_int_eq(snipe_config_set(cfg, "client", "catalog", value), SNIPE_OK);
	/* the config keeps its own copy */
	value[0] = 'X';
	ck_assert_str_eq(snipe_config_get(cfg, "client", "catalog"), "tcp://override:9");
	ck_assert_int_eq(snipe_config_set(cfg, "client", "catalog", "again"), SNIPE_OK);
	ck_assert_str_eq(snipe_config_get(cfg, "client", "catalog"), "again");
	ck_assert_str_eq(snipe_config_get(cfg, "client", "key"), "/home/alice/.snipe/id");
	ck_assert_str_eq(snipe_config_get(cfg, "agent", "name"), "node-17");

	snipe_config_free(cfg);
	drop_cfg(&f);
}
END_TEST

START_TEST(test_check_rejects_unknown_key)
{
	static const char *const known[] = { "catalog", "key", NULL };
	struct cfgfile f = write_cfg("[client]\ncatalog = a\nfrobnicate = yes\nkey = k\n");
	snipe_config *cfg = NULL;
	char err[512] = "";

	ck_assert_int_eq(snipe_config_load(f.path, &cfg, NULL, 0), SNIPE_OK);
	ck_assert_int_eq(snipe_config_check(cfg, "client", known, err, sizeof(err)),
	                 SNIPE_ECONFIG);
	ck_assert_msg(strstr(err, "frobnicate") != NULL, "err \"%s\" does not name the key",
	              err);
	ck_assert_int_eq(snipe_config_check(cfg, "client", known, NULL, 0), SNIPE_ECONFIG);

	snipe_config_free(cfg);
	drop_cfg(&f);
}
END_TEST

START_TEST(test_check_accepts_known_keys)
{
	static const char *const known[] = { "catalog", "key", NULL };
	static const char *const none[] = { NULL };
	struct cfgfile f = write_cfg(sample);
	snipe_config *cfg = NULL;
	char err[512] = "";

	ck_assert_int_eq(snipe_config_load(f.path, &cfg, NULL, 0), SNIPE_OK);
	/* [catalog] and [agent] hold keys not in the list; only [client] is looked at */
	ck_assert_int_eq(snipe_config_check(cfg, "client", known, err, sizeof(err)), SNIPE_OK);
	ck_assert_int_eq(snipe_config_check(cfg, "client", known, NULL, 0), SNIPE_OK);
	ck_assert_int_eq(snipe_config_check(cfg, "catalog", known, err, sizeof(err)),
	                 SNIPE_ECONFIG);
	ck_assert_msg(strstr(err, "listen") != NULL || strstr(err, "db") != NULL,
	              "err \"%s\" names no key", err);
	snipe_config_free(cfg);

	/* a section with no keys passes any list */
	ck_assert_int_eq(snipe_config_new(&cfg), SNIPE_OK);
	ck_assert_int_eq(snipe_config_check(cfg, "agent", none, NULL, 0), SNIPE_OK);
	ck_assert_int_eq(snipe_config_set(cfg, "agent", "name", "n"), SNIPE_OK);
	ck_assert_int_eq(snipe_config_check(cfg, "agent", none, err, sizeof(err)),
	                 SNIPE_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "name"));

	snipe_config_free(cfg);
	drop_cfg(&f);
}
END_TEST

START_TEST(test_check_sees_keys_added_by_set)
{
	static const char *const known[] = { "catalog", "key", NULL };
	snipe_config *cfg = NULL;
	char err[512] = "";

	ck_assert_int_eq(snipe_config_new(&cfg), SNIPE_OK);
	ck_assert_int_eq(snipe_config_set(cfg, "client", "key", "k"), SNIPE_OK);
	ck_assert_int_eq(snipe_config_check(cfg, "client", known, err, sizeof(err)), SNIPE_OK);
	ck_assert_int_eq(snipe_config_set(cfg, "client", "timeout_ms", "5"), SNIPE_OK);
	ck_assert_int_eq(snipe_config_check(cfg, "client", known, err, sizeof(err)),
	                 SNIPE_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "timeout_ms"));
	snipe_config_free(cfg);
}
END_TEST

/* --------------------------------------------------------------- parsers */

START_TEST(test_parse_u64_accepts_decimal)
{
	uint64_t v = 99;

	ck_assert_int_eq(snipe_parse_u64("0", 0, UINT64_MAX, &v), SNIPE_OK);
	ck_assert_uint_eq(v, 0);
	ck_assert_int_eq(snipe_parse_u64("42", 0, UINT64_MAX, &v), SNIPE_OK);
	ck_assert_uint_eq(v, 42);
	ck_assert_int_eq(snipe_parse_u64("18446744073709551615", 0, UINT64_MAX, &v), SNIPE_OK);
	ck_assert_uint_eq(v, UINT64_MAX);
	ck_assert_int_eq(snipe_parse_u64("10", 10, 20, &v), SNIPE_OK);
	ck_assert_uint_eq(v, 10);
	ck_assert_int_eq(snipe_parse_u64("20", 10, 20, &v), SNIPE_OK);
	ck_assert_uint_eq(v, 20);
}
END_TEST

START_TEST(test_parse_u64_rejects_non_numbers)
{
	static const char *const bad[] = {
		"",   " 1", "1 ",  "+1",  "-1",  "1x", "0x10", "x", "1.5",
		"1e3", "\t1", "1\n", "- 1", "18446744073709551616", "99999999999999999999999",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t v = 0;
		int rc = snipe_parse_u64(bad[i], 0, UINT64_MAX, &v);
		ck_assert_msg(rc == SNIPE_EINVAL, "parse_u64 \"%s\": got %s (%d), want EINVAL",
		              bad[i], snipe_errname(rc), rc);
	}
}
END_TEST

START_TEST(test_parse_u64_rejects_out_of_bounds)
{
	uint64_t v = 0;

	ck_assert_int_eq(snipe_parse_u64("5", 10, 100, &v), SNIPE_ERANGE);
	ck_assert_int_eq(snipe_parse_u64("9", 10, 100, &v), SNIPE_ERANGE);
	ck_assert_int_eq(snipe_parse_u64("101", 10, 100, &v), SNIPE_ERANGE);
	ck_assert_int_eq(snipe_parse_u64("0", 1, UINT64_MAX, &v), SNIPE_ERANGE);
	ck_assert_int_eq(snipe_parse_u64("18446744073709551615", 0, UINT64_MAX - 1, &v),
	                 SNIPE_ERANGE);
}
END_TEST

START_TEST(test_parse_bool_accepts_listed_spellings)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };

	for (size_t i = 0; i < 4; i++) {
		bool b = false;
		ck_assert_int_eq(snipe_parse_bool(yes[i], &b), SNIPE_OK);
		ck_assert_msg(b, "\"%s\" is not true", yes[i]);
		b = true;
		ck_assert_int_eq(snipe_parse_bool(no[i], &b), SNIPE_OK);
		ck_assert_msg(!b, "\"%s\" is not false", no[i]);
	}
}
END_TEST

START_TEST(test_parse_bool_rejects_others)
{
	static const char *const bad[] = { "", "2", "y", "n", "truex", " true", "true ",
		                           "of", "onn", "00", "-1" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		bool b = false;
		int rc = snipe_parse_bool(bad[i], &b);
		ck_assert_msg(rc == SNIPE_EINVAL, "parse_bool \"%s\": got %s (%d), want EINVAL",
		              bad[i], snipe_errname(rc), rc);
	}
}
END_TEST

/* ------------------------------------------------------------ precedence */

static snipe_config *client_cfg(void)
{
	snipe_config *cfg = NULL;
	ck_assert_int_eq(snipe_config_new(&cfg), SNIPE_OK);
	ck_assert_int_eq(snipe_config_set(cfg, "client", "catalog", "cfg-catalog"), SNIPE_OK);
	ck_assert_int_eq(snipe_config_set(cfg, "client", "key", "cfg-key"), SNIPE_OK);
	return cfg;
}

static void clear_env(void)
{
	unsetenv("SNIPE_CATALOG");
	unsetenv("SNIPE_KEY");
}

START_TEST(test_client_catalog_flag_beats_env_beats_config)
{
	snipe_config *cfg = client_cfg();
	const char *flag = "flag-catalog";

	clear_env();
	ck_assert_int_eq(setenv("SNIPE_CATALOG", "env-catalog", 1), 0);
	ck_assert_ptr_eq(snipe_client_catalog(cfg, flag), flag);
	ck_assert_str_eq(snipe_client_catalog(cfg, NULL), "env-catalog");
	ck_assert_str_eq(snipe_client_catalog(NULL, NULL), "env-catalog");
	unsetenv("SNIPE_CATALOG");
	ck_assert_str_eq(snipe_client_catalog(cfg, NULL), "cfg-catalog");
	ck_assert_ptr_eq(snipe_client_catalog(cfg, flag), flag);
	/* SNIPE_KEY does not leak into the catalog */
	ck_assert_int_eq(setenv("SNIPE_KEY", "env-key", 1), 0);
	ck_assert_str_eq(snipe_client_catalog(cfg, NULL), "cfg-catalog");

	clear_env();
	snipe_config_free(cfg);
}
END_TEST

START_TEST(test_client_key_flag_beats_env_beats_config)
{
	snipe_config *cfg = client_cfg();
	const char *flag = "flag-key";

	clear_env();
	ck_assert_int_eq(setenv("SNIPE_KEY", "env-key", 1), 0);
	ck_assert_ptr_eq(snipe_client_key(cfg, flag), flag);
	ck_assert_str_eq(snipe_client_key(cfg, NULL), "env-key");
	ck_assert_str_eq(snipe_client_key(NULL, NULL), "env-key");
	unsetenv("SNIPE_KEY");
	ck_assert_str_eq(snipe_client_key(cfg, NULL), "cfg-key");
	ck_assert_ptr_eq(snipe_client_key(cfg, flag), flag);
	ck_assert_int_eq(setenv("SNIPE_CATALOG", "env-catalog", 1), 0);
	ck_assert_str_eq(snipe_client_key(cfg, NULL), "cfg-key");

	clear_env();
	snipe_config_free(cfg);
}
END_TEST

START_TEST(test_client_settings_null_when_unset)
{
	snipe_config *cfg = NULL;

	clear_env();
	ck_assert_ptr_null(snipe_client_catalog(NULL, NULL));
	ck_assert_ptr_null(snipe_client_key(NULL, NULL));
	ck_assert_int_eq(snipe_config_new(&cfg), SNIPE_OK);
	ck_assert_ptr_null(snipe_client_catalog(cfg, NULL));
	ck_assert_ptr_null(snipe_client_key(cfg, NULL));
	/* only the [client] section counts */
	ck_assert_int_eq(snipe_config_set(cfg, "agent", "catalog", "agent-catalog"), SNIPE_OK);
	ck_assert_int_eq(snipe_config_set(cfg, "catalog", "key", "catalog-key"), SNIPE_OK);
	ck_assert_ptr_null(snipe_client_catalog(cfg, NULL));
	ck_assert_ptr_null(snipe_client_key(cfg, NULL));
	snipe_config_free(cfg);
}
END_TEST

START_TEST(test_client_settings_from_loaded_file)
{
	struct cfgfile f = write_cfg(sample);
	snipe_config *cfg = NULL;

	clear_env();
	ck_assert_int_eq(snipe_config_load(f.path, &cfg, NULL, 0), SNIPE_OK);
	ck_assert_str_eq(snipe_client_catalog(cfg, NULL), "tcp://10.0.0.1:7000");
	ck_assert_str_eq(snipe_client_key(cfg, NULL), "/home/alice/.snipe/id");
	snipe_config_free(cfg);
	drop_cfg(&f);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc;

	tc = tcase_create("load");
	tcase_add_test(tc, test_load_reads_all_sections);
	tcase_add_test(tc, test_get_missing_gives_null);
	tcase_add_test(tc, test_load_empty_file_has_no_values);
	tcase_add_test(tc, test_load_same_key_in_two_sections_is_allowed);
	tcase_add_test(tc, test_load_rejects_unknown_section);
	tcase_add_test(tc, test_load_rejects_empty_unknown_section);
	tcase_add_test(tc, test_load_rejects_duplicate_key);
	tcase_add_test(tc, test_load_rejects_syntax_error);
	tcase_add_test(tc, test_load_rejects_key_before_any_section);
	tcase_add_test(tc, test_load_names_first_bad_line_with_its_reason);
	tcase_add_test(tc, test_load_keeps_long_value);
	tcase_add_test(tc, test_load_missing_file_gives_enoent);
	tcase_add_test(tc, test_config_free_null_is_noop);
	suite_add_tcase(s, tc);

	tc = tcase_create("set_check");
	tcase_add_test(tc, test_set_fills_new_config);
	tcase_add_test(tc, test_set_overrides_loaded_value);
	tcase_add_test(tc, test_check_rejects_unknown_key);
	tcase_add_test(tc, test_check_accepts_known_keys);
	tcase_add_test(tc, test_check_sees_keys_added_by_set);
	suite_add_tcase(s, tc);

	tc = tcase_create("parse");
	tcase_add_test(tc, test_parse_u64_accepts_decimal);
	tcase_add_test(tc, test_parse_u64_rejects_non_numbers);
	tcase_add_test(tc, test_parse_u64_rejects_out_of_bounds);
	tcase_add_test(tc, test_parse_bool_accepts_listed_spellings);
	tcase_add_test(tc, test_parse_bool_rejects_others);
	suite_add_tcase(s, tc);

	tc = tcase_create("client");
	tcase_add_test(tc, test_client_catalog_flag_beats_env_beats_config);
	tcase_add_test(tc, test_client_key_flag_beats_env_beats_config);
	tcase_add_test(tc, test_client_settings_null_when_unset);
	tcase_add_test(tc, test_client_settings_from_loaded_file);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(suite());
}
