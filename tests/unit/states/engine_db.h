/*
 * engine_db.h - a fresh database with the project's migrations, for the
 * tests of the engine schema and of the lease (cmocka, blocking libpq: these
 * helpers run before and after a test's loop, never on it).
 *
 * edb_create() makes database ws_<name>_<pid> on the server of
 * WS_TEST_PG_URL and applies migrations/ with `wavesched migrate`'s own
 * code; edb_drop() removes it.  conninfo is a keyword/value string for that
 * database, usable with PQconnectdb and with ws_pg_opts.conninfo.
 */
#ifndef WS_ENGINE_DB_H
#define WS_ENGINE_DB_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <libpq-fe.h>
#include "ws_config.h"
#include "wavesched/migrate.h"

typedef struct edb {
	char name[64];
	char admin[2048];      /* conninfo of the server's "postgres" database */
	char conninfo[2048];   /* conninfo of ours */
} edb;

/* A keyword/value conninfo equal to `url` with dbname replaced. */
static inline void edb_conninfo(const char *url, const char *dbname, char *out, size_t size)
{
	char *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(url, &err);
	assert_non_null(opts);
	size_t len = 0;
	out[0] = '\0';
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		const char *v = strcmp(o->keyword, "dbname") == 0 ? dbname : o->val;
		if (!v)
			continue;
		len += (size_t)snprintf(out + len, size - len, "%s%s='", len ? " " : "", o->keyword);
		for (const char *p = v; *p && len + 3 < size; p++) {
			if (*p == '\'' || *p == '\\')
				out[len++] = '\\';
			out[len++] = *p;
		}
		len += (size_t)snprintf(out + len, size - len, "'");
		assert_true(len < size);
	}
	PQconninfoFree(opts);
}

static inline PGconn *edb_connect(const char *conninfo)
{
	PGconn *c = PQconnectdb(conninfo);
	if (PQstatus(c) != CONNECTION_OK)
		fail_msg("cannot connect: %s", PQerrorMessage(c));
	PGresult *r = PQexec(c, "SET client_min_messages = warning");
	PQclear(r);
	return c;
}

static inline void edb_admin_exec(const edb *db, const char *sql)
{
	PGconn *c = edb_connect(db->admin);
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
}

/* Creates and migrates ws_<name>_<pid>. */
static inline void edb_create(edb *db, const char *url, const char *name)
{
	memset(db, 0, sizeof(*db));
	snprintf(db->name, sizeof(db->name), "ws_%s_%ld", name, (long)getpid());
	edb_conninfo(url, "postgres", db->admin, sizeof(db->admin));
	edb_conninfo(url, db->name, db->conninfo, sizeof(db->conninfo));
	char sql[256];
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", db->name);
	edb_admin_exec(db, sql);
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", db->name);
	edb_admin_exec(db, sql);

	ws_migration_set set;
	ws_diags d;
	ws_diags_init(&d);
	assert_int_equal(ws_migrations_load(WS_MIGRATIONS_SOURCE, &set, &d), 0);
	char *out = NULL;
	size_t outlen = 0;
	FILE *fp = open_memstream(&out, &outlen);
	int rc = ws_migrate_run(db->conninfo, &set, false, fp, &d);
	fclose(fp);
	if (rc)
		fail_msg("migrate failed: %s", d.len ? d.items[0].message : "?");
	free(out);
	ws_migrations_free(&set);
	ws_diags_free(&d);
}

static inline void edb_drop(edb *db)
{
	char sql[256];
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", db->name);
	edb_admin_exec(db, sql);
}

#endif
