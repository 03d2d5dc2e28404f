/*
 * api_reviews.c - GET /v1/reviews and POST /v1/reviews/{id}/close: the
 * after-the-fact reviews of break-glass rollouts (migrations/0015_reviews.sql).
 *
 * Reading is for every role that reads the fleet; closing is for people
 * who may decide (admin, platform, security, approver), never the
 * rollout's creator (checked in ws_review_close, like approvals).
 */
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "api_internal.h"

#define COMMENT_MAX 4000

static void text_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	reply_doc_row(arg, res, err, 200, "no such review");
}

void h_review_list(api_call *c)
{
	const char *st = ws_http_req_query_param(c->req, "state");
	if (st && strcmp(st, "open") && strcmp(st, "overdue") && strcmp(st, "closed") && strcmp(st, "all")) {
		reply_error(c, 400, "bad_request", "state must be open, overdue, closed or all", NULL);
		return;
	}
	/* Default: what still needs someone (open, overdue included). */
	const char *params[] = { !st ? "open" : strcmp(st, "all") ? st : NULL };
	api_query(c->api->d.pool, "SELECT ws_review_list($1)::text", 1, params, text_done, c);
}

void h_review_close(api_call *c)
{
	if (c->who.role == WS_ROLE_VIEWER || c->who.role == WS_ROLE_TENANT) {
		char msg[96];
		snprintf(msg, sizeof(msg), "role %s may not close reviews", ws_role_name(c->who.role));
		reply_error(c, 403, "forbidden", msg, NULL);
		return;
	}
	size_t n = strlen(c->param);
	if (n == 0 || n > 18 || strspn(c->param, "0123456789") != n || strspn(c->param, "0") == n) {
		reply_error(c, 404, "not_found", "no such review", NULL);
		return;
	}
	json_t *in = body_json_object(c);
	if (!in)
		return;
	static const char *const allowed[] = { "comment", NULL };
	json_t *details = json_array();
	body_unknown_fields(in, allowed, details);
	const char *comment = json_string_value(json_object_get(in, "comment"));
	if (!comment || !*comment || strlen(comment) > COMMENT_MAX)
		field_error(details, "comment", "comment must say what was checked (1 to %d bytes)", COMMENT_MAX);
	if (json_array_size(details)) {
		json_decref(in);
		reply_error(c, 422, "validation_failed", "the review request is invalid", details);
		return;
	}
	json_decref(details);
	const char *params[] = { c->param, c->actor, ws_role_name(c->who.role), comment };
	api_query(c->api->d.pool, "SELECT ws_review_close($1::bigint, $2, $3, $4)::text", 4, params, text_done, c);
	json_decref(in);
}
