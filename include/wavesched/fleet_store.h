/*
 * fleet_store.h - the fleet in PostgreSQL: import (one transaction, all or
 * nothing, a report of what was added, changed and removed) and a snapshot
 * cache for readers.
 *
 * The snapshot is the parsed fleet of the latest import, keyed by the import
 * generation (fleet_imports.id).  Each read asks the database for the current
 * generation and re-reads the document only when it moved, so every API
 * process sees imports made through any other one.  A snapshot passed to a
 * callback is valid only during that callback.
 */
#ifndef WAVESCHED_FLEET_STORE_H
#define WAVESCHED_FLEET_STORE_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include "wavesched/fleet.h"
#include "wavesched/pg.h"

typedef struct ws_fleet_store ws_fleet_store;

WS_API ws_fleet_store *ws_fleet_store_new(ws_pg_pool *pool);
WS_API void ws_fleet_store_free(ws_fleet_store *s);

/* f is NULL iff err is non-NULL.  An empty database gives an empty fleet. */
typedef void (*ws_fleet_snapshot_cb)(void *arg, const ws_fleet *f, int64_t generation,
				     const ws_pg_err *err);
WS_API void ws_fleet_store_snapshot(ws_fleet_store *s, ws_fleet_snapshot_cb cb, void *arg);

/* Imports a validated fleet.  report (borrowed) is
 * {"added"|"changed"|"removed": {"clusters","tenants","calendars"}, "dry_run",
 *  "generation"?}. */
typedef void (*ws_fleet_import_cb)(void *arg, json_t *report, const ws_pg_err *err);
WS_API void ws_fleet_store_import(ws_fleet_store *s, const ws_fleet *f, bool dry_run,
				  const char *actor, ws_fleet_import_cb cb, void *arg);

#endif
