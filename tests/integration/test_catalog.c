/*
 * test_catalog.c — the resource catalog end to end: real rcdsd replicas on loopback
 * (tests/common/cluster.h) and the client library. Replication to every replica,
 * failover from followers, acknowledged writes surviving kill -9 of the leader,
 * catch-up of a restarted and of a wiped replica, forged and malformed requests,
 * compare-and-set, and who may write what.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>
#include <sodium.h>

#include "catalog.pb-c.h"
#include "cluster.h"
#include "rcds.h"
#include "sni.h"
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
#define RAW_TIMEOUT_MS 5000

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

/* The reason the last put or put_if of this thread gave, for failure messages. */
static _Thread_local char last_err[256];

/* Writes one (urn, attr) = value; the code, and the version in *index. */
static int put(rcds_client *cl, const char *urn, const char *attr, const char *value,
               uint64_t *index)
{
	rcds_batch *b = NULL;
	ck_assert_int_eq(rcds_batch_new(&b), SNIPE_OK);
	ck_assert_int_eq(rcds_batch_put(b, urn, attr, value, strlen(value), 0), SNIPE_OK);
	last_err[0] = '\0';
	int rc = rcds_write(cl, b, index, last_err, sizeof(last_err));
	rcds_batch_free(b);
	return rc;
}

/* As put, which must succeed; returns the version. */
static uint64_t put_ok(rcds_client *cl, const char *urn, const char *attr, const char *value)
{
	uint64_t index = 0;
	int rc = put(cl, urn, attr, value, &index);
	ck_assert_msg(rc == SNIPE_OK, "put %s %s: %s (%s)", urn, attr, snipe_errname(rc),
	              last_err);
	ck_assert_uint_gt(index, 0);
	return index;
}

static int put_if(rcds_client *cl, const char *urn, const char *attr, const char *value,
                  uint64_t expect, uint64_t *index)
{
	rcds_batch *b = NULL;
	ck_assert_int_eq(rcds_batch_new(&b), SNIPE_OK);
	ck_assert_int_eq(rcds_batch_put_if(b, urn, attr, value, strlen(value), 0, expect),
	                 SNIPE_OK);
	last_err[0] = '\0';
	int rc = rcds_write(cl, b, index, last_err, sizeof(last_err));
	rcds_batch_free(b);
	return rc;
}

/* Asserts one assertion's fields. */
static void assert_item(const rcds_assertion *a, const char *urn, const char *attr,
                        const char *value, uint64_t version, const uint8_t *author)
{
	ck_assert_str_eq(a->urn, urn);
	ck_assert_str_eq(a->attr, attr);
	ck_assert_uint_eq(a->value_len, strlen(value));
	ck_assert_str_eq((const char *)a->value, value);
	ck_assert_uint_eq(a->version, version);
	ck_assert_uint_eq(a->expires_ms, 0);
	ck_assert(memcmp(a->author, author, SNIPE_PK_BYTES) == 0);
}

/* Gets urn, which must have exactly one assertion, and checks it. */
static void assert_single(rcds_client *cl, const char *urn, const char *attr,
                          const char *value, uint64_t version, const uint8_t *author)
{
	rcds_list l;
	char err[256] = "";
	int rc = rcds_get(cl, urn, &l, err, sizeof(err));
	ck_assert_msg(rc == SNIPE_OK, "get %s: %s (%s)", urn, snipe_errname(rc), err);
	ck_assert_uint_eq(l.count, 1);
	assert_item(&l.items[0], urn, attr, value, version, author);
	rcds_list_free(&l);
}

static void assert_not_found(rcds_client *cl, const char *urn)
{
	rcds_list l;
	assert_code(rcds_get(cl, urn, &l, NULL, 0), SNIPE_ENOTFOUND);
	ck_assert_uint_eq(l.count, 0);
}

/* Everything under prefix, read from one replica. */
static rcds_list query_all(rcds_client *cl, const char *prefix)
{
	rcds_list l;
	char err[256] = "";
	int rc = rcds_query(cl, prefix, NULL, 0, &l, err, sizeof(err));
	ck_assert_msg(rc == SNIPE_OK, "query %s: %s (%s)", prefix, snipe_errname(rc), err);
	return l;
}

/* Both lists hold the same assertions in the same order. */
static void assert_same_lists(const rcds_list *a, const rcds_list *b)
{
	ck_assert_uint_eq(a->count, b->count);
	for (size_t i = 0; i < a->count; i++) {
		assert_item(&b->items[i], a->items[i].urn, a->items[i].attr,
		            (const char *)a->items[i].value, a->items[i].version,
		            a->items[i].author);
	}
}

static uint64_t leader_applied(tc_cluster *c, int leader)
{
	rcds_status st;
	assert_code(tc_cluster_status(c, leader, &st), SNIPE_OK);
	return st.applied_index;
}

/* "1 3": the replicas still running, for failure messages (a replica that died on
 * its own is reported by the fixture as it is found). Static buffer. */
static const char *running_list(tc_cluster *c)
{
	static char buf[64];
	buf[0] = '\0';
	for (int i = 0; i < tc_cluster_size(c); i++)
		if (tc_cluster_running(c, i))
			snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s%d",
			         buf[0] ? " " : "", i + 1);
	return buf[0] ? buf : "none";
}

/* A replica other than `not`, and other than `nor` (-1: none). */
static int other_replica(const tc_cluster *c, int not, int nor)
{
	for (int i = 0; i < tc_cluster_size(c); i++)
		if (i != not && i != nor)
			return i;
	ck_abort_msg("no other replica");
	return -1;
}

static int leader_of(tc_cluster *c)
{
	int leader = tc_cluster_wait_leader(c, WAIT_MS);
	if (leader < 0)
		tc_cluster_dump_logs(c, 30);
	ck_assert_msg(leader >= 0, "no leader within %d ms", WAIT_MS);
	return leader;
}

/* Once every replica has applied all the leader has, none holds urn. */
static void assert_absent_everywhere(tc_cluster *c, const char *urn)
{
	uint64_t target = leader_applied(c, leader_of(c));
	assert_code(tc_cluster_wait_all_applied(c, target, WAIT_MS), SNIPE_OK);
	for (int i = 0; i < tc_cluster_size(c); i++) {
		rcds_client *cl = tc_cluster_client(c, i, tc_cluster_admin_key(c));
		assert_not_found(cl, urn);
		rcds_client_close(cl);
	}
}

static snipe_key *new_key(void)
{
	snipe_key *k = NULL;
	ck_assert_int_eq(snipe_key_generate(&k), SNIPE_OK);
	return k;
}

static void key_urn(const snipe_key *k, char urn[SNIPE_URN_MAX])
{
	uint8_t id[SNIPE_KEYID_BYTES];
	char hex[SNIPE_KEYID_HEX];
	snipe_keyid(snipe_key_public(k), id);
	snipe_keyid_hex(id, hex);
	snprintf(urn, SNIPE_URN_MAX, "urn:snipe:key:%s", hex);
}

/* --------------------------------------------------------- raw requests */

/* Sends bytes on a fresh REQ socket and decodes the Reply; aborts the test if none
 * comes within RAW_TIMEOUT_MS or it does not decode. */
static Snipe__Reply *raw_call(const char *endpoint, const void *buf, size_t len)
{
	int tmo = RAW_TIMEOUT_MS;
	int s = nn_socket(AF_SP, NN_REQ);
	ck_assert_int_ge(s, 0);
	ck_assert_int_eq(nn_setsockopt(s, NN_SOL_SOCKET, NN_RCVTIMEO, &tmo, sizeof(tmo)), 0);
	ck_assert_int_eq(nn_setsockopt(s, NN_SOL_SOCKET, NN_SNDTIMEO, &tmo, sizeof(tmo)), 0);
	ck_assert_int_ge(nn_connect(s, endpoint), 0);
	ck_assert_int_eq(nn_send(s, len > 0 ? buf : "", len, 0), (int)len);
	void *msg = NULL;
	int n = nn_recv(s, &msg, NN_MSG, 0);
	ck_assert_msg(n >= 0, "no reply from %s: %s", endpoint, nn_strerror(nn_errno()));
	Snipe__Reply *r = snipe__reply__unpack(NULL, (size_t)n, msg);
	nn_freemsg(msg);
	nn_close(s);
	ck_assert_msg(r != NULL, "the reply from %s does not decode (%d bytes)", endpoint, n);
	return r;
}

/* A Request packed and sealed by k; *out is malloc'd. */
static uint8_t *seal_request(const snipe_key *k, const Snipe__Request *req, size_t *len)
{
	size_t blen = snipe__request__get_packed_size(req);
	uint8_t *body = malloc(blen), *env = NULL;
	ck_assert_ptr_nonnull(body);
	snipe__request__pack(req, body);
	ck_assert_int_eq(snipe_env_seal(k, SNIPE_MSG_CATALOG_REQUEST, body, blen, &env, len),
	                 SNIPE_OK);
	free(body);
	return env;
}

/* A hand-made write of one assertion: signed by author over (urn, attr, value),
 * tampered by `tamper` (may be NULL) after signing, sent in an envelope by sender.
 * The reply's code, and its index in *index. A replica that opened the envelope
 * echoes the request id; one that refused the envelope cannot know it and sends none
 * (EDECODE, EUNKNOWNSIGNER and the other envelope codes). */
static int raw_write(const char *endpoint, const snipe_key *sender, const snipe_key *author,
                     const char *urn, const char *attr, const char *value,
                     void (*tamper)(uint8_t *content, size_t len, const char *value),
                     uint64_t *index)
{
	uint8_t *content = NULL, sig[SNIPE_SIG_BYTES], id[16];
	size_t clen = 0;
	ck_assert_int_eq(sni_assertion_sign(author, urn, attr, value, strlen(value), 0, &content,
	                                    &clen, sig),
	                 SNIPE_OK);
	if (tamper != NULL)
		tamper(content, clen, value);

	Snipe__Assertion a = SNIPE__ASSERTION__INIT;
	a.content = (ProtobufCBinaryData){clen, content};
	a.author = (ProtobufCBinaryData){SNIPE_PK_BYTES, (uint8_t *)snipe_key_public(author)};
	a.signature = (ProtobufCBinaryData){SNIPE_SIG_BYTES, sig};
	Snipe__PutItem item = SNIPE__PUT_ITEM__INIT;
	item.assertion = &a;
	Snipe__PutItem *items[] = {&item};
	Snipe__WriteRequest w = SNIPE__WRITE_REQUEST__INIT;
	w.puts = items;
	w.n_puts = 1;
	Snipe__Request req = SNIPE__REQUEST__INIT;
	randombytes_buf(id, sizeof(id));
	req.id = (ProtobufCBinaryData){sizeof(id), id};
	req.op_case = SNIPE__REQUEST__OP_WRITE;
	req.write = &w;

	size_t len = 0;
	uint8_t *env = seal_request(sender, &req, &len);
	Snipe__Reply *r = raw_call(endpoint, env, len);
	if (r->code == SNIPE_EUNKNOWNSIGNER) {
		ck_assert_uint_eq(r->id.len, 0);
	} else {
		ck_assert_uint_eq(r->id.len, sizeof(id));
		ck_assert(memcmp(r->id.data, id, sizeof(id)) == 0);
	}
	int code = r->code;
	*index = r->index;
	snipe__reply__free_unpacked(r, NULL);
	free(env);
	free(content);
	return code;
}

/* A get of urn sent by hand with the given min_index; the Reply, to free. */
static Snipe__Reply *raw_get(const char *endpoint, const snipe_key *k, const char *urn,
                             uint64_t min_index)
{
	uint8_t id[16];
	Snipe__GetRequest get = SNIPE__GET_REQUEST__INIT;
	Snipe__Request req = SNIPE__REQUEST__INIT;
	randombytes_buf(id, sizeof(id));
	req.id = (ProtobufCBinaryData){sizeof(id), id};
	req.op_case = SNIPE__REQUEST__OP_GET;
	get.urn = (char *)urn;
	get.min_index = min_index;
	req.get = &get;
	size_t len = 0;
	uint8_t *env = seal_request(k, &req, &len);
	Snipe__Reply *r = raw_call(endpoint, env, len);
	free(env);
	ck_assert_uint_eq(r->id.len, sizeof(id));
	ck_assert(memcmp(r->id.data, id, sizeof(id)) == 0);
	return r;
}

/* Flips one bit of the value inside the signed content. */
static void flip_value_byte(uint8_t *content, size_t len, const char *value)
{
	uint8_t *p = memmem(content, len, value, strlen(value));
	ck_assert_ptr_nonnull(p);
	p[0] ^= 0x01;
}

/* A status request sealed by k, as a valid message to cut short. */
static uint8_t *status_request(const snipe_key *k, size_t *len)
{
	uint8_t id[16];
	Snipe__StatusRequest sr = SNIPE__STATUS_REQUEST__INIT;
	Snipe__Request req = SNIPE__REQUEST__INIT;
	randombytes_buf(id, sizeof(id));
	req.id = (ProtobufCBinaryData){sizeof(id), id};
	req.op_case = SNIPE__REQUEST__OP_STATUS;
	req.status = &sr;
	return seal_request(k, &req, len);
}

/* Sends bytes to a replica; the reply must be EDECODE, with no request id. */
static void assert_edecode(const char *endpoint, const void *buf, size_t len,
                           const char *what)
{
	Snipe__Reply *r = raw_call(endpoint, buf, len);
	ck_assert_msg(r->code == SNIPE_EDECODE, "%s to %s: got %s (%d), want EDECODE", what,
	              endpoint, snipe_errname(r->code), r->code);
	ck_assert_uint_eq(r->id.len, 0);
	ck_assert_uint_eq(r->n_assertions, 0);
	snipe__reply__free_unpacked(r, NULL);
}

/* ------------------------------------------------------------- replication */

START_TEST(test_write_on_leader_reads_same_on_every_replica)
{
	static const char urn[] = "urn:snipe:data:replicated";
	tc_cluster *c = tc_cluster_start(3);
	const snipe_key *admin = tc_cluster_admin_key(c);
	const uint8_t *admin_pk = snipe_key_public(admin);
	int leader = leader_of(c);

	rcds_client *w = tc_cluster_client(c, leader, admin);
	uint64_t v1 = put_ok(w, urn, "color", "blue");
	uint64_t v2 = put_ok(w, urn, "shape", "round");
	ck_assert_uint_gt(v2, v1);
	ck_assert_uint_eq(rcds_client_index(w), v2);

	for (int i = 0; i < tc_cluster_size(c); i++) {
		assert_code(tc_cluster_wait_applied(c, i, v2, WAIT_MS), SNIPE_OK);
		rcds_client *r = tc_cluster_client(c, i, admin);
		rcds_list l;
		char err[256] = "";
		int rc = rcds_get(r, urn, &l, err, sizeof(err));
		ck_assert_msg(rc == SNIPE_OK, "replica %d: %s (%s)", i + 1, snipe_errname(rc), err);
		ck_assert_uint_eq(l.count, 2);
		assert_item(&l.items[0], urn, "color", "blue", v1, admin_pk);
		assert_item(&l.items[1], urn, "shape", "round", v2, admin_pk);
		ck_assert_uint_ge(l.index, v2);
		rcds_list_free(&l);
		rcds_client_close(r);
	}

	/* Overwriting gives a new version everywhere. */
	uint64_t v3 = put_ok(w, urn, "color", "green");
	ck_assert_uint_gt(v3, v2);
	for (int i = 0; i < tc_cluster_size(c); i++) {
		assert_code(tc_cluster_wait_applied(c, i, v3, WAIT_MS), SNIPE_OK);
		rcds_client *r = tc_cluster_client(c, i, admin);
		rcds_list l;
		assert_code(rcds_get(r, urn, &l, NULL, 0), SNIPE_OK);
		ck_assert_uint_eq(l.count, 2);
		assert_item(&l.items[0], urn, "color", "green", v3, admin_pk);
		assert_item(&l.items[1], urn, "shape", "round", v2, admin_pk);
		rcds_list_free(&l);
		rcds_client_close(r);
	}
	rcds_client_close(w);
	stop_cluster(c);
}
END_TEST

START_TEST(test_read_with_min_index_waits_for_the_write)
{
	tc_cluster *c = tc_cluster_start(3);
	const snipe_key *admin = tc_cluster_admin_key(c);
	int leader = leader_of(c);
	rcds_client *w = tc_cluster_client(c, leader, admin);

	/* Straight after the leader acknowledges, a follower has usually not yet applied
	 * the write; asked with the write's index, it waits for it before answering. */
	for (int n = 0; n < 20; n++) {
		char urn[64], value[32];
		snprintf(urn, sizeof(urn), "urn:snipe:data:ryw/%d", n);
		snprintf(value, sizeof(value), "value-%d", n);
		uint64_t v = put_ok(w, urn, "v", value);
		for (int i = 0; i < tc_cluster_size(c); i++) {
			Snipe__Reply *r = raw_get(tc_cluster_endpoint(c, i), admin, urn, v);
			assert_code(r->code, SNIPE_OK);
			ck_assert_uint_ge(r->index, v);
			ck_assert_uint_eq(r->n_assertions, 1);
			ck_assert_uint_eq(r->assertions[0]->version, v);
			snipe__reply__free_unpacked(r, NULL);
		}
	}

	/* An index nobody has reached: the read waits its time (2 s) and gives up. */
	int f = other_replica(c, leader, -1);
	uint64_t applied = leader_applied(c, leader);
	uint64_t t0 = mono_ms();
	Snipe__Reply *r = raw_get(tc_cluster_endpoint(c, f), admin, "urn:snipe:data:ryw/0",
	                          applied + 1000);
	assert_code(r->code, SNIPE_ETIMEDOUT);
	ck_assert_uint_eq(r->n_assertions, 0);
	ck_assert_uint_ge(mono_ms() - t0, 1900);
	snipe__reply__free_unpacked(r, NULL);
	rcds_client_close(w);
	stop_cluster(c);
}
END_TEST

START_TEST(test_leader_reads_see_another_clients_writes)
{
	tc_cluster *c = tc_cluster_start(3);
	const snipe_key *admin = tc_cluster_admin_key(c);
	int leader = leader_of(c);
	rcds_client *w = tc_cluster_client(c, leader, admin);

	/* A fresh client (index 0) reading from the leader only sees what another client
	 * just wrote, without waiting for any index. */
	for (int n = 0; n < 10; n++) {
		char urn[64], value[32];
		snprintf(urn, sizeof(urn), "urn:snipe:data:leader-read/%d", n);
		snprintf(value, sizeof(value), "value-%d", n);
		uint64_t v = put_ok(w, urn, "v", value);
		rcds_client *r = tc_cluster_client(c, -1, admin);
		rcds_client_set_leader_reads(r, true);
		assert_single(r, urn, "v", value, v, snipe_key_public(admin));
		rcds_client_close(r);
	}

	/* A follower refuses a leader-only read. */
	int f = other_replica(c, leader, -1);
	uint8_t id[16];
	Snipe__GetRequest get = SNIPE__GET_REQUEST__INIT;
	Snipe__Request req = SNIPE__REQUEST__INIT;
	randombytes_buf(id, sizeof(id));
	req.id = (ProtobufCBinaryData){sizeof(id), id};
	req.op_case = SNIPE__REQUEST__OP_GET;
	get.urn = (char *)"urn:snipe:data:leader-read/0";
	get.leader_only = true;
	req.get = &get;
	size_t len = 0;
	uint8_t *env = seal_request(admin, &req, &len);
	Snipe__Reply *r = raw_call(tc_cluster_endpoint(c, f), env, len);
	assert_code(r->code, SNIPE_ENOTLEADER);
	ck_assert_uint_eq(r->n_assertions, 0);
	ck_assert_ptr_nonnull(r->status);
	ck_assert_uint_eq(r->status->leader_id, (uint64_t)leader + 1);
	snipe__reply__free_unpacked(r, NULL);
	free(env);
	rcds_client_close(w);
	stop_cluster(c);
}
END_TEST

START_TEST(test_write_fails_over_from_followers_to_leader)
{
	static const char urn[] = "urn:snipe:data:failover";
	tc_cluster *c = tc_cluster_start(3);
	const snipe_key *admin = tc_cluster_admin_key(c);
	int leader = leader_of(c);
	int f1 = other_replica(c, leader, -1), f2 = other_replica(c, leader, f1);

	/* Followers listed first. A client starts at a random one of its endpoints, so
	 * over ten clients nearly all start at a follower, which answers ENOTLEADER;
	 * every write must still succeed, and be read back by the same client. */
	char endpoints[256];
	snprintf(endpoints, sizeof(endpoints), "%s,%s,%s", tc_cluster_endpoint(c, f1),
	         tc_cluster_endpoint(c, f2), tc_cluster_endpoint(c, leader));
	for (int n = 0; n < 10; n++) {
		rcds_client *cl = NULL;
		char value[16];
		snprintf(value, sizeof(value), "try-%d", n);
		assert_code(rcds_client_open(endpoints, admin, &cl, NULL, 0), SNIPE_OK);
		uint64_t v = put_ok(cl, urn, "v", value);
		assert_single(cl, urn, "v", value, v, snipe_key_public(admin));
		rcds_client_close(cl);
	}

	/* Followers alone cannot take a write: each says ENOTLEADER until the time is up. */
	snprintf(endpoints, sizeof(endpoints), "%s,%s", tc_cluster_endpoint(c, f1),
	         tc_cluster_endpoint(c, f2));
	rcds_client *only = NULL;
	assert_code(rcds_client_open(endpoints, admin, &only, NULL, 0), SNIPE_OK);
	rcds_client_set_timeout(only, 600);
	uint64_t before = leader_applied(c, leader);
	assert_code(put(only, urn, "v", "nowhere", NULL), SNIPE_EUNAVAIL);
	ck_assert_uint_eq(leader_applied(c, leader), before);
	rcds_client_close(only);
	stop_cluster(c);
}
END_TEST

/* ------------------------------------------------------------- leader loss */

#define WRITERS 3
#define WRITES_PER_WRITER 200
#define WRITER_TIMEOUT_MS 1000
#define WRITE_GIVE_UP_MS 10000

struct writer {
	pthread_t thread;
	int no;
	const char *endpoints;
	const snipe_key *key;
	atomic_int *progress;
	uint64_t acked[WRITES_PER_WRITER]; /* the version rcds_write returned; 0: never acked */
	int attempts[WRITES_PER_WRITER];
	int unexpected; /* a code other than OK, ETIMEDOUT, EUNAVAIL, ENOTLEADER */
	int last_unexpected;
	int retries;
};

static void writer_value(int w, int n, char urn[64], char value[32])
{
	snprintf(urn, 64, "urn:snipe:data:stream/w%d/n%03d", w, n);
	snprintf(value, 32, "w%d-n%d", w, n);
}

static void *writer_main(void *arg)
{
	struct writer *wr = arg;
	rcds_client *cl = NULL;
	if (rcds_client_open(wr->endpoints, wr->key, &cl, NULL, 0) != SNIPE_OK) {
		wr->unexpected++;
		return NULL;
	}
	rcds_client_set_timeout(cl, WRITER_TIMEOUT_MS);
	for (int n = 0; n < WRITES_PER_WRITER; n++) {
		char urn[64], value[32];
		writer_value(wr->no, n, urn, value);
		rcds_batch *b = NULL;
		if (rcds_batch_new(&b) != SNIPE_OK ||
		    rcds_batch_put(b, urn, "v", value, strlen(value), 0) != SNIPE_OK) {
			rcds_batch_free(b);
			wr->unexpected++;
			break;
		}
		uint64_t give_up = mono_ms() + WRITE_GIVE_UP_MS;
		for (;;) {
			uint64_t index = 0;
			int rc = rcds_write(cl, b, &index, NULL, 0);
			wr->attempts[n]++;
			if (rc == SNIPE_OK) {
				wr->acked[n] = index;
				break;
			}
			if (rc != SNIPE_ETIMEDOUT && rc != SNIPE_EUNAVAIL && rc != SNIPE_ENOTLEADER) {
				wr->unexpected++;
				wr->last_unexpected = rc;
			}
			wr->retries++;
			if (mono_ms() >= give_up)
				break;
			sleep_ms(10);
		}
		rcds_batch_free(b);
		atomic_fetch_add(wr->progress, 1);
		if (wr->acked[n] == 0)
			break; /* the catalog is gone; the test fails on this write */
	}
	rcds_client_close(cl);
	return NULL;
}

/* The stream's assertions on replica i must be exactly the acknowledged writes. */
static void assert_stream_on(tc_cluster *c, int i, const struct writer *wr, rcds_list *out)
{
	rcds_client *cl = tc_cluster_client(c, i, tc_cluster_admin_key(c));
	rcds_list l = query_all(cl, "urn:snipe:data:stream/");
	rcds_client_close(cl);
	ck_assert_msg(l.count == WRITERS * WRITES_PER_WRITER, "replica %d holds %zu of %d writes",
	              i + 1, l.count, WRITERS * WRITES_PER_WRITER);
	/* (urn, attr) order: w0/n000 ... w0/n199, w1/n000 ... */
	for (int w = 0; w < WRITERS; w++)
		for (int n = 0; n < WRITES_PER_WRITER; n++) {
			const rcds_assertion *a = &l.items[w * WRITES_PER_WRITER + n];
			char urn[64], value[32];
			writer_value(w, n, urn, value);
			ck_assert_str_eq(a->urn, urn);
			ck_assert_str_eq(a->attr, "v");
			ck_assert_str_eq((const char *)a->value, value);
			/* A write retried under a new request id may apply twice (same value);
			 * the last application holds, at or after the acknowledged one. */
			if (wr[w].attempts[n] == 1)
				ck_assert_uint_eq(a->version, wr[w].acked[n]);
			else
				ck_assert_uint_ge(a->version, wr[w].acked[n]);
		}
	*out = l;
}

START_TEST(test_acknowledged_writes_survive_leader_kill)
{
	tc_cluster *c = tc_cluster_start(3);
	const snipe_key *admin = tc_cluster_admin_key(c);
	int leader = leader_of(c);

	static struct writer wr[WRITERS];
	atomic_int progress = 0;
	memset(wr, 0, sizeof(wr));
	for (int w = 0; w < WRITERS; w++) {
		wr[w].no = w;
		wr[w].endpoints = tc_cluster_endpoints(c);
		wr[w].key = admin;
		wr[w].progress = &progress;
		ck_assert_int_eq(pthread_create(&wr[w].thread, NULL, writer_main, &wr[w]), 0);
	}
	/* Kill the leader a quarter of the way through. */
	uint64_t deadline = mono_ms() + 30000;
	while (atomic_load(&progress) < WRITERS * WRITES_PER_WRITER / 4 && mono_ms() < deadline)
		sleep_ms(1);
	int at_kill = atomic_load(&progress);
	tc_cluster_kill(c, leader);
	for (int w = 0; w < WRITERS; w++)
		ck_assert_int_eq(pthread_join(wr[w].thread, NULL), 0);
	ck_assert_msg(at_kill < WRITERS * WRITES_PER_WRITER, "the writes ended before the kill");

	int retries = 0;
	uint64_t max_acked = 0;
	for (int w = 0; w < WRITERS; w++) {
		ck_assert_msg(wr[w].unexpected == 0, "writer %d: %d unexpected codes, last %s", w,
		              wr[w].unexpected, snipe_errname(wr[w].last_unexpected));
		for (int n = 0; n < WRITES_PER_WRITER; n++) {
			ck_assert_msg(wr[w].acked[n] > 0,
			              "writer %d write %d never acknowledged; running: %s", w, n,
			              running_list(c));
			if (wr[w].acked[n] > max_acked)
				max_acked = wr[w].acked[n];
		}
		retries += wr[w].retries;
	}
	fprintf(stderr, "leader kill: killed replica %d after %d writes; %d retries\n",
	        leader + 1, at_kill, retries);

	/* A new leader among the survivors; new writes succeed. */
	int next = leader_of(c);
	ck_assert_int_ne(next, leader);
	rcds_client *cl = tc_cluster_client(c, -1, admin);
	uint64_t last = put_ok(cl, "urn:snipe:data:after-kill", "v", "still-writable");
	rcds_client_close(cl);
	ck_assert_uint_gt(last, max_acked);

	rcds_list first = {0};
	for (int i = 0; i < tc_cluster_size(c); i++) {
		if (i == leader)
			continue;
		assert_code(tc_cluster_wait_applied(c, i, last, WAIT_MS), SNIPE_OK);
		rcds_list l;
		assert_stream_on(c, i, wr, &l);
		if (first.items == NULL)
			first = l;
		else {
			assert_same_lists(&first, &l);
			rcds_list_free(&l);
		}
	}

	/* The killed replica comes back and catches up to the leader. */
	tc_cluster_restart(c, leader);
	next = leader_of(c);
	uint64_t target = leader_applied(c, next);
	ck_assert_uint_ge(target, last);
	assert_code(tc_cluster_wait_applied(c, leader, target, WAIT_MS), SNIPE_OK);
	rcds_client *back = tc_cluster_client(c, leader, admin);
	assert_single(back, "urn:snipe:data:after-kill", "v", "still-writable", last,
	              snipe_key_public(admin));
	rcds_client_close(back);
	rcds_list l;
	assert_stream_on(c, leader, wr, &l);
	assert_same_lists(&first, &l);
	rcds_list_free(&l);
	rcds_list_free(&first);
	stop_cluster(c);
}
END_TEST

START_TEST(test_killed_follower_leaves_the_others_serving)
{
	static const char urn[] = "urn:snipe:data:follower-kill";
	tc_cluster *c = tc_cluster_start(3);
	const snipe_key *admin = tc_cluster_admin_key(c);
	int leader = leader_of(c);
	int dead = other_replica(c, leader, -1), alive = other_replica(c, leader, dead);
	rcds_client *cl = tc_cluster_client(c, leader, admin);
	put_ok(cl, urn, "v", "before");

	/* For a second the leader keeps sending entries and heartbeats towards the dead
	 * follower's closed connection; the other two go on committing. */
	tc_cluster_kill(c, dead);
	uint64_t end = mono_ms() + 1000, last = 0;
	char value[32];
	for (int n = 0; mono_ms() < end; n++) {
		snprintf(value, sizeof(value), "during-%d", n);
		int rc = put(cl, urn, "v", value, &last);
		ck_assert_msg(rc == SNIPE_OK, "write %d after the kill: %s; running: %s", n,
		              snipe_errname(rc), running_list(c));
		sleep_ms(20);
	}
	ck_assert_int_eq(leader_of(c), leader);
	ck_assert(tc_cluster_running(c, leader));
	ck_assert(tc_cluster_running(c, alive));

	tc_cluster_restart(c, dead);
	assert_code(tc_cluster_wait_applied(c, dead, last, WAIT_MS), SNIPE_OK);
	rcds_client *back = tc_cluster_client(c, dead, admin);
	assert_single(back, urn, "v", value, last, snipe_key_public(admin));
	rcds_client_close(back);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* ---------------------------------------------------------------- snapshots */

/* rcds/consensus.c keeps 1024 entries behind each snapshot: a follower further behind
 * than that (with --snapshot-threshold 64) can only be brought back by a snapshot. */
#define SNAP_TRAILING 1024
#define SNAP_WRITES (SNAP_TRAILING + 256)
#define SNAP_WRITERS 1 /* one write in flight: one entry each (the leader proposes the
                        * writes that arrive together as one entry) */

struct snap_writer {
	pthread_t thread;
	rcds_client *cl;
	int first, count, failed, last_error;
};

static void *snap_writer_main(void *arg)
{
	struct snap_writer *sw = arg;
	for (int n = sw->first; n < sw->first + sw->count; n++) {
		char urn[64], value[32];
		snprintf(urn, sizeof(urn), "urn:snipe:data:snap/%04d", n);
		snprintf(value, sizeof(value), "value-%d", n);
		uint64_t index = 0;
		int rc = put(sw->cl, urn, "v", value, &index);
		if (rc != SNIPE_OK) {
			sw->failed++;
			sw->last_error = rc;
			break;
		}
	}
	return NULL;
}

/* SNAP_WRITES writes, one Raft entry each. */
static void write_snap_entries(tc_cluster *c)
{
	struct snap_writer sw[SNAP_WRITERS];
	uint64_t t0 = mono_ms();
	for (int k = 0; k < SNAP_WRITERS; k++) {
		sw[k] = (struct snap_writer){.cl = tc_cluster_client(c, -1, tc_cluster_admin_key(c)),
		                             .first = k * (SNAP_WRITES / SNAP_WRITERS),
		                             .count = SNAP_WRITES / SNAP_WRITERS};
		ck_assert_int_eq(pthread_create(&sw[k].thread, NULL, snap_writer_main, &sw[k]), 0);
	}
	for (int k = 0; k < SNAP_WRITERS; k++) {
		ck_assert_int_eq(pthread_join(sw[k].thread, NULL), 0);
		ck_assert_msg(sw[k].failed == 0, "writer %d: a write failed with %s; running: %s", k,
		              snipe_errname(sw[k].last_error), running_list(c));
		rcds_client_close(sw[k].cl);
	}
	fprintf(stderr, "snapshot: %d writes in %" PRIu64 " ms\n", SNAP_WRITES, mono_ms() - t0);
}

/* Replica i holds exactly what the leader holds, and follows the log from there. */
static void assert_caught_up(tc_cluster *c, int i, int leader)
{
	const snipe_key *admin = tc_cluster_admin_key(c);
	uint64_t target = leader_applied(c, leader);
	ck_assert_uint_ge(target, SNAP_WRITES);
	ck_assert_msg(tc_cluster_wait_applied(c, i, target, WAIT_MS) == SNIPE_OK,
	              "replica %d did not reach the leader's applied index %" PRIu64
	              " within %d ms", i + 1, target, WAIT_MS);
	ck_assert_msg(tc_cluster_log_contains(c, i, "restored snapshot"),
	              "replica %d caught up without installing a snapshot", i + 1);

	rcds_client *lc = tc_cluster_client(c, leader, admin);
	rcds_client *ic = tc_cluster_client(c, i, admin);
	rcds_list want = query_all(lc, "urn:snipe:data:snap/");
	rcds_list got = query_all(ic, "urn:snipe:data:snap/");
	ck_assert_uint_eq(want.count, SNAP_WRITES);
	assert_same_lists(&want, &got);
	rcds_list_free(&want);
	rcds_list_free(&got);

	uint64_t v = put_ok(lc, "urn:snipe:data:snap/after", "v", "after-restore");
	assert_code(tc_cluster_wait_applied(c, i, v, WAIT_MS), SNIPE_OK);
	assert_single(ic, "urn:snipe:data:snap/after", "v", "after-restore", v,
	              snipe_key_public(admin));
	rcds_client_close(lc);
	rcds_client_close(ic);
}

START_TEST(test_lagging_replica_catches_up_by_snapshot)
{
	static const char *const extra[] = {"--snapshot-threshold", "64", NULL};
	tc_cluster *c = tc_cluster_start_with(3, extra);
	int leader = leader_of(c);
	int down = other_replica(c, leader, -1);

	/* Down while the log moves on past what the leader keeps. */
	tc_cluster_kill(c, down);
	write_snap_entries(c);
	tc_cluster_restart(c, down);
	assert_caught_up(c, down, leader);
	stop_cluster(c);
}
END_TEST

/*
 * A replica that lost all its data comes back under the same id. libraft 0.15 keeps
 * the replica's old match index on the leader, so the reply to the installed snapshot
 * does not move it out of the snapshot state; only the install-snapshot timeout (1 s
 * in rcds/consensus.c, 30 s by default) lets it catch up.
 */
START_TEST(test_wiped_replica_catches_up_by_snapshot)
{
	static const char *const extra[] = {"--snapshot-threshold", "64", NULL};
	tc_cluster *c = tc_cluster_start_with(3, extra);
	int leader = leader_of(c);

	write_snap_entries(c);
	int wiped = other_replica(c, leader, -1);
	tc_cluster_wipe(c, wiped);
	tc_cluster_restart(c, wiped);
	assert_caught_up(c, wiped, leader);
	stop_cluster(c);
}
END_TEST

/* ----------------------------------------------------------------- security */

/* A key is usable as soon as its registration is acknowledged, even by a client that
 * asks the followers first (they may not have applied the registration yet). */
START_TEST(test_new_key_writes_at_once_through_lagging_followers)
{
	tc_cluster *c = tc_cluster_start(3);
	rcds_client *admin = tc_cluster_client(c, -1, tc_cluster_admin_key(c));
	int leader = leader_of(c);
	char endpoints[512] = "";
	for (int i = 0; i < 3; i++)
		if (i != leader)
			snprintf(endpoints + strlen(endpoints), sizeof(endpoints) - strlen(endpoints),
			         "%s,", tc_cluster_endpoint(c, i));
	snprintf(endpoints + strlen(endpoints), sizeof(endpoints) - strlen(endpoints), "%s",
	         tc_cluster_endpoint(c, leader));
	for (int round = 0; round < 10; round++) {
		snipe_key *k = new_key();
		char kurn[SNIPE_URN_MAX], pkhex[SNIPE_PK_HEX], urn[64], err[256] = "";
		key_urn(k, kurn);
		snipe_pk_hex(snipe_key_public(k), pkhex);
		rcds_batch *b = NULL;
		ck_assert_int_eq(rcds_batch_new(&b), SNIPE_OK);
		ck_assert_int_eq(rcds_batch_put(b, kurn, "pubkey", pkhex, strlen(pkhex), 0), SNIPE_OK);
		ck_assert_int_eq(rcds_batch_put(b, kurn, "role", "user", 4, 0), SNIPE_OK);
		assert_code(rcds_write(admin, b, NULL, NULL, 0), SNIPE_OK);
		rcds_batch_free(b);
		rcds_client *cl = NULL;
		ck_assert_int_eq(rcds_client_open(endpoints, k, &cl, err, sizeof(err)), SNIPE_OK);
		snprintf(urn, sizeof(urn), "urn:snipe:data:fresh-%d", round);
		put_ok(cl, urn, "v", "mine");
		rcds_client_close(cl);
		snipe_key_free(k);
	}
	rcds_client_close(admin);
	stop_cluster(c);
}
END_TEST

START_TEST(test_unregistered_or_revoked_key_cannot_write)
{
	static const char urn[] = "urn:snipe:data:forged/unregistered";
	tc_cluster *c = tc_cluster_start(3);
	rcds_client *admin = tc_cluster_client(c, -1, tc_cluster_admin_key(c));
	snipe_key *stranger = new_key(), *roleless = new_key(), *revoked = new_key();
	int leader = leader_of(c);

	/* The envelope's signer is in no replica's keyring: refused before anything
	 * else, reads included. */
	rcds_client *cl = tc_cluster_client(c, -1, stranger);
	assert_code(put(cl, urn, "v", "mine", NULL), SNIPE_EUNKNOWNSIGNER);
	rcds_list l;
	assert_code(rcds_get(cl, urn, &l, NULL, 0), SNIPE_EUNKNOWNSIGNER);
	rcds_client_close(cl);
	/* By hand, a write straight to the leader: the same answer. */
	uint64_t index = 0;
	assert_code(raw_write(tc_cluster_endpoint(c, leader), stranger, stranger, urn, "v", "mine",
	                      NULL, &index),
	            SNIPE_EUNKNOWNSIGNER);

	/* A key with a pubkey but no role is not registered either. */
	char kurn[SNIPE_URN_MAX], pkhex[SNIPE_PK_HEX];
	key_urn(roleless, kurn);
	snipe_pk_hex(snipe_key_public(roleless), pkhex);
	uint64_t v = put_ok(admin, kurn, "pubkey", pkhex);
	assert_code(tc_cluster_wait_all_applied(c, v, WAIT_MS), SNIPE_OK);
	cl = tc_cluster_client(c, -1, roleless);
	assert_code(put(cl, urn, "v", "mine", NULL), SNIPE_EUNKNOWNSIGNER);
	rcds_client_close(cl);

	/* A registered user whose role the admin deletes is refused from then on. */
	tc_cluster_register_key(c, revoked, "user", NULL);
	cl = tc_cluster_client(c, -1, revoked);
	put_ok(cl, "urn:snipe:data:forged/before-revocation", "v", "fine");
	key_urn(revoked, kurn);
	rcds_batch *b = NULL;
	ck_assert_int_eq(rcds_batch_new(&b), SNIPE_OK);
	ck_assert_int_eq(rcds_batch_delete(b, kurn, "role"), SNIPE_OK);
	assert_code(rcds_write(admin, b, &v, NULL, 0), SNIPE_OK);
	rcds_batch_free(b);
	assert_code(tc_cluster_wait_all_applied(c, v, WAIT_MS), SNIPE_OK);
	assert_code(put(cl, urn, "v", "mine", NULL), SNIPE_EUNKNOWNSIGNER);
	rcds_client_close(cl);

	assert_absent_everywhere(c, urn);
	rcds_client_close(admin);
	snipe_key_free(stranger);
	snipe_key_free(roleless);
	snipe_key_free(revoked);
	stop_cluster(c);
}
END_TEST

START_TEST(test_altered_assertion_is_rejected_and_not_stored)
{
	static const char genuine[] = "urn:snipe:data:forged/genuine";
	static const char altered[] = "urn:snipe:data:forged/altered";
	static const char stolen[] = "urn:snipe:data:forged/stolen";
	tc_cluster *c = tc_cluster_start(3);
	snipe_key *user = new_key(), *other = new_key();
	tc_cluster_register_key(c, user, "user", NULL);
	tc_cluster_register_key(c, other, "user", NULL);
	int leader = leader_of(c);
	const char *ep = tc_cluster_endpoint(c, leader);

	/* The hand-made request is otherwise right: untouched, it is stored. */
	uint64_t v = 0, none = 0;
	assert_code(raw_write(ep, user, user, genuine, "v", "honest", NULL, &v), SNIPE_OK);
	ck_assert_uint_gt(v, 0);
	/* The value changed after signing. */
	assert_code(raw_write(ep, user, user, altered, "v", "honest", flip_value_byte, &none),
	            SNIPE_EBADSIG);
	/* A genuine assertion by another key, sent as one's own. */
	assert_code(raw_write(ep, user, other, stolen, "v", "honest", NULL, &none), SNIPE_EDENIED);
	ck_assert_uint_eq(none, 0);

	assert_absent_everywhere(c, altered);
	assert_absent_everywhere(c, stolen);
	for (int i = 0; i < tc_cluster_size(c); i++) {
		rcds_client *r = tc_cluster_client(c, i, tc_cluster_admin_key(c));
		assert_single(r, genuine, "v", "honest", v, snipe_key_public(user));
		rcds_client_close(r);
	}
	snipe_key_free(user);
	snipe_key_free(other);
	stop_cluster(c);
}
END_TEST

START_TEST(test_malformed_requests_get_edecode_and_replica_keeps_serving)
{
	static const char urn[] = "urn:snipe:data:after-garbage";
	tc_cluster *c = tc_cluster_start(3);
	const snipe_key *admin = tc_cluster_admin_key(c);
	int leader = leader_of(c);

	uint8_t noise[200];
	uint32_t x = 0x2545f491u; /* fixed seed: the same bytes every run */
	for (size_t k = 0; k < sizeof(noise); k++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		noise[k] = (uint8_t)x;
	}
	size_t len = 0;
	uint8_t *valid = status_request(admin, &len);
	uint8_t *garbage_body = NULL;
	size_t glen = 0;
	ck_assert_int_eq(snipe_env_seal(admin, SNIPE_MSG_CATALOG_REQUEST, noise, sizeof(noise),
	                                &garbage_body, &glen),
	                 SNIPE_OK);

	for (int i = 0; i < tc_cluster_size(c); i++) {
		const char *ep = tc_cluster_endpoint(c, i);
		assert_edecode(ep, noise, sizeof(noise), "random bytes");
		assert_edecode(ep, valid, len / 2, "half an envelope");
		assert_edecode(ep, valid, len - 1, "an envelope less its last byte");
		assert_edecode(ep, "", 0, "an empty message");
		assert_edecode(ep, garbage_body, glen, "a signed envelope holding no request");
		/* The untruncated envelope still works on the same replica. */
		Snipe__Reply *r = raw_call(ep, valid, len);
		assert_code(r->code, SNIPE_OK);
		ck_assert_ptr_nonnull(r->status);
		ck_assert_uint_eq(r->status->id, (uint64_t)i + 1);
		snipe__reply__free_unpacked(r, NULL);
	}

	/* Every replica still serves: a write through the leader, reads from each. */
	rcds_client *w = tc_cluster_client(c, leader, admin);
	uint64_t v = put_ok(w, urn, "v", "fine");
	rcds_client_close(w);
	for (int i = 0; i < tc_cluster_size(c); i++) {
		assert_code(tc_cluster_wait_applied(c, i, v, WAIT_MS), SNIPE_OK);
		rcds_client *r = tc_cluster_client(c, i, admin);
		assert_single(r, urn, "v", "fine", v, snipe_key_public(admin));
		rcds_client_close(r);
	}
	free(valid);
	free(garbage_body);
	stop_cluster(c);
}
END_TEST

START_TEST(test_users_write_only_what_they_own)
{
	static const char x[] = "urn:snipe:data:x";
	static const char y[] = "urn:snipe:data:y";
	tc_cluster *c = tc_cluster_start(3);
	snipe_key *u1 = new_key(), *u2 = new_key();
	tc_cluster_register_key(c, u1, "user", NULL);
	tc_cluster_register_key(c, u2, "user", NULL);
	rcds_client *c1 = tc_cluster_client(c, -1, u1);
	rcds_client *c2 = tc_cluster_client(c, -1, u2);
	rcds_client *admin = tc_cluster_client(c, -1, tc_cluster_admin_key(c));

	/* u1 writes x first and owns it; u2 may not touch it. (Reads are by the
	 * writer's own client, or after every replica has applied the write: another
	 * client's read may be served by a replica that has not yet.) */
	uint64_t v1 = put_ok(c1, x, "v", "by-u1");
	assert_code(put(c2, x, "v", "by-u2", NULL), SNIPE_EDENIED);
	assert_code(put(c2, x, "other", "by-u2", NULL), SNIPE_EDENIED);
	rcds_batch *b = NULL;
	ck_assert_int_eq(rcds_batch_new(&b), SNIPE_OK);
	ck_assert_int_eq(rcds_batch_delete(b, x, NULL), SNIPE_OK);
	assert_code(rcds_write(c2, b, NULL, NULL, 0), SNIPE_EDENIED);
	rcds_batch_free(b);
	assert_code(tc_cluster_wait_all_applied(c, v1, WAIT_MS), SNIPE_OK);
	assert_single(c2, x, "v", "by-u1", v1, snipe_key_public(u1));

	/* Its own URNs u2 may write; u1 may rewrite x. */
	uint64_t vy = put_ok(c2, y, "v", "by-u2");
	assert_single(c2, y, "v", "by-u2", vy, snipe_key_public(u2));
	uint64_t v2 = put_ok(c1, x, "v", "by-u1-again");
	assert_single(c1, x, "v", "by-u1-again", v2, snipe_key_public(u1));

	/* A user may not register keys, not even to promote itself. */
	char kurn[SNIPE_URN_MAX];
	key_urn(u1, kurn);
	assert_code(put(c1, kurn, "role", "admin", NULL), SNIPE_EDENIED);
	/* The admin may write anything, even what another owns. */
	uint64_t v3 = put_ok(admin, x, "v", "by-admin");
	assert_single(admin, x, "v", "by-admin", v3, snipe_key_public(tc_cluster_admin_key(c)));
	/* ... and u1 still owns x. */
	uint64_t v4 = put_ok(c1, x, "v", "by-u1-last");
	ck_assert_uint_gt(v4, v3);
	assert_code(put(c2, x, "v", "by-u2", NULL), SNIPE_EDENIED);
	assert_code(tc_cluster_wait_all_applied(c, v4, WAIT_MS), SNIPE_OK);
	for (int i = 0; i < tc_cluster_size(c); i++) {
		rcds_client *r = tc_cluster_client(c, i, tc_cluster_admin_key(c));
		assert_single(r, x, "v", "by-u1-last", v4, snipe_key_public(u1));
		assert_single(r, y, "v", "by-u2", vy, snipe_key_public(u2));
		rcds_client_close(r);
	}

	rcds_client_close(c1);
	rcds_client_close(c2);
	rcds_client_close(admin);
	snipe_key_free(u1);
	snipe_key_free(u2);
	stop_cluster(c);
}
END_TEST

/* ------------------------------------------------------------ compare-and-set */

START_TEST(test_compare_and_set)
{
	static const char urn[] = "urn:snipe:data:cas";
	tc_cluster *c = tc_cluster_start(3);
	const snipe_key *admin = tc_cluster_admin_key(c);
	rcds_client *cl = tc_cluster_client(c, -1, admin);
	uint64_t v1 = 0, v2 = 0, none = 0;

	assert_code(put_if(cl, urn, "counter", "1", 0, &v1), SNIPE_OK);
	ck_assert_uint_gt(v1, 0);
	assert_code(put_if(cl, urn, "counter", "x", 0, &none), SNIPE_ECONFLICT);
	assert_code(put_if(cl, urn, "counter", "2", v1, &v2), SNIPE_OK);
	ck_assert_uint_gt(v2, v1);
	assert_code(put_if(cl, urn, "counter", "3", v1, &none), SNIPE_ECONFLICT);
	assert_code(put_if(cl, urn, "counter", "3", v2 + 1000, &none), SNIPE_ECONFLICT);
	ck_assert_uint_eq(none, 0);
	assert_single(cl, urn, "counter", "2", v2, snipe_key_public(admin));

	/* A batch applies whole or not at all: a failed check drops its other puts. */
	rcds_batch *b = NULL;
	ck_assert_int_eq(rcds_batch_new(&b), SNIPE_OK);
	ck_assert_int_eq(rcds_batch_put(b, urn, "note", "lost", 4, 0), SNIPE_OK);
	ck_assert_int_eq(rcds_batch_put_if(b, urn, "counter", "3", 1, 0, v1), SNIPE_OK);
	assert_code(rcds_write(cl, b, NULL, NULL, 0), SNIPE_ECONFLICT);
	rcds_batch_free(b);
	assert_single(cl, urn, "counter", "2", v2, snipe_key_public(admin));

	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* Writes in flight together share a Raft entry; each still gets its own result. */
#define SHARED_WRITERS 8
#define SHARED_ROUNDS 100

struct shared_writer {
	pthread_t thread;
	rcds_client *cl;
	int id, wrong;
	char what[160];
};

static void *shared_writer_main(void *arg)
{
	struct shared_writer *sw = arg;
	for (int n = 0; n < SHARED_ROUNDS; n++) {
		char urn[64];
		snprintf(urn, sizeof(urn), "urn:snipe:data:shared/%d/%03d", sw->id, n);
		uint64_t v = 0, none = 0;
		int first = put_if(sw->cl, urn, "c", "1", 0, &v);
		int second = put_if(sw->cl, urn, "c", "2", 0, &none);
		if (first != SNIPE_OK || v == 0 || second != SNIPE_ECONFLICT || none != 0) {
			if (sw->wrong++ == 0)
				snprintf(sw->what, sizeof(sw->what), "%s: %s then %s", urn,
				         snipe_errname(first), snipe_errname(second));
		}
	}
	return NULL;
}

START_TEST(test_concurrent_writes_share_entries_with_their_own_results)
{
	tc_cluster *c = tc_cluster_start(3);
	const snipe_key *admin = tc_cluster_admin_key(c);
	rcds_client *cl = tc_cluster_client(c, -1, admin);
	put_ok(cl, "urn:snipe:data:shared-start", "x", "1");
	int leader = leader_of(c);
	uint64_t before = leader_applied(c, leader);
	struct shared_writer sw[SHARED_WRITERS];
	for (int k = 0; k < SHARED_WRITERS; k++) {
		sw[k] = (struct shared_writer){.cl = tc_cluster_client(c, -1, admin), .id = k};
		ck_assert_int_eq(pthread_create(&sw[k].thread, NULL, shared_writer_main, &sw[k]), 0);
	}
	for (int k = 0; k < SHARED_WRITERS; k++) {
		ck_assert_int_eq(pthread_join(sw[k].thread, NULL), 0);
		ck_assert_msg(sw[k].wrong == 0, "writer %d: %d wrong results, first %s", k,
		              sw[k].wrong, sw[k].what);
		rcds_client_close(sw[k].cl);
	}
	uint64_t entries = leader_applied(c, leader) - before;
	fprintf(stderr, "shared entries: %d writes in %" PRIu64 " entries\n",
	        2 * SHARED_WRITERS * SHARED_ROUNDS, entries);
	ck_assert_uint_lt(entries, 2 * SHARED_WRITERS * SHARED_ROUNDS);
	rcds_list l = query_all(cl, "urn:snipe:data:shared/");
	ck_assert_uint_eq(l.count, SHARED_WRITERS * SHARED_ROUNDS);
	for (size_t i = 0; i < l.count; i++) {
		ck_assert_uint_eq(l.items[i].value_len, 1);
		ck_assert_mem_eq(l.items[i].value, "1", 2);
	}
	rcds_list_free(&l);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* -------------------------------------------------------------------- suite */

static TCase *tcase(const char *name, double timeout)
{
	TCase *tc = tcase_create(name);
	tcase_set_timeout(tc, timeout);
	return tc;
}

static Suite *suite(void)
{
	Suite *s = suite_create("catalog");
	TCase *tc = tcase("replication", 120);
	tcase_add_test(tc, test_write_on_leader_reads_same_on_every_replica);
	tcase_add_test(tc, test_read_with_min_index_waits_for_the_write);
	tcase_add_test(tc, test_leader_reads_see_another_clients_writes);
	tcase_add_test(tc, test_write_fails_over_from_followers_to_leader);
	suite_add_tcase(s, tc);

	tc = tcase("faults", 180);
	tcase_add_test(tc, test_killed_follower_leaves_the_others_serving);
	tcase_add_test(tc, test_acknowledged_writes_survive_leader_kill);
	tcase_add_test(tc, test_lagging_replica_catches_up_by_snapshot);
	tcase_add_test(tc, test_wiped_replica_catches_up_by_snapshot);
	suite_add_tcase(s, tc);

	tc = tcase("security", 120);
	tcase_add_test(tc, test_new_key_writes_at_once_through_lagging_followers);
	tcase_add_test(tc, test_unregistered_or_revoked_key_cannot_write);
	tcase_add_test(tc, test_altered_assertion_is_rejected_and_not_stored);
	tcase_add_test(tc, test_malformed_requests_get_edecode_and_replica_keeps_serving);
	tcase_add_test(tc, test_users_write_only_what_they_own);
	suite_add_tcase(s, tc);

	tc = tcase("cas", 120);
	tcase_add_test(tc, test_concurrent_writes_share_entries_with_their_own_results);
	tcase_add_test(tc, test_compare_and_set);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(suite());
}
