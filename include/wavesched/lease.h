/*
 * lease.h - engine leadership on the loop (docs/design/engine.md
 * "Leadership").
 *
 * Any number of `wavesched serve` processes share one database; the one
 * holding the engine_lease row leads.  The database judges the lease by its
 * own clock (ws_lease_acquire in 0003_engine.sql); every term has an epoch
 * that ws_engine_tx checks, so a deposed leader cannot write.  This side
 * adds the local half of the bargain: a leader counts its term from the
 * moment it SENT the renewal that the database confirmed (monotonic clock),
 * and steps down at send + ttl - margin unless a newer renewal was
 * confirmed by then.  Since the database's lease runs from a later instant
 * (when it executed the renewal), a paused, partitioned or slow leader stops
 * acting before anybody else can take over.
 *
 * The lease is never scaled by `--time-scale`: real milliseconds throughout.
 *
 * Give the lease a pool of its own (size 1, query_timeout_ms <= ttl_ms) so a
 * renewal never queues behind the engine's work and a hung one ends in time
 * for the next attempt.
 */
#ifndef WAVESCHED_LEASE_H
#define WAVESCHED_LEASE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>
#include "wavesched/diag.h"
#include "wavesched/pg.h"

typedef struct ws_lease ws_lease;

typedef struct ws_lease_opts {
	const char *holder;   /* unique per process (e.g. "host:pid:random"); copied */
	uint32_t ttl_ms;      /* the database lease's length; default 10000, 100 to 3600000 */
	uint32_t renew_ms;    /* leader's renewal / follower's retry period; default ttl / 3 */
	uint32_t margin_ms;   /* step down this long before send + ttl; default ttl / 5 */
} ws_lease_opts;

/* Called on every change of (leader, epoch): leader true with the new term's
 * epoch, or false (epoch = the term that ended, 0 if none).  A leader must
 * stop acting before this returns when leader is false. */
typedef void (*ws_lease_change_cb)(void *arg, bool leader, int64_t epoch);

/* NULL with a diagnostic for options that cannot work (empty holder, ttl out
 * of range, renew_ms not below ttl - margin). */
WS_API ws_lease *ws_lease_new(uv_loop_t *loop, ws_pg_pool *pool, const ws_lease_opts *opts,
			      ws_lease_change_cb cb, void *arg, ws_diags *d);

/* Starts trying at once; returns 0. */
WS_API int ws_lease_start(ws_lease *l);

/* Steps down (the change callback runs first, if leading), releases the
 * lease in the database so another process can take over at once, closes
 * the handles, calls done(arg) once and frees l.  Waits for a query in
 * flight, so stop the lease before closing its pool. */
WS_API void ws_lease_stop(ws_lease *l, void (*done)(void *arg), void *arg);

WS_API bool ws_lease_is_leader(const ws_lease *l);
/* The epoch of the current term when leading, else 0. */
WS_API int64_t ws_lease_epoch(const ws_lease *l);
/* Who the database last said holds the lease ("" when free or unknown). */
WS_API const char *ws_lease_current_holder(const ws_lease *l);

#endif
