/*
 * supervise.c — the agent's processes. Each URN this host deals with has an instance
 * that follows its catalog record: reconcile reads the record and starts the process
 * if it is assigned here in an active state (and this host holds its lease), stops it
 * if it is not (moved, or its owner asked it to stop); an exit is recorded and,
 * as the policy says, followed by a restart after a backoff. One catalog call per
 * instance at a time; events that come meanwhile are taken when it ends.
 *
 * Every write carries the instance's epoch, so one from a replaced instance is
 * refused by the catalog; it also only passes while the record names this host.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <dirent.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "msg.h"
#include "sni.h"

#define STOP_GRACE_MS 2000
#define STEADY_MS 10000 /* a run this long resets the backoff */
#define RESTORE_RETRY_MS 1000
#define EXIT_CHECKPOINT 85 /* directory mode: "checkpoint me and restart me" (as HTCondor) */

extern char **environ;

enum phase { PH_IDLE, PH_RUNNING, PH_BACKOFF };

struct waiter {
	agent_settled_fn fn;
	void *arg;
	struct waiter *next;
};

struct agent_inst {
	agent *a;
	char urn[SNIPE_URN_MAX];
	char file[SNIPE_URN_NAME_MAX + 1]; /* the name, safe as a file name */
	enum phase phase;
	uint64_t epoch;
	uint32_t restarts, streak; /* all restarts; quick failures in a row (backoff) */
	Snipe__ProcSpec *spec;
	uv_process_t proc;
	uv_timer_t timer; /* backoff, then stop escalation */
	bool proc_open;
	bool proc_closing; /* uv_close on proc is pending: in must not be freed yet */
	int pid;
	uint64_t started_ms, started_mono;
	bool stopping, stop_asked; /* we are killing it; because its owner asked */
	bool busy, again, exit_pending;
	uint64_t again_index;
	int exit_code;
	bool has_exit;
	char state[16];
	uint64_t index; /* the catalog index of our last read or write */
	uint8_t key_pk[SNIPE_PK_BYTES]; /* the running instance's key (SNIPE_PROC_KEY) */
	char cwd[4200];
	char ckpt_dir[8200];            /* directory mode: absolute, or "" */
	uint64_t dir_seq;               /* the checkpoint the directory holds here */
	char spawn_error[256];          /* why the last start failed */
	bool in_place;                  /* it ended to be restarted here (exit 85): not lost */
	struct waiter *waiters;
};

/* A catalog call for an instance: a read of its record, or a write. */
struct inst_io {
	agent_io io;
	struct agent_inst *inst;
	uint64_t min_index;
	sni_proc rec;
	rcds_batch *batch;
	uint64_t index;
	void (*then)(struct agent_inst *in, struct inst_io *x);
};

static void next_step(struct agent_inst *in);
static void reconcile_read(struct agent_inst *in, uint64_t min_index);

/* ------------------------------------------------------------------ table */

static struct agent_inst *find(agent *a, const char *urn)
{
	for (size_t i = 0; i < a->ninst; i++)
		if (strcmp(a->inst[i]->urn, urn) == 0)
			return a->inst[i];
	return NULL;
}

static struct agent_inst *find_or_add(agent *a, const char *urn)
{
	struct agent_inst *in = find(a, urn);
	if (in != NULL)
		return in;
	if (!sni_grow(&a->inst, a->ninst, &a->capinst, sizeof(*a->inst)))
		return NULL;
	in = calloc(1, sizeof(*in));
	if (in == NULL)
		return NULL;
	in->a = a;
	snprintf(in->urn, sizeof(in->urn), "%s", urn);
	const char *name = strrchr(urn, ':') + 1;
	snprintf(in->file, sizeof(in->file), "%.*s", (int)sizeof(in->file) - 1, name);
	for (char *p = in->file; *p != '\0'; p++)
		*p = *p == '/' ? '+' : *p;
	snprintf(in->state, sizeof(in->state), "pending");
	uv_timer_init(a->loop, &in->timer);
	in->timer.data = in;
	a->inst[a->ninst++] = in;
	return in;
}

void agent_log_path(agent *a, const char *urn, bool err, char *buf, size_t len)
{
	const char *name = strrchr(urn, ':');
	char file[SNIPE_URN_NAME_MAX + 1];
	snprintf(file, sizeof(file), "%.*s", (int)sizeof(file) - 1, name != NULL ? name + 1 : urn);
	for (char *p = file; *p != '\0'; p++)
		*p = *p == '/' ? '+' : *p;
	snprintf(buf, len, "%s/logs/%s.%s", a->cfg->state, file, err ? "err" : "out");
}

static void fill_status(const struct agent_inst *in, Snipe__ProcStatus *st)
{
	snipe__proc_status__init(st);
	st->urn = (char *)in->urn;
	st->state = (char *)in->state;
	st->epoch = in->epoch;
	st->pid = in->proc_open ? in->pid : 0;
	st->exit_code = in->exit_code;
	st->restarts = in->restarts;
	st->index = in->index;
}

/* Answers everyone waiting on in. */
static void settle(struct agent_inst *in, int code, const char *err)
{
	Snipe__ProcStatus st;
	fill_status(in, &st);
	struct waiter *w = in->waiters;
	in->waiters = NULL;
	while (w != NULL) {
		struct waiter *next = w->next;
		if (w->fn != NULL)
			w->fn(w->arg, &st, code, err);
		free(w);
		w = next;
	}
}

/* ---------------------------------------------------------- catalog calls */

static void io_work(agent_io *io, rcds_client *c)
{
	struct inst_io *x = (struct inst_io *)io;
	if (x->batch != NULL) {
		io->rc = rcds_write(c, x->batch, &x->index, io->err, sizeof(io->err));
		return;
	}
	rcds_list l = {0};
	uint64_t have = rcds_client_index(c);
	if (x->min_index > have)
		rcds_client_see_index(c, x->min_index);
	io->rc = rcds_get(c, x->inst->urn, &l, io->err, sizeof(io->err));
	sni_proc_init(&x->rec, x->inst->urn);
	for (size_t i = 0; io->rc == SNIPE_OK && i < l.count; i++)
		sni_proc_set(&x->rec, l.items[i].attr, l.items[i].value, l.items[i].value_len,
		             l.items[i].version, l.items[i].author);
	x->index = l.index;
	rcds_list_free(&l);
}

static void io_done(agent_io *io, rcds_client *c)
{
	struct inst_io *x = (struct inst_io *)io;
	struct agent_inst *in = x->inst;
	(void)c;
	if (io->rc == SNIPE_OK && x->index > in->index)
		in->index = x->index;
	x->then(in, x);
	sni_proc_clear(&x->rec);
	rcds_batch_free(x->batch);
	free(x);
}

static int io_start(struct agent_inst *in, rcds_batch *b, uint64_t min_index,
                    void (*then)(struct agent_inst *, struct inst_io *))
{
	struct inst_io *x = calloc(1, sizeof(*x));
	if (x == NULL) {
		rcds_batch_free(b);
		return SNIPE_ENOMEM;
	}
	x->io.work = io_work;
	x->io.done = io_done;
	x->inst = in;
	x->batch = b;
	x->min_index = min_index;
	x->then = then;
	in->busy = true;
	int rc = agent_io_queue(in->a, &x->io);
	if (rc != SNIPE_OK) {
		in->busy = false;
		rcds_batch_free(b);
		free(x);
	}
	return rc;
}

/* A write of in's state (with its epoch, pid, exit code, restarts), then `then`. */
static int write_state(struct agent_inst *in, const char *state, const char *reason,
                       void (*then)(struct agent_inst *, struct inst_io *))
{
	rcds_batch *b = NULL;
	snprintf(in->state, sizeof(in->state), "%s", state);
	int rc = rcds_batch_new(&b);
	if (rc == SNIPE_OK)
		rc = rcds_batch_putf(b, in->urn, "state", "%s", state);
	if (rc == SNIPE_OK)
		rc = rcds_batch_putf(b, in->urn, "epoch", "%" PRIu64, in->epoch);
	if (rc == SNIPE_OK)
		rc = rcds_batch_putf(b, in->urn, "pid", "%d", in->proc_open ? in->pid : 0);
	if (rc == SNIPE_OK)
		rc = rcds_batch_putf(b, in->urn, "restarts", "%u", in->restarts);
	if (rc == SNIPE_OK && in->proc_open)
		rc = rcds_batch_putf(b, in->urn, "started_ms", "%" PRIu64, in->started_ms);
	if (rc == SNIPE_OK && in->has_exit)
		rc = rcds_batch_putf(b, in->urn, "exit", "%d", in->exit_code);
	if (rc == SNIPE_OK && reason != NULL)
		rc = rcds_batch_putf(b, in->urn, "reason", "%s", reason);
	if (rc != SNIPE_OK) {
		rcds_batch_free(b);
		return rc;
	}
	return io_start(in, b, 0, then);
}

/* ------------------------------------------------------------- processes */

static void on_exit_cb(uv_process_t *p, int64_t status, int signo);
static void drop_key(struct agent_inst *in);

static void spawn_failed_closed(uv_handle_t *h)
{
	struct agent_inst *in = h->data;
	in->proc_closing = false;
	next_step(in);
}

/* The environment: the agent's, the spec's, and who the process is. malloc'd. */
static char **make_env(const struct agent_inst *in)
{
	size_t n = 0;
	while (environ[n] != NULL)
		n++;
	size_t total = n + in->spec->n_env + 6;
	char **env = calloc(total, sizeof(char *));
	if (env == NULL)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "SNIPE_", 6) != 0)
			env[k++] = strdup(environ[i]);
	for (size_t i = 0; i < in->spec->n_env; i++)
		env[k++] = strdup(in->spec->env[i]);
	if (asprintf(&env[k++], "SNIPE_PROC_KEY=%s/run/%s.key", in->a->cfg->state, in->file) < 0 ||
	    asprintf(&env[k++], "SNIPE_URN=%s", in->urn) < 0 ||
	    asprintf(&env[k++], "SNIPE_EPOCH=%" PRIu64, in->epoch) < 0 ||
	    asprintf(&env[k++], "SNIPE_AGENT=%s", in->a->cfg->listen) < 0 ||
	    asprintf(&env[k++], "SNIPE_HOST=%s", in->a->cfg->name) < 0)
		env[k - 1] = NULL;
	return env;
}

static void free_strv(char **v)
{
	for (size_t i = 0; v != NULL && v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

static void pid_record(struct agent_inst *in, bool add)
{
	char path[4096], state;
	uint64_t start;
	snprintf(path, sizeof(path), "%s/run/%s.pid", in->a->cfg->state, in->file);
	if (!add) {
		unlink(path);
		return;
	}
	/* the start time tells the process from a later one given the same pid */
	FILE *out = sni_proc_stat(in->pid, &state, &start) == SNIPE_OK ? fopen(path, "w") : NULL;
	if (out != NULL) {
		fprintf(out, "%d %" PRIu64 "\n", in->pid, start);
		fclose(out);
	}
}

/* Starts the process; SNIPE_OK, or SNIPE_ESPAWN with the reason in err. */
/* The working directory (the spec's, or one under the state dir) into in->cwd, and
 * the checkpoint directory (relative to it) into in->ckpt_dir. */
static void resolve_dirs(struct agent_inst *in)
{
	if (in->spec->cwd[0] != '\0') {
		snprintf(in->cwd, sizeof(in->cwd), "%s", in->spec->cwd);
	} else {
		snprintf(in->cwd, sizeof(in->cwd), "%s/work/%s", in->a->cfg->state, in->file);
		mkdir(in->cwd, 0700);
	}
	if (in->spec->ckpt_dir[0] == '/')
		snprintf(in->ckpt_dir, sizeof(in->ckpt_dir), "%s", in->spec->ckpt_dir);
	else if (in->spec->ckpt_dir[0] != '\0')
		snprintf(in->ckpt_dir, sizeof(in->ckpt_dir), "%s/%s", in->cwd, in->spec->ckpt_dir);
	else
		in->ckpt_dir[0] = '\0';
}

static int start_process(struct agent_inst *in, char *err, size_t errlen)
{
	agent *a = in->a;
	char out[4096], errp[4096];
	const char *cwd = in->cwd;
	agent_log_path(a, in->urn, false, out, sizeof(out));
	agent_log_path(a, in->urn, true, errp, sizeof(errp));
	/* the instance's own key: how the process proves who it is to this agent */
	char keypath[4200];
	snipe_key *key = NULL;
	snprintf(keypath, sizeof(keypath), "%s/run/%s.key", a->cfg->state, in->file);
	if (snipe_key_generate(&key) != SNIPE_OK ||
	    sni_key_save_instance(key, keypath, err, errlen) != SNIPE_OK) {
		snipe_key_free(key);
		return sni_err(err, errlen, SNIPE_ESPAWN, "cannot make the instance key %s", keypath);
	}
	memcpy(in->key_pk, snipe_key_public(key), SNIPE_PK_BYTES);
	snipe_key_free(key);
	snipe_keyring_add(a->proc_keys, in->key_pk);
	int fds[3] = {open("/dev/null", O_RDONLY | O_CLOEXEC),
	              open(out, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600),
	              open(errp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600)};
	char **argv = calloc(in->spec->n_argv + 1, sizeof(char *));
	char **env = make_env(in);
	int rc = SNIPE_OK;
	if (fds[0] < 0 || fds[1] < 0 || fds[2] < 0) {
		rc = sni_err(err, errlen, SNIPE_ESPAWN, "cannot open the log files in %s/logs: %s",
		             a->cfg->state, strerror(errno));
	} else if (argv == NULL || env == NULL) {
		rc = sni_err(err, errlen, SNIPE_ENOMEM, "out of memory");
	} else {
		for (size_t i = 0; i < in->spec->n_argv; i++)
			argv[i] = in->spec->argv[i];
		uv_stdio_container_t stdio[3];
		for (int i = 0; i < 3; i++) {
			stdio[i].flags = UV_INHERIT_FD;
			stdio[i].data.fd = fds[i];
		}
		uv_process_options_t o = {.exit_cb = on_exit_cb, .file = argv[0], .args = argv,
		                          .env = env, .cwd = cwd, .flags = UV_PROCESS_DETACHED,
		                          .stdio_count = 3, .stdio = stdio};
		/* Only 0-2 go to the child, without a loop over every possible descriptor:
		 * the kernel marks the open ones close-on-exec in one call. */
		close_range(3, ~0u, CLOSE_RANGE_CLOEXEC);
		in->proc.data = in;
		int uv = uv_spawn(a->loop, &in->proc, &o);
		if (uv != 0) {
			rc = sni_err(err, errlen, SNIPE_ESPAWN, "cannot run '%s': %s", argv[0],
			             uv_strerror(uv));
			in->proc_closing = true;
			uv_close((uv_handle_t *)&in->proc, spawn_failed_closed);
			drop_key(in);
		} else {
			in->proc_open = true;
			in->pid = in->proc.pid;
			in->started_ms = snipe_now_ms();
			in->started_mono = sni_mono_ms();
			in->has_exit = false;
			in->stopping = in->stop_asked = false;
			agent_watchdog_track(a, in->pid, true);
			pid_record(in, true);
		}
	}
	for (int i = 0; i < 3; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(argv);
	free_strv(env);
	return rc;
}

static void escalate(uv_timer_t *t)
{
	struct agent_inst *in = t->data;
	if (in->proc_open) {
		snipe_log(SNIPE_LOG_WARN, "supervise", "%s pid=%d ignored SIGTERM: SIGKILL", in->urn,
		          in->pid);
		kill(-in->pid, SIGKILL);
		kill(in->pid, SIGKILL);
	}
}

/* Kills the running process: gently if its owner asked, at once if it is no longer
 * ours (another host may be starting it). The exit callback records the end. */
static void stop_process(struct agent_inst *in, bool asked)
{
	if (!in->proc_open || in->stopping)
		return;
	in->stopping = true;
	in->stop_asked = asked;
	int sig = asked ? SIGTERM : SIGKILL;
	kill(-in->pid, sig);
	kill(in->pid, sig);
	if (asked)
		uv_timer_start(&in->timer, escalate, STOP_GRACE_MS, 0);
}

/* -------------------------------------------------------------- reconcile */

static void after_write(struct agent_inst *in, struct inst_io *x)
{
	if (x->io.rc != SNIPE_OK)
		snipe_log(SNIPE_LOG_WARN, "supervise", "%s: recording state %s failed code=%s "
		          "reason=\"%s\"", in->urn, in->state, snipe_errname(x->io.rc), x->io.err);
	in->busy = false;
	settle(in, x->io.rc, x->io.rc != SNIPE_OK ? x->io.err : NULL);
	next_step(in);
}

static void after_running(struct agent_inst *in, struct inst_io *x)
{
	in->busy = false;
	if (x->io.rc != SNIPE_OK) {
		/* the catalog refused: the process is not (or no longer) ours to run */
		snipe_log(SNIPE_LOG_WARN, "supervise", "%s: catalog refused the start code=%s "
		          "reason=\"%s\": stopping it", in->urn, snipe_errname(x->io.rc), x->io.err);
		stop_process(in, false);
		settle(in, x->io.rc, x->io.err);
	} else {
		snipe_log(SNIPE_LOG_INFO, "supervise", "%s running pid=%d epoch=%" PRIu64, in->urn,
		          in->pid, in->epoch);
		settle(in, SNIPE_OK, NULL);
	}
	next_step(in);
}

static void fill_ref(const struct agent_inst *in, agent_proc_ref *ref)
{
	snprintf(ref->urn, sizeof(ref->urn), "%s", in->urn);
	ref->epoch = in->epoch;
	snprintf(ref->ckpt_dir, sizeof(ref->ckpt_dir), "%s", in->ckpt_dir);
}

static void start_now(struct agent_inst *in);

/* The failed start is recorded: now the waiters hear why it failed. */
static void after_spawn_failed(struct agent_inst *in, struct inst_io *x)
{
	if (x->io.rc != SNIPE_OK)
		snipe_log(SNIPE_LOG_WARN, "supervise", "%s: recording the failed start failed "
		          "code=%s reason=\"%s\"", in->urn, snipe_errname(x->io.rc), x->io.err);
	in->busy = false;
	settle(in, SNIPE_ESPAWN, in->spawn_error);
	next_step(in);
}

static void retry_later(uv_timer_t *t)
{
	struct agent_inst *in = t->data;
	in->again = true;
	next_step(in);
}

/* The checkpoint directory holds the latest checkpoint: now start. */
static void restored(void *arg, int code, uint64_t seq)
{
	struct agent_inst *in = arg;
	in->busy = false;
	if (code == SNIPE_OK) {
		in->dir_seq = seq;
		start_now(in);
		return;
	}
	/* its blocks may be on a host that comes back: try again, never start without */
	settle(in, code, "cannot restore the latest checkpoint (will retry)");
	uv_timer_start(&in->timer, retry_later, RESTORE_RETRY_MS, 0);
}

static void start(struct agent_inst *in, const sni_proc *rec, bool again)
{
	if (in->spec != NULL)
		snipe__proc_spec__free_unpacked(in->spec, NULL);
	in->spec = rec->spec;
	((sni_proc *)rec)->spec = NULL; /* ours now */
	if (in->epoch != rec->epoch)
		in->streak = 0;
	in->epoch = rec->epoch;
	in->restarts = rec->restarts + (again ? 1u : 0u);
	resolve_dirs(in);
	/* directory mode: bring the directory to the latest checkpoint unless it is there */
	if (in->ckpt_dir[0] != '\0' && rec->ckpt > 0 && in->dir_seq != rec->ckpt) {
		agent_proc_ref ref;
		fill_ref(in, &ref);
		in->busy = true;
		if (agent_ckpt_restore_dir(in->a, &ref, rec->ckpt, restored, in) == SNIPE_OK)
			return;
		in->busy = false;
	}
	start_now(in);
}

static void start_now(struct agent_inst *in)
{
	char err[256];
	int rc = start_process(in, err, sizeof(err));
	if (rc == SNIPE_OK) {
		in->phase = PH_RUNNING;
		rc = write_state(in, "running", NULL, after_running);
		if (rc != SNIPE_OK)
			stop_process(in, false);
		return;
	}
	snipe_log(SNIPE_LOG_WARN, "supervise", "%s: %s", in->urn, err);
	in->phase = PH_IDLE;
	in->exit_code = 127;
	in->has_exit = true;
	snprintf(in->spawn_error, sizeof(in->spawn_error), "%s", err);
	if (write_state(in, "failed", err, after_spawn_failed) != SNIPE_OK)
		settle(in, rc, err);
}

static void after_read(struct agent_inst *in, struct inst_io *x)
{
	const sni_proc *rec = &x->rec;
	agent *a = in->a;
	in->busy = false;
	if (x->io.rc != SNIPE_OK && x->io.rc != SNIPE_ENOTFOUND) {
		settle(in, x->io.rc, x->io.err);
		next_step(in);
		return;
	}
	bool found = x->io.rc == SNIPE_OK;
	bool here = found && strcmp(rec->host, a->cfg->name) == 0;
	bool ours = here && sni_proc_state_active(rec->state) && !rec->stop && rec->spec != NULL;
	if (found && !in->proc_open && in->phase == PH_IDLE)
		snprintf(in->state, sizeof(in->state), "%s", rec->state);
	if (in->proc_open) {
		if (!ours || rec->epoch != in->epoch) {
			bool asked = here && rec->stop && rec->epoch == in->epoch;
			snipe_log(SNIPE_LOG_INFO, "supervise", "%s: %s, stopping pid=%d", in->urn,
			          asked ? "its owner asked it to stop" : "no longer assigned here",
			          in->pid);
			stop_process(in, asked);
		} else {
			settle(in, SNIPE_OK, NULL);
		}
	} else if (in->phase == PH_BACKOFF && ours && rec->epoch == in->epoch) {
		settle(in, SNIPE_OK, NULL); /* its timer will start it */
	} else if (ours) {
		/* recorded running here, yet not running: its run was lost (this agent restarted,
		 * or fenced it) — a failure, which its policy may or may not restart */
		bool lost = strcmp(rec->state, "running") == 0 && !in->in_place;
		in->in_place = false;
		uint32_t max = rec->spec->max_restarts;
		if (!agent_lease_valid(a)) {
			settle(in, SNIPE_EFENCED, "this host does not hold its lease: nothing starts");
		} else if (lost && (!sni_proc_policy_restarts(rec->spec->restart, -SIGKILL) ||
		                    (max > 0 && rec->restarts >= max))) {
			in->epoch = rec->epoch;
			in->restarts = rec->restarts;
			in->phase = PH_IDLE;
			snipe_log(SNIPE_LOG_WARN, "supervise", "%s: its run was lost (agent restart or "
			          "fence) and its policy does not restart it", in->urn);
			if (write_state(in, "lost", "its run was lost when its agent restarted or fenced",
			                after_write) == SNIPE_OK)
				return;
			settle(in, SNIPE_ENOMEM, NULL);
		} else {
			uv_timer_stop(&in->timer);
			start(in, rec, lost);
			return;
		}
	} else if (here && rec->stop && sni_proc_state_active(rec->state)) {
		in->epoch = rec->epoch;
		in->phase = PH_IDLE;
		if (write_state(in, "killed", "stopped by its owner", after_write) == SNIPE_OK)
			return;
		settle(in, SNIPE_ENOMEM, NULL);
	} else {
		if (found) {
			in->epoch = rec->epoch;
			snprintf(in->state, sizeof(in->state), "%s", rec->state);
		}
		settle(in, found ? SNIPE_OK : SNIPE_ENOTFOUND,
		       found ? NULL : "no such process in the catalog");
	}
	next_step(in);
}

static void reconcile_read(struct agent_inst *in, uint64_t min_index)
{
	if (io_start(in, NULL, min_index, after_read) != SNIPE_OK)
		settle(in, SNIPE_ENOMEM, "cannot queue a catalog read");
}

/* ------------------------------------------------------------------ exits */

static void backoff_over(uv_timer_t *t)
{
	struct agent_inst *in = t->data;
	in->phase = PH_IDLE;
	in->again = true;
	next_step(in);
}

/* Exit 85 in directory mode: the directory is committed; run it again at once. */
static void checkpointed(void *arg, int code, uint64_t seq)
{
	struct agent_inst *in = arg;
	in->busy = false;
	if (code == SNIPE_OK) {
		in->dir_seq = seq;
		snipe_log(SNIPE_LOG_INFO, "supervise", "%s checkpoint %" PRIu64 " taken on exit %d: "
		          "restarting it", in->urn, seq, EXIT_CHECKPOINT);
	}
	in->phase = PH_IDLE;
	in->in_place = true;
	in->again = true;
	next_step(in);
}

static void handle_exit(struct agent_inst *in)
{
	agent *a = in->a;
	in->exit_pending = false;
	if (in->stopping) {
		in->phase = PH_IDLE;
		if (in->stop_asked && write_state(in, "killed", "stopped by its owner", after_write) ==
		                              SNIPE_OK)
			return;
		settle(in, SNIPE_OK, NULL);
		next_step(in);
		return;
	}
	if (!agent_lease_valid(a)) {
		snipe_log(SNIPE_LOG_WARN, "supervise", "%s fenced (the lease lapsed)", in->urn);
		in->phase = PH_IDLE;
		settle(in, SNIPE_EFENCED, "fenced: the host's lease lapsed");
		return;
	}
	if (in->exit_code == EXIT_CHECKPOINT && in->ckpt_dir[0] != '\0') {
		agent_proc_ref ref;
		fill_ref(in, &ref);
		in->busy = true;
		in->phase = PH_BACKOFF; /* not idle: it is about to run again */
		if (agent_ckpt_dir(a, &ref, checkpointed, in) == SNIPE_OK)
			return;
		in->busy = false;
	}
	const char *state;
	bool quick = sni_mono_ms() - in->started_mono < STEADY_MS;
	if (agent_policy_restart(in->spec, in->exit_code, in->restarts, &state)) {
		in->restarts++;
		in->streak = quick ? in->streak + 1 : 1;
		uint64_t ms = agent_backoff_ms(in->streak, a->cfg->backoff_ms, a->cfg->backoff_max_ms);
		snipe_log(SNIPE_LOG_INFO, "supervise", "%s exited code=%d: restart %u in %" PRIu64
		          " ms", in->urn, in->exit_code, in->restarts, ms);
		in->phase = PH_BACKOFF;
		uv_timer_start(&in->timer, backoff_over, ms, 0);
		if (write_state(in, "backoff", NULL, after_write) != SNIPE_OK)
			settle(in, SNIPE_ENOMEM, NULL);
		return;
	}
	snipe_log(SNIPE_LOG_INFO, "supervise", "%s %s code=%d", in->urn, state, in->exit_code);
	in->phase = PH_IDLE;
	if (write_state(in, state, NULL, after_write) != SNIPE_OK)
		settle(in, SNIPE_ENOMEM, NULL);
}

static void proc_closed(uv_handle_t *h)
{
	struct agent_inst *in = h->data;
	in->proc_open = false;
	in->proc_closing = false;
	in->exit_pending = true;
	next_step(in);
}

/* The instance's key stops working the moment it ends. */
static void drop_key(struct agent_inst *in)
{
	char path[4200];
	uint8_t id[SNIPE_KEYID_BYTES];
	snipe_keyid(in->key_pk, id);
	snipe_keyring_remove(in->a->proc_keys, id);
	snprintf(path, sizeof(path), "%s/run/%s.key", in->a->cfg->state, in->file);
	unlink(path);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int signo)
{
	struct agent_inst *in = p->data;
	drop_key(in);
	agent_msg_detach(in->a, in->urn);
	in->exit_code = signo != 0 ? -signo : (int)status;
	in->has_exit = true;
	uv_timer_stop(&in->timer);
	agent_watchdog_track(in->a, in->pid, false);
	pid_record(in, false);
	in->proc_closing = true;
	uv_close((uv_handle_t *)p, proc_closed);
}

static void inst_closed(uv_handle_t *h)
{
	struct agent_inst *in = h->data;
	if (in->spec != NULL)
		snipe__proc_spec__free_unpacked(in->spec, NULL);
	free(in);
}

/* Drops an instance with nothing left to do: the record holds all there is to know. */
static void forget(struct agent_inst *in)
{
	agent *a = in->a;
	for (size_t i = 0; i < a->ninst; i++) {
		if (a->inst[i] == in) {
			a->inst[i] = a->inst[--a->ninst];
			break;
		}
	}
	uv_close((uv_handle_t *)&in->timer, inst_closed);
}

/* Takes the next event for in once no catalog call is in flight. in may be freed. */
static void next_step(struct agent_inst *in)
{
	if (in->busy || atomic_load(&in->a->stopping))
		return;
	if (in->exit_pending) {
		handle_exit(in);
		return;
	}
	if (in->again) {
		in->again = false;
		reconcile_read(in, in->again_index);
		return;
	}
	if (!in->proc_open && in->phase == PH_IDLE && in->waiters == NULL &&
	    !in->proc_closing && !uv_is_active((uv_handle_t *)&in->timer))
		forget(in);
}

/* ----------------------------------------------------------------- public */

int agent_reconcile(agent *a, const char *urn, uint64_t min_index, agent_settled_fn fn,
                    void *arg)
{
	struct agent_inst *in = find_or_add(a, urn);
	struct waiter *w = fn != NULL ? calloc(1, sizeof(*w)) : NULL;
	if (in == NULL || (fn != NULL && w == NULL)) {
		free(w);
		return SNIPE_ENOMEM;
	}
	if (w != NULL) {
		*w = (struct waiter){fn, arg, in->waiters};
		in->waiters = w;
	}
	in->again = true;
	if (min_index > in->again_index)
		in->again_index = min_index;
	next_step(in);
	return SNIPE_OK;
}

void agent_assigned(agent *a, const rcds_lease_reply *r)
{
	for (size_t i = 0; i < r->n; i++) {
		struct agent_inst *in = find(a, r->assigned[i].urn);
		if (in == NULL || (in->epoch != r->assigned[i].epoch && in->index < r->index) ||
		    (!in->proc_open && in->phase == PH_IDLE && !in->busy && in->index < r->index))
			agent_reconcile(a, r->assigned[i].urn, r->index, NULL, NULL);
	}
	if (r->truncated)
		return;
	for (size_t i = 0; i < a->ninst; i++) {
		struct agent_inst *in = a->inst[i];
		if (!in->proc_open || in->index >= r->index)
			continue;
		bool listed = false;
		for (size_t k = 0; k < r->n && !listed; k++)
			listed = strcmp(r->assigned[k].urn, in->urn) == 0;
		if (!listed)
			agent_reconcile(a, in->urn, r->index, NULL, NULL);
	}
}

int agent_inst_by_key(agent *a, const uint8_t *pk, agent_proc_ref *out)
{
	for (size_t i = 0; i < a->ninst; i++) {
		struct agent_inst *in = a->inst[i];
		if (in->proc_open && memcmp(in->key_pk, pk, SNIPE_PK_BYTES) == 0) {
			snprintf(out->urn, sizeof(out->urn), "%s", in->urn);
			out->epoch = in->epoch;
			snprintf(out->ckpt_dir, sizeof(out->ckpt_dir), "%s", in->ckpt_dir);
			return SNIPE_OK;
		}
	}
	return SNIPE_ENOTFOUND;
}

void agent_kill_all(agent *a)
{
	for (size_t i = 0; i < a->ninst; i++) {
		struct agent_inst *in = a->inst[i];
		if (in->proc_open) {
			kill(-in->pid, SIGKILL);
			kill(in->pid, SIGKILL);
			agent_watchdog_track(a, in->pid, false);
			pid_record(in, false);
		}
	}
}

void agent_forget_all(agent *a)
{
	for (size_t i = 0; i < a->ninst; i++) {
		struct agent_inst *in = a->inst[i];
		settle(in, SNIPE_EUNAVAIL, "the agent is stopping");
		if (in->spec != NULL)
			snipe__proc_spec__free_unpacked(in->spec, NULL);
		free(in);
	}
	free(a->inst);
	a->inst = NULL;
	a->ninst = a->capinst = 0;
}

/* ---------------------------------------------------------------- orphans */

int agent_kill_orphans(agent *a)
{
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/run", a->cfg->state);
	DIR *d = opendir(dir);
	int killed = 0;
	if (d == NULL)
		return 0;
	for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
		char path[8192], state;
		uint64_t recorded, start;
		int pid = 0;
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		FILE *f = fopen(path, "r");
		bool ours = f != NULL && fscanf(f, "%d %" SCNu64, &pid, &recorded) == 2 && pid > 1 &&
		            sni_proc_stat(pid, &state, &start) == SNIPE_OK && start == recorded &&
		            state != 'Z' && state != 'X';
		if (f != NULL)
			fclose(f);
		if (ours) {
			snipe_log(SNIPE_LOG_WARN, "supervise", "killing orphan pid=%d (%s)", pid,
			          e->d_name);
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			killed++;
		}
		unlink(path);
	}
	closedir(d);
	return killed;
}
