/*
 * test_pg.c - the PostgreSQL pool against a real server (no mocks).
 *
 * WS_TEST_PG_URL: a libpq URI of a server to use (tests/harness/services.sh
 * prints it); without it the whole program is skipped (exit 77).
 * WS_HARNESS_DIR: tests/harness; the restart test starts a private server
 * of its own with pg.sh there, since it stops and restarts it.
 *
 * Each test runs its own uv loop and ends with uv_loop_close() == 0, which
 * proves every handle was closed; ASan/LSan prove the memory was freed.
 */
#include <libpq-fe.h>
#include "loop_test.h"
#include "wavesched/pg.h"

static const char *pg_url;

/* ---- query results, copied out of the callback -------------------------- */

typedef struct qres {
	bool done;
	int calls;
	int code;
	char sqlstate[6];
	char message[512];
	int ntuples;
	bool v0_null;
	char v0[256];
	char v1[256];
	uint64_t at_ms;
} qres;

static void query_cb(void *arg, const PGresult *res, const ws_pg_err *err)
{
	qres *r = arg;
	r->calls++;
	r->done = true;
	r->at_ms = now_ms();
	if (err) {
		assert_null(res);
		assert_non_null(err->message);
		assert_non_null(err->sqlstate);
		assert_non_null(err->detail);
		r->code = err->code;
		snprintf(r->sqlstate, sizeof(r->sqlstate), "%s", err->sqlstate);
		snprintf(r->message, sizeof(r->message), "%s", err->message);
		return;
	}
	assert_non_null(res);
	r->code = 0;
	r->ntuples = PQntuples(res);
	if (r->ntuples > 0 && PQnfields(res) > 0) {
		r->v0_null = PQgetisnull(res, 0, 0);
		snprintf(r->v0, sizeof(r->v0), "%s", PQgetvalue(res, 0, 0));
		if (PQnfields(res) > 1)
			snprintf(r->v1, sizeof(r->v1), "%s", PQgetvalue(res, 0, 1));
	}
}

static qres sync_query(tctx *t, ws_pg_pool *p, const char *sql, int n, const char *const *params)
{
	qres r = { 0 };
	assert_int_equal(ws_pg_query(p, sql, n, params, query_cb, &r), 0);
	assert_true(run_until(t, &r.done, 20000));
	assert_int_equal(r.calls, 1);
	return r;
}

static qres sync_conn_query(tctx *t, ws_pg_conn *c, const char *sql, int n, const char *const *params)
{
	qres r = { 0 };
	assert_int_equal(ws_pg_conn_query(c, sql, n, params, query_cb, &r), 0);
	assert_true(run_until(t, &r.done, 20000));
	assert_int_equal(r.calls, 1);
	return r;
}

typedef struct acq {
	bool done;
	int calls;
	ws_pg_conn *conn;
	int code;
} acq;

static void acquire_cb(void *arg, ws_pg_conn *c, const ws_pg_err *err)
{
	acq *a = arg;
	a->calls++;
	a->done = true;
	a->conn = c;
	a->code = err ? err->code : 0;
	if (err)
		assert_null(c);
	else
		assert_non_null(c);
}

static ws_pg_conn *sync_acquire(tctx *t, ws_pg_pool *p)
{
	acq a = { 0 };
	assert_int_equal(ws_pg_acquire(p, acquire_cb, &a), 0);
	assert_true(run_until(t, &a.done, 20000));
	assert_int_equal(a.code, 0);
	return a.conn;
}

static void close_pool(tctx *t, ws_pg_pool *p)
{
	int closed = 0;
	ws_pg_pool_close(p, closed_cb, &closed);
	run_until_count(t, &closed, 20000);
	assert_int_equal(closed, 1);
}

static ws_pg_pool *new_pool(tctx *t, const char *url, int size, uint64_t timeout_ms)
{
	ws_pg_opts o = { .conninfo = url, .size = size, .query_timeout_ms = timeout_ms,
			 .connect_timeout_ms = 3000, .backoff_min_ms = 50, .backoff_max_ms = 400 };
	ws_pg_pool *p = ws_pg_pool_new(&t->loop, &o);
	assert_non_null(p);
	ws_pg_pool_start(p);
	return p;
}

typedef struct pool_want {
	const ws_pg_pool *p;
	int n;
} pool_want;

static bool pool_connected(const void *arg)
{
	const pool_want *w = arg;
	ws_pg_stats st;
	ws_pg_pool_stats(w->p, &st);
	return st.connected >= w->n;
}

/* Runs the loop until `n` connections are up (the pool connects them all
 * at start, but on a loaded machine not at once). */
static void wait_connected(tctx *t, ws_pg_pool *p, int n)
{
	pool_want w = { p, n };
	assert_true(run_until_pred(t, pool_connected, &w, 10000));
}

/* ---- tests against the shared server ------------------------------------ */

static void test_query_params(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	ws_pg_pool *p = new_pool(&t, pg_url, 2, 5000);

	const char *params[] = { "2", "40", NULL };
	qres r = sync_query(&t, p, "SELECT $1::int + $2::int, $3::text IS NULL", 3, params);
	assert_int_equal(r.code, 0);
	assert_int_equal(r.ntuples, 1);
	assert_string_equal(r.v0, "42");
	assert_string_equal(r.v1, "t");

	/* Parameters are values, never SQL. */
	const char *evil[] = { "x'); DROP TABLE nothing; --" };
	r = sync_query(&t, p, "SELECT $1::text", 1, evil);
	assert_int_equal(r.code, 0);
	assert_string_equal(r.v0, evil[0]);

	ws_pg_stats st;
	ws_pg_pool_stats(p, &st);
	assert_int_equal(st.size, 2);
	assert_true(st.queries >= 2);
	assert_int_equal(st.errors, 0);
	assert_true(ws_pg_pool_ready(p));
	close_pool(&t, p);
	tctx_done(&t);
}

static void test_concurrent_queries(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	ws_pg_pool *p = new_pool(&t, pg_url, 3, 10000);
	wait_connected(&t, p, 3);
	enum { N = 20 };
	qres r[N];
	char vals[N][8];
	memset(r, 0, sizeof(r));
	for (int i = 0; i < N; i++) {
		snprintf(vals[i], sizeof(vals[i]), "%d", i);
		const char *params[] = { vals[i] };
		assert_int_equal(ws_pg_query(p, "SELECT $1::int, pg_sleep(0.02)", 1, params, query_cb, &r[i]), 0);
	}
	ws_pg_stats st;
	ws_pg_pool_stats(p, &st);
	assert_int_equal(st.waiting + st.busy, N);   /* nothing done before the loop runs */
	uint64_t deadline = now_ms() + 20000;
	int done = 0, peak_busy = st.busy;
	while (done < N && now_ms() < deadline) {
		run_for(&t, 10);
		ws_pg_pool_stats(p, &st);
		if (st.busy > peak_busy)
			peak_busy = st.busy;
		done = 0;
		for (int i = 0; i < N; i++)
			done += r[i].done;
	}
	assert_int_equal(done, N);
	for (int i = 0; i < N; i++) {
		assert_int_equal(r[i].calls, 1);
		assert_int_equal(r[i].code, 0);
		assert_string_equal(r[i].v0, vals[i]);
	}
	ws_pg_pool_stats(p, &st);
	assert_int_equal(st.connected, 3);
	assert_int_equal(st.waiting, 0);
	assert_int_equal(st.busy, 0);
	assert_int_equal(st.queries, N);
	assert_int_equal(peak_busy, 3);
	close_pool(&t, p);
	tctx_done(&t);
}

static void test_transaction_rollback(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	ws_pg_pool *p = new_pool(&t, pg_url, 2, 5000);
	char table[64], sql[256];
	snprintf(table, sizeof(table), "ws_test_tx_%ld", (long)getpid());
	snprintf(sql, sizeof(sql), "CREATE TABLE %s (v int)", table);
	assert_int_equal(sync_query(&t, p, sql, 0, NULL).code, 0);

	ws_pg_conn *c = sync_acquire(&t, p);
	ws_pg_stats st;
	ws_pg_pool_stats(p, &st);
	assert_int_equal(st.busy, 1);
	assert_int_equal(sync_conn_query(&t, c, "BEGIN", 0, NULL).code, 0);
	snprintf(sql, sizeof(sql), "INSERT INTO %s VALUES ($1)", table);
	const char *one[] = { "1" };
	assert_int_equal(sync_conn_query(&t, c, sql, 1, one).code, 0);
	/* Visible inside the transaction... */
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
	qres r = sync_conn_query(&t, c, sql, 0, NULL);
	assert_string_equal(r.v0, "1");
	assert_int_equal(sync_conn_query(&t, c, "ROLLBACK", 0, NULL).code, 0);
	ws_pg_release(c);

	/* ...and gone after ROLLBACK. */
	r = sync_query(&t, p, sql, 0, NULL);
	assert_int_equal(r.code, 0);
	assert_string_equal(r.v0, "0");

	/* Statements may be queued on an acquired connection without waiting:
	 * they run in order. */
	c = sync_acquire(&t, p);
	qres a = { 0 }, b = { 0 }, e = { 0 };
	assert_int_equal(ws_pg_conn_query(c, "BEGIN", 0, NULL, query_cb, &a), 0);
	snprintf(sql, sizeof(sql), "INSERT INTO %s VALUES (2)", table);
	assert_int_equal(ws_pg_conn_query(c, sql, 0, NULL, query_cb, &b), 0);
	assert_int_equal(ws_pg_conn_query(c, "COMMIT", 0, NULL, query_cb, &e), 0);
	assert_true(run_until(&t, &e.done, 10000));
	assert_true(a.done && b.done);
	assert_true(a.at_ms <= b.at_ms && b.at_ms <= e.at_ms);
	assert_int_equal(a.code + b.code + e.code, 0);
	ws_pg_release(c);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
	assert_string_equal(sync_query(&t, p, sql, 0, NULL).v0, "1");

	snprintf(sql, sizeof(sql), "DROP TABLE %s", table);
	assert_int_equal(sync_query(&t, p, sql, 0, NULL).code, 0);
	close_pool(&t, p);
	tctx_done(&t);
}

/* A connection released inside a failed or open transaction is rolled back
 * before anybody else gets it (size 1: the same connection is reused). */
static void test_release_inside_transaction(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	ws_pg_pool *p = new_pool(&t, pg_url, 1, 5000);
	char table[64], sql[256];
	snprintf(table, sizeof(table), "ws_test_rel_%ld", (long)getpid());
	snprintf(sql, sizeof(sql), "CREATE TABLE %s (v int)", table);
	assert_int_equal(sync_query(&t, p, sql, 0, NULL).code, 0);

	/* Failed transaction. */
	ws_pg_conn *c = sync_acquire(&t, p);
	assert_int_equal(sync_conn_query(&t, c, "BEGIN", 0, NULL).code, 0);
	qres r = sync_conn_query(&t, c, "SELECT 1/0", 0, NULL);
	assert_int_equal(r.code, WS_EDB);
	assert_string_equal(r.sqlstate, "22012");
	r = sync_conn_query(&t, c, "SELECT 1", 0, NULL);
	assert_string_equal(r.sqlstate, "25P02");   /* in failed transaction */
	ws_pg_release(c);
	r = sync_query(&t, p, "SELECT 7", 0, NULL);
	assert_int_equal(r.code, 0);
	assert_string_equal(r.v0, "7");

	/* Open transaction with a write the holder never committed. */
	c = sync_acquire(&t, p);
	assert_int_equal(sync_conn_query(&t, c, "BEGIN", 0, NULL).code, 0);
	snprintf(sql, sizeof(sql), "INSERT INTO %s VALUES (1)", table);
	assert_int_equal(sync_conn_query(&t, c, sql, 0, NULL).code, 0);
	ws_pg_release(c);
	snprintf(sql, sizeof(sql), "SELECT count(*), current_setting('transaction_isolation') FROM %s", table);
	r = sync_query(&t, p, sql, 0, NULL);
	assert_int_equal(r.code, 0);
	assert_string_equal(r.v0, "0");

	/* A released connection refuses statements. */
	qres x = { 0 };
	assert_int_equal(ws_pg_conn_query(c, "SELECT 1", 0, NULL, query_cb, &x), WS_EINVAL);

	snprintf(sql, sizeof(sql), "DROP TABLE %s", table);
	assert_int_equal(sync_query(&t, p, sql, 0, NULL).code, 0);
	close_pool(&t, p);
	tctx_done(&t);
}

static void test_query_timeout(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	ws_pg_pool *p = new_pool(&t, pg_url, 1, 200);
	/* Connect first so the 200 ms are spent in the query. */
	assert_int_equal(sync_query(&t, p, "SELECT 1", 0, NULL).code, 0);

	uint64_t t0 = now_ms();
	qres r = sync_query(&t, p, "SELECT pg_sleep(5)", 0, NULL);
	uint64_t took = now_ms() - t0;
	assert_int_equal(r.code, WS_ETIMEDOUT);
	assert_string_equal(r.sqlstate, "57014");
	assert_true(took >= 190 && took < 2500);

	/* The same (only) connection works afterwards. */
	r = sync_query(&t, p, "SELECT 'after'", 0, NULL);
	assert_int_equal(r.code, 0);
	assert_string_equal(r.v0, "after");

	ws_pg_stats st;
	ws_pg_pool_stats(p, &st);
	assert_int_equal(st.timeouts, 1);
	assert_int_equal(st.errors, 1);
	assert_int_equal(st.reconnects, 0);
	close_pool(&t, p);
	tctx_done(&t);
}

static void test_syntax_error(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	ws_pg_pool *p = new_pool(&t, pg_url, 1, 5000);
	qres r = sync_query(&t, p, "SELEC 1", 0, NULL);
	assert_int_equal(r.code, WS_EDB);
	assert_string_equal(r.sqlstate, "42601");
	assert_non_null(strstr(r.message, "syntax error"));
	/* The message is the primary one, without "ERROR:" or a newline. */
	assert_null(strstr(r.message, "ERROR:"));
	assert_null(strchr(r.message, '\n'));

	r = sync_query(&t, p, "SELECT $1::int", 1, (const char *const[]){ "nope" });
	assert_int_equal(r.code, WS_EDB);
	assert_string_equal(r.sqlstate, "22P02");

	r = sync_query(&t, p, "", 0, NULL);
	assert_int_equal(r.code, WS_EINVAL);

	/* Still usable. */
	assert_int_equal(sync_query(&t, p, "SELECT 1", 0, NULL).code, 0);
	close_pool(&t, p);
	tctx_done(&t);
}

typedef struct notes {
	int count;
	char channel[64];
	char payload[128];
	bool got;
} notes;

static void notify_cb(void *arg, const char *channel, const char *payload)
{
	notes *n = arg;
	n->count++;
	n->got = true;
	snprintf(n->channel, sizeof(n->channel), "%s", channel);
	snprintf(n->payload, sizeof(n->payload), "%s", payload);
}

/* Sends pg_notify until the listener hears it (LISTEN is asynchronous). */
static void notify_until_heard(tctx *t, ws_pg_pool *p, const char *channel, const char *payload, notes *n)
{
	n->got = false;
	uint64_t deadline = now_ms() + 20000;
	const char *params[] = { channel, payload };
	while (!n->got && now_ms() < deadline) {
		qres r = sync_query(t, p, "SELECT pg_notify($1, $2)", 2, params);
		if (r.code != 0)
			print_message("pg_notify: %s\n", r.message);
		run_until(t, &n->got, 200);
	}
	assert_true(n->got);
	assert_string_equal(n->channel, channel);
	assert_string_equal(n->payload, payload);
}

static void test_listen_notify(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	ws_pg_pool *p = new_pool(&t, pg_url, 1, 5000);
	notes a = { 0 }, b = { 0 };
	assert_int_equal(ws_pg_listen(p, "ws_test_chan", notify_cb, &a), 0);
	/* Quoted as an identifier: case, spaces and quotes survive. */
	assert_int_equal(ws_pg_listen(p, "Ws \"Odd\" Chan", notify_cb, &b), 0);
	assert_int_equal(ws_pg_listen(p, "", notify_cb, &b), WS_EINVAL);
	notify_until_heard(&t, p, "ws_test_chan", "hello", &a);
	notify_until_heard(&t, p, "Ws \"Odd\" Chan", "odd", &b);
	assert_int_equal(b.count >= 1, 1);
	/* The listen connection is extra: it does not count in the pool. */
	ws_pg_stats st;
	ws_pg_pool_stats(p, &st);
	assert_int_equal(st.connected, 1);
	close_pool(&t, p);
	tctx_done(&t);
}

/* ---- tests that need no server ----------------------------------------- */

static void test_unreachable_and_close(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	ws_pg_opts o = { .conninfo = "postgresql:///postgres?host=/nonexistent-wavesched&user=postgres",
			 .size = 2, .query_timeout_ms = 30000, .backoff_min_ms = 50, .backoff_max_ms = 400 };
	ws_pg_pool *p = ws_pg_pool_new(&t.loop, &o);
	assert_non_null(p);
	/* Submitted before any attempt has failed: the query waits, then
	 * fails as soon as every connection has failed (not after 30 s). */
	uint64_t t0 = now_ms();
	qres r = { 0 };
	assert_int_equal(ws_pg_query(p, "SELECT 1", 0, NULL, query_cb, &r), 0);
	ws_pg_pool_start(p);
	assert_true(run_until(&t, &r.done, 5000));
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.code, WS_EUNAVAIL);
	assert_true(now_ms() - t0 < 5000);
	assert_non_null(strstr(r.message, "unreachable"));
	assert_non_null(strstr(r.message, "nonexistent-wavesched"));
	assert_false(ws_pg_pool_ready(p));
	/* Known down: new work is refused at once, its callback never runs. */
	acq a = { 0 };
	assert_int_equal(ws_pg_acquire(p, acquire_cb, &a), WS_EUNAVAIL);
	qres r2 = { 0 };
	assert_int_equal(ws_pg_query(p, "SELECT 2", 0, NULL, query_cb, &r2), WS_EUNAVAIL);
	run_for(&t, 20);
	assert_false(a.done);
	assert_false(r2.done);
	ws_pg_stats st;
	ws_pg_pool_stats(p, &st);
	assert_int_equal(st.connected, 0);
	assert_int_equal(st.errors, 1);   /* the query that waited */
	close_pool(&t, p);
	tctx_done(&t);
}

/* Closing fails what waits, exactly once, and refuses new work. */
static void test_close_fails_queued(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	ws_pg_opts o = { .conninfo = "postgresql:///postgres?host=/nonexistent-wavesched", .size = 1,
			 .max_queue = 2 };
	ws_pg_pool *p = ws_pg_pool_new(&t.loop, &o);
	assert_non_null(p);
	qres r[3];
	memset(r, 0, sizeof(r));
	/* Not started: the queries wait. */
	assert_int_equal(ws_pg_query(p, "SELECT 1", 0, NULL, query_cb, &r[0]), 0);
	assert_int_equal(ws_pg_query(p, "SELECT 2", 0, NULL, query_cb, &r[1]), 0);
	assert_int_equal(ws_pg_query(p, "SELECT 3", 0, NULL, query_cb, &r[2]), WS_EUNAVAIL); /* queue full */
	assert_int_equal(ws_pg_query(p, NULL, 0, NULL, query_cb, &r[2]), WS_EINVAL);
	assert_int_equal(ws_pg_query(p, "SELECT $1", -1, NULL, query_cb, &r[2]), WS_EINVAL);
	assert_int_equal(ws_pg_query(p, "SELECT $1", 1, NULL, query_cb, &r[2]), WS_EINVAL);
	run_for(&t, 20);
	assert_false(r[0].done);
	ws_pg_stats st;
	ws_pg_pool_stats(p, &st);
	assert_int_equal(st.waiting, 2);
	close_pool(&t, p);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(r[i].calls, 1);
		assert_int_equal(r[i].code, WS_EUNAVAIL);
		assert_non_null(strstr(r[i].message, "closing"));
	}
	assert_false(r[2].done);
	tctx_done(&t);
}

static void test_bad_conninfo(void **state)
{
	(void)state;
	uv_loop_t loop;
	assert_int_equal(uv_loop_init(&loop), 0);
	ws_pg_opts o = { .conninfo = "host=x port" };
	assert_null(ws_pg_pool_new(&loop, &o));
	o.conninfo = "postgresql://[::1";
	assert_null(ws_pg_pool_new(&loop, &o));
	o = (ws_pg_opts){ .conninfo = "dbname=x", .size = -1 };
	assert_null(ws_pg_pool_new(&loop, &o));
	assert_int_equal(uv_loop_close(&loop), 0);
}

/* Closing waits for a statement in flight and for a held connection; the
 * holder can still finish its transaction. */
static void test_close_waits_for_work(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	ws_pg_pool *p = new_pool(&t, pg_url, 2, 5000);
	wait_connected(&t, p, 2);
	ws_pg_conn *c = sync_acquire(&t, p);
	qres slow = { 0 }, in_tx = { 0 };
	assert_int_equal(ws_pg_query(p, "SELECT 'slow', pg_sleep(0.3)", 0, NULL, query_cb, &slow), 0);
	run_for(&t, 50);   /* on the wire */
	int closed = 0;
	ws_pg_pool_close(p, closed_cb, &closed);
	qres refused = { 0 };
	assert_int_equal(ws_pg_query(p, "SELECT 1", 0, NULL, query_cb, &refused), WS_EUNAVAIL);
	assert_int_equal(ws_pg_conn_query(c, "SELECT 'holder'", 0, NULL, query_cb, &in_tx), 0);
	assert_true(run_until(&t, &slow.done, 5000));
	assert_int_equal(slow.code, 0);
	assert_string_equal(slow.v0, "slow");
	assert_true(run_until(&t, &in_tx.done, 5000));
	assert_string_equal(in_tx.v0, "holder");
	run_for(&t, 50);
	assert_int_equal(closed, 0);   /* still held */
	ws_pg_release(c);
	run_until_count(&t, &closed, 5000);
	assert_int_equal(closed, 1);
	tctx_done(&t);
}

/* ---- server restart, on a private server -------------------------------- */

static void test_server_restart(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	private_server *ps = private_start(&t, "pg.sh", "pg");
	const char *url = ps->url, *dir = ps->dir;
	ws_pg_pool *p = new_pool(&t, url, 2, 15000);
	notes n = { 0 };
	assert_int_equal(ws_pg_listen(p, "ws_restart", notify_cb, &n), 0);
	assert_int_equal(sync_query(&t, p, "SELECT 1", 0, NULL).code, 0);
	notify_until_heard(&t, p, "ws_restart", "before", &n);

	/* 0. A server that does not answer the cancel: the statement fails
	 * with WS_ETIMEDOUT after the grace period and the connection is
	 * reset (the backend is frozen with SIGSTOP). */
	ws_pg_pool *hung = new_pool(&t, url, 1, 300);
	qres pid = sync_query(&t, hung, "SELECT pg_backend_pid()", 0, NULL);
	assert_int_equal(pid.code, 0);
	qres frozen = { 0 };
	assert_int_equal(ws_pg_query(hung, "SELECT pg_sleep(10)", 0, NULL, query_cb, &frozen), 0);
	run_for(&t, 50);
	frozen_pid = atoi(pid.v0);
	assert_int_equal(kill(frozen_pid, SIGSTOP), 0);
	uint64_t t0 = now_ms();
	assert_true(run_until(&t, &frozen.done, 10000));
	assert_int_equal(frozen.code, WS_ETIMEDOUT);
	assert_non_null(strstr(frozen.message, "did not acknowledge"));
	assert_true(now_ms() - t0 >= 2000);
	assert_int_equal(kill(frozen_pid, SIGCONT), 0);
	frozen_pid = 0;
	qres fresh = sync_query(&t, hung, "SELECT pg_backend_pid()", 0, NULL);
	assert_int_equal(fresh.code, 0);
	assert_string_not_equal(fresh.v0, pid.v0);
	close_pool(&t, hung);

	/* 1. A statement in flight when the server goes away fails with
	 * WS_EUNAVAIL (57P01 or a closed socket): it is never re-sent.  A held
	 * connection loses its session: its holder gets WS_EUNAVAIL until it
	 * releases it. */
	ws_pg_conn *held = sync_acquire(&t, p);
	assert_int_equal(sync_conn_query(&t, held, "BEGIN", 0, NULL).code, 0);
	qres inflight = { 0 };
	assert_int_equal(ws_pg_query(p, "SELECT pg_sleep(30)", 0, NULL, query_cb, &inflight), 0);
	run_for(&t, 100);
	spawned s;
	harness_spawn(&t, &s, "pg.sh", "restart", dir);
	assert_true(run_until(&t, &inflight.done, 30000));
	assert_int_equal(inflight.code, WS_EUNAVAIL);
	assert_true(run_until(&t, &s.done, 90000));
	assert_int_equal(s.status, 0);
	qres refused = { 0 };
	assert_int_equal(ws_pg_conn_query(held, "COMMIT", 0, NULL, query_cb, &refused), WS_EUNAVAIL);
	ws_pg_release(held);

	/* 2. After the restart the pool reconnects by itself (while it is
	 * known down, work is refused rather than queued); LISTEN is
	 * re-issued on the listen connection. */
	for (int i = 0; i < 300 && !ws_pg_pool_ready(p); i++)
		run_for(&t, 100);
	assert_true(ws_pg_pool_ready(p));
	qres after = sync_query(&t, p, "SELECT 'back'", 0, NULL);
	assert_int_equal(after.code, 0);
	assert_string_equal(after.v0, "back");
	notify_until_heard(&t, p, "ws_restart", "after", &n);
	ws_pg_stats st;
	ws_pg_pool_stats(p, &st);
	assert_true(st.reconnects >= 1);

	/* 3. While the server is down: once every connection has failed a
	 * reconnect the pool is known down, queued work fails and new work is
	 * refused at once (callers answer "unavailable" promptly instead of
	 * hanging for a whole time-out).  When the server is back, so is the
	 * pool, by itself. */
	harness_run(&t, "pg.sh", "stop", dir);
	static qres probe[100];
	memset(probe, 0, sizeof(probe));
	int refused_at = -1;
	for (int i = 0; i < 100; i++) {
		int rc = ws_pg_query(p, "SELECT 1", 0, NULL, query_cb, &probe[i]);
		if (rc == WS_EUNAVAIL) {
			refused_at = i;
			break;
		}
		assert_int_equal(rc, 0);
		run_for(&t, 100);
	}
	assert_true(refused_at >= 0);
	run_for(&t, 50);
	for (int i = 0; i < refused_at; i++) {
		assert_true(probe[i].done);
		assert_int_equal(probe[i].code, WS_EUNAVAIL);
	}
	assert_false(probe[refused_at].done);   /* refused: its callback never runs */
	assert_false(ws_pg_pool_ready(p));

	harness_spawn(&t, &s, "pg.sh", "start", dir);
	assert_true(run_until(&t, &s.done, 90000));
	assert_int_equal(s.status, 0);
	for (int i = 0; i < 300 && !ws_pg_pool_ready(p); i++)
		run_for(&t, 100);
	qres back = sync_query(&t, p, "SELECT 'back again'", 0, NULL);
	assert_int_equal(back.code, 0);
	assert_string_equal(back.v0, "back again");

	close_pool(&t, p);
	private_clean(&t, ps);
	tctx_done(&t);
}

int main(void)
{
	pg_url = loop_test_server_url("WS_TEST_PG_URL");
	if (!pg_url)
		return 77;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_query_params),
		cmocka_unit_test(test_concurrent_queries),
		cmocka_unit_test(test_transaction_rollback),
		cmocka_unit_test(test_release_inside_transaction),
		cmocka_unit_test(test_query_timeout),
		cmocka_unit_test(test_syntax_error),
		cmocka_unit_test(test_listen_notify),
		cmocka_unit_test(test_unreachable_and_close),
		cmocka_unit_test(test_close_fails_queued),
		cmocka_unit_test(test_bad_conninfo),
		cmocka_unit_test(test_close_waits_for_work),
		cmocka_unit_test_teardown(test_server_restart, private_teardown),
	};
	return cmocka_run_group_tests_name("pg", tests, NULL, NULL);
}
