/*
 * loop_test.h - what the loop tests of the PostgreSQL pool and the Redis link
 * share (cmocka): a uv loop with a watchdog, ways to run it until something
 * happened, and private servers started with the scripts of tests/harness.
 *
 * A test makes a tctx, runs the loop with run_until()/run_for() (never
 * uv_run(UV_RUN_DEFAULT) while its handles are open: the watchdog bounds
 * every wait) and ends with tctx_done(), which asserts uv_loop_close() == 0
 * and so proves every handle was closed.
 */
#ifndef WS_LOOP_TEST_H
#define WS_LOOP_TEST_H

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <cmocka.h>
#include <uv.h>
#include "wavesched/log.h"

/* ---- the program ------------------------------------------------------- */

/* The URL of the shared server, from the environment variable `var`, with
 * the log level from WS_LOG_LEVEL; NULL, after saying so, when `var` is not
 * set: main() then returns 77 (skipped). */
static inline const char *loop_test_server_url(const char *var)
{
	const char *url = getenv(var);
	if (!url || !*url) {
		printf("%s is not set: skipping (start servers with "
		       "eval \"$(tests/harness/services.sh start .run/services)\")\n", var);
		return NULL;
	}
	const char *lvl = getenv("WS_LOG_LEVEL");
	if (lvl)
		ws_log_set_level(lvl);
	return url;
}

/* ---- the loop ---------------------------------------------------------- */

typedef struct tctx {
	uv_loop_t loop;
	uv_timer_t watchdog;
	bool expired;
} tctx;

static inline void watchdog_cb(uv_timer_t *t)
{
	tctx *x = t->data;
	x->expired = true;
}

static inline void tctx_init(tctx *t)
{
	assert_int_equal(uv_loop_init(&t->loop), 0);
	uv_timer_init(&t->loop, &t->watchdog);
	t->watchdog.data = t;
}

/* Closes what the test context owns and checks nothing else is left. */
static inline void tctx_done(tctx *t)
{
	uv_close((uv_handle_t *)&t->watchdog, NULL);
	uv_run(&t->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&t->loop), 0);
}

static inline bool flag_is_set(const void *flag)
{
	return *(const bool *)flag;
}

static inline bool count_is_nonzero(const void *count)
{
	return *(const int *)count != 0;
}

/* Runs the loop until done(arg) or `ms` have passed; returns done(arg). */
static inline bool run_until_pred(tctx *t, bool (*done)(const void *), const void *arg, uint64_t ms)
{
	t->expired = false;
	uv_timer_start(&t->watchdog, watchdog_cb, ms, 0);
	while (!done(arg) && !t->expired)
		uv_run(&t->loop, UV_RUN_ONCE);
	uv_timer_stop(&t->watchdog);
	return done(arg);
}

/* Runs the loop until *flag is true or `ms` have passed. */
static inline bool run_until(tctx *t, const bool *flag, uint64_t ms)
{
	return run_until_pred(t, flag_is_set, flag, ms);
}

/* Runs the loop until *count is not 0 or `ms` have passed (close callbacks
 * count their calls, so that a second call shows). */
static inline bool run_until_count(tctx *t, const int *count, uint64_t ms)
{
	return run_until_pred(t, count_is_nonzero, count, ms);
}

static inline void run_for(tctx *t, uint64_t ms)
{
	bool never = false;
	run_until(t, &never, ms);
}

static inline uint64_t now_ms(void)
{
	return uv_hrtime() / 1000000u;
}

/* A close callback whose argument is an int counting its calls. */
static inline void closed_cb(void *arg)
{
	int *n = arg;
	(*n)++;
}

/* ---- the harness scripts ----------------------------------------------- */

typedef struct spawned {
	uv_process_t proc;
	bool done;
	int64_t status;
	int signal;
} spawned;

static inline void spawn_exit_cb(uv_process_t *proc, int64_t status, int sig)
{
	spawned *s = proc->data;
	s->done = true;
	s->status = status;
	s->signal = sig;
	uv_close((uv_handle_t *)proc, NULL);
}

/* Starts `bash $WS_HARNESS_DIR/SCRIPT CMD DIR` without blocking the loop;
 * s->done tells when it has ended. */
static inline void harness_spawn(tctx *t, spawned *s, const char *script, const char *cmd,
				 const char *dir)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s", getenv("WS_HARNESS_DIR"), script);
	char *args[] = { "bash", path, (char *)cmd, (char *)dir, NULL };
	uv_stdio_container_t stdio[3] = {
		{ .flags = UV_IGNORE }, { .flags = UV_INHERIT_FD, .data.fd = 2 }, { .flags = UV_INHERIT_FD, .data.fd = 2 },
	};
	uv_process_options_t o = { .exit_cb = spawn_exit_cb, .file = "bash", .args = args,
				   .stdio_count = 3, .stdio = stdio };
	memset(s, 0, sizeof(*s));
	s->proc.data = s;
	assert_int_equal(uv_spawn(&t->loop, &s->proc, &o), 0);
}

/* Runs `bash $WS_HARNESS_DIR/SCRIPT CMD DIR` while the loop keeps running,
 * and asserts it succeeded. */
static inline void harness_run(tctx *t, const char *script, const char *cmd, const char *dir)
{
	spawned s;
	harness_spawn(t, &s, script, cmd, dir);
	assert_true(run_until(t, &s.done, 90000));
	assert_int_equal(s.status, 0);
	run_for(t, 1);   /* the process handle's close */
}

/* ---- a private server --------------------------------------------------- */

/* A server of the test's own in a fresh /tmp directory, for tests that stop,
 * restart or freeze it. */
typedef struct private_server {
	const char *script;   /* "pg.sh" or "redis.sh" */
	char base[64];        /* the mkdtemp directory */
	char dir[1280];       /* base/NAME, the script's DIR */
	char url[1024];       /* what `SCRIPT url DIR` printed */
} private_server;

/* The private server of the running test (static: a failed assertion
 * leaves the test function by longjmp, and its stack with it) and a process
 * the test froze with SIGSTOP, so that private_teardown still removes the
 * one and thaws the other. */
static private_server private_srv;
static private_server *private_current;
static int frozen_pid;

static inline int private_teardown(void **state)
{
	(void)state;
	if (frozen_pid > 0)
		kill(frozen_pid, SIGCONT);
	frozen_pid = 0;
	if (private_current) {
		private_server *ps = private_current;
		char cmd[4096];
		snprintf(cmd, sizeof(cmd), "bash '%s/%s' clean '%s'", getenv("WS_HARNESS_DIR"),
			 ps->script, ps->dir);
		if (system(cmd) != 0)
			print_message("cannot clean %s\n", ps->dir);
		rmdir(ps->base);
		private_current = NULL;
	}
	return 0;
}

/* Starts a private server with SCRIPT in /tmp/wsNAMEtest.XXXXXX/NAME and
 * reads its URL.  One at a time.  Without WS_HARNESS_DIR the test is
 * skipped (its loop closed first). */
static inline private_server *private_start(tctx *t, const char *script, const char *name)
{
	const char *hd = getenv("WS_HARNESS_DIR");
	if (!hd || !*hd) {
		tctx_done(t);
		print_message("WS_HARNESS_DIR is not set: skipping\n");
		skip();
	}
	private_server *ps = &private_srv;
	memset(ps, 0, sizeof(*ps));
	ps->script = script;
	private_current = ps;
	snprintf(ps->base, sizeof(ps->base), "/tmp/ws%stest.XXXXXX", name);
	assert_non_null(mkdtemp(ps->base));
	chmod(ps->base, 0755);   /* the server may run as nobody */
	snprintf(ps->dir, sizeof(ps->dir), "%.63s/%.63s", ps->base, name);
	harness_run(t, script, "start", ps->dir);
	char cmd[4096];
	snprintf(cmd, sizeof(cmd), "bash '%.1024s/%.64s' url '%.1279s'", hd, script, ps->dir);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	assert_non_null(fgets(ps->url, sizeof(ps->url), f));
	assert_int_equal(pclose(f), 0);
	ps->url[strcspn(ps->url, "\n")] = '\0';
	return ps;
}

/* Stops and removes the private server at the end of a test that passed. */
static inline void private_clean(tctx *t, private_server *ps)
{
	harness_run(t, ps->script, "clean", ps->dir);
	rmdir(ps->base);
	private_current = NULL;
}

#endif
