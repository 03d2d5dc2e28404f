/*
 * cmd_review.c - wavectl review list|close: the after-the-fact reviews of
 * break-glass rollouts.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "wavectl.h"

static const char usage_review[] =
	"usage: wavectl review list [--state open|overdue|closed|all] [--format text|json]\n"
	"       wavectl review close ID --comment C\n"
	"\n"
	"Every rollout that overrides soft blackouts (a break-glass policy) opens a\n"
	"review when it is created; someone other than its creator closes it, with\n"
	"a comment, before it is due.  list shows open reviews (overdue ones\n"
	"marked) by default.\n"
	"\n"
	"Exit codes: 0 done, 1 refused or invalid, 2 usage error, 3 service unreachable.\n";

static const char *str(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "-";
}

static int review_list(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state", required_argument, NULL, 's' },
		{ "format", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *state = "open", *format = "text";
	int o;
	optind = 1;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 's': state = optarg; break;
		case 'f': format = optarg; break;
		case 'h': fputs(usage_review, stdout); return 0;
		default: fputs(usage_review, stderr); return EXIT_USAGE;
		}
	}
	bool state_ok = !strcmp(state, "open") || !strcmp(state, "overdue") || !strcmp(state, "closed") ||
			!strcmp(state, "all");
	if (optind != argc || !state_ok || (strcmp(format, "text") && strcmp(format, "json"))) {
		fputs(usage_review, stderr);
		return EXIT_USAGE;
	}
	char path[64];
	snprintf(path, sizeof(path), "/v1/reviews?state=%s", state);
	json_t *doc = NULL;
	int rc = api_json("GET", path, NULL, &doc);
	if (rc)
		return rc;
	json_t *list = json_object_get(doc, "reviews");
	if (strcmp(format, "json") == 0) {
		char *s = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		if (s)
			puts(s);
		free(s);
	} else if (json_array_size(list) == 0) {
		printf("no %s review\n", strcmp(state, "all") ? state : "");
	} else {
		printf("%-6s %-8s %-9s %-20s %-20s %-16s %s\n", "REVIEW", "ROLLOUT", "STATE", "DUE", "CREATED BY",
		       "CHANGE", "JUSTIFICATION");
		size_t i;
		json_t *r;
		json_array_foreach(list, i, r) {
			printf("%-6lld %-8lld %-9s %-20s %-20s %-16s %s\n",
			       (long long)json_integer_value(json_object_get(r, "id")),
			       (long long)json_integer_value(json_object_get(r, "rollout")), str(r, "state"),
			       str(r, "due_at"), str(r, "created_by"), str(r, "change_ref"), str(r, "justification"));
			if (json_is_string(json_object_get(r, "closed_by")))
				printf("       closed by %s at %s: %s\n", str(r, "closed_by"), str(r, "closed_at"),
				       str(r, "comment"));
		}
	}
	json_decref(doc);
	return 0;
}

static int review_close(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "comment", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *comment = NULL;
	int o;
	optind = 1;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'c': comment = optarg; break;
		case 'h': fputs(usage_review, stdout); return 0;
		default: fputs(usage_review, stderr); return EXIT_USAGE;
		}
	}
	if (argc - optind != 1 || !comment || strspn(argv[optind], "0123456789") != strlen(argv[optind]) ||
	    !*argv[optind] || strlen(argv[optind]) > 18) {
		fprintf(stderr, "wavectl: review close takes one review ID and --comment C\n%s", usage_review);
		return EXIT_USAGE;
	}
	char path[64];
	snprintf(path, sizeof(path), "/v1/reviews/%s/close", argv[optind]);
	json_t *body = json_pack("{s:s}", "comment", comment);
	json_t *doc = NULL;
	int rc = api_json("POST", path, body, &doc);
	json_decref(body);
	if (rc)
		return rc;
	printf("review %s of rollout %lld closed%s\n", argv[optind],
	       (long long)json_integer_value(json_object_get(doc, "rollout")),
	       json_is_true(json_object_get(doc, "overdue")) || !strcmp(str(doc, "state"), "overdue") ? " (late)" : "");
	json_decref(doc);
	return 0;
}

int cmd_review(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(usage_review, argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : 0;
	}
	if (strcmp(argv[1], "list") == 0)
		return review_list(argc - 1, argv + 1);
	if (strcmp(argv[1], "close") == 0)
		return review_close(argc - 1, argv + 1);
	fprintf(stderr, "wavectl: unknown review command \"%s\"\n%s", argv[1], usage_review);
	return EXIT_USAGE;
}
