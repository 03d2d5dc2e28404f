/*
 * api_rollouts.c - rollouts as people see and drive them: creating one from
 * its plan (the end of POST /v1/rollouts), reading them, the commands
 * start/pause/resume/abort and the approve/reject decisions on waves.
 *
 * The engine (scheduler/engine*.c) advances rollouts; this file only writes
 * what a person decided, each through one SQL function that checks the
 * state it expects, audits and wakes the engine (NOTIFY ws_engine).  Their
 * errors reach the client through reply_sql_error, the one place where our
 * SQLSTATEs become HTTP statuses.
 *
 * Rollout documents are built by the database (ws_rollout_doc,
 * ws_rollout_list) and passed through as text: one query per request, and a
 * tenant token's filter is applied where the rows are.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "api_internal.h"
#include "wavesched/log.h"
#include "wavesched/window.h"

#define REASON_MAX 1000
#define COMMENT_MAX 4000

/* ---- shared helpers ------------------------------------------------------ */

void field_error(json_t *details, const char *field, const char *fmt, ...)
{
	char msg[400];
	int n = snprintf(msg, sizeof(msg), "%s: ", field);
	va_list ap;
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(msg))
		vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	va_end(ap);
	json_array_append_new(details, json_pack("{s:s, s:s}", "field", field, "message", msg));
}

void body_unknown_fields(json_t *in, const char *const *allowed, json_t *details)
{
	const char *key;
	json_t *val;
	json_object_foreach(in, key, val) {
		size_t i;
		for (i = 0; allowed[i] && strcmp(allowed[i], key) != 0; i++)
			;
		if (!allowed[i]) {
			char list[256] = "";
			size_t used = 0;
			for (size_t k = 0; allowed[k]; k++) {
				int w = snprintf(list + used, sizeof(list) - used, "%s%s", k ? ", " : "", allowed[k]);
				if (w < 0 || (size_t)w >= sizeof(list) - used)
					break;
				used += (size_t)w;
			}
			field_error(details, key, "unknown field (expected one of: %s)", list);
		}
	}
}

void reply_sql_error(api_call *c, const ws_pg_err *err)
{
	int status = 0;
	const char *code = NULL;
	const char *st = err->sqlstate ? err->sqlstate : "";
	if (!strcmp(st, "WSE02") || !strcmp(st, "WSE03") || !strcmp(st, "WSE07") || !strcmp(st, "23505")) {
		status = 409;
		code = "conflict";
	} else if (!strcmp(st, "WSE04")) {
		status = 422;
		code = "validation_failed";
	} else if (!strcmp(st, "WSE05")) {
		status = 404;
		code = "not_found";
	} else if (!strcmp(st, "WSE06")) {
		status = 403;
		code = "forbidden";
	}
	if (!status) {
		reply_db_error(c, err);
		return;
	}
	json_t *details = NULL;
	if (err->detail && err->detail[0] == '[') {
		json_error_t je;
		details = json_loads(err->detail, 0, &je);
		if (!json_is_array(details)) {
			json_decref(details);
			details = NULL;
		}
	}
	ws_info("api", "request=%llu route=%s refused (%s): %s", (unsigned long long)ws_http_req_id(c->req),
		ws_http_req_route(c->req), st, err->message);
	reply_error(c, status, code, err->message, details);
}

char *principal_tenants_param(const api_call *c)
{
	if (c->who.role != WS_ROLE_TENANT)
		return NULL;
	json_t *arr = json_array();
	for (size_t i = 0; i < c->who.n_tenants; i++)
		json_array_append_new(arr, json_string(c->who.tenants[i]));
	char *s = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	/* A tenant token whose list cannot be written must see nothing, not
	 * everything. */
	return s ? s : strdup("[]");
}

/* The SQL text[] of a principal_tenants_param() parameter $n. */
#define TENANTS_ARG(n) \
	"CASE WHEN $" #n "::jsonb IS NULL THEN NULL ELSE ARRAY(SELECT jsonb_array_elements_text($" #n "::jsonb)) END"

/* The {id} of the path: a positive integer, or false. */
bool rollout_id_param(const api_call *c, char out[24])
{
	size_t n = strlen(c->param);
	if (n == 0 || n > 18)
		return false;
	for (size_t i = 0; i < n; i++)
		if (c->param[i] < '0' || c->param[i] > '9')
			return false;
	if (strspn(c->param, "0") == n)
		return false;
	memcpy(out, c->param, n + 1);
	return true;
}

json_t *rollout_wave_settings_json(const ws_wave_settings *s)
{
	json_t *roles = json_array();
	for (size_t i = 0; i < s->approval.n_roles; i++)
		json_array_append_new(roles, json_string(s->approval.roles[i]));
	const ws_gate_health *h = &s->health;
	json_t *o = json_pack("{s:I, s:i, s:{s:b, s:I}, s:{s:b, s:I, s:I, s:i, s:i, s:i, s:f}, s:{s:i, s:o},"
			 " s:{s:i, s:s}}",
			 "soak_s", (json_int_t)s->soak_s,
			 "max_parallel_per_cluster", s->max_parallel_per_cluster,
			 "backup", "enabled", s->backup.enabled, "max_age_s", (json_int_t)s->backup.max_age_s,
			 "health", "enabled", h->enabled, "interval_s", (json_int_t)h->interval_s,
			 "timeout_s", (json_int_t)h->timeout_s, "consecutive_successes", h->consecutive_successes,
			 "max_consecutive_failures", h->max_consecutive_failures,
			 "max_latency_ms", h->max_latency_ms, "latency_regression", h->latency_regression,
			 "approval", "min", s->approval.min, "roles", roles,
			 "failure", "max_failed", s->max_failed, "action", ws_failure_action_name(s->failure_action));
	/* Only the http source is written, so settings of catalog gates stay as
	 * they always were (the engine reads a missing source as the catalog). */
	if (o && s->backup.source == WS_BACKUP_HTTP && s->backup.url) {
		json_t *b = json_object_get(o, "backup");
		json_object_set_new(b, "source", json_string(ws_backup_source_name(s->backup.source)));
		json_object_set_new(b, "url", json_string(s->backup.url));
	}
	if (o && s->deploy_estimate_s > 0)
		json_object_set_new(o, "deploy_estimate_s", json_integer((json_int_t)s->deploy_estimate_s));
	/* Likewise the gates of issue 7 are written only when the policy asks
	 * for them. */
	if (o && s->backup.restore_max_age_s > 0)
		json_object_set_new(json_object_get(o, "backup"), "restore_max_age_s",
				    json_integer((json_int_t)s->backup.restore_max_age_s));
	if (o && s->n_attestations) {
		json_t *a = json_array();
		for (size_t i = 0; i < s->n_attestations; i++)
			json_array_append_new(a, json_string(s->attestations[i]));
		json_object_set_new(o, "attestations", a);
	}
	if (o && s->n_metrics) {
		json_t *a = json_array();
		for (size_t i = 0; i < s->n_metrics; i++) {
			const ws_gate_metric *m = &s->metrics[i];
			json_t *jm = json_pack("{s:s, s:s, s:I}", "name", m->name, "query", m->query,
					       "for_s", (json_int_t)m->for_s);
			if (m->has_min)
				json_object_set_new(jm, "min", json_real(m->min));
			if (m->has_max)
				json_object_set_new(jm, "max", json_real(m->max));
			json_array_append_new(a, jm);
		}
		json_object_set_new(o, "metrics", a);
	}
	return o;
}

/* ---- POST /v1/rollouts (not a dry run) ------------------------------------ */

typedef struct commit_ctx {
	api_call *c;
	json_t *plan;      /* a reference */
	char *release, *policy, *policy_sha;
	int policy_version;
} commit_ctx;

static void commit_free(commit_ctx *k)
{
	json_decref(k->plan);
	free(k->release);
	free(k->policy);
	free(k->policy_sha);
	free(k);
}

static void commit_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	commit_ctx *k = arg;
	api_call *c = k->c;
	if (err) {
		commit_free(k);
		reply_sql_error(c, err);
		return;
	}
	json_error_t je;
	json_t *out = json_loads(PQgetvalue(res, 0, 0), 0, &je);
	if (!out) {
		commit_free(k);
		reply_error(c, 500, "internal", "the database answered with unreadable JSON", NULL);
		return;
	}
	json_object_set_new(out, "release", json_string(k->release));
	json_object_set_new(out, "policy", json_string(k->policy));
	json_object_set_new(out, "policy_version", json_integer(k->policy_version));
	json_object_set_new(out, "policy_sha256", json_string(k->policy_sha));
	json_object_set_new(out, "created_by", json_string(c->actor));
	json_t *un = json_object_get(k->plan, "unassigned");
	json_object_set_new(out, "unassigned", un ? json_incref(un) : json_array());
	json_object_set(out, "plan", k->plan);
	long long id = (long long)json_integer_value(json_object_get(out, "id"));
	char loc[64];
	snprintf(loc, sizeof(loc), "/v1/rollouts/%lld", id);
	ws_http_add_header(c->req, "Location", loc);
	ws_info("rollout", "rollout=%lld created by %s: release %s, policy %s v%d", id, c->actor, k->release,
		k->policy, k->policy_version);
	commit_free(k);
	reply_json(c, 201, out);
}

void rollout_commit(api_call *c, const rollout_new *n)
{
	commit_ctx *k = calloc(1, sizeof(*k));
	char *settings = json_dumps(n->settings, JSON_COMPACT);
	if (!k || !settings || !(k->release = strdup(n->release)) || !(k->policy = strdup(n->policy_name)) ||
	    !(k->policy_sha = strdup(n->policy_sha))) {
		if (k)
			commit_free(k);
		free(settings);
		reply_error(c, 503, "unavailable", "out of memory", NULL);
		return;
	}
	k->c = c;
	k->plan = json_incref(n->plan);
	k->policy_version = n->policy_version;
	char policy_id[24], generation[24], start[40];
	snprintf(policy_id, sizeof(policy_id), "%lld", n->policy_id);
	snprintf(generation, sizeof(generation), "%lld", (long long)n->generation);
	ws_time_format(n->start, 0, true, start, sizeof(start));
	char window[24];
	snprintf(window, sizeof(window), "%llu",
		 (unsigned long long)(c->api->d.config ? c->api->d.config->review_window_ms / 1000 : 86400));
	const char *params[] = { n->release, ws_release_kind_name(n->kind), policy_id, n->policy_sha,
				 n->plan_text, settings, generation, c->actor, start,
				 n->bg_justification, n->bg_change_ref, window };
	if (n->bg_justification)
		api_query(c->api->d.pool,
			  "SELECT ws_rollout_create_break_glass($1, $2, $3::bigint, $4, $5, $6::jsonb, $7::bigint, $8,"
			  " $9::timestamptz, $10, $11, $12::bigint)::text",
			  12, params, commit_done, k);
	else
		api_query(c->api->d.pool,
			  "SELECT ws_rollout_create($1, $2, $3::bigint, $4, $5, $6::jsonb, $7::bigint, $8,"
			  " $9::timestamptz)::text",
			  9, params, commit_done, k);
	free(settings);
}

/* ---- reading -------------------------------------------------------------- */

void reply_doc_row(api_call *c, const PGresult *res, const ws_pg_err *err, int status, const char *missing)
{
	if (err) {
		reply_sql_error(c, err);
		return;
	}
	if (PQntuples(res) == 0 || PQgetisnull(res, 0, 0)) {
		reply_error(c, 404, "not_found", missing, NULL);
		return;
	}
	ws_http_respond(c->req, status, "application/json", PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
	call_finish(c);
}

static void doc_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	reply_doc_row(arg, res, err, 200, "no such rollout");
}

void h_rollout_list(api_call *c)
{
	char *tenants = principal_tenants_param(c);
	const char *params[] = { tenants };
	api_query(c->api->d.pool, "SELECT ws_rollout_list(" TENANTS_ARG(1) ")::text", 1, params, doc_done, c);
	free(tenants);
}

void h_rollout_get(api_call *c)
{
	char id[24];
	if (!rollout_id_param(c, id)) {
		reply_error(c, 404, "not_found", "no such rollout", NULL);
		return;
	}
	char *tenants = principal_tenants_param(c);
	const char *params[] = { id, tenants };
	api_query(c->api->d.pool, "SELECT ws_rollout_doc($1::bigint, " TENANTS_ARG(2) ")::text", 2, params,
		  doc_done, c);
	free(tenants);
}

static void plan_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	api_call *c = arg;
	if (err) {
		reply_db_error(c, err);
		return;
	}
	if (PQntuples(res) == 0) {
		reply_error(c, 404, "not_found", "no such rollout or plan version", NULL);
		return;
	}
	ws_http_add_header(c->req, "X-Plan-Version", PQgetvalue(res, 0, 1));
	ws_http_add_header(c->req, "X-Plan-Sha256", PQgetvalue(res, 0, 2));
	ws_http_respond(c->req, 200, "application/json", PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
	call_finish(c);
}

/* The frozen plan text, byte for byte as it was planned (the current
 * version, or ?version=N). */
void h_rollout_plan(api_call *c)
{
	char id[24];
	if (!rollout_id_param(c, id)) {
		reply_error(c, 404, "not_found", "no such rollout", NULL);
		return;
	}
	const char *v = ws_http_req_query_param(c->req, "version");
	char *end = NULL;
	long ver = v ? strtol(v, &end, 10) : 0;
	if (v && (*v == '\0' || *end || ver < 1 || ver > 1000000)) {
		reply_error(c, 400, "bad_request", "version must be a positive integer", NULL);
		return;
	}
	char verbuf[16] = "";
	if (v)
		snprintf(verbuf, sizeof(verbuf), "%ld", ver);
	const char *params[] = { id, v ? verbuf : NULL };
	api_query(c->api->d.pool,
		  "SELECT p.plan, p.version, p.sha256 FROM rollout_plans p JOIN rollouts r ON r.id = p.rollout_id"
		  " WHERE p.rollout_id = $1::bigint AND p.version = COALESCE($2::int, r.plan_version)",
		  2, params, plan_done, c);
}

/* ---- commands and decisions ------------------------------------------------ */

static void action_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	api_call *c = arg;
	if (err) {
		reply_sql_error(c, err);
		return;
	}
	ws_info("rollout", "%s %s by %s: %s", ws_http_req_method(c->req), ws_http_req_path(c->req), c->actor,
		PQgetvalue(res, 0, 0));
	ws_http_respond(c->req, 200, "application/json", PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
	call_finish(c);
}

/* The optional JSON body of an action: an empty body is {}.  NULL after
 * answering 400. */
static json_t *action_body(api_call *c)
{
	size_t len;
	ws_http_req_body(c->req, &len);
	if (len == 0)
		return json_object();
	return body_json_object(c);
}

static void rollout_command(api_call *c, const char *action)
{
	static const char *const fields[] = { "reason", NULL };
	char id[24];
	if (!rollout_id_param(c, id)) {
		reply_error(c, 404, "not_found", "no such rollout", NULL);
		return;
	}
	json_t *in = action_body(c);
	if (!in)
		return;
	json_t *details = json_array();
	body_unknown_fields(in, fields, details);
	json_t *jr = json_object_get(in, "reason");
	const char *reason = jr && !json_is_null(jr) ? json_string_value(jr) : NULL;
	if (jr && !json_is_null(jr) && (!reason || strlen(reason) > REASON_MAX))
		field_error(details, "reason", "must be a string of at most %d bytes", REASON_MAX);
	if (json_array_size(details)) {
		json_decref(in);
		reply_error(c, 422, "validation_failed", "the request is invalid", details);
		return;
	}
	json_decref(details);
	const char *params[] = { id, action, c->actor, reason && *reason ? reason : NULL };
	api_query(c->api->d.pool, "SELECT ws_rollout_command($1::bigint, $2, $3, $4)::text", 4, params,
		  action_done, c);
	json_decref(in);
}

void h_rollout_start(api_call *c)
{
	rollout_command(c, "start");
}

void h_rollout_pause(api_call *c)
{
	rollout_command(c, "pause");
}

void h_rollout_resume(api_call *c)
{
	rollout_command(c, "resume");
}

void h_rollout_abort(api_call *c)
{
	rollout_command(c, "abort");
}

static void wave_decide(api_call *c, const char *decision)
{
	static const char *const fields[] = { "wave", "comment", NULL };
	/* Policies may name only admin, platform, security and approver as
	 * approval roles (policy.md), so these two can never decide. */
	if (c->who.role == WS_ROLE_TENANT || c->who.role == WS_ROLE_VIEWER) {
		char msg[96];
		snprintf(msg, sizeof(msg), "role %s may not approve or reject waves", ws_role_name(c->who.role));
		reply_error(c, 403, "forbidden", msg, NULL);
		return;
	}
	char id[24];
	if (!rollout_id_param(c, id)) {
		reply_error(c, 404, "not_found", "no such rollout", NULL);
		return;
	}
	json_t *in = body_json_object(c);
	if (!in)
		return;
	json_t *details = json_array();
	body_unknown_fields(in, fields, details);
	json_t *jw = json_object_get(in, "wave");
	if (!json_is_integer(jw) || json_integer_value(jw) < 1 || json_integer_value(jw) > 1000000)
		field_error(details, "wave", "must be the wave's index (an integer from 1)");
	json_t *jc = json_object_get(in, "comment");
	const char *comment = jc && !json_is_null(jc) ? json_string_value(jc) : "";
	if (!comment || strlen(comment) > COMMENT_MAX)
		field_error(details, "comment", "must be a string of at most %d bytes", COMMENT_MAX);
	if (json_array_size(details)) {
		json_decref(in);
		reply_error(c, 422, "validation_failed", "the decision is invalid", details);
		return;
	}
	json_decref(details);
	char wave[24];
	snprintf(wave, sizeof(wave), "%lld", (long long)json_integer_value(jw));
	const char *params[] = { id, wave, c->actor, ws_role_name(c->who.role), decision, comment };
	api_query(c->api->d.pool, "SELECT ws_wave_decide_as($1::bigint, $2::int, $3, $4, $5, $6)::text", 6,
		  params, action_done, c);
	json_decref(in);
}

void h_rollout_approve(api_call *c)
{
	wave_decide(c, "approve");
}

void h_rollout_reject(api_call *c)
{
	wave_decide(c, "reject");
}
