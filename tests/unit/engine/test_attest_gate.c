/*
 * test_attest_gate.c - the attestation gate of the engine's decisions
 * (engine_decide.c, issue 7): a wave whose settings name attestations
 * leaves `pending` only once the latest attestation of each name has
 * passed, and the gate row is written when the outcome changes, not at
 * every decision.  Rows in, ops out, as in test_decide.c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>
#include "../wstest.h"
#include "engine_internal.h"
#include "engine_model.h"
#include "wavesched/window.h"

#define US 1000000LL

static const char *FLEET =
	"apiVersion: wavesched/v1\n"
	"kind: Fleet\n"
	"clusters:\n"
	"  - {name: c1, hosting: shared, region: eu, max_parallel: 2}\n"
	"tenants:\n"
	"  - slug: a\n"
	"    cluster: c1\n"
	"    criticality: low\n"
	"    timezone: UTC\n"
	"    version: '1'\n"
	"    windows: [{rrule: 'FREQ=DAILY', start: '02:00', duration: 2h}]\n"
	"  - slug: b\n"
	"    cluster: c1\n"
	"    criticality: low\n"
	"    timezone: UTC\n"
	"    version: '1'\n"
	"    windows: [{rrule: 'FREQ=DAILY', start: '02:00', duration: 2h}]\n";

static const char *POLICY =
	"apiVersion: wavesched/v1\n"
	"kind: WavePolicy\n"
	"metadata: {name: p}\n"
	"spec:\n"
	"  release_kinds: [standard]\n"
	"  schedule: {deploy_estimate: 30m}\n"
	"  waves:\n"
	"    - {name: w1, select: {}}\n";

static const char *NOW = "2026-12-01T02:00:00Z";

typedef struct fixture {
	ws_fleet *fleet;
	ws_policy *policy;
	json_t *doc;
	em_decision d;
	em_rollout *r;
	char *ops;
} fixture;

static int64_t T(const char *s)
{
	int64_t t;
	assert_int_equal(ws_time_parse(s, &t), 0);
	return t * US;
}

static json_t *settings(void)
{
	return json_pack("{s:i, s:i, s:{s:b, s:i}, s:{s:b, s:i, s:i, s:i, s:i, s:i, s:f}, s:{s:i, s:[s]},"
			 " s:{s:i, s:s}}",
			 "soak_s", 3600, "max_parallel_per_cluster", 0,
			 "backup", "enabled", 0, "max_age_s", 86400,
			 "health", "enabled", 1, "interval_s", 30, "timeout_s", 5, "consecutive_successes", 3,
			 "max_consecutive_failures", 3, "max_latency_ms", 2000, "latency_regression", 1.5,
			 "approval", "min", 0, "roles", "approver",
			 "failure", "max_failed", 0, "action", "halt");
}

static json_t *dep(int id, const char *slug)
{
	return json_pack("{s:i, s:i, s:s, s:s, s:I, s:I, s:i, s:s, s:s, s:n, s:n, s:n, s:i, s:n}",
			 "id", id, "tenant_id", id, "slug", slug, "state", "scheduled",
			 "window_start", (json_int_t)T("2026-12-01T02:00:00Z"),
			 "window_end", (json_int_t)T("2026-12-01T04:00:00Z"), "attempt", 0,
			 "previous_version", "1", "target_version", "2", "started_at", "outbox",
			 "backup_at", "baseline_us", -1, "p90_s");
}

static json_t *wave(int id, int idx, const char *name, json_t *d)
{
	return json_pack("{s:i, s:i, s:s, s:s, s:n, s:n, s:n, s:n, s:o, s:i, s:n, s:[o]}",
			 "id", id, "idx", idx, "name", name, "state", "pending", "start_at", "end_at",
			 "started_at", "soak_until", "settings", settings(), "approvals", 0,
			 "rejected_by", "deployments", d);
}

/* Two waves (ids 10 and 20) of one tenant each; nothing required yet. */
static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	ws_diags d;
	ws_diags_init(&d);
	f->fleet = fleet_parse("fleet.yaml", FLEET, strlen(FLEET), &d);
	f->policy = policy_parse("policy.yaml", POLICY, strlen(POLICY), &d);
	assert_int_equal(d.len, 0);
	ws_diags_free(&d);
	f->doc = json_pack("{s:i, s:s, s:n, s:s, s:I, s:s, s:s, s:s, s:i, s:{s:{}, s:{}}, s:[o, o]}",
			   "id", 7, "state", "running", "state_reason", "created_by", "alice", "start_at",
			   (json_int_t)T("2026-12-01T00:00:00Z"), "release", "2", "digest", "sha256:00",
			   "kind", "standard", "policy_id", 1,
			   "release_gates", "attestations", "attestation_gates",
			   "waves", wave(10, 1, "w1", dep(1, "a")), wave(20, 2, "w2", dep(2, "b")));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	em_decision_free(&f->d);
	em_rollout_free(f->r);
	free(f->ops);
	json_decref(f->doc);
	fleet_free(f->fleet);
	policy_free(f->policy);
	free(f);
	return wt_teardown_ical(state);
}

static json_t *wave_at(fixture *f, size_t i)
{
	return json_array_get(json_object_get(f->doc, "waves"), i);
}

static void require(fixture *f, size_t wave_i, const char *a, const char *b)
{
	json_t *names = b ? json_pack("[s, s]", a, b) : json_pack("[s]", a);
	json_object_set_new(json_object_get(wave_at(f, wave_i), "settings"), "attestations", names);
}

/* The latest attestation of `name`, as 0021's ws__release_gate_doc gives it. */
static void attest(fixture *f, const char *name, const char *result, int id)
{
	json_t *latest = json_object_get(json_object_get(f->doc, "release_gates"), "attestations");
	json_object_set_new(latest, name, json_pack("{s:s, s:i, s:s, s:s, s:s, s:s}", "result", result,
						    "id", id, "sha256", "ab12", "produced_by", "ci: pipeline 4411",
						    "recorded_by", "token:ci", "at", "2026-11-30T10:00:00Z"));
}

/* What the load says was last recorded for wave `wave_id`: the gate op's
 * result and evidence, as if it had been committed and loaded again. */
static void record(fixture *f, int wave_id, const json_t *op)
{
	char key[16];
	snprintf(key, sizeof(key), "%d", wave_id);
	json_t *ag = json_object_get(json_object_get(f->doc, "release_gates"), "attestation_gates");
	json_object_set_new(ag, key, json_pack("{s:O, s:O}", "result", json_object_get(op, "result"),
					       "evidence", json_object_get(op, "evidence")));
}

static const char *decide(fixture *f, const char *now)
{
	free(f->ops);
	em_decision_free(&f->d);
	em_rollout_free(f->r);
	char *text = json_dumps(f->doc, JSON_COMPACT);
	char why[200] = "";
	f->r = em_rollout_parse(text, why, sizeof(why));
	free(text);
	assert_non_null(f->r);
	em_env env = { .now = T(now), .fleet = f->fleet, .policy = f->policy,
		       .deploy_estimate_s = f->policy->deploy_estimate_s, .backup_recheck_s = 300 };
	em_decide(f->r, &env, &f->d);
	f->ops = json_dumps(f->d.ops, JSON_COMPACT);
	return f->ops;
}

static bool has(const char *hay, const char *needle)
{
	if (!strstr(hay, needle)) {
		print_error("missing %s in %s\n", needle, hay);
		return false;
	}
	return true;
}

/* The one attestation gate op of the last decision, or NULL. */
static json_t *gate_of(fixture *f)
{
	size_t i;
	json_t *op, *found = NULL;
	json_array_foreach(f->d.ops, i, op) {
		const char *g = json_string_value(json_object_get(op, "gate"));
		if (g && !strcmp(g, "attestations")) {
			assert_null(found);
			found = op;
		}
	}
	return found;
}

static void test_missing_attestations_hold_the_wave_once_recorded(void **state)
{
	fixture *f = *state;
	require(f, 0, "tests", "image-scan");
	attest(f, "tests", "passed", 4);
	const char *ops = decide(f, NOW);
	assert_false(strstr(ops, "\"op\":\"wave\""));
	assert_true(has(f->d.note, "wave 1 waits for attestations: image-scan missing"));
	json_t *g = gate_of(f);
	assert_non_null(g);
	assert_string_equal(json_string_value(json_object_get(g, "result")), "wait");
	assert_int_equal(json_integer_value(json_object_get(g, "wave")), 10);
	assert_null(json_object_get(g, "deployment"));
	assert_true(has(ops, "{\"name\":\"image-scan\",\"result\":\"missing\"}"));
	assert_true(has(ops, "\"id\":4"));
	assert_true(has(ops, "\"produced_by\":\"ci: pipeline 4411\""));
	/* Once the load shows that row, deciding again writes nothing. */
	record(f, 10, g);
	assert_string_equal(decide(f, NOW), "[]");
	assert_true(has(f->d.note, "image-scan missing"));
	assert_string_equal(decide(f, "2026-12-01T02:30:00Z"), "[]");
	/* Nothing at all recorded: both named, in the policy's order. */
	json_object_clear(json_object_get(json_object_get(f->doc, "release_gates"), "attestations"));
	decide(f, NOW);
	assert_true(has(f->d.note, "attestations: tests missing, image-scan missing"));
	assert_non_null(gate_of(f));
}

static void test_failed_attestation_holds_the_wave(void **state)
{
	fixture *f = *state;
	require(f, 0, "tests", "image-scan");
	attest(f, "tests", "passed", 4);
	attest(f, "image-scan", "failed", 5);
	const char *ops = decide(f, NOW);
	assert_false(strstr(ops, "\"op\":\"wave\""));
	assert_true(has(f->d.note, "wave 1 waits for attestations: image-scan failed "
			"(recorded 2026-11-30T10:00:00Z by token:ci)"));
	json_t *g = gate_of(f);
	assert_string_equal(json_string_value(json_object_get(g, "result")), "fail");
	assert_true(has(ops, "\"reason\":\"wave 1 waits for attestations: image-scan failed"));
	record(f, 10, g);
	assert_string_equal(decide(f, NOW), "[]");
	/* Another failed run is another outcome: recorded once more. */
	attest(f, "image-scan", "failed", 6);
	decide(f, NOW);
	assert_non_null(gate_of(f));
	/* A result the gate cannot read holds the wave too. */
	attest(f, "image-scan", "maybe", 7);
	decide(f, NOW);
	assert_true(has(f->d.note, "image-scan unreadable"));
	assert_false(strstr(f->ops, "\"op\":\"wave\""));
}

static void test_passed_after_failed_starts_the_wave_with_a_pass_row(void **state)
{
	fixture *f = *state;
	require(f, 0, "tests", "image-scan");
	attest(f, "tests", "passed", 4);
	attest(f, "image-scan", "failed", 5);
	decide(f, NOW);
	record(f, 10, gate_of(f));
	attest(f, "image-scan", "passed", 8);
	const char *ops = decide(f, NOW);
	assert_true(has(ops, "\"from\":\"pending\",\"to\":\"backup_check\""));
	json_t *g = gate_of(f);
	assert_non_null(g);
	assert_string_equal(json_string_value(json_object_get(g, "result")), "pass");
	assert_true(has(ops, "\"id\":8"));
	assert_true(has(ops, "\"required\":[\"tests\",\"image-scan\"]"));
}

static void test_wave_two_only(void **state)
{
	fixture *f = *state;
	require(f, 1, "image-scan", NULL);
	/* Wave 1 needs nothing: it starts, without an attestation row. */
	const char *ops = decide(f, NOW);
	assert_true(has(ops, "\"from\":\"pending\",\"to\":\"backup_check\""));
	assert_null(gate_of(f));
	/* Wave 1 passed: wave 2 waits at its boundary. */
	json_object_set_new(wave_at(f, 0), "state", json_string("passed"));
	json_object_set_new(json_array_get(json_object_get(wave_at(f, 0), "deployments"), 0), "state",
			    json_string("healthy"));
	ops = decide(f, NOW);
	assert_true(has(f->d.note, "wave 2 waits for attestations: image-scan missing"));
	json_t *g = gate_of(f);
	assert_int_equal(json_integer_value(json_object_get(g, "wave")), 20);
	assert_false(strstr(ops, "\"op\":\"wave\""));
	attest(f, "image-scan", "passed", 9);
	ops = decide(f, NOW);
	assert_true(has(ops, "\"from\":\"pending\",\"to\":\"backup_check\""));
	assert_true(has(ops, "\"wave\":20"));
}

/* Within one chain of the driver (em_apply, then decide again) the wait
 * row is not written twice. */
static void test_chain_writes_the_row_once(void **state)
{
	fixture *f = *state;
	require(f, 0, "tests", NULL);
	decide(f, NOW);
	assert_non_null(gate_of(f));
	assert_true(em_apply(f->r, f->d.ops));
	em_env env = { .now = T(NOW), .fleet = f->fleet, .policy = f->policy,
		       .deploy_estimate_s = f->policy->deploy_estimate_s, .backup_recheck_s = 300 };
	em_decision d;
	em_decide(f->r, &env, &d);
	assert_int_equal(json_array_size(d.ops), 0);
	assert_true(has(d.note, "tests missing"));
	em_decision_free(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_missing_attestations_hold_the_wave_once_recorded, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_failed_attestation_holds_the_wave, setup, teardown),
		cmocka_unit_test_setup_teardown(test_passed_after_failed_starts_the_wave_with_a_pass_row, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_wave_two_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chain_writes_the_row_once, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
