/*
 * test_policy_fleet.c - policy_check_fleet (blackouts name calendars of the
 * fleet, every wave selects somebody) and policy_summary.
 */
#include "policy_test.h"

static const char *const examples[] = {
	"standard.yaml", "urgent-security.yaml", "platform-patch.yaml",
};

static int setup_fleet(void **state)
{
	*state = pt_example_fleet();
	return 0;
}

static int teardown_fleet(void **state)
{
	fleet_free(*state);
	return 0;
}

static void test_examples_pass(void **state)
{
	const ws_fleet *f = *state;
	for (size_t i = 0; i < sizeof(examples) / sizeof(examples[0]); i++) {
		ws_policy *p = pt_example(examples[i]);
		ws_diags d;
		ws_diags_init(&d);
		int rc = policy_check_fleet(p, examples[i], f, &d);
		char *got = wt_diags_text(&d);
		assert_string_equal(got, "");
		assert_int_equal(rc, 0);
		free(got);
		ws_diags_free(&d);
		policy_free(p);
	}
}

static void test_unknown_calendar(void **state)
{
	const ws_fleet *f = *state;
	ws_policy *p = pt_parse_ok(PT_HEAD
		"  release_kinds: [standard]\n"
		"  schedule:\n"
		"    blackouts: [payroll, month-end, xmas]\n"
		"  waves: [{name: a, select: {}}]\n");
	ws_diags d;
	ws_diags_init(&d);
	assert_int_equal(policy_check_fleet(p, "p.yaml", f, &d), WS_EINVAL);
	char *got = wt_diags_text(&d);
	assert_string_equal(got,
		"p.yaml:8:26: unknown calendar \"month-end\" (the fleet has: month-end-close, "
		"payroll, holiday-freeze)\n"
		"p.yaml:8:37: unknown calendar \"xmas\" (the fleet has: month-end-close, payroll, "
		"holiday-freeze)");
	free(got);
	ws_diags_free(&d);
	/* No diagnostics list: the verdict alone. */
	assert_int_equal(policy_check_fleet(p, "p.yaml", f, NULL), WS_EINVAL);
	policy_free(p);
}

static void test_fleet_without_calendars(void **state)
{
	(void)state;
	const char *fy = "apiVersion: wavesched/v1\nkind: Fleet\n"
			 "clusters: [{name: c1, hosting: shared}]\n"
			 "tenants: [{slug: t1, cluster: c1}]\n";
	ws_diags d;
	ws_diags_init(&d);
	ws_fleet *f = fleet_parse("f.yaml", fy, strlen(fy), &d);
	assert_non_null(f);
	ws_policy *p = pt_parse_ok(PT_HEAD "  release_kinds: [standard]\n"
				   "  schedule: {blackouts: [payroll]}\n  waves: [{name: a, select: {}}]\n");
	assert_int_equal(policy_check_fleet(p, "p.yaml", f, &d), WS_EINVAL);
	char *got = wt_diags_text(&d);
	assert_string_equal(got, "p.yaml:7:26: unknown calendar \"payroll\" (the fleet has: none)");
	free(got);
	ws_diags_free(&d);
	policy_free(p);
	fleet_free(f);
}

static void test_wave_selects_nobody(void **state)
{
	const ws_fleet *f = *state;
	ws_policy *p = pt_parse_ok(PT_HEAD
		"  release_kinds: [standard]\n"
		"  waves:\n"
		"    - name: emea\n"
		"      select: {regions: [eu-west]}\n"
		"    - name: shared\n"
		"      select: {hosting: shared}\n"
		"    - {name: ghost, select: {slugs: [no-such-tenant]}}\n"
		"    - name: frozen-only\n"
		"      select: {slugs: [legacy-archive]}\n");
	ws_diags d;
	ws_diags_init(&d);
	/* A wave that selects only a frozen tenant still selects somebody. */
	assert_int_equal(policy_check_fleet(p, "p.yaml", f, &d), WS_EINVAL);
	char *got = wt_diags_text(&d);
	assert_string_equal(got,
		"p.yaml:8:7: wave \"emea\" selects no tenant of the fleet\n"
		"p.yaml:12:7: wave \"ghost\" selects no tenant of the fleet");
	free(got);
	ws_diags_free(&d);
	policy_free(p);
}

/* Both kinds of problems together, sorted by position. */
static void test_both_sorted(void **state)
{
	const ws_fleet *f = *state;
	ws_policy *p = pt_parse_ok(PT_HEAD
		"  release_kinds: [standard]\n"
		"  waves:\n"
		"    - {name: nobody, select: {labels: {env: qa}}}\n"
		"  schedule: {blackouts: [holiday]}\n");
	ws_diags d;
	ws_diags_init(&d);
	assert_int_equal(policy_check_fleet(p, "p.yaml", f, &d), WS_EINVAL);
	char *got = wt_diags_text(&d);
	assert_string_equal(got,
		"p.yaml:8:7: wave \"nobody\" selects no tenant of the fleet\n"
		"p.yaml:9:26: unknown calendar \"holiday\" (the fleet has: month-end-close, payroll, "
		"holiday-freeze)");
	free(got);
	ws_diags_free(&d);
	policy_free(p);
}

static void test_summary(void **state)
{
	(void)state;
	static const char *const want[] = {
		"policy \"standard-quarterly\": 5 waves (training, staging, shared-low-risk, "
		"shared-high, dedicated), unit tenant, releases standard, blackouts month-end-close, "
		"payroll, holiday-freeze",
		"policy \"urgent-security\": 4 waves (canary, non-production, shared, dedicated), "
		"unit tenant, releases urgent, blackouts month-end-close, payroll, holiday-freeze",
		"policy \"platform-patch\": 3 waves (training-clusters, shared-clusters, "
		"dedicated-clusters), unit cluster, releases standard, urgent, blackouts "
		"month-end-close",
	};
	for (size_t i = 0; i < sizeof(examples) / sizeof(examples[0]); i++) {
		ws_policy *p = pt_example(examples[i]);
		char *s = policy_summary(p);
		assert_string_equal(s, want[i]);
		free(s);
		policy_free(p);
	}
	ws_policy *p = pt_parse_ok(PT_HEAD "  release_kinds: [urgent]\n  waves: [{name: only, select: {}}]\n");
	char *s = policy_summary(p);
	assert_string_equal(s, "policy \"p\": 1 wave (only), unit tenant, releases urgent, no blackouts");
	free(s);
	policy_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_examples_pass, setup_fleet, teardown_fleet),
		cmocka_unit_test_setup_teardown(test_unknown_calendar, setup_fleet, teardown_fleet),
		cmocka_unit_test(test_fleet_without_calendars),
		cmocka_unit_test_setup_teardown(test_wave_selects_nobody, setup_fleet, teardown_fleet),
		cmocka_unit_test_setup_teardown(test_both_sorted, setup_fleet, teardown_fleet),
		cmocka_unit_test(test_summary),
	};
	return cmocka_run_group_tests_name("policy/fleet", tests, NULL, wt_teardown_ical);
}
