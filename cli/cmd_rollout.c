/*
 * cmd_rollout.c - wavectl rollout create|list|show|plan|start|pause|resume|
 * abort|approve|reject, through the service (cli.md).
 *
 * `rollout create` prints the plan with the same table as the offline
 * `wavectl plan` (the service sends the plan JSON; it is turned back into a
 * ws_plan view for plan_render_text), so a person reads the same thing
 * before and after the rollout exists.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include "wavectl.h"
#include "wavesched/plan_text.h"
#include "wavesched/planner.h"
#include "wavesched/window.h"

static const char usage_rollout[] =
	"usage: wavectl rollout create --release VERSION --policy NAME [--start RFC3339]\n"
	"                              [--kind standard|urgent] [--dry-run] [--format text|json]\n"
	"                              [--justification WHY --change-ref CHG]   (break-glass policies)\n"
	"       wavectl rollout list\n"
	"       wavectl rollout show ID [--format text|json]\n"
	"       wavectl rollout status ID [--watch]\n"
	"       wavectl rollout plan ID [--version N] [--format text|json]\n"
	"       wavectl rollout start|pause|resume|abort ID [--reason R]\n"
	"       wavectl rollout approve|reject ID --wave N [--comment C]\n"
	"       wavectl rollout replan ID --reason R [--start RFC3339] [--policy-version N]\n"
	"                              [--format text|json]\n"
	"\n"
	"create   plans RELEASE with the stored policy against the service's fleet\n"
	"         and, unless --dry-run, stores the rollout (state planned) with that\n"
	"         plan frozen; prints the plan and the rollout id.  --start defaults\n"
	"         to now; the release kind is the release's own.  A policy with\n"
	"         break_glass (soft blackouts overridden) needs --justification and\n"
	"         --change-ref; the rollout then opens a review (wavectl review).\n"
	"list     every rollout, oldest first.\n"
	"show     one rollout: its waves with state and approvals, and each tenant\n"
	"         with state, window (UTC), attempt and latest gate results.\n"
	"status   per wave: state, tenants healthy/total, window; --watch follows the\n"
	"         rollout live until it ends (exit 0 completed, 1 halted/aborted/rolled back).\n"
	"plan     the frozen plan of a rollout (the current version, or --version N).\n"
	"start    approves a planned rollout so the engine starts it; pause, resume\n"
	"         and abort change a running rollout; --reason is recorded.\n"
	"approve  decides on wave N (its index) of a rollout you did not create;\n"
	"reject   your role must be one the policy names for that wave.\n"
	"replan   plans a planned rollout again against today's fleet (and, with\n"
	"         --policy-version, a newer version of its policy): a new plan\n"
	"         version with a diff; approvals of waves that changed are withdrawn.\n"
	"         --start defaults to the later of the old start and now.\n"
	"\n"
	"Exit codes: 0 done, 1 refused or invalid, 2 usage error, 3 service unreachable.\n";

/* watch.c: `rollout status ID [--watch]`. */

int api_json(const char *method, const char *path, json_t *body, json_t **out)
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	if (body && !text) {
		fprintf(stderr, "wavectl: out of memory\n");
		return EXIT_REFUSED;
	}
	response r;
	int rc = http_call(method, path, body ? "application/json" : NULL, text, text ? strlen(text) : 0,
			   NULL, &r);
	free(text);
	if (rc == 0 && (r.status < 200 || r.status > 299))
		rc = report_error(&r);
	else if (rc == 0 && out && !(*out = parse_ok(&r)))
		rc = EXIT_REFUSED;
	free(r.body.data);
	return rc;
}

/* Rebuilds a ws_plan view from the plan JSON the service returned, to print
 * it with the same table as the offline planner. */
static int print_plan_json_as_text(json_t *doc)
{
	size_t nw = json_array_size(json_object_get(doc, "waves"));
	ws_plan p = { 0 };
	p.policy = json_string_value(json_object_get(doc, "policy"));
	p.release = json_string_value(json_object_get(doc, "release"));
	ws_time_parse(json_string_value(json_object_get(doc, "start")), &p.start);
	p.waves = calloc(nw ? nw : 1, sizeof(*p.waves));
	p.n_waves = nw;
	json_t *un = json_object_get(doc, "unassigned"), *warn = json_object_get(doc, "warnings");
	p.n_unassigned = json_array_size(un);
	p.unassigned = calloc(p.n_unassigned ? p.n_unassigned : 1, sizeof(*p.unassigned));
	p.n_warnings = json_array_size(warn);
	p.warnings = calloc(p.n_warnings ? p.n_warnings : 1, sizeof(char *));
	int rc = 0;
	for (size_t w = 0; w < nw && p.waves; w++) {
		json_t *jw = json_array_get(json_object_get(doc, "waves"), w);
		ws_plan_wave *pw = &p.waves[w];
		pw->index = (int)json_integer_value(json_object_get(jw, "index"));
		pw->name = json_string_value(json_object_get(jw, "name"));
		ws_time_parse(json_string_value(json_object_get(jw, "start")), &pw->start);
		ws_time_parse(json_string_value(json_object_get(jw, "end")), &pw->end);
		pw->soak_s = json_integer_value(json_object_get(jw, "soak_seconds"));
		json_t *ts = json_object_get(jw, "tenants");
		pw->n_tenants = json_array_size(ts);
		pw->tenants = calloc(pw->n_tenants ? pw->n_tenants : 1, sizeof(*pw->tenants));
		for (size_t i = 0; i < pw->n_tenants && pw->tenants; i++) {
			json_t *jt = json_array_get(ts, i);
			ws_plan_tenant *t = &pw->tenants[i];
			const char *s = json_string_value(json_object_get(jt, "window_start"));
			const char *e = json_string_value(json_object_get(jt, "window_end"));
			t->slug = json_string_value(json_object_get(jt, "slug"));
			t->cluster = json_string_value(json_object_get(jt, "cluster"));
			if (!s || !e || ws_time_parse(s, &t->window_start) || ws_time_parse(e, &t->window_end))
				rc = EXIT_REFUSED;
			/* The offset is what the service wrote after the time. */
			int64_t local_s = 0, local_e = 0;
			char sz[40], ez[40];
			snprintf(sz, sizeof(sz), "%.19sZ", s ? s : "");
			snprintf(ez, sizeof(ez), "%.19sZ", e ? e : "");
			if (!ws_time_parse(sz, &local_s) && !ws_time_parse(ez, &local_e)) {
				t->offset_start = (int)(local_s - t->window_start);
				t->offset_end = (int)(local_e - t->window_end);
			}
			json_t *rs = json_object_get(jt, "reasons");
			t->n_reasons = json_array_size(rs);
			t->reasons = calloc(t->n_reasons ? t->n_reasons : 1, sizeof(char *));
			for (size_t k = 0; k < t->n_reasons && t->reasons; k++)
				t->reasons[k] = json_string_value(json_array_get(rs, k));
		}
	}
	for (size_t i = 0; i < p.n_unassigned && p.unassigned; i++) {
		json_t *u = json_array_get(un, i);
		p.unassigned[i].slug = json_string_value(json_object_get(u, "slug"));
		p.unassigned[i].reason = json_string_value(json_object_get(u, "reason"));
	}
	for (size_t i = 0; i < p.n_warnings && p.warnings; i++)
		p.warnings[i] = json_string_value(json_array_get(warn, i));
	char *text = rc ? NULL : plan_render_text(&p);
	if (text)
		fputs(text, stdout);
	else
		fprintf(stderr, "wavectl: the service sent a plan this wavectl cannot read\n");
	free(text);
	for (size_t w = 0; w < nw && p.waves; w++) {
		for (size_t i = 0; i < p.waves[w].n_tenants && p.waves[w].tenants; i++)
			free(p.waves[w].tenants[i].reasons);
		free(p.waves[w].tenants);
	}
	free(p.waves);
	free(p.unassigned);
	free(p.warnings);
	return text ? rc : EXIT_REFUSED;
}

/* A rollout id as typed: digits only (anything else is a usage error, not
 * something to send). */
static bool id_ok(const char *s)
{
	size_t n = strlen(s);
	return n > 0 && n <= 18 && strspn(s, "0123456789") == n;
}

static bool format_ok(const char *f)
{
	return strcmp(f, "text") == 0 || strcmp(f, "json") == 0;
}

static const char *str(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "-";
}

static void print_json(json_t *doc)
{
	char *s = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	if (s)
		puts(s);
	free(s);
}

/* ---- create --------------------------------------------------------------- */

static int rollout_create(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "release", required_argument, NULL, 'r' },
		{ "policy", required_argument, NULL, 'p' },
		{ "start", required_argument, NULL, 's' },
		{ "kind", required_argument, NULL, 'k' },
		{ "format", required_argument, NULL, 'F' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "justification", required_argument, NULL, 'j' },
		{ "change-ref", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *release = NULL, *policy = NULL, *start = NULL, *kind = NULL, *format = "text";
	const char *justification = NULL, *change_ref = NULL;
	bool dry = false;
	int o;
	optind = 1;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'r': release = optarg; break;
		case 'p': policy = optarg; break;
		case 's': start = optarg; break;
		case 'k': kind = optarg; break;
		case 'F': format = optarg; break;
		case 'n': dry = true; break;
		case 'j': justification = optarg; break;
		case 'c': change_ref = optarg; break;
		case 'h': fputs(usage_rollout, stdout); return 0;
		default: fputs(usage_rollout, stderr); return EXIT_USAGE;
		}
	}
	if (optind != argc || !release || !policy || !format_ok(format) || (!justification != !change_ref)) {
		fprintf(stderr, "wavectl: rollout create needs --release and --policy (and --format text|json; "
				"--justification and --change-ref go together)\n%s", usage_rollout);
		return EXIT_USAGE;
	}
	int64_t t;
	if (start && ws_time_parse(start, &t)) {
		fprintf(stderr, "wavectl: --start must be an RFC 3339 time such as 2026-12-01T00:00:00Z\n");
		return EXIT_USAGE;
	}
	json_t *req = json_pack("{s:s, s:s}", "release", release, "policy", policy);
	if (start)
		json_object_set_new(req, "start", json_string(start));
	if (kind)
		json_object_set_new(req, "kind", json_string(kind));
	if (justification && !dry)
		json_object_set_new(req, "break_glass", json_pack("{s:s, s:s}", "justification", justification,
								  "change_ref", change_ref));
	char *body = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	response r;
	int rc = http_call("POST", dry ? "/v1/rollouts?dry_run=1" : "/v1/rollouts", "application/json", body,
			   body ? strlen(body) : 0, NULL, &r);
	free(body);
	if (rc == 0 && r.status != (dry ? 200 : 201)) {
		rc = report_error(&r);
	} else if (rc == 0 && strcmp(format, "json") == 0) {
		fwrite(r.body.data, 1, r.body.len, stdout);
		fputc('\n', stdout);
	} else if (rc == 0) {
		json_t *doc = parse_ok(&r);
		if (!doc)
			rc = EXIT_REFUSED;
		else if (dry)
			rc = print_plan_json_as_text(doc);
		else if ((rc = print_plan_json_as_text(json_object_get(doc, "plan"))) == 0) {
			long long id = (long long)json_integer_value(json_object_get(doc, "id"));
			printf("\nrollout %lld created (%s): %lld waves, %lld tenants, %zu unassigned, plan sha256 %s\n",
			       id, str(doc, "state"), (long long)json_integer_value(json_object_get(doc, "wave_count")),
			       (long long)json_integer_value(json_object_get(doc, "tenant_count")),
			       json_array_size(json_object_get(doc, "unassigned")), str(doc, "plan_sha256"));
			printf("start it with: wavectl rollout start %lld\n", id);
		}
		json_decref(doc);
	}
	free(r.body.data);
	return rc;
}

/* ---- list, show, plan ------------------------------------------------------ */

static int rollout_list(int argc, char **argv)
{
	if (argc > 1) {
		bool help = strcmp(argv[1], "--help") == 0;
		fputs(usage_rollout, help ? stdout : stderr);
		return help ? 0 : EXIT_USAGE;
	}
	json_t *doc = NULL;
	int rc = api_json("GET", "/v1/rollouts", NULL, &doc);
	if (rc)
		return rc;
	printf("%-6s %-16s %-24s %-10s %-7s %-8s %-21s %s\n", "ID", "RELEASE", "POLICY", "STATE", "WAVES",
	       "TENANTS", "START", "CREATED BY");
	size_t i;
	json_t *r;
	json_array_foreach(json_object_get(doc, "rollouts"), i, r) {
		char waves[24];
		snprintf(waves, sizeof(waves), "%lld/%lld", (long long)json_integer_value(json_object_get(r, "waves_passed")),
			 (long long)json_integer_value(json_object_get(r, "wave_count")));
		printf("%-6lld %-16s %-24s %-10s %-7s %-8lld %-21s %s\n",
		       (long long)json_integer_value(json_object_get(r, "id")), str(r, "release"), str(r, "policy"),
		       str(r, "state"), waves, (long long)json_integer_value(json_object_get(r, "tenant_count")),
		       str(r, "start"), str(r, "created_by"));
	}
	json_decref(doc);
	return 0;
}

/* The latest result of each gate of a tenant: "backup:pass health:wait". */
/* "45m (release)": the deploy time the engine expects and where it comes
 * from (the release's deployments so far, the tenant's past ones, or the
 * policy's deploy_estimate). */
static void expected_summary(const json_t *e, char *out, size_t n)
{
	json_t *sec = json_object_get(e, "seconds");
	const char *src = json_string_value(json_object_get(e, "source"));
	if (!json_is_integer(sec) || !src) {
		snprintf(out, n, "-");
		return;
	}
	char d[32];
	ws_duration_format(json_integer_value(sec), d, sizeof(d));
	snprintf(out, n, "%s (%s)", d, strcmp(src, "deploy_estimate") == 0 ? "estimate" : src);
}

static void gate_summary(json_t *gates, char *out, size_t size)
{
	size_t used = 0;
	out[0] = '\0';
	size_t n = json_array_size(gates);
	for (size_t i = 0; i < n; i++) {
		const char *gate = str(json_array_get(gates, i), "gate");
		bool later = false;
		for (size_t k = i + 1; k < n && !later; k++)
			later = strcmp(gate, str(json_array_get(gates, k), "gate")) == 0;
		if (later)
			continue;
		int w = snprintf(out + used, size - used, "%s%s:%s", used ? " " : "", gate,
				 str(json_array_get(gates, i), "result"));
		if (w < 0 || (size_t)w >= size - used)
			break;
		used += (size_t)w;
	}
	if (!used)
		snprintf(out, size, "-");
}

static void print_rollout(json_t *r)
{
	printf("rollout %lld: release %s (%s), policy %s version %lld\n",
	       (long long)json_integer_value(json_object_get(r, "id")), str(r, "release"), str(r, "release_kind"),
	       str(r, "policy"), (long long)json_integer_value(json_object_get(r, "policy_version")));
	printf("state %s%s%s; created by %s at %s; start %s; plan version %lld\n", str(r, "state"),
	       json_is_string(json_object_get(r, "state_reason")) ? ": " : "",
	       json_is_string(json_object_get(r, "state_reason")) ? str(r, "state_reason") : "",
	       str(r, "created_by"), str(r, "created_at"), str(r, "start"),
	       (long long)json_integer_value(json_object_get(r, "plan_version")));
	size_t i;
	json_t *w;
	json_array_foreach(json_object_get(r, "waves"), i, w) {
		json_t *apps = json_object_get(w, "approvals");
		long long approved = 0;
		size_t k;
		json_t *a;
		json_array_foreach(apps, k, a)
			approved += strcmp(str(a, "decision"), "approve") == 0;
		printf("\nwave %lld  %s  %s  %s .. %s  approvals %lld/%lld\n",
		       (long long)json_integer_value(json_object_get(w, "index")), str(w, "name"), str(w, "state"),
		       str(w, "start"), str(w, "end"), approved,
		       (long long)json_integer_value(json_object_get(json_object_get(json_object_get(w, "settings"),
										  "approval"), "min")));
		json_array_foreach(apps, k, a) {
			const char *comment = str(a, "comment");
			printf("  %s by %s (%s) at %s%s%s\n", str(a, "decision"), str(a, "actor"), str(a, "role"),
			       str(a, "at"), *comment && strcmp(comment, "-") ? ": " : "",
			       strcmp(comment, "-") ? comment : "");
		}
		printf("  %-24s %-14s %-46s %-7s %-22s %s\n", "TENANT", "STATE", "WINDOW (UTC)", "ATTEMPT",
		       "EXPECTS", "GATES");
		json_t *t;
		json_array_foreach(json_object_get(w, "tenants"), k, t) {
			char window[64], gates[200], expects[48];
			snprintf(window, sizeof(window), "%s .. %s", str(t, "window_start"), str(t, "window_end"));
			gate_summary(json_object_get(t, "gates"), gates, sizeof(gates));
			expected_summary(json_object_get(t, "expected"), expects, sizeof(expects));
			printf("  %-24s %-14s %-46s %-7lld %-22s %s\n", str(t, "slug"), str(t, "state"), window,
			       (long long)json_integer_value(json_object_get(t, "attempt")), expects, gates);
		}
	}
	json_t *un = json_object_get(r, "unassigned");
	if (json_array_size(un)) {
		printf("\nunassigned:\n");
		json_t *u;
		json_array_foreach(un, i, u)
			printf("  %-24s %s\n", str(u, "slug"), str(u, "reason"));
	}
}

/* show ID [--format F] and plan ID [--version N] [--format F] */
static int rollout_read(int argc, char **argv, bool plan)
{
	static const struct option opts[] = {
		{ "format", required_argument, NULL, 'F' },
		{ "version", required_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *format = "text", *version = NULL;
	int o;
	optind = 1;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'F': format = optarg; break;
		case 'v': version = optarg; break;
		case 'h': fputs(usage_rollout, stdout); return 0;
		default: fputs(usage_rollout, stderr); return EXIT_USAGE;
		}
	}
	if (argc - optind != 1 || !id_ok(argv[optind]) || !format_ok(format) || (version && !plan) ||
	    (version && !id_ok(version))) {
		fprintf(stderr, "wavectl: rollout %s takes one rollout ID (a number)\n%s", argv[0], usage_rollout);
		return EXIT_USAGE;
	}
	char path[96];
	snprintf(path, sizeof(path), "/v1/rollouts/%s%s%s%s", argv[optind], plan ? "/plan" : "",
		 version ? "?version=" : "", version ? version : "");
	json_t *doc = NULL;
	int rc = api_json("GET", path, NULL, &doc);
	if (rc)
		return rc;
	if (strcmp(format, "json") == 0)
		print_json(doc);
	else if (plan)
		rc = print_plan_json_as_text(doc);
	else
		print_rollout(doc);
	json_decref(doc);
	return rc;
}

/* ---- commands and decisions ------------------------------------------------- */

static int rollout_action(int argc, char **argv)
{
	const char *action = argv[0];
	bool decide = strcmp(action, "approve") == 0 || strcmp(action, "reject") == 0;
	static const struct option opts[] = {
		{ "reason", required_argument, NULL, 'r' },
		{ "wave", required_argument, NULL, 'w' },
		{ "comment", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *reason = NULL, *wave = NULL, *comment = NULL;
	int o;
	optind = 1;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'r': reason = optarg; break;
		case 'w': wave = optarg; break;
		case 'c': comment = optarg; break;
		case 'h': fputs(usage_rollout, stdout); return 0;
		default: fputs(usage_rollout, stderr); return EXIT_USAGE;
		}
	}
	bool ok = argc - optind == 1 && id_ok(argv[optind]);
	if (decide)
		ok = ok && !reason && wave && id_ok(wave) && atoll(wave) > 0;
	else
		ok = ok && !wave && !comment;
	if (!ok) {
		fprintf(stderr, decide ? "wavectl: rollout %s takes one rollout ID and --wave N [--comment C]\n%s"
				       : "wavectl: rollout %s takes one rollout ID [--reason R]\n%s",
			action, usage_rollout);
		return EXIT_USAGE;
	}
	json_t *body = json_object();
	if (reason)
		json_object_set_new(body, "reason", json_string(reason));
	if (wave)
		json_object_set_new(body, "wave", json_integer(atoll(wave)));
	if (comment)
		json_object_set_new(body, "comment", json_string(comment));
	char path[96];
	snprintf(path, sizeof(path), "/v1/rollouts/%s/%s", argv[optind], action);
	json_t *doc = NULL;
	int rc = api_json("POST", path, body, &doc);
	json_decref(body);
	if (rc)
		return rc;
	if (decide)
		printf("rollout %s wave %s: %s recorded (%lld approvals, %lld rejections so far)\n", argv[optind],
		       wave, action, (long long)json_integer_value(json_object_get(doc, "approvals")),
		       (long long)json_integer_value(json_object_get(doc, "rejections")));
	else
		printf("rollout %s: %s -> %s\n", argv[optind], str(doc, "from"), str(doc, "to"));
	json_decref(doc);
	return 0;
}

/* ---- re-planning ------------------------------------------------------------- */

static void print_place(json_t *p)
{
	printf("wave %lld %s, %s .. %s", (long long)json_integer_value(json_object_get(p, "wave")),
	       str(p, "wave_name"), str(p, "window_start"), str(p, "window_end"));
}

static void print_replan(const char *id, json_t *doc)
{
	json_t *diff = json_object_get(doc, "diff");
	printf("rollout %s: plan version %lld -> %lld (%s)\n", id,
	       (long long)json_integer_value(json_object_get(diff, "from_version")),
	       (long long)json_integer_value(json_object_get(diff, "to_version")), str(diff, "reason"));
	json_t *pol = json_object_get(diff, "policy");
	if (pol)
		printf("  policy: %s -> %s\n", str(pol, "from"), str(pol, "to"));
	size_t i;
	json_t *x;
	json_array_foreach(json_object_get(diff, "added"), i, x) {
		printf("  added    %-24s ", str(x, "slug"));
		print_place(x);
		putchar('\n');
	}
	json_array_foreach(json_object_get(diff, "removed"), i, x) {
		printf("  removed  %-24s ", str(x, "slug"));
		print_place(x);
		putchar('\n');
	}
	json_array_foreach(json_object_get(diff, "moved"), i, x) {
		printf("  moved    %-24s ", str(x, "slug"));
		print_place(json_object_get(x, "from"));
		printf("\n           %-24s -> ", "");
		print_place(json_object_get(x, "to"));
		putchar('\n');
	}
	printf("  unchanged: %lld tenant(s)\n", (long long)json_integer_value(json_object_get(diff, "unchanged")));
	json_array_foreach(json_object_get(diff, "approvals_withdrawn"), i, x)
		printf("  withdrawn: %s's %s of wave %lld (%s): decide again\n", str(x, "actor"), str(x, "decision"),
		       (long long)json_integer_value(json_object_get(x, "wave")), str(x, "wave_name"));
}

static int rollout_replan(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "reason", required_argument, NULL, 'r' },
		{ "start", required_argument, NULL, 's' },
		{ "policy-version", required_argument, NULL, 'p' },
		{ "format", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *reason = NULL, *start = NULL, *pv = NULL, *format = "text";
	int o;
	optind = 1;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'r': reason = optarg; break;
		case 's': start = optarg; break;
		case 'p': pv = optarg; break;
		case 'f': format = optarg; break;
		case 'h': fputs(usage_rollout, stdout); return 0;
		default: fputs(usage_rollout, stderr); return EXIT_USAGE;
		}
	}
	if (argc - optind != 1 || !id_ok(argv[optind]) || !reason || !format_ok(format) ||
	    (pv && (!id_ok(pv) || atoll(pv) < 1))) {
		fprintf(stderr, "wavectl: rollout replan takes one rollout ID and --reason R "
				"[--start RFC3339] [--policy-version N] [--format text|json]\n%s", usage_rollout);
		return EXIT_USAGE;
	}
	json_t *body = json_pack("{s:s}", "reason", reason);
	if (start)
		json_object_set_new(body, "start", json_string(start));
	if (pv)
		json_object_set_new(body, "policy_version", json_integer(atoll(pv)));
	char path[96];
	snprintf(path, sizeof(path), "/v1/rollouts/%s/replan", argv[optind]);
	json_t *doc = NULL;
	int rc = api_json("POST", path, body, &doc);
	json_decref(body);
	if (rc)
		return rc;
	if (strcmp(format, "json") == 0)
		print_json(doc);
	else
		print_replan(argv[optind], doc);
	json_decref(doc);
	return 0;
}

int cmd_rollout(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(usage_rollout, argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : 0;
	}
	const char *sub = argv[1];
	argc--;
	argv++;
	if (strcmp(sub, "create") == 0)
		return rollout_create(argc, argv);
	if (strcmp(sub, "list") == 0)
		return rollout_list(argc, argv);
	if (strcmp(sub, "show") == 0)
		return rollout_read(argc, argv, false);
	if (strcmp(sub, "status") == 0)
		return rollout_status(argc, argv);
	if (strcmp(sub, "plan") == 0)
		return rollout_read(argc, argv, true);
	if (strcmp(sub, "replan") == 0)
		return rollout_replan(argc, argv);
	static const char *const actions[] = { "start", "pause", "resume", "abort", "approve", "reject", NULL };
	for (size_t i = 0; actions[i]; i++)
		if (strcmp(sub, actions[i]) == 0)
			return rollout_action(argc, argv);
	fprintf(stderr, "wavectl: unknown rollout command \"%s\"\n%s", sub, usage_rollout);
	return EXIT_USAGE;
}
