/*
 * metrics.h - a small Prometheus registry and its text exposition (0.0.4).
 *
 * Families are created on first use by name; a series is identified by its
 * label string, already rendered as Prometheus labels without braces
 * (route="/v1/fleet",status="200").  Label values must be escaped by the
 * caller with ws_metrics_escape().  Not thread-safe: used on the loop only.
 */
#ifndef WAVESCHED_METRICS_H
#define WAVESCHED_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include "wavesched/diag.h"

typedef struct ws_metrics ws_metrics;

WS_API ws_metrics *ws_metrics_new(void);
WS_API void ws_metrics_free(ws_metrics *m);
WS_API void ws_metrics_counter_add(ws_metrics *m, const char *name, const char *help,
				   const char *labels, double v);
WS_API void ws_metrics_gauge_set(ws_metrics *m, const char *name, const char *help,
				 const char *labels, double v);
/* buckets: ascending upper bounds without +Inf; the first observation of a
 * family fixes them. */
WS_API void ws_metrics_histogram_observe(ws_metrics *m, const char *name, const char *help,
					 const char *labels, const double *buckets,
					 size_t n_buckets, double v);
/* A histogram whose counts are kept elsewhere (e.g. totals read from the
 * database): `cumulative` has one count per bound, counts ≤ that bound. */
WS_API void ws_metrics_histogram_set(ws_metrics *m, const char *name, const char *help,
				     const char *labels, const double *buckets, size_t n_buckets,
				     const uint64_t *cumulative, uint64_t count, double sum);
/* A counter whose total is kept elsewhere (e.g. rows of an append-only
 * table): sets it. */
WS_API void ws_metrics_counter_set(ws_metrics *m, const char *name, const char *help,
				   const char *labels, double v);
/* Renders every family, sorted by name then labels.  Returns a malloc'd
 * string (caller frees). */
WS_API char *ws_metrics_render(const ws_metrics *m, size_t *len);
/* Escapes a label value (backslash, quote, newline) into buf. */
WS_API void ws_metrics_escape(const char *in, char *buf, size_t size);

#endif
