/*
 * test_metric_gate.c - the pure parts of the metric gate
 * (scheduler/metric_gate.c): templates fill only their three names, URLs
 * carry the query encoded, every wrong answer of Prometheus is refused with
 * what was wrong, NaN, infinities, empty results and out-of-bounds samples
 * fail, and `for` counts from the first of an unbroken run of ok results.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <unistd.h>
#include "metric_gate.h"
#include "wavesched/config.h"

#define US 1000000LL

static void test_query_expand(void **state)
{
	(void)state;
	char *q = metric_query_expand("sum(odoo_queue_backlog{tenant=\"{slug}\",cluster=\"{cluster}\"})"
				      " by (tenant) > {version} {other} {slug",
				      "acme", "eu-1", "17.0.4");
	assert_string_equal(q, "sum(odoo_queue_backlog{tenant=\"acme\",cluster=\"eu-1\"}) by (tenant)"
			       " > 17.0.4 {other} {slug");
	free(q);
	/* a value cannot end the PromQL literal it is put in */
	q = metric_query_expand("x{t=\"{slug}\"}", "a\"} or vector(1) #\\'", "c", "v");
	assert_string_equal(q, "x{t=\"a\\\"} or vector(1) #\\\\\\'\"}");
	free(q);
	q = metric_query_expand("up", NULL, NULL, NULL);
	assert_string_equal(q, "up");
	free(q);
	q = metric_query_expand("{slug}{slug}", "a", NULL, NULL);
	assert_string_equal(q, "aa");
	free(q);
}

static void test_query_url(void **state)
{
	(void)state;
	char *u = metric_query_url("http://127.0.0.1:9090//", "max(x{t=\"a b\"}) > 5 & 1");
	assert_string_equal(u, "http://127.0.0.1:9090/api/v1/query?query="
			       "max%28x%7Bt%3D%22a%20b%22%7D%29%20%3E%205%20%26%201");
	free(u);
	u = metric_query_url("https://prom.example/prometheus", "up");
	assert_string_equal(u, "https://prom.example/prometheus/api/v1/query?query=up");
	free(u);
}

static json_t *parse_ok(const char *body)
{
	char why[300] = "";
	json_t *s = NULL;
	if (metric_answer_parse(body, strlen(body), &s, why, sizeof(why)) != 0)
		fail_msg("refused: %s", why);
	return s;
}

static void expect_bad(const char *body, const char *why_prefix)
{
	char why[300] = "";
	json_t *s = (json_t *)0x1;
	assert_int_equal(metric_answer_parse(body, body ? strlen(body) : 0, &s, why, sizeof(why)), -1);
	if (strncmp(why, why_prefix, strlen(why_prefix)) != 0)
		fail_msg("expected \"%s...\", got \"%s\"", why_prefix, why);
	assert_ptr_equal(s, (json_t *)0x1);   /* untouched */
}

static void test_answer_parse(void **state)
{
	(void)state;
	json_t *s = parse_ok("{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":["
			     "{\"metric\":{\"tenant\":\"a\"},\"value\":[1796088600.5,\"700\"]},"
			     "{\"metric\":{},\"value\":[1796088600,\"NaN\"]}]}}");
	char *text = json_dumps(s, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(text, "[{\"metric\":{\"tenant\":\"a\"},\"value\":\"700\"},"
				  "{\"metric\":{},\"value\":\"NaN\"}]");
	free(text);
	json_decref(s);
	s = parse_ok("{\"status\":\"success\",\"data\":{\"resultType\":\"scalar\",\"result\":[1,\"+Inf\"]}}");
	text = json_dumps(s, JSON_COMPACT);
	assert_string_equal(text, "[{\"value\":\"+Inf\"}]");
	free(text);
	json_decref(s);
	s = parse_ok("{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[]}}");
	assert_int_equal(json_array_size(s), 0);
	json_decref(s);

	expect_bad("", "not JSON: ");
	expect_bad(NULL, "not JSON: ");
	expect_bad("<html>502 Bad Gateway</html>", "not JSON: ");
	expect_bad("{\"status\":\"success\",\"status\":\"error\"}", "not JSON: duplicate object key");
	expect_bad("[1]", "not a JSON object");
	expect_bad("{\"data\":{}}", "no status in the answer");
	expect_bad("{\"status\":\"error\",\"errorType\":\"bad_data\",\"error\":\"parse error at char 5\"}",
		   "status \"error\": bad_data: parse error at char 5");
	expect_bad("{\"status\":\"error\"}", "status \"error\": -: no error given");
	expect_bad("{\"status\":\"success\"}", "no data in the answer");
	expect_bad("{\"status\":\"success\",\"data\":{\"result\":[]}}", "no resultType in the answer");
	expect_bad("{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[]}}",
		   "resultType \"matrix\" (expected vector or scalar)");
	expect_bad("{\"status\":\"success\",\"data\":{\"resultType\":\"string\",\"result\":[1,\"x\"]}}",
		   "resultType \"string\" (expected vector or scalar)");
	expect_bad("{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":{}}}",
		   "the vector result is not an array");
	expect_bad("{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[5]}}",
		   "sample 1 is not {metric, value}");
	expect_bad("{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":["
		   "{\"metric\":{},\"value\":[1,\"2\"]},{\"metric\":{}}]}}",
		   "sample 2 has no [time, \"value\"]");
	expect_bad("{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":["
		   "{\"metric\":{},\"value\":[1,2]}]}}", "sample 1 has no [time, \"value\"]");
	expect_bad("{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":["
		   "{\"metric\":[],\"value\":[1,\"2\"]}]}}", "sample 1 is not {metric, value}");
	expect_bad("{\"status\":\"success\",\"data\":{\"resultType\":\"scalar\",\"result\":[1]}}",
		   "the scalar result is not [time, \"value\"]");
}

static void judge(const char *value, bool has_min, double min, bool has_max, double max,
		  const char *expect_why)
{
	json_t *s = json_pack("[{s:{s:s}, s:s}]", "metric", "tenant", "a", "value", value);
	char why[300] = "";
	bool ok = metric_samples_judge(s, has_min, min, has_max, max, why, sizeof(why));
	json_decref(s);
	if (!expect_why) {
		if (!ok)
			fail_msg("%s refused: %s", value, why);
		return;
	}
	assert_false(ok);
	assert_string_equal(why, expect_why);
}

static void test_judge_bounds(void **state)
{
	(void)state;
	judge("500", false, 0, true, 500, NULL);           /* bounds are inclusive */
	judge("0", true, 0, true, 500, NULL);
	judge("1e2", true, 0, true, 500, NULL);
	judge("500.5", false, 0, true, 500, "sample {tenant=\"a\"} = 500.5 is above max 500");
	judge("-1", true, 0, false, 0, "sample {tenant=\"a\"} = -1 is below min 0");
	judge("NaN", true, 0, true, 500, "sample {tenant=\"a\"} is NaN");
	judge("+Inf", true, 0, false, 0, "sample {tenant=\"a\"} is +Inf");
	judge("-Inf", false, 0, true, 5, "sample {tenant=\"a\"} is -Inf");
	judge("12abc", false, 0, true, 5, "sample {tenant=\"a\"} value \"12abc\" is not a number");
	judge("", false, 0, true, 5, "sample {tenant=\"a\"} value \"\" is not a number");
	char why[300];
	json_t *empty = json_array();
	assert_false(metric_samples_judge(empty, false, 0, true, 5, why, sizeof(why)));
	assert_string_equal(why, "empty result (no series matched)");
	json_decref(empty);
	/* every sample counts, not only the first */
	json_t *two = json_pack("[{s:s}, {s:{s:s}, s:s}]", "value", "1", "metric", "tenant", "b",
				"value", "9");
	assert_false(metric_samples_judge(two, false, 0, true, 5, why, sizeof(why)));
	assert_string_equal(why, "sample {tenant=\"b\"} = 9 is above max 5");
	json_decref(two);
	json_t *scalar = json_pack("[{s:s}]", "value", "NaN");
	assert_false(metric_samples_judge(scalar, false, 0, true, 5, why, sizeof(why)));
	assert_string_equal(why, "sample (scalar) is NaN");
	json_decref(scalar);
}

/* `for`: ok_since is the first of an unbroken run of ok results. */
struct look { metric_cache *c; int64_t dep; };

static const em_metric_status *look(void *arg, const char *name)
{
	struct look *l = arg;
	return metric_cache_get(l->c, l->dep, name);
}

static void test_cache_and_for(void **state)
{
	(void)state;
	metric_cache *c = NULL;
	json_t *metrics = json_pack("[{s:s, s:s, s:i, s:i}, {s:s, s:s, s:i, s:i}]",
				    "name", "backlog", "query", "q1", "for_s", 120, "max", 500,
				    "name", "locks", "query", "q2", "for_s", 0, "max", 3);
	struct look l = { NULL, 5 };
	char why[300];
	int64_t t0 = 1000 * US;
	assert_int_equal(metric_gate_judge(metrics, look, &l, t0, why, sizeof(why)), -1);
	assert_string_equal(why, "metric backlog: not evaluated yet");

	json_t *ev = json_pack("{s:s}", "query", "q1");
	assert_true(metric_cache_put(&c, 5, "backlog", t0, false, "metric backlog (query q1): high", ev, 0));
	assert_true(metric_cache_put(&c, 5, "locks", t0, true, NULL, NULL, 0));
	l.c = c;
	assert_int_equal(metric_gate_judge(metrics, look, &l, t0, why, sizeof(why)), 0);
	assert_string_equal(why, "metric backlog (query q1): high");
	const em_metric_status *st = metric_cache_get(c, 5, "backlog");
	assert_false(st->ok);
	assert_true(st->ok_since == EM_NONE);
	assert_null(metric_cache_get(c, 6, "backlog"));
	assert_null(metric_cache_get(c, 5, "other"));

	/* ok from t0+30s: held until it has been so for 120 s */
	assert_true(metric_cache_put(&c, 5, "backlog", t0 + 30 * US, true, NULL, ev, 0));
	assert_true(metric_cache_put(&c, 5, "backlog", t0 + 60 * US, true, NULL, ev, 0));
	st = metric_cache_get(c, 5, "backlog");
	assert_int_equal(st->ok_since, t0 + 30 * US);
	assert_null(st->reason);
	assert_int_equal(metric_gate_judge(metrics, look, &l, t0 + 60 * US, why, sizeof(why)), 0);
	assert_string_equal(why, "metric backlog: within bounds for 30s of the 2m it must hold");
	assert_int_equal(metric_gate_judge(metrics, look, &l, t0 + 150 * US, why, sizeof(why)), 1);
	/* one bad result breaks the run: `for` counts again from the next ok */
	assert_true(metric_cache_put(&c, 5, "backlog", t0 + 160 * US, false, "down", ev, 0));
	assert_true(metric_cache_put(&c, 5, "backlog", t0 + 190 * US, true, NULL, ev, 0));
	assert_int_equal(metric_cache_get(c, 5, "backlog")->ok_since, t0 + 190 * US);
	assert_int_equal(metric_gate_judge(metrics, look, &l, t0 + 250 * US, why, sizeof(why)), 0);
	assert_int_equal(metric_gate_judge(metrics, look, &l, t0 + 310 * US, why, sizeof(why)), 1);
	/* the second check failing holds as well */
	assert_true(metric_cache_put(&c, 5, "locks", t0 + 320 * US, false, "metric locks: NaN", NULL, 0));
	assert_int_equal(metric_gate_judge(metrics, look, &l, t0 + 320 * US, why, sizeof(why)), 0);
	assert_string_equal(why, "metric locks: NaN");

	/* a gap longer than allowed (nobody watched the metric): `for` starts
	 * again, however good the answers before it were */
	assert_true(metric_cache_put(&c, 5, "backlog", t0 + 3600 * US, true, NULL, ev, 61 * US));
	assert_int_equal(metric_cache_get(c, 5, "backlog")->ok_since, t0 + 3600 * US);
	assert_true(metric_cache_put(&c, 5, "backlog", t0 + 3660 * US, true, NULL, ev, 61 * US));
	assert_int_equal(metric_cache_get(c, 5, "backlog")->ok_since, t0 + 3600 * US);
	/* the evidence is a copy, with the times of the result */
	json_object_set_new(ev, "query", json_string("changed"));
	const json_t *e = metric_cache_evidence(c, 5, "backlog");
	assert_string_equal(json_string_value(json_object_get(e, "query")), "q1");
	assert_true(json_is_true(json_object_get(e, "ok")));
	assert_non_null(json_string_value(json_object_get(e, "ok_since")));
	e = metric_cache_evidence(c, 5, "locks");
	assert_string_equal(json_string_value(json_object_get(e, "reason")), "metric locks: NaN");
	assert_true(json_is_null(json_object_get(e, "ok_since")));

	assert_null(metric_cache_recorded(c, 5));
	metric_cache_set_recorded(c, 5, "wait");
	metric_cache_set_recorded(c, 6, "pass");
	metric_cache_set_recorded(c, 5, "pass");
	assert_string_equal(metric_cache_recorded(c, 5), "pass");
	assert_string_equal(metric_cache_recorded(c, 6), "pass");
	json_decref(ev);
	json_decref(metrics);
	metric_cache_free(c);
	metric_cache_free(NULL);
}

/* prometheus_url and metric_interval: from the file, the environment
 * winning; a URL that is not http(s) or an interval that is not a positive
 * duration is refused at start. */
static void test_config(void **state)
{
	(void)state;
	char path[] = "/tmp/ws-metric-config-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *text = "prometheus_url: http://prom.example:9090\nmetric_interval: 2m\n";
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	unsetenv("WAVESCHED_PROMETHEUS_URL");
	unsetenv("WAVESCHED_METRIC_INTERVAL");
	ws_config c;
	ws_diags d;
	ws_diags_init(&d);
	assert_int_equal(ws_config_load(&c, NULL, &d), 0);
	assert_null(c.prometheus_url);
	assert_int_equal(c.metric_interval_s, 30);
	ws_config_free(&c);
	assert_int_equal(ws_config_load(&c, path, &d), 0);
	assert_string_equal(c.prometheus_url, "http://prom.example:9090");
	assert_int_equal(c.metric_interval_s, 120);
	ws_config_free(&c);
	setenv("WAVESCHED_PROMETHEUS_URL", "https://p/", 1);
	assert_int_equal(ws_config_load(&c, path, &d), 0);
	assert_string_equal(c.prometheus_url, "https://p/");
	ws_config_free(&c);
	assert_int_equal(d.len, 0);
	setenv("WAVESCHED_PROMETHEUS_URL", "prom:9090", 1);
	setenv("WAVESCHED_METRIC_INTERVAL", "0s", 1);
	assert_int_equal(ws_config_load(&c, NULL, &d), WS_EINVAL);
	assert_int_equal(d.len, 2);
	assert_string_equal(d.items[0].message,
			    "invalid value \"prom:9090\" in environment variable WAVESCHED_PROMETHEUS_URL");
	assert_string_equal(d.items[1].message,
			    "invalid value \"0s\" in environment variable WAVESCHED_METRIC_INTERVAL");
	ws_config_free(&c);
	ws_diags_free(&d);
	unsetenv("WAVESCHED_PROMETHEUS_URL");
	unsetenv("WAVESCHED_METRIC_INTERVAL");
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_query_expand),
		cmocka_unit_test(test_query_url),
		cmocka_unit_test(test_answer_parse),
		cmocka_unit_test(test_judge_bounds),
		cmocka_unit_test(test_cache_and_for),
		cmocka_unit_test(test_config),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
