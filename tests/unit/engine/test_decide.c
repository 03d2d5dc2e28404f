/*
 * test_decide.c - the engine's decisions (scheduler/engine_decide.c), rule by
 * rule of spec/engine.md, on hand-written rows: what is committed, what is
 * started, and when the engine looks again.
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
	"  - {name: c1, hosting: shared, region: eu, max_parallel: 1}\n"
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
	"    windows: [{rrule: 'FREQ=DAILY', start: '02:00', duration: 2h}]\n"
	"calendars:\n"
	"  - name: freeze\n"
	"    hard: true\n"
	"    occurrences: [{from: '2026-12-02T00:00:00Z', to: '2026-12-03T00:00:00Z'}]\n";

static const char *POLICY =
	"apiVersion: wavesched/v1\n"
	"kind: WavePolicy\n"
	"metadata: {name: p}\n"
	"spec:\n"
	"  release_kinds: [standard]\n"
	"  schedule: {blackouts: [freeze], deploy_estimate: 30m}\n"
	"  waves:\n"
	"    - {name: w1, select: {}}\n";

typedef struct fixture {
	ws_fleet *fleet;
	ws_policy *policy;
	json_t *doc;           /* the rollout rows being edited */
	em_fx fx[8];           /* by deployment id (1..7) */
	em_backup_status bs[8];   /* fetched backup statuses (source http), by deployment id */
	bool has_bs[8];
	metric_cache *mc;      /* metric gate results (engine_fx.c fills it in the service) */
	em_decision d;
	em_rollout *r;         /* the rows of the last decision (its actions point into them) */
} fixture;

static int64_t T(const char *s)
{
	int64_t t;
	assert_int_equal(ws_time_parse(s, &t), 0);
	return t * US;
}

static em_fx fx_of(void *arg, int64_t id)
{
	fixture *f = arg;
	return id > 0 && id < 8 ? f->fx[id] : EM_FX_NONE;
}

static const em_backup_status *backup_of(void *arg, int64_t id)
{
	fixture *f = arg;
	return id > 0 && id < 8 && f->has_bs[id] ? &f->bs[id] : NULL;
}

/* A status fetched at `checked` (schedule time) for deployment `id`. */
static void status(fixture *f, int id, const char *checked, long http, const char *last,
		   const char *error)
{
	static const char *const urls[] = { NULL, "http://b/a/status", "http://b/b/status" };
	f->has_bs[id] = true;
	f->bs[id] = (em_backup_status){ .checked_at = T(checked), .http_status = http,
					.last_success = last ? T(last) : EM_NONE,
					.url = urls[id], .error = error };
}

static const em_metric_status *metric_of(void *arg, int64_t id, const char *name)
{
	fixture *f = arg;
	return metric_cache_get(f->mc, id, name);
}

static json_t *settings(void)
{
	return json_pack("{s:i, s:i, s:{s:b, s:i}, s:{s:b, s:i, s:i, s:i, s:i, s:i, s:f}, s:{s:i, s:[s]},"
			 " s:{s:i, s:s}}",
			 "soak_s", 3600, "max_parallel_per_cluster", 0,
			 "backup", "enabled", 1, "max_age_s", 86400,
			 "health", "enabled", 1, "interval_s", 30, "timeout_s", 5, "consecutive_successes", 3,
			 "max_consecutive_failures", 3, "max_latency_ms", 2000, "latency_regression", 1.5,
			 "approval", "min", 0, "roles", "approver",
			 "failure", "max_failed", 0, "action", "halt");
}

static json_t *dep(int id, const char *slug, const char *state, const char *ws, const char *we)
{
	return json_pack("{s:i, s:i, s:s, s:s, s:I, s:I, s:i, s:s, s:s, s:n, s:n, s:n, s:i, s:n}",
			 "id", id, "tenant_id", id, "slug", slug, "state", state,
			 "window_start", (json_int_t)T(ws), "window_end", (json_int_t)T(we), "attempt", 0,
			 "previous_version", "1", "target_version", "2", "started_at", "outbox",
			 "backup_at", "baseline_us", -1, "p90_s");
}

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	ws_diags d;
	ws_diags_init(&d);
	f->fleet = fleet_parse("fleet.yaml", FLEET, strlen(FLEET), &d);
	f->policy = policy_parse("policy.yaml", POLICY, strlen(POLICY), &d);
	assert_int_equal(d.len, 0);
	ws_diags_free(&d);
	json_t *w = json_pack("{s:i, s:i, s:s, s:s, s:n, s:n, s:n, s:n, s:o, s:i, s:n, s:[o, o]}",
			      "id", 10, "idx", 1, "name", "w1", "state", "pending", "start_at", "end_at",
			      "started_at", "soak_until", "settings", settings(), "approvals", 0,
			      "rejected_by", "deployments",
			      dep(1, "a", "scheduled", "2026-12-01T02:00:00Z", "2026-12-01T04:00:00Z"),
			      dep(2, "b", "scheduled", "2026-12-01T02:00:00Z", "2026-12-01T04:00:00Z"));
	f->doc = json_pack("{s:i, s:s, s:n, s:s, s:I, s:s, s:s, s:s, s:i, s:[o]}", "id", 7, "state",
			   "running", "state_reason", "created_by", "alice", "start_at",
			   (json_int_t)T("2026-12-01T00:00:00Z"), "release", "2", "digest",
			   "sha256:00", "kind", "standard", "policy_id", 1, "waves", w);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	em_decision_free(&f->d);
	em_rollout_free(f->r);
	metric_cache_free(f->mc);
	json_decref(f->doc);
	fleet_free(f->fleet);
	policy_free(f->policy);
	free(f);
	return wt_teardown_ical(state);
}

static json_t *wave0(fixture *f)
{
	return json_array_get(json_object_get(f->doc, "waves"), 0);
}

/* The wave's backup gate reads `http://b/{slug}/status`. */
static void use_http(fixture *f)
{
	json_t *b = json_object_get(json_object_get(wave0(f), "settings"), "backup");
	json_object_set_new(b, "source", json_string("http"));
	json_object_set_new(b, "url", json_string("http://b/{slug}/status"));
}

static json_t *dep_of(fixture *f, int i)
{
	return json_array_get(json_object_get(wave0(f), "deployments"), (size_t)i);
}

static void set(json_t *o, const char *k, json_t *v)
{
	json_object_set_new(o, k, v);
}

/* Decides at `now`; the ops as compact JSON (owned by the fixture's
 * decision until the next call). */
static const char *decide(fixture *f, const char *now)
{
	static char *last;
	free(last);
	last = NULL;
	em_decision_free(&f->d);
	em_rollout_free(f->r);
	char *text = json_dumps(f->doc, JSON_COMPACT);
	char why[200] = "";
	em_rollout *r = em_rollout_parse(text, why, sizeof(why));
	free(text);
	assert_non_null(r);
	em_env env = { .now = T(now), .fleet = f->fleet, .policy = f->policy,
		       .deploy_estimate_s = f->policy->deploy_estimate_s, .backup_recheck_s = 300,
		       .fx = fx_of, .backup = backup_of, .metric = metric_of, .metric_interval_s = 30,
		       .fx_arg = f };
	em_decide(r, &env, &f->d);
	f->r = r;
	last = json_dumps(f->d.ops, JSON_COMPACT);
	return last;
}

static bool has(const char *hay, const char *needle)
{
	if (!strstr(hay, needle)) {
		print_error("missing %s in %s\n", needle, hay);
		return false;
	}
	return true;
}

static void test_approved_starts_at_its_start(void **state)
{
	fixture *f = *state;
	set(f->doc, "state", json_string("approved"));
	assert_string_equal(decide(f, "2026-11-30T23:00:00Z"), "[]");
	assert_int_equal(f->d.wake, T("2026-12-01T00:00:00Z"));
	const char *ops = decide(f, "2026-12-01T00:00:00Z");
	assert_true(has(ops, "\"op\":\"rollout\""));
	assert_true(has(ops, "\"from\":\"approved\",\"to\":\"running\",\"event\":\"start\""));
}

static void test_wave_waits_for_approvals_and_first_window(void **state)
{
	fixture *f = *state;
	json_object_set_new(json_object_get(wave0(f), "settings"), "approval",
			    json_pack("{s:i, s:[s]}", "min", 2, "roles", "approver"));
	set(wave0(f), "approvals", json_integer(1));
	assert_string_equal(decide(f, "2026-12-01T03:00:00Z"), "[]");
	assert_true(has(f->d.note, "waits for approvals: 1 of 2"));
	set(wave0(f), "approvals", json_integer(2));
	assert_string_equal(decide(f, "2026-12-01T01:00:00Z"), "[]");
	assert_int_equal(f->d.wake, T("2026-12-01T02:00:00Z"));
	const char *ops = decide(f, "2026-12-01T02:00:00Z");
	assert_true(has(ops, "\"from\":\"pending\",\"to\":\"backup_check\""));
	assert_true(has(ops, "\"started_at\":\"2026-12-01T02:00:00Z\""));
}

static void test_rejection_halts(void **state)
{
	fixture *f = *state;
	set(wave0(f), "rejected_by", json_string("bob"));
	const char *ops = decide(f, "2026-12-01T02:00:00Z");
	assert_true(has(ops, "\"reason\":\"wave 1 (w1) rejected by bob\""));
	assert_true(has(ops, "\"to\":\"halted\""));
	assert_true(has(ops, "\"to\":\"skipped\",\"event\":\"skip\""));
}

static void test_backup_gate(void **state)
{
	fixture *f = *state;
	set(wave0(f), "state", json_string("backup_check"));
	set(dep_of(f, 0), "backup_at", json_integer(T("2026-11-30T23:00:00Z")));   /* 3 h old */
	set(dep_of(f, 1), "backup_at", json_integer(T("2026-11-29T23:00:00Z")));   /* 27 h */
	const char *ops = decide(f, "2026-12-01T02:00:00Z");
	/* a: passes and waits for its window; b: waits; the wave deploys. */
	assert_true(has(ops, "\"gate\":\"backup\",\"result\":\"pass\""));
	assert_true(has(ops, "\"age_s\":10800"));
	assert_true(has(ops, "\"id\":1,\"from\":\"scheduled\",\"to\":\"waiting_window\""));
	assert_true(has(ops, "\"gate\":\"backup\",\"result\":\"wait\""));
	assert_null(strstr(ops, "\"id\":2,\"from\":\"scheduled\""));
	assert_true(has(ops, "\"from\":\"backup_check\",\"to\":\"deploying\""));
}

static void test_stale_backup_is_rechecked_then_skipped(void **state)
{
	fixture *f = *state;
	set(wave0(f), "state", json_string("deploying"));
	set(dep_of(f, 0), "state", json_string("skipped"));
	set(dep_of(f, 1), "backup_at", json_integer(T("2026-11-29T23:00:00Z")));
	assert_string_equal(decide(f, "2026-12-01T02:00:00Z"), "[]");
	assert_int_equal(f->d.wake, T("2026-12-01T02:05:00Z"));   /* the re-check */
	/* A fresh report arrives: through. */
	set(dep_of(f, 1), "backup_at", json_integer(T("2026-12-01T01:30:00Z")));
	assert_true(has(decide(f, "2026-12-01T02:05:00Z"), "\"to\":\"waiting_window\""));
	/* None did, and the window is over: never deployed. */
	set(dep_of(f, 1), "backup_at", json_integer(T("2026-11-29T23:00:00Z")));
	const char *ops = decide(f, "2026-12-01T04:00:00Z");
	assert_true(has(ops, "\"gate\":\"backup\",\"result\":\"fail\""));
	assert_true(has(ops, "\"to\":\"skipped\",\"event\":\"skip\",\"at\":\"2026-12-01T04:00:00Z\","
			     "\"reason\":\"backup stale\""));
}

static void test_window_opens_baseline_then_cap(void **state)
{
	fixture *f = *state;
	set(wave0(f), "state", json_string("deploying"));
	set(dep_of(f, 0), "state", json_string("waiting_window"));
	set(dep_of(f, 1), "state", json_string("waiting_window"));
	assert_string_equal(decide(f, "2026-12-01T01:00:00Z"), "[]");
	assert_int_equal(f->d.n_act, 0);
	assert_int_equal(f->d.wake, T("2026-12-01T02:00:00Z"));
	/* The window is open: a baseline for one tenant only (cluster cap 1). */
	assert_string_equal(decide(f, "2026-12-01T02:00:00Z"), "[]");
	assert_int_equal(f->d.n_act, 2);
	f->fx[1] = EM_FX_BASELINE;
	assert_string_equal(decide(f, "2026-12-01T02:00:00Z"), "[]");
	assert_int_equal(f->d.n_act, 0);
	assert_true(has(f->d.note, "b waits: cluster c1 at its cap of 1"));
	/* Latest start leaving the 30m estimate: 03:30. */
	assert_int_equal(f->d.wake, T("2026-12-01T03:30:00Z"));
}

static void test_short_window_moves_past_the_blackout(void **state)
{
	fixture *f = *state;
	set(wave0(f), "state", json_string("deploying"));
	set(dep_of(f, 0), "state", json_string("waiting_window"));
	set(dep_of(f, 1), "state", json_string("skipped"));
	/* 03:45: 15 minutes left, 30 needed.  Tomorrow (12-02) is frozen. */
	const char *ops = decide(f, "2026-12-01T03:45:00Z");
	assert_true(has(ops, "\"from\":\"waiting_window\",\"to\":\"waiting_window\",\"event\":\"move\""));
	assert_true(has(ops, "window too short: it ends 2026-12-01T04:00:00Z, the deployment needs 30m"));
	assert_true(has(ops, "\"window_start\":\"2026-12-03T02:00:00Z\""));
	assert_true(has(ops, "\"to_end\":\"2026-12-03T04:00:00Z\""));
	/* With history, the tenant's own p90 decides. */
	set(dep_of(f, 0), "p90_s", json_real(600));
	assert_string_equal(decide(f, "2026-12-01T03:45:00Z"), "[]");
	assert_int_equal(f->d.n_act, 1);
	assert_int_equal(f->d.act[0].kind, EM_START_BASELINE);
}

/* A deploy of this release measured in an earlier wave (staging) is
 * expected of every later tenant too, when it is longer than its own. */
static void test_release_timing_moves_a_short_window(void **state)
{
	fixture *f = *state;
	set(wave0(f), "state", json_string("deploying"));
	set(dep_of(f, 0), "state", json_string("waiting_window"));
	set(dep_of(f, 1), "state", json_string("skipped"));
	set(dep_of(f, 0), "p90_s", json_real(600));          /* its own: 10m */
	set(f->doc, "release_timing", json_pack("{s:f, s:i, s:[s]}", "p90_s", 5400.0, "count", 2,
						"waves", "staging"));   /* staging: 1h30m */
	const char *ops = decide(f, "2026-12-01T03:00:00Z");
	assert_true(has(ops, "\"event\":\"move\""));
	assert_true(has(ops, "window too short: it ends 2026-12-01T04:00:00Z, the deployment needs 90m "
			     "(this release's deployments so far)"));
	assert_true(has(ops, "\"window_start\":\"2026-12-03T02:00:00Z\""));
	/* Shorter than its own history: its own decides, and it starts. */
	set(f->doc, "release_timing", json_pack("{s:f, s:i}", "p90_s", 300.0, "count", 1));
	assert_string_equal(decide(f, "2026-12-01T03:00:00Z"), "[]");
	assert_int_equal(f->d.n_act, 1);
	assert_int_equal(f->d.act[0].kind, EM_START_BASELINE);
	assert_int_equal(em_expected_s(&f->r->w[0].d[0], &(em_env){ 0 }), 600);
	assert_string_equal(em_expected_source(&f->r->w[0].d[0]), "the tenant's past deployments");
}

/* require_restore_verified: a fresh backup is not enough without a
 * verified restore young enough; the reason says which is missing. */
static void test_restore_verification_required(void **state)
{
	fixture *f = *state;
	json_object_set_new(json_object_get(json_object_get(wave0(f), "settings"), "backup"),
			    "restore_max_age_s", json_integer(7 * 86400));
	set(wave0(f), "state", json_string("deploying"));
	set(dep_of(f, 1), "state", json_string("skipped"));
	set(dep_of(f, 0), "backup_at", json_integer(T("2026-12-01T01:00:00Z")));   /* fresh */
	assert_string_equal(decide(f, "2026-12-01T02:00:00Z"), "[]");   /* waits, re-checks */
	assert_int_equal(f->d.wake, T("2026-12-01T02:05:00Z"));
	const char *ops = decide(f, "2026-12-01T04:00:00Z");
	assert_true(has(ops, "\"gate\":\"backup\",\"result\":\"fail\""));
	assert_true(has(ops, "\"restore_verified_at\":null"));
	assert_true(has(ops, "\"reason\":\"restore not verified: the tenant's latest restore "
			     "verification is missing or failed (require_restore_verified 7d)\""));
	/* Verified nine days ago: too old. */
	set(dep_of(f, 0), "restore_at", json_integer(T("2026-11-22T02:00:00Z")));
	ops = decide(f, "2026-12-01T04:00:00Z");
	assert_true(has(ops, "restore not verified: the latest verified restore is from "
			     "2026-11-22T02:00:00Z (require_restore_verified 7d)"));
	/* Verified two days ago: through, with the restore in the evidence. */
	set(dep_of(f, 0), "restore_at", json_integer(T("2026-11-29T02:00:00Z")));
	ops = decide(f, "2026-12-01T02:00:00Z");
	assert_true(has(ops, "\"gate\":\"backup\",\"result\":\"pass\""));
	assert_true(has(ops, "\"restore_age_s\":172800"));
	assert_true(has(ops, "\"to\":\"waiting_window\""));
	/* Without the requirement a missing restore does not matter. */
	json_object_del(json_object_get(json_object_get(wave0(f), "settings"), "backup"),
			"restore_max_age_s");
	set(dep_of(f, 0), "restore_at", json_null());
	assert_true(has(decide(f, "2026-12-01T02:00:00Z"), "\"to\":\"waiting_window\""));
}

/* An http status may carry the restore time; without one the gate waits. */
static void test_restore_verification_from_http(void **state)
{
	fixture *f = *state;
	use_http(f);
	json_object_set_new(json_object_get(json_object_get(wave0(f), "settings"), "backup"),
			    "restore_max_age_s", json_integer(86400));
	set(wave0(f), "state", json_string("deploying"));
	set(dep_of(f, 1), "state", json_string("skipped"));
	status(f, 1, "2026-12-01T02:00:00Z", 200, "2026-12-01T01:00:00Z", NULL);
	assert_string_equal(decide(f, "2026-12-01T02:00:00Z"), "[]");
	f->bs[1].restore_verified_at = T("2026-11-30T12:00:00Z");
	assert_true(has(decide(f, "2026-12-01T02:00:00Z"), "\"to\":\"waiting_window\""));
}

static void test_pending_intent_is_reissued(void **state)
{
	fixture *f = *state;
	set(wave0(f), "state", json_string("deploying"));
	set(dep_of(f, 0), "state", json_string("deploying"));
	set(dep_of(f, 0), "outbox", json_pack("{s:i, s:s, s:s, s:s, s:i}", "id", 5, "key", "7/a/1",
					      "kind", "deploy", "state", "pending", "attempt", 1));
	set(dep_of(f, 1), "state", json_string("skipped"));
	assert_string_equal(decide(f, "2026-12-01T02:10:00Z"), "[]");
	assert_int_equal(f->d.n_act, 1);
	assert_int_equal(f->d.act[0].kind, EM_START_DEPLOY);
	f->fx[1] = EM_FX_DEPLOY;
	decide(f, "2026-12-01T02:10:00Z");
	assert_int_equal(f->d.n_act, 0);   /* already in flight: not twice */
}

static void test_failure_budget_halt(void **state)
{
	fixture *f = *state;
	set(wave0(f), "state", json_string("deploying"));
	set(dep_of(f, 0), "state", json_string("failed"));
	const char *ops = decide(f, "2026-12-01T02:30:00Z");
	assert_true(has(ops, "\"id\":2,\"from\":\"scheduled\",\"to\":\"skipped\""));
	assert_true(has(ops, "\"from\":\"deploying\",\"to\":\"failed\""));
	assert_true(has(ops, "\"to\":\"halted\",\"event\":\"halt\""));
	assert_true(has(ops, "wave 1 (w1): 1 tenant failed, the budget allows 0"));
	/* Within the budget: no halt. */
	json_object_set_new(json_object_get(wave0(f), "settings"), "failure",
			    json_pack("{s:i, s:s}", "max_failed", 1, "action", "halt"));
	assert_null(strstr(decide(f, "2026-12-01T02:30:00Z"), "halted"));
}

static void test_failure_budget_rollback(void **state)
{
	fixture *f = *state;
	json_object_set_new(json_object_get(wave0(f), "settings"), "failure",
			    json_pack("{s:i, s:s}", "max_failed", 0, "action", "rollback_wave"));
	set(wave0(f), "state", json_string("verifying"));
	set(dep_of(f, 0), "state", json_string("failed"));
	set(dep_of(f, 0), "attempt", json_integer(1));
	set(dep_of(f, 1), "state", json_string("healthy"));
	set(dep_of(f, 1), "attempt", json_integer(1));
	const char *ops = decide(f, "2026-12-01T03:00:00Z");
	assert_true(has(ops, "\"id\":1,\"from\":\"failed\",\"to\":\"rolling_back\""));
	assert_true(has(ops, "\"id\":2,\"from\":\"healthy\",\"to\":\"rolling_back\""));
	assert_true(has(ops, "{\"op\":\"outbox\",\"deployment\":1,\"kind\":\"rollback\",\"attempt\":2,"
			     "\"request\":{\"version\":\"1\"}}"));
	assert_true(has(ops, "rolling back the wave"));
	/* Halted, both rolled back: the rollout ends rolled_back. */
	set(f->doc, "state", json_string("halted"));
	set(dep_of(f, 0), "state", json_string("rolled_back"));
	set(dep_of(f, 1), "state", json_string("rolled_back"));
	assert_true(has(decide(f, "2026-12-01T03:10:00Z"),
			"\"from\":\"halted\",\"to\":\"rolled_back\",\"event\":\"rollback_done\""));
}

/* A tenant still verifying when its wave was rolled back: once it ends it
 * is rolled back too, and the rollout is not rolled_back before that. */
static void test_rollback_reaches_tenants_that_were_still_verifying(void **state)
{
	fixture *f = *state;
	json_object_set_new(json_object_get(wave0(f), "settings"), "failure",
			    json_pack("{s:i, s:s}", "max_failed", 0, "action", "rollback_wave"));
	set(f->doc, "state", json_string("halted"));
	set(wave0(f), "state", json_string("failed"));
	/* a: its rollback failed (latest intent: the rollback); b: was
	 * verifying at the halt, healthy now on the new version. */
	set(dep_of(f, 0), "state", json_string("failed"));
	set(dep_of(f, 0), "attempt", json_integer(2));
	set(dep_of(f, 0), "outbox", json_pack("{s:i, s:s, s:s, s:s, s:i}", "id", 5, "key", "7/a/2", "kind",
					      "rollback", "state", "failed", "attempt", 2));
	set(dep_of(f, 1), "state", json_string("healthy"));
	set(dep_of(f, 1), "attempt", json_integer(1));
	set(dep_of(f, 1), "outbox", json_pack("{s:i, s:s, s:s, s:s, s:i}", "id", 6, "key", "7/b/1", "kind",
					      "deploy", "state", "done", "attempt", 1));
	const char *ops = decide(f, "2026-12-01T03:20:00Z");
	assert_true(has(ops, "\"id\":2,\"from\":\"healthy\",\"to\":\"rolling_back\""));
	assert_true(has(ops, "{\"op\":\"outbox\",\"deployment\":2,\"kind\":\"rollback\",\"attempt\":2,"
			     "\"request\":{\"version\":\"1\"}}"));
	assert_null(strstr(ops, "\"deployment\":1,"));          /* a failed rollback is not retried */
	assert_null(strstr(ops, "rollback_done"));
	/* Under the plain halt action, nothing is rolled back. */
	json_object_set_new(json_object_get(wave0(f), "settings"), "failure",
			    json_pack("{s:i, s:s}", "max_failed", 0, "action", "halt"));
	assert_null(strstr(decide(f, "2026-12-01T03:20:00Z"), "rolling_back"));
}

static void test_verify_soak_pass_complete(void **state)
{
	fixture *f = *state;
	set(wave0(f), "state", json_string("deploying"));
	set(dep_of(f, 0), "state", json_string("verifying"));
	set(dep_of(f, 1), "state", json_string("healthy"));
	assert_true(has(decide(f, "2026-12-01T02:30:00Z"), "\"from\":\"deploying\",\"to\":\"verifying\""));
	set(wave0(f), "state", json_string("verifying"));
	assert_string_equal(decide(f, "2026-12-01T02:30:00Z"), "[]");
	assert_int_equal(f->d.n_act, 1);
	assert_int_equal(f->d.act[0].kind, EM_START_PROBE);
	set(dep_of(f, 0), "state", json_string("healthy"));
	assert_true(has(decide(f, "2026-12-01T02:40:00Z"), "\"soak_until\":\"2026-12-01T03:40:00Z\""));
	set(wave0(f), "state", json_string("soaking"));
	set(wave0(f), "soak_until", json_integer(T("2026-12-01T03:40:00Z")));
	assert_string_equal(decide(f, "2026-12-01T03:00:00Z"), "[]");
	assert_int_equal(f->d.n_act, 2);   /* probes go on during the soak */
	assert_int_equal(f->d.wake, T("2026-12-01T03:40:00Z"));
	assert_true(has(decide(f, "2026-12-01T03:40:00Z"), "\"from\":\"soaking\",\"to\":\"passed\""));
	set(wave0(f), "state", json_string("passed"));
	assert_true(has(decide(f, "2026-12-01T03:40:00Z"), "\"from\":\"running\",\"to\":\"completed\""));
}

static void test_probes_stop_when_their_purpose_ends(void **state)
{
	fixture *f = *state;
	set(wave0(f), "state", json_string("passed"));
	set(dep_of(f, 0), "state", json_string("healthy"));
	set(dep_of(f, 1), "state", json_string("healthy"));
	f->fx[1] = EM_FX_PROBE;   /* a soak probe left over */
	const char *ops = decide(f, "2026-12-01T05:00:00Z");
	assert_true(has(ops, "\"to\":\"completed\""));
	/* The stop comes with the commit, not after it. */
	assert_int_equal(f->d.n_act, 1);
	assert_int_equal(f->d.act[0].kind, EM_STOP_FX);
	assert_int_equal(f->d.act[0].dep->id, 1);
	/* A verifying tenant keeps its probes. */
	set(wave0(f), "state", json_string("verifying"));
	set(dep_of(f, 0), "state", json_string("verifying"));
	decide(f, "2026-12-01T05:00:00Z");
	for (size_t i = 0; i < f->d.n_act; i++)
		assert_int_not_equal(f->d.act[i].kind, EM_STOP_FX);
}

/* A wave passing and the next steps that need nothing from outside are
 * decided at once: applying each step's ops to the model and deciding again
 * gives the chain the driver commits in one transaction. */
static void test_apply_then_decide_chains_steps(void **state)
{
	fixture *f = *state;
	set(f->doc, "state", json_string("approved"));
	set(dep_of(f, 0), "backup_at", json_integer(T("2026-12-01T01:00:00Z")));
	set(dep_of(f, 1), "backup_at", json_integer(T("2026-12-01T01:00:00Z")));
	char *text = json_dumps(f->doc, JSON_COMPACT);
	char why[200];
	em_rollout *r = em_rollout_parse(text, why, sizeof(why));
	free(text);
	assert_non_null(r);
	em_env env = { .now = T("2026-12-01T02:00:00Z"), .fleet = f->fleet, .policy = f->policy,
		       .deploy_estimate_s = 1800, .backup_recheck_s = 300, .fx = fx_of, .fx_arg = f };
	const char *expect[] = {
		"\"from\":\"approved\",\"to\":\"running\"",
		"\"from\":\"pending\",\"to\":\"backup_check\"",
		"\"from\":\"backup_check\",\"to\":\"deploying\"",
	};
	for (int step = 0; step < 3; step++) {
		em_decision d;
		em_decide(r, &env, &d);
		char *ops = json_dumps(d.ops, JSON_COMPACT);
		assert_true(has(ops, expect[step]));
		assert_true(em_apply(r, d.ops));
		free(ops);
		em_decision_free(&d);
	}
	assert_int_equal(r->state, WS_RO_RUNNING);
	assert_int_equal(r->w[0].state, WS_WAVE_DEPLOYING);
	assert_int_equal(r->w[0].d[0].state, WS_DEP_WAITING_WINDOW);
	assert_int_equal(r->w[0].started_at, T("2026-12-01T02:00:00Z"));
	/* Now the window is open: effects, which wait for the rows. */
	em_decision d;
	em_decide(r, &env, &d);
	assert_int_equal(json_array_size(d.ops), 0);
	assert_true(d.n_act >= 1);
	assert_int_equal(d.act[0].kind, EM_START_BASELINE);
	em_decision_free(&d);
	/* An outbox intent cannot be applied: its id comes from the rows. */
	json_t *ops = json_pack("[{s:s, s:i, s:s, s:i}]", "op", "outbox", "deployment", 1, "kind",
				"deploy", "attempt", 1);
	assert_false(em_apply(r, ops));
	json_decref(ops);
	em_rollout_free(r);
}

static void test_abort_skips_what_has_not_started(void **state)
{
	fixture *f = *state;
	set(f->doc, "state", json_string("aborted"));
	set(wave0(f), "state", json_string("deploying"));
	set(dep_of(f, 0), "state", json_string("verifying"));
	set(dep_of(f, 1), "state", json_string("waiting_window"));
	const char *ops = decide(f, "2026-12-01T02:30:00Z");
	assert_true(has(ops, "\"id\":2,\"from\":\"waiting_window\",\"to\":\"skipped\""));
	assert_true(has(ops, "rollout aborted"));
	assert_null(strstr(ops, "\"id\":1,"));
}

/* Source http: the wave's check waits until every undecided tenant's status
 * has been fetched, then judges them all in one step. */
static void test_http_backup_check_fetches_then_judges(void **state)
{
	fixture *f = *state;
	use_http(f);
	set(wave0(f), "state", json_string("backup_check"));
	/* a catalog row is not what an http gate reads */
	set(dep_of(f, 0), "backup_at", json_integer(T("2026-12-01T01:00:00Z")));
	assert_string_equal(decide(f, "2026-12-01T02:00:00Z"), "[]");
	assert_int_equal(f->d.n_act, 2);
	assert_int_equal(f->d.act[0].kind, EM_START_BACKUP);
	assert_int_equal(f->d.act[1].kind, EM_START_BACKUP);
	assert_true(has(f->d.note, "wave 1 waits for 2 backup statuses"));
	/* one GET in flight, the other answered: still nothing judged */
	f->fx[1] = EM_FX_BACKUP;
	status(f, 2, "2026-12-01T02:00:00Z", 500, NULL, "HTTP 500");
	assert_string_equal(decide(f, "2026-12-01T02:00:00Z"), "[]");
	assert_int_equal(f->d.n_act, 0);
	assert_true(has(f->d.note, "waits for 1 backup status"));
	/* both in: a passes, b waits with the problem in its evidence */
	f->fx[1] = EM_FX_NONE;
	status(f, 1, "2026-12-01T02:00:01Z", 200, "2026-11-30T23:00:00Z", NULL);
	const char *ops = decide(f, "2026-12-01T02:00:01Z");
	assert_true(has(ops, "\"deployment\":1,\"evidence\":{\"max_age_s\":86400,"
			     "\"completed_at\":\"2026-11-30T23:00:00Z\",\"age_s\":10801,\"source\":\"http\","
			     "\"url\":\"http://b/a/status\",\"http_status\":200,"
			     "\"last_success\":\"2026-11-30T23:00:00Z\",\"checked_at\":\"2026-12-01T02:00:01Z\"}"));
	assert_true(has(ops, "\"gate\":\"backup\",\"result\":\"pass\""));
	assert_true(has(ops, "\"id\":1,\"from\":\"scheduled\",\"to\":\"waiting_window\""));
	assert_true(has(ops, "\"gate\":\"backup\",\"result\":\"wait\""));
	assert_true(has(ops, "\"http_status\":500,\"last_success\":null"));
	assert_true(has(ops, "\"error\":\"backup status http://b/b/status: HTTP 500\""));
	assert_null(strstr(ops, "\"id\":2,\"from\":\"scheduled\""));
	assert_true(has(ops, "\"from\":\"backup_check\",\"to\":\"deploying\""));
	assert_int_equal(f->d.n_act, 0);
}

/* A fetched status answers until its time-to-live is over; then a new GET
 * is the re-check.  An unusable answer at the end of the window skips the
 * tenant with the problem as its reason. */
static void test_http_backup_rechecked_then_skipped(void **state)
{
	fixture *f = *state;
	use_http(f);
	set(wave0(f), "state", json_string("deploying"));
	set(dep_of(f, 0), "state", json_string("skipped"));
	status(f, 2, "2026-12-01T02:00:00Z", 200, "2026-11-29T23:00:00Z", NULL);   /* 27 h: stale */
	assert_string_equal(decide(f, "2026-12-01T02:01:00Z"), "[]");
	assert_int_equal(f->d.n_act, 0);
	assert_int_equal(f->d.wake, T("2026-12-01T02:05:00Z"));
	/* the status has expired: fetched again (not while a GET is in flight) */
	assert_string_equal(decide(f, "2026-12-01T02:05:00Z"), "[]");
	assert_int_equal(f->d.n_act, 1);
	assert_int_equal(f->d.act[0].kind, EM_START_BACKUP);
	assert_int_equal(f->d.act[0].dep->id, 2);
	f->fx[2] = EM_FX_BACKUP;
	assert_string_equal(decide(f, "2026-12-01T02:05:00Z"), "[]");
	assert_int_equal(f->d.n_act, 0);
	f->fx[2] = EM_FX_NONE;
	/* the window is over with a stale answer: skipped, saying so */
	status(f, 2, "2026-12-01T03:59:00Z", 200, "2026-11-29T23:00:00Z", NULL);
	const char *ops = decide(f, "2026-12-01T04:00:00Z");
	assert_true(has(ops, "\"gate\":\"backup\",\"result\":\"fail\""));
	assert_true(has(ops, "\"reason\":\"backup stale: http://b/b/status reports last_success "
			     "2026-11-29T23:00:00Z (max_age 1d)\""));
	/* a time in the future is not trusted */
	status(f, 2, "2026-12-01T03:59:00Z", 200, "2026-12-01T05:00:00Z", NULL);
	ops = decide(f, "2026-12-01T04:00:00Z");
	assert_true(has(ops, "\"reason\":\"backup status http://b/b/status: last_success "
			     "2026-12-01T05:00:00Z is in the future\""));
	assert_true(has(ops, "\"error\":\"backup status http://b/b/status: last_success "
			     "2026-12-01T05:00:00Z is in the future\""));
	/* an error is the reason as it came */
	status(f, 2, "2026-12-01T03:59:00Z", 200, NULL, "invalid last_success \"yesterday\" "
	       "(expected RFC 3339)");
	ops = decide(f, "2026-12-01T04:00:00Z");
	assert_true(has(ops, "\"reason\":\"backup status http://b/b/status: invalid last_success "
			     "\\\"yesterday\\\" (expected RFC 3339)\""));
	/* a fresh answer before the end lets it through */
	status(f, 2, "2026-12-01T03:00:00Z", 200, "2026-12-01T01:00:00Z", NULL);
	ops = decide(f, "2026-12-01T03:00:00Z");
	assert_true(has(ops, "\"id\":2,\"from\":\"scheduled\",\"to\":\"waiting_window\""));
	/* a status that expired at the end of the window is fetched first */
	status(f, 2, "2026-12-01T03:00:00Z", 500, NULL, "HTTP 500");
	assert_string_equal(decide(f, "2026-12-01T04:00:00Z"), "[]");
	assert_int_equal(f->d.n_act, 1);
	assert_int_equal(f->d.act[0].kind, EM_START_BACKUP);
}

/* A GET whose answer nobody will judge is stopped; an abort does not wait
 * for it. */
static void test_http_backup_fetch_stops_when_unneeded(void **state)
{
	fixture *f = *state;
	use_http(f);
	set(wave0(f), "state", json_string("deploying"));
	set(dep_of(f, 0), "state", json_string("waiting_window"));
	f->fx[1] = EM_FX_BACKUP;      /* left over: the tenant has passed */
	f->fx[2] = EM_FX_BACKUP;      /* wanted: b is still scheduled */
	decide(f, "2026-12-01T01:00:00Z");
	assert_int_equal(f->d.n_act, 1);
	assert_int_equal(f->d.act[0].kind, EM_STOP_FX);
	assert_int_equal(f->d.act[0].dep->id, 1);
	f->fx[1] = EM_FX_NONE;
	set(f->doc, "state", json_string("aborted"));
	const char *ops = decide(f, "2026-12-01T01:00:00Z");
	assert_true(has(ops, "\"id\":2,\"from\":\"scheduled\",\"to\":\"skipped\""));
	assert_int_equal(f->d.n_act, 1);
	assert_int_equal(f->d.act[0].kind, EM_STOP_FX);
	assert_int_equal(f->d.act[0].dep->id, 2);
}

static void test_rows_of_the_wrong_shape_are_refused(void **state)
{
	(void)state;
	char why[200];
	assert_null(em_rollout_parse("[]", why, sizeof(why)));
	assert_null(em_rollout_parse("{\"id\": 1, \"state\": \"flying\"}", why, sizeof(why)));
	assert_string_equal(why, "the rollout lacks its id or state");
	assert_null(em_rollout_parse("{\"id\": 1, \"state\": \"running\", \"release\": \"2\", \"waves\": "
				     "[{\"id\": 1, \"idx\": 1, \"state\": \"pending\", \"settings\": "
				     "{\"failure\": {\"action\": \"explode\"}}}]}", why, sizeof(why)));
	assert_string_equal(why, "wave 1: unknown failure action \"explode\"");
	assert_null(em_rollout_parse("{\"id\": 1, \"state\": \"running\", \"release\": \"2\", \"waves\": "
				     "[{\"id\": 1, \"idx\": 1, \"state\": \"pending\", \"settings\": "
				     "{\"backup\": {\"enabled\": true, \"max_age_s\": 60, \"source\": \"s3\"}}}]}",
				     why, sizeof(why)));
	assert_string_equal(why, "wave 1: unknown backup source \"s3\"");
	assert_null(em_rollout_parse("{\"id\": 1, \"state\": \"running\", \"release\": \"2\", \"waves\": "
				     "[{\"id\": 1, \"idx\": 1, \"state\": \"pending\", \"settings\": "
				     "{\"backup\": {\"enabled\": true, \"max_age_s\": 60, \"source\": \"http\"}}}]}",
				     why, sizeof(why)));
	assert_string_equal(why, "wave 1: backup gate with source http without url");
}

/* Preemption (migration 0016) ------------------------------------------------- */

static void preempt(fixture *f, json_t *p)
{
	set(f->doc, "preempt", p);
}

/* A standard rollout over which an urgent one came: the wave under way goes
 * on; at the boundary (the next wave not started) it goes preempted. */
static void test_standard_preempted_at_the_wave_boundary(void **state)
{
	fixture *f = *state;
	preempt(f, json_pack("{s:i, s:s}", "by", 9, "by_release", "3-sec"));
	set(wave0(f), "state", json_string("soaking"));
	set(wave0(f), "soak_until", json_integer(T("2026-12-01T03:40:00Z")));
	set(dep_of(f, 0), "state", json_string("healthy"));
	set(dep_of(f, 1), "state", json_string("healthy"));
	assert_string_equal(decide(f, "2026-12-01T03:00:00Z"), "[]");
	assert_int_equal(f->d.wake, T("2026-12-01T03:40:00Z"));   /* the soak goes on */
	const char *ops = decide(f, "2026-12-01T03:40:00Z");
	assert_true(has(ops, "\"from\":\"soaking\",\"to\":\"passed\""));
	assert_null(strstr(ops, "preempted"));
	/* Decided ahead on the model, as the driver does: the rollout stops
	 * before the next wave ... */
	json_t *w2 = json_deep_copy(wave0(f));
	set(w2, "id", json_integer(11));
	set(w2, "idx", json_integer(2));
	set(w2, "name", json_string("w2"));
	set(w2, "state", json_string("pending"));
	set(w2, "deployments", json_array());
	json_array_append_new(json_object_get(f->doc, "waves"), w2);
	set(wave0(f), "state", json_string("passed"));
	ops = decide(f, "2026-12-01T03:40:00Z");
	assert_true(has(ops, "\"from\":\"running\",\"to\":\"preempted\",\"event\":\"preempt\""));
	assert_true(has(ops, "\"reason\":\"preempted by urgent rollout 9 (release 3-sec) before wave 2 (w2)\""));
	assert_true(em_apply(f->r, f->d.ops));
	assert_int_equal(f->r->state, WS_RO_PREEMPTED);
	/* ... and then nothing moves. */
	em_decision d;
	em_env env = { .now = T("2026-12-01T05:00:00Z"), .fleet = f->fleet, .policy = f->policy,
		       .fx = fx_of, .fx_arg = f };
	em_decide(f->r, &env, &d);
	assert_int_equal(json_array_size(d.ops), 0);
	em_decision_free(&d);
}

/* Mid-wave, a tenant deploying or verifying is not interrupted. */
static void test_preemption_interrupts_nothing_deploying(void **state)
{
	fixture *f = *state;
	preempt(f, json_pack("{s:i, s:s}", "by", 9, "by_release", "3-sec"));
	set(wave0(f), "state", json_string("deploying"));
	set(dep_of(f, 0), "state", json_string("verifying"));
	set(dep_of(f, 1), "state", json_string("healthy"));
	const char *ops = decide(f, "2026-12-01T02:30:00Z");
	assert_true(has(ops, "\"from\":\"deploying\",\"to\":\"verifying\""));
	assert_null(strstr(ops, "preempted"));
}

static void test_approved_standard_holds_while_urgent_moves(void **state)
{
	fixture *f = *state;
	set(f->doc, "state", json_string("approved"));
	preempt(f, json_pack("{s:i, s:s}", "by", 9, "by_release", "3-sec"));
	assert_string_equal(decide(f, "2026-12-02T00:00:00Z"), "[]");
	assert_true(has(f->d.note, "held by urgent rollout 9 (release 3-sec)"));
	/* The urgent rollout ended: the re-plan comes before the start. */
	preempt(f, json_pack("{s:b, s:i, s:i, s:[]}", "resume", 1, "plan_version", 1, "base", 0, "remaining"));
	assert_string_equal(decide(f, "2026-12-02T00:00:00Z"), "[]");
	assert_true(has(f->d.note, "waits for its re-plan after the urgent rollout"));
	preempt(f, json_object());
	assert_true(has(decide(f, "2026-12-02T00:00:00Z"), "\"to\":\"running\""));
}

/* An urgent rollout starts no wave while a standard one over its tenants
 * has not reached its boundary; a wave already started goes on. */
static void test_urgent_waits_for_the_standard_boundary(void **state)
{
	fixture *f = *state;
	set(f->doc, "kind", json_string("urgent"));
	preempt(f, json_pack("{s:i, s:s}", "wait_for", 5, "wait_state", "running"));
	assert_string_equal(decide(f, "2026-12-01T02:00:00Z"), "[]");
	assert_true(has(f->d.note, "wave 1 waits for rollout 5 (running) to reach its wave boundary"));
	preempt(f, json_object());
	assert_true(has(decide(f, "2026-12-01T02:00:00Z"), "\"from\":\"pending\",\"to\":\"backup_check\""));
	preempt(f, json_pack("{s:i, s:s}", "wait_for", 5, "wait_state", "paused"));
	set(wave0(f), "state", json_string("deploying"));
	set(dep_of(f, 0), "state", json_string("verifying"));
	set(dep_of(f, 1), "state", json_string("healthy"));
	assert_true(has(decide(f, "2026-12-01T02:30:00Z"), "\"from\":\"deploying\",\"to\":\"verifying\""));
}

static void test_preempt_rows_of_the_wrong_shape_are_refused(void **state)
{
	fixture *f = *state;
	char why[200];
	preempt(f, json_integer(3));
	char *text = json_dumps(f->doc, JSON_COMPACT);
	assert_null(em_rollout_parse(text, why, sizeof(why)));
	free(text);
	assert_string_equal(why, "\"preempt\" is not an object");
	preempt(f, json_pack("{s:b, s:i}", "resume", 1, "plan_version", 1));
	text = json_dumps(f->doc, JSON_COMPACT);
	assert_null(em_rollout_parse(text, why, sizeof(why)));
	free(text);
	assert_string_equal(why, "\"preempt\" lacks the remaining tenants, the base wave or the plan version");
	preempt(f, json_pack("{s:b, s:i, s:i, s:[s]}", "resume", 1, "plan_version", 2, "base", 1, "remaining", "b"));
	text = json_dumps(f->doc, JSON_COMPACT);
	em_rollout *r = em_rollout_parse(text, why, sizeof(why));
	free(text);
	assert_non_null(r);
	assert_true(r->resume);
	assert_int_equal(r->resume_base, 1);
	assert_int_equal(r->plan_version, 2);
	assert_int_equal(json_array_size(r->remaining), 1);
	em_rollout_free(r);
}

/* The re-plan on resume: only the remaining tenants, a dependency on a
 * tenant outside them counted as met, wave indexes after the base. */
static void test_resume_plan_of_the_remaining_tenants(void **state)
{
	fixture *f = *state;
	static const char *DEPS =
		"apiVersion: wavesched/v1\n"
		"kind: Fleet\n"
		"clusters:\n"
		"  - {name: c1, hosting: shared, region: eu}\n"
		"tenants:\n"
		"  - {slug: a, cluster: c1, timezone: UTC}\n"
		"  - {slug: b, cluster: c1, timezone: UTC, depends_on: [a]}\n"
		"  - {slug: c, cluster: c1, timezone: UTC, depends_on: [b]}\n"
		"calendars:\n"
		"  - name: freeze\n"
		"    hard: true\n"
		"    occurrences: [{from: '2026-12-02T00:00:00Z', to: '2026-12-03T00:00:00Z'}]\n";
	ws_diags d;
	ws_diags_init(&d);
	ws_fleet *fl = fleet_parse("deps.yaml", DEPS, strlen(DEPS), &d);
	assert_non_null(fl);
	ws_diags_free(&d);
	char err[200] = "";
	json_t *settings = NULL;
	json_t *remaining = json_pack("[s, s]", "b", "c");
	char *text = engine_resume_plan(fl, f->policy, "2", WS_RELEASE_STANDARD, T("2026-12-01T00:00:00Z") / US,
					remaining, 3, &settings, err, sizeof(err));
	assert_non_null(text);
	json_t *plan = json_loads(text, 0, NULL);
	json_t *waves = json_object_get(plan, "waves");
	assert_true(json_array_size(waves) >= 1);
	assert_int_equal(json_array_size(settings), json_array_size(waves));
	size_t i, k;
	json_t *w, *t;
	int placed = 0;
	json_array_foreach(waves, i, w) {
		assert_true(json_integer_value(json_object_get(w, "index")) > 3);
		json_array_foreach(json_object_get(w, "tenants"), k, t) {
			assert_string_not_equal(json_string_value(json_object_get(t, "slug")), "a");
			placed++;
		}
	}
	assert_int_equal(placed, 2);
	json_decref(plan);
	json_decref(settings);
	free(text);
	json_decref(remaining);
	/* Nobody left (all on the urgent release): a plan of no wave. */
	remaining = json_array();
	text = engine_resume_plan(fl, f->policy, "2", WS_RELEASE_STANDARD, T("2026-12-01T00:00:00Z") / US,
				  remaining, 3, &settings, err, sizeof(err));
	if (!text)
		print_error("%s\n", err);
	assert_non_null(text);
	plan = json_loads(text, 0, NULL);
	assert_int_equal(json_array_size(json_object_get(plan, "waves")), 0);
	assert_int_equal(json_array_size(settings), 0);
	json_decref(plan);
	json_decref(settings);
	free(text);
	json_decref(remaining);
	/* A remaining tenant the fleet no longer has: no plan, and why. */
	remaining = json_pack("[s, s]", "b", "gone");
	text = engine_resume_plan(fl, f->policy, "2", WS_RELEASE_STANDARD, T("2026-12-01T00:00:00Z") / US,
				  remaining, 3, &settings, err, sizeof(err));
	assert_null(text);
	assert_null(settings);
	assert_string_equal(err, "1 of the remaining tenants are no longer in the fleet");
	json_decref(remaining);
	/* A release kind the policy refuses: the planner's reason. */
	remaining = json_pack("[s]", "b");
	text = engine_resume_plan(fl, f->policy, "2", WS_RELEASE_URGENT, T("2026-12-01T00:00:00Z") / US,
				  remaining, 0, &settings, err, sizeof(err));
	assert_null(text);
	assert_true(strlen(err) > 0);
	json_decref(remaining);
	fleet_free(fl);
}

/* Metric gate ------------------------------------------------------------------ */

/* Wave 1 checks `backlog` (max 500, for 60 s); tenant a's window is open,
 * b is out of the way. */
static void use_metrics(fixture *f)
{
	set(json_object_get(wave0(f), "settings"), "metrics",
	    json_pack("[{s:s, s:s, s:i, s:i}]", "name", "backlog", "query",
		      "odoo_queue_backlog{tenant=\"{slug}\"}", "for_s", 60, "max", 500));
	set(wave0(f), "state", json_string("deploying"));
	set(dep_of(f, 0), "state", json_string("waiting_window"));
	set(dep_of(f, 1), "state", json_string("skipped"));
}

static void result(fixture *f, const char *at, bool ok, const char *reason)
{
	assert_true(metric_cache_put(&f->mc, 1, "backlog", T(at), ok, reason, NULL, 0));
}

static void test_metric_gate_holds_then_releases(void **state)
{
	fixture *f = *state;
	use_metrics(f);
	/* The window has come: the checks are asked first, nothing deploys. */
	assert_string_equal(decide(f, "2026-12-01T02:00:00Z"), "[]");
	assert_int_equal(f->d.n_act, 1);
	assert_int_equal(f->d.act[0].kind, EM_START_METRICS);
	assert_int_equal(f->d.act[0].dep->id, 1);
	assert_true(has(f->d.note, "a waits for its metric checks"));
	/* While they are asked, nothing else starts for the tenant. */
	f->fx[1] = EM_FX_METRICS;
	assert_string_equal(decide(f, "2026-12-01T02:00:00Z"), "[]");
	assert_int_equal(f->d.n_act, 0);
	f->fx[1] = EM_FX_NONE;
	/* Out of bounds: held, asked again after the interval. */
	result(f, "2026-12-01T02:00:01Z", false, "metric backlog (query q): sample = 700 is above max 500");
	assert_string_equal(decide(f, "2026-12-01T02:00:10Z"), "[]");
	assert_int_equal(f->d.n_act, 0);
	assert_int_equal(f->d.wake, T("2026-12-01T02:00:31Z"));
	assert_true(has(f->d.note, "a held by its metric gate: metric backlog (query q): sample = 700 is above max 500"));
	assert_string_equal(decide(f, "2026-12-01T02:00:31Z"), "[]");
	assert_int_equal(f->d.n_act, 1);
	assert_int_equal(f->d.act[0].kind, EM_START_METRICS);
	/* Back in bounds, but not for 60 s yet: still held. */
	result(f, "2026-12-01T02:00:31Z", true, NULL);
	assert_string_equal(decide(f, "2026-12-01T02:00:40Z"), "[]");
	assert_int_equal(f->d.n_act, 0);
	assert_true(has(f->d.note, "within bounds for 0s of the 1m it must hold"));
	/* Time alone does not pass it: the verdict is the evaluation's. */
	assert_string_equal(decide(f, "2026-12-01T02:01:31Z"), "[]");
	assert_int_equal(f->d.n_act, 1);
	assert_int_equal(f->d.act[0].kind, EM_START_METRICS);
	result(f, "2026-12-01T02:01:02Z", true, NULL);
	assert_string_equal(decide(f, "2026-12-01T02:01:10Z"), "[]");
	assert_int_equal(f->d.n_act, 0);
	assert_true(has(f->d.note, "within bounds for 31s of the 1m"));
	result(f, "2026-12-01T02:01:33Z", true, NULL);
	assert_string_equal(decide(f, "2026-12-01T02:01:40Z"), "[]");
	assert_int_equal(f->d.n_act, 1);
	assert_int_equal(f->d.act[0].kind, EM_START_BASELINE);
}

static void test_metric_gate_holds_until_the_window_is_too_short(void **state)
{
	fixture *f = *state;
	use_metrics(f);
	result(f, "2026-12-01T03:29:50Z", false, "metric backlog (query q): Prometheus http://p: connection refused");
	assert_string_equal(decide(f, "2026-12-01T03:29:55Z"), "[]");
	assert_int_equal(f->d.wake, T("2026-12-01T03:30:00Z"));   /* the latest start */
	/* 03:30 leaves 30 min, the estimate: still possible. */
	assert_string_equal(decide(f, "2026-12-01T03:30:00Z"), "[]");
	/* A minute later it is not; the move says what held the tenant. */
	const char *ops = decide(f, "2026-12-01T03:31:00Z");
	assert_true(has(ops, "\"from\":\"waiting_window\",\"to\":\"waiting_window\",\"event\":\"move\""));
	assert_true(has(ops, "held by its metric gate until its window was too short: metric backlog "
			"(query q): Prometheus http://p: connection refused"));
	assert_true(has(ops, "\"window_start\":\"2026-12-03T02:00:00Z\""));
	/* A result from before the window is not what held the tenant. */
	result(f, "2026-12-01T01:59:00Z", false, "metric backlog (query q): old");
	ops = decide(f, "2026-12-01T03:31:00Z");
	assert_true(has(ops, "window too short: it ends 2026-12-01T04:00:00Z"));
	assert_null(strstr(ops, "old"));
}

static void test_metric_checks_stop_when_unneeded(void **state)
{
	fixture *f = *state;
	use_metrics(f);
	f->fx[1] = EM_FX_METRICS;
	set(f->doc, "state", json_string("paused"));
	decide(f, "2026-12-01T02:00:00Z");
	assert_int_equal(f->d.n_act, 1);
	assert_int_equal(f->d.act[0].kind, EM_STOP_FX);
	/* An abort does not wait for them either. */
	set(f->doc, "state", json_string("aborted"));
	assert_true(has(decide(f, "2026-12-01T02:00:00Z"), "\"id\":1,\"from\":\"waiting_window\",\"to\":\"skipped\""));
	/* Running and still waiting for its window: they go on. */
	set(f->doc, "state", json_string("running"));
	decide(f, "2026-12-01T02:00:00Z");
	assert_int_equal(f->d.n_act, 0);
}

static void test_metric_rows_of_the_wrong_shape_are_refused(void **state)
{
	fixture *f = *state;
	static const char *const bad[][2] = {
		{ "[{\"name\": \"x\", \"query\": \"q\", \"for_s\": 0}]",
		  "wave 1: metric 0 (x): min/max is missing or invalid" },
		{ "[{\"name\": \"x\", \"query\": \"q\", \"for_s\": -1, \"max\": 1}]",
		  "wave 1: metric 0 (x): for_s is missing or invalid" },
		{ "[{\"name\": \"x\", \"for_s\": 0, \"max\": 1}]",
		  "wave 1: metric 0 (x): query is missing or invalid" },
		{ "[{\"name\": \"x\", \"query\": \"q\", \"for_s\": 0, \"max\": \"1\"}]",
		  "wave 1: metric 0 (x): min/max is missing or invalid" },
		{ "[{\"query\": \"q\", \"for_s\": 0, \"max\": 1}]",
		  "wave 1: metric 0 (no name): name is missing or invalid" },
		{ "[{\"name\": \"x\", \"query\": \"q\", \"for_s\": 0, \"max\": 1},"
		  " {\"name\": \"x\", \"query\": \"r\", \"for_s\": 0, \"min\": 1}]",
		  "wave 1: metric 1: duplicate name \"x\"" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_error_t e;
		json_t *m = json_loads(bad[i][0], 0, &e);
		assert_non_null(m);
		set(json_object_get(wave0(f), "settings"), "metrics", m);
		char *text = json_dumps(f->doc, JSON_COMPACT);
		char why[200] = "";
		assert_null(em_rollout_parse(text, why, sizeof(why)));
		free(text);
		assert_string_equal(why, bad[i][1]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_approved_starts_at_its_start, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wave_waits_for_approvals_and_first_window, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rejection_halts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backup_gate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_backup_is_rechecked_then_skipped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_window_opens_baseline_then_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_short_window_moves_past_the_blackout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_release_timing_moves_a_short_window, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_verification_required, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_verification_from_http, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pending_intent_is_reissued, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failure_budget_halt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failure_budget_rollback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rollback_reaches_tenants_that_were_still_verifying, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify_soak_pass_complete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_probes_stop_when_their_purpose_ends, setup, teardown),
		cmocka_unit_test_setup_teardown(test_apply_then_decide_chains_steps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abort_skips_what_has_not_started, setup, teardown),
		cmocka_unit_test_setup_teardown(test_http_backup_check_fetches_then_judges, setup, teardown),
		cmocka_unit_test_setup_teardown(test_http_backup_rechecked_then_skipped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_http_backup_fetch_stops_when_unneeded, setup, teardown),
		cmocka_unit_test(test_rows_of_the_wrong_shape_are_refused),
		cmocka_unit_test_setup_teardown(test_standard_preempted_at_the_wave_boundary, setup, teardown),
		cmocka_unit_test_setup_teardown(test_preemption_interrupts_nothing_deploying, setup, teardown),
		cmocka_unit_test_setup_teardown(test_approved_standard_holds_while_urgent_moves, setup, teardown),
		cmocka_unit_test_setup_teardown(test_urgent_waits_for_the_standard_boundary, setup, teardown),
		cmocka_unit_test_setup_teardown(test_preempt_rows_of_the_wrong_shape_are_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resume_plan_of_the_remaining_tenants, setup, teardown),
		cmocka_unit_test_setup_teardown(test_metric_gate_holds_then_releases, setup, teardown),
		cmocka_unit_test_setup_teardown(test_metric_gate_holds_until_the_window_is_too_short, setup, teardown),
		cmocka_unit_test_setup_teardown(test_metric_checks_stop_when_unneeded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_metric_rows_of_the_wrong_shape_are_refused, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
