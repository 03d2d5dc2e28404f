/*
 * engine_internal.h - the engine's driver (engine.c) and its effects
 * (engine_fx.c): deploy calls and health probes started after the rows
 * say so, whose results go back to the database as transitions.
 */
#ifndef WAVESCHED_ENGINE_INTERNAL_H
#define WAVESCHED_ENGINE_INTERNAL_H

#include <jansson.h>
#include "backup_gate.h"
#include "engine_model.h"
#include "metric_gate.h"
#include "wavesched/engine.h"
#include "wavesched/executor.h"
#include "wavesched/health.h"
#include "wavesched/policy.h"

typedef struct erun erun;
typedef struct efx efx;

/* One active rollout. */
struct erun {
	ws_engine *e;
	int64_t id;
	em_rollout *model;       /* the rows as last loaded; NULL before the first load */
	ws_policy *policy;       /* its stored policy, parsed */
	uv_timer_t timer;
	bool loading;            /* a load is in flight */
	bool load_again;         /* ... and another is wanted after it */
	bool committing;         /* a ws_engine_tx call is in flight */
	/* ... and it holds exactly the steps em_apply made of the model: once
	 * it commits, the model is the rows, and the next step is decided
	 * without reloading them (the reaction from a wave passing to the
	 * next wave's first deploy call is one load shorter). */
	bool commit_exact;
	json_t *queue;           /* ops waiting for that call to end */
	/* Deploy intents whose effect starts from the commit's own result (the
	 * outbox row's id and key), without waiting for the reload: by index
	 * of their outbox op in the queue, and in the call in flight. */
	struct econt { efx *f; size_t op; } *qconts, *conts;
	size_t n_qconts, cap_qconts, n_conts;
	backup_cache *backups;   /* statuses fetched for its http backup gates */
	metric_cache *metrics;   /* the latest results of its metric gates */
	bool resuming;           /* its re-plan after preemption is being made or stored */
	uint64_t resume_after;   /* loop time (ms) before which a failed re-plan is not tried again */
	bool closing;
	char note[256];
	erun *next;
};

/* One effect in flight for a deployment. */
struct efx {
	ws_engine *e;
	erun *run;
	int64_t dep_id;
	em_fx kind;
	bool cancelled;          /* the engine stopped caring; results are dropped */
	/* what the effect needs, copied from the rows and the fleet */
	char *slug, *cluster, *health_url, *key, *version, *previous_version, *outbox_kind;
	int64_t wave_id, outbox_id, baseline_us;
	int64_t call_started;    /* schedule time the executor call began (us) */
	int attempt;
	bool soak;               /* probes of a healthy tenant during its wave's soak */
	bool awaiting;           /* its deploy intent is being committed (engine_submit_intent) */
	ws_gate_health health;
	json_t *deploy;          /* the cluster's deploy settings (a reference) */
	/* probing */
	ws_probe_target *target;  /* baseline or periodic probes, until removed */
	ws_health_eval *eval;
	ws_deploy_job *job;       /* a deploy call; its callback always comes */
	ws_outbound_call *call;   /* a backup status or metric query GET; its callback always comes */
	char *backup_url;         /* the status URL it asks */
	/* metric gate: the wave's checks (a copy), asked one after the other
	 * (call); their results wait in `results` until the last has come, so
	 * that all are stored with one evaluation time. */
	json_t *metric_list;
	size_t metric_i;
	char *metric_query, *metric_url;
	json_t *metric_results;
	int probes;
	efx *next;
};

struct ws_engine {
	uv_loop_t *loop;
	ws_pg_pool *pool;
	ws_fleet_store *fleet_store;
	const ws_clock *clock;
	ws_outbound *outbound;
	ws_prober *prober;
	bool leader;
	int64_t epoch;
	bool listening;
	erun *runs;
	efx *fx;
	ws_fleet_snapshot *snap;
	uv_timer_t rescan;
	bool stopping;
	int closing;
	void (*stopped_cb)(void *arg);
	void *stopped_arg;
	ws_engine_stats stats;
	char *prometheus_url;    /* NULL: metric gates fail closed */
	int64_t metric_interval_s;
};

/* engine.c */
void engine_submit(erun *run, json_t *ops);      /* reference stolen */
/* engine_submit, and once committed, fx_intent_committed(f, result of ops[op]). */
void engine_submit_intent(erun *run, json_t *ops, size_t op, efx *f);
void engine_wake(erun *run);                      /* reload and decide again */

/* api_rollouts.c: a wave's settings as waves.settings stores them. */
json_t *rollout_wave_settings_json(const ws_wave_settings *s);

/* engine.c: a preempted rollout whose urgent rollouts have ended is
 * re-planned for its remaining tenants (migration 0016).  On the thread pool:
 * the fleet restricted to `remaining` (dependencies on other tenants count
 * as met), planned with the rollout's policy, its wave indexes continuing
 * after `base`.  Returns the plan text and the settings, or NULL with `err`
 * filled.  Pure, for unit tests. */
char *engine_resume_plan(const ws_fleet *fleet, const ws_policy *policy, const char *release,
			 ws_release_kind kind, int64_t start_s, const json_t *remaining, int base,
			 json_t **settings, char *err, size_t err_size);

/* engine_fx.c */
efx *fx_find(ws_engine *e, int64_t dep_id);
bool fx_find_run(ws_engine *e, const erun *run);
void fx_start(erun *run, const em_wave *w, const em_dep *d, em_fx kind);
void fx_cancel(efx *f);
void fx_cancel_run(ws_engine *e, erun *run);
void fx_intent_committed(efx *f, const json_t *result);   /* result NULL: not committed */

/* How long a metric result answers (schedule seconds): metric_interval, at
 * least a floor of real time under a large --time-scale (engine.c). */
int64_t engine_metric_ttl_s(const ws_engine *e);

#endif
