/* testprog.c — output, numbers and sleep for the programs tests spawn (see testprog.h). */
#include "testprog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *prog_name = "testprog";
static const char *out_path;
static int out_fd = -1;

void tp_init(const char *name, const char *out)
{
	prog_name = name;
	out_path = out;
}

void tp_say(const char *fmt, ...)
{
	char line[1024];
	const char *epoch = getenv("SNIPE_EPOCH");
	int n = snprintf(line, sizeof(line), "e%s ", epoch != NULL ? epoch : "0");
	va_list ap;
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	if (out_fd < 0)
		out_fd = open(out_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (out_fd < 0 || write(out_fd, line, (size_t)n) != n)
		fprintf(stderr, "%s: cannot write %s: %s\n", prog_name, out_path, strerror(errno));
	fputs(line, stdout);
	fflush(stdout);
}

uint64_t tp_number(const char *s)
{
	char *end = NULL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0') {
		fprintf(stderr, "%s: '%s' is not a number\n", prog_name, s);
		exit(2);
	}
	return v;
}

void tp_sleep_ms(uint64_t ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}
