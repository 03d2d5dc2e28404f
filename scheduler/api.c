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
#include "wavesched/api.h"
#include "wavesched/auth.h"
#include "wavesched/log.h"
#include "wavesched/window.h"

struct ws_api {
	ws_api_deps d;
	size_t pending;
};

typedef struct api_call api_call;
typedef void (*handler_fn)(api_call *c);

typedef struct route {
	const char *method;
	const char *pattern;    /* "/v1/tenants/{slug}": one {param} segment at most */
	bool auth;
	ws_perm perm;
	handler_fn fn;
} route;

struct api_call {
	ws_api *api;
	ws_http_req *req;
	const route *rt;
	char param[256];        /* the {param} segment, decoded */
	ws_principal who;
	char actor[160];        /* "token:<name>" for records */
};

#define SLUG_MAX 63

/* ---- answers ---------------------------------------------------------- */

static void call_finish(api_call *c)
{
	c->api->pending--;
	ws_principal_clear(&c->who);
	free(c);
}

static void reply_json(api_call *c, int status, json_t *doc)
{
	ws_http_respond_json(c->req, status, doc);
	call_finish(c);
}

static void reply_error(api_call *c, int status, const char *code, const char *message,
			json_t *details)
{
	ws_http_respond_error(c->req, status, code, message, details);
	call_finish(c);
}

/* A database failure becomes 503 when it is about reaching the database and
 * 500 otherwise; the server-side detail goes to the log, not to the client. */
static void reply_db_error(api_call *c, const ws_pg_err *err)
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
static json_t *diags_json(const ws_diags *d)
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

static bool query_flag(api_call *c, const char *name)
{
	const char *v = ws_http_req_query_param(c->req, name);
	return v && (strcmp(v, "1") == 0 || strcmp(v, "true") == 0 || strcmp(v, "yes") == 0);
}

static int64_t now_utc(void)
{
	return (int64_t)time(NULL);
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
	int rc = ws_pg_query(c->api->d.pool, WS_MIGRATIONS_APPLIED_SQL, 0, NULL, readyz_done, c);
	if (rc) {
		ws_pg_err e = { .code = rc, .sqlstate = "", .message = ws_strerror(rc), .detail = "" };
		readyz_done(c, NULL, &e);
	}
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
	ws_metrics_gauge_set(m, "wavesched_build_info", "Build information.",
			     "version=\"" WS_VERSION "\"", 1);
	size_t len = 0;
	char *text = ws_metrics_render(m, &len);
	ws_http_respond(c->req, 200, "text/plain; version=0.0.4; charset=utf-8", text ? text : "", text ? len : 0);
	free(text);
	call_finish(c);
}

/* ---- fleet ------------------------------------------------------------ */

/*
 * Rendering a fleet view (a 10,000-tenant export, or next windows computed
 * with libical for every tenant) and parsing an uploaded fleet are CPU work
 * of up to hundreds of milliseconds: they run on libuv's thread pool with a
 * retained snapshot, and only the answer is sent from the loop.
 */

typedef enum { RENDER_FLEET_JSON, RENDER_FLEET_YAML, RENDER_TENANTS, RENDER_TENANT } render_kind;

typedef struct render_job {
	uv_work_t work;
	api_call *c;
	render_kind kind;
	ws_fleet_snapshot *snap;
	int64_t now;
	char *body;          /* the answer, malloc'd */
	size_t len;
	int status;
} render_job;

static json_t *tenant_view(const ws_fleet *f, const ws_tenant *t, int64_t now)
{
	json_t *o = fleet_tenant_to_json(f, t);
	ws_interval best = { 0 }, iv;
	bool found = false;
	const int64_t horizon = now + 400LL * 86400;
	for (size_t i = 0; i < t->n_windows; i++) {
		if (window_next(&t->windows[i], t->timezone, now, horizon, &iv) == 0 &&
		    (!found || iv.start < best.start)) {
			best = iv;
			found = true;
		}
	}
	if (found) {
		char s[40], e[40];
		int off_end = ws_tz_offset(t->timezone, best.end);
		ws_time_format(best.start, best.utc_offset, false, s, sizeof(s));
		ws_time_format(best.end, off_end, false, e, sizeof(e));
		json_object_set_new(o, "next_window", json_pack("{s:s, s:s}", "start", s, "end", e));
	} else {
		/* No windows: the tenant can be deployed at any time (fleet.md). */
		json_object_set_new(o, "next_window", json_null());
	}
	return o;
}

static char *dump_json(json_t *doc, size_t *len)
{
	char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(doc);
	*len = text ? strlen(text) : 0;
	return text;
}

/* On the thread pool: reads the retained snapshot and c->who, both
 * immutable while the job runs. */
static void render_work_cb(uv_work_t *w)
{
	render_job *j = w->data;
	const ws_fleet *f = j->snap->fleet;
	j->status = 200;
	switch (j->kind) {
	case RENDER_FLEET_JSON:
		j->body = dump_json(fleet_to_json(f), &j->len);
		break;
	case RENDER_FLEET_YAML: {
		json_t *doc = fleet_to_json(f);
		j->body = doc ? ws_json_to_yaml(doc, &j->len) : NULL;
		json_decref(doc);
		break;
	}
	case RENDER_TENANTS: {
		json_t *arr = json_array();
		for (size_t i = 0; i < f->n_tenants; i++)
			if (ws_principal_sees_tenant(&j->c->who, f->tenants[i].slug))
				json_array_append_new(arr, tenant_view(f, &f->tenants[i], j->now));
		j->body = dump_json(json_pack("{s:o}", "tenants", arr), &j->len);
		break;
	}
	case RENDER_TENANT: {
		const ws_tenant *t = fleet_tenant(f, j->c->param);
		if (t)
			j->body = dump_json(tenant_view(f, t, j->now), &j->len);
		else
			j->status = 404;
		break;
	}
	}
}

static void render_after_cb(uv_work_t *w, int status)
{
	render_job *j = w->data;
	api_call *c = j->c;
	char genbuf[32];
	snprintf(genbuf, sizeof(genbuf), "%lld", (long long)j->snap->generation);
	ws_fleet_snapshot_release(j->snap);
	if (status == 0 && j->status == 404) {
		reply_error(c, 404, "not_found", "no such tenant", NULL);
	} else if (status != 0 || !j->body) {
		reply_error(c, 500, "internal", "cannot render the answer", NULL);
	} else {
		if (j->kind == RENDER_FLEET_JSON || j->kind == RENDER_FLEET_YAML)
			ws_http_add_header(c->req, "X-Fleet-Generation", genbuf);
		ws_http_respond(c->req, 200, j->kind == RENDER_FLEET_YAML ? "application/yaml"
				: "application/json", j->body, j->len);
		call_finish(c);
	}
	free(j->body);
	free(j);
}

static void render_snapshot_cb(void *arg, ws_fleet_snapshot *snap, const ws_pg_err *err)
{
	render_job *j = arg;
	if (err) {
		api_call *c = j->c;
		free(j);
		reply_db_error(c, err);
		return;
	}
	ws_fleet_snapshot_retain(snap);
	j->snap = snap;
	j->work.data = j;
	int rc = uv_queue_work(j->c->api->d.loop, &j->work, render_work_cb, render_after_cb);
	if (rc) {
		api_call *c = j->c;
		ws_fleet_snapshot_release(snap);
		free(j);
		reply_error(c, 503, "unavailable", "the service is overloaded; retry later", NULL);
	}
}

static void render_start(api_call *c, render_kind kind)
{
	render_job *j = calloc(1, sizeof(*j));
	if (!j) {
		reply_error(c, 503, "unavailable", "out of memory", NULL);
		return;
	}
	j->c = c;
	j->kind = kind;
	j->now = now_utc();
	ws_fleet_store_snapshot(c->api->d.fleet, render_snapshot_cb, j);
}

static void h_fleet_get(api_call *c)
{
	const char *fmt = ws_http_req_query_param(c->req, "format");
	const char *accept = ws_http_req_header(c->req, "Accept");
	if (fmt && strcmp(fmt, "yaml") && strcmp(fmt, "json")) {
		reply_error(c, 400, "bad_request", "format must be yaml or json", NULL);
		return;
	}
	bool yaml = fmt ? strcmp(fmt, "yaml") == 0 : (accept && strstr(accept, "yaml"));
	render_start(c, yaml ? RENDER_FLEET_YAML : RENDER_FLEET_JSON);
}

static void h_tenants(api_call *c)
{
	render_start(c, RENDER_TENANTS);
}

static void h_tenant(api_call *c)
{
	/* A tenant token learns nothing about tenants it is not scoped to,
	 * not even whether they exist: same 404 as for a missing one. */
	if (!ws_principal_sees_tenant(&c->who, c->param)) {
		reply_error(c, 404, "not_found", "no such tenant", NULL);
		return;
	}
	render_start(c, RENDER_TENANT);
}

/* PUT /v1/fleet: parse and validate on the thread pool, then import. */
typedef struct fleet_put {
	uv_work_t work;
	api_call *c;
	const char *body;   /* borrowed from the request, which outlives the job */
	size_t len;
	int status;         /* 0 = valid; else 400 or 422 */
	ws_diags diags;
	char *canonical;    /* the canonical JSON text, when valid */
	size_t n_tenants;
} fleet_put;

static void fleet_put_work_cb(uv_work_t *w)
{
	fleet_put *p = w->data;
	/* Syntax first: a document that is not YAML/JSON at all is a 400 with
	 * the position; one that parses but breaks fleet.md is a 422. */
	ydoc *doc = ydoc_parse("body", p->body, p->len, NULL, &p->diags);
	if (!doc) {
		p->status = 400;
		return;
	}
	ydoc_free(doc);
	ws_fleet *f = fleet_parse("body", p->body, p->len, &p->diags);
	if (!f) {
		p->status = 422;
		return;
	}
	json_t *canon = fleet_to_json(f);
	p->canonical = canon ? json_dumps(canon, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	p->n_tenants = f->n_tenants;
	json_decref(canon);
	fleet_free(f);
}

static void fleet_put_done(void *arg, json_t *report, const ws_pg_err *err)
{
	fleet_put *p = arg;
	api_call *c = p->c;
	size_t nt = p->n_tenants;
	free(p->canonical);
	free(p);
	if (err) {
		reply_db_error(c, err);
		return;
	}
	json_t *out = json_deep_copy(report);
	json_object_set_new(out, "tenants", json_integer((json_int_t)nt));
	ws_info("fleet", "import by %s: %s tenants=%zu generation=%lld", c->actor,
		json_is_true(json_object_get(report, "dry_run")) ? "dry run" : "applied", nt,
		(long long)json_integer_value(json_object_get(report, "generation")));
	reply_json(c, 200, out);
}

static void fleet_put_after_cb(uv_work_t *w, int status)
{
	fleet_put *p = w->data;
	api_call *c = p->c;
	if (status != 0 || (p->status == 0 && !p->canonical)) {
		ws_diags_free(&p->diags);
		free(p->canonical);
		free(p);
		reply_error(c, 500, "internal", "cannot process the fleet document", NULL);
		return;
	}
	if (p->status == 400) {
		char *first = p->diags.len ? ws_diag_format(&p->diags.items[0]) : NULL;
		reply_error(c, 400, "malformed", first ? first : "malformed document", diags_json(&p->diags));
		free(first);
	} else if (p->status == 422) {
		char msg[128];
		snprintf(msg, sizeof(msg), "the fleet document has %zu problem%s", p->diags.len,
			 p->diags.len == 1 ? "" : "s");
		reply_error(c, 422, "validation_failed", msg, diags_json(&p->diags));
	}
	ws_diags_free(&p->diags);
	if (p->status) {
		free(p);
		return;
	}
	ws_fleet_store_import(c->api->d.fleet, p->canonical, query_flag(c, "dry_run"), c->actor,
			      fleet_put_done, p);
}

static void h_fleet_put(api_call *c)
{
	size_t len = 0;
	const char *body = ws_http_req_body(c->req, &len);
	if (len == 0) {
		reply_error(c, 400, "bad_request", "the request has no body: send a fleet document", NULL);
		return;
	}
	fleet_put *p = calloc(1, sizeof(*p));
	if (!p) {
		reply_error(c, 503, "unavailable", "out of memory", NULL);
		return;
	}
	p->c = c;
	p->body = body;
	p->len = len;
	ws_diags_init(&p->diags);
	p->work.data = p;
	if (uv_queue_work(c->api->d.loop, &p->work, fleet_put_work_cb, fleet_put_after_cb)) {
		free(p);
		reply_error(c, 503, "unavailable", "the service is overloaded; retry later", NULL);
	}
}

/* ---- tokens ----------------------------------------------------------- */

static bool valid_slug(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > SLUG_MAX)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-'))
			return false;
	return true;
}

typedef struct token_new {
	api_call *c;
	char secret[WS_TOKEN_LEN + 1];
} token_new;

static json_t *token_row_json(const PGresult *res, int r)
{
	json_error_t je;
	json_t *tenants = json_loads(PQgetvalue(res, r, 3), 0, &je);
	json_t *o = json_pack("{s:s, s:s, s:s, s:o, s:s, s:s}",
			      "id", PQgetvalue(res, r, 0), "name", PQgetvalue(res, r, 1),
			      "role", PQgetvalue(res, r, 2), "tenants", tenants ? tenants : json_array(),
			      "created_by", PQgetvalue(res, r, 4), "created_at", PQgetvalue(res, r, 5));
	json_object_set_new(o, "expires_at", PQgetisnull(res, r, 6) ? json_null()
			    : json_string(PQgetvalue(res, r, 6)));
	json_object_set_new(o, "revoked_at", PQgetisnull(res, r, 7) ? json_null()
			    : json_string(PQgetvalue(res, r, 7)));
	return o;
}

#define TOKEN_COLUMNS \
	"id::text, name, role, array_to_json(tenants)::text, created_by, " \
	"to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), " \
	"to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), " \
	"to_char(revoked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

static void token_create_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	token_new *t = arg;
	api_call *c = t->c;
	if (err) {
		explicit_bzero(t->secret, sizeof(t->secret));
		free(t);
		reply_db_error(c, err);
		return;
	}
	json_t *o = token_row_json(res, 0);
	/* The secret is in this answer and nowhere else, ever. */
	json_object_set_new(o, "token", json_string(t->secret));
	explicit_bzero(t->secret, sizeof(t->secret));
	free(t);
	ws_info("auth", "token created id=%s role=%s by %s",
		json_string_value(json_object_get(o, "id")),
		json_string_value(json_object_get(o, "role")), c->actor);
	ws_http_add_header(c->req, "Cache-Control", "no-store");
	reply_json(c, 201, o);
}

static void h_token_create(api_call *c)
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
		return;
	}
	ws_diags d;
	ws_diags_init(&d);
	const char *key;
	json_t *val;
	json_object_foreach(in, key, val) {
		if (strcmp(key, "role") && strcmp(key, "tenants") && strcmp(key, "name") &&
		    strcmp(key, "expires"))
			ws_diag_add(&d, NULL, 0, 0,
				    "unknown field \"%s\" (expected one of: role, tenants, name, expires)", key);
	}
	const char *role_s = json_string_value(json_object_get(in, "role"));
	ws_role role = WS_ROLE_VIEWER;
	if (!role_s || ws_role_parse(role_s, &role))
		ws_diag_add(&d, NULL, 0, 0,
			    "\"role\" must be one of admin, platform, security, approver, tenant, viewer");
	json_t *tenants = json_object_get(in, "tenants");
	json_t *slugs = json_array();
	if (tenants && !json_is_array(tenants))
		ws_diag_add(&d, NULL, 0, 0, "\"tenants\" must be a list of tenant slugs");
	size_t i;
	json_t *v;
	json_array_foreach(tenants, i, v) {
		if (!json_is_string(v) || !valid_slug(json_string_value(v)))
			ws_diag_add(&d, NULL, 0, 0, "tenants[%zu] is not a tenant slug", i);
		else
			json_array_append(slugs, v);
	}
	if (role_s && role == WS_ROLE_TENANT && json_array_size(slugs) == 0)
		ws_diag_add(&d, NULL, 0, 0, "a tenant token needs at least one tenant slug");
	if (role_s && role != WS_ROLE_TENANT && json_array_size(tenants) > 0)
		ws_diag_add(&d, NULL, 0, 0, "only tenant tokens are scoped to tenants");
	const char *name = json_string_value(json_object_get(in, "name"));
	if (json_object_get(in, "name") && (!name || !*name || strlen(name) > 100))
		ws_diag_add(&d, NULL, 0, 0, "\"name\" must be a string of 1 to 100 characters");
	const char *expires = json_string_value(json_object_get(in, "expires"));
	int64_t exp_s = 0;
	if (json_object_get(in, "expires") &&
	    (!expires || ws_duration_parse(expires, &exp_s) || exp_s <= 0))
		ws_diag_add(&d, NULL, 0, 0, "\"expires\" must be a duration such as 90d or 12h");
	if (d.len) {
		json_decref(in);
		json_decref(slugs);
		reply_error(c, 422, "validation_failed", "the token request is invalid", diags_json(&d));
		ws_diags_free(&d);
		return;
	}
	token_new *t = calloc(1, sizeof(*t));
	char hash[65], exp_buf[32] = "", *slug_text = json_dumps(slugs, JSON_COMPACT);
	if (!t || !slug_text || ws_token_generate(t->secret, hash)) {
		free(t);
		free(slug_text);
		json_decref(in);
		json_decref(slugs);
		reply_error(c, 500, "internal", "cannot generate a token", NULL);
		return;
	}
	t->c = c;
	if (exp_s)
		snprintf(exp_buf, sizeof(exp_buf), "%lld", (long long)exp_s);
	char auto_name[64];
	snprintf(auto_name, sizeof(auto_name), "%s-token", ws_role_name(role));
	const char *params[] = { name ? name : auto_name, ws_role_name(role), slug_text, hash,
				 c->actor, exp_s ? exp_buf : NULL };
	int rc = ws_pg_query(c->api->d.pool,
			     "INSERT INTO api_tokens (name, role, tenants, secret_hash, created_by, expires_at) "
			     "SELECT $1, $2, ARRAY(SELECT jsonb_array_elements_text($3::jsonb)), $4, $5, "
			     "now() + make_interval(secs => $6::bigint) "
			     "RETURNING " TOKEN_COLUMNS,
			     6, params, token_create_done, t);
	free(slug_text);
	json_decref(in);
	json_decref(slugs);
	if (rc) {
		ws_pg_err e = { .code = rc, .sqlstate = "", .message = ws_strerror(rc), .detail = "" };
		token_create_done(t, NULL, &e);
	}
}

static void token_list_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	api_call *c = arg;
	if (err) {
		reply_db_error(c, err);
		return;
	}
	json_t *arr = json_array();
	for (int r = 0; r < PQntuples(res); r++)
		json_array_append_new(arr, token_row_json(res, r));
	reply_json(c, 200, json_pack("{s:o}", "tokens", arr));
}

static void h_token_list(api_call *c)
{
	int rc = ws_pg_query(c->api->d.pool,
			     "SELECT " TOKEN_COLUMNS " FROM api_tokens ORDER BY created_at, id",
			     0, NULL, token_list_done, c);
	if (rc) {
		ws_pg_err e = { .code = rc, .sqlstate = "", .message = ws_strerror(rc), .detail = "" };
		token_list_done(c, NULL, &e);
	}
}

static void token_revoke_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	api_call *c = arg;
	if (err) {
		reply_db_error(c, err);
		return;
	}
	if (PQntuples(res) == 0) {
		reply_error(c, 404, "not_found", "no such token", NULL);
		return;
	}
	ws_info("auth", "token revoked id=%s by %s", c->param, c->actor);
	reply_json(c, 200, token_row_json(res, 0));
}

static bool valid_uuid(const char *s)
{
	static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
	if (strlen(s) != sizeof(shape) - 1)
		return false;
	for (size_t i = 0; shape[i]; i++) {
		char ch = s[i];
		bool hex = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
		if (shape[i] == '-' ? ch != '-' : !hex)
			return false;
	}
	return true;
}

static void h_token_revoke(api_call *c)
{
	if (!valid_uuid(c->param)) {
		reply_error(c, 404, "not_found", "no such token", NULL);
		return;
	}
	const char *params[] = { c->param };
	/* Revoking twice keeps the first revocation time. */
	int rc = ws_pg_query(c->api->d.pool,
			     "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, now()) "
			     "WHERE id = $1::uuid RETURNING " TOKEN_COLUMNS,
			     1, params, token_revoke_done, c);
	if (rc) {
		ws_pg_err e = { .code = rc, .sqlstate = "", .message = ws_strerror(rc), .detail = "" };
		token_revoke_done(c, NULL, &e);
	}
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
	int rc = ws_pg_query(c->api->d.pool,
			     "SELECT id::text, name, role, array_to_json(tenants)::text, "
			     "expires_at IS NOT NULL AND expires_at <= now(), revoked_at IS NOT NULL "
			     "FROM api_tokens WHERE secret_hash = $1",
			     1, params, auth_done, c);
	if (rc) {
		ws_pg_err e = { .code = rc, .sqlstate = "", .message = ws_strerror(rc), .detail = "" };
		auth_done(c, NULL, &e);
	}
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
			char allow[64] = "";
			for (size_t i = 0; i < N_ROUTES; i++) {
				char param[sizeof(c->param)];
				if (path_match(routes[i].pattern, path, param, sizeof(param))) {
					if (*allow)
						strcat(allow, ", ");
					strcat(allow, routes[i].method);
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

size_t ws_api_pending(const ws_api *a)
{
	return a->pending;
}

void ws_api_free(ws_api *a)
{
	free(a);
}
