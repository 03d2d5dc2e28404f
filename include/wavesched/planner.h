/*
 * planner.h - the planner of spec/policy.md, steps 1 to 6.
 *
 * plan_build() is a pure function of (fleet, policy, release version, release
 * kind, start): no clock, no I/O, no global state, so the same inputs give
 * byte-identical JSON (plan_to_json dumped with WS_PLAN_JSON_FLAGS), whether
 * it runs in the daemon or in `wavectl plan`.
 *
 * Glossary: a *unit* is what moves as one (a tenant, or with `unit: cluster`
 * a whole cluster); a *wave* is a set of units scheduled strictly after the
 * previous wave's last window plus its soak; a *placement* is one unit's
 * window with the reasons that decided it.
 */
#ifndef WAVESCHED_PLANNER_H
#define WAVESCHED_PLANNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <jansson.h>
#include "wavesched/fleet.h"
#include "wavesched/policy.h"

typedef struct ws_plan_input {
	const ws_fleet *fleet;
	const ws_policy *policy;
	const char *release;           /* the release version */
	ws_release_kind kind;
	int64_t start;                 /* unix seconds, UTC */
	/* How a large wave is placed (the plan is the same either way):
	 * threads 0 = up to two, 1 = one; waves of fewer units than
	 * parallel_min_units (0 = 4096) are placed on one thread. */
	int threads;
	size_t parallel_min_units;
} ws_plan_input;

typedef struct ws_plan_tenant {
	const char *slug;
	const char *cluster;
	int64_t window_start, window_end;   /* unix seconds */
	int offset_start, offset_end;       /* the tenant's UTC offset at each, seconds east */
	const char **reasons;
	size_t n_reasons;
} ws_plan_tenant;

typedef struct ws_plan_wave {
	int index;                     /* 1-based, after empty waves are dropped */
	const char *name;
	int64_t start, end;            /* end = the last window's end */
	int64_t soak_s;
	const ws_wave_settings *settings;   /* the policy wave's (overflow: the last wave's) */
	ws_plan_tenant *tenants;       /* in placement order */
	size_t n_tenants;
} ws_plan_wave;

typedef struct ws_plan_unassigned {
	const char *slug;
	const char *reason;
} ws_plan_unassigned;

typedef struct ws_plan {
	const char *policy;
	const char *release;
	int64_t start;
	ws_plan_wave *waves;
	size_t n_waves;
	ws_plan_unassigned *unassigned;  /* sorted by slug */
	size_t n_unassigned;
	const char **warnings;
	size_t n_warnings;
	void *priv;
} ws_plan;

/*
 * Builds the plan.  Fails (NULL, with the reasons in `d`) when the release
 * kind is not allowed by the policy, when the policy names a calendar the
 * fleet does not have, with `unmatched: error` when some candidate matches no
 * wave (all such tenants listed), and with `unit: cluster` on a dependency
 * cycle between clusters (`cluster dependency cycle: a -> b -> a`).
 */
WS_API ws_plan *plan_build(const ws_plan_input *in, ws_diags *d);
WS_API void plan_free(ws_plan *p);

/* The plan JSON of policy.md; a new reference. */
WS_API json_t *plan_to_json(const ws_plan *p);
#define WS_PLAN_JSON_FLAGS (JSON_INDENT(2) | JSON_PRESERVE_ORDER)

/*
 * Writes to `out` exactly the bytes of json_dumps(plan_to_json(p),
 * WS_PLAN_JSON_FLAGS) (no trailing newline), streamed from the plan without
 * building the tree, so memory stays flat however large the fleet.  Flushes
 * `out`.  0, WS_EIO when a write or the flush fails (what was written before
 * the failure stays written), WS_EINVAL when `p` or `out` is NULL.
 */
WS_API int plan_write_json(const ws_plan *p, FILE *out);

/*
 * Tenant deferral (issue 6): places the tenant `slug` and its dependents
 * (transitively, among the `open` tenants: the rollout's deployments that
 * have not started) in one extra wave "deferred" beginning at `start`, by
 * plan_build() itself on a view of the inputs (plan_defer.c), so the window
 * rules are those of every plan.  Dependents pushed after their dependency
 * come as overflow waves of the result; the rollout keeps them all in its
 * one deferred wave.  Fails (NULL, reasons in `d`) when a dependent has
 * already started (`started`), or any tenant that moves finds no window
 * within the horizon.  The result's waves have settings NULL.
 */
typedef struct ws_defer_input {
	const ws_fleet *fleet;
	const ws_policy *policy;       /* the rollout's; the wave takes its defaults */
	const char *release;
	ws_release_kind kind;
	int64_t start;
	const char *slug;
	const char *const *open;
	size_t n_open;
	const char *const *started;
	size_t n_started;
} ws_defer_input;

WS_API ws_plan *plan_defer(const ws_defer_input *in, ws_diags *d);

#endif
