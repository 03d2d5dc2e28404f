/*
 * cmd_release.c - wavectl release create|list|show|attest|attestations,
 * through the service.
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
	"       wavectl release attest VERSION --name N --result passed|failed --document FILE\n"
	"                              [--digest sha256:HEX] [--produced-by TEXT]\n"
	"       wavectl release attestations VERSION\n"
	"\n"
	"create  records a release: its version, the sha256 digest of its artifact and\n"
	"        its kind (urgent releases need role security).  Releases are\n"
	"        immutable: a version can be created once.\n"
	"list    every release, oldest first.\n"
	"show    one release, with the latest attestation of each name.\n"
	"attest  records an attestation of the release (needs role platform, security or\n"
	"        admin): a named check (tests, image-scan, signature, ...), its result,\n"
	"        and FILE, a JSON object (an in-toto statement, a test summary, a scan\n"
	"        report).  The attestation is bound to an artifact digest, which must\n"
	"        be the release's: --digest, or else the in-toto subject of FILE\n"
	"        (subject[0].digest.sha256); with neither it is a usage error.\n"
	"        --produced-by says who or what produced it (default \"wavectl\").\n"
	"attestations  every attestation of the release, oldest first; the latest of\n"
	"        each name is the one policies' gates read.\n"
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

/* The in-toto statement's subject digest ("subject": [{"digest":
 * {"sha256": HEX}}]) as "sha256:HEX", or NULL when the document has none. */
static char *intoto_digest(json_t *doc)
{
	json_t *subj = json_array_get(json_object_get(doc, "subject"), 0);
	const char *hex = json_string_value(json_object_get(json_object_get(subj, "digest"), "sha256"));
	char *out = NULL;
	if (hex && asprintf(&out, "sha256:%s", hex) < 0)
		out = NULL;
	return out;
}

static char *release_path(const char *version, const char *suffix)
{
	char *esc = curl_easy_escape(NULL, version, 0), *path = NULL;
	if (!esc || asprintf(&path, "/v1/releases/%s%s", esc, suffix) < 0)
		path = NULL;
	curl_free(esc);
	return path;
}

static int release_attest(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "result", required_argument, NULL, 'r' },
		{ "document", required_argument, NULL, 'f' },
		{ "digest", required_argument, NULL, 'd' },
		{ "produced-by", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *name = NULL, *result = NULL, *file = NULL, *digest = NULL, *produced_by = "wavectl";
	int o;
	optind = 1;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'n': name = optarg; break;
		case 'r': result = optarg; break;
		case 'f': file = optarg; break;
		case 'd': digest = optarg; break;
		case 'p': produced_by = optarg; break;
		case 'h': fputs(usage_release, stdout); return 0;
		default: fputs(usage_release, stderr); return EXIT_USAGE;
		}
	}
	if (argc - optind != 1 || !name || !result || !file) {
		fprintf(stderr, "wavectl: release attest takes one VERSION, --name, --result and --document\n%s",
			usage_release);
		return EXIT_USAGE;
	}
	if (strcmp(result, "passed") && strcmp(result, "failed")) {
		fprintf(stderr, "wavectl: --result must be passed or failed\n");
		return EXIT_USAGE;
	}
	json_error_t je;
	json_t *doc = json_load_file(file, 0, &je);
	if (!doc) {
		fprintf(stderr, "wavectl: %s:%d:%d: %s\n", file, je.line, je.column, je.text);
		return EXIT_REFUSED;
	}
	if (!json_is_object(doc)) {
		fprintf(stderr, "wavectl: %s: the document must be a JSON object\n", file);
		json_decref(doc);
		return EXIT_REFUSED;
	}
	char *subject = intoto_digest(doc);
	if (!digest && !subject) {
		fprintf(stderr, "wavectl: %s has no in-toto subject digest (subject[0].digest.sha256): "
			"give the artifact's digest with --digest\n", file);
		json_decref(doc);
		return EXIT_USAGE;
	}
	if (digest && subject && strcmp(digest, subject)) {
		fprintf(stderr, "wavectl: %s: the in-toto subject digest %s is not --digest %s\n", file, subject,
			digest);
		free(subject);
		json_decref(doc);
		return EXIT_REFUSED;
	}
	json_t *body = json_pack("{s:s, s:s, s:s, s:s, s:o}", "name", name, "result", result, "digest",
				 digest ? digest : subject, "produced_by", produced_by, "document", doc);
	free(subject);
	char *path = release_path(argv[optind], "/attestations");
	json_t *out = NULL;
	int rc = body && path ? api_json("POST", path, body, &out) : EXIT_REFUSED;
	json_decref(body);
	free(path);
	if (rc)
		return rc;
	printf("attestation %s of release %s recorded: %s (id %lld, document sha256 %s, by %s)\n",
	       str(out, "name"), str(out, "release"), str(out, "result"),
	       (long long)json_integer_value(json_object_get(out, "id")), str(out, "sha256"),
	       str(out, "recorded_by"));
	json_decref(out);
	return 0;
}

static void print_attestation(json_t *a, const char *name)
{
	printf("%-6lld %-20s %-7s %-21s %-20s %-.12s  %s\n",
	       (long long)json_integer_value(json_object_get(a, "id")), name ? name : str(a, "name"),
	       str(a, "result"), str(a, "at"), str(a, "recorded_by"), str(a, "sha256"), str(a, "produced_by"));
}

static const char attest_header[] = "%-6s %-20s %-7s %-21s %-20s %-12s  %s\n";

static int release_attestations(int argc, char **argv)
{
	if (argc != 2 || argv[1][0] == '-') {
		bool help = argc == 2 && strcmp(argv[1], "--help") == 0;
		if (!help)
			fprintf(stderr, "wavectl: release attestations takes one VERSION\n");
		fputs(usage_release, help ? stdout : stderr);
		return help ? 0 : EXIT_USAGE;
	}
	char *path = release_path(argv[1], "/attestations");
	json_t *doc = NULL;
	int rc = path ? api_json("GET", path, NULL, &doc) : EXIT_REFUSED;
	free(path);
	if (rc)
		return rc;
	json_t *all = json_object_get(doc, "attestations");
	printf("release %s (%s): %zu attestation(s)\n", str(doc, "release"), str(doc, "digest"),
	       json_array_size(all));
	printf(attest_header, "ID", "NAME", "RESULT", "RECORDED", "RECORDED BY", "SHA256", "PRODUCED BY");
	size_t i;
	json_t *a;
	json_array_foreach(all, i, a)
		print_attestation(a, NULL);
	const char *k;
	json_t *v;
	if (json_object_size(json_object_get(doc, "latest")))
		printf("\nlatest of each name (what gates read):");
	json_object_foreach(json_object_get(doc, "latest"), k, v)
		printf(" %s %s (id %lld);", k, str(v, "result"),
		       (long long)json_integer_value(json_object_get(v, "id")));
	if (json_object_size(json_object_get(doc, "latest")))
		printf("\n");
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
		json_t *latest = json_object_get(doc, "attestations");
		if (json_object_size(latest)) {
			const char *k;
			json_t *v;
			printf("\nattestations (latest of each name):\n");
			printf(attest_header, "ID", "NAME", "RESULT", "RECORDED", "RECORDED BY", "SHA256", "PRODUCED BY");
			json_object_foreach(latest, k, v)
				print_attestation(v, k);
		}
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
	if (strcmp(argv[1], "attest") == 0)
		return release_attest(argc - 1, argv + 1);
	if (strcmp(argv[1], "attestations") == 0)
		return release_attestations(argc - 1, argv + 1);
	fprintf(stderr, "wavectl: unknown release command \"%s\"\n%s", argv[1], usage_release);
	return EXIT_USAGE;
}
