/*
 * test_executor.c - the three executors: webhook and kubernetes against a
 * real HTTP server in another process (testsrv.py, scripted answers), the
 * command executor with real child processes.  Success, failure, time-out,
 * malformed answers and missing credentials, with the requests the server
 * actually received checked from its log; the gitops executor with the real
 * git against bare repositories in a temporary directory.
 */
#include <errno.h>
#include <signal.h>
#include "../outbound/evloop.h"
#include "../outbound/testsrv.h"
#include "wavesched/executor.h"

static testsrv srv;

#define DEPLOY(gen, obs, want, upd, avail, total) \
	"{\"metadata\": {\"generation\": " #gen "}, \"spec\": {\"replicas\": " #want "}," \
	" \"status\": {\"observedGeneration\": " #obs ", \"replicas\": " #total "," \
	" \"updatedReplicas\": " #upd ", \"availableReplicas\": " #avail "}}"

static const char *const routes =
	"{\"/wh/ok\": [{\"status\": 202, \"body\": {}}],"
	" \"/wh/fail\": [{\"status\": 500, \"body\": \"boom\\nsecond line\"}],"
	" \"/wh/accept\": [{\"status\": 200}],"
	" \"/st/acme\": [{\"body\": {\"state\": \"running\"}}, {\"body\": {\"state\": \"running\"}},"
	"                {\"body\": {\"state\": \"done\"}}],"
	" \"/st/beta\": [{\"body\": {\"state\": \"failed\", \"message\": \"migration 42 failed\"}}],"
	" \"/st/gamma\": [{\"body\": \"<html>oops</html>\"}],"
	" \"/st/delta\": [{\"body\": {\"state\": 3}}],"
	" \"/st/slow\": [{\"body\": {\"state\": \"running\"}}],"
	" \"/st/err\": [{\"status\": 503, \"body\": \"down\"}],"
	" \"/apis/apps/v1/namespaces/t-acme/deployments/erp\": ["
	"    {\"body\": " DEPLOY(5, 4, 3, 0, 3, 3) "},"
	"    {\"body\": " DEPLOY(5, 4, 3, 0, 3, 3) "},"
	"    {\"body\": " DEPLOY(5, 5, 3, 3, 2, 4) "},"
	"    {\"body\": " DEPLOY(5, 5, 3, 3, 3, 3) "}],"
	" \"/apis/apps/v1/namespaces/t-stuck/deployments/erp\": ["
	"    {\"body\": " DEPLOY(2, 1, 3, 0, 3, 3) "}],"
	" \"/apis/apps/v1/namespaces/t-deadline/deployments/erp\": ["
	"    {\"body\": " DEPLOY(2, 1, 3, 0, 3, 3) "},"
	"    {\"body\": {\"metadata\": {\"generation\": 2}, \"spec\": {\"replicas\": 3},"
	"      \"status\": {\"observedGeneration\": 2, \"conditions\": [{\"type\": \"Progressing\","
	"       \"reason\": \"ProgressDeadlineExceeded\", \"message\": \"ReplicaSet erp-7 has timed out progressing.\"}]}}}],"
	" \"/apis/apps/v1/namespaces/t-bad/deployments/erp\": ["
	"    {\"body\": " DEPLOY(2, 1, 3, 0, 3, 3) "},"
	"    {\"body\": {\"metadata\": {\"generation\": \"2\"}, \"spec\": {\"replicas\": 3}}}],"
	" \"/apis/apps/v1/namespaces/t-html/deployments/erp\": [{\"body\": \"<html>proxy error</html>\"}],"
	" \"/apis/apps/v1/namespaces/t-forbidden/deployments/erp\": [{\"status\": 403,"
	"    \"body\": {\"kind\": \"Status\", \"message\": \"forbidden\"}}],"
	" \"/gh/acme\": [{\"status\": 503, \"body\": \"starting\"}, {\"body\": {\"version\": \"17.0.3\"}},"
	"               {\"body\": {\"version\": \"17.0.4\"}}],"
	" \"/gh/new\": [{\"body\": {\"status\": \"ok\", \"version\": \"17.0.4\"}}],"
	" \"/gh/old\": [{\"body\": {\"version\": \"17.0.3\"}}],"
	" \"/gh/html\": [{\"body\": \"<html>it works</html>\"}],"
	" \"/gh/noversion\": [{\"body\": {\"status\": \"ok\"}}],"
	" \"/argo/other\": [{\"body\": {\"status\": {\"sync\": {\"status\": \"Synced\","
	"     \"revision\": \"0123456789abcdef0123456789abcdef01234567\"}, \"health\": {\"status\": \"Healthy\"}}}}],"
	" \"/argo/bad\": [{\"body\": {\"sync\": {\"status\": \"Synced\"}}}]"
	"}";

static int group_setup(void **state)
{
	(void)state;
	testsrv_start(&srv, routes);
	setenv("WS_TEST_DEPLOY_TOKEN", "s3cret", 1);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	testsrv_stop(&srv);
	return 0;
}

/* ---- helpers ------------------------------------------------------------ */

typedef struct world {
	tctx t;
	ws_outbound *out;
} world;

static void world_init(world *w, const char *allow)
{
	tctx_init(&w->t);
	ws_diags d;
	ws_diags_init(&d);
	w->out = ws_outbound_new(&w->t.loop, ws_outbound_policy_parse(allow, NULL, &d), NULL, &d);
	assert_non_null(w->out);
	ws_diags_free(&d);
}

static void world_done(world *w)
{
	int closed = 0;
	ws_outbound_close(w->out, closed_cb, &closed);
	assert_true(run_until_count(&w->t, &closed, 5000));
	tctx_done(&w->t);
}

typedef struct outcome {
	bool done;
	int calls;
	bool ok;
	char *reason;
	json_t *evidence;
} outcome;

static void outcome_cb(void *arg, const ws_deploy_result *r)
{
	outcome *o = arg;
	o->done = true;
	o->calls++;
	o->ok = r->ok;
	o->reason = strdup(r->reason);
	o->evidence = json_incref((json_t *)r->evidence);
}

static void outcome_free(outcome *o)
{
	free(o->reason);
	json_decref(o->evidence);
	memset(o, 0, sizeof(*o));
}

static ws_executor *executor(world *w, const char *json)
{
	json_error_t err;
	json_t *settings = json_loads(json, 0, &err);
	assert_non_null(settings);
	ws_diags d;
	ws_diags_init(&d);
	ws_executor *e = ws_executor_new(&w->t.loop, w->out, "c1", settings, &d);
	if (!e)
		fail_msg("%s", d.len ? d.items[0].message : "?");
	ws_diags_free(&d);
	json_decref(settings);
	return e;
}

static ws_deploy_call call_for(const char *slug)
{
	ws_deploy_call c = {
		.rollout_id = "r1", .slug = slug, .cluster = "c1", .version = "17.0.4",
		.previous_version = "17.0.3", .artifact = "sha256:abc", .idempotency_key = "r1/acme/1",
		.poll_interval_ms = 20, .timeout_ms = 10000,
	};
	return c;
}

static void run(world *w, ws_executor *e, const ws_deploy_call *c, outcome *o)
{
	memset(o, 0, sizeof(*o));
	assert_int_equal(ws_executor_run(e, c, outcome_cb, o, NULL), 0);
	assert_false(o->done);   /* never before run() returns */
	assert_true(run_until(&w->t, &o->done, 20000));
	run_for(&w->t, 10);
	assert_int_equal(o->calls, 1);
}

typedef struct logbuf {
	bool done;
	char *body;
} logbuf;

static void log_cb(void *arg, const ws_outbound_res *r)
{
	logbuf *got = arg;
	got->body = strdup(r->body);
	got->done = true;
}

/* The requests the server received whose path starts with `prefix`. */
static json_t *server_log(world *w, const char *prefix)
{
	logbuf got = { 0 };
	ws_outbound_req req = { .url = testsrv_url(&srv, "/_log") };
	assert_int_equal(ws_outbound_request(w->out, &req, log_cb, &got, NULL), 0);
	assert_true(run_until(&w->t, &got.done, 5000));
	json_t *all = json_loads(got.body, 0, NULL);
	free(got.body);
	assert_non_null(all);
	json_t *out = json_array();
	size_t i;
	json_t *r;
	json_array_foreach(all, i, r) {
		const char *path = json_string_value(json_object_get(r, "path"));
		if (strncmp(path, prefix, strlen(prefix)) == 0)
			json_array_append(out, r);
	}
	json_decref(all);
	return out;
}

static const char *req_header(const json_t *req, const char *name)
{
	return json_string_value(json_object_get(json_object_get(req, "headers"), name));
}

static char *settings_json(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *settings_json(const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;
	va_start(ap, fmt);
	assert_true(vasprintf(&s, fmt, ap) > 0);
	va_end(ap);
	return s;
}

/* ---- templates ---------------------------------------------------------- */

static void test_expand(void **state)
{
	(void)state;
	const char *names[] = { "slug", "key", NULL };
	const char *values[] = { "acme", "r1/acme 1", NULL };
	char err[256];
	char *s = ws_executor_expand("http://x/{slug}?k={key}", names, values, true, err, sizeof(err));
	assert_string_equal(s, "http://x/acme?k=r1%2Facme%201");
	free(s);
	s = ws_executor_expand("{slug}-{key}", names, values, false, err, sizeof(err));
	assert_string_equal(s, "acme-r1/acme 1");
	free(s);
	assert_null(ws_executor_expand("x/{tenant}", names, values, false, err, sizeof(err)));
	assert_string_equal(err, "unknown placeholder \"{tenant}\" in \"x/{tenant}\" (a literal "
				 "brace is written {{ or }})");
	s = ws_executor_expand("echo ${{HOME}} {{{slug}}} }", names, values, false, err, sizeof(err));
	assert_string_equal(s, "echo ${HOME} {acme} }");
	free(s);
	assert_null(ws_executor_expand("x/{slug", names, values, false, err, sizeof(err)));
	assert_string_equal(err, "unclosed \"{\" in \"x/{slug\"");
}

static void test_settings_checked(void **state)
{
	(void)state;
	world w;
	world_init(&w, NULL);
	struct {
		const char *json, *message;
	} cases[] = {
		{ "{\"executor\": \"kubernetes\", \"api_url\": \"http://k\", \"namespace\": \"n\","
		  " \"deployment\": \"d\", \"container\": \"c\"}",
		  "cluster c1: kubernetes deploy settings need \"image\"" },
		{ "{\"executor\": \"kubernetes\", \"api_url\": \"http://k\", \"namespace\": \"{tenant}\","
		  " \"deployment\": \"d\", \"container\": \"c\", \"image\": \"i\"}",
		  "cluster c1: deploy \"namespace\": unknown placeholder \"{tenant}\" in \"{tenant}\""
		  " (a literal brace is written {{ or }})" },
		{ "{\"executor\": \"command\", \"argv\": []}",
		  "cluster c1: command deploy settings need a non-empty \"argv\"" },
		{ "{\"executor\": \"command\", \"argv\": [\"x\", 3]}", "cluster c1: argv[1] is not a string" },
		{ "{\"executor\": \"webhook\", \"url\": \"http://x\", \"status_url\": \"http://x/{bad}\"}",
		  "cluster c1: deploy \"status_url\": unknown placeholder \"{bad}\" in \"http://x/{bad}\""
		  " (a literal brace is written {{ or }})" },
		{ "{\"executor\": \"webhook\", \"url\": \"http://x\", \"timeout\": \"soon\"}",
		  "cluster c1: deploy \"timeout\" \"soon\" is not a duration" },
		{ "{\"executor\": \"ftp\"}", "cluster c1: unknown executor \"ftp\"" },
		{ "{}", "cluster c1: no deploy settings (\"executor\" is missing)" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *settings = json_loads(cases[i].json, 0, NULL);
		assert_non_null(settings);
		ws_diags d;
		ws_diags_init(&d);
		assert_null(ws_executor_new(&w.t.loop, w.out, "c1", settings, &d));
		assert_int_equal(d.len, 1);
		assert_string_equal(d.items[0].message, cases[i].message);
		ws_diags_free(&d);
		json_decref(settings);
	}
	world_done(&w);
}

/* ---- webhook ------------------------------------------------------------ */

static void test_webhook_accepted(void **state)
{
	(void)state;
	world w;
	world_init(&w, "127.0.0.0/8");
	char *js = settings_json("{\"executor\": \"webhook\", \"url\": \"%s\", \"token_env\": "
				 "\"WS_TEST_DEPLOY_TOKEN\"}", testsrv_url(&srv, "/wh/ok"));
	ws_executor *e = executor(&w, js);
	assert_string_equal(ws_executor_kind(e), "webhook");
	ws_deploy_call c = call_for("acme");
	outcome o;
	run(&w, e, &c, &o);
	assert_true(o.ok);
	char expect[256];
	snprintf(expect, sizeof(expect), "webhook POST %s accepted the deploy (HTTP 202)",
		 testsrv_url(&srv, "/wh/ok"));
	assert_string_equal(o.reason, expect);
	json_t *reqs = json_object_get(o.evidence, "requests");
	assert_int_equal(json_array_size(reqs), 1);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(reqs, 0), "status")), 202);
	assert_string_equal(json_string_value(json_object_get(o.evidence, "executor")), "webhook");
	/* What the deployer received. */
	json_t *log = server_log(&w, "/wh/ok");
	assert_int_equal(json_array_size(log), 1);
	json_t *r = json_array_get(log, 0);
	assert_string_equal(json_string_value(json_object_get(r, "method")), "POST");
	assert_string_equal(req_header(r, "authorization"), "Bearer s3cret");
	assert_string_equal(req_header(r, "idempotency-key"), "r1/acme/1");
	assert_string_equal(req_header(r, "content-type"), "application/json");
	json_t *body = json_loads(json_string_value(json_object_get(r, "body")), 0, NULL);
	json_t *want = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:b}", "rollout", "r1",
				 "tenant", "acme", "cluster", "c1", "version", "17.0.4",
				 "previous_version", "17.0.3", "artifact", "sha256:abc",
				 "idempotency_key", "r1/acme/1", "rollback", 0);
	assert_true(json_equal(body, want));
	json_decref(want);
	json_decref(body);
	json_decref(log);
	/* A rollback without a previous version. */
	c.rollback = true;
	c.previous_version = NULL;
	c.idempotency_key = "r1/acme/2";
	outcome_free(&o);
	run(&w, e, &c, &o);
	assert_true(o.ok);
	log = server_log(&w, "/wh/ok");
	body = json_loads(json_string_value(json_object_get(json_array_get(log, 1), "body")), 0, NULL);
	assert_true(json_is_true(json_object_get(body, "rollback")));
	assert_true(json_is_null(json_object_get(body, "previous_version")));
	assert_string_equal(req_header(json_array_get(log, 1), "idempotency-key"), "r1/acme/2");
	json_decref(body);
	json_decref(log);
	outcome_free(&o);
	ws_executor_free(e);
	free(js);
	world_done(&w);
}

static void test_webhook_failures(void **state)
{
	(void)state;
	world w;
	world_init(&w, "127.0.0.0/8");
	ws_deploy_call c = call_for("acme");
	outcome o;
	char expect[512];
	/* HTTP error: the body is quoted on one line. */
	char *js = settings_json("{\"executor\": \"webhook\", \"url\": \"%s\"}", testsrv_url(&srv, "/wh/fail"));
	ws_executor *e = executor(&w, js);
	run(&w, e, &c, &o);
	assert_false(o.ok);
	snprintf(expect, sizeof(expect), "webhook POST %s answered HTTP 500: boom second line",
		 testsrv_url(&srv, "/wh/fail"));
	assert_string_equal(o.reason, expect);
	outcome_free(&o);
	ws_executor_free(e);
	free(js);
	/* Missing token: no call at all. */
	js = settings_json("{\"executor\": \"webhook\", \"url\": \"%s\", \"token_env\": \"WS_TEST_NO_SUCH_TOKEN\"}",
			   testsrv_url(&srv, "/wh/accept"));
	e = executor(&w, js);
	run(&w, e, &c, &o);
	assert_false(o.ok);
	assert_string_equal(o.reason, "cluster c1: the environment variable WS_TEST_NO_SUCH_TOKEN "
				      "(token_env) is not set; no call was made");
	json_t *log = server_log(&w, "/wh/accept");
	assert_int_equal(json_array_size(log), 0);
	json_decref(log);
	outcome_free(&o);
	ws_executor_free(e);
	free(js);
	world_done(&w);
	/* Refused address (loopback not allowed). */
	world_init(&w, NULL);
	js = settings_json("{\"executor\": \"webhook\", \"url\": \"%s\"}", testsrv_url(&srv, "/wh/accept"));
	e = executor(&w, js);
	run(&w, e, &c, &o);
	assert_false(o.ok);
	snprintf(expect, sizeof(expect), "webhook POST %s: refused address 127.0.0.1 (loopback "
		 "address not in the allow list)", testsrv_url(&srv, "/wh/accept"));
	assert_string_equal(o.reason, expect);
	outcome_free(&o);
	ws_executor_free(e);
	free(js);
	world_done(&w);
}

static void test_webhook_status_polling(void **state)
{
	(void)state;
	world w;
	world_init(&w, "127.0.0.0/8");
	struct {
		const char *slug;
		bool ok;
		const char *reason_fmt;   /* %s = the status URL */
	} cases[] = {
		{ "acme", true, "deployed: status %s says done" },
		{ "beta", false, "deploy failed: status %s says failed: migration 42 failed" },
		{ "gamma", false, "status GET %s: the answer is not JSON ('[' or '{' expected near '<' "
				  "at line 1): \"<html>oops</html>\"" },
		{ "delta", false, "status GET %s: expected a string \"state\", got another type" },
		{ "err", false, "status GET %s answered HTTP 503: down" },
	};
	char *js = settings_json("{\"executor\": \"webhook\", \"url\": \"%s\", \"status_url\": "
				 "\"http://127.0.0.1:%d/st/{slug}?key={key}&v={version}\"}",
				 testsrv_url(&srv, "/wh/accept"), srv.port);
	ws_executor *e = executor(&w, js);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ws_deploy_call c = call_for(cases[i].slug);
		outcome o;
		run(&w, e, &c, &o);
		char url[256], expect[512];
		snprintf(url, sizeof(url), "http://127.0.0.1:%d/st/%s?key=r1%%2Facme%%2F1&v=17.0.4",
			 srv.port, cases[i].slug);
		snprintf(expect, sizeof(expect), cases[i].reason_fmt, url);
		if (o.ok != cases[i].ok || strcmp(o.reason, expect) != 0)
			fail_msg("%s: got %d \"%s\"", cases[i].slug, o.ok, o.reason);
		outcome_free(&o);
	}
	/* acme: POST, then running, running, done; states in the evidence. */
	json_t *log = server_log(&w, "/st/acme");
	assert_int_equal(json_array_size(log), 3);
	assert_string_equal(req_header(json_array_get(log, 0), "idempotency-key"), "r1/acme/1");
	json_decref(log);
	/* Still running at the deadline. */
	ws_deploy_call c = call_for("slow");
	c.timeout_ms = 1000;
	outcome o;
	run(&w, e, &c, &o);
	assert_false(o.ok);
	assert_string_equal(o.reason, "webhook deploy timed out after 1000 ms; last state: running");
	json_t *reqs = json_object_get(o.evidence, "requests");
	assert_true(json_array_size(reqs) >= 3);
	assert_string_equal(json_string_value(json_object_get(json_array_get(reqs, 1), "state")), "running");
	outcome_free(&o);
	ws_executor_free(e);
	free(js);
	/* A status URL that never answers: the GET has what remains of the
	 * deadline, and whichever of its time-out and the deadline comes
	 * first, the job fails with the deadline (not "GET ...: timed out
	 * after 3 ms", as once in CI).  Several times, as the order varies. */
	js = settings_json("{\"executor\": \"webhook\", \"url\": \"%s\", \"status_url\": "
			   "\"http://127.0.0.1:%d/hang\"}", testsrv_url(&srv, "/wh/accept"), srv.port);
	e = executor(&w, js);
	for (int i = 0; i < 4; i++) {
		c = call_for("acme");
		c.timeout_ms = 150 + 7 * i;
		run(&w, e, &c, &o);
		assert_false(o.ok);
		char expect[64];
		snprintf(expect, sizeof(expect), "webhook deploy timed out after %d ms", 150 + 7 * i);
		assert_string_equal(o.reason, expect);
		outcome_free(&o);
	}
	ws_executor_free(e);
	free(js);
	world_done(&w);
}

/* ---- kubernetes --------------------------------------------------------- */

static char *k8s_settings(const char *ns)
{
	return settings_json("{\"executor\": \"kubernetes\", \"api_url\": \"http://127.0.0.1:%d/\","
			     " \"namespace\": \"%s\", \"deployment\": \"erp\", \"container\": \"erp\","
			     " \"image\": \"registry.example/erp:{version}\", \"token_env\": "
			     "\"WS_TEST_DEPLOY_TOKEN\"}", srv.port, ns);
}

static void test_kubernetes_rollout(void **state)
{
	(void)state;
	world w;
	world_init(&w, "127.0.0.0/8");
	char *js = k8s_settings("t-{slug}");
	ws_executor *e = executor(&w, js);
	ws_deploy_call c = call_for("acme");
	outcome o;
	run(&w, e, &c, &o);
	char url[256], expect[512];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/apis/apps/v1/namespaces/t-acme/deployments/erp",
		 srv.port);
	snprintf(expect, sizeof(expect), "deployed: %s rolled out (generation 5 observed 5, updated 3/3, "
		 "available 3/3, total 3)", url);
	if (!o.ok || strcmp(o.reason, expect) != 0)
		fail_msg("got %d \"%s\"", o.ok, o.reason);
	/* PATCH then three polls: observed generation behind, then a surplus
	 * pod and one unavailable, then done. */
	json_t *reqs = json_object_get(o.evidence, "requests");
	assert_int_equal(json_array_size(reqs), 4);
	assert_string_equal(json_string_value(json_object_get(json_array_get(reqs, 0), "method")), "PATCH");
	json_t *log = server_log(&w, "/apis/apps/v1/namespaces/t-acme/");
	assert_int_equal(json_array_size(log), 4);
	json_t *patch = json_array_get(log, 0);
	assert_string_equal(json_string_value(json_object_get(patch, "method")), "PATCH");
	assert_string_equal(req_header(patch, "content-type"), "application/strategic-merge-patch+json");
	assert_string_equal(req_header(patch, "authorization"), "Bearer s3cret");
	assert_string_equal(req_header(patch, "idempotency-key"), "r1/acme/1");
	json_t *body = json_loads(json_string_value(json_object_get(patch, "body")), 0, NULL);
	json_t *want = json_loads("{\"spec\": {\"template\": {\"spec\": {\"containers\": "
				  "[{\"name\": \"erp\", \"image\": \"registry.example/erp:17.0.4\"}]}}}}", 0, NULL);
	assert_true(json_equal(body, want));
	json_decref(body);
	json_decref(want);
	assert_string_equal(json_string_value(json_object_get(json_array_get(log, 1), "method")), "GET");
	json_decref(log);
	outcome_free(&o);
	ws_executor_free(e);
	free(js);
	world_done(&w);
}

static void test_kubernetes_failures(void **state)
{
	(void)state;
	world w;
	world_init(&w, "127.0.0.0/8");
	struct {
		const char *ns;
		uint64_t timeout_ms;
		const char *reason_fmt;   /* %s = the deployment URL */
	} cases[] = {
		{ "t-deadline", 10000, "kubernetes deployment %s: progress deadline exceeded: "
				       "ReplicaSet erp-7 has timed out progressing." },
		{ "t-bad", 10000, "kubernetes GET %s: metadata.generation is not an integer" },
		{ "t-html", 10000, "kubernetes PATCH %s: the answer is not JSON ('[' or '{' expected "
				   "near '<' at line 1): \"<html>proxy error</html>\"" },
		{ "t-forbidden", 10000, "kubernetes PATCH %s answered HTTP 403: "
					"{\"kind\": \"Status\", \"message\": \"forbidden\"}" },
		{ "t-stuck", 2000, "kubernetes deploy timed out after 2000 ms; last state: generation 2 "
				  "observed 1, updated 0/3, available 3/3, total 3" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *js = k8s_settings(cases[i].ns);
		ws_executor *e = executor(&w, js);
		ws_deploy_call c = call_for("acme");
		c.timeout_ms = cases[i].timeout_ms;
		outcome o;
		run(&w, e, &c, &o);
		char url[256], expect[512];
		snprintf(url, sizeof(url), "http://127.0.0.1:%d/apis/apps/v1/namespaces/%s/deployments/erp",
			 srv.port, cases[i].ns);
		snprintf(expect, sizeof(expect), cases[i].reason_fmt, url);
		if (o.ok || strcmp(o.reason, expect) != 0)
			fail_msg("%s: got %d \"%s\"", cases[i].ns, o.ok, o.reason);
		outcome_free(&o);
		ws_executor_free(e);
		free(js);
	}
	/* Missing token: no call. */
	char *js = settings_json("{\"executor\": \"kubernetes\", \"api_url\": \"http://127.0.0.1:%d\","
				 " \"namespace\": \"t-none\", \"deployment\": \"erp\", \"container\": \"erp\","
				 " \"image\": \"i\", \"token_env\": \"WS_TEST_NO_SUCH_TOKEN\"}", srv.port);
	ws_executor *e = executor(&w, js);
	ws_deploy_call c = call_for("acme");
	outcome o;
	run(&w, e, &c, &o);
	assert_false(o.ok);
	assert_non_null(strstr(o.reason, "WS_TEST_NO_SUCH_TOKEN (token_env) is not set; no call was made"));
	json_t *log = server_log(&w, "/apis/apps/v1/namespaces/t-none/");
	assert_int_equal(json_array_size(log), 0);
	json_decref(log);
	outcome_free(&o);
	ws_executor_free(e);
	free(js);
	world_done(&w);
}

/* ---- command ------------------------------------------------------------ */

static ws_executor *command(world *w, const char *script)
{
	json_t *s = json_pack("{s:s, s:[s, s, s, s, s, s, s, s]}", "executor", "command", "argv", "sh",
			      "-c", script, "sh", "{slug}", "{version}", "{previous_version}", "{key}");
	char *text = json_dumps(s, 0);
	ws_executor *e = executor(w, text);
	free(text);
	json_decref(s);
	return e;
}

static void test_command_success_and_failure(void **state)
{
	(void)state;
	world w;
	world_init(&w, NULL);
	/* The service's own settings stay out of the command's environment;
	 * the rest (a deploy tool's credentials) goes through. */
	setenv("WAVESCHED_DATABASE_URL", "postgresql://ws:secret@db/ws", 1);
	setenv("WAVESCHED_IDEMPOTENCY_KEY", "stale", 1);
	ws_executor *e = command(&w, "echo deploying $1 $2 from $3 key $4; "
				     "echo env=$WAVESCHED_IDEMPOTENCY_KEY >&2; "
				     "echo db=${{WAVESCHED_DATABASE_URL-unset}} tok=$WS_TEST_DEPLOY_TOKEN");
	ws_deploy_call c = call_for("acme");
	outcome o;
	run(&w, e, &c, &o);
	assert_true(o.ok);
	assert_string_equal(o.reason, "command sh exited with status 0");
	const char *out = json_string_value(json_object_get(o.evidence, "output"));
	assert_non_null(strstr(out, "deploying acme 17.0.4 from 17.0.3 key r1/acme/1\n"));
	assert_non_null(strstr(out, "env=r1/acme/1\n"));
	assert_non_null(strstr(out, "db=unset tok=s3cret\n"));
	unsetenv("WAVESCHED_DATABASE_URL");
	unsetenv("WAVESCHED_IDEMPOTENCY_KEY");
	assert_true(json_is_false(json_object_get(o.evidence, "output_truncated")));
	assert_int_equal(json_integer_value(json_object_get(o.evidence, "exit_status")), 0);
	assert_string_equal(json_string_value(json_array_get(json_object_get(o.evidence, "argv"), 4)), "acme");
	outcome_free(&o);
	ws_executor_free(e);
	/* Exit status 3: the end of the output in the reason. */
	e = command(&w, "echo 'migration failed:' >&2; echo 'table locked'; exit 3");
	run(&w, e, &c, &o);
	assert_false(o.ok);
	assert_non_null(strstr(o.reason, "command sh exited with status 3: "));
	assert_non_null(strstr(o.reason, "table locked"));
	assert_int_not_equal(o.reason[strlen(o.reason) - 1], ' ');   /* no final newline kept */
	assert_int_equal(json_integer_value(json_object_get(o.evidence, "exit_status")), 3);
	outcome_free(&o);
	ws_executor_free(e);
	/* A program that does not exist. */
	e = executor(&w, "{\"executor\": \"command\", \"argv\": [\"/nonexistent/deployer\", \"{slug}\"]}");
	run(&w, e, &c, &o);
	assert_false(o.ok);
	assert_string_equal(o.reason, "command /nonexistent/deployer: cannot start: no such file or directory");
	outcome_free(&o);
	ws_executor_free(e);
	world_done(&w);
}

static void test_command_output_cap(void **state)
{
	(void)state;
	world w;
	world_init(&w, NULL);
	ws_executor *e = command(&w, "head -c 200000 /dev/zero | tr '\\0' x");
	ws_deploy_call c = call_for("acme");
	outcome o;
	run(&w, e, &c, &o);
	assert_true(o.ok);
	assert_int_equal(strlen(json_string_value(json_object_get(o.evidence, "output"))),
			 WS_EXECUTOR_MAX_OUTPUT);
	assert_true(json_is_true(json_object_get(o.evidence, "output_truncated")));
	outcome_free(&o);
	ws_executor_free(e);
	world_done(&w);
}

/* Output that is not UTF-8 -- a Latin-1 message, a NUL, a character cut by
 * the reason's tail -- still ends in the evidence and the reason, as valid
 * UTF-8 (U+FFFD for what is not), instead of being dropped by jansson. */
static void test_command_output_not_utf8(void **state)
{
	(void)state;
	world w;
	world_init(&w, NULL);
	ws_executor *e = command(&w, "printf 'caf\\351 \\000 ok\\n\\342\\202\\254'; "
				     "printf 'y%.0s' $(seq 199); exit 4");
	ws_deploy_call c = call_for("acme");
	outcome o;
	run(&w, e, &c, &o);
	assert_false(o.ok);
	char ys[200];
	memset(ys, 'y', 199);
	ys[199] = '\0';
	char expect[512];
	snprintf(expect, sizeof(expect), "command sh exited with status 4: %s", ys);
	assert_string_equal(o.reason, expect);
	assert_string_equal(json_string_value(json_object_get(o.evidence, "reason")), expect);
	snprintf(expect, sizeof(expect), "caf\xEF\xBF\xBD \xEF\xBF\xBD ok\n\xE2\x82\xAC%s", ys);
	assert_string_equal(json_string_value(json_object_get(o.evidence, "output")), expect);
	outcome_free(&o);
	ws_executor_free(e);
	world_done(&w);
}

/* Alive and not a zombie waiting to be reaped. */
static bool process_running(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *paren = strrchr(buf, ')');
	return paren && paren[1] == ' ' && paren[2] != 'Z' && paren[2] != 'X';
}

static void test_command_timeout_kills_group(void **state)
{
	(void)state;
	world w;
	world_init(&w, NULL);
	char pidfile[] = "/tmp/wsexecXXXXXX";
	int fd = mkstemp(pidfile);
	assert_true(fd >= 0);
	close(fd);
	char script[256];
	/* A grandchild that would outlive its parent if only the parent died. */
	snprintf(script, sizeof(script), "sleep 30 & echo $! > %s; wait", pidfile);
	ws_executor *e = command(&w, script);
	ws_deploy_call c = call_for("acme");
	c.timeout_ms = 3000;   /* room for the shell to write the pid first */
	outcome o;
	run(&w, e, &c, &o);
	assert_false(o.ok);
	assert_string_equal(o.reason, "command timed out after 3000 ms; its process group was killed");
	assert_int_equal(json_integer_value(json_object_get(o.evidence, "signal")), SIGKILL);
	FILE *f = fopen(pidfile, "r");
	assert_non_null(f);
	int grandchild = 0;
	assert_int_equal(fscanf(f, "%d", &grandchild), 1);
	fclose(f);
	unlink(pidfile);
	assert_true(grandchild > 0);
	for (int i = 0; i < 100 && process_running(grandchild); i++)
		run_for(&w.t, 10);
	assert_false(process_running(grandchild));
	outcome_free(&o);
	ws_executor_free(e);
	world_done(&w);
}

static void test_cancel(void **state)
{
	(void)state;
	world w;
	world_init(&w, "127.0.0.0/8");
	ws_executor *e = command(&w, "sleep 30");
	ws_deploy_call c = call_for("acme");
	outcome o = { 0 };
	ws_deploy_job *job = NULL;
	assert_int_equal(ws_executor_run(e, &c, outcome_cb, &o, &job), 0);
	/* The executor may go; the job keeps what it needs. */
	ws_executor_free(e);
	run_for(&w.t, 100);
	ws_deploy_job_cancel(job);
	assert_false(o.done);
	assert_true(run_until(&w.t, &o.done, 5000));
	assert_false(o.ok);
	assert_string_equal(o.reason, "cancelled");
	outcome_free(&o);
	/* A webhook job waiting on its status URL. */
	char *js = settings_json("{\"executor\": \"webhook\", \"url\": \"%s\", \"status_url\": "
				 "\"http://127.0.0.1:%d/hang\"}", testsrv_url(&srv, "/wh/accept"), srv.port);
	e = executor(&w, js);
	assert_int_equal(ws_executor_run(e, &c, outcome_cb, &o, &job), 0);
	run_for(&w.t, 200);
	ws_deploy_job_cancel(job);
	assert_true(run_until(&w.t, &o.done, 5000));
	run_for(&w.t, 10);
	assert_int_equal(o.calls, 1);
	assert_string_equal(o.reason, "cancelled");
	outcome_free(&o);
	ws_executor_free(e);
	free(js);
	/* Missing fields of the call are refused at once. */
	ws_deploy_call bad = call_for("acme");
	bad.idempotency_key = NULL;
	e = command(&w, "true");
	assert_int_equal(ws_executor_run(e, &bad, outcome_cb, &o, NULL), WS_EINVAL);
	ws_executor_free(e);
	world_done(&w);
}

/* ---- gitops --------------------------------------------------------------
 * A real bare repository in a temporary directory and the real `git`; the
 * tenant's health endpoint and the Argo CD status are the scripted server. */

static char git_tmp[64];

/* Runs a shell command (set-up and checks of the test, never the code
 * under test) and returns its stdout without the final newlines. */
static char *sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *sh(const char *fmt, ...)
{
	char *cmd = NULL;
	va_list ap;
	va_start(ap, fmt);
	assert_true(vasprintf(&cmd, fmt, ap) > 0);
	va_end(ap);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	char *out = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&out, &len);
	char buf[4096];
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), p)) > 0)
		fwrite(buf, 1, n, m);
	int st = pclose(p);
	fclose(m);
	if (st != 0)
		fail_msg("%s: exit %d: %s", cmd, st, out);
	free(cmd);
	while (len > 0 && out[len - 1] == '\n')
		out[--len] = '\0';
	return out;
}

static int commits(const char *repo, const char *branch)
{
	char *o = sh("git --git-dir=%s rev-list --count %s", repo, branch);
	int v = atoi(o);
	free(o);
	return v;
}

/* A bare repository with one commit on main; returns its path (static). */
static const char *git_repo(const char *name)
{
	static char path[128];
	snprintf(path, sizeof(path), "%s/%s.git", git_tmp, name);
	free(sh("set -e; git init -q --bare -b main %s; w=%s/work-%s; git init -q -b main $w;"
		"echo '# tenants' > $w/README; git -C $w add README;"
		"git -C $w -c user.name=t -c user.email=t@t commit -q -m init;"
		"git -C $w push -q %s main 2>&1", path, git_tmp, name, path));
	return path;
}

static int gitops_setup(void **state)
{
	(void)state;
	snprintf(git_tmp, sizeof(git_tmp), "/tmp/wsgitopsXXXXXX");
	assert_non_null(mkdtemp(git_tmp));
	char dir[128];
	snprintf(dir, sizeof(dir), "%s/state", git_tmp);
	ws_executor_set_state_dir(dir);
	return 0;
}

static int gitops_teardown(void **state)
{
	(void)state;
	free(sh("rm -rf %s", git_tmp));
	ws_executor_set_state_dir(NULL);
	return 0;
}

static ws_executor *gitops(world *w, const char *repo, const char *extra)
{
	char *js = settings_json("{\"executor\": \"gitops\", \"repo\": \"%s\", "
				 "\"path\": \"tenants/{cluster}/{slug}.yaml\"%s}", repo, extra ? extra : "");
	ws_executor *e = executor(w, js);
	free(js);
	return e;
}

static ws_deploy_call gitops_call(const char *slug, const char *health_path, const char *key)
{
	ws_deploy_call c = call_for(slug);
	c.idempotency_key = key;
	c.wave = "wave 1";
	c.health_url = health_path ? testsrv_url(&srv, health_path) : NULL;
	return c;
}

static void test_gitops_commit_sync_and_key(void **state)
{
	(void)state;
	world w;
	world_init(&w, "127.0.0.0/8");
	const char *repo = git_repo("one");
	ws_executor *e = gitops(&w, repo, NULL);
	ws_deploy_call c = gitops_call("acme", "/gh/acme", "r1/acme/1");
	outcome o;
	run(&w, e, &c, &o);
	if (!o.ok)
		fail_msg("%s", o.reason);
	const char *commit = json_string_value(json_object_get(o.evidence, "commit"));
	char *tip = sh("git --git-dir=%s rev-parse main", repo);
	assert_string_equal(commit, tip);
	char expect[512];
	snprintf(expect, sizeof(expect), "deployed: commit %s is in %s main and %s reports version 17.0.4",
		 tip, repo, testsrv_url(&srv, "/gh/acme"));
	assert_string_equal(o.reason, expect);
	assert_true(json_is_true(json_object_get(o.evidence, "committed")));
	assert_string_equal(json_string_value(json_object_get(o.evidence, "path")), "tenants/c1/acme.yaml");
	/* The health endpoint was polled through "not yet" (503, old version). */
	assert_int_equal(json_array_size(json_object_get(o.evidence, "requests")), 3);
	/* The commit: subject, trailers, the file, the fixed identity. */
	char *msg = sh("git --git-dir=%s log -1 '--format=%%s%%n%%(trailers:only,unfold)' main", repo);
	assert_string_equal(msg, "wavesched: deploy acme 17.0.4\nWavesched-Rollout: r1\n"
			    "Wavesched-Wave: wave 1\nIdempotency-Key: r1/acme/1");
	free(msg);
	char *file = sh("git --git-dir=%s show main:tenants/c1/acme.yaml | python3 -c 'import json,sys;"
			"d=json.load(sys.stdin);print(d[\"tenant\"],d[\"cluster\"],d[\"version\"],"
			"d[\"previous_version\"],d[\"artifact\"],d[\"rollout\"],d[\"wave\"],"
			"d[\"idempotency_key\"],d[\"rollback\"])'", repo);
	assert_string_equal(file, "acme c1 17.0.4 17.0.3 sha256:abc r1 wave 1 r1/acme/1 False");
	free(file);
	char *who = sh("git --git-dir=%s log -1 --format=%%an/%%ae/%%cn main", repo);
	assert_string_equal(who, "wavesched/wavesched@localhost/wavesched");
	free(who);
	assert_int_equal(commits(repo, "main"), 2);
	outcome_free(&o);

	/* The same key again (a leader restarted after the push): no second
	 * commit, straight to the sync. */
	c.health_url = testsrv_url(&srv, "/gh/new");
	run(&w, e, &c, &o);
	assert_true(o.ok);
	assert_true(json_is_true(json_object_get(o.evidence, "found_by_key")));
	assert_true(json_is_false(json_object_get(o.evidence, "committed")));
	assert_string_equal(json_string_value(json_object_get(o.evidence, "commit")), tip);
	assert_int_equal(commits(repo, "main"), 2);
	outcome_free(&o);

	/* A key that is a prefix of a key in the history is another key. */
	c.idempotency_key = "r1/acme/";
	run(&w, e, &c, &o);
	assert_true(o.ok);
	assert_null(json_object_get(o.evidence, "found_by_key"));
	assert_int_equal(commits(repo, "main"), 3);
	outcome_free(&o);

	/* History rewritten without trailers (a squash): the file already
	 * says this, so no empty commit either. */
	free(sh("git --git-dir=%s update-ref refs/heads/squashed "
		"$(git --git-dir=%s -c user.name=t -c user.email=t@t commit-tree main^{tree} -m squashed)",
		repo, repo));
	ws_executor *e2 = gitops(&w, repo, ", \"branch\": \"squashed\"");
	run(&w, e2, &c, &o);
	assert_true(o.ok);
	assert_string_equal(json_string_value(json_object_get(o.evidence, "how")),
			    "the file already held this content");
	assert_int_equal(commits(repo, "squashed"), 1);
	outcome_free(&o);
	ws_executor_free(e2);

	/* A rollback goes the same way, with its own subject. */
	c = gitops_call("acme", "/gh/old", "r1/acme/rb1");
	c.version = "17.0.3";
	c.previous_version = "17.0.4";
	c.rollback = true;
	run(&w, e, &c, &o);
	assert_true(o.ok);
	char *subject = sh("git --git-dir=%s log -1 --format=%%s main", repo);
	assert_string_equal(subject, "wavesched: roll back acme to 17.0.3");
	free(subject);
	outcome_free(&o);
	free(tip);
	ws_executor_free(e);
	world_done(&w);
}

/* Many tenants at once on one repository: the queue serialises the
 * sequences of one clone; a second clone of the same repository (spelled
 * as a file:// URL) races them, and a refused push starts again from the
 * new tip.  Every deploy ends with exactly one commit. */
static void test_gitops_concurrent(void **state)
{
	(void)state;
	world w;
	world_init(&w, "127.0.0.0/8");
	const char *repo = git_repo("many");
	char url[160];
	snprintf(url, sizeof(url), "file://%s", repo);
	ws_executor *e1 = gitops(&w, repo, NULL);
	ws_executor *e2 = gitops(&w, url, NULL);
	enum { N = 6 };
	outcome o[N];
	memset(o, 0, sizeof(o));
	char slugs[N][16], keys[N][32];
	for (int i = 0; i < N; i++) {
		snprintf(slugs[i], sizeof(slugs[i]), "t%d", i);
		snprintf(keys[i], sizeof(keys[i]), "r1/t%d/1", i);
		ws_deploy_call c = gitops_call(slugs[i], "/gh/new", keys[i]);
		assert_int_equal(ws_executor_run(i % 2 ? e2 : e1, &c, outcome_cb, &o[i], NULL), 0);
	}
	for (int i = 0; i < N; i++) {
		assert_true(run_until(&w.t, &o[i].done, 30000));
		if (!o[i].ok)
			fail_msg("%s: %s", slugs[i], o[i].reason);
	}
	run_for(&w.t, 10);
	assert_int_equal(commits(repo, "main"), 1 + N);
	char *n = sh("git --git-dir=%s log '--format=%%(trailers:key=Idempotency-Key,valueonly)' "
		     "main | sort -u | grep -cx 'r1/t[0-9]/1'", repo);
	assert_string_equal(n, "6");
	free(n);
	for (int i = 0; i < N; i++) {
		assert_int_equal(o[i].calls, 1);
		outcome_free(&o[i]);
	}
	ws_executor_free(e1);
	ws_executor_free(e2);
	world_done(&w);
}

static void expect_gitops_failure(world *w, ws_executor *e, const ws_deploy_call *c,
				  const char *prefix, const char *contains)
{
	outcome o;
	run(w, e, c, &o);
	assert_false(o.ok);
	if (strncmp(o.reason, prefix, strlen(prefix)) != 0 || (contains && !strstr(o.reason, contains)))
		fail_msg("reason \"%s\": expected to start with \"%s\" and contain \"%s\"", o.reason,
			 prefix, contains ? contains : "");
	assert_string_equal(json_string_value(json_object_get(o.evidence, "reason")), o.reason);
	outcome_free(&o);
}

static void test_gitops_failures(void **state)
{
	(void)state;
	world w;
	world_init(&w, "127.0.0.0/8");
	const char *repo = git_repo("fail");
	char missing[160], prefix[256];
	snprintf(missing, sizeof(missing), "%s/nonexistent.git", git_tmp);
	ws_deploy_call c = gitops_call("acme", "/gh/new", "r2/acme/1");

	ws_executor *e = gitops(&w, missing, NULL);
	snprintf(prefix, sizeof(prefix), "gitops fetch: %s: git exited with status 128: ", missing);
	expect_gitops_failure(&w, e, &c, prefix, "does not appear to be a git repository");
	ws_executor_free(e);

	e = gitops(&w, repo, ", \"branch\": \"nope\"");
	snprintf(prefix, sizeof(prefix), "gitops fetch: %s: git exited with status 128: ", repo);
	expect_gitops_failure(&w, e, &c, prefix, "couldn't find remote ref refs/heads/nope");
	ws_executor_free(e);

	/* Nothing is committed when the sync could not be observed. */
	e = gitops(&w, repo, NULL);
	ws_deploy_call nohealth = gitops_call("acme", NULL, "r2/acme/1");
	expect_gitops_failure(&w, e, &nohealth, "gitops: tenant acme has no health_url to observe "
			      "the sync (sync: health); nothing was committed", NULL);
	assert_int_equal(commits(repo, "main"), 1);

	/* The remote refuses the push. */
	free(sh("printf '#!/bin/sh\\necho frozen by the change board >&2\\nexit 1\\n' > %s/hooks/pre-receive;"
		"chmod +x %s/hooks/pre-receive", repo, repo));
	snprintf(prefix, sizeof(prefix), "gitops push: %s main: git exited with status 1: ", repo);
	expect_gitops_failure(&w, e, &c, prefix, "pre-receive hook declined");
	free(sh("rm %s/hooks/pre-receive", repo));
	assert_int_equal(commits(repo, "main"), 1);

	/* The sync is never observed: the time-out names it. */
	ws_deploy_call slow = gitops_call("acme", "/gh/old", "r2/acme/2");
	slow.timeout_ms = 3000;
	expect_gitops_failure(&w, e, &slow, "gitops sync: timed out after 3000 ms waiting for commit ",
			      "; last state: version 17.0.3");
	/* A health answer that cannot tell the version fails at once. */
	ws_deploy_call html = gitops_call("acme", "/gh/html", "r2/acme/2");
	snprintf(prefix, sizeof(prefix), "gitops sync GET %s: the answer is not JSON",
		 testsrv_url(&srv, "/gh/html"));
	expect_gitops_failure(&w, e, &html, prefix, NULL);
	ws_deploy_call nov = gitops_call("acme", "/gh/noversion", "r2/acme/2");
	snprintf(prefix, sizeof(prefix), "gitops sync: GET %s: expected a string \"version\" in the "
		 "health answer, it is missing", testsrv_url(&srv, "/gh/noversion"));
	expect_gitops_failure(&w, e, &nov, prefix, NULL);
	/* The key r2/acme/2, three times: one commit. */
	assert_int_equal(commits(repo, "main"), 2);
	ws_executor_free(e);

	/* Argo CD status: a revision that does not contain our commit is not
	 * a sync; a document without the fields fails. */
	char *js = settings_json(", \"sync\": \"status_url\", \"status_url\": \"http://127.0.0.1:%d/argo/{slug}\"",
				 srv.port);
	e = gitops(&w, repo, js);
	free(js);
	ws_deploy_call argo = gitops_call("other", NULL, "r2/other/1");
	/* The last state named is the last concluded one, even when the
	 * time-out comes while a later answer's revision is being checked. */
	argo.timeout_ms = 3000;
	expect_gitops_failure(&w, e, &argo, "gitops sync: timed out after 3000 ms waiting for commit ",
			      "last state: revision 0123456789abcdef0123456789abcdef01234567 does not "
			      "contain commit");
	argo = gitops_call("bad", NULL, "r2/bad/1");
	snprintf(prefix, sizeof(prefix), "gitops sync: GET %s: expected an Argo CD Application",
		 testsrv_url(&srv, "/argo/bad"));
	expect_gitops_failure(&w, e, &argo, prefix, NULL);
	ws_executor_free(e);
	world_done(&w);
}

/* The queue of one clone: a deploy waiting behind a slow push times out
 * naming the wait, one cancelled while waiting leaves the queue, the slow
 * push itself is killed at its time-out -- with the hook it waits for, its
 * process group -- and the clone serves the next deploy as if nothing had
 * happened. */
static void test_gitops_queue_and_kill(void **state)
{
	(void)state;
	world w;
	world_init(&w, "127.0.0.0/8");
	const char *repo = git_repo("slow");
	free(sh("printf '#!/bin/sh\\necho $$ > %s/hook.pid\\nexec sleep 5\\n' > %s/hooks/pre-receive;"
		"chmod +x %s/hooks/pre-receive", git_tmp, repo, repo));
	ws_executor *e = gitops(&w, repo, NULL);
	ws_deploy_call c1 = gitops_call("t1", "/gh/new", "r3/t1/1");
	ws_deploy_call c2 = gitops_call("t2", "/gh/new", "r3/t2/1");
	ws_deploy_call c3 = gitops_call("t3", "/gh/new", "r3/t3/1");
	c1.timeout_ms = 3000;
	c2.timeout_ms = 1500;
	outcome o1 = { 0 }, o2 = { 0 }, o3 = { 0 };
	ws_deploy_job *j3 = NULL;
	assert_int_equal(ws_executor_run(e, &c1, outcome_cb, &o1, NULL), 0);
	assert_int_equal(ws_executor_run(e, &c2, outcome_cb, &o2, NULL), 0);
	assert_int_equal(ws_executor_run(e, &c3, outcome_cb, &o3, &j3), 0);
	run_for(&w.t, 100);
	assert_false(o3.done);
	ws_deploy_job_cancel(j3);
	assert_true(run_until(&w.t, &o3.done, 5000));
	assert_string_equal(o3.reason, "cancelled");
	assert_true(run_until(&w.t, &o2.done, 5000));
	char expect[512];
	snprintf(expect, sizeof(expect), "gitops clone: timed out after 1500 ms waiting for another "
		 "deploy to %s main", repo);
	assert_string_equal(o2.reason, expect);
	assert_false(o1.done);
	assert_true(run_until(&w.t, &o1.done, 5000));
	assert_string_equal(o1.reason, "gitops push: timed out after 3000 ms; git was killed");
	json_t *git = json_object_get(o1.evidence, "git");
	json_t *last = json_array_get(git, json_array_size(git) - 1);
	assert_string_equal(json_string_value(json_object_get(last, "step")), "push");
	assert_int_equal(json_integer_value(json_object_get(last, "signal")), SIGKILL);
	/* No process of the push is left: the hook's sleep went with it. */
	char *pid = sh("cat %s/hook.pid", git_tmp);
	for (int i = 0; i < 100 && process_running(atoi(pid)); i++)
		run_for(&w.t, 10);
	assert_false(process_running(atoi(pid)));
	free(pid);
	assert_int_equal(commits(repo, "main"), 1);
	run_for(&w.t, 10);
	assert_int_equal(o1.calls + o2.calls + o3.calls, 3);
	outcome_free(&o1);
	outcome_free(&o2);
	outcome_free(&o3);

	free(sh("rm %s/hooks/pre-receive", repo));
	ws_deploy_call c4 = gitops_call("t4", "/gh/new", "r3/t4/1");
	outcome o4;
	run(&w, e, &c4, &o4);
	if (!o4.ok)
		fail_msg("%s", o4.reason);
	assert_int_equal(commits(repo, "main"), 2);
	outcome_free(&o4);
	ws_executor_free(e);
	world_done(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_expand),
		cmocka_unit_test(test_settings_checked),
		cmocka_unit_test(test_webhook_accepted),
		cmocka_unit_test(test_webhook_failures),
		cmocka_unit_test(test_webhook_status_polling),
		cmocka_unit_test(test_kubernetes_rollout),
		cmocka_unit_test(test_kubernetes_failures),
		cmocka_unit_test(test_command_success_and_failure),
		cmocka_unit_test(test_command_output_cap),
		cmocka_unit_test(test_command_output_not_utf8),
		cmocka_unit_test(test_command_timeout_kills_group),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test_setup_teardown(test_gitops_commit_sync_and_key, gitops_setup, gitops_teardown),
		cmocka_unit_test_setup_teardown(test_gitops_concurrent, gitops_setup, gitops_teardown),
		cmocka_unit_test_setup_teardown(test_gitops_failures, gitops_setup, gitops_teardown),
		cmocka_unit_test_setup_teardown(test_gitops_queue_and_kill, gitops_setup, gitops_teardown),
	};
	if (getenv("WS_TEST_FILTER"))
		cmocka_set_test_filter(getenv("WS_TEST_FILTER"));
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
