/*
 * health.h - the health gate (engine.md "Gates"): a pure evaluator that
 * turns probe samples into PENDING / PASS / FAIL, and a prober that drives
 * the probes of many targets on the loop through ws_outbound.
 *
 * The evaluator (ws_health_eval) does no I/O and reads no clock.
 *
 *   Success.  A sample succeeds when an HTTP answer arrived with a 2xx status
 *   and its latency is <= max_latency_ms.  Everything else fails, closed: a
 *   time-out, a refused address, a DNS or TLS failure, an oversized answer, a
 *   3xx left after redirects, a 4xx or 5xx, a slow 2xx.
 *
 *   Rules, applied after each sample in this order:
 *   1. max_consecutive_failures failures in a row -> FAIL,
 *      "3 consecutive failures: HTTP 503" (the latest failure's cause).
 *   2. latency regression -> FAIL,
 *      "median latency 48 ms > 1.5 × baseline 12 ms" (below).
 *   3. consecutive_successes successes in a row -> PASS.
 *   FAIL is final: later samples are recorded but change nothing.  PASS is
 *   not: the engine keeps feeding samples during the soak, and rules 1 and 2
 *   still turn it into FAIL ("a failure during soak fails the tenant").
 *
 *   Median after the deploy.  The window is the latencies of the most recent
 *   W = max(3, consecutive_successes) samples that got an HTTP answer (any
 *   status; samples without an answer have no meaningful latency and count
 *   only as failures).  Its median is the middle value, or the mean of the
 *   two middle values for an even count.  Rule 2 is applied once the window
 *   holds at least consecutive_successes latencies -- so PASS is never given
 *   without it -- and fails when median > latency_regression × baseline.
 *   Baselines under 10 ms count as 10 ms: below that, scheduling jitter and
 *   a busy machine, not the service, decide the ratio (a 1 ms answer taking
 *   2 ms is no regression to halt a rollout for).  Without a baseline (0: every probe
 *   before the deploy failed) rule 2 is not applied, and the evidence says so.
 *
 *   Evidence.  The last WS_HEALTH_MAX_SAMPLES samples are kept (older ones
 *   are counted as dropped) and given as JSON with the verdict and reason.
 *
 * The prober probes each target every interval_ms (real milliseconds: the
 * engine converts schedule time) with its time-out, the first probe at once;
 * a probe never overlaps the previous one of the same target.  Each result
 * is handed to the target's callback as a ws_health_sample.
 */
#ifndef WAVESCHED_HEALTH_H
#define WAVESCHED_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <uv.h>
#include "wavesched/diag.h"
#include "wavesched/outbound.h"
#include "wavesched/policy.h"

#define WS_HEALTH_MAX_SAMPLES 50
/* Baselines below this count as this (see above). */
#define WS_HEALTH_BASELINE_FLOOR_US 10000

typedef enum { WS_HEALTH_PENDING = 0, WS_HEALTH_PASS, WS_HEALTH_FAIL } ws_health_verdict;

WS_API const char *ws_health_verdict_name(ws_health_verdict v);   /* "pending", "pass", "fail" */

/* One probe result.  `answered` is true when an HTTP answer arrived (then
 * status and latency_us are meaningful); `error` says why not (may be NULL
 * when answered).  Strings are copied by whoever keeps them. */
typedef struct ws_health_sample {
	bool answered;
	int status;
	uint64_t latency_us;
	const char *error;
	int64_t at_ms;        /* when it was taken, unix ms (the prober sets it); 0 = unknown */
} ws_health_sample;

typedef struct ws_health_eval ws_health_eval;

/* `cfg` is copied.  baseline_us: the median latency measured just before the
 * deploy, 0 when none could be measured. */
WS_API ws_health_eval *ws_health_eval_new(const ws_gate_health *cfg, uint64_t baseline_us);
WS_API void ws_health_eval_free(ws_health_eval *e);
/* Records one sample and returns the verdict after it. */
WS_API ws_health_verdict ws_health_eval_feed(ws_health_eval *e, const ws_health_sample *s);
WS_API ws_health_verdict ws_health_eval_verdict(const ws_health_eval *e);
/* Why, in words: "" while pending with nothing to say; borrowed from e. */
WS_API const char *ws_health_eval_reason(const ws_health_eval *e);
/* The post-deploy median of the current window in µs (0 when empty). */
WS_API uint64_t ws_health_eval_median_us(const ws_health_eval *e);
/* {"verdict", "reason", "baseline_ms", "median_ms", "consecutive_successes",
 *  "consecutive_failures", "samples_total", "samples_dropped",
 *  "samples": [{"at_ms", "ok", "status", "latency_ms", "error"}...]}.
 * A new reference. */
WS_API json_t *ws_health_eval_evidence(const ws_health_eval *e);

/* Whether one sample counts as a success under `cfg` (rule "Success"). */
WS_API bool ws_health_sample_ok(const ws_gate_health *cfg, const ws_health_sample *s);

/* The median of n latencies (sorts `v` in place); 0 when n == 0. */
WS_API uint64_t ws_health_median(uint64_t *v, size_t n);

/* ---- the prober --------------------------------------------------------- */

typedef struct ws_prober ws_prober;
typedef struct ws_probe_target ws_probe_target;

/* One sample of target `t`; `s` lives until the callback returns.  The
 * callback may remove `t` (or any target). */
typedef void (*ws_probe_cb)(void *arg, ws_probe_target *t, const ws_health_sample *s);

/* `out` is borrowed and must outlive the prober. */
WS_API ws_prober *ws_prober_new(uv_loop_t *loop, ws_outbound *out);
/* Every sample taken from now on is observed into `m` (borrowed; must
 * outlive the prober): wavesched_probe_duration_seconds{outcome}. */
struct ws_metrics;
WS_API void ws_prober_set_metrics(ws_prober *p, struct ws_metrics *m);
/* Removes every target, closes every handle, calls cb once (may be NULL),
 * frees the prober. */
WS_API void ws_prober_close(ws_prober *p, void (*cb)(void *arg), void *arg);

/* Starts probing `url` (copied) every interval_ms with timeout_ms per probe
 * (capped at interval_ms).  Returns NULL on bad arguments (interval 0, no
 * URL) or when out of memory or closing. */
WS_API ws_probe_target *ws_prober_add(ws_prober *p, const char *url, uint64_t interval_ms,
				      uint64_t timeout_ms, ws_probe_cb cb, void *arg);
/* Stops probing; no callback of `t` runs after this returns (a probe in
 * flight is cancelled).  `t` is freed later. */
WS_API void ws_prober_remove(ws_probe_target *t);
WS_API size_t ws_prober_count(const ws_prober *p);

/* The baseline: k probes of `url`, interval_ms apart, then the median latency
 * of those that got a 2xx answer.  cb gets ok = true and the median, or
 * ok = false with a reason when none did ("no successful probe of URL out of
 * 5: HTTP 503"); `evidence` (borrowed) lists the samples.  Cancel with
 * ws_prober_remove on the returned target. */
typedef void (*ws_baseline_cb)(void *arg, bool ok, uint64_t median_us, const char *reason,
			       const json_t *evidence);
WS_API ws_probe_target *ws_prober_baseline(ws_prober *p, const char *url, int k,
					   uint64_t interval_ms, uint64_t timeout_ms,
					   ws_baseline_cb cb, void *arg);

#endif
