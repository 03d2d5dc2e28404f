/*
 * test_selector.c - selectors (policy.md "Selectors"): parsing, matching
 * against the example fleet, canonical JSON.
 */
#include "fleet_test.h"

typedef struct fixture {
	ws_fleet *fleet;
	ws_arena *arena;
} fixture;

static int setup(void **state)
{
	fixture *fx = calloc(1, sizeof(*fx));
	fx->fleet = ft_example_fleet();
	fx->arena = ws_arena_new();
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	fixture *fx = *state;
	fleet_free(fx->fleet);
	ws_arena_free(fx->arena);
	free(fx);
	return 0;
}

/* Parses a selector written in flow YAML; NULL with `d` filled on errors. */
static ws_selector *parse_selector(fixture *fx, const char *text, ws_diags *d)
{
	ydoc *doc = ydoc_parse("s.yaml", text, strlen(text), NULL, d);
	assert_non_null(doc);
	ws_selector *s = selector_parse(doc, ydoc_root(doc), fx->arena, d);
	ydoc_free(doc);   /* the selector lives in the arena, not the document */
	return s;
}

/* The slugs the selector matches, comma-separated, in slug order. */
static char *matches(fixture *fx, const char *text)
{
	ws_diags d;
	ws_diags_init(&d);
	ws_selector *s = parse_selector(fx, text, &d);
	char *errors = wt_diags_text(&d);
	assert_string_equal(errors, "");
	free(errors);
	ws_diags_free(&d);
	assert_non_null(s);
	json_t *all = fleet_to_json(fx->fleet);   /* tenants sorted by slug */
	char *out = calloc(1, 1024);
	size_t i;
	json_t *t;
	json_array_foreach(json_object_get(all, "tenants"), i, t) {
		const ws_tenant *tn = fleet_tenant(fx->fleet, json_string_value(json_object_get(t, "slug")));
		if (selector_match(s, fx->fleet, tn)) {
			if (*out)
				strcat(out, ",");
			strcat(out, tn->slug);
		}
	}
	json_decref(all);
	return out;
}

static void expect_matches(fixture *fx, const char *text, const char *expected)
{
	char *got = matches(fx, text);
	assert_string_equal(got, expected);
	free(got);
}

#define ALL "clinic-east,clinic-north,clinic-south,clinic-west,hq-finance,hq-procurement," \
	"integration-hub,labs-shared-services,legacy-archive,payroll-hr,pharmacy-supply," \
	"rehab-partners,staging-hq,training-a,training-b"

static void test_empty_matches_all(void **state)
{
	expect_matches(*state, "{}", ALL);
	expect_matches(*state, "{hosting: [shared, dedicated]}", ALL);
	fixture *fx = *state;
	assert_true(selector_match(NULL, fx->fleet, &fx->fleet->tenants[0]));
}

static void test_slugs_clusters_regions(void **state)
{
	expect_matches(*state, "{slugs: [hq-finance, clinic-east]}", "clinic-east,hq-finance");
	expect_matches(*state, "{slugs: clinic-east}", "clinic-east");
	expect_matches(*state, "{slugs: [no-such-tenant]}", "");
	expect_matches(*state, "{clusters: [shared-training]}", "staging-hq,training-a,training-b");
	expect_matches(*state, "{regions: [us-east]}",
		"clinic-east,clinic-west,labs-shared-services,legacy-archive,rehab-partners");
	expect_matches(*state, "{regions: us-central, clusters: [shared-us-2, dedicated-hq]}",
		"hq-finance,payroll-hr");
}

static void test_hosting_and_criticality(void **state)
{
	expect_matches(*state, "{hosting: dedicated}", "hq-finance,hq-procurement,payroll-hr");
	expect_matches(*state, "{criticality: [critical, high]}",
		"hq-finance,hq-procurement,integration-hub,payroll-hr,pharmacy-supply");
	expect_matches(*state, "{criticality: low}",
		"clinic-west,legacy-archive,rehab-partners,training-a,training-b");
	/* AND across keys, OR within a list: the standard policy's wave. */
	expect_matches(*state, "{hosting: shared, criticality: [low, standard]}",
		"clinic-east,clinic-north,clinic-south,clinic-west,labs-shared-services,"
		"legacy-archive,rehab-partners,staging-hq,training-a,training-b");
}

static void test_labels(void **state)
{
	expect_matches(*state, "{labels: {env: training}}", "training-a,training-b");
	expect_matches(*state, "{labels: {process: [payroll, finance]}}", "hq-finance,payroll-hr");
	expect_matches(*state, "{labels: {entity: parent, process: [finance, integration]}}",
		"hq-finance,integration-hub");
	expect_matches(*state, "{labels: {tier: gold}}", "");   /* a cluster label, not a tenant's */
	expect_matches(*state, "{labels: {env: [training, staging]}}", "staging-hq,training-a,training-b");
}

static void test_not(void **state)
{
	expect_matches(*state, "{not: {hosting: shared}}", "hq-finance,hq-procurement,payroll-hr");
	expect_matches(*state, "{hosting: shared, not: {labels: {env: [training, staging]}}}",
		"clinic-east,clinic-north,clinic-south,clinic-west,integration-hub,"
		"labs-shared-services,legacy-archive,pharmacy-supply,rehab-partners");
	expect_matches(*state, "{not: {}}", "");
	expect_matches(*state, "{not: {not: {slugs: [hq-finance]}}}", "hq-finance");
}

static void test_match_without_fleet(void **state)
{
	fixture *fx = *state;
	ws_diags d;
	ws_diags_init(&d);
	const ws_tenant *t = fleet_tenant(fx->fleet, "hq-finance");
	ws_selector *s = parse_selector(fx, "{slugs: [hq-finance]}", &d);
	assert_true(selector_match(s, NULL, t));
	s = parse_selector(fx, "{hosting: dedicated}", &d);
	assert_true(selector_match(s, fx->fleet, t));
	assert_false(selector_match(s, NULL, t));
	s = parse_selector(fx, "{regions: [us-central]}", &d);
	assert_false(selector_match(s, NULL, t));
	assert_int_equal(d.len, 0);
	ws_diags_free(&d);
}

static void expect_selector_errors(fixture *fx, const char *text, const char *expected)
{
	ws_diags d;
	ws_diags_init(&d);
	ws_selector *s = parse_selector(fx, text, &d);
	assert_null(s);
	ws_diags_sort(&d);
	char *got = wt_diags_text(&d);
	assert_string_equal(got, expected);
	free(got);
	ws_diags_free(&d);
}

static void test_errors(void **state)
{
	fixture *fx = *state;
	expect_selector_errors(fx, "{slug: [a]}",
		"s.yaml:1:2: unknown key \"slug\" in selector (expected one of: slugs, clusters, "
		"hosting, criticality, labels, regions, not)");
	expect_selector_errors(fx, "{hosting: [shared, cloud]}",
		"s.yaml:1:20: invalid hosting \"cloud\" (expected shared or dedicated)");
	expect_selector_errors(fx, "{criticality: urgent}",
		"s.yaml:1:15: invalid criticality \"urgent\" (expected one of: critical, high, standard, low)");
	expect_selector_errors(fx, "{slugs: []}",
		"s.yaml:1:9: empty list for \"slugs\" (it would match no tenant)");
	expect_selector_errors(fx, "{clusters: {a: b}}",
		"s.yaml:1:12: expected a string or a list for \"clusters\", got a mapping");
	expect_selector_errors(fx, "{slugs: [HQ-Finance, [x]]}",
		"s.yaml:1:10: invalid slug \"HQ-Finance\" (expected 1 to 63 characters a-z, 0-9 or -)\n"
		"s.yaml:1:22: expected a string in \"slugs\", got a sequence");
	expect_selector_errors(fx, "{labels: [env]}",
		"s.yaml:1:10: expected a mapping for \"labels\", got a sequence");
	expect_selector_errors(fx, "{labels: {env: {a: b}, tier: ~}}",
		"s.yaml:1:16: expected a string or a list for label \"env\", got a mapping\n"
		"s.yaml:1:30: expected a string or a list for label \"tier\", got null");
	expect_selector_errors(fx, "{not: [hosting]}",
		"s.yaml:1:7: expected a mapping for a selector, got a sequence");
	expect_selector_errors(fx, "shared",
		"s.yaml:1:1: expected a mapping for a selector, got a string");
	/* Every problem, also inside `not`. */
	expect_selector_errors(fx, "{hosting: cloud, not: {criticality: [meh], regions: []}}",
		"s.yaml:1:11: invalid hosting \"cloud\" (expected shared or dedicated)\n"
		"s.yaml:1:38: invalid criticality \"meh\" (expected one of: critical, high, standard, low)\n"
		"s.yaml:1:53: empty list for \"regions\" (it would match no tenant)");
}

static void test_to_json(void **state)
{
	fixture *fx = *state;
	ws_diags d;
	ws_diags_init(&d);
	ws_selector *s = parse_selector(fx,
		"{regions: us-east, not: {criticality: [low, critical]}, labels: {b: [y, x], a: z},"
		" hosting: [dedicated, shared], slugs: [b, a, b]}", &d);
	assert_non_null(s);
	json_t *j = selector_to_json(s);
	char *text = json_dumps(j, JSON_COMPACT);
	assert_string_equal(text,
		"{\"slugs\":[\"a\",\"b\"],\"hosting\":[\"shared\",\"dedicated\"],"
		"\"labels\":{\"a\":[\"z\"],\"b\":[\"x\",\"y\"]},\"regions\":[\"us-east\"],"
		"\"not\":{\"criticality\":[\"critical\",\"low\"]}}");
	/* The canonical form reads back to itself. */
	ws_selector *again = parse_selector(fx, text, &d);
	assert_non_null(again);
	json_t *j2 = selector_to_json(again);
	char *text2 = json_dumps(j2, JSON_COMPACT);
	assert_string_equal(text2, text);
	free(text2);
	json_decref(j2);
	free(text);
	json_decref(j);
	j = selector_to_json(parse_selector(fx, "{}", &d));
	text = json_dumps(j, JSON_COMPACT);
	assert_string_equal(text, "{}");
	free(text);
	json_decref(j);
	assert_null(selector_to_json(NULL));
	assert_int_equal(d.len, 0);
	ws_diags_free(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_empty_matches_all, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slugs_clusters_regions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hosting_and_criticality, setup, teardown),
		cmocka_unit_test_setup_teardown(test_labels, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not, setup, teardown),
		cmocka_unit_test_setup_teardown(test_match_without_fleet, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_to_json, setup, teardown),
	};
	return cmocka_run_group_tests_name("fleet/selector", tests, NULL, wt_teardown_ical);
}
