/*
 * cmd_audit.c - wavectl audit verify|list, through the service.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include "wavectl.h"

static const char usage_audit[] =
	"usage: wavectl audit verify [--known ID:HASH]\n"
	"       wavectl audit list [--since TIME] [--actor A] [--object O] [--limit N]\n"
	"\n"
	"verify  has the service walk the audit log's hash chain and names the first\n"
	"        broken entry (edited, deleted or reordered).  Prints the head (the\n"
	"        newest entry's id and hash): keep it, and pass it later with --known\n"
	"        to detect entries removed from the end, which a chain alone cannot\n"
	"        show.  An evidence bundle records the head too.\n"
	"list    audit entries, oldest first: TIME is RFC 3339; --object matches the\n"
	"        object and everything under it (rollout/7 is also rollout/7/wave/0);\n"
	"        --limit caps the entries printed (default: all).\n"
	"\n"
	"Exit codes: 0 ok, 1 the chain is broken or the request was refused, 2 usage\n"
	"error, 3 service unreachable.\n";

static const char *str(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "-";
}

static int audit_verify(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "known", required_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *known = NULL;
	int o;
	optind = 1;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'k': known = optarg; break;
		case 'h': fputs(usage_audit, stdout); return 0;
		default: fputs(usage_audit, stderr); return EXIT_USAGE;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "wavectl: audit verify takes no arguments\n%s", usage_audit);
		return EXIT_USAGE;
	}
	char path[200] = "/v1/audit/verify";
	if (known) {
		const char *colon = strchr(known, ':');
		size_t idlen = colon ? (size_t)(colon - known) : 0;
		if (!colon || idlen == 0 || idlen > 18 || strspn(known, "0123456789") != idlen ||
		    strlen(colon + 1) != 64 || strspn(colon + 1, "0123456789abcdef") != 64) {
			fprintf(stderr, "wavectl: --known must be ID:HASH (an entry id and its 64 hex digit hash)\n");
			return EXIT_USAGE;
		}
		snprintf(path, sizeof(path), "/v1/audit/verify?known_id=%.*s&known_hash=%s", (int)idlen, known,
			 colon + 1);
	}
	json_t *doc = NULL;
	int rc = api_json("GET", path, NULL, &doc);
	if (rc)
		return rc;
	json_t *head = json_object_get(doc, "head");
	json_int_t entries = json_integer_value(json_object_get(doc, "entries"));
	if (json_is_true(json_object_get(doc, "ok"))) {
		if (json_is_object(head))
			printf("audit log ok: %lld entries, head %lld:%s\n", (long long)entries,
			       (long long)json_integer_value(json_object_get(head, "id")), str(head, "hash"));
		else
			printf("audit log ok: no entries\n");
	} else {
		json_t *bad = json_object_get(doc, "first_broken");
		fprintf(stderr, "wavectl: %s\n", str(bad, "message"));
		printf("audit log broken at entry %lld (%s); %lld of %lld entries verified before it\n",
		       (long long)json_integer_value(json_object_get(bad, "id")), str(bad, "reason"),
		       (long long)json_integer_value(json_object_get(doc, "verified")), (long long)entries);
		rc = EXIT_REFUSED;
	}
	json_decref(doc);
	return rc;
}

/* Appends "&name=<escaped value>" to *q; false when out of memory. */
static bool add_param(char **q, const char *name, const char *value)
{
	if (!value)
		return true;
	char *esc = curl_easy_escape(NULL, value, 0);
	char *next = NULL;
	if (!esc || asprintf(&next, "%s&%s=%s", *q, name, esc) < 0)
		next = NULL;
	curl_free(esc);
	if (!next)
		return false;
	free(*q);
	*q = next;
	return true;
}

static int audit_list(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "since", required_argument, NULL, 's' },
		{ "actor", required_argument, NULL, 'a' },
		{ "object", required_argument, NULL, 'o' },
		{ "limit", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *since = NULL, *actor = NULL, *object = NULL;
	long limit = -1;
	int o;
	optind = 1;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 's': since = optarg; break;
		case 'a': actor = optarg; break;
		case 'o': object = optarg; break;
		case 'l': {
			char *end = NULL;
			limit = strtol(optarg, &end, 10);
			if (!*optarg || *end || limit < 1) {
				fprintf(stderr, "wavectl: --limit must be a positive integer\n");
				return EXIT_USAGE;
			}
			break;
		}
		case 'h': fputs(usage_audit, stdout); return 0;
		default: fputs(usage_audit, stderr); return EXIT_USAGE;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "wavectl: audit list takes no arguments\n%s", usage_audit);
		return EXIT_USAGE;
	}
	char *filters = strdup("");
	if (!filters || !add_param(&filters, "since", since) || !add_param(&filters, "actor", actor) ||
	    !add_param(&filters, "object", object)) {
		free(filters);
		fprintf(stderr, "wavectl: out of memory\n");
		return EXIT_REFUSED;
	}
	/* Page through with after_id: the service caps a page, the command
	 * prints everything asked for. */
	printf("%-8s %-27s %-24s %-20s %s\n", "ID", "AT", "ACTOR", "ACTION", "OBJECT");
	long long after = 0;
	long printed = 0;
	int rc = 0;
	for (;;) {
		long page = limit < 0 || limit - printed > 1000 ? 1000 : limit - printed;
		char *path = NULL;
		if (asprintf(&path, "/v1/audit?limit=%ld%s", page, filters) < 0) {
			rc = EXIT_REFUSED;
			break;
		}
		if (after) {
			char *p2 = NULL;
			if (asprintf(&p2, "%s&after_id=%lld", path, after) < 0) {
				free(path);
				rc = EXIT_REFUSED;
				break;
			}
			free(path);
			path = p2;
		}
		json_t *doc = NULL;
		rc = api_json("GET", path, NULL, &doc);
		free(path);
		if (rc)
			break;
		size_t i;
		json_t *e;
		json_array_foreach(json_object_get(doc, "entries"), i, e) {
			printf("%-8lld %-27s %-24s %-20s %s\n", (long long)json_integer_value(json_object_get(e, "id")),
			       str(e, "at"), str(e, "actor"), str(e, "action"), str(e, "object"));
			printed++;
		}
		json_t *next = json_object_get(doc, "next_after_id");
		after = json_is_integer(next) ? (long long)json_integer_value(next) : 0;
		json_decref(doc);
		if (!after || (limit > 0 && printed >= limit))
			break;
	}
	free(filters);
	return rc;
}

int cmd_audit(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(usage_audit, argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : 0;
	}
	if (strcmp(argv[1], "verify") == 0)
		return audit_verify(argc - 1, argv + 1);
	if (strcmp(argv[1], "list") == 0)
		return audit_list(argc - 1, argv + 1);
	fprintf(stderr, "wavectl: unknown audit command \"%s\"\n%s", argv[1], usage_audit);
	return EXIT_USAGE;
}
