/*
 * plan_defer.c - where a tenant's deferral puts it and its dependents
 * (issue 6): the planner itself, run on a view of the inputs, so that the
 * windows, blackouts, cluster caps, slots and horizon are exactly those of
 * spec/policy.md step 5 without a second implementation of them.
 *
 * The view: every tenant that does not move is made a non-candidate (it
 * "has" the release version), so a dependency on it is satisfied and it
 * takes no cluster capacity; the policy has one wave, "deferred", that
 * selects every candidate, with the policy's defaults.  A dependent is
 * pushed after its dependency as in step 3 (into overflow waves placed
 * after the deferred wave's windows plus soak), so even within the single
 * deferred wave of the rollout a dependent's window comes after its
 * dependency's.
 */
#include <stdlib.h>
#include <string.h>
#include "wavesched/planner.h"

static bool in_list(const char *const *v, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i], s) == 0)
			return true;
	return false;
}

ws_plan *plan_defer(const ws_defer_input *in, ws_diags *d)
{
	if (!in || !in->fleet || !in->policy || !in->release || !in->slug) {
		ws_diag_add(d, NULL, 0, 0, "defer: a fleet, a policy, a release version and a tenant are required");
		return NULL;
	}
	const ws_fleet *f = in->fleet;
	const ws_tenant *root = fleet_tenant(f, in->slug);
	if (!root) {
		ws_diag_add(d, NULL, 0, 0, "defer: tenant %s is not in the fleet", in->slug);
		return NULL;
	}
	if (!in_list(in->open, in->n_open, in->slug)) {
		ws_diag_add(d, NULL, 0, 0, "defer: tenant %s has no deployment left to defer", in->slug);
		return NULL;
	}
	bool *moving = calloc(f->n_tenants ? f->n_tenants : 1, sizeof(*moving));
	ws_tenant *view = calloc(f->n_tenants ? f->n_tenants : 1, sizeof(*view));
	if (!moving || !view) {
		free(moving);
		free(view);
		ws_diag_add(d, NULL, 0, 0, "defer: out of memory");
		return NULL;
	}
	moving[root - f->tenants] = true;
	/* Dependents, transitively, through the deployments that move: one
	 * already on the release (not in the rollout) satisfies its own
	 * dependents, and one that started cannot follow. */
	int errors = 0;
	for (bool grew = true; grew;) {
		grew = false;
		for (size_t i = 0; i < f->n_tenants; i++) {
			const ws_tenant *t = &f->tenants[i];
			if (moving[i])
				continue;
			bool dep = false;
			for (size_t k = 0; k < t->n_depends_on && !dep; k++)
				dep = t->depends_on_index[k] < f->n_tenants && moving[t->depends_on_index[k]];
			if (!dep)
				continue;
			if (in_list(in->open, in->n_open, t->slug)) {
				moving[i] = true;
				grew = true;
			} else if (in_list(in->started, in->n_started, t->slug) && !moving[i]) {
				ws_diag_add(d, NULL, 0, 0, "defer: %s depends on a tenant that would move, and its "
					    "deployment has already started", t->slug);
				moving[i] = true;   /* reported once */
				errors++;
			}
		}
	}
	ws_plan *plan = NULL;
	if (errors)
		goto done;
	for (size_t i = 0; i < f->n_tenants; i++) {
		view[i] = f->tenants[i];
		if (!moving[i])
			view[i].version = in->release;
	}
	ws_fleet fv = *f;
	fv.tenants = view;
	static ws_selector all;   /* {} */
	ws_wave wave = { .name = "deferred", .select = &all, .s = in->policy->defaults };
	ws_policy pv = *in->policy;
	pv.waves = &wave;
	pv.n_waves = 1;
	pv.unmatched_skip = true;
	ws_plan_input pin = { .fleet = &fv, .policy = &pv, .release = in->release, .kind = in->kind,
			      .start = in->start, .threads = 1 };
	plan = plan_build(&pin, d);
	if (!plan)
		goto done;
	/* Every tenant that moves must have found a window. */
	for (size_t i = 0; i < plan->n_unassigned; i++) {
		ws_diag_add(d, NULL, 0, 0, "defer: %s: %s", plan->unassigned[i].slug, plan->unassigned[i].reason);
		errors++;
	}
	size_t placed = 0;
	for (size_t w = 0; w < plan->n_waves; w++)
		placed += plan->waves[w].n_tenants;
	size_t want = 0;
	for (size_t i = 0; i < f->n_tenants; i++)
		want += moving[i];
	if (!errors && placed != want) {
		/* A moving tenant that is no candidate now: frozen, or on the
		 * release already. */
		for (size_t i = 0; i < f->n_tenants; i++)
			if (moving[i] && (f->tenants[i].frozen || (f->tenants[i].version &&
								    strcmp(f->tenants[i].version, in->release) == 0)))
				ws_diag_add(d, NULL, 0, 0, "defer: %s is %s and cannot be placed", f->tenants[i].slug,
					    f->tenants[i].frozen ? "frozen" : "on the release already");
		errors++;
	}
	/* The settings point into this function's policy view. */
	for (size_t w = 0; plan && w < plan->n_waves; w++)
		plan->waves[w].settings = NULL;
	if (errors) {
		plan_free(plan);
		plan = NULL;
	}
done:
	free(moving);
	free(view);
	return plan;
}
