/*
 * states.h - the engine's three state machines (spec/engine.md "Objects and
 * states", docs/design/engine.md "States"): rollouts, waves and tenant
 * deployments.
 *
 * Each machine is an enum of states, an enum of events and one transition
 * function ws_<obj>_next(from, event, &to) that is the only authority on what
 * may follow what.  The database holds the same table (ws_state_transitions
 * in migrations/0003_engine.sql; a unit test proves the two agree), so a
 * transition the C side would refuse is refused by ws_engine_tx too.
 *
 * State names are the strings stored in the database and shown by the API;
 * the enum order is only for table lookups.  Pure code: no I/O, no
 * allocation.
 */
#ifndef WAVESCHED_STATES_H
#define WAVESCHED_STATES_H

#include <stdbool.h>
#include "wavesched/diag.h"

/* ---- rollouts ------------------------------------------------------------ */

typedef enum {
	WS_RO_PLANNED = 0,
	WS_RO_APPROVED,
	WS_RO_RUNNING,
	WS_RO_PAUSED,
	WS_RO_COMPLETED,
	WS_RO_PREEMPTED,
	WS_RO_HALTED,
	WS_RO_ABORTED,
	WS_RO_ROLLED_BACK,
	WS_RO__COUNT
} ws_rollout_state;

typedef enum {
	WS_RO_EV_APPROVE = 0,     /* a person releases the planned rollout (`start` command) */
	WS_RO_EV_START,           /* the engine begins it (its start time has come) */
	WS_RO_EV_PAUSE,           /* a person pauses it */
	WS_RO_EV_RESUME,          /* a person resumes it */
	WS_RO_EV_COMPLETE,        /* the last wave passed */
	WS_RO_EV_PREEMPT,         /* an urgent rollout took its tenants at a wave boundary */
	WS_RO_EV_RESUME_PREEMPTED,/* the urgent rollout is done; resumes with a re-plan */
	WS_RO_EV_HALT,            /* a gate failed beyond the failure budget */
	WS_RO_EV_ABORT,           /* a person aborts it */
	WS_RO_EV_ROLLBACK_DONE,   /* the rollback of its deployed tenants finished */
	WS_RO_EV__COUNT
} ws_rollout_event;

/* ---- waves --------------------------------------------------------------- */

typedef enum {
	WS_WAVE_PENDING = 0,
	WS_WAVE_BACKUP_CHECK,
	WS_WAVE_DEPLOYING,
	WS_WAVE_VERIFYING,
	WS_WAVE_SOAKING,
	WS_WAVE_PASSED,
	WS_WAVE_FAILED,
	WS_WAVE__COUNT
} ws_wave_state;

typedef enum {
	WS_WAVE_EV_CHECK_BACKUPS = 0, /* approvals are in and the previous wave passed */
	WS_WAVE_EV_DEPLOY,            /* the backup gate let (some of) its tenants through */
	WS_WAVE_EV_VERIFY,            /* every tenant to deploy has been deployed */
	WS_WAVE_EV_SOAK,              /* every tenant is healthy (or within the budget) */
	WS_WAVE_EV_PASS,              /* the soak is over without a failure */
	WS_WAVE_EV_FAIL,              /* beyond the failure budget while active */
	WS_WAVE_EV__COUNT
} ws_wave_event;

/* ---- tenant deployments -------------------------------------------------- */

typedef enum {
	WS_DEP_SCHEDULED = 0,
	WS_DEP_WAITING_WINDOW,
	WS_DEP_DEPLOYING,
	WS_DEP_VERIFYING,
	WS_DEP_HEALTHY,
	WS_DEP_FAILED,
	WS_DEP_ROLLING_BACK,
	WS_DEP_ROLLED_BACK,
	WS_DEP_SKIPPED,
	WS_DEP__COUNT
} ws_deployment_state;

typedef enum {
	WS_DEP_EV_WAIT = 0,       /* its wave passed the backup gate for it: wait for the window */
	WS_DEP_EV_MOVE,           /* the window was missed: moved to the next occurrence */
	WS_DEP_EV_DEPLOY,         /* the window is open: the deploy intent is committed */
	WS_DEP_EV_VERIFY,         /* the executor reported success: health probes start */
	WS_DEP_EV_HEALTHY,        /* the health gate passed */
	WS_DEP_EV_FAIL,           /* executor, health gate or soak failure; or a failed rollback */
	WS_DEP_EV_ROLLBACK,       /* redeploy the previous version */
	WS_DEP_EV_ROLLBACK_DONE,  /* the previous version is back */
	WS_DEP_EV_SKIP,           /* never deployed: backup stale, window beyond the horizon,
				   * rollout aborted (the reason is recorded separately) */
	WS_DEP_EV__COUNT
} ws_deployment_event;

/* Names as stored in the database ("rolled_back"); NULL for a value out of
 * range.  Events have names too, for logs and the audit log. */
WS_API const char *ws_rollout_state_name(ws_rollout_state s);
WS_API const char *ws_wave_state_name(ws_wave_state s);
WS_API const char *ws_deployment_state_name(ws_deployment_state s);
WS_API const char *ws_rollout_event_name(ws_rollout_event e);
WS_API const char *ws_wave_event_name(ws_wave_event e);
WS_API const char *ws_deployment_event_name(ws_deployment_event e);

/* Parses a state name (exact, lowercase); 0 or WS_EINVAL (then *out is
 * untouched).  NULL is invalid. */
WS_API int ws_rollout_state_parse(const char *name, ws_rollout_state *out);
WS_API int ws_wave_state_parse(const char *name, ws_wave_state *out);
WS_API int ws_deployment_state_parse(const char *name, ws_deployment_state *out);

/* The transition functions: 0 and *to set when `event` is allowed in
 * `from`, -1 (and *to untouched) otherwise, including out-of-range values. */
WS_API int ws_rollout_next(ws_rollout_state from, ws_rollout_event event, ws_rollout_state *to);
WS_API int ws_wave_next(ws_wave_state from, ws_wave_event event, ws_wave_state *to);
WS_API int ws_deployment_next(ws_deployment_state from, ws_deployment_event event,
			      ws_deployment_state *to);

/* Terminal states accept no event at all. */
WS_API bool ws_rollout_state_terminal(ws_rollout_state s);
WS_API bool ws_wave_state_terminal(ws_wave_state s);
WS_API bool ws_deployment_state_terminal(ws_deployment_state s);

/*
 * SQLSTATEs raised by the engine's database functions (0003_engine.sql), so
 * callers tell a lost leadership from a lost race without parsing messages.
 */
#define WS_SQLSTATE_STALE_EPOCH     "WSE01"  /* "stale epoch": the lease moved on */
#define WS_SQLSTATE_STATE_CONFLICT  "WSE02"  /* "state conflict: ...": expected state not found */
#define WS_SQLSTATE_BAD_TRANSITION  "WSE03"  /* "transition not allowed: ..." */
#define WS_SQLSTATE_BAD_OP          "WSE04"  /* "invalid op ...": a malformed ops document */
#define WS_SQLSTATE_NOT_FOUND       "WSE05"  /* "... does not exist" */
#define WS_SQLSTATE_FORBIDDEN       "WSE06"  /* separation of duties and the like */
#define WS_SQLSTATE_IMMUTABLE       "WSE07"  /* a used release, a plan, an audit row */

#endif
