/*
 * test_json.c - the canonical JSON of a fleet and ws_json_to_yaml: shape,
 * defaults, sorting, and the fixed point parse(to_json(f)) == f through
 * both YAML and JSON text.
 */
#include "fleet_test.h"

#define DUMP_FLAGS (JSON_SORT_KEYS | JSON_INDENT(2))

static char *dump(const json_t *j, size_t flags)
{
	char *s = json_dumps(j, flags);
	assert_non_null(s);
	return s;
}

static ws_fleet *parse_text(const char *name, const char *text)
{
	ws_diags d;
	ws_diags_init(&d);
	ws_fleet *f = fleet_parse(name, text, strlen(text), &d);
	char *got = wt_diags_text(&d);
	if (d.len)
		print_error("%s\n--- %s ---\n%s\n", got, name, text);
	assert_string_equal(got, "");
	free(got);
	ws_diags_free(&d);
	assert_non_null(f);
	return f;
}

/* The fixed point, for any valid fleet. */
static void check_round_trip(const ws_fleet *f)
{
	json_t *j1 = fleet_to_json(f);
	char *canonical = dump(j1, DUMP_FLAGS);
	char *ordered = dump(j1, JSON_INDENT(2));   /* insertion order */
	size_t ylen = 0;
	char *yaml = ws_json_to_yaml(j1, &ylen);
	assert_non_null(yaml);
	assert_int_equal(ylen, strlen(yaml));

	/* Through YAML. */
	ws_fleet *fy = parse_text("export.yaml", yaml);
	json_t *jy = fleet_to_json(fy);
	char *canonical_y = dump(jy, DUMP_FLAGS);
	char *ordered_y = dump(jy, JSON_INDENT(2));
	char *yaml_y = ws_json_to_yaml(jy, NULL);
	assert_string_equal(canonical_y, canonical);
	assert_string_equal(ordered_y, ordered);
	assert_string_equal(yaml_y, yaml);

	/* Through JSON text, compact and indented. */
	char *compact = dump(j1, JSON_COMPACT);
	ws_fleet *fj = parse_text("export.json", compact);
	json_t *jj = fleet_to_json(fj);
	char *canonical_j = dump(jj, DUMP_FLAGS);
	assert_string_equal(canonical_j, canonical);
	ws_fleet *fi = parse_text("export.json", ordered);
	json_t *ji = fleet_to_json(fi);
	char *canonical_i = dump(ji, DUMP_FLAGS);
	assert_string_equal(canonical_i, canonical);

	free(canonical_i);
	json_decref(ji);
	fleet_free(fi);
	free(canonical_j);
	json_decref(jj);
	fleet_free(fj);
	free(compact);
	free(yaml_y);
	free(ordered_y);
	free(canonical_y);
	json_decref(jy);
	fleet_free(fy);
	free(yaml);
	free(ordered);
	free(canonical);
	json_decref(j1);
}

static void test_example_round_trip(void **state)
{
	(void)state;
	ws_fleet *f = ft_example_fleet();
	check_round_trip(f);
	fleet_free(f);
}

/* A fleet with every optional feature, to round-trip the rarer paths. */
static const char *const rich_fleet = FT_HEAD
	"clusters:\n"
	"  - name: k8s\n"
	"    hosting: dedicated\n"
	"    timezone: Europe/Berlin\n"
	"    labels: {zone: 1, 'null': 'yes', spaced: 'a b: c'}\n"
	"    windows:\n"
	"      - {rrule: 'FREQ=MONTHLY;BYDAY=1SU', start: '3:00', duration: P1DT2H, anchor: 2026-01-04}\n"
	"    deploy: {executor: kubernetes, api_url: 'https://k8s:6443', namespace: erp,\n"
	"             deployment: odoo, container: web, image: 'reg/odoo:17', token_env: K8S_TOKEN,\n"
	"             timeout: PT30M}\n"
	"  - name: cmd\n"
	"    hosting: shared\n"
	"    deploy: {executor: command, argv: [/usr/bin/deploy, '--tenant', '{slug}'], timeout: 7200s}\n"
	"  - name: hook\n"
	"    hosting: shared\n"
	"    region: ''\n"
	"    deploy: {executor: webhook, url: 'http://h/deploy', status_url: 'http://h/status',\n"
	"             token_env: TOKEN}\n"
	"tenants:\n"
	"  - slug: z\n"
	"    cluster: k8s\n"
	"    depends_on: [b, a]\n"
	"    version: 17.0\n"
	"    name: 'true'\n"
	"    frozen: yes\n"
	"    windows:\n"
	"      - {from: '2026-12-24T01:00:00+01:00', to: '2026-12-24T06:00:00.5Z'}\n"
	"  - {slug: a, cluster: cmd, criticality: low, timezone: Asia/Kolkata, labels: {env: '17'}}\n"
	"  - {slug: b, cluster: hook, health_url: 'https://b.example/health?x=1#y', name: \"Ünïcode \\\"quoted\\\"\"}\n"
	"calendars:\n"
	"  - name: 'with space'\n"
	"    applies_to: {not: {slugs: [z]}, labels: {env: ['17', '18']}}\n"
	"    occurrences:\n"
	"      - {rrule: FREQ=YEARLY, start: '00:00', duration: 1w, timezone: UTC}\n"
	"  - name: empty\n"
	"    applies_to: {}\n";

static void test_rich_round_trip(void **state)
{
	(void)state;
	ws_fleet *f = parse_text("rich.yaml", rich_fleet);
	check_round_trip(f);
	fleet_free(f);
}

static void test_canonical_shape(void **state)
{
	(void)state;
	ws_fleet *f = parse_text("rich.yaml", rich_fleet);
	json_t *j = fleet_to_json(f);
	char *text = dump(j, JSON_COMPACT);
	assert_string_equal(text,
		"{\"apiVersion\":\"wavesched/v1\",\"kind\":\"Fleet\",\"clusters\":["
		"{\"name\":\"cmd\",\"hosting\":\"shared\",\"timezone\":\"UTC\",\"labels\":{},\"windows\":[],"
		"\"deploy\":{\"executor\":\"command\",\"argv\":[\"/usr/bin/deploy\",\"--tenant\",\"{slug}\"],"
		"\"timeout\":\"2h\"}},"
		"{\"name\":\"hook\",\"hosting\":\"shared\",\"region\":\"\",\"timezone\":\"UTC\",\"labels\":{},"
		"\"windows\":[],\"deploy\":{\"executor\":\"webhook\",\"url\":\"http://h/deploy\","
		"\"token_env\":\"TOKEN\",\"status_url\":\"http://h/status\"}},"
		"{\"name\":\"k8s\",\"hosting\":\"dedicated\",\"timezone\":\"Europe/Berlin\","
		"\"labels\":{\"null\":\"yes\",\"spaced\":\"a b: c\",\"zone\":\"1\"},"
		"\"windows\":[{\"rrule\":\"FREQ=MONTHLY;BYDAY=1SU\",\"start\":\"03:00\",\"duration\":\"26h\","
		"\"anchor\":\"2026-01-04\"}],"
		"\"deploy\":{\"executor\":\"kubernetes\",\"api_url\":\"https://k8s:6443\",\"namespace\":\"erp\","
		"\"deployment\":\"odoo\",\"container\":\"web\",\"image\":\"reg/odoo:17\","
		"\"token_env\":\"K8S_TOKEN\",\"timeout\":\"30m\"}}],"
		"\"tenants\":["
		"{\"slug\":\"a\",\"name\":\"a\",\"cluster\":\"cmd\",\"criticality\":\"low\","
		"\"timezone\":\"Asia/Kolkata\",\"labels\":{\"env\":\"17\"},\"depends_on\":[],\"windows\":[],"
		"\"frozen\":false},"
		"{\"slug\":\"b\",\"name\":\"Ünïcode \\\"quoted\\\"\",\"cluster\":\"hook\","
		"\"criticality\":\"standard\",\"timezone\":\"UTC\",\"labels\":{},\"depends_on\":[],"
		"\"health_url\":\"https://b.example/health?x=1#y\",\"windows\":[],\"frozen\":false},"
		"{\"slug\":\"z\",\"name\":\"true\",\"cluster\":\"k8s\",\"criticality\":\"standard\","
		"\"timezone\":\"Europe/Berlin\",\"labels\":{},\"depends_on\":[\"a\",\"b\"],\"version\":\"17.0\","
		"\"windows\":[{\"from\":\"2026-12-24T00:00:00Z\",\"to\":\"2026-12-24T06:00:00Z\"}],"
		"\"frozen\":true}],"
		"\"calendars\":["
		"{\"name\":\"empty\",\"hard\":false,\"applies_to\":{},\"occurrences\":[]},"
		"{\"name\":\"with space\",\"hard\":false,\"applies_to\":{\"labels\":{\"env\":[\"17\",\"18\"]},"
		"\"not\":{\"slugs\":[\"z\"]}},\"occurrences\":[{\"rrule\":\"FREQ=YEARLY\",\"start\":\"00:00\","
		"\"duration\":\"7d\",\"timezone\":\"UTC\"}]}]}");
	free(text);
	json_decref(j);
	fleet_free(f);
}

static void test_parts_and_ownership(void **state)
{
	(void)state;
	ws_fleet *f = ft_example_fleet();
	const ws_tenant *t = fleet_tenant(f, "payroll-hr");
	json_t *j = fleet_tenant_to_json(f, t);
	char *text = dump(j, JSON_COMPACT);
	assert_string_equal(text,
		"{\"slug\":\"payroll-hr\",\"name\":\"Workforce Administration and Payroll\","
		"\"cluster\":\"dedicated-hq\",\"criticality\":\"critical\",\"timezone\":\"America/Chicago\","
		"\"labels\":{\"entity\":\"parent\",\"env\":\"production\",\"process\":\"payroll\"},"
		"\"depends_on\":[\"hq-finance\"],\"health_url\":\"http://127.0.0.1:9100/t/payroll-hr/health\","
		"\"version\":\"17.0.3\",\"windows\":[{\"rrule\":\"FREQ=WEEKLY;BYDAY=SU\",\"start\":\"01:00\","
		"\"duration\":\"4h\"}],\"frozen\":false}");
	free(text);
	json_decref(j);
	/* The cluster JSON holds a copy of the deploy settings, not the fleet's. */
	const ws_cluster *c = fleet_cluster(f, "dedicated-hq");
	j = fleet_cluster_to_json(c);
	json_object_set_new(json_object_get(j, "deploy"), "url", json_string("http://changed"));
	json_decref(j);
	assert_string_equal(json_string_value(json_object_get(c->deploy, "url")),
			    "http://127.0.0.1:9100/deploy");
	j = fleet_calendar_to_json(&f->calendars[0]);
	text = dump(j, JSON_COMPACT);
	assert_string_equal(text,
		"{\"name\":\"month-end-close\",\"hard\":true,\"applies_to\":{\"criticality\":[\"critical\","
		"\"high\"]},\"occurrences\":[{\"rrule\":\"FREQ=MONTHLY;BYMONTHDAY=-3,-2,-1\",\"start\":\"00:00\","
		"\"duration\":\"1d\",\"timezone\":\"America/Chicago\"},{\"rrule\":\"FREQ=MONTHLY;BYMONTHDAY=1\","
		"\"start\":\"00:00\",\"duration\":\"1d\",\"timezone\":\"America/Chicago\"}]}");
	free(text);
	json_decref(j);
	fleet_free(f);
}

static void test_yaml_emitter(void **state)
{
	(void)state;
	json_error_t err;
	json_t *j = json_loads(
		"{\"apiVersion\": \"wavesched/v1\", \"kind\": \"Fleet\", \"s\": \"true\", \"n\": 3,"
		" \"r\": 1.5, \"r2\": 2.0, \"b\": false, \"z\": null, \"e\": \"\", \"list\": [], \"obj\": {},"
		" \"t\": \"01:00\", \"u\": \"\\u00dcbersicht\", \"ml\": \"a\\nb\", \"sp\": \" lead\","
		" \"colon\": \"a: b\", \"dash\": \"- x\", \"ok\": \"Integration Hub (EDI, supplier portal)\","
		" \"nested\": {\"b\": [1, {\"c\": \"d\", \"e\": [\"x\"]}]}, \"y\": \"Y\", \"tilde\": \"~\","
		" \"num\": \"1e3\", \"ver\": \"17.0.3\", \"quote\": \"say \\\"hi\\\"\"}", 0, &err);
	assert_non_null(j);
	char *yaml = ws_json_to_yaml(j, NULL);
	assert_string_equal(yaml,
		"apiVersion: wavesched/v1\n"
		"kind: Fleet\n"
		"s: \"true\"\n"
		"\"n\": 3\n"
		"r: 1.5\n"
		"r2: 2.0\n"
		"b: false\n"
		"z: null\n"
		"e: \"\"\n"
		"list: []\n"
		"obj: {}\n"
		"t: \"01:00\"\n"
		"u: \"\xc3\x9c" "bersicht\"\n"
		"ml: \"a\\nb\"\n"
		"sp: \" lead\"\n"
		"colon: \"a: b\"\n"
		"dash: \"- x\"\n"
		"ok: Integration Hub (EDI, supplier portal)\n"
		"nested:\n"
		"  b:\n"
		"  - 1\n"
		"  - c: d\n"
		"    e:\n"
		"    - x\n"
		"\"y\": \"Y\"\n"
		"tilde: \"~\"\n"
		"num: \"1e3\"\n"
		"ver: \"17.0.3\"\n"
		"quote: \"say \\\"hi\\\"\"\n");
	/* Read back, every string is the same string and typed values keep
	 * their type. */
	ws_diags d;
	ws_diags_init(&d);
	ydoc *doc = ydoc_parse("e.yaml", yaml, strlen(yaml), NULL, &d);
	assert_non_null(doc);
	const ynode *root = ydoc_root(doc);
	const char *key;
	json_t *val;
	json_object_foreach(j, key, val) {
		const ynode *n = ynode_get(root, key);
		assert_non_null(n);
		if (json_is_string(val)) {
			assert_true(n->kind == YNODE_SCALAR);
			assert_string_equal(n->value, json_string_value(val));
			assert_string_equal(ynode_kind_name(n), "string");
		}
	}
	assert_string_equal(ynode_kind_name(ynode_get(root, "n")), "integer");
	assert_string_equal(ynode_kind_name(ynode_get(root, "r2")), "number");
	assert_string_equal(ynode_kind_name(ynode_get(root, "b")), "boolean");
	assert_string_equal(ynode_kind_name(ynode_get(root, "z")), "null");
	ydoc_free(doc);
	ws_diags_free(&d);
	free(yaml);
	json_decref(j);
	assert_null(ws_json_to_yaml(NULL, NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_example_round_trip),
		cmocka_unit_test(test_rich_round_trip),
		cmocka_unit_test(test_canonical_shape),
		cmocka_unit_test(test_parts_and_ownership),
		cmocka_unit_test(test_yaml_emitter),
	};
	return cmocka_run_group_tests_name("fleet/json", tests, NULL, wt_teardown_ical);
}
