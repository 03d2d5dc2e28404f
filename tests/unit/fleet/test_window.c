/*
 * test_window.c - occurrences (window_expand, window_next), daylight-saving
 * edges per RFC 5545 3.3.5, anchors, COUNT/UNTIL, RFC 3339 times, zones.
 *
 * America/Chicago: CST is UTC-6, CDT UTC-5; in 2026 clocks go 02:00 -> 03:00
 * on Sunday 8 March and 02:00 -> 01:00 on Sunday 1 November.
 */
#include <time.h>
#include <libical/ical.h>
#include "fleet_test.h"
/* White-box: the per-parse cache of libical answers. */
#include "../../../tenants/fleet_internal.h"

#define MAX_IV 4096

typedef struct collected {
	ws_interval iv[MAX_IV];
	size_t n;
	size_t stop_after;   /* 0: never stop */
} collected;

static int collect_cb(void *arg, const ws_interval *iv)
{
	collected *c = arg;
	assert_true(c->n < MAX_IV);
	c->iv[c->n++] = *iv;
	return c->stop_after && c->n >= c->stop_after;
}

static ws_window recurring(const char *rrule, int start_minute, int64_t duration_s,
			   const char *tz, const char *anchor)
{
	ws_window w = { 0 };
	w.rrule = rrule;
	w.start_minute = start_minute;
	w.duration_s = duration_s;
	w.timezone = tz;
	w.anchor = anchor;
	return w;
}

/* Occurrences as "START END OFFSET" lines, times in UTC. */
static char *expand_text(const ws_window *w, const char *zone, const char *from, const char *until)
{
	collected *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	assert_int_equal(window_expand(w, zone, ft_t(from), ft_t(until), collect_cb, c), 0);
	char *out = calloc(1, c->n * 64 + 1);
	assert_non_null(out);
	for (size_t i = 0; i < c->n; i++) {
		char a[40], b[40];
		ws_time_format(c->iv[i].start, 0, true, a, sizeof(a));
		ws_time_format(c->iv[i].end, 0, true, b, sizeof(b));
		sprintf(out + strlen(out), "%s%s %s %d", i ? "\n" : "", a, b, c->iv[i].utc_offset);
	}
	free(c);
	return out;
}

static void expect_expand(const ws_window *w, const char *zone, const char *from,
			  const char *until, const char *expected)
{
	char *got = expand_text(w, zone, from, until);
	assert_string_equal(got, expected);
	free(got);
}

static void test_weekly_across_dst(void **state)
{
	(void)state;
	/* Sunday 01:00 for 4h: 01:00 exists on both change days; on 1 November
	 * it exists twice and the first (CDT) is meant.  The end is exactly
	 * four hours later whatever the wall clock says. */
	ws_window w = recurring("FREQ=WEEKLY;BYDAY=SU", 60, 4 * 3600, NULL, NULL);
	expect_expand(&w, "America/Chicago", "2026-03-01T00:00:00Z", "2026-03-16T00:00:00Z",
		"2026-03-01T07:00:00Z 2026-03-01T11:00:00Z -21600\n"
		"2026-03-08T07:00:00Z 2026-03-08T11:00:00Z -21600\n"
		"2026-03-15T06:00:00Z 2026-03-15T10:00:00Z -18000");
	expect_expand(&w, "America/Chicago", "2026-10-25T00:00:00Z", "2026-11-09T00:00:00Z",
		"2026-10-25T06:00:00Z 2026-10-25T10:00:00Z -18000\n"
		"2026-11-01T06:00:00Z 2026-11-01T10:00:00Z -18000\n"
		"2026-11-08T07:00:00Z 2026-11-08T11:00:00Z -21600");
	/* Saturday 02:00 stays at 02:00 local on either side of each change. */
	w = recurring("FREQ=WEEKLY;BYDAY=SA", 120, 3600, "America/Chicago", NULL);
	expect_expand(&w, "UTC", "2026-03-07T00:00:00Z", "2026-03-15T00:00:00Z",
		"2026-03-07T08:00:00Z 2026-03-07T09:00:00Z -21600\n"
		"2026-03-14T07:00:00Z 2026-03-14T08:00:00Z -18000");
	expect_expand(&w, "UTC", "2026-10-31T00:00:00Z", "2026-11-08T00:00:00Z",
		"2026-10-31T07:00:00Z 2026-10-31T08:00:00Z -18000\n"
		"2026-11-07T08:00:00Z 2026-11-07T09:00:00Z -21600");
	/* Sunday 02:00 does not exist on 8 March: read with the offset before
	 * the gap (CST), i.e. 03:00 CDT; a week later it is 02:00 again. */
	w = recurring("FREQ=WEEKLY;BYDAY=SU", 120, 3600, NULL, NULL);
	expect_expand(&w, "America/Chicago", "2026-03-01T00:00:00Z", "2026-03-16T00:00:00Z",
		"2026-03-01T08:00:00Z 2026-03-01T09:00:00Z -21600\n"
		"2026-03-08T08:00:00Z 2026-03-08T09:00:00Z -18000\n"
		"2026-03-15T07:00:00Z 2026-03-15T08:00:00Z -18000");
}

static void test_daily_gap_and_overlap(void **state)
{
	(void)state;
	/* 02:30 on 8 March -> 03:30 CDT = 08:30Z; the next day is 02:30 CDT
	 * again (libical's own zoned iteration would stay at 03:30). */
	ws_window w = recurring("FREQ=DAILY", 150, 1800, "America/Chicago", NULL);
	expect_expand(&w, NULL, "2026-03-07T00:00:00Z", "2026-03-10T00:00:00Z",
		"2026-03-07T08:30:00Z 2026-03-07T09:00:00Z -21600\n"
		"2026-03-08T08:30:00Z 2026-03-08T09:00:00Z -18000\n"
		"2026-03-09T07:30:00Z 2026-03-09T08:00:00Z -18000");
	/* 01:30 on 1 November happens twice: the first one, CDT = 06:30Z. */
	w = recurring("FREQ=DAILY", 90, 1800, "America/Chicago", NULL);
	expect_expand(&w, NULL, "2026-10-31T00:00:00Z", "2026-11-03T00:00:00Z",
		"2026-10-31T06:30:00Z 2026-10-31T07:00:00Z -18000\n"
		"2026-11-01T06:30:00Z 2026-11-01T07:00:00Z -18000\n"
		"2026-11-02T07:30:00Z 2026-11-02T08:00:00Z -21600");
	/* The southern hemisphere the other way round: Sydney springs forward
	 * 02:00 -> 03:00 on Sunday 4 October 2026 (AEST +10 -> AEDT +11). */
	w = recurring("FREQ=DAILY", 150, 600, "Australia/Sydney", NULL);
	expect_expand(&w, NULL, "2026-10-02T12:00:00Z", "2026-10-04T17:00:00Z",
		"2026-10-02T16:30:00Z 2026-10-02T16:40:00Z 36000\n"
		"2026-10-03T16:30:00Z 2026-10-03T16:40:00Z 39600\n"
		"2026-10-04T15:30:00Z 2026-10-04T15:40:00Z 39600");
}

static void test_anchor_interval(void **state)
{
	(void)state;
	/* Every other Saturday from the anchor. */
	ws_window w = recurring("FREQ=WEEKLY;INTERVAL=2;BYDAY=SA", 120, 4 * 3600,
				"America/Chicago", "2026-01-03");
	expect_expand(&w, NULL, "2026-01-01T00:00:00Z", "2026-02-07T00:00:00Z",
		"2026-01-03T08:00:00Z 2026-01-03T12:00:00Z -21600\n"
		"2026-01-17T08:00:00Z 2026-01-17T12:00:00Z -21600\n"
		"2026-01-31T08:00:00Z 2026-01-31T12:00:00Z -21600");
	/* Far from the anchor the phase holds: 6 June is 22 weeks later, 13
	 * June is the off week. */
	expect_expand(&w, NULL, "2026-06-01T00:00:00Z", "2026-06-21T00:00:00Z",
		"2026-06-06T07:00:00Z 2026-06-06T11:00:00Z -18000\n"
		"2026-06-20T07:00:00Z 2026-06-20T11:00:00Z -18000");
	/* Nothing before the anchor. */
	expect_expand(&w, NULL, "2025-12-01T00:00:00Z", "2026-01-03T00:00:00Z", "");
}

static void test_count(void **state)
{
	(void)state;
	ws_window w = recurring("FREQ=DAILY;COUNT=3", 0, 3600, "UTC", "2026-05-01");
	expect_expand(&w, NULL, "2026-04-01T00:00:00Z", "2026-06-01T00:00:00Z",
		"2026-05-01T00:00:00Z 2026-05-01T01:00:00Z 0\n"
		"2026-05-02T00:00:00Z 2026-05-02T01:00:00Z 0\n"
		"2026-05-03T00:00:00Z 2026-05-03T01:00:00Z 0");
	expect_expand(&w, NULL, "2026-05-02T12:00:00Z", "2027-01-01T00:00:00Z",
		"2026-05-03T00:00:00Z 2026-05-03T01:00:00Z 0");
	expect_expand(&w, NULL, "2026-05-04T00:00:00Z", "2030-01-01T00:00:00Z", "");
	/* COUNT counts from the anchor, which is not itself a Monday. */
	w = recurring("FREQ=WEEKLY;COUNT=2;BYDAY=MO", 60, 3600, "Europe/Berlin", "2026-01-01");
	expect_expand(&w, NULL, "2025-01-01T00:00:00Z", "2027-01-01T00:00:00Z",
		"2026-01-05T00:00:00Z 2026-01-05T01:00:00Z 3600\n"
		"2026-01-12T00:00:00Z 2026-01-12T01:00:00Z 3600");
}

static void test_until(void **state)
{
	(void)state;
	/* UNTIL in UTC is compared as an instant: 02:30 CDT on 10 March is
	 * 07:30Z, inside an UNTIL of 07:30Z and outside one of 07:29:59Z. */
	ws_window w = recurring("FREQ=DAILY;UNTIL=20260310T073000Z", 150, 60, "America/Chicago", "2026-03-08");
	expect_expand(&w, NULL, "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z",
		"2026-03-08T08:30:00Z 2026-03-08T08:31:00Z -18000\n"
		"2026-03-09T07:30:00Z 2026-03-09T07:31:00Z -18000\n"
		"2026-03-10T07:30:00Z 2026-03-10T07:31:00Z -18000");
	w.rrule = "FREQ=DAILY;UNTIL=20260310T072959Z";
	expect_expand(&w, NULL, "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z",
		"2026-03-08T08:30:00Z 2026-03-08T08:31:00Z -18000\n"
		"2026-03-09T07:30:00Z 2026-03-09T07:31:00Z -18000");
	/* A DATE UNTIL includes that day. */
	w.rrule = "FREQ=DAILY;UNTIL=20260309";
	expect_expand(&w, NULL, "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z",
		"2026-03-08T08:30:00Z 2026-03-08T08:31:00Z -18000\n"
		"2026-03-09T07:30:00Z 2026-03-09T07:31:00Z -18000");
}

static void test_one_off(void **state)
{
	(void)state;
	ws_window w = { 0 };
	w.one_off = true;
	w.from_utc = ft_t("2026-12-24T00:00:00Z");
	w.to_utc = ft_t("2026-12-27T00:00:00Z");
	expect_expand(&w, "America/Chicago", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z",
		"2026-12-24T00:00:00Z 2026-12-27T00:00:00Z 0");
	/* In progress at `from`, or starting right before `until`. */
	expect_expand(&w, NULL, "2026-12-26T23:59:59Z", "2027-01-01T00:00:00Z",
		"2026-12-24T00:00:00Z 2026-12-27T00:00:00Z 0");
	expect_expand(&w, NULL, "2026-12-01T00:00:00Z", "2026-12-24T00:00:01Z",
		"2026-12-24T00:00:00Z 2026-12-27T00:00:00Z 0");
	expect_expand(&w, NULL, "2026-12-27T00:00:00Z", "2027-01-01T00:00:00Z", "");
	expect_expand(&w, NULL, "2026-12-01T00:00:00Z", "2026-12-24T00:00:00Z", "");
	ws_interval iv;
	assert_int_equal(window_next(&w, NULL, ft_t("2026-01-01T00:00:00Z"), ft_t("2027-01-01T00:00:00Z"), &iv), 0);
	assert_int_equal(iv.start, w.from_utc);
	assert_int_equal(iv.end, w.to_utc);
	assert_int_equal(iv.utc_offset, 0);
}

static void test_window_next(void **state)
{
	(void)state;
	ws_window w = recurring("FREQ=DAILY", 60, 2 * 3600, NULL, NULL);
	ws_interval iv = { 0 };
	assert_int_equal(window_next(&w, "America/New_York", ft_t("2026-07-01T12:00:00Z"),
				     ft_t("2026-08-01T00:00:00Z"), &iv), 0);
	assert_int_equal(iv.start, ft_t("2026-07-02T05:00:00Z"));
	assert_int_equal(iv.end, ft_t("2026-07-02T07:00:00Z"));
	assert_int_equal(iv.utc_offset, -4 * 3600);
	/* An occurrence in progress at `from` is the next one. */
	assert_int_equal(window_next(&w, "America/New_York", ft_t("2026-07-02T06:59:59Z"),
				     ft_t("2026-08-01T00:00:00Z"), &iv), 0);
	assert_int_equal(iv.start, ft_t("2026-07-02T05:00:00Z"));
	/* ... but not one that ends exactly at `from`. */
	assert_int_equal(window_next(&w, "America/New_York", ft_t("2026-07-02T07:00:00Z"),
				     ft_t("2026-08-01T00:00:00Z"), &iv), 0);
	assert_int_equal(iv.start, ft_t("2026-07-03T05:00:00Z"));
	/* None starts before `until`. */
	iv.start = 42;
	assert_int_equal(window_next(&w, "America/New_York", ft_t("2026-07-02T07:00:00Z"),
				     ft_t("2026-07-03T05:00:00Z"), &iv), 1);
	assert_int_equal(iv.start, 42);
	/* Broken windows are refused, not expanded. */
	ws_window bad = recurring("FREQ=SOMETIMES", 60, 3600, NULL, NULL);
	assert_int_equal(window_next(&bad, NULL, 0, 1, &iv), WS_EINVAL);
	bad = recurring("FREQ=DAILY", 60, 3600, "Mars/Olympus", NULL);
	assert_int_equal(window_next(&bad, NULL, 0, 1, &iv), WS_EINVAL);
	bad = recurring("FREQ=DAILY", 60, 0, NULL, NULL);
	assert_int_equal(window_next(&bad, NULL, 0, 1, &iv), WS_EINVAL);
}

static int stop_cb(void *arg, const ws_interval *iv)
{
	(void)iv;
	return ++*(int *)arg == 2;
}

static void test_callback_stops(void **state)
{
	(void)state;
	ws_window w = recurring("FREQ=DAILY", 0, 60, "UTC", NULL);
	int calls = 0;
	assert_int_equal(window_expand(&w, NULL, ft_t("2026-01-01T00:00:00Z"),
				       ft_t("2027-01-01T00:00:00Z"), stop_cb, &calls), 0);
	assert_int_equal(calls, 2);
}

/*
 * Skipping ahead (set_start, or moving DTSTART by whole periods) must give
 * exactly the occurrences that iterating from the anchor gives.
 */
static void test_skip_matches_full_iteration(void **state)
{
	(void)state;
	static const char *const rules[] = {
		"FREQ=DAILY",
		"FREQ=DAILY;INTERVAL=3",
		"FREQ=DAILY;INTERVAL=2;BYDAY=MO,TU,WE",
		"FREQ=WEEKLY;BYDAY=SA,SU",
		"FREQ=WEEKLY;INTERVAL=2;BYDAY=SA",
		"FREQ=WEEKLY;INTERVAL=2;BYDAY=SU",
		"FREQ=WEEKLY;INTERVAL=3;BYDAY=MO,FR;WKST=SU",
		"FREQ=MONTHLY;BYMONTHDAY=-3,-2,-1",
		"FREQ=MONTHLY;INTERVAL=2;BYMONTHDAY=15",
		"FREQ=MONTHLY;INTERVAL=5;BYDAY=1MO",
		"FREQ=MONTHLY;INTERVAL=2",
		"FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
		"FREQ=YEARLY;INTERVAL=2;BYMONTH=6;BYMONTHDAY=1",
		"FREQ=YEARLY;BYMONTH=11;BYDAY=1SU",
		"FREQ=DAILY;UNTIL=20270301T000000Z",
	};
	static const char *const anchors[] = { "2020-01-31", "2021-02-28", "2020-01-01" };
	static const char *const froms[] = {
		"2023-03-12T07:59:00Z", "2024-02-29T12:00:00Z", "2025-11-02T06:30:00Z",
		"2026-07-15T00:00:00Z", "2027-12-31T23:00:00Z",
	};
	collected *full = calloc(1, sizeof(*full));
	collected *part = calloc(1, sizeof(*part));
	assert_non_null(full);
	assert_non_null(part);
	for (size_t r = 0; r < sizeof(rules) / sizeof(rules[0]); r++) {
		for (size_t a = 0; a < sizeof(anchors) / sizeof(anchors[0]); a++) {
			ws_window w = recurring(rules[r], 150, 5400, "America/Chicago", anchors[a]);
			int64_t until = ft_t("2028-06-01T00:00:00Z");
			full->n = 0;
			assert_int_equal(window_expand(&w, NULL, ft_t("2019-01-01T00:00:00Z"), until,
						       collect_cb, full), 0);
			assert_true(full->n > 0);
			for (size_t f = 0; f < sizeof(froms) / sizeof(froms[0]); f++) {
				int64_t from = ft_t(froms[f]);
				part->n = 0;
				assert_int_equal(window_expand(&w, NULL, from, until, collect_cb, part), 0);
				size_t k = 0;
				while (k < full->n && full->iv[k].end <= from)
					k++;
				if (part->n != full->n - k)
					print_error("rule %s anchor %s from %s: %zu vs %zu\n", rules[r],
						    anchors[a], froms[f], part->n, full->n - k);
				assert_int_equal(part->n, full->n - k);
				for (size_t i = 0; i < part->n; i++) {
					assert_int_equal(part->iv[i].start, full->iv[k + i].start);
					assert_int_equal(part->iv[i].end, full->iv[k + i].end);
				}
			}
		}
	}
	free(full);
	free(part);
}

static void test_skip_is_fast(void **state)
{
	(void)state;
	/* From the default anchor (2000) to 2027 a daily rule has ~10,000
	 * occurrences; looking up the next one must not walk them all. */
	ws_window w = recurring("FREQ=DAILY", 60, 3600, "Europe/Berlin", NULL);
	clock_t t0 = clock();
	for (int i = 0; i < 500; i++) {
		ws_interval iv;
		int64_t from = ft_t("2027-01-01T00:00:00Z") + (int64_t)i * 3600;
		assert_int_equal(window_next(&w, NULL, from, from + 3 * 86400, &iv), 0);
		assert_true(iv.end > from);
	}
	double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
	assert_true(secs < 3.0);
}

static void test_time_parse(void **state)
{
	(void)state;
	int64_t t = 0;
	assert_int_equal(ws_time_parse("2026-12-24T00:00:00Z", &t), 0);
	assert_int_equal(t, 1798070400);
	assert_int_equal(ws_time_parse("2026-12-24T01:00:00+01:00", &t), 0);
	assert_int_equal(t, 1798070400);
	assert_int_equal(ws_time_parse("2026-12-23T18:30:00-05:30", &t), 0);
	assert_int_equal(t, 1798070400);
	assert_int_equal(ws_time_parse("2026-12-24t00:00:00.999z", &t), 0);
	assert_int_equal(t, 1798070400);
	assert_int_equal(ws_time_parse("2026-12-24 00:00:00Z", &t), 0);
	assert_int_equal(ws_time_parse("1970-01-01T00:00:00Z", &t), 0);
	assert_int_equal(t, 0);
	assert_int_equal(ws_time_parse("2024-02-29T12:00:00Z", &t), 0);
	static const char *const bad[] = {
		"", "x", "2026-12-24", "2026-12-24T00:00:00", "2026-02-29T00:00:00Z",
		"2026-12-24T24:00:00Z", "2026-12-24T00:60:00Z", "2026-12-24T00:00:60Z",
		"2026-12-24T00:00:00+24:00", "2026-12-24T00:00:00+01:60", "2026-12-24T00:00:00+0100",
		"2026-12-24T00:00:00.Z", "2026-12-24T00:00:00Z junk", "2026-12-32T00:00:00Z",
		"2026-00-10T00:00:00Z", "26-12-24T00:00:00Z", "2026-12-24T0:00:00Z",
		"2026-12-24X00:00:00Z",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		t = 7;
		if (ws_time_parse(bad[i], &t) != WS_EINVAL)
			print_error("accepted \"%s\"\n", bad[i]);
		assert_int_equal(ws_time_parse(bad[i], &t), WS_EINVAL);
		assert_int_equal(t, 7);
	}
	assert_int_equal(ws_time_parse(NULL, &t), WS_EINVAL);
}

static void test_time_format(void **state)
{
	(void)state;
	char buf[40];
	ws_time_format(1798070400, 0, true, buf, sizeof(buf));
	assert_string_equal(buf, "2026-12-24T00:00:00Z");
	ws_time_format(1798070400, 0, false, buf, sizeof(buf));
	assert_string_equal(buf, "2026-12-24T00:00:00+00:00");
	ws_time_format(1798070400, -6 * 3600, true, buf, sizeof(buf));
	assert_string_equal(buf, "2026-12-23T18:00:00-06:00");
	ws_time_format(1798070400, 5 * 3600 + 1800, false, buf, sizeof(buf));
	assert_string_equal(buf, "2026-12-24T05:30:00+05:30");
	int64_t back = 0;
	assert_int_equal(ws_time_parse(buf, &back), 0);
	assert_int_equal(back, 1798070400);
}

/* ws_time_format computes the calendar itself (no gmtime_r, whose lock the
 * placer threads contend for): it must agree with gmtime_r on every day,
 * leap days and century years included, before 1970 too, and at every
 * offset; and it refuses years outside 0000-9999 as before. */
static void test_time_format_matches_gmtime(void **state)
{
	(void)state;
	const int offsets[] = { 0, -6 * 3600, 5 * 3600 + 1800, 14 * 3600, -12 * 3600 - 1 };
	/* Every day from 1601 to 2399 at a varying time of day (some of them a
	 * second before midnight), with the offsets in turn. */
	for (int64_t day = -134775; day <= 157000; day++) {
		int64_t t = day * 86400 + (day * 7919) % 86400;
		if (t % 97 == 0)
			t -= 1;
		int off = offsets[(day + 134775) % 5];
		time_t local = (time_t)(t + off);
		struct tm tm;
		assert_non_null(gmtime_r(&local, &tm));
		char want[64], got[40];
		int a = off < 0 ? -off : off;
		snprintf(want, sizeof(want), "%04d-%02d-%02dT%02d:%02d:%02d%c%02d:%02d",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, off < 0 ? '-' : '+', (a / 3600) % 100, (a / 60) % 60);
		ws_time_format(t, off, false, got, sizeof(got));
		assert_string_equal(got, want);
	}
	char buf[40];
	ws_time_format(-62167219200, 0, true, buf, sizeof(buf));   /* year 0 */
	assert_string_equal(buf, "0000-01-01T00:00:00Z");
	ws_time_format(-62167219201, 0, true, buf, sizeof(buf));
	assert_string_equal(buf, "invalid-time");
	ws_time_format(253402300799, 0, true, buf, sizeof(buf));
	assert_string_equal(buf, "9999-12-31T23:59:59Z");
	ws_time_format(253402300800, 0, true, buf, sizeof(buf));
	assert_string_equal(buf, "invalid-time");
	ws_time_format(INT64_MAX / 2, 0, true, buf, sizeof(buf));
	assert_string_equal(buf, "invalid-time");
	ws_time_format(INT64_MIN / 2, 0, true, buf, sizeof(buf));
	assert_string_equal(buf, "invalid-time");
}

/* ws_tz_offset reads the zone through libical from UTC fields it computes
 * itself: the same answer as libical's own icaltime_from_timet_with_zone,
 * every few hours across twenty years of changes, a second either side,
 * and outside the years libical holds (where it defers to libical). */
static void test_tz_offset_matches_libical(void **state)
{
	(void)state;
	const char *zones[] = { "America/Chicago", "Europe/London", "Australia/Lord_Howe",
				"Asia/Kolkata", "America/St_Johns", "Pacific/Apia" };
	icaltimezone *utc = icaltimezone_get_utc_timezone();
	for (size_t z = 0; z < sizeof(zones) / sizeof(zones[0]); z++) {
		icaltimezone *tz = icaltimezone_get_builtin_timezone(zones[z]);
		assert_non_null(tz);
		int64_t from = ft_t("2010-01-01T00:00:00Z"), to = ft_t("2030-01-01T00:00:00Z");
		for (int64_t t = from; t < to; t += 5 * 3600 + 59) {
			for (int64_t d = -1; d <= 1; d++) {
				struct icaltimetype u = icaltime_from_timet_with_zone((time_t)(t + d), 0, utc);
				int dst = 0;
				int want = icaltimezone_get_utc_offset_of_utc_time(tz, &u, &dst);
				assert_int_equal(ws_tz_offset(zones[z], t + d), want);
			}
		}
		const int64_t far[] = { -62135596800 - 1, -62135596800, 253402300799, 253402300800 };
		for (size_t k = 0; k < sizeof(far) / sizeof(far[0]); k++) {
			struct icaltimetype u = icaltime_from_timet_with_zone((time_t)far[k], 0, utc);
			int dst = 0;
			int want = icaltimezone_get_utc_offset_of_utc_time(tz, &u, &dst);
			assert_int_equal(ws_tz_offset(zones[z], far[k]), want);
		}
	}
}

static void test_zones(void **state)
{
	(void)state;
	assert_true(ws_tz_valid("America/Chicago"));
	assert_true(ws_tz_valid("UTC"));
	assert_true(ws_tz_valid("Etc/UTC"));
	assert_true(ws_tz_valid("Asia/Kolkata"));
	assert_false(ws_tz_valid("Mars/Olympus"));
	assert_false(ws_tz_valid("america/chicago"));
	assert_false(ws_tz_valid(""));
	assert_false(ws_tz_valid(NULL));
	assert_false(ws_tz_valid("posixrules"));
	assert_false(ws_tz_valid("right/UTC"));
	assert_false(ws_tz_valid("../../etc/passwd"));
	assert_false(ws_tz_valid("/usr/share/zoneinfo/UTC"));
	assert_int_equal(ws_tz_offset("America/Chicago", ft_t("2026-07-01T00:00:00Z")), -5 * 3600);
	assert_int_equal(ws_tz_offset("America/Chicago", ft_t("2026-01-01T00:00:00Z")), -6 * 3600);
	/* The instant of the change: 2026-03-08T08:00Z is 03:00 CDT. */
	assert_int_equal(ws_tz_offset("America/Chicago", ft_t("2026-03-08T07:59:59Z")), -6 * 3600);
	assert_int_equal(ws_tz_offset("America/Chicago", ft_t("2026-03-08T08:00:00Z")), -5 * 3600);
	assert_int_equal(ws_tz_offset("Asia/Kolkata", 0), 5 * 3600 + 1800);
	assert_int_equal(ws_tz_offset("UTC", 1798070400), 0);
	assert_int_equal(ws_tz_offset("Mars/Olympus", 1798070400), 0);
}

static void test_rrule_valid(void **state)
{
	(void)state;
	char why[200];
	assert_true(ws_rrule_valid("FREQ=WEEKLY;BYDAY=SA", why, sizeof(why)));
	assert_true(ws_rrule_valid("FREQ=MONTHLY;BYMONTHDAY=-3,-2,-1", why, sizeof(why)));
	assert_true(ws_rrule_valid("freq=daily", why, sizeof(why)));
	assert_false(ws_rrule_valid("FREQ=SOMETIMES", why, sizeof(why)));
	assert_string_equal(why, "unknown frequency \"SOMETIMES\"");
	assert_false(ws_rrule_valid("FREQ=DAILY;COUNT=2;UNTIL=20260101T000000Z", why, sizeof(why)));
	assert_string_equal(why, "not a valid RFC 5545 recurrence rule");
	assert_false(ws_rrule_valid("FREQ=MINUTELY", why, sizeof(why)));
	assert_false(ws_rrule_valid("FREQ=DAILY;RSCALE=GREGORIAN", why, sizeof(why)));
	assert_string_equal(why, "RSCALE is not supported");
	assert_false(ws_rrule_valid("", why, sizeof(why)));
	assert_string_equal(why, "FREQ is missing");
	assert_false(ws_rrule_valid(NULL, NULL, 0));
}

/*
 * The per-parse cache gives libical's answers: for every combination here
 * the cached check says what the direct one says, with the same reason,
 * asked twice (the second time from the cache).  The UNTIL rules make the
 * answer depend on the zone and the start time (UNTIL is compared in local
 * time), which the cache must then tell apart.
 */
static void test_cache_matches_libical(void **state)
{
	(void)state;
	static const char *const rules[] = {
		"FREQ=DAILY", "FREQ=WEEKLY;BYDAY=MO;COUNT=2", "FREQ=DAILY;UNTIL=20000101T050000Z", "FREQ=DAILY;UNTIL=19991231",
		"FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;COUNT=1", "FREQ=HOURLY", "RRULE:FREQ=DAILY",
		"FREQ=WEEKLY;BYDAY=XX", "BYDAY=MO", NULL,
	};
	static const char *const zones[] = {
		"UTC", "America/Chicago", "Asia/Tokyo", "Mars/Olympus", "posixrules", NULL,
	};
	static const char *const anchors[] = { NULL, "2000-01-01", "2024-02-29", "2582-12-31" };
	static const int minutes[] = { 0, 30, 23 * 60 + 30 };
	window_cache *wc = window_cache_new();
	for (int pass = 0; pass < 2; pass++) {
		for (size_t r = 0; rules[r]; r++) {
			char want[200] = "", got[200] = "";
			bool ok = ws_rrule_valid(rules[r], want, sizeof(want));
			assert_int_equal(window_cache_rrule_valid(wc, rules[r], got, sizeof(got)), ok);
			assert_string_equal(got, want);
			if (!ok)
				continue;
			for (size_t z = 0; zones[z]; z++) {
				assert_int_equal(window_cache_tz_valid(wc, zones[z]), ws_tz_valid(zones[z]));
				for (size_t a = 0; a < 4; a++) {
					for (size_t m = 0; m < 3; m++) {
						ws_window w = recurring(rules[r], minutes[m], 3600, NULL, anchors[a]);
						char w1[200] = "", w2[200] = "";
						bool o1 = window_occurs(&w, zones[z], w1, sizeof(w1));
						bool o2 = window_cache_occurs(wc, &w, zones[z], w2, sizeof(w2));
						assert_int_equal(o1, o2);
						assert_string_equal(w1, w2);
					}
				}
			}
		}
	}
	/* A rule that matches no date (libical searches for a long time, so
	 * once). */
	ws_window never = recurring("FREQ=MONTHLY;BYMONTHDAY=31;BYMONTH=2", 0, 3600, NULL, NULL);
	char why[200];
	assert_false(window_cache_occurs(wc, &never, "UTC", why, sizeof(why)));
	assert_string_equal(why, "the rule has no occurrence from the anchor on");
	assert_false(window_cache_occurs(wc, &never, "Asia/Tokyo", why, sizeof(why)));
	/* The UNTIL rule really depends on the zone and the time of day. */
	ws_window w = recurring("FREQ=DAILY;UNTIL=20000101T050000Z", 0, 3600, NULL, NULL);
	assert_true(window_cache_occurs(wc, &w, "Asia/Tokyo", why, sizeof(why)));
	assert_false(window_cache_occurs(wc, &w, "America/Chicago", why, sizeof(why)));
	w.start_minute = 6 * 60;
	assert_false(window_cache_occurs(wc, &w, "UTC", why, sizeof(why)));
	assert_string_equal(why, "the rule has no occurrence from the anchor on");
	w.start_minute = 4 * 60;
	assert_true(window_cache_occurs(wc, &w, "UTC", why, sizeof(why)));
	window_cache_free(wc);
	window_cache_free(NULL);
	/* No cache: computed every time. */
	assert_true(window_cache_tz_valid(NULL, "Europe/Berlin"));
	assert_false(window_cache_rrule_valid(NULL, "FREQ=HOURLY", why, sizeof(why)));
}

/* window_expand remembers parsed rules per thread in a small table; more
 * rules than it holds, asked in turn, give the same occurrences again. */
static void test_many_rules(void **state)
{
	(void)state;
	static const char *const days[] = { "MO", "TU", "WE", "TH", "FR", "SA", "SU" };
	char rules[56][64];
	char *first[56];
	for (int i = 0; i < 56; i++) {
		snprintf(rules[i], sizeof(rules[i]), "FREQ=WEEKLY;INTERVAL=%d;BYDAY=%s", 1 + i / 7,
			 days[i % 7]);
		ws_window w = recurring(rules[i], 120, 3600, NULL, "2026-01-01");
		first[i] = expand_text(&w, "Europe/Berlin", "2026-03-01T00:00:00Z", "2026-06-01T00:00:00Z");
		assert_true(strlen(first[i]) > 0);
	}
	for (int round = 0; round < 2; round++) {
		for (int i = 55; i >= 0; i--) {
			ws_window w = recurring(rules[i], 120, 3600, NULL, "2026-01-01");
			char *again = expand_text(&w, "Europe/Berlin", "2026-03-01T00:00:00Z",
						  "2026-06-01T00:00:00Z");
			assert_string_equal(again, first[i]);
			free(again);
		}
	}
	for (int i = 0; i < 56; i++)
		free(first[i]);
}

/* Zones are found through a sorted index of libical's list; what it finds
 * is what libical finds, also after libical has dropped and re-read its
 * zones, and for names that are not in zone.tab. */
static void test_zone_lookup(void **state)
{
	(void)state;
	static const char *const names[] = {
		"America/Chicago", "Europe/Berlin", "Asia/Kolkata", "Pacific/Chatham", "Etc/GMT+5",
		"US/Central", "GMT", "Europe/Kiev", "Mars/Olympus", NULL,
	};
	int64_t t = ft_t("2026-07-01T12:00:00Z");
	for (int round = 0; round < 2; round++) {
		for (size_t i = 0; names[i]; i++) {
			icaltimezone *z = icaltimezone_get_builtin_timezone(names[i]);
			assert_int_equal(ws_tz_valid(names[i]), z != NULL);
			if (!z)
				continue;
			int dst = 0;
			struct icaltimetype u = icaltime_from_timet_with_zone((time_t)t, 0,
									      icaltimezone_get_utc_timezone());
			assert_int_equal(ws_tz_offset(names[i], t),
					 icaltimezone_get_utc_offset_of_utc_time(z, &u, &dst));
		}
		icaltimezone_free_builtin_timezones();
	}
	assert_int_equal(ws_tz_offset("America/Chicago", t), -5 * 3600);
}

/* window_iter gives what window_expand gives: one iterator stepped over
 * three years against fresh expansions of 30-day chunks. */
static void test_iter_matches_expand(void **state)
{
	(void)state;
	ws_window ws[] = {
		recurring("FREQ=DAILY", 150, 1800, "America/Chicago", NULL),
		recurring("FREQ=WEEKLY;BYDAY=SU", 60, 4 * 3600, "Europe/Berlin", NULL),
		recurring("FREQ=WEEKLY;INTERVAL=2;BYDAY=SA", 120, 4 * 3600, "America/New_York",
			  "2026-01-03"),
		recurring("FREQ=DAILY;COUNT=400", 90, 3600, "Australia/Sydney", "2026-02-01"),
		recurring("FREQ=DAILY;UNTIL=20280301T000000Z", 30, 7200, "Europe/London", NULL),
		recurring("FREQ=MONTHLY;INTERVAL=2;BYMONTHDAY=15", 0, 3600, NULL, "2025-11-15"),
	};
	int64_t from, until;
	assert_int_equal(ws_time_parse("2026-03-01T00:00:00Z", &from), 0);
	until = from + (int64_t)3 * 365 * 86400;
	collected *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	for (size_t k = 0; k < sizeof(ws) / sizeof(ws[0]); k++) {
		c->n = 0;
		for (int64_t lo = from; lo < until; lo += (int64_t)30 * 86400) {
			collected part = { .n = 0 };
			int64_t hi = lo + (int64_t)30 * 86400 < until ? lo + (int64_t)30 * 86400 : until;
			assert_int_equal(window_expand(&ws[k], "Asia/Kolkata", lo, hi, collect_cb, &part), 0);
			for (size_t i = 0; i < part.n; i++)
				if (part.iv[i].start >= lo || lo == from) {
					assert_true(c->n < MAX_IV);
					c->iv[c->n++] = part.iv[i];
				}
		}
		ws_window_iter *it = window_iter_new(&ws[k], "Asia/Kolkata", from);
		assert_non_null(it);
		ws_interval iv;
		size_t n = 0;
		while (window_iter_next(it, &iv) == 0 && iv.start < until) {
			assert_true(n < c->n);
			assert_int_equal(iv.start, c->iv[n].start);
			assert_int_equal(iv.end, c->iv[n].end);
			assert_int_equal(iv.utc_offset, c->iv[n].utc_offset);
			n++;
		}
		window_iter_free(it);
		assert_int_equal(n, c->n);
		assert_true(n > 0);
	}
	free(c);
}

/* Dates listed once per (rule, anchor) and converted per start time and
 * zone give exactly window_iter's occurrences, across daylight-saving gaps
 * and overlaps (02:30 in spring and autumn), 30-minute shifts (Lord Howe),
 * COUNT, INTERVAL and a DATE UNTIL; a UNTIL with a time is not shared. */
static void test_shared_days_match_iter(void **state)
{
	(void)state;
	const char *rules[] = {
		"FREQ=DAILY", "FREQ=WEEKLY;BYDAY=SU", "FREQ=WEEKLY;INTERVAL=2;BYDAY=SA,SU",
		"FREQ=DAILY;COUNT=300", "FREQ=MONTHLY;BYMONTHDAY=-1", "FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU",
		"FREQ=DAILY;UNTIL=20270401",
	};
	const char *anchors[] = { NULL, "2026-01-03", "2026-02-01", NULL, NULL, NULL, NULL };
	const char *zones[] = { "Europe/Berlin", "America/Chicago", "Australia/Lord_Howe", "UTC",
				"Asia/Kolkata" };
	const int minutes[] = { 0, 90, 150, 179, 23 * 60 + 59 };
	int64_t from = ft_t("2026-01-01T00:00:00Z");
	int64_t until = ft_t("2028-01-01T00:00:00Z");
	size_t compared = 0;
	for (size_t r = 0; r < sizeof(rules) / sizeof(rules[0]); r++) {
		ws_window w0 = recurring(rules[r], 0, 3600, NULL, anchors[r]);
		assert_true(window_days_shareable(&w0));
		ws_window_days *days = window_days_new(&w0, (int32_t)(from / 86400) - 2);
		assert_non_null(days);
		ws_local_day *v = calloc(2000, sizeof(*v));
		assert_non_null(v);
		size_t nd = 0;
		while (nd < 2000 && window_days_next(days, &v[nd]) == 0 &&
		       v[nd].day < until / 86400 + 2)
			nd++;
		window_days_free(days);
		for (size_t z = 0; z < sizeof(zones) / sizeof(zones[0]); z++) {
			const ws_zone *zone = ws_zone_find(zones[z]);
			assert_non_null(zone);
			for (size_t m = 0; m < sizeof(minutes) / sizeof(minutes[0]); m++) {
				ws_window w = recurring(rules[r], minutes[m], 3600, NULL, anchors[r]);
				ws_window_iter *it = window_iter_new(&w, zones[z], from);
				assert_non_null(it);
				size_t k = 0;
				ws_interval iv;
				while (window_iter_next(it, &iv) == 0 && iv.start < until) {
					int off;
					int64_t t;
					do {
						assert_true(k < nd);
						t = window_local_to_utc(zone, &v[k++], minutes[m], &off);
					} while (t + 3600 <= from);
					assert_int_equal(t, iv.start);
					assert_int_equal(off, iv.utc_offset);
					compared++;
				}
				window_iter_free(it);
			}
		}
		free(v);
	}
	assert_true(compared > 30000);   /* 35,379 occurrences */
	ws_window timed = recurring("FREQ=DAILY;UNTIL=20270401T020000Z", 0, 3600, NULL, NULL);
	assert_false(window_days_shareable(&timed));
	ws_window one = { .one_off = true, .from_utc = from, .to_utc = from + 60 };
	assert_false(window_days_shareable(&one));
	assert_null(window_days_new(&one, 0));
	assert_null(ws_zone_find("Mars/Olympus"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_weekly_across_dst),
		cmocka_unit_test(test_daily_gap_and_overlap),
		cmocka_unit_test(test_anchor_interval),
		cmocka_unit_test(test_count),
		cmocka_unit_test(test_until),
		cmocka_unit_test(test_one_off),
		cmocka_unit_test(test_window_next),
		cmocka_unit_test(test_callback_stops),
		cmocka_unit_test(test_skip_matches_full_iteration),
		cmocka_unit_test(test_skip_is_fast),
		cmocka_unit_test(test_time_parse),
		cmocka_unit_test(test_time_format),
		cmocka_unit_test(test_time_format_matches_gmtime),
		cmocka_unit_test(test_tz_offset_matches_libical),
		cmocka_unit_test(test_zones),
		cmocka_unit_test(test_rrule_valid),
		cmocka_unit_test(test_cache_matches_libical),
		cmocka_unit_test(test_many_rules),
		cmocka_unit_test(test_zone_lookup),
		cmocka_unit_test(test_iter_matches_expand),
		cmocka_unit_test(test_shared_days_match_iter),
	};
	return cmocka_run_group_tests_name("fleet/window", tests, NULL, wt_teardown_ical);
}
