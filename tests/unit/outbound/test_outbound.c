/*
 * test_outbound.c - ws_outbound against a real HTTP server in another
 * process (testsrv.py): the address policy, schemes and redirects, time-outs,
 * the size cap, cancellation, closing with calls in flight, concurrency.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include "evloop.h"
#include "testsrv.h"
#include "wavesched/outbound.h"

static testsrv srv;

static int group_setup(void **state)
{
	(void)state;
	testsrv_start(&srv, NULL);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	testsrv_stop(&srv);
	return 0;
}

/* ---- helpers ------------------------------------------------------------ */

typedef struct got {
	bool done;
	int calls;
	ws_outbound_reason reason;
	int code;
	long status;
	char *body;
	size_t len;
	char *error;
	uint64_t latency_us;
	int redirects;
} got;

static void got_cb(void *arg, const ws_outbound_res *r)
{
	got *g = arg;
	g->calls++;
	g->done = true;
	g->reason = r->reason;
	g->code = r->code;
	g->status = r->status;
	g->body = strdup(r->body);
	g->len = r->body_len;
	g->error = r->error ? strdup(r->error) : NULL;
	g->latency_us = r->latency_us;
	g->redirects = r->redirects;
}

static void got_free(got *g)
{
	free(g->body);
	free(g->error);
	memset(g, 0, sizeof(*g));
}

static char *diags_text(const ws_diags *d)
{
	char *out = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&out, &len);
	for (size_t i = 0; i < d->len; i++)
		fprintf(fp, "%s%s", i ? "\n" : "", d->items[i].message);
	fclose(fp);
	return out;
}

static ws_outbound_policy *policy(const char *allow, const char *deny)
{
	ws_diags d;
	ws_diags_init(&d);
	ws_outbound_policy *p = ws_outbound_policy_parse(allow, deny, &d);
	assert_int_equal(d.len, 0);
	assert_non_null(p);
	ws_diags_free(&d);
	return p;
}

static ws_outbound *client(tctx *t, ws_outbound_policy *p)
{
	ws_diags d;
	ws_diags_init(&d);
	ws_outbound *o = ws_outbound_new(&t->loop, p, NULL, &d);
	assert_non_null(o);
	ws_diags_free(&d);
	return o;
}

static void client_close(tctx *t, ws_outbound *o)
{
	int closed = 0;
	ws_outbound_close(o, closed_cb, &closed);
	assert_true(run_until_count(t, &closed, 5000));
	assert_int_equal(closed, 1);
}

/* One call, run to its end. */
static void fetch(tctx *t, ws_outbound *o, const ws_outbound_req *req, got *g)
{
	memset(g, 0, sizeof(*g));
	assert_int_equal(ws_outbound_request(o, req, got_cb, g, NULL), 0);
	assert_false(g->done);   /* never called before request() returns */
	assert_true(run_until(t, &g->done, 15000));
	assert_int_equal(g->calls, 1);
}

static void get(tctx *t, ws_outbound *o, const char *url, got *g)
{
	ws_outbound_req req = { .url = url, .timeout_ms = 5000 };
	fetch(t, o, &req, g);
}

static ws_outbound *local_client(tctx *t)
{
	return client(t, policy("127.0.0.0/8", NULL));
}

/* ---- the policy --------------------------------------------------------- */

static void test_policy_parse_errors(void **state)
{
	(void)state;
	ws_diags d;
	ws_diags_init(&d);
	assert_null(ws_outbound_policy_parse("10.0.0.0/8, 300.1.1.1, ,::1/129",
					     "10.0.0.1/8,fd00::/x,example.com", &d));
	char *text = diags_text(&d);
	assert_string_equal(text,
		"outbound allow list item 2 \"300.1.1.1\": \"300.1.1.1\" is not an IPv4 or IPv6 address\n"
		"outbound allow list item 4 \"::1/129\": the prefix length must be a number from 0 to 128\n"
		"outbound deny list item 1 \"10.0.0.1/8\": host bits are set after the /8 prefix\n"
		"outbound deny list item 2 \"fd00::/x\": the prefix length must be a number from 0 to 128\n"
		"outbound deny list item 3 \"example.com\": \"example.com\" is not an IPv4 or IPv6 address");
	free(text);
	ws_diags_free(&d);
	/* Empty and absent lists are fine. */
	ws_diags_init(&d);
	ws_outbound_policy *p = ws_outbound_policy_parse("", NULL, &d);
	assert_non_null(p);
	assert_int_equal(d.len, 0);
	ws_outbound_policy_free(p);
	ws_diags_free(&d);
}

static bool allows(const ws_outbound_policy *p, const char *ip, const char **why)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, ip, &a->sin6_addr), 1);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, ip, &a->sin_addr), 1);
	}
	return ws_outbound_policy_allows(p, (struct sockaddr *)&ss, why);
}

static void test_policy_rules(void **state)
{
	(void)state;
	static const char *const metadata = "link-local or cloud metadata address";
	static const char *const loop = "loopback address not in the allow list";
	static const char *const denied = "in the deny list";
	struct {
		const char *allow, *deny, *ip;
		const char *why;   /* NULL: allowed */
	} cases[] = {
		/* always refused, whatever the lists say */
		{ "0.0.0.0/0,::/0", NULL, "169.254.169.254", metadata },
		{ "169.254.0.0/16", NULL, "169.254.1.1", metadata },
		{ "::/0", NULL, "fd00:ec2::254", metadata },
		{ "::/0", NULL, "::ffff:169.254.169.254", metadata },
		{ "::/0", NULL, "64:ff9b::a9fe:a9fe", metadata },
		{ "::/0", NULL, "fe80::1", metadata },
		/* loopback: refused unless allowed */
		{ NULL, NULL, "127.0.0.1", loop },
		{ NULL, NULL, "127.10.0.1", loop },
		{ NULL, NULL, "::1", loop },
		{ NULL, NULL, "::ffff:127.0.0.1", loop },
		{ NULL, NULL, "0.0.0.0", loop },
		{ NULL, NULL, "::", loop },
		{ "127.0.0.0/8", NULL, "127.0.0.1", NULL },
		{ "127.0.0.0/8", NULL, "::ffff:127.0.0.1", NULL },
		{ "127.0.0.0/8", NULL, "::1", loop },
		{ "::1", NULL, "::1", NULL },
		{ "::ffff:127.0.0.0/104", NULL, "127.0.0.2", NULL },
		/* deny beats allow */
		{ "127.0.0.0/8", "127.0.0.1", "127.0.0.1", denied },
		{ "127.0.0.0/8", "127.0.0.1", "127.0.0.2", NULL },
		{ "10.0.0.0/8", "10.1.0.0/16", "10.1.2.3", denied },
		{ "0.0.0.0/0", "192.0.2.0/24", "::ffff:192.0.2.7", denied },
		/* everything else allowed unless denied */
		{ NULL, NULL, "192.0.2.1", NULL },
		{ NULL, NULL, "2001:db8::1", NULL },
		{ NULL, "2001:db8::/32", "2001:db8::1", denied },
		{ NULL, "10.0.0.0/8", "11.0.0.1", NULL },
		{ NULL, "10.128.0.0/9", "10.127.255.255", NULL },
		{ NULL, "10.128.0.0/9", "10.128.0.0", denied },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ws_outbound_policy *p = policy(cases[i].allow, cases[i].deny);
		const char *why = NULL;
		bool ok = allows(p, cases[i].ip, &why);
		if (ok != (cases[i].why == NULL) || (!ok && strcmp(why, cases[i].why) != 0))
			fail_msg("case %zu (%s): got %s", i, cases[i].ip, ok ? "allowed" : why);
		ws_outbound_policy_free(p);
	}
	/* A NULL policy is the default one. */
	assert_false(allows(NULL, "127.0.0.1", NULL));
	assert_true(allows(NULL, "198.51.100.1", NULL));
}

/* ---- calls -------------------------------------------------------------- */

static void test_get_ok_and_http_errors(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	ws_outbound *o = local_client(&t);
	got g;
	get(&t, o, testsrv_url(&srv, "/status/200"), &g);
	assert_int_equal(g.reason, WS_OUT_OK);
	assert_int_equal(g.code, 0);
	assert_int_equal(g.status, 200);
	assert_string_equal(g.body, "status 200");
	assert_int_equal(g.len, 10);
	assert_null(g.error);
	assert_true(g.latency_us > 0);
	got_free(&g);
	/* An HTTP error is an answer: judging it is the caller's business. */
	get(&t, o, testsrv_url(&srv, "/status/503"), &g);
	assert_int_equal(g.reason, WS_OUT_OK);
	assert_int_equal(g.status, 503);
	assert_string_equal(g.body, "status 503");
	got_free(&g);
	/* Latency is measured: a 200 ms delay shows. */
	get(&t, o, testsrv_url(&srv, "/delay/200"), &g);
	assert_int_equal(g.status, 200);
	assert_true(g.latency_us >= 200000);
	got_free(&g);
	ws_outbound_stats st;
	ws_outbound_stats_get(o, &st);
	assert_int_equal(st.requests, 3);
	assert_int_equal(st.answered, 3);
	assert_int_equal(st.in_flight, 0);
	client_close(&t, o);
	tctx_done(&t);
}

static void test_post_headers_body(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	ws_outbound *o = local_client(&t);
	const char *headers[] = { "Idempotency-Key: r1/acme/1", "Content-Type: application/json", NULL };
	ws_outbound_req req = { .method = "PATCH", .url = testsrv_url(&srv, "/echo"),
				.headers = headers, .body = "{\"a\":1}", .body_len = 7 };
	got g;
	fetch(&t, o, &req, &g);
	assert_int_equal(g.status, 200);
	assert_non_null(strstr(g.body, "\"method\": \"PATCH\""));
	assert_non_null(strstr(g.body, "\"body\": \"{\\\"a\\\":1}\""));
	assert_non_null(strstr(g.body, "\"idempotency-key\": \"r1/acme/1\""));
	assert_non_null(strstr(g.body, "\"user-agent\": \"wavesched/"));
	got_free(&g);
	/* Unknown methods and missing URLs are refused at once. */
	ws_outbound_req bad = { .method = "BREW", .url = "http://127.0.0.1/" };
	assert_int_equal(ws_outbound_request(o, &bad, got_cb, &g, NULL), WS_EINVAL);
	ws_outbound_req nourl = { 0 };
	assert_int_equal(ws_outbound_request(o, &nourl, got_cb, &g, NULL), WS_EINVAL);
	client_close(&t, o);
	tctx_done(&t);
}

static void test_loopback_refused_by_default(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	ws_outbound *o = client(&t, NULL);
	got g;
	char expect[256];
	const char *url = testsrv_url(&srv, "/status/200");
	get(&t, o, url, &g);
	assert_int_equal(g.reason, WS_OUT_REFUSED);
	assert_int_equal(g.code, WS_EFORBIDDEN);
	assert_int_equal(g.status, 0);
	snprintf(expect, sizeof(expect),
		 "GET %s: refused address 127.0.0.1 (loopback address not in the allow list)", url);
	assert_string_equal(g.error, expect);
	got_free(&g);
	/* By name too: the resolved address is what is judged. */
	char byname[128];
	snprintf(byname, sizeof(byname), "http://localhost:%d/status/200", srv.port);
	get(&t, o, byname, &g);
	assert_int_equal(g.reason, WS_OUT_REFUSED);
	assert_non_null(strstr(g.error, "loopback address not in the allow list"));
	got_free(&g);
	ws_outbound_stats st;
	ws_outbound_stats_get(o, &st);
	assert_int_equal(st.failures[WS_OUT_REFUSED], 2);
	assert_int_equal(st.answered, 0);
	client_close(&t, o);
	tctx_done(&t);
}

static void test_metadata_refused_despite_allow(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	ws_outbound *o = client(&t, policy("0.0.0.0/0, ::/0", NULL));
	got g;
	get(&t, o, "http://169.254.169.254/latest/meta-data/", &g);
	assert_int_equal(g.reason, WS_OUT_REFUSED);
	assert_string_equal(g.error, "GET http://169.254.169.254/latest/meta-data/: refused address "
				     "169.254.169.254 (link-local or cloud metadata address)");
	got_free(&g);
	get(&t, o, "http://[::ffff:169.254.169.254]/", &g);
	assert_int_equal(g.reason, WS_OUT_REFUSED);
	assert_non_null(strstr(g.error, "(link-local or cloud metadata address)"));
	got_free(&g);
	/* A redirect from an allowed server to the metadata address. */
	get(&t, o, testsrv_url(&srv, "/redirect?to=http://169.254.169.254/latest/"), &g);
	assert_int_equal(g.reason, WS_OUT_REFUSED);
	assert_non_null(strstr(g.error, "refused address 169.254.169.254"));
	got_free(&g);
	client_close(&t, o);
	tctx_done(&t);
}

static void test_deny_beats_allow(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	ws_outbound *o = client(&t, policy("127.0.0.0/8", "127.0.0.1/32"));
	got g;
	get(&t, o, testsrv_url(&srv, "/status/200"), &g);
	assert_int_equal(g.reason, WS_OUT_REFUSED);
	assert_non_null(strstr(g.error, "refused address 127.0.0.1 (in the deny list)"));
	got_free(&g);
	client_close(&t, o);
	tctx_done(&t);
}

static void test_schemes(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	ws_outbound *o = local_client(&t);
	got g;
	get(&t, o, testsrv_url(&srv, "/redirect?to=file:///etc/passwd"), &g);
	assert_int_equal(g.reason, WS_OUT_BAD_SCHEME);
	assert_non_null(strstr(g.error, ": redirected to a URL that is not http or https"));
	assert_null(strstr(g.body, "root:"));
	got_free(&g);
	get(&t, o, "ftp://127.0.0.1/x", &g);
	assert_int_equal(g.reason, WS_OUT_BAD_SCHEME);
	assert_string_equal(g.error,
		"GET ftp://127.0.0.1/x: scheme \"ftp\" refused: only http and https are allowed");
	got_free(&g);
	get(&t, o, "file:///etc/passwd", &g);
	assert_int_equal(g.reason, WS_OUT_BAD_SCHEME);
	got_free(&g);
	get(&t, o, "http://[::1", &g);
	assert_int_equal(g.reason, WS_OUT_BAD_URL);
	assert_non_null(strstr(g.error, "GET http://[::1: malformed URL"));
	got_free(&g);
	client_close(&t, o);
	tctx_done(&t);
}

static void test_redirect_limit(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	ws_outbound *o = local_client(&t);
	got g;
	get(&t, o, testsrv_url(&srv, "/chain/3"), &g);
	assert_int_equal(g.reason, WS_OUT_OK);
	assert_int_equal(g.status, 200);
	assert_int_equal(g.redirects, 3);
	assert_string_equal(g.body, "end");
	got_free(&g);
	get(&t, o, testsrv_url(&srv, "/chain/4"), &g);
	assert_int_equal(g.reason, WS_OUT_REDIRECTS);
	assert_non_null(strstr(g.error, "/chain/4: more than 3 redirects"));
	got_free(&g);
	/* Not following: the 3xx is the answer. */
	ws_outbound_req req = { .url = testsrv_url(&srv, "/chain/1"), .no_redirects = true };
	fetch(&t, o, &req, &g);
	assert_int_equal(g.reason, WS_OUT_OK);
	assert_int_equal(g.status, 302);
	got_free(&g);
	client_close(&t, o);
	tctx_done(&t);
}

static void test_timeout(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	ws_outbound *o = local_client(&t);
	ws_outbound_req req = { .url = testsrv_url(&srv, "/hang"), .timeout_ms = 300 };
	got g;
	uint64_t start = now_ms();
	fetch(&t, o, &req, &g);
	assert_true(now_ms() - start >= 290);
	assert_int_equal(g.reason, WS_OUT_TIMEOUT);
	assert_int_equal(g.code, WS_ETIMEDOUT);
	char expect[256];
	snprintf(expect, sizeof(expect), "GET %s: timed out after 300 ms", req.url);
	assert_string_equal(g.error, expect);
	got_free(&g);
	client_close(&t, o);
	tctx_done(&t);
}

static void test_size_cap(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	ws_outbound *o = local_client(&t);
	got g;
	/* Announced by Content-Length. */
	ws_outbound_req req = { .url = testsrv_url(&srv, "/big/2000"), .max_bytes = 1000 };
	fetch(&t, o, &req, &g);
	assert_int_equal(g.reason, WS_OUT_TOO_LARGE);
	assert_int_equal(g.code, WS_ETOOBIG);
	assert_non_null(strstr(g.error, "/big/2000: response larger than 1000 bytes"));
	got_free(&g);
	/* Not announced: cut while reading. */
	req.url = testsrv_url(&srv, "/stream/5000");
	fetch(&t, o, &req, &g);
	assert_int_equal(g.reason, WS_OUT_TOO_LARGE);
	assert_non_null(strstr(g.error, "response larger than 1000 bytes"));
	got_free(&g);
	/* Exactly the cap is fine. */
	req.url = testsrv_url(&srv, "/big/1000");
	fetch(&t, o, &req, &g);
	assert_int_equal(g.reason, WS_OUT_OK);
	assert_int_equal(g.len, 1000);
	got_free(&g);
	/* The default cap is 1 MiB. */
	req = (ws_outbound_req){ .url = testsrv_url(&srv, "/stream/1048577") };
	fetch(&t, o, &req, &g);
	assert_int_equal(g.reason, WS_OUT_TOO_LARGE);
	assert_non_null(strstr(g.error, "response larger than 1048576 bytes"));
	got_free(&g);
	client_close(&t, o);
	tctx_done(&t);
}

static void test_dns_failure(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	ws_outbound *o = local_client(&t);
	got g;
	get(&t, o, "http://no-such-host.invalid/health", &g);
	assert_int_equal(g.reason, WS_OUT_DNS);
	assert_non_null(strstr(g.error, "GET http://no-such-host.invalid/health: cannot resolve the host name"));
	got_free(&g);
	client_close(&t, o);
	tctx_done(&t);
}

static void test_cancel(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	ws_outbound *o = local_client(&t);
	got g = { 0 };
	ws_outbound_call *c = NULL;
	ws_outbound_req req = { .url = testsrv_url(&srv, "/hang"), .timeout_ms = 10000 };
	assert_int_equal(ws_outbound_request(o, &req, got_cb, &g, &c), 0);
	assert_non_null(c);
	run_for(&t, 100);   /* connected and waiting */
	ws_outbound_cancel(c);
	assert_false(g.done);   /* the callback comes from the loop */
	assert_true(run_until(&t, &g.done, 2000));
	assert_int_equal(g.calls, 1);
	assert_int_equal(g.reason, WS_OUT_CANCELLED);
	got_free(&g);
	/* A call refused before it reached curl can be cancelled too. */
	req.url = "gopher://127.0.0.1/";
	assert_int_equal(ws_outbound_request(o, &req, got_cb, &g, &c), 0);
	ws_outbound_cancel(c);
	assert_true(run_until(&t, &g.done, 2000));
	run_for(&t, 20);
	assert_int_equal(g.calls, 1);
	assert_int_equal(g.reason, WS_OUT_CANCELLED);
	got_free(&g);
	ws_outbound_stats st;
	ws_outbound_stats_get(o, &st);
	assert_int_equal(st.failures[WS_OUT_CANCELLED], 2);
	assert_int_equal(st.in_flight, 0);
	client_close(&t, o);
	tctx_done(&t);
}

/* Closing with calls in flight: each callback fires once, cancelled, and
 * every handle is closed (tctx_done checks the loop). */
static void test_close_in_flight(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	ws_outbound *o = local_client(&t);
	got g[3];
	memset(g, 0, sizeof(g));
	const char *paths[3] = { "/hang", "/delay/5000", "/status/200" };
	for (int i = 0; i < 3; i++) {
		ws_outbound_req req = { .url = testsrv_url(&srv, paths[i]), .timeout_ms = 10000 };
		assert_int_equal(ws_outbound_request(o, &req, got_cb, &g[i], NULL), 0);
	}
	run_for(&t, 50);
	int closed = 0;
	ws_outbound_close(o, closed_cb, &closed);
	assert_true(run_until_count(&t, &closed, 5000));
	for (int i = 0; i < 3; i++) {
		assert_int_equal(g[i].calls, 1);
		if (i < 2)
			assert_int_equal(g[i].reason, WS_OUT_CANCELLED);
		got_free(&g[i]);
	}
	tctx_done(&t);
}

/* Closing from inside a callback, with other calls still running. */
typedef struct closer {
	ws_outbound *o;
	int closed;
	int calls;
} closer;

static void close_from_cb(void *arg, const ws_outbound_res *r)
{
	closer *c = arg;
	(void)r;
	if (c->calls++ == 0)
		ws_outbound_close(c->o, closed_cb, &c->closed);
}

static void test_close_from_callback(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	closer c = { .o = local_client(&t) };
	ws_outbound_req fast = { .url = testsrv_url(&srv, "/status/204") };
	ws_outbound_req slow = { .url = testsrv_url(&srv, "/hang") };
	assert_int_equal(ws_outbound_request(c.o, &fast, close_from_cb, &c, NULL), 0);
	assert_int_equal(ws_outbound_request(c.o, &slow, close_from_cb, &c, NULL), 0);
	assert_true(run_until_count(&t, &c.closed, 5000));
	assert_int_equal(c.calls, 2);
	tctx_done(&t);
}

/* Many calls at once on one handle: all answered, counters agree. */
typedef struct counter {
	int done, ok;
} counter;

static void count_cb(void *arg, const ws_outbound_res *r)
{
	counter *c = arg;
	c->done++;
	if (r->reason == WS_OUT_OK && r->status == 200)
		c->ok++;
}

static bool all_done(const void *arg)
{
	return ((const counter *)arg)->done == 300;
}

static void test_concurrent(void **state)
{
	(void)state;
	tctx t;
	tctx_init(&t);
	ws_outbound *o = local_client(&t);
	counter c = { 0 };
	for (int i = 0; i < 300; i++) {
		ws_outbound_req req = { .url = testsrv_url(&srv, i % 2 ? "/delay/20" : "/status/200"),
					.timeout_ms = 30000 };
		assert_int_equal(ws_outbound_request(o, &req, count_cb, &c, NULL), 0);
	}
	ws_outbound_stats st;
	ws_outbound_stats_get(o, &st);
	assert_int_equal(st.in_flight, 300);
	assert_true(run_until_pred(&t, all_done, &c, 60000));
	assert_int_equal(c.ok, 300);
	ws_outbound_stats_get(o, &st);
	assert_int_equal(st.requests, 300);
	assert_int_equal(st.answered, 300);
	assert_int_equal(st.in_flight, 0);
	client_close(&t, o);
	tctx_done(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_policy_parse_errors),
		cmocka_unit_test(test_policy_rules),
		cmocka_unit_test(test_get_ok_and_http_errors),
		cmocka_unit_test(test_post_headers_body),
		cmocka_unit_test(test_loopback_refused_by_default),
		cmocka_unit_test(test_metadata_refused_despite_allow),
		cmocka_unit_test(test_deny_beats_allow),
		cmocka_unit_test(test_schemes),
		cmocka_unit_test(test_redirect_limit),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_size_cap),
		cmocka_unit_test(test_dns_failure),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_close_in_flight),
		cmocka_unit_test(test_close_from_callback),
		cmocka_unit_test(test_concurrent),
	};
	if (getenv("WS_TEST_FILTER"))
		cmocka_set_test_filter(getenv("WS_TEST_FILTER"));
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
