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
#include "wavesched/ratelimit.h"
#include "wavesched/assets.h"
#include "wavesched/clock.h"
#include "wavesched/engine.h"
#include "wavesched/lease.h"
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

/* The figures the database keeps (ws_metrics_snapshot, 0014_metrics.sql);
 * `snap` may be NULL when the database did not answer. */
static void db_metrics(ws_metrics *m, json_t *snap)
{
	ws_metrics_gauge_set(m, "wavesched_metrics_db_up",
			     "1 when this scrape could read the database's figures (rollouts, gates, audit).", "",
			     snap != NULL);
	if (!snap)
		return;
	static const struct { const char *object, *name, *help; } fams[] = {
		{ "rollout", "wavesched_rollouts", "Rollouts by state." },
		{ "wave", "wavesched_waves", "Waves of every rollout by state." },
		{ "deployment", "wavesched_deployments", "Tenant deployments of every rollout by state." },
	};
	size_t i;
	json_t *x;
	char labels[320], esc[128], esc2[128];
	json_array_foreach(json_object_get(snap, "states"), i, x) {
		const char *obj = json_string_value(json_object_get(x, "object"));
		const char *state = json_string_value(json_object_get(x, "state"));
		for (size_t k = 0; obj && state && k < sizeof(fams) / sizeof(fams[0]); k++) {
			if (strcmp(obj, fams[k].object) != 0)
				continue;
			ws_metrics_escape(state, esc, sizeof(esc));
			snprintf(labels, sizeof(labels), "state=\"%s\"", esc);
			ws_metrics_gauge_set(m, fams[k].name, fams[k].help, labels,
					     (double)json_integer_value(json_object_get(x, "n")));
		}
	}
	json_array_foreach(json_object_get(snap, "gates"), i, x) {
		const char *gate = json_string_value(json_object_get(x, "gate"));
		const char *result = json_string_value(json_object_get(x, "result"));
		if (!gate || !result)
			continue;
		ws_metrics_escape(gate, esc, sizeof(esc));
		ws_metrics_escape(result, esc2, sizeof(esc2));
		snprintf(labels, sizeof(labels), "gate=\"%s\",result=\"%s\"", esc, esc2);
		ws_metrics_counter_set(m, "wavesched_gate_results_total",
				       "Gate results recorded (backup, health, soak, approval, ...).", labels,
				       (double)json_integer_value(json_object_get(x, "n")));
	}
	json_t *ds = json_object_get(snap, "deploy_seconds");
	json_t *bounds = json_object_get(ds, "bounds"), *buckets = json_object_get(ds, "buckets");
	size_t n = json_array_size(bounds);
	if (n > 0 && n <= 16 && json_array_size(buckets) == n) {
		double b[16];
		uint64_t cum[16];
		for (size_t k = 0; k < n; k++) {
			b[k] = json_number_value(json_array_get(bounds, k));
			cum[k] = (uint64_t)json_integer_value(json_array_get(buckets, k));
		}
		ws_metrics_histogram_set(m, "wavesched_deploy_duration_seconds",
					 "Tenant deployments from deploy call to healthy, failed or rolled back "
					 "(schedule time).", "", b, n, cum,
					 (uint64_t)json_integer_value(json_object_get(ds, "count")),
					 json_number_value(json_object_get(ds, "sum")));
	}
	json_t *audit = json_object_get(snap, "audit");
	ws_metrics_gauge_set(m, "wavesched_audit_chain_length", "Rows in the audit log's hash chain.", "",
			     (double)json_integer_value(json_object_get(audit, "length")));
	ws_metrics_gauge_set(m, "wavesched_audit_chain_head_id", "Id of the newest audit row.", "",
			     (double)json_integer_value(json_object_get(audit, "head_id")));
	json_t *rv = json_object_get(snap, "reviews");
	if (rv) {
		static const char *const rstates[] = { "open", "overdue", "closed" };
		for (size_t k = 0; k < 3; k++) {
			snprintf(labels, sizeof(labels), "state=\"%s\"", rstates[k]);
			ws_metrics_gauge_set(m, "wavesched_reviews",
					     "Break-glass reviews by state (overdue: open past its due time).", labels,
					     (double)json_integer_value(json_object_get(rv, rstates[k])));
		}
	}
	json_t *nt = json_object_get(snap, "notifications");
	if (nt) {
		static const char *const nstates[] = { "pending", "delivered", "failed" };
		for (size_t k = 0; k < 3; k++) {
			snprintf(labels, sizeof(labels), "state=\"%s\"", nstates[k]);
			ws_metrics_gauge_set(m, "wavesched_notifications",
					     "Notifications by state (pending: queued or waiting to be retried).", labels,
					     (double)json_integer_value(json_object_get(nt, nstates[k])));
		}
	}
	ws_metrics_gauge_set(m, "wavesched_events_unpublished", "Events recorded but not yet published.", "",
			     (double)json_integer_value(json_object_get(snap, "events_unpublished")));
}

static void metrics_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	api_call *c = arg;
	ws_metrics *m = c->api->d.metrics;
	json_t *snap = NULL;
	if (!err && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
		json_error_t je;
		snap = json_loads(PQgetvalue(res, 0, 0), 0, &je);
	}
	db_metrics(m, snap);
	json_decref(snap);
	size_t len = 0;
	char *text = ws_metrics_render(m, &len);
	ws_http_respond(c->req, 200, "text/plain; version=0.0.4; charset=utf-8", text ? text : "", text ? len : 0);
	free(text);
	call_finish(c);
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
	if (a->d.lease) {
		bool leader = ws_lease_is_leader(a->d.lease);
		ws_metrics_gauge_set(m, "wavesched_engine_leader", "1 while this process is the engine's leader.", "",
				     leader);
		ws_metrics_gauge_set(m, "wavesched_engine_epoch",
				     "The lease epoch this process last held or saw (grows at each takeover).", "",
				     (double)ws_lease_epoch(a->d.lease));
	}
	if (a->d.engine) {
		ws_engine_stats es;
		ws_engine_stats_get(a->d.engine, &es);
		ws_metrics_counter_set(m, "wavesched_engine_transactions_total",
				       "Engine transactions committed by this process.", "", (double)es.transactions);
		ws_metrics_counter_set(m, "wavesched_engine_transitions_total",
				       "State transitions committed by this process's engine.", "", (double)es.transitions);
		ws_metrics_counter_set(m, "wavesched_engine_stale_epoch_total",
				       "Engine transactions refused because the lease had moved.", "", (double)es.stale_epoch);
		ws_metrics_counter_set(m, "wavesched_engine_conflicts_total",
				       "Engine transactions refused by an expected-state guard.", "", (double)es.conflicts);
		ws_metrics_counter_set(m, "wavesched_engine_deploy_calls_total",
				       "Executor calls started by this process (re-issues included).", "",
				       (double)es.deploy_calls);
		ws_metrics_counter_set(m, "wavesched_engine_probes_total", "Health probes sent by this process.", "",
				       (double)es.probes);
		ws_metrics_gauge_set(m, "wavesched_engine_active_rollouts",
				     "Rollouts this process's engine is driving.", "", (double)es.active_rollouts);
	}
	api_query(a->d.pool, "SELECT ws_metrics_snapshot()::text", 0, NULL, metrics_done, c);
}

/* The embedded files (assets.h): the web page and the OpenAPI document.
 * Public like /metrics: they hold no data, the page asks for a token. */
static void h_asset(api_call *c)
{
	const char *path = ws_http_req_path(c->req);
	for (const ws_asset *a = ws_assets; a->path; a++) {
		if (strcmp(a->path, path) != 0)
			continue;
		ws_http_add_header(c->req, "ETag", a->etag);
		ws_http_add_header(c->req, "Cache-Control", "no-cache");
		ws_http_add_header(c->req, "X-Content-Type-Options", "nosniff");
		if (strncmp(a->content_type, "text/html", 9) == 0) {
			/* The page runs only its own script and talks only to this
			 * service; it is never framed. */
			ws_http_add_header(c->req, "Content-Security-Policy",
					   "default-src 'none'; script-src 'self'; style-src 'self'; "
					   "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
					   "form-action 'none'; frame-ancestors 'none'");
			ws_http_add_header(c->req, "Referrer-Policy", "no-referrer");
		}
		const char *inm = ws_http_req_header(c->req, "If-None-Match");
		if (inm && strcmp(inm, a->etag) == 0) {
			ws_http_respond(c->req, 304, NULL, NULL, 0);
		} else {
			ws_http_respond(c->req, 200, a->content_type, (const char *)a->data, a->len);
		}
		call_finish(c);
		return;
	}
	reply_error(c, 404, "not_found", "no such file", NULL);
}

/* ---- routing and authentication ---------------------------------------- */

static const route routes[] = {
	{ "GET", "/healthz", false, 0, h_healthz },
	{ "GET", "/readyz", false, 0, h_readyz },
	{ "GET", "/metrics", false, 0, h_metrics },
	{ "GET", "/", false, 0, h_asset },
	{ "GET", "/ui/{file}", false, 0, h_asset },
	{ "GET", "/v1/openapi.json", false, 0, h_asset },
	{ "PUT", "/v1/fleet", true, WS_PERM_FLEET_WRITE, h_fleet_put },
	{ "GET", "/v1/fleet", true, WS_PERM_READ_FLEET, h_fleet_get },
	{ "GET", "/v1/tenants", true, WS_PERM_READ_TENANT, h_tenants },
	{ "GET", "/v1/tenants/{slug}", true, WS_PERM_READ_TENANT, h_tenant },
	{ "POST", "/v1/tokens", true, WS_PERM_TOKENS, h_token_create },
	{ "GET", "/v1/tokens", true, WS_PERM_TOKENS, h_token_list },
	{ "DELETE", "/v1/tokens/{id}", true, WS_PERM_TOKENS, h_token_revoke },
	{ "GET", "/v1/whoami", true, WS_PERM_READ_TENANT, h_whoami },
	{ "POST", "/v1/policies", true, WS_PERM_FLEET_WRITE, h_policy_create },
	{ "GET", "/v1/policies", true, WS_PERM_READ_FLEET, h_policy_list },
	{ "POST", "/v1/policies/validate", true, WS_PERM_READ_FLEET, h_policy_validate },
	{ "GET", "/v1/policies/{name}", true, WS_PERM_READ_FLEET, h_policy_get },
	{ "POST", "/v1/rollouts", true, WS_PERM_FLEET_WRITE, h_rollout_create },
	{ "POST", "/v1/releases", true, WS_PERM_FLEET_WRITE, h_release_create },
	{ "GET", "/v1/releases", true, WS_PERM_READ_FLEET, h_release_list },
	{ "GET", "/v1/releases/{version}", true, WS_PERM_READ_FLEET, h_release_get },
	{ "POST", "/v1/releases/{version}/attestations", true, WS_PERM_FLEET_WRITE, h_release_attest },
	{ "GET", "/v1/releases/{version}/attestations", true, WS_PERM_READ_FLEET, h_release_attestations },
	{ "POST", "/v1/backups", true, WS_PERM_FLEET_WRITE, h_backup_report },
	{ "GET", "/v1/tenants/{slug}/backups", true, WS_PERM_READ_TENANT, h_tenant_backups },
	{ "GET", "/v1/tenants/{slug}/windows", true, WS_PERM_READ_TENANT, h_tenant_windows },
	{ "GET", "/v1/tenants/{slug}/windows.ics", true, WS_PERM_READ_TENANT, h_tenant_windows_ics },
	/* Tenant tokens for their own slugs, and roles acting for them (api_defer.c). */
	{ "POST", "/v1/tenants/{slug}/deferrals", true, WS_PERM_READ_TENANT, h_tenant_defer },
	/* Rollouts are read per tenant (filtered in SQL); approvals are checked
	 * against the policy's roles by ws_wave_decide_as. */
	{ "GET", "/v1/rollouts", true, WS_PERM_READ_TENANT, h_rollout_list },
	{ "GET", "/v1/rollouts/{id}", true, WS_PERM_READ_TENANT, h_rollout_get },
	{ "GET", "/v1/rollouts/{id}/plan", true, WS_PERM_READ_FLEET, h_rollout_plan },
	{ "POST", "/v1/rollouts/{id}/start", true, WS_PERM_FLEET_WRITE, h_rollout_start },
	{ "POST", "/v1/rollouts/{id}/pause", true, WS_PERM_FLEET_WRITE, h_rollout_pause },
	{ "POST", "/v1/rollouts/{id}/resume", true, WS_PERM_FLEET_WRITE, h_rollout_resume },
	{ "POST", "/v1/rollouts/{id}/abort", true, WS_PERM_FLEET_WRITE, h_rollout_abort },
	{ "POST", "/v1/rollouts/{id}/replan", true, WS_PERM_FLEET_WRITE, h_rollout_replan },
	{ "GET", "/v1/rollouts/{id}/plans", true, WS_PERM_READ_FLEET, h_rollout_plans },
	{ "GET", "/v1/reviews", true, WS_PERM_READ_FLEET, h_review_list },
	{ "POST", "/v1/reviews/{id}/close", true, WS_PERM_READ_FLEET, h_review_close },
	/* Sinks are admin-only (checked in api_notify.c: a webhook URL is a credential). */
	{ "POST", "/v1/notifications/sinks", true, WS_PERM_READ_FLEET, h_notify_sink_create },
	{ "GET", "/v1/notifications/sinks", true, WS_PERM_READ_FLEET, h_notify_sink_list },
	{ "DELETE", "/v1/notifications/sinks/{name}", true, WS_PERM_READ_FLEET, h_notify_sink_delete },
	{ "GET", "/v1/notifications", true, WS_PERM_READ_FLEET, h_notify_list },
	{ "POST", "/v1/rollouts/{id}/approve", true, WS_PERM_READ_TENANT, h_rollout_approve },
	{ "POST", "/v1/rollouts/{id}/reject", true, WS_PERM_READ_TENANT, h_rollout_reject },
	{ "GET", "/v1/rollouts/{id}/evidence", true, WS_PERM_READ_FLEET, h_rollout_evidence },
	{ "GET", "/v1/audit", true, WS_PERM_READ_FLEET, h_audit_list },
	{ "GET", "/v1/audit/verify", true, WS_PERM_READ_FLEET, h_audit_verify },
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

static void rate_checked(void *arg, bool allowed, int64_t retry_after_us);

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
	ws_ratelimit_check(c->api->rl, c->who.id, rate_checked, c);
}

/* Every authenticated request counts against its token, refused ones too. */
static void rate_checked(void *arg, bool allowed, int64_t retry_after_us)
{
	api_call *c = arg;
	if (!allowed) {
		char secs[24];
		snprintf(secs, sizeof(secs), "%lld", (long long)((retry_after_us + 999999) / 1000000));
		ws_http_add_header(c->req, "Retry-After", secs);
		char msg[160];
		snprintf(msg, sizeof(msg), "too many requests for this token: retry in %s s", secs);
		reply_error(c, 429, "rate_limited", msg, NULL);
		return;
	}
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
	if (!a)
		return NULL;
	a->d = *deps;
	double rate = deps->config ? deps->config->rate_limit : 0;
	unsigned burst = deps->config ? deps->config->rate_burst : 0;
	if (!(a->rl = ws_ratelimit_new(deps->loop, deps->redis, rate, burst))) {
		free(a);
		return NULL;
	}
	return a;
}

void ws_api_set_http(ws_api *a, ws_http_server *http)
{
	a->d.http = http;
}

void ws_api_free(ws_api *a)
{
	if (a)
		ws_ratelimit_free(a->rl);
	free(a);
}
