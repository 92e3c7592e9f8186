/*
 * catalog.c — the catalog client (include/rcds.h): signed requests to the replicas
 * over nanomsg REQ sockets, failover between them, request ids that make retried
 * writes apply once, read-your-writes through min_index, and end-to-end checks of
 * every assertion read. It blocks; it is not an event-loop client.
 */
#include <inttypes.h>
#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "catalog.pb-c.h"
#include "rcds.h"
#include "sni.h"

#define REQUEST_ID_BYTES 16
/* The first wait for a reply; doubled after each attempt that timed out. A request
 * swallowed by a replica that just died costs this much, a slow one is retried under
 * the same id (and so applied once). */
#define ATTEMPT_FIRST_MS 250
/* A replica that cannot take a request within this long is down or unreachable: nanomsg
 * queues sends until a connection exists, so this bounds the cost of a dead endpoint. */
#define CONNECT_WAIT_MS 300
#define VERIFIED_SLOTS 8192 /* 256 KiB, two ways: a client re-reading a few thousand
                               assertions verifies each once (at 4096 slots, 2000
                               assertions left about 7% of the pairs over-full) */
#define VERIFIED_DIGEST 32
/* How long an endpoint that did not answer is passed over while others remain. */
#define DOWN_MS 1000

struct rcds_client {
	char *list; /* as given */
	char **endpoints;
	snipe_session **sessions; /* one per endpoint, opened on first use */
	uint64_t *ids;            /* per endpoint: the replica's Raft id once known, else 0 */
	uint64_t *down_until;     /* per endpoint: skip it until then (it did not answer) */
	/* Digests of assertions whose signatures this client verified (direct-mapped). */
	uint8_t (*verified)[VERIFIED_DIGEST]; /* VERIFIED_SLOTS, made on first use */
	size_t n, current;
	const snipe_key *key;
	uint32_t timeout_ms;
	uint32_t attempt_ms; /* the first attempt's wait for one replica (then doubled) */
	uint64_t index; /* highest index seen: reads wait for it (read-your-writes) */
	bool leader_reads;
	int sock;       /* REQ socket to endpoints[current], or -1 */
	char trace[160]; /* the last call's attempts, for its error: "r1 ETIMEDOUT 500ms, ..." */
};

/* Notes one attempt of a call: which replica, what came of it, how long it took. */
static void trace(rcds_client *c, int rc, uint64_t ms)
{
	size_t used = strlen(c->trace);
	if (used + 40 < sizeof(c->trace))
		snprintf(c->trace + used, sizeof(c->trace) - used, "%s#%zu %s %" PRIu64 "ms",
		         used > 0 ? ", " : "", c->current + 1, snipe_errname(rc), ms);
}

/* --------------------------------------------------------------- life cycle */

static int split_endpoints(rcds_client *c, const char *list)
{
	char *copy = strdup(list), *save = NULL;
	if (copy == NULL)
		return SNIPE_ENOMEM;
	int rc = SNIPE_OK;
	for (char *tok = strtok_r(copy, ",", &save); tok != NULL && rc == SNIPE_OK;
	     tok = strtok_r(NULL, ",", &save)) {
		char **grown = realloc(c->endpoints, (c->n + 1) * sizeof(char *));
		if (grown == NULL || (grown[c->n] = strdup(tok)) == NULL) {
			if (grown != NULL)
				c->endpoints = grown;
			rc = SNIPE_ENOMEM;
			break;
		}
		c->endpoints = grown;
		c->n++;
	}
	free(copy);
	return rc;
}

int rcds_client_open(const char *endpoints, const snipe_key *key, rcds_client **out,
                     char *err, size_t errlen)
{
	if (endpoints == NULL || key == NULL)
		return sni_err(err, errlen, SNIPE_EINVAL, "no catalog endpoints or no key");
	rcds_client *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return SNIPE_ENOMEM;
	c->key = key;
	c->timeout_ms = 5000;
	c->attempt_ms = ATTEMPT_FIRST_MS;
	c->sock = -1;
	c->list = strdup(endpoints);
	int rc = c->list != NULL ? split_endpoints(c, endpoints) : SNIPE_ENOMEM;
	if (rc == SNIPE_OK && c->n == 0)
		rc = sni_err(err, errlen, SNIPE_EINVAL, "no catalog endpoints in '%s'", endpoints);
	if (rc == SNIPE_OK && ((c->sessions = calloc(c->n, sizeof(*c->sessions))) == NULL ||
	                       (c->ids = calloc(c->n, sizeof(*c->ids))) == NULL ||
	                       (c->down_until = calloc(c->n, sizeof(*c->down_until))) == NULL))
		rc = SNIPE_ENOMEM;
	if (rc != SNIPE_OK) {
		rcds_client_close(c);
		return rc;
	}
	/* Spread clients over the replicas; a follower redirects writes anyway. */
	c->current = randombytes_uniform((uint32_t)c->n);
	*out = c;
	return SNIPE_OK;
}

void rcds_client_close(rcds_client *c)
{
	if (c == NULL)
		return;
	if (c->sock >= 0)
		nn_close(c->sock);
	for (size_t i = 0; i < c->n; i++) {
		free(c->endpoints[i]);
		if (c->sessions != NULL)
			snipe_session_free(c->sessions[i]);
	}
	free(c->sessions);
	free(c->ids);
	free(c->down_until);
	free(c->endpoints);
	free(c->list);
	free(c->verified);
	free(c);
}

const char *sni_client_endpoints(const rcds_client *c)
{
	return c->list;
}

void rcds_client_set_timeout(rcds_client *c, uint32_t ms)
{
	c->timeout_ms = ms;
}

void rcds_client_set_attempt(rcds_client *c, uint32_t ms)
{
	c->attempt_ms = ms > 0 ? ms : ATTEMPT_FIRST_MS;
}

bool rcds_client_leader_reads(const rcds_client *c)
{
	return c->leader_reads;
}

void rcds_client_set_leader_reads(rcds_client *c, bool on)
{
	c->leader_reads = on;
}

const snipe_key *sni_client_key(const rcds_client *c)
{
	return c->key;
}

void rcds_client_see_index(rcds_client *c, uint64_t index)
{
	if (index > c->index)
		c->index = index;
}

uint64_t rcds_client_index(const rcds_client *c)
{
	return c->index;
}

/* ------------------------------------------------------------- transport */

static int open_socket(const char *endpoint)
{
	int s = nn_socket(AF_SP, NN_REQ);
	if (s < 0)
		return -1;
	int resend = 3600 * 1000; /* retries are ours, with fresh envelopes: never nanomsg's */
	int linger = 0;
	nn_setsockopt(s, NN_REQ, NN_REQ_RESEND_IVL, &resend, sizeof(resend));
	nn_setsockopt(s, NN_SOL_SOCKET, NN_LINGER, &linger, sizeof(linger));
	if (nn_connect(s, endpoint) < 0) {
		nn_close(s);
		return -1;
	}
	return s;
}

/* One request to one endpoint: seal, send, wait up to wait_ms. *reply on success. */
/* Sends one envelope and waits up to wait_ms for the reply. */
static int roundtrip(int sock, const uint8_t *env, size_t env_len, int wait_ms,
                     Snipe__Reply **reply)
{
	/* A signal (SIGCHLD, in a program with children) interrupts nanomsg's waits with
	 * EINTR: wait again for what is left, rather than take the replica for gone. */
	uint64_t start = sni_mono_ms();
	int send_ms = wait_ms < CONNECT_WAIT_MS ? wait_ms : CONNECT_WAIT_MS, n;
	nn_setsockopt(sock, NN_SOL_SOCKET, NN_SNDTIMEO, &send_ms, sizeof(send_ms));
	while ((n = nn_send(sock, env, env_len, 0)) < 0 && nn_errno() == EINTR &&
	       sni_mono_ms() - start < (uint64_t)send_ms)
		;
	if (n < 0)
		return SNIPE_EUNAVAIL;
	void *msg = NULL;
	for (;;) {
		uint64_t spent = sni_mono_ms() - start;
		int left = spent < (uint64_t)wait_ms ? wait_ms - (int)spent : 0;
		nn_setsockopt(sock, NN_SOL_SOCKET, NN_RCVTIMEO, &left, sizeof(left));
		if ((n = nn_recv(sock, &msg, NN_MSG, 0)) >= 0 || nn_errno() != EINTR || left == 0)
			break;
	}
	if (n < 0)
		return nn_errno() == ETIMEDOUT || nn_errno() == EINTR ? SNIPE_ETIMEDOUT : SNIPE_EUNAVAIL;
	*reply = snipe__reply__unpack(NULL, (size_t)n, msg);
	nn_freemsg(msg);
	return *reply != NULL ? SNIPE_OK : SNIPE_EDECODE;
}

/* One request in a signed envelope (no session): status probes of single endpoints. */
static int exchange_signed(int sock, const snipe_key *key, const Snipe__Request *req,
                           int wait_ms, Snipe__Reply **reply)
{
	size_t len = snipe__request__get_packed_size(req);
	uint8_t *body = malloc(len ? len : 1), *env = NULL;
	size_t env_len = 0;
	if (body == NULL)
		return SNIPE_ENOMEM;
	snipe__request__pack(req, body);
	int rc = snipe_env_seal(key, SNIPE_MSG_CATALOG_REQUEST, body, len, &env, &env_len);
	free(body);
	if (rc == SNIPE_OK)
		rc = roundtrip(sock, env, env_len, wait_ms, reply);
	free(env);
	return rc;
}

/* Opens a session with the current endpoint: one signed exchange. If the replica
 * refuses (unknown key, clock skew...), *refusal is its reply, to be handled like the
 * answer to the request itself. */
static int open_session(rcds_client *c, int wait_ms, Snipe__Reply **refusal)
{
	snipe_session *s = NULL;
	uint8_t *env = NULL;
	size_t env_len = 0;
	Snipe__Reply *r = NULL;
	int rc = snipe_session_begin(c->key, &s, &env, &env_len);
	if (rc == SNIPE_OK)
		rc = roundtrip(c->sock, env, env_len, wait_ms, &r);
	free(env);
	if (rc == SNIPE_OK && r->code != SNIPE_OK) {
		snipe_session_free(s);
		*refusal = r;
		return SNIPE_OK;
	}
	if (rc == SNIPE_OK)
		rc = r->session == NULL
		             ? SNIPE_EDECODE
		             : snipe_session_complete(s, r->session->session_id.data,
		                                      r->session->session_id.len,
		                                      r->session->kx_public.data,
		                                      r->session->kx_public.len);
	if (r != NULL)
		snipe__reply__free_unpacked(r, NULL);
	if (rc != SNIPE_OK) {
		snipe_session_free(s);
		return rc;
	}
	c->sessions[c->current] = s;
	return SNIPE_OK;
}

/*
 * One request to the current endpoint within a session (opened first if needed). A
 * replica that has forgotten the session (restart, eviction) answers ESESSION: the
 * session is opened again and the request sent once more.
 */
static int exchange(rcds_client *c, const Snipe__Request *req, int wait_ms,
                    Snipe__Reply **reply)
{
	size_t len = snipe__request__get_packed_size(req);
	uint8_t *body = malloc(len ? len : 1);
	if (body == NULL)
		return SNIPE_ENOMEM;
	snipe__request__pack(req, body);
	int rc = SNIPE_OK;
	for (int attempt = 0; attempt < 2; attempt++) {
		*reply = NULL;
		if (c->sessions[c->current] == NULL &&
		    ((rc = open_session(c, wait_ms, reply)) != SNIPE_OK || *reply != NULL))
			break;
		uint8_t *env = NULL;
		size_t env_len = 0;
		rc = snipe_session_seal(c->sessions[c->current], SNIPE_MSG_CATALOG_REQUEST, body, len,
		                        &env, &env_len);
		if (rc == SNIPE_OK)
			rc = roundtrip(c->sock, env, env_len, wait_ms, reply);
		free(env);
		if (rc == SNIPE_OK && (*reply)->code != SNIPE_ESESSION)
			break;
		snipe_session_free(c->sessions[c->current]);
		c->sessions[c->current] = NULL;
		if (rc == SNIPE_OK) {
			snipe__reply__free_unpacked(*reply, NULL);
			*reply = NULL;
			rc = SNIPE_ESESSION;
		}
		if (rc != SNIPE_ESESSION)
			break;
	}
	free(body);
	return rc;
}

/* Moves to another endpoint: the leader if a replica named it and we know where it
 * listens, else the next one in turn that has not just failed to answer. */
static void next_endpoint(rcds_client *c, uint64_t leader)
{
	if (c->sock >= 0)
		nn_close(c->sock);
	c->sock = -1;
	uint64_t now = sni_mono_ms();
	/* A replica named the leader: go there, unless it just failed to answer (then the
	 * naming replica may not know yet that it died; a client that would rather wait
	 * for a slow leader raises its attempt time, see rcds_client_set_attempt). */
	for (size_t i = 0; leader != 0 && i < c->n; i++) {
		if (c->ids[i] == leader && i != c->current && c->down_until[i] <= now) {
			c->current = i;
			return;
		}
	}
	for (size_t step = 1; step <= c->n; step++) {
		size_t i = (c->current + step) % c->n;
		if (c->down_until[i] <= now || step == c->n) {
			c->current = i;
			return;
		}
	}
}

/* What a reply tells about the cluster: which replica answered, who leads. */
static uint64_t learn(rcds_client *c, const Snipe__Reply *r)
{
	if (r == NULL || r->status == NULL)
		return 0;
	if (r->status->id != 0)
		c->ids[c->current] = r->status->id;
	return r->status->leader_id;
}

/*
 * Sends req until a replica answers with something other than ENOTLEADER, trying the
 * endpoints in turn, within the client's timeout. The request keeps its id across
 * attempts (a write applies once); each attempt is a fresh envelope (new nonce).
 */
static int call(rcds_client *c, const Snipe__Request *req, Snipe__Reply **reply, char *err,
                size_t errlen)
{
	uint64_t deadline = sni_mono_ms() + c->timeout_ms;
	int last = SNIPE_EUNAVAIL;
	c->trace[0] = '\0';
	size_t not_leader = 0, unknown = 0;
	unsigned timeouts = 0;
	for (uint64_t now = sni_mono_ms(); now < deadline; now = sni_mono_ms()) {
		if (c->sock < 0 && (c->sock = open_socket(c->endpoints[c->current])) < 0) {
			c->down_until[c->current] = now + DOWN_MS;
			next_endpoint(c, 0);
			continue;
		}
		uint64_t left = deadline - now, slice = (uint64_t)c->attempt_ms << timeouts;
		Snipe__Reply *r = NULL;
		int rc = exchange(c, req, (int)(left < slice ? left : slice), &r);
		trace(c, rc == SNIPE_OK ? r->code : rc, sni_mono_ms() - now);
		if (rc == SNIPE_ETIMEDOUT && timeouts < 4)
			timeouts++;
		if (rc == SNIPE_ETIMEDOUT || rc == SNIPE_EUNAVAIL)
			c->down_until[c->current] = sni_mono_ms() + DOWN_MS;
		uint64_t leader = learn(c, r);
		/* A key registered a moment ago is unknown to replicas that lag: ask each. */
		if (rc == SNIPE_OK && r->code == SNIPE_EUNKNOWNSIGNER && ++unknown < c->n) {
			snipe__reply__free_unpacked(r, NULL);
			next_endpoint(c, 0);
			continue;
		}
		if (rc == SNIPE_OK && r->code != SNIPE_ENOTLEADER) {
			*reply = r;
			return SNIPE_OK;
		}
		if (r != NULL)
			snipe__reply__free_unpacked(r, NULL);
		last = rc == SNIPE_OK ? SNIPE_ENOTLEADER : rc;
		next_endpoint(c, leader);
		/* Every replica said "not leader": an election is on; give it a moment. */
		if (last == SNIPE_ENOTLEADER && ++not_leader % c->n == 0) {
			struct timespec pause = {0, 50 * 1000 * 1000};
			nanosleep(&pause, NULL);
		}
	}
	if (last == SNIPE_ENOTLEADER)
		return sni_err(err, errlen, SNIPE_EUNAVAIL,
		               "no catalog leader within %u ms (election in progress?; %s)",
		               c->timeout_ms, c->trace);
	return sni_err(err, errlen, last == SNIPE_ETIMEDOUT ? SNIPE_ETIMEDOUT : SNIPE_EUNAVAIL,
	               "no catalog replica answered within %u ms (tried %s%s; %s)", c->timeout_ms,
	               c->endpoints[0], c->n > 1 ? " and others" : "", c->trace);
}

/* Turns a reply's code into the call's result, with the replica's reason. */
static int reply_result(rcds_client *c, const Snipe__Reply *r, char *err, size_t errlen)
{
	if (r->index > c->index)
		c->index = r->index;
	if (r->code != SNIPE_OK)
		return sni_err(err, errlen, r->code, "%s",
		               r->error != NULL && r->error[0] ? r->error : snipe_strerror(r->code));
	return SNIPE_OK;
}

/* A request id: the time in ms (6 bytes, big-endian) then 10 random bytes. Unique by
 * the random part; the time prefix makes the replicas' index of recent ids grow at one
 * end instead of touching a random page per write. */
static void new_request(Snipe__Request *req, uint8_t id[REQUEST_ID_BYTES])
{
	snipe__request__init(req);
	uint64_t now = snipe_now_ms();
	for (int i = 5; i >= 0; i--, now >>= 8)
		id[i] = (uint8_t)now;
	randombytes_buf(id + 6, REQUEST_ID_BYTES - 6);
	req->id = (ProtobufCBinaryData){REQUEST_ID_BYTES, id};
}

/* ------------------------------------------------------------------ batches */

struct put {
	char *urn, *attr;
	uint8_t *value;
	size_t len;
	uint64_t expires_ms, expect_version;
	bool check;
};

struct del {
	char *urn, *attr;
};

struct rcds_batch {
	struct put *puts;
	size_t nputs;
	struct del *dels;
	size_t ndels;
};

int rcds_batch_new(rcds_batch **out)
{
	*out = calloc(1, sizeof(rcds_batch));
	return *out != NULL ? SNIPE_OK : SNIPE_ENOMEM;
}

void rcds_batch_free(rcds_batch *b)
{
	if (b == NULL)
		return;
	for (size_t i = 0; i < b->nputs; i++) {
		free(b->puts[i].urn);
		free(b->puts[i].attr);
		free(b->puts[i].value);
	}
	for (size_t i = 0; i < b->ndels; i++) {
		free(b->dels[i].urn);
		free(b->dels[i].attr);
	}
	free(b->puts);
	free(b->dels);
	free(b);
}

static int add_put(rcds_batch *b, const char *urn, const char *attr, const void *value,
                   size_t len, uint64_t expires_ms, bool check, uint64_t expect)
{
	if (urn == NULL || attr == NULL || (value == NULL && len > 0))
		return SNIPE_EINVAL;
	struct put *grown = realloc(b->puts, (b->nputs + 1) * sizeof(*grown));
	if (grown == NULL)
		return SNIPE_ENOMEM;
	b->puts = grown;
	struct put *p = &b->puts[b->nputs];
	*p = (struct put){.urn = strdup(urn), .attr = strdup(attr), .value = malloc(len ? len : 1),
	                  .len = len, .expires_ms = expires_ms, .check = check,
	                  .expect_version = expect};
	if (p->urn == NULL || p->attr == NULL || p->value == NULL) {
		free(p->urn);
		free(p->attr);
		free(p->value);
		return SNIPE_ENOMEM;
	}
	if (len > 0)
		memcpy(p->value, value, len);
	b->nputs++;
	return SNIPE_OK;
}

int rcds_batch_put(rcds_batch *b, const char *urn, const char *attr, const void *value,
                   size_t len, uint64_t expires_ms)
{
	return add_put(b, urn, attr, value, len, expires_ms, false, 0);
}

int rcds_batch_put_text(rcds_batch *b, const char *urn, const char *attr, const char *value)
{
	if (value == NULL)
		return SNIPE_EINVAL;
	return add_put(b, urn, attr, value, strlen(value), 0, false, 0);
}

int rcds_batch_putf(rcds_batch *b, const char *urn, const char *attr, const char *fmt, ...)
{
	char v[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(v, sizeof(v), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(v))
		return SNIPE_ERANGE;
	return add_put(b, urn, attr, v, (size_t)n, 0, false, 0);
}

int rcds_batch_put_key(rcds_batch *b, const uint8_t pk[SNIPE_PK_BYTES], const char *role,
                       const char *host)
{
	uint8_t id[SNIPE_KEYID_BYTES];
	char idhex[SNIPE_KEYID_HEX], pkhex[SNIPE_PK_HEX], urn[SNIPE_URN_MAX];
	if (role == NULL)
		return SNIPE_EINVAL;
	snipe_keyid(pk, id);
	snipe_keyid_hex(id, idhex);
	snipe_pk_hex(pk, pkhex);
	snprintf(urn, sizeof(urn), "urn:snipe:key:%s", idhex);
	int rc = rcds_batch_put_text(b, urn, "pubkey", pkhex);
	if (rc == SNIPE_OK)
		rc = rcds_batch_put_text(b, urn, "role", role);
	if (rc == SNIPE_OK && host != NULL)
		rc = rcds_batch_put_text(b, urn, "host", host);
	return rc;
}

int rcds_batch_put_if(rcds_batch *b, const char *urn, const char *attr, const void *value,
                      size_t len, uint64_t expires_ms, uint64_t expect_version)
{
	return add_put(b, urn, attr, value, len, expires_ms, true, expect_version);
}

int rcds_batch_delete(rcds_batch *b, const char *urn, const char *attr)
{
	if (urn == NULL)
		return SNIPE_EINVAL;
	struct del *grown = realloc(b->dels, (b->ndels + 1) * sizeof(*grown));
	if (grown == NULL)
		return SNIPE_ENOMEM;
	b->dels = grown;
	struct del *d = &b->dels[b->ndels];
	d->urn = strdup(urn);
	d->attr = strdup(attr != NULL ? attr : "");
	if (d->urn == NULL || d->attr == NULL) {
		free(d->urn);
		free(d->attr);
		return SNIPE_ENOMEM;
	}
	b->ndels++;
	return SNIPE_OK;
}

/* ------------------------------------------------------------------- writes */

void sni_write_msg_free(struct sni_write_msg *m)
{
	for (size_t i = 0; i < m->n && m->contents != NULL; i++)
		free(m->contents[i]);
	free(m->contents);
	free(m->items);
	free(m->item_ptrs);
	free(m->assertions);
	free(m->dels);
	free(m->del_ptrs);
	free(m->sigs);
}

int sni_write_msg_build(const snipe_key *key, const rcds_batch *b, struct sni_write_msg *m,
                        char *err, size_t errlen)
{
	size_t np = b->nputs ? b->nputs : 1, nd = b->ndels ? b->ndels : 1;
	snipe__write_request__init(&m->w);
	m->items = calloc(np, sizeof(*m->items));
	m->item_ptrs = calloc(np, sizeof(*m->item_ptrs));
	m->assertions = calloc(np, sizeof(*m->assertions));
	m->sigs = calloc(np, sizeof(*m->sigs));
	m->contents = calloc(np, sizeof(*m->contents));
	m->dels = calloc(nd, sizeof(*m->dels));
	m->del_ptrs = calloc(nd, sizeof(*m->del_ptrs));
	if (!m->items || !m->item_ptrs || !m->assertions || !m->sigs || !m->contents ||
	    !m->dels || !m->del_ptrs)
		return SNIPE_ENOMEM;
	const uint8_t *pk = snipe_key_public(key);
	for (size_t i = 0; i < b->nputs; i++, m->n++) {
		const struct put *p = &b->puts[i];
		size_t clen = 0;
		int rc = snipe_urn_validate(p->urn, err, errlen);
		if (rc == SNIPE_OK)
			rc = sni_attr_validate(p->attr, err, errlen);
		if (rc == SNIPE_OK)
			rc = sni_assertion_sign(key, p->urn, p->attr, p->value, p->len,
			                        p->expires_ms, &m->contents[i], &clen, m->sigs[i]);
		if (rc != SNIPE_OK)
			return rc;
		Snipe__Assertion *a = &m->assertions[i];
		snipe__assertion__init(a);
		a->content = (ProtobufCBinaryData){clen, m->contents[i]};
		a->author = (ProtobufCBinaryData){SNIPE_PK_BYTES, (uint8_t *)pk};
		a->signature = (ProtobufCBinaryData){SNIPE_SIG_BYTES, m->sigs[i]};
		snipe__put_item__init(&m->items[i]);
		m->items[i].assertion = a;
		m->items[i].check_version = p->check;
		m->items[i].expect_version = p->expect_version;
		m->item_ptrs[i] = &m->items[i];
	}
	for (size_t i = 0; i < b->ndels; i++) {
		snipe__delete_item__init(&m->dels[i]);
		m->dels[i].urn = b->dels[i].urn;
		m->dels[i].attr = b->dels[i].attr;
		m->del_ptrs[i] = &m->dels[i];
	}
	m->w.puts = m->item_ptrs;
	m->w.n_puts = b->nputs;
	m->w.deletes = m->del_ptrs;
	m->w.n_deletes = b->ndels;
	return SNIPE_OK;
}

int rcds_write(rcds_client *c, const rcds_batch *b, uint64_t *index, char *err,
               size_t errlen)
{
	struct sni_write_msg m = {0};
	int rc = sni_write_msg_build(c->key, b, &m, err, errlen);
	if (rc == SNIPE_OK) {
		Snipe__Request req;
		uint8_t id[REQUEST_ID_BYTES];
		new_request(&req, id);
		req.op_case = SNIPE__REQUEST__OP_WRITE;
		req.write = &m.w;
		Snipe__Reply *r = NULL;
		rc = call(c, &req, &r, err, errlen);
		if (rc == SNIPE_OK) {
			rc = reply_result(c, r, err, errlen);
			if (rc == SNIPE_OK && index != NULL)
				*index = r->index;
			snipe__reply__free_unpacked(r, NULL);
		}
	}
	sni_write_msg_free(&m);
	return rc;
}

/* -------------------------------------------------------------------- reads */

void rcds_list_free(rcds_list *l)
{
	if (l == NULL)
		return;
	for (size_t i = 0; i < l->count; i++)
		free(l->items[i].value);
	free(l->items);
	memset(l, 0, sizeof(*l));
}

int sni_assertion_read(const Snipe__Assertion *a, bool verify, rcds_assertion *out,
                       char *err, size_t errlen)
{
	Snipe__AssertionContent *ct = NULL;
	int rc = sni_assertion_check(a->content.data, a->content.len, a->author.data,
	                             a->author.len, a->signature.data, a->signature.len, verify,
	                             &ct, err, errlen);
	if (rc != SNIPE_OK)
		return rc;
	memset(out, 0, sizeof(*out));
	snprintf(out->urn, sizeof(out->urn), "%s", ct->urn);
	snprintf(out->attr, sizeof(out->attr), "%s", ct->attr);
	out->value = malloc(ct->value.len + 1);
	if (out->value != NULL) {
		if (ct->value.len > 0)
			memcpy(out->value, ct->value.data, ct->value.len);
		out->value[ct->value.len] = '\0';
		out->value_len = ct->value.len;
		out->expires_ms = ct->expires_ms;
		out->version = a->version;
		memcpy(out->author, a->author.data, SNIPE_PK_BYTES);
	}
	snipe__assertion_content__free_unpacked(ct, NULL);
	return out->value != NULL ? SNIPE_OK : SNIPE_ENOMEM;
}

/* The digest naming one (author, signature, content) triple in the verified cache. */
static void triple_digest(const Snipe__Assertion *a, uint8_t out[VERIFIED_DIGEST])
{
	crypto_generichash_state st;
	crypto_generichash_init(&st, NULL, 0, VERIFIED_DIGEST);
	crypto_generichash_update(&st, a->author.data, a->author.len);
	crypto_generichash_update(&st, a->signature.data, a->signature.len);
	crypto_generichash_update(&st, a->content.data, a->content.len);
	crypto_generichash_final(&st, out, VERIFIED_DIGEST);
}

/* Checks and converts one assertion, verifying its signature unless this client has
 * verified exactly these bytes before (agents re-read the same assertions often; an
 * Ed25519 verification costs ~36 us, the digest ~1 us). */
static int read_assertion(rcds_client *c, const Snipe__Assertion *a, rcds_assertion *out,
                          char *err, size_t errlen)
{
	uint8_t d[VERIFIED_DIGEST];
	triple_digest(a, d);
	if (c->verified == NULL)
		c->verified = calloc(VERIFIED_SLOTS, VERIFIED_DIGEST);
	if (c->verified == NULL)
		return sni_assertion_read(a, true, out, err, errlen);
	/* two ways: the pair of slots at i and i ^ 1; a miss takes an empty one, else
	 * replaces one picked by d */
	size_t i = ((size_t)d[0] | (size_t)d[1] << 8) % VERIFIED_SLOTS;
	bool known = sodium_memcmp(c->verified[i], d, VERIFIED_DIGEST) == 0 ||
	             sodium_memcmp(c->verified[i ^ 1], d, VERIFIED_DIGEST) == 0;
	int rc = sni_assertion_read(a, !known, out, err, errlen);
	if (rc != SNIPE_OK || known)
		return rc;
	size_t way = sodium_is_zero(c->verified[i], VERIFIED_DIGEST)       ? i
	             : sodium_is_zero(c->verified[i ^ 1], VERIFIED_DIGEST) ? i ^ 1
	                                                                    : i ^ (d[2] & 1);
	memcpy(c->verified[way], d, VERIFIED_DIGEST);
	return SNIPE_OK;
}

/* Verifies each assertion of a reply and appends it to l. */
static int append_verified(rcds_client *c, rcds_list *l, const Snipe__Reply *r, char *err,
                           size_t errlen)
{
	if (r->n_assertions == 0)
		return SNIPE_OK;
	rcds_assertion *items = realloc(l->items, (l->count + r->n_assertions) * sizeof(*items));
	if (items == NULL)
		return SNIPE_ENOMEM;
	l->items = items;
	for (size_t i = 0; i < r->n_assertions; i++) {
		int rc = read_assertion(c, r->assertions[i], &l->items[l->count], err, errlen);
		if (rc != SNIPE_OK)
			return rc;
		l->count++;
	}
	return SNIPE_OK;
}

/* Sends a read, checks and collects its assertions. */
static int read_call(rcds_client *c, Snipe__Request *req, rcds_list *out,
                     Snipe__Reply **last, char *err, size_t errlen)
{
	Snipe__Reply *r = NULL;
	int rc = call(c, req, &r, err, errlen);
	if (rc != SNIPE_OK)
		return rc;
	rc = reply_result(c, r, err, errlen);
	if (rc == SNIPE_OK)
		rc = append_verified(c, out, r, err, errlen);
	out->index = r->index;
	*last = r;
	return rc;
}

int rcds_get(rcds_client *c, const char *urn, rcds_list *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	int rc = snipe_urn_validate(urn, err, errlen);
	if (rc != SNIPE_OK)
		return rc;
	Snipe__Request req;
	Snipe__GetRequest get = SNIPE__GET_REQUEST__INIT;
	uint8_t id[REQUEST_ID_BYTES];
	new_request(&req, id);
	get.urn = (char *)urn;
	get.min_index = c->index;
	get.leader_only = c->leader_reads;
	req.op_case = SNIPE__REQUEST__OP_GET;
	req.get = &get;
	Snipe__Reply *r = NULL;
	rc = read_call(c, &req, out, &r, err, errlen);
	if (r != NULL)
		snipe__reply__free_unpacked(r, NULL);
	if (rc != SNIPE_OK)
		rcds_list_free(out);
	return rc;
}

int rcds_query(rcds_client *c, const char *prefix, const rcds_where *where, size_t nwhere,
               rcds_list *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	Snipe__AttrFilter *filters = calloc(nwhere ? nwhere : 1, sizeof(*filters));
	Snipe__AttrFilter **fptrs = calloc(nwhere ? nwhere : 1, sizeof(*fptrs));
	int rc = filters != NULL && fptrs != NULL ? SNIPE_OK : SNIPE_ENOMEM;
	for (size_t i = 0; i < nwhere && rc == SNIPE_OK; i++) {
		snipe__attr_filter__init(&filters[i]);
		filters[i].attr = (char *)where[i].attr;
		filters[i].value = (ProtobufCBinaryData){where[i].value_len, (uint8_t *)where[i].value};
		fptrs[i] = &filters[i];
	}
	char *after_urn = strdup(""), *after_attr = strdup("");
	if (after_urn == NULL || after_attr == NULL)
		rc = SNIPE_ENOMEM;
	while (rc == SNIPE_OK) {
		Snipe__Request req;
		Snipe__QueryRequest q = SNIPE__QUERY_REQUEST__INIT;
		uint8_t id[REQUEST_ID_BYTES];
		new_request(&req, id);
		q.prefix = (char *)(prefix != NULL ? prefix : "");
		q.where = fptrs;
		q.n_where = nwhere;
		q.after_urn = after_urn;
		q.after_attr = after_attr;
		q.min_index = c->index;
		q.leader_only = c->leader_reads;
		req.op_case = SNIPE__REQUEST__OP_QUERY;
		req.query = &q;
		Snipe__Reply *r = NULL;
		rc = read_call(c, &req, out, &r, err, errlen);
		bool more = rc == SNIPE_OK && r->next_urn[0] != '\0';
		if (more) {
			free(after_urn);
			free(after_attr);
			after_urn = strdup(r->next_urn);
			after_attr = strdup(r->next_attr);
			if (after_urn == NULL || after_attr == NULL)
				rc = SNIPE_ENOMEM;
		}
		if (r != NULL)
			snipe__reply__free_unpacked(r, NULL);
		if (!more)
			break;
	}
	free(after_urn);
	free(after_attr);
	free(filters);
	free(fptrs);
	if (rc != SNIPE_OK)
		rcds_list_free(out);
	return rc;
}

/* ------------------------------------------------------------------- status */

static void copy_status(rcds_status *out, const Snipe__Status *st)
{
	snprintf(out->endpoint, sizeof(out->endpoint), "%s", st->endpoint);
	out->id = st->id;
	out->leader_id = st->leader_id;
	out->term = st->term;
	out->applied_index = st->applied_index;
	out->commit_index = st->commit_index;
	snprintf(out->leader_address, sizeof(out->leader_address), "%s", st->leader_address);
	snprintf(out->state, sizeof(out->state), "%s", st->state);
	snprintf(out->watch_endpoint, sizeof(out->watch_endpoint), "%s", st->watch_endpoint);
	size_t max = sizeof(out->members) / sizeof(out->members[0]);
	out->nmembers = st->n_members < max ? st->n_members : max;
	for (size_t i = 0; i < out->nmembers; i++) {
		out->members[i].id = st->members[i]->id;
		snprintf(out->members[i].address, sizeof(out->members[i].address), "%s",
		         st->members[i]->address);
		out->members[i].voter = st->members[i]->voter;
	}
}

int rcds_status_get(rcds_client *c, const char *endpoint, rcds_status *out, char *err,
                    size_t errlen)
{
	memset(out, 0, sizeof(*out));
	Snipe__Request req;
	Snipe__StatusRequest sr = SNIPE__STATUS_REQUEST__INIT;
	uint8_t id[REQUEST_ID_BYTES];
	new_request(&req, id);
	req.op_case = SNIPE__REQUEST__OP_STATUS;
	req.status = &sr;
	Snipe__Reply *r = NULL;
	int rc;
	if (endpoint != NULL) {
		int sock = open_socket(endpoint);
		if (sock < 0)
			return sni_err(err, errlen, SNIPE_EINVAL, "bad endpoint '%s'", endpoint);
		rc = exchange_signed(sock, c->key, &req, (int)c->timeout_ms, &r);
		nn_close(sock);
		if (rc != SNIPE_OK)
			return sni_err(err, errlen, rc, "%s: %s", endpoint, snipe_strerror(rc));
	} else {
		rc = call(c, &req, &r, err, errlen);
		if (rc != SNIPE_OK)
			return rc;
	}
	rc = r->code == SNIPE_OK && r->status == NULL ? SNIPE_EDECODE : SNIPE_OK;
	if (rc == SNIPE_OK)
		rc = reply_result(c, r, err, errlen);
	if (rc == SNIPE_OK)
		copy_status(out, r->status);
	snipe__reply__free_unpacked(r, NULL);
	return rc;
}

/* --------------------------------------------------------------- membership */

/* Sent like any request, within the client's timeout: the leader answers when the change
 * is committed, and answers a retry under the same id (after an attempt's wait ran out)
 * with that change's result instead of making it again. */
static int member_call(rcds_client *c, Snipe__MemberRequest *m, char *err, size_t errlen)
{
	Snipe__Request req;
	uint8_t id[REQUEST_ID_BYTES];
	new_request(&req, id);
	req.op_case = SNIPE__REQUEST__OP_MEMBER;
	req.member = m;
	Snipe__Reply *r = NULL;
	int rc = call(c, &req, &r, err, errlen);
	if (rc != SNIPE_OK)
		return rc;
	rc = reply_result(c, r, err, errlen);
	snipe__reply__free_unpacked(r, NULL);
	return rc;
}

int rcds_member_add(rcds_client *c, uint64_t id, const char *raft_address, char *err,
                    size_t errlen)
{
	if (id == 0 || id > INT64_MAX || raft_address == NULL || strchr(raft_address, ':') == NULL)
		return sni_err(err, errlen, SNIPE_EINVAL, "a member needs an id from 1 to 2^63-1 "
		               "and a Raft address HOST:PORT");
	Snipe__MemberRequest m = SNIPE__MEMBER_REQUEST__INIT;
	m.action = SNIPE__MEMBER_REQUEST__ACTION__ADD;
	m.id = id;
	m.address = (char *)raft_address;
	return member_call(c, &m, err, errlen);
}

int rcds_member_remove(rcds_client *c, uint64_t id, char *err, size_t errlen)
{
	Snipe__MemberRequest m = SNIPE__MEMBER_REQUEST__INIT;
	m.action = SNIPE__MEMBER_REQUEST__ACTION__REMOVE;
	m.id = id;
	return member_call(c, &m, err, errlen);
}

/* ------------------------------------------------------------ hosts, placement */

/* A request answered by the leader only, within the client's timeout. *r on success. */
static int leader_call(rcds_client *c, Snipe__Request *req, Snipe__Reply **r, char *err,
                       size_t errlen)
{
	int rc = call(c, req, r, err, errlen);
	if (rc != SNIPE_OK)
		return rc;
	rc = reply_result(c, *r, err, errlen);
	if (rc != SNIPE_OK) {
		snipe__reply__free_unpacked(*r, NULL);
		*r = NULL;
	}
	return rc;
}

int rcds_heartbeat(rcds_client *c, const char *host, uint32_t lease_ms, rcds_lease_reply *out,
                   char *err, size_t errlen)
{
	Snipe__Request req;
	Snipe__HeartbeatRequest hb = SNIPE__HEARTBEAT_REQUEST__INIT;
	uint8_t id[REQUEST_ID_BYTES];
	memset(out, 0, sizeof(*out));
	new_request(&req, id);
	hb.host = (char *)host;
	hb.lease_ms = lease_ms;
	req.op_case = SNIPE__REQUEST__OP_HEARTBEAT;
	req.heartbeat = &hb;
	Snipe__Reply *r = NULL;
	int rc = leader_call(c, &req, &r, err, errlen);
	if (rc != SNIPE_OK)
		return rc;
	const Snipe__HeartbeatReply *h = r->heartbeat;
	out->index = r->index;
	if (h != NULL && h->n_assigned > 0) {
		out->assigned = calloc(h->n_assigned, sizeof(*out->assigned));
		if (out->assigned == NULL)
			rc = SNIPE_ENOMEM;
		for (size_t i = 0; rc == SNIPE_OK && i < h->n_assigned; i++) {
			snprintf(out->assigned[i].urn, sizeof(out->assigned[i].urn), "%s",
			         h->assigned[i]->urn);
			out->assigned[i].epoch = h->assigned[i]->epoch;
		}
		out->n = rc == SNIPE_OK ? h->n_assigned : 0;
		out->truncated = h->truncated;
	}
	snipe__reply__free_unpacked(r, NULL);
	return rc;
}

void rcds_lease_reply_clear(rcds_lease_reply *h)
{
	free(h->assigned);
	memset(h, 0, sizeof(*h));
}

int rcds_place(rcds_client *c, const char *const *labels, size_t nlabels,
               const char *exclude, char *host, size_t hostlen, char *address,
               size_t addrlen, char *err, size_t errlen)
{
	Snipe__Request req;
	Snipe__PlaceRequest pr = SNIPE__PLACE_REQUEST__INIT;
	uint8_t id[REQUEST_ID_BYTES];
	Snipe__AttrFilter *f = calloc(nlabels ? nlabels : 1, sizeof(*f));
	Snipe__AttrFilter **fp = calloc(nlabels ? nlabels : 1, sizeof(*fp));
	char **names = calloc(nlabels ? nlabels : 1, sizeof(*names));
	int rc = f != NULL && fp != NULL && names != NULL ? SNIPE_OK : SNIPE_ENOMEM;
	for (size_t i = 0; rc == SNIPE_OK && i < nlabels; i++) {
		const char *eq = strchr(labels[i], '=');
		if (eq == NULL || eq == labels[i]) {
			rc = sni_err(err, errlen, SNIPE_EINVAL, "label '%s' is not k=v", labels[i]);
			break;
		}
		names[i] = strndup(labels[i], (size_t)(eq - labels[i]));
		if (names[i] == NULL) {
			rc = SNIPE_ENOMEM;
			break;
		}
		snipe__attr_filter__init(&f[i]);
		f[i].attr = names[i];
		f[i].value = (ProtobufCBinaryData){strlen(eq + 1), (uint8_t *)(eq + 1)};
		fp[i] = &f[i];
	}
	if (rc == SNIPE_OK) {
		new_request(&req, id);
		pr.labels = fp;
		pr.n_labels = nlabels;
		pr.exclude = (char *)(exclude != NULL ? exclude : "");
		req.op_case = SNIPE__REQUEST__OP_PLACE;
		req.place = &pr;
		Snipe__Reply *r = NULL;
		rc = leader_call(c, &req, &r, err, errlen);
		if (rc == SNIPE_OK && r->placement == NULL)
			rc = sni_err(err, errlen, SNIPE_EDECODE, "placement reply without a host");
		if (rc == SNIPE_OK) {
			snprintf(host, hostlen, "%s", r->placement->host);
			snprintf(address, addrlen, "%s", r->placement->address);
		}
		if (r != NULL)
			snipe__reply__free_unpacked(r, NULL);
	}
	for (size_t i = 0; names != NULL && i < nlabels; i++)
		free(names[i]);
	free(names);
	free(fp);
	free(f);
	return rc;
}
