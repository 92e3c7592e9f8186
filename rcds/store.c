/*
 * store.c — the catalog's state machine on SQLite: applies committed Raft commands
 * (batches of signed assertions and deletes) deterministically, answers get, query and
 * key listings, and turns the database into a snapshot image and back.
 *
 * Not here: Raft (rcds/raft.c), sockets and the verification of request and assertion
 * signatures (the leader verifies before proposing, so apply checks shape only), and the
 * write rules themselves (rcds/auth.c). Every SQLite failure is logged once, where it is
 * found, and returned as SNIPE_EIO; a rejected write is a result, not a failure.
 */
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "sni.h"
#include "store.h"

#define REQUEST_ID_BYTES 16
#define REQUEST_RETAIN 100000u /* request ids are remembered for this many entries (an
                                 * entry holds one write or a batch of them) */
#define REQUEST_TRIM_EVERY 1024u /* ...and trimmed at indexes that are multiples of this */
#define QUERY_WHERE_MAX 32
#define KEY_PREFIX "urn:snipe:key:"

/* ----------------------------------------------------------------- schema */

/*
 * assertions keeps its rowid: a row holds the value twice (as value and inside the
 * signed content), up to 128 KiB, far above the ~1/20 of a page at which WITHOUT ROWID
 * tables pay off. The small tables are WITHOUT ROWID.
 */
static const char schema_sql[] =
	"BEGIN;"
	"CREATE TABLE IF NOT EXISTS assertions("
	" urn TEXT NOT NULL, attr TEXT NOT NULL, value BLOB NOT NULL,"
	" version INTEGER NOT NULL, author BLOB NOT NULL, expires INTEGER NOT NULL,"
	" content BLOB NOT NULL, signature BLOB NOT NULL,"
	" PRIMARY KEY (urn, attr));"
	"CREATE INDEX IF NOT EXISTS assertions_attr_value ON assertions(attr, value);"
	"CREATE INDEX IF NOT EXISTS assertions_expires ON assertions(expires)"
	" WHERE expires > 0;"
	"CREATE TABLE IF NOT EXISTS owners("
	" urn TEXT PRIMARY KEY NOT NULL, owner BLOB NOT NULL) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS requests("
	" id BLOB PRIMARY KEY NOT NULL, idx INTEGER NOT NULL, code INTEGER NOT NULL)"
	" WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS requests_idx ON requests(idx);"
	"CREATE TABLE IF NOT EXISTS meta("
	" key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) WITHOUT ROWID;"
	"COMMIT;";

/* ------------------------------------------------------------- statements */

/*
 * A row is hidden once 0 < expires <= now. Integers are stored as the bit pattern of
 * the uint64 (an expiry beyond 2^63 reads as negative and so never hides or purges,
 * as it should not for the next 292 million years).
 */
#define ROW_COLS "urn, attr, value, version, expires, author, content, signature"
#define QUERY_HEAD                                                                     \
	"SELECT " ROW_COLS " FROM assertions WHERE urn >= ?1 AND urn < ?2"                 \
	" AND (urn, attr) > (?3, ?4) AND NOT (expires > 0 AND expires <= ?5)"
#define QUERY_WHERE                                                                    \
	" AND urn IN (SELECT urn FROM assertions WHERE attr = ?%zu AND value = ?%zu"       \
	" AND NOT (expires > 0 AND expires <= ?5))"
#define QUERY_TAIL " ORDER BY urn, attr LIMIT ?6"
#define EXPIRED "expires > 0 AND expires <= ?1"

/* X(name, sql): the statements prepared once at open. */
#define STMTS(X)                                                                       \
	X(BEGIN, "BEGIN IMMEDIATE")                                                        \
	X(COMMIT, "COMMIT")                                                                \
	X(ROLLBACK, "ROLLBACK")                                                            \
	X(SAVEPOINT, "SAVEPOINT items")                                                    \
	X(ROLLBACK_TO, "ROLLBACK TO items")                                                \
	X(RELEASE, "RELEASE items")                                                        \
	X(APPLIED_GET, "SELECT value FROM meta WHERE key = 'applied'")                     \
	X(APPLIED_SET, "INSERT OR REPLACE INTO meta(key, value) VALUES ('applied', ?1)")   \
	X(REQ_GET, "SELECT idx, code FROM requests WHERE id = ?1")                         \
	X(REQ_PUT, "INSERT OR IGNORE INTO requests(id, idx, code) VALUES (?1, ?2, ?3)")    \
	X(REQ_TRIM, "DELETE FROM requests WHERE idx < ?1")                                 \
	X(EXPIRED_KEYS, "SELECT 1 FROM assertions WHERE " EXPIRED                          \
	                " AND urn >= '" KEY_PREFIX "' AND urn < 'urn:snipe:key;' LIMIT 1")  \
	X(PURGE_OWNERS, "DELETE FROM owners WHERE urn IN (SELECT urn FROM assertions"      \
	                " WHERE " EXPIRED ") AND NOT EXISTS (SELECT 1 FROM assertions a"   \
	                " WHERE a.urn = owners.urn AND NOT (a.expires > 0"                 \
	                " AND a.expires <= ?1))")                                          \
	X(PURGE, "DELETE FROM assertions WHERE " EXPIRED)                                  \
	X(MIN_EXPIRY, "SELECT MIN(expires) FROM assertions WHERE expires > 0")             \
	X(CELL_GET, "SELECT version, value FROM assertions WHERE urn = ?1 AND attr = ?2")  \
	X(CELL_PUT, "INSERT OR REPLACE INTO assertions(" ROW_COLS ")"                      \
	            " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")                            \
	X(CELL_DEL, "DELETE FROM assertions WHERE urn = ?1 AND attr = ?2")                 \
	X(URN_DEL, "DELETE FROM assertions WHERE urn = ?1")                                \
	X(OWNER_GET, "SELECT owner FROM owners WHERE urn = ?1")                            \
	X(OWNER_PUT, "INSERT OR IGNORE INTO owners(urn, owner) VALUES (?1, ?2)")           \
	X(OWNER_DROP, "DELETE FROM owners WHERE urn = ?1"                                  \
	              " AND NOT EXISTS (SELECT 1 FROM assertions WHERE urn = ?1)")         \
	X(GET, "SELECT " ROW_COLS " FROM assertions WHERE urn = ?1"                        \
	       " AND NOT (expires > 0 AND expires <= ?2) ORDER BY attr")                   \
	X(QUERY, QUERY_HEAD QUERY_TAIL)                                                    \
	X(KEYS, "SELECT p.urn, p.value, r.value FROM assertions p JOIN assertions r"       \
	        " ON r.urn = p.urn AND r.attr = 'role' WHERE p.attr = 'pubkey'"            \
	        " AND p.urn >= '" KEY_PREFIX "' AND p.urn < 'urn:snipe:key;'"              \
	        " ORDER BY p.urn")

enum stmt_id {
#define STMT_ENUM_(name, sql) ST_##name,
	STMTS(STMT_ENUM_)
#undef STMT_ENUM_
	ST_COUNT
};

static const char *const stmt_sql[] = {
#define STMT_SQL_(name, sql) sql,
	STMTS(STMT_SQL_)
#undef STMT_SQL_
};

static const char *const stmt_name[] = {
#define STMT_NAME_(name, sql) #name,
	STMTS(STMT_NAME_)
#undef STMT_NAME_
};

#define BATCH_MAX 4096

struct rcds_store {
	sqlite3 *db;
	bool memory;
	uint64_t applied;
	/* Applies are grouped into one transaction until rcds_store_flush (or BATCH_MAX
	 * entries): most pages a write touches are shared with the next one's. */
	bool in_batch;
	unsigned batched;
	uint64_t committed; /* applied as of the last commit */
	uint64_t next_expiry; /* no assertion expires before this (UINT64_MAX: none) */
	uint8_t admin[SNIPE_PK_BYTES];
	sqlite3_stmt *st[ST_COUNT];
	struct checkpointer *checkpointer; /* NULL for a store in memory */
};

/* ------------------------------------------------------------ checkpoints */

/*
 * Copying the WAL back into the database file, and the fsync that ends it, took up to
 * 16 ms at a time, and SQLite does it in the connection that commits: the replica's
 * loop, which then answered nothing. A thread with its own connection does it instead,
 * PASSIVE (it never blocks the loop's writes), once CHECKPOINT_PAGES pages of WAL have
 * built up. Rare checkpoints copy a page rewritten many times only once. SQLite starts
 * the WAL over at a commit that finds it all copied back; under 20 s of 64 writers the
 * file grew to 54 MiB in 7 s and stayed there.
 */
#define CHECKPOINT_PAGES 16384 /* 16 MiB of 1 KiB pages */

struct checkpointer {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool due, stop;
	int pages; /* checkpoint once the WAL is this long; CHECKPOINT_PAGES */
	sqlite3 *db;
};

static void *checkpointer_main(void *arg)
{
	struct checkpointer *k = arg;
	pthread_mutex_lock(&k->lock);
	for (;;) {
		while (!k->due && !k->stop)
			pthread_cond_wait(&k->wake, &k->lock);
		if (k->stop)
			break;
		k->due = false;
		pthread_mutex_unlock(&k->lock);
		int rc = sqlite3_wal_checkpoint_v2(k->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL,
		                                   NULL);
		if (rc != SQLITE_OK && rc != SQLITE_BUSY)
			snipe_log(SNIPE_LOG_WARN, "store", "checkpoint failed sqlite=%d error=\"%s\"",
			          rc, sqlite3_errmsg(k->db));
		pthread_mutex_lock(&k->lock);
	}
	pthread_mutex_unlock(&k->lock);
	return NULL;
}

/* After each commit of the loop's connection: pages is the WAL's length. */
static int wal_grown(void *arg, sqlite3 *db, const char *name, int pages)
{
	struct checkpointer *k = arg;
	(void)db;
	(void)name;
	if (pages >= k->pages) {
		pthread_mutex_lock(&k->lock);
		k->due = true;
		pthread_cond_signal(&k->wake);
		pthread_mutex_unlock(&k->lock);
	}
	return SQLITE_OK;
}

static void checkpointer_stop(struct checkpointer *k)
{
	if (k == NULL)
		return;
	pthread_mutex_lock(&k->lock);
	k->stop = true;
	pthread_cond_signal(&k->wake);
	pthread_mutex_unlock(&k->lock);
	pthread_join(k->thread, NULL);
	pthread_cond_destroy(&k->wake);
	pthread_mutex_destroy(&k->lock);
	sqlite3_close(k->db);
	free(k);
}

/* Starts the checkpoint thread of a store in a file, in WAL mode. */
static int checkpointer_start(rcds_store *s, const char *path, char *err, size_t errlen)
{
	struct checkpointer *k = calloc(1, sizeof(*k));
	if (k == NULL)
		return sni_err(err, errlen, SNIPE_ENOMEM, "out of memory");
	/* The journal mode is read with the file: a connection that has not read it does
	 * not checkpoint (it reports "not in WAL mode"). */
	if (sqlite3_open_v2(path, &k->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
	            SQLITE_OK ||
	    sqlite3_exec(k->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK) {
		int rc = sni_err(err, errlen, SNIPE_EIO, "catalog database %s: checkpoint "
		                 "connection: %s", path, sqlite3_errmsg(k->db));
		sqlite3_close(k->db);
		free(k);
		return rc;
	}
	k->pages = CHECKPOINT_PAGES;
	pthread_mutex_init(&k->lock, NULL);
	pthread_cond_init(&k->wake, NULL);
	if (pthread_create(&k->thread, NULL, checkpointer_main, k) != 0) {
		pthread_cond_destroy(&k->wake);
		pthread_mutex_destroy(&k->lock);
		sqlite3_close(k->db);
		free(k);
		return sni_err(err, errlen, SNIPE_ENOMEM, "cannot start the checkpoint thread");
	}
	s->checkpointer = k;
	sqlite3_wal_hook(s->db, wal_grown, k); /* replaces SQLite's own checkpoints */
	/* A restore (backup into this file) waits for a checkpoint in progress. */
	sqlite3_busy_timeout(s->db, 10000);
	return SNIPE_OK;
}

void rcds_store_set_checkpoint_pages(rcds_store *s, int pages)
{
	if (s->checkpointer != NULL && pages > 0)
		s->checkpointer->pages = pages;
}

/* ------------------------------------------------------- sqlite plumbing */

/* Logs a database failure where it is found and gives SNIPE_EIO. */
static int db_fail_on(sqlite3 *db, const char *what)
{
	snipe_log(SNIPE_LOG_ERROR, "store", "database failure op=%s sqlite=%d error=\"%s\"",
	          what, sqlite3_extended_errcode(db), sqlite3_errmsg(db));
	return SNIPE_EIO;
}

static int db_fail(const rcds_store *s, enum stmt_id id)
{
	return db_fail_on(s->db, stmt_name[id]);
}

static int bind_text(sqlite3_stmt *st, int i, const char *text)
{
	return sqlite3_bind_text(st, i, text, -1, SQLITE_STATIC);
}

/* An empty blob, not NULL, even when p is NULL. */
static int bind_blob(sqlite3_stmt *st, int i, const void *p, size_t n)
{
	return sqlite3_bind_blob64(st, i, n > 0 ? p : "", n, SQLITE_STATIC);
}

static int bind_u64(sqlite3_stmt *st, int i, uint64_t v)
{
	return sqlite3_bind_int64(st, i, (sqlite3_int64)v);
}

static uint64_t column_u64(sqlite3_stmt *st, int i)
{
	return (uint64_t)sqlite3_column_int64(st, i);
}

/* Ends a use of a statement: resets it and drops its bindings. */
static void st_end(rcds_store *s, enum stmt_id id)
{
	sqlite3_reset(s->st[id]);
	sqlite3_clear_bindings(s->st[id]);
}

/* Checks the OR of a statement's bind results. */
static int st_bound(rcds_store *s, enum stmt_id id, int rc)
{
	if (rc == SQLITE_OK)
		return SNIPE_OK;
	rc = db_fail(s, id);
	st_end(s, id);
	return rc;
}

/* Runs a statement that gives no rows, then ends it. */
static int st_done(rcds_store *s, enum stmt_id id)
{
	int rc = sqlite3_step(s->st[id]) == SQLITE_DONE ? SNIPE_OK : db_fail(s, id);
	st_end(s, id);
	return rc;
}

/* Runs a statement whose only parameter ?1 is v. */
static int run_u64(rcds_store *s, enum stmt_id id, uint64_t v)
{
	int rc = st_bound(s, id, bind_u64(s->st[id], 1, v));
	return rc == SNIPE_OK ? st_done(s, id) : rc;
}

/* Runs a statement whose only parameter ?1 is text. */
static int run_text(rcds_store *s, enum stmt_id id, const char *text)
{
	int rc = st_bound(s, id, bind_text(s->st[id], 1, text));
	return rc == SNIPE_OK ? st_done(s, id) : rc;
}

/* Steps to the first row. If *found, the caller reads it and calls st_end; otherwise
 * (and on failure) the statement is already ended. */
static int st_row(rcds_store *s, enum stmt_id id, bool *found)
{
	int rc = sqlite3_step(s->st[id]);
	*found = rc == SQLITE_ROW;
	if (*found)
		return SNIPE_OK;
	rc = rc == SQLITE_DONE ? SNIPE_OK : db_fail(s, id);
	st_end(s, id);
	return rc;
}

/* ---------------------------------------------------------- open / close */

static int open_fail(sqlite3 *db, const char *path, const char *what, char *err,
                     size_t errlen)
{
	return sni_err(err, errlen, SNIPE_EIO, "catalog database %s: %s: %s", path, what,
	               db != NULL ? sqlite3_errmsg(db) : "out of memory");
}

static int configure(rcds_store *s, const char *path, char *err, size_t errlen)
{
	/* Small pages: a write dirties a few pages scattered over the B-trees (random
	 * URNs and request ids), and each dirty page is written whole to the WAL; 1 KiB
	 * pages quarter those bytes (only takes effect when the file is created). The
	 * checkpoints are the checkpointer's (above). */
	if (sqlite3_exec(s->db, "PRAGMA page_size=1024; PRAGMA cache_size=-65536", NULL, NULL,
	                 NULL) != SQLITE_OK)
		return open_fail(s->db, path, "cannot set the page size", err, errlen);
	if (!s->memory && sqlite3_exec(s->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) !=
	                          SQLITE_OK)
		return open_fail(s->db, path, "cannot set WAL mode", err, errlen);
	if (sqlite3_exec(s->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) != SQLITE_OK)
		return open_fail(s->db, path, "cannot set synchronous", err, errlen);
	if (sqlite3_exec(s->db, schema_sql, NULL, NULL, NULL) != SQLITE_OK)
		return open_fail(s->db, path, "cannot create the schema", err, errlen);
	for (int i = 0; i < ST_COUNT; i++) {
		if (sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
		                       &s->st[i], NULL) != SQLITE_OK)
			return open_fail(s->db, path, stmt_name[i], err, errlen);
	}
	return SNIPE_OK;
}

static int load_next_expiry(rcds_store *s)
{
	bool found;
	int rc = st_row(s, ST_MIN_EXPIRY, &found);
	if (rc != SNIPE_OK)
		return rc;
	s->next_expiry = UINT64_MAX;
	if (found) {
		if (sqlite3_column_type(s->st[ST_MIN_EXPIRY], 0) != SQLITE_NULL)
			s->next_expiry = column_u64(s->st[ST_MIN_EXPIRY], 0);
		st_end(s, ST_MIN_EXPIRY);
	}
	return SNIPE_OK;
}

/* What the store keeps in memory about its file: applied index, next expiry. */
static int load_applied(rcds_store *s)
{
	bool found;
	int rc = st_row(s, ST_APPLIED_GET, &found);
	if (rc != SNIPE_OK)
		return rc;
	s->applied = found ? column_u64(s->st[ST_APPLIED_GET], 0) : 0;
	s->committed = s->applied;
	if (found)
		st_end(s, ST_APPLIED_GET);
	return load_next_expiry(s);
}

void rcds_store_init(void)
{
	sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

int rcds_store_open(const char *path, const uint8_t *admin_pk, rcds_store **out, char *err,
                    size_t errlen)
{
	*out = NULL;
	if (path == NULL || admin_pk == NULL)
		return sni_err(err, errlen, SNIPE_EINVAL, "no database path or admin key");
	rcds_store *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return sni_err(err, errlen, SNIPE_ENOMEM, "out of memory");
	memcpy(s->admin, admin_pk, SNIPE_PK_BYTES);
	s->memory = strcmp(path, ":memory:") == 0;

	int rc = SNIPE_OK;
	/* NOMUTEX: a store is used by one thread at a time (the replica's loop). */
	if (sqlite3_open_v2(path, &s->db,
	                    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
	                    NULL) != SQLITE_OK) {
		rc = open_fail(s->db, path, "cannot open", err, errlen);
		goto fail;
	}
	rc = configure(s, path, err, errlen);
	if (rc == SNIPE_OK && !s->memory)
		rc = checkpointer_start(s, path, err, errlen);
	if (rc != SNIPE_OK)
		goto fail;
	rc = load_applied(s);
	if (rc != SNIPE_OK) {
		sni_err(err, errlen, rc, "catalog database %s: cannot read the applied index",
		        path);
		goto fail;
	}
	*out = s;
	return SNIPE_OK;
fail:
	rcds_store_close(s);
	return rc;
}

void rcds_store_close(rcds_store *s)
{
	if (s == NULL)
		return;
	rcds_store_flush(s);
	checkpointer_stop(s->checkpointer);
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(s->st[i]);
	sqlite3_close(s->db);
	free(s);
}

uint64_t rcds_store_applied(const rcds_store *s)
{
	return s->applied;
}

/* ---------------------------------------------------------------- lookups */

/* The version of (urn, attr), 0 and !*found if absent; with buf, also its value as a C
 * string when it fits in cap bytes and holds no NUL (else !*str_ok). */
static int cell_get(rcds_store *s, const char *urn, const char *attr, uint64_t *version,
                    bool *found, char *buf, size_t cap, bool *str_ok)
{
	sqlite3_stmt *st = s->st[ST_CELL_GET];
	int rc = st_bound(s, ST_CELL_GET, bind_text(st, 1, urn) | bind_text(st, 2, attr));
	if (rc == SNIPE_OK)
		rc = st_row(s, ST_CELL_GET, found);
	*version = 0;
	if (str_ok != NULL)
		*str_ok = false;
	if (rc != SNIPE_OK || !*found)
		return rc;
	*version = column_u64(st, 0);
	const void *v = sqlite3_column_blob(st, 1);
	size_t n = (size_t)sqlite3_column_bytes(st, 1);
	if (buf != NULL && n < cap && (n == 0 || memchr(v, 0, n) == NULL)) {
		if (n > 0)
			memcpy(buf, v, n);
		buf[n] = '\0';
		*str_ok = true;
	}
	st_end(s, ST_CELL_GET);
	return SNIPE_OK;
}

/* The value of (urn, attr) as a string, if present and it fits (see cell_get). */
static int cell_string(rcds_store *s, const char *urn, const char *attr, char *buf,
                       size_t cap, bool *ok)
{
	uint64_t version;
	bool found;
	return cell_get(s, urn, attr, &version, &found, buf, cap, ok);
}

static int owner_get(rcds_store *s, const char *urn, uint8_t owner[SNIPE_PK_BYTES],
                     bool *found)
{
	sqlite3_stmt *st = s->st[ST_OWNER_GET];
	int rc = st_bound(s, ST_OWNER_GET, bind_text(st, 1, urn));
	if (rc == SNIPE_OK)
		rc = st_row(s, ST_OWNER_GET, found);
	if (rc != SNIPE_OK || !*found)
		return rc;
	*found = sqlite3_column_bytes(st, 0) == SNIPE_PK_BYTES;
	if (*found)
		memcpy(owner, sqlite3_column_blob(st, 0), SNIPE_PK_BYTES);
	st_end(s, ST_OWNER_GET);
	return SNIPE_OK;
}

static void key_urn(const uint8_t pk[SNIPE_PK_BYTES], char out[SNIPE_URN_MAX])
{
	uint8_t id[SNIPE_KEYID_BYTES];
	char hex[SNIPE_KEYID_HEX];

	snipe_keyid(pk, id);
	snipe_keyid_hex(id, hex);
	snprintf(out, SNIPE_URN_MAX, KEY_PREFIX "%s", hex);
}

/* ------------------------------------------------------- authorisation */

/* What one command's items share: its index, its signer, and what changed. */
typedef struct apply_ctx {
	uint64_t index;
	const Snipe__Command *cmd;
	rcds_principal who;
	char host[SNIPE_URN_NAME_MAX + 1]; /* who.host points here */
	bool keys_touched;
} apply_ctx;

/* The admin key, or a key registered on urn:snipe:key:<id> whose pubkey is the signer. */
static int resolve_signer(rcds_store *s, apply_ctx *a)
{
	const uint8_t *pk = a->cmd->signer.data;
	char urn[SNIPE_URN_MAX], hex[SNIPE_PK_HEX], role[16];
	uint8_t registered[SNIPE_PK_BYTES];
	bool ok;

	a->who = (rcds_principal){.role = RCDS_ROLE_NONE, .pk = pk, .host = NULL};
	if (memcmp(pk, s->admin, SNIPE_PK_BYTES) == 0) {
		a->who.role = RCDS_ROLE_ADMIN;
		return SNIPE_OK;
	}
	key_urn(pk, urn);
	int rc = cell_string(s, urn, "pubkey", hex, sizeof(hex), &ok);
	if (rc != SNIPE_OK || !ok || snipe_pk_parse(hex, registered) != SNIPE_OK ||
	    memcmp(registered, pk, SNIPE_PK_BYTES) != 0)
		return rc;
	rc = cell_string(s, urn, "role", role, sizeof(role), &ok);
	if (rc != SNIPE_OK || !ok)
		return rc;
	a->who.role = rcds_role_parse(role, strlen(role));
	rc = cell_string(s, urn, "host", a->host, sizeof(a->host), &ok);
	if (rc == SNIPE_OK && ok)
		a->who.host = a->host;
	return rc;
}

/* Looks up the URN's owner and, for a process, its host, then asks the rules.
 * SNIPE_EIO only if the database failed. */
static int authorise(rcds_store *s, const apply_ctx *a, const snipe_urn *u, const char *urn,
                     char *err, size_t errlen)
{
	uint8_t owner[SNIPE_PK_BYTES];
	char host[SNIPE_URN_NAME_MAX + 1];
	bool has_owner, has_host = false;

	int rc = owner_get(s, urn, owner, &has_owner);
	if (rc == SNIPE_OK && u->kind == SNIPE_KIND_PROC)
		rc = cell_string(s, urn, "host", host, sizeof(host), &has_host);
	/* a checkpoint urn:snipe:ckpt:<process name>/<seq> belongs with its process */
	const char *slash = u->kind == SNIPE_KIND_CKPT ? strrchr(u->name, '/') : NULL;
	if (rc == SNIPE_OK && slash != NULL) {
		char proc[SNIPE_URN_MAX];
		snprintf(proc, sizeof(proc), "urn:snipe:proc:%.*s", (int)(slash - u->name), u->name);
		rc = cell_string(s, proc, "host", host, sizeof(host), &has_host);
	}
	if (rc != SNIPE_OK)
		return rc;
	rcds_target t = {
		.urn = u,
		.owner = has_owner ? owner : NULL,
		.proc_host = has_host ? host : NULL,
	};
	return rcds_auth_write(&a->who, &t, err, errlen);
}

/* ------------------------------------------------------------------- puts */

/* urn:snipe:key:<id> pubkey must be the hex of a key whose id is <id>. */
static int check_pubkey(const Snipe__AssertionContent *c, const snipe_urn *u, char *err,
                        size_t errlen)
{
	char hex[SNIPE_PK_HEX], id_hex[SNIPE_KEYID_HEX];
	uint8_t pk[SNIPE_PK_BYTES], id[SNIPE_KEYID_BYTES];

	if (u->kind != SNIPE_KIND_KEY || strcmp(c->attr, "pubkey") != 0)
		return SNIPE_OK;
	if (c->value.len != 2 * SNIPE_PK_BYTES)
		return sni_err(err, errlen, SNIPE_EINVAL,
		               "%s pubkey: value must be 64 hex digits (got %zu bytes)", c->urn,
		               c->value.len);
	memcpy(hex, c->value.data, 2 * SNIPE_PK_BYTES);
	hex[2 * SNIPE_PK_BYTES] = '\0';
	if (snipe_pk_parse(hex, pk) != SNIPE_OK)
		return sni_err(err, errlen, SNIPE_EINVAL, "%s pubkey: value is not 64 hex digits",
		               c->urn);
	snipe_keyid(pk, id);
	snipe_keyid_hex(id, id_hex);
	if (strcmp(id_hex, u->name) != 0)
		return sni_err(err, errlen, SNIPE_EINVAL, "%s pubkey: the key's id is %s",
		               c->urn, id_hex);
	return SNIPE_OK;
}

/* Compare-and-set: with check, the current version (0 if absent) must be expect. */
static int check_version(rcds_store *s, const char *urn, const char *attr, bool check,
                         uint64_t expect, char *err, size_t errlen)
{
	uint64_t version;
	bool found;

	if (!check)
		return SNIPE_OK;
	int rc = cell_get(s, urn, attr, &version, &found, NULL, 0, NULL);
	if (rc == SNIPE_OK && version != expect)
		rc = sni_err(err, errlen, SNIPE_ECONFLICT,
		             "%s %s: version is %" PRIu64 ", expected %" PRIu64, urn, attr,
		             version, expect);
	return rc;
}

/* A process's epoch only moves forward: a write carrying an older epoch than the one
 * stored comes from an instance that has been replaced (SNIPE_ESTALE). */
static int check_epoch(rcds_store *s, const Snipe__AssertionContent *c, const snipe_urn *u,
                       char *err, size_t errlen)
{
	char cur[24], val[24];
	bool ok;
	uint64_t have, want;

	if (u->kind != SNIPE_KIND_PROC || strcmp(c->attr, "epoch") != 0)
		return SNIPE_OK;
	if (c->value.len == 0 || c->value.len >= sizeof(val) ||
	    memchr(c->value.data, 0, c->value.len) != NULL)
		return sni_err(err, errlen, SNIPE_EINVAL, "%s epoch: not a number", c->urn);
	memcpy(val, c->value.data, c->value.len);
	val[c->value.len] = '\0';
	if (snipe_parse_u64(val, 1, UINT64_MAX, &want) != SNIPE_OK)
		return sni_err(err, errlen, SNIPE_EINVAL, "%s epoch: '%s' is not a number >= 1",
		               c->urn, val);
	int rc = cell_string(s, c->urn, "epoch", cur, sizeof(cur), &ok);
	if (rc != SNIPE_OK || !ok || snipe_parse_u64(cur, 0, UINT64_MAX, &have) != SNIPE_OK)
		return rc;
	if (want < have)
		return sni_err(err, errlen, SNIPE_ESTALE, "%s: epoch %" PRIu64 " is stale (now %" PRIu64
		               ")", c->urn, want, have);
	return SNIPE_OK;
}

static int put_checks(rcds_store *s, const apply_ctx *a, const Snipe__PutItem *it,
                      const Snipe__AssertionContent *c, snipe_urn *u, char *err,
                      size_t errlen)
{
	char canon[SNIPE_URN_MAX] = "";

	if (memcmp(it->assertion->author.data, a->cmd->signer.data, SNIPE_PK_BYTES) != 0)
		return sni_err(err, errlen, SNIPE_EDENIED,
		               "%s %s: the assertion's author is not the requester", c->urn, c->attr);
	if (c->expires_ms != 0 && c->expires_ms <= a->cmd->time_ms)
		return sni_err(err, errlen, SNIPE_EEXPIRED,
		               "%s %s: expired at %" PRIu64 " (now %" PRIu64 ")", c->urn, c->attr,
		               c->expires_ms, a->cmd->time_ms);
	int rc = snipe_urn_parse(c->urn, u, err, errlen);
	if (rc != SNIPE_OK)
		return rc;
	if (snipe_urn_format(u, canon, sizeof(canon)) != SNIPE_OK || strcmp(canon, c->urn) != 0)
		return sni_err(err, errlen, SNIPE_EINVAL, "%s: URN must be written as %s", c->urn,
		               canon);
	rc = authorise(s, a, u, c->urn, err, errlen);
	if (rc == SNIPE_OK)
		rc = check_pubkey(c, u, err, errlen);
	if (rc == SNIPE_OK)
		rc = check_epoch(s, c, u, err, errlen);
	if (rc == SNIPE_OK)
		rc = check_version(s, c->urn, c->attr, it->check_version, it->expect_version, err,
		                   errlen);
	return rc;
}

static int put_write(rcds_store *s, const apply_ctx *a, const Snipe__Assertion *as,
                     const Snipe__AssertionContent *c)
{
	sqlite3_stmt *st = s->st[ST_CELL_PUT];
	int rc = st_bound(s, ST_CELL_PUT,
	                  bind_text(st, 1, c->urn) | bind_text(st, 2, c->attr) |
	                          bind_blob(st, 3, c->value.data, c->value.len) |
	                          bind_u64(st, 4, a->index) | bind_u64(st, 5, c->expires_ms) |
	                          bind_blob(st, 6, as->author.data, as->author.len) |
	                          bind_blob(st, 7, as->content.data, as->content.len) |
	                          bind_blob(st, 8, as->signature.data, as->signature.len));
	if (rc == SNIPE_OK)
		rc = st_done(s, ST_CELL_PUT);
	if (rc != SNIPE_OK)
		return rc;
	if (c->expires_ms > 0 && c->expires_ms < s->next_expiry)
		s->next_expiry = c->expires_ms;
	st = s->st[ST_OWNER_PUT];
	rc = st_bound(s, ST_OWNER_PUT,
	              bind_text(st, 1, c->urn) |
	                      bind_blob(st, 2, a->cmd->signer.data, SNIPE_PK_BYTES));
	return rc == SNIPE_OK ? st_done(s, ST_OWNER_PUT) : rc;
}

/* One put: a rejection code with err saying why, or SNIPE_EIO if the database failed. */
static int put_item(rcds_store *s, apply_ctx *a, const Snipe__PutItem *it, char *err,
                    size_t errlen)
{
	const Snipe__Assertion *as = it != NULL ? it->assertion : NULL;
	Snipe__AssertionContent *c = NULL;
	snipe_urn u;

	if (as == NULL)
		return sni_err(err, errlen, SNIPE_EINVAL, "no assertion");
	int rc = sni_assertion_check(as->content.data, as->content.len, as->author.data,
	                             as->author.len, as->signature.data, as->signature.len,
	                             false, &c, err, errlen);
	if (rc != SNIPE_OK)
		return rc;
	rc = put_checks(s, a, it, c, &u, err, errlen);
	if (rc == SNIPE_OK)
		rc = put_write(s, a, as, c);
	if (rc == SNIPE_OK && u.kind == SNIPE_KIND_KEY)
		a->keys_touched = true;
	snipe__assertion_content__free_unpacked(c, NULL);
	return rc;
}

/* ---------------------------------------------------------------- deletes */

static int delete_urn(rcds_store *s, const char *urn, char *err, size_t errlen)
{
	int rc = run_text(s, ST_URN_DEL, urn);
	if (rc == SNIPE_OK && sqlite3_changes(s->db) == 0)
		rc = sni_err(err, errlen, SNIPE_ENOTFOUND, "%s has no assertions", urn);
	return rc;
}

static int delete_cell(rcds_store *s, const Snipe__DeleteItem *it, const char *urn,
                       char *err, size_t errlen)
{
	uint64_t version;
	bool found;

	int rc = cell_get(s, urn, it->attr, &version, &found, NULL, 0, NULL);
	if (rc == SNIPE_OK && !found)
		rc = sni_err(err, errlen, SNIPE_ENOTFOUND, "%s has no attribute %s", urn, it->attr);
	if (rc == SNIPE_OK)
		rc = check_version(s, urn, it->attr, it->check_version, it->expect_version, err,
		                   errlen);
	if (rc != SNIPE_OK)
		return rc;
	sqlite3_stmt *st = s->st[ST_CELL_DEL];
	rc = st_bound(s, ST_CELL_DEL, bind_text(st, 1, urn) | bind_text(st, 2, it->attr));
	return rc == SNIPE_OK ? st_done(s, ST_CELL_DEL) : rc;
}

/* One delete: as put_item. The URN may be given in any case the parser accepts. */
static int delete_item(rcds_store *s, apply_ctx *a, const Snipe__DeleteItem *it, char *err,
                       size_t errlen)
{
	char urn[SNIPE_URN_MAX];
	snipe_urn u;

	if (it == NULL)
		return sni_err(err, errlen, SNIPE_EINVAL, "no delete item");
	bool whole = it->attr == NULL || it->attr[0] == '\0';
	int rc = snipe_urn_parse(it->urn, &u, err, errlen);
	if (rc == SNIPE_OK && snipe_urn_format(&u, urn, sizeof(urn)) != SNIPE_OK)
		rc = sni_err(err, errlen, SNIPE_EINVAL, "invalid URN");
	if (rc == SNIPE_OK && !whole)
		rc = sni_attr_validate(it->attr, err, errlen);
	if (rc == SNIPE_OK && whole && it->check_version)
		rc = sni_err(err, errlen, SNIPE_EINVAL, "%s: check_version needs an attribute", urn);
	if (rc == SNIPE_OK)
		rc = authorise(s, a, &u, urn, err, errlen);
	if (rc == SNIPE_OK)
		rc = whole ? delete_urn(s, urn, err, errlen) : delete_cell(s, it, urn, err, errlen);
	if (rc == SNIPE_OK)
		rc = run_text(s, ST_OWNER_DROP, urn);
	if (rc == SNIPE_OK && u.kind == SNIPE_KIND_KEY)
		a->keys_touched = true;
	return rc;
}

/* ------------------------------------------------------------------ apply */

static void reject(rcds_result *res, int code, const char *what, size_t item,
                   const char *why)
{
	res->code = code;
	snprintf(res->reason, sizeof(res->reason), "%s %zu: %s", what, item, why);
}

/* Every item, in order; the first rejection stops the batch and is put in res. */
static int apply_items(rcds_store *s, apply_ctx *a, const Snipe__WriteRequest *w,
                       rcds_result *res)
{
	char err[sizeof(res->reason)] = "";
	int rc = SNIPE_OK;
	size_t i;

	/* Items are numbered from 1 in reasons, as people count them. */
	for (i = 0; i < w->n_puts && rc == SNIPE_OK; i++)
		if ((rc = put_item(s, a, w->puts[i], err, sizeof(err))) != SNIPE_OK)
			break;
	if (rc != SNIPE_OK && rc != SNIPE_EIO)
		reject(res, rc, "put", i + 1, err);
	if (rc != SNIPE_OK)
		return rc == SNIPE_EIO ? rc : SNIPE_OK;
	for (i = 0; i < w->n_deletes && rc == SNIPE_OK; i++)
		if ((rc = delete_item(s, a, w->deletes[i], err, sizeof(err))) != SNIPE_OK)
			break;
	if (rc != SNIPE_OK && rc != SNIPE_EIO)
		reject(res, rc, "delete", i + 1, err);
	return rc == SNIPE_EIO ? rc : SNIPE_OK;
}

/* The batch inside a savepoint, undone whole if any item is rejected. */
static int apply_write(rcds_store *s, uint64_t index, const Snipe__Command *cmd,
                       rcds_result *res)
{
	const Snipe__WriteRequest *w = cmd->write;
	apply_ctx a = {.index = index, .cmd = cmd};

	if (w == NULL || (w->n_puts == 0 && w->n_deletes == 0)) {
		res->code = sni_err(res->reason, sizeof(res->reason), SNIPE_EINVAL, "empty write");
		return SNIPE_OK;
	}
	if (cmd->signer.len != SNIPE_PK_BYTES) {
		res->code = sni_err(res->reason, sizeof(res->reason), SNIPE_EINVAL,
		                    "signer key is %zu bytes, not %d", cmd->signer.len,
		                    SNIPE_PK_BYTES);
		return SNIPE_OK;
	}
	int rc = resolve_signer(s, &a);
	if (rc == SNIPE_OK)
		rc = st_done(s, ST_SAVEPOINT);
	if (rc == SNIPE_OK)
		rc = apply_items(s, &a, w, res);
	if (rc == SNIPE_OK && res->code != SNIPE_OK)
		rc = st_done(s, ST_ROLLBACK_TO);
	if (rc == SNIPE_OK)
		rc = st_done(s, ST_RELEASE);
	if (rc == SNIPE_OK && res->code == SNIPE_OK && a.keys_touched)
		res->keys_changed = true;
	return rc;
}

/* A request id applied before: res repeats its result. */
static int find_request(rcds_store *s, const Snipe__Command *cmd, rcds_result *res,
                        bool *found)
{
	sqlite3_stmt *st = s->st[ST_REQ_GET];
	int rc = st_bound(s, ST_REQ_GET, bind_blob(st, 1, cmd->request_id.data,
	                                           cmd->request_id.len));
	if (rc == SNIPE_OK)
		rc = st_row(s, ST_REQ_GET, found);
	if (rc != SNIPE_OK || !*found)
		return rc;
	res->index = column_u64(st, 0);
	res->code = sqlite3_column_int(st, 1);
	st_end(s, ST_REQ_GET);
	if (res->code != SNIPE_OK)
		snprintf(res->reason, sizeof(res->reason),
		         "request already applied at index %" PRIu64 ": %s", res->index,
		         snipe_strerror(res->code));
	return SNIPE_OK;
}

/* Drops assertions expired at now (and owners of URNs left empty). */
static int purge(rcds_store *s, uint64_t now, rcds_result *res)
{
	if (now < s->next_expiry)
		return SNIPE_OK;
	bool found;
	int rc = st_bound(s, ST_EXPIRED_KEYS, bind_u64(s->st[ST_EXPIRED_KEYS], 1, now));
	if (rc == SNIPE_OK)
		rc = st_row(s, ST_EXPIRED_KEYS, &found);
	if (rc != SNIPE_OK)
		return rc;
	if (found) {
		res->keys_changed = true;
		st_end(s, ST_EXPIRED_KEYS);
	}
	rc = run_u64(s, ST_PURGE_OWNERS, now);
	if (rc == SNIPE_OK)
		rc = run_u64(s, ST_PURGE, now);
	return rc == SNIPE_OK ? load_next_expiry(s) : rc;
}

static int apply_command(rcds_store *s, uint64_t index, const Snipe__Command *cmd,
                         rcds_result *res)
{
	bool found;

	if (cmd->request_id.len != REQUEST_ID_BYTES) {
		res->code = sni_err(res->reason, sizeof(res->reason), SNIPE_EINVAL,
		                    "request id is %zu bytes, not %d", cmd->request_id.len,
		                    REQUEST_ID_BYTES);
		return SNIPE_OK;
	}
	int rc = find_request(s, cmd, res, &found);
	if (rc != SNIPE_OK || found)
		return rc;
	rc = purge(s, cmd->time_ms, res);
	return rc == SNIPE_OK ? apply_write(s, index, cmd, res) : rc;
}

/* Records the result under the request id. */
static int finish(rcds_store *s, const Snipe__Command *cmd, const rcds_result *res)
{
	sqlite3_stmt *st = s->st[ST_REQ_PUT];
	if (cmd->request_id.len != REQUEST_ID_BYTES)
		return SNIPE_OK;
	int rc = st_bound(s, ST_REQ_PUT,
	                  bind_blob(st, 1, cmd->request_id.data, REQUEST_ID_BYTES) |
	                          bind_u64(st, 2, res->index) | sqlite3_bind_int(st, 3, res->code));
	return rc == SNIPE_OK ? st_done(s, ST_REQ_PUT) : rc;
}

bool rcds_store_pending(const rcds_store *s)
{
	return s->in_batch;
}

int rcds_store_flush(rcds_store *s)
{
	if (!s->in_batch)
		return SNIPE_OK;
	s->in_batch = false;
	s->batched = 0;
	int rc = run_u64(s, ST_APPLIED_SET, s->applied);
	if (rc == SNIPE_OK)
		rc = st_done(s, ST_COMMIT);
	if (rc == SNIPE_OK) {
		s->committed = s->applied;
		return SNIPE_OK;
	}
	if (!sqlite3_get_autocommit(s->db))
		st_done(s, ST_ROLLBACK);
	s->applied = s->committed;
	return rc;
}

int rcds_store_apply(rcds_store *s, uint64_t index, const Snipe__Command *const *cmds,
                     size_t n, rcds_result *res)
{
	for (size_t i = 0; i < n; i++) {
		memset(&res[i], 0, sizeof(res[i]));
		res[i].code = SNIPE_OK;
		res[i].index = index;
	}
	if (index <= s->applied)
		return SNIPE_OK;
	int rc = s->in_batch ? SNIPE_OK : st_done(s, ST_BEGIN);
	if (rc != SNIPE_OK)
		goto fail;
	s->in_batch = true;
	for (size_t i = 0; i < n && rc == SNIPE_OK; i++) {
		if (cmds[i] == NULL) {
			res[i].code = sni_err(res[i].reason, sizeof(res[i].reason), SNIPE_EDECODE,
			                      "command %zu of the entry does not decode", i + 1);
			continue;
		}
		rc = apply_command(s, index, cmds[i], &res[i]);
		if (rc == SNIPE_OK)
			rc = finish(s, cmds[i], &res[i]);
	}
	if (rc == SNIPE_OK && index > REQUEST_RETAIN && index % REQUEST_TRIM_EVERY == 0)
		rc = run_u64(s, ST_REQ_TRIM, index - REQUEST_RETAIN);
	if (rc != SNIPE_OK)
		goto fail;
	s->applied = index;
	s->batched += n;
	if (s->batched >= BATCH_MAX)
		return rcds_store_flush(s);
	return SNIPE_OK;
fail:
	/* The whole batch is lost: applied goes back to the last commit, and the caller
	 * must not go on applying (it cannot replay what it already reported). */
	if (!sqlite3_get_autocommit(s->db))
		st_done(s, ST_ROLLBACK);
	s->in_batch = false;
	s->batched = 0;
	s->applied = s->committed;
	for (size_t i = 0; i < n; i++) {
		res[i].code = SNIPE_EIO;
		res[i].keys_changed = false;
		snprintf(res[i].reason, sizeof(res[i].reason), "catalog database failure");
	}
	return SNIPE_EIO;
}

/* ------------------------------------------------------------------ reads */

static const uint8_t no_bytes[1];

/* The current row of a ROW_COLS statement; SNIPE_EIO if it is damaged. */
static int row_read(sqlite3_stmt *st, rcds_row *r)
{
	r->urn = (const char *)sqlite3_column_text(st, 0);
	r->attr = (const char *)sqlite3_column_text(st, 1);
	r->value = sqlite3_column_blob(st, 2);
	r->value_len = (size_t)sqlite3_column_bytes(st, 2);
	r->version = column_u64(st, 3);
	r->expires_ms = column_u64(st, 4);
	r->author = sqlite3_column_blob(st, 5);
	int author_len = sqlite3_column_bytes(st, 5);
	r->content = sqlite3_column_blob(st, 6);
	r->content_len = (size_t)sqlite3_column_bytes(st, 6);
	r->signature = sqlite3_column_blob(st, 7);
	int sig_len = sqlite3_column_bytes(st, 7);
	if (r->value == NULL)
		r->value = no_bytes;
	if (r->content == NULL)
		r->content = no_bytes;
	if (r->urn == NULL || r->attr == NULL || author_len != SNIPE_PK_BYTES ||
	    sig_len != SNIPE_SIG_BYTES) {
		snipe_log(SNIPE_LOG_ERROR, "store", "damaged row urn=%s attr=%s",
		          r->urn ? r->urn : "?", r->attr ? r->attr : "?");
		return SNIPE_EIO;
	}
	return SNIPE_OK;
}

/* Gives fn up to limit rows of st; *n counts them, *more says whether one more exists.
 * Returns fn's non-zero result, SNIPE_EIO, or SNIPE_OK. Does not reset st. */
static int iterate(rcds_store *s, sqlite3_stmt *st, const char *what, uint64_t limit,
                   rcds_row_fn fn, void *arg, uint64_t *n, bool *more)
{
	rcds_row row;
	int rc;

	*n = 0;
	*more = false;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (*n == limit) {
			*more = true;
			return SNIPE_OK;
		}
		rc = row_read(st, &row);
		if (rc == SNIPE_OK)
			rc = fn(arg, &row);
		if (rc != SNIPE_OK)
			return rc;
		(*n)++;
	}
	return rc == SQLITE_DONE ? SNIPE_OK : db_fail_on(s->db, what);
}

int rcds_store_get(rcds_store *s, const char *urn, uint64_t now_ms, rcds_row_fn fn,
                   void *arg)
{
	sqlite3_stmt *st = s->st[ST_GET];
	uint64_t n;
	bool more;

	if (urn == NULL)
		return SNIPE_EINVAL;
	int rc = st_bound(s, ST_GET, bind_text(st, 1, urn) | bind_u64(st, 2, now_ms));
	if (rc != SNIPE_OK)
		return rc;
	rc = iterate(s, st, "GET", UINT64_MAX, fn, arg, &n, &more);
	st_end(s, ST_GET);
	if (rc == SNIPE_OK && n == 0)
		rc = SNIPE_ENOTFOUND;
	return rc;
}

/* A statement for a query with n where-filters: ?7 and ?8 are the first attr and value,
 * ?9 and ?10 the second, and so on. The caller finalizes it. */
static int prepare_query(rcds_store *s, size_t n, sqlite3_stmt **out)
{
	char sql[sizeof(QUERY_HEAD) + sizeof(QUERY_TAIL) +
	         QUERY_WHERE_MAX * (sizeof(QUERY_WHERE) + 8)];
	size_t len = (size_t)snprintf(sql, sizeof(sql), "%s", QUERY_HEAD);

	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(sql + len, sizeof(sql) - len, QUERY_WHERE, 7 + 2 * i,
		                        8 + 2 * i);
	snprintf(sql + len, sizeof(sql) - len, "%s", QUERY_TAIL);
	if (sqlite3_prepare_v2(s->db, sql, -1, out, NULL) != SQLITE_OK)
		return db_fail_on(s->db, "QUERY_WHERE");
	return SNIPE_OK;
}

/*
 * urn >= ?1 AND urn < ?2 holds exactly for URNs that start with prefix: ?2 is prefix
 * with its last byte below 0xff incremented (and what follows it dropped) or, when there
 * is none, an empty blob, which sorts after every text value.
 */
static int bind_prefix(sqlite3_stmt *st, const char *prefix, char upper[SNIPE_URN_MAX])
{
	size_t n = strlen(prefix);

	memcpy(upper, prefix, n + 1);
	while (n > 0 && (unsigned char)upper[n - 1] == 0xff)
		n--;
	if (n == 0)
		return bind_text(st, 1, prefix) | sqlite3_bind_zeroblob(st, 2, 0);
	upper[n - 1] = (char)((unsigned char)upper[n - 1] + 1);
	upper[n] = '\0';
	return bind_text(st, 1, prefix) | bind_text(st, 2, upper);
}

static int bind_query(sqlite3_stmt *st, const rcds_scan *q, const char *prefix,
                      uint64_t now_ms, char upper[SNIPE_URN_MAX])
{
	bool cursor = q->after_urn != NULL && q->after_urn[0] != '\0';
	int rc = bind_prefix(st, prefix, upper);

	rc |= bind_text(st, 3, cursor ? q->after_urn : "");
	rc |= bind_text(st, 4, cursor && q->after_attr != NULL ? q->after_attr : "");
	rc |= bind_u64(st, 5, now_ms);
	rc |= sqlite3_bind_int64(st, 6, (sqlite3_int64)q->limit + 1);
	for (size_t i = 0; i < q->nwhere; i++) {
		const rcds_filter *f = &q->where[i];
		rc |= bind_text(st, (int)(7 + 2 * i), f->attr != NULL ? f->attr : "");
		rc |= bind_blob(st, (int)(8 + 2 * i), f->value, f->value_len);
	}
	return rc;
}

int rcds_store_query(rcds_store *s, const rcds_scan *q, uint64_t now_ms, rcds_row_fn fn,
                     void *arg, bool *more)
{
	const char *prefix = q->prefix != NULL ? q->prefix : "";
	sqlite3_stmt *st = s->st[ST_QUERY];
	char upper[SNIPE_URN_MAX];
	uint64_t n;

	*more = false;
	if (q->limit == 0 || q->nwhere > QUERY_WHERE_MAX || (q->nwhere > 0 && q->where == NULL))
		return SNIPE_EINVAL;
	if (strlen(prefix) >= SNIPE_URN_MAX)
		return SNIPE_OK; /* longer than any URN: matches nothing */
	int rc = q->nwhere > 0 ? prepare_query(s, q->nwhere, &st) : SNIPE_OK;
	if (rc != SNIPE_OK)
		return rc;
	if (bind_query(st, q, prefix, now_ms, upper) != SQLITE_OK)
		rc = db_fail_on(s->db, "QUERY bind");
	if (rc == SNIPE_OK)
		rc = iterate(s, st, "QUERY", q->limit, fn, arg, &n, more);
	if (q->nwhere > 0)
		sqlite3_finalize(st);
	else
		st_end(s, ST_QUERY);
	return rc;
}

/* A key row's public key, if pubkey is valid, matches the URN's id and role is a role. */
static bool key_row(sqlite3_stmt *st, uint8_t pk[SNIPE_PK_BYTES])
{
	const char *urn = (const char *)sqlite3_column_text(st, 0);
	const char *hex = sqlite3_column_blob(st, 1);
	int hex_len = sqlite3_column_bytes(st, 1);
	const char *role = sqlite3_column_blob(st, 2);
	int role_len = sqlite3_column_bytes(st, 2);
	char buf[SNIPE_PK_HEX], id_hex[SNIPE_KEYID_HEX];
	uint8_t id[SNIPE_KEYID_BYTES];

	if (urn == NULL || hex_len != 2 * SNIPE_PK_BYTES ||
	    rcds_role_parse(role, (size_t)role_len) == RCDS_ROLE_NONE)
		return false;
	memcpy(buf, hex, 2 * SNIPE_PK_BYTES);
	buf[2 * SNIPE_PK_BYTES] = '\0';
	if (snipe_pk_parse(buf, pk) != SNIPE_OK)
		return false;
	snipe_keyid(pk, id);
	snipe_keyid_hex(id, id_hex);
	return strcmp(urn + strlen(KEY_PREFIX), id_hex) == 0;
}

int rcds_store_keys(rcds_store *s, void (*fn)(void *arg, const uint8_t *pk), void *arg)
{
	sqlite3_stmt *st = s->st[ST_KEYS];
	uint8_t pk[SNIPE_PK_BYTES];
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (key_row(st, pk))
			fn(arg, pk);
	}
	rc = rc == SQLITE_DONE ? SNIPE_OK : db_fail(s, ST_KEYS);
	st_end(s, ST_KEYS);
	return rc;
}

/* -------------------------------------------------------------- snapshots */

int rcds_store_snapshot(rcds_store *s, uint8_t **buf, size_t *len)
{
	sqlite3_int64 size = 0;

	*buf = NULL;
	*len = 0;
	if (rcds_store_flush(s) != SNIPE_OK)
		return SNIPE_EIO;
	unsigned char *image = sqlite3_serialize(s->db, "main", &size, 0);
	if (image == NULL)
		return db_fail_on(s->db, "serialize");
	*buf = malloc(size > 0 ? (size_t)size : 1);
	if (*buf == NULL) {
		sqlite3_free(image);
		return SNIPE_ENOMEM;
	}
	memcpy(*buf, image, (size_t)size);
	*len = (size_t)size;
	sqlite3_free(image);
	return SNIPE_OK;
}

/* An in-memory database holding a copy of the image. A WAL-mode image (header bytes 18
 * and 19 = 2) is marked as a rollback-journal one, which an in-memory database can open. */
static int image_open(const uint8_t *buf, size_t len, sqlite3 **out)
{
	unsigned flags = SQLITE_DESERIALIZE_FREEONCLOSE | SQLITE_DESERIALIZE_RESIZEABLE;
	sqlite3 *db = NULL;
	unsigned char *copy = NULL;

	*out = NULL;
	if (sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
		goto fail;
	copy = sqlite3_malloc64(len);
	if (copy == NULL)
		goto fail;
	memcpy(copy, buf, len);
	if (copy[18] == 2 && copy[19] == 2)
		copy[18] = copy[19] = 1;
	/* on failure sqlite3_deserialize frees copy itself */
	if (sqlite3_deserialize(db, "main", copy, (sqlite3_int64)len, (sqlite3_int64)len,
	                        flags) != SQLITE_OK)
		goto fail;
	*out = db;
	return SNIPE_OK;
fail:
	db_fail_on(db, "deserialize");
	sqlite3_close(db);
	return SNIPE_EIO;
}

/* Refuses an image that is not a catalog database before it replaces ours. */
static int image_check(sqlite3 *db)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db, "SELECT 1 FROM meta, owners, requests, assertions"
	                                " LIMIT 0", -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc == SQLITE_DONE)
		return SNIPE_OK;
	snipe_log(SNIPE_LOG_ERROR, "store", "snapshot is not a catalog image error=\"%s\"",
	          sqlite3_errmsg(db));
	return SNIPE_EINVAL;
}

int rcds_store_restore(rcds_store *s, const uint8_t *buf, size_t len)
{
	sqlite3 *image = NULL;

	if (buf == NULL || len < 100) {
		snipe_log(SNIPE_LOG_ERROR, "store", "snapshot too short len=%zu", len);
		return SNIPE_EINVAL;
	}
	if (rcds_store_flush(s) != SNIPE_OK)
		return SNIPE_EIO;
	int rc = image_open(buf, len, &image);
	if (rc == SNIPE_OK)
		rc = image_check(image);
	if (rc != SNIPE_OK)
		goto out;
	sqlite3_backup *b = sqlite3_backup_init(s->db, "main", image, "main");
	if (b == NULL) {
		rc = db_fail_on(s->db, "backup");
		goto out;
	}
	int step = sqlite3_backup_step(b, -1);
	sqlite3_backup_finish(b);
	rc = step == SQLITE_DONE ? load_applied(s) : db_fail_on(s->db, "backup");
out:
	sqlite3_close(image);
	return rc;
}
