/*
 * api_notify.c - notification sinks and the record of what was sent
 * (migrations/0018_notify.sql, docs/notifications.md):
 *
 *   POST   /v1/notifications/sinks          admin: add a sink
 *   GET    /v1/notifications/sinks          admin: the live sinks
 *   DELETE /v1/notifications/sinks/{name}   admin: remove one (its pending messages are given up)
 *   GET    /v1/notifications?state=&sink=&limit=   messages and their attempts
 *
 * Sinks are admin-only, reading included: a webhook URL (Slack's above
 * all) is itself a credential.
 */
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include <jansson.h>
#include "api_internal.h"
#include "wavesched/notify.h"

#define LIST_MAX 200
#define URL_MAX 2048

static const char *const tenant_kinds[] = { "window.reminder", "window.moved", "window.cancelled",
					    "deployment.healthy", "deployment.failed",
					    "deployment.rolled_back", NULL };
static const char *const role_kinds[] = { "gate.failed", "rollout.halted", "rollout.rolled_back",
					  "rollout.preempted", "rollout.aborted", "rollout.completed",
					  "review.overdue", NULL };
static const char *const sink_roles[] = { "admin", "platform", "security", NULL };

static bool in_list(const char *s, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(s, *list) == 0)
			return true;
	return false;
}

static bool all_of(const char *s, const char *set, size_t max)
{
	size_t n = strlen(s);
	return n > 0 && n <= max && strspn(s, set) == n;
}

static bool admin_only(api_call *c)
{
	if (c->who.role == WS_ROLE_ADMIN)
		return true;
	char msg[96];
	snprintf(msg, sizeof(msg), "role %s may not manage notification sinks (admin only)",
		 ws_role_name(c->who.role));
	reply_error(c, 403, "forbidden", msg, NULL);
	return false;
}

static void text_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	api_call *c = arg;
	reply_doc_row(c, res, err, strcmp(ws_http_req_method(c->req), "POST") == 0 ? 201 : 200,
		      "no such notification sink");
}

/* http or https with a host, as libcurl parses it (the same parser the
 * delivery uses). */
static const char *url_problem(const char *url)
{
	static char why[160];
	if (strlen(url) > URL_MAX)
		return "url is longer than 2048 bytes";
	for (const char *p = url; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			return "url contains spaces or control characters";
	CURLU *u = curl_url();
	if (!u)
		return "out of memory";
	const char *out = NULL;
	char *scheme = NULL, *host = NULL;
	CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
	if (uc != CURLUE_OK) {
		snprintf(why, sizeof(why), "url is malformed (%s)", curl_url_strerror(uc));
		out = why;
	} else if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
		   (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
		out = "url must be http:// or https://";
	} else if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host) {
		out = "url has no host";
	}
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	return out;
}

/* An array of strings each accepted by `ok`; problems named by index. */
static void check_list(json_t *in, const char *field, json_t *details, bool (*ok)(const char *s),
		       const char *what)
{
	json_t *a = json_object_get(in, field);
	if (!a || json_is_null(a))
		return;
	if (!json_is_array(a) || json_array_size(a) > 200) {
		field_error(details, field, "%s must be an array of at most 200 strings", field);
		return;
	}
	size_t i;
	json_t *x;
	json_array_foreach(a, i, x) {
		const char *s = json_string_value(x);
		if (!s || !ok(s))
			field_error(details, field, "%s[%zu]: %s", field, i, what);
	}
}

static bool role_ok(const char *s) { return in_list(s, sink_roles); }
static bool slug_ok(const char *s) { return all_of(s, "abcdefghijklmnopqrstuvwxyz0123456789-", SLUG_MAX); }
static bool kind_ok(const char *s) { return in_list(s, tenant_kinds) || in_list(s, role_kinds); }

void h_notify_sink_create(api_call *c)
{
	if (!admin_only(c))
		return;
	json_t *in = body_json_object(c);
	if (!in)
		return;
	static const char *const allowed[] = { "name", "format", "url", "roles", "tenants", "events", "secret_env",
					       NULL };
	json_t *details = json_array();
	body_unknown_fields(in, allowed, details);
	const char *name = json_string_value(json_object_get(in, "name"));
	if (!name || !all_of(name, "abcdefghijklmnopqrstuvwxyz0123456789_.-", 63) || name[0] == '.' ||
	    name[0] == '-' || name[0] == '_')
		field_error(details, "name", "name must be 1 to 63 of a-z 0-9 . _ - starting with a letter or digit");
	const char *format = json_string_value(json_object_get(in, "format"));
	if (!format || (strcmp(format, "json") && strcmp(format, "slack")))
		field_error(details, "format", "format must be json or slack");
	const char *url = json_string_value(json_object_get(in, "url"));
	const char *why = url ? url_problem(url) : "url is required (http:// or https://)";
	if (why)
		field_error(details, "url", "%s", why);
	check_list(in, "roles", details, role_ok, "not a role that is notified (admin, platform, security)");
	check_list(in, "tenants", details, slug_ok, "not a tenant slug");
	check_list(in, "events", details, kind_ok,
		   "unknown kind (window.reminder, window.moved, window.cancelled, deployment.healthy, "
		   "deployment.failed, deployment.rolled_back, gate.failed, rollout.halted, "
		   "rollout.rolled_back, rollout.preempted, rollout.aborted, rollout.completed, review.overdue)");
	if (json_array_size(json_object_get(in, "roles")) + json_array_size(json_object_get(in, "tenants")) == 0)
		field_error(details, "roles", "roles: a sink is for at least one role or one tenant (roles or tenants)");
	json_t *ev = json_object_get(in, "events");
	if (json_is_array(ev) && json_array_size(ev) == 0)
		field_error(details, "events", "events: leave it out for every kind; an empty list would send nothing");
	json_t *se = json_object_get(in, "secret_env");
	if (se && !json_is_null(se) &&
	    (!json_is_string(se) || !all_of(json_string_value(se), "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", 128) ||
	     (json_string_value(se)[0] >= '0' && json_string_value(se)[0] <= '9')))
		field_error(details, "secret_env",
			    "secret_env must name an environment variable (A-Z 0-9 _) holding the bearer token");
	if (json_array_size(details)) {
		json_decref(in);
		reply_error(c, 422, "validation_failed", "the notification sink is invalid", details);
		return;
	}
	json_decref(details);
	char *doc = json_dumps(in, JSON_COMPACT);
	json_decref(in);
	if (!doc) {
		reply_error(c, 500, "internal", "out of memory", NULL);
		return;
	}
	const char *params[] = { doc, c->actor };
	api_query(c->api->d.pool, "SELECT ws_notify_sink_create($1::jsonb, $2)::text", 2, params, text_done, c);
	free(doc);
}

void h_notify_sink_list(api_call *c)
{
	if (!admin_only(c))
		return;
	api_query(c->api->d.pool, "SELECT ws_notify_sink_list()::text", 0, NULL, text_done, c);
}

void h_notify_sink_delete(api_call *c)
{
	if (!admin_only(c))
		return;
	const char *params[] = { c->param, c->actor };
	api_query(c->api->d.pool, "SELECT ws_notify_sink_delete($1, $2)::text", 2, params, text_done, c);
}

/* The sentence each message says, as its sink received it. */
static void list_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	api_call *c = arg;
	if (err) {
		reply_sql_error(c, err);
		return;
	}
	json_error_t je;
	json_t *doc = PQntuples(res) == 1 ? json_loads(PQgetvalue(res, 0, 0), 0, &je) : NULL;
	if (!doc) {
		reply_error(c, 500, "internal", "the notification list could not be read", NULL);
		return;
	}
	size_t i;
	json_t *m;
	json_array_foreach(json_object_get(doc, "notifications"), i, m) {
		char *text = ws_notify_text(json_string_value(json_object_get(m, "kind")),
					    json_string_value(json_object_get(m, "tenant")),
					    json_integer_value(json_object_get(m, "rollout")), json_object_get(m, "data"));
		if (text)
			json_object_set_new(m, "text", json_string(text));
		free(text);
	}
	reply_json(c, 200, doc);   /* takes doc */
}

void h_notify_list(api_call *c)
{
	const char *st = ws_http_req_query_param(c->req, "state");
	if (st && strcmp(st, "pending") && strcmp(st, "delivered") && strcmp(st, "failed") && strcmp(st, "all")) {
		reply_error(c, 400, "bad_request", "state must be pending, delivered, failed or all", NULL);
		return;
	}
	const char *sink = ws_http_req_query_param(c->req, "sink");
	const char *lim = ws_http_req_query_param(c->req, "limit");
	char limbuf[16] = "100";
	if (lim) {
		char *end;
		long v = strtol(lim, &end, 10);
		if (!*lim || *end || v < 1 || v > LIST_MAX) {
			reply_error(c, 400, "bad_request", "limit must be a number from 1 to 200", NULL);
			return;
		}
		snprintf(limbuf, sizeof(limbuf), "%ld", v);
	}
	const char *params[] = { st && strcmp(st, "all") ? st : NULL, sink, limbuf };
	api_query(c->api->d.pool, "SELECT ws_notify_list($1, $2, $3::integer)::text", 3, params, list_done, c);
}
