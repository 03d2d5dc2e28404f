/*
 * duration.c - exact durations: "90s", "30m", "4h", "1d", "2w", compounds
 * such as "1h30m", and ISO 8601 "PT4H", "P1DT2H", "P2W".
 *
 * Only exact units are accepted: ISO 8601 years and months have no fixed
 * length, so "P1M" is refused rather than guessed.  A day is 86400 seconds
 * here (a window's duration is its exact length, spec/fleet.md).  The
 * parser accepts a leading sign and zero so that each caller decides what
 * range it allows ("duration must be positive" is the window's rule, not a
 * property of durations).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "wavesched/diag.h"
#include "wavesched/fleet.h"

#define MAX_DURATION_S ((int64_t)1 << 52)   /* about 142 million years */

static int unit_seconds(char c, int64_t *out)
{
	switch (c) {
	case 's': *out = 1; return 0;
	case 'm': *out = 60; return 0;
	case 'h': *out = 3600; return 0;
	case 'd': *out = 86400; return 0;
	case 'w': *out = 604800; return 0;
	default: return WS_EINVAL;
	}
}

/* Reads decimal digits into *v; returns the number of digits (0 = none). */
static size_t read_number(const char *s, int64_t *v)
{
	size_t i = 0;
	*v = 0;
	while (s[i] >= '0' && s[i] <= '9') {
		if (*v > (MAX_DURATION_S - (s[i] - '0')) / 10)
			return 0;   /* too large: treat as garbage */
		*v = *v * 10 + (s[i] - '0');
		i++;
	}
	return i;
}

static int add_part(int64_t *total, int64_t n, int64_t unit)
{
	if (n > (MAX_DURATION_S - *total) / unit)
		return WS_EINVAL;
	*total += n * unit;
	return 0;
}

/* "1d", "90m", "1h30m": parts in strictly decreasing units, lower case
 * only (an upper-case "M" reads as months to too many people). */
static int parse_short(const char *s, int64_t *out)
{
	int64_t total = 0, last_unit = INT64_MAX;
	if (!*s)
		return WS_EINVAL;
	while (*s) {
		int64_t n, unit;
		size_t k = read_number(s, &n);
		if (k == 0 || unit_seconds(s[k], &unit) != 0 || unit >= last_unit)
			return WS_EINVAL;
		if (add_part(&total, n, unit) != 0)
			return WS_EINVAL;
		last_unit = unit;
		s += k + 1;
	}
	*out = total;
	return 0;
}

/* ISO 8601: "P2W", or "P[nD][T[nH][nM][nS]]" with at least one part. */
static int parse_iso(const char *s, int64_t *out)
{
	int64_t total = 0, n;
	bool any = false, in_time = false;
	const char *order_date = "D", *order_time = "HMS";
	const char *pos = NULL;
	s++;   /* 'P' */
	if ((s[0] >= '0' && s[0] <= '9')) {
		size_t k = read_number(s, &n);
		if (k && (s[k] == 'W' || s[k] == 'w') && s[k + 1] == '\0') {
			if (add_part(&total, n, 604800) != 0)
				return WS_EINVAL;
			*out = total;
			return 0;
		}
	}
	pos = order_date;
	while (*s) {
		if (*s == 'T' || *s == 't') {
			if (in_time || !s[1])
				return WS_EINVAL;
			in_time = true;
			pos = order_time;
			s++;
			continue;
		}
		size_t k = read_number(s, &n);
		if (k == 0)
			return WS_EINVAL;
		char u = s[k];
		if (u >= 'a' && u <= 'z')
			u = (char)(u - 'a' + 'A');
		const char *at = strchr(pos, u);
		if (!u || !at)
			return WS_EINVAL;   /* Y, M (months), out of order, or garbage */
		int64_t unit = 0;
		if (!in_time)
			unit = 86400;
		else
			unit_seconds((char)(u - 'A' + 'a'), &unit);
		if (add_part(&total, n, unit) != 0)
			return WS_EINVAL;
		pos = at + 1;
		any = true;
		s += k + 1;
	}
	if (!any)
		return WS_EINVAL;
	*out = total;
	return 0;
}

int ws_duration_parse(const char *s, int64_t *seconds)
{
	if (!s)
		return WS_EINVAL;
	bool neg = false;
	if (*s == '-' || *s == '+') {
		neg = *s == '-';
		s++;
	}
	int64_t v;
	int rc = (*s == 'P' || *s == 'p') ? parse_iso(s, &v) : parse_short(s, &v);
	if (rc != 0)
		return rc;
	*seconds = neg ? -v : v;
	return 0;
}

void ws_duration_format(int64_t seconds, char *buf, size_t size)
{
	static const struct { int64_t s; char u; } units[] = {
		{ 86400, 'd' }, { 3600, 'h' }, { 60, 'm' },
	};
	if (seconds == 0) {
		snprintf(buf, size, "0s");
		return;
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (seconds % units[i].s == 0) {
			snprintf(buf, size, "%lld%c", (long long)(seconds / units[i].s), units[i].u);
			return;
		}
	}
	snprintf(buf, size, "%llds", (long long)seconds);
}
