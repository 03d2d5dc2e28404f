/*
 * fuzz_http.c - the HTTP server (scheduler/http.c) on arbitrary bytes from a
 * client: request lines, headers, bodies (chunked or not), pipelining,
 * Expect, upgrades, garbage.  The handler exercises every request accessor
 * and answers in one of three ways chosen by the path, so that pipelined
 * requests meet immediate, deferred (from a timer, possibly after the
 * client is gone) and streamed answers:
 *   /later...   answers from a 0 ms timer;
 *   /stream...  Server-Sent-Events style: begin, a chunk of the body, end;
 *   otherwise   answers at once with what it read.
 * Small limits make the 413/431/pipelining paths reachable with short
 * inputs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz.h"
#include "harness_http.h"
#include "wavesched/log.h"

typedef struct ctx {
	uv_loop_t *loop;
} ctx;

typedef struct later {
	uv_timer_t timer;
	ws_http_req *req;
} later;

static void answer_now(ws_http_req *r)
{
	size_t blen = 0;
	const char *body = ws_http_req_body(r, &blen);
	const char *a = ws_http_req_query_param(r, "a");
	const char *host = ws_http_req_header(r, "Host");
	const char *ct = ws_http_req_header(r, "content-type");
	char head[512];
	int n = snprintf(head, sizeof(head), "%s %s ?%s a=%s host=%s ct=%s body=%zu:",
			 ws_http_req_method(r), ws_http_req_path(r), ws_http_req_query(r),
			 a ? a : "-", host ? host : "-", ct ? ct : "-", blen);
	if (n < 0)
		abort();
	size_t hlen = (size_t)n < sizeof(head) ? (size_t)n : sizeof(head) - 1;
	char *out = malloc(hlen + blen + 1);
	if (!out)
		abort();
	memcpy(out, head, hlen);
	if (blen)
		memcpy(out + hlen, body, blen);
	ws_http_add_header(r, "X-Fuzz", "1");
	ws_http_respond(r, blen % 7 == 3 ? 404 : 200, "text/plain", out, hlen + blen);
	free(out);
}

static void later_closed(uv_handle_t *h)
{
	free(h->data);
}

static void later_fire(uv_timer_t *t)
{
	later *l = t->data;
	/* Answering a request whose client has gone must be safe too. */
	if (ws_http_req_connected(l->req) || strlen(ws_http_req_path(l->req)) % 2)
		answer_now(l->req);
	else
		ws_http_respond_error(l->req, 503, "unavailable", "gone", NULL);
	uv_close((uv_handle_t *)&l->timer, later_closed);
}

static void stream_closed(void *arg)
{
	(void)arg;
}

static void handle(void *arg, ws_http_req *r)
{
	ctx *x = arg;
	const char *path = ws_http_req_path(r);
	if (strncmp(path, "/later", 6) == 0) {
		later *l = calloc(1, sizeof(*l));
		if (!l)
			abort();
		l->req = r;
		uv_timer_init(x->loop, &l->timer);
		l->timer.data = l;
		uv_timer_start(&l->timer, later_fire, 0, 0);
		return;
	}
	if (strncmp(path, "/stream", 7) == 0) {
		/* A stream that failed to begin is still ended (http.c frees it there). */
		if (ws_http_stream_begin(r, 200, "text/event-stream", stream_closed, NULL) == 0) {
			size_t blen = 0;
			const char *body = ws_http_req_body(r, &blen);
			ws_http_stream_write(r, "data: x\n\n", 9);
			if (blen)
				ws_http_stream_write(r, body, blen);
		}
		ws_http_stream_end(r);
		return;
	}
	answer_now(r);
}

static void setup(uv_loop_t *loop, void *arg)
{
	((ctx *)arg)->loop = loop;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const ws_http_limits lim = {
		.max_header_bytes = 2048,
		.max_body_bytes = 4096,
		.header_timeout_ms = 60000,
		.idle_timeout_ms = 60000,
		.max_connections = 4,
		.max_pipelined = 4,
		.body_timeout_ms = 60000,
	};
	/* The server and the handlers log every refusal: noise at this rate. */
	ws_log_set_level("off");
	ctx x = { 0 };
	fuzz_http_run((const char *)data, size, &lim, setup, handle, &x);
	return 0;
}
