/*
 * events.h - live events: the publisher that gives committed events their
 * delivery order, and the hub that streams them to SSE clients.
 *
 * Glossary.  An event row is written by the transaction that changes state
 * (table `events`).  Its delivery sequence number `seq` is given later by
 * ws_events_stamp() (0008_events.sql) under one advisory lock, so seq order
 * is the order in which events became visible and seq has no holes: a reader
 * that has seen seq N has seen everything before it.  SSE ids are seqs.
 *
 * Publisher (the engine leader only): woken by NOTIFY ws_events and a slow
 * timer, stamps what is unstamped, PUBLISHes each event's JSON on the Redis
 * channel `wavesched:events`.  PostgreSQL stays the record: what Redis could
 * not take is published, in seq order, when it is back.
 *
 * Hub (every serve process): one Redis subscription fans out to the
 * process's SSE clients.  The hub delivers seqs strictly in order: a Redis
 * message that skips a seq, a lost subscription, or no Redis at all makes
 * it read what it has not seen from PostgreSQL (woken by NOTIFY
 * ws_events_seq and a timer).
 *
 * Client: a stream of GET /v1/events.  With a resume point (Last-Event-ID or
 * ?since=) it first reads the backlog from PostgreSQL while live events are
 * held (bounded), then releases the held ones it has not sent: the seam
 * (ws_seam below) has no gap and no duplicate.
 */
#ifndef WAVESCHED_EVENTS_H
#define WAVESCHED_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "wavesched/diag.h"
#include "wavesched/http.h"
#include "wavesched/pg.h"
#include "wavesched/redis.h"

#define WS_EVENTS_CHANNEL "wavesched:events"

typedef struct ws_events ws_events;

typedef struct ws_events_opts {
	uint64_t publish_poll_ms;    /* publisher's safety-net timer; default 5 s */
	uint64_t fallback_poll_ms;   /* hub reading PostgreSQL without Redis; default 2 s */
	uint64_t subscribed_poll_ms; /* hub's check while subscribed; default 15 s */
	uint64_t heartbeat_ms;       /* SSE comment to every client; default 15 s */
	size_t max_held;             /* live events a client holds during its backlog; default 1000 */
	size_t max_clients;          /* streams per process; default 1000 */
} ws_events_opts;

/* pool: shared with the API (the hub LISTENs on its dedicated connection).
 * publish_link: the process's Redis link (may be DISABLED).  redis_url: the
 * same URL, for the hub's own subscribed link (NULL or "": no Redis). */
WS_API ws_events *ws_events_new(uv_loop_t *loop, ws_pg_pool *pool, ws_redis *publish_link,
				const char *redis_url, const ws_events_opts *opts, ws_diags *d);
WS_API void ws_events_start(ws_events *ev);
/* The engine's leadership (lease.c): only the leader stamps and publishes. */
WS_API void ws_events_set_leader(ws_events *ev, bool leader);
/* Ends every stream (clients resume elsewhere with Last-Event-ID), stops
 * the timers and the subscription; cb once when all is closed. */
WS_API void ws_events_stop(ws_events *ev, void (*cb)(void *arg), void *arg);
/* After ws_events_stop's callback (or when never started). */
WS_API void ws_events_free(ws_events *ev);

/* Which events a stream gets. */
typedef struct ws_events_filter {
	int64_t rollout;        /* 0: every rollout */
	char **tenants;         /* scoped: only events naming one of these */
	size_t n_tenants;
	bool scoped;            /* true for tenant tokens (even with no tenants) */
} ws_events_filter;

/* Takes over a request: begins its stream (text/event-stream) and from
 * then on owns it, until the client goes away, reads too slowly (its
 * unwritten output passes the HTTP server's cap: the stream is closed and
 * the client resumes with Last-Event-ID) or the hub stops.  since < 0: live
 * events only; else first every event with seq > since.  The filter is
 * copied.  When it cannot (stopping, too many streams, no memory) it answers
 * the request with an error and returns a negative code. */
WS_API int ws_events_attach(ws_events *ev, ws_http_req *req, int64_t since, const ws_events_filter *f);
WS_API size_t ws_events_clients(const ws_events *ev);

/* ---- parts with no I/O, for tests ------------------------------------ */

/* One event as delivered: shared by every client it goes to. */
typedef struct ws_event {
	int refs;
	int64_t seq;
	int64_t rollout;     /* 0: none */
	char *tenant;        /* NULL: none */
	char *frame;         /* the SSE message, ready to write */
	size_t frame_len;
} ws_event;

/* A new event with one reference; doc is its JSON (one line or several). */
WS_API ws_event *ws_event_new(int64_t seq, int64_t rollout, const char *tenant, const char *doc,
			      size_t doc_len);
WS_API ws_event *ws_event_ref(ws_event *e);
WS_API void ws_event_unref(ws_event *e);
WS_API bool ws_event_matches(const ws_event *e, const ws_events_filter *f);

/* "id: SEQ\ndata: LINE\n...\n\n": each line of data (split at \n, \r\n or
 * \r, as SSE readers do) becomes one data: field.  Caller frees. */
WS_API char *ws_sse_frame(int64_t id, const char *data, size_t len, size_t *out_len);

/* The seam between a client's backlog and the live events. */
typedef enum { WS_SEAM_DROP, WS_SEAM_SEND, WS_SEAM_HELD } ws_seam_verdict;
typedef struct ws_seam {
	int64_t last;        /* highest seq sent or passed over */
	bool backlog;        /* reading the backlog; live events are held */
	bool overflow;       /* held events were dropped: read the backlog again */
	ws_event **held;
	size_t n_held, cap;
} ws_seam;
/* since < 0: live from now, no backlog. */
WS_API void ws_seam_init(ws_seam *s, int64_t since, size_t cap);
WS_API void ws_seam_clear(ws_seam *s);
/* A live event, in the hub's order.  SEND: the caller sends it (if the
 * filter allows) and s->last has moved; HELD: kept (a reference taken) until
 * the backlog ends; DROP: already sent or passed over, or dropped because
 * too many are held (then s->overflow is set). */
WS_API ws_seam_verdict ws_seam_live(ws_seam *s, ws_event *e);
/* A backlog row: true when it is new (send it; s->last has moved). */
WS_API bool ws_seam_backlog_row(ws_seam *s, int64_t seq);
/* A backlog page ended.  Returns true when another page must be read (the
 * page was full, or held events were dropped).  Otherwise the seam is live:
 * the held events newer than s->last go to *out in order (the caller owns
 * the array and the references), and s->last moves past them. */
WS_API bool ws_seam_backlog_done(ws_seam *s, bool page_full, ws_event ***out, size_t *n_out);

/* The API's access to the hub: set by serve after both exist. */
struct ws_api;
WS_API void ws_api_set_events(struct ws_api *a, ws_events *ev);

#endif
