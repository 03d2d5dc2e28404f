/*
 * api.h - the HTTP API of api.md: routing, authentication, handlers.
 *
 * The API owns no connections: it is handed the loop's shared parts (pool,
 * Redis, fleet store, metrics) and answers requests from the HTTP server.
 */
#ifndef WAVESCHED_API_H
#define WAVESCHED_API_H

#include <stdint.h>
#include "wavesched/config.h"
#include "wavesched/fleet_store.h"
#include "wavesched/http.h"
#include "wavesched/metrics.h"
#include "wavesched/migrate.h"
#include "wavesched/pg.h"
#include "wavesched/redis.h"

typedef struct ws_api ws_api;

typedef struct ws_api_deps {
	uv_loop_t *loop;
	const ws_config *config;
	ws_pg_pool *pool;
	ws_redis *redis;               /* may be in state DISABLED */
	ws_fleet_store *fleet;
	ws_metrics *metrics;
	const ws_migration_set *migrations;
	ws_http_server *http;          /* for connection counts in /metrics */
	const struct ws_clock *clock;  /* the schedule clock (serve --time-scale); NULL: wall time */
	const struct ws_engine *engine;  /* for /metrics; may be NULL */
	const struct ws_lease *lease;    /* for /metrics; may be NULL */
} ws_api_deps;

WS_API ws_api *ws_api_new(const ws_api_deps *deps);
WS_API void ws_api_free(ws_api *a);
/* ws_http_handler_cb and ws_http_done_cb for the server; arg is the ws_api. */
WS_API void ws_api_handle(void *arg, ws_http_req *req);
WS_API void ws_api_request_done(void *arg, const ws_http_req *req, int status, uint64_t elapsed_ns);
/* Late binding: the server is created after the API (it needs the handler). */
WS_API void ws_api_set_http(ws_api *a, ws_http_server *http);

#endif
