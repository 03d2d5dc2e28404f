/* harness_http.c - see harness_http.h. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include "fuzz.h"
#include "harness_http.h"

/* NOWAIT turns without visible progress after which the server is taken to
 * have answered all it will answer before the client goes. */
#define QUIET_TURNS 4
#define MAX_TURNS 10000

typedef struct client {
	uv_pipe_t pipe;
	uv_write_t wreq;
	uv_shutdown_t sreq;
	char rbuf[16384];
	size_t received;
	bool written;
	bool eof;
	bool closed;
} client;

static void client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)suggested;
	client *cl = h->data;
	*buf = uv_buf_init(cl->rbuf, sizeof(cl->rbuf));
}

static void client_closed(uv_handle_t *h)
{
	client *cl = h->data;
	cl->closed = true;
}

static void client_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	(void)buf;
	client *cl = st->data;
	if (nread > 0) {
		cl->received += (size_t)nread;
		return;
	}
	if (nread < 0 && !cl->eof) {   /* EOF, or a reset from a closing server */
		cl->eof = true;
		uv_close((uv_handle_t *)&cl->pipe, client_closed);
	}
}

static void client_written(uv_write_t *w, int status)
{
	(void)status;   /* EPIPE when the server closed first: fine */
	client *cl = w->data;
	cl->written = true;
}

static void shutdown_done(void *arg)
{
	*(bool *)arg = true;
}

static void walk_report(uv_handle_t *h, void *arg)
{
	(void)arg;
	fprintf(stderr, "fuzz: handle %p of type %s left open on the loop\n", (void *)h,
		uv_handle_type_name(uv_handle_get_type(h)));
}

size_t fuzz_http_run(const char *data, size_t size, const ws_http_limits *lim,
		     void (*setup)(uv_loop_t *loop, void *arg), ws_http_handler_cb handler,
		     void *arg)
{
	uv_loop_t loop;
	if (uv_loop_init(&loop))
		abort();
	if (setup)
		setup(&loop, arg);
	ws_http_server *srv = ws_http_server_new(&loop, lim, handler, NULL, arg);
	int sv[2];
	if (!srv || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		abort();
	if (ws_http_server_adopt(srv, sv[0]))
		fuzz_fail("a fresh server refused a socket", NULL);

	client *cl = calloc(1, sizeof(*cl));
	if (!cl || uv_pipe_init(&loop, &cl->pipe, 0) || uv_pipe_open(&cl->pipe, sv[1]))
		abort();
	cl->pipe.data = cl;
	cl->wreq.data = cl;
	uv_read_start((uv_stream_t *)&cl->pipe, client_alloc, client_read);
	uv_buf_t b = uv_buf_init((char *)data, (unsigned)size);
	if (size == 0 || uv_write(&cl->wreq, (uv_stream_t *)&cl->pipe, &b, 1, client_written))
		cl->written = true;

	/* Let the server parse and answer until nothing moves any more. */
	size_t last = (size_t)-1;
	int quiet = 0;
	for (int turn = 0; turn < MAX_TURNS && quiet < QUIET_TURNS && !cl->eof; turn++) {
		uv_run(&loop, UV_RUN_NOWAIT);
		size_t now = cl->received + (cl->written ? 1 : 0);
		quiet = now == last && cl->written ? quiet + 1 : 0;
		last = now;
	}
	/* A half-closing client counts as gone (http.h): the server closes. */
	if (!cl->eof)
		uv_shutdown(&cl->sreq, (uv_stream_t *)&cl->pipe, NULL);
	bool down = false;
	ws_http_server_shutdown(srv, 0, shutdown_done, &down);
	uv_run(&loop, UV_RUN_DEFAULT);
	if (!cl->eof || !cl->closed || !down) {
		uv_walk(&loop, walk_report, NULL);
		fuzz_fail("the loop ran dry before the connection and the server were closed", NULL);
	}
	size_t received = cl->received;
	if (getenv("FUZZ_HTTP_VERBOSE"))
		fprintf(stderr, "fuzz_http: %zu bytes in, %zu bytes of answers out\n", size, received);
	free(cl);
	if (uv_loop_close(&loop) != 0) {
		uv_walk(&loop, walk_report, NULL);
		fuzz_fail("handles left open on the loop", NULL);
	}
	return received;
}
