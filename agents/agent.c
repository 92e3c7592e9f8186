/*
 * agent.c — the agent's shared machinery: the lease as the loop sees it, and catalog
 * calls on libuv's thread pool, each with a client taken from a small pool (a client
 * serves one thread at a time).
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "blocks.h"
#include "msg.h"
#include "sni.h"

bool agent_lease_valid(agent *a)
{
	uint64_t at = atomic_load(&a->fence_at);
	return at != 0 && sni_mono_ms() < at;
}

static rcds_client *take_client(agent *a, char *err, size_t errlen)
{
	rcds_client *c = NULL;
	pthread_mutex_lock(&a->pool_mu);
	if (a->npool > 0)
		c = a->pool[--a->npool];
	pthread_mutex_unlock(&a->pool_mu);
	if (c == NULL && rcds_client_open(a->cfg->catalog, a->key, &c, err, errlen) != SNIPE_OK)
		return NULL;
	/* what this agent reads it acts on: see every acknowledged write */
	rcds_client_set_leader_reads(c, true);
	return c;
}

static void give_client(agent *a, rcds_client *c)
{
	pthread_mutex_lock(&a->pool_mu);
	if (a->npool < sizeof(a->pool) / sizeof(a->pool[0])) {
		a->pool[a->npool++] = c;
		c = NULL;
	}
	pthread_mutex_unlock(&a->pool_mu);
	rcds_client_close(c);
}

static void work_cb(uv_work_t *req)
{
	agent_io *io = req->data;
	rcds_client *c = take_client(io->a, io->err, sizeof(io->err));
	if (c == NULL) {
		io->rc = SNIPE_EUNAVAIL;
		return;
	}
	io->work(io, c);
	give_client(io->a, c);
}

static void after_work_cb(uv_work_t *req, int status)
{
	agent_io *io = req->data;
	if (status != 0 && io->rc == SNIPE_OK)
		io->rc = SNIPE_EIO;
	io->done(io, NULL);
}

int agent_io_queue(agent *a, agent_io *io)
{
	if (atomic_load(&a->stopping))
		return SNIPE_EUNAVAIL;
	io->a = a;
	io->rc = SNIPE_OK;
	io->err[0] = '\0';
	io->req.data = io;
	return uv_queue_work(a->loop, &io->req, work_cb, after_work_cb) == 0 ? SNIPE_OK
	                                                                     : SNIPE_ENOMEM;
}

void agent_free(agent *a)
{
	agent_forget_all(a);
	agent_server_free(a);
	agent_msg_free(a);
	for (size_t i = 0; i < a->npool; i++)
		rcds_client_close(a->pool[i]);
	a->npool = 0;
	snipe_key_free(a->key);
	a->key = NULL;
	agent_blocks_close(a->blocks);
	a->blocks = NULL;
	if (a->watchdog_fd >= 0)
		close(a->watchdog_fd);
	a->watchdog_fd = -1;
}
