/*
 * test_auth.c — the catalog's write rules (rcds/auth.c): every role (none, user, host,
 * replica, admin) against every kind of target (own, foreign and unowned data and
 * checkpoints; own and other host; processes assigned to the host or not; keys; users),
 * with the exact verdict; role names both ways.
 */
#include <string.h>

#include "auth.h"
#include "testutil.h"

/* --------------------------------------------------------------- helpers */

#define OK SNIPE_OK
#define NO SNIPE_EDENIED

enum { P_NONE, P_USER, P_HOST, P_REPLICA, P_ADMIN, NPRINCIPALS };

static const uint8_t key_of[NPRINCIPALS][SNIPE_PK_BYTES] = {
	[P_NONE] = {1}, [P_USER] = {2}, [P_HOST] = {3}, [P_REPLICA] = {4}, [P_ADMIN] = {5},
};
static const uint8_t foreign_key[SNIPE_PK_BYTES] = {9};

static rcds_principal principal(int who)
{
	static const rcds_role roles[NPRINCIPALS] = {
		RCDS_ROLE_NONE, RCDS_ROLE_USER, RCDS_ROLE_HOST, RCDS_ROLE_REPLICA, RCDS_ROLE_ADMIN,
	};
	return (rcds_principal){
		.role = roles[who],
		.pk = key_of[who],
		.host = who == P_HOST ? "node1" : NULL,
	};
}

/* Whose the target URN is. */
enum owner { UNOWNED, OWN, FOREIGN };

/* One row of a verdict table: a target and the verdict for each principal. */
typedef struct verdicts {
	snipe_kind kind;
	const char *name;
	enum owner owner;
	const char *proc_host;
	int expect[NPRINCIPALS]; /* none, user, host, replica, admin */
} verdicts;

static void check_row(const verdicts *v)
{
	snipe_urn urn;
	ck_assert_int_eq(snipe_urn_make(v->kind, v->name, &urn, NULL, 0), SNIPE_OK);
	for (int who = 0; who < NPRINCIPALS; who++) {
		rcds_principal p = principal(who);
		rcds_target t = {
			.urn = &urn,
			.owner = v->owner == OWN       ? p.pk
			         : v->owner == FOREIGN ? foreign_key
			                               : NULL,
			.proc_host = v->proc_host,
		};
		char err[160] = "";
		int rc = rcds_auth_write(&p, &t, err, sizeof(err));
		ck_assert_msg(rc == v->expect[who], "%s %s:%s owner=%d proc_host=%s: got %s, want %s",
		              rcds_role_name(p.role), snipe_kind_name(v->kind), v->name, v->owner,
		              v->proc_host ? v->proc_host : "-", snipe_errname(rc),
		              snipe_errname(v->expect[who]));
		if (rc == SNIPE_EDENIED)
			ck_assert_msg(err[0] != '\0', "a denial says why");
	}
}

static void check_table(const verdicts *rows, size_t n)
{
	for (size_t i = 0; i < n; i++)
		check_row(&rows[i]);
}

#define CHECK_TABLE(t) check_table((t), sizeof(t) / sizeof((t)[0]))

/* ----------------------------------------------------------------- matrix */

/*                                                        none user host repl admin */
START_TEST(test_data_and_ckpt_follow_the_owner_rule)
{
	static const verdicts rows[] = {
		{SNIPE_KIND_DATA, "d", OWN, NULL, {NO, OK, OK, NO, OK}},
		{SNIPE_KIND_DATA, "d", FOREIGN, NULL, {NO, NO, NO, NO, OK}},
		{SNIPE_KIND_DATA, "d", UNOWNED, NULL, {NO, OK, OK, NO, OK}},
		{SNIPE_KIND_CKPT, "c", OWN, NULL, {NO, OK, OK, NO, OK}},
		{SNIPE_KIND_CKPT, "c", FOREIGN, NULL, {NO, NO, NO, NO, OK}},
		{SNIPE_KIND_CKPT, "c", UNOWNED, NULL, {NO, OK, OK, NO, OK}},
	};
	CHECK_TABLE(rows);
}
END_TEST

START_TEST(test_host_urns_only_by_that_host_or_a_replica)
{
	static const verdicts rows[] = {
		{SNIPE_KIND_HOST, "node1", UNOWNED, NULL, {NO, NO, OK, OK, OK}},
		{SNIPE_KIND_HOST, "node1", OWN, NULL, {NO, NO, OK, OK, OK}},
		{SNIPE_KIND_HOST, "node1", FOREIGN, NULL, {NO, NO, OK, OK, OK}},
		{SNIPE_KIND_HOST, "node2", UNOWNED, NULL, {NO, NO, NO, OK, OK}},
		{SNIPE_KIND_HOST, "node2", OWN, NULL, {NO, NO, NO, OK, OK}},
		{SNIPE_KIND_HOST, "node2", FOREIGN, NULL, {NO, NO, NO, OK, OK}},
	};
	CHECK_TABLE(rows);
}
END_TEST

START_TEST(test_proc_urns_by_assigned_host_replica_or_owner)
{
	static const verdicts rows[] = {
		/* assigned to node1, owned by someone else */
		{SNIPE_KIND_PROC, "p", FOREIGN, "node1", {NO, NO, OK, OK, OK}},
		/* assigned to another host */
		{SNIPE_KIND_PROC, "p", FOREIGN, "node2", {NO, NO, NO, OK, OK}},
		{SNIPE_KIND_PROC, "p", OWN, "node2", {NO, OK, OK, OK, OK}},
		/* not assigned yet */
		{SNIPE_KIND_PROC, "p", UNOWNED, NULL, {NO, OK, OK, OK, OK}},
		{SNIPE_KIND_PROC, "p", FOREIGN, NULL, {NO, NO, NO, OK, OK}},
		{SNIPE_KIND_PROC, "p", OWN, NULL, {NO, OK, OK, OK, OK}},
		/* a host name is not a prefix match */
		{SNIPE_KIND_PROC, "p", FOREIGN, "node10", {NO, NO, NO, OK, OK}},
	};
	CHECK_TABLE(rows);
}
END_TEST

START_TEST(test_key_and_user_urns_by_admins_only)
{
	static const verdicts rows[] = {
		{SNIPE_KIND_KEY, "0123456789abcdef0123", UNOWNED, NULL, {NO, NO, NO, NO, OK}},
		{SNIPE_KIND_KEY, "0123456789abcdef0123", OWN, NULL, {NO, NO, NO, NO, OK}},
		{SNIPE_KIND_USER, "alice", UNOWNED, NULL, {NO, NO, NO, NO, OK}},
		{SNIPE_KIND_USER, "alice", OWN, NULL, {NO, NO, NO, NO, OK}},
	};
	CHECK_TABLE(rows);
}
END_TEST

START_TEST(test_host_role_without_host_name_writes_no_host_urn)
{
	snipe_urn urn;
	rcds_principal p = {.role = RCDS_ROLE_HOST, .pk = key_of[P_HOST], .host = NULL};

	ck_assert_int_eq(snipe_urn_make(SNIPE_KIND_HOST, "node1", &urn, NULL, 0), SNIPE_OK);
	rcds_target t = {.urn = &urn};
	ck_assert_int_eq(rcds_auth_write(&p, &t, NULL, 0), SNIPE_EDENIED);
	ck_assert_int_eq(snipe_urn_make(SNIPE_KIND_PROC, "p", &urn, NULL, 0), SNIPE_OK);
	t = (rcds_target){.urn = &urn, .owner = foreign_key, .proc_host = NULL};
	ck_assert_int_eq(rcds_auth_write(&p, &t, NULL, 0), SNIPE_EDENIED);
}
END_TEST

START_TEST(test_denial_reason_names_the_rule)
{
	snipe_urn urn;
	rcds_principal p = principal(P_USER);
	char err[160] = "";

	ck_assert_int_eq(snipe_urn_make(SNIPE_KIND_DATA, "x", &urn, NULL, 0), SNIPE_OK);
	rcds_target t = {.urn = &urn, .owner = foreign_key};
	ck_assert_int_eq(rcds_auth_write(&p, &t, err, sizeof(err)), SNIPE_EDENIED);
	ck_assert_msg(strstr(err, "urn:snipe:data:x") != NULL, "err: %s", err);
	p = principal(P_NONE);
	ck_assert_int_eq(rcds_auth_write(&p, &t, err, sizeof(err)), SNIPE_EDENIED);
	ck_assert_msg(strstr(err, "not a registered key") != NULL, "err: %s", err);
}
END_TEST

/* ------------------------------------------------------------------ roles */

START_TEST(test_role_parse_accepts_exact_names)
{
	ck_assert_int_eq(rcds_role_parse("admin", 5), RCDS_ROLE_ADMIN);
	ck_assert_int_eq(rcds_role_parse("user", 4), RCDS_ROLE_USER);
	ck_assert_int_eq(rcds_role_parse("host", 4), RCDS_ROLE_HOST);
	ck_assert_int_eq(rcds_role_parse("replica", 7), RCDS_ROLE_REPLICA);
	/* the length decides, not a terminating NUL */
	ck_assert_int_eq(rcds_role_parse("hostname", 4), RCDS_ROLE_HOST);
}
END_TEST

START_TEST(test_role_parse_rejects_anything_else)
{
	ck_assert_int_eq(rcds_role_parse("Admin", 5), RCDS_ROLE_NONE);
	ck_assert_int_eq(rcds_role_parse("admin ", 6), RCDS_ROLE_NONE);
	ck_assert_int_eq(rcds_role_parse("adm", 3), RCDS_ROLE_NONE);
	ck_assert_int_eq(rcds_role_parse("none", 4), RCDS_ROLE_NONE);
	ck_assert_int_eq(rcds_role_parse("", 0), RCDS_ROLE_NONE);
	ck_assert_int_eq(rcds_role_parse(NULL, 0), RCDS_ROLE_NONE);
}
END_TEST

START_TEST(test_role_name_round_trips)
{
	for (int r = RCDS_ROLE_USER; r <= RCDS_ROLE_ADMIN; r++) {
		const char *name = rcds_role_name((rcds_role)r);
		ck_assert_int_eq(rcds_role_parse(name, strlen(name)), r);
	}
	ck_assert_str_eq(rcds_role_name(RCDS_ROLE_NONE), "none");
	ck_assert_str_eq(rcds_role_name((rcds_role)42), "unknown");
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("auth");
	TCase *tc;

	tc = tcase_create("matrix");
	tcase_add_test(tc, test_data_and_ckpt_follow_the_owner_rule);
	tcase_add_test(tc, test_host_urns_only_by_that_host_or_a_replica);
	tcase_add_test(tc, test_proc_urns_by_assigned_host_replica_or_owner);
	tcase_add_test(tc, test_key_and_user_urns_by_admins_only);
	tcase_add_test(tc, test_host_role_without_host_name_writes_no_host_urn);
	tcase_add_test(tc, test_denial_reason_names_the_rule);
	suite_add_tcase(s, tc);

	tc = tcase_create("roles");
	tcase_add_test(tc, test_role_parse_accepts_exact_names);
	tcase_add_test(tc, test_role_parse_rejects_anything_else);
	tcase_add_test(tc, test_role_name_round_trips);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(suite());
}
