/*
 * api_evidence.c - GET /v1/rollouts/{id}/evidence: the evidence bundle of
 * one rollout (migrations/0010_evidence.sql builds it in one snapshot).
 *
 * The text is passed on as the database printed it -- the audit entries'
 * details must stay byte for byte what was hashed -- except that the few
 * characters YAML reads differently from JSON are escaped
 * (ws_audit_json_yaml_safe), so that `wavectl evidence verify` can read
 * the file through ydoc, which keeps numbers as written.
 *
 * Roles: like the audit log, everyone who reads the whole fleet; a tenant
 * token gets 403 from the route (a bundle names every tenant of the
 * rollout).
 */
#include <stdlib.h>
#include <string.h>
#include "api_internal.h"
#include "wavesched/audit_chain.h"

static void evidence_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	api_call *c = arg;
	if (err) {
		reply_sql_error(c, err);
		return;
	}
	if (PQntuples(res) == 0 || PQgetisnull(res, 0, 0)) {
		reply_error(c, 404, "not_found", "no such rollout", NULL);
		return;
	}
	size_t len;
	char *text = ws_audit_json_yaml_safe(PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), &len);
	if (!text) {
		reply_error(c, 500, "internal", "out of memory while writing the bundle", NULL);
		return;
	}
	char disp[96];
	snprintf(disp, sizeof(disp), "attachment; filename=\"rollout-%.18s-evidence.json\"", c->param);
	ws_http_add_header(c->req, "Content-Disposition", disp);
	ws_http_respond(c->req, 200, "application/json", text, len);
	free(text);
	call_finish(c);
}

void h_rollout_evidence(api_call *c)
{
	size_t n = strlen(c->param);
	if (n == 0 || n > 18 || strspn(c->param, "0123456789") != n || strspn(c->param, "0") == n) {
		reply_error(c, 404, "not_found", "no such rollout", NULL);
		return;
	}
	const char *params[] = { c->param };
	api_query(c->api->d.pool, "SELECT ws_rollout_evidence($1::bigint)::text", 1, params, evidence_done, c);
}
