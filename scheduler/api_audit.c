/*
 * api_audit.c - GET /v1/audit and GET /v1/audit/verify (api.md "Audit").
 *
 * Both are one SQL function each (migrations/0007_audit.sql) whose JSON is
 * passed through as text.  Readable by every role that reads the whole
 * fleet -- admin, platform, security, approver, viewer -- and not by tenant
 * tokens: entries name other tenants, and filtering them by tenant would
 * hide the links an auditor needs.  Approvers read it because they sign off
 * waves and may want to see what happened before they do.
 */
#include <stdlib.h>
#include <string.h>
#include "api_internal.h"
#include "wavesched/window.h"

#define AUDIT_LIMIT_DEFAULT 100
#define AUDIT_LIMIT_MAX 1000
#define AUDIT_TEXT_MAX 256

static void text_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	api_call *c = arg;
	if (err) {
		reply_sql_error(c, err);
		return;
	}
	ws_http_respond(c->req, 200, "application/json", PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
	call_finish(c);
}

/* A positive integer of at most 18 digits, copied to out; false otherwise. */
static bool positive_id(const char *s, char out[24])
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > 18 || strspn(s, "0123456789") != n || strspn(s, "0") == n)
		return false;
	memcpy(out, s, n + 1);
	return true;
}

static bool hex64(const char *s)
{
	return s && strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

/* A text filter: 1 to 256 bytes without control characters. */
static bool filter_text(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > AUDIT_TEXT_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

void h_audit_list(api_call *c)
{
	json_t *details = json_array();
	const char *since = ws_http_req_query_param(c->req, "since");
	const char *actor = ws_http_req_query_param(c->req, "actor");
	const char *object = ws_http_req_query_param(c->req, "object");
	const char *after = ws_http_req_query_param(c->req, "after_id");
	const char *limit_s = ws_http_req_query_param(c->req, "limit");
	int64_t t;
	if (since && ws_time_parse(since, &t) != 0)
		field_error(details, "since", "must be an RFC 3339 time such as 2026-12-01T00:00:00Z, not \"%.64s\"", since);
	if (actor && !filter_text(actor))
		field_error(details, "actor", "must be 1 to %d characters without control characters", AUDIT_TEXT_MAX);
	if (object && !filter_text(object))
		field_error(details, "object", "must be 1 to %d characters without control characters", AUDIT_TEXT_MAX);
	char after_id[24];
	if (after && !positive_id(after, after_id))
		field_error(details, "after_id", "must be a positive entry id, not \"%.32s\"", after);
	long limit = AUDIT_LIMIT_DEFAULT;
	if (limit_s) {
		char *end = NULL;
		limit = strtol(limit_s, &end, 10);
		if (!*limit_s || *end || limit < 1 || limit > AUDIT_LIMIT_MAX)
			field_error(details, "limit", "must be an integer from 1 to %d", AUDIT_LIMIT_MAX);
	}
	if (json_array_size(details)) {
		reply_error(c, 400, "bad_request", "invalid audit query", details);
		return;
	}
	json_decref(details);
	char limit_buf[16];
	snprintf(limit_buf, sizeof(limit_buf), "%ld", limit);
	const char *params[] = { since, actor, object, after ? after_id : NULL, limit_buf };
	api_query(c->api->d.pool,
		  "SELECT ws_audit_list($1::timestamptz, $2, $3, $4::bigint, $5::int)::text",
		  5, params, text_done, c);
}

/* ?known_id=N&known_hash=H: a head recorded earlier (from this answer or
 * an evidence bundle), so that a removed tail is named too. */
void h_audit_verify(api_call *c)
{
	json_t *details = json_array();
	const char *known = ws_http_req_query_param(c->req, "known_id");
	const char *known_hash = ws_http_req_query_param(c->req, "known_hash");
	char known_id[24];
	if (known && !positive_id(known, known_id))
		field_error(details, "known_id", "must be a positive entry id");
	if (known_hash && !hex64(known_hash))
		field_error(details, "known_hash", "must be 64 lowercase hex digits");
	if (known_hash && !known)
		field_error(details, "known_hash", "needs known_id");
	if (json_array_size(details)) {
		reply_error(c, 400, "bad_request", "invalid audit check", details);
		return;
	}
	json_decref(details);
	const char *params[] = { known ? known_id : NULL, known_hash };
	api_query(c->api->d.pool, "SELECT ws_audit_check($1::bigint, $2)::text", 2, params, text_done, c);
}
