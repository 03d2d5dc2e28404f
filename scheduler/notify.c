/*
 * notify.c - renders queued notifications and delivers them (notify.h,
 * migrations/0018_notify.sql, docs/notifications.md).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "wavesched/crypto.h"
#include "wavesched/log.h"
#include "wavesched/notify.h"

/* ---- rendering ------------------------------------------------------------- */

typedef struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *b, const char *fmt, ...)
{
	if (b->oom)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->oom = true;
		return;
	}
	if (b->len + (size_t)n + 1 > b->cap) {
		size_t cap = (b->cap ? b->cap * 2 : 256) + (size_t)n;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

static const char *str(const json_t *data, const char *key)
{
	const char *s = json_string_value(json_object_get(data, key));
	return s && *s ? s : NULL;
}

/* "Acme Corp (acme)", or the slug alone. */
static void sb_tenant(sbuf *b, const char *tenant, const json_t *data)
{
	const char *name = str(data, "tenant_name");
	if (!tenant)
		tenant = str(data, "tenant");
	if (name && tenant && strcmp(name, tenant) != 0)
		sb_add(b, "%s (%s)", name, tenant);
	else
		sb_add(b, "%s", name ? name : tenant ? tenant : "your service");
}

static void sb_release(sbuf *b, const json_t *data)
{
	const char *rel = str(data, "release"), *kind = str(data, "release_kind");
	if (rel && kind && strcmp(kind, "standard") != 0)
		sb_add(b, "version %s (%s release)", rel, kind);
	else if (rel)
		sb_add(b, "version %s", rel);
	else
		sb_add(b, "a new version");
}

static void sb_window(sbuf *b, const json_t *data)
{
	const char *s = str(data, "window_start_local"), *e = str(data, "window_end_local");
	if (!s)
		s = str(data, "window_start");
	if (s && e)
		sb_add(b, "%s until %s", s, e);
	else
		sb_add(b, "%s", s ? s : "a window still to be chosen");
}

/* "1 day 3 hours", "5 hours 20 minutes", "45 minutes", "less than a minute" */
static void sb_duration(sbuf *b, json_int_t s)
{
	json_int_t d = s / 86400, h = s % 86400 / 3600, m = s % 3600 / 60;
	if (d > 0)
		sb_add(b, "%lld day%s", (long long)d, d == 1 ? "" : "s");
	if (h > 0)
		sb_add(b, "%s%lld hour%s", d ? " " : "", (long long)h, h == 1 ? "" : "s");
	if (m > 0 && d == 0)
		sb_add(b, "%s%lld minute%s", h ? " " : "", (long long)m, m == 1 ? "" : "s");
	if (d == 0 && h == 0 && m == 0)
		sb_add(b, "less than a minute");
}

static void sb_reason(sbuf *b, const json_t *data)
{
	const char *r = str(data, "reason");
	if (r)
		sb_add(b, " Reason: %s.", r);
}

char *ws_notify_text(const char *kind, const char *tenant, json_int_t rollout, const json_t *data)
{
	sbuf b = { 0 };
	if (!kind)
		kind = "";
	if (strcmp(kind, "window.reminder") == 0) {
		sb_add(&b, "Reminder: ");
		sb_tenant(&b, tenant, data);
		sb_add(&b, " will be upgraded to ");
		sb_release(&b, data);
		json_t *lead = json_object_get(data, "lead_s");
		if (json_is_integer(lead)) {
			sb_add(&b, " in ");
			sb_duration(&b, json_integer_value(lead));
		}
		sb_add(&b, ", during its maintenance window ");
		sb_window(&b, data);
		sb_add(&b, ".");
	} else if (strcmp(kind, "window.moved") == 0) {
		sb_add(&b, "The upgrade of ");
		sb_tenant(&b, tenant, data);
		sb_add(&b, " to ");
		sb_release(&b, data);
		sb_add(&b, " has moved");
		if (str(data, "from_start_local"))
			sb_add(&b, " from %s", str(data, "from_start_local"));
		sb_add(&b, " to the window ");
		sb_window(&b, data);
		sb_add(&b, ".");
		sb_reason(&b, data);
	} else if (strcmp(kind, "window.cancelled") == 0) {
		sb_add(&b, "The upgrade of ");
		sb_tenant(&b, tenant, data);
		sb_add(&b, " to ");
		sb_release(&b, data);
		if (str(data, "window_start_local"))
			sb_add(&b, " planned for %s", str(data, "window_start_local"));
		sb_add(&b, " will not take place in this rollout; nothing was changed.");
		sb_reason(&b, data);
	} else if (strcmp(kind, "deployment.healthy") == 0) {
		sb_tenant(&b, tenant, data);
		sb_add(&b, " now runs ");
		sb_release(&b, data);
		sb_add(&b, ": the upgrade is done and its health checks passed.");
	} else if (strcmp(kind, "deployment.failed") == 0) {
		sb_add(&b, "The upgrade of ");
		sb_tenant(&b, tenant, data);
		sb_add(&b, " to ");
		sb_release(&b, data);
		sb_add(&b, " failed.");
		sb_reason(&b, data);
	} else if (strcmp(kind, "deployment.rolled_back") == 0) {
		sb_tenant(&b, tenant, data);
		sb_add(&b, " was returned to its previous version after the upgrade to ");
		sb_release(&b, data);
		sb_add(&b, ".");
		sb_reason(&b, data);
	} else if (strcmp(kind, "gate.failed") == 0) {
		sb_add(&b, "Gate %s failed in rollout %lld", str(data, "gate") ? str(data, "gate") : "?",
		       (long long)rollout);
		if (str(data, "release"))
			sb_add(&b, " (release %s)", str(data, "release"));
		if (str(data, "wave"))
			sb_add(&b, ", wave %s", str(data, "wave"));
		if (tenant)
			sb_add(&b, ", tenant %s", tenant);
		sb_add(&b, ".");
		sb_reason(&b, data);
	} else if (strncmp(kind, "rollout.", 8) == 0) {
		const char *st = kind + 8;
		const char *words = strcmp(st, "halted") == 0        ? "halted"
				    : strcmp(st, "rolled_back") == 0 ? "was rolled back"
				    : strcmp(st, "preempted") == 0   ? "was preempted by an urgent rollout"
				    : strcmp(st, "aborted") == 0     ? "was aborted"
				    : strcmp(st, "completed") == 0   ? "completed"
								     : st;
		sb_add(&b, "Rollout %lld", (long long)rollout);
		if (str(data, "release"))
			sb_add(&b, " (release %s)", str(data, "release"));
		sb_add(&b, " %s.", words);
		sb_reason(&b, data);
	} else if (strcmp(kind, "review.overdue") == 0) {
		sb_add(&b, "The break-glass review of rollout %lld", (long long)rollout);
		if (str(data, "release"))
			sb_add(&b, " (release %s)", str(data, "release"));
		sb_add(&b, " is overdue");
		if (str(data, "due_at"))
			sb_add(&b, " since %s", str(data, "due_at"));
		sb_add(&b, ": someone other than its creator");
		if (str(data, "created_by"))
			sb_add(&b, " (%s)", str(data, "created_by"));
		sb_add(&b, " must close it.");
	} else {
		sb_add(&b, "%s", *kind ? kind : "notification");
		if (rollout > 0)
			sb_add(&b, " (rollout %lld)", (long long)rollout);
		if (tenant)
			sb_add(&b, " for %s", tenant);
		sb_add(&b, ".");
		sb_reason(&b, data);
	}
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

/* Slack's mrkdwn gives &, < and > a meaning: escaped as its docs say. */
static char *slack_escape(const char *s)
{
	sbuf b = { 0 };
	sb_add(&b, "%s", "");
	for (; *s; s++) {
		if (*s == '&')
			sb_add(&b, "&amp;");
		else if (*s == '<')
			sb_add(&b, "&lt;");
		else if (*s == '>')
			sb_add(&b, "&gt;");
		else
			sb_add(&b, "%c", *s);
	}
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

char *ws_notify_body(const char *format, const json_t *message, char *why, size_t whysz)
{
	const char *kind = json_string_value(json_object_get(message, "kind"));
	json_t *id = json_object_get(message, "id");
	if (!json_is_object(message) || !kind || !json_is_integer(id)) {
		snprintf(why, whysz, "message without an id or a kind");
		return NULL;
	}
	const char *tenant = json_string_value(json_object_get(message, "tenant"));
	json_int_t rollout = json_integer_value(json_object_get(message, "rollout"));
	json_t *data = json_object_get(message, "data");
	char *text = ws_notify_text(kind, tenant, rollout, data);
	if (!text) {
		snprintf(why, whysz, "out of memory");
		return NULL;
	}
	json_t *doc = NULL;
	if (format && strcmp(format, "json") == 0) {
		doc = json_pack("{s:O, s:s, s:O, s:O, s:O, s:s, s:O}", "id", id, "kind", kind, "at",
				json_object_get(message, "at") ? json_object_get(message, "at") : json_null(),
				"rollout", json_object_get(message, "rollout") ? json_object_get(message, "rollout") : json_null(),
				"tenant", json_object_get(message, "tenant") ? json_object_get(message, "tenant") : json_null(),
				"text", text, "data", json_is_object(data) ? data : json_object());
	} else if (format && strcmp(format, "slack") == 0) {
		char *esc = slack_escape(text);
		char ctx[256];
		const char *at = json_string_value(json_object_get(message, "at"));
		int n = snprintf(ctx, sizeof(ctx), "wavesched · %s", kind);
		if (rollout > 0 && n > 0 && (size_t)n < sizeof(ctx))
			n += snprintf(ctx + n, sizeof(ctx) - (size_t)n, " · rollout %lld", (long long)rollout);
		if (tenant && n > 0 && (size_t)n < sizeof(ctx))
			n += snprintf(ctx + n, sizeof(ctx) - (size_t)n, " · tenant %s", tenant);
		if (at && n > 0 && (size_t)n < sizeof(ctx))
			snprintf(ctx + n, sizeof(ctx) - (size_t)n, " · %s", at);
		char *ctx_esc = slack_escape(ctx);
		if (esc && ctx_esc)
			doc = json_pack("{s:s, s:[{s:s, s:{s:s, s:s}}, {s:s, s:[{s:s, s:s}]}]}", "text", text,
					"blocks", "type", "section", "text", "type", "mrkdwn", "text", esc,
					"type", "context", "elements", "type", "mrkdwn", "text", ctx_esc);
		free(esc);
		free(ctx_esc);
	} else {
		snprintf(why, whysz, "unknown sink format \"%s\" (expected json or slack)", format ? format : "");
		free(text);
		return NULL;
	}
	free(text);
	char *out = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	json_decref(doc);
	if (!out)
		snprintf(why, whysz, "out of memory");
	return out;
}

uint64_t ws_notify_backoff_ms(unsigned attempt, uint64_t base_ms, uint64_t max_ms, uint32_t rnd)
{
	if (attempt < 1)
		attempt = 1;
	if (max_ms < base_ms)
		max_ms = base_ms;
	uint64_t d = base_ms;
	for (unsigned i = 1; i < attempt && d < max_ms; i++)
		d = d > max_ms / 2 ? max_ms : d * 2;
	if (d > max_ms)
		d = max_ms;
	uint64_t half = d / 2;
	uint64_t r = d - half ? rnd % (d - half + 1) : 0;
	uint64_t out = half + r;
	return out ? out : (base_ms ? 1 : 0);
}

ws_notify_outcome ws_notify_judge(ws_outbound_reason reason, long status, unsigned attempt,
				  unsigned max_attempts)
{
	if (reason == WS_OUT_OK && status >= 200 && status < 300)
		return WS_NOTIFY_DELIVERED;
	if (reason == WS_OUT_OK && status >= 400 && status < 500 && status != 408 && status != 429)
		return WS_NOTIFY_GIVE_UP;
	if (reason == WS_OUT_BAD_URL || reason == WS_OUT_BAD_SCHEME || reason == WS_OUT_REFUSED)
		return WS_NOTIFY_GIVE_UP;
	return attempt >= max_attempts ? WS_NOTIFY_GIVE_UP : WS_NOTIFY_RETRY;
}

const char *ws_notify_outcome_name(ws_notify_outcome o)
{
	switch (o) {
	case WS_NOTIFY_DELIVERED:
		return "delivered";
	case WS_NOTIFY_RETRY:
		return "retry";
	case WS_NOTIFY_GIVE_UP:
		return "failed";
	}
	return "failed";
}

/* ---- the notifier --------------------------------------------------------- */

typedef struct delivery delivery;

struct ws_notifier {
	uv_loop_t *loop;
	ws_pg_pool *pool;
	ws_outbound *out;
	const ws_clock *clock;
	ws_notify_opts o;
	uv_timer_t timer;
	bool active, stopping, claiming;
	unsigned queries;          /* database calls in flight */
	uint64_t last_scan;        /* uv_now of the last scan */
	delivery *calls;           /* in flight, for cancelling */
	ws_notify_stats st;
	void (*stop_cb)(void *arg);
	void *stop_arg;
};

struct delivery {
	ws_notifier *n;
	delivery *prev, *next;
	ws_outbound_call *call;
	json_int_t id;
	unsigned attempt;
	char sink[64];
	bool linked;
};

static void maybe_finish_stop(ws_notifier *n);
static void tick(ws_notifier *n);

static void query(ws_notifier *n, const char *sql, int np, const char *const *params, ws_pg_cb cb,
		  void *arg)
{
	n->queries++;
	if (ws_pg_query(n->pool, sql, np, params, cb, arg) != 0) {
		ws_pg_err e = { .code = WS_EUNAVAIL, .sqlstate = "", .message = "cannot queue the query", .detail = "" };
		cb(arg, NULL, &e);
	}
}

static void unlink_call(delivery *d)
{
	ws_notifier *n = d->n;
	if (!d->linked)
		return;
	if (d->prev)
		d->prev->next = d->next;
	else
		n->calls = d->next;
	if (d->next)
		d->next->prev = d->prev;
	d->linked = false;
	n->st.in_flight--;
}

static void record_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	delivery *d = arg;
	ws_notifier *n = d->n;
	n->queries--;
	if (err && n->stopping) {
		ws_warn("notify", "message %lld to sink %s: could not be handed back (%s); it goes again once its "
			"claim expires", (long long)d->id, d->sink, err->message);
	} else if (err) {
		n->st.db_errors++;
		ws_warn("notify", "message %lld attempt %u to sink %s: recording the attempt failed: %s "
			"(sent again once its claim expires)", (long long)d->id, d->attempt, d->sink, err->message);
	}
	(void)res;
	free(d);
	if (n->stopping)
		maybe_finish_stop(n);
	else
		tick(n);   /* the sink's next message may go now */
}

static void call_done(void *arg, const ws_outbound_res *res)
{
	delivery *d = arg;
	ws_notifier *n = d->n;
	unlink_call(d);
	if (res->reason == WS_OUT_CANCELLED) {
		/* Stopping: handed back at once rather than when its claim
		 * expires, so the next leader need not wait. */
		char id[32], att[16];
		snprintf(id, sizeof(id), "%lld", (long long)d->id);
		snprintf(att, sizeof(att), "%u", d->attempt);
		const char *params[] = { id, att };
		query(n, "SELECT ws_notify_unclaim($1::bigint, $2::integer)", 2, params, record_done, d);
		return;
	}
	n->st.attempts++;
	ws_notify_outcome oc = ws_notify_judge(res->reason, res->status, d->attempt, n->o.max_attempts);
	char err[512] = "";
	if (res->reason != WS_OUT_OK)
		snprintf(err, sizeof(err), "%s", res->error ? res->error : ws_outbound_reason_name(res->reason));
	else if (oc != WS_NOTIFY_DELIVERED)
		snprintf(err, sizeof(err), "POST to sink %s: HTTP %ld%s%.200s", d->sink, res->status,
			 res->body_len ? ": " : "", res->body);
	uint64_t retry = 0;
	if (oc == WS_NOTIFY_RETRY) {
		uint32_t rnd = 0;
		(void)ws_random_bytes(&rnd, sizeof(rnd));
		retry = ws_notify_backoff_ms(d->attempt, n->o.backoff_ms, n->o.backoff_max_ms, rnd);
		n->st.retried++;
	} else if (oc == WS_NOTIFY_DELIVERED) {
		n->st.delivered++;
	} else {
		n->st.failed++;
		ws_warn("notify", "message %lld to sink %s given up after attempt %u: %s", (long long)d->id, d->sink,
			d->attempt, err);
	}
	char id[32], att[16], status[16], dur[24], rms[24];
	snprintf(id, sizeof(id), "%lld", (long long)d->id);
	snprintf(att, sizeof(att), "%u", d->attempt);
	snprintf(status, sizeof(status), "%ld", res->status);
	snprintf(dur, sizeof(dur), "%llu", (unsigned long long)(res->latency_us / 1000));
	snprintf(rms, sizeof(rms), "%llu", (unsigned long long)retry);
	const char *params[] = { id, att, res->status ? status : NULL, *err ? err : NULL, dur,
				 ws_notify_outcome_name(oc), oc == WS_NOTIFY_RETRY ? rms : NULL };
	query(n, "SELECT ws_notify_record($1::bigint, $2::integer, $3::integer, $4, $5::integer, $6, $7::bigint)",
	      7, params, record_done, d);
}

/* Records an attempt that could not even be made (a broken row, a missing
 * secret) like any failed call, so it is visible and retried. */
static void fail_before_call(delivery *d, const char *why)
{
	ws_outbound_res r = { .reason = WS_OUT_PROTOCOL, .body = "", .error = why };
	call_done(d, &r);
}

static void start_delivery(ws_notifier *n, const json_t *item)
{
	const json_t *msg = json_object_get(item, "message");
	const json_t *sink = json_object_get(item, "sink");
	delivery *d = calloc(1, sizeof(*d));
	if (!d)
		return;
	d->n = n;
	d->id = json_integer_value(json_object_get(msg, "id"));
	d->attempt = (unsigned)json_integer_value(json_object_get(item, "attempt"));
	const char *sname = json_string_value(json_object_get(sink, "name"));
	snprintf(d->sink, sizeof(d->sink), "%s", sname ? sname : "?");
	d->linked = true;
	d->next = n->calls;
	if (n->calls)
		n->calls->prev = d;
	n->calls = d;
	n->st.in_flight++;
	if (d->id <= 0 || d->attempt < 1) {
		/* Not recordable either: leave it to its claim's expiry. */
		ws_error("notify", "claimed a message without an id or attempt: ignored");
		unlink_call(d);
		free(d);
		return;
	}
	char why[256];
	char *body = ws_notify_body(json_string_value(json_object_get(sink, "format")), msg, why, sizeof(why));
	if (!body) {
		char e[400];
		snprintf(e, sizeof(e), "sink %s: cannot render message %lld: %s", d->sink, (long long)d->id, why);
		fail_before_call(d, e);
		return;
	}
	char idh[64], auth[600] = "";
	snprintf(idh, sizeof(idh), "X-Wavesched-Notification: %lld", (long long)d->id);
	const char *senv = json_string_value(json_object_get(sink, "secret_env"));
	if (senv) {
		const char *secret = getenv(senv);
		if (!secret || !*secret || strlen(secret) > 512 || strpbrk(secret, "\r\n")) {
			free(body);
			char e[320];
			snprintf(e, sizeof(e), "sink %s: secret_env %s is not set (or not a single line) in the service's "
				 "environment", d->sink, senv);
			fail_before_call(d, e);
			return;
		}
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", secret);
	}
	const char *headers[] = { "Content-Type: application/json", "User-Agent: wavesched-notify", idh,
				  *auth ? auth : NULL, NULL };
	ws_outbound_req req = {
		.method = "POST",
		.url = json_string_value(json_object_get(sink, "url")),
		.headers = headers,
		.body = body,
		.body_len = strlen(body),
		.timeout_ms = n->o.timeout_ms,
		.max_bytes = 64 << 10,
		.no_redirects = true,  /* a webhook that redirects a POST is misconfigured: said, not followed */
	};
	int rc = req.url ? ws_outbound_request(n->out, &req, call_done, d, &d->call) : WS_EINVAL;
	free(body);
	if (rc != 0) {
		char e[200];
		snprintf(e, sizeof(e), "sink %s: the call could not be started (%s)", d->sink,
			 rc == WS_EUNAVAIL ? "the service is stopping" : req.url ? "out of memory" : "no URL");
		if (rc == WS_EUNAVAIL) {
			unlink_call(d);
			free(d);
			return;
		}
		fail_before_call(d, e);
	}
}

static void claim_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	ws_notifier *n = arg;
	n->queries--;
	n->claiming = false;
	if (err) {
		n->st.db_errors++;
		ws_warn("notify", "claiming due notifications failed: %s", err->message);
	} else if (!n->stopping && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
		json_error_t je;
		json_t *arr = json_loads(PQgetvalue(res, 0, 0), 0, &je);
		size_t i;
		json_t *item;
		json_array_foreach(arr, i, item)
			start_delivery(n, item);
		json_decref(arr);
	}
	maybe_finish_stop(n);
}

static void claim(ws_notifier *n)
{
	if (n->st.in_flight >= n->o.max_in_flight) {
		n->claiming = false;
		return;
	}
	char lim[16], hold[24];
	snprintf(lim, sizeof(lim), "%u", n->o.max_in_flight - n->st.in_flight);
	/* Held past the call's time-out and the recording of its result. */
	snprintf(hold, sizeof(hold), "%llu", (unsigned long long)(n->o.timeout_ms + 20000));
	const char *params[] = { lim, hold };
	query(n, "SELECT ws_notify_claim($1::integer, $2::bigint)::text", 2, params, claim_done, n);
}

static void scan_done(void *arg, const PGresult *res, const ws_pg_err *err)
{
	ws_notifier *n = arg;
	n->queries--;
	n->st.scans++;
	if (err) {
		n->st.db_errors++;
		ws_warn("notify", "reminder scan failed: %s", err->message);
	} else if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
		n->st.queued_by_scan += strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	}
	if (n->stopping || !n->active) {
		n->claiming = false;
		maybe_finish_stop(n);
		return;
	}
	claim(n);
}

static void tick(ws_notifier *n)
{
	if (!n->active || n->stopping || n->claiming)
		return;
	n->claiming = true;
	uv_update_time(n->loop);
	uint64_t now = uv_now(n->loop);
	if (n->last_scan == 0 || now - n->last_scan >= n->o.scan_ms) {
		n->last_scan = now ? now : 1;
		char at[WS_CLOCK_TEXT_MAX], lead[24];
		ws_clock_format(ws_clock_now(n->clock), at, sizeof(at));
		snprintf(lead, sizeof(lead), "%lld", (long long)(n->o.lead_us / 1000000));
		const char *params[] = { at, lead };
		query(n, "SELECT ws_notify_scan($1::timestamptz, $2::bigint)", 2, params, scan_done, n);
		return;
	}
	claim(n);
}

static void timer_cb(uv_timer_t *t)
{
	tick(t->data);
}

ws_notifier *ws_notifier_new(uv_loop_t *loop, ws_pg_pool *pool, ws_outbound *out, const ws_clock *clock,
			     const ws_notify_opts *opts)
{
	if (!loop || !pool || !out || !clock)
		return NULL;
	ws_notifier *n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->loop = loop;
	n->pool = pool;
	n->out = out;
	n->clock = clock;
	if (opts)
		n->o = *opts;
	if (n->o.lead_us <= 0)
		n->o.lead_us = 24LL * 3600 * 1000000;
	if (!n->o.max_attempts)
		n->o.max_attempts = 8;
	if (!n->o.backoff_ms)
		n->o.backoff_ms = 2000;
	if (!n->o.backoff_max_ms)
		n->o.backoff_max_ms = 600000;
	if (!n->o.max_in_flight)
		n->o.max_in_flight = 8;
	if (!n->o.poll_ms)
		n->o.poll_ms = 500;
	if (!n->o.scan_ms)
		n->o.scan_ms = 1000;
	if (!n->o.timeout_ms)
		n->o.timeout_ms = 10000;
	uv_timer_init(loop, &n->timer);
	n->timer.data = n;
	return n;
}

void ws_notifier_set_active(ws_notifier *n, bool active)
{
	if (!n || n->stopping || n->active == active)
		return;
	n->active = active;
	if (active) {
		n->last_scan = 0;
		uv_timer_start(&n->timer, timer_cb, 0, n->o.poll_ms);
	} else {
		uv_timer_stop(&n->timer);
	}
}

static void timer_closed_cb(uv_handle_t *h)
{
	ws_notifier *n = h->data;
	void (*cb)(void *) = n->stop_cb;
	void *arg = n->stop_arg;
	free(n);
	if (cb)
		cb(arg);
}

static void maybe_finish_stop(ws_notifier *n)
{
	if (!n->stopping || n->queries || n->calls || uv_is_closing((uv_handle_t *)&n->timer))
		return;
	uv_close((uv_handle_t *)&n->timer, timer_closed_cb);
}

void ws_notifier_stop(ws_notifier *n, void (*cb)(void *arg), void *arg)
{
	if (!n) {
		if (cb)
			cb(arg);
		return;
	}
	n->stopping = true;
	n->active = false;
	n->stop_cb = cb;
	n->stop_arg = arg;
	uv_timer_stop(&n->timer);
	for (delivery *d = n->calls; d; d = d->next)
		if (d->call)
			ws_outbound_cancel(d->call);
	maybe_finish_stop(n);
}

void ws_notifier_stats_get(const ws_notifier *n, ws_notify_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (n)
		*out = n->st;
}
