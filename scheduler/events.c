/*
 * events.c - the event publisher, the per-process hub and its SSE clients
 * (the contract and the glossary are in include/wavesched/events.h).
 *
 * Why the hub insists on order.  Redis Pub/Sub keeps nothing: a message
 * published while a subscriber is reconnecting is gone.  Because seq has no
 * holes, the hub can tell: it delivers seq N only right after N-1, and when
 * a message skips ahead (or the subscription comes back, or there is no
 * Redis) it reads what it has not seen from PostgreSQL.  So Redis makes the
 * fan-out cheap and PostgreSQL makes it complete.
 *
 * Lifetimes.  The ws_events object lives until ws_events_free, after the
 * loop has run dry (pool callbacks may still reach it while the pool
 * closes).  A client lives until its stream has ended and no query of its
 * own is in flight; whichever comes last frees it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "wavesched/events.h"
#include "wavesched/log.h"

#define EV_SUBSYS "events"
#define EV_PAGE 500
#define EV_PAGE_TEXT "500"
/* A client is told to wait this long before reconnecting. */
#define EV_RETRY_MS "2000"

typedef struct ev_client ev_client;

struct ws_events {
	uv_loop_t *loop;
	ws_pg_pool *pool;
	ws_redis *pub;           /* borrowed; may be DISABLED */
	ws_redis *sub;           /* ours; NULL without Redis */
	ws_events_opts o;
	uv_timer_t pub_timer, hub_timer, hb_timer;
	int handles;             /* open timers */
	bool started, stopping, leader, sub_closing;
	void (*stop_cb)(void *arg);
	void *stop_arg;

	/* publisher */
	bool stamping, stamp_again;
	bool republishing;
	int64_t unpublished_from;  /* lowest seq Redis may not have had; 0: none */
	int64_t stamped_top;       /* highest seq this process stamped */
	uint64_t publish_errors;

	/* hub */
	int64_t last;            /* highest seq delivered; -1 until known */
	char origin[40];         /* events_origin of our database */
	bool fetching, fetch_again;
	bool subscribed;
	unsigned ticks;
	ev_client *clients;
	size_t n_clients;
};

struct ev_client {
	ws_events *ev;
	ws_http_req *req;        /* NULL once the stream has ended */
	ev_client *prev, *next;
	ws_events_filter f;      /* our copies */
	char *tenants_param;     /* JSON array text, or NULL */
	char rollout_param[24];  /* "" for every rollout */
	ws_seam seam;
	uint64_t id;             /* the request's, for logs */
	bool inflight;           /* a backlog query of ours is running */
	bool ended;
};

/* ---- events, frames and the seam (no I/O) ------------------------------ */

char *ws_sse_frame(int64_t id, const char *data, size_t len, size_t *out_len)
{
	char *out = NULL;
	size_t n = 0;
	FILE *fp = open_memstream(&out, &n);
	if (!fp)
		return NULL;
	fprintf(fp, "id: %" PRId64 "\n", id);
	/* A line break ends a line; one at the very end adds no empty line. */
	size_t i = 0;
	for (;;) {
		size_t j = i;
		while (j < len && data[j] != '\n' && data[j] != '\r')
			j++;
		fputs("data: ", fp);
		fwrite(data + i, 1, j - i, fp);
		fputc('\n', fp);
		if (j >= len)
			break;
		if (data[j] == '\r' && j + 1 < len && data[j + 1] == '\n')
			j++;
		i = j + 1;
		if (i >= len)
			break;
	}
	fputc('\n', fp);
	if (fclose(fp) != 0) {
		free(out);
		return NULL;
	}
	if (out_len)
		*out_len = n;
	return out;
}

ws_event *ws_event_new(int64_t seq, int64_t rollout, const char *tenant, const char *doc, size_t doc_len)
{
	ws_event *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->refs = 1;
	e->seq = seq;
	e->rollout = rollout;
	e->tenant = tenant ? strdup(tenant) : NULL;
	e->frame = ws_sse_frame(seq, doc, doc_len, &e->frame_len);
	if ((tenant && !e->tenant) || !e->frame) {
		ws_event_unref(e);
		return NULL;
	}
	return e;
}

ws_event *ws_event_ref(ws_event *e)
{
	e->refs++;
	return e;
}

void ws_event_unref(ws_event *e)
{
	if (!e || --e->refs > 0)
		return;
	free(e->tenant);
	free(e->frame);
	free(e);
}

bool ws_event_matches(const ws_event *e, const ws_events_filter *f)
{
	if (f->rollout && e->rollout != f->rollout)
		return false;
	if (!f->scoped)
		return true;
	if (!e->tenant)
		return false;   /* rollout-level events are not a tenant's to see */
	for (size_t i = 0; i < f->n_tenants; i++)
		if (strcmp(f->tenants[i], e->tenant) == 0)
			return true;
	return false;
}

void ws_seam_init(ws_seam *s, int64_t since, size_t cap)
{
	memset(s, 0, sizeof(*s));
	s->last = since < 0 ? 0 : since;
	s->backlog = since >= 0;
	s->cap = cap ? cap : 1;
}

void ws_seam_clear(ws_seam *s)
{
	for (size_t i = 0; i < s->n_held; i++)
		ws_event_unref(s->held[i]);
	free(s->held);
	s->held = NULL;
	s->n_held = 0;
}

ws_seam_verdict ws_seam_live(ws_seam *s, ws_event *e)
{
	if (e->seq <= s->last)
		return WS_SEAM_DROP;
	if (!s->backlog) {
		s->last = e->seq;
		return WS_SEAM_SEND;
	}
	if (s->overflow)
		return WS_SEAM_DROP;   /* the next backlog page covers it */
	if (s->n_held > 0 && e->seq <= s->held[s->n_held - 1]->seq)
		return WS_SEAM_DROP;
	if (s->n_held == s->cap) {
		/* Bounded: give up what is held and read the backlog once more,
		 * which has everything committed by then. */
		ws_seam_clear(s);
		s->overflow = true;
		return WS_SEAM_DROP;
	}
	if (!s->held && !(s->held = calloc(s->cap, sizeof(*s->held)))) {
		s->overflow = true;
		return WS_SEAM_DROP;
	}
	s->held[s->n_held++] = ws_event_ref(e);
	return WS_SEAM_HELD;
}

bool ws_seam_backlog_row(ws_seam *s, int64_t seq)
{
	if (seq <= s->last)
		return false;
	s->last = seq;
	return true;
}

bool ws_seam_backlog_done(ws_seam *s, bool page_full, ws_event ***out, size_t *n_out)
{
	*out = NULL;
	*n_out = 0;
	if (page_full || s->overflow) {
		s->overflow = false;
		return true;
	}
	s->backlog = false;
	size_t k = 0;
	for (size_t i = 0; i < s->n_held; i++) {
		ws_event *e = s->held[i];
		if (e->seq <= s->last) {
			ws_event_unref(e);
			continue;
		}
		s->last = e->seq;
		s->held[k++] = e;
	}
	if (k) {
		*out = s->held;
		*n_out = k;
	} else {
		free(s->held);
	}
	s->held = NULL;
	s->n_held = 0;
	return false;
}

/* ---- clients ----------------------------------------------------------- */

static void client_free(ev_client *cl)
{
	for (size_t i = 0; i < cl->f.n_tenants; i++)
		free(cl->f.tenants[i]);
	free(cl->f.tenants);
	free(cl->tenants_param);
	ws_seam_clear(&cl->seam);
	free(cl);
}

/* Ends the stream (the client resumes with Last-Event-ID) and frees the
 * client unless its query is still out; that query's callback frees it. */
static void client_end(ev_client *cl, const char *why)
{
	if (cl->ended)
		return;
	cl->ended = true;
	ws_events *ev = cl->ev;
	if (cl->prev)
		cl->prev->next = cl->next;
	else
		ev->clients = cl->next;
	if (cl->next)
		cl->next->prev = cl->prev;
	ev->n_clients--;
	ws_debug(EV_SUBSYS, "request=%" PRIu64 " stream ended: %s", cl->id, why);
	ws_http_req *req = cl->req;
	cl->req = NULL;
	if (req)
		ws_http_stream_end(req);
	ws_seam_clear(&cl->seam);
	if (!cl->inflight)
		client_free(cl);
}

static void client_closed_cb(void *arg)
{
	client_end(arg, "the client went away");
}

/* false when the client had to be ended. */
static bool client_write(ev_client *cl, const char *data, size_t len)
{
	if (cl->ended)
		return false;
	int rc = ws_http_stream_write(cl->req, data, len);
	if (rc == 0)
		return true;
	if (rc == WS_ETOOBIG) {
		ws_warn(EV_SUBSYS, "request=%" PRIu64 " client reads too slowly: closing its stream (it may resume with Last-Event-ID %" PRId64 ")",
			cl->id, cl->seam.last);
		client_end(cl, "slow client");
	} else {
		client_end(cl, "write failed");
	}
	return false;
}

static void client_live(ev_client *cl, ws_event *e)
{
	if (cl->ended)
		return;
	if (ws_seam_live(&cl->seam, e) == WS_SEAM_SEND && ws_event_matches(e, &cl->f))
		client_write(cl, e->frame, e->frame_len);
}

static void backlog_query(ev_client *cl);

static void backlog_done_cb(void *arg, const PGresult *res, const ws_pg_err *err)
{
	ev_client *cl = arg;
	/* cl->inflight stays set until the end: a write that fails ends the
	 * client, which must not free it under our feet. */
	int n = 0;
	bool more = false;
	ws_event **out = NULL;
	size_t n_out = 0;
	if (cl->ended)
		goto done;
	if (err) {
		ws_warn(EV_SUBSYS, "request=%" PRIu64 " backlog after seq %" PRId64 ": %s", cl->id, cl->seam.last,
			err->message);
		client_end(cl, "backlog query failed");
		goto done;
	}
	n = PQntuples(res);
	for (int i = 0; i < n && !cl->ended; i++) {
		int64_t seq = strtoll(PQgetvalue(res, i, 0), NULL, 10);
		if (!ws_seam_backlog_row(&cl->seam, seq))
			continue;
		size_t len;
		char *frame = ws_sse_frame(seq, PQgetvalue(res, i, 3), (size_t)PQgetlength(res, i, 3), &len);
		if (!frame)
			client_end(cl, "out of memory");
		else
			client_write(cl, frame, len);
		free(frame);
	}
	if (cl->ended)
		goto done;
	more = ws_seam_backlog_done(&cl->seam, n == EV_PAGE, &out, &n_out);
	for (size_t i = 0; i < n_out; i++) {
		if (!cl->ended && ws_event_matches(out[i], &cl->f))
			client_write(cl, out[i]->frame, out[i]->frame_len);
		ws_event_unref(out[i]);
	}
	free(out);
done:
	cl->inflight = false;
	if (cl->ended)
		client_free(cl);
	else if (more)
		backlog_query(cl);
}

static void backlog_query(ev_client *cl)
{
	char after[24];
	snprintf(after, sizeof(after), "%" PRId64, cl->seam.last);
	const char *params[] = { after, cl->rollout_param[0] ? cl->rollout_param : NULL, cl->tenants_param };
	int rc = ws_pg_query(cl->ev->pool,
			     "SELECT seq, tenant, rollout, doc FROM ws_events_since($1::bigint, " EV_PAGE_TEXT
			     ", $2::bigint, CASE WHEN $3::jsonb IS NULL THEN NULL"
			     " ELSE ARRAY(SELECT jsonb_array_elements_text($3::jsonb)) END)",
			     3, params, backlog_done_cb, cl);
	if (rc) {
		client_end(cl, "the database is not reachable");
		return;
	}
	cl->inflight = true;
}

int ws_events_attach(ws_events *ev, ws_http_req *req, int64_t since, const ws_events_filter *f)
{
	if (ev->stopping || !ev->started) {
		ws_http_respond_error(req, 503, "unavailable", "the service is shutting down; retry later", NULL);
		return WS_EUNAVAIL;
	}
	if (ev->n_clients >= ev->o.max_clients) {
		ws_http_add_header(req, "Retry-After", "5");
		ws_http_respond_error(req, 503, "unavailable", "too many event streams on this process; retry later",
				      NULL);
		return WS_EUNAVAIL;
	}
	ev_client *cl = calloc(1, sizeof(*cl));
	json_t *arr = f->scoped ? json_array() : NULL;
	if (!cl || (f->scoped && !arr))
		goto nomem;
	cl->ev = ev;
	cl->id = ws_http_req_id(req);
	cl->f.rollout = f->rollout;
	cl->f.scoped = f->scoped;
	if (f->n_tenants && !(cl->f.tenants = calloc(f->n_tenants, sizeof(char *))))
		goto nomem;
	for (size_t i = 0; i < f->n_tenants; i++) {
		if (!(cl->f.tenants[cl->f.n_tenants] = strdup(f->tenants[i])))
			goto nomem;
		cl->f.n_tenants++;
		json_array_append_new(arr, json_string(f->tenants[i]));
	}
	if (arr && !(cl->tenants_param = json_dumps(arr, JSON_COMPACT)))
		goto nomem;
	json_decref(arr);
	arr = NULL;
	if (f->rollout)
		snprintf(cl->rollout_param, sizeof(cl->rollout_param), "%" PRId64, f->rollout);
	ws_seam_init(&cl->seam, since, ev->o.max_held);

	ws_http_add_header(req, "Cache-Control", "no-store");
	ws_http_add_header(req, "X-Accel-Buffering", "no");   /* proxies must not hold events back */
	if (ws_http_stream_begin(req, 200, "text/event-stream", client_closed_cb, cl) != 0) {
		ws_http_stream_end(req);
		client_free(cl);
		return WS_EIO;
	}
	cl->req = req;
	cl->next = ev->clients;
	if (ev->clients)
		ev->clients->prev = cl;
	ev->clients = cl;
	ev->n_clients++;
	static const char hello[] = "retry: " EV_RETRY_MS "\n: connected\n\n";
	if (!client_write(cl, hello, sizeof(hello) - 1))
		return WS_EIO;
	/* Registered before the backlog query starts, so that whatever the
	 * query's snapshot misses arrives live (and is held meanwhile). */
	if (cl->seam.backlog)
		backlog_query(cl);
	return 0;

nomem:
	json_decref(arr);
	if (cl)
		client_free(cl);
	ws_http_respond_error(req, 500, "internal", "out of memory", NULL);
	return WS_ENOMEM;
}

size_t ws_events_clients(const ws_events *ev)
{
	return ev ? ev->n_clients : 0;
}

/* ---- the hub ----------------------------------------------------------- */

static void hub_fetch(ws_events *ev);

static void hub_deliver(ws_events *ev, ws_event *e)
{
	ev->last = e->seq;
	for (ev_client *cl = ev->clients, *next; cl; cl = next) {
		next = cl->next;   /* a failed write unlinks cl */
		client_live(cl, e);
	}
}

/* Rows (seq, tenant, rollout, doc) in seq order.  `complete`: they are all
 * there is after ev->last (a read from PostgreSQL); otherwise (the
 * publisher's own batch) a row beyond last + 1 means the hub missed some. */
static int hub_rows(ws_events *ev, const PGresult *res, bool complete)
{
	int n = PQntuples(res);
	for (int i = 0; i < n && !ev->stopping; i++) {
		int64_t seq = strtoll(PQgetvalue(res, i, 0), NULL, 10);
		if (seq <= ev->last)
			continue;
		if (seq != ev->last + 1) {
			if (!complete) {
				hub_fetch(ev);
				return n;
			}
			/* Not expected (seq is dense): go on rather than stall. */
			ws_warn(EV_SUBSYS, "seq %" PRId64 " follows %" PRId64 ": events in between are missing", seq,
				ev->last);
		}
		int64_t rollout = PQgetisnull(res, i, 2) ? 0 : strtoll(PQgetvalue(res, i, 2), NULL, 10);
		ws_event *e = ws_event_new(seq, rollout, PQgetisnull(res, i, 1) ? NULL : PQgetvalue(res, i, 1),
					   PQgetvalue(res, i, 3), (size_t)PQgetlength(res, i, 3));
		if (!e) {
			ws_error(EV_SUBSYS, "out of memory delivering seq %" PRId64, seq);
			return n;
		}
		hub_deliver(ev, e);
		ws_event_unref(e);
	}
	return n;
}

static void hub_fetch_cb(void *arg, const PGresult *res, const ws_pg_err *err)
{
	ws_events *ev = arg;
	ev->fetching = false;
	if (ev->stopping)
		return;
	if (err) {
		ws_debug(EV_SUBSYS, "reading events after seq %" PRId64 ": %s (retrying on the next wake-up)",
			 ev->last, err->message);
		return;
	}
	bool again = ev->fetch_again;
	ev->fetch_again = false;
	if (ev->last < 0) {
		ev->last = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		snprintf(ev->origin, sizeof(ev->origin), "%s", PQgetvalue(res, 0, 1));
		ws_debug(EV_SUBSYS, "live events start after seq %" PRId64 " (origin %s)", ev->last, ev->origin);
	} else if (hub_rows(ev, res, true) == EV_PAGE) {
		again = true;
	}
	if (again)
		hub_fetch(ev);
}

/* Reads what the hub has not delivered yet (or, the first time, where the
 * live stream starts).  One read at a time; a wake-up meanwhile asks for
 * another. */
static void hub_fetch(ws_events *ev)
{
	if (ev->stopping)
		return;
	if (ev->fetching) {
		ev->fetch_again = true;
		return;
	}
	int rc;
	if (ev->last < 0) {
		rc = ws_pg_query(ev->pool, "SELECT top, origin FROM ws_events_top()", 0, NULL, hub_fetch_cb, ev);
	} else {
		char after[24];
		snprintf(after, sizeof(after), "%" PRId64, ev->last);
		const char *params[] = { after };
		rc = ws_pg_query(ev->pool,
				 "SELECT seq, tenant, rollout, doc FROM ws_events_since($1::bigint, " EV_PAGE_TEXT
				 ", NULL, NULL)",
				 1, params, hub_fetch_cb, ev);
	}
	if (rc == 0)
		ev->fetching = true;
}

/* A message of the Redis channel: the event JSON of 0008's ws__event_doc. */
static void hub_message_cb(void *arg, const char *payload, size_t len)
{
	ws_events *ev = arg;
	if (ev->stopping || ev->last < 0)
		return;   /* the first read from PostgreSQL will have it */
	json_error_t jerr;
	json_t *doc = json_loadb(payload, len, 0, &jerr);
	json_t *id = json_object_get(doc, "id");
	json_t *rollout = json_object_get(doc, "rollout");
	json_t *tenant = json_object_get(doc, "tenant");
	json_t *origin = json_object_get(doc, "origin");
	if (json_is_string(origin) && strcmp(json_string_value(origin), ev->origin) != 0) {
		json_decref(doc);
		return;   /* another deployment sharing this Redis */
	}
	if (!json_is_integer(id) || json_integer_value(id) < 1 || !(json_is_integer(rollout) || json_is_null(rollout)) ||
	    !(json_is_string(tenant) || json_is_null(tenant))) {
		ws_warn(EV_SUBSYS, "channel %s: ignoring a message that is not an event (%.80s%s): %s",
			WS_EVENTS_CHANNEL, payload, len > 80 ? "..." : "",
			doc ? "expected {\"id\": seq, \"rollout\", \"tenant\", ...}" : jerr.text);
		json_decref(doc);
		hub_fetch(ev);   /* whatever it was meant to say is in PostgreSQL */
		return;
	}
	int64_t seq = json_integer_value(id);
	if (seq == ev->last + 1) {
		ws_event *e = ws_event_new(seq, json_is_integer(rollout) ? json_integer_value(rollout) : 0,
					   json_string_value(tenant), payload, len);
		if (e) {
			hub_deliver(ev, e);
			ws_event_unref(e);
		}
	} else if (seq > ev->last + 1) {
		hub_fetch(ev);   /* some were missed: PostgreSQL has them in order */
	}
	json_decref(doc);
}

static void hub_subscribed_cb(void *arg, bool on)
{
	ws_events *ev = arg;
	ev->subscribed = on;
	if (on) {
		ws_info(EV_SUBSYS, "subscribed to %s", WS_EVENTS_CHANNEL);
		hub_fetch(ev);   /* what was published while we were not listening */
	} else if (!ev->stopping) {
		ws_warn(EV_SUBSYS, "lost the subscription to %s: reading events from PostgreSQL until it is back",
			WS_EVENTS_CHANNEL);
	}
}

static void hub_timer_cb(uv_timer_t *t)
{
	ws_events *ev = t->data;
	/* Subscribed, the timer only guards against a message lost without
	 * the link noticing; otherwise it is the fallback's clock. */
	uint64_t every = ev->o.subscribed_poll_ms / ev->o.fallback_poll_ms;
	if (!ev->subscribed || ++ev->ticks >= (every ? every : 1)) {
		ev->ticks = 0;
		hub_fetch(ev);
	}
}

static void heartbeat_cb(uv_timer_t *t)
{
	ws_events *ev = t->data;
	static const char beat[] = ": keep-alive\n\n";
	for (ev_client *cl = ev->clients, *next; cl; cl = next) {
		next = cl->next;
		client_write(cl, beat, sizeof(beat) - 1);
	}
}

/* ---- the publisher ----------------------------------------------------- */

static void stamp(ws_events *ev);

typedef struct pub_req {
	ws_events *ev;
	int64_t seq;
} pub_req;

static void mark_unpublished(ws_events *ev, int64_t seq)
{
	if (!ev->unpublished_from || seq < ev->unpublished_from)
		ev->unpublished_from = seq;
}

static void publish_cb(void *arg, void *reply, const char *err)
{
	pub_req *pr = arg;
	ws_events *ev = pr->ev;
	(void)reply;
	if (err) {
		mark_unpublished(ev, pr->seq);
		if (ev->publish_errors++ == 0)
			ws_warn(EV_SUBSYS, "PUBLISH %s: %s (events stay in PostgreSQL and are published when Redis is back)",
				WS_EVENTS_CHANNEL, err);
	}
	free(pr);
}

/* PUBLISHes rows (seq, tenant, rollout, doc) in order; returns the seq of
 * the first one that could not be sent, or 0. */
static int64_t publish_rows(ws_events *ev, const PGresult *res)
{
	int n = PQntuples(res);
	for (int i = 0; i < n; i++) {
		int64_t seq = strtoll(PQgetvalue(res, i, 0), NULL, 10);
		pub_req *pr = ws_redis_get_state(ev->pub) == WS_REDIS_UP ? malloc(sizeof(*pr)) : NULL;
		if (!pr)
			return seq;
		*pr = (pub_req){ .ev = ev, .seq = seq };
		const char *argv[] = { "PUBLISH", WS_EVENTS_CHANNEL, PQgetvalue(res, i, 3) };
		size_t argvlen[] = { 7, strlen(WS_EVENTS_CHANNEL), (size_t)PQgetlength(res, i, 3) };
		if (ws_redis_command(ev->pub, 3, argv, argvlen, publish_cb, pr) != 0) {
			free(pr);
			return seq;
		}
	}
	return 0;
}

static void republish(ws_events *ev);

static void republish_cb(void *arg, const PGresult *res, const ws_pg_err *err)
{
	ws_events *ev = arg;
	ev->republishing = false;
	if (ev->stopping || err)
		return;   /* the next timer tries again */
	int n = PQntuples(res);
	int64_t failed = publish_rows(ev, res);
	if (failed) {
		ev->unpublished_from = failed;
		return;
	}
	if (n == 0) {
		ev->unpublished_from = 0;
		return;
	}
	int64_t upto = strtoll(PQgetvalue(res, n - 1, 0), NULL, 10);
	ws_info(EV_SUBSYS, "published events %" PRId64 "..%" PRId64 " that Redis missed", ev->unpublished_from,
		upto);
	ev->publish_errors = 0;   /* the next outage is worth a warning again */
	/* Stamped after this read began: still to do. */
	ev->unpublished_from = upto < ev->stamped_top ? upto + 1 : 0;
	if (ev->unpublished_from)
		republish(ev);
}

/* Publishes, in order, what was stamped while Redis could not take it:
 * PostgreSQL kept it, and consumers of the channel get it late but whole. */
static void republish(ws_events *ev)
{
	if (ev->stopping || !ev->leader || ev->republishing || !ev->unpublished_from ||
	    ws_redis_get_state(ev->pub) != WS_REDIS_UP)
		return;
	char after[24];
	snprintf(after, sizeof(after), "%" PRId64, ev->unpublished_from - 1);
	const char *params[] = { after };
	if (ws_pg_query(ev->pool,
			"SELECT seq, tenant, rollout, doc FROM ws_events_since($1::bigint, " EV_PAGE_TEXT ", NULL, NULL)",
			1, params, republish_cb, ev) == 0)
		ev->republishing = true;
}

static void stamp(ws_events *ev);

static void stamp_cb(void *arg, const PGresult *res, const ws_pg_err *err)
{
	ws_events *ev = arg;
	ev->stamping = false;
	if (ev->stopping)
		return;
	if (err) {
		ws_warn(EV_SUBSYS, "stamping events: %s (retrying on the next wake-up)", err->message);
		return;
	}
	bool again = ev->stamp_again;
	ev->stamp_again = false;
	int n = PQntuples(res);
	if (n) {
		int64_t first = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		ev->stamped_top = strtoll(PQgetvalue(res, n - 1, 0), NULL, 10);
		/* Behind older unpublished ones, these wait their turn: Redis
		 * consumers get events in seq order. */
		int64_t failed = ev->unpublished_from ? first : publish_rows(ev, res);
		if (failed)
			mark_unpublished(ev, failed);
		republish(ev);
		ws_debug(EV_SUBSYS, "stamped %d events up to seq %" PRId64, n, ev->stamped_top);
	}
	/* This process's own clients need not wait for Redis. */
	if (n && ev->last >= 0)
		hub_rows(ev, res, false);
	if (again || n == EV_PAGE)
		stamp(ev);
}

static void stamp(ws_events *ev)
{
	if (ev->stopping || !ev->leader)
		return;
	if (ev->stamping) {
		ev->stamp_again = true;
		return;
	}
	if (ws_pg_query(ev->pool, "SELECT seq, tenant, rollout, doc FROM ws_events_stamp(" EV_PAGE_TEXT ")", 0,
			NULL, stamp_cb, ev) == 0)
		ev->stamping = true;
}

static void pub_timer_cb(uv_timer_t *t)
{
	stamp(t->data);
	republish(t->data);
}

static void notify_cb(void *arg, const char *channel, const char *payload)
{
	ws_events *ev = arg;
	(void)payload;
	if (ev->stopping)
		return;
	if (strcmp(channel, "ws_events") == 0)
		stamp(ev);
	else if (!ev->subscribed)
		hub_fetch(ev);   /* ws_events_seq: without Redis, this is the wake-up */
}

/* ---- life -------------------------------------------------------------- */

static void opts_defaults(ws_events_opts *o)
{
	if (!o->publish_poll_ms)
		o->publish_poll_ms = 5000;
	if (!o->fallback_poll_ms)
		o->fallback_poll_ms = 2000;
	if (!o->subscribed_poll_ms)
		o->subscribed_poll_ms = 15000;
	if (!o->heartbeat_ms)
		o->heartbeat_ms = 15000;
	if (!o->max_held)
		o->max_held = 1000;
	if (!o->max_clients)
		o->max_clients = 1000;
}

ws_events *ws_events_new(uv_loop_t *loop, ws_pg_pool *pool, ws_redis *publish_link, const char *redis_url,
			 const ws_events_opts *opts, ws_diags *d)
{
	ws_events *ev = calloc(1, sizeof(*ev));
	if (!ev)
		return NULL;
	ev->loop = loop;
	ev->pool = pool;
	ev->pub = publish_link;
	ev->last = -1;
	if (opts)
		ev->o = *opts;
	opts_defaults(&ev->o);
	if (redis_url && *redis_url) {
		ev->sub = ws_redis_new(loop, redis_url, d);
		if (!ev->sub ||
		    ws_redis_subscribe(ev->sub, WS_EVENTS_CHANNEL, hub_message_cb, hub_subscribed_cb, ev) != 0) {
			if (ev->sub)
				ws_redis_close(ev->sub, NULL, NULL);
			free(ev);
			return NULL;
		}
	}
	uv_timer_init(loop, &ev->pub_timer);
	uv_timer_init(loop, &ev->hub_timer);
	uv_timer_init(loop, &ev->hb_timer);
	ev->pub_timer.data = ev->hub_timer.data = ev->hb_timer.data = ev;
	ev->handles = 3;
	return ev;
}

void ws_events_start(ws_events *ev)
{
	if (!ev || ev->started || ev->stopping)
		return;
	ev->started = true;
	if (ws_pg_listen(ev->pool, "ws_events", notify_cb, ev) != 0 ||
	    ws_pg_listen(ev->pool, "ws_events_seq", notify_cb, ev) != 0)
		ws_warn(EV_SUBSYS, "cannot LISTEN for events: relying on the timers");
	uv_timer_start(&ev->hub_timer, hub_timer_cb, ev->o.fallback_poll_ms, ev->o.fallback_poll_ms);
	uv_timer_start(&ev->hb_timer, heartbeat_cb, ev->o.heartbeat_ms, ev->o.heartbeat_ms);
	if (ev->sub)
		ws_redis_start(ev->sub);
	hub_fetch(ev);
}

void ws_events_set_leader(ws_events *ev, bool leader)
{
	if (!ev || ev->stopping || ev->leader == leader)
		return;
	ev->leader = leader;
	if (leader) {
		uv_timer_start(&ev->pub_timer, pub_timer_cb, ev->o.publish_poll_ms, ev->o.publish_poll_ms);
		stamp(ev);
	} else {
		uv_timer_stop(&ev->pub_timer);
	}
}

static void maybe_stopped(ws_events *ev)
{
	if (ev->handles > 0 || ev->sub_closing)
		return;
	void (*cb)(void *) = ev->stop_cb;
	ev->stop_cb = NULL;
	if (cb)
		cb(ev->stop_arg);
}

static void timer_closed_cb(uv_handle_t *h)
{
	ws_events *ev = h->data;
	ev->handles--;
	maybe_stopped(ev);
}

static void sub_closed_cb(void *arg)
{
	ws_events *ev = arg;
	ev->sub = NULL;
	ev->sub_closing = false;
	maybe_stopped(ev);
}

void ws_events_stop(ws_events *ev, void (*cb)(void *arg), void *arg)
{
	if (!ev || ev->stopping) {
		if (cb)
			cb(arg);
		return;
	}
	ev->stopping = true;
	ev->leader = false;
	ev->stop_cb = cb;
	ev->stop_arg = arg;
	size_t n = ev->n_clients;
	while (ev->clients)
		client_end(ev->clients, "the service is shutting down");
	if (n)
		ws_info(EV_SUBSYS, "ended %zu event streams for shutdown", n);
	uv_close((uv_handle_t *)&ev->pub_timer, timer_closed_cb);
	uv_close((uv_handle_t *)&ev->hub_timer, timer_closed_cb);
	uv_close((uv_handle_t *)&ev->hb_timer, timer_closed_cb);
	if (ev->sub) {
		ev->sub_closing = true;
		ws_redis_close(ev->sub, sub_closed_cb, ev);
	}
}

void ws_events_free(ws_events *ev)
{
	free(ev);
}
