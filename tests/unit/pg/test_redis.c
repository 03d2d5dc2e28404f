/*
 * test_redis.c - the Redis link against a real server (no mocks).
 *
 * WS_TEST_REDIS_URL: the server to use (tests/harness/services.sh prints
 * it); without it the whole program is skipped (exit 77).
 * WS_HARNESS_DIR: tests/harness; the stop/restart and hung-server tests run
 * a private redis-server of their own with redis.sh there.
 *
 * Each test runs its own uv loop and ends with uv_loop_close() == 0.
 */
#include <hiredis/hiredis.h>
#include "loop_test.h"
#include "wavesched/redis.h"

static const char *redis_url;

/* Runs the loop until the link is in state `s`, for at most `ms`. */
static bool wait_state(tctx *t, ws_redis *r, ws_redis_state s, uint64_t ms)
{
	uint64_t deadline = now_ms() + ms;
	while (ws_redis_get_state(r) != s && now_ms() < deadline)
		run_for(t, 10);
	return ws_redis_get_state(r) == s;
}

static void close_link(tctx *t, ws_redis *r)
{
	int closed = 0;
	ws_redis_close(r, closed_cb, &closed);
	run_until_count(t, &closed, 10000);
	assert_int_equal(closed, 1);
}

static const ws_redis_opts fast = { .connect_timeout_ms = 500, .ping_interval_ms = 100,
				    .ping_timeout_ms = 1000, .backoff_min_ms = 20, .backoff_max_ms = 200 };

static ws_redis *new_link(tctx *t, const char *url)
{
	ws_diags d;
	ws_diags_init(&d);
	ws_redis *r = ws_redis_new(&t->loop, url, &d);
	for (size_t i = 0; i < d.len; i++)
		print_message("%s\n", d.items[i].message);
	assert_non_null(r);
	assert_int_equal(d.len, 0);
	ws_diags_free(&d);
	ws_redis_set_opts(r, &fast);
	ws_redis_start(r);
	return r;
}

typedef struct reply {
	bool done;
	int calls;
	bool null_reply;
	int type;
	char str[256];
	long long integer;
	char err[256];
} reply;

static void reply_cb(void *arg, void *rep, const char *err)
{
	reply *x = arg;
	redisReply *r = rep;
	x->calls++;
	x->done = true;
	x->null_reply = r == NULL;
	snprintf(x->err, sizeof(x->err), "%s", err ? err : "");
	if (!r) {
		assert_non_null(err);
		return;
	}
	x->type = r->type;
	x->integer = r->integer;
	if (r->str)
		snprintf(x->str, sizeof(x->str), "%.*s", (int)r->len, r->str);
}

static reply sync_cmd(tctx *t, ws_redis *r, int argc, const char **argv, const size_t *lens)
{
	reply x = { 0 };
	assert_int_equal(ws_redis_command(r, argc, argv, lens, reply_cb, &x), 0);
	assert_true(run_until(t, &x.done, 5000));
	assert_int_equal(x.calls, 1);
	return x;
}

/* ---- URLs --------------------------------------------------------------- */

static void expect_url_error(tctx *t, const char *url, const char *want, const char *secret)
{
	ws_diags d;
	ws_diags_init(&d);
	ws_redis *r = ws_redis_new(&t->loop, url, &d);
	assert_null(r);
	assert_int_equal(d.len, 1);
	if (!strstr(d.items[0].message, want))
		print_message("URL %s: got \"%s\", want \"%s\"\n", url, d.items[0].message, want);
	assert_non_null(strstr(d.items[0].message, want));
	assert_non_null(strstr(d.items[0].message, "redis URL"));
	if (secret)
		assert_null(strstr(d.items[0].message, secret));
	ws_diags_free(&d);
}

static void test_url_parsing(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	expect_url_error(&t, "http://localhost:6379", "unsupported scheme", NULL);
	expect_url_error(&t, "localhost:6379", "unsupported scheme", NULL);
	expect_url_error(&t, "rediss://localhost", "TLS (rediss://) is not supported", NULL);
	expect_url_error(&t, "redis://", "missing host", NULL);
	expect_url_error(&t, "redis://:6379/0", "missing host", NULL);
	expect_url_error(&t, "redis://localhost:0", "invalid port \"0\" (expected 1-65535)", NULL);
	expect_url_error(&t, "redis://localhost:65536", "invalid port \"65536\"", NULL);
	expect_url_error(&t, "redis://localhost:63a9", "invalid port \"63a9\"", NULL);
	expect_url_error(&t, "redis://localhost:6379/zero", "invalid database \"zero\"", NULL);
	expect_url_error(&t, "redis://localhost:6379/0?timeout=1", "unexpected \"?timeout=1\"", NULL);
	expect_url_error(&t, "redis://[::1:6379", "missing ']'", NULL);
	expect_url_error(&t, "redis://justuser@localhost", "a password must follow ':'", NULL);
	expect_url_error(&t, "redis://:hunter2@localhost:nope", "invalid port", "hunter2");
	expect_url_error(&t, "redis://:hunter2@localhost:nope", "redis://:***@localhost:nope", "hunter2");
	expect_url_error(&t, "redis://:bad%zz@localhost", "malformed %-escape in the password", "bad%zz");
	expect_url_error(&t, "unix://", "missing socket path", NULL);
	expect_url_error(&t, "unix://run/redis.sock", "the socket path must be absolute", NULL);
	expect_url_error(&t, "unix:///run/redis.sock?db=-1", "invalid database \"-1\"", NULL);
	expect_url_error(&t, "unix:///run/redis.sock?dbx=1", "unknown parameter \"dbx\"", NULL);
	expect_url_error(&t, "unix:///run/redis.sock?db=1&password=s3cret&x=1", "unknown parameter \"x\"", "s3cret");
	char longpath[300] = "unix:///";
	memset(longpath + 8, 'a', 200);
	longpath[208] = '\0';
	expect_url_error(&t, longpath, "the socket path is 201 bytes long; the system allows at most 107", NULL);

	/* Good ones parse (and are never started here). */
	const char *good[] = {
		"redis://localhost", "redis://127.0.0.1:6380/3", "redis://:pw@localhost:6379/0",
		"redis://user:p%40ss@localhost/1", "redis://[::1]:6379", "unix:///run/redis.sock",
		"unix:///run/redis.sock?db=2&password=x",
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		ws_diags d;
		ws_diags_init(&d);
		ws_redis *r = ws_redis_new(&t.loop, good[i], &d);
		if (!r)
			print_message("%s: %s\n", good[i], d.len ? d.items[0].message : "?");
		assert_non_null(r);
		assert_int_equal(d.len, 0);
		assert_int_equal(ws_redis_get_state(r), WS_REDIS_DISABLED);
		close_link(&t, r);
		ws_diags_free(&d);
	}

	/* No URL: disabled, and it stays so. */
	ws_redis *r = ws_redis_new(&t.loop, "", NULL);
	assert_non_null(r);
	ws_redis_start(r);
	run_for(&t, 20);
	assert_int_equal(ws_redis_get_state(r), WS_REDIS_DISABLED);
	assert_string_equal(ws_redis_state_name(ws_redis_get_state(r)), "disabled");
	const char *argv[] = { "PING" };
	reply x = { 0 };
	assert_int_equal(ws_redis_command(r, 1, argv, NULL, reply_cb, &x), WS_EUNAVAIL);
	close_link(&t, r);
	tctx_done(&t);
}

/* ---- against the shared server ------------------------------------------ */

static void test_roundtrip(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	ws_redis *r = new_link(&t, redis_url);
	assert_true(wait_state(&t, r, WS_REDIS_UP, 5000));
	assert_string_equal(ws_redis_state_name(WS_REDIS_UP), "up");
	assert_string_equal(ws_redis_last_error(r), "");

	char key[64];
	snprintf(key, sizeof(key), "wavesched:test:%ld", (long)getpid());
	/* Binary-safe: the value has a NUL in it. */
	const char value[] = { 'a', '\0', 'b' };
	const char *set[] = { "SET", key, value };
	const size_t setlen[] = { 3, strlen(key), sizeof(value) };
	reply x = sync_cmd(&t, r, 3, set, setlen);
	assert_int_equal(x.type, REDIS_REPLY_STATUS);
	assert_string_equal(x.str, "OK");
	assert_string_equal(x.err, "");

	const char *get[] = { "STRLEN", key };
	x = sync_cmd(&t, r, 2, get, NULL);
	assert_int_equal(x.type, REDIS_REPLY_INTEGER);
	assert_int_equal(x.integer, 3);

	/* An error reply is a reply, with err set. */
	const char *bad[] = { "NOSUCHCOMMAND" };
	x = sync_cmd(&t, r, 1, bad, NULL);
	assert_false(x.null_reply);
	assert_int_equal(x.type, REDIS_REPLY_ERROR);
	assert_non_null(strstr(x.err, "unknown command"));
	assert_int_equal(ws_redis_get_state(r), WS_REDIS_UP);

	/* Pings keep it up. */
	run_for(&t, 350);
	assert_int_equal(ws_redis_get_state(r), WS_REDIS_UP);

	const char *del[] = { "DEL", key };
	assert_int_equal(sync_cmd(&t, r, 2, del, NULL).integer, 1);

	/* A command still pending at close gets its callback, once. */
	const char *slow[] = { "PING", "pending" };
	reply pending = { 0 };
	assert_int_equal(ws_redis_command(r, 2, slow, NULL, reply_cb, &pending), 0);
	assert_int_equal(ws_redis_command(r, 0, slow, NULL, reply_cb, &pending), WS_EINVAL);
	close_link(&t, r);
	assert_int_equal(pending.calls, 1);
	assert_true(pending.null_reply);
	tctx_done(&t);
}

/* The tests that add ?db= or ?password= to the shared server's URL. */
static void skip_unless_plain_unix_url(void)
{
	if (strncmp(redis_url, "unix://", 7) != 0 || strchr(redis_url, '?')) {
		print_message("WS_TEST_REDIS_URL is not a plain unix:// URL: skipping\n");
		skip();
	}
}

/* SELECT from the URL: a key set in db 3 is not in db 0. */
static void test_select_db(void **state)
{
	(void)state;
	skip_unless_plain_unix_url();
	tctx t;
	tctx_init(&t);
	char url3[1024];
	snprintf(url3, sizeof(url3), "%s?db=3", redis_url);
	ws_redis *r3 = new_link(&t, url3);
	ws_redis *r0 = new_link(&t, redis_url);
	assert_true(wait_state(&t, r3, WS_REDIS_UP, 5000));
	assert_true(wait_state(&t, r0, WS_REDIS_UP, 5000));
	char key[64];
	snprintf(key, sizeof(key), "wavesched:db3:%ld", (long)getpid());
	const char *set[] = { "SET", key, "x" };
	assert_string_equal(sync_cmd(&t, r3, 3, set, NULL).str, "OK");
	const char *exists[] = { "EXISTS", key };
	assert_int_equal(sync_cmd(&t, r3, 2, exists, NULL).integer, 1);
	assert_int_equal(sync_cmd(&t, r0, 2, exists, NULL).integer, 0);
	const char *del[] = { "DEL", key };
	assert_int_equal(sync_cmd(&t, r3, 2, del, NULL).integer, 1);
	close_link(&t, r3);
	close_link(&t, r0);
	tctx_done(&t);
}

static void test_auth_refused(void **state)
{
	(void)state;
	skip_unless_plain_unix_url();
	tctx t;
	tctx_init(&t);
	char url[1024];
	snprintf(url, sizeof(url), "%s?password=wrong", redis_url);
	ws_redis *r = new_link(&t, url);
	assert_true(wait_state(&t, r, WS_REDIS_DOWN, 5000));
	assert_non_null(strstr(ws_redis_last_error(r), "handshake refused"));
	run_for(&t, 100);   /* retries, and is refused again */
	assert_int_equal(ws_redis_get_state(r), WS_REDIS_DOWN);
	close_link(&t, r);
	tctx_done(&t);
}

/* ---- unreachable -------------------------------------------------------- */

static void test_unreachable(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	ws_redis *r = new_link(&t, "unix:///tmp/wavesched-no-such-dir/redis.sock");
	assert_true(wait_state(&t, r, WS_REDIS_DOWN, 2000));
	assert_non_null(strstr(ws_redis_last_error(r), "No such file"));
	const char *argv[] = { "PING" };
	reply x = { 0 };
	assert_int_equal(ws_redis_command(r, 1, argv, NULL, reply_cb, &x), WS_EUNAVAIL);
	run_for(&t, 300);   /* several attempts with back-off */
	assert_int_equal(ws_redis_get_state(r), WS_REDIS_DOWN);
	assert_false(x.done);
	close_link(&t, r);

	/* TCP, refused: found out by the connect time-out at the latest. */
	r = new_link(&t, "redis://127.0.0.1:1");
	assert_true(wait_state(&t, r, WS_REDIS_DOWN, 3000));
	assert_true(ws_redis_last_error(r)[0] != '\0');
	close_link(&t, r);

	/* Closing right after start, mid-connect. */
	r = new_link(&t, "redis://127.0.0.1:1");
	close_link(&t, r);
	tctx_done(&t);
}

/* ---- private server: stop, restart, hang ------------------------------- */

static void test_server_restart(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	private_server *pr = private_start(&t, "redis.sh", "redis");
	ws_redis *r = new_link(&t, pr->url);
	assert_true(wait_state(&t, r, WS_REDIS_UP, 5000));
	const char *ping[] = { "PING" };
	assert_string_equal(sync_cmd(&t, r, 1, ping, NULL).str, "PONG");

	harness_run(&t, "redis.sh", "stop", pr->dir);
	assert_true(wait_state(&t, r, WS_REDIS_DOWN, 3000));
	assert_true(ws_redis_last_error(r)[0] != '\0');
	reply x = { 0 };
	assert_int_equal(ws_redis_command(r, 1, ping, NULL, reply_cb, &x), WS_EUNAVAIL);
	run_for(&t, 300);   /* retrying against nothing */
	assert_int_equal(ws_redis_get_state(r), WS_REDIS_DOWN);

	harness_run(&t, "redis.sh", "start", pr->dir);
	assert_true(wait_state(&t, r, WS_REDIS_UP, 5000));
	assert_string_equal(sync_cmd(&t, r, 1, ping, NULL).str, "PONG");
	assert_string_equal(ws_redis_last_error(r), "");

	close_link(&t, r);
	private_clean(&t, pr);
	tctx_done(&t);
}

/* A server that stops answering (SIGSTOP) keeps the socket open: only the
 * PING time-out notices. */
static void test_hung_server(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	private_server *pr = private_start(&t, "redis.sh", "redis");
	char pidfile[1400];
	snprintf(pidfile, sizeof(pidfile), "%.1279s/redis.pid", pr->dir);
	FILE *f = fopen(pidfile, "r");
	assert_non_null(f);
	int pid = 0;
	int got = fscanf(f, "%d", &pid);
	fclose(f);
	assert_int_equal(got, 1);

	ws_redis *r = new_link(&t, pr->url);
	assert_true(wait_state(&t, r, WS_REDIS_UP, 5000));
	frozen_pid = pid;
	assert_int_equal(kill(pid, SIGSTOP), 0);
	assert_true(wait_state(&t, r, WS_REDIS_DOWN, 5000));
	assert_non_null(strstr(ws_redis_last_error(r), "no answer to PING"));
	run_for(&t, 700);   /* reconnects hit the connect time-out */
	assert_int_equal(ws_redis_get_state(r), WS_REDIS_DOWN);
	assert_int_equal(kill(pid, SIGCONT), 0);
	frozen_pid = 0;
	assert_true(wait_state(&t, r, WS_REDIS_UP, 5000));

	close_link(&t, r);
	private_clean(&t, pr);
	tctx_done(&t);
}

int main(void)
{
	redis_url = loop_test_server_url("WS_TEST_REDIS_URL");
	if (!redis_url)
		return 77;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_parsing),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_select_db),
		cmocka_unit_test(test_auth_refused),
		cmocka_unit_test(test_unreachable),
		cmocka_unit_test_teardown(test_server_restart, private_teardown),
		cmocka_unit_test_teardown(test_hung_server, private_teardown),
	};
	return cmocka_run_group_tests_name("redis", tests, NULL, NULL);
}
