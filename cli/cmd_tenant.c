/*
 * cmd_tenant.c - wavectl tenant windows SLUG [--ics] [--format text|json]:
 * a tenant's maintenance windows across rollouts (GET
 * /v1/tenants/{slug}/windows, or the calendar feed windows.ics as it is);
 * wavectl tenant defer SLUG --rollout ID: POST /v1/tenants/{slug}/deferrals.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <curl/curl.h>
#include <jansson.h>
#include "wavectl.h"
#include "wavesched/window.h"


static const char usage_windows[] =
	"usage: wavectl tenant windows SLUG [--ics] [--format text|json]\n"
	"\n"
	"The tenant's maintenance windows in planned, running and recently ended\n"
	"rollouts: release, wave, window in the tenant's time zone, status\n"
	"(tentative, confirmed, cancelled), moves and reasons.\n"
	"\n"
	"  --format text|json  a table (default) or the API's JSON document\n"
	"  --ics               the RFC 5545 calendar feed (text/calendar), as served\n"
	"                      to calendar subscriptions\n";

/* "Sat 2026-12-05 23:00" (or "23:00" without the date) in the offset the
 * API wrote the time with, which is the tenant's zone. */
static void local_time(const char *rfc3339, bool with_date, char *out, size_t size)
{
	int64_t t;
	if (!rfc3339 || ws_time_parse(rfc3339, &t) != 0) {
		snprintf(out, size, "%s", rfc3339 ? rfc3339 : "-");
		return;
	}
	/* ws_time_parse accepted it: it ends in "Z" or "+HH:MM"/"-HH:MM" */
	size_t n = strlen(rfc3339);
	int off = 0;
	if (rfc3339[n - 1] != 'Z' && rfc3339[n - 1] != 'z') {
		const char *p = rfc3339 + n - 6;
		off = ((p[1] - '0') * 10 + (p[2] - '0')) * 3600 + ((p[4] - '0') * 10 + (p[5] - '0')) * 60;
		if (*p == '-')
			off = -off;
	}
	time_t lt = (time_t)(t + off);
	struct tm tm;
	gmtime_r(&lt, &tm);
	strftime(out, size, with_date ? "%a %Y-%m-%d %H:%M" : "%H:%M", &tm);
}

/* "Sat 2026-12-05 23:00-02:00 -06:00"; the end's date only on another day. */
static void window_text(const char *start, const char *end, char *out, size_t size)
{
	if (!start || !end) {
		snprintf(out, size, "(no window)");
		return;
	}
	char s[40], e[40];
	local_time(start, true, s, sizeof(s));
	local_time(end, true, e, sizeof(e));
	size_t n = strlen(start);
	const char *off = n >= 6 && (start[n - 6] == '+' || start[n - 6] == '-') ? start + n - 6 : "Z";
	/* "Sat 2026-12-05 " is 15 characters */
	bool same_day = strlen(s) > 15 && strlen(e) > 15 && strncmp(s, e, 15) == 0;
	snprintf(out, size, "%s-%s %s", s, same_day ? e + 15 : e, off);
}

static void print_table(const json_t *doc)
{
	const char *zone = json_string_value(json_object_get(doc, "zone"));
	const char *name = json_string_value(json_object_get(doc, "name"));
	const char *note = json_string_value(json_object_get(doc, "zone_note"));
	printf("%s  %s  (times in %s)\n", json_string_value(json_object_get(doc, "tenant")), name ? name : "",
	       zone ? zone : "UTC");
	if (note)
		printf("note: %s\n", note);
	const json_t *windows = json_object_get(doc, "windows");
	if (json_array_size(windows) == 0) {
		printf("no scheduled windows\n");
		return;
	}
	printf("\n%-8s %-16s %-24s %-36s %-10s %-4s %s\n", "ROLLOUT", "RELEASE", "WAVE", "WINDOW", "STATUS",
	       "SEQ", "STATE");
	size_t i, k;
	const json_t *w, *x;
	json_array_foreach(windows, i, w) {
		const json_t *wave = json_object_get(w, "wave");
		char wv[64], when[80], status[16];
		snprintf(wv, sizeof(wv), "%lld:%s", (long long)json_integer_value(json_object_get(wave, "index")),
			 json_string_value(json_object_get(wave, "name")) ?: "?");
		window_text(json_string_value(json_object_get(w, "window_start")),
			    json_string_value(json_object_get(w, "window_end")), when, sizeof(when));
		const char *st = json_string_value(json_object_get(w, "status"));
		snprintf(status, sizeof(status), "%s", st ? st : "?");
		for (char *p = status; *p; p++)
			*p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
		printf("%-8lld %-16s %-24s %-36s %-10s %-4lld %s (rollout %s)\n",
		       (long long)json_integer_value(json_object_get(w, "rollout")),
		       json_string_value(json_object_get(w, "release")) ?: "?", wv, when, status,
		       (long long)json_integer_value(json_object_get(w, "sequence")),
		       json_string_value(json_object_get(w, "state")) ?: "?",
		       json_string_value(json_object_get(w, "rollout_state")) ?: "?");
		const char *cancel = json_string_value(json_object_get(w, "cancel_reason"));
		if (cancel)
			printf("%-8s cancelled: %s\n", "", cancel);
		json_array_foreach(json_object_get(w, "moves"), k, x) {
			char from[80], to[80];
			window_text(json_string_value(json_object_get(x, "from_start")),
				    json_string_value(json_object_get(x, "from_end")), from, sizeof(from));
			window_text(json_string_value(json_object_get(x, "to_start")),
				    json_string_value(json_object_get(x, "to_end")), to, sizeof(to));
			printf("%-8s moved from %s to %s: %s\n", "", from, to,
			       json_string_value(json_object_get(x, "reason")) ?: "no reason recorded");
		}
	}
}

/* argv[0] is "windows". */
int cmd_tenant_windows(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "ics", no_argument, NULL, 'i' },
		{ "format", required_argument, NULL, 'F' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *format = NULL;
	bool ics = false;
	int o;
	opterr = 0;
	optind = 1;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'i': ics = true; break;
		case 'F': format = optarg; break;
		case 'h': fputs(usage_windows, stdout); return EXIT_OK;
		default:
			fprintf(stderr, "wavectl: tenant windows: unknown option or missing value \"%s\"\n%s",
				argv[optind - 1], usage_windows);
			return EXIT_USAGE;
		}
	}
	if (argc - optind != 1) {
		fprintf(stderr, "wavectl: tenant windows takes one tenant slug\n%s", usage_windows);
		return EXIT_USAGE;
	}
	if (format && strcmp(format, "text") != 0 && strcmp(format, "json") != 0) {
		fprintf(stderr, "wavectl: --format must be text or json, not \"%s\"\n", format);
		return EXIT_USAGE;
	}
	if (ics && format) {
		fprintf(stderr, "wavectl: --ics prints the calendar feed; it takes no --format\n");
		return EXIT_USAGE;
	}
	char *esc = curl_easy_escape(NULL, argv[optind], 0);
	char *path = NULL;
	if (!esc || asprintf(&path, "/v1/tenants/%s/windows%s", esc, ics ? ".ics" : "") < 0) {
		curl_free(esc);
		fprintf(stderr, "wavectl: out of memory\n");
		return EXIT_REFUSED;
	}
	curl_free(esc);
	response r;
	int rc = http_call("GET", path, NULL, NULL, 0, ics ? "text/calendar" : NULL, &r);
	free(path);
	if (rc == 0 && r.status != 200) {
		rc = report_error(&r);
	} else if (rc == 0 && ics) {
		if (r.body.len && fwrite(r.body.data, 1, r.body.len, stdout) != r.body.len) {
			fprintf(stderr, "wavectl: cannot write the calendar: %m\n");
			rc = EXIT_REFUSED;
		}
	} else if (rc == 0) {
		json_t *doc = parse_ok(&r);
		if (!doc || !json_is_array(json_object_get(doc, "windows"))) {
			if (doc)
				fprintf(stderr, "wavectl: the service sent a windows answer without \"windows\"\n");
			rc = EXIT_REFUSED;
		} else if (format && strcmp(format, "json") == 0) {
			char *s = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
			printf("%s\n", s ? s : "");
			free(s);
		} else {
			print_table(doc);
		}
		json_decref(doc);
	}
	free(r.body.data);
	return rc;
}

static const char usage_defer[] =
	"usage: wavectl tenant defer SLUG --rollout ID [--reason R] [--until TIME] [--format text|json]\n"
	"\n"
	"Defers the tenant's window in a rollout, within the limits of the rollout's\n"
	"policy (`deferral: {max, per_tenant}`; never for an urgent release).  The\n"
	"tenant and the tenants that depend on it move to the rollout's trailing\n"
	"wave \"deferred\", at their first valid windows after its last wave.\n"
	"\n"
	"  --rollout ID        the rollout (required)\n"
	"  --reason R          why, kept with the deferral and in the audit log\n"
	"  --until TIME        RFC 3339: no window before this time\n"
	"  --format text|json  a summary (default) or the API's JSON answer\n";

/* argv[0] is "defer". */
int cmd_tenant_defer(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "rollout", required_argument, NULL, 'r' },
		{ "reason", required_argument, NULL, 'R' },
		{ "until", required_argument, NULL, 'u' },
		{ "format", required_argument, NULL, 'F' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *rollout = NULL, *reason = NULL, *until = NULL, *format = NULL;
	int o;
	opterr = 0;
	optind = 1;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'r': rollout = optarg; break;
		case 'R': reason = optarg; break;
		case 'u': until = optarg; break;
		case 'F': format = optarg; break;
		case 'h': fputs(usage_defer, stdout); return EXIT_OK;
		default:
			fprintf(stderr, "wavectl: tenant defer: unknown option or missing value \"%s\"\n%s",
				argv[optind - 1], usage_defer);
			return EXIT_USAGE;
		}
	}
	if (argc - optind != 1) {
		fprintf(stderr, "wavectl: tenant defer takes one tenant slug\n%s", usage_defer);
		return EXIT_USAGE;
	}
	char *end = NULL;
	long long id = rollout ? strtoll(rollout, &end, 10) : 0;
	if (!rollout || !*rollout || *end || id < 1) {
		fprintf(stderr, "wavectl: tenant defer needs --rollout ID, a positive integer\n%s", usage_defer);
		return EXIT_USAGE;
	}
	if (format && strcmp(format, "text") != 0 && strcmp(format, "json") != 0) {
		fprintf(stderr, "wavectl: --format must be text or json, not \"%s\"\n", format);
		return EXIT_USAGE;
	}
	char *esc = curl_easy_escape(NULL, argv[optind], 0);
	char *path = NULL;
	json_t *body = json_pack("{s:I}", "rollout", (json_int_t)id);
	if (body && reason)
		json_object_set_new(body, "reason", json_string(reason));
	if (body && until)
		json_object_set_new(body, "until", json_string(until));
	if (!esc || !body || asprintf(&path, "/v1/tenants/%s/deferrals", esc) < 0) {
		curl_free(esc);
		json_decref(body);
		fprintf(stderr, "wavectl: out of memory\n");
		return EXIT_REFUSED;
	}
	curl_free(esc);
	json_t *out = NULL;
	int rc = api_json("POST", path, body, &out);
	free(path);
	json_decref(body);
	if (rc == 0 && format && strcmp(format, "json") == 0) {
		char *s = json_dumps(out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		printf("%s\n", s ? s : "");
		free(s);
	} else if (rc == 0) {
		const json_t *wave = json_object_get(out, "wave");
		printf("deferral %lld: %s deferred in rollout %lld, wave %lld:%s\n",
		       (long long)json_integer_value(json_object_get(out, "id")), argv[optind],
		       (long long)json_integer_value(json_object_get(out, "rollout")),
		       (long long)json_integer_value(json_object_get(wave, "index")),
		       json_string_value(json_object_get(wave, "name")) ?: "?");
		size_t i;
		const json_t *m;
		json_array_foreach(json_object_get(out, "moved"), i, m) {
			char from[80], to[80];
			window_text(json_string_value(json_object_get(m, "from_start")),
				    json_string_value(json_object_get(m, "from_end")), from, sizeof(from));
			window_text(json_string_value(json_object_get(m, "to_start")),
				    json_string_value(json_object_get(m, "to_end")), to, sizeof(to));
			printf("  %-24s %s -> %s\n", json_string_value(json_object_get(m, "slug")) ?: "?", from, to);
		}
	}
	json_decref(out);
	return rc;
}
