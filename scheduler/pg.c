/*
 * pg.c - PostgreSQL on the libuv loop: a pool of non-blocking libpq
 * connections (the contract is in include/wavesched/pg.h).
 *
 * How it hangs together.  The pool owns `size` connections plus one more
 * (index `size`) that only LISTENs.  Work arrives as requests -- a statement,
 * or a wish for a connection of one's own (acquire) -- and waits in the
 * pool's FIFO until a connection is free.  An acquired connection has a FIFO
 * of its own for its holder's statements; the pool uses the same FIFO for
 * its internal ROLLBACK and LISTEN statements.  One statement is on the wire
 * per connection at a time.
 *
 * Time-outs.  Every request carries a uv_timer started when it is submitted,
 * so its time-out covers waiting and running.  A request that times out
 * while waiting fails at once (WS_EUNAVAIL when no connection is up,
 * WS_ETIMEDOUT when they all were busy).  One that is running is cancelled
 * with PQcancel on the thread pool (PQcancel blocks, so never on the loop);
 * it fails with WS_ETIMEDOUT when the server answers the cancel (SQLSTATE
 * 57014), or when the server does not answer within PG_CANCEL_GRACE_MS, and
 * then the connection is reset.  Until the cancel request has been
 * delivered the connection takes no new statement: a statement that ends
 * just before its cancel lands must not let that cancel hit the next one.
 *
 * Broken connections are reconnected with exponential back-off and jitter.
 * A statement in flight on a connection that breaks fails with WS_EUNAVAIL:
 * it may or may not have run, and re-running a non-idempotent statement
 * behind the caller's back would be wrong.  The holder of an acquired
 * connection that breaks gets WS_EUNAVAIL from then on (its transaction is
 * gone) until it releases the connection.
 *
 * While the database is down, statements and acquires wait in the bounded
 * queue (max_queue; ws_pg_query refuses with WS_EUNAVAIL beyond it) and run
 * as soon as a connection is back; those whose time-out passes first fail
 * with WS_EUNAVAIL and the last connection error in the message.
 *
 * Closing fails everything still queued (WS_EUNAVAIL), lets statements on
 * the wire finish (bounded by their time-out) and waits for holders to
 * release their connections -- they may still run statements, to COMMIT --
 * then closes every handle, calls the close callback and frees the pool.
 *
 * Re-entrancy.  Public functions never call a user callback before they
 * return: they queue work and "kick" an idle handle, and the dispatcher runs
 * from there.  User callbacks run only from our uv callbacks, at the end of
 * which the dispatcher runs again.  Memory is freed only in close callbacks.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>
#include <uv.h>
#include "wavesched/log.h"
#include "wavesched/pg.h"

#define PG_DEFAULT_SIZE 4
#define PG_MAX_SIZE 256
#define PG_DEFAULT_QUERY_TIMEOUT_MS 30000
#define PG_DEFAULT_CONNECT_TIMEOUT_MS 10000
#define PG_DEFAULT_BACKOFF_MIN_MS 100
#define PG_DEFAULT_BACKOFF_MAX_MS 5000
#define PG_DEFAULT_MAX_QUEUE 1024
/* How long a server may take to acknowledge a cancel before we give up on
 * the connection. */
#define PG_CANCEL_GRACE_MS 2000
#define PG_MAX_PARAMS 65535                 /* the protocol's limit */
#define PG_MAX_REQUEST_BYTES (64u << 20)    /* SQL + parameters of one request */
#define PG_MAX_LISTENERS 256
#define PG_MAX_CHANNEL 63                   /* NAMEDATALEN - 1 */
#define PG_ERRBUF 512

/* ---- requests ---------------------------------------------------------- */

typedef enum { REQ_QUERY, REQ_ACQUIRE } req_kind;

typedef enum {
	REQ_POOL_QUEUED,   /* in pool->queue, waiting for any connection */
	REQ_CONN_QUEUED,   /* in conn->queue, waiting for that connection */
	REQ_SENT,          /* conn->cur: on the wire */
	REQ_DONE,          /* callback called (or dropped); timer closing */
} req_state;

typedef struct pg_req pg_req;
struct pg_req {
	pg_req *prev, *next;
	ws_pg_pool *pool;
	ws_pg_conn *conn;          /* where it is queued or sent */
	req_kind kind;
	req_state state;
	bool internal;             /* the pool's own (ROLLBACK, LISTEN) */
	bool timed_out;            /* cancel requested */
	ws_pg_cb cb;
	ws_pg_acquire_cb acquire_cb;
	void *arg;
	uv_timer_t timer;          /* the request's time-out; freed in its close_cb */
	int nparams;
	const char *const *params; /* points into the same allocation */
	const char *sql;
};

typedef struct req_list {
	pg_req *head, *tail;
	size_t len;
} req_list;

/* ---- connections and the pool ------------------------------------------ */

typedef enum { CONN_DOWN, CONN_CONNECTING, CONN_READY, CONN_CLOSED } conn_state;
static const char *const conn_state_names[] = { "down", "connecting", "ready", "closed" };

/* The connection timer serves one purpose at a time. */
typedef enum { CT_NONE, CT_CONNECT, CT_BACKOFF, CT_CANCEL } conn_timer_role;

typedef struct pg_cancel_job pg_cancel_job;

/* The poll handle on PQsocket().  Allocated on its own because libpq may
 * change the socket while connecting, and a uv_poll_t is bound to one fd. */
typedef struct pg_watch {
	uv_poll_t poll;
	ws_pg_pool *pool;
	ws_pg_conn *conn;          /* NULL once detached (closing) */
	int fd;
} pg_watch;

struct ws_pg_conn {
	ws_pg_pool *pool;
	int id;                    /* 0..size-1; `size` is the LISTEN connection */
	bool listen;
	conn_state state;
	PGconn *pg;
	pg_watch *watch;
	uv_timer_t timer;          /* connect time-out, back-off, cancel grace */
	conn_timer_role timer_role;
	uint64_t backoff_ms;       /* next back-off base; 0 = backoff_min */
	unsigned fail_streak;      /* failed attempts since the last success */
	bool ever_connected;
	bool acquired;             /* a user holds it */
	bool lost;                 /* the holder's session is gone */
	bool needs_reset;          /* an internal ROLLBACK failed */
	/* A cancel request for this session still on the thread pool: nothing
	 * new is sent until it is done, or the cancel could hit the next
	 * statement instead of the one that timed out. */
	pg_cancel_job *cancel_job;
	pg_req *cur;               /* on the wire */
	PGresult *res;             /* result collected for cur so far */
	req_list queue;
};

typedef struct pg_listener {
	char *channel;
	ws_pg_notify_cb cb;
	void *arg;
} pg_listener;

struct ws_pg_pool {
	uv_loop_t *loop;
	char *conninfo;
	int size;
	uint64_t query_timeout_ms, connect_timeout_ms, backoff_min_ms, backoff_max_ms;
	size_t max_queue;
	ws_pg_conn *conns;         /* size + 1 */
	req_list queue;
	uv_idle_t kick;
	pg_listener *listeners;
	size_t nlisteners;
	bool started, closing, kick_closed;
	int acquired;              /* connections held by users */
	unsigned handles;          /* open uv handles (timers, polls, kick) */
	unsigned works;            /* PQcancel jobs on the thread pool */
	void (*close_cb)(void *arg);
	void *close_arg;
	uint64_t rng;
	ws_pg_stats stats;
	char last_error[PG_ERRBUF];
	/* Known down: every connection failed its last attempt.  Waiting
	 * work is failed at once then, and new work refused, so callers get
	 * a prompt "unavailable" instead of hanging for a whole time-out. */
	bool down;
};

/* The error handed to a callback, with room for the text it points to. */
typedef struct pg_errbuf {
	ws_pg_err err;
	char sqlstate[6];
	char message[PG_ERRBUF];
	char detail[PG_ERRBUF];
} pg_errbuf;

struct pg_cancel_job {
	uv_work_t work;
	ws_pg_pool *pool;
	ws_pg_conn *conn;          /* NULL once the session it targets is gone */
	int conn_id;
	PGcancel *cancel;
	int ok;
	char errbuf[256];
};

static void pool_dispatch(ws_pg_pool *p);
static bool pool_any_ready(const ws_pg_pool *p);
static bool pool_all_failed(const ws_pg_pool *p);
static void pool_kick(ws_pg_pool *p);
static void pool_maybe_finish(ws_pg_pool *p);
static void conn_connect(ws_pg_conn *c);
static void conn_lost(ws_pg_conn *c, const char *why);
static void conn_send(ws_pg_conn *c, pg_req *q);
static void watch_cb(uv_poll_t *h, int status, int events);
static void req_timer_cb(uv_timer_t *t);

/* ---- small helpers ----------------------------------------------------- */

static void list_push(req_list *l, pg_req *q)
{
	q->next = NULL;
	q->prev = l->tail;
	if (l->tail)
		l->tail->next = q;
	else
		l->head = q;
	l->tail = q;
	l->len++;
}

static void list_remove(req_list *l, pg_req *q)
{
	if (q->prev)
		q->prev->next = q->next;
	else
		l->head = q->next;
	if (q->next)
		q->next->prev = q->prev;
	else
		l->tail = q->prev;
	q->prev = q->next = NULL;
	l->len--;
}

static pg_req *list_pop(req_list *l)
{
	pg_req *q = l->head;
	if (q)
		list_remove(l, q);
	return q;
}

static uint64_t pool_rand(ws_pg_pool *p)
{
	/* xorshift64: jitter needs spread, not secrecy. */
	uint64_t x = p->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return p->rng = x;
}

/* Copies the first line of `text` into `msg` and the rest, with the
 * indentation libpq puts there, into `detail` (when given). */
static void split_lines(const char *text, char *msg, size_t msgsz, char *detail, size_t detailsz)
{
	/* libpq's own text repeats the server's severity ("FATAL:  ..."): the
	 * code says how bad it is, so the prefix goes. */
	static const char *const sev[] = { "FATAL:  ", "ERROR:  ", "PANIC:  " };
	for (size_t i = 0; i < sizeof(sev) / sizeof(sev[0]); i++)
		if (strncmp(text, sev[i], strlen(sev[i])) == 0)
			text += strlen(sev[i]);
	size_t n = strcspn(text, "\n");
	snprintf(msg, msgsz, "%.*s", (int)n, text);
	if (!detail)
		return;
	const char *rest = text + n;
	rest += strspn(rest, "\n\t ");
	snprintf(detail, detailsz, "%s", rest);
	size_t len = strlen(detail);
	while (len > 0 && (detail[len - 1] == '\n' || detail[len - 1] == ' ' || detail[len - 1] == '\t'))
		detail[--len] = '\0';
}

static void err_set(pg_errbuf *eb, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void err_set(pg_errbuf *eb, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(eb->message, sizeof(eb->message), fmt, ap);
	va_end(ap);
	eb->sqlstate[0] = '\0';
	eb->detail[0] = '\0';
	eb->err = (ws_pg_err){ .code = code, .sqlstate = eb->sqlstate, .message = eb->message,
			       .detail = eb->detail };
}

/* What a caller can do about a server error: retry later (the server or the
 * link is going away), give up on time, fix credentials, or look at the
 * SQLSTATE (everything else). */
static int pg_code(const char *state, bool conn_bad)
{
	if (strcmp(state, "57014") == 0)        /* query_canceled: our time-out or statement_timeout */
		return WS_ETIMEDOUT;
	if (conn_bad)
		return WS_EUNAVAIL;
	if (strncmp(state, "08", 2) == 0 ||     /* connection exception */
	    strncmp(state, "57P", 3) == 0 ||    /* admin shutdown, crash shutdown, cannot connect now */
	    strncmp(state, "53", 2) == 0)       /* insufficient resources (too many connections) */
		return WS_EUNAVAIL;
	if (strncmp(state, "28", 2) == 0)       /* invalid authorization */
		return WS_EAUTH;
	return WS_EDB;
}

/*
 * The one place where libpq's error reporting becomes a ws_pg_err.  With a
 * result: the server's fields (SQLSTATE, primary message, detail).  Without
 * one, or for errors libpq made up itself: the error text, whose first line
 * is the message and the rest the detail ("server closed the connection
 * unexpectedly\n\tThis probably means...").
 */
static void err_from_libpq(pg_errbuf *eb, const PGresult *res, const PGconn *pg)
{
	const char *state = NULL, *primary = NULL, *detail = NULL;
	if (res) {
		state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
		detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
	}
	snprintf(eb->sqlstate, sizeof(eb->sqlstate), "%s", state ? state : "");
	eb->detail[0] = '\0';
	if (primary && *primary) {
		snprintf(eb->message, sizeof(eb->message), "%s", primary);
		snprintf(eb->detail, sizeof(eb->detail), "%s", detail ? detail : "");
	} else {
		const char *text = res ? PQresultErrorMessage(res) : "";
		if (!*text && pg)
			text = PQerrorMessage(pg);
		if (!*text)
			text = "unknown libpq error";
		split_lines(text, eb->message, sizeof(eb->message), eb->detail, sizeof(eb->detail));
	}
	bool bad = !pg || PQstatus(pg) == CONNECTION_BAD;
	eb->err = (ws_pg_err){ .code = pg_code(eb->sqlstate, bad), .sqlstate = eb->sqlstate,
			       .message = eb->message, .detail = eb->detail };
}

/* ---- request lifetime -------------------------------------------------- */

static void handle_closed(ws_pg_pool *p)
{
	p->handles--;
	pool_maybe_finish(p);
}

static void req_close_cb(uv_handle_t *h)
{
	pg_req *q = h->data;
	ws_pg_pool *p = q->pool;
	free(q);
	handle_closed(p);
}

/* Builds a request; SQL and parameters are copied into one allocation.
 * Returns 0 or a WS_E* code. */
static int req_new(ws_pg_pool *p, req_kind kind, const char *sql, int nparams,
		   const char *const *params, pg_req **out)
{
	if (kind == REQ_QUERY) {
		if (!sql || nparams < 0 || (nparams > 0 && !params))
			return WS_EINVAL;
		if (nparams > PG_MAX_PARAMS)
			return WS_ETOOBIG;
	}
	size_t bytes = sizeof(pg_req) + (size_t)nparams * sizeof(char *);
	size_t sqllen = sql ? strlen(sql) + 1 : 0;
	bytes += sqllen;
	for (int i = 0; i < nparams; i++) {
		if (params[i])
			bytes += strlen(params[i]) + 1;
		if (bytes > PG_MAX_REQUEST_BYTES)
			return WS_ETOOBIG;
	}
	if (bytes > PG_MAX_REQUEST_BYTES)
		return WS_ETOOBIG;
	pg_req *q = calloc(1, bytes);
	if (!q)
		return WS_ENOMEM;
	char **pv = (char **)(q + 1);
	char *s = (char *)(pv + nparams);
	if (sql) {
		memcpy(s, sql, sqllen);
		q->sql = s;
		s += sqllen;
	}
	for (int i = 0; i < nparams; i++) {
		if (!params[i])
			continue;   /* SQL NULL */
		size_t n = strlen(params[i]) + 1;
		memcpy(s, params[i], n);
		pv[i] = s;
		s += n;
	}
	q->params = (const char *const *)pv;
	q->nparams = nparams;
	q->pool = p;
	q->kind = kind;
	uv_timer_init(p->loop, &q->timer);
	q->timer.data = q;
	p->handles++;
	*out = q;
	return 0;
}

/* Puts a new request in line -- on connection `c` when given, else in the
 * pool's queue -- and starts its time-out, which covers waiting and
 * running. */
static void req_enqueue(pg_req *q, ws_pg_conn *c)
{
	ws_pg_pool *p = q->pool;
	q->conn = c;
	q->state = c ? REQ_CONN_QUEUED : REQ_POOL_QUEUED;
	list_push(c ? &c->queue : &p->queue, q);
	uv_update_time(p->loop);   /* from now, not from the loop's last turn */
	uv_timer_start(&q->timer, req_timer_cb, p->query_timeout_ms, 0);
}

/*
 * Ends a request: the only place a request's callback runs, so it runs
 * exactly once.  The timer is closed first; the request is freed in its
 * close callback, after the user callback has returned.
 */
static void req_complete(pg_req *q, ws_pg_conn *granted, const PGresult *res, const ws_pg_err *err)
{
	q->state = REQ_DONE;
	uv_timer_stop(&q->timer);
	uv_close((uv_handle_t *)&q->timer, req_close_cb);
	if (q->kind == REQ_ACQUIRE)
		q->acquire_cb(q->arg, granted, err);
	else if (q->cb)
		q->cb(q->arg, res, err);
}

static void req_fail(pg_req *q, const pg_errbuf *eb)
{
	if (!q->internal) {
		q->pool->stats.errors++;
		if (eb->err.code == WS_ETIMEDOUT)
			q->pool->stats.timeouts++;
	}
	req_complete(q, NULL, NULL, &eb->err);
}

/* Internal requests may be dropped without their callback. */
static void req_drop(pg_req *q)
{
	q->cb = NULL;
	req_complete(q, NULL, NULL, NULL);
}

/* ---- the poll handle --------------------------------------------------- */

static void watch_close_cb(uv_handle_t *h)
{
	pg_watch *w = h->data;
	ws_pg_pool *p = w->pool;
	free(w);
	handle_closed(p);
}

static void watch_detach(ws_pg_conn *c)
{
	if (!c->watch)
		return;
	c->watch->conn = NULL;
	uv_close((uv_handle_t *)&c->watch->poll, watch_close_cb);
	c->watch = NULL;
}

/* Watches the connection's socket for `events`.  The socket is read again
 * every time: libpq may replace it while connecting (another host or
 * address, an sslmode=prefer retry). */
static int conn_watch(ws_pg_conn *c, int events)
{
	int fd = PQsocket(c->pg);
	if (fd < 0)
		return UV_EBADF;
	if (c->watch && c->watch->fd != fd)
		watch_detach(c);
	if (!c->watch) {
		pg_watch *w = calloc(1, sizeof(*w));
		if (!w)
			return UV_ENOMEM;
		int rc = uv_poll_init(c->pool->loop, &w->poll, fd);
		if (rc) {
			free(w);
			return rc;
		}
		w->poll.data = w;
		w->pool = c->pool;
		w->conn = c;
		w->fd = fd;
		c->pool->handles++;
		c->watch = w;
	}
	return uv_poll_start(&c->watch->poll, events, watch_cb);
}

/* ---- connection state -------------------------------------------------- */

/* Every state change goes through here; an impossible one is a bug. */
static void conn_set_state(ws_pg_conn *c, conn_state s)
{
	static const bool allowed[4][4] = {
		/* to:               DOWN   CONNECTING READY  CLOSED */
		[CONN_DOWN] =       { false, true,      false, true },
		[CONN_CONNECTING] = { true,  false,     true,  true },
		[CONN_READY] =      { true,  false,     false, true },
		[CONN_CLOSED] =     { false, false,     false, false },
	};
	if (!allowed[c->state][s]) {
		ws_error("pg", "connection %d: impossible transition %s -> %s", c->id,
			 conn_state_names[c->state], conn_state_names[s]);
		abort();
	}
	ws_debug("pg", "connection %d: %s -> %s", c->id, conn_state_names[c->state], conn_state_names[s]);
	c->state = s;
}

static void conn_timer_cb(uv_timer_t *t);

static void conn_timer_start(ws_pg_conn *c, conn_timer_role role, uint64_t ms)
{
	c->timer_role = role;
	uv_timer_start(&c->timer, conn_timer_cb, ms, 0);
}

static void conn_timer_stop(ws_pg_conn *c)
{
	c->timer_role = CT_NONE;
	uv_timer_stop(&c->timer);
}

/* Exponential back-off with "equal jitter": half the base plus a random
 * half, so a fleet of connections does not reconnect in lock-step. */
static uint64_t conn_next_backoff(ws_pg_conn *c)
{
	ws_pg_pool *p = c->pool;
	uint64_t base = c->backoff_ms ? c->backoff_ms : p->backoff_min_ms;
	c->backoff_ms = base * 2 > p->backoff_max_ms ? p->backoff_max_ms : base * 2;
	return base / 2 + pool_rand(p) % (base / 2 + 1);
}

static void conn_drop_pg(ws_pg_conn *c)
{
	if (c->cancel_job) {
		c->cancel_job->conn = NULL;   /* it targets the old session */
		c->cancel_job = NULL;
	}
	watch_detach(c);
	PQclear(c->res);
	c->res = NULL;
	PQfinish(c->pg);   /* NULL is fine */
	c->pg = NULL;
}

static void notice_cb(void *arg, const PGresult *res)
{
	ws_pg_conn *c = arg;
	const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	if (!sev)
		sev = "NOTICE";
	if (!msg)
		msg = PQresultErrorMessage(res);
	/* A FATAL here precedes the end of the connection, which is logged as
	 * a warning on its own. */
	ws_log_level lvl = strcmp(sev, "WARNING") == 0 ? WS_LOG_WARN
			 : (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0) ? WS_LOG_INFO
			 : WS_LOG_DEBUG;
	ws_log(lvl, "pg", "connection %d: server says %s: %s", c->id, sev, msg);
}

/* A connection attempt failed (why == NULL: libpq says why). */
static void conn_connect_failed(ws_pg_conn *c, const char *why)
{
	ws_pg_pool *p = c->pool;
	char msg[PG_ERRBUF];
	if (why)
		snprintf(msg, sizeof(msg), "%s", why);
	else
		split_lines(c->pg ? PQerrorMessage(c->pg) : "out of memory", msg, sizeof(msg), NULL, 0);
	snprintf(p->last_error, sizeof(p->last_error), "%s", msg);
	conn_drop_pg(c);
	conn_timer_stop(c);
	conn_set_state(c, CONN_DOWN);
	if (p->closing)
		return;   /* pool_close_step tears it down */
	uint64_t delay = conn_next_backoff(c);
	if (c->fail_streak++ == 0)
		ws_warn("pg", "connection %d: cannot connect: %s; retrying in %llu ms", c->id, msg,
			(unsigned long long)delay);
	else
		ws_debug("pg", "connection %d: cannot connect (attempt %u): %s; retrying in %llu ms",
			 c->id, c->fail_streak, msg, (unsigned long long)delay);
	conn_timer_start(c, CT_BACKOFF, delay);
	if (!c->listen && !p->down && pool_all_failed(p)) {
		p->down = true;
		pool_kick(p);   /* fails what waits, from the loop, not from here */
	}
}

static void conn_connect(ws_pg_conn *c)
{
	ws_pg_pool *p = c->pool;
	static const char *const keys[] = { "dbname", "fallback_application_name", NULL };
	const char *vals[] = { p->conninfo, "wavesched", NULL };

	if (p->closing)
		return;
	conn_set_state(c, CONN_CONNECTING);
	conn_timer_start(c, CT_CONNECT, p->connect_timeout_ms);
	c->pg = PQconnectStartParams(keys, vals, 1);
	if (!c->pg) {
		conn_connect_failed(c, "out of memory");
		return;
	}
	PQsetNoticeReceiver(c->pg, notice_cb, c);
	if (PQstatus(c->pg) == CONNECTION_BAD) {
		conn_connect_failed(c, NULL);
		return;
	}
	/* libpq: before the first PQconnectPoll, wait until writable. */
	int rc = conn_watch(c, UV_WRITABLE);
	if (rc) {
		char why[128];
		snprintf(why, sizeof(why), "cannot watch the socket: %s", uv_strerror(rc));
		conn_connect_failed(c, why);
	}
}

static int conn_push_internal(ws_pg_conn *c, const char *sql, ws_pg_cb cb)
{
	pg_req *q;
	int rc = req_new(c->pool, REQ_QUERY, sql, 0, NULL, &q);
	if (rc)
		return rc;
	q->internal = true;
	q->cb = cb;
	q->arg = c;
	req_enqueue(q, c);
	return 0;
}

static void listen_done_cb(void *arg, const PGresult *res, const ws_pg_err *err)
{
	ws_pg_conn *c = arg;
	(void)res;
	if (err && err->code != WS_EUNAVAIL)
		ws_warn("pg", "connection %d: LISTEN failed: %s", c->id, err->message);
}

/* Queues LISTEN for one channel on the LISTEN connection. */
static void conn_listen_one(ws_pg_conn *c, const char *channel)
{
	char *ident = PQescapeIdentifier(c->pg, channel, strlen(channel));
	if (!ident) {
		ws_warn("pg", "connection %d: cannot quote channel \"%s\": %s", c->id, channel,
			PQerrorMessage(c->pg));
		return;
	}
	char *sql = NULL;
	if (asprintf(&sql, "LISTEN %s", ident) >= 0) {
		if (conn_push_internal(c, sql, listen_done_cb) != 0)
			ws_warn("pg", "connection %d: cannot queue LISTEN %s", c->id, ident);
		free(sql);
	}
	PQfreemem(ident);
}

static void conn_ready(ws_pg_conn *c)
{
	ws_pg_pool *p = c->pool;
	if (PQsetnonblocking(c->pg, 1) != 0) {
		conn_connect_failed(c, NULL);
		return;
	}
	conn_timer_stop(c);
	conn_set_state(c, CONN_READY);
	if (!c->listen)
		p->down = false;
	if (c->ever_connected) {
		p->stats.reconnects++;
		ws_info("pg", "connection %d: connected again", c->id);
	} else if (c->fail_streak) {
		ws_info("pg", "connection %d: connected after %u failed attempts", c->id, c->fail_streak);
	}
	c->ever_connected = true;
	c->fail_streak = 0;
	c->backoff_ms = 0;
	c->needs_reset = false;
	int rc = conn_watch(c, UV_READABLE);
	if (rc) {
		conn_lost(c, uv_strerror(rc));
		return;
	}
	if (c->listen) {
		for (size_t i = 0; i < p->nlisteners; i++)
			conn_listen_one(c, p->listeners[i].channel);
	}
}

/* One step of the connection handshake, each time the socket is ready. */
static void conn_connect_step(ws_pg_conn *c, int status)
{
	uv_poll_stop(&c->watch->poll);
	PostgresPollingStatusType st = PQconnectPoll(c->pg);
	int rc = 0;
	if (status < 0 && st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
		/* libuv saw an error on the socket that libpq has not noticed yet. */
		char why[128];
		snprintf(why, sizeof(why), "socket error while connecting: %s", uv_strerror(status));
		conn_connect_failed(c, why);
		return;
	}
	switch (st) {
	case PGRES_POLLING_READING:
		rc = conn_watch(c, UV_READABLE);
		break;
	case PGRES_POLLING_WRITING:
		rc = conn_watch(c, UV_WRITABLE);
		break;
	case PGRES_POLLING_OK:
		conn_ready(c);
		return;
	default:
		conn_connect_failed(c, NULL);
		return;
	}
	if (rc) {
		char why[128];
		snprintf(why, sizeof(why), "cannot watch the socket: %s", uv_strerror(rc));
		conn_connect_failed(c, why);
	}
}

/*
 * The connection broke (why == NULL: libpq says why).  The statement in
 * flight fails with WS_EUNAVAIL -- it may or may not have run, so it is
 * never re-sent -- and so do the holder's queued statements.  Callbacks run
 * last, once the connection is in a consistent state.
 */
static void conn_lost(ws_pg_conn *c, const char *why)
{
	ws_pg_pool *p = c->pool;
	pg_errbuf eb;
	err_from_libpq(&eb, NULL, c->pg);
	if (why)
		err_set(&eb, WS_EUNAVAIL, "%s", why);
	eb.err.code = WS_EUNAVAIL;
	snprintf(p->last_error, sizeof(p->last_error), "%s", eb.message);

	pg_req *cur = c->cur;
	req_list queued = c->queue;
	c->cur = NULL;
	c->queue = (req_list){ 0 };
	if (c->acquired)
		c->lost = true;
	c->needs_reset = false;
	conn_drop_pg(c);
	conn_set_state(c, CONN_DOWN);
	if (!p->closing) {
		uint64_t delay = conn_next_backoff(c);
		ws_warn("pg", "connection %d lost: %s; retrying in %llu ms", c->id, eb.message,
			(unsigned long long)delay);
		conn_timer_start(c, CT_BACKOFF, delay);
	} else {
		conn_timer_stop(c);
	}

	if (cur)
		req_fail(cur, &eb);
	pg_errbuf unsent;
	err_set(&unsent, WS_EUNAVAIL, "the connection was lost before the statement was sent: %s",
		eb.message);
	pg_req *q;
	while ((q = list_pop(&queued)) != NULL) {
		if (q->internal)
			req_drop(q);
		else
			req_fail(q, &unsent);
	}
}

/* ---- statements -------------------------------------------------------- */

static void conn_flush(ws_pg_conn *c)
{
	int r = PQflush(c->pg);
	if (r < 0) {
		conn_lost(c, NULL);
		return;
	}
	/* The poll is level-triggered: ask for WRITABLE only while libpq has
	 * something left to send. */
	int rc = conn_watch(c, r == 1 ? UV_READABLE | UV_WRITABLE : UV_READABLE);
	if (rc)
		conn_lost(c, uv_strerror(rc));
}

static void conn_send(ws_pg_conn *c, pg_req *q)
{
	ws_pg_pool *p = c->pool;
	q->state = REQ_SENT;
	q->conn = c;
	c->cur = q;
	if (!q->internal)
		p->stats.queries++;
	if (!PQsendQueryParams(c->pg, q->sql, q->nparams, NULL, q->params, NULL, NULL, 0)) {
		if (PQstatus(c->pg) == CONNECTION_BAD) {
			conn_lost(c, NULL);
			return;
		}
		pg_errbuf eb;
		err_from_libpq(&eb, NULL, c->pg);
		eb.err.code = WS_EDB;
		c->cur = NULL;
		req_fail(q, &eb);
		return;
	}
	conn_flush(c);
}

/* The statement on the wire is complete: hand its result over. */
static void conn_finish_cur(ws_pg_conn *c)
{
	pg_req *q = c->cur;
	PGresult *res = c->res;
	c->cur = NULL;
	c->res = NULL;
	if (c->timer_role == CT_CANCEL)
		conn_timer_stop(c);
	ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
		req_complete(q, NULL, res, NULL);
	} else {
		pg_errbuf eb;
		if (st == PGRES_EMPTY_QUERY)
			err_set(&eb, WS_EINVAL, "empty query");
		else
			err_from_libpq(&eb, res, c->pg);
		req_fail(q, &eb);
	}
	PQclear(res);
}

/* Reads every complete result; a statement ends when PQgetResult says
 * NULL.  Only one statement is sent at a time, so there is normally one
 * result; the first error wins over anything after it. */
static void conn_collect(ws_pg_conn *c)
{
	while (c->cur && !PQisBusy(c->pg)) {
		PGresult *r = PQgetResult(c->pg);
		if (!r) {
			conn_finish_cur(c);
			return;
		}
		ExecStatusType st = PQresultStatus(r);
		if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
			/* The pool has no COPY API; the connection is stuck in COPY
			 * mode, so it is reset. */
			PQclear(r);
			pg_req *q = c->cur;
			c->cur = NULL;
			conn_lost(c, "COPY is not supported by the pool; connection reset");
			pg_errbuf eb;
			err_set(&eb, WS_EINVAL, "COPY is not supported by ws_pg_query");
			req_fail(q, &eb);
			return;
		}
		if (c->res && PQresultStatus(c->res) == PGRES_FATAL_ERROR) {
			PQclear(r);
		} else {
			PQclear(c->res);
			c->res = r;
		}
	}
}

static void conn_drain_notifies(ws_pg_conn *c)
{
	ws_pg_pool *p = c->pool;
	PGnotify *n;
	while ((n = PQnotifies(c->pg)) != NULL) {
		/* Index, not pointer: a callback may add listeners (realloc). */
		for (size_t i = 0; i < p->nlisteners && !p->closing; i++) {
			if (strcmp(p->listeners[i].channel, n->relname) == 0)
				p->listeners[i].cb(p->listeners[i].arg, n->relname, n->extra);
		}
		PQfreemem(n);
	}
}

/* Socket events on a connected connection. */
static void conn_io(ws_pg_conn *c, int status, int events)
{
	if (status < 0) {
		char why[128];
		snprintf(why, sizeof(why), "socket error: %s", uv_strerror(status));
		conn_lost(c, why);
		return;
	}
	bool ok = true;
	if (events & UV_READABLE)
		ok = PQconsumeInput(c->pg) == 1;
	/* Even when reading failed, libpq keeps what it read before: the
	 * server's last words (57P01 "terminating connection due to
	 * administrator command") become the statement's result. */
	conn_drain_notifies(c);
	conn_collect(c);
	if (c->state != CONN_READY)
		return;
	if (!ok || PQstatus(c->pg) == CONNECTION_BAD) {
		conn_lost(c, NULL);
		return;
	}
	/* Also with nothing in flight: conn_flush drops WRITABLE from the
	 * watch, which would otherwise fire on every loop iteration. */
	if (events & UV_WRITABLE)
		conn_flush(c);
}

static void watch_cb(uv_poll_t *h, int status, int events)
{
	pg_watch *w = h->data;
	ws_pg_conn *c = w->conn;
	if (!c)
		return;
	ws_pg_pool *p = c->pool;
	if (c->state == CONN_CONNECTING)
		conn_connect_step(c, status);
	else if (c->state == CONN_READY)
		conn_io(c, status, events);
	pool_dispatch(p);
}

/* ---- time-outs and cancel ---------------------------------------------- */

static void cancel_work_cb(uv_work_t *w)
{
	pg_cancel_job *job = w->data;
	job->ok = PQcancel(job->cancel, job->errbuf, (int)sizeof(job->errbuf));
}

static void cancel_after_cb(uv_work_t *w, int status)
{
	pg_cancel_job *job = w->data;
	ws_pg_pool *p = job->pool;
	if (status == 0 && !job->ok)
		ws_warn("pg", "connection %d: cancel request failed: %s", job->conn_id, job->errbuf);
	if (job->conn) {
		job->conn->cancel_job = NULL;
		pool_kick(p);   /* the connection may take its next statement */
	}
	PQfreeCancel(job->cancel);
	free(job);
	p->works--;
	pool_maybe_finish(p);
}

/* Asks the server to cancel the statement on the wire.  PQcancel opens a
 * connection and waits for it, so it runs on the thread pool. */
static void conn_cancel_start(ws_pg_conn *c)
{
	ws_pg_pool *p = c->pool;
	ws_info("pg", "connection %d: statement timed out after %llu ms; cancelling", c->id,
		(unsigned long long)p->query_timeout_ms);
	pg_cancel_job *job = calloc(1, sizeof(*job));
	PGcancel *cx = job ? PQgetCancel(c->pg) : NULL;
	if (!cx) {
		free(job);
		pg_req *q = c->cur;
		c->cur = NULL;
		conn_lost(c, "cannot build a cancel request; connection reset");
		pg_errbuf eb;
		err_set(&eb, WS_ETIMEDOUT, "statement timed out after %llu ms",
			(unsigned long long)p->query_timeout_ms);
		req_fail(q, &eb);
		return;
	}
	job->work.data = job;
	job->pool = p;
	job->conn = c;
	job->conn_id = c->id;
	job->cancel = cx;
	if (uv_queue_work(p->loop, &job->work, cancel_work_cb, cancel_after_cb) != 0) {
		PQfreeCancel(cx);
		free(job);
	} else {
		p->works++;
		c->cancel_job = job;
	}
	conn_timer_start(c, CT_CANCEL, PG_CANCEL_GRACE_MS);
}

/* The server did not acknowledge the cancel in time: give up on it. */
static void conn_cancel_expired(ws_pg_conn *c)
{
	ws_pg_pool *p = c->pool;
	pg_req *q = c->cur;
	if (!q)
		return;
	c->cur = NULL;
	conn_lost(c, "the server did not acknowledge a cancel request; connection reset");
	pg_errbuf eb;
	err_set(&eb, WS_ETIMEDOUT,
		"statement timed out after %llu ms and the server did not acknowledge the cancel",
		(unsigned long long)p->query_timeout_ms);
	req_fail(q, &eb);
}

static void conn_timer_cb(uv_timer_t *t)
{
	ws_pg_conn *c = t->data;
	ws_pg_pool *p = c->pool;
	conn_timer_role role = c->timer_role;
	c->timer_role = CT_NONE;
	switch (role) {
	case CT_CONNECT: {
		char why[128];
		snprintf(why, sizeof(why), "connection attempt timed out after %llu ms",
			 (unsigned long long)p->connect_timeout_ms);
		conn_connect_failed(c, why);
		break;
	}
	case CT_BACKOFF:
		conn_connect(c);
		break;
	case CT_CANCEL:
		conn_cancel_expired(c);
		break;
	case CT_NONE:
		break;
	}
	pool_dispatch(p);
}

static bool pool_any_ready(const ws_pg_pool *p)
{
	for (int i = 0; i < p->size; i++)
		if (p->conns[i].state == CONN_READY)
			return true;
	return false;
}

/* Known down: no connection is up and every one failed its last attempt
 * (one still on its first attempt, or lost and not yet retried, may come
 * back). */
static bool pool_all_failed(const ws_pg_pool *p)
{
	for (int i = 0; i < p->size; i++)
		if (p->conns[i].state == CONN_READY || p->conns[i].fail_streak == 0)
			return false;
	return true;
}

static void req_timer_cb(uv_timer_t *t)
{
	pg_req *q = t->data;
	ws_pg_pool *p = q->pool;
	pg_errbuf eb;
	switch (q->state) {
	case REQ_POOL_QUEUED:
		list_remove(&p->queue, q);
		if (pool_any_ready(p))
			err_set(&eb, WS_ETIMEDOUT, "no free database connection within %llu ms",
				(unsigned long long)p->query_timeout_ms);
		else
			err_set(&eb, WS_EUNAVAIL, "the database is unreachable: no connection within %llu ms%s%s",
				(unsigned long long)p->query_timeout_ms, p->last_error[0] ? ": " : "",
				p->last_error);
		req_fail(q, &eb);
		break;
	case REQ_CONN_QUEUED:
		list_remove(&q->conn->queue, q);
		err_set(&eb, WS_ETIMEDOUT,
			"statement timed out after %llu ms waiting for the previous one on its connection",
			(unsigned long long)p->query_timeout_ms);
		req_fail(q, &eb);
		break;
	case REQ_SENT:
		q->timed_out = true;
		conn_cancel_start(q->conn);
		break;
	case REQ_DONE:
		break;
	}
	pool_dispatch(p);
}

/* ---- dispatch ---------------------------------------------------------- */

static void rollback_done_cb(void *arg, const PGresult *res, const ws_pg_err *err)
{
	ws_pg_conn *c = arg;
	(void)res;
	if (err && err->code != WS_EUNAVAIL) {
		ws_warn("pg", "connection %d: ROLLBACK of a released connection failed: %s", c->id,
			err->message);
		c->needs_reset = true;
	}
}

/* Gives a connection its next statement, or rolls back what a holder left
 * open once it is released. */
static void conn_pump(ws_pg_conn *c)
{
	if (c->state != CONN_READY || c->cur || c->cancel_job)
		return;
	if (c->needs_reset) {
		conn_lost(c, "could not roll back an abandoned transaction; connection reset");
		return;
	}
	if (c->queue.head) {
		conn_send(c, list_pop(&c->queue));
		return;
	}
	if (c->acquired || c->listen || c->pool->closing)
		return;   /* when closing, ending the session rolls back */
	switch (PQtransactionStatus(c->pg)) {
	case PQTRANS_IDLE:
		return;
	case PQTRANS_INTRANS:
	case PQTRANS_INERROR:
		ws_debug("pg", "connection %d: released inside a transaction; rolling back", c->id);
		if (conn_push_internal(c, "ROLLBACK", rollback_done_cb) != 0) {
			conn_lost(c, "out of memory");
			return;
		}
		conn_send(c, list_pop(&c->queue));
		return;
	default:
		conn_lost(c, "connection in an unknown transaction state");
		return;
	}
}

static bool conn_is_free(const ws_pg_conn *c)
{
	return c->state == CONN_READY && !c->cur && !c->queue.head && !c->acquired && !c->listen &&
	       !c->needs_reset && !c->cancel_job && PQtransactionStatus(c->pg) == PQTRANS_IDLE;
}

static bool conn_has_user_work(const ws_pg_conn *c)
{
	if (c->cur && !c->cur->internal)
		return true;
	for (const pg_req *q = c->queue.head; q; q = q->next)
		if (!q->internal)
			return true;
	return false;
}

static void conn_timer_close_cb(uv_handle_t *h)
{
	ws_pg_conn *c = h->data;
	handle_closed(c->pool);
}

static void conn_teardown(ws_pg_conn *c)
{
	conn_timer_stop(c);
	pg_req *q = c->cur;
	c->cur = NULL;
	if (q)
		req_drop(q);
	while ((q = list_pop(&c->queue)) != NULL)
		req_drop(q);
	conn_drop_pg(c);
	conn_set_state(c, CONN_CLOSED);
	uv_close((uv_handle_t *)&c->timer, conn_timer_close_cb);
}

static void kick_close_cb(uv_handle_t *h)
{
	ws_pg_pool *p = h->data;
	handle_closed(p);
}

/*
 * Closing: fail what waits for the pool, let statements in flight and
 * connections held by users finish (their holders may need to COMMIT), and
 * tear the rest down.  Runs again whenever something finishes.
 */
static void pool_close_step(ws_pg_pool *p)
{
	pg_req *q;
	while ((q = list_pop(&p->queue)) != NULL) {
		pg_errbuf eb;
		err_set(&eb, WS_EUNAVAIL, "the database pool is closing");
		req_fail(q, &eb);
	}
	bool all_closed = true;
	for (int i = 0; i <= p->size; i++) {
		ws_pg_conn *c = &p->conns[i];
		if (c->state == CONN_CLOSED)
			continue;
		if (c->state == CONN_READY && (c->acquired || conn_has_user_work(c))) {
			all_closed = false;
			continue;
		}
		conn_teardown(c);
	}
	if (all_closed && p->acquired == 0 && !p->kick_closed) {
		p->kick_closed = true;
		uv_close((uv_handle_t *)&p->kick, kick_close_cb);
	}
}

static ws_pg_conn *pool_free_conn(ws_pg_pool *p)
{
	for (int i = 0; i < p->size; i++)
		if (conn_is_free(&p->conns[i]))
			return &p->conns[i];
	return NULL;
}

/* The database is known to be unreachable: fail what waits in the pool's
 * queue now (work queued on an acquired connection stays with it). */
static void pool_fail_waiting(ws_pg_pool *p)
{
	pg_req *q;
	while ((q = list_pop(&p->queue)) != NULL) {
		pg_errbuf eb;
		err_set(&eb, WS_EUNAVAIL, "the database is unreachable%s%s",
			p->last_error[0] ? ": " : "", p->last_error);
		req_fail(q, &eb);
	}
}

static void pool_dispatch(ws_pg_pool *p)
{
	if (p->kick_closed)
		return;
	if (p->down && !pool_any_ready(p))
		pool_fail_waiting(p);
	for (int i = 0; i <= p->size; i++)
		conn_pump(&p->conns[i]);
	while (!p->closing && p->queue.head) {
		ws_pg_conn *c = pool_free_conn(p);
		if (!c)
			break;
		pg_req *q = list_pop(&p->queue);
		if (q->kind == REQ_QUERY) {
			conn_send(c, q);
		} else {
			c->acquired = true;
			c->lost = false;
			p->acquired++;
			req_complete(q, c, NULL, NULL);
		}
	}
	if (p->closing)
		pool_close_step(p);
}

static void kick_cb(uv_idle_t *h)
{
	ws_pg_pool *p = h->data;
	uv_idle_stop(h);
	pool_dispatch(p);
}

static void pool_kick(ws_pg_pool *p)
{
	if (!p->kick_closed)
		uv_idle_start(&p->kick, kick_cb);
}

static void pool_free(ws_pg_pool *p)
{
	for (size_t i = 0; i < p->nlisteners; i++)
		free(p->listeners[i].channel);
	free(p->listeners);
	free(p->conns);
	free(p->conninfo);
	free(p);
}

/* Called from close callbacks and thread-pool completions only, so nothing
 * of ours is on the stack when the pool goes away. */
static void pool_maybe_finish(ws_pg_pool *p)
{
	if (!p->closing || !p->kick_closed || p->handles || p->works || p->acquired)
		return;
	void (*cb)(void *) = p->close_cb;
	void *arg = p->close_arg;
	ws_debug("pg", "pool closed");
	if (cb)
		cb(arg);
	pool_free(p);
}

/* ---- public API -------------------------------------------------------- */

ws_pg_pool *ws_pg_pool_new(uv_loop_t *loop, const ws_pg_opts *opts)
{
	if (!loop || !opts || !opts->conninfo) {
		ws_error("pg", "ws_pg_pool_new: a loop and opts->conninfo are required");
		return NULL;
	}
	char *perr = NULL;
	PQconninfoOption *parsed = PQconninfoParse(opts->conninfo, &perr);
	if (!parsed) {
		char msg[PG_ERRBUF];
		split_lines(perr ? perr : "out of memory", msg, sizeof(msg), NULL, 0);
		ws_error("pg", "invalid connection string: %s", msg);
		PQfreemem(perr);
		return NULL;
	}
	PQconninfoFree(parsed);
	if (opts->size < 0 || opts->size > PG_MAX_SIZE) {
		ws_error("pg", "pool size %d is out of range (1-%d)", opts->size, PG_MAX_SIZE);
		return NULL;
	}

	ws_pg_pool *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->loop = loop;
	p->conninfo = strdup(opts->conninfo);
	p->size = opts->size ? opts->size : PG_DEFAULT_SIZE;
	p->query_timeout_ms = opts->query_timeout_ms ? opts->query_timeout_ms : PG_DEFAULT_QUERY_TIMEOUT_MS;
	p->connect_timeout_ms = opts->connect_timeout_ms ? opts->connect_timeout_ms : PG_DEFAULT_CONNECT_TIMEOUT_MS;
	p->backoff_min_ms = opts->backoff_min_ms ? opts->backoff_min_ms : PG_DEFAULT_BACKOFF_MIN_MS;
	p->backoff_max_ms = opts->backoff_max_ms ? opts->backoff_max_ms : PG_DEFAULT_BACKOFF_MAX_MS;
	if (p->backoff_max_ms < p->backoff_min_ms)
		p->backoff_max_ms = p->backoff_min_ms;
	p->max_queue = opts->max_queue ? opts->max_queue : PG_DEFAULT_MAX_QUEUE;
	p->conns = calloc((size_t)p->size + 1, sizeof(*p->conns));
	if (!p->conninfo || !p->conns) {
		pool_free(p);
		return NULL;
	}
	p->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)p;
	if (!p->rng)
		p->rng = 0x9e3779b97f4a7c15ull;
	p->stats.size = p->size;
	uv_idle_init(loop, &p->kick);
	p->kick.data = p;
	p->handles++;
	for (int i = 0; i <= p->size; i++) {
		ws_pg_conn *c = &p->conns[i];
		c->pool = p;
		c->id = i;
		c->listen = i == p->size;
		c->state = CONN_DOWN;
		uv_timer_init(loop, &c->timer);
		c->timer.data = c;
		p->handles++;
	}
	return p;
}

void ws_pg_pool_start(ws_pg_pool *p)
{
	if (!p || p->started || p->closing)
		return;
	p->started = true;
	for (int i = 0; i < p->size; i++)
		conn_connect(&p->conns[i]);
	if (p->nlisteners)
		conn_connect(&p->conns[p->size]);
	pool_kick(p);
}

void ws_pg_pool_close(ws_pg_pool *p, void (*cb)(void *arg), void *arg)
{
	if (!p)
		return;
	if (p->closing) {
		ws_error("pg", "ws_pg_pool_close called twice");
		return;
	}
	p->closing = true;
	p->close_cb = cb;
	p->close_arg = arg;
	pool_kick(p);
}

static bool query_args_ok(const char *sql, int nparams, const char *const *params, ws_pg_cb cb)
{
	return sql && cb && nparams >= 0 && (nparams == 0 || params);
}

/* Whether the pool takes new work: not while closing or known down, and not
 * beyond max_queue (`what` names the refused work in the warning). */
static int pool_admit(ws_pg_pool *p, const char *what)
{
	if (p->closing || (p->down && !pool_any_ready(p)))
		return WS_EUNAVAIL;
	if (p->queue.len >= p->max_queue) {
		ws_warn("pg", "query queue is full (%zu waiting); refusing %s", p->queue.len, what);
		return WS_EUNAVAIL;
	}
	return 0;
}

/* Queues a caller's statement (cb) or acquire (acquire_cb): on connection
 * `c` when given, else in the pool's queue. */
static int req_submit(ws_pg_pool *p, ws_pg_conn *c, req_kind kind, const char *sql, int nparams,
		      const char *const *params, ws_pg_cb cb, ws_pg_acquire_cb acquire_cb, void *arg)
{
	pg_req *q;
	int rc = req_new(p, kind, sql, nparams, params, &q);
	if (rc)
		return rc;
	q->cb = cb;
	q->acquire_cb = acquire_cb;
	q->arg = arg;
	req_enqueue(q, c);
	pool_kick(p);
	return 0;
}

int ws_pg_query(ws_pg_pool *p, const char *sql, int nparams, const char *const *params,
		ws_pg_cb cb, void *arg)
{
	if (!p || !query_args_ok(sql, nparams, params, cb))
		return WS_EINVAL;
	int rc = pool_admit(p, "a statement");
	return rc ? rc : req_submit(p, NULL, REQ_QUERY, sql, nparams, params, cb, NULL, arg);
}

int ws_pg_acquire(ws_pg_pool *p, ws_pg_acquire_cb cb, void *arg)
{
	if (!p || !cb)
		return WS_EINVAL;
	int rc = pool_admit(p, "a connection request");
	return rc ? rc : req_submit(p, NULL, REQ_ACQUIRE, NULL, 0, NULL, NULL, cb, arg);
}

int ws_pg_conn_query(ws_pg_conn *c, const char *sql, int nparams, const char *const *params,
		     ws_pg_cb cb, void *arg)
{
	if (!c || !query_args_ok(sql, nparams, params, cb))
		return WS_EINVAL;
	if (!c->acquired) {
		ws_error("pg", "ws_pg_conn_query: connection %d is not acquired", c->id);
		return WS_EINVAL;
	}
	if (c->lost || c->state != CONN_READY)
		return WS_EUNAVAIL;
	if (c->queue.len >= c->pool->max_queue)
		return WS_EUNAVAIL;
	return req_submit(c->pool, c, REQ_QUERY, sql, nparams, params, cb, NULL, arg);
}

void ws_pg_release(ws_pg_conn *c)
{
	if (!c)
		return;
	if (!c->acquired) {
		ws_error("pg", "ws_pg_release: connection %d is not acquired (released twice?)", c->id);
		return;
	}
	c->acquired = false;
	c->lost = false;
	c->pool->acquired--;
	pool_kick(c->pool);
}

int ws_pg_listen(ws_pg_pool *p, const char *channel, ws_pg_notify_cb cb, void *arg)
{
	if (!p || !channel || !cb)
		return WS_EINVAL;
	size_t len = strlen(channel);
	if (len == 0 || len > PG_MAX_CHANNEL) {
		ws_error("pg", "LISTEN channel \"%s\" must be 1-%d bytes long", channel, PG_MAX_CHANNEL);
		return WS_EINVAL;
	}
	if (p->closing)
		return WS_EUNAVAIL;
	if (p->nlisteners >= PG_MAX_LISTENERS)
		return WS_ETOOBIG;
	pg_listener *ls = realloc(p->listeners, (p->nlisteners + 1) * sizeof(*ls));
	if (!ls)
		return WS_ENOMEM;
	p->listeners = ls;
	char *copy = strdup(channel);
	if (!copy)
		return WS_ENOMEM;
	ls[p->nlisteners++] = (pg_listener){ .channel = copy, .cb = cb, .arg = arg };

	ws_pg_conn *lc = &p->conns[p->size];
	if (!p->started)
		return 0;   /* ws_pg_pool_start connects it */
	if (lc->state == CONN_READY) {
		conn_listen_one(lc, copy);
		pool_kick(p);
	} else if (lc->state == CONN_DOWN && lc->timer_role == CT_NONE) {
		conn_connect(lc);   /* first listener: bring the connection up */
	}
	/* else: connecting or backing off; it LISTENs to all once connected */
	return 0;
}

void ws_pg_pool_stats(const ws_pg_pool *p, ws_pg_stats *out)
{
	*out = p->stats;
	out->size = p->size;
	out->connected = out->busy = 0;
	for (int i = 0; i < p->size; i++) {
		const ws_pg_conn *c = &p->conns[i];
		if (c->state != CONN_READY)
			continue;
		out->connected++;
		if (c->cur || c->acquired || c->queue.head)
			out->busy++;
	}
	out->waiting = (int)p->queue.len;
}

bool ws_pg_pool_ready(const ws_pg_pool *p)
{
	return p && pool_any_ready(p);
}
