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
 *   gitops      writes the tenant's desired state into `path` (a template
 *               with {slug} {cluster} {version}, relative to the repository)
 *               of `branch` (default main) of the Git repository `repo`,
 *               commits and pushes, then waits for the sync to be observed.
 *               Everything runs through the `git` program (uv_spawn, never
 *               libgit2), in a bare clone under
 *               <state dir>/gitops/<sha256 of repo and branch>, without a
 *               working tree: fetch the branch (FETCH_HEAD, no ref to lock),
 *               look in its history for a commit whose Idempotency-Key
 *               trailer is this call's key (found: no new commit, go to the
 *               sync), hash-object + read-tree + update-index + write-tree
 *               (the same tree as the tip: no empty commit), commit-tree,
 *               push.  A push refused as not fast-forward starts again at the
 *               fetch, at most WS_EXECUTOR_GITOPS_PUSH_ATTEMPTS times.  One
 *               git sequence at a time per clone in the process (a queue);
 *               the sync wait does not hold it.  Git gets a fixed identity,
 *               no pager, no prompt (GIT_TERMINAL_PROMPT=0), no hooks, LC_ALL=C,
 *               and the environment of the command executor minus the
 *               GIT_* variables that would point it at another repository or
 *               identity.  The file is the JSON form of YAML (every YAML
 *               parser reads it): {tenant, cluster, version,
 *               previous_version, artifact, rollout, wave, idempotency_key,
 *               rollback}.  The commit message:
 *                   wavesched: deploy <tenant> <version>   (or "roll back ... to")
 *                   <blank>, a line naming rollout, wave and cluster, <blank>,
 *                   Wavesched-Rollout: <id>
 *                   Wavesched-Wave: <wave name>
 *                   Idempotency-Key: <key>
 *               `sync: health` (the default) GETs the call's health_url
 *               until its JSON object says "version": <version> (non-2xx
 *               answers mean "not yet"; a 2xx answer that is not a JSON
 *               object with a string "version" fails).  `sync: status_url`
 *               GETs the URL template ({slug} {cluster} {version}
 *               {revision}, URL-encoded; bearer token from token_env) until
 *               the Argo CD Application it answers has
 *               status.sync.status "Synced", status.sync.revision equal to
 *               the commit (or a descendant of it, checked with
 *               `git merge-base --is-ancestor` in the clone, after fetching
 *               the branch's objects once for a revision it lacks) and
 *               status.health.status "Healthy"; "Degraded" health at such
 *               a revision fails.  Failures name the step (clone, fetch,
 *               commit, push, sync) and quote the end of git's stderr.
 *               Evidence: repo, branch, path, commit, committed (a new
 *               commit was pushed), found_by_key, push_attempts, every git
 *               command (args, exit status, stderr), the sync requests.
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
 * WS_EXECUTOR_CALL_TIMEOUT_MS (a call that had only what remained of the
 * overall time-out and ran out is reported as that time-out, with the last
 * state, not as a failed call).  Poll intervals are real milliseconds given by
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
#define WS_EXECUTOR_GITOPS_PUSH_ATTEMPTS 5
/* Where gitops clones live when ws_executor_set_state_dir was not called
 * and WAVESCHED_STATE_DIR is not set (config.h `state_dir`). */
#define WS_EXECUTOR_DEFAULT_STATE_DIR "/var/lib/wavesched"

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
	const char *wave;               /* the wave's name; may be NULL (gitops trailer "-") */
	const char *health_url;         /* the tenant's; gitops `sync: health` needs it */
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

/* The service's state directory (config `state_dir`), where the gitops
 * executor keeps its clones; copied.  Process-wide: clones are shared by
 * every executor of the process, as is the lock that serialises them. */
WS_API void ws_executor_set_state_dir(const char *dir);

/* Expands {name} placeholders of `tmpl` from the NULL-terminated pairs
 * `names`/`values` (values URL-encoded when `urlencode`); "{{" and "}}" are
 * literal braces.  Returns a new
 * string, or NULL with the offending placeholder in `err` when a name is
 * unknown or a brace is unclosed. */
WS_API char *ws_executor_expand(const char *tmpl, const char *const *names,
				const char *const *values, bool urlencode, char *err,
				size_t errsz);

#endif
