/*
 * sim.h - the simulated fleet's parts, shared by the files of simfleet/.
 *
 * simfleet plays hosted Odoo tenants for tests and the demo: health and
 * backup status endpoints, a webhook deployer, a minimal Kubernetes
 * Deployments API, faults per tenant, and a backup job that reports to the
 * service.  Everything runs on one libuv loop; delays are uv timers.
 *
 * Determinism: no randomness anywhere.  A tenant's answers depend only on
 * its fault, its version and how many probes it has seen; a deploy's outcome
 * is decided when it is accepted (from the fault in force then), so the same
 * sequence of requests always gives the same answers.
 *
 * Ownership: sim_state owns every tenant, deploy record and Kubernetes
 * Deployment; they live until sim_state_free() (a reset clears deploys and
 * Deployments, never tenants, so pending health answers may keep pointers to
 * tenants).
 */
#ifndef SIMFLEET_SIM_H
#define SIMFLEET_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <uv.h>
#include "wavesched/fleet.h"
#include "wavesched/http.h"

#define SIM_SUBSYS "simfleet"
/* Tenants created on first mention when there is no --fleet: a cap, so a
 * client walking random slugs cannot grow the table without bound. */
#define SIM_MAX_TENANTS 200000
#define SIM_MAX_KEY_LEN 512
#define SIM_MAX_VERSION_LEN 128

/* ---- an insertion-ordered string map (sim_map.c) ------------------------ */
typedef struct sim_map sim_map;
sim_map *sim_map_new(void);
/* Frees the map and, when free_val is given, every value. */
void sim_map_free(sim_map *m, void (*free_val)(void *));
void sim_map_clear(sim_map *m, void (*free_val)(void *));
void *sim_map_get(const sim_map *m, const char *key);
/* Adds key (copied) -> val; the key must not be present.  0 or WS_ENOMEM. */
int sim_map_add(sim_map *m, const char *key, void *val);
size_t sim_map_len(const sim_map *m);
/* The i-th entry in insertion order. */
const char *sim_map_key_at(const sim_map *m, size_t i);
void *sim_map_val_at(const sim_map *m, size_t i);

/* ---- schedule time (sim_fault.c) ----------------------------------------- */
/* schedule = origin + (wall - origin) * scale, as the service's clock. */
typedef struct sim_clock {
	double scale;
	int64_t origin_ms;   /* unix milliseconds */
} sim_clock;
int64_t sim_clock_now_ms(const sim_clock *c);
/* Real milliseconds that `sched_ms` of schedule time take (at least 1). */
uint64_t sim_clock_real_ms(const sim_clock *c, int64_t sched_ms);
void sim_format_time(int64_t unix_ms, char buf[40]);

/* ---- faults (sim_fault.c) -------------------------------------------------- */
typedef enum { SIM_BACKUP_FRESH = 0, SIM_BACKUP_STALE, SIM_BACKUP_MISSING } sim_backup_kind;

typedef struct sim_fault {
	char *unhealthy_after_version;   /* health 503 while at this version */
	int64_t latency_ms;
	double latency_factor;           /* 1 when absent */
	char *latency_after_version;     /* factor applies only at this version; NULL: always */
	bool hang, http_500, deploy_fail, deploy_reject;
	int64_t flap_every;              /* 0: no flapping */
	sim_backup_kind backup;
	int64_t backup_age_s;            /* fresh: 0, stale: 48h unless given */
	int64_t queue_backlog;
	json_t *spec;                    /* the spec as validated, or NULL for no fault */
} sim_fault;

/* Validates `spec` (a JSON object) into `out`.  On error returns WS_EINVAL,
 * names the offending field in `field` (static or inside spec) and writes a
 * sentence to `msg`; `out` is then untouched. */
int sim_fault_parse(const json_t *spec, sim_fault *out, const char **field, char *msg,
		    size_t msg_size);
void sim_fault_clear(sim_fault *f);

/* ---- tenants, deploys, Deployments (sim_state.c) ------------------------ */
typedef struct sim_tenant {
	char *slug;
	char *initial_version;
	char *version;
	json_t *scenario;         /* the --scenario fault spec, restored by reset; or NULL */
	sim_fault fault;
	uint64_t health_requests; /* every GET .../health */
	uint64_t probes;          /* since the fault was set: drives flap_every */
	uint64_t deploys;         /* deploys that completed (done) */
	json_t *keys;             /* idempotency keys seen for it, in order (array) */
	bool from_fleet;
	/* What /metrics exposes as the tenant's Odoo gauges (metric gates),
	 * set by POST /_sim/gauges/{slug}; 0 after a reset. */
	double odoo_queue_backlog, odoo_db_lock_waits;
} sim_tenant;

typedef enum { SIM_DEP_REJECTED = 0, SIM_DEP_PENDING, SIM_DEP_DONE, SIM_DEP_FAILED } sim_dep_state;
const char *sim_dep_state_name(sim_dep_state s);

typedef struct sim_k8s sim_k8s;
typedef struct sim_state sim_state;

/* One idempotency key: every call that carried it, and what it did. */
typedef struct sim_deploy {
	sim_state *sim;
	char *key;
	char *tenant;
	char *version;
	char *previous_version;
	const char *executor;     /* "webhook" or "kubernetes" */
	sim_dep_state state;
	bool will_fail;
	uint64_t calls;           /* requests that carried this key */
	uint64_t deploys;         /* times it was acted upon: must stay <= 1 */
	int64_t first_at_us;      /* wall clock of the first request with this key */
	sim_k8s *k8s;             /* for kubernetes: the Deployment it changes */
	uint64_t k8s_generation;  /* the generation this deploy produced */
	uv_timer_t timer;         /* convergence; closed when the record goes */
} sim_deploy;

struct sim_k8s {
	char *ns, *name, *tenant;
	char *container;
	char *image;
	uint64_t generation, observed_generation;
	int replicas, updated_replicas, available_replicas;
	bool failed;              /* the rollout never converges */
};

struct sim_state {
	uv_loop_t *loop;
	sim_clock clock;
	uint64_t converge_ms;
	const ws_fleet *fleet;    /* NULL: any slug is accepted, starting at "0" */
	const char *token;        /* SIMFLEET_TOKEN, or NULL: no auth on deployers */
	sim_map *tenants;         /* slug -> sim_tenant */
	sim_map *deploys;         /* key -> sim_deploy */
	sim_map *k8s;             /* "ns/name" -> sim_k8s */
	uint64_t anon_keys;       /* PATCHes without Idempotency-Key */
	size_t pending_deploys;   /* timers not yet fired */
	struct sim_backup *backup;   /* NULL without --service */
	bool stopping;
};

sim_state *sim_state_new(uv_loop_t *loop, const ws_fleet *fleet, const sim_clock *clock,
			 uint64_t converge_ms);
/* Applies a --scenario document; problems go to `d` (and nothing changes). */
int sim_state_scenario(sim_state *s, const json_t *doc, const char *name, ws_diags *d);
/* Closes deploy timers; the state is freed once their close callbacks ran. */
void sim_state_close(sim_state *s);
void sim_state_free(sim_state *s);
/* Back to the start: versions, scenario faults, no calls or deploys. */
void sim_state_reset(sim_state *s);

/* The tenant, created on first mention when there is no fleet; NULL when
 * unknown (or the slug is malformed, or the table is full). */
sim_tenant *sim_tenant_get(sim_state *s, const char *slug, bool create);
bool sim_slug_valid(const char *slug);
int sim_tenant_set_fault(sim_tenant *t, const sim_fault *f);   /* takes f's contents */
/* Whether a health probe now would pass, without counting it. */
bool sim_tenant_healthy(const sim_tenant *t, uint64_t probe_index);
int64_t sim_tenant_latency_ms(const sim_tenant *t);

/* Records a call with `key`; returns the record (new or old). */
sim_deploy *sim_deploy_record(sim_state *s, const char *key, const char *tenant,
			      const char *executor, bool *is_new);
/* Starts the deploy of a record (new, or one whose earlier call was
 * rejected): decides its outcome and arms the convergence timer. */
void sim_deploy_start(sim_deploy *d, sim_tenant *t, const char *version,
		      const char *previous_version);

/* ---- HTTP (sim_http.c) ----------------------------------------------------- */
typedef struct sim_http sim_http;
sim_http *sim_http_new(sim_state *s);
void sim_http_handle(void *arg, ws_http_req *req);
/* Answers every held request (hang, latency) with 503 now, and any
 * request that would be held from now on: the HTTP server can drain. */
void sim_http_drain(sim_http *h);
/* Drains, closes the timers and frees h; `cb` runs once all are closed.
 * The HTTP server must not call sim_http_handle any more. */
void sim_http_close(sim_http *h, void (*cb)(void *), void *arg);

/* ---- backup reports (sim_backup.c) ----------------------------------------- */
typedef struct sim_backup sim_backup;
/* url: the service base URL; token may be NULL. */
sim_backup *sim_backup_new(sim_state *s, const char *service_url, const char *token,
			   int64_t interval_sched_ms);
int sim_backup_start(sim_backup *b);
/* Reports every tenant now; `req` (may be NULL) is answered when the round
 * ends with {"reported", "failed", "skipped"}. */
void sim_backup_report_now(sim_backup *b, ws_http_req *req);
void sim_backup_close(sim_backup *b, void (*cb)(void *), void *arg);

/* ---- the fleet rewrite (sim_fleetfor.c) --------------------------------- */
int sim_fleet_for_main(int argc, char **argv);
int sim_deploy_client_main(int argc, char **argv);

#endif
