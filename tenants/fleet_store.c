/*
 * fleet_store.c - the fleet in PostgreSQL (see fleet_store.h).
 *
 * The diff and the writes are one SQL function (migrations/0001_fleet.sql,
 * ws_fleet_import) called with the canonical JSON of the validated fleet as
 * its single parameter: one statement, so one transaction, and a 10,000
 * tenant import is one round trip instead of tens of thousands.
 */
#include <stdlib.h>
#include <string.h>
#include "wavesched/crypto.h"
#include "wavesched/fleet_store.h"
#include "wavesched/log.h"

struct ws_fleet_store {
	ws_pg_pool *pool;
	ws_fleet *snapshot;     /* owned; NULL until first read */
	int64_t generation;     /* of snapshot; -1 when none */
};

typedef struct snapshot_call {
	ws_fleet_store *s;
	ws_fleet_snapshot_cb cb;
	void *arg;
} snapshot_call;

typedef struct import_call {
	ws_fleet_import_cb cb;
	void *arg;
} import_call;

ws_fleet_store *ws_fleet_store_new(ws_pg_pool *pool)
{
	ws_fleet_store *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->pool = pool;
	s->generation = -1;
	return s;
}

void ws_fleet_store_free(ws_fleet_store *s)
{
	if (!s)
		return;
	fleet_free(s->snapshot);
	free(s);
}

/* One statement: the current generation, and the document only when it
 * differs from the one we hold. */
static const char snapshot_sql[] =
	"SELECT g, CASE WHEN g <> $1::bigint THEN ws_fleet_document()::text END "
	"FROM (SELECT COALESCE(max(id), 0) AS g FROM fleet_imports) s";

static void snapshot_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	snapshot_call *c = arg;
	ws_fleet_store *s = c->s;
	if (err) {
		c->cb(c->arg, NULL, 0, err);
		free(c);
		return;
	}
	int64_t gen = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	if (gen != s->generation || !s->snapshot) {
		const char *doc = PQgetvalue(res, 0, 1);
		ws_diags d;
		ws_diags_init(&d);
		ws_fleet *f = PQgetisnull(res, 0, 1) ? NULL
			: fleet_parse("database", doc, strlen(doc), &d);
		if (!f) {
			/* The database holds something the validator refuses: a
			 * migration or a manual edit went wrong.  Say so loudly and
			 * fail the read rather than serve a guess. */
			char *first = d.len ? ws_diag_format(&d.items[0]) : NULL;
			ws_error("fleet", "stored fleet generation=%lld does not validate: %s",
				 (long long)gen, first ? first : "no document");
			ws_pg_err e = { .code = WS_EDB, .sqlstate = "", .message =
					"the stored fleet does not validate", .detail = first ? first : "" };
			c->cb(c->arg, NULL, 0, &e);
			free(first);
			ws_diags_free(&d);
			free(c);
			return;
		}
		ws_diags_free(&d);
		fleet_free(s->snapshot);
		s->snapshot = f;
		s->generation = gen;
	}
	c->cb(c->arg, s->snapshot, s->generation, NULL);
	free(c);
}

void ws_fleet_store_snapshot(ws_fleet_store *s, ws_fleet_snapshot_cb cb, void *arg)
{
	snapshot_call *c = malloc(sizeof(*c));
	if (!c) {
		ws_pg_err e = { .code = WS_ENOMEM, .sqlstate = "", .message = "out of memory", .detail = "" };
		cb(arg, NULL, 0, &e);
		return;
	}
	*c = (snapshot_call){ s, cb, arg };
	char gen[32];
	snprintf(gen, sizeof(gen), "%lld", (long long)(s->snapshot ? s->generation : -1));
	const char *params[] = { gen };
	int rc = ws_pg_query(s->pool, snapshot_sql, 1, params, snapshot_done, c);
	if (rc) {
		ws_pg_err e = { .code = rc, .sqlstate = "", .message = ws_strerror(rc), .detail = "" };
		free(c);
		cb(arg, NULL, 0, &e);
	}
}

static void import_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	import_call *c = arg;
	if (err) {
		c->cb(c->arg, NULL, err);
		free(c);
		return;
	}
	json_error_t je;
	json_t *report = json_loads(PQgetvalue(res, 0, 0), 0, &je);
	if (!report) {
		ws_pg_err e = { .code = WS_EDB, .sqlstate = "", .message =
				"the import returned an unreadable report", .detail = je.text };
		c->cb(c->arg, NULL, &e);
	} else {
		c->cb(c->arg, report, NULL);
	}
	json_decref(report);
	free(c);
}

void ws_fleet_store_import(ws_fleet_store *s, const ws_fleet *f, bool dry_run,
			   const char *actor, ws_fleet_import_cb cb, void *arg)
{
	json_t *doc = fleet_to_json(f);
	char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(doc);
	import_call *c = malloc(sizeof(*c));
	if (!text || !c) {
		free(text);
		free(c);
		ws_pg_err e = { .code = WS_ENOMEM, .sqlstate = "", .message = "out of memory", .detail = "" };
		cb(arg, NULL, &e);
		return;
	}
	*c = (import_call){ cb, arg };
	char sha[65];
	ws_sha256_hex(text, strlen(text), sha);
	const char *params[] = { text, dry_run ? "true" : "false", actor, sha };
	int rc = ws_pg_query(s->pool,
			     "SELECT ws_fleet_import($1::jsonb, $2::boolean, $3, $4)::text",
			     4, params, import_done, c);
	free(text);
	if (rc) {
		ws_pg_err e = { .code = rc, .sqlstate = "", .message = ws_strerror(rc), .detail = "" };
		free(c);
		cb(arg, NULL, &e);
	}
}
