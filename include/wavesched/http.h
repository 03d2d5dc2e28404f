/*
 * http.h - the HTTP/1.1 server: libuv streams + http-parser.
 *
 * One ws_http_server accepts TCP connections on the loop; http-parser (the
 * Debian libhttp-parser) parses; this file owns connections, limits,
 * keep-alive, pipelining (requests answered strictly in order, one at a time
 * per connection), idle and header time-outs, and draining on shutdown.
 *
 * A complete request is handed to the handler, which answers exactly once,
 * now or later (after an asynchronous database call), with ws_http_respond()
 * or the streaming calls.  If the client goes away meanwhile the request
 * stays valid until it is answered; the answer is then dropped.
 *
 * Errors the server answers itself, in the JSON error shape of api.md:
 * malformed request 400, header too large 431, body too large 413,
 * unsupported Transfer-Encoding/Expect 400/417, time-outs (header, body, idle)
 * close the connection.
 */
#ifndef WAVESCHED_HTTP_H
#define WAVESCHED_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <uv.h>
#include "wavesched/diag.h"

typedef struct ws_http_server ws_http_server;
typedef struct ws_http_req ws_http_req;

typedef struct ws_http_limits {
	size_t max_header_bytes;     /* request line + headers; default 16 KiB */
	size_t max_body_bytes;       /* default 8 MiB */
	uint64_t header_timeout_ms;  /* time to receive a full request head; default 10 s */
	uint64_t idle_timeout_ms;    /* keep-alive idle time; default 60 s */
	size_t max_connections;      /* default 1024; beyond it new ones are closed */
	size_t max_pipelined;        /* requests buffered ahead on one connection; default 16 */
	/* Time to receive a whole request body, measured from the end of its
	 * head (or, behind a pipelined request, from when that one's answer has
	 * been written); default 60 s.  An absolute deadline, not reset by
	 * reads, so a client cannot hold a connection by trickling the body.
	 * A stalled body is also closed after idle_timeout_ms if that is shorter. */
	uint64_t body_timeout_ms;
} ws_http_limits;

/* Called for each complete request.  The handler must eventually call
 * ws_http_respond() (or ws_http_stream_begin ... ws_http_stream_end) exactly
 * once; after that the request must not be touched again. */
typedef void (*ws_http_handler_cb)(void *arg, ws_http_req *req);
/* Called after each response is queued (for metrics and access logs). */
typedef void (*ws_http_done_cb)(void *arg, const ws_http_req *req, int status,
				uint64_t elapsed_ns);

WS_API ws_http_server *ws_http_server_new(uv_loop_t *loop, const ws_http_limits *limits,
					  ws_http_handler_cb handler, ws_http_done_cb done,
					  void *arg);
/* Binds "host:port" ("127.0.0.1:8480", "[::1]:0"); port 0 picks one. */
WS_API int ws_http_server_listen(ws_http_server *s, const char *addr, ws_diags *d);
WS_API int ws_http_server_port(const ws_http_server *s);
/* Serves an already connected stream socket as if it had been accepted
 * (the fuzz targets feed requests through a socketpair this way).  0: the
 * server owns `sock` from then on; otherwise the caller still does:
 * WS_EUNAVAIL while draining or at max_connections, WS_ENOMEM, WS_EIO. */
WS_API int ws_http_server_adopt(ws_http_server *s, uv_os_sock_t sock);
/* Stops accepting, closes idle connections, lets in-flight requests finish
 * (at most `grace_ms`), then closes everything and calls `cb` once; the
 * server is freed after `cb` returns. */
WS_API void ws_http_server_shutdown(ws_http_server *s, uint64_t grace_ms,
				    void (*cb)(void *arg), void *arg);
WS_API size_t ws_http_server_connections(const ws_http_server *s);

/* Request accessors; strings are NUL-terminated and live as long as req. */
WS_API const char *ws_http_req_method(const ws_http_req *r);  /* "GET" */
WS_API const char *ws_http_req_path(const ws_http_req *r);    /* decoded path, no query */
WS_API const char *ws_http_req_query(const ws_http_req *r);   /* raw query or "" */
/* The decoded value of query parameter `name`, or NULL. */
WS_API const char *ws_http_req_query_param(ws_http_req *r, const char *name);
/* Case-insensitive header lookup; NULL when absent. */
WS_API const char *ws_http_req_header(const ws_http_req *r, const char *name);
WS_API const char *ws_http_req_body(const ws_http_req *r, size_t *len); /* NUL-terminated */
WS_API uint64_t ws_http_req_id(const ws_http_req *r);  /* unique per process */
/* The route label for metrics/logs ("/v1/tenants/{slug}"); default "unmatched". */
WS_API void ws_http_req_set_route(ws_http_req *r, const char *route_static);
WS_API const char *ws_http_req_route(const ws_http_req *r);
/* Per-request user data, freed by nobody but the caller. */
WS_API void ws_http_req_set_data(ws_http_req *r, void *data);
WS_API void *ws_http_req_data(const ws_http_req *r);
/* False once the client has gone away. */
WS_API bool ws_http_req_connected(const ws_http_req *r);

/* Adds a response header before responding (copied). */
WS_API void ws_http_add_header(ws_http_req *r, const char *name, const char *value);
/* Answers; the body is copied.  Adds Content-Length, Date, Connection. */
WS_API void ws_http_respond(ws_http_req *r, int status, const char *content_type,
			    const char *body, size_t len);
/* Answers with the api.md error shape:
 * {"error": {"code": code, "message": message, "details": details}}.
 * `details` may be NULL; its reference is stolen. */
struct json_t;
WS_API void ws_http_respond_error(ws_http_req *r, int status, const char *code,
				  const char *message, struct json_t *details);
/* Answers with a JSON document (reference stolen), pretty-printed. */
WS_API void ws_http_respond_json(ws_http_req *r, int status, struct json_t *doc);

/* Streaming (Server-Sent Events): chunked transfer encoding.  After
 * stream_begin the connection is dedicated to this response; `on_close`
 * fires once if the client goes away first (then call stream_end). */
WS_API int ws_http_stream_begin(ws_http_req *r, int status, const char *content_type,
				void (*on_close)(void *arg), void *arg);
WS_API int ws_http_stream_write(ws_http_req *r, const char *data, size_t len);
WS_API void ws_http_stream_end(ws_http_req *r);

WS_API const char *ws_http_status_text(int status);

#endif
