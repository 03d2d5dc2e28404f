/*
 * redis.h - optional Redis connection (hiredis async, libuv adapter).
 *
 * The service runs without Redis: everything that matters is in PostgreSQL.
 * This keeps one async connection, reconnects with back-off, pings to know
 * the link is alive, and reports its state for /readyz and /metrics.
 */
#ifndef WAVESCHED_REDIS_H
#define WAVESCHED_REDIS_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>
#include "wavesched/diag.h"

typedef struct ws_redis ws_redis;

typedef enum {
	WS_REDIS_DISABLED = 0,   /* no URL configured */
	WS_REDIS_CONNECTING,
	WS_REDIS_UP,
	WS_REDIS_DOWN,           /* lost or never reached; reconnecting */
} ws_redis_state;

/* url: "redis://host:port/db", "redis://:password@host:port/db" or
 * "unix:///path/to/sock?db=N".  NULL or "" = disabled.  A malformed URL is an
 * error reported in `d`. */
WS_API ws_redis *ws_redis_new(uv_loop_t *loop, const char *url, ws_diags *d);

/* Timing; 0 keeps the default.  Call before ws_redis_start. */
typedef struct ws_redis_opts {
	uint64_t connect_timeout_ms;  /* connect + AUTH/SELECT/PING; default 5 s */
	uint64_t ping_interval_ms;    /* default 5 s */
	uint64_t ping_timeout_ms;     /* unanswered PING -> DOWN; default 3 s */
	uint64_t backoff_min_ms;      /* reconnect back-off; default 100 ms */
	uint64_t backoff_max_ms;      /* default 5 s */
} ws_redis_opts;
WS_API void ws_redis_set_opts(ws_redis *r, const ws_redis_opts *o);

/* Starts connecting.  hiredis writes with write(2), so a peer that goes away
 * raises SIGPIPE: when SIGPIPE still has its default action (terminate),
 * this sets it to ignored for the whole process. */
WS_API void ws_redis_start(ws_redis *r);
WS_API void ws_redis_close(ws_redis *r, void (*cb)(void *arg), void *arg);
WS_API ws_redis_state ws_redis_get_state(const ws_redis *r);
WS_API const char *ws_redis_state_name(ws_redis_state s);
/* Last error message, "" when none. */
WS_API const char *ws_redis_last_error(const ws_redis *r);

/* A command as argv; cb gets the reply (a redisReply *, or NULL on error)
 * exactly once.  Returns WS_EUNAVAIL when not connected (cb not called).
 * An error reply ("-ERR ...") is passed as the reply with err = its text; a
 * connection lost or closed before the reply gives reply NULL, err = why.
 * The reply belongs to hiredis and is freed when cb returns. */
typedef void (*ws_redis_cb)(void *arg, void *reply, const char *err);
WS_API int ws_redis_command(ws_redis *r, int argc, const char **argv,
			    const size_t *argvlen, ws_redis_cb cb, void *arg);

/* Dedicates the link to one Pub/Sub channel; call before ws_redis_start.
 * After every (re)connect it SUBSCRIBEs again; msg_cb gets the payload of
 * each message (borrowed for the call), sub_cb(arg, true) when the
 * subscription is confirmed and (arg, false) when it is lost (messages
 * published meanwhile are gone: Pub/Sub keeps nothing).  Such a link takes
 * no other command (WS_EINVAL) and is not pinged: hiredis 0.14 cannot tell
 * a PING's answer from a message on a subscribed connection, so a lost
 * server is noticed when the socket closes. */
typedef void (*ws_redis_message_cb)(void *arg, const char *payload, size_t len);
typedef void (*ws_redis_subscribed_cb)(void *arg, bool subscribed);
WS_API int ws_redis_subscribe(ws_redis *r, const char *channel, ws_redis_message_cb msg_cb,
			      ws_redis_subscribed_cb sub_cb, void *arg);
WS_API bool ws_redis_subscribed(const ws_redis *r);

#endif
