/*
 * metric_gate.h - the metric gate (policies.md "Metric gates", engine.md
 * "Metric gate"): PromQL checks asked of a Prometheus HTTP API right before
 * a tenant would deploy.  What is here is pure: templating a query for a
 * tenant, the query URL, reading Prometheus's answer, judging samples
 * against min/max and `for`, and the per-rollout cache of the latest
 * results that the decision (engine_decide.c) reads.
 *
 * The GETs themselves are an engine effect (engine_fx.c, EM_FX_METRICS)
 * through the outbound layer, so every way an answer can be wrong is
 * unit-tested here without a network (tests/unit/metrics_gate).
 */
#ifndef WAVESCHED_METRIC_GATE_H
#define WAVESCHED_METRIC_GATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "engine_model.h"

/* An instant query's answer: a vector of one sample per tenant is a few
 * hundred bytes; a query that matches the whole fleet by mistake is
 * refused as too large rather than read. */
#define METRIC_ANSWER_MAX_BYTES ((size_t)1024 * 1024)
/* Samples kept for the evidence; every sample is judged. */
#define METRIC_SAMPLES_KEPT 20

/*
 * The query with `{slug}`, `{cluster}` and `{version}` replaced; any other
 * brace is PromQL's own (`foo{tenant="{slug}"}`) and left alone.  Values
 * are escaped as the inside of a PromQL string literal (backslash before
 * `\`, `"` and `'`), so a value cannot end the literal it is put in.
 * malloc'd; NULL when out of memory.
 */
char *metric_query_expand(const char *tmpl, const char *slug, const char *cluster,
			  const char *version);

/* `base` (its trailing slashes dropped) + "/api/v1/query?query=" + the query
 * percent-encoded.  malloc'd; NULL when out of memory. */
char *metric_query_url(const char *base, const char *query);

/*
 * Reads an answer of /api/v1/query.  Returns 0 with `*samples` a new array
 * of {"metric"?: {labels}, "value": "raw string"} (a scalar answer gives one
 * sample without labels), or -1 with what is wrong in `why`: "not JSON:
 * ...", "status \"error\": <errorType>: <error>", "no data", "resultType
 * \"matrix\" (expected vector or scalar)", "sample 2 has no value", ...
 * An empty result is an answer (judging refuses it).
 */
int metric_answer_parse(const char *body, size_t len, json_t **samples, char *why, size_t n);

/*
 * Every sample within the bounds: true; false with `why` naming the first
 * problem: "empty result", "sample {tenant=\"a\"} is NaN", "... is +Inf",
 * "... value \"x\" is not a number", "sample {...} = 700 is above max 500".
 */
bool metric_samples_judge(const json_t *samples, bool has_min, double min, bool has_max,
			  double max, char *why, size_t n);

/* The latest results, by (deployment, metric name).  Strings are copied. */
typedef struct metric_cache metric_cache;

/*
 * Stores one evaluation of `name` for `dep_id` made at `at` (schedule time):
 * ok_since carries over from the previous result while results stay ok and
 * follow each other within `max_gap_us` (<= 0: any gap), is `at` on the
 * first ok one or after a longer gap (the metric was not watched meanwhile:
 * `for` starts again), and EM_NONE once one is not ok.  `evidence`
 * (borrowed, copied) is what the gate's row shows of it.  False when out of
 * memory (the metric is then evaluated again at the next decision).
 */
bool metric_cache_put(metric_cache **c, int64_t dep_id, const char *name, int64_t at, bool ok,
		      const char *reason, const json_t *evidence, int64_t max_gap_us);
/* The latest result, or NULL; valid until the next put or free. */
const em_metric_status *metric_cache_get(const metric_cache *c, int64_t dep_id, const char *name);
/* Its evidence (with ok_since and checked_at added), or NULL; borrowed. */
const json_t *metric_cache_evidence(const metric_cache *c, int64_t dep_id, const char *name);
/* What the gate's rows said last for the deployment: NULL, "wait" or
 * "pass" (a row is written when that changes, never per evaluation). */
const char *metric_cache_recorded(const metric_cache *c, int64_t dep_id);
void metric_cache_set_recorded(metric_cache *c, int64_t dep_id, const char *result);
void metric_cache_free(metric_cache *c);

/*
 * The gate of one deployment, judged at `at` from `lookup`: 1 when every
 * metric of `metrics` (the wave's settings) is ok and has been since at
 * least its for_s, 0 when one holds the tenant (`why` says which and why),
 * -1 when one has no result yet.
 */
int metric_gate_judge(const json_t *metrics,
		      const em_metric_status *(*lookup)(void *arg, const char *name), void *arg,
		      int64_t at, char *why, size_t n);

#endif
