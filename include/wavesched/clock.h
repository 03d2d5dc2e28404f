/*
 * clock.h - the engine's one clock (docs/design/engine.md "Time").
 *
 * Schedule time is what windows, blackouts, soaks, backup ages, probe and
 * poll intervals and approval waits are measured in.  With
 * `serve --time-scale N [--time-origin T]` it runs N times faster than the
 * wall clock:
 *
 *     schedule = origin + (wall - origin) * N
 *
 * so every process started with the same origin agrees on the schedule time
 * (fault tests restart the leader many times).  Without an origin the
 * process's start is the origin.  Network time-outs of single calls, the
 * lease and HTTP server time-outs are NOT scaled and do not go through here.
 *
 * All instants are microseconds since the Unix epoch (UTC); durations are
 * microseconds.  A ws_clock is immutable after creation and may be read from
 * any thread.
 */
#ifndef WAVESCHED_CLOCK_H
#define WAVESCHED_CLOCK_H

#include <stdint.h>
#include <uv.h>
#include "wavesched/diag.h"

typedef struct ws_clock ws_clock;

#define WS_CLOCK_SCALE_MAX 1e6

/* The wall clock source, µs since the epoch.  Production uses
 * CLOCK_REALTIME; tests inject a fake one through ws_clock_new_wall. */
typedef int64_t (*ws_clock_wall_fn)(void *arg);

/* scale in (0, 1e6]; origin_us 0 = now (the process start).  Returns NULL
 * for a scale out of range or without memory.  Free with ws_clock_free. */
WS_API ws_clock *ws_clock_new(double scale, int64_t origin_us);
/* The same with another wall source (tests only). */
WS_API ws_clock *ws_clock_new_wall(double scale, int64_t origin_us, ws_clock_wall_fn wall,
				   void *arg);
WS_API void ws_clock_free(ws_clock *c);

WS_API double ws_clock_scale(const ws_clock *c);
WS_API int64_t ws_clock_origin(const ws_clock *c);

/* The schedule time now.  Saturates at the ends of int64 rather than
 * wrapping for an origin far in the past with a large scale. */
WS_API int64_t ws_clock_now(const ws_clock *c);

/* How long, in real milliseconds, until the schedule reaches at_us: 0 when
 * it already has.  Rounded up, so a timer armed with it never fires before
 * the instant (callbacks still re-check: the wall clock may be stepped). */
WS_API uint64_t ws_clock_real_ms_until(const ws_clock *c, int64_t at_us);

/* A schedule duration in real milliseconds, rounded up; 0 for d <= 0. */
WS_API uint64_t ws_clock_real_ms(const ws_clock *c, int64_t schedule_duration_us);

/* Starts (or restarts) a one-shot uv timer for the schedule instant at_us.
 * The loop's cached time is refreshed first so the wait is measured from
 * now, not from the start of the loop iteration.  Returns uv_timer_start's
 * result. */
WS_API int ws_clock_timer_start(const ws_clock *c, uv_timer_t *t, int64_t at_us, uv_timer_cb cb);

/* `--time-scale N`: a decimal number, > 0 and <= 1e6.  0 or WS_EINVAL with a
 * diagnostic that names the option and the value. */
WS_API int ws_clock_parse_scale(const char *text, double *out, ws_diags *d);
/* `--time-origin T`: RFC 3339 ("2026-12-01T00:00:00Z", "...+01:00"), a year
 * from 1970 to 9999.  0 or WS_EINVAL with a diagnostic. */
WS_API int ws_clock_parse_origin(const char *text, int64_t *out_us, ws_diags *d);

/* Formats an instant as RFC 3339 UTC with microseconds
 * ("2026-12-01T00:00:00.000000Z"); buf of at least 32 bytes. */
#define WS_CLOCK_TEXT_MAX 32
WS_API void ws_clock_format(int64_t at_us, char *buf, size_t size);

#endif
