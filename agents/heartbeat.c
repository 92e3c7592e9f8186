/*
 * heartbeat.c — the host's registration and lease. A thread of its own renews the
 * lease every heartbeat_ms with the catalog's leader, so a busy loop never costs the
 * lease; each renewal moves the fence (the time the watchdog kills the children) to
 * 9/10 of a lease after the heartbeat was sent — before the leader, which counts from
 * when it got the heartbeat, could declare the host down — and hands the leader's list
 * of this host's processes to the loop.
 */
#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "sni.h"

#define LOG_EVERY_MS 5000

int agent_register(agent *a, rcds_client *c, char *err, size_t errlen)
{
	const agent_settings *cfg = a->cfg;
	char pk[SNIPE_PK_HEX], num[5][24];
	rcds_batch *b = NULL;
	snipe_pk_hex(snipe_key_public(a->key), pk);
	snprintf(num[0], sizeof(num[0]), "%u", cfg->cores);
	snprintf(num[1], sizeof(num[1]), "%u", cfg->memory_mb);
	snprintf(num[2], sizeof(num[2]), "%u", cfg->lease_ms);
	snprintf(num[3], sizeof(num[3]), "%u", cfg->heartbeat_ms);
	snprintf(num[4], sizeof(num[4]), "%" PRIu64, snipe_now_ms());
	int rc = rcds_batch_new(&b);
	const char *const attrs[][2] = {
		{"address", cfg->listen}, {"msg_address", cfg->msg_listen}, {"cores", num[0]}, {"memory_mb", num[1]},
		{"labels", cfg->labels}, {"pubkey", pk}, {"version", AGENT_VERSION},
		{"lease_ms", num[2]}, {"heartbeat_ms", num[3]}, {"registered_ms", num[4]},
	};
	for (size_t i = 0; rc == SNIPE_OK && i < sizeof(attrs) / sizeof(attrs[0]); i++)
		rc = rcds_batch_put_text(b, a->host_urn, attrs[i][0], attrs[i][1]);
	if (rc == SNIPE_OK)
		rc = rcds_write(c, b, NULL, err, errlen);
	else
		sni_err(err, errlen, rc, "%s", snipe_strerror(rc));
	rcds_batch_free(b);
	return rc;
}

static void post(agent *a, rcds_lease_reply *r)
{
	pthread_mutex_lock(&a->assigned_mu);
	rcds_lease_reply_clear(&a->assigned);
	a->assigned = *r;
	a->assigned_fresh = true;
	pthread_mutex_unlock(&a->assigned_mu);
	memset(r, 0, sizeof(*r));
	uv_async_send(&a->assigned_async);
}

static void sleep_until(agent *a, uint64_t at)
{
	for (uint64_t now = sni_mono_ms(); now < at && !atomic_load(&a->stopping);
	     now = sni_mono_ms()) {
		uint64_t ms = at - now < 50 ? at - now : 50;
		struct timespec ts = {0, (long)ms * 1000000L};
		nanosleep(&ts, NULL);
	}
}

static void *heartbeat_main(void *arg)
{
	agent *a = arg;
	/* signals are the loop's (SIGCHLD from every child that ends, SIGTERM): here they
	 * would only interrupt the catalog calls that keep the lease */
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	const agent_settings *cfg = a->cfg;
	rcds_client *c = NULL;
	char err[256];
	bool failing = false;
	uint64_t last_log = 0;

	if (rcds_client_open(cfg->catalog, a->key, &c, err, sizeof(err)) != SNIPE_OK) {
		snipe_log(SNIPE_LOG_ERROR, "heartbeat", "cannot open the catalog: %s", err);
		return NULL;
	}
	/* a leader busy with a burst of writes may take a while to get to a heartbeat:
	 * wait for it rather than go round the followers, which only point back to it */
	rcds_client_set_attempt(c, cfg->lease_ms / 2);
	uint64_t next = sni_mono_ms();
	while (!atomic_load(&a->stopping)) {
		rcds_lease_reply r;
		uint64_t sent = sni_mono_ms();
		/* a busy leader answers late: wait for it as long as the lease still runs (an
		 * answer after that is worth nothing), but at least one heartbeat period */
		uint64_t until = atomic_load(&a->fence_at);
		uint64_t left = until > sent ? until - sent : 0;
		rcds_client_set_timeout(c, (uint32_t)(left > cfg->heartbeat_ms ? left
		                                                                 : cfg->heartbeat_ms));
		int rc = rcds_heartbeat(c, cfg->name, cfg->lease_ms, &r, err, sizeof(err));
		uint64_t now = sni_mono_ms();
		if (rc == SNIPE_OK) {
			uint64_t fence = sent + (uint64_t)cfg->lease_ms * 9 / 10;
			atomic_store(&a->fence_at, fence);
			agent_watchdog_lease(a, fence);
			if (failing)
				snipe_log(SNIPE_LOG_INFO, "heartbeat", "lease renewed again");
			failing = false;
			post(a, &r);
		} else if (!failing || now - last_log >= LOG_EVERY_MS) {
			snipe_log(SNIPE_LOG_WARN, "heartbeat", "lease not renewed code=%s reason=\"%s\"",
			          snipe_errname(rc), err);
			failing = true;
			last_log = now;
		}
		next += cfg->heartbeat_ms;
		if (next < now)
			next = now; /* late (a slow catalog): go again at once, do not catch up */
		sleep_until(a, next);
	}
	rcds_client_close(c);
	return NULL;
}

int agent_heartbeat_start(agent *a, char *err, size_t errlen)
{
	if (pthread_create(&a->hb_thread, NULL, heartbeat_main, a) != 0)
		return sni_err(err, errlen, SNIPE_ENOMEM, "cannot start the heartbeat thread");
	return SNIPE_OK;
}

void agent_heartbeat_stop(agent *a)
{
	atomic_store(&a->stopping, true);
	pthread_join(a->hb_thread, NULL);
	pthread_mutex_lock(&a->assigned_mu);
	rcds_lease_reply_clear(&a->assigned);
	pthread_mutex_unlock(&a->assigned_mu);
}
