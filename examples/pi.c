/*
 * pi.c — a long-running SNIPE job in library mode: estimates pi by Monte Carlo, one
 * step of samples at a time, and checkpoints its whole state after every step with
 * snipe_ckpt_save. Started again (after a crash, or on another host when its host
 * dies) it loads the latest checkpoint and goes on from there: the step numbers and
 * the estimate continue instead of starting over.
 *
 *   snipe spawn --name pi --restart always -- snipe-example-pi [STEPS] [SAMPLES] [MS]
 *
 * STEPS steps (default 100) of SAMPLES samples (default 1000000), MS ms apart
 * (default 200). Run outside SNIPE it simply runs without checkpoints.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "snipe.h"

/* Everything the job needs to continue: saved whole, as one buffer. */
struct state {
	uint64_t step;
	uint64_t inside, total;
	uint64_t rng;
};

static uint64_t next(uint64_t *s) /* xorshift64* */
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

static uint64_t arg(int argc, char **argv, int i, uint64_t def)
{
	return argc > i ? strtoull(argv[i], NULL, 10) : def;
}

int main(int argc, char **argv)
{
	uint64_t steps = arg(argc, argv, 1, 100), samples = arg(argc, argv, 2, 1000000);
	uint64_t pause_ms = arg(argc, argv, 3, 200);
	struct state st = {.rng = 0x9e3779b97f4a7c15ull};
	snipe_ckpt *ck = NULL;
	char err[512];

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (snipe_ckpt_open(&ck, err, sizeof(err)) != SNIPE_OK) {
		fprintf(stderr, "pi: no checkpoints (%s)\n", err);
	} else {
		void *buf = NULL;
		size_t len = 0;
		int rc = snipe_ckpt_load(ck, &buf, &len, err, sizeof(err));
		if (rc == SNIPE_OK && len == sizeof(st)) {
			memcpy(&st, buf, sizeof(st));
			printf("resumed from checkpoint at step %" PRIu64 " (host %s, epoch %s)\n",
			       st.step, getenv("SNIPE_HOST"), getenv("SNIPE_EPOCH"));
		} else if (rc == SNIPE_ENOTFOUND) {
			printf("no checkpoint yet: starting at step 0 (host %s)\n", getenv("SNIPE_HOST"));
		} else {
			fprintf(stderr, "pi: cannot load the checkpoint: %s\n", err);
			return 1;
		}
		free(buf);
	}
	while (st.step < steps) {
		for (uint64_t i = 0; i < samples; i++) {
			double x = (double)(next(&st.rng) >> 11) / 9007199254740992.0;
			double y = (double)(next(&st.rng) >> 11) / 9007199254740992.0;
			st.inside += x * x + y * y <= 1.0;
		}
		st.total += samples;
		st.step++;
		printf("step %" PRIu64 ": pi ~ %.6f after %" PRIu64 " samples\n", st.step,
		       4.0 * (double)st.inside / (double)st.total, st.total);
		if (ck != NULL && snipe_ckpt_save(ck, &st, sizeof(st), err, sizeof(err)) != SNIPE_OK)
			fprintf(stderr, "pi: checkpoint at step %" PRIu64 " failed: %s\n", st.step, err);
		struct timespec ts = {(time_t)(pause_ms / 1000), (long)(pause_ms % 1000) * 1000000L};
		nanosleep(&ts, NULL);
	}
	printf("done: pi ~ %.6f\n", 4.0 * (double)st.inside / (double)st.total);
	snipe_ckpt_close(ck);
	return 0;
}
