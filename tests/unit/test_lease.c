/*
 * test_lease.c — the leader's host lease table (rcds/lease.c) on a deterministic clock:
 * renewal and lapse at the exact deadline, which transitions rcds_leases_due offers
 * and when (once, not while in flight, again after a failure or when overtaken), the
 * grace a new leader gives, lease bounds, live listing with loads, clear, and a large
 * table. Every `now` is a plain number passed in.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lease.h"
#include "testutil.h"

/* --------------------------------------------------------------- helpers */

#define LEASE 1000u /* ms: the lease every test grants unless it says otherwise */
#define MAXCALLS 16

/* The calls rcds_leases_due made, in order. */
typedef struct offers {
	char host[MAXCALLS][64];
	bool up[MAXCALLS];
	size_t n;
} offers;

static void record_offer(void *arg, const char *host, bool up)
{
	offers *o = arg;
	ck_assert_uint_lt(o->n, MAXCALLS);
	snprintf(o->host[o->n], sizeof(o->host[o->n]), "%s", host);
	o->up[o->n] = up;
	o->n++;
}

/* Runs rcds_leases_due at now into o (emptied first); returns its count. */
static size_t due(rcds_leases *l, uint64_t now, offers *o)
{
	memset(o, 0, sizeof(*o));
	size_t calls = rcds_leases_due(l, now, record_offer, o);
	ck_assert_uint_eq(calls, o->n);
	return calls;
}

/* Asserts that due at now offers exactly one change: host, up or down. */
static void expect_one_offer(rcds_leases *l, uint64_t now, const char *host, bool up)
{
	offers o;
	ck_assert_uint_eq(due(l, now, &o), 1);
	ck_assert_str_eq(o.host[0], host);
	ck_assert_msg(o.up[0] == up, "%s offered %s, want %s", host, o.up[0] ? "up" : "down",
	              up ? "up" : "down");
}

static void expect_no_offer(rcds_leases *l, uint64_t now)
{
	offers o;
	ck_assert_uint_eq(due(l, now, &o), 0);
}

static rcds_leases *new_table(void)
{
	rcds_leases *l = NULL;
	tu_assert_code(rcds_leases_new(&l), SNIPE_OK);
	ck_assert_ptr_nonnull(l);
	ck_assert_uint_eq(rcds_leases_count(l), 0);
	return l;
}

/* A table where host holds a lease from now whose up the catalog has recorded. */
static rcds_leases *with_recorded_up(const char *host, uint64_t now)
{
	rcds_leases *l = new_table();
	tu_assert_code(rcds_lease_renew(l, host, now, LEASE), SNIPE_OK);
	expect_one_offer(l, now, host, true);
	rcds_lease_recorded(l, host, true, true);
	expect_no_offer(l, now);
	return l;
}

/* Live hosts and their loads as each_live gave them. */
typedef struct visits {
	char host[8][64];
	uint32_t load[8];
	size_t n;
	size_t stop_after; /* 0: never stop */
} visits;

static int record_visit(void *arg, const char *host, uint32_t load)
{
	visits *v = arg;
	ck_assert_uint_lt(v->n, 8);
	snprintf(v->host[v->n], sizeof(v->host[v->n]), "%s", host);
	v->load[v->n] = load;
	v->n++;
	return v->stop_after != 0 && v->n == v->stop_after ? 7 : 0;
}

/* ----------------------------------------------------------- transitions */

START_TEST(test_renew_of_new_host_makes_it_live)
{
	rcds_leases *l = new_table();

	ck_assert(!rcds_lease_live(l, "node1", 5000));
	tu_assert_code(rcds_lease_renew(l, "node1", 5000, LEASE), SNIPE_OK);
	ck_assert_uint_eq(rcds_leases_count(l), 1);
	ck_assert(rcds_lease_live(l, "node1", 5000));
	ck_assert(rcds_lease_live(l, "node1", 5999));
	ck_assert(!rcds_lease_live(l, "node2", 5000));
	rcds_leases_free(l);
}
END_TEST

START_TEST(test_due_offers_new_host_up_once)
{
	rcds_leases *l = new_table();

	tu_assert_code(rcds_lease_renew(l, "node1", 5000, LEASE), SNIPE_OK);
	expect_one_offer(l, 5000, "node1", true);
	rcds_leases_free(l);
}
END_TEST

START_TEST(test_due_does_not_offer_again_while_in_flight)
{
	rcds_leases *l = new_table();

	tu_assert_code(rcds_lease_renew(l, "node1", 5000, LEASE), SNIPE_OK);
	expect_one_offer(l, 5000, "node1", true);
	expect_no_offer(l, 5000);
	expect_no_offer(l, 5500);
	tu_assert_code(rcds_lease_renew(l, "node1", 5600, LEASE), SNIPE_OK);
	expect_no_offer(l, 5700);
	rcds_leases_free(l);
}
END_TEST

START_TEST(test_due_does_not_offer_after_recorded_up)
{
	rcds_leases *l = new_table();

	tu_assert_code(rcds_lease_renew(l, "node1", 5000, LEASE), SNIPE_OK);
	expect_one_offer(l, 5000, "node1", true);
	rcds_lease_recorded(l, "node1", true, true);
	expect_no_offer(l, 5000);
	expect_no_offer(l, 5999);
	/* heartbeats on a recorded lease are not transitions */
	tu_assert_code(rcds_lease_renew(l, "node1", 5900, LEASE), SNIPE_OK);
	expect_no_offer(l, 6800);
	ck_assert(rcds_lease_live(l, "node1", 6899));
	rcds_leases_free(l);
}
END_TEST

START_TEST(test_failed_record_is_offered_again)
{
	rcds_leases *l = new_table();

	tu_assert_code(rcds_lease_renew(l, "node1", 5000, LEASE), SNIPE_OK);
	expect_one_offer(l, 5000, "node1", true);
	rcds_lease_recorded(l, "node1", true, false);
	expect_one_offer(l, 5001, "node1", true);
	expect_no_offer(l, 5002);
	rcds_lease_recorded(l, "node1", true, true);
	expect_no_offer(l, 5003);
	rcds_leases_free(l);
}
END_TEST

START_TEST(test_recorded_of_the_other_direction_is_ignored)
{
	rcds_leases *l = new_table();

	tu_assert_code(rcds_lease_renew(l, "node1", 5000, LEASE), SNIPE_OK);
	expect_one_offer(l, 5000, "node1", true);
	rcds_lease_recorded(l, "node1", false, true); /* not the change in flight */
	expect_no_offer(l, 5001);
	rcds_lease_recorded(l, "node1", true, true);
	expect_no_offer(l, 5002);
	rcds_leases_free(l);
}
END_TEST

START_TEST(test_recorded_of_unknown_host_is_ignored)
{
	rcds_leases *l = new_table();

	rcds_lease_recorded(l, "ghost", true, true);
	rcds_lease_recorded(l, "ghost", false, false);
	ck_assert_uint_eq(rcds_leases_count(l), 0);
	expect_no_offer(l, 5000);
	rcds_leases_free(l);
}
END_TEST

START_TEST(test_lease_lapses_exactly_at_deadline)
{
	rcds_leases *l = with_recorded_up("node1", 5000);

	ck_assert(rcds_lease_live(l, "node1", 5999));
	expect_no_offer(l, 5999);
	ck_assert(!rcds_lease_live(l, "node1", 6000));
	expect_one_offer(l, 6000, "node1", false);
	ck_assert(!rcds_lease_live(l, "node1", 6000));
	ck_assert_uint_eq(rcds_leases_count(l), 1);
	rcds_leases_free(l);
}
END_TEST

START_TEST(test_lapsed_host_is_offered_down_once)
{
	rcds_leases *l = with_recorded_up("node1", 5000);

	expect_one_offer(l, 7000, "node1", false);
	expect_no_offer(l, 7001);
	rcds_lease_recorded(l, "node1", false, true);
	expect_no_offer(l, 7002);
	expect_no_offer(l, 900000);
	ck_assert(!rcds_lease_live(l, "node1", 900000));
	rcds_leases_free(l);
}
END_TEST

START_TEST(test_failed_down_record_is_offered_again)
{
	rcds_leases *l = with_recorded_up("node1", 5000);

	expect_one_offer(l, 6000, "node1", false);
	rcds_lease_recorded(l, "node1", false, false);
	expect_one_offer(l, 6001, "node1", false);
	rcds_lease_recorded(l, "node1", false, true);
	expect_no_offer(l, 6002);
	rcds_leases_free(l);
}
END_TEST

START_TEST(test_renew_before_deadline_keeps_host_up)
{
	rcds_leases *l = with_recorded_up("node1", 5000);

	tu_assert_code(rcds_lease_renew(l, "node1", 5999, LEASE), SNIPE_OK);
	ck_assert(rcds_lease_live(l, "node1", 6998));
	expect_no_offer(l, 6998);
	ck_assert(!rcds_lease_live(l, "node1", 6999));
	expect_one_offer(l, 6999, "node1", false);
	rcds_leases_free(l);
}
END_TEST

START_TEST(test_heartbeat_during_down_in_flight_offers_up_again)
{
	rcds_leases *l = with_recorded_up("node1", 5000);

	expect_one_offer(l, 6000, "node1", false);
	tu_assert_code(rcds_lease_renew(l, "node1", 6100, LEASE), SNIPE_OK);
	ck_assert(rcds_lease_live(l, "node1", 6100));
	expect_no_offer(l, 6200); /* the down is still in flight */
	rcds_lease_recorded(l, "node1", false, true);
	expect_one_offer(l, 6300, "node1", true);
	rcds_lease_recorded(l, "node1", true, true);
	expect_no_offer(l, 6400);
	rcds_leases_free(l);
}
END_TEST

START_TEST(test_lapse_during_up_in_flight_offers_down_after_record)
{
	rcds_leases *l = new_table();

	tu_assert_code(rcds_lease_renew(l, "node1", 5000, LEASE), SNIPE_OK);
	expect_one_offer(l, 5000, "node1", true);
	expect_no_offer(l, 6000); /* lapses, but the up is still in flight */
	rcds_lease_recorded(l, "node1", true, true);
	expect_one_offer(l, 6001, "node1", false);
	rcds_leases_free(l);
}
END_TEST

START_TEST(test_lapse_and_heartbeat_during_down_in_flight_settle_on_down)
{
	rcds_leases *l = with_recorded_up("node1", 5000);

	expect_one_offer(l, 6000, "node1", false);
	tu_assert_code(rcds_lease_renew(l, "node1", 6100, LEASE), SNIPE_OK);
	expect_no_offer(l, 7100); /* the new lease lapsed too */
	rcds_lease_recorded(l, "node1", false, true);
	expect_no_offer(l, 7200);
	rcds_leases_free(l);
}
END_TEST

START_TEST(test_due_offers_each_behind_host_in_name_order)
{
	rcds_leases *l = new_table();
	offers o;

	tu_assert_code(rcds_lease_renew(l, "node3", 5000, LEASE), SNIPE_OK);
	tu_assert_code(rcds_lease_renew(l, "node1", 5000, LEASE), SNIPE_OK);
	tu_assert_code(rcds_lease_renew(l, "node2", 5000, LEASE), SNIPE_OK);
	ck_assert_uint_eq(due(l, 5000, &o), 3);
	ck_assert_str_eq(o.host[0], "node1");
	ck_assert_str_eq(o.host[1], "node2");
	ck_assert_str_eq(o.host[2], "node3");
	ck_assert(o.up[0] && o.up[1] && o.up[2]);
	rcds_lease_recorded(l, "node1", true, true);
	rcds_lease_recorded(l, "node2", true, false);
	rcds_lease_recorded(l, "node3", true, true);
	expect_one_offer(l, 5001, "node2", true);
	rcds_leases_free(l);
}
END_TEST

/* ------------------------------------------------------------------ grace */

START_TEST(test_grace_gives_lease_without_offering_up)
{
	rcds_leases *l = new_table();

	tu_assert_code(rcds_lease_grace(l, "node1", 5000, LEASE), SNIPE_OK);
	ck_assert_uint_eq(rcds_leases_count(l), 1);
	ck_assert(rcds_lease_live(l, "node1", 5999));
	expect_no_offer(l, 5000);
	expect_no_offer(l, 5999);
	ck_assert(!rcds_lease_live(l, "node1", 6000));
	expect_one_offer(l, 6000, "node1", false);
	rcds_leases_free(l);
}
END_TEST

START_TEST(test_grace_does_not_touch_host_already_present)
{
	rcds_leases *l = new_table();

	/* a new host whose up is not recorded stays behind, its lease unchanged */
	tu_assert_code(rcds_lease_renew(l, "node1", 5000, LEASE), SNIPE_OK);
	tu_assert_code(rcds_lease_grace(l, "node1", 5500, 5000), SNIPE_OK);
	ck_assert_uint_eq(rcds_leases_count(l), 1);
	ck_assert(!rcds_lease_live(l, "node1", 6000));
	expect_one_offer(l, 5000, "node1", true);

	/* a lapsed host recorded down does not come back live */
	rcds_leases *m = with_recorded_up("node2", 5000);
	expect_one_offer(m, 6000, "node2", false);
	rcds_lease_recorded(m, "node2", false, true);
	tu_assert_code(rcds_lease_grace(m, "node2", 7000, LEASE), SNIPE_OK);
	ck_assert(!rcds_lease_live(m, "node2", 7000));
	expect_no_offer(m, 7000);
	rcds_leases_free(m);
	rcds_leases_free(l);
}
END_TEST

/* ----------------------------------------------------------------- bounds */

START_TEST(test_renew_rejects_lease_outside_bounds)
{
	rcds_leases *l = new_table();

	tu_assert_code(rcds_lease_renew(l, "node1", 5000, 0), SNIPE_EINVAL);
	tu_assert_code(rcds_lease_renew(l, "node1", 5000, RCDS_LEASE_MIN_MS - 1), SNIPE_EINVAL);
	tu_assert_code(rcds_lease_renew(l, "node1", 5000, RCDS_LEASE_MAX_MS + 1), SNIPE_EINVAL);
	tu_assert_code(rcds_lease_renew(l, "node1", 5000, UINT32_MAX), SNIPE_EINVAL);
	ck_assert_uint_eq(rcds_leases_count(l), 0);
	ck_assert(!rcds_lease_live(l, "node1", 5000));
	expect_no_offer(l, 5000);

	tu_assert_code(rcds_lease_renew(l, "node1", 5000, RCDS_LEASE_MIN_MS), SNIPE_OK);
	ck_assert(rcds_lease_live(l, "node1", 5000 + RCDS_LEASE_MIN_MS - 1));
	ck_assert(!rcds_lease_live(l, "node1", 5000 + RCDS_LEASE_MIN_MS));
	tu_assert_code(rcds_lease_renew(l, "node2", 5000, RCDS_LEASE_MAX_MS), SNIPE_OK);
	ck_assert(rcds_lease_live(l, "node2", 5000 + RCDS_LEASE_MAX_MS - 1));
	ck_assert(!rcds_lease_live(l, "node2", 5000 + RCDS_LEASE_MAX_MS));

	/* a rejected renewal leaves an existing lease as it was */
	tu_assert_code(rcds_lease_renew(l, "node2", 9000, RCDS_LEASE_MAX_MS + 1), SNIPE_EINVAL);
	ck_assert(!rcds_lease_live(l, "node2", 5000 + RCDS_LEASE_MAX_MS));
	ck_assert_uint_eq(rcds_leases_count(l), 2);
	rcds_leases_free(l);
}
END_TEST

START_TEST(test_grace_rejects_lease_outside_bounds)
{
	rcds_leases *l = new_table();

	tu_assert_code(rcds_lease_grace(l, "node1", 5000, RCDS_LEASE_MIN_MS - 1), SNIPE_EINVAL);
	tu_assert_code(rcds_lease_grace(l, "node1", 5000, RCDS_LEASE_MAX_MS + 1), SNIPE_EINVAL);
	ck_assert_uint_eq(rcds_leases_count(l), 0);
	ck_assert(!rcds_lease_live(l, "node1", 5000));
	rcds_leases_free(l);
}
END_TEST

/* ------------------------------------------------------ live hosts, loads */

START_TEST(test_each_live_visits_live_hosts_in_name_order_with_loads)
{
	rcds_leases *l = new_table();
	visits v = {0};

	tu_assert_code(rcds_lease_renew(l, "node-c", 5000, LEASE), SNIPE_OK);
	tu_assert_code(rcds_lease_renew(l, "node-a", 5000, LEASE), SNIPE_OK);
	tu_assert_code(rcds_lease_renew(l, "node-d", 4000, LEASE), SNIPE_OK); /* lapses at 5000 */
	tu_assert_code(rcds_lease_grace(l, "node-b", 5000, LEASE), SNIPE_OK);
	rcds_lease_add_load(l, "node-a", 2);
	rcds_lease_add_load(l, "node-a", 3);
	rcds_lease_add_load(l, "node-c", 1);
	rcds_lease_add_load(l, "node-d", 9);
	rcds_lease_add_load(l, "unknown", 4); /* not in the table: ignored */
	ck_assert_uint_eq(rcds_leases_count(l), 4);
	ck_assert_uint_eq(rcds_lease_load(l, "node-a"), 5);
	ck_assert_uint_eq(rcds_lease_load(l, "node-b"), 0);
	ck_assert_uint_eq(rcds_lease_load(l, "node-d"), 9);
	ck_assert_uint_eq(rcds_lease_load(l, "unknown"), 0);

	ck_assert_int_eq(rcds_leases_each_live(l, 5000, record_visit, &v), 0);
	ck_assert_uint_eq(v.n, 3);
	ck_assert_str_eq(v.host[0], "node-a");
	ck_assert_uint_eq(v.load[0], 5);
	ck_assert_str_eq(v.host[1], "node-b");
	ck_assert_uint_eq(v.load[1], 0);
	ck_assert_str_eq(v.host[2], "node-c");
	ck_assert_uint_eq(v.load[2], 1);

	rcds_leases_zero_load(l);
	rcds_lease_add_load(l, "node-c", 7);
	memset(&v, 0, sizeof(v));
	ck_assert_int_eq(rcds_leases_each_live(l, 5999, record_visit, &v), 0);
	ck_assert_uint_eq(v.n, 3);
	ck_assert_uint_eq(v.load[0], 0);
	ck_assert_uint_eq(v.load[1], 0);
	ck_assert_uint_eq(v.load[2], 7);
	ck_assert_uint_eq(rcds_lease_load(l, "node-d"), 0);

	memset(&v, 0, sizeof(v));
	ck_assert_int_eq(rcds_leases_each_live(l, 6000, record_visit, &v), 0);
	ck_assert_uint_eq(v.n, 0);
	rcds_leases_free(l);
}
END_TEST

START_TEST(test_each_live_stops_at_nonzero_return)
{
	rcds_leases *l = new_table();
	visits v = {.stop_after = 2};

	tu_assert_code(rcds_lease_renew(l, "c", 5000, LEASE), SNIPE_OK);
	tu_assert_code(rcds_lease_renew(l, "b", 5000, LEASE), SNIPE_OK);
	tu_assert_code(rcds_lease_renew(l, "a", 5000, LEASE), SNIPE_OK);
	ck_assert_int_eq(rcds_leases_each_live(l, 5000, record_visit, &v), 7);
	ck_assert_uint_eq(v.n, 2);
	ck_assert_str_eq(v.host[0], "a");
	ck_assert_str_eq(v.host[1], "b");
	rcds_leases_free(l);
}
END_TEST

/* ------------------------------------------------------------ clear, size */

START_TEST(test_clear_forgets_every_host)
{
	rcds_leases *l = new_table();
	visits v = {0};

	tu_assert_code(rcds_lease_renew(l, "node1", 5000, LEASE), SNIPE_OK);
	tu_assert_code(rcds_lease_grace(l, "node2", 5000, LEASE), SNIPE_OK);
	rcds_lease_add_load(l, "node1", 3);
	expect_one_offer(l, 5000, "node1", true);
	rcds_leases_clear(l);

	ck_assert_uint_eq(rcds_leases_count(l), 0);
	ck_assert(!rcds_lease_live(l, "node1", 5000));
	ck_assert(!rcds_lease_live(l, "node2", 5000));
	ck_assert_uint_eq(rcds_lease_load(l, "node1"), 0);
	ck_assert_int_eq(rcds_leases_each_live(l, 5000, record_visit, &v), 0);
	ck_assert_uint_eq(v.n, 0);
	expect_no_offer(l, 7000);
	rcds_lease_recorded(l, "node1", true, true); /* the old in-flight change: ignored */
	expect_no_offer(l, 7000);

	/* the table is usable again; node1 is new to it and offered up afresh */
	tu_assert_code(rcds_lease_renew(l, "node1", 8000, LEASE), SNIPE_OK);
	ck_assert_uint_eq(rcds_leases_count(l), 1);
	expect_one_offer(l, 8000, "node1", true);
	rcds_leases_free(l);
}
END_TEST

START_TEST(test_free_of_null_is_a_no_op)
{
	rcds_leases_free(NULL);
}
END_TEST

#define MANY 1000

static int count_in_order(void *arg, const char *host, uint32_t load)
{
	char(*prev)[32] = arg;
	ck_assert_msg(strcmp(*prev, host) < 0, "%s visited after %s", host, *prev);
	snprintf(*prev, sizeof(*prev), "%s", host);
	ck_assert_uint_eq(load, (uint32_t)(strtoul(host + 5, NULL, 10) % 7));
	return 0;
}

static void count_offer(void *arg, const char *host, bool up)
{
	size_t *n = arg;
	ck_assert_msg(up, "%s offered down", host);
	(*n)++;
}

START_TEST(test_thousand_hosts_in_random_order_are_all_found)
{
	static unsigned order[MANY];
	struct tu_rng r;
	char name[32];

	ck_assert_int_ge(sodium_init(), 0);
	tu_rng_init(&r, "test_thousand_hosts_in_random_order_are_all_found");
	for (unsigned i = 0; i < MANY; i++)
		order[i] = i;
	for (size_t i = MANY - 1; i > 0; i--) {
		size_t j = tu_rng_below(&r, i + 1);
		unsigned t = order[i];
		order[i] = order[j];
		order[j] = t;
	}

	rcds_leases *l = new_table();
	for (size_t i = 0; i < MANY; i++) {
		snprintf(name, sizeof(name), "host-%u", order[i]);
		tu_assert_code(rcds_lease_renew(l, name, 5000 + order[i], LEASE), SNIPE_OK);
		rcds_lease_add_load(l, name, order[i] % 7);
	}
	ck_assert_uint_eq(rcds_leases_count(l), MANY);
	for (unsigned i = 0; i < MANY; i++) {
		snprintf(name, sizeof(name), "host-%u", i);
		ck_assert_msg(rcds_lease_live(l, name, 5000 + i + LEASE - 1), "%s not live", name);
		ck_assert_msg(!rcds_lease_live(l, name, 5000 + i + LEASE), "%s still live", name);
		ck_assert_uint_eq(rcds_lease_load(l, name), i % 7);
	}
	ck_assert(!rcds_lease_live(l, "host-1000", 5000));
	ck_assert(!rcds_lease_live(l, "host-", 5000));

	/* renewing them all again adds nothing */
	for (unsigned i = 0; i < MANY; i++) {
		snprintf(name, sizeof(name), "host-%u", i);
		tu_assert_code(rcds_lease_renew(l, name, 5000 + i, LEASE), SNIPE_OK);
	}
	ck_assert_uint_eq(rcds_leases_count(l), MANY);

	char prev[32] = "";
	ck_assert_int_eq(rcds_leases_each_live(l, 5000, count_in_order, &prev), 0);
	ck_assert_str_eq(prev, "host-999");
	size_t n = 0;
	ck_assert_uint_eq(rcds_leases_due(l, 5000, count_offer, &n), MANY);
	ck_assert_uint_eq(n, MANY);
	rcds_leases_free(l);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("lease");
	TCase *tc;

	tc = tcase_create("transitions");
	tcase_add_test(tc, test_renew_of_new_host_makes_it_live);
	tcase_add_test(tc, test_due_offers_new_host_up_once);
	tcase_add_test(tc, test_due_does_not_offer_again_while_in_flight);
	tcase_add_test(tc, test_due_does_not_offer_after_recorded_up);
	tcase_add_test(tc, test_failed_record_is_offered_again);
	tcase_add_test(tc, test_recorded_of_the_other_direction_is_ignored);
	tcase_add_test(tc, test_recorded_of_unknown_host_is_ignored);
	tcase_add_test(tc, test_lease_lapses_exactly_at_deadline);
	tcase_add_test(tc, test_lapsed_host_is_offered_down_once);
	tcase_add_test(tc, test_failed_down_record_is_offered_again);
	tcase_add_test(tc, test_renew_before_deadline_keeps_host_up);
	tcase_add_test(tc, test_heartbeat_during_down_in_flight_offers_up_again);
	tcase_add_test(tc, test_lapse_during_up_in_flight_offers_down_after_record);
	tcase_add_test(tc, test_lapse_and_heartbeat_during_down_in_flight_settle_on_down);
	tcase_add_test(tc, test_due_offers_each_behind_host_in_name_order);
	suite_add_tcase(s, tc);

	tc = tcase_create("grace");
	tcase_add_test(tc, test_grace_gives_lease_without_offering_up);
	tcase_add_test(tc, test_grace_does_not_touch_host_already_present);
	suite_add_tcase(s, tc);

	tc = tcase_create("bounds");
	tcase_add_test(tc, test_renew_rejects_lease_outside_bounds);
	tcase_add_test(tc, test_grace_rejects_lease_outside_bounds);
	suite_add_tcase(s, tc);

	tc = tcase_create("live");
	tcase_add_test(tc, test_each_live_visits_live_hosts_in_name_order_with_loads);
	tcase_add_test(tc, test_each_live_stops_at_nonzero_return);
	suite_add_tcase(s, tc);

	tc = tcase_create("table");
	tcase_add_test(tc, test_clear_forgets_every_host);
	tcase_add_test(tc, test_free_of_null_is_a_no_op);
	tcase_add_test(tc, test_thousand_hosts_in_random_order_are_all_found);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(suite());
}
