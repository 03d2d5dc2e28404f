/*
 * engine_model.h - the engine's view of one rollout, as loaded by
 * ws_engine_rollout() (migrations/0005_engine_load.sql), and the decision
 * function that turns it into the next transitions (engine_decide.c).
 *
 * The decision is a pure function of the rows, the fleet, the policy, the
 * schedule time and the effects this process has in flight; the driver
 * (engine.c) commits what it returns, reloads the rows and decides again.
 * Nothing here does I/O, so every rule of engine.md is unit-tested on it.
 */
#ifndef WAVESCHED_ENGINE_MODEL_H
#define WAVESCHED_ENGINE_MODEL_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include "wavesched/fleet.h"
#include "wavesched/policy.h"
#include "wavesched/states.h"

#define EM_NONE INT64_MIN

/* waves.settings, as written when the rollout was created. */
typedef struct em_settings {
	int64_t soak_s;
	int max_parallel_per_cluster;      /* 0: none */
	bool backup_enabled;
	int64_t backup_max_age_s;
	ws_backup_source backup_source;    /* "source" absent: the catalog */
	const char *backup_url;            /* the template, with source http */
	int64_t restore_max_age_s;         /* require_restore_verified; 0: not required */
	ws_gate_health health;
	int approval_min;
	int max_failed;
	ws_failure_action action;
	/* Borrowed from the document, shapes checked by parse_settings: an array
	 * of attestation names, an array of {name, query, for_s, min?, max?};
	 * NULL when the wave has none. */
	json_t *attestations;
	json_t *metrics;
} em_settings;

typedef struct em_dep {
	int64_t id, tenant_id;
	const char *slug;
	ws_deployment_state state;
	int64_t window_start, window_end;  /* schedule time, us; EM_NONE */
	int attempt;
	const char *previous_version, *target_version;
	int64_t started_at;
	/* the latest outbox intent */
	int64_t outbox_id;                 /* 0: none */
	const char *outbox_key, *outbox_kind, *outbox_state;
	int outbox_attempt;
	int64_t backup_at;                 /* latest successful backup in the catalog; EM_NONE */
	int64_t baseline_us;               /* median latency before the deploy; -1 */
	double p90_s;                      /* past deploy times; < 0: none */
	double release_p90_s;              /* this release's deploy times so far, any
					    * tenant (ws__release_timing); < 0: none */
	int64_t restore_at;                /* latest restore verification, if it succeeded
					    * (catalog); EM_NONE */
} em_dep;

typedef struct em_wave {
	int64_t id;
	int idx;
	const char *name;
	ws_wave_state state;
	int64_t start_at, end_at, started_at, soak_until;
	em_settings s;
	int approvals;
	const char *rejected_by;
	em_dep *d;
	size_t nd;
} em_wave;

typedef struct em_rollout {
	int64_t id;
	ws_rollout_state state;
	int64_t start_at;
	const char *release, *digest, *kind, *created_by, *state_reason;
	int64_t policy_id;
	em_wave *w;
	size_t nw;
	/* Overlaps with other rollouts (key "preempt", ws_engine_preempt of
	 * migration 0016); all zero when there are none. */
	int64_t preempt_by;                /* an urgent rollout over this one, still moving */
	const char *preempt_by_release;
	int64_t wait_for;                  /* (urgent) a standard rollout not at its boundary yet */
	const char *wait_state;
	bool resume;                       /* preempted, and every urgent rollout over it ended */
	int resume_base;                   /* the last wave that left pending (0: none) */
	int plan_version;
	json_t *remaining;                 /* slugs to re-plan on resume (borrowed from doc) */
	/* ws__release_gate_doc(): what the release carries for its gates
	 * (attestations, 0021); an object, maybe empty (borrowed from doc). */
	json_t *release_gates;
	json_t *doc;                       /* owns every string above */
} em_rollout;

/* Parses the document of ws_engine_rollout(); NULL with `why` filled when it
 * does not have the expected shape (a bug or a schema mismatch: the engine
 * then leaves the rollout alone and says so). */
em_rollout *em_rollout_parse(const char *json_text, char *why, size_t why_size);
void em_rollout_free(em_rollout *r);

/* What the driver has in flight for one deployment. */
typedef enum {
	EM_FX_NONE = 0,
	EM_FX_BASELINE,    /* probes before the deploy; the deploy intent follows */
	EM_FX_DEPLOY,      /* an executor call for the pending intent */
	EM_FX_PROBE,       /* health probes (verification or soak) */
	EM_FX_BACKUP,      /* a GET of the tenant's backup status (source http) */
	EM_FX_METRICS,     /* the metric gate's queries for a tenant about to deploy */
} em_fx;

/*
 * A tenant's backup status as last fetched for a gate with `source: http`
 * (engine_fx.c, backup_gate.c): the decision judges it like a catalog row.
 * A status answers for env->backup_status_ttl_s after it arrived; then the
 * decision asks for a new one (the re-check).
 */
typedef struct em_backup_status {
	int64_t checked_at;                /* schedule time the answer or failure came, us */
	int64_t last_success;              /* us; EM_NONE when there is none to trust */
	int64_t restore_verified_at;       /* us, "restore_verified_at" if given; EM_NONE */
	long http_status;                  /* 0: no HTTP answer */
	const char *url;                   /* the URL asked */
	const char *error;                 /* NULL, or what made the answer unusable */
} em_backup_status;

/*
 * The latest result of one metric check of a tenant (metric_gate.h): the
 * decision passes the tenant once every check is ok and has been for its
 * `for`.  A result answers for env->metric_interval_s after it came; then
 * the checks are evaluated again.
 */
typedef struct em_metric_status {
	int64_t checked_at;                /* schedule time of the evaluation, us */
	bool ok;
	int64_t ok_since;                  /* first evaluation of the current run of ok ones; EM_NONE */
	const char *reason;                /* NULL when ok */
} em_metric_status;

typedef struct em_env {
	int64_t now;                       /* schedule time, us */
	const ws_fleet *fleet;             /* NULL: not loaded (nothing is started) */
	const ws_policy *policy;           /* NULL: moves are impossible */
	int64_t deploy_estimate_s;         /* when a tenant has no history; default 15m */
	int64_t backup_recheck_s;          /* how often a stale backup is looked at again */
	int64_t backup_status_ttl_s;       /* how long a fetched status answers; <= 0: the recheck */
	/* the fetched backup status of a deployment (source http); NULL: none */
	const em_backup_status *(*backup)(void *arg, int64_t deployment_id);
	/* the latest metric check result of a deployment; NULL: none */
	const em_metric_status *(*metric)(void *arg, int64_t deployment_id, const char *name);
	int64_t metric_interval_s;         /* how long a result answers; <= 0: 30 s */
	/* the driver's effects, by deployment id */
	em_fx (*fx)(void *arg, int64_t deployment_id);
	void *fx_arg;
} em_env;

/* What to do now. */
typedef struct em_action {
	enum { EM_START_BASELINE, EM_START_DEPLOY, EM_START_PROBE, EM_START_BACKUP, EM_START_METRICS,
	       EM_STOP_FX } kind;
	const em_dep *dep;
	const em_wave *wave;
} em_action;

typedef struct em_decision {
	json_t *ops;                       /* ws_engine_tx ops (an array, maybe empty) */
	em_action *act;                    /* effects to stop (always), to start (only when
					    * ops is empty: the rows first) */
	size_t n_act, cap_act;
	int64_t wake;                      /* next instant to decide again; EM_NONE */
	char note[256];                    /* why nothing moves, for logs and status */
} em_decision;

void em_decide(const em_rollout *r, const em_env *env, em_decision *out);
/* Makes `r` what the rows will be once `ops` commit (see engine_decide.c);
 * false when it cannot tell exactly (then `r` must be reloaded). */
bool em_apply(em_rollout *r, const json_t *ops);
void em_decision_free(em_decision *d);

/* The expected deployment time of a tenant (engine.md "Windows in
 * practice"): the longer of its own p90 and this release's p90 so far (a
 * migration measured in staging), else the policy's estimate; `source`
 * (may be NULL) says which. */
int64_t em_expected_s(const em_dep *d, const em_env *env);
const char *em_expected_source(const em_dep *d);

/* The next window occurrence that starts at or after `from`, is at least
 * `need_s` long, and overlaps no blackout of the policy that applies to the
 * tenant (hard always, soft unless break_glass); false when none starts
 * before `until`.  Occurrences come from window_expand. */
bool em_next_window(const ws_fleet *f, const ws_policy *p, const ws_tenant *t, int64_t from_s,
		    int64_t until_s, int64_t need_s, int64_t *start_s, int64_t *end_s, int *offset);

#endif
