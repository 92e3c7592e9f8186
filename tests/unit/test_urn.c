/*
 * test_urn.c — global names: parsing, validating, building, formatting and
 * generating "urn:snipe:<kind>:<name>", with the exact code for every rejected form.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "snipe.h"
#include "testutil.h"

/* --------------------------------------------------------------- helpers */

/* Parses s, expecting code; if pos > 0, err must name that 1-based position. */
static void expect_parse(const char *s, int code, unsigned long pos)
{
	snipe_urn u;
	char err[256] = "";
	int rc = snipe_urn_parse(s, &u, err, sizeof(err));
	ck_assert_msg(rc == code, "parse \"%s\": got %s (%d), want %s (%d); err=\"%s\"", s,
	              snipe_errname(rc), rc, snipe_errname(code), code, err);
	if (code != SNIPE_OK)
		ck_assert_msg(err[0] != '\0', "parse \"%s\": err left empty", s);
	if (pos > 0)
		ck_assert_msg(tu_has_number(err, pos),
		              "parse \"%s\": err \"%s\" does not name position %lu", s, err, pos);
}

/* As expect_parse, through snipe_urn_validate. */
static void expect_validate(const char *s, int code)
{
	char err[256] = "";
	int rc = snipe_urn_validate(s, err, sizeof(err));
	ck_assert_msg(rc == code, "validate \"%s\": got %s (%d), want %s (%d); err=\"%s\"", s,
	              snipe_errname(rc), rc, snipe_errname(code), code, err);
}

static void expect_both(const char *s, int code)
{
	expect_parse(s, code, 0);
	expect_validate(s, code);
}

/* "urn:snipe:host:" followed by n copies of c. */
static void long_urn(char *buf, size_t buflen, size_t n, char c)
{
	ck_assert_uint_ge(buflen, 15 + n + 1);
	memcpy(buf, "urn:snipe:host:", 15);
	memset(buf + 15, c, n);
	buf[15 + n] = '\0';
}

/* ----------------------------------------------------------- round trips */

static const struct {
	snipe_kind kind;
	const char *text;
} kinds[] = {
	{ SNIPE_KIND_HOST, "host" }, { SNIPE_KIND_PROC, "proc" }, { SNIPE_KIND_DATA, "data" },
	{ SNIPE_KIND_CKPT, "ckpt" }, { SNIPE_KIND_KEY, "key" },   { SNIPE_KIND_USER, "user" },
};
#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

START_TEST(test_parse_format_round_trips_every_kind)
{
	for (size_t i = 0; i < NKINDS; i++) {
		char in[SNIPE_URN_MAX];
		char out[SNIPE_URN_MAX];
		char err[256] = "";
		snipe_urn u;

		snprintf(in, sizeof(in), "urn:snipe:%s:Node-1.a/b_c/Z9", kinds[i].text);
		ck_assert_int_eq(snipe_urn_parse(in, &u, err, sizeof(err)), SNIPE_OK);
		ck_assert_int_eq(u.kind, kinds[i].kind);
		ck_assert_str_eq(u.name, "Node-1.a/b_c/Z9");
		ck_assert_int_eq(snipe_urn_format(&u, out, sizeof(out)), SNIPE_OK);
		ck_assert_str_eq(out, in);
		ck_assert_int_eq(snipe_urn_validate(in, err, sizeof(err)), SNIPE_OK);
	}
}
END_TEST

START_TEST(test_make_format_round_trips_every_kind)
{
	for (size_t i = 0; i < NKINDS; i++) {
		char want[SNIPE_URN_MAX];
		char out[SNIPE_URN_MAX];
		char err[256] = "";
		snipe_urn u, back;

		ck_assert_int_eq(snipe_urn_make(kinds[i].kind, "x.y/z", &u, err, sizeof(err)),
		                 SNIPE_OK);
		ck_assert_int_eq(u.kind, kinds[i].kind);
		ck_assert_str_eq(u.name, "x.y/z");
		ck_assert_int_eq(snipe_urn_format(&u, out, sizeof(out)), SNIPE_OK);
		snprintf(want, sizeof(want), "urn:snipe:%s:x.y/z", kinds[i].text);
		ck_assert_str_eq(out, want);
		ck_assert_int_eq(snipe_urn_parse(out, &back, err, sizeof(err)), SNIPE_OK);
		ck_assert_int_eq(back.kind, u.kind);
		ck_assert_str_eq(back.name, u.name);
	}
}
END_TEST

START_TEST(test_parse_accepts_scheme_in_any_case_and_formats_lower)
{
	static const char *const in[] = {
		"URN:SNIPE:host:Ab", "Urn:Snipe:host:Ab", "uRn:sNiPe:host:Ab", "urn:SNIPE:host:Ab",
	};
	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		snipe_urn u;
		char out[SNIPE_URN_MAX];
		ck_assert_int_eq(snipe_urn_parse(in[i], &u, NULL, 0), SNIPE_OK);
		ck_assert_int_eq(u.kind, SNIPE_KIND_HOST);
		ck_assert_str_eq(u.name, "Ab");
		ck_assert_int_eq(snipe_urn_format(&u, out, sizeof(out)), SNIPE_OK);
		ck_assert_str_eq(out, "urn:snipe:host:Ab");
	}
}
END_TEST

START_TEST(test_parse_keeps_name_case)
{
	snipe_urn u;
	ck_assert_int_eq(snipe_urn_parse("urn:snipe:user:AliceBOB", &u, NULL, 0), SNIPE_OK);
	ck_assert_int_eq(u.kind, SNIPE_KIND_USER);
	ck_assert_str_eq(u.name, "AliceBOB");
}
END_TEST

START_TEST(test_parse_accepts_valid_names)
{
	static const char *const ok[] = {
		"urn:snipe:host:a",
		"urn:snipe:host:0",
		"urn:snipe:host:.a",
		"urn:snipe:host:a.",
		"urn:snipe:host:a.b",
		"urn:snipe:host:a/.b/c.d",
		"urn:snipe:host:a-b_c.D9/x",
		"urn:snipe:host:-",
		"urn:snipe:host:_",
		"urn:snipe:data:dir/sub/file.tar.gz",
		"urn:snipe:key:0123456789abcdef0123",
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		expect_both(ok[i], SNIPE_OK);
}
END_TEST

/* ------------------------------------------------------------- rejections */

START_TEST(test_parse_rejects_bad_scheme)
{
	static const char *const bad[] = {
		"urn:snip:host:a", "", "foo", "urn:snipe", "urn:snipex:host:a",
		" urn:snipe:host:a", "urn-snipe:host:a", "urn:snipe-host:a", "snipe:host:a",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_both(bad[i], SNIPE_EURNSCHEME);
}
END_TEST

START_TEST(test_parse_rejects_unknown_kind)
{
	static const char *const bad[] = {
		"urn:snipe:node:a", "urn:snipe:HOST:a", "urn:snipe:Host:a", "urn:snipe:KEY:a",
		"urn:snipe::a",     "urn:snipe:hostx:a", "urn:snipe:hos:a",  "urn:snipe:ke:a",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_both(bad[i], SNIPE_EURNKIND);
}
END_TEST

START_TEST(test_parse_unknown_kind_names_kind_position)
{
	/* the kind starts right after "urn:snipe:", at position 11 */
	expect_parse("urn:snipe:node:a", SNIPE_EURNKIND, 11);
}
END_TEST

START_TEST(test_parse_rejects_empty_name)
{
	expect_both("urn:snipe:host:", SNIPE_EURNLEN);
	expect_both("urn:snipe:key:", SNIPE_EURNLEN);
}
END_TEST

START_TEST(test_parse_accepts_128_char_name)
{
	char s[300];
	snipe_urn u;
	long_urn(s, sizeof(s), SNIPE_URN_NAME_MAX, 'a');
	ck_assert_int_eq(snipe_urn_parse(s, &u, NULL, 0), SNIPE_OK);
	ck_assert_uint_eq(strlen(u.name), SNIPE_URN_NAME_MAX);
	ck_assert_int_eq(strncmp(u.name, s + 15, SNIPE_URN_NAME_MAX + 1), 0);
}
END_TEST

START_TEST(test_parse_rejects_129_char_name)
{
	char s[300];
	long_urn(s, sizeof(s), SNIPE_URN_NAME_MAX + 1, 'a');
	expect_both(s, SNIPE_EURNLEN);
}
END_TEST

START_TEST(test_parse_rejects_very_long_name)
{
	char s[1100];
	long_urn(s, sizeof(s), 1000, 'b');
	expect_both(s, SNIPE_EURNLEN);
}
END_TEST

START_TEST(test_parse_rejects_bad_characters)
{
	static const char *const bad[] = {
		"urn:snipe:host:a b",    "urn:snipe:host:a@b",   "urn:snipe:host:a:b",
		"urn:snipe:host:ab\xc3\xa9", "urn:snipe:host:\x80", "urn:snipe:host:a\xff",
		"urn:snipe:host:a\tb",   "urn:snipe:host:a\nb",  "urn:snipe:host:a%20b",
		"urn:snipe:host:a+b",    "urn:snipe:host:a~b",   "urn:snipe:host:a\\b",
		"urn:snipe:host:a*",     "urn:snipe:host:a?b",   "urn:snipe:host:a#b",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_both(bad[i], SNIPE_EURNCHAR);
}
END_TEST

START_TEST(test_parse_bad_character_names_its_position)
{
	/* "urn:snipe:host:" is 15 characters, so the name starts at position 16 */
	expect_parse("urn:snipe:host:ab cd", SNIPE_EURNCHAR, 18);
	expect_parse("urn:snipe:host:a@b", SNIPE_EURNCHAR, 17);
	expect_parse("urn:snipe:host:a:b", SNIPE_EURNCHAR, 17);
	expect_parse("urn:snipe:host:ab\xc3\xa9", SNIPE_EURNCHAR, 18);
	expect_parse("urn:snipe:host:*", SNIPE_EURNCHAR, 16);
	/* 'd' at 16 ... '*' at 26 */
	expect_parse("urn:snipe:data:dir/sub/fi*le", SNIPE_EURNCHAR, 26);
	/* "urn:snipe:key:" is 14 characters */
	expect_parse("urn:snipe:key:abc!", SNIPE_EURNCHAR, 18);
	/* positions count in the input, whatever the scheme's case */
	expect_parse("URN:SNIPE:proc:x y", SNIPE_EURNCHAR, 17);
}
END_TEST

START_TEST(test_parse_rejects_leading_slash)
{
	expect_both("urn:snipe:host:/a", SNIPE_EURNPATH);
	expect_both("urn:snipe:host:/", SNIPE_EURNPATH);
	expect_parse("urn:snipe:host:/a", SNIPE_EURNPATH, 16);
}
END_TEST

START_TEST(test_parse_rejects_trailing_slash)
{
	expect_both("urn:snipe:host:a/", SNIPE_EURNPATH);
	expect_both("urn:snipe:host:a/b/", SNIPE_EURNPATH);
}
END_TEST

START_TEST(test_parse_rejects_doubled_slash)
{
	expect_both("urn:snipe:host:a//b", SNIPE_EURNPATH);
	expect_both("urn:snipe:host:a/b//c", SNIPE_EURNPATH);
}
END_TEST

START_TEST(test_parse_rejects_dot_segment)
{
	expect_both("urn:snipe:host:.", SNIPE_EURNPATH);
	expect_both("urn:snipe:host:a/./b", SNIPE_EURNPATH);
	expect_both("urn:snipe:host:./a", SNIPE_EURNPATH);
	expect_both("urn:snipe:host:a/.", SNIPE_EURNPATH);
}
END_TEST

START_TEST(test_parse_rejects_dot_dot_anywhere)
{
	expect_both("urn:snipe:host:..", SNIPE_EURNPATH);
	expect_both("urn:snipe:host:a..b", SNIPE_EURNPATH);
	expect_both("urn:snipe:host:a/../b", SNIPE_EURNPATH);
	expect_both("urn:snipe:host:../a", SNIPE_EURNPATH);
	expect_both("urn:snipe:host:a/..", SNIPE_EURNPATH);
	expect_both("urn:snipe:host:...", SNIPE_EURNPATH);
	expect_both("urn:snipe:host:a...", SNIPE_EURNPATH);
	expect_both("urn:snipe:host:x/y..z/w", SNIPE_EURNPATH);
}
END_TEST

START_TEST(test_parse_err_may_be_null)
{
	snipe_urn u;
	ck_assert_int_eq(snipe_urn_parse("urn:snipe:host:a b", &u, NULL, 0), SNIPE_EURNCHAR);
	ck_assert_int_eq(snipe_urn_parse("urn:snipe:node:a", &u, NULL, 0), SNIPE_EURNKIND);
	ck_assert_int_eq(snipe_urn_parse("nope", &u, NULL, 0), SNIPE_EURNSCHEME);
	ck_assert_int_eq(snipe_urn_parse("urn:snipe:host:", &u, NULL, 0), SNIPE_EURNLEN);
	ck_assert_int_eq(snipe_urn_parse("urn:snipe:host:a//b", &u, NULL, 0), SNIPE_EURNPATH);
	ck_assert_int_eq(snipe_urn_validate("urn:snipe:host:a b", NULL, 0), SNIPE_EURNCHAR);
	ck_assert_int_eq(snipe_urn_make(SNIPE_KIND_HOST, "a b", &u, NULL, 0), SNIPE_EURNCHAR);
}
END_TEST

START_TEST(test_parse_err_respects_errlen)
{
	snipe_urn u;
	char err[16];

	memset(err, 'Z', sizeof(err));
	ck_assert_int_eq(snipe_urn_parse("urn:snipe:host:a b", &u, err, 4), SNIPE_EURNCHAR);
	ck_assert_uint_lt(strnlen(err, 4), 4);
	for (size_t i = 4; i < sizeof(err); i++)
		ck_assert_int_eq(err[i], 'Z');

	memset(err, 'Z', sizeof(err));
	ck_assert_int_eq(snipe_urn_validate("urn:snipe:host:a b", err, 0), SNIPE_EURNCHAR);
	for (size_t i = 0; i < sizeof(err); i++)
		ck_assert_int_eq(err[i], 'Z');
}
END_TEST

/* ------------------------------------------------------------------ make */

START_TEST(test_make_rejects_bad_names)
{
	char name[SNIPE_URN_NAME_MAX + 2];
	snipe_urn u;
	char err[256];

	ck_assert_int_eq(snipe_urn_make(SNIPE_KIND_HOST, "", &u, err, sizeof(err)),
	                 SNIPE_EURNLEN);
	memset(name, 'n', SNIPE_URN_NAME_MAX + 1);
	name[SNIPE_URN_NAME_MAX + 1] = '\0';
	ck_assert_int_eq(snipe_urn_make(SNIPE_KIND_HOST, name, &u, err, sizeof(err)),
	                 SNIPE_EURNLEN);
	ck_assert_int_eq(snipe_urn_make(SNIPE_KIND_PROC, "a b", &u, err, sizeof(err)),
	                 SNIPE_EURNCHAR);
	ck_assert_int_eq(snipe_urn_make(SNIPE_KIND_PROC, "a:b", &u, err, sizeof(err)),
	                 SNIPE_EURNCHAR);
	ck_assert_int_eq(snipe_urn_make(SNIPE_KIND_DATA, "/a", &u, err, sizeof(err)),
	                 SNIPE_EURNPATH);
	ck_assert_int_eq(snipe_urn_make(SNIPE_KIND_DATA, "a/", &u, err, sizeof(err)),
	                 SNIPE_EURNPATH);
	ck_assert_int_eq(snipe_urn_make(SNIPE_KIND_DATA, "a//b", &u, err, sizeof(err)),
	                 SNIPE_EURNPATH);
	ck_assert_int_eq(snipe_urn_make(SNIPE_KIND_DATA, "a/./b", &u, err, sizeof(err)),
	                 SNIPE_EURNPATH);
	ck_assert_int_eq(snipe_urn_make(SNIPE_KIND_CKPT, "a..b", &u, err, sizeof(err)),
	                 SNIPE_EURNPATH);
	ck_assert_int_eq(snipe_urn_make(SNIPE_KIND_CKPT, "a/../b", &u, err, sizeof(err)),
	                 SNIPE_EURNPATH);
}
END_TEST

START_TEST(test_make_accepts_128_char_name)
{
	char name[SNIPE_URN_NAME_MAX + 1];
	snipe_urn u;

	memset(name, 'q', SNIPE_URN_NAME_MAX);
	name[SNIPE_URN_NAME_MAX] = '\0';
	ck_assert_int_eq(snipe_urn_make(SNIPE_KIND_USER, name, &u, NULL, 0), SNIPE_OK);
	ck_assert_int_eq(u.kind, SNIPE_KIND_USER);
	ck_assert_str_eq(u.name, name);
}
END_TEST

/* ---------------------------------------------------------------- format */

START_TEST(test_format_needs_room_for_nul)
{
	snipe_urn u;
	char buf[SNIPE_URN_MAX];
	const char *text = "urn:snipe:host:abc";
	size_t n = strlen(text);

	ck_assert_int_eq(snipe_urn_parse(text, &u, NULL, 0), SNIPE_OK);
	ck_assert_int_eq(snipe_urn_format(&u, buf, n), SNIPE_ERANGE);
	ck_assert_int_eq(snipe_urn_format(&u, buf, 1), SNIPE_ERANGE);
	ck_assert_int_eq(snipe_urn_format(&u, buf, 0), SNIPE_ERANGE);
	memset(buf, 'Z', sizeof(buf));
	ck_assert_int_eq(snipe_urn_format(&u, buf, n + 1), SNIPE_OK);
	ck_assert_str_eq(buf, text);
	ck_assert_int_eq(buf[n + 1], 'Z');
}
END_TEST

START_TEST(test_format_longest_urn_fits_urn_max)
{
	char name[SNIPE_URN_NAME_MAX + 1];
	char buf[SNIPE_URN_MAX];
	snipe_urn u;

	memset(name, 'm', SNIPE_URN_NAME_MAX);
	name[SNIPE_URN_NAME_MAX] = '\0';
	ck_assert_int_eq(snipe_urn_make(SNIPE_KIND_CKPT, name, &u, NULL, 0), SNIPE_OK);
	ck_assert_int_eq(snipe_urn_format(&u, buf, SNIPE_URN_MAX), SNIPE_OK);
	ck_assert_uint_eq(strlen(buf), SNIPE_URN_MAX - 1);
	ck_assert_int_eq(strncmp(buf, "urn:snipe:ckpt:mmm", 18), 0);
	ck_assert_int_eq(snipe_urn_format(&u, buf, SNIPE_URN_MAX - 1), SNIPE_ERANGE);
}
END_TEST

START_TEST(test_format_key_kind_boundary)
{
	snipe_urn u;
	char buf[32];
	const char *text = "urn:snipe:key:k1";

	ck_assert_int_eq(snipe_urn_make(SNIPE_KIND_KEY, "k1", &u, NULL, 0), SNIPE_OK);
	ck_assert_int_eq(snipe_urn_format(&u, buf, strlen(text)), SNIPE_ERANGE);
	ck_assert_int_eq(snipe_urn_format(&u, buf, strlen(text) + 1), SNIPE_OK);
	ck_assert_str_eq(buf, text);
}
END_TEST

/* -------------------------------------------------------------- generate */

static void check_uuid_v4(const char *s)
{
	ck_assert_uint_eq(strlen(s), 36);
	for (size_t i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			ck_assert_msg(s[i] == '-', "uuid %s: char %zu is not '-'", s, i);
			continue;
		}
		ck_assert_msg(isxdigit((unsigned char)s[i]) && !isupper((unsigned char)s[i]),
		              "uuid %s: char %zu is not a lower-case hex digit", s, i);
	}
	ck_assert_msg(s[14] == '4', "uuid %s is not version 4", s);
	ck_assert_msg(strchr("89ab", s[19]) != NULL, "uuid %s has a bad variant", s);
}

START_TEST(test_generate_gives_lower_case_v4_uuid)
{
	for (size_t i = 0; i < NKINDS; i++) {
		snipe_urn u;
		char buf[SNIPE_URN_MAX];
		char want[16];

		ck_assert_int_eq(snipe_urn_generate(kinds[i].kind, &u), SNIPE_OK);
		ck_assert_int_eq(u.kind, kinds[i].kind);
		check_uuid_v4(u.name);
		ck_assert_int_eq(snipe_urn_format(&u, buf, sizeof(buf)), SNIPE_OK);
		snprintf(want, sizeof(want), "urn:snipe:%s:", kinds[i].text);
		ck_assert_int_eq(strncmp(buf, want, strlen(want)), 0);
		ck_assert_int_eq(snipe_urn_validate(buf, NULL, 0), SNIPE_OK);
	}
}
END_TEST

START_TEST(test_generate_twice_differs)
{
	snipe_urn a, b;
	ck_assert_int_eq(snipe_urn_generate(SNIPE_KIND_PROC, &a), SNIPE_OK);
	ck_assert_int_eq(snipe_urn_generate(SNIPE_KIND_PROC, &b), SNIPE_OK);
	ck_assert_str_ne(a.name, b.name);
}
END_TEST

/* ------------------------------------------------------------ kind names */

START_TEST(test_kind_name_of_each_kind)
{
	for (size_t i = 0; i < NKINDS; i++)
		ck_assert_str_eq(snipe_kind_name(kinds[i].kind), kinds[i].text);
}
END_TEST

START_TEST(test_kind_name_of_invalid_kind_is_null)
{
	ck_assert_ptr_null(snipe_kind_name((snipe_kind)42));
	ck_assert_ptr_null(snipe_kind_name((snipe_kind)(SNIPE_KIND_USER + 1)));
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("urn");
	TCase *tc;

	tc = tcase_create("round_trip");
	tcase_add_test(tc, test_parse_format_round_trips_every_kind);
	tcase_add_test(tc, test_make_format_round_trips_every_kind);
	tcase_add_test(tc, test_parse_accepts_scheme_in_any_case_and_formats_lower);
	tcase_add_test(tc, test_parse_keeps_name_case);
	tcase_add_test(tc, test_parse_accepts_valid_names);
	tcase_add_test(tc, test_parse_accepts_128_char_name);
	suite_add_tcase(s, tc);

	tc = tcase_create("reject");
	tcase_add_test(tc, test_parse_rejects_bad_scheme);
	tcase_add_test(tc, test_parse_rejects_unknown_kind);
	tcase_add_test(tc, test_parse_unknown_kind_names_kind_position);
	tcase_add_test(tc, test_parse_rejects_empty_name);
	tcase_add_test(tc, test_parse_rejects_129_char_name);
	tcase_add_test(tc, test_parse_rejects_very_long_name);
	tcase_add_test(tc, test_parse_rejects_bad_characters);
	tcase_add_test(tc, test_parse_bad_character_names_its_position);
	tcase_add_test(tc, test_parse_rejects_leading_slash);
	tcase_add_test(tc, test_parse_rejects_trailing_slash);
	tcase_add_test(tc, test_parse_rejects_doubled_slash);
	tcase_add_test(tc, test_parse_rejects_dot_segment);
	tcase_add_test(tc, test_parse_rejects_dot_dot_anywhere);
	tcase_add_test(tc, test_parse_err_may_be_null);
	tcase_add_test(tc, test_parse_err_respects_errlen);
	suite_add_tcase(s, tc);

	tc = tcase_create("make_format");
	tcase_add_test(tc, test_make_rejects_bad_names);
	tcase_add_test(tc, test_make_accepts_128_char_name);
	tcase_add_test(tc, test_format_needs_room_for_nul);
	tcase_add_test(tc, test_format_longest_urn_fits_urn_max);
	tcase_add_test(tc, test_format_key_kind_boundary);
	suite_add_tcase(s, tc);

	tc = tcase_create("generate");
	tcase_add_test(tc, test_generate_gives_lower_case_v4_uuid);
	tcase_add_test(tc, test_generate_twice_differs);
	tcase_add_test(tc, test_kind_name_of_each_kind);
	tcase_add_test(tc, test_kind_name_of_invalid_kind_is_null);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(suite());
}
