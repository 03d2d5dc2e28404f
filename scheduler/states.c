/*
 * states.c - the transition tables of the rollout, wave and deployment state
 * machines (see states.h).
 *
 * Each table is indexed [from][event] and holds the next state + 1, so that
 * the zero of an omitted entry means "not allowed": a transition nobody wrote
 * down is refused rather than silently going to state 0.
 */
#include <string.h>
#include "wavesched/states.h"

#define NAMES_LOOKUP(names, count, v) \
	((unsigned)(v) < (unsigned)(count) ? (names)[(v)] : NULL)

static const char *const rollout_names[WS_RO__COUNT] = {
	[WS_RO_PLANNED] = "planned",     [WS_RO_APPROVED] = "approved",
	[WS_RO_RUNNING] = "running",     [WS_RO_PAUSED] = "paused",
	[WS_RO_COMPLETED] = "completed", [WS_RO_PREEMPTED] = "preempted",
	[WS_RO_HALTED] = "halted",       [WS_RO_ABORTED] = "aborted",
	[WS_RO_ROLLED_BACK] = "rolled_back",
};

static const char *const rollout_event_names[WS_RO_EV__COUNT] = {
	[WS_RO_EV_APPROVE] = "approve",   [WS_RO_EV_START] = "start",
	[WS_RO_EV_PAUSE] = "pause",       [WS_RO_EV_RESUME] = "resume",
	[WS_RO_EV_COMPLETE] = "complete", [WS_RO_EV_PREEMPT] = "preempt",
	[WS_RO_EV_RESUME_PREEMPTED] = "resume_preempted",
	[WS_RO_EV_HALT] = "halt",         [WS_RO_EV_ABORT] = "abort",
	[WS_RO_EV_ROLLBACK_DONE] = "rollback_done",
};

static const char *const wave_names[WS_WAVE__COUNT] = {
	[WS_WAVE_PENDING] = "pending",     [WS_WAVE_BACKUP_CHECK] = "backup_check",
	[WS_WAVE_DEPLOYING] = "deploying", [WS_WAVE_VERIFYING] = "verifying",
	[WS_WAVE_SOAKING] = "soaking",     [WS_WAVE_PASSED] = "passed",
	[WS_WAVE_FAILED] = "failed",
};

static const char *const wave_event_names[WS_WAVE_EV__COUNT] = {
	[WS_WAVE_EV_CHECK_BACKUPS] = "check_backups", [WS_WAVE_EV_DEPLOY] = "deploy",
	[WS_WAVE_EV_VERIFY] = "verify",               [WS_WAVE_EV_SOAK] = "soak",
	[WS_WAVE_EV_PASS] = "pass",                   [WS_WAVE_EV_FAIL] = "fail",
};

static const char *const deployment_names[WS_DEP__COUNT] = {
	[WS_DEP_SCHEDULED] = "scheduled",       [WS_DEP_WAITING_WINDOW] = "waiting_window",
	[WS_DEP_DEPLOYING] = "deploying",       [WS_DEP_VERIFYING] = "verifying",
	[WS_DEP_HEALTHY] = "healthy",           [WS_DEP_FAILED] = "failed",
	[WS_DEP_ROLLING_BACK] = "rolling_back", [WS_DEP_ROLLED_BACK] = "rolled_back",
	[WS_DEP_SKIPPED] = "skipped",
};

static const char *const deployment_event_names[WS_DEP_EV__COUNT] = {
	[WS_DEP_EV_WAIT] = "wait",         [WS_DEP_EV_MOVE] = "move",
	[WS_DEP_EV_DEPLOY] = "deploy",     [WS_DEP_EV_VERIFY] = "verify",
	[WS_DEP_EV_HEALTHY] = "healthy",   [WS_DEP_EV_FAIL] = "fail",
	[WS_DEP_EV_ROLLBACK] = "rollback", [WS_DEP_EV_ROLLBACK_DONE] = "rollback_done",
	[WS_DEP_EV_SKIP] = "skip",
};

/* spec/engine.md: planned -> approved -> running <-> paused -> completed;
 * running -> preempted -> running; running/paused -> halted; every state a
 * person can still stop -> aborted; running/halted -> rolled_back. */
#define RO(s) ((unsigned char)((s) + 1))
static const unsigned char rollout_table[WS_RO__COUNT][WS_RO_EV__COUNT] = {
	[WS_RO_PLANNED] = {
		[WS_RO_EV_APPROVE] = RO(WS_RO_APPROVED),
		[WS_RO_EV_ABORT] = RO(WS_RO_ABORTED),
	},
	[WS_RO_APPROVED] = {
		[WS_RO_EV_START] = RO(WS_RO_RUNNING),
		[WS_RO_EV_ABORT] = RO(WS_RO_ABORTED),
	},
	[WS_RO_RUNNING] = {
		[WS_RO_EV_PAUSE] = RO(WS_RO_PAUSED),
		[WS_RO_EV_COMPLETE] = RO(WS_RO_COMPLETED),
		[WS_RO_EV_PREEMPT] = RO(WS_RO_PREEMPTED),
		[WS_RO_EV_HALT] = RO(WS_RO_HALTED),
		[WS_RO_EV_ABORT] = RO(WS_RO_ABORTED),
		[WS_RO_EV_ROLLBACK_DONE] = RO(WS_RO_ROLLED_BACK),
	},
	/* A paused rollout's probes keep running, so a gate can still fail. */
	[WS_RO_PAUSED] = {
		[WS_RO_EV_RESUME] = RO(WS_RO_RUNNING),
		[WS_RO_EV_HALT] = RO(WS_RO_HALTED),
		[WS_RO_EV_ABORT] = RO(WS_RO_ABORTED),
	},
	[WS_RO_PREEMPTED] = {
		[WS_RO_EV_RESUME_PREEMPTED] = RO(WS_RO_RUNNING),
		[WS_RO_EV_ABORT] = RO(WS_RO_ABORTED),
	},
	[WS_RO_HALTED] = {
		[WS_RO_EV_ABORT] = RO(WS_RO_ABORTED),
		[WS_RO_EV_ROLLBACK_DONE] = RO(WS_RO_ROLLED_BACK),
	},
};

/* pending -> backup_check -> deploying -> verifying -> soaking -> passed; every
 * active state -> failed.  A pending wave is not active: a rejected approval
 * or an aborted rollout leaves it pending, so it never looks as if it ran. */
#define WV(s) ((unsigned char)((s) + 1))
static const unsigned char wave_table[WS_WAVE__COUNT][WS_WAVE_EV__COUNT] = {
	[WS_WAVE_PENDING] = {
		[WS_WAVE_EV_CHECK_BACKUPS] = WV(WS_WAVE_BACKUP_CHECK),
	},
	[WS_WAVE_BACKUP_CHECK] = {
		[WS_WAVE_EV_DEPLOY] = WV(WS_WAVE_DEPLOYING),
		[WS_WAVE_EV_FAIL] = WV(WS_WAVE_FAILED),
	},
	[WS_WAVE_DEPLOYING] = {
		[WS_WAVE_EV_VERIFY] = WV(WS_WAVE_VERIFYING),
		[WS_WAVE_EV_FAIL] = WV(WS_WAVE_FAILED),
	},
	[WS_WAVE_VERIFYING] = {
		[WS_WAVE_EV_SOAK] = WV(WS_WAVE_SOAKING),
		[WS_WAVE_EV_FAIL] = WV(WS_WAVE_FAILED),
	},
	[WS_WAVE_SOAKING] = {
		[WS_WAVE_EV_PASS] = WV(WS_WAVE_PASSED),
		[WS_WAVE_EV_FAIL] = WV(WS_WAVE_FAILED),
	},
};

/* scheduled -> waiting_window -> deploying -> verifying -> healthy;
 * deploying/verifying -> failed -> rolling_back -> rolled_back;
 * scheduled/waiting_window -> skipped; waiting_window -> waiting_window (a
 * missed window moved).  Beyond the list in the design note, and required by
 * spec/engine.md: a healthy tenant fails when a probe fails during the soak,
 * and `rollback_wave` rolls back the wave's healthy tenants too; a rollback
 * that fails leaves the tenant failed (fail closed), from where it may be
 * rolled back again with a new attempt. */
#define DP(s) ((unsigned char)((s) + 1))
static const unsigned char deployment_table[WS_DEP__COUNT][WS_DEP_EV__COUNT] = {
	[WS_DEP_SCHEDULED] = {
		[WS_DEP_EV_WAIT] = DP(WS_DEP_WAITING_WINDOW),
		[WS_DEP_EV_SKIP] = DP(WS_DEP_SKIPPED),
	},
	[WS_DEP_WAITING_WINDOW] = {
		[WS_DEP_EV_MOVE] = DP(WS_DEP_WAITING_WINDOW),
		[WS_DEP_EV_DEPLOY] = DP(WS_DEP_DEPLOYING),
		[WS_DEP_EV_SKIP] = DP(WS_DEP_SKIPPED),
	},
	[WS_DEP_DEPLOYING] = {
		[WS_DEP_EV_VERIFY] = DP(WS_DEP_VERIFYING),
		[WS_DEP_EV_FAIL] = DP(WS_DEP_FAILED),
	},
	[WS_DEP_VERIFYING] = {
		[WS_DEP_EV_HEALTHY] = DP(WS_DEP_HEALTHY),
		[WS_DEP_EV_FAIL] = DP(WS_DEP_FAILED),
	},
	[WS_DEP_HEALTHY] = {
		[WS_DEP_EV_FAIL] = DP(WS_DEP_FAILED),
		[WS_DEP_EV_ROLLBACK] = DP(WS_DEP_ROLLING_BACK),
	},
	[WS_DEP_FAILED] = {
		[WS_DEP_EV_ROLLBACK] = DP(WS_DEP_ROLLING_BACK),
	},
	[WS_DEP_ROLLING_BACK] = {
		[WS_DEP_EV_ROLLBACK_DONE] = DP(WS_DEP_ROLLED_BACK),
		[WS_DEP_EV_FAIL] = DP(WS_DEP_FAILED),
	},
};

/* One lookup for the three machines: the table is flat [from * nev + ev]. */
static int table_next(const unsigned char *table, unsigned nstates, unsigned nevents,
		      unsigned from, unsigned ev, int *to)
{
	if (from >= nstates || ev >= nevents)
		return -1;
	unsigned char cell = table[from * nevents + ev];
	if (!cell)
		return -1;
	*to = cell - 1;
	return 0;
}

static int parse_name(const char *const *names, unsigned n, const char *name, int *out)
{
	if (!name)
		return WS_EINVAL;
	for (unsigned i = 0; i < n; i++) {
		if (strcmp(names[i], name) == 0) {
			*out = (int)i;
			return 0;
		}
	}
	return WS_EINVAL;
}

static bool table_terminal(const unsigned char *table, unsigned nstates, unsigned nevents,
			   unsigned s)
{
	if (s >= nstates)
		return false;
	for (unsigned e = 0; e < nevents; e++)
		if (table[s * nevents + e])
			return false;
	return true;
}

const char *ws_rollout_state_name(ws_rollout_state s)
{
	return NAMES_LOOKUP(rollout_names, WS_RO__COUNT, s);
}

const char *ws_wave_state_name(ws_wave_state s)
{
	return NAMES_LOOKUP(wave_names, WS_WAVE__COUNT, s);
}

const char *ws_deployment_state_name(ws_deployment_state s)
{
	return NAMES_LOOKUP(deployment_names, WS_DEP__COUNT, s);
}

const char *ws_rollout_event_name(ws_rollout_event e)
{
	return NAMES_LOOKUP(rollout_event_names, WS_RO_EV__COUNT, e);
}

const char *ws_wave_event_name(ws_wave_event e)
{
	return NAMES_LOOKUP(wave_event_names, WS_WAVE_EV__COUNT, e);
}

const char *ws_deployment_event_name(ws_deployment_event e)
{
	return NAMES_LOOKUP(deployment_event_names, WS_DEP_EV__COUNT, e);
}

int ws_rollout_state_parse(const char *name, ws_rollout_state *out)
{
	int v;
	if (parse_name(rollout_names, WS_RO__COUNT, name, &v))
		return WS_EINVAL;
	*out = (ws_rollout_state)v;
	return 0;
}

int ws_wave_state_parse(const char *name, ws_wave_state *out)
{
	int v;
	if (parse_name(wave_names, WS_WAVE__COUNT, name, &v))
		return WS_EINVAL;
	*out = (ws_wave_state)v;
	return 0;
}

int ws_deployment_state_parse(const char *name, ws_deployment_state *out)
{
	int v;
	if (parse_name(deployment_names, WS_DEP__COUNT, name, &v))
		return WS_EINVAL;
	*out = (ws_deployment_state)v;
	return 0;
}

int ws_rollout_next(ws_rollout_state from, ws_rollout_event event, ws_rollout_state *to)
{
	int v;
	if (table_next(&rollout_table[0][0], WS_RO__COUNT, WS_RO_EV__COUNT, (unsigned)from,
		       (unsigned)event, &v))
		return -1;
	*to = (ws_rollout_state)v;
	return 0;
}

int ws_wave_next(ws_wave_state from, ws_wave_event event, ws_wave_state *to)
{
	int v;
	if (table_next(&wave_table[0][0], WS_WAVE__COUNT, WS_WAVE_EV__COUNT, (unsigned)from,
		       (unsigned)event, &v))
		return -1;
	*to = (ws_wave_state)v;
	return 0;
}

int ws_deployment_next(ws_deployment_state from, ws_deployment_event event,
		       ws_deployment_state *to)
{
	int v;
	if (table_next(&deployment_table[0][0], WS_DEP__COUNT, WS_DEP_EV__COUNT, (unsigned)from,
		       (unsigned)event, &v))
		return -1;
	*to = (ws_deployment_state)v;
	return 0;
}

bool ws_rollout_state_terminal(ws_rollout_state s)
{
	return table_terminal(&rollout_table[0][0], WS_RO__COUNT, WS_RO_EV__COUNT, (unsigned)s);
}

bool ws_wave_state_terminal(ws_wave_state s)
{
	return table_terminal(&wave_table[0][0], WS_WAVE__COUNT, WS_WAVE_EV__COUNT, (unsigned)s);
}

bool ws_deployment_state_terminal(ws_deployment_state s)
{
	return table_terminal(&deployment_table[0][0], WS_DEP__COUNT, WS_DEP_EV__COUNT, (unsigned)s);
}
