/*
 * test_membership.c — adding and removing catalog replicas at run time, end to end:
 * real rcdsd replicas on loopback (tests/common/cluster.h), a new one started with
 * --join, and the rcds_member_* client calls. The added replica catches up, votes and
 * serves reads; a removed one leaves the quorum; only the admin may change members,
 * and refused changes get the exact codes libraft's refusals map to.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "cluster.h"
#include "rcds.h"
#include "snipe.h"
#include "testutil.h"

#define assert_code(got, want)                                                      \
	do {                                                                        \
		int got_ = (got), want_ = (want);                                   \
		ck_assert_msg(got_ == want_, "%s: got %s (%d), want %s (%d)", #got, \
		              snipe_errname(got_), got_, snipe_errname(want_), want_); \
	} while (0)

/* Asserts that a cluster stopped with every replica ending cleanly. */
#define stop_cluster(c) ck_assert_int_eq(tc_cluster_stop(c), 0)

#define WAIT_MS 10000
/* Nothing listens on port 1 of loopback: a member there never catches up. */
#define DEAD_ADDRESS "127.0.0.1:1"
/* Past the 1024 entries the leader keeps after a snapshot (rcds/consensus.c). */
#define COMPACTED_WRITES 1200

/* ------------------------------------------------------------------ helpers */

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static int leader_of(tc_cluster *c)
{
	int leader = tc_cluster_wait_leader(c, WAIT_MS);
	if (leader < 0)
		tc_cluster_dump_logs(c, 30);
	ck_assert_msg(leader >= 0, "no leader within %d ms", WAIT_MS);
	return leader;
}

/* Writes (urn, "v") = value, which must succeed; returns the version. */
static uint64_t put_ok(rcds_client *cl, const char *urn, const char *value)
{
	rcds_batch *b = NULL;
	char err[256] = "";
	uint64_t index = 0;
	ck_assert_int_eq(rcds_batch_new(&b), SNIPE_OK);
	ck_assert_int_eq(rcds_batch_put(b, urn, "v", value, strlen(value), 0), SNIPE_OK);
	int rc = rcds_write(cl, b, &index, err, sizeof(err));
	rcds_batch_free(b);
	ck_assert_msg(rc == SNIPE_OK, "put %s: %s (%s)", urn, snipe_errname(rc), err);
	ck_assert_uint_gt(index, 0);
	return index;
}

static int member_add(rcds_client *cl, uint64_t id, const char *address)
{
	char err[256] = "";
	int rc = rcds_member_add(cl, id, address, err, sizeof(err));
	if (rc != SNIPE_OK)
		fprintf(stderr, "add %" PRIu64 " %s: %s (%s)\n", id, address, snipe_errname(rc), err);
	return rc;
}

static int member_remove(rcds_client *cl, uint64_t id)
{
	char err[256] = "";
	int rc = rcds_member_remove(cl, id, err, sizeof(err));
	if (rc != SNIPE_OK)
		fprintf(stderr, "remove %" PRIu64 ": %s (%s)\n", id, snipe_errname(rc), err);
	return rc;
}

/* Replica i's view of the group: exactly the members ids[0..n), each a voter or not
 * as voters says (NULL: all voters). */
static void assert_members(tc_cluster *c, int i, const uint64_t *ids, size_t n,
                           const bool *voters)
{
	rcds_status st;
	assert_code(tc_cluster_status(c, i, &st), SNIPE_OK);
	ck_assert_msg(st.nmembers == n, "replica %d sees %zu members, want %zu", i + 1,
	              st.nmembers, n);
	for (size_t k = 0; k < n; k++) {
		const rcds_member *m = NULL;
		for (size_t j = 0; j < st.nmembers; j++)
			if (st.members[j].id == ids[k])
				m = &st.members[j];
		ck_assert_msg(m != NULL, "replica %d: %" PRIu64 " is not a member", i + 1, ids[k]);
		ck_assert_msg(m->voter == (voters == NULL || voters[k]),
		              "replica %d: member %" PRIu64 " voter=%d", i + 1, ids[k], m->voter);
	}
}

static uint64_t applied(tc_cluster *c, int i)
{
	rcds_status st;
	assert_code(tc_cluster_status(c, i, &st), SNIPE_OK);
	return st.applied_index;
}

/* ------------------------------------------------------------------- tests */

/*
 * A fourth replica joins a running group: it gets the data written before, becomes a
 * voter (so, with one original replica killed, writes need it for their quorum of 3
 * of 4), and the killed replica is then removed.
 */
START_TEST(test_added_replica_catches_up_votes_and_the_dead_one_is_removed)
{
	tc_cluster *c = tc_cluster_start(3);
	const snipe_key *admin = tc_cluster_admin_key(c);
	rcds_client *cl = tc_cluster_client(c, -1, admin);
	char urn[64], value[32];
	uint64_t version[20];
	for (int k = 0; k < 20; k++) {
		snprintf(urn, sizeof(urn), "urn:snipe:data:before/%d", k);
		snprintf(value, sizeof(value), "value-%d", k);
		version[k] = put_ok(cl, urn, value);
	}

	int added = tc_cluster_add_replica(c, NULL);
	ck_assert_int_eq(added, 3);
	/* Not bootstrapped: no configuration, no leader, until the leader adds it. */
	rcds_status st;
	assert_code(tc_cluster_status(c, added, &st), SNIPE_OK);
	ck_assert_uint_eq(st.nmembers, 0);
	ck_assert_uint_eq(st.leader_id, 0);
	ck_assert_str_eq(st.state, "follower");
	uint64_t t0 = mono_ms();
	assert_code(member_add(cl, 4, tc_cluster_raft_address(c, added)), SNIPE_OK);
	fprintf(stderr, "membership: add took %" PRIu64 " ms\n", mono_ms() - t0);
	int leader = leader_of(c);
	const uint64_t four[] = {1, 2, 3, 4};
	assert_members(c, leader, four, 4, NULL);
	assert_code(tc_cluster_wait_applied(c, added, applied(c, leader), WAIT_MS), SNIPE_OK);
	assert_members(c, added, four, 4, NULL);

	/* A client that knows only the new replica reads what was written before it. */
	rcds_client *fresh = tc_cluster_client(c, added, admin);
	for (int k = 0; k < 20; k++) {
		rcds_list l;
		char err[256] = "";
		snprintf(urn, sizeof(urn), "urn:snipe:data:before/%d", k);
		snprintf(value, sizeof(value), "value-%d", k);
		int rc = rcds_get(fresh, urn, &l, err, sizeof(err));
		ck_assert_msg(rc == SNIPE_OK, "get %s from the new replica: %s (%s)", urn,
		              snipe_errname(rc), err);
		ck_assert_uint_eq(l.count, 1);
		ck_assert_str_eq((const char *)l.items[0].value, value);
		ck_assert_uint_eq(l.items[0].version, version[k]);
		rcds_list_free(&l);
	}
	rcds_client_close(fresh);

	/* The leader dies: the two other originals are not a majority of four, so the
	 * election and the next write need the new replica's vote. The new replica may
	 * win: clients must know its endpoint from now on. */
	uint64_t dead = (uint64_t)leader + 1;
	rcds_client_close(cl);
	cl = tc_cluster_client(c, -1, admin);
	tc_cluster_kill(c, leader);
	t0 = mono_ms();
	uint64_t v = put_ok(cl, "urn:snipe:data:after/kill", "three of four");
	fprintf(stderr, "membership: write after the leader's kill took %" PRIu64 " ms\n",
	        mono_ms() - t0);
	leader = leader_of(c);
	ck_assert_int_ne(leader, (int)dead - 1);

	assert_code(member_remove(cl, dead), SNIPE_OK);
	uint64_t three[3];
	size_t n = 0;
	for (uint64_t id = 1; id <= 4; id++)
		if (id != dead)
			three[n++] = id;
	leader = leader_of(c);
	assert_members(c, leader, three, 3, NULL);
	v = put_ok(cl, "urn:snipe:data:after/remove", "three of three");
	assert_code(tc_cluster_wait_all_applied(c, v, WAIT_MS), SNIPE_OK);
	for (int i = 0; i < 4; i++)
		if (i != (int)dead - 1)
			assert_members(c, i, three, 3, NULL);

	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/*
 * The leader has compacted its log (snapshot every 64 entries, 1024 kept): a replica
 * added now gets the database as a snapshot, then the entries after it.
 */
START_TEST(test_replica_added_after_compaction_catches_up_by_snapshot)
{
	static const char *const extra[] = {"--snapshot-threshold", "64", NULL};
	tc_cluster *c = tc_cluster_start_with(3, extra);
	const snipe_key *admin = tc_cluster_admin_key(c);
	rcds_client *cl = tc_cluster_client(c, -1, admin);
	char urn[64], value[32];
	uint64_t t0 = mono_ms(), first = 0, last = 0;
	for (int k = 0; k < COMPACTED_WRITES; k++) {
		snprintf(urn, sizeof(urn), "urn:snipe:data:compacted/%04d", k);
		snprintf(value, sizeof(value), "value-%d", k);
		last = put_ok(cl, urn, value);
		first = k == 0 ? last : first;
	}
	fprintf(stderr, "membership: %d writes in %" PRIu64 " ms\n", COMPACTED_WRITES,
	        mono_ms() - t0);

	int added = tc_cluster_add_replica(c, NULL);
	t0 = mono_ms();
	assert_code(member_add(cl, 4, tc_cluster_raft_address(c, added)), SNIPE_OK);
	fprintf(stderr, "membership: add with a snapshot took %" PRIu64 " ms\n", mono_ms() - t0);
	int leader = leader_of(c);
	assert_code(tc_cluster_wait_applied(c, added, applied(c, leader), WAIT_MS), SNIPE_OK);
	const uint64_t four[] = {1, 2, 3, 4};
	assert_members(c, added, four, 4, NULL);

	rcds_client *fresh = tc_cluster_client(c, added, admin);
	const int probes[] = {0, COMPACTED_WRITES / 2, COMPACTED_WRITES - 1};
	for (size_t k = 0; k < sizeof(probes) / sizeof(probes[0]); k++) {
		rcds_list l;
		snprintf(urn, sizeof(urn), "urn:snipe:data:compacted/%04d", probes[k]);
		snprintf(value, sizeof(value), "value-%d", probes[k]);
		assert_code(rcds_get(fresh, urn, &l, NULL, 0), SNIPE_OK);
		ck_assert_uint_eq(l.count, 1);
		ck_assert_str_eq((const char *)l.items[0].value, value);
		rcds_list_free(&l);
	}
	/* It also follows the log from there. */
	uint64_t v = put_ok(cl, "urn:snipe:data:compacted/after", "next");
	assert_code(tc_cluster_wait_applied(c, added, v, WAIT_MS), SNIPE_OK);
	ck_assert_uint_gt(v, last);
	ck_assert_uint_gt(last - first, 1024);
	rcds_client_close(fresh);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* Only the admin's key changes members; existing ids and addresses are refused, and
 * removing a stranger finds nothing. Nothing changes meanwhile. */
START_TEST(test_member_changes_need_the_admin_and_new_ids)
{
	tc_cluster *c = tc_cluster_start(3);
	snipe_key *user = NULL;
	ck_assert_int_eq(snipe_key_generate(&user), SNIPE_OK);
	tc_cluster_register_key(c, user, "user", NULL);
	rcds_client *cl = tc_cluster_client(c, -1, user);
	assert_code(member_add(cl, 4, "127.0.0.1:2"), SNIPE_EDENIED);
	assert_code(member_remove(cl, 2), SNIPE_EDENIED);
	rcds_client_close(cl);

	cl = tc_cluster_client(c, -1, tc_cluster_admin_key(c));
	/* libraft: RAFT_DUPLICATEID, then RAFT_DUPLICATEADDRESS, then RAFT_BADID. */
	assert_code(member_add(cl, 2, tc_cluster_raft_address(c, 1)), SNIPE_EEXIST);
	assert_code(member_add(cl, 7, tc_cluster_raft_address(c, 1)), SNIPE_EEXIST);
	assert_code(member_remove(cl, 7), SNIPE_ENOTFOUND);
	assert_code(member_add(cl, 0, "127.0.0.1:2"), SNIPE_EINVAL);
	assert_code(member_add(cl, 7, "no-port"), SNIPE_EINVAL);
	/* Past the client's checks; the leader refuses an address longer than 63. */
	char longer[80];
	memset(longer, 'h', sizeof(longer));
	snprintf(longer + 70, sizeof(longer) - 70, ":7000");
	assert_code(member_add(cl, 7, longer), SNIPE_EINVAL);
	rcds_client_close(cl);

	const uint64_t three[] = {1, 2, 3};
	assert_members(c, leader_of(c), three, 3, NULL);
	snipe_key_free(user);
	stop_cluster(c);
}
END_TEST

/*
 * A replica that never answers is added but not promoted: the caller's wait runs out,
 * other changes meanwhile get EBUSY, libraft gives the promotion up (after its 5 s
 * round limit) leaving a non-voting member, and that one can be removed.
 */
START_TEST(test_unreachable_replica_blocks_changes_until_given_up_then_is_removed)
{
	tc_cluster *c = tc_cluster_start(3);
	int leader = leader_of(c);
	const snipe_key *admin = tc_cluster_admin_key(c);
	rcds_client *cl = tc_cluster_client(c, leader, admin);
	rcds_client_set_timeout(cl, 600);
	uint64_t t0 = mono_ms();
	assert_code(member_add(cl, 5, DEAD_ADDRESS), SNIPE_ETIMEDOUT);
	rcds_client_close(cl);

	cl = tc_cluster_client(c, -1, admin);
	assert_code(member_remove(cl, 2), SNIPE_EBUSY);
	assert_code(member_add(cl, 6, "127.0.0.1:2"), SNIPE_EBUSY);
	const uint64_t four[] = {1, 2, 3, 5};
	const bool voters[] = {true, true, true, false};
	assert_members(c, leader, four, 4, voters);

	int rc = SNIPE_EBUSY;
	while (rc == SNIPE_EBUSY && mono_ms() - t0 < WAIT_MS) {
		sleep_ms(200);
		rc = rcds_member_remove(cl, 5, NULL, 0);
	}
	assert_code(rc, SNIPE_OK);
	fprintf(stderr, "membership: promotion given up and member removed after %" PRIu64
	        " ms\n", mono_ms() - t0);
	const uint64_t three[] = {1, 2, 3};
	assert_members(c, leader_of(c), three, 3, NULL);
	uint64_t v = put_ok(cl, "urn:snipe:data:after/unreachable", "fine");
	assert_code(tc_cluster_wait_all_applied(c, v, WAIT_MS), SNIPE_OK);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* A replica holding another cluster key gets no Raft traffic from this cluster and
 * cannot join it: each side refuses the other's connections before any Raft message. */
START_TEST(test_replica_with_another_cluster_key_is_refused)
{
	tc_cluster *c = tc_cluster_start(3);
	const snipe_key *admin = tc_cluster_admin_key(c);
	rcds_client *cl = tc_cluster_client(c, -1, admin);
	put_ok(cl, "urn:snipe:data:guarded", "before");

	char *other = tu_path(tc_cluster_dir(c), "other-cluster.key"), err[256] = "";
	snipe_key *k = NULL;
	ck_assert_int_eq(snipe_key_generate(&k), SNIPE_OK);
	ck_assert_int_eq(snipe_key_save(k, other, false, err, sizeof(err)), SNIPE_OK);
	snipe_key_free(k);
	const char *const extra[] = {"--cluster-key", other, NULL};
	int stranger = tc_cluster_add_replica(c, extra);

	rcds_client_set_timeout(cl, 1500);
	assert_code(member_add(cl, 4, tc_cluster_raft_address(c, stranger)), SNIPE_ETIMEDOUT);
	ck_assert(tc_cluster_log_contains(c, stranger, "refused: not this cluster's secret"));
	rcds_status st;
	assert_code(tc_cluster_status(c, stranger, &st), SNIPE_OK);
	ck_assert_uint_eq(st.applied_index, 0);
	ck_assert_uint_eq(st.nmembers, 0);

	/* The cluster itself goes on: reads and writes on its three replicas. */
	rcds_client_set_timeout(cl, 5000);
	uint64_t v = put_ok(cl, "urn:snipe:data:guarded", "after");
	ck_assert_uint_gt(v, 0);
	rcds_client_close(cl);
	free(other);
	stop_cluster(c);
}
END_TEST

/* A replica stopped while it leads a change answers it and exits cleanly (no leak or
 * use after free under the sanitizers: the change is failed as the leader closes). */
START_TEST(test_leader_stopped_during_a_change_exits_cleanly)
{
	tc_cluster *c = tc_cluster_start(3);
	rcds_client *cl = tc_cluster_client(c, leader_of(c), tc_cluster_admin_key(c));
	rcds_client_set_timeout(cl, 300);
	assert_code(member_add(cl, 5, DEAD_ADDRESS), SNIPE_ETIMEDOUT);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* -------------------------------------------------------------------- suite */

static Suite *suite(void)
{
	Suite *s = suite_create("membership");
	TCase *tc = tcase_create("membership");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_added_replica_catches_up_votes_and_the_dead_one_is_removed);
	tcase_add_test(tc, test_replica_added_after_compaction_catches_up_by_snapshot);
	tcase_add_test(tc, test_member_changes_need_the_admin_and_new_ids);
	tcase_add_test(tc, test_unreachable_replica_blocks_changes_until_given_up_then_is_removed);
	tcase_add_test(tc, test_leader_stopped_during_a_change_exits_cleanly);
	tcase_add_test(tc, test_replica_with_another_cluster_key_is_refused);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(suite());
}
