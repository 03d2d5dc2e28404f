/*
 * cmd_policy.c - wavectl policy validate|push|list|show and wavectl plan
 * (offline).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <curl/curl.h>
#include "wavectl.h"
#include "wavesched/plan_text.h"
#include "wavesched/planner.h"
#include "wavesched/policy.h"
#include "wavesched/window.h"

static const char usage_policy[] =
	"usage: wavectl policy validate FILE... [--fleet FLEET]\n"
	"       wavectl policy push FILE\n"
	"       wavectl policy list\n"
	"       wavectl policy show NAME [--version N]\n"
	"\n"
	"validate  offline: checks policy files (every problem as FILE:LINE:COLUMN:\n"
	"          message); with --fleet, also that their blackout calendars exist\n"
	"          and that every wave selects somebody.  A valid policy prints a\n"
	"          one-line summary.\n"
	"push      stores FILE as the next version of its policy (validated first).\n"
	"list      the stored policies, latest versions.\n"
	"show      one stored policy (latest, or --version N), with its text.\n";

static const char usage_plan[] =
	"usage: wavectl plan --fleet FLEET --policy POLICY --release VERSION\n"
	"                    [--kind standard|urgent] [--start RFC3339]\n"
	"                    [--format text|json] [--diff OTHER_POLICY]\n"
	"\n"
	"Offline: plans RELEASE across FLEET with POLICY (spec/policy.md) and prints\n"
	"the waves, each tenant's window in its own time zone, and the reasons.\n"
	"--start defaults to now; --format json prints the plan JSON the service\n"
	"would return for the same inputs.  --diff lists the tenants whose wave or\n"
	"window changes under OTHER_POLICY, and why.\n";

/* ---- offline ------------------------------------------------------------ */

static ws_fleet *load_fleet(const char *path)
{
	ws_diags d;
	ws_diags_init(&d);
	ws_fleet *f = fleet_parse_file(path, &d);
	print_diags(&d);
	if (!f)
		fprintf(stderr, "wavectl: %s: %zu problem%s\n", path, d.len, d.len == 1 ? "" : "s");
	ws_diags_free(&d);
	return f;
}

static ws_policy *load_policy(const char *path)
{
	ws_diags d;
	ws_diags_init(&d);
	ws_policy *p = policy_parse_file(path, &d);
	print_diags(&d);
	if (!p)
		fprintf(stderr, "wavectl: %s: %zu problem%s\n", path, d.len, d.len == 1 ? "" : "s");
	ws_diags_free(&d);
	return p;
}

static int policy_validate(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "fleet", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *fleet_path = NULL;
	int o;
	optind = 1;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'f': fleet_path = optarg; break;
		case 'h': fputs(usage_policy, stdout); return 0;
		default: fputs(usage_policy, stderr); return EXIT_USAGE;
		}
	}
	if (optind == argc) {
		fprintf(stderr, "wavectl: policy validate takes one or more FILEs\n%s", usage_policy);
		return EXIT_USAGE;
	}
	ws_fleet *f = NULL;
	if (fleet_path && !(f = load_fleet(fleet_path)))
		return EXIT_REFUSED;
	int rc = 0;
	for (int i = optind; i < argc; i++) {
		ws_policy *p = load_policy(argv[i]);
		if (!p) {
			rc = EXIT_REFUSED;
			continue;
		}
		if (f) {
			ws_diags d;
			ws_diags_init(&d);
			if (policy_check_fleet(p, argv[i], f, &d)) {
				print_diags(&d);
				fprintf(stderr, "wavectl: %s: %zu problem%s against %s\n", argv[i], d.len,
					d.len == 1 ? "" : "s", fleet_path);
				rc = EXIT_REFUSED;
				ws_diags_free(&d);
				policy_free(p);
				continue;
			}
			ws_diags_free(&d);
		}
		char *sum = policy_summary(p);
		printf("%s: valid: %s\n", argv[i], sum ? sum : p->name);
		free(sum);
		policy_free(p);
	}
	fleet_free(f);
	return rc;
}

static ws_plan *make_plan(const ws_fleet *f, const ws_policy *p, const char *release,
			  ws_release_kind kind, int64_t start)
{
	ws_plan_input in = { .fleet = f, .policy = p, .release = release, .kind = kind, .start = start };
	ws_diags d;
	ws_diags_init(&d);
	ws_plan *plan = plan_build(&in, &d);
	print_diags(&d);
	if (!plan)
		fprintf(stderr, "wavectl: no plan with policy %s: %zu problem%s\n", p->name, d.len,
			d.len == 1 ? "" : "s");
	ws_diags_free(&d);
	return plan;
}

int cmd_plan(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "fleet", required_argument, NULL, 'f' },
		{ "policy", required_argument, NULL, 'p' },
		{ "release", required_argument, NULL, 'r' },
		{ "kind", required_argument, NULL, 'k' },
		{ "start", required_argument, NULL, 's' },
		{ "format", required_argument, NULL, 'F' },
		{ "diff", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *fleet_path = NULL, *policy_path = NULL, *release = NULL, *kind_s = "standard";
	const char *start_s = NULL, *format = "text", *diff_path = NULL;
	int o;
	optind = 1;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'f': fleet_path = optarg; break;
		case 'p': policy_path = optarg; break;
		case 'r': release = optarg; break;
		case 'k': kind_s = optarg; break;
		case 's': start_s = optarg; break;
		case 'F': format = optarg; break;
		case 'd': diff_path = optarg; break;
		case 'h': fputs(usage_plan, stdout); return 0;
		default: fputs(usage_plan, stderr); return EXIT_USAGE;
		}
	}
	ws_release_kind kind;
	int64_t start = (int64_t)time(NULL);
	if (optind != argc || !fleet_path || !policy_path || !release) {
		fprintf(stderr, "wavectl: plan needs --fleet, --policy and --release\n%s", usage_plan);
		return EXIT_USAGE;
	}
	if (ws_release_kind_parse(kind_s, &kind)) {
		fprintf(stderr, "wavectl: --kind must be standard or urgent\n");
		return EXIT_USAGE;
	}
	if (start_s && ws_time_parse(start_s, &start)) {
		fprintf(stderr, "wavectl: --start \"%s\" is not an RFC 3339 time such as 2026-12-01T00:00:00Z\n",
			start_s);
		return EXIT_USAGE;
	}
	if (strcmp(format, "text") && strcmp(format, "json")) {
		fprintf(stderr, "wavectl: --format must be text or json\n");
		return EXIT_USAGE;
	}
	int rc = EXIT_REFUSED;
	ws_fleet *f = load_fleet(fleet_path);
	ws_policy *p = f ? load_policy(policy_path) : NULL;
	ws_policy *other = p && diff_path ? load_policy(diff_path) : NULL;
	ws_plan *plan = p && (!diff_path || other) ? make_plan(f, p, release, kind, start) : NULL;
	ws_plan *plan2 = plan && other ? make_plan(f, other, release, kind, start) : NULL;
	if (plan && diff_path && plan2) {
		size_t changed = 0;
		char *text = plan_render_diff(plan, plan2, &changed);
		if (text) {
			fputs(text, stdout);
			rc = 0;
		}
		free(text);
	} else if (plan && !diff_path) {
		char *text = NULL;
		if (strcmp(format, "json") == 0) {
			/* Streamed, the same bytes as the service's json_dumps of
			 * plan_to_json: the tree and its dump would cost several
			 * times the output on a large fleet. */
			if (plan_write_json(plan, stdout) == 0 && putchar('\n') != EOF && fflush(stdout) == 0)
				rc = 0;
			else
				fprintf(stderr, "wavectl: cannot write the plan to standard output\n");
		} else {
			text = plan_render_text(plan);
			if (text)
				fputs(text, stdout);
			rc = text ? 0 : EXIT_REFUSED;
		}
		free(text);
	}
	plan_free(plan2);
	plan_free(plan);
	policy_free(other);
	policy_free(p);
	fleet_free(f);
	return rc;
}

/* ---- through the service ------------------------------------------------ */

static int simple_get(const char *path, json_t **out)
{
	response r;
	int rc = http_call("GET", path, NULL, NULL, 0, NULL, &r);
	if (rc == 0 && r.status != 200)
		rc = report_error(&r);
	else if (rc == 0 && !(*out = parse_ok(&r)))
		rc = EXIT_REFUSED;
	free(r.body.data);
	return rc;
}

static int policy_push(int argc, char **argv)
{
	if (argc != 2 || argv[1][0] == '-') {
		if (argc == 2 && strcmp(argv[1], "--help") == 0) {
			fputs(usage_policy, stdout);
			return 0;
		}
		fprintf(stderr, "wavectl: policy push takes one FILE\n%s", usage_policy);
		return EXIT_USAGE;
	}
	ws_policy *p = load_policy(argv[1]);
	if (!p)
		return EXIT_REFUSED;
	policy_free(p);
	char *text;
	size_t len;
	int rc = read_file(argv[1], &text, &len);
	if (rc)
		return rc;
	response r;
	rc = http_call("POST", "/v1/policies", "application/yaml", text, len, NULL, &r);
	free(text);
	if (rc == 0 && r.status != 200 && r.status != 201) {
		rc = report_error(&r);
	} else if (rc == 0) {
		json_t *doc = parse_ok(&r);
		if (!doc) {
			rc = EXIT_REFUSED;
		} else {
			printf("%s policy %s version %lld (sha256 %s)\n",
			       json_is_true(json_object_get(doc, "created")) ? "stored" : "unchanged:",
			       json_string_value(json_object_get(doc, "name")),
			       (long long)json_integer_value(json_object_get(doc, "version")),
			       json_string_value(json_object_get(doc, "sha256")));
			size_t i;
			json_t *w;
			json_array_foreach(json_object_get(doc, "warnings"), i, w)
				fprintf(stderr, "wavectl: warning: %s\n",
					json_string_value(json_object_get(w, "message")));
			json_decref(doc);
		}
	}
	free(r.body.data);
	return rc;
}

static int policy_list(void)
{
	json_t *doc = NULL;
	int rc = simple_get("/v1/policies", &doc);
	if (rc)
		return rc;
	printf("%-28s %-8s %-9s %-21s %s\n", "POLICY", "VERSION", "VERSIONS", "STORED", "DESCRIPTION");
	size_t i;
	json_t *p;
	json_array_foreach(json_object_get(doc, "policies"), i, p) {
		const char *desc = json_string_value(json_object_get(p, "description"));
		printf("%-28s %-8lld %-9lld %-21s %s\n", json_string_value(json_object_get(p, "name")),
		       (long long)json_integer_value(json_object_get(p, "version")),
		       (long long)json_integer_value(json_object_get(p, "versions")),
		       json_string_value(json_object_get(p, "created_at")), desc ? desc : "");
	}
	json_decref(doc);
	return 0;
}

static int policy_show(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "version", required_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *version = NULL;
	int o;
	optind = 1;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'v': version = optarg; break;
		case 'h': fputs(usage_policy, stdout); return 0;
		default: fputs(usage_policy, stderr); return EXIT_USAGE;
		}
	}
	if (argc - optind != 1) {
		fprintf(stderr, "wavectl: policy show takes one NAME\n%s", usage_policy);
		return EXIT_USAGE;
	}
	char *esc = curl_easy_escape(NULL, argv[optind], 0);
	char *vesc = version ? curl_easy_escape(NULL, version, 0) : NULL;
	char *path = NULL;
	if (asprintf(&path, "/v1/policies/%s%s%s", esc ? esc : "", vesc ? "?version=" : "",
		     vesc ? vesc : "") < 0)
		path = NULL;
	curl_free(esc);
	curl_free(vesc);
	json_t *doc = NULL;
	int rc = path ? simple_get(path, &doc) : EXIT_REFUSED;
	free(path);
	if (rc)
		return rc;
	printf("# policy %s version %lld, sha256 %s, stored %s by %s\n",
	       json_string_value(json_object_get(doc, "name")),
	       (long long)json_integer_value(json_object_get(doc, "version")),
	       json_string_value(json_object_get(doc, "sha256")),
	       json_string_value(json_object_get(doc, "created_at")),
	       json_string_value(json_object_get(doc, "created_by")));
	fputs(json_string_value(json_object_get(doc, "body")), stdout);
	json_decref(doc);
	return 0;
}

int cmd_policy(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(usage_policy, argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : 0;
	}
	if (strcmp(argv[1], "validate") == 0)
		return policy_validate(argc - 1, argv + 1);
	if (strcmp(argv[1], "push") == 0)
		return policy_push(argc - 1, argv + 1);
	if (strcmp(argv[1], "list") == 0 && argc == 2)
		return policy_list();
	if (strcmp(argv[1], "show") == 0)
		return policy_show(argc - 1, argv + 1);
	fprintf(stderr, "wavectl: unknown or incomplete policy command \"%s\"\n%s", argv[1], usage_policy);
	return EXIT_USAGE;
}
