/*
 * watch.c — following the catalog's changes (rcds.h, "watch"): a nanomsg SUB socket
 * connected to every replica's watch endpoint, filtered by URN prefix, delivering each
 * change once and in log order. Not a replacement for reads: delivery is best effort.
 */
#include <nanomsg/nn.h>
#include <nanomsg/pubsub.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "catalog.pb-c.h"
#include "rcds.h"
#include "sni.h"

const char RCDS_WATCH_NONE[] = "";

struct rcds_watch {
	int sock;
	/* The last change delivered: every replica publishes the same log in order, so
	 * anything at or before it is a copy from a replica that is behind. */
	uint64_t index;
	uint32_t item;
	bool any;
};

/* Connects to the watch endpoint of each replica that answers; returns how many.
 * *applied is the highest index any of them had applied: changes up to it happened
 * before the watch. */
static int connect_all(rcds_client *c, int sock, const char *endpoints, uint64_t *applied)
{
	char *list = strdup(endpoints), *save = NULL;
	int n = 0;
	for (char *ep = list != NULL ? strtok_r(list, ",", &save) : NULL; ep != NULL;
	     ep = strtok_r(NULL, ",", &save)) {
		rcds_status st;
		if (rcds_status_get(c, ep, &st, NULL, 0) != SNIPE_OK)
			continue;
		if (st.applied_index > *applied)
			*applied = st.applied_index;
		if (st.watch_endpoint[0] != '\0' && nn_connect(sock, st.watch_endpoint) >= 0)
			n++;
	}
	free(list);
	return n;
}

/* The topic of a change is its URN and a NUL: a subscription to that exact topic takes
 * the changes of one URN, and nothing else. */
int rcds_watch_add(rcds_watch *w, const char *urn)
{
	if (nn_setsockopt(w->sock, NN_SUB, NN_SUB_SUBSCRIBE, urn, strlen(urn) + 1) < 0)
		return SNIPE_EIO;
	return SNIPE_OK;
}

int rcds_watch_open(rcds_client *c, const char *prefix, rcds_watch **out, char *err,
                    size_t errlen)
{
	const char *endpoints = sni_client_endpoints(c);
	rcds_watch *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return SNIPE_ENOMEM;
	w->sock = nn_socket(AF_SP, NN_SUB);
	const char *p = prefix != NULL ? prefix : "";
	if (w->sock < 0 || (prefix != RCDS_WATCH_NONE &&
	                    nn_setsockopt(w->sock, NN_SUB, NN_SUB_SUBSCRIBE, p, strlen(p)) < 0)) {
		rcds_watch_close(w);
		return sni_err(err, errlen, SNIPE_EIO, "watch: %s", nn_strerror(nn_errno()));
	}
	uint64_t applied = 0;
	int n = connect_all(c, w->sock, endpoints, &applied);
	if (n == 0) {
		rcds_watch_close(w);
		return sni_err(err, errlen, SNIPE_EUNAVAIL,
		               "watch: no replica of %s publishes changes", endpoints);
	}
	/* Changes published before the connections exist are not seen: wait for them. */
	for (uint64_t end = sni_mono_ms() + 2000; sni_mono_ms() < end;) {
		if (nn_get_statistic(w->sock, NN_STAT_CURRENT_CONNECTIONS) >= (uint64_t)n)
			break;
		struct timespec pause = {0, 5 * 1000 * 1000};
		nanosleep(&pause, NULL);
	}
	/* A replica that applied those later would publish them now: not news. */
	w->index = applied;
	w->item = UINT32_MAX;
	w->any = true;
	*out = w;
	return SNIPE_OK;
}

void rcds_watch_close(rcds_watch *w)
{
	if (w == NULL)
		return;
	if (w->sock >= 0)
		nn_close(w->sock);
	free(w);
}

int rcds_watch_fd(rcds_watch *w)
{
	int fd = -1;
	size_t len = sizeof(fd);
	nn_getsockopt(w->sock, NN_SOL_SOCKET, NN_RCVFD, &fd, &len);
	return fd;
}

void rcds_event_clear(rcds_event *ev)
{
	if (ev == NULL)
		return;
	free(ev->assertion.value);
	memset(ev, 0, sizeof(*ev));
}

/* Decodes one message (urn, 0, WatchEvent); SNIPE_EDECODE if it is not one, and
 * SNIPE_EEXIST if it is a change already delivered. */
static int decode(rcds_watch *w, const uint8_t *msg, size_t len, rcds_event *ev, char *err,
                  size_t errlen)
{
	const uint8_t *zero = memchr(msg, 0, len);
	if (zero == NULL)
		return sni_err(err, errlen, SNIPE_EDECODE, "watch: message without a topic");
	size_t off = (size_t)(zero - msg) + 1;
	Snipe__WatchEvent *e = snipe__watch_event__unpack(NULL, len - off, msg + off);
	if (e == NULL)
		return sni_err(err, errlen, SNIPE_EDECODE, "watch: event does not decode");
	int rc = SNIPE_OK;
	if (w->any && (e->index < w->index || (e->index == w->index && e->item <= w->item))) {
		rc = SNIPE_EEXIST;
	} else if (!e->deleted && e->assertion == NULL) {
		rc = sni_err(err, errlen, SNIPE_EDECODE, "watch: put without an assertion");
	} else {
		memset(ev, 0, sizeof(*ev));
		ev->index = e->index;
		ev->item = e->item;
		ev->deleted = e->deleted;
		snprintf(ev->urn, sizeof(ev->urn), "%s", e->urn);
		snprintf(ev->attr, sizeof(ev->attr), "%s", e->attr);
		if (!e->deleted)
			rc = sni_assertion_read(e->assertion, true, &ev->assertion, err, errlen);
		if (rc == SNIPE_OK) {
			w->index = e->index;
			w->item = e->item;
			w->any = true;
		}
	}
	snipe__watch_event__free_unpacked(e, NULL);
	return rc;
}

int rcds_watch_next(rcds_watch *w, int timeout_ms, rcds_event *ev, char *err,
                    size_t errlen)
{
	uint64_t end = timeout_ms < 0 ? UINT64_MAX : sni_mono_ms() + (uint64_t)timeout_ms;
	for (;;) {
		void *msg = NULL;
		int n = nn_recv(w->sock, &msg, NN_MSG, NN_DONTWAIT);
		if (n >= 0) {
			int rc = decode(w, msg, (size_t)n, ev, err, errlen);
			nn_freemsg(msg);
			if (rc != SNIPE_EEXIST)
				return rc;
			continue;
		}
		uint64_t now = sni_mono_ms();
		if (now >= end)
			return sni_err(err, errlen, SNIPE_ETIMEDOUT, "watch: no change within %d ms",
			               timeout_ms);
		struct pollfd pfd = {.fd = rcds_watch_fd(w), .events = POLLIN};
		uint64_t left = end - now;
		poll(&pfd, 1, left > 1000 ? 1000 : (int)left);
	}
}
