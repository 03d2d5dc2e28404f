/*
 * evloop.h - the loop helpers of the outbound, health and executor tests:
 * a uv loop with a watchdog, ways to run it until something happened, and
 * tctx_done(), which asserts uv_loop_close() == 0 and so proves every handle
 * was closed.
 *
 * Unlike tests/unit/pg/loop_test.h, a 5 ms "tick" timer runs while waiting:
 * the parts under test deliver many callbacks from timers, and
 * uv_run(UV_RUN_ONCE) runs timers first and then blocks in poll, so without
 * the tick a condition met by a timer callback would only be seen when the
 * watchdog fires.
 */
#ifndef WS_EVLOOP_H
#define WS_EVLOOP_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <uv.h>

typedef struct tctx {
	uv_loop_t loop;
	uv_timer_t watchdog;
	uv_timer_t tick;
	bool expired;
} tctx;

static inline void tctx_watchdog_cb(uv_timer_t *t)
{
	tctx *x = t->data;
	x->expired = true;
}

static inline void tctx_tick_cb(uv_timer_t *t)
{
	(void)t;
}

static inline void tctx_init(tctx *t)
{
	memset(t, 0, sizeof(*t));
	assert_int_equal(uv_loop_init(&t->loop), 0);
	uv_timer_init(&t->loop, &t->watchdog);
	uv_timer_init(&t->loop, &t->tick);
	t->watchdog.data = t;
}

static inline void tctx_done(tctx *t)
{
	uv_close((uv_handle_t *)&t->watchdog, NULL);
	uv_close((uv_handle_t *)&t->tick, NULL);
	uv_run(&t->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&t->loop), 0);
}

/* Runs the loop until done(arg) or `ms` have passed; returns done(arg). */
static inline bool run_until_pred(tctx *t, bool (*done)(const void *), const void *arg, uint64_t ms)
{
	t->expired = false;
	uv_timer_start(&t->watchdog, tctx_watchdog_cb, ms, 0);
	uv_timer_start(&t->tick, tctx_tick_cb, 5, 5);
	while (!done(arg) && !t->expired)
		uv_run(&t->loop, UV_RUN_ONCE);
	uv_timer_stop(&t->watchdog);
	uv_timer_stop(&t->tick);
	return done(arg);
}

static inline bool flag_is_set(const void *flag)
{
	return *(const bool *)flag;
}

static inline bool count_is_nonzero(const void *count)
{
	return *(const int *)count != 0;
}

static inline bool run_until(tctx *t, const bool *flag, uint64_t ms)
{
	return run_until_pred(t, flag_is_set, flag, ms);
}

static inline bool run_until_count(tctx *t, const int *count, uint64_t ms)
{
	return run_until_pred(t, count_is_nonzero, count, ms);
}

static inline void run_for(tctx *t, uint64_t ms)
{
	bool never = false;
	run_until(t, &never, ms);
}

static inline uint64_t now_ms(void)
{
	return uv_hrtime() / 1000000u;
}

/* A close callback whose argument is an int counting its calls. */
static inline void closed_cb(void *arg)
{
	int *n = arg;
	(*n)++;
}

#endif
