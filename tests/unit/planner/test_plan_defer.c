/*
 * test_plan_defer.c - plan_defer(), the placement of a tenant's deferral
 * (issue 6): the tenant and its dependents among the open deployments, and
 * no one else, placed by the planner's own rules from a given start.
 *
 * The fleet: one cluster k (max_parallel 1), every tenant with a daily
 * 02:00-03:00 UTC window; b and f depend on a, c on b; d depends on a but
 * is on the release already (not in the rollout), e depends on d; x is
 * open and independent.  The policy: soak 1h, blackout "freeze" (hard) all
 * of Monday 2027-01-04.  Start Monday 00:00.
 */
#include "planner_test.h"

#define S "2027-01-04T00:00:00Z"
#define W "windows: [{rrule: \"FREQ=DAILY\", start: \"02:00\", duration: 1h}]"

static const char *const FLEET =
	"clusters:\n  - {name: k, hosting: shared, max_parallel: 1}\n"
	"tenants:\n"
	"  - {slug: a, cluster: k, version: \"1.0\", " W "}\n"
	"  - {slug: b, cluster: k, version: \"1.0\", depends_on: [a], " W "}\n"
	"  - {slug: c, cluster: k, version: \"1.0\", depends_on: [b], " W "}\n"
	"  - {slug: d, cluster: k, version: \"2.0\", depends_on: [a], " W "}\n"
	"  - {slug: e, cluster: k, version: \"1.0\", depends_on: [d], " W "}\n"
	"  - {slug: f, cluster: k, version: \"1.0\", depends_on: [a], " W "}\n"
	"  - {slug: x, cluster: k, version: \"1.0\", " W "}\n"
	"calendars:\n"
	"  - {name: freeze, hard: true, occurrences: [{from: \"2027-01-04T00:00:00Z\", to: \"2027-01-05T00:00:00Z\"}]}\n";

static const char *const POLICY =
	"  release_kinds: [standard]\n"
	"  schedule: {blackouts: [freeze], horizon: 30d}\n"
	"  deferral: {max: 14d}\n"
	"  defaults: {soak: 1h}\n"
	"  waves:\n    - {name: w, select: {}}\n";

static const char *const OPEN[] = { "a", "b", "c", "e", "f", "x" };

static ws_plan *defer(const ws_fleet *f, const ws_policy *p, const char *slug, const char *const *open,
		      size_t n_open, const char *const *started, size_t n_started, ws_diags *d)
{
	ws_defer_input in = {
		.fleet = f, .policy = p, .release = PT_RELEASE, .kind = WS_RELEASE_STANDARD, .start = pt_t(S),
		.slug = slug, .open = open, .n_open = n_open, .started = started, .n_started = n_started,
	};
	return plan_defer(&in, d);
}

static void expect_window(const ws_plan *plan, const char *slug, const char *wave, const char *start)
{
	const ws_plan_wave *w = NULL;
	const ws_plan_tenant *t = pt_find(plan, slug, &w);
	assert_non_null(t);
	assert_string_equal(w->name, wave);
	assert_int_equal(t->window_start, pt_t(start));
	assert_int_equal(t->window_end, pt_t(start) + 3600);
	assert_null(w->settings);   /* they pointed into plan_defer's view */
}

/* a: Monday is frozen, so Tuesday 02:00.  b and f follow a's window plus
 * the soak (overflow-1 from Tuesday 04:00); the cap of 1 puts f (slug
 * after b) a day later.  c follows b's wave, which ends with f on
 * Thursday 03:00, plus 1h: Friday 02:00.  d is on the release: e, which
 * depends only on d, stays; so does x. */
static void test_tenant_and_dependents(void **state)
{
	(void)state;
	ws_fleet *f = pt_fleet(FLEET);
	ws_policy *p = pt_policy(POLICY);
	ws_diags d;
	ws_diags_init(&d);
	ws_plan *plan = defer(f, p, "a", OPEN, 6, NULL, 0, &d);
	pt_expect_no_diags(&d);
	assert_non_null(plan);
	assert_int_equal(plan->n_waves, 3);
	expect_window(plan, "a", "deferred", "2027-01-05T02:00:00Z");
	expect_window(plan, "b", "overflow-1", "2027-01-06T02:00:00Z");
	expect_window(plan, "f", "overflow-1", "2027-01-07T02:00:00Z");
	expect_window(plan, "c", "overflow-2", "2027-01-08T02:00:00Z");
	for (const char *const *s = (const char *const[]){ "d", "e", "x", NULL }; *s; s++) {
		assert_null(pt_find(plan, *s, NULL));
		assert_null(pt_unassigned(plan, *s));
	}
	assert_int_equal(plan->n_unassigned, 0);
	/* the reasons say why: the blackout, the cluster cap, the dependency */
	const ws_plan_tenant *t = pt_find(plan, "a", NULL);
	char *why = pt_describe(t);
	assert_non_null(strstr(why, "blackout freeze until 2027-01-05T00:00:00Z"));
	free(why);
	why = pt_describe(pt_find(plan, "f", NULL));
	assert_non_null(strstr(why, "cluster k full until"));
	free(why);
	why = pt_describe(pt_find(plan, "c", NULL));
	assert_non_null(strstr(why, "after dependency b"));
	free(why);
	plan_free(plan);
	/* A tenant without dependents moves alone. */
	plan = defer(f, p, "x", OPEN, 6, NULL, 0, &d);
	pt_expect_no_diags(&d);
	assert_int_equal(plan->n_waves, 1);
	expect_window(plan, "x", "deferred", "2027-01-05T02:00:00Z");
	assert_int_equal(plan->waves[0].n_tenants, 1);
	plan_free(plan);
	ws_diags_free(&d);
	policy_free(p);
	fleet_free(f);
}

/* A dependent that is not open (not in the list) does not move; one whose
 * deployment started cannot follow: the deferral fails. */
static void test_started_dependent_refuses(void **state)
{
	(void)state;
	ws_fleet *f = pt_fleet(FLEET);
	ws_policy *p = pt_policy(POLICY);
	ws_diags d;
	ws_diags_init(&d);
	static const char *const open[] = { "a", "c", "f" }, *const started[] = { "b" };
	assert_null(defer(f, p, "a", open, 3, started, 1, &d));
	char *got = wt_diags_text(&d);
	assert_non_null(strstr(got, "b depends on a tenant that would move, and its deployment has already started"));
	free(got);
	ws_diags_free(&d);
	/* b out of the rollout altogether: c stays with it; f moves. */
	ws_diags_init(&d);
	ws_plan *plan = defer(f, p, "a", open, 3, NULL, 0, &d);
	pt_expect_no_diags(&d);
	assert_null(pt_find(plan, "b", NULL));
	assert_null(pt_find(plan, "c", NULL));
	expect_window(plan, "f", "overflow-1", "2027-01-06T02:00:00Z");
	plan_free(plan);
	ws_diags_free(&d);
	policy_free(p);
	fleet_free(f);
}

/* Not open, not in the fleet, or no window within the horizon: NULL, with
 * the reason. */
static void test_refusals(void **state)
{
	(void)state;
	ws_fleet *f = pt_fleet(FLEET);
	ws_policy *p = pt_policy(POLICY);
	ws_diags d;
	ws_diags_init(&d);
	static const char *const none[] = { "x" };
	assert_null(defer(f, p, "a", none, 1, NULL, 0, &d));
	assert_null(defer(f, p, "zz", OPEN, 6, NULL, 0, &d));
	char *got = wt_diags_text(&d);
	assert_non_null(strstr(got, "tenant a has no deployment left to defer"));
	assert_non_null(strstr(got, "tenant zz is not in the fleet"));
	free(got);
	ws_diags_free(&d);
	ws_policy *short_h = pt_policy("  release_kinds: [standard]\n"
				       "  schedule: {blackouts: [freeze], horizon: 1d}\n"
				       "  waves:\n    - {name: w, select: {}}\n");
	ws_diags_init(&d);
	assert_null(defer(f, short_h, "x", OPEN, 6, NULL, 0, &d));
	got = wt_diags_text(&d);
	assert_non_null(strstr(got, "defer: x: no window within horizon"));
	free(got);
	ws_diags_free(&d);
	policy_free(short_h);
	policy_free(p);
	fleet_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tenant_and_dependents),
		cmocka_unit_test(test_started_dependent_refuses),
		cmocka_unit_test(test_refusals),
	};
	return cmocka_run_group_tests(tests, NULL, wt_teardown_ical);
}
