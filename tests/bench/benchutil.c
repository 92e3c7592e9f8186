/*
 * benchutil.c — helpers the benchmarks share (see benchutil.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"
#include "sni.h"

int bu_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

int bu_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

const char *bu_verdict(bool met)
{
	return met ? "met" : "missed";
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void bu_remove_tree(const char *path)
{
	nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void bu_last_line(const char *path, char *buf, size_t len)
{
	char line[1024];
	FILE *f = fopen(path, "r");
	snprintf(buf, len, "(nothing in %s)", path);
	while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if (line[0] != '\0')
			snprintf(buf, len, "%s", line);
	}
	if (f != NULL)
		fclose(f);
}

int bu_belonging(const char *dir, pid_t *pids, int max)
{
	DIR *d = opendir("/proc");
	int n = 0;
	size_t dl = strlen(dir);
	for (struct dirent *e = d != NULL ? readdir(d) : NULL; e != NULL && n < max;
	     e = readdir(d)) {
		char path[300], buf[4096];
		pid_t pid = (pid_t)atoi(e->d_name);
		if (pid <= 1 || pid == getpid() || !sni_pid_alive(pid))
			continue;
		snprintf(path, sizeof(path), "/proc/%d/cwd", (int)pid);
		ssize_t len = readlink(path, buf, sizeof(buf) - 1);
		bool ours = len > 0 && (size_t)len >= dl && strncmp(buf, dir, dl) == 0 &&
		            (buf[dl] == '/' || (size_t)len == dl);
		snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		len = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
		if (fd >= 0)
			close(fd);
		for (ssize_t i = 0; i < len; i++)
			buf[i] = buf[i] == '\0' ? ' ' : buf[i];
		buf[len > 0 ? len : 0] = '\0';
		ours = ours || strstr(buf, dir) != NULL;
		if (ours)
			pids[n++] = pid;
	}
	if (d != NULL)
		closedir(d);
	return n;
}

double bu_cpu_s(pid_t pid, bool children)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	size_t n = f != NULL ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
	if (f != NULL)
		fclose(f);
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');
	unsigned long long v[4] = {0};
	/* after the command: state is field 3; utime, stime, cutime, cstime are 14-17 */
	if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu "
	                        "%llu", &v[0], &v[1], &v[2], &v[3]) != 4)
		return 0;
	unsigned long long t = v[0] + v[1] + (children ? v[2] + v[3] : 0);
	return (double)t / (double)sysconf(_SC_CLK_TCK);
}

/* ---------------------------------------------------------------- clusters */

int bu_run(char *const argv[], rlim_t nofile, const char *out)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		struct rlimit rl = {nofile, nofile};
		static const char msg[] = "cannot set RLIMIT_NOFILE\n";
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0)
			_exit(126);
		if (nofile != 0 && setrlimit(RLIMIT_NOFILE, &rl) != 0) {
			ssize_t w = write(fd, msg, sizeof(msg) - 1);
			_exit(w < 0 ? 126 : 125);
		}
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		close_range(3, ~0u, 0); /* our sockets are not the daemons' business */
		execv(argv[0], argv);
		_exit(127);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int bu_cluster_up(struct bu_cluster *c, const char *snipe_bin, const char *dir, int hosts,
                  rlim_t nofile, char *err, size_t errlen)
{
	char out[512], line[2048], n[16], kerr[256];
	memset(c, 0, sizeof(*c));
	snprintf(c->dir, sizeof(c->dir), "%s", dir);
	if (mkdir(c->dir, 0700) != 0) {
		c->dir[0] = '\0'; /* not ours to remove */
		return bu_fail(err, errlen, "cannot create %s: %s", dir, strerror(errno));
	}
	snprintf(out, sizeof(out), "%s/up.out", c->dir);
	snprintf(n, sizeof(n), "%d", hosts);
	char *const argv[] = {(char *)snipe_bin, "cluster", "up", "--hosts", n, "--dir", c->dir,
	                      NULL};
	c->started = true;
	if (bu_run(argv, nofile, out) != 0) {
		bu_last_line(out, line, sizeof(line));
		return bu_fail(err, errlen, "snipe cluster up failed: %s", line);
	}
	FILE *f = fopen(out, "r");
	while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if (strncmp(line, "export SNIPE_CATALOG=", 21) == 0)
			snprintf(c->endpoints, sizeof(c->endpoints), "%s", line + 21);
		if (strncmp(line, "export SNIPE_KEY=", 17) == 0)
			snprintf(c->key_path, sizeof(c->key_path), "%s", line + 17);
	}
	if (f != NULL)
		fclose(f);
	if (c->endpoints[0] == '\0' || c->key_path[0] == '\0')
		return bu_fail(err, errlen, "snipe cluster up printed no SNIPE_CATALOG/SNIPE_KEY (%s)",
		               out);
	if (snipe_key_load(c->key_path, &c->admin, kerr, sizeof(kerr)) != SNIPE_OK)
		return bu_fail(err, errlen, "admin key: %s", kerr);
	return 0;
}

int bu_cluster_down(struct bu_cluster *c, const char *snipe_bin, bool keep, char *err,
                    size_t errlen)
{
	char out[512], line[1024];
	int rc = 0;
	snipe_key_free(c->admin);
	c->admin = NULL;
	if (c->started) {
		c->started = false;
		snprintf(out, sizeof(out), "%s/down.out", c->dir);
		char *const argv[] = {(char *)snipe_bin, "cluster", "down", "--dir", c->dir, NULL};
		if (bu_run(argv, 0, out) != 0) {
			bu_last_line(out, line, sizeof(line));
			rc = bu_fail(err, errlen, "snipe cluster down failed: %s", line);
		}
		pid_t left[64];
		int n = 0;
		for (int waited = 0; waited <= 5000; waited += 100) {
			n = bu_belonging(c->dir, left, 64);
			if (n == 0)
				break;
			nanosleep(&(struct timespec){0, 100 * 1000000L}, NULL);
		}
		for (int i = 0; i < n; i++) {
			char path[64], cmd[256] = "";
			snprintf(path, sizeof(path), "/proc/%d/comm", (int)left[i]);
			FILE *f = fopen(path, "r");
			if (f != NULL && fgets(cmd, sizeof(cmd), f) != NULL)
				cmd[strcspn(cmd, "\n")] = '\0';
			if (f != NULL)
				fclose(f);
			fprintf(stderr, "%s: pid %d (%s) of %s still runs 5 s after cluster down: killing "
			        "it\n", program_invocation_short_name, (int)left[i], cmd, c->dir);
			kill(left[i], SIGKILL);
		}
		if (n > 0 && rc == 0)
			rc = bu_fail(err, errlen, "%d processes of %s outlived snipe cluster down", n,
			             c->dir);
	}
	if (!keep && rc == 0 && c->dir[0] != '\0')
		bu_remove_tree(c->dir);
	return rc;
}

pid_t bu_agent_pid(const struct bu_cluster *c, const char *host)
{
	char path[512], line[256], prog[64], name[64];
	int p;
	pid_t pid = -1;
	snprintf(path, sizeof(path), "%s/pids", c->dir);
	FILE *f = fopen(path, "r");
	while (f != NULL && fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "%d %63s %63s", &p, prog, name) == 3 &&
		    strcmp(prog, "snipe-agentd") == 0 && strcmp(name, host) == 0)
			pid = p;
	if (f != NULL)
		fclose(f);
	return pid;
}
