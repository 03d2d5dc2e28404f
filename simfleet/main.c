/*
 * main.c - the `simfleet` program: a simulated fleet of hosted Odoo tenants
 * for tests and the demo (docs/simfleet.md).
 *
 * Exit codes: 0 success (and after SIGTERM/SIGINT), 1 an input file is
 * invalid or the address cannot be bound, 2 usage error.
 *
 * Shutdown runs in steps, each from the previous one's callback so nothing
 * is freed while a callback could still reach it: held requests are
 * answered, the backup job stops, the HTTP server drains, then the
 * simulator's own timers close and the loop runs dry.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <curl/curl.h>
#include "ws_config.h"
#include "sim.h"
#include "wavesched/log.h"
#include "wavesched/window.h"

enum { EXIT_INVALID = 1, EXIT_USAGE = 2 };
#define SHUTDOWN_GRACE_MS 2000

static const char usage[] =
	"usage: simfleet [--listen ADDR] [--port-file F] [--fleet FLEET.yaml] [--scenario S.json]\n"
	"                [--converge-ms MS] [--service URL [--token-env NAME] [--backup-interval D]]\n"
	"                [--time-scale N] [--time-origin RFC3339] [--log-level L]\n"
	"       simfleet fleet-for --base URL [--executor webhook|kubernetes|command]\n"
	"                [--token-env NAME] FLEET.yaml\n"
	"       simfleet deploy-client --url URL --tenant SLUG --version V [--previous-version P]\n"
	"                [--key K] [--token-env NAME] [--timeout D]\n"
	"\n"
	"A simulated fleet of hosted Odoo tenants for tests and demos: health and backup\n"
	"status per tenant, a webhook deployer, a minimal Kubernetes Deployments API, faults\n"
	"per tenant, and a backup job reporting to the wavesched service.\n"
	"\n"
	"  --listen ADDR          address to listen on (default 127.0.0.1:0: any free port)\n"
	"  --port-file F          write the bound port to F once listening\n"
	"  --fleet F              the tenants (slugs, versions); others get 404.  Without it\n"
	"                         any slug is accepted and starts at version \"0\"\n"
	"  --scenario F           faults per tenant: {\"tenants\": {SLUG: FAULT}}\n"
	"  --converge-ms MS       a deploy completes after MS milliseconds (default 200)\n"
	"  --service URL          report backups to URL/v1/backups\n"
	"  --token-env NAME       the bearer token for --service is in this variable\n"
	"  --backup-interval D    schedule time between backup reports (default 60s)\n"
	"  --time-scale N         schedule time runs N times faster than real time (default 1)\n"
	"  --time-origin T        schedule = T + (wall - T) * N (default: the start time)\n"
	"  --log-level L          debug, info, warn, error or off (default info)\n"
	"  -h, --help             this text\n"
	"\n"
	"SIMFLEET_TOKEN, when set, is the bearer token the deployers (POST /deploy and the\n"
	"Kubernetes API) require.  See docs/simfleet.md for endpoints and faults.\n";

typedef struct app {
	uv_loop_t loop;
	uv_signal_t sigterm, sigint;
	sim_state *sim;
	sim_http *http_h;
	ws_http_server *http;
	ws_fleet *fleet;
	bool stopping;
} app;

static int usage_error(const char *fmt, const char *arg)
{
	fputs("simfleet: ", stderr);
	fprintf(stderr, fmt, arg);
	fputs("\nTry 'simfleet --help'.\n", stderr);
	return EXIT_USAGE;
}

static void print_diags(ws_diags *d)
{
	for (size_t i = 0; i < d->len; i++) {
		char *s = ws_diag_format(&d->items[i]);
		fprintf(stderr, "simfleet: %s\n", s ? s : d->items[i].message);
		free(s);
	}
}

/* Written to a temporary file and renamed, so a reader polling for the file
 * never sees it half written. */
static int write_port_file(const char *path, int port)
{
	char tmp[4096];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp%ld", path, (long)getpid()) >= (int)sizeof(tmp))
		return -1;
	FILE *f = fopen(tmp, "w");
	if (!f)
		return -1;
	int ok = fprintf(f, "%d\n", port) > 0;
	ok = (fclose(f) == 0) && ok;
	if (!ok || rename(tmp, path) != 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* The benchmark probes 10,000 tenants at once: allow as many descriptors
 * as the hard limit does. */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void noop_close_cb(uv_handle_t *h)
{
	(void)h;
}

static void http_closed_cb(void *arg)
{
	app *a = arg;
	a->http_h = NULL;
	if (a->sim)
		sim_state_close(a->sim);
}

static void server_down_cb(void *arg)
{
	app *a = arg;
	a->http = NULL;
	if (a->http_h)
		sim_http_close(a->http_h, http_closed_cb, a);
	else
		http_closed_cb(a);
}

static void backup_closed_cb(void *arg)
{
	app *a = arg;
	a->sim->backup = NULL;
}

/* Also the way out of a failed start: every part may still be missing. */
static void stop(app *a, const char *why)
{
	if (a->stopping)
		return;
	a->stopping = true;
	if (why)   /* NULL for a failed start: its diagnostics say why */
		ws_info(SIM_SUBSYS, "%s: stopping", why);
	uv_close((uv_handle_t *)&a->sigterm, noop_close_cb);
	uv_close((uv_handle_t *)&a->sigint, noop_close_cb);
	if (a->sim)
		a->sim->stopping = true;
	if (a->http_h)
		sim_http_drain(a->http_h);
	if (a->sim && a->sim->backup)
		sim_backup_close(a->sim->backup, backup_closed_cb, a);
	if (a->http)
		ws_http_server_shutdown(a->http, SHUTDOWN_GRACE_MS, server_down_cb, a);
	else
		server_down_cb(a);
}

static void signal_cb(uv_signal_t *h, int signum)
{
	stop(h->data, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static int parse_uint(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	if (!*s || *s == '-')
		return -1;
	unsigned long long v = strtoull(s, &end, 10);
	if (*end || v > max)
		return -1;
	*out = v;
	return 0;
}

static json_t *load_scenario(const char *path, ws_diags *d)
{
	json_error_t err;
	json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
	if (!doc)
		ws_diag_add(d, path, err.line > 0 ? err.line : 0, err.column > 0 ? err.column : 0,
			    "%s", err.text);
	return doc;
}

typedef struct opts {
	const char *listen, *port_file, *fleet, *scenario, *service, *token_env, *origin;
	const char *log_level;
	uint64_t converge_ms;
	int64_t backup_interval_ms;
	double scale;
} opts;

static int parse_opts(int argc, char **argv, opts *o)
{
	static const struct option lopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "port-file", required_argument, NULL, 'p' },
		{ "fleet", required_argument, NULL, 'f' },
		{ "scenario", required_argument, NULL, 's' },
		{ "converge-ms", required_argument, NULL, 'c' },
		{ "service", required_argument, NULL, 'S' },
		{ "token-env", required_argument, NULL, 'T' },
		{ "backup-interval", required_argument, NULL, 'b' },
		{ "time-scale", required_argument, NULL, 'x' },
		{ "time-origin", required_argument, NULL, 'o' },
		{ "log-level", required_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	*o = (opts){ .listen = "127.0.0.1:0", .converge_ms = 200, .backup_interval_ms = 60000,
		     .scale = 1.0, .log_level = "info" };
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", lopts, NULL)) != -1) {
		switch (c) {
		case 'l': o->listen = optarg; break;
		case 'p': o->port_file = optarg; break;
		case 'f': o->fleet = optarg; break;
		case 's': o->scenario = optarg; break;
		case 'S':
			if (strncmp(optarg, "http://", 7) != 0 && strncmp(optarg, "https://", 8) != 0)
				return usage_error("--service: expected an http or https URL, got \"%s\"",
						   optarg);
			o->service = optarg;
			break;
		case 'T': o->token_env = optarg; break;
		case 'o': o->origin = optarg; break;
		case 'L':
			if (ws_log_set_level(optarg) != 0)
				return usage_error("--log-level: expected debug, info, warn, error or "
						   "off, got \"%s\"", optarg);
			o->log_level = optarg;
			break;
		case 'c':
			if (parse_uint(optarg, 3600 * 1000, &o->converge_ms))
				return usage_error("--converge-ms: expected milliseconds from 0 to "
						   "3600000, got \"%s\"", optarg);
			break;
		case 'b': {
			int64_t s;
			if (ws_duration_parse(optarg, &s) != 0 || s <= 0)
				return usage_error("--backup-interval: expected a positive duration such "
						   "as 60s or 1h, got \"%s\"", optarg);
			o->backup_interval_ms = s * 1000;
			break;
		}
		case 'x': {
			char *end;
			o->scale = strtod(optarg, &end);
			if (*end || !(o->scale >= 1.0 && o->scale <= 1e6))
				return usage_error("--time-scale: expected a number from 1 to 1000000, "
						   "got \"%s\"", optarg);
			break;
		}
		case 'h': fputs(usage, stdout); return -1;
		case ':': return usage_error("option %s needs a value", argv[optind - 1]);
		default: return usage_error("unknown option \"%s\"", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument \"%s\"", argv[optind]);
	if (o->token_env && !o->service)
		return usage_error("%s", "--token-env needs --service");
	return 0;
}

static int run(const opts *o)
{
	app a = { 0 };
	int rc = EXIT_INVALID;
	ws_diags d;
	ws_diags_init(&d);
	json_t *scenario = NULL;
	const char *service_token = NULL;
	sim_clock clock = { .scale = o->scale, .origin_ms = 0 };

	if (o->token_env) {
		service_token = getenv(o->token_env);
		if (!service_token || !*service_token) {
			fprintf(stderr, "simfleet: --token-env %s: the variable is not set\n", o->token_env);
			return EXIT_USAGE;
		}
	}
	if (o->origin) {
		int64_t t;
		if (ws_time_parse(o->origin, &t) != 0)
			return usage_error("--time-origin: expected an RFC 3339 time such as "
					   "2026-01-01T00:00:00Z, got \"%s\"", o->origin);
		clock.origin_ms = t * 1000;
	} else {
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		clock.origin_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
	}
	if (o->fleet && !(a.fleet = fleet_parse_file(o->fleet, &d)))
		goto out;
	if (o->scenario && !(scenario = load_scenario(o->scenario, &d)))
		goto out;

	raise_fd_limit();
	if (uv_loop_init(&a.loop) != 0) {
		fprintf(stderr, "simfleet: cannot start the event loop\n");
		goto out;
	}
	uv_signal_init(&a.loop, &a.sigterm);
	uv_signal_init(&a.loop, &a.sigint);
	a.sigterm.data = a.sigint.data = &a;
	if (!(a.sim = sim_state_new(&a.loop, a.fleet, &clock, o->converge_ms)))
		goto oom;
	const char *tok = getenv("SIMFLEET_TOKEN");
	a.sim->token = tok && *tok ? tok : NULL;
	if (scenario && sim_state_scenario(a.sim, scenario, o->scenario, &d) != 0)
		goto teardown;
	if (!(a.http_h = sim_http_new(a.sim)))
		goto oom;
	ws_http_limits lim = { .max_connections = 16384, .max_body_bytes = 1 << 20 };
	if (!(a.http = ws_http_server_new(&a.loop, &lim, sim_http_handle, NULL, a.http_h)))
		goto oom;
	int lrc = ws_http_server_listen(a.http, o->listen, &d);
	if (lrc != 0) {
		if (lrc == WS_EINVAL)
			rc = EXIT_USAGE;
		goto teardown;
	}
	int port = ws_http_server_port(a.http);
	if (o->service &&
	    !(a.sim->backup = sim_backup_new(a.sim, o->service, service_token, o->backup_interval_ms)))
		goto oom;
	uv_signal_start(&a.sigterm, signal_cb, SIGTERM);
	uv_signal_start(&a.sigint, signal_cb, SIGINT);
	if (o->port_file && write_port_file(o->port_file, port) != 0) {
		ws_diag_add(&d, NULL, 0, 0, "cannot write the port file %s", o->port_file);
		goto teardown;
	}
	ws_info(SIM_SUBSYS, "listening on port %d: %zu tenants%s, converge %llu ms, time scale %g",
		port, sim_map_len(a.sim->tenants), a.fleet ? "" : " (any slug accepted)",
		(unsigned long long)o->converge_ms, o->scale);
	if (a.sim->backup)
		sim_backup_start(a.sim->backup);
	uv_run(&a.loop, UV_RUN_DEFAULT);
	rc = 0;
	goto closed;
oom:
	ws_diag_add(&d, NULL, 0, 0, "out of memory");
teardown:
	stop(&a, NULL);
	uv_run(&a.loop, UV_RUN_DEFAULT);
closed:
	if (uv_loop_close(&a.loop) != 0) {
		fprintf(stderr, "simfleet: handles were left open at exit\n");
		rc = EXIT_INVALID;
	}
	sim_state_free(a.sim);
out:
	print_diags(&d);
	ws_diags_free(&d);
	json_decref(scenario);
	fleet_free(a.fleet);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "fleet-for") == 0)
		return sim_fleet_for_main(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "deploy-client") == 0)
		return sim_deploy_client_main(argc - 1, argv + 1);
	opts o;
	int rc = parse_opts(argc, argv, &o);
	if (rc)
		return rc < 0 ? 0 : rc;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
		fprintf(stderr, "simfleet: cannot initialise libcurl\n");
		return EXIT_INVALID;
	}
	ws_log_set_level(o.log_level);
	rc = run(&o);
	curl_global_cleanup();
	return rc;
}
