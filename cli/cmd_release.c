/*
 * cmd_release.c - wavectl release create|list|show, through the service.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include "wavectl.h"

static const char usage_release[] =
	"usage: wavectl release create VERSION --digest sha256:HEX [--kind standard|urgent] [--notes TEXT]\n"
	"       wavectl release list\n"
	"       wavectl release show VERSION\n"
	"\n"
	"create  records a release: its version, the sha256 digest of its artifact and\n"
	"        its kind (urgent releases need role security).  Releases are\n"
	"        immutable: a version can be created once.\n"
	"list    every release, oldest first.\n"
	"show    one release.\n"
	"\n"
	"Exit codes: 0 done, 1 refused or invalid, 2 usage error, 3 service unreachable.\n";

static const char *str(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "-";
}

static int release_create(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "digest", required_argument, NULL, 'd' },
		{ "kind", required_argument, NULL, 'k' },
		{ "notes", required_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *digest = NULL, *kind = NULL, *notes = NULL;
	int o;
	optind = 1;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'd': digest = optarg; break;
		case 'k': kind = optarg; break;
		case 'n': notes = optarg; break;
		case 'h': fputs(usage_release, stdout); return 0;
		default: fputs(usage_release, stderr); return EXIT_USAGE;
		}
	}
	if (argc - optind != 1 || !digest) {
		fprintf(stderr, "wavectl: release create takes one VERSION and --digest\n%s", usage_release);
		return EXIT_USAGE;
	}
	if (kind && strcmp(kind, "standard") && strcmp(kind, "urgent")) {
		fprintf(stderr, "wavectl: --kind must be standard or urgent\n");
		return EXIT_USAGE;
	}
	json_t *body = json_pack("{s:s, s:s}", "version", argv[optind], "digest", digest);
	if (kind)
		json_object_set_new(body, "kind", json_string(kind));
	if (notes)
		json_object_set_new(body, "notes", json_string(notes));
	json_t *doc = NULL;
	int rc = api_json("POST", "/v1/releases", body, &doc);
	json_decref(body);
	if (rc)
		return rc;
	printf("release %s created (%s, %s) by %s\n", str(doc, "version"), str(doc, "kind"), str(doc, "digest"),
	       str(doc, "created_by"));
	json_decref(doc);
	return 0;
}

static void print_row(json_t *r)
{
	printf("%-20s %-9s %-21s %-20s %s\n", str(r, "version"), str(r, "kind"), str(r, "created_at"),
	       str(r, "created_by"), str(r, "digest"));
}

static int release_read(int argc, char **argv, bool one)
{
	if ((one && argc != 2) || (!one && argc != 1) || (argc == 2 && argv[1][0] == '-')) {
		bool help = argc == 2 && strcmp(argv[1], "--help") == 0;
		if (!help)
			fprintf(stderr, "wavectl: release %s %s\n", argv[0], one ? "takes one VERSION" : "takes no arguments");
		fputs(usage_release, help ? stdout : stderr);
		return help ? 0 : EXIT_USAGE;
	}
	char *path = NULL;
	if (one) {
		char *esc = curl_easy_escape(NULL, argv[1], 0);
		if (!esc || asprintf(&path, "/v1/releases/%s", esc) < 0)
			path = NULL;
		curl_free(esc);
		if (!path)
			return EXIT_REFUSED;
	}
	json_t *doc = NULL;
	int rc = api_json("GET", one ? path : "/v1/releases", NULL, &doc);
	free(path);
	if (rc)
		return rc;
	printf("%-20s %-9s %-21s %-20s %s\n", "VERSION", "KIND", "CREATED", "CREATED BY", "DIGEST");
	if (one) {
		print_row(doc);
		const char *notes = json_string_value(json_object_get(doc, "notes"));
		if (notes && *notes)
			printf("\n%s\n", notes);
	} else {
		size_t i;
		json_t *r;
		json_array_foreach(json_object_get(doc, "releases"), i, r)
			print_row(r);
	}
	json_decref(doc);
	return 0;
}

int cmd_release(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(usage_release, argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : 0;
	}
	if (strcmp(argv[1], "create") == 0)
		return release_create(argc - 1, argv + 1);
	if (strcmp(argv[1], "list") == 0)
		return release_read(argc - 1, argv + 1, false);
	if (strcmp(argv[1], "show") == 0)
		return release_read(argc - 1, argv + 1, true);
	fprintf(stderr, "wavectl: unknown release command \"%s\"\n%s", argv[1], usage_release);
	return EXIT_USAGE;
}
