/*
 * pg.h - PostgreSQL on the libuv loop: a small pool of non-blocking libpq
 * connections.
 *
 * Nothing here blocks: connections are made with PQconnectStartParams and
 * PQconnectPoll driven by uv_poll; queries are sent with PQsendQueryParams
 * (parameterised only: there is no call that takes SQL text with values in
 * it), flushed with PQflush and read back when the socket is readable.  Each
 * query has a time-out (a uv_timer; on expiry the query is cancelled with
 * PQcancel on the thread pool -- never on the loop -- and the callback gets
 * WS_ETIMEDOUT).  A broken connection is reconnected with exponential
 * back-off.  While some connection may still come back, queued work waits
 * (bounded queue) and fails with WS_EUNAVAIL only when its time-out passes;
 * once every connection has failed its last attempt the database is known
 * down: waiting work fails at once and new work is refused with WS_EUNAVAIL
 * until a connection is up again (callers answer "unavailable" promptly
 * instead of hanging).
 *
 * Callbacks fire exactly once.  The PGresult passed to a callback belongs to
 * the pool and is cleared when the callback returns.
 */
#ifndef WAVESCHED_PG_H
#define WAVESCHED_PG_H

#include <stdbool.h>
#include <stdint.h>
#include <libpq-fe.h>
#include <uv.h>
#include "wavesched/diag.h"

typedef struct ws_pg_pool ws_pg_pool;
typedef struct ws_pg_conn ws_pg_conn;

typedef struct ws_pg_opts {
	const char *conninfo;         /* libpq conninfo or URI; copied */
	int size;                     /* connections; default 4 */
	uint64_t query_timeout_ms;    /* default 30 s */
	uint64_t connect_timeout_ms;  /* default 10 s */
	uint64_t backoff_min_ms;      /* default 100 ms */
	uint64_t backoff_max_ms;      /* default 5 s */
	size_t max_queue;             /* waiting queries; default 1024 */
} ws_pg_opts;

typedef struct ws_pg_err {
	int code;              /* WS_EDB, WS_ETIMEDOUT, WS_EUNAVAIL, ... */
	const char *sqlstate;  /* five characters, or "" */
	const char *message;   /* primary message from the server or libpq */
	const char *detail;    /* may be "" */
} ws_pg_err;

/* res is non-NULL iff err is NULL (PGRES_COMMAND_OK or PGRES_TUPLES_OK). */
typedef void (*ws_pg_cb)(void *arg, const PGresult *res, const ws_pg_err *err);

WS_API ws_pg_pool *ws_pg_pool_new(uv_loop_t *loop, const ws_pg_opts *opts);
/* Starts connecting every connection; returns at once. */
WS_API void ws_pg_pool_start(ws_pg_pool *p);
/* Fails queued work with WS_EUNAVAIL, waits for queries in flight to end (or
 * cancels them), closes every handle, calls cb once, then frees the pool. */
WS_API void ws_pg_pool_close(ws_pg_pool *p, void (*cb)(void *arg), void *arg);

/* A single statement on any free connection (queued when none is free).
 * Returns 0, or a negative code when it cannot even be queued (then cb is
 * never called).  params are copied. */
WS_API int ws_pg_query(ws_pg_pool *p, const char *sql, int nparams,
		       const char *const *params, ws_pg_cb cb, void *arg);

/* Exclusive use of one connection, for transactions.  cb gets the connection
 * or an error.  Every acquired connection must be released exactly once; a
 * connection released inside a transaction (or after an error) is rolled
 * back before anybody else gets it. */
typedef void (*ws_pg_acquire_cb)(void *arg, ws_pg_conn *c, const ws_pg_err *err);
WS_API int ws_pg_acquire(ws_pg_pool *p, ws_pg_acquire_cb cb, void *arg);
WS_API int ws_pg_conn_query(ws_pg_conn *c, const char *sql, int nparams,
			    const char *const *params, ws_pg_cb cb, void *arg);
WS_API void ws_pg_release(ws_pg_conn *c);

/* LISTEN on a dedicated connection of the pool (re-issued after every
 * reconnect).  cb gets the channel and payload of each notification. */
typedef void (*ws_pg_notify_cb)(void *arg, const char *channel, const char *payload);
WS_API int ws_pg_listen(ws_pg_pool *p, const char *channel, ws_pg_notify_cb cb, void *arg);

typedef struct ws_pg_stats {
	int size, connected, busy, waiting;   /* waiting = queued queries + acquires */
	uint64_t queries, errors, timeouts, reconnects;
} ws_pg_stats;
WS_API void ws_pg_pool_stats(const ws_pg_pool *p, ws_pg_stats *out);
/* True when at least one connection is up. */
WS_API bool ws_pg_pool_ready(const ws_pg_pool *p);

#endif
