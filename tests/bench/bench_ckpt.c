/*
 * bench_ckpt.c — what a library-mode checkpoint costs on this machine, beside its anchor
 * measured in the same run: write() + fsync() of the same bytes to a local file. Starts a
 * local cluster (3 catalog replicas, 3 host agents) with `snipe cluster up` (next to
 * this binary) and has an agent run this same binary as the worker (`bench_ckpt worker
 * ...`: checkpoints only work in a process an agent started), which times its own
 * snipe_ckpt_save and snipe_ckpt_load calls, with the CPU each daemon used meanwhile, and
 * writes them to a file. Reports a full save (incompressible and compressible),
 * incremental saves (nothing changed; 5% and 25% of the state rewritten in place in
 * 1 MiB runs; 5% in random 4 KiB pages), restores in a fresh process on the saving
 * host, on the host holding the copy and on a host holding none; then where the time
 * goes: each stage of the pipeline timed alone in this process on the same bytes
 * (chunking, hashing, compression, signing, the agents' block store code, one
 * agent-to-agent copy), set against the CPU each process used in the real save.
 *
 * The state is 96 MiB unless --mib says otherwise. 256 MiB is the size wanted, but a
 * checkpoint of more than about 1600 blocks (~115 MiB) cannot be committed today: its
 * manifest is one catalog value, at most 64 KiB (SNI_VALUE_MAX), and each block
 * reference takes ~40 bytes; `--mib 256` fails with "manifest: value is 144029 bytes (at
 * most 65536)". And a process name cannot be spawned a third time (snipe_spawn first
 * writes epoch 1 as for a new name, which the catalog refuses with ESTALE, not
 * ECONFLICT, once the epoch is 2), so each restore runs under a name of its own whose
 * first run saved the same state (cheaply: the agents hold its blocks already).
 *
 * Not a test: it exits non-zero only when it cannot measure. --keep leaves the cluster
 * directory (logs, block stores) in /tmp.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <libgen.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "benchutil.h"
#include "agent.pb-c.h"
#include "blocks.h"
#include "rcds.h"
#include "sni.h"

#define MIB (1024u * 1024u)
#define DEFAULT_MIB 96u          /* 256 is what we want: see the header comment */
#define WARM_BYTES (4u * MIB)    /* a first small save: connections, key look-ups */
#define RUN_BYTES MIB            /* the in-place changes of the "runs" cases */
#define PAGE_BYTES 4096u         /* ... and of the "pages" case */
#define PAGES_PERMILLE 50        /* 5% of the pages, chosen at random */
#define SEED 0x5eedc4ec0000ull
#define BATCH_BYTES (4u << 20)   /* snipe/ckpt.c and agents/ckpt.c: bytes per BlocksPut */
#define GET_BATCH 64             /* agents/ckpt.c: hashes per BlocksGet between agents */
#define WRITE_CHUNK (4u << 20)   /* the anchor's write() size */
#define ANCHOR_RUNS 3            /* at the start, and again at the end */
#define WORKER_MS 100000
#define CLIENT_TIMEOUT_MS 20000
#define PEER_MS 60000
#define POLL_MS 200
#define WORKER_NAME "ckpt-bench"
#define HOSTS 3

/* Targets. */
#define FULL_VS_FLOOR 0.50   /* a full save's throughput, of write+fsync's */
#define DIRTY5_VS_FULL 0.10  /* a 5%-dirty save's time, of a full save's */

static volatile sig_atomic_t interrupted;
static size_t state_bytes = (size_t)DEFAULT_MIB * MIB;

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double mibps(uint64_t bytes, double ms)
{
	return ms > 0 ? (double)bytes / MIB / (ms / 1000.0) : 0;
}

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* ------------------------------------------------------------------- state */

/* The bench and the worker generate the same bytes from the same seeds. */

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Incompressible: every 8-byte word a pseudo-random function of (seed, its index). */
static void fill_random(uint8_t *buf, size_t len, uint64_t seed)
{
	uint64_t base = splitmix64(seed);
	for (size_t off = 0; off < len; off += 8) {
		uint64_t w = splitmix64(base + off / 8);
		memcpy(buf + off, &w, len - off < 8 ? len - off : 8);
	}
}

/* Compressible but not repetitive (no two blocks alike): each 8-byte word holds its
 * index in the low 3 bytes, one random byte, then zeros — like a table of small counters. */
static void fill_compressible(uint8_t *buf, size_t len, uint64_t seed)
{
	uint64_t base = splitmix64(seed);
	for (size_t off = 0; off < len; off += 8) {
		uint64_t i = off / 8;
		uint64_t w = (i & 0xffffffu) | (splitmix64(base + i) & 0xffu) << 24;
		memcpy(buf + off, &w, len - off < 8 ? len - off : 8);
	}
}

/* How many RUN_BYTES runs make pct% of the state (rounded). */
static size_t runs_of(unsigned pct)
{
	return (state_bytes / MIB * pct + 50) / 100;
}

/* Rewrites n runs of RUN_BYTES, evenly spread, with new random bytes; bytes changed. */
static size_t dirty_runs(uint8_t *buf, size_t len, size_t n, uint64_t seed)
{
	size_t stride = len / n;
	for (size_t k = 0; k < n; k++)
		fill_random(buf + k * stride + (stride - RUN_BYTES) / 2, RUN_BYTES, seed + k);
	return n * RUN_BYTES;
}

/* Rewrites a random PAGES_PERMILLE/1000 of the 4 KiB pages; bytes changed. */
static size_t dirty_pages(uint8_t *buf, size_t len, uint64_t seed)
{
	size_t changed = 0;
	for (size_t p = 0; p < len / PAGE_BYTES; p++) {
		if (splitmix64(seed ^ splitmix64(p)) % 1000 >= PAGES_PERMILLE)
			continue;
		fill_random(buf + p * PAGE_BYTES, PAGE_BYTES, seed + p);
		changed += PAGE_BYTES;
	}
	return changed;
}

/* ------------------------------------------------------------------ worker */

/*
 * `bench_ckpt worker save|resave|load OUT DIR MIB`, run by an agent (MIB: the state's
 * size). Appends one line per event to
 * OUT: "save NAME ms=.. dirty=.. bytes=.. sent=.. sent_blocks=.. blocks=.. seq=.. CPU",
 * "load ms=.. bytes=.. seq=.. CPU hash=..", "final hash=..", or "error WHAT: REASON".
 * CPU is "cpu_self=.. cpu_h1=.. cpu_h2=.. cpu_h3=.. cpu_cat=..": seconds used during
 * the call by this process, each host's agent (with the processes it waited for) and
 * the catalog replicas, whose pids it reads from DIR/pids. Exit 0, or 1 on an error.
 */

struct cpu {
	double self, host[HOSTS], cat;
};

static void cpu_sample(const char *dir, struct cpu *out)
{
	char path[4200], line[256], prog[64], name[64];
	int pid, h;
	struct rusage ru;
	memset(out, 0, sizeof(*out));
	getrusage(RUSAGE_SELF, &ru);
	out->self = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	            (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	snprintf(path, sizeof(path), "%s/pids", dir);
	FILE *f = fopen(path, "r");
	while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "%d %63s %63s", &pid, prog, name) != 3)
			continue;
		if (strcmp(prog, "snipe-agentd") == 0 && sscanf(name, "host%d", &h) == 1 && h >= 1 &&
		    h <= HOSTS)
			out->host[h - 1] += bu_cpu_s(pid, true);
		else if (strcmp(prog, "rcdsd") == 0)
			out->cat += bu_cpu_s(pid, true);
	}
	if (f != NULL)
		fclose(f);
}

struct worker {
	const char *out, *dir;
	FILE *f;
	snipe_ckpt *c;
};

static void say(struct worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct worker *w, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(w->f, fmt, ap);
	va_end(ap);
	fputc('\n', w->f);
	fflush(w->f);
}

static void say_cpu(char *buf, size_t len, const struct cpu *a, const struct cpu *b)
{
	snprintf(buf, len, "cpu_self=%.3f cpu_h1=%.2f cpu_h2=%.2f cpu_h3=%.2f cpu_cat=%.2f",
	         b->self - a->self, b->host[0] - a->host[0], b->host[1] - a->host[1],
	         b->host[2] - a->host[2], b->cat - a->cat);
}

static int timed_save(struct worker *w, const char *name, const uint8_t *buf, size_t len,
                      size_t dirty)
{
	char err[512] = "", cpu[256];
	struct cpu a, b;
	snipe_ckpt_stats s;
	cpu_sample(w->dir, &a);
	double t0 = now_ms();
	int rc = snipe_ckpt_save(w->c, buf, len, err, sizeof(err));
	double ms = now_ms() - t0;
	cpu_sample(w->dir, &b);
	if (rc != SNIPE_OK) {
		say(w, "error save %s: %s: %s", name, snipe_errname(rc), err);
		return -1;
	}
	snipe_ckpt_get_stats(w->c, &s);
	say_cpu(cpu, sizeof(cpu), &a, &b);
	say(w, "save %s ms=%.1f dirty=%zu bytes=%" PRIu64 " sent=%" PRIu64 " sent_blocks=%" PRIu64
	    " blocks=%" PRIu64 " seq=%" PRIu64 " %s", name, ms, dirty, s.bytes, s.sent_bytes,
	    s.sent_blocks, s.blocks, s.seq, cpu);
	return 0;
}

static void hash_hex(const void *buf, size_t len, char out[65])
{
	uint8_t h[32];
	crypto_generichash(h, sizeof(h), buf, len, NULL, 0);
	sodium_bin2hex(out, 65, h, sizeof(h));
}

static int worker_save(struct worker *w)
{
	char hex[65];
	uint8_t *buf = malloc(state_bytes);
	if (buf == NULL) {
		say(w, "error malloc: out of memory");
		return -1;
	}
	fill_random(buf, WARM_BYTES, SEED ^ 0xa5);
	int rc = timed_save(w, "warm", buf, WARM_BYTES, WARM_BYTES);
	if (rc == 0) {
		fill_compressible(buf, state_bytes, SEED);
		rc = timed_save(w, "fullz", buf, state_bytes, state_bytes);
	}
	if (rc == 0) {
		fill_random(buf, state_bytes, SEED);
		rc = timed_save(w, "full", buf, state_bytes, state_bytes);
	}
	if (rc == 0)
		rc = timed_save(w, "same", buf, state_bytes, 0);
	if (rc == 0)
		rc = timed_save(w, "runs5", buf, state_bytes,
		                dirty_runs(buf, state_bytes, runs_of(5), SEED + 1000));
	if (rc == 0)
		rc = timed_save(w, "runs25", buf, state_bytes,
		                dirty_runs(buf, state_bytes, runs_of(25), SEED + 2000));
	if (rc == 0)
		rc = timed_save(w, "pages5", buf, state_bytes, dirty_pages(buf, state_bytes, SEED + 3));
	if (rc == 0) {
		hash_hex(buf, state_bytes, hex);
		say(w, "final hash=%s", hex);
	}
	free(buf);
	return rc;
}

/* The state worker_save ends with, built again and saved once (as a new process's
 * first checkpoint, made of blocks the agents hold already). */
static int worker_resave(struct worker *w)
{
	char hex[65];
	uint8_t *buf = malloc(state_bytes);
	if (buf == NULL) {
		say(w, "error malloc: out of memory");
		return -1;
	}
	fill_random(buf, state_bytes, SEED);
	dirty_runs(buf, state_bytes, runs_of(5), SEED + 1000);
	dirty_runs(buf, state_bytes, runs_of(25), SEED + 2000);
	dirty_pages(buf, state_bytes, SEED + 3);
	int rc = timed_save(w, "resave", buf, state_bytes, 0);
	if (rc == 0) {
		hash_hex(buf, state_bytes, hex);
		say(w, "final hash=%s", hex);
	}
	free(buf);
	return rc;
}

static int worker_load(struct worker *w)
{
	char err[512] = "", cpu[256], hex[65];
	struct cpu a, b;
	snipe_ckpt_stats s;
	void *buf = NULL;
	size_t len = 0;
	cpu_sample(w->dir, &a);
	double t0 = now_ms();
	int rc = snipe_ckpt_load(w->c, &buf, &len, err, sizeof(err));
	double ms = now_ms() - t0;
	cpu_sample(w->dir, &b);
	if (rc != SNIPE_OK) {
		say(w, "error load: %s: %s", snipe_errname(rc), err);
		return -1;
	}
	snipe_ckpt_get_stats(w->c, &s);
	hash_hex(buf, len, hex);
	say_cpu(cpu, sizeof(cpu), &a, &b);
	say(w, "load ms=%.1f bytes=%zu seq=%" PRIu64 " %s hash=%s", ms, len, s.seq, cpu, hex);
	free(buf);
	return 0;
}

static int worker_main(int argc, char **argv)
{
	struct worker w = {0};
	char err[512] = "";
	uint64_t mib = 0;
	static const char *const modes[] = {"save", "resave", "load"};
	int mode = -1;
	for (int i = 0; argc == 6 && i < 3; i++)
		if (strcmp(argv[2], modes[i]) == 0)
			mode = i;
	if (mode < 0 || snipe_parse_u64(argv[5], 1, 4096, &mib) != SNIPE_OK) {
		fprintf(stderr, "usage: bench_ckpt worker save|resave|load OUT DIR MIB\n");
		return 2;
	}
	state_bytes = (size_t)mib * MIB;
	w.out = argv[3];
	w.dir = argv[4];
	w.f = fopen(w.out, "a");
	if (w.f == NULL || sodium_init() < 0) {
		fprintf(stderr, "bench_ckpt worker: cannot open %s: %s\n", w.out, strerror(errno));
		return 1;
	}
	int rc = snipe_ckpt_open(&w.c, err, sizeof(err));
	if (rc != SNIPE_OK)
		say(&w, "error open: %s: %s", snipe_errname(rc), err);
	else
		rc = mode == 0 ? worker_save(&w) : mode == 1 ? worker_resave(&w) : worker_load(&w);
	snipe_ckpt_close(w.c);
	fclose(w.f);
	return rc == 0 ? 0 : 1;
}

/* ------------------------------------------------------------------ anchor */

/* write() of buf in WRITE_CHUNK pieces to a new file in dir, then fsync; ms. */
static int write_fsync_ms(const char *dir, const uint8_t *buf, size_t len, double *ms,
                          char *err, size_t errlen)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/anchor.bin", dir);
	double t0 = now_ms();
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return bu_fail(err, errlen, "anchor: %s: %s", path, strerror(errno));
	int rc = 0;
	for (size_t off = 0; rc == 0 && off < len; off += WRITE_CHUNK)
		rc = sni_write_all(fd, buf + off, len - off < WRITE_CHUNK ? len - off : WRITE_CHUNK);
	if (rc == 0)
		rc = fsync(fd);
	*ms = now_ms() - t0;
	int e = errno;
	close(fd);
	unlink(path);
	return rc == 0 ? 0 : bu_fail(err, errlen, "anchor: writing %s: %s", path, strerror(e));
}

/* ------------------------------------------------------------------ stages */

/* One block of the state as the library makes it. */
struct zblock {
	const uint8_t *data;
	uint32_t size;
	uint8_t hash[SNI_HASH_BYTES];
	uint8_t *z;
	size_t zlen;
};

struct blockset {
	struct zblock *v;
	size_t n;
	uint64_t zbytes;
};

static void blockset_free(struct blockset *s)
{
	for (size_t i = 0; s->v != NULL && i < s->n; i++)
		free(s->v[i].z);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

/* Each stage alone, on the state_bytes of the incompressible full save (and make/open
 * on the compressible one), in ms. */
struct stages {
	size_t blocks;
	double cut, hash, make, open;   /* sni_chunk_cut, BLAKE2b, sni_block_make, _open */
	double zratio;                  /* uncompressed / zstd bytes */
	double make_z, open_z, zratio_z; /* the compressible state */
	double seal, unseal;            /* pack+sign / verify+unpack of the BlocksPut requests */
	double store_put, store_sync, store_get; /* agent_blocks_* on a store of our own */
	double peer_put, peer_get;      /* BlocksPut / BlocksGet to a live agent (host3) */
	double peer_put_cpu, peer_get_cpu; /* that agent's CPU seconds meanwhile */
};

/* sni_chunk_cut, hashing and sni_block_make over buf, timed each; the blocks into s. */
static int cut_and_make(const uint8_t *buf, size_t len, struct blockset *s, double *cut,
                        double *hash, double *make, char *err, size_t errlen)
{
	size_t cap = len / SNI_CHUNK_MIN + 1;
	s->v = calloc(cap, sizeof(*s->v));
	s->n = 0;
	s->zbytes = 0;
	if (s->v == NULL)
		return bu_fail(err, errlen, "out of memory");
	double t0 = now_ms();
	for (size_t off = 0; off < len && s->n < cap; s->n++) {
		size_t n = sni_chunk_cut(buf + off, len - off);
		s->v[s->n].data = buf + off;
		s->v[s->n].size = (uint32_t)n;
		off += n;
	}
	double t1 = now_ms();
	for (size_t i = 0; i < s->n; i++)
		crypto_generichash(s->v[i].hash, SNI_HASH_BYTES, s->v[i].data, s->v[i].size, NULL, 0);
	double t2 = now_ms();
	for (size_t i = 0; i < s->n; i++) {
		uint8_t h[SNI_HASH_BYTES];
		if (sni_block_make(s->v[i].data, s->v[i].size, h, &s->v[i].z, &s->v[i].zlen) !=
		    SNIPE_OK)
			return bu_fail(err, errlen, "sni_block_make failed on block %zu", i);
		s->zbytes += s->v[i].zlen;
	}
	double t3 = now_ms();
	*cut = t1 - t0;
	*hash = t2 - t1;
	*make = t3 - t2;
	return 0;
}

static int open_all(const struct blockset *s, double *ms, char *err, size_t errlen)
{
	uint8_t *out = malloc(SNI_CHUNK_MAX);
	if (out == NULL)
		return bu_fail(err, errlen, "out of memory");
	double t0 = now_ms();
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < s->n; i++)
		if (sni_block_open(s->v[i].hash, s->v[i].size, s->v[i].z, s->v[i].zlen, out) !=
		    SNIPE_OK)
			rc = bu_fail(err, errlen, "sni_block_open refused block %zu", i);
	*ms = now_ms() - t0;
	free(out);
	return rc;
}

/* Blocks [*i, ...) as one BlocksPut of about BATCH_BYTES compressed, as the library
 * batches them; the arrays (caller frees) live as long as the request. */
static void put_batch(const struct blockset *s, size_t *i, Snipe__AgentRequest *req,
                      Snipe__BlocksPut *put, Snipe__Block *b, Snipe__Block **bp)
{
	size_t k = 0, bytes = 0;
	for (; *i < s->n && bytes < BATCH_BYTES; (*i)++, k++) {
		const struct zblock *z = &s->v[*i];
		snipe__block__init(&b[k]);
		b[k].hash = (ProtobufCBinaryData){SNI_HASH_BYTES, (uint8_t *)z->hash};
		b[k].size = z->size;
		b[k].zstd = (ProtobufCBinaryData){z->zlen, z->z};
		bp[k] = &b[k];
		bytes += z->zlen;
	}
	snipe__blocks_put__init(put);
	put->blocks = bp;
	put->n_blocks = k;
	snipe__agent_request__init(req);
	req->op_case = SNIPE__AGENT_REQUEST__OP_BLOCKS_PUT;
	req->blocks_put = put;
}

/* What sni_agent_call and the agent's server do to each BlocksPut beyond the wire:
 * pack + seal (Ed25519 over the whole request), then open (verify) + unpack. */
static int envelopes(const struct blockset *s, const snipe_key *k, struct stages *st,
                     char *err, size_t errlen)
{
	snipe_keyring *kr = NULL;
	snipe_verifier *v = NULL;
	size_t nenv = s->zbytes / BATCH_BYTES + 2, m = 0;
	uint8_t **env = calloc(nenv, sizeof(*env));
	size_t *envlen = calloc(nenv, sizeof(*envlen));
	Snipe__Block *b = calloc(s->n, sizeof(*b));
	Snipe__Block **bp = calloc(s->n, sizeof(*bp));
	int rc = env != NULL && envlen != NULL && b != NULL && bp != NULL ? 0 : -1;
	if (rc == 0 && (snipe_keyring_new(&kr) != SNIPE_OK ||
	                snipe_keyring_add(kr, snipe_key_public(k)) != SNIPE_OK ||
	                snipe_verifier_new(kr, SNIPE_SKEW_DEFAULT_MS, SNIPE_REPLAY_DEFAULT_CAP,
	                                   &v) != SNIPE_OK))
		rc = -1;
	double t0 = now_ms();
	for (size_t i = 0; rc == 0 && i < s->n && m < nenv; m++) {
		Snipe__AgentRequest req;
		Snipe__BlocksPut put;
		put_batch(s, &i, &req, &put, b, bp);
		size_t len = snipe__agent_request__get_packed_size(&req);
		uint8_t *body = malloc(len);
		if (body == NULL) {
			rc = -1;
			break;
		}
		snipe__agent_request__pack(&req, body);
		if (snipe_env_seal(k, SNIPE_MSG_AGENT_REQUEST, body, len, &env[m], &envlen[m]) !=
		    SNIPE_OK)
			rc = -1;
		free(body);
	}
	double t1 = now_ms();
	for (size_t j = 0; rc == 0 && j < m; j++) {
		snipe_env_msg msg = {0};
		char verr[256];
		if (snipe_env_open(v, env[j], envlen[j], SNIPE_MSG_AGENT_REQUEST, &msg, verr,
		                   sizeof(verr)) != SNIPE_OK) {
			rc = bu_fail(err, errlen, "snipe_env_open: %s", verr);
			break;
		}
		Snipe__AgentRequest *req = snipe__agent_request__unpack(NULL, msg.body_len, msg.body);
		snipe_env_msg_clear(&msg);
		if (req == NULL)
			rc = bu_fail(err, errlen, "a sealed BlocksPut does not unpack");
		else
			snipe__agent_request__free_unpacked(req, NULL);
	}
	double t2 = now_ms();
	st->seal = t1 - t0;
	st->unseal = t2 - t1;
	for (size_t j = 0; env != NULL && j < nenv; j++)
		free(env[j]);
	free(env);
	free(envlen);
	free(b);
	free(bp);
	snipe_verifier_free(v);
	snipe_keyring_free(kr);
	if (rc != 0 && err[0] == '\0')
		bu_fail(err, errlen, "sealing BlocksPut requests failed");
	return rc;
}

/* The agent's block store code (agents/blocks.c) on a store of our own in dir: every
 * block put (checked, written, renamed), one sync, every block got (read, checked). */
static int store(const struct blockset *s, const char *dir, struct stages *st, char *err,
                 size_t errlen)
{
	char path[4200], berr[256];
	agent_blocks *b = NULL;
	snprintf(path, sizeof(path), "%s/bench-store", dir);
	if (agent_blocks_open(path, &b, berr, sizeof(berr)) != SNIPE_OK)
		return bu_fail(err, errlen, "%s", berr);
	int rc = 0;
	double t0 = now_ms();
	for (size_t i = 0; rc == 0 && i < s->n; i++)
		if (agent_blocks_put(b, s->v[i].hash, s->v[i].size, s->v[i].z, s->v[i].zlen, berr,
		                     sizeof(berr)) != SNIPE_OK)
			rc = bu_fail(err, errlen, "agent_blocks_put: %s", berr);
	double t1 = now_ms();
	if (rc == 0 && agent_blocks_sync(b) != SNIPE_OK)
		rc = bu_fail(err, errlen, "agent_blocks_sync failed");
	double t2 = now_ms();
	for (size_t i = 0; rc == 0 && i < s->n; i++) {
		uint8_t *z = NULL;
		size_t zlen = 0;
		uint32_t size = 0;
		if (agent_blocks_get(b, s->v[i].hash, &z, &zlen, &size, berr, sizeof(berr)) !=
		    SNIPE_OK)
			rc = bu_fail(err, errlen, "agent_blocks_get: %s", berr);
		free(z);
	}
	double t3 = now_ms();
	agent_blocks_close(b);
	bu_remove_tree(path);
	st->store_put = t1 - t0;
	st->store_sync = t2 - t1;
	st->store_get = t3 - t2;
	return rc;
}

/* Everything but the agents, on the incompressible and compressible states. */
static int stage_costs(uint8_t *buf, const char *dir, const snipe_key *admin,
                       struct blockset *s, struct stages *st, char *err, size_t errlen)
{
	struct blockset zs = {0};
	double cut, hash;
	fill_compressible(buf, state_bytes, SEED);
	int rc = cut_and_make(buf, state_bytes, &zs, &cut, &hash, &st->make_z, err, errlen);
	if (rc == 0)
		rc = open_all(&zs, &st->open_z, err, errlen);
	st->zratio_z = zs.zbytes ? (double)state_bytes / (double)zs.zbytes : 0;
	blockset_free(&zs);
	if (rc == 0) {
		fill_random(buf, state_bytes, SEED);
		rc = cut_and_make(buf, state_bytes, s, &st->cut, &st->hash, &st->make, err, errlen);
	}
	st->blocks = s->n;
	st->zratio = s->zbytes ? (double)state_bytes / (double)s->zbytes : 0;
	if (rc == 0)
		rc = open_all(s, &st->open, err, errlen);
	if (rc == 0)
		rc = envelopes(s, admin, st, err, errlen);
	if (rc == 0)
		rc = store(s, dir, st, err, errlen);
	return rc;
}

/* ------------------------------------------------------------------ cluster */

static char snipe_bin[4096], self_bin[4096];
static bool keep_dir;

/* ------------------------------------------------------------ the worker runs */

struct save_row {
	double ms;
	uint64_t dirty, bytes, sent, sent_blocks, blocks, seq;
	struct cpu cpu;
};

struct load_row {
	double ms;
	uint64_t bytes, seq;
	struct cpu cpu;
	char hash[65];
};

struct runs {
	struct save_row warm, fullz, full, same, runs5, runs25, pages5;
	struct save_row resave[HOSTS]; /* [0] unused */
	char final_hash[65];
	struct load_row load[HOSTS]; /* on host1 (saved there), host2 (replica), host3 */
};

static int parse_cpu(const char *line, struct cpu *c)
{
	const char *p = strstr(line, "cpu_self=");
	return p != NULL && sscanf(p, "cpu_self=%lf cpu_h1=%lf cpu_h2=%lf cpu_h3=%lf cpu_cat=%lf",
	                           &c->self, &c->host[0], &c->host[1], &c->host[2], &c->cat) == 5
	               ? 0
	               : -1;
}

static int parse_save(const char *line, struct save_row *r)
{
	return sscanf(line, "%*s %*s ms=%lf dirty=%" SCNu64 " bytes=%" SCNu64 " sent=%" SCNu64
	              " sent_blocks=%" SCNu64 " blocks=%" SCNu64 " seq=%" SCNu64, &r->ms,
	              &r->dirty, &r->bytes, &r->sent, &r->sent_blocks, &r->blocks, &r->seq) == 7
	               ? parse_cpu(line, &r->cpu)
	               : -1;
}

/* Reads a worker's OUT file into r: its "resave" line into *resave, its load into
 * *load, its final hash into hash. */
static int parse_out(const char *path, struct runs *r, struct save_row *resave,
                     struct load_row *load, char hash[65], char *err, size_t errlen)
{
	static const struct {
		const char *name;
		size_t off;
	} saves[] = {
		{"warm", offsetof(struct runs, warm)},     {"fullz", offsetof(struct runs, fullz)},
		{"full", offsetof(struct runs, full)},     {"same", offsetof(struct runs, same)},
		{"runs5", offsetof(struct runs, runs5)},   {"runs25", offsetof(struct runs, runs25)},
		{"pages5", offsetof(struct runs, pages5)},
	};
	struct save_row ignored;
	char line[1024], name[32];
	int rc = 0;
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return bu_fail(err, errlen, "the worker wrote no %s", path);
	while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if (strncmp(line, "error ", 6) == 0) {
			rc = bu_fail(err, errlen, "worker: %s", line + 6);
		} else if (sscanf(line, "save %31s", name) == 1) {
			rc = parse_save(line, strcmp(name, "resave") == 0 && resave != NULL ? resave
			                                                                     : &ignored);
			for (size_t i = 0; rc == 0 && i < sizeof(saves) / sizeof(saves[0]); i++)
				if (strcmp(saves[i].name, name) == 0)
					rc = parse_save(line, (struct save_row *)((char *)r + saves[i].off));
			if (rc != 0)
				bu_fail(err, errlen, "worker: cannot read '%s'", line);
		} else if (strncmp(line, "final hash=", 11) == 0) {
			snprintf(hash, 65, "%.64s", line + 11);
		} else if (strncmp(line, "load ", 5) == 0 && load != NULL) {
			const char *h = strstr(line, "hash=");
			if (sscanf(line, "load ms=%lf bytes=%" SCNu64 " seq=%" SCNu64, &load->ms,
			           &load->bytes, &load->seq) != 3 || parse_cpu(line, &load->cpu) != 0 ||
			    h == NULL)
				rc = bu_fail(err, errlen, "worker: cannot read '%s'", line);
			else
				snprintf(load->hash, sizeof(load->hash), "%.64s", h + 5);
		}
	}
	fclose(f);
	return rc;
}

/* Spawns `bench_ckpt worker MODE OUT DIR MIB` as name on host and waits until it has
 * ended; fails unless it exited 0. */
static int run_worker(const struct bu_cluster *c, rcds_client *cl, const char *name,
                      const char *mode, const char *host, const char *out, char *err,
                      size_t errlen)
{
	char serr[512] = "", why[1024], mib[24];
	snipe_proc_info info;
	snprintf(mib, sizeof(mib), "%zu", state_bytes / MIB);
	const char *argv[] = {self_bin, "worker", mode, out, c->dir, mib};
	snipe_spawn_opts o = {.name = name, .host = host, .restart = SNIPE_RESTART_NEVER,
	                      .argv = argv, .argc = 6};
	int rc = snipe_spawn(cl, &o, &info, serr, sizeof(serr));
	if (rc != SNIPE_OK)
		return bu_fail(err, errlen, "spawn of the %s worker on %s: %s: %s", mode, host,
		            snipe_errname(rc), serr);
	double t0 = now_ms();
	for (;;) {
		if (interrupted)
			return bu_fail(err, errlen, "interrupted");
		rc = snipe_wait(cl, info.urn, POLL_MS, &info, serr, sizeof(serr));
		if (rc == SNIPE_OK)
			break;
		if (rc != SNIPE_ETIMEDOUT || now_ms() - t0 > WORKER_MS)
			return bu_fail(err, errlen, "the %s worker on %s did not end: %s", mode, host,
			            rc == SNIPE_ETIMEDOUT ? "timed out" : serr);
	}
	if (strcmp(info.state, "exited") == 0 && info.has_exit && info.exit_code == 0)
		return 0;
	bu_last_line(out, why, sizeof(why));
	if (strncmp(why, "error ", 6) != 0) {
		char path[4200];
		snprintf(path, sizeof(path), "%s/%s/logs/%s.err", c->dir, host, name);
		bu_last_line(path, why, sizeof(why));
	}
	return bu_fail(err, errlen, "the %s worker %s on %s ended %s (exit %d): %s", mode, name,
	            host, info.state, info.exit_code, why);
}

/*
 * Process 1 makes every save on host1 and then loads in a fresh run on host1. Processes
 * 2 and 3 save the same final state on host1 (their first checkpoints, of blocks host1
 * and host2 hold already) and load in a fresh run on host2 (holding the copy) and host3
 * (holding nothing: its agent fetches every block from host1). Three names because a
 * name cannot be spawned a third time (see the header comment).
 */
static int worker_runs(const struct bu_cluster *c, rcds_client *cl, struct runs *r, char *err,
                       size_t errlen)
{
	char out[512], name[64], hash[65] = "";
	for (int h = 0; h < HOSTS; h++) {
		char host[16];
		snprintf(host, sizeof(host), "host%d", h + 1);
		snprintf(name, sizeof(name), "%s-%d", WORKER_NAME, h + 1);
		snprintf(out, sizeof(out), "%s/save-%d.out", c->dir, h + 1);
		if (run_worker(c, cl, name, h == 0 ? "save" : "resave", "host1", out, err, errlen) !=
		            0 ||
		    parse_out(out, r, &r->resave[h], NULL, h == 0 ? r->final_hash : hash, err,
		              errlen) != 0)
			return -1;
		if (r->final_hash[0] == '\0' || (h > 0 && strcmp(hash, r->final_hash) != 0))
			return bu_fail(err, errlen, "the save worker %s reported no or another final hash",
			            name);
		snprintf(out, sizeof(out), "%s/load-%s.out", c->dir, host);
		if (run_worker(c, cl, name, "load", host, out, err, errlen) != 0 ||
		    parse_out(out, r, NULL, &r->load[h], hash, err, errlen) != 0)
			return -1;
		if (r->load[h].ms <= 0 || strcmp(r->load[h].hash, r->final_hash) != 0)
			return bu_fail(err, errlen, "the load on %s returned other bytes than were saved "
			            "(hash %.16s..., saved %.16s...)", host, r->load[h].hash,
			            r->final_hash);
	}
	return 0;
}

/* --------------------------------------------------------------- peer leg */

static int agent_call(const struct bu_cluster *c, const char *address, Snipe__AgentRequest *req,
                      Snipe__AgentReply **r, char *err, size_t errlen)
{
	char aerr[512] = "";
	int rc = sni_agent_call(c->admin, address, req, PEER_MS, r, aerr, sizeof(aerr));
	if (rc == SNIPE_OK && (*r)->code != SNIPE_OK) {
		rc = (*r)->code;
		snprintf(aerr, sizeof(aerr), "%s", (*r)->error);
		snipe__agent_reply__free_unpacked(*r, NULL);
		*r = NULL;
	}
	return rc == SNIPE_OK ? 0
	                      : bu_fail(err, errlen, "agent %s: %s: %s", address, snipe_errname(rc), aerr);
}

/* One agent-to-agent copy as a commit makes it, with this process in the sending
 * agent's place: every block to host3 in BlocksPut batches (host3 checks, writes and
 * syncs each batch), then back in BlocksGet batches as a load fetches them. */
static int peer_leg(const struct bu_cluster *c, rcds_client *cl, const struct blockset *s,
                    struct stages *st, char *err, size_t errlen)
{
	char address[256];
	Snipe__Block *b = calloc(s->n, sizeof(*b));
	Snipe__Block **bp = calloc(s->n, sizeof(*bp));
	int pid = bu_agent_pid(c, "host3"), rc = 0;
	if (b == NULL || bp == NULL)
		rc = bu_fail(err, errlen, "out of memory");
	if (rc == 0 && sni_host_address(cl, "host3", address, sizeof(address)) != SNIPE_OK)
		rc = bu_fail(err, errlen, "host3 has no agent address in the catalog");
	/* first call: the agent fetches our key from the catalog */
	Snipe__AgentRequest req = SNIPE__AGENT_REQUEST__INIT;
	Snipe__BlocksHave have = SNIPE__BLOCKS_HAVE__INIT;
	Snipe__AgentReply *r = NULL;
	req.op_case = SNIPE__AGENT_REQUEST__OP_BLOCKS_HAVE;
	req.blocks_have = &have;
	if (rc == 0)
		rc = agent_call(c, address, &req, &r, err, errlen);
	if (r != NULL)
		snipe__agent_reply__free_unpacked(r, NULL);
	double cpu0 = bu_cpu_s(pid, true), t0 = now_ms();
	for (size_t i = 0; rc == 0 && i < s->n;) {
		Snipe__BlocksPut put;
		put_batch(s, &i, &req, &put, b, bp);
		r = NULL;
		rc = agent_call(c, address, &req, &r, err, errlen);
		if (r != NULL)
			snipe__agent_reply__free_unpacked(r, NULL);
	}
	double cpu1 = bu_cpu_s(pid, true), t1 = now_ms();
	for (size_t i = 0; rc == 0 && i < s->n;) {
		ProtobufCBinaryData h[GET_BATCH];
		Snipe__BlocksGet get = SNIPE__BLOCKS_GET__INIT;
		size_t k = 0;
		for (; i < s->n && k < GET_BATCH; i++, k++)
			h[k] = (ProtobufCBinaryData){SNI_HASH_BYTES, s->v[i].hash};
		snipe__agent_request__init(&req);
		get.hashes = h;
		get.n_hashes = k;
		req.op_case = SNIPE__AGENT_REQUEST__OP_BLOCKS_GET;
		req.blocks_get = &get;
		r = NULL;
		rc = agent_call(c, address, &req, &r, err, errlen);
		if (rc == 0 && r->n_blocks != k)
			rc = bu_fail(err, errlen, "host3 sent %zu of %zu blocks", r->n_blocks, k);
		if (r != NULL)
			snipe__agent_reply__free_unpacked(r, NULL);
	}
	st->peer_put = t1 - t0;
	st->peer_get = now_ms() - t1;
	st->peer_put_cpu = cpu1 - cpu0;
	st->peer_get_cpu = bu_cpu_s(pid, true) - cpu1;
	free(b);
	free(bp);
	return rc;
}

/* -------------------------------------------------------------------- report */

static void cpu_text(char *buf, size_t len, const struct cpu *c)
{
	snprintf(buf, len, "process %.2f, host1 %.2f, host2 %.2f, host3 %.2f, catalog %.2f",
	         c->self, c->host[0], c->host[1], c->host[2], c->cat);
}

static void save_line(const char *what, const struct save_row *s, const struct save_row *full,
                      const char *target, int met)
{
	char ratio[64] = "", cpu[160];
	if (full != NULL)
		snprintf(ratio, sizeof(ratio), "%4.1f%% of full; ", 100.0 * s->ms / full->ms);
	cpu_text(cpu, sizeof(cpu), &s->cpu);
	printf("  %-34s %7.0f ms  %-18s %-6s  %schanged %.1f MiB, sent %.1f MiB (%.1f%%) in %" PRIu64
	       " of %" PRIu64 " blocks\n", what, s->ms, target, met < 0 ? "" : bu_verdict(met != 0),
	       ratio, (double)s->dirty / MIB, (double)s->sent / MIB,
	       100.0 * (double)s->sent / (double)s->bytes, s->sent_blocks, s->blocks);
	printf("  %-34s %-7s     %-18s %-6s  CPU s: %s\n", "", "", "", "", cpu);
}

static void stage_line(const char *what, double ms, uint64_t bytes, const char *note)
{
	printf("    %-44s %7.0f ms  %6.0f MiB/s  %s\n", what, ms, mibps(bytes, ms), note);
}

/* write+fsync runs at the start and at the end of the run (ms). */
struct anchor {
	double ms[2 * ANCHOR_RUNS];
	int n;
};

static void print_breakdown(const struct runs *r, const struct stages *st)
{
	const uint64_t N = state_bytes;
	const struct cpu *c = &r->full.cpu;
	/* as the product now works: each block hashed once (with its compression), block
	 * bytes beside a small signed request (no Ed25519 over them), the copy to host2
	 * read back unchecked (host2 checks it) */
	double proc = st->cut + st->make;
	double host1 = st->store_put + st->store_sync + (st->store_get - st->open);
	double host2 = st->store_put + st->store_sync;
	double sum = proc + host1 + host2, busy = c->self + c->host[0] + c->host[1] + c->cat;
	printf("\n  where a full save's time goes: its stages run one after another (%.2f CPU s "
	       "busy in %.2f s; %ld CPUs)\n", busy, r->full.ms / 1000,
	       sysconf(_SC_NPROCESSORS_ONLN));
	printf("    %-58s %9s %16s\n", "", "stages alone", "CPU in the save");
	printf("    %-58s %6.0f ms %13.0f ms\n", "process: cut, hash+zstd", proc, 1000 * c->self);
	printf("    %-58s %6.0f ms %13.0f ms\n",
	       "host1 agent: check, put, syncfs; read back for host2", host1, 1000 * c->host[0]);
	printf("    %-58s %6.0f ms %13.0f ms\n", "host2 agent: check, put, syncfs", host2,
	       1000 * c->host[1]);
	printf("    %-58s %9s %13.0f ms\n", "catalog (manifest and process record)", "",
	       1000 * c->cat);
	printf("    %-58s %6.0f ms   measured %5.0f ms\n", "sum", sum, r->full.ms);
	double mk = st->cut + st->make;
	double checks = 2 * st->open, io = 2 * (st->store_put - st->open + st->store_sync) +
	                                   (st->store_get - st->open);
	printf("    by kind: block files written, synced, read %.0f ms (%.0f%%); zstd decode + "
	       "BLAKE2b checks on the agents (2 per block) %.0f ms (%.0f%%); cut + hash+zstd in "
	       "the process %.0f ms (%.0f%%)\n", io, 100 * io / sum, checks, 100 * checks / sum,
	       mk, 100 * mk / sum);
	printf("    (Ed25519 over the block bytes, as before they travelled beside the request, "
	       "would add %.0f ms)\n", 2 * (st->seal + st->unseal));
	printf("    the process's own stages alone cap a save at %.0f MiB/s on one core\n",
	       mibps(N, mk));
	printf("    an unchanged state is found by comparing bytes with the last save's copy: "
	       "%.0f ms with nothing changed (cutting and hashing it all: %.0f ms)\n",
	       r->same.ms, st->cut + st->hash);
	double local = 2 * st->store_get + st->open;
	printf("  a restore: the agent reads and checks every block (store get), then again "
	       "to send it, and the process checks it: %.0f ms of %.0f ms on host1; host3 also "
	       "fetches each block from host1 (get there, put here: %.0f ms more) and "
	       "measured %.0f ms\n", local, r->load[0].ms, st->store_get + st->store_put,
	       r->load[2].ms);
}

static void print_report(const struct runs *r, const struct stages *st, struct anchor *a)
{
	const uint64_t N = state_bytes;
	char target[32], cpu[160], what[64];
	qsort(a->ms, (size_t)a->n, sizeof(double), bu_cmp_double);
	double floor = mibps(N, a->ms[a->n / 2]), full = mibps(N, r->full.ms);
	printf("checkpoint: %zu MiB of state, library mode, by a process on host1 of a local "
	       "cluster (3 catalog replicas, %d agents on loopback, 2 copies)\n\n",
	       state_bytes / MIB, HOSTS);
	printf("  anchor (same run)   write()+fsync() of the same %zu MiB to a local file: "
	       "%.0f MiB/s (median of %d, %.0f-%.0f ms, half before, half after)\n\n",
	       state_bytes / MIB, floor, a->n, a->ms[0], a->ms[a->n - 1]);
	printf("  %-36s %10s  %-18s %s\n", "measure", "value", "target", "verdict, ratio");
	snprintf(target, sizeof(target), ">= %.0f MiB/s", FULL_VS_FLOOR * floor);
	printf("  %-36s %5.0f MiB/s  %-18s %-6s  %.2f x write+fsync; %.0f ms; sent %.0f MiB in "
	       "%" PRIu64 " blocks\n", "full, incompressible", full, target,
	       bu_verdict(full >= FULL_VS_FLOOR * floor), full / floor, r->full.ms,
	       (double)r->full.sent / MIB, r->full.sent_blocks);
	cpu_text(cpu, sizeof(cpu), &r->full.cpu);
	printf("  %-36s %-10s  %-18s %-6s  CPU s: %s\n", "", "", "", "", cpu);
	snprintf(what, sizeof(what), "full, compressible (zstd-1 %.2f:1)", st->zratio_z);
	printf("  %-36s %5.0f MiB/s  %-18s %-6s  %.2f x write+fsync; %.0f ms\n", what,
	       mibps(N, r->fullz.ms), "", "", mibps(N, r->fullz.ms) / floor, r->fullz.ms);
	cpu_text(cpu, sizeof(cpu), &r->fullz.cpu);
	printf("  %-36s %-10s  %-18s %-6s  CPU s: %s\n", "", "", "", "", cpu);
	save_line("incremental, nothing changed", &r->same, &r->full, "", -1);
	save_line("first save, blocks on the agents", &r->resave[1], &r->full, "", -1);
	snprintf(target, sizeof(target), "<= %.0f ms (10%%)", DIRTY5_VS_FULL * r->full.ms);
	snprintf(what, sizeof(what), "incremental 5%%, %zu x 1 MiB runs", runs_of(5));
	save_line(what, &r->runs5, &r->full, target, r->runs5.ms <= DIRTY5_VS_FULL * r->full.ms);
	snprintf(what, sizeof(what), "incremental 25%%, %zu x 1 MiB runs", runs_of(25));
	save_line(what, &r->runs25, &r->full, "", -1);
	save_line("incremental 5%, random 4 KiB pages", &r->pages5, &r->full, target,
	          r->pages5.ms <= DIRTY5_VS_FULL * r->full.ms);
	static const char *const where[HOSTS] = {
		"restore on host1 (saved there)", "restore on host2 (holds the copy)",
		"restore on host3 (fetches all)"};
	for (int h = 0; h < HOSTS; h++) {
		const struct load_row *l = &r->load[h];
		cpu_text(cpu, sizeof(cpu), &l->cpu);
		printf("  %-36s %5.0f MiB/s  %-18s %-6s  %.2f x write+fsync; %.0f ms; CPU s: %s\n",
		       where[h], mibps(l->bytes, l->ms), "", "", mibps(l->bytes, l->ms) / floor, l->ms,
		       cpu);
	}

	printf("\n  each stage alone, on the same %zu MiB in this process (%zu blocks, %.0f KiB "
	       "average; zstd-1 %.3f:1):\n", state_bytes / MIB, st->blocks,
	       (double)N / 1024.0 / (double)st->blocks, st->zratio);
	stage_line("gear chunking (sni_chunk_cut)", st->cut, N, "process, every save");
	stage_line("BLAKE2b of every block", st->hash, N, "process, every save");
	stage_line("BLAKE2b + zstd-1 (sni_block_make)", st->make, N,
	           "process, each changed block (hash), each sent (zstd)");
	stage_line("zstd-1 decode + BLAKE2b (sni_block_open)", st->open, N,
	           "agents, each block put or got; process, each block loaded");
	stage_line("  compressible state: sni_block_make", st->make_z, N, "");
	stage_line("  compressible state: sni_block_open", st->open_z, N, "");
	stage_line("pack + seal the BlocksPut requests", st->seal, N,
	           "each sender (Ed25519 over every 4 MiB request)");
	stage_line("open (verify) + unpack them", st->unseal, N,
	           "each receiving agent, on its loop thread");
	stage_line("block store put (check, write, rename)", st->store_put, N,
	           "agents/blocks.c, each agent storing");
	stage_line("block store syncfs after the puts", st->store_sync, N, "");
	stage_line("block store get (read, check)", st->store_get, N, "");
	char note[160];
	snprintf(note, sizeof(note), "this process -> host3's agent, new blocks (%.2f CPU s "
	         "there); a syncfs per request", st->peer_put_cpu);
	stage_line("one copy to an agent (BlocksPut)", st->peer_put, N, note);
	snprintf(note, sizeof(note), "host3's agent -> this process (%.2f CPU s there)",
	         st->peer_get_cpu);
	stage_line("one fetch from an agent (BlocksGet)", st->peer_get, N, note);
	print_breakdown(r, st);
}

/* ---------------------------------------------------------------------- main */

static int anchors(const struct bu_cluster *c, uint8_t *buf, struct anchor *a, char *err,
                   size_t errlen)
{
	fill_random(buf, state_bytes, SEED);
	for (int i = 0; i < ANCHOR_RUNS; i++)
		if (write_fsync_ms(c->dir, buf, state_bytes, &a->ms[a->n++], err, errlen) != 0)
			return -1;
	return 0;
}

static int bench(struct bu_cluster *c, const char *dir, struct runs *r, struct stages *st,
                 struct anchor *a, char *err, size_t errlen)
{
	struct blockset s = {0};
	rcds_client *cl = NULL;
	char cerr[256];
	double unused;
	uint8_t *buf = malloc(state_bytes);
	int rc = buf != NULL ? 0 : bu_fail(err, errlen, "out of memory");
	if (rc == 0)
		rc = bu_cluster_up(c, snipe_bin, dir, HOSTS, 0, err, errlen);
	if (rc == 0)
		rc = anchors(c, buf, a, err, errlen);
	if (rc == 0)
		rc = stage_costs(buf, c->dir, c->admin, &s, st, err, errlen);
	blockset_free(&s);
	if (rc == 0 && rcds_client_open(c->endpoints, c->admin, &cl, cerr, sizeof(cerr)) !=
	                       SNIPE_OK)
		rc = bu_fail(err, errlen, "catalog: %s", cerr);
	if (rc == 0) {
		rcds_client_set_timeout(cl, CLIENT_TIMEOUT_MS);
		rc = worker_runs(c, cl, r, err, errlen);
	}
	/* blocks no agent holds: a put over a present block costs more (ext4 flushes a file
	 * renamed over another) and is not what a commit does */
	if (rc == 0) {
		fill_random(buf, state_bytes, SEED ^ 0x9e3779b9u);
		rc = cut_and_make(buf, state_bytes, &s, &unused, &unused, &unused, err, errlen);
	}
	if (rc == 0)
		rc = peer_leg(c, cl, &s, st, err, errlen);
	if (rc == 0)
		rc = anchors(c, buf, a, err, errlen);
	rcds_client_close(cl);
	blockset_free(&s);
	free(buf);
	return rc;
}

int main(int argc, char **argv)
{
	char self[4096], err[1024] = "", derr[512];
	static struct bu_cluster c;
	static struct runs r;
	static struct stages st;
	static struct anchor a;
	if (argc >= 2 && strcmp(argv[1], "worker") == 0)
		return worker_main(argc, argv);
	for (int i = 1; i < argc; i++) {
		uint64_t mib = 0;
		if (strcmp(argv[i], "--keep") == 0) {
			keep_dir = true;
		} else if (strcmp(argv[i], "--mib") == 0 && i + 1 < argc &&
		           snipe_parse_u64(argv[i + 1], 16, 4096, &mib) == SNIPE_OK) {
			state_bytes = (size_t)mib * MIB;
			i++;
		} else {
			fprintf(stderr, "usage: bench_ckpt [--keep] [--mib 16-4096]\n");
			return 2;
		}
	}
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	self[n > 0 ? n : 0] = '\0';
	snprintf(self_bin, sizeof(self_bin), "%s", self);
	const char *dir = dirname(self);
	snprintf(snipe_bin, sizeof(snipe_bin), "%s/snipe", dir);
	static const char *const needed[] = {"snipe", "rcdsd", "snipe-agentd"};
	for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++) {
		char path[4200];
		snprintf(path, sizeof(path), "%s/%s", dir, needed[i]);
		if (access(path, X_OK) != 0) {
			fprintf(stderr, "bench_ckpt: no %s next to this binary (%s): build the snipe, "
			        "snipe-agentd and rcdsd targets\n", needed[i], path);
			return 1;
		}
	}
	if (sodium_init() < 0) {
		fprintf(stderr, "bench_ckpt: libsodium did not start\n");
		return 1;
	}
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	char scratch[64];
	snprintf(scratch, sizeof(scratch), "/tmp/snipe-bench-ckpt-%d", (int)getpid());
	int rc = bench(&c, scratch, &r, &st, &a, err, sizeof(err));
	if (bu_cluster_down(&c, snipe_bin, keep_dir || rc != 0, derr, sizeof(derr)) != 0 && rc == 0)
		rc = bu_fail(err, sizeof(err), "%s", derr);
	if (rc != 0)
		fprintf(stderr, "bench_ckpt: %s\n", err);
	if (c.dir[0] != '\0' && access(c.dir, F_OK) == 0)
		fprintf(stderr, "bench_ckpt: logs kept in %s\n", c.dir);
	if (rc != 0)
		return 1;
	print_report(&r, &st, &a);
	return 0;
}
