/*
 * notify.h - notifications to webhooks (issue 6; docs/notifications.md).
 *
 * What to send is queued in PostgreSQL by migrations/0018_notify.sql in the
 * transaction of the event that caused it; reminders and overdue reviews by
 * ws_notify_scan.  The notifier only moves messages from that queue to their
 * sinks: it claims the oldest due message of each sink, renders it, POSTs it
 * through ws_outbound (address policy, time-out, size cap), and records the
 * attempt.  It runs on its own timers and its own database pool, with a
 * bounded number of calls in flight, so the engine never waits for it.
 *
 * The rendering and back-off functions are pure (unit-tested alone).
 */
#ifndef WAVESCHED_NOTIFY_H
#define WAVESCHED_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <uv.h>
#include "wavesched/clock.h"
#include "wavesched/diag.h"
#include "wavesched/outbound.h"
#include "wavesched/pg.h"

/* ---- pure parts ------------------------------------------------------------ */

/* The sentence a person reads for message `kind` with its `data` (the
 * queue's data object: release, tenant_name, window_start_local, reason, ...).
 * Missing fields are left out of the sentence, never printed as "(null)".
 * Returns a malloc'd string, or NULL without memory. */
WS_API char *ws_notify_text(const char *kind, const char *tenant, json_int_t rollout, const json_t *data);

/* The HTTP body for a sink of `format` ("json" or "slack") from the
 * message document {id, kind, at, rollout, tenant, data}:
 *   json:  {id, kind, at, rollout, tenant, text, data}
 *   slack: {"text": ..., "blocks": [section, context]} (an incoming-webhook body)
 * Returns a malloc'd NUL-terminated string, or NULL (unknown format, a
 * message without id or kind, or no memory) with the reason in `why`. */
WS_API char *ws_notify_body(const char *format, const json_t *message, char *why, size_t whysz);

/* The wait before the next attempt after attempt `attempt` (1 = the first)
 * failed: base * 2^(attempt-1) capped at max_ms, then jittered into
 * [d/2, d] by `rnd` (any 32-bit random value), so sinks that failed together
 * are not hit together again.  Never 0 when base_ms > 0. */
WS_API uint64_t ws_notify_backoff_ms(unsigned attempt, uint64_t base_ms, uint64_t max_ms, uint32_t rnd);

typedef enum {
	WS_NOTIFY_DELIVERED,
	WS_NOTIFY_RETRY,
	WS_NOTIFY_GIVE_UP,
} ws_notify_outcome;

/* Judges one attempt: a 2xx answer is delivered; a 4xx other than 408 and
 * 429, a URL that cannot work (bad URL or scheme) or an address the policy
 * refuses will not get better by trying again (given up at once); anything
 * else is retried until attempt reaches max_attempts. */
WS_API ws_notify_outcome ws_notify_judge(ws_outbound_reason reason, long status, unsigned attempt,
					 unsigned max_attempts);
/* "delivered", "retry", "failed": the words notification_deliveries keeps. */
WS_API const char *ws_notify_outcome_name(ws_notify_outcome o);

/* ---- the notifier ------------------------------------------------------- */

typedef struct ws_notify_opts {
	int64_t lead_us;           /* reminder lead, schedule time (config notify_lead; default 24h) */
	unsigned max_attempts;     /* config notify_max_attempts; default 8 */
	uint64_t backoff_ms;       /* first retry, real time (config notify_backoff; default 2 s) */
	uint64_t backoff_max_ms;   /* config notify_backoff_max; default 10 min */
	unsigned max_in_flight;    /* calls at once (one per sink); default 8 */
	uint64_t poll_ms;          /* looks for due messages; default 500 ms */
	uint64_t scan_ms;          /* reminder and overdue-review scan, real time; default 1 s */
	uint64_t timeout_ms;       /* one call; default 10 s */
} ws_notify_opts;

typedef struct ws_notifier ws_notifier;

typedef struct ws_notify_stats {
	uint64_t attempts, delivered, retried, failed, scans, queued_by_scan, db_errors;
	unsigned in_flight;
} ws_notify_stats;

/* `pool` should be the notifier's own (one connection is enough) so that it
 * never queues behind the engine.  Nothing happens until
 * ws_notifier_set_active(n, true).  opts may be NULL (defaults). */
WS_API ws_notifier *ws_notifier_new(uv_loop_t *loop, ws_pg_pool *pool, ws_outbound *out,
				    const ws_clock *clock, const ws_notify_opts *opts);
/* Delivers while active (the process leads the engine).  Calls in flight
 * when it becomes inactive finish and are recorded (a record is guarded by
 * the attempt number, so a new leader's duplicate is not counted twice). */
WS_API void ws_notifier_set_active(ws_notifier *n, bool active);
/* Stops: calls in flight are cancelled (not counted as attempts: their
 * claims are handed back and the next leader sends them again), queries in flight end, the timer
 * closes, then cb(arg) and the notifier is freed.  NULL-safe. */
WS_API void ws_notifier_stop(ws_notifier *n, void (*cb)(void *arg), void *arg);
WS_API void ws_notifier_stats_get(const ws_notifier *n, ws_notify_stats *out);

#endif
