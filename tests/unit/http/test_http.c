/*
 * test_http.c - the HTTP server against real TCP clients.
 *
 * Each test runs one uv loop holding both the server (127.0.0.1, port 0)
 * and uv_tcp client handles that write raw bytes and parse what comes back
 * with http-parser in response mode.  Nothing sleeps: RUN_UNTIL turns the
 * loop until a condition holds, and a watchdog timer fails the test if it
 * never does.  Asynchronous handlers answer from uv timers.  Every test
 * ends in fx_finish(), which shuts the server down, closes every handle and
 * asserts uv_loop_close() == 0; ASan/LSan prove nothing leaks.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <http_parser.h>
#include <jansson.h>
#include <uv.h>
#include "wavesched/http.h"
#include "wavesched/log.h"

#define WATCHDOG_MS 3000
#define MAX_CLIENTS 16
#define MAX_HELD 8

/* The build hands http.c's responses to uv_write in pieces of this many
 * bytes (meson.build) and routes its connection allocation through
 * http_test_calloc() below. */
#ifndef WS_HTTP_WRITE_BUF_MAX
#error "test_http is built with -DWS_HTTP_WRITE_BUF_MAX (see meson.build)"
#endif

/* Accept-time allocations in http.c fail while this is positive. */
static int calloc_failures;
static int calloc_failed;

void *http_test_calloc(size_t n, size_t size);
void *http_test_calloc(size_t n, size_t size)
{
	if (calloc_failures > 0) {
		calloc_failures--;
		calloc_failed++;
		return NULL;
	}
	return calloc(n, size);
}

/* ---------------------------------------------------------------------- */
/* A raw TCP client on the test loop.                                      */

typedef struct tresp {
	int status;
	char headers[2048];   /* "\nname: value\n..." with lower-case names */
	size_t hlen;
	char *body;
	size_t blen;
} tresp;

typedef struct fx fx;

typedef struct tclient {
	uv_tcp_t tcp;
	uv_connect_t creq;
	fx *f;
	bool connect_done;
	int connect_status;
	bool eof;
	bool closing;
	char *raw;
	size_t rawlen;
	http_parser rp;
	bool in_value;
	bool head_next;     /* the next response answers a HEAD request */
	bool parse_error;
	tresp *resp;
	size_t nresp;       /* complete responses */
	size_t rcap;
} tclient;

struct fx {
	uv_loop_t loop;
	uv_timer_t watchdog;
	bool wd_fired;
	ws_http_server *s;
	int port;
	bool shutdown_started;
	int shutdown_calls;
	bool finished;

	tclient *clients[MAX_CLIENTS];
	size_t nclients;

	/* handler bookkeeping */
	int handled;
	int in_handler;
	int max_in_handler;
	char order[512];
	ws_http_req *held[MAX_HELD];
	size_t nheld;
	ws_http_req *slow[MAX_HELD];
	size_t nslow;
	uv_timer_t slow_timer;
	int handled_when_slow_answered;
	ws_http_req *stream_req;
	uv_timer_t stream_timer;
	int stream_closed_calls;
	int done_calls;
	int last_done_status;
	bool last_done_connected;

	/* A client sending a body one byte at a time. */
	uv_timer_t trickle_timer;
	tclient *trickler;
	int trickled;
	/* RUN_UNTIL(f, f->waited) after fx_wait: a pause without sleeping. */
	uv_timer_t wait_timer;
	bool waited;
};

static tresp *client_cur(tclient *c)
{
	if (c->nresp >= c->rcap) {
		size_t cap = c->rcap ? c->rcap * 2 : 4;
		tresp *r = realloc(c->resp, cap * sizeof(*r));
		assert_non_null(r);
		memset(r + c->rcap, 0, (cap - c->rcap) * sizeof(*r));
		c->resp = r;
		c->rcap = cap;
	}
	return &c->resp[c->nresp];
}

static void hdr_append(tresp *r, const char *s, size_t n, bool lower)
{
	for (size_t i = 0; i < n && r->hlen + 1 < sizeof(r->headers); i++)
		r->headers[r->hlen++] = lower ? (char)tolower((unsigned char)s[i]) : s[i];
	r->headers[r->hlen] = '\0';
}

static int cp_begin(http_parser *p)
{
	tclient *c = p->data;
	tresp *r = client_cur(c);
	free(r->body);
	memset(r, 0, sizeof(*r));
	hdr_append(r, "\n", 1, false);
	c->in_value = false;
	return 0;
}

static int cp_field(http_parser *p, const char *at, size_t n)
{
	tclient *c = p->data;
	tresp *r = client_cur(c);
	if (c->in_value)
		hdr_append(r, "\n", 1, false);
	c->in_value = false;
	hdr_append(r, at, n, true);
	return 0;
}

static int cp_value(http_parser *p, const char *at, size_t n)
{
	tclient *c = p->data;
	tresp *r = client_cur(c);
	if (!c->in_value)
		hdr_append(r, ": ", 2, false);
	c->in_value = true;
	hdr_append(r, at, n, false);
	return 0;
}

static int cp_headers_complete(http_parser *p)
{
	tclient *c = p->data;
	tresp *r = client_cur(c);
	if (c->in_value)
		hdr_append(r, "\n", 1, false);
	c->in_value = false;
	r->status = p->status_code;
	if (c->head_next && r->status >= 200) {
		c->head_next = false;
		return 1;   /* no body follows a HEAD answer */
	}
	return 0;
}

static int cp_body(http_parser *p, const char *at, size_t n)
{
	tclient *c = p->data;
	tresp *r = client_cur(c);
	char *b = realloc(r->body, r->blen + n + 1);
	assert_non_null(b);
	memcpy(b + r->blen, at, n);
	r->blen += n;
	b[r->blen] = '\0';
	r->body = b;
	return 0;
}

static int cp_complete(http_parser *p)
{
	tclient *c = p->data;
	tresp *r = client_cur(c);
	if (!r->body) {
		r->body = calloc(1, 1);
		assert_non_null(r->body);
	}
	c->nresp++;
	return 0;
}

static const http_parser_settings client_settings = {
	.on_message_begin = cp_begin,
	.on_header_field = cp_field,
	.on_header_value = cp_value,
	.on_headers_complete = cp_headers_complete,
	.on_body = cp_body,
	.on_message_complete = cp_complete,
};

static void client_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	buf->base = malloc(suggested);
	buf->len = buf->base ? suggested : 0;
}

static void client_feed(tclient *c, const char *data, size_t n)
{
	if (c->parse_error)
		return;
	size_t used = http_parser_execute(&c->rp, &client_settings, data, n);
	if (HTTP_PARSER_ERRNO(&c->rp) != HPE_OK || used != n)
		c->parse_error = true;
}

static void client_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	tclient *c = st->data;
	if (nread > 0) {
		char *raw = realloc(c->raw, c->rawlen + (size_t)nread + 1);
		assert_non_null(raw);
		memcpy(raw + c->rawlen, buf->base, (size_t)nread);
		c->rawlen += (size_t)nread;
		raw[c->rawlen] = '\0';
		c->raw = raw;
		client_feed(c, buf->base, (size_t)nread);
	} else if (nread < 0) {
		c->eof = true;
		client_feed(c, NULL, 0);   /* ends a body delimited by the close */
		uv_read_stop(st);
	}
	free(buf->base);
}

static void client_connect_cb(uv_connect_t *req, int status)
{
	tclient *c = req->data;
	c->connect_done = true;
	c->connect_status = status;
	if (status == 0)
		assert_int_equal(uv_read_start((uv_stream_t *)&c->tcp, client_alloc_cb, client_read_cb), 0);
}

static void client_close_cb(uv_handle_t *h)
{
	(void)h;
}

typedef struct cwrite {
	uv_write_t w;
	char data[];
} cwrite;

static void client_write_cb(uv_write_t *w, int status)
{
	(void)status;   /* a write to a server that closed first may fail */
	free(w);
}

static void client_send_n(tclient *c, const char *data, size_t n)
{
	cwrite *w = malloc(sizeof(*w) + n);
	assert_non_null(w);
	memcpy(w->data, data, n);
	uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
	assert_int_equal(uv_write(&w->w, (uv_stream_t *)&c->tcp, &b, 1, client_write_cb), 0);
}

static void client_send(tclient *c, const char *data)
{
	client_send_n(c, data, strlen(data));
}

static void client_close(tclient *c)
{
	if (!c->closing) {
		c->closing = true;
		uv_close((uv_handle_t *)&c->tcp, client_close_cb);
	}
}

#define RUN_UNTIL(f, cond)                                                                 \
	do {                                                                               \
		while (!(cond)) {                                                          \
			if ((f)->wd_fired)                                                 \
				fail_msg("%s:%d: timed out waiting for %s", __FILE__,     \
					 __LINE__, #cond);                                 \
			if (uv_run(&(f)->loop, UV_RUN_ONCE) == 0 && !(cond))               \
				fail_msg("%s:%d: loop idle while waiting for %s",          \
					 __FILE__, __LINE__, #cond);                       \
		}                                                                          \
	} while (0)

/* Starts a connection; client_new() below waits for it. */
static tclient *client_start(fx *f)
{
	assert_true(f->nclients < MAX_CLIENTS);
	tclient *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	f->clients[f->nclients++] = c;
	c->f = f;
	http_parser_init(&c->rp, HTTP_RESPONSE);
	c->rp.data = c;
	assert_int_equal(uv_tcp_init(&f->loop, &c->tcp), 0);
	c->tcp.data = c;
	c->creq.data = c;
	struct sockaddr_in sa;
	assert_int_equal(uv_ip4_addr("127.0.0.1", f->port, &sa), 0);
	assert_int_equal(uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&sa,
					client_connect_cb), 0);
	return c;
}

/* Starts a connection and waits until it is up (or has failed). */
static tclient *client_new(fx *f)
{
	tclient *c = client_start(f);
	RUN_UNTIL(f, c->connect_done);
	return c;
}

static tclient *client_up(fx *f)
{
	tclient *c = client_new(f);
	assert_int_equal(c->connect_status, 0);
	return c;
}

/* The value of response header `name` (lower case), or NULL. */
static const char *hdr(const tresp *r, const char *name, char *buf, size_t size)
{
	char key[128];
	snprintf(key, sizeof(key), "\n%s: ", name);
	const char *p = strstr(r->headers, key);
	if (!p)
		return NULL;
	p += strlen(key);
	size_t n = strcspn(p, "\n");
	if (n >= size)
		n = size - 1;
	memcpy(buf, p, n);
	buf[n] = '\0';
	return buf;
}

static void assert_hdr(const tresp *r, const char *name, const char *want)
{
	char buf[256];
	const char *got = hdr(r, name, buf, sizeof(buf));
	if (!want) {
		if (got)
			fail_msg("header %s unexpectedly present: %s", name, got);
		return;
	}
	if (!got)
		fail_msg("header %s missing in:%s", name, r->headers);
	assert_string_equal(got, want);
}

/* The api.md error shape with the given code and no details. */
static void assert_error_body(const tresp *r, const char *code)
{
	assert_hdr(r, "content-type", "application/json");
	json_error_t jerr;
	json_t *doc = json_loads(r->body, 0, &jerr);
	if (!doc)
		fail_msg("error body is not JSON (%s): %s", jerr.text, r->body);
	json_t *e = json_object_get(doc, "error");
	assert_true(json_is_object(e));
	assert_string_equal(json_string_value(json_object_get(e, "code")), code);
	assert_true(json_is_string(json_object_get(e, "message")));
	assert_true(strlen(json_string_value(json_object_get(e, "message"))) > 0);
	assert_true(json_is_array(json_object_get(e, "details")));
	assert_int_equal(json_array_size(json_object_get(e, "details")), 0);
	assert_int_equal(json_object_size(doc), 1);
	json_decref(doc);
}

/* ---------------------------------------------------------------------- */
/* The handler under test.                                                 */

static void reply(fx *f, ws_http_req *r, int status, const char *ct, const char *body, size_t n)
{
	f->in_handler--;
	ws_http_respond(r, status, ct, body, n);
}

static void reply_s(fx *f, ws_http_req *r, const char *body)
{
	reply(f, r, 200, "text/plain", body, strlen(body));
}

static void slow_timer_cb(uv_timer_t *t)
{
	fx *f = t->data;
	f->handled_when_slow_answered = f->handled;
	for (size_t i = 0; i < f->nslow; i++) {
		ws_http_req *r = f->slow[i];
		char path[64];
		snprintf(path, sizeof(path), "%s", ws_http_req_path(r));
		reply_s(f, r, path);
	}
	f->nslow = 0;
}

static void stream_timer_cb(uv_timer_t *t)
{
	fx *f = t->data;
	ws_http_req *r = f->stream_req;
	f->stream_req = NULL;
	assert_int_equal(ws_http_stream_write(r, "data: 2\n\n", 9), 0);
	f->in_handler--;
	ws_http_stream_end(r);
}

static void stream_on_close(void *arg)
{
	fx *f = arg;
	f->stream_closed_calls++;
	ws_http_req *r = f->stream_req;
	f->stream_req = NULL;
	assert_false(ws_http_req_connected(r));
	assert_int_equal(ws_http_stream_write(r, "x", 1), WS_EIO);
	f->in_handler--;
	ws_http_stream_end(r);
}

static void info_reply(fx *f, ws_http_req *r)
{
	static const char *const names[] = { "name", "empty", "flag", "x", "sp", "missing" };
	json_t *params = json_object();
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const char *v = ws_http_req_query_param(r, names[i]);
		json_object_set_new(params, names[i], v ? json_string(v) : json_null());
	}
	size_t blen;
	const char *body = ws_http_req_body(r, &blen);
	const char *custom = ws_http_req_header(r, "x-custom");
	json_t *doc = json_pack("{s:s, s:s, s:s, s:o, s:s%, s:s?, s:b}", "method",
				ws_http_req_method(r), "path", ws_http_req_path(r), "query",
				ws_http_req_query(r), "params", params, "body", body, blen,
				"x_custom", custom, "connected", ws_http_req_connected(r));
	assert_non_null(doc);
	f->in_handler--;
	ws_http_req_set_route(r, "/info");
	assert_string_equal(ws_http_req_route(r), "/info");
	ws_http_respond_json(r, 200, doc);
}

static void handler(void *arg, ws_http_req *r)
{
	fx *f = arg;
	f->handled++;
	if (++f->in_handler > f->max_in_handler)
		f->max_in_handler = f->in_handler;
	const char *path = ws_http_req_path(r);
	size_t olen = strlen(f->order);
	snprintf(f->order + olen, sizeof(f->order) - olen, "%s%s", olen ? "," : "", path);
	assert_string_equal(ws_http_req_route(r), "unmatched");
	assert_true(ws_http_req_id(r) > 0);
	assert_true(ws_http_req_connected(r));

	if (strcmp(path, "/hello") == 0) {
		ws_http_add_header(r, "X-Test", "yes");
		ws_http_add_header(r, "X-Bad", "evil\r\nInjected: 1");   /* dropped */
		ws_http_add_header(r, "Content-Length", "99");           /* dropped */
		reply_s(f, r, "hello\n");
	} else if (strcmp(path, "/echo") == 0) {
		size_t n;
		const char *b = ws_http_req_body(r, &n);
		reply(f, r, 200, "application/octet-stream", b, n);
	} else if (strncmp(path, "/info", 5) == 0) {
		info_reply(f, r);
	} else if (strncmp(path, "/slow", 5) == 0) {
		assert_true(f->nslow < MAX_HELD);
		f->slow[f->nslow++] = r;
		uv_timer_start(&f->slow_timer, slow_timer_cb, 30, 0);
	} else if (strcmp(path, "/hold") == 0) {
		assert_true(f->nheld < MAX_HELD);
		f->held[f->nheld++] = r;
	} else if (strcmp(path, "/stream") == 0 || strcmp(path, "/stream-hold") == 0) {
		ws_http_add_header(r, "Cache-Control", "no-cache");
		assert_int_equal(ws_http_stream_begin(r, 200, "text/event-stream", stream_on_close, f), 0);
		assert_int_equal(ws_http_stream_write(r, "data: 1\n\n", 9), 0);
		f->stream_req = r;
		if (strcmp(path, "/stream") == 0)
			uv_timer_start(&f->stream_timer, stream_timer_cb, 20, 0);
	} else {
		f->in_handler--;
		ws_http_respond_error(r, 404, "not_found", "no such resource", NULL);
	}
}

static void done_cb(void *arg, const ws_http_req *r, int status, uint64_t elapsed_ns)
{
	fx *f = arg;
	(void)elapsed_ns;
	f->done_calls++;
	f->last_done_status = status;
	f->last_done_connected = ws_http_req_connected(r);
}

static void on_shutdown(void *arg)
{
	fx *f = arg;
	f->shutdown_calls++;
	f->s = NULL;   /* freed after this returns */
}

/* ---------------------------------------------------------------------- */
/* Fixture.                                                                */

static void watchdog_cb(uv_timer_t *t)
{
	fx *f = t->data;
	f->wd_fired = true;
}

static int setup(void **state)
{
	fx *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	uv_timer_init(&f->loop, &f->watchdog);
	uv_timer_init(&f->loop, &f->slow_timer);
	uv_timer_init(&f->loop, &f->stream_timer);
	uv_timer_init(&f->loop, &f->trickle_timer);
	uv_timer_init(&f->loop, &f->wait_timer);
	f->watchdog.data = f->slow_timer.data = f->stream_timer.data = f;
	f->trickle_timer.data = f->wait_timer.data = f;
	calloc_failures = calloc_failed = 0;
	uv_timer_start(&f->watchdog, watchdog_cb, WATCHDOG_MS, 0);
	*state = f;
	return 0;
}

static void fx_start(fx *f, const ws_http_limits *lim)
{
	f->s = ws_http_server_new(&f->loop, lim, handler, done_cb, f);
	assert_non_null(f->s);
	ws_diags d;
	ws_diags_init(&d);
	int rc = ws_http_server_listen(f->s, "127.0.0.1:0", &d);
	if (rc)
		fail_msg("listen: %s", d.len ? d.items[0].message : "?");
	ws_diags_free(&d);
	f->port = ws_http_server_port(f->s);
	assert_true(f->port > 0);
}

static void fx_shutdown(fx *f, uint64_t grace_ms)
{
	assert_false(f->shutdown_started);
	f->shutdown_started = true;
	ws_http_server_shutdown(f->s, grace_ms, on_shutdown, f);
}

/* Answers whatever is still pending, shuts down, closes every handle. */
static void fx_cleanup(fx *f)
{
	for (size_t i = 0; i < f->nheld; i++)
		ws_http_respond(f->held[i], 500, NULL, NULL, 0);
	f->nheld = 0;
	for (size_t i = 0; i < f->nslow; i++)
		ws_http_respond(f->slow[i], 500, NULL, NULL, 0);
	f->nslow = 0;
	if (f->stream_req) {
		ws_http_req *r = f->stream_req;
		f->stream_req = NULL;
		ws_http_stream_end(r);
	}
	if (f->s && !f->shutdown_started) {
		f->shutdown_started = true;
		ws_http_server_shutdown(f->s, 0, on_shutdown, f);
	}
	for (size_t i = 0; i < f->nclients; i++)
		client_close(f->clients[i]);
	if (!uv_is_closing((uv_handle_t *)&f->watchdog)) {
		uv_close((uv_handle_t *)&f->watchdog, NULL);
		uv_close((uv_handle_t *)&f->slow_timer, NULL);
		uv_close((uv_handle_t *)&f->stream_timer, NULL);
		uv_close((uv_handle_t *)&f->trickle_timer, NULL);
		uv_close((uv_handle_t *)&f->wait_timer, NULL);
	}
	calloc_failures = 0;
	uv_run(&f->loop, UV_RUN_DEFAULT);
}

static void fx_finish(fx *f)
{
	fx_cleanup(f);
	assert_int_equal(f->shutdown_calls, 1);
	assert_null(f->s);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	f->finished = true;
}

static int teardown(void **state)
{
	fx *f = *state;
	if (!f->finished) {
		/* The test failed part-way: clean up as far as possible. */
		fx_cleanup(f);
		uv_loop_close(&f->loop);
	}
	for (size_t i = 0; i < f->nclients; i++) {
		tclient *c = f->clients[i];
		for (size_t j = 0; j < c->rcap; j++)
			free(c->resp[j].body);
		free(c->resp);
		free(c->raw);
		free(c);
	}
	free(f);
	return 0;
}

static void wait_cb(uv_timer_t *t)
{
	fx *f = t->data;
	f->waited = true;
}

/* Starts a pause; the test then runs RUN_UNTIL(f, f->waited). */
static void fx_wait(fx *f, uint64_t ms)
{
	f->waited = false;
	uv_timer_start(&f->wait_timer, wait_cb, ms, 0);
}

static void trickle_cb(uv_timer_t *t)
{
	fx *f = t->data;
	if (f->trickler->eof) {
		uv_timer_stop(t);
		return;
	}
	client_send(f->trickler, "x");
	f->trickled++;
}

static ws_http_limits test_limits(void)
{
	ws_http_limits lim = { 0 };   /* zero: defaults */
	return lim;
}

/* ---------------------------------------------------------------------- */
/* Tests.                                                                  */

static void test_get(void **state)
{
	fx *f = *state;
	fx_start(f, NULL);
	tclient *c = client_up(f);
	client_send(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
	RUN_UNTIL(f, c->nresp == 1);
	tresp *r = &c->resp[0];
	assert_int_equal(r->status, 200);
	assert_true(strncmp(c->raw, "HTTP/1.1 200 OK\r\n", 17) == 0);
	assert_hdr(r, "content-type", "text/plain");
	assert_hdr(r, "content-length", "6");
	assert_hdr(r, "connection", "keep-alive");
	assert_hdr(r, "x-test", "yes");
	assert_hdr(r, "x-bad", NULL);
	assert_hdr(r, "injected", NULL);
	char date[64];
	assert_non_null(hdr(r, "date", date, sizeof(date)));
	assert_int_equal(strlen(date), 29);   /* "Sun, 06 Nov 1994 08:49:37 GMT" */
	assert_string_equal(date + 26, "GMT");
	assert_int_equal(date[3], ',');
	assert_string_equal(r->body, "hello\n");
	assert_false(c->eof);
	assert_int_equal(ws_http_server_connections(f->s), 1);
	assert_int_equal(f->done_calls, 1);
	assert_int_equal(f->last_done_status, 200);
	assert_true(f->last_done_connected);
	fx_finish(f);
}

static void test_keep_alive(void **state)
{
	fx *f = *state;
	fx_start(f, NULL);
	tclient *c = client_up(f);
	client_send(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
	RUN_UNTIL(f, c->nresp == 1);
	client_send(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
	RUN_UNTIL(f, c->nresp == 2);
	assert_string_equal(c->resp[0].body, "hello\n");
	assert_int_equal(c->resp[1].status, 200);
	assert_string_equal(c->resp[1].body, "abc");
	assert_hdr(&c->resp[1], "connection", "keep-alive");
	assert_false(c->eof);
	assert_int_equal(ws_http_server_connections(f->s), 1);
	fx_finish(f);
}

static void test_pipelined_in_order(void **state)
{
	fx *f = *state;
	fx_start(f, NULL);
	tclient *c = client_up(f);
	/* One write; the first is answered 30 ms later from a timer. */
	client_send(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
		       "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
		       "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nthird");
	RUN_UNTIL(f, c->nresp == 3);
	assert_string_equal(c->resp[0].body, "/slow");
	assert_string_equal(c->resp[1].body, "hello\n");
	assert_string_equal(c->resp[2].body, "third");
	assert_string_equal(f->order, "/slow,/hello,/echo");
	/* The later requests reached the handler only after /slow was answered. */
	assert_int_equal(f->handled_when_slow_answered, 1);
	assert_int_equal(f->max_in_handler, 1);
	assert_false(c->eof);
	fx_finish(f);
}

static void test_pipelined_backpressure(void **state)
{
	fx *f = *state;
	ws_http_limits lim = test_limits();
	lim.max_pipelined = 1;   /* read-ahead budget: 4 KiB */
	fx_start(f, &lim);
	tclient *c = client_up(f);
	enum { N = 300 };
	static const char one[] = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";
	size_t len = strlen("GET /slow HTTP/1.1\r\n\r\n") + N * (sizeof(one) - 1);
	char *all = malloc(len + 1);
	assert_non_null(all);
	strcpy(all, "GET /slow HTTP/1.1\r\n\r\n");
	for (int i = 0; i < N; i++)
		strcat(all, one);
	client_send_n(c, all, len);
	free(all);
	RUN_UNTIL(f, c->nresp == N + 1);
	assert_string_equal(c->resp[0].body, "/slow");
	for (int i = 1; i <= N; i++)
		assert_string_equal(c->resp[i].body, "hello\n");
	assert_int_equal(f->handled_when_slow_answered, 1);
	assert_int_equal(f->max_in_handler, 1);
	assert_false(c->parse_error);
	fx_finish(f);
}

static void test_body_too_large(void **state)
{
	fx *f = *state;
	ws_http_limits lim = test_limits();
	lim.max_body_bytes = 1024;
	fx_start(f, &lim);
	tclient *c = client_up(f);
	/* Announces 100000 bytes and sends 10: answered without waiting. */
	client_send(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n0123456789");
	RUN_UNTIL(f, c->eof);
	assert_int_equal(c->nresp, 1);
	assert_int_equal(c->resp[0].status, 413);
	assert_hdr(&c->resp[0], "connection", "close");
	assert_error_body(&c->resp[0], "payload_too_large");
	assert_int_equal(f->handled, 0);
	assert_int_equal(f->done_calls, 1);
	assert_int_equal(f->last_done_status, 413);

	/* Exactly at the limit is fine. */
	tclient *ok = client_up(f);
	char req[2048];
	int n = snprintf(req, sizeof(req), "POST /echo HTTP/1.1\r\nContent-Length: 1024\r\n\r\n");
	memset(req + n, 'b', 1024);
	client_send_n(ok, req, (size_t)n + 1024);
	RUN_UNTIL(f, ok->nresp == 1);
	assert_int_equal(ok->resp[0].status, 200);
	assert_int_equal(ok->resp[0].blen, 1024);
	fx_finish(f);
}

static void test_headers_too_large(void **state)
{
	fx *f = *state;
	ws_http_limits lim = test_limits();
	lim.max_header_bytes = 1024;
	fx_start(f, &lim);
	tclient *c = client_up(f);
	char req[4096];
	char big[2001];
	memset(big, 'a', 2000);
	big[2000] = '\0';
	snprintf(req, sizeof(req), "GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", big);
	client_send(c, req);
	RUN_UNTIL(f, c->eof);
	assert_int_equal(c->nresp, 1);
	assert_int_equal(c->resp[0].status, 431);
	assert_hdr(&c->resp[0], "connection", "close");
	assert_error_body(&c->resp[0], "header_too_large");
	/* Many small headers add up just the same. */
	tclient *c2 = client_up(f);
	client_send(c2, "GET /hello HTTP/1.1\r\n");
	for (int i = 0; i < 100; i++)
		client_send(c2, "X-Some-Header: some value\r\n");
	client_send(c2, "\r\n");
	RUN_UNTIL(f, c2->eof);
	assert_int_equal(c2->nresp, 1);
	assert_int_equal(c2->resp[0].status, 431);
	assert_int_equal(f->handled, 0);
	fx_finish(f);
}

static void test_malformed(void **state)
{
	fx *f = *state;
	fx_start(f, NULL);
	static const char *const bad[] = {
		"BLAH / HTTP/1.1\r\n\r\n",
		"GET / XTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
		"\x01\x02\x03\r\n\r\n",
		"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
		"CONNECT example.com:443 HTTP/1.1\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		tclient *c = client_up(f);
		client_send(c, bad[i]);
		RUN_UNTIL(f, c->eof);
		if (c->nresp != 1 || c->resp[0].status != 400)
			fail_msg("case %zu: %zu responses, status %d", i, c->nresp,
				 c->nresp ? c->resp[0].status : 0);
		assert_hdr(&c->resp[0], "connection", "close");
		assert_error_body(&c->resp[0], "bad_request");
		client_close(c);
		RUN_UNTIL(f, ws_http_server_connections(f->s) == 0);
		/* Reuse the slot: the fixture frees clients at the end. */
	}
	assert_int_equal(f->handled, 0);

	/* An error behind a pending request is answered after it, in order. */
	tclient *c = client_up(f);
	client_send(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\nBLAH / HTTP/1.1\r\n\r\n");
	RUN_UNTIL(f, c->eof);
	assert_int_equal(c->nresp, 2);
	assert_int_equal(c->resp[0].status, 200);
	assert_string_equal(c->resp[0].body, "/slow");
	assert_hdr(&c->resp[0], "connection", "keep-alive");
	assert_int_equal(c->resp[1].status, 400);
	assert_error_body(&c->resp[1], "bad_request");
	fx_finish(f);
}

static void test_chunked(void **state)
{
	fx *f = *state;
	ws_http_limits lim = test_limits();
	lim.max_body_bytes = 16;
	fx_start(f, &lim);
	tclient *c = client_up(f);
	client_send(c, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
		       "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
	RUN_UNTIL(f, c->nresp == 1);
	assert_int_equal(c->resp[0].status, 200);
	assert_string_equal(c->resp[0].body, "hello world");

	/* 10 + 10 > 16: refused at the second chunk's size line; the client
	 * never finishes the body. */
	tclient *c2 = client_up(f);
	client_send(c2, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
			"a\r\n0123456789\r\na\r\n");
	RUN_UNTIL(f, c2->eof);
	assert_int_equal(c2->nresp, 1);
	assert_int_equal(c2->resp[0].status, 413);
	assert_error_body(&c2->resp[0], "payload_too_large");
	assert_int_equal(f->handled, 1);
	fx_finish(f);
}

static json_t *info_body(const tresp *r)
{
	json_error_t jerr;
	json_t *doc = json_loads(r->body, 0, &jerr);
	if (!doc)
		fail_msg("not JSON (%s): %s", jerr.text, r->body);
	return doc;
}

static void test_query_params(void **state)
{
	fx *f = *state;
	fx_start(f, NULL);
	tclient *c = client_up(f);
	const char *q = "name=J%C3%B6rg+M&empty=&flag&x=1&x=2&sp=a%20b%2Bc&&";
	char req[512];
	snprintf(req, sizeof(req),
		 "POST /info?%s HTTP/1.1\r\nHost: x\r\nX-Custom:  spaced value  \r\n"
		 "Content-Length: 4\r\n\r\nbody",
		 q);
	client_send(c, req);
	RUN_UNTIL(f, c->nresp == 1);
	assert_int_equal(c->resp[0].status, 200);
	assert_hdr(&c->resp[0], "content-type", "application/json");
	json_t *doc = info_body(&c->resp[0]);
	assert_string_equal(json_string_value(json_object_get(doc, "method")), "POST");
	assert_string_equal(json_string_value(json_object_get(doc, "path")), "/info");
	assert_string_equal(json_string_value(json_object_get(doc, "query")), q);
	assert_string_equal(json_string_value(json_object_get(doc, "body")), "body");
	assert_string_equal(json_string_value(json_object_get(doc, "x_custom")), "spaced value");
	json_t *p = json_object_get(doc, "params");
	assert_string_equal(json_string_value(json_object_get(p, "name")), "J\xc3\xb6rg M");
	assert_string_equal(json_string_value(json_object_get(p, "empty")), "");
	assert_string_equal(json_string_value(json_object_get(p, "flag")), "");
	assert_string_equal(json_string_value(json_object_get(p, "x")), "1");
	assert_string_equal(json_string_value(json_object_get(p, "sp")), "a b+c");
	assert_true(json_is_null(json_object_get(p, "missing")));
	json_decref(doc);
	fx_finish(f);
}

static void test_path_decoding(void **state)
{
	fx *f = *state;
	fx_start(f, NULL);
	tclient *c = client_up(f);
	client_send(c, "GET /info/a%20b/c+d/%C3%A9 HTTP/1.1\r\nHost: x\r\n\r\n");
	RUN_UNTIL(f, c->nresp == 1);
	json_t *doc = info_body(&c->resp[0]);
	assert_string_equal(json_string_value(json_object_get(doc, "path")), "/info/a b/c+d/\xc3\xa9");
	assert_string_equal(json_string_value(json_object_get(doc, "query")), "");
	json_decref(doc);
	/* An absolute-form target is accepted; its path is used. */
	client_send(c, "GET http://example.com/info/abs?x=1 HTTP/1.1\r\nHost: x\r\n\r\n");
	RUN_UNTIL(f, c->nresp == 2);
	doc = info_body(&c->resp[1]);
	assert_string_equal(json_string_value(json_object_get(doc, "path")), "/info/abs");
	json_decref(doc);

	static const char *const bad[] = {
		"GET /info%zz HTTP/1.1\r\n\r\n",
		"GET /info%00x HTTP/1.1\r\n\r\n",
		"GET /info%4 HTTP/1.1\r\n\r\n",
		"GET /info% HTTP/1.1\r\n\r\n",
		"GET /info?a=%G1 HTTP/1.1\r\n\r\n",
		"GET /info?a=%00 HTTP/1.1\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		tclient *b = client_up(f);
		client_send(b, bad[i]);
		RUN_UNTIL(f, b->eof);
		if (b->nresp != 1 || b->resp[0].status != 400)
			fail_msg("case %zu: %zu responses, status %d", i, b->nresp,
				 b->nresp ? b->resp[0].status : 0);
		assert_error_body(&b->resp[0], "bad_request");
		client_close(b);
	}
	assert_int_equal(f->handled, 2);
	fx_finish(f);
}

static void test_client_gone_while_pending(void **state)
{
	fx *f = *state;
	fx_start(f, NULL);
	tclient *c = client_up(f);
	client_send(c, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\n\r\n");
	RUN_UNTIL(f, f->nheld == 1);
	ws_http_req *r = f->held[0];
	assert_true(ws_http_req_connected(r));
	client_close(c);
	RUN_UNTIL(f, ws_http_server_connections(f->s) == 0);
	/* The request is still valid and answerable; the answer is dropped. */
	assert_false(ws_http_req_connected(r));
	assert_string_equal(ws_http_req_path(r), "/hold");
	assert_string_equal(ws_http_req_header(r, "host"), "x");
	f->nheld = 0;
	reply_s(f, r, "too late");
	assert_int_equal(f->done_calls, 1);
	assert_int_equal(f->last_done_status, 200);
	assert_false(f->last_done_connected);
	assert_int_equal(f->handled, 1);   /* the pipelined /hello was never handed over */
	fx_finish(f);
}

static void test_idle_timeout(void **state)
{
	fx *f = *state;
	ws_http_limits lim = test_limits();
	lim.idle_timeout_ms = 100;
	fx_start(f, &lim);
	tclient *c = client_up(f);
	client_send(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
	RUN_UNTIL(f, c->nresp == 1);
	uint64_t t0 = uv_now(&f->loop);
	RUN_UNTIL(f, c->eof);
	uint64_t elapsed = uv_now(&f->loop) - t0;
	assert_true(elapsed >= 50 && elapsed < 2000);
	assert_int_equal(c->nresp, 1);
	RUN_UNTIL(f, ws_http_server_connections(f->s) == 0);
	fx_finish(f);
}

static void test_header_timeout(void **state)
{
	fx *f = *state;
	ws_http_limits lim = test_limits();
	lim.header_timeout_ms = 100;
	lim.idle_timeout_ms = 10000;
	fx_start(f, &lim);
	uint64_t t0 = uv_now(&f->loop);
	/* Slowloris: part of a head, then silence. */
	tclient *c = client_up(f);
	client_send(c, "GET /hello HTTP/1.1\r\nHost: x\r\n");
	/* And a connection that never sends anything. */
	tclient *c2 = client_up(f);
	RUN_UNTIL(f, c->eof && c2->eof);
	uint64_t elapsed = uv_now(&f->loop) - t0;
	assert_true(elapsed >= 90 && elapsed < 2000);
	assert_int_equal(c->rawlen, 0);
	assert_int_equal(c2->rawlen, 0);
	assert_int_equal(f->handled, 0);
	fx_finish(f);
}

static void test_max_connections(void **state)
{
	fx *f = *state;
	ws_http_limits lim = test_limits();
	lim.max_connections = 2;
	fx_start(f, &lim);
	tclient *c1 = client_up(f);
	RUN_UNTIL(f, ws_http_server_connections(f->s) == 1);
	tclient *c2 = client_up(f);
	RUN_UNTIL(f, ws_http_server_connections(f->s) == 2);
	tclient *c3 = client_up(f);
	RUN_UNTIL(f, c3->eof);
	assert_int_equal(c3->rawlen, 0);
	assert_int_equal(ws_http_server_connections(f->s), 2);
	client_send(c1, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
	RUN_UNTIL(f, c1->nresp == 1);
	assert_int_equal(c1->resp[0].status, 200);
	client_close(c1);
	RUN_UNTIL(f, ws_http_server_connections(f->s) == 1);
	tclient *c4 = client_up(f);
	client_send(c4, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
	RUN_UNTIL(f, c4->nresp == 1);
	assert_int_equal(ws_http_server_connections(f->s), 2);
	assert_false(c2->eof);
	fx_finish(f);
}

static void test_graceful_shutdown(void **state)
{
	fx *f = *state;
	fx_start(f, NULL);
	tclient *busy = client_up(f);
	client_send(busy, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
	RUN_UNTIL(f, f->nheld == 1);
	tclient *idle = client_up(f);
	client_send(idle, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
	RUN_UNTIL(f, idle->nresp == 1);

	fx_shutdown(f, 2000);
	RUN_UNTIL(f, idle->eof);   /* idle connections go at once */
	assert_int_equal(f->shutdown_calls, 0);
	assert_false(busy->eof);
	tclient *late = client_new(f);   /* no longer accepted */
	assert_int_not_equal(late->connect_status, 0);

	ws_http_req *r = f->held[0];
	f->nheld = 0;
	assert_true(ws_http_req_connected(r));
	reply_s(f, r, "finished");
	RUN_UNTIL(f, f->shutdown_calls == 1);
	RUN_UNTIL(f, busy->eof);
	assert_int_equal(busy->nresp, 1);
	assert_int_equal(busy->resp[0].status, 200);
	assert_string_equal(busy->resp[0].body, "finished");
	assert_hdr(&busy->resp[0], "connection", "close");
	fx_finish(f);
}

static void test_shutdown_grace_expires(void **state)
{
	fx *f = *state;
	fx_start(f, NULL);
	tclient *c = client_up(f);
	client_send(c, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
	RUN_UNTIL(f, f->nheld == 1);
	fx_shutdown(f, 50);
	RUN_UNTIL(f, f->shutdown_calls == 1 && c->eof);
	assert_int_equal(c->nresp, 0);
	/* The server is gone; the request is still answerable (and dropped). */
	ws_http_req *r = f->held[0];
	f->nheld = 0;
	assert_false(ws_http_req_connected(r));
	int done_before = f->done_calls;
	reply_s(f, r, "nobody listens");
	assert_int_equal(f->done_calls, done_before);
	fx_finish(f);
}

static void test_streaming(void **state)
{
	fx *f = *state;
	fx_start(f, NULL);
	tclient *c = client_up(f);
	client_send(c, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
	RUN_UNTIL(f, c->nresp == 1);
	tresp *r = &c->resp[0];
	assert_int_equal(r->status, 200);
	assert_hdr(r, "transfer-encoding", "chunked");
	assert_hdr(r, "content-length", NULL);
	assert_hdr(r, "content-type", "text/event-stream");
	assert_hdr(r, "cache-control", "no-cache");
	assert_hdr(r, "connection", "keep-alive");
	assert_string_equal(r->body, "data: 1\n\ndata: 2\n\n");
	assert_non_null(strstr(c->raw, "\r\n\r\n9\r\ndata: 1\n\n\r\n9\r\ndata: 2\n\n\r\n0\r\n\r\n"));
	/* The connection carries on after the stream. */
	client_send(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
	RUN_UNTIL(f, c->nresp == 2);
	assert_string_equal(c->resp[1].body, "hello\n");
	assert_int_equal(f->stream_closed_calls, 0);
	fx_finish(f);
}

static void test_stream_client_gone(void **state)
{
	fx *f = *state;
	fx_start(f, NULL);
	tclient *c = client_up(f);
	client_send(c, "GET /stream-hold HTTP/1.1\r\nHost: x\r\n\r\n");
	RUN_UNTIL(f, c->raw && strstr(c->raw, "data: 1"));
	assert_non_null(f->stream_req);
	client_close(c);
	RUN_UNTIL(f, f->stream_closed_calls == 1);
	assert_null(f->stream_req);
	RUN_UNTIL(f, ws_http_server_connections(f->s) == 0);
	assert_int_equal(f->done_calls, 1);
	fx_finish(f);
}

static void test_http10(void **state)
{
	fx *f = *state;
	fx_start(f, NULL);
	tclient *c = client_up(f);
	client_send(c, "GET /hello HTTP/1.0\r\n\r\n");
	RUN_UNTIL(f, c->eof);
	assert_int_equal(c->nresp, 1);
	assert_hdr(&c->resp[0], "connection", "close");
	assert_string_equal(c->resp[0].body, "hello\n");

	tclient *k = client_up(f);
	client_send(k, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
	RUN_UNTIL(f, k->nresp == 1);
	assert_hdr(&k->resp[0], "connection", "keep-alive");
	client_send(k, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
	RUN_UNTIL(f, k->nresp == 2);
	assert_false(k->eof);

	/* HTTP/1.1 with Connection: close closes too. */
	tclient *x = client_up(f);
	client_send(x, "GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n");
	RUN_UNTIL(f, x->eof);
	assert_int_equal(x->nresp, 1);
	assert_hdr(&x->resp[0], "connection", "close");

	/* A stream to an HTTP/1.0 client is delimited by the close. */
	tclient *s = client_up(f);
	client_send(s, "GET /stream HTTP/1.0\r\n\r\n");
	RUN_UNTIL(f, s->eof);
	assert_int_equal(s->nresp, 1);
	assert_hdr(&s->resp[0], "transfer-encoding", NULL);
	assert_hdr(&s->resp[0], "connection", "close");
	assert_string_equal(s->resp[0].body, "data: 1\n\ndata: 2\n\n");
	fx_finish(f);
}

static void test_expect_continue(void **state)
{
	fx *f = *state;
	fx_start(f, NULL);
	tclient *c = client_up(f);
	client_send(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
		       "Expect: 100-continue\r\n\r\n");
	RUN_UNTIL(f, c->nresp == 1);
	assert_int_equal(c->resp[0].status, 100);
	client_send(c, "hello");
	RUN_UNTIL(f, c->nresp == 2);
	assert_int_equal(c->resp[1].status, 200);
	assert_string_equal(c->resp[1].body, "hello");

	tclient *b = client_up(f);
	client_send(b, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: magic\r\n\r\n");
	RUN_UNTIL(f, b->eof);
	assert_int_equal(b->nresp, 1);
	assert_int_equal(b->resp[0].status, 417);
	assert_error_body(&b->resp[0], "expectation_failed");

	/* Behind a pending request the interim 100 waits for the earlier
	 * response, so it cannot overtake it. */
	tclient *p = client_up(f);
	client_send(p, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
		       "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
		       "Expect: 100-continue\r\n\r\n");
	RUN_UNTIL(f, p->nresp == 2);
	assert_int_equal(p->resp[0].status, 200);
	assert_string_equal(p->resp[0].body, "/slow");
	assert_int_equal(p->resp[1].status, 100);
	client_send(p, "abc");
	RUN_UNTIL(f, p->nresp == 3);
	assert_string_equal(p->resp[2].body, "abc");

	/* Too large: 413 instead of 100. */
	tclient *t = client_up(f);
	client_send(t, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n"
		       "Expect: 100-continue\r\n\r\n");
	RUN_UNTIL(f, t->eof);
	assert_int_equal(t->nresp, 1);
	assert_int_equal(t->resp[0].status, 413);
	fx_finish(f);
}

static void test_errors_and_head(void **state)
{
	fx *f = *state;
	fx_start(f, NULL);
	tclient *c = client_up(f);
	client_send(c, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
	RUN_UNTIL(f, c->nresp == 1);
	assert_int_equal(c->resp[0].status, 404);
	assert_true(strncmp(c->raw, "HTTP/1.1 404 Not Found\r\n", 24) == 0);
	assert_error_body(&c->resp[0], "not_found");
	assert_hdr(&c->resp[0], "connection", "keep-alive");
	c->head_next = true;
	client_send(c, "HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n");
	RUN_UNTIL(f, c->nresp == 2);
	assert_int_equal(c->resp[1].status, 200);
	assert_hdr(&c->resp[1], "content-length", "6");
	assert_int_equal(c->resp[1].blen, 0);
	/* Nothing extra after the HEAD answer: the next response parses. */
	client_send(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
	RUN_UNTIL(f, c->nresp == 3);
	assert_string_equal(c->resp[2].body, "hello\n");
	assert_false(c->parse_error);
	assert_string_equal(ws_http_status_text(431), "Request Header Fields Too Large");
	assert_string_equal(ws_http_status_text(299), "Unknown");
	fx_finish(f);
}

static void test_listen_errors(void **state)
{
	fx *f = *state;
	f->s = ws_http_server_new(&f->loop, NULL, handler, done_cb, f);
	assert_non_null(f->s);
	static const char *const bad[] = { "nonsense", "127.0.0.1:99999", "localhost:80",
					   "[::1:80", "127.0.0.1:", "127.0.0.1:8x" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ws_diags d;
		ws_diags_init(&d);
		assert_int_equal(ws_http_server_listen(f->s, bad[i], &d), WS_EINVAL);
		assert_int_equal(d.len, 1);
		assert_non_null(strstr(d.items[0].message, bad[i]));
		ws_diags_free(&d);
	}
	assert_int_equal(ws_http_server_port(f->s), 0);
	fx_finish(f);
}

/* Responses are written in several uv_buf_t (here of 1000 bytes, in
 * production of 4 GiB, the most uv_buf_init can describe): every byte of a
 * body much larger than a piece arrives, matching Content-Length. */
static void test_large_response_split(void **state)
{
	fx *f = *state;
	fx_start(f, NULL);
	enum { BIG = 100000 };   /* 101 pieces: more than fit on the stack */
	_Static_assert(BIG / WS_HTTP_WRITE_BUF_MAX > 8, "the split must be exercised");
	tclient *c = client_up(f);
	const char *const head_fmt =
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n";
	char *req = malloc(BIG + 128);
	assert_non_null(req);
	int n = snprintf(req, 128, head_fmt, BIG);
	for (int i = 0; i < BIG; i++)
		req[n + i] = (char)('a' + i % 26);
	client_send_n(c, req, (size_t)n + BIG);
	RUN_UNTIL(f, c->nresp == 1);
	assert_int_equal(c->resp[0].status, 200);
	assert_hdr(&c->resp[0], "content-length", "100000");
	assert_int_equal(c->resp[0].blen, BIG);
	assert_memory_equal(c->resp[0].body, req + n, BIG);
	/* A body that is an exact number of pieces, and an empty one. */
	static const int sizes[] = { 3 * WS_HTTP_WRITE_BUF_MAX, WS_HTTP_WRITE_BUF_MAX - 1, 0 };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		n = snprintf(req, 128, head_fmt, sizes[i]);
		memset(req + n, 'z', (size_t)sizes[i]);
		client_send_n(c, req, (size_t)n + (size_t)sizes[i]);
		RUN_UNTIL(f, c->nresp == i + 2);
		assert_int_equal(c->resp[i + 1].status, 200);
		assert_int_equal(c->resp[i + 1].blen, sizes[i]);
	}
	free(req);
	assert_false(c->parse_error);
	assert_false(c->eof);
	fx_finish(f);
}

/* The body has an absolute deadline from the end of the head: a client
 * trickling a byte at a time is cut off even though it is never idle. */
static void test_body_timeout(void **state)
{
	fx *f = *state;
	ws_http_limits lim = test_limits();
	lim.body_timeout_ms = 200;
	lim.idle_timeout_ms = 10000;
	lim.header_timeout_ms = 10000;
	fx_start(f, &lim);
	tclient *c = client_up(f);
	uint64_t t0 = uv_now(&f->loop);
	/* 100 bytes at one per 10 ms would take a second. */
	client_send(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n");
	f->trickler = c;
	uv_timer_start(&f->trickle_timer, trickle_cb, 10, 10);
	RUN_UNTIL(f, c->eof);
	uint64_t elapsed = uv_now(&f->loop) - t0;
	uv_timer_stop(&f->trickle_timer);
	/* Closed at the body deadline, long before the 10 s idle time-out,
	 * unanswered (time-outs close without a response). */
	assert_true(elapsed >= 190 && elapsed < 2000);
	assert_true(f->trickled >= 1);
	assert_int_equal(c->rawlen, 0);
	assert_int_equal(f->handled, 0);
	RUN_UNTIL(f, ws_http_server_connections(f->s) == 0);

	/* A body behind a request with the handler gets its full time once
	 * that answer has been written, however long the handler took. */
	tclient *p = client_up(f);
	client_send(p, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n"
		       "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n");
	RUN_UNTIL(f, f->nheld == 1);
	fx_wait(f, 400);
	RUN_UNTIL(f, f->waited);
	assert_false(p->eof);
	f->nheld = 0;
	reply_s(f, f->held[0], "held");
	RUN_UNTIL(f, p->nresp == 1);
	client_send(p, "abc");
	RUN_UNTIL(f, p->nresp == 2);
	assert_string_equal(p->resp[0].body, "held");
	assert_int_equal(p->resp[1].status, 200);
	assert_string_equal(p->resp[1].body, "abc");
	/* ... and no more. */
	client_send(p, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\na");
	RUN_UNTIL(f, p->eof);
	assert_int_equal(p->nresp, 2);
	fx_finish(f);
}

/* A connection that cannot be served for want of memory is still accepted
 * (and closed): otherwise libuv stops polling the listener for good. */
static void test_accept_out_of_memory(void **state)
{
	fx *f = *state;
	fx_start(f, NULL);
	calloc_failures = 1;
	tclient *c1 = client_up(f);
	RUN_UNTIL(f, c1->eof);
	assert_int_equal(c1->rawlen, 0);
	assert_int_equal(calloc_failed, 1);
	tclient *c2 = client_up(f);
	client_send(c2, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
	RUN_UNTIL(f, c2->nresp == 1);
	assert_int_equal(c2->resp[0].status, 200);

	/* Memory stays short: connections arriving together are all refused,
	 * though only the first finds the spare handle free and none can have
	 * one allocated. */
	calloc_failures = 1000;
	tclient *more[3];
	for (int i = 0; i < 3; i++)
		more[i] = client_start(f);
	RUN_UNTIL(f, more[0]->eof && more[1]->eof && more[2]->eof);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(more[i]->connect_status, 0);
		assert_int_equal(more[i]->rawlen, 0);
	}
	assert_true(calloc_failed >= 4);
	calloc_failures = 0;
	tclient *c3 = client_up(f);
	client_send(c3, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
	RUN_UNTIL(f, c3->nresp == 1);
	assert_int_equal(c3->resp[0].status, 200);
	assert_int_equal(ws_http_server_connections(f->s), 2);
	fx_finish(f);
}

int main(void)
{
	/* As in the daemon: a write to a client that has gone must not kill us. */
	signal(SIGPIPE, SIG_IGN);
	const char *lvl = getenv("WS_TEST_LOG");
	ws_log_set_level(lvl ? lvl : "off");
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_get),
		T(test_keep_alive),
		T(test_pipelined_in_order),
		T(test_pipelined_backpressure),
		T(test_body_too_large),
		T(test_headers_too_large),
		T(test_malformed),
		T(test_chunked),
		T(test_query_params),
		T(test_path_decoding),
		T(test_client_gone_while_pending),
		T(test_idle_timeout),
		T(test_header_timeout),
		T(test_max_connections),
		T(test_graceful_shutdown),
		T(test_shutdown_grace_expires),
		T(test_streaming),
		T(test_stream_client_gone),
		T(test_http10),
		T(test_expect_continue),
		T(test_errors_and_head),
		T(test_listen_errors),
		T(test_large_response_split),
		T(test_body_timeout),
		T(test_accept_out_of_memory),
	};
#undef T
	return cmocka_run_group_tests_name("http", tests, NULL, NULL);
}
