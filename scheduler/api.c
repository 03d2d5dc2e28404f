/*
 * api.c - routing, authentication and the handlers of api.md.
 *
 * Every request becomes an api_call that lives until its answer: route
 * match, then (for everything under /v1) a token lookup in PostgreSQL, then
 * the permission check of auth.c, then the handler.  Handlers that need the
 * database continue in a pg callback; nothing here blocks the loop.
 *
 * Error answers always use the shape of api.md:
 *   {"error": {"code": "...", "message": "...", "details": [...]}}
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jansson.h>
#include "ws_config.h"
#include "api_internal.h"
#include "wavesched/clock.h"
#include "wavesched/log.h"
#include "wavesched/ydoc.h"
#include "wavesched/window.h"

/* ---- answers ---------------------------------------------------------- */

void call_finish(api_call *c)
{
	c->api->pending--;
	ws_principal_clear(&c->who);
	free(c);
}

void reply_json(api_call *c, int status, json_t *doc)
{
	ws_http_respond_json(c->req, status, doc);
	call_finish(c);
}

void reply_error(api_call *c, int status, const char *code, const char *message,
			json_t *details)
{
	ws_http_respond_error(c->req, status, code, message, details);
	call_finish(c);
}

/* A database failure becomes 503 when it is about reaching the database and
 * 500 otherwise; the server-side detail goes to the log, not to the client. */
void reply_db_error(api_call *c, const ws_pg_err *err)
{
	ws_error("api", "request=%llu route=%s database: %s%s%s",
		 (unsigned long long)ws_http_req_id(c->req), ws_http_req_route(c->req), err->message,
		 err->detail && *err->detail ? " detail: " : "", err->detail ? err->detail : "");
	if (err->code == WS_EUNAVAIL || err->code == WS_ETIMEDOUT)
		reply_error(c, 503, "unavailable", "the database is not reachable; retry later", NULL);
	else
		reply_error(c, 500, "internal", "the database refused the request", NULL);
}

/* diagnostics -> [{"message": "file:line:col: msg", "line", "column"}] */
json_t *diags_json(const ws_diags *d)
{
	json_t *arr = json_array();
	for (size_t i = 0; i < d->len; i++) {
		char *text = ws_diag_format(&d->items[i]);
		json_t *o = json_pack("{s:s}", "message", text ? text : d->items[i].message);
		if (d->items[i].line > 0) {
			json_object_set_new(o, "line", json_integer(d->items[i].line));
			json_object_set_new(o, "column", json_integer(d->items[i].column));
		}
		json_array_append_new(arr, o);
		free(text);
	}
	return arr;
}

bool query_flag(api_call *c, const char *name)
{
	const char *v = ws_http_req_query_param(c->req, name);
	return v && (strcmp(v, "1") == 0 || strcmp(v, "true") == 0 || strcmp(v, "yes") == 0);
}

void api_query(ws_pg_pool *pool, const char *sql, int nparams, const char *const *params,
	       ws_pg_cb done, void *arg)
{
	int rc = ws_pg_query(pool, sql, nparams, params, done, arg);
	if (rc) {
		ws_pg_err e = { .code = rc, .sqlstate = "", .detail = "",
				.message = rc == WS_EUNAVAIL ? "the database is unavailable" : ws_strerror(rc) };
		done(arg, NULL, &e);
	}
}

int upload_failure_status(const char *buf, size_t len)
{
	ws_diags syntax;
	ws_diags_init(&syntax);
	ydoc *doc = ydoc_parse("body", buf, len, NULL, &syntax);
	int status = doc ? 422 : 400;
	ydoc_free(doc);
	ws_diags_free(&syntax);
	return status;
}

/* Now on the schedule clock, in seconds: under --time-scale the API plans
 * and shows windows on the same clock as the engine. */
int64_t now_utc(const ws_api *a)
{
	if (a && a->d.clock)
		return ws_clock_now(a->d.clock) / 1000000;
	return (int64_t)time(NULL);
}

json_t *body_json_object(api_call *c)
{
	size_t len;
	const char *body = ws_http_req_body(c->req, &len);
	json_error_t je;
	json_t *in = json_loadb(body, len, 0, &je);
	if (!in || !json_is_object(in)) {
		char msg[300];
		if (!in)
			snprintf(msg, sizeof(msg), "body:%d:%d: %s", je.line, je.column, je.text);
		else
			snprintf(msg, sizeof(msg), "body: expected a JSON object");
		json_decref(in);
		reply_error(c, 400, "malformed", msg, NULL);
		return NULL;
	}
	return in;
}

/* ---- operations ------------------------------------------------------- */

static void h_healthz(api_call *c)
{
	reply_json(c, 200, json_pack("{s:s, s:s}", "status", "ok", "version", WS_VERSION));
}

static void readyz_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	api_call *c = arg;
	ws_api *a = c->api;
	const ws_migration_set *set = a->d.migrations;
	size_t applied = 0, unknown = 0;
	bool db_ok = true, changed = false;
	char why[256] = "";

	if (err && strcmp(err->sqlstate, "42P01") == 0) {
		/* No schema_migrations table: nothing applied yet. */
	} else if (err) {
		db_ok = false;
		snprintf(why, sizeof(why), "database: %s", err->message);
	} else {
		for (int r = 0; r < PQntuples(res); r++) {
			int v = atoi(PQgetvalue(res, r, 0));
			size_t i;
			for (i = 0; i < set->len && set->items[i].version != v; i++)
				;
			if (i == set->len)
				unknown++;
			else if (strcmp(PQgetvalue(res, r, 2), set->items[i].sha256) != 0)
				changed = true;
			else
				applied++;
		}
	}
	size_t pending = db_ok ? set->len - applied : set->len;
	ws_redis_state rs = ws_redis_get_state(a->d.redis);
	json_t *checks = json_pack("{s:s, s:{s:I, s:I}, s:s}",
				   "database", db_ok ? "ok" : "unreachable",
				   "migrations", "applied", (json_int_t)applied, "pending", (json_int_t)pending,
				   "redis", ws_redis_state_name(rs));
	if (rs != WS_REDIS_UP && rs != WS_REDIS_DISABLED)
		json_object_set_new(checks, "redis_note",
				    json_string("optional: the service runs without Redis"));
	if (db_ok && pending == 0 && !changed && !unknown) {
		json_t *doc = json_pack("{s:s, s:o}", "status", "ready", "checks", checks);
		reply_json(c, 200, doc);
		return;
	}
	if (db_ok && changed)
		snprintf(why, sizeof(why), "an applied migration differs from its file");
	else if (db_ok && unknown)
		snprintf(why, sizeof(why), "the database has migrations this build does not know");
	else if (db_ok)
		snprintf(why, sizeof(why), "%zu migration%s pending: run `wavesched migrate`", pending,
			 pending == 1 ? "" : "s");
	json_t *doc = json_pack("{s:s, s:{s:s, s:s, s:[]}, s:o}", "status", "not_ready", "error",
				"code", "not_ready", "message", why, "details", "checks", checks);
	reply_json(c, 503, doc);
}

static void h_readyz(api_call *c)
{
	api_query(c->api->d.pool, WS_MIGRATIONS_APPLIED_SQL, 0, NULL, readyz_done, c);
}

static void h_metrics(api_call *c)
{
	ws_api *a = c->api;
	ws_metrics *m = a->d.metrics;
	ws_pg_stats st;
	ws_pg_pool_stats(a->d.pool, &st);
	ws_metrics_gauge_set(m, "wavesched_db_pool_connections", "Database pool connections by state.",
			     "state=\"configured\"", st.size);
	ws_metrics_gauge_set(m, "wavesched_db_pool_connections", NULL, "state=\"connected\"", st.connected);
	ws_metrics_gauge_set(m, "wavesched_db_pool_connections", NULL, "state=\"busy\"", st.busy);
	ws_metrics_gauge_set(m, "wavesched_db_pool_waiting", "Queries waiting for a connection.", "", st.waiting);
	ws_metrics_gauge_set(m, "wavesched_db_queries", "Queries sent since start.", "", (double)st.queries);
	ws_metrics_gauge_set(m, "wavesched_db_query_errors", "Queries that failed since start.", "", (double)st.errors);
	ws_metrics_gauge_set(m, "wavesched_db_query_timeouts", "Queries that timed out since start.", "", (double)st.timeouts);
	ws_metrics_gauge_set(m, "wavesched_db_reconnects", "Database reconnects since start.", "", (double)st.reconnects);
	ws_metrics_gauge_set(m, "wavesched_redis_up", "1 when the Redis link is up.", "",
			     ws_redis_get_state(a->d.redis) == WS_REDIS_UP);
	ws_metrics_gauge_set(m, "wavesched_http_connections", "Open HTTP connections.", "",
			     a->d.http ? (double)ws_http_server_connections(a->d.http) : 0);
	ws_metrics_gauge_set(m, "wavesched_api_requests_in_flight",
			     "Requests being handled (this one included).", "", (double)a->pending);
	ws_metrics_gauge_set(m, "wavesched_build_info", "Build information.",
			     "version=\"" WS_VERSION "\"", 1);
	size_t len = 0;
	char *text = ws_metrics_render(m, &len);
	ws_http_respond(c->req, 200, "text/plain; version=0.0.4; charset=utf-8", text ? text : "", text ? len : 0);
	free(text);
	call_finish(c);
}

/* ---- routing and authentication ---------------------------------------- */

static const route routes[] = {
	{ "GET", "/healthz", false, 0, h_healthz },
	{ "GET", "/readyz", false, 0, h_readyz },
	{ "GET", "/metrics", false, 0, h_metrics },
	{ "PUT", "/v1/fleet", true, WS_PERM_FLEET_WRITE, h_fleet_put },
	{ "GET", "/v1/fleet", true, WS_PERM_READ_FLEET, h_fleet_get },
	{ "GET", "/v1/tenants", true, WS_PERM_READ_TENANT, h_tenants },
	{ "GET", "/v1/tenants/{slug}", true, WS_PERM_READ_TENANT, h_tenant },
	{ "POST", "/v1/tokens", true, WS_PERM_TOKENS, h_token_create },
	{ "GET", "/v1/tokens", true, WS_PERM_TOKENS, h_token_list },
	{ "DELETE", "/v1/tokens/{id}", true, WS_PERM_TOKENS, h_token_revoke },
	{ "POST", "/v1/policies", true, WS_PERM_FLEET_WRITE, h_policy_create },
	{ "GET", "/v1/policies", true, WS_PERM_READ_FLEET, h_policy_list },
	{ "POST", "/v1/policies/validate", true, WS_PERM_READ_FLEET, h_policy_validate },
	{ "GET", "/v1/policies/{name}", true, WS_PERM_READ_FLEET, h_policy_get },
	{ "POST", "/v1/rollouts", true, WS_PERM_FLEET_WRITE, h_rollout_create },
	{ "POST", "/v1/releases", true, WS_PERM_FLEET_WRITE, h_release_create },
	{ "GET", "/v1/releases", true, WS_PERM_READ_FLEET, h_release_list },
	{ "GET", "/v1/releases/{version}", true, WS_PERM_READ_FLEET, h_release_get },
	{ "POST", "/v1/backups", true, WS_PERM_FLEET_WRITE, h_backup_report },
	{ "GET", "/v1/tenants/{slug}/backups", true, WS_PERM_READ_TENANT, h_tenant_backups },
	/* Rollouts are read per tenant (filtered in SQL); approvals are checked
	 * against the policy's roles by ws_wave_decide_as. */
	{ "GET", "/v1/rollouts", true, WS_PERM_READ_TENANT, h_rollout_list },
	{ "GET", "/v1/rollouts/{id}", true, WS_PERM_READ_TENANT, h_rollout_get },
	{ "GET", "/v1/rollouts/{id}/plan", true, WS_PERM_READ_FLEET, h_rollout_plan },
	{ "POST", "/v1/rollouts/{id}/start", true, WS_PERM_FLEET_WRITE, h_rollout_start },
	{ "POST", "/v1/rollouts/{id}/pause", true, WS_PERM_FLEET_WRITE, h_rollout_pause },
	{ "POST", "/v1/rollouts/{id}/resume", true, WS_PERM_FLEET_WRITE, h_rollout_resume },
	{ "POST", "/v1/rollouts/{id}/abort", true, WS_PERM_FLEET_WRITE, h_rollout_abort },
	{ "POST", "/v1/rollouts/{id}/approve", true, WS_PERM_READ_TENANT, h_rollout_approve },
	{ "POST", "/v1/rollouts/{id}/reject", true, WS_PERM_READ_TENANT, h_rollout_reject },
	{ "GET", "/v1/events", true, WS_PERM_READ_TENANT, h_events },
};
#define N_ROUTES (sizeof(routes) / sizeof(routes[0]))

/* Matches a path against a pattern; a {param} segment captures one
 * non-empty segment into `param`. */
static bool path_match(const char *pattern, const char *path, char *param, size_t size)
{
	while (*pattern && *path) {
		if (*pattern == '{') {
			const char *pend = strchr(pattern, '}');
			const char *seg_end = strchr(path, '/');
			size_t n = seg_end ? (size_t)(seg_end - path) : strlen(path);
			if (!pend || n == 0 || n >= size)
				return false;
			memcpy(param, path, n);
			param[n] = '\0';
			pattern = pend + 1;
			path += n;
			continue;
		}
		if (*pattern != *path)
			return false;
		pattern++;
		path++;
	}
	return *pattern == '\0' && *path == '\0';
}

static void auth_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	api_call *c = arg;
	if (err) {
		/* Fail closed: no database, no decision. */
		reply_db_error(c, err);
		return;
	}
	if (PQntuples(res) != 1) {
		ws_http_add_header(c->req, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
		reply_error(c, 401, "unauthenticated", "unknown token", NULL);
		return;
	}
	if (strcmp(PQgetvalue(res, 0, 5), "t") == 0) {
		ws_http_add_header(c->req, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
		reply_error(c, 401, "unauthenticated", "the token has been revoked", NULL);
		return;
	}
	if (strcmp(PQgetvalue(res, 0, 4), "t") == 0) {
		ws_http_add_header(c->req, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
		reply_error(c, 401, "unauthenticated", "the token has expired", NULL);
		return;
	}
	snprintf(c->who.id, sizeof(c->who.id), "%s", PQgetvalue(res, 0, 0));
	c->who.name = strdup(PQgetvalue(res, 0, 1));
	if (!c->who.name) {
		reply_error(c, 503, "unavailable", "out of memory", NULL);
		return;
	}
	if (ws_role_parse(PQgetvalue(res, 0, 2), &c->who.role)) {
		reply_error(c, 500, "internal", "the token has an unknown role", NULL);
		return;
	}
	json_error_t je;
	json_t *arr = json_loads(PQgetvalue(res, 0, 3), 0, &je);
	size_t n = json_array_size(arr);
	c->who.tenants = n ? calloc(n, sizeof(char *)) : NULL;
	for (size_t i = 0; c->who.tenants && i < n; i++) {
		const char *s = json_string_value(json_array_get(arr, i));
		if (s)
			c->who.tenants[c->who.n_tenants++] = strdup(s);
	}
	json_decref(arr);
	snprintf(c->actor, sizeof(c->actor), "token:%s", c->who.name ? c->who.name : c->who.id);
	if (!ws_role_may(c->who.role, c->rt->perm)) {
		/* Tenant tokens asking about tenant-scoped objects they may not
		 * see get 404 in the handler; everything else is a plain 403. */
		char msg[160];
		snprintf(msg, sizeof(msg), "role %s may not %s %s", ws_role_name(c->who.role),
			 c->rt->method, c->rt->pattern);
		reply_error(c, 403, "forbidden", msg, NULL);
		return;
	}
	c->rt->fn(c);
}

static void authenticate(api_call *c)
{
	const char *h = ws_http_req_header(c->req, "Authorization");
	char hash[65];
	if (!h || strncasecmp(h, "Bearer ", 7) != 0) {
		ws_http_add_header(c->req, "WWW-Authenticate", "Bearer");
		reply_error(c, 401, "unauthenticated",
			    "missing bearer token: send Authorization: Bearer <token>", NULL);
		return;
	}
	const char *tok = h + 7;
	while (*tok == ' ')
		tok++;
	if (ws_token_hash(tok, hash)) {
		ws_http_add_header(c->req, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
		reply_error(c, 401, "unauthenticated", "malformed token", NULL);
		return;
	}
	const char *params[] = { hash };
	api_query(c->api->d.pool,
	          "SELECT id::text, name, role, array_to_json(tenants)::text, "
	          "expires_at IS NOT NULL AND expires_at <= now(), revoked_at IS NOT NULL "
	          "FROM api_tokens WHERE secret_hash = $1",
	          1, params, auth_done, c);
}

void ws_api_handle(void *arg, ws_http_req *req)
{
	ws_api *a = arg;
	api_call *c = calloc(1, sizeof(*c));
	if (!c) {
		ws_http_respond_error(req, 503, "unavailable", "out of memory", NULL);
		return;
	}
	c->api = a;
	c->req = req;
	a->pending++;
	const char *method = ws_http_req_method(req);
	const char *path = ws_http_req_path(req);
	bool path_known = false;
	for (size_t i = 0; i < N_ROUTES; i++) {
		char param[sizeof(c->param)];
		if (!path_match(routes[i].pattern, path, param, sizeof(param)))
			continue;
		path_known = true;
		if (strcmp(routes[i].method, method) != 0 &&
		    !(strcmp(method, "HEAD") == 0 && strcmp(routes[i].method, "GET") == 0))
			continue;
		c->rt = &routes[i];
		memcpy(c->param, param, sizeof(param));
		ws_http_req_set_route(req, routes[i].pattern);
		break;
	}
	if (!c->rt) {
		if (path_known) {
			char allow[128] = "";
			size_t used = 0;
			for (size_t i = 0; i < N_ROUTES; i++) {
				char param[sizeof(c->param)];
				if (path_match(routes[i].pattern, path, param, sizeof(param))) {
					int n = snprintf(allow + used, sizeof(allow) - used, "%s%s",
							 used ? ", " : "", routes[i].method);
					if (n < 0 || (size_t)n >= sizeof(allow) - used)
						break;
					used += (size_t)n;
				}
			}
			ws_http_add_header(req, "Allow", allow);
			reply_error(c, 405, "method_not_allowed", "method not allowed on this path", NULL);
		} else {
			reply_error(c, 404, "not_found", "no such endpoint", NULL);
		}
		return;
	}
	if (c->rt->auth)
		authenticate(c);
	else
		c->rt->fn(c);
}

static const double latency_buckets[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
					  0.25, 0.5, 1, 2.5, 5, 10 };

void ws_api_request_done(void *arg, const ws_http_req *req, int status, uint64_t elapsed_ns)
{
	ws_api *a = arg;
	char route_esc[128], labels[256];
	ws_metrics_escape(ws_http_req_route(req), route_esc, sizeof(route_esc));
	snprintf(labels, sizeof(labels), "method=\"%s\",route=\"%s\",status=\"%d\"",
		 ws_http_req_method(req), route_esc, status);
	ws_metrics_counter_add(a->d.metrics, "wavesched_http_requests_total",
			       "HTTP requests by method, route and status.", labels, 1);
	snprintf(labels, sizeof(labels), "route=\"%s\"", route_esc);
	ws_metrics_histogram_observe(a->d.metrics, "wavesched_http_request_duration_seconds",
				     "HTTP request latency by route.", labels, latency_buckets,
				     sizeof(latency_buckets) / sizeof(latency_buckets[0]),
				     (double)elapsed_ns / 1e9);
	ws_debug("http", "request=%llu %s %s -> %d in %.3f ms", (unsigned long long)ws_http_req_id(req),
		 ws_http_req_method(req), ws_http_req_path(req), status, (double)elapsed_ns / 1e6);
}

ws_api *ws_api_new(const ws_api_deps *deps)
{
	ws_api *a = calloc(1, sizeof(*a));
	if (a)
		a->d = *deps;
	return a;
}

void ws_api_set_http(ws_api *a, ws_http_server *http)
{
	a->d.http = http;
}

void ws_api_free(ws_api *a)
{
	free(a);
}
