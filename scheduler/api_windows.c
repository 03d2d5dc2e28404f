/*
 * api_windows.c - a tenant's maintenance windows: GET
 * /v1/tenants/{slug}/windows (JSON) and /v1/tenants/{slug}/windows.ics
 * (RFC 5545, for a calendar subscription).
 *
 * Both answers come from one document of ws_tenant_windows()
 * (migrations/0011_windows.sql, which says which rollouts are listed and
 * when a window counts as cancelled); the feed is rendered from it by
 * ics.c, so the two never disagree.  A tenant token scoped to other tenants
 * gets the same 404 as for a tenant that does not exist, before and inside
 * the query.
 */
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "api_internal.h"
#include "wavesched/ics.h"
#include "wavesched/log.h"

/* The SQL text[] of a principal_tenants_param() parameter $n. */
#define TENANTS_ARG(n) \
	"CASE WHEN $" #n "::jsonb IS NULL THEN NULL ELSE ARRAY(SELECT jsonb_array_elements_text($" #n "::jsonb)) END"

static void windows_json_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	api_call *c = arg;
	if (err) {
		reply_sql_error(c, err);
		return;
	}
	if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
		reply_error(c, 404, "not_found", "no such tenant", NULL);
		return;
	}
	ws_http_respond(c->req, 200, "application/json", PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
	call_finish(c);
}

static void windows_ics_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	api_call *c = arg;
	if (err) {
		reply_sql_error(c, err);
		return;
	}
	if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
		reply_error(c, 404, "not_found", "no such tenant", NULL);
		return;
	}
	json_error_t je;
	json_t *doc = json_loadb(PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), 0, &je);
	char why[300] = "";
	size_t len = 0;
	char *text = NULL;
	if (!doc)
		snprintf(why, sizeof(why), "windows document:%d:%d: %s", je.line, je.column, je.text);
	else
		text = ics_windows_render(doc, &len, why, sizeof(why));
	json_decref(doc);
	if (!text) {
		/* Our own document did not fit the feed: a defect, logged with
		 * what was wrong; the client learns only that it failed. */
		ws_error("api", "request=%llu tenant=%s cannot render the calendar: %s",
			 (unsigned long long)ws_http_req_id(c->req), c->param, why);
		reply_error(c, 500, "internal", "cannot render the calendar", NULL);
		return;
	}
	char disp[sizeof(c->param) + 40];
	snprintf(disp, sizeof(disp), "inline; filename=\"%s-windows.ics\"", c->param);
	ws_http_add_header(c->req, "Content-Disposition", disp);
	ws_http_respond(c->req, 200, "text/calendar; charset=utf-8", text, len);
	free(text);
	call_finish(c);
}

static void windows_query(api_call *c, ws_pg_cb done)
{
	/* A tenant token learns nothing about tenants it is not scoped to,
	 * not even whether they exist. */
	if (strlen(c->param) > SLUG_MAX || !ws_principal_sees_tenant(&c->who, c->param)) {
		reply_error(c, 404, "not_found", "no such tenant", NULL);
		return;
	}
	char *tenants = principal_tenants_param(c);
	const char *params[] = { c->param, tenants };
	api_query(c->api->d.pool, "SELECT ws_tenant_windows($1, " TENANTS_ARG(2) ")::text", 2, params, done, c);
	free(tenants);
}

void h_tenant_windows(api_call *c)
{
	windows_query(c, windows_json_done);
}

void h_tenant_windows_ics(api_call *c)
{
	windows_query(c, windows_ics_done);
}
