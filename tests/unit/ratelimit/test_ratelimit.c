/*
 * The rate limiter's arithmetic and its local (no Redis) judgement.  The
 * shared, Redis-backed judgement is played by tests/integration/
 * test_ratelimit.py against a real Redis and two service processes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>
#include "wavesched/ratelimit.h"

/* rate 10/s (interval 100 ms), burst 3: three at once, then one per 100 ms. */
static void test_gcra_burst_then_rate(void **state)
{
	(void)state;
	const int64_t T = 100000, tau = 2 * T;
	int64_t tat = 0, retry = -1, now = 5000000;
	for (int i = 0; i < 3; i++) {
		assert_true(ws_gcra(&tat, now, T, tau, &retry));
		assert_int_equal(retry, 0);
	}
	assert_false(ws_gcra(&tat, now, T, tau, &retry));
	assert_int_equal(retry, T);                /* the next fits one interval later */
	int64_t refused_tat = tat;
	assert_false(ws_gcra(&tat, now + T - 1, T, tau, &retry));
	assert_int_equal(retry, 1);
	assert_int_equal(tat, refused_tat);        /* refusals do not spend budget */
	assert_true(ws_gcra(&tat, now + T, T, tau, &retry));
	assert_false(ws_gcra(&tat, now + T, T, tau, &retry));
	/* Idle for long: the full burst is back, not more. */
	now += 10 * T;
	for (int i = 0; i < 3; i++)
		assert_true(ws_gcra(&tat, now, T, tau, &retry));
	assert_false(ws_gcra(&tat, now, T, tau, &retry));
}

static void test_parse(void **state)
{
	(void)state;
	double r = -1;
	assert_int_equal(ws_ratelimit_parse("100/s", &r), 0);
	assert_true(r == 100);
	assert_int_equal(ws_ratelimit_parse("600/min", &r), 0);
	assert_true(r == 10);
	assert_int_equal(ws_ratelimit_parse("36/h", &r), 0);
	assert_true(r > 0.0099 && r < 0.0101);
	assert_int_equal(ws_ratelimit_parse("off", &r), 0);
	assert_true(r == 0);
	assert_int_equal(ws_ratelimit_parse("0", &r), 0);
	assert_true(r == 0);
	const char *bad[] = { "", "100", "-5/s", "abc/s", "10/day", "1/s ", "nan/s", "inf/s", "2000000/s",
			      "0.01/h" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_not_equal(ws_ratelimit_parse(bad[i], &r), 0);
}

typedef struct verdicts {
	int allowed, refused;
	int64_t last_retry;
} verdicts;

static void count(void *arg, bool allowed, int64_t retry)
{
	verdicts *v = arg;
	if (allowed)
		v->allowed++;
	else
		v->refused++;
	v->last_retry = retry;
}

/* Without Redis every check is judged at once, per key. */
static void test_local_per_key(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	ws_ratelimit *rl = ws_ratelimit_new(&loop, NULL, 1.0 / 60, 2);   /* 1/min, burst 2 */
	assert_non_null(rl);
	verdicts a = { 0 }, b = { 0 };
	for (int i = 0; i < 5; i++)
		ws_ratelimit_check(rl, "token-a", count, &a);
	ws_ratelimit_check(rl, "token-b", count, &b);
	assert_int_equal(a.allowed, 2);
	assert_int_equal(a.refused, 3);
	assert_true(a.last_retry > 59 * 1000000LL && a.last_retry <= 60 * 1000000LL);
	assert_int_equal(b.allowed, 1);
	assert_int_equal(ws_ratelimit_pending(rl), 0);
	/* Many keys: the table keeps judging (expired entries are swept). */
	char key[32];
	verdicts many = { 0 };
	for (int i = 0; i < 20000; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		ws_ratelimit_check(rl, key, count, &many);
	}
	assert_int_equal(many.allowed, 20000);
	ws_ratelimit_check(rl, "token-a", count, &a);
	assert_int_equal(a.refused, 4);
	ws_ratelimit_free(rl);

	/* rate 0: off. */
	rl = ws_ratelimit_new(&loop, NULL, 0, 0);
	verdicts off = { 0 };
	for (int i = 0; i < 1000; i++)
		ws_ratelimit_check(rl, "t", count, &off);
	assert_int_equal(off.allowed, 1000);
	ws_ratelimit_free(rl);
	uv_loop_close(&loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gcra_burst_then_rate),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_local_per_key),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
