/*
 * api_tokens.c - POST/GET/DELETE /v1/tokens (admin).
 */
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "api_internal.h"
#include "wavesched/log.h"

/* ---- tokens ----------------------------------------------------------- */

static bool valid_slug(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > SLUG_MAX)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-'))
			return false;
	return true;
}

typedef struct token_new {
	api_call *c;
	char secret[WS_TOKEN_LEN + 1];
} token_new;

static json_t *token_row_json(const PGresult *res, int r)
{
	json_error_t je;
	json_t *tenants = json_loads(PQgetvalue(res, r, 3), 0, &je);
	json_t *o = json_pack("{s:s, s:s, s:s, s:o, s:s, s:s}",
			      "id", PQgetvalue(res, r, 0), "name", PQgetvalue(res, r, 1),
			      "role", PQgetvalue(res, r, 2), "tenants", tenants ? tenants : json_array(),
			      "created_by", PQgetvalue(res, r, 4), "created_at", PQgetvalue(res, r, 5));
	json_object_set_new(o, "expires_at", PQgetisnull(res, r, 6) ? json_null()
			    : json_string(PQgetvalue(res, r, 6)));
	json_object_set_new(o, "revoked_at", PQgetisnull(res, r, 7) ? json_null()
			    : json_string(PQgetvalue(res, r, 7)));
	return o;
}

#define TOKEN_COLUMNS \
	"id::text, name, role, array_to_json(tenants)::text, created_by, " \
	"to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), " \
	"to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), " \
	"to_char(revoked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

static void token_create_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	token_new *t = arg;
	api_call *c = t->c;
	if (err) {
		explicit_bzero(t->secret, sizeof(t->secret));
		free(t);
		reply_db_error(c, err);
		return;
	}
	json_t *o = token_row_json(res, 0);
	/* The secret is in this answer and nowhere else, ever. */
	json_object_set_new(o, "token", json_string(t->secret));
	explicit_bzero(t->secret, sizeof(t->secret));
	free(t);
	ws_info("auth", "token created id=%s role=%s by %s",
		json_string_value(json_object_get(o, "id")),
		json_string_value(json_object_get(o, "role")), c->actor);
	ws_http_add_header(c->req, "Cache-Control", "no-store");
	reply_json(c, 201, o);
}

void h_token_create(api_call *c)
{
	json_t *in = body_json_object(c);
	if (!in)
		return;
	ws_diags d;
	ws_diags_init(&d);
	const char *key;
	json_t *val;
	json_object_foreach(in, key, val) {
		if (strcmp(key, "role") && strcmp(key, "tenants") && strcmp(key, "name") &&
		    strcmp(key, "expires"))
			ws_diag_add(&d, NULL, 0, 0,
				    "unknown field \"%s\" (expected one of: role, tenants, name, expires)", key);
	}
	const char *role_s = json_string_value(json_object_get(in, "role"));
	ws_role role = WS_ROLE_VIEWER;
	if (!role_s || ws_role_parse(role_s, &role))
		ws_diag_add(&d, NULL, 0, 0,
			    "\"role\" must be one of admin, platform, security, approver, tenant, viewer");
	json_t *tenants = json_object_get(in, "tenants");
	json_t *slugs = json_array();
	if (tenants && !json_is_array(tenants))
		ws_diag_add(&d, NULL, 0, 0, "\"tenants\" must be a list of tenant slugs");
	size_t i;
	json_t *v;
	json_array_foreach(tenants, i, v) {
		if (!json_is_string(v) || !valid_slug(json_string_value(v)))
			ws_diag_add(&d, NULL, 0, 0, "tenants[%zu] is not a tenant slug", i);
		else
			json_array_append(slugs, v);
	}
	if (role_s && role == WS_ROLE_TENANT && json_array_size(slugs) == 0)
		ws_diag_add(&d, NULL, 0, 0, "a tenant token needs at least one tenant slug");
	if (role_s && role != WS_ROLE_TENANT && json_array_size(tenants) > 0)
		ws_diag_add(&d, NULL, 0, 0, "only tenant tokens are scoped to tenants");
	const char *name = json_string_value(json_object_get(in, "name"));
	if (json_object_get(in, "name") && (!name || !*name || strlen(name) > 100))
		ws_diag_add(&d, NULL, 0, 0, "\"name\" must be a string of 1 to 100 characters");
	const char *expires = json_string_value(json_object_get(in, "expires"));
	int64_t exp_s = 0;
	if (json_object_get(in, "expires") &&
	    (!expires || ws_duration_parse(expires, &exp_s) || exp_s <= 0 || exp_s > WS_TOKEN_MAX_LIFETIME_S))
		ws_diag_add(&d, NULL, 0, 0,
			    "\"expires\" must be a duration such as 90d or 12h, at most 3650d");
	if (d.len) {
		json_decref(in);
		json_decref(slugs);
		reply_error(c, 422, "validation_failed", "the token request is invalid", diags_json(&d));
		ws_diags_free(&d);
		return;
	}
	token_new *t = calloc(1, sizeof(*t));
	char hash[65], exp_buf[32] = "", *slug_text = json_dumps(slugs, JSON_COMPACT);
	if (!t || !slug_text || ws_token_generate(t->secret, hash)) {
		free(t);
		free(slug_text);
		json_decref(in);
		json_decref(slugs);
		reply_error(c, 500, "internal", "cannot generate a token", NULL);
		return;
	}
	t->c = c;
	if (exp_s)
		snprintf(exp_buf, sizeof(exp_buf), "%lld", (long long)exp_s);
	char auto_name[64];
	snprintf(auto_name, sizeof(auto_name), "%s-token", ws_role_name(role));
	const char *params[] = { name ? name : auto_name, ws_role_name(role), slug_text, hash,
				 c->actor, exp_s ? exp_buf : NULL };
	api_query(c->api->d.pool,
		  "INSERT INTO api_tokens (name, role, tenants, secret_hash, created_by, expires_at) "
		  "SELECT $1, $2, ARRAY(SELECT jsonb_array_elements_text($3::jsonb)), $4, $5, "
		  "now() + make_interval(secs => $6::bigint) "
		  "RETURNING " TOKEN_COLUMNS,
		  6, params, token_create_done, t);
	free(slug_text);
	json_decref(in);
	json_decref(slugs);
}

static void token_list_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	api_call *c = arg;
	if (err) {
		reply_db_error(c, err);
		return;
	}
	json_t *arr = json_array();
	for (int r = 0; r < PQntuples(res); r++)
		json_array_append_new(arr, token_row_json(res, r));
	reply_json(c, 200, json_pack("{s:o}", "tokens", arr));
}

void h_token_list(api_call *c)
{
	api_query(c->api->d.pool,
	          "SELECT " TOKEN_COLUMNS " FROM api_tokens ORDER BY created_at, id",
	          0, NULL, token_list_done, c);
}

static void token_revoke_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	api_call *c = arg;
	if (err) {
		reply_db_error(c, err);
		return;
	}
	if (PQntuples(res) == 0) {
		reply_error(c, 404, "not_found", "no such token", NULL);
		return;
	}
	ws_info("auth", "token revoked id=%s by %s", c->param, c->actor);
	reply_json(c, 200, token_row_json(res, 0));
}

static bool valid_uuid(const char *s)
{
	static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
	if (strlen(s) != sizeof(shape) - 1)
		return false;
	for (size_t i = 0; shape[i]; i++) {
		char ch = s[i];
		bool hex = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
		if (shape[i] == '-' ? ch != '-' : !hex)
			return false;
	}
	return true;
}

void h_token_revoke(api_call *c)
{
	if (!valid_uuid(c->param)) {
		reply_error(c, 404, "not_found", "no such token", NULL);
		return;
	}
	const char *params[] = { c->param, c->actor };
	/* Revoking twice keeps the first revocation time; ws_token_revoke
	 * (0007) audits the first one in the same transaction. */
	api_query(c->api->d.pool,
	          "SELECT " TOKEN_COLUMNS " FROM ws_token_revoke($1::uuid, $2)",
	          2, params, token_revoke_done, c);
}


/* GET /v1/whoami: the calling token as the service sees it, so that a
 * client (the web page) can show the view that fits the role. */
void h_whoami(api_call *c)
{
	json_t *tenants = json_array();
	for (size_t i = 0; i < c->who.n_tenants; i++)
		json_array_append_new(tenants, json_string(c->who.tenants[i]));
	reply_json(c, 200, json_pack("{s:s, s:s, s:s, s:o}", "id", c->who.id, "name", c->who.name ? c->who.name : "",
				     "role", ws_role_name(c->who.role), "tenants", tenants));
}
