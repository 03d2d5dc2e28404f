/*
 * executor.c - deploying one tenant through a webhook, the Kubernetes API or
 * a local command (the contract is in include/wavesched/executor.h).
 *
 * A job is a small state machine: SUBMIT (the POST or PATCH, or the spawned
 * command) then POLL (status URL or Deployment status) until an answer
 * decides, or the deadline timer does.  The outcome is decided once, in
 * job_finish(); the callback runs only after every resource of the job is
 * quiet -- the HTTP call in flight cancelled and returned, the process group
 * reaped, every handle closed -- so it always runs from a close callback on
 * the loop and the job is freed right after it.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>
#include "wavesched/crypto.h"
#include "wavesched/executor.h"
#include "wavesched/fleet.h"
#include "wavesched/log.h"

extern char **environ;

#define EX_MAX_REQUESTS 50        /* evidence: the first request and the latest polls */
#define EX_EXCERPT 200            /* bytes of a remote answer quoted in a reason */
#define EX_EXCERPT_BUF (3 * EX_EXCERPT + 8)   /* each byte may become U+FFFD, and "..." */
#define EX_PIPE_GRACE_MS 2000     /* output still open after the command exited */

#define EX_GIT_LOG_MAX 60        /* evidence: git commands kept */
#define EX_GIT_TAIL 400           /* bytes of git's stderr quoted in a reason */
#define EX_GIT_TAIL_BUF (3 * EX_GIT_TAIL + 1)

typedef enum { EX_WEBHOOK, EX_KUBERNETES, EX_COMMAND, EX_GITOPS } ex_kind;
typedef enum { ST_SUBMIT, ST_POLL } ex_stage;

static const char *const kind_names[] = { "webhook", "kubernetes", "command", "gitops" };

/* The git command a gitops job is running, in sequence order. */
typedef enum {
	G_NONE, G_INIT, G_FETCH, G_REVPARSE, G_FIND, G_HASH, G_READTREE, G_UPDINDEX,
	G_WRITETREE, G_COMMIT, G_PUSH, G_ANCESTOR, G_SYNCFETCH,
} git_step;

typedef struct repo_lock repo_lock;

struct ws_executor {
	uv_loop_t *loop;
	ws_outbound *out;
	char *cluster;
	ex_kind kind;
	json_t *settings;
	uint64_t timeout_ms;      /* from the settings; 0 = none given */
};

struct ws_deploy_job {
	uv_loop_t *loop;
	ws_outbound *out;
	ex_kind kind;
	json_t *settings;
	char *cluster, *rollout, *slug, *version, *prev, *artifact, *key;
	bool rollback;
	uint64_t poll_ms, timeout_ms;
	ws_deploy_cb cb;
	void *arg;

	ex_stage stage;
	json_t *evidence;
	json_t *requests;         /* in evidence */
	size_t requests_dropped;
	char *auth;               /* "Authorization: Bearer ..." or NULL */
	char *submit_url, *poll_url;
	json_int_t generation;    /* kubernetes: from the PATCH answer */
	char last_state[128];

	uv_timer_t deadline;
	uv_timer_t poll;          /* poll interval; for a command, the pipe grace */
	int handles_open;
	ws_outbound_call *call;
	bool call_cut;            /* the call's time-out is what remains of the deadline */

	/* command */
	uv_process_t proc;
	uv_pipe_t pipes[2];
	bool proc_alive;
	bool exited;
	int pipes_open;
	char *output;
	size_t output_len;
	bool truncated;
	int64_t exit_status;
	int term_signal;

	/* gitops */
	char *wave, *health_url;
	char *repo, *branch, *path, *dir, *index_env;
	git_step gstep;
	bool syncing;             /* the commit is in the branch: waiting for the sync */
	bool by_status;           /* sync: status_url */
	char *errout;             /* the git child's stderr (output is its stdout) */
	size_t errout_len;
	uv_pipe_t in_pipe;        /* the git child's stdin, when it reads one */
	bool in_open;
	uv_write_t wreq;
	char *in_buf;
	char *base, *base_tree, *blob, *tree, *commit, *content, *revision;
	char *fetched_for;        /* the revision a sync-time fetch was made for */
	int push_attempts;
	json_t *git_log;          /* in evidence */
	repo_lock *lock;
	bool lock_held;
	ws_deploy_job *lock_next;

	bool finished, closing;
	bool ok;
	char *reason;
};

/* ---- templates ---------------------------------------------------------- */

static bool unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

WS_API char *ws_executor_expand(const char *tmpl, const char *const *names,
				const char *const *values, bool urlencode, char *err,
				size_t errsz)
{
	char *out = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&out, &len);
	if (!fp)
		return NULL;
	for (const char *s = tmpl; *s; s++) {
		/* "{{" and "}}" are literal braces, as in Python's str.format:
		 * a command's shell script may need ${VAR}. */
		if ((s[0] == '{' || s[0] == '}') && s[1] == s[0]) {
			fputc(*s++, fp);
			continue;
		}
		if (*s != '{') {
			fputc(*s, fp);
			continue;
		}
		const char *end = strchr(s, '}');
		if (!end) {
			snprintf(err, errsz, "unclosed \"{\" in \"%s\"", tmpl);
			goto fail;
		}
		size_t n = (size_t)(end - s - 1);
		size_t i;
		for (i = 0; names[i]; i++)
			if (strlen(names[i]) == n && strncmp(names[i], s + 1, n) == 0)
				break;
		if (!names[i]) {
			snprintf(err, errsz, "unknown placeholder \"{%.*s}\" in \"%s\" (a literal brace "
				 "is written {{ or }})", (int)n, s + 1, tmpl);
			goto fail;
		}
		const char *v = values[i] ? values[i] : "";
		for (; *v; v++) {
			if (urlencode && !unreserved((unsigned char)*v))
				fprintf(fp, "%%%02X", (unsigned char)*v);
			else
				fputc(*v, fp);
		}
		s = end;
	}
	fclose(fp);
	return out;
fail:
	fclose(fp);
	free(out);
	return NULL;
}

/* ---- settings ----------------------------------------------------------- */

static const char *setting(const json_t *s, const char *key)
{
	return json_string_value(json_object_get(s, key));
}

static const char *const tmpl_names_http[] = { "slug", "version", "key", NULL };
static const char *const tmpl_names_k8s[] = { "slug", "version", NULL };
static const char *const tmpl_names_cmd[] = { "slug", "version", "previous_version", "key", NULL };

static void check_template(const char *cluster, const char *key, const char *t,
			   const char *const *names, int *bad, ws_diags *d)
{
	const char *values[8] = { "x", "x", "x", "x", NULL };
	char err[256];
	char *r = ws_executor_expand(t, names, values, false, err, sizeof(err));
	if (!r) {
		ws_diag_add(d, NULL, 0, 0, "cluster %s: deploy \"%s\": %s", cluster, key, err);
		(*bad)++;
	}
	free(r);
}

WS_API ws_executor *ws_executor_new(uv_loop_t *loop, ws_outbound *out, const char *cluster,
				    const json_t *deploy, ws_diags *d)
{
	const char *kind = json_is_object(deploy) ? setting(deploy, "executor") : NULL;
	if (!kind) {
		ws_diag_add(d, NULL, 0, 0, "cluster %s: no deploy settings (\"executor\" is missing)",
			    cluster);
		return NULL;
	}
	ex_kind k;
	int bad = 0;
	if (strcmp(kind, "webhook") == 0) {
		k = EX_WEBHOOK;
		if (!setting(deploy, "url")) {
			ws_diag_add(d, NULL, 0, 0, "cluster %s: webhook deploy settings need \"url\"", cluster);
			bad++;
		}
		if (setting(deploy, "status_url"))
			check_template(cluster, "status_url", setting(deploy, "status_url"),
				       tmpl_names_http, &bad, d);
	} else if (strcmp(kind, "kubernetes") == 0) {
		k = EX_KUBERNETES;
		static const char *const need[] = { "api_url", "namespace", "deployment", "container",
						    "image", NULL };
		for (size_t i = 0; need[i]; i++) {
			const char *v = setting(deploy, need[i]);
			if (!v) {
				ws_diag_add(d, NULL, 0, 0,
					    "cluster %s: kubernetes deploy settings need \"%s\"", cluster,
					    need[i]);
				bad++;
			} else if (i > 0) {
				check_template(cluster, need[i], v, tmpl_names_k8s, &bad, d);
			}
		}
	} else if (strcmp(kind, "command") == 0) {
		k = EX_COMMAND;
		const json_t *argv = json_object_get(deploy, "argv");
		if (!json_is_array(argv) || json_array_size(argv) == 0) {
			ws_diag_add(d, NULL, 0, 0, "cluster %s: command deploy settings need a non-empty \"argv\"",
				    cluster);
			bad++;
		} else {
			size_t i;
			const json_t *a;
			json_array_foreach(argv, i, a) {
				if (!json_is_string(a)) {
					ws_diag_add(d, NULL, 0, 0, "cluster %s: argv[%zu] is not a string",
						    cluster, i);
					bad++;
				} else {
					check_template(cluster, "argv", json_string_value(a), tmpl_names_cmd,
						       &bad, d);
				}
			}
		}
	} else if (strcmp(kind, "gitops") == 0) {
		k = EX_GITOPS;
		static const char *const path_names[] = { "slug", "cluster", "version", NULL };
		static const char *const argo_names[] = { "slug", "cluster", "version", "revision", NULL };
		const char *sync = setting(deploy, "sync");
		if (!setting(deploy, "repo")) {
			ws_diag_add(d, NULL, 0, 0, "cluster %s: gitops deploy settings need \"repo\"", cluster);
			bad++;
		}
		if (!setting(deploy, "path")) {
			ws_diag_add(d, NULL, 0, 0, "cluster %s: gitops deploy settings need \"path\"", cluster);
			bad++;
		} else {
			check_template(cluster, "path", setting(deploy, "path"), path_names, &bad, d);
		}
		if (sync && strcmp(sync, "health") != 0 && strcmp(sync, "status_url") != 0) {
			ws_diag_add(d, NULL, 0, 0, "cluster %s: gitops \"sync\" must be health or "
				    "status_url, not \"%s\"", cluster, sync);
			bad++;
		} else if (sync && strcmp(sync, "status_url") == 0) {
			if (!setting(deploy, "status_url")) {
				ws_diag_add(d, NULL, 0, 0, "cluster %s: gitops sync: status_url needs "
					    "\"status_url\"", cluster);
				bad++;
			} else {
				check_template(cluster, "status_url", setting(deploy, "status_url"),
					       argo_names, &bad, d);
			}
		}
	} else {
		ws_diag_add(d, NULL, 0, 0, "cluster %s: unknown executor \"%s\"", cluster, kind);
		return NULL;
	}
	int64_t timeout_s = 0;
	const char *t = setting(deploy, "timeout");
	if (t && (ws_duration_parse(t, &timeout_s) != 0 || timeout_s <= 0)) {
		ws_diag_add(d, NULL, 0, 0, "cluster %s: deploy \"timeout\" \"%s\" is not a duration",
			    cluster, t);
		bad++;
	}
	if (bad)
		return NULL;
	ws_executor *e = calloc(1, sizeof(*e));
	if (!e || !(e->cluster = strdup(cluster))) {
		free(e);
		return NULL;
	}
	e->loop = loop;
	e->out = out;
	e->kind = k;
	e->settings = json_deep_copy(deploy);
	e->timeout_ms = (uint64_t)timeout_s * 1000u;
	return e;
}

WS_API void ws_executor_free(ws_executor *e)
{
	if (!e)
		return;
	json_decref(e->settings);
	free(e->cluster);
	free(e);
}

WS_API const char *ws_executor_kind(const ws_executor *e)
{
	return kind_names[e->kind];
}

/* ---- the job's end ------------------------------------------------------ */

static void job_free(ws_deploy_job *j)
{
	json_decref(j->settings);
	json_decref(j->evidence);
	free(j->cluster);
	free(j->rollout);
	free(j->slug);
	free(j->version);
	free(j->prev);
	free(j->artifact);
	free(j->key);
	free(j->auth);
	free(j->submit_url);
	free(j->poll_url);
	free(j->output);
	free(j->reason);
	free(j->wave);
	free(j->health_url);
	free(j->repo);
	free(j->branch);
	free(j->path);
	free(j->dir);
	free(j->index_env);
	free(j->errout);
	free(j->in_buf);
	free(j->base);
	free(j->base_tree);
	free(j->blob);
	free(j->tree);
	free(j->commit);
	free(j->content);
	free(j->revision);
	free(j->fetched_for);
	free(j);
}

static void lock_leave(ws_deploy_job *j);

static void job_handle_closed(uv_handle_t *h)
{
	ws_deploy_job *j = h->data;
	if (--j->handles_open > 0)
		return;
	lock_leave(j);   /* nothing of ours runs in the clone any more */
	json_object_set_new(j->evidence, "ok", json_boolean(j->ok));
	json_object_set_new(j->evidence, "reason", json_string(j->reason ? j->reason : ""));
	if (j->requests_dropped)
		json_object_set_new(j->evidence, "requests_dropped",
				    json_integer((json_int_t)j->requests_dropped));
	ws_deploy_result r = { .ok = j->ok, .reason = j->reason ? j->reason : "", .evidence = j->evidence };
	if (j->ok)
		ws_info("executor", "cluster=%s tenant=%s key=%s: %s", j->cluster, j->slug, j->key, r.reason);
	else
		ws_warn("executor", "cluster=%s tenant=%s key=%s: %s", j->cluster, j->slug, j->key, r.reason);
	j->cb(j->arg, &r);
	job_free(j);
}

/* Closes the handles once nothing of the job is still running. */
static void job_maybe_done(ws_deploy_job *j)
{
	if (!j->finished || j->closing || j->call || j->proc_alive || j->pipes_open > 0 || j->in_open)
		return;
	j->closing = true;
	uv_close((uv_handle_t *)&j->deadline, job_handle_closed);
	uv_close((uv_handle_t *)&j->poll, job_handle_closed);
}

/* Bumped when a git child is killed: the next sequences use another index
 * file, so the index.lock a killed update-index may leave stops nobody. */
static unsigned gitops_index_gen;

/* Decides the outcome, once, and stops whatever still runs. */
static void job_finish(ws_deploy_job *j, bool ok, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void job_finish(ws_deploy_job *j, bool ok, const char *fmt, ...)
{
	if (j->finished)
		return;
	j->finished = true;
	j->ok = ok;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&j->reason, fmt, ap) < 0)
		j->reason = NULL;
	va_end(ap);
	uv_timer_stop(&j->deadline);
	uv_timer_stop(&j->poll);
	if (j->call)
		ws_outbound_cancel(j->call);
	if (j->proc_alive) {
		kill(-j->proc.pid, SIGKILL);   /* the whole group: children too */
		if (j->kind == EX_GITOPS)
			gitops_index_gen++;    /* it may leave an index.lock behind */
	}
	job_maybe_done(j);
}

/* ---- HTTP --------------------------------------------------------------- */

/* Length of the well-formed UTF-8 sequence (RFC 3629: no overlong forms,
 * no surrogates, nothing above U+10FFFF) at s, within n bytes; 0 when there
 * is none, or when s is a NUL. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	size_t len;
	uint32_t cp, min;
	if (s[0] < 0x80)
		return s[0] ? 1 : 0;
	if ((s[0] & 0xE0) == 0xC0)
		len = 2, cp = s[0] & 0x1Fu, min = 0x80;
	else if ((s[0] & 0xF0) == 0xE0)
		len = 3, cp = s[0] & 0x0Fu, min = 0x800;
	else if ((s[0] & 0xF8) == 0xF0)
		len = 4, cp = s[0] & 0x07u, min = 0x10000;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3Fu);
	}
	return cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) ? 0 : len;
}

/* Copies n bytes of what a remote or a command wrote into out (room for
 * 3 * n + 1 bytes) as valid UTF-8: every byte that is not part of a
 * well-formed sequence, and every NUL, becomes U+FFFD.  Reasons and evidence
 * are JSON strings, and jansson refuses a string that is not UTF-8 -- a
 * Latin-1 error message must not make the deploy's evidence vanish.
 * `one_line` turns line breaks into spaces.  Returns the length written. */
static size_t utf8_clean(const char *s, size_t n, bool one_line, char *out)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t o = 0;
	for (size_t i = 0; i < n;) {
		size_t k = utf8_seq(u + i, n - i);
		if (k == 0) {
			memcpy(out + o, "\xEF\xBF\xBD", 3);
			o += 3;
			i++;
			continue;
		}
		if (one_line && (u[i] == '\n' || u[i] == '\r')) {
			out[o++] = ' ';
		} else {
			memcpy(out + o, u + i, k);
			o += k;
		}
		i += k;
	}
	out[o] = '\0';
	return o;
}

/* Up to EX_EXCERPT bytes of `body` on one line, cut on a character
 * boundary, in buf (EX_EXCERPT_BUF bytes). */
static void excerpt(const char *body, size_t len, char *buf, size_t size)
{
	size_t n = len < EX_EXCERPT ? len : EX_EXCERPT;
	while (n > 0 && n < len && ((unsigned char)body[n] & 0xC0) == 0x80)
		n--;
	if (size < EX_EXCERPT_BUF) {
		buf[0] = '\0';
		return;
	}
	size_t o = utf8_clean(body, n, true, buf);
	if (len > n) {
		memcpy(buf + o, "...", 4);
		return;
	}
	while (o > 0 && buf[o - 1] == ' ')   /* the final newline of a command's output */
		buf[--o] = '\0';
}

static json_t *record_request(ws_deploy_job *j, const char *method, const char *url,
			      const ws_outbound_res *r)
{
	json_t *o = json_object();
	json_object_set_new(o, "method", json_string(method));
	json_object_set_new(o, "url", json_string(url));
	if (r->reason == WS_OUT_OK)
		json_object_set_new(o, "status", json_integer(r->status));
	json_object_set_new(o, "latency_ms", json_real((double)r->latency_us / 1000.0));
	if (r->error)
		json_object_set_new(o, "error", json_string(r->error));
	if (json_array_size(j->requests) >= EX_MAX_REQUESTS) {
		json_array_remove(j->requests, 1);   /* keep the submit, drop the oldest poll */
		j->requests_dropped++;
	}
	json_array_append_new(j->requests, o);
	return o;
}

static void http_done(void *arg, const ws_outbound_res *r);


static void job_http(ws_deploy_job *j, const char *method, const char *url, const char *ctype,
		     const char *body)
{
	char key_h[600], ctype_h[128];
	const char *headers[5];
	size_t n = 0;
	snprintf(key_h, sizeof(key_h), "Idempotency-Key: %s", j->key);
	headers[n++] = key_h;
	if (ctype) {
		snprintf(ctype_h, sizeof(ctype_h), "Content-Type: %s", ctype);
		headers[n++] = ctype_h;
	}
	headers[n++] = "Accept: application/json";
	if (j->auth)
		headers[n++] = j->auth;
	headers[n] = NULL;
	/* A call has its own bound, or what remains of the job's time. */
	uint64_t due = uv_timer_get_due_in(&j->deadline);
	j->call_cut = due < WS_EXECUTOR_CALL_TIMEOUT_MS;
	ws_outbound_req req = {
		.method = method, .url = url, .headers = headers, .body = body,
		.body_len = body ? strlen(body) : 0,
		.timeout_ms = !j->call_cut ? WS_EXECUTOR_CALL_TIMEOUT_MS : due ? due : 1,
	};
	int rc = ws_outbound_request(j->out, &req, http_done, j, &j->call);
	if (rc != 0) {
		j->call = NULL;
		job_finish(j, false, "%s %s: cannot start the call (%s)", method, url, ws_strerror(rc));
	}
}

static void poll_timer_cb(uv_timer_t *t);

static void poll_later(ws_deploy_job *j)
{
	j->stage = ST_POLL;
	uv_timer_start(&j->poll, poll_timer_cb, j->poll_ms, 0);
}

static void poll_timer_cb(uv_timer_t *t)
{
	ws_deploy_job *j = t->data;
	job_http(j, "GET", j->poll_url, NULL, NULL);
}

/* The answer as a JSON object, or NULL after failing the job with what was
 * wrong. */
static json_t *parse_object(ws_deploy_job *j, const char *what, const char *method, const char *url,
			    const ws_outbound_res *r)
{
	json_error_t err;
	json_t *doc = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &err);
	if (!doc) {
		char ex[EX_EXCERPT_BUF];
		excerpt(r->body, r->body_len, ex, sizeof(ex));
		job_finish(j, false, "%s %s %s: the answer is not JSON (%s at line %d): \"%s\"", what,
			   method, url, err.text, err.line, ex);
		return NULL;
	}
	if (!json_is_object(doc)) {
		job_finish(j, false, "%s %s %s: expected a JSON object, got %s", what, method, url,
			   json_is_array(doc) ? "an array" : json_is_string(doc) ? "a string" : "a scalar");
		json_decref(doc);
		return NULL;
	}
	return doc;
}

/* Transport failure or non-2xx: fails the job and returns false. */
static bool answer_ok(ws_deploy_job *j, const char *what, const char *method, const char *url,
		      const ws_outbound_res *r)
{
	if (r->reason != WS_OUT_OK) {
		job_finish(j, false, "%s %s", what, r->error);
		return false;
	}
	if (r->status < 200 || r->status > 299) {
		char ex[EX_EXCERPT_BUF];
		excerpt(r->body, r->body_len, ex, sizeof(ex));
		job_finish(j, false, "%s %s %s answered HTTP %ld: %s", what, method, url, r->status, ex);
		return false;
	}
	return true;
}

static void webhook_answer(ws_deploy_job *j, const ws_outbound_res *r, json_t *rec)
{
	if (j->stage == ST_SUBMIT) {
		if (!answer_ok(j, "webhook", "POST", j->submit_url, r))
			return;
		if (!j->poll_url) {
			job_finish(j, true, "webhook POST %s accepted the deploy (HTTP %ld)", j->submit_url,
				   r->status);
			return;
		}
		poll_later(j);
		return;
	}
	if (!answer_ok(j, "status", "GET", j->poll_url, r))
		return;
	json_t *doc = parse_object(j, "status", "GET", j->poll_url, r);
	if (!doc)
		return;
	const json_t *st = json_object_get(doc, "state");
	if (!json_is_string(st)) {
		job_finish(j, false, "status GET %s: expected a string \"state\", %s", j->poll_url,
			   st ? "got another type" : "it is missing");
	} else {
		const char *state = json_string_value(st);
		json_object_set_new(rec, "state", json_string(state));
		snprintf(j->last_state, sizeof(j->last_state), "%s", state);
		const char *msg = json_string_value(json_object_get(doc, "message"));
		if (!msg)
			msg = json_string_value(json_object_get(doc, "reason"));
		if (strcmp(state, "done") == 0)
			job_finish(j, true, "deployed: status %s says done", j->poll_url);
		else if (strcmp(state, "failed") == 0)
			job_finish(j, false, "deploy failed: status %s says failed%s%s", j->poll_url,
				   msg ? ": " : "", msg ? msg : "");
		else
			poll_later(j);
	}
	json_decref(doc);
}

/* An integer member: *out = its value (0 when absent and optional).
 * Returns false, after failing the job, on a wrong type or a missing
 * required member. */
static bool k8s_int(ws_deploy_job *j, const json_t *obj, const char *path, const char *key,
		    bool required, json_int_t *out)
{
	const json_t *v = json_object_get(obj, key);
	*out = 0;
	if (!v && !required)
		return true;
	if (!json_is_integer(v)) {
		job_finish(j, false, "kubernetes GET %s: %s.%s %s", j->poll_url, path, key,
			   v ? "is not an integer" : "is missing");
		return false;
	}
	*out = json_integer_value(v);
	return true;
}

static void k8s_answer(ws_deploy_job *j, const ws_outbound_res *r, json_t *rec)
{
	const char *method = j->stage == ST_SUBMIT ? "PATCH" : "GET";
	if (!answer_ok(j, "kubernetes", method, j->poll_url, r))
		return;
	json_t *doc = parse_object(j, "kubernetes", method, j->poll_url, r);
	if (!doc)
		return;
	const json_t *meta = json_object_get(doc, "metadata");
	const json_t *spec = json_object_get(doc, "spec");
	const json_t *status = json_object_get(doc, "status");
	json_int_t gen, want, observed, replicas, updated, available;
	if (!json_is_object(meta) || !json_is_object(spec) || (status && !json_is_object(status))) {
		job_finish(j, false, "kubernetes %s %s: expected a Deployment with objects "
			   "\"metadata\", \"spec\" and \"status\"", method, j->poll_url);
		goto out;
	}
	if (!k8s_int(j, meta, "metadata", "generation", true, &gen))
		goto out;
	if (j->stage == ST_SUBMIT) {
		j->generation = gen;
		poll_later(j);
		goto out;
	}
	if (!k8s_int(j, spec, "spec", "replicas", true, &want) ||
	    !k8s_int(j, status, "status", "observedGeneration", false, &observed) ||
	    !k8s_int(j, status, "status", "replicas", false, &replicas) ||
	    !k8s_int(j, status, "status", "updatedReplicas", false, &updated) ||
	    !k8s_int(j, status, "status", "availableReplicas", false, &available))
		goto out;
	snprintf(j->last_state, sizeof(j->last_state),
		 "generation %lld observed %lld, updated %lld/%lld, available %lld/%lld, total %lld",
		 (long long)(gen > j->generation ? gen : j->generation), (long long)observed,
		 (long long)updated, (long long)want, (long long)available, (long long)want,
		 (long long)replicas);
	json_object_set_new(rec, "state", json_string(j->last_state));
	const json_t *conds = json_object_get(status, "conditions");
	size_t i;
	const json_t *c;
	json_array_foreach(conds, i, c) {
		const char *type = json_string_value(json_object_get(c, "type"));
		const char *reason = json_string_value(json_object_get(c, "reason"));
		if (type && reason && strcmp(type, "Progressing") == 0 &&
		    strcmp(reason, "ProgressDeadlineExceeded") == 0) {
			const char *msg = json_string_value(json_object_get(c, "message"));
			job_finish(j, false, "kubernetes deployment %s: progress deadline exceeded%s%s",
				   j->poll_url, msg ? ": " : "", msg ? msg : "");
			goto out;
		}
	}
	if (observed >= gen && observed >= j->generation && updated == want && available == want &&
	    replicas == want)
		job_finish(j, true, "deployed: %s rolled out (%s)", j->poll_url, j->last_state);
	else
		poll_later(j);
out:
	json_decref(doc);
}

static void gitops_sync_answer(ws_deploy_job *j, const ws_outbound_res *r, json_t *rec);

static void job_deadline(ws_deploy_job *j);

static void http_done(void *arg, const ws_outbound_res *r)
{
	ws_deploy_job *j = arg;
	j->call = NULL;
	if (j->finished) {
		job_maybe_done(j);
		return;
	}
	const char *method = j->stage == ST_POLL ? "GET" : j->kind == EX_WEBHOOK ? "POST" : "PATCH";
	const char *url = j->stage == ST_POLL || j->kind == EX_KUBERNETES ? j->poll_url : j->submit_url;
	json_t *rec = record_request(j, method, url, r);
	if (r->reason == WS_OUT_TIMEOUT && j->call_cut) {
		/* The call had what remained of the job's time and its own
		 * time-out came first: that is the job's deadline, reported as
		 * such (with the last state), not as a failure of this call. */
		job_deadline(j);
		return;
	}
	if (j->kind == EX_WEBHOOK)
		webhook_answer(j, r, rec);
	else if (j->kind == EX_GITOPS)
		gitops_sync_answer(j, r, rec);
	else
		k8s_answer(j, r, rec);
}

/* "Authorization: Bearer $token_env", or false after failing the job when
 * the variable is named but not set: no call without the credentials the
 * cluster asked for. */
static bool job_auth(ws_deploy_job *j)
{
	const char *var = setting(j->settings, "token_env");
	if (!var)
		return true;
	const char *tok = getenv(var);
	if (!tok || !*tok) {
		job_finish(j, false, "cluster %s: the environment variable %s (token_env) is not set; "
			   "no call was made", j->cluster, var);
		return false;
	}
	if (asprintf(&j->auth, "Authorization: Bearer %s", tok) < 0) {
		j->auth = NULL;
		job_finish(j, false, "out of memory");
		return false;
	}
	return true;
}

static void webhook_start(ws_deploy_job *j)
{
	if (!job_auth(j))
		return;
	char err[256];
	j->submit_url = strdup(setting(j->settings, "url"));
	const char *su = setting(j->settings, "status_url");
	if (su) {
		const char *values[] = { j->slug, j->version, j->key, NULL };
		j->poll_url = ws_executor_expand(su, tmpl_names_http, values, true, err, sizeof(err));
		if (!j->poll_url) {
			job_finish(j, false, "cluster %s: status_url: %s", j->cluster, err);
			return;
		}
	}
	json_t *body = json_pack("{s:s, s:s, s:s, s:s, s:s?, s:s, s:s, s:b}",
				 "rollout", j->rollout, "tenant", j->slug, "cluster", j->cluster,
				 "version", j->version, "previous_version", j->prev,
				 "artifact", j->artifact, "idempotency_key", j->key,
				 "rollback", j->rollback);
	char *text = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(body);
	json_object_set_new(j->evidence, "url", json_string(j->submit_url));
	j->stage = ST_SUBMIT;
	job_http(j, "POST", j->submit_url, "application/json", text);
	free(text);
}

static void k8s_start(ws_deploy_job *j)
{
	if (!job_auth(j))
		return;
	const char *values[] = { j->slug, j->version, NULL };
	char err[256];
	char *ns = NULL, *dep = NULL, *container = NULL, *image = NULL;
	ns = ws_executor_expand(setting(j->settings, "namespace"), tmpl_names_k8s, values, true, err,
				sizeof(err));
	if (ns)
		dep = ws_executor_expand(setting(j->settings, "deployment"), tmpl_names_k8s, values, true,
					 err, sizeof(err));
	if (dep)
		container = ws_executor_expand(setting(j->settings, "container"), tmpl_names_k8s, values,
					       false, err, sizeof(err));
	if (container)
		image = ws_executor_expand(setting(j->settings, "image"), tmpl_names_k8s, values, false,
					   err, sizeof(err));
	if (!image) {
		job_finish(j, false, "cluster %s: kubernetes settings: %s", j->cluster, err);
		goto out;
	}
	const char *api = setting(j->settings, "api_url");
	size_t alen = strlen(api);
	while (alen > 0 && api[alen - 1] == '/')
		alen--;
	if (asprintf(&j->poll_url, "%.*s/apis/apps/v1/namespaces/%s/deployments/%s", (int)alen, api,
		     ns, dep) < 0) {
		j->poll_url = NULL;
		job_finish(j, false, "out of memory");
		goto out;
	}
	json_t *patch = json_pack("{s:{s:{s:{s:[{s:s, s:s}]}}}}", "spec", "template", "spec",
				  "containers", "name", container, "image", image);
	char *text = json_dumps(patch, JSON_COMPACT);
	json_decref(patch);
	json_object_set_new(j->evidence, "url", json_string(j->poll_url));
	json_object_set_new(j->evidence, "image", json_string(image));
	j->stage = ST_SUBMIT;
	job_http(j, "PATCH", j->poll_url, "application/strategic-merge-patch+json", text);
	free(text);
out:
	free(ns);
	free(dep);
	free(container);
	free(image);
}

/* ---- command ------------------------------------------------------------ */

static void output_add(ws_deploy_job *j, const char *buf, size_t n)
{
	size_t room = WS_EXECUTOR_MAX_OUTPUT - j->output_len;
	if (n > room) {
		j->truncated = true;
		n = room;
	}
	if (n == 0)
		return;
	char *o = realloc(j->output, j->output_len + n + 1);
	if (!o) {
		j->truncated = true;
		return;
	}
	j->output = o;
	memcpy(j->output + j->output_len, buf, n);
	j->output_len += n;
	j->output[j->output_len] = '\0';
}

/* stderr of a git child: only its end matters for a reason, and it is
 * kept whole up to the cap for the evidence. */
static void errout_add(ws_deploy_job *j, const char *buf, size_t n)
{
	size_t room = WS_EXECUTOR_MAX_OUTPUT - j->errout_len;
	if (n > room)
		n = room;
	if (n == 0)
		return;
	char *o = realloc(j->errout, j->errout_len + n + 1);
	if (!o)
		return;
	j->errout = o;
	memcpy(j->errout + j->errout_len, buf, n);
	j->errout_len += n;
	j->errout[j->errout_len] = '\0';
}

static void command_decide(ws_deploy_job *j);
static void gitops_child_ended(ws_deploy_job *j);

/* The child has exited and its output is all read. */
static void child_ended(ws_deploy_job *j)
{
	if (j->kind == EX_GITOPS)
		gitops_child_ended(j);
	else
		command_decide(j);
}

static void pipe_closed_cb(uv_handle_t *h)
{
	ws_deploy_job *j = h->data;
	j->pipes_open--;
	if (j->exited && j->pipes_open == 0)
		child_ended(j);   /* all output read: now the result */
	job_maybe_done(j);
	job_handle_closed(h);
}

static void pipe_close(ws_deploy_job *j, uv_pipe_t *p)
{
	(void)j;
	if (!uv_is_closing((uv_handle_t *)p))
		uv_close((uv_handle_t *)p, pipe_closed_cb);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested;
	static char slab[16384];   /* the loop is single-threaded; read_cb copies out */
	*buf = uv_buf_init(slab, sizeof(slab));
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	ws_deploy_job *j = s->data;
	if (n > 0 && j->kind == EX_GITOPS && s == (uv_stream_t *)&j->pipes[1])
		errout_add(j, buf->base, (size_t)n);
	else if (n > 0)
		output_add(j, buf->base, (size_t)n);
	else if (n < 0)
		pipe_close(j, (uv_pipe_t *)s);
}

static void command_decide(ws_deploy_job *j)
{
	json_object_set_new(j->evidence, "exit_status", json_integer(j->exit_status));
	if (j->term_signal)
		json_object_set_new(j->evidence, "signal", json_integer(j->term_signal));
	char *clean = malloc(3 * j->output_len + 1);
	size_t clean_len = clean ? utf8_clean(j->output ? j->output : "", j->output_len, false, clean) : 0;
	json_object_set_new(j->evidence, "output", json_stringn(clean ? clean : "", clean_len));
	free(clean);
	json_object_set_new(j->evidence, "output_truncated", json_boolean(j->truncated));
	if (j->finished)
		return;   /* timed out or cancelled: already decided */
	const char *argv0 = json_string_value(json_array_get(json_object_get(j->settings, "argv"), 0));
	char tail[EX_EXCERPT_BUF] = "";
	if (j->output_len) {
		size_t from = j->output_len > EX_EXCERPT ? j->output_len - EX_EXCERPT : 0;
		for (int k = 0; k < 3 && from > 0 && ((unsigned char)j->output[from] & 0xC0) == 0x80; k++)
			from++;   /* start on a character, not inside one */
		excerpt(j->output + from, j->output_len - from, tail, sizeof(tail));
	}
	if (j->term_signal)
		job_finish(j, false, "command %s was killed by signal %d%s%s", argv0, j->term_signal,
			   *tail ? ": " : "", tail);
	else if (j->exit_status != 0)
		job_finish(j, false, "command %s exited with status %lld%s%s", argv0,
			   (long long)j->exit_status, *tail ? ": " : "", tail);
	else
		job_finish(j, true, "command %s exited with status 0", argv0);
}

static void grace_cb(uv_timer_t *t)
{
	/* The command is gone but something it started still holds the
	 * output open: stop reading rather than wait for it. */
	ws_deploy_job *j = t->data;
	for (int i = 0; i < 2; i++)
		pipe_close(j, &j->pipes[i]);
}


static void exit_cb(uv_process_t *p, int64_t status, int sig)
{
	ws_deploy_job *j = p->data;
	j->exit_status = status;
	j->term_signal = sig;
	j->proc_alive = false;
	j->exited = true;
	uv_close((uv_handle_t *)p, job_handle_closed);
	/* Decided once the output is read (pipe_closed_cb), or now if it is. */
	if (j->pipes_open > 0)
		uv_timer_start(&j->poll, grace_cb, EX_PIPE_GRACE_MS, 0);
	else
		child_ended(j);
	job_maybe_done(j);
}

static void command_start(ws_deploy_job *j)
{
	const json_t *argv_t = json_object_get(j->settings, "argv");
	size_t n = json_array_size(argv_t);
	char **argv = calloc(n + 1, sizeof(*argv));
	size_t n_env = 0;
	while (environ[n_env])
		n_env++;
	char **env = calloc(n_env + 2, sizeof(*env));
	char *key_env = NULL;
	json_t *argv_ev = json_array();
	if (!argv || !env || asprintf(&key_env, "WAVESCHED_IDEMPOTENCY_KEY=%s", j->key) < 0) {
		key_env = NULL;
		job_finish(j, false, "out of memory");
		goto out;
	}
	const char *values[] = { j->slug, j->version, j->prev ? j->prev : "", j->key, NULL };
	char err[256];
	for (size_t i = 0; i < n; i++) {
		argv[i] = ws_executor_expand(json_string_value(json_array_get(argv_t, i)), tmpl_names_cmd,
					     values, false, err, sizeof(err));
		if (!argv[i]) {
			job_finish(j, false, "cluster %s: argv[%zu]: %s", j->cluster, i, err);
			goto out;
		}
		json_array_append_new(argv_ev, json_string(argv[i]));
	}
	/* The command gets the service's environment (its PATH, HOME, the
	 * credentials a deploy tool needs) but not the service's own settings:
	 * WAVESCHED_DATABASE_URL may carry a password, and no deploy script
	 * needs the control plane's database or Redis. */
	size_t m = 0;
	for (size_t i = 0; i < n_env; i++)
		if (strncmp(environ[i], "WAVESCHED_", 10) != 0)
			env[m++] = environ[i];
	env[m++] = key_env;
	env[m] = NULL;
	json_object_set(j->evidence, "argv", argv_ev);
	for (int i = 0; i < 2; i++) {
		uv_pipe_init(j->loop, &j->pipes[i], 0);
		j->pipes[i].data = j;
		j->pipes_open++;
		j->handles_open++;
	}
	uv_stdio_container_t stdio[3] = {
		{ .flags = UV_IGNORE },
		{ .flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&j->pipes[0] },
		{ .flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&j->pipes[1] },
	};
	/* DETACHED = setsid(): the command leads a process group of its own, so
	 * the time-out can kill everything it started. */
	uv_process_options_t o = {
		.exit_cb = exit_cb, .file = argv[0], .args = argv, .env = env,
		.stdio_count = 3, .stdio = stdio, .flags = UV_PROCESS_DETACHED,
	};
	j->proc.data = j;
	int rc = uv_spawn(j->loop, &j->proc, &o);
	if (rc != 0) {
		/* libuv wants the handle closed even when the spawn failed. */
		j->handles_open++;
		uv_close((uv_handle_t *)&j->proc, job_handle_closed);
		for (int i = 0; i < 2; i++)
			pipe_close(j, &j->pipes[i]);
		job_finish(j, false, "command %s: cannot start: %s", argv[0], uv_strerror(rc));
		goto out;
	}
	j->handles_open++;
	j->proc_alive = true;
	json_object_set_new(j->evidence, "pid", json_integer(j->proc.pid));
	for (int i = 0; i < 2; i++)
		uv_read_start((uv_stream_t *)&j->pipes[i], alloc_cb, read_cb);
out:
	json_decref(argv_ev);
	for (size_t i = 0; argv && i < n; i++)
		free(argv[i]);
	free(argv);
	free(env);
	free(key_env);
}

/* ---- gitops ------------------------------------------------------------- */

static const char *const tmpl_names_path[] = { "slug", "cluster", "version", NULL };
static const char *const tmpl_names_argo[] = { "slug", "cluster", "version", "revision", NULL };

static char *state_dir;

WS_API void ws_executor_set_state_dir(const char *dir)
{
	free(state_dir);
	state_dir = dir && *dir ? strdup(dir) : NULL;
}

static const char *state_dir_get(void)
{
	if (state_dir)
		return state_dir;
	const char *env = getenv("WAVESCHED_STATE_DIR");
	return env && *env ? env : WS_EXECUTOR_DEFAULT_STATE_DIR;
}

/* One clone, and the jobs waiting for it.  Lives while someone holds or
 * waits for it; git's own locks guard files, not the sequence
 * fetch..push, and two interleaved sequences would push one another's
 * parent away. */
struct repo_lock {
	char *dir;
	ws_deploy_job *holder;
	ws_deploy_job *head, *tail;   /* waiting, in arrival order */
	repo_lock *next;
};

static repo_lock *repo_locks;

static void gitops_begin(ws_deploy_job *j);

static void lock_granted_cb(uv_timer_t *t)
{
	gitops_begin(t->data);
}

/* Hands the clone to the first waiter still alive.  A waiter that has
 * finished meanwhile (its deadline, a cancel) is dropped: its poll timer is
 * closing and could not start it. */
static void lock_pass(repo_lock *l)
{
	l->holder = NULL;
	while (l->head) {
		ws_deploy_job *w = l->head;
		l->head = w->lock_next;
		if (!l->head)
			l->tail = NULL;
		w->lock_next = NULL;
		if (w->finished) {
			w->lock = NULL;
			continue;
		}
		l->holder = w;
		w->lock_held = true;
		uv_timer_start(&w->poll, lock_granted_cb, 0, 0);
		return;
	}
	for (repo_lock **p = &repo_locks; *p; p = &(*p)->next)
		if (*p == l) {
			*p = l->next;
			break;
		}
	free(l->dir);
	free(l);
}

/* Takes the clone now (true) or queues for it (false: gitops_begin runs
 * when it is handed over). */
static bool lock_enter(ws_deploy_job *j)
{
	repo_lock *l;
	for (l = repo_locks; l; l = l->next)
		if (strcmp(l->dir, j->dir) == 0)
			break;
	if (!l) {
		l = calloc(1, sizeof(*l));
		if (!l || !(l->dir = strdup(j->dir))) {
			free(l);
			return false;
		}
		l->next = repo_locks;
		repo_locks = l;
	}
	j->lock = l;
	if (!l->holder) {
		l->holder = j;
		j->lock_held = true;
		return true;
	}
	if (l->tail)
		l->tail->lock_next = j;
	else
		l->head = j;
	l->tail = j;
	return false;
}

static void lock_leave(ws_deploy_job *j)
{
	repo_lock *l = j->lock;
	if (!l)
		return;
	j->lock = NULL;
	if (j->lock_held) {
		j->lock_held = false;
		lock_pass(l);
		return;
	}
	ws_deploy_job **p = &l->head;
	while (*p && *p != j)
		p = &(*p)->lock_next;
	if (*p) {
		*p = j->lock_next;
		if (l->tail == j)
			for (l->tail = l->head; l->tail && l->tail->lock_next; l->tail = l->tail->lock_next)
				;
	}
	j->lock_next = NULL;
}

static const char *git_step_name(git_step s)
{
	switch (s) {
	case G_INIT: return "clone";
	case G_FETCH: case G_REVPARSE: case G_FIND: return "fetch";
	case G_HASH: case G_READTREE: case G_UPDINDEX: case G_WRITETREE: case G_COMMIT: return "commit";
	case G_PUSH: return "push";
	case G_ANCESTOR: case G_SYNCFETCH: case G_NONE: break;
	}
	return "sync";
}

/* Variables that would point git at another repository, index or
 * identity than the ones this job gives it, or change its language (the
 * push's refusal is recognised by its English words). */
static bool git_env_dropped(const char *e)
{
	static const char *const drop[] = {
		"WAVESCHED_", "GIT_DIR=", "GIT_WORK_TREE=", "GIT_INDEX_FILE=", "GIT_OBJECT_DIRECTORY=",
		"GIT_ALTERNATE_OBJECT_DIRECTORIES=", "GIT_COMMON_DIR=", "GIT_NAMESPACE=", "GIT_AUTHOR_",
		"GIT_COMMITTER_", "GIT_CONFIG_PARAMETERS=", "GIT_CONFIG_COUNT=", "GIT_TERMINAL_PROMPT=",
		"GIT_PAGER=", "LC_ALL=", "LANGUAGE=", NULL,
	};
	for (size_t i = 0; drop[i]; i++)
		if (strncmp(e, drop[i], strlen(drop[i])) == 0)
			return true;
	return false;
}

static void git_stdin_written(uv_write_t *w, int status)
{
	(void)status;   /* a child that stopped reading says so by its exit status */
	ws_deploy_job *j = w->data;
	uv_close((uv_handle_t *)&j->in_pipe, job_handle_closed);
	j->in_open = false;
	job_maybe_done(j);
}

/* Runs `git <fixed options> [--git-dir=DIR] args...` for `step`, with
 * `input` (copied; may be NULL) on its stdin.  gitops_child_ended() goes on
 * once it has exited and its output is read. */
static void git_run(ws_deploy_job *j, git_step step, const char *input, const char *const *args)
{
	static const char *const fixed[] = {
		"git", "--no-pager", "-c", "user.name=wavesched", "-c", "user.email=wavesched@localhost",
		"-c", "core.hooksPath=/dev/null", "-c", "gc.auto=0", "-c", "maintenance.auto=false",
		"-c", "commit.gpgSign=false", NULL,
	};
	char *gitdir = NULL;
	char **argv = NULL, **env = NULL;
	size_t n_fixed = 0, n_args = 0, n_env = 0;
	while (fixed[n_fixed])
		n_fixed++;
	while (args[n_args])
		n_args++;
	while (environ[n_env])
		n_env++;
	j->gstep = step;
	j->exited = false;
	j->exit_status = 0;
	j->term_signal = 0;
	free(j->output);
	free(j->errout);
	j->output = j->errout = NULL;
	j->output_len = j->errout_len = 0;
	j->truncated = false;
	argv = calloc(n_fixed + n_args + 2, sizeof(*argv));
	env = calloc(n_env + 4, sizeof(*env));
	if (!argv || !env || (step != G_INIT && asprintf(&gitdir, "--git-dir=%s", j->dir) < 0)) {
		gitdir = NULL;
		job_finish(j, false, "gitops %s: out of memory", git_step_name(step));
		goto out;
	}
	size_t a = 0;
	for (size_t i = 0; i < n_fixed; i++)
		argv[a++] = (char *)fixed[i];
	if (gitdir)
		argv[a++] = gitdir;
	for (size_t i = 0; i < n_args; i++)
		argv[a++] = (char *)args[i];
	size_t m = 0;
	for (size_t i = 0; i < n_env; i++)
		if (!git_env_dropped(environ[i]))
			env[m++] = environ[i];
	env[m++] = "GIT_TERMINAL_PROMPT=0";
	env[m++] = "LC_ALL=C";
	env[m++] = j->index_env;
	env[m] = NULL;

	json_t *rec = json_object();
	json_t *rargs = json_array();
	for (size_t i = 0; i < n_args; i++)
		json_array_append_new(rargs, json_string(args[i]));
	json_object_set_new(rec, "step", json_string(git_step_name(step)));
	json_object_set_new(rec, "args", rargs);
	if (json_array_size(j->git_log) >= EX_GIT_LOG_MAX)
		json_array_remove(j->git_log, 1);
	json_array_append_new(j->git_log, rec);

	for (int i = 0; i < 2; i++) {
		uv_pipe_init(j->loop, &j->pipes[i], 0);
		j->pipes[i].data = j;
		j->pipes_open++;
		j->handles_open++;
	}
	uv_stdio_container_t stdio[3] = {
		{ .flags = UV_IGNORE },
		{ .flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&j->pipes[0] },
		{ .flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&j->pipes[1] },
	};
	if (input) {
		uv_pipe_init(j->loop, &j->in_pipe, 0);
		j->in_pipe.data = j;
		j->in_open = true;
		j->handles_open++;
		stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
		stdio[0].data.stream = (uv_stream_t *)&j->in_pipe;
	}
	/* DETACHED: a group of its own, so the deadline also kills the ssh or
	 * remote helper git started. */
	uv_process_options_t o = {
		.exit_cb = exit_cb, .file = "git", .args = argv, .env = env,
		.stdio_count = 3, .stdio = stdio, .flags = UV_PROCESS_DETACHED,
	};
	j->proc.data = j;
	int rc = uv_spawn(j->loop, &j->proc, &o);
	if (rc != 0) {
		j->handles_open++;
		uv_close((uv_handle_t *)&j->proc, job_handle_closed);
		for (int i = 0; i < 2; i++)
			pipe_close(j, &j->pipes[i]);
		if (input) {
			uv_close((uv_handle_t *)&j->in_pipe, job_handle_closed);
			j->in_open = false;
		}
		job_finish(j, false, "gitops %s: cannot start git: %s", git_step_name(step),
			   uv_strerror(rc));
		goto out;
	}
	j->handles_open++;
	j->proc_alive = true;
	for (int i = 0; i < 2; i++)
		uv_read_start((uv_stream_t *)&j->pipes[i], alloc_cb, read_cb);
	if (input) {
		free(j->in_buf);
		j->in_buf = strdup(input);
		uv_buf_t b = uv_buf_init(j->in_buf ? j->in_buf : "", j->in_buf ? (unsigned)strlen(j->in_buf) : 0);
		j->wreq.data = j;
		if (uv_write(&j->wreq, (uv_stream_t *)&j->in_pipe, &b, 1, git_stdin_written) != 0) {
			uv_close((uv_handle_t *)&j->in_pipe, job_handle_closed);
			j->in_open = false;
		}
	}
out:
	free(gitdir);
	free(argv);
	free(env);
}

/* The end of the git child's stderr (else its stdout) on one line: up to
 * EX_GIT_TAIL bytes, starting on a line when it is cut, since git's first
 * "fatal:" line often names the path and a cut path reads like another.
 * buf holds EX_GIT_TAIL_BUF bytes. */
static void git_tail(ws_deploy_job *j, char *buf)
{
	const char *s = j->errout_len ? j->errout : j->output ? j->output : "";
	size_t len = j->errout_len ? j->errout_len : j->output_len;
	while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == ' '))
		len--;
	size_t from = len > EX_GIT_TAIL ? len - EX_GIT_TAIL : 0;
	const char *nl = from ? memchr(s + from, '\n', len - from) : NULL;
	if (nl)
		from = (size_t)(nl - s) + 1;
	while (from > 0 && from < len && ((unsigned char)s[from] & 0xC0) == 0x80)
		from++;
	size_t o = utf8_clean(s + from, len - from, true, buf);
	while (o > 0 && buf[o - 1] == ' ')
		buf[--o] = '\0';
}

/* The first line of the child's stdout, copied; NULL when empty. */
static char *git_line(ws_deploy_job *j, size_t idx)
{
	const char *s = j->output ? j->output : "";
	for (size_t i = 0; i < idx && *s; i++) {
		s = strchr(s, '\n');
		if (!s)
			return NULL;
		s++;
	}
	size_t n = strcspn(s, "\n");
	return n ? strndup(s, n) : NULL;
}

static bool is_sha(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n != 40 && n != 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static void git_fail(ws_deploy_job *j, const char *what)
{
	char tail[EX_GIT_TAIL_BUF];
	git_tail(j, tail);
	if (j->term_signal)
		job_finish(j, false, "gitops %s: %s: git was killed by signal %d%s%s",
			   git_step_name(j->gstep), what, j->term_signal, *tail ? ": " : "", tail);
	else
		job_finish(j, false, "gitops %s: %s: git exited with status %lld%s%s",
			   git_step_name(j->gstep), what, (long long)j->exit_status, *tail ? ": " : "",
			   tail);
}

static void gitops_fetch(ws_deploy_job *j)
{
	char ref[600];
	snprintf(ref, sizeof(ref), "refs/heads/%s", j->branch);
	const char *args[] = { "fetch", "-q", "--no-tags", "--no-recurse-submodules", "--", j->repo,
			       ref, NULL };
	git_run(j, G_FETCH, NULL, args);
}

static void gitops_sync_start(ws_deploy_job *j, const char *how);

static void gitops_begin(ws_deploy_job *j)
{
	if (j->finished)
		return;
	const char *args[] = { "init", "-q", "--bare", j->dir, NULL };
	git_run(j, G_INIT, NULL, args);
}

static bool trailer_has_key(const char *values, const char *key)
{
	size_t kl = strlen(key);
	for (const char *v = values; *v;) {
		while (*v == ' ')
			v++;
		size_t n = strcspn(v, ",");
		size_t m = n;
		while (m > 0 && v[m - 1] == ' ')
			m--;
		if (m == kl && strncmp(v, key, kl) == 0)
			return true;
		v += n;
		if (*v == ',')
			v++;
	}
	return false;
}

/* The file the commit writes: YAML in its JSON form, so a library writes it
 * and every YAML parser reads it. */
static char *gitops_content(ws_deploy_job *j)
{
	json_t *doc = json_pack("{s:s, s:s, s:s, s:s?, s:s, s:s, s:s, s:s, s:b}", "tenant", j->slug,
				"cluster", j->cluster, "version", j->version, "previous_version", j->prev,
				"artifact", j->artifact, "rollout", j->rollout, "wave",
				j->wave ? j->wave : "-", "idempotency_key", j->key, "rollback", j->rollback);
	if (doc && !j->prev)
		json_object_set_new(doc, "previous_version", json_null());
	char *text = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
	json_decref(doc);
	char *out = NULL;
	if (text && asprintf(&out, "%s\n", text) < 0)
		out = NULL;
	free(text);
	return out;
}

/* Trailer values are one line each: a newline in a wave name would end
 * the trailer block and smuggle text into the message. */
static void one_line(char *s)
{
	for (; *s; s++)
		if (*s == '\n' || *s == '\r')
			*s = ' ';
}

static char *gitops_message(ws_deploy_job *j)
{
	char *wave = strdup(j->wave ? j->wave : "-");
	char *m = NULL;
	if (!wave)
		return NULL;
	one_line(wave);
	int rc = j->rollback
		? asprintf(&m, "wavesched: roll back %s to %s\n\nRollout %s, wave %s, cluster %s: %s "
			   "goes back from %s to %s.\n\nWavesched-Rollout: %s\nWavesched-Wave: %s\n"
			   "Idempotency-Key: %s\n", j->slug, j->version, j->rollout, wave, j->cluster,
			   j->slug, j->prev ? j->prev : "-", j->version, j->rollout, wave, j->key)
		: asprintf(&m, "wavesched: deploy %s %s\n\nRollout %s, wave %s, cluster %s: %s goes "
			   "from %s to %s (%s).\n\nWavesched-Rollout: %s\nWavesched-Wave: %s\n"
			   "Idempotency-Key: %s\n", j->slug, j->version, j->rollout, wave, j->cluster,
			   j->slug, j->prev ? j->prev : "-", j->version, j->artifact, j->rollout, wave,
			   j->key);
	free(wave);
	return rc < 0 ? NULL : m;
}

static void set_str(char **dst, char *v)
{
	free(*dst);
	*dst = v;
}

static void gitops_step_cb(uv_timer_t *t);

/* One git command has ended: into the evidence, and on to the next. */
static void gitops_child_ended(ws_deploy_job *j)
{
	json_t *rec = json_array_get(j->git_log, json_array_size(j->git_log) - 1);
	json_object_set_new(rec, "exit_status", json_integer(j->exit_status));
	if (j->term_signal)
		json_object_set_new(rec, "signal", json_integer(j->term_signal));
	if (j->errout_len) {
		char *clean = malloc(3 * j->errout_len + 1);
		if (clean) {
			size_t n = utf8_clean(j->errout, j->errout_len, false, clean);
			json_object_set_new(rec, "stderr", json_stringn(clean, n));
		}
		free(clean);
	}
	if (j->finished)
		return;   /* timed out or cancelled: already decided */
	/* The next command reuses the process handle, whose close is still
	 * pending in this loop iteration: go on from the next one.  This also
	 * replaces a pipe-grace timer that is no longer needed. */
	uv_timer_start(&j->poll, gitops_step_cb, 0, 0);
}

/* The git command that has just ended decides the next. */
static void gitops_step_cb(uv_timer_t *t)
{
	ws_deploy_job *j = t->data;
	bool ok = !j->term_signal && j->exit_status == 0;
	char err[256];
	switch (j->gstep) {
	case G_INIT:
		if (!ok)
			return git_fail(j, "cannot create the clone");
		return gitops_fetch(j);
	case G_FETCH: {
		if (!ok)
			return git_fail(j, j->repo);
		const char *args[] = { "rev-parse", "FETCH_HEAD^{commit}",
				       "FETCH_HEAD^{tree}", NULL };
		return git_run(j, G_REVPARSE, NULL, args);
	}
	case G_REVPARSE: {
		set_str(&j->base, git_line(j, 0));
		set_str(&j->base_tree, git_line(j, 1));
		if (!ok || !is_sha(j->base) || !is_sha(j->base_tree))
			return git_fail(j, "cannot read the fetched branch tip");
		char grep[600];
		snprintf(grep, sizeof(grep), "--grep=Idempotency-Key: %s", j->key);
		const char *args[] = { "log", "-F", grep,
				       "--format=%H %(trailers:key=Idempotency-Key,valueonly,separator=%x2C)",
				       j->base, "--", NULL };
		return git_run(j, G_FIND, NULL, args);
	}
	case G_FIND: {
		if (!ok)
			return git_fail(j, "cannot search the branch history");
		/* --grep matches a substring ("r/a/1" is in "r/a/10"): the
		 * trailer itself decides. */
		for (size_t i = 0;; i++) {
			char *line = git_line(j, i);
			if (!line)
				break;
			char *sp = strchr(line, ' ');
			if (sp) {
				*sp = '\0';
				if (is_sha(line) && trailer_has_key(sp + 1, j->key)) {
					set_str(&j->commit, strdup(line));
					free(line);
					json_object_set_new(j->evidence, "found_by_key", json_true());
					return gitops_sync_start(j, "already in the branch");
				}
			}
			free(line);
		}
		char *content = gitops_content(j);
		if (!content)
			return (void)job_finish(j, false, "gitops commit: out of memory");
		set_str(&j->content, content);
		const char *args[] = { "hash-object", "-w", "--stdin", NULL };
		return git_run(j, G_HASH, j->content, args);
	}
	case G_HASH: {
		set_str(&j->blob, git_line(j, 0));
		if (!ok || !is_sha(j->blob))
			return git_fail(j, "cannot store the file");
		const char *args[] = { "read-tree", j->base, NULL };
		return git_run(j, G_READTREE, NULL, args);
	}
	case G_READTREE: {
		if (!ok)
			return git_fail(j, "cannot read the branch tree");
		char info[700];
		snprintf(info, sizeof(info), "100644,%s,%s", j->blob, j->path);
		const char *args[] = { "update-index", "--add", "--cacheinfo", info, NULL };
		return git_run(j, G_UPDINDEX, NULL, args);
	}
	case G_UPDINDEX: {
		if (!ok)
			return git_fail(j, j->path);
		const char *args[] = { "write-tree", NULL };
		return git_run(j, G_WRITETREE, NULL, args);
	}
	case G_WRITETREE: {
		set_str(&j->tree, git_line(j, 0));
		if (!ok || !is_sha(j->tree))
			return git_fail(j, "cannot write the tree");
		if (strcmp(j->tree, j->base_tree) == 0) {
			/* The file already says exactly this: an empty commit
			 * would only add noise to the history. */
			set_str(&j->commit, strdup(j->base));
			return gitops_sync_start(j, "the file already held this content");
		}
		char *msg = gitops_message(j);
		if (!msg)
			return (void)job_finish(j, false, "gitops commit: out of memory");
		const char *args[] = { "commit-tree", j->tree, "-p", j->base, "-F", "-", NULL };
		git_run(j, G_COMMIT, msg, args);
		free(msg);
		return;
	}
	case G_COMMIT: {
		set_str(&j->commit, git_line(j, 0));
		if (!ok || !is_sha(j->commit))
			return git_fail(j, "cannot create the commit");
		char spec[700];
		snprintf(spec, sizeof(spec), "%s:refs/heads/%s", j->commit, j->branch);
		j->push_attempts++;
		json_object_set_new(j->evidence, "push_attempts", json_integer(j->push_attempts));
		const char *args[] = { "push", "-q", "--no-verify", "--", j->repo, spec, NULL };
		return git_run(j, G_PUSH, NULL, args);
	}
	case G_PUSH: {
		if (ok) {
			json_object_set_new(j->evidence, "committed", json_true());
			return gitops_sync_start(j, "pushed");
		}
		/* Someone else moved the branch (or was moving it: the remote's
		 * ref lock was taken): start again from its new tip, where the
		 * history search also sees a push of ours that landed although
		 * git reported a failure. */
		bool behind = j->errout && (strstr(j->errout, "non-fast-forward") ||
					    strstr(j->errout, "fetch first") ||
					    strstr(j->errout, "[rejected]") ||
					    strstr(j->errout, "(failed to update ref)") ||
					    strstr(j->errout, "cannot lock ref"));
		if (behind && j->push_attempts < WS_EXECUTOR_GITOPS_PUSH_ATTEMPTS) {
			ws_info("executor", "cluster=%s tenant=%s key=%s: push to %s refused as not "
				"fast-forward; fetching again (attempt %d)", j->cluster, j->slug, j->key,
				j->repo, j->push_attempts + 1);
			return gitops_fetch(j);
		}
		snprintf(err, sizeof(err), "%s %s%s", j->repo, j->branch,
			 behind ? " (still not fast-forward after every attempt)" : "");
		return git_fail(j, err);
	}
	case G_ANCESTOR:
		if (j->exit_status == 0 && !j->term_signal) {
			job_finish(j, true, "deployed: commit %s is in %s %s and the application "
				   "reports revision %s synced and healthy", j->commit, j->repo, j->branch,
				   j->revision);
			return;
		}
		if (j->exit_status != 1 && !j->term_signal &&
		    (!j->fetched_for || strcmp(j->fetched_for, j->revision) != 0)) {
			/* A commit made after ours by someone else: fetch its
			 * objects, once per revision.  No FETCH_HEAD and no ref is
			 * written, so the clone's owner (another job's git sequence)
			 * is not disturbed and no lock is needed. */
			set_str(&j->fetched_for, strdup(j->revision));
			char ref[600];
			snprintf(ref, sizeof(ref), "refs/heads/%s", j->branch);
			const char *args[] = { "fetch", "-q", "--no-tags", "--no-write-fetch-head",
					       "--no-recurse-submodules", "--", j->repo, ref, NULL };
			return git_run(j, G_SYNCFETCH, NULL, args);
		}
		snprintf(j->last_state, sizeof(j->last_state), "revision %.40s does not contain commit "
			 "%.12s yet%s", j->revision, j->commit,
			 j->exit_status == 1 ? "" : " (not in the branch as fetched)");
		return poll_later(j);
	case G_SYNCFETCH: {
		if (!ok) {
			char tail[EX_GIT_TAIL_BUF];
			git_tail(j, tail);
			snprintf(j->last_state, sizeof(j->last_state), "fetch for revision %.12s failed: %.80s",
				 j->revision, tail);
			return poll_later(j);
		}
		const char *args[] = { "merge-base", "--is-ancestor", j->commit, j->revision, NULL };
		return git_run(j, G_ANCESTOR, NULL, args);
	}
	case G_NONE:
		break;
	}
}

/* The commit is in the branch: the git part is over (the clone goes to the
 * next job) and what remains is to see it applied. */
static void gitops_sync_start(ws_deploy_job *j, const char *how)
{
	json_object_set_new(j->evidence, "commit", json_string(j->commit));
	json_object_set_new(j->evidence, "how", json_string(how));
	if (!json_object_get(j->evidence, "committed"))
		json_object_set_new(j->evidence, "committed", json_false());
	ws_info("executor", "cluster=%s tenant=%s key=%s: commit %s %s (%s %s); waiting for the sync",
		j->cluster, j->slug, j->key, j->commit, how, j->repo, j->branch);
	lock_leave(j);
	j->syncing = true;
	j->gstep = G_NONE;
	if (j->by_status) {
		const char *values[] = { j->slug, j->cluster, j->version, j->commit, NULL };
		char err[256];
		char *url = ws_executor_expand(setting(j->settings, "status_url"), tmpl_names_argo,
					       values, true, err, sizeof(err));
		if (!url)
			return (void)job_finish(j, false, "gitops sync: status_url: %s", err);
		set_str(&j->poll_url, url);
	} else {
		set_str(&j->poll_url, strdup(j->health_url));
	}
	if (!j->poll_url)
		return (void)job_finish(j, false, "gitops sync: out of memory");
	json_object_set_new(j->evidence, "sync_url", json_string(j->poll_url));
	j->stage = ST_POLL;
	job_http(j, "GET", j->poll_url, NULL, NULL);
}

static const char *argo_str(const json_t *doc, const char *a, const char *b, const char *c)
{
	return json_string_value(json_object_get(json_object_get(json_object_get(doc, a), b), c));
}

static void gitops_sync_answer(ws_deploy_job *j, const ws_outbound_res *r, json_t *rec)
{
	if (r->reason != WS_OUT_OK || r->status < 200 || r->status > 299) {
		/* A tenant restarting into its new version answers 502 or not
		 * at all for a while: that is "not yet", and the deadline
		 * bounds the wait. */
		char ex[EX_EXCERPT_BUF] = "";
		if (r->reason == WS_OUT_OK) {
			excerpt(r->body, r->body_len, ex, sizeof(ex));
			snprintf(j->last_state, sizeof(j->last_state), "HTTP %ld %.80s", r->status, ex);
			json_object_set_new(rec, "state", json_string(j->last_state));
		} else {
			/* No answer is not a state of the tenant: the last one seen
			 * stays what a time-out reports (the final GET is often
			 * the one the job's own deadline cut short). */
			const char *why = r->error ? r->error : "no answer";
			if (!*j->last_state)
				snprintf(j->last_state, sizeof(j->last_state), "%.120s", why);
			json_object_set_new(rec, "state", json_string(why));
		}
		return poll_later(j);
	}
	json_t *doc = parse_object(j, "gitops sync", "GET", j->poll_url, r);
	if (!doc)
		return;
	if (!j->by_status) {
		const json_t *v = json_object_get(doc, "version");
		if (!json_is_string(v)) {
			job_finish(j, false, "gitops sync: GET %s: expected a string \"version\" in the "
				   "health answer, %s", j->poll_url, v ? "got another type" : "it is missing");
		} else {
			snprintf(j->last_state, sizeof(j->last_state), "version %.100s",
				 json_string_value(v));
			json_object_set_new(rec, "state", json_string(j->last_state));
			if (strcmp(json_string_value(v), j->version) == 0)
				job_finish(j, true, "deployed: commit %s is in %s %s and %s reports version %s",
					   j->commit, j->repo, j->branch, j->poll_url, j->version);
			else
				poll_later(j);
		}
		json_decref(doc);
		return;
	}
	const json_t *status = json_object_get(doc, "status");
	const char *sync = argo_str(doc, "status", "sync", "status");
	const char *rev = argo_str(doc, "status", "sync", "revision");
	const char *health = argo_str(doc, "status", "health", "status");
	if (!json_is_object(status) || !sync || !health) {
		job_finish(j, false, "gitops sync: GET %s: expected an Argo CD Application with strings "
			   "status.sync.status and status.health.status", j->poll_url);
		json_decref(doc);
		return;
	}
	char state[sizeof(j->last_state)];
	snprintf(state, sizeof(state), "sync %.20s revision %.40s health %.20s", sync,
		 rev ? rev : "-", health);
	json_object_set_new(rec, "state", json_string(state));
	bool ours = rev && strcmp(rev, j->commit) == 0;
	bool synced = strcmp(sync, "Synced") == 0;
	bool healthy = synced && strcmp(health, "Healthy") == 0;
	bool check = healthy && !ours && is_sha(rev);
	/* A revision still to be checked is not yet a state: what a time-out
	 * reports is the last one concluded ("revision ... does not contain
	 * commit ..."), not this answer, unless nothing was concluded yet. */
	if (!check || !*j->last_state)
		memcpy(j->last_state, state, sizeof(state));
	if (synced && ours && strcmp(health, "Degraded") == 0) {
		job_finish(j, false, "gitops sync: %s reports commit %s synced but health Degraded",
			   j->poll_url, j->commit);
	} else if (healthy && ours) {
		job_finish(j, true, "deployed: commit %s is in %s %s and %s reports it synced and "
			   "healthy", j->commit, j->repo, j->branch, j->poll_url);
	} else if (check) {
		/* A later commit (another tenant's) is applied: ours is in it
		 * if it is an ancestor.  Reading objects takes no lock. */
		set_str(&j->revision, strdup(rev));
		const char *args[] = { "merge-base", "--is-ancestor", j->commit, j->revision, NULL };
		git_run(j, G_ANCESTOR, NULL, args);
	} else {
		poll_later(j);
	}
	json_decref(doc);
}

static void gitops_timed_out(ws_deploy_job *j)
{
	char tail[EX_GIT_TAIL_BUF] = "";
	if (j->proc_alive)
		git_tail(j, tail);
	if (j->syncing)
		job_finish(j, false, "gitops sync: timed out after %llu ms waiting for commit %s to "
			   "be applied (%s)%s%s", (unsigned long long)j->timeout_ms, j->commit,
			   j->poll_url, *j->last_state ? "; last state: " : "", j->last_state);
	else if (!j->lock_held)
		job_finish(j, false, "gitops clone: timed out after %llu ms waiting for another "
			   "deploy to %s %s", (unsigned long long)j->timeout_ms, j->repo, j->branch);
	else
		job_finish(j, false, "gitops %s: timed out after %llu ms; git was killed%s%s",
			   j->gstep == G_NONE ? "clone" : git_step_name(j->gstep),
			   (unsigned long long)j->timeout_ms, *tail ? ": " : "", tail);
}

/* Checks what the git part needs before anything is written: the sync
 * must be observable and its credentials present, or the commit would
 * deploy something nobody can confirm. */
static void gitops_start(ws_deploy_job *j)
{
	const char *repo = setting(j->settings, "repo");
	const char *branch = setting(j->settings, "branch");
	const char *sync = setting(j->settings, "sync");
	j->by_status = sync && strcmp(sync, "status_url") == 0;
	char err[256];
	const char *values[] = { j->slug, j->cluster, j->version, NULL };
	j->path = ws_executor_expand(setting(j->settings, "path"), tmpl_names_path, values, false, err,
				     sizeof(err));
	if (!j->path)
		return (void)job_finish(j, false, "cluster %s: gitops path: %s", j->cluster, err);
	/* The version comes from a release name: it must not lead the file
	 * out of the repository either. */
	bool bad = j->path[0] == '/' || !*j->path;
	for (const char *c = j->path; !bad && *c;) {
		size_t n = strcspn(c, "/");
		bad = n == 0 || (n == 2 && strncmp(c, "..", 2) == 0) ||
		      (n == 4 && strncmp(c, ".git", 4) == 0) || (n == 1 && *c == '.');
		c += n;
		if (*c == '/' && !*++c)
			bad = true;
	}
	if (bad || strpbrk(j->path, "\n\r,"))
		return (void)job_finish(j, false, "cluster %s: gitops path \"%s\" leaves the repository "
					"or is not a file name", j->cluster, j->path);
	j->repo = strdup(repo);
	j->branch = strdup(branch ? branch : "main");
	char id[65];
	char *both = NULL;
	if (!j->repo || !j->branch || asprintf(&both, "%s\n%s", repo, j->branch) < 0)
		return (void)job_finish(j, false, "gitops: out of memory");
	ws_sha256_hex(both, strlen(both), id);
	free(both);
	id[24] = '\0';
	if (asprintf(&j->dir, "%s/gitops/%s.git", state_dir_get(), id) < 0 ||
	    asprintf(&j->index_env, "GIT_INDEX_FILE=%s/wavesched-index.%ld.%u", j->dir, (long)getpid(),
		     gitops_index_gen) < 0) {
		j->dir = j->index_env = NULL;
		return (void)job_finish(j, false, "gitops: out of memory");
	}
	json_object_set_new(j->evidence, "repo", json_string(j->repo));
	json_object_set_new(j->evidence, "branch", json_string(j->branch));
	json_object_set_new(j->evidence, "path", json_string(j->path));
	json_object_set_new(j->evidence, "sync", json_string(j->by_status ? "status_url" : "health"));
	if (j->by_status) {
		if (!job_auth(j))
			return;
	} else if (!j->health_url || !*j->health_url) {
		return (void)job_finish(j, false, "gitops: tenant %s has no health_url to observe the "
					"sync (sync: health); nothing was committed", j->slug);
	}
	if (lock_enter(j))
		gitops_begin(j);
	else if (!j->lock)
		job_finish(j, false, "gitops: out of memory");
}

/* ---- running ------------------------------------------------------------ */

static void job_deadline(ws_deploy_job *j)
{
	if (j->kind == EX_COMMAND)
		job_finish(j, false, "command timed out after %llu ms; its process group was killed",
			   (unsigned long long)j->timeout_ms);
	else if (j->kind == EX_GITOPS)
		gitops_timed_out(j);
	else
		job_finish(j, false, "%s deploy timed out after %llu ms%s%s", kind_names[j->kind],
			   (unsigned long long)j->timeout_ms, *j->last_state ? "; last state: " : "",
			   j->last_state);
}

static void deadline_cb(uv_timer_t *t)
{
	job_deadline(t->data);
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

WS_API int ws_executor_run(ws_executor *e, const ws_deploy_call *call, ws_deploy_cb cb,
			   void *arg, ws_deploy_job **job_out)
{
	if (!cb || !call->rollout_id || !call->slug || !call->version || !call->artifact ||
	    !call->idempotency_key)
		return WS_EINVAL;
	ws_deploy_job *j = calloc(1, sizeof(*j));
	if (!j)
		return WS_ENOMEM;
	j->loop = e->loop;
	j->out = e->out;
	j->kind = e->kind;
	j->settings = json_incref(e->settings);
	j->cluster = strdup(call->cluster ? call->cluster : e->cluster);
	j->rollout = strdup(call->rollout_id);
	j->slug = strdup(call->slug);
	j->version = strdup(call->version);
	j->prev = dup_or_null(call->previous_version);
	j->artifact = strdup(call->artifact);
	j->key = strdup(call->idempotency_key);
	j->wave = dup_or_null(call->wave);
	j->health_url = dup_or_null(call->health_url);
	j->evidence = json_object();
	j->requests = json_array();
	if (!j->cluster || !j->rollout || !j->slug || !j->version || !j->artifact || !j->key ||
	    !j->evidence || !j->requests || (call->previous_version && !j->prev) ||
	    (call->wave && !j->wave) || (call->health_url && !j->health_url)) {
		json_decref(j->requests);
		job_free(j);
		return WS_ENOMEM;
	}
	j->rollback = call->rollback;
	j->poll_ms = call->poll_interval_ms ? call->poll_interval_ms : WS_EXECUTOR_DEFAULT_POLL_MS;
	j->timeout_ms = call->timeout_ms ? call->timeout_ms
		      : e->timeout_ms ? e->timeout_ms : WS_EXECUTOR_DEFAULT_TIMEOUT_MS;
	j->cb = cb;
	j->arg = arg;
	json_object_set_new(j->evidence, "executor", json_string(kind_names[j->kind]));
	json_object_set_new(j->evidence, "cluster", json_string(j->cluster));
	json_object_set_new(j->evidence, "idempotency_key", json_string(j->key));
	json_object_set_new(j->evidence, "rollback", json_boolean(j->rollback));
	if (j->kind != EX_COMMAND)
		json_object_set_new(j->evidence, "requests", j->requests);
	else
		json_decref(j->requests);
	if (j->kind == EX_COMMAND)
		j->requests = NULL;
	uv_timer_init(j->loop, &j->deadline);
	uv_timer_init(j->loop, &j->poll);
	j->deadline.data = j->poll.data = j;
	j->handles_open = 2;
	uv_timer_start(&j->deadline, deadline_cb, j->timeout_ms, 0);
	if (job_out)
		*job_out = j;
	switch (j->kind) {
	case EX_WEBHOOK: webhook_start(j); break;
	case EX_KUBERNETES: k8s_start(j); break;
	case EX_COMMAND: command_start(j); break;
	case EX_GITOPS:
		j->git_log = json_array();
		json_object_set_new(j->evidence, "git", j->git_log);
		json_object_set_new(j->evidence, "rollout", json_string(j->rollout));
		if (j->wave)
			json_object_set_new(j->evidence, "wave", json_string(j->wave));
		gitops_start(j);
		break;
	}
	return 0;
}

WS_API void ws_deploy_job_cancel(ws_deploy_job *j)
{
	job_finish(j, false, "cancelled");
}
