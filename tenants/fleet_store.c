/*
 * fleet_store.c - the fleet in PostgreSQL (see fleet_store.h).
 *
 * The diff and the writes are one SQL function (migrations/0001_fleet.sql,
 * ws_fleet_import) called with the canonical JSON of the validated fleet as
 * its single parameter: one statement, so one transaction, and a 10,000
 * tenant import is one round trip instead of tens of thousands.
 *
 * Reading: one statement returns the current generation, and the document
 * only when it differs from the snapshot we hold.  A new document is parsed
 * on the thread pool (a 10,000 tenant fleet takes a few hundred
 * milliseconds: far too long for the loop).
 */
#include <stdlib.h>
#include <string.h>
#include "wavesched/crypto.h"
#include "wavesched/fleet_store.h"
#include "wavesched/log.h"

typedef struct waiter waiter;
struct waiter {
	ws_fleet_snapshot_cb cb;
	void *arg;
	waiter *next;
};

/* A parse of one generation's document, shared by everyone who asked for
 * that generation while it ran. */
typedef struct refresh {
	uv_work_t work;
	ws_fleet_store *store;
	int64_t generation;
	char *doc;          /* owned; freed after the parse */
	ws_fleet *fleet;    /* result */
	char *error;        /* or this, malloc'd */
	waiter *waiters;
} refresh;

struct ws_fleet_store {
	uv_loop_t *loop;
	ws_pg_pool *pool;
	ws_fleet_snapshot *current;   /* one reference held by the store */
	refresh *pending;             /* the latest refresh in progress */
};

typedef struct read_call {
	ws_fleet_store *s;
	waiter *w;
} read_call;

typedef struct import_call {
	ws_fleet_import_cb cb;
	void *arg;
} import_call;

void ws_fleet_snapshot_retain(ws_fleet_snapshot *snap)
{
	snap->refs++;
}

void ws_fleet_snapshot_release(ws_fleet_snapshot *snap)
{
	if (snap && --snap->refs == 0) {
		fleet_free(snap->owned);
		free(snap);
	}
}

ws_fleet_store *ws_fleet_store_new(uv_loop_t *loop, ws_pg_pool *pool)
{
	ws_fleet_store *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->loop = loop;
	s->pool = pool;
	return s;
}

void ws_fleet_store_free(ws_fleet_store *s)
{
	if (!s)
		return;
	ws_fleet_snapshot_release(s->current);
	free(s);
}

static void fail_waiters(waiter *w, int code, const char *message, const char *detail)
{
	ws_pg_err e = { .code = code, .sqlstate = "", .message = message, .detail = detail ? detail : "" };
	while (w) {
		waiter *next = w->next;
		w->cb(w->arg, NULL, &e);
		free(w);
		w = next;
	}
}

static void refresh_work_cb(uv_work_t *req)
{
	refresh *r = req->data;
	ws_diags d;
	ws_diags_init(&d);
	r->fleet = fleet_parse("database", r->doc, strlen(r->doc), &d);
	if (!r->fleet) {
		r->error = d.len ? ws_diag_format(&d.items[0]) : NULL;
		if (!r->error)
			r->error = strdup("no document");
	}
	ws_diags_free(&d);
	free(r->doc);
	r->doc = NULL;
}

static void refresh_after_cb(uv_work_t *req, int status)
{
	refresh *r = req->data;
	ws_fleet_store *s = r->store;
	if (s->pending == r)
		s->pending = NULL;
	if (status != 0 || !r->fleet) {
		/* The database holds something the validator refuses: a
		 * migration or a manual edit went wrong.  Say so loudly and fail
		 * the read rather than serve a guess. */
		ws_error("fleet", "stored fleet generation=%lld does not validate: %s",
			 (long long)r->generation, r->error ? r->error : "the parse was cancelled");
		fail_waiters(r->waiters, WS_EDB, "the stored fleet does not validate", r->error);
		fleet_free(r->fleet);
		free(r->error);
		free(r->doc);   /* still here when the parse was cancelled */
		free(r);
		return;
	}
	ws_fleet_snapshot *snap = calloc(1, sizeof(*snap));
	if (!snap) {
		fail_waiters(r->waiters, WS_ENOMEM, "out of memory", NULL);
		fleet_free(r->fleet);
		free(r);
		return;
	}
	snap->owned = r->fleet;
	snap->fleet = r->fleet;
	snap->generation = r->generation;
	snap->refs = 1;   /* ours, for the callbacks below */
	if (!s->current || snap->generation >= s->current->generation) {
		ws_fleet_snapshot_release(s->current);
		s->current = snap;
		ws_fleet_snapshot_retain(snap);
	}
	for (waiter *w = r->waiters, *next; w; w = next) {
		next = w->next;
		w->cb(w->arg, snap, NULL);
		free(w);
	}
	ws_fleet_snapshot_release(snap);
	free(r);
}

/* One statement: the current generation, and the document only when it
 * differs from the one we hold. */
static const char snapshot_sql[] =
	"SELECT g, CASE WHEN g <> $1::bigint THEN ws_fleet_document()::text END "
	"FROM (SELECT COALESCE(max(id), 0) AS g FROM fleet_imports) s";

static void read_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	read_call *c = arg;
	ws_fleet_store *s = c->s;
	waiter *w = c->w;
	free(c);
	if (err) {
		w->cb(w->arg, NULL, err);
		free(w);
		return;
	}
	int64_t gen = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	if (PQgetisnull(res, 0, 1) && s->current && s->current->generation == gen) {
		w->cb(w->arg, s->current, NULL);
		free(w);
		return;
	}
	if (s->pending && s->pending->generation == gen) {
		w->next = s->pending->waiters;
		s->pending->waiters = w;
		return;
	}
	if (PQgetisnull(res, 0, 1)) {
		/* Our snapshot moved on while the query ran (a concurrent
		 * refresh of a newer generation installed it).  Ask again. */
		ws_fleet_store_snapshot(s, w->cb, w->arg);
		free(w);
		return;
	}
	refresh *r = calloc(1, sizeof(*r));
	char *doc = strdup(PQgetvalue(res, 0, 1));
	if (!r || !doc) {
		free(r);
		free(doc);
		fail_waiters(w, WS_ENOMEM, "out of memory", NULL);
		return;
	}
	r->store = s;
	r->generation = gen;
	r->doc = doc;
	r->waiters = w;
	r->work.data = r;
	int rc = uv_queue_work(s->loop, &r->work, refresh_work_cb, refresh_after_cb);
	if (rc) {
		fail_waiters(w, WS_EIO, "cannot queue the fleet parse", uv_strerror(rc));
		free(r->doc);
		free(r);
		return;
	}
	s->pending = r;
}

void ws_fleet_store_snapshot(ws_fleet_store *s, ws_fleet_snapshot_cb cb, void *arg)
{
	read_call *c = malloc(sizeof(*c));
	waiter *w = calloc(1, sizeof(*w));
	if (!c || !w) {
		free(c);
		free(w);
		ws_pg_err e = { .code = WS_ENOMEM, .sqlstate = "", .message = "out of memory", .detail = "" };
		cb(arg, NULL, &e);
		return;
	}
	w->cb = cb;
	w->arg = arg;
	c->s = s;
	c->w = w;
	char gen[32];
	snprintf(gen, sizeof(gen), "%lld", (long long)(s->current ? s->current->generation : -1));
	const char *params[] = { gen };
	int rc = ws_pg_query(s->pool, snapshot_sql, 1, params, read_done, c);
	if (rc) {
		free(c);
		fail_waiters(w, rc, "cannot read the fleet: the database is unavailable", NULL);
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

void ws_fleet_store_import(ws_fleet_store *s, const char *canonical_json, bool dry_run,
			   const char *actor, ws_fleet_import_cb cb, void *arg)
{
	import_call *c = malloc(sizeof(*c));
	if (!c) {
		ws_pg_err e = { .code = WS_ENOMEM, .sqlstate = "", .message = "out of memory", .detail = "" };
		cb(arg, NULL, &e);
		return;
	}
	*c = (import_call){ cb, arg };
	if (!actor || !*actor)
		actor = "unknown";   /* fleet_imports.actor is required */
	char sha[65];
	ws_sha256_hex(canonical_json, strlen(canonical_json), sha);
	const char *params[] = { canonical_json, dry_run ? "true" : "false", actor, sha };
	int rc = ws_pg_query(s->pool,
			     "SELECT ws_fleet_import($1::jsonb, $2::boolean, $3, $4)::text",
			     4, params, import_done, c);
	if (rc) {
		ws_pg_err e = { .code = rc, .sqlstate = "", .detail = "",
				.message = "cannot import the fleet: the database is unavailable" };
		free(c);
		cb(arg, NULL, &e);
	}
}
