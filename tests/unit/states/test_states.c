/*
 * test_states.c - the three state machines, checked exhaustively: every
 * (state, event) pair of each machine against a table written out here by
 * name, independently of the one in scheduler/states.c, so an added, lost or
 * redirected transition fails the test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include "wavesched/states.h"

typedef struct triple {
	const char *from, *event, *to;
} triple;

/* spec/engine.md "Objects and states", docs/design/engine.md "States". */
static const triple rollout_expected[] = {
	{ "planned", "approve", "approved" },
	{ "planned", "abort", "aborted" },
	{ "approved", "start", "running" },
	{ "approved", "abort", "aborted" },
	{ "running", "pause", "paused" },
	{ "running", "complete", "completed" },
	{ "running", "preempt", "preempted" },
	{ "running", "halt", "halted" },
	{ "running", "abort", "aborted" },
	{ "running", "rollback_done", "rolled_back" },
	{ "paused", "resume", "running" },
	{ "paused", "halt", "halted" },
	{ "paused", "abort", "aborted" },
	{ "preempted", "resume_preempted", "running" },
	{ "preempted", "abort", "aborted" },
	{ "halted", "abort", "aborted" },
	{ "halted", "rollback_done", "rolled_back" },
};

static const triple wave_expected[] = {
	{ "pending", "check_backups", "backup_check" },
	{ "backup_check", "deploy", "deploying" },
	{ "backup_check", "fail", "failed" },
	{ "deploying", "verify", "verifying" },
	{ "deploying", "fail", "failed" },
	{ "verifying", "soak", "soaking" },
	{ "verifying", "fail", "failed" },
	{ "soaking", "pass", "passed" },
	{ "soaking", "fail", "failed" },
};

static const triple deployment_expected[] = {
	{ "scheduled", "wait", "waiting_window" },
	{ "scheduled", "skip", "skipped" },
	{ "waiting_window", "move", "waiting_window" },
	{ "waiting_window", "deploy", "deploying" },
	{ "waiting_window", "skip", "skipped" },
	{ "deploying", "verify", "verifying" },
	{ "deploying", "fail", "failed" },
	{ "verifying", "healthy", "healthy" },
	{ "verifying", "fail", "failed" },
	{ "healthy", "fail", "failed" },
	{ "healthy", "rollback", "rolling_back" },
	{ "failed", "rollback", "rolling_back" },
	{ "rolling_back", "rollback_done", "rolled_back" },
	{ "rolling_back", "fail", "failed" },
};

static const char *lookup(const triple *t, size_t n, const char *from, const char *ev)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(t[i].from, from) == 0 && strcmp(t[i].event, ev) == 0)
			return t[i].to;
	return NULL;
}

/* Every expected triple names real states and events (a typo in the table
 * above would otherwise make a row silently unreachable). */
#define CHECK_NAMES(tab, nstates, nevents, sname, ename) do {                    \
	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {              \
		bool f = false, e = false, t = false;                            \
		for (int s = 0; s < (nstates); s++) {                            \
			f |= strcmp(sname(s), tab[i].from) == 0;                  \
			t |= strcmp(sname(s), tab[i].to) == 0;                    \
		}                                                                \
		for (int v = 0; v < (nevents); v++)                              \
			e |= strcmp(ename(v), tab[i].event) == 0;                 \
		if (!f || !e || !t)                                              \
			fail_msg("unknown name in expected row %zu", i);          \
	}                                                                        \
} while (0)

static void test_rollout_table(void **state)
{
	(void)state;
	CHECK_NAMES(rollout_expected, WS_RO__COUNT, WS_RO_EV__COUNT, ws_rollout_state_name,
		    ws_rollout_event_name);
	size_t allowed = 0;
	for (int s = 0; s < WS_RO__COUNT; s++) {
		for (int e = 0; e < WS_RO_EV__COUNT; e++) {
			const char *want = lookup(rollout_expected, sizeof(rollout_expected) / sizeof(triple),
						  ws_rollout_state_name(s), ws_rollout_event_name(e));
			ws_rollout_state to = (ws_rollout_state)99;
			int rc = ws_rollout_next(s, e, &to);
			if (!want) {
				if (rc != -1 || to != (ws_rollout_state)99)
					fail_msg("rollout %s --%s--> should be refused", ws_rollout_state_name(s),
						 ws_rollout_event_name(e));
				continue;
			}
			allowed++;
			if (rc != 0)
				fail_msg("rollout %s --%s--> %s refused", ws_rollout_state_name(s),
					 ws_rollout_event_name(e), want);
			assert_string_equal(ws_rollout_state_name(to), want);
		}
	}
	assert_int_equal(allowed, sizeof(rollout_expected) / sizeof(triple));
}

static void test_wave_table(void **state)
{
	(void)state;
	CHECK_NAMES(wave_expected, WS_WAVE__COUNT, WS_WAVE_EV__COUNT, ws_wave_state_name,
		    ws_wave_event_name);
	size_t allowed = 0;
	for (int s = 0; s < WS_WAVE__COUNT; s++) {
		for (int e = 0; e < WS_WAVE_EV__COUNT; e++) {
			const char *want = lookup(wave_expected, sizeof(wave_expected) / sizeof(triple),
						  ws_wave_state_name(s), ws_wave_event_name(e));
			ws_wave_state to = (ws_wave_state)99;
			int rc = ws_wave_next(s, e, &to);
			if (!want) {
				if (rc != -1 || to != (ws_wave_state)99)
					fail_msg("wave %s --%s--> should be refused", ws_wave_state_name(s),
						 ws_wave_event_name(e));
				continue;
			}
			allowed++;
			if (rc != 0)
				fail_msg("wave %s --%s--> %s refused", ws_wave_state_name(s),
					 ws_wave_event_name(e), want);
			assert_string_equal(ws_wave_state_name(to), want);
		}
	}
	assert_int_equal(allowed, sizeof(wave_expected) / sizeof(triple));
}

static void test_deployment_table(void **state)
{
	(void)state;
	CHECK_NAMES(deployment_expected, WS_DEP__COUNT, WS_DEP_EV__COUNT, ws_deployment_state_name,
		    ws_deployment_event_name);
	size_t allowed = 0;
	for (int s = 0; s < WS_DEP__COUNT; s++) {
		for (int e = 0; e < WS_DEP_EV__COUNT; e++) {
			const char *want = lookup(deployment_expected,
						  sizeof(deployment_expected) / sizeof(triple),
						  ws_deployment_state_name(s), ws_deployment_event_name(e));
			ws_deployment_state to = (ws_deployment_state)99;
			int rc = ws_deployment_next(s, e, &to);
			if (!want) {
				if (rc != -1 || to != (ws_deployment_state)99)
					fail_msg("deployment %s --%s--> should be refused",
						 ws_deployment_state_name(s), ws_deployment_event_name(e));
				continue;
			}
			allowed++;
			if (rc != 0)
				fail_msg("deployment %s --%s--> %s refused", ws_deployment_state_name(s),
					 ws_deployment_event_name(e), want);
			assert_string_equal(ws_deployment_state_name(to), want);
		}
	}
	assert_int_equal(allowed, sizeof(deployment_expected) / sizeof(triple));
}

/* The exact names the database and the API use, in full. */
static void test_names_and_parse(void **state)
{
	(void)state;
	static const char *ro[] = { "planned", "approved", "running", "paused", "completed",
				    "preempted", "halted", "aborted", "rolled_back" };
	static const char *wv[] = { "pending", "backup_check", "deploying", "verifying", "soaking",
				    "passed", "failed" };
	static const char *dp[] = { "scheduled", "waiting_window", "deploying", "verifying", "healthy",
				    "failed", "rolling_back", "rolled_back", "skipped" };
	assert_int_equal(WS_RO__COUNT, sizeof(ro) / sizeof(ro[0]));
	assert_int_equal(WS_WAVE__COUNT, sizeof(wv) / sizeof(wv[0]));
	assert_int_equal(WS_DEP__COUNT, sizeof(dp) / sizeof(dp[0]));
	for (int i = 0; i < WS_RO__COUNT; i++) {
		ws_rollout_state s;
		assert_int_equal(ws_rollout_state_parse(ro[i], &s), 0);
		assert_int_equal(s, i);
		assert_string_equal(ws_rollout_state_name(s), ro[i]);
	}
	for (int i = 0; i < WS_WAVE__COUNT; i++) {
		ws_wave_state s;
		assert_int_equal(ws_wave_state_parse(wv[i], &s), 0);
		assert_int_equal(s, i);
		assert_string_equal(ws_wave_state_name(s), wv[i]);
	}
	for (int i = 0; i < WS_DEP__COUNT; i++) {
		ws_deployment_state s;
		assert_int_equal(ws_deployment_state_parse(dp[i], &s), 0);
		assert_int_equal(s, i);
		assert_string_equal(ws_deployment_state_name(s), dp[i]);
	}

	/* Refused names leave the output alone. */
	ws_rollout_state rs = WS_RO_HALTED;
	assert_int_equal(ws_rollout_state_parse("Running", &rs), WS_EINVAL);
	assert_int_equal(ws_rollout_state_parse("", &rs), WS_EINVAL);
	assert_int_equal(ws_rollout_state_parse(NULL, &rs), WS_EINVAL);
	assert_int_equal(ws_rollout_state_parse("running ", &rs), WS_EINVAL);
	assert_int_equal(rs, WS_RO_HALTED);
	ws_wave_state ws = WS_WAVE_PASSED;
	assert_int_equal(ws_wave_state_parse("rolled_back", &ws), WS_EINVAL);
	assert_int_equal(ws, WS_WAVE_PASSED);
	ws_deployment_state ds = WS_DEP_HEALTHY;
	assert_int_equal(ws_deployment_state_parse("paused", &ds), WS_EINVAL);
	assert_int_equal(ds, WS_DEP_HEALTHY);

	/* Out-of-range values have no name and no transition. */
	assert_null(ws_rollout_state_name(WS_RO__COUNT));
	assert_null(ws_rollout_state_name((ws_rollout_state)-1));
	assert_null(ws_wave_event_name(WS_WAVE_EV__COUNT));
	assert_null(ws_deployment_state_name(WS_DEP__COUNT));
	ws_rollout_state to = WS_RO_PLANNED;
	assert_int_equal(ws_rollout_next(WS_RO__COUNT, WS_RO_EV_ABORT, &to), -1);
	assert_int_equal(ws_rollout_next(WS_RO_RUNNING, WS_RO_EV__COUNT, &to), -1);
	assert_int_equal(ws_rollout_next((ws_rollout_state)-3, WS_RO_EV_ABORT, &to), -1);
	assert_int_equal(to, WS_RO_PLANNED);
}

static void test_terminal(void **state)
{
	(void)state;
	for (int s = 0; s < WS_RO__COUNT; s++) {
		bool want = s == WS_RO_COMPLETED || s == WS_RO_ABORTED || s == WS_RO_ROLLED_BACK;
		assert_int_equal(ws_rollout_state_terminal(s), want);
	}
	for (int s = 0; s < WS_WAVE__COUNT; s++) {
		bool want = s == WS_WAVE_PASSED || s == WS_WAVE_FAILED;
		assert_int_equal(ws_wave_state_terminal(s), want);
	}
	for (int s = 0; s < WS_DEP__COUNT; s++) {
		bool want = s == WS_DEP_ROLLED_BACK || s == WS_DEP_SKIPPED;
		assert_int_equal(ws_deployment_state_terminal(s), want);
	}
	assert_false(ws_rollout_state_terminal(WS_RO__COUNT));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rollout_table),
		cmocka_unit_test(test_wave_table),
		cmocka_unit_test(test_deployment_table),
		cmocka_unit_test(test_names_and_parse),
		cmocka_unit_test(test_terminal),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
