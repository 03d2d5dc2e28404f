/*
 * api_defer.c - POST /v1/tenants/{slug}/deferrals: a tenant owner defers its
 * window in a rollout, within the policy's `deferral` limits (issue 6).
 *
 * Three steps, none blocking the loop: ws_defer_context
 * (migrations/0017_defer.sql) refuses what needs no policy (no such
 * rollout, an urgent release, a rollout or deployment past deferring) and
 * reads what the placement needs; plan_defer() (policies/plan_defer.c)
 * places the tenant and its dependents on the thread pool against a fleet
 * snapshot, as every plan is made; ws_tenant_defer commits, checking every
 * rule again under its locks and that the fleet, the plan and the moved
 * deployments are those the placement saw.
 *
 * Who: a tenant token for its own slugs (others get the 404 of a tenant
 * that does not exist); admin, platform and security on a tenant's behalf
 * (they may re-plan the whole rollout anyway, and the record names them).
 * Approvers and viewers may not.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "api_internal.h"
#include "wavesched/fleet_store.h"
#include "wavesched/log.h"
#include "wavesched/planner.h"
#include "wavesched/window.h"

#define REASON_MAX 1000

typedef struct defer_job {
	uv_work_t work;
	api_call *c;
	char rollout[24];
	int64_t until;            /* INT64_MIN: not asked */
	char *reason;             /* may be NULL */
	json_t *ctx;              /* ws_defer_context's document */
	ws_fleet_snapshot *snap;
	int64_t now;
	/* results of the work */
	int status;               /* 0 fine; else status with code and message */
	const char *code;
	char message[400];
	ws_diags diags;
	json_t *moves;            /* p_moves */
	json_t *expected;         /* p_expected */
	json_t *settings;         /* the deferred wave's settings */
	int64_t max_s;
	int per_tenant;
} defer_job;

static void job_free(defer_job *j)
{
	if (j->snap)
		ws_fleet_snapshot_release(j->snap);
	ws_diags_free(&j->diags);
	json_decref(j->ctx);
	json_decref(j->moves);
	json_decref(j->expected);
	json_decref(j->settings);
	free(j->reason);
	free(j);
}

static void job_fail(defer_job *j, int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void job_fail(defer_job *j, int status, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(j->message, sizeof(j->message), fmt, ap);
	va_end(ap);
	j->status = status;
	j->code = code;
}

static const char *ctx_str(const defer_job *j, const char *key)
{
	return json_string_value(json_object_get(j->ctx, key));
}

static json_t *time_str(int64_t t)
{
	char buf[40];
	ws_time_format(t, 0, true, buf, sizeof(buf));
	return json_string(buf);
}

/* "14d", "36h", "90m" or "45s": as the policy would write it. */
static void duration_text(int64_t s, char *out, size_t size)
{
	if (s > 0 && s % 86400 == 0)
		snprintf(out, size, "%lldd", (long long)(s / 86400));
	else if (s > 0 && s % 3600 == 0)
		snprintf(out, size, "%lldh", (long long)(s / 3600));
	else if (s > 0 && s % 60 == 0)
		snprintf(out, size, "%lldm", (long long)(s / 60));
	else
		snprintf(out, size, "%llds", (long long)s);
}

static json_t *move_json(const ws_plan_tenant *t)
{
	json_t *reasons = json_array();
	for (size_t i = 0; i < t->n_reasons; i++)
		json_array_append_new(reasons, json_string(t->reasons[i]));
	return json_pack("{s:s, s:o, s:o, s:o}", "slug", t->slug, "window_start", time_str(t->window_start),
			 "window_end", time_str(t->window_end), "reasons", reasons);
}

/* On the thread pool: reads only the job and the retained snapshot. */
static void defer_work_cb(uv_work_t *w)
{
	defer_job *j = w->data;
	const char *slug = j->c->param;
	const char *text = ctx_str(j, "policy_text");
	if (!text) {
		job_fail(j, 500, "internal", "the rollout's policy is not stored");
		return;
	}
	ws_policy *p = policy_parse("policy", text, strlen(text), &j->diags);
	if (!p) {
		char *first = j->diags.len ? ws_diag_format(&j->diags.items[0]) : NULL;
		ws_error("defer", "stored policy does not parse: %s", first ? first : "?");
		free(first);
		job_fail(j, 500, "internal", "the stored policy does not parse with this build");
		return;
	}
	ws_plan *plan = NULL;
	const char **open = NULL, **started = NULL;
	if (!p->deferral_allowed || p->deferral_per_tenant < 1) {
		job_fail(j, 422, "validation_failed", "policy %s does not allow deferral (it has no `deferral` block)",
			 p->name);
		goto out;
	}
	json_int_t done = json_integer_value(json_object_get(j->ctx, "deferrals"));
	if (done >= p->deferral_per_tenant) {
		job_fail(j, 409, "conflict", "tenant %s has already deferred its window in rollout %s %lld time%s "
			 "(policy %s allows %d)", slug, j->rollout, (long long)done, done == 1 ? "" : "s", p->name,
			 p->deferral_per_tenant);
		goto out;
	}
	int64_t after = 0, original = 0;
	const char *orig_s = ctx_str(j, "original_start");
	if (ws_time_parse(ctx_str(j, "after") ? ctx_str(j, "after") : "", &after) ||
	    (orig_s && ws_time_parse(orig_s, &original))) {
		job_fail(j, 500, "internal", "the rollout has no schedule to defer after");
		goto out;
	}
	int64_t start = after;
	if (j->now > start)
		start = j->now;
	if (j->until != INT64_MIN && j->until > start)
		start = j->until;

	json_t *open_map = json_object_get(j->ctx, "open"), *started_v = json_object_get(j->ctx, "started");
	size_t n_open = json_object_size(open_map), n_started = json_array_size(started_v);
	open = calloc(n_open + 1, sizeof(*open));
	started = calloc(n_started + 1, sizeof(*started));
	if (!open || !started) {
		job_fail(j, 503, "unavailable", "out of memory");
		goto out;
	}
	size_t k = 0;
	const char *key;
	json_t *val;
	json_object_foreach(open_map, key, val) {
		(void)val;
		open[k++] = key;
	}
	for (size_t i = 0; i < n_started; i++)
		started[i] = json_string_value(json_array_get(started_v, i));
	ws_release_kind kind;
	if (ws_release_kind_parse(ctx_str(j, "kind") ? ctx_str(j, "kind") : "", &kind)) {
		job_fail(j, 500, "internal", "the release has an unknown kind");
		goto out;
	}
	ws_defer_input in = {
		.fleet = j->snap->fleet, .policy = p, .release = ctx_str(j, "release"), .kind = kind,
		.start = start, .slug = slug, .open = open, .n_open = n_open,
		.started = started, .n_started = n_started,
	};
	plan = plan_defer(&in, &j->diags);
	if (!plan) {
		job_fail(j, 422, "validation_failed", "the deferral cannot be placed: %zu problem%s", j->diags.len,
			 j->diags.len == 1 ? "" : "s");
		goto out;
	}
	/* The tenant first (ws_tenant_defer reads it there), then the rest in
	 * placement order. */
	j->moves = json_array();
	json_t *windows = json_object();
	const ws_plan_tenant *self = NULL;
	for (size_t wi = 0; wi < plan->n_waves; wi++)
		for (size_t i = 0; i < plan->waves[wi].n_tenants; i++) {
			const ws_plan_tenant *t = &plan->waves[wi].tenants[i];
			if (strcmp(t->slug, slug) == 0)
				self = t;
			else
				json_array_append_new(j->moves, move_json(t));
			json_object_set(windows, t->slug, json_object_get(open_map, t->slug));
		}
	if (!self) {
		json_decref(windows);
		job_fail(j, 500, "internal", "the placement lost tenant %s", slug);
		goto out;
	}
	json_array_insert_new(j->moves, 0, move_json(self));
	/* A deployment whose window has begun is the engine's to start at any
	 * moment (on its clock, which `now` is): it is not taken from under it. */
	const char *wk;
	json_t *wv;
	json_object_foreach(windows, wk, wv) {
		int64_t ws = 0;
		if (json_is_string(wv) && ws_time_parse(json_string_value(wv), &ws) == 0 && ws <= j->now) {
			job_fail(j, 409, "conflict", "the window of %s in rollout %s began at %s: a deployment in its "
				 "window is not deferred", wk, j->rollout, json_string_value(wv));
			json_decref(windows);
			goto out;
		}
	}
	if (orig_s && self->window_start - original > p->deferral_max_s) {
		char got[40], from[40], max[32];
		ws_time_format(self->window_start, 0, true, got, sizeof(got));
		ws_time_format(original, 0, true, from, sizeof(from));
		duration_text(p->deferral_max_s, max, sizeof(max));
		json_decref(windows);
		job_fail(j, 422, "validation_failed", "the first window of %s after rollout %s's last wave starts %s, "
			 "beyond the deferral max of %s (policy %s) after its window of %s", slug, j->rollout, got,
			 max, p->name, from);
		goto out;
	}
	j->expected = json_pack("{s:O, s:O, s:o}", "plan_version", json_object_get(j->ctx, "plan_version"),
				"after", json_object_get(j->ctx, "after"), "windows", windows);
	j->settings = rollout_wave_settings_json(&p->defaults);
	j->max_s = p->deferral_max_s;
	j->per_tenant = p->deferral_per_tenant;
	if (!j->expected || !j->settings)
		job_fail(j, 503, "unavailable", "out of memory");
out:
	free(open);
	free(started);
	plan_free(plan);
	policy_free(p);
}

static void commit_done(void *arg, const PGresult *res, const ws_pg_err *err)
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
	ws_info("defer", "tenant=%s rollout=%lld deferred by %s: %zu deployment(s) moved to wave %lld", c->param,
		(long long)json_integer_value(json_object_get(out, "rollout")), c->actor,
		json_array_size(json_object_get(out, "moved")),
		(long long)json_integer_value(json_object_get(json_object_get(out, "wave"), "index")));
	reply_json(c, 201, out);
}

static void defer_after_cb(uv_work_t *w, int status)
{
	defer_job *j = w->data;
	api_call *c = j->c;
	if (status != 0) {
		job_free(j);
		reply_error(c, 500, "internal", "the job was cancelled", NULL);
		return;
	}
	if (j->status) {
		json_t *details = j->diags.len ? diags_json(&j->diags) : NULL;
		int st = j->status;
		const char *code = j->code;
		char msg[sizeof(j->message)];
		memcpy(msg, j->message, sizeof(msg));
		job_free(j);
		reply_error(c, st, code, msg, details);
		return;
	}
	char *moves = json_dumps(j->moves, JSON_COMPACT), *expected = json_dumps(j->expected, JSON_COMPACT);
	char *settings = json_dumps(j->settings, JSON_COMPACT);
	char until[40] = "", generation[24], max_s[24], per[16];
	if (j->until != INT64_MIN)
		ws_time_format(j->until, 0, true, until, sizeof(until));
	snprintf(generation, sizeof(generation), "%lld", (long long)j->snap->generation);
	snprintf(max_s, sizeof(max_s), "%lld", (long long)j->max_s);
	snprintf(per, sizeof(per), "%d", j->per_tenant);
	if (!moves || !expected || !settings) {
		free(moves);
		free(expected);
		free(settings);
		job_free(j);
		reply_error(c, 503, "unavailable", "out of memory", NULL);
		return;
	}
	const char *params[] = { c->param, j->rollout, c->actor, ws_role_name(c->who.role), j->reason,
				 *until ? until : NULL, generation, expected, moves, settings, max_s, per };
	api_query(c->api->d.pool,
		  "SELECT ws_tenant_defer($1, $2::bigint, $3, $4, $5, $6::timestamptz, $7::bigint, $8::jsonb,"
		  " $9::jsonb, $10::jsonb, $11::bigint, $12::int)::text",
		  12, params, commit_done, c);
	free(moves);
	free(expected);
	free(settings);
	job_free(j);
}

static void defer_snapshot_cb(void *arg, ws_fleet_snapshot *snap, const ws_pg_err *err)
{
	defer_job *j = arg;
	api_call *c = j->c;
	if (err) {
		job_free(j);
		reply_db_error(c, err);
		return;
	}
	ws_fleet_snapshot_retain(snap);
	j->snap = snap;
	j->now = now_utc(c->api);
	j->work.data = j;
	if (uv_queue_work(c->api->d.loop, &j->work, defer_work_cb, defer_after_cb)) {
		job_free(j);
		reply_error(c, 503, "unavailable", "the service is overloaded; retry later", NULL);
	}
}

static void context_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	defer_job *j = arg;
	api_call *c = j->c;
	if (err) {
		job_free(j);
		reply_sql_error(c, err);
		return;
	}
	json_error_t je;
	j->ctx = PQntuples(res) == 1 ? json_loads(PQgetvalue(res, 0, 0), 0, &je) : NULL;
	if (!json_is_object(j->ctx)) {
		job_free(j);
		reply_error(c, 500, "internal", "the database answered with unreadable JSON", NULL);
		return;
	}
	ws_fleet_store_snapshot(c->api->d.fleet, defer_snapshot_cb, j);
}

void h_tenant_defer(api_call *c)
{
	if (strlen(c->param) > SLUG_MAX || !ws_principal_sees_tenant(&c->who, c->param)) {
		reply_error(c, 404, "not_found", "no such tenant", NULL);
		return;
	}
	ws_role role = c->who.role;
	if (role != WS_ROLE_TENANT && role != WS_ROLE_ADMIN && role != WS_ROLE_PLATFORM && role != WS_ROLE_SECURITY) {
		char msg[120];
		snprintf(msg, sizeof(msg), "role %s may not defer windows", ws_role_name(role));
		reply_error(c, 403, "forbidden", msg, NULL);
		return;
	}
	json_t *in = body_json_object(c);
	if (!in)
		return;
	static const char *const allowed[] = { "rollout", "until", "reason", NULL };
	json_t *details = json_array();
	body_unknown_fields(in, allowed, details);
	json_t *ro = json_object_get(in, "rollout");
	if (!json_is_integer(ro) || json_integer_value(ro) < 1)
		field_error(details, "rollout", "rollout must be the id of a rollout (a positive integer)");
	json_t *ut = json_object_get(in, "until");
	int64_t until = INT64_MIN;
	if (ut && (!json_is_string(ut) || ws_time_parse(json_string_value(ut), &until)))
		field_error(details, "until", "until must be an RFC 3339 time such as 2026-12-01T00:00:00Z");
	json_t *rs = json_object_get(in, "reason");
	if (rs && (!json_is_string(rs) || strlen(json_string_value(rs)) > REASON_MAX))
		field_error(details, "reason", "reason must be a string of at most %d bytes", REASON_MAX);
	if (json_array_size(details)) {
		json_decref(in);
		reply_error(c, 422, "validation_failed", "the deferral request is invalid", details);
		return;
	}
	json_decref(details);
	defer_job *j = calloc(1, sizeof(*j));
	if (!j || (rs && !(j->reason = strdup(json_string_value(rs))))) {
		free(j);
		json_decref(in);
		reply_error(c, 503, "unavailable", "out of memory", NULL);
		return;
	}
	j->c = c;
	j->until = until;
	ws_diags_init(&j->diags);
	snprintf(j->rollout, sizeof(j->rollout), "%lld", (long long)json_integer_value(ro));
	json_decref(in);
	const char *params[] = { c->param, j->rollout };
	api_query(c->api->d.pool, "SELECT ws_defer_context($1, $2::bigint)::text", 2, params, context_done, j);
}
