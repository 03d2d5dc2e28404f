/*
 * api_replan.c - POST /v1/rollouts/{id}/replan and GET /v1/rollouts/{id}/plans.
 *
 * A rollout's plan is frozen (engine.md): re-planning makes plan version
 * N+1 with a diff against N, never an edit.  The request names a reason
 * (kept with the version and in the audit log) and may move the start or
 * take a newer version of the same policy.  The plan is made exactly as at
 * creation (the same job of api_policies.c against a fleet snapshot), and
 * ws_rollout_replan (migrations/0013_replan.sql) stores it, rebuilds the
 * rows, withdraws the approvals of waves that changed and answers the diff.
 * Only a `planned` rollout is re-planned; the function says so otherwise.
 */
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "api_internal.h"
#include "wavesched/log.h"
#include "wavesched/window.h"

#define REASON_MAX 1000

typedef struct replan_call {
	api_call *c;
	int64_t start;            /* asked, or INT64_MIN: keep the later of the old start and now */
	bool start_given;
	char *reason;
} replan_call;

static void replan_call_free(replan_call *r)
{
	free(r->reason);
	free(r);
}

static void replan_read_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	replan_call *r = arg;
	api_call *c = r->c;
	if (err) {
		replan_call_free(r);
		reply_db_error(c, err);
		return;
	}
	if (PQntuples(res) == 0) {
		replan_call_free(r);
		reply_error(c, 404, "not_found", "no such rollout", NULL);
		return;
	}
	/* 0 state, 1 plan_version, 2 start, 3 release, 4 kind, 5 policy name,
	 * 6 policy id, 7 policy version, 8 sha256, 9 body (NULL: no such version) */
	const char *state = PQgetvalue(res, 0, 0);
	if (strcmp(state, "planned") != 0) {
		char msg[400];
		snprintf(msg, sizeof(msg), "state conflict: rollout %s is %s; only a planned rollout is re-planned",
			 c->param, state);
		replan_call_free(r);
		reply_error(c, 409, "conflict", msg, NULL);
		return;
	}
	if (PQgetisnull(res, 0, 9)) {
		json_t *details = json_array();
		field_error(details, "policy_version", "policy %s has no such version", PQgetvalue(res, 0, 5));
		replan_call_free(r);
		reply_error(c, 422, "validation_failed", "the re-plan request is invalid", details);
		return;
	}
	ws_release_kind kind;
	if (ws_release_kind_parse(PQgetvalue(res, 0, 4), &kind)) {
		replan_call_free(r);
		reply_error(c, 500, "internal", "the release has an unknown kind", NULL);
		return;
	}
	if (kind == WS_RELEASE_URGENT && c->who.role != WS_ROLE_SECURITY && c->who.role != WS_ROLE_ADMIN) {
		replan_call_free(r);
		reply_error(c, 403, "forbidden", "a rollout of an urgent release needs role security", NULL);
		return;
	}
	int64_t start = r->start;
	if (!r->start_given) {
		int64_t old = 0;
		start = now_utc(c->api);
		if (ws_time_parse(PQgetvalue(res, 0, 2), &old) == 0 && old > start)
			start = old;
	}
	replan_request q = {
		.rollout = atoll(c->param), .plan_version = atoi(PQgetvalue(res, 0, 1)),
		.release = PQgetvalue(res, 0, 3), .kind = kind, .policy_id = atoll(PQgetvalue(res, 0, 6)),
		.policy_version = atoi(PQgetvalue(res, 0, 7)), .policy_sha = PQgetvalue(res, 0, 8),
		.policy_text = PQgetvalue(res, 0, 9), .policy_len = (size_t)PQgetlength(res, 0, 9),
		.start = start, .reason = r->reason,
	};
	rollout_replan_plan(c, &q);
	replan_call_free(r);
}

void h_rollout_replan(api_call *c)
{
	char id[24];
	if (!rollout_id_param(c, id)) {
		reply_error(c, 404, "not_found", "no such rollout", NULL);
		return;
	}
	json_t *in = body_json_object(c);
	if (!in)
		return;
	static const char *const allowed[] = { "reason", "start", "policy_version", NULL };
	json_t *details = json_array();
	body_unknown_fields(in, allowed, details);
	json_t *reason = json_object_get(in, "reason");
	const char *rs = json_string_value(reason);
	if (!rs || !*rs || strlen(rs) > REASON_MAX)
		field_error(details, "reason", "reason must be a non-empty string of at most %d bytes "
			    "(it is kept with the plan version)", REASON_MAX);
	json_t *st = json_object_get(in, "start");
	int64_t start = 0;
	if (st && (!json_is_string(st) || ws_time_parse(json_string_value(st), &start)))
		field_error(details, "start", "start must be an RFC 3339 time such as 2026-12-01T00:00:00Z");
	json_t *pv = json_object_get(in, "policy_version");
	if (pv && (!json_is_integer(pv) || json_integer_value(pv) < 1 || json_integer_value(pv) > 1000000))
		field_error(details, "policy_version", "policy_version must be a positive integer");
	if (json_array_size(details)) {
		json_decref(in);
		reply_error(c, 422, "validation_failed", "the re-plan request is invalid", details);
		return;
	}
	json_decref(details);
	replan_call *r = calloc(1, sizeof(*r));
	if (!r || !(r->reason = strdup(rs))) {
		free(r);
		json_decref(in);
		reply_error(c, 503, "unavailable", "out of memory", NULL);
		return;
	}
	r->c = c;
	r->start = start;
	r->start_given = st != NULL;
	char ver[24] = "";
	if (pv)
		snprintf(ver, sizeof(ver), "%lld", (long long)json_integer_value(pv));
	json_decref(in);
	/* The policy: the rollout's own version, or the version asked of the
	 * same policy (a corrected policy stored after the rollout). */
	const char *params[] = { id, pv ? ver : NULL };
	api_query(c->api->d.pool,
		  "SELECT r.state, r.plan_version, ws__rfc3339(r.start_at), rel.version, rel.kind, cur.name,"
		  "       p.id, p.version, p.sha256, p.body"
		  "  FROM rollouts r JOIN releases rel ON rel.id = r.release_id"
		  "  JOIN policies cur ON cur.id = r.policy_id"
		  "  LEFT JOIN policies p ON p.name = cur.name AND p.version = COALESCE($2::int, cur.version)"
		  " WHERE r.id = $1::bigint",
		  2, params, replan_read_done, r);
}

/* ---- the commit ------------------------------------------------------------ */

static void replan_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	api_call *c = arg;
	if (err) {
		reply_sql_error(c, err);
		return;
	}
	json_error_t je;
	json_t *out = json_loads(PQgetvalue(res, 0, 0), 0, &je);
	if (!out) {
		reply_error(c, 500, "internal", "the database answered with unreadable JSON", NULL);
		return;
	}
	json_t *diff = json_object_get(out, "diff");
	ws_info("rollout", "rollout=%s re-planned by %s: plan version %lld, %zu added, %zu removed, %zu moved",
		c->param, c->actor, (long long)json_integer_value(json_object_get(out, "plan_version")),
		json_array_size(json_object_get(diff, "added")), json_array_size(json_object_get(diff, "removed")),
		json_array_size(json_object_get(diff, "moved")));
	reply_json(c, 200, out);
}

void rollout_replan_commit(api_call *c, const rollout_new *n)
{
	char *settings = json_dumps(n->settings, JSON_COMPACT);
	if (!settings) {
		reply_error(c, 503, "unavailable", "out of memory", NULL);
		return;
	}
	char id[24], version[16], policy_id[24], generation[24], start[40];
	snprintf(id, sizeof(id), "%lld", n->replan_id);
	snprintf(version, sizeof(version), "%d", n->replan_version);
	snprintf(policy_id, sizeof(policy_id), "%lld", n->policy_id);
	snprintf(generation, sizeof(generation), "%lld", (long long)n->generation);
	ws_time_format(n->start, 0, true, start, sizeof(start));
	const char *params[] = { id, version, policy_id, n->policy_sha, n->plan_text, settings, generation,
				 c->actor, start, n->reason };
	api_query(c->api->d.pool,
		  "SELECT ws_rollout_replan($1::bigint, $2::int, $3::bigint, $4, $5, $6::jsonb, $7::bigint, $8,"
		  " $9::timestamptz, $10)::text",
		  10, params, replan_done, c);
	free(settings);
}

/* ---- GET /v1/rollouts/{id}/plans -------------------------------------------- */

static void plans_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	reply_doc_row(arg, res, err, 200, "no such rollout");
}

void h_rollout_plans(api_call *c)
{
	char id[24];
	if (!rollout_id_param(c, id)) {
		reply_error(c, 404, "not_found", "no such rollout", NULL);
		return;
	}
	const char *params[] = { id };
	api_query(c->api->d.pool, "SELECT ws_rollout_plans($1::bigint)::text", 1, params, plans_done, c);
}
