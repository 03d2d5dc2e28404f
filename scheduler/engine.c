/*
 * engine.c - the engine's driver (see include/wavesched/engine.h).
 *
 * Per rollout the loop is: load the rows (ws_engine_rollout, one query) ->
 * decide (engine_decide.c, pure) -> commit the transitions (ws_engine_tx,
 * fenced by the lease epoch) -> load again; when a decision has nothing to
 * commit it starts effects (engine_fx.c) and sets a timer for the next
 * instant that matters.  Effects report through engine_submit(), which
 * commits their results the same way.  At most one load or commit is in
 * flight per rollout; ops submitted meanwhile wait in its queue, so a
 * decision is always taken on rows that include every committed result.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "engine_internal.h"
#include "wavesched/log.h"
#include "wavesched/planner.h"
#include "wavesched/window.h"

#define RESCAN_MS 30000          /* a safety net under NOTIFY, real time */
#define RETRY_MS 1000            /* after a failed load or commit */
#define DEFAULT_RECHECK_S (5 * 60)
#define CHAIN_MAX 6              /* steps decided ahead of one commit */
#define BACKUP_TTL_FLOOR_MS 2000
#define METRIC_TTL_FLOOR_MS 500
#define RESUME_RETRY_MS 30000    /* after a re-plan that failed, real time */
#define OVERLAP_POLL_MS 5000     /* a rollout waiting on another: NOTIFY's safety net */

static void run_load(erun *run);
static void run_decide(erun *run);
static void conts_fail(struct econt *c, size_t *n);

/* Runs ------------------------------------------------------------------------ */

static erun *run_find(ws_engine *e, int64_t id)
{
	for (erun *r = e->runs; r; r = r->next)
		if (r->id == id)
			return r;
	return NULL;
}

static void run_timer_cb(uv_timer_t *t)
{
	erun *run = t->data;
	run_load(run);
}

static erun *run_get(ws_engine *e, int64_t id)
{
	erun *run = run_find(e, id);
	if (run)
		return run;
	run = calloc(1, sizeof(*run));
	if (!run)
		return NULL;
	run->e = e;
	run->id = id;
	uv_timer_init(e->loop, &run->timer);
	run->timer.data = run;
	run->next = e->runs;
	e->runs = run;
	return run;
}

/* One thing less to wait for before the engine is stopped: the callback
 * runs once, when nothing of it is left on the loop. */
static void engine_release(ws_engine *e)
{
	if (--e->closing == 0 && e->stopping && e->stopped_cb) {
		void (*cb)(void *) = e->stopped_cb;
		e->stopped_cb = NULL;
		cb(e->stopped_arg);
	}
}

static void run_closed_cb(uv_handle_t *h)
{
	erun *run = h->data;
	ws_engine *e = run->e;
	em_rollout_free(run->model);
	policy_free(run->policy);
	backup_cache_free(run->backups);
	metric_cache_free(run->metrics);
	json_decref(run->queue);
	free(run->qconts);
	free(run->conts);
	free(run);
	engine_release(e);
}

/* Closes a dropped run's timer once no load or commit of it is in flight;
 * true when the run is being dropped (its callbacks must stop there). */
static bool run_finish_closing(erun *run)
{
	if (!run->closing)
		return false;
	if (!run->loading && !run->committing && !run->resuming && !uv_is_closing((uv_handle_t *)&run->timer))
		uv_close((uv_handle_t *)&run->timer, run_closed_cb);
	return true;
}

/* Forgets a rollout: effects cancelled, timer closed; freed once nothing of
 * it is in flight (the callbacks of a load or commit check `closing`). */
static void run_drop(erun *run)
{
	ws_engine *e = run->e;
	for (erun **p = &e->runs; *p; p = &(*p)->next)
		if (*p == run) {
			*p = run->next;
			break;
		}
	fx_cancel_run(e, run);
	json_decref(run->queue);
	run->queue = NULL;
	conts_fail(run->qconts, &run->n_qconts);   /* never to be committed */
	run->closing = true;
	e->closing++;   /* released by run_closed_cb */
	run_finish_closing(run);
}

static void run_retry(erun *run)
{
	uv_timer_start(&run->timer, run_timer_cb, RETRY_MS, 0);
}

/* Committing -------------------------------------------------------------------- */

static void commit(erun *run, json_t *ops);

/* Tells every waiting intent it was not committed. */
static void conts_fail(struct econt *c, size_t *n)
{
	size_t k = *n;
	*n = 0;
	for (size_t i = 0; i < k; i++)
		fx_intent_committed(c[i].f, NULL);
}

/* The queue's ops join a batch at offset `base`: so do its intents. */
static void conts_take_queue(erun *run, size_t base)
{
	if (!run->n_qconts)
		return;
	struct econt *c = realloc(run->conts, (run->n_conts + run->n_qconts) * sizeof(*c));
	if (!c) {
		conts_fail(run->qconts, &run->n_qconts);
		return;
	}
	run->conts = c;
	for (size_t i = 0; i < run->n_qconts; i++)
		run->conts[run->n_conts++] = (struct econt){ run->qconts[i].f, base + run->qconts[i].op };
	run->n_qconts = 0;
}

static void commit_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	erun *run = arg;
	ws_engine *e = run->e;
	run->committing = false;
	bool exact = run->commit_exact;
	run->commit_exact = false;
	if (err || run->closing) {
		conts_fail(run->conts, &run->n_conts);
	} else if (run->n_conts) {
		json_error_t jerr;
		json_t *results = json_loads(PQntuples(res) ? PQgetvalue(res, 0, 0) : "", 0, &jerr);
		size_t n = run->n_conts;
		run->n_conts = 0;
		for (size_t i = 0; i < n; i++)
			fx_intent_committed(run->conts[i].f, json_array_get(results, run->conts[i].op));
		json_decref(results);
	}
	if (run_finish_closing(run))
		return;
	if (err) {
		/* A metric gate's row may have been in this call: the results it
		 * stood for are forgotten, so that no tenant passes on a verdict
		 * without its row (they are asked again, and the row written). */
		metric_cache_free(run->metrics);
		run->metrics = NULL;
		const char *st = err->sqlstate ? err->sqlstate : "";
		if (strcmp(st, "WSE01") == 0) {
			e->stats.stale_epoch++;
			ws_warn("engine", "rollout %" PRId64 ": the lease moved on (%s); stepping down",
				run->id, err->detail && *err->detail ? err->detail : err->message);
			ws_engine_leader(e, false, e->epoch);
			return;
		}
		if (strcmp(st, "WSE02") == 0 || strcmp(st, "WSE03") == 0) {
			/* Somebody else changed the rows (a person's pause or abort):
			 * decide again from what is there now. */
			e->stats.conflicts++;
			ws_info("engine", "rollout %" PRId64 ": %s; deciding again", run->id, err->message);
			json_decref(run->queue);
			run->queue = NULL;
			conts_fail(run->qconts, &run->n_qconts);
			run_load(run);
			return;
		}
		ws_error("engine", "rollout %" PRId64 ": cannot commit: %s%s%s", run->id, err->message,
			 err->detail && *err->detail ? ": " : "", err->detail ? err->detail : "");
		run_retry(run);
		return;
	}
	e->stats.transactions++;
	if (run->queue && json_array_size(run->queue) > 0) {
		json_t *q = run->queue;
		run->queue = NULL;
		conts_take_queue(run, 0);
		commit(run, q);
		return;
	}
	if (exact && !run->load_again)
		run_decide(run);
	else
		run_load(run);
}

static void commit(erun *run, json_t *ops)
{
	ws_engine *e = run->e;
	run->commit_exact = false;   /* run_decide says when it is */
	for (size_t i = 0; i < json_array_size(ops); i++) {
		const char *op = json_string_value(json_object_get(json_array_get(ops, i), "op"));
		if (op && (!strcmp(op, "rollout") || !strcmp(op, "wave") || !strcmp(op, "deployment")))
			e->stats.transitions++;
	}
	char *text = json_dumps(ops, JSON_COMPACT);
	json_decref(ops);
	char epoch[24];
	snprintf(epoch, sizeof(epoch), "%" PRId64, e->epoch);
	const char *params[] = { epoch, text };
	if (!text || ws_pg_query(e->pool, "SELECT ws_engine_tx($1::bigint, $2::jsonb)", 2, params,
				 commit_done, run) != 0) {
		free(text);
		ws_error("engine", "rollout %" PRId64 ": cannot queue a transaction", run->id);
		conts_fail(run->conts, &run->n_conts);
		run_retry(run);
		return;
	}
	free(text);
	run->committing = true;
}

void engine_submit(erun *run, json_t *ops)
{
	if (!run->e->leader || run->closing) {
		json_decref(ops);
		return;
	}
	if (run->committing || run->loading) {
		if (!run->queue)
			run->queue = json_array();
		json_array_extend(run->queue, ops);
		json_decref(ops);
		return;
	}
	commit(run, ops);
}

void engine_submit_intent(erun *run, json_t *ops, size_t op, efx *f)
{
	if (!run->e->leader || run->closing) {
		json_decref(ops);
		fx_intent_committed(f, NULL);
		return;
	}
	size_t base = run->queue ? json_array_size(run->queue) : 0;
	bool queued = run->committing || run->loading;
	if (queued) {
		if (run->n_qconts == run->cap_qconts) {
			size_t cap = run->cap_qconts ? run->cap_qconts * 2 : 4;
			struct econt *c = realloc(run->qconts, cap * sizeof(*c));
			if (!c) {
				json_decref(ops);
				fx_intent_committed(f, NULL);
				return;
			}
			run->qconts = c;
			run->cap_qconts = cap;
		}
		run->qconts[run->n_qconts++] = (struct econt){ f, base + op };
		engine_submit(run, ops);
		return;
	}
	struct econt *c = realloc(run->conts, (run->n_conts + 1) * sizeof(*c));
	if (!c) {
		json_decref(ops);
		fx_intent_committed(f, NULL);
		return;
	}
	run->conts = c;
	run->conts[run->n_conts++] = (struct econt){ f, op };
	commit(run, ops);
}

/* Loading ------------------------------------------------------------------------ */

static void policy_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	erun *run = arg;
	run->loading = false;
	if (run_finish_closing(run))
		return;
	if (err || PQntuples(res) != 1) {
		ws_error("engine", "rollout %" PRId64 ": cannot read its policy: %s", run->id,
			 err ? err->message : "no such policy");
		run_retry(run);
		return;
	}
	ws_diags d;
	ws_diags_init(&d);
	const char *body = PQgetvalue(res, 0, 0);
	run->policy = policy_parse("policy", body, strlen(body), &d);
	if (!run->policy)
		ws_error("engine", "rollout %" PRId64 ": its stored policy no longer parses (%zu problems); "
			 "windows cannot be moved", run->id, d.len);
	ws_diags_free(&d);
	run_decide(run);
}

static void snapshot_done(void *arg, ws_fleet_snapshot *snap, const ws_pg_err *err)
{
	erun *run = arg;
	ws_engine *e = run->e;
	if (snap) {
		ws_fleet_snapshot_retain(snap);
		if (e->snap)
			ws_fleet_snapshot_release(e->snap);
		e->snap = snap;
	}
	if (run->closing) {
		run->loading = false;
		run_finish_closing(run);
		return;
	}
	if (err)
		ws_warn("engine", "rollout %" PRId64 ": fleet snapshot: %s (using the previous one)",
			run->id, err->message);
	if (!run->policy && run->model && run->model->policy_id > 0) {
		char id[24];
		snprintf(id, sizeof(id), "%" PRId64, run->model->policy_id);
		const char *params[] = { id };
		if (ws_pg_query(e->pool, "SELECT body FROM policies WHERE id = $1", 1, params,
				policy_done, run) == 0)
			return;
	}
	run->loading = false;
	run_decide(run);
}

static void load_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	erun *run = arg;
	ws_engine *e = run->e;
	if (run->closing) {
		run->loading = false;
		run_finish_closing(run);
		return;
	}
	if (err) {
		run->loading = false;
		ws_warn("engine", "rollout %" PRId64 ": cannot load: %s", run->id, err->message);
		run_retry(run);
		return;
	}
	if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
		run->loading = false;
		run_drop(run);
		return;
	}
	char why[200];
	em_rollout *m = em_rollout_parse(PQgetvalue(res, 0, 0), why, sizeof(why));
	if (!m) {
		run->loading = false;
		ws_error("engine", "rollout %" PRId64 ": unreadable rows (%s); left alone", run->id, why);
		return;
	}
	em_rollout_free(run->model);
	run->model = m;
	ws_fleet_store_snapshot(e->fleet_store, snapshot_done, run);
}

static void run_load(erun *run)
{
	ws_engine *e = run->e;
	if (!e->leader || run->closing)
		return;
	if (run->loading || run->committing) {
		run->load_again = true;
		return;
	}
	run->load_again = false;
	char id[24];
	snprintf(id, sizeof(id), "%" PRId64, run->id);
	const char *params[] = { id };
	run->loading = true;
	/* The overlaps with other rollouts (0016) join the rows under "preempt". */
	if (ws_pg_query(e->pool,
			"SELECT (ws_engine_rollout($1::bigint)"
			" || jsonb_build_object('preempt', ws_engine_preempt($1::bigint)))::text",
			1, params, load_done, run) != 0) {
		run->loading = false;
		run_retry(run);
	}
}

void engine_wake(erun *run)
{
	run_load(run);
}


/* Resuming after preemption -------------------------------------------------------- */

static bool slug_in(const json_t *slugs, const char *slug)
{
	size_t i;
	json_t *v;
	json_array_foreach(slugs, i, v)
		if (json_is_string(v) && strcmp(json_string_value(v), slug) == 0)
			return true;
	return false;
}

char *engine_resume_plan(const ws_fleet *fleet, const ws_policy *policy, const char *release,
			 ws_release_kind kind, int64_t start_s, const json_t *remaining, int base,
			 json_t **settings, char *err, size_t err_size)
{
	*settings = NULL;
	/* The fleet of the remaining tenants, through its canonical JSON and
	 * the fleet parser, so the planner sees an ordinary fleet: clusters
	 * and calendars whole, dependencies on tenants outside it dropped
	 * (done, on the urgent release, or not in this rollout: met). */
	json_t *doc = fleet_to_json(fleet);
	json_t *tenants = json_object_get(doc, "tenants");
	json_t *kept = json_array();
	size_t i;
	json_t *t;
	json_array_foreach(tenants, i, t) {
		if (!slug_in(remaining, json_string_value(json_object_get(t, "slug"))))
			continue;
		json_t *deps = json_object_get(t, "depends_on");
		json_t *keep = json_array();
		size_t k;
		json_t *dv;
		json_array_foreach(deps, k, dv)
			if (json_is_string(dv) && slug_in(remaining, json_string_value(dv)))
				json_array_append(keep, dv);
		json_object_set_new(t, "depends_on", keep);
		json_array_append(kept, t);
	}
	size_t missing = json_array_size(remaining) - json_array_size(kept);
	json_object_set_new(doc, "tenants", kept);
	char *text = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	if (!text) {
		snprintf(err, err_size, "out of memory");
		return NULL;
	}
	if (missing) {
		free(text);
		snprintf(err, err_size, "%zu of the remaining tenants are no longer in the fleet", missing);
		return NULL;
	}
	ws_diags d;
	ws_diags_init(&d);
	ws_fleet *sub = fleet_parse("fleet (remaining tenants)", text, strlen(text), &d);
	free(text);
	char *out = NULL;
	ws_plan *plan = NULL;
	if (!sub)
		goto diag;
	ws_plan_input in = { .fleet = sub, .policy = policy, .release = release, .kind = kind,
			     .start = start_s };
	plan = plan_build(&in, &d);
	if (!plan)
		goto diag;
	json_t *pj = plan_to_json(plan);
	json_t *w;
	/* The new waves follow those already under way or done. */
	json_array_foreach(json_object_get(pj, "waves"), i, w)
		json_object_set_new(w, "index",
				    json_integer(json_integer_value(json_object_get(w, "index")) + base));
	out = json_dumps(pj, WS_PLAN_JSON_FLAGS);
	json_decref(pj);
	*settings = json_array();
	for (i = 0; i < plan->n_waves; i++)
		json_array_append_new(*settings, rollout_wave_settings_json(plan->waves[i].settings));
	if (!out) {
		snprintf(err, err_size, "out of memory");
		json_decref(*settings);
		*settings = NULL;
	}
	plan_free(plan);
	fleet_free(sub);
	ws_diags_free(&d);
	return out;
diag: {
	char *first = d.len ? ws_diag_format(&d.items[0]) : NULL;
	snprintf(err, err_size, "%s%s", first ? first : "the plan cannot be made",
		 d.len > 1 ? " (and more problems)" : "");
	free(first);
	fleet_free(sub);
	ws_diags_free(&d);
	return NULL;
}
}

typedef struct resume_job {
	uv_work_t work;
	erun *run;
	ws_fleet_snapshot *snap;
	json_t *remaining;        /* a copy owned by the job */
	char *release;
	ws_release_kind kind;
	int64_t start_s;
	int base, plan_version;
	char *plan_text;
	json_t *settings;
	char err[400];
} resume_job;

static void resume_job_free(resume_job *j)
{
	if (j->snap)
		ws_fleet_snapshot_release(j->snap);
	json_decref(j->remaining);
	json_decref(j->settings);
	free(j->release);
	free(j->plan_text);
	free(j);
}

/* The end of a resume attempt: the rows are loaded again either way. */
static void resume_end(resume_job *j, bool failed)
{
	erun *run = j->run;
	run->resuming = false;
	if (failed)
		run->resume_after = uv_now(run->e->loop) + RESUME_RETRY_MS;
	resume_job_free(j);
	if (run_finish_closing(run))
		return;
	run_load(run);
}

static void resume_failed_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	resume_job *j = arg;
	(void)res;
	if (err)
		ws_warn("engine", "rollout %" PRId64 ": cannot record the failed re-plan: %s", j->run->id,
			err->message);
	resume_end(j, true);
}

static void resume_fail(resume_job *j, const char *why)
{
	erun *run = j->run;
	ws_engine *e = run->e;
	ws_warn("engine", "rollout %" PRId64 ": stays preempted: re-planning its remaining tenants failed: %s",
		run->id, why);
	if (!e->leader || run->closing) {
		resume_end(j, true);
		return;
	}
	char epoch[24], id[24];
	snprintf(epoch, sizeof(epoch), "%" PRId64, e->epoch);
	snprintf(id, sizeof(id), "%" PRId64, run->id);
	const char *params[] = { epoch, id, why };
	if (ws_pg_query(e->pool, "SELECT ws_rollout_resume_failed($1::bigint, $2::bigint, $3)", 3, params,
			resume_failed_done, j) != 0)
		resume_end(j, true);
}

static void resume_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	resume_job *j = arg;
	erun *run = j->run;
	if (err) {
		const char *st = err->sqlstate ? err->sqlstate : "";
		if (strcmp(st, "WSE01") == 0) {
			resume_end(j, false);
			ws_engine_leader(run->e, false, run->e->epoch);
			return;
		}
		char why[400];
		snprintf(why, sizeof(why), "%s", err->message);
		resume_fail(j, why);
		return;
	}
	json_t *out = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
	json_t *diff = json_object_get(out, "diff");
	ws_info("engine", "rollout %" PRId64 ": resumed after preemption on plan version %" JSON_INTEGER_FORMAT
		": %zu removed, %zu moved, %zu on the urgent release, %zu approvals withdrawn", run->id,
		json_integer_value(json_object_get(out, "plan_version")),
		json_array_size(json_object_get(diff, "removed")), json_array_size(json_object_get(diff, "moved")),
		json_array_size(json_object_get(diff, "on_urgent")),
		json_array_size(json_object_get(diff, "approvals_withdrawn")));
	json_decref(out);
	resume_end(j, false);
}

static void resume_work_cb(uv_work_t *w)
{
	resume_job *j = w->data;
	j->plan_text = engine_resume_plan(j->snap->fleet, j->run->policy, j->release, j->kind, j->start_s,
					  j->remaining, j->base, &j->settings, j->err, sizeof(j->err));
}

static void resume_after_cb(uv_work_t *w, int status)
{
	resume_job *j = w->data;
	erun *run = j->run;
	ws_engine *e = run->e;
	if (status != 0 || !j->plan_text) {
		resume_fail(j, status != 0 ? "the planning job was cancelled" : j->err);
		return;
	}
	if (!e->leader || run->closing) {
		resume_end(j, false);
		return;
	}
	char *settings = json_dumps(j->settings, JSON_COMPACT);
	char epoch[24], id[24], ver[16], base[16], gen[24], start[40];
	snprintf(epoch, sizeof(epoch), "%" PRId64, e->epoch);
	snprintf(id, sizeof(id), "%" PRId64, run->id);
	snprintf(ver, sizeof(ver), "%d", j->plan_version);
	snprintf(base, sizeof(base), "%d", j->base);
	snprintf(gen, sizeof(gen), "%lld", (long long)j->snap->generation);
	ws_time_format(j->start_s, 0, true, start, sizeof(start));
	const char *params[] = { epoch, id, ver, base, j->plan_text, settings, gen, start };
	int rc = settings ? ws_pg_query(e->pool,
					"SELECT ws_rollout_resume($1::bigint, $2::bigint, $3::int, $4::int, $5,"
					" $6::jsonb, $7::bigint, $8::timestamptz)::text",
					8, params, resume_done, j)
			  : -1;
	free(settings);
	if (rc != 0)
		resume_end(j, true);
}

/* A preempted rollout whose urgent rollouts have all ended: plan its
 * remaining tenants on the thread pool, then resume it in one transaction. */
static void resume_start(erun *run)
{
	ws_engine *e = run->e;
	const em_rollout *m = run->model;
	if (run->resuming || uv_now(e->loop) < run->resume_after)
		return;
	ws_release_kind kind;
	if (!e->snap || !run->policy || !m->kind || ws_release_kind_parse(m->kind, &kind) != 0) {
		ws_warn("engine", "rollout %" PRId64 ": cannot re-plan yet (%s)", run->id,
			!e->snap ? "no fleet snapshot" : !run->policy ? "its policy does not parse" : "release kind");
		run->resume_after = uv_now(e->loop) + RESUME_RETRY_MS;
		return;
	}
	resume_job *j = calloc(1, sizeof(*j));
	if (!j)
		return;
	j->run = run;
	j->kind = kind;
	j->base = m->resume_base;
	j->plan_version = m->plan_version;
	j->start_s = ws_clock_now(e->clock) / 1000000;
	j->remaining = json_deep_copy(m->remaining);
	j->release = strdup(m->release);
	ws_fleet_snapshot_retain(e->snap);
	j->snap = e->snap;
	j->work.data = j;
	if (!j->remaining || !j->release || uv_queue_work(e->loop, &j->work, resume_work_cb, resume_after_cb) != 0) {
		resume_job_free(j);
		return;
	}
	run->resuming = true;
	ws_info("engine", "rollout %" PRId64 ": the urgent rollouts over it ended; re-planning %zu remaining tenants",
		run->id, json_array_size(m->remaining));
}

/* Deciding ------------------------------------------------------------------------ */

static em_fx fx_of(void *arg, int64_t dep_id)
{
	efx *f = fx_find(arg, dep_id);
	return f ? f->kind : EM_FX_NONE;
}

struct env_arg {
	ws_engine *e;
	erun *run;
};

static em_fx fx_of_run(void *arg, int64_t dep_id)
{
	return fx_of(((struct env_arg *)arg)->e, dep_id);
}

static const em_backup_status *backup_of(void *arg, int64_t dep_id)
{
	return backup_cache_get(((struct env_arg *)arg)->run->backups, dep_id);
}

/* How long a fetched backup status answers for the gate: the re-check
 * interval, but at least BACKUP_TTL_FLOOR_MS of real time, so that under a
 * large --time-scale a status does not expire between its arrival and the
 * decision that reads it (which would fetch it again, for ever). */
static int64_t backup_status_ttl_s(const ws_clock *c)
{
	uint64_t real = ws_clock_real_ms(c, DEFAULT_RECHECK_S * 1000000LL);
	if (real >= BACKUP_TTL_FLOOR_MS)
		return DEFAULT_RECHECK_S;
	if (real == 0)
		real = 1;
	return (int64_t)((DEFAULT_RECHECK_S * BACKUP_TTL_FLOOR_MS + real - 1) / real);
}

static const em_metric_status *metric_of(void *arg, int64_t dep_id, const char *name)
{
	return metric_cache_get(((struct env_arg *)arg)->run->metrics, dep_id, name);
}

/* How long a metric result answers: the configured interval, but at least
 * METRIC_TTL_FLOOR_MS of real time, so that under a large --time-scale the
 * checks are not asked again and again faster than Prometheus scrapes. */
int64_t engine_metric_ttl_s(const ws_engine *e)
{
	int64_t every = e->metric_interval_s > 0 ? e->metric_interval_s : 30;
	uint64_t real = ws_clock_real_ms(e->clock, every * 1000000LL);
	if (real >= METRIC_TTL_FLOOR_MS)
		return every;
	if (real == 0)
		real = 1;
	return (int64_t)(((uint64_t)every * METRIC_TTL_FLOOR_MS + real - 1) / real);
}

static bool rollout_done(const em_rollout *m)
{
	/* A planned rollout matters only while it is to be re-planned after
	 * an urgent one held it. */
	return m->state == WS_RO_COMPLETED || m->state == WS_RO_ROLLED_BACK ||
	       (m->state == WS_RO_PLANNED && !m->resume);
}

static void run_decide(erun *run)
{
	ws_engine *e = run->e;
	if (!e->leader || run->closing || !run->model)
		return;
	if (run->load_again) {
		run_load(run);
		return;
	}
	struct env_arg ea = { e, run };
	em_env env = {
		.now = ws_clock_now(e->clock),
		.fleet = e->snap ? e->snap->fleet : NULL,
		.policy = run->policy,
		.deploy_estimate_s = run->policy && run->policy->deploy_estimate_s > 0
					     ? run->policy->deploy_estimate_s : 0,
		.backup_recheck_s = DEFAULT_RECHECK_S,
		.backup_status_ttl_s = backup_status_ttl_s(e->clock),
		.fx = fx_of_run,
		.backup = backup_of,
		.metric = metric_of,
		.metric_interval_s = engine_metric_ttl_s(e),
		.fx_arg = &ea,
	};
	/* A chain of steps that needs nothing from outside is decided at once
	 * and committed as one transaction (em_apply): a wave passing, the next
	 * one starting its backup gate, its tenants waiting for their windows.
	 * The model is reloaded after the commit either way. */
	em_decision d;
	em_decide(run->model, &env, &d);
	json_t *chain = NULL;
	bool exact = true;
	for (int steps = 1; json_array_size(d.ops) > 0; steps++) {
		if (!chain)
			chain = json_array();
		json_array_extend(chain, d.ops);
		for (size_t i = 0; i < d.n_act; i++)
			if (d.act[i].kind == EM_STOP_FX) {
				efx *f = fx_find(e, d.act[i].dep->id);
				if (f)
					fx_cancel(f);
			}
		bool more = steps < CHAIN_MAX && em_apply(run->model, d.ops);
		em_decision_free(&d);
		if (!more) {
			exact = false;
			memset(&d, 0, sizeof(d));
			d.wake = EM_NONE;
			break;
		}
		em_decide(run->model, &env, &d);
	}
	if (chain) {
		/* Effects wait for the committed rows. */
		json_decref(d.ops);
		d.ops = chain;
		d.n_act = 0;
	}
	/* Stopping an effect is always safe; starting one waits for the rows. */
	for (size_t i = 0; i < d.n_act; i++)
		if (d.act[i].kind == EM_STOP_FX) {
			efx *f = fx_find(e, d.act[i].dep->id);
			if (f)
				fx_cancel(f);
		}
	json_t *ops = NULL;
	if (json_array_size(d.ops) > 0) {
		ops = d.ops;
		d.ops = NULL;
	}
	if (run->queue && json_array_size(run->queue) > 0) {
		exact = false;   /* the effects' results are not in the model */
		if (!ops)
			ops = json_array();
		conts_take_queue(run, json_array_size(ops));
		json_array_extend(ops, run->queue);
		json_decref(run->queue);
		run->queue = NULL;
	}
	if (ops) {
		em_decision_free(&d);
		commit(run, ops);
		run->commit_exact = exact && run->committing;
		return;
	}
	for (size_t i = 0; i < d.n_act; i++) {
		const em_action *a = &d.act[i];
		if (a->kind == EM_STOP_FX)
			continue;
		em_fx kind = a->kind == EM_START_BASELINE ? EM_FX_BASELINE
			     : a->kind == EM_START_DEPLOY ? EM_FX_DEPLOY
			     : a->kind == EM_START_BACKUP ? EM_FX_BACKUP
			     : a->kind == EM_START_METRICS ? EM_FX_METRICS : EM_FX_PROBE;
		fx_start(run, a->wave, a->dep, kind);
	}
	if (strcmp(run->note, d.note) != 0 && d.note[0])
		ws_info("engine", "rollout %" PRId64 ": %s", run->id, d.note);
	snprintf(run->note, sizeof(run->note), "%s", d.note);
	uv_timer_stop(&run->timer);
	if (d.wake != EM_NONE)
		ws_clock_timer_start(e->clock, &run->timer, d.wake, run_timer_cb);
	else if (run->model->wait_for > 0 || run->model->state == WS_RO_PREEMPTED || run->model->resume ||
		 (run->model->state == WS_RO_APPROVED && run->model->preempt_by > 0))
		/* Waiting on another rollout: its state changes NOTIFY us
		 * (0016); this polls for what does not (a halted rollout's
		 * last deploy settling). */
		uv_timer_start(&run->timer, run_timer_cb, OVERLAP_POLL_MS, 0);
	if (run->model->resume)
		resume_start(run);
	bool done = rollout_done(run->model) ||
		    ((run->model->state == WS_RO_ABORTED || run->model->state == WS_RO_HALTED) &&
		     d.n_act == 0 && d.wake == EM_NONE && !fx_find_run(e, run));
	em_decision_free(&d);
	if (done)
		run_drop(run);
}

/* Leadership ---------------------------------------------------------------------- */

static void notify_cb(void *arg, const char *channel, const char *payload)
{
	ws_engine *e = arg;
	(void)channel;
	if (!e->leader || !payload)
		return;
	char *end;
	long long id = strtoll(payload, &end, 10);
	if (*payload == '\0' || *end != '\0' || id <= 0)
		return;
	erun *run = run_get(e, id);
	if (run)
		run_load(run);
}

static void active_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	ws_engine *e = arg;
	if (!e->leader)
		return;
	if (err) {
		ws_warn("engine", "cannot list active rollouts: %s", err->message);
		return;
	}
	e->stats.active_rollouts = (uint64_t)PQntuples(res);
	for (int i = 0; i < PQntuples(res); i++) {
		erun *run = run_get(e, strtoll(PQgetvalue(res, i, 0), NULL, 10));
		if (run && !run->model)
			run_load(run);
	}
}

static void rescan(ws_engine *e)
{
	if (e->leader)
		ws_pg_query(e->pool, "SELECT id FROM ws_engine_active() AS id", 0, NULL, active_done, e);
}

static void rescan_cb(uv_timer_t *t)
{
	rescan(t->data);
}

ws_engine *ws_engine_new(const ws_engine_deps *deps)
{
	ws_engine *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->loop = deps->loop;
	e->pool = deps->pool;
	e->fleet_store = deps->fleet;
	e->clock = deps->clock;
	e->outbound = deps->outbound;
	e->metric_interval_s = deps->metric_interval_s;
	if (deps->prometheus_url && !(e->prometheus_url = strdup(deps->prometheus_url))) {
		free(e);
		return NULL;
	}
	e->prober = ws_prober_new(deps->loop, deps->outbound);
	if (e->prober && deps->metrics)
		ws_prober_set_metrics(e->prober, deps->metrics);
	if (!e->prober) {
		free(e->prometheus_url);
		free(e);
		return NULL;
	}
	uv_timer_init(e->loop, &e->rescan);
	e->rescan.data = e;
	return e;
}

void ws_engine_leader(ws_engine *e, bool leader, int64_t epoch)
{
	if (e->stopping)
		leader = false;
	if (leader) {
		e->epoch = epoch;
		if (!e->leader)
			ws_info("engine", "leading at epoch %" PRId64, epoch);
		e->leader = true;
		if (!e->listening && ws_pg_listen(e->pool, "ws_engine", notify_cb, e) == 0)
			e->listening = true;
		uv_timer_start(&e->rescan, rescan_cb, 0, RESCAN_MS);
		return;
	}
	if (e->leader)
		ws_info("engine", "no longer leading (epoch %" PRId64 ")", e->epoch);
	e->leader = false;
	uv_timer_stop(&e->rescan);
	while (e->runs)
		run_drop(e->runs);
}

static void rescan_closed_cb(uv_handle_t *h)
{
	engine_release(h->data);
}

static void prober_closed_cb(void *arg)
{
	ws_engine *e = arg;
	e->prober = NULL;
	engine_release(e);
}

void ws_engine_stop(ws_engine *e, void (*cb)(void *arg), void *arg)
{
	e->stopping = true;
	e->stopped_cb = cb;
	e->stopped_arg = arg;
	ws_engine_leader(e, false, e->epoch);
	while (e->fx)
		fx_cancel(e->fx);
	e->closing += 2;
	uv_close((uv_handle_t *)&e->rescan, rescan_closed_cb);
	ws_prober_close(e->prober, prober_closed_cb, e);
}

void ws_engine_free(ws_engine *e)
{
	if (!e)
		return;
	if (e->snap)
		ws_fleet_snapshot_release(e->snap);
	free(e->prometheus_url);
	free(e);
}

void ws_engine_stats_get(const ws_engine *e, ws_engine_stats *out)
{
	*out = e->stats;
}
