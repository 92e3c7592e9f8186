/*
 * proc.c — spawn, kill, wait and logs: the client side of SNIPE's processes. The
 * catalog record is the request (written as the process's owner, so the catalog
 * decides who may); the host's agent is then told to look, over a signed AgentRequest,
 * so it acts at once instead of at its next heartbeat. Should the agent not answer,
 * the catalog still holds the request and the agent takes it when it can.
 */
#include <inttypes.h>
#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent.pb-c.h"
#include "rcds.h"
#include "sni.h"

#define AGENT_WAIT_MS 5000
#define POLL_MS 50

int snipe_restart_parse(const char *s, snipe_restart *out)
{
	static const char *const names[] = {"never", "on-failure", "always"};
	for (int i = 0; i < 3; i++) {
		if (s != NULL && strcmp(s, names[i]) == 0) {
			*out = (snipe_restart)i;
			return SNIPE_OK;
		}
	}
	return SNIPE_EINVAL;
}

static const char *restart_name(snipe_restart r)
{
	return r == SNIPE_RESTART_ALWAYS ? "always" : r == SNIPE_RESTART_ON_FAILURE ? "on-failure"
	                                                                            : "never";
}

/* ------------------------------------------------------------- records */

static void info_from(const sni_proc *p, snipe_proc_info *out)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->urn, sizeof(out->urn), "%s", p->urn);
	snprintf(out->host, sizeof(out->host), "%s", p->host);
	snprintf(out->state, sizeof(out->state), "%s", p->state);
	snprintf(out->reason, sizeof(out->reason), "%s", p->reason);
	snprintf(out->command, sizeof(out->command), "%s", p->command);
	out->epoch = p->epoch;
	out->pid = p->pid;
	out->exit_code = p->exit_code;
	out->has_exit = p->has_exit;
	out->restarts = p->restarts;
	out->started_ms = p->started_ms;
}

/* urn's record into *p (clear it with sni_proc_clear). SNIPE_ENOTFOUND if none. */
static int read_record(rcds_client *c, const char *urn, sni_proc *p, char *err, size_t errlen)
{
	rcds_list l = {0};
	sni_proc_init(p, urn);
	int rc = rcds_get(c, urn, &l, err, errlen);
	if (rc == SNIPE_ENOTFOUND)
		sni_err(err, errlen, rc, "%s: no such process", urn);
	for (size_t i = 0; rc == SNIPE_OK && i < l.count; i++)
		sni_proc_set(p, l.items[i].attr, l.items[i].value, l.items[i].value_len,
		             l.items[i].version, l.items[i].author);
	rcds_list_free(&l);
	if (rc == SNIPE_OK && p->state[0] == '\0')
		rc = sni_err(err, errlen, SNIPE_ENOTFOUND, "%s: not a process record", urn);
	return rc;
}

int snipe_proc_get(rcds_client *c, const char *urn, snipe_proc_info *out, char *err,
                   size_t errlen)
{
	sni_proc p;
	int rc = snipe_urn_validate(urn, err, errlen);
	if (rc == SNIPE_OK)
		rc = read_record(c, urn, &p, err, errlen);
	if (rc == SNIPE_OK)
		info_from(&p, out);
	sni_proc_clear(&p);
	return rc;
}

/* The agent endpoint of host (its host record's address). */
static int host_address(rcds_client *c, const char *host, char *address, size_t len,
                        char *err, size_t errlen)
{
	char urn[SNIPE_URN_MAX];
	rcds_list l = {0};
	snprintf(urn, sizeof(urn), SNI_HOST_PREFIX "%s", host);
	int rc = snipe_urn_validate(urn, err, errlen);
	if (rc == SNIPE_OK)
		rc = rcds_get(c, urn, &l, err, errlen);
	if (rc == SNIPE_ENOTFOUND) {
		/* a replica that lags may not know a host registered a moment ago: the leader
		 * has the last word */
		bool was = rcds_client_leader_reads(c);
		rcds_client_set_leader_reads(c, true);
		rc = was ? rc : rcds_get(c, urn, &l, err, errlen);
		rcds_client_set_leader_reads(c, was);
	}
	if (rc == SNIPE_ENOTFOUND)
		return sni_err(err, errlen, rc, "no host named '%s' in the catalog", host);
	address[0] = '\0';
	for (size_t i = 0; rc == SNIPE_OK && i < l.count; i++)
		if (strcmp(l.items[i].attr, "address") == 0)
			snprintf(address, len, "%s", (const char *)l.items[i].value);
	rcds_list_free(&l);
	if (rc == SNIPE_OK && address[0] == '\0')
		rc = sni_err(err, errlen, SNIPE_ENOTFOUND, "host '%s' has no agent address", host);
	return rc;
}

int sni_host_address(rcds_client *c, const char *host, char *address, size_t len)
{
	return host_address(c, host, address, len, NULL, 0);
}

/* ------------------------------------------------------------- agents */

int sni_agent_call(const snipe_key *key, const char *endpoint, Snipe__AgentRequest *req,
                   int wait_ms, Snipe__AgentReply **out, char *err, size_t errlen)
{
	return sni_agent_call_attached(key, endpoint, req, NULL, 0, wait_ms, out, err, errlen);
}

int sni_agent_call_attached(const snipe_key *key, const char *endpoint,
                            Snipe__AgentRequest *req, const uint8_t *attachment,
                            size_t attachment_len, int wait_ms, Snipe__AgentReply **out,
                            char *err, size_t errlen)
{
	uint8_t id[16], *body = NULL, *env = NULL, *frame = NULL;
	size_t envlen = 0, len = 0, framelen = 0;
	randombytes_buf(id, sizeof(id));
	req->id = (ProtobufCBinaryData){sizeof(id), id};
	len = snipe__agent_request__get_packed_size(req);
	body = malloc(len ? len : 1);
	if (body == NULL)
		return SNIPE_ENOMEM;
	snipe__agent_request__pack(req, body);
	int rc = snipe_env_seal(key, SNIPE_MSG_AGENT_REQUEST, body, len, &env, &envlen);
	free(body);
	if (rc != SNIPE_OK)
		return sni_err(err, errlen, rc, "cannot seal the request: %s", snipe_strerror(rc));
	Snipe__AgentFrame f = SNIPE__AGENT_FRAME__INIT;
	f.envelope = (ProtobufCBinaryData){envlen, env};
	f.attachment = (ProtobufCBinaryData){attachment_len, (uint8_t *)attachment};
	framelen = snipe__agent_frame__get_packed_size(&f);
	frame = malloc(framelen ? framelen : 1);
	if (frame == NULL) {
		free(env);
		return SNIPE_ENOMEM;
	}
	snipe__agent_frame__pack(&f, frame);
	free(env);
	env = frame;
	envlen = framelen;
	int s = nn_socket(AF_SP, NN_REQ);
	int linger = 0, resend = 600000;
	if (s < 0 || nn_connect(s, endpoint) < 0) {
		if (s >= 0)
			nn_close(s);
		free(env);
		return sni_err(err, errlen, SNIPE_EUNAVAIL, "cannot reach agent %s", endpoint);
	}
	int maxsize = 64 << 20; /* block replies are a few MiB; never -1 (see SNI_FRAME_MAX) */
	nn_setsockopt(s, NN_SOL_SOCKET, NN_RCVMAXSIZE, &maxsize, sizeof(maxsize));
	nn_setsockopt(s, NN_SOL_SOCKET, NN_LINGER, &linger, sizeof(linger));
	nn_setsockopt(s, NN_REQ, NN_REQ_RESEND_IVL, &resend, sizeof(resend));
	nn_setsockopt(s, NN_SOL_SOCKET, NN_SNDTIMEO, &wait_ms, sizeof(wait_ms));
	nn_setsockopt(s, NN_SOL_SOCKET, NN_RCVTIMEO, &wait_ms, sizeof(wait_ms));
	void *msg = NULL;
	int n = nn_send(s, env, envlen, 0) < 0 ? -1 : nn_recv(s, &msg, NN_MSG, 0);
	free(env);
	if (n < 0) {
		nn_close(s);
		return sni_err(err, errlen, SNIPE_ETIMEDOUT, "agent %s did not answer within %d ms",
		               endpoint, wait_ms);
	}
	*out = snipe__agent_reply__unpack(NULL, (size_t)n, msg);
	nn_freemsg(msg);
	nn_close(s);
	if (*out == NULL)
		return sni_err(err, errlen, SNIPE_EDECODE, "agent %s sent a malformed reply", endpoint);
	return SNIPE_OK;
}

static int agent_code(const Snipe__AgentReply *r, char *err, size_t errlen)
{
	if (r->code == SNIPE_OK)
		return SNIPE_OK;
	return sni_err(err, errlen, r->code, "%s", r->error[0] ? r->error : snipe_strerror(r->code));
}

/* Tells the agent at address to look at urn (as of index); its answer, if any, and
 * (if st is not NULL) the process's status as it answered (free it). */
static int nudge(rcds_client *c, const char *address, const char *urn, uint64_t index,
                 Snipe__ProcStatus **st, char *err, size_t errlen)
{
	Snipe__AgentRequest req = SNIPE__AGENT_REQUEST__INIT;
	Snipe__ReconcileRequest rq = SNIPE__RECONCILE_REQUEST__INIT;
	Snipe__AgentReply *r = NULL;
	rq.urn = (char *)urn;
	rq.min_index = index;
	req.op_case = SNIPE__AGENT_REQUEST__OP_RECONCILE;
	req.reconcile = &rq;
	int rc = sni_agent_call(sni_client_key(c), address, &req, AGENT_WAIT_MS, &r, err, errlen);
	if (rc == SNIPE_OK) {
		rc = agent_code(r, err, errlen);
		if (rc == SNIPE_OK && st != NULL && r->proc != NULL) {
			*st = r->proc;
			r->proc = NULL; /* ours now */
		}
		snipe__agent_reply__free_unpacked(r, NULL);
	}
	return rc;
}

static void pause_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* Polls urn until done(state) or the deadline (monotonic ms; 0: forever). */
static int poll_until(rcds_client *c, const char *urn, bool (*done)(const char *state),
                      uint64_t deadline, snipe_proc_info *out, char *err, size_t errlen)
{
	for (;;) {
		int rc = snipe_proc_get(c, urn, out, err, errlen);
		if (rc != SNIPE_OK || done(out->state))
			return rc;
		if (deadline != 0 && sni_mono_ms() >= deadline)
			return sni_err(err, errlen, SNIPE_ETIMEDOUT, "%s is still %s", urn, out->state);
		pause_ms(POLL_MS);
	}
}

static bool not_pending(const char *state)
{
	return strcmp(state, "pending") != 0;
}

static bool ended(const char *state)
{
	return !sni_proc_state_active(state);
}

/* --------------------------------------------------------------- spawn */

static int check_opts(const snipe_spawn_opts *o, char *err, size_t errlen)
{
	if (o->argc == 0 || o->argv == NULL || o->argv[0] == NULL || o->argv[0][0] == '\0')
		return sni_err(err, errlen, SNIPE_EINVAL, "spawn: no command given");
	for (size_t i = 0; i < o->nenv; i++)
		if (strchr(o->env[i], '=') == NULL || o->env[i][0] == '=')
			return sni_err(err, errlen, SNIPE_EINVAL, "spawn: env '%s' is not K=V", o->env[i]);
	for (size_t i = 0; i < o->nlabels; i++)
		if (strchr(o->labels[i], '=') == NULL || o->labels[i][0] == '=')
			return sni_err(err, errlen, SNIPE_EINVAL, "spawn: label '%s' is not k=v",
			               o->labels[i]);
	return SNIPE_OK;
}

/* A readable one-line form of argv, for `snipe ps`. */
static void command_line(const snipe_spawn_opts *o, char *buf, size_t len)
{
	size_t used = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < o->argc && used + 1 < len; i++) {
		bool quote = strpbrk(o->argv[i], " \t\"'") != NULL || o->argv[i][0] == '\0';
		int n = snprintf(buf + used, len - used, quote ? "%s'%s'" : "%s%s", i ? " " : "",
		                 o->argv[i]);
		used += n > 0 ? (size_t)n : 0;
	}
}

static int spec_bytes(const snipe_spawn_opts *o, uint8_t **out, size_t *len)
{
	Snipe__ProcSpec spec = SNIPE__PROC_SPEC__INIT;
	spec.argv = (char **)o->argv;
	spec.n_argv = o->argc;
	spec.env = (char **)o->env;
	spec.n_env = o->nenv;
	spec.cwd = (char *)(o->cwd != NULL ? o->cwd : "");
	spec.restart = (char *)restart_name(o->restart);
	spec.max_restarts = o->max_restarts;
	spec.labels = (char **)o->labels;
	spec.n_labels = o->nlabels;
	spec.ckpt_dir = (char *)(o->ckpt_dir != NULL ? o->ckpt_dir : "");
	*len = snipe__proc_spec__get_packed_size(&spec);
	*out = malloc(*len ? *len : 1);
	if (*out == NULL)
		return SNIPE_ENOMEM;
	snipe__proc_spec__pack(&spec, *out);
	return SNIPE_OK;
}

/* The record's writes: a new process (epoch 1), or a new run of an ended one. */
static int record_batch(const snipe_spawn_opts *o, const char *urn, const char *host,
                        const sni_proc *old, bool exists, rcds_batch *b)
{
	uint8_t *spec = NULL;
	size_t len = 0;
	char epoch[24], cmd[256];
	snprintf(epoch, sizeof(epoch), "%" PRIu64, exists ? old->epoch + 1 : 1);
	command_line(o, cmd, sizeof(cmd));
	int rc = spec_bytes(o, &spec, &len);
	if (rc == SNIPE_OK)
		rc = rcds_batch_put_if(b, urn, "epoch", epoch, strlen(epoch), 0,
		                       exists ? old->epoch_version : 0);
	if (rc == SNIPE_OK)
		rc = rcds_batch_put(b, urn, "spec", spec, len, 0);
	/* a new name needs only these (an absent attribute reads as zero or empty); a name
	 * run before also has the last run's attributes reset */
	const char *const attrs[][2] = {
		{"command", cmd}, {"host", host}, {"state", "pending"}, {"restarts", "0"},
		{"pid", "0"}, {"stop", "0"}, {"exit", ""}, {"reason", ""},
	};
	size_t n = exists ? sizeof(attrs) / sizeof(attrs[0]) : 3;
	for (size_t i = 0; rc == SNIPE_OK && i < n; i++)
		rc = rcds_batch_put_text(b, urn, attrs[i][0], attrs[i][1]);
	free(spec);
	return rc;
}

/* Writes the record: as a new name (compare-and-set on "absent", the common case, no
 * read first), else, if the name's last run has ended, as its next run. */
static int write_record(rcds_client *c, const snipe_spawn_opts *o, const char *urn,
                        const char *host, uint64_t *index, char *err, size_t errlen)
{
	sni_proc old;
	sni_proc_init(&old, urn);
	int rc = SNIPE_ECONFLICT;
	/* the name exists if "absent" fails: on its version, or on its epoch (ran before) */
	for (int attempt = 0; attempt < 2 && (rc == SNIPE_ECONFLICT || rc == SNIPE_ESTALE);
	     attempt++) {
		rcds_batch *b = NULL;
		bool exists = attempt > 0;
		if (exists) {
			sni_proc_clear(&old);
			rc = read_record(c, urn, &old, err, errlen);
			if (rc == SNIPE_OK && sni_proc_state_active(old.state))
				rc = sni_err(err, errlen, SNIPE_EEXIST, "%s is already %s on host %s", urn,
				             old.state, old.host);
			if (rc != SNIPE_OK)
				break;
		}
		rc = rcds_batch_new(&b);
		if (rc == SNIPE_OK)
			rc = record_batch(o, urn, host, &old, exists, b);
		if (rc == SNIPE_OK)
			rc = rcds_write(c, b, index, err, errlen);
		rcds_batch_free(b);
	}
	sni_proc_clear(&old);
	if (rc == SNIPE_ECONFLICT || rc == SNIPE_ESTALE)
		rc = sni_err(err, errlen, SNIPE_EEXIST, "%s was spawned by someone else meanwhile",
		             urn);
	return rc;
}

int snipe_spawn(rcds_client *c, const snipe_spawn_opts *o, snipe_proc_info *out, char *err,
                size_t errlen)
{
	char urn[SNIPE_URN_MAX], host[SNIPE_URN_NAME_MAX + 1], address[256];
	snipe_urn u;
	uint64_t index = 0;
	int rc = check_opts(o, err, errlen);
	if (rc != SNIPE_OK)
		return rc;
	rc = o->name != NULL ? snipe_urn_make(SNIPE_KIND_PROC, o->name, &u, err, errlen)
	                     : snipe_urn_generate(SNIPE_KIND_PROC, &u);
	if (rc != SNIPE_OK)
		return rc;
	snipe_urn_format(&u, urn, sizeof(urn));
	if (o->host != NULL) {
		snprintf(host, sizeof(host), "%s", o->host);
		rc = host_address(c, host, address, sizeof(address), err, errlen);
	} else {
		rc = rcds_place(c, o->labels, o->nlabels, NULL, host, sizeof(host), address,
		                sizeof(address), err, errlen);
		if (rc == SNIPE_ENOTFOUND)
			sni_err(err, errlen, rc, "no live host fits%s", o->nlabels ? " these labels" : "");
	}
	if (rc == SNIPE_OK)
		rc = write_record(c, o, urn, host, &index, err, errlen);
	if (rc != SNIPE_OK)
		return rc;
	Snipe__ProcStatus *st = NULL;
	rc = nudge(c, address, urn, index, &st, err, errlen);
	if (rc == SNIPE_OK && st != NULL && strcmp(st->state, "pending") != 0) {
		/* the agent's answer says how it went: no need to read the record again */
		memset(out, 0, sizeof(*out));
		snprintf(out->urn, sizeof(out->urn), "%s", urn);
		snprintf(out->host, sizeof(out->host), "%s", host);
		snprintf(out->state, sizeof(out->state), "%s", st->state);
		command_line(o, out->command, sizeof(out->command));
		out->epoch = st->epoch;
		out->pid = st->pid;
		out->restarts = st->restarts;
		out->started_ms = snipe_now_ms();
		rcds_client_see_index(c, st->index);
		snipe__proc_status__free_unpacked(st, NULL);
		return SNIPE_OK;
	}
	if (st != NULL)
		snipe__proc_status__free_unpacked(st, NULL);
	if (rc == SNIPE_ETIMEDOUT || rc == SNIPE_EUNAVAIL || rc == SNIPE_EFENCED)
		rc = SNIPE_OK; /* the agent takes it from the catalog when it can: wait for it */
	if (rc != SNIPE_OK)
		return rc;
	return poll_until(c, urn, not_pending, sni_mono_ms() + AGENT_WAIT_MS, out, err, errlen);
}

/* ------------------------------------------------------------ kill, wait */

int snipe_kill(rcds_client *c, const char *urn, char *err, size_t errlen)
{
	sni_proc p;
	char address[256];
	uint64_t index = 0;
	rcds_batch *b = NULL;
	int rc = snipe_urn_validate(urn, err, errlen);
	if (rc == SNIPE_OK)
		rc = read_record(c, urn, &p, err, errlen);
	if (rc == SNIPE_OK && !sni_proc_state_active(p.state))
		rc = sni_err(err, errlen, SNIPE_EINVAL, "%s is not running (%s)", urn, p.state);
	if (rc == SNIPE_OK)
		rc = rcds_batch_new(&b);
	if (rc == SNIPE_OK)
		rc = rcds_batch_put(b, urn, "stop", "1", 1, 0);
	if (rc == SNIPE_OK)
		rc = rcds_write(c, b, &index, err, errlen);
	rcds_batch_free(b);
	if (rc == SNIPE_OK && p.host[0] != '\0' &&
	    host_address(c, p.host, address, sizeof(address), NULL, 0) == SNIPE_OK)
		nudge(c, address, urn, index, NULL, NULL, 0); /* the wait below tells the outcome */
	sni_proc_clear(&p);
	if (rc != SNIPE_OK)
		return rc;
	snipe_proc_info info;
	return poll_until(c, urn, ended, sni_mono_ms() + AGENT_WAIT_MS, &info, err, errlen);
}

int snipe_wait(rcds_client *c, const char *urn, int timeout_ms, snipe_proc_info *out,
               char *err, size_t errlen)
{
	uint64_t deadline = timeout_ms < 0 ? 0 : sni_mono_ms() + (uint64_t)timeout_ms + 1;
	return poll_until(c, urn, ended, deadline, out, err, errlen);
}

/* ----------------------------------------------------------------- logs */

int snipe_proc_logs(rcds_client *c, const char *urn, bool stderr_stream, uint64_t offset,
                    uint32_t max, uint8_t **data, size_t *len, uint64_t *size, char *err,
                    size_t errlen)
{
	sni_proc p;
	char address[256];
	*data = NULL;
	*len = 0;
	int rc = snipe_urn_validate(urn, err, errlen);
	if (rc == SNIPE_OK)
		rc = read_record(c, urn, &p, err, errlen);
	if (rc == SNIPE_OK && p.host[0] == '\0')
		rc = sni_err(err, errlen, SNIPE_ENOTFOUND, "%s has no host", urn);
	if (rc == SNIPE_OK)
		rc = host_address(c, p.host, address, sizeof(address), err, errlen);
	sni_proc_clear(&p);
	if (rc != SNIPE_OK)
		return rc;
	Snipe__AgentRequest req = SNIPE__AGENT_REQUEST__INIT;
	Snipe__LogsRequest lr = SNIPE__LOGS_REQUEST__INIT;
	Snipe__AgentReply *r = NULL;
	lr.urn = (char *)urn;
	lr.stderr = stderr_stream;
	lr.offset = offset;
	lr.max = max;
	req.op_case = SNIPE__AGENT_REQUEST__OP_LOGS;
	req.logs = &lr;
	rc = sni_agent_call(sni_client_key(c), address, &req, AGENT_WAIT_MS, &r, err, errlen);
	if (rc != SNIPE_OK)
		return rc;
	rc = agent_code(r, err, errlen);
	if (rc == SNIPE_OK) {
		*data = malloc(r->data.len ? r->data.len : 1);
		if (*data == NULL)
			rc = SNIPE_ENOMEM;
		else if (r->data.len > 0)
			memcpy(*data, r->data.data, r->data.len);
		*len = r->data.len;
		*size = r->size;
	}
	snipe__agent_reply__free_unpacked(r, NULL);
	return rc;
}

/* ----------------------------------------------------------------- list */

int snipe_proc_list(rcds_client *c, snipe_proc_info **out, size_t *n, char *err,
                    size_t errlen)
{
	rcds_list l = {0};
	*out = NULL;
	*n = 0;
	int rc = rcds_query(c, SNI_PROC_PREFIX, NULL, 0, &l, err, errlen);
	size_t cap = 0;
	sni_proc p;
	bool open = false;
	for (size_t i = 0; rc == SNIPE_OK && i <= l.count; i++) {
		bool boundary = i == l.count || !open || strcmp(l.items[i].urn, p.urn) != 0;
		if (boundary && open) {
			if (p.state[0] != '\0') {
				if (*n == cap) {
					cap = cap ? 2 * cap : 16;
					snipe_proc_info *grown = realloc(*out, cap * sizeof(*grown));
					if (grown == NULL) {
						rc = SNIPE_ENOMEM;
						break;
					}
					*out = grown;
				}
				info_from(&p, &(*out)[(*n)++]);
			}
			sni_proc_clear(&p);
			open = false;
		}
		if (i == l.count)
			break;
		if (!open) {
			sni_proc_init(&p, l.items[i].urn);
			open = true;
		}
		sni_proc_set(&p, l.items[i].attr, l.items[i].value, l.items[i].value_len,
		             l.items[i].version, l.items[i].author);
	}
	if (open)
		sni_proc_clear(&p);
	rcds_list_free(&l);
	if (rc != SNIPE_OK) {
		free(*out);
		*out = NULL;
		*n = 0;
	}
	return rc;
}
