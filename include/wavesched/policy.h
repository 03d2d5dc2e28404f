/*
 * policy.h - wave policies (spec/policy.md): which releases may use them,
 * the unit that moves (tenant or whole cluster), the schedule rules and the
 * ordered waves with their selectors, gates and failure budget.
 *
 * A ws_policy is built by policy_parse() from a document that passed every
 * rule of policy.md; it is immutable afterwards and owns all its memory (one
 * arena).  Each wave carries its *effective* settings: the policy defaults
 * with the wave's overrides applied field by field (a wave that writes
 * `gates: {approval: {min: 2}}` keeps the default approval roles).
 */
#ifndef WAVESCHED_POLICY_H
#define WAVESCHED_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "wavesched/diag.h"
#include "wavesched/fleet.h"

typedef enum { WS_RELEASE_STANDARD = 1, WS_RELEASE_URGENT = 2 } ws_release_kind;
typedef enum { WS_UNIT_TENANT = 0, WS_UNIT_CLUSTER = 1 } ws_unit;
typedef enum { WS_FAIL_HALT = 0, WS_FAIL_ROLLBACK_WAVE, WS_FAIL_CONTINUE } ws_failure_action;

WS_API const char *ws_release_kind_name(ws_release_kind k);
WS_API int ws_release_kind_parse(const char *s, ws_release_kind *out);
WS_API const char *ws_failure_action_name(ws_failure_action a);

/* Where the backup gate learns a tenant's last successful backup. */
typedef enum {
	WS_BACKUP_CATALOG = 0,         /* the backups table, fed by POST /v1/backups */
	WS_BACKUP_HTTP = 1,            /* GET `url`, answering {"last_success": RFC3339} */
} ws_backup_source;

/*
 * `backup: {max_age: 24h, source: http, url: "https://b.example/{slug}/status"}`.
 * `url` is a template: {slug} (required) and {cluster} are replaced by the
 * tenant's; it is required with `source: http` and refused otherwise.  A
 * block that writes `source: catalog` drops an inherited url.
 */
typedef struct ws_gate_backup {
	bool enabled;
	int64_t max_age_s;
	ws_backup_source source;       /* default catalog */
	const char *url;               /* the template; NULL unless source is http */
	/* require_restore_verified: the tenant's latest restore verification
	 * must have succeeded and be younger than this; 0: not required. */
	int64_t restore_max_age_s;
} ws_gate_backup;

WS_API const char *ws_backup_source_name(ws_backup_source s);

typedef struct ws_gate_health {
	bool enabled;
	int64_t interval_s;            /* default 30 s */
	int64_t timeout_s;             /* default 5 s; must be <= interval */
	int consecutive_successes;     /* default 3; 1..100 */
	int max_consecutive_failures;  /* default 3; 1..100 */
	int max_latency_ms;            /* default 2000; 1..600000 */
	double latency_regression;     /* default 1.5; >= 1.0, <= 100 */
} ws_gate_health;

typedef struct ws_gate_approval {
	int min;                       /* default 0; 0..20 */
	const char **roles;            /* default ["approver"] */
	size_t n_roles;
} ws_gate_approval;

/*
 * `metrics: [{name: queue-backlog, query: '...', max: 500, for: 10m}]`: a
 * PromQL check, the query a template of {slug}, {cluster} and {version}
 * (other braces are PromQL's own).  Every sample of the answer must be
 * within min/max, and stay so for `for`; errors, empty answers and NaN fail.
 */
typedef struct ws_gate_metric {
	const char *name;              /* unique within one list */
	const char *query;
	bool has_min, has_max;         /* at least one */
	double min, max;
	int64_t for_s;                 /* default 0: one good answer suffices */
} ws_gate_metric;

/* What a wave inherits from `defaults` and may override. */
typedef struct ws_wave_settings {
	int64_t soak_s;                /* default 0 */
	int max_parallel_per_cluster;  /* 0 = no cap from the policy */
	ws_gate_backup backup;
	ws_gate_health health;
	ws_gate_approval approval;
	/* gates.attestations: names the release must carry, each with a passing
	 * latest result, before the wave starts.  A wave's list replaces the
	 * defaults' list. */
	const char **attestations;
	size_t n_attestations;
	/* gates.metrics; a wave's list replaces the defaults' list. */
	const ws_gate_metric *metrics;
	size_t n_metrics;
	int64_t deploy_estimate_s;     /* schedule.deploy_estimate, copied into every wave */
	int max_failed;                /* failure.max_failed, default 0 */
	ws_failure_action failure_action;   /* default halt */
} ws_wave_settings;

typedef struct ws_wave {
	const char *name;
	ws_selector *select;           /* never NULL ({} matches every tenant) */
	int max_tenants;               /* 0 = no limit */
	ws_wave_settings s;            /* effective: defaults + overrides */
	int line, column;
} ws_wave;

typedef struct ws_policy {
	const char *name;              /* metadata.name, [a-z0-9-]{1,63} */
	const char *description;       /* may be NULL */
	unsigned release_kinds;        /* bit set of ws_release_kind */
	ws_unit unit;                  /* default tenant */
	bool unmatched_skip;           /* unmatched: skip (default error) */
	/* schedule */
	bool respect_windows;          /* default true */
	int64_t slot_s;                /* default 30 min */
	int64_t horizon_s;             /* default 120 days */
	int64_t deploy_estimate_s;     /* expected deploy time without history; default 15m */
	const char **blackouts;        /* calendar names */
	size_t n_blackouts;
	bool break_glass;              /* only with release_kinds == [urgent] */
	/* deferral (optional) */
	bool deferral_allowed;
	int64_t deferral_max_s;
	int deferral_per_tenant;
	ws_wave_settings defaults;
	ws_wave *waves;
	size_t n_waves;
	void *priv;
} ws_policy;

/* Parses and validates a policy (YAML or JSON).  On any problem returns NULL
 * with every problem in `d` as FILE:LINE:COLUMN: message. */
WS_API ws_policy *policy_parse(const char *name, const char *buf, size_t len, ws_diags *d);
WS_API ws_policy *policy_parse_file(const char *path, ws_diags *d);
WS_API void policy_free(ws_policy *p);

/* The wave named `name`, or NULL (borrowed from `p`). */
WS_API const ws_wave *policy_wave(const ws_policy *p, const char *name);

/*
 * Checks a valid policy against a fleet (`wavectl policy validate --fleet`,
 * and before planning): every blackout names a calendar of the fleet, and
 * every wave selects at least one tenant.  `name` is the policy's file name
 * for positions.  Returns 0 or WS_EINVAL with the problems in `d`.
 */
WS_API int policy_check_fleet(const ws_policy *p, const char *name, const ws_fleet *f, ws_diags *d);

/* A one-line summary: `policy "standard-quarterly": 5 waves (training,
 * staging, shared-low-risk, shared-high, dedicated), unit tenant, releases
 * standard, blackouts month-end-close, payroll, holiday-freeze`. */
WS_API char *policy_summary(const ws_policy *p);

#endif
