/*
 * http.c - the HTTP/1.1 server (see include/wavesched/http.h).
 *
 * Shape of the thing.  A ws_http_server owns a listening uv_tcp_t, a grace
 * timer used while draining, and a list of connections.  A connection
 * (ws_http_conn) embeds its uv_tcp_t, a uv_timer_t (header, body, idle,
 * write and linger time-outs all share it) and a uv_shutdown_t; it frees
 * itself when the close callbacks of both handles have arrived, never
 * earlier.  A connection that cannot be served (limit, shutdown, no memory)
 * is still accepted, into a throwaway handle, and closed at once.
 *
 * Input.  Bytes read are appended to the connection's input buffer and fed
 * to http-parser by conn_pump().  When a message completes the parser is
 * paused (http_parser_pause) so that at most one complete request waits
 * while another is with the handler; the unparsed remainder stays in the
 * input buffer and reading stops once it exceeds the read-ahead budget.
 * Requests are therefore answered strictly in order, one at a time.
 *
 * Requests.  A ws_http_req owns an arena (ws_arena, the project's lifetime
 * allocator) for its strings (method, path, query, headers, decoded query
 * parameters, added response headers) and a capped body buffer; everything
 * is freed in one place (req_free) once the request has been answered.
 * A request handed to the handler ("cur") is not owned by the connection:
 * if the connection closes first, the request is "orphaned" (req->conn =
 * NULL, kept on the server's orphan list) and the eventual answer is
 * dropped.  If the server itself is freed before that, req->server becomes
 * NULL too; answering still frees the request.
 *
 * Output.  A response is rendered into one malloc'd buffer and queued with
 * uv_write; the write request frees it in its callback.  The connection
 * continues with the next request (or closes) only once every byte of the
 * response has been written.  Closing after a response is graceful: a
 * shutdown (FIN) is sent and further input is read and discarded for a
 * short "linger" period, so the client is not hit by a reset that would
 * destroy the response it has not read yet (RFC 9112 section 9.6).
 *
 * Threads.  Everything runs on the loop thread; nothing here locks.
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <http_parser.h>
#include <jansson.h>
#include "wavesched/arena.h"
#include "wavesched/http.h"
#include "wavesched/log.h"

#define HTTP_SUBSYS "http"

/* Size of the one read buffer shared by all connections of a server. */
#define HTTP_READ_CHUNK (64 * 1024)
/* Longest time we read and discard input after a closing response. */
#define HTTP_LINGER_MS 2000
/* Unwritten bytes a stream may queue before ws_http_stream_write refuses. */
#define HTTP_STREAM_QUEUE_MAX (1024 * 1024)
/* Total bytes of headers added with ws_http_add_header to one response. */
#define HTTP_RESP_HEADERS_MAX (32 * 1024)
/* The read-ahead budget is max_pipelined times this many bytes. */
#define HTTP_PIPELINE_BYTES_PER_REQ 1024
#define HTTP_PIPELINE_BYTES_MIN (4 * 1024)
/* http_parser_url stores 16-bit offsets. */
#define HTTP_URL_MAX 65535
/* uv_buf_init() takes an unsigned int length: a response is handed to
 * uv_write in pieces of at most this many bytes.  The tests build with a
 * small value so that the splitting is exercised. */
#ifndef WS_HTTP_WRITE_BUF_MAX
#define WS_HTTP_WRITE_BUF_MAX UINT_MAX
#endif
/* Pieces kept on the stack; more (responses over 8 x 4 GiB) are malloc'd. */
#define HTTP_WRITE_BUFS_INLINE 8
/* Connections (and handles to refuse them) are allocated through this, so
 * the tests can make accept-time allocation fail on demand. */
#ifdef WS_HTTP_TEST_CALLOC
void *WS_HTTP_TEST_CALLOC(size_t n, size_t size);
#define http_accept_calloc WS_HTTP_TEST_CALLOC
#else
#define http_accept_calloc calloc
#endif

static const ws_http_limits http_default_limits = {
	.max_header_bytes = 16 * 1024,
	.max_body_bytes = 8 * 1024 * 1024,
	.header_timeout_ms = 10 * 1000,
	.idle_timeout_ms = 60 * 1000,
	.max_connections = 1024,
	.max_pipelined = 16,
	.body_timeout_ms = 60 * 1000,
};

static atomic_uint_fast64_t http_next_req_id;

/* ---------------------------------------------------------------------- */
/* Small buffers.                                                         */

/* A growable byte buffer with a hard cap; always NUL-terminated once
 * allocated. */
typedef struct hbuf {
	char *p;
	size_t len;
	size_t cap;
} hbuf;

static int hbuf_append(hbuf *b, const char *s, size_t n, size_t max)
{
	if (n > max || b->len > max - n)
		return WS_ETOOBIG;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		if (cap > max + 1)
			cap = max + 1;
		char *p = realloc(b->p, cap);
		if (!p)
			return WS_ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

static int hbuf_printf(hbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int hbuf_printf(hbuf *b, const char *fmt, ...)
{
	char small[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return WS_EINVAL;
	if ((size_t)n < sizeof(small))
		return hbuf_append(b, small, (size_t)n, SIZE_MAX / 2);
	char *big = malloc((size_t)n + 1);
	if (!big)
		return WS_ENOMEM;
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	int rc = hbuf_append(b, big, (size_t)n, SIZE_MAX / 2);
	free(big);
	return rc;
}

static void hbuf_reset(hbuf *b)
{
	b->len = 0;
	if (b->p)
		b->p[0] = '\0';
}

static void hbuf_free(hbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* A copy of s[0..n) in the request's arena, or NULL when memory runs out.
 * Not ws_arena_strdup(): that wants a NUL-terminated string and aborts on
 * exhaustion, and these strings come from the network (header names and
 * values, the path, the query), so running out is answered with a 500. */
static char *arena_strndup(ws_arena *a, const char *s, size_t n)
{
	if (n == SIZE_MAX)
		return NULL;
	char *p = ws_arena_try_alloc(a, n + 1);
	if (!p)
		return NULL;
	if (n)
		memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

/* ---------------------------------------------------------------------- */
/* Types.                                                                  */

typedef struct kv {
	struct kv *next;
	char *name;
	char *value;
} kv;

typedef enum {
	CONN_ACTIVE,   /* reading requests, handling, writing responses */
	CONN_LINGER,   /* last response written, FIN sent, discarding input */
	CONN_CLOSING,  /* uv_close called; freed when both handles are closed */
} conn_state;

static const char *const conn_state_names[] = { "active", "linger", "closing" };

typedef struct ws_http_conn ws_http_conn;

struct ws_http_req {
	ws_http_server *server;      /* NULL once the server is freed */
	ws_http_conn *conn;          /* NULL once orphaned */
	ws_http_req *orphan_prev;
	ws_http_req *orphan_next;
	bool orphaned;

	ws_arena *mem;               /* strings, headers, parameters; see req_free */
	uint64_t id;
	uint64_t start_ns;
	const char *method;          /* static string from http-parser */
	char *path;                  /* decoded */
	char *query;                 /* raw */
	kv *headers;
	kv **headers_tail;
	kv *params;
	kv **params_tail;
	kv *resp_headers;
	kv **resp_tail;
	size_t resp_header_bytes;
	hbuf body;
	const char *route;
	void *data;

	bool head_done;
	bool complete;
	bool keep_alive;
	bool http10;
	bool is_head;
	bool upgrade;
	bool expect_continue;
	bool expect_body;
	bool continue_sent;

	bool answered;
	bool streaming;
	bool stream_chunked;
	bool stream_keep;
	bool stream_ended;
	void (*on_close)(void *arg);
	void *on_close_arg;
	ws_http_conn *notify_conn;   /* will run on_close from its close callback */
	int status;
};

struct ws_http_conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_shutdown_t shutdown_req;
	ws_http_server *s;
	ws_http_conn *prev;
	ws_http_conn *next;
	conn_state state;
	int open_handles;

	http_parser parser;
	ws_http_req *parsing;        /* being parsed, or complete and waiting */
	ws_http_req *cur;            /* with the handler (or streaming) */
	hbuf in;                     /* bytes read and not parsed yet */
	hbuf url;
	hbuf field;
	hbuf value;
	bool in_value;
	size_t head_bytes;
	uint64_t head_start_ms;      /* the header time-out runs from here */
	uint64_t body_start_ms;      /* the body time-out runs from here */
	unsigned messages;           /* messages begun on this connection */
	unsigned served;             /* responses queued on this connection */

	unsigned writes_pending;
	bool writing;                /* a finished response is still being written */
	bool close_after;            /* ... and the connection closes after it */
	bool paused;                 /* the parser holds a complete message */
	bool reading;
	bool no_more;                /* nothing more is parsed (error, upgrade) */
	bool pumping;
	ws_http_req *notify;         /* orphaned stream whose on_close is due */

	int err_status;              /* an error answer waits to be sent */
	const char *err_code;
	char err_msg[192];
};

struct ws_http_server {
	uv_loop_t *loop;
	uv_tcp_t listener;
	uv_timer_t grace;
	ws_http_limits lim;
	size_t read_ahead;
	ws_http_handler_cb handler;
	ws_http_done_cb done;
	void *arg;

	ws_http_conn *conns;
	size_t n_conns;
	ws_http_req *orphans;

	bool listening;
	bool draining;
	bool finishing;
	bool listener_closed;
	/* The throwaway handle refused connections are accepted into (see
	 * server_reject); initialised only while in use. */
	uv_tcp_t spare;
	bool spare_busy;             /* closing; its close callback clears this */
	bool accept_pending;         /* a connection waits for the spare */
	int port;
	void (*shutdown_cb)(void *arg);
	void *shutdown_arg;

	time_t date_sec;
	char date[64];
	/* One read buffer for every connection: libuv calls alloc_cb and then
	 * read_cb for the same stream back to back, and read_cb copies what it
	 * keeps, so the buffer is never used by two reads at once. */
	char rbuf[HTTP_READ_CHUNK];
};

/* ---------------------------------------------------------------------- */
/* Forward declarations.                                                   */

static void conn_pump(ws_http_conn *c);
static void conn_close(ws_http_conn *c, const char *why);
static void conn_update_io(ws_http_conn *c);
static void conn_response_written(ws_http_conn *c);
static void server_maybe_finish(ws_http_server *s);
static void req_finish(ws_http_req *r);

/* ---------------------------------------------------------------------- */
/* Requests.                                                               */

static ws_http_req *req_new(ws_http_conn *c)
{
	ws_http_req *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	/* The shared lifetime allocator (common/arena.c).  ws_arena_new() only
	 * aborts if a few bytes cannot be had; everything sized by the client
	 * goes through ws_arena_try_alloc() and fails softly. */
	r->mem = ws_arena_new();
	r->server = c->s;
	r->conn = c;
	r->id = atomic_fetch_add(&http_next_req_id, 1) + 1;
	r->start_ns = uv_hrtime();
	r->route = "unmatched";
	r->headers_tail = &r->headers;
	r->params_tail = &r->params;
	r->resp_tail = &r->resp_headers;
	return r;
}

static void req_free(ws_http_req *r)
{
	if (!r)
		return;
	ws_arena_free(r->mem);
	hbuf_free(&r->body);
	free(r);
}

static void orphan_add(ws_http_server *s, ws_http_req *r)
{
	r->orphaned = true;
	r->orphan_prev = NULL;
	r->orphan_next = s->orphans;
	if (s->orphans)
		s->orphans->orphan_prev = r;
	s->orphans = r;
}

static void orphan_remove(ws_http_server *s, ws_http_req *r)
{
	if (!r->orphaned)
		return;
	if (r->orphan_prev)
		r->orphan_prev->orphan_next = r->orphan_next;
	else if (s)
		s->orphans = r->orphan_next;
	if (r->orphan_next)
		r->orphan_next->orphan_prev = r->orphan_prev;
	r->orphaned = false;
	r->orphan_prev = r->orphan_next = NULL;
}

/* The request has been answered (or dropped): report it and free it. */
static void req_finish(ws_http_req *r)
{
	if (r->notify_conn) {
		r->notify_conn->notify = NULL;
		r->notify_conn = NULL;
	}
	ws_http_server *s = r->server;
	if (s && s->done)
		s->done(s->arg, r, r->status, uv_hrtime() - r->start_ns);
	orphan_remove(s, r);
	req_free(r);
}

static int hexval(unsigned char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Percent-decodes s[0..n) into the arena; `plus` turns '+' into a space
 * (query strings).  Fails on a truncated or non-hex escape and on %00, which
 * would silently cut the C string short. */
static int pct_decode(ws_arena *a, const char *s, size_t n, bool plus, char **out)
{
	char *o = n < SIZE_MAX ? ws_arena_try_alloc(a, n + 1) : NULL;
	if (!o)
		return WS_ENOMEM;
	size_t j = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '%') {
			if (i + 2 >= n)
				return WS_EINVAL;
			int hi = hexval((unsigned char)s[i + 1]);
			int lo = hexval((unsigned char)s[i + 2]);
			if (hi < 0 || lo < 0)
				return WS_EINVAL;
			int v = hi * 16 + lo;
			if (v == 0)
				return WS_EINVAL;
			o[j++] = (char)v;
			i += 2;
		} else if (plus && ch == '+') {
			o[j++] = ' ';
		} else if (ch == '\0') {
			return WS_EINVAL;
		} else {
			o[j++] = (char)ch;
		}
	}
	o[j] = '\0';
	*out = o;
	return 0;
}

/* Splits the raw query into decoded name/value pairs ("a=1&b&c=x+y"). */
static int req_parse_query(ws_http_req *r)
{
	const char *q = r->query;
	while (*q) {
		const char *amp = strchr(q, '&');
		size_t seg = amp ? (size_t)(amp - q) : strlen(q);
		if (seg > 0) {
			const char *eq = memchr(q, '=', seg);
			size_t klen = eq ? (size_t)(eq - q) : seg;
			const char *v = eq ? eq + 1 : q + seg;
			size_t vlen = eq ? seg - klen - 1 : 0;
			kv *p = ws_arena_try_alloc(r->mem, sizeof(*p));
			if (!p)
				return WS_ENOMEM;
			int rc = pct_decode(r->mem, q, klen, true, &p->name);
			if (rc == 0)
				rc = pct_decode(r->mem, v, vlen, true, &p->value);
			if (rc)
				return rc;
			p->next = NULL;
			*r->params_tail = p;
			r->params_tail = &p->next;
		}
		if (!amp)
			break;
		q = amp + 1;
	}
	return 0;
}

/* Splits the request target into the decoded path and the raw query. */
static int req_parse_target(ws_http_req *r, const char *url, size_t len,
			    const char **why)
{
	if (len == 1 && url[0] == '*') {
		r->path = arena_strndup(r->mem, "*", 1);
		r->query = arena_strndup(r->mem, "", 0);
		return r->path && r->query ? 0 : WS_ENOMEM;
	}
	struct http_parser_url u;
	http_parser_url_init(&u);
	if (http_parser_parse_url(url, len, 0, &u) != 0) {
		*why = "the request target is not a valid URL";
		return WS_EINVAL;
	}
	const char *p = "/";
	size_t plen = 1;
	if (u.field_set & (1u << UF_PATH)) {
		p = url + u.field_data[UF_PATH].off;
		plen = u.field_data[UF_PATH].len;
	}
	int rc = pct_decode(r->mem, p, plen, false, &r->path);
	if (rc) {
		*why = "the path has an invalid percent-escape (or %00)";
		return rc;
	}
	if (u.field_set & (1u << UF_QUERY))
		r->query = arena_strndup(r->mem, url + u.field_data[UF_QUERY].off,
					 u.field_data[UF_QUERY].len);
	else
		r->query = arena_strndup(r->mem, "", 0);
	if (!r->query)
		return WS_ENOMEM;
	rc = req_parse_query(r);
	if (rc)
		*why = "the query string has an invalid percent-escape (or %00)";
	return rc;
}

static const char *kv_find(const kv *list, const char *name, bool nocase)
{
	for (const kv *p = list; p; p = p->next) {
		if (nocase ? strcasecmp(p->name, name) == 0 : strcmp(p->name, name) == 0)
			return p->value;
	}
	return NULL;
}

/* ---------------------------------------------------------------------- */
/* Connections: state, I/O, time-outs.                                     */

static void conn_set_state(ws_http_conn *c, conn_state to, const char *why)
{
	if (c->state == to)
		return;
	ws_debug(HTTP_SUBSYS, "conn=%p %s -> %s (%s)", (void *)c,
		 conn_state_names[c->state], conn_state_names[to], why);
	c->state = to;
}

static bool conn_busy(const ws_http_conn *c)
{
	return c->cur != NULL || c->writing;
}

/* Remembers an error answer; it is sent as soon as every earlier response
 * has been written, then the connection closes.  Only the first counts. */
static void conn_set_error(ws_http_conn *c, int status, const char *code,
			   const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void conn_set_error(ws_http_conn *c, int status, const char *code,
			   const char *fmt, ...)
{
	if (c->err_status)
		return;
	c->err_status = status;
	c->err_code = code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err_msg, sizeof(c->err_msg), fmt, ap);
	va_end(ap);
	c->no_more = true;
}

static void conn_free(ws_http_conn *c)
{
	req_free(c->parsing);
	hbuf_free(&c->in);
	hbuf_free(&c->url);
	hbuf_free(&c->field);
	hbuf_free(&c->value);
	free(c);
}

static void conn_close_cb(uv_handle_t *h)
{
	ws_http_conn *c = h->data;
	if (--c->open_handles > 0)
		return;
	ws_http_server *s = c->s;
	ws_http_req *notify = c->notify;
	c->notify = NULL;
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->n_conns--;
	conn_free(c);
	if (notify) {
		/* A stream's on_close runs here, from the loop, never from inside
		 * a call the handler made; it may end the stream (freeing it). */
		void (*cb)(void *) = notify->on_close;
		notify->on_close = NULL;
		notify->notify_conn = NULL;
		if (cb)
			cb(notify->on_close_arg);
	}
	server_maybe_finish(s);
}

/* Closes at once.  Resources are freed in the close callbacks, so this is
 * safe from inside any callback of this connection (including the parser's).
 * A request still with the handler is orphaned; a stream's on_close is run
 * from the close callback. */
static void conn_close(ws_http_conn *c, const char *why)
{
	if (c->state == CONN_CLOSING)
		return;
	conn_set_state(c, CONN_CLOSING, why);
	uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
	uv_close((uv_handle_t *)&c->timer, conn_close_cb);
	c->reading = false;

	ws_http_req *r = c->cur;
	c->cur = NULL;
	if (r) {
		r->conn = NULL;
		orphan_add(c->s, r);
		if (r->streaming && !r->stream_ended && r->on_close) {
			c->notify = r;
			r->notify_conn = c;
		}
	}
}

typedef struct conn_write_req {
	uv_write_t w;
	ws_http_conn *c;
	char *data;
} conn_write_req;

static void conn_write_cb(uv_write_t *w, int status)
{
	conn_write_req *wr = (conn_write_req *)w;
	ws_http_conn *c = wr->c;
	free(wr->data);
	free(wr);
	c->writes_pending--;
	if (c->state != CONN_ACTIVE)
		return;
	if (status < 0) {
		conn_close(c, uv_strerror(status));
		return;
	}
	if (c->writes_pending == 0 && c->writing)
		conn_response_written(c);
	else
		conn_update_io(c);
}

/* Queues `data` (taken: freed here or by the write callback). */
static int conn_write_take(ws_http_conn *c, char *data, size_t len)
{
	conn_write_req *wr = malloc(sizeof(*wr));
	if (!wr) {
		free(data);
		conn_close(c, "out of memory");
		return WS_ENOMEM;
	}
	wr->c = c;
	wr->data = data;
	/* A body of 4 GiB or more would be cut short by the unsigned length of
	 * uv_buf_init() while Content-Length promises all of it: split it.
	 * uv_write copies the array, so it need not outlive the call. */
	const size_t piece = WS_HTTP_WRITE_BUF_MAX;
	size_t nbufs = len / piece + (len % piece != 0);
	if (nbufs == 0)
		nbufs = 1;   /* an empty write still completes, in conn_write_cb */
	uv_buf_t inline_bufs[HTTP_WRITE_BUFS_INLINE];
	uv_buf_t *bufs = inline_bufs;
	if (nbufs > HTTP_WRITE_BUFS_INLINE) {
		bufs = nbufs <= UINT_MAX ? calloc(nbufs, sizeof(*bufs)) : NULL;
		if (!bufs) {
			free(data);
			free(wr);
			conn_close(c, "out of memory");
			return WS_ENOMEM;
		}
	}
	for (size_t i = 0, off = 0; i < nbufs; i++) {
		size_t n = len - off < piece ? len - off : piece;
		bufs[i] = uv_buf_init(data + off, (unsigned)n);
		off += n;
	}
	int rc = uv_write(&wr->w, (uv_stream_t *)&c->tcp, bufs, (unsigned)nbufs, conn_write_cb);
	if (bufs != inline_bufs)
		free(bufs);
	if (rc) {
		free(data);
		free(wr);
		conn_close(c, uv_strerror(rc));
		return WS_EIO;
	}
	c->writes_pending++;
	return 0;
}

static int conn_write_copy(ws_http_conn *c, const char *data, size_t len)
{
	char *p = malloc(len ? len : 1);
	if (!p) {
		conn_close(c, "out of memory");
		return WS_ENOMEM;
	}
	memcpy(p, data, len);
	return conn_write_take(c, p, len);
}

static void conn_timer_cb(uv_timer_t *t)
{
	ws_http_conn *c = t->data;
	if (c->state == CONN_LINGER) {
		conn_close(c, "linger time over");
		return;
	}
	if (c->state != CONN_ACTIVE)
		return;
	const char *why = "idle time-out";
	if (c->writing)
		why = "write time-out";
	else if (c->parsing && c->parsing->head_done)
		why = "body time-out";
	else if (c->parsing || c->served == 0)
		why = "header time-out";
	ws_debug(HTTP_SUBSYS, "conn=%p %s", (void *)c, why);
	conn_close(c, why);
}

static void conn_shutdown_cb(uv_shutdown_t *req, int status)
{
	ws_http_conn *c = req->data;
	if (c->state != CONN_LINGER)
		return;
	/* While draining, nobody waits for the client's FIN. */
	if (status < 0 || c->s->draining)
		conn_close(c, status < 0 ? uv_strerror(status) : "draining");
}

static void conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)suggested;
	ws_http_conn *c = h->data;
	*buf = uv_buf_init(c->s->rbuf, sizeof(c->s->rbuf));
}

static void conn_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	ws_http_conn *c = st->data;
	if (nread == 0)
		return;
	if (nread < 0) {
		/* EOF or error: the client is gone (a half-closed client is
		 * treated as gone too, like most servers do). */
		conn_close(c, nread == UV_EOF ? "client closed" : uv_strerror((int)nread));
		return;
	}
	if (c->state != CONN_ACTIVE || c->no_more)
		return;   /* lingering, or past an error: discard */
	int rc = hbuf_append(&c->in, buf->base, (size_t)nread,
			     c->s->read_ahead + HTTP_READ_CHUNK);
	if (rc) {
		conn_close(c, "input buffer full");
		return;
	}
	conn_pump(c);
}

static void conn_read_start(ws_http_conn *c)
{
	if (c->reading)
		return;
	int rc = uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb, conn_read_cb);
	if (rc) {
		conn_close(c, uv_strerror(rc));
		return;
	}
	c->reading = true;
}

static void conn_read_stop(ws_http_conn *c)
{
	if (!c->reading)
		return;
	uv_read_stop((uv_stream_t *)&c->tcp);
	c->reading = false;
}

/* a + b, or UINT64_MAX rather than wrapping (a time-out limit may be huge). */
static uint64_t sat_add(uint64_t a, uint64_t b)
{
	return b > UINT64_MAX - a ? UINT64_MAX : a + b;
}

/* Starts or stops reading and (re)arms the one timer for the current
 * phase.  While the handler holds a request (or streams) no timer runs:
 * the handler's own deadlines apply. */
static void conn_update_io(ws_http_conn *c)
{
	if (c->state != CONN_ACTIVE)
		return;
	const ws_http_limits *lim = &c->s->lim;
	bool want_read = !c->no_more && !c->err_status && c->in.len < c->s->read_ahead;
	if (want_read)
		conn_read_start(c);
	else
		conn_read_stop(c);
	if (c->state != CONN_ACTIVE)
		return;

	uint64_t now = uv_now(c->s->loop);
	uint64_t ms;
	if (c->cur) {
		uv_timer_stop(&c->timer);
		return;
	} else if (c->writing) {
		ms = lim->idle_timeout_ms;
	} else if ((c->parsing && !c->parsing->head_done) || (!c->parsing && c->served == 0)) {
		uint64_t deadline = sat_add(c->head_start_ms, lim->header_timeout_ms);
		ms = deadline > now ? deadline - now : 0;
	} else if (c->parsing && !c->parsing->complete) {
		/* The body: a deadline from the end of the head that reads do not
		 * move, or a client sending a byte now and then would hold the
		 * connection (and up to max_body_bytes) for ever.  A body that
		 * stops altogether goes after the idle time-out if that is sooner. */
		uint64_t deadline = sat_add(c->body_start_ms, lim->body_timeout_ms);
		ms = deadline > now ? deadline - now : 0;
		if (ms > lim->idle_timeout_ms)
			ms = lim->idle_timeout_ms;
	} else {
		ms = lim->idle_timeout_ms;   /* between requests */
	}
	uv_timer_start(&c->timer, conn_timer_cb, ms, 0);
}

/* The last response is out and the connection closes: send FIN, then read
 * and discard whatever the client still sends, for a short while. */
static void conn_linger(ws_http_conn *c)
{
	conn_set_state(c, CONN_LINGER, "closing response written");
	hbuf_free(&c->in);
	c->no_more = true;
	c->shutdown_req.data = c;
	int rc = uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, conn_shutdown_cb);
	if (rc) {
		conn_close(c, uv_strerror(rc));
		return;
	}
	uint64_t ms = c->s->lim.idle_timeout_ms < HTTP_LINGER_MS ? c->s->lim.idle_timeout_ms
								 : HTTP_LINGER_MS;
	uv_timer_start(&c->timer, conn_timer_cb, ms, 0);
	conn_read_start(c);
}

/* Every byte of the current response is written. */
static void conn_response_written(ws_http_conn *c)
{
	c->writing = false;
	if (c->close_after || c->s->draining) {
		conn_linger(c);
		return;
	}
	/* A request head (or body) that arrived while we were busy gets a
	 * full header (or body) time-out from now: the client may well have
	 * been waiting for this answer, or for its 100 Continue. */
	if (c->parsing && !c->parsing->head_done)
		c->head_start_ms = uv_now(c->s->loop);
	else if (c->parsing && !c->parsing->complete)
		c->body_start_ms = uv_now(c->s->loop);
	if (c->pumping)
		return;   /* the pump on the stack continues */
	conn_pump(c);
}

/* A response for `c` has been fully queued (at least one write is
 * pending, so completion always arrives in conn_write_cb, never inside the
 * handler's call); `keep` says whether the connection stays open after. */
static void conn_end_response(ws_http_conn *c, bool keep)
{
	c->served++;
	c->writing = true;
	if (!keep)
		c->close_after = true;
	conn_update_io(c);
}

static bool conn_keep_alive(const ws_http_conn *c, const ws_http_req *r)
{
	return r->keep_alive && !r->upgrade && !c->close_after && !c->s->draining;
}

/* Sends "100 Continue" for the request being parsed if it asked for it,
 * its body has not arrived, and every earlier response is written (so the
 * interim response cannot overtake them). */
static void conn_maybe_continue(ws_http_conn *c)
{
	ws_http_req *r = c->parsing;
	if (!r || !r->expect_continue || r->continue_sent || !r->head_done || r->complete ||
	    !r->expect_body || conn_busy(c) || c->err_status)
		return;
	r->continue_sent = true;
	static const char msg[] = "HTTP/1.1 100 Continue\r\n\r\n";
	conn_write_copy(c, msg, sizeof(msg) - 1);
}

/* ---------------------------------------------------------------------- */
/* Parser callbacks.                                                       */

static bool conn_head_add(ws_http_conn *c, size_t n)
{
	c->head_bytes += n;
	if (c->head_bytes > c->s->lim.max_header_bytes) {
		conn_set_error(c, 431, "header_too_large",
			       "the request line and headers exceed %zu bytes",
			       c->s->lim.max_header_bytes);
		return false;
	}
	return true;
}

static int conn_flush_header(ws_http_conn *c)
{
	ws_http_req *r = c->parsing;
	c->in_value = false;
	if (!conn_head_add(c, 4))   /* ": " and CRLF */
		return -1;
	if (r->head_done) {         /* a chunked trailer: counted, not kept */
		hbuf_reset(&c->field);
		hbuf_reset(&c->value);
		return 0;
	}
	size_t vlen = c->value.len;
	const char *v = c->value.p ? c->value.p : "";
	while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
		vlen--;
	kv *h = ws_arena_try_alloc(r->mem, sizeof(*h));
	if (h) {
		h->next = NULL;
		h->name = arena_strndup(r->mem, c->field.p ? c->field.p : "", c->field.len);
		h->value = arena_strndup(r->mem, v, vlen);
	}
	if (!h || !h->name || !h->value) {
		conn_set_error(c, 500, "internal", "out of memory");
		return -1;
	}
	*r->headers_tail = h;
	r->headers_tail = &h->next;
	hbuf_reset(&c->field);
	hbuf_reset(&c->value);
	return 0;
}

static int on_message_begin(http_parser *p)
{
	ws_http_conn *c = p->data;
	if (c->state != CONN_ACTIVE)
		return -1;
	ws_http_req *r = req_new(c);
	if (!r) {
		conn_set_error(c, 500, "internal", "out of memory");
		return -1;
	}
	c->parsing = r;
	c->head_bytes = 16;   /* method, spaces, version, CRLFs */
	/* The first request's header time-out runs from the accept. */
	if (c->messages++ > 0)
		c->head_start_ms = uv_now(c->s->loop);
	c->in_value = false;
	hbuf_reset(&c->url);
	hbuf_reset(&c->field);
	hbuf_reset(&c->value);
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	ws_http_conn *c = p->data;
	if (c->state != CONN_ACTIVE || !conn_head_add(c, len))
		return -1;
	if (hbuf_append(&c->url, at, len, c->s->lim.max_header_bytes)) {
		conn_set_error(c, 431, "header_too_large", "the request line is too long");
		return -1;
	}
	return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	ws_http_conn *c = p->data;
	if (c->state != CONN_ACTIVE)
		return -1;
	if (c->in_value && conn_flush_header(c))
		return -1;
	if (!conn_head_add(c, len))
		return -1;
	if (hbuf_append(&c->field, at, len, c->s->lim.max_header_bytes)) {
		conn_set_error(c, 431, "header_too_large", "a header name is too long");
		return -1;
	}
	return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	ws_http_conn *c = p->data;
	if (c->state != CONN_ACTIVE)
		return -1;
	c->in_value = true;
	if (!conn_head_add(c, len))
		return -1;
	if (hbuf_append(&c->value, at, len, c->s->lim.max_header_bytes)) {
		conn_set_error(c, 431, "header_too_large", "a header value is too long");
		return -1;
	}
	return 0;
}

/* Everything about the request that can be judged from its head is judged
 * here, before any of the body is read.  Returning -1 (not 1 or 2, which
 * mean "no body" to http-parser) stops the parser. */
static int on_headers_complete(http_parser *p)
{
	ws_http_conn *c = p->data;
	ws_http_req *r = c->parsing;
	if (c->state != CONN_ACTIVE)
		return -1;
	if (c->in_value && conn_flush_header(c))
		return -1;
	r->head_done = true;
	c->body_start_ms = uv_now(c->s->loop);
	r->method = http_method_str((enum http_method)p->method);
	r->http10 = p->http_major == 0 || (p->http_major == 1 && p->http_minor == 0);
	r->is_head = p->method == HTTP_HEAD;

	if (p->method == HTTP_CONNECT) {
		conn_set_error(c, 400, "bad_request", "CONNECT is not supported");
		return -1;
	}
	if (c->url.len > HTTP_URL_MAX) {
		conn_set_error(c, 414, "uri_too_long", "the request target exceeds %d bytes",
			       HTTP_URL_MAX);
		return -1;
	}
	const char *why = "out of memory";
	int rc = req_parse_target(r, c->url.p ? c->url.p : "", c->url.len, &why);
	if (rc) {
		if (rc == WS_ENOMEM)
			conn_set_error(c, 500, "internal", "%s", why);
		else
			conn_set_error(c, 400, "bad_request", "%s", why);
		return -1;
	}
	size_t max_body = c->s->lim.max_body_bytes;
	if ((p->flags & F_CONTENTLENGTH) && p->content_length > max_body) {
		conn_set_error(c, 413, "payload_too_large",
			       "the request body of %" PRIu64 " bytes exceeds the limit of %zu bytes",
			       (uint64_t)p->content_length, max_body);
		return -1;
	}
	r->expect_body = (p->flags & F_CHUNKED) ||
			 ((p->flags & F_CONTENTLENGTH) && p->content_length > 0);
	const char *expect = kv_find(r->headers, "Expect", true);
	/* An HTTP/1.0 server does not know Expect; RFC 9110 says to ignore
	 * it then. */
	if (expect && !r->http10) {
		if (strcasecmp(expect, "100-continue") != 0) {
			conn_set_error(c, 417, "expectation_failed",
				       "only \"Expect: 100-continue\" is supported");
			return -1;
		}
		r->expect_continue = true;
		conn_maybe_continue(c);
	}
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	ws_http_conn *c = p->data;
	ws_http_req *r = c->parsing;
	if (c->state != CONN_ACTIVE)
		return -1;
	size_t max = c->s->lim.max_body_bytes;
	int rc = hbuf_append(&r->body, at, len, max);
	if (rc == WS_ETOOBIG) {
		conn_set_error(c, 413, "payload_too_large",
			       "the request body exceeds the limit of %zu bytes", max);
		return -1;
	}
	if (rc) {
		conn_set_error(c, 500, "internal", "out of memory");
		return -1;
	}
	return 0;
}

/* A chunked body announces each chunk's size: refuse an oversized one
 * before reading it. */
static int on_chunk_header(http_parser *p)
{
	ws_http_conn *c = p->data;
	ws_http_req *r = c->parsing;
	if (c->state != CONN_ACTIVE)
		return -1;
	size_t max = c->s->lim.max_body_bytes;
	if (p->content_length > (uint64_t)(max - r->body.len)) {
		conn_set_error(c, 413, "payload_too_large",
			       "the request body exceeds the limit of %zu bytes", max);
		return -1;
	}
	return 0;
}

static int on_message_complete(http_parser *p)
{
	ws_http_conn *c = p->data;
	ws_http_req *r = c->parsing;
	if (c->state != CONN_ACTIVE)
		return -1;
	r->complete = true;
	r->keep_alive = http_should_keep_alive(p) != 0;
	r->upgrade = p->upgrade != 0;
	/* Stop here: the next message is parsed only once this one has been
	 * handed over (see conn_pump). */
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings http_settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
	.on_chunk_header = on_chunk_header,
};

/* ---------------------------------------------------------------------- */
/* The pump: parse, dispatch, answer errors, in order.                     */

static void conn_parse(ws_http_conn *c)
{
	size_t n = http_parser_execute(&c->parser, &http_settings, c->in.p, c->in.len);
	enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
	if (c->state != CONN_ACTIVE)
		return;
	if (n > c->in.len)
		n = c->in.len;
	memmove(c->in.p, c->in.p + n, c->in.len - n);
	c->in.len -= n;
	c->in.p[c->in.len] = '\0';
	if (e == HPE_OK)
		return;
	if (e == HPE_PAUSED) {
		c->paused = true;
		if (c->parsing && c->parsing->upgrade) {
			/* The rest is another protocol we do not speak. */
			c->no_more = true;
			hbuf_reset(&c->in);
		}
		return;
	}
	if (e == HPE_HEADER_OVERFLOW)
		conn_set_error(c, 431, "header_too_large", "the request headers are too large");
	else
		conn_set_error(c, 400, "bad_request", "malformed request: %s",
			       http_errno_description(e));
	c->no_more = true;
	hbuf_reset(&c->in);
}

static void conn_dispatch(ws_http_conn *c)
{
	ws_http_req *r = c->parsing;
	c->parsing = NULL;
	c->paused = false;
	http_parser_pause(&c->parser, 0);
	c->cur = r;
	uv_timer_stop(&c->timer);
	ws_http_server *s = c->s;
	if (s->handler)
		s->handler(s->arg, r);
	else
		ws_http_respond_error(r, 404, "not_found", "no handler", NULL);
	/* r may be freed now. */
}

static void conn_send_error(ws_http_conn *c)
{
	ws_http_req *r = c->parsing;
	c->parsing = NULL;
	c->paused = false;
	if (!r)
		r = req_new(c);
	if (!r) {
		conn_close(c, "out of memory");
		return;
	}
	r->keep_alive = false;
	c->close_after = true;
	c->cur = r;
	ws_debug(HTTP_SUBSYS, "conn=%p answering %d %s: %s", (void *)c, c->err_status,
		 c->err_code, c->err_msg);
	ws_http_respond_error(r, c->err_status, c->err_code, c->err_msg, NULL);
}

static void conn_pump(ws_http_conn *c)
{
	if (c->pumping)
		return;
	c->pumping = true;
	while (c->state == CONN_ACTIVE) {
		conn_maybe_continue(c);
		if (c->state != CONN_ACTIVE)
			break;
		if (c->paused) {
			if (conn_busy(c))
				break;
			conn_dispatch(c);
			continue;
		}
		if (c->err_status) {
			if (!conn_busy(c))
				conn_send_error(c);
			break;
		}
		if (c->no_more || c->in.len == 0)
			break;
		conn_parse(c);
	}
	c->pumping = false;
	conn_update_io(c);
}

/* ---------------------------------------------------------------------- */
/* The server.                                                             */

/* Orphans outlive the server: they forget it and leave its list. */
static void server_free(ws_http_server *s)
{
	ws_http_req *r = s->orphans;
	while (r) {
		ws_http_req *next = r->orphan_next;
		r->server = NULL;
		r->orphaned = false;
		r->orphan_prev = r->orphan_next = NULL;
		r = next;
	}
	free(s);
}

static void server_grace_close_cb(uv_handle_t *h)
{
	ws_http_server *s = h->data;
	void (*cb)(void *) = s->shutdown_cb;
	void *arg = s->shutdown_arg;
	if (cb)
		cb(arg);
	server_free(s);
}

static void server_maybe_finish(ws_http_server *s)
{
	if (!s->draining || s->finishing || s->n_conns > 0 || !s->listener_closed ||
	    s->spare_busy)
		return;
	s->finishing = true;
	uv_timer_stop(&s->grace);
	uv_close((uv_handle_t *)&s->grace, server_grace_close_cb);
}

static void server_listener_close_cb(uv_handle_t *h)
{
	ws_http_server *s = h->data;
	s->listener_closed = true;
	server_maybe_finish(s);
}

static void server_accept(ws_http_server *s);
static ws_http_conn *conn_new(ws_http_server *s);

static void server_reject_close_cb(uv_handle_t *h)
{
	free(h);
}

static void server_spare_close_cb(uv_handle_t *h)
{
	ws_http_server *s = h->data;
	s->spare_busy = false;
	if (s->accept_pending) {
		s->accept_pending = false;
		if (!uv_is_closing((uv_handle_t *)&s->listener))
			server_accept(s);
	}
	server_maybe_finish(s);
}

/* Refuses the connection waiting on the listener.  It must still be taken
 * with uv_accept(): libuv stops polling a listener whose accepted
 * connection is left waiting (uv__server_io), and then nothing is ever
 * accepted again.  The throwaway handle is the server's spare when that is
 * free, so refusing needs no memory (it is what happens when memory is
 * short); otherwise one is allocated.  With neither, the connection waits
 * and the spare's close callback, one loop turn later, deals with it. */
static void server_reject(ws_http_server *s, const char *why)
{
	uv_tcp_t *t = s->spare_busy ? http_accept_calloc(1, sizeof(*t)) : &s->spare;
	if (!t) {
		s->accept_pending = true;
		ws_warn(HTTP_SUBSYS, "connection waits to be refused (%s): no memory for a "
			"handle", why);
		return;
	}
	uv_tcp_init(s->loop, t);   /* cannot fail: no socket is created */
	t->data = s;
	if (t == &s->spare)
		s->spare_busy = true;
	if (uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)t) == 0)
		ws_warn(HTTP_SUBSYS, "connection refused: %s (%zu connections open)", why,
			s->n_conns);
	uv_close((uv_handle_t *)t,
		 t == &s->spare ? server_spare_close_cb : server_reject_close_cb);
}

/* Takes the connection waiting on the listener: serves it, or refuses it
 * (see server_reject: every path must uv_accept it). */
static void server_accept(ws_http_server *s)
{
	if (s->draining) {
		server_reject(s, "shutting down");
		return;
	}
	if (s->n_conns >= s->lim.max_connections) {
		server_reject(s, "max_connections reached");
		return;
	}
	ws_http_conn *c = conn_new(s);
	if (!c) {
		server_reject(s, "out of memory");
		return;
	}
	int rc = uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)&c->tcp);
	if (rc) {
		conn_close(c, uv_strerror(rc));
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	conn_update_io(c);
}

/* A connection record on `s`, counted and linked, its handles initialised
 * but not yet connected to a socket. */
static ws_http_conn *conn_new(ws_http_server *s)
{
	ws_http_conn *c = http_accept_calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->s = s;
	c->state = CONN_ACTIVE;
	uv_tcp_init(s->loop, &c->tcp);
	uv_timer_init(s->loop, &c->timer);
	c->tcp.data = c;
	c->timer.data = c;
	c->open_handles = 2;
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	c->head_start_ms = uv_now(s->loop);
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->n_conns++;
	return c;
}

int ws_http_server_adopt(ws_http_server *s, uv_os_sock_t sock)
{
	if (s->draining || s->n_conns >= s->lim.max_connections)
		return WS_EUNAVAIL;
	ws_http_conn *c = conn_new(s);
	if (!c)
		return WS_ENOMEM;
	int rc = uv_tcp_open(&c->tcp, sock);
	if (rc) {
		ws_warn(HTTP_SUBSYS, "cannot adopt socket %d: %s", (int)sock, uv_strerror(rc));
		conn_close(c, uv_strerror(rc));
		return WS_EIO;
	}
	conn_update_io(c);
	return 0;
}

static void server_connection_cb(uv_stream_t *l, int status)
{
	ws_http_server *s = l->data;
	if (status < 0) {
		ws_warn(HTTP_SUBSYS, "accept failed: %s", uv_strerror(status));
		return;
	}
	server_accept(s);
}

ws_http_server *ws_http_server_new(uv_loop_t *loop, const ws_http_limits *limits,
				   ws_http_handler_cb handler, ws_http_done_cb done, void *arg)
{
	if (!loop)
		return NULL;
	ws_http_server *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->loop = loop;
	s->lim = limits ? *limits : http_default_limits;
	/* Zero means "the default", so callers can set only what they need. */
	if (!s->lim.max_header_bytes)
		s->lim.max_header_bytes = http_default_limits.max_header_bytes;
	if (!s->lim.max_body_bytes)
		s->lim.max_body_bytes = http_default_limits.max_body_bytes;
	if (!s->lim.header_timeout_ms)
		s->lim.header_timeout_ms = http_default_limits.header_timeout_ms;
	if (!s->lim.idle_timeout_ms)
		s->lim.idle_timeout_ms = http_default_limits.idle_timeout_ms;
	if (!s->lim.max_connections)
		s->lim.max_connections = http_default_limits.max_connections;
	if (!s->lim.max_pipelined)
		s->lim.max_pipelined = http_default_limits.max_pipelined;
	if (!s->lim.body_timeout_ms)
		s->lim.body_timeout_ms = http_default_limits.body_timeout_ms;
	s->read_ahead = s->lim.max_pipelined * HTTP_PIPELINE_BYTES_PER_REQ;
	if (s->read_ahead < HTTP_PIPELINE_BYTES_MIN)
		s->read_ahead = HTTP_PIPELINE_BYTES_MIN;
	s->handler = handler;
	s->done = done;
	s->arg = arg;
	if (uv_tcp_init(loop, &s->listener) != 0) {
		free(s);
		return NULL;
	}
	uv_timer_init(loop, &s->grace);
	s->listener.data = s;
	s->grace.data = s;
	return s;
}

int ws_http_server_listen(ws_http_server *s, const char *addr, ws_diags *d)
{
	char host[256];
	const char *port_s;
	if (!addr)
		addr = "";
	if (s->listening || s->draining) {
		ws_diag_add(d, NULL, 0, 0, "http: the server is already listening or shutting down");
		return WS_EINVAL;
	}
	if (addr[0] == '[') {
		const char *end = strchr(addr, ']');
		if (!end || end[1] != ':' || (size_t)(end - addr - 1) >= sizeof(host))
			goto bad_addr;
		memcpy(host, addr + 1, (size_t)(end - addr - 1));
		host[end - addr - 1] = '\0';
		port_s = end + 2;
	} else {
		const char *colon = strrchr(addr, ':');
		if (!colon || (size_t)(colon - addr) >= sizeof(host))
			goto bad_addr;
		memcpy(host, addr, (size_t)(colon - addr));
		host[colon - addr] = '\0';
		port_s = colon + 1;
		if (host[0] == '\0')
			strcpy(host, "0.0.0.0");
	}
	if (!*port_s || strlen(port_s) > 5 || strspn(port_s, "0123456789") != strlen(port_s))
		goto bad_addr;
	int port = atoi(port_s);
	if (port > 65535)
		goto bad_addr;

	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
	    uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0) {
		ws_diag_add(d, NULL, 0, 0,
			    "http: listen address \"%s\": \"%s\" is not a numeric IPv4 or IPv6 address",
			    addr, host);
		return WS_EINVAL;
	}
	int rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&ss, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&s->listener, 511, server_connection_cb);
	if (rc) {
		ws_diag_add(d, NULL, 0, 0, "http: cannot listen on %s: %s", addr, uv_strerror(rc));
		return WS_EIO;
	}
	struct sockaddr_storage bound;
	int blen = sizeof(bound);
	rc = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &blen);
	if (rc == 0)
		s->port = bound.ss_family == AF_INET6
				  ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
				  : ntohs(((struct sockaddr_in *)&bound)->sin_port);
	s->listening = true;
	ws_info(HTTP_SUBSYS, "listening on %s (port %d)", addr, s->port);
	return 0;

bad_addr:
	ws_diag_add(d, NULL, 0, 0,
		    "http: listen address \"%s\" is not of the form HOST:PORT or [IPV6]:PORT", addr);
	return WS_EINVAL;
}

int ws_http_server_port(const ws_http_server *s)
{
	return s->listening ? s->port : 0;
}

size_t ws_http_server_connections(const ws_http_server *s)
{
	return s->n_conns;
}

static void server_grace_cb(uv_timer_t *t)
{
	ws_http_server *s = t->data;
	ws_http_conn *c = s->conns;
	while (c) {
		ws_http_conn *next = c->next;   /* conn_close never unlinks */
		conn_close(c, "shutdown grace over");
		c = next;
	}
}

void ws_http_server_shutdown(ws_http_server *s, uint64_t grace_ms, void (*cb)(void *arg),
			     void *arg)
{
	if (s->draining) {
		ws_warn(HTTP_SUBSYS, "ws_http_server_shutdown called twice; ignored");
		return;
	}
	s->draining = true;
	s->shutdown_cb = cb;
	s->shutdown_arg = arg;
	uv_close((uv_handle_t *)&s->listener, server_listener_close_cb);
	ws_http_conn *c = s->conns;
	while (c) {
		ws_http_conn *next = c->next;
		if (c->state == CONN_LINGER)
			conn_close(c, "draining");
		else if (c->state == CONN_ACTIVE && !conn_busy(c))
			conn_close(c, "draining, idle");
		c = next;
	}
	uv_timer_start(&s->grace, server_grace_cb, grace_ms, 0);
}

/* ---------------------------------------------------------------------- */
/* Request accessors.                                                      */

const char *ws_http_req_method(const ws_http_req *r)
{
	return r->method ? r->method : "";
}

const char *ws_http_req_path(const ws_http_req *r)
{
	return r->path ? r->path : "";
}

const char *ws_http_req_query(const ws_http_req *r)
{
	return r->query ? r->query : "";
}

const char *ws_http_req_query_param(ws_http_req *r, const char *name)
{
	return kv_find(r->params, name, false);
}

const char *ws_http_req_header(const ws_http_req *r, const char *name)
{
	return kv_find(r->headers, name, true);
}

const char *ws_http_req_body(const ws_http_req *r, size_t *len)
{
	if (len)
		*len = r->body.len;
	return r->body.p ? r->body.p : "";
}

uint64_t ws_http_req_id(const ws_http_req *r)
{
	return r->id;
}

void ws_http_req_set_route(ws_http_req *r, const char *route_static)
{
	r->route = route_static ? route_static : "unmatched";
}

const char *ws_http_req_route(const ws_http_req *r)
{
	return r->route;
}

void ws_http_req_set_data(ws_http_req *r, void *data)
{
	r->data = data;
}

void *ws_http_req_data(const ws_http_req *r)
{
	return r->data;
}

bool ws_http_req_connected(const ws_http_req *r)
{
	return r->conn != NULL && r->conn->state == CONN_ACTIVE;
}

/* ---------------------------------------------------------------------- */
/* Responses.                                                              */

static bool header_name_ok(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch <= ' ' || ch >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", ch))
			return false;
	}
	return true;
}

static bool header_value_ok(const char *s)
{
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if ((ch < ' ' && ch != '\t') || ch == 0x7f)
			return false;
	}
	return true;
}

void ws_http_add_header(ws_http_req *r, const char *name, const char *value)
{
	static const char *const reserved[] = { "Content-Length", "Transfer-Encoding",
						"Connection", "Date" };
	if (!name || !value || !header_name_ok(name) || !header_value_ok(value)) {
		ws_warn(HTTP_SUBSYS, "req=%" PRIu64 " invalid response header dropped", r->id);
		return;
	}
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
		if (strcasecmp(name, reserved[i]) == 0) {
			ws_warn(HTTP_SUBSYS, "req=%" PRIu64 " header %s is set by the server; dropped",
				r->id, name);
			return;
		}
	}
	size_t nlen = strlen(name), vlen = strlen(value);
	if (r->resp_header_bytes + nlen + vlen + 4 > HTTP_RESP_HEADERS_MAX) {
		ws_warn(HTTP_SUBSYS, "req=%" PRIu64 " response headers exceed %d bytes; %s dropped",
			r->id, HTTP_RESP_HEADERS_MAX, name);
		return;
	}
	kv *h = ws_arena_try_alloc(r->mem, sizeof(*h));
	if (!h)
		return;
	h->next = NULL;
	h->name = arena_strndup(r->mem, name, nlen);
	h->value = arena_strndup(r->mem, value, vlen);
	if (!h->name || !h->value)
		return;
	*r->resp_tail = h;
	r->resp_tail = &h->next;
	r->resp_header_bytes += nlen + vlen + 4;
}

const char *ws_http_status_text(int status)
{
	if (status < 100 || status > 599)
		return "Unknown";
	const char *t = http_status_str((enum http_status)status);
	return (t && t[0] != '<') ? t : "Unknown";
}

/* IMF-fixdate (RFC 9110 section 5.6.7), cached per second; no locale. */
static const char *server_date(ws_http_server *s)
{
	static const char *const wday[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char *const mon[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t now = time(NULL);
	if (now != s->date_sec || !s->date[0]) {
		struct tm tm;
		gmtime_r(&now, &tm);
		snprintf(s->date, sizeof(s->date), "%s, %02d %s %04d %02d:%02d:%02d GMT",
			 wday[tm.tm_wday % 7], tm.tm_mday, mon[tm.tm_mon % 12], tm.tm_year + 1900,
			 tm.tm_hour, tm.tm_min, tm.tm_sec);
		s->date_sec = now;
	}
	return s->date;
}

static int build_head(hbuf *out, ws_http_server *s, const ws_http_req *r, int status,
		      const char *content_type, bool chunked, bool has_len, size_t len, bool keep)
{
	int rc = hbuf_printf(out, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status,
			     ws_http_status_text(status), server_date(s));
	if (!rc && content_type) {
		if (header_value_ok(content_type))
			rc = hbuf_printf(out, "Content-Type: %s\r\n", content_type);
		else
			ws_warn(HTTP_SUBSYS, "req=%" PRIu64 " invalid Content-Type dropped", r->id);
	}
	if (!rc && chunked)
		rc = hbuf_printf(out, "Transfer-Encoding: chunked\r\n");
	else if (!rc && has_len)
		rc = hbuf_printf(out, "Content-Length: %zu\r\n", len);
	if (!rc)
		rc = hbuf_printf(out, "Connection: %s\r\n", keep ? "keep-alive" : "close");
	for (const kv *h = r->resp_headers; h && !rc; h = h->next)
		rc = hbuf_printf(out, "%s: %s\r\n", h->name, h->value);
	if (!rc)
		rc = hbuf_append(out, "\r\n", 2, SIZE_MAX / 2);
	return rc;
}

void ws_http_respond(ws_http_req *r, int status, const char *content_type, const char *body,
		     size_t len)
{
	r->answered = true;
	r->status = status;
	ws_http_conn *c = r->conn;
	if (!body)
		len = 0;
	if (c && c->state == CONN_ACTIVE && c->cur == r) {
		/* r->conn stays set so the done callback can still tell that the
		 * answer went to a live connection. */
		c->cur = NULL;
		bool keep = conn_keep_alive(c, r);
		/* 1xx, 204 and 304 have no body (RFC 9110 section 6.4.1);
		 * a HEAD answer announces the length it does not send. */
		bool no_body = status < 200 || status == 204 || status == 304;
		bool send_body = !no_body && !r->is_head && len > 0;
		hbuf out = { 0 };
		int rc = build_head(&out, c->s, r, status, content_type, false, !no_body, len, keep);
		if (!rc && send_body)
			rc = hbuf_append(&out, body, len, SIZE_MAX / 2);
		if (rc) {
			hbuf_free(&out);
			conn_close(c, "cannot render the response");
		} else if (conn_write_take(c, out.p, out.len) == 0) {
			conn_end_response(c, keep);
		}
	} else if (!c) {
		ws_debug(HTTP_SUBSYS, "req=%" PRIu64 " answer %d dropped: the client has gone",
			 r->id, status);
	}
	req_finish(r);
}

void ws_http_respond_error(ws_http_req *r, int status, const char *code, const char *message,
			   struct json_t *details)
{
	json_t *doc = json_pack("{s:{s:s, s:s, s:o}}", "error", "code", code ? code : "error",
				"message", message ? message : "", "details",
				details ? details : json_array());
	char *body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	json_decref(doc);
	if (!body) {
		static const char fallback[] =
			"{\"error\":{\"code\":\"internal\",\"message\":\"the error could not be "
			"encoded\",\"details\":[]}}";
		ws_http_respond(r, status, "application/json", fallback, sizeof(fallback) - 1);
		return;
	}
	ws_http_respond(r, status, "application/json", body, strlen(body));
	free(body);
}

void ws_http_respond_json(ws_http_req *r, int status, struct json_t *doc)
{
	char *body = doc ? json_dumps(doc, JSON_INDENT(2)) : NULL;
	json_decref(doc);
	if (!body) {
		ws_http_respond_error(r, 500, "internal", "the response could not be encoded", NULL);
		return;
	}
	size_t n = strlen(body);
	char *nl = realloc(body, n + 2);
	if (nl) {
		body = nl;
		body[n++] = '\n';
		body[n] = '\0';
	}
	ws_http_respond(r, status, "application/json", body, n);
	free(body);
}

/* ---------------------------------------------------------------------- */
/* Streaming.                                                              */

int ws_http_stream_begin(ws_http_req *r, int status, const char *content_type,
			 void (*on_close)(void *arg), void *arg)
{
	r->answered = true;
	r->streaming = true;
	r->status = status;
	ws_http_conn *c = r->conn;
	if (!c || c->state != CONN_ACTIVE || c->cur != r)
		return WS_EIO;
	/* HTTP/1.0 has no chunked coding: the body ends when we close. */
	r->stream_chunked = !r->http10;
	r->stream_keep = r->stream_chunked && conn_keep_alive(c, r);
	hbuf out = { 0 };
	int rc = build_head(&out, c->s, r, status, content_type, r->stream_chunked, false, 0,
			    r->stream_keep);
	if (rc) {
		hbuf_free(&out);
		conn_close(c, "cannot render the response");
		return WS_ENOMEM;
	}
	if (conn_write_take(c, out.p, out.len) != 0)
		return WS_EIO;
	r->on_close = on_close;
	r->on_close_arg = arg;
	return 0;
}

int ws_http_stream_write(ws_http_req *r, const char *data, size_t len)
{
	if (!r->streaming || r->stream_ended)
		return WS_EINVAL;
	ws_http_conn *c = r->conn;
	if (!c || c->state != CONN_ACTIVE)
		return WS_EIO;
	if (len == 0 || r->is_head)
		return 0;   /* an empty chunk would end the stream */
	if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > HTTP_STREAM_QUEUE_MAX)
		return WS_ETOOBIG;
	hbuf out = { 0 };
	int rc = 0;
	if (r->stream_chunked)
		rc = hbuf_printf(&out, "%zx\r\n", len);
	if (!rc)
		rc = hbuf_append(&out, data, len, SIZE_MAX / 2);
	if (!rc && r->stream_chunked)
		rc = hbuf_append(&out, "\r\n", 2, SIZE_MAX / 2);
	if (rc) {
		hbuf_free(&out);
		return rc;
	}
	return conn_write_take(c, out.p, out.len) == 0 ? 0 : WS_EIO;
}

void ws_http_stream_end(ws_http_req *r)
{
	if (!r->streaming) {
		/* Misuse; still answer exactly once. */
		ws_http_respond_error(r, 500, "internal", "stream ended before it began", NULL);
		return;
	}
	r->stream_ended = true;
	ws_http_conn *c = r->conn;
	if (c && c->state == CONN_ACTIVE && c->cur == r) {
		c->cur = NULL;
		/* Always one write, if only an empty one, so the end is seen in
		 * the write callback like every other response's. */
		bool last_chunk = r->stream_chunked && !r->is_head;
		if (conn_write_copy(c, "0\r\n\r\n", last_chunk ? 5 : 0) == 0)
			conn_end_response(c, r->stream_keep);
	}
	req_finish(r);
}
