/*
 * test_watch.c — the catalog's change stream against real replicas: prefix filtering,
 * order, puts and deletes with their indexes, no duplicates although every replica
 * publishes, and the stream going on when a replica dies.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "rcds.h"
#include "testutil.h"

#define WAIT_MS 5000

static uint64_t write_put(rcds_client *cl, const char *urn, const char *attr, const char *value)
{
	rcds_batch *b = NULL;
	uint64_t index = 0;
	char err[256] = "";
	ck_assert_int_eq(rcds_batch_new(&b), SNIPE_OK);
	ck_assert_int_eq(rcds_batch_put(b, urn, attr, value, strlen(value), 0), SNIPE_OK);
	ck_assert_msg(rcds_write(cl, b, &index, err, sizeof(err)) == SNIPE_OK, "write: %s", err);
	rcds_batch_free(b);
	return index;
}

static uint64_t write_delete(rcds_client *cl, const char *urn, const char *attr)
{
	rcds_batch *b = NULL;
	uint64_t index = 0;
	char err[256] = "";
	ck_assert_int_eq(rcds_batch_new(&b), SNIPE_OK);
	ck_assert_int_eq(rcds_batch_delete(b, urn, attr), SNIPE_OK);
	ck_assert_msg(rcds_write(cl, b, &index, err, sizeof(err)) == SNIPE_OK, "delete: %s", err);
	rcds_batch_free(b);
	return index;
}

static void expect_put(rcds_watch *w, uint64_t index, const char *urn, const char *attr,
                       const char *value)
{
	rcds_event ev;
	char err[256] = "";
	ck_assert_msg(rcds_watch_next(w, WAIT_MS, &ev, err, sizeof(err)) == SNIPE_OK,
	              "watch: %s (expected %s %s at %llu)", err, urn, attr,
	              (unsigned long long)index);
	ck_assert_uint_eq(ev.index, index);
	ck_assert_str_eq(ev.urn, urn);
	ck_assert_str_eq(ev.attr, attr);
	ck_assert(!ev.deleted);
	ck_assert_str_eq((const char *)ev.assertion.value, value);
	ck_assert_uint_eq(ev.assertion.version, index);
	rcds_event_clear(&ev);
}

START_TEST(test_watch_delivers_changes_under_prefix_in_order_once)
{
	tc_cluster *c = tc_cluster_start(3);
	rcds_client *cl = tc_cluster_client(c, -1, tc_cluster_admin_key(c));
	rcds_watch *w = NULL;
	char err[256] = "";
	ck_assert_msg(rcds_watch_open(cl, "urn:snipe:data:w/", &w, err, sizeof(err)) == SNIPE_OK,
	              "open: %s", err);

	uint64_t i1 = write_put(cl, "urn:snipe:data:w/a", "x", "1");
	write_put(cl, "urn:snipe:data:other", "x", "not for us");
	uint64_t i2 = write_put(cl, "urn:snipe:data:w/b", "y", "2");
	uint64_t i3 = write_delete(cl, "urn:snipe:data:w/a", "x");

	expect_put(w, i1, "urn:snipe:data:w/a", "x", "1");
	expect_put(w, i2, "urn:snipe:data:w/b", "y", "2");
	rcds_event ev;
	ck_assert_int_eq(rcds_watch_next(w, WAIT_MS, &ev, err, sizeof(err)), SNIPE_OK);
	ck_assert_uint_eq(ev.index, i3);
	ck_assert(ev.deleted);
	ck_assert_str_eq(ev.urn, "urn:snipe:data:w/a");
	ck_assert_str_eq(ev.attr, "x");
	rcds_event_clear(&ev);
	/* Three replicas published each change; the subscriber saw each once. */
	ck_assert_int_eq(rcds_watch_next(w, 300, &ev, err, sizeof(err)), SNIPE_ETIMEDOUT);

	rcds_watch_close(w);
	rcds_client_close(cl);
	tc_cluster_stop(c);
}
END_TEST

/* A watch opened on nothing delivers the changes of exactly the URNs added: not of a
 * URN that merely starts with one of them, nor of any other. */
START_TEST(test_watch_of_exact_urns_delivers_only_those)
{
	tc_cluster *c = tc_cluster_start(3);
	rcds_client *cl = tc_cluster_client(c, -1, tc_cluster_admin_key(c));
	rcds_watch *w = NULL;
	char err[256] = "";
	ck_assert_msg(rcds_watch_open(cl, RCDS_WATCH_NONE, &w, err, sizeof(err)) == SNIPE_OK,
	              "open: %s", err);
	ck_assert_int_eq(rcds_watch_add(w, "urn:snipe:data:e/a"), SNIPE_OK);
	ck_assert_int_eq(rcds_watch_add(w, "urn:snipe:data:e/c"), SNIPE_OK);
	tu_sleep_ms(100); /* a subscription reaches the publishers asynchronously */
	write_put(cl, "urn:snipe:data:e/ab", "x", "longer name");
	write_put(cl, "urn:snipe:data:e/b", "x", "not added");
	uint64_t i1 = write_put(cl, "urn:snipe:data:e/a", "y", "1");
	uint64_t i2 = write_put(cl, "urn:snipe:data:e/c", "z", "2");
	expect_put(w, i1, "urn:snipe:data:e/a", "y", "1");
	expect_put(w, i2, "urn:snipe:data:e/c", "z", "2");
	rcds_event ev;
	ck_assert_int_eq(rcds_watch_next(w, 300, &ev, err, sizeof(err)), SNIPE_ETIMEDOUT);
	rcds_watch_close(w);
	rcds_client_close(cl);
	tc_cluster_stop(c);
}
END_TEST

/* Writes in flight together share a Raft entry and so an index: the watch still
 * delivers every change of every one of them, once. */
#define SHARED_WRITERS 8
#define SHARED_WRITES 50

struct shared_writer {
	pthread_t thread;
	rcds_client *cl;
	int id;
};

static void *shared_writer_main(void *arg)
{
	struct shared_writer *sw = arg;
	for (int n = 0; n < SHARED_WRITES; n++) {
		char urn[64];
		snprintf(urn, sizeof(urn), "urn:snipe:data:sh/%d/%02d", sw->id, n);
		rcds_batch *b = NULL;
		if (rcds_batch_new(&b) != SNIPE_OK)
			return NULL;
		rcds_batch_put(b, urn, "a", "1", 1, 0);
		rcds_batch_put(b, urn, "b", "2", 1, 0);
		rcds_write(sw->cl, b, NULL, NULL, 0);
		rcds_batch_free(b);
	}
	return NULL;
}

START_TEST(test_watch_delivers_every_change_of_writes_sharing_an_entry)
{
	enum { CHANGES = SHARED_WRITERS * SHARED_WRITES * 2 };
	tc_cluster *c = tc_cluster_start(3);
	const snipe_key *admin = tc_cluster_admin_key(c);
	rcds_client *cl = tc_cluster_client(c, -1, admin);
	rcds_watch *w = NULL;
	char err[256] = "";
	ck_assert_msg(rcds_watch_open(cl, "urn:snipe:data:sh/", &w, err, sizeof(err)) == SNIPE_OK,
	              "open: %s", err);
	struct shared_writer sw[SHARED_WRITERS];
	for (int k = 0; k < SHARED_WRITERS; k++) {
		sw[k] = (struct shared_writer){.cl = tc_cluster_client(c, -1, admin), .id = k};
		ck_assert_int_eq(pthread_create(&sw[k].thread, NULL, shared_writer_main, &sw[k]), 0);
	}
	static bool seen[SHARED_WRITERS][SHARED_WRITES][2];
	memset(seen, 0, sizeof(seen));
	int got = 0, shared = 0;
	uint64_t last_index = 0;
	rcds_event ev;
	while (got < CHANGES && rcds_watch_next(w, WAIT_MS, &ev, err, sizeof(err)) == SNIPE_OK) {
		int k = -1, n = -1;
		ck_assert_int_eq(sscanf(ev.urn, "urn:snipe:data:sh/%d/%d", &k, &n), 2);
		ck_assert(k >= 0 && k < SHARED_WRITERS && n >= 0 && n < SHARED_WRITES);
		int a = ev.attr[0] == 'b';
		ck_assert_msg(!seen[k][n][a], "%s %s delivered twice", ev.urn, ev.attr);
		seen[k][n][a] = true;
		shared += ev.index == last_index && ev.attr[0] == 'a'; /* a new write, same entry */
		last_index = ev.index;
		got++;
		rcds_event_clear(&ev);
	}
	for (int k = 0; k < SHARED_WRITERS; k++) {
		ck_assert_int_eq(pthread_join(sw[k].thread, NULL), 0);
		rcds_client_close(sw[k].cl);
	}
	ck_assert_msg(got == CHANGES, "%d of %d changes delivered (%s)", got, CHANGES, err);
	ck_assert_msg(shared > 0, "no two writes shared an entry");
	ck_assert_int_eq(rcds_watch_next(w, 300, &ev, err, sizeof(err)), SNIPE_ETIMEDOUT);
	rcds_watch_close(w);
	rcds_client_close(cl);
	tc_cluster_stop(c);
}
END_TEST

START_TEST(test_watch_survives_the_loss_of_a_replica)
{
	tc_cluster *c = tc_cluster_start(3);
	rcds_client *cl = tc_cluster_client(c, -1, tc_cluster_admin_key(c));
	rcds_watch *w = NULL;
	char err[256] = "";
	ck_assert_int_eq(rcds_watch_open(cl, "urn:snipe:data:", &w, err, sizeof(err)), SNIPE_OK);
	uint64_t i1 = write_put(cl, "urn:snipe:data:s1", "v", "before");
	expect_put(w, i1, "urn:snipe:data:s1", "v", "before");

	tc_cluster_kill(c, tc_cluster_leader(c));
	uint64_t i2 = write_put(cl, "urn:snipe:data:s2", "v", "after");
	expect_put(w, i2, "urn:snipe:data:s2", "v", "after");

	rcds_watch_close(w);
	rcds_client_close(cl);
	tc_cluster_stop(c);
}
END_TEST

START_TEST(test_watch_of_unreachable_catalog_fails_clearly)
{
	snipe_key *k = NULL;
	rcds_client *cl = NULL;
	rcds_watch *w = NULL;
	char err[256] = "";
	ck_assert_int_eq(snipe_key_generate(&k), SNIPE_OK);
	ck_assert_int_eq(rcds_client_open("tcp://127.0.0.1:1", k, &cl, err, sizeof(err)), SNIPE_OK);
	rcds_client_set_timeout(cl, 300);
	ck_assert_int_eq(rcds_watch_open(cl, "", &w, err, sizeof(err)), SNIPE_EUNAVAIL);
	ck_assert_ptr_nonnull(strstr(err, "publishes"));
	rcds_client_close(cl);
	snipe_key_free(k);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("watch");
	TCase *tc = tcase_create("watch");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_watch_delivers_changes_under_prefix_in_order_once);
	tcase_add_test(tc, test_watch_of_exact_urns_delivers_only_those);
	tcase_add_test(tc, test_watch_delivers_every_change_of_writes_sharing_an_entry);
	tcase_add_test(tc, test_watch_survives_the_loss_of_a_replica);
	tcase_add_test(tc, test_watch_of_unreachable_catalog_fails_clearly);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(suite());
}
