/*
 * window.c - window occurrences, time zones and RFC 3339 times (see
 * include/wavesched/window.h).
 *
 * libical expands the recurrence rules and knows the zones (Debian builds it
 * on the system tzdata).  We iterate in *floating* local time and convert
 * each occurrence to UTC ourselves, from offsets libical gives, because
 * libical's own conversions do not follow RFC 5545 section 3.3.5 at the
 * edges: with a zoned DTSTART its iterator moves a 02:30 occurrence that
 * falls into a spring-forward gap to 03:30 and keeps it there on every
 * later day, and its local-to-UTC conversion picks the *second* of two
 * ambiguous fall-back times.  RFC 5545 wants the offset before the gap and
 * the first of the two.
 *
 * Windows recur at most daily (fleet validation refuses sub-daily
 * frequencies, see ws_rrule_valid), so consecutive occurrences are at least
 * a day apart in local time and their UTC starts stay in order.
 *
 * Skipping ahead: iterating FREQ=DAILY from the default anchor (2000) to
 * today costs ~25 ms, too much for a planner that expands every tenant's
 * windows.  For rules without COUNT we jump close to `from`: with INTERVAL=1
 * through icalrecur_iterator_set_start, and with INTERVAL>1 by moving
 * DTSTART forward by whole periods (days, weeks, months or years times the
 * interval), which keeps the rule's phase.  Rules with COUNT are counted
 * from the anchor, so they are iterated from there (COUNT bounds the work).
 *
 * Repeated work: parsing a rule and finding a zone cost as much as a short
 * expansion, and a fleet has a few dozen rules and zones for thousands of
 * windows.  window_expand remembers parsed rules per thread (rule_slots)
 * and finds zones through a sorted index (zone_index_build); validation
 * remembers every libical answer for the duration of one parse
 * (window_cache).  Every answer still comes from libical.
 *
 * UTC calendar fields: turning unix seconds into UTC year, month, day and
 * time is plain Gregorian arithmetic (utc_fields_of), done here rather than
 * by gmtime_r, which takes glibc's process-wide tzset lock on every call;
 * the planner's placer threads contended for it through libical's
 * icaltime_from_timet_with_zone.  No zone is involved in that step: the
 * zone's offsets still come from libical.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <libical/ical.h>
#include "fleet_internal.h"

#define DEFAULT_ANCHOR "2000-01-01"
#define DAY_S 86400

static bool tz_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 64 || s[0] == '/' || s[n - 1] == '/')
		return false;
	/* Files under /usr/share/zoneinfo that are not zones. */
	if (strncmp(s, "posix/", 6) == 0 || strncmp(s, "right/", 6) == 0 ||
	    strcmp(s, "posixrules") == 0 || strcmp(s, "localtime") == 0 ||
	    strcmp(s, "Factory") == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			  (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '+' ||
			  (c == '/' && s[i + 1] != '/');
		if (!ok)
			return false;
	}
	return true;
}

/*
 * libical finds a builtin zone by a linear search over the ~450 names of
 * zone.tab, which a planner does for every expansion.  zone_index() is the
 * same list sorted, built once per process: a name is found by binary
 * search, then the zone is fetched from libical's own array by position
 * and used only if its name matches, so the index can never hand out a
 * zone libical would not (after icaltimezone_free_builtin_timezones() the
 * array is read again from zone.tab in the same order; anything else falls
 * back to libical's search).  It holds names and positions only, never
 * libical pointers, and is immutable once built (pthread_once), so every
 * thread may use it.
 */
typedef struct zone_pos {
	char *name;
	size_t pos;
} zone_pos;

static zone_pos *zone_index_v;
static size_t zone_index_n;
static pthread_once_t zone_index_once = PTHREAD_ONCE_INIT;

static int zone_pos_cmp(const void *a, const void *b)
{
	const zone_pos *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	return c ? c : (x->pos > y->pos) - (x->pos < y->pos);
}

static void zone_index_build(void)
{
	icalarray *all = icaltimezone_get_builtin_timezones();
	size_t n = all ? all->num_elements : 0;
	zone_pos *v = calloc(n ? n : 1, sizeof(*v));
	size_t k = 0;
	for (size_t i = 0; v && i < n; i++) {
		const char *loc = icaltimezone_get_location(icalarray_element_at(all, i));
		if (loc && (v[k].name = strdup(loc)))
			v[k++].pos = i;
	}
	if (v)
		qsort(v, k, sizeof(*v), zone_pos_cmp);   /* equal names: the first position first */
	zone_index_v = v;
	zone_index_n = k;
}

static icaltimezone *tz_builtin(const char *tzid)
{
	/* libical answers these two itself, without the list. */
	if (strcmp(tzid, "UTC") != 0 && strcmp(tzid, "GMT") != 0 &&
	    pthread_once(&zone_index_once, zone_index_build) == 0) {
		size_t lo = 0, hi = zone_index_n;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (strcmp(zone_index_v[mid].name, tzid) < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		icalarray *all = icaltimezone_get_builtin_timezones();
		if (lo < zone_index_n && strcmp(zone_index_v[lo].name, tzid) == 0 && all &&
		    zone_index_v[lo].pos < all->num_elements) {
			icaltimezone *z = icalarray_element_at(all, zone_index_v[lo].pos);
			const char *loc = icaltimezone_get_location(z);
			if (loc && strcmp(loc, tzid) == 0)
				return z;
		}
	}
	return icaltimezone_get_builtin_timezone(tzid);
}

static icaltimezone *tz_get(const char *tzid)
{
	if (!tzid || strcmp(tzid, "UTC") == 0)
		return icaltimezone_get_utc_timezone();
	if (!tz_name_ok(tzid))
		return NULL;
	return tz_builtin(tzid);
}

bool ws_tz_valid(const char *tzid)
{
	return tzid && tz_get(tzid) != NULL;
}

/*
 * The UTC calendar fields of unix seconds `t`: what gmtime_r gives, by the
 * proleptic Gregorian arithmetic of H. Hinnant's civil_from_days.  No time
 * zone is involved.  glibc's gmtime_r takes the process-wide tzset lock on
 * every call, which the planner's placer threads then contend for (and
 * libical's icaltime_from_timet_with_zone calls it); this takes no lock.
 */
typedef struct utc_fields {
	int64_t year;
	int month, day, hour, minute, second;
} utc_fields;

static void utc_fields_of(int64_t t, utc_fields *f)
{
	int64_t days = t / DAY_S, sec = t % DAY_S;
	if (sec < 0) {
		sec += DAY_S;
		days--;
	}
	f->hour = (int)(sec / 3600);
	f->minute = (int)(sec / 60 % 60);
	f->second = (int)(sec % 60);
	/* Days since 0000-03-01, in 400-year eras of 146097 days. */
	int64_t z = days + 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);   /* from March 1st */
	int64_t mp = (5 * doy + 2) / 153;
	f->day = (int)(doy - (153 * mp + 2) / 5 + 1);
	f->month = (int)(mp < 10 ? mp + 3 : mp - 9);
	f->year = yoe + era * 400 + (f->month <= 2);
}

/* icaltime_from_timet_with_zone(t, 0, utc) without gmtime_r (see above):
 * the same fields; converting from UTC to UTC changes nothing.  Years
 * libical cannot hold go through libical itself. */
static struct icaltimetype utc_icaltime(int64_t t)
{
	utc_fields f;
	utc_fields_of(t, &f);
	if (f.year < 1 || f.year > 9999)
		return icaltime_from_timet_with_zone((time_t)t, 0, icaltimezone_get_utc_timezone());
	struct icaltimetype u = icaltime_null_time();
	u.year = (int)f.year;
	u.month = f.month;
	u.day = f.day;
	u.hour = f.hour;
	u.minute = f.minute;
	u.second = f.second;
	u.is_date = 0;
	u.is_daylight = 0;
	u.zone = icaltimezone_get_utc_timezone();
	return u;
}

/* The offset (seconds east) of `tz` at the UTC instant `t`. */
static int tz_offset_at(icaltimezone *tz, int64_t t)
{
	if (tz == icaltimezone_get_utc_timezone())
		return 0;
	struct icaltimetype u = utc_icaltime(t);
	int dst = 0;
	return icaltimezone_get_utc_offset_of_utc_time(tz, &u, &dst);
}

int ws_tz_offset(const char *tzid, int64_t t)
{
	icaltimezone *tz = tz_get(tzid);
	return tz ? tz_offset_at(tz, t) : 0;
}

/*
 * The UTC instant of a floating local time in `tz`, per RFC 5545 3.3.5.
 * The candidate offsets are those in force a day before and a day after
 * (zones change at most once within two days); a candidate is right when
 * the zone really has that offset at the instant it gives.  Two right
 * answers: the time is ambiguous, take the earlier.  None: the time is in
 * a gap, read it with the offset before the gap.
 */
static int64_t local_to_utc(icaltimezone *tz, struct icaltimetype local, int *offset)
{
	local.zone = NULL;
	int64_t l = (int64_t)icaltime_as_timet(local);   /* the fields, read as UTC */
	if (tz == icaltimezone_get_utc_timezone()) {
		*offset = 0;
		return l;
	}
	int before = tz_offset_at(tz, l - DAY_S);
	int after = tz_offset_at(tz, l + DAY_S);
	int64_t t1 = l - before, t2 = l - after;
	/* The zone's offsets at t1 and t2 are asked once each and reused as
	 * the offset at the answer. */
	int o1 = tz_offset_at(tz, t1);
	bool ok1 = o1 == before;
	int o2 = 0;
	bool ok2 = false;
	if (before != after) {
		o2 = tz_offset_at(tz, t2);
		ok2 = o2 == after;
	}
	if (ok1 && ok2) {
		*offset = t1 < t2 ? o1 : o2;
		return t1 < t2 ? t1 : t2;
	}
	if (ok2) {
		*offset = o2;
		return t2;
	}
	*offset = o1;
	return t1;
}

bool ws_date_parse(const char *s, int *year, int *month, int *day)
{
	static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
		return false;
	for (int i = 0; i < 10; i++)
		if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
			return false;
	int y = atoi(s), m = atoi(s + 5), d = atoi(s + 8);
	if (y < 1 || m < 1 || m > 12 || d < 1)
		return false;
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	int max = mdays[m - 1] + (m == 2 && leap);
	if (d > max)
		return false;
	*year = y;
	*month = m;
	*day = d;
	return true;
}

static struct icaltimetype floating_time(int y, int mo, int d, int minute)
{
	struct icaltimetype t = icaltime_null_time();
	t.year = y;
	t.month = mo;
	t.day = d;
	t.hour = minute / 60;
	t.minute = minute % 60;
	t.second = 0;
	t.is_date = 0;
	t.zone = NULL;
	return t;
}

static void set_why(char *why, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_why(char *why, size_t size, const char *fmt, ...)
{
	if (!why || !size)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, size, fmt, ap);
	va_end(ap);
}

/*
 * Checks the parts we restrict before libical sees the rule, so that the
 * user gets a precise reason instead of libical's "malformed".
 */
static bool rrule_precheck(const char *rrule, char *why, size_t size)
{
	if (strncasecmp(rrule, "RRULE:", 6) == 0) {
		set_why(why, size, "remove the \"RRULE:\" prefix");
		return false;
	}
	char *copy = strdup(rrule);
	if (!copy) {
		set_why(why, size, "out of memory");
		return false;
	}
	bool ok = true, freq = false;
	char *save = NULL;
	for (char *part = strtok_r(copy, ";", &save); part && ok;
	     part = strtok_r(NULL, ";", &save)) {
		char *eq = strchr(part, '=');
		const char *value = eq ? eq + 1 : "";
		if (eq)
			*eq = '\0';
		if (strcasecmp(part, "DTSTART") == 0) {
			set_why(why, size, "DTSTART is not allowed (anchor and start set it)");
			ok = false;
		} else if (strcasecmp(part, "RSCALE") == 0) {
			set_why(why, size, "RSCALE is not supported");
			ok = false;
		} else if (strcasecmp(part, "BYHOUR") == 0 || strcasecmp(part, "BYMINUTE") == 0 ||
			   strcasecmp(part, "BYSECOND") == 0) {
			set_why(why, size, "%s is not allowed (start sets the time of day)", part);
			ok = false;
		} else if (strcasecmp(part, "FREQ") == 0) {
			freq = true;
			icalrecurrencetype_frequency f = icalrecur_string_to_freq(value);
			if (strcasecmp(value, "HOURLY") == 0 || strcasecmp(value, "MINUTELY") == 0 ||
			    strcasecmp(value, "SECONDLY") == 0) {
				set_why(why, size, "FREQ=%s is not allowed (a window recurs at most "
					"daily, at its start time)", value);
				ok = false;
			} else if (f == ICAL_NO_RECURRENCE &&
				   strcasecmp(value, "DAILY") != 0 && strcasecmp(value, "WEEKLY") != 0 &&
				   strcasecmp(value, "MONTHLY") != 0 && strcasecmp(value, "YEARLY") != 0) {
				set_why(why, size, "unknown frequency \"%s\"", value);
				ok = false;
			}
		}
	}
	if (ok && !freq) {
		set_why(why, size, "FREQ is missing");
		ok = false;
	}
	free(copy);
	return ok;
}

/* Parses and checks a rule.  libical reports errors through the global
 * icalerrno; the result's freq is what tells us whether parsing worked. */
static bool rrule_load(const char *rrule, struct icalrecurrencetype *out, char *why, size_t size)
{
	if (!rrule) {
		set_why(why, size, "the rule is missing");
		return false;
	}
	if (!rrule_precheck(rrule, why, size))
		return false;
	struct icalrecurrencetype r = icalrecurrencetype_from_string(rrule);
	if (r.rscale) {
		/* Refused above; free defensively if libical found one anyway. */
		icalmemory_free_buffer(r.rscale);
		r.rscale = NULL;
	}
	if (r.freq == ICAL_NO_RECURRENCE) {
		set_why(why, size, "not a valid RFC 5545 recurrence rule");
		return false;
	}
	if (r.freq != ICAL_DAILY_RECURRENCE && r.freq != ICAL_WEEKLY_RECURRENCE &&
	    r.freq != ICAL_MONTHLY_RECURRENCE && r.freq != ICAL_YEARLY_RECURRENCE) {
		set_why(why, size, "a window recurs at most daily, at its start time");
		return false;
	}
	icalrecur_iterator *it = icalrecur_iterator_new(r, floating_time(2000, 1, 1, 0));
	if (!it) {
		set_why(why, size, "the rule matches no date");
		return false;
	}
	icalrecur_iterator_free(it);
	*out = r;
	return true;
}

bool ws_rrule_valid(const char *rrule, char *why, size_t why_size)
{
	struct icalrecurrencetype r;
	return rrule_load(rrule, &r, why, why_size);
}

/* Makes UNTIL comparable with floating occurrences: a UTC UNTIL becomes the
 * local wall time in the window's zone, and a DATE UNTIL includes that
 * whole day (libical would stop at its midnight). */
static void until_to_local(struct icalrecurrencetype *r, icaltimezone *tz)
{
	if (icaltime_is_null_time(r->until))
		return;
	if (r->until.is_date) {
		r->until.is_date = 0;
		r->until.hour = 23;
		r->until.minute = 59;
		r->until.second = 59;
	} else if (icaltime_is_utc(r->until)) {
		icaltimezone_convert_time(&r->until, icaltimezone_get_utc_timezone(), tz);
	}
	r->until.zone = NULL;
}

typedef struct window_rule {
	struct icalrecurrencetype r;
	icaltimezone *tz;
	struct icaltimetype dtstart;
} window_rule;

static uint32_t memo_hash(const char *s);

/*
 * rrule_load for window_expand, remembered per thread.  A planner expands
 * thousands of distinct windows, a piece at a time, and they share a few
 * dozen rules; parsing and checking a rule (a libical iterator, which
 * opens an ICU calendar) cost as much as the expansion itself.  The cache
 * is a small open-addressed table in thread-local storage: nothing to lock
 * (the service plans on several threads at once) and nothing to free (a
 * parsed rule is plain data).  Long rules are not cached.
 */
#define RULE_SLOTS 16
#define RULE_TEXT_MAX 128

typedef struct rule_slot {
	char text[RULE_TEXT_MAX];
	bool used, ok;
	struct icalrecurrencetype r;
} rule_slot;

static _Thread_local rule_slot rule_slots[RULE_SLOTS];

static bool rrule_load_remembered(const char *rrule, struct icalrecurrencetype *out)
{
	size_t n = rrule ? strlen(rrule) : RULE_TEXT_MAX;
	if (n >= RULE_TEXT_MAX)
		return rrule_load(rrule, out, NULL, 0);
	/* Linear probing over the whole table (a fleet's dozen rules collide in
	 * a direct-mapped one); when it is full the home slot is replaced. */
	uint32_t home = memo_hash(rrule) % RULE_SLOTS;
	rule_slot *s = &rule_slots[home];
	for (uint32_t k = 0; k < RULE_SLOTS; k++) {
		rule_slot *p = &rule_slots[(home + k) % RULE_SLOTS];
		if (!p->used || strcmp(p->text, rrule) == 0) {
			s = p;
			break;
		}
	}
	if (!s->used || strcmp(s->text, rrule) != 0) {
		memcpy(s->text, rrule, n + 1);
		s->ok = rrule_load(rrule, &s->r, NULL, 0);
		s->used = true;
	}
	if (s->ok)
		*out = s->r;
	return s->ok;
}

static int window_rule_load(const ws_window *w, const char *zone, window_rule *out)
{
	const char *tzid = w->timezone ? w->timezone : zone ? zone : "UTC";
	out->tz = tz_get(tzid);
	if (!out->tz || !rrule_load_remembered(w->rrule, &out->r))
		return WS_EINVAL;
	int y, m, d;
	if (!ws_date_parse(w->anchor ? w->anchor : DEFAULT_ANCHOR, &y, &m, &d) ||
	    w->start_minute < 0 || w->start_minute >= 24 * 60 || w->duration_s <= 0)
		return WS_EINVAL;
	out->dtstart = floating_time(y, m, d, w->start_minute);
	until_to_local(&out->r, out->tz);
	return 0;
}

bool window_occurs(const ws_window *w, const char *zone, char *why, size_t why_size)
{
	window_rule wr;
	if (w->one_off)
		return true;
	if (window_rule_load(w, zone, &wr) != 0) {
		set_why(why, why_size, "the window cannot be expanded");
		return false;
	}
	icalrecur_iterator *it = icalrecur_iterator_new(wr.r, wr.dtstart);
	bool ok = it && !icaltime_is_null_time(icalrecur_iterator_next(it));
	if (it)
		icalrecur_iterator_free(it);
	if (!ok)
		set_why(why, why_size, "the rule has no occurrence from the anchor on");
	return ok;
}

/* An iterator positioned at most a few periods before `skip`, or at DTSTART
 * when skipping is not possible (see the comment at the top). */
static icalrecur_iterator *iterator_near(const window_rule *wr, struct icaltimetype skip)
{
	const struct icalrecurrencetype *r = &wr->r;
	struct icaltimetype ds = wr->dtstart;
	if (r->count > 0 || icaltime_compare(skip, ds) <= 0)
		return icalrecur_iterator_new(*r, ds);
	int interval = r->interval > 0 ? r->interval : 1;
	if (interval == 1) {
		icalrecur_iterator *it = icalrecur_iterator_new(*r, ds);
		if (it && !icalrecur_iterator_set_start(it, skip)) {
			icalrecur_iterator_free(it);
			it = icalrecur_iterator_new(*r, ds);
		}
		return it;
	}
	struct icaltimetype shifted = ds;
	if (r->freq == ICAL_DAILY_RECURRENCE || r->freq == ICAL_WEEKLY_RECURRENCE) {
		int64_t period = (int64_t)interval * (r->freq == ICAL_DAILY_RECURRENCE ? 1 : 7);
		int64_t days = ((int64_t)icaltime_as_timet(skip) - (int64_t)icaltime_as_timet(ds)) / DAY_S;
		icaltime_adjust(&shifted, (int)(days / period * period), 0, 0, 0);
	} else if (r->freq == ICAL_MONTHLY_RECURRENCE && ds.day <= 28) {
		int months = (skip.year - ds.year) * 12 + (skip.month - ds.month);
		int total = ds.month - 1 + months / interval * interval;
		shifted.year += total / 12;
		shifted.month = total % 12 + 1;
	} else if (r->freq == ICAL_YEARLY_RECURRENCE && !(ds.month == 2 && ds.day == 29)) {
		shifted.year += (skip.year - ds.year) / interval * interval;
	}
	return icalrecur_iterator_new(*r, shifted);
}

/*
 * A stateful expansion: one libical iterator kept alive, positioned near
 * `from` once (iterator_near), then stepped.  window_expand is this
 * iterator bounded by `until`, so both give the same occurrences.
 */
struct ws_window_iter {
	window_rule wr;
	icalrecur_iterator *it;   /* NULL for a one-off range or at the end */
	int64_t from, duration;
	bool one_off, done;
	ws_interval one;          /* the one-off range */
};

ws_window_iter *window_iter_new(const ws_window *w, const char *zone, int64_t from)
{
	if (!w)
		return NULL;
	ws_window_iter *x = calloc(1, sizeof(*x));
	if (!x)
		return NULL;
	x->from = from;
	if (w->one_off) {
		if (w->to_utc <= w->from_utc) {
			free(x);
			return NULL;
		}
		x->one_off = true;
		x->one = (ws_interval){ .start = w->from_utc, .end = w->to_utc, .utc_offset = 0 };
		x->done = !(w->to_utc > from);
		return x;
	}
	if (window_rule_load(w, zone, &x->wr) != 0) {
		free(x);
		return NULL;
	}
	x->duration = w->duration_s;

	/* An occurrence that ends after `from` starts after from - duration;
	 * two more days cover any UTC offset. */
	int64_t skip_utc = from - w->duration_s - 2 * DAY_S;
	if (skip_utc < -(int64_t)DAY_S * 365 * 3000)
		skip_utc = -(int64_t)DAY_S * 365 * 3000;
	struct icaltimetype day = icaltime_from_timet_with_zone((time_t)skip_utc, 0,
								icaltimezone_get_utc_timezone());
	struct icaltimetype skip = floating_time(day.year, day.month, day.day, w->start_minute);

	x->it = iterator_near(&x->wr, skip);
	if (!x->it) {
		free(x);
		return NULL;
	}
	return x;
}

int window_iter_next(ws_window_iter *x, ws_interval *out)
{
	if (!x || x->done)
		return 1;
	if (x->one_off) {
		*out = x->one;
		x->done = true;
		return 0;
	}
	for (;;) {
		struct icaltimetype t = icalrecur_iterator_next(x->it);
		if (icaltime_is_null_time(t)) {
			icalrecur_iterator_free(x->it);
			x->it = NULL;
			x->done = true;
			return 1;
		}
		int off;
		int64_t start = local_to_utc(x->wr.tz, t, &off);
		int64_t end = start + x->duration;
		if (end <= x->from)
			continue;
		*out = (ws_interval){ .start = start, .end = end, .utc_offset = off };
		return 0;
	}
}

void window_iter_free(ws_window_iter *x)
{
	if (!x)
		return;
	if (x->it)
		icalrecur_iterator_free(x->it);
	free(x);
}

int window_expand(const ws_window *w, const char *zone, int64_t from,
		  int64_t until, ws_interval_cb cb, void *arg)
{
	if (!w || !cb)
		return WS_EINVAL;
	ws_window_iter *x = window_iter_new(w, zone, from);
	if (!x)
		return WS_EINVAL;
	ws_interval iv;
	while (window_iter_next(x, &iv) == 0) {
		if (iv.start >= until)
			break;
		if (cb(arg, &iv) != 0)
			break;
	}
	window_iter_free(x);
	return 0;
}

static int next_cb(void *arg, const ws_interval *iv)
{
	*(ws_interval *)arg = *iv;
	return 1;
}

int window_next(const ws_window *w, const char *zone, int64_t from,
		int64_t until, ws_interval *out)
{
	/* An interval always ends after it starts, so INT64_MIN marks "none". */
	ws_interval iv = { .start = 0, .end = INT64_MIN, .utc_offset = 0 };
	int rc = window_expand(w, zone, from, until, next_cb, &iv);
	if (rc != 0)
		return rc;
	if (iv.end == INT64_MIN)
		return 1;
	*out = iv;
	return 0;
}

/* Shared dates --------------------------------------------------------------
 * A validated rule recurs at most daily and has no BYHOUR, BYMINUTE or
 * BYSECOND, so the local dates it yields depend only on the rule and its
 * anchor date, not on the start time or the zone: 02:00 and 03:30 windows of
 * FREQ=WEEKLY;BYDAY=SA in Berlin and in Chicago fall on the same local dates.
 * The exception is an UNTIL with a time of day (compared with the local start
 * time, after conversion from UTC for a UTC UNTIL).  A planner lists the
 * dates once per (rule, anchor) and converts each to an instant per (start
 * time, zone) with window_local_to_utc, the conversion window_iter_next
 * uses, so the occurrences are the same as window_expand's. */
struct ws_window_days {
	window_rule wr;
	icalrecur_iterator *it;
};

bool window_days_shareable(const ws_window *w)
{
	struct icalrecurrencetype r;
	if (!w || w->one_off || !w->rrule || !rrule_load_remembered(w->rrule, &r))
		return false;
	return icaltime_is_null_time(r.until) || r.until.is_date;
}

ws_window_days *window_days_new(const ws_window *w, int32_t from_day)
{
	if (!window_days_shareable(w))
		return NULL;
	ws_window_days *x = calloc(1, sizeof(*x));
	if (!x)
		return NULL;
	if (window_rule_load(w, "UTC", &x->wr) != 0) {
		free(x);
		return NULL;
	}
	struct icaltimetype day = icaltime_from_timet_with_zone((time_t)((int64_t)from_day * DAY_S), 0,
								icaltimezone_get_utc_timezone());
	x->it = iterator_near(&x->wr, floating_time(day.year, day.month, day.day, w->start_minute));
	if (!x->it) {
		free(x);
		return NULL;
	}
	return x;
}

int window_days_next(ws_window_days *x, ws_local_day *out)
{
	if (!x || !x->it)
		return 1;
	struct icaltimetype t = icalrecur_iterator_next(x->it);
	if (icaltime_is_null_time(t)) {
		icalrecur_iterator_free(x->it);
		x->it = NULL;
		return 1;
	}
	struct icaltimetype d = floating_time(t.year, t.month, t.day, 0);
	out->day = (int32_t)((int64_t)icaltime_as_timet(d) / DAY_S);
	out->year = (int16_t)t.year;
	out->month = (int8_t)t.month;
	out->mday = (int8_t)t.day;
	return 0;
}

void window_days_free(ws_window_days *x)
{
	if (!x)
		return;
	if (x->it)
		icalrecur_iterator_free(x->it);
	free(x);
}

const ws_zone *ws_zone_find(const char *tzid)
{
	return (const ws_zone *)tz_get(tzid ? tzid : "UTC");
}

int ws_zone_offset(const ws_zone *zone, int64_t t)
{
	return tz_offset_at((icaltimezone *)zone, t);
}

int64_t window_local_to_utc(const ws_zone *zone, const ws_local_day *day, int minute, int *offset)
{
	return local_to_utc((icaltimezone *)zone, floating_time(day->year, day->month, day->mday, minute),
			    offset);
}

/* RFC 3339 ---------------------------------------------------------------- */

static bool digits(const char *s, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

int ws_time_parse(const char *s, int64_t *out)
{
	if (!s || strlen(s) < 20)
		return WS_EINVAL;
	char date[11];
	memcpy(date, s, 10);
	date[10] = '\0';
	int y, mo, d, h, mi, sec;
	if (!ws_date_parse(date, &y, &mo, &d))
		return WS_EINVAL;
	if (s[10] != 'T' && s[10] != 't' && s[10] != ' ')
		return WS_EINVAL;
	const char *p = s + 11;
	if (!digits(p, 2, &h) || p[2] != ':' || !digits(p + 3, 2, &mi) || p[5] != ':' ||
	    !digits(p + 6, 2, &sec))
		return WS_EINVAL;
	/* A leap second (:60) cannot be represented in unix time: refused. */
	if (h > 23 || mi > 59 || sec > 59)
		return WS_EINVAL;
	p += 8;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return WS_EINVAL;
		while (*p >= '0' && *p <= '9')
			p++;   /* fractions are dropped: we work in whole seconds */
	}
	int offset = 0;
	if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
		offset = 0;
	} else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
		int oh, om;
		if (!digits(p + 1, 2, &oh) || !digits(p + 4, 2, &om) || oh > 23 || om > 59)
			return WS_EINVAL;
		offset = (oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
	} else {
		return WS_EINVAL;
	}
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d,
			 .tm_hour = h, .tm_min = mi, .tm_sec = sec };
	*out = (int64_t)timegm(&tm) - offset;
	return 0;
}

static char *put2(char *p, int v)
{
	p[0] = (char)('0' + v / 10 % 10);
	p[1] = (char)('0' + v % 10);
	return p + 2;
}

/* Digits are written directly: a plan of 100,000 tenants formats half a
 * million times, and snprintf was a tenth of writing one. */
void ws_time_format(int64_t t, int utc_offset, bool utc_z, char *buf, size_t size)
{
	utc_fields f;
	utc_fields_of(t + utc_offset, &f);   /* no gmtime_r: see utc_fields_of */
	if (f.year < 0 || f.year > 9999) {
		snprintf(buf, size, "invalid-time");
		return;
	}
	int year = (int)f.year;
	char tmp[32], *p = tmp;
	p = put2(p, year / 100);
	p = put2(p, year % 100);
	*p++ = '-';
	p = put2(p, f.month);
	*p++ = '-';
	p = put2(p, f.day);
	*p++ = 'T';
	p = put2(p, f.hour);
	*p++ = ':';
	p = put2(p, f.minute);
	*p++ = ':';
	p = put2(p, f.second);
	if (utc_offset == 0 && utc_z) {
		*p++ = 'Z';
	} else {
		int a = utc_offset < 0 ? -utc_offset : utc_offset;
		*p++ = utc_offset < 0 ? '-' : '+';
		p = put2(p, (a / 3600) % 100);
		*p++ = ':';
		p = put2(p, (a / 60) % 60);
	}
	if (size == 0)
		return;
	size_t n = (size_t)(p - tmp) < size - 1 ? (size_t)(p - tmp) : size - 1;
	memcpy(buf, tmp, n);
	buf[n] = '\0';
}

/* Per-parse cache ----------------------------------------------------------- */

/*
 * Small tables per kind of answer.  A fleet has a few dozen distinct zones
 * and rules, so they stay tiny; they are freed with the cache at the end of
 * the parse.  Zones and rules are looked up by text; in front of that, a
 * direct-mapped table remembers the entry found for each string address,
 * because the model's strings are interned and the same few addresses come
 * back for every tenant (strings handed to a cache must therefore stay
 * unchanged while it lives, as the model's do).
 */
typedef struct memo_entry {
	char *key;
	uint32_t hash;
	bool ok;
	char why[200];
	icaltimezone *tz;                    /* zone entries */
	struct icalrecurrencetype r;         /* rule entries, when ok */
} memo_entry;

typedef struct memo {
	memo_entry **slots;
	size_t cap, n;
	struct {
		const char *s;
		memo_entry *e;
	} front[64];
} memo;

/* A window_occurs answer: for a rule, an anchor and, when the rule has
 * UNTIL, a zone and a time of day (see window_cache_occurs). */
typedef struct occurs_entry {
	const memo_entry *rule, *zone;       /* zone NULL without UNTIL */
	char *anchor;
	int minute;                          /* -1 without UNTIL */
	uint32_t hash;
	bool ok;
	const char *why;
} occurs_entry;

struct window_cache {
	memo tz, rrule;
	occurs_entry **occurs;
	size_t occurs_cap, n_occurs;
};

static uint32_t memo_hash(const char *s)
{
	uint32_t h = 2166136261u;   /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

/* Grows an open-addressing table of pointers to `type` entries (each with a
 * uint32_t `hash`) so that it stays at most half full.  A macro so that each
 * table keeps its own element type.  Aborts when memory runs out, like the
 * model's arena. */
#define TABLE_RESERVE(slots_, cap_, n_, type)                                   \
	do {                                                                    \
		if (((n_) + 1) * 2 <= (cap_))                                   \
			break;                                                  \
		size_t tcap = (cap_) ? (cap_) * 2 : 64;                         \
		type **tslots = calloc(tcap, sizeof(*tslots));                  \
		if (!tslots)                                                    \
			abort();                                                \
		for (size_t ti = 0; ti < (cap_); ti++) {                        \
			type *te = (slots_)[ti];                                \
			if (!te)                                                \
				continue;                                       \
			size_t tj = te->hash & (tcap - 1);                      \
			while (tslots[tj])                                      \
				tj = (tj + 1) & (tcap - 1);                     \
			tslots[tj] = te;                                        \
		}                                                               \
		free(slots_);                                                   \
		(slots_) = tslots;                                              \
		(cap_) = tcap;                                                  \
	} while (0)

/* The entry for `key`, or NULL after setting *slot_out to where a new one
 * goes.  Aborts when memory runs out, like the model's arena. */
static memo_entry *memo_find(memo *m, const char *key, uint32_t h, memo_entry ***slot_out)
{
	TABLE_RESERVE(m->slots, m->cap, m->n, memo_entry);
	size_t i = h & (m->cap - 1);
	for (; m->slots[i]; i = (i + 1) & (m->cap - 1))
		if (m->slots[i]->hash == h && strcmp(m->slots[i]->key, key) == 0)
			return m->slots[i];
	*slot_out = &m->slots[i];
	return NULL;
}

/* The entry for `key`; `fill` computes a new one. */
static memo_entry *memo_get(memo *m, const char *key, void (*fill)(memo_entry *e))
{
	size_t f = ((uintptr_t)key >> 3 ^ (uintptr_t)key >> 9) & 63;
	if (m->front[f].s == key)
		return m->front[f].e;
	uint32_t h = memo_hash(key);
	memo_entry **slot, *e = memo_find(m, key, h, &slot);
	if (!e) {
		e = calloc(1, sizeof(*e));
		if (!e || !(e->key = strdup(key)))
			abort();
		e->hash = h;
		*slot = e;
		m->n++;
		fill(e);
	}
	m->front[f].s = key;
	m->front[f].e = e;
	return e;
}

static void memo_free(memo *m)
{
	for (size_t i = 0; i < m->cap; i++) {
		if (m->slots[i]) {
			free(m->slots[i]->key);
			free(m->slots[i]);
		}
	}
	free(m->slots);
}

window_cache *window_cache_new(void)
{
	window_cache *wc = calloc(1, sizeof(*wc));
	if (!wc)
		abort();
	return wc;
}

void window_cache_free(window_cache *wc)
{
	if (!wc)
		return;
	memo_free(&wc->tz);
	memo_free(&wc->rrule);
	for (size_t i = 0; i < wc->occurs_cap; i++) {
		if (wc->occurs[i]) {
			free(wc->occurs[i]->anchor);
			free(wc->occurs[i]);
		}
	}
	free(wc->occurs);
	free(wc);
}

static void fill_tz(memo_entry *e)
{
	e->tz = tz_get(e->key);
}

static void fill_rrule(memo_entry *e)
{
	e->ok = rrule_load(e->key, &e->r, e->why, sizeof(e->why));
}

bool window_cache_tz_valid(window_cache *wc, const char *tzid)
{
	if (!wc || !tzid)
		return ws_tz_valid(tzid);
	return memo_get(&wc->tz, tzid, fill_tz)->tz != NULL;
}

bool window_cache_rrule_valid(window_cache *wc, const char *rrule, char *why, size_t why_size)
{
	if (!wc || !rrule)
		return ws_rrule_valid(rrule, why, why_size);
	const memo_entry *e = memo_get(&wc->rrule, rrule, fill_rrule);
	if (!e->ok)
		set_why(why, why_size, "%s", e->why);
	return e->ok;
}

static bool occurs_same(const occurs_entry *e, const memo_entry *rule, const memo_entry *zone,
			const char *anchor, int minute)
{
	return e->rule == rule && e->zone == zone && e->minute == minute &&
	       strcmp(e->anchor, anchor) == 0;
}

/* The answer of window_occurs for a loaded rule, zone and anchor. */
static bool occurs_compute(const memo_entry *rule, icaltimezone *tz, const char *anchor,
			   int minute, const char **why)
{
	int y, m, d;
	if (!ws_date_parse(anchor, &y, &m, &d)) {
		*why = "the window cannot be expanded";
		return false;
	}
	struct icalrecurrencetype r = rule->r;
	until_to_local(&r, tz);
	icalrecur_iterator *it = icalrecur_iterator_new(r, floating_time(y, m, d, minute));
	bool ok = it && !icaltime_is_null_time(icalrecur_iterator_next(it));
	if (it)
		icalrecur_iterator_free(it);
	*why = ok ? NULL : "the rule has no occurrence from the anchor on";
	return ok;
}

/*
 * window_occurs, remembered.  The answer depends on the rule, the anchor
 * and, only through UNTIL (which is compared with occurrences in the
 * window's local time), on the zone and the time of day: without UNTIL the
 * iterator's dates do not depend on either (BYHOUR, BYMINUTE, BYSECOND and
 * sub-daily frequencies are refused), so those stay out of the key and a
 * fleet of 100,000 tenants asks libical a few dozen times instead of
 * 150,000.
 */
bool window_cache_occurs(window_cache *wc, const ws_window *w, const char *zone, char *why,
			 size_t why_size)
{
	if (!wc || !w->rrule)
		return window_occurs(w, zone, why, why_size);
	if (w->one_off)
		return true;
	const char *tzid = w->timezone ? w->timezone : zone ? zone : "UTC";
	const memo_entry *rule = memo_get(&wc->rrule, w->rrule, fill_rrule);
	const memo_entry *tz = memo_get(&wc->tz, tzid, fill_tz);
	if (!tz->tz || !rule->ok || w->start_minute < 0 || w->start_minute >= 24 * 60 ||
	    w->duration_s <= 0) {
		set_why(why, why_size, "the window cannot be expanded");
		return false;
	}
	const char *anchor = w->anchor ? w->anchor : DEFAULT_ANCHOR;
	bool until = !icaltime_is_null_time(rule->r.until);
	const memo_entry *zkey = until ? tz : NULL;
	int minute = until ? w->start_minute : -1;
	uint32_t h = memo_hash(anchor) ^ (uint32_t)((uintptr_t)rule >> 4) * 2654435761u ^
		     (uint32_t)((uintptr_t)zkey >> 4) * 40503u ^ (uint32_t)minute * 97u;
	TABLE_RESERVE(wc->occurs, wc->occurs_cap, wc->n_occurs, occurs_entry);
	size_t mask = wc->occurs_cap - 1, i = h & mask;
	occurs_entry *e;
	while ((e = wc->occurs[i]) && !(e->hash == h && occurs_same(e, rule, zkey, anchor, minute)))
		i = (i + 1) & mask;
	if (!e) {
		e = calloc(1, sizeof(*e));
		if (!e || !(e->anchor = strdup(anchor)))
			abort();
		e->rule = rule;
		e->zone = zkey;
		e->minute = minute;
		e->hash = h;
		e->ok = occurs_compute(rule, tz->tz, anchor, w->start_minute, &e->why);
		wc->occurs[i] = e;
		wc->n_occurs++;
	}
	if (!e->ok)
		set_why(why, why_size, "%s", e->why);
	return e->ok;
}
