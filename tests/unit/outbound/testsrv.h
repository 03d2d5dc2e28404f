/*
 * testsrv.h - starts tests/unit/outbound/testsrv.py (path in $WS_TESTSRV) as
 * a separate process for the outbound, health and executor tests: outgoing
 * calls in those tests go to a real server over real sockets.
 *
 * One server per test program (group setup/teardown), so that a failed
 * assertion, which leaves a test by longjmp, still stops it.  Tests that
 * need a scripted sequence of answers use paths of their own.
 */
#ifndef WS_TESTSRV_H
#define WS_TESTSRV_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/types.h>
#include <sys/wait.h>

typedef struct testsrv {
	pid_t pid;
	int port;
} testsrv;

/* Starts the server with the scripted routes `routes_json` (may be NULL)
 * and waits for the line that tells its port. */
static inline void testsrv_start(testsrv *s, const char *routes_json)
{
	const char *script = getenv("WS_TESTSRV");
	assert_non_null(script);
	int p[2];
	assert_int_equal(pipe(p), 0);
	s->pid = fork();
	assert_true(s->pid >= 0);
	if (s->pid == 0) {
		dup2(p[1], 1);
		close(p[0]);
		close(p[1]);
		execlp("python3", "python3", script, routes_json ? routes_json : "", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	FILE *f = fdopen(p[0], "r");
	assert_non_null(f);
	char line[64] = "";
	assert_non_null(fgets(line, sizeof(line), f));
	fclose(f);
	assert_int_equal(sscanf(line, "PORT %d", &s->port), 1);
}

static inline void testsrv_stop(testsrv *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGKILL);
		waitpid(s->pid, NULL, 0);
	}
	s->pid = 0;
}

/* "http://127.0.0.1:PORT" + path, in a static buffer of 8 rotating slots so
 * a test can hold a few at once. */
static inline const char *testsrv_url(const testsrv *s, const char *path)
{
	static char bufs[8][512];
	static int next;
	char *b = bufs[next++ % 8];
	snprintf(b, sizeof(bufs[0]), "http://127.0.0.1:%d%s", s->port, path);
	return b;
}

#endif
