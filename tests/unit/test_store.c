/*
 * test_store.c — the catalog's SQLite state machine (rcds/store.c): applying committed
 * commands (skip of replayed indexes, request-id deduplication, atomic batches,
 * compare-and-set, deletes, expiry), authorisation against registered keys, the
 * forward-only epoch of a process, get, query (prefix, attr=value, paging), key
 * listing, persistence, and snapshot/restore.
 */
#include <inttypes.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "entry.h"
#include "sni.h"
#include "store.h"
#include "testutil.h"

/* --------------------------------------------------------------- helpers */

#define MAXITEMS 8

static snipe_key *admin, *alice, *bob, *node1;

static void setup(void)
{
	ck_assert_int_ge(sodium_init(), 0);
	ck_assert_int_eq(snipe_key_generate(&admin), SNIPE_OK);
	ck_assert_int_eq(snipe_key_generate(&alice), SNIPE_OK);
	ck_assert_int_eq(snipe_key_generate(&bob), SNIPE_OK);
	ck_assert_int_eq(snipe_key_generate(&node1), SNIPE_OK);
}

static void teardown(void)
{
	snipe_key_free(admin);
	snipe_key_free(alice);
	snipe_key_free(bob);
	snipe_key_free(node1);
}

static rcds_store *open_store(const char *path)
{
	rcds_store *s = NULL;
	char err[256] = "";
	int rc = rcds_store_open(path, snipe_key_public(admin), &s, err, sizeof(err));
	ck_assert_msg(rc == SNIPE_OK, "open %s: %s", path, err);
	return s;
}

/* A Command built by hand, as the leader would propose it. */
typedef struct cmd {
	Snipe__Command c;
	Snipe__WriteRequest w;
	Snipe__PutItem puts[MAXITEMS];
	Snipe__PutItem *putp[MAXITEMS];
	Snipe__Assertion as[MAXITEMS];
	uint8_t *content[MAXITEMS];
	uint8_t sig[MAXITEMS][SNIPE_SIG_BYTES];
	Snipe__DeleteItem dels[MAXITEMS];
	Snipe__DeleteItem *delp[MAXITEMS];
	uint8_t id[16];
} cmd;

/* A fresh command from signer at time_ms, with a random request id. */
static cmd *cmd_new(const snipe_key *signer, uint64_t time_ms)
{
	cmd *m = calloc(1, sizeof(*m));
	ck_assert_ptr_nonnull(m);
	snipe__command__init(&m->c);
	snipe__write_request__init(&m->w);
	randombytes_buf(m->id, sizeof(m->id));
	m->c.request_id = (ProtobufCBinaryData){sizeof(m->id), m->id};
	m->c.signer = (ProtobufCBinaryData){SNIPE_PK_BYTES, (uint8_t *)snipe_key_public(signer)};
	m->c.time_ms = time_ms;
	m->c.write = &m->w;
	m->w.puts = m->putp;
	m->w.deletes = m->delp;
	return m;
}

static void cmd_free(cmd *m)
{
	for (size_t i = 0; i < m->w.n_puts; i++)
		free(m->content[i]);
	free(m);
}

/* Adds a put of (urn, attr) = value[0..len) signed by author. */
static Snipe__PutItem *put_bytes(cmd *m, const snipe_key *author, const char *urn,
                                 const char *attr, const void *value, size_t len,
                                 uint64_t expires_ms)
{
	size_t i = m->w.n_puts++;
	size_t clen = 0;
	ck_assert_uint_lt(i, MAXITEMS);
	ck_assert_int_eq(sni_assertion_sign(author, urn, attr, value, len, expires_ms,
	                                    &m->content[i], &clen, m->sig[i]),
	                 SNIPE_OK);
	snipe__assertion__init(&m->as[i]);
	m->as[i].content = (ProtobufCBinaryData){clen, m->content[i]};
	m->as[i].author = (ProtobufCBinaryData){SNIPE_PK_BYTES,
	                                        (uint8_t *)snipe_key_public(author)};
	m->as[i].signature = (ProtobufCBinaryData){SNIPE_SIG_BYTES, m->sig[i]};
	snipe__put_item__init(&m->puts[i]);
	m->puts[i].assertion = &m->as[i];
	m->putp[i] = &m->puts[i];
	return &m->puts[i];
}

/* A put signed by the command's signer. */
static Snipe__PutItem *put_by(cmd *m, const snipe_key *author, const char *urn,
                              const char *attr, const char *value)
{
	return put_bytes(m, author, urn, attr, value, strlen(value), 0);
}

static Snipe__DeleteItem *del(cmd *m, const char *urn, const char *attr)
{
	size_t i = m->w.n_deletes++;
	ck_assert_uint_lt(i, MAXITEMS);
	snipe__delete_item__init(&m->dels[i]);
	m->dels[i].urn = (char *)urn;
	m->dels[i].attr = (char *)attr;
	m->delp[i] = &m->dels[i];
	return &m->dels[i];
}

/* Applies and frees m; returns the result code. */
static int apply(rcds_store *s, uint64_t index, cmd *m, rcds_result *res)
{
	rcds_result local;
	if (res == NULL)
		res = &local;
	const Snipe__Command *one = &m->c;
	ck_assert_int_eq(rcds_store_apply(s, index, &one, 1, res), SNIPE_OK);
	cmd_free(m);
	return res->code;
}

/* One put of (urn, attr) = value by signer at index; returns the result code. */
static int put1(rcds_store *s, uint64_t index, const snipe_key *signer, const char *urn,
                const char *attr, const char *value)
{
	cmd *m = cmd_new(signer, 1000);
	put_by(m, signer, urn, attr, value);
	return apply(s, index, m, NULL);
}

/* Registers k as urn:snipe:key:<id> with role (and host, if not NULL), by the admin. */
static void register_key(rcds_store *s, uint64_t index, const snipe_key *k, const char *role,
                         const char *host)
{
	char urn[SNIPE_URN_MAX], hex[SNIPE_PK_HEX], id_hex[SNIPE_KEYID_HEX];
	uint8_t id[SNIPE_KEYID_BYTES];
	rcds_result res;

	snipe_keyid(snipe_key_public(k), id);
	snipe_keyid_hex(id, id_hex);
	snprintf(urn, sizeof(urn), "urn:snipe:key:%s", id_hex);
	snipe_pk_hex(snipe_key_public(k), hex);
	cmd *m = cmd_new(admin, 1000);
	put_by(m, admin, urn, "pubkey", hex);
	if (role != NULL)
		put_by(m, admin, urn, "role", role);
	if (host != NULL)
		put_by(m, admin, urn, "host", host);
	ck_assert_msg(apply(s, index, m, &res) == SNIPE_OK, "register: %s", res.reason);
	ck_assert(res.keys_changed);
}

static void key_urn_of(const snipe_key *k, char urn[SNIPE_URN_MAX])
{
	uint8_t id[SNIPE_KEYID_BYTES];
	char id_hex[SNIPE_KEYID_HEX];
	snipe_keyid(snipe_key_public(k), id);
	snipe_keyid_hex(id, id_hex);
	snprintf(urn, SNIPE_URN_MAX, "urn:snipe:key:%s", id_hex);
}

/* Rows copied out of the store's callbacks. */
typedef struct got {
	char urn[SNIPE_URN_MAX];
	char attr[SNI_ATTR_MAX + 1];
	char value[256];
	size_t value_len;
	uint64_t version;
	uint64_t expires_ms;
} got;

typedef struct rows {
	got r[32];
	size_t n;
} rows;

static int collect(void *arg, const rcds_row *row)
{
	rows *rs = arg;
	ck_assert_uint_lt(rs->n, 32);
	got *g = &rs->r[rs->n++];
	snprintf(g->urn, sizeof(g->urn), "%s", row->urn);
	snprintf(g->attr, sizeof(g->attr), "%s", row->attr);
	ck_assert_uint_lt(row->value_len, sizeof(g->value));
	memcpy(g->value, row->value, row->value_len);
	g->value[row->value_len] = '\0';
	g->value_len = row->value_len;
	g->version = row->version;
	g->expires_ms = row->expires_ms;
	/* every row carries its author's signature over exactly what it says */
	ck_assert_int_eq(snipe_verify(row->author, SNI_DOMAIN_ASSERTION, row->content,
	                              row->content_len, row->signature),
	                 SNIPE_OK);
	return 0;
}

static int get_rows(rcds_store *s, const char *urn, uint64_t now, rows *rs)
{
	memset(rs, 0, sizeof(*rs));
	return rcds_store_get(s, urn, now, collect, rs);
}

/* The value of (urn, attr) at now, or NULL if absent; version in *version. */
static const char *value_of(rcds_store *s, const char *urn, const char *attr, uint64_t now,
                            uint64_t *version)
{
	static rows rs;
	if (get_rows(s, urn, now, &rs) != SNIPE_OK)
		return NULL;
	for (size_t i = 0; i < rs.n; i++) {
		if (strcmp(rs.r[i].attr, attr) == 0) {
			if (version != NULL)
				*version = rs.r[i].version;
			return rs.r[i].value;
		}
	}
	return NULL;
}

/* A store where alice and bob are users and node1 is host "node1" (indexes 1-3). */
static rcds_store *populated(void)
{
	rcds_store *s = open_store(":memory:");
	register_key(s, 1, alice, "user", NULL);
	register_key(s, 2, bob, "user", NULL);
	register_key(s, 3, node1, "host", "node1");
	return s;
}

/* ------------------------------------------------------------------ apply */

START_TEST(test_new_store_has_applied_zero)
{
	rcds_store *s = open_store(":memory:");
	ck_assert_uint_eq(rcds_store_applied(s), 0);
	rows rs;
	ck_assert_int_eq(get_rows(s, "urn:snipe:data:x", 0, &rs), SNIPE_ENOTFOUND);
	rcds_store_close(s);
}
END_TEST

START_TEST(test_put_then_get_returns_row_with_version_index)
{
	rcds_store *s = populated();
	rcds_result res;
	rows rs;

	cmd *m = cmd_new(alice, 1000);
	put_by(m, alice, "urn:snipe:data:x", "color", "blue");
	ck_assert_int_eq(apply(s, 7, m, &res), SNIPE_OK);
	ck_assert_uint_eq(res.index, 7);
	ck_assert(!res.keys_changed);
	ck_assert_uint_eq(rcds_store_applied(s), 7);
	ck_assert_int_eq(get_rows(s, "urn:snipe:data:x", 1000, &rs), SNIPE_OK);
	ck_assert_uint_eq(rs.n, 1);
	ck_assert_str_eq(rs.r[0].urn, "urn:snipe:data:x");
	ck_assert_str_eq(rs.r[0].attr, "color");
	ck_assert_str_eq(rs.r[0].value, "blue");
	ck_assert_uint_eq(rs.r[0].value_len, 4);
	ck_assert_uint_eq(rs.r[0].version, 7);
	ck_assert_uint_eq(rs.r[0].expires_ms, 0);
	rcds_store_close(s);
}
END_TEST

START_TEST(test_get_returns_attrs_in_order_and_empty_values)
{
	rcds_store *s = populated();
	rows rs;

	cmd *m = cmd_new(alice, 1000);
	put_by(m, alice, "urn:snipe:data:x", "zeta", "1");
	put_by(m, alice, "urn:snipe:data:x", "alpha", "");
	put_by(m, alice, "urn:snipe:data:x", "mid", "2");
	ck_assert_int_eq(apply(s, 4, m, NULL), SNIPE_OK);
	ck_assert_int_eq(get_rows(s, "urn:snipe:data:x", 1000, &rs), SNIPE_OK);
	ck_assert_uint_eq(rs.n, 3);
	ck_assert_str_eq(rs.r[0].attr, "alpha");
	ck_assert_uint_eq(rs.r[0].value_len, 0);
	ck_assert_str_eq(rs.r[1].attr, "mid");
	ck_assert_str_eq(rs.r[2].attr, "zeta");
	rcds_store_close(s);
}
END_TEST

START_TEST(test_replayed_index_is_skipped)
{
	rcds_store *s = populated();
	rcds_result res;
	uint64_t version = 0;

	ck_assert_int_eq(put1(s, 5, alice, "urn:snipe:data:x", "a", "v1"), SNIPE_OK);
	cmd *m = cmd_new(alice, 1000);
	put_by(m, alice, "urn:snipe:data:x", "a", "v2");
	ck_assert_int_eq(apply(s, 5, m, &res), SNIPE_OK);
	ck_assert_uint_eq(res.index, 5);
	m = cmd_new(alice, 1000);
	put_by(m, alice, "urn:snipe:data:x", "a", "v3");
	ck_assert_int_eq(apply(s, 2, m, &res), SNIPE_OK);
	ck_assert_uint_eq(res.index, 2);
	ck_assert_str_eq(value_of(s, "urn:snipe:data:x", "a", 1000, &version), "v1");
	ck_assert_uint_eq(version, 5);
	ck_assert_uint_eq(rcds_store_applied(s), 5);
	rcds_store_close(s);
}
END_TEST

/* An entry of several writes: each applied on its own, in order, all at its index. */
START_TEST(test_entry_of_several_writes_applies_each_on_its_own)
{
	rcds_store *s = populated();
	rcds_result res[4];
	cmd *m[4];

	m[0] = cmd_new(alice, 1000);
	put_by(m[0], alice, "urn:snipe:data:x", "a", "v1");
	m[1] = cmd_new(bob, 1000); /* bob does not own x: denied, and changes nothing */
	put_by(m[1], bob, "urn:snipe:data:x", "a", "bob");
	m[2] = cmd_new(alice, 1000); /* sees the first write: compare-and-set on version 5 */
	Snipe__PutItem *cas = put_by(m[2], alice, "urn:snipe:data:x", "a", "v2");
	cas->check_version = true;
	cas->expect_version = 5;
	m[3] = cmd_new(alice, 1000); /* a retry of the first: its result, not applied again */
	memcpy(m[3]->id, m[0]->id, sizeof(m[0]->id));
	put_by(m[3], alice, "urn:snipe:data:x", "a", "again");
	const Snipe__Command *cmds[4] = {&m[0]->c, &m[1]->c, &m[2]->c, &m[3]->c};

	ck_assert_int_eq(rcds_store_apply(s, 5, cmds, 4, res), SNIPE_OK);
	ck_assert_int_eq(res[0].code, SNIPE_OK);
	ck_assert_int_eq(res[1].code, SNIPE_EDENIED);
	ck_assert_int_eq(res[2].code, SNIPE_OK);
	ck_assert_int_eq(res[3].code, SNIPE_OK);
	for (int i = 0; i < 4; i++)
		ck_assert_uint_eq(res[i].index, 5);
	ck_assert_uint_eq(rcds_store_applied(s), 5);
	uint64_t version = 0;
	ck_assert_str_eq(value_of(s, "urn:snipe:data:x", "a", 1000, &version), "v2");
	ck_assert_uint_eq(version, 5);
	/* replayed after a restart: skipped as a whole */
	ck_assert_int_eq(rcds_store_apply(s, 5, cmds, 4, res), SNIPE_OK);
	ck_assert_str_eq(value_of(s, "urn:snipe:data:x", "a", 1000, NULL), "v2");
	for (int i = 0; i < 4; i++)
		cmd_free(m[i]);
	rcds_store_close(s);
}
END_TEST

/* A command of the entry that did not decode is EDECODE; the others apply. */
START_TEST(test_undecodable_command_of_an_entry_is_edecode)
{
	rcds_store *s = populated();
	rcds_result res[2];
	cmd *m = cmd_new(alice, 1000);
	put_by(m, alice, "urn:snipe:data:x", "a", "v1");
	const Snipe__Command *cmds[2] = {NULL, &m->c};

	ck_assert_int_eq(rcds_store_apply(s, 5, cmds, 2, res), SNIPE_OK);
	ck_assert_int_eq(res[0].code, SNIPE_EDECODE);
	ck_assert_int_eq(res[1].code, SNIPE_OK);
	ck_assert_str_eq(value_of(s, "urn:snipe:data:x", "a", 1000, NULL), "v1");
	cmd_free(m);
	rcds_store_close(s);
}
END_TEST

/* Entries round-trip: one command alone, several as a batch, each byte for byte. */
START_TEST(test_entry_batch_encodes_and_decodes)
{
	cmd *m[3];
	ProtobufCBinaryData packed[3];
	for (int i = 0; i < 3; i++) {
		m[i] = cmd_new(alice, 1000 + (uint64_t)i);
		put_by(m[i], alice, "urn:snipe:data:x", "a", "v");
		packed[i].len = snipe__command__get_packed_size(&m[i]->c);
		packed[i].data = malloc(packed[i].len);
		snipe__command__pack(&m[i]->c, packed[i].data);
	}
	struct raft_buffer buf;

	ck_assert_int_eq(rcds_entry_encode_batch(packed, 1, &buf), SNIPE_OK);
	ck_assert_uint_eq(buf.len % 8, 0);
	Snipe__Command *one = rcds_entry_decode(&buf);
	ck_assert_ptr_nonnull(one);
	ck_assert_uint_eq(one->n_batch, 0);
	ck_assert_uint_eq(one->time_ms, 1000);
	snipe__command__free_unpacked(one, NULL);
	raft_free(buf.base);

	ck_assert_int_eq(rcds_entry_encode_batch(packed, 3, &buf), SNIPE_OK);
	ck_assert_uint_eq(buf.len % 8, 0);
	Snipe__Command *batch = rcds_entry_decode(&buf);
	ck_assert_ptr_nonnull(batch);
	ck_assert_uint_eq(batch->n_batch, 3);
	ck_assert_ptr_null(batch->write);
	for (int i = 0; i < 3; i++) {
		ck_assert_uint_eq(batch->batch[i].len, packed[i].len);
		ck_assert_mem_eq(batch->batch[i].data, packed[i].data, packed[i].len);
		free(packed[i].data);
		cmd_free(m[i]);
	}
	snipe__command__free_unpacked(batch, NULL);
	buf.len = 3; /* truncated below its header */
	ck_assert_ptr_null(rcds_entry_decode(&buf));
	raft_free(buf.base);
}
END_TEST

START_TEST(test_retried_request_id_returns_first_result)
{
	rcds_store *s = populated();
	rcds_result res;
	uint8_t id[16];

	cmd *m = cmd_new(alice, 1000);
	memcpy(id, m->id, sizeof(id));
	put_by(m, alice, "urn:snipe:data:x", "a", "v1");
	ck_assert_int_eq(apply(s, 4, m, &res), SNIPE_OK);

	m = cmd_new(alice, 1000);
	memcpy(m->id, id, sizeof(id));
	put_by(m, alice, "urn:snipe:data:x", "a", "v2");
	put_by(m, alice, "urn:snipe:data:x", "b", "new");
	ck_assert_int_eq(apply(s, 6, m, &res), SNIPE_OK);
	ck_assert_uint_eq(res.index, 4);
	ck_assert_uint_eq(rcds_store_applied(s), 6);
	uint64_t version = 0;
	ck_assert_str_eq(value_of(s, "urn:snipe:data:x", "a", 1000, &version), "v1");
	ck_assert_uint_eq(version, 4);
	ck_assert_ptr_null(value_of(s, "urn:snipe:data:x", "b", 1000, NULL));
	rcds_store_close(s);
}
END_TEST

START_TEST(test_retried_request_id_repeats_a_rejection)
{
	rcds_store *s = populated();
	rcds_result res;
	uint8_t id[16];
	snipe_key *stranger = NULL;
	ck_assert_int_eq(snipe_key_generate(&stranger), SNIPE_OK);

	cmd *m = cmd_new(stranger, 1000);
	memcpy(id, m->id, sizeof(id));
	put_by(m, stranger, "urn:snipe:data:x", "a", "v1");
	ck_assert_int_eq(apply(s, 4, m, &res), SNIPE_EDENIED);
	ck_assert_uint_eq(res.index, 4);

	/* the same id, now from a key that could write: still the first result */
	m = cmd_new(alice, 1000);
	memcpy(m->id, id, sizeof(id));
	put_by(m, alice, "urn:snipe:data:x", "a", "v2");
	ck_assert_int_eq(apply(s, 5, m, &res), SNIPE_EDENIED);
	ck_assert_uint_eq(res.index, 4);
	ck_assert_uint_eq(rcds_store_applied(s), 5);
	ck_assert_ptr_null(value_of(s, "urn:snipe:data:x", "a", 1000, NULL));
	snipe_key_free(stranger);
	rcds_store_close(s);
}
END_TEST

/* Ids are trimmed at indexes that are multiples of 1024, once 100000 entries old: the
 * id applied at 4 is still known at 100351 and gone after the trim at 100352. */
START_TEST(test_request_ids_are_forgotten_after_100000_entries)
{
	rcds_store *s = populated();
	rcds_result res;
	uint8_t id[16];

	cmd *m = cmd_new(alice, 1000);
	memcpy(id, m->id, sizeof(id));
	put_by(m, alice, "urn:snipe:data:x", "a", "v1");
	ck_assert_int_eq(apply(s, 4, m, &res), SNIPE_OK);
	ck_assert_int_eq(put1(s, 100350, alice, "urn:snipe:data:y", "a", "1"), SNIPE_OK);
	m = cmd_new(alice, 1000);
	memcpy(m->id, id, sizeof(id));
	put_by(m, alice, "urn:snipe:data:x", "a", "v2");
	ck_assert_int_eq(apply(s, 100351, m, &res), SNIPE_OK);
	ck_assert_uint_eq(res.index, 4); /* remembered: no trim since it was applied */
	ck_assert_int_eq(put1(s, 100352, alice, "urn:snipe:data:y", "a", "2"), SNIPE_OK);
	m = cmd_new(alice, 1000);
	memcpy(m->id, id, sizeof(id));
	put_by(m, alice, "urn:snipe:data:x", "a", "v3");
	ck_assert_int_eq(apply(s, 100353, m, &res), SNIPE_OK);
	ck_assert_uint_eq(res.index, 100353);
	ck_assert_str_eq(value_of(s, "urn:snipe:data:x", "a", 1000, NULL), "v3");
	rcds_store_close(s);
}
END_TEST

START_TEST(test_request_id_of_wrong_length_is_einval)
{
	rcds_store *s = populated();
	rcds_result res;

	cmd *m = cmd_new(alice, 1000);
	m->c.request_id.len = 8;
	put_by(m, alice, "urn:snipe:data:x", "a", "v1");
	ck_assert_int_eq(apply(s, 4, m, &res), SNIPE_EINVAL);
	ck_assert_uint_eq(res.index, 4);
	ck_assert_uint_eq(rcds_store_applied(s), 4);
	ck_assert_ptr_null(value_of(s, "urn:snipe:data:x", "a", 1000, NULL));
	rcds_store_close(s);
}
END_TEST

START_TEST(test_empty_write_is_einval)
{
	rcds_store *s = populated();
	rcds_result res;

	ck_assert_int_eq(apply(s, 4, cmd_new(alice, 1000), &res), SNIPE_EINVAL);
	ck_assert_uint_eq(rcds_store_applied(s), 4);
	cmd *m = cmd_new(alice, 1000);
	m->c.write = NULL;
	ck_assert_int_eq(apply(s, 5, m, &res), SNIPE_EINVAL);
	ck_assert_uint_eq(rcds_store_applied(s), 5);
	rcds_store_close(s);
}
END_TEST

START_TEST(test_batch_with_denied_item_changes_nothing)
{
	rcds_store *s = populated();
	rcds_result res;

	ck_assert_int_eq(put1(s, 4, alice, "urn:snipe:data:mine", "a", "alice"), SNIPE_OK);
	cmd *m = cmd_new(bob, 1000);
	put_by(m, bob, "urn:snipe:data:free", "a", "bob");
	put_by(m, bob, "urn:snipe:data:mine", "a", "bob");
	ck_assert_int_eq(apply(s, 5, m, &res), SNIPE_EDENIED);
	ck_assert_uint_eq(res.index, 5);
	ck_assert_msg(strncmp(res.reason, "put 2: ", 7) == 0, "reason: %s", res.reason);
	ck_assert_uint_eq(rcds_store_applied(s), 5);
	ck_assert_ptr_null(value_of(s, "urn:snipe:data:free", "a", 1000, NULL));
	ck_assert_str_eq(value_of(s, "urn:snipe:data:mine", "a", 1000, NULL), "alice");
	/* bob did not become the owner of the URN of the undone item */
	ck_assert_int_eq(put1(s, 6, alice, "urn:snipe:data:free", "a", "alice"), SNIPE_OK);
	rcds_store_close(s);
}
END_TEST

START_TEST(test_batch_with_cas_mismatch_changes_nothing)
{
	rcds_store *s = populated();
	rcds_result res;

	ck_assert_int_eq(put1(s, 4, alice, "urn:snipe:data:x", "n", "1"), SNIPE_OK);
	cmd *m = cmd_new(alice, 1000);
	put_by(m, alice, "urn:snipe:data:x", "other", "z");
	put_by(m, alice, "urn:snipe:data:y", "a", "z");
	Snipe__PutItem *p = put_by(m, alice, "urn:snipe:data:x", "n", "2");
	p->check_version = true;
	p->expect_version = 3;
	del(m, "urn:snipe:data:x", "n");
	ck_assert_int_eq(apply(s, 5, m, &res), SNIPE_ECONFLICT);
	ck_assert_msg(strncmp(res.reason, "put 3: ", 7) == 0, "reason: %s", res.reason);
	uint64_t version = 0;
	ck_assert_str_eq(value_of(s, "urn:snipe:data:x", "n", 1000, &version), "1");
	ck_assert_uint_eq(version, 4);
	ck_assert_ptr_null(value_of(s, "urn:snipe:data:x", "other", 1000, NULL));
	ck_assert_ptr_null(value_of(s, "urn:snipe:data:y", "a", 1000, NULL));
	ck_assert_uint_eq(rcds_store_applied(s), 5);
	rcds_store_close(s);
}
END_TEST

/* Applies one compare-and-set put of (data:x, n) = value; returns the code. */
static int cas_put(rcds_store *s, uint64_t index, uint64_t expect, const char *value)
{
	cmd *m = cmd_new(alice, 1000);
	Snipe__PutItem *p = put_by(m, alice, "urn:snipe:data:x", "n", value);
	p->check_version = true;
	p->expect_version = expect;
	return apply(s, index, m, NULL);
}

START_TEST(test_cas_expect_zero_means_absent)
{
	rcds_store *s = populated();
	uint64_t version = 0;

	ck_assert_int_eq(cas_put(s, 4, 0, "first"), SNIPE_OK);
	ck_assert_int_eq(cas_put(s, 5, 0, "second"), SNIPE_ECONFLICT);
	ck_assert_str_eq(value_of(s, "urn:snipe:data:x", "n", 1000, &version), "first");
	ck_assert_uint_eq(version, 4);
	rcds_store_close(s);
}
END_TEST

START_TEST(test_cas_succeeds_only_on_current_version)
{
	rcds_store *s = populated();
	uint64_t version = 0;

	ck_assert_int_eq(put1(s, 4, alice, "urn:snipe:data:x", "n", "a"), SNIPE_OK);
	ck_assert_int_eq(cas_put(s, 5, 3, "b"), SNIPE_ECONFLICT);
	ck_assert_int_eq(cas_put(s, 6, 4, "c"), SNIPE_OK);
	ck_assert_str_eq(value_of(s, "urn:snipe:data:x", "n", 1000, &version), "c");
	ck_assert_uint_eq(version, 6);
	ck_assert_int_eq(cas_put(s, 7, 4, "d"), SNIPE_ECONFLICT);
	ck_assert_int_eq(cas_put(s, 8, 6, "e"), SNIPE_OK);
	ck_assert_str_eq(value_of(s, "urn:snipe:data:x", "n", 1000, &version), "e");
	ck_assert_uint_eq(version, 8);
	rcds_store_close(s);
}
END_TEST

START_TEST(test_author_must_be_the_signer)
{
	rcds_store *s = populated();
	rcds_result res;

	cmd *m = cmd_new(bob, 1000);
	put_by(m, alice, "urn:snipe:data:x", "a", "v");
	ck_assert_int_eq(apply(s, 4, m, &res), SNIPE_EDENIED);
	ck_assert_ptr_null(value_of(s, "urn:snipe:data:x", "a", 1000, NULL));
	rcds_store_close(s);
}
END_TEST

START_TEST(test_malformed_assertions_are_rejected)
{
	rcds_store *s = populated();
	static uint8_t junk[] = {0xff, 0xff, 0xff};

	cmd *m = cmd_new(alice, 1000);
	Snipe__PutItem *p = put_by(m, alice, "urn:snipe:data:x", "a", "v");
	p->assertion->content = (ProtobufCBinaryData){sizeof(junk), junk};
	ck_assert_int_eq(apply(s, 4, m, NULL), SNIPE_EDECODE);

	m = cmd_new(alice, 1000);
	p = put_by(m, alice, "urn:snipe:data:x", "a", "v");
	p->assertion->signature.len = 10;
	ck_assert_int_eq(apply(s, 5, m, NULL), SNIPE_EDECODE);

	m = cmd_new(alice, 1000);
	put_by(m, alice, "urn:snipe:data:x", "bad attr", "v");
	ck_assert_int_eq(apply(s, 6, m, NULL), SNIPE_EINVAL);

	/* the URN must be stored in its one canonical spelling */
	ck_assert_int_eq(put1(s, 7, alice, "URN:Snipe:data:x", "a", "v"), SNIPE_EINVAL);
	ck_assert_int_eq(put1(s, 8, alice, "urn:snipe:nope:x", "a", "v"), SNIPE_EURNKIND);
	ck_assert_int_eq(get_rows(s, "urn:snipe:data:x", 1000, &(rows){0}), SNIPE_ENOTFOUND);
	ck_assert_uint_eq(rcds_store_applied(s), 8);
	rcds_store_close(s);
}
END_TEST

START_TEST(test_signer_of_wrong_length_is_einval)
{
	rcds_store *s = populated();
	cmd *m = cmd_new(alice, 1000);
	put_by(m, alice, "urn:snipe:data:x", "a", "v");
	m->c.signer.len = 31;
	ck_assert_int_eq(apply(s, 4, m, NULL), SNIPE_EINVAL);
	rcds_store_close(s);
}
END_TEST

/* ---------------------------------------------------------------- deletes */

static int del1(rcds_store *s, uint64_t index, const snipe_key *signer, const char *urn,
                const char *attr, bool check, uint64_t expect)
{
	cmd *m = cmd_new(signer, 1000);
	Snipe__DeleteItem *d = del(m, urn, attr);
	d->check_version = check;
	d->expect_version = expect;
	return apply(s, index, m, NULL);
}

START_TEST(test_delete_one_attr_keeps_the_others)
{
	rcds_store *s = populated();
	uint64_t version = 0;

	cmd *m = cmd_new(alice, 1000);
	put_by(m, alice, "urn:snipe:data:x", "a", "1");
	put_by(m, alice, "urn:snipe:data:x", "b", "2");
	ck_assert_int_eq(apply(s, 4, m, NULL), SNIPE_OK);
	ck_assert_int_eq(del1(s, 5, alice, "urn:snipe:data:x", "a", false, 0), SNIPE_OK);
	ck_assert_ptr_null(value_of(s, "urn:snipe:data:x", "a", 1000, NULL));
	ck_assert_str_eq(value_of(s, "urn:snipe:data:x", "b", 1000, &version), "2");
	ck_assert_uint_eq(version, 4);
	/* alice still owns the URN */
	ck_assert_int_eq(put1(s, 6, bob, "urn:snipe:data:x", "a", "bob"), SNIPE_EDENIED);
	rcds_store_close(s);
}
END_TEST

START_TEST(test_delete_whole_urn_releases_ownership)
{
	rcds_store *s = populated();
	rows rs;

	cmd *m = cmd_new(alice, 1000);
	put_by(m, alice, "urn:snipe:data:x", "a", "1");
	put_by(m, alice, "urn:snipe:data:x", "b", "2");
	put_by(m, alice, "urn:snipe:data:xy", "a", "3");
	ck_assert_int_eq(apply(s, 4, m, NULL), SNIPE_OK);
	ck_assert_int_eq(del1(s, 5, bob, "urn:snipe:data:x", "", false, 0), SNIPE_EDENIED);
	ck_assert_int_eq(del1(s, 6, alice, "urn:snipe:data:x", "", false, 0), SNIPE_OK);
	ck_assert_int_eq(get_rows(s, "urn:snipe:data:x", 1000, &rs), SNIPE_ENOTFOUND);
	ck_assert_int_eq(get_rows(s, "urn:snipe:data:xy", 1000, &rs), SNIPE_OK);
	ck_assert_uint_eq(rs.n, 1);
	ck_assert_int_eq(put1(s, 7, bob, "urn:snipe:data:x", "a", "bob"), SNIPE_OK);
	rcds_store_close(s);
}
END_TEST

START_TEST(test_delete_of_absent_is_enotfound)
{
	rcds_store *s = populated();

	ck_assert_int_eq(put1(s, 4, alice, "urn:snipe:data:x", "a", "1"), SNIPE_OK);
	ck_assert_int_eq(del1(s, 5, alice, "urn:snipe:data:x", "zz", false, 0),
	                 SNIPE_ENOTFOUND);
	ck_assert_int_eq(del1(s, 6, alice, "urn:snipe:data:none", "", false, 0),
	                 SNIPE_ENOTFOUND);
	ck_assert_int_eq(del1(s, 7, alice, "urn:snipe:data:none", "a", true, 0),
	                 SNIPE_ENOTFOUND);
	ck_assert_int_eq(del1(s, 8, alice, "urn:snipe:data:..", "a", false, 0),
	                 SNIPE_EURNPATH);
	ck_assert_int_eq(del1(s, 9, alice, "urn:snipe:data:x", "", true, 4), SNIPE_EINVAL);
	ck_assert_str_eq(value_of(s, "urn:snipe:data:x", "a", 1000, NULL), "1");
	rcds_store_close(s);
}
END_TEST

START_TEST(test_delete_compare_and_set)
{
	rcds_store *s = populated();

	ck_assert_int_eq(put1(s, 4, alice, "urn:snipe:data:x", "a", "1"), SNIPE_OK);
	ck_assert_int_eq(del1(s, 5, alice, "urn:snipe:data:x", "a", true, 3), SNIPE_ECONFLICT);
	ck_assert_str_eq(value_of(s, "urn:snipe:data:x", "a", 1000, NULL), "1");
	ck_assert_int_eq(del1(s, 6, alice, "urn:snipe:data:x", "a", true, 4), SNIPE_OK);
	ck_assert_ptr_null(value_of(s, "urn:snipe:data:x", "a", 1000, NULL));
	rcds_store_close(s);
}
END_TEST

START_TEST(test_batch_of_puts_and_deletes_applies_in_order)
{
	rcds_store *s = populated();
	rcds_result res;

	ck_assert_int_eq(put1(s, 4, alice, "urn:snipe:data:x", "old", "1"), SNIPE_OK);
	cmd *m = cmd_new(alice, 1000);
	put_by(m, alice, "urn:snipe:data:x", "new", "2");
	del(m, "urn:snipe:data:x", "old");
	del(m, "urn:snipe:data:x", "missing");
	ck_assert_int_eq(apply(s, 5, m, &res), SNIPE_ENOTFOUND);
	ck_assert_msg(strncmp(res.reason, "delete 2: ", 10) == 0, "reason: %s", res.reason);
	ck_assert_str_eq(value_of(s, "urn:snipe:data:x", "old", 1000, NULL), "1");
	ck_assert_ptr_null(value_of(s, "urn:snipe:data:x", "new", 1000, NULL));

	m = cmd_new(alice, 1000);
	put_by(m, alice, "urn:snipe:data:x", "new", "2");
	del(m, "urn:snipe:data:x", "old");
	ck_assert_int_eq(apply(s, 6, m, &res), SNIPE_OK);
	ck_assert_ptr_null(value_of(s, "urn:snipe:data:x", "old", 1000, NULL));
	ck_assert_str_eq(value_of(s, "urn:snipe:data:x", "new", 1000, NULL), "2");
	rcds_store_close(s);
}
END_TEST

/* ----------------------------------------------------------------- expiry */

/* A put of data:x a = "v" by alice expiring at expires, applied at time now. */
static int put_expiring(rcds_store *s, uint64_t index, uint64_t now, uint64_t expires)
{
	cmd *m = cmd_new(alice, now);
	put_bytes(m, alice, "urn:snipe:data:x", "a", "v", 1, expires);
	return apply(s, index, m, NULL);
}

START_TEST(test_expired_row_is_hidden_from_reads)
{
	rcds_store *s = populated();
	rows rs;
	bool more = true;
	rcds_scan q = {.prefix = "urn:snipe:data:", .limit = 10};

	ck_assert_int_eq(put_expiring(s, 4, 500, 1000), SNIPE_OK);
	ck_assert_int_eq(get_rows(s, "urn:snipe:data:x", 999, &rs), SNIPE_OK);
	ck_assert_uint_eq(rs.n, 1);
	ck_assert_uint_eq(rs.r[0].expires_ms, 1000);
	ck_assert_int_eq(get_rows(s, "urn:snipe:data:x", 1000, &rs), SNIPE_ENOTFOUND);
	memset(&rs, 0, sizeof(rs));
	ck_assert_int_eq(rcds_store_query(s, &q, 1000, collect, &rs, &more), SNIPE_OK);
	ck_assert_uint_eq(rs.n, 0);
	ck_assert(!more);
	rcds_store_close(s);
}
END_TEST

START_TEST(test_expired_rows_are_purged_by_a_later_apply)
{
	rcds_store *s = populated();
	rows rs;

	ck_assert_int_eq(put_expiring(s, 4, 500, 1000), SNIPE_OK);
	cmd *m = cmd_new(bob, 999);
	put_by(m, bob, "urn:snipe:data:other", "a", "b");
	ck_assert_int_eq(apply(s, 5, m, NULL), SNIPE_OK);
	ck_assert_int_eq(get_rows(s, "urn:snipe:data:x", 0, &rs), SNIPE_OK);

	m = cmd_new(bob, 1000);
	put_by(m, bob, "urn:snipe:data:other", "a", "c");
	ck_assert_int_eq(apply(s, 6, m, NULL), SNIPE_OK);
	/* gone even for a reader whose clock says it has not expired */
	ck_assert_int_eq(get_rows(s, "urn:snipe:data:x", 0, &rs), SNIPE_ENOTFOUND);
	/* and with it alice's ownership */
	ck_assert_int_eq(put1(s, 7, bob, "urn:snipe:data:x", "a", "bob"), SNIPE_OK);
	rcds_store_close(s);
}
END_TEST

START_TEST(test_put_already_expired_is_eexpired)
{
	rcds_store *s = populated();
	rows rs;

	ck_assert_int_eq(put_expiring(s, 4, 1000, 1000), SNIPE_EEXPIRED);
	ck_assert_int_eq(put_expiring(s, 5, 1000, 999), SNIPE_EEXPIRED);
	ck_assert_int_eq(get_rows(s, "urn:snipe:data:x", 0, &rs), SNIPE_ENOTFOUND);
	ck_assert_int_eq(put_expiring(s, 6, 1000, 1001), SNIPE_OK);
	ck_assert_int_eq(put_expiring(s, 7, 1000, 0), SNIPE_OK);
	ck_assert_int_eq(get_rows(s, "urn:snipe:data:x", UINT64_MAX / 2, &rs), SNIPE_OK);
	ck_assert_uint_eq(rs.r[0].version, 7);
	rcds_store_close(s);
}
END_TEST

/* ------------------------------------------------------------------ query */

static int query(rcds_store *s, const rcds_scan *q, rows *rs, bool *more)
{
	memset(rs, 0, sizeof(*rs));
	*more = true;
	return rcds_store_query(s, q, 1000, collect, rs, more);
}

/* Puts (urn, attr) = value for each triple, by alice, at index. */
static void put_all(rcds_store *s, uint64_t index, const char *const *triples, size_t n)
{
	rcds_result res;
	cmd *m = cmd_new(alice, 1000);
	for (size_t i = 0; i + 2 < n; i += 3)
		put_by(m, alice, triples[i], triples[i + 1], triples[i + 2]);
	ck_assert_msg(apply(s, index, m, &res) == SNIPE_OK, "put_all: %s", res.reason);
}

START_TEST(test_query_by_prefix_is_literal)
{
	static const char *const t[] = {
		"urn:snipe:data:run_1.a", "x", "1", "urn:snipe:data:run_1.b", "x", "2",
		"urn:snipe:data:run_1Za", "x", "3", "urn:snipe:data:runX1.a", "x", "4",
		"urn:snipe:data:run", "x", "5",
	};
	rcds_store *s = populated();
	rows rs;
	bool more;

	put_all(s, 4, t, sizeof(t) / sizeof(t[0]));
	rcds_scan q = {.prefix = "urn:snipe:data:run_1.", .limit = 10};
	ck_assert_int_eq(query(s, &q, &rs, &more), SNIPE_OK);
	ck_assert_uint_eq(rs.n, 2);
	ck_assert_str_eq(rs.r[0].urn, "urn:snipe:data:run_1.a");
	ck_assert_str_eq(rs.r[1].urn, "urn:snipe:data:run_1.b");
	ck_assert(!more);

	q.prefix = "urn:snipe:data:run_";
	ck_assert_int_eq(query(s, &q, &rs, &more), SNIPE_OK);
	ck_assert_uint_eq(rs.n, 3);
	ck_assert_str_eq(rs.r[2].urn, "urn:snipe:data:run_1Za");

	q.prefix = "urn:snipe:data:run%";
	ck_assert_int_eq(query(s, &q, &rs, &more), SNIPE_OK);
	ck_assert_uint_eq(rs.n, 0);
	rcds_store_close(s);
}
END_TEST

START_TEST(test_query_empty_prefix_gives_every_urn)
{
	static const char *const t[] = {
		"urn:snipe:data:a", "x", "1", "urn:snipe:proc:b", "x", "2",
	};
	rcds_store *s = populated();
	rows rs;
	bool more;

	put_all(s, 4, t, sizeof(t) / sizeof(t[0]));
	rcds_scan q = {.prefix = "", .limit = 30};
	ck_assert_int_eq(query(s, &q, &rs, &more), SNIPE_OK);
	/* 3 registered keys: pubkey and role each, host for node1 */
	ck_assert_uint_eq(rs.n, 2 + 7);
	ck_assert_str_eq(rs.r[0].urn, "urn:snipe:data:a");
	ck_assert(!more);
	q.prefix = NULL;
	ck_assert_int_eq(query(s, &q, &rs, &more), SNIPE_OK);
	ck_assert_uint_eq(rs.n, 9);
	rcds_store_close(s);
}
END_TEST

START_TEST(test_query_prefix_matching_nothing)
{
	static const char *const t[] = {"urn:snipe:data:a", "x", "1"};
	rcds_store *s = populated();
	rows rs;
	bool more;

	put_all(s, 4, t, 3);
	rcds_scan q = {.prefix = "urn:snipe:data:b", .limit = 10};
	ck_assert_int_eq(query(s, &q, &rs, &more), SNIPE_OK);
	ck_assert_uint_eq(rs.n, 0);
	ck_assert(!more);
	q.prefix = "urn:snipe:data:a/";
	ck_assert_int_eq(query(s, &q, &rs, &more), SNIPE_OK);
	ck_assert_uint_eq(rs.n, 0);
	ck_assert(!more);
	rcds_store_close(s);
}
END_TEST

START_TEST(test_query_by_attr_value_gives_all_attrs_of_matches)
{
	static const char *const t[] = {
		"urn:snipe:data:n1", "state", "up",   "urn:snipe:data:n1", "cores", "4",
		"urn:snipe:data:n2", "state", "down", "urn:snipe:data:n2", "cores", "4",
		"urn:snipe:data:n3", "state", "up",   "urn:snipe:data:n4", "state", "UP",
	};
	rcds_store *s = populated();
	rows rs;
	bool more;

	put_all(s, 4, t, sizeof(t) / sizeof(t[0]));
	rcds_filter up = {"state", (const uint8_t *)"up", 2};
	rcds_scan q = {.prefix = "urn:snipe:data:", .where = &up, .nwhere = 1, .limit = 10};
	ck_assert_int_eq(query(s, &q, &rs, &more), SNIPE_OK);
	ck_assert_uint_eq(rs.n, 3);
	ck_assert_str_eq(rs.r[0].urn, "urn:snipe:data:n1");
	ck_assert_str_eq(rs.r[0].attr, "cores");
	ck_assert_str_eq(rs.r[1].attr, "state");
	ck_assert_str_eq(rs.r[2].urn, "urn:snipe:data:n3");
	ck_assert(!more);

	rcds_filter both[] = {{"state", (const uint8_t *)"up", 2},
	                      {"cores", (const uint8_t *)"4", 1}};
	q.where = both;
	q.nwhere = 2;
	ck_assert_int_eq(query(s, &q, &rs, &more), SNIPE_OK);
	ck_assert_uint_eq(rs.n, 2);
	ck_assert_str_eq(rs.r[0].urn, "urn:snipe:data:n1");
	ck_assert_str_eq(rs.r[1].urn, "urn:snipe:data:n1");

	/* no prefix: the filter alone */
	rcds_filter down = {"state", (const uint8_t *)"down", 4};
	q = (rcds_scan){.where = &down, .nwhere = 1, .limit = 10};
	ck_assert_int_eq(query(s, &q, &rs, &more), SNIPE_OK);
	ck_assert_uint_eq(rs.n, 2);
	ck_assert_str_eq(rs.r[0].urn, "urn:snipe:data:n2");
	rcds_store_close(s);
}
END_TEST

START_TEST(test_query_compares_values_byte_exact)
{
	static const uint8_t v[] = {'a', 0, 'b'};
	rcds_store *s = populated();
	rows rs;
	bool more;

	cmd *m = cmd_new(alice, 1000);
	put_bytes(m, alice, "urn:snipe:data:bin", "v", v, sizeof(v), 0);
	put_by(m, alice, "urn:snipe:data:txt", "v", "a");
	put_by(m, alice, "urn:snipe:data:empty", "v", "");
	ck_assert_int_eq(apply(s, 4, m, NULL), SNIPE_OK);

	rcds_filter f = {"v", v, sizeof(v)};
	rcds_scan q = {.where = &f, .nwhere = 1, .limit = 10};
	ck_assert_int_eq(query(s, &q, &rs, &more), SNIPE_OK);
	ck_assert_uint_eq(rs.n, 1);
	ck_assert_str_eq(rs.r[0].urn, "urn:snipe:data:bin");
	ck_assert_uint_eq(rs.r[0].value_len, 3);

	f = (rcds_filter){"v", v, 1};
	ck_assert_int_eq(query(s, &q, &rs, &more), SNIPE_OK);
	ck_assert_uint_eq(rs.n, 1);
	ck_assert_str_eq(rs.r[0].urn, "urn:snipe:data:txt");

	f = (rcds_filter){"v", NULL, 0};
	ck_assert_int_eq(query(s, &q, &rs, &more), SNIPE_OK);
	ck_assert_uint_eq(rs.n, 1);
	ck_assert_str_eq(rs.r[0].urn, "urn:snipe:data:empty");
	rcds_store_close(s);
}
END_TEST

/* Pages through q with its limit, collecting every row; returns the number of pages. */
static size_t page_all(rcds_store *s, rcds_scan q, rows *all)
{
	char after_urn[SNIPE_URN_MAX] = "", after_attr[SNI_ATTR_MAX + 1] = "";
	size_t pages = 0;
	bool more = true;
	rows rs;

	memset(all, 0, sizeof(*all));
	while (more) {
		q.after_urn = after_urn;
		q.after_attr = after_attr;
		ck_assert_int_eq(query(s, &q, &rs, &more), SNIPE_OK);
		ck_assert_uint_le(rs.n, q.limit);
		pages++;
		ck_assert_uint_lt(pages, 20);
		if (more)
			ck_assert_uint_eq(rs.n, q.limit);
		for (size_t i = 0; i < rs.n; i++)
			all->r[all->n++] = rs.r[i];
		if (rs.n > 0) {
			snprintf(after_urn, sizeof(after_urn), "%s", rs.r[rs.n - 1].urn);
			snprintf(after_attr, sizeof(after_attr), "%s", rs.r[rs.n - 1].attr);
		}
	}
	return pages;
}

START_TEST(test_query_pages_with_limit_two)
{
	static const char *const t[] = {
		"urn:snipe:data:p/c", "y", "5", "urn:snipe:data:p/a", "x", "1",
		"urn:snipe:data:p/b", "x", "3", "urn:snipe:data:p/a", "y", "2",
		"urn:snipe:data:p/c", "x", "4",
	};
	static const char *const order[][2] = {
		{"p/a", "x"}, {"p/a", "y"}, {"p/b", "x"}, {"p/c", "x"}, {"p/c", "y"},
	};
	rcds_store *s = populated();
	rows all;

	put_all(s, 4, t, sizeof(t) / sizeof(t[0]));
	rcds_scan q = {.prefix = "urn:snipe:data:p/", .limit = 2};
	ck_assert_uint_eq(page_all(s, q, &all), 3);
	ck_assert_uint_eq(all.n, 5);
	for (size_t i = 0; i < 5; i++) {
		char urn[64];
		snprintf(urn, sizeof(urn), "urn:snipe:data:%s", order[i][0]);
		ck_assert_str_eq(all.r[i].urn, urn);
		ck_assert_str_eq(all.r[i].attr, order[i][1]);
	}

	/* exactly two full pages: the second says no more */
	q.prefix = "urn:snipe:data:p/a";
	q.limit = 1;
	ck_assert_uint_eq(page_all(s, q, &all), 2);
	ck_assert_uint_eq(all.n, 2);

	/* paging over a filtered query */
	rcds_filter f = {"x", (const uint8_t *)"3", 1};
	q = (rcds_scan){.prefix = "urn:snipe:data:", .where = &f, .nwhere = 1, .limit = 2};
	ck_assert_uint_eq(page_all(s, q, &all), 1);
	ck_assert_uint_eq(all.n, 1);
	ck_assert_str_eq(all.r[0].urn, "urn:snipe:data:p/b");
	rcds_store_close(s);
}
END_TEST

START_TEST(test_query_cursor_is_strictly_after)
{
	static const char *const t[] = {
		"urn:snipe:data:a", "x", "1", "urn:snipe:data:a", "y", "2",
		"urn:snipe:data:b", "x", "3",
	};
	rcds_store *s = populated();
	rows rs;
	bool more;

	put_all(s, 4, t, sizeof(t) / sizeof(t[0]));
	rcds_scan q = {.prefix = "urn:snipe:data:", .after_urn = "urn:snipe:data:a",
	                .after_attr = "x", .limit = 1};
	ck_assert_int_eq(query(s, &q, &rs, &more), SNIPE_OK);
	ck_assert_uint_eq(rs.n, 1);
	ck_assert_str_eq(rs.r[0].attr, "y");
	ck_assert(more);
	q.after_attr = "y";
	ck_assert_int_eq(query(s, &q, &rs, &more), SNIPE_OK);
	ck_assert_str_eq(rs.r[0].urn, "urn:snipe:data:b");
	ck_assert(!more);
	q.after_urn = "urn:snipe:data:b";
	q.after_attr = "x";
	ck_assert_int_eq(query(s, &q, &rs, &more), SNIPE_OK);
	ck_assert_uint_eq(rs.n, 0);
	ck_assert(!more);
	rcds_store_close(s);
}
END_TEST

START_TEST(test_query_rejects_zero_limit)
{
	rcds_store *s = populated();
	rows rs;
	bool more;
	rcds_scan q = {.prefix = "urn:", .limit = 0};
	ck_assert_int_eq(query(s, &q, &rs, &more), SNIPE_EINVAL);
	rcds_store_close(s);
}
END_TEST

/* ------------------------------------------------------------------- keys */

START_TEST(test_admin_registers_a_user_key)
{
	rcds_store *s = open_store(":memory:");

	ck_assert_int_eq(put1(s, 1, alice, "urn:snipe:data:x", "a", "1"), SNIPE_EDENIED);
	register_key(s, 2, alice, "user", NULL);
	ck_assert_int_eq(put1(s, 3, alice, "urn:snipe:data:x", "a", "1"), SNIPE_OK);
	ck_assert_int_eq(put1(s, 4, bob, "urn:snipe:data:y", "a", "1"), SNIPE_EDENIED);
	/* a registered user may not register keys */
	char urn[SNIPE_URN_MAX], hex[SNIPE_PK_HEX];
	key_urn_of(bob, urn);
	snipe_pk_hex(snipe_key_public(bob), hex);
	ck_assert_int_eq(put1(s, 5, alice, urn, "pubkey", hex), SNIPE_EDENIED);
	rcds_store_close(s);
}
END_TEST

START_TEST(test_key_without_role_or_with_bad_role_may_not_write)
{
	rcds_store *s = open_store(":memory:");

	register_key(s, 1, alice, NULL, NULL);
	register_key(s, 2, bob, "superuser", NULL);
	ck_assert_int_eq(put1(s, 3, alice, "urn:snipe:data:x", "a", "1"), SNIPE_EDENIED);
	ck_assert_int_eq(put1(s, 4, bob, "urn:snipe:data:x", "a", "1"), SNIPE_EDENIED);
	rcds_store_close(s);
}
END_TEST

START_TEST(test_pubkey_must_match_the_key_urn)
{
	rcds_store *s = open_store(":memory:");
	char urn[SNIPE_URN_MAX], hex[SNIPE_PK_HEX];
	rcds_result res;

	key_urn_of(alice, urn);
	snipe_pk_hex(snipe_key_public(bob), hex);
	cmd *m = cmd_new(admin, 1000);
	put_by(m, admin, urn, "pubkey", hex);
	put_by(m, admin, urn, "role", "user");
	ck_assert_int_eq(apply(s, 1, m, &res), SNIPE_EINVAL);
	ck_assert(!res.keys_changed);
	ck_assert_int_eq(put1(s, 2, admin, urn, "pubkey", "not hex"), SNIPE_EINVAL);
	hex[63] = 'g';
	ck_assert_int_eq(put1(s, 3, admin, urn, "pubkey", hex), SNIPE_EINVAL);
	/* bob's key under alice's URN never lets bob write */
	ck_assert_int_eq(put1(s, 4, bob, "urn:snipe:data:x", "a", "1"), SNIPE_EDENIED);
	rcds_store_close(s);
}
END_TEST

START_TEST(test_keys_changed_only_for_key_urns)
{
	rcds_store *s = populated();
	rcds_result res;
	char urn[SNIPE_URN_MAX];

	cmd *m = cmd_new(admin, 1000);
	put_by(m, admin, "urn:snipe:data:x", "a", "1");
	ck_assert_int_eq(apply(s, 4, m, &res), SNIPE_OK);
	ck_assert(!res.keys_changed);
	key_urn_of(bob, urn);
	m = cmd_new(admin, 1000);
	del(m, urn, "role");
	ck_assert_int_eq(apply(s, 5, m, &res), SNIPE_OK);
	ck_assert(res.keys_changed);
	ck_assert_int_eq(put1(s, 6, bob, "urn:snipe:data:y", "a", "1"), SNIPE_EDENIED);
	rcds_store_close(s);
}
END_TEST

START_TEST(test_expiring_key_sets_keys_changed_when_purged)
{
	rcds_store *s = open_store(":memory:");
	char urn[SNIPE_URN_MAX];
	rcds_result res;

	key_urn_of(alice, urn);
	cmd *m = cmd_new(admin, 1000);
	char hex[SNIPE_PK_HEX];
	snipe_pk_hex(snipe_key_public(alice), hex);
	put_bytes(m, admin, urn, "pubkey", hex, 64, 0);
	put_bytes(m, admin, urn, "role", "user", 4, 2000);
	ck_assert_int_eq(apply(s, 1, m, &res), SNIPE_OK);
	ck_assert_int_eq(put1(s, 2, alice, "urn:snipe:data:x", "a", "1"), SNIPE_OK);
	m = cmd_new(alice, 2000);
	put_by(m, alice, "urn:snipe:data:x", "a", "2");
	ck_assert_int_eq(apply(s, 3, m, &res), SNIPE_EDENIED);
	ck_assert(res.keys_changed);
	rcds_store_close(s);
}
END_TEST

static void count_key(void *arg, const uint8_t *pk)
{
	rows *rs = arg;
	ck_assert_uint_lt(rs->n, 32);
	snipe_pk_hex(pk, rs->r[rs->n++].value);
}

static bool listed(const rows *rs, const snipe_key *k)
{
	char hex[SNIPE_PK_HEX];
	snipe_pk_hex(snipe_key_public(k), hex);
	for (size_t i = 0; i < rs->n; i++) {
		if (strcmp(rs->r[i].value, hex) == 0)
			return true;
	}
	return false;
}

START_TEST(test_keys_lists_registered_keys)
{
	rcds_store *s = open_store(":memory:");
	rows rs = {0};

	ck_assert_int_eq(rcds_store_keys(s, count_key, &rs), SNIPE_OK);
	ck_assert_uint_eq(rs.n, 0);
	register_key(s, 1, alice, "user", NULL);
	register_key(s, 2, node1, "host", "node1");
	register_key(s, 3, bob, NULL, NULL); /* no role: not registered */
	ck_assert_int_eq(rcds_store_keys(s, count_key, &rs), SNIPE_OK);
	ck_assert_uint_eq(rs.n, 2);
	ck_assert(listed(&rs, alice));
	ck_assert(listed(&rs, node1));
	ck_assert(!listed(&rs, bob));
	rcds_store_close(s);
}
END_TEST

START_TEST(test_host_key_writes_its_host_and_assigned_procs)
{
	rcds_store *s = populated();

	ck_assert_int_eq(put1(s, 4, node1, "urn:snipe:host:node1", "cores", "8"), SNIPE_OK);
	ck_assert_int_eq(put1(s, 5, node1, "urn:snipe:host:node2", "cores", "8"),
	                 SNIPE_EDENIED);
	ck_assert_int_eq(put1(s, 6, alice, "urn:snipe:host:node1", "cores", "1"),
	                 SNIPE_EDENIED);
	ck_assert_int_eq(put1(s, 7, alice, "urn:snipe:proc:job", "host", "node1"), SNIPE_OK);
	ck_assert_int_eq(put1(s, 8, alice, "urn:snipe:proc:job2", "host", "node2"), SNIPE_OK);
	ck_assert_int_eq(put1(s, 9, node1, "urn:snipe:proc:job", "state", "running"),
	                 SNIPE_OK);
	ck_assert_int_eq(put1(s, 10, node1, "urn:snipe:proc:job2", "state", "running"),
	                 SNIPE_EDENIED);
	ck_assert_int_eq(del1(s, 11, node1, "urn:snipe:proc:job2", "host", false, 0),
	                 SNIPE_EDENIED);
	ck_assert_int_eq(put1(s, 12, bob, "urn:snipe:proc:job", "state", "x"), SNIPE_EDENIED);
	rcds_store_close(s);
}
END_TEST

/* ----------------------------------------------------------------- epochs */

START_TEST(test_put_rejects_stale_epoch)
{
	rcds_store *s = populated();
	rcds_result res;
	uint64_t version = 0;

	ck_assert_int_eq(put1(s, 4, alice, "urn:snipe:proc:x", "epoch", "3"), SNIPE_OK);
	cmd *m = cmd_new(alice, 1000);
	put_by(m, alice, "urn:snipe:data:y", "a", "1");
	put_by(m, alice, "urn:snipe:proc:x", "state", "running");
	put_by(m, alice, "urn:snipe:proc:x", "epoch", "2");
	tu_assert_code(apply(s, 5, m, &res), SNIPE_ESTALE);
	ck_assert_uint_eq(res.index, 5);
	ck_assert_msg(strncmp(res.reason, "put 3: ", 7) == 0, "reason: %s", res.reason);
	ck_assert_msg(strstr(res.reason, "urn:snipe:proc:x") != NULL, "reason: %s", res.reason);
	ck_assert_msg(tu_has_number(res.reason, 2) && tu_has_number(res.reason, 3),
	              "reason: %s", res.reason);
	ck_assert_uint_eq(rcds_store_applied(s), 5);
	ck_assert_str_eq(value_of(s, "urn:snipe:proc:x", "epoch", 1000, &version), "3");
	ck_assert_uint_eq(version, 4);
	ck_assert_ptr_null(value_of(s, "urn:snipe:proc:x", "state", 1000, NULL));
	ck_assert_ptr_null(value_of(s, "urn:snipe:data:y", "a", 1000, NULL));
	rcds_store_close(s);
}
END_TEST

START_TEST(test_put_accepts_same_or_newer_epoch)
{
	rcds_store *s = populated();
	uint64_t version = 0;

	ck_assert_int_eq(put1(s, 4, alice, "urn:snipe:proc:x", "epoch", "3"), SNIPE_OK);
	tu_assert_code(put1(s, 5, alice, "urn:snipe:proc:x", "epoch", "3"), SNIPE_OK);
	ck_assert_str_eq(value_of(s, "urn:snipe:proc:x", "epoch", 1000, &version), "3");
	ck_assert_uint_eq(version, 5);
	tu_assert_code(put1(s, 6, alice, "urn:snipe:proc:x", "epoch", "4"), SNIPE_OK);
	ck_assert_str_eq(value_of(s, "urn:snipe:proc:x", "epoch", 1000, &version), "4");
	ck_assert_uint_eq(version, 6);
	tu_assert_code(put1(s, 7, alice, "urn:snipe:proc:x", "epoch", "3"), SNIPE_ESTALE);
	ck_assert_str_eq(value_of(s, "urn:snipe:proc:x", "epoch", 1000, &version), "4");
	ck_assert_uint_eq(version, 6);
	rcds_store_close(s);
}
END_TEST

START_TEST(test_epochs_compare_as_numbers_not_text)
{
	rcds_store *s = populated();

	ck_assert_int_eq(put1(s, 4, alice, "urn:snipe:proc:x", "epoch", "9"), SNIPE_OK);
	tu_assert_code(put1(s, 5, alice, "urn:snipe:proc:x", "epoch", "10"), SNIPE_OK);
	tu_assert_code(put1(s, 6, alice, "urn:snipe:proc:x", "epoch", "9"), SNIPE_ESTALE);
	tu_assert_code(put1(s, 7, alice, "urn:snipe:proc:x", "epoch", "18446744073709551615"),
	               SNIPE_OK);
	tu_assert_code(put1(s, 8, alice, "urn:snipe:proc:x", "epoch", "18446744073709551614"),
	               SNIPE_ESTALE);
	ck_assert_str_eq(value_of(s, "urn:snipe:proc:x", "epoch", 1000, NULL),
	                 "18446744073709551615");
	rcds_store_close(s);
}
END_TEST

START_TEST(test_stale_epoch_later_in_the_same_batch_is_rejected)
{
	rcds_store *s = populated();
	rcds_result res;

	ck_assert_int_eq(put1(s, 4, alice, "urn:snipe:proc:x", "epoch", "3"), SNIPE_OK);
	cmd *m = cmd_new(alice, 1000);
	put_by(m, alice, "urn:snipe:proc:x", "epoch", "5");
	put_by(m, alice, "urn:snipe:proc:x", "epoch", "4");
	tu_assert_code(apply(s, 5, m, &res), SNIPE_ESTALE);
	ck_assert_msg(strncmp(res.reason, "put 2: ", 7) == 0, "reason: %s", res.reason);
	ck_assert_str_eq(value_of(s, "urn:snipe:proc:x", "epoch", 1000, NULL), "3");
	rcds_store_close(s);
}
END_TEST

START_TEST(test_put_rejects_epoch_that_is_not_a_number_from_one)
{
	static const char *const bad[] = {
	        "0",  "00", "",    "abc", "-1", "+4", " 4",  "4 ",  "4.0",
	        "0x10", "1e3", "18446744073709551616", "123456789012345678901234",
	};
	rcds_store *s = populated();
	rcds_result res;
	uint64_t index = 4;

	/* on a process with no epoch yet, and on one whose epoch is 3 */
	for (int stored = 0; stored < 2; stored++) {
		if (stored)
			ck_assert_int_eq(put1(s, index++, alice, "urn:snipe:proc:x", "epoch", "3"),
			                 SNIPE_OK);
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			cmd *m = cmd_new(alice, 1000);
			put_by(m, alice, "urn:snipe:proc:x", "epoch", bad[i]);
			int rc = apply(s, index++, m, &res);
			ck_assert_msg(rc == SNIPE_EINVAL, "epoch \"%s\": got %s (%d), reason: %s",
			              bad[i], snipe_errname(rc), rc, res.reason);
		}
		const char *now = value_of(s, "urn:snipe:proc:x", "epoch", 1000, NULL);
		if (stored)
			ck_assert_str_eq(now, "3");
		else
			ck_assert_ptr_null(now);
	}
	rcds_store_close(s);
}
END_TEST

START_TEST(test_epoch_rule_applies_only_to_proc_urns)
{
	rcds_store *s = populated();

	ck_assert_int_eq(put1(s, 4, alice, "urn:snipe:data:x", "epoch", "3"), SNIPE_OK);
	tu_assert_code(put1(s, 5, alice, "urn:snipe:data:x", "epoch", "2"), SNIPE_OK);
	ck_assert_str_eq(value_of(s, "urn:snipe:data:x", "epoch", 1000, NULL), "2");
	tu_assert_code(put1(s, 6, alice, "urn:snipe:data:x", "epoch", "0"), SNIPE_OK);
	tu_assert_code(put1(s, 7, alice, "urn:snipe:data:x", "epoch", "abc"), SNIPE_OK);
	ck_assert_str_eq(value_of(s, "urn:snipe:data:x", "epoch", 1000, NULL), "abc");

	ck_assert_int_eq(put1(s, 8, node1, "urn:snipe:host:node1", "epoch", "5"), SNIPE_OK);
	tu_assert_code(put1(s, 9, node1, "urn:snipe:host:node1", "epoch", "1"), SNIPE_OK);
	ck_assert_str_eq(value_of(s, "urn:snipe:host:node1", "epoch", 1000, NULL), "1");

	/* and only to the epoch attribute of a process */
	ck_assert_int_eq(put1(s, 10, alice, "urn:snipe:proc:x", "epoch", "3"), SNIPE_OK);
	ck_assert_int_eq(put1(s, 11, alice, "urn:snipe:proc:x", "restarts", "3"), SNIPE_OK);
	tu_assert_code(put1(s, 12, alice, "urn:snipe:proc:x", "restarts", "2"), SNIPE_OK);
	tu_assert_code(put1(s, 13, alice, "urn:snipe:proc:x", "epochs", "0"), SNIPE_OK);
	ck_assert_str_eq(value_of(s, "urn:snipe:proc:x", "restarts", 1000, NULL), "2");
	rcds_store_close(s);
}
END_TEST

/* -------------------------------------------------- persistence, snapshots */

/* The WAL is copied back into the database file by the store's own thread, while the
 * store stays open and goes on writing. */
START_TEST(test_wal_is_checkpointed_in_the_background)
{
	char *dir = tu_tmpdir();
	char *path = tu_path(dir, "catalog.db");
	char value[901];
	struct stat st;

	rcds_store *s = open_store(path);
	rcds_store_set_checkpoint_pages(s, 64);
	register_key(s, 1, alice, "user", NULL);
	ck_assert_int_eq(rcds_store_flush(s), SNIPE_OK);
	ck_assert_int_eq(stat(path, &st), 0);
	off_t before = st.st_size;
	memset(value, 'v', sizeof(value) - 1);
	value[sizeof(value) - 1] = '\0';
	for (uint64_t i = 0; i < 300; i++) {
		char urn[64];
		snprintf(urn, sizeof(urn), "urn:snipe:data:wal-%03" PRIu64, i);
		ck_assert_int_eq(put1(s, 2 + i, alice, urn, "v", value), SNIPE_OK);
		ck_assert_int_eq(rcds_store_flush(s), SNIPE_OK);
	}
	/* 300 rows of 900 bytes: at least 270 KB reach the file once checkpointed */
	for (int t = 0; t < 300 && (stat(path, &st) != 0 || st.st_size < before + 270000); t++)
		usleep(10 * 1000);
	ck_assert_int_ge(st.st_size, before + 270000);
	ck_assert_int_eq(put1(s, 302, alice, "urn:snipe:data:wal-last", "v", "last"), SNIPE_OK);
	rcds_store_close(s);
	s = open_store(path);
	ck_assert_uint_eq(rcds_store_applied(s), 302);
	ck_assert_str_eq(value_of(s, "urn:snipe:data:wal-last", "v", 1000, NULL), "last");
	rcds_store_close(s);
	free(path);
	tu_rmtree(dir);
}
END_TEST

START_TEST(test_reopen_keeps_rows_and_applied)
{
	char *dir = tu_tmpdir();
	char *path = tu_path(dir, "catalog.db");
	uint64_t version = 0;

	rcds_store *s = open_store(path);
	register_key(s, 1, alice, "user", NULL);
	ck_assert_int_eq(put1(s, 2, alice, "urn:snipe:data:x", "a", "kept"), SNIPE_OK);
	rcds_store_close(s);

	s = open_store(path);
	ck_assert_uint_eq(rcds_store_applied(s), 2);
	ck_assert_str_eq(value_of(s, "urn:snipe:data:x", "a", 1000, &version), "kept");
	ck_assert_uint_eq(version, 2);
	/* replay after restart is skipped; ownership survived */
	ck_assert_int_eq(put1(s, 2, bob, "urn:snipe:data:x", "a", "replayed"), SNIPE_OK);
	ck_assert_str_eq(value_of(s, "urn:snipe:data:x", "a", 1000, NULL), "kept");
	ck_assert_int_eq(put1(s, 3, alice, "urn:snipe:data:x", "a", "next"), SNIPE_OK);
	rcds_store_close(s);
	free(path);
	tu_rmtree(dir);
}
END_TEST

static void expect_journal_mode(const char *path, const char *mode)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL),
	                 SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), mode);
	sqlite3_finalize(st);
	sqlite3_close(db);
}

/* Every row of s, in (urn, attr) order. */
static void dump(rcds_store *s, rows *rs)
{
	bool more;
	rcds_scan q = {.limit = 32};
	ck_assert_int_eq(query(s, &q, rs, &more), SNIPE_OK);
	ck_assert(!more);
}

static void expect_same_rows(const rows *a, const rows *b)
{
	ck_assert_uint_eq(a->n, b->n);
	for (size_t i = 0; i < a->n; i++) {
		ck_assert_str_eq(a->r[i].urn, b->r[i].urn);
		ck_assert_str_eq(a->r[i].attr, b->r[i].attr);
		ck_assert_uint_eq(a->r[i].value_len, b->r[i].value_len);
		ck_assert_mem_eq(a->r[i].value, b->r[i].value, a->r[i].value_len);
		ck_assert_uint_eq(a->r[i].version, b->r[i].version);
		ck_assert_uint_eq(a->r[i].expires_ms, b->r[i].expires_ms);
	}
}

START_TEST(test_snapshot_restore_round_trip)
{
	char *dir = tu_tmpdir();
	char *pa = tu_path(dir, "a.db"), *pb = tu_path(dir, "b.db");
	uint8_t *image = NULL;
	size_t len = 0;
	rows ra, rb;

	rcds_store *a = open_store(pa);
	register_key(a, 1, alice, "user", NULL);
	ck_assert_int_eq(put1(a, 2, alice, "urn:snipe:data:x", "a", "1"), SNIPE_OK);
	ck_assert_int_eq(put1(a, 3, alice, "urn:snipe:data:y", "b", "2"), SNIPE_OK);
	ck_assert_int_eq(rcds_store_snapshot(a, &image, &len), SNIPE_OK);
	ck_assert_uint_gt(len, 100);
	ck_assert_uint_eq(image[18], 2); /* a WAL-mode image */

	rcds_store *b = open_store(pb);
	register_key(b, 1, bob, "user", NULL);
	ck_assert_int_eq(put1(b, 2, bob, "urn:snipe:data:old", "a", "gone"), SNIPE_OK);
	ck_assert_int_eq(rcds_store_restore(b, image, len), SNIPE_OK);
	ck_assert_uint_eq(rcds_store_applied(b), 3);
	dump(a, &ra);
	dump(b, &rb);
	expect_same_rows(&ra, &rb);
	ck_assert_ptr_null(value_of(b, "urn:snipe:data:old", "a", 1000, NULL));

	/* the restored store carries on: owners came along, bob is no longer known */
	ck_assert_int_eq(put1(b, 4, alice, "urn:snipe:data:x", "a", "3"), SNIPE_OK);
	ck_assert_int_eq(put1(b, 5, bob, "urn:snipe:data:z", "a", "3"), SNIPE_EDENIED);
	rcds_store_close(b);
	expect_journal_mode(pb, "wal");
	b = open_store(pb);
	ck_assert_uint_eq(rcds_store_applied(b), 5);
	ck_assert_str_eq(value_of(b, "urn:snipe:data:x", "a", 1000, NULL), "3");
	rcds_store_close(b);

	/* the same image into an in-memory store */
	rcds_store *m = open_store(":memory:");
	ck_assert_int_eq(rcds_store_restore(m, image, len), SNIPE_OK);
	ck_assert_uint_eq(rcds_store_applied(m), 3);
	dump(m, &rb);
	expect_same_rows(&ra, &rb);

	/* and an in-memory store's image (not WAL) into a file store */
	char *pc = tu_path(dir, "c.db");
	ck_assert_int_eq(put1(m, 4, alice, "urn:snipe:data:m", "a", "mem"), SNIPE_OK);
	free(image);
	ck_assert_int_eq(rcds_store_snapshot(m, &image, &len), SNIPE_OK);
	ck_assert_uint_eq(image[18], 1);
	rcds_store *c = open_store(pc);
	ck_assert_int_eq(rcds_store_restore(c, image, len), SNIPE_OK);
	ck_assert_uint_eq(rcds_store_applied(c), 4);
	dump(m, &ra);
	dump(c, &rb);
	expect_same_rows(&ra, &rb);
	rcds_store_close(c);
	expect_journal_mode(pc, "wal");
	free(pc);
	rcds_store_close(m);

	rcds_store_close(a);
	free(image);
	free(pa);
	free(pb);
	tu_rmtree(dir);
}
END_TEST

START_TEST(test_restore_rejects_garbage_and_keeps_state)
{
	rcds_store *s = populated();
	uint8_t junk[4096];
	memset(junk, 0x5a, sizeof(junk));

	ck_assert_int_ne(rcds_store_restore(s, junk, sizeof(junk)), SNIPE_OK);
	ck_assert_int_eq(rcds_store_restore(s, junk, 10), SNIPE_EINVAL);
	ck_assert_uint_eq(rcds_store_applied(s), 3);
	ck_assert_int_eq(put1(s, 4, alice, "urn:snipe:data:x", "a", "1"), SNIPE_OK);

	/* a valid SQLite image that is not a catalog */
	sqlite3 *db = NULL;
	sqlite3_int64 n = 0;
	ck_assert_int_eq(sqlite3_open(":memory:", &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(db, "CREATE TABLE t(x)", NULL, NULL, NULL), SQLITE_OK);
	unsigned char *img = sqlite3_serialize(db, "main", &n, 0);
	ck_assert_ptr_nonnull(img);
	ck_assert_int_eq(rcds_store_restore(s, img, (size_t)n), SNIPE_EINVAL);
	sqlite3_free(img);
	sqlite3_close(db);
	ck_assert_uint_eq(rcds_store_applied(s), 4);
	ck_assert_str_eq(value_of(s, "urn:snipe:data:x", "a", 1000, NULL), "1");
	rcds_store_close(s);
}
END_TEST

START_TEST(test_open_fails_on_unwritable_path)
{
	rcds_store *s = (rcds_store *)1;
	char err[256] = "";
	int rc = rcds_store_open("/nonexistent-dir/x/catalog.db", snipe_key_public(admin), &s,
	                         err, sizeof(err));
	ck_assert_int_eq(rc, SNIPE_EIO);
	ck_assert_ptr_null(s);
	ck_assert_msg(strstr(err, "/nonexistent-dir/x/catalog.db") != NULL, "err: %s", err);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("store");
	TCase *tc;

	tc = tcase_create("apply");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_new_store_has_applied_zero);
	tcase_add_test(tc, test_put_then_get_returns_row_with_version_index);
	tcase_add_test(tc, test_get_returns_attrs_in_order_and_empty_values);
	tcase_add_test(tc, test_replayed_index_is_skipped);
	tcase_add_test(tc, test_retried_request_id_returns_first_result);
	tcase_add_test(tc, test_entry_of_several_writes_applies_each_on_its_own);
	tcase_add_test(tc, test_undecodable_command_of_an_entry_is_edecode);
	tcase_add_test(tc, test_entry_batch_encodes_and_decodes);
	tcase_add_test(tc, test_retried_request_id_repeats_a_rejection);
	tcase_add_test(tc, test_request_ids_are_forgotten_after_100000_entries);
	tcase_add_test(tc, test_request_id_of_wrong_length_is_einval);
	tcase_add_test(tc, test_empty_write_is_einval);
	tcase_add_test(tc, test_batch_with_denied_item_changes_nothing);
	tcase_add_test(tc, test_batch_with_cas_mismatch_changes_nothing);
	tcase_add_test(tc, test_cas_expect_zero_means_absent);
	tcase_add_test(tc, test_cas_succeeds_only_on_current_version);
	tcase_add_test(tc, test_author_must_be_the_signer);
	tcase_add_test(tc, test_malformed_assertions_are_rejected);
	tcase_add_test(tc, test_signer_of_wrong_length_is_einval);
	suite_add_tcase(s, tc);

	tc = tcase_create("delete");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_delete_one_attr_keeps_the_others);
	tcase_add_test(tc, test_delete_whole_urn_releases_ownership);
	tcase_add_test(tc, test_delete_of_absent_is_enotfound);
	tcase_add_test(tc, test_delete_compare_and_set);
	tcase_add_test(tc, test_batch_of_puts_and_deletes_applies_in_order);
	suite_add_tcase(s, tc);

	tc = tcase_create("expiry");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_expired_row_is_hidden_from_reads);
	tcase_add_test(tc, test_expired_rows_are_purged_by_a_later_apply);
	tcase_add_test(tc, test_put_already_expired_is_eexpired);
	suite_add_tcase(s, tc);

	tc = tcase_create("query");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_query_by_prefix_is_literal);
	tcase_add_test(tc, test_query_empty_prefix_gives_every_urn);
	tcase_add_test(tc, test_query_prefix_matching_nothing);
	tcase_add_test(tc, test_query_by_attr_value_gives_all_attrs_of_matches);
	tcase_add_test(tc, test_query_compares_values_byte_exact);
	tcase_add_test(tc, test_query_pages_with_limit_two);
	tcase_add_test(tc, test_query_cursor_is_strictly_after);
	tcase_add_test(tc, test_query_rejects_zero_limit);
	suite_add_tcase(s, tc);

	tc = tcase_create("keys");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_admin_registers_a_user_key);
	tcase_add_test(tc, test_key_without_role_or_with_bad_role_may_not_write);
	tcase_add_test(tc, test_pubkey_must_match_the_key_urn);
	tcase_add_test(tc, test_keys_changed_only_for_key_urns);
	tcase_add_test(tc, test_expiring_key_sets_keys_changed_when_purged);
	tcase_add_test(tc, test_keys_lists_registered_keys);
	tcase_add_test(tc, test_host_key_writes_its_host_and_assigned_procs);
	suite_add_tcase(s, tc);

	tc = tcase_create("epoch");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_put_rejects_stale_epoch);
	tcase_add_test(tc, test_put_accepts_same_or_newer_epoch);
	tcase_add_test(tc, test_epochs_compare_as_numbers_not_text);
	tcase_add_test(tc, test_stale_epoch_later_in_the_same_batch_is_rejected);
	tcase_add_test(tc, test_put_rejects_epoch_that_is_not_a_number_from_one);
	tcase_add_test(tc, test_epoch_rule_applies_only_to_proc_urns);
	suite_add_tcase(s, tc);

	tc = tcase_create("persistence");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_reopen_keeps_rows_and_applied);
	tcase_add_test(tc, test_wal_is_checkpointed_in_the_background);
	tcase_add_test(tc, test_snapshot_restore_round_trip);
	tcase_add_test(tc, test_restore_rejects_garbage_and_keeps_state);
	tcase_add_test(tc, test_open_fails_on_unwritable_path);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(suite());
}
