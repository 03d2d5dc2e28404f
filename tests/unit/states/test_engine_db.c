/*
 * test_engine_db.c - migrations/0003_engine.sql against a real PostgreSQL:
 * the transition table agrees with states.c, ws_engine_tx fences stale
 * epochs and refuses unexpected states without changing anything, outbox
 * keys are unique, the audit log is one hash chain even under concurrent
 * appends and detects edits, releases freeze once used, person actions are
 * guarded, and the lease functions judge by the database clock.  With
 * 0006_tx_batch.sql: a call's audit rows are appended together at its end
 * (the audit op's result is its row's id), the chain lock is the last lock
 * a call takes, and four connections committing at once still make one chain.
 *
 * WS_TEST_PG_URL names the server (tests/harness/services.sh); this program
 * creates its own database there and drops it at the end.  Blocking libpq is
 * fine here: there is no loop to block.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include "engine_db.h"
#include "wavesched/states.h"

static edb db;
static PGconn *conn;
static int fx_seq;

/* ---- query helpers ---------------------------------------------------------- */

static PGresult *q(PGconn *c, const char *sql, int n, const char *const *params)
{
	PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(r);
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
		fail_msg("%s\n  failed: %s", sql, PQresultErrorMessage(r));
	return r;
}

static void q_exec(PGconn *c, const char *sql)
{
	PQclear(q(c, sql, 0, NULL));
}

/* The first value of the first row, copied into buf. */
static const char *q_str(PGconn *c, char *buf, size_t size, const char *sql, int n,
			 const char *const *params)
{
	PGresult *r = q(c, sql, n, params);
	assert_true(PQntuples(r) >= 1);
	snprintf(buf, size, "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	return buf;
}

static long long q_int(PGconn *c, const char *sql, int n, const char *const *params)
{
	char buf[64];
	return atoll(q_str(c, buf, sizeof(buf), sql, n, params));
}

/* Runs sql expecting an error with exactly this SQLSTATE and primary
 * message. */
static void q_fail(PGconn *c, const char *sqlstate, const char *message, const char *sql, int n,
		   const char *const *params)
{
	PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_FATAL_ERROR)
		fail_msg("%s\n  should have failed with %s", sql, message);
	const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
	if (strcmp(st, sqlstate) != 0 || strcmp(msg, message) != 0)
		fail_msg("expected %s \"%s\"\n  got %s \"%s\"", sqlstate, message, st, msg);
	PQclear(r);
}

/* A digest of every row the engine functions may touch. */
static void snapshot(char *buf, size_t size)
{
	q_str(conn, buf, size,
	      "SELECT md5(concat_ws('|',"
	      " (SELECT string_agg(concat_ws(':', id, state, state_reason, attempt, window_start, window_end,"
	      "   reasons, moves, previous_version), ',' ORDER BY id) FROM deployments),"
	      " (SELECT string_agg(concat_ws(':', id, state, state_reason, started_at), ',' ORDER BY id) FROM waves),"
	      " (SELECT string_agg(concat_ws(':', id, state, state_reason, start_at), ',' ORDER BY id) FROM rollouts),"
	      " (SELECT string_agg(concat_ws(':', id, state, result), ',' ORDER BY id) FROM outbox),"
	      " (SELECT count(*) FROM audit_log), (SELECT count(*) FROM events),"
	      " (SELECT count(*) FROM gate_results), (SELECT count(*) FROM approvals),"
	      " (SELECT concat_ws(':', holder, epoch) FROM engine_lease)))",
	      0, NULL);
}

/* ---- fixtures ------------------------------------------------------------------- */

typedef struct fx {
	long long rollout, wave[2], dep[3];   /* dep: t-a, t-b (wave 0), t-c (wave 1) */
	char version[32];
} fx;

/* A planned rollout of a new release: wave 0 with t-a and t-b, wave 1 with
 * t-c; created by alice. */
static fx fixture(void)
{
	fx f;
	snprintf(f.version, sizeof(f.version), "1.0.%d", ++fx_seq);
	const char *p[] = { f.version };
	PGresult *r = q(conn,
		"WITH rel AS (INSERT INTO releases (version, digest, created_by)"
		"             VALUES ($1, 'sha256:' || repeat('b', 64), 'alice') RETURNING id),"
		" ro AS (INSERT INTO rollouts (release_id, policy_id, policy_sha256, created_by)"
		"        SELECT rel.id, p.id, p.sha256, 'alice' FROM rel, policies p WHERE p.name = 'std' RETURNING id),"
		" pl AS (INSERT INTO rollout_plans (rollout_id, version, plan, sha256, reason, created_by)"
		"        SELECT ro.id, 1, '{\"waves\":[]}', encode(sha256('{\"waves\":[]}'::bytea), 'hex'), 'created', 'alice' FROM ro),"
		" w AS (INSERT INTO waves (rollout_id, idx, name) SELECT ro.id, g, 'wave' || g FROM ro, generate_series(0, 1) g"
		"       RETURNING id, idx, rollout_id),"
		" d AS (INSERT INTO deployments (rollout_id, wave_id, tenant_id, slug, target_version)"
		"       SELECT w.rollout_id, w.id, t.id, t.slug, $1 FROM w JOIN tenants t"
		"         ON (w.idx = 0 AND t.slug IN ('t-a', 't-b')) OR (w.idx = 1 AND t.slug = 't-c')"
		"       RETURNING id, slug)"
		" SELECT (SELECT id FROM ro), (SELECT id FROM w WHERE idx = 0), (SELECT id FROM w WHERE idx = 1),"
		"        (SELECT id FROM d WHERE slug = 't-a'), (SELECT id FROM d WHERE slug = 't-b'),"
		"        (SELECT id FROM d WHERE slug = 't-c')",
		1, p);
	f.rollout = atoll(PQgetvalue(r, 0, 0));
	f.wave[0] = atoll(PQgetvalue(r, 0, 1));
	f.wave[1] = atoll(PQgetvalue(r, 0, 2));
	for (int i = 0; i < 3; i++)
		f.dep[i] = atoll(PQgetvalue(r, 0, 3 + i));
	PQclear(r);
	assert_true(f.rollout > 0 && f.dep[2] > 0);
	return f;
}

/* Makes `holder` the leader with a long lease and returns its epoch. */
static long long lease_take(const char *holder)
{
	q_exec(conn, "UPDATE engine_lease SET holder = NULL");
	const char *p[] = { holder };
	return q_int(conn, "SELECT epoch FROM ws_lease_acquire($1, 600000)", 1, p);
}

/* ws_engine_tx(epoch, ops) that must succeed; returns its result text. */
static void tx_ok(long long epoch, const char *ops, char *out, size_t size)
{
	char e[32];
	snprintf(e, sizeof(e), "%lld", epoch);
	const char *p[] = { e, ops };
	char buf[4096];
	q_str(conn, out ? out : buf, out ? size : sizeof(buf), "SELECT ws_engine_tx($1, $2)", 2, p);
}

/* ws_engine_tx that must fail, with no visible change. */
static void tx_fail(long long epoch, const char *ops, const char *sqlstate, const char *message)
{
	char before[64], after[64], e[32];
	snapshot(before, sizeof(before));
	snprintf(e, sizeof(e), "%lld", epoch);
	const char *p[] = { e, ops };
	q_fail(conn, sqlstate, message, "SELECT ws_engine_tx($1, $2)", 2, p);
	snapshot(after, sizeof(after));
	assert_string_equal(before, after);
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
/* A formatted string in one of 64 rotating buffers: enough for every value a
 * test keeps while it formats others. */
static char *fmt(const char *f, ...)
{
	static char bufs[64][4096];
	static int next;
	char *b = bufs[next++ % 64];
	va_list ap;
	va_start(ap, f);
	vsnprintf(b, sizeof(bufs[0]), f, ap);
	va_end(ap);
	return b;
}

/* ---- tests ----------------------------------------------------------------------- */

/* Applying the migrations again changes nothing and says so. */
static void test_migrate_again(void **state)
{
	(void)state;
	ws_migration_set set;
	ws_diags d;
	ws_diags_init(&d);
	assert_int_equal(ws_migrations_load(WS_MIGRATIONS_SOURCE, &set, &d), 0);
	char *out = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&out, &len);
	assert_int_equal(ws_migrate_run(db.conninfo, &set, false, fp, &d), 0);
	fclose(fp);
	assert_null(strstr(out, "applied 0"));
	assert_non_null(strstr(out, "database is up to date"));
	free(out);
	ws_migrations_free(&set);
	ws_diags_free(&d);
	assert_int_equal(q_int(conn, "SELECT count(*) FROM schema_migrations WHERE name = '0003_engine.sql'", 0, NULL), 1);
	assert_int_equal(q_int(conn, "SELECT count(*) FROM engine_lease", 0, NULL), 1);
}

/* The database's transition table is the C one, in both directions. */
static void test_transitions_agree(void **state)
{
	(void)state;
	PGresult *r = q(conn, "SELECT object, from_state, event, to_state FROM ws_state_transitions", 0, NULL);
	int counts[3] = { 0 };
	for (int i = 0; i < PQntuples(r); i++) {
		const char *obj = PQgetvalue(r, i, 0), *from = PQgetvalue(r, i, 1);
		const char *ev = PQgetvalue(r, i, 2), *to = PQgetvalue(r, i, 3);
		if (strcmp(obj, "rollout") == 0) {
			ws_rollout_state f, t, got;
			assert_int_equal(ws_rollout_state_parse(from, &f), 0);
			assert_int_equal(ws_rollout_state_parse(to, &t), 0);
			int e = 0;
			while (e < WS_RO_EV__COUNT && strcmp(ws_rollout_event_name(e), ev) != 0)
				e++;
			assert_true(e < WS_RO_EV__COUNT);
			assert_int_equal(ws_rollout_next(f, e, &got), 0);
			assert_int_equal(got, t);
			counts[0]++;
		} else if (strcmp(obj, "wave") == 0) {
			ws_wave_state f, t, got;
			assert_int_equal(ws_wave_state_parse(from, &f), 0);
			assert_int_equal(ws_wave_state_parse(to, &t), 0);
			int e = 0;
			while (e < WS_WAVE_EV__COUNT && strcmp(ws_wave_event_name(e), ev) != 0)
				e++;
			assert_true(e < WS_WAVE_EV__COUNT);
			assert_int_equal(ws_wave_next(f, e, &got), 0);
			assert_int_equal(got, t);
			counts[1]++;
		} else {
			assert_string_equal(obj, "deployment");
			ws_deployment_state f, t, got;
			assert_int_equal(ws_deployment_state_parse(from, &f), 0);
			assert_int_equal(ws_deployment_state_parse(to, &t), 0);
			int e = 0;
			while (e < WS_DEP_EV__COUNT && strcmp(ws_deployment_event_name(e), ev) != 0)
				e++;
			assert_true(e < WS_DEP_EV__COUNT);
			assert_int_equal(ws_deployment_next(f, e, &got), 0);
			assert_int_equal(got, t);
			counts[2]++;
		}
	}
	PQclear(r);
	/* ... and every transition C allows is in the table. */
	int want[3] = { 0 };
	for (int s = 0; s < WS_RO__COUNT; s++)
		for (int e = 0; e < WS_RO_EV__COUNT; e++) {
			ws_rollout_state t;
			want[0] += ws_rollout_next(s, e, &t) == 0;
		}
	for (int s = 0; s < WS_WAVE__COUNT; s++)
		for (int e = 0; e < WS_WAVE_EV__COUNT; e++) {
			ws_wave_state t;
			want[1] += ws_wave_next(s, e, &t) == 0;
		}
	for (int s = 0; s < WS_DEP__COUNT; s++)
		for (int e = 0; e < WS_DEP_EV__COUNT; e++) {
			ws_deployment_state t;
			want[2] += ws_deployment_next(s, e, &t) == 0;
		}
	assert_int_equal(counts[0], want[0]);
	assert_int_equal(counts[1], want[1]);
	assert_int_equal(counts[2], want[2]);

	/* The state columns accept exactly the C names. */
	fixture();
	for (int s = 0; s < WS_DEP__COUNT; s++) {
		const char *p[] = { ws_deployment_state_name(s) };
		q_exec(conn, "BEGIN");
		PQclear(q(conn, "UPDATE deployments SET state = $1 WHERE id = (SELECT min(id) FROM deployments)", 1, p));
		q_exec(conn, "ROLLBACK");
	}
	q_exec(conn, "BEGIN");
	q_fail(conn, "23514", "new row for relation \"deployments\" violates check constraint \"deployments_state_check\"",
	       "UPDATE deployments SET state = 'paused'", 0, NULL);
	q_exec(conn, "ROLLBACK");
}

/* A full happy batch: transitions, the deploy intent with its key, audit
 * rows and events, all in one call. */
static void test_tx_batch(void **state)
{
	(void)state;
	fx f = fixture();
	long long ep = lease_take("engine-a");
	const char *p1[] = { fmt("%lld", f.rollout) };
	PQclear(q(conn, "SELECT ws_rollout_command($1, 'start', 'alice', 'go')", 1, p1));
	long long audit0 = q_int(conn, "SELECT max(id) FROM audit_log", 0, NULL);
	char out[4096];
	tx_ok(ep, fmt("["
		"{\"op\":\"rollout\",\"id\":%lld,\"from\":\"approved\",\"to\":\"running\",\"event\":\"start\"},"
		"{\"op\":\"wave\",\"id\":%lld,\"from\":\"pending\",\"to\":\"backup_check\",\"set\":{\"started_at\":\"2026-12-01T00:00:00Z\"}},"
		"{\"op\":\"gate\",\"rollout\":%lld,\"wave\":%lld,\"gate\":\"backup\",\"result\":\"pass\",\"evidence\":{\"age_s\":60}},"
		"{\"op\":\"deployment\",\"id\":%lld,\"from\":\"scheduled\",\"to\":\"waiting_window\","
		" \"set\":{\"window_start\":\"2026-12-01T01:00:00Z\",\"window_end\":\"2026-12-01T03:00:00+00:00\"}},"
		"{\"op\":\"deployment\",\"id\":%lld,\"from\":\"waiting_window\",\"to\":\"deploying\",\"set\":{\"attempt\":1}},"
		"{\"op\":\"outbox\",\"deployment\":%lld,\"kind\":\"deploy\",\"attempt\":1,\"request\":{\"version\":\"%s\"}},"
		"{\"op\":\"check\",\"object\":\"rollout\",\"id\":%lld,\"state\":[\"running\",\"paused\"]}]",
		f.rollout, f.wave[0], f.rollout, f.wave[0], f.dep[0], f.dep[0], f.dep[0], f.version, f.rollout),
	      out, sizeof(out));
	char want[1024];
	long long outbox_id = q_int(conn, "SELECT max(id) FROM outbox", 0, NULL);
	long long gate_id = q_int(conn, "SELECT max(id) FROM gate_results", 0, NULL);
	snprintf(want, sizeof(want),
		 "[{\"id\": %lld, \"rollout\": %lld}, {\"id\": %lld, \"rollout\": %lld}, {\"id\": %lld}, "
		 "{\"id\": %lld, \"rollout\": %lld}, {\"id\": %lld, \"rollout\": %lld}, "
		 "{\"id\": %lld, \"key\": \"%lld/t-a/1\"}, {\"state\": \"running\"}]",
		 f.rollout, f.rollout, f.wave[0], f.rollout, gate_id, f.dep[0], f.rollout, f.dep[0], f.rollout,
		 outbox_id, f.rollout);
	assert_string_equal(out, want);

	const char *pd[] = { fmt("%lld", f.dep[0]) };
	char buf[512];
	assert_string_equal(q_str(conn, buf, sizeof(buf),
		"SELECT concat_ws(' ', state, attempt, window_start AT TIME ZONE 'UTC', window_end AT TIME ZONE 'UTC')"
		" FROM deployments WHERE id = $1", 1, pd),
		"deploying 1 2026-12-01 01:00:00 2026-12-01 03:00:00");
	assert_string_equal(q_str(conn, buf, sizeof(buf),
		"SELECT concat_ws(' ', idempotency_key, kind, state, request, (epoch = (SELECT epoch FROM engine_lease))::text)"
		" FROM outbox WHERE deployment_id = $1", 1, pd),
		fmt("%lld/t-a/1 deploy pending {\"version\": \"%s\"} true", f.rollout, f.version));
	/* one audit row per transition and one for the intent, in order */
	const char *pa[] = { fmt("%lld", audit0) };
	assert_string_equal(q_str(conn, buf, sizeof(buf),
		"SELECT string_agg(action || ' ' || object, ', ' ORDER BY id) FROM audit_log"
		" WHERE id > $1", 1, pa),
		fmt("rollout.running rollout/%lld, wave.backup_check rollout/%lld/wave/0, "
		    "deployment.waiting_window rollout/%lld/tenant/t-a, deployment.deploying rollout/%lld/tenant/t-a, "
		    "outbox.deploy rollout/%lld/tenant/t-a", f.rollout, f.rollout, f.rollout, f.rollout, f.rollout));
	const char *pr[] = { fmt("%lld", f.rollout) };
	assert_string_equal(q_str(conn, buf, sizeof(buf),
		"SELECT string_agg(kind || ' ' || coalesce(tenant, '-') || ' ' || (payload->>'to'), ', ' ORDER BY id)"
		" FROM events WHERE rollout_id = $1", 1, pr),
		"rollout.state - approved, rollout.state - running, wave.state - backup_check, "
		"deployment.state t-a waiting_window, deployment.state t-a deploying");

	/* The result of the intent comes back with the next transition. */
	tx_ok(ep, fmt("[{\"op\":\"outbox_done\",\"id\":%lld,\"state\":\"done\",\"result\":{\"status\":202}},"
		      "{\"op\":\"deployment\",\"id\":%lld,\"from\":\"deploying\",\"to\":\"verifying\"}]",
		      outbox_id, f.dep[0]), NULL, 0);
	assert_string_equal(q_str(conn, buf, sizeof(buf),
		"SELECT concat_ws(' ', o.state, o.result, (o.done_at IS NOT NULL)::text, d.state) FROM outbox o"
		" JOIN deployments d ON d.id = o.deployment_id WHERE o.deployment_id = $1", 1, pd),
		"done {\"status\": 202} true verifying");
	/* a result is recorded once */
	tx_fail(ep, fmt("[{\"op\":\"outbox_done\",\"id\":%lld,\"state\":\"failed\"}]", outbox_id),
		"WSE02", fmt("state conflict: outbox %lld is done, expected pending (op 1)", outbox_id));
}

/* A leader whose epoch moved on writes nothing at all. */
static void test_tx_stale_epoch(void **state)
{
	(void)state;
	fx f = fixture();
	long long ep = lease_take("engine-a");
	long long ep2 = lease_take("engine-b");
	assert_int_equal(ep2, ep + 1);
	tx_fail(ep, fmt("[{\"op\":\"deployment\",\"id\":%lld,\"from\":\"scheduled\",\"to\":\"waiting_window\"}]", f.dep[1]),
		"WSE01", "stale epoch");
	tx_fail(ep, "[]", "WSE01", "stale epoch");
	tx_fail(ep + 5, "[]", "WSE01", "stale epoch");
	/* the current epoch goes through */
	tx_ok(ep2, fmt("[{\"op\":\"deployment\",\"id\":%lld,\"from\":\"scheduled\",\"to\":\"waiting_window\"}]", f.dep[1]),
	      NULL, 0);
}

/* A wrong expected state anywhere in a batch undoes the whole batch. */
static void test_tx_conflicts(void **state)
{
	(void)state;
	fx f = fixture();
	long long ep = lease_take("engine-a");
	tx_fail(ep, fmt("[{\"op\":\"deployment\",\"id\":%lld,\"from\":\"scheduled\",\"to\":\"waiting_window\"},"
			"{\"op\":\"deployment\",\"id\":%lld,\"from\":\"waiting_window\",\"to\":\"deploying\"}]",
			f.dep[0], f.dep[1]),
		"WSE02", fmt("state conflict: deployment %lld is scheduled, expected waiting_window (op 2)", f.dep[1]));
	tx_fail(ep, fmt("[{\"op\":\"rollout\",\"id\":%lld,\"from\":\"running\",\"to\":\"paused\"}]", f.rollout),
		"WSE02", fmt("state conflict: rollout %lld is planned, expected running (op 1)", f.rollout));
	tx_fail(ep, fmt("[{\"op\":\"wave\",\"id\":%lld,\"from\":\"deploying\",\"to\":\"verifying\"}]", f.wave[1]),
		"WSE02", fmt("state conflict: wave %lld is pending, expected deploying (op 1)", f.wave[1]));
	tx_fail(ep, "[{\"op\":\"wave\",\"id\":999999,\"from\":\"pending\",\"to\":\"backup_check\"}]",
		"WSE05", "wave 999999 does not exist (op 1)");
	/* transitions the state machine does not have */
	tx_fail(ep, fmt("[{\"op\":\"deployment\",\"id\":%lld,\"from\":\"scheduled\",\"to\":\"deploying\"}]", f.dep[0]),
		"WSE03", "transition not allowed: deployment from scheduled to deploying (op 1)");
	tx_fail(ep, fmt("[{\"op\":\"rollout\",\"id\":%lld,\"from\":\"completed\",\"to\":\"running\"}]", f.rollout),
		"WSE03", "transition not allowed: rollout from completed to running (op 1)");
	/* a check that fails */
	tx_fail(ep, fmt("[{\"op\":\"deployment\",\"id\":%lld,\"from\":\"scheduled\",\"to\":\"waiting_window\"},"
			"{\"op\":\"check\",\"object\":\"rollout\",\"id\":%lld,\"state\":[\"running\",\"paused\"]}]",
			f.dep[0], f.rollout),
		"WSE02", fmt("state conflict: rollout %lld is planned, expected running or paused (op 2)", f.rollout));
	/* an intent for a tenant that is not deploying, or for another attempt */
	tx_fail(ep, fmt("[{\"op\":\"outbox\",\"deployment\":%lld,\"kind\":\"deploy\",\"attempt\":1}]", f.dep[2]),
		"WSE02", fmt("state conflict: deployment %lld is scheduled, a deploy intent needs deploying (op 1)", f.dep[2]));
	tx_fail(ep, fmt("[{\"op\":\"deployment\",\"id\":%lld,\"from\":\"scheduled\",\"to\":\"waiting_window\"},"
			"{\"op\":\"deployment\",\"id\":%lld,\"from\":\"waiting_window\",\"to\":\"deploying\",\"set\":{\"attempt\":1}},"
			"{\"op\":\"outbox\",\"deployment\":%lld,\"kind\":\"deploy\",\"attempt\":2}]",
			f.dep[2], f.dep[2], f.dep[2]),
		"WSE02", fmt("state conflict: deployment %lld is at attempt 1, the intent names attempt 2 (op 3)", f.dep[2]));
}

/* Malformed ops documents are refused with the op and the field named. */
static void test_tx_invalid(void **state)
{
	(void)state;
	fx f = fixture();
	long long ep = lease_take("engine-a");
	tx_fail(ep, "{\"op\":\"rollout\"}", "WSE04", "invalid ops: expected a JSON array of op objects");
	tx_fail(ep, "[3]", "WSE04", "invalid op 1: expected an object, not 3");
	tx_fail(ep, "[{\"op\":\"frob\"}]", "WSE04",
		"invalid op 1: unknown \"op\" \"frob\" (expected rollout, wave, deployment, check, outbox, outbox_done, gate, audit or event)");
	tx_fail(ep, "[{}]", "WSE04",
		"invalid op 1: unknown \"op\" null (expected rollout, wave, deployment, check, outbox, outbox_done, gate, audit or event)");
	tx_fail(ep, "[{\"op\":\"deployment\",\"from\":\"scheduled\",\"to\":\"skipped\"}]", "WSE04",
		"invalid op 1: \"id\" is required");
	tx_fail(ep, "[{\"op\":\"deployment\",\"id\":\"7\",\"from\":\"scheduled\",\"to\":\"skipped\"}]", "WSE04",
		"invalid op 1: \"id\" must be a positive integer, not \"7\"");
	tx_fail(ep, "[{\"op\":\"deployment\",\"id\":-7,\"from\":\"scheduled\",\"to\":\"skipped\"}]", "WSE04",
		"invalid op 1: \"id\" must be a positive integer, not -7");
	tx_fail(ep, fmt("[{\"op\":\"deployment\",\"id\":%lld,\"to\":\"skipped\"}]", f.dep[0]), "WSE04",
		"invalid op 1: \"from\" must be a string");
	tx_fail(ep, fmt("[{\"op\":\"deployment\",\"id\":%lld,\"from\":\"scheduled\",\"to\":\"waiting_window\","
			"\"set\":{\"window_start\":\"tomorrow\"}}]", f.dep[0]), "WSE04",
		"invalid op 1: \"window_start\" must be an RFC 3339 time such as 2026-12-01T00:00:00Z, not \"tomorrow\"");
	tx_fail(ep, fmt("[{\"op\":\"deployment\",\"id\":%lld,\"from\":\"scheduled\",\"to\":\"waiting_window\","
			"\"set\":{\"window_start\":\"2026-12-01T00:00:00\"}}]", f.dep[0]), "WSE04",
		"invalid op 1: \"window_start\" must be an RFC 3339 time such as 2026-12-01T00:00:00Z, not \"2026-12-01T00:00:00\"");
	tx_fail(ep, fmt("[{\"op\":\"deployment\",\"id\":%lld,\"from\":\"scheduled\",\"to\":\"waiting_window\","
			"\"set\":{\"colour\":\"red\"}}]", f.dep[0]), "WSE04",
		"invalid op 1: unknown key \"colour\" in \"set\" (allowed: window_start, window_end, attempt, "
		"previous_version, started_at, ended_at)");
	tx_fail(ep, fmt("[{\"op\":\"deployment\",\"id\":%lld,\"from\":\"scheduled\",\"to\":\"waiting_window\","
			"\"set\":{\"attempt\":\"x\"}}]", f.dep[0]), "22P02",
		"op 1 (deployment): invalid input syntax for type integer: \"x\"");
	tx_fail(ep, fmt("[{\"op\":\"gate\",\"rollout\":%lld,\"wave\":999999,\"gate\":\"backup\",\"result\":\"pass\"}]",
			f.rollout), "23503",
		"op 1 (gate): insert or update on table \"gate_results\" violates foreign key constraint \"gate_results_wave_id_fkey\"");
	tx_fail(ep, fmt("[{\"op\":\"gate\",\"rollout\":%lld,\"gate\":\"backup\",\"result\":\"maybe\"}]", f.rollout), "23514",
		"op 1 (gate): new row for relation \"gate_results\" violates check constraint \"gate_results_result_check\"");
	tx_fail(ep, "[{\"op\":\"outbox\",\"deployment\":1,\"kind\":\"redeploy\",\"attempt\":1}]", "WSE04",
		"invalid op 1: \"kind\" must be deploy or rollback");
	tx_fail(ep, "[{\"op\":\"audit\",\"actor\":\"x\",\"action\":\"y\"}]", "WSE04",
		"invalid op 1: \"object\" must be a string");
	/* the checks 0006 makes inline for valid fields still name bad ones */
	tx_fail(ep, fmt("[{\"op\":\"deployment\",\"id\":%lld,\"from\":5,\"to\":\"skipped\"}]", f.dep[0]), "WSE04",
		"invalid op 1: \"from\" must be a string");
	tx_fail(ep, fmt("[{\"op\":\"deployment\",\"id\":%lld,\"from\":\"scheduled\"}]", f.dep[0]), "WSE04",
		"invalid op 1: \"to\" must be a string");
	tx_fail(ep, fmt("[{\"op\":\"deployment\",\"id\":%lld,\"from\":\"nowhere\",\"to\":\"skipped\"}]", f.dep[0]),
		"WSE03", "transition not allowed: deployment from nowhere to skipped (op 1)");
	tx_fail(ep, fmt("[{\"op\":\"deployment\",\"id\":%lld,\"from\":\"scheduled\",\"to\":\"skipped\"},"
			"{\"op\":\"deployment\",\"id\":%lld,\"from\":\"scheduled\",\"to\":\"skipped\",\"set\":[1]}]",
			f.dep[0], f.dep[1]), "WSE04", "invalid op 2: \"set\" must be an object");
	tx_fail(ep, fmt("[{\"op\":\"rollout\",\"id\":%lld,\"from\":\"planned\",\"to\":\"approved\",\"set\":{\"colour\":1}}]",
			f.rollout), "WSE04",
		"invalid op 1: unknown key \"colour\" in \"set\" (allowed: start_at, plan_version)");
	tx_fail(ep, fmt("[{\"op\":\"wave\",\"id\":%lld,\"from\":\"pending\",\"to\":\"backup_check\","
			"\"set\":{\"started_at\":null,\"colour\":1}}]", f.wave[0]), "WSE04",
		"invalid op 1: unknown key \"colour\" in \"set\" (allowed: started_at, soak_until, ended_at, settings)");
	/* an audited op under an older snapshot is refused at that op, as in 0003 */
	q_exec(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ");
	const char *prr[] = { fmt("%lld", ep),
			      fmt("[{\"op\":\"check\",\"object\":\"rollout\",\"id\":%lld,\"state\":\"planned\"},"
				  "{\"op\":\"deployment\",\"id\":%lld,\"from\":\"scheduled\",\"to\":\"skipped\"}]",
				  f.rollout, f.dep[0]) };
	q_fail(conn, "P0001", "op 2 (deployment): ws_audit_append needs READ COMMITTED isolation, not repeatable read",
	       "SELECT ws_engine_tx($1, $2)", 2, prr);
	q_exec(conn, "ROLLBACK");
}

/* One intent per rollout/tenant/attempt, whoever tries. */
static void test_outbox_key_unique(void **state)
{
	(void)state;
	fx f = fixture();
	long long ep = lease_take("engine-a");
	tx_ok(ep, fmt("[{\"op\":\"deployment\",\"id\":%lld,\"from\":\"scheduled\",\"to\":\"waiting_window\"},"
		      "{\"op\":\"deployment\",\"id\":%lld,\"from\":\"waiting_window\",\"to\":\"deploying\",\"set\":{\"attempt\":1}},"
		      "{\"op\":\"outbox\",\"deployment\":%lld,\"kind\":\"deploy\",\"attempt\":1}]",
		      f.dep[1], f.dep[1], f.dep[1]), NULL, 0);
	tx_fail(ep, fmt("[{\"op\":\"outbox\",\"deployment\":%lld,\"kind\":\"deploy\",\"attempt\":1}]", f.dep[1]),
		"23505", "op 1 (outbox): duplicate key value violates unique constraint \"outbox_idempotency_key_key\"");
	/* not even a direct insert gets around it */
	const char *p[] = { fmt("%lld", f.rollout), fmt("%lld", f.dep[1]), fmt("%lld/t-b/1", f.rollout) };
	q_fail(conn, "23505", "duplicate key value violates unique constraint \"outbox_idempotency_key_key\"",
	       "INSERT INTO outbox (rollout_id, deployment_id, kind, attempt, idempotency_key, epoch)"
	       " VALUES ($1, $2, 'deploy', 1, $3, 1)", 3, p);
	/* a new attempt (the rollback) gets its own key */
	char out[512];
	tx_ok(ep, fmt("[{\"op\":\"deployment\",\"id\":%lld,\"from\":\"deploying\",\"to\":\"failed\",\"reason\":\"executor: 500\"},"
		      "{\"op\":\"deployment\",\"id\":%lld,\"from\":\"failed\",\"to\":\"rolling_back\",\"set\":{\"attempt\":2}},"
		      "{\"op\":\"outbox\",\"deployment\":%lld,\"kind\":\"rollback\",\"attempt\":2}]",
		      f.dep[1], f.dep[1], f.dep[1]), out, sizeof(out));
	assert_non_null(strstr(out, fmt("\"key\": \"%lld/t-b/2\"", f.rollout)));
}

/* Walks the chain from the database's rows: every prev_hash is the hash of
 * the row before, the first links to zeros, and no two rows share a parent. */
static void check_chain(long long expect_min_rows)
{
	PGresult *r = q(conn, "SELECT id, prev_hash, hash FROM audit_log ORDER BY id", 0, NULL);
	assert_true(PQntuples(r) >= expect_min_rows);
	char prev[65];
	memset(prev, '0', 64);
	prev[64] = '\0';
	for (int i = 0; i < PQntuples(r); i++) {
		if (strcmp(PQgetvalue(r, i, 1), prev) != 0)
			fail_msg("audit row %s does not link to the row before it", PQgetvalue(r, i, 0));
		snprintf(prev, sizeof(prev), "%s", PQgetvalue(r, i, 2));
	}
	PQclear(r);
	r = q(conn, "SELECT ok, checked, last_hash FROM ws_audit_verify()", 0, NULL);
	assert_string_equal(PQgetvalue(r, 0, 0), "t");
	assert_string_equal(PQgetvalue(r, 0, 2), prev);
	PQclear(r);
}

static void test_audit_chain(void **state)
{
	(void)state;
	for (int i = 0; i < 5; i++) {
		const char *p[] = { fmt("{\"n\": %d, \"text\": \"line\\nbreak\"}", i) };
		assert_true(q_int(conn, "SELECT ws_audit_append('carol', 'test.append', 'audit/chain', $1)", 1, p) > 0);
	}
	check_chain(5);
	long long victim = q_int(conn, "SELECT max(id) - 2 FROM audit_log", 0, NULL);
	const char *pv[] = { fmt("%lld", victim) };

	/* Append-only for everybody who goes through SQL. */
	q_fail(conn, "WSE07", "audit_log rows cannot be changed or removed",
	       "UPDATE audit_log SET actor = 'mallory' WHERE id = $1", 1, pv);
	q_fail(conn, "WSE07", "audit_log rows cannot be changed or removed",
	       "DELETE FROM audit_log WHERE id = $1", 1, pv);
	q_fail(conn, "WSE07", "audit_log rows cannot be changed or removed", "TRUNCATE audit_log", 0, NULL);

	/* Someone who goes around the triggers is caught by the chain. */
	char buf[256];
	q_exec(conn, "BEGIN");
	q_exec(conn, "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only");
	PQclear(q(conn, "UPDATE audit_log SET details = '{\"n\": 99}' WHERE id = $1", 1, pv));
	assert_string_equal(q_str(conn, buf, sizeof(buf),
		"SELECT concat_ws(' | ', ok::text, first_bad_id, problem) FROM ws_audit_verify()", 0, NULL),
		fmt("false | %lld | entry %lld was changed after it was written (its hash does not match)", victim, victim));
	q_exec(conn, "ROLLBACK");
	q_exec(conn, "BEGIN");
	q_exec(conn, "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only");
	PQclear(q(conn, "DELETE FROM audit_log WHERE id = $1", 1, pv));
	assert_string_equal(q_str(conn, buf, sizeof(buf),
		"SELECT concat_ws(' | ', ok::text, first_bad_id, problem) FROM ws_audit_verify()", 0, NULL),
		fmt("false | %lld | entry %lld does not follow the entry before it (an entry was removed or reordered)",
		    victim + 1, victim + 1));
	q_exec(conn, "ROLLBACK");
	check_chain(5);

	/* An older snapshot could fork the chain: refused. */
	q_exec(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ");
	q_fail(conn, "P0001", "ws_audit_append needs READ COMMITTED isolation, not repeatable read",
	       "SELECT ws_audit_append('carol', 'x', 'y')", 0, NULL);
	q_exec(conn, "ROLLBACK");
}

/* Two connections appending as fast as they can still make one chain. */
static void test_audit_concurrent(void **state)
{
	(void)state;
	enum { N = 150 };
	PGconn *c[2] = { edb_connect(db.conninfo), edb_connect(db.conninfo) };
	long long before = q_int(conn, "SELECT count(*) FROM audit_log", 0, NULL);
	for (int i = 0; i < N; i++) {
		for (int k = 0; k < 2; k++) {
			const char *p[] = { k ? "conn-b" : "conn-a", fmt("{\"i\": %d}", i) };
			assert_int_equal(PQsendQueryParams(c[k], "SELECT ws_audit_append($1, 'test.concurrent', 'audit/race', $2)",
							   2, NULL, p, NULL, NULL, 0), 1);
		}
		for (int k = 0; k < 2; k++) {
			PGresult *r;
			while ((r = PQgetResult(c[k])) != NULL) {
				if (PQresultStatus(r) != PGRES_TUPLES_OK)
					fail_msg("append: %s", PQresultErrorMessage(r));
				PQclear(r);
			}
		}
	}
	PQfinish(c[0]);
	PQfinish(c[1]);
	assert_int_equal(q_int(conn, "SELECT count(*) FROM audit_log", 0, NULL), before + 2 * N);
	assert_int_equal(q_int(conn, "SELECT count(*) FROM (SELECT prev_hash FROM audit_log GROUP BY prev_hash"
			       " HAVING count(*) > 1) forks", 0, NULL), 0);
	check_chain(before + 2 * N);
}

/* ---- ws_engine_tx appends its audit rows last (0006_tx_batch.sql) ---------- */

/* The id of element i of a ws_engine_tx result. */
static long long result_id(const char *result, size_t i)
{
	json_error_t err;
	json_t *a = json_loads(result, 0, &err);
	if (!a)
		fail_msg("ws_engine_tx result is not JSON (%s): %s", err.text, result);
	json_t *id = json_object_get(json_array_get(a, i), "id");
	if (!json_is_integer(id))
		fail_msg("element %zu of the result has no integer id: %s", i, result);
	long long v = (long long)json_integer_value(id);
	json_decref(a);
	return v;
}

/* One audit row as "actor action object details". */
static const char *audit_row(long long id, char *buf, size_t size)
{
	const char *p[] = { fmt("%lld", id) };
	return q_str(conn, buf, size,
		     "SELECT coalesce((SELECT concat_ws(' ', actor, action, object, details) FROM audit_log"
		     " WHERE id = $1), 'none')", 1, p);
}

/* An "audit" op's result is its row's id; the rows of one call follow each
 * other in op order whatever kind of op wrote them, after a row written
 * through ws_audit_append; events keep the order of the ops. */
static void test_tx_audit_ids(void **state)
{
	(void)state;
	fx f = fixture();
	long long ep = lease_take("engine-a");
	long long before = q_int(conn, "SELECT ws_audit_append('carol', 'test.before', 'audit/ids')", 0, NULL);
	char out[4096], buf[512];
	tx_ok(ep, fmt("[{\"op\":\"audit\",\"actor\":\"dave\",\"action\":\"note.first\",\"object\":\"rollout/%lld\","
		      "  \"details\":{\"n\":1}},"
		      "{\"op\":\"deployment\",\"id\":%lld,\"from\":\"scheduled\",\"to\":\"waiting_window\"},"
		      "{\"op\":\"event\",\"rollout\":%lld,\"kind\":\"note\"},"
		      "{\"op\":\"deployment\",\"id\":%lld,\"from\":\"scheduled\",\"to\":\"skipped\"},"
		      "{\"op\":\"audit\",\"actor\":\"erin\",\"action\":\"note.second\",\"object\":\"rollout/%lld\"}]",
		      f.rollout, f.dep[0], f.rollout, f.dep[1], f.rollout),
	      out, sizeof(out));
	long long a1 = result_id(out, 0), ev = result_id(out, 2), a2 = result_id(out, 4);
	assert_true(a1 > before);
	assert_int_equal(a2, a1 + 3);
	assert_string_equal(audit_row(a1, buf, sizeof(buf)), fmt("dave note.first rollout/%lld {\"n\": 1}", f.rollout));
	assert_string_equal(audit_row(a1 + 1, buf, sizeof(buf)),
			    fmt("engine deployment.waiting_window rollout/%lld/tenant/t-a {\"id\": %lld, \"to\": \"waiting_window\","
				" \"from\": \"scheduled\", \"epoch\": %lld}", f.rollout, f.dep[0], ep));
	assert_string_equal(audit_row(a1 + 2, buf, sizeof(buf)),
			    fmt("engine deployment.skipped rollout/%lld/tenant/t-b {\"id\": %lld, \"to\": \"skipped\","
				" \"from\": \"scheduled\", \"epoch\": %lld}", f.rollout, f.dep[1], ep));
	assert_string_equal(audit_row(a2, buf, sizeof(buf)), fmt("erin note.second rollout/%lld {}", f.rollout));
	assert_string_equal(audit_row(a2 + 1, buf, sizeof(buf)), "none");
	/* the transition before the event op has the id before it, the one after the id after */
	const char *pr[] = { fmt("%lld", f.rollout) };
	assert_string_equal(q_str(conn, buf, sizeof(buf),
		"SELECT string_agg(concat_ws(' ', id, kind, payload->>'to'), ', ' ORDER BY id) FROM events WHERE rollout_id = $1",
		1, pr),
		fmt("%lld deployment.state waiting_window, %lld note, %lld deployment.state skipped", ev - 1, ev, ev + 1));
	check_chain(4);
}

/* A call waiting for a row lock does not hold the audit lock: the chain's
 * lock is the last one a call takes.  (0003 took it at the first auditable
 * op, so an append elsewhere waited for the whole call.) */
static void test_tx_audit_lock_last(void **state)
{
	(void)state;
	fx f = fixture();
	long long ep = lease_take("engine-a");
	PGconn *holder = edb_connect(db.conninfo), *tx = edb_connect(db.conninfo), *other = edb_connect(db.conninfo);
	q_exec(other, "SET statement_timeout = '10s'");   /* a regression fails instead of hanging */
	q_exec(holder, "BEGIN");
	const char *pd[] = { fmt("%lld", f.dep[2]) };
	PQclear(q(holder, "SELECT 1 FROM deployments WHERE id = $1 FOR UPDATE", 1, pd));
	const char *p[] = { fmt("%lld", ep),
			    fmt("[{\"op\":\"audit\",\"actor\":\"dave\",\"action\":\"note\",\"object\":\"rollout/%lld\"},"
				"{\"op\":\"deployment\",\"id\":%lld,\"from\":\"scheduled\",\"to\":\"skipped\"}]",
				f.rollout, f.dep[2]) };
	assert_int_equal(PQsendQueryParams(tx, "SELECT ws_engine_tx($1, $2)", 2, NULL, p, NULL, NULL, 0), 1);
	usleep(300 * 1000);
	assert_int_equal(PQconsumeInput(tx), 1);
	assert_int_equal(PQisBusy(tx), 1);   /* waiting for the row */
	long long appended = q_int(other, "SELECT ws_audit_append('carol', 'test.meanwhile', 'audit/lock')", 0, NULL);
	q_exec(holder, "COMMIT");
	PGresult *r = PQgetResult(tx);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("ws_engine_tx: %s", PQresultErrorMessage(r));
	long long mine = result_id(PQgetvalue(r, 0, 0), 0);
	PQclear(r);
	assert_null(PQgetResult(tx));
	/* the call's rows come after the row appended while it waited */
	assert_int_equal(mine, appended + 1);
	char buf[512];
	assert_string_equal(audit_row(mine + 1, buf, sizeof(buf)),
			    fmt("engine deployment.skipped rollout/%lld/tenant/t-c {\"id\": %lld, \"to\": \"skipped\","
				" \"from\": \"scheduled\", \"epoch\": %lld}", f.rollout, f.dep[2], ep));
	PQfinish(holder);
	PQfinish(tx);
	PQfinish(other);
	check_chain(3);
}

/* Four leaders' connections committing batches at once, and a fifth
 * appending through ws_audit_append: every call gets the right results, its
 * rows stay together in op order, and the log is one chain that verifies. */
static void test_tx_concurrent(void **state)
{
	(void)state;
	enum { CONNS = 4, ROUNDS = 40 };
	long long ep = lease_take("engine-a");
	fx f[CONNS];
	PGconn *c[CONNS + 1];
	for (int k = 0; k < CONNS; k++) {
		f[k] = fixture();
		tx_ok(ep, fmt("[{\"op\":\"deployment\",\"id\":%lld,\"from\":\"scheduled\",\"to\":\"waiting_window\"},"
			      "{\"op\":\"deployment\",\"id\":%lld,\"from\":\"scheduled\",\"to\":\"waiting_window\"}]",
			      f[k].dep[0], f[k].dep[1]), NULL, 0);
	}
	for (int k = 0; k <= CONNS; k++)
		c[k] = edb_connect(db.conninfo);
	long long rows0 = q_int(conn, "SELECT count(*) FROM audit_log", 0, NULL);
	static long long note[CONNS][ROUNDS];
	for (int i = 0; i < ROUNDS; i++) {
		for (int k = 0; k < CONNS; k++) {
			const char *p[] = { fmt("%lld", ep),
				fmt("[{\"op\":\"deployment\",\"id\":%lld,\"from\":\"waiting_window\",\"to\":\"waiting_window\","
				    "  \"add_move\":{\"round\":%d}},"
				    "{\"op\":\"audit\",\"actor\":\"conn-%d\",\"action\":\"note\",\"object\":\"rollout/%lld\","
				    "  \"details\":{\"round\":%d}},"
				    "{\"op\":\"deployment\",\"id\":%lld,\"from\":\"waiting_window\",\"to\":\"waiting_window\","
				    "  \"add_move\":{\"round\":%d}}]",
				    f[k].dep[0], i, k, f[k].rollout, i, f[k].dep[1], i) };
			assert_int_equal(PQsendQueryParams(c[k], "SELECT ws_engine_tx($1, $2)", 2, NULL, p, NULL, NULL, 0), 1);
		}
		const char *pa[] = { fmt("{\"round\": %d}", i) };
		assert_int_equal(PQsendQueryParams(c[CONNS], "SELECT ws_audit_append('carol', 'test.old', 'audit/race', $1)",
						   1, NULL, pa, NULL, NULL, 0), 1);
		for (int k = 0; k <= CONNS; k++) {
			PGresult *r;
			while ((r = PQgetResult(c[k])) != NULL) {
				if (PQresultStatus(r) != PGRES_TUPLES_OK)
					fail_msg("connection %d, round %d: %s", k, i, PQresultErrorMessage(r));
				if (k < CONNS) {
					const char *res = PQgetvalue(r, 0, 0);
					note[k][i] = result_id(res, 1);
					assert_string_equal(res, fmt("[{\"id\": %lld, \"rollout\": %lld}, {\"id\": %lld}, "
								     "{\"id\": %lld, \"rollout\": %lld}]",
								     f[k].dep[0], f[k].rollout, note[k][i],
								     f[k].dep[1], f[k].rollout));
				}
				PQclear(r);
			}
		}
	}
	for (int k = 0; k <= CONNS; k++)
		PQfinish(c[k]);

	char buf[512];
	for (int k = 0; k < CONNS; k++)
		for (int i = 0; i < ROUNDS; i++) {
			long long a = note[k][i];
			assert_string_equal(audit_row(a, buf, sizeof(buf)),
					    fmt("conn-%d note rollout/%lld {\"round\": %d}", k, f[k].rollout, i));
			for (int d = 0; d < 2; d++)
				assert_string_equal(audit_row(d ? a + 1 : a - 1, buf, sizeof(buf)),
					fmt("engine deployment.waiting_window rollout/%lld/tenant/%s {\"id\": %lld, \"to\": "
					    "\"waiting_window\", \"from\": \"waiting_window\", \"epoch\": %lld, \"add_move\": "
					    "{\"round\": %d}}", f[k].rollout, d ? "t-b" : "t-a", f[k].dep[d], ep, i));
			const char *pd[] = { fmt("%lld", f[k].dep[0]), fmt("%lld", f[k].dep[1]) };
			assert_int_equal(q_int(conn, "SELECT sum(jsonb_array_length(moves)) FROM deployments WHERE id IN ($1, $2)",
					       2, pd), 2 * ROUNDS);
		}
	assert_int_equal(q_int(conn, "SELECT count(*) FROM audit_log", 0, NULL), rows0 + (CONNS * 3 + 1) * ROUNDS);
	assert_int_equal(q_int(conn, "SELECT count(*) FROM audit_log WHERE action = 'test.old'", 0, NULL), ROUNDS);
	assert_int_equal(q_int(conn, "SELECT count(*) FROM (SELECT prev_hash FROM audit_log GROUP BY prev_hash"
			       " HAVING count(*) > 1) forks", 0, NULL), 0);
	check_chain(rows0 + (CONNS * 3 + 1) * ROUNDS);
}

/* A release can be corrected until a rollout uses it, never after. */
static void test_release_immutable(void **state)
{
	(void)state;
	PQclear(q(conn, "INSERT INTO releases (version, digest, created_by) VALUES ('2.0.0', 'sha256:' || repeat('c', 64), 'alice')",
		  0, NULL));
	PQclear(q(conn, "UPDATE releases SET notes = 'fixed typo' WHERE version = '2.0.0'", 0, NULL));
	fx f = fixture();
	const char *p[] = { f.version };
	q_fail(conn, "WSE07", fmt("release %s is used by rollout %lld and cannot be changed", f.version, f.rollout),
	       "UPDATE releases SET notes = 'edited' WHERE version = $1", 1, p);
	q_fail(conn, "WSE07", fmt("release %s is used by rollout %lld and cannot be changed", f.version, f.rollout),
	       "UPDATE releases SET digest = 'sha256:' || repeat('d', 64) WHERE version = $1", 1, p);
	q_fail(conn, "WSE07", fmt("release %s is used by rollout %lld and cannot be changed", f.version, f.rollout),
	       "DELETE FROM releases WHERE version = $1", 1, p);
	PQclear(q(conn, "DELETE FROM releases WHERE version = '2.0.0'", 0, NULL));
	/* digests and kinds are checked */
	q_fail(conn, "23514", "new row for relation \"releases\" violates check constraint \"releases_digest_check\"",
	       "INSERT INTO releases (version, digest, created_by) VALUES ('3.0.0', 'sha256:ABC', 'alice')", 0, NULL);
	q_fail(conn, "23514", "new row for relation \"releases\" violates check constraint \"releases_kind_check\"",
	       "INSERT INTO releases (version, digest, kind, created_by) VALUES ('3.0.0', 'sha256:' || repeat('e', 64), 'hotfix', 'alice')",
	       0, NULL);
	/* plans are frozen and their sha256 is the text's */
	const char *pr[] = { fmt("%lld", f.rollout) };
	q_fail(conn, "WSE07", "rollout_plans rows cannot be changed or removed",
	       "UPDATE rollout_plans SET plan = '{}' WHERE rollout_id = $1", 1, pr);
	q_fail(conn, "23514", "new row for relation \"rollout_plans\" violates check constraint \"rollout_plans_check\"",
	       "INSERT INTO rollout_plans (rollout_id, version, plan, sha256, diff, reason, created_by)"
	       " VALUES ($1, 2, 'x', repeat('0', 64), '{}', 'replan', 'alice')", 1, pr);
}

/* start / pause / resume / abort and approvals: guarded, audited, and the
 * leader is woken. */
static void test_person_actions(void **state)
{
	(void)state;
	fx f = fixture();
	q_exec(conn, "LISTEN ws_engine");
	const char *p[] = { fmt("%lld", f.rollout) };
	char buf[512];
	q_fail(conn, "WSE02", fmt("state conflict: rollout %lld is planned and cannot be paused", f.rollout),
	       "SELECT ws_rollout_command($1, 'pause', 'alice', NULL)", 1, p);
	q_fail(conn, "WSE04", "unknown rollout action \"explode\" (expected start, pause, resume or abort)",
	       "SELECT ws_rollout_command($1, 'explode', 'alice', NULL)", 1, p);
	q_fail(conn, "WSE05", "rollout 999999 does not exist",
	       "SELECT ws_rollout_command(999999, 'abort', 'alice', NULL)", 0, NULL);
	assert_string_equal(q_str(conn, buf, sizeof(buf), "SELECT ws_rollout_command($1, 'start', 'alice', 'go')", 1, p),
			    fmt("{\"id\": %lld, \"to\": \"approved\", \"from\": \"planned\"}", f.rollout));
	PQconsumeInput(conn);
	PGnotify *n = PQnotifies(conn);
	assert_non_null(n);
	assert_string_equal(n->relname, "ws_engine");
	assert_string_equal(n->extra, p[0]);
	PQfreemem(n);
	assert_string_equal(q_str(conn, buf, sizeof(buf),
		"SELECT concat_ws(' ', actor, action, object, details->>'from', details->>'to', details->>'reason')"
		" FROM audit_log ORDER BY id DESC LIMIT 1", 0, NULL),
		fmt("alice rollout.start rollout/%lld planned approved go", f.rollout));

	/* approvals: never your own rollout, once per person and wave, only while pending */
	q_fail(conn, "WSE06", fmt("separation of duties: alice created rollout %lld and cannot approve or reject it", f.rollout),
	       "SELECT ws_wave_decide($1, 0, 'alice', 'approver', 'approve')", 1, p);
	assert_string_equal(q_str(conn, buf, sizeof(buf),
		"SELECT ws_wave_decide($1, 0, 'bob', 'approver', 'approve', 'lgtm') - 'id'", 1, p),
		"{\"approvals\": 1, \"rejections\": 0}");
	q_fail(conn, "WSE02", fmt("state conflict: bob has already decided on wave 0 of rollout %lld", f.rollout),
	       "SELECT ws_wave_decide($1, 0, 'bob', 'approver', 'reject')", 1, p);
	assert_string_equal(q_str(conn, buf, sizeof(buf),
		"SELECT ws_wave_decide($1, 0, 'dave', 'security', 'reject') - 'id'", 1, p),
		"{\"approvals\": 1, \"rejections\": 1}");
	q_fail(conn, "WSE05", fmt("rollout %lld has no wave 7", f.rollout),
	       "SELECT ws_wave_decide($1, 7, 'bob', 'approver', 'approve')", 1, p);
	q_fail(conn, "WSE04", "decision must be approve or reject, not \"maybe\"",
	       "SELECT ws_wave_decide($1, 0, 'erin', 'approver', 'maybe')", 1, p);
	/* even a direct insert cannot approve one's own rollout */
	const char *pw[] = { p[0], fmt("%lld", f.wave[1]) };
	q_fail(conn, "WSE06", fmt("separation of duties: alice created rollout %lld and cannot approve or reject it", f.rollout),
	       "INSERT INTO approvals (rollout_id, wave_id, actor, role, decision) VALUES ($1, $2, 'alice', 'admin', 'approve')",
	       2, pw);

	/* the engine's batch sees the person's pause through its check */
	long long ep = lease_take("engine-a");
	tx_ok(ep, fmt("[{\"op\":\"rollout\",\"id\":%lld,\"from\":\"approved\",\"to\":\"running\"}]", f.rollout), NULL, 0);
	PQclear(q(conn, "SELECT ws_rollout_command($1, 'pause', 'bob', 'lunch')", 1, p));
	tx_fail(ep, fmt("[{\"op\":\"check\",\"object\":\"rollout\",\"id\":%lld,\"state\":\"running\"},"
			"{\"op\":\"deployment\",\"id\":%lld,\"from\":\"scheduled\",\"to\":\"waiting_window\"}]",
			f.rollout, f.dep[0]),
		"WSE02", fmt("state conflict: rollout %lld is paused, expected running (op 1)", f.rollout));
	assert_string_equal(q_str(conn, buf, sizeof(buf), "SELECT ws_rollout_command($1, 'abort', 'bob', 'bad build')", 1, p),
			    fmt("{\"id\": %lld, \"to\": \"aborted\", \"from\": \"paused\"}", f.rollout));
	q_fail(conn, "WSE02", fmt("state conflict: rollout %lld is aborted and cannot be resumed", f.rollout),
	       "SELECT ws_rollout_command($1, 'resume', 'bob', NULL)", 1, p);
	q_exec(conn, "UNLISTEN ws_engine");
	while ((n = PQnotifies(conn)) != NULL)
		PQfreemem(n);
}

/* The lease functions, by the database's clock.  Terms of 2 s: the
 * statements between taking and checking must fit in one on a loaded
 * machine. */
static void test_lease_sql(void **state)
{
	(void)state;
	q_exec(conn, "UPDATE engine_lease SET holder = NULL");
	long long e0 = q_int(conn, "SELECT epoch FROM engine_lease", 0, NULL);
	char buf[256];
	const char *sql = "SELECT concat_ws(' ', epoch, leader::text, holder) FROM ws_lease_acquire($1, $2::int)";
	const char *a[] = { "node-a", "2000" }, *b[] = { "node-b", "2000" };
	assert_string_equal(q_str(conn, buf, sizeof(buf), sql, 2, a), fmt("%lld true node-a", e0 + 1));
	/* renewing keeps the epoch; another holder is told who has it */
	assert_string_equal(q_str(conn, buf, sizeof(buf), sql, 2, a), fmt("%lld true node-a", e0 + 1));
	assert_string_equal(q_str(conn, buf, sizeof(buf), sql, 2, b), fmt("%lld false node-a", e0 + 1));
	long long rem = q_int(conn, "SELECT remaining_ms FROM ws_lease_acquire('node-b', 2000)", 0, NULL);
	assert_true(rem > 0 && rem <= 2000);
	/* after expiry the other takes it with a new epoch */
	usleep(2100 * 1000);
	assert_string_equal(q_str(conn, buf, sizeof(buf), sql, 2, b), fmt("%lld true node-b", e0 + 2));
	assert_string_equal(q_str(conn, buf, sizeof(buf), sql, 2, a), fmt("%lld false node-b", e0 + 2));
	/* the same holder coming back after expiry starts a new term too */
	usleep(2100 * 1000);
	assert_string_equal(q_str(conn, buf, sizeof(buf), sql, 2, b), fmt("%lld true node-b", e0 + 3));
	/* release: only the current term, then the lease is free at once */
	const char *ra[] = { "node-a", fmt("%lld", e0 + 3) }, *rb[] = { "node-b", fmt("%lld", e0 + 3) };
	const char *rb_old[] = { "node-b", fmt("%lld", e0 + 2) };
	assert_string_equal(q_str(conn, buf, sizeof(buf), "SELECT ws_lease_release($1, $2)", 2, ra), "f");
	assert_string_equal(q_str(conn, buf, sizeof(buf), "SELECT ws_lease_release($1, $2)", 2, rb_old), "f");
	assert_string_equal(q_str(conn, buf, sizeof(buf), "SELECT ws_lease_release($1, $2)", 2, rb), "t");
	assert_string_equal(q_str(conn, buf, sizeof(buf), sql, 2, a), fmt("%lld true node-a", e0 + 4));
	q_fail(conn, "WSE04", "lease ttl_ms 5 is out of range (100 to 3600000)",
	       "SELECT * FROM ws_lease_acquire('node-a', 5)", 0, NULL);
	q_fail(conn, "WSE04", "lease holder must not be empty", "SELECT * FROM ws_lease_acquire('', 1000)", 0, NULL);
}

/* Fencing: a takeover waits for the old leader's transaction in flight, and
 * after it the old epoch writes nothing. */
static void test_lease_fencing(void **state)
{
	(void)state;
	fx f = fixture();
	q_exec(conn, "UPDATE engine_lease SET holder = NULL");
	long long ep = q_int(conn, "SELECT epoch FROM ws_lease_acquire('old', 200)", 0, NULL);
	usleep(300 * 1000);   /* expired, not yet taken */
	PGconn *old = edb_connect(db.conninfo), *newer = edb_connect(db.conninfo);
	q_exec(old, "BEGIN");
	const char *p[] = { fmt("%lld", ep),
			    fmt("[{\"op\":\"deployment\",\"id\":%lld,\"from\":\"scheduled\",\"to\":\"skipped\",\"reason\":\"backup stale\"}]",
				f.dep[2]) };
	PQclear(q(old, "SELECT ws_engine_tx($1, $2)", 2, p));
	assert_int_equal(PQsendQuery(newer, "SELECT epoch, leader FROM ws_lease_acquire('new', 5000)"), 1);
	usleep(300 * 1000);
	assert_int_equal(PQconsumeInput(newer), 1);
	assert_int_equal(PQisBusy(newer), 1);   /* waiting for the old transaction */
	q_exec(old, "COMMIT");
	PGresult *r = PQgetResult(newer);
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	assert_int_equal(atoll(PQgetvalue(r, 0, 0)), ep + 1);
	assert_string_equal(PQgetvalue(r, 0, 1), "t");
	PQclear(r);
	assert_null(PQgetResult(newer));
	/* the write that got in first is there; the next one is refused */
	const char *pd[] = { fmt("%lld", f.dep[2]) };
	char buf[64];
	assert_string_equal(q_str(conn, buf, sizeof(buf), "SELECT state FROM deployments WHERE id = $1", 1, pd), "skipped");
	q_fail(old, "WSE01", "stale epoch", "SELECT ws_engine_tx($1, '[]')", 1, p);
	PQfinish(old);
	PQfinish(newer);
}

/* ---- setup ---------------------------------------------------------------------- */

static int setup(void **state)
{
	(void)state;
	edb_create(&db, getenv("WS_TEST_PG_URL"), "engine");
	conn = edb_connect(db.conninfo);
	q_exec(conn, "INSERT INTO clusters (name, hosting) VALUES ('c1', 'shared')");
	q_exec(conn, "INSERT INTO tenants (slug, name, cluster_id, criticality, timezone)"
		     " SELECT s, s, 1, 'standard', 'UTC' FROM unnest(ARRAY['t-a', 't-b', 't-c']) s");
	q_exec(conn, "SELECT * FROM ws_policy_store('std', 'body', repeat('a', 64), NULL, 'alice')");
	return 0;
}

/* A test that failed half-way may have left its transaction open. */
static int reset(void **state)
{
	(void)state;
	if (PQtransactionStatus(conn) != PQTRANS_IDLE)
		PQclear(PQexec(conn, "ROLLBACK"));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	PQfinish(conn);
	edb_drop(&db);
	return 0;
}

int main(void)
{
	const char *url = getenv("WS_TEST_PG_URL");
	if (!url || !*url) {
		printf("WS_TEST_PG_URL is not set: skipping (start servers with "
		       "eval \"$(tests/harness/services.sh start .run/services)\")\n");
		return 77;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_migrate_again, reset),
		cmocka_unit_test_setup(test_transitions_agree, reset),
		cmocka_unit_test_setup(test_tx_batch, reset),
		cmocka_unit_test_setup(test_tx_stale_epoch, reset),
		cmocka_unit_test_setup(test_tx_conflicts, reset),
		cmocka_unit_test_setup(test_tx_invalid, reset),
		cmocka_unit_test_setup(test_outbox_key_unique, reset),
		cmocka_unit_test_setup(test_audit_chain, reset),
		cmocka_unit_test_setup(test_audit_concurrent, reset),
		cmocka_unit_test_setup(test_tx_audit_ids, reset),
		cmocka_unit_test_setup(test_tx_audit_lock_last, reset),
		cmocka_unit_test_setup(test_tx_concurrent, reset),
		cmocka_unit_test_setup(test_release_immutable, reset),
		cmocka_unit_test_setup(test_person_actions, reset),
		cmocka_unit_test_setup(test_lease_sql, reset),
		cmocka_unit_test_setup(test_lease_fencing, reset),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
