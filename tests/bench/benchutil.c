/*
 * benchutil.c — helpers the benchmarks share (see benchutil.h).
 */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
