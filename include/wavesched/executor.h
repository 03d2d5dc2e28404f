/*
 * executor.h - deploying one tenant (engine.md "Executors"): the cluster's
 * `deploy` settings (fleet.md, validated by fleet_parse) say how.
 *
 *   webhook     POST {rollout, tenant, cluster, version, previous_version,
 *               artifact, idempotency_key, rollback} to `url`, with
 *               "Authorization: Bearer $<token_env>" when token_env is set and
 *               "Idempotency-Key: <key>".  2xx = accepted.  With `status_url`
 *               (placeholders {slug} {version} {key}, URL-encoded), GET it
 *               every poll interval until {"state": "done"} (success) or
 *               {"state": "failed"} (failure; "message" or "reason" quoted);
 *               any other state string means "still running".
 *   kubernetes  PATCH {api_url}/apis/apps/v1/namespaces/{namespace}/deployments/
 *               {deployment} with a strategic merge patch setting the image of
 *               `container`; namespace, deployment, container and image are
 *               templates with {slug} and {version} and all four are needed.
 *               Then GET the same URL every poll interval until
 *               observedGeneration >= generation (of the PATCH answer too)
 *               and updatedReplicas == availableReplicas == status.replicas ==
 *               spec.replicas; a Progressing condition with reason
 *               ProgressDeadlineExceeded fails at once.
 *   command     uv_spawn the argv template ({slug} {version}
 *               {previous_version} {key}) in a process group of its own, with
 *               the service's environment minus its own WAVESCHED_* settings
 *               (the database URL may hold a password), plus
 *               WAVESCHED_IDEMPOTENCY_KEY; exit 0 = success.
 *               stdout and stderr are captured together, at most
 *               WS_EXECUTOR_MAX_OUTPUT bytes (truncation is noted).  At the
 *               time-out the whole process group is killed (SIGKILL).
 *
 * Fail closed: a missing token variable fails before any call; a non-2xx
 * answer, a malformed one (not JSON, wrong types), a transport error or the
 * time-out fails the deploy, with a reason naming the URL and what was wrong.
 * Every deploy ends with an evidence JSON: the executor, each request made
 * (method, URL, status, latency, error, the state read) or the command's
 * argv, exit status, output.
 *
 * The overall time-out is the call's timeout_ms, else the settings' `timeout`,
 * else WS_EXECUTOR_DEFAULT_TIMEOUT_MS; single HTTP calls are also bounded by
 * WS_EXECUTOR_CALL_TIMEOUT_MS.  Poll intervals are real milliseconds given by
 * the caller (the engine converts schedule time).
 */
#ifndef WAVESCHED_EXECUTOR_H
#define WAVESCHED_EXECUTOR_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include <uv.h>
#include "wavesched/diag.h"
#include "wavesched/outbound.h"

#define WS_EXECUTOR_MAX_OUTPUT (64u * 1024u)
#define WS_EXECUTOR_DEFAULT_TIMEOUT_MS (15u * 60u * 1000u)
#define WS_EXECUTOR_CALL_TIMEOUT_MS 30000u
#define WS_EXECUTOR_DEFAULT_POLL_MS 5000u

typedef struct ws_executor ws_executor;
typedef struct ws_deploy_job ws_deploy_job;

/* One deploy of one tenant.  `version` is always the version to put in
 * place: for a rollback it is the old one and previous_version the one being
 * removed.  Strings are copied. */
typedef struct ws_deploy_call {
	const char *rollout_id;
	const char *slug;
	const char *cluster;
	const char *version;
	const char *previous_version;   /* may be NULL */
	const char *artifact;           /* "sha256:..." */
	const char *idempotency_key;    /* "rollout/tenant/attempt" */
	bool rollback;
	uint64_t poll_interval_ms;      /* 0 = WS_EXECUTOR_DEFAULT_POLL_MS */
	uint64_t timeout_ms;            /* 0 = the settings' timeout, else the default */
} ws_deploy_call;

typedef struct ws_deploy_result {
	bool ok;
	const char *reason;      /* one sentence; "" never: says what happened */
	const json_t *evidence;  /* borrowed: json_incref to keep */
} ws_deploy_result;

/* Fires exactly once per accepted run, from the loop. */
typedef void (*ws_deploy_cb)(void *arg, const ws_deploy_result *r);

/* Checks the settings (an object as fleet_parse keeps it) and keeps a copy.
 * `out` is borrowed (needed by webhook and kubernetes).  Returns NULL with
 * the problems in `d` ("cluster X: kubernetes deploy settings need
 * \"image\""). */
WS_API ws_executor *ws_executor_new(uv_loop_t *loop, ws_outbound *out, const char *cluster,
				    const json_t *deploy, ws_diags *d);
/* Jobs in flight keep what they need: freeing the executor does not stop them. */
WS_API void ws_executor_free(ws_executor *e);
WS_API const char *ws_executor_kind(const ws_executor *e);   /* "webhook", ... */

/* Starts a deploy.  Returns 0 (and the job in *job_out when given, valid
 * until its callback returns), or WS_EINVAL when a field of the call is
 * missing, or WS_ENOMEM.  Every other failure comes through the callback. */
WS_API int ws_executor_run(ws_executor *e, const ws_deploy_call *call, ws_deploy_cb cb,
			   void *arg, ws_deploy_job **job_out);
/* Gives up on a job: its callback fires (from the loop) with ok = false,
 * "cancelled".  A command's process group is killed. */
WS_API void ws_deploy_job_cancel(ws_deploy_job *j);

/* Expands {name} placeholders of `tmpl` from the NULL-terminated pairs
 * `names`/`values` (values URL-encoded when `urlencode`); "{{" and "}}" are
 * literal braces.  Returns a new
 * string, or NULL with the offending placeholder in `err` when a name is
 * unknown or a brace is unclosed. */
WS_API char *ws_executor_expand(const char *tmpl, const char *const *names,
				const char *const *values, bool urlencode, char *err,
				size_t errsz);

#endif
