/*
 * test_clock.c - the clock's arithmetic with an injected wall clock, the
 * option parsers, and one real uv timer armed for a schedule instant.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "wavesched/clock.h"
#include "wstest.h"

#define SEC INT64_C(1000000)
/* 2026-12-01T00:00:00Z */
#define T0 (INT64_C(1796083200) * SEC)

static int64_t fake_wall(void *arg)
{
	return *(const int64_t *)arg;
}

static void test_real_time(void **state)
{
	(void)state;
	int64_t wall = T0 + 123456;
	ws_clock *c = ws_clock_new_wall(1, 0, fake_wall, &wall);
	assert_non_null(c);
	assert_int_equal(ws_clock_origin(c), T0 + 123456);   /* origin 0 = start */
	assert_int_equal(ws_clock_now(c), T0 + 123456);
	wall += 3600 * SEC;
	assert_int_equal(ws_clock_now(c), T0 + 123456 + 3600 * SEC);
	assert_int_equal(ws_clock_real_ms_until(c, wall + 2500 * 1000), 2500);
	assert_int_equal(ws_clock_real_ms(c, 90 * SEC), 90000);
	ws_clock_free(c);
}

/* schedule = origin + (wall - origin) * scale, for an origin in the past
 * shared by processes started at different times. */
static void test_scaled(void **state)
{
	(void)state;
	int64_t wall = T0 + 10 * SEC;
	ws_clock *c = ws_clock_new_wall(60, T0, fake_wall, &wall);
	assert_non_null(c);
	assert_true(ws_clock_scale(c) == 60);
	assert_int_equal(ws_clock_origin(c), T0);
	assert_int_equal(ws_clock_now(c), T0 + 600 * SEC);

	/* A second process started later with the same origin agrees. */
	int64_t wall2 = wall;
	ws_clock *c2 = ws_clock_new_wall(60, T0, fake_wall, &wall2);
	wall += 7 * SEC + 250000;
	wall2 = wall;
	assert_int_equal(ws_clock_now(c), T0 + (17 * SEC + 250000) * 60);
	assert_int_equal(ws_clock_now(c2), ws_clock_now(c));
	ws_clock_free(c2);

	/* An hour of schedule is a minute of real time, and so on. */
	int64_t now = ws_clock_now(c);
	assert_int_equal(ws_clock_real_ms_until(c, now + 3600 * SEC), 60000);
	assert_int_equal(ws_clock_real_ms(c, 3600 * SEC), 60000);
	assert_int_equal(ws_clock_real_ms(c, 60 * SEC), 1000);
	/* Rounded up: 1 µs of schedule still waits a whole millisecond. */
	assert_int_equal(ws_clock_real_ms_until(c, now + 1), 1);
	assert_int_equal(ws_clock_real_ms(c, 60001), 2);   /* 1000.0167 µs real */
	/* Instants that have passed, and the present, wait nothing. */
	assert_int_equal(ws_clock_real_ms_until(c, now), 0);
	assert_int_equal(ws_clock_real_ms_until(c, now - 5 * SEC), 0);
	assert_int_equal(ws_clock_real_ms_until(c, INT64_MIN), 0);
	assert_int_equal(ws_clock_real_ms(c, 0), 0);
	assert_int_equal(ws_clock_real_ms(c, -SEC), 0);
	ws_clock_free(c);

	/* A slowed clock (0 < scale < 1) stretches waits. */
	wall = T0;
	c = ws_clock_new_wall(0.5, T0, fake_wall, &wall);
	assert_non_null(c);
	wall += 10 * SEC;
	assert_int_equal(ws_clock_now(c), T0 + 5 * SEC);
	assert_int_equal(ws_clock_real_ms(c, SEC), 2000);
	ws_clock_free(c);
}

/* The largest scale a week-long plan is played at, with microseconds kept
 * exact, and no wrap-around for absurd inputs. */
static void test_extremes(void **state)
{
	(void)state;
	int64_t wall = T0;
	ws_clock *c = ws_clock_new_wall(1e6, T0, fake_wall, &wall);
	assert_non_null(c);
	wall += 604800;   /* 0.6048 s of wall time */
	assert_int_equal(ws_clock_now(c), T0 + 604800 * SEC);   /* one week */
	wall += 1;
	assert_int_equal(ws_clock_now(c), T0 + 604801 * SEC);
	assert_int_equal(ws_clock_real_ms_until(c, ws_clock_now(c) + 7 * 86400 * SEC), 605);
	assert_int_equal(ws_clock_real_ms_until(c, INT64_MAX), (uint64_t)((INT64_MAX - ws_clock_now(c)) / SEC / 1000 + 1));
	/* A far past origin with the largest scale saturates. */
	wall = INT64_C(253402300799) * SEC;
	ws_clock_free(c);
	c = ws_clock_new_wall(1e6, 1, fake_wall, &wall);
	assert_int_equal(ws_clock_now(c), INT64_MAX);
	ws_clock_free(c);

	/* Scales out of range and NaN are refused. */
	assert_null(ws_clock_new_wall(0, T0, fake_wall, &wall));
	assert_null(ws_clock_new_wall(-2, T0, fake_wall, &wall));
	assert_null(ws_clock_new_wall(1e6 + 1, T0, fake_wall, &wall));
	assert_null(ws_clock_new_wall(0.0 / 0.0, T0, fake_wall, &wall));
	assert_null(ws_clock_new_wall(2, T0, NULL, NULL));
	assert_null(ws_clock_new(0, 0));

	/* The production clock reads the real wall clock. */
	c = ws_clock_new(1, 0);
	assert_non_null(c);
	int64_t a = ws_clock_now(c);
	assert_true(a > T0 - 3 * 365 * 86400 * SEC);
	assert_true(ws_clock_now(c) >= a);
	ws_clock_free(c);
}

static void expect_diag(ws_diags *d, const char *want)
{
	char *got = wt_diags_text(d);
	assert_string_equal(got, want);
	free(got);
	ws_diags_free(d);
	ws_diags_init(d);
}

static void test_parse(void **state)
{
	(void)state;
	ws_diags d;
	ws_diags_init(&d);
	double s = 7;
	assert_int_equal(ws_clock_parse_scale("60", &s, &d), 0);
	assert_true(s == 60);
	assert_int_equal(ws_clock_parse_scale("0.25", &s, &d), 0);
	assert_true(s == 0.25);
	assert_int_equal(ws_clock_parse_scale("1e6", &s, &d), 0);
	assert_true(s == 1e6);
	assert_int_equal(d.len, 0);

	s = 7;
	assert_int_equal(ws_clock_parse_scale("fast", &s, &d), WS_EINVAL);
	expect_diag(&d, "--time-scale \"fast\" is not a number (e.g. 60 or 0.5)");
	assert_int_equal(ws_clock_parse_scale("60x", &s, &d), WS_EINVAL);
	expect_diag(&d, "--time-scale \"60x\" is not a number (e.g. 60 or 0.5)");
	assert_int_equal(ws_clock_parse_scale(" 60", &s, &d), WS_EINVAL);
	expect_diag(&d, "--time-scale \" 60\" is not a number (e.g. 60 or 0.5)");
	assert_int_equal(ws_clock_parse_scale("", &s, &d), WS_EINVAL);
	expect_diag(&d, "--time-scale: a number is required (e.g. 60)");
	const char *bad[] = { "0", "-1", "1000001", "nan", "inf", "1e400" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(ws_clock_parse_scale(bad[i], &s, &d), WS_EINVAL);
		char want[160];
		snprintf(want, sizeof(want), "--time-scale \"%s\" is out of range: it must be greater than 0 and at most 1000000", bad[i]);
		expect_diag(&d, want);
	}
	assert_true(s == 7);

	int64_t o = 5;
	assert_int_equal(ws_clock_parse_origin("2026-12-01T00:00:00Z", &o, &d), 0);
	assert_int_equal(o, T0);
	assert_int_equal(ws_clock_parse_origin("2026-12-01T01:30:00+01:30", &o, &d), 0);
	assert_int_equal(o, T0);
	assert_int_equal(d.len, 0);
	o = 5;
	assert_int_equal(ws_clock_parse_origin("2026-12-01", &o, &d), WS_EINVAL);
	expect_diag(&d, "--time-origin \"2026-12-01\" is not an RFC 3339 time such as 2026-12-01T00:00:00Z");
	assert_int_equal(ws_clock_parse_origin("2026-13-01T00:00:00Z", &o, &d), WS_EINVAL);
	expect_diag(&d, "--time-origin \"2026-13-01T00:00:00Z\" is not an RFC 3339 time such as 2026-12-01T00:00:00Z");
	assert_int_equal(ws_clock_parse_origin("1969-12-31T23:59:59Z", &o, &d), WS_EINVAL);
	expect_diag(&d, "--time-origin \"1969-12-31T23:59:59Z\" must be between 1970 and 9999");
	assert_int_equal(ws_clock_parse_origin(NULL, &o, &d), WS_EINVAL);
	expect_diag(&d, "--time-origin \"\" is not an RFC 3339 time such as 2026-12-01T00:00:00Z");
	assert_int_equal(o, 5);
	ws_diags_free(&d);
}

static void test_format(void **state)
{
	(void)state;
	char buf[WS_CLOCK_TEXT_MAX];
	ws_clock_format(T0 + 1, buf, sizeof(buf));
	assert_string_equal(buf, "2026-12-01T00:00:00.000001Z");
	ws_clock_format(-1, buf, sizeof(buf));
	assert_string_equal(buf, "1969-12-31T23:59:59.999999Z");
	ws_clock_format(INT64_MAX, buf, sizeof(buf));
	assert_string_equal(buf, "invalid-time");
}

typedef struct fired {
	uint64_t at_ns;
	int calls;
} fired;

static void timer_cb(uv_timer_t *t)
{
	fired *f = t->data;
	f->at_ns = uv_hrtime();
	f->calls++;
}

/* A schedule instant 30 s ahead at scale 1000 is a 30 ms wait: the timer
 * fires once and never before it (no upper bound: that would time the
 * machine, not the code). */
static void test_timer(void **state)
{
	(void)state;
	uv_loop_t loop;
	assert_int_equal(uv_loop_init(&loop), 0);
	ws_clock *c = ws_clock_new(1000, 0);
	uv_timer_t t;
	uv_timer_init(&loop, &t);
	fired f = { 0 };
	t.data = &f;
	uint64_t start = uv_hrtime();
	int64_t at = ws_clock_now(c) + 30 * SEC;
	assert_int_equal(ws_clock_timer_start(c, &t, at, timer_cb), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(f.calls, 1);
	assert_true(f.at_ns - start >= 30 * 1000000u);
	assert_true(ws_clock_now(c) >= at);

	/* An instant in the past fires on the next iteration. */
	f.calls = 0;
	assert_int_equal(ws_clock_timer_start(c, &t, at - 3600 * SEC, timer_cb), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(f.calls, 1);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	ws_clock_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_real_time),
		cmocka_unit_test(test_scaled),
		cmocka_unit_test(test_extremes),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_timer),
	};
	return cmocka_run_group_tests(tests, NULL, wt_teardown_ical);
}
