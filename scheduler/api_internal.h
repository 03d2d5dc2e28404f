/*
 * api_internal.h - what the API's handler files share: the per-request call,
 * the answer helpers and the handlers each file provides.  Not installed.
 */
#ifndef WAVESCHED_API_INTERNAL_H
#define WAVESCHED_API_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include "wavesched/api.h"
#include "wavesched/auth.h"
#include "wavesched/policy.h"

struct ws_api {
	ws_api_deps d;
	size_t pending;
	struct ws_ratelimit *rl;   /* per token (config rate_limit, rate_burst) */
	struct ws_events *events;   /* ws_api_set_events (events.h); NULL: not served */
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

/* Answer helpers: each answers and frees the call (exactly once). */
void call_finish(api_call *c);
void reply_json(api_call *c, int status, json_t *doc);
void reply_error(api_call *c, int status, const char *code, const char *message, json_t *details);
void reply_db_error(api_call *c, const ws_pg_err *err);
/* ws_diags -> [{"message": "file:line:col: msg", "line", "column"}] */
json_t *diags_json(const ws_diags *d);
bool query_flag(api_call *c, const char *name);
/* After fleet_parse/policy_parse refused an uploaded document: 400 when it
 * is not YAML/JSON at all (the parsers then report only the syntax error),
 * 422 when it is but breaks the format's rules.  One syntax-only pass, on
 * the failure path only; safe on the thread pool. */
int upload_failure_status(const char *buf, size_t len);
/* ws_pg_query, except that a statement that cannot even be queued (the
 * database is known down, the queue is full) still reaches `done`, with the
 * error: handlers have one path for every failure. */
void api_query(ws_pg_pool *pool, const char *sql, int nparams, const char *const *params,
	       ws_pg_cb done, void *arg);
int64_t now_utc(const ws_api *a);
/* Parses a JSON object body; on failure answers 400 with the position and
 * returns NULL. */
json_t *body_json_object(api_call *c);

/* Field problems of a JSON body, as details {"field", "message"} where the
 * message starts with the field's name (api_rollouts.c). */
void field_error(json_t *details, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Adds a problem for every key of `in` not in the NULL-terminated `allowed`. */
void body_unknown_fields(json_t *in, const char *const *allowed, json_t *details);

/* api_fleet.c */
void h_fleet_get(api_call *c);
void h_fleet_put(api_call *c);
void h_tenants(api_call *c);
void h_tenant(api_call *c);
/* api_tokens.c */
void h_token_create(api_call *c);
void h_token_list(api_call *c);
void h_token_revoke(api_call *c);
void h_whoami(api_call *c);
/* api_reviews.c */
void h_review_list(api_call *c);
void h_review_close(api_call *c);
/* api_notify.c */
void h_notify_sink_create(api_call *c);
void h_notify_sink_list(api_call *c);
void h_notify_sink_delete(api_call *c);
void h_notify_list(api_call *c);
/* api_policies.c */
void h_policy_create(api_call *c);
void h_policy_validate(api_call *c);
void h_policy_list(api_call *c);
void h_policy_get(api_call *c);
void h_rollout_create(api_call *c);
/* api_releases.c */
void h_release_create(api_call *c);
void h_release_list(api_call *c);
void h_release_get(api_call *c);
void h_backup_report(api_call *c);
void h_tenant_backups(api_call *c);
/* api_attestations.c */
void h_release_attest(api_call *c);
void h_release_attestations(api_call *c);
/* api_windows.c */
void h_tenant_windows(api_call *c);
void h_tenant_windows_ics(api_call *c);
/* api_defer.c */
void h_tenant_defer(api_call *c);
/* api_rollouts.c */
void h_rollout_list(api_call *c);
void h_rollout_get(api_call *c);
void h_rollout_plan(api_call *c);
void h_rollout_start(api_call *c);
void h_rollout_pause(api_call *c);
void h_rollout_resume(api_call *c);
void h_rollout_abort(api_call *c);
void h_rollout_approve(api_call *c);
void h_rollout_reject(api_call *c);
/* api_audit.c */
void h_audit_list(api_call *c);
void h_audit_verify(api_call *c);
/* api_evidence.c */
void h_rollout_evidence(api_call *c);
/* api_events.c */
void h_events(api_call *c);
/* Answers a failed statement of our SQL functions: WSE02/WSE03/WSE07 and
 * unique violations 409, WSE04 422, WSE05 404, WSE06 403 (with the
 * function's message; a DETAIL that is a JSON array becomes "details"),
 * anything else through reply_db_error. */
void reply_sql_error(api_call *c, const ws_pg_err *err);
/* The common end of a handler whose SQL function returns one JSON
 * document (as text) or NULL for "no such object": a failed statement goes
 * to reply_sql_error, no row or NULL to 404 with `missing`, the text as
 * the answer with `status` (api_rollouts.c). */
void reply_doc_row(api_call *c, const PGresult *res, const ws_pg_err *err, int status, const char *missing);
/* The tenant slugs a tenant token is scoped to, as a JSON array text for a
 * query parameter; NULL (no filter) for every other role.  Caller frees. */
char *principal_tenants_param(const api_call *c);
/* waves.settings for one wave (the shape is documented in 0004_rollouts.sql). */
json_t *rollout_wave_settings_json(const ws_wave_settings *s);
/* api_releases.c: the releases table's version rule (one alphanumeric, then
 * up to 127 of [A-Za-z0-9._+-]) and an artifact digest (sha256:64 hex). */
bool release_version_ok(const char *v);
bool release_digest_ok(const char *d);

/* The non-dry-run end of POST /v1/rollouts, after the planning job of
 * api_policies.c: stores the rollout, its frozen plan, waves and
 * deployments in one transaction (ws_rollout_create) and answers 201.
 * Borrows everything; answers the call. */
typedef struct rollout_new {
	const char *release;
	ws_release_kind kind;
	long long policy_id;
	const char *policy_name;
	int policy_version;
	const char *policy_sha;
	const char *plan_text;   /* the plan JSON, byte for byte as the dry run answers */
	json_t *plan;            /* the same plan, parsed */
	json_t *settings;        /* one object per plan wave */
	int64_t generation;      /* the fleet generation the plan was made from */
	int64_t start;
	/* A re-plan (api_replan.c) of this rollout, planned on `replan_version`: */
	long long replan_id;
	int replan_version;
	const char *reason;
	/* break_glass of the request: both set for a break-glass policy. */
	const char *bg_justification;
	const char *bg_change_ref;
} rollout_new;
void rollout_commit(api_call *c, const rollout_new *n);
/* The {id} of /v1/rollouts/{id}/...: decimal, positive, at most 18 digits. */
bool rollout_id_param(const api_call *c, char out[24]);

/* api_replan.c: POST /v1/rollouts/{id}/replan and GET /v1/rollouts/{id}/plans.
 * h_rollout_replan reads the rollout and hands the planning to
 * rollout_replan_plan (api_policies.c), whose job ends in
 * rollout_replan_commit. */
void h_rollout_replan(api_call *c);
void h_rollout_plans(api_call *c);
void rollout_replan_commit(api_call *c, const rollout_new *n);
typedef struct replan_request {
	long long rollout;
	int plan_version;         /* the version the new plan replaces */
	const char *release;
	ws_release_kind kind;
	long long policy_id;
	int policy_version;
	const char *policy_sha;
	const char *policy_text;
	size_t policy_len;
	int64_t start;
	const char *reason;
} replan_request;
void rollout_replan_plan(api_call *c, const replan_request *q);

#endif
