/*
 * watchdog.c — the agent's fence: a small process forked at start that holds the pids
 * of the agent's children and the time its lease runs out. When the lease lapses it
 * kills them all (SIGKILL to each process group), and when the agent dies (the pipe
 * closes) too, then exits. It runs apart from the agent so that an agent that is
 * stopped, stuck or killed still cannot leave a process running after the catalog
 * may have started it elsewhere.
 *
 * The agent writes text lines on the pipe: "L <ms>" (the lease runs until <ms> on
 * CLOCK_MONOTONIC, which both processes share), "+ <pid>" and "- <pid>".
 *
 * The fork executes the agent's binary again as "snipe-watchdog --watchdog-fd N", so
 * its command line does not name snipe-agentd: `pkill -9 -f snipe-agentd` then kills
 * the agent alone, and the watchdog kills its processes, instead of both dying and
 * leaving the processes to run on after the catalog started them elsewhere.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "agent.h"
#include "sni.h"

#define CHECK_MS 5
#define WATCHDOG_FLAG "--watchdog-fd"
#define MAX_TRACKED 65536

struct watchdog {
	uv_loop_t loop;
	uv_pipe_t in;
	uv_timer_t timer;
	uint64_t lease_until;
	int *pids;
	size_t n;
	char line[64];
	size_t len;
};

static void kill_all(struct watchdog *w, const char *why)
{
	if (w->n > 0)
		snipe_log(SNIPE_LOG_WARN, "watchdog", "fencing: killing %zu processes (%s)", w->n, why);
	for (size_t i = 0; i < w->n; i++) {
		kill(-w->pids[i], SIGKILL);
		kill(w->pids[i], SIGKILL);
	}
	w->n = 0;
}

static void track(struct watchdog *w, int pid, bool add)
{
	for (size_t i = 0; i < w->n; i++) {
		if (w->pids[i] == pid) {
			if (!add)
				w->pids[i] = w->pids[--w->n];
			return;
		}
	}
	if (add && w->n < MAX_TRACKED)
		w->pids[w->n++] = pid;
}

static void take_line(struct watchdog *w, const char *line)
{
	long long v;
	char op;
	if (sscanf(line, "%c %lld", &op, &v) != 2 || v < 0)
		return;
	if (op == 'L')
		w->lease_until = (uint64_t)v;
	else if ((op == '+' || op == '-') && v > 1 && v <= INT32_MAX) /* never kill(-1) */
		track(w, (int)v, op == '+');
}

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
	static char mem[4096];
	(void)h;
	(void)size;
	*buf = uv_buf_init(mem, sizeof(mem));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct watchdog *w = s->data;
	if (n < 0) {
		kill_all(w, "the agent is gone");
		uv_stop(&w->loop);
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		char c = buf->base[i];
		if (c != '\n') {
			if (w->len < sizeof(w->line) - 1)
				w->line[w->len++] = c;
			continue;
		}
		w->line[w->len] = '\0';
		w->len = 0;
		take_line(w, w->line);
	}
}

static void on_tick(uv_timer_t *t)
{
	struct watchdog *w = t->data;
	if (w->lease_until != 0 && sni_mono_ms() >= w->lease_until && w->n > 0)
		kill_all(w, "the lease lapsed");
}

static _Noreturn void watchdog_main(int fd)
{
	struct watchdog w = {0};
	prctl(PR_SET_NAME, "snipe-watchdog");
	signal(SIGTERM, SIG_IGN); /* the agent's stop kills its children itself */
	signal(SIGINT, SIG_IGN);
	w.pids = calloc(MAX_TRACKED, sizeof(int));
	if (w.pids == NULL || uv_loop_init(&w.loop) != 0)
		_exit(1);
	uv_pipe_init(&w.loop, &w.in, 0);
	w.in.data = &w;
	uv_timer_init(&w.loop, &w.timer);
	w.timer.data = &w;
	/* No pipe to read (started by hand with a wrong fd): nothing to watch. */
	if (uv_pipe_open(&w.in, fd) != 0 ||
	    uv_read_start((uv_stream_t *)&w.in, on_alloc, on_read) != 0) {
		snipe_log(SNIPE_LOG_ERROR, "watchdog", "cannot read the agent's pipe fd=%d", fd);
		_exit(1);
	}
	uv_timer_start(&w.timer, on_tick, CHECK_MS, CHECK_MS);
	uv_run(&w.loop, UV_RUN_DEFAULT);
	_exit(0);
}

int agent_watchdog_exec_main(int argc, char **argv)
{
	char *end = NULL;
	if (argc != 3 || strcmp(argv[1], WATCHDOG_FLAG) != 0)
		return -1;
	long fd = strtol(argv[2], &end, 10);
	if (end == argv[2] || *end != '\0' || fd < 0 || fd > INT32_MAX)
		return -1;
	watchdog_main((int)fd);
}

int agent_watchdog_start(agent *a, char *err, size_t errlen)
{
	int fds[2];
	a->watchdog_fd = -1;
	if (!a->cfg->fence)
		return SNIPE_OK;
	if (pipe(fds) != 0)
		return sni_err(err, errlen, SNIPE_EIO, "watchdog pipe: %s", strerror(errno));
	pid_t pid = fork();
	if (pid < 0)
		return sni_err(err, errlen, SNIPE_EIO, "watchdog fork: %s", strerror(errno));
	if (pid == 0) {
		close(fds[1]);
		if (fds[0] > 3)
			close_range(3, (unsigned)fds[0] - 1, 0);
		close_range((unsigned)fds[0] + 1, ~0u, 0);
		char fd[16];
		snprintf(fd, sizeof(fd), "%d", fds[0]);
		char *const argv[] = {"snipe-watchdog", WATCHDOG_FLAG, fd, NULL};
		execv("/proc/self/exe", argv);
		watchdog_main(fds[0]); /* no /proc: watch from the fork as it is */
	}
	close(fds[0]);
	a->watchdog_fd = fds[1];
	return SNIPE_OK;
}

static void say(agent *a, char op, uint64_t v)
{
	char line[48];
	if (a->watchdog_fd < 0)
		return;
	int n = snprintf(line, sizeof(line), "%c %" PRIu64 "\n", op, v);
	/* a line is far below PIPE_BUF, so each write is atomic between threads */
	while (write(a->watchdog_fd, line, (size_t)n) < 0 && errno == EINTR)
		;
}

void agent_watchdog_lease(agent *a, uint64_t at)
{
	say(a, 'L', at);
}

void agent_watchdog_track(agent *a, int pid, bool add)
{
	say(a, add ? '+' : '-', (uint64_t)pid);
}
