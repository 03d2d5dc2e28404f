/*
 * engine_fx.c - what the engine does outside the database, once the rows say
 * so: the baseline probes before a deploy, the deploy (or rollback) call of a
 * pending outbox intent, and the health probes of verification and soak.
 * Each reports by submitting transitions (engine_submit); nothing here
 * changes a state by itself.  The one exception is the GET of a tenant's
 * backup status (a gate with `source: http`), which changes no row: its
 * answer goes to the rollout's status cache (backup_gate.h) for the
 * decision to judge, and the rollout is decided again.  The metric gate's
 * queries likewise fill the rollout's metric cache (metric_gate.h); they
 * write a gate row only when the tenant's verdict changes (first wait,
 * pass), never one per evaluation.
 *
 * The health gate's rules are include/wavesched/health.h's evaluator, fed by
 * the prober (every probe of the process on one curl multi handle).  A
 * verification passes or fails on the evaluator's verdict; during the soak
 * only a failure counts.  Intervals are schedule time, so they shrink under
 * --time-scale, with a floor (PROBE_FLOOR_MS of real time) that keeps a fast
 * clock from turning probes into a flood; the prober caps a probe's time-out
 * at its interval.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "engine_internal.h"
#include "wavesched/log.h"
#include "wavesched/window.h"

#define US 1000000LL
#define BASELINE_PROBES 3
#define PROBE_FLOOR_MS 400
/* The baseline: three probes in quick succession just before the deploy.
 * Taken back to back, they cost the deploy a few milliseconds, not seconds. */
#define BASELINE_SPACING_MS 1
#define POLL_MS 1000
#define CALL_TIMEOUT_S (30 * 60)
/* One status GET, real time like every single network call. */
#define BACKUP_TIMEOUT_MS 10000
/* One Prometheus query, real time: an instant query answers in
 * milliseconds, and a gate that waits longer has its answer (fail). */
#define METRIC_TIMEOUT_MS 10000

static json_t *now_json(ws_engine *e)
{
	char b[40];
	ws_time_format(ws_clock_now(e->clock) / US, 0, true, b, sizeof(b));
	return json_string(b);
}

efx *fx_find(ws_engine *e, int64_t dep_id)
{
	for (efx *f = e->fx; f; f = f->next)
		if (f->dep_id == dep_id && !f->cancelled)
			return f;
	return NULL;
}

bool fx_find_run(ws_engine *e, const erun *run)
{
	for (efx *f = e->fx; f; f = f->next)
		if (f->run == run && !f->cancelled)
			return true;
	return false;
}

static void fx_unlink(efx *f)
{
	for (efx **p = &f->e->fx; *p; p = &(*p)->next)
		if (*p == f) {
			*p = f->next;
			return;
		}
}

static void fx_free(efx *f)
{
	free(f->slug);
	free(f->cluster);
	free(f->health_url);
	free(f->key);
	free(f->version);
	free(f->previous_version);
	free(f->outbox_kind);
	free(f->backup_url);
	json_decref(f->metric_list);
	free(f->metric_query);
	free(f->metric_url);
	json_decref(f->metric_results);
	ws_health_eval_free(f->eval);
	json_decref(f->deploy);
	free(f);
}

/* Ends an effect: unlinked at once; freed now, or by the deploy call's
 * callback that is still to come. */
static void fx_end(efx *f)
{
	if (!f->cancelled)
		fx_unlink(f);
	f->cancelled = true;
	if (f->target) {
		ws_prober_remove(f->target);   /* no callback after this */
		f->target = NULL;
	}
	if (!f->job && !f->awaiting && !f->call)
		fx_free(f);
}

void fx_cancel(efx *f)
{
	if (f->job)
		ws_deploy_job_cancel(f->job);   /* its callback frees the effect */
	if (f->call)
		ws_outbound_cancel(f->call);    /* likewise */
	if (!f->cancelled)
		fx_end(f);
}

void fx_cancel_run(ws_engine *e, erun *run)
{
	for (efx *f = e->fx, *next; f; f = next) {
		next = f->next;
		if (f->run == run)
			fx_cancel(f);
	}
}

static void submit(efx *f, json_t *ops)
{
	erun *run = f->run;
	fx_end(f);
	engine_submit(run, ops);
}

static json_t *dep_op(efx *f, const char *from, const char *to, const char *event,
		      const char *reason)
{
	json_t *o = json_pack("{s:s, s:I, s:s, s:s, s:s, s:o}", "op", "deployment", "id",
			      (json_int_t)f->dep_id, "from", from, "to", to, "event", event, "at",
			      now_json(f->e));
	if (reason)
		json_object_set_new(o, "reason", json_string(reason));
	return o;
}

static json_t *gate_op(efx *f, const char *gate, const char *result, json_t *evidence)
{
	return json_pack("{s:s, s:I, s:I, s:I, s:s, s:s, s:o, s:o}", "op", "gate", "rollout",
			 (json_int_t)f->run->id, "wave", (json_int_t)f->wave_id, "deployment",
			 (json_int_t)f->dep_id, "gate", gate, "result", result, "evidence",
			 evidence ? evidence : json_object(), "at", now_json(f->e));
}

/* Probes --------------------------------------------------------------------- */

static void verdict(efx *f, bool pass, const char *why)
{
	json_t *ev = f->eval ? ws_health_eval_evidence(f->eval) : json_object();
	if (!ev)
		ev = json_object();
	json_object_set_new(ev, "probes", json_integer(f->probes));
	if (why)
		json_object_set_new(ev, "reason", json_string(why));
	json_t *ops = json_array();
	if (f->soak)
		/* A soak failure counts only while the wave is soaking. */
		json_array_append_new(ops, json_pack("{s:s, s:s, s:I, s:s}", "op", "check", "object",
						     "wave", "id", (json_int_t)f->wave_id, "state",
						     "soaking"));
	json_array_append_new(ops, gate_op(f, "health", pass ? "pass" : "fail", ev));
	if (pass)
		json_array_append_new(ops, dep_op(f, "verifying", "healthy", "healthy", NULL));
	else
		json_array_append_new(ops, dep_op(f, f->soak ? "healthy" : "verifying", "failed", "fail",
						  why));
	submit(f, ops);
}

static void probe_cb(void *arg, ws_probe_target *t, const ws_health_sample *sample)
{
	efx *f = arg;
	(void)t;
	f->e->stats.probes++;
	f->probes++;
	ws_health_verdict v = ws_health_eval_feed(f->eval, sample);
	if (v == WS_HEALTH_FAIL)
		verdict(f, false, ws_health_eval_reason(f->eval));
	else if (v == WS_HEALTH_PASS && !f->soak)
		verdict(f, true, NULL);
}

static void probe_start(efx *f)
{
	f->eval = ws_health_eval_new(&f->health, f->baseline_us > 0 ? (uint64_t)f->baseline_us : 0);
	uint64_t every = ws_clock_real_ms(f->e->clock, f->health.interval_s * US);
	if (every < PROBE_FLOOR_MS)
		every = PROBE_FLOOR_MS;
	f->target = f->eval ? ws_prober_add(f->e->prober, f->health_url, every,
					    (uint64_t)f->health.timeout_s * 1000, probe_cb, f) : NULL;
	if (!f->target)
		verdict(f, false, "cannot start the health probes");
}

static void deploy_start(efx *f);

/* Baseline, then the deploy intent --------------------------------------------- */

static void deploy_intent(efx *f, const json_t *baseline, int64_t median_us, const char *why)
{
	ws_engine *e = f->e;
	json_t *ops = json_array();
	/* A person's pause or abort between the decision and now wins. */
	json_array_append_new(ops, json_pack("{s:s, s:s, s:I, s:s}", "op", "check", "object",
					     "rollout", "id", (json_int_t)f->run->id, "state",
					     "running"));
	if (baseline) {
		json_t *ev = json_deep_copy(baseline);
		if (!json_is_object(ev)) {
			json_decref(ev);
			ev = json_object();
		}
		if (median_us > 0)
			json_object_set_new(ev, "median_us", json_integer(median_us));
		else
			json_object_set_new(ev, "reason", json_string(why ? why : "no baseline"));
		json_array_append_new(ops, gate_op(f, "baseline", median_us > 0 ? "pass" : "wait", ev));
	}
	int attempt = f->attempt + 1;
	json_t *set = json_pack("{s:i, s:o}", "attempt", attempt, "started_at", now_json(e));
	json_t *op = dep_op(f, "waiting_window", "deploying", "deploy", NULL);
	json_object_set_new(op, "set", set);
	json_array_append_new(ops, op);
	json_array_append_new(ops, json_pack("{s:s, s:I, s:s, s:i, s:{s:s, s:s?}}", "op", "outbox",
					     "deployment", (json_int_t)f->dep_id, "kind", "deploy",
					     "attempt", attempt, "request", "version", f->version,
					     "previous_version", f->previous_version));
	/* The same effect makes the call as soon as the intent is committed,
	 * with the outbox row's id and key from the commit's result: no reload
	 * stands between a window opening and the deploy call. */
	f->kind = EM_FX_DEPLOY;
	f->awaiting = true;
	f->attempt = attempt;
	engine_submit_intent(f->run, ops, json_array_size(ops) - 1, f);
}

void fx_intent_committed(efx *f, const json_t *result)
{
	f->awaiting = false;
	const char *key = json_string_value(json_object_get(result, "key"));
	json_int_t id = json_integer_value(json_object_get(result, "id"));
	if (f->cancelled || !key || id <= 0) {
		fx_end(f);
		return;
	}
	f->outbox_id = id;
	free(f->key);
	f->key = strdup(key);
	free(f->outbox_kind);
	f->outbox_kind = strdup("deploy");
	if (!f->key || !f->outbox_kind) {
		fx_end(f);   /* the next leader's decision re-issues the pending intent */
		return;
	}
	deploy_start(f);
}

static void baseline_cb(void *arg, bool ok, uint64_t median_us, const char *reason,
			const json_t *evidence)
{
	efx *f = arg;
	f->target = NULL;   /* a baseline target ends with its callback */
	json_t *ev = evidence ? json_incref((json_t *)evidence) : json_object();
	deploy_intent(f, ev, ok ? (int64_t)median_us : 0, reason);
	json_decref(ev);
}

/* Deploy calls ------------------------------------------------------------------ */

/* A reason cut to its buffer may end inside a UTF-8 sequence, which jansson
 * refuses (the op would lose its reason): drop the broken tail. */
static void utf8_cut(char *s)
{
	size_t n = strlen(s), i = n;
	while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
		i--;
	if (i == 0)
		return;
	unsigned char lead = (unsigned char)s[i - 1];
	size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
	if (n - (i - 1) < need)
		s[i - 1] = '\0';
}

static void deploy_cb(void *arg, const ws_deploy_result *res)
{
	efx *f = arg;
	f->job = NULL;
	if (f->cancelled) {
		fx_free(f);
		return;
	}
	bool rollback = strcmp(f->outbox_kind, "rollback") == 0;
	const char *from = rollback ? "rolling_back" : "deploying";
	json_t *ops = json_array();
	json_t *result = res->evidence ? json_deep_copy(res->evidence) : json_object();
	if (!json_is_object(result)) {
		json_decref(result);
		result = json_object();
	}
	if (!res->ok && res->reason)
		json_object_set_new(result, "reason", json_string(res->reason));
	/* How long the call took, in schedule time: what the expected-duration
	 * rule learns from this release (0020 ws__release_timing).  A call
	 * re-issued by a new leader counts from its re-issue, so an outage of
	 * the engine is never taken for a slow migration. */
	if (f->call_started > 0)
		json_object_set_new(result, "call_s", json_real((double)(ws_clock_now(f->e->clock) -
									 f->call_started) / 1e6));
	json_array_append_new(ops, json_pack("{s:s, s:I, s:s, s:o}", "op", "outbox_done", "id",
					     (json_int_t)f->outbox_id, "state",
					     res->ok ? "done" : "failed", "result", result));
	if (res->ok) {
		json_t *op = dep_op(f, from, rollback ? "rolled_back" : "verifying",
				    rollback ? "rollback_done" : "verify", NULL);
		if (!rollback)
			json_object_set_new(op, "set", json_pack("{s:o}", "ended_at", now_json(f->e)));
		json_array_append_new(ops, op);
	} else {
		char why[300];
		snprintf(why, sizeof(why), "%s failed: %s", rollback ? "rollback" : "deploy",
			 res->reason ? res->reason : "the executor reported a failure");
		utf8_cut(why);
		json_array_append_new(ops, dep_op(f, from, "failed", "fail", why));
	}
	submit(f, ops);
}

/* A failure found before any call: reported as the executor would. */
static void deploy_refused(efx *f, const char *why)
{
	ws_deploy_result res = { .ok = false, .reason = why };
	deploy_cb(f, &res);
}

static void deploy_start(efx *f)
{
	ws_engine *e = f->e;
	f->call_started = ws_clock_now(e->clock);
	char rollout[24];
	snprintf(rollout, sizeof(rollout), "%" PRId64, f->run->id);
	bool rollback = strcmp(f->outbox_kind, "rollback") == 0;
	ws_deploy_call call = {
		.rollout_id = rollout,
		.slug = f->slug,
		.cluster = f->cluster,
		.version = rollback ? f->previous_version : f->version,
		.previous_version = rollback ? f->version : f->previous_version,
		.artifact = f->run->model && f->run->model->digest ? f->run->model->digest : "",
		.idempotency_key = f->key,
		.rollback = rollback,
		.health_url = f->health_url,
	};
	for (size_t i = 0; f->run->model && i < f->run->model->nw; i++)
		if (f->run->model->w[i].id == f->wave_id)
			call.wave = f->run->model->w[i].name;   /* gitops: the commit's trailer */
	/* Polls and the call's deadline are schedule time: a deploy that takes
	 * minutes takes milliseconds under --time-scale, like everything else.
	 * Floors keep a fast clock from polling a deployer to death. */
	int64_t timeout_s = CALL_TIMEOUT_S;
	const char *t = json_string_value(json_object_get(f->deploy, "timeout"));
	if (t && ws_duration_parse(t, &timeout_s) != 0)
		timeout_s = CALL_TIMEOUT_S;
	uint64_t poll = ws_clock_real_ms(e->clock, 10 * US);
	call.poll_interval_ms = poll < 5 ? 5 : poll > POLL_MS ? POLL_MS : poll;
	uint64_t tmo = ws_clock_real_ms(e->clock, timeout_s * US);
	call.timeout_ms = tmo < 2000 ? 2000 : tmo;
	e->stats.deploy_calls++;
	if (!f->deploy) {
		deploy_refused(f, "the cluster has no deploy settings");
		return;
	}
	if (!call.version || !f->key) {
		deploy_refused(f, "no version or idempotency key to deploy with");
		return;
	}
	ws_diags d;
	ws_diags_init(&d);
	ws_executor *x = ws_executor_new(e->loop, e->outbound, f->cluster, f->deploy, &d);
	if (!x) {
		char *msg = d.len ? ws_diag_format(&d.items[0]) : NULL;
		deploy_refused(f, msg ? msg : "invalid deploy settings");
		free(msg);
		ws_diags_free(&d);
		return;
	}
	ws_diags_free(&d);
	ws_info("engine", "rollout %s: %s %s to %s (key %s)", rollout,
		rollback ? "rolling back" : "deploying", f->slug, call.version, f->key);
	int rc = ws_executor_run(x, &call, deploy_cb, f, &f->job);
	ws_executor_free(x);   /* the job keeps what it needs */
	if (rc != 0) {
		f->job = NULL;
		deploy_refused(f, "the executor refused the call");
	}
}

/* Backup status (source http) ---------------------------------------------------- */

static void backup_done(efx *f, long http_status, int64_t last_success, int64_t restore_at,
			const char *error)
{
	erun *run = f->run;
	em_backup_status st = { .checked_at = ws_clock_now(f->e->clock), .last_success = last_success,
				.restore_verified_at = restore_at,
				.http_status = http_status, .url = f->backup_url, .error = error };
	if (error)
		ws_info("engine", "rollout %" PRId64 " tenant=%s: backup status %s: %s", run->id,
			f->slug, f->backup_url ? f->backup_url : "-", error);
	if (!backup_cache_put(&run->backups, f->dep_id, &st))
		ws_warn("engine", "rollout %" PRId64 " tenant=%s: out of memory keeping the backup status",
			run->id, f->slug);
	fx_end(f);
	engine_wake(run);
}

static void backup_cb(void *arg, const ws_outbound_res *res)
{
	efx *f = arg;
	f->call = NULL;
	if (f->cancelled) {
		fx_free(f);
		return;
	}
	char why[300];
	int64_t at = EM_NONE, restore = EM_NONE;
	if (res->reason != WS_OUT_OK) {
		/* The outbound layer names the call ("GET URL: why"); the reason
		 * built from this names the URL already. */
		const char *err = res->error ? res->error : ws_outbound_reason_name(res->reason);
		size_t ul = f->backup_url ? strlen(f->backup_url) : 0;
		if (ul && strncmp(err, "GET ", 4) == 0 && strncmp(err + 4, f->backup_url, ul) == 0 &&
		    strncmp(err + 4 + ul, ": ", 2) == 0)
			err += 4 + ul + 2;
		snprintf(why, sizeof(why), "%s", err);
	} else if (res->status < 200 || res->status > 299) {
		snprintf(why, sizeof(why), "HTTP %ld", res->status);
	} else if (backup_status_parse(res->body, res->body_len, &at, &restore, why, sizeof(why)) == 0) {
		backup_done(f, res->status, at, restore, NULL);
		return;
	}
	backup_done(f, res->status, EM_NONE, EM_NONE, why);
}

static void backup_fetch(efx *f, const char *tmpl)
{
	if (!tmpl) {
		backup_done(f, 0, EM_NONE, EM_NONE, "the backup gate has no status url");
		return;
	}
	if (!f->cluster) {
		backup_done(f, 0, EM_NONE, EM_NONE, "the tenant is not in the fleet");
		return;
	}
	f->backup_url = backup_url_expand(tmpl, f->slug, f->cluster);
	if (!f->backup_url) {
		backup_done(f, 0, EM_NONE, EM_NONE, "out of memory");
		return;
	}
	static const char *const headers[] = { "Accept: application/json", NULL };
	ws_outbound_req req = { .method = "GET", .url = f->backup_url, .headers = headers,
				.timeout_ms = BACKUP_TIMEOUT_MS, .max_bytes = BACKUP_STATUS_MAX_BYTES };
	if (ws_outbound_request(f->e->outbound, &req, backup_cb, f, &f->call) != 0) {
		f->call = NULL;
		backup_done(f, 0, EM_NONE, EM_NONE, "cannot start the request");
	}
}

/* Metric gate ---------------------------------------------------------------------- */

static void metric_next(efx *f);

/* One metric's result for this evaluation: what the gate row will show of
 * it, and a reason naming the metric, the query as sent and the problem. */
static void metric_result(efx *f, long http_status, json_t *samples, const char *problem)
{
	json_t *m = json_array_get(f->metric_list, f->metric_i);
	const char *name = json_string_value(json_object_get(m, "name"));
	json_t *ev = json_pack("{s:s, s:s?, s:s?, s:O, s:o, s:I}", "name", name, "query",
			       f->metric_query, "url", f->metric_url, "for_s",
			       json_object_get(m, "for_s"), "http_status",
			       http_status ? json_integer(http_status) : json_null(), "n_samples",
			       (json_int_t)json_array_size(samples));
	json_t *b;
	if ((b = json_object_get(m, "min")))
		json_object_set(ev, "min", b);
	if ((b = json_object_get(m, "max")))
		json_object_set(ev, "max", b);
	json_t *kept = json_array();
	for (size_t i = 0; i < json_array_size(samples) && i < METRIC_SAMPLES_KEPT; i++)
		json_array_append(kept, json_array_get(samples, i));
	json_object_set_new(ev, "samples", kept);
	char why[700] = "";
	if (problem) {
		snprintf(why, sizeof(why), "metric %s (query %.300s): %s", name,
			 f->metric_query ? f->metric_query : json_string_value(json_object_get(m, "query")),
			 problem);
		utf8_cut(why);
	}
	json_array_append_new(f->metric_results,
			      json_pack("{s:s, s:b, s:s?, s:o}", "name", name, "ok", !problem, "reason",
					problem ? why : NULL, "evidence", ev ? ev : json_object()));
	json_decref(samples);
	f->metric_i++;
}

static const em_metric_status *metric_lookup(void *arg, const char *name)
{
	efx *f = arg;
	return metric_cache_get(f->run->metrics, f->dep_id, name);
}

/* Every check has answered: the results go to the cache with one time, and
 * a row is written when the tenant's verdict is new. */
static void metrics_done(efx *f)
{
	erun *run = f->run;
	int64_t at = ws_clock_now(f->e->clock);
	size_t i;
	json_t *r;
	bool stored = true;
	/* Evaluations come every metric TTL while the tenant waits at its
	 * window; a longer gap (a pause, the cluster cap, a move to another
	 * window, a new leader) means nobody watched the metric: `for` starts
	 * again rather than trusting an old run of good answers. */
	int64_t gap = 2 * engine_metric_ttl_s(f->e) * US + US;
	json_array_foreach(f->metric_results, i, r)
		stored = metric_cache_put(&run->metrics, f->dep_id,
					  json_string_value(json_object_get(r, "name")), at,
					  json_is_true(json_object_get(r, "ok")),
					  json_string_value(json_object_get(r, "reason")),
					  json_object_get(r, "evidence"), gap) && stored;
	if (!stored)
		ws_warn("engine", "rollout %" PRId64 " tenant=%s: out of memory keeping metric results",
			run->id, f->slug);
	char why[800];
	int v = metric_gate_judge(f->metric_list, metric_lookup, f, at, why, sizeof(why));
	const char *result = v > 0 ? "pass" : v == 0 ? "wait" : NULL;
	const char *before = metric_cache_recorded(run->metrics, f->dep_id);
	if (v == 0 && (!before || strcmp(before, "wait") != 0))
		ws_info("engine", "rollout %" PRId64 " tenant=%s: held by its metric gate: %s", run->id,
			f->slug, why);
	if (!result || (before && strcmp(before, result) == 0)) {
		fx_end(f);
		engine_wake(run);
		return;
	}
	json_t *list = json_array();
	json_array_foreach(f->metric_list, i, r) {
		const json_t *ev = metric_cache_evidence(run->metrics, f->dep_id,
							 json_string_value(json_object_get(r, "name")));
		if (ev)
			json_array_append_new(list, json_deep_copy(ev));
	}
	json_t *ev = json_pack("{s:o}", "metrics", list);
	if (v == 0) {
		utf8_cut(why);
		json_object_set_new(ev, "reason", json_string(why));
	}
	metric_cache_set_recorded(run->metrics, f->dep_id, result);
	json_t *ops = json_array();
	json_array_append_new(ops, gate_op(f, "metrics", result, ev));
	submit(f, ops);
}

static void metric_cb(void *arg, const ws_outbound_res *res)
{
	efx *f = arg;
	f->call = NULL;
	if (f->cancelled) {
		fx_free(f);
		return;
	}
	char why[400], pw[300];
	json_t *samples = NULL;
	json_t *m = json_array_get(f->metric_list, f->metric_i);
	if (res->reason != WS_OUT_OK) {
		const char *err = res->error ? res->error : ws_outbound_reason_name(res->reason);
		size_t ul = f->metric_url ? strlen(f->metric_url) : 0;
		/* The reason names the query already; the URL is in the evidence. */
		if (ul && strncmp(err, "GET ", 4) == 0 && strncmp(err + 4, f->metric_url, ul) == 0 &&
		    strncmp(err + 4 + ul, ": ", 2) == 0)
			err += 4 + ul + 2;
		snprintf(why, sizeof(why), "Prometheus %s: %s", f->e->prometheus_url, err);
	} else if (res->status < 200 || res->status > 299) {
		/* Prometheus explains a refused query in a JSON error body. */
		if (metric_answer_parse(res->body, res->body_len, &samples, pw, sizeof(pw)) == 0) {
			json_decref(samples);
			samples = NULL;
			snprintf(why, sizeof(why), "HTTP %ld", res->status);
		} else {
			snprintf(why, sizeof(why), "HTTP %ld: %s", res->status, pw);
		}
	} else if (metric_answer_parse(res->body, res->body_len, &samples, pw, sizeof(pw)) != 0) {
		snprintf(why, sizeof(why), "%s", pw);
	} else {
		json_t *mn = json_object_get(m, "min"), *mx = json_object_get(m, "max");
		bool ok = metric_samples_judge(samples, mn != NULL, json_number_value(mn), mx != NULL,
					       json_number_value(mx), why, sizeof(why));
		metric_result(f, res->status, samples, ok ? NULL : why);
		metric_next(f);
		return;
	}
	metric_result(f, res->status, samples, why);
	metric_next(f);
}

/* Asks the next check, or ends the evaluation; checks that cannot be asked
 * fail closed with the reason. */
static void metric_next(efx *f)
{
	while (f->metric_i < json_array_size(f->metric_list)) {
		json_t *m = json_array_get(f->metric_list, f->metric_i);
		free(f->metric_query);
		free(f->metric_url);
		f->metric_url = NULL;
		f->metric_query = metric_query_expand(json_string_value(json_object_get(m, "query")),
						      f->slug, f->cluster, f->version);
		if (!f->metric_query) {
			metric_result(f, 0, NULL, "out of memory");
			continue;
		}
		if (!f->cluster) {
			metric_result(f, 0, NULL, "the tenant is not in the fleet");
			continue;
		}
		if (!f->e->prometheus_url) {
			metric_result(f, 0, NULL, "prometheus_url is not configured");
			continue;
		}
		f->metric_url = metric_query_url(f->e->prometheus_url, f->metric_query);
		if (!f->metric_url) {
			metric_result(f, 0, NULL, "out of memory");
			continue;
		}
		static const char *const headers[] = { "Accept: application/json", NULL };
		ws_outbound_req req = { .method = "GET", .url = f->metric_url, .headers = headers,
					.timeout_ms = METRIC_TIMEOUT_MS,
					.max_bytes = METRIC_ANSWER_MAX_BYTES };
		if (ws_outbound_request(f->e->outbound, &req, metric_cb, f, &f->call) == 0)
			return;
		f->call = NULL;
		metric_result(f, 0, NULL, "cannot start the request");
	}
	metrics_done(f);
}

static void metrics_start(efx *f, const json_t *metrics)
{
	f->metric_list = json_deep_copy(metrics);
	f->metric_results = json_array();
	f->metric_i = 0;
	if (!f->metric_list || !f->metric_results) {
		fx_end(f);   /* asked again at the next decision */
		return;
	}
	metric_next(f);
}

/* Starting ---------------------------------------------------------------------- */

void fx_start(erun *run, const em_wave *w, const em_dep *d, em_fx kind)
{
	ws_engine *e = run->e;
	if (fx_find(e, d->id) || !e->snap)
		return;
	const ws_fleet *fl = e->snap->fleet;
	const ws_tenant *t = fleet_tenant(fl, d->slug);
	efx *f = calloc(1, sizeof(*f));
	if (!f)
		return;
	f->e = e;
	f->run = run;
	f->dep_id = d->id;
	f->wave_id = w->id;
	f->kind = kind;
	f->attempt = d->attempt;
	f->health = w->s.health;
	f->baseline_us = d->baseline_us;
	f->soak = d->state == WS_DEP_HEALTHY;
	f->slug = strdup(d->slug);
	f->version = d->target_version ? strdup(d->target_version) : NULL;
	f->previous_version = d->previous_version ? strdup(d->previous_version) : NULL;
	f->key = d->outbox_key ? strdup(d->outbox_key) : NULL;
	f->outbox_kind = strdup(d->outbox_kind ? d->outbox_kind : "deploy");
	f->outbox_id = d->outbox_id;
	if (t) {
		const ws_cluster *c = &fl->clusters[t->cluster_index];
		f->cluster = strdup(c->name);
		f->health_url = t->health_url ? strdup(t->health_url) : NULL;
		f->deploy = c->deploy ? json_deep_copy(c->deploy) : NULL;
	}
	f->next = e->fx;
	e->fx = f;
	switch (kind) {
	case EM_FX_BASELINE:
		if (!f->health.enabled || !f->health_url) {
			deploy_intent(f, NULL, 0, NULL);
		} else if (!(f->target = ws_prober_baseline(e->prober, f->health_url, BASELINE_PROBES,
							    BASELINE_SPACING_MS,
							    (uint64_t)f->health.timeout_s * 1000,
							    baseline_cb, f))) {
			deploy_intent(f, NULL, 0, NULL);
		}
		break;
	case EM_FX_DEPLOY:
		deploy_start(f);
		break;
	case EM_FX_PROBE:
		if (!f->health.enabled) {
			verdict(f, true, NULL);
		} else if (!f->health_url) {
			/* The policy asks for health and the tenant has no
			 * endpoint: fail closed. */
			verdict(f, false, "no health_url for this tenant");
		} else {
			probe_start(f);
		}
		break;
	case EM_FX_BACKUP:
		backup_fetch(f, w->s.backup_url);
		break;
	case EM_FX_METRICS:
		metrics_start(f, w->s.metrics);
		break;
	default:
		fx_end(f);
		break;
	}
}
