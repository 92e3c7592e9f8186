/*
 * test_error.c — the error table: snipe_strerror and snipe_errname give the message
 * and name from the X-macro table in snipe.h, and fixed strings for unknown codes.
 */
#include <string.h>

#include "snipe.h"
#include "testutil.h"

START_TEST(test_strerror_ok_is_success)
{
	ck_assert_str_eq(snipe_strerror(SNIPE_OK), "success");
}
END_TEST

START_TEST(test_strerror_gives_table_messages)
{
	ck_assert_str_eq(snipe_strerror(SNIPE_EINVAL), "invalid argument");
	ck_assert_str_eq(snipe_strerror(SNIPE_ENOMEM), "out of memory");
	ck_assert_str_eq(snipe_strerror(SNIPE_ENOENT), "no such file or directory");
	ck_assert_str_eq(snipe_strerror(SNIPE_EEXIST), "already exists");
	ck_assert_str_eq(snipe_strerror(SNIPE_ERANGE), "value out of range");
	ck_assert_str_eq(snipe_strerror(SNIPE_EURNSCHEME),
	                 "URN does not start with urn:snipe:");
	ck_assert_str_eq(snipe_strerror(SNIPE_EURNLEN), "URN name must be 1-128 characters");
	ck_assert_str_eq(snipe_strerror(SNIPE_EKEYPERM), "key file is accessible by other users");
	ck_assert_str_eq(snipe_strerror(SNIPE_EBADSIG), "bad signature");
	ck_assert_str_eq(snipe_strerror(SNIPE_EREPLAY), "replayed message");
	ck_assert_str_eq(snipe_strerror(SNIPE_ECONFIG), "bad configuration");
}
END_TEST

START_TEST(test_strerror_matches_numeric_values)
{
	ck_assert_str_eq(snipe_strerror(-3), "input/output error");
	ck_assert_str_eq(snipe_strerror(-21), "malformed key");
	ck_assert_str_eq(snipe_strerror(-34), "timestamp outside the allowed window");
}
END_TEST

START_TEST(test_strerror_unknown_code_gives_unknown_error)
{
	ck_assert_str_eq(snipe_strerror(1), "unknown error");
	ck_assert_str_eq(snipe_strerror(-7), "unknown error");
	ck_assert_str_eq(snipe_strerror(-41), "unknown error");
	ck_assert_str_eq(snipe_strerror(-1000), "unknown error");
}
END_TEST

START_TEST(test_errname_gives_names_without_prefix)
{
	ck_assert_str_eq(snipe_errname(SNIPE_OK), "OK");
	ck_assert_str_eq(snipe_errname(SNIPE_EINVAL), "EINVAL");
	ck_assert_str_eq(snipe_errname(SNIPE_EIO), "EIO");
	ck_assert_str_eq(snipe_errname(SNIPE_EURNCHAR), "EURNCHAR");
	ck_assert_str_eq(snipe_errname(SNIPE_EURNPATH), "EURNPATH");
	ck_assert_str_eq(snipe_errname(SNIPE_EKEYFORMAT), "EKEYFORMAT");
	ck_assert_str_eq(snipe_errname(SNIPE_EDECODE), "EDECODE");
	ck_assert_str_eq(snipe_errname(SNIPE_EUNKNOWNSIGNER), "EUNKNOWNSIGNER");
	ck_assert_str_eq(snipe_errname(SNIPE_EWRONGTYPE), "EWRONGTYPE");
	ck_assert_str_eq(snipe_errname(SNIPE_ESKEW), "ESKEW");
	ck_assert_str_eq(snipe_errname(SNIPE_ECONFIG), "ECONFIG");
}
END_TEST

START_TEST(test_errname_unknown_code_gives_unknown)
{
	ck_assert_str_eq(snipe_errname(1), "UNKNOWN");
	ck_assert_str_eq(snipe_errname(-8), "UNKNOWN");
	ck_assert_str_eq(snipe_errname(-99), "UNKNOWN");
}
END_TEST

/* Every entry of the table: the name and message agree with the X-macro. */
START_TEST(test_every_table_entry_round_trips)
{
	static const struct {
		int code;
		const char *name;
		const char *msg;
	} table[] = {
#define ROW_(name, value, msg) { value, #name, msg },
		SNIPE_ERRORS(ROW_)
#undef ROW_
	};

	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		ck_assert_str_eq(snipe_strerror(table[i].code), table[i].msg);
		ck_assert_str_eq(snipe_errname(table[i].code), table[i].name);
	}
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("error");
	TCase *tc = tcase_create("table");

	tcase_add_test(tc, test_strerror_ok_is_success);
	tcase_add_test(tc, test_strerror_gives_table_messages);
	tcase_add_test(tc, test_strerror_matches_numeric_values);
	tcase_add_test(tc, test_strerror_unknown_code_gives_unknown_error);
	tcase_add_test(tc, test_errname_gives_names_without_prefix);
	tcase_add_test(tc, test_errname_unknown_code_gives_unknown);
	tcase_add_test(tc, test_every_table_entry_round_trips);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(suite());
}
