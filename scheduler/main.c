/*
 * main.c - the `wavesched` program: serve, migrate, token create (cli.md).
 *
 * Exit codes follow cli.md: 0 success, 1 refused or invalid, 2 usage,
 * 3 cannot reach the database.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>
#include "ws_config.h"
#include "wavesched/auth.h"
#include "wavesched/clock.h"
#include "wavesched/config.h"
#include "wavesched/executor.h"
#include "wavesched/fleet.h"
#include "wavesched/log.h"
#include "wavesched/migrate.h"
#include "wavesched/server.h"

enum { EXIT_REFUSED = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

static const char usage_main[] =
	"usage: wavesched COMMAND [OPTIONS]\n"
	"\n"
	"The wavesched service: wave rollouts of releases across a fleet of tenants.\n"
	"\n"
	"commands:\n"
	"  serve [--config FILE] [--time-scale N] [--time-origin T]\n"
	"                                           run the engine and the HTTP API\n"
	"  migrate [--config FILE] [--status]       apply pending database migrations\n"
	"  token create --role ROLE [--tenant SLUG]... [--name N] [--expires 90d]\n"
	"                                           create an API token (printed once)\n"
	"  version                                  print the version\n"
	"\n"
	"Configuration: a YAML file (--config) and WAVESCHED_* environment variables,\n"
	"the environment winning: WAVESCHED_DATABASE_URL, WAVESCHED_REDIS_URL,\n"
	"WAVESCHED_LISTEN, WAVESCHED_LOG_FORMAT, WAVESCHED_LOG_LEVEL, WAVESCHED_OUTBOUND_ALLOW,\n"
	"WAVESCHED_OUTBOUND_DENY, WAVESCHED_LEASE_TTL.\n"
	"Run `wavesched COMMAND --help` for a command's options.\n";

static const char usage_serve[] =
	"usage: wavesched serve [--config FILE] [--time-scale N] [--time-origin RFC3339]\n"
	"\n"
	"Runs the engine and the HTTP API on one event loop until SIGTERM or SIGINT,\n"
	"then drains requests in flight and exits 0.\n"
	"\n"
	"  -c, --config FILE    YAML configuration file\n"
	"      --time-scale N   play schedules N times faster (demos and tests; default 1)\n"
	"      --time-origin T  the instant from which the scale counts (default: now);\n"
	"                       processes given the same origin share one schedule clock\n"
	"  -h, --help           this text\n";

static const char usage_migrate[] =
	"usage: wavesched migrate [--config FILE] [--status]\n"
	"\n"
	"Applies the SQL files of the migrations folder in order, each once and in its\n"
	"own transaction.  With --status, lists applied and pending migrations.\n"
	"\n"
	"  -c, --config FILE    YAML configuration file\n"
	"      --status         list, change nothing\n"
	"  -h, --help           this text\n";

static const char usage_token[] =
	"usage: wavesched token create --role ROLE [--tenant SLUG]... [--name NAME] [--expires DURATION]\n"
	"\n"
	"Creates an API token straight in the database (to bootstrap the first admin)\n"
	"and prints its secret once: only its hash is stored.\n"
	"\n"
	"  --role ROLE          admin, platform, security, approver, tenant or viewer\n"
	"  --tenant SLUG        for role tenant: a tenant the token may see (repeatable)\n"
	"  --name NAME          a name for the token (default ROLE-token)\n"
	"  --expires DURATION   lifetime, e.g. 90d or 12h (default: never)\n"
	"  -c, --config FILE    YAML configuration file\n"
	"  -h, --help           this text\n";

static int print_diags(ws_diags *d)
{
	for (size_t i = 0; i < d->len; i++) {
		char *s = ws_diag_format(&d->items[i]);
		fprintf(stderr, "wavesched: %s\n", s ? s : d->items[i].message);
		free(s);
	}
	return (int)d->len;
}

static int load_config(const char *path, ws_config *cfg)
{
	ws_diags d;
	ws_diags_init(&d);
	int rc = ws_config_load(cfg, path, &d);
	print_diags(&d);
	ws_diags_free(&d);
	if (rc)
		return rc;
	ws_log_set_level(cfg->log_level);
	ws_log_set_format(cfg->log_format);
	return 0;
}

static int exit_code(int rc)
{
	if (rc == 0)
		return 0;
	return rc == WS_EUNAVAIL ? EXIT_UNREACHABLE : EXIT_REFUSED;
}

static int cmd_serve(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "time-scale", required_argument, NULL, 't' },
		{ "time-origin", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *config = NULL;
	double scale = 1.0;
	int64_t origin = 0;
	int o;
	while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (o) {
		case 'c': config = optarg; break;
		case 't':
		case 'o': {
			ws_diags d;
			ws_diags_init(&d);
			int rc = o == 't' ? ws_clock_parse_scale(optarg, &scale, &d)
					  : ws_clock_parse_origin(optarg, &origin, &d);
			if (rc) {
				char *msg = d.len ? ws_diag_format(&d.items[0]) : NULL;
				fprintf(stderr, "wavesched: %s\n", msg ? msg : "invalid --time-scale or --time-origin");
				free(msg);
				ws_diags_free(&d);
				return EXIT_USAGE;
			}
			ws_diags_free(&d);
			break;
		}
		case 'h': fputs(usage_serve, stdout); return 0;
		default: fputs(usage_serve, stderr); return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "wavesched: serve takes no arguments\n%s", usage_serve);
		return EXIT_USAGE;
	}
	ws_config cfg;
	if (load_config(config, &cfg)) {
		ws_config_free(&cfg);
		return EXIT_REFUSED;
	}
	cfg.time_scale = scale;
	cfg.time_origin_us = origin;
	ws_executor_set_state_dir(cfg.state_dir);
	ws_diags d;
	ws_diags_init(&d);
	int rc = ws_serve(&cfg, &d);
	print_diags(&d);
	ws_diags_free(&d);
	ws_config_free(&cfg);
	return exit_code(rc);
}

static int cmd_migrate(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "status", no_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *config = NULL;
	bool status = false;
	int o;
	while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (o) {
		case 'c': config = optarg; break;
		case 's': status = true; break;
		case 'h': fputs(usage_migrate, stdout); return 0;
		default: fputs(usage_migrate, stderr); return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "wavesched: migrate takes no arguments\n%s", usage_migrate);
		return EXIT_USAGE;
	}
	ws_config cfg;
	if (load_config(config, &cfg)) {
		ws_config_free(&cfg);
		return EXIT_REFUSED;
	}
	ws_diags d;
	ws_diags_init(&d);
	int rc;
	ws_migration_set set;
	if (!cfg.database_url) {
		ws_diag_add(&d, NULL, 0, 0, "no database configured: set WAVESCHED_DATABASE_URL");
		rc = WS_EINVAL;
	} else if ((rc = ws_migrations_load(ws_config_migrations_dir(&cfg), &set, &d)) == 0) {
		rc = ws_migrate_run(cfg.database_url, &set, status, stdout, &d);
		ws_migrations_free(&set);
	}
	print_diags(&d);
	ws_diags_free(&d);
	ws_config_free(&cfg);
	return exit_code(rc);
}

/* Bootstrap path: blocking libpq is fine in a one-shot command. */
static int cmd_token(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(usage_token, argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : 0;
	}
	if (strcmp(argv[1], "create") != 0) {
		fprintf(stderr, "wavesched: unknown token command \"%s\"\n%s", argv[1], usage_token);
		return EXIT_USAGE;
	}
	static const struct option opts[] = {
		{ "role", required_argument, NULL, 'r' },
		{ "tenant", required_argument, NULL, 't' },
		{ "name", required_argument, NULL, 'n' },
		{ "expires", required_argument, NULL, 'e' },
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *config = NULL, *role_s = NULL, *name = NULL, *expires = NULL;
	char tenants[4096] = "{";
	int n_tenants = 0;
	int o;
	argc--;
	argv++;
	optind = 1;
	while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (o) {
		case 'r': role_s = optarg; break;
		case 'n': name = optarg; break;
		case 'e': expires = optarg; break;
		case 'c': config = optarg; break;
		case 't':
			for (const char *p = optarg; *p; p++) {
				if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-')) {
					fprintf(stderr, "wavesched: --tenant \"%s\" is not a tenant slug\n", optarg);
					return EXIT_USAGE;
				}
			}
			if (strlen(tenants) + strlen(optarg) + 3 > sizeof(tenants)) {
				fprintf(stderr, "wavesched: too many --tenant options\n");
				return EXIT_USAGE;
			}
			if (n_tenants++)
				strcat(tenants, ",");
			strcat(tenants, optarg);
			break;
		case 'h': fputs(usage_token, stdout); return 0;
		default: fputs(usage_token, stderr); return EXIT_USAGE;
		}
	}
	strcat(tenants, "}");
	ws_role role;
	if (!role_s || ws_role_parse(role_s, &role)) {
		fprintf(stderr, "wavesched: --role must be one of admin, platform, security, approver, tenant, viewer\n");
		return EXIT_USAGE;
	}
	if ((role == WS_ROLE_TENANT) != (n_tenants > 0)) {
		fprintf(stderr, "wavesched: %s\n", role == WS_ROLE_TENANT
			? "a tenant token needs at least one --tenant"
			: "--tenant is only for tokens with --role tenant");
		return EXIT_USAGE;
	}
	int64_t exp_s = 0;
	if (expires && (ws_duration_parse(expires, &exp_s) || exp_s <= 0 || exp_s > WS_TOKEN_MAX_LIFETIME_S)) {
		fprintf(stderr, "wavesched: --expires \"%s\" is not a duration such as 90d or 12h (at most 3650d)\n",
			expires);
		return EXIT_USAGE;
	}
	ws_config cfg;
	if (load_config(config, &cfg)) {
		ws_config_free(&cfg);
		return EXIT_REFUSED;
	}
	if (!cfg.database_url) {
		fprintf(stderr, "wavesched: no database configured: set WAVESCHED_DATABASE_URL\n");
		ws_config_free(&cfg);
		return EXIT_REFUSED;
	}
	PGconn *conn = PQconnectdb(cfg.database_url);
	ws_config_free(&cfg);
	if (PQstatus(conn) != CONNECTION_OK) {
		fprintf(stderr, "wavesched: cannot connect to the database: %s", PQerrorMessage(conn));
		PQfinish(conn);
		return EXIT_UNREACHABLE;
	}
	char secret[WS_TOKEN_LEN + 1], hash[65], exp_buf[32], auto_name[64];
	if (ws_token_generate(secret, hash)) {
		fprintf(stderr, "wavesched: cannot read random bytes\n");
		PQfinish(conn);
		return EXIT_REFUSED;
	}
	snprintf(exp_buf, sizeof(exp_buf), "%lld", (long long)exp_s);
	snprintf(auto_name, sizeof(auto_name), "%s-token", role_s);
	const char *params[] = { name ? name : auto_name, role_s, tenants, hash,
				 exp_s ? exp_buf : NULL };
	PGresult *res = PQexecParams(conn,
				     "INSERT INTO api_tokens (name, role, tenants, secret_hash, created_by, expires_at) "
				     "VALUES ($1, $2, $3::text[], $4, 'wavesched token create', "
				     "now() + make_interval(secs => $5::bigint)) RETURNING id",
				     5, NULL, params, NULL, NULL, 0);
	int rc = 0;
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		if (state && strcmp(state, "42P01") == 0)
			fprintf(stderr, "wavesched: the database is not migrated: run `wavesched migrate` first\n");
		else
			fprintf(stderr, "wavesched: cannot create the token: %s\n", msg ? msg : PQerrorMessage(conn));
		rc = EXIT_REFUSED;
	} else {
		printf("%s\n", secret);
		fprintf(stderr, "wavesched: token %s created (role %s); the secret above is shown only once\n",
			PQgetvalue(res, 0, 0), role_s);
	}
	explicit_bzero(secret, sizeof(secret));
	PQclear(res);
	PQfinish(conn);
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
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		printf("wavesched %s\n", WS_VERSION);
		return 0;
	}
	if (strcmp(cmd, "serve") == 0)
		return cmd_serve(argc - 1, argv + 1);
	if (strcmp(cmd, "migrate") == 0)
		return cmd_migrate(argc - 1, argv + 1);
	if (strcmp(cmd, "token") == 0)
		return cmd_token(argc - 1, argv + 1);
	fprintf(stderr, "wavesched: unknown command \"%s\"\n%s", cmd, usage_main);
	return EXIT_USAGE;
}
