/*
 * test_ics.c - the windows feed (ics.c): a calendar built from a windows
 * document is parsed back with libical's parser and every property of
 * every event is checked; the raw text is checked for RFC 5545's line rules
 * (CRLF, folding at 75 octets without splitting a UTF-8 character) and for
 * the escaping of commas, semicolons, backslashes and newlines; documents
 * of the wrong shape are refused with the field named.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>
#include "wavesched/ics.h"
#include "wstest.h"

/* Three windows of one tenant as ws_tenant_windows() writes them: a
 * confirmed one that moved twice, a tentative one, a cancelled one, and a
 * window without times (left out of the feed). */
static const char DOC[] =
	"{\"tenant\": \"clinic-north\", \"name\": \"Clinic North, Finance; Billing\\\\Ops\","
	" \"zone\": \"America/Chicago\", \"generated_at\": \"2026-11-27T10:00:00Z\","
	" \"windows\": ["
	"  {\"rollout\": 7, \"rollout_state\": \"running\", \"rollout_reason\": null, \"release\": \"17.0.4\","
	"   \"kind\": \"standard\", \"policy\": \"standard-quarterly\","
	"   \"wave\": {\"index\": 2, \"name\": \"shared-low\", \"state\": \"deploying\"},"
	"   \"state\": \"waiting_window\", \"state_reason\": null,"
	"   \"window_start\": \"2026-12-12T23:00:00-06:00\", \"window_end\": \"2026-12-13T02:00:00-06:00\","
	"   \"window_start_utc\": \"2026-12-13T05:00:00Z\", \"window_end_utc\": \"2026-12-13T08:00:00Z\","
	"   \"attempt\": 0, \"previous_version\": \"17.0.3\", \"target_version\": \"17.0.4\","
	"   \"reasons\": [\"criticality standard, in wave shared-low\", \"window: cluster, Saturday 23:00\"],"
	"   \"moves\": [{\"reason\": \"window too short: it ends 2026-12-06T08:00:00Z, the deployment needs 15m\","
	"               \"from_start\": \"2026-12-05T23:00:00-06:00\", \"from_end\": \"2026-12-06T02:00:00-06:00\","
	"               \"to_start\": \"2026-12-12T23:00:00-06:00\", \"to_end\": \"2026-12-13T02:00:00-06:00\"},"
	"              {\"reason\": \"backup gate waiting\\nline two\","
	"               \"from_start\": \"2026-12-12T23:00:00-06:00\", \"from_end\": \"2026-12-13T02:00:00-06:00\","
	"               \"to_start\": \"2026-12-12T23:00:00-06:00\", \"to_end\": \"2026-12-13T02:00:00-06:00\"}],"
	"   \"status\": \"CONFIRMED\", \"sequence\": 3, \"cancelled\": false, \"cancel_reason\": null,"
	"   \"updated_at\": \"2026-11-27T09:30:00Z\"},"
	"  {\"rollout\": 9, \"rollout_state\": \"planned\", \"release\": \"17.0.5-hotfix\", \"kind\": \"urgent\","
	"   \"policy\": \"urgent-security\", \"wave\": {\"index\": 0, \"name\": \"canary\", \"state\": \"pending\"},"
	"   \"state\": \"scheduled\", \"window_start\": \"2026-12-19T23:00:00-06:00\","
	"   \"window_end\": \"2026-12-19T23:30:00-06:00\", \"window_start_utc\": \"2026-12-20T05:00:00Z\","
	"   \"window_end_utc\": \"2026-12-20T05:30:00Z\", \"reasons\": [], \"moves\": [],"
	"   \"status\": \"TENTATIVE\", \"sequence\": 0, \"cancelled\": false, \"updated_at\": \"2026-11-27T09:00:00Z\"},"
	"  {\"rollout\": 5, \"rollout_state\": \"aborted\", \"rollout_reason\": \"bad build, see INC-12\","
	"   \"release\": \"17.0.2\", \"kind\": \"standard\", \"policy\": \"standard-quarterly\","
	"   \"wave\": {\"index\": 1, \"name\": \"canary\", \"state\": \"pending\"}, \"state\": \"skipped\","
	"   \"state_reason\": \"rollout aborted\","
	"   \"window_start\": \"2026-11-28T23:00:00-06:00\", \"window_end\": \"2026-11-29T02:00:00-06:00\","
	"   \"window_start_utc\": \"2026-11-29T05:00:00Z\", \"window_end_utc\": \"2026-11-29T08:00:00Z\","
	"   \"reasons\": [], \"moves\": [], \"status\": \"CANCELLED\", \"sequence\": 2, \"cancelled\": true,"
	"   \"cancel_reason\": \"the rollout was aborted before this tenant was updated: bad build, see INC-12\","
	"   \"updated_at\": \"2026-11-26T12:00:00Z\"},"
	"  {\"rollout\": 11, \"rollout_state\": \"running\", \"release\": \"17.0.6\", \"kind\": \"standard\","
	"   \"wave\": {\"index\": 0, \"name\": \"all\", \"state\": \"pending\"}, \"state\": \"scheduled\","
	"   \"window_start\": null, \"window_end\": null, \"window_start_utc\": null, \"window_end_utc\": null,"
	"   \"reasons\": [], \"moves\": [], \"status\": \"CONFIRMED\", \"sequence\": 1, \"cancelled\": false}"
	" ]}";

static json_t *load(const char *text)
{
	json_error_t je;
	json_t *doc = json_loads(text, 0, &je);
	if (!doc)
		fail_msg("test document: line %d: %s", je.line, je.text);
	return doc;
}

static char *render(const char *text, size_t *len)
{
	json_t *doc = load(text);
	char err[300];
	char *ics = ics_windows_render(doc, len, err, sizeof(err));
	json_decref(doc);
	if (!ics)
		fail_msg("render: %s", err);
	return ics;
}

static const char *prop_text(icalcomponent *c, icalproperty_kind k)
{
	icalproperty *p = icalcomponent_get_first_property(c, k);
	assert_non_null(p);
	return icalproperty_get_value_as_string(p);
}

static const char *x_text(icalcomponent *c, const char *name)
{
	for (icalproperty *p = icalcomponent_get_first_property(c, ICAL_X_PROPERTY); p;
	     p = icalcomponent_get_next_property(c, ICAL_X_PROPERTY))
		if (strcmp(icalproperty_get_x_name(p), name) == 0)
			return icalproperty_get_x(p);
	fail_msg("no %s", name);
	return NULL;
}

static time_t utc_of(icalcomponent *ev, icalproperty_kind k)
{
	icalproperty *p = icalcomponent_get_first_property(ev, k);
	assert_non_null(p);
	struct icaltimetype t = icalvalue_get_datetime(icalproperty_get_value(p));
	assert_true(icaltime_is_utc(t));
	return icaltime_as_timet_with_zone(t, icaltimezone_get_utc_timezone());
}

static icalcomponent *event_with_uid(icalcomponent *cal, const char *uid)
{
	for (icalcomponent *ev = icalcomponent_get_first_component(cal, ICAL_VEVENT_COMPONENT); ev;
	     ev = icalcomponent_get_next_component(cal, ICAL_VEVENT_COMPONENT))
		if (strcmp(icalcomponent_get_uid(ev), uid) == 0)
			return ev;
	fail_msg("no event %s", uid);
	return NULL;
}

/* 2026-12-13T05:00:00Z and friends as unix seconds */
#define T_DEC13_0500 INT64_C(1797138000)
#define T_DEC20_0500 INT64_C(1797742800)
#define T_NOV29_0500 INT64_C(1795928400)
#define T_NOV27_1000 INT64_C(1795773600)

static void test_every_event_parses_back(void **state)
{
	(void)state;
	size_t len;
	char *ics = render(DOC, &len);
	assert_int_equal(len, strlen(ics));
	icalcomponent *cal = icalparser_parse_string(ics);
	assert_non_null(cal);
	assert_int_equal(icalcomponent_isa(cal), ICAL_VCALENDAR_COMPONENT);
	assert_string_equal(prop_text(cal, ICAL_PRODID_PROPERTY), "-//wavesched//tenant maintenance windows//EN");
	assert_string_equal(prop_text(cal, ICAL_VERSION_PROPERTY), "2.0");
	assert_string_equal(prop_text(cal, ICAL_CALSCALE_PROPERTY), "GREGORIAN");
	assert_int_equal(icalproperty_get_method(icalcomponent_get_first_property(cal, ICAL_METHOD_PROPERTY)),
			 ICAL_METHOD_PUBLISH);
	assert_string_equal(x_text(cal, "X-WR-CALNAME"),
			    "Maintenance windows: Clinic North, Finance; Billing\\Ops (clinic-north)");
	assert_string_equal(x_text(cal, "X-WR-TIMEZONE"), "America/Chicago");
	/* the window without times is left out */
	assert_int_equal(icalcomponent_count_components(cal, ICAL_VEVENT_COMPONENT), 3);

	icalcomponent *ev = event_with_uid(cal, "rollout-7-tenant-clinic-north@wavesched");
	assert_int_equal(utc_of(ev, ICAL_DTSTART_PROPERTY), T_DEC13_0500);
	assert_int_equal(utc_of(ev, ICAL_DTEND_PROPERTY), T_DEC13_0500 + 3 * 3600);
	assert_int_equal(utc_of(ev, ICAL_DTSTAMP_PROPERTY), T_NOV27_1000);
	assert_int_equal(utc_of(ev, ICAL_LASTMODIFIED_PROPERTY), T_NOV27_1000 - 1800);
	assert_int_equal(icalcomponent_get_sequence(ev), 3);
	assert_int_equal(icalcomponent_get_status(ev), ICAL_STATUS_CONFIRMED);
	assert_string_equal(icalcomponent_get_summary(ev),
			    "Odoo update 17.0.4 \u2014 maintenance window (wave 2: shared-low)");
	assert_string_equal(icalcomponent_get_description(ev),
		"Clinic North, Finance; Billing\\Ops (clinic-north) is to be updated to 17.0.4 from 17.0.3 during "
		"this maintenance window.\n"
		"Window: Sat 12 Dec 2026 23:00 to Sun 13 Dec 2026 02:00 (America/Chicago, UTC-06:00).\n"
		"Rollout 7 of 17.0.4, policy standard-quarterly is running; this tenant is in wave 2 (shared-low).\n"
		"This tenant: waiting for this window.\n"
		"Why this window: criticality standard, in wave shared-low; window: cluster, Saturday 23:00.\n"
		"Moved (1 of 2) from Sat 5 Dec 2026 23:00 to Sun 6 Dec 2026 02:00 (America/Chicago, UTC-06:00) "
		"to Sat 12 Dec 2026 23:00 to Sun 13 Dec 2026 02:00 (America/Chicago, UTC-06:00), because: window "
		"too short: it ends 2026-12-06T08:00:00Z, the deployment needs 15m.\n"
		"Moved (2 of 2) from Sat 12 Dec 2026 23:00 to Sun 13 Dec 2026 02:00 (America/Chicago, UTC-06:00) "
		"to Sat 12 Dec 2026 23:00 to Sun 13 Dec 2026 02:00 (America/Chicago, UTC-06:00), because: backup "
		"gate waiting\nline two.");
	assert_int_equal(icalproperty_get_transp(icalcomponent_get_first_property(ev, ICAL_TRANSP_PROPERTY)),
			 ICAL_TRANSP_OPAQUE);

	ev = event_with_uid(cal, "rollout-9-tenant-clinic-north@wavesched");
	assert_int_equal(utc_of(ev, ICAL_DTSTART_PROPERTY), T_DEC20_0500);
	assert_int_equal(utc_of(ev, ICAL_DTEND_PROPERTY), T_DEC20_0500 + 1800);
	assert_int_equal(icalcomponent_get_sequence(ev), 0);
	assert_int_equal(icalcomponent_get_status(ev), ICAL_STATUS_TENTATIVE);
	assert_string_equal(icalcomponent_get_summary(ev),
			    "Urgent Odoo update 17.0.5-hotfix \u2014 maintenance window (wave 0: canary)");
	/* same-day windows name the end's time only */
	assert_non_null(strstr(icalcomponent_get_description(ev),
			       "Window: Sat 19 Dec 2026 23:00 to 23:30 (America/Chicago, UTC-06:00).\n"
			       "Rollout 9 of 17.0.5-hotfix, policy urgent-security is planned and not started yet: "
			       "this window is tentative; this tenant is in wave 0 (canary).\n"));

	ev = event_with_uid(cal, "rollout-5-tenant-clinic-north@wavesched");
	assert_int_equal(utc_of(ev, ICAL_DTSTART_PROPERTY), T_NOV29_0500);
	assert_int_equal(icalcomponent_get_sequence(ev), 2);
	assert_int_equal(icalcomponent_get_status(ev), ICAL_STATUS_CANCELLED);
	assert_string_equal(icalcomponent_get_summary(ev),
			    "Cancelled: Odoo update 17.0.2 \u2014 maintenance window (wave 1: canary)");
	assert_true(strncmp(icalcomponent_get_description(ev),
			    "CANCELLED: the rollout was aborted before this tenant was updated: bad build, see INC-12.\n",
			    88) == 0);
	assert_non_null(strstr(icalcomponent_get_description(ev), "is aborted: bad build, see INC-12;"));
	assert_non_null(strstr(icalcomponent_get_description(ev),
			       "This tenant: not updated in this rollout (rollout aborted)."));
	assert_int_equal(icalproperty_get_transp(icalcomponent_get_first_property(ev, ICAL_TRANSP_PROPERTY)),
			 ICAL_TRANSP_TRANSPARENT);

	icalcomponent_free(cal);
	free(ics);
}

/* RFC 5545 3.1: CRLF line ends, no line longer than 75 octets, a folded
 * line continues with one space, and a fold never splits a UTF-8 character. */
static void test_lines_are_folded_and_crlf(void **state)
{
	(void)state;
	size_t len;
	char *ics = render(DOC, &len);
	size_t lines = 0, folded = 0;
	for (const char *p = ics; *p;) {
		const char *eol = strstr(p, "\r\n");
		assert_non_null(eol);
		for (const char *q = p; q < eol; q++)
			assert_true(*q != '\n' && *q != '\r');
		size_t n = (size_t)(eol - p);
		assert_true(n <= 75);
		if (*p == ' ') {
			folded++;
			assert_true(n > 1);
			/* the first octet after the fold starts a character */
			assert_true(((unsigned char)p[1] & 0xC0) != 0x80);
		}
		/* and the octet before a fold ends one */
		if (n && eol[2] == ' ')
			assert_true(((unsigned char)eol[-1] & 0x80) == 0 || ((unsigned char)eol[-1] & 0xC0) == 0x80);
		lines++;
		p = eol + 2;
	}
	assert_true(lines > 20);
	assert_true(folded > 5);   /* the descriptions are long */
	assert_true(strncmp(ics, "BEGIN:VCALENDAR\r\n", 17) == 0);
	assert_true(len > 15 && strcmp(ics + len - 15, "END:VCALENDAR\r\n") == 0);
	free(ics);
}

/* Unfolds the text (RFC 5545 3.1) and returns the value part of the first
 * line that starts with `name` followed by ':'. */
static char *unfolded_value(const char *ics, const char *name)
{
	char *u = malloc(strlen(ics) + 1), *o = u;
	for (const char *p = ics; *p; p++) {
		if (p[0] == '\r' && p[1] == '\n' && p[2] == ' ') {
			p += 2;
			continue;
		}
		*o++ = *p;
	}
	*o = '\0';
	char key[64];
	snprintf(key, sizeof(key), "\n%s:", name);
	char *at = strstr(u, key);
	char *out = NULL;
	if (at) {
		at += strlen(key);
		char *end = strstr(at, "\r\n");
		out = strndup(at, (size_t)(end - at));
	}
	free(u);
	return out;
}

static void test_text_is_escaped(void **state)
{
	(void)state;
	size_t len;
	char *ics = render(DOC, &len);
	char *desc = unfolded_value(ics, "DESCRIPTION");
	assert_non_null(desc);
	/* commas, semicolons, backslashes and newlines of TEXT values */
	assert_true(strncmp(desc, "Clinic North\\, Finance\\; Billing\\\\Ops (clinic-north) is to be updated", 69) == 0);
	assert_non_null(strstr(desc, "waiting for this window.\\nWhy this window: criticality standard\\, in wave"));
	assert_non_null(strstr(desc, "backup gate waiting\\nline two."));
	assert_null(strchr(desc, '\n'));
	free(desc);
	char *summary = unfolded_value(ics, "SUMMARY");
	assert_string_equal(summary, "Odoo update 17.0.4 \u2014 maintenance window (wave 2: shared-low)");
	free(summary);
	free(ics);
}

static void test_no_windows_is_an_empty_calendar(void **state)
{
	(void)state;
	size_t len;
	char *ics = render("{\"tenant\": \"t1\", \"name\": null, \"zone\": \"UTC\", \"generated_at\": "
			   "\"2026-11-27T10:00:00Z\", \"windows\": []}", &len);
	icalcomponent *cal = icalparser_parse_string(ics);
	assert_non_null(cal);
	assert_int_equal(icalcomponent_count_components(cal, ICAL_VEVENT_COMPONENT), 0);
	assert_string_equal(x_text(cal, "X-WR-CALNAME"), "Maintenance windows: t1 (t1)");
	icalcomponent_free(cal);
	free(ics);
}

/* A document of the wrong shape: nothing rendered, the field named. */
static void refused(const char *doc_text, const char *expected)
{
	json_t *doc = load(doc_text);
	char err[300];
	size_t len = 12345;
	char *ics = ics_windows_render(doc, &len, err, sizeof(err));
	json_decref(doc);
	if (ics) {
		free(ics);
		fail_msg("rendered, expected: %s", expected);
	}
	assert_string_equal(err, expected);
}

#define HEAD "{\"tenant\": \"t1\", \"zone\": \"UTC\", \"generated_at\": \"2026-11-27T10:00:00Z\", \"windows\": ["
#define GOOD_W "{\"rollout\": 1, \"release\": \"1.0\", \"wave\": {\"index\": 0, \"name\": \"w\"}, " \
	"\"status\": \"CONFIRMED\", \"sequence\": 0, \"window_start_utc\": \"2026-12-01T00:00:00Z\", " \
	"\"window_end_utc\": \"2026-12-01T01:00:00Z\""

static void test_malformed_documents_are_refused(void **state)
{
	(void)state;
	refused("[]", "the windows document is not an object");
	refused("{\"zone\": \"UTC\", \"generated_at\": \"2026-11-27T10:00:00Z\", \"windows\": []}",
		"tenant: missing or not a string");
	refused("{\"tenant\": \"t1\", \"zone\": \"UTC\", \"generated_at\": \"now\", \"windows\": []}",
		"generated_at: \"now\" is not an RFC 3339 time");
	refused("{\"tenant\": \"t1\", \"zone\": \"UTC\", \"generated_at\": \"2026-11-27T10:00:00Z\", \"windows\": {}}",
		"windows: missing or not an array");
	refused(HEAD GOOD_W "}, 7]}", "windows[1]: not an object");
	refused(HEAD GOOD_W "}, {\"rollout\": 0}]}", "windows[1].rollout: missing or not an integer >= 1");
	refused(HEAD "{\"rollout\": 1, \"release\": 3}]}", "windows[0].release: missing or not a string");
	refused(HEAD GOOD_W ", \"status\": \"MAYBE\"}]}",
		"windows[0].status: \"MAYBE\" is not TENTATIVE, CONFIRMED or CANCELLED");
	refused(HEAD GOOD_W ", \"sequence\": -1}]}", "windows[0].sequence: missing or not an integer >= 0");
	refused(HEAD GOOD_W ", \"window_start_utc\": \"2026-13-01T00:00:00Z\"}]}",
		"windows[0].window_start_utc: \"2026-13-01T00:00:00Z\" is not an RFC 3339 time");
	refused(HEAD GOOD_W ", \"window_end_utc\": 5}]}", "windows[0].window_end_utc: not a string");
	refused(HEAD GOOD_W ", \"window_end_utc\": \"2026-11-30T00:00:00Z\"}]}",
		"windows[0].window_end_utc: the window ends before it starts");
	refused(HEAD GOOD_W ", \"wave\": {\"index\": 0}}]}", "windows[0].wave.name: missing or not a string");
	refused(HEAD GOOD_W ", \"wave\": null}]}", "windows[0].wave: missing or not an object");
	refused(HEAD GOOD_W ", \"updated_at\": \"soon\"}]}", "windows[0].updated_at: \"soon\" is not an RFC 3339 time");
	refused(HEAD GOOD_W ", \"kind\": []}]}", "windows[0].kind: not a string");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_event_parses_back),
		cmocka_unit_test(test_lines_are_folded_and_crlf),
		cmocka_unit_test(test_text_is_escaped),
		cmocka_unit_test(test_no_windows_is_an_empty_calendar),
		cmocka_unit_test(test_malformed_documents_are_refused),
	};
	return cmocka_run_group_tests(tests, NULL, wt_teardown_ical);
}
