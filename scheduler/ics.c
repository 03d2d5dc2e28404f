/*
 * ics.c - the windows feed as iCalendar (see ics.h).
 *
 * Everything RFC 5545 asks of the text (CRLF, folding at 75 octets without
 * splitting a UTF-8 character, escaping of commas, semicolons, backslashes
 * and newlines in TEXT values, the date-time forms) is libical's job: this
 * file only decides which properties an event has and what they say.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jansson.h>
#include <libical/ical.h>
#include "wavesched/ics.h"
#include "wavesched/window.h"

#define PRODID "-//wavesched//tenant maintenance windows//EN"
/* How often a subscribed calendar should fetch the feed again. */
#define PUBLISHED_TTL "PT1H"

typedef struct ics_ctx {
	char *err;
	size_t err_size;
	char where[48];     /* "windows[3]" */
} ics_ctx;

static void fail(ics_ctx *x, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void fail(ics_ctx *x, const char *field, const char *fmt, ...)
{
	char msg[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(x->err, x->err_size, "%s%s%s: %s", x->where, *x->where ? "." : "", field, msg);
}

/* A required string member; NULL (and the error set) when missing. */
static const char *need_str(ics_ctx *x, const json_t *o, const char *field)
{
	const char *s = json_string_value(json_object_get(o, field));
	if (!s)
		fail(x, field, "missing or not a string");
	return s;
}

/* An optional string member: NULL when absent or null; false (and the
 * error set) when present with another type. */
static bool opt_str(ics_ctx *x, const json_t *o, const char *field, const char **out)
{
	const json_t *v = json_object_get(o, field);
	*out = json_string_value(v);
	if (v && !json_is_null(v) && !*out) {
		fail(x, field, "not a string");
		return false;
	}
	return true;
}

static bool need_int(ics_ctx *x, const json_t *o, const char *field, long long min, long long *out)
{
	const json_t *v = json_object_get(o, field);
	if (!json_is_integer(v) || json_integer_value(v) < min) {
		fail(x, field, "missing or not an integer >= %lld", min);
		return false;
	}
	*out = (long long)json_integer_value(v);
	return true;
}

/* An RFC 3339 time; its offset (seconds east) when `offset` is given. */
static bool parse_time(const char *s, int64_t *t, int *offset)
{
	if (!s || ws_time_parse(s, t) != 0)
		return false;
	if (offset) {
		/* ws_time_parse has accepted the text, so it ends in "Z" or in
		 * "+HH:MM" / "-HH:MM". */
		size_t n = strlen(s);
		if (s[n - 1] == 'Z' || s[n - 1] == 'z') {
			*offset = 0;
		} else {
			const char *p = s + n - 6;
			int v = ((p[1] - '0') * 10 + (p[2] - '0')) * 3600 + ((p[4] - '0') * 10 + (p[5] - '0')) * 60;
			*offset = *p == '-' ? -v : v;
		}
	}
	return true;
}

static bool need_time(ics_ctx *x, const json_t *o, const char *field, int64_t *t)
{
	const char *s = need_str(x, o, field);
	if (!s)
		return false;
	if (!parse_time(s, t, NULL)) {
		fail(x, field, "\"%s\" is not an RFC 3339 time", s);
		return false;
	}
	return true;
}

static struct icaltimetype utc_time(int64_t t)
{
	return icaltime_from_timet_with_zone((time_t)t, 0, icaltimezone_get_utc_timezone());
}

/* "Sat 5 Dec 2026 23:00" in the offset the time was written with. */
static void local_text(const char *rfc3339, bool with_date, char *buf, size_t size)
{
	int64_t t;
	int off;
	if (!parse_time(rfc3339, &t, &off)) {
		snprintf(buf, size, "%s", rfc3339 ? rfc3339 : "?");
		return;
	}
	time_t lt = (time_t)(t + off);
	struct tm tm;
	gmtime_r(&lt, &tm);
	strftime(buf, size, with_date ? "%a %-d %b %Y %H:%M" : "%H:%M", &tm);
}

/* "UTC-06:00" for the offset a time was written with. */
static void offset_text(const char *rfc3339, char *buf, size_t size)
{
	int64_t t;
	int off;
	if (!parse_time(rfc3339, &t, &off)) {
		snprintf(buf, size, "UTC");
		return;
	}
	unsigned a = (unsigned)(off < 0 ? -off : off) % (24 * 3600);
	snprintf(buf, size, "UTC%c%02u:%02u", off < 0 ? '-' : '+', a / 3600, (a % 3600) / 60);
}

/* A window in the tenant's zone: "Sat 5 Dec 2026 23:00 to Sun 6 Dec 2026
 * 02:00 (America/Chicago, UTC-06:00)"; the end's date only when another day. */
static void window_text(const char *start, const char *end, const char *zone, char *buf, size_t size)
{
	char s[64], e[64], off[16];
	local_text(start, true, s, sizeof(s));
	local_text(end, true, e, sizeof(e));
	offset_text(start, off, sizeof(off));
	/* same day when the date parts agree ("Sat 5 Dec 2026") */
	const char *sd = strrchr(s, ' '), *ed = strrchr(e, ' ');
	bool same_day = sd && ed && sd - s == ed - e && strncmp(s, e, (size_t)(sd - s)) == 0;
	snprintf(buf, size, "%s to %s (%s, %s)", s, same_day ? ed + 1 : e, zone, off);
}

static const char *dep_words(const char *state)
{
	static const struct { const char *state, *words; } w[] = {
		{ "scheduled", "scheduled; the backup check comes first" },
		{ "waiting_window", "waiting for this window" },
		{ "deploying", "being updated now" },
		{ "verifying", "updated; its health is being checked" },
		{ "healthy", "updated and healthy" },
		{ "failed", "the update failed" },
		{ "rolling_back", "being returned to the previous version" },
		{ "rolled_back", "returned to the previous version" },
		{ "skipped", "not updated in this rollout" },
	};
	for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++)
		if (strcmp(w[i].state, state) == 0)
			return w[i].words;
	return state;
}

static const char *rollout_words(const char *state)
{
	static const struct { const char *state, *words; } w[] = {
		{ "planned", "planned and not started yet: this window is tentative" },
		{ "approved", "started" },
		{ "running", "running" },
		{ "paused", "paused by the platform team" },
		{ "preempted", "on hold while an urgent release goes first" },
		{ "completed", "completed" },
		{ "halted", "halted" },
		{ "aborted", "aborted" },
		{ "rolled_back", "rolled back" },
	};
	for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++)
		if (strcmp(w[i].state, state) == 0)
			return w[i].words;
	return state;
}

/* The DESCRIPTION: plain sentences, one per line. */
static char *description(const json_t *doc, const json_t *w, const char *release,
			 long long wave_index, const char *wave_name)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	if (!f)
		return NULL;
	const char *name = json_string_value(json_object_get(doc, "name"));
	const char *tenant = json_string_value(json_object_get(doc, "tenant"));
	const char *zone = json_string_value(json_object_get(doc, "zone"));
	const char *state = json_string_value(json_object_get(w, "state"));
	const char *rstate = json_string_value(json_object_get(w, "rollout_state"));
	const char *rreason = json_string_value(json_object_get(w, "rollout_reason"));
	const char *prev = json_string_value(json_object_get(w, "previous_version"));
	const char *policy = json_string_value(json_object_get(w, "policy"));
	const char *cancel = json_string_value(json_object_get(w, "cancel_reason"));
	char when[200];
	window_text(json_string_value(json_object_get(w, "window_start")),
		    json_string_value(json_object_get(w, "window_end")), zone ? zone : "UTC", when, sizeof(when));

	if (cancel)
		fprintf(f, "CANCELLED: %s.\n", cancel);
	fprintf(f, "%s (%s) is to be updated to %s%s%s during this maintenance window.\n",
		name ? name : tenant, tenant, release, prev ? " from " : "", prev ? prev : "");
	fprintf(f, "Window: %s.\n", when);
	fprintf(f, "Rollout %lld of %s%s%s is %s%s%s; this tenant is in wave %lld (%s).\n",
		(long long)json_integer_value(json_object_get(w, "rollout")), release,
		policy ? ", policy " : "", policy ? policy : "", rstate ? rollout_words(rstate) : "in an unknown state",
		rreason && *rreason ? ": " : "", rreason && *rreason ? rreason : "", wave_index, wave_name);
	const char *sreason = json_string_value(json_object_get(w, "state_reason"));
	if (state)
		fprintf(f, "This tenant: %s%s%s%s.\n", dep_words(state), sreason && *sreason ? " (" : "",
			sreason && *sreason ? sreason : "", sreason && *sreason ? ")" : "");
	size_t i;
	const json_t *r;
	const json_t *reasons = json_object_get(w, "reasons");
	if (json_array_size(reasons)) {
		fprintf(f, "Why this window:");
		json_array_foreach(reasons, i, r) {
			const char *s = json_string_value(r);
			fprintf(f, "%s %s", i ? ";" : "", s ? s : "(a reason that is not text)");
		}
		fprintf(f, ".\n");
	}
	const json_t *moves = json_object_get(w, "moves");
	json_array_foreach(moves, i, r) {
		const char *fs = json_string_value(json_object_get(r, "from_start"));
		const char *fe = json_string_value(json_object_get(r, "from_end"));
		const char *ts = json_string_value(json_object_get(r, "to_start"));
		const char *te = json_string_value(json_object_get(r, "to_end"));
		const char *why = json_string_value(json_object_get(r, "reason"));
		char from[200], to[200];
		if (fs && fe)
			window_text(fs, fe, zone ? zone : "UTC", from, sizeof(from));
		else
			snprintf(from, sizeof(from), "no window");
		if (ts && te)
			window_text(ts, te, zone ? zone : "UTC", to, sizeof(to));
		else
			snprintf(to, sizeof(to), "an unknown window");
		fprintf(f, "Moved (%zu of %zu) from %s to %s, because: %s.\n", i + 1, json_array_size(moves),
			from, to, why ? why : "no reason recorded");
	}
	if (fclose(f) != 0) {
		free(out);
		return NULL;
	}
	/* No trailing newline: it would become a trailing "\n" in the value. */
	if (len && out[len - 1] == '\n')
		out[len - 1] = '\0';
	return out;
}

static icalproperty *x_prop(const char *name, const char *value)
{
	icalproperty *p = icalproperty_new_x(value);
	icalproperty_set_x_name(p, name);
	return p;
}

/* One VEVENT, or NULL with the error set; *skip when the window has no
 * time and no event can be made of it. */
static icalcomponent *window_event(ics_ctx *x, const json_t *doc, const json_t *w, int64_t stamp,
				   bool *skip)
{
	*skip = false;
	if (!json_is_object(w)) {
		snprintf(x->err, x->err_size, "%s: not an object", x->where);
		return NULL;
	}
	long long rollout, seq, wave_index;
	const char *tenant = json_string_value(json_object_get(doc, "tenant"));
	const char *release = need_str(x, w, "release");
	const char *kind, *status_s, *wave_name, *start_s, *end_s, *updated_s;
	const json_t *wave = json_object_get(w, "wave");
	if (!need_int(x, w, "rollout", 1, &rollout) || !release || !opt_str(x, w, "kind", &kind) ||
	    !need_int(x, w, "sequence", 0, &seq) || !(status_s = need_str(x, w, "status")) ||
	    !opt_str(x, w, "window_start_utc", &start_s) || !opt_str(x, w, "window_end_utc", &end_s) ||
	    !opt_str(x, w, "updated_at", &updated_s))
		return NULL;
	if (!json_is_object(wave)) {
		fail(x, "wave", "missing or not an object");
		return NULL;
	}
	const json_t *wi = json_object_get(wave, "index");
	wave_name = json_string_value(json_object_get(wave, "name"));
	if (!json_is_integer(wi) || json_integer_value(wi) < 0) {
		fail(x, "wave.index", "missing or not an integer >= 0");
		return NULL;
	}
	if (!wave_name) {
		fail(x, "wave.name", "missing or not a string");
		return NULL;
	}
	wave_index = (long long)json_integer_value(wi);
	icalproperty_status status;
	if (strcmp(status_s, "CONFIRMED") == 0)
		status = ICAL_STATUS_CONFIRMED;
	else if (strcmp(status_s, "TENTATIVE") == 0)
		status = ICAL_STATUS_TENTATIVE;
	else if (strcmp(status_s, "CANCELLED") == 0)
		status = ICAL_STATUS_CANCELLED;
	else {
		fail(x, "status", "\"%s\" is not TENTATIVE, CONFIRMED or CANCELLED", status_s);
		return NULL;
	}
	if (!start_s || !end_s) {
		*skip = true;
		return NULL;
	}
	int64_t start, end, updated = stamp;
	if (!need_time(x, w, "window_start_utc", &start) || !need_time(x, w, "window_end_utc", &end) ||
	    (updated_s && !need_time(x, w, "updated_at", &updated)))
		return NULL;
	if (end <= start) {
		fail(x, "window_end_utc", "the window ends before it starts");
		return NULL;
	}
	if (seq > 1000000) {
		fail(x, "sequence", "%lld is not a plausible revision number", seq);
		return NULL;
	}

	char uid[160], summary[400];
	snprintf(uid, sizeof(uid), "rollout-%lld-tenant-%s@wavesched", rollout, tenant);
	bool urgent = kind && strcmp(kind, "urgent") == 0;
	snprintf(summary, sizeof(summary), "%s%s %s \u2014 maintenance window (wave %lld: %s)",
		 status == ICAL_STATUS_CANCELLED ? "Cancelled: " : "",
		 urgent ? "Urgent Odoo update" : "Odoo update", release, wave_index, wave_name);
	char *desc = description(doc, w, release, wave_index, wave_name);
	if (!desc) {
		snprintf(x->err, x->err_size, "%s: out of memory", x->where);
		return NULL;
	}
	icalcomponent *ev = icalcomponent_vanew(ICAL_VEVENT_COMPONENT,
		icalproperty_new_uid(uid),
		icalproperty_new_dtstamp(utc_time(stamp)),
		icalproperty_new_dtstart(utc_time(start)),
		icalproperty_new_dtend(utc_time(end)),
		icalproperty_new_sequence((int)seq),
		icalproperty_new_status(status),
		icalproperty_new_summary(summary),
		icalproperty_new_description(desc),
		icalproperty_new_lastmodified(utc_time(updated)),
		/* The window blocks the tenant's time: the ERP may be down. */
		icalproperty_new_transp(status == ICAL_STATUS_CANCELLED ? ICAL_TRANSP_TRANSPARENT
									 : ICAL_TRANSP_OPAQUE),
		icalproperty_new_categories("Maintenance"),
		(void *)0);
	free(desc);
	return ev;
}

char *ics_windows_render(const json_t *doc, size_t *len, char *err, size_t err_size)
{
	ics_ctx x = { .err = err, .err_size = err_size };
	if (err_size)
		err[0] = '\0';
	if (!json_is_object(doc)) {
		snprintf(err, err_size, "the windows document is not an object");
		return NULL;
	}
	const char *tenant = need_str(&x, doc, "tenant");
	const char *name, *zone, *gen;
	if (!tenant || !opt_str(&x, doc, "name", &name) || !(zone = need_str(&x, doc, "zone")) ||
	    !(gen = need_str(&x, doc, "generated_at")))
		return NULL;
	int64_t stamp;
	if (!need_time(&x, doc, "generated_at", &stamp))
		return NULL;
	const json_t *windows = json_object_get(doc, "windows");
	if (!json_is_array(windows)) {
		fail(&x, "windows", "missing or not an array");
		return NULL;
	}

	char calname[300];
	snprintf(calname, sizeof(calname), "Maintenance windows: %s (%s)", name ? name : tenant, tenant);
	icalcomponent *cal = icalcomponent_vanew(ICAL_VCALENDAR_COMPONENT,
		icalproperty_new_prodid(PRODID),
		icalproperty_new_version("2.0"),
		icalproperty_new_calscale("GREGORIAN"),
		icalproperty_new_method(ICAL_METHOD_PUBLISH),
		x_prop("X-WR-CALNAME", calname),
		x_prop("X-WR-TIMEZONE", zone),
		x_prop("X-PUBLISHED-TTL", PUBLISHED_TTL),
		(void *)0);
	size_t i;
	const json_t *w;
	json_array_foreach(windows, i, w) {
		snprintf(x.where, sizeof(x.where), "windows[%zu]", i);
		bool skip;
		icalcomponent *ev = window_event(&x, doc, w, stamp, &skip);
		if (!ev && !skip) {
			icalcomponent_free(cal);
			return NULL;
		}
		if (ev)
			icalcomponent_add_component(cal, ev);
	}
	char *text = icalcomponent_as_ical_string_r(cal);
	icalcomponent_free(cal);
	if (!text) {
		snprintf(err, err_size, "libical could not write the calendar: %s", icalerror_strerror(icalerrno));
		return NULL;
	}
	/* libical's buffers are plain malloc unless the application swaps the
	 * allocator, which this one does not: hand it over as ours. */
	*len = strlen(text);
	return text;
}
