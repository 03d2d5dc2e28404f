/*
 * Notifications: the words a reader gets, the two body formats, the
 * back-off and the judgement of an attempt (scheduler/notify.c).  Queueing,
 * claiming and delivery against a real PostgreSQL and a real sink are played
 * by tests/integration/test_notify.py.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include "wavesched/notify.h"

static json_t *message(const char *kind, const char *tenant, const char *data_json)
{
	json_error_t je;
	json_t *data = json_loads(data_json, 0, &je);
	assert_non_null(data);
	json_t *m = json_pack("{s:i, s:s, s:s, s:i, s:o}", "id", 42, "kind", kind, "at", "2026-12-01T00:00:00Z",
			      "rollout", 7, "data", data);
	json_object_set_new(m, "tenant", tenant ? json_string(tenant) : json_null());
	return m;
}

static void test_reminder_in_tenant_words(void **state)
{
	(void)state;
	json_t *m = message("window.reminder", "acme",
			    "{\"release\": \"17.0.4\", \"tenant_name\": \"Acme Corp\", \"lead_s\": 93600,"
			    " \"window_start_local\": \"Tue 2026-12-01 02:00 Europe/Berlin\","
			    " \"window_end_local\": \"Tue 2026-12-01 04:00 Europe/Berlin\"}");
	char *t = ws_notify_text("window.reminder", "acme", 7, json_object_get(m, "data"));
	assert_string_equal(t, "Reminder: Acme Corp (acme) will be upgraded to version 17.0.4 in 1 day 2 hours, "
			       "during its maintenance window Tue 2026-12-01 02:00 Europe/Berlin until "
			       "Tue 2026-12-01 04:00 Europe/Berlin.");
	free(t);
	json_decref(m);
}

static void test_moved_names_both_windows_and_reason(void **state)
{
	(void)state;
	json_t *d = json_loads("{\"release\": \"17.0.4\", \"release_kind\": \"urgent\","
			       " \"from_start_local\": \"Mon 2026-11-30 22:00 America/New_York\","
			       " \"window_start_local\": \"Tue 2026-12-01 22:00 America/New_York\","
			       " \"reason\": \"window too short for the expected 15m\"}", 0, NULL);
	char *t = ws_notify_text("window.moved", "globex", 3, d);
	assert_string_equal(t, "The upgrade of globex to version 17.0.4 (urgent release) has moved from "
			       "Mon 2026-11-30 22:00 America/New_York to the window Tue 2026-12-01 22:00 America/New_York. "
			       "Reason: window too short for the expected 15m.");
	free(t);
	json_decref(d);
}

static void test_missing_fields_never_print_null(void **state)
{
	(void)state;
	static const char *const kinds[] = { "window.reminder", "window.moved", "window.cancelled",
					     "deployment.healthy", "deployment.failed", "deployment.rolled_back",
					     "gate.failed", "rollout.halted", "rollout.preempted", "review.overdue",
					     "something.new", "" };
	json_t *empty = json_object();
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		char *t = ws_notify_text(kinds[i], NULL, 0, empty);
		assert_non_null(t);
		assert_true(strlen(t) > 5);
		assert_null(strstr(t, "(null)"));
		free(t);
		t = ws_notify_text(kinds[i], NULL, 0, NULL);
		assert_non_null(t);
		assert_null(strstr(t, "(null)"));
		free(t);
	}
	json_decref(empty);
}

static void test_role_messages(void **state)
{
	(void)state;
	json_t *d = json_loads("{\"release\": \"17.0.4\", \"gate\": \"health\", \"wave\": \"canary\","
			       " \"reason\": \"p95 latency 3.1x baseline\"}", 0, NULL);
	char *t = ws_notify_text("gate.failed", "acme", 9, d);
	assert_string_equal(t, "Gate health failed in rollout 9 (release 17.0.4), wave canary, tenant acme. "
			       "Reason: p95 latency 3.1x baseline.");
	free(t);
	t = ws_notify_text("rollout.halted", NULL, 9, d);
	assert_string_equal(t, "Rollout 9 (release 17.0.4) halted. Reason: p95 latency 3.1x baseline.");
	free(t);
	t = ws_notify_text("rollout.preempted", NULL, 9, d);
	assert_non_null(strstr(t, "preempted by an urgent rollout"));
	free(t);
	json_decref(d);
}

static void test_json_body(void **state)
{
	(void)state;
	json_t *m = message("deployment.failed", "acme", "{\"release\": \"1.2\", \"reason\": \"deploy call: HTTP 500\"}");
	char why[128] = "";
	char *body = ws_notify_body("json", m, why, sizeof(why));
	assert_non_null(body);
	json_t *b = json_loads(body, 0, NULL);
	assert_non_null(b);
	assert_int_equal(json_integer_value(json_object_get(b, "id")), 42);
	assert_string_equal(json_string_value(json_object_get(b, "kind")), "deployment.failed");
	assert_string_equal(json_string_value(json_object_get(b, "at")), "2026-12-01T00:00:00Z");
	assert_int_equal(json_integer_value(json_object_get(b, "rollout")), 7);
	assert_string_equal(json_string_value(json_object_get(b, "tenant")), "acme");
	assert_string_equal(json_string_value(json_object_get(b, "text")),
			    "The upgrade of acme to version 1.2 failed. Reason: deploy call: HTTP 500.");
	assert_string_equal(json_string_value(json_object_get(json_object_get(b, "data"), "release")), "1.2");
	json_decref(b);
	free(body);
	json_decref(m);
}

static void test_slack_body_is_escaped_webhook_json(void **state)
{
	(void)state;
	json_t *m = message("rollout.halted", NULL, "{\"release\": \"1.2\", \"reason\": \"a <b> & c\"}");
	char why[128] = "";
	char *body = ws_notify_body("slack", m, why, sizeof(why));
	assert_non_null(body);
	json_t *b = json_loads(body, 0, NULL);
	assert_non_null(b);
	/* text: the plain fallback; blocks: mrkdwn, with & < > escaped */
	assert_string_equal(json_string_value(json_object_get(b, "text")), "Rollout 7 (release 1.2) halted. Reason: a <b> & c.");
	json_t *blocks = json_object_get(b, "blocks");
	assert_int_equal(json_array_size(blocks), 2);
	json_t *sec = json_array_get(blocks, 0);
	assert_string_equal(json_string_value(json_object_get(sec, "type")), "section");
	assert_string_equal(json_string_value(json_object_get(json_object_get(sec, "text"), "type")), "mrkdwn");
	assert_string_equal(json_string_value(json_object_get(json_object_get(sec, "text"), "text")),
			    "Rollout 7 (release 1.2) halted. Reason: a &lt;b&gt; &amp; c.");
	json_t *ctx = json_array_get(blocks, 1);
	assert_string_equal(json_string_value(json_object_get(ctx, "type")), "context");
	const char *ct = json_string_value(json_object_get(json_array_get(json_object_get(ctx, "elements"), 0), "text"));
	assert_non_null(strstr(ct, "rollout.halted"));
	assert_non_null(strstr(ct, "rollout 7"));
	json_decref(b);
	free(body);
	json_decref(m);
}

static void test_body_refuses_bad_input(void **state)
{
	(void)state;
	json_t *m = message("rollout.halted", NULL, "{}");
	char why[128] = "";
	assert_null(ws_notify_body("xml", m, why, sizeof(why)));
	assert_string_equal(why, "unknown sink format \"xml\" (expected json or slack)");
	json_object_del(m, "id");
	why[0] = '\0';
	assert_null(ws_notify_body("json", m, why, sizeof(why)));
	assert_string_equal(why, "message without an id or a kind");
	assert_null(ws_notify_body("json", NULL, why, sizeof(why)));
	json_decref(m);
}

static void test_backoff_doubles_caps_and_jitters(void **state)
{
	(void)state;
	/* rnd 0 gives the low end (half), UINT32_MAX-ish values stay within d */
	assert_int_equal(ws_notify_backoff_ms(1, 1000, 600000, 0), 500);
	assert_int_equal(ws_notify_backoff_ms(2, 1000, 600000, 0), 1000);
	assert_int_equal(ws_notify_backoff_ms(3, 1000, 600000, 0), 2000);
	assert_int_equal(ws_notify_backoff_ms(1, 1000, 600000, 500), 1000);   /* 500 + 500 % 501 */
	for (unsigned a = 1; a < 80; a++) {
		for (uint32_t r = 0; r < 4000000000u; r += 400000001u) {
			uint64_t d = ws_notify_backoff_ms(a, 1000, 600000, r);
			uint64_t full = a >= 11 ? 600000 : 1000ull << (a - 1);
			if (full > 600000)
				full = 600000;
			assert_true(d >= full / 2);
			assert_true(d <= full);
		}
	}
	/* a huge attempt never overflows past the cap */
	assert_true(ws_notify_backoff_ms(4000000000u, 1000, 600000, 7) <= 600000);
	/* attempt 0 counts as the first; a cap below the base is the base */
	assert_int_equal(ws_notify_backoff_ms(0, 1000, 600000, 0), 500);
	assert_int_equal(ws_notify_backoff_ms(5, 1000, 10, 0), 500);
	assert_int_equal(ws_notify_backoff_ms(1, 1, 1, 0), 1);
}

static void test_judge(void **state)
{
	(void)state;
	assert_int_equal(ws_notify_judge(WS_OUT_OK, 200, 1, 3), WS_NOTIFY_DELIVERED);
	assert_int_equal(ws_notify_judge(WS_OUT_OK, 204, 3, 3), WS_NOTIFY_DELIVERED);
	assert_int_equal(ws_notify_judge(WS_OUT_OK, 500, 1, 3), WS_NOTIFY_RETRY);
	assert_int_equal(ws_notify_judge(WS_OUT_OK, 500, 3, 3), WS_NOTIFY_GIVE_UP);
	assert_int_equal(ws_notify_judge(WS_OUT_OK, 429, 1, 3), WS_NOTIFY_RETRY);
	assert_int_equal(ws_notify_judge(WS_OUT_OK, 408, 1, 3), WS_NOTIFY_RETRY);
	assert_int_equal(ws_notify_judge(WS_OUT_OK, 404, 1, 3), WS_NOTIFY_GIVE_UP);
	assert_int_equal(ws_notify_judge(WS_OUT_OK, 301, 1, 3), WS_NOTIFY_RETRY);
	assert_int_equal(ws_notify_judge(WS_OUT_TIMEOUT, 0, 1, 3), WS_NOTIFY_RETRY);
	assert_int_equal(ws_notify_judge(WS_OUT_CONNECT, 0, 2, 3), WS_NOTIFY_RETRY);
	assert_int_equal(ws_notify_judge(WS_OUT_REFUSED, 0, 1, 3), WS_NOTIFY_GIVE_UP);
	assert_int_equal(ws_notify_judge(WS_OUT_BAD_SCHEME, 0, 1, 3), WS_NOTIFY_GIVE_UP);
	assert_string_equal(ws_notify_outcome_name(WS_NOTIFY_RETRY), "retry");
	assert_string_equal(ws_notify_outcome_name(WS_NOTIFY_GIVE_UP), "failed");
	assert_string_equal(ws_notify_outcome_name(WS_NOTIFY_DELIVERED), "delivered");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reminder_in_tenant_words),
		cmocka_unit_test(test_moved_names_both_windows_and_reason),
		cmocka_unit_test(test_missing_fields_never_print_null),
		cmocka_unit_test(test_role_messages),
		cmocka_unit_test(test_json_body),
		cmocka_unit_test(test_slack_body_is_escaped_webhook_json),
		cmocka_unit_test(test_body_refuses_bad_input),
		cmocka_unit_test(test_backoff_doubles_caps_and_jitters),
		cmocka_unit_test(test_judge),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
