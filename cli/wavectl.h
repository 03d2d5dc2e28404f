/*
 * wavectl.h - what the wavectl command files share.
 */
#ifndef WAVECTL_H
#define WAVECTL_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

enum { EXIT_OK = 0, EXIT_REFUSED = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

#define MAX_RESPONSE (64u << 20)
#define MAX_FILE (1u << 30)   /* a 1M-tenant fleet file is ~300 MB */

typedef struct buf {
	char *data;
	size_t len;
	bool overflow;
} buf;

typedef struct response {
	long status;
	buf body;
} response;

/* Sends one request to WAVESCHED_URL with WAVESCHED_TOKEN.  Returns 0 when
 * an HTTP answer came back (any status), EXIT_UNREACHABLE when the service
 * could not be reached.  The caller frees out->body.data. */
int http_call(const char *method, const char *path, const char *ctype, const char *body,
	      size_t body_len, const char *accept, response *out);
/* Prints an error answer of the api.md shape; returns the matching exit code. */
int report_error(const response *r);
/* Parses a 2xx answer; prints why and returns NULL when it is not JSON. */
json_t *parse_ok(const response *r);
/* Reads a file ("-" = stdin) up to MAX_FILE; prints why on failure. */
int read_file(const char *path, char **out, size_t *len);
/* Prints diagnostics one per line on stderr. */
struct ws_diags;
void print_diags(const struct ws_diags *d);

int cmd_fleet(int argc, char **argv);
int cmd_tenant(int argc, char **argv);
int cmd_tenant_windows(int argc, char **argv);   /* cmd_tenant.c */
int cmd_tenant_defer(int argc, char **argv);     /* cmd_tenant.c */
int cmd_policy(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_rollout(int argc, char **argv);
int cmd_release(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_evidence(int argc, char **argv);
int cmd_review(int argc, char **argv);
/* wavectl rollout status ID [--watch] (watch.c) */
int rollout_status(int argc, char **argv);
int cmd_notify(int argc, char **argv);
/* Sends a request with an optional JSON body; on 2xx parses the answer into
 * *out (when out is given; the caller frees it).  Error answers are printed
 * and turned into the exit code of cli.md (cmd_rollout.c). */
int api_json(const char *method, const char *path, json_t *body, json_t **out);

#endif
