/*
 * sim_fleetfor.c - two helper commands of simfleet that run without a loop:
 *
 *   simfleet fleet-for --base URL [--executor E] [--token-env NAME] FLEET
 *     prints FLEET (parsed and validated by the project's fleet parser, in
 *     its canonical form) with every tenant's health_url and every cluster's
 *     deploy pointed at a simulator at URL.  Going through fleet_parse and
 *     fleet_to_json means the output is a fleet the service and the planner
 *     accept, whatever the input's layout; comments are not kept.
 *
 *   simfleet deploy-client --url URL --tenant SLUG --version V ...
 *     what the `command` executor runs: posts the deploy to the simulator's
 *     webhook and waits for its status (exit 0 done, 1 failed or refused,
 *     3 unreachable).  A separate short-lived process, so plain blocking
 *     curl calls are fine here.
 */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <curl/curl.h>
#include "sim.h"

enum { EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

static const char fleet_for_usage[] =
	"usage: simfleet fleet-for --base URL [--executor webhook|kubernetes|command]\n"
	"                          [--token-env NAME] [--format yaml|json] FLEET.yaml\n"
	"\n"
	"Prints FLEET.yaml, in canonical form, with each tenant's health_url set to\n"
	"URL/t/SLUG/health and each cluster's deploy aimed at the simulator at URL:\n"
	"  webhook     url URL/deploy, status_url URL/deploy/status?key={key}\n"
	"  kubernetes  api_url URL, namespace odoo, deployment {slug}, container odoo,\n"
	"              image registry.example/odoo:{version}\n"
	"  command     argv: this simfleet's deploy-client against URL, passing the\n"
	"              engine's idempotency key ({key})\n"
	"--token-env NAME adds token_env: NAME to webhook and kubernetes deploys.\n"
	"--format json prints the same fleet as JSON (the service and wavectl accept both).\n";

static char *trimmed_base(const char *base)
{
	size_t n = strlen(base);
	while (n > 0 && base[n - 1] == '/')
		n--;
	return strndup(base, n);
}

static json_t *deploy_for(const char *executor, const char *base, const char *token_env,
			  const char *self)
{
	char buf[2048];
	json_t *d = NULL;
	if (strcmp(executor, "webhook") == 0) {
		d = json_pack("{s:s}", "executor", "webhook");
		snprintf(buf, sizeof(buf), "%s/deploy", base);
		json_object_set_new(d, "url", json_string(buf));
		snprintf(buf, sizeof(buf), "%s/deploy/status?key={key}", base);
		json_object_set_new(d, "status_url", json_string(buf));
	} else if (strcmp(executor, "kubernetes") == 0) {
		d = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "executor", "kubernetes", "api_url",
			      base, "namespace", "odoo", "deployment", "{slug}", "container", "odoo",
			      "image", "registry.example/odoo:{version}");
	} else {
		/* Not --quiet: the line deploy-client prints is what the engine
		 * keeps as the command's output in the deploy's evidence. */
		d = json_pack("{s:s, s:[s, s, s, s, s, s, s, s, s, s, s, s]}", "executor", "command",
			      "argv", self, "deploy-client", "--url", base, "--tenant", "{slug}",
			      "--version", "{version}", "--previous-version", "{previous_version}",
			      "--key", "{key}");
	}
	if (d && token_env && strcmp(executor, "command") != 0)
		json_object_set_new(d, "token_env", json_string(token_env));
	return d;
}

int sim_fleet_for_main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "base", required_argument, NULL, 'b' },
		{ "executor", required_argument, NULL, 'e' },
		{ "token-env", required_argument, NULL, 't' },
		{ "format", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *base_arg = NULL, *executor = "webhook", *token_env = NULL, *format = "yaml";
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", lopts, NULL)) != -1) {
		switch (c) {
		case 'b': base_arg = optarg; break;
		case 'e': executor = optarg; break;
		case 't': token_env = optarg; break;
		case 'f': format = optarg; break;
		case 'h': fputs(fleet_for_usage, stdout); return 0;
		case ':':
			fprintf(stderr, "simfleet: option %s needs a value\n", argv[optind - 1]);
			return EXIT_USAGE;
		default:
			fprintf(stderr, "simfleet: unknown option \"%s\"\n%s", argv[optind - 1],
				fleet_for_usage);
			return EXIT_USAGE;
		}
	}
	if (!base_arg || (strncmp(base_arg, "http://", 7) != 0 && strncmp(base_arg, "https://", 8) != 0)) {
		fprintf(stderr, "simfleet: fleet-for needs --base with an http or https URL\n");
		return EXIT_USAGE;
	}
	if (strcmp(executor, "webhook") != 0 && strcmp(executor, "kubernetes") != 0 &&
	    strcmp(executor, "command") != 0) {
		fprintf(stderr, "simfleet: --executor: expected webhook, kubernetes or command, got "
			"\"%s\"\n", executor);
		return EXIT_USAGE;
	}
	if (strcmp(format, "yaml") != 0 && strcmp(format, "json") != 0) {
		fprintf(stderr, "simfleet: --format: expected yaml or json, got \"%s\"\n", format);
		return EXIT_USAGE;
	}
	if (optind + 1 != argc) {
		fprintf(stderr, "simfleet: fleet-for takes exactly one FLEET file\n");
		return EXIT_USAGE;
	}
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0) {
		fprintf(stderr, "simfleet: cannot find my own path for the command executor\n");
		return EXIT_FAILED;
	}
	self[n] = '\0';

	ws_diags d;
	ws_diags_init(&d);
	ws_fleet *f = fleet_parse_file(argv[optind], &d);
	if (!f) {
		for (size_t i = 0; i < d.len; i++) {
			char *s = ws_diag_format(&d.items[i]);
			fprintf(stderr, "simfleet: %s\n", s ? s : d.items[i].message);
			free(s);
		}
		ws_diags_free(&d);
		return EXIT_FAILED;
	}
	ws_diags_free(&d);
	char *base = trimmed_base(base_arg);
	json_t *doc = fleet_to_json(f);
	fleet_free(f);
	int rc = EXIT_FAILED;
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(doc, "tenants"), i, v) {
		char url[2048];
		snprintf(url, sizeof(url), "%s/t/%s/health", base,
			 json_string_value(json_object_get(v, "slug")));
		json_object_set_new(v, "health_url", json_string(url));
	}
	json_array_foreach(json_object_get(doc, "clusters"), i, v) {
		json_t *dep = deploy_for(executor, base, token_env, self);
		json_t *old = json_object_get(v, "deploy");
		json_t *timeout = old ? json_object_get(old, "timeout") : NULL;
		if (timeout)
			json_object_set(dep, "timeout", timeout);
		json_object_set_new(v, "deploy", dep);
	}
	size_t len = 0;
	char *text = NULL;
	if (strcmp(format, "json") == 0) {
		text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		len = text ? strlen(text) : 0;
	} else {
		text = ws_json_to_yaml(doc, &len);
	}
	if (text && fwrite(text, 1, len, stdout) == len && fputc('\n', stdout) != EOF &&
	    fflush(stdout) == 0)
		rc = 0;
	else
		fprintf(stderr, "simfleet: cannot write the fleet\n");
	free(text);
	json_decref(doc);
	free(base);
	return rc;
}

/* ---- deploy-client ------------------------------------------------------- */

typedef struct resp {
	char buf[4096];
	size_t len;
} resp;

static size_t resp_write(char *data, size_t size, size_t nmemb, void *arg)
{
	resp *r = arg;
	size_t n = size * nmemb, room = sizeof(r->buf) - 1 - r->len;
	memcpy(r->buf + r->len, data, n < room ? n : room);
	r->len += n < room ? n : room;
	r->buf[r->len] = '\0';
	return n;
}

/* One call; returns the HTTP status, or -1 (message printed) when the
 * simulator cannot be reached. */
static long call(const char *method, const char *url, const char *body,
		 struct curl_slist *headers, resp *out)
{
	CURL *e = curl_easy_init();
	if (!e)
		return -1;
	out->len = 0;
	out->buf[0] = '\0';
	char err[CURL_ERROR_SIZE] = "";
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, resp_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, err);
	if (body)
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
	CURLcode rc = curl_easy_perform(e);
	long code = -1;
	if (rc == CURLE_OK)
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
	else
		fprintf(stderr, "simfleet: %s %s: %s\n", method, url, err[0] ? err : curl_easy_strerror(rc));
	curl_easy_cleanup(e);
	return code;
}

static int client_run(const char *base, const char *tenant, const char *version,
		      const char *previous, const char *key, const char *token, int64_t timeout_s,
		      bool quiet)
{
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	char auth[1024];
	if (token) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
		h = curl_slist_append(h, auth);
	}
	json_t *doc = json_pack("{s:s, s:s, s:s, s:s?, s:n, s:n, s:n}", "tenant", tenant, "version",
				version, "idempotency_key", key, "previous_version", previous,
				"rollout", "cluster", "artifact");
	char *body = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	char url[2048];
	resp r;
	int rc = EXIT_FAILED;
	snprintf(url, sizeof(url), "%s/deploy", base);
	long code = body ? call("POST", url, body, h, &r) : -1;
	free(body);
	if (code < 0) {
		rc = EXIT_UNREACHABLE;
		goto out;
	}
	if (code != 202) {
		fprintf(stderr, "simfleet: tenant %s: the deployer answered %ld: %s\n", tenant, code, r.buf);
		goto out;
	}
	char *ekey = curl_easy_escape(NULL, key, 0);
	snprintf(url, sizeof(url), "%s/deploy/status?key=%s", base, ekey ? ekey : "");
	curl_free(ekey);
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		code = call("GET", url, NULL, h, &r);
		if (code < 0) {
			rc = EXIT_UNREACHABLE;
			goto out;
		}
		json_t *st = code == 200 ? json_loads(r.buf, 0, NULL) : NULL;
		const char *state = json_string_value(json_object_get(st, "state"));
		bool done = state && strcmp(state, "done") == 0;
		bool failed = state && strcmp(state, "failed") == 0;
		json_decref(st);
		if (code != 200 || !state) {
			fprintf(stderr, "simfleet: tenant %s: status answered %ld: %s\n", tenant, code, r.buf);
			goto out;
		}
		if (done || failed) {
			if (!quiet || failed)
				fprintf(failed ? stderr : stdout, "%stenant %s version %s key %s: deploy %s\n",
					failed ? "simfleet: " : "", tenant, version, key,
					failed ? "failed" : "done");
			rc = done ? 0 : EXIT_FAILED;
			goto out;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - start.tv_sec >= timeout_s) {
			fprintf(stderr, "simfleet: tenant %s: deploy still pending after %llds\n", tenant,
				(long long)timeout_s);
			goto out;
		}
		struct timespec pause = { 0, 50 * 1000 * 1000 };
		nanosleep(&pause, NULL);
	}
out:
	curl_slist_free_all(h);
	return rc;
}

int sim_deploy_client_main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "url", required_argument, NULL, 'u' },
		{ "tenant", required_argument, NULL, 't' },
		{ "version", required_argument, NULL, 'v' },
		{ "previous-version", required_argument, NULL, 'p' },
		{ "key", required_argument, NULL, 'k' },
		{ "token-env", required_argument, NULL, 'e' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *url = NULL, *tenant = NULL, *version = NULL, *previous = NULL, *key = NULL;
	const char *token_env = "SIMFLEET_TOKEN";
	int64_t timeout_s = 60;
	bool quiet = false;
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", lopts, NULL)) != -1) {
		switch (c) {
		case 'u': url = optarg; break;
		case 't': tenant = optarg; break;
		case 'v': version = optarg; break;
		case 'p': previous = *optarg ? optarg : NULL; break;
		case 'k': key = optarg; break;
		case 'e': token_env = optarg; break;
		case 'q': quiet = true; break;
		case 'T':
			if (ws_duration_parse(optarg, &timeout_s) != 0 || timeout_s <= 0) {
				fprintf(stderr, "simfleet: --timeout: expected a duration such as 60s, got "
					"\"%s\"\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'h':
			fputs("usage: simfleet deploy-client --url URL --tenant SLUG --version V\n"
			      "                [--previous-version P] [--key K] [--token-env NAME]\n"
			      "                [--timeout 60s] [--quiet]\n"
			      "\nPosts a deploy to the simulator at URL and waits until it is done\n"
			      "(exit 0) or failed (1); 3 when the simulator cannot be reached.\n"
			      "The idempotency key is --key, else $WAVESCHED_IDEMPOTENCY_KEY (set by\n"
			      "wavesched's command executor), else a key of its own for this run.\n"
			      "The bearer token is read from $SIMFLEET_TOKEN\n"
			      "or the variable --token-env names.\n", stdout);
			return 0;
		case ':':
			fprintf(stderr, "simfleet: option %s needs a value\n", argv[optind - 1]);
			return EXIT_USAGE;
		default:
			fprintf(stderr, "simfleet: unknown option \"%s\"\n", argv[optind - 1]);
			return EXIT_USAGE;
		}
	}
	if (!url || !tenant || !version || optind != argc) {
		fprintf(stderr, "simfleet: deploy-client needs --url, --tenant and --version\n");
		return EXIT_USAGE;
	}
	/* The command executor also gives its key in the environment: a
	 * deploy-client run from an argv without --key {key} still deduplicates. */
	if (!key) {
		const char *env_key = getenv("WAVESCHED_IDEMPOTENCY_KEY");
		if (env_key && *env_key)
			key = env_key;
	}
	char own_key[256];
	if (!key) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		snprintf(own_key, sizeof(own_key), "command/%.64s/%ld.%lld%03ld", tenant, (long)getpid(),
			 (long long)ts.tv_sec, ts.tv_nsec / 1000000);
		key = own_key;
	}
	const char *token = getenv(token_env);
	if (token && !*token)
		token = NULL;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
		return EXIT_FAILED;
	char *base = trimmed_base(url);
	int rc = base ? client_run(base, tenant, version, previous, key, token, timeout_s, quiet)
		      : EXIT_FAILED;
	free(base);
	curl_global_cleanup();
	return rc;
}
