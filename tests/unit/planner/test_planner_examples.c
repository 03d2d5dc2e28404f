/*
 * test_planner_examples.c - the three example policies against the example
 * fleet (examples/), release 17.0.4, plans starting 2026-12-01 00:00 UTC.
 *
 * What the example fleet gives (fleet.yaml): every tenant is on 17.0.3
 * except the frozen legacy-archive; hq-finance, hq-procurement and
 * pharmacy-supply depend on integration-hub, payroll-hr and
 * labs-shared-services on hq-finance.  Calendars (America/Chicago):
 * month-end-close (hard, critical and high tenants) the last three days and
 * the first day of each month; payroll (soft, process payroll/finance) the
 * 14th and 15th; holiday-freeze (soft, everyone) 2026-12-23 to 2027-01-02
 * UTC.  Times in the comments are computed by hand from these.
 */
#include "planner_test.h"

#define START "2026-12-01T00:00:00Z"
#define NOMW "no maintenance windows: slot from wave start"

typedef struct ex {
	ws_fleet *fleet;
} ex;

static char *ex_path(const char *rel)
{
	const char *root = getenv("WS_FIXTURES");
	assert_non_null(root);
	char *p = NULL;
	assert_true(asprintf(&p, "%s/examples/%s", root, rel) > 0);
	return p;
}

static int ex_setup(void **state)
{
	ex *e = calloc(1, sizeof(*e));
	ws_diags d;
	ws_diags_init(&d);
	char *path = ex_path("fleet.yaml");
	e->fleet = fleet_parse_file(path, &d);
	free(path);
	pt_expect_no_diags(&d);
	ws_diags_free(&d);
	assert_non_null(e->fleet);
	*state = e;
	return 0;
}

static int ex_teardown(void **state)
{
	ex *e = *state;
	fleet_free(e->fleet);
	free(e);
	return wt_teardown_ical(state);
}

static ws_policy *ex_policy(const char *name)
{
	char *rel = NULL;
	assert_true(asprintf(&rel, "policies/%s.yaml", name) > 0);
	char *path = ex_path(rel);
	ws_diags d;
	ws_diags_init(&d);
	ws_policy *p = policy_parse_file(path, &d);
	pt_expect_no_diags(&d);
	ws_diags_free(&d);
	free(path);
	free(rel);
	assert_non_null(p);
	return p;
}

static ws_plan *ex_plan(const ex *e, const ws_policy *p, ws_release_kind kind, const char *start)
{
	return pt_plan_release(e->fleet, p, "17.0.4", kind, start);
}

/*
 * Checks that hold for any plan of the example fleet: legacy-archive
 * (frozen) is nowhere; no critical or high tenant's window meets
 * month-end-close (hard: even urgent releases respect it); with
 * `soft_respected`, no window meets payroll (finance and payroll tenants)
 * or holiday-freeze.
 */
static void ex_check_blackouts(const ex *e, const ws_plan *plan, bool soft_respected)
{
	assert_null(pt_find(plan, "legacy-archive", NULL));
	assert_null(pt_unassigned(plan, "legacy-archive"));
	for (size_t i = 0; i < plan->n_waves; i++) {
		for (size_t j = 0; j < plan->waves[i].n_tenants; j++) {
			const ws_plan_tenant *t = &plan->waves[i].tenants[j];
			const ws_tenant *ft = fleet_tenant(e->fleet, t->slug);
			assert_non_null(ft);
			int64_t s = t->window_start, x = t->window_end;
			if (ft->criticality >= CRIT_HIGH && pt_in_calendar(e->fleet, "month-end-close", s, x))
				fail_msg("%s deploys in month-end-close", t->slug);
			if (!soft_respected)
				continue;
			if (pt_in_calendar(e->fleet, "holiday-freeze", s, x))
				fail_msg("%s deploys in holiday-freeze", t->slug);
			bool finance = false;
			for (size_t l = 0; l < ft->n_labels; l++)
				finance |= strcmp(ft->labels[l].key, "process") == 0 &&
					   (strcmp(ft->labels[l].value, "finance") == 0 ||
					    strcmp(ft->labels[l].value, "payroll") == 0);
			if (finance && pt_in_calendar(e->fleet, "payroll", s, x))
				fail_msg("%s deploys in payroll", t->slug);
		}
	}
}

/*
 * standard-quarterly: training (soak 1h), staging (24h), shared-low-risk,
 * shared-high, dedicated (24h), then overflow-1 for the tenants that depend
 * on hq-finance (dedicated is the last wave).  Cap 2 per cluster, and the
 * clusters' own (hq and procurement 1, shared-us-1 3, shared-us-2 2).
 *
 *   1 training: no windows, one 30 min slot at 00:00 for both.
 *   2 staging from 01:30 (00:30 + 1h).
 *   3 shared-low-risk from 12-02 02:00 (02:00 + 24h): the low ones first;
 *     clinic-west Fri 22:00 MST, rehab-partners daily 01:00 EST, the three
 *     standard clinics Sat 23:00 local; ends 12-06 08:00Z.
 *   4 shared-high from 12-06 10:00: integration-hub Sat 12-12 22:00 CST.
 *   5 dedicated from 12-13 10:00: pharmacy-supply (pushed after
 *     integration-hub; high before critical) Sat 12-19 03:00 CST,
 *     hq-finance and hq-procurement Sun 12-20.
 *   6 overflow-1 from 12-21 11:00: Sun 12-27 lies in holiday-freeze, so
 *     labs-shared-services and payroll-hr go on Sun 2027-01-03.
 */
static void test_standard_quarterly(void **state)
{
	ex *e = *state;
	ws_policy *p = ex_policy("standard");
	ws_plan *plan = ex_plan(e, p, WS_RELEASE_STANDARD, START);
	assert_string_equal(plan->policy, "standard-quarterly");
	assert_int_equal(plan->n_waves, 6);
	pt_expect_wave(plan, 1, "training", START, "2026-12-01T00:30:00Z", 3600, "training-a training-b");
	pt_expect_wave(plan, 2, "staging", "2026-12-01T01:30:00Z", "2026-12-01T02:00:00Z", 86400,
		       "staging-hq");
	pt_expect_wave(plan, 3, "shared-low-risk", "2026-12-02T02:00:00Z", "2026-12-06T08:00:00Z", 7200,
		       "clinic-west rehab-partners clinic-east clinic-north clinic-south");
	pt_expect_wave(plan, 4, "shared-high", "2026-12-06T10:00:00Z", "2026-12-13T08:00:00Z", 7200,
		       "integration-hub");
	pt_expect_wave(plan, 5, "dedicated", "2026-12-13T10:00:00Z", "2026-12-20T11:00:00Z", 86400,
		       "pharmacy-supply hq-finance hq-procurement");
	pt_expect_wave(plan, 6, "overflow-1", "2026-12-21T11:00:00Z", "2027-01-03T11:00:00Z", 86400,
		       "labs-shared-services payroll-hr");
	pt_expect_tenant(plan, "training-a", 1, "2026-11-30T18:00:00-06:00 2026-11-30T18:30:00-06:00 | "
			 "selected by wave \"training\"; " NOMW);
	pt_expect_tenant(plan, "clinic-west", 3, "2026-12-04T22:00:00-07:00 2026-12-05T01:00:00-07:00 | "
			 "selected by wave \"shared-low-risk\"");
	pt_expect_tenant(plan, "integration-hub", 4, "2026-12-12T22:00:00-06:00 2026-12-13T02:00:00-06:00 | "
			 "selected by wave \"shared-high\"");
	pt_expect_tenant(plan, "pharmacy-supply", 5, "2026-12-19T03:00:00-06:00 2026-12-19T05:00:00-06:00 | "
			 "selected by wave \"shared-high\"; after dependency integration-hub (wave 4)");
	pt_expect_tenant(plan, "hq-finance", 5, "2026-12-20T01:00:00-06:00 2026-12-20T05:00:00-06:00 | "
			 "selected by wave \"dedicated\"");
	pt_expect_tenant(plan, "labs-shared-services", 6, "2027-01-03T00:00:00-05:00 "
			 "2027-01-03T04:00:00-05:00 | selected by wave \"shared-low-risk\"; "
			 "after dependency hq-finance (wave 5); "
			 "blackout holiday-freeze until 2027-01-02T00:00:00Z");
	pt_expect_tenant(plan, "payroll-hr", 6, "2027-01-03T01:00:00-06:00 2027-01-03T05:00:00-06:00 | "
			 "selected by wave \"dedicated\"; after dependency hq-finance (wave 5); "
			 "blackout holiday-freeze until 2027-01-02T00:00:00Z");
	pt_expect_unassigned(plan, "");
	pt_expect_warnings(plan,
		"tenant labs-shared-services pushed past the last wave into overflow-1 (after dependency hq-finance)\n"
		"tenant payroll-hr pushed past the last wave into overflow-1 (after dependency hq-finance)");
	ex_check_blackouts(e, plan, true);
	plan_free(plan);

	policy_free(p);
}

/*
 * urgent-security: slots of 30 min from each wave start, soak 15 min, cap 3
 * per cluster (shared-us-2's own 2 is smaller).  month-end-close holds
 * (hard); payroll and holiday-freeze are soft and break_glass ignores them.
 *
 *   1 canary (max_tenants 1): training-a, the first of the least critical.
 *   2 non-production from 00:45: training-b, staging-hq.
 *   3 shared from 01:30: clinic-west and rehab-partners take shared-us-2's
 *     two places, clinic-east waits for 02:00; integration-hub (high) is in
 *     month-end-close (11-28 to 12-02 00:00 CST) until 12-02 06:00Z.
 *   4 dedicated from 12-02 06:45, 5 overflow-1 from 07:30.
 */
static void test_urgent_security(void **state)
{
	ex *e = *state;
	ws_policy *p = ex_policy("urgent-security");
	pt_expect_failure(e->fleet, p, WS_RELEASE_STANDARD, START,
			  "policy \"urgent-security\" does not allow standard releases (release_kinds: [urgent])");
	ws_plan *plan = ex_plan(e, p, WS_RELEASE_URGENT, START);
	assert_int_equal(plan->n_waves, 5);
	pt_expect_wave(plan, 1, "canary", START, "2026-12-01T00:30:00Z", 900, "training-a");
	pt_expect_wave(plan, 2, "non-production", "2026-12-01T00:45:00Z", "2026-12-01T01:15:00Z", 900,
		       "training-b staging-hq");
	pt_expect_wave(plan, 3, "shared", "2026-12-01T01:30:00Z", "2026-12-02T06:30:00Z", 900,
		       "clinic-west rehab-partners clinic-east clinic-north clinic-south integration-hub");
	pt_expect_wave(plan, 4, "dedicated", "2026-12-02T06:45:00Z", "2026-12-02T07:15:00Z", 900,
		       "pharmacy-supply hq-finance hq-procurement");
	pt_expect_wave(plan, 5, "overflow-1", "2026-12-02T07:30:00Z", "2026-12-02T08:00:00Z", 900,
		       "labs-shared-services payroll-hr");
	pt_expect_tenant(plan, "clinic-east", 3, "2026-11-30T21:00:00-05:00 2026-11-30T21:30:00-05:00 | "
			 "selected by wave \"shared\"; slot from wave start; "
			 "cluster shared-us-2 full until 2026-12-01T02:00:00Z");
	pt_expect_tenant(plan, "integration-hub", 3, "2026-12-02T00:00:00-06:00 2026-12-02T00:30:00-06:00 | "
			 "selected by wave \"shared\"; slot from wave start; "
			 "blackout month-end-close until 2026-12-02T06:00:00Z");
	pt_expect_tenant(plan, "hq-finance", 4, "2026-12-02T00:45:00-06:00 2026-12-02T01:15:00-06:00 | "
			 "selected by wave \"dedicated\"; slot from wave start");
	ex_check_blackouts(e, plan, false);
	plan_free(plan);

	/* In the holiday freeze: break_glass deploys right away. */
	plan = ex_plan(e, p, WS_RELEASE_URGENT, "2026-12-24T00:00:00Z");
	pt_expect_tenant(plan, "training-a", 1, "2026-12-23T18:00:00-06:00 2026-12-23T18:30:00-06:00 | "
			 "selected by wave \"canary\"; slot from wave start");
	assert_true(pt_in_calendar(e->fleet, "holiday-freeze", pt_find(plan, "training-a", NULL)->window_start,
				   pt_find(plan, "training-a", NULL)->window_end));
	ex_check_blackouts(e, plan, false);
	plan_free(plan);

	/* In payroll (Jan 14-15 CST): hq-finance deploys inside it. */
	plan = ex_plan(e, p, WS_RELEASE_URGENT, "2027-01-14T06:00:00Z");
	const ws_plan_tenant *hq = pt_find(plan, "hq-finance", NULL);
	assert_non_null(hq);
	assert_true(pt_in_calendar(e->fleet, "payroll", hq->window_start, hq->window_end));
	for (size_t i = 0; i < hq->n_reasons; i++)
		assert_null(strstr(hq->reasons[i], "payroll"));
	ex_check_blackouts(e, plan, false);
	plan_free(plan);
	policy_free(p);
}

/*
 * standard-quarterly started 2027-01-25: shared-high from 01-31 10:00Z puts
 * integration-hub on Sat 02-06; dedicated starts 02-07 10:00Z, after that
 * Sunday's 01:00 CST.  hq-finance's next Sunday, 02-14, is payroll (soft,
 * finance) until 02-15 00:00 CST: it goes on 02-21.  overflow-1 starts
 * 02-22 11:00Z; payroll-hr's Sunday 02-28 is month-end-close (hard) until
 * 03-01 00:00 CST: it goes on 03-07.
 */
static void test_standard_respects_payroll_and_month_end(void **state)
{
	ex *e = *state;
	ws_policy *p = ex_policy("standard");
	ws_plan *plan = ex_plan(e, p, WS_RELEASE_STANDARD, "2027-01-25T00:00:00Z");
	pt_expect_wave(plan, 5, "dedicated", "2027-02-07T10:00:00Z", "2027-02-21T11:00:00Z", 86400,
		       "pharmacy-supply hq-finance hq-procurement");
	pt_expect_tenant(plan, "hq-finance", 5, "2027-02-21T01:00:00-06:00 2027-02-21T05:00:00-06:00 | "
			 "selected by wave \"dedicated\"; blackout payroll until 2027-02-15T06:00:00Z");
	pt_expect_tenant(plan, "hq-procurement", 5, "2027-02-14T02:00:00-06:00 2027-02-14T05:00:00-06:00 | "
			 "selected by wave \"dedicated\"");
	pt_expect_tenant(plan, "payroll-hr", 6, "2027-03-07T01:00:00-06:00 2027-03-07T05:00:00-06:00 | "
			 "selected by wave \"dedicated\"; after dependency hq-finance (wave 5); "
			 "blackout month-end-close until 2027-03-01T06:00:00Z");
	ex_check_blackouts(e, plan, true);
	plan_free(plan);
	policy_free(p);
}

/*
 * platform-patch (unit: cluster, soak 12h, horizon 60d).  shared-training
 * has training tenants (training-clusters) and staging-hq (shared-clusters):
 * the later wins, training-clusters is left empty and dropped.  dedicated-hq
 * depends on shared-us-1 (hq-finance -> integration-hub), shared-us-2 on
 * dedicated-hq (labs-shared-services -> hq-finance): past the last wave.
 *
 *   1 shared-clusters: shared-training has no windows (slot at 00:00),
 *     shared-us-1 Sat 12-05 23:00 CST; ends 12-06 08:00Z.
 *   2 dedicated-clusters from 12-06 20:00: Sun 12-13 01:00 CST.
 *   3 overflow-1 from 12-13 23:00: shared-us-2 Sat 12-19 23:00 EST, every
 *     tenant in its own offset (clinic-west Denver).
 */
static void test_platform_patch(void **state)
{
	ex *e = *state;
	ws_policy *p = ex_policy("platform-patch");
	ws_plan *plan = ex_plan(e, p, WS_RELEASE_STANDARD, START);
	assert_int_equal(plan->n_waves, 3);
	pt_expect_wave(plan, 1, "shared-clusters", START, "2026-12-06T08:00:00Z", 43200,
		       "staging-hq training-a training-b clinic-north clinic-south integration-hub "
		       "pharmacy-supply");
	pt_expect_wave(plan, 2, "dedicated-clusters", "2026-12-06T20:00:00Z", "2026-12-13T11:00:00Z", 43200,
		       "hq-finance payroll-hr hq-procurement");
	pt_expect_wave(plan, 3, "overflow-1", "2026-12-13T23:00:00Z", "2026-12-20T07:00:00Z", 43200,
		       "clinic-east clinic-west labs-shared-services rehab-partners");
	pt_expect_tenant(plan, "training-a", 1, "2026-11-30T18:00:00-06:00 2026-11-30T18:30:00-06:00 | "
			 "moves with cluster shared-training; " NOMW);
	pt_expect_tenant(plan, "staging-hq", 1, "2026-11-30T18:00:00-06:00 2026-11-30T18:30:00-06:00 | "
			 "selected by wave \"shared-clusters\"; " NOMW);
	pt_expect_tenant(plan, "integration-hub", 1, "2026-12-05T23:00:00-06:00 2026-12-06T02:00:00-06:00 | "
			 "selected by wave \"shared-clusters\"");
	pt_expect_tenant(plan, "payroll-hr", 2, "2026-12-13T01:00:00-06:00 2026-12-13T05:00:00-06:00 | "
			 "selected by wave \"dedicated-clusters\"");
	pt_expect_tenant(plan, "clinic-west", 3, "2026-12-19T21:00:00-07:00 2026-12-20T00:00:00-07:00 | "
			 "selected by wave \"shared-clusters\"; after dependency dedicated-hq (wave 2)");
	pt_expect_unassigned(plan, "");
	pt_expect_warnings(plan, "cluster shared-us-2 pushed past the last wave into overflow-1 "
			   "(after dependency dedicated-hq)");
	ex_check_blackouts(e, plan, false);
	plan_free(plan);
	/* Urgent releases may use it too. */
	plan = ex_plan(e, p, WS_RELEASE_URGENT, START);
	assert_int_equal(plan->n_waves, 3);
	plan_free(plan);
	policy_free(p);
}

/* Same inputs, same bytes, built as a tree or streamed. */
static void test_examples_deterministic(void **state)
{
	ex *e = *state;
	const char *names[] = { "standard", "urgent-security", "platform-patch" };
	const ws_release_kind kinds[] = { WS_RELEASE_STANDARD, WS_RELEASE_URGENT, WS_RELEASE_STANDARD };
	for (size_t i = 0; i < 3; i++) {
		ws_policy *p = ex_policy(names[i]);
		ws_plan *a = ex_plan(e, p, kinds[i], START), *b = ex_plan(e, p, kinds[i], START);
		char *ja = pt_json(a), *jb = pt_json(b), *js = pt_json_streamed(a);
		assert_string_equal(ja, jb);
		/* What `wavectl plan --format json` streams is what the service
		 * dumps. */
		assert_string_equal(js, ja);
		free(js);
		free(ja);
		free(jb);
		plan_free(a);
		plan_free(b);
		policy_free(p);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_standard_quarterly),
		cmocka_unit_test(test_urgent_security),
		cmocka_unit_test(test_standard_respects_payroll_and_month_end),
		cmocka_unit_test(test_platform_patch),
		cmocka_unit_test(test_examples_deterministic),
	};
	return cmocka_run_group_tests(tests, ex_setup, ex_teardown);
}
