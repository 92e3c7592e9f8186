/*
 * snipe.h — the public API of libsnipe.
 *
 * Errors, logging, global names (URNs), Ed25519 identities, signed envelopes and
 * configuration. Every call that can fail returns an int from the error table below
 * (SNIPE_OK or a negative code); results go to out-pointers, last. Where a person will
 * read the reason, a call takes `char *err, size_t errlen` and fills it once, where the
 * problem is found (err may be NULL).
 *
 * Ownership: objects from *_new / *_load / *_generate are freed with the matching
 * *_free, which accepts NULL. Pointers returned by accessors are borrowed and live as
 * long as the object they came from.
 */
#ifndef SNIPE_H
#define SNIPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ errors */

/* X(name, value, message): one table, so names, numbers and messages cannot drift. */
#define SNIPE_ERRORS(X)                                                          \
	X(OK, 0, "success")                                                          \
	X(EINVAL, -1, "invalid argument")                                            \
	X(ENOMEM, -2, "out of memory")                                               \
	X(EIO, -3, "input/output error")                                             \
	X(ENOENT, -4, "no such file or directory")                                   \
	X(EEXIST, -5, "already exists")                                              \
	X(ERANGE, -6, "value out of range")                                          \
	X(EURNSCHEME, -10, "URN does not start with urn:snipe:")                     \
	X(EURNKIND, -11, "unknown URN kind")                                         \
	X(EURNLEN, -12, "URN name must be 1-128 characters")                         \
	X(EURNCHAR, -13, "invalid character in URN name")                            \
	X(EURNPATH, -14, "invalid path segment in URN name")                         \
	X(EKEYPERM, -20, "key file is accessible by other users")                    \
	X(EKEYFORMAT, -21, "malformed key")                                          \
	X(EDECODE, -30, "malformed message")                                         \
	X(EUNKNOWNSIGNER, -31, "unknown signer")                                     \
	X(EBADSIG, -32, "bad signature")                                             \
	X(EWRONGTYPE, -33, "unexpected message type")                                \
	X(ESKEW, -34, "timestamp outside the allowed window")                        \
	X(EREPLAY, -35, "replayed message")                                          \
	X(ESESSION, -36, "unknown or expired session")                               \
	X(ECONFIG, -40, "bad configuration")                                         \
	X(EDENIED, -50, "not authorised")                                            \
	X(ECONFLICT, -51, "version does not match (compare-and-set failed)")         \
	X(ENOTFOUND, -52, "not found")                                               \
	X(ENOTLEADER, -53, "this replica is not the leader")                         \
	X(ETIMEDOUT, -54, "timed out")                                               \
	X(EUNAVAIL, -55, "no catalog replica reachable")                             \
	X(EEXPIRED, -56, "assertion already expired")                                \
	X(EBUSY, -57, "busy with another change; try again")                         \
	X(ESTALE, -58, "stale epoch: the process has moved on")                      \
	X(ESPAWN, -60, "the command could not be started")                           \
	X(EFENCED, -61, "the host's lease lapsed: it runs nothing until renewed")          \
	X(ECORRUPT, -62, "data does not match its hash")                            \
	X(EAGAIN, -63, "would block: the send window is full")                      \
	X(ETOOBIG, -64, "message larger than SNIPE_MSG_MAX")

enum snipe_error {
#define SNIPE_ERR_ENUM_(name, value, msg) SNIPE_##name = (value),
	SNIPE_ERRORS(SNIPE_ERR_ENUM_)
#undef SNIPE_ERR_ENUM_
};

/* The message for a code; "unknown error" for codes not in the table. Static string. */
const char *snipe_strerror(int code);
/* The code's name without prefix ("EBADSIG"); "UNKNOWN" if not in the table. */
const char *snipe_errname(int code);

/* ----------------------------------------------------------------- logging */

typedef enum snipe_log_level {
	SNIPE_LOG_DEBUG = 0,
	SNIPE_LOG_INFO = 1,
	SNIPE_LOG_WARN = 2,
	SNIPE_LOG_ERROR = 3,
} snipe_log_level;

/*
 * One line to stderr: "<UTC time> <ident>[pid] <LEVEL> <component>: <message>".
 * By convention the message is a short phrase followed by key=value fields.
 * The threshold starts at INFO, or at $SNIPE_LOG (debug|info|warn|error) if set.
 */
void snipe_log(snipe_log_level level, const char *component, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void snipe_log_set_level(snipe_log_level level);
/* ident is borrowed and must outlive all logging (pass a string literal). */
void snipe_log_set_ident(const char *ident);
int snipe_log_parse_level(const char *s, snipe_log_level *out);

/* ------------------------------------------------------------------- names */

typedef enum snipe_kind {
	SNIPE_KIND_HOST = 0,
	SNIPE_KIND_PROC,
	SNIPE_KIND_DATA,
	SNIPE_KIND_CKPT,
	SNIPE_KIND_KEY,
	SNIPE_KIND_USER,
} snipe_kind;

#define SNIPE_URN_NAME_MAX 128
/* "urn:snipe:" + longest kind + ":" + name + NUL */
#define SNIPE_URN_MAX (10 + 4 + 1 + SNIPE_URN_NAME_MAX + 1)

typedef struct snipe_urn {
	snipe_kind kind;
	char name[SNIPE_URN_NAME_MAX + 1];
} snipe_urn;

/*
 * Parses "urn:snipe:<kind>:<name>". The scheme "urn" and NID "snipe" are
 * case-insensitive (RFC 8141); kind and name are case-sensitive. The name is 1-128
 * characters of [A-Za-z0-9._-] and '/', with no empty segment (so no leading,
 * trailing or doubled '/'), no "." segment and no ".." anywhere. On failure the code
 * says which rule broke and err names the position (1-based, in s).
 */
int snipe_urn_parse(const char *s, snipe_urn *out, char *err, size_t errlen);
/* As parse, without keeping the result. */
int snipe_urn_validate(const char *s, char *err, size_t errlen);
/* Builds a URN from a kind and a name, checking the name by the same rules. */
int snipe_urn_make(snipe_kind kind, const char *name, snipe_urn *out, char *err,
                   size_t errlen);
/* Writes the canonical text form; SNIPE_ERANGE if buflen is too small. */
int snipe_urn_format(const snipe_urn *u, char *buf, size_t buflen);
/* A fresh name: a random (v4) UUID in lower-case text form. */
int snipe_urn_generate(snipe_kind kind, snipe_urn *out);
/* "host", "proc", ...; NULL for an invalid kind. Static string. */
const char *snipe_kind_name(snipe_kind kind);

/* -------------------------------------------------------------------- keys */

#define SNIPE_PK_BYTES 32
#define SNIPE_SIG_BYTES 64
#define SNIPE_KEYID_BYTES 10
/* 20 hex digits + NUL */
#define SNIPE_KEYID_HEX (2 * SNIPE_KEYID_BYTES + 1)
/* 64 hex digits + NUL */
#define SNIPE_PK_HEX (2 * SNIPE_PK_BYTES + 1)

/* An Ed25519 identity with its secret. Opaque; the secret is wiped by snipe_key_free. */
typedef struct snipe_key snipe_key;

int snipe_key_generate(snipe_key **out);
/*
 * Writes the private key to path with mode 0600, and the public key in hex to
 * "<path>.pub". Refuses (SNIPE_EEXIST) to replace an existing file unless force.
 */
int snipe_key_save(const snipe_key *k, const char *path, bool force, char *err,
                   size_t errlen);
/*
 * Loads a key written by snipe_key_save. Fails with SNIPE_ENOENT if missing,
 * SNIPE_EKEYPERM if group or others may read or write it, SNIPE_EKEYFORMAT if it is
 * truncated, malformed, or its public half does not match its secret.
 */
int snipe_key_load(const char *path, snipe_key **out, char *err, size_t errlen);
void snipe_key_free(snipe_key *k);
/* The 32-byte public key; valid while k lives. */
const uint8_t *snipe_key_public(const snipe_key *k);
/* 32 bytes derived from the secret for one purpose (keyed BLAKE2b-256 of purpose,
 * keyed by the seed): a key file can then serve as a shared secret, e.g. the catalog
 * replicas' cluster key. */
int snipe_key_derive(const snipe_key *k, const char *purpose, uint8_t out[32]);
/* The key id: the first 10 bytes of BLAKE2b-256 of the public key. */
void snipe_keyid(const uint8_t pk[SNIPE_PK_BYTES], uint8_t id[SNIPE_KEYID_BYTES]);
/* Lower-case hex of the key id (the <id> in urn:snipe:key:<id>). */
void snipe_keyid_hex(const uint8_t id[SNIPE_KEYID_BYTES], char out[SNIPE_KEYID_HEX]);
void snipe_pk_hex(const uint8_t pk[SNIPE_PK_BYTES], char out[SNIPE_PK_HEX]);
/* Parses exactly 64 hex digits; SNIPE_EKEYFORMAT otherwise. */
int snipe_pk_parse(const char *hex, uint8_t pk[SNIPE_PK_BYTES]);

/*
 * Signatures always cover a domain-separation string: the signed bytes are
 * domain || 0x00 || msg, so a signature made for one purpose verifies for no other.
 */
int snipe_sign(const snipe_key *k, const char *domain, const void *msg, size_t len,
               uint8_t sig[SNIPE_SIG_BYTES]);
/* SNIPE_OK or SNIPE_EBADSIG. */
int snipe_verify(const uint8_t pk[SNIPE_PK_BYTES], const char *domain, const void *msg,
                 size_t len, const uint8_t sig[SNIPE_SIG_BYTES]);

/* A set of trusted public keys, found by key id. */
typedef struct snipe_keyring snipe_keyring;

int snipe_keyring_new(snipe_keyring **out);
void snipe_keyring_free(snipe_keyring *kr);
/* Adding a key already present is not an error. */
int snipe_keyring_add(snipe_keyring *kr, const uint8_t pk[SNIPE_PK_BYTES]);
/* SNIPE_ENOENT if absent. */
int snipe_keyring_remove(snipe_keyring *kr, const uint8_t id[SNIPE_KEYID_BYTES]);
/* The public key with this id, or NULL; valid until the key is removed. */
const uint8_t *snipe_keyring_find(const snipe_keyring *kr,
                                  const uint8_t id[SNIPE_KEYID_BYTES]);
size_t snipe_keyring_count(const snipe_keyring *kr);
/* Removes every key. */
void snipe_keyring_clear(snipe_keyring *kr);

/* --------------------------------------------------------------- envelopes */

/* Message types. The list with their bodies is include/proto/envelope.proto. */
enum snipe_msg_type {
	SNIPE_MSG_ANY = 0, /* to snipe_env_open only: accept every type */
	SNIPE_MSG_NOTE = 1, /* free text; tools and tests */
	SNIPE_MSG_CATALOG_REQUEST = 2, /* a catalog Request (catalog.proto) */
	SNIPE_MSG_SESSION_OPEN = 3, /* a SessionOpen: start a session (always signed) */
	SNIPE_MSG_AGENT_REQUEST = 4, /* an AgentRequest to a host agent (agent.proto) */
	SNIPE_MSG_CHAN_HELLO = 5, /* a ChanHello: open a message channel (msg.proto) */
};

#define SNIPE_NONCE_BYTES 16
#define SNIPE_SKEW_DEFAULT_MS 30000u
#define SNIPE_REPLAY_DEFAULT_CAP 65536u

/*
 * Seals body in a signed envelope stamped with the current time and a random nonce.
 * *out is malloc'd; the caller frees it with free().
 */
int snipe_env_seal(const snipe_key *k, uint32_t type, const void *body, size_t len,
                   uint8_t **out, size_t *outlen);
/* As seal, with a given timestamp (ms since the Unix epoch). */
int snipe_env_seal_at(const snipe_key *k, uint32_t type, uint64_t timestamp_ms,
                      const void *body, size_t len, uint8_t **out, size_t *outlen);

/* An opened envelope. body points into memory owned by the message. */
typedef struct snipe_env_msg {
	uint8_t signer[SNIPE_KEYID_BYTES];
	uint64_t timestamp_ms;
	uint8_t nonce[SNIPE_NONCE_BYTES];
	uint32_t type;
	const uint8_t *body;
	size_t body_len;
	void *owner_; /* private */
} snipe_env_msg;

/* Releases the message's body; the struct may then be reused. NULL is a no-op. */
void snipe_env_msg_clear(snipe_env_msg *m);

/*
 * The receiving side: who is trusted, how much clock skew is allowed, and which
 * nonces were seen. The replay cache holds at most replay_cap nonces; when it must
 * forget one, it also starts refusing every envelope not newer than the forgotten
 * one, so a bounded cache never lets a replay through.
 */
typedef struct snipe_verifier snipe_verifier;

/* kr is borrowed and must outlive the verifier; keys may be added to it later. */
int snipe_verifier_new(const snipe_keyring *kr, uint32_t skew_ms, size_t replay_cap,
                       snipe_verifier **out);
void snipe_verifier_free(snipe_verifier *v);
/* Replaces the wall clock (ms since the epoch), for tests. */
void snipe_verifier_set_clock(snipe_verifier *v, uint64_t (*now_ms)(void *arg),
                              void *arg);
/* Number of nonces currently remembered. */
size_t snipe_verifier_cached(const snipe_verifier *v);

/*
 * Opens an envelope: decodes it, then checks, in this order, that the signer is in the
 * keyring (SNIPE_EUNKNOWNSIGNER), the signature (SNIPE_EBADSIG), the type if `type` is
 * not SNIPE_MSG_ANY (SNIPE_EWRONGTYPE), the timestamp window (SNIPE_ESKEW) and the
 * nonce (SNIPE_EREPLAY). Malformed input of any kind gives SNIPE_EDECODE. The nonce is
 * remembered only when every check passed. On success *out must be cleared by the
 * caller with snipe_env_msg_clear.
 */
int snipe_env_open(snipe_verifier *v, const uint8_t *buf, size_t len, uint32_t type,
                   snipe_env_msg *out, char *err, size_t errlen);

/* The key id a signed envelope claims to be from, without checking anything else: to
 * fetch an unknown signer's key before opening it. SNIPE_EDECODE if it is not one. */
int snipe_env_peek_signer(const uint8_t *buf, size_t len, uint8_t id[SNIPE_KEYID_BYTES]);

/* ---------------------------------------------------------------- sessions */

/*
 * Sessions make frequent messages cheap: one signed SESSION_OPEN exchange (X25519 key
 * exchange, crypto_kx, bound to the opener's Ed25519 identity by the envelope's
 * signature), then envelopes authenticated by a keyed BLAKE2b MAC (~1 us) instead of
 * an Ed25519 signature (~36 us to verify), with a counter against replay. Sessions
 * are between two parties; a receiver keeps a bounded table of them.
 */
#define SNIPE_SESSION_ID_BYTES 16
#define SNIPE_KX_BYTES 32

/* The opener's side of one session. */
typedef struct snipe_session snipe_session;

/* Starts a session: *env (malloc'd) is the signed SESSION_OPEN envelope to send. k is
 * borrowed and must outlive the session. */
int snipe_session_begin(const snipe_key *k, snipe_session **out, uint8_t **env,
                        size_t *env_len);
/* Completes it with the receiver's answer (SessionOpened: id and X25519 key).
 * SNIPE_EDECODE for a malformed answer; SNIPE_EINVAL if already complete. */
int snipe_session_complete(snipe_session *s, const uint8_t *id, size_t id_len,
                           const uint8_t *kx_public, size_t kx_len);
bool snipe_session_ready(const snipe_session *s);
void snipe_session_free(snipe_session *s);
/* Seals body in a session envelope (next counter, current time). *out is malloc'd.
 * SNIPE_EINVAL before completion, or for type SESSION_OPEN (always signed). */
int snipe_session_seal(snipe_session *s, uint32_t type, const void *body, size_t len,
                       uint8_t **out, size_t *outlen);

/* The receiver's table of sessions. */
typedef struct snipe_session_table snipe_session_table;

/* At most cap sessions (the least recently used goes first); a session idle for
 * ttl_ms is forgotten. kr (borrowed) says who is trusted: sessions of keys no longer
 * in it stop working. skew_ms is the timestamp window, as for envelopes. */
int snipe_session_table_new(const snipe_keyring *kr, size_t cap, uint32_t ttl_ms,
                            uint32_t skew_ms, snipe_session_table **out);
void snipe_session_table_free(snipe_session_table *t);
/* Whether buf is a session envelope (has a session id), as opposed to a signed one. */
bool snipe_env_is_session(const uint8_t *buf, size_t len);
/* Accepts an opened SESSION_OPEN message m: id and kx_public are for the answer.
 * SNIPE_EWRONGTYPE for another type, SNIPE_EDECODE for an unusable key (the table is
 * then unchanged). */
int snipe_session_accept(snipe_session_table *t, const snipe_env_msg *m, uint8_t *id,
                         uint8_t *kx_public, char *err, size_t errlen);
/* Opens a session envelope like snipe_env_open: SNIPE_ESESSION (unknown, expired, or
 * its key no longer trusted), SNIPE_EBADSIG (MAC), SNIPE_EWRONGTYPE, SNIPE_ESKEW,
 * SNIPE_EREPLAY (counter not above the last), SNIPE_EDECODE. */
int snipe_session_open(snipe_session_table *t, const uint8_t *buf, size_t len,
                       uint32_t type, snipe_env_msg *out, char *err, size_t errlen);
size_t snipe_session_count(const snipe_session_table *t);

/* ------------------------------------------------------------------ config */

/*
 * One ini format for the daemons and the CLI. Sections: [client], [catalog], [agent].
 * Values are strings; typed parsing is done by the caller with the parsers below.
 */
typedef struct snipe_config snipe_config;

/* Reads an ini file. Duplicate keys, unknown sections and syntax errors fail with
 * SNIPE_ECONFIG and a reason naming the line. */
int snipe_config_load(const char *path, snipe_config **out, char *err, size_t errlen);
/* An empty configuration, to fill with snipe_config_set. */
int snipe_config_new(snipe_config **out);
void snipe_config_free(snipe_config *cfg);
/* The value or NULL; valid until the key is set again or cfg is freed. */
const char *snipe_config_get(const snipe_config *cfg, const char *section,
                             const char *key);
/* Sets or replaces a value (flag and environment overrides). */
int snipe_config_set(snipe_config *cfg, const char *section, const char *key,
                     const char *value);
/* SNIPE_ECONFIG naming the first key of `section` that is not in the NULL-terminated
 * list `known`. */
int snipe_config_check(const snipe_config *cfg, const char *section,
                       const char *const *known, char *err, size_t errlen);

/* Strict number parsing: the whole string, decimal, within [min, max]. SNIPE_EINVAL
 * for anything that is not a number, SNIPE_ERANGE outside the bounds. */
int snipe_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* "true|yes|on|1" and "false|no|off|0"; SNIPE_EINVAL otherwise. */
int snipe_parse_bool(const char *s, bool *out);

/* The client's settings: flag, else environment (SNIPE_CATALOG, SNIPE_KEY), else the
 * [client] section of cfg (may be NULL), else NULL. Borrowed from their sources. */
const char *snipe_client_catalog(const snipe_config *cfg, const char *flag);
const char *snipe_client_key(const snipe_config *cfg, const char *flag);

/* --------------------------------------------------------------- processes */

/*
 * Long-running processes under SNIPE's care. A process is the catalog record
 * urn:snipe:proc:<name>; its host's agent makes it so. These calls take a catalog
 * client (rcds.h) whose key becomes the process's owner; they block for at most the
 * client's timeout.
 */
typedef struct rcds_client rcds_client;

typedef enum snipe_restart {
	SNIPE_RESTART_NEVER = 0,   /* ended is ended; a lost host loses it */
	SNIPE_RESTART_ON_FAILURE,  /* again after a non-zero exit, a signal, or a lost host */
	SNIPE_RESTART_ALWAYS,      /* again whatever the exit */
} snipe_restart;

typedef struct snipe_spawn_opts {
	const char *name;              /* NULL: a fresh UUID */
	const char *host;              /* NULL: the catalog chooses (least loaded that fits) */
	snipe_restart restart;
	uint32_t max_restarts;         /* 0: no limit */
	const char *const *argv;       /* the command: argc strings, argv[0] looked up in PATH */
	size_t argc;
	const char *const *env;        /* "K=V" added to the agent's environment */
	size_t nenv;
	const char *cwd;               /* NULL: a directory of its own on the host */
	const char *const *labels;     /* "k=v" the host must have */
	size_t nlabels;
	const char *ckpt_dir;          /* directory mode: snapshot this directory (relative:
	                                  to its working directory) on `snipe ckpt commit` or
	                                  exit 85, and restore it before every restart */
} snipe_spawn_opts;

typedef struct snipe_proc_info {
	char urn[SNIPE_URN_MAX];
	char host[SNIPE_URN_NAME_MAX + 1];
	char state[16];                /* pending running backoff exited failed killed lost */
	char reason[128];              /* why it ended, when the catalog says */
	char command[256];             /* readable form of argv */
	uint64_t epoch;                /* bumped each time it moves to another host */
	int64_t pid;                   /* on its host; 0 when not running */
	int32_t exit_code;             /* with has_exit: exit code, or -signal */
	bool has_exit;
	uint32_t restarts;
	uint64_t started_ms;           /* wall clock of the current run's start */
} snipe_proc_info;

/* "never", "on-failure", "always" -> *out; SNIPE_EINVAL otherwise. */
int snipe_restart_parse(const char *s, snipe_restart *out);

/*
 * Starts a process: writes its record (owned by the client's key) and has its host's
 * agent start it; returns once it runs (out filled) or failed to start. Codes:
 * SNIPE_EEXIST (the name is in use by a live process), SNIPE_ENOTFOUND (no live host
 * fits, or --host is unknown), SNIPE_ESPAWN (the command could not be started: err says
 * why), SNIPE_EDENIED (the name belongs to another key), catalog codes.
 */
int snipe_spawn(rcds_client *c, const snipe_spawn_opts *o, snipe_proc_info *out, char *err,
                size_t errlen);
/* Asks a process to stop (SIGTERM, then SIGKILL after 2 s) and waits until it has. Only
 * its owner (or an admin) may. SNIPE_ENOTFOUND; SNIPE_EINVAL if it is not running. */
int snipe_kill(rcds_client *c, const char *urn, char *err, size_t errlen);
/* What the catalog says of urn now. */
int snipe_proc_get(rcds_client *c, const char *urn, snipe_proc_info *out, char *err,
                   size_t errlen);
/* Waits until urn has ended (exited, failed, killed or lost), at most timeout_ms (-1:
 * forever); out holds its last state. SNIPE_ETIMEDOUT if it still runs. */
int snipe_wait(rcds_client *c, const char *urn, int timeout_ms, snipe_proc_info *out,
               char *err, size_t errlen);
/* Every process the catalog knows, in URN order: *out (malloc'd, free it) holds *n. */
int snipe_proc_list(rcds_client *c, snipe_proc_info **out, size_t *n, char *err,
                    size_t errlen);
/* Reads up to max bytes of urn's captured stdout (or stderr) from offset, from the
 * agent of its host: *data (malloc'd) gets *len bytes, *size the log's size now. */
int snipe_proc_logs(rcds_client *c, const char *urn, bool stderr_stream, uint64_t offset,
                    uint32_t max, uint8_t **data, size_t *len, uint64_t *size, char *err,
                    size_t errlen);

/* ------------------------------------------------------------- checkpoints */

/*
 * Library-mode checkpoints, for a program started by a SNIPE agent (which tells it who
 * it is through SNIPE_URN, SNIPE_EPOCH, SNIPE_AGENT and SNIPE_PROC_KEY). State is cut
 * into blocks by content, so only the blocks the previous checkpoint lacked are sent;
 * a save returns once the blocks are on `copies` agents (2 by default) and the
 * manifest is committed in the catalog. After a restart, on this host or another,
 * snipe_ckpt_load returns the latest committed state. One thread at a time.
 */
typedef struct snipe_ckpt snipe_ckpt;

typedef struct snipe_ckpt_part {
	const char *name;  /* unique within a checkpoint ("" for snipe_ckpt_save's buffer) */
	const void *buf;
	size_t len;
} snipe_ckpt_part;

typedef struct snipe_ckpt_stats {
	uint64_t seq;         /* the checkpoint saved or loaded last */
	uint64_t bytes;       /* its size (all parts) */
	uint64_t sent_bytes;  /* of it, bytes (uncompressed) sent to the agent by the last save */
	uint64_t sent_blocks;
	uint64_t blocks;
} snipe_ckpt_stats;

/* From the environment the agent set; SNIPE_ENOENT (err says which variable) when
 * the program was not started by an agent. */
int snipe_ckpt_open(snipe_ckpt **out, char *err, size_t errlen);
void snipe_ckpt_close(snipe_ckpt *c);
/* Saves one buffer (the part named ""). */
int snipe_ckpt_save(snipe_ckpt *c, const void *buf, size_t len, char *err, size_t errlen);
/* Saves several named buffers as one checkpoint. */
int snipe_ckpt_save_parts(snipe_ckpt *c, const snipe_ckpt_part *parts, size_t n, char *err,
                          size_t errlen);
/* The latest committed checkpoint's buffer "" (*buf malloc'd, *len bytes);
 * SNIPE_ENOTFOUND if the process has none yet. */
int snipe_ckpt_load(snipe_ckpt *c, void **buf, size_t *len, char *err, size_t errlen);
/* One named part of the latest checkpoint (loads it on first use). */
int snipe_ckpt_load_part(snipe_ckpt *c, const char *name, void **buf, size_t *len, char *err,
                         size_t errlen);
void snipe_ckpt_get_stats(const snipe_ckpt *c, snipe_ckpt_stats *out);
/* Directory mode (spawned with --ckpt-dir): has the agent snapshot the directory now;
 * *seq is the checkpoint committed. What `snipe ckpt commit` does. */
int snipe_ckpt_commit_dir(snipe_ckpt *c, uint64_t *seq, char *err, size_t errlen);

/* ---------------------------------------------------------------- messages */
/*
 * Messages between processes, addressed by URN. A program started by a SNIPE agent
 * joins with snipe_open (its identity is the one the agent gave it) and sends to any
 * process by its URN; the agents route each message to the host the catalog names,
 * follow the receiver when it moves, and resend what was lost.
 *
 * The guarantee (docs/messages.md says it precisely): per (sender, receiver), messages
 * arrive in the order sent and exactly once while the sender's agent lives. A receiver
 * that opened with a checkpoint handle stores its position in every checkpoint it
 * saves; restarted (here or on another host) it resumes right after the position in
 * the checkpoint it restored, and gets every later message exactly once. Without a
 * checkpoint handle, a restarted receiver resumes after the last message it had taken
 * and acknowledged: messages taken just before a crash may come again (at most the
 * agent's send window, 1024). One thread at a time per context.
 */
typedef struct snipe_ctx snipe_ctx;
#define SNIPE_MSG_MAX (256u * 1024u) /* the largest message body */
#define SNIPE_NONBLOCK 1             /* snipe_send: SNIPE_EAGAIN instead of waiting */
#define SNIPE_MORE 2                 /* snipe_send: more follow at once; may wait to go
                                        with them (until a send without it, or any other
                                        call on the context) */
/*
 * Joins: asks the agent named by SNIPE_AGENT (set by the agent at spawn) for this
 * process's message port and opens a channel to it with the instance key SNIPE_PROC_KEY. ck (may be NULL) ties message positions to checkpoints:
 * the position saved with the latest checkpoint is restored now, and every later
 * snipe_ckpt_save on ck records it (the part named "snipe.msg"). ck must outlive the
 * context. SNIPE_ENOENT when not started by an agent (err names the variable).
 */
int snipe_open(snipe_ckpt *ck, snipe_ctx **out, char *err, size_t errlen);
/* Hands the agent any messages not yet taken (waiting up to 5 s), then leaves. Messages
 * the agent took are delivered after close too, while the agent lives. NULL: no-op. */
void snipe_close(snipe_ctx *ctx);
/* This process's URN. */
const char *snipe_self(const snipe_ctx *ctx);
/*
 * Sends len bytes (at most SNIPE_MSG_MAX) to the process urn with the program's own tag.
 * Returns once the agent has the message queued, or it is in the bounded window of
 * messages on their way to it; waits while the window is full (flags SNIPE_NONBLOCK:
 * returns SNIPE_EAGAIN instead). The first message to a URN waits until the agent has
 * found it: SNIPE_ENOTFOUND if the catalog names no such process, or it has ended,
 * within the agent's --msg-timeout-ms. Later, the agent may give up on a receiver that
 * ended: the next send to it returns that code once. SNIPE_EINVAL for a bad URN,
 * SNIPE_ETOOBIG, SNIPE_EIO if the agent is gone. snipe_error says more.
 */
int snipe_send(snipe_ctx *ctx, const char *urn, uint32_t tag, const void *buf, size_t len,
               int flags);
/*
 * The next message, waiting at most timeout_ms (0: do not wait; -1: forever). *from is
 * the sender's URN, valid until the next snipe_recv or snipe_close; *buf is malloc'd
 * (free it; a zero-length message gives a non-NULL buffer). SNIPE_ETIMEDOUT if none.
 */
int snipe_recv(snipe_ctx *ctx, const char **from, uint32_t *tag, void **buf, size_t *len,
               int timeout_ms);
/* Waits (at most timeout_ms, -1: forever) until the agent has taken every message sent
 * so far; returns the first failure it reported, else SNIPE_OK. */
int snipe_flush(snipe_ctx *ctx, int timeout_ms);
/* A descriptor that polls readable when snipe_recv(ctx, ..., 0) may have a message
 * (or acknowledgements to process). Edge-like: once readable, call snipe_recv(ctx, ...,
 * 0) until it returns SNIPE_ETIMEDOUT before polling again, since messages the library
 * already took from the socket do not make it readable. */
int snipe_fd(snipe_ctx *ctx);
/* The reason for the last failure of a call on ctx ("" if none). */
const char *snipe_error(const snipe_ctx *ctx);

/* Wall clock, milliseconds since the Unix epoch. */
uint64_t snipe_now_ms(void);

#ifdef __cplusplus
}
#endif
#endif /* SNIPE_H */
