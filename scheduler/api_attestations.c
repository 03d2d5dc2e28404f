/*
 * api_attestations.c - release attestations (issue 7):
 * POST /v1/releases/{version}/attestations records one,
 * GET  /v1/releases/{version}/attestations lists them, oldest first.
 *
 * An attestation says that a named check (tests, image-scan, signature, or
 * any name) passed or failed for exactly one artifact: its digest must be
 * the release's, or it is refused with both digests named.  Rows are
 * appended, never changed; the latest of a name counts for the gate of a
 * policy's `gates: {attestations: [...]}` (engine_decide.c) and for
 * starting a rollout (migrations/0021_attestations.sql).
 *
 * The document is kept as jsonb and its sha256 is taken over the text
 * PostgreSQL prints for it (0021 says why); the answer carries that
 * sha256, so a producer can keep it beside its own copy.
 *
 * Roles: recording needs the release write permission (admin, platform,
 * security: a CI pipeline gets a platform token); reading is for everyone
 * who reads releases (not tenant tokens).
 */
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "api_internal.h"
#include "wavesched/log.h"

#define NAME_MAX_LEN 63
#define PRODUCED_BY_MAX 200
/* The document's own cap; 0021 checks the stored text against 64 KiB as
 * well (jsonb prints a little more than the compact form). */
#define DOCUMENT_MAX 65536

static bool name_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > NAME_MAX_LEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
	return true;
}

/* Free text for people (a pipeline, a scanner and its run), one line:
 * no control characters, at most PRODUCED_BY_MAX characters. */
static bool produced_by_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0, chars = 0;
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch < 0x20 || ch == 0x7f)
			return false;
		if ((ch & 0xc0) != 0x80)
			chars++;
	}
	return chars <= PRODUCED_BY_MAX;
}

static void attest_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	api_call *c = arg;
	if (!err && PQntuples(res) == 1)
		ws_info("release", "release=%s attestation recorded by %s", c->param, c->actor);
	reply_doc_row(c, res, err, 201, "no such release");
}

void h_release_attest(api_call *c)
{
	static const char *const fields[] = { "name", "result", "digest", "document", "produced_by", NULL };
	if (!release_version_ok(c->param)) {
		reply_error(c, 404, "not_found", "no such release", NULL);
		return;
	}
	json_t *in = body_json_object(c);
	if (!in)
		return;
	json_t *details = json_array();
	body_unknown_fields(in, fields, details);
	const char *name = json_string_value(json_object_get(in, "name"));
	const char *result = json_string_value(json_object_get(in, "result"));
	const char *digest = json_string_value(json_object_get(in, "digest"));
	const char *produced_by = json_string_value(json_object_get(in, "produced_by"));
	json_t *doc = json_object_get(in, "document");
	char *text = NULL;
	if (!name_ok(name))
		field_error(details, "name", "must be 1 to %d characters of a-z 0-9 - (e.g. tests, image-scan)",
			    NAME_MAX_LEN);
	if (!result || (strcmp(result, "passed") && strcmp(result, "failed")))
		field_error(details, "result", "must be passed or failed");
	if (!release_digest_ok(digest))
		field_error(details, "digest", "must be the release's artifact digest: \"sha256:\" followed by "
			    "64 lowercase hex digits");
	if (!produced_by_ok(produced_by))
		field_error(details, "produced_by", "must say who or what produced the attestation in 1 to %d "
			    "characters without control characters (e.g. \"ci: pipeline 4411\")", PRODUCED_BY_MAX);
	if (!json_is_object(doc)) {
		field_error(details, "document", "must be a JSON object (e.g. an in-toto statement or a "
			    "test summary)");
	} else {
		/* No \u0000 can be in it: the body parser refuses them
		 * (no JSON_ALLOW_NUL), as jsonb would. */
		text = json_dumps(doc, JSON_COMPACT);
		if (!text)
			field_error(details, "document", "cannot be written as JSON");
		else if (strlen(text) > DOCUMENT_MAX)
			field_error(details, "document", "is %zu bytes; at most %d", strlen(text), DOCUMENT_MAX);
	}
	if (json_array_size(details)) {
		free(text);
		json_decref(in);
		reply_error(c, 422, "validation_failed", "the attestation is invalid", details);
		return;
	}
	json_decref(details);
	const char *params[] = { c->param, name, result, digest, text, produced_by, c->actor };
	api_query(c->api->d.pool,
		  "SELECT ws_release_attest($1, $2, $3, $4, $5::jsonb, $6, $7)::text", 7, params,
		  attest_done, c);
	free(text);
	json_decref(in);
}

static void list_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	reply_doc_row(arg, res, err, 200, "no such release");
}

void h_release_attestations(api_call *c)
{
	if (!release_version_ok(c->param)) {
		reply_error(c, 404, "not_found", "no such release", NULL);
		return;
	}
	const char *params[] = { c->param };
	api_query(c->api->d.pool, "SELECT ws_release_attestations($1)::text", 1, params, list_done, c);
}
