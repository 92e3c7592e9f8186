/*
 * store.h — the catalog's state machine: assertions in SQLite, applied from committed
 * Raft entries, queried by URN, prefix and attr=value, snapshotted as a database image.
 * It knows nothing of Raft or sockets; rcds/raft.c and rcds/server.c drive it.
 *
 * Schema (one file, WAL mode, synchronous=NORMAL: the Raft log is the durable record):
 *   assertions(urn, attr, value, version, author, expires, content, signature)
 *   owners(urn, owner)      -- the public key that first wrote the URN
 *   requests(id, idx, code) -- results of recent writes, so a retried id applies once
 *   meta(key, value)        -- 'applied' = the last applied Raft index
 */
#ifndef RCDS_STORE_H
#define RCDS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "catalog.pb-c.h"
#include "snipe.h"

typedef struct rcds_store rcds_store;

/* One stored assertion. Every pointer is borrowed and valid only during the callback
 * that receives the row. */
typedef struct rcds_row {
	const char *urn;
	const char *attr;
	const uint8_t *value;
	size_t value_len;
	uint64_t version;    /* the Raft index that wrote it */
	uint64_t expires_ms; /* 0 = never */
	const uint8_t *author; /* SNIPE_PK_BYTES */
	const uint8_t *content; /* the signed AssertionContent bytes */
	size_t content_len;
	const uint8_t *signature; /* SNIPE_SIG_BYTES */
} rcds_row;

/* Called once per row; a non-zero return stops the iteration (and is returned). */
typedef int (*rcds_row_fn)(void *arg, const rcds_row *row);

/* The outcome of applying one entry. Rejections are outcomes, not failures. */
typedef struct rcds_result {
	int code;          /* SNIPE_OK or why the write was rejected (EDENIED, ECONFLICT, ...) */
	uint64_t index;    /* the index the write was applied at (for a deduplicated retry:
	                      the index of the first application) */
	bool keys_changed; /* an urn:snipe:key:* assertion changed: reload the keyring */
	char reason[160];  /* for a person, when code != SNIPE_OK */
} rcds_result;

/* Process-wide SQLite settings for a replica, before any store is opened: no memory
 * statistics (they take a global mutex on every allocation). */
void rcds_store_init(void);

/* Opens or creates the database at path (":memory:" for tests). admin_pk (32 bytes,
 * copied) is the cluster's trust root. */
int rcds_store_open(const char *path, const uint8_t *admin_pk, rcds_store **out, char *err,
                    size_t errlen);
void rcds_store_close(rcds_store *s);

/* The last applied Raft index (0 for a new store). */
uint64_t rcds_store_applied(const rcds_store *s);

/*
 * Applies the n commands of the entry committed at `index` (one, or several writes the
 * leader proposed together), in order, each atomic on its own with its own result in
 * res[i]; all are at `index`. Entries at or below the applied index are skipped (they
 * are replayed after a restart) with res[i].code = SNIPE_OK. A command whose request id
 * was already applied is not applied again; its result repeats the first. A rejected
 * command changes nothing but the applied index and the record of its request id; a
 * NULL command (it did not decode) gets SNIPE_EDECODE and changes nothing. Returns
 * SNIPE_OK unless the database itself failed (SNIPE_EIO: the uncommitted batch is lost
 * and applied is back at the last commit). The change is committed by
 * rcds_store_flush.
 */
int rcds_store_apply(rcds_store *s, uint64_t index, const Snipe__Command *const *cmds,
                     size_t n, rcds_result *res);

/* A store in a file copies its WAL back into the database in a thread of its own once
 * the WAL holds `pages` pages (default 16384, 16 MiB); tests set fewer. */
void rcds_store_set_checkpoint_pages(rcds_store *s, int pages);

/* Whether writes were applied since the last flush (rcds_store_flush commits them). */
bool rcds_store_pending(const rcds_store *s);
/* Writes grouped since the last flush are committed together: the store keeps a
 * transaction open across applies (at most 4096 writes) until this is called, so a
 * batch of entries costs one commit. Reads see applied writes at once (same connection);
 * durability comes from the Raft log, which replays what a crash lost. On SNIPE_EIO
 * the batch was lost and the replica must stop. */
int rcds_store_flush(rcds_store *s);

/* All unexpired assertions of urn at now_ms, by attr. SNIPE_ENOTFOUND if none. */
int rcds_store_get(rcds_store *s, const char *urn, uint64_t now_ms, rcds_row_fn fn,
                   void *arg);

typedef struct rcds_filter {
	const char *attr;
	const uint8_t *value;
	size_t value_len;
} rcds_filter;

typedef struct rcds_scan {
	const char *prefix;        /* "" or NULL: every URN */
	const rcds_filter *where;  /* URNs must have every attr = value */
	size_t nwhere;
	const char *after_urn;     /* cursor: rows strictly after (after_urn, after_attr) */
	const char *after_attr;
	uint32_t limit;            /* at most this many rows (>= 1) */
} rcds_scan;

/* Rows of matching URNs in (urn, attr) order; *more says whether rows remain after
 * the last one given. */
int rcds_store_query(rcds_store *s, const rcds_scan *q, uint64_t now_ms, rcds_row_fn fn,
                     void *arg, bool *more);

/* Calls fn with the public key of every registered key (urn:snipe:key:* with a role). */
int rcds_store_keys(rcds_store *s, void (*fn)(void *arg, const uint8_t *pk), void *arg);

/* The database image (for a Raft snapshot); *buf is malloc'd, the caller frees it. */
int rcds_store_snapshot(rcds_store *s, uint8_t **buf, size_t *len);
/* Replaces the whole state with an image made by rcds_store_snapshot. */
int rcds_store_restore(rcds_store *s, const uint8_t *buf, size_t len);

#endif
