/*
 * msgtest.h — what the message tests (test_msg.c, test_msg_fuzz.c) share on top of
 * cluster.h: processes they spawn on a cluster's agents and wait for, nanomsg sockets
 * to an agent's endpoints, and a fake host the test plays itself (registered in the
 * catalog as TM_FAKE_HOST, listening at its msg_address) that opens a channel with an
 * agent. Not part of libsnipe.
 *
 * Every call that cannot do its job aborts the running test, after printing the tail
 * of each replica's and agent's log where they may tell why.
 */
#ifndef SNIPE_TEST_MSGTEST_H
#define SNIPE_TEST_MSGTEST_H

#include <stddef.h>
#include <stdint.h>

#include "cluster.h"
#include "rcds.h"
#include "sni.h" /* sni_chan_*, msg.proto */
#include "snipe.h"

#define TM_FAKE_HOST "mallory"
#define TM_FAKE_PROC "urn:snipe:proc:" TM_FAKE_HOST "-proc"
#define TM_PROG_ARGS 10

/* ---------------------------------------------------------------- processes */

/* A process to spawn: its name, URN (urn:snipe:proc:NAME), output file (DIR/NAME.out)
 * and command line, pointing into the struct. */
struct tm_prog {
	char name[64];
	char urn[SNIPE_URN_MAX];
	char out[4096];
	char args[TM_PROG_ARGS][4096];
	const char *argv[TM_PROG_ARGS];
	size_t argc;
};

/* args (NULL-terminated, at most TM_PROG_ARGS) as the command of process name; an
 * argument "OUT" stands for p->out. */
void tm_prog_make(struct tm_prog *p, const tc_cluster *c, const char *name,
                  const char *const *args);
/* Spawns p on host with policy; it must start there. Its record into info. */
void tm_prog_spawn(tc_cluster *c, rcds_client *cl, const struct tm_prog *p, const char *host,
                   snipe_restart policy, snipe_proc_info *info);
/* Waits at most timeout_ms until p has ended, which must be exit 0 (otherwise its
 * output is printed); its last record into out. */
void tm_prog_wait_ok(tc_cluster *c, rcds_client *cl, const struct tm_prog *p, int timeout_ms,
                     snipe_proc_info *out);

/* ------------------------------------------------------------------ frames */

/* A frame's bytes (malloc'd) and length. */
struct tm_frame {
	uint8_t *buf;
	size_t len;
};

/* Frees f's bytes and empties it; an empty frame is a no-op. */
void tm_frame_free(struct tm_frame *f);
/* m packed (a ChanFrame, a ChanBody: &msg.base) into a new frame. */
struct tm_frame tm_pack(const ProtobufCMessage *m);

/* An nn socket of type proto connected to endpoint that takes frames of any size, with
 * a send timeout of 5 s: a send that does not go through by then (an agent that stopped
 * reading) fails the test. Close with nn_close. */
int tm_connect(int proto, const char *endpoint);
/* Sends len bytes (len may be 0) on s; all must go. */
void tm_send(int s, const void *buf, size_t len);
/* The next frame on s within timeout_ms that is a ChanFrame (other bytes are skipped),
 * or NULL. Free with snipe__chan_frame__free_unpacked. */
Snipe__ChanFrame *tm_next_frame(int s, int timeout_ms);
/* The next ChanFrame on s carrying a welcome within timeout_ms (others are skipped), or
 * NULL. Free with snipe__chan_frame__free_unpacked. */
Snipe__ChanFrame *tm_next_welcome(int s, int timeout_ms);

/* --------------------------------------------------------------- fake host */

/* A key registered with role host for TM_FAKE_HOST, its host record (pubkey,
 * msg_address = endpoint), the PULL socket at that address where agents answer, a PUSH
 * socket to the agent under attack, and that agent's public key. */
struct tm_fake_host {
	snipe_key *key;
	char endpoint[64];
	int pull, push;
	uint8_t agent_pk[SNIPE_PK_BYTES];
};

/* The public key the catalog records for host name. */
void tm_host_pubkey(rcds_client *cl, const char *name, uint8_t pk[SNIPE_PK_BYTES]);
/* Registers m as the admin (cl) and waits until every replica has it; listens at its
 * msg_address and connects to agent i (host name agent)'s message endpoint. */
void tm_fake_host_start(tc_cluster *c, rcds_client *cl, int i, const char *agent,
                        struct tm_fake_host *m);
void tm_fake_host_stop(struct tm_fake_host *m);

/*
 * Opens channel ch with agent `agent` as m: a hello, and a welcome signed by the
 * agent's key, from it to TM_FAKE_HOST, answering that hello. As an agent does
 * (agents/peer.c), a hello unanswered for a second is sent again, fresh: the transport
 * may lose frames. The hello that opened it and the welcome frame (repacked) into
 * *hello and *welcome (each may be NULL; free with tm_frame_free).
 */
void tm_fake_host_open(tc_cluster *c, struct tm_fake_host *m, const char *agent, sni_chan *ch,
                       struct tm_frame *hello, struct tm_frame *welcome);

#endif
