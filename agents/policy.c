/*
 * policy.c — restart decisions: whether a process that ended runs again, and after
 * what pause. Pure functions; supervise.c applies them.
 */
#include "agent.h"
#include "sni.h"

uint64_t agent_backoff_ms(uint32_t restarts, uint32_t base_ms, uint32_t max_ms)
{
	if (restarts == 0)
		return 0;
	uint64_t ms = base_ms;
	for (uint32_t i = 1; i < restarts && ms < max_ms; i++)
		ms *= 2;
	return ms < max_ms ? ms : max_ms;
}

bool agent_policy_restart(const Snipe__ProcSpec *spec, int code, uint32_t restarts,
                          const char **state)
{
	*state = code == 0 ? "exited" : "failed";
	if (spec == NULL || !sni_proc_policy_restarts(spec->restart, code))
		return false;
	return spec->max_restarts == 0 || restarts < spec->max_restarts;
}
