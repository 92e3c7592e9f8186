/*
 * testprog.h — what the programs the integration tests spawn on their agents
 * (tests/integration/msg_prog.c, ckpt_prog.c) share: the file the test reads, one line
 * per event, each starting with "e<epoch> " (SNIPE_EPOCH) so that a test tells a
 * restarted instance's words from the first one's; strict numbers from the command
 * line; a sleep. Those programs link libsnipe and this only (not Check, not the
 * cluster). Not part of libsnipe.
 */
#ifndef SNIPE_TESTPROG_H
#define SNIPE_TESTPROG_H

#include <stdint.h>

/* The program's name, for what it prints on stderr, and OUT, the file tp_say appends
 * to; both borrowed for the life of the process (argv). Call it first. */
void tp_init(const char *name, const char *out);
/* "e<SNIPE_EPOCH> " and the text as one line appended to OUT with a single write, so
 * lines never interleave; echoed to stdout. A line is cut at 1 KiB. */
void tp_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* s as a whole decimal number; exits 2, saying so on stderr, if it is not one. */
uint64_t tp_number(const char *s);
/* Sleeps ms milliseconds, resuming after signals. */
void tp_sleep_ms(uint64_t ms);

#endif
