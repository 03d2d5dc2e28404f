/*
 * ratelimit.h - per-token request rate limiting (api.md: 429 with
 * Retry-After).
 *
 * The limit is a GCRA (generic cell rate algorithm, the "virtual
 * scheduling" form of a token bucket): `rate` requests per second on
 * average, `burst` at once.  With Redis the state of each key lives there,
 * judged by Redis's clock in one script, so every API process shares one
 * budget per token; without Redis (not configured, down, or an answer that
 * is not what the script returns) each process judges with a local table
 * of the same algorithm: a process never waits on Redis to serve, and a
 * lost Redis only makes the limit per process.
 */
#ifndef WAVESCHED_RATELIMIT_H
#define WAVESCHED_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>
#include "wavesched/diag.h"
#include "wavesched/redis.h"

typedef struct ws_ratelimit ws_ratelimit;

/* rate <= 0 turns limiting off (every check allowed at once).  `redis` may
 * be NULL or disabled. */
WS_API ws_ratelimit *ws_ratelimit_new(uv_loop_t *loop, ws_redis *redis, double rate, unsigned burst);
WS_API void ws_ratelimit_free(ws_ratelimit *rl);

/* Whether one more request of `key` fits.  cb runs exactly once, maybe
 * before this returns (local judgement) or later (Redis).  retry_after_us:
 * when a refused request would fit. */
typedef void (*ws_ratelimit_cb)(void *arg, bool allowed, int64_t retry_after_us);
WS_API void ws_ratelimit_check(ws_ratelimit *rl, const char *key, ws_ratelimit_cb cb, void *arg);

/* Checks still waiting for Redis (ws_ratelimit_free must not run before
 * they are answered; the Redis connection answers or fails each one). */
WS_API size_t ws_ratelimit_pending(const ws_ratelimit *rl);

/* One GCRA step: *tat is the key's theoretical arrival time (0 = new key).
 * Allowed: *tat advances by interval; refused: *retry_us says how long. */
WS_API bool ws_gcra(int64_t *tat, int64_t now_us, int64_t interval_us, int64_t tau_us, int64_t *retry_us);

/* "100/s", "600/min", "5/h"; "0" or "off" = no limit.  WS_EINVAL otherwise. */
WS_API int ws_ratelimit_parse(const char *s, double *per_second);

#endif
