/*
 * sim_http.c - the simulator's HTTP surface: tenant health and backup
 * status, the webhook deployer, a minimal Kubernetes Deployments API, the
 * control endpoints for tests (/_sim/...) and Prometheus metrics.
 *
 * Slow and hanging answers are "held" requests: a uv timer answers a slow
 * one later; a hanging one is never answered while its client waits.  A
 * sweep timer notices hanging requests whose client gave up and lets them
 * go (the HTTP server keeps such a request alive until it is answered).
 * On shutdown every held request is answered at once, so the server can
 * drain and nothing is left behind.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sim.h"
#include "wavesched/log.h"

#define SWEEP_MS 250
#define MAX_SEGMENTS 10
#define MAX_PATH 1024

typedef struct held {
	sim_http *h;
	ws_http_req *req;      /* NULL once answered */
	int status;
	char *body;
	uint64_t due_ns;       /* uv_hrtime() at which the answer may go */
	uv_timer_t timer;
	struct held *prev, *next;
} held;

struct sim_http {
	sim_state *s;
	held *held;
	size_t n_held;
	uv_timer_t sweep;
	bool sweep_on;
	bool closing;             /* draining: nothing is held any more */
	bool closed;              /* sim_http_close called: free at the last close */
	size_t closes_pending;
	void (*close_cb)(void *);
	void *close_arg;
};

/* ---- answers ----------------------------------------------------------- */

static void reply_json(ws_http_req *req, int status, json_t *doc)
{
	char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	json_decref(doc);
	if (!text) {
		ws_http_respond_error(req, 500, "internal", "out of memory", NULL);
		return;
	}
	ws_http_respond(req, status, "application/json", text, strlen(text));
	free(text);
}

static void reply_error(ws_http_req *req, int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void reply_error(ws_http_req *req, int status, const char *code, const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ws_http_respond_error(req, status, code, msg, NULL);
}

/* 400 naming the bad field, in details too, so a test can assert on it. */
static void reply_field_error(ws_http_req *req, const char *field, const char *msg)
{
	json_t *details = json_pack("[{s:s, s:s}]", "field", field, "message", msg);
	ws_http_respond_error(req, 400, "validation_failed", msg, details);
}

/* The Kubernetes API answers errors as a Status object. */
static void reply_k8s_status(ws_http_req *req, int status, const char *reason, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void reply_k8s_status(ws_http_req *req, int status, const char *reason, const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	reply_json(req, status, json_pack("{s:s, s:s, s:{}, s:s, s:s, s:s, s:i}", "kind", "Status",
					  "apiVersion", "v1", "metadata", "status", "Failure",
					  "message", msg, "reason", reason, "code", status));
}

static json_t *parse_body(ws_http_req *req, const char *what)
{
	size_t len;
	const char *body = ws_http_req_body(req, &len);
	json_error_t err;
	json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
	if (!doc) {
		char msg[300];
		snprintf(msg, sizeof(msg), "body:%d:%d: %s", err.line, err.column, err.text);
		reply_field_error(req, "(body)", msg);
		return NULL;
	}
	if (!json_is_object(doc)) {
		json_decref(doc);
		reply_field_error(req, "(body)", what);
		return NULL;
	}
	return doc;
}

/* When SIMFLEET_TOKEN is set the deployers want "Bearer <it>". */
static bool authorized(sim_http *h, ws_http_req *req)
{
	if (!h->s->token)
		return true;
	const char *a = ws_http_req_header(req, "Authorization");
	size_t n = strlen(h->s->token);
	bool ok = a && strncmp(a, "Bearer ", 7) == 0 && strlen(a + 7) == n;
	unsigned char diff = ok ? 0 : 1;
	for (size_t i = 0; ok && i < n; i++)   /* constant time over the token */
		diff |= (unsigned char)(a[7 + i] ^ h->s->token[i]);
	return diff == 0;
}

static void reply_unauthorized(ws_http_req *req)
{
	ws_http_add_header(req, "WWW-Authenticate", "Bearer");
	reply_error(req, 401, "unauthorized", "a valid \"Authorization: Bearer\" token is required");
}

/* ---- held requests ---------------------------------------------------- */

/* Held timers and the sweep timer close together at shutdown; whichever
 * close callback comes last (libuv does not promise an order) frees h. */
static void close_one(sim_http *h)
{
	if (--h->closes_pending > 0 || !h->closed)
		return;
	void (*cb)(void *) = h->close_cb;
	void *arg = h->close_arg;
	free(h);
	if (cb)
		cb(arg);
}

static void held_closed_cb(uv_handle_t *hd)
{
	held *x = hd->data;
	sim_http *h = x->h;
	free(x->body);
	free(x);
	close_one(h);
}

static void held_release(held *x)
{
	sim_http *h = x->h;
	if (x->prev)
		x->prev->next = x->next;
	else
		h->held = x->next;
	if (x->next)
		x->next->prev = x->prev;
	h->n_held--;
	h->closes_pending++;
	uv_close((uv_handle_t *)&x->timer, held_closed_cb);
}

static void held_timer_cb(uv_timer_t *t)
{
	held *x = t->data;
	/* libuv's loop time is whole milliseconds and may lag the real clock:
	 * a timer can fire up to a millisecond early.  The latency a test set
	 * is a floor, so wait out the rest. */
	uint64_t now = uv_hrtime();
	if (now < x->due_ns) {
		uv_timer_start(&x->timer, held_timer_cb, (x->due_ns - now) / 1000000 + 1, 0);
		return;
	}
	ws_http_respond(x->req, x->status, "application/json", x->body, strlen(x->body));
	x->req = NULL;
	held_release(x);
}

static void sweep_cb(uv_timer_t *t)
{
	sim_http *h = t->data;
	for (held *x = h->held, *next; x; x = next) {
		next = x->next;
		if (!ws_http_req_connected(x->req)) {
			/* The client gave up: the answer goes nowhere, the request is freed. */
			ws_http_respond(x->req, 504, "application/json", "{}", 2);
			x->req = NULL;
			held_release(x);
		}
	}
	if (!h->held) {
		uv_timer_stop(&h->sweep);
		h->sweep_on = false;
	}
}

/* Answers `req` after `delay_ms` (real time), or never while the client
 * waits when `hang`.  `body` is taken. */
static void hold(sim_http *h, ws_http_req *req, int status, char *body, uint64_t delay_ms, bool hang)
{
	if (h->closing) {
		free(body);
		reply_error(req, 503, "shutting_down", "simfleet is stopping");
		return;
	}
	held *x = calloc(1, sizeof(*x));
	if (!x) {
		free(body);
		reply_error(req, 500, "internal", "out of memory");
		return;
	}
	x->h = h;
	x->req = req;
	x->status = status;
	x->body = body;
	uv_timer_init(h->s->loop, &x->timer);
	x->timer.data = x;
	x->next = h->held;
	if (h->held)
		h->held->prev = x;
	h->held = x;
	h->n_held++;
	if (!hang) {
		x->due_ns = uv_hrtime() + delay_ms * 1000000;
		uv_update_time(h->s->loop);
		uv_timer_start(&x->timer, held_timer_cb, delay_ms, 0);
	} else if (!h->sweep_on) {
		uv_timer_start(&h->sweep, sweep_cb, SWEEP_MS, SWEEP_MS);
		h->sweep_on = true;
	}
}

sim_http *sim_http_new(sim_state *s)
{
	sim_http *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->s = s;
	uv_timer_init(s->loop, &h->sweep);
	h->sweep.data = h;
	return h;
}

static void sweep_closed_cb(uv_handle_t *hd)
{
	close_one(hd->data);
}

void sim_http_drain(sim_http *h)
{
	h->closing = true;
	while (h->held) {
		held *x = h->held;
		uv_timer_stop(&x->timer);
		ws_http_respond_error(x->req, 503, "shutting_down", "simfleet is stopping", NULL);
		x->req = NULL;
		held_release(x);
	}
}

void sim_http_close(sim_http *h, void (*cb)(void *), void *arg)
{
	sim_http_drain(h);
	h->close_cb = cb;
	h->close_arg = arg;
	h->closed = true;
	h->closes_pending++;   /* the sweep timer; held ones counted themselves */
	uv_close((uv_handle_t *)&h->sweep, sweep_closed_cb);
}

/* ---- tenants ----------------------------------------------------------- */

static sim_tenant *tenant_or_404(sim_http *h, ws_http_req *req, const char *slug)
{
	sim_tenant *t = sim_tenant_get(h->s, slug, true);
	if (!t) {
		if (!sim_slug_valid(slug))
			reply_error(req, 404, "not_found", "invalid tenant slug \"%.80s\" (expected 1 to "
				    "63 characters a-z, 0-9 or -)", slug);
		else
			reply_error(req, 404, "not_found", "unknown tenant \"%s\"", slug);
	}
	return t;
}

static void handle_health(sim_http *h, ws_http_req *req, const char *slug)
{
	sim_tenant *t = tenant_or_404(h, req, slug);
	if (!t)
		return;
	t->health_requests++;
	uint64_t probe = t->probes++;
	const sim_fault *f = &t->fault;
	int status = 200;
	const char *state = "ok", *reason = NULL;
	if (f->http_500) {
		status = 500;
		state = "error";
		reason = "http_500";
	} else if (!sim_tenant_healthy(t, probe)) {
		status = 503;
		state = "unhealthy";
		reason = f->flap_every > 0 && !(f->unhealthy_after_version &&
						 strcmp(t->version, f->unhealthy_after_version) == 0)
				 ? "flap_every" : "unhealthy_after_version";
	}
	json_t *doc = json_pack("{s:s, s:s, s:s}", "status", state, "slug", t->slug, "version",
				t->version);
	if (reason)
		json_object_set_new(doc, "reason", json_string(reason));
	char *body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	json_decref(doc);
	if (!body) {
		reply_error(req, 500, "internal", "out of memory");
		return;
	}
	int64_t latency = sim_tenant_latency_ms(t);
	if (f->hang || latency > 0) {
		hold(h, req, status, body, (uint64_t)latency, f->hang);
		return;
	}
	ws_http_respond(req, status, "application/json", body, strlen(body));
	free(body);
}

/*
 * The backup status a gate with `source: http` reads.  The tenant's http_500
 * and hang faults apply here as to health (a status service that fails or
 * never answers is what the gate must survive); the backup fault says what
 * a working service answers.
 */
/*
 * The backup status a gate with `source: http` reads.  The tenant's http_500
 * and hang faults apply here as to health (a status service that fails or
 * never answers is what the gate must survive); the backup fault says what
 * a working service answers.
 */
static void handle_backup(sim_http *h, ws_http_req *req, const char *slug)
{
	sim_tenant *t = tenant_or_404(h, req, slug);
	if (!t)
		return;
	const sim_fault *f = &t->fault;
	if (f->hang) {
		/* Never answered while the client waits; the body only matters
		 * if simfleet stops first. */
		char *body = strdup("{\"error\":{\"code\":\"hang\",\"message\":\"simulated hang\"}}");
		if (!body)
			return reply_error(req, 500, "internal", "out of memory");
		return hold(h, req, 503, body, 0, true);
	}
	if (f->http_500)
		return reply_error(req, 500, "internal", "simulated failure of the backup status of "
				   "tenant \"%s\" (http_500)", slug);
	if (f->backup == SIM_BACKUP_MISSING)
		return reply_error(req, 404, "no_backup", "tenant \"%s\" has no successful backup", slug);
	char ts[40];
	sim_format_time(sim_clock_now_ms(&h->s->clock) - f->backup_age_s * 1000, ts);
	reply_json(req, 200, json_pack("{s:s, s:s}", "tenant", t->slug, "last_success", ts));
}

/* ---- the webhook deployer ---------------------------------------------- */

/* An optional string field: absent and null are fine. */
static bool opt_string(json_t *doc, const char *name, const char **out)
{
	json_t *v = json_object_get(doc, name);
	*out = NULL;
	if (!v || json_is_null(v))
		return true;
	if (!json_is_string(v))
		return false;
	*out = json_string_value(v);
	return true;
}

static bool version_ok(const char *v)
{
	size_t n = strlen(v);
	return n > 0 && n <= SIM_MAX_VERSION_LEN;
}

/* A key seen before must name the same deploy: reusing a key for another
 * tenant or version is a bug of the caller, and a test should see it. */
static bool key_conflict(const sim_deploy *d, const char *tenant, const char *executor,
			 const char *version)
{
	return strcmp(d->tenant, tenant) != 0 || strcmp(d->executor, executor) != 0 ||
	       (d->state != SIM_DEP_REJECTED && d->version && strcmp(d->version, version) != 0);
}

static void handle_deploy(sim_http *h, ws_http_req *req)
{
	if (!authorized(h, req)) {
		reply_unauthorized(req);
		return;
	}
	json_t *doc = parse_body(req, "the deploy body must be a JSON object");
	if (!doc)
		return;
	static const char *const required[] = { "tenant", "version", "idempotency_key" };
	const char *val[3];
	for (size_t i = 0; i < 3; i++) {
		json_t *v = json_object_get(doc, required[i]);
		val[i] = json_string_value(v);
		if (!val[i] || !*val[i]) {
			char msg[160];
			snprintf(msg, sizeof(msg), "\"%s\": %s", required[i],
				 v ? "expected a non-empty string" : "missing");
			reply_field_error(req, required[i], msg);
			goto out;
		}
	}
	const char *tenant = val[0], *version = val[1], *key = val[2];
	static const char *const optional[] = { "cluster", "previous_version", "artifact" };
	const char *prev = NULL;
	for (size_t i = 0; i < 3; i++) {
		const char *s;
		if (!opt_string(doc, optional[i], &s)) {
			char msg[160];
			snprintf(msg, sizeof(msg), "\"%s\": expected a string or null", optional[i]);
			reply_field_error(req, optional[i], msg);
			goto out;
		}
		if (i == 1)
			prev = s;
	}
	json_t *rollout = json_object_get(doc, "rollout");
	if (rollout && !json_is_string(rollout) && !json_is_integer(rollout) && !json_is_null(rollout)) {
		reply_field_error(req, "rollout", "\"rollout\": expected a string or an integer");
		goto out;
	}
	if (!version_ok(version)) {
		reply_field_error(req, "version", "\"version\": expected at most 128 characters");
		goto out;
	}
	if (strlen(key) > SIM_MAX_KEY_LEN) {
		reply_field_error(req, "idempotency_key", "\"idempotency_key\": expected at most 512 "
				  "characters");
		goto out;
	}
	sim_tenant *t = tenant_or_404(h, req, tenant);
	if (!t)
		goto out;
	bool is_new;
	sim_deploy *d = sim_deploy_record(h->s, key, tenant, "webhook", &is_new);
	if (!d) {
		reply_error(req, 500, "internal", "out of memory");
		goto out;
	}
	if (!is_new && key_conflict(d, tenant, "webhook", version)) {
		reply_error(req, 409, "conflict", "idempotency key \"%s\" was first used for tenant "
			    "\"%s\" version \"%s\" (%s), not tenant \"%s\" version \"%s\"", key,
			    d->tenant, d->version ? d->version : "-", d->executor, tenant, version);
		goto out;
	}
	if (d->state != SIM_DEP_REJECTED) {
		ws_info(SIM_SUBSYS, "tenant=%s key=%s duplicate call %llu: not deployed again", tenant,
			key, (unsigned long long)d->calls);
		ws_http_add_header(req, "X-Simfleet-Duplicate", "true");
		reply_json(req, 202, json_pack("{s:b}", "accepted", 1));
		goto out;
	}
	if (t->fault.deploy_reject) {
		ws_info(SIM_SUBSYS, "tenant=%s key=%s deploy rejected (deploy_reject)", tenant, key);
		reply_error(req, 500, "deploy_rejected", "tenant \"%s\": the deployer refused the "
			    "deploy (deploy_reject fault)", tenant);
		goto out;
	}
	sim_deploy_start(d, t, version, prev);
	reply_json(req, 202, json_pack("{s:b}", "accepted", 1));
out:
	json_decref(doc);
}

static void handle_deploy_status(sim_http *h, ws_http_req *req)
{
	const char *key = ws_http_req_query_param(req, "key");
	if (!key || !*key) {
		reply_field_error(req, "key", "query parameter \"key\" is required");
		return;
	}
	sim_deploy *d = sim_map_get(h->s->deploys, key);
	if (!d || d->state == SIM_DEP_REJECTED) {
		reply_error(req, 404, "not_found", "no accepted deploy has the idempotency key \"%.512s\"",
			    key);
		return;
	}
	reply_json(req, 200, json_pack("{s:s, s:s, s:s, s:s}", "state", sim_dep_state_name(d->state),
				       "key", d->key, "tenant", d->tenant, "version",
				       d->version ? d->version : ""));
}

/* ---- Kubernetes Deployments -------------------------------------------- */

/* Namespaces and names are RFC 1123 labels or subdomains. */
static bool k8s_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
		      s[i] == '.'))
			return false;
	return true;
}

#define TENANT_LABEL "wavesched.io/tenant"
#define DEFAULT_REPLICAS 2

static json_t *k8s_deployment_json(const char *ns, const char *name, const char *tenant,
				   const char *container, const char *image, uint64_t generation,
				   uint64_t observed, int replicas, int updated, int available,
				   bool failed)
{
	bool done = observed >= generation && updated == replicas && available == replicas;
	const char *reason = failed ? "ProgressDeadlineExceeded"
				    : done ? "NewReplicaSetAvailable" : "ReplicaSetUpdated";
	return json_pack("{s:s, s:s, s:{s:s, s:s, s:I, s:{s:s}},"
			 " s:{s:i, s:{s:{s:[{s:s, s:s}]}}},"
			 " s:{s:i, s:i, s:i, s:i, s:I, s:[{s:s, s:s, s:s}]}}",
			 "apiVersion", "apps/v1", "kind", "Deployment",
			 "metadata", "name", name, "namespace", ns, "generation", (json_int_t)generation,
			 "labels", TENANT_LABEL, tenant,
			 "spec", "replicas", replicas, "template", "spec", "containers", "name", container,
			 "image", image,
			 "status", "replicas", replicas, "updatedReplicas", updated, "readyReplicas",
			 available, "availableReplicas", available, "observedGeneration",
			 (json_int_t)observed, "conditions", "type", "Progressing", "status",
			 failed ? "False" : "True", "reason", reason);
}

static json_t *k8s_json(const sim_k8s *k)
{
	return k8s_deployment_json(k->ns, k->name, k->tenant, k->container, k->image, k->generation,
				   k->observed_generation, k->replicas, k->updated_replicas,
				   k->available_replicas, k->failed);
}

/* The tenant a patch is about: the label wavesched.io/tenant (on the
 * Deployment or its pod template) when given, else the Deployment's name. */
static const char *patch_tenant(json_t *patch, const char *name)
{
	const char *t = json_string_value(json_object_get(
		json_object_get(json_object_get(patch, "metadata"), "labels"), TENANT_LABEL));
	if (!t)
		t = json_string_value(json_object_get(json_object_get(json_object_get(
			json_object_get(json_object_get(patch, "spec"), "template"), "metadata"),
			"labels"), TENANT_LABEL));
	return t ? t : name;
}

static void handle_k8s_get(sim_http *h, ws_http_req *req, const char *ns, const char *name)
{
	char id[520];
	snprintf(id, sizeof(id), "%s/%s", ns, name);
	sim_k8s *k = sim_map_get(h->s->k8s, id);
	if (k) {
		reply_json(req, 200, k8s_json(k));
		return;
	}
	/* Never patched: a settled Deployment at the tenant's current version. */
	sim_tenant *t = sim_tenant_get(h->s, name, true);
	if (!t) {
		reply_k8s_status(req, 404, "NotFound", "deployments.apps \"%s\" not found", name);
		return;
	}
	char image[300];
	snprintf(image, sizeof(image), "registry.example/odoo:%s", t->version);
	reply_json(req, 200, k8s_deployment_json(ns, name, t->slug, "odoo", image, 1, 1,
						 DEFAULT_REPLICAS, DEFAULT_REPLICAS,
						 DEFAULT_REPLICAS, false));
}

static void handle_k8s_patch(sim_http *h, ws_http_req *req, const char *ns, const char *name)
{
	const char *ctype = ws_http_req_header(req, "Content-Type");
	if (ctype && strncmp(ctype, "application/json-patch+json", 27) == 0) {
		reply_k8s_status(req, 415, "UnsupportedMediaType", "JSON patches are not supported "
				 "by simfleet: send a strategic-merge or merge patch");
		return;
	}
	size_t len;
	const char *body = ws_http_req_body(req, &len);
	json_error_t err;
	json_t *patch = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
	if (!json_is_object(patch)) {
		if (patch)
			reply_k8s_status(req, 400, "BadRequest", "body: the patch must be a JSON object");
		else
			reply_k8s_status(req, 400, "BadRequest", "body:%d:%d: %s", err.line, err.column,
					 err.text);
		json_decref(patch);
		return;
	}
	json_t *containers = json_object_get(json_object_get(json_object_get(
		json_object_get(patch, "spec"), "template"), "spec"), "containers");
	const char *image = NULL, *container = "odoo";
	size_t idx = 0;
	if (!json_is_array(containers) || json_array_size(containers) == 0) {
		reply_k8s_status(req, 422, "Invalid", "spec.template.spec.containers: expected a "
				 "non-empty array of containers with an image");
		goto out;
	}
	for (idx = 0; idx < json_array_size(containers); idx++) {
		json_t *c = json_array_get(containers, idx);
		json_t *img = json_object_get(c, "image");
		if (!json_is_object(c) || (img && !json_is_string(img))) {
			reply_k8s_status(req, 422, "Invalid", "spec.template.spec.containers[%zu]%s: "
					 "expected %s", idx, json_is_object(c) ? ".image" : "",
					 json_is_object(c) ? "a string" : "an object");
			goto out;
		}
		if (img) {
			image = json_string_value(img);
			const char *cn = json_string_value(json_object_get(c, "name"));
			if (cn && *cn)
				container = cn;
			break;
		}
	}
	if (!image) {
		reply_k8s_status(req, 422, "Invalid", "spec.template.spec.containers[].image: missing");
		goto out;
	}
	/* The version is the tag: after the last ':' that follows the last '/',
	 * and before any "@digest". */
	char ref[512];
	snprintf(ref, sizeof(ref), "%s", image);
	char *at = strchr(ref, '@');
	if (at)
		*at = '\0';
	char *slash = strrchr(ref, '/');
	char *colon = strrchr(ref, ':');
	if (!colon || (slash && colon < slash) || !version_ok(colon + 1) || strlen(image) >= sizeof(ref)) {
		reply_k8s_status(req, 422, "Invalid", "spec.template.spec.containers[%zu].image: "
				 "\"%.300s\" has no tag (the tag is the version)", idx, image);
		goto out;
	}
	const char *version = colon + 1;
	const char *tenant = patch_tenant(patch, name);
	sim_tenant *t = sim_tenant_get(h->s, tenant, true);
	if (!t) {
		reply_k8s_status(req, 404, "NotFound", "deployments.apps \"%s\" not found (no tenant "
				 "\"%.80s\")", name, tenant);
		goto out;
	}
	const char *key = ws_http_req_header(req, "Idempotency-Key");
	char anon[600];
	if (!key || !*key) {
		snprintf(anon, sizeof(anon), "patch/%s/%s/%llu", ns, name,
			 (unsigned long long)++h->s->anon_keys);
		key = anon;
	} else if (strlen(key) > SIM_MAX_KEY_LEN) {
		reply_k8s_status(req, 400, "BadRequest", "header Idempotency-Key: expected at most "
				 "512 characters");
		goto out;
	}
	bool is_new;
	sim_deploy *d = sim_deploy_record(h->s, key, t->slug, "kubernetes", &is_new);
	if (!d) {
		reply_k8s_status(req, 500, "InternalError", "out of memory");
		goto out;
	}
	if (!is_new && key_conflict(d, t->slug, "kubernetes", version)) {
		reply_k8s_status(req, 409, "Conflict", "idempotency key \"%s\" was first used for "
				 "tenant \"%s\" version \"%s\" (%s)", key, d->tenant,
				 d->version ? d->version : "-", d->executor);
		goto out;
	}
	char id[520];
	snprintf(id, sizeof(id), "%s/%s", ns, name);
	sim_k8s *k = sim_map_get(h->s->k8s, id);
	if (d->state != SIM_DEP_REJECTED) {
		ws_info(SIM_SUBSYS, "tenant=%s key=%s duplicate PATCH %llu: not deployed again",
			t->slug, key, (unsigned long long)d->calls);
		ws_http_add_header(req, "X-Simfleet-Duplicate", "true");
		reply_json(req, 200, k ? k8s_json(k) : json_object());
		goto out;
	}
	if (t->fault.deploy_reject) {
		reply_k8s_status(req, 500, "InternalError", "tenant \"%s\": the API server refused the "
				 "patch (deploy_reject fault)", t->slug);
		goto out;
	}
	if (!k) {
		k = calloc(1, sizeof(*k));
		if (!k || !(k->ns = strdup(ns)) || !(k->name = strdup(name)) ||
		    sim_map_add(h->s->k8s, id, k) != 0) {
			if (k) {
				free(k->ns);
				free(k->name);
			}
			free(k);
			reply_k8s_status(req, 500, "InternalError", "out of memory");
			goto out;
		}
		k->generation = k->observed_generation = 1;
		k->replicas = DEFAULT_REPLICAS;
	}
	char *nt = strdup(t->slug), *nc = strdup(container), *ni = strdup(image);
	if (!nt || !nc || !ni) {
		free(nt);
		free(nc);
		free(ni);
		reply_k8s_status(req, 500, "InternalError", "out of memory");
		goto out;
	}
	free(k->tenant);
	free(k->container);
	free(k->image);
	k->tenant = nt;
	k->container = nc;
	k->image = ni;
	k->generation++;
	k->updated_replicas = 0;
	k->available_replicas = k->replicas;
	k->failed = false;
	d->k8s = k;
	d->k8s_generation = k->generation;
	sim_deploy_start(d, t, version, t->version);
	reply_json(req, 200, k8s_json(k));
out:
	json_decref(patch);
}

/* ---- control ----------------------------------------------------------- */

static void handle_tenants(sim_http *h, ws_http_req *req)
{
	json_t *out = json_object();
	for (size_t i = 0; i < sim_map_len(h->s->tenants); i++) {
		const sim_tenant *t = sim_map_val_at(h->s->tenants, i);
		json_object_set_new(out, t->slug, json_pack(
			"{s:s, s:s, s:b, s:I, s:I, s:O}", "version", t->version, "initial_version",
			t->initial_version, "healthy", sim_tenant_healthy(t, t->probes), "deploys",
			(json_int_t)t->deploys, "health_requests", (json_int_t)t->health_requests,
			"fault", t->fault.spec ? t->fault.spec : json_null()));
	}
	reply_json(req, 200, json_pack("{s:o}", "tenants", out));
}

static void handle_calls(sim_http *h, ws_http_req *req)
{
	json_t *calls = json_object(), *deploys = json_object(), *states = json_object();
	json_t *by_tenant = json_object(), *first_at = json_object();
	for (size_t i = 0; i < sim_map_len(h->s->deploys); i++) {
		const sim_deploy *d = sim_map_val_at(h->s->deploys, i);
		json_object_set_new(calls, d->key, json_integer((json_int_t)d->calls));
		json_object_set_new(deploys, d->key, json_integer((json_int_t)d->deploys));
		json_object_set_new(states, d->key, json_string(sim_dep_state_name(d->state)));
		json_object_set_new(first_at, d->key, json_integer((json_int_t)d->first_at_us));
	}
	for (size_t i = 0; i < sim_map_len(h->s->tenants); i++) {
		const sim_tenant *t = sim_map_val_at(h->s->tenants, i);
		if (json_array_size(t->keys))
			json_object_set(by_tenant, t->slug, t->keys);
	}
	reply_json(req, 200, json_pack("{s:o, s:o, s:o, s:o, s:o}", "calls", calls, "deploys", deploys,
				       "states", states, "by_tenant", by_tenant, "first_at_us", first_at));
}

static void handle_fault_put(sim_http *h, ws_http_req *req, const char *slug)
{
	json_t *doc = parse_body(req, "a fault spec must be a JSON object");
	if (!doc)
		return;
	sim_fault f;
	const char *field;
	char msg[512];
	if (sim_fault_parse(doc, &f, &field, msg, sizeof(msg)) != 0) {
		reply_field_error(req, field, msg);
		json_decref(doc);
		return;
	}
	json_decref(doc);
	sim_tenant *t = tenant_or_404(h, req, slug);
	if (!t) {
		sim_fault_clear(&f);
		return;
	}
	sim_tenant_set_fault(t, &f);
	ws_info(SIM_SUBSYS, "tenant=%s fault set", slug);
	reply_json(req, 200, json_pack("{s:s, s:O}", "tenant", t->slug, "fault", t->fault.spec));
}

static void handle_fault_delete(sim_http *h, ws_http_req *req, const char *slug)
{
	sim_tenant *t = sim_tenant_get(h->s, slug, false);
	if (!t) {
		reply_error(req, 404, "not_found", "unknown tenant \"%.80s\"", slug);
		return;
	}
	sim_fault none = { .latency_factor = 1.0 };
	sim_tenant_set_fault(t, &none);
	ws_info(SIM_SUBSYS, "tenant=%s fault cleared", slug);
	reply_json(req, 200, json_pack("{s:s, s:n}", "tenant", t->slug, "fault"));
}

/* PUT /_sim/versions/{slug} {"version": V}: what a GitOps sync agent does
 * when it applies a commit.  The deployers above change a version through a
 * deploy with a key; a sync agent has no key to give, only the repository's
 * content, so this sets the version as an observed fact, counting no call. */
static void handle_version_put(sim_http *h, ws_http_req *req, const char *slug)
{
	json_t *doc = parse_body(req, "a version must be a JSON object {\"version\": ...}");
	if (!doc)
		return;
	const json_t *v = json_object_get(doc, "version");
	const char *version = json_string_value(v);
	if (!version || !*version || strlen(version) > 128) {
		reply_field_error(req, "version", "\"version\": expected a string of 1 to 128 characters");
		json_decref(doc);
		return;
	}
	sim_tenant *t = tenant_or_404(h, req, slug);
	char *copy = t ? strdup(version) : NULL;
	if (t && !copy) {
		reply_error(req, 500, "internal", "out of memory");
	} else if (t) {
		free(t->version);
		t->version = copy;
		ws_info(SIM_SUBSYS, "tenant=%s version=%s set by PUT /_sim/versions", t->slug, copy);
		reply_json(req, 200, json_pack("{s:s, s:s}", "tenant", t->slug, "version", t->version));
	}
	json_decref(doc);
}

/* The gauges a metric gate reads: {"odoo_queue_backlog"?: n,
 * "odoo_db_lock_waits"?: n}; those given replace the current values. */
static void handle_gauges_post(sim_http *h, ws_http_req *req, const char *slug)
{
	static const char *const names[] = { "odoo_queue_backlog", "odoo_db_lock_waits" };
	json_t *doc = parse_body(req, "gauges must be a JSON object");
	if (!doc)
		return;
	const char *k;
	json_t *v;
	json_object_foreach(doc, k, v) {
		char msg[160];
		if (strcmp(k, names[0]) != 0 && strcmp(k, names[1]) != 0) {
			snprintf(msg, sizeof(msg), "unknown gauge \"%.60s\" (expected %s or %s)", k,
				 names[0], names[1]);
			reply_field_error(req, k, msg);
			json_decref(doc);
			return;
		}
		if (!json_is_number(v)) {
			snprintf(msg, sizeof(msg), "%s must be a number", k);
			reply_field_error(req, k, msg);
			json_decref(doc);
			return;
		}
	}
	sim_tenant *t = tenant_or_404(h, req, slug);
	if (!t) {
		json_decref(doc);
		return;
	}
	json_object_foreach(doc, k, v) {
		if (strcmp(k, names[0]) == 0)
			t->odoo_queue_backlog = json_number_value(v);
		else
			t->odoo_db_lock_waits = json_number_value(v);
	}
	json_decref(doc);
	ws_info(SIM_SUBSYS, "tenant=%s gauges backlog=%g lock_waits=%g", slug, t->odoo_queue_backlog,
		t->odoo_db_lock_waits);
	reply_json(req, 200, json_pack("{s:s, s:f, s:f}", "tenant", t->slug, names[0],
				       t->odoo_queue_backlog, names[1], t->odoo_db_lock_waits));
}

/* ---- metrics ----------------------------------------------------------- */

typedef struct tbuf {
	char *p;
	size_t len, cap;
	bool oom;
} tbuf;

static void tbuf_printf(tbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tbuf_printf(tbuf *b, const char *fmt, ...)
{
	for (;;) {
		if (b->oom)
			return;
		va_list ap;
		va_start(ap, fmt);
		size_t room = b->cap - b->len;
		int n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = b->cap ? b->cap * 2 : 65536;
		while (cap - b->len <= (size_t)n)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
}

/* Label values escaped as the exposition format wants: \\ \" \n. */
static void label_escape(const char *s, char *out, size_t size)
{
	size_t j = 0;
	for (; *s && j + 3 < size; s++) {
		if (*s == '\\' || *s == '"') {
			out[j++] = '\\';
			out[j++] = *s;
		} else if (*s == '\n') {
			out[j++] = '\\';
			out[j++] = 'n';
		} else {
			out[j++] = *s;
		}
	}
	out[j] = '\0';
}

static void handle_metrics(sim_http *h, ws_http_req *req)
{
	tbuf b = { 0 };
	sim_map *ts = h->s->tenants;
	size_t n = sim_map_len(ts);
	tbuf_printf(&b, "# HELP simfleet_tenant_up Whether the tenant's health endpoint would answer 2xx now.\n"
		    "# TYPE simfleet_tenant_up gauge\n");
	for (size_t i = 0; i < n; i++) {
		const sim_tenant *t = sim_map_val_at(ts, i);
		tbuf_printf(&b, "simfleet_tenant_up{tenant=\"%s\"} %d\n", t->slug,
			    sim_tenant_healthy(t, t->probes) ? 1 : 0);
	}
	tbuf_printf(&b, "# HELP simfleet_queue_backlog Jobs waiting in the tenant's queue (fault queue_backlog).\n"
		    "# TYPE simfleet_queue_backlog gauge\n");
	for (size_t i = 0; i < n; i++) {
		const sim_tenant *t = sim_map_val_at(ts, i);
		tbuf_printf(&b, "simfleet_queue_backlog{tenant=\"%s\"} %lld\n", t->slug,
			    (long long)t->fault.queue_backlog);
	}
	tbuf_printf(&b, "# HELP odoo_queue_backlog Jobs waiting in the tenant's Odoo job queue (POST /_sim/gauges).\n"
		    "# TYPE odoo_queue_backlog gauge\n");
	for (size_t i = 0; i < n; i++) {
		const sim_tenant *t = sim_map_val_at(ts, i);
		tbuf_printf(&b, "odoo_queue_backlog{tenant=\"%s\"} %.17g\n", t->slug,
			    t->odoo_queue_backlog);
	}
	tbuf_printf(&b, "# HELP odoo_db_lock_waits Queries of the tenant waiting on a database lock (POST /_sim/gauges).\n"
		    "# TYPE odoo_db_lock_waits gauge\n");
	for (size_t i = 0; i < n; i++) {
		const sim_tenant *t = sim_map_val_at(ts, i);
		tbuf_printf(&b, "odoo_db_lock_waits{tenant=\"%s\"} %.17g\n", t->slug,
			    t->odoo_db_lock_waits);
	}
	tbuf_printf(&b, "# HELP simfleet_health_requests_total Health requests the tenant received.\n"
		    "# TYPE simfleet_health_requests_total counter\n");
	for (size_t i = 0; i < n; i++) {
		const sim_tenant *t = sim_map_val_at(ts, i);
		tbuf_printf(&b, "simfleet_health_requests_total{tenant=\"%s\"} %llu\n", t->slug,
			    (unsigned long long)t->health_requests);
	}
	tbuf_printf(&b, "# HELP simfleet_tenant_version_info The version the tenant runs.\n"
		    "# TYPE simfleet_tenant_version_info gauge\n");
	for (size_t i = 0; i < n; i++) {
		const sim_tenant *t = sim_map_val_at(ts, i);
		char v[2 * SIM_MAX_VERSION_LEN + 4];
		label_escape(t->version, v, sizeof(v));
		tbuf_printf(&b, "simfleet_tenant_version_info{tenant=\"%s\",version=\"%s\"} 1\n",
			    t->slug, v);
	}
	tbuf_printf(&b, "# HELP simfleet_deploys_pending Deploys accepted and not yet converged.\n"
		    "# TYPE simfleet_deploys_pending gauge\nsimfleet_deploys_pending %zu\n",
		    h->s->pending_deploys);
	if (b.oom)
		reply_error(req, 500, "internal", "out of memory");
	else
		ws_http_respond(req, 200, "text/plain; version=0.0.4", b.p, b.len);
	free(b.p);
}

/* ---- routing ----------------------------------------------------------- */

static void method_not_allowed(ws_http_req *req, const char *allow)
{
	ws_http_add_header(req, "Allow", allow);
	reply_error(req, 405, "method_not_allowed", "%s is not allowed here (allowed: %s)",
		    ws_http_req_method(req), allow);
}

/* Splits "/a/b/c" into segments; false for empty segments or too many. */
static bool split_path(const char *path, char *buf, size_t size, char **seg, size_t *n)
{
	size_t len = strlen(path);
	*n = 0;
	if (len == 0 || path[0] != '/' || len >= size)
		return false;
	memcpy(buf, path + 1, len);   /* with the NUL */
	if (!*buf)
		return true;
	for (char *p = buf; p;) {
		char *slash = strchr(p, '/');
		if (slash)
			*slash = '\0';
		if (!*p || *n == MAX_SEGMENTS)
			return false;
		seg[(*n)++] = p;
		p = slash ? slash + 1 : NULL;
	}
	return true;
}

#define IS(i, s) (strcmp(seg[i], (s)) == 0)

void sim_http_handle(void *arg, ws_http_req *req)
{
	sim_http *h = arg;
	const char *m = ws_http_req_method(req);
	bool get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
	bool post = strcmp(m, "POST") == 0;
	char buf[MAX_PATH];
	char *seg[MAX_SEGMENTS];
	size_t n;
	if (!split_path(ws_http_req_path(req), buf, sizeof(buf), seg, &n))
		goto not_found;

	if (n == 3 && IS(0, "t") && (IS(2, "health") || IS(2, "backup"))) {
		ws_http_req_set_route(req, IS(2, "health") ? "/t/{slug}/health" : "/t/{slug}/backup");
		if (!get)
			return method_not_allowed(req, "GET, HEAD");
		return IS(2, "health") ? handle_health(h, req, seg[1]) : handle_backup(h, req, seg[1]);
	}
	if (n == 1 && IS(0, "deploy")) {
		ws_http_req_set_route(req, "/deploy");
		return post ? handle_deploy(h, req) : method_not_allowed(req, "POST");
	}
	if (n == 2 && IS(0, "deploy") && IS(1, "status")) {
		ws_http_req_set_route(req, "/deploy/status");
		return get ? handle_deploy_status(h, req) : method_not_allowed(req, "GET, HEAD");
	}
	if (n == 7 && IS(0, "apis") && IS(1, "apps") && IS(2, "v1") && IS(3, "namespaces") &&
	    IS(5, "deployments")) {
		ws_http_req_set_route(req, "/apis/apps/v1/namespaces/{ns}/deployments/{name}");
		if (!k8s_name_ok(seg[4]) || !k8s_name_ok(seg[6]))
			return reply_k8s_status(req, 404, "NotFound", "invalid namespace or name");
		if (!authorized(h, req)) {
			ws_http_add_header(req, "WWW-Authenticate", "Bearer");
			return reply_k8s_status(req, 401, "Unauthorized", "a valid bearer token is required");
		}
		if (get)
			return handle_k8s_get(h, req, seg[4], seg[6]);
		if (strcmp(m, "PATCH") == 0)
			return handle_k8s_patch(h, req, seg[4], seg[6]);
		return method_not_allowed(req, "GET, HEAD, PATCH");
	}
	if (n == 1 && IS(0, "metrics")) {
		ws_http_req_set_route(req, "/metrics");
		return get ? handle_metrics(h, req) : method_not_allowed(req, "GET, HEAD");
	}
	if (n == 1 && IS(0, "healthz")) {
		ws_http_req_set_route(req, "/healthz");
		return get ? reply_json(req, 200, json_pack("{s:s}", "status", "ok"))
			   : method_not_allowed(req, "GET, HEAD");
	}
	if (n >= 2 && IS(0, "_sim")) {
		if (n == 2 && IS(1, "tenants")) {
			ws_http_req_set_route(req, "/_sim/tenants");
			return get ? handle_tenants(h, req) : method_not_allowed(req, "GET, HEAD");
		}
		if (n == 2 && IS(1, "calls")) {
			ws_http_req_set_route(req, "/_sim/calls");
			return get ? handle_calls(h, req) : method_not_allowed(req, "GET, HEAD");
		}
		if (n == 3 && IS(1, "faults")) {
			ws_http_req_set_route(req, "/_sim/faults/{slug}");
			if (strcmp(m, "PUT") == 0)
				return handle_fault_put(h, req, seg[2]);
			if (strcmp(m, "DELETE") == 0)
				return handle_fault_delete(h, req, seg[2]);
			return method_not_allowed(req, "PUT, DELETE");
		}
		if (n == 3 && IS(1, "versions")) {
			ws_http_req_set_route(req, "/_sim/versions/{slug}");
			return strcmp(m, "PUT") == 0 ? handle_version_put(h, req, seg[2])
						     : method_not_allowed(req, "PUT");
		}
		if (n == 3 && IS(1, "gauges")) {
			ws_http_req_set_route(req, "/_sim/gauges/{slug}");
			return post ? handle_gauges_post(h, req, seg[2]) : method_not_allowed(req, "POST");
		}
		if (n == 2 && IS(1, "reset")) {
			ws_http_req_set_route(req, "/_sim/reset");
			if (!post)
				return method_not_allowed(req, "POST");
			sim_state_reset(h->s);
			return reply_json(req, 200, json_pack("{s:b}", "reset", 1));
		}
		if (n == 3 && IS(1, "backups") && IS(2, "report")) {
			ws_http_req_set_route(req, "/_sim/backups/report");
			if (!post)
				return method_not_allowed(req, "POST");
			if (h->s->stopping)
				return reply_error(req, 503, "shutting_down", "simfleet is stopping");
			if (!h->s->backup)
				return reply_error(req, 409, "no_service", "simfleet was started without "
						   "--service: there is nobody to report backups to");
			return sim_backup_report_now(h->s->backup, req);
		}
	}
not_found:
	reply_error(req, 404, "not_found", "no route for %s %.200s", m, ws_http_req_path(req));
}
