/*
 * ckpt.c — library-mode checkpoints: the program's side. A save cuts each buffer into
 * content-defined blocks, asks the local agent which of the blocks the previous
 * checkpoint lacked it does not hold, sends those (hashed and compressed), then asks it
 * to commit; the agent replicates and records the manifest (agents/ckpt.c). A load asks
 * the agent for the latest manifest (it gathers the blocks first) and reads the blocks,
 * checking each against its hash.
 */
#include <sodium.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "agent.pb-c.h"
#include "sni.h"

#define CALL_MS 120000          /* a commit may copy a large checkpoint to another host */
#define BATCH_BYTES (4u << 20)  /* compressed bytes per BlocksPut / BlocksGet */
#define HAVE_BATCH 4096

/* A part as last saved: its bytes and blocks, so the next save finds the blocks that
 * did not change by comparing bytes (memcmp, ~10 GB/s) instead of cutting and hashing
 * them again (~600 MB/s). Costs a copy of the state in memory. */
struct prev_part {
	char *name;
	uint8_t *data;
	size_t len;
	uint32_t *size;                 /* its blocks, in order */
	uint8_t (*hash)[SNI_HASH_BYTES];
	size_t n;
};

struct snipe_ckpt {
	char urn[SNIPE_URN_MAX];
	char agent[256];
	snipe_key *key;
	sni_hashset prev;               /* the last checkpoint's hashes */
	Snipe__Manifest *loaded;        /* the last manifest loaded, or NULL */
	snipe_ckpt_stats stats;
	struct prev_part *prevp;        /* the parts as last saved or loaded */
	size_t nprevp;
	struct snipe_ctx *msg;          /* its positions go in every save (msg.c) */
};

void sni_ckpt_bind_msg(snipe_ckpt *c, struct snipe_ctx *m)
{
	c->msg = m;
}

static void prev_parts_free(snipe_ckpt *c)
{
	for (size_t i = 0; i < c->nprevp; i++) {
		free(c->prevp[i].name);
		free(c->prevp[i].data);
		free(c->prevp[i].size);
		free(c->prevp[i].hash);
	}
	free(c->prevp);
	c->prevp = NULL;
	c->nprevp = 0;
}

static const struct prev_part *prev_part(const snipe_ckpt *c, const char *name)
{
	for (size_t i = 0; i < c->nprevp; i++)
		if (strcmp(c->prevp[i].name, name) == 0)
			return &c->prevp[i];
	return NULL;
}

int snipe_ckpt_open(snipe_ckpt **out, char *err, size_t errlen)
{
	int rc = sni_agent_env(err, errlen);
	if (rc != SNIPE_OK)
		return rc;
	snipe_ckpt *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return SNIPE_ENOMEM;
	snprintf(c->urn, sizeof(c->urn), "%s", getenv("SNIPE_URN"));
	snprintf(c->agent, sizeof(c->agent), "%s", getenv("SNIPE_AGENT"));
	rc = snipe_key_load(getenv("SNIPE_PROC_KEY"), &c->key, err, errlen);
	if (rc != SNIPE_OK) {
		free(c);
		return rc;
	}
	*out = c;
	return SNIPE_OK;
}

void snipe_ckpt_close(snipe_ckpt *c)
{
	if (c == NULL)
		return;
	snipe_key_free(c->key);
	prev_parts_free(c);
	free(c->prev.v);
	if (c->loaded != NULL)
		snipe__manifest__free_unpacked(c->loaded, NULL);
	free(c);
}

void snipe_ckpt_get_stats(const snipe_ckpt *c, snipe_ckpt_stats *out)
{
	*out = c->stats;
}

/* ------------------------------------------------------------------ calls */

static int call_attached(snipe_ckpt *c, Snipe__AgentRequest *req, const uint8_t *att,
                         size_t attlen, Snipe__AgentReply **r, char *err, size_t errlen)
{
	int rc = sni_agent_call_attached(c->key, c->agent, req, att, attlen, CALL_MS, r, err,
	                                 errlen);
	if (rc != SNIPE_OK)
		return rc;
	if ((*r)->code != SNIPE_OK) {
		rc = sni_err(err, errlen, (*r)->code, "%s",
		             (*r)->error[0] ? (*r)->error : snipe_strerror((*r)->code));
		snipe__agent_reply__free_unpacked(*r, NULL);
		*r = NULL;
	}
	return rc;
}

static int call(snipe_ckpt *c, Snipe__AgentRequest *req, Snipe__AgentReply **r, char *err,
                size_t errlen)
{
	return call_attached(c, req, NULL, 0, r, err, errlen);
}

static bool in_prev(const snipe_ckpt *c, const uint8_t *hash)
{
	return sni_hashset_has(&c->prev, hash);
}

/* Remembers the hashes of a manifest as the previous checkpoint's. */
static int remember(snipe_ckpt *c, const Snipe__Manifest *m)
{
	sni_hashset hs;
	int rc = sni_hashset_of_parts(m->parts, m->n_parts, &hs);
	if (rc != SNIPE_OK) {
		free(hs.v);
		return rc;
	}
	free(c->prev.v);
	c->prev = hs;
	return SNIPE_OK;
}

/* ------------------------------------------------------------------- save */

/* A block of a part being saved: where it is in the caller's buffer. */
struct cut {
	const uint8_t *data;
	uint32_t size;
	uint8_t hash[SNI_HASH_BYTES];
	bool send;
	bool same; /* unchanged since the last save (found by comparing bytes) */
};

/* Sends the blocks marked `send` in batches of about BATCH_BYTES compressed, their
 * bytes beside the sealed request (checked by hash, not signed). */
static int send_blocks(snipe_ckpt *c, struct cut *cuts, size_t n, char *err, size_t errlen)
{
	size_t i = 0;
	int rc = SNIPE_OK;
	uint8_t *att = malloc(BATCH_BYTES + SNI_CHUNK_MAX + SNI_CHUNK_MAX / 64 + 1024);
	if (att == NULL)
		return SNIPE_ENOMEM;
	while (rc == SNIPE_OK && i < n) {
		Snipe__Block *blocks = calloc(n - i, sizeof(*blocks));
		Snipe__Block **ptrs = calloc(n - i, sizeof(*ptrs));
		size_t k = 0, bytes = 0;
		if (blocks == NULL || ptrs == NULL)
			rc = SNIPE_ENOMEM;
		for (; rc == SNIPE_OK && i < n && bytes < BATCH_BYTES; i++) {
			if (!cuts[i].send)
				continue;
			uint8_t *z = NULL;
			size_t zlen = 0;
			rc = sni_block_compress(cuts[i].data, cuts[i].size, &z, &zlen); /* hashed */
			if (rc != SNIPE_OK)
				break;
			snipe__block__init(&blocks[k]);
			blocks[k].hash = (ProtobufCBinaryData){SNI_HASH_BYTES, cuts[i].hash};
			blocks[k].size = cuts[i].size;
			blocks[k].zstd_len = (uint32_t)zlen;
			ptrs[k] = &blocks[k];
			memcpy(att + bytes, z, zlen);
			free(z);
			bytes += zlen;
			c->stats.sent_bytes += cuts[i].size;
			c->stats.sent_blocks++;
			k++;
		}
		if (rc == SNIPE_OK && k > 0) {
			Snipe__AgentRequest req = SNIPE__AGENT_REQUEST__INIT;
			Snipe__BlocksPut put = SNIPE__BLOCKS_PUT__INIT;
			Snipe__AgentReply *r = NULL;
			put.blocks = ptrs;
			put.n_blocks = k;
			req.op_case = SNIPE__AGENT_REQUEST__OP_BLOCKS_PUT;
			req.blocks_put = &put;
			rc = call_attached(c, &req, att, bytes, &r, err, errlen);
			if (r != NULL)
				snipe__agent_reply__free_unpacked(r, NULL);
		}
		free(blocks);
		free(ptrs);
	}
	free(att);
	return rc;
}

/* Marks as `send` the new blocks the agent lacks (it may hold some already). */
static int ask_missing(snipe_ckpt *c, struct cut *cuts, size_t n, char *err, size_t errlen)
{
	for (size_t i = 0; i < n;) {
		ProtobufCBinaryData *h = calloc(HAVE_BATCH, sizeof(*h));
		size_t *idx = calloc(HAVE_BATCH, sizeof(*idx));
		size_t k = 0;
		if (h == NULL || idx == NULL) {
			free(h);
			free(idx);
			return SNIPE_ENOMEM;
		}
		for (; i < n && k < HAVE_BATCH; i++) {
			if (!cuts[i].send)
				continue;
			h[k] = (ProtobufCBinaryData){SNI_HASH_BYTES, cuts[i].hash};
			idx[k++] = i;
			cuts[i].send = false; /* until the agent says it lacks it */
		}
		int rc = SNIPE_OK;
		if (k > 0) {
			Snipe__AgentRequest req = SNIPE__AGENT_REQUEST__INIT;
			Snipe__BlocksHave have = SNIPE__BLOCKS_HAVE__INIT;
			Snipe__AgentReply *r = NULL;
			have.hashes = h;
			have.n_hashes = k;
			req.op_case = SNIPE__AGENT_REQUEST__OP_BLOCKS_HAVE;
			req.blocks_have = &have;
			rc = call(c, &req, &r, err, errlen);
			for (size_t m = 0; rc == SNIPE_OK && m < r->n_missing; m++)
				for (size_t j = 0; j < k; j++)
					if (r->missing[m].len == SNI_HASH_BYTES &&
					    memcmp(r->missing[m].data, cuts[idx[j]].hash, SNI_HASH_BYTES) == 0)
						cuts[idx[j]].send = true;
			if (r != NULL)
				snipe__agent_reply__free_unpacked(r, NULL);
		}
		free(h);
		free(idx);
		if (rc != SNIPE_OK)
			return rc;
	}
	return SNIPE_OK;
}

/* Cuts every part into blocks and hashes them; *out (malloc'd) has *n cuts, parts'
 * blocks in order. */
/*
 * The block of the part as last saved that starts at off, if its bytes are unchanged
 * and cutting here would end it where it ended then: a block cut by content (not the
 * last, which ended with the data) ends at the same place whenever its bytes are the
 * same. Returns its index, or -1.
 */
static ptrdiff_t same_block(const struct prev_part *pp, size_t *pk, size_t *poff, size_t off,
                            const uint8_t *buf, size_t len)
{
	while (*pk < pp->n && *poff < off)
		*poff += pp->size[(*pk)++];
	if (*pk >= pp->n || *poff != off)
		return -1;
	size_t n = pp->size[*pk];
	bool last = *pk + 1 == pp->n;
	if (off + n > len || (last && off + n != len) || memcmp(buf + off, pp->data + off, n) != 0)
		return -1;
	return (ptrdiff_t)*pk;
}

static int cut_parts(const snipe_ckpt *c, const snipe_ckpt_part *parts, size_t nparts,
                     struct cut **out, size_t *n)
{
	size_t cap = 0, k = 0;
	struct cut *v = NULL;
	for (size_t p = 0; p < nparts; p++) {
		const uint8_t *buf = parts[p].buf;
		const struct prev_part *pp = prev_part(c, parts[p].name);
		size_t pk = 0, poff = 0;
		for (size_t off = 0; off < parts[p].len;) {
			ptrdiff_t same = pp != NULL && off < pp->len
			                         ? same_block(pp, &pk, &poff, off, buf, parts[p].len)
			                         : -1;
			size_t len = same >= 0 ? pp->size[same]
			                       : sni_chunk_cut(buf + off, parts[p].len - off);
			if (k == cap) {
				cap = cap ? 2 * cap : 256;
				struct cut *grown = realloc(v, cap * sizeof(*v));
				if (grown == NULL) {
					free(v);
					return SNIPE_ENOMEM;
				}
				v = grown;
			}
			v[k].data = buf + off;
			v[k].size = (uint32_t)len;
			v[k].same = same >= 0;
			if (same >= 0)
				memcpy(v[k].hash, pp->hash[same], SNI_HASH_BYTES);
			else
				crypto_generichash(v[k].hash, SNI_HASH_BYTES, buf + off, len, NULL, 0);
			k++;
			off += len;
		}
	}
	*out = v;
	*n = k;
	return SNIPE_OK;
}

/* Keeps a copy of the parts just saved and their blocks, for the next save. */
static void keep_parts(snipe_ckpt *c, const snipe_ckpt_part *parts, size_t n,
                       const struct cut *cuts)
{
	/* the old copies of parts of the same size are updated where they changed, not
	 * copied whole again */
	uint8_t **reuse = calloc(n ? n : 1, sizeof(*reuse));
	for (size_t p = 0; reuse != NULL && p < n; p++) {
		for (size_t i = 0; i < c->nprevp; i++) {
			struct prev_part *old = &c->prevp[i];
			if (old->data != NULL && old->len == parts[p].len &&
			    strcmp(old->name, parts[p].name) == 0) {
				reuse[p] = old->data;
				old->data = NULL;
			}
		}
	}
	prev_parts_free(c);
	c->prevp = calloc(n ? n : 1, sizeof(*c->prevp));
	if (c->prevp == NULL) {
		for (size_t p = 0; reuse != NULL && p < n; p++)
			free(reuse[p]);
		free(reuse);
		return;
	}
	size_t k = 0;
	for (size_t p = 0; p < n; p++) {
		struct prev_part *pp = &c->prevp[c->nprevp];
		size_t first = k;
		for (size_t off = 0; off < parts[p].len; k++)
			off += cuts[k].size;
		pp->n = k - first;
		pp->name = strdup(parts[p].name);
		bool reused = reuse != NULL && reuse[p] != NULL;
		pp->data = reused ? reuse[p] : malloc(parts[p].len ? parts[p].len : 1);
		pp->size = malloc((pp->n ? pp->n : 1) * sizeof(*pp->size));
		pp->hash = malloc((pp->n ? pp->n : 1) * SNI_HASH_BYTES);
		if (pp->name == NULL || pp->data == NULL || pp->size == NULL || pp->hash == NULL) {
			free(pp->name);
			free(pp->data);
			free(pp->size);
			free(pp->hash);
			*pp = (struct prev_part){0};
			continue; /* no copy: the next save cuts and hashes this part again */
		}
		const uint8_t *buf = parts[p].buf;
		if (!reused && parts[p].len > 0)
			memcpy(pp->data, buf, parts[p].len);
		for (size_t i = first, off = 0; reused && i < k; off += cuts[i++].size)
			if (!cuts[i].same)
				memcpy(pp->data + off, buf + off, cuts[i].size);
		pp->len = parts[p].len;
		for (size_t i = 0; i < pp->n; i++) {
			pp->size[i] = cuts[first + i].size;
			memcpy(pp->hash[i], cuts[first + i].hash, SNI_HASH_BYTES);
		}
		c->nprevp++;
	}
	free(reuse);
}

static int save_parts(snipe_ckpt *c, const snipe_ckpt_part *parts, size_t n, char *err,
                      size_t errlen)
{
	struct cut *cuts = NULL;
	size_t ncuts = 0;
	int rc = cut_parts(c, parts, n, &cuts, &ncuts);
	if (rc != SNIPE_OK)
		return rc;
	c->stats.sent_bytes = c->stats.sent_blocks = 0;
	/* new blocks, once each: the previous checkpoint's are on the agents already */
	for (size_t i = 0; i < ncuts; i++) {
		cuts[i].send = !in_prev(c, cuts[i].hash);
		for (size_t j = 0; cuts[i].send && j < i; j++)
			if (cuts[j].send && memcmp(cuts[j].hash, cuts[i].hash, SNI_HASH_BYTES) == 0)
				cuts[i].send = false;
	}
	rc = ask_missing(c, cuts, ncuts, err, errlen);
	if (rc == SNIPE_OK)
		rc = send_blocks(c, cuts, ncuts, err, errlen);

	/* the commit: each part's block list */
	Snipe__Part *pv = calloc(n ? n : 1, sizeof(*pv));
	Snipe__Part **pp = calloc(n ? n : 1, sizeof(*pp));
	Snipe__BlockRef *refs = calloc(ncuts ? ncuts : 1, sizeof(*refs));
	Snipe__BlockRef **rp = calloc(ncuts ? ncuts : 1, sizeof(*rp));
	if (rc == SNIPE_OK && (pv == NULL || pp == NULL || refs == NULL || rp == NULL))
		rc = SNIPE_ENOMEM;
	size_t k = 0;
	for (size_t p = 0; rc == SNIPE_OK && p < n; p++) {
		snipe__part__init(&pv[p]);
		pv[p].name = (char *)parts[p].name;
		pv[p].size = parts[p].len;
		pv[p].blocks = &rp[k];
		for (size_t off = 0; off < parts[p].len; k++) {
			snipe__block_ref__init(&refs[k]);
			refs[k].hash = (ProtobufCBinaryData){SNI_HASH_BYTES, cuts[k].hash};
			refs[k].size = cuts[k].size;
			rp[k] = &refs[k];
			pv[p].n_blocks++;
			off += cuts[k].size;
		}
		pp[p] = &pv[p];
	}
	if (rc == SNIPE_OK) {
		Snipe__AgentRequest req = SNIPE__AGENT_REQUEST__INIT;
		Snipe__CkptCommit commit = SNIPE__CKPT_COMMIT__INIT;
		Snipe__AgentReply *r = NULL;
		commit.parts = pp;
		commit.n_parts = n;
		req.op_case = SNIPE__AGENT_REQUEST__OP_CKPT_COMMIT;
		req.ckpt_commit = &commit;
		rc = call(c, &req, &r, err, errlen);
		if (rc == SNIPE_OK && r->manifest == NULL)
			rc = sni_err(err, errlen, SNIPE_EDECODE, "commit answered without a manifest");
		if (rc == SNIPE_OK)
			rc = remember(c, r->manifest);
		if (rc == SNIPE_OK)
			keep_parts(c, parts, n, cuts);
		if (rc == SNIPE_OK) {
			c->stats.seq = r->manifest->seq;
			c->stats.blocks = ncuts;
			c->stats.bytes = 0;
			for (size_t p = 0; p < n; p++)
				c->stats.bytes += parts[p].len;
		}
		if (r != NULL)
			snipe__agent_reply__free_unpacked(r, NULL);
	}
	free(pv);
	free(pp);
	free(refs);
	free(rp);
	free(cuts);
	return rc;
}

int snipe_ckpt_save(snipe_ckpt *c, const void *buf, size_t len, char *err, size_t errlen)
{
	snipe_ckpt_part p = {.name = "", .buf = buf, .len = len};
	return snipe_ckpt_save_parts(c, &p, 1, err, errlen);
}

/* ------------------------------------------------------------------- load */

static int load_manifest(snipe_ckpt *c, char *err, size_t errlen)
{
	Snipe__AgentRequest req = SNIPE__AGENT_REQUEST__INIT;
	Snipe__CkptLoad load = SNIPE__CKPT_LOAD__INIT;
	Snipe__AgentReply *r = NULL;
	req.op_case = SNIPE__AGENT_REQUEST__OP_CKPT_LOAD;
	req.ckpt_load = &load;
	int rc = call(c, &req, &r, err, errlen);
	if (rc != SNIPE_OK)
		return rc;
	if (r->manifest == NULL) {
		snipe__agent_reply__free_unpacked(r, NULL);
		return sni_err(err, errlen, SNIPE_EDECODE, "load answered without a manifest");
	}
	/* keep the manifest beyond the reply: re-decode a copy of it */
	size_t len = snipe__manifest__get_packed_size(r->manifest);
	uint8_t *bytes = malloc(len ? len : 1);
	if (bytes != NULL)
		snipe__manifest__pack(r->manifest, bytes);
	snipe__agent_reply__free_unpacked(r, NULL);
	if (bytes == NULL)
		return SNIPE_ENOMEM;
	if (c->loaded != NULL)
		snipe__manifest__free_unpacked(c->loaded, NULL);
	c->loaded = snipe__manifest__unpack(NULL, len, bytes);
	free(bytes);
	if (c->loaded == NULL)
		return SNIPE_ENOMEM;
	c->stats.seq = c->loaded->seq;
	return remember(c, c->loaded);
}

/* Reads a part's blocks from the agent into a new buffer, checking each. */
static int read_part(snipe_ckpt *c, const Snipe__Part *part, void **buf, size_t *len,
                     char *err, size_t errlen)
{
	uint8_t *out = malloc(part->size ? part->size : 1);
	if (out == NULL)
		return SNIPE_ENOMEM;
	size_t off = 0, i = 0;
	int rc = SNIPE_OK;
	while (rc == SNIPE_OK && i < part->n_blocks) {
		size_t k = 0, bytes = 0, first = i;
		ProtobufCBinaryData *h = calloc(part->n_blocks - i, sizeof(*h));
		if (h == NULL) {
			rc = SNIPE_ENOMEM;
			break;
		}
		for (; i < part->n_blocks && bytes < BATCH_BYTES; i++, k++) {
			h[k] = part->blocks[i]->hash;
			bytes += part->blocks[i]->size; /* uncompressed: a bound on the reply */
		}
		Snipe__AgentRequest req = SNIPE__AGENT_REQUEST__INIT;
		Snipe__BlocksGet get = SNIPE__BLOCKS_GET__INIT;
		Snipe__AgentReply *r = NULL;
		get.hashes = h;
		get.n_hashes = k;
		req.op_case = SNIPE__AGENT_REQUEST__OP_BLOCKS_GET;
		req.blocks_get = &get;
		rc = call(c, &req, &r, err, errlen);
		if (rc == SNIPE_OK && r->n_blocks != k)
			rc = sni_err(err, errlen, SNIPE_EDECODE, "the agent sent %zu blocks for %zu",
			             r->n_blocks, k);
		for (size_t j = 0; rc == SNIPE_OK && j < k; j++) {
			const Snipe__BlockRef *ref = part->blocks[first + j];
			const Snipe__Block *b = r->blocks[j];
			if (off + ref->size > part->size || ref->hash.len != SNI_HASH_BYTES ||
			    sni_block_open(ref->hash.data, ref->size, b->zstd.data, b->zstd.len,
			                   out + off) != SNIPE_OK)
				rc = sni_err(err, errlen, SNIPE_ECORRUPT, "block %zu of part '%s' is corrupt",
				             first + j, part->name);
			off += ref->size;
		}
		if (r != NULL)
			snipe__agent_reply__free_unpacked(r, NULL);
		free(h);
	}
	if (rc == SNIPE_OK && off != part->size)
		rc = sni_err(err, errlen, SNIPE_ECORRUPT, "part '%s' is %zu bytes, not %llu",
		             part->name, off, (unsigned long long)part->size);
	if (rc != SNIPE_OK) {
		free(out);
		return rc;
	}
	*buf = out;
	*len = off;
	return SNIPE_OK;
}

int snipe_ckpt_load_part(snipe_ckpt *c, const char *name, void **buf, size_t *len, char *err,
                         size_t errlen)
{
	*buf = NULL;
	*len = 0;
	if (c->loaded == NULL) {
		int rc = load_manifest(c, err, errlen);
		if (rc != SNIPE_OK)
			return rc;
	}
	for (size_t p = 0; p < c->loaded->n_parts; p++)
		if (strcmp(c->loaded->parts[p]->name, name) == 0)
			return read_part(c, c->loaded->parts[p], buf, len, err, errlen);
	return sni_err(err, errlen, SNIPE_ENOTFOUND, "checkpoint %llu has no part '%s'",
	               (unsigned long long)c->loaded->seq, name);
}

int snipe_ckpt_save_parts(snipe_ckpt *c, const snipe_ckpt_part *parts, size_t n, char *err,
                          size_t errlen)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(parts[i].name, SNI_MSG_PART) == 0)
			return sni_err(err, errlen, SNIPE_EINVAL, "checkpoint part name '%s' is reserved",
			               SNI_MSG_PART);
		for (size_t j = i + 1; j < n; j++)
			if (strcmp(parts[i].name, parts[j].name) == 0)
				return sni_err(err, errlen, SNIPE_EINVAL, "checkpoint part '%s' given twice",
				               parts[i].name);
	}
	if (c->msg == NULL)
		return save_parts(c, parts, n, err, errlen);
	/* with the message positions as they are now: once committed, the senders may
	 * forget what they cover */
	snipe_ckpt_part *all = calloc(n + 1, sizeof(*all));
	uint8_t *state = NULL;
	size_t len = 0;
	int rc = all == NULL ? SNIPE_ENOMEM : sni_msg_snapshot(c->msg, &state, &len);
	if (rc == SNIPE_OK) {
		memcpy(all, parts, n * sizeof(*parts));
		all[n] = (snipe_ckpt_part){SNI_MSG_PART, state, len};
		rc = save_parts(c, all, n + 1, err, errlen);
		if (rc == SNIPE_OK)
			sni_msg_committed(c->msg);
	} else
		sni_err(err, errlen, rc, "%s", snipe_strerror(rc));
	free(state);
	free(all);
	return rc;
}

int snipe_ckpt_load(snipe_ckpt *c, void **buf, size_t *len, char *err, size_t errlen)
{
	if (c->loaded != NULL) {
		snipe__manifest__free_unpacked(c->loaded, NULL);
		c->loaded = NULL;
	}
	return snipe_ckpt_load_part(c, "", buf, len, err, errlen);
}

/* ------------------------------------------------------------- directory */

int snipe_ckpt_commit_dir(snipe_ckpt *c, uint64_t *seq, char *err, size_t errlen)
{
	Snipe__AgentRequest req = SNIPE__AGENT_REQUEST__INIT;
	Snipe__CkptDir dir = SNIPE__CKPT_DIR__INIT;
	Snipe__AgentReply *r = NULL;
	req.op_case = SNIPE__AGENT_REQUEST__OP_CKPT_DIR;
	req.ckpt_dir = &dir;
	int rc = call(c, &req, &r, err, errlen);
	if (rc != SNIPE_OK)
		return rc;
	if (r->manifest == NULL)
		rc = sni_err(err, errlen, SNIPE_EDECODE, "commit answered without a manifest");
	else
		*seq = c->stats.seq = r->manifest->seq;
	snipe__agent_reply__free_unpacked(r, NULL);
	return rc;
}
