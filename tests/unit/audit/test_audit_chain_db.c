/*
 * test_audit_chain_db.c - audit_chain.c against the database: rows appended
 * by ws_audit_append with awkward actors and details are read back as an
 * evidence bundle shows them (details as jsonb text, "at" with microseconds)
 * and every hash is recomputed in C.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "../states/engine_db.h"
#include "wavesched/audit_chain.h"

static edb db;
static PGconn *conn;

static void exec_ok(const char *sql, int n, const char *const *params)
{
	PGresult *r = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(conn));
	PQclear(r);
}

static void append(const char *actor, const char *object, const char *details)
{
	const char *p[] = { actor, object, details };
	exec_ok("SELECT ws_audit_append($1, 'test.append', $2, $3::jsonb)", 3, p);
}

static void test_rows_from_postgres(void **state)
{
	(void)state;
	append("token:plain", "rollout/1", "{}");
	append("token:\"quoted\" \\ back", "rollout/1/wave/0", "{\"comment\": \"ok\\nnext\\tline \\u0007\"}");
	append("tóken:ünïcode ✓", "rollout/1/tenant/a", "{\"n\": 1.50, \"e\": 1e3, \"z\": -0.0, \"big\": 99999999999999999999.000}");
	append("engine", "rollout/1", "{\"bb\": 1, \"a\": {\"zz\": [true, false, null], \"y\": \"\"}, \"ccc\": []}");
	append("engine", "rollout/1", "{\"s\": \"line\\u2028sep\\u0085nel\\u00a0nbsp\\ufeffbom\\u007fdel\"}");
	append("engine", "x", "[1, \"two\", {\"3\": 3}]");
	append("engine", "x", "\"just a string\"");
	append("engine", "x", "{\"emoji\": \"\xf0\x9f\x98\x80\", \"key with spaces\": 1, \"\xc3\xa9\": 2, \"e\": 3}");

	PGresult *r = PQexec(conn, "SELECT id, ws__audit_at(at), actor, action, object, details::text, prev_hash, hash "
				   "FROM audit_log ORDER BY id");
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	assert_true(PQntuples(r) >= 8);
	char prev[65] = WS_AUDIT_ZERO_HASH;
	for (int i = 0; i < PQntuples(r); i++) {
		ws_diags d;
		ws_diags_init(&d);
		size_t len;
		char *safe = ws_audit_json_yaml_safe(PQgetvalue(r, i, 5), (size_t)PQgetlength(r, i, 5), &len);
		assert_non_null(safe);
		ydoc *doc = ydoc_parse("details", safe, len, NULL, &d);
		if (!doc)
			fail_msg("row %s: ydoc cannot read %s: %s", PQgetvalue(r, i, 0), safe,
				 d.len ? d.items[0].message : "?");
		ws_audit_fields f = { .prev_hash = PQgetvalue(r, i, 6), .id = atoll(PQgetvalue(r, i, 0)),
				      .actor = PQgetvalue(r, i, 2), .action = PQgetvalue(r, i, 3),
				      .object = PQgetvalue(r, i, 4), .details = ydoc_root(doc) };
		assert_int_equal(ws_audit_time_us(PQgetvalue(r, i, 1), &f.at_us), 0);
		char h[65];
		assert_int_equal(ws_audit_entry_hash(doc, &f, h, &d), 0);
		if (strcmp(h, PQgetvalue(r, i, 7)) != 0)
			fail_msg("row %s: C hash %s, PostgreSQL %s (details %s)", PQgetvalue(r, i, 0), h,
				 PQgetvalue(r, i, 7), PQgetvalue(r, i, 5));
		assert_string_equal(f.prev_hash, prev);
		snprintf(prev, sizeof(prev), "%s", h);
		/* One changed character anywhere is another hash. */
		f.actor = "someone else";
		assert_int_equal(ws_audit_entry_hash(doc, &f, h, &d), 0);
		assert_string_not_equal(h, PQgetvalue(r, i, 7));
		ydoc_free(doc);
		free(safe);
		ws_diags_free(&d);
	}
	PQclear(r);
}

int main(void)
{
	const char *url = getenv("WS_TEST_PG_URL");
	if (!url || !*url) {
		printf("WS_TEST_PG_URL is not set: skipping\n");
		return 77;
	}
	edb_create(&db, url, "auditchain");
	conn = edb_connect(db.conninfo);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rows_from_postgres),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	PQfinish(conn);
	edb_drop(&db);
	return rc;
}
