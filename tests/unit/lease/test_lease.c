/*
 * test_lease.c - engine leadership on a real loop against a real
 * PostgreSQL (no mocks): one leader at a time, renewals keep the epoch, a
 * clean stop hands over at once with epoch + 1, an expired lease is taken
 * over with epoch + 1, and a leader whose renewals stop being answered steps
 * down by itself before the database's lease runs out.
 *
 * WS_TEST_PG_URL names the server; the program makes a database of its own
 * (engine_db.h) and drops it at the end.  Every test ends with
 * uv_loop_close() == 0.
 */
#include <inttypes.h>
#include <libpq-fe.h>
#include "loop_test.h"
#include "engine_db.h"
#include "wstest.h"
#include "wavesched/lease.h"
#include "wavesched/pg.h"

static edb db;

typedef struct watcher {
	int changes;
	bool leader;
	int64_t epoch;
	uint64_t stepped_down_ms;
	char db_when_down[64];   /* the database's view when we stepped down */
	PGconn *probe;           /* reads the lease row at step-down (never locks) */
} watcher;

static void change_cb(void *arg, bool leader, int64_t epoch)
{
	watcher *w = arg;
	w->changes++;
	w->leader = leader;
	w->epoch = epoch;
	if (!leader) {
		w->stepped_down_ms = now_ms();
		if (w->probe) {
			PGresult *r = PQexec(w->probe, "SELECT (clock_timestamp() < expires_at)::text FROM engine_lease");
			snprintf(w->db_when_down, sizeof(w->db_when_down), "%s",
				 PQresultStatus(r) == PGRES_TUPLES_OK ? PQgetvalue(r, 0, 0) : PQresultErrorMessage(r));
			PQclear(r);
		}
	}
}

static bool is_leader(const void *w)
{
	return ((const watcher *)w)->leader;
}

static bool holder_known(const void *l)
{
	return *ws_lease_current_holder(l) != '\0';
}

static ws_pg_pool *pool_new(tctx *t)
{
	ws_pg_opts o = { .conninfo = db.conninfo, .size = 1, .query_timeout_ms = 20000,
			 .connect_timeout_ms = 5000, .backoff_min_ms = 50, .backoff_max_ms = 400 };
	ws_pg_pool *p = ws_pg_pool_new(&t->loop, &o);
	assert_non_null(p);
	ws_pg_pool_start(p);
	return p;
}

static void pool_close(tctx *t, ws_pg_pool *p)
{
	int closed = 0;
	ws_pg_pool_close(p, closed_cb, &closed);
	assert_true(run_until_count(t, &closed, 20000));
}

static ws_lease *lease_new(tctx *t, ws_pg_pool *p, const char *holder, uint32_t ttl, uint32_t renew,
			   uint32_t margin, watcher *w)
{
	ws_lease_opts o = { .holder = holder, .ttl_ms = ttl, .renew_ms = renew, .margin_ms = margin };
	ws_diags d;
	ws_diags_init(&d);
	ws_lease *l = ws_lease_new(&t->loop, p, &o, change_cb, w, &d);
	assert_non_null(l);
	assert_int_equal(d.len, 0);
	ws_diags_free(&d);
	assert_int_equal(ws_lease_start(l), 0);
	return l;
}

static void lease_stop(tctx *t, ws_lease *l)
{
	int stopped = 0;
	ws_lease_stop(l, closed_cb, &stopped);
	assert_true(run_until_count(t, &stopped, 20000));
	assert_int_equal(stopped, 1);
}

static long long db_int(const char *sql)
{
	PGconn *c = edb_connect(db.conninfo);
	PGresult *r = PQexec(c, sql);
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	long long v = atoll(PQgetvalue(r, 0, 0));
	PQclear(r);
	PQfinish(c);
	return v;
}

static void db_exec(const char *sql)
{
	PGconn *c = edb_connect(db.conninfo);
	PGresult *r = PQexec(c, sql);
	assert_true(PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK);
	PQclear(r);
	PQfinish(c);
}

/* ---- tests ----------------------------------------------------------------------- */

static void test_bad_options(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	ws_diags d;
	ws_diags_init(&d);
	ws_lease_opts o = { .holder = "x", .ttl_ms = 1000, .renew_ms = 900, .margin_ms = 200 };
	assert_null(ws_lease_new(&t.loop, NULL, &o, NULL, NULL, &d));
	o.renew_ms = 0;
	o.ttl_ms = 50;
	assert_null(ws_lease_new(&t.loop, NULL, &o, NULL, NULL, &d));
	o.ttl_ms = 1000;
	o.holder = "";
	assert_null(ws_lease_new(&t.loop, NULL, &o, NULL, NULL, &d));
	char *text = wt_diags_text(&d);
	assert_string_equal(text,
		"lease: renewals every 900 ms cannot keep a 1000 ms lease with a 200 ms margin (renew must be below ttl - margin)\n"
		"lease: ttl 50 ms is out of range (100 to 3600000)\n"
		"lease: the holder name must be 1 to 127 characters");
	free(text);
	ws_diags_free(&d);
	tctx_done(&t);
}

/* One leader; renewals keep its epoch; a second holder waits; a clean stop
 * hands over at once with epoch + 1. */
static void test_leader_renew_handover(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	db_exec("UPDATE engine_lease SET holder = NULL");
	long long e0 = db_int("SELECT epoch FROM engine_lease");
	ws_pg_pool *pa = pool_new(&t), *pb = pool_new(&t);
	watcher wa = { 0 }, wb = { 0 };
	ws_lease *a = lease_new(&t, pa, "node-a", 4000, 200, 1000, &wa);
	assert_true(run_until_pred(&t, is_leader, &wa, 10000));
	assert_int_equal(wa.epoch, e0 + 1);
	assert_true(ws_lease_is_leader(a));
	assert_int_equal(ws_lease_epoch(a), e0 + 1);

	ws_lease *b = lease_new(&t, pb, "node-b", 4000, 200, 1000, &wb);
	/* several renewals later: still one leader, same epoch, no flapping */
	run_for(&t, 1200);
	assert_int_equal(wa.changes, 1);
	assert_true(wa.leader);
	assert_int_equal(wb.changes, 0);
	assert_false(ws_lease_is_leader(b));
	assert_int_equal(ws_lease_epoch(b), 0);
	assert_string_equal(ws_lease_current_holder(b), "node-a");
	assert_int_equal(db_int("SELECT epoch FROM engine_lease"), e0 + 1);
	assert_true(db_int("SELECT (renewed_at > acquired_at)::int FROM engine_lease") == 1);

	/* clean stop: a steps down first, releases, b takes over well before
	 * a's lease would have expired */
	PGconn *c = edb_connect(db.conninfo);
	PGresult *r = PQexec(c, "SELECT expires_at::text FROM engine_lease");
	char a_expires[64];
	snprintf(a_expires, sizeof(a_expires), "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	lease_stop(&t, a);
	assert_int_equal(wa.changes, 2);
	assert_false(wa.leader);
	assert_int_equal(wa.epoch, e0 + 1);
	assert_true(run_until_pred(&t, is_leader, &wb, 10000));
	assert_int_equal(wb.epoch, e0 + 2);
	/* taken before a's lease would have run out: released, not expired */
	const char *pe[] = { a_expires };
	r = PQexecParams(c, "SELECT (acquired_at < $1::timestamptz)::text FROM engine_lease", 1, NULL, pe, NULL, NULL, 0);
	assert_string_equal(PQgetvalue(r, 0, 0), "true");
	PQclear(r);
	PQfinish(c);
	assert_int_equal(db_int("SELECT epoch FROM engine_lease"), e0 + 2);
	lease_stop(&t, b);
	assert_int_equal(db_int("SELECT (holder IS NULL)::int FROM engine_lease"), 1);
	pool_close(&t, pa);
	pool_close(&t, pb);
	tctx_done(&t);
}

/* A holder that died without releasing: taken over after expiry, epoch + 1. */
static void test_takeover_after_expiry(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	db_exec("UPDATE engine_lease SET holder = NULL");
	/* Long enough to be seen held on a loaded machine before it runs out. */
	long long e = db_int("SELECT epoch FROM ws_lease_acquire('crashed', 2500)");
	ws_pg_pool *p = pool_new(&t);
	watcher w = { 0 };
	ws_lease *l = lease_new(&t, p, "node-c", 1000, 200, 200, &w);
	assert_true(run_until_pred(&t, holder_known, l, 10000));
	assert_false(w.leader);
	assert_string_equal(ws_lease_current_holder(l), "crashed");
	assert_true(run_until_pred(&t, is_leader, &w, 10000));
	assert_int_equal(w.epoch, e + 1);
	assert_int_equal(w.changes, 1);
	/* and the crashed holder, coming back, is told so */
	assert_int_equal(db_int("SELECT leader::int FROM ws_lease_acquire('crashed', 800)"), 0);
	lease_stop(&t, l);
	pool_close(&t, p);
	tctx_done(&t);
}

/* Renewals that are not answered (the lease row is locked by somebody
 * else): the leader steps down on its own while the database still counts
 * the lease as valid, and comes back with a new epoch once it can. */
static void test_step_down_unanswered(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	db_exec("UPDATE engine_lease SET holder = NULL");
	ws_pg_pool *p = pool_new(&t);
	watcher w = { 0 };
	w.probe = edb_connect(db.conninfo);
	ws_lease *l = lease_new(&t, p, "node-d", 2000, 200, 400, &w);
	assert_true(run_until_pred(&t, is_leader, &w, 10000));
	int64_t e = w.epoch;
	run_for(&t, 300);   /* a renewal or two */
	assert_true(w.leader);

	PGconn *blocker = edb_connect(db.conninfo);
	PGresult *r = PQexec(blocker, "BEGIN");
	PQclear(r);
	r = PQexec(blocker, "SELECT 1 FROM engine_lease FOR UPDATE");
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	PQclear(r);
	uint64_t blocked_at = now_ms();

	bool down = false;
	while (!down && now_ms() - blocked_at < 10000) {
		run_for(&t, 20);
		down = !w.leader;
	}
	assert_true(down);
	assert_int_equal(w.changes, 2);
	assert_int_equal(w.epoch, e);
	assert_false(ws_lease_is_leader(l));
	assert_int_equal(ws_lease_epoch(l), 0);
	/* stepped down while the database still held the lease for us */
	assert_string_equal(w.db_when_down, "true");

	/* Keep the lock until the database lease has expired, then let go: the
	 * next term has a new epoch. */
	PGresult *x;
	do {
		run_for(&t, 50);
		x = PQexec(w.probe, "SELECT (clock_timestamp() >= expires_at)::int FROM engine_lease");
		down = atoi(PQgetvalue(x, 0, 0)) == 1;
		PQclear(x);
	} while (!down && now_ms() - blocked_at < 10000);
	assert_true(down);
	r = PQexec(blocker, "ROLLBACK");
	PQclear(r);
	PQfinish(blocker);
	assert_true(run_until_pred(&t, is_leader, &w, 10000));
	assert_int_equal(w.epoch, e + 1);
	assert_int_equal(w.changes, 3);
	lease_stop(&t, l);
	PQfinish(w.probe);
	pool_close(&t, p);
	tctx_done(&t);
}

/* Stopping before any answer came back, and stopping a follower. */
static void test_stop_early(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	ws_pg_pool *p = pool_new(&t);
	watcher w = { 0 };
	ws_lease *l = lease_new(&t, p, "node-e", 1000, 200, 200, &w);
	lease_stop(&t, l);     /* the first attempt had not even been sent */
	l = lease_new(&t, p, "node-e", 1000, 200, 200, &w);
	run_for(&t, 1);        /* sent, maybe answered */
	lease_stop(&t, l);
	assert_false(w.leader);
	assert_int_equal(db_int("SELECT (holder IS DISTINCT FROM 'node-e')::int FROM engine_lease"), 1);
	pool_close(&t, p);
	tctx_done(&t);
}

static int setup(void **state)
{
	(void)state;
	edb_create(&db, getenv("WS_TEST_PG_URL"), "lease");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	edb_drop(&db);
	return 0;
}

int main(void)
{
	if (!loop_test_server_url("WS_TEST_PG_URL"))
		return 77;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_options),
		cmocka_unit_test(test_leader_renew_handover),
		cmocka_unit_test(test_takeover_after_expiry),
		cmocka_unit_test(test_step_down_unanswered),
		cmocka_unit_test(test_stop_early),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
