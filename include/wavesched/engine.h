/*
 * engine.h - the rollout engine (spec/engine.md, docs/design/engine.md).
 *
 * Runs on the loop of `wavesched serve`, in every process, but acts only
 * while this process holds the lease: ws_engine_leader() is called from the
 * lease's change callback.  As leader it loads every active rollout from
 * PostgreSQL, decides each one's next step from the rows alone, commits the
 * step through ws_engine_tx (fenced by the lease epoch), and only then acts
 * outside the database: deploy calls (outbox intents, idempotency key
 * rollout/tenant/attempt) and health probes.  It wakes on timers set in
 * schedule time (windows, soaks, backup re-checks), on NOTIFY ws_engine (a
 * person's command through any API process) and on the results of its own
 * calls.  After a crash or a takeover the new leader reloads the rows and
 * resumes: pending intents are re-issued with their key, verifications
 * restart their probes.
 */
#ifndef WAVESCHED_ENGINE_H
#define WAVESCHED_ENGINE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>
#include "wavesched/clock.h"
#include "wavesched/fleet_store.h"
#include "wavesched/outbound.h"
#include "wavesched/pg.h"

typedef struct ws_engine ws_engine;

typedef struct ws_engine_deps {
	uv_loop_t *loop;
	ws_pg_pool *pool;
	ws_fleet_store *fleet;
	const ws_clock *clock;
	ws_outbound *outbound;
	struct ws_metrics *metrics;   /* probe latencies; may be NULL */
	/* The metric gates' Prometheus (copied); NULL: every metric gate
	 * fails closed.  Their re-evaluation interval, schedule time; 0: 30 s. */
	const char *prometheus_url;
	int64_t metric_interval_s;
} ws_engine_deps;

typedef struct ws_engine_stats {
	uint64_t transactions;      /* ws_engine_tx calls committed */
	uint64_t transitions;       /* state changes committed */
	uint64_t stale_epoch;       /* calls refused because the lease moved */
	uint64_t conflicts;         /* calls refused by an expected-state guard */
	uint64_t deploy_calls;      /* executor calls started (re-issues included) */
	uint64_t probes;            /* health probes sent */
	uint64_t active_rollouts;
} ws_engine_stats;

WS_API ws_engine *ws_engine_new(const ws_engine_deps *deps);
/* Called by the lease: become the leader at `epoch`, or stop acting. */
WS_API void ws_engine_leader(ws_engine *e, bool leader, int64_t epoch);
/* Stops acting, lets calls in flight end (their results are dropped: the
 * next leader re-issues them), then calls cb. */
WS_API void ws_engine_stop(ws_engine *e, void (*cb)(void *arg), void *arg);
WS_API void ws_engine_free(ws_engine *e);
WS_API void ws_engine_stats_get(const ws_engine *e, ws_engine_stats *out);

#endif
