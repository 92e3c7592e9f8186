/*
 * msg.h — the agent's part in messages by URN (msg.proto, docs/messages.md): the
 * channels to its processes and the routing of their messages (msg.c), and the
 * channels to other agents (peer.c). Everything runs on the agent's loop.
 */
#ifndef AGENT_MSG_H
#define AGENT_MSG_H

#include "agent.h"
#include "sni.h"

/* Logs dropped input (forged, replayed, malformed): at most 20 lines a second per
 * limiter, whatever a peer or a process sends. */
#define msg_drop(limiter, ...) \
	sni_log_limited((limiter), 20, SNIPE_LOG_WARN, "msg", __VA_ARGS__)

/* --------------------------------------------------------------- msg.c */

/* Binds the message endpoint and starts the timers. */
int agent_msg_start(agent *a, char *err, size_t errlen);
/* Closes every socket and handle (the loop then ends). */
void agent_msg_close(agent *a);
/* Frees what is left once the loop has ended. */
void agent_msg_free(agent *a);

/* The message port of the running process urn at epoch, whose instance key is key_pk
 * (made on its first request, the same one after): its ipc endpoint into endpoint. */
int agent_msg_attach(agent *a, const char *urn, uint64_t epoch, const uint8_t *key_pk,
                     char *endpoint, size_t len);
/* The process ended: its channel goes. */
void agent_msg_detach(agent *a, const char *urn);

/* What a peer agent (host) sent in a channel: messages to deliver here, the
 * acknowledgements of receivers for senders here, bounces. Borrowed for the call. */
void msg_from_peer(agent *a, const char *host, const Snipe__ChanBody *body);

/* -------------------------------------------------------------- peer.c */

typedef struct peers peers;
int peers_new(agent *a, peers **out);
void peers_free(peers *p);
/* A frame that arrived on the message endpoint (hello, welcome or sealed). */
void peers_receive(peers *p, const uint8_t *buf, size_t len);
/* Sends body to host's agent: SNIPE_OK (handed to nanomsg; it may still be lost),
 * SNIPE_EAGAIN while the channel is being opened (it is then, in the background). */
int peers_send(peers *p, const char *host, const Snipe__ChanBody *body);
/* Nothing came back from host for a while: look it up and open a new channel. */
void peers_reset(peers *p, const char *host);
/* Periodic: hellos not answered are sent again. */
void peers_tick(peers *p);

#endif
