/*
 * api_fleet.c - PUT/GET /v1/fleet, GET /v1/tenants[/{slug}].
 */
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "api_internal.h"
#include "wavesched/executor.h"
#include "wavesched/log.h"
#include "wavesched/window.h"

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
	json_t *versions;    /* {slug: version} deployed since the snapshot's import */
} render_job;

/* Versions the engine recorded since the snapshot's fleet import
 * (migrations/0019_versions.sql) take the place of the document's: the
 * views show what runs now without re-reading the whole fleet after each
 * deploy. */
static void overlay_version(json_t *tenant, const json_t *versions)
{
	const char *slug = json_string_value(json_object_get(tenant, "slug"));
	json_t *v = slug ? json_object_get(versions, slug) : NULL;
	if (json_is_string(v))
		json_object_set(tenant, "version", v);
}

static json_t *fleet_doc_now(const ws_fleet *f, const json_t *versions)
{
	json_t *doc = fleet_to_json(f);
	size_t i;
	json_t *t;
	json_array_foreach(json_object_get(doc, "tenants"), i, t)
		overlay_version(t, versions);
	return doc;
}

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
		j->body = dump_json(fleet_doc_now(f, j->versions), &j->len);
		break;
	case RENDER_FLEET_YAML: {
		json_t *doc = fleet_doc_now(f, j->versions);
		j->body = doc ? ws_json_to_yaml(doc, &j->len) : NULL;
		json_decref(doc);
		break;
	}
	case RENDER_TENANTS: {
		json_t *arr = json_array();
		for (size_t i = 0; i < f->n_tenants; i++)
			if (ws_principal_sees_tenant(&j->c->who, f->tenants[i].slug)) {
				json_t *o = tenant_view(f, &f->tenants[i], j->now);
				overlay_version(o, j->versions);
				json_array_append_new(arr, o);
			}
		j->body = dump_json(json_pack("{s:o}", "tenants", arr), &j->len);
		break;
	}
	case RENDER_TENANT: {
		const ws_tenant *t = fleet_tenant(f, j->c->param);
		if (t) {
			json_t *o = tenant_view(f, t, j->now);
			overlay_version(o, j->versions);
			j->body = dump_json(o, &j->len);
		} else
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
	json_decref(j->versions);
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

static void versions_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	render_job *j = arg;
	if (err) {
		api_call *c = j->c;
		ws_fleet_snapshot_release(j->snap);
		free(j);
		reply_db_error(c, err);
		return;
	}
	json_error_t je;
	j->versions = PQntuples(res) == 1 ? json_loads(PQgetvalue(res, 0, 0), 0, &je) : NULL;
	if (!j->versions)
		j->versions = json_object();
	j->work.data = j;
	int rc = uv_queue_work(j->c->api->d.loop, &j->work, render_work_cb, render_after_cb);
	if (rc) {
		api_call *c = j->c;
		ws_fleet_snapshot_release(j->snap);
		json_decref(j->versions);
		free(j);
		reply_error(c, 503, "unavailable", "the service is overloaded; retry later", NULL);
	}
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
	char gen[24];
	snprintf(gen, sizeof(gen), "%lld", (long long)snap->generation);
	const char *params[] = { gen };
	api_query(j->c->api->d.pool,
		  "SELECT COALESCE(json_object_agg(t.slug, t.version), '{}')::text"
		  "  FROM tenants t JOIN fleet_imports f ON f.id = $1::bigint"
		  " WHERE t.removed_at IS NULL AND t.updated_at > f.imported_at AND t.version IS NOT NULL",
		  1, params, versions_done, j);
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
	j->now = now_utc(c->api);
	ws_fleet_store_snapshot(c->api->d.fleet, render_snapshot_cb, j);
}

void h_fleet_get(api_call *c)
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

void h_tenants(api_call *c)
{
	render_start(c, RENDER_TENANTS);
}

void h_tenant(api_call *c)
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
	ws_fleet *f = fleet_parse("body", p->body, p->len, &p->diags);
	if (!f) {
		p->status = upload_failure_status(p->body, p->len);
		return;
	}
	/* The executors' own check of their settings (templates and their
	 * placeholders): a typo is refused at import, not when a tenant's
	 * deploy starts.  It touches neither the loop nor the network. */
	bool deploy_ok = true;
	for (size_t i = 0; i < f->n_clusters; i++) {
		const ws_cluster *cl = &f->clusters[i];
		if (!cl->deploy)
			continue;
		ws_executor *e = ws_executor_new(NULL, NULL, cl->name, cl->deploy, &p->diags);
		if (e)
			ws_executor_free(e);
		else
			deploy_ok = false;
	}
	if (!deploy_ok) {
		fleet_free(f);
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

void h_fleet_put(api_call *c)
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

