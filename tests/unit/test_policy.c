/*
 * test_policy.c — the agent's restart decisions (agents/policy.c): which exits restart
 * under each policy, the max_restarts limit, the end state named, and the backoff
 * sequence (doubling from the base, capped), with exact values.
 */
#include "agent.h"
#include "testutil.h"

static Snipe__ProcSpec spec(const char *restart, uint32_t max)
{
	Snipe__ProcSpec s = SNIPE__PROC_SPEC__INIT;
	s.restart = (char *)restart;
	s.max_restarts = max;
	return s;
}

START_TEST(test_never_restarts_nothing)
{
	Snipe__ProcSpec s = spec("never", 0);
	const char *state = NULL;
	ck_assert(!agent_policy_restart(&s, 0, 0, &state));
	ck_assert_str_eq(state, "exited");
	ck_assert(!agent_policy_restart(&s, 3, 0, &state));
	ck_assert_str_eq(state, "failed");
	ck_assert(!agent_policy_restart(&s, -9, 0, &state));
	ck_assert_str_eq(state, "failed");
}
END_TEST

START_TEST(test_on_failure_restarts_nonzero_exits_and_signals_only)
{
	Snipe__ProcSpec s = spec("on-failure", 0);
	const char *state = NULL;
	ck_assert(!agent_policy_restart(&s, 0, 0, &state));
	ck_assert_str_eq(state, "exited");
	ck_assert(agent_policy_restart(&s, 1, 0, &state));
	ck_assert(agent_policy_restart(&s, -15, 7, &state));
}
END_TEST

START_TEST(test_always_restarts_even_a_clean_exit)
{
	Snipe__ProcSpec s = spec("always", 0);
	const char *state = NULL;
	ck_assert(agent_policy_restart(&s, 0, 0, &state));
	ck_assert(agent_policy_restart(&s, 2, 1000000, &state));
}
END_TEST

START_TEST(test_max_restarts_stops_at_the_limit)
{
	Snipe__ProcSpec s = spec("always", 2);
	const char *state = NULL;
	ck_assert(agent_policy_restart(&s, 1, 0, &state));
	ck_assert(agent_policy_restart(&s, 1, 1, &state));
	ck_assert(!agent_policy_restart(&s, 1, 2, &state));
	ck_assert_str_eq(state, "failed");
	ck_assert(!agent_policy_restart(&s, 0, 2, &state));
	ck_assert_str_eq(state, "exited");
}
END_TEST

START_TEST(test_unknown_or_missing_policy_never_restarts)
{
	Snipe__ProcSpec s = spec("sometimes", 0);
	const char *state = NULL;
	ck_assert(!agent_policy_restart(&s, 1, 0, &state));
	ck_assert_str_eq(state, "failed");
	ck_assert(!agent_policy_restart(NULL, 1, 0, &state));
	ck_assert_str_eq(state, "failed");
}
END_TEST

START_TEST(test_backoff_doubles_from_the_base_up_to_the_cap)
{
	ck_assert_uint_eq(agent_backoff_ms(0, 100, 30000), 0);
	ck_assert_uint_eq(agent_backoff_ms(1, 100, 30000), 100);
	ck_assert_uint_eq(agent_backoff_ms(2, 100, 30000), 200);
	ck_assert_uint_eq(agent_backoff_ms(3, 100, 30000), 400);
	ck_assert_uint_eq(agent_backoff_ms(9, 100, 30000), 25600);
	ck_assert_uint_eq(agent_backoff_ms(10, 100, 30000), 30000);
	ck_assert_uint_eq(agent_backoff_ms(4000000000u, 100, 30000), 30000);
	ck_assert_uint_eq(agent_backoff_ms(5, 1000, 1000), 1000);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("policy");
	TCase *tc = tcase_create("restart");
	tcase_add_test(tc, test_never_restarts_nothing);
	tcase_add_test(tc, test_on_failure_restarts_nonzero_exits_and_signals_only);
	tcase_add_test(tc, test_always_restarts_even_a_clean_exit);
	tcase_add_test(tc, test_max_restarts_stops_at_the_limit);
	tcase_add_test(tc, test_unknown_or_missing_policy_never_restarts);
	suite_add_tcase(s, tc);
	tc = tcase_create("backoff");
	tcase_add_test(tc, test_backoff_doubles_from_the_base_up_to_the_cap);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(suite());
}
