/*
 * config.h - the service configuration: a YAML file and WAVESCHED_*
 * environment variables, the environment winning (cli.md).
 */
#ifndef WAVESCHED_CONFIG_H
#define WAVESCHED_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include "wavesched/diag.h"

typedef struct ws_config {
	char *listen;            /* WAVESCHED_LISTEN, default 127.0.0.1:8480 */
	char *database_url;      /* WAVESCHED_DATABASE_URL (required for serve/migrate) */
	char *redis_url;         /* WAVESCHED_REDIS_URL, optional */
	char *log_format;        /* text|json */
	char *log_level;         /* debug|info|warn|error */
	char *outbound_allow;    /* comma-separated CIDRs */
	char *outbound_deny;     /* WAVESCHED_OUTBOUND_DENY: CIDRs refused even when allowed */
	char *migrations_dir;    /* WAVESCHED_MIGRATIONS_DIR */
	char *state_dir;         /* WAVESCHED_STATE_DIR: the gitops executor's clones; default /var/lib/wavesched */
	int db_pool_size;        /* default 4 */
	uint64_t query_timeout_ms;   /* default 30 s */
	size_t max_body_bytes;       /* default 8 MiB */
	size_t max_header_bytes;     /* default 16 KiB */
	uint64_t idle_timeout_ms;    /* default 60 s */
	uint64_t shutdown_grace_ms;  /* default 10 s */
	double time_scale;           /* serve --time-scale; default 1 */
	int64_t time_origin_us;      /* serve --time-origin; 0 = the process start */
	uint64_t lease_ttl_ms;       /* WAVESCHED_LEASE_TTL: the leader's lease; default 10 s */
	uint64_t review_window_ms;   /* WAVESCHED_REVIEW_WINDOW: a break-glass review's time to close; default 24h */
	double rate_limit;           /* WAVESCHED_RATE_LIMIT: requests per second per token; 0 = off; default 50/s */
	unsigned rate_burst;         /* WAVESCHED_RATE_BURST: at once; default 100 */
	uint64_t notify_lead_ms;     /* WAVESCHED_NOTIFY_LEAD: reminder before a window (schedule time); default 24h */
	unsigned notify_max_attempts; /* WAVESCHED_NOTIFY_MAX_ATTEMPTS: then given up; default 8 */
	uint64_t notify_backoff_ms;  /* WAVESCHED_NOTIFY_BACKOFF: first retry (real time), doubling; default 2 s */
	uint64_t notify_backoff_max_ms; /* WAVESCHED_NOTIFY_BACKOFF_MAX: longest wait; default 10 min */
	char *prometheus_url;        /* WAVESCHED_PROMETHEUS_URL: the metric gates' Prometheus HTTP API; NULL: none */
	int64_t metric_interval_s;   /* WAVESCHED_METRIC_INTERVAL: metric gates re-evaluated (schedule time); default 30 s */
} ws_config;

/* Fills defaults, then the file (when path is non-NULL), then the
 * environment.  Every problem goes to `d` with its position; returns 0 or
 * WS_EINVAL.  Free with ws_config_free(). */
WS_API int ws_config_load(ws_config *c, const char *path, ws_diags *d);
WS_API void ws_config_free(ws_config *c);
/* The migrations folder: configured, else the source tree, else the installed copy. */
WS_API const char *ws_config_migrations_dir(const ws_config *c);

#endif
