/*
 * msgtest.c — processes, sockets and a fake host for the message tests (see
 * msgtest.h). It checks what it needs to go on (a spawn that starts, a welcome signed by
 * the agent); what the agents do with the frames is the tests' to check.
 */
#include "msgtest.h"

#include <nanomsg/nn.h>
#include <nanomsg/pipeline.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "testutil.h"

#define WAIT_MS 10000
#define SEND_MS 5000
#define HELLO_AGAIN_MS 1000
#define LOG_LINES 40

/* ---------------------------------------------------------------- processes */

void tm_prog_make(struct tm_prog *p, const tc_cluster *c, const char *name,
                  const char *const *args)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "%s", name);
	snprintf(p->urn, sizeof(p->urn), "urn:snipe:proc:%s", name);
	snprintf(p->out, sizeof(p->out), "%s/%s.out", tc_cluster_dir(c), name);
	for (size_t i = 0; args[i] != NULL; i++) {
		ck_assert_uint_lt(i, TM_PROG_ARGS);
		const char *arg = strcmp(args[i], "OUT") == 0 ? p->out : args[i];
		snprintf(p->args[i], sizeof(p->args[i]), "%s", arg);
		p->argv[p->argc++] = p->args[i];
	}
}

void tm_prog_spawn(tc_cluster *c, rcds_client *cl, const struct tm_prog *p, const char *host,
                   snipe_restart policy, snipe_proc_info *info)
{
	snipe_spawn_opts o = {.name = p->name, .host = host, .restart = policy, .argv = p->argv,
	                      .argc = p->argc};
	char err[256] = "";
	int rc = snipe_spawn(cl, &o, info, err, sizeof(err));
	if (rc != SNIPE_OK)
		tc_cluster_dump_logs(c, LOG_LINES);
	ck_assert_msg(rc == SNIPE_OK, "spawn %s: %s (%s)", p->name, snipe_errname(rc), err);
	ck_assert_str_eq(info->urn, p->urn);
	ck_assert_str_eq(info->host, host);
}

void tm_prog_wait_ok(tc_cluster *c, rcds_client *cl, const struct tm_prog *p, int timeout_ms,
                     snipe_proc_info *out)
{
	tc_wait_ended(c, cl, p->urn, timeout_ms, out);
	if (strcmp(out->state, "exited") != 0 || out->exit_code != 0) {
		char *text = tu_slurp(p->out, NULL);
		fprintf(stderr, "--- %s ---\n%s", p->out, text != NULL ? text : "(none)\n");
		free(text);
		tc_cluster_dump_logs(c, LOG_LINES);
	}
	ck_assert_str_eq(out->state, "exited");
	ck_assert_int_eq(out->exit_code, 0);
}

/* ------------------------------------------------------------------ frames */

void tm_frame_free(struct tm_frame *f)
{
	free(f->buf);
	f->buf = NULL;
	f->len = 0;
}

struct tm_frame tm_pack(const ProtobufCMessage *m)
{
	struct tm_frame f;
	f.len = protobuf_c_message_get_packed_size(m);
	f.buf = malloc(f.len > 0 ? f.len : 1);
	ck_assert_ptr_nonnull(f.buf);
	ck_assert_uint_eq(protobuf_c_message_pack(m, f.buf), f.len);
	return f;
}

int tm_connect(int proto, const char *endpoint)
{
	int s = nn_socket(AF_SP, proto), ms = SEND_MS, max = -1;
	ck_assert_int_ge(s, 0);
	ck_assert_int_eq(nn_setsockopt(s, NN_SOL_SOCKET, NN_SNDTIMEO, &ms, sizeof(ms)), 0);
	ck_assert_int_eq(nn_setsockopt(s, NN_SOL_SOCKET, NN_RCVMAXSIZE, &max, sizeof(max)), 0);
	ck_assert_msg(nn_connect(s, endpoint) >= 0, "connect %s: %s", endpoint,
	              nn_strerror(nn_errno()));
	return s;
}

void tm_send(int s, const void *buf, size_t len)
{
	int n = nn_send(s, len > 0 ? buf : (const void *)"", len, 0);
	ck_assert_msg(n == (int)len, "send %zu bytes: %s", len, nn_strerror(nn_errno()));
}

Snipe__ChanFrame *tm_next_frame(int s, int timeout_ms)
{
	uint64_t deadline = tu_mono_ms() + (uint64_t)timeout_ms;
	for (uint64_t now = tu_mono_ms(); now < deadline; now = tu_mono_ms()) {
		int ms = (int)(deadline - now);
		ck_assert_int_eq(nn_setsockopt(s, NN_SOL_SOCKET, NN_RCVTIMEO, &ms, sizeof(ms)), 0);
		void *buf = NULL;
		int n = nn_recv(s, &buf, NN_MSG, 0);
		if (n < 0)
			break;
		Snipe__ChanFrame *f = snipe__chan_frame__unpack(NULL, (size_t)n, buf);
		nn_freemsg(buf);
		if (f != NULL)
			return f;
	}
	return NULL;
}

Snipe__ChanFrame *tm_next_welcome(int s, int timeout_ms)
{
	uint64_t deadline = tu_mono_ms() + (uint64_t)timeout_ms;
	for (uint64_t now = tu_mono_ms(); now < deadline; now = tu_mono_ms()) {
		Snipe__ChanFrame *f = tm_next_frame(s, (int)(deadline - now));
		if (f == NULL || f->welcome.len > 0)
			return f;
		snipe__chan_frame__free_unpacked(f, NULL);
	}
	return NULL;
}

/* --------------------------------------------------------------- fake host */

void tm_host_pubkey(rcds_client *cl, const char *name, uint8_t pk[SNIPE_PK_BYTES])
{
	char urn[SNIPE_URN_MAX], err[256] = "";
	rcds_list l = {0};
	snprintf(urn, sizeof(urn), "urn:snipe:host:%s", name);
	int rc = rcds_get(cl, urn, &l, err, sizeof(err));
	ck_assert_msg(rc == SNIPE_OK, "get %s: %s (%s)", urn, snipe_errname(rc), err);
	bool found = false;
	for (size_t i = 0; i < l.count; i++)
		if (strcmp(l.items[i].attr, "pubkey") == 0) {
			const char *hex = (const char *)l.items[i].value;
			tu_assert_code(snipe_pk_parse(hex, pk), SNIPE_OK);
			found = true;
		}
	rcds_list_free(&l);
	ck_assert_msg(found, "%s has no pubkey", urn);
}

void tm_fake_host_start(tc_cluster *c, rcds_client *cl, int i, const char *agent,
                        struct tm_fake_host *m)
{
	char pk[SNIPE_PK_HEX], err[256] = "";
	ck_assert_int_eq(snipe_key_generate(&m->key), SNIPE_OK);
	snprintf(m->endpoint, sizeof(m->endpoint), "tcp://127.0.0.1:%d", tc_cluster_port(c));
	m->pull = nn_socket(AF_SP, NN_PULL);
	ck_assert_int_ge(m->pull, 0);
	ck_assert_msg(nn_bind(m->pull, m->endpoint) >= 0, "bind %s: %s", m->endpoint,
	              nn_strerror(nn_errno()));
	m->push = tm_connect(NN_PUSH, tc_agent_msg_endpoint(c, i));
	tm_host_pubkey(cl, agent, m->agent_pk);

	rcds_batch *b = NULL;
	uint64_t index = 0;
	snipe_pk_hex(snipe_key_public(m->key), pk);
	ck_assert_int_eq(rcds_batch_new(&b), SNIPE_OK);
	ck_assert_int_eq(rcds_batch_put_key(b, snipe_key_public(m->key), "host", TM_FAKE_HOST),
	                 SNIPE_OK);
	ck_assert_int_eq(rcds_batch_put_text(b, "urn:snipe:host:" TM_FAKE_HOST, "pubkey", pk),
	                 SNIPE_OK);
	ck_assert_int_eq(rcds_batch_put_text(b, "urn:snipe:host:" TM_FAKE_HOST, "msg_address",
	                                     m->endpoint), SNIPE_OK);
	int rc = rcds_write(cl, b, &index, err, sizeof(err));
	rcds_batch_free(b);
	ck_assert_msg(rc == SNIPE_OK, "register %s: %s (%s)", TM_FAKE_HOST, snipe_errname(rc),
	              err);
	tu_assert_code(tc_cluster_wait_all_applied(c, index, WAIT_MS), SNIPE_OK);
}

void tm_fake_host_stop(struct tm_fake_host *m)
{
	nn_close(m->push);
	nn_close(m->pull);
	snipe_key_free(m->key);
}

/* The ChanHello of a welcome, checked: signed by the agent's key (in v's keyring). */
static Snipe__ChanHello *welcome_open(snipe_verifier *v, const Snipe__ChanFrame *f)
{
	snipe_env_msg env = {0};
	char err[256] = "";
	int rc = snipe_env_open(v, f->welcome.data, f->welcome.len, SNIPE_MSG_CHAN_HELLO, &env, err,
	                        sizeof(err));
	ck_assert_msg(rc == SNIPE_OK, "welcome: %s (%s)", snipe_errname(rc), err);
	Snipe__ChanHello *w = snipe__chan_hello__unpack(NULL, env.body_len, env.body);
	ck_assert_ptr_nonnull(w);
	snipe_env_msg_clear(&env);
	return w;
}

/* Waits at most HELLO_AGAIN_MS for the agent's welcome answering opener h; if it comes,
 * completes ch and keeps the welcome in *welcome (may be NULL). */
static bool await_welcome(struct tm_fake_host *m, snipe_verifier *v, const char *agent,
                          sni_chan_opener *h, sni_chan *ch, struct tm_frame *welcome)
{
	uint64_t until = tu_mono_ms() + HELLO_AGAIN_MS;
	bool open = false;
	for (uint64_t now = tu_mono_ms(); !open && now < until; now = tu_mono_ms()) {
		Snipe__ChanFrame *f = tm_next_welcome(m->pull, (int)(until - now));
		if (f == NULL)
			break;
		Snipe__ChanHello *w = welcome_open(v, f);
		if (w->nonce.len == sizeof(h->nonce) &&
		    memcmp(w->nonce.data, h->nonce, sizeof(h->nonce)) == 0) {
			ck_assert_str_eq(w->from, agent);
			ck_assert_str_eq(w->to, TM_FAKE_HOST);
			ck_assert_int_eq(w->code, 0);
			tu_assert_code(sni_chan_complete(h, w, ch), SNIPE_OK);
			if (welcome != NULL)
				*welcome = tm_pack(&f->base);
			open = true;
		} /* else: the answer to an earlier hello */
		snipe__chan_hello__free_unpacked(w, NULL);
		snipe__chan_frame__free_unpacked(f, NULL);
	}
	return open;
}

void tm_fake_host_open(tc_cluster *c, struct tm_fake_host *m, const char *agent, sni_chan *ch,
                       struct tm_frame *hello, struct tm_frame *welcome)
{
	snipe_keyring *kr = NULL;
	snipe_verifier *v = NULL;
	ck_assert_int_eq(snipe_keyring_new(&kr), SNIPE_OK);
	ck_assert_int_eq(snipe_keyring_add(kr, m->agent_pk), SNIPE_OK);
	ck_assert_int_eq(snipe_verifier_new(kr, SNIPE_SKEW_DEFAULT_MS, SNIPE_REPLAY_DEFAULT_CAP,
	                                    &v), SNIPE_OK);
	uint64_t deadline = tu_mono_ms() + WAIT_MS;
	bool open = false;
	int hellos = 0;
	while (!open && tu_mono_ms() < deadline) {
		sni_chan_opener h;
		struct tm_frame sent = {NULL, 0};
		tu_assert_code(sni_chan_hello(m->key, TM_FAKE_HOST, agent, &h, &sent.buf,
		                              &sent.len), SNIPE_OK);
		tm_send(m->push, sent.buf, sent.len);
		hellos++;
		open = await_welcome(m, v, agent, &h, ch, welcome);
		if (open && hello != NULL)
			*hello = sent;
		else
			tm_frame_free(&sent);
		sodium_memzero(&h, sizeof(h));
	}
	if (!open)
		tc_cluster_dump_logs(c, LOG_LINES);
	ck_assert_msg(open, "agent %s did not welcome a registered host (%d hellos)", agent,
	              hellos);
	if (hellos > 1)
		fprintf(stderr, "fake host: agent %s welcomed hello number %d\n", agent, hellos);
	snipe_verifier_free(v);
	snipe_keyring_free(kr);
}
