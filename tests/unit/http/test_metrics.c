/*
 * test_metrics.c - exact Prometheus text for counters, gauges and
 * histograms, label escaping, ordering, and the registry's refusals.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "wavesched/log.h"
#include "wavesched/metrics.h"

static void assert_render(const ws_metrics *m, const char *want)
{
	size_t len = 0;
	char *got = ws_metrics_render(m, &len);
	assert_non_null(got);
	assert_string_equal(got, want);
	assert_int_equal(len, strlen(want));
	free(got);
}

static void test_empty(void **state)
{
	(void)state;
	ws_metrics *m = ws_metrics_new();
	assert_render(m, "");
	ws_metrics_free(m);
}

static void test_counter_and_gauge(void **state)
{
	(void)state;
	ws_metrics *m = ws_metrics_new();
	const char *help = "HTTP requests served.";
	ws_metrics_counter_add(m, "ws_http_requests_total", help,
			       "route=\"/v1/fleet\",status=\"200\"", 1);
	ws_metrics_counter_add(m, "ws_http_requests_total", help,
			       "route=\"/v1/fleet\",status=\"200\"", 2);
	ws_metrics_counter_add(m, "ws_http_requests_total", help,
			       "route=\"/healthz\",status=\"200\"", 1);
	ws_metrics_counter_add(m, "ws_http_requests_total", help,
			       "route=\"/healthz\",status=\"200\"", -5);    /* refused */
	ws_metrics_gauge_set(m, "ws_connections", "Open connections.\nSecond line \\ here", "", 3);
	ws_metrics_gauge_set(m, "ws_connections", "ignored: the first help wins", "", 2.5);
	ws_metrics_gauge_set(m, "ws_big", "Big and small.", "k=\"a\"", 1e21);
	ws_metrics_gauge_set(m, "ws_big", "Big and small.", "k=\"b\"", 0.1);
	ws_metrics_gauge_set(m, "ws_big", "Big and small.", "k=\"c\"", -INFINITY);
	/* A counter name used as a gauge, and invalid names, are ignored. */
	ws_metrics_gauge_set(m, "ws_http_requests_total", "x", "", 1);
	ws_metrics_counter_add(m, "9bad", "x", "", 1);
	ws_metrics_counter_add(m, "bad-name", "x", "", 1);
	ws_metrics_counter_add(m, "ws_x", "x", "a=\"1\"}\n", 1);   /* label string breaks lines */
	ws_metrics_counter_add(m, "ws_x", "x", "a=\"1\"} b", 1);    /* a brace outside a value */
	ws_metrics_counter_add(m, "ws_x", "x", "a=\"1", 1);          /* an open quote */
	/* Braces inside a value are text (route templates). */
	ws_metrics_counter_add(m, "ws_http_requests_total", "HTTP requests served.",
			       "route=\"/v1/tenants/{slug}\",status=\"404\"", 1);

	assert_render(m,
		      "# HELP ws_big Big and small.\n"
		      "# TYPE ws_big gauge\n"
		      "ws_big{k=\"a\"} 1e+21\n"
		      "ws_big{k=\"b\"} 0.1\n"
		      "ws_big{k=\"c\"} -Inf\n"
		      "# HELP ws_connections Open connections.\\nSecond line \\\\ here\n"
		      "# TYPE ws_connections gauge\n"
		      "ws_connections 2.5\n"
		      "# HELP ws_http_requests_total HTTP requests served.\n"
		      "# TYPE ws_http_requests_total counter\n"
		      "ws_http_requests_total{route=\"/healthz\",status=\"200\"} 1\n"
		      "ws_http_requests_total{route=\"/v1/fleet\",status=\"200\"} 3\n"
		      "ws_http_requests_total{route=\"/v1/tenants/{slug}\",status=\"404\"} 1\n");
	ws_metrics_free(m);
}

static void test_histogram(void **state)
{
	(void)state;
	ws_metrics *m = ws_metrics_new();
	const double b[] = { 0.1, 0.5, 1 };
	const double other[] = { 7, 8 };
	const char *name = "ws_http_request_duration_seconds";
	const char *help = "Time to answer a request.";
	ws_metrics_histogram_observe(m, name, help, "route=\"/x\"", b, 3, 0.25);
	ws_metrics_histogram_observe(m, name, help, "route=\"/x\"", b, 3, 0.5);
	ws_metrics_histogram_observe(m, name, help, "route=\"/x\"", b, 3, 0.5);
	ws_metrics_histogram_observe(m, name, help, "route=\"/x\"", b, 3, 2);
	/* Later bucket arguments are ignored: the first observation fixed them. */
	ws_metrics_histogram_observe(m, name, help, "", other, 2, 0.0625);
	/* Unsorted buckets on a new family are refused. */
	const double bad[] = { 1, 0.5 };
	ws_metrics_histogram_observe(m, "ws_bad_seconds", "x", "", bad, 2, 1);

	assert_render(m,
		      "# HELP ws_http_request_duration_seconds Time to answer a request.\n"
		      "# TYPE ws_http_request_duration_seconds histogram\n"
		      "ws_http_request_duration_seconds_bucket{le=\"0.1\"} 1\n"
		      "ws_http_request_duration_seconds_bucket{le=\"0.5\"} 1\n"
		      "ws_http_request_duration_seconds_bucket{le=\"1\"} 1\n"
		      "ws_http_request_duration_seconds_bucket{le=\"+Inf\"} 1\n"
		      "ws_http_request_duration_seconds_sum 0.0625\n"
		      "ws_http_request_duration_seconds_count 1\n"
		      "ws_http_request_duration_seconds_bucket{route=\"/x\",le=\"0.1\"} 0\n"
		      "ws_http_request_duration_seconds_bucket{route=\"/x\",le=\"0.5\"} 3\n"
		      "ws_http_request_duration_seconds_bucket{route=\"/x\",le=\"1\"} 3\n"
		      "ws_http_request_duration_seconds_bucket{route=\"/x\",le=\"+Inf\"} 4\n"
		      "ws_http_request_duration_seconds_sum{route=\"/x\"} 3.25\n"
		      "ws_http_request_duration_seconds_count{route=\"/x\"} 4\n");
	ws_metrics_free(m);
}

static void test_escape(void **state)
{
	(void)state;
	char buf[64];
	ws_metrics_escape("a\"b\\c\nd", buf, sizeof(buf));
	assert_string_equal(buf, "a\\\"b\\\\c\\nd");
	/* Truncation never splits an escape sequence. */
	ws_metrics_escape("ab\"cd", buf, 4);
	assert_string_equal(buf, "ab");
	ws_metrics_escape("abc", buf, 1);
	assert_string_equal(buf, "");

	ws_metrics *m = ws_metrics_new();
	char labels[128], esc[64];
	ws_metrics_escape("acme \"prod\"\\eu\n", esc, sizeof(esc));
	snprintf(labels, sizeof(labels), "tenant=\"%s\"", esc);
	ws_metrics_counter_add(m, "ws_tenant_events_total", "Events.", labels, 1.5);
	assert_render(m,
		      "# HELP ws_tenant_events_total Events.\n"
		      "# TYPE ws_tenant_events_total counter\n"
		      "ws_tenant_events_total{tenant=\"acme \\\"prod\\\"\\\\eu\\n\"} 1.5\n");
	ws_metrics_free(m);
}

int main(void)
{
	ws_log_min_level = WS_LOG_OFF;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_counter_and_gauge),
		cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_escape),
	};
	return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
