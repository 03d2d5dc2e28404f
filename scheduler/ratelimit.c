/*
 * ratelimit.c - per-token GCRA, in Redis when it is there, locally when not
 * (ratelimit.h).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <hiredis/hiredis.h>
#include "wavesched/log.h"
#include "wavesched/ratelimit.h"

#define N_BUCKETS 1024
#define SWEEP_AT 8192          /* local entries before the expired ones are dropped */

/* KEYS[1]: the key; ARGV[1]: interval (us); ARGV[2]: tau (us).  Judged by
 * Redis's own clock so that processes with different clocks share one
 * schedule.  Returns {1, 0} or {0, retry_us}.  The key expires once its
 * theoretical arrival time is past (a key that old is as good as new).
 * string.format('%d') keeps the microsecond counts exact (a plain
 * tostring would print them in %.14g). */
static const char SCRIPT[] =
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
	"local interval = tonumber(ARGV[1])\n"
	"local tau = tonumber(ARGV[2])\n"
	"local tat = tonumber(redis.call('GET', KEYS[1]) or now) or now\n"
	"if tat < now then tat = now end\n"
	"if tat - tau > now then return {0, tat - tau - now} end\n"
	"tat = tat + interval\n"
	"redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.floor((tat - now) / 1000) + 1000)\n"
	"return {1, 0}\n";

typedef struct entry {
	struct entry *next;
	int64_t tat;
	char key[];
} entry;

struct ws_ratelimit {
	uv_loop_t *loop;
	ws_redis *redis;
	int64_t interval_us;       /* 0: no limit */
	int64_t tau_us;
	entry *buckets[N_BUCKETS];
	size_t n_entries;
	size_t pending;
	bool warned;               /* a bad Redis answer was logged */
};

typedef struct pending_check {
	ws_ratelimit *rl;
	ws_ratelimit_cb cb;
	void *arg;
	char key[];
} pending_check;

bool ws_gcra(int64_t *tat, int64_t now_us, int64_t interval_us, int64_t tau_us, int64_t *retry_us)
{
	int64_t t = *tat > now_us ? *tat : now_us;
	if (t - tau_us > now_us) {
		*retry_us = t - tau_us - now_us;
		return false;
	}
	*tat = t + interval_us;
	*retry_us = 0;
	return true;
}

int ws_ratelimit_parse(const char *s, double *per_second)
{
	if (!s || !*s)
		return WS_EINVAL;
	if (strcmp(s, "off") == 0 || strcmp(s, "0") == 0) {
		*per_second = 0;
		return 0;
	}
	char *end;
	double n = strtod(s, &end);
	if (end == s || !(n > 0) || !isfinite(n))
		return WS_EINVAL;
	double per;
	if (strcmp(end, "/s") == 0)
		per = 1;
	else if (strcmp(end, "/min") == 0)
		per = 60;
	else if (strcmp(end, "/h") == 0)
		per = 3600;
	else
		return WS_EINVAL;
	*per_second = n / per;
	/* Below one request a day, or above a million a second, is a typo. */
	if (*per_second < 1.0 / 86400 || *per_second > 1e6)
		return WS_EINVAL;
	return 0;
}

ws_ratelimit *ws_ratelimit_new(uv_loop_t *loop, ws_redis *redis, double rate, unsigned burst)
{
	ws_ratelimit *rl = calloc(1, sizeof(*rl));
	if (!rl)
		return NULL;
	rl->loop = loop;
	rl->redis = redis;
	if (rate > 0) {
		rl->interval_us = (int64_t)llround(1e6 / rate);
		if (rl->interval_us < 1)
			rl->interval_us = 1;
		rl->tau_us = rl->interval_us * (int64_t)(burst > 0 ? burst - 1 : 0);
	}
	return rl;
}

void ws_ratelimit_free(ws_ratelimit *rl)
{
	if (!rl)
		return;
	for (size_t i = 0; i < N_BUCKETS; i++)
		for (entry *e = rl->buckets[i], *next; e; e = next) {
			next = e->next;
			free(e);
		}
	free(rl);
}

size_t ws_ratelimit_pending(const ws_ratelimit *rl)
{
	return rl ? rl->pending : 0;
}

static size_t bucket_of(const char *key)
{
	uint64_t h = 1469598103934665603ull;            /* FNV-1a */
	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 1099511628211ull;
	return (size_t)(h % N_BUCKETS);
}

/* Drops the entries whose arrival time is past: they judge like new keys. */
static void sweep(ws_ratelimit *rl, int64_t now)
{
	for (size_t i = 0; i < N_BUCKETS; i++)
		for (entry **pe = &rl->buckets[i]; *pe;) {
			if ((*pe)->tat <= now) {
				entry *dead = *pe;
				*pe = dead->next;
				free(dead);
				rl->n_entries--;
			} else {
				pe = &(*pe)->next;
			}
		}
}

static void check_local(ws_ratelimit *rl, const char *key, ws_ratelimit_cb cb, void *arg)
{
	int64_t now = (int64_t)(uv_hrtime() / 1000);
	size_t b = bucket_of(key);
	entry *e = rl->buckets[b];
	while (e && strcmp(e->key, key) != 0)
		e = e->next;
	if (!e) {
		if (rl->n_entries >= SWEEP_AT)
			sweep(rl, now);
		size_t n = strlen(key);
		e = malloc(sizeof(*e) + n + 1);
		if (!e) {
			/* No memory to remember the key: let the request through
			 * rather than refuse everyone. */
			cb(arg, true, 0);
			return;
		}
		memcpy(e->key, key, n + 1);
		e->tat = 0;
		e->next = rl->buckets[b];
		rl->buckets[b] = e;
		rl->n_entries++;
	}
	int64_t retry;
	bool ok = ws_gcra(&e->tat, now, rl->interval_us, rl->tau_us, &retry);
	cb(arg, ok, retry);
}

static void redis_done(void *arg, void *reply, const char *err)
{
	pending_check *p = arg;
	ws_ratelimit *rl = p->rl;
	rl->pending--;
	const redisReply *r = reply;
	if (!err && r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
	    r->element[0]->type == REDIS_REPLY_INTEGER && r->element[1]->type == REDIS_REPLY_INTEGER &&
	    (r->element[0]->integer == 0 || r->element[0]->integer == 1) && r->element[1]->integer >= 0) {
		rl->warned = false;
		p->cb(p->arg, r->element[0]->integer == 1, r->element[1]->integer);
		free(p);
		return;
	}
	if (!rl->warned) {
		ws_warn("ratelimit", "Redis did not judge a request (%s): limiting per process until it does",
			err ? err : "unexpected answer to the script");
		rl->warned = true;
	}
	check_local(rl, p->key, p->cb, p->arg);
	free(p);
}

void ws_ratelimit_check(ws_ratelimit *rl, const char *key, ws_ratelimit_cb cb, void *arg)
{
	if (!rl || rl->interval_us == 0) {
		cb(arg, true, 0);
		return;
	}
	if (rl->redis && ws_redis_get_state(rl->redis) == WS_REDIS_UP) {
		size_t n = strlen(key);
		pending_check *p = malloc(sizeof(*p) + n + 1);
		if (p) {
			p->rl = rl;
			p->cb = cb;
			p->arg = arg;
			memcpy(p->key, key, n + 1);
			char rkey[sizeof("wavesched:rl:") + 128], interval[24], tau[24];
			snprintf(rkey, sizeof(rkey), "wavesched:rl:%.128s", key);
			snprintf(interval, sizeof(interval), "%lld", (long long)rl->interval_us);
			snprintf(tau, sizeof(tau), "%lld", (long long)rl->tau_us);
			const char *argv[] = { "EVAL", SCRIPT, "1", rkey, interval, tau };
			const size_t lens[] = { 4, sizeof(SCRIPT) - 1, 1, strlen(rkey), strlen(interval), strlen(tau) };
			if (ws_redis_command(rl->redis, 6, argv, lens, redis_done, p) == 0) {
				rl->pending++;
				return;
			}
			free(p);
		}
	}
	check_local(rl, key, cb, arg);
}
