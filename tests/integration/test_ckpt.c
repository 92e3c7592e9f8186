/*
 * test_ckpt.c — checkpoints end to end: real replicas and real agents
 * (tests/common/cluster.h) running tests/integration/ckpt_prog.c (library mode) and
 * examples/counter.sh (directory mode). A 100 MiB round trip, the bytes an incremental
 * save sends, a job resuming on another host after kill -9 of its own (also in the
 * middle of a checkpoint), a corrupt copy found and repaired, stale writes refused by
 * the catalog, directory mode (snipe ckpt commit, exit 85) and `snipe ckpt URN`.
 *
 * ckpt_prog writes what it sees to a file in the cluster's directory, which the test
 * reads: the state it checkpoints is a function of (size, seed, step) (see ckpt_prog.c),
 * so a resumed job can tell whether what it loaded is exactly the step it claims.
 *
 * Not here: chunking and block files as units (unit/test_blocks.c), process
 * supervision without checkpoints (test_agent.c).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "cluster.h"
#include "rcds.h"
#include "sni.h" /* sni_chunk_cut: how a save cuts a state into blocks */
#include "snipe.h"
#include "testutil.h"

/* Asserts that a cluster stopped with every replica and agent ending cleanly. */
#define stop_cluster(c) ck_assert_int_eq(tc_cluster_stop(c), 0)

#define MIB (1024u * 1024u)
#define BIG (100u * MIB)
#define SEED 20240611u
#define HEADER 16u              /* ckpt_prog.c: step and size before the pattern */
#define POLL_MS 20
#define LOG_LINES 40
/* A job of a killed host runs elsewhere within a lease, a sweep and a heartbeat (test_agent.c
 * measures 1-1.5 s); with room for a loaded machine and a checkpoint to load. */
#define FAILOVER_MS 10000
/* A 100 MiB save and load, on 2 cores under a sanitizer. */
#define BIG_MS 90000

/* ------------------------------------------------------------------ helpers */

struct agent_def {
	const char *name;
	const char *const *extra; /* snipe-agentd flags, NULL-terminated; may be NULL */
};

/* A cluster of 3 replicas and the agents defs[0..n), in that order (agent i is
 * defs[i]); a client of the catalog holding the admin key into *cl. */
static tc_cluster *start_cluster(const struct agent_def *defs, size_t n, rcds_client **cl)
{
	tc_cluster *c = tc_cluster_start(3);
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(tc_agent_start(c, defs[i].name, defs[i].extra), (int)i);
	*cl = tc_cluster_client(c, -1, tc_cluster_admin_key(c));
	rcds_client_set_timeout(*cl, 10000);
	return c;
}

/* Agents a, b and c with the same flags. */
static tc_cluster *start_abc(const char *const *extra, rcds_client **cl)
{
	const struct agent_def defs[] = {{"a", extra}, {"b", extra}, {"c", extra}};
	return start_cluster(defs, 3, cl);
}

static void spawn_ok(tc_cluster *c, rcds_client *cl, const snipe_spawn_opts *o,
                     snipe_proc_info *out)
{
	char err[256] = "";
	int rc = snipe_spawn(cl, o, out, err, sizeof(err));
	if (rc != SNIPE_OK)
		tc_cluster_dump_logs(c, LOG_LINES);
	ck_assert_msg(rc == SNIPE_OK, "spawn %s: %s (%s)", o->name, snipe_errname(rc), err);
}

/* The value of key=NUMBER in line; aborts if absent. */
static uint64_t field(const char *line, const char *key)
{
	char pat[64];
	snprintf(pat, sizeof(pat), " %s=", key);
	const char *p = strstr(line, pat);
	ck_assert_msg(p != NULL, "no %s= in '%s'", key, line);
	return strtoull(p + strlen(pat), NULL, 10);
}

/* The value of key=WORD in line into out; aborts if absent. */
static void field_str(const char *line, const char *key, char *out, size_t len)
{
	char pat[64];
	snprintf(pat, sizeof(pat), " %s=", key);
	const char *p = strstr(line, pat);
	ck_assert_msg(p != NULL, "no %s= in '%s'", key, line);
	p += strlen(pat);
	snprintf(out, len, "%.*s", (int)strcspn(p, " \n"), p);
}

/* The text value of urn's attr into out; false if urn or attr is absent. */
static bool attr_get(rcds_client *cl, const char *urn, const char *attr, char *out, size_t len)
{
	rcds_list l = {0};
	char err[256] = "";
	bool found = false;
	int rc = rcds_get(cl, urn, &l, err, sizeof(err));
	ck_assert_msg(rc == SNIPE_OK || rc == SNIPE_ENOTFOUND, "get %s: %s (%s)", urn,
	              snipe_errname(rc), err);
	for (size_t i = 0; rc == SNIPE_OK && i < l.count; i++)
		if (strcmp(l.items[i].attr, attr) == 0) {
			snprintf(out, len, "%s", (const char *)l.items[i].value);
			found = true;
		}
	rcds_list_free(&l);
	return found;
}

/* urn's attr as a number; aborts if absent. */
static uint64_t attr_u64(rcds_client *cl, const char *urn, const char *attr)
{
	char v[64];
	ck_assert_msg(attr_get(cl, urn, attr, v, sizeof(v)), "%s has no %s", urn, attr);
	return strtoull(v, NULL, 10);
}

/* urn:snipe:ckpt:<name>/<seq> into out. */
static void ckpt_urn(const char *name, uint64_t seq, char *out, size_t len)
{
	snprintf(out, len, "urn:snipe:ckpt:%s/%" PRIu64, name, seq);
}

/* ckpt_prog's state of `step` (see ckpt_prog.c), computed here the same way. */
static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint8_t *state_of(size_t size, uint64_t seed, uint64_t step, size_t change)
{
	uint8_t *buf = malloc(size);
	ck_assert_ptr_nonnull(buf);
	uint64_t hdr[2] = {step, size};
	uint64_t base = splitmix64(seed), mixed = splitmix64(seed ^ splitmix64(step));
	memcpy(buf, hdr, HEADER);
	for (size_t off = HEADER; off < size; off += 8) {
		uint64_t w = splitmix64((off < change ? mixed : base) + off / 8);
		memcpy(buf + off, &w, size - off < 8 ? size - off : 8);
	}
	return buf;
}

/* The hex BLAKE2b-256 of ckpt_prog's state of step 0, every byte of it from the step. */
static void expected_hash(size_t size, uint64_t seed, char out[65])
{
	uint8_t *buf = state_of(size, seed, 0, size), h[32];
	crypto_generichash(h, sizeof(h), buf, size, NULL, 0);
	sodium_bin2hex(out, 65, h, sizeof(h));
	free(buf);
}

static int cmp_hash(const void *a, const void *b)
{
	return memcmp(a, b, SNI_HASH_BYTES);
}

/* The block hashes of buf (content-defined, as a save cuts it), sorted; *n of them. */
static uint8_t (*block_hashes(const uint8_t *buf, size_t len, size_t *n))[SNI_HASH_BYTES]
{
	uint8_t (*v)[SNI_HASH_BYTES] = malloc((len / SNI_CHUNK_MIN + 1) * SNI_HASH_BYTES);
	ck_assert_ptr_nonnull(v);
	*n = 0;
	for (size_t off = 0; off < len;) {
		size_t cut = sni_chunk_cut(buf + off, len - off);
		crypto_generichash(v[(*n)++], SNI_HASH_BYTES, buf + off, cut, NULL, 0);
		off += cut;
	}
	qsort(v, *n, SNI_HASH_BYTES, cmp_hash);
	return v;
}

/* What a manifest's new_bytes says of cur after prev: the bytes of cur's blocks that
 * prev's blocks do not include. */
static uint64_t new_bytes_after(const uint8_t *prev, const uint8_t *cur, size_t len)
{
	size_t n = 0;
	uint8_t (*have)[SNI_HASH_BYTES] = block_hashes(prev, len, &n);
	uint64_t bytes = 0;
	for (size_t off = 0; off < len;) {
		size_t cut = sni_chunk_cut(cur + off, len - off);
		uint8_t h[SNI_HASH_BYTES];
		crypto_generichash(h, sizeof(h), cur + off, cut, NULL, 0);
		if (bsearch(h, have, n, SNI_HASH_BYTES, cmp_hash) == NULL)
			bytes += cut;
		off += cut;
	}
	free(have);
	return bytes;
}

/* The directory of host's block store. */
static char *blocks_dir(tc_cluster *c, const char *host)
{
	char sub[64];
	snprintf(sub, sizeof(sub), "host-%s/blocks", host);
	return tu_path(tc_cluster_dir(c), sub);
}

/* Block files in host's store (temporary files not counted). */
static size_t count_blocks(tc_cluster *c, const char *host)
{
	char *dir = blocks_dir(c, host);
	size_t n = 0;
	DIR *top = opendir(dir);
	for (struct dirent *d; top != NULL && (d = readdir(top)) != NULL;) {
		if (d->d_name[0] == '.')
			continue;
		char *sub = tu_path(dir, d->d_name);
		DIR *s = opendir(sub);
		for (struct dirent *e; s != NULL && (e = readdir(s)) != NULL;)
			n += strlen(e->d_name) == 64;
		if (s != NULL)
			closedir(s);
		free(sub);
	}
	if (top != NULL)
		closedir(top);
	free(dir);
	return n;
}

/* A ckpt_prog command line, and the strings it points to. */
struct prog {
	char out[4096];    /* the file it writes */
	char size[24], seed[24], change[24], steps[24], pause[24];
	const char *argv[8];
	size_t argc;
};

static void prog_init(struct prog *p, tc_cluster *c, const char *mode, const char *name,
                      size_t size)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->out, sizeof(p->out), "%s/%s.out", tc_cluster_dir(c), name);
	snprintf(p->size, sizeof(p->size), "%zu", size);
	snprintf(p->seed, sizeof(p->seed), "%u", SEED);
	p->argv[0] = CKPT_PROG_PATH;
	p->argv[1] = mode;
	p->argv[2] = p->out;
	p->argv[3] = p->size;
	p->argv[4] = p->seed;
	p->argc = 5;
}

/* A `steps` run: CHANGE bytes of the state change with each step, STEPS steps, PAUSE_MS
 * between them. */
static void prog_steps(struct prog *p, tc_cluster *c, const char *name, size_t size,
                       size_t change, uint64_t steps, unsigned pause_ms)
{
	prog_init(p, c, "steps", name, size);
	snprintf(p->change, sizeof(p->change), "%zu", change);
	snprintf(p->steps, sizeof(p->steps), "%" PRIu64, steps);
	snprintf(p->pause, sizeof(p->pause), "%u", pause_ms);
	p->argv[5] = p->change;
	p->argv[6] = p->steps;
	p->argv[7] = p->pause;
	p->argc = 8;
}

/* Spawns p as name on host with policy, asking for label (NULL: none) wherever it moves;
 * its record into out. */
static void prog_spawn(tc_cluster *c, rcds_client *cl, struct prog *p, const char *name,
                       const char *host, snipe_restart policy, const char *label,
                       snipe_proc_info *out)
{
	const char *labels[] = {label};
	snipe_spawn_opts o = {.name = name, .host = host, .restart = policy, .argv = p->argv,
	                      .argc = p->argc, .labels = labels, .nlabels = label != NULL};
	spawn_ok(c, cl, &o, out);
	ck_assert_str_eq(out->host, host);
}

/* Runs p to its end, which must be exit 0, then reads its output (free it). */
static char *prog_run(tc_cluster *c, rcds_client *cl, struct prog *p, const char *name,
                      const char *host, int timeout_ms)
{
	snipe_proc_info info;
	prog_spawn(c, cl, p, name, host, SNIPE_RESTART_NEVER, NULL, &info);
	tc_wait_ended(c, cl, info.urn, timeout_ms, &info);
	char *text = tu_slurp(p->out, NULL);
	if (strcmp(info.state, "exited") != 0 || info.exit_code != 0) {
		fprintf(stderr, "--- %s ---\n%s", p->out, text ? text : "(none)\n");
		tc_cluster_dump_logs(c, LOG_LINES);
	}
	ck_assert_str_eq(info.state, "exited");
	ck_assert_int_eq(info.exit_code, 0);
	ck_assert_ptr_nonnull(text);
	return text;
}

/* The line of text starting with prefix; aborts if there is none. */
static void line_of(const char *text, const char *prefix, char *out, size_t len)
{
	ck_assert_msg(tu_find_line(text, prefix, out, len), "no line '%s...' in:\n%s", prefix,
	              text);
}

/* ---------------------------------------------------------------- library mode */

/* 100 MiB of seeded random state saved by a job and loaded back by it through a fresh
 * handle: the same bytes (and hash) as the test computes for that seed, all of it sent
 * once, committed as checkpoint 1 on the job's host and the next one (a, b). */
START_TEST(test_100_mib_state_round_trips_through_a_checkpoint)
{
	rcds_client *cl = NULL;
	tc_cluster *c = start_abc(NULL, &cl);
	struct prog p;
	char line[1024], hash[65], want[65];
	prog_init(&p, c, "roundtrip", "roundtrip", BIG);
	uint64_t t0 = tu_mono_ms();
	char *text = prog_run(c, cl, &p, "roundtrip", "a", BIG_MS);
	fprintf(stderr, "roundtrip: 100 MiB saved and loaded in %" PRIu64 " ms\n", tu_mono_ms() - t0);

	line_of(text, "e1 saved ", line, sizeof(line));
	ck_assert_uint_eq(field(line, "seq"), 1);
	ck_assert_uint_eq(field(line, "bytes"), BIG);
	ck_assert_uint_eq(field(line, "sent_bytes"), BIG); /* random: no block twice */
	uint64_t blocks = field(line, "blocks");
	ck_assert_uint_eq(field(line, "sent_blocks"), blocks);
	ck_assert_uint_ge(blocks, BIG / SNI_CHUNK_MAX);
	ck_assert_uint_le(blocks, BIG / SNI_CHUNK_MIN);
	line_of(text, "e1 hash=", line, sizeof(line));
	expected_hash(BIG, SEED, want);
	ck_assert_str_eq(line + strlen("e1 hash="), want);
	line_of(text, "e1 loaded ", line, sizeof(line));
	ck_assert_uint_eq(field(line, "seq"), 1);
	ck_assert_uint_eq(field(line, "len"), BIG);
	ck_assert_uint_eq(field(line, "equal"), 1);
	field_str(line, "hash", hash, sizeof(hash));
	ck_assert_str_eq(hash, want);

	char urn[SNIPE_URN_MAX], v[256];
	ckpt_urn("roundtrip", 1, urn, sizeof(urn));
	ck_assert_uint_eq(attr_u64(cl, "urn:snipe:proc:roundtrip", "ckpt"), 1);
	ck_assert_uint_eq(attr_u64(cl, urn, "seq"), 1);
	ck_assert_uint_eq(attr_u64(cl, urn, "epoch"), 1);
	ck_assert_uint_eq(attr_u64(cl, urn, "size"), BIG);
	ck_assert_uint_eq(attr_u64(cl, urn, "new_bytes"), BIG);
	ck_assert(attr_get(cl, urn, "hosts", v, sizeof(v)));
	ck_assert_str_eq(v, "a,b");
	ck_assert(attr_get(cl, urn, "proc", v, sizeof(v)));
	ck_assert_str_eq(v, "urn:snipe:proc:roundtrip");
	/* one file per block on each of the two hosts, none on the third */
	ck_assert_uint_eq(count_blocks(c, "a"), blocks);
	ck_assert_uint_eq(count_blocks(c, "b"), blocks);
	ck_assert_uint_eq(count_blocks(c, "c"), 0);
	free(text);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* After a full save of 100 MiB, rewriting 5% of it in place (5 runs of 1%) sends 5% to
 * 9% of the bytes: the changed bytes and the content-defined blocks around each run;
 * then 1 KiB inserted in the middle sends fewer than 4 blocks' worth. The catalog's
 * new_bytes says the same, checkpoint 1 is gone (2 are kept), and the last state
 * loads back whole. */
START_TEST(test_incremental_save_sends_only_the_blocks_that_changed)
{
	rcds_client *cl = NULL;
	tc_cluster *c = start_abc(NULL, &cl);
	struct prog p;
	char line[1024];
	prog_init(&p, c, "incremental", "incr", BIG);
	uint64_t t0 = tu_mono_ms();
	char *text = prog_run(c, cl, &p, "incr", "a", BIG_MS);
	fprintf(stderr, "incremental: 3 saves of 100 MiB and a load in %" PRIu64 " ms\n",
	        tu_mono_ms() - t0);

	line_of(text, "e1 save1 ", line, sizeof(line));
	ck_assert_uint_eq(field(line, "seq"), 1);
	ck_assert_uint_eq(field(line, "sent_bytes"), BIG);

	line_of(text, "e1 save2 ", line, sizeof(line));
	fprintf(stderr, "incremental: %s\n", line);
	ck_assert_uint_eq(field(line, "seq"), 2);
	ck_assert_uint_eq(field(line, "bytes"), BIG);
	uint64_t sent2 = field(line, "sent_bytes");
	ck_assert_uint_ge(sent2, 5 * (BIG / 100));   /* every changed byte */
	ck_assert_uint_le(sent2, 9 * (BIG / 100));   /* and not much more */
	ck_assert_uint_lt(field(line, "sent_blocks"), field(line, "blocks") / 10);

	line_of(text, "e1 save3 ", line, sizeof(line));
	fprintf(stderr, "incremental: %s\n", line);
	ck_assert_uint_eq(field(line, "seq"), 3);
	ck_assert_uint_eq(field(line, "bytes"), BIG + 1024);
	uint64_t sent3 = field(line, "sent_bytes");
	ck_assert_uint_ge(sent3, 1024);
	ck_assert_uint_lt(sent3, 4 * SNI_CHUNK_AVG);
	ck_assert_uint_ge(field(line, "sent_blocks"), 1);
	ck_assert_uint_le(field(line, "sent_blocks"), 3);

	line_of(text, "e1 loaded ", line, sizeof(line));
	ck_assert_uint_eq(field(line, "seq"), 3);
	ck_assert_uint_eq(field(line, "len"), BIG + 1024);
	ck_assert_uint_eq(field(line, "equal"), 1);

	/* new_bytes counts the blocks the previous checkpoint lacked, a save sends those
	 * the agent lacks: the same here, as a holds the blocks of checkpoints 1 and 2 only
	 * and the spots and the insertion are at places where 1 and 2 agree */
	char urn[SNIPE_URN_MAX], v[64];
	ckpt_urn("incr", 2, urn, sizeof(urn));
	ck_assert_uint_eq(attr_u64(cl, urn, "new_bytes"), sent2);
	ck_assert_uint_eq(attr_u64(cl, urn, "size"), BIG);
	ckpt_urn("incr", 3, urn, sizeof(urn));
	ck_assert_uint_eq(attr_u64(cl, urn, "new_bytes"), sent3);
	ck_assert_uint_eq(attr_u64(cl, urn, "size"), BIG + 1024);
	ckpt_urn("incr", 1, urn, sizeof(urn));
	ck_assert(!attr_get(cl, urn, "manifest", v, sizeof(v)));
	ck_assert_uint_eq(attr_u64(cl, "urn:snipe:proc:incr", "ckpt"), 3);
	free(text);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* Asserts the checkpoint a resumed job loaded, `seq` (its "resumed" line says so), is the
 * last one its first instance committed: checkpoint seq is of epoch 1 and seq + 1, if
 * any, of epoch 2. */
static void assert_last_of_epoch_1(rcds_client *cl, const char *name, uint64_t seq)
{
	char urn[SNIPE_URN_MAX], v[64];
	ckpt_urn(name, seq, urn, sizeof(urn));
	ck_assert_uint_eq(attr_u64(cl, urn, "epoch"), 1);
	ckpt_urn(name, seq + 1, urn, sizeof(urn));
	if (attr_get(cl, urn, "epoch", v, sizeof(v)))
		ck_assert_str_eq(v, "2");
}

/* kill -9 of the host of a job checkpointing 4 MiB every step: it runs on b (idle, and
 * first by name) with epoch 2, loads the last checkpoint its first instance committed,
 * finds it exactly the state of the step it names, and goes on from the next step. */
START_TEST(test_job_of_a_killed_host_resumes_elsewhere_from_its_last_checkpoint)
{
	rcds_client *cl = NULL;
	tc_cluster *c = start_abc(NULL, &cl);
	struct prog p;
	snipe_proc_info info, moved;
	char line[1024], prefix[64];
	prog_steps(&p, c, "resume", 4 * MIB, 4 * MIB, 100000, 100);
	prog_spawn(c, cl, &p, "resume", "a", SNIPE_RESTART_ALWAYS, NULL, &info);
	tc_wait_line(c, p.out, "e1 saved step 3 ", FAILOVER_MS, line, sizeof(line));

	uint64_t t0 = tu_mono_ms();
	tc_agent_kill(c, 0);
	tc_wait_running_on(c, cl, info.urn, "b", 2, FAILOVER_MS, &moved);
	tc_wait_line(c, p.out, "e2 resumed at step ", FAILOVER_MS, line, sizeof(line));
	fprintf(stderr, "resume: '%s' %" PRIu64 " ms after kill -9\n", line, tu_mono_ms() - t0);
	uint64_t step = 0, seq = 0;
	char host[16], verdict[8];
	ck_assert_int_eq(sscanf(line, "e2 resumed at step %" SCNu64 " seq %" SCNu64 " on %15s %7s",
	                        &step, &seq, host, verdict), 4);
	ck_assert_str_eq(verdict, "ok");
	ck_assert_str_eq(host, "b");
	ck_assert_uint_ge(step, 3);
	ck_assert_uint_eq(seq, step); /* one checkpoint per step, none failed */
	assert_last_of_epoch_1(cl, "resume", seq);
	/* the first instance never got past it */
	char *text = tu_slurp(p.out, NULL);
	snprintf(prefix, sizeof(prefix), "e1 saved step %" PRIu64 " ", step + 1);
	ck_assert_msg(!tu_find_line(text, prefix, line, sizeof(line)), "%s", text);
	free(text);
	snprintf(prefix, sizeof(prefix), "e2 saved step %" PRIu64 " seq=%" PRIu64 " ", step + 1,
	         seq + 1);
	tc_wait_line(c, p.out, prefix, FAILOVER_MS, line, sizeof(line));
	ck_assert_uint_eq(moved.restarts, 1);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* kill -9 of the host while a 48 MiB checkpoint (every byte new) is being copied to
 * the second host: the new checkpoint is never committed, and the job, on b, loads the
 * one before it, complete and exactly the state of its step. */
START_TEST(test_host_killed_mid_checkpoint_leaves_the_previous_one_valid)
{
	rcds_client *cl = NULL;
	tc_cluster *c = start_abc(NULL, &cl);
	struct prog p;
	snipe_proc_info info, moved;
	char line[1024];
	prog_steps(&p, c, "torn", 48 * MIB, 48 * MIB, 100000, 0);
	prog_spawn(c, cl, &p, "torn", "a", SNIPE_RESTART_ALWAYS, NULL, &info);
	tc_wait_line(c, p.out, "e1 saved step 2 ", BIG_MS, line, sizeof(line));
	size_t before = count_blocks(c, "b");
	tc_wait_line(c, p.out, "e1 saving step 3", BIG_MS, line, sizeof(line));
	/* step 3's blocks arriving on b: a holds them all and is replicating */
	uint64_t deadline = tu_mono_ms() + BIG_MS;
	while (count_blocks(c, "b") < before + 50) {
		ck_assert_msg(tu_mono_ms() < deadline, "no blocks of step 3 reached b");
		tu_sleep_ms(5);
	}
	tc_agent_kill(c, 0);
	size_t partial = count_blocks(c, "b") - before;
	fprintf(stderr, "torn: host killed with %zu blocks of step 3 on b\n", partial);

	tc_wait_running_on(c, cl, info.urn, "b", 2, FAILOVER_MS, &moved);
	tc_wait_line(c, p.out, "e2 resumed at step ", BIG_MS, line, sizeof(line));
	ck_assert_str_eq(line, "e2 resumed at step 2 seq 2 on b ok");
	char *text = tu_slurp(p.out, NULL);
	ck_assert_msg(!tu_find_line(text, "e1 saved step 3 ", line, sizeof(line)), "%s", text);
	ck_assert(tu_find_last_line(text, "e1 ", line, sizeof(line)));
	ck_assert_str_eq(line, "e1 saving step 3"); /* the first instance's last word */
	free(text);
	assert_last_of_epoch_1(cl, "torn", 2);
	tc_wait_line(c, p.out, "e2 saved step 3 seq=3 ", BIG_MS, line, sizeof(line));
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* The agent flags of hosts where jobs asking for pool=x run. */
static const char *const pool_x[] = {"--labels", "pool=x", NULL};

/* kill -9 of the host of a job that only a and c may run (label pool=x), its checkpoint
 * on a and b: c, holding no copy, fetches the blocks from b (a is dead) and the job
 * resumes there at the first try, within the failover time. */
START_TEST(test_job_resumes_promptly_on_a_host_holding_no_copy)
{
	const struct agent_def defs[] = {{"a", pool_x}, {"b", NULL}, {"c", pool_x}};
	rcds_client *cl = NULL;
	tc_cluster *c = start_cluster(defs, 3, &cl);
	struct prog p;
	snipe_proc_info info, moved;
	char line[1024], hosts[64];
	prog_steps(&p, c, "far", 4 * MIB, 4 * MIB, 2, 600000);
	prog_spawn(c, cl, &p, "far", "a", SNIPE_RESTART_ON_FAILURE, "pool=x", &info);
	tc_wait_line(c, p.out, "e1 saved step 1 ", FAILOVER_MS, line, sizeof(line));
	ck_assert(attr_get(cl, "urn:snipe:ckpt:far/1", "hosts", hosts, sizeof(hosts)));
	ck_assert_str_eq(hosts, "a,b");
	size_t blocks = count_blocks(c, "b");
	ck_assert_uint_eq(count_blocks(c, "c"), 0);

	uint64_t t0 = tu_mono_ms();
	tc_agent_kill(c, 0);
	tc_wait_running_on(c, cl, info.urn, "c", 2, FAILOVER_MS, &moved);
	tc_wait_line(c, p.out, "e2 resumed at step ", FAILOVER_MS, line, sizeof(line));
	fprintf(stderr, "far: '%s' %" PRIu64 " ms after kill -9\n", line, tu_mono_ms() - t0);
	ck_assert_str_eq(line, "e2 resumed at step 1 seq 1 on c ok");
	ck_assert_uint_eq(count_blocks(c, "c"), blocks);
	tc_proc_get(cl, info.urn, &moved);
	ck_assert_uint_eq(moved.restarts, 1); /* the move, and no failed run after it */
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* ------------------------------------------------------------------ corruption */

/* The path of the block file of host's store whose name sorts first (the store must
 * hold one). */
static char *first_block(tc_cluster *c, const char *host)
{
	char *dir = blocks_dir(c, host), best[128] = "";
	DIR *top = opendir(dir);
	ck_assert_ptr_nonnull(top);
	for (struct dirent *d; (d = readdir(top)) != NULL;) {
		if (d->d_name[0] == '.')
			continue;
		char *sub = tu_path(dir, d->d_name);
		DIR *s = opendir(sub);
		for (struct dirent *e; s != NULL && (e = readdir(s)) != NULL;)
			if (strlen(e->d_name) == 64 && (best[0] == '\0' || strcmp(e->d_name, best + 3) < 0))
				snprintf(best, sizeof(best), "%.2s/%.64s", e->d_name, e->d_name);
		if (s != NULL)
			closedir(s);
		free(sub);
	}
	closedir(top);
	ck_assert_msg(best[0] != '\0', "no block in %s", dir);
	char *path = tu_path(dir, best);
	free(dir);
	return path;
}

/* The bytes of a file (malloc'd) and their number. */
static uint8_t *read_bytes(const char *path, size_t *len)
{
	char *bytes = tu_slurp(path, len);
	ck_assert_msg(bytes != NULL, "cannot read %s", path);
	return (uint8_t *)bytes;
}

/* Flips one bit in the middle of a file, in place. */
static void flip_byte(const char *path)
{
	int fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	struct stat st;
	ck_assert_int_eq(fstat(fd, &st), 0);
	off_t at = st.st_size / 2;
	uint8_t b = 0;
	ck_assert_int_eq(pread(fd, &b, 1, at), 1);
	b ^= 0x10;
	ck_assert_int_eq(pwrite(fd, &b, 1, at), 1);
	close(fd);
}

/* A file holds exactly len bytes equal to want. */
static void assert_file_is(const char *path, const uint8_t *want, size_t len)
{
	size_t n = 0;
	uint8_t *got = read_bytes(path, &n);
	ck_assert_uint_eq(n, len);
	ck_assert_msg(memcmp(got, want, len) == 0, "%s is not its good copy", path);
	free(got);
}

/* Waits at most timeout_ms until agent i's log contains text. */
static void wait_agent_log(tc_cluster *c, int i, const char *text, int timeout_ms)
{
	uint64_t deadline = tu_mono_ms() + (uint64_t)timeout_ms;
	while (!tc_agent_log_contains(c, i, text)) {
		if (tu_mono_ms() >= deadline) {
			tc_cluster_dump_logs(c, LOG_LINES);
			ck_abort_msg("agent %d never logged '%s'", i, text);
		}
		tu_sleep_ms(POLL_MS);
	}
}

/* A job's own host finds a block of its checkpoint corrupt when the job restarts
 * there (kill -9 of the process, policy on-failure): the copy is dropped and fetched
 * again from b, the job loads its state whole at its first restart and ends, and the
 * file holds its good bytes again. */
START_TEST(test_corrupt_local_copy_is_refetched_on_restart)
{
	rcds_client *cl = NULL;
	tc_cluster *c = start_abc(NULL, &cl);
	struct prog p;
	snipe_proc_info info, again;
	char line[1024];
	prog_steps(&p, c, "local", 4 * MIB, 4 * MIB, 1, 600000);
	prog_spawn(c, cl, &p, "local", "a", SNIPE_RESTART_ON_FAILURE, NULL, &info);
	tc_wait_line(c, p.out, "e1 saved step 1 ", FAILOVER_MS, line, sizeof(line));
	char *path = first_block(c, "a");
	size_t len = 0;
	uint8_t *good = read_bytes(path, &len);
	flip_byte(path);

	ck_assert_int_eq(kill((pid_t)info.pid, SIGKILL), 0);
	tc_wait_line(c, p.out, "e1 resumed at step ", FAILOVER_MS, line, sizeof(line));
	ck_assert_str_eq(line, "e1 resumed at step 1 seq 1 on a ok");
	tc_proc_get(cl, info.urn, &again);
	ck_assert_str_eq(again.host, "a");
	ck_assert_uint_eq(again.epoch, 1);
	ck_assert_uint_eq(again.restarts, 1);
	tc_wait_ended(c, cl, info.urn, FAILOVER_MS, &again);
	ck_assert_str_eq(again.state, "exited");
	ck_assert_uint_eq(again.restarts, 1);
	assert_file_is(path, good, len);
	free(good);
	free(path);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* Three copies (a, b, c); a byte of one block flipped on b, the second host; kill -9
 * of a, the job's host: d (the only other host with pool=x) holds no copy and restores
 * from b and c: the job resumes with its state whole, and d gives b the good copy of
 * the block b failed to give ("repaired the copy on b"), byte for byte. */
START_TEST(test_corrupt_replica_is_skipped_and_repaired_on_restore)
{
	static const char *const three[] = {"--ckpt-copies", "3", NULL};
	static const char *const three_x[] = {"--ckpt-copies", "3", "--labels", "pool=x", NULL};
	const struct agent_def defs[] = {{"a", three_x}, {"b", three}, {"c", three},
	                                 {"d", three_x}};
	rcds_client *cl = NULL;
	tc_cluster *c = start_cluster(defs, 4, &cl);
	struct prog p;
	snipe_proc_info info, moved;
	char line[1024], hosts[64];
	prog_steps(&p, c, "healed", 4 * MIB, 4 * MIB, 1, 600000);
	prog_spawn(c, cl, &p, "healed", "a", SNIPE_RESTART_ON_FAILURE, "pool=x", &info);
	tc_wait_line(c, p.out, "e1 saved step 1 ", FAILOVER_MS, line, sizeof(line));
	ck_assert(attr_get(cl, "urn:snipe:ckpt:healed/1", "hosts", hosts, sizeof(hosts)));
	ck_assert_str_eq(hosts, "a,b,c");
	size_t blocks = count_blocks(c, "b");
	char *path = first_block(c, "b");
	size_t len = 0;
	uint8_t *good = read_bytes(path, &len);
	flip_byte(path);

	uint64_t t0 = tu_mono_ms();
	tc_agent_kill(c, 0);
	tc_wait_running_on(c, cl, info.urn, "d", 2, FAILOVER_MS, &moved);
	tc_wait_line(c, p.out, "e2 resumed at step ", FAILOVER_MS, line, sizeof(line));
	fprintf(stderr, "healed: '%s' %" PRIu64 " ms after kill -9\n", line, tu_mono_ms() - t0);
	ck_assert_str_eq(line, "e2 resumed at step 1 seq 1 on d ok");
	wait_agent_log(c, 3, "urn:snipe:proc:healed checkpoint 1: repaired the copy on b",
	               FAILOVER_MS);
	assert_file_is(path, good, len);
	ck_assert_uint_eq(count_blocks(c, "b"), blocks);
	ck_assert_uint_eq(count_blocks(c, "d"), blocks);
	free(good);
	free(path);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* --------------------------------------------------------------- the catalog */

/* urn's assertions as "attr@version" lines (malloc'd), to compare before and after. */
static char *snapshot(rcds_client *cl, const char *prefix)
{
	rcds_list l = {0};
	char err[256] = "";
	int rc = rcds_query(cl, prefix, NULL, 0, &l, err, sizeof(err));
	ck_assert_msg(rc == SNIPE_OK, "query %s: %s", prefix, err);
	size_t cap = 64 + l.count * (SNIPE_URN_MAX + 96), n = 0;
	char *s = malloc(cap);
	ck_assert_ptr_nonnull(s);
	s[0] = '\0';
	for (size_t i = 0; i < l.count; i++)
		n += (size_t)snprintf(s + n, cap - n, "%s %s@%" PRIu64 "\n", l.items[i].urn,
		                      l.items[i].attr, l.items[i].version);
	rcds_list_free(&l);
	return s;
}

/* The key the fixture made for host NAME. */
static snipe_key *host_key(tc_cluster *c, const char *name)
{
	char file[64], err[256] = "";
	snprintf(file, sizeof(file), "host-%s.key", name);
	char *path = tu_path(tc_cluster_dir(c), file);
	snipe_key *k = NULL;
	ck_assert_msg(snipe_key_load(path, &k, err, sizeof(err)) == SNIPE_OK, "%s: %s", path, err);
	free(path);
	return k;
}

/* What agents/ckpt.c record() writes for a checkpoint, as host `key` would: the manifest
 * URN's attributes, and the process's ckpt and epoch. */
static int forge_commit(tc_cluster *c, const snipe_key *key, const char *name, uint64_t seq,
                        uint64_t epoch, bool manifest, bool proc, char *err, size_t errlen)
{
	char urn[SNIPE_URN_MAX], proc_urn[SNIPE_URN_MAX], s[24], e[24];
	ckpt_urn(name, seq, urn, sizeof(urn));
	snprintf(proc_urn, sizeof(proc_urn), "urn:snipe:proc:%s", name);
	snprintf(s, sizeof(s), "%" PRIu64, seq);
	snprintf(e, sizeof(e), "%" PRIu64, epoch);
	rcds_batch *b = NULL;
	ck_assert_int_eq(rcds_batch_new(&b), SNIPE_OK);
	if (manifest) {
		ck_assert_int_eq(rcds_batch_put(b, urn, "manifest", "forged", 6, 0), SNIPE_OK);
		ck_assert_int_eq(rcds_batch_put(b, urn, "seq", s, strlen(s), 0), SNIPE_OK);
		ck_assert_int_eq(rcds_batch_put(b, urn, "epoch", e, strlen(e), 0), SNIPE_OK);
	}
	if (proc) {
		ck_assert_int_eq(rcds_batch_put(b, proc_urn, "ckpt", s, strlen(s), 0), SNIPE_OK);
		ck_assert_int_eq(rcds_batch_put(b, proc_urn, "epoch", e, strlen(e), 0), SNIPE_OK);
	}
	rcds_client *hc = tc_cluster_client(c, -1, key);
	int rc = rcds_write(hc, b, NULL, err, errlen);
	rcds_client_close(hc);
	rcds_batch_free(b);
	return rc;
}

/* A job checkpointing 64 KiB at steps 1 and 2 (on a) that is moved to b by kill -9 of
 * a in the pause after its last save: on b it resumes from checkpoint 2, has nothing
 * left to do and exits 0, so the catalog stays as it is. */
static void move_job(tc_cluster *c, rcds_client *cl, struct prog *p, const char *name)
{
	snipe_proc_info info;
	char line[1024];
	prog_steps(p, c, name, 64 * 1024, 64 * 1024, 2, 3000);
	prog_spawn(c, cl, p, name, "a", SNIPE_RESTART_ON_FAILURE, NULL, &info);
	tc_wait_line(c, p->out, "e1 saved step 2 ", FAILOVER_MS, line, sizeof(line));
	tc_agent_kill(c, 0);
	tc_wait_line(c, p->out, "e2 resumed at step ", FAILOVER_MS, line, sizeof(line));
	ck_assert_str_eq(line, "e2 resumed at step 2 seq 2 on b ok");
	tc_wait_ended(c, cl, info.urn, FAILOVER_MS, &info);
	ck_assert_str_eq(info.state, "exited");
	ck_assert_str_eq(info.host, "b");
	ck_assert_uint_eq(info.epoch, 2);
	ck_assert_uint_eq(attr_u64(cl, info.urn, "ckpt"), 2);
}

/* After the job moved to b (epoch 2), the old host's key cannot commit a checkpoint
 * for it (manifest and process pointer, as an agent does) nor set its epoch or ckpt
 * back: SNIPE_EDENIED, a is no longer its host; b's key writing epoch 1 is
 * SNIPE_ESTALE. Nothing of the process or its checkpoints changes. */
START_TEST(test_stale_epoch_checkpoint_commit_is_refused)
{
	rcds_client *cl = NULL;
	tc_cluster *c = start_abc(NULL, &cl);
	struct prog p;
	move_job(c, cl, &p, "stale");
	char *proc_before = snapshot(cl, "urn:snipe:proc:stale");
	char *ckpt_before = snapshot(cl, "urn:snipe:ckpt:stale/");
	uint64_t ckpt = 2;

	snipe_key *ka = host_key(c, "a"), *kb = host_key(c, "b");
	char err[256] = "";
	tu_assert_code(forge_commit(c, ka, "stale", ckpt + 1, 1, true, true, err, sizeof(err)),
	               SNIPE_EDENIED);
	tu_assert_code(forge_commit(c, ka, "stale", ckpt + 1, 1, false, true, err, sizeof(err)),
	               SNIPE_EDENIED);
	tu_assert_code(forge_commit(c, kb, "stale", ckpt + 1, 1, false, true, err, sizeof(err)),
	               SNIPE_ESTALE);
	char *proc_after = snapshot(cl, "urn:snipe:proc:stale");
	char *ckpt_after = snapshot(cl, "urn:snipe:ckpt:stale/");
	ck_assert_str_eq(proc_after, proc_before);
	ck_assert_str_eq(ckpt_after, ckpt_before);
	ck_assert_uint_eq(attr_u64(cl, "urn:snipe:proc:stale", "epoch"), 2);
	ck_assert_uint_eq(attr_u64(cl, "urn:snipe:proc:stale", "ckpt"), ckpt);

	free(proc_before);
	free(ckpt_before);
	free(proc_after);
	free(ckpt_after);
	snipe_key_free(ka);
	snipe_key_free(kb);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* The manifest a job's first instance committed (urn:snipe:ckpt:NAME/2, written by a,
 * so owned by a's key) is the one its next run loads: once the job has moved, a must
 * not be able to rewrite it with its stale epoch (SNIPE_EDENIED or SNIPE_ESTALE), nor
 * write the next one. */
START_TEST(test_stale_host_cannot_rewrite_a_committed_manifest)
{
	rcds_client *cl = NULL;
	tc_cluster *c = start_abc(NULL, &cl);
	struct prog p;
	move_job(c, cl, &p, "owned");
	char *before = snapshot(cl, "urn:snipe:ckpt:owned/");
	snipe_key *ka = host_key(c, "a");
	char err[256] = "";
	for (uint64_t seq = 2; seq <= 3; seq++) {
		int rc = forge_commit(c, ka, "owned", seq, 1, true, false, err, sizeof(err));
		ck_assert_msg(rc == SNIPE_EDENIED || rc == SNIPE_ESTALE,
		              "a rewrote checkpoint %" PRIu64 " of a job it no longer runs: %s", seq,
		              snipe_errname(rc));
	}
	char *after = snapshot(cl, "urn:snipe:ckpt:owned/");
	ck_assert_str_eq(after, before);
	free(before);
	free(after);
	snipe_key_free(ka);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* ---------------------------------------------------------------- directory mode */

/* examples/counter.sh commits its directory every 5 counts; kill -9 of its host: b
 * restores the last committed directory before starting it, so it starts at 5 times
 * the checkpoint its first instance committed last. */
START_TEST(test_directory_job_continues_elsewhere_from_its_last_commit)
{
	rcds_client *cl = NULL;
	tc_cluster *c = start_abc(NULL, &cl);
	const char *argv[] = {"sh", EXAMPLES_DIR "/counter.sh", "100000"};
	const char *env[] = {"SNIPE_CLI=" SNIPE_PATH};
	snipe_spawn_opts o = {.name = "counter", .host = "a", .restart = SNIPE_RESTART_ALWAYS,
	                      .argv = argv, .argc = 3, .env = env, .nenv = 1,
	                      .ckpt_dir = "state"};
	snipe_proc_info info, moved;
	spawn_ok(c, cl, &o, &info);
	uint64_t deadline = tu_mono_ms() + FAILOVER_MS;
	char v[64];
	while (!attr_get(cl, info.urn, "ckpt", v, sizeof(v)) || strtoull(v, NULL, 10) < 2) {
		ck_assert_msg(tu_mono_ms() < deadline, "counter committed no second checkpoint");
		tu_sleep_ms(POLL_MS);
	}
	tc_agent_kill(c, 0);
	tc_wait_running_on(c, cl, info.urn, "b", 2, FAILOVER_MS, &moved);

	/* its output on b, from the start */
	char started[256] = "", err[256] = "";
	deadline = tu_mono_ms() + FAILOVER_MS;
	while (started[0] == '\0') {
		uint8_t *data = NULL;
		size_t len = 0;
		uint64_t size = 0;
		int rc = snipe_proc_logs(cl, info.urn, false, 0, 65536, &data, &len, &size, err,
		                         sizeof(err));
		ck_assert_msg(rc == SNIPE_OK, "logs: %s (%s)", snipe_errname(rc), err);
		char *text = strndup((const char *)data, len);
		tu_find_line(text, "starting at ", started, sizeof(started));
		free(text);
		free(data);
		ck_assert_msg(started[0] != '\0' || tu_mono_ms() < deadline, "b's log says no start");
		tu_sleep_ms(POLL_MS);
	}
	uint64_t n = 0;
	char host[16];
	ck_assert_int_eq(sscanf(started, "starting at %" SCNu64 " on %15s", &n, host), 2);
	fprintf(stderr, "counter: '%s'\n", started);
	ck_assert_str_eq(host, "b");
	ck_assert_uint_gt(n, 0);
	ck_assert_uint_eq(n % 5, 0);
	assert_last_of_epoch_1(cl, "counter", n / 5);
	char text[96];
	snprintf(text, sizeof(text), "urn:snipe:proc:counter: restored checkpoint %" PRIu64, n / 5);
	ck_assert(tc_agent_log_contains(c, 1, text));
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* A directory-mode job that exits 85 twice, then 0: each exit 85 commits its
 * directory and runs it again at once, in place (same host and epoch, restarts 0),
 * finding the directory as it left it; policy never does not end it. */
START_TEST(test_exit_85_checkpoints_and_restarts_in_place)
{
	rcds_client *cl = NULL;
	tc_cluster *c = start_abc(NULL, &cl);
	char *runs = tu_path(tc_cluster_dir(c), "in-place.runs");
	const char *argv[] = {"sh", "-c",
	                      "mkdir -p state; n=$(cat state/n 2>/dev/null || echo 0); "
	                      "n=$((n + 1)); echo $n > state/n; echo \"run $n\" >> \"$0\"; "
	                      "[ $n -ge 3 ] && exit 0; exit 85",
	                      runs};
	snipe_spawn_opts o = {.name = "in-place", .host = "a", .restart = SNIPE_RESTART_NEVER,
	                      .argv = argv, .argc = 4, .ckpt_dir = "state"};
	snipe_proc_info info;
	spawn_ok(c, cl, &o, &info);
	tc_wait_ended(c, cl, info.urn, FAILOVER_MS, &info);
	ck_assert_str_eq(info.state, "exited");
	ck_assert_int_eq(info.exit_code, 0);
	ck_assert_uint_eq(info.restarts, 0);
	ck_assert_uint_eq(info.epoch, 1);
	ck_assert_str_eq(info.host, "a");
	char *text = tu_slurp(runs, NULL);
	ck_assert_ptr_nonnull(text);
	ck_assert_str_eq(text, "run 1\nrun 2\nrun 3\n");
	free(text);
	ck_assert_uint_eq(attr_u64(cl, info.urn, "ckpt"), 2);
	char urn[SNIPE_URN_MAX], hosts[64];
	for (uint64_t seq = 1; seq <= 2; seq++) {
		ckpt_urn("in-place", seq, urn, sizeof(urn));
		ck_assert_uint_eq(attr_u64(cl, urn, "epoch"), 1);
		ck_assert(attr_get(cl, urn, "hosts", hosts, sizeof(hosts)));
		ck_assert_str_eq(hosts, "a,b");
	}
	ck_assert(tc_agent_log_contains(c, 0, "checkpoint 2 taken on exit 85"));
	free(runs);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* ----------------------------------------------------------------------- CLI */

/* Runs the snipe CLI with args (a shell word list) against the cluster as the admin;
 * its stdout (malloc'd) and exit status. */
static char *run_cli(tc_cluster *c, const char *args, int *status)
{
	char cmd[8192];
	snprintf(cmd, sizeof(cmd), "SNIPE_CATALOG='%s' SNIPE_KEY='%s' '%s' %s",
	         tc_cluster_endpoints(c), tc_cluster_admin_key_path(c), SNIPE_PATH, args);
	FILE *f = popen(cmd, "r");
	ck_assert_ptr_nonnull(f);
	size_t cap = 65536, n = 0;
	char *out = malloc(cap);
	ck_assert_ptr_nonnull(out);
	for (size_t got; (got = fread(out + n, 1, cap - n - 1, f)) > 0;)
		n += got;
	out[n] = '\0';
	int st = pclose(f);
	*status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	return out;
}

/* Three checkpoints of 1 MiB whose first 64 KiB change at every step: `snipe ckpt URN`
 * lists the last two (2 are kept) with their seq, epoch, size, new bytes (those of
 * blocks the checkpoint before lacked, computed here by cutting the same states) and
 * the two hosts holding them. */
START_TEST(test_cli_lists_the_kept_checkpoints)
{
	rcds_client *cl = NULL;
	tc_cluster *c = start_abc(NULL, &cl);
	struct prog p;
	char line[1024];
	const size_t change = 64 * 1024;
	prog_steps(&p, c, "listed", MIB, change, 3, 0);
	char *text = prog_run(c, cl, &p, "listed", "a", FAILOVER_MS);
	uint64_t sent[4] = {0}, fresh[4] = {0};
	uint8_t *state[4] = {NULL};
	for (uint64_t step = 1; step <= 3; step++) {
		char prefix[64];
		snprintf(prefix, sizeof(prefix), "e1 saved step %" PRIu64 " seq=%" PRIu64 " ", step,
		         step);
		line_of(text, prefix, line, sizeof(line));
		sent[step] = field(line, "sent_bytes");
		state[step] = state_of(MIB, SEED, step, change);
		if (step == 1)
			continue;
		fresh[step] = new_bytes_after(state[step - 1], state[step], MIB);
		/* the changed bytes and the blocks around them; a save may find some already
		 * on the agent (cut the same way two steps back) and not send them */
		ck_assert_uint_ge(fresh[step], change);
		ck_assert_uint_lt(fresh[step], change + 2 * SNI_CHUNK_MAX);
		ck_assert_uint_le(sent[step], fresh[step]);
	}
	ck_assert_uint_eq(sent[1], MIB);
	free(text);

	int status = -1;
	char *out = run_cli(c, "ckpt urn:snipe:proc:listed", &status);
	char want[1024];
	int n = snprintf(want, sizeof(want), "%6s %6s %12s %12s  %s\n", "SEQ", "EPOCH", "SIZE",
	                 "NEW_BYTES", "HOSTS");
	for (uint64_t seq = 2; seq <= 3; seq++) {
		char s[24], sz[24], nb[24];
		snprintf(s, sizeof(s), "%" PRIu64, seq);
		snprintf(sz, sizeof(sz), "%u", MIB);
		snprintf(nb, sizeof(nb), "%" PRIu64, fresh[seq]);
		n += snprintf(want + n, sizeof(want) - (size_t)n, "%6s %6s %12s %12s  %s\n", s, "1",
		              sz, nb, "a,b");
	}
	ck_assert_int_eq(status, 0);
	ck_assert_str_eq(out, want);
	free(out);
	for (int i = 1; i <= 3; i++)
		free(state[i]);
	rcds_client_close(cl);
	stop_cluster(c);
}
END_TEST

/* -------------------------------------------------------------------- suite */

static Suite *suite(void)
{
	Suite *s = suite_create("ckpt");
	TCase *lib = tcase_create("library");
	tcase_set_timeout(lib, 240);
	tcase_add_test(lib, test_100_mib_state_round_trips_through_a_checkpoint);
	tcase_add_test(lib, test_incremental_save_sends_only_the_blocks_that_changed);
	suite_add_tcase(s, lib);

	TCase *fail = tcase_create("failover");
	tcase_set_timeout(fail, 120);
	tcase_add_test(fail, test_job_of_a_killed_host_resumes_elsewhere_from_its_last_checkpoint);
	tcase_add_test(fail, test_host_killed_mid_checkpoint_leaves_the_previous_one_valid);
	tcase_add_test(fail, test_job_resumes_promptly_on_a_host_holding_no_copy);
	suite_add_tcase(s, fail);

	TCase *bad = tcase_create("corruption");
	tcase_set_timeout(bad, 60);
	tcase_add_test(bad, test_corrupt_local_copy_is_refetched_on_restart);
	tcase_add_test(bad, test_corrupt_replica_is_skipped_and_repaired_on_restore);
	suite_add_tcase(s, bad);

	TCase *cat = tcase_create("catalog");
	tcase_set_timeout(cat, 60);
	tcase_add_test(cat, test_stale_epoch_checkpoint_commit_is_refused);
	tcase_add_test(cat, test_stale_host_cannot_rewrite_a_committed_manifest);
	suite_add_tcase(s, cat);

	TCase *dir = tcase_create("directory");
	tcase_set_timeout(dir, 60);
	tcase_add_test(dir, test_directory_job_continues_elsewhere_from_its_last_commit);
	tcase_add_test(dir, test_exit_85_checkpoints_and_restarts_in_place);
	suite_add_tcase(s, dir);

	TCase *cli = tcase_create("cli");
	tcase_set_timeout(cli, 60);
	tcase_add_test(cli, test_cli_lists_the_kept_checkpoints);
	suite_add_tcase(s, cli);
	return s;
}

int main(void)
{
	return tu_run(suite());
}
