/*
 * health.c - the health gate: the evaluator (pure) and the prober (loop).
 * The rules and the window of the post-deploy median are in
 * include/wavesched/health.h.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>
#include "wavesched/health.h"
#include "wavesched/metrics.h"
#include "wavesched/log.h"

/* ---- the evaluator ------------------------------------------------------ */

typedef struct kept_sample {
	int64_t at_ms;
	bool ok;
	bool answered;
	int status;
	uint64_t latency_us;
	char *error;
} kept_sample;

struct ws_health_eval {
	ws_gate_health cfg;
	uint64_t baseline_us;
	ws_health_verdict verdict;
	char reason[320];
	int successes;             /* in a row */
	int failures;              /* in a row */
	uint64_t *window;          /* ring of answered latencies */
	size_t window_cap, window_len, window_next;
	kept_sample kept[WS_HEALTH_MAX_SAMPLES];   /* ring */
	size_t kept_len, kept_next;
	uint64_t total;
};

WS_API const char *ws_health_verdict_name(ws_health_verdict v)
{
	switch (v) {
	case WS_HEALTH_PASS: return "pass";
	case WS_HEALTH_FAIL: return "fail";
	default: return "pending";
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

WS_API uint64_t ws_health_median(uint64_t *v, size_t n)
{
	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), cmp_u64);
	if (n % 2)
		return v[n / 2];
	return v[n / 2 - 1] / 2 + v[n / 2] / 2 + (v[n / 2 - 1] % 2 + v[n / 2] % 2) / 2;
}

/* "48 ms", "1.5 ms": whole milliseconds unless that would hide the value. */
static void fmt_ms(uint64_t us, char *buf, size_t size)
{
	if (us >= 10000)
		snprintf(buf, size, "%.0f ms", (double)us / 1000.0);
	else
		snprintf(buf, size, "%.1f ms", (double)us / 1000.0);
}

WS_API bool ws_health_sample_ok(const ws_gate_health *cfg, const ws_health_sample *s)
{
	return s->answered && s->status >= 200 && s->status <= 299 &&
	       s->latency_us <= (uint64_t)cfg->max_latency_ms * 1000u;
}

/* Why one sample failed, in words. */
static void sample_cause(const ws_gate_health *cfg, const ws_health_sample *s, char *buf,
			 size_t size)
{
	if (!s->answered) {
		snprintf(buf, size, "%s", s->error && *s->error ? s->error : "no answer");
	} else if (s->status < 200 || s->status > 299) {
		snprintf(buf, size, "HTTP %d", s->status);
	} else {
		char l[32];
		fmt_ms(s->latency_us, l, sizeof(l));
		snprintf(buf, size, "latency %s > max %d ms", l, cfg->max_latency_ms);
	}
}

WS_API ws_health_eval *ws_health_eval_new(const ws_gate_health *cfg, uint64_t baseline_us)
{
	ws_health_eval *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->cfg = *cfg;
	if (e->cfg.consecutive_successes < 1)
		e->cfg.consecutive_successes = 1;
	if (e->cfg.max_consecutive_failures < 1)
		e->cfg.max_consecutive_failures = 1;
	e->baseline_us = baseline_us;
	e->window_cap = (size_t)(e->cfg.consecutive_successes > 3 ? e->cfg.consecutive_successes : 3);
	e->window = calloc(e->window_cap, sizeof(*e->window));
	if (!e->window) {
		free(e);
		return NULL;
	}
	return e;
}

WS_API void ws_health_eval_free(ws_health_eval *e)
{
	if (!e)
		return;
	for (size_t i = 0; i < e->kept_len; i++)
		free(e->kept[i].error);
	free(e->window);
	free(e);
}

WS_API uint64_t ws_health_eval_median_us(const ws_health_eval *e)
{
	uint64_t *v = malloc(e->window_cap * sizeof(*v));
	if (!v)
		return 0;
	memcpy(v, e->window, e->window_len * sizeof(*v));
	uint64_t m = ws_health_median(v, e->window_len);
	free(v);
	return m;
}

static void keep(ws_health_eval *e, const ws_health_sample *s, bool ok)
{
	kept_sample *k = &e->kept[e->kept_next];
	if (e->kept_len == WS_HEALTH_MAX_SAMPLES)
		free(k->error);
	else
		e->kept_len++;
	e->kept_next = (e->kept_next + 1) % WS_HEALTH_MAX_SAMPLES;
	k->at_ms = s->at_ms;
	k->ok = ok;
	k->answered = s->answered;
	k->status = s->status;
	k->latency_us = s->latency_us;
	k->error = s->error ? strdup(s->error) : NULL;
}

WS_API ws_health_verdict ws_health_eval_feed(ws_health_eval *e, const ws_health_sample *s)
{
	bool ok = ws_health_sample_ok(&e->cfg, s);
	keep(e, s, ok);
	e->total++;
	if (s->answered) {
		e->window[e->window_next] = s->latency_us;
		e->window_next = (e->window_next + 1) % e->window_cap;
		if (e->window_len < e->window_cap)
			e->window_len++;
	}
	if (ok) {
		e->successes++;
		e->failures = 0;
	} else {
		e->failures++;
		e->successes = 0;
	}
	if (e->verdict == WS_HEALTH_FAIL)
		return e->verdict;
	/* Rule 1. */
	if (!ok && e->failures >= e->cfg.max_consecutive_failures) {
		char cause[256];
		sample_cause(&e->cfg, s, cause, sizeof(cause));
		snprintf(e->reason, sizeof(e->reason), "%d consecutive failure%s: %s", e->failures,
			 e->failures == 1 ? "" : "s", cause);
		e->verdict = WS_HEALTH_FAIL;
		return e->verdict;
	}
	/* Rule 2. */
	uint64_t median = 0;
	if (e->window_len >= (size_t)e->cfg.consecutive_successes) {
		median = ws_health_eval_median_us(e);
		if (e->baseline_us > 0) {
			uint64_t base = e->baseline_us < WS_HEALTH_BASELINE_FLOOR_US
						? WS_HEALTH_BASELINE_FLOOR_US : e->baseline_us;
			if ((double)median > e->cfg.latency_regression * (double)base) {
				char m[32], b[32];
				fmt_ms(median, m, sizeof(m));
				fmt_ms(base, b, sizeof(b));
				snprintf(e->reason, sizeof(e->reason),
					 "median latency %s > %g × baseline %s", m,
					 e->cfg.latency_regression, b);
				e->verdict = WS_HEALTH_FAIL;
				return e->verdict;
			}
		}
	}
	/* Rule 3. */
	if (e->successes >= e->cfg.consecutive_successes) {
		char m[32], b[48];
		fmt_ms(median, m, sizeof(m));
		if (e->baseline_us > 0) {
			char bb[32];
			fmt_ms(e->baseline_us, bb, sizeof(bb));
			snprintf(b, sizeof(b), "baseline %s", bb);
		} else {
			snprintf(b, sizeof(b), "no baseline");
		}
		snprintf(e->reason, sizeof(e->reason), "%d consecutive successes, median latency %s (%s)",
			 e->successes, m, b);
		e->verdict = WS_HEALTH_PASS;
	}
	return e->verdict;
}

WS_API ws_health_verdict ws_health_eval_verdict(const ws_health_eval *e)
{
	return e->verdict;
}

WS_API const char *ws_health_eval_reason(const ws_health_eval *e)
{
	return e->reason;
}

static json_t *ms_json(uint64_t us)
{
	return json_real((double)us / 1000.0);
}

WS_API json_t *ws_health_eval_evidence(const ws_health_eval *e)
{
	json_t *samples = json_array();
	size_t first = e->kept_len < WS_HEALTH_MAX_SAMPLES ? 0 : e->kept_next;
	for (size_t i = 0; i < e->kept_len; i++) {
		const kept_sample *k = &e->kept[(first + i) % WS_HEALTH_MAX_SAMPLES];
		json_t *o = json_object();
		if (k->at_ms)
			json_object_set_new(o, "at_ms", json_integer(k->at_ms));
		json_object_set_new(o, "ok", json_boolean(k->ok));
		if (k->answered) {
			json_object_set_new(o, "status", json_integer(k->status));
			json_object_set_new(o, "latency_ms", ms_json(k->latency_us));
		}
		if (k->error)
			json_object_set_new(o, "error", json_string(k->error));
		json_array_append_new(samples, o);
	}
	json_t *doc = json_object();
	json_object_set_new(doc, "verdict", json_string(ws_health_verdict_name(e->verdict)));
	json_object_set_new(doc, "reason", json_string(e->reason));
	json_object_set_new(doc, "baseline_ms", e->baseline_us ? ms_json(e->baseline_us) : json_null());
	json_object_set_new(doc, "median_ms", ms_json(ws_health_eval_median_us(e)));
	json_object_set_new(doc, "consecutive_successes", json_integer(e->successes));
	json_object_set_new(doc, "consecutive_failures", json_integer(e->failures));
	json_object_set_new(doc, "samples_total", json_integer((json_int_t)e->total));
	json_object_set_new(doc, "samples_dropped", json_integer((json_int_t)(e->total - e->kept_len)));
	json_object_set_new(doc, "samples", samples);
	return doc;
}

/* ---- the prober --------------------------------------------------------- */

struct ws_probe_target {
	ws_prober *p;
	char *url;
	uint64_t interval_ms, timeout_ms;
	ws_probe_cb cb;
	void *arg;
	uv_timer_t timer;
	ws_outbound_call *call;     /* the probe in flight, or NULL */
	uint64_t started;           /* uv_now of the probe's start */
	int64_t started_wall_ms;
	bool removed;
	bool closing;
	/* baseline mode */
	ws_baseline_cb bcb;
	void *barg;
	int k, done;
	uint64_t *lat;
	size_t n_lat;
	json_t *bsamples;
	char last_cause[256];
	ws_probe_target *prev, *next;
};

struct ws_prober {
	uv_loop_t *loop;
	ws_outbound *out;
	ws_probe_target *head;
	size_t n_active;            /* not removed */
	size_t n_alive;             /* not yet freed */
	uv_timer_t closer;          /* never started: its close defers the close callback */
	bool closing, closer_closed;
	void (*close_cb)(void *arg);
	void *close_arg;
	struct ws_metrics *metrics;
};

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

WS_API ws_prober *ws_prober_new(uv_loop_t *loop, ws_outbound *out)
{
	ws_prober *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->loop = loop;
	p->out = out;
	uv_timer_init(loop, &p->closer);
	p->closer.data = p;
	return p;
}

static void prober_maybe_finish(ws_prober *p)
{
	if (!p->closing || !p->closer_closed || p->n_alive > 0)
		return;
	void (*cb)(void *) = p->close_cb;
	void *arg = p->close_arg;
	free(p);
	if (cb)
		cb(arg);
}

static void target_close_cb(uv_handle_t *h)
{
	ws_probe_target *t = h->data;
	ws_prober *p = t->p;
	free(t->url);
	free(t->lat);
	json_decref(t->bsamples);
	free(t);
	p->n_alive--;
	prober_maybe_finish(p);
}

/* Frees the target once no probe is in flight (probe_done comes back for
 * the cancelled one). */
static void target_close(ws_probe_target *t)
{
	if (t->closing || t->call)
		return;
	t->closing = true;
	uv_close((uv_handle_t *)&t->timer, target_close_cb);
}

WS_API void ws_prober_remove(ws_probe_target *t)
{
	if (t->removed)
		return;
	ws_prober *p = t->p;
	t->removed = true;
	p->n_active--;
	if (t->prev)
		t->prev->next = t->next;
	else
		p->head = t->next;
	if (t->next)
		t->next->prev = t->prev;
	t->prev = t->next = NULL;
	uv_timer_stop(&t->timer);
	if (t->call)
		ws_outbound_cancel(t->call);
	else
		target_close(t);
}

static void closer_close_cb(uv_handle_t *h)
{
	ws_prober *p = h->data;
	p->closer_closed = true;
	prober_maybe_finish(p);
}

WS_API void ws_prober_close(ws_prober *p, void (*cb)(void *arg), void *arg)
{
	if (p->closing)
		return;
	p->closing = true;
	p->close_cb = cb;
	p->close_arg = arg;
	while (p->head)
		ws_prober_remove(p->head);
	/* Closing a handle always calls back from the loop, so the close
	 * callback never runs before this function returns, even with no
	 * target left. */
	uv_close((uv_handle_t *)&p->closer, closer_close_cb);
}

WS_API size_t ws_prober_count(const ws_prober *p)
{
	return p->n_active;
}

static void probe_timer_cb(uv_timer_t *timer);

static void schedule_next(ws_probe_target *t)
{
	uint64_t now = uv_now(t->p->loop);
	uint64_t elapsed = now - t->started;
	uint64_t wait = elapsed >= t->interval_ms ? 0 : t->interval_ms - elapsed;
	uv_timer_start(&t->timer, probe_timer_cb, wait, 0);
}

static void baseline_sample(ws_probe_target *t, const ws_health_sample *s);

void ws_prober_set_metrics(ws_prober *p, struct ws_metrics *m)
{
	p->metrics = m;
}

/* Probe latencies as the probes saw them, by outcome: "ok" (a 2xx),
 * "status" (answered otherwise), "error" (no answer: time-out, refused). */
static void observe(ws_prober *p, const ws_health_sample *s)
{
	static const double buckets[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 };
	if (!p->metrics)
		return;
	const char *outcome = !s->answered ? "outcome=\"error\""
			      : s->status >= 200 && s->status < 300 ? "outcome=\"ok\"" : "outcome=\"status\"";
	ws_metrics_histogram_observe(p->metrics, "wavesched_probe_duration_seconds",
				     "Health probe latencies (baseline, verification and soak probes).", outcome,
				     buckets, sizeof(buckets) / sizeof(buckets[0]), (double)s->latency_us / 1e6);
}

static void deliver(ws_probe_target *t, const ws_health_sample *s)
{
	observe(t->p, s);
	if (t->bcb)
		baseline_sample(t, s);
	else
		t->cb(t->arg, t, s);
	if (!t->removed)
		schedule_next(t);
}

static void probe_done(void *arg, const ws_outbound_res *r)
{
	ws_probe_target *t = arg;
	t->call = NULL;
	if (t->removed) {
		target_close(t);
		return;
	}
	ws_health_sample s = {
		.answered = r->reason == WS_OUT_OK,
		.status = (int)r->status,
		.latency_us = r->latency_us,
		.error = r->error,
		.at_ms = t->started_wall_ms,
	};
	deliver(t, &s);
}

static void probe_timer_cb(uv_timer_t *timer)
{
	ws_probe_target *t = timer->data;
	t->started = uv_now(t->p->loop);
	t->started_wall_ms = wall_ms();
	ws_outbound_req req = { .url = t->url, .timeout_ms = t->timeout_ms };
	int rc = ws_outbound_request(t->p->out, &req, probe_done, t, &t->call);
	if (rc != 0) {
		/* Fail closed: a probe that cannot start is a failed probe. */
		char err[512];
		snprintf(err, sizeof(err), "GET %s: cannot start the probe (%s)", t->url, ws_strerror(rc));
		t->call = NULL;
		ws_health_sample s = { .error = err, .at_ms = t->started_wall_ms };
		deliver(t, &s);
	}
}

static ws_probe_target *target_new(ws_prober *p, const char *url, uint64_t interval_ms,
				   uint64_t timeout_ms)
{
	if (p->closing || !url || !*url || interval_ms == 0)
		return NULL;
	ws_probe_target *t = calloc(1, sizeof(*t));
	if (!t || !(t->url = strdup(url))) {
		free(t);
		return NULL;
	}
	t->p = p;
	t->interval_ms = interval_ms;
	t->timeout_ms = timeout_ms == 0 || timeout_ms > interval_ms ? interval_ms : timeout_ms;
	uv_timer_init(p->loop, &t->timer);
	t->timer.data = t;
	t->next = p->head;
	if (p->head)
		p->head->prev = t;
	p->head = t;
	p->n_active++;
	p->n_alive++;
	/* The first probe at once, from the loop. */
	uv_timer_start(&t->timer, probe_timer_cb, 0, 0);
	return t;
}

WS_API ws_probe_target *ws_prober_add(ws_prober *p, const char *url, uint64_t interval_ms,
				      uint64_t timeout_ms, ws_probe_cb cb, void *arg)
{
	if (!cb)
		return NULL;
	ws_probe_target *t = target_new(p, url, interval_ms, timeout_ms);
	if (t) {
		t->cb = cb;
		t->arg = arg;
	}
	return t;
}

static void baseline_sample(ws_probe_target *t, const ws_health_sample *s)
{
	json_t *o = json_object();
	json_object_set_new(o, "at_ms", json_integer(s->at_ms));
	if (s->answered) {
		json_object_set_new(o, "status", json_integer(s->status));
		json_object_set_new(o, "latency_ms", json_real((double)s->latency_us / 1000.0));
	}
	if (s->error)
		json_object_set_new(o, "error", json_string(s->error));
	json_array_append_new(t->bsamples, o);
	if (s->answered && s->status >= 200 && s->status <= 299)
		t->lat[t->n_lat++] = s->latency_us;
	else if (!s->answered)
		snprintf(t->last_cause, sizeof(t->last_cause), "%s", s->error ? s->error : "no answer");
	else
		snprintf(t->last_cause, sizeof(t->last_cause), "HTTP %d", s->status);
	if (++t->done < t->k)
		return;
	uint64_t median = ws_health_median(t->lat, t->n_lat);
	json_t *ev = json_object();
	json_object_set_new(ev, "url", json_string(t->url));
	json_object_set_new(ev, "median_ms", t->n_lat ? json_real((double)median / 1000.0) : json_null());
	json_object_set_new(ev, "samples", json_incref(t->bsamples));
	char reason[512] = "";
	if (t->n_lat == 0)
		snprintf(reason, sizeof(reason), "no successful probe of %s out of %d: %s", t->url, t->k,
			 t->last_cause);
	ws_prober_remove(t);   /* freed later: t stays valid for the callback */
	t->bcb(t->barg, t->n_lat > 0, median, t->n_lat ? NULL : reason, ev);
	json_decref(ev);
}

WS_API ws_probe_target *ws_prober_baseline(ws_prober *p, const char *url, int k,
					   uint64_t interval_ms, uint64_t timeout_ms,
					   ws_baseline_cb cb, void *arg)
{
	if (!cb || k < 1 || k > 1000)
		return NULL;
	uint64_t *lat = calloc((size_t)k, sizeof(*lat));
	json_t *samples = json_array();
	ws_probe_target *t = lat && samples ? target_new(p, url, interval_ms, timeout_ms) : NULL;
	if (!t) {
		free(lat);
		json_decref(samples);
		return NULL;
	}
	t->bcb = cb;
	t->barg = arg;
	t->k = k;
	t->lat = lat;
	t->bsamples = samples;
	return t;
}
