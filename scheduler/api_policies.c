/*
 * api_policies.c - POST/GET /v1/policies, POST /v1/policies/validate and the
 * planning side of POST /v1/rollouts: the dry run answers the plan; a real
 * creation hands the same plan (same job, same bytes) to rollout_commit()
 * in api_rollouts.c.
 *
 * Parsing a policy, checking it against the fleet and planning are CPU work
 * proportional to the fleet: they run on the thread pool with a retained
 * fleet snapshot, like the fleet views (api_fleet.c).  The plan is the same
 * pure function `wavectl plan` runs offline, so for the same fleet, policy,
 * release and start both give the same bytes.
 */
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "api_internal.h"
#include "wavesched/crypto.h"
#include "wavesched/log.h"
#include "wavesched/planner.h"
#include "wavesched/window.h"

typedef enum { JOB_VALIDATE, JOB_STORE, JOB_PLAN } job_kind;

/* One policy job: a policy text (uploaded, or read from the database for a
 * plan), the fleet snapshot, and what the worker produced. */
typedef struct policy_job {
	uv_work_t work;
	api_call *c;
	job_kind kind;
	ws_fleet_snapshot *snap;
	char *text;               /* the policy text, owned */
	size_t len;
	/* plan input */
	char *release;
	ws_release_kind rkind;
	int64_t start;
	int policy_version;
	char policy_sha[65];
	long long policy_id;
	bool create;              /* not a dry run: keep the plan and wave settings */
	bool kind_given;
	char *bg_justification;   /* break_glass of the request (create) */
	char *bg_change_ref;
	bool policy_break_glass;  /* the policy overrides soft blackouts */
	long long replan_id;      /* a re-plan of this rollout (api_replan.c) */
	int replan_version;
	char *reason;
	/* results */
	int status;               /* 0 = fine; 400/422 with diags */
	ws_diags diags;
	json_t *warnings;         /* fleet check problems (not blocking storage) */
	char *name, *description, *summary;
	char sha[65];
	char *plan_text;          /* JOB_PLAN: the plan JSON */
	json_t *plan_doc;         /* create: the same plan, parsed */
	json_t *settings;         /* create: waves.settings, one per plan wave */
} policy_job;

static void job_free(policy_job *j)
{
	if (j->snap)
		ws_fleet_snapshot_release(j->snap);
	ws_diags_free(&j->diags);
	json_decref(j->warnings);
	free(j->text);
	free(j->release);
	free(j->reason);
	free(j->bg_justification);
	free(j->bg_change_ref);
	free(j->name);
	free(j->description);
	free(j->summary);
	free(j->plan_text);
	json_decref(j->plan_doc);
	json_decref(j->settings);
	free(j);
}

/* On the thread pool: everything here reads only the job and the retained
 * snapshot. */
static void job_work_cb(uv_work_t *w)
{
	policy_job *j = w->data;
	const char *src = j->kind == JOB_PLAN ? "policy" : "body";
	ws_policy *p = policy_parse(src, j->text, j->len, &j->diags);
	if (!p) {
		/* A stored policy that no longer parses is our fault (500). */
		j->status = j->kind == JOB_PLAN ? 500 : upload_failure_status(j->text, j->len);
		return;
	}
	j->name = strdup(p->name);
	j->description = p->description ? strdup(p->description) : NULL;
	j->summary = policy_summary(p);
	j->policy_break_glass = p->break_glass;
	ws_sha256_hex(j->text, j->len, j->sha);
	if (j->kind == JOB_PLAN) {
		ws_plan_input in = {
			.fleet = j->snap->fleet, .policy = p, .release = j->release,
			.kind = j->rkind, .start = j->start,
		};
		ws_plan *plan = plan_build(&in, &j->diags);
		if (!plan) {
			j->status = 422;
		} else {
			json_t *doc_json = plan_to_json(plan);
			j->plan_text = json_dumps(doc_json, WS_PLAN_JSON_FLAGS);
			if (j->create) {
				/* The settings point into the policy: copied
				 * out before it is freed. */
				j->plan_doc = doc_json;
				j->settings = json_array();
				for (size_t i = 0; i < plan->n_waves; i++)
					json_array_append_new(j->settings,
							      rollout_wave_settings_json(plan->waves[i].settings));
			} else {
				json_decref(doc_json);
			}
			plan_free(plan);
		}
	} else {
		ws_diags fd;
		ws_diags_init(&fd);
		policy_check_fleet(p, "body", j->snap->fleet, &fd);
		j->warnings = diags_json(&fd);
		ws_diags_free(&fd);
	}
	policy_free(p);
}

static void store_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	policy_job *j = arg;
	api_call *c = j->c;
	if (err) {
		job_free(j);
		reply_db_error(c, err);
		return;
	}
	bool created = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
	json_t *out = json_pack("{s:s, s:i, s:s, s:b, s:s, s:O}", "name", j->name,
				"version", atoi(PQgetvalue(res, 0, 0)), "sha256", j->sha,
				"created", created, "summary", j->summary, "warnings", j->warnings);
	if (created)
		ws_info("policy", "policy=%s version=%s stored by %s", j->name, PQgetvalue(res, 0, 0), c->actor);
	job_free(j);
	reply_json(c, created ? 201 : 200, out);
}

static void job_after_cb(uv_work_t *w, int status)
{
	policy_job *j = w->data;
	api_call *c = j->c;
	if (status != 0) {
		job_free(j);
		reply_error(c, 500, "internal", "the job was cancelled", NULL);
		return;
	}
	if (j->status == 400 || j->status == 422) {
		char msg[160];
		char *first = j->diags.len ? ws_diag_format(&j->diags.items[0]) : NULL;
		if (j->status == 400)
			snprintf(msg, sizeof(msg), "%s", first ? first : "malformed document");
		else if (j->kind == JOB_PLAN)
			snprintf(msg, sizeof(msg), "the plan cannot be made: %zu problem%s", j->diags.len,
				 j->diags.len == 1 ? "" : "s");
		else
			snprintf(msg, sizeof(msg), "the policy has %zu problem%s", j->diags.len,
				 j->diags.len == 1 ? "" : "s");
		free(first);
		json_t *details = diags_json(&j->diags);
		int st = j->status;
		job_free(j);
		reply_error(c, st, st == 400 ? "malformed" : "validation_failed", msg, details);
		return;
	}
	if (j->status == 500) {
		/* A stored policy that no longer parses: this build is older or
		 * newer than the one that stored it.  Say which. */
		char *first = j->diags.len ? ws_diag_format(&j->diags.items[0]) : NULL;
		ws_error("policy", "stored policy does not parse: %s", first ? first : "?");
		free(first);
		job_free(j);
		reply_error(c, 500, "internal", "the stored policy does not parse with this build", NULL);
		return;
	}
	switch (j->kind) {
	case JOB_VALIDATE: {
		json_t *out = json_pack("{s:b, s:s, s:s, s:s, s:O}", "valid", 1, "name", j->name,
					"sha256", j->sha, "summary", j->summary, "warnings", j->warnings);
		job_free(j);
		reply_json(c, 200, out);
		return;
	}
	case JOB_STORE: {
		const char *params[] = { j->name, j->text, j->sha, j->description, c->actor };
		api_query(c->api->d.pool,
		          "SELECT version, created FROM ws_policy_store($1, $2, $3, $4, $5)",
		          5, params, store_done, j);
		return;
	}
	case JOB_PLAN: {
		if (!j->plan_text) {
			job_free(j);
			reply_error(c, 503, "unavailable", "out of memory", NULL);
			return;
		}
		if (j->create && !j->replan_id && j->policy_break_glass != (j->bg_justification != NULL)) {
			/* Break-glass is a decision someone answers for: the request
			 * says so, with why and under which change (issue 6). */
			json_t *details = json_array();
			if (j->policy_break_glass)
				field_error(details, "break_glass", "break_glass: policy %s overrides soft blackouts "
					    "(break_glass: true): give {\"justification\", \"change_ref\"}", j->name);
			else
				field_error(details, "break_glass", "break_glass: policy %s does not override blackouts; "
					    "leave break_glass out", j->name);
			job_free(j);
			reply_error(c, 422, "validation_failed", "the rollout request is invalid", details);
			return;
		}
		if (j->create) {
			rollout_new n = {
				.release = j->release, .kind = j->rkind, .policy_id = j->policy_id,
				.policy_name = j->name, .policy_version = j->policy_version,
				.policy_sha = j->policy_sha, .plan_text = j->plan_text, .plan = j->plan_doc,
				.settings = j->settings, .generation = j->snap->generation, .start = j->start,
				.replan_id = j->replan_id, .replan_version = j->replan_version, .reason = j->reason,
				.bg_justification = j->bg_justification, .bg_change_ref = j->bg_change_ref,
			};
			if (j->replan_id)
				rollout_replan_commit(c, &n);
			else
				rollout_commit(c, &n);
			job_free(j);
			return;
		}
		char ver[16];
		snprintf(ver, sizeof(ver), "%d", j->policy_version);
		ws_http_add_header(c->req, "X-Policy-Version", ver);
		ws_http_add_header(c->req, "X-Policy-Sha256", j->policy_sha);
		ws_http_respond(c->req, 200, "application/json", j->plan_text, strlen(j->plan_text));
		job_free(j);
		call_finish(c);
		return;
	}
	}
}

static void job_snapshot_cb(void *arg, ws_fleet_snapshot *snap, const ws_pg_err *err)
{
	policy_job *j = arg;
	api_call *c = j->c;
	if (err) {
		job_free(j);
		reply_db_error(c, err);
		return;
	}
	ws_fleet_snapshot_retain(snap);
	j->snap = snap;
	j->work.data = j;
	if (uv_queue_work(c->api->d.loop, &j->work, job_work_cb, job_after_cb)) {
		job_free(j);
		reply_error(c, 503, "unavailable", "the service is overloaded; retry later", NULL);
	}
}

static policy_job *job_new(api_call *c, job_kind kind)
{
	policy_job *j = calloc(1, sizeof(*j));
	if (!j) {
		reply_error(c, 503, "unavailable", "out of memory", NULL);
		return NULL;
	}
	j->c = c;
	j->kind = kind;
	ws_diags_init(&j->diags);
	return j;
}

static void policy_upload(api_call *c, job_kind kind)
{
	size_t len;
	const char *body = ws_http_req_body(c->req, &len);
	if (len == 0) {
		reply_error(c, 400, "bad_request", "the request has no body: send a WavePolicy document", NULL);
		return;
	}
	policy_job *j = job_new(c, kind);
	if (!j)
		return;
	j->text = malloc(len + 1);
	if (!j->text) {
		job_free(j);
		reply_error(c, 503, "unavailable", "out of memory", NULL);
		return;
	}
	memcpy(j->text, body, len);
	j->text[len] = '\0';
	j->len = len;
	ws_fleet_store_snapshot(c->api->d.fleet, job_snapshot_cb, j);
}

void h_policy_create(api_call *c)
{
	policy_upload(c, JOB_STORE);
}

void h_policy_validate(api_call *c)
{
	policy_upload(c, JOB_VALIDATE);
}

#define POLICY_ROW_COLUMNS \
	"name, version, sha256, description, created_by, " \
	"to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

static json_t *policy_row(const PGresult *res, int r)
{
	json_t *o = json_pack("{s:s, s:i, s:s}", "name", PQgetvalue(res, r, 0),
			      "version", atoi(PQgetvalue(res, r, 1)), "sha256", PQgetvalue(res, r, 2));
	json_object_set_new(o, "description", PQgetisnull(res, r, 3) ? json_null()
			    : json_string(PQgetvalue(res, r, 3)));
	json_object_set_new(o, "created_by", json_string(PQgetvalue(res, r, 4)));
	json_object_set_new(o, "created_at", json_string(PQgetvalue(res, r, 5)));
	return o;
}

static void policy_list_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	api_call *c = arg;
	if (err) {
		reply_db_error(c, err);
		return;
	}
	json_t *arr = json_array();
	for (int r = 0; r < PQntuples(res); r++) {
		json_t *o = policy_row(res, r);
		json_object_set_new(o, "versions", json_integer(atoi(PQgetvalue(res, r, 6))));
		json_array_append_new(arr, o);
	}
	reply_json(c, 200, json_pack("{s:o}", "policies", arr));
}

/* The latest version of every policy, oldest policy first. */
void h_policy_list(api_call *c)
{
	api_query(c->api->d.pool,
	          "SELECT " POLICY_ROW_COLUMNS ", n FROM ("
	          " SELECT p.*, count(*) OVER (PARTITION BY name) AS n,"
	          "  min(id) OVER (PARTITION BY name) AS first_id,"
	          "  row_number() OVER (PARTITION BY name ORDER BY version DESC) AS rn"
	          " FROM policies p) x WHERE rn = 1 ORDER BY first_id",
	          0, NULL, policy_list_done, c);
}

static void policy_get_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	api_call *c = arg;
	if (err) {
		reply_db_error(c, err);
		return;
	}
	/* Rows: every version, newest first; column 6 is the body, present
	 * only on the requested version. */
	int chosen = -1;
	json_t *versions = json_array();
	for (int r = PQntuples(res) - 1; r >= 0; r--) {
		json_t *v = policy_row(res, r);
		json_object_del(v, "name");
		json_object_del(v, "description");
		json_array_append_new(versions, v);
		if (!PQgetisnull(res, r, 6))
			chosen = r;
	}
	if (chosen < 0) {
		json_decref(versions);
		reply_error(c, 404, "not_found", PQntuples(res) ? "no such policy version" : "no such policy", NULL);
		return;
	}
	json_t *o = policy_row(res, chosen);
	json_object_set_new(o, "body", json_string(PQgetvalue(res, chosen, 6)));
	json_object_set_new(o, "versions", versions);
	reply_json(c, 200, o);
}

void h_policy_get(api_call *c)
{
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
	const char *params[] = { c->param, v ? verbuf : NULL };
	api_query(c->api->d.pool,
	          "SELECT " POLICY_ROW_COLUMNS ", CASE WHEN version = COALESCE($2::int,"
	          " (SELECT max(version) FROM policies WHERE name = $1)) THEN body END"
	          " FROM policies WHERE name = $1 ORDER BY version DESC",
	          2, params, policy_get_done, c);
}

/* ---- POST /v1/rollouts ------------------------------------------------- */

static void rollout_policy_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	policy_job *j = arg;
	api_call *c = j->c;
	if (err) {
		job_free(j);
		reply_db_error(c, err);
		return;
	}
	if (PQntuples(res) == 0 || PQgetisnull(res, 0, 0)) {
		job_free(j);
		reply_error(c, 422, "validation_failed", "no such policy: store it with POST /v1/policies", NULL);
		return;
	}
	/* Column 4: the kind of the release when it exists.  A dry run may plan
	 * a release not created yet (with the kind asked, standard by
	 * default); a rollout needs the release and takes its kind. */
	bool have_release = !PQgetisnull(res, 0, 4);
	ws_release_kind stored = WS_RELEASE_STANDARD;
	if (have_release && ws_release_kind_parse(PQgetvalue(res, 0, 4), &stored)) {
		job_free(j);
		reply_error(c, 500, "internal", "the release has an unknown kind", NULL);
		return;
	}
	if (j->create && !have_release) {
		json_t *details = json_array();
		field_error(details, "release", "no release %s: create it with POST /v1/releases", j->release);
		job_free(j);
		reply_error(c, 422, "validation_failed", "the rollout request is invalid", details);
		return;
	}
	if (j->create && j->kind_given && j->rkind != stored) {
		json_t *details = json_array();
		field_error(details, "kind", "release %s is %s, not %s", j->release, ws_release_kind_name(stored),
			    ws_release_kind_name(j->rkind));
		job_free(j);
		reply_error(c, 422, "validation_failed", "the rollout request is invalid", details);
		return;
	}
	if (have_release && !j->kind_given)
		j->rkind = stored;
	if (j->create && j->rkind == WS_RELEASE_URGENT && c->who.role != WS_ROLE_SECURITY &&
	    c->who.role != WS_ROLE_ADMIN) {
		job_free(j);
		reply_error(c, 403, "forbidden", "a rollout of an urgent release needs role security", NULL);
		return;
	}
	j->policy_version = atoi(PQgetvalue(res, 0, 0));
	snprintf(j->policy_sha, sizeof(j->policy_sha), "%s", PQgetvalue(res, 0, 1));
	j->policy_id = atoll(PQgetvalue(res, 0, 3));
	j->len = (size_t)PQgetlength(res, 0, 2);
	j->text = malloc(j->len + 1);
	if (!j->text) {
		job_free(j);
		reply_error(c, 503, "unavailable", "out of memory", NULL);
		return;
	}
	memcpy(j->text, PQgetvalue(res, 0, 2), j->len + 1);
	ws_fleet_store_snapshot(c->api->d.fleet, job_snapshot_cb, j);
}

void h_rollout_create(api_call *c)
{
	json_t *in = body_json_object(c);
	if (!in)
		return;
	ws_diags d;
	ws_diags_init(&d);
	const char *key;
	json_t *val;
	json_object_foreach(in, key, val) {
		if (strcmp(key, "release") && strcmp(key, "policy") && strcmp(key, "start") &&
		    strcmp(key, "kind") && strcmp(key, "policy_version") && strcmp(key, "break_glass"))
			ws_diag_add(&d, NULL, 0, 0, "unknown field \"%s\" (expected one of: release, "
				    "policy, policy_version, start, kind, break_glass)", key);
	}
	const char *release = json_string_value(json_object_get(in, "release"));
	const char *policy = json_string_value(json_object_get(in, "policy"));
	const char *start = json_string_value(json_object_get(in, "start"));
	const char *kind = json_string_value(json_object_get(in, "kind"));
	json_t *pv = json_object_get(in, "policy_version");
	if (!release || !*release || strlen(release) > 128)
		ws_diag_add(&d, NULL, 0, 0, "\"release\" must be a release version string");
	if (!policy || !*policy || strlen(policy) > 63)
		ws_diag_add(&d, NULL, 0, 0, "\"policy\" must be the name of a stored policy");
	int64_t t = now_utc(c->api);
	if (json_object_get(in, "start") && (!start || ws_time_parse(start, &t)))
		ws_diag_add(&d, NULL, 0, 0, "\"start\" must be an RFC 3339 time such as 2026-12-01T00:00:00Z");
	ws_release_kind rk = WS_RELEASE_STANDARD;
	if (json_object_get(in, "kind") && (!kind || ws_release_kind_parse(kind, &rk)))
		ws_diag_add(&d, NULL, 0, 0, "\"kind\" must be standard or urgent");
	if (pv && (!json_is_integer(pv) || json_integer_value(pv) < 1))
		ws_diag_add(&d, NULL, 0, 0, "\"policy_version\" must be a positive integer");
	json_t *bg = json_object_get(in, "break_glass");
	const char *bg_why = NULL, *bg_ref = NULL;
	if (bg) {
		bg_why = json_string_value(json_object_get(bg, "justification"));
		bg_ref = json_string_value(json_object_get(bg, "change_ref"));
		const char *k;
		json_t *v;
		if (!json_is_object(bg))
			ws_diag_add(&d, NULL, 0, 0, "\"break_glass\" must be an object {\"justification\", \"change_ref\"}");
		json_object_foreach(bg, k, v) {
			if (strcmp(k, "justification") && strcmp(k, "change_ref"))
				ws_diag_add(&d, NULL, 0, 0, "unknown field \"break_glass.%s\" (expected justification, "
					    "change_ref)", k);
		}
		if (json_is_object(bg) && (!bg_why || strlen(bg_why) < 10 || strlen(bg_why) > 4000))
			ws_diag_add(&d, NULL, 0, 0, "\"break_glass.justification\" must say why soft blackouts must be "
				    "overridden (10 to 4000 characters)");
		if (json_is_object(bg) && (!bg_ref || !*bg_ref || strlen(bg_ref) > 200))
			ws_diag_add(&d, NULL, 0, 0, "\"break_glass.change_ref\" must be the change reference "
				    "(1 to 200 characters)");
	}
	if (d.len) {
		json_decref(in);
		reply_error(c, 422, "validation_failed", "the rollout request is invalid", diags_json(&d));
		ws_diags_free(&d);
		return;
	}
	ws_diags_free(&d);
	policy_job *j = job_new(c, JOB_PLAN);
	if (!j) {
		json_decref(in);
		return;
	}
	j->release = strdup(release);
	j->rkind = rk;
	j->kind_given = kind != NULL;
	if (bg_why && bg_ref && (!(j->bg_justification = strdup(bg_why)) || !(j->bg_change_ref = strdup(bg_ref)))) {
		job_free(j);
		json_decref(in);
		reply_error(c, 503, "unavailable", "out of memory", NULL);
		return;
	}
	j->create = !query_flag(c, "dry_run");
	j->start = t;
	char verbuf[24] = "";
	if (pv)
		snprintf(verbuf, sizeof(verbuf), "%lld", (long long)json_integer_value(pv));
	const char *params[] = { policy, pv ? verbuf : NULL, release };
	api_query(c->api->d.pool,
	          "SELECT p.version, p.sha256, p.body, p.id, (SELECT r.kind FROM releases r WHERE r.version = $3)"
	          " FROM (SELECT 1) one LEFT JOIN LATERAL (SELECT * FROM policies WHERE name = $1"
	          " AND ($2::int IS NULL OR version = $2::int) ORDER BY version DESC LIMIT 1) p ON true",
	          3, params, rollout_policy_done, j);
	json_decref(in);
}

/* ---- POST /v1/rollouts/{id}/replan: the planning ------------------------------ */

void rollout_replan_plan(api_call *c, const replan_request *q)
{
	policy_job *j = job_new(c, JOB_PLAN);
	if (!j)
		return;
	j->create = true;
	j->kind_given = true;
	j->rkind = q->kind;
	j->start = q->start;
	j->replan_id = q->rollout;
	j->replan_version = q->plan_version;
	j->policy_id = q->policy_id;
	j->policy_version = q->policy_version;
	snprintf(j->policy_sha, sizeof(j->policy_sha), "%s", q->policy_sha);
	j->len = q->policy_len;
	j->release = strdup(q->release);
	j->reason = strdup(q->reason);
	j->text = malloc(q->policy_len + 1);
	if (!j->release || !j->reason || !j->text) {
		job_free(j);
		reply_error(c, 503, "unavailable", "out of memory", NULL);
		return;
	}
	memcpy(j->text, q->policy_text, q->policy_len);
	j->text[q->policy_len] = '\0';
	ws_fleet_store_snapshot(c->api->d.fleet, job_snapshot_cb, j);
}
