/*
 * server.c — the agent's request socket: a nanomsg raw REP socket on the loop, signed
 * AgentRequests in (agent.proto), AgentReplies out. A signer is trusted if the catalog
 * registers its key (urn:snipe:key:<id>, any role); keys are fetched on first sight
 * and forgotten every KEY_TTL_MS, so a revoked key stops working within that time.
 * Requests only ask the agent to look at the catalog (reconcile) or read a process's
 * logs (its owner or an admin): what runs is always what the catalog says.
 */
#include <errno.h>
#include <fcntl.h>
#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "msg.h"
#include "sni.h"

#define RECV_BURST 64
#define KEY_TTL_MS 60000
#define LOGS_DEFAULT 65536u
#define LOGS_MAX (1u << 20)

/* A request being answered: the nanomsg routing header and the request id. */
struct agent_call {
	agent *a;
	void *control;
	uint8_t id[16];
	size_t idlen;
};

static struct agent_call *call_new(agent *a, void *control, const ProtobufCBinaryData *id)
{
	struct agent_call *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->a = a;
	c->control = control;
	c->idlen = id->len <= sizeof(c->id) ? id->len : 0;
	if (c->idlen > 0)
		memcpy(c->id, id->data, c->idlen);
	return c;
}

/* Sends r along c's route and frees c. */
void agent_answer(struct agent_call *c, Snipe__AgentReply *r)
{
	r->id = (ProtobufCBinaryData){c->idlen, c->id};
	sni_rep_reply(c->a->sock, c->control, &r->base);
	free(c);
}

void agent_answer_code(struct agent_call *c, int code, const char *error)
{
	Snipe__AgentReply r = SNIPE__AGENT_REPLY__INIT;
	r.code = code;
	r.error = (char *)(error != NULL ? error : code != SNIPE_OK ? snipe_strerror(code) : "");
	agent_answer(c, &r);
}

/* ------------------------------------------------------------- reconcile */

static void reconciled(void *arg, const Snipe__ProcStatus *st, int code, const char *err)
{
	struct agent_call *c = arg;
	Snipe__AgentReply r = SNIPE__AGENT_REPLY__INIT;
	r.code = code;
	r.error = (char *)(err != NULL ? err : code != SNIPE_OK ? snipe_strerror(code) : "");
	r.proc = (Snipe__ProcStatus *)st;
	agent_answer(c, &r);
}

static void do_reconcile(struct agent_call *c, const Snipe__ReconcileRequest *rq)
{
	char err[256];
	snipe_urn u;
	if (snipe_urn_parse(rq->urn, &u, err, sizeof(err)) != SNIPE_OK || u.kind != SNIPE_KIND_PROC) {
		agent_answer_code(c, SNIPE_EINVAL, "reconcile: not a process URN");
		return;
	}
	if (agent_reconcile(c->a, rq->urn, rq->min_index, reconciled, c) != SNIPE_OK)
		agent_answer_code(c, SNIPE_ENOMEM, NULL);
}

/* ------------------------------------------------------------------ logs */

struct logs_io {
	agent_io io;
	struct agent_call *c;
	char urn[SNIPE_URN_MAX];
	uint8_t requester[SNIPE_PK_BYTES];
	bool allowed;
	Snipe__LogsRequest rq;
};

static bool key_is_admin(rcds_client *cl, const char *idhex)
{
	char urn[SNIPE_URN_MAX];
	rcds_list l = {0};
	bool admin = false;
	snprintf(urn, sizeof(urn), "urn:snipe:key:%s", idhex);
	if (rcds_get(cl, urn, &l, NULL, 0) == SNIPE_OK) {
		for (size_t i = 0; i < l.count; i++)
			if (strcmp(l.items[i].attr, "role") == 0 &&
			    strcmp((const char *)l.items[i].value, "admin") == 0)
				admin = true;
	}
	rcds_list_free(&l);
	return admin;
}

/* On the pool: may the requester read urn's logs? Its owner (the spec's author) or an
 * admin may. */
static void logs_check(agent_io *io, rcds_client *cl)
{
	struct logs_io *x = (struct logs_io *)io;
	rcds_list l = {0};
	sni_proc p;
	sni_proc_init(&p, x->urn);
	io->rc = rcds_get(cl, x->urn, &l, io->err, sizeof(io->err));
	for (size_t i = 0; io->rc == SNIPE_OK && i < l.count; i++)
		sni_proc_set(&p, l.items[i].attr, l.items[i].value, l.items[i].value_len,
		             l.items[i].version, l.items[i].author);
	rcds_list_free(&l);
	uint8_t id[SNIPE_KEYID_BYTES];
	char idhex[SNIPE_KEYID_HEX];
	snipe_keyid(x->requester, id);
	snipe_keyid_hex(id, idhex);
	x->allowed = io->rc == SNIPE_OK &&
	             ((p.has_owner && memcmp(p.owner, x->requester, SNIPE_PK_BYTES) == 0) ||
	              key_is_admin(cl, idhex));
	sni_proc_clear(&p);
}

static void logs_send(agent_io *io, rcds_client *cl)
{
	struct logs_io *x = (struct logs_io *)io;
	(void)cl;
	if (io->rc != SNIPE_OK) {
		agent_answer_code(x->c, io->rc, io->err);
	} else if (!x->allowed) {
		agent_answer_code(x->c, SNIPE_EDENIED, "only the process's owner or an admin may read its logs");
	} else {
		char path[4096];
		agent_log_path(x->c->a, x->urn, x->rq.stderr, path, sizeof(path));
		uint32_t max = x->rq.max == 0 ? LOGS_DEFAULT : x->rq.max < LOGS_MAX ? x->rq.max
		                                                                    : LOGS_MAX;
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) != 0) {
			agent_answer_code(x->c, SNIPE_ENOTFOUND, "no output captured on this host");
		} else {
			uint8_t *buf = malloc(max);
			ssize_t n = buf != NULL ? pread(fd, buf, max, (off_t)x->rq.offset) : -1;
			Snipe__AgentReply r = SNIPE__AGENT_REPLY__INIT;
			r.data = (ProtobufCBinaryData){n > 0 ? (size_t)n : 0, buf};
			r.size = (uint64_t)st.st_size;
			agent_answer(x->c, &r);
			free(buf);
		}
		if (fd >= 0)
			close(fd);
	}
	free(x);
}

static void do_logs(struct agent_call *c, const Snipe__LogsRequest *rq, const uint8_t *requester)
{
	snipe_urn u;
	struct logs_io *x = calloc(1, sizeof(*x));
	if (x == NULL) {
		agent_answer_code(c, SNIPE_ENOMEM, NULL);
		return;
	}
	if (snipe_urn_parse(rq->urn, &u, NULL, 0) != SNIPE_OK || u.kind != SNIPE_KIND_PROC) {
		free(x);
		agent_answer_code(c, SNIPE_EINVAL, "logs: not a process URN");
		return;
	}
	x->c = c;
	snprintf(x->urn, sizeof(x->urn), "%s", rq->urn);
	memcpy(x->requester, requester, SNIPE_PK_BYTES);
	x->rq = *rq;
	x->io.work = logs_check;
	x->io.done = logs_send;
	if (agent_io_queue(c->a, &x->io) != SNIPE_OK) {
		free(x);
		agent_answer_code(c, SNIPE_ENOMEM, NULL);
	}
}

/* ------------------------------------------------------------ message port */

/* A process's message port (msg.c), made on its first request. */
static void do_msg_port(struct agent_call *c, const agent_proc_ref *proc, const uint8_t *pk)
{
	char endpoint[300];
	int rc = agent_msg_attach(c->a, proc->urn, proc->epoch, pk, endpoint, sizeof(endpoint));
	Snipe__AgentReply r = SNIPE__AGENT_REPLY__INIT;
	r.code = rc;
	r.error = (char *)(rc != SNIPE_OK ? "no message port (see the agent's log)" : "");
	r.endpoint = rc == SNIPE_OK ? endpoint : "";
	agent_answer(c, &r);
}

/* ------------------------------------------------------------- requests */

static void handle(agent *a, const uint8_t *buf, size_t len, void *control, bool fetched);

/* An unknown signer's key, fetched from the catalog, then the request handled again. */
struct key_io {
	agent_io io;
	uint8_t id[SNIPE_KEYID_BYTES];
	uint8_t pk[SNIPE_PK_BYTES];
	uint8_t *msg;
	size_t len;
	void *control;
};

static void key_fetch(agent_io *io, rcds_client *cl)
{
	struct key_io *x = (struct key_io *)io;
	char idhex[SNIPE_KEYID_HEX], urn[SNIPE_URN_MAX];
	rcds_list l = {0};
	bool role = false, pk = false;
	snipe_keyid_hex(x->id, idhex);
	snprintf(urn, sizeof(urn), "urn:snipe:key:%s", idhex);
	io->rc = rcds_get(cl, urn, &l, io->err, sizeof(io->err));
	for (size_t i = 0; io->rc == SNIPE_OK && i < l.count; i++) {
		if (strcmp(l.items[i].attr, "role") == 0)
			role = true;
		else if (strcmp(l.items[i].attr, "pubkey") == 0)
			pk = snipe_pk_parse((const char *)l.items[i].value, x->pk) == SNIPE_OK;
	}
	rcds_list_free(&l);
	uint8_t id[SNIPE_KEYID_BYTES];
	snipe_keyid(x->pk, id);
	if (io->rc == SNIPE_OK && (!role || !pk || memcmp(id, x->id, sizeof(id)) != 0))
		io->rc = SNIPE_ENOTFOUND;
}

static void key_fetched(agent_io *io, rcds_client *cl)
{
	struct key_io *x = (struct key_io *)io;
	agent *a = io->a;
	(void)cl;
	if (io->rc == SNIPE_OK)
		snipe_keyring_add(a->keys, x->pk);
	handle(a, x->msg, x->len, x->control, true);
	free(x->msg);
	free(x);
}

/* buf, len: the whole frame, kept to be handled again; env, envlen: its envelope. */
static bool fetch_key(agent *a, const uint8_t *buf, size_t len, const uint8_t *env,
                      size_t envlen, void *control)
{
	struct key_io *x = calloc(1, sizeof(*x));
	if (x == NULL || snipe_env_peek_signer(env, envlen, x->id) != SNIPE_OK ||
	    (x->msg = malloc(len)) == NULL) {
		free(x);
		return false;
	}
	memcpy(x->msg, buf, len);
	x->len = len;
	x->control = control;
	x->io.work = key_fetch;
	x->io.done = key_fetched;
	if (agent_io_queue(a, &x->io) != SNIPE_OK) {
		free(x->msg);
		free(x);
		return false;
	}
	return true;
}

static void handle(agent *a, const uint8_t *buf, size_t len, void *control, bool fetched)
{
	snipe_env_msg m = {0};
	char err[256];
	if (atomic_load(&a->stopping)) {
		nn_freemsg(control);
		return;
	}
	/* the sealed request, and beside it the bulk of a BlocksPut (agent.proto) */
	Snipe__AgentFrame *frame = snipe__agent_frame__unpack(NULL, len, buf);
	const uint8_t *env = frame != NULL ? frame->envelope.data : NULL;
	size_t envlen = frame != NULL ? frame->envelope.len : 0;
	/* a process of this agent signs with its instance key; others with registered keys */
	uint8_t id[SNIPE_KEYID_BYTES];
	bool from_proc = snipe_env_peek_signer(env, envlen, id) == SNIPE_OK &&
	                 snipe_keyring_find(a->proc_keys, id) != NULL;
	snipe_keyring *ring = from_proc ? a->proc_keys : a->keys;
	int rc = snipe_env_open(from_proc ? a->proc_verifier : a->verifier, env, envlen,
	                        SNIPE_MSG_AGENT_REQUEST, &m, err, sizeof(err));
	if (frame == NULL)
		snprintf(err, sizeof(err), "not an agent frame (%zu bytes)", len);
	if (rc == SNIPE_EUNKNOWNSIGNER && !fetched &&
	    fetch_key(a, buf, len, env, envlen, control)) {
		snipe__agent_frame__free_unpacked(frame, NULL);
		return;
	}
	ProtobufCBinaryData none = {0, NULL};
	struct agent_call *c = call_new(a, control, &none);
	if (c == NULL) {
		nn_freemsg(control);
		snipe_env_msg_clear(&m);
		if (frame != NULL)
			snipe__agent_frame__free_unpacked(frame, NULL);
		return;
	}
	if (rc != SNIPE_OK) {
		snipe_log(SNIPE_LOG_WARN, "server", "request rejected code=%s reason=\"%s\"",
		          snipe_errname(rc), err);
		agent_answer_code(c, rc, err);
		if (frame != NULL)
			snipe__agent_frame__free_unpacked(frame, NULL);
		return;
	}
	const uint8_t *pk = snipe_keyring_find(ring, m.signer);
	uint8_t requester[SNIPE_PK_BYTES];
	memcpy(requester, pk, SNIPE_PK_BYTES);
	agent_proc_ref proc;
	if (from_proc && agent_inst_by_key(a, requester, &proc) != SNIPE_OK) {
		snipe_env_msg_clear(&m);
		agent_answer_code(c, SNIPE_EUNKNOWNSIGNER, "the process of this key has ended");
		snipe__agent_frame__free_unpacked(frame, NULL);
		return;
	}
	Snipe__AgentRequest *req = snipe__agent_request__unpack(NULL, m.body_len, m.body);
	snipe_env_msg_clear(&m);
	if (req == NULL) {
		agent_answer_code(c, SNIPE_EDECODE, "request does not decode");
		snipe__agent_frame__free_unpacked(frame, NULL);
		return;
	}
	c->idlen = req->id.len <= sizeof(c->id) ? req->id.len : 0;
	if (c->idlen > 0)
		memcpy(c->id, req->id.data, c->idlen);
	switch (req->op_case) {
	case SNIPE__AGENT_REQUEST__OP_RECONCILE:
	case SNIPE__AGENT_REQUEST__OP_LOGS:
		if (from_proc)
			agent_answer_code(c, SNIPE_EDENIED, "a process may not ask that of its agent");
		else if (req->op_case == SNIPE__AGENT_REQUEST__OP_RECONCILE)
			do_reconcile(c, req->reconcile);
		else
			do_logs(c, req->logs, requester);
		break;
	case SNIPE__AGENT_REQUEST__OP_CKPT_COMMIT:
	case SNIPE__AGENT_REQUEST__OP_CKPT_LOAD:
	case SNIPE__AGENT_REQUEST__OP_CKPT_DIR:
		if (!from_proc) {
			agent_answer_code(c, SNIPE_EDENIED, "only a process may checkpoint (itself)");
			break;
		}
		/* fall through */
	case SNIPE__AGENT_REQUEST__OP_BLOCKS_HAVE:
	case SNIPE__AGENT_REQUEST__OP_BLOCKS_PUT:
	case SNIPE__AGENT_REQUEST__OP_BLOCKS_GET:
		agent_ckpt_request(a, c, req, frame, from_proc ? &proc : NULL);
		return; /* req and frame are the request's now */
	case SNIPE__AGENT_REQUEST__OP_MSG_PORT:
		if (!from_proc)
			agent_answer_code(c, SNIPE_EDENIED, "only a process has a message port");
		else
			do_msg_port(c, &proc, requester);
		break;
	default:
		agent_answer_code(c, SNIPE_EINVAL, "request has no operation");
		break;
	}
	snipe__agent_request__free_unpacked(req, NULL);
	snipe__agent_frame__free_unpacked(frame, NULL);
}

static void take(void *arg, const uint8_t *buf, size_t len, void *control)
{
	handle(arg, buf, len, control, false);
}

static void on_readable(uv_poll_t *h, int status, int events)
{
	agent *a = h->data;
	(void)events;
	if (status >= 0)
		sni_rep_drain(a->sock, RECV_BURST, take, a);
}

static void forget_keys(uv_timer_t *t)
{
	agent *a = t->data;
	snipe_keyring_clear(a->keys);
}

int agent_server_start(agent *a, char *err, size_t errlen)
{
	int fd = -1;
	size_t fdlen = sizeof(fd);
	if (snipe_keyring_new(&a->keys) != SNIPE_OK ||
	    snipe_verifier_new(a->keys, SNIPE_SKEW_DEFAULT_MS, SNIPE_REPLAY_DEFAULT_CAP,
	                       &a->verifier) != SNIPE_OK ||
	    snipe_keyring_new(&a->proc_keys) != SNIPE_OK ||
	    snipe_verifier_new(a->proc_keys, SNIPE_SKEW_DEFAULT_MS, SNIPE_REPLAY_DEFAULT_CAP,
	                       &a->proc_verifier) != SNIPE_OK)
		return sni_err(err, errlen, SNIPE_ENOMEM, "out of memory");
	a->sock = nn_socket(AF_SP_RAW, NN_REP);
	int maxsize = 64 << 20; /* block batches are a few MiB */
	if (a->sock >= 0)
		nn_setsockopt(a->sock, NN_SOL_SOCKET, NN_RCVMAXSIZE, &maxsize, sizeof(maxsize));
	if (a->sock < 0 || nn_bind(a->sock, a->cfg->listen) < 0 ||
	    nn_getsockopt(a->sock, NN_SOL_SOCKET, NN_RCVFD, &fd, &fdlen) < 0)
		return sni_err(err, errlen, SNIPE_ECONFIG, "cannot listen on %s: %s", a->cfg->listen,
		               nn_strerror(nn_errno()));
	uv_poll_init(a->loop, &a->poll, fd);
	a->poll.data = a;
	uv_poll_start(&a->poll, UV_READABLE, on_readable);
	uv_timer_init(a->loop, &a->key_timer);
	a->key_timer.data = a;
	uv_timer_start(&a->key_timer, forget_keys, KEY_TTL_MS, KEY_TTL_MS);
	return SNIPE_OK;
}

void agent_server_close(agent *a)
{
	uv_close((uv_handle_t *)&a->poll, NULL);
	uv_close((uv_handle_t *)&a->key_timer, NULL);
	if (a->sock >= 0)
		nn_close(a->sock);
	a->sock = -1;
}

void agent_server_free(agent *a)
{
	snipe_verifier_free(a->verifier);
	snipe_keyring_free(a->keys);
	snipe_verifier_free(a->proc_verifier);
	snipe_keyring_free(a->proc_keys);
	a->verifier = a->proc_verifier = NULL;
	a->keys = a->proc_keys = NULL;
}
