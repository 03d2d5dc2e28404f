/*
 * test_planner.c - one test per rule of spec/policy.md "Planner semantics".
 *
 * Every expectation is computed by hand from the fleet and policy written in
 * the test (the comment above each says how).  Plans start on Monday
 * 2027-01-04 00:00 UTC unless a test says otherwise; tenants are UTC unless
 * they name a zone; the release is "2.0", so a tenant without a version or
 * on "1.0" is a candidate.
 */
#include "planner_test.h"

#define S "2027-01-04T00:00:00Z"
#define K "clusters:\n  - {name: k, hosting: shared}\n"
#define STD "  release_kinds: [standard]\n"
#define NOMW "no maintenance windows: slot from wave start"

/* Step 1: frozen tenants and tenants already on the release are not
 * candidates; a tenant without a version is one. */
static void test_candidates(void **state)
{
	(void)state;
	ws_fleet *f = pt_fleet(K "tenants:\n"
		"  - {slug: a, cluster: k, version: \"1.0\"}\n"
		"  - {slug: b, cluster: k, version: \"2.0\"}\n"
		"  - {slug: c, cluster: k, version: \"1.0\", frozen: true}\n"
		"  - {slug: d, cluster: k}\n");
	ws_policy *p = pt_policy(STD "  waves:\n    - {name: all, select: {}}\n");
	ws_plan *plan = pt_plan(f, p, WS_RELEASE_STANDARD, S);
	assert_int_equal(plan->n_waves, 1);
	pt_expect_wave(plan, 1, "all", S, "2027-01-04T00:30:00Z", 0, "a d");
	pt_expect_tenant(plan, "a", 1, "2027-01-04T00:00:00+00:00 2027-01-04T00:30:00+00:00 | "
			 "selected by wave \"all\"; " NOMW);
	pt_expect_unassigned(plan, "");
	pt_expect_warnings(plan, "");
	plan_free(plan);
	policy_free(p);
	fleet_free(f);
}

/* Step 2 selectors, `not` included: the first wave that matches wins. */
static void test_selectors_with_not(void **state)
{
	(void)state;
	ws_fleet *f = pt_fleet("clusters:\n"
		"  - {name: k1, hosting: shared}\n"
		"  - {name: k2, hosting: dedicated}\n"
		"tenants:\n"
		"  - {slug: n1, cluster: k1}\n"
		"  - {slug: t1, cluster: k1, labels: {env: test}}\n"
		"  - {slug: p1, cluster: k1, labels: {env: production}, criticality: low}\n"
		"  - {slug: c1, cluster: k1, labels: {env: production}, criticality: critical}\n"
		"  - {slug: c2, cluster: k2, labels: {env: production}, criticality: critical}\n");
	ws_policy *p = pt_policy(STD "  waves:\n"
		"    - {name: non-prod, select: {not: {labels: {env: production}}}}\n"
		"    - {name: critical-shared, select: {criticality: [critical], not: {hosting: dedicated}}}\n"
		"    - {name: rest, select: {}}\n");
	ws_plan *plan = pt_plan(f, p, WS_RELEASE_STANDARD, S);
	/* n1 has no env label, so `not {env: production}` holds for it. */
	pt_expect_wave(plan, 1, "non-prod", S, "2027-01-04T00:30:00Z", 0, "n1 t1");
	pt_expect_wave(plan, 2, "critical-shared", "2027-01-04T00:30:00Z", "2027-01-04T01:00:00Z", 0, "c1");
	/* Within a wave: low before critical. */
	pt_expect_wave(plan, 3, "rest", "2027-01-04T01:00:00Z", "2027-01-04T01:30:00Z", 0, "p1 c2");
	pt_expect_tenant(plan, "c2", 3, "2027-01-04T01:00:00+00:00 2027-01-04T01:30:00+00:00 | "
			 "selected by wave \"rest\"; " NOMW);
	plan_free(plan);
	policy_free(p);
	fleet_free(f);
}

/* max_tenants takes tenants in (criticality low -> critical, slug) order. */
static void test_max_tenants_order(void **state)
{
	(void)state;
	ws_fleet *f = pt_fleet(K "tenants:\n"
		"  - {slug: zed, cluster: k, criticality: low}\n"
		"  - {slug: amy, cluster: k}\n"
		"  - {slug: bob, cluster: k, criticality: low}\n"
		"  - {slug: cat, cluster: k, criticality: critical}\n"
		"  - {slug: dan, cluster: k, criticality: low}\n");
	ws_policy *p = pt_policy(STD "  waves:\n"
		"    - {name: canary, select: {}, max_tenants: 2}\n"
		"    - {name: rest, select: {}}\n");
	ws_plan *plan = pt_plan(f, p, WS_RELEASE_STANDARD, S);
	pt_expect_wave(plan, 1, "canary", S, "2027-01-04T00:30:00Z", 0, "bob dan");
	pt_expect_wave(plan, 2, "rest", "2027-01-04T00:30:00Z", "2027-01-04T01:00:00Z", 0, "zed amy cat");
	plan_free(plan);
	policy_free(p);
	fleet_free(f);
}

/*
 * Step 3: a <- b <- c chains push b to wave 2 and c past the last wave into
 * overflow-1 (the last wave's settings, a warning).  d depends on a and b
 * and follows the later, b; e depends on a and f, both in wave 1: the tie
 * names the smaller slug.  Slots of 30 min; first soaks 1h, second 3h.
 */
static void test_dependency_chain_and_overflow(void **state)
{
	(void)state;
	ws_fleet *f = pt_fleet(K "tenants:\n"
		"  - {slug: a, cluster: k}\n"
		"  - {slug: b, cluster: k, depends_on: [a]}\n"
		"  - {slug: c, cluster: k, depends_on: [b]}\n"
		"  - {slug: d, cluster: k, depends_on: [a, b]}\n"
		"  - {slug: e, cluster: k, depends_on: [f, a]}\n"
		"  - {slug: f, cluster: k}\n");
	ws_policy *p = pt_policy(STD "  waves:\n"
		"    - {name: first, select: {}, soak: 1h}\n"
		"    - {name: second, select: {criticality: [critical]}, soak: 3h}\n");
	ws_plan *plan = pt_plan(f, p, WS_RELEASE_STANDARD, S);
	assert_int_equal(plan->n_waves, 3);
	pt_expect_wave(plan, 1, "first", S, "2027-01-04T00:30:00Z", 3600, "a f");
	pt_expect_wave(plan, 2, "second", "2027-01-04T01:30:00Z", "2027-01-04T02:00:00Z", 10800, "b e");
	pt_expect_wave(plan, 3, "overflow-1", "2027-01-04T05:00:00Z", "2027-01-04T05:30:00Z", 10800, "c d");
	assert_ptr_equal(plan->waves[2].settings, &p->waves[1].s);
	pt_expect_tenant(plan, "b", 2, "2027-01-04T01:30:00+00:00 2027-01-04T02:00:00+00:00 | "
			 "selected by wave \"first\"; after dependency a (wave 1); " NOMW);
	pt_expect_tenant(plan, "e", 2, "2027-01-04T01:30:00+00:00 2027-01-04T02:00:00+00:00 | "
			 "selected by wave \"first\"; after dependency a (wave 1); " NOMW);
	pt_expect_tenant(plan, "c", 3, "2027-01-04T05:00:00+00:00 2027-01-04T05:30:00+00:00 | "
			 "selected by wave \"first\"; after dependency b (wave 2); " NOMW);
	pt_expect_tenant(plan, "d", 3, "2027-01-04T05:00:00+00:00 2027-01-04T05:30:00+00:00 | "
			 "selected by wave \"first\"; after dependency b (wave 2); " NOMW);
	pt_expect_warnings(plan,
		"tenant c pushed past the last wave into overflow-1 (after dependency b)\n"
		"tenant d pushed past the last wave into overflow-1 (after dependency b)");
	plan_free(plan);
	policy_free(p);
	fleet_free(f);
}

/* A dependency on a non-candidate is satisfied; on a frozen one it warns. */
static void test_dependency_on_frozen(void **state)
{
	(void)state;
	ws_fleet *f = pt_fleet(K "tenants:\n"
		"  - {slug: a, cluster: k, depends_on: [z]}\n"
		"  - {slug: b, cluster: k, depends_on: [y]}\n"
		"  - {slug: y, cluster: k, version: \"2.0\"}\n"
		"  - {slug: z, cluster: k, frozen: true}\n");
	ws_policy *p = pt_policy(STD "  waves:\n    - {name: all, select: {}}\n");
	ws_plan *plan = pt_plan(f, p, WS_RELEASE_STANDARD, S);
	pt_expect_wave(plan, 1, "all", S, "2027-01-04T00:30:00Z", 0, "a b");
	pt_expect_tenant(plan, "a", 1, "2027-01-04T00:00:00+00:00 2027-01-04T00:30:00+00:00 | "
			 "selected by wave \"all\"; " NOMW);
	pt_expect_warnings(plan, "tenant a depends on frozen tenant z");
	pt_expect_unassigned(plan, "");
	plan_free(plan);
	policy_free(p);
	fleet_free(f);
}

/* unmatched: skip leaves x unassigned, and with it whoever depends on it,
 * transitively. */
static void test_unassigned_propagation(void **state)
{
	(void)state;
	ws_fleet *f = pt_fleet(K "tenants:\n"
		"  - {slug: ok, cluster: k, labels: {env: prod}}\n"
		"  - {slug: x, cluster: k}\n"
		"  - {slug: y, cluster: k, labels: {env: prod}, depends_on: [x]}\n"
		"  - {slug: z, cluster: k, labels: {env: prod}, depends_on: [y]}\n");
	ws_policy *p = pt_policy(STD "  unmatched: skip\n  waves:\n"
		"    - {name: prod, select: {labels: {env: prod}}}\n");
	ws_plan *plan = pt_plan(f, p, WS_RELEASE_STANDARD, S);
	pt_expect_wave(plan, 1, "prod", S, "2027-01-04T00:30:00Z", 0, "ok");
	pt_expect_unassigned(plan, "x: matched no wave\ny: depends on unassigned x\n"
			     "z: depends on unassigned y");
	/* y never had a wave, so z was never pushed past the last one. */
	pt_expect_warnings(plan, "");
	plan_free(plan);
	policy_free(p);
	fleet_free(f);
}

/* unmatched: error fails the plan, one diagnostic per tenant, also with
 * unit: cluster (where skip would let them move with their cluster). */
static void test_unmatched_error(void **state)
{
	(void)state;
	ws_fleet *f = pt_fleet(K "tenants:\n"
		"  - {slug: ok, cluster: k, labels: {env: prod}}\n"
		"  - {slug: x, cluster: k}\n"
		"  - {slug: w, cluster: k}\n");
	const char *want = "tenant \"w\" matches no wave (unmatched: error)\n"
			   "tenant \"x\" matches no wave (unmatched: error)";
	ws_policy *p = pt_policy(STD "  unmatched: error\n  waves:\n"
		"    - {name: prod, select: {labels: {env: prod}}}\n");
	pt_expect_failure(f, p, WS_RELEASE_STANDARD, S, want);
	policy_free(p);
	p = pt_policy(STD "  unit: cluster\n  waves:\n"
		"    - {name: prod, select: {labels: {env: prod}}}\n");
	pt_expect_failure(f, p, WS_RELEASE_STANDARD, S, want);
	policy_free(p);
	/* The same fleet with skip: x and w are unassigned. */
	p = pt_policy(STD "  unmatched: skip\n  waves:\n"
		"    - {name: prod, select: {labels: {env: prod}}}\n");
	ws_plan *plan = pt_plan(f, p, WS_RELEASE_STANDARD, S);
	pt_expect_unassigned(plan, "w: matched no wave\nx: matched no wave");
	plan_free(plan);
	policy_free(p);
	fleet_free(f);
}

static void test_release_kind_not_allowed(void **state)
{
	(void)state;
	ws_fleet *f = pt_fleet(K "tenants:\n  - {slug: a, cluster: k}\n");
	ws_policy *p = pt_policy("  release_kinds: [urgent]\n  waves:\n    - {name: all, select: {}}\n");
	pt_expect_failure(f, p, WS_RELEASE_STANDARD, S,
			  "policy \"p\" does not allow standard releases (release_kinds: [urgent])");
	ws_plan *plan = pt_plan(f, p, WS_RELEASE_URGENT, S);
	plan_free(plan);
	policy_free(p);
	p = pt_policy(STD "  waves:\n    - {name: all, select: {}}\n");
	pt_expect_failure(f, p, WS_RELEASE_URGENT, S,
			  "policy \"p\" does not allow urgent releases (release_kinds: [standard])");
	policy_free(p);
	fleet_free(f);
}

static void test_unknown_calendar(void **state)
{
	(void)state;
	ws_fleet *f = pt_fleet(K "tenants:\n  - {slug: a, cluster: k}\n");
	ws_policy *p = pt_policy(STD "  schedule: {blackouts: [nope]}\n  waves:\n"
				 "    - {name: all, select: {}}\n");
	pt_expect_failure(f, p, WS_RELEASE_STANDARD, S,
			  "policy \"p\" names blackout calendar \"nope\", which the fleet does not define");
	policy_free(p);
	fleet_free(f);
}

/*
 * unit: cluster.  ka's tenants are selected by canary (a1) and main (a2):
 * the latest, main, wins and a1 moves with it.  kb has b2 in canary and
 * unmatched b1, but b2 depends on a1, so kb goes after ka, to `last`.
 * Nothing is left in canary: it is dropped and main becomes wave 1.  kc has
 * no selected tenant (unassigned), so kd, whose d1 depends on c1, is too.
 * ka deploys in its own window (02:00 UTC daily, not a2's 00:00): a1 shows
 * it in Berlin time.  kb has no windows: a slot after main's soak of 1h.
 */
static void test_cluster_unit(void **state)
{
	(void)state;
	ws_fleet *f = pt_fleet("clusters:\n"
		"  - {name: ka, hosting: shared, windows: [{rrule: \"FREQ=DAILY\", start: \"02:00\", duration: 1h}]}\n"
		"  - {name: kb, hosting: shared}\n"
		"  - {name: kc, hosting: shared}\n"
		"  - {name: kd, hosting: shared, windows: [{rrule: \"FREQ=DAILY\", start: \"05:00\", duration: 1h}]}\n"
		"tenants:\n"
		"  - {slug: a1, cluster: ka, timezone: Europe/Berlin, labels: {env: canary}}\n"
		"  - {slug: a2, cluster: ka, labels: {env: prod}, windows: [{rrule: \"FREQ=DAILY\", start: \"00:00\", duration: 1h}]}\n"
		"  - {slug: b1, cluster: kb}\n"
		"  - {slug: b2, cluster: kb, labels: {env: canary}, depends_on: [a1]}\n"
		"  - {slug: c1, cluster: kc}\n"
		"  - {slug: d1, cluster: kd, labels: {env: prod}, depends_on: [c1]}\n");
	ws_policy *p = pt_policy(STD "  unit: cluster\n  unmatched: skip\n"
		"  defaults: {soak: 1h}\n  waves:\n"
		"    - {name: canary, select: {labels: {env: canary}}}\n"
		"    - {name: main, select: {labels: {env: prod}}}\n"
		"    - {name: last, select: {labels: {env: last}}}\n");
	ws_plan *plan = pt_plan(f, p, WS_RELEASE_STANDARD, S);
	assert_int_equal(plan->n_waves, 2);
	pt_expect_wave(plan, 1, "main", S, "2027-01-04T03:00:00Z", 3600, "a1 a2");
	pt_expect_wave(plan, 2, "last", "2027-01-04T04:00:00Z", "2027-01-04T04:30:00Z", 3600, "b1 b2");
	pt_expect_tenant(plan, "a1", 1, "2027-01-04T03:00:00+01:00 2027-01-04T04:00:00+01:00 | "
			 "moves with cluster ka");
	pt_expect_tenant(plan, "a2", 1, "2027-01-04T02:00:00+00:00 2027-01-04T03:00:00+00:00 | "
			 "selected by wave \"main\"");
	pt_expect_tenant(plan, "b1", 2, "2027-01-04T04:00:00+00:00 2027-01-04T04:30:00+00:00 | "
			 "moves with cluster kb; after dependency ka (wave 1); " NOMW);
	pt_expect_tenant(plan, "b2", 2, "2027-01-04T04:00:00+00:00 2027-01-04T04:30:00+00:00 | "
			 "selected by wave \"canary\"; after dependency ka (wave 1); " NOMW);
	pt_expect_unassigned(plan, "c1: matched no wave\nd1: depends on unassigned kc");
	pt_expect_warnings(plan, "");
	plan_free(plan);
	policy_free(p);
	fleet_free(f);
}

/* Cluster cycles: one diagnostic per tangle, the shortest cycle through its
 * smallest name (ke -> kg -> ke, not ke -> kf -> kg -> ke). */
static void test_cluster_cycle(void **state)
{
	(void)state;
	ws_fleet *f = pt_fleet("clusters:\n"
		"  - {name: ka, hosting: shared}\n  - {name: kb, hosting: shared}\n"
		"  - {name: kc, hosting: shared}\n  - {name: kd, hosting: shared}\n"
		"  - {name: ke, hosting: shared}\n  - {name: kf, hosting: shared}\n"
		"  - {name: kg, hosting: shared}\n  - {name: kh, hosting: shared}\n"
		"tenants:\n"
		"  - {slug: a1, cluster: ka, depends_on: [b1]}\n"
		"  - {slug: a2, cluster: ka}\n"
		"  - {slug: b1, cluster: kb}\n"
		"  - {slug: b2, cluster: kb, depends_on: [a2]}\n"
		"  - {slug: c1, cluster: kc, depends_on: [d1]}\n"
		"  - {slug: c2, cluster: kc}\n"
		"  - {slug: d1, cluster: kd}\n"
		"  - {slug: d2, cluster: kd, depends_on: [c2]}\n"
		"  - {slug: e1, cluster: ke, depends_on: [f1, g1]}\n"
		"  - {slug: e2, cluster: ke}\n"
		"  - {slug: f1, cluster: kf, depends_on: [g2]}\n"
		"  - {slug: g1, cluster: kg}\n"
		"  - {slug: g2, cluster: kg, depends_on: [e2]}\n"
		"  - {slug: h1, cluster: kh, depends_on: [a1]}\n");
	ws_policy *p = pt_policy(STD "  unit: cluster\n  waves:\n    - {name: all, select: {}}\n");
	pt_expect_failure(f, p, WS_RELEASE_STANDARD, S,
			  "cluster dependency cycle: ka -> kb -> ka\n"
			  "cluster dependency cycle: kc -> kd -> kc\n"
			  "cluster dependency cycle: ke -> kg -> ke");
	policy_free(p);
	/* The same fleet planned per tenant has no cycle at all. */
	p = pt_policy(STD "  waves:\n    - {name: all, select: {}}\n");
	ws_plan *plan = pt_plan(f, p, WS_RELEASE_STANDARD, S);
	assert_int_equal(plan->n_unassigned, 0);
	plan_free(plan);
	policy_free(p);
	fleet_free(f);
}

/*
 * The cap holds at every instant, not just at a window's start.  Cap 2
 * (the cluster's), windows of 4h, 2h and 1h: a 00:00-04:00 and b
 * 01:00-03:00 fill [01:00, 03:00); c 00:30-01:30 starts while only a runs
 * but would be the third at 01:00, so it waits for the next day.  d
 * 03:00-04:00 starts as b ends (half-open windows) and fits; e 03:30-04:00
 * meets a and d until 04:00.
 */
static void test_cap_every_instant(void **state)
{
	(void)state;
	const char *tenants = "tenants:\n"
		"  - {slug: a, cluster: k, windows: [{rrule: \"FREQ=DAILY\", start: \"00:00\", duration: 4h}]}\n"
		"  - {slug: b, cluster: k, windows: [{rrule: \"FREQ=DAILY\", start: \"01:00\", duration: 2h}]}\n"
		"  - {slug: c, cluster: k, windows: [{rrule: \"FREQ=DAILY\", start: \"00:30\", duration: 1h}]}\n"
		"  - {slug: d, cluster: k, windows: [{rrule: \"FREQ=DAILY\", start: \"03:00\", duration: 1h}]}\n"
		"  - {slug: e, cluster: k, windows: [{rrule: \"FREQ=DAILY\", start: \"03:30\", duration: 30m}]}\n";
	char *body = NULL;
	assert_true(asprintf(&body, "clusters:\n  - {name: k, hosting: shared, max_parallel: 2}\n%s",
			     tenants) > 0);
	ws_fleet *f = pt_fleet(body);
	free(body);
	ws_policy *p = pt_policy(STD "  waves:\n    - {name: all, select: {}}\n");
	ws_plan *plan = pt_plan(f, p, WS_RELEASE_STANDARD, S);
	pt_expect_wave(plan, 1, "all", S, "2027-01-05T04:00:00Z", 0, "a b c d e");
	pt_expect_tenant(plan, "a", 1, "2027-01-04T00:00:00+00:00 2027-01-04T04:00:00+00:00 | "
			 "selected by wave \"all\"");
	pt_expect_tenant(plan, "b", 1, "2027-01-04T01:00:00+00:00 2027-01-04T03:00:00+00:00 | "
			 "selected by wave \"all\"");
	pt_expect_tenant(plan, "c", 1, "2027-01-05T00:30:00+00:00 2027-01-05T01:30:00+00:00 | "
			 "selected by wave \"all\"; cluster k full until 2027-01-04T03:00:00Z");
	pt_expect_tenant(plan, "d", 1, "2027-01-04T03:00:00+00:00 2027-01-04T04:00:00+00:00 | "
			 "selected by wave \"all\"");
	pt_expect_tenant(plan, "e", 1, "2027-01-05T03:30:00+00:00 2027-01-05T04:00:00+00:00 | "
			 "selected by wave \"all\"; cluster k full until 2027-01-04T04:00:00Z");
	plan_free(plan);
	policy_free(p);
	fleet_free(f);

	/* The smaller cap wins: the policy's 1 under the cluster's 5.  Each
	 * tenant waits for the one before; c is turned away twice and names
	 * the later stretch (b on the 5th, until 03:00). */
	assert_true(asprintf(&body, "clusters:\n  - {name: k, hosting: shared, max_parallel: 5}\n%s",
			     tenants) > 0);
	f = pt_fleet(body);
	free(body);
	p = pt_policy(STD "  defaults: {max_parallel_per_cluster: 1}\n  waves:\n"
		      "    - {name: all, select: {}}\n");
	plan = pt_plan(f, p, WS_RELEASE_STANDARD, S);
	pt_expect_tenant(plan, "b", 1, "2027-01-05T01:00:00+00:00 2027-01-05T03:00:00+00:00 | "
			 "selected by wave \"all\"; cluster k full until 2027-01-04T04:00:00Z");
	pt_expect_tenant(plan, "c", 1, "2027-01-06T00:30:00+00:00 2027-01-06T01:30:00+00:00 | "
			 "selected by wave \"all\"; cluster k full until 2027-01-05T03:00:00Z");
	pt_expect_tenant(plan, "d", 1, "2027-01-05T03:00:00+00:00 2027-01-05T04:00:00+00:00 | "
			 "selected by wave \"all\"; cluster k full until 2027-01-04T04:00:00Z");
	pt_expect_tenant(plan, "e", 1, "2027-01-06T03:30:00+00:00 2027-01-06T04:00:00+00:00 | "
			 "selected by wave \"all\"; cluster k full until 2027-01-05T04:00:00Z");
	plan_free(plan);
	policy_free(p);
	fleet_free(f);
}

/*
 * The cap per wave at its edge: wave "one" has exactly as many of k's
 * units as k's cap (2), so both share the first window; wave "two" has
 * one more than the cap, so its third unit waits a day.  Windows are
 * daily 01:00-02:00; wave two starts when wave one ends (01-04 02:00,
 * no soak), its first window is 01-05 01:00 and z, last in slug order,
 * finds x and y there.
 */
static void test_cap_at_wave_size(void **state)
{
	(void)state;
	ws_fleet *f = pt_fleet("clusters:\n  - {name: k, hosting: shared, max_parallel: 2}\n"
		"tenants:\n"
		"  - {slug: p, cluster: k, windows: [{rrule: \"FREQ=DAILY\", start: \"01:00\", duration: 1h}]}\n"
		"  - {slug: q, cluster: k, windows: [{rrule: \"FREQ=DAILY\", start: \"01:00\", duration: 1h}]}\n"
		"  - {slug: x, cluster: k, windows: [{rrule: \"FREQ=DAILY\", start: \"01:00\", duration: 1h}]}\n"
		"  - {slug: y, cluster: k, windows: [{rrule: \"FREQ=DAILY\", start: \"01:00\", duration: 1h}]}\n"
		"  - {slug: z, cluster: k, windows: [{rrule: \"FREQ=DAILY\", start: \"01:00\", duration: 1h}]}\n");
	ws_policy *p = pt_policy(STD "  waves:\n"
		"    - {name: one, select: {slugs: [p, q]}}\n"
		"    - {name: two, select: {}}\n");
	ws_plan *plan = pt_plan(f, p, WS_RELEASE_STANDARD, S);
	pt_expect_wave(plan, 1, "one", S, "2027-01-04T02:00:00Z", 0, "p q");
	pt_expect_tenant(plan, "p", 1, "2027-01-04T01:00:00+00:00 2027-01-04T02:00:00+00:00 | "
			 "selected by wave \"one\"");
	pt_expect_tenant(plan, "q", 1, "2027-01-04T01:00:00+00:00 2027-01-04T02:00:00+00:00 | "
			 "selected by wave \"one\"");
	pt_expect_wave(plan, 2, "two", "2027-01-04T02:00:00Z", "2027-01-06T02:00:00Z", 0, "x y z");
	pt_expect_tenant(plan, "x", 2, "2027-01-05T01:00:00+00:00 2027-01-05T02:00:00+00:00 | "
			 "selected by wave \"two\"");
	pt_expect_tenant(plan, "y", 2, "2027-01-05T01:00:00+00:00 2027-01-05T02:00:00+00:00 | "
			 "selected by wave \"two\"");
	pt_expect_tenant(plan, "z", 2, "2027-01-06T01:00:00+00:00 2027-01-06T02:00:00+00:00 | "
			 "selected by wave \"two\"; cluster k full until 2027-01-05T02:00:00Z");
	plan_free(plan);
	policy_free(p);
	fleet_free(f);
}

/*
 * Blackouts.  hard-freeze 4th 00:00-06:00, soft-freeze 4th 06:00-12:00,
 * crit-only (hard, critical tenants) all of the 5th, `unlisted` (hard,
 * everything) not named by the policies.  t and v have 04:00-08:00 daily,
 * w 08:00-10:00.  Without break_glass both freezes block; with it only the
 * hard ones do.
 */
static void test_blackouts(void **state)
{
	(void)state;
	ws_fleet *f = pt_fleet(K "tenants:\n"
		"  - {slug: t, cluster: k, windows: [{rrule: \"FREQ=DAILY\", start: \"04:00\", duration: 4h}]}\n"
		"  - {slug: v, cluster: k, criticality: critical, windows: [{rrule: \"FREQ=DAILY\", start: \"04:00\", duration: 4h}]}\n"
		"  - {slug: w, cluster: k, windows: [{rrule: \"FREQ=DAILY\", start: \"08:00\", duration: 2h}]}\n"
		"calendars:\n"
		"  - {name: hard-freeze, hard: true, occurrences: [{from: \"2027-01-04T00:00:00Z\", to: \"2027-01-04T06:00:00Z\"}]}\n"
		"  - {name: soft-freeze, hard: false, occurrences: [{from: \"2027-01-04T06:00:00Z\", to: \"2027-01-04T12:00:00Z\"}]}\n"
		"  - {name: crit-only, hard: true, applies_to: {criticality: [critical]}, occurrences: [{from: \"2027-01-05T00:00:00Z\", to: \"2027-01-06T00:00:00Z\"}]}\n"
		"  - {name: unlisted, hard: true, occurrences: [{from: \"2027-01-01T00:00:00Z\", to: \"2027-02-01T00:00:00Z\"}]}\n");
	ws_policy *p = pt_policy(STD "  schedule: {blackouts: [hard-freeze, soft-freeze, crit-only]}\n"
				 "  waves:\n    - {name: all, select: {}}\n");
	ws_plan *plan = pt_plan(f, p, WS_RELEASE_STANDARD, S);
	pt_expect_wave(plan, 1, "all", S, "2027-01-06T08:00:00Z", 0, "t w v");
	pt_expect_tenant(plan, "t", 1, "2027-01-05T04:00:00+00:00 2027-01-05T08:00:00+00:00 | "
			 "selected by wave \"all\"; blackout hard-freeze until 2027-01-04T06:00:00Z; "
			 "blackout soft-freeze until 2027-01-04T12:00:00Z");
	pt_expect_tenant(plan, "v", 1, "2027-01-06T04:00:00+00:00 2027-01-06T08:00:00+00:00 | "
			 "selected by wave \"all\"; blackout hard-freeze until 2027-01-04T06:00:00Z; "
			 "blackout soft-freeze until 2027-01-04T12:00:00Z; "
			 "blackout crit-only until 2027-01-06T00:00:00Z");
	pt_expect_tenant(plan, "w", 1, "2027-01-05T08:00:00+00:00 2027-01-05T10:00:00+00:00 | "
			 "selected by wave \"all\"; blackout soft-freeze until 2027-01-04T12:00:00Z");
	plan_free(plan);
	policy_free(p);

	p = pt_policy("  release_kinds: [urgent]\n"
		      "  schedule: {blackouts: [hard-freeze, soft-freeze, crit-only], break_glass: true}\n"
		      "  waves:\n    - {name: all, select: {}}\n");
	plan = pt_plan(f, p, WS_RELEASE_URGENT, S);
	pt_expect_tenant(plan, "t", 1, "2027-01-05T04:00:00+00:00 2027-01-05T08:00:00+00:00 | "
			 "selected by wave \"all\"; blackout hard-freeze until 2027-01-04T06:00:00Z");
	pt_expect_tenant(plan, "v", 1, "2027-01-06T04:00:00+00:00 2027-01-06T08:00:00+00:00 | "
			 "selected by wave \"all\"; blackout hard-freeze until 2027-01-04T06:00:00Z; "
			 "blackout crit-only until 2027-01-06T00:00:00Z");
	pt_expect_tenant(plan, "w", 1, "2027-01-04T08:00:00+00:00 2027-01-04T10:00:00+00:00 | "
			 "selected by wave \"all\"");
	plan_free(plan);
	policy_free(p);
	fleet_free(f);
}

/*
 * Horizon 2d: candidate windows must start before 2027-01-06 00:00.  h's
 * next Sunday (the 10th) is too late; g, in a later wave, depends on it;
 * `edge` starts exactly at the horizon, `inside` a minute before it.
 */
static void test_horizon(void **state)
{
	(void)state;
	ws_fleet *f = pt_fleet(K "tenants:\n"
		"  - {slug: ok, cluster: k, windows: [{rrule: \"FREQ=DAILY\", start: \"01:00\", duration: 1h}]}\n"
		"  - {slug: h, cluster: k, windows: [{rrule: \"FREQ=WEEKLY;BYDAY=SU\", start: \"01:00\", duration: 1h}]}\n"
		"  - {slug: g, cluster: k, depends_on: [h], windows: [{rrule: \"FREQ=DAILY\", start: \"01:00\", duration: 1h}]}\n"
		"  - {slug: edge, cluster: k, windows: [{from: \"2027-01-06T00:00:00Z\", to: \"2027-01-06T01:00:00Z\"}]}\n"
		"  - {slug: inside, cluster: k, windows: [{from: \"2027-01-05T23:59:00Z\", to: \"2027-01-06T00:59:00Z\"}]}\n");
	ws_policy *p = pt_policy(STD "  schedule: {horizon: 2d}\n  waves:\n"
		"    - {name: first, select: {slugs: [ok, h, edge, inside]}}\n"
		"    - {name: second, select: {slugs: [g]}}\n");
	ws_plan *plan = pt_plan(f, p, WS_RELEASE_STANDARD, S);
	assert_int_equal(plan->n_waves, 1);
	pt_expect_wave(plan, 1, "first", S, "2027-01-06T00:59:00Z", 0, "inside ok");
	pt_expect_unassigned(plan, "edge: no window within horizon\ng: depends on unassigned h\n"
			     "h: no window within horizon");
	plan_free(plan);
	policy_free(p);
	fleet_free(f);
}

/*
 * Slots: with respect_windows: false every tenant gets consecutive 1h slots
 * from the wave start (their windows are ignored), two at a time in k; with
 * windows respected, a tenant without windows gets default 30 min slots.
 */
static void test_slots(void **state)
{
	(void)state;
	ws_fleet *f = pt_fleet("clusters:\n  - {name: k, hosting: shared, max_parallel: 2}\n"
		"tenants:\n"
		"  - {slug: a, cluster: k, windows: [{rrule: \"FREQ=DAILY\", start: \"05:00\", duration: 1h}]}\n"
		"  - {slug: b, cluster: k, windows: [{rrule: \"FREQ=DAILY\", start: \"05:00\", duration: 1h}]}\n"
		"  - {slug: c, cluster: k, windows: [{rrule: \"FREQ=DAILY\", start: \"05:00\", duration: 1h}]}\n"
		"  - {slug: n, cluster: k}\n");
	ws_policy *p = pt_policy("  release_kinds: [urgent]\n"
				 "  schedule: {respect_windows: false, slot: 1h}\n"
				 "  waves:\n    - {name: all, select: {}}\n");
	ws_plan *plan = pt_plan(f, p, WS_RELEASE_URGENT, S);
	pt_expect_wave(plan, 1, "all", S, "2027-01-04T02:00:00Z", 0, "a b c n");
	pt_expect_tenant(plan, "a", 1, "2027-01-04T00:00:00+00:00 2027-01-04T01:00:00+00:00 | "
			 "selected by wave \"all\"; slot from wave start");
	pt_expect_tenant(plan, "b", 1, "2027-01-04T00:00:00+00:00 2027-01-04T01:00:00+00:00 | "
			 "selected by wave \"all\"; slot from wave start");
	pt_expect_tenant(plan, "c", 1, "2027-01-04T01:00:00+00:00 2027-01-04T02:00:00+00:00 | "
			 "selected by wave \"all\"; slot from wave start; "
			 "cluster k full until 2027-01-04T01:00:00Z");
	pt_expect_tenant(plan, "n", 1, "2027-01-04T01:00:00+00:00 2027-01-04T02:00:00+00:00 | "
			 "selected by wave \"all\"; slot from wave start; "
			 "cluster k full until 2027-01-04T01:00:00Z");
	plan_free(plan);
	policy_free(p);

	/* Slots must start before the horizon too: 12h slots and a 1d horizon
	 * give two, one tenant at a time (cap 1) takes them (a, b); for c and
	 * n the next slot would start at the horizon itself. */
	p = pt_policy("  release_kinds: [urgent]\n"
		      "  schedule: {respect_windows: false, slot: 12h, horizon: 1d}\n"
		      "  defaults: {max_parallel_per_cluster: 1}\n"
		      "  waves:\n    - {name: all, select: {}}\n");
	plan = pt_plan(f, p, WS_RELEASE_URGENT, S);
	pt_expect_wave(plan, 1, "all", S, "2027-01-05T00:00:00Z", 0, "a b");
	pt_expect_tenant(plan, "b", 1, "2027-01-04T12:00:00+00:00 2027-01-05T00:00:00+00:00 | "
			 "selected by wave \"all\"; slot from wave start; "
			 "cluster k full until 2027-01-04T12:00:00Z");
	pt_expect_unassigned(plan, "c: no window within horizon\nn: no window within horizon");
	plan_free(plan);
	policy_free(p);

	p = pt_policy(STD "  waves:\n    - {name: all, select: {}}\n");
	plan = pt_plan(f, p, WS_RELEASE_STANDARD, S);
	/* a and b fill 05:00 on the 4th, c waits a day; n slots at once. */
	pt_expect_wave(plan, 1, "all", S, "2027-01-05T06:00:00Z", 0, "a b c n");
	pt_expect_tenant(plan, "n", 1, "2027-01-04T00:00:00+00:00 2027-01-04T00:30:00+00:00 | "
			 "selected by wave \"all\"; " NOMW);
	pt_expect_tenant(plan, "c", 1, "2027-01-05T05:00:00+00:00 2027-01-05T06:00:00+00:00 | "
			 "selected by wave \"all\"; cluster k full until 2027-01-04T06:00:00Z");
	plan_free(plan);
	policy_free(p);
	fleet_free(f);
}

/*
 * Daylight saving time, both zones, both ways (RFC 5545 3.3.5 via
 * window_expand): a 02:30 start in the spring gap is read with the offset
 * before the gap (03:30 summer time); an ambiguous autumn time is the first
 * of the two, and a window across the change ends in winter time.  The
 * last tenant lives in Berlin but its window is written in Chicago time:
 * its window is shown with the tenant's (Berlin) offset.
 */
static void test_dst(void **state)
{
	(void)state;
	ws_fleet *f = pt_fleet(K "tenants:\n"
		"  - {slug: chi-autumn, cluster: k, timezone: America/Chicago, windows: [{rrule: \"FREQ=YEARLY;BYMONTH=11;BYMONTHDAY=1\", start: \"01:30\", duration: 2h}]}\n"
		"  - {slug: ber-autumn, cluster: k, timezone: Europe/Berlin, windows: [{rrule: \"FREQ=YEARLY;BYMONTH=10;BYMONTHDAY=25\", start: \"02:30\", duration: 1h}]}\n"
		"  - {slug: chi-spring, cluster: k, timezone: America/Chicago, windows: [{rrule: \"FREQ=YEARLY;BYMONTH=3;BYMONTHDAY=14\", start: \"02:30\", duration: 1h}]}\n"
		"  - {slug: ber-spring, cluster: k, timezone: Europe/Berlin, windows: [{rrule: \"FREQ=YEARLY;BYMONTH=3;BYMONTHDAY=28\", start: \"02:30\", duration: 1h}]}\n"
		"  - {slug: ber-chicago-window, cluster: k, timezone: Europe/Berlin, windows: [{rrule: \"FREQ=YEARLY;BYMONTH=3;BYMONTHDAY=14\", start: \"02:30\", duration: 1h, timezone: America/Chicago}]}\n");
	ws_policy *p = pt_policy(STD "  schedule: {horizon: 200d}\n  waves:\n"
				 "    - {name: all, select: {}}\n");
	ws_plan *plan = pt_plan(f, p, WS_RELEASE_STANDARD, "2026-10-01T00:00:00Z");
	pt_expect_tenant(plan, "chi-autumn", 1, "2026-11-01T01:30:00-05:00 2026-11-01T02:30:00-06:00 | "
			 "selected by wave \"all\"");
	pt_expect_tenant(plan, "ber-autumn", 1, "2026-10-25T02:30:00+02:00 2026-10-25T02:30:00+01:00 | "
			 "selected by wave \"all\"");
	pt_expect_tenant(plan, "chi-spring", 1, "2027-03-14T03:30:00-05:00 2027-03-14T04:30:00-05:00 | "
			 "selected by wave \"all\"");
	pt_expect_tenant(plan, "ber-spring", 1, "2027-03-28T03:30:00+02:00 2027-03-28T04:30:00+02:00 | "
			 "selected by wave \"all\"");
	pt_expect_tenant(plan, "ber-chicago-window", 1, "2027-03-14T09:30:00+01:00 "
			 "2027-03-14T10:30:00+01:00 | selected by wave \"all\"");
	/* The JSON carries the same strings. */
	char *json = pt_json(plan);
	assert_non_null(strstr(json, "\"window_start\": \"2026-10-25T02:30:00+02:00\",\n"
			       "          \"window_end\": \"2026-10-25T02:30:00+01:00\""));
	free(json);
	plan_free(plan);
	policy_free(p);
	fleet_free(f);
}

/*
 * Waves left empty are dropped and the rest renumbered; a dropped wave adds
 * no soak.  ghost (soak 10d) and void (soak 5d) select only `done`, which
 * is on the release.  b depends on a and is pushed from first to second:
 * its reason names a's new number, 1.
 */
static void test_dropped_waves_renumbered(void **state)
{
	(void)state;
	ws_fleet *f = pt_fleet(K "tenants:\n"
		"  - {slug: a, cluster: k}\n"
		"  - {slug: b, cluster: k, depends_on: [a]}\n"
		"  - {slug: c, cluster: k}\n"
		"  - {slug: d, cluster: k}\n"
		"  - {slug: done, cluster: k, version: \"2.0\"}\n");
	ws_policy *p = pt_policy(STD "  waves:\n"
		"    - {name: ghost, select: {slugs: [done]}, soak: 10d}\n"
		"    - {name: first, select: {slugs: [a, b]}, soak: 2h}\n"
		"    - {name: second, select: {slugs: [c]}, soak: 1h}\n"
		"    - {name: void, select: {slugs: [done]}, soak: 5d}\n"
		"    - {name: last, select: {slugs: [d]}}\n");
	ws_plan *plan = pt_plan(f, p, WS_RELEASE_STANDARD, S);
	assert_int_equal(plan->n_waves, 3);
	pt_expect_wave(plan, 1, "first", S, "2027-01-04T00:30:00Z", 7200, "a");
	/* c (depth 0) before b (depth 1). */
	pt_expect_wave(plan, 2, "second", "2027-01-04T02:30:00Z", "2027-01-04T03:00:00Z", 3600, "c b");
	pt_expect_wave(plan, 3, "last", "2027-01-04T04:00:00Z", "2027-01-04T04:30:00Z", 0, "d");
	pt_expect_tenant(plan, "b", 2, "2027-01-04T02:30:00+00:00 2027-01-04T03:00:00+00:00 | "
			 "selected by wave \"first\"; after dependency a (wave 1); " NOMW);
	pt_expect_warnings(plan, "");
	plan_free(plan);
	policy_free(p);
	fleet_free(f);
}

/*
 * Units of a wave go by dependency depth first: x (low, depends on p) comes
 * after y (critical, no dependency) although it is less critical, and with
 * cap 1 and the same window x waits a day.
 */
static void test_depth_order(void **state)
{
	(void)state;
	ws_fleet *f = pt_fleet("clusters:\n  - {name: k, hosting: shared, max_parallel: 1}\n"
		"tenants:\n"
		"  - {slug: p, cluster: k}\n"
		"  - {slug: x, cluster: k, criticality: low, depends_on: [p], windows: [{rrule: \"FREQ=DAILY\", start: \"01:00\", duration: 1h}]}\n"
		"  - {slug: y, cluster: k, criticality: critical, windows: [{rrule: \"FREQ=DAILY\", start: \"01:00\", duration: 1h}]}\n");
	ws_policy *p = pt_policy(STD "  waves:\n"
		"    - {name: pre, select: {slugs: [p]}}\n"
		"    - {name: main, select: {slugs: [x, y]}}\n");
	ws_plan *plan = pt_plan(f, p, WS_RELEASE_STANDARD, S);
	pt_expect_wave(plan, 2, "main", "2027-01-04T00:30:00Z", "2027-01-05T02:00:00Z", 0, "y x");
	pt_expect_tenant(plan, "y", 2, "2027-01-04T01:00:00+00:00 2027-01-04T02:00:00+00:00 | "
			 "selected by wave \"main\"");
	pt_expect_tenant(plan, "x", 2, "2027-01-05T01:00:00+00:00 2027-01-05T02:00:00+00:00 | "
			 "selected by wave \"main\"; cluster k full until 2027-01-04T02:00:00Z");
	plan_free(plan);
	policy_free(p);
	fleet_free(f);
}

/*
 * The order within a wave (depth, criticality, slug) on a wave large
 * enough for the planner's counting sort (600 units, depths 0-2, every
 * criticality) and a small one it sorts otherwise (7 units).  Without
 * windows or cap every unit takes its first slot, so the wave lists its
 * tenants in placement order.  Waves "pre" and "pre2" hold a chain a <- b,
 * so a tenant depending on a has depth 1 and one depending on b depth 2.  The
 * expected order is the rule itself: each depth, then each criticality,
 * the slugs ascending, which the numbering gives.
 */
static void test_wave_order_large_and_small(void **state)
{
	(void)state;
	static const char *const crit[] = { "low", "standard", "high", "critical" };
	char *body = NULL;
	size_t len = 0;
	FILE *y = open_memstream(&body, &len);
	assert_non_null(y);
	fprintf(y, K "tenants:\n  - {slug: a, cluster: k}\n  - {slug: b, cluster: k, depends_on: [a]}\n");
	for (int i = 0; i < 600; i++)
		fprintf(y, "  - {slug: m%03d, cluster: k, criticality: %s%s}\n", i, crit[(i * 7) % 4],
			i % 3 == 0 ? "" : i % 3 == 1 ? ", depends_on: [a]" : ", depends_on: [b]");
	for (int i = 0; i < 7; i++)
		fprintf(y, "  - {slug: s%d, cluster: k, criticality: %s%s}\n", i, crit[(i * 3) % 4],
			i % 2 ? ", depends_on: [b]" : "");
	assert_int_equal(fclose(y), 0);
	ws_fleet *f = pt_fleet(body);
	free(body);
	ws_policy *p = pt_policy(STD "  waves:\n"
		"    - {name: pre, select: {slugs: [a]}}\n"
		"    - {name: pre2, select: {slugs: [b]}}\n"
		"    - {name: small, select: {slugs: [s0, s1, s2, s3, s4, s5, s6]}}\n"
		"    - {name: large, select: {}}\n");
	ws_plan *plan = pt_plan(f, p, WS_RELEASE_STANDARD, S);
	assert_int_equal(plan->n_waves, 4);
	/* large: m%03d by (i % 3, (i * 7) % 4, i). */
	const ws_plan_wave *w = &plan->waves[3];
	assert_int_equal(w->n_tenants, 600);
	size_t k = 0;
	for (int depth = 0; depth < 3; depth++)
		for (int c = 0; c < 4; c++)
			for (int i = 0; i < 600; i++) {
				if (i % 3 != depth || (i * 7) % 4 != c)
					continue;
				char slug[8];
				snprintf(slug, sizeof(slug), "m%03d", i);
				assert_string_equal(w->tenants[k++].slug, slug);
			}
	/* small, criticality (i * 3) % 4: depth 0 s0 low, s4 low, s2 high,
	 * s6 high; depth 2 s3 standard, s1 critical, s5 critical. */
	w = &plan->waves[2];
	assert_int_equal(w->n_tenants, 7);
	const char *small[] = { "s0", "s4", "s2", "s6", "s3", "s1", "s5" };
	for (size_t i = 0; i < 7; i++)
		assert_string_equal(w->tenants[i].slug, small[i]);
	plan_free(plan);
	policy_free(p);
	fleet_free(f);
}

/* Of several windows the earliest occurrence wins, whichever is listed
 * first; a one-off range is a window too. */
static void test_several_windows(void **state)
{
	(void)state;
	ws_fleet *f = pt_fleet(K "tenants:\n"
		"  - {slug: m, cluster: k, windows: [{rrule: \"FREQ=DAILY\", start: \"05:00\", duration: 1h}, "
		"{rrule: \"FREQ=DAILY\", start: \"03:00\", duration: 1h}]}\n"
		"  - {slug: o, cluster: k, windows: [{rrule: \"FREQ=WEEKLY;BYDAY=SU\", start: \"05:00\", duration: 1h}, "
		"{from: \"2027-01-05T12:00:00Z\", to: \"2027-01-05T13:00:00Z\"}]}\n");
	ws_policy *p = pt_policy(STD "  waves:\n    - {name: all, select: {}}\n");
	ws_plan *plan = pt_plan(f, p, WS_RELEASE_STANDARD, S);
	pt_expect_tenant(plan, "m", 1, "2027-01-04T03:00:00+00:00 2027-01-04T04:00:00+00:00 | "
			 "selected by wave \"all\"");
	pt_expect_tenant(plan, "o", 1, "2027-01-05T12:00:00+00:00 2027-01-05T13:00:00+00:00 | "
			 "selected by wave \"all\"");
	plan_free(plan);
	policy_free(p);
	fleet_free(f);
}

/* The JSON of policy.md, key order and all, byte for byte. */
static void test_json_shape(void **state)
{
	(void)state;
	ws_fleet *f = pt_fleet(K "tenants:\n"
		"  - {slug: a, cluster: k, timezone: America/Chicago, windows: [{rrule: \"FREQ=DAILY\", start: \"02:00\", duration: 4h}]}\n"
		"  - {slug: b, cluster: k, depends_on: [z]}\n"
		"  - {slug: u, cluster: k, labels: {env: none}}\n"
		"  - {slug: z, cluster: k, frozen: true}\n");
	ws_policy *p = pt_policy(STD "  unmatched: skip\n  waves:\n"
		"    - {name: canary, select: {not: {labels: {env: none}}}, soak: 2h}\n");
	ws_plan *plan = pt_plan(f, p, WS_RELEASE_STANDARD, S);
	char *json = pt_json(plan);
	assert_string_equal(json,
		"{\n"
		"  \"policy\": \"p\",\n"
		"  \"release\": \"2.0\",\n"
		"  \"start\": \"2027-01-04T00:00:00Z\",\n"
		"  \"waves\": [\n"
		"    {\n"
		"      \"index\": 1,\n"
		"      \"name\": \"canary\",\n"
		"      \"start\": \"2027-01-04T00:00:00Z\",\n"
		"      \"end\": \"2027-01-04T12:00:00Z\",\n"
		"      \"soak_seconds\": 7200,\n"
		"      \"tenants\": [\n"
		"        {\n"
		"          \"slug\": \"a\",\n"
		"          \"cluster\": \"k\",\n"
		"          \"window_start\": \"2027-01-04T02:00:00-06:00\",\n"
		"          \"window_end\": \"2027-01-04T06:00:00-06:00\",\n"
		"          \"reasons\": [\n"
		"            \"selected by wave \\\"canary\\\"\"\n"
		"          ]\n"
		"        },\n"
		"        {\n"
		"          \"slug\": \"b\",\n"
		"          \"cluster\": \"k\",\n"
		"          \"window_start\": \"2027-01-04T00:00:00+00:00\",\n"
		"          \"window_end\": \"2027-01-04T00:30:00+00:00\",\n"
		"          \"reasons\": [\n"
		"            \"selected by wave \\\"canary\\\"\",\n"
		"            \"no maintenance windows: slot from wave start\"\n"
		"          ]\n"
		"        }\n"
		"      ]\n"
		"    }\n"
		"  ],\n"
		"  \"unassigned\": [\n"
		"    {\n"
		"      \"slug\": \"u\",\n"
		"      \"reason\": \"matched no wave\"\n"
		"    }\n"
		"  ],\n"
		"  \"warnings\": [\n"
		"    \"tenant b depends on frozen tenant z\"\n"
		"  ]\n"
		"}");
	free(json);
	plan_free(plan);
	policy_free(p);
	fleet_free(f);
}

/* Nothing to do: an empty plan, still the full shape. */
static void test_nothing_to_do(void **state)
{
	(void)state;
	ws_fleet *f = pt_fleet(K "tenants:\n  - {slug: a, cluster: k, version: \"2.0\"}\n");
	ws_policy *p = pt_policy(STD "  waves:\n    - {name: all, select: {}}\n");
	ws_plan *plan = pt_plan(f, p, WS_RELEASE_STANDARD, S);
	char *json = pt_json(plan);
	assert_string_equal(json, "{\n  \"policy\": \"p\",\n  \"release\": \"2.0\",\n"
			    "  \"start\": \"2027-01-04T00:00:00Z\",\n  \"waves\": [],\n"
			    "  \"unassigned\": [],\n  \"warnings\": []\n}");
	free(json);
	plan_free(plan);
	policy_free(p);
	fleet_free(f);
}

/*
 * Step 2 walks the waves in order and stops at the first one with room.
 * Order: l1, l2 (low), s1, s2 (standard), h1 (high), c1 (critical).  l1
 * takes canary (no env label); l2 (env: prod) skips canary and mid (low)
 * and lands in rest; s1 takes canary's second seat; s2 finds canary full
 * and takes mid's only seat; h1 matches canary and mid, both full, and not
 * rest: unassigned; c1 goes to rest.  Soak 1h each, 30 min slots.
 */
static void test_first_wave_with_room(void **state)
{
	(void)state;
	ws_fleet *f = pt_fleet(K "tenants:\n"
		"  - {slug: c1, cluster: k, criticality: critical}\n"
		"  - {slug: h1, cluster: k, criticality: high}\n"
		"  - {slug: s2, cluster: k, criticality: standard}\n"
		"  - {slug: s1, cluster: k, criticality: standard}\n"
		"  - {slug: l2, cluster: k, criticality: low, labels: {env: prod}}\n"
		"  - {slug: l1, cluster: k, criticality: low}\n");
	ws_policy *p = pt_policy(STD "  unmatched: skip\n  defaults: {soak: 1h}\n  waves:\n"
		"    - {name: canary, select: {not: {labels: {env: prod}}}, max_tenants: 2}\n"
		"    - {name: mid, select: {criticality: [standard, high]}, max_tenants: 1}\n"
		"    - {name: rest, select: {criticality: [critical, low]}}\n");
	ws_plan *plan = pt_plan(f, p, WS_RELEASE_STANDARD, S);
	assert_int_equal(plan->n_waves, 3);
	pt_expect_wave(plan, 1, "canary", S, "2027-01-04T00:30:00Z", 3600, "l1 s1");
	pt_expect_wave(plan, 2, "mid", "2027-01-04T01:30:00Z", "2027-01-04T02:00:00Z", 3600, "s2");
	pt_expect_wave(plan, 3, "rest", "2027-01-04T03:00:00Z", "2027-01-04T03:30:00Z", 3600, "l2 c1");
	pt_expect_unassigned(plan, "h1: no wave with room (max_tenants)");
	plan_free(plan);
	policy_free(p);
	fleet_free(f);
}

/*
 * A chain a <- b <- c <- d, all selected by `w1`, pushed one wave per link:
 * b to w2, c and d past the last wave into overflow-1 and overflow-2, both
 * with w2's settings (soak 3h).  `ghost` selects nobody and is dropped, so
 * the numbers shift (w1 is wave 1) but the overflow names do not.  e
 * depends on `done` (already on the release): satisfied, no push, no
 * warning.  30 min slots: w1 00:00-00:30 + 1h, w2 01:30-02:00 + 3h,
 * overflow-1 05:00-05:30 + 3h, overflow-2 08:30-09:00.
 */
static void test_overflow_chain(void **state)
{
	(void)state;
	ws_fleet *f = pt_fleet(K "tenants:\n"
		"  - {slug: a, cluster: k}\n"
		"  - {slug: b, cluster: k, depends_on: [a]}\n"
		"  - {slug: c, cluster: k, depends_on: [b]}\n"
		"  - {slug: d, cluster: k, depends_on: [c]}\n"
		"  - {slug: e, cluster: k, depends_on: [done]}\n"
		"  - {slug: done, cluster: k, version: \"2.0\"}\n");
	ws_policy *p = pt_policy(STD "  waves:\n"
		"    - {name: ghost, select: {slugs: [done]}, soak: 10d}\n"
		"    - {name: w1, select: {}, soak: 1h}\n"
		"    - {name: w2, select: {slugs: [done]}, soak: 3h}\n");
	ws_plan *plan = pt_plan(f, p, WS_RELEASE_STANDARD, S);
	assert_int_equal(plan->n_waves, 4);
	pt_expect_wave(plan, 1, "w1", S, "2027-01-04T00:30:00Z", 3600, "a e");
	pt_expect_wave(plan, 2, "w2", "2027-01-04T01:30:00Z", "2027-01-04T02:00:00Z", 10800, "b");
	pt_expect_wave(plan, 3, "overflow-1", "2027-01-04T05:00:00Z", "2027-01-04T05:30:00Z", 10800, "c");
	pt_expect_wave(plan, 4, "overflow-2", "2027-01-04T08:30:00Z", "2027-01-04T09:00:00Z", 10800, "d");
	assert_ptr_equal(plan->waves[3].settings, &p->waves[2].s);
	pt_expect_tenant(plan, "d", 4, "2027-01-04T08:30:00+00:00 2027-01-04T09:00:00+00:00 | "
			 "selected by wave \"w1\"; after dependency c (wave 3); " NOMW);
	pt_expect_tenant(plan, "e", 1, "2027-01-04T00:00:00+00:00 2027-01-04T00:30:00+00:00 | "
			 "selected by wave \"w1\"; " NOMW);
	pt_expect_warnings(plan,
		"tenant c pushed past the last wave into overflow-1 (after dependency b)\n"
		"tenant d pushed past the last wave into overflow-2 (after dependency c)");
	pt_expect_unassigned(plan, "");
	plan_free(plan);
	policy_free(p);
	fleet_free(f);
}

/*
 * A wave whose only unit finds no window is dropped after step 5 and adds
 * no soak (wa's 10h): wb starts at the plan's start.  c depends on h and
 * d on c: both are unassigned, each naming its own dependency, although
 * they were in later waves.  Horizon 2d: h's Sunday is too late.
 */
static void test_horizon_drops_wave(void **state)
{
	(void)state;
	ws_fleet *f = pt_fleet(K "tenants:\n"
		"  - {slug: h, cluster: k, windows: [{rrule: \"FREQ=WEEKLY;BYDAY=SU\", start: \"01:00\", duration: 1h}]}\n"
		"  - {slug: b, cluster: k}\n"
		"  - {slug: c, cluster: k, depends_on: [h]}\n"
		"  - {slug: d, cluster: k, depends_on: [c]}\n");
	ws_policy *p = pt_policy(STD "  schedule: {horizon: 2d}\n  waves:\n"
		"    - {name: wa, select: {slugs: [h]}, soak: 10h}\n"
		"    - {name: wb, select: {slugs: [b, c]}, soak: 1h}\n"
		"    - {name: wc, select: {slugs: [d]}, soak: 2h}\n");
	ws_plan *plan = pt_plan(f, p, WS_RELEASE_STANDARD, S);
	assert_int_equal(plan->n_waves, 1);
	pt_expect_wave(plan, 1, "wb", S, "2027-01-04T00:30:00Z", 3600, "b");
	pt_expect_unassigned(plan, "c: depends on unassigned h\nd: depends on unassigned c\n"
			     "h: no window within horizon");
	plan_free(plan);
	policy_free(p);
	fleet_free(f);
}

/*
 * c depends on h and is pushed past the only wave into overflow-1 (step 3);
 * h has no window within the 2-day horizon (step 5), so c ends unassigned
 * too.  No warning may name overflow-1: the plan has no such wave.
 */
static void test_no_warning_for_unassigned_overflow(void **state)
{
	(void)state;
	ws_fleet *f = pt_fleet(K "tenants:\n"
		"  - {slug: h, cluster: k, windows: [{rrule: \"FREQ=WEEKLY;BYDAY=SU\", start: \"01:00\", duration: 1h}]}\n"
		"  - {slug: c, cluster: k, depends_on: [h]}\n");
	ws_policy *p = pt_policy(STD "  schedule: {horizon: 2d}\n  waves:\n"
		"    - {name: w, select: {}}\n");
	ws_plan *plan = pt_plan(f, p, WS_RELEASE_STANDARD, S);
	assert_int_equal(plan->n_waves, 0);
	pt_expect_unassigned(plan, "c: depends on unassigned h\nh: no window within horizon");
	assert_int_equal(plan->n_warnings, 0);
	plan_free(plan);
	policy_free(p);
	fleet_free(f);
}

/*
 * unit: cluster.  Both clusters have one window, 22:00-24:00 New York
 * (03:00-05:00 UTC in January).  `crit` (hard, critical tenants only)
 * covers 04:00-04:30 UTC on the 4th: it binds kx, whose candidate x1 is
 * critical, so kx moves to the 5th; it does not bind ky, whose only
 * critical tenant y1 is frozen (not a candidate).  Tenants show the
 * cluster's window in their own zone: x1 and y2 inherit New York from the
 * cluster, x2 is in Kolkata.  ky (highest candidate criticality standard)
 * is placed before kx (critical).
 */
static void test_cluster_calendar_and_zones(void **state)
{
	(void)state;
	ws_fleet *f = pt_fleet("clusters:\n"
		"  - {name: kx, hosting: shared, timezone: America/New_York, windows: [{rrule: \"FREQ=DAILY\", start: \"22:00\", duration: 2h}]}\n"
		"  - {name: ky, hosting: shared, timezone: America/New_York, windows: [{rrule: \"FREQ=DAILY\", start: \"22:00\", duration: 2h}]}\n"
		"tenants:\n"
		"  - {slug: x1, cluster: kx, criticality: critical}\n"
		"  - {slug: x2, cluster: kx, timezone: Asia/Kolkata}\n"
		"  - {slug: y1, cluster: ky, criticality: critical, frozen: true}\n"
		"  - {slug: y2, cluster: ky}\n"
		"calendars:\n"
		"  - {name: crit, hard: true, applies_to: {criticality: [critical]}, occurrences: [{from: \"2027-01-04T04:00:00Z\", to: \"2027-01-04T04:30:00Z\"}]}\n");
	ws_policy *p = pt_policy(STD "  unit: cluster\n  schedule: {blackouts: [crit]}\n"
				 "  waves:\n    - {name: all, select: {}}\n");
	ws_plan *plan = pt_plan(f, p, WS_RELEASE_STANDARD, S);
	pt_expect_wave(plan, 1, "all", S, "2027-01-05T05:00:00Z", 0, "y2 x1 x2");
	pt_expect_tenant(plan, "y2", 1, "2027-01-03T22:00:00-05:00 2027-01-04T00:00:00-05:00 | "
			 "selected by wave \"all\"");
	pt_expect_tenant(plan, "x1", 1, "2027-01-04T22:00:00-05:00 2027-01-05T00:00:00-05:00 | "
			 "selected by wave \"all\"; blackout crit until 2027-01-04T04:30:00Z");
	pt_expect_tenant(plan, "x2", 1, "2027-01-05T08:30:00+05:30 2027-01-05T10:30:00+05:30 | "
			 "selected by wave \"all\"; blackout crit until 2027-01-04T04:30:00Z");
	pt_expect_unassigned(plan, "");
	plan_free(plan);
	policy_free(p);
	fleet_free(f);
}

/*
 * The horizon counts from the plan's start, not the wave's: 2d ends
 * 2027-01-06 00:00.  w1 ends with a's one-off at 05T12:00, soak 6h, so w2
 * starts 05T18:00.  In w2, n (no windows) takes the 18:00 slot and b its
 * 23:00 window (before the horizon); b2's next window, 06T01:00, is well
 * within two days of the wave start but past the plan's horizon.
 */
static void test_horizon_from_plan_start(void **state)
{
	(void)state;
	ws_fleet *f = pt_fleet(K "tenants:\n"
		"  - {slug: a, cluster: k, windows: [{from: \"2027-01-05T00:00:00Z\", to: \"2027-01-05T12:00:00Z\"}]}\n"
		"  - {slug: b, cluster: k, windows: [{rrule: \"FREQ=DAILY\", start: \"23:00\", duration: 1h}]}\n"
		"  - {slug: b2, cluster: k, windows: [{rrule: \"FREQ=DAILY\", start: \"01:00\", duration: 1h}]}\n"
		"  - {slug: n, cluster: k}\n");
	ws_policy *p = pt_policy(STD "  schedule: {horizon: 2d}\n  waves:\n"
		"    - {name: w1, select: {slugs: [a]}, soak: 6h}\n"
		"    - {name: w2, select: {}}\n");
	ws_plan *plan = pt_plan(f, p, WS_RELEASE_STANDARD, S);
	assert_int_equal(plan->n_waves, 2);
	pt_expect_wave(plan, 1, "w1", S, "2027-01-05T12:00:00Z", 21600, "a");
	pt_expect_wave(plan, 2, "w2", "2027-01-05T18:00:00Z", "2027-01-06T00:00:00Z", 0, "b n");
	pt_expect_tenant(plan, "b", 2, "2027-01-05T23:00:00+00:00 2027-01-06T00:00:00+00:00 | "
			 "selected by wave \"w2\"");
	pt_expect_tenant(plan, "n", 2, "2027-01-05T18:00:00+00:00 2027-01-05T18:30:00+00:00 | "
			 "selected by wave \"w2\"; " NOMW);
	pt_expect_unassigned(plan, "b2: no window within horizon");
	plan_free(plan);
	policy_free(p);
	fleet_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_candidates),
		cmocka_unit_test(test_selectors_with_not),
		cmocka_unit_test(test_max_tenants_order),
		cmocka_unit_test(test_dependency_chain_and_overflow),
		cmocka_unit_test(test_dependency_on_frozen),
		cmocka_unit_test(test_unassigned_propagation),
		cmocka_unit_test(test_unmatched_error),
		cmocka_unit_test(test_release_kind_not_allowed),
		cmocka_unit_test(test_unknown_calendar),
		cmocka_unit_test(test_cluster_unit),
		cmocka_unit_test(test_cluster_cycle),
		cmocka_unit_test(test_cap_every_instant),
		cmocka_unit_test(test_cap_at_wave_size),
		cmocka_unit_test(test_blackouts),
		cmocka_unit_test(test_horizon),
		cmocka_unit_test(test_slots),
		cmocka_unit_test(test_dst),
		cmocka_unit_test(test_dropped_waves_renumbered),
		cmocka_unit_test(test_depth_order),
		cmocka_unit_test(test_wave_order_large_and_small),
		cmocka_unit_test(test_several_windows),
		cmocka_unit_test(test_json_shape),
		cmocka_unit_test(test_nothing_to_do),
		cmocka_unit_test(test_first_wave_with_room),
		cmocka_unit_test(test_overflow_chain),
		cmocka_unit_test(test_horizon_drops_wave),
		cmocka_unit_test(test_no_warning_for_unassigned_overflow),
		cmocka_unit_test(test_cluster_calendar_and_zones),
		cmocka_unit_test(test_horizon_from_plan_start),
	};
	return cmocka_run_group_tests(tests, NULL, wt_teardown_ical);
}
