/*
 * lease.c - engine leadership (see lease.h).
 *
 * One query at a time: an acquire/renew is sent, and the next one is
 * scheduled only when its answer (or error) came back, so answers never
 * overtake each other.  Two timers: `tick` for the next attempt and `term`
 * for the local end of the term.  The term timer is the safety net: whatever
 * happens to the queries (hung, failed, late), a leader without a confirmed
 * renewal steps down at send + ttl - margin.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "wavesched/lease.h"
#include "wavesched/log.h"

#define LEASE_SQL \
	"SELECT epoch, leader, remaining_ms, holder FROM ws_lease_acquire($1, $2::int)"
#define RELEASE_SQL "SELECT ws_lease_release($1, $2::bigint)"

struct ws_lease {
	uv_loop_t *loop;
	ws_pg_pool *pool;
	char *holder;
	uint32_t ttl_ms, renew_ms, margin_ms;
	ws_lease_change_cb cb;
	void *cb_arg;

	uv_timer_t tick;
	uv_timer_t term;

	bool leader;
	int64_t epoch;          /* of the current term while leader, else of the last one */
	int64_t held_epoch;     /* newest epoch the database gave us (to release on stop) */
	char current[128];      /* holder named by the last answer */

	bool in_flight;
	uint64_t sent_ms;       /* monotonic, when the query in flight was sent */

	bool stopping;
	int open_handles;
	void (*done)(void *arg);
	void *done_arg;
};

static uint64_t mono_ms(void)
{
	return uv_hrtime() / 1000000u;
}

static void send_acquire(ws_lease *l);

static void set_leader(ws_lease *l, bool leader, int64_t epoch)
{
	if (l->leader == leader && (!leader || l->epoch == epoch))
		return;
	l->leader = leader;
	l->epoch = epoch;
	if (leader)
		ws_info("lease", "holder=%s epoch=%" PRId64 " leading", l->holder, epoch);
	else if (l->stopping)
		ws_info("lease", "holder=%s epoch=%" PRId64 " stepping down: stopping", l->holder, epoch);
	else
		ws_warn("lease", "holder=%s epoch=%" PRId64 " stepped down", l->holder, epoch);
	if (l->cb)
		l->cb(l->cb_arg, leader, epoch);
}

static void tick_cb(uv_timer_t *t)
{
	send_acquire(t->data);
}

static void schedule_tick(ws_lease *l, uint64_t ms)
{
	if (!l->stopping)
		uv_timer_start(&l->tick, tick_cb, ms, 0);
}

/* The local term is over: nobody confirmed a renewal sent late enough. */
static void term_cb(uv_timer_t *t)
{
	ws_lease *l = t->data;
	if (l->leader) {
		ws_warn("lease", "holder=%s epoch=%" PRId64 " no renewal confirmed within %" PRIu32
			" ms of sending it: stepping down before the database lease can expire",
			l->holder, l->epoch, l->ttl_ms - l->margin_ms);
		set_leader(l, false, l->epoch);
	}
}

static void close_cb(uv_handle_t *h)
{
	ws_lease *l = h->data;
	if (--l->open_handles > 0)
		return;
	void (*done)(void *) = l->done;
	void *arg = l->done_arg;
	free(l->holder);
	free(l);
	if (done)
		done(arg);
}

static void finish_stop(ws_lease *l)
{
	uv_close((uv_handle_t *)&l->tick, close_cb);
	uv_close((uv_handle_t *)&l->term, close_cb);
}

static void release_cb(void *arg, const PGresult *res, const ws_pg_err *err)
{
	ws_lease *l = arg;
	l->in_flight = false;
	if (err)
		ws_warn("lease", "holder=%s epoch=%" PRId64 " release failed (%s): the lease expires on its own",
			l->holder, l->held_epoch, err->message);
	else
		ws_info("lease", "holder=%s epoch=%" PRId64 " %s", l->holder, l->held_epoch,
			strcmp(PQgetvalue(res, 0, 0), "t") == 0 ? "released" : "was no longer held");
	finish_stop(l);
}

/* After the last query: give the lease back if the database may still think
 * it is ours, then close. */
static void stop_continue(ws_lease *l)
{
	if (l->held_epoch > 0) {
		char epoch[32];
		snprintf(epoch, sizeof(epoch), "%" PRId64, l->held_epoch);
		const char *params[] = { l->holder, epoch };
		if (ws_pg_query(l->pool, RELEASE_SQL, 2, params, release_cb, l) == 0) {
			l->in_flight = true;
			return;
		}
		ws_warn("lease", "holder=%s epoch=%" PRId64 " cannot release (database unavailable): "
			"the lease expires on its own", l->holder, l->held_epoch);
	}
	finish_stop(l);
}

static void acquire_cb(void *arg, const PGresult *res, const ws_pg_err *err)
{
	ws_lease *l = arg;
	l->in_flight = false;
	if (err) {
		/* Nothing to decide: the term timer steps a leader down in time. */
		ws_warn("lease", "holder=%s acquire failed: %s", l->holder, err->message);
		if (l->stopping)
			stop_continue(l);
		else
			schedule_tick(l, l->renew_ms);
		return;
	}
	if (PQntuples(res) != 1 || PQnfields(res) != 4) {
		ws_error("lease", "holder=%s ws_lease_acquire returned %d rows of %d columns, expected 1 of 4",
			 l->holder, PQntuples(res), PQnfields(res));
		if (l->stopping)
			stop_continue(l);
		else
			schedule_tick(l, l->renew_ms);
		return;
	}
	int64_t epoch = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	bool leader = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
	long remaining = strtol(PQgetvalue(res, 0, 2), NULL, 10);
	snprintf(l->current, sizeof(l->current), "%s", PQgetvalue(res, 0, 3));
	if (leader)
		l->held_epoch = epoch;
	if (l->stopping) {
		stop_continue(l);
		return;
	}

	if (!leader) {
		set_leader(l, false, l->epoch);
		/* Try again right after the holder's lease runs out. */
		uint64_t wait = remaining >= 0 && (uint64_t)remaining + 1 < l->renew_ms
				? (uint64_t)remaining + 1 : l->renew_ms;
		schedule_tick(l, wait);
		return;
	}
	uint64_t deadline = l->sent_ms + l->ttl_ms - l->margin_ms;
	uint64_t now = mono_ms();
	if (deadline <= now) {
		/* Confirmed, but too late to build on: by our clock the term may be
		 * over already.  The next renewal, answered in time, restores it. */
		ws_warn("lease", "holder=%s epoch=%" PRId64 " renewal answered after %" PRIu64
			" ms: not counting on it", l->holder, epoch, now - l->sent_ms);
		if (l->leader)
			set_leader(l, false, l->epoch);
		schedule_tick(l, 0);
		return;
	}
	uv_timer_start(&l->term, term_cb, deadline - now, 0);
	set_leader(l, true, epoch);
	schedule_tick(l, l->renew_ms);
}

static void send_acquire(ws_lease *l)
{
	if (l->stopping || l->in_flight)
		return;
	char ttl[16];
	snprintf(ttl, sizeof(ttl), "%" PRIu32, l->ttl_ms);
	const char *params[] = { l->holder, ttl };
	l->sent_ms = mono_ms();
	if (ws_pg_query(l->pool, LEASE_SQL, 2, params, acquire_cb, l) != 0) {
		ws_warn("lease", "holder=%s cannot ask for the lease: database unavailable", l->holder);
		schedule_tick(l, l->renew_ms);
		return;
	}
	l->in_flight = true;
}

ws_lease *ws_lease_new(uv_loop_t *loop, ws_pg_pool *pool, const ws_lease_opts *o,
		       ws_lease_change_cb cb, void *arg, ws_diags *d)
{
	uint32_t ttl = o->ttl_ms ? o->ttl_ms : 10000;
	uint32_t renew = o->renew_ms ? o->renew_ms : ttl / 3;
	uint32_t margin = o->margin_ms ? o->margin_ms : ttl / 5;
	if (!o->holder || !*o->holder || strlen(o->holder) >= 128) {
		ws_diag_add(d, NULL, 0, 0, "lease: the holder name must be 1 to 127 characters");
		return NULL;
	}
	if (ttl < 100 || ttl > 3600000) {
		ws_diag_add(d, NULL, 0, 0, "lease: ttl %" PRIu32 " ms is out of range (100 to 3600000)", ttl);
		return NULL;
	}
	if (margin >= ttl || renew == 0 || renew >= ttl - margin) {
		ws_diag_add(d, NULL, 0, 0,
			    "lease: renewals every %" PRIu32 " ms cannot keep a %" PRIu32 " ms lease with a %"
			    PRIu32 " ms margin (renew must be below ttl - margin)", renew, ttl, margin);
		return NULL;
	}
	ws_lease *l = calloc(1, sizeof(*l));
	if (!l || !(l->holder = strdup(o->holder))) {
		free(l);
		ws_diag_add(d, NULL, 0, 0, "lease: out of memory");
		return NULL;
	}
	l->loop = loop;
	l->pool = pool;
	l->ttl_ms = ttl;
	l->renew_ms = renew;
	l->margin_ms = margin;
	l->cb = cb;
	l->cb_arg = arg;
	uv_timer_init(loop, &l->tick);
	uv_timer_init(loop, &l->term);
	l->tick.data = l;
	l->term.data = l;
	l->open_handles = 2;
	return l;
}

int ws_lease_start(ws_lease *l)
{
	schedule_tick(l, 0);
	return 0;
}

void ws_lease_stop(ws_lease *l, void (*done)(void *arg), void *arg)
{
	l->stopping = true;
	l->done = done;
	l->done_arg = arg;
	uv_timer_stop(&l->tick);
	uv_timer_stop(&l->term);
	if (l->leader)
		set_leader(l, false, l->epoch);
	if (!l->in_flight)
		stop_continue(l);
}

bool ws_lease_is_leader(const ws_lease *l)
{
	return l->leader;
}

int64_t ws_lease_epoch(const ws_lease *l)
{
	return l->leader ? l->epoch : 0;
}

const char *ws_lease_current_holder(const ws_lease *l)
{
	return l->current;
}
