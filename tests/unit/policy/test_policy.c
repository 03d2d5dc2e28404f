/*
 * test_policy.c - policy_parse: the example policies and their effective
 * wave settings, the built-in defaults, inheritance, and every validation
 * rule of spec/policy.md, each with its exact message and position.
 */
#include "policy_test.h"

/* Lines 6-7; a test appends its waves from line 8 on. */
#define KINDS_STD PT_HEAD "  release_kinds: [standard]\n  waves:\n"
/* A valid policy: one wave at line 8. */
#define MINIMAL KINDS_STD "    - name: all\n      select: {}\n"

#define WAVE_KEYS "name, select, max_tenants, soak, max_parallel_per_cluster, gates, failure"
#define SPEC_KEYS "release_kinds, unit, unmatched, schedule, deferral, defaults, waves"

static void test_example_standard(void **state)
{
	(void)state;
	ws_policy *p = pt_example("standard.yaml");
	assert_string_equal(p->name, "standard-quarterly");
	assert_string_equal(p->description, "Quarterly functional release for the regional network");
	assert_int_equal(p->release_kinds, WS_RELEASE_STANDARD);
	assert_int_equal(p->unit, WS_UNIT_TENANT);
	assert_false(p->unmatched_skip);
	assert_true(p->respect_windows);
	assert_int_equal(p->slot_s, 1800);
	assert_int_equal(p->horizon_s, 120 * 86400);
	assert_int_equal(p->n_blackouts, 3);
	assert_string_equal(p->blackouts[0], "month-end-close");
	assert_string_equal(p->blackouts[1], "payroll");
	assert_string_equal(p->blackouts[2], "holiday-freeze");
	assert_false(p->break_glass);
	assert_false(p->deferral_allowed);
	assert_int_equal(p->n_waves, 5);

	const ws_wave *w = &p->waves[0];
	assert_string_equal(w->name, "training");
	assert_int_equal(w->line, 27);
	assert_int_equal(w->column, 7);
	assert_int_equal(w->max_tenants, 0);
	assert_int_equal(w->s.soak_s, 3600);
	assert_int_equal(w->s.max_parallel_per_cluster, 2);
	assert_true(w->s.backup.enabled);
	assert_int_equal(w->s.backup.max_age_s, 86400);
	assert_true(w->s.health.enabled);
	assert_int_equal(w->s.health.interval_s, 30);
	assert_int_equal(w->s.health.timeout_s, 5);
	assert_int_equal(w->s.health.consecutive_successes, 3);
	assert_int_equal(w->s.health.max_consecutive_failures, 3);
	assert_int_equal(w->s.health.max_latency_ms, 2000);
	assert_true(w->s.health.latency_regression == 1.5);
	assert_int_equal(w->s.approval.min, 0);
	assert_int_equal(w->s.approval.n_roles, 1);
	assert_string_equal(w->s.approval.roles[0], "approver");
	assert_int_equal(w->s.max_failed, 0);
	assert_int_equal(w->s.failure_action, WS_FAIL_HALT);
	assert_int_equal(w->select->n_labels, 1);

	w = pt_wave(p, "staging");
	assert_int_equal(w->s.soak_s, 86400);
	w = pt_wave(p, "shared-low-risk");
	assert_int_equal(w->s.soak_s, 7200);
	assert_int_equal(w->s.max_failed, 1);
	assert_int_equal(w->s.failure_action, WS_FAIL_HALT);
	assert_true(w->select->has_hosting && w->select->hosting[HOSTING_SHARED]);
	w = pt_wave(p, "shared-high");
	assert_int_equal(w->s.approval.min, 1);

	w = pt_wave(p, "dedicated");
	assert_int_equal(w->s.soak_s, 86400);
	assert_int_equal(w->s.approval.min, 2);
	assert_int_equal(w->s.approval.n_roles, 1);
	assert_string_equal(w->s.approval.roles[0], "approver");
	assert_int_equal(w->s.max_failed, 0);
	assert_int_equal(w->s.failure_action, WS_FAIL_ROLLBACK_WAVE);
	assert_int_equal(w->s.max_parallel_per_cluster, 2);
	assert_true(w->s.health.enabled);
	assert_int_equal(w->s.backup.max_age_s, 86400);

	/* defaults themselves */
	assert_int_equal(p->defaults.soak_s, 7200);
	assert_int_equal(p->defaults.approval.min, 0);
	policy_free(p);
}

static void test_example_urgent(void **state)
{
	(void)state;
	ws_policy *p = pt_example("urgent-security.yaml");
	assert_string_equal(p->name, "urgent-security");
	assert_int_equal(p->release_kinds, WS_RELEASE_URGENT);
	assert_true(p->break_glass);
	assert_false(p->respect_windows);
	assert_int_equal(p->slot_s, 30 * 60);
	assert_int_equal(p->horizon_s, 14 * 86400);
	assert_int_equal(p->n_blackouts, 3);
	assert_int_equal(p->n_waves, 4);
	const ws_wave *w = pt_wave(p, "canary");
	assert_int_equal(w->max_tenants, 1);
	assert_int_equal(w->s.soak_s, 15 * 60);
	assert_int_equal(w->s.max_parallel_per_cluster, 3);
	assert_int_equal(w->s.backup.max_age_s, 6 * 3600);
	assert_true(w->s.health.enabled);
	assert_int_equal(w->s.health.interval_s, 10);
	assert_int_equal(w->s.health.timeout_s, 5);
	assert_int_equal(w->s.health.max_consecutive_failures, 2);
	assert_int_equal(w->s.health.max_latency_ms, 3000);
	assert_true(w->s.health.latency_regression == 2.0);
	assert_int_equal(w->s.failure_action, WS_FAIL_ROLLBACK_WAVE);
	/* no approval gate anywhere: the built-in 0 of [approver] */
	assert_int_equal(w->s.approval.min, 0);
	assert_string_equal(w->s.approval.roles[0], "approver");
	assert_int_equal(pt_wave(p, "dedicated")->max_tenants, 0);
	policy_free(p);
}

static void test_example_platform_patch(void **state)
{
	(void)state;
	ws_policy *p = pt_example("platform-patch.yaml");
	assert_int_equal(p->release_kinds, WS_RELEASE_STANDARD | WS_RELEASE_URGENT);
	assert_int_equal(p->unit, WS_UNIT_CLUSTER);
	assert_true(p->unmatched_skip);
	assert_int_equal(p->horizon_s, 60 * 86400);
	assert_int_equal(p->slot_s, 1800);
	assert_int_equal(p->n_blackouts, 1);
	const ws_wave *w = pt_wave(p, "training-clusters");
	assert_int_equal(w->s.soak_s, 12 * 3600);
	assert_int_equal(w->s.max_parallel_per_cluster, 0);
	assert_true(w->s.backup.enabled);
	assert_false(w->s.health.enabled);
	assert_int_equal(w->s.approval.min, 0);
	w = pt_wave(p, "dedicated-clusters");
	assert_int_equal(w->s.approval.min, 1);
	assert_string_equal(w->s.approval.roles[0], "approver");
	assert_false(w->s.health.enabled);
	assert_null(policy_wave(p, "nope"));
	assert_null(policy_wave(p, NULL));
	policy_free(p);
}

/* Everything left out takes the defaults of policy.h. */
static void test_builtin_defaults(void **state)
{
	(void)state;
	ws_policy *p = pt_parse_ok(MINIMAL);
	assert_string_equal(p->name, "p");
	assert_null(p->description);
	assert_int_equal(p->unit, WS_UNIT_TENANT);
	assert_false(p->unmatched_skip);
	assert_true(p->respect_windows);
	assert_int_equal(p->slot_s, 1800);
	assert_int_equal(p->horizon_s, 120 * 86400);
	assert_int_equal(p->n_blackouts, 0);
	assert_false(p->break_glass);
	assert_false(p->deferral_allowed);
	const ws_wave_settings *s = &p->waves[0].s;
	assert_int_equal(s->soak_s, 0);
	assert_int_equal(s->max_parallel_per_cluster, 0);
	assert_false(s->backup.enabled);
	assert_false(s->health.enabled);
	assert_int_equal(s->health.interval_s, 30);
	assert_int_equal(s->approval.min, 0);
	assert_int_equal(s->approval.n_roles, 1);
	assert_string_equal(s->approval.roles[0], "approver");
	assert_int_equal(s->max_failed, 0);
	assert_int_equal(s->failure_action, WS_FAIL_HALT);
	assert_non_null(p->waves[0].select);
	policy_free(p);
	/* An explicit null is the same as leaving the key out. */
	p = pt_parse_ok(PT_HEAD "  release_kinds: [urgent]\n  unit: ~\n  schedule:\n"
			"  defaults: null\n  waves:\n    - {name: a, select: {}, soak: ~}\n");
	assert_int_equal(p->unit, WS_UNIT_TENANT);
	assert_int_equal(p->waves[0].s.soak_s, 0);
	policy_free(p);
}

/* Waves inherit field by field, within a gate too; a gate is on when
 * defaults or the wave name it. */
static void test_inheritance(void **state)
{
	(void)state;
	ws_policy *p = pt_parse_ok(PT_HEAD
		"  release_kinds: [standard]\n"
		"  defaults:\n"
		"    soak: 1h\n"
		"    gates:\n"
		"      health: {interval: 60s, max_latency_ms: 500}\n"
		"      approval: {min: 1, roles: [security, admin]}\n"
		"    failure: {max_failed: 3, action: continue}\n"
		"  waves:\n"
		"    - name: a\n"
		"      select: {}\n"
		"    - name: b\n"
		"      select: {}\n"
		"      soak: 0\n"
		"      max_parallel_per_cluster: 5\n"
		"      gates:\n"
		"        health: {timeout: 20s}\n"
		"        approval: {min: 2}\n"
		"        backup: {max_age: 12h}\n"
		"      failure: {action: halt}\n"
		"    - name: c\n"
		"      select: {}\n"
		"      gates: {approval: {roles: [approver]}}\n");
	const ws_wave_settings *a = &pt_wave(p, "a")->s, *b = &pt_wave(p, "b")->s,
			       *c = &pt_wave(p, "c")->s;
	assert_int_equal(a->soak_s, 3600);
	assert_true(a->health.enabled);
	assert_int_equal(a->health.interval_s, 60);
	assert_int_equal(a->health.timeout_s, 5);               /* policy.h default */
	assert_int_equal(a->health.consecutive_successes, 3);
	assert_int_equal(a->health.max_latency_ms, 500);
	assert_false(a->backup.enabled);
	assert_int_equal(a->approval.min, 1);
	assert_int_equal(a->approval.n_roles, 2);
	assert_string_equal(a->approval.roles[0], "security");
	assert_string_equal(a->approval.roles[1], "admin");
	assert_int_equal(a->max_failed, 3);
	assert_int_equal(a->failure_action, WS_FAIL_CONTINUE);

	assert_int_equal(b->soak_s, 0);
	assert_int_equal(b->max_parallel_per_cluster, 5);
	assert_int_equal(b->health.interval_s, 60);
	assert_int_equal(b->health.timeout_s, 20);
	assert_int_equal(b->health.max_latency_ms, 500);
	assert_true(b->backup.enabled);                          /* on in the wave only */
	assert_int_equal(b->backup.max_age_s, 12 * 3600);
	assert_int_equal(b->approval.min, 2);
	assert_int_equal(b->approval.n_roles, 2);                /* roles kept */
	assert_int_equal(b->max_failed, 3);                      /* kept */
	assert_int_equal(b->failure_action, WS_FAIL_HALT);

	assert_int_equal(c->approval.min, 1);
	assert_int_equal(c->approval.n_roles, 1);
	assert_string_equal(c->approval.roles[0], "approver");
	assert_int_equal(c->max_parallel_per_cluster, 0);
	policy_free(p);

	/* A health gate turned on by a wave alone gets every default. */
	p = pt_parse_ok(KINDS_STD "    - {name: a, select: {}, gates: {health: {}}}\n");
	const ws_gate_health *h = &p->waves[0].s.health;
	assert_true(h->enabled);
	assert_int_equal(h->interval_s, 30);
	assert_int_equal(h->timeout_s, 5);
	assert_int_equal(h->consecutive_successes, 3);
	assert_int_equal(h->max_consecutive_failures, 3);
	assert_int_equal(h->max_latency_ms, 2000);
	assert_true(h->latency_regression == 1.5);
	assert_false(p->defaults.health.enabled);
	policy_free(p);
}

/* JSON goes through the same parser, with the same positions. */
static void test_json(void **state)
{
	(void)state;
	const char *json =
		"{\"apiVersion\": \"wavesched/v1\", \"kind\": \"WavePolicy\",\n"
		" \"metadata\": {\"name\": \"j\"},\n"
		" \"spec\": {\"release_kinds\": [\"urgent\"], \"schedule\": {\"break_glass\": true},\n"
		"  \"waves\": [{\"name\": \"w\", \"select\": {\"hosting\": \"shared\"}, \"max_tenants\": 2}]}}\n";
	ws_policy *p = pt_parse_ok(json);
	assert_true(p->break_glass);
	assert_int_equal(p->waves[0].max_tenants, 2);
	assert_int_equal(p->waves[0].line, 4);
	assert_int_equal(p->waves[0].column, 13);
	policy_free(p);
	pt_expect_errors("{\"apiVersion\": \"wavesched/v1\", \"kind\": \"WavePolicy\",\n"
			 " \"metadata\": {\"name\": \"j\"},\n"
			 " \"spec\": {\"release_kinds\": [\"standard\"], \"waves\": []}}\n",
			 "p.yaml:3:51: the wave list is empty (a policy needs at least one wave)");
}

static void test_document_shape(void **state)
{
	(void)state;
	pt_expect_errors("", "p.yaml: the document is empty (expected a WavePolicy)");
	pt_expect_errors("- a\n", "p.yaml:1:1: expected a mapping, got a sequence");
	pt_expect_errors("apiVersion: wavesched/v2\nkind: Fleet\n",
		"p.yaml:1:1: missing required key \"metadata\" in policy\n"
		"p.yaml:1:1: missing required key \"spec\" in policy\n"
		"p.yaml:1:13: invalid apiVersion \"wavesched/v2\" (expected \"wavesched/v1\")\n"
		"p.yaml:2:7: invalid kind \"Fleet\" (expected \"WavePolicy\")");
	pt_expect_errors("metadata: {name: x}\nspec: []\n",
		"p.yaml:1:1: missing required key \"apiVersion\" in policy\n"
		"p.yaml:1:1: missing required key \"kind\" in policy\n"
		"p.yaml:2:7: expected a mapping for \"spec\", got a sequence");
	pt_expect_errors("apiVersion: wavesched/v1\nkind: WavePolicy\nmetadata: {}\nspec: {}\n",
		"p.yaml:3:11: missing required key \"name\" in metadata\n"
		"p.yaml:4:7: missing required key \"release_kinds\" in spec\n"
		"p.yaml:4:7: missing required key \"waves\" in spec");
	/* a syntax error is reported by the YAML reader */
	ws_diags d;
	ws_diags_init(&d);
	assert_null(policy_parse("p.yaml", "a: [", 4, &d));
	assert_int_equal(d.len, 1);
	ws_diags_free(&d);
	/* a file that cannot be read */
	ws_diags_init(&d);
	assert_null(policy_parse_file("/nonexistent/p.yaml", &d));
	assert_int_equal(d.len, 1);
	ws_diags_free(&d);
	/* no diagnostics list: still NULL */
	assert_null(policy_parse("p.yaml", "kind: x\n", 8, NULL));
}

static void test_unknown_keys(void **state)
{
	(void)state;
	pt_expect_errors(PT_HEAD
		"  release_kinds: [standard]\n"
		"  rollout: x\n"
		"  schedule: {slots: 30m}\n"
		"  deferral: {max: 1d, per: 1}\n"
		"  defaults:\n"
		"    sok: 1h\n"
		"    gates:\n"
		"      smoke: {}\n"
		"      health: {intervall: 30s}\n"
		"      backup: {max_age: 1h, restore: true}\n"
		"      approval: {minimum: 1}\n"
		"      metrics: [{name: m, query: q, window: 5m}]\n"
		"    failure: {budget: 1}\n"
		"  waves:\n"
		"    - {name: a, select: {}, selector: {}}\n"
		"    - {name: b, select: {host: shared}}\n"
		"extra: 1\n",
		"p.yaml:7:3: unknown key \"rollout\" in spec (expected one of: " SPEC_KEYS ")\n"
		"p.yaml:8:14: unknown key \"slots\" in schedule (expected one of: respect_windows, "
		"slot, horizon, blackouts, break_glass, deploy_estimate)\n"
		"p.yaml:9:23: unknown key \"per\" in deferral (expected one of: max, per_tenant)\n"
		"p.yaml:11:5: unknown key \"sok\" in defaults (expected one of: soak, "
		"max_parallel_per_cluster, gates, failure)\n"
		"p.yaml:13:7: unknown key \"smoke\" in gates (expected one of: backup, health, "
		"approval, attestations, metrics)\n"
		"p.yaml:14:16: unknown key \"intervall\" in health gate (expected one of: interval, "
		"timeout, consecutive_successes, max_consecutive_failures, max_latency_ms, "
		"latency_regression)\n"
		"p.yaml:15:29: unknown key \"restore\" in backup gate (expected one of: max_age, "
		"require_restore_verified, source, url)\n"
		"p.yaml:16:18: unknown key \"minimum\" in approval gate (expected one of: min, roles)\n"
		"p.yaml:17:37: unknown key \"window\" in metric (expected one of: name, query, min, "
		"max, for)\n"
		"p.yaml:18:15: unknown key \"budget\" in failure (expected one of: max_failed, action)\n"
		"p.yaml:20:29: unknown key \"selector\" in wave (expected one of: " WAVE_KEYS ")\n"
		"p.yaml:21:26: unknown key \"host\" in selector (expected one of: slugs, clusters, "
		"hosting, criticality, labels, regions, not)\n"
		"p.yaml:22:1: unknown key \"extra\" in policy (expected one of: apiVersion, kind, "
		"metadata, spec)");
	pt_expect_errors("apiVersion: wavesched/v1\nkind: WavePolicy\nmetadata: {name: p, labels: {}}\n"
			 "spec: {release_kinds: [urgent], waves: [{name: a, select: {}}]}\n",
		"p.yaml:3:21: unknown key \"labels\" in metadata (expected one of: name, description)");
}

static void test_wrong_types(void **state)
{
	(void)state;
	pt_expect_errors(PT_HEAD
		"  release_kinds: standard\n"
		"  unit: [tenant]\n"
		"  schedule:\n"
		"    respect_windows: maybe\n"
		"    blackouts: payroll\n"
		"    break_glass: 1\n"
		"  deferral: 14d\n"
		"  defaults:\n"
		"    max_parallel_per_cluster: two\n"
		"    gates: []\n"
		"    failure: halt\n"
		"  waves:\n"
		"    - name: [a]\n"
		"      select: all\n"
		"      max_tenants: \"3\"\n"
		"      soak: {h: 1}\n"
		"    - just-a-name\n",
		"p.yaml:6:18: expected a sequence for \"release_kinds\", got a string\n"
		"p.yaml:7:9: expected a string for \"unit\", got a sequence\n"
		"p.yaml:9:22: expected a boolean for \"respect_windows\", got a string\n"
		"p.yaml:10:16: expected a sequence for \"blackouts\", got a string\n"
		"p.yaml:11:18: expected a boolean for \"break_glass\", got an integer\n"
		"p.yaml:12:13: expected a mapping for \"deferral\", got a string\n"
		"p.yaml:14:31: expected an integer for \"max_parallel_per_cluster\", got a string\n"
		"p.yaml:15:12: expected a mapping for \"gates\", got a sequence\n"
		"p.yaml:16:14: expected a mapping for \"failure\", got a string\n"
		"p.yaml:18:13: expected a string for \"name\", got a sequence\n"
		"p.yaml:19:15: expected a mapping for a selector, got a string\n"
		"p.yaml:20:20: expected an integer for \"max_tenants\", got a string\n"
		"p.yaml:21:13: expected a string for \"soak\", got a mapping\n"
		"p.yaml:22:7: expected a mapping, got a string");
	pt_expect_errors(PT_HEAD
		"  release_kinds: [urgent, 2, {a: b}]\n"
		"  schedule: {blackouts: [a, [b], \"\"]}\n"
		"  defaults:\n"
		"    gates:\n"
		"      health: {latency_regression: fast, consecutive_successes: 2.5}\n"
		"      approval: {roles: admin}\n"
		"      metrics: {name: m}\n"
		"      attestations: [tests, {a: 1}]\n"
		"  waves: {name: a}\n",
		"p.yaml:6:27: unknown release kind \"2\" (expected standard or urgent)\n"
		"p.yaml:6:30: expected a string in \"release_kinds\", got a mapping\n"
		"p.yaml:7:29: expected a string in \"blackouts\", got a sequence\n"
		"p.yaml:7:34: calendar names must not be empty\n"
		"p.yaml:10:36: expected a number for \"latency_regression\", got a string\n"
		"p.yaml:10:65: expected an integer for \"consecutive_successes\", got a number\n"
		"p.yaml:11:25: expected a sequence for \"roles\", got a string\n"
		"p.yaml:12:16: expected a sequence for \"metrics\", got a mapping\n"
		"p.yaml:13:29: expected a string in \"attestations\", got a mapping\n"
		"p.yaml:14:10: expected a sequence for \"waves\", got a mapping");
}

static void test_metadata_name(void **state)
{
	(void)state;
	pt_expect_errors("apiVersion: wavesched/v1\nkind: WavePolicy\nmetadata: {name: Standard_Q}\n"
			 "spec: {release_kinds: [urgent], waves: [{name: a, select: {}}]}\n",
		"p.yaml:3:18: invalid policy name \"Standard_Q\" (expected 1 to 63 characters a-z, "
		"0-9 or -)");
	pt_expect_errors("apiVersion: wavesched/v1\nkind: WavePolicy\nmetadata: {name: \"\", "
			 "description: [x]}\nspec: {release_kinds: [urgent], waves: [{name: a, select: {}}]}\n",
		"p.yaml:3:18: invalid policy name \"\" (expected 1 to 63 characters a-z, 0-9 or -)\n"
		"p.yaml:3:35: expected a string for \"description\", got a sequence");
}

static void test_release_kinds(void **state)
{
	(void)state;
	pt_expect_errors(PT_HEAD "  release_kinds: [standard, hotfix, standard]\n  waves: [{name: a, select: {}}]\n",
		"p.yaml:6:29: unknown release kind \"hotfix\" (expected standard or urgent)\n"
		"p.yaml:6:37: duplicate release kind \"standard\"");
	pt_expect_errors(PT_HEAD "  release_kinds: []\n  waves: [{name: a, select: {}}]\n",
		"p.yaml:6:18: release_kinds must not be empty (expected standard, urgent or both)");
	ws_policy *p = pt_parse_ok(PT_HEAD "  release_kinds: [urgent, standard]\n  waves: [{name: a, select: {}}]\n");
	assert_int_equal(p->release_kinds, WS_RELEASE_STANDARD | WS_RELEASE_URGENT);
	policy_free(p);

	ws_release_kind k = 0;
	assert_int_equal(ws_release_kind_parse("urgent", &k), 0);
	assert_int_equal(k, WS_RELEASE_URGENT);
	assert_int_equal(ws_release_kind_parse("standard", &k), 0);
	assert_int_equal(k, WS_RELEASE_STANDARD);
	assert_int_equal(ws_release_kind_parse("Urgent", &k), WS_EINVAL);
	assert_int_equal(ws_release_kind_parse(NULL, &k), WS_EINVAL);
	assert_string_equal(ws_release_kind_name(WS_RELEASE_STANDARD), "standard");
	assert_string_equal(ws_release_kind_name(WS_RELEASE_URGENT), "urgent");
	assert_string_equal(ws_failure_action_name(WS_FAIL_HALT), "halt");
	assert_string_equal(ws_failure_action_name(WS_FAIL_ROLLBACK_WAVE), "rollback_wave");
	assert_string_equal(ws_failure_action_name(WS_FAIL_CONTINUE), "continue");
}

static void test_unit_and_unmatched(void **state)
{
	(void)state;
	pt_expect_errors(PT_HEAD "  release_kinds: [standard]\n  unit: tenants\n  unmatched: ignore\n"
			 "  waves: [{name: a, select: {}}]\n",
		"p.yaml:7:9: invalid unit \"tenants\" (expected tenant or cluster)\n"
		"p.yaml:8:14: invalid unmatched \"ignore\" (expected error or skip)");
	ws_policy *p = pt_parse_ok(PT_HEAD "  release_kinds: [standard]\n  unit: cluster\n"
				   "  unmatched: skip\n  waves: [{name: a, select: {}}]\n");
	assert_int_equal(p->unit, WS_UNIT_CLUSTER);
	assert_true(p->unmatched_skip);
	policy_free(p);
}

static void test_durations(void **state)
{
	(void)state;
	pt_expect_errors(PT_HEAD
		"  release_kinds: [standard]\n"
		"  schedule: {slot: 0s, horizon: -1d}\n"
		"  deferral: {max: 0m}\n"
		"  defaults:\n"
		"    soak: -1h\n"
		"    gates:\n"
		"      backup: {max_age: PT0S, require_restore_verified: 0d}\n"
		"      health: {interval: 0s, timeout: soon}\n"
		"  waves:\n"
		"    - {name: a, select: {}, soak: 1 hour}\n"
		"    - {name: b, select: {}, soak: 1M}\n",
		"p.yaml:7:20: slot must be positive\n"
		"p.yaml:7:33: horizon must be positive\n"
		"p.yaml:8:19: max must be positive\n"
		"p.yaml:10:11: soak must not be negative\n"
		"p.yaml:12:25: max_age must be positive\n"
		"p.yaml:12:57: require_restore_verified must be positive\n"
		"p.yaml:13:26: interval must be positive\n"
		"p.yaml:13:39: invalid duration \"soon\" (expected e.g. 90s, 30m, 4h, 1d or PT4H)\n"
		"p.yaml:15:35: invalid duration \"1 hour\" (expected e.g. 90s, 30m, 4h, 1d or PT4H)\n"
		"p.yaml:16:35: invalid duration \"1M\" (expected e.g. 90s, 30m, 4h, 1d or PT4H)");
	/* soak may be zero, written any way; ISO 8601 works everywhere */
	ws_policy *p = pt_parse_ok(PT_HEAD
		"  release_kinds: [standard]\n"
		"  schedule: {slot: PT15M, horizon: 2w}\n"
		"  defaults: {soak: 0s}\n"
		"  waves:\n"
		"    - {name: a, select: {}, soak: 0}\n"
		"    - {name: b, select: {}, soak: P1DT2H}\n");
	assert_int_equal(p->slot_s, 900);
	assert_int_equal(p->horizon_s, 14 * 86400);
	assert_int_equal(pt_wave(p, "a")->s.soak_s, 0);
	assert_int_equal(pt_wave(p, "b")->s.soak_s, 26 * 3600);
	policy_free(p);
}

static void test_empty_and_missing_waves(void **state)
{
	(void)state;
	pt_expect_errors(PT_HEAD "  release_kinds: [standard]\n",
		"p.yaml:6:3: missing required key \"waves\" in spec");
	pt_expect_errors(KINDS_STD,
		"p.yaml:7:9: expected a sequence for \"waves\", got null");
	pt_expect_errors(PT_HEAD "  release_kinds: [standard]\n  waves: []\n",
		"p.yaml:7:10: the wave list is empty (a policy needs at least one wave)");
	pt_expect_errors(KINDS_STD "    - {select: {}}\n    - {name: b}\n",
		"p.yaml:8:7: missing required key \"name\" in wave\n"
		"p.yaml:9:7: missing required key \"select\" in wave");
	pt_expect_errors(KINDS_STD "    - {name: a, select: ~}\n",
		"p.yaml:8:25: expected a mapping for a selector, got null");
}

static void test_duplicate_wave_names(void **state)
{
	(void)state;
	pt_expect_errors(KINDS_STD
		"    - name: a\n"
		"      select: {}\n"
		"    - name: b\n"
		"      select: {}\n"
		"    - name: a\n"
		"      select: {hosting: shared}\n"
		"    - {name: a, select: {}}\n",
		"p.yaml:12:13: duplicate wave name \"a\" (first defined at 8:7)\n"
		"p.yaml:14:14: duplicate wave name \"a\" (first defined at 8:7)");
}

static void test_wave_names(void **state)
{
	(void)state;
	pt_expect_errors(KINDS_STD
		"    - {name: Canary, select: {}}\n"
		"    - {name: deferred, select: {}}\n"
		"    - {name: overflow-1, select: {}}\n"
		"    - {name: overflow-12, select: {}}\n"
		"    - {name: \"\", select: {}}\n",
		"p.yaml:8:14: invalid wave name \"Canary\" (expected 1 to 63 characters a-z, 0-9 or -)\n"
		"p.yaml:9:14: wave name \"deferred\" is reserved for the planner's own waves\n"
		"p.yaml:10:14: wave name \"overflow-1\" is reserved for the planner's own waves\n"
		"p.yaml:11:14: wave name \"overflow-12\" is reserved for the planner's own waves\n"
		"p.yaml:12:14: invalid wave name \"\" (expected 1 to 63 characters a-z, 0-9 or -)");
	/* only overflow-<digits> is taken */
	ws_policy *p = pt_parse_ok(KINDS_STD "    - {name: overflow-a, select: {}}\n"
				   "    - {name: overflow, select: {}}\n    - {name: deferred-2, select: {}}\n");
	assert_int_equal(p->n_waves, 3);
	policy_free(p);
}

static void test_break_glass(void **state)
{
	(void)state;
	pt_expect_errors(PT_HEAD "  release_kinds: [urgent, standard]\n  schedule: {break_glass: true}\n"
			 "  waves: [{name: a, select: {}}]\n",
		"p.yaml:7:27: break_glass is only allowed for policies that allow only urgent releases");
	pt_expect_errors(PT_HEAD "  release_kinds: [standard]\n  schedule:\n    break_glass: yes\n"
			 "  waves: [{name: a, select: {}}]\n",
		"p.yaml:8:18: break_glass is only allowed for policies that allow only urgent releases");
	/* false is fine anywhere; true is fine for urgent only */
	ws_policy *p = pt_parse_ok(PT_HEAD "  release_kinds: [standard]\n  schedule: {break_glass: false}\n"
				   "  waves: [{name: a, select: {}}]\n");
	assert_false(p->break_glass);
	policy_free(p);
	p = pt_parse_ok(PT_HEAD "  release_kinds: [urgent]\n  schedule: {break_glass: true}\n"
			"  waves: [{name: a, select: {}}]\n");
	assert_true(p->break_glass);
	policy_free(p);
}

static void test_max_tenants(void **state)
{
	(void)state;
	pt_expect_errors(PT_HEAD "  release_kinds: [standard]\n  unit: cluster\n  waves:\n"
			 "    - {name: a, select: {}, max_tenants: 1}\n",
		"p.yaml:9:29: max_tenants is not allowed with unit: cluster (a cluster's tenants move "
		"together)");
	pt_expect_errors(KINDS_STD "    - {name: a, select: {}, max_tenants: 0}\n"
			 "    - {name: b, select: {}, max_tenants: 1000001}\n",
		"p.yaml:8:42: max_tenants must be between 1 and 1000000, got 0\n"
		"p.yaml:9:42: max_tenants must be between 1 and 1000000, got 1000001");
	ws_policy *p = pt_parse_ok(KINDS_STD "    - {name: a, select: {}, max_tenants: 1000000}\n");
	assert_int_equal(p->waves[0].max_tenants, 1000000);
	policy_free(p);
}

static void test_max_parallel_and_failure(void **state)
{
	(void)state;
	pt_expect_errors(PT_HEAD
		"  release_kinds: [standard]\n"
		"  defaults:\n"
		"    max_parallel_per_cluster: 0\n"
		"    failure: {max_failed: -1, action: retry}\n"
		"  waves:\n"
		"    - {name: a, select: {}, max_parallel_per_cluster: 10001}\n"
		"    - {name: b, select: {}, failure: {max_failed: 100001, action: [halt]}}\n",
		"p.yaml:8:31: max_parallel_per_cluster must be between 1 and 10000, got 0\n"
		"p.yaml:9:27: max_failed must be between 0 and 100000, got -1\n"
		"p.yaml:9:39: invalid failure action \"retry\" (expected one of: halt, rollback_wave, "
		"continue)\n"
		"p.yaml:11:55: max_parallel_per_cluster must be between 1 and 10000, got 10001\n"
		"p.yaml:12:51: max_failed must be between 0 and 100000, got 100001\n"
		"p.yaml:12:67: expected a string for \"action\", got a sequence");
}

static void test_health_ranges(void **state)
{
	(void)state;
	pt_expect_errors(PT_HEAD
		"  release_kinds: [standard]\n"
		"  defaults:\n"
		"    gates:\n"
		"      health:\n"
		"        interval: 5s\n"
		"        timeout: 10s\n"
		"        consecutive_successes: 0\n"
		"        max_consecutive_failures: 101\n"
		"        max_latency_ms: 600001\n"
		"        latency_regression: 0.9\n"
		"  waves: [{name: a, select: {}}]\n",
		"p.yaml:11:18: timeout (10s) must not be longer than interval (5s)\n"
		"p.yaml:12:32: consecutive_successes must be between 1 and 100, got 0\n"
		"p.yaml:13:35: max_consecutive_failures must be between 1 and 100, got 101\n"
		"p.yaml:14:25: max_latency_ms must be between 1 and 600000, got 600001\n"
		"p.yaml:15:29: latency_regression must be between 1 and 100, got 0.9");
	pt_expect_errors(KINDS_STD
		"    - {name: a, select: {}, gates: {health: {latency_regression: 100.5, max_latency_ms: 0}}}\n"
		"    - {name: b, select: {}, gates: {health: {latency_regression: .inf}}}\n",
		"p.yaml:8:66: latency_regression must be between 1 and 100, got 100.5\n"
		"p.yaml:8:89: max_latency_ms must be between 1 and 600000, got 0\n"
		"p.yaml:9:66: expected a finite number for \"latency_regression\", got \".inf\"");
	/* The bounds themselves are fine; a timeout equal to the interval too. */
	ws_policy *p = pt_parse_ok(KINDS_STD
		"    - {name: a, select: {}, gates: {health: {interval: 5s, timeout: 5s,"
		" consecutive_successes: 100, max_consecutive_failures: 1, max_latency_ms: 600000,"
		" latency_regression: 1}}}\n");
	assert_true(p->waves[0].s.health.latency_regression == 1.0);
	assert_int_equal(p->waves[0].s.health.timeout_s, 5);
	policy_free(p);
}

/* timeout <= interval holds on the effective values, and is reported once,
 * at the block that wrote one of the two. */
static void test_health_timeout_inherited(void **state)
{
	(void)state;
	pt_expect_errors(PT_HEAD
		"  release_kinds: [standard]\n"
		"  defaults:\n"
		"    gates: {health: {interval: 30s, timeout: 10s}}\n"
		"  waves:\n"
		"    - {name: a, select: {}, gates: {health: {interval: 5s}}}\n"
		"    - {name: b, select: {}, gates: {health: {timeout: 1m}}}\n"
		"    - {name: c, select: {}, gates: {health: {max_latency_ms: 100}}}\n"
		"    - {name: d, select: {}, gates: {health: {interval: 1m, timeout: 45s}}}\n",
		"p.yaml:10:56: timeout (10s) must not be longer than interval (5s)\n"
		"p.yaml:11:55: timeout (1m) must not be longer than interval (30s)");
	/* the default timeout (5 s) against a short interval */
	pt_expect_errors(KINDS_STD "    - {name: a, select: {}, gates: {health: {interval: 2s}}}\n",
		"p.yaml:8:56: timeout (5s) must not be longer than interval (2s)");
	/* an error in defaults is not repeated for every wave */
	pt_expect_errors(PT_HEAD
		"  release_kinds: [standard]\n"
		"  defaults: {gates: {health: {timeout: 1m}}}\n"
		"  waves:\n"
		"    - {name: a, select: {}}\n"
		"    - {name: b, select: {}, gates: {health: {max_latency_ms: 100}}}\n",
		"p.yaml:7:40: timeout (1m) must not be longer than interval (30s)");
}

static void test_backup_gate(void **state)
{
	(void)state;
	pt_expect_errors(PT_HEAD
		"  release_kinds: [standard]\n"
		"  defaults: {gates: {backup: {}}}\n"
		"  waves:\n"
		"    - {name: a, select: {}}\n",
		"p.yaml:7:30: missing required key \"max_age\" in backup gate");
	pt_expect_errors(KINDS_STD
		"    - {name: a, select: {}, gates: {backup: {require_restore_verified: 7d}}}\n"
		"    - {name: b, select: {}, gates: {backup: {max_age: 1h, source: s3}}}\n",
		"p.yaml:8:45: missing required key \"max_age\" in backup gate\n"
		"p.yaml:9:67: invalid backup source \"s3\" (expected catalog or http)");
	/* inherited from defaults, the wave may add restore verification */
	ws_policy *p = pt_parse_ok(PT_HEAD
		"  release_kinds: [standard]\n"
		"  defaults: {gates: {backup: {max_age: 24h, source: http, url: \"http://b/{slug}\"}}}\n"
		"  waves:\n"
		"    - {name: a, select: {}, gates: {backup: {require_restore_verified: 7d}}}\n");
	assert_true(p->waves[0].s.backup.enabled);
	assert_int_equal(p->waves[0].s.backup.max_age_s, 86400);
	assert_int_equal(p->waves[0].s.backup.source, WS_BACKUP_HTTP);
	assert_string_equal(p->waves[0].s.backup.url, "http://b/{slug}");
	policy_free(p);
}

static void test_backup_source(void **state)
{
	(void)state;
	/* catalog by default, with no url */
	ws_policy *p = pt_parse_ok(KINDS_STD
		"    - {name: a, select: {}, gates: {backup: {max_age: 1h}}}\n"
		"    - {name: b, select: {}, gates: {backup: {max_age: 1h, source: catalog}}}\n");
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(p->waves[i].s.backup.source, WS_BACKUP_CATALOG);
		assert_null(p->waves[i].s.backup.url);
	}
	assert_string_equal(ws_backup_source_name(WS_BACKUP_CATALOG), "catalog");
	assert_string_equal(ws_backup_source_name(WS_BACKUP_HTTP), "http");
	policy_free(p);
	/* wave-level overrides, field by field: a wave changes the url only,
	 * another goes back to the catalog (dropping the url), a third turns
	 * http on for itself */
	p = pt_parse_ok(PT_HEAD
		"  release_kinds: [standard]\n"
		"  defaults: {gates: {backup: {max_age: 24h, source: http, url: \"https://b.example/{slug}/status\"}}}\n"
		"  waves:\n"
		"    - {name: a, select: {}}\n"
		"    - {name: b, select: {}, gates: {backup: {url: \"http://o/{cluster}/{slug}\"}}}\n"
		"    - {name: c, select: {}, gates: {backup: {source: catalog, max_age: 2h}}}\n"
		"    - {name: d, select: {}, gates: {backup: {source: http}}}\n");
	assert_int_equal(p->waves[0].s.backup.source, WS_BACKUP_HTTP);
	assert_string_equal(p->waves[0].s.backup.url, "https://b.example/{slug}/status");
	assert_int_equal(p->waves[1].s.backup.source, WS_BACKUP_HTTP);
	assert_string_equal(p->waves[1].s.backup.url, "http://o/{cluster}/{slug}");
	assert_int_equal(p->waves[1].s.backup.max_age_s, 86400);
	assert_int_equal(p->waves[2].s.backup.source, WS_BACKUP_CATALOG);
	assert_null(p->waves[2].s.backup.url);
	assert_int_equal(p->waves[2].s.backup.max_age_s, 7200);
	assert_int_equal(p->waves[3].s.backup.source, WS_BACKUP_HTTP);
	assert_string_equal(p->waves[3].s.backup.url, "https://b.example/{slug}/status");
	policy_free(p);
	p = pt_parse_ok(KINDS_STD
		"    - {name: a, select: {}, gates: {backup: {max_age: 1h, source: http, url: \"http://x/{slug}\"}}}\n"
		"    - {name: b, select: {}}\n");
	assert_int_equal(p->waves[0].s.backup.source, WS_BACKUP_HTTP);
	assert_false(p->waves[1].s.backup.enabled);
	assert_int_equal(p->waves[1].s.backup.source, WS_BACKUP_CATALOG);
	policy_free(p);
}

static void test_backup_url_rules(void **state)
{
	(void)state;
	pt_expect_errors(KINDS_STD
		"    - {name: a, select: {}, gates: {backup: {max_age: 1h, source: http}}}\n"
		"    - {name: b, select: {}, gates: {backup: {max_age: 1h, url: \"http://x/{slug}\"}}}\n"
		"    - {name: c, select: {}, gates: {backup: {max_age: 1h, source: catalog, url: \"http://x/{slug}\"}}}\n"
		"    - {name: d, select: {}, gates: {backup: {max_age: 1h, source: http, url: \"ftp://x/{slug}\"}}}\n"
		"    - {name: e, select: {}, gates: {backup: {max_age: 1h, source: http, url: \"http://x/{tenant}\"}}}\n"
		"    - {name: f, select: {}, gates: {backup: {max_age: 1h, source: http, url: \"http://x/status\"}}}\n"
		"    - {name: g, select: {}, gates: {backup: {max_age: 1h, source: http, url: \"http://x/{slug} y\"}}}\n"
		"    - {name: h, select: {}, gates: {backup: {max_age: 1h, source: http, url: [a]}}}\n"
		"    - {name: i, select: {}, gates: {backup: {max_age: 1h, source: http, url: \"http://x/{slug}}\"}}}\n",
		"p.yaml:8:67: missing required key \"url\" in backup gate (source: http reads a status URL "
		"per tenant)\n"
		"p.yaml:9:64: url is only used with source: http (this backup gate reads the catalog)\n"
		"p.yaml:10:81: url is only used with source: http (this backup gate reads the catalog)\n"
		"p.yaml:11:78: invalid backup url \"ftp://x/{slug}\" (expected http:// or https://)\n"
		"p.yaml:12:78: invalid backup url \"http://x/{tenant}\" (unknown placeholder at offset 9; "
		"expected {slug} or {cluster})\n"
		"p.yaml:13:78: invalid backup url \"http://x/status\" (expected {slug}: the status is per "
		"tenant)\n"
		"p.yaml:14:78: invalid backup url \"http://x/{slug} y\" (blank or control character at "
		"offset 15)\n"
		"p.yaml:15:78: expected a string for \"url\", got a sequence\n"
		"p.yaml:16:78: invalid backup url \"http://x/{slug}}\" (unknown placeholder at offset 15; "
		"expected {slug} or {cluster})");
	/* a url in defaults without http is reported once, at defaults */
	pt_expect_errors(PT_HEAD
		"  release_kinds: [standard]\n"
		"  defaults: {gates: {backup: {max_age: 24h, url: \"http://b/{slug}\"}}}\n"
		"  waves:\n"
		"    - {name: a, select: {}}\n"
		"    - {name: b, select: {}, gates: {backup: {max_age: 2h}}}\n",
		"p.yaml:7:50: url is only used with source: http (this backup gate reads the catalog)");
	/* an invalid source neither asks for a url nor refuses one */
	pt_expect_errors(KINDS_STD
		"    - {name: a, select: {}, gates: {backup: {max_age: 1h, source: s3, url: \"http://x/{slug}\"}}}\n",
		"p.yaml:8:67: invalid backup source \"s3\" (expected catalog or http)");
}

static void test_approval_gate(void **state)
{
	(void)state;
	pt_expect_errors(PT_HEAD
		"  release_kinds: [standard]\n"
		"  defaults:\n"
		"    gates: {approval: {min: 21, roles: [approver, viewer, tenant, auditor, approver]}}\n"
		"  waves:\n"
		"    - {name: a, select: {}, gates: {approval: {min: -1, roles: []}}}\n",
		"p.yaml:8:29: min must be between 0 and 20, got 21\n"
		"p.yaml:8:51: role \"viewer\" cannot approve (expected one of: admin, platform, "
		"security, approver)\n"
		"p.yaml:8:59: role \"tenant\" cannot approve (expected one of: admin, platform, "
		"security, approver)\n"
		"p.yaml:8:67: unknown role \"auditor\" (expected one of: admin, platform, security, "
		"approver)\n"
		"p.yaml:8:76: duplicate role \"approver\" in roles\n"
		"p.yaml:10:53: min must be between 0 and 20, got -1\n"
		"p.yaml:10:64: roles must not be empty (nobody could approve)");
	ws_policy *p = pt_parse_ok(KINDS_STD
		"    - {name: a, select: {}, gates: {approval: {min: 20, roles: [admin, platform, "
		"security, approver]}}}\n");
	assert_int_equal(p->waves[0].s.approval.min, 20);
	assert_int_equal(p->waves[0].s.approval.n_roles, 4);
	assert_string_equal(p->waves[0].s.approval.roles[3], "approver");
	policy_free(p);
}

/* The gates of issue 7: restore verification, attestations and metrics;
 * a wave's list replaces the inherited one whole. */
static void test_gate_lists(void **state)
{
	(void)state;
	ws_policy *p = pt_parse_ok(PT_HEAD
		"  release_kinds: [standard]\n"
		"  defaults:\n"
		"    gates:\n"
		"      attestations: [tests, image-scan]\n"
		"      backup: {max_age: 24h, require_restore_verified: 7d}\n"
		"      metrics:\n"
		"        - {name: errors, query: 'rate(x{tenant=\"{slug}\"}[5m])', max: 0.01, for: 5m}\n"
		"        - {name: p99, query: q, min: 0, max: 250}\n"
		"  waves:\n"
		"    - {name: a, select: {}, gates: {attestations: [signature], metrics: []}}\n"
		"    - {name: b, select: {}}\n");
	const ws_wave_settings *a = &p->waves[0].s, *b = &p->waves[1].s;
	assert_true(a->backup.enabled);
	assert_int_equal(a->backup.restore_max_age_s, 7 * 86400);
	assert_int_equal(a->n_attestations, 1);
	assert_string_equal(a->attestations[0], "signature");
	assert_int_equal(a->n_metrics, 0);
	assert_int_equal(b->n_attestations, 2);
	assert_string_equal(b->attestations[1], "image-scan");
	assert_int_equal(b->n_metrics, 2);
	assert_string_equal(b->metrics[0].name, "errors");
	assert_string_equal(b->metrics[0].query, "rate(x{tenant=\"{slug}\"}[5m])");
	assert_true(b->metrics[0].has_max && !b->metrics[0].has_min);
	assert_true(b->metrics[0].max == 0.01);
	assert_int_equal(b->metrics[0].for_s, 300);
	assert_true(b->metrics[1].has_min && b->metrics[1].has_max);
	assert_int_equal(b->metrics[1].for_s, 0);
	policy_free(p);
	pt_expect_errors(KINDS_STD
		"    - name: a\n"
		"      select: {}\n"
		"      gates:\n"
		"        attestations: [\"\", ok, Tests, ok]\n"
		"        metrics:\n"
		"          - {query: q, min: low, for: -5m}\n"
		"          - [a]\n"
		"          - {name: m, query: {a: 1}, max: \"1\"}\n"
		"          - {name: z, query: q, for: 0}\n"
		"          - {name: y, query: q, min: 5, max: 1}\n"
		"          - {name: x, query: q, min: 1}\n"
		"          - {name: x, query: q, max: 1}\n",
		"p.yaml:11:24: invalid attestation name \"\" (expected 1 to 63 characters of a-z, "
		"0-9 and -)\n"
		"p.yaml:11:32: invalid attestation name \"Tests\" (expected 1 to 63 characters of a-z, "
		"0-9 and -)\n"
		"p.yaml:11:39: duplicate attestation \"ok\"\n"
		"p.yaml:13:13: missing required key \"name\" in metric\n"
		"p.yaml:13:29: expected a number for \"min\", got a string\n"
		"p.yaml:13:39: for must not be negative\n"
		"p.yaml:14:13: expected a mapping, got a sequence\n"
		"p.yaml:15:30: expected a string for \"query\", got a mapping\n"
		"p.yaml:15:43: expected a number for \"max\", got a string\n"
		"p.yaml:16:13: metric \"z\" needs min or max (a check with neither always passes)\n"
		"p.yaml:17:46: max (1) is below min\n"
		"p.yaml:19:13: duplicate metric \"x\"");
}

static void test_deferral(void **state)
{
	(void)state;
	/* deferral on an urgent-only policy is fine: it is never used for them */
	ws_policy *p = pt_parse_ok(PT_HEAD "  release_kinds: [urgent]\n  deferral: {max: 14d, per_tenant: 2}\n"
				   "  waves: [{name: a, select: {}}]\n");
	assert_true(p->deferral_allowed);
	assert_int_equal(p->deferral_max_s, 14 * 86400);
	assert_int_equal(p->deferral_per_tenant, 2);
	policy_free(p);
	p = pt_parse_ok(PT_HEAD "  release_kinds: [standard]\n  deferral: {max: 7d}\n"
			"  waves: [{name: a, select: {}}]\n");
	assert_int_equal(p->deferral_per_tenant, 1);
	policy_free(p);
	pt_expect_errors(PT_HEAD "  release_kinds: [standard]\n  deferral: {per_tenant: 0}\n"
			 "  waves: [{name: a, select: {}}]\n",
		"p.yaml:7:13: missing required key \"max\" in deferral\n"
		"p.yaml:7:26: per_tenant must be between 1 and 100, got 0");
	pt_expect_errors(PT_HEAD "  release_kinds: [standard]\n  deferral: {max: 1d, per_tenant: 101}\n"
			 "  waves: [{name: a, select: {}}]\n",
		"p.yaml:7:35: per_tenant must be between 1 and 100, got 101");
}

static void test_blackouts(void **state)
{
	(void)state;
	pt_expect_errors(PT_HEAD "  release_kinds: [standard]\n"
			 "  schedule: {blackouts: [payroll, month-end, payroll, payroll]}\n"
			 "  waves: [{name: a, select: {}}]\n",
		"p.yaml:7:46: duplicate calendar \"payroll\" in blackouts\n"
		"p.yaml:7:55: duplicate calendar \"payroll\" in blackouts");
	ws_policy *p = pt_parse_ok(PT_HEAD "  release_kinds: [standard]\n  schedule: {blackouts: []}\n"
				   "  waves: [{name: a, select: {}}]\n");
	assert_int_equal(p->n_blackouts, 0);
	policy_free(p);
}

/* Long lists are checked for repeats in n log n: 20000 waves of one name
 * and 20000 blackouts of one calendar give one message per repeat. */
static void test_long_lists(void **state)
{
	(void)state;
	enum { N = 20000 };
	size_t cap = 64 * (size_t)N + 256, len = 0;
	char *y = malloc(cap);
	assert_non_null(y);
	len += (size_t)snprintf(y + len, cap - len, "%s", PT_HEAD "  release_kinds: [standard]\n"
				"  schedule:\n    blackouts:\n");
	for (int i = 0; i < N; i++)
		len += (size_t)snprintf(y + len, cap - len, "      - payroll\n");
	len += (size_t)snprintf(y + len, cap - len, "  waves:\n");
	for (int i = 0; i < N; i++)
		len += (size_t)snprintf(y + len, cap - len, "    - {name: w, select: {}}\n");
	ws_diags d;
	ws_diags_init(&d);
	assert_null(policy_parse("p.yaml", y, len, &d));
	assert_int_equal(d.len, 2 * (N - 1));
	char *first = ws_diag_format(&d.items[0]);
	assert_string_equal(first, "p.yaml:10:9: duplicate calendar \"payroll\" in blackouts");
	free(first);
	char *last = ws_diag_format(&d.items[d.len - 1]);
	char *want = NULL;
	assert_true(asprintf(&want, "p.yaml:%d:14: duplicate wave name \"w\" (first defined at %d:7)",
			     9 + N + N, 10 + N) > 0);
	assert_string_equal(last, want);
	free(want);
	free(last);
	ws_diags_free(&d);
	free(y);
}

/* Every problem of a file in one run, sorted by position. */
static void test_all_collected_sorted(void **state)
{
	(void)state;
	pt_expect_errors("apiVersion: wavesched/v1\n"
		"kind: WavePolicy\n"
		"metadata: {name: BAD}\n"
		"spec:\n"
		"  waves:\n"
		"    - {name: x, select: {hosting: cloud}, soak: soon}\n"
		"    - {name: x, select: {}}\n"
		"  release_kinds: [nightly]\n"
		"  schedule: {break_glass: maybe}\n",
		"p.yaml:3:18: invalid policy name \"BAD\" (expected 1 to 63 characters a-z, 0-9 or -)\n"
		"p.yaml:6:35: invalid hosting \"cloud\" (expected shared or dedicated)\n"
		"p.yaml:6:49: invalid duration \"soon\" (expected e.g. 90s, 30m, 4h, 1d or PT4H)\n"
		"p.yaml:7:14: duplicate wave name \"x\" (first defined at 6:7)\n"
		"p.yaml:8:19: unknown release kind \"nightly\" (expected standard or urgent)\n"
		"p.yaml:9:27: expected a boolean for \"break_glass\", got a string");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_example_standard),
		cmocka_unit_test(test_example_urgent),
		cmocka_unit_test(test_example_platform_patch),
		cmocka_unit_test(test_builtin_defaults),
		cmocka_unit_test(test_inheritance),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_document_shape),
		cmocka_unit_test(test_unknown_keys),
		cmocka_unit_test(test_wrong_types),
		cmocka_unit_test(test_metadata_name),
		cmocka_unit_test(test_release_kinds),
		cmocka_unit_test(test_unit_and_unmatched),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_empty_and_missing_waves),
		cmocka_unit_test(test_duplicate_wave_names),
		cmocka_unit_test(test_wave_names),
		cmocka_unit_test(test_break_glass),
		cmocka_unit_test(test_max_tenants),
		cmocka_unit_test(test_max_parallel_and_failure),
		cmocka_unit_test(test_health_ranges),
		cmocka_unit_test(test_health_timeout_inherited),
		cmocka_unit_test(test_backup_gate),
		cmocka_unit_test(test_backup_source),
		cmocka_unit_test(test_backup_url_rules),
		cmocka_unit_test(test_approval_gate),
		cmocka_unit_test(test_gate_lists),
		cmocka_unit_test(test_deferral),
		cmocka_unit_test(test_blackouts),
		cmocka_unit_test(test_long_lists),
		cmocka_unit_test(test_all_collected_sorted),
	};
	return cmocka_run_group_tests_name("policy/parse", tests, NULL, NULL);
}
