/*
 * cmd_fleet.c - wavectl fleet import|export|validate, wavectl tenant list|show.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include "wavectl.h"
#include "wavesched/fleet.h"

static const char usage_fleet[] =
	"usage: wavectl fleet import FILE [--dry-run]\n"
	"       wavectl fleet export [--format yaml|json]\n"
	"       wavectl fleet validate FILE...\n"
	"\n"
	"import    validates FILE locally (every problem as FILE:LINE:COLUMN: message),\n"
	"          then sends it to the service, which applies it in one transaction\n"
	"          and reports what was added, changed and removed.\n"
	"          --dry-run reports the changes without applying them.\n"
	"export    prints the stored fleet (YAML by default); importing it again\n"
	"          changes nothing.\n"
	"validate  offline: checks files without a service.\n";

static const char usage_tenant[] =
	"usage: wavectl tenant list\n"
	"       wavectl tenant show SLUG\n"
	"       wavectl tenant windows SLUG [--ics] [--format text|json]\n"
	"\n"
	"Shows tenants with their current version and next maintenance window;\n"
	"windows: the tenant's scheduled windows across rollouts (--ics: the\n"
	"RFC 5545 calendar feed).\n"
	"A tenant token sees only its own tenants.\n";

/* ---- fleet ------------------------------------------------------------ */

static bool validate_local(const char *path, const char *text, size_t len)
{
	ws_diags d;
	ws_diags_init(&d);
	ws_fleet *f = fleet_parse(path, text, len, &d);
	for (size_t i = 0; i < d.len; i++) {
		char *s = ws_diag_format(&d.items[i]);
		fprintf(stderr, "%s\n", s ? s : d.items[i].message);
		free(s);
	}
	if (!f)
		fprintf(stderr, "wavectl: %s: %zu problem%s\n", path, d.len, d.len == 1 ? "" : "s");
	ws_diags_free(&d);
	bool ok = f != NULL;
	fleet_free(f);
	return ok;
}

static void print_names(const char *label, json_t *group)
{
	static const char *const kinds[] = { "clusters", "tenants", "calendars" };
	bool any = false;
	printf("  %-8s", label);
	for (int k = 0; k < 3; k++) {
		json_t *arr = json_object_get(group, kinds[k]);
		size_t n = json_array_size(arr);
		if (!n)
			continue;
		printf("%s%zu %s (", any ? "; " : " ", n, n == 1 ? (k == 0 ? "cluster" : k == 1 ? "tenant" : "calendar") : kinds[k]);
		for (size_t i = 0; i < n; i++)
			printf("%s%s", i ? ", " : "", json_string_value(json_array_get(arr, i)));
		printf(")");
		any = true;
	}
	printf("%s\n", any ? "" : " none");
}

static int fleet_import(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	bool dry = false;
	int o;
	optind = 1;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'n': dry = true; break;
		case 'h': fputs(usage_fleet, stdout); return 0;
		default: fputs(usage_fleet, stderr); return EXIT_USAGE;
		}
	}
	if (argc - optind != 1) {
		fprintf(stderr, "wavectl: fleet import takes one FILE\n%s", usage_fleet);
		return EXIT_USAGE;
	}
	const char *path = argv[optind];
	char *text;
	size_t len;
	int rc = read_file(path, &text, &len);
	if (rc)
		return rc;
	if (!validate_local(path, text, len)) {
		free(text);
		return EXIT_REFUSED;
	}
	response r;
	rc = http_call("PUT", dry ? "/v1/fleet?dry_run=1" : "/v1/fleet", "application/yaml", text, len,
		       NULL, &r);
	free(text);
	if (rc == 0 && r.status != 200)
		rc = report_error(&r);
	else if (rc == 0) {
		json_t *rep = parse_ok(&r);
		if (!rep) {
			rc = EXIT_REFUSED;
		} else {
			json_int_t gen = json_integer_value(json_object_get(rep, "generation"));
			if (dry)
				printf("dry run of %s: nothing was changed; %lld tenants in the file\n", path,
				       (long long)json_integer_value(json_object_get(rep, "tenants")));
			else
				printf("imported %s (fleet generation %lld): %lld tenants\n", path, (long long)gen,
				       (long long)json_integer_value(json_object_get(rep, "tenants")));
			print_names("added:", json_object_get(rep, "added"));
			print_names("changed:", json_object_get(rep, "changed"));
			print_names("removed:", json_object_get(rep, "removed"));
			json_decref(rep);
		}
	}
	free(r.body.data);
	return rc;
}

static int fleet_export(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *format = "yaml";
	int o;
	optind = 1;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'f': format = optarg; break;
		case 'h': fputs(usage_fleet, stdout); return 0;
		default: fputs(usage_fleet, stderr); return EXIT_USAGE;
		}
	}
	if (optind != argc || (strcmp(format, "yaml") && strcmp(format, "json"))) {
		fprintf(stderr, "wavectl: fleet export takes no arguments; --format is yaml or json\n");
		return EXIT_USAGE;
	}
	response r;
	int rc = http_call("GET", strcmp(format, "yaml") == 0 ? "/v1/fleet?format=yaml" : "/v1/fleet?format=json",
			   NULL, NULL, 0, NULL, &r);
	if (rc == 0 && r.status != 200)
		rc = report_error(&r);
	else if (rc == 0)
		fwrite(r.body.data ? r.body.data : "", 1, r.body.len, stdout);
	free(r.body.data);
	return rc;
}

static int fleet_validate(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "wavectl: fleet validate takes one or more FILEs\n%s", usage_fleet);
		return EXIT_USAGE;
	}
	int rc = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0) {
			fputs(usage_fleet, stdout);
			return 0;
		}
		char *text;
		size_t len;
		int r = read_file(argv[i], &text, &len);
		if (r) {
			rc = r;
			continue;
		}
		ws_diags d;
		ws_diags_init(&d);
		ws_fleet *f = fleet_parse(argv[i], text, len, &d);
		if (f)
			printf("%s: valid: %zu clusters, %zu tenants, %zu calendars\n", argv[i], f->n_clusters,
			       f->n_tenants, f->n_calendars);
		else if (!validate_local(argv[i], text, len))
			rc = EXIT_REFUSED;
		fleet_free(f);
		ws_diags_free(&d);
		free(text);
	}
	return rc;
}

int cmd_fleet(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(usage_fleet, argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : 0;
	}
	if (strcmp(argv[1], "import") == 0)
		return fleet_import(argc - 1, argv + 1);
	if (strcmp(argv[1], "export") == 0)
		return fleet_export(argc - 1, argv + 1);
	if (strcmp(argv[1], "validate") == 0)
		return fleet_validate(argc - 1, argv + 1);
	fprintf(stderr, "wavectl: unknown fleet command \"%s\"\n%s", argv[1], usage_fleet);
	return EXIT_USAGE;
}

/* ---- tenants ---------------------------------------------------------- */

static void print_tenant_row(json_t *t)
{
	json_t *nw = json_object_get(t, "next_window");
	const char *v = json_string_value(json_object_get(t, "version"));
	printf("%-24s %-22s %-9s %-10s %-26s %s\n", json_string_value(json_object_get(t, "slug")),
	       json_string_value(json_object_get(t, "cluster")),
	       json_string_value(json_object_get(t, "criticality")), v ? v : "-",
	       json_is_object(nw) ? json_string_value(json_object_get(nw, "start")) : "any time",
	       json_is_true(json_object_get(t, "frozen")) ? "frozen" : "");
}

int cmd_tenant(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(usage_tenant, argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : 0;
	}
	bool list = strcmp(argv[1], "list") == 0;
	if (!list && !(strcmp(argv[1], "show") == 0 && argc == 3)) {
		fprintf(stderr, "wavectl: unknown or incomplete tenant command\n%s", usage_tenant);
		return EXIT_USAGE;
	}
	if (list && argc != 2) {
		fprintf(stderr, "wavectl: tenant list takes no arguments\n");
		return EXIT_USAGE;
	}
	char *path = NULL;
	if (!list) {
		char *esc = curl_easy_escape(NULL, argv[2], 0);
		if (asprintf(&path, "/v1/tenants/%s", esc ? esc : "") < 0)
			path = NULL;
		curl_free(esc);
	}
	response r;
	int rc = http_call("GET", list ? "/v1/tenants" : path, NULL, NULL, 0, NULL, &r);
	free(path);
	if (rc == 0 && r.status != 200) {
		rc = report_error(&r);
	} else if (rc == 0) {
		json_t *doc = parse_ok(&r);
		if (!doc) {
			rc = EXIT_REFUSED;
		} else if (list) {
			printf("%-24s %-22s %-9s %-10s %-26s\n", "TENANT", "CLUSTER", "CRIT", "VERSION", "NEXT WINDOW");
			size_t i;
			json_t *t;
			json_array_foreach(json_object_get(doc, "tenants"), i, t)
				print_tenant_row(t);
		} else {
			char *s = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
			printf("%s\n", s ? s : "");
			free(s);
		}
		json_decref(doc);
	}
	free(r.body.data);
	return rc;
}

