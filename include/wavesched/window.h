/*
 * window.h - window and blackout occurrences, computed with libical.
 *
 * A recurring window is an RRULE whose DTSTART is `anchor` + `start` in the
 * window's zone; occurrences are computed in local time and converted to UTC
 * per RFC 5545 section 3.3.5: a local time inside a spring-forward gap is read
 * with the offset in force before the gap (02:30 -> 03:30), an ambiguous local
 * time (fall back) is the first of the two.  No recurrence or time zone
 * arithmetic is done here by hand.
 */
#ifndef WAVESCHED_WINDOW_H
#define WAVESCHED_WINDOW_H

#include <stdint.h>
#include <stdbool.h>
#include "wavesched/fleet.h"

typedef struct ws_interval {
	int64_t start;   /* unix seconds, UTC */
	int64_t end;     /* exclusive */
	int utc_offset;  /* seconds east of UTC of the window's zone at start */
} ws_interval;

/* Checks that `tzid` is an IANA zone libical knows. */
WS_API bool ws_tz_valid(const char *tzid);
/* Checks an RRULE (no DTSTART); on failure fills `why`. */
WS_API bool ws_rrule_valid(const char *rrule, char *why, size_t why_size);

/*
 * Iterates the occurrences of `w` (zone `zone` when w->timezone is NULL)
 * that end after `from` and start before `until`, in order.  Calls `cb` for
 * each until it returns non-zero.  Returns 0, or WS_EINVAL for a window that
 * cannot be expanded (never for a validated fleet).
 */
typedef int (*ws_interval_cb)(void *arg, const ws_interval *iv);
WS_API int window_expand(const ws_window *w, const char *zone, int64_t from,
			 int64_t until, ws_interval_cb cb, void *arg);

/*
 * A stateful form of window_expand: the occurrences of `w` that end after
 * `from`, in order, one per window_iter_next call, from a single libical
 * iterator kept alive (no `until`: the caller stops).  window_iter_next
 * returns 0 and fills `out`, or 1 at the end.  window_iter_new returns NULL
 * for a window that cannot be expanded (never for a validated fleet) or
 * without memory.  An iterator is used by one thread at a time.
 */
typedef struct ws_window_iter ws_window_iter;
WS_API ws_window_iter *window_iter_new(const ws_window *w, const char *zone, int64_t from);
WS_API int window_iter_next(ws_window_iter *it, ws_interval *out);
WS_API void window_iter_free(ws_window_iter *it);

/* The first occurrence that ends after `from`, or 1 when there is none
 * before `until`. */
WS_API int window_next(const ws_window *w, const char *zone, int64_t from,
		       int64_t until, ws_interval *out);

/*
 * Dates shared by windows that differ only in start time and zone (see
 * "Shared dates" in tenants/window.c).  window_days_shareable tells whether
 * a window's local dates depend on nothing but its rule and anchor;
 * window_days_new lists them from a few days before the local day `from_day`
 * (days since 1970-01-01) on, one per window_days_next (0, or 1 at the end);
 * window_local_to_utc turns a date and a start minute into the instant of
 * the occurrence in a zone (RFC 5545 3.3.5), exactly as window_iter_next does.
 */
typedef struct ws_window_days ws_window_days;
typedef struct ws_zone ws_zone;
typedef struct ws_local_day {
	int32_t day;              /* days since 1970-01-01 */
	int16_t year;
	int8_t month, mday;
} ws_local_day;
WS_API bool window_days_shareable(const ws_window *w);
WS_API ws_window_days *window_days_new(const ws_window *w, int32_t from_day);
WS_API int window_days_next(ws_window_days *d, ws_local_day *out);
WS_API void window_days_free(ws_window_days *d);
/* The zone named `tzid` ("UTC" when NULL), or NULL when unknown. */
WS_API const ws_zone *ws_zone_find(const char *tzid);
WS_API int64_t window_local_to_utc(const ws_zone *zone, const ws_local_day *day, int minute,
				   int *offset);
/* ws_tz_offset for a zone found already. */
WS_API int ws_zone_offset(const ws_zone *zone, int64_t t);

/* Formats unix seconds as RFC 3339 with the given offset ("...-06:00", or "Z"
 * for offset 0 when utc_z is true). */
WS_API void ws_time_format(int64_t t, int utc_offset, bool utc_z, char *buf, size_t size);
/* Parses RFC 3339 ("2026-12-24T00:00:00Z", "...+01:00", fractional seconds
 * accepted); returns 0 or WS_EINVAL. */
WS_API int ws_time_parse(const char *s, int64_t *out);
/* The UTC offset of `tzid` at instant t (seconds east). */
WS_API int ws_tz_offset(const char *tzid, int64_t t);

#endif
