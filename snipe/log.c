/*
 * log.c — the one logging call: a line per event to stderr with time, program,
 * level and component. Not a log router: daemons that want files redirect stderr.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "sni.h"
#include "snipe.h"

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
static int threshold = -1; /* -1: not yet read from $SNIPE_LOG */
static const char *ident = "snipe";

int snipe_log_parse_level(const char *s, snipe_log_level *out)
{
	for (int i = 0; i < 4; i++) {
		if (s != NULL && strcasecmp(s, level_names[i]) == 0) {
			*out = (snipe_log_level)i;
			return SNIPE_OK;
		}
	}
	return SNIPE_EINVAL;
}

void snipe_log_set_level(snipe_log_level level)
{
	threshold = (int)level;
}

void snipe_log_set_ident(const char *name)
{
	ident = name;
}

static int current_threshold(void)
{
	if (threshold < 0) {
		snipe_log_level l = SNIPE_LOG_INFO;
		snipe_log_parse_level(getenv("SNIPE_LOG"), &l);
		threshold = (int)l;
	}
	return threshold;
}

void snipe_log(snipe_log_level level, const char *component, const char *fmt, ...)
{
	if ((int)level < current_threshold() || (int)level > SNIPE_LOG_ERROR)
		return;
	struct timeval tv;
	gettimeofday(&tv, NULL);
	struct tm tm;
	gmtime_r(&tv.tv_sec, &tm);
	char when[32];
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);

	/* Build the whole line first so concurrent writers do not interleave. */
	char line[2048];
	int n = snprintf(line, sizeof(line), "%s.%03ldZ %s[%ld] %s %s: ", when,
	                 (long)(tv.tv_usec / 1000), ident, (long)getpid(),
	                 level_names[level], component);
	char msg[1800];
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0 || m < 0)
		return;
	/* One event, one line: a control byte (newline, escape...) that came from the
	 * network or a process cannot forge a line of its own or drive a terminal. */
	size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
	for (const unsigned char *p = (const unsigned char *)msg; *p != '\0'; p++) {
		if (len + 5 >= sizeof(line))
			break;
		if (*p < 0x20 || *p == 0x7f)
			len += (size_t)snprintf(line + len, sizeof(line) - len, "\\x%02x", *p);
		else
			line[len++] = (char)*p;
	}
	line[len++] = '\n';
	fwrite(line, 1, len, stderr);
}

void sni_log_limited(sni_log_limit *l, unsigned per_s, snipe_log_level level,
                     const char *component, const char *fmt, ...)
{
	uint64_t second = sni_mono_ms() / 1000;
	if (second != l->second) {
		if (l->suppressed > 0)
			snipe_log(level, component, "%u more like it not logged", l->suppressed);
		l->second = second;
		l->logged = l->suppressed = 0;
	}
	if (l->logged++ >= per_s) {
		l->suppressed++;
		return;
	}
	char text[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	snipe_log(level, component, "%s", text);
}
