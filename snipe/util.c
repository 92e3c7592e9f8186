/* util.c — small helpers with no better home: error formatting, hex, the clock, and
 * writing a whole buffer. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "sni.h"

int sni_err(char *err, size_t errlen, int code, const char *fmt, ...)
{
	if (err != NULL && errlen > 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}

void sni_hex(const uint8_t *bytes, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[bytes[i] >> 4];
		out[2 * i + 1] = digits[bytes[i] & 0x0f];
	}
	out[2 * n] = '\0';
}

int sni_agent_env(char *err, size_t errlen)
{
	const char *vars[] = {"SNIPE_URN", "SNIPE_AGENT", "SNIPE_PROC_KEY"};
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		if (getenv(vars[i]) == NULL || getenv(vars[i])[0] == '\0')
			return sni_err(err, errlen, SNIPE_ENOENT,
			               "%s is not set: this program was not started by a SNIPE agent",
			               vars[i]);
	return SNIPE_OK;
}

bool sni_grow(void *arrayp, size_t n, size_t *cap, size_t elem)
{
	void **p = arrayp;
	if (n < *cap)
		return true;
	size_t c = *cap ? 2 * *cap : 8;
	void *g = realloc(*p, c * elem);
	if (g == NULL)
		return false;
	*p = g;
	*cap = c;
	return true;
}

uint64_t sni_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t snipe_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int sni_write_all(int fd, const void *buf, size_t n)
{
	const uint8_t *p = buf;
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int sni_daemonize(const char *log_path, char *err, size_t errlen)
{
	int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return sni_err(err, errlen, SNIPE_EIO, "cannot open %s: %s", log_path,
		               strerror(errno));
	if (daemon(1, 1) != 0) {
		close(fd);
		return sni_err(err, errlen, SNIPE_EIO, "cannot become a daemon: %s",
		               strerror(errno));
	}
	int null = open("/dev/null", O_RDWR);
	dup2(null, STDIN_FILENO);
	dup2(null, STDOUT_FILENO);
	dup2(fd, STDERR_FILENO);
	close(null);
	close(fd);
	return SNIPE_OK;
}

int sni_proc_stat(int pid, char *state, uint64_t *start)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = pid > 0 ? fopen(path, "r") : NULL;
	if (f == NULL)
		return SNIPE_ENOENT;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* "pid (comm) S ...": the command may hold spaces and parentheses; the last ')' ends
	 * it. The state is field 3, the start time field 22. */
	const char *p = strrchr(buf, ')');
	if (p == NULL || p[1] != ' ' || p[2] == '\0')
		return SNIPE_EIO;
	*state = p[2];
	for (int field = 2; p != NULL && field < 22; field++)
		p = strchr(p + 1, ' ');
	*start = p != NULL ? strtoull(p + 1, NULL, 10) : 0;
	return SNIPE_OK;
}

bool sni_pid_alive(int pid)
{
	char state;
	uint64_t start;
	return sni_proc_stat(pid, &state, &start) == SNIPE_OK && state != 'Z' && state != 'X';
}
