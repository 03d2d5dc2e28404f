/*
 * migrate.c - apply migrations/NNNN_*.sql in order (see migrate.h).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>
#include "wavesched/crypto.h"
#include "wavesched/migrate.h"

#define MIGRATION_MAX_BYTES (4u << 20)

static int read_file(const char *path, char **out, ws_diags *d)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		ws_diag_add(d, path, 0, 0, "cannot open: %s", strerror(errno));
		return WS_EIO;
	}
	char *buf = malloc(MIGRATION_MAX_BYTES + 1);
	if (!buf) {
		fclose(f);
		ws_diag_add(d, path, 0, 0, "out of memory");
		return WS_ENOMEM;
	}
	size_t n = fread(buf, 1, MIGRATION_MAX_BYTES + 1, f);
	int err = ferror(f) ? errno : 0;
	fclose(f);
	if (err || n > MIGRATION_MAX_BYTES) {
		if (err)
			ws_diag_add(d, path, 0, 0, "read error: %s", strerror(err));
		else
			ws_diag_add(d, path, 0, 0, "larger than %u bytes", MIGRATION_MAX_BYTES);
		free(buf);
		return WS_EIO;
	}
	buf[n] = '\0';
	char *fit = realloc(buf, n + 1);   /* kept for the service's lifetime: no slack */
	*out = fit ? fit : buf;
	return 0;
}

static int migration_cmp(const void *a, const void *b)
{
	const ws_migration *x = a, *y = b;
	return (x->version > y->version) - (x->version < y->version);
}

int ws_migrations_load(const char *dir, ws_migration_set *set, ws_diags *d)
{
	memset(set, 0, sizeof(*set));
	DIR *dp = opendir(dir);
	if (!dp) {
		ws_diag_add(d, dir, 0, 0, "cannot open migrations folder: %s", strerror(errno));
		return WS_EIO;
	}
	int rc = 0;
	size_t cap = 0;
	struct dirent *de;
	while ((de = readdir(dp)) != NULL) {
		const char *nm = de->d_name;
		size_t len = strlen(nm);
		if (len < 5 || strcmp(nm + len - 4, ".sql") != 0)
			continue;
		if (!isdigit((unsigned char)nm[0]) || !strchr(nm, '_')) {
			ws_diag_add(d, dir, 0, 0, "migration file \"%s\" is not named NNNN_name.sql", nm);
			rc = WS_EINVAL;
			continue;
		}
		if (set->len == cap) {
			cap = cap ? cap * 2 : 16;
			ws_migration *items = realloc(set->items, cap * sizeof(*items));
			if (!items) {
				rc = WS_ENOMEM;
				break;
			}
			set->items = items;
		}
		ws_migration *m = &set->items[set->len];
		memset(m, 0, sizeof(*m));
		char *num_end;
		long num = strtol(nm, &num_end, 10);
		if (*num_end != '_' || num < 1 || num > 999999) {
			ws_diag_add(d, dir, 0, 0, "migration file \"%s\": the number must be 1 to 999999", nm);
			rc = WS_EINVAL;
			continue;
		}
		m->version = (int)num;
		m->name = strdup(nm);
		char *path = NULL;
		if (asprintf(&path, "%s/%s", dir, nm) < 0 || !m->name) {
			free(m->name);
			free(path);
			rc = WS_ENOMEM;
			break;
		}
		int r = read_file(path, &m->sql, d);
		free(path);
		if (r) {
			free(m->name);
			rc = r;
			continue;
		}
		ws_sha256_hex(m->sql, strlen(m->sql), m->sha256);
		set->len++;
	}
	closedir(dp);
	qsort(set->items, set->len, sizeof(*set->items), migration_cmp);
	for (size_t i = 1; i < set->len; i++) {
		if (set->items[i].version == set->items[i - 1].version) {
			ws_diag_add(d, dir, 0, 0, "migrations \"%s\" and \"%s\" have the same number",
				    set->items[i - 1].name, set->items[i].name);
			rc = WS_EINVAL;
		}
	}
	if (rc)
		ws_migrations_free(set);
	return rc;
}

void ws_migrations_free(ws_migration_set *set)
{
	for (size_t i = 0; i < set->len; i++) {
		free(set->items[i].name);
		free(set->items[i].sql);
	}
	free(set->items);
	memset(set, 0, sizeof(*set));
}

/* libpq errors become ours here, with the server's detail when it has one. */
static int pq_fail(ws_diags *d, const char *what, PGresult *res, PGconn *conn)
{
	const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *pos = res ? PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION) : NULL;
	if (!msg)
		msg = PQerrorMessage(conn);
	ws_diag_add(d, NULL, 0, 0, "%s: %s%s%s", what, msg, pos ? " at character " : "",
		    pos ? pos : "");
	PQclear(res);
	return WS_EDB;
}

static int exec_ok(PGconn *conn, const char *sql, int n, const char *const *params,
		   PGresult **out, ws_diags *d, const char *what)
{
	PGresult *res = n ? PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0)
			  : PQexec(conn, sql);
	ExecStatusType st = PQresultStatus(res);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		return pq_fail(d, what, res, conn);
	if (out)
		*out = res;
	else
		PQclear(res);
	return 0;
}

int ws_migrate_run(const char *conninfo, const ws_migration_set *set, bool status_only,
		   FILE *out, ws_diags *d)
{
	PGconn *conn = PQconnectdb(conninfo);
	if (PQstatus(conn) != CONNECTION_OK) {
		char *msg = PQerrorMessage(conn);
		size_t n = strlen(msg);
		while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
			msg[--n] = '\0';
		ws_diag_add(d, NULL, 0, 0, "cannot connect to the database: %s", msg);
		PQfinish(conn);
		return WS_EUNAVAIL;
	}
	int rc = 0;
	PGresult *res = NULL;
	char *applied = calloc(set->len ? set->len : 1, 1);
	if (!applied) {
		PQfinish(conn);
		return WS_ENOMEM;
	}
	if ((rc = exec_ok(conn, "SET client_min_messages = warning", 0, NULL, NULL, d, "configuring the session")))
		goto done;
	/* --status writes nothing: without the table, nothing is applied. */
	if ((rc = exec_ok(conn, "SELECT to_regclass('schema_migrations') IS NOT NULL", 0, NULL, &res, d,
			  "looking for schema_migrations")))
		goto done;
	bool have_table = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	res = NULL;
	if (!have_table && !status_only &&
	    (rc = exec_ok(conn,
			  "CREATE TABLE IF NOT EXISTS schema_migrations ("
			  " version integer PRIMARY KEY, name text NOT NULL, sha256 text NOT NULL,"
			  " applied_at timestamptz NOT NULL DEFAULT now())",
			  0, NULL, NULL, d, "creating schema_migrations")))
		goto done;
	if ((rc = exec_ok(conn, have_table || !status_only ? WS_MIGRATIONS_APPLIED_SQL
			  : "SELECT 1 WHERE false", 0, NULL, &res, d, "reading schema_migrations")))
		goto done;

	/* Applied migrations must still be the files we have. */
	for (int r = 0; r < PQntuples(res); r++) {
		int v = atoi(PQgetvalue(res, r, 0));
		const char *sha = PQgetvalue(res, r, 2);
		size_t i;
		for (i = 0; i < set->len && set->items[i].version != v; i++)
			;
		if (i == set->len) {
			ws_diag_add(d, NULL, 0, 0,
				    "the database has migration %d (%s) that this build does not know: "
				    "it was migrated by a newer wavesched", v, PQgetvalue(res, r, 1));
			rc = WS_EINVAL;
		} else if (strcmp(sha, set->items[i].sha256) != 0) {
			ws_diag_add(d, NULL, 0, 0,
				    "migration %s was changed after it was applied "
				    "(recorded sha256 %.12s…, file %.12s…)",
				    set->items[i].name, sha, set->items[i].sha256);
			rc = WS_EINVAL;
		} else {
			applied[i] = 1;
		}
	}
	PQclear(res);
	res = NULL;
	if (rc)
		goto done;

	size_t pending = 0;
	for (size_t i = 0; i < set->len; i++)
		pending += !applied[i];
	if (status_only) {
		for (size_t i = 0; i < set->len; i++)
			fprintf(out, "%-9s %s\n", applied[i] ? "applied" : "pending", set->items[i].name);
		fprintf(out, "%zu applied, %zu pending\n", set->len - pending, pending);
		goto done;
	}

	for (size_t i = 0; i < set->len; i++) {
		const ws_migration *m = &set->items[i];
		if (applied[i])
			continue;
		char ver[16];
		snprintf(ver, sizeof(ver), "%d", m->version);
		const char *params[] = { ver, m->name, m->sha256 };
		/* The advisory lock serialises concurrent migrate runs; the
		 * re-check under the lock makes the second one a no-op. */
		if ((rc = exec_ok(conn, "BEGIN", 0, NULL, NULL, d, "begin")))
			goto done;
		if ((rc = exec_ok(conn, "SELECT pg_advisory_xact_lock(hashtext('wavesched.migrate'))",
				  0, NULL, NULL, d, "locking")))
			goto rollback;
		if ((rc = exec_ok(conn, "SELECT 1 FROM schema_migrations WHERE version = $1",
				  1, params, &res, d, "checking")))
			goto rollback;
		int done_already = PQntuples(res) > 0;
		PQclear(res);
		res = NULL;
		if (done_already) {
			exec_ok(conn, "ROLLBACK", 0, NULL, NULL, d, "rollback");
			continue;
		}
		char what[300];
		snprintf(what, sizeof(what), "migration %s failed", m->name);
		if ((rc = exec_ok(conn, m->sql, 0, NULL, NULL, d, what)))
			goto rollback;
		if ((rc = exec_ok(conn,
				  "INSERT INTO schema_migrations (version, name, sha256) VALUES ($1, $2, $3)",
				  3, params, NULL, d, "recording")))
			goto rollback;
		if ((rc = exec_ok(conn, "COMMIT", 0, NULL, NULL, d, "commit")))
			goto done;
		fprintf(out, "applied %s\n", m->name);
		continue;
rollback:
		exec_ok(conn, "ROLLBACK", 0, NULL, NULL, NULL, "rollback");
		goto done;
	}
	fprintf(out, "database is up to date (%zu migrations)\n", set->len);
done:
	free(applied);
	PQfinish(conn);
	return rc;
}
