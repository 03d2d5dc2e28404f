/*
 * sim_backup.c - the fleet's backup job: reports a successful backup of
 * every tenant to the service (POST URL/v1/backups, api.md) at start, every
 * --backup-interval of schedule time, and on POST /_sim/backups/report.
 *
 * What is reported follows each tenant's fault: fresh (default) reports
 * completed_at = now - backup_age (0), stale reports now - backup_age (48h
 * unless given), missing reports nothing.  Values are derived from the slug
 * and the time only, so runs are reproducible.
 *
 * The calls go through one curl multi handle on the loop (curl's
 * multi-uv.c pattern), at most MAX_IN_FLIGHT at a time.  A failed report is
 * logged and not retried before the next round: the next round reports
 * every tenant again anyway.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include "sim.h"
#include "wavesched/crypto.h"
#include "wavesched/log.h"

#define MAX_IN_FLIGHT 16
#define CALL_TIMEOUT_MS 10000
#define RESP_CAP 1024

typedef struct bjob {
	struct sim_backup *b;
	CURL *easy;
	char *body;
	char slug[64];
	char resp[RESP_CAP + 1];
	size_t resp_len;
	char err[CURL_ERROR_SIZE];
	struct bjob *prev, *next;
} bjob;

typedef struct bsock {
	uv_poll_t poll;
	struct sim_backup *b;
	curl_socket_t fd;
	struct bsock *prev, *next;
} bsock;

typedef struct waiters {
	ws_http_req **reqs;
	size_t len, cap;
} waiters;

struct sim_backup {
	sim_state *s;
	char *url;
	struct curl_slist *headers;
	int64_t interval_sched_ms;
	uv_timer_t interval, curl_timer;
	CURLM *multi;
	bjob *jobs;
	bsock *socks;
	size_t in_flight;
	/* the round in progress */
	bool running, again;
	size_t next;
	int64_t round_now_ms;
	unsigned reported, failed, skipped;
	waiters cur, queued;   /* answered at the end of this round / the next */
	/* shutdown */
	bool closing;
	size_t handles_open;
	void (*close_cb)(void *);
	void *close_arg;
};

static void round_start(sim_backup *b);

static void handle_closed_cb(uv_handle_t *h)
{
	sim_backup *b = h->data;
	if (h->type == UV_POLL)
		free(h);   /* the bsock: its poll handle is its first member */
	if (--b->handles_open > 0 || !b->closing)
		return;
	void (*cb)(void *) = b->close_cb;
	void *arg = b->close_arg;
	free(b->cur.reqs);
	free(b->queued.reqs);
	free(b->url);
	curl_slist_free_all(b->headers);
	free(b);
	if (cb)
		cb(arg);
}

static void answer_all(waiters *w, int status, json_t *doc)
{
	for (size_t i = 0; i < w->len; i++) {
		char *text = json_dumps(doc, JSON_COMPACT);
		if (text)
			ws_http_respond(w->reqs[i], status, "application/json", text, strlen(text));
		else
			ws_http_respond_error(w->reqs[i], 500, "internal", "out of memory", NULL);
		free(text);
	}
	w->len = 0;
	json_decref(doc);
}

static int waiters_add(waiters *w, ws_http_req *req)
{
	if (w->len == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 4;
		ws_http_req **p = realloc(w->reqs, cap * sizeof(*p));
		if (!p)
			return WS_ENOMEM;
		w->reqs = p;
		w->cap = cap;
	}
	w->reqs[w->len++] = req;
	return 0;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *arg)
{
	bjob *j = arg;
	size_t n = size * nmemb, room = RESP_CAP - j->resp_len;
	memcpy(j->resp + j->resp_len, data, n < room ? n : room);
	j->resp_len += n < room ? n : room;
	j->resp[j->resp_len] = '\0';
	return n;   /* the rest is dropped, not an error: it is only for the log */
}

static void job_free(bjob *j)
{
	sim_backup *b = j->b;
	if (j->prev)
		j->prev->next = j->next;
	else
		b->jobs = j->next;
	if (j->next)
		j->next->prev = j->prev;
	curl_multi_remove_handle(b->multi, j->easy);
	curl_easy_cleanup(j->easy);
	free(j->body);
	free(j);
	b->in_flight--;
}

static void round_end(sim_backup *b)
{
	b->running = false;
	ws_info(SIM_SUBSYS, "backup reports to %s: %u reported, %u failed, %u skipped (missing)",
		b->url, b->reported, b->failed, b->skipped);
	answer_all(&b->cur, 200, json_pack("{s:I, s:I, s:I}", "reported", (json_int_t)b->reported,
					   "failed", (json_int_t)b->failed, "skipped",
					   (json_int_t)b->skipped));
	if (b->again && !b->closing) {
		b->again = false;
		waiters t = b->cur;
		b->cur = b->queued;
		b->queued = t;
		round_start(b);
	}
}

static uint64_t fnv(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

static bjob *job_new(sim_backup *b, const sim_tenant *t)
{
	char when[40], seed[160], sum[65], checksum[80], location[200];
	sim_format_time(b->round_now_ms - t->fault.backup_age_s * 1000, when);
	snprintf(seed, sizeof(seed), "%s@%s", t->slug, when);
	ws_sha256_hex(seed, strlen(seed), sum);
	snprintf(checksum, sizeof(checksum), "sha256:%s", sum);
	snprintf(location, sizeof(location), "s3://simfleet-backups/%s/%s.dump", t->slug, when);
	json_int_t size = 100 * 1048576 + (json_int_t)(fnv(t->slug) % 1000) * 1048576;
	json_t *doc = json_pack("{s:s, s:s, s:s, s:I, s:s}", "tenant", t->slug, "completed_at", when,
				"location", location, "size_bytes", size, "checksum", checksum);
	bjob *j = calloc(1, sizeof(*j));
	if (!doc || !j || !(j->body = json_dumps(doc, JSON_COMPACT)) || !(j->easy = curl_easy_init())) {
		json_decref(doc);
		if (j)
			free(j->body);
		free(j);
		return NULL;
	}
	json_decref(doc);
	j->b = b;
	snprintf(j->slug, sizeof(j->slug), "%s", t->slug);
	CURL *e = j->easy;
	curl_easy_setopt(e, CURLOPT_URL, b->url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, j->body);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(j->body));
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, b->headers);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)CALL_TIMEOUT_MS);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, j);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, j->err);
	curl_easy_setopt(e, CURLOPT_PRIVATE, j);
	return j;
}

/* Starts calls until MAX_IN_FLIGHT are out; ends the round when all are done. */
static void pump(sim_backup *b)
{
	sim_map *ts = b->s->tenants;
	while (b->running && !b->closing && b->in_flight < MAX_IN_FLIGHT &&
	       b->next < sim_map_len(ts)) {
		const sim_tenant *t = sim_map_val_at(ts, b->next++);
		if (t->fault.backup == SIM_BACKUP_MISSING) {
			b->skipped++;
			continue;
		}
		bjob *j = job_new(b, t);
		if (!j) {
			ws_error(SIM_SUBSYS, "tenant=%s backup report: out of memory", t->slug);
			b->failed++;
			continue;
		}
		j->next = b->jobs;
		if (b->jobs)
			b->jobs->prev = j;
		b->jobs = j;
		b->in_flight++;
		CURLMcode rc = curl_multi_add_handle(b->multi, j->easy);
		if (rc != CURLM_OK) {
			ws_error(SIM_SUBSYS, "tenant=%s backup report: %s", t->slug, curl_multi_strerror(rc));
			b->failed++;
			job_free(j);
		}
	}
	if (b->running && b->in_flight == 0 && b->next >= sim_map_len(ts))
		round_end(b);
}

static void check_done(sim_backup *b)
{
	CURLMsg *msg;
	int left;
	while ((msg = curl_multi_info_read(b->multi, &left))) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		bjob *j;
		long code = 0;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&j);
		curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
		if (msg->data.result != CURLE_OK) {
			ws_warn(SIM_SUBSYS, "tenant=%s backup report to %s failed: %s", j->slug, b->url,
				j->err[0] ? j->err : curl_easy_strerror(msg->data.result));
			b->failed++;
		} else if (code < 200 || code > 299) {
			ws_warn(SIM_SUBSYS, "tenant=%s backup report to %s: HTTP %ld: %.300s", j->slug,
				b->url, code, j->resp);
			b->failed++;
		} else {
			ws_debug(SIM_SUBSYS, "tenant=%s backup reported", j->slug);
			b->reported++;
		}
		job_free(j);
	}
	pump(b);
}

static void poll_cb(uv_poll_t *p, int status, int events)
{
	bsock *s = (bsock *)p;
	sim_backup *b = s->b;
	int flags = 0;
	if (status < 0)
		flags = CURL_CSELECT_ERR;
	else
		flags = ((events & UV_READABLE) ? CURL_CSELECT_IN : 0) |
			((events & UV_WRITABLE) ? CURL_CSELECT_OUT : 0);
	int running;
	curl_multi_socket_action(b->multi, s->fd, flags, &running);
	check_done(b);
}

static void sock_close(bsock *s)
{
	sim_backup *b = s->b;
	if (s->prev)
		s->prev->next = s->next;
	else
		b->socks = s->next;
	if (s->next)
		s->next->prev = s->prev;
	uv_poll_stop(&s->poll);
	uv_close((uv_handle_t *)&s->poll, handle_closed_cb);
}

static int socket_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
	(void)e;
	sim_backup *b = userp;
	bsock *s = socketp;
	if (what == CURL_POLL_REMOVE) {
		if (s) {
			curl_multi_assign(b->multi, fd, NULL);
			sock_close(s);
		}
		return 0;
	}
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return -1;
		if (uv_poll_init_socket(b->s->loop, &s->poll, fd) != 0) {
			free(s);
			return -1;
		}
		s->b = b;
		s->fd = fd;
		s->poll.data = b;
		s->next = b->socks;
		if (b->socks)
			b->socks->prev = s;
		b->socks = s;
		b->handles_open++;
		curl_multi_assign(b->multi, fd, s);
	}
	int ev = ((what & CURL_POLL_IN) ? UV_READABLE : 0) | ((what & CURL_POLL_OUT) ? UV_WRITABLE : 0);
	return uv_poll_start(&s->poll, ev, poll_cb) == 0 ? 0 : -1;
}

static void curl_timeout_cb(uv_timer_t *t)
{
	sim_backup *b = t->data;
	int running;
	curl_multi_socket_action(b->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(b);
}

/* Only (re)arms the timer: curl must not be called back from here. */
static int timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	(void)m;
	sim_backup *b = userp;
	if (timeout_ms < 0)
		uv_timer_stop(&b->curl_timer);
	else
		uv_timer_start(&b->curl_timer, curl_timeout_cb, (uint64_t)timeout_ms, 0);
	return 0;
}

static void round_start(sim_backup *b)
{
	b->running = true;
	b->next = 0;
	b->reported = b->failed = b->skipped = 0;
	b->round_now_ms = sim_clock_now_ms(&b->s->clock);
	pump(b);
}

static void interval_cb(uv_timer_t *t)
{
	sim_backup_report_now(t->data, NULL);
}

sim_backup *sim_backup_new(sim_state *s, const char *service_url, const char *token,
			   int64_t interval_sched_ms)
{
	sim_backup *b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->s = s;
	b->interval_sched_ms = interval_sched_ms;
	size_t n = strlen(service_url);
	while (n > 0 && service_url[n - 1] == '/')
		n--;
	b->url = malloc(n + sizeof("/v1/backups"));
	b->multi = curl_multi_init();
	b->headers = curl_slist_append(NULL, "Content-Type: application/json");
	if (b->headers && token) {
		char *auth = malloc(strlen(token) + sizeof("Authorization: Bearer "));
		struct curl_slist *l = NULL;
		if (auth) {
			sprintf(auth, "Authorization: Bearer %s", token);
			l = curl_slist_append(b->headers, auth);
			free(auth);
		}
		if (!l) {
			curl_slist_free_all(b->headers);
			b->headers = NULL;
		}
	}
	if (!b->url || !b->multi || !b->headers) {
		free(b->url);
		curl_slist_free_all(b->headers);
		if (b->multi)
			curl_multi_cleanup(b->multi);
		free(b);
		return NULL;
	}
	memcpy(b->url, service_url, n);
	strcpy(b->url + n, "/v1/backups");
	curl_multi_setopt(b->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(b->multi, CURLMOPT_SOCKETDATA, b);
	curl_multi_setopt(b->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(b->multi, CURLMOPT_TIMERDATA, b);
	uv_timer_init(s->loop, &b->interval);
	uv_timer_init(s->loop, &b->curl_timer);
	b->interval.data = b->curl_timer.data = b;
	b->handles_open = 2;
	return b;
}

int sim_backup_start(sim_backup *b)
{
	uint64_t ms = sim_clock_real_ms(&b->s->clock, b->interval_sched_ms);
	ws_info(SIM_SUBSYS, "backup reports to %s every %lld ms of schedule time (%llu ms real)",
		b->url, (long long)b->interval_sched_ms, (unsigned long long)ms);
	sim_backup_report_now(b, NULL);
	return uv_timer_start(&b->interval, interval_cb, ms, ms);
}

void sim_backup_report_now(sim_backup *b, ws_http_req *req)
{
	if (b->closing) {
		if (req)
			ws_http_respond_error(req, 503, "shutting_down", "simfleet is stopping", NULL);
		return;
	}
	if (b->running) {
		/* This round's snapshot may predate the request: report again after it. */
		b->again = true;
		if (req && waiters_add(&b->queued, req) != 0)
			ws_http_respond_error(req, 500, "internal", "out of memory", NULL);
		return;
	}
	if (req && waiters_add(&b->cur, req) != 0) {
		ws_http_respond_error(req, 500, "internal", "out of memory", NULL);
		return;
	}
	round_start(b);
}

void sim_backup_close(sim_backup *b, void (*cb)(void *), void *arg)
{
	b->closing = true;
	b->close_cb = cb;
	b->close_arg = arg;
	while (b->jobs)
		job_free(b->jobs);   /* removing a handle closes its sockets (socket_cb) */
	curl_multi_cleanup(b->multi);
	b->multi = NULL;
	/* Sockets of cached connections that curl closed without telling. */
	while (b->socks)
		sock_close(b->socks);
	json_t *gone = json_pack("{s:{s:s, s:s}}", "error", "code", "shutting_down", "message",
				 "simfleet is stopping");
	json_incref(gone);
	answer_all(&b->cur, 503, gone);
	answer_all(&b->queued, 503, gone);
	uv_close((uv_handle_t *)&b->interval, handle_closed_cb);
	uv_close((uv_handle_t *)&b->curl_timer, handle_closed_cb);
}
