/*
 * server.c - `wavesched serve`: one libuv loop with the database pool, the
 * optional Redis link, the HTTP server and the API.
 *
 * Shutdown (SIGTERM or SIGINT) drains: the HTTP server stops accepting and
 * lets requests in flight finish within the grace period, then Redis and the
 * pool close, then the signal handles, and the loop runs dry.  Each step
 * starts from the previous one's callback, so nothing is freed while a
 * callback could still reach it.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>
#include "ws_config.h"
#include <unistd.h>
#include "wavesched/api.h"
#include "wavesched/clock.h"
#include "wavesched/crypto.h"
#include "wavesched/engine.h"
#include "wavesched/events.h"
#include "wavesched/lease.h"
#include "wavesched/outbound.h"
#include "wavesched/log.h"
#include "wavesched/notify.h"
#include "wavesched/server.h"

typedef struct server {
	uv_loop_t *loop;
	const ws_config *cfg;
	ws_pg_pool *pool;
	ws_redis *redis;
	ws_fleet_store *fleet;
	ws_metrics *metrics;
	ws_api *api;
	ws_http_server *http;
	ws_clock *clock;
	ws_outbound *outbound;
	ws_engine *engine;
	ws_pg_pool *lease_pool;  /* its own connection: a renewal never waits behind work */
	ws_lease *lease;
	ws_events *events;
	ws_pg_pool *notify_pool;  /* its own connection: notifications never queue behind the engine */
	ws_notifier *notifier;
	ws_migration_set migrations;
	uv_signal_t sigterm, sigint;
	bool stopping;
	int closing_handles;
} server;

static void signal_closed_cb(uv_handle_t *h)
{
	(void)h;
}

static void pool_closed_cb(void *arg)
{
	server *s = arg;
	s->pool = NULL;
	uv_close((uv_handle_t *)&s->sigterm, signal_closed_cb);
	uv_close((uv_handle_t *)&s->sigint, signal_closed_cb);
	ws_info("serve", "stopped");
}

static void redis_closed_cb(void *arg)
{
	server *s = arg;
	s->redis = NULL;
	ws_pg_pool_close(s->pool, pool_closed_cb, s);
}

static void http_closed_cb(void *arg)
{
	server *s = arg;
	s->http = NULL;
	ws_api_set_http(s->api, NULL);
	ws_redis_close(s->redis, redis_closed_cb, s);
}

static void events_stopped_cb(void *arg)
{
	server *s = arg;
	ws_http_server_shutdown(s->http, s->cfg->shutdown_grace_ms, http_closed_cb, s);
}

static void outbound_closed_cb(void *arg)
{
	server *s = arg;
	s->outbound = NULL;
	/* Event streams never end by themselves: ended first, they do not hold
	 * the HTTP drain for its whole grace period. */
	ws_events_stop(s->events, events_stopped_cb, s);
}

static void lease_pool_closed_cb(void *arg)
{
	server *s = arg;
	s->lease_pool = NULL;
	ws_outbound_close(s->outbound, outbound_closed_cb, s);
}

static void lease_stopped_cb(void *arg)
{
	server *s = arg;
	s->lease = NULL;
	ws_pg_pool_close(s->lease_pool, lease_pool_closed_cb, s);
}

static void engine_stopped_cb(void *arg)
{
	server *s = arg;
	/* Released, not left to expire: another process takes over at once. */
	ws_lease_stop(s->lease, lease_stopped_cb, s);
}

static void notify_pool_closed_cb(void *arg)
{
	server *s = arg;
	s->notify_pool = NULL;
	ws_engine_stop(s->engine, engine_stopped_cb, s);
}

/* Notifications stop first: their calls in flight are cancelled and handed
 * back for the next leader, then their pool closes. */
static void notifier_stopped_cb(void *arg)
{
	server *s = arg;
	s->notifier = NULL;
	ws_pg_pool_close(s->notify_pool, notify_pool_closed_cb, s);
}

static void lease_change_cb(void *arg, bool leader, int64_t epoch)
{
	server *s = arg;
	ws_engine_leader(s->engine, leader, epoch);
	ws_events_set_leader(s->events, leader);
	ws_notifier_set_active(s->notifier, leader);
}

static void signal_cb(uv_signal_t *h, int signum)
{
	server *s = h->data;
	if (s->stopping) {
		/* A second signal means "now": whoever sent it has decided not
		 * to wait for the drain.  Nothing is lost: every decision is a
		 * committed row in PostgreSQL. */
		ws_warn("serve", "signal %d again while draining: exiting without waiting", signum);
		exit(1);
	}
	s->stopping = true;
	ws_info("serve", "signal %d: draining (grace %llu ms)", signum,
		(unsigned long long)s->cfg->shutdown_grace_ms);
	ws_notifier_stop(s->notifier, notifier_stopped_cb, s);
}

/* "host:pid:random": unique per process, readable in the lease row. */
static void lease_holder(char *buf, size_t n)
{
	char host[64] = "localhost";
	gethostname(host, sizeof(host) - 1);
	unsigned char r[4] = { 0 };
	(void)ws_random_bytes(r, sizeof(r));
	snprintf(buf, n, "%s:%ld:%02x%02x%02x%02x", host, (long)getpid(), r[0], r[1], r[2], r[3]);
}

int ws_serve(const ws_config *cfg, ws_diags *d)
{
	server s;
	memset(&s, 0, sizeof(s));
	s.cfg = cfg;
	int rc = 0;

	if (!cfg->database_url) {
		ws_diag_add(d, NULL, 0, 0,
			    "no database configured: set WAVESCHED_DATABASE_URL or database_url in the config file");
		return WS_EINVAL;
	}
	/* A malformed conninfo is a configuration error, said as such, rather
	 * than a pool that can never connect. */
	char *perr = NULL;
	PQconninfoOption *opts = PQconninfoParse(cfg->database_url, &perr);
	if (!opts) {
		size_t n = perr ? strlen(perr) : 0;
		while (n && (perr[n - 1] == '\n' || perr[n - 1] == ' '))
			perr[--n] = '\0';
		ws_diag_add(d, NULL, 0, 0, "invalid database_url (WAVESCHED_DATABASE_URL): %s",
			    perr ? perr : "out of memory");
		PQfreemem(perr);
		return WS_EINVAL;
	}
	PQconninfoFree(opts);
	/* Migrations are read once: /readyz compares the database with them. */
	if ((rc = ws_migrations_load(ws_config_migrations_dir(cfg), &s.migrations, d)))
		return rc;

	uv_loop_t loop;
	if (uv_loop_init(&loop) != 0) {
		ws_migrations_free(&s.migrations);
		ws_diag_add(d, NULL, 0, 0, "cannot create the event loop");
		return WS_EIO;
	}
	s.loop = &loop;

	ws_pg_opts po = {
		.conninfo = cfg->database_url,
		.size = cfg->db_pool_size,
		.query_timeout_ms = cfg->query_timeout_ms,
	};
	s.pool = ws_pg_pool_new(&loop, &po);
	s.redis = ws_redis_new(&loop, cfg->redis_url, d);
	s.metrics = ws_metrics_new();
	s.fleet = s.pool ? ws_fleet_store_new(&loop, s.pool) : NULL;
	s.events = s.pool && s.redis ? ws_events_new(&loop, s.pool, s.redis, cfg->redis_url, NULL, d) : NULL;
	if (!s.pool || !s.redis || !s.metrics || !s.fleet || !s.events) {
		rc = d->len ? WS_EINVAL : WS_ENOMEM;
		goto fail_early;
	}
	s.clock = ws_clock_new(cfg->time_scale, cfg->time_origin_us);
	ws_outbound_policy *op = ws_outbound_policy_parse(cfg->outbound_allow, cfg->outbound_deny, d);
	s.outbound = op ? ws_outbound_new(&loop, op, NULL, d) : NULL;
	ws_pg_opts lpo = {
		.conninfo = cfg->database_url,
		.size = 1,
		.query_timeout_ms = cfg->lease_ttl_ms / 2 ? cfg->lease_ttl_ms / 2 : 1000,
	};
	s.lease_pool = ws_pg_pool_new(&loop, &lpo);
	ws_engine_deps ed = {
		.loop = &loop, .pool = s.pool, .fleet = s.fleet, .clock = s.clock, .outbound = s.outbound,
		.metrics = s.metrics,
		.prometheus_url = cfg->prometheus_url, .metric_interval_s = cfg->metric_interval_s,
	};
	s.engine = s.clock && s.outbound ? ws_engine_new(&ed) : NULL;
	char holder[128];
	lease_holder(holder, sizeof(holder));
	ws_lease_opts lo = { .holder = holder, .ttl_ms = (uint32_t)cfg->lease_ttl_ms };
	s.lease = s.lease_pool && s.engine ? ws_lease_new(&loop, s.lease_pool, &lo, lease_change_cb, &s, d)
					   : NULL;
	ws_pg_opts npo = { .conninfo = cfg->database_url, .size = 1, .query_timeout_ms = cfg->query_timeout_ms };
	s.notify_pool = ws_pg_pool_new(&loop, &npo);
	ws_notify_opts no = {
		.lead_us = (int64_t)cfg->notify_lead_ms * 1000,
		.max_attempts = cfg->notify_max_attempts,
		.backoff_ms = cfg->notify_backoff_ms,
		.backoff_max_ms = cfg->notify_backoff_max_ms,
	};
	s.notifier = s.notify_pool && s.outbound && s.clock
			     ? ws_notifier_new(&loop, s.notify_pool, s.outbound, s.clock, &no) : NULL;
	if (!s.clock || !s.outbound || !s.lease_pool || !s.engine || !s.lease || !s.notifier) {
		rc = d->len ? WS_EINVAL : WS_ENOMEM;
		goto fail_early;
	}
	ws_api_deps deps = {
		.loop = &loop, .config = cfg, .pool = s.pool, .redis = s.redis, .fleet = s.fleet,
		.metrics = s.metrics, .migrations = &s.migrations, .clock = s.clock,
		.engine = s.engine, .lease = s.lease,
	};
	s.api = ws_api_new(&deps);
	ws_http_limits lim = {
		.max_header_bytes = cfg->max_header_bytes,
		.max_body_bytes = cfg->max_body_bytes,
		.idle_timeout_ms = cfg->idle_timeout_ms,
	};
	s.http = s.api ? ws_http_server_new(&loop, &lim, ws_api_handle, ws_api_request_done, s.api) : NULL;
	if (!s.http) {
		rc = WS_ENOMEM;
		goto fail_early;
	}
	if ((rc = ws_http_server_listen(s.http, cfg->listen, d))) {
		/* Nothing has started yet: shut the server down on the loop so its
		 * handle closes properly. */
		ws_http_server_shutdown(s.http, 0, NULL, NULL);
		s.http = NULL;
		uv_run(&loop, UV_RUN_DEFAULT);
		goto fail_early;
	}
	ws_api_set_http(s.api, s.http);
	ws_api_set_events(s.api, s.events);

	uv_signal_init(&loop, &s.sigterm);
	uv_signal_init(&loop, &s.sigint);
	s.sigterm.data = s.sigint.data = &s;
	uv_signal_start(&s.sigterm, signal_cb, SIGTERM);
	uv_signal_start(&s.sigint, signal_cb, SIGINT);
	signal(SIGPIPE, SIG_IGN);

	ws_pg_pool_start(s.pool);
	ws_pg_pool_start(s.lease_pool);
	ws_pg_pool_start(s.notify_pool);
	ws_redis_start(s.redis);
	ws_events_start(s.events);
	ws_lease_start(s.lease);
	ws_info("serve", "listening on %s (port %d), version %s, time scale %g", cfg->listen,
		ws_http_server_port(s.http), WS_VERSION, cfg->time_scale);
	uv_run(&loop, UV_RUN_DEFAULT);

	ws_engine_free(s.engine);
	ws_clock_free(s.clock);
	ws_api_free(s.api);
	ws_events_free(s.events);
	ws_fleet_store_free(s.fleet);
	ws_metrics_free(s.metrics);
	ws_migrations_free(&s.migrations);
	if (uv_loop_close(&loop) != 0) {
		ws_error("serve", "handles left open at exit");
		return WS_EIO;
	}
	return 0;

fail_early:
	if (s.notifier)
		ws_notifier_stop(s.notifier, NULL, NULL);
	if (s.notify_pool)
		ws_pg_pool_close(s.notify_pool, NULL, NULL);
	if (s.lease)
		ws_lease_stop(s.lease, NULL, NULL);
	if (s.engine)
		ws_engine_stop(s.engine, NULL, NULL);
	if (s.lease_pool)
		ws_pg_pool_close(s.lease_pool, NULL, NULL);
	if (s.outbound)
		ws_outbound_close(s.outbound, NULL, NULL);
	ws_api_free(s.api);
	ws_fleet_store_free(s.fleet);
	ws_metrics_free(s.metrics);
	if (s.events)
		ws_events_stop(s.events, NULL, NULL);
	if (s.redis)
		ws_redis_close(s.redis, NULL, NULL);
	if (s.pool)
		ws_pg_pool_close(s.pool, NULL, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	ws_events_free(s.events);
	ws_engine_free(s.engine);
	ws_clock_free(s.clock);
	ws_migrations_free(&s.migrations);
	return rc ? rc : WS_EIO;
}
