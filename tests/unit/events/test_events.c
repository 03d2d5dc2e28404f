/*
 * test_events.c - the SSE framing and the backlog/live seam of events.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "wavesched/events.h"

static void frame_is(int64_t id, const char *data, const char *want)
{
	size_t len = 0;
	char *f = ws_sse_frame(id, data, strlen(data), &len);
	assert_non_null(f);
	assert_string_equal(f, want);
	assert_int_equal(len, strlen(want));
	free(f);
}

static void test_frame(void **state)
{
	(void)state;
	frame_is(7, "{\"id\": 7}", "id: 7\ndata: {\"id\": 7}\n\n");
	/* Every line break a reader splits at becomes a data: line of its own,
	 * so no payload can end the message early or forge a field. */
	frame_is(8, "a\nb", "id: 8\ndata: a\ndata: b\n\n");
	frame_is(9, "a\r\nb\rc", "id: 9\ndata: a\ndata: b\ndata: c\n\n");
	frame_is(10, "a\n\nid: 99", "id: 10\ndata: a\ndata: \ndata: id: 99\n\n");
	frame_is(11, "a\n", "id: 11\ndata: a\n\n");
	frame_is(12, "", "id: 12\ndata: \n\n");
	frame_is(9007199254740993LL, "x", "id: 9007199254740993\ndata: x\n\n");
}

static ws_event *ev(int64_t seq, int64_t rollout, const char *tenant)
{
	char doc[32];
	snprintf(doc, sizeof(doc), "{\"id\": %lld}", (long long)seq);
	ws_event *e = ws_event_new(seq, rollout, tenant, doc, strlen(doc));
	assert_non_null(e);
	return e;
}

/* Offers a live event and drops the caller's reference. */
static ws_seam_verdict live(ws_seam *s, int64_t seq)
{
	ws_event *e = ev(seq, 1, NULL);
	ws_seam_verdict v = ws_seam_live(s, e);
	ws_event_unref(e);
	return v;
}

static void test_live_only(void **state)
{
	(void)state;
	ws_seam s;
	ws_seam_init(&s, -1, 4);
	assert_false(s.backlog);
	assert_int_equal(live(&s, 5), WS_SEAM_SEND);
	assert_int_equal(live(&s, 5), WS_SEAM_DROP);
	assert_int_equal(live(&s, 4), WS_SEAM_DROP);
	assert_int_equal(live(&s, 6), WS_SEAM_SEND);
	assert_int_equal(s.last, 6);
	ws_seam_clear(&s);
}

/* Backlog 11..13 read while 12..15 arrive live: 11..15 once each, in order. */
static void test_seam_no_gap_no_duplicate(void **state)
{
	(void)state;
	ws_seam s;
	ws_seam_init(&s, 10, 8);
	assert_true(s.backlog);
	assert_int_equal(live(&s, 12), WS_SEAM_HELD);
	assert_int_equal(live(&s, 13), WS_SEAM_HELD);
	assert_true(ws_seam_backlog_row(&s, 11));
	assert_true(ws_seam_backlog_row(&s, 12));
	assert_int_equal(live(&s, 14), WS_SEAM_HELD);
	assert_true(ws_seam_backlog_row(&s, 13));
	assert_false(ws_seam_backlog_row(&s, 13));
	assert_int_equal(live(&s, 15), WS_SEAM_HELD);
	ws_event **out;
	size_t n;
	assert_false(ws_seam_backlog_done(&s, false, &out, &n));
	assert_int_equal(n, 2);
	assert_int_equal(out[0]->seq, 14);
	assert_int_equal(out[1]->seq, 15);
	for (size_t i = 0; i < n; i++)
		ws_event_unref(out[i]);
	free(out);
	assert_false(s.backlog);
	assert_int_equal(s.last, 15);
	assert_int_equal(live(&s, 15), WS_SEAM_DROP);
	assert_int_equal(live(&s, 16), WS_SEAM_SEND);
	ws_seam_clear(&s);
}

/* A full page means more backlog; the held events wait for the last page. */
static void test_seam_pages(void **state)
{
	(void)state;
	ws_seam s;
	ws_seam_init(&s, 0, 8);
	assert_int_equal(live(&s, 4), WS_SEAM_HELD);
	assert_true(ws_seam_backlog_row(&s, 1));
	assert_true(ws_seam_backlog_row(&s, 2));
	ws_event **out;
	size_t n;
	assert_true(ws_seam_backlog_done(&s, true, &out, &n));
	assert_int_equal(n, 0);
	assert_true(s.backlog);
	assert_int_equal(s.last, 2);
	assert_true(ws_seam_backlog_row(&s, 3));
	assert_false(ws_seam_backlog_done(&s, false, &out, &n));
	assert_int_equal(n, 1);
	assert_int_equal(out[0]->seq, 4);
	ws_event_unref(out[0]);
	free(out);
	ws_seam_clear(&s);
}

/* More live events than the cap during the backlog: they are let go and
 * the backlog is read once more, so nothing is lost. */
static void test_seam_overflow(void **state)
{
	(void)state;
	ws_seam s;
	ws_seam_init(&s, 0, 2);
	assert_int_equal(live(&s, 3), WS_SEAM_HELD);
	assert_int_equal(live(&s, 4), WS_SEAM_HELD);
	assert_int_equal(live(&s, 5), WS_SEAM_DROP);
	assert_true(s.overflow);
	assert_int_equal(s.n_held, 0);
	assert_int_equal(live(&s, 6), WS_SEAM_DROP);
	assert_true(ws_seam_backlog_row(&s, 1));
	ws_event **out;
	size_t n;
	assert_true(ws_seam_backlog_done(&s, false, &out, &n));   /* read again */
	assert_false(s.overflow);
	for (int64_t q = 2; q <= 6; q++)
		assert_true(ws_seam_backlog_row(&s, q));
	assert_int_equal(live(&s, 7), WS_SEAM_HELD);
	assert_false(ws_seam_backlog_done(&s, false, &out, &n));
	assert_int_equal(n, 1);
	assert_int_equal(out[0]->seq, 7);
	ws_event_unref(out[0]);
	free(out);
	ws_seam_clear(&s);
}

static void test_filter(void **state)
{
	(void)state;
	char *mine[] = { "acme", "globex" };
	ws_events_filter tenant = { .tenants = mine, .n_tenants = 2, .scoped = true };
	ws_events_filter none = { .scoped = true };
	ws_events_filter all = { 0 };
	ws_events_filter r2 = { .rollout = 2 };
	ws_event *a = ev(1, 2, "acme"), *o = ev(2, 2, "initech"), *r = ev(3, 3, NULL);
	assert_true(ws_event_matches(a, &tenant));
	assert_false(ws_event_matches(o, &tenant));
	assert_false(ws_event_matches(r, &tenant));   /* rollout-level: not a tenant's */
	assert_false(ws_event_matches(a, &none));
	assert_true(ws_event_matches(o, &all));
	assert_true(ws_event_matches(r, &all));
	assert_true(ws_event_matches(a, &r2));
	assert_false(ws_event_matches(r, &r2));
	ws_event_unref(a);
	ws_event_unref(o);
	ws_event_unref(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frame),
		cmocka_unit_test(test_live_only),
		cmocka_unit_test(test_seam_no_gap_no_duplicate),
		cmocka_unit_test(test_seam_pages),
		cmocka_unit_test(test_seam_overflow),
		cmocka_unit_test(test_filter),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
