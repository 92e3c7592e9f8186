/*
 * rep.c — the serving side of a nanomsg raw REP socket, as the catalog replicas and
 * the agents use it: requests are taken without waiting, each with the routing header
 * its reply must travel back along, and answered later, in any order.
 */
#include <nanomsg/nn.h>
#include <stdlib.h>

#include "sni.h"

void sni_rep_drain(int sock, int burst, sni_rep_fn fn, void *arg)
{
	for (int i = 0; i < burst; i++) {
		void *body = NULL, *control = NULL;
		struct nn_iovec iov = {.iov_base = &body, .iov_len = NN_MSG};
		struct nn_msghdr hdr = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
		                        .msg_controllen = NN_MSG};
		int n = nn_recvmsg(sock, &hdr, NN_DONTWAIT);
		if (n < 0)
			break;
		fn(arg, body, (size_t)n, control);
		nn_freemsg(body);
	}
}

void sni_rep_reply(int sock, void *control, const ProtobufCMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf = malloc(len ? len : 1);
	if (buf != NULL) {
		protobuf_c_message_pack(msg, buf);
		struct nn_iovec iov = {.iov_base = buf, .iov_len = len};
		struct nn_msghdr hdr = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
		                        .msg_controllen = NN_MSG};
		if (nn_sendmsg(sock, &hdr, NN_DONTWAIT) >= 0)
			control = NULL;
		else
			snipe_log(SNIPE_LOG_DEBUG, "rep", "reply dropped (client gone) error=%s",
			          nn_strerror(nn_errno()));
	}
	if (control != NULL)
		nn_freemsg(control);
	free(buf);
}
