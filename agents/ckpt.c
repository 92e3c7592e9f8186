/*
 * ckpt.c — the agent's side of checkpoints: block requests (from its processes and
 * from other agents), commits (copy the blocks to other agents until `copies` hold
 * them, then record the signed manifest in the catalog, with the process's epoch so a
 * replaced instance cannot), loads (gather missing blocks from the agents a manifest
 * names, checking each and repairing bad copies), directory snapshots, and garbage
 * collection of blocks no manifest names. Everything here runs on the thread pool: it
 * reads and writes files and calls the catalog and other agents.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "blocks.h"
#include "ckpt.pb-c.h"
#include "dirimage.h"
#include "sni.h"

#define BATCH_BYTES (4u << 20)
#define GET_BATCH 64
#define PEER_MS 10000 /* one call to another agent: a few MiB of blocks */
#define MANIFEST_PIECE 60000 /* a catalog value holds at most 64 KiB: longer manifests
                                are stored in pieces, manifest, manifest.2, ... */
#define GC_EVERY_MS 30000
#define GC_GRACE_MS 120000
#define ZSTD_MAX_BLOCK (SNI_BLOCK_MAX + SNI_BLOCK_MAX / 64 + 1024) /* its compressed bound */

/* ------------------------------------------------------------------ hashes */

static void hex8(const uint8_t *h, char out[17])
{
	sni_hex(h, 8, out);
}

/* ------------------------------------------------------------------- peers */

struct peer {
	char name[SNIPE_URN_NAME_MAX + 1];
	char address[256];
};

/* Live hosts other than this one, in ring order after it (so copies spread). */
static int live_peers(agent *a, rcds_client *cl, struct peer **out, size_t *n, char *err,
                      size_t errlen)
{
	rcds_list l = {0};
	rcds_where w = {.attr = "state", .value = "up", .value_len = 2};
	*out = NULL;
	*n = 0;
	int rc = rcds_query(cl, SNI_HOST_PREFIX, &w, 1, &l, err, errlen);
	struct peer *v = calloc(l.count ? l.count : 1, sizeof(*v));
	if (rc == SNIPE_OK && v == NULL)
		rc = SNIPE_ENOMEM;
	size_t k = 0;
	for (size_t i = 0; rc == SNIPE_OK && i < l.count; i++) {
		const char *name = l.items[i].urn + strlen(SNI_HOST_PREFIX);
		if (strcmp(l.items[i].attr, "address") != 0 || strcmp(name, a->cfg->name) == 0)
			continue;
		snprintf(v[k].name, sizeof(v[k].name), "%s", name);
		snprintf(v[k].address, sizeof(v[k].address), "%s", (const char *)l.items[i].value);
		k++;
	}
	rcds_list_free(&l);
	/* names come sorted: start after this host's name, wrap around */
	size_t start = 0;
	while (start < k && strcmp(v[start].name, a->cfg->name) < 0)
		start++;
	struct peer *ring = calloc(k ? k : 1, sizeof(*ring));
	if (rc == SNIPE_OK && ring == NULL)
		rc = SNIPE_ENOMEM;
	for (size_t i = 0; rc == SNIPE_OK && i < k; i++)
		ring[i] = v[(start + i) % k];
	free(v);
	if (rc != SNIPE_OK) {
		free(ring);
		return rc;
	}
	*out = ring;
	*n = k;
	return SNIPE_OK;
}

/* The address of a live peer by name, or NULL (not live, or this host). */
static const char *peer_address(const struct peer *peers, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(peers[i].name, name) == 0)
			return peers[i].address;
	return NULL;
}

static int peer_call_attached(agent *a, const char *address, Snipe__AgentRequest *req,
                              const uint8_t *att, size_t attlen, Snipe__AgentReply **r,
                              char *err, size_t errlen)
{
	int rc = sni_agent_call_attached(a->key, address, req, att, attlen, PEER_MS, r, err,
	                                 errlen);
	if (rc == SNIPE_OK && (*r)->code != SNIPE_OK) {
		rc = sni_err(err, errlen, (*r)->code, "agent %s: %s", address, (*r)->error);
		snipe__agent_reply__free_unpacked(*r, NULL);
		*r = NULL;
	}
	return rc;
}

static int peer_call(agent *a, const char *address, Snipe__AgentRequest *req,
                     Snipe__AgentReply **r, char *err, size_t errlen)
{
	return peer_call_attached(a, address, req, NULL, 0, r, err, errlen);
}

/* Sends the blocks of hs (all local) to the agent at address in batches, their bytes
 * as the request's attachment. */
static int peer_put(agent *a, const char *address, uint8_t (*hs)[SNI_HASH_BYTES], size_t n,
                    char *err, size_t errlen)
{
	size_t i = 0;
	int rc = SNIPE_OK;
	while (rc == SNIPE_OK && i < n) {
		Snipe__Block *b = calloc(n - i, sizeof(*b));
		Snipe__Block **bp = calloc(n - i, sizeof(*bp));
		uint8_t *att = malloc(BATCH_BYTES + ZSTD_MAX_BLOCK);
		size_t k = 0, bytes = 0;
		if (b == NULL || bp == NULL || att == NULL)
			rc = SNIPE_ENOMEM;
		for (; rc == SNIPE_OK && i < n && bytes < BATCH_BYTES; i++, k++) {
			uint8_t *z = NULL;
			size_t zlen = 0;
			uint32_t size = 0;
			/* the receiver checks every block: no need to check it here too */
			rc = agent_blocks_read(a->blocks, hs[i], &z, &zlen, &size, err, errlen);
			if (rc != SNIPE_OK)
				break;
			snipe__block__init(&b[k]);
			b[k].hash = (ProtobufCBinaryData){SNI_HASH_BYTES, hs[i]};
			b[k].size = size;
			b[k].zstd_len = (uint32_t)zlen;
			bp[k] = &b[k];
			memcpy(att + bytes, z, zlen);
			bytes += zlen;
			free(z);
		}
		if (rc == SNIPE_OK && k > 0) {
			Snipe__AgentRequest req = SNIPE__AGENT_REQUEST__INIT;
			Snipe__BlocksPut put = SNIPE__BLOCKS_PUT__INIT;
			Snipe__AgentReply *r = NULL;
			put.blocks = bp;
			put.n_blocks = k;
			req.op_case = SNIPE__AGENT_REQUEST__OP_BLOCKS_PUT;
			req.blocks_put = &put;
			rc = peer_call_attached(a, address, &req, att, bytes, &r, err, errlen);
			if (r != NULL)
				snipe__agent_reply__free_unpacked(r, NULL);
		}
		free(att);
		free(b);
		free(bp);
	}
	return rc;
}

/* Makes the agent at address hold every block of hs: asks what it lacks, sends that. */
static int peer_copy(agent *a, const char *address, const sni_hashset *hs, char *err,
                     size_t errlen)
{
	ProtobufCBinaryData *h = calloc(hs->n ? hs->n : 1, sizeof(*h));
	if (h == NULL)
		return SNIPE_ENOMEM;
	for (size_t i = 0; i < hs->n; i++)
		h[i] = (ProtobufCBinaryData){SNI_HASH_BYTES, hs->v[i]};
	Snipe__AgentRequest req = SNIPE__AGENT_REQUEST__INIT;
	Snipe__BlocksHave have = SNIPE__BLOCKS_HAVE__INIT;
	Snipe__AgentReply *r = NULL;
	have.hashes = h;
	have.n_hashes = hs->n;
	req.op_case = SNIPE__AGENT_REQUEST__OP_BLOCKS_HAVE;
	req.blocks_have = &have;
	int rc = peer_call(a, address, &req, &r, err, errlen);
	free(h);
	if (rc != SNIPE_OK)
		return rc;
	uint8_t (*missing)[SNI_HASH_BYTES] = malloc((r->n_missing ? r->n_missing : 1) *
	                                            SNI_HASH_BYTES);
	size_t k = 0;
	for (size_t i = 0; missing != NULL && i < r->n_missing; i++)
		if (r->missing[i].len == SNI_HASH_BYTES && sni_hashset_has(hs, r->missing[i].data))
			memcpy(missing[k++], r->missing[i].data, SNI_HASH_BYTES);
	snipe__agent_reply__free_unpacked(r, NULL);
	rc = missing != NULL ? peer_put(a, address, missing, k, err, errlen) : SNIPE_ENOMEM;
	free(missing);
	return rc;
}

/* Fetches the blocks of want[] not held here from the agent at address, checking
 * each; got[i] is set for those now stored. */
static void peer_fetch(agent *a, const char *address, uint8_t (*want)[SNI_HASH_BYTES],
                       size_t n, bool *got)
{
	char err[256];
	for (size_t i = 0; i < n;) {
		ProtobufCBinaryData h[GET_BATCH];
		size_t idx[GET_BATCH], k = 0;
		for (; i < n && k < GET_BATCH; i++) {
			if (got[i])
				continue;
			h[k] = (ProtobufCBinaryData){SNI_HASH_BYTES, want[i]};
			idx[k++] = i;
		}
		if (k == 0)
			break;
		Snipe__AgentRequest req = SNIPE__AGENT_REQUEST__INIT;
		Snipe__BlocksGet get = SNIPE__BLOCKS_GET__INIT;
		Snipe__AgentReply *r = NULL;
		get.hashes = h;
		get.n_hashes = k;
		req.op_case = SNIPE__AGENT_REQUEST__OP_BLOCKS_GET;
		req.blocks_get = &get;
		if (peer_call(a, address, &req, &r, err, sizeof(err)) != SNIPE_OK) {
			snipe_log(SNIPE_LOG_WARN, "ckpt", "fetching blocks from %s: %s", address, err);
			return;
		}
		for (size_t j = 0; j < r->n_blocks; j++) {
			const Snipe__Block *b = r->blocks[j];
			for (size_t m = 0; m < k; m++) {
				if (got[idx[m]] || b->hash.len != SNI_HASH_BYTES ||
				    memcmp(b->hash.data, want[idx[m]], SNI_HASH_BYTES) != 0)
					continue;
				got[idx[m]] = agent_blocks_put(a->blocks, want[idx[m]], b->size,
				                               b->zstd.data, b->zstd.len, err,
				                               sizeof(err)) == SNIPE_OK;
			}
		}
		snipe__agent_reply__free_unpacked(r, NULL);
	}
}

/* ----------------------------------------------------------------- catalog */

/* "<process name>/<seq>" as a ckpt URN. */
static int ckpt_urn(const char *proc_urn, uint64_t seq, char *out, size_t len, char *err,
                    size_t errlen)
{
	char name[SNIPE_URN_NAME_MAX + 32];
	snprintf(name, sizeof(name), "%s/%" PRIu64, strrchr(proc_urn, ':') + 1, seq);
	snipe_urn u;
	int rc = snipe_urn_make(SNIPE_KIND_CKPT, name, &u, err, errlen);
	return rc == SNIPE_OK ? snipe_urn_format(&u, out, len) : rc;
}

static int read_proc(rcds_client *cl, const char *urn, sni_proc *p, char *err, size_t errlen)
{
	rcds_list l = {0};
	sni_proc_init(p, urn);
	int rc = rcds_get(cl, urn, &l, err, errlen);
	for (size_t i = 0; rc == SNIPE_OK && i < l.count; i++)
		sni_proc_set(p, l.items[i].attr, l.items[i].value, l.items[i].value_len,
		             l.items[i].version, l.items[i].author);
	rcds_list_free(&l);
	return rc;
}

/* The manifest of checkpoint seq of proc_urn (*out to free). */
/* The piece number of a manifest attribute: "manifest" 1, "manifest.N" N; else 0. */
static unsigned piece_number(const char *attr)
{
	if (strcmp(attr, "manifest") == 0)
		return 1;
	if (strncmp(attr, "manifest.", 9) != 0)
		return 0;
	uint64_t n;
	return snipe_parse_u64(attr + 9, 2, 4096, &n) == SNIPE_OK ? (unsigned)n : 0;
}

/* The manifest held by items [from, to) of a list (one ckpt URN's assertions),
 * its pieces put back together in order; NULL if a piece is missing or it does not
 * decode. */
static Snipe__Manifest *assemble(const rcds_list *l, size_t from, size_t to)
{
	uint64_t pieces = 0;
	size_t total = 0;
	for (size_t i = from; i < to; i++) {
		if (strcmp(l->items[i].attr, "manifest_pieces") == 0 &&
		    snipe_parse_u64((const char *)l->items[i].value, 1, 4096, &pieces) != SNIPE_OK)
			return NULL;
		if (piece_number(l->items[i].attr) > 0)
			total += l->items[i].value_len;
	}
	if (pieces == 0)
		pieces = 1; /* one piece needs no count */
	uint8_t *bytes = malloc(total ? total : 1);
	size_t off = 0;
	for (uint64_t p = 1; bytes != NULL && p <= pieces; p++) {
		size_t i = from;
		while (i < to && piece_number(l->items[i].attr) != p)
			i++;
		if (i == to) {
			free(bytes);
			return NULL;
		}
		memcpy(bytes + off, l->items[i].value, l->items[i].value_len);
		off += l->items[i].value_len;
	}
	Snipe__Manifest *m = bytes != NULL ? snipe__manifest__unpack(NULL, off, bytes) : NULL;
	free(bytes);
	return m;
}

static int read_manifest(rcds_client *cl, const char *proc_urn, uint64_t seq,
                         Snipe__Manifest **out, char *err, size_t errlen)
{
	char urn[SNIPE_URN_MAX];
	rcds_list l = {0};
	*out = NULL;
	int rc = ckpt_urn(proc_urn, seq, urn, sizeof(urn), err, errlen);
	if (rc == SNIPE_OK)
		rc = rcds_get(cl, urn, &l, err, errlen);
	if (rc == SNIPE_OK)
		*out = assemble(&l, 0, l.count);
	rcds_list_free(&l);
	if (rc == SNIPE_OK && *out == NULL)
		rc = sni_err(err, errlen, SNIPE_ECORRUPT, "%s has no valid manifest", urn);
	if (rc == SNIPE_OK && (strcmp((*out)->proc, proc_urn) != 0 || (*out)->seq != seq)) {
		snipe__manifest__free_unpacked(*out, NULL);
		*out = NULL;
		rc = sni_err(err, errlen, SNIPE_ECORRUPT, "%s names another checkpoint", urn);
	}
	return rc;
}

/* The manifest's assertions, and the process's pointer to it, in one atomic write:
 * the process's epoch goes with it, so the catalog refuses it from a replaced
 * instance; the checkpoint `keep` back is deleted in the same write. */
static int record(agent *a, rcds_client *cl, const sni_proc *rec, Snipe__Manifest *m,
                  char *err, size_t errlen)
{
	char urn[SNIPE_URN_MAX], old[SNIPE_URN_MAX], hosts[1024] = "";
	size_t len = snipe__manifest__get_packed_size(m);
	uint8_t *bytes = malloc(len ? len : 1);
	rcds_batch *b = NULL;
	uint64_t size = 0;
	int rc = bytes != NULL ? rcds_batch_new(&b) : SNIPE_ENOMEM;
	if (rc != SNIPE_OK) {
		free(bytes);
		return rc;
	}
	snipe__manifest__pack(m, bytes);
	for (size_t p = 0; p < m->n_parts; p++)
		size += m->parts[p]->size;
	for (size_t i = 0; i < m->n_hosts; i++) {
		size_t u = strlen(hosts);
		snprintf(hosts + u, sizeof(hosts) - u, "%s%s", i ? "," : "", m->hosts[i]);
	}
	rc = ckpt_urn(m->proc, m->seq, urn, sizeof(urn), err, errlen);
	size_t pieces = (len + MANIFEST_PIECE - 1) / MANIFEST_PIECE;
	for (size_t p = 0; rc == SNIPE_OK && p < (pieces ? pieces : 1); p++) {
		char attr[32];
		size_t off = p * MANIFEST_PIECE, n = len - off < MANIFEST_PIECE ? len - off
		                                                                : MANIFEST_PIECE;
		snprintf(attr, sizeof(attr), p == 0 ? "manifest" : "manifest.%zu", p + 1);
		rc = rcds_batch_put(b, urn, attr, bytes + off, n, 0);
	}
	if (rc == SNIPE_OK && pieces > 1)
		rc = rcds_batch_putf(b, urn, "manifest_pieces", "%" PRIu64, pieces);
	if (rc == SNIPE_OK)
		rc = rcds_batch_put_text(b, urn, "proc", m->proc);
	if (rc == SNIPE_OK)
		rc = rcds_batch_putf(b, urn, "seq", "%" PRIu64, m->seq);
	if (rc == SNIPE_OK)
		rc = rcds_batch_putf(b, urn, "epoch", "%" PRIu64, m->epoch);
	if (rc == SNIPE_OK)
		rc = rcds_batch_putf(b, urn, "size", "%" PRIu64, size);
	if (rc == SNIPE_OK)
		rc = rcds_batch_putf(b, urn, "new_bytes", "%" PRIu64, m->new_bytes);
	if (rc == SNIPE_OK)
		rc = rcds_batch_put_text(b, urn, "hosts", hosts);
	char seq[24];
	snprintf(seq, sizeof(seq), "%" PRIu64, m->seq);
	if (rc == SNIPE_OK)
		rc = rcds_batch_put_if(b, m->proc, "ckpt", seq, strlen(seq), 0, rec->ckpt_version);
	if (rc == SNIPE_OK)
		rc = rcds_batch_putf(b, m->proc, "epoch", "%" PRIu64, m->epoch);
	uint32_t keep = a->cfg->ckpt_keep ? a->cfg->ckpt_keep : 2;
	if (rc == SNIPE_OK && m->seq > keep &&
	    ckpt_urn(m->proc, m->seq - keep, old, sizeof(old), NULL, 0) == SNIPE_OK)
		rc = rcds_batch_delete(b, old, NULL);
	if (rc == SNIPE_OK)
		rc = rcds_write(cl, b, NULL, err, errlen);
	rcds_batch_free(b);
	free(bytes);
	return rc;
}

/* --------------------------------------------------------------- commit */

/* Commits a checkpoint of proc made of parts whose blocks are all here. *out is the
 * manifest (free with snipe__manifest__free_unpacked). */
static int commit(agent *a, rcds_client *cl, const agent_proc_ref *proc,
                  Snipe__Part *const *parts, size_t nparts, bool directory,
                  Snipe__Manifest **out, char *err, size_t errlen)
{
	sni_hashset hs = {0}, prev_hs = {0};
	sni_proc rec;
	Snipe__Manifest *prev = NULL;
	struct peer *peers = NULL;
	size_t npeers = 0;
	char hex[17];
	sni_proc_init(&rec, proc->urn);
	int rc = sni_hashset_of_parts(parts, nparts, &hs);
	if (rc == SNIPE_EINVAL)
		sni_err(err, errlen, rc, "a block reference is malformed");
	for (size_t i = 0; rc == SNIPE_OK && i < hs.n; i++) {
		if (!agent_blocks_has(a->blocks, hs.v[i])) {
			hex8(hs.v[i], hex);
			rc = sni_err(err, errlen, SNIPE_ENOTFOUND, "block %s... was not sent", hex);
		}
	}
	if (rc == SNIPE_OK && agent_blocks_sync(a->blocks) != SNIPE_OK)
		rc = sni_err(err, errlen, SNIPE_EIO, "cannot make the blocks durable");
	if (rc == SNIPE_OK)
		rc = read_proc(cl, proc->urn, &rec, err, errlen);
	if (rc == SNIPE_OK && (strcmp(rec.host, a->cfg->name) != 0 || rec.epoch != proc->epoch))
		rc = sni_err(err, errlen, SNIPE_ESTALE, "%s epoch %" PRIu64 " is no longer this "
		             "host's (now epoch %" PRIu64 " on %s)", proc->urn, proc->epoch,
		             rec.epoch, rec.host);
	if (rc == SNIPE_OK && rec.ckpt > 0 &&
	    read_manifest(cl, proc->urn, rec.ckpt, &prev, NULL, 0) == SNIPE_OK)
		rc = sni_hashset_of_parts(prev->parts, prev->n_parts, &prev_hs);

	/* copies on other agents first: the manifest only names blocks that are there */
	uint32_t want = a->cfg->ckpt_copies ? a->cfg->ckpt_copies : 2;
	char **hosts = calloc(want, sizeof(char *));
	size_t nhosts = 0;
	if (rc == SNIPE_OK && hosts == NULL)
		rc = SNIPE_ENOMEM;
	if (rc == SNIPE_OK) {
		hosts[nhosts++] = (char *)a->cfg->name;
		if (want > 1)
			rc = live_peers(a, cl, &peers, &npeers, err, errlen);
	}
	for (size_t i = 0; rc == SNIPE_OK && i < npeers && nhosts < want; i++) {
		char perr[256];
		if (peer_copy(a, peers[i].address, &hs, perr, sizeof(perr)) == SNIPE_OK)
			hosts[nhosts++] = peers[i].name;
		else
			snipe_log(SNIPE_LOG_WARN, "ckpt", "%s: copying to %s failed: %s", proc->urn,
			          peers[i].name, perr);
	}
	if (rc == SNIPE_OK && nhosts < want)
		rc = sni_err(err, errlen, SNIPE_EUNAVAIL, "only %zu of the %u copies could be made "
		             "(live hosts: %zu)", nhosts, want, npeers + 1);

	Snipe__Manifest m = SNIPE__MANIFEST__INIT;
	m.proc = (char *)proc->urn;
	m.epoch = proc->epoch;
	m.seq = rec.ckpt + 1;
	m.parts = (Snipe__Part **)parts;
	m.n_parts = nparts;
	m.time_ms = snipe_now_ms();
	m.hosts = hosts;
	m.n_hosts = nhosts;
	m.directory = directory;
	for (size_t p = 0; p < nparts; p++)
		for (size_t b = 0; b < parts[p]->n_blocks; b++)
			if (!sni_hashset_has(&prev_hs, parts[p]->blocks[b]->hash.data))
				m.new_bytes += parts[p]->blocks[b]->size;
	if (rc == SNIPE_OK)
		rc = record(a, cl, &rec, &m, err, errlen);
	if (rc == SNIPE_OK) {
		/* the caller's copy: through the wire format, so it owns its memory */
		size_t len = snipe__manifest__get_packed_size(&m);
		uint8_t *bytes = malloc(len ? len : 1);
		if (bytes != NULL) {
			snipe__manifest__pack(&m, bytes);
			*out = snipe__manifest__unpack(NULL, len, bytes);
		}
		free(bytes);
		if (*out == NULL)
			rc = SNIPE_ENOMEM;
		else
			snipe_log(SNIPE_LOG_INFO, "ckpt", "%s checkpoint %" PRIu64 " epoch %" PRIu64
			          ": %zu blocks, %" PRIu64 " new bytes, on %zu hosts", proc->urn, m.seq,
			          m.epoch, hs.n, m.new_bytes, nhosts);
	}
	if (prev != NULL)
		snipe__manifest__free_unpacked(prev, NULL);
	sni_proc_clear(&rec);
	free(hosts);
	free(peers);
	free(hs.v);
	free(prev_hs.v);
	return rc;
}

/* ----------------------------------------------------------------- load */

/* The manifest of proc's checkpoint seq (0: the latest), every block of it here:
 * those missing are fetched from the hosts it names, and a host that failed to give a
 * block it should hold is given the good copy afterwards. */
static int load(agent *a, rcds_client *cl, const char *proc_urn, uint64_t seq,
                Snipe__Manifest **out, char *err, size_t errlen)
{
	sni_proc rec;
	sni_hashset hs = {0};
	*out = NULL;
	int rc = seq == 0 ? read_proc(cl, proc_urn, &rec, err, errlen) : SNIPE_OK;
	if (seq == 0) {
		seq = rc == SNIPE_OK ? rec.ckpt : 0;
		sni_proc_clear(&rec);
	}
	if (rc == SNIPE_OK && seq == 0)
		return sni_err(err, errlen, SNIPE_ENOTFOUND, "%s has no checkpoint yet", proc_urn);
	if (rc == SNIPE_OK)
		rc = read_manifest(cl, proc_urn, seq, out, err, errlen);
	if (rc == SNIPE_OK)
		rc = sni_hashset_of_parts((*out)->parts, (*out)->n_parts, &hs);
	size_t nmissing = 0;
	uint8_t (*missing)[SNI_HASH_BYTES] = rc == SNIPE_OK ? malloc((hs.n ? hs.n : 1) *
	                                                             SNI_HASH_BYTES)
	                                                    : NULL;
	bool *got = calloc(hs.n ? hs.n : 1, sizeof(bool));
	if (rc == SNIPE_OK && (missing == NULL || got == NULL))
		rc = SNIPE_ENOMEM;
	for (size_t i = 0; rc == SNIPE_OK && i < hs.n; i++) {
		uint8_t *z = NULL;
		size_t zlen;
		uint32_t size;
		/* checked, not merely present: a corrupt local copy is dropped and refetched */
		if (agent_blocks_get(a->blocks, hs.v[i], &z, &zlen, &size, NULL, 0) != SNIPE_OK)
			memcpy(missing[nmissing++], hs.v[i], SNI_HASH_BYTES);
		free(z);
	}
	/* each live host in turn for what is still missing (a host recorded down is not
	 * asked: its agent would only make us wait); remember who failed, for repair */
	struct peer *peers = NULL;
	size_t npeers = 0;
	if (rc == SNIPE_OK && nmissing > 0)
		rc = live_peers(a, cl, &peers, &npeers, err, errlen);
	bool *failed = calloc((*out != NULL ? (*out)->n_hosts : 0) + 1, sizeof(bool));
	for (size_t h = 0; rc == SNIPE_OK && nmissing > 0 && *out != NULL && h < (*out)->n_hosts;
	     h++) {
		const char *address = peer_address(peers, npeers, (*out)->hosts[h]);
		bool *before = calloc(nmissing, sizeof(bool));
		if (address == NULL || before == NULL || failed == NULL) {
			free(before);
			continue;
		}
		memcpy(before, got, nmissing * sizeof(bool));
		peer_fetch(a, address, missing, nmissing, got);
		for (size_t i = 0; i < nmissing; i++)
			if (!before[i] && !got[i])
				failed[h] = true; /* it should have held them all */
		free(before);
	}
	for (size_t i = 0; rc == SNIPE_OK && i < nmissing; i++)
		if (!got[i]) {
			char hex[17];
			hex8(missing[i], hex);
			rc = sni_err(err, errlen, SNIPE_ENOTFOUND, "block %s... of checkpoint %" PRIu64
			             " is on none of its hosts", hex, seq);
		}
	if (rc == SNIPE_OK && agent_blocks_sync(a->blocks) != SNIPE_OK)
		rc = sni_err(err, errlen, SNIPE_EIO, "cannot make the blocks durable");
	/* repair: give the good copies to the hosts that lacked them or held bad ones */
	for (size_t h = 0; rc == SNIPE_OK && failed != NULL && h < (*out)->n_hosts; h++) {
		char perr[256];
		const char *address = peer_address(peers, npeers, (*out)->hosts[h]);
		if (!failed[h] || address == NULL)
			continue;
		sni_hashset all = {hs.v, hs.n};
		if (peer_copy(a, address, &all, perr, sizeof(perr)) == SNIPE_OK)
			snipe_log(SNIPE_LOG_WARN, "ckpt", "%s checkpoint %" PRIu64 ": repaired the "
			          "copy on %s", proc_urn, seq, (*out)->hosts[h]);
		else
			snipe_log(SNIPE_LOG_WARN, "ckpt", "%s: cannot repair %s: %s", proc_urn,
			          (*out)->hosts[h], perr);
	}
	free(failed);
	free(peers);
	free(got);
	free(missing);
	free(hs.v);
	if (rc != SNIPE_OK && *out != NULL) {
		snipe__manifest__free_unpacked(*out, NULL);
		*out = NULL;
	}
	return rc;
}

/* --------------------------------------------------------------- directories */

/* Snapshots proc's directory into local blocks; *parts (one part "dir") to commit. */
static int capture_dir(agent *a, const agent_proc_ref *proc, Snipe__Part **part, char *err,
                       size_t errlen)
{
	uint8_t *image = NULL;
	size_t len = 0;
	int rc = sni_dir_capture(proc->ckpt_dir, &image, &len, err, errlen);
	if (rc != SNIPE_OK)
		return rc;
	Snipe__Part *p = calloc(1, sizeof(*p));
	size_t cap = len / SNI_CHUNK_MIN + 2;
	Snipe__BlockRef **refs = calloc(cap, sizeof(*refs));
	if (p == NULL || refs == NULL)
		rc = SNIPE_ENOMEM;
	if (p != NULL) {
		snipe__part__init(p);
		p->name = strdup("dir");
		p->size = len;
		p->blocks = refs;
	}
	for (size_t off = 0; rc == SNIPE_OK && off < len;) {
		size_t n = sni_chunk_cut(image + off, len - off);
		uint8_t *z = NULL;
		size_t zlen = 0;
		Snipe__BlockRef *r = calloc(1, sizeof(*r));
		uint8_t *h = malloc(SNI_HASH_BYTES);
		if (r == NULL || h == NULL) {
			free(r);
			free(h);
			rc = SNIPE_ENOMEM;
			break;
		}
		snipe__block_ref__init(r);
		r->hash = (ProtobufCBinaryData){SNI_HASH_BYTES, h};
		r->size = (uint32_t)n;
		refs[p->n_blocks++] = r;
		rc = sni_block_make(image + off, n, h, &z, &zlen);
		if (rc == SNIPE_OK && !agent_blocks_keep(a->blocks, h))
			rc = agent_blocks_put(a->blocks, h, (uint32_t)n, z, zlen, err, errlen);
		free(z);
		off += n;
	}
	free(image);
	if (rc != SNIPE_OK && p != NULL) {
		snipe__part__free_unpacked(p, NULL);
		p = NULL;
	} else if (p == NULL) {
		free(refs);
	}
	*part = p;
	return rc;
}

/* Reads part 0 of manifest m from local blocks and makes dir hold it. */
static int restore_dir(agent *a, const Snipe__Manifest *m, const char *dir, char *err,
                       size_t errlen)
{
	if (!m->directory || m->n_parts != 1)
		return sni_err(err, errlen, SNIPE_EINVAL, "checkpoint %" PRIu64 " is not a "
		               "directory snapshot", m->seq);
	const Snipe__Part *p = m->parts[0];
	uint8_t *image = malloc(p->size ? p->size : 1);
	size_t off = 0;
	int rc = image != NULL ? SNIPE_OK : SNIPE_ENOMEM;
	for (size_t i = 0; rc == SNIPE_OK && i < p->n_blocks; i++) {
		uint8_t *z = NULL;
		size_t zlen = 0;
		uint32_t size = 0;
		rc = agent_blocks_get(a->blocks, p->blocks[i]->hash.data, &z, &zlen, &size, err,
		                      errlen);
		if (rc == SNIPE_OK && (size != p->blocks[i]->size || off + size > p->size))
			rc = sni_err(err, errlen, SNIPE_ECORRUPT, "block %zu has the wrong size", i);
		if (rc == SNIPE_OK)
			rc = sni_block_open(p->blocks[i]->hash.data, size, z, zlen, image + off);
		off += size;
		free(z);
	}
	if (rc == SNIPE_OK)
		rc = sni_dir_restore(dir, image, off, err, errlen);
	free(image);
	return rc;
}

/* ---------------------------------------------------------------- requests */

struct job {
	agent_io io;
	struct agent_call *call;
	Snipe__AgentRequest *req;
	Snipe__AgentFrame *frame; /* its attachment: a BlocksPut's bytes */
	bool from_proc;
	agent_proc_ref proc;
	Snipe__AgentReply reply;
	ProtobufCBinaryData *missing;
	Snipe__Block *blocks;
	Snipe__Block **block_ptrs;
	Snipe__Manifest *manifest;
	/* directory jobs, not requests */
	void (*dir_done)(void *arg, int code, uint64_t seq);
	void *dir_arg;
	uint64_t seq;
};

static void job_free(struct job *j)
{
	for (size_t i = 0; j->blocks != NULL && i < j->reply.n_blocks; i++)
		free(j->blocks[i].zstd.data);
	free(j->blocks);
	free(j->block_ptrs);
	free(j->missing);
	if (j->manifest != NULL)
		snipe__manifest__free_unpacked(j->manifest, NULL);
	if (j->req != NULL)
		snipe__agent_request__free_unpacked(j->req, NULL);
	if (j->frame != NULL)
		snipe__agent_frame__free_unpacked(j->frame, NULL);
	free(j);
}

static void do_have(struct job *j)
{
	const Snipe__BlocksHave *h = j->req->blocks_have;
	j->missing = calloc(h->n_hashes ? h->n_hashes : 1, sizeof(*j->missing));
	if (j->missing == NULL) {
		j->io.rc = SNIPE_ENOMEM;
		return;
	}
	for (size_t i = 0; i < h->n_hashes; i++)
		if (h->hashes[i].len == SNI_HASH_BYTES &&
		    !agent_blocks_keep(j->io.a->blocks, h->hashes[i].data))
			j->missing[j->reply.n_missing++] = h->hashes[i];
	j->reply.missing = j->missing;
}

static void do_put(struct job *j)
{
	const Snipe__BlocksPut *p = j->req->blocks_put;
	const ProtobufCBinaryData *att = j->frame != NULL ? &j->frame->attachment : NULL;
	size_t off = 0;
	for (size_t i = 0; j->io.rc == SNIPE_OK && i < p->n_blocks; i++) {
		const Snipe__Block *b = p->blocks[i];
		const uint8_t *z = b->zstd.data;
		size_t zlen = b->zstd.len;
		if (zlen == 0 && b->zstd_len > 0) { /* its bytes are in the attachment */
			if (att == NULL || b->zstd_len > att->len - off) {
				j->io.rc = sni_err(j->io.err, sizeof(j->io.err), SNIPE_EDECODE,
				                   "block %zu: the attachment is short", i);
				break;
			}
			z = att->data + off;
			zlen = b->zstd_len;
			off += zlen;
		}
		if (b->hash.len != SNI_HASH_BYTES || b->size > SNI_BLOCK_MAX)
			j->io.rc = sni_err(j->io.err, sizeof(j->io.err), SNIPE_EINVAL,
			                   "block %zu: malformed", i);
		else
			j->io.rc = agent_blocks_put(j->io.a->blocks, b->hash.data, b->size, z, zlen,
			                            j->io.err, sizeof(j->io.err));
	}
	/* another agent counts this copy once answered: make it durable first */
	if (j->io.rc == SNIPE_OK && !j->from_proc && agent_blocks_sync(j->io.a->blocks) != SNIPE_OK)
		j->io.rc = sni_err(j->io.err, sizeof(j->io.err), SNIPE_EIO, "cannot sync the blocks");
}

static void do_get(struct job *j)
{
	const Snipe__BlocksGet *g = j->req->blocks_get;
	size_t n = g->n_hashes;
	j->blocks = calloc(n ? n : 1, sizeof(*j->blocks));
	j->block_ptrs = calloc(n ? n : 1, sizeof(*j->block_ptrs));
	j->missing = calloc(n ? n : 1, sizeof(*j->missing));
	if (j->blocks == NULL || j->block_ptrs == NULL || j->missing == NULL) {
		j->io.rc = SNIPE_ENOMEM;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		uint8_t *z = NULL;
		size_t zlen = 0;
		uint32_t size = 0;
		if (g->hashes[i].len != SNI_HASH_BYTES ||
		    agent_blocks_get(j->io.a->blocks, g->hashes[i].data, &z, &zlen, &size, NULL, 0) !=
		            SNIPE_OK) {
			j->missing[j->reply.n_missing++] = g->hashes[i];
			continue;
		}
		Snipe__Block *b = &j->blocks[j->reply.n_blocks];
		snipe__block__init(b);
		b->hash = g->hashes[i];
		b->size = size;
		b->zstd = (ProtobufCBinaryData){zlen, z};
		j->block_ptrs[j->reply.n_blocks++] = b;
	}
	j->reply.blocks = j->block_ptrs;
	j->reply.missing = j->missing;
	/* a process reads its whole checkpoint: for it, a missing block is an error */
	if (j->from_proc && j->reply.n_missing > 0)
		j->io.rc = sni_err(j->io.err, sizeof(j->io.err), SNIPE_ENOTFOUND,
		                   "%zu blocks are not here", j->reply.n_missing);
}

static void job_work(agent_io *io, rcds_client *cl)
{
	struct job *j = (struct job *)io;
	Snipe__Part *dir = NULL;
	switch (j->req != NULL ? j->req->op_case : SNIPE__AGENT_REQUEST__OP__NOT_SET) {
	case SNIPE__AGENT_REQUEST__OP_BLOCKS_HAVE:
		do_have(j);
		break;
	case SNIPE__AGENT_REQUEST__OP_BLOCKS_PUT:
		do_put(j);
		break;
	case SNIPE__AGENT_REQUEST__OP_BLOCKS_GET:
		do_get(j);
		break;
	case SNIPE__AGENT_REQUEST__OP_CKPT_COMMIT:
		io->rc = commit(io->a, cl, &j->proc, j->req->ckpt_commit->parts,
		                j->req->ckpt_commit->n_parts, false, &j->manifest, io->err,
		                sizeof(io->err));
		break;
	case SNIPE__AGENT_REQUEST__OP_CKPT_LOAD:
		io->rc = load(io->a, cl, j->proc.urn, j->req->ckpt_load->seq, &j->manifest, io->err,
		              sizeof(io->err));
		break;
	default: /* CkptDir, from a process or on exit 85 */
		if (j->proc.ckpt_dir[0] == '\0') {
			io->rc = sni_err(io->err, sizeof(io->err), SNIPE_EINVAL,
			                 "%s was not spawned with --ckpt-dir", j->proc.urn);
			break;
		}
		io->rc = capture_dir(io->a, &j->proc, &dir, io->err, sizeof(io->err));
		if (io->rc == SNIPE_OK)
			io->rc = commit(io->a, cl, &j->proc, &dir, 1, true, &j->manifest, io->err,
			                sizeof(io->err));
		if (dir != NULL)
			snipe__part__free_unpacked(dir, NULL);
		break;
	}
	j->reply.manifest = j->manifest;
	if (j->manifest != NULL)
		j->seq = j->manifest->seq;
}

static void job_done(agent_io *io, rcds_client *cl)
{
	struct job *j = (struct job *)io;
	(void)cl;
	if (io->rc != SNIPE_OK && io->rc != SNIPE_ENOTFOUND)
		snipe_log(SNIPE_LOG_WARN, "ckpt", "%s: %s", j->proc.urn[0] ? j->proc.urn : "blocks",
		          io->err);
	if (j->dir_done != NULL) {
		j->dir_done(j->dir_arg, io->rc, j->seq);
	} else if (io->rc != SNIPE_OK) {
		agent_answer_code(j->call, io->rc, io->err[0] ? io->err : NULL);
	} else {
		agent_answer(j->call, &j->reply);
	}
	job_free(j);
}

static struct job *job_new(void)
{
	struct job *j = calloc(1, sizeof(*j));
	if (j != NULL) {
		snipe__agent_reply__init(&j->reply);
		j->io.work = job_work;
		j->io.done = job_done;
	}
	return j;
}

void agent_ckpt_request(agent *a, struct agent_call *c, Snipe__AgentRequest *req,
                        Snipe__AgentFrame *frame, const agent_proc_ref *proc)
{
	struct job *j = job_new();
	if (j == NULL) {
		snipe__agent_request__free_unpacked(req, NULL);
		snipe__agent_frame__free_unpacked(frame, NULL);
		agent_answer_code(c, SNIPE_ENOMEM, NULL);
		return;
	}
	j->call = c;
	j->req = req;
	j->frame = frame;
	j->from_proc = proc != NULL;
	if (proc != NULL)
		j->proc = *proc;
	if (agent_io_queue(a, &j->io) != SNIPE_OK) {
		agent_answer_code(c, SNIPE_EUNAVAIL, "the agent is stopping");
		job_free(j);
	}
}

int agent_ckpt_dir(agent *a, const agent_proc_ref *proc,
                   void (*done)(void *arg, int code, uint64_t seq), void *arg)
{
	struct job *j = job_new();
	if (j == NULL)
		return SNIPE_ENOMEM;
	j->proc = *proc;
	j->dir_done = done;
	j->dir_arg = arg;
	int rc = agent_io_queue(a, &j->io);
	if (rc != SNIPE_OK)
		job_free(j);
	return rc;
}

/* ----------------------------------------------------------- restore jobs */

struct restore_job {
	agent_io io;
	agent_proc_ref proc;
	uint64_t seq;
	void (*done)(void *arg, int code, uint64_t seq);
	void *arg;
};

static void restore_work(agent_io *io, rcds_client *cl)
{
	struct restore_job *r = (struct restore_job *)io;
	Snipe__Manifest *m = NULL;
	io->rc = load(io->a, cl, r->proc.urn, r->seq, &m, io->err, sizeof(io->err));
	if (io->rc == SNIPE_OK)
		io->rc = restore_dir(io->a, m, r->proc.ckpt_dir, io->err, sizeof(io->err));
	if (m != NULL)
		snipe__manifest__free_unpacked(m, NULL);
}

static void restore_done(agent_io *io, rcds_client *cl)
{
	struct restore_job *r = (struct restore_job *)io;
	(void)cl;
	if (io->rc != SNIPE_OK)
		snipe_log(SNIPE_LOG_WARN, "ckpt", "%s: restoring checkpoint %" PRIu64 " into %s: %s",
		          r->proc.urn, r->seq, r->proc.ckpt_dir, io->err);
	else
		snipe_log(SNIPE_LOG_INFO, "ckpt", "%s: restored checkpoint %" PRIu64 " into %s",
		          r->proc.urn, r->seq, r->proc.ckpt_dir);
	r->done(r->arg, io->rc, r->seq);
	free(r);
}

int agent_ckpt_restore_dir(agent *a, const agent_proc_ref *proc, uint64_t seq,
                           void (*done)(void *arg, int code, uint64_t seq), void *arg)
{
	struct restore_job *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return SNIPE_ENOMEM;
	r->proc = *proc;
	r->seq = seq;
	r->done = done;
	r->arg = arg;
	r->io.work = restore_work;
	r->io.done = restore_done;
	int rc = agent_io_queue(a, &r->io);
	if (rc != SNIPE_OK)
		free(r);
	return rc;
}

/* ------------------------------------------------------------------- gc */

static void gc_work(agent_io *io, rcds_client *cl)
{
	rcds_list l = {0};
	sni_hashset keep = {0};
	size_t cap = 0, deleted = 0;
	io->rc = rcds_query(cl, "urn:snipe:ckpt:", NULL, 0, &l, io->err, sizeof(io->err));
	for (size_t i = 0, j; io->rc == SNIPE_OK && i < l.count; i = j) {
		for (j = i; j < l.count && strcmp(l.items[j].urn, l.items[i].urn) == 0;)
			j++;
		Snipe__Manifest *m = assemble(&l, i, j);
		sni_hashset hs = {0};
		if (m != NULL && sni_hashset_of_parts(m->parts, m->n_parts, &hs) == SNIPE_OK) {
			if (keep.n + hs.n > cap) {
				cap = 2 * (keep.n + hs.n);
				void *grown = realloc(keep.v, cap * SNI_HASH_BYTES);
				if (grown == NULL)
					io->rc = SNIPE_ENOMEM;
				else
					keep.v = grown;
			}
			if (io->rc == SNIPE_OK)
				memcpy(keep.v[keep.n], hs.v, hs.n * SNI_HASH_BYTES);
			keep.n += io->rc == SNIPE_OK ? hs.n : 0;
		} else {
			/* unreadable: it names no block anyone could restore; it keeps none */
			snipe_log(SNIPE_LOG_WARN, "ckpt", "gc: %s has no readable manifest",
			          l.items[i].urn);
		}
		free(hs.v);
		if (m != NULL)
			snipe__manifest__free_unpacked(m, NULL);
	}
	rcds_list_free(&l);
	if (io->rc == SNIPE_OK) {
		qsort(keep.v, keep.n, SNI_HASH_BYTES, sni_hash_cmp);
		io->rc = agent_blocks_gc(io->a->blocks, (const uint8_t(*)[SNI_HASH_BYTES])keep.v,
		                         keep.n, snipe_now_ms(), GC_GRACE_MS, &deleted);
	}
	if (deleted > 0)
		snipe_log(SNIPE_LOG_INFO, "ckpt", "gc: deleted %zu unreferenced blocks", deleted);
	free(keep.v);
}

static void gc_done(agent_io *io, rcds_client *cl)
{
	(void)cl;
	free(io);
}

static void gc_tick(uv_timer_t *t)
{
	agent *a = t->data;
	agent_io *io = calloc(1, sizeof(*io));
	if (io == NULL)
		return;
	io->work = gc_work;
	io->done = gc_done;
	if (agent_io_queue(a, io) != SNIPE_OK)
		free(io);
}

void agent_ckpt_start(agent *a)
{
	uv_timer_init(a->loop, &a->gc_timer);
	a->gc_timer.data = a;
	uv_timer_start(&a->gc_timer, gc_tick, GC_EVERY_MS, GC_EVERY_MS);
}
