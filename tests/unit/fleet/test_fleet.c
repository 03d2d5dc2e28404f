/*
 * test_fleet.c - fleet_parse: the example fleet, the model's defaults and
 * every validation rule of spec/fleet.md, each with its exact message and
 * position.
 */
#include "fleet_test.h"

/* A valid prefix: lines 1-5. */
#define BASE FT_HEAD \
	"clusters:\n" \
	"  - name: c1\n" \
	"    hosting: shared\n"

#define TENANT_KEYS "slug, name, cluster, criticality, timezone, labels, depends_on, " \
	"health_url, version, windows, frozen"

static void test_example_fleet(void **state)
{
	(void)state;
	ws_fleet *f = ft_example_fleet();
	assert_int_equal(f->n_clusters, 5);
	assert_int_equal(f->n_tenants, 15);
	assert_int_equal(f->n_calendars, 3);

	const ws_cluster *hq = fleet_cluster(f, "dedicated-hq");
	assert_non_null(hq);
	assert_int_equal(hq->hosting, HOSTING_DEDICATED);
	assert_string_equal(hq->region, "us-central");
	assert_int_equal(hq->max_parallel, 1);
	assert_string_equal(hq->timezone, "UTC");
	assert_int_equal(hq->n_labels, 1);
	assert_string_equal(hq->labels[0].key, "tier");
	assert_string_equal(hq->labels[0].value, "gold");
	assert_int_equal(hq->n_windows, 1);
	assert_string_equal(hq->windows[0].timezone, "America/Chicago");
	assert_string_equal(json_string_value(json_object_get(hq->deploy, "executor")), "webhook");
	assert_int_equal(hq->line, 7);
	assert_int_equal(hq->column, 5);

	const ws_tenant *t = fleet_tenant(f, "hq-finance");
	assert_non_null(t);
	assert_string_equal(t->name, "HQ Finance and Billing");
	assert_string_equal(t->cluster, "dedicated-hq");
	assert_ptr_equal(&f->clusters[t->cluster_index], hq);
	assert_int_equal(t->criticality, CRIT_CRITICAL);
	assert_string_equal(t->timezone, "America/Chicago");
	assert_int_equal(t->n_labels, 3);
	assert_int_equal(t->n_depends_on, 1);
	assert_string_equal(t->depends_on[0], "integration-hub");
	assert_ptr_equal(&f->tenants[t->depends_on_index[0]], fleet_tenant(f, "integration-hub"));
	assert_string_equal(t->health_url, "http://127.0.0.1:9100/t/hq-finance/health");
	assert_string_equal(t->version, "17.0.3");
	assert_int_equal(t->n_windows, 1);
	const ws_window *w = &t->windows[0];
	assert_false(w->one_off);
	assert_string_equal(w->rrule, "FREQ=WEEKLY;BYDAY=SU");
	assert_int_equal(w->start_minute, 60);
	assert_string_equal(w->start_text, "01:00");
	assert_int_equal(w->duration_s, 4 * 3600);
	assert_null(w->timezone);
	assert_null(w->anchor);
	assert_false(t->frozen);

	assert_true(fleet_tenant(f, "legacy-archive")->frozen);
	assert_string_equal(fleet_tenant(f, "legacy-archive")->version, "16.0.9");
	assert_int_equal(fleet_tenant(f, "training-a")->n_windows, 0);
	assert_int_equal(fleet_tenant(f, "clinic-west")->criticality, CRIT_LOW);
	assert_null(fleet_tenant(f, "nope"));
	assert_null(fleet_cluster(f, "nope"));
	assert_null(fleet_tenant(f, NULL));

	const ws_calendar *c = &f->calendars[2];
	assert_string_equal(c->name, "holiday-freeze");
	assert_false(c->hard);
	assert_null(c->applies_to);
	assert_int_equal(c->n_occurrences, 1);
	assert_true(c->occurrences[0].one_off);
	assert_int_equal(c->occurrences[0].from_utc, ft_t("2026-12-23T00:00:00Z"));
	assert_int_equal(c->occurrences[0].to_utc, ft_t("2027-01-02T00:00:00Z"));
	assert_true(f->calendars[0].hard);
	assert_non_null(f->calendars[0].applies_to);
	assert_int_equal(f->calendars[0].occurrences[0].duration_s, 86400);
	fleet_free(f);
}

static void test_defaults(void **state)
{
	(void)state;
	ws_fleet *f = ft_parse_ok(FT_HEAD
		"clusters:\n"
		"  - name: c1\n"
		"    hosting: dedicated\n"
		"    timezone: Europe/Berlin\n"
		"    region: ~\n"
		"tenants:\n"
		"  - slug: a\n"
		"    cluster: c1\n"
		"    version: 17.0\n"
		"    labels: {n: 5, flag: true}\n"
		"    depends_on: []\n"
		"    windows:\n"
		"      - {rrule: FREQ=DAILY, start: '1:05', duration: PT90M}\n");
	const ws_cluster *c = &f->clusters[0];
	assert_null(c->region);
	assert_int_equal(c->max_parallel, 0);
	assert_null(c->deploy);
	const ws_tenant *t = &f->tenants[0];
	assert_string_equal(t->name, "a");
	assert_int_equal(t->criticality, CRIT_STANDARD);
	assert_string_equal(t->timezone, "Europe/Berlin");
	assert_false(t->frozen);
	assert_null(t->health_url);
	assert_string_equal(t->version, "17.0");
	assert_string_equal(t->labels[0].value, "5");
	assert_string_equal(t->labels[1].value, "true");
	assert_int_equal(t->n_depends_on, 0);
	assert_int_equal(t->windows[0].start_minute, 65);
	assert_string_equal(t->windows[0].start_text, "01:05");
	assert_int_equal(t->windows[0].duration_s, 5400);
	fleet_free(f);

	/* Without a timezone anywhere, everything is UTC. */
	f = ft_parse_ok(BASE "tenants:\n  - {slug: b, cluster: c1}\n");
	assert_string_equal(f->clusters[0].timezone, "UTC");
	assert_string_equal(f->tenants[0].timezone, "UTC");
	fleet_free(f);
}

static void test_json_document(void **state)
{
	(void)state;
	ws_fleet *f = ft_parse_ok("{\"apiVersion\": \"wavesched/v1\", \"kind\": \"Fleet\",\n"
		" \"clusters\": [{\"name\": \"c1\", \"hosting\": \"shared\", \"max_parallel\": 2}],\n"
		" \"tenants\": [{\"slug\": \"a\", \"cluster\": \"c1\", \"frozen\": true}]}");
	assert_int_equal(f->clusters[0].max_parallel, 2);
	assert_true(f->tenants[0].frozen);
	fleet_free(f);
	ft_expect_errors("{\"apiVersion\": \"wavesched/v1\", \"kind\": \"Fleet\",\n"
		" \"clusters\": [{\"name\": \"c1\", \"hosting\": \"shared\", \"max_parallel\": \"2\"}]}",
		"t.yaml:2:67: expected an integer for \"max_parallel\", got a string");
}

static void test_unknown_key(void **state)
{
	(void)state;
	ft_expect_errors(BASE
		"tenants:\n"
		"  - slug: a\n"
		"    cluster: c1\n"
		"    critcality: high\n",
		"t.yaml:9:5: unknown key \"critcality\" in tenant (expected one of: " TENANT_KEYS ")");
	ft_expect_errors(FT_HEAD "metadata: {}\n",
		"t.yaml:3:1: unknown key \"metadata\" in fleet (expected one of: apiVersion, kind, "
		"clusters, tenants, calendars)");
	ft_expect_errors(FT_HEAD "clusters:\n  - {name: c1, hosting: shared, zone: a}\n",
		"t.yaml:4:33: unknown key \"zone\" in cluster (expected one of: name, hosting, "
		"region, max_parallel, timezone, labels, windows, deploy)");
	ft_expect_errors(BASE "    windows:\n      - {rrule: FREQ=DAILY, start: '01:00', duration: 1h, tz: UTC}\n",
		"t.yaml:7:59: unknown key \"tz\" in window (expected one of: rrule, start, "
		"duration, timezone, anchor, from, to)");
	ft_expect_errors(FT_HEAD "calendars:\n  - {name: x, hardness: true}\n",
		"t.yaml:4:15: unknown key \"hardness\" in calendar (expected one of: name, hard, "
		"applies_to, occurrences)");
}

static void test_missing_required(void **state)
{
	(void)state;
	ft_expect_errors("kind: Fleet\n",
		"t.yaml:1:1: missing required key \"apiVersion\" in fleet");
	ft_expect_errors(FT_HEAD "clusters:\n  - hosting: shared\n"
		"tenants:\n  - name: X\n",
		"t.yaml:4:5: missing required key \"name\" in cluster\n"
		"t.yaml:6:5: missing required key \"cluster\" in tenant\n"
		"t.yaml:6:5: missing required key \"slug\" in tenant");
	ft_expect_errors(FT_HEAD "calendars:\n  - hard: true\n",
		"t.yaml:4:5: missing required key \"name\" in calendar");
}

static void test_duplicates(void **state)
{
	(void)state;
	ft_expect_errors(BASE
		"tenants:\n"
		"  - slug: a\n"
		"    cluster: c1\n"
		"  - slug: b\n"
		"    cluster: c1\n"
		"  - slug: a\n"
		"    cluster: c1\n",
		"t.yaml:11:11: duplicate tenant slug \"a\" (first defined at 7:5)");
	ft_expect_errors(BASE
		"  - name: c2\n"
		"    hosting: shared\n"
		"  - name: c1\n"
		"    hosting: dedicated\n",
		"t.yaml:8:11: duplicate cluster name \"c1\" (first defined at 4:5)");
	ft_expect_errors(FT_HEAD
		"calendars:\n"
		"  - name: freeze\n"
		"  - name: freeze\n",
		"t.yaml:5:11: duplicate calendar name \"freeze\" (first defined at 4:5)");
}

static void test_unknown_cluster(void **state)
{
	(void)state;
	ft_expect_errors(BASE "tenants:\n  - slug: a\n    cluster: nope\n",
		"t.yaml:8:14: unknown cluster \"nope\"");
}

static void test_dependencies(void **state)
{
	(void)state;
	ft_expect_errors(BASE
		"tenants:\n"
		"  - {slug: a, cluster: c1, depends_on: [ghost]}\n",
		"t.yaml:7:41: unknown tenant \"ghost\" in depends_on");
	ft_expect_errors(BASE
		"tenants:\n"
		"  - {slug: a, cluster: c1, depends_on: [a]}\n",
		"t.yaml:7:41: tenant \"a\" depends on itself");
	ft_expect_errors(BASE
		"tenants:\n"
		"  - {slug: a, cluster: c1, depends_on: [b, b]}\n"
		"  - {slug: b, cluster: c1}\n",
		"t.yaml:7:44: duplicate \"b\" in depends_on");
}

static void test_cycles(void **state)
{
	(void)state;
	/* Declared in the order c, b, a: the message still starts at "a". */
	ft_expect_errors(BASE
		"tenants:\n"
		"  - {slug: c, cluster: c1, depends_on: [a]}\n"
		"  - {slug: b, cluster: c1, depends_on: [c]}\n"
		"  - {slug: a, cluster: c1, depends_on: [b]}\n",
		"t.yaml:9:41: dependency cycle: a -> b -> c -> a");
	/* Two cycles sharing nothing, one two-cycle, and a tenant that depends
	 * on a cycle without being in it: each cycle once. */
	ft_expect_errors(BASE
		"tenants:\n"
		"  - {slug: x, cluster: c1, depends_on: [y]}\n"
		"  - {slug: y, cluster: c1, depends_on: [x]}\n"
		"  - {slug: out, cluster: c1, depends_on: [x, p]}\n"
		"  - {slug: p, cluster: c1, depends_on: [q]}\n"
		"  - {slug: r, cluster: c1, depends_on: [p]}\n"
		"  - {slug: q, cluster: c1, depends_on: [r]}\n",
		"t.yaml:7:41: dependency cycle: x -> y -> x\n"
		"t.yaml:10:41: dependency cycle: p -> q -> r -> p");
	/* A diamond is not a cycle. */
	ws_fleet *f = ft_parse_ok(BASE
		"tenants:\n"
		"  - {slug: top, cluster: c1, depends_on: [l, r]}\n"
		"  - {slug: l, cluster: c1, depends_on: [base]}\n"
		"  - {slug: r, cluster: c1, depends_on: [base]}\n"
		"  - {slug: base, cluster: c1}\n");
	fleet_free(f);
}

static void test_time_zones(void **state)
{
	(void)state;
	ft_expect_errors(BASE
		"    timezone: Mars/Olympus\n"
		"tenants:\n"
		"  - {slug: a, cluster: c1, timezone: Europe/Nowhere}\n"
		"  - slug: b\n"
		"    cluster: c1\n"
		"    windows:\n"
		"      - {rrule: FREQ=DAILY, start: '01:00', duration: 1h, timezone: ../../etc/passwd}\n",
		"t.yaml:6:15: unknown time zone \"Mars/Olympus\"\n"
		"t.yaml:8:38: unknown time zone \"Europe/Nowhere\"\n"
		"t.yaml:12:69: unknown time zone \"../../etc/passwd\"");
}

/* One window inside a tenant; the window is on line 10. */
#define WINDOW_FLEET(w) BASE "tenants:\n  - slug: a\n    cluster: c1\n    windows:\n      - " w "\n"

static void test_rrules(void **state)
{
	(void)state;
	ft_expect_errors(WINDOW_FLEET("{rrule: FREQ=SOMETIMES, start: '01:00', duration: 1h}"),
		"t.yaml:10:17: invalid RRULE \"FREQ=SOMETIMES\": unknown frequency \"SOMETIMES\"");
	ft_expect_errors(WINDOW_FLEET("{rrule: 'FREQ=DAILY;DTSTART=20260101T000000', start: '01:00', duration: 1h}"),
		"t.yaml:10:17: invalid RRULE \"FREQ=DAILY;DTSTART=20260101T000000\": DTSTART is not "
		"allowed (anchor and start set it)");
	ft_expect_errors(WINDOW_FLEET("{rrule: 'FREQ=WEEKLY;BYDAY=XX', start: '01:00', duration: 1h}"),
		"t.yaml:10:17: invalid RRULE \"FREQ=WEEKLY;BYDAY=XX\": not a valid RFC 5545 "
		"recurrence rule");
	ft_expect_errors(WINDOW_FLEET("{rrule: 'BYDAY=SU', start: '01:00', duration: 1h}"),
		"t.yaml:10:17: invalid RRULE \"BYDAY=SU\": FREQ is missing");
	ft_expect_errors(WINDOW_FLEET("{rrule: FREQ=HOURLY, start: '01:00', duration: 1h}"),
		"t.yaml:10:17: invalid RRULE \"FREQ=HOURLY\": FREQ=HOURLY is not allowed (a window "
		"recurs at most daily, at its start time)");
	ft_expect_errors(WINDOW_FLEET("{rrule: 'FREQ=DAILY;BYHOUR=3', start: '01:00', duration: 1h}"),
		"t.yaml:10:17: invalid RRULE \"FREQ=DAILY;BYHOUR=3\": BYHOUR is not allowed (start "
		"sets the time of day)");
	ft_expect_errors(WINDOW_FLEET("{rrule: 'RRULE:FREQ=DAILY', start: '01:00', duration: 1h}"),
		"t.yaml:10:17: invalid RRULE \"RRULE:FREQ=DAILY\": remove the \"RRULE:\" prefix");
	ft_expect_errors(WINDOW_FLEET("{rrule: 'FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30', start: '01:00', duration: 1h}"),
		"t.yaml:10:17: invalid RRULE \"FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30\": the rule "
		"matches no date");
	/* Valid on its own, but over before the anchor. */
	ft_expect_errors(WINDOW_FLEET("{rrule: 'FREQ=DAILY;UNTIL=20200101T000000Z', start: '01:00', duration: 1h, anchor: 2026-01-01}"),
		"t.yaml:10:17: invalid RRULE \"FREQ=DAILY;UNTIL=20200101T000000Z\": the rule has no "
		"occurrence from the anchor on");
}

static void test_durations(void **state)
{
	(void)state;
	ft_expect_errors(WINDOW_FLEET("{rrule: FREQ=DAILY, start: '01:00', duration: 0s}"),
		"t.yaml:10:55: duration must be positive");
	ft_expect_errors(WINDOW_FLEET("{rrule: FREQ=DAILY, start: '01:00', duration: PT0S}"),
		"t.yaml:10:55: duration must be positive");
	ft_expect_errors(WINDOW_FLEET("{rrule: FREQ=DAILY, start: '01:00', duration: -2h}"),
		"t.yaml:10:55: duration must be positive");
	ft_expect_errors(WINDOW_FLEET("{rrule: FREQ=DAILY, start: '01:00', duration: soon}"),
		"t.yaml:10:55: invalid duration \"soon\" (expected e.g. 90s, 30m, 4h, 1d or PT4H)");
	ft_expect_errors(WINDOW_FLEET("{rrule: FREQ=DAILY, start: '01:00', duration: 3600}"),
		"t.yaml:10:55: invalid duration \"3600\" (expected e.g. 90s, 30m, 4h, 1d or PT4H)");
}

static void test_start_and_anchor(void **state)
{
	(void)state;
	ft_expect_errors(WINDOW_FLEET("{rrule: FREQ=DAILY, start: '24:00', duration: 1h}"),
		"t.yaml:10:36: invalid start time \"24:00\" (expected HH:MM from 00:00 to 23:59)");
	ft_expect_errors(WINDOW_FLEET("{rrule: FREQ=DAILY, start: '2am', duration: 1h}"),
		"t.yaml:10:36: invalid start time \"2am\" (expected HH:MM from 00:00 to 23:59)");
	ft_expect_errors(WINDOW_FLEET("{rrule: FREQ=DAILY, start: '01:60', duration: 1h}"),
		"t.yaml:10:36: invalid start time \"01:60\" (expected HH:MM from 00:00 to 23:59)");
	ft_expect_errors(WINDOW_FLEET("{rrule: FREQ=DAILY, start: '01:00', duration: 1h, anchor: 2026-02-30}"),
		"t.yaml:10:67: invalid anchor \"2026-02-30\" (expected a date YYYY-MM-DD)");
}

static void test_window_forms(void **state)
{
	(void)state;
	ft_expect_errors(WINDOW_FLEET("{rrule: FREQ=DAILY, start: '01:00', duration: 1h, from: '2026-01-01T00:00:00Z'}"),
		"t.yaml:10:9: a window has either rrule, start and duration, or from and to, not both");
	ft_expect_errors(WINDOW_FLEET("{rrule: FREQ=DAILY, duration: 1h}"),
		"t.yaml:10:9: missing required key \"start\" in window");
	ft_expect_errors(WINDOW_FLEET("{timezone: UTC}"),
		"t.yaml:10:9: a window needs rrule, start and duration, or from and to");
	ft_expect_errors(WINDOW_FLEET("{from: '2026-01-01T00:00:00Z'}"),
		"t.yaml:10:9: missing required key \"to\" in window");
	ft_expect_errors(WINDOW_FLEET("{from: '2026-01-02T00:00:00Z', to: '2026-01-02T01:00:00+02:00'}"),
		"t.yaml:10:44: \"to\" must be after \"from\"");
	ft_expect_errors(WINDOW_FLEET("{from: 'tomorrow', to: '2026-13-01T00:00:00Z'}"),
		"t.yaml:10:16: invalid time \"tomorrow\" for \"from\" (expected RFC 3339, e.g. "
		"2026-12-24T00:00:00Z)\n"
		"t.yaml:10:32: invalid time \"2026-13-01T00:00:00Z\" for \"to\" (expected RFC 3339, "
		"e.g. 2026-12-24T00:00:00Z)");
	ft_expect_errors(WINDOW_FLEET("{from: '2026-01-01T00:00:00Z', to: '2026-01-02T00:00:00Z', timezone: UTC}"),
		"t.yaml:10:68: a one-off window takes no timezone (from and to carry their offsets)");
	ft_expect_errors(WINDOW_FLEET("[FREQ=DAILY]"),
		"t.yaml:10:9: expected a mapping, got a sequence");
}

static void test_wrong_types(void **state)
{
	(void)state;
	ft_expect_errors(BASE "    region: {name: eu}\n",
		"t.yaml:6:13: expected a string for \"region\", got a mapping");
	ft_expect_errors(FT_HEAD "clusters: {name: c1}\n",
		"t.yaml:3:11: expected a sequence for \"clusters\", got a mapping");
	ft_expect_errors(FT_HEAD "- a\n",
		"t.yaml:3:1: did not find expected key while parsing a block mapping");
	ft_expect_errors("- apiVersion: wavesched/v1\n",
		"t.yaml:1:1: expected a mapping, got a sequence");
	ft_expect_errors(BASE "tenants:\n  - {slug: a, cluster: c1, frozen: maybe, labels: [x]}\n",
		"t.yaml:7:36: expected a boolean for \"frozen\", got a string\n"
		"t.yaml:7:51: expected a mapping for \"labels\", got a sequence");
	ft_expect_errors(BASE "tenants:\n  - {slug: a, cluster: c1, labels: {env: [prod]}, depends_on: b}\n",
		"t.yaml:7:42: expected a string for label \"env\", got a sequence\n"
		"t.yaml:7:63: expected a sequence for \"depends_on\", got a string");
	ft_expect_errors(BASE "tenants:\n  - {slug: a, cluster: c1, depends_on: [{b: 1}], name: ~}\n",
		"t.yaml:7:41: expected a string in \"depends_on\", got a mapping");
	ft_expect_errors(FT_HEAD "calendars:\n  - {name: x, hard: 1}\n",
		"t.yaml:4:21: expected a boolean for \"hard\", got an integer");
	ft_expect_errors("", "t.yaml: the document is empty (expected a Fleet)");
}

static void test_max_parallel(void **state)
{
	(void)state;
	ft_expect_errors(BASE "    max_parallel: 0\n",
		"t.yaml:6:19: max_parallel must be between 1 and 10000, got 0");
	ft_expect_errors(BASE "    max_parallel: 10001\n",
		"t.yaml:6:19: max_parallel must be between 1 and 10000, got 10001");
	ft_expect_errors(BASE "    max_parallel: 2.5\n",
		"t.yaml:6:19: expected an integer for \"max_parallel\", got a number");
	ws_fleet *f = ft_parse_ok(BASE "    max_parallel: 10000\n");
	assert_int_equal(f->clusters[0].max_parallel, 10000);
	fleet_free(f);
}

static void test_enumerations(void **state)
{
	(void)state;
	ft_expect_errors(BASE "tenants:\n  - {slug: a, cluster: c1, criticality: urgent}\n",
		"t.yaml:7:41: invalid criticality \"urgent\" (expected one of: critical, high, "
		"standard, low)");
	ft_expect_errors(FT_HEAD "clusters:\n  - {name: c1, hosting: cloud}\n",
		"t.yaml:4:25: invalid hosting \"cloud\" (expected shared or dedicated)");
	ft_expect_errors(FT_HEAD "clusters:\n  - {name: C_1, hosting: shared}\n"
		"tenants:\n  - {slug: -Bad-, cluster: C_1}\n",
		"t.yaml:4:12: invalid cluster name \"C_1\" (expected 1 to 63 characters a-z, 0-9 or -)\n"
		"t.yaml:6:12: invalid slug \"-Bad-\" (expected 1 to 63 characters a-z, 0-9 or -)");
}

static void test_header(void **state)
{
	(void)state;
	ft_expect_errors("apiVersion: wavesched/v2\nkind: WavePolicy\n",
		"t.yaml:1:13: invalid apiVersion \"wavesched/v2\" (expected \"wavesched/v1\")\n"
		"t.yaml:2:7: invalid kind \"WavePolicy\" (expected \"Fleet\")");
}

static void test_urls(void **state)
{
	(void)state;
	ft_expect_errors(BASE "tenants:\n  - {slug: a, cluster: c1, health_url: 'ftp://x/health'}\n",
		"t.yaml:7:40: invalid URL \"ftp://x/health\" for \"health_url\" (expected an http or "
		"https URL)");
	ft_expect_errors(BASE "tenants:\n  - {slug: a, cluster: c1, health_url: 'http://'}\n",
		"t.yaml:7:40: invalid URL \"http://\" for \"health_url\" (expected an http or https URL)");
	ws_fleet *f = ft_parse_ok(BASE "tenants:\n  - {slug: a, cluster: c1, health_url: 'HTTPS://h:8443/x'}\n");
	fleet_free(f);
}

static void test_deploy_gitops(void **state)
{
	(void)state;
	ft_expect_errors(BASE "    deploy: {executor: gitops, repo: /srv/fleet.git}\n",
		"t.yaml:6:13: missing required key \"path\" in deploy");
	ft_expect_errors(BASE "    deploy: {executor: gitops, path: 'a/{slug}.yaml'}\n",
		"t.yaml:6:13: missing required key \"repo\" in deploy");
	ft_expect_errors(BASE "    deploy: {executor: gitops, repo: r, path: '/etc/{slug}.yaml'}\n",
		"t.yaml:6:47: path \"/etc/{slug}.yaml\" must be relative to the repository "
		"(no leading \"/\")");
	ft_expect_errors(BASE "    deploy: {executor: gitops, repo: r, path: 'tenants/../../x/{slug}'}\n",
		"t.yaml:6:47: path \"tenants/../../x/{slug}\" must stay inside the repository "
		"(no \"..\" component)");
	ft_expect_errors(BASE "    deploy: {executor: gitops, repo: r, path: '..'}\n",
		"t.yaml:6:47: path \"..\" must stay inside the repository (no \"..\" component)");
	ft_expect_errors(BASE "    deploy: {executor: gitops, repo: r, path: '.git/hooks/post-commit'}\n",
		"t.yaml:6:47: path \".git/hooks/post-commit\" must stay inside the repository "
		"(no \".git\" component)");
	ft_expect_errors(BASE "    deploy: {executor: gitops, repo: r, path: 'tenants/{slug}/'}\n",
		"t.yaml:6:47: path \"tenants/{slug}/\" must name a file, not a directory");
	ft_expect_errors(BASE "    deploy: {executor: gitops, repo: r, path: 't/{tenant}.yaml'}\n",
		"t.yaml:6:47: unknown placeholder \"{tenant}\" in path \"t/{tenant}.yaml\" "
		"(expected {slug}, {cluster} or {version})");
	ft_expect_errors(BASE "    deploy: {executor: gitops, repo: r, path: 't/{slug.yaml'}\n",
		"t.yaml:6:47: unclosed \"{\" in path \"t/{slug.yaml\"");
	ft_expect_errors(BASE "    deploy: {executor: gitops, repo: '--upload-pack=x', path: p}\n",
		"t.yaml:6:38: invalid repository \"--upload-pack=x\" for \"repo\" (expected a path "
		"or a file, https or ssh URL)");
	ft_expect_errors(BASE "    deploy: {executor: gitops, repo: r, path: p, branch: 'a..b', sync: argo}\n",
		"t.yaml:6:58: invalid branch name \"a..b\"\n"
		"t.yaml:6:72: invalid sync \"argo\" (expected health or status_url)");
	ft_expect_errors(BASE "    deploy: {executor: gitops, repo: r, path: p, branch: '-f'}\n",
		"t.yaml:6:58: invalid branch name \"-f\"");
	ft_expect_errors(BASE "    deploy: {executor: gitops, repo: r, path: p, sync: status_url}\n",
		"t.yaml:6:13: sync: status_url needs \"status_url\" in deploy");
	ft_expect_errors(BASE "    deploy: {executor: gitops, repo: r, path: p, status_url: 'http://a/{slug}'}\n",
		"t.yaml:6:62: \"status_url\" is only read with sync: status_url");
	ft_expect_errors(BASE "    deploy: {executor: gitops, repo: r, path: p, token_env: ARGO}\n",
		"t.yaml:6:61: \"token_env\" is only read with sync: status_url");
	ft_expect_errors(BASE "    deploy: {executor: gitops, repo: r, path: p, argv: [x]}\n",
		"t.yaml:6:50: unknown key \"argv\" in deploy (expected one of: executor, repo, branch, "
		"path, sync, status_url, token_env, timeout)");

	ws_fleet *f = ft_parse_ok(BASE
		"    deploy:\n"
		"      executor: gitops\n"
		"      timeout: 20m\n"
		"      path: 'tenants/{cluster}/{slug}/release.yaml'\n"
		"      repo: 'file:///srv/git/fleet.git'\n"
		"      branch: release/prod\n");
	char *s = json_dumps(f->clusters[0].deploy, JSON_COMPACT);
	assert_string_equal(s, "{\"executor\":\"gitops\",\"repo\":\"file:///srv/git/fleet.git\","
			    "\"branch\":\"release/prod\",\"path\":\"tenants/{cluster}/{slug}/release.yaml\","
			    "\"timeout\":\"20m\"}");
	free(s);
	fleet_free(f);
	f = ft_parse_ok(BASE "    deploy: {executor: gitops, repo: 'git@example.com:ops/fleet.git', "
			"path: '{slug}.yaml', sync: status_url, status_url: "
			"'https://argocd/api/v1/applications/{slug}', token_env: ARGOCD_TOKEN}\n");
	s = json_dumps(f->clusters[0].deploy, JSON_COMPACT);
	assert_string_equal(s, "{\"executor\":\"gitops\",\"repo\":\"git@example.com:ops/fleet.git\","
			    "\"path\":\"{slug}.yaml\",\"sync\":\"status_url\",\"status_url\":"
			    "\"https://argocd/api/v1/applications/{slug}\",\"token_env\":\"ARGOCD_TOKEN\","
			    "\"timeout\":\"10m\"}");
	free(s);
	fleet_free(f);
}

static void test_deploy(void **state)
{
	(void)state;
	ft_expect_errors(BASE "    deploy: {executor: ssh, host: x}\n",
		"t.yaml:6:24: invalid executor \"ssh\" (expected one of: webhook, kubernetes, command, gitops)");
	ft_expect_errors(BASE "    deploy: {executor: webhook}\n",
		"t.yaml:6:13: missing required key \"url\" in deploy");
	ft_expect_errors(BASE "    deploy: {url: 'http://x'}\n",
		"t.yaml:6:13: missing required key \"executor\" in deploy");
	ft_expect_errors(BASE "    deploy: {executor: webhook, url: 'ftp://x', namespace: n, timeout: 0s}\n",
		"t.yaml:6:38: invalid URL \"ftp://x\" for \"url\" (expected an http or https URL)\n"
		"t.yaml:6:49: unknown key \"namespace\" in deploy (expected one of: executor, url, "
		"token_env, status_url, timeout)\n"
		"t.yaml:6:72: timeout must be positive");
	ft_expect_errors(BASE "    deploy: {executor: command, argv: [], token_env: 'A B'}\n",
		"t.yaml:6:39: argv must not be empty\n"
		"t.yaml:6:43: unknown key \"token_env\" in deploy (expected one of: executor, argv, timeout)");
	ft_expect_errors(BASE "    deploy: {executor: kubernetes, api_url: 'https://k', token_env: 1TOKEN}\n",
		"t.yaml:6:69: invalid environment variable name \"1TOKEN\" for \"token_env\"");

	ws_fleet *f = ft_parse_ok(BASE
		"    deploy:\n"
		"      executor: kubernetes\n"
		"      timeout: PT2H\n"
		"      image: registry/odoo\n"
		"      api_url: https://k8s:6443\n"
		"      namespace: erp\n");
	char *s = json_dumps(f->clusters[0].deploy, JSON_COMPACT);
	assert_string_equal(s, "{\"executor\":\"kubernetes\",\"api_url\":\"https://k8s:6443\","
			    "\"namespace\":\"erp\",\"image\":\"registry/odoo\",\"timeout\":\"2h\"}");
	free(s);
	fleet_free(f);
	f = ft_parse_ok(BASE "    deploy: {executor: command, argv: [/bin/deploy, '--fast'], timeout: 90s}\n");
	s = json_dumps(f->clusters[0].deploy, JSON_COMPACT);
	assert_string_equal(s, "{\"executor\":\"command\",\"argv\":[\"/bin/deploy\",\"--fast\"],\"timeout\":\"90s\"}");
	free(s);
	fleet_free(f);
}

static void test_calendars(void **state)
{
	(void)state;
	ft_expect_errors(BASE
		"tenants:\n  - {slug: a, cluster: c1}\n"
		"calendars:\n"
		"  - name: x\n"
		"    applies_to: {slugs: [a, ghost], clusters: c9, not: {clusters: [nope]}}\n",
		"t.yaml:10:29: unknown tenant \"ghost\"\n"
		"t.yaml:10:47: unknown cluster \"c9\"\n"
		"t.yaml:10:68: unknown cluster \"nope\"");
	ft_expect_errors(FT_HEAD
		"calendars:\n"
		"  - name: x\n"
		"    applies_to: {hosting: cloud, tier: gold}\n",
		"t.yaml:5:27: invalid hosting \"cloud\" (expected shared or dedicated)\n"
		"t.yaml:5:34: unknown key \"tier\" in selector (expected one of: slugs, clusters, "
		"hosting, criticality, labels, regions, not)");
	ws_fleet *f = ft_parse_ok(FT_HEAD
		"calendars:\n"
		"  - name: x\n"
		"    occurrences:\n"
		"      - {rrule: FREQ=YEARLY, start: '00:00', duration: 1d, anchor: 2026-12-25}\n");
	assert_null(f->calendars[0].occurrences[0].timezone);
	assert_string_equal(f->calendars[0].occurrences[0].anchor, "2026-12-25");
	fleet_free(f);
}

/* Every problem of a file in one run, sorted by position. */
static void test_many_errors(void **state)
{
	(void)state;
	ft_expect_errors(FT_HEAD
		"clusters:\n"
		"  - name: c1\n"
		"    hosting: shared\n"
		"    max_parallel: -1\n"
		"    timezone: Mars/Olympus\n"
		"tenants:\n"
		"  - slug: a\n"
		"    cluster: c2\n"
		"    critcality: high\n"
		"    depends_on: [a, z]\n"
		"    windows:\n"
		"      - {rrule: FREQ=SOMETIMES, start: '25:00', duration: 0m}\n"
		"  - slug: a\n"
		"    cluster: c1\n",
		"t.yaml:6:19: max_parallel must be between 1 and 10000, got -1\n"
		"t.yaml:7:15: unknown time zone \"Mars/Olympus\"\n"
		"t.yaml:10:14: unknown cluster \"c2\"\n"
		"t.yaml:11:5: unknown key \"critcality\" in tenant (expected one of: " TENANT_KEYS ")\n"
		"t.yaml:12:18: tenant \"a\" depends on itself\n"
		"t.yaml:12:21: unknown tenant \"z\" in depends_on\n"
		"t.yaml:14:17: invalid RRULE \"FREQ=SOMETIMES\": unknown frequency \"SOMETIMES\"\n"
		"t.yaml:14:40: invalid start time \"25:00\" (expected HH:MM from 00:00 to 23:59)\n"
		"t.yaml:14:59: duration must be positive\n"
		"t.yaml:15:11: duplicate tenant slug \"a\" (first defined at 9:5)");
}

static void test_yaml_level_errors(void **state)
{
	(void)state;
	ft_expect_errors(FT_HEAD "clusters:\n  - &c {name: c1, hosting: shared}\n",
		"t.yaml:4:5: anchors are not allowed (&c)");
	ft_expect_errors(FT_HEAD "clusters:\n  - name: c1\n    name: c2\n",
		"t.yaml:5:5: duplicate key \"name\" (first defined at 4:5)");
	ft_expect_errors(FT_HEAD "clusters: [\n",
		"t.yaml:4:1: did not find expected node content while parsing a flow node");
	ws_diags d;
	ws_diags_init(&d);
	assert_null(fleet_parse_file("/nonexistent.yaml", &d));
	char *got = wt_diags_text(&d);
	assert_string_equal(got, "/nonexistent.yaml: cannot open: No such file or directory");
	free(got);
	ws_diags_free(&d);
	/* A NULL diagnostics list still fails. */
	const char *bad = FT_HEAD "clusters: 5\n";
	assert_null(fleet_parse("t.yaml", bad, strlen(bad), NULL));
}

static void test_enum_names(void **state)
{
	(void)state;
	ws_criticality c = CRIT_LOW;
	assert_int_equal(ws_criticality_parse("high", &c), 0);
	assert_int_equal(c, CRIT_HIGH);
	assert_int_equal(ws_criticality_parse("High", &c), WS_EINVAL);
	assert_string_equal(ws_criticality_name(CRIT_CRITICAL), "critical");
	assert_string_equal(ws_criticality_name(CRIT_LOW), "low");
	assert_string_equal(ws_hosting_name(HOSTING_DEDICATED), "dedicated");
	assert_string_equal(ws_hosting_name(HOSTING_SHARED), "shared");
	assert_true(CRIT_LOW < CRIT_STANDARD && CRIT_STANDARD < CRIT_HIGH && CRIT_HIGH < CRIT_CRITICAL);
}

/*
 * Tenants are read while the document is parsed when the clusters come
 * first (streaming), and from the tree otherwise: the same problems are
 * found either way.  These are the problems of test_many_errors, plus a
 * rule that never occurs, in both orders.
 */
#define ORDER_TENANTS \
	"tenants:\n" \
	"  - slug: a\n" \
	"    cluster: c2\n" \
	"    critcality: high\n" \
	"    depends_on: [a, z]\n" \
	"    windows:\n" \
	"      - {rrule: FREQ=SOMETIMES, start: '25:00', duration: 0m}\n" \
	"  - slug: a\n" \
	"    cluster: c1\n" \
	"    timezone: Asia/Tokyo\n" \
	"    windows:\n" \
	"      - {rrule: \"FREQ=MONTHLY;BYMONTHDAY=31;BYMONTH=2\", start: \"01:00\", duration: 1h}\n"
#define ORDER_CLUSTERS \
	"clusters:\n" \
	"  - name: c1\n" \
	"    hosting: shared\n" \
	"    max_parallel: -1\n" \
	"    timezone: Mars/Olympus\n"
#define NEVER "\"FREQ=MONTHLY;BYMONTHDAY=31;BYMONTH=2\": the rule has no occurrence from the anchor on"

static void test_either_order(void **state)
{
	(void)state;
	ft_expect_errors(FT_HEAD ORDER_CLUSTERS ORDER_TENANTS,
		"t.yaml:6:19: max_parallel must be between 1 and 10000, got -1\n"
		"t.yaml:7:15: unknown time zone \"Mars/Olympus\"\n"
		"t.yaml:10:14: unknown cluster \"c2\"\n"
		"t.yaml:11:5: unknown key \"critcality\" in tenant (expected one of: " TENANT_KEYS ")\n"
		"t.yaml:12:18: tenant \"a\" depends on itself\n"
		"t.yaml:12:21: unknown tenant \"z\" in depends_on\n"
		"t.yaml:14:17: invalid RRULE \"FREQ=SOMETIMES\": unknown frequency \"SOMETIMES\"\n"
		"t.yaml:14:40: invalid start time \"25:00\" (expected HH:MM from 00:00 to 23:59)\n"
		"t.yaml:14:59: duration must be positive\n"
		"t.yaml:15:11: duplicate tenant slug \"a\" (first defined at 9:5)\n"
		"t.yaml:19:17: invalid RRULE " NEVER);
	ft_expect_errors(FT_HEAD ORDER_TENANTS ORDER_CLUSTERS,
		"t.yaml:5:14: unknown cluster \"c2\"\n"
		"t.yaml:6:5: unknown key \"critcality\" in tenant (expected one of: " TENANT_KEYS ")\n"
		"t.yaml:7:18: tenant \"a\" depends on itself\n"
		"t.yaml:7:21: unknown tenant \"z\" in depends_on\n"
		"t.yaml:9:17: invalid RRULE \"FREQ=SOMETIMES\": unknown frequency \"SOMETIMES\"\n"
		"t.yaml:9:40: invalid start time \"25:00\" (expected HH:MM from 00:00 to 23:59)\n"
		"t.yaml:9:59: duration must be positive\n"
		"t.yaml:10:11: duplicate tenant slug \"a\" (first defined at 4:5)\n"
		"t.yaml:14:17: invalid RRULE " NEVER "\n"
		"t.yaml:18:19: max_parallel must be between 1 and 10000, got -1\n"
		"t.yaml:19:15: unknown time zone \"Mars/Olympus\"");
	/* Valid both ways, with the same model. */
	const char *tenants = "tenants:\n  - {slug: b, cluster: c1, depends_on: [a]}\n"
			      "  - {slug: a, cluster: c1, windows: [{rrule: FREQ=DAILY, start: '1:30', "
			      "duration: 1h}]}\n";
	char first[512], last[512];
	snprintf(first, sizeof(first), "%sclusters: [{name: c1, hosting: shared, timezone: "
		 "Asia/Tokyo}]\n%s", FT_HEAD, tenants);
	snprintf(last, sizeof(last), "%s%sclusters: [{name: c1, hosting: shared, timezone: "
		 "Asia/Tokyo}]\n", FT_HEAD, tenants);
	ws_fleet *f1 = ft_parse_ok(first), *f2 = ft_parse_ok(last);
	json_t *j1 = fleet_to_json(f1), *j2 = fleet_to_json(f2);
	assert_true(json_equal(j1, j2));
	const ws_tenant *a = fleet_tenant(f1, "a");
	assert_string_equal(a->timezone, "Asia/Tokyo");
	assert_string_equal(a->windows[0].start_text, "01:30");
	assert_ptr_equal(&f1->tenants[fleet_tenant(f1, "b")->depends_on_index[0]], a);
	json_decref(j1);
	json_decref(j2);
	fleet_free(f1);
	fleet_free(f2);
}

/* A document that does not parse gets only its YAML problems, even when
 * tenants read before the problem was found had problems of their own. */
static void test_yaml_problem_after_tenants(void **state)
{
	(void)state;
	ft_expect_errors(BASE
		"tenants:\n"
		"  - {slug: a, cluster: nope, timezone: Mars/Base}\n"
		"  - {slug: a, cluster: c1}\n"
		"kind: Fleet\n",
		"t.yaml:9:1: duplicate key \"kind\" (first defined at 2:1)");
	ft_expect_errors(BASE
		"tenants:\n"
		"  - {slug: a, cluster: nope}\n"
		"tenants:\n"
		"  - {slug: b, cluster: c1}\n",
		"t.yaml:8:1: duplicate key \"tenants\" (first defined at 6:1)");
	ft_expect_errors(BASE
		"tenants:\n"
		"  - {slug: a, cluster: nope}\n"
		"  - {slug: b, cluster: c1, x: [1\n",
		"t.yaml:9:1: did not find expected ',' or ']' while parsing a flow sequence");
	/* And with no diagnostics list at all. */
	const char *bad = BASE "tenants:\n  - {slug: a, cluster: nope}\n";
	assert_null(fleet_parse("t.yaml", bad, strlen(bad), NULL));
}

/* A fleet of n tenants in a new string: tenant i depends on i - 1, and
 * tenant 0 on the last one when `cycle`; `extra` is appended. */
static char *large_fleet(int n, bool cycle, const char *extra, size_t *len)
{
	size_t cap = (size_t)n * 160 + 1024, off = 0;
	char *doc = malloc(cap);
	assert_non_null(doc);
	off += (size_t)snprintf(doc + off, cap - off, FT_HEAD
				"clusters:\n  - {name: c1, hosting: shared, timezone: Europe/Berlin}\n"
				"tenants:\n");
	for (int i = 0; i < n; i++) {
		char deps[32] = "";
		if (i > 0 || cycle)
			snprintf(deps, sizeof(deps), ", depends_on: [t%05d]", i > 0 ? i - 1 : n - 1);
		off += (size_t)snprintf(doc + off, cap - off,
					"  - {slug: t%05d, name: Tenant %05d, cluster: c1%s, "
					"windows: [{rrule: FREQ=DAILY, start: '%02d:%02d', duration: 1h}]}\n",
					i, i, deps, i % 24, i % 60);
	}
	off += (size_t)snprintf(doc + off, cap - off, "%s", extra);
	*len = off;
	return doc;
}

/* A fleet large enough that the parser stops interning new text part way
 * (later slugs are copies, not shared): lookups, dependencies and
 * duplicate checks compare text, so nothing changes. */
static void test_large_fleet(void **state)
{
	(void)state;
	enum { N = 12000 };
	size_t len;
	char *doc = large_fleet(N, true, "", &len);
	ws_diags d;
	ws_diags_init(&d);
	assert_null(fleet_parse("t.yaml", doc, len, &d));
	assert_int_equal(d.len, 1);
	assert_int_equal(d.items[0].line, 6);
	assert_int_equal(strncmp(d.items[0].message, "dependency cycle: t00000 -> t11999 -> t11998 -> ",
				 48), 0);
	ws_diags_free(&d);
	free(doc);
	/* A repeated slug and an unknown one, past the interning limit. */
	doc = large_fleet(N, false, "  - {slug: t11998, cluster: c1, depends_on: [t99999]}\n", &len);
	ws_diags_init(&d);
	assert_null(fleet_parse("t.yaml", doc, len, &d));
	char *got = wt_diags_text(&d);
	assert_string_equal(got,
		"t.yaml:12006:12: duplicate tenant slug \"t11998\" (first defined at 12004:5)\n"
		"t.yaml:12006:46: unknown tenant \"t99999\" in depends_on");
	free(got);
	ws_diags_free(&d);
	free(doc);
	doc = large_fleet(N, false, "", &len);
	ws_fleet *f = ft_parse_ok(doc);
	assert_int_equal(f->n_tenants, N);
	for (int i = 0; i < N; i += 997) {
		char slug[16];
		snprintf(slug, sizeof(slug), "t%05d", i);
		const ws_tenant *t = fleet_tenant(f, slug);
		assert_non_null(t);
		assert_int_equal(t - f->tenants, i);
		assert_int_equal(t->line, 6 + i);
		assert_string_equal(t->timezone, "Europe/Berlin");
		assert_int_equal(t->windows[0].start_minute, (i % 24) * 60 + i % 60);
		if (i > 0)
			assert_int_equal(t->depends_on_index[0], (size_t)i - 1);
	}
	fleet_free(f);
	free(doc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_example_fleet),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_json_document),
		cmocka_unit_test(test_unknown_key),
		cmocka_unit_test(test_missing_required),
		cmocka_unit_test(test_duplicates),
		cmocka_unit_test(test_unknown_cluster),
		cmocka_unit_test(test_dependencies),
		cmocka_unit_test(test_cycles),
		cmocka_unit_test(test_time_zones),
		cmocka_unit_test(test_rrules),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_start_and_anchor),
		cmocka_unit_test(test_window_forms),
		cmocka_unit_test(test_wrong_types),
		cmocka_unit_test(test_max_parallel),
		cmocka_unit_test(test_enumerations),
		cmocka_unit_test(test_header),
		cmocka_unit_test(test_urls),
		cmocka_unit_test(test_deploy),
		cmocka_unit_test(test_deploy_gitops),
		cmocka_unit_test(test_calendars),
		cmocka_unit_test(test_many_errors),
		cmocka_unit_test(test_yaml_level_errors),
		cmocka_unit_test(test_enum_names),
		cmocka_unit_test(test_either_order),
		cmocka_unit_test(test_yaml_problem_after_tenants),
		cmocka_unit_test(test_large_fleet),
	};
	return cmocka_run_group_tests_name("fleet/fleet", tests, NULL, wt_teardown_ical);
}
