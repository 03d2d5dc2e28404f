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
#include "wavectl.h"

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
	"  tenant windows SLUG [--ics] [--format text|json]\n"
	"  tenant defer SLUG --rollout ID [--reason R]   defer the tenant's window\n"
	"                                    its maintenance windows (or calendar feed)\n"
	"  policy validate FILE... [--fleet FLEET]   offline: check policy files\n"
	"  policy push FILE | list | show NAME       stored policies\n"
	"  plan --fleet F --policy P --release V [--kind K] [--start T]\n"
	"       [--format text|json] [--diff OTHER]  offline: plan the waves\n"
	"  release create VERSION --digest sha256:... [--kind urgent] [--notes N]\n"
	"  release list | show VERSION       releases\n"
	"  rollout create --release V --policy NAME [--start T] [--dry-run]\n"
	"                                    plan in the service and store the rollout\n"
	"  rollout list | show ID | plan ID  rollouts, their waves, tenants and plans\n"
	"  rollout start|pause|resume|abort ID [--reason R]\n"
	"  rollout approve|reject ID --wave N [--comment C]\n"
	"  audit verify [--known ID:HASH]    check the audit log's hash chain\n"
	"  audit list [--since T] [--actor A] [--object O]   audit entries, oldest first\n"
	"  evidence ID > bundle.json         the evidence bundle of a rollout\n"
	"  evidence verify FILE              offline: check an evidence bundle\n"
	"  review list [--state S] | close ID --comment C   break-glass reviews\n"
	"  notify sinks | list [--state S] [--sink N]      notification sinks and deliveries\n"
	"\n"
	"Exit codes: 0 success, 1 refused or invalid, 2 usage error, 3 service unreachable.\n"
	"Run `wavectl COMMAND --help` for a command's options.\n";

/* cmd_tenant.c; the rest of `tenant` is in cmd_fleet.c */

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
	if (strcmp(cmd, "tenant") == 0 && argc >= 3 && strcmp(argv[2], "windows") == 0)
		rc = cmd_tenant_windows(argc - 2, argv + 2);
	else if (strcmp(cmd, "tenant") == 0 && argc >= 3 && strcmp(argv[2], "defer") == 0)
		rc = cmd_tenant_defer(argc - 2, argv + 2);
	else if (strcmp(cmd, "fleet") == 0)
		rc = cmd_fleet(argc - 1, argv + 1);
	else if (strcmp(cmd, "tenant") == 0)
		rc = cmd_tenant(argc - 1, argv + 1);
	else if (strcmp(cmd, "policy") == 0)
		rc = cmd_policy(argc - 1, argv + 1);
	else if (strcmp(cmd, "plan") == 0)
		rc = cmd_plan(argc - 1, argv + 1);
	else if (strcmp(cmd, "release") == 0)
		rc = cmd_release(argc - 1, argv + 1);
	else if (strcmp(cmd, "rollout") == 0)
		rc = cmd_rollout(argc - 1, argv + 1);
	else if (strcmp(cmd, "audit") == 0)
		rc = cmd_audit(argc - 1, argv + 1);
	else if (strcmp(cmd, "evidence") == 0)
		rc = cmd_evidence(argc - 1, argv + 1);
	else if (strcmp(cmd, "review") == 0)
		rc = cmd_review(argc - 1, argv + 1);
	else if (strcmp(cmd, "notify") == 0)
		rc = cmd_notify(argc - 1, argv + 1);
	else {
		fprintf(stderr, "wavectl: unknown command \"%s\"\n%s", cmd, usage_main);
		rc = EXIT_USAGE;
	}
	curl_global_cleanup();
	return rc;
}
