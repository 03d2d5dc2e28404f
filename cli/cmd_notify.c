/*
 * cmd_notify.c - wavectl notify sinks|list: the notification sinks (admin)
 * and what was sent to them, with every attempt (docs/notifications.md).
 * Sinks are added and removed through the API (POST/DELETE
 * /v1/notifications/sinks).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include <jansson.h>
#include "wavectl.h"

static const char usage_notify[] =
	"usage: wavectl notify sinks [--format text|json]\n"
	"       wavectl notify list [--state pending|delivered|failed|all] [--sink NAME] [--limit N]\n"
	"                           [--format text|json]\n"
	"\n"
	"sinks lists the webhooks notifications go to (admin only: a webhook URL is a\n"
	"credential).  list shows messages oldest first with each delivery attempt;\n"
	"--state failed lists those given up after their last attempt.\n"
	"\n"
	"Exit codes: 0 done, 1 refused or invalid, 2 usage error, 3 service unreachable.\n";

static const char *str(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "-";
}

static void print_json(json_t *doc)
{
	char *s = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	if (s)
		puts(s);
	free(s);
}

static void join(json_t *arr, char *out, size_t n)
{
	out[0] = '\0';
	size_t i, used = 0;
	json_t *x;
	json_array_foreach(arr, i, x) {
		int w = snprintf(out + used, n - used, "%s%s", i ? "," : "", json_string_value(x) ? json_string_value(x) : "?");
		if (w < 0 || (size_t)w >= n - used)
			break;
		used += (size_t)w;
	}
	if (!out[0])
		snprintf(out, n, "-");
}

static int notify_sinks(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *format = "text";
	int o;
	optind = 1;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'f': format = optarg; break;
		case 'h': fputs(usage_notify, stdout); return 0;
		default: fputs(usage_notify, stderr); return EXIT_USAGE;
		}
	}
	if (optind != argc || (strcmp(format, "text") && strcmp(format, "json"))) {
		fputs(usage_notify, stderr);
		return EXIT_USAGE;
	}
	json_t *doc = NULL;
	int rc = api_json("GET", "/v1/notifications/sinks", NULL, &doc);
	if (rc)
		return rc;
	json_t *list = json_object_get(doc, "sinks");
	if (strcmp(format, "json") == 0) {
		print_json(doc);
	} else if (json_array_size(list) == 0) {
		printf("no notification sink\n");
	} else {
		printf("%-20s %-6s %-24s %-30s %8s %9s %6s  %s\n", "NAME", "FORMAT", "ROLES", "TENANTS", "PENDING",
		       "DELIVERED", "FAILED", "URL");
		size_t i;
		json_t *s;
		json_array_foreach(list, i, s) {
			char roles[128], tenants[256];
			join(json_object_get(s, "roles"), roles, sizeof(roles));
			join(json_object_get(s, "tenants"), tenants, sizeof(tenants));
			printf("%-20s %-6s %-24s %-30s %8lld %9lld %6lld  %s\n", str(s, "name"), str(s, "format"), roles,
			       tenants, (long long)json_integer_value(json_object_get(s, "pending")),
			       (long long)json_integer_value(json_object_get(s, "delivered")),
			       (long long)json_integer_value(json_object_get(s, "failed")), str(s, "url"));
		}
	}
	json_decref(doc);
	return 0;
}

static int notify_list(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state", required_argument, NULL, 's' },
		{ "sink", required_argument, NULL, 'k' },
		{ "limit", required_argument, NULL, 'l' },
		{ "format", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *state = "all", *sink = NULL, *limit = "100", *format = "text";
	int o;
	optind = 1;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 's': state = optarg; break;
		case 'k': sink = optarg; break;
		case 'l': limit = optarg; break;
		case 'f': format = optarg; break;
		case 'h': fputs(usage_notify, stdout); return 0;
		default: fputs(usage_notify, stderr); return EXIT_USAGE;
		}
	}
	bool state_ok = !strcmp(state, "pending") || !strcmp(state, "delivered") || !strcmp(state, "failed") ||
			!strcmp(state, "all");
	size_t nl = strlen(limit);
	if (optind != argc || !state_ok || nl == 0 || nl > 3 || strspn(limit, "0123456789") != nl ||
	    (strcmp(format, "text") && strcmp(format, "json"))) {
		fputs(usage_notify, stderr);
		return EXIT_USAGE;
	}
	char *esc = sink ? curl_easy_escape(NULL, sink, 0) : NULL;
	char path[512];
	snprintf(path, sizeof(path), "/v1/notifications?state=%s&limit=%s%s%s", state, limit, esc ? "&sink=" : "",
		 esc ? esc : "");
	curl_free(esc);
	json_t *doc = NULL;
	int rc = api_json("GET", path, NULL, &doc);
	if (rc)
		return rc;
	json_t *list = json_object_get(doc, "notifications");
	if (strcmp(format, "json") == 0) {
		print_json(doc);
	} else if (json_array_size(list) == 0) {
		printf("no notification\n");
	} else {
		size_t i;
		json_t *m;
		json_array_foreach(list, i, m) {
			printf("%lld %-10s %-20s %-20s %s\n", (long long)json_integer_value(json_object_get(m, "id")),
			       str(m, "state"), str(m, "sink"), str(m, "kind"), str(m, "text"));
			size_t k;
			json_t *d;
			json_array_foreach(json_object_get(m, "deliveries"), k, d) {
				printf("    attempt %lld %s: %s", (long long)json_integer_value(json_object_get(d, "attempt")),
				       str(d, "at"), str(d, "outcome"));
				if (json_is_integer(json_object_get(d, "status")))
					printf(" HTTP %lld", (long long)json_integer_value(json_object_get(d, "status")));
				if (json_is_integer(json_object_get(d, "retry_in_ms")))
					printf(", again in %lld ms",
					       (long long)json_integer_value(json_object_get(d, "retry_in_ms")));
				if (json_is_string(json_object_get(d, "error")))
					printf(" (%s)", str(d, "error"));
				printf("\n");
			}
		}
	}
	json_decref(doc);
	return 0;
}

int cmd_notify(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(usage_notify, argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : 0;
	}
	if (strcmp(argv[1], "sinks") == 0)
		return notify_sinks(argc - 1, argv + 1);
	if (strcmp(argv[1], "list") == 0)
		return notify_list(argc - 1, argv + 1);
	fprintf(stderr, "wavectl: unknown notify command \"%s\"\n%s", argv[1], usage_notify);
	return EXIT_USAGE;
}
