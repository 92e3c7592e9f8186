/*
 * sni.h — internal helpers shared by libsnipe's modules. Not installed; the daemons
 * and tests may include it, applications must not.
 */
#ifndef SNI_H
#define SNI_H

#include <stddef.h>
#include <stdint.h>

#include "snipe.h"

/* Formats a reason into err (if err is not NULL) and returns code, so a failure can be
 * reported and returned in one statement: `return sni_err(err, errlen, SNIPE_EINVAL, ...)`. */
int sni_err(char *err, size_t errlen, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Makes room for one more element in the array *arrayp (a T **) of n used and *cap
 * allocated elements of elem bytes, doubling it (8 at first). false if out of memory
 * (the array is unchanged). */
bool sni_grow(void *arrayp, size_t n, size_t *cap, size_t elem);
/* Logging what others can cause at will (dropped input): at most per_s lines a second
 * through one limiter, then one line saying how many were left out. */
typedef struct sni_log_limit {
	uint64_t second;
	unsigned logged, suppressed;
} sni_log_limit;
void sni_log_limited(sni_log_limit *l, unsigned per_s, snipe_log_level level,
                     const char *component, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
/* SNIPE_OK if this program was started by an agent (SNIPE_URN, SNIPE_AGENT and
 * SNIPE_PROC_KEY are set), else SNIPE_ENOENT naming the first one missing. */
int sni_agent_env(char *err, size_t errlen);
/* A monotonic clock in ms, for timeouts (never for timestamps others read). */
uint64_t sni_mono_ms(void);

/* Becomes a daemon (stays in this directory) logging stderr to log_path (appended,
 * 0600), stdin and stdout on /dev/null. For the daemons' main(). */
int sni_daemonize(const char *log_path, char *err, size_t errlen);

/* A process's state letter and start time (clock ticks since boot) from
 * /proc/PID/stat: SNIPE_ENOENT if there is no such process. */
int sni_proc_stat(int pid, char *state, uint64_t *start);
/* Whether pid is a running process (a zombie waiting to be reaped is not). */
bool sni_pid_alive(int pid);

/* Writes all n bytes (retrying short writes and EINTR): 0, or -1 with errno set. */
int sni_write_all(int fd, const void *buf, size_t n);

/* Lower-case hex of n bytes into out (2n+1 bytes). */
void sni_hex(const uint8_t *bytes, size_t n, char *out);

/* Signing domains. Each purpose has its own string; see snipe_sign. */
#define SNI_DOMAIN_ENVELOPE "snipe/envelope/v1"
#define SNI_DOMAIN_ASSERTION "snipe/assertion/v1"

/* ---- replay cache (replay.c): remembers nonces, bounded; see snipe_verifier. */
typedef struct sni_replay sni_replay;

int sni_replay_new(size_t cap, sni_replay **out);
void sni_replay_free(sni_replay *r);
/* SNIPE_EREPLAY if the nonce is remembered or ts is not newer than a forgotten one. */
int sni_replay_check(const sni_replay *r, const uint8_t nonce[SNIPE_NONCE_BYTES],
                     uint64_t ts);
/* Remembers a nonce checked just before. First forgets entries older than
 * expire_before (they fail the time window anyway); if still full, forgets the oldest
 * remembered and refuses timestamps up to its own from then on. */
void sni_replay_add(sni_replay *r, const uint8_t nonce[SNIPE_NONCE_BYTES], uint64_t ts,
                    uint64_t expire_before);
size_t sni_replay_count(const sni_replay *r);

/* ---- envelope internals (envelope.c), shared with session.c. */
struct Snipe__EnvelopeContent;
struct ProtobufCBinaryData;
#define SNI_MAC_BYTES 32
#define SNI_DOMAIN_SESSION "snipe/session/v1"

/* A serialised EnvelopeContent signed (or MACed) by k's identity; *out malloc'd. */
int sni_env_content(const snipe_key *k, uint32_t type, uint64_t timestamp_ms,
                    uint64_t counter, const void *body, size_t len, uint8_t **out,
                    size_t *outlen);
/* A serialised Envelope around content: with sig (signed) or session_id + mac. */
int sni_env_pack(const uint8_t *content, size_t clen, const uint8_t *sig,
                 const uint8_t *session_id, const uint8_t *mac, uint8_t **out,
                 size_t *outlen);
/* Decodes content bytes and checks the fixed field lengths (SNIPE_EDECODE). */
int sni_env_decode_content(const struct ProtobufCBinaryData *bytes,
                           struct Snipe__EnvelopeContent **out, char *err, size_t errlen);
/* The type and time-window checks of snipe_env_open. */
int sni_env_check(const struct Snipe__EnvelopeContent *c, uint32_t type, uint64_t now,
                  uint32_t skew_ms, const char *signer, char *err, size_t errlen);
/* Fills an snipe_env_msg that takes ownership of c. */
void sni_env_msg_fill(snipe_env_msg *out, struct Snipe__EnvelopeContent *c);

/* ---- assertions (assertion.c): the signed (urn, attr) = value statements. */
struct Snipe__AssertionContent;

#define SNI_ATTR_MAX 64
#define SNI_VALUE_MAX (64u * 1024u)

/* 1-64 characters of [A-Za-z0-9._-]; SNIPE_EINVAL otherwise. */
int sni_attr_validate(const char *attr, char *err, size_t errlen);
/* Serialises and signs an AssertionContent. *content is malloc'd (caller frees). */
int sni_assertion_sign(const snipe_key *k, const char *urn, const char *attr,
                       const void *value, size_t len, uint64_t expires_ms,
                       uint8_t **content, size_t *content_len,
                       uint8_t sig[SNIPE_SIG_BYTES]);
/* Checks an assertion's shape (author 32 bytes, signature 64, content decodes, valid
 * URN and attr, value at most SNI_VALUE_MAX) and, if verify, its signature by author.
 * On success *out (if not NULL) is the decoded content, freed with
 * snipe__assertion_content__free_unpacked. SNIPE_EDECODE, SNIPE_EINVAL, SNIPE_EURN*,
 * or SNIPE_EBADSIG, with err saying which. */
int sni_assertion_check(const uint8_t *content, size_t content_len, const uint8_t *author,
                        size_t author_len, const uint8_t *sig, size_t sig_len, bool verify,
                        struct Snipe__AssertionContent **out, char *err, size_t errlen);

/* Checks an assertion received from the catalog (shape and, if verify, its author's
 * signature) and turns it into an rcds_assertion whose value the caller frees. In
 * catalog.c. */
struct Snipe__Assertion;
struct rcds_assertion;
int sni_assertion_read(const struct Snipe__Assertion *a, bool verify,
                       struct rcds_assertion *out, char *err, size_t errlen);
/* The client's endpoint list as given to rcds_client_open. In catalog.c. */
struct rcds_client;
const char *sni_client_endpoints(const struct rcds_client *c);
/* The client's key (borrowed from its opener). In catalog.c. */
const snipe_key *sni_client_key(const struct rcds_client *c);

/* ---- content-defined chunking (chunk.c), for checkpoint blocks. */
#define SNI_CHUNK_MIN (16u * 1024u)
#define SNI_CHUNK_AVG (64u * 1024u)
#define SNI_CHUNK_MAX (256u * 1024u)
/* The length of the first block of p[0..n): at most SNI_CHUNK_MAX, at least
 * SNI_CHUNK_MIN unless n is smaller; chosen by the content alone. */
size_t sni_chunk_cut(const uint8_t *p, size_t n);

/* ---- checkpoint blocks (block.c): named by BLAKE2b-256, stored zstd-compressed. */
#define SNI_HASH_BYTES 32
#define SNI_BLOCK_MAX (16u << 20) /* the largest block anyone accepts (chunks are 256 KiB) */

/* memcmp order of two hashes, for qsort and bsearch. */
int sni_hash_cmp(const void *a, const void *b);

/* A set of block hashes, sorted, each once. */
struct Snipe__Part;
typedef struct sni_hashset {
	uint8_t (*v)[SNI_HASH_BYTES];
	size_t n;
} sni_hashset;
/* The distinct hashes of the blocks of parts (malloc'd: free out->v). SNIPE_EINVAL for a
 * block reference without a 32-byte hash or larger than SNI_BLOCK_MAX. */
int sni_hashset_of_parts(struct Snipe__Part *const *parts, size_t nparts, sni_hashset *out);
bool sni_hashset_has(const sni_hashset *s, const uint8_t hash[SNI_HASH_BYTES]);
/* Hashes data and compresses it (zstd, fast level): *zstd is malloc'd. */
int sni_block_make(const uint8_t *data, size_t n, uint8_t hash[SNI_HASH_BYTES],
                   uint8_t **zstd, size_t *zlen);
/* Compresses data whose hash is already known; *zstd is malloc'd. */
int sni_block_compress(const uint8_t *data, size_t n, uint8_t **zstd, size_t *zlen);
/* Decompresses a block into out (size bytes, the caller's) and checks it hashes to
 * hash: SNIPE_OK, or SNIPE_ECORRUPT (bad compression, wrong size or wrong hash). */
int sni_block_open(const uint8_t hash[SNI_HASH_BYTES], uint32_t size, const uint8_t *zstd,
                   size_t zlen, uint8_t *out);

/* ---- agents (proc.c): one request to the agent at endpoint, sealed with key; *out
 * (free with snipe__agent_reply__free_unpacked) on SNIPE_OK, whatever its code. */
struct Snipe__AgentRequest;
struct Snipe__AgentReply;
int sni_agent_call(const snipe_key *key, const char *endpoint,
                   struct Snipe__AgentRequest *req, int wait_ms,
                   struct Snipe__AgentReply **out, char *err, size_t errlen);
/* As sni_agent_call, with bytes sent beside the sealed request (AgentFrame.attachment:
 * a BlocksPut's blocks, each checked against its hash by the receiver). */
int sni_agent_call_attached(const snipe_key *key, const char *endpoint,
                            struct Snipe__AgentRequest *req, const uint8_t *attachment,
                            size_t attachment_len, int wait_ms,
                            struct Snipe__AgentReply **out, char *err, size_t errlen);

/* A process instance's key file (key.c): the secret alone, replaced if present, not
 * synced (it is worthless after a crash of its host). */
int sni_key_save_instance(const snipe_key *k, const char *path, char *err, size_t errlen);

/* The agent endpoint of host (its host record's `address`), from the catalog. */
int sni_host_address(struct rcds_client *c, const char *host, char *address, size_t len);

/* ---- raw REP sockets (rep.c), the servers' side. */
/* A request: its bytes (valid during the call) and its routing header, which the
 * callee owns: it passes it to sni_rep_reply, now or later, or frees it (nn_freemsg). */
typedef void (*sni_rep_fn)(void *arg, const uint8_t *buf, size_t len, void *control);
/* Takes up to burst waiting requests from sock without blocking, each to fn. */
void sni_rep_drain(int sock, int burst, sni_rep_fn fn, void *arg);
/* Packs msg and sends it back along control (taken, sent or not: a client that is gone
 * costs a debug line). */
struct ProtobufCMessage;
void sni_rep_reply(int sock, void *control, const struct ProtobufCMessage *msg);

/* The protobuf form of a write batch (rcds_batch), its assertions signed with a key.
 * Everything lives in arrays freed by sni_write_msg_free (also after a failed build). */
struct Snipe__WriteRequest;
struct rcds_batch;
#include "catalog.pb-c.h"
struct sni_write_msg {
	Snipe__WriteRequest w;
	Snipe__PutItem *items, **item_ptrs;
	Snipe__Assertion *assertions;
	Snipe__DeleteItem *dels, **del_ptrs;
	uint8_t (*sigs)[SNIPE_SIG_BYTES];
	uint8_t **contents;
	size_t n;
};
int sni_write_msg_build(const snipe_key *key, const struct rcds_batch *b,
                        struct sni_write_msg *m, char *err, size_t errlen);
void sni_write_msg_free(struct sni_write_msg *m);

/* ---- process records (proc_record.c): urn:snipe:proc:<name> in the catalog.
 * Attributes: spec (a ProcSpec, agent.proto), command (readable), host, epoch, state,
 * pid, restarts, exit, started_ms, stop ("1": its owner asked it to stop), reason,
 * ckpt (the seq of its latest checkpoint, urn:snipe:ckpt:<name>/<seq>). */
#define SNI_PROC_PREFIX "urn:snipe:proc:"
#define SNI_HOST_PREFIX "urn:snipe:host:"

typedef struct sni_proc {
	char urn[SNIPE_URN_MAX];
	char host[SNIPE_URN_NAME_MAX + 1];
	char state[16];
	char reason[128];
	uint64_t epoch, epoch_version;
	uint64_t version;        /* the highest version of any of its attributes */
	uint32_t restarts;
	int64_t pid;
	int32_t exit_code;
	bool has_exit, stop;
	uint64_t started_ms;
	uint64_t ckpt, ckpt_version; /* the latest committed checkpoint's seq (0: none) */
	uint8_t owner[SNIPE_PK_BYTES]; /* the spec's author */
	bool has_owner;
	struct Snipe__ProcSpec *spec; /* NULL if absent or malformed */
	char command[256];
} sni_proc;

/* Clears p for urn (copied). */
void sni_proc_init(sni_proc *p, const char *urn);
/* Takes one attribute of the record. */
void sni_proc_set(sni_proc *p, const char *attr, const uint8_t *value, size_t len,
                  uint64_t version, const uint8_t *author);
void sni_proc_clear(sni_proc *p);
/* pending, running and backoff: a host should be running it (or about to). */
bool sni_proc_state_active(const char *state);
/* The process should be restarted after it ended with code (-signal if killed):
 * by its policy ("never", "on-failure", "always"). */
bool sni_proc_policy_restarts(const char *policy, int code);

/* ---- message channels (chan.c, msg.proto): a signed hello with an X25519 key
 * (crypto_kx), then ChanBody frames sealed with ChaCha20-Poly1305-IETF under the derived
 * keys, the 64-bit counter as nonce and the channel id as associated data. The opener
 * is the crypto_kx client. Counters only go up: a frame not above the last one opened
 * is a replay. */
#include "msg.pb-c.h"
#define SNI_CHAN_ID_BYTES 16
/* The largest frame a channel's socket takes (NN_RCVMAXSIZE): a message (256 KiB) and a
 * batch (64 KiB) with room to spare. Never -1: nanomsg allocates the size a peer
 * announces before reading a byte of it, and aborts if it cannot. */
#define SNI_FRAME_MAX (4 << 20)
typedef struct sni_chan {
	uint8_t id[SNI_CHAN_ID_BYTES];
	uint8_t tx[32], rx[32];
	uint64_t tx_counter, rx_counter; /* last sealed, last opened */
} sni_chan;
/* The opener's half, until the answer comes. */
typedef struct sni_chan_hello {
	uint8_t kx_pk[32], kx_sk[32];
	uint8_t nonce[16];
} sni_chan_opener;
/* Opener: a ChanFrame (packed, malloc'd) whose hello is signed by k (from, to). */
int sni_chan_hello(const snipe_key *k, const char *from, const char *to, sni_chan_opener *h,
                   uint8_t **frame, size_t *len);
/* Answerer, for an opened and checked hello: makes ch and the answering ChanFrame
 * (malloc'd), whose welcome is signed by k, or bare if k is NULL. SNIPE_EDECODE for an
 * unusable key. */
int sni_chan_accept(const snipe_key *k, const char *from, const Snipe__ChanHello *hello,
                    sni_chan *ch, uint8_t **frame, size_t *len);
/* Opener: completes ch from the answer (its nonce must repeat the hello's). Wipes h. */
int sni_chan_complete(sni_chan_opener *h, const Snipe__ChanHello *welcome, sni_chan *ch);
/* A sealed ChanFrame (packed, malloc'd) holding body. */
int sni_chan_seal(sni_chan *ch, const Snipe__ChanBody *body, uint8_t **frame, size_t *len);
/* Opens a decoded sealed frame of ch: SNIPE_EREPLAY (counter not above the last),
 * SNIPE_EBADSIG (forged or damaged), SNIPE_EDECODE. *body: free with
 * snipe__chan_body__free_unpacked. */
int sni_chan_open(sni_chan *ch, const Snipe__ChanFrame *f, Snipe__ChanBody **body);

/* ---- messages and checkpoints (msg.c, ckpt.c): a context opened with a checkpoint
 * handle stores its positions in the part "snipe.msg" of every save. */
#define SNI_MSG_PART "snipe.msg"
struct snipe_ctx;
void sni_ckpt_bind_msg(snipe_ckpt *c, struct snipe_ctx *m);
/* The positions to store now (*buf malloc'd); remembered until committed. */
int sni_msg_snapshot(struct snipe_ctx *m, uint8_t **buf, size_t *len);
/* The last snapshot is in a committed checkpoint: the senders may forget up to it. */
void sni_msg_committed(struct snipe_ctx *m);

#endif
