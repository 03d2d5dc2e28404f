/*
 * api_releases.c - POST/GET /v1/releases and the backup catalog
 * (POST /v1/backups, GET /v1/tenants/{slug}/backups).
 *
 * Bodies are checked field by field before anything reaches the database,
 * and every problem is reported at once as {"field", "message"}, so a
 * backup job or a person can fix a report in one go.  The writes are one
 * SQL function each (migrations/0004_rollouts.sql), which appends the audit
 * row in the same transaction.
 *
 * Roles: releases are written by platform, security and admin (urgent ones
 * by security and admin only) and read by every role but tenant.  Backup
 * reports need the same write permission as releases: api.md has no
 * dedicated role for backup jobs, so a job gets a platform token.
 */
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "api_internal.h"
#include "wavesched/fleet.h"
#include "wavesched/log.h"
#include "wavesched/window.h"

#define NOTES_MAX 4096
#define LOCATION_MAX 2048
#define CHECKSUM_MAX 256

/* The release version rule of the releases table: one alphanumeric, then up
 * to 127 of [A-Za-z0-9._+-]. */
bool release_version_ok(const char *v)
{
	size_t n = v ? strlen(v) : 0;
	if (n == 0 || n > 128)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = v[i];
		bool alnum = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
		if (!alnum && (i == 0 || (ch != '.' && ch != '_' && ch != '+' && ch != '-')))
			return false;
	}
	return true;
}

bool release_digest_ok(const char *d)
{
	if (!d || strlen(d) != 7 + 64 || strncmp(d, "sha256:", 7) != 0)
		return false;
	for (const char *p = d + 7; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

static bool slug_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > SLUG_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
	return true;
}

/* Printable text without control characters, 1..max bytes. */
static bool text_ok(const char *s, size_t max, bool spaces)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch < 0x20 || ch == 0x7f || (!spaces && ch == ' '))
			return false;
	}
	return true;
}

/* Answers with the JSON text a query built in column `col`. */
static void reply_text_json(api_call *c, int status, const PGresult *res, int col)
{
	ws_http_respond(c->req, status, "application/json", PQgetvalue(res, 0, col),
			(size_t)PQgetlength(res, 0, col));
	call_finish(c);
}

/* ---- releases ----------------------------------------------------------- */

static void release_created(void *arg, const PGresult *res, const ws_pg_err *err)
{
	api_call *c = arg;
	if (err) {
		reply_sql_error(c, err);
		return;
	}
	ws_info("release", "release created by %s", c->actor);
	reply_text_json(c, 201, res, 0);
}

void h_release_create(api_call *c)
{
	static const char *const fields[] = { "version", "digest", "kind", "notes", NULL };
	json_t *in = body_json_object(c);
	if (!in)
		return;
	json_t *details = json_array();
	body_unknown_fields(in, fields, details);
	const char *version = json_string_value(json_object_get(in, "version"));
	const char *digest = json_string_value(json_object_get(in, "digest"));
	json_t *jkind = json_object_get(in, "kind"), *jnotes = json_object_get(in, "notes");
	const char *kind = jkind && !json_is_null(jkind) ? json_string_value(jkind) : "standard";
	const char *notes = jnotes && !json_is_null(jnotes) ? json_string_value(jnotes) : "";
	ws_release_kind rk = WS_RELEASE_STANDARD;
	if (!release_version_ok(version))
		field_error(details, "version", "must be 1 to 128 characters of A-Z a-z 0-9 . _ + -, "
			    "starting with a letter or digit");
	if (!release_digest_ok(digest))
		field_error(details, "digest", "must be \"sha256:\" followed by 64 lowercase hex digits");
	if (!kind || ws_release_kind_parse(kind, &rk))
		field_error(details, "kind", "must be standard or urgent");
	if (!notes || strlen(notes) > NOTES_MAX)
		field_error(details, "notes", "must be a string of at most %d bytes", NOTES_MAX);
	if (json_array_size(details)) {
		json_decref(in);
		reply_error(c, 422, "validation_failed", "the release is invalid", details);
		return;
	}
	json_decref(details);
	if (rk == WS_RELEASE_URGENT && c->who.role != WS_ROLE_SECURITY && c->who.role != WS_ROLE_ADMIN) {
		json_decref(in);
		reply_error(c, 403, "forbidden", "an urgent release needs role security", NULL);
		return;
	}
	const char *params[] = { version, digest, ws_release_kind_name(rk), notes, c->actor };
	api_query(c->api->d.pool, "SELECT ws_release_create($1, $2, $3, $4, $5)::text", 5, params,
		  release_created, c);
	json_decref(in);
}

static void release_read_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	api_call *c = arg;
	if (err) {
		reply_db_error(c, err);
		return;
	}
	if (PQntuples(res) == 0) {
		reply_error(c, 404, "not_found", "no such release", NULL);
		return;
	}
	reply_text_json(c, 200, res, 0);
}

void h_release_list(api_call *c)
{
	api_query(c->api->d.pool,
		  "SELECT json_build_object('releases', COALESCE(json_agg(ws_release_doc(r) ORDER BY r.id), '[]'))::text"
		  " FROM releases r", 0, NULL, release_read_done, c);
}

void h_release_get(api_call *c)
{
	const char *params[] = { c->param };
	api_query(c->api->d.pool, "SELECT ws_release_doc(r)::text FROM releases r WHERE r.version = $1",
		  1, params, release_read_done, c);
}

/* ---- backups -------------------------------------------------------------- */

static void backup_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	api_call *c = arg;
	if (err) {
		reply_sql_error(c, err);
		return;
	}
	/* {"created": false, ...} is a job retrying a report we already have. */
	reply_text_json(c, strcmp(PQgetvalue(res, 0, 0), "t") == 0 ? 201 : 200, res, 1);
}

/* An RFC 3339 field: NULL when absent, the text when valid, an error
 * otherwise. */
static const char *time_field(json_t *in, const char *name, bool required, json_t *details)
{
	json_t *v = json_object_get(in, name);
	if (!v || json_is_null(v)) {
		if (required)
			field_error(details, name, "is required (an RFC 3339 time such as 2026-12-01T00:00:00Z)");
		return NULL;
	}
	int64_t t;
	const char *s = json_string_value(v);
	if (!s || ws_time_parse(s, &t)) {
		field_error(details, name, "must be an RFC 3339 time such as 2026-12-01T00:00:00Z");
		return NULL;
	}
	return s;
}

void h_backup_report(api_call *c)
{
	static const char *const fields[] = { "tenant", "completed_at", "location", "size_bytes", "checksum",
					      "succeeded", "restore_verified_at", "restore_result",
					      "restore_duration", NULL };
	json_t *in = body_json_object(c);
	if (!in)
		return;
	json_t *details = json_array();
	body_unknown_fields(in, fields, details);
	const char *tenant = json_string_value(json_object_get(in, "tenant"));
	if (!slug_ok(tenant))
		field_error(details, "tenant", "must be a tenant slug");
	const char *completed = time_field(in, "completed_at", true, details);
	const char *location = json_string_value(json_object_get(in, "location"));
	if (!text_ok(location, LOCATION_MAX, true))
		field_error(details, "location", "must be a non-empty string of at most %d bytes without "
			    "control characters", LOCATION_MAX);
	json_t *size = json_object_get(in, "size_bytes");
	if (!json_is_integer(size) || json_integer_value(size) < 0)
		field_error(details, "size_bytes", "must be an integer >= 0");
	const char *checksum = json_string_value(json_object_get(in, "checksum"));
	if (!text_ok(checksum, CHECKSUM_MAX, false))
		field_error(details, "checksum", "must be a non-empty string of at most %d bytes without "
			    "spaces (e.g. sha256:...)", CHECKSUM_MAX);
	json_t *succ = json_object_get(in, "succeeded");
	if (succ && !json_is_boolean(succ))
		field_error(details, "succeeded", "must be true or false");

	const char *verified = time_field(in, "restore_verified_at", false, details);
	json_t *jresult = json_object_get(in, "restore_result");
	const char *result = jresult && !json_is_null(jresult) ? json_string_value(jresult) : NULL;
	if (jresult && !json_is_null(jresult) && (!result || (strcmp(result, "ok") && strcmp(result, "failed"))))
		field_error(details, "restore_result", "must be ok or failed");
	bool has_verified = json_object_get(in, "restore_verified_at") &&
			    !json_is_null(json_object_get(in, "restore_verified_at"));
	bool has_result = jresult && !json_is_null(jresult);
	if (has_verified != has_result)
		field_error(details, has_verified ? "restore_result" : "restore_verified_at",
			    "restore_verified_at and restore_result go together");
	json_t *jdur = json_object_get(in, "restore_duration");
	char dur[40] = "";
	if (jdur && !json_is_null(jdur)) {
		int64_t secs = -1;
		if (json_is_integer(jdur))
			secs = json_integer_value(jdur);
		else if (json_is_string(jdur) && ws_duration_parse(json_string_value(jdur), &secs))
			secs = -1;
		if (secs < 0)
			field_error(details, "restore_duration", "must be seconds (an integer >= 0) or a "
				    "duration such as 4m30s");
		else
			snprintf(dur, sizeof(dur), "%lld seconds", (long long)secs);
		if (!has_verified)
			field_error(details, "restore_duration", "needs restore_verified_at and restore_result");
	}
	if (json_array_size(details)) {
		json_decref(in);
		reply_error(c, 422, "validation_failed", "the backup report is invalid", details);
		return;
	}
	json_decref(details);
	char sizebuf[24];
	snprintf(sizebuf, sizeof(sizebuf), "%lld", (long long)json_integer_value(size));
	const char *params[] = { tenant, completed, location, sizebuf, checksum,
				 succ ? (json_is_true(succ) ? "true" : "false") : NULL,
				 verified, result, *dur ? dur : NULL, c->actor };
	api_query(c->api->d.pool,
		  "SELECT (r ->> 'created')::boolean, r::text FROM ws_backup_report($1, $2::timestamptz,"
		  " $3, $4::bigint, $5, $6::boolean, $7::timestamptz, $8, $9::interval, $10) r",
		  10, params, backup_done, c);
	json_decref(in);
}

static void tenant_backups_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	api_call *c = arg;
	if (err) {
		reply_db_error(c, err);
		return;
	}
	if (PQntuples(res) == 0) {
		reply_error(c, 404, "not_found", "no such tenant", NULL);
		return;
	}
	reply_text_json(c, 200, res, 0);
}

/* The latest 100 reports of one tenant, oldest first. */
void h_tenant_backups(api_call *c)
{
	if (!ws_principal_sees_tenant(&c->who, c->param)) {
		reply_error(c, 404, "not_found", "no such tenant", NULL);
		return;
	}
	const char *params[] = { c->param };
	api_query(c->api->d.pool,
		  "SELECT json_build_object('backups', COALESCE((SELECT json_agg(ws_backup_doc(b, t.slug)"
		  "   ORDER BY b.completed_at, b.id) FROM (SELECT * FROM backups x WHERE x.tenant_id = t.id"
		  "   ORDER BY x.completed_at DESC, x.id DESC LIMIT 100) b), '[]'))::text"
		  " FROM tenants t WHERE t.slug = $1 AND t.removed_at IS NULL",
		  1, params, tenant_backups_done, c);
}
