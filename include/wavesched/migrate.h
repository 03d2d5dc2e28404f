/*
 * migrate.h - schema migrations: numbered SQL files applied in order, each
 * once, each in its own transaction, recorded in schema_migrations with its
 * sha256 (a changed file that was already applied is an error, not silently
 * skipped).
 */
#ifndef WAVESCHED_MIGRATE_H
#define WAVESCHED_MIGRATE_H

#include <stdbool.h>
#include <stdio.h>
#include "wavesched/diag.h"

typedef struct ws_migration {
	int version;         /* the number before the first '_' */
	char *name;          /* file name, e.g. "0001_fleet.sql" */
	char *sql;
	char sha256[65];
} ws_migration;

typedef struct ws_migration_set {
	ws_migration *items;
	size_t len;
} ws_migration_set;

/* Reads DIR/NNNN_*.sql sorted by number; duplicate numbers are an error. */
WS_API int ws_migrations_load(const char *dir, ws_migration_set *set, ws_diags *d);
WS_API void ws_migrations_free(ws_migration_set *set);

/* The SQL that lists applied migrations: version, name, sha256. */
#define WS_MIGRATIONS_APPLIED_SQL \
	"SELECT version, name, sha256 FROM schema_migrations ORDER BY version"

/*
 * `wavesched migrate`: connects (blocking libpq: a one-shot command, not the
 * serving loop), applies what is pending, or with status_only prints
 * applied and pending.  Output goes to `out`.  Returns 0, WS_EUNAVAIL when
 * the database cannot be reached, WS_EDB or WS_EINVAL otherwise.
 */
WS_API int ws_migrate_run(const char *conninfo, const ws_migration_set *set,
			  bool status_only, FILE *out, ws_diags *d);

#endif
