/*
 * fleet_store.h - the fleet in PostgreSQL: import (one transaction, all or
 * nothing, a report of what was added, changed and removed) and snapshots
 * for readers.
 *
 * A snapshot is the parsed fleet of the latest import, keyed by the import
 * generation (fleet_imports.id).  Each read asks the database for the current
 * generation and re-reads the document only when it moved, so every API
 * process sees imports made through any other one.  Parsing a changed
 * document runs on libuv's thread pool, never on the loop, and concurrent
 * readers of the same generation share one parse.
 *
 * Snapshots are reference counted on the loop thread: a callback's snapshot
 * is borrowed; ws_fleet_snapshot_retain() keeps it (for instance across a
 * uv_queue_work, where the worker may read it), ws_fleet_snapshot_release()
 * lets it go.  A snapshot is immutable, so workers may read it concurrently.
 *
 * Callbacks may run before the call returns when the request cannot even be
 * sent (the database is known to be down): callers must be ready for that.
 * Free the store only after the loop has run dry (pending parses refer to it).
 */
#ifndef WAVESCHED_FLEET_STORE_H
#define WAVESCHED_FLEET_STORE_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include "wavesched/fleet.h"
#include "wavesched/pg.h"

typedef struct ws_fleet_store ws_fleet_store;

typedef struct ws_fleet_snapshot {
	const ws_fleet *fleet;
	int64_t generation;     /* 0 for a database that was never imported into */
	/* private */
	ws_fleet *owned;
	int refs;
} ws_fleet_snapshot;

WS_API void ws_fleet_snapshot_retain(ws_fleet_snapshot *s);
WS_API void ws_fleet_snapshot_release(ws_fleet_snapshot *s);

WS_API ws_fleet_store *ws_fleet_store_new(uv_loop_t *loop, ws_pg_pool *pool);
/* Snapshots still retained by callers stay valid after this. */
WS_API void ws_fleet_store_free(ws_fleet_store *s);

/* snap is NULL iff err is non-NULL. */
typedef void (*ws_fleet_snapshot_cb)(void *arg, ws_fleet_snapshot *snap, const ws_pg_err *err);
WS_API void ws_fleet_store_snapshot(ws_fleet_store *s, ws_fleet_snapshot_cb cb, void *arg);

/* Imports a fleet given as its canonical JSON text (fleet_to_json of a
 * validated fleet).  report (borrowed) is
 * {"added"|"changed"|"removed": {"clusters","tenants","calendars"}, "dry_run",
 *  "generation"?}. */
typedef void (*ws_fleet_import_cb)(void *arg, json_t *report, const ws_pg_err *err);
WS_API void ws_fleet_store_import(ws_fleet_store *s, const char *canonical_json, bool dry_run,
				  const char *actor, ws_fleet_import_cb cb, void *arg);

#endif
