/*
 * test_health.c - the health gate: every rule of the evaluator, table-driven
 * (verdict after each sample and the final reason), its evidence, and the
 * prober and baseline against a real HTTP server in another process.
 */
#include "../outbound/evloop.h"
#include "../outbound/testsrv.h"
#include "wavesched/health.h"
#include "wavesched/metrics.h"

static testsrv srv;

/* Scripted routes: each request takes the next answer, the last repeats. */
static const char *const routes =
	"{\"/seq1\": [{\"status\": 503}, {\"status\": 200}],"
	" \"/pass\": [{\"status\": 200, \"body\": \"ok\"}],"
	" \"/slow\": [{\"status\": 200, \"delay_ms\": 150}]}";

static int group_setup(void **state)
{
	(void)state;
	testsrv_start(&srv, routes);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	testsrv_stop(&srv);
	return 0;
}

/* ---- the evaluator ------------------------------------------------------ */

static ws_gate_health cfg_of(int cs, int mf, int max_ms, double regression)
{
	ws_gate_health g = {
		.enabled = true, .interval_s = 30, .timeout_s = 5, .consecutive_successes = cs,
		.max_consecutive_failures = mf, .max_latency_ms = max_ms, .latency_regression = regression,
	};
	return g;
}

/* A sample written "STATUS:MS" (an HTTP answer; MS may have decimals) or
 * "E" (no answer: a time-out). */
static ws_health_sample sample_of(const char *spec)
{
	ws_health_sample s = { 0 };
	if (strcmp(spec, "E") == 0) {
		s.error = "GET http://t/health: timed out after 5000 ms";
		return s;
	}
	int status;
	double ms;
	assert_int_equal(sscanf(spec, "%d:%lf", &status, &ms), 2);
	s.answered = true;
	s.status = status;
	s.latency_us = (uint64_t)(ms * 1000.0 + 0.5);
	return s;
}

static void test_eval_rules(void **state)
{
	(void)state;
	struct {
		const char *name;
		int cs, mf, max_ms;
		double regression;
		double baseline_ms;
		const char *samples;   /* space-separated */
		const char *verdicts;  /* after each sample: . pending, P pass, F fail */
		const char *reason;
	} cases[] = {
		{ "three successes pass", 3, 3, 2000, 1.5, 10,
		  "200:12 200:12 200:12", "..P",
		  "3 consecutive successes, median latency 12 ms (baseline 10 ms)" },
		{ "three 503s fail", 3, 3, 2000, 1.5, 10,
		  "503:5 503:5 503:5", "..F", "3 consecutive failures: HTTP 503" },
		{ "a success breaks a run of failures", 3, 3, 2000, 1.5, 10,
		  "503:5 503:5 200:10 503:5 503:5 200:10 200:10 200:10", ".......P",
		  "3 consecutive successes, median latency 10 ms (baseline 10 ms)" },
		{ "a failure breaks a run of successes", 3, 3, 2000, 1.5, 10,
		  "200:10 200:10 500:5 200:10 200:10 200:10", ".....P",
		  "3 consecutive successes, median latency 10 ms (baseline 10 ms)" },
		{ "a slow 2xx is a failure", 3, 3, 100, 100, 10,
		  "200:150 200:150 200:150", "..F",
		  "3 consecutive failures: latency 150 ms > max 100 ms" },
		{ "exactly max latency succeeds", 2, 3, 100, 100, 10,
		  "200:100 200:100", ".P", "2 consecutive successes, median latency 100 ms (baseline 10 ms)" },
		{ "a 3xx left after redirects is a failure", 3, 2, 2000, 1.5, 10,
		  "302:5 302:5", ".F", "2 consecutive failures: HTTP 302" },
		{ "a 404 is a failure", 1, 1, 2000, 1.5, 10,
		  "404:5", "F", "1 consecutive failure: HTTP 404" },
		{ "time-outs fail with their cause", 3, 3, 2000, 1.5, 10,
		  "E E E", "..F",
		  "3 consecutive failures: GET http://t/health: timed out after 5000 ms" },
		{ "latency regression", 3, 3, 2000, 1.5, 12,
		  "200:48 200:48 200:48", "..F", "median latency 48 ms > 1.5 × baseline 12 ms" },
		{ "regression exactly at the limit passes", 3, 3, 2000, 1.5, 10,
		  "200:15 200:15 200:15", "..P",
		  "3 consecutive successes, median latency 15 ms (baseline 10 ms)" },
		{ "median is the middle value, not the mean", 3, 3, 2000, 1.5, 10,
		  "200:10 200:10 200:90", "..P",
		  "3 consecutive successes, median latency 10 ms (baseline 10 ms)" },
		{ "even window: mean of the two middle values, at the limit", 4, 3, 2000, 1.5, 10,
		  "200:10 200:10 200:20 200:20", "...P",
		  "4 consecutive successes, median latency 15 ms (baseline 10 ms)" },
		{ "even window: mean of the two middle values, over", 4, 3, 2000, 1.5, 10,
		  "200:10 200:12 200:20 200:22", "...F", "median latency 16 ms > 1.5 × baseline 10 ms" },
		{ "answered failures are in the window", 3, 3, 2000, 1.5, 10,
		  "500:90 500:90 200:10", "..F", "median latency 90 ms > 1.5 × baseline 10 ms" },
		{ "unanswered samples are not in the window", 3, 4, 2000, 1.5, 10,
		  "200:10 E 200:10 E 200:12 200:11 200:10", "......P",
		  "3 consecutive successes, median latency 11 ms (baseline 10 ms)" },
		{ "a pass turns into a fail during the soak", 1, 2, 2000, 1.5, 10,
		  "200:10 500:5 200:10 500:5 500:5 200:10", "PPPPFF", "2 consecutive failures: HTTP 500" },
		{ "the window slides: a regression after the pass fails", 1, 3, 2000, 1.5, 10,
		  "200:10 200:10 200:100 200:100", "PPPF", "median latency 100 ms > 1.5 × baseline 10 ms" },
		{ "fail is final", 3, 3, 2000, 1.5, 10,
		  "503:5 503:5 503:5 200:10 200:10 200:10", "..FFFF", "3 consecutive failures: HTTP 503" },
		{ "no baseline: no regression rule", 3, 3, 2000, 1.5, 0,
		  "200:500 200:500 200:500", "..P",
		  "3 consecutive successes, median latency 500 ms (no baseline)" },
		{ "a baseline under 10 ms counts as 10 ms", 3, 3, 2000, 1.5, 0.2,
		  "200:2 200:2.4 200:14", "..P",
		  "3 consecutive successes, median latency 2.4 ms (baseline 0.2 ms)" },
		{ "a small baseline still catches a regression", 3, 3, 2000, 1.5, 0.2,
		  "200:20 200:20 200:20", "..F", "median latency 20 ms > 1.5 × baseline 10 ms" },
		{ "failure rule before regression rule", 3, 3, 2000, 1.5, 10,
		  "503:90 503:90 503:90", "..F", "3 consecutive failures: HTTP 503" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ws_gate_health g = cfg_of(cases[i].cs, cases[i].mf, cases[i].max_ms, cases[i].regression);
		ws_health_eval *e = ws_health_eval_new(&g, (uint64_t)(cases[i].baseline_ms * 1000.0 + 0.5));
		assert_non_null(e);
		assert_int_equal(ws_health_eval_verdict(e), WS_HEALTH_PENDING);
		char verdicts[64] = "";
		char *copy = strdup(cases[i].samples), *save = NULL;
		size_t n = 0;
		for (char *tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
			ws_health_sample s = sample_of(tok);
			ws_health_verdict v = ws_health_eval_feed(e, &s);
			assert_int_equal(v, ws_health_eval_verdict(e));
			verdicts[n++] = v == WS_HEALTH_PASS ? 'P' : v == WS_HEALTH_FAIL ? 'F' : '.';
		}
		verdicts[n] = '\0';
		free(copy);
		if (strcmp(verdicts, cases[i].verdicts) != 0 ||
		    strcmp(ws_health_eval_reason(e), cases[i].reason) != 0)
			fail_msg("case \"%s\": got %s \"%s\", expected %s \"%s\"", cases[i].name, verdicts,
				 ws_health_eval_reason(e), cases[i].verdicts, cases[i].reason);
		ws_health_eval_free(e);
	}
}

static void test_median(void **state)
{
	(void)state;
	uint64_t none[1] = { 0 };
	assert_int_equal(ws_health_median(none, 0), 0);
	uint64_t odd[] = { 30, 10, 20 };
	assert_int_equal(ws_health_median(odd, 3), 20);
	uint64_t even[] = { 40, 10, 30, 20 };
	assert_int_equal(ws_health_median(even, 4), 25);
	uint64_t big[] = { UINT64_MAX, UINT64_MAX - 2 };   /* no overflow */
	assert_true(ws_health_median(big, 2) == UINT64_MAX - 1);
	uint64_t rounding[] = { 3, 4 };
	assert_int_equal(ws_health_median(rounding, 2), 3);
}

static void test_evidence(void **state)
{
	(void)state;
	ws_gate_health g = cfg_of(100, 100, 2000, 1.5);
	ws_health_eval *e = ws_health_eval_new(&g, 10000);
	for (int i = 0; i < 60; i++) {
		ws_health_sample s = sample_of(i % 2 ? "200:11" : "E");
		s.at_ms = 1000 + i;
		ws_health_eval_feed(e, &s);
	}
	json_t *ev = ws_health_eval_evidence(e);
	assert_string_equal(json_string_value(json_object_get(ev, "verdict")), "pending");
	assert_int_equal(json_integer_value(json_object_get(ev, "samples_total")), 60);
	assert_int_equal(json_integer_value(json_object_get(ev, "samples_dropped")), 10);
	assert_int_equal(json_integer_value(json_object_get(ev, "consecutive_successes")), 1);
	assert_true(json_real_value(json_object_get(ev, "baseline_ms")) == 10.0);
	assert_true(json_real_value(json_object_get(ev, "median_ms")) == 11.0);
	json_t *samples = json_object_get(ev, "samples");
	assert_int_equal(json_array_size(samples), WS_HEALTH_MAX_SAMPLES);
	/* Oldest kept first: sample 10 (a time-out), then 11 (an answer). */
	json_t *first = json_array_get(samples, 0), *second = json_array_get(samples, 1);
	assert_int_equal(json_integer_value(json_object_get(first, "at_ms")), 1010);
	assert_true(json_is_false(json_object_get(first, "ok")));
	assert_string_equal(json_string_value(json_object_get(first, "error")),
			    "GET http://t/health: timed out after 5000 ms");
	assert_null(json_object_get(first, "status"));
	assert_int_equal(json_integer_value(json_object_get(second, "status")), 200);
	assert_true(json_is_true(json_object_get(second, "ok")));
	assert_true(json_real_value(json_object_get(second, "latency_ms")) == 11.0);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(samples, 49), "at_ms")), 1059);
	json_decref(ev);
	ws_health_eval_free(e);
	/* No baseline is said as null. */
	e = ws_health_eval_new(&g, 0);
	ev = ws_health_eval_evidence(e);
	assert_true(json_is_null(json_object_get(ev, "baseline_ms")));
	assert_int_equal(json_array_size(json_object_get(ev, "samples")), 0);
	json_decref(ev);
	ws_health_eval_free(e);
}

/* ---- the prober --------------------------------------------------------- */

typedef struct world {
	tctx t;
	ws_outbound *out;
	ws_prober *p;
} world;

static void world_init(world *w, const char *allow)
{
	tctx_init(&w->t);
	ws_diags d;
	ws_diags_init(&d);
	ws_outbound_policy *pol = ws_outbound_policy_parse(allow, NULL, &d);
	assert_non_null(pol);
	w->out = ws_outbound_new(&w->t.loop, pol, NULL, &d);
	assert_non_null(w->out);
	ws_diags_free(&d);
	w->p = ws_prober_new(&w->t.loop, w->out);
	assert_non_null(w->p);
}

static void world_done(world *w)
{
	int closed = 0;
	ws_prober_close(w->p, closed_cb, &closed);
	assert_int_equal(closed, 0);   /* never before close returns */
	assert_true(run_until_count(&w->t, &closed, 5000));
	closed = 0;
	ws_outbound_close(w->out, closed_cb, &closed);
	assert_true(run_until_count(&w->t, &closed, 5000));
	tctx_done(&w->t);
}

/* Collects samples; removes its target after `stop_after`. */
typedef struct collector {
	int n;
	int stop_after;
	int status[16];
	bool answered[16];
	char *error[16];
	ws_health_eval *eval;
} collector;

static void collect_cb(void *arg, ws_probe_target *t, const ws_health_sample *s)
{
	collector *c = arg;
	if (c->n < 16) {
		c->status[c->n] = s->status;
		c->answered[c->n] = s->answered;
		c->error[c->n] = s->error ? strdup(s->error) : NULL;
	}
	c->n++;
	assert_true(s->at_ms > 0);
	if (c->eval)
		ws_health_eval_feed(c->eval, s);
	if (c->stop_after && c->n >= c->stop_after)
		ws_prober_remove(t);
}

static void collector_free(collector *c)
{
	for (int i = 0; i < 16 && i < c->n; i++)
		free(c->error[i]);
}

static bool reached(const void *arg)
{
	const collector *c = arg;
	return c->n >= c->stop_after;
}

static void test_prober_samples_and_remove(void **state)
{
	(void)state;
	world w;
	world_init(&w, "127.0.0.0/8");
	collector c = { .stop_after = 3 };
	ws_metrics *m = ws_metrics_new();
	ws_prober_set_metrics(w.p, m);
	ws_probe_target *t = ws_prober_add(w.p, testsrv_url(&srv, "/seq1"), 30, 1000, collect_cb, &c);
	assert_non_null(t);
	assert_int_equal(ws_prober_count(w.p), 1);
	assert_int_equal(c.n, 0);   /* the first probe comes from the loop */
	assert_true(run_until_pred(&w.t, reached, &c, 10000));
	assert_int_equal(ws_prober_count(w.p), 0);
	assert_int_equal(c.status[0], 503);
	assert_int_equal(c.status[1], 200);
	assert_int_equal(c.status[2], 200);
	/* Removed from its own callback: nothing more comes. */
	run_for(&w.t, 150);
	assert_int_equal(c.n, 3);
	/* Every sample is in the latency histogram, by outcome. */
	char *text = ws_metrics_render(m, NULL);
	assert_non_null(strstr(text, "# TYPE wavesched_probe_duration_seconds histogram"));
	assert_non_null(strstr(text, "wavesched_probe_duration_seconds_count{outcome=\"ok\"} 2\n"));
	assert_non_null(strstr(text, "wavesched_probe_duration_seconds_count{outcome=\"status\"} 1\n"));
	free(text);
	collector_free(&c);
	world_done(&w);
	ws_metrics_free(m);
}

static void test_prober_gate_pass_and_fail(void **state)
{
	(void)state;
	world w;
	world_init(&w, "127.0.0.0/8");
	/* Latency bounds with room for a loaded machine: /pass must answer
	 * within 300 ms, /delay/600 is always over that and within its
	 * 1500 ms time-out. */
	ws_gate_health g = cfg_of(3, 3, 300, 1.5);
	collector ok = { .stop_after = 3, .eval = ws_health_eval_new(&g, 0) };
	collector slow = { .stop_after = 3, .eval = ws_health_eval_new(&g, 0) };
	collector hang = { .stop_after = 3, .eval = ws_health_eval_new(&g, 0) };
	assert_non_null(ws_prober_add(w.p, testsrv_url(&srv, "/pass"), 300, 300, collect_cb, &ok));
	assert_non_null(ws_prober_add(w.p, testsrv_url(&srv, "/delay/600"), 1500, 1500, collect_cb,
				      &slow));
	const char *hang_url = testsrv_url(&srv, "/hang");
	assert_non_null(ws_prober_add(w.p, hang_url, 100, 100, collect_cb, &hang));
	assert_true(run_until_pred(&w.t, reached, &ok, 10000));
	assert_true(run_until_pred(&w.t, reached, &slow, 10000));
	assert_true(run_until_pred(&w.t, reached, &hang, 10000));
	if (ws_health_eval_verdict(ok.eval) != WS_HEALTH_PASS)
		fail_msg("/pass: %s", ws_health_eval_reason(ok.eval));
	assert_int_equal(ws_health_eval_verdict(slow.eval), WS_HEALTH_FAIL);
	assert_non_null(strstr(ws_health_eval_reason(slow.eval), "3 consecutive failures: latency "));
	assert_non_null(strstr(ws_health_eval_reason(slow.eval), " ms > max 300 ms"));
	assert_int_equal(ws_health_eval_verdict(hang.eval), WS_HEALTH_FAIL);
	char expect[256];
	snprintf(expect, sizeof(expect), "3 consecutive failures: GET %s: timed out after 100 ms", hang_url);
	assert_string_equal(ws_health_eval_reason(hang.eval), expect);
	ws_health_eval_free(ok.eval);
	ws_health_eval_free(slow.eval);
	ws_health_eval_free(hang.eval);
	collector_free(&ok);
	collector_free(&slow);
	collector_free(&hang);
	world_done(&w);
}

static void test_prober_refused_address_fails(void **state)
{
	(void)state;
	world w;
	world_init(&w, NULL);   /* loopback not allowed */
	collector c = { .stop_after = 2 };
	assert_non_null(ws_prober_add(w.p, testsrv_url(&srv, "/pass"), 20, 1000, collect_cb, &c));
	assert_true(run_until_pred(&w.t, reached, &c, 10000));
	assert_false(c.answered[0]);
	assert_non_null(strstr(c.error[0], "refused address 127.0.0.1 (loopback address not in the allow list)"));
	collector_free(&c);
	world_done(&w);
}

/* Removing a target with a probe in flight: no callback afterwards, and
 * every handle closes. */
static void test_prober_remove_in_flight(void **state)
{
	(void)state;
	world w;
	world_init(&w, "127.0.0.0/8");
	collector c = { 0 };
	ws_probe_target *t = ws_prober_add(w.p, testsrv_url(&srv, "/hang"), 5000, 5000, collect_cb, &c);
	run_for(&w.t, 100);
	ws_prober_remove(t);
	ws_prober_remove(t);   /* twice is harmless */
	run_for(&w.t, 100);
	assert_int_equal(c.n, 0);
	/* Closing with targets still probing. */
	ws_prober_add(w.p, testsrv_url(&srv, "/hang"), 5000, 5000, collect_cb, &c);
	ws_prober_add(w.p, testsrv_url(&srv, "/pass"), 5000, 5000, collect_cb, &c);
	run_for(&w.t, 50);
	world_done(&w);
}

typedef struct many {
	int finished;
} many;

static void many_cb(void *arg, ws_probe_target *t, const ws_health_sample *s)
{
	many *m = arg;
	assert_true(s->answered);
	assert_int_equal(s->status, 200);
	m->finished++;
	ws_prober_remove(t);
}

static bool many_done(const void *arg)
{
	return ((const many *)arg)->finished == 200;
}

static void test_prober_many_targets(void **state)
{
	(void)state;
	world w;
	world_init(&w, "127.0.0.0/8");
	many m = { 0 };
	for (int i = 0; i < 200; i++)
		assert_non_null(ws_prober_add(w.p, testsrv_url(&srv, "/pass"), 1000, 1000, many_cb, &m));
	assert_int_equal(ws_prober_count(w.p), 200);
	assert_true(run_until_pred(&w.t, many_done, &m, 30000));
	assert_int_equal(ws_prober_count(w.p), 0);
	world_done(&w);
}

typedef struct base {
	bool done;
	bool ok;
	uint64_t median;
	char *reason;
	size_t n_samples;
} base;

static void base_cb(void *arg, bool ok, uint64_t median_us, const char *reason, const json_t *ev)
{
	base *b = arg;
	b->done = true;
	b->ok = ok;
	b->median = median_us;
	b->reason = reason ? strdup(reason) : NULL;
	b->n_samples = json_array_size(json_object_get(ev, "samples"));
}

static void test_baseline(void **state)
{
	(void)state;
	world w;
	world_init(&w, "127.0.0.0/8");
	base b = { 0 };
	assert_non_null(ws_prober_baseline(w.p, testsrv_url(&srv, "/slow"), 3, 300, 300, base_cb, &b));
	assert_true(run_until(&w.t, &b.done, 10000));
	assert_true(b.ok);
	assert_true(b.median >= 150000);   /* the server waits 150 ms */
	assert_null(b.reason);
	assert_int_equal(b.n_samples, 3);
	base f = { 0 };
	const char *url = testsrv_url(&srv, "/status/503");
	assert_non_null(ws_prober_baseline(w.p, url, 3, 100, 1000, base_cb, &f));
	assert_true(run_until(&w.t, &f.done, 10000));
	assert_false(f.ok);
	char expect[256];
	snprintf(expect, sizeof(expect), "no successful probe of %s out of 3: HTTP 503", url);
	assert_string_equal(f.reason, expect);
	assert_int_equal(ws_prober_count(w.p), 0);
	free(f.reason);
	/* Bad arguments. */
	assert_null(ws_prober_baseline(w.p, url, 0, 10, 10, base_cb, &f));
	assert_null(ws_prober_add(w.p, url, 0, 10, collect_cb, &f));
	assert_null(ws_prober_add(w.p, NULL, 10, 10, collect_cb, &f));
	world_done(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_eval_rules),
		cmocka_unit_test(test_median),
		cmocka_unit_test(test_evidence),
		cmocka_unit_test(test_prober_samples_and_remove),
		cmocka_unit_test(test_prober_gate_pass_and_fail),
		cmocka_unit_test(test_prober_refused_address_fails),
		cmocka_unit_test(test_prober_remove_in_flight),
		cmocka_unit_test(test_prober_many_targets),
		cmocka_unit_test(test_baseline),
	};
	if (getenv("WS_TEST_FILTER"))
		cmocka_set_test_filter(getenv("WS_TEST_FILTER"));
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
