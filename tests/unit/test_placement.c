/*
 * test_placement.c — choosing a host for a process (rcds/placement.c): exact label
 * matching, and rcds_place_choose's order (load per core, then load, then name), its
 * filters (exclude, required labels) and its edge cases (no candidates, none fitting,
 * zero cores), with the exact index chosen every time.
 */
#include <string.h>

#include "placement.h"
#include "testutil.h"

/* --------------------------------------------------------------- helpers */

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* Chooses among c with no label needs and no exclusion. */
static int choose(const rcds_candidate *c, size_t n)
{
	return rcds_place_choose(c, n, NULL, 0, NULL);
}

/* ----------------------------------------------------------------- labels */

START_TEST(test_labels_have_matches_whole_labels_only)
{
	ck_assert(rcds_labels_have("gpu=1", "gpu=1"));
	ck_assert(rcds_labels_have("arch=x86,gpu=1,zone=a", "gpu=1"));
	ck_assert(rcds_labels_have("arch=x86,gpu=1,zone=a", "arch=x86"));
	ck_assert(rcds_labels_have("arch=x86,gpu=1,zone=a", "zone=a"));
	ck_assert(!rcds_labels_have("gpu=10", "gpu=1"));
	ck_assert(!rcds_labels_have("gpu=1", "gpu=10"));
	ck_assert(!rcds_labels_have("xgpu=1", "gpu=1"));
	ck_assert(!rcds_labels_have("arch=x86,gpu=10", "gpu=1"));
	ck_assert(!rcds_labels_have("gpu=10,arch=x86", "gpu=1"));
	ck_assert(!rcds_labels_have("gpu=1x,zone=a", "gpu=1"));
	ck_assert(!rcds_labels_have("gpu", "gpu=1"));
	ck_assert(!rcds_labels_have("gpu=1", "gpu"));
	ck_assert(!rcds_labels_have("GPU=1", "gpu=1"));
}
END_TEST

START_TEST(test_labels_have_nothing_in_empty_or_null_labels)
{
	ck_assert(!rcds_labels_have("", "gpu=1"));
	ck_assert(!rcds_labels_have(NULL, "gpu=1"));
	ck_assert(!rcds_labels_have(",", "gpu=1"));
	/* an empty label is never held, even by labels with empty items */
	ck_assert(!rcds_labels_have("", ""));
	ck_assert(!rcds_labels_have("a=1,,b=2", ""));
	ck_assert(!rcds_labels_have(NULL, ""));
	ck_assert(rcds_labels_have("a=1,,b=2", "b=2"));
}
END_TEST

/* ----------------------------------------------------------------- choose */

START_TEST(test_choose_prefers_least_load_per_core)
{
	rcds_candidate c[] = {
	        {.name = "small", .labels = "", .cores = 1, .load = 1},
	        {.name = "big", .labels = "", .cores = 8, .load = 4},
	};
	ck_assert_int_eq(choose(c, N(c)), 1);

	rcds_candidate d[] = {
	        {.name = "a", .cores = 4, .load = 3}, /* 0.75 */
	        {.name = "b", .cores = 2, .load = 1}, /* 0.5 */
	        {.name = "c", .cores = 3, .load = 2}, /* 0.67 */
	};
	ck_assert_int_eq(choose(d, N(d)), 1);
}
END_TEST

START_TEST(test_choose_breaks_ratio_tie_by_lower_load)
{
	rcds_candidate c[] = {
	        {.name = "a", .cores = 8, .load = 4},
	        {.name = "b", .cores = 2, .load = 1},
	        {.name = "c", .cores = 4, .load = 2},
	};
	ck_assert_int_eq(choose(c, N(c)), 1);

	rcds_candidate idle[] = {
	        {.name = "a", .cores = 64, .load = 0},
	        {.name = "b", .cores = 1, .load = 0},
	};
	ck_assert_int_eq(choose(idle, N(idle)), 0); /* both 0 load: by name */
}
END_TEST

START_TEST(test_choose_breaks_full_tie_by_name)
{
	rcds_candidate c[] = {
	        {.name = "node3", .cores = 4, .load = 2},
	        {.name = "node1", .cores = 4, .load = 2},
	        {.name = "node2", .cores = 4, .load = 2},
	};
	ck_assert_int_eq(choose(c, N(c)), 1);

	/* strcmp order, not numeric: "node10" < "node9" */
	rcds_candidate d[] = {
	        {.name = "node9", .cores = 1, .load = 0},
	        {.name = "node10", .cores = 1, .load = 0},
	};
	ck_assert_int_eq(choose(d, N(d)), 1);
}
END_TEST

START_TEST(test_choose_is_deterministic_whatever_the_order)
{
	rcds_candidate c[] = {
	        {.name = "delta", .cores = 2, .load = 1},
	        {.name = "alpha", .cores = 4, .load = 2},
	        {.name = "charlie", .cores = 2, .load = 1},
	        {.name = "bravo", .cores = 8, .load = 5},
	};
	/* delta and charlie tie (0.5, load 1); alpha has 0.5 but load 2 */
	for (int round = 0; round < 3; round++)
		ck_assert_int_eq(choose(c, N(c)), 2);

	rcds_candidate r[] = {c[3], c[2], c[1], c[0]};
	ck_assert_str_eq(r[choose(r, N(r))].name, "charlie");
	rcds_candidate s[] = {c[2], c[0], c[3], c[1]};
	ck_assert_str_eq(s[choose(s, N(s))].name, "charlie");
}
END_TEST

START_TEST(test_choose_honours_exclude)
{
	rcds_candidate c[] = {
	        {.name = "node1", .cores = 4, .load = 0},
	        {.name = "node2", .cores = 4, .load = 3},
	};
	ck_assert_int_eq(rcds_place_choose(c, N(c), NULL, 0, "node1"), 1);
	ck_assert_int_eq(rcds_place_choose(c, N(c), NULL, 0, "node2"), 0);
	ck_assert_int_eq(rcds_place_choose(c, N(c), NULL, 0, "node"), 0); /* exact name */
	ck_assert_int_eq(rcds_place_choose(c, N(c), NULL, 0, "node11"), 0);
	ck_assert_int_eq(rcds_place_choose(c, 1, NULL, 0, "node1"), -1);
}
END_TEST

START_TEST(test_choose_requires_every_needed_label)
{
	rcds_candidate c[] = {
	        {.name = "a", .labels = "gpu=1", .cores = 8, .load = 0},
	        {.name = "b", .labels = "gpu=1,zone=b", .cores = 8, .load = 6},
	        {.name = "c", .labels = "zone=b", .cores = 8, .load = 0},
	        {.name = "d", .labels = "gpu=10,zone=b", .cores = 8, .load = 0},
	        {.name = "e", .labels = NULL, .cores = 8, .load = 0},
	};
	const char *gpu[] = {"gpu=1"};
	const char *both[] = {"gpu=1", "zone=b"};
	const char *zone[] = {"zone=b"};
	const char *none_has[] = {"gpu=1", "zone=c"};

	ck_assert_int_eq(rcds_place_choose(c, N(c), gpu, N(gpu), NULL), 0);
	ck_assert_int_eq(rcds_place_choose(c, N(c), both, N(both), NULL), 1);
	ck_assert_int_eq(rcds_place_choose(c, N(c), zone, N(zone), NULL), 2);
	ck_assert_int_eq(rcds_place_choose(c, N(c), none_has, N(none_has), NULL), -1);
	ck_assert_int_eq(rcds_place_choose(c, N(c), both, N(both), "b"), -1);
	ck_assert_int_eq(rcds_place_choose(c, N(c), gpu, N(gpu), "a"), 1);
	/* no needs: labels do not matter */
	ck_assert_int_eq(rcds_place_choose(c, N(c), gpu, 0, NULL), 0);
}
END_TEST

START_TEST(test_choose_returns_minus_one_when_none_fits)
{
	rcds_candidate c[] = {
	        {.name = "a", .labels = "zone=a", .cores = 1, .load = 0},
	        {.name = "b", .labels = "", .cores = 1, .load = 0},
	};
	const char *need[] = {"zone=b"};
	const char *empty[] = {""};

	ck_assert_int_eq(rcds_place_choose(c, N(c), need, N(need), NULL), -1);
	ck_assert_int_eq(rcds_place_choose(c, N(c), empty, N(empty), NULL), -1);
}
END_TEST

START_TEST(test_choose_takes_zero_cores_as_one)
{
	rcds_candidate c[] = {
	        {.name = "a", .cores = 0, .load = 2}, /* 2 per core */
	        {.name = "b", .cores = 3, .load = 5}, /* 1.67 */
	};
	ck_assert_int_eq(choose(c, N(c)), 1);

	rcds_candidate d[] = {
	        {.name = "a", .cores = 0, .load = 1}, /* 1 per core */
	        {.name = "b", .cores = 2, .load = 3}, /* 1.5 */
	};
	ck_assert_int_eq(choose(d, N(d)), 0);

	rcds_candidate e[] = {
	        {.name = "b", .cores = 1, .load = 1},
	        {.name = "a", .cores = 0, .load = 1}, /* the same as one core: by name */
	};
	ck_assert_int_eq(choose(e, N(e)), 1);
}
END_TEST

START_TEST(test_choose_of_no_candidates_is_minus_one)
{
	rcds_candidate c[] = {{.name = "a", .cores = 1, .load = 0}};
	ck_assert_int_eq(rcds_place_choose(c, 0, NULL, 0, NULL), -1);
	ck_assert_int_eq(rcds_place_choose(NULL, 0, NULL, 0, NULL), -1);
	ck_assert_int_eq(choose(c, 1), 0);
}
END_TEST

START_TEST(test_choose_handles_extreme_loads_and_cores)
{
	rcds_candidate c[] = {
	        {.name = "a", .cores = UINT32_MAX, .load = UINT32_MAX},     /* 1 per core */
	        {.name = "b", .cores = UINT32_MAX, .load = UINT32_MAX - 1}, /* a bit less */
	        {.name = "c", .cores = 1, .load = 1},                       /* 1 per core */
	};
	ck_assert_int_eq(choose(c, N(c)), 1);
	rcds_candidate d[] = {c[0], c[2]};
	ck_assert_int_eq(choose(d, N(d)), 1); /* equal per core: the lower load */
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("placement");
	TCase *tc;

	tc = tcase_create("labels");
	tcase_add_test(tc, test_labels_have_matches_whole_labels_only);
	tcase_add_test(tc, test_labels_have_nothing_in_empty_or_null_labels);
	suite_add_tcase(s, tc);

	tc = tcase_create("choose");
	tcase_add_test(tc, test_choose_prefers_least_load_per_core);
	tcase_add_test(tc, test_choose_breaks_ratio_tie_by_lower_load);
	tcase_add_test(tc, test_choose_breaks_full_tie_by_name);
	tcase_add_test(tc, test_choose_is_deterministic_whatever_the_order);
	tcase_add_test(tc, test_choose_honours_exclude);
	tcase_add_test(tc, test_choose_requires_every_needed_label);
	tcase_add_test(tc, test_choose_returns_minus_one_when_none_fits);
	tcase_add_test(tc, test_choose_takes_zero_cores_as_one);
	tcase_add_test(tc, test_choose_of_no_candidates_is_minus_one);
	tcase_add_test(tc, test_choose_handles_extreme_loads_and_cores);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(suite());
}
