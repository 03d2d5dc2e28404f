/*
 * wavectl.c - the command line client (cli.md).
 *
 * Talks to the API at WAVESCHED_URL with WAVESCHED_TOKEN, except where a
 * command says offline.  A short-lived client, so it uses libcurl's easy
 * interface; the service itself uses the multi interface on its loop.
 *
 * Exit codes: 0 success; 1 the request was understood and refused or
 * invalid; 2 usage error; 3 cannot reach the service.  Errors go to stderr
 * as "wavectl: message".
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include <jansson.h>
#include "ws_config.h"
#include "wavesched/fleet.h"

enum { EXIT_OK = 0, EXIT_REFUSED = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

#define MAX_RESPONSE (64u << 20)
#define MAX_FILE (16u << 20)

static const char usage_main[] =
	"usage: wavectl COMMAND [OPTIONS]\n"
	"\n"
	"The wavesched command line.  Talks to WAVESCHED_URL (default http://127.0.0.1:8480)\n"
	"with the bearer token in WAVESCHED_TOKEN, except offline commands.\n"
	"\n"
	"commands:\n"
	"  fleet import FILE [--dry-run]     import a fleet file (validated locally first)\n"
	"  fleet export [--format yaml|json] print the fleet as stored\n"
	"  fleet validate FILE...            offline: check fleet files\n"
	"  tenant list                       tenants with version and next window\n"
	"  tenant show SLUG                  one tenant\n"
	"\n"
	"Exit codes: 0 success, 1 refused or invalid, 2 usage error, 3 service unreachable.\n"
	"Run `wavectl COMMAND --help` for a command's options.\n";

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
	"\n"
	"Shows tenants with their current version and next maintenance window.\n"
	"A tenant token sees only its own tenants.\n";

/* ---- HTTP ------------------------------------------------------------- */

typedef struct buf {
	char *data;
	size_t len;
	bool overflow;
} buf;

static size_t write_cb(char *ptr, size_t size, size_t n, void *arg)
{
	buf *b = arg;
	size_t add = size * n;
	if (b->len + add > MAX_RESPONSE) {
		b->overflow = true;
		return 0;
	}
	char *p = realloc(b->data, b->len + add + 1);
	if (!p)
		return 0;
	memcpy(p + b->len, ptr, add);
	b->data = p;
	b->len += add;
	b->data[b->len] = '\0';
	return add;
}

typedef struct response {
	long status;
	buf body;
} response;

/* Sends one request.  Returns 0 when an HTTP answer came back (any status),
 * EXIT_UNREACHABLE when the service could not be reached. */
static int http_call(const char *method, const char *path, const char *ctype,
		     const char *body, size_t body_len, const char *accept, response *out)
{
	const char *base = getenv("WAVESCHED_URL");
	const char *token = getenv("WAVESCHED_TOKEN");
	if (!base || !*base)
		base = "http://127.0.0.1:8480";
	memset(out, 0, sizeof(*out));
	char *url = NULL, *auth = NULL, *ct = NULL, *acc = NULL;
	size_t blen = strlen(base);
	if (asprintf(&url, "%.*s%s", (int)(blen && base[blen - 1] == '/' ? blen - 1 : blen), base, path) < 0)
		return EXIT_UNREACHABLE;
	CURL *h = curl_easy_init();
	struct curl_slist *hdrs = NULL;
	if (token && *token && asprintf(&auth, "Authorization: Bearer %s", token) >= 0)
		hdrs = curl_slist_append(hdrs, auth);
	if (ctype && asprintf(&ct, "Content-Type: %s", ctype) >= 0)
		hdrs = curl_slist_append(hdrs, ct);
	if (asprintf(&acc, "Accept: %s", accept ? accept : "application/json") >= 0)
		hdrs = curl_slist_append(hdrs, acc);
	hdrs = curl_slist_append(hdrs, "Expect:");
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &out->body);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 300000L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "wavectl/" WS_VERSION);
	if (body) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
	}
	CURLcode cc = curl_easy_perform(h);
	int rc = 0;
	if (cc != CURLE_OK) {
		if (out->body.overflow)
			fprintf(stderr, "wavectl: %s: the answer is larger than %u bytes\n", url, MAX_RESPONSE);
		else
			fprintf(stderr, "wavectl: cannot reach the service at %s: %s\n", base,
				curl_easy_strerror(cc));
		rc = EXIT_UNREACHABLE;
	} else {
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
	}
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	free(url);
	if (auth) {
		explicit_bzero(auth, strlen(auth));
		free(auth);
	}
	free(ct);
	free(acc);
	return rc;
}

/* Prints an error answer of the api.md shape; returns the exit code that
 * goes with the status. */
static int report_error(const response *r)
{
	json_error_t je;
	json_t *doc = r->body.data ? json_loads(r->body.data, 0, &je) : NULL;
	json_t *err = json_object_get(doc, "error");
	const char *msg = json_string_value(json_object_get(err, "message"));
	fprintf(stderr, "wavectl: %s (HTTP %ld)\n", msg ? msg : "the service refused the request", r->status);
	size_t i;
	json_t *d;
	json_array_foreach(json_object_get(err, "details"), i, d) {
		const char *m = json_string_value(json_object_get(d, "message"));
		if (m)
			fprintf(stderr, "wavectl: %s\n", m);
	}
	json_decref(doc);
	return r->status == 503 ? EXIT_UNREACHABLE : EXIT_REFUSED;
}

static json_t *parse_ok(const response *r)
{
	json_error_t je;
	json_t *doc = json_loads(r->body.data ? r->body.data : "", 0, &je);
	if (!doc)
		fprintf(stderr, "wavectl: the service sent an unreadable answer (line %d: %s)\n", je.line, je.text);
	return doc;
}

/* ---- fleet ------------------------------------------------------------ */

static int read_file(const char *path, char **out, size_t *len)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "wavectl: %s: cannot open: %m\n", path);
		return EXIT_REFUSED;
	}
	char *b = malloc(MAX_FILE + 1);
	size_t n = b ? fread(b, 1, MAX_FILE + 1, f) : 0;
	if (f != stdin)
		fclose(f);
	if (!b || n > MAX_FILE) {
		fprintf(stderr, "wavectl: %s: larger than %u bytes\n", path, MAX_FILE);
		free(b);
		return EXIT_REFUSED;
	}
	b[n] = '\0';
	*out = b;
	*len = n;
	return 0;
}

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

static int cmd_fleet(int argc, char **argv)
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

static int cmd_tenant(int argc, char **argv)
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

int main(int argc, char **argv)
{
	if (argc < 2) {
		fputs(usage_main, stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
		fputs(usage_main, stdout);
		return 0;
	}
	if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
		printf("wavectl %s\n", WS_VERSION);
		return 0;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	int rc;
	if (strcmp(cmd, "fleet") == 0)
		rc = cmd_fleet(argc - 1, argv + 1);
	else if (strcmp(cmd, "tenant") == 0)
		rc = cmd_tenant(argc - 1, argv + 1);
	else {
		fprintf(stderr, "wavectl: unknown command \"%s\"\n%s", cmd, usage_main);
		rc = EXIT_USAGE;
	}
	curl_global_cleanup();
	return rc;
}
