/*
 * clock.c - schedule time from wall time (see clock.h).
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "wavesched/clock.h"
#include "wavesched/window.h"

struct ws_clock {
	double scale;
	int64_t origin;          /* µs since the epoch */
	ws_clock_wall_fn wall;
	void *wall_arg;
};

/* 10000-01-01T00:00:00Z in µs since the epoch: the end of what RFC 3339
 * can write, and of what we accept or format. */
#define YEAR_10000_US INT64_C(253402300800000000)

static int64_t realtime_us(void *arg)
{
	(void)arg;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

ws_clock *ws_clock_new_wall(double scale, int64_t origin_us, ws_clock_wall_fn wall, void *arg)
{
	/* The negated test also refuses NaN. */
	if (!(scale > 0 && scale <= WS_CLOCK_SCALE_MAX) || !wall)
		return NULL;
	ws_clock *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->scale = scale;
	c->wall = wall;
	c->wall_arg = arg;
	c->origin = origin_us ? origin_us : wall(arg);
	return c;
}

ws_clock *ws_clock_new(double scale, int64_t origin_us)
{
	return ws_clock_new_wall(scale, origin_us, realtime_us, NULL);
}

void ws_clock_free(ws_clock *c)
{
	free(c);
}

double ws_clock_scale(const ws_clock *c)
{
	return c->scale;
}

int64_t ws_clock_origin(const ws_clock *c)
{
	return c->origin;
}

/* long double keeps every int64 exact on the platforms we build for, so the
 * only rounding is the final one; the result saturates instead of wrapping. */
static int64_t clamp_ld(long double v)
{
	if (v >= (long double)INT64_MAX)
		return INT64_MAX;
	if (v <= (long double)INT64_MIN)
		return INT64_MIN;
	return (int64_t)llroundl(v);
}

int64_t ws_clock_now(const ws_clock *c)
{
	int64_t wall = c->wall(c->wall_arg);
	if (c->scale == 1.0)
		return wall;
	long double elapsed = (long double)wall - (long double)c->origin;
	return clamp_ld((long double)c->origin + elapsed * (long double)c->scale);
}

static uint64_t real_ms_of(const ws_clock *c, long double schedule_us)
{
	if (schedule_us <= 0)
		return 0;
	long double ms = ceill(schedule_us / (long double)c->scale / 1000.0L);
	if (ms >= (long double)UINT64_MAX)
		return UINT64_MAX;
	return (uint64_t)ms;
}

uint64_t ws_clock_real_ms_until(const ws_clock *c, int64_t at_us)
{
	return real_ms_of(c, (long double)at_us - (long double)ws_clock_now(c));
}

uint64_t ws_clock_real_ms(const ws_clock *c, int64_t schedule_duration_us)
{
	return real_ms_of(c, (long double)schedule_duration_us);
}

int ws_clock_timer_start(const ws_clock *c, uv_timer_t *t, int64_t at_us, uv_timer_cb cb)
{
	uv_update_time(t->loop);
	uint64_t ms = ws_clock_real_ms_until(c, at_us);
	/* libuv compares whole milliseconds of a truncated monotonic clock, so a
	 * timer may fire up to 1 ms before its full timeout has elapsed; one
	 * more millisecond keeps "never before the instant". */
	if (ms > 0 && ms < UINT64_MAX)
		ms++;
	return uv_timer_start(t, cb, ms, 0);
}

int ws_clock_parse_scale(const char *text, double *out, ws_diags *d)
{
	if (!text || !*text) {
		ws_diag_add(d, NULL, 0, 0, "--time-scale: a number is required (e.g. 60)");
		return WS_EINVAL;
	}
	char *end = NULL;
	double v = strtod(text, &end);
	if (*end || end == text || isspace((unsigned char)text[0])) {
		ws_diag_add(d, NULL, 0, 0, "--time-scale \"%s\" is not a number (e.g. 60 or 0.5)", text);
		return WS_EINVAL;
	}
	if (!(v > 0 && v <= WS_CLOCK_SCALE_MAX)) {
		ws_diag_add(d, NULL, 0, 0,
			    "--time-scale \"%s\" is out of range: it must be greater than 0 and at most 1000000",
			    text);
		return WS_EINVAL;
	}
	*out = v;
	return 0;
}

int ws_clock_parse_origin(const char *text, int64_t *out_us, ws_diags *d)
{
	int64_t secs;
	if (!text || ws_time_parse(text, &secs)) {
		ws_diag_add(d, NULL, 0, 0,
			    "--time-origin \"%s\" is not an RFC 3339 time such as 2026-12-01T00:00:00Z",
			    text ? text : "");
		return WS_EINVAL;
	}
	if (secs < 0 || secs >= YEAR_10000_US / 1000000) {
		ws_diag_add(d, NULL, 0, 0, "--time-origin \"%s\" must be between 1970 and 9999", text);
		return WS_EINVAL;
	}
	*out_us = secs * 1000000;
	return 0;
}

void ws_clock_format(int64_t at_us, char *buf, size_t size)
{
	int64_t secs = at_us / 1000000, frac = at_us % 1000000;
	if (frac < 0) {
		frac += 1000000;
		secs--;
	}
	time_t tt = (time_t)secs;
	struct tm tm;
	if (at_us <= -YEAR_10000_US || at_us >= YEAR_10000_US || !gmtime_r(&tt, &tm)) {
		snprintf(buf, size, "invalid-time");
		return;
	}
	snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
}
