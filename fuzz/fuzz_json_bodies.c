/*
 * fuzz_json_bodies.c - the API handlers that take a JSON body, on fuzzed
 * bodies, without a database.
 *
 * The first input byte picks the handler (low 4 bits), the caller's role
 * (next 3 bits) and ?dry_run (top bit); the rest is the body.  The request
 * goes through the real HTTP server (harness_http.c) to the handler itself,
 * past authentication (which needs PostgreSQL): the call is built as
 * api.c builds it after a successful token lookup.  The API has no pool
 * (ws_pg_query refuses a NULL pool, and api_query turns that into the
 * handler's own error path), so every body either fails validation, or
 * passes it and gets the database-error answer; either way exactly one
 * answer must come back and everything must be freed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "api_internal.h"
#include "fuzz.h"
#include "harness_http.h"
#include "wavesched/log.h"

static const route routes[] = {
	{ "POST", "/v1/releases", true, WS_PERM_FLEET_WRITE, h_release_create },
	{ "POST", "/v1/backups", true, WS_PERM_FLEET_WRITE, h_backup_report },
	{ "POST", "/v1/tokens", true, WS_PERM_TOKENS, h_token_create },
	{ "POST", "/v1/rollouts", true, WS_PERM_FLEET_WRITE, h_rollout_create },
	{ "POST", "/v1/rollouts/{id}/start", true, WS_PERM_FLEET_WRITE, h_rollout_start },
	{ "POST", "/v1/rollouts/{id}/pause", true, WS_PERM_FLEET_WRITE, h_rollout_pause },
	{ "POST", "/v1/rollouts/{id}/resume", true, WS_PERM_FLEET_WRITE, h_rollout_resume },
	{ "POST", "/v1/rollouts/{id}/abort", true, WS_PERM_FLEET_WRITE, h_rollout_abort },
	{ "POST", "/v1/rollouts/{id}/replan", true, WS_PERM_FLEET_WRITE, h_rollout_replan },
	{ "POST", "/v1/rollouts/{id}/approve", true, WS_PERM_READ_TENANT, h_rollout_approve },
	{ "POST", "/v1/rollouts/{id}/reject", true, WS_PERM_READ_TENANT, h_rollout_reject },
};
#define N_ROUTES (sizeof(routes) / sizeof(routes[0]))

typedef struct ctx {
	ws_api api;
	const route *rt;
	ws_role role;
	unsigned handled;
} ctx;

static void setup(uv_loop_t *loop, void *arg)
{
	ctx *x = arg;
	x->api.d.loop = loop;
}

static void handle(void *arg, ws_http_req *req)
{
	ctx *x = arg;
	api_call *c = calloc(1, sizeof(*c));
	if (!c)
		abort();
	c->api = &x->api;
	c->req = req;
	c->rt = x->rt;
	snprintf(c->param, sizeof(c->param), "42");
	snprintf(c->who.id, sizeof(c->who.id), "00000000-0000-4000-8000-000000000042");
	c->who.name = strdup("fuzz");
	c->who.role = x->role;
	if (x->role == WS_ROLE_TENANT) {
		c->who.tenants = calloc(1, sizeof(char *));
		c->who.tenants[0] = strdup("acme");
		c->who.n_tenants = 1;
	}
	snprintf(c->actor, sizeof(c->actor), "token:fuzz");
	x->api.pending++;
	x->handled++;
	ws_http_req_set_route(req, x->rt->pattern);
	x->rt->fn(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The server and the handlers log every refusal: noise at this rate. */
	ws_log_set_level("off");
	if (size < 1)
		return 0;
	ctx x = { 0 };
	x.rt = &routes[(data[0] & 0x0f) % N_ROUTES];
	x.role = (ws_role)(((data[0] >> 4) & 7) % WS_ROLE__COUNT);
	bool dry = data[0] & 0x80;
	const char *body = (const char *)data + 1;
	size_t blen = size - 1;

	char head[256];
	int n = snprintf(head, sizeof(head),
			 "POST /fuzz%s HTTP/1.1\r\nHost: fuzz\r\nContent-Type: application/json\r\n"
			 "Content-Length: %zu\r\nConnection: close\r\n\r\n",
			 dry ? "?dry_run=true" : "", blen);
	char *msg = malloc((size_t)n + blen);
	if (!msg)
		abort();
	memcpy(msg, head, (size_t)n);
	if (blen)
		memcpy(msg + n, body, blen);
	size_t got = fuzz_http_run(msg, (size_t)n + blen, NULL, setup, handle, &x);
	free(msg);
	if (x.handled != 1)
		fuzz_fail("the request did not reach the handler exactly once", NULL);
	if (x.api.pending != 0)
		fuzz_fail("a handler did not finish its call", NULL);
	if (got == 0)
		fuzz_fail("no answer came back", NULL);
	return 0;
}
