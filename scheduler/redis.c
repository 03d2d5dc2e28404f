/*
 * redis.c - the optional Redis link: one hiredis async connection on the
 * libuv loop (the contract is in include/wavesched/redis.h).
 *
 * Life of the link.  CONNECTING (first attempt) -> UP once the handshake
 * (AUTH, SELECT, PING) is answered; on any failure DOWN, and a new attempt
 * after an exponential back-off with jitter.  While UP a PING goes out every
 * ping_interval; one unanswered within ping_timeout means the link is dead
 * even if the socket says nothing (a hung server, a dropped route), and the
 * context is freed and re-made.
 *
 * hiredis 0.14 rules this code lives by:
 *  - redisLibuvAttach comes before redisAsyncSetConnectCallback, which arms
 *    the first write event that detects the connection.
 *  - 0.14 has no connect time-out (no redisAsyncConnectWithOptions): a
 *    uv_timer covers connect and handshake.  It also rescues connects the
 *    libuv adapter never hears about: libuv stops a poll handle on POLLERR
 *    and the adapter ignores the error status.
 *  - On disconnect hiredis frees the context: we drop our pointer.  We free
 *    a context ourselves (redisAsyncFree) only from our timer callbacks,
 *    never from inside a hiredis callback; r->ac is cleared first so the
 *    disconnect callback that redisAsyncFree runs knows it is not news.
 *  - Every reply callback runs exactly once, with NULL when the context
 *    goes away; each connection has an epoch so a late reply to an old
 *    context is ignored.
 *  - A TCP host name is resolved with uv_getaddrinfo first: hiredis would
 *    call getaddrinfo on the loop thread.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libuv.h>
#include <uv.h>
#include "wavesched/log.h"
#include "wavesched/redis.h"

#define REDIS_DEFAULT_PORT 6379
#define REDIS_MAX_DB 1000000
#define REDIS_MAX_URL 4096
#define REDIS_ERRBUF 256

typedef enum { RT_NONE, RT_CONNECT, RT_BACKOFF } redis_timer_role;

struct ws_redis {
	uv_loop_t *loop;
	ws_redis_state state;
	/* Where to, from the URL. */
	bool unix_socket;
	char *host;                /* TCP, without [] */
	int port;
	char *path;                /* unix socket */
	int db;
	char *user, *password;     /* NULL when absent */
	char *display;             /* the URL without its password, for logs */
	ws_redis_opts opts;

	redisAsyncContext *ac;     /* NULL while not connected */
	unsigned epoch;            /* bumped for every attempt, and at close */
	bool handshake_failed;
	uv_timer_t timer;          /* connect time-out or back-off */
	redis_timer_role timer_role;
	uv_timer_t ping_timer;     /* next PING, or the wait for its reply */
	bool ping_outstanding;
	uint64_t backoff_ms;
	unsigned fail_streak;
	int resolving;             /* uv_getaddrinfo requests in flight */
	int handles;               /* open uv handles of ours */
	bool started, closing;
	void (*close_cb)(void *arg);
	void *close_arg;
	uint64_t rng;
	char last_error[REDIS_ERRBUF];
	/* Pub/Sub (ws_redis_subscribe): the link is dedicated to one channel. */
	char *sub_channel;
	ws_redis_message_cb sub_msg_cb;
	ws_redis_subscribed_cb sub_state_cb;
	void *sub_arg;
	bool subscribed;
};

typedef struct redis_cmd {
	ws_redis_cb cb;
	void *arg;
} redis_cmd;

typedef struct redis_gai {
	uv_getaddrinfo_t req;
	ws_redis *r;
	unsigned epoch;
} redis_gai;

static const char *const state_names[] = { "disabled", "connecting", "up", "down" };

static void redis_connect(ws_redis *r);
static void maybe_finish(ws_redis *r);
static void set_subscribed(ws_redis *r, bool on);

/* ---- URL parsing ------------------------------------------------------- */

/* The URL as it may be shown: the password (userinfo after ':' in
 * redis://, password= in unix://) becomes "***". */
static void redact_url(const char *url, char *out, size_t n)
{
	const char *s = strstr(url, "://");
	size_t len = strlen(url);
	if (s && strncmp(url, "redis", 5) == 0) {
		const char *auth = s + 3;
		size_t alen = strcspn(auth, "/?#");
		const char *at = memrchr(auth, '@', alen);
		const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
		if (colon) {
			snprintf(out, n, "%.*s:***%s", (int)(colon - url), url, at);
			return;
		}
	}
	const char *pw = strstr(url, "password=");
	if (pw) {
		size_t vlen = strcspn(pw + 9, "&#");
		snprintf(out, n, "%.*s***%s", (int)(pw + 9 - url), url, pw + 9 + vlen);
		return;
	}
	snprintf(out, n, "%.*s", (int)(len < 512 ? len : 512), url);
}

static void url_error(ws_diags *d, const char *url, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void url_error(ws_diags *d, const char *url, const char *fmt, ...)
{
	char shown[600], msg[512];
	va_list ap;
	redact_url(url, shown, sizeof(shown));
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ws_diag_add(d, NULL, 0, 0, "redis URL \"%s\": %s", shown, msg);
}

/* Decodes %XX escapes of [s, s+n) into a new string; NULL when malformed. */
static char *pct_decode(const char *s, size_t n)
{
	char *out = malloc(n + 1), *o = out;
	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '%') {
			*o++ = s[i];
			continue;
		}
		unsigned v;
		char hex[3] = { 0 };
		if (i + 2 >= n) {
			free(out);
			return NULL;
		}
		hex[0] = s[i + 1];
		hex[1] = s[i + 2];
		if (!isxdigit((unsigned char)hex[0]) || !isxdigit((unsigned char)hex[1]) ||
		    sscanf(hex, "%2x", &v) != 1 || v == 0) {
			free(out);
			return NULL;
		}
		*o++ = (char)v;
		i += 2;
	}
	*o = '\0';
	return out;
}

/* A decimal number of [s, s+n) in [lo, hi]; -1 when it is not one. */
static long parse_num(const char *s, size_t n, long lo, long hi)
{
	if (n == 0 || n > 9)
		return -1;
	long v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v < lo || v > hi ? -1 : v;
}

/* redis://[[user]:password@]host[:port][/db] */
static int parse_tcp(ws_redis *r, const char *url, ws_diags *d)
{
	const char *auth = url + strlen("redis://");
	size_t alen = strcspn(auth, "/?#");
	const char *rest = auth + alen;
	const char *at = memrchr(auth, '@', alen);
	const char *hp = auth;
	size_t hplen = alen;

	if (at) {
		const char *colon = memchr(auth, ':', (size_t)(at - auth));
		if (!colon) {
			url_error(d, url, "a password must follow ':' (redis://:PASSWORD@host:port)");
			return WS_EINVAL;
		}
		if (colon > auth && !(r->user = pct_decode(auth, (size_t)(colon - auth)))) {
			url_error(d, url, "malformed %%-escape in the user name");
			return WS_EINVAL;
		}
		r->password = pct_decode(colon + 1, (size_t)(at - colon - 1));
		if (!r->password) {
			url_error(d, url, "malformed %%-escape in the password");
			return WS_EINVAL;
		}
		if (!*r->password) {
			url_error(d, url, "empty password after ':'");
			return WS_EINVAL;
		}
		hp = at + 1;
		hplen = (size_t)(auth + alen - hp);
	}

	const char *host = hp, *port = NULL;
	size_t hostlen, portlen = 0;
	if (hplen > 0 && hp[0] == '[') {
		const char *close = memchr(hp, ']', hplen);
		if (!close) {
			url_error(d, url, "missing ']' after the IPv6 address");
			return WS_EINVAL;
		}
		host = hp + 1;
		hostlen = (size_t)(close - host);
		const char *after = close + 1;
		size_t left = (size_t)(hp + hplen - after);
		if (left > 0) {
			if (after[0] != ':') {
				url_error(d, url, "unexpected text after the IPv6 address");
				return WS_EINVAL;
			}
			port = after + 1;
			portlen = left - 1;
		}
	} else {
		const char *colon = memchr(hp, ':', hplen);
		hostlen = colon ? (size_t)(colon - hp) : hplen;
		if (colon) {
			port = colon + 1;
			portlen = (size_t)(hp + hplen - port);
		}
	}
	if (hostlen == 0) {
		url_error(d, url, "missing host (expected redis://host:port/db)");
		return WS_EINVAL;
	}
	r->host = strndup(host, hostlen);
	r->port = REDIS_DEFAULT_PORT;
	if (port) {
		long v = parse_num(port, portlen, 1, 65535);
		if (v < 0) {
			url_error(d, url, "invalid port \"%.*s\" (expected 1-65535)", (int)portlen, port);
			return WS_EINVAL;
		}
		r->port = (int)v;
	}

	if (*rest == '/') {
		size_t dlen = strcspn(rest + 1, "?#");
		if (dlen > 0) {
			long v = parse_num(rest + 1, dlen, 0, REDIS_MAX_DB);
			if (v < 0) {
				url_error(d, url, "invalid database \"%.*s\" (expected a number 0-%d)",
					  (int)dlen, rest + 1, REDIS_MAX_DB);
				return WS_EINVAL;
			}
			r->db = (int)v;
		}
		rest += 1 + dlen;
	}
	if (*rest) {
		url_error(d, url, "unexpected \"%s\" (expected redis://[:password@]host[:port][/db])", rest);
		return WS_EINVAL;
	}
	return 0;
}

/* unix:///path/to/redis.sock[?db=N][&password=P] */
static int parse_unix(ws_redis *r, const char *url, ws_diags *d)
{
	const char *path = url + strlen("unix://");
	size_t plen = strcspn(path, "?#");
	if (plen == 0) {
		url_error(d, url, "missing socket path (expected unix:///path/to/redis.sock)");
		return WS_EINVAL;
	}
	if (path[0] != '/') {
		url_error(d, url, "the socket path must be absolute (unix:///path/to/redis.sock)");
		return WS_EINVAL;
	}
	if (plen >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		url_error(d, url, "the socket path is %zu bytes long; the system allows at most %zu", plen,
			  sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
		return WS_EINVAL;
	}
	r->unix_socket = true;
	r->path = strndup(path, plen);
	const char *q = path + plen;
	if (*q == '#') {
		url_error(d, url, "unexpected fragment \"%s\"", q);
		return WS_EINVAL;
	}
	if (*q == '?')
		q++;
	while (*q) {
		size_t n = strcspn(q, "&#");
		if (q[n] == '#') {
			url_error(d, url, "unexpected fragment \"%s\"", q + n);
			return WS_EINVAL;
		}
		if (strncmp(q, "db=", 3) == 0) {
			long v = parse_num(q + 3, n - 3, 0, REDIS_MAX_DB);
			if (v < 0) {
				url_error(d, url, "invalid database \"%.*s\" (expected a number 0-%d)",
					  (int)(n - 3), q + 3, REDIS_MAX_DB);
				return WS_EINVAL;
			}
			r->db = (int)v;
		} else if (strncmp(q, "password=", 9) == 0) {
			free(r->password);
			r->password = pct_decode(q + 9, n - 9);
			if (!r->password || !*r->password) {
				url_error(d, url, "empty or malformed password parameter");
				return WS_EINVAL;
			}
		} else {
			const char *eq = memchr(q, '=', n);
			url_error(d, url, "unknown parameter \"%.*s\" (expected db=N or password=P)",
				  (int)(eq ? (size_t)(eq - q) : n), q);
			return WS_EINVAL;
		}
		q += n;
		if (*q == '&')
			q++;
	}
	return 0;
}

static int parse_url(ws_redis *r, const char *url, ws_diags *d)
{
	int rc;
	if (strlen(url) > REDIS_MAX_URL) {
		ws_diag_add(d, NULL, 0, 0, "redis URL is %zu bytes long; at most %d are allowed",
			    strlen(url), REDIS_MAX_URL);
		return WS_ETOOBIG;
	}
	if (strncmp(url, "redis://", 8) == 0)
		rc = parse_tcp(r, url, d);
	else if (strncmp(url, "unix://", 7) == 0)
		rc = parse_unix(r, url, d);
	else if (strncmp(url, "rediss://", 9) == 0) {
		url_error(d, url, "TLS (rediss://) is not supported");
		return WS_EINVAL;
	} else {
		url_error(d, url, "unsupported scheme (expected redis://host:port/db or unix:///path?db=N)");
		return WS_EINVAL;
	}
	if (rc)
		return rc;
	if ((r->unix_socket && !r->path) || (!r->unix_socket && !r->host))
		return WS_ENOMEM;
	int n = r->unix_socket ? asprintf(&r->display, "unix://%s?db=%d", r->path, r->db)
			       : asprintf(&r->display, strchr(r->host, ':') ? "redis://[%s]:%d/%d" : "redis://%s:%d/%d",
					  r->host, r->port, r->db);
	return n < 0 ? WS_ENOMEM : 0;
}

/* ---- state ------------------------------------------------------------- */

static void set_error(ws_redis *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_error(ws_redis *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->last_error, sizeof(r->last_error), fmt, ap);
	va_end(ap);
}

/* Every state change goes through here. */
static void set_state(ws_redis *r, ws_redis_state s)
{
	if (r->state == s)
		return;
	if (s == WS_REDIS_DISABLED || (s == WS_REDIS_CONNECTING && r->state != WS_REDIS_DISABLED)) {
		ws_error("redis", "%s: impossible transition %s -> %s", r->display, state_names[r->state],
			 state_names[s]);
		abort();
	}
	if (s == WS_REDIS_UP)
		ws_info("redis", "%s: up", r->display);
	else
		ws_debug("redis", "%s: %s -> %s", r->display, state_names[r->state], state_names[s]);
	r->state = s;
}

static uint64_t next_backoff(ws_redis *r)
{
	uint64_t x = r->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	r->rng = x;
	uint64_t base = r->backoff_ms ? r->backoff_ms : r->opts.backoff_min_ms;
	r->backoff_ms = base * 2 > r->opts.backoff_max_ms ? r->opts.backoff_max_ms : base * 2;
	return base / 2 + x % (base / 2 + 1);
}

static void timer_cb(uv_timer_t *t);

static void timer_start(ws_redis *r, redis_timer_role role, uint64_t ms)
{
	r->timer_role = role;
	uv_timer_start(&r->timer, timer_cb, ms, 0);
}

/* The link is down (r->last_error says why): try again after a back-off. */
static void schedule_reconnect(ws_redis *r)
{
	if (r->closing)
		return;
	uv_timer_stop(&r->ping_timer);
	r->ping_outstanding = false;
	uint64_t delay = next_backoff(r);
	if (r->state == WS_REDIS_UP)
		ws_warn("redis", "%s: connection lost: %s; retrying in %llu ms", r->display, r->last_error,
			(unsigned long long)delay);
	else if (r->fail_streak == 0)
		ws_warn("redis", "%s: cannot connect: %s; retrying in %llu ms", r->display, r->last_error,
			(unsigned long long)delay);
	else
		ws_debug("redis", "%s: cannot connect (attempt %u): %s; retrying in %llu ms", r->display,
			 r->fail_streak + 1, r->last_error, (unsigned long long)delay);
	r->fail_streak++;
	set_subscribed(r, false);
	set_state(r, WS_REDIS_DOWN);
	timer_start(r, RT_BACKOFF, delay);
}

/* Frees our context from a timer callback (never from a hiredis one). */
static void drop_context(ws_redis *r)
{
	redisAsyncContext *ac = r->ac;
	r->ac = NULL;
	r->epoch++;
	uv_timer_stop(&r->ping_timer);
	r->ping_outstanding = false;
	if (ac)
		redisAsyncFree(ac);   /* pending callbacks run now, with NULL */
}

/* ---- hiredis callbacks ------------------------------------------------- */

static ws_redis *owner(const redisAsyncContext *ac, void *privdata)
{
	ws_redis *r = ac->data;
	if (!r || r->ac != ac || (unsigned)(uintptr_t)privdata != r->epoch)
		return NULL;   /* a late reply to a context we gave up on */
	return r;
}

static void ping_timer_cb(uv_timer_t *t);

/* Tells the subscriber when the subscription starts or ends, once each. */
static void set_subscribed(ws_redis *r, bool on)
{
	if (r->subscribed == on)
		return;
	r->subscribed = on;
	if (r->sub_state_cb)
		r->sub_state_cb(r->sub_arg, on);
}

/* hiredis keeps this callback for the channel and calls it for the
 * confirmation and for every message; with NULL when the context goes. */
static void subscribe_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
	ws_redis *r = owner(ac, privdata);
	redisReply *rep = reply;
	if (!r)
		return;
	if (!rep) {
		set_subscribed(r, false);
		return;
	}
	if (rep->type == REDIS_REPLY_ERROR) {
		set_error(r, "SUBSCRIBE %s refused: %s", r->sub_channel, rep->str);
		redisAsyncDisconnect(ac);
		return;
	}
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 || rep->element[0]->type != REDIS_REPLY_STRING)
		return;
	const char *what = rep->element[0]->str;
	if (strcmp(what, "subscribe") == 0) {
		set_subscribed(r, true);
	} else if (strcmp(what, "message") == 0 && rep->element[2]->type == REDIS_REPLY_STRING) {
		if (r->sub_msg_cb)
			r->sub_msg_cb(r->sub_arg, rep->element[2]->str, rep->element[2]->len);
	}
}

static void handshake_step_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
	ws_redis *r = owner(ac, privdata);
	redisReply *rep = reply;
	if (!r || !rep || r->handshake_failed)
		return;   /* NULL: the disconnect callback tells */
	if (rep->type == REDIS_REPLY_ERROR) {
		set_error(r, "handshake refused: %s", rep->str);
		r->handshake_failed = true;
		redisAsyncDisconnect(ac);   /* deferred by hiredis until callbacks return */
	}
}

static void handshake_ping_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
	ws_redis *r = owner(ac, privdata);
	redisReply *rep = reply;
	if (!r || !rep || r->handshake_failed)
		return;
	if (rep->type == REDIS_REPLY_ERROR) {
		set_error(r, "PING refused: %s", rep->str);
		r->handshake_failed = true;
		redisAsyncDisconnect(ac);
		return;
	}
	uv_timer_stop(&r->timer);
	r->timer_role = RT_NONE;
	r->backoff_ms = 0;
	r->fail_streak = 0;
	r->last_error[0] = '\0';
	set_state(r, WS_REDIS_UP);
	if (r->sub_channel) {
		/* No PING from now on: on a subscribed connection hiredis 0.14
		 * would hand the next message to the PING's callback. */
		if (redisAsyncCommand(ac, subscribe_cb, privdata, "SUBSCRIBE %s", r->sub_channel) != REDIS_OK) {
			set_error(r, "cannot send SUBSCRIBE: %s", ac->errstr[0] ? ac->errstr : "context closing");
			redisAsyncDisconnect(ac);
		}
		return;
	}
	uv_timer_start(&r->ping_timer, ping_timer_cb, r->opts.ping_interval_ms, 0);
}

static void connect_cb(const redisAsyncContext *cac, int status)
{
	redisAsyncContext *ac = (redisAsyncContext *)cac;
	ws_redis *r = ac->data;
	if (!r || r->ac != ac)
		return;
	if (status != REDIS_OK) {
		/* hiredis frees the context after this callback. */
		set_error(r, "%s", ac->errstr[0] ? ac->errstr : "connection failed");
		r->ac = NULL;
		uv_timer_stop(&r->timer);
		schedule_reconnect(r);
		return;
	}
	/* Connected: AUTH, SELECT, then PING.  Replies come in order, so the
	 * PING's answer means the whole handshake went through.  Do not free or
	 * disconnect here: hiredis still uses the context after we return.  If
	 * a command cannot be queued, the connect timer gives up on it. */
	void *epoch = (void *)(uintptr_t)r->epoch;
	if (r->password) {
		if (r->user)
			redisAsyncCommand(ac, handshake_step_cb, epoch, "AUTH %s %s", r->user, r->password);
		else
			redisAsyncCommand(ac, handshake_step_cb, epoch, "AUTH %s", r->password);
	}
	if (r->db)
		redisAsyncCommand(ac, handshake_step_cb, epoch, "SELECT %d", r->db);
	redisAsyncCommand(ac, handshake_ping_cb, epoch, "PING");
}

static void disconnect_cb(const redisAsyncContext *ac, int status)
{
	ws_redis *r = ac->data;
	if (!r || r->ac != ac)
		return;   /* we freed it ourselves */
	r->ac = NULL;
	r->epoch++;
	if (!r->handshake_failed)
		set_error(r, "%s", status != REDIS_OK && ac->errstr[0] ? ac->errstr : "connection closed by the server");
	schedule_reconnect(r);
}

static void command_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
	redis_cmd *cmd = privdata;
	redisReply *rep = reply;
	const char *err = NULL;
	if (!rep)
		err = ac->errstr[0] ? ac->errstr : "connection to Redis closed before the reply";
	else if (rep->type == REDIS_REPLY_ERROR)
		err = rep->str;
	cmd->cb(cmd->arg, rep, err);
	free(cmd);
}

static void ping_reply_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
	ws_redis *r = owner(ac, privdata);
	redisReply *rep = reply;
	if (!r || !rep)
		return;
	r->ping_outstanding = false;
	if (rep->type == REDIS_REPLY_ERROR)   /* e.g. LOADING: alive, but say so */
		ws_warn("redis", "%s: PING answered with an error: %s", r->display, rep->str);
	uv_timer_start(&r->ping_timer, ping_timer_cb, r->opts.ping_interval_ms, 0);
}

static void ping_timer_cb(uv_timer_t *t)
{
	ws_redis *r = t->data;
	if (!r->ac || r->state != WS_REDIS_UP)
		return;
	if (r->ping_outstanding) {
		/* libuv runs due timers before it polls for I/O: after a stall
		 * of this process, a PONG already waiting in the socket would
		 * lose to the time-out.  Read what is there first (this may
		 * also find the connection closed, which drops the context). */
		redisAsyncHandleRead(r->ac);
		if (!r->ac || r->state != WS_REDIS_UP || !r->ping_outstanding)
			return;
		set_error(r, "no answer to PING within %llu ms", (unsigned long long)r->opts.ping_timeout_ms);
		drop_context(r);
		schedule_reconnect(r);
		return;
	}
	if (redisAsyncCommand(r->ac, ping_reply_cb, (void *)(uintptr_t)r->epoch, "PING") != REDIS_OK) {
		set_error(r, "cannot send PING: %s", r->ac->errstr[0] ? r->ac->errstr : "context closing");
		drop_context(r);
		schedule_reconnect(r);
		return;
	}
	r->ping_outstanding = true;
	uv_timer_start(&r->ping_timer, ping_timer_cb, r->opts.ping_timeout_ms, 0);
}

/* ---- connecting -------------------------------------------------------- */

/* Makes the hiredis context; `ip` is NULL for a unix socket. */
static void open_context(ws_redis *r, const char *ip)
{
	redisAsyncContext *ac = r->unix_socket ? redisAsyncConnectUnix(r->path)
					       : redisAsyncConnect(ip, r->port);
	if (!ac || ac->err) {
		set_error(r, "%s", ac ? ac->errstr : "out of memory");
		if (ac)
			redisAsyncFree(ac);
		uv_timer_stop(&r->timer);
		schedule_reconnect(r);
		return;
	}
	ac->data = r;
	if (redisLibuvAttach(ac, r->loop) != REDIS_OK) {
		set_error(r, "cannot attach the connection to the event loop");
		redisAsyncFree(ac);
		uv_timer_stop(&r->timer);
		schedule_reconnect(r);
		return;
	}
	r->ac = ac;
	/* After the attach: setting the connect callback arms the write event
	 * that detects the connection. */
	redisAsyncSetConnectCallback(ac, connect_cb);
	redisAsyncSetDisconnectCallback(ac, disconnect_cb);
}

static void resolved_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	redis_gai *g = (redis_gai *)req;
	ws_redis *r = g->r;
	bool current = g->epoch == r->epoch && !r->closing;
	char ip[INET6_ADDRSTRLEN] = "";
	r->resolving--;
	free(g);
	if (current && status == 0) {
		for (struct addrinfo *ai = res; ai && !ip[0]; ai = ai->ai_next) {
			if (ai->ai_family == AF_INET)
				inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, ip, sizeof(ip));
			else if (ai->ai_family == AF_INET6)
				inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, ip, sizeof(ip));
		}
	}
	uv_freeaddrinfo(res);
	if (r->closing) {
		maybe_finish(r);
		return;
	}
	if (!current)
		return;   /* the connect timer gave up on this one */
	if (!ip[0]) {
		set_error(r, "cannot resolve \"%s\": %s", r->host, status ? uv_strerror(status) : "no address");
		uv_timer_stop(&r->timer);
		schedule_reconnect(r);
		return;
	}
	open_context(r, ip);
}

static void redis_connect(ws_redis *r)
{
	if (r->closing)
		return;
	r->epoch++;
	r->handshake_failed = false;
	if (r->state == WS_REDIS_DISABLED)
		set_state(r, WS_REDIS_CONNECTING);
	timer_start(r, RT_CONNECT, r->opts.connect_timeout_ms);
	if (r->unix_socket) {
		open_context(r, NULL);
		return;
	}
	unsigned char buf[sizeof(struct in6_addr)];
	if (inet_pton(AF_INET, r->host, buf) == 1 || inet_pton(AF_INET6, r->host, buf) == 1) {
		open_context(r, r->host);
		return;
	}
	redis_gai *g = calloc(1, sizeof(*g));
	if (!g) {
		set_error(r, "out of memory");
		uv_timer_stop(&r->timer);
		schedule_reconnect(r);
		return;
	}
	g->r = r;
	g->epoch = r->epoch;
	char port[8];
	snprintf(port, sizeof(port), "%d", r->port);
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	int rc = uv_getaddrinfo(r->loop, &g->req, resolved_cb, r->host, port, &hints);
	if (rc) {
		free(g);
		set_error(r, "cannot resolve \"%s\": %s", r->host, uv_strerror(rc));
		uv_timer_stop(&r->timer);
		schedule_reconnect(r);
		return;
	}
	r->resolving++;
}

static void timer_cb(uv_timer_t *t)
{
	ws_redis *r = t->data;
	redis_timer_role role = r->timer_role;
	r->timer_role = RT_NONE;
	if (role == RT_BACKOFF) {
		redis_connect(r);
	} else if (role == RT_CONNECT) {
		/* libuv stops a poll handle on POLLERR and the hiredis adapter
		 * ignores the status, so a refused TCP connect ends up here: ask
		 * the socket what happened. */
		int soerr = 0;
		socklen_t len = sizeof(soerr);
		if (r->ac && r->ac->c.fd >= 0)
			getsockopt(r->ac->c.fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
		set_error(r, "no connection within %llu ms%s%s", (unsigned long long)r->opts.connect_timeout_ms,
			  soerr ? ": " : "", soerr ? strerror(soerr) : "");
		drop_context(r);   /* also outdates a host name being resolved */
		schedule_reconnect(r);
	}
}

/* ---- public API -------------------------------------------------------- */

static void opts_defaults(ws_redis_opts *o)
{
	if (!o->connect_timeout_ms)
		o->connect_timeout_ms = 5000;
	if (!o->ping_interval_ms)
		o->ping_interval_ms = 5000;
	if (!o->ping_timeout_ms)
		o->ping_timeout_ms = 3000;
	if (!o->backoff_min_ms)
		o->backoff_min_ms = 100;
	if (!o->backoff_max_ms)
		o->backoff_max_ms = 5000;
	if (o->backoff_max_ms < o->backoff_min_ms)
		o->backoff_max_ms = o->backoff_min_ms;
}

static void redis_free(ws_redis *r)
{
	free(r->host);
	free(r->path);
	free(r->user);
	free(r->password);
	free(r->display);
	free(r->sub_channel);
	free(r);
}

ws_redis *ws_redis_new(uv_loop_t *loop, const char *url, ws_diags *d)
{
	ws_redis *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->loop = loop;
	r->state = WS_REDIS_DISABLED;
	opts_defaults(&r->opts);
	r->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)r;
	if (!r->rng)
		r->rng = 0x9e3779b97f4a7c15ull;
	if (url && *url) {
		if (parse_url(r, url, d) != 0) {
			redis_free(r);
			return NULL;
		}
	} else if (!(r->display = strdup("redis (disabled)"))) {
		redis_free(r);
		return NULL;
	}
	uv_timer_init(loop, &r->timer);
	uv_timer_init(loop, &r->ping_timer);
	r->timer.data = r->ping_timer.data = r;
	r->handles = 2;
	return r;
}

void ws_redis_set_opts(ws_redis *r, const ws_redis_opts *o)
{
	if (!r || !o)
		return;
	r->opts = *o;
	opts_defaults(&r->opts);
}

void ws_redis_start(ws_redis *r)
{
	if (!r || r->started || r->closing || (!r->host && !r->path))
		return;   /* disabled: nothing to do */
	r->started = true;
	struct sigaction old;
	if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL) {
		signal(SIGPIPE, SIG_IGN);
		ws_debug("redis", "SIGPIPE set to ignored (hiredis writes with write(2))");
	}
	redis_connect(r);
}

/* Called from close callbacks and resolver completions only. */
static void maybe_finish(ws_redis *r)
{
	if (!r->closing || r->handles > 0 || r->resolving > 0)
		return;
	void (*cb)(void *) = r->close_cb;
	void *arg = r->close_arg;
	if (cb)
		cb(arg);
	redis_free(r);
}

static void close_cb(uv_handle_t *h)
{
	ws_redis *r = h->data;
	r->handles--;
	maybe_finish(r);
}

void ws_redis_close(ws_redis *r, void (*cb)(void *arg), void *arg)
{
	if (!r)
		return;
	if (r->closing) {
		ws_error("redis", "ws_redis_close called twice");
		return;
	}
	r->closing = true;
	r->close_cb = cb;
	r->close_arg = arg;
	uv_timer_stop(&r->timer);
	uv_timer_stop(&r->ping_timer);
	uv_close((uv_handle_t *)&r->timer, close_cb);
	uv_close((uv_handle_t *)&r->ping_timer, close_cb);
	/* Pending commands get their callback now, with a NULL reply.  Called
	 * from inside a reply callback, hiredis defers the free until that
	 * callback returns; r lives until our close callbacks, later. */
	drop_context(r);
}

ws_redis_state ws_redis_get_state(const ws_redis *r)
{
	return r ? r->state : WS_REDIS_DISABLED;
}

const char *ws_redis_state_name(ws_redis_state s)
{
	return (unsigned)s < sizeof(state_names) / sizeof(state_names[0]) ? state_names[s] : "unknown";
}

const char *ws_redis_last_error(const ws_redis *r)
{
	return r ? r->last_error : "";
}

int ws_redis_command(ws_redis *r, int argc, const char **argv, const size_t *argvlen,
		     ws_redis_cb cb, void *arg)
{
	if (!r || argc <= 0 || !argv || !cb)
		return WS_EINVAL;
	if (r->sub_channel)
		return WS_EINVAL;   /* a subscribed link takes no commands */
	if (r->closing || r->state != WS_REDIS_UP || !r->ac)
		return WS_EUNAVAIL;
	redis_cmd *cmd = malloc(sizeof(*cmd));
	if (!cmd)
		return WS_ENOMEM;
	cmd->cb = cb;
	cmd->arg = arg;
	if (redisAsyncCommandArgv(r->ac, command_cb, cmd, argc, argv, argvlen) != REDIS_OK) {
		free(cmd);
		return WS_EUNAVAIL;
	}
	return 0;
}

int ws_redis_subscribe(ws_redis *r, const char *channel, ws_redis_message_cb msg_cb,
		       ws_redis_subscribed_cb sub_cb, void *arg)
{
	if (!r || !channel || !*channel || r->started || r->sub_channel)
		return WS_EINVAL;
	if (!(r->sub_channel = strdup(channel)))
		return WS_ENOMEM;
	r->sub_msg_cb = msg_cb;
	r->sub_state_cb = sub_cb;
	r->sub_arg = arg;
	return 0;
}

bool ws_redis_subscribed(const ws_redis *r)
{
	return r && r->subscribed;
}
