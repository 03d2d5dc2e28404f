/*
 * planner.c - the planner of spec/policy.md, steps 1 to 6 (see planner.h).
 *
 * plan_build() runs the steps in order over *units* (a candidate tenant, or
 * with `unit: cluster` a cluster with candidate tenants):
 *
 *   1. candidates    not frozen, version != release (no version: candidate);
 *   2. wave choice   tenants in (criticality, slug) order, first matching wave
 *                    with room under max_tenants;
 *   3/4. dependencies in topological order, pushes, overflow waves; for
 *                    clusters first the latest step-2 wave of their tenants;
 *   5. windows       wave by wave, units in (depth, criticality, name) order,
 *                    each in its earliest free occurrence;
 *   6. reasons       short stable strings, built last so that wave numbers in
 *                    them are the final ones (after empty waves are dropped).
 *
 * Where policy.md is silent we decided (and tests hold us to it):
 *   - Plan failures are reported as diagnostics without a position.  A
 *     release kind the policy does not allow, or a blackout name the fleet
 *     does not have, stops the planner at once (the rest would be noise for
 *     the wrong policy); otherwise every unmatched tenant (`unmatched:
 *     error`, one diagnostic each, in slug order) and every cluster cycle is
 *     reported before failing.
 *   - A tenant pushed by several dependencies names the one in the latest
 *     wave; ties go to the smallest slug (cluster name).  Its reasons are
 *     `selected by wave "W"` then `after dependency A (wave N)`, N being A's
 *     final, renumbered wave.
 *   - `unit: cluster`: a tenant whose own step-2 wave is the cluster's wave
 *     says `selected by wave "W"`; every other candidate tenant of the
 *     cluster (unmatched, or selected by an earlier wave) says `moves with
 *     cluster C`.  Dependency reasons, `depends on unassigned X` and the
 *     overflow warning name clusters.  A cluster with no selected tenant
 *     leaves each of its tenants unassigned with `matched no wave`.
 *   - `unit: cluster`: cluster B depends on cluster A only through a
 *     dependency between two candidate tenants (step 3: one on a
 *     non-candidate is satisfied), so it neither orders B after A nor makes
 *     a cycle.  The cap counts units, so with clusters it never binds: a
 *     cluster's candidate tenants share one window whatever its
 *     max_parallel.
 *   - A tenant whose matching waves were all full (max_tenants) is
 *     unassigned with `no wave with room (max_tenants)` (with `unmatched:
 *     error`: `matches no wave with room`); `matched no wave` is for a
 *     tenant no selector matched.
 *   - `tenant x depends on frozen tenant y` is warned for every candidate x,
 *     placed or not.  The overflow warning is given only for units that
 *     are placed in their overflow wave (one left unassigned in step 5 is in
 *     no wave).  Warnings are sorted and unique.
 *   - Of several window occurrences starting at the same instant the one
 *     listed first is tried first.
 *   - Delay reasons: for each blackout calendar and for the cluster cap, the
 *     latest `until` that rejected a candidate the search tried; listed
 *     after the wave reasons in (until, text) order.  A rejected candidate's
 *     window skips its later occurrences that start before the latest
 *     `until` of that rejection (the same obstacle rejects them), so they
 *     are never tried: a calendar that only they would have met is not
 *     named, and an `until` can be earlier than what they would have met.
 *     The delays explain the window chosen; they are not every conflict.
 *     A blackout rejection names the latest-ending occurrence of that
 *     calendar overlapping the candidate; `cluster C full until T` names
 *     the end of the last saturated stretch the candidate ran into.  Slot
 *     placements add `slot from wave start` (respect_windows: false) or
 *     `no maintenance windows: slot from wave start` (a tenant or cluster
 *     without windows) before the delays.
 *   - Intervals are half-open: a window ending when a blackout starts does
 *     not overlap it, and a cap slot frees at the instant a window ends.
 *   - Tenant windows are written with the tenant's offset even when it is
 *     zero ("+00:00"); wave times, the plan start and times inside reasons
 *     are UTC with "Z".
 *   - A zero slot or horizon in a hand-built policy means the default (30m,
 *     120d); policy_parse always fills them.
 *
 * Cost: O(n log n) in the tenants plus the candidate occurrences tried.
 * Occurrences come from libical only (window_expand, or shared dates turned
 * into instants by window_local_to_utc).  Each distinct recurrence (rule,
 * local start, zone, anchor; or a one-off range) is expanded once, lazily
 * and only as far as some unit looks, and shared by every unit that has it
 * (see "Recurrences"); each (zone, local date, start minute) is converted
 * once per recurrence table, whatever rules share it; the first seek of a
 * wave is remembered per recurrence.  Blackout calendars become sorted
 * occurrence arrays with a prefix maximum of ends (one binary search per
 * check); the cluster cap is a treap of count breakpoints per cluster
 * (read-only range probes, range add in O(log n)), which a cluster with no
 * more units in the wave than its cap never uses; a rejected candidate
 * jumps its occurrence list past the instant that rejected it.  Units are
 * sorted once by name and numbered in that order, so every "smallest name"
 * tie-break is an integer comparison, and a wave's order is a counting
 * sort on (depth, criticality) of keys that arrive in that order.  Answers
 * that depend only on a string's text (interned zone, zone look-up, shared
 * dates) are remembered by the string's address.  The output makes each
 * distinct reason text once (tenants with only their wave's reason share
 * one list), and the JSON writer copies plain strings in one pass and
 * writes escaped strings and window times once each.  Walks over tenants
 * in an order other than the fleet's prefetch a few records ahead: at
 * 100,000 tenants they are memory-bound, not compute-bound.  No libc time
 * conversion is called per tenant (glibc's gmtime_r takes a process-wide
 * lock; see tenants/window.c).  The plan lives in one arena (plan_free
 * releases it); the working state is freed before plan_build returns.
 */
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "wavesched/arena.h"
#include "wavesched/planner.h"
#include "wavesched/window.h"

#define PLAN_DEFAULT_SLOT_S ((int64_t)30 * 60)
#define PLAN_DEFAULT_HORIZON_S ((int64_t)120 * 86400)
#define DEFAULT_ANCHOR "2000-01-01"
#define NO_TIME INT64_MIN

/* Allocation --------------------------------------------------------------- */

/* Like the arena: without memory a planner has nothing useful to return. */
static void plan_oom(void)
{
	fprintf(stderr, "wavesched: out of memory while planning\n");
	abort();
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		plan_oom();
	return p;
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		plan_oom();
	return p;
}

/* Grows *v (of *cap elements of `size`) to hold at least `need`. */
static void vec_reserve(void *vp, size_t *cap, size_t need, size_t size)
{
	void **v = vp;
	if (need <= *cap)
		return;
	size_t c = *cap ? *cap : 16;
	while (c < need)
		c *= 2;
	void *p = realloc(*v, c * size);
	if (!p)
		plan_oom();
	*v = p;
	*cap = c;
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	va_start(ap, fmt);
	int rc = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (rc < 0)
		plan_oom();
	return s;
}

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static uint64_t hash_str(uint64_t h, const char *s)
{
	return hash_bytes(h, s ? s : "", s ? strlen(s) + 1 : 1);
}

#define HASH_SEED 0xcbf29ce484222325ULL

/* String interning ---------------------------------------------------------
 * Reasons repeat across thousands of tenants, and zones are compared by
 * pointer: both are interned, the copies living in `a`. */
typedef struct strset {
	struct strset_slot {
		uint64_t h;
		const char *s;
	} *slot;
	size_t cap, len;
	ws_arena *a;
} strset;

static void strset_grow(strset *ss)
{
	size_t cap = ss->cap ? ss->cap * 2 : 64;
	struct strset_slot *slot = xcalloc(cap, sizeof(*slot));
	for (size_t i = 0; i < ss->cap; i++) {
		if (!ss->slot[i].s)
			continue;
		size_t j = ss->slot[i].h & (cap - 1);
		while (slot[j].s)
			j = (j + 1) & (cap - 1);
		slot[j] = ss->slot[i];
	}
	free(ss->slot);
	ss->slot = slot;
	ss->cap = cap;
}

/* The interned copy of s. */
static const char *strset_intern(strset *ss, const char *s)
{
	if ((ss->len + 1) * 2 > ss->cap)
		strset_grow(ss);
	uint64_t h = hash_str(HASH_SEED, s);
	size_t j = h & (ss->cap - 1);
	for (; ss->slot[j].s; j = (j + 1) & (ss->cap - 1))
		if (ss->slot[j].h == h && strcmp(ss->slot[j].s, s) == 0)
			return ss->slot[j].s;
	ss->slot[j].h = h;
	ss->slot[j].s = ws_arena_strdup(ss->a, s);
	ss->len++;
	return ss->slot[j].s;
}

static void strset_free(strset *ss)
{
	free(ss->slot);
	memset(ss, 0, sizeof(*ss));
}

/* Pointer memo ---------------------------------------------------------------
 * Answers about a string that depend only on its text, remembered by its
 * address: the fleet points at the YAML parser's interned text, so a few
 * dozen addresses stand for a hundred thousand tenants' zones and rules.
 * (Two copies of one text are merely asked twice.) */
typedef struct ptrmap {
	struct ptrmap_slot {
		const void *key;     /* NULL: empty */
		const void *val;
	} *slot;
	size_t cap, len;
} ptrmap;

static uint64_t hash_u64(uint64_t h, uint64_t x);

/* The slot of `key`; a new one has val NULL and is counted. */
static struct ptrmap_slot *ptrmap_slot(ptrmap *m, const void *key)
{
	if ((m->len + 1) * 2 > m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 64;
		struct ptrmap_slot *slot = xcalloc(cap, sizeof(*slot));
		for (size_t i = 0; i < m->cap; i++) {
			if (!m->slot[i].key)
				continue;
			size_t j = hash_u64(HASH_SEED, (uintptr_t)m->slot[i].key) & (cap - 1);
			while (slot[j].key)
				j = (j + 1) & (cap - 1);
			slot[j] = m->slot[i];
		}
		free(m->slot);
		m->slot = slot;
		m->cap = cap;
	}
	size_t j = hash_u64(HASH_SEED, (uintptr_t)key) & (m->cap - 1);
	for (; m->slot[j].key; j = (j + 1) & (m->cap - 1))
		if (m->slot[j].key == key)
			return &m->slot[j];
	m->slot[j].key = key;
	m->len++;
	return &m->slot[j];
}

static void ptrmap_free(ptrmap *m)
{
	free(m->slot);
	memset(m, 0, sizeof(*m));
}

/* The first index in sorted a[0..n) with a[i] >= x, searching from `lo`. */
static size_t lower_bound(const int64_t *a, size_t lo, size_t n, int64_t x)
{
	size_t hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (a[mid] < x)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Recurrences --------------------------------------------------------------
 * The occurrence starts of a distinct recurrence: (rule, local start, zone,
 * anchor), or one one-off range.  The duration is left out of the key: an
 * occurrence ends exactly `duration` after it starts (fleet.md; window_expand
 * computes it the same way), so windows that differ only in length share
 * one expansion and each unit adds its own length.
 *
 * Expansion through libical is the planner's dominant cost (~15 us a call,
 * ~3 us an occurrence), so it is lazy: a recurrence is expanded in doubling
 * chunks from the first instant a unit asks for, and only as far as units
 * look.  Waves start in time order, so a request never goes back before an
 * earlier one's start; an instant past the expanded range skips the gap. */
typedef struct rec {
	const ws_window *w;      /* the first window seen with this key */
	const char *zone;        /* interned: the zone it is computed in */
	const ws_zone *tz;       /* that zone, for dates shared with other recurrences */
	/* The key, copied from w so that a lookup touches only the table. */
	const char *rrule, *anchor;
	int64_t from, to;        /* a one-off range */
	int start_minute;
	bool one_off;
	int32_t days;            /* its dates in rectab.days, or -1: expanded on its own */
	uint64_t h;
	int64_t hi;              /* every start in [lo, hi) is listed; INT64_MIN: none yet */
	int64_t chunk;           /* the next expansion's length */
	int64_t first_chunk;     /* the first one's (rec_first_chunk) */
	int64_t *start;          /* sorted */
	int *off;                /* the zone's offset at each start */
	size_t n, cap;
	/* The last answer of rec_seek_first: starts are only ever appended
	 * after the listed ones, so an index below n stays the answer. */
	int64_t seek_t;
	size_t seek_i;
} rec;

/* The local dates of one (rule, anchor), shared by the recurrences that
 * differ only in start time and zone (window_days_shareable): one libical
 * iterator instead of one per recurrence.  Every date in [lo, hi) is listed
 * in v; requests move forward in time like the recurrences'. */
typedef struct days {
	const ws_window *w;      /* the first window seen with this rule and anchor */
	uint64_t h;
	ws_window_days *it;      /* NULL before the first request or after the end */
	ws_local_day *v;
	size_t n, cap;
	int32_t lo, hi;
	bool started;
} days;

/* One window_local_to_utc answer: (zone, local date, start minute) ->
 * the instant and the zone's offset there.  tz NULL = empty slot. */
typedef struct conv {
	const ws_zone *tz;
	int32_t day, minute;
	int64_t utc;
	int off;
} conv;

typedef struct rectab {
	rec *v;
	size_t n, cap;
	int32_t *slot;           /* open addressing over v, -1 empty */
	size_t slot_cap;
	days *d;
	size_t n_d, cap_d;
	int32_t *dslot;          /* open addressing over d, -1 empty */
	size_t dslot_cap;
	conv *cv;                /* open addressing, see rectab_local_to_utc */
	size_t cv_cap, cv_len;
	ptrmap shareable;        /* rule text -> &SHARED or &ALONE (window_days_shareable) */
	ptrmap zone;             /* interned zone name -> &NO_ZONE or its ws_zone_find */
} rectab;

/* The rule and anchor texts are compared by address: the fleet points at
 * the YAML parser's interned text, so equal texts nearly always share one
 * copy.  Two copies of one text merely make two recurrences with the same
 * occurrences, which changes nothing but the work done. */
static uint64_t hash_u64(uint64_t h, uint64_t x)
{
	h ^= x;
	h *= 0x9e3779b97f4a7c15ULL;
	return h ^ (h >> 31);   /* the table indexes by the low bits */
}

static uint64_t hash_ptr(uint64_t h, const void *p)
{
	return hash_u64(h, (uint64_t)(uintptr_t)p);
}

static uint64_t rec_hash(const ws_window *w, const char *zone)
{
	uint64_t h = HASH_SEED;
	if (w->one_off) {
		h = hash_u64(h, (uint64_t)w->from_utc);
		return hash_u64(h, (uint64_t)w->to_utc);
	}
	h = hash_ptr(h, w->rrule);
	h = hash_u64(h, (uint64_t)w->start_minute);
	h = hash_ptr(h, zone);
	return hash_ptr(h, w->anchor);
}

static bool rec_same(const rec *r, const ws_window *w, const char *zone)
{
	if (r->one_off || w->one_off)
		return r->one_off && w->one_off && r->from == w->from_utc && r->to == w->to_utc;
	return r->rrule == w->rrule && r->start_minute == w->start_minute && r->zone == zone &&
	       r->anchor == w->anchor;
}

static void rectab_rehash(rectab *t)
{
	size_t cap = t->slot_cap ? t->slot_cap * 2 : 64;
	int32_t *slot = xmalloc(cap * sizeof(*slot));
	for (size_t i = 0; i < cap; i++)
		slot[i] = -1;
	for (size_t i = 0; i < t->n; i++) {
		size_t j = t->v[i].h & (cap - 1);
		while (slot[j] >= 0)
			j = (j + 1) & (cap - 1);
		slot[j] = (int32_t)i;
	}
	free(t->slot);
	t->slot = slot;
	t->slot_cap = cap;
}

static uint64_t days_hash(const ws_window *w)
{
	return hash_str(hash_str(HASH_SEED, w->rrule), w->anchor ? w->anchor : DEFAULT_ANCHOR);
}

static bool days_same(const days *d, const ws_window *w)
{
	return strcmp(d->w->rrule, w->rrule) == 0 &&
	       strcmp(d->w->anchor ? d->w->anchor : DEFAULT_ANCHOR,
		      w->anchor ? w->anchor : DEFAULT_ANCHOR) == 0;
}

static void days_rehash(rectab *t)
{
	size_t cap = t->dslot_cap ? t->dslot_cap * 2 : 32;
	int32_t *slot = xmalloc(cap * sizeof(*slot));
	for (size_t i = 0; i < cap; i++)
		slot[i] = -1;
	for (size_t i = 0; i < t->n_d; i++) {
		size_t j = t->d[i].h & (cap - 1);
		while (slot[j] >= 0)
			j = (j + 1) & (cap - 1);
		slot[j] = (int32_t)i;
	}
	free(t->dslot);
	t->dslot = slot;
	t->dslot_cap = cap;
}

/* The id of the shared dates of `w`'s rule and anchor (interned). */
static int32_t days_intern(rectab *t, const ws_window *w)
{
	if ((t->n_d + 1) * 2 > t->dslot_cap)
		days_rehash(t);
	uint64_t h = days_hash(w);
	size_t j = h & (t->dslot_cap - 1);
	for (; t->dslot[j] >= 0; j = (j + 1) & (t->dslot_cap - 1)) {
		days *d = &t->d[t->dslot[j]];
		if (d->h == h && days_same(d, w))
			return t->dslot[j];
	}
	vec_reserve(&t->d, &t->cap_d, t->n_d + 1, sizeof(*t->d));
	days *d = &t->d[t->n_d];
	memset(d, 0, sizeof(*d));
	d->w = w;
	d->h = h;
	t->dslot[j] = (int32_t)t->n_d;
	return (int32_t)t->n_d++;
}

/* A request further ahead than this starts a new iterator near it rather
 * than stepping through the dates in between. */
#define DAYS_GAP 31

/* Lists every date in [a, b). */
static void days_cover(days *d, int32_t a, int32_t b)
{
	if (d->started && (a < d->lo || (d->hi != INT32_MAX && a > d->hi + DAYS_GAP))) {
		window_days_free(d->it);
		d->it = NULL;
		d->n = 0;
		d->started = false;
	}
	if (!d->started) {
		d->started = true;
		d->lo = d->hi = a;
		d->it = window_days_new(d->w, a);
		if (!d->it)
			d->hi = INT32_MAX;   /* cannot happen for a validated fleet: no dates */
	}
	while (d->hi < b) {
		ws_local_day x;
		if (window_days_next(d->it, &x) != 0) {
			d->hi = INT32_MAX;
			break;
		}
		if (x.day < d->lo)
			continue;
		vec_reserve(&d->v, &d->cap, d->n + 1, sizeof(*d->v));
		d->v[d->n++] = x;
		d->hi = x.day + 1;
	}
}

/*
 * window_local_to_utc, remembered.  Recurrences that differ in rule or
 * anchor but share a zone and a start minute meet on the same dates (every
 * weekly rule's dates are among the daily rule's), and each conversion is
 * three or four libical offset look-ups; the answer depends on nothing but the zone,
 * the date and the minute, so it is asked once per table.  (Each placer has
 * its own table, see rectab_fork, so this needs no lock.)
 */
static uint64_t conv_hash(const ws_zone *tz, int32_t day, int32_t minute)
{
	return hash_u64(hash_u64(hash_ptr(HASH_SEED, tz), (uint64_t)(uint32_t)day),
			(uint64_t)(uint32_t)minute);
}

static int64_t rectab_local_to_utc(rectab *t, const ws_zone *tz, const ws_local_day *d, int minute,
				   int *off)
{
	if ((t->cv_len + 1) * 2 > t->cv_cap) {
		size_t cap = t->cv_cap ? t->cv_cap * 2 : 1024;
		conv *cv = xcalloc(cap, sizeof(*cv));
		for (size_t i = 0; i < t->cv_cap; i++) {
			if (!t->cv[i].tz)
				continue;
			size_t j = conv_hash(t->cv[i].tz, t->cv[i].day, t->cv[i].minute) & (cap - 1);
			while (cv[j].tz)
				j = (j + 1) & (cap - 1);
			cv[j] = t->cv[i];
		}
		free(t->cv);
		t->cv = cv;
		t->cv_cap = cap;
	}
	size_t j = conv_hash(tz, d->day, minute) & (t->cv_cap - 1);
	for (; t->cv[j].tz; j = (j + 1) & (t->cv_cap - 1)) {
		const conv *c = &t->cv[j];
		if (c->tz == tz && c->day == d->day && c->minute == minute) {
			*off = c->off;
			return c->utc;
		}
	}
	conv *c = &t->cv[j];
	c->tz = tz;
	c->day = d->day;
	c->minute = minute;
	c->utc = window_local_to_utc(tz, d, minute, &c->off);
	t->cv_len++;
	*off = c->off;
	return c->utc;
}

static int32_t floor_day(int64_t t)
{
	int64_t q = t / 86400;
	return (int32_t)(q * 86400 > t ? q - 1 : q);
}

/*
 * The first expansion's length: about two occurrences, so that a unit
 * placed in its first free occurrence costs one libical call.  Only a
 * sizing hint read from the rule's text; the occurrences themselves always
 * come from window_expand.  A one-off range is expanded at once.
 */
static int64_t rec_first_chunk(const ws_window *w)
{
	if (w->one_off)
		return INT64_MAX / 4;
	bool daily = strcasestr(w->rrule, "FREQ=DAILY") && !strcasestr(w->rrule, "INTERVAL");
	return (int64_t)(daily ? 3 : 15) * 86400;
}

static const char SHARED = 1, ALONE = 0, NO_ZONE = 0;

/* window_days_shareable(w) and ws_zone_find(zone), remembered (the rule
 * text decides the first, the zone name the second). */
static bool rectab_shareable(rectab *t, const ws_window *w)
{
	if (w->one_off || !w->rrule)
		return window_days_shareable(w);
	struct ptrmap_slot *x = ptrmap_slot(&t->shareable, w->rrule);
	if (!x->val)
		x->val = window_days_shareable(w) ? &SHARED : &ALONE;
	return x->val == &SHARED;
}

static const ws_zone *rectab_zone(rectab *t, const char *zone)
{
	struct ptrmap_slot *x = ptrmap_slot(&t->zone, zone);
	if (!x->val) {
		const ws_zone *z = ws_zone_find(zone);
		x->val = z ? (const void *)z : &NO_ZONE;
	}
	return x->val == &NO_ZONE ? NULL : x->val;
}

/* The id of the recurrence of `w` computed in `zone` (interned). */
static uint32_t rec_intern(rectab *t, const ws_window *w, const char *zone)
{
	if ((t->n + 1) * 2 > t->slot_cap)
		rectab_rehash(t);
	uint64_t h = rec_hash(w, zone);
	size_t j = h & (t->slot_cap - 1);
	for (; t->slot[j] >= 0; j = (j + 1) & (t->slot_cap - 1)) {
		rec *r = &t->v[t->slot[j]];
		if (r->h == h && rec_same(r, w, zone))
			return (uint32_t)t->slot[j];
	}
	vec_reserve(&t->v, &t->cap, t->n + 1, sizeof(*t->v));
	rec *r = &t->v[t->n];
	memset(r, 0, sizeof(*r));
	r->w = w;
	r->zone = zone;
	r->h = h;
	r->hi = INT64_MIN;
	r->seek_t = INT64_MIN;
	r->days = -1;
	r->rrule = w->rrule;
	r->anchor = w->anchor;
	r->from = w->from_utc;
	r->to = w->to_utc;
	r->start_minute = w->start_minute;
	r->one_off = w->one_off;
	r->first_chunk = rec_first_chunk(w);
	t->slot[j] = (int32_t)t->n;
	if (rectab_shareable(t, w) && (r->tz = rectab_zone(t, zone)) != NULL)
		r->days = days_intern(t, w);
	return (uint32_t)t->n++;
}

static int64_t window_length(const ws_window *w)
{
	return w->one_off ? w->to_utc - w->from_utc : w->duration_s;
}

typedef struct collect_arg {
	rec *r;
	int64_t from;
} collect_arg;

static int rec_collect_cb(void *arg, const ws_interval *iv)
{
	collect_arg *c = arg;
	rec *r = c->r;
	if (iv->start < c->from)
		return 0;   /* listed already, or before anything asked for */
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 32;
		int64_t *st = realloc(r->start, cap * sizeof(*st));
		if (st)
			r->start = st;
		int *of = realloc(r->off, cap * sizeof(*of));
		if (of)
			r->off = of;
		if (!st || !of)
			plan_oom();
		r->cap = cap;
	}
	r->start[r->n] = iv->start;
	r->off[r->n] = iv->utc_offset;
	r->n++;
	return 0;
}

/* Lists the starts in [max(hi, from), next chunk end); false when `limit`
 * was reached already. */
static bool rec_extend(rectab *t, rec *r, int64_t from, int64_t limit)
{
	int64_t lo = r->hi > from ? r->hi : from;
	if (lo >= limit)
		return false;
	if (!r->chunk)
		r->chunk = r->first_chunk;
	int64_t until = limit - lo > r->chunk ? lo + r->chunk : limit;
	if (r->chunk < INT64_MAX / 4)
		r->chunk *= 2;
	collect_arg c = { .r = r, .from = lo };
	if (r->days >= 0) {
		/* A start on local date D lies within a day of D's midnight read
		 * as UTC (offsets are under 24 h), so the dates two days around
		 * [lo, until) hold every start in it. */
		days *d = &t->d[r->days];
		int32_t a = floor_day(lo) - 2, b = floor_day(until) + 2;
		days_cover(d, a, b);
		/* The dates are sorted and only grow: the first one in range
		 * is found by bisection, not by walking the list from its
		 * start on every chunk. */
		size_t k = 0, n = d->n, hi = n;
		while (k < hi) {
			size_t mid = k + (hi - k) / 2;
			if (d->v[mid].day < a)
				k = mid + 1;
			else
				hi = mid;
		}
		for (; k < n && d->v[k].day < b; k++) {
			/* The same bound rules out the dates whose start cannot
			 * fall in [lo, until) without converting them. */
			int64_t l = (int64_t)d->v[k].day * 86400 + (int64_t)r->start_minute * 60;
			if (l + 86400 <= lo || l - 86400 >= until)
				continue;
			ws_interval iv;
			iv.start = rectab_local_to_utc(t, r->tz, &d->v[k], r->start_minute, &iv.utc_offset);
			iv.end = iv.start + r->w->duration_s;
			if (iv.start < until)
				(void)rec_collect_cb(&c, &iv);
		}
	} else {
		/* A validated fleet always expands; a window that cannot be
		 * expanded simply offers no occurrence. */
		(void)window_expand(r->w, r->zone, lo, until, rec_collect_cb, &c);
	}
	r->hi = until;
	return true;
}

/* The first listed occurrence at or after index `i` starting at or after
 * `t`, expanding as needed; r->n when there is none before `limit`.
 * `floor` is the current wave's start: no unit will ever ask for anything
 * before it, so a gap up to there is never expanded.  (Only the wave start
 * may bound that: another unit of the same wave may still look before `t`.) */
static size_t rec_seek(rectab *tab, uint32_t id, size_t i, int64_t t, int64_t floor, int64_t limit)
{
	rec *r = &tab->v[id];
	for (;;) {
		i = lower_bound(r->start, i, r->n, t);
		if (i < r->n || !rec_extend(tab, r, floor, limit))
			return i;
	}
}

/* rec_seek from the first occurrence: every unit of a wave with this
 * recurrence asks it for the wave start, so the answer is kept. */
static size_t rec_seek_first(rectab *tab, uint32_t id, int64_t t, int64_t floor, int64_t limit)
{
	rec *r = &tab->v[id];
	if (r->seek_t == t && r->seek_i < r->n)
		return r->seek_i;
	size_t i = rec_seek(tab, id, 0, t, floor, limit);
	r = &tab->v[id];
	r->seek_t = t;
	r->seek_i = i;
	return i;
}

static void rectab_free(rectab *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->v[i].start);
		free(t->v[i].off);
	}
	free(t->v);
	free(t->slot);
	for (size_t i = 0; i < t->n_d; i++) {
		window_days_free(t->d[i].it);
		free(t->d[i].v);
	}
	free(t->d);
	free(t->dslot);
	free(t->cv);
	ptrmap_free(&t->shareable);
	ptrmap_free(&t->zone);
}

/* Blackout calendars ------------------------------------------------------
 * The occurrences of one blocking calendar, sorted by start, with the index
 * of the latest end among the first i + 1: the occurrences overlapping
 * [s, e) are among those starting before e, and one does iff the latest of
 * their ends is after s. */
typedef struct calidx {
	const ws_calendar *cal;
	int64_t *start, *end;
	size_t *pmax;
	size_t n, cap;
} calidx;

typedef struct ival {
	int64_t s, e;
} ival;

static int ival_cmp(const void *a, const void *b)
{
	const ival *x = a, *y = b;
	if (x->s != y->s)
		return x->s < y->s ? -1 : 1;
	return (x->e > y->e) - (x->e < y->e);
}

typedef struct ival_vec {
	ival *v;
	size_t n, cap;
} ival_vec;

static int cal_collect_cb(void *arg, const ws_interval *iv)
{
	ival_vec *x = arg;
	vec_reserve(&x->v, &x->cap, x->n + 1, sizeof(*x->v));
	x->v[x->n].s = iv->start;
	x->v[x->n].e = iv->end;
	x->n++;
	return 0;
}

static void calidx_build(calidx *ci, const ws_calendar *cal, int64_t from, int64_t until)
{
	ival_vec x = { 0 };
	ci->cal = cal;
	for (size_t i = 0; i < cal->n_occurrences; i++)
		(void)window_expand(&cal->occurrences[i], "UTC", from, until, cal_collect_cb, &x);
	if (x.n > 1)
		qsort(x.v, x.n, sizeof(*x.v), ival_cmp);
	ci->n = x.n;
	ci->start = xmalloc(x.n * sizeof(*ci->start));
	ci->end = xmalloc(x.n * sizeof(*ci->end));
	ci->pmax = xmalloc(x.n * sizeof(*ci->pmax));
	for (size_t i = 0; i < x.n; i++) {
		ci->start[i] = x.v[i].s;
		ci->end[i] = x.v[i].e;
		ci->pmax[i] = i > 0 && ci->end[ci->pmax[i - 1]] >= x.v[i].e ? ci->pmax[i - 1] : i;
	}
	free(x.v);
}

/* The end of the latest-ending occurrence overlapping [s, e), or NO_TIME. */
static int64_t calidx_block(const calidx *ci, int64_t s, int64_t e)
{
	size_t j = lower_bound(ci->start, 0, ci->n, e);   /* first starting at/after e */
	if (j == 0)
		return NO_TIME;
	int64_t end = ci->end[ci->pmax[j - 1]];
	return end > s ? end : NO_TIME;
}

static void calidx_free(calidx *ci)
{
	free(ci->start);
	free(ci->end);
	free(ci->pmax);
}

/* The cluster cap ----------------------------------------------------------
 * Per cluster, the number of its units in progress as a step function: a
 * treap of breakpoints keyed by time, each holding the count from its key to
 * the next key, with lazy range add and subtree max/min.  Nodes of every
 * cluster come from one pool, emptied after each wave (waves never overlap
 * in time, so a wave starts with no unit in progress). */
typedef struct cap_node {
	int64_t key;
	int32_t l, r;
	uint32_t prio;
	int32_t val, lazy, mx, mn;
} cap_node;

typedef struct cap_pool {
	cap_node *n;             /* n[0] is the empty tree */
	size_t len, cap;
	uint32_t rng;
} cap_pool;

static int32_t cap_new(cap_pool *p, int64_t key, int32_t val)
{
	vec_reserve(&p->n, &p->cap, p->len + 1, sizeof(*p->n));
	/* xorshift32: the tree's shape never shows in a result, but the same
	 * input still builds the same tree. */
	p->rng ^= p->rng << 13;
	p->rng ^= p->rng >> 17;
	p->rng ^= p->rng << 5;
	cap_node *x = &p->n[p->len];
	x->key = key;
	x->l = x->r = 0;
	x->prio = p->rng;
	x->val = x->mx = x->mn = val;
	x->lazy = 0;
	return (int32_t)p->len++;
}

static void cap_apply(cap_pool *p, int32_t x, int32_t a)
{
	if (!x)
		return;
	p->n[x].val += a;
	p->n[x].mx += a;
	p->n[x].mn += a;
	p->n[x].lazy += a;
}

static void cap_push(cap_pool *p, int32_t x)
{
	if (x && p->n[x].lazy) {
		cap_apply(p, p->n[x].l, p->n[x].lazy);
		cap_apply(p, p->n[x].r, p->n[x].lazy);
		p->n[x].lazy = 0;
	}
}

static void cap_pull(cap_pool *p, int32_t x)
{
	cap_node *n = &p->n[x];
	n->mx = n->mn = n->val;
	if (n->l) {
		n->mx = p->n[n->l].mx > n->mx ? p->n[n->l].mx : n->mx;
		n->mn = p->n[n->l].mn < n->mn ? p->n[n->l].mn : n->mn;
	}
	if (n->r) {
		n->mx = p->n[n->r].mx > n->mx ? p->n[n->r].mx : n->mx;
		n->mn = p->n[n->r].mn < n->mn ? p->n[n->r].mn : n->mn;
	}
}

/* Splits x into keys < key (*a) and keys >= key (*b). */
static void cap_split(cap_pool *p, int32_t x, int64_t key, int32_t *a, int32_t *b)
{
	if (!x) {
		*a = *b = 0;
		return;
	}
	cap_push(p, x);
	if (p->n[x].key < key) {
		int32_t ra, rb;
		cap_split(p, p->n[x].r, key, &ra, &rb);
		p->n[x].r = ra;
		cap_pull(p, x);
		*a = x;
		*b = rb;
	} else {
		int32_t la, lb;
		cap_split(p, p->n[x].l, key, &la, &lb);
		p->n[x].l = lb;
		cap_pull(p, x);
		*a = la;
		*b = x;
	}
}

/* Joins a and b, every key of a below every key of b. */
static int32_t cap_merge(cap_pool *p, int32_t a, int32_t b)
{
	if (!a || !b)
		return a ? a : b;
	if (p->n[a].prio > p->n[b].prio) {
		cap_push(p, a);
		p->n[a].r = cap_merge(p, p->n[a].r, b);
		cap_pull(p, a);
		return a;
	}
	cap_push(p, b);
	p->n[b].l = cap_merge(p, a, p->n[b].l);
	cap_pull(p, b);
	return b;
}

static int32_t cap_first(cap_pool *p, int32_t x)
{
	while (x) {
		cap_push(p, x);
		if (!p->n[x].l)
			break;
		x = p->n[x].l;
	}
	return x;
}

static int32_t cap_last(cap_pool *p, int32_t x)
{
	while (x) {
		cap_push(p, x);
		if (!p->n[x].r)
			break;
		x = p->n[x].r;
	}
	return x;
}

/*
 * Probing is read-only: most candidates of a busy cluster are rejected, and
 * a probe that split and merged the tree would write to it every time.  A
 * node's stored val/mx/mn include the adds applied to it; the adds still
 * pending for its children are its `lazy`, so the true values below a node
 * are the stored ones plus the sum of its ancestors' lazies (`acc`).
 */

/* The greatest key <= t (its true count in *val), or 0. */
static int32_t cap_floor(const cap_pool *p, int32_t x, int64_t t, int32_t *val)
{
	int32_t best = 0, acc = 0;
	while (x) {
		const cap_node *n = &p->n[x];
		if (n->key <= t) {
			best = x;
			*val = n->val + acc;
			acc += n->lazy;
			x = n->r;
		} else {
			acc += n->lazy;
			x = n->l;
		}
	}
	return best;
}

/* The highest true count among keys in [lo, hi). */
static int32_t cap_range_max(const cap_pool *p, int32_t x, int64_t lo, int64_t hi)
{
	int32_t acc = 0, best = INT32_MIN;
	/* Down to the first node inside the range: it splits the range. */
	while (x && (p->n[x].key < lo || p->n[x].key >= hi)) {
		acc += p->n[x].lazy;
		x = p->n[x].key < lo ? p->n[x].r : p->n[x].l;
	}
	if (!x)
		return best;
	best = p->n[x].val + acc;
	int32_t base = acc + p->n[x].lazy;
	/* Left side: keys >= lo. */
	acc = base;
	for (int32_t y = p->n[x].l; y;) {
		const cap_node *n = &p->n[y];
		if (n->key >= lo) {
			if (n->val + acc > best)
				best = n->val + acc;
			if (n->r && p->n[n->r].mx + acc + n->lazy > best)
				best = p->n[n->r].mx + acc + n->lazy;
			acc += n->lazy;
			y = n->l;
		} else {
			acc += n->lazy;
			y = n->r;
		}
	}
	/* Right side: keys < hi. */
	acc = base;
	for (int32_t y = p->n[x].r; y;) {
		const cap_node *n = &p->n[y];
		if (n->key < hi) {
			if (n->val + acc > best)
				best = n->val + acc;
			if (n->l && p->n[n->l].mx + acc + n->lazy > best)
				best = p->n[n->l].mx + acc + n->lazy;
			acc += n->lazy;
			y = n->r;
		} else {
			acc += n->lazy;
			y = n->l;
		}
	}
	return best;
}

/* The greatest key in [lo, hi) whose true count is >= cap, or 0. */
static int32_t cap_last_full(const cap_pool *p, int32_t x, int32_t acc, int64_t lo, int64_t hi,
			     int32_t cap)
{
	if (!x || p->n[x].mx + acc < cap)
		return 0;
	const cap_node *n = &p->n[x];
	int32_t r;
	if (n->key < hi && (r = cap_last_full(p, n->r, acc + n->lazy, lo, hi, cap)))
		return r;
	if (n->key < lo)
		return 0;
	if (n->key < hi && n->val + acc >= cap)
		return x;
	return cap_last_full(p, n->l, acc + n->lazy, lo, hi, cap);
}

/* The least key > k whose true count is below cap, or 0. */
static int32_t cap_next_below(const cap_pool *p, int32_t x, int32_t acc, int64_t k, int32_t cap)
{
	if (!x || p->n[x].mn + acc >= cap)
		return 0;
	const cap_node *n = &p->n[x];
	int32_t r;
	if (n->key > k && (r = cap_next_below(p, n->l, acc + n->lazy, k, cap)))
		return r;
	if (n->key > k && n->val + acc < cap)
		return x;
	return cap_next_below(p, n->r, acc + n->lazy, k, cap);
}

/*
 * Whether one more unit fits in [s, e) under `cap` at every instant: the
 * count in force at s (from the greatest breakpoint <= s) and at every
 * breakpoint inside stay below cap.  When not, *until is the end of the
 * last saturated stretch meeting [s, e): a later candidate of the same
 * length that starts before it meets that stretch too.
 */
static bool cap_fits(const cap_pool *p, int32_t root, int64_t s, int64_t e, int32_t cap,
		     int64_t *until)
{
	int32_t at_s = 0;
	int32_t fl = cap_floor(p, root, s, &at_s);
	int64_t lo = fl ? p->n[fl].key : s;
	if (cap_range_max(p, root, lo, e) < cap)
		return true;
	int32_t full = cap_last_full(p, root, 0, lo, e, cap);
	int32_t q = full ? cap_next_below(p, root, 0, p->n[full].key, cap) : 0;
	/* The last breakpoint always counts 0 (every window ends). */
	*until = q ? p->n[q].key : e;
	return false;
}

/*
 * Adds one unit in progress over [s, e): s and e become breakpoints (each
 * with the count in force just before it), then the keys in [s, e) get +1.
 * Two splits and their merges, the new breakpoints joined to the pieces
 * they begin.
 */
static void cap_add(cap_pool *p, int32_t *root, int64_t s, int64_t e)
{
	int32_t a, b, m, c;
	cap_split(p, *root, s, &a, &b);   /* a: keys < s */
	cap_split(p, b, e, &m, &c);       /* m: keys in [s, e), c: keys >= e */
	int32_t fm = cap_first(p, m);
	if (!(fm && p->n[fm].key == s)) {
		int32_t la = cap_last(p, a);
		int32_t x = cap_new(p, s, la ? p->n[la].val : 0);
		m = cap_merge(p, x, m);
	}
	int32_t fc = cap_first(p, c);
	if (!(fc && p->n[fc].key == e)) {
		int32_t x = cap_new(p, e, p->n[cap_last(p, m)].val);   /* m holds s now */
		c = cap_merge(p, x, c);
	}
	cap_apply(p, m, 1);
	*root = cap_merge(p, cap_merge(p, a, m), c);
}

/* Units --------------------------------------------------------------------- */

enum { U_PENDING = 0, U_PLACED, U_UNASSIGNED };
enum { WHY_NOMATCH = 1, WHY_FULL, WHY_DEP, WHY_HORIZON };  /* unassigned reasons */
/* t_sel for a tenant that matched waves which were all full (max_tenants);
 * -1 is a tenant that matched none. */
#define SEL_FULL (-2)
enum { SLOT_NONE = 0, SLOT_POLICY, SLOT_NO_WINDOWS };     /* where candidates come from */
enum { DELAY_BLACKOUT = 0, DELAY_FULL = 1 };

typedef struct unit {
	const char *name;        /* slug, or cluster name */
	uint32_t cluster;        /* fleet cluster index */
	int crit;                /* the tenant's; a cluster's highest */
	int sel;                 /* step-2 wave, -1 none */
	int wave;                /* after step 3 (0-based, overflow included) */
	int push_dep;            /* the unit that pushed it, -1 */
	int depth;               /* longest chain of candidate dependencies below */
	int state, why, why_ref; /* why/why_ref: the unassigned reason */
	int slot_kind;
	uint32_t dep_off, n_deps;
	uint32_t rec_off, n_recs;
	uint32_t cal_off, n_cals;
	uint32_t mem_off, n_mem; /* its candidate tenants: the tenant's index (n_mem 1), or
				  * for a cluster an offset into members[], by slug */
	uint32_t delay_off, n_delays;
	int64_t ws, we;
	int32_t rec_id;          /* where the window came from, -1 slot */
	int occ_off;             /* the zone's offset at that occurrence's start */
	const char *zone;        /* interned: the tenant's (tenant mode) or cluster's zone */
} unit;

typedef struct delay {
	int kind;
	uint32_t ref;            /* calidx or fleet cluster index */
	int64_t until;
} delay;

typedef struct wave_out {
	int64_t start, end;
	uint32_t off, n;         /* into placed[] */
	int index;               /* 1-based after dropping, 0 dropped */
} wave_out;

typedef struct planner {
	const ws_fleet *f;
	const ws_policy *pol;
	ws_diags *d;
	int errors;
	bool clusters;           /* unit: cluster */
	int64_t start, horizon_end, slot;
	size_t n_pw;             /* the policy's waves */
	int n_waves;             /* including overflow */
	ws_arena *tmp;           /* working memory with the planner's lifetime */
	strset zones;
	ptrmap zone_names;       /* a fleet zone name -> its copy in `zones` */

	struct name_ref *cand;   /* the candidates by slug */
	size_t n_cand;
	int32_t *t_unit;         /* tenant -> unit, -1 non-candidate */
	int32_t *t_sel;          /* tenant -> step-2 wave, -1 */
	unit *u;
	size_t n_u;
	uint32_t *deps, *dependents, *dependents_off;
	struct unit_window {
		uint32_t rec;
		int64_t length;
	} *recs;                 /* each unit's windows */
	uint32_t *cals, *members;
	size_t n_recs_total, n_cals_total;
	int64_t longest;         /* the longest window of any unit */

	rectab rt;
	calidx *cal;             /* the policy's blocking calendars */
	size_t n_cal;

	int32_t *root;           /* per fleet cluster */
	struct placer *pw;       /* PLACERS of them (see schedule_waves) */
	int threads;
	size_t parallel_min_units;
	uint8_t *cl_placer;      /* per fleet cluster: which placer has it in this wave */
	uint32_t *cl_count;
	uint32_t *cl_wave_n;     /* per fleet cluster: its units in this wave */

	delay *delays;
	size_t n_delays, cap_delays;

	uint32_t *placed;        /* units in placement order, wave after wave */
	size_t n_placed;
	wave_out *wo;

	char **warn;
	size_t n_warn, cap_warn;
} planner;

static void plan_error(planner *pl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void plan_error(planner *pl, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	ws_diag_addv(pl->d, NULL, 0, 0, fmt, ap);
	va_end(ap);
	pl->errors++;
}

/* The interned copy of a zone name (never NULL), found by address first. */
static const char *zone_intern(planner *pl, const char *zone)
{
	struct ptrmap_slot *x = ptrmap_slot(&pl->zone_names, zone);
	if (!x->val)
		x->val = strset_intern(&pl->zones, zone);
	return x->val;
}

/* Takes ownership of `s`. */
static void warn_take(planner *pl, char *s)
{
	vec_reserve(&pl->warn, &pl->cap_warn, pl->n_warn + 1, sizeof(*pl->warn));
	pl->warn[pl->n_warn++] = s;
}

static const char *kind_name(ws_release_kind k)
{
	return k == WS_RELEASE_URGENT ? "urgent" : k == WS_RELEASE_STANDARD ? "standard" : "unknown";
}

static const char *wave_name(const planner *pl, int k, char *buf, size_t size)
{
	if ((size_t)k < pl->n_pw)
		return pl->pol->waves[k].name;
	snprintf(buf, size, "overflow-%zu", (size_t)k - pl->n_pw + 1);
	return buf;
}

static const ws_wave_settings *wave_settings(const planner *pl, int k)
{
	if ((size_t)k < pl->n_pw)
		return &pl->pol->waves[k].s;
	return pl->n_pw ? &pl->pol->waves[pl->n_pw - 1].s : &pl->pol->defaults;
}

/* Step 0: the release kind and the calendars ------------------------------- */

static int check_inputs(planner *pl, const ws_plan_input *in)
{
	const ws_policy *p = pl->pol;
	if (!(p->release_kinds & (unsigned)in->kind)) {
		char kinds[64] = "";
		if (p->release_kinds & WS_RELEASE_STANDARD)
			strcat(kinds, "standard");
		if (p->release_kinds & WS_RELEASE_URGENT)
			strcat(kinds, *kinds ? ", urgent" : "urgent");
		plan_error(pl, "policy \"%s\" does not allow %s releases (release_kinds: [%s])",
			   p->name, kind_name(in->kind), kinds);
	}
	pl->cal = xcalloc(p->n_blackouts, sizeof(*pl->cal));
	for (size_t i = 0; i < p->n_blackouts; i++) {
		const ws_calendar *cal = NULL;
		for (size_t j = 0; j < pl->f->n_calendars && !cal; j++)
			if (strcmp(pl->f->calendars[j].name, p->blackouts[i]) == 0)
				cal = &pl->f->calendars[j];
		bool repeated = false;
		for (size_t j = 0; j < pl->n_cal && !repeated; j++)
			repeated = pl->cal[j].cal == cal;
		if (!cal)
			plan_error(pl, "policy \"%s\" names blackout calendar \"%s\", which the "
				   "fleet does not define", p->name, p->blackouts[i]);
		else if (!repeated && (cal->hard || !p->break_glass))
			pl->cal[pl->n_cal++].cal = cal;   /* soft + break_glass: never blocks */
	}
	return pl->errors ? WS_EINVAL : 0;
}

/* Steps 1 and 2: candidates and wave choice ------------------------------- */

typedef struct name_ref {
	const char *name;
	uint32_t idx;
} name_ref;

static int name_ref_cmp(const void *a, const void *b)
{
	const name_ref *x = a, *y = b;
	return strcmp(x->name, y->name);
}

static bool is_candidate(const ws_tenant *t, const char *release)
{
	return !t->frozen && (!t->version || strcmp(t->version, release) != 0);
}

/* Step 1: the candidates, sorted by slug once; every later order that
 * ends in the slug comes from this one. */
static void collect_candidates(planner *pl, const char *release)
{
	const ws_fleet *f = pl->f;
	size_t nt = f->n_tenants;
	pl->t_unit = xmalloc(nt * sizeof(*pl->t_unit));
	pl->t_sel = xmalloc(nt * sizeof(*pl->t_sel));
	pl->cand = xmalloc(nt * sizeof(*pl->cand));
	/* The fleet keeps its tenants sorted by slug: walked in that order the
	 * candidates come out sorted. */
	const size_t *by_slug = fleet_tenants_by_slug(f);
	for (size_t k = 0; k < nt; k++) {
		size_t i = by_slug ? by_slug[k] : k;
		const ws_tenant *t = &f->tenants[i];
		pl->t_unit[i] = -1;
		pl->t_sel[i] = -1;
		if (is_candidate(t, release)) {
			pl->t_unit[i] = 0;   /* a candidate; numbered with the units */
			pl->cand[pl->n_cand++] = (name_ref){ t->slug, (uint32_t)i };
		}
	}
	if (!by_slug)
		qsort(pl->cand, pl->n_cand, sizeof(*pl->cand), name_ref_cmp);
}

/* Step 2: tenants in (criticality low -> critical, slug) order, each to the
 * first wave that selects it and still has room. */
static void choose_waves(planner *pl)
{
	const ws_fleet *f = pl->f;
	size_t n = pl->n_cand, start[5] = { 0 };
	for (size_t k = 0; k < n; k++)
		start[f->tenants[pl->cand[k].idx].criticality + 1]++;
	for (int c = 0; c < 4; c++)
		start[c + 1] += start[c];
	uint32_t *order = xmalloc(n * sizeof(*order));
	for (size_t k = 0; k < n; k++)   /* stable: slug order within a level */
		order[start[f->tenants[pl->cand[k].idx].criticality]++] = pl->cand[k].idx;
	size_t *taken = xcalloc(pl->n_pw, sizeof(*taken));
	for (size_t k = 0; k < n; k++) {
		/* Selectors read each tenant's record and labels; in this order
		 * they are scattered, so they are fetched a few tenants ahead. */
		if (k + 16 < n)
			__builtin_prefetch(&f->tenants[order[k + 16]]);
		if (k + 8 < n)
			__builtin_prefetch(f->tenants[order[k + 8]].labels);
		const ws_tenant *t = &f->tenants[order[k]];
		for (size_t w = 0; w < pl->n_pw; w++) {
			const ws_wave *wv = &pl->pol->waves[w];
			if (!selector_match(wv->select, f, t))
				continue;
			if (wv->max_tenants > 0 && taken[w] >= (size_t)wv->max_tenants) {
				pl->t_sel[order[k]] = SEL_FULL;   /* unless a later wave has room */
				continue;
			}
			pl->t_sel[order[k]] = (int)w;
			taken[w]++;
			break;
		}
	}
	free(taken);
	free(order);
	/* unmatched: error fails the plan first, one diagnostic per tenant. */
	if (!pl->pol->unmatched_skip)
		for (size_t k = 0; k < n; k++)
			if (pl->t_sel[pl->cand[k].idx] < 0)
				plan_error(pl, "tenant \"%s\" matches no wave%s (unmatched: error)",
					   pl->cand[k].name,
					   pl->t_sel[pl->cand[k].idx] == SEL_FULL ? " with room" : "");
}

/* Units and their dependency graph ----------------------------------------- */

typedef struct edge {
	uint32_t from, to;       /* from depends on to */
} edge;

static int edge_cmp(const void *a, const void *b)
{
	const edge *x = a, *y = b;
	if (x->from != y->from)
		return x->from < y->from ? -1 : 1;
	return (x->to > y->to) - (x->to < y->to);
}

/* Units are numbered in name order, so "smallest name" is "smallest index". */
static void build_units(planner *pl)
{
	const ws_fleet *f = pl->f;
	if (!pl->clusters) {
		pl->n_u = pl->n_cand;
		pl->u = xcalloc(pl->n_u, sizeof(*pl->u));
		for (size_t k = 0; k < pl->n_cand; k++) {
			uint32_t ti = pl->cand[k].idx;
			const ws_tenant *t = &f->tenants[ti];
			unit *u = &pl->u[k];
			pl->t_unit[ti] = (int32_t)k;
			u->name = t->slug;
			u->cluster = (uint32_t)t->cluster_index;
			u->crit = (int)t->criticality;
			u->sel = pl->t_sel[ti];
			u->mem_off = ti;   /* the tenant itself */
			u->n_mem = 1;
		}
		return;
	}
	/* Clusters holding candidates, by name; their members by slug. */
	uint32_t *count = xcalloc(f->n_clusters, sizeof(*count));
	for (size_t k = 0; k < pl->n_cand; k++)
		count[f->tenants[pl->cand[k].idx].cluster_index]++;
	name_ref *order = xmalloc(f->n_clusters * sizeof(*order));
	size_t n = 0;
	for (size_t c = 0; c < f->n_clusters; c++)
		if (count[c])
			order[n++] = (name_ref){ f->clusters[c].name, (uint32_t)c };
	qsort(order, n, sizeof(*order), name_ref_cmp);
	int32_t *c_unit = xmalloc(f->n_clusters * sizeof(*c_unit));
	pl->n_u = n;
	pl->u = xcalloc(n, sizeof(*pl->u));
	uint32_t off = 0;
	for (size_t k = 0; k < n; k++) {
		unit *u = &pl->u[k];
		c_unit[order[k].idx] = (int32_t)k;
		u->name = f->clusters[order[k].idx].name;
		u->cluster = order[k].idx;
		u->sel = -1;
		u->mem_off = off;
		off += count[order[k].idx];
	}
	pl->members = xmalloc(off * sizeof(*pl->members));
	for (size_t k = 0; k < pl->n_cand; k++) {
		uint32_t ti = pl->cand[k].idx;
		const ws_tenant *t = &f->tenants[ti];
		unit *u = &pl->u[c_unit[t->cluster_index]];
		pl->members[u->mem_off + u->n_mem++] = ti;
		pl->t_unit[ti] = c_unit[t->cluster_index];
		if ((int)t->criticality > u->crit)
			u->crit = (int)t->criticality;
		if (pl->t_sel[ti] > u->sel)
			u->sel = pl->t_sel[ti];   /* the latest: the most cautious */
	}
	free(c_unit);
	free(order);
	free(count);
}

/* One tenant of a unit: the tenant itself, or the k-th member of a cluster. */
static uint32_t unit_tenant(const planner *pl, const unit *u, uint32_t k)
{
	return pl->clusters ? pl->members[u->mem_off + k] : u->mem_off;
}

static void build_graph(planner *pl)
{
	const ws_fleet *f = pl->f;
	edge *e = NULL;
	size_t n = 0, cap = 0;
	for (size_t i = 0; i < f->n_tenants; i++) {
		const ws_tenant *t = &f->tenants[i];
		if (pl->t_unit[i] < 0)
			continue;
		for (size_t j = 0; j < t->n_depends_on; j++) {
			size_t di = t->depends_on_index ? t->depends_on_index[j] : SIZE_MAX;
			if (di >= f->n_tenants)
				continue;
			const ws_tenant *dt = &f->tenants[di];
			if (dt->frozen)
				warn_take(pl, xasprintf("tenant %s depends on frozen tenant %s",
							t->slug, dt->slug));
			if (pl->t_unit[di] < 0 || pl->t_unit[di] == pl->t_unit[i])
				continue;   /* satisfied, or inside one cluster */
			vec_reserve(&e, &cap, n + 1, sizeof(*e));
			e[n++] = (edge){ (uint32_t)pl->t_unit[i], (uint32_t)pl->t_unit[di] };
		}
	}
	if (n > 1)
		qsort(e, n, sizeof(*e), edge_cmp);
	size_t m = 0;
	for (size_t k = 0; k < n; k++)
		if (m == 0 || edge_cmp(&e[m - 1], &e[k]) != 0)
			e[m++] = e[k];
	pl->deps = xmalloc(m * sizeof(*pl->deps));
	pl->dependents = xmalloc(m * sizeof(*pl->dependents));
	pl->dependents_off = xcalloc(pl->n_u + 1, sizeof(*pl->dependents_off));
	for (size_t k = 0; k < m; k++) {
		unit *u = &pl->u[e[k].from];
		if (u->n_deps == 0)
			u->dep_off = (uint32_t)k;
		u->n_deps++;
		pl->deps[k] = e[k].to;
		pl->dependents_off[e[k].to + 1]++;
	}
	for (size_t k = 0; k < pl->n_u; k++)
		pl->dependents_off[k + 1] += pl->dependents_off[k];
	uint32_t *fill = xmalloc((pl->n_u + 1) * sizeof(*fill));
	memcpy(fill, pl->dependents_off, (pl->n_u + 1) * sizeof(*fill));
	for (size_t k = 0; k < m; k++)
		pl->dependents[fill[e[k].to]++] = e[k].from;
	free(fill);
	free(e);
}

/* A growing string for cycle messages. */
typedef struct sbuf {
	char *s;
	size_t len, cap;
} sbuf;

static void sbuf_add(sbuf *b, const char *s)
{
	size_t n = strlen(s);
	vec_reserve(&b->s, &b->cap, b->len + n + 1, 1);
	memcpy(b->s + b->len, s, n + 1);
	b->len += n;
}

/*
 * Reports one cycle per strongly connected component of the units Kahn's
 * algorithm could not order (`left` > 0): the shortest cycle through the
 * component's smallest name, found breadth-first with dependencies in name
 * order, written from that name as `a -> b -> a` ("a depends on b", as the
 * fleet validator writes tenant cycles).  Listing every cycle instead can
 * take exponential time on a densely tangled fleet.  Components come from
 * Kosaraju's two passes, iterative so that no chain overflows the stack.
 */
static void find_cycles(planner *pl, const uint32_t *left)
{
	size_t n = pl->n_u;
	uint32_t *finish = xmalloc(n * sizeof(*finish));
	uint32_t *stack = xmalloc(n * sizeof(*stack));
	uint32_t *next = xmalloc(n * sizeof(*next));
	int32_t *comp = xmalloc(n * sizeof(*comp));
	unsigned char *seen = xcalloc(n, 1);
	size_t nf = 0;
	/* Pass 1: finishing order along dependencies. */
	for (size_t r = 0; r < n; r++) {
		if (!left[r] || seen[r])
			continue;
		size_t depth = 0;
		stack[depth] = (uint32_t)r;
		next[depth++] = 0;
		seen[r] = 1;
		while (depth) {
			uint32_t x = stack[depth - 1];
			const unit *u = &pl->u[x];
			if (next[depth - 1] == u->n_deps) {
				finish[nf++] = x;
				depth--;
				continue;
			}
			uint32_t w = pl->deps[u->dep_off + next[depth - 1]++];
			if (left[w] && !seen[w]) {
				seen[w] = 1;
				stack[depth] = w;
				next[depth++] = 0;
			}
		}
	}
	/* Pass 2: components along dependents, latest finisher first. */
	for (size_t i = 0; i < n; i++)
		comp[i] = -1;
	int32_t nc = 0;
	for (size_t k = nf; k-- > 0;) {
		uint32_t r = finish[k];
		if (comp[r] >= 0)
			continue;
		size_t depth = 0;
		stack[depth++] = r;
		comp[r] = nc;
		while (depth) {
			uint32_t x = stack[--depth];
			for (uint32_t e = pl->dependents_off[x]; e < pl->dependents_off[x + 1]; e++) {
				uint32_t w = pl->dependents[e];
				if (left[w] && comp[w] < 0) {
					comp[w] = nc;
					stack[depth++] = w;
				}
			}
		}
		nc++;
	}
	/* Each component with more than one unit, by its smallest name. */
	int32_t *parent = xmalloc(n * sizeof(*parent));
	unsigned char *done = xcalloc((size_t)nc + 1, 1);
	for (size_t i = 0; i < n; i++)
		parent[i] = -1;
	for (size_t s0 = 0; s0 < n; s0++) {
		if (!left[s0] || done[comp[s0]])
			continue;
		done[comp[s0]] = 1;
		/* Breadth-first from s0 inside its component, back to s0. */
		size_t head = 0, tail = 0, touched = 0;
		int32_t last = -1;
		stack[tail++] = (uint32_t)s0;
		while (head < tail && last < 0) {
			uint32_t x = stack[head++];
			const unit *u = &pl->u[x];
			for (uint32_t e = 0; e < u->n_deps && last < 0; e++) {
				uint32_t w = pl->deps[u->dep_off + e];
				if (comp[w] != comp[s0])
					continue;
				if (w == s0)
					last = (int32_t)x;
				else if (parent[w] < 0) {
					parent[w] = (int32_t)x;
					stack[tail++] = w;
				}
			}
		}
		touched = tail;
		if (last >= 0) {
			size_t len = 0;
			for (int32_t x = last; x >= 0 && (size_t)x != s0; x = parent[x])
				next[len++] = (uint32_t)x;   /* reversed path, s0 excluded */
			sbuf b = { 0 };
			sbuf_add(&b, pl->clusters ? "cluster dependency cycle: " : "dependency cycle: ");
			sbuf_add(&b, pl->u[s0].name);
			for (size_t k = len; k-- > 0;) {
				sbuf_add(&b, " -> ");
				sbuf_add(&b, pl->u[next[k]].name);
			}
			sbuf_add(&b, " -> ");
			sbuf_add(&b, pl->u[s0].name);
			plan_error(pl, "%s", b.s);
			free(b.s);
		}
		for (size_t k = 0; k < touched; k++)
			parent[stack[k]] = -1;
	}
	free(done);
	free(parent);
	free(seen);
	free(comp);
	free(next);
	free(stack);
	free(finish);
}

/* Steps 3 and 4: dependencies in topological order (Kahn).  Returns WS_EINVAL
 * after reporting when the units have a cycle. */
static int resolve_dependencies(planner *pl)
{
	size_t n = pl->n_u;
	uint32_t *left = xmalloc(n * sizeof(*left));
	uint32_t *queue = xmalloc(n * sizeof(*queue));
	size_t head = 0, tail = 0;
	for (size_t i = 0; i < n; i++) {
		left[i] = pl->u[i].n_deps;
		if (!left[i])
			queue[tail++] = (uint32_t)i;
	}
	while (head < tail) {
		uint32_t i = queue[head++];
		unit *u = &pl->u[i];
		int wave = u->sel, pushed_by = -1, unassigned_dep = -1;
		u->push_dep = -1;
		for (uint32_t k = 0; k < u->n_deps; k++) {
			const unit *v = &pl->u[pl->deps[u->dep_off + k]];
			int vi = (int)pl->deps[u->dep_off + k];
			if (v->depth + 1 > u->depth)
				u->depth = v->depth + 1;
			if (v->state == U_UNASSIGNED) {
				if (unassigned_dep < 0)
					unassigned_dep = vi;
			} else if (v->wave + 1 > wave) {
				wave = v->wave + 1;
				pushed_by = vi;
			}
		}
		if (u->sel < 0) {
			u->state = U_UNASSIGNED;
			u->why = u->sel == SEL_FULL ? WHY_FULL : WHY_NOMATCH;
		} else if (unassigned_dep >= 0) {
			u->state = U_UNASSIGNED;
			u->why = WHY_DEP;
			u->why_ref = unassigned_dep;
		} else {
			u->wave = wave;
			u->push_dep = wave > u->sel ? pushed_by : -1;
			if (wave + 1 > pl->n_waves)
				pl->n_waves = wave + 1;
		}
		for (uint32_t k = pl->dependents_off[i]; k < pl->dependents_off[i + 1]; k++)
			if (--left[pl->dependents[k]] == 0)
				queue[tail++] = pl->dependents[k];
	}
	free(queue);
	int rc = 0;
	if (tail < n) {
		find_cycles(pl, left);
		rc = WS_EINVAL;
	}
	free(left);
	return rc;
}

/* What each unit may be placed in, and which blackouts bind it. */
static void collect_windows(planner *pl)
{
	const ws_fleet *f = pl->f;
	size_t rcap = 0, ccap = 0;
	/* Sized once rather than grown: every unit's windows, and every
	 * calendar for every unit at most. */
	size_t nw_all = 0;
	for (size_t i = 0; pl->pol->respect_windows && i < pl->n_u; i++)
		nw_all += pl->clusters ? f->clusters[pl->u[i].cluster].n_windows
				       : f->tenants[pl->u[i].mem_off].n_windows;
	vec_reserve(&pl->recs, &rcap, nw_all, sizeof(*pl->recs));
	vec_reserve(&pl->cals, &ccap, pl->n_u * pl->n_cal, sizeof(*pl->cals));
	for (size_t i = 0; i < pl->n_u; i++) {
		unit *u = &pl->u[i];
		if (u->state == U_UNASSIGNED)
			continue;
		const ws_window *w;
		size_t nw;
		const char *zone;
		if (pl->clusters) {
			const ws_cluster *c = &f->clusters[u->cluster];
			w = c->windows;
			nw = c->n_windows;
			zone = c->timezone;
		} else {
			const ws_tenant *t = &f->tenants[u->mem_off];
			w = t->windows;
			nw = t->n_windows;
			zone = t->timezone;
		}
		zone = zone_intern(pl, zone ? zone : "UTC");
		u->zone = zone;
		u->rec_off = (uint32_t)pl->n_recs_total;
		if (!pl->pol->respect_windows)
			u->slot_kind = SLOT_POLICY;
		else if (nw == 0)
			u->slot_kind = SLOT_NO_WINDOWS;
		else
			for (size_t k = 0; k < nw; k++) {
				const char *z = w[k].timezone ? zone_intern(pl, w[k].timezone) : zone;
				vec_reserve(&pl->recs, &rcap, pl->n_recs_total + 1, sizeof(*pl->recs));
				struct unit_window *x = &pl->recs[pl->n_recs_total++];
				x->rec = rec_intern(&pl->rt, &w[k], z);
				x->length = window_length(&w[k]);
				if (x->length > pl->longest)
					pl->longest = x->length;
				u->n_recs++;
			}
		/* A calendar binds a unit when it applies to any of its tenants. */
		u->cal_off = (uint32_t)pl->n_cals_total;
		for (size_t c = 0; c < pl->n_cal; c++) {
			const ws_selector *sel = pl->cal[c].cal->applies_to;
			bool applies = !sel;
			for (uint32_t k = 0; k < u->n_mem && !applies; k++)
				applies = selector_match(sel, f, &f->tenants[unit_tenant(pl, u, k)]);
			if (!applies)
				continue;
			vec_reserve(&pl->cals, &ccap, pl->n_cals_total + 1, sizeof(*pl->cals));
			pl->cals[pl->n_cals_total++] = (uint32_t)c;
			u->n_cals++;
		}
	}
	/* Blackouts matter up to the end of the longest candidate window. */
	int64_t longest = pl->longest > pl->slot ? pl->longest : pl->slot;
	for (size_t c = 0; c < pl->n_cal; c++)
		calidx_build(&pl->cal[c], pl->cal[c].cal, pl->start, pl->horizon_end + longest);
}

/* Step 5: windows ------------------------------------------------------------ */

typedef struct stream {
	int32_t rec;             /* -1: slots from the wave start */
	size_t i;                /* occurrence, or slot number */
	int64_t length;
} stream;

/*
 * Placing units in parallel.  Within a wave, units of different clusters are
 * independent: dependencies point to earlier waves, blackouts are read only,
 * and each cluster has its own cap tree.  The only shared state is the lazy
 * expansion of recurrences, so each placer has its own copy of the
 * recurrence table (keys shared, expansions private; both give the same
 * occurrences) and its own cap trees, scratch and delay list.  A large wave
 * is split between the placers by cluster, balancing units; each places its
 * units in the wave's order; the results are merged back in that order.  A
 * unit's placement depends only on its own cluster's earlier units, so the
 * plan is the same whichever placer took it.
 */
#define PLACERS 2
#define PARALLEL_MIN_UNITS 4096   /* below it, a second thread costs more than it saves */

typedef struct placer {
	rectab *rt;              /* the planner's own table, or a private copy */
	cap_pool pool;
	stream *st;              /* place_unit's scratch */
	delay *local;
	size_t cap_st, cap_local;
	uint32_t *touched;       /* clusters with a tree in this wave */
	size_t n_touched, cap_touched;
	delay *delays;           /* this wave's delays, merged after it */
	size_t n_delays, cap_delays;
	/* the units it places in this wave, in order (parallel waves) */
	uint32_t *units;
	size_t n_units, cap_units;
	planner *pl;
	int wave;
	int64_t ws0;
} placer;

static int cap_of(const planner *pl, int wave, uint32_t cluster)
{
	int a = wave_settings(pl, wave)->max_parallel_per_cluster;
	int b = pl->f->clusters[cluster].max_parallel;
	if (a > 0 && b > 0)
		return a < b ? a : b;
	return a > 0 ? a : b > 0 ? b : 0;
}

static void delay_note(delay *local, size_t *n, int kind, uint32_t ref, int64_t until)
{
	for (size_t i = 0; i < *n; i++) {
		if (local[i].kind == kind && local[i].ref == ref) {
			if (until > local[i].until)
				local[i].until = until;
			return;
		}
	}
	local[(*n)++] = (delay){ kind, ref, until };
}

/* The earliest free candidate of unit u in wave k starting at `ws0`. */
static void place_unit(planner *pl, placer *pw, uint32_t ui, int k, int64_t ws0)
{
	unit *u = &pl->u[ui];
	int cap = cap_of(pl, k, u->cluster);
	/* A cluster with no more units in the wave than its cap can never be
	 * full: fewer than cap are in progress when any of them is placed.
	 * Its units skip the cap tree altogether. */
	if (cap > 0 && pl->cl_wave_n[u->cluster] <= (uint32_t)cap)
		cap = 0;
	size_t ns = u->slot_kind ? 1 : u->n_recs;
	vec_reserve(&pw->st, &pw->cap_st, ns, sizeof(*pw->st));
	vec_reserve(&pw->local, &pw->cap_local, u->n_cals + 1, sizeof(*pw->local));
	stream *st = pw->st;
	delay *local = pw->local;
	size_t n_local = 0;
	if (u->slot_kind) {
		st[0].rec = -1;
		st[0].i = 0;
		st[0].length = pl->slot;
	} else {
		for (size_t s = 0; s < ns; s++) {
			const struct unit_window *x = &pl->recs[u->rec_off + s];
			st[s].rec = (int32_t)x->rec;
			st[s].length = x->length;
			st[s].i = rec_seek_first(pw->rt, x->rec, ws0, ws0, pl->horizon_end);
		}
	}
	for (;;) {
		int best = -1;
		int64_t bs = INT64_MAX, be = 0;
		for (size_t s = 0; s < ns; s++) {
			int64_t cs, ce;
			if (st[s].rec < 0) {
				cs = ws0 + (int64_t)st[s].i * pl->slot;
				ce = cs + pl->slot;
				if (cs >= pl->horizon_end)
					continue;
			} else {
				const rec *r = &pw->rt->v[st[s].rec];
				if (st[s].i >= r->n)
					continue;
				cs = r->start[st[s].i];
				ce = cs + st[s].length;
			}
			if (cs < bs) {
				bs = cs;
				be = ce;
				best = (int)s;
			}
		}
		if (best < 0) {
			u->state = U_UNASSIGNED;
			u->why = WHY_HORIZON;
			break;
		}
		int64_t clear = NO_TIME;   /* the instant every rejection is behind */
		for (uint32_t c = 0; c < u->n_cals; c++) {
			uint32_t ci = pl->cals[u->cal_off + c];
			int64_t until = calidx_block(&pl->cal[ci], bs, be);
			if (until != NO_TIME) {
				delay_note(local, &n_local, DELAY_BLACKOUT, ci, until);
				if (until > clear)
					clear = until;
			}
		}
		int64_t full_until;
		if (cap > 0 && !cap_fits(&pw->pool, pl->root[u->cluster], bs, be, cap, &full_until)) {
			delay_note(local, &n_local, DELAY_FULL, u->cluster, full_until);
			if (full_until > clear)
				clear = full_until;
		}
		if (clear == NO_TIME) {
			u->state = U_PLACED;
			u->ws = bs;
			u->we = be;
			u->rec_id = st[best].rec;
			u->occ_off = st[best].rec < 0 ? 0 : pw->rt->v[st[best].rec].off[st[best].i];
			if (cap > 0) {
				if (pl->root[u->cluster] == 0) {
					vec_reserve(&pw->touched, &pw->cap_touched,
						    pw->n_touched + 1, sizeof(*pw->touched));
					pw->touched[pw->n_touched++] = u->cluster;
				}
				cap_add(&pw->pool, &pl->root[u->cluster], bs, be);
			}
			/* Relative to this placer's list until the wave is merged. */
			u->delay_off = (uint32_t)pw->n_delays;
			u->n_delays = (uint32_t)n_local;
			if (n_local) {
				vec_reserve(&pw->delays, &pw->cap_delays, pw->n_delays + n_local,
					    sizeof(*pw->delays));
				memcpy(pw->delays + pw->n_delays, local, n_local * sizeof(*local));
				pw->n_delays += n_local;
			}
			break;
		}
		/* Every later candidate of this stream has the same length, so one
		 * starting before `clear` meets what rejected this one. */
		stream *s = &st[best];
		if (s->rec < 0) {
			int64_t i = (clear - ws0 + pl->slot - 1) / pl->slot;
			s->i = (size_t)i > s->i + 1 ? (size_t)i : s->i + 1;
		} else {
			s->i = rec_seek(pw->rt, (uint32_t)s->rec, s->i + 1, clear, ws0, pl->horizon_end);
		}
	}
}

/* The order of units within a wave as one integer: (depth, criticality,
 * index), the index standing for the name.  Sorting keys rather than units
 * keeps the comparison away from the unit array. */
static uint64_t unit_order_key(const unit *u, uint32_t i)
{
	uint64_t depth = u->depth < 0xffffff ? (uint64_t)u->depth : 0xffffff;
	return depth << 40 | (uint64_t)u->crit << 32 | i;
}

static int u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/*
 * Sorts one wave's order keys, which come in increasing unit index (the
 * low bits): a stable counting sort on (depth, criticality) alone then
 * gives the full order, in O(n) when (depth, criticality) packed as in
 * unit_order_key stays below n (the usual case); otherwise qsort.  `tmp`
 * has room for n keys and `count` for n + 2 counters.
 */
static void wave_sort(uint64_t *b, size_t n, uint64_t *tmp, size_t *count)
{
	if (n < 2)
		return;
	uint64_t hi_max = 0;
	for (size_t j = 0; j < n; j++)
		if (b[j] >> 32 > hi_max)
			hi_max = b[j] >> 32;
	if (hi_max > n) {
		qsort(b, n, sizeof(*b), u64_cmp);
		return;
	}
	memset(count, 0, (hi_max + 2) * sizeof(*count));
	for (size_t j = 0; j < n; j++)
		count[(b[j] >> 32) + 1]++;
	for (size_t h = 1; h <= hi_max + 1; h++)
		count[h] += count[h - 1];
	for (size_t j = 0; j < n; j++)
		tmp[count[b[j] >> 32]++] = b[j];
	memcpy(b, tmp, n * sizeof(*b));
}

/* Places units (in order) for wave k: the dependency check, then the
 * window.  Dependencies are in earlier waves: any that found no window is
 * final by now. */
static void place_units(planner *pl, placer *pw, const uint32_t *units, size_t n, int k,
			int64_t ws0)
{
	for (size_t j = 0; j < n; j++) {
		/* Units of a wave are scattered over the unit array (and their
		 * windows over pl->recs): fetched a few units ahead. */
		if (j + 16 < n)
			__builtin_prefetch(&pl->u[units[j + 16]]);
		if (j + 8 < n)
			__builtin_prefetch(&pl->recs[pl->u[units[j + 8]].rec_off]);
		uint32_t ui = units[j];
		unit *u = &pl->u[ui];
		for (uint32_t q = 0; q < u->n_deps; q++) {
			uint32_t v = pl->deps[u->dep_off + q];
			if (pl->u[v].state == U_UNASSIGNED) {
				u->state = U_UNASSIGNED;
				u->why = WHY_DEP;
				u->why_ref = (int)v;
				break;
			}
		}
		if (u->state != U_UNASSIGNED)
			place_unit(pl, pw, ui, k, ws0);
	}
}

static void *placer_main(void *arg)
{
	placer *pw = arg;
	place_units(pw->pl, pw, pw->units, pw->n_units, pw->wave, pw->ws0);
	return NULL;
}

/* A private copy of the recurrence table: the keys as they are, nothing
 * expanded yet. */
static rectab *rectab_fork(const rectab *t)
{
	rectab *c = xcalloc(1, sizeof(*c));
	c->n = c->cap = t->n;
	c->v = xmalloc((t->n ? t->n : 1) * sizeof(*c->v));
	if (t->n)
		memcpy(c->v, t->v, t->n * sizeof(*c->v));
	for (size_t i = 0; i < t->n; i++) {
		rec *r = &c->v[i];
		r->hi = INT64_MIN;
		r->seek_t = INT64_MIN;
		r->chunk = 0;
		r->start = NULL;
		r->off = NULL;
		r->n = r->cap = 0;
	}
	c->n_d = c->cap_d = t->n_d;
	c->d = xmalloc((t->n_d ? t->n_d : 1) * sizeof(*c->d));
	for (size_t i = 0; i < t->n_d; i++)
		c->d[i] = (days){ .w = t->d[i].w, .h = t->d[i].h };
	return c;
}

/* Wave k's units b[0..n) (order keys), placed, their delays merged into
 * pl->delays. */
static void place_wave(planner *pl, const uint64_t *b, size_t n, int k, int64_t ws0)
{
	placer *pw = pl->pw;
	for (int i = 0; i < PLACERS; i++)
		pw[i].n_units = 0;
	for (size_t j = 0; j < n; j++)
		pl->cl_wave_n[pl->u[(uint32_t)b[j]].cluster]++;
	bool parallel = PLACERS > 1 && pl->threads != 1 && n >= pl->parallel_min_units;
	if (parallel) {
		/* Clusters to placers, the larger ones first would balance best
		 * but the order of first appearance is good enough and cheap. */
		size_t load[PLACERS] = { 0 };
		for (size_t j = 0; j < n; j++)
			pl->cl_count[pl->u[(uint32_t)b[j]].cluster]++;
		for (size_t j = 0; j < n; j++) {
			uint32_t c = pl->u[(uint32_t)b[j]].cluster;
			if (pl->cl_count[c] == 0)
				continue;   /* assigned already */
			int best = 0;
			for (int i = 1; i < PLACERS; i++)
				if (load[i] < load[best])
					best = i;
			pl->cl_placer[c] = (uint8_t)best;
			load[best] += pl->cl_count[c];
			pl->cl_count[c] = 0;
		}
	}
	for (size_t j = 0; j < n; j++) {
		uint32_t ui = (uint32_t)b[j];
		placer *p = &pw[parallel ? pl->cl_placer[pl->u[ui].cluster] : 0];
		vec_reserve(&p->units, &p->cap_units, p->n_units + 1, sizeof(*p->units));
		p->units[p->n_units++] = ui;
	}
	pthread_t th[PLACERS];
	bool started[PLACERS] = { false };
	for (int i = 1; parallel && i < PLACERS; i++) {
		if (pw[i].rt == &pl->rt)
			pw[i].rt = rectab_fork(&pl->rt);
		pw[i].wave = k;
		pw[i].ws0 = ws0;
		started[i] = pthread_create(&th[i], NULL, placer_main, &pw[i]) == 0;
	}
	place_units(pl, &pw[0], pw[0].units, pw[0].n_units, k, ws0);
	for (int i = 1; parallel && i < PLACERS; i++) {
		if (started[i])
			pthread_join(th[i], NULL);
		else
			place_units(pl, &pw[i], pw[i].units, pw[i].n_units, k, ws0);
	}
	/* Merge the delays in placer order; offsets become global. */
	for (int i = 0; i < PLACERS; i++) {
		placer *p = &pw[i];
		size_t base = pl->n_delays;
		if (p->n_delays) {
			vec_reserve(&pl->delays, &pl->cap_delays, base + p->n_delays, sizeof(*pl->delays));
			memcpy(pl->delays + base, p->delays, p->n_delays * sizeof(*p->delays));
			pl->n_delays += p->n_delays;
		}
		for (size_t j = 0; j < p->n_units; j++) {
			unit *u = &pl->u[p->units[j]];
			if (u->state == U_PLACED)
				u->delay_off += (uint32_t)base;
		}
		p->n_delays = 0;
		for (size_t t = 0; t < p->n_touched; t++)
			pl->root[p->touched[t]] = 0;
		p->n_touched = 0;
		p->pool.len = 1;
	}
	for (size_t j = 0; j < n; j++)
		pl->cl_wave_n[pl->u[(uint32_t)b[j]].cluster] = 0;
}

static void schedule_waves(planner *pl)
{
	int nw = pl->n_waves;
	pl->wo = xcalloc((size_t)nw, sizeof(*pl->wo));
	/* Bucket the units by wave (counting sort), then order each wave. */
	uint32_t *off = xcalloc((size_t)nw + 1, sizeof(*off));
	for (size_t i = 0; i < pl->n_u; i++)
		if (pl->u[i].state == U_PENDING)
			off[pl->u[i].wave + 1]++;
	for (int k = 0; k < nw; k++)
		off[k + 1] += off[k];
	uint64_t *bucket = xmalloc((off[nw] ? off[nw] : 1) * sizeof(*bucket));
	uint64_t *sort_tmp = xmalloc((off[nw] ? off[nw] : 1) * sizeof(*sort_tmp));
	size_t *sort_count = xmalloc(((size_t)off[nw] + 2) * sizeof(*sort_count));
	uint32_t *fill = xmalloc(((size_t)nw + 1) * sizeof(*fill));
	memcpy(fill, off, ((size_t)nw + 1) * sizeof(*fill));
	for (size_t i = 0; i < pl->n_u; i++)
		if (pl->u[i].state == U_PENDING)
			bucket[fill[pl->u[i].wave]++] = unit_order_key(&pl->u[i], (uint32_t)i);
	free(fill);
	pl->placed = xmalloc((off[nw] ? off[nw] : 1) * sizeof(*pl->placed));
	pl->root = xcalloc(pl->f->n_clusters ? pl->f->n_clusters : 1, sizeof(*pl->root));
	pl->cl_placer = xcalloc(pl->f->n_clusters ? pl->f->n_clusters : 1, sizeof(*pl->cl_placer));
	pl->cl_count = xcalloc(pl->f->n_clusters ? pl->f->n_clusters : 1, sizeof(*pl->cl_count));
	pl->cl_wave_n = xcalloc(pl->f->n_clusters ? pl->f->n_clusters : 1, sizeof(*pl->cl_wave_n));
	pl->pw = xcalloc(PLACERS, sizeof(*pl->pw));
	for (int i = 0; i < PLACERS; i++) {
		placer *pw = &pl->pw[i];
		pw->pl = pl;
		pw->rt = &pl->rt;
		pw->pool.len = 1;   /* node 0 is the empty tree */
		vec_reserve(&pw->pool.n, &pw->pool.cap, 1, sizeof(*pw->pool.n));
		memset(&pw->pool.n[0], 0, sizeof(pw->pool.n[0]));
		pw->pool.rng = 2463534242u + (uint32_t)i;
	}

	int64_t cursor = pl->start;
	int index = 0;
	for (int k = 0; k < nw; k++) {
		uint64_t *b = bucket + off[k];
		size_t n = off[k + 1] - off[k];
		wave_sort(b, n, sort_tmp, sort_count);
		wave_out *w = &pl->wo[k];
		w->start = cursor;
		w->end = NO_TIME;
		w->off = (uint32_t)pl->n_placed;
		place_wave(pl, b, n, k, cursor);
		for (size_t j = 0; j < n; j++) {
			uint32_t ui = (uint32_t)b[j];
			unit *u = &pl->u[ui];
			if (u->state != U_PLACED)
				continue;
			pl->placed[pl->n_placed++] = ui;
			if (u->we > w->end)
				w->end = u->we;
		}
		w->n = (uint32_t)(pl->n_placed - w->off);
		if (w->n) {
			/* A dropped wave adds no soak: the cursor moves only here. */
			w->index = ++index;
			cursor = w->end + wave_settings(pl, k)->soak_s;
		}
	}
	free(sort_count);
	free(sort_tmp);
	free(bucket);
	free(off);
}

/* Step 6: the plan and its reasons -----------------------------------------
 * Reasons repeat across tenants, so each distinct text is made once and
 * shared: the wave and slot reasons up front, the delay reasons through a
 * cache keyed by (kind, calendar or cluster, until). */
typedef struct delay_text {
	int kind;
	uint32_t ref;
	int64_t until;
	const char *text;
} delay_text;

typedef struct out_ctx {
	planner *pl;
	ws_arena *a;
	strset reasons;          /* interned texts, in the plan's arena */
	const char **selected;   /* per policy wave: `selected by wave "W"` */
	const char ***only;      /* per policy wave: {selected[w]}, in the arena */
	const char **cluster;    /* per fleet cluster: its name in the arena */
	const char *slot_policy, *slot_none;
	const char **after;      /* per unit v: `after dependency v (wave N)`, then
				  * (reset) `depends on unassigned v` */
	delay_text *dt;          /* open addressing; text NULL = empty */
	size_t dt_cap, dt_len;
	struct off_slot {        /* (zone, instant) -> offset: libical is slow */
		const char *zone;
		int64_t t;
		int off;
	} *oc;
	size_t oc_cap, oc_len;
} out_ctx;

static uint64_t pair_hash(const void *a, size_t na, int64_t t)
{
	return hash_bytes(hash_bytes(HASH_SEED, a, na), &t, sizeof(t));
}

static uint64_t off_hash(const char *zone, int64_t t)
{
	return hash_u64(hash_ptr(HASH_SEED, zone), (uint64_t)t);
}

static int zone_offset(out_ctx *o, const char *zone, int64_t t)
{
	if ((o->oc_len + 1) * 2 > o->oc_cap) {
		size_t cap = o->oc_cap ? o->oc_cap * 2 : 256;
		struct off_slot *slot = xcalloc(cap, sizeof(*slot));
		for (size_t i = 0; i < o->oc_cap; i++) {
			if (!o->oc[i].zone)
				continue;
			size_t j = off_hash(o->oc[i].zone, o->oc[i].t) & (cap - 1);
			while (slot[j].zone)
				j = (j + 1) & (cap - 1);
			slot[j] = o->oc[i];
		}
		free(o->oc);
		o->oc = slot;
		o->oc_cap = cap;
	}
	size_t j = off_hash(zone, t) & (o->oc_cap - 1);
	for (; o->oc[j].zone; j = (j + 1) & (o->oc_cap - 1))
		if (o->oc[j].zone == zone && o->oc[j].t == t)
			return o->oc[j].off;
	o->oc[j].zone = zone;
	o->oc[j].t = t;
	/* The zone itself is found once (rectab_zone); unknown: offset 0,
	 * as ws_tz_offset says. */
	const ws_zone *z = rectab_zone(&o->pl->rt, zone);
	o->oc[j].off = z ? ws_zone_offset(z, t) : 0;
	o->oc_len++;
	return o->oc[j].off;
}

static const char *reason(out_ctx *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static const char *reason(out_ctx *o, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return strset_intern(&o->reasons, buf);
}

/* The calendar or cluster a delay names. */
static const char *delay_name(const planner *pl, const delay *d)
{
	return d->kind == DELAY_BLACKOUT ? pl->cal[d->ref].cal->name : pl->f->clusters[d->ref].name;
}

static const char *delay_reason(out_ctx *o, const delay *dl)
{
	planner *pl = o->pl;
	if ((o->dt_len + 1) * 2 > o->dt_cap) {
		size_t cap = o->dt_cap ? o->dt_cap * 2 : 256;
		delay_text *slot = xcalloc(cap, sizeof(*slot));
		for (size_t i = 0; i < o->dt_cap; i++) {
			const delay_text *x = &o->dt[i];
			if (!x->text)
				continue;
			uint32_t key[2] = { (uint32_t)x->kind, x->ref };
			size_t j = pair_hash(key, sizeof(key), x->until) & (cap - 1);
			while (slot[j].text)
				j = (j + 1) & (cap - 1);
			slot[j] = *x;
		}
		free(o->dt);
		o->dt = slot;
		o->dt_cap = cap;
	}
	uint32_t key[2] = { (uint32_t)dl->kind, dl->ref };
	size_t j = pair_hash(key, sizeof(key), dl->until) & (o->dt_cap - 1);
	for (; o->dt[j].text; j = (j + 1) & (o->dt_cap - 1))
		if (o->dt[j].kind == dl->kind && o->dt[j].ref == dl->ref && o->dt[j].until == dl->until)
			return o->dt[j].text;
	/* Made once per (kind, calendar or cluster, until), which this cache
	 * holds already: the text goes to the arena without the interning
	 * table (texts are compared by content; sharing only saves memory). */
	char t[40], buf[512];
	ws_time_format(dl->until, 0, true, t, sizeof(t));
	if (dl->kind == DELAY_BLACKOUT)
		snprintf(buf, sizeof(buf), "blackout %s until %s", delay_name(pl, dl), t);
	else
		snprintf(buf, sizeof(buf), "cluster %s full until %s", delay_name(pl, dl), t);
	const char *text = ws_arena_strdup(o->a, buf);
	o->dt[j] = (delay_text){ dl->kind, dl->ref, dl->until, text };
	o->dt_len++;
	return text;
}

static int delay_cmp(const void *a, const void *b, void *arg)
{
	const planner *pl = arg;
	const delay *x = a, *y = b;
	if (x->until != y->until)
		return x->until < y->until ? -1 : 1;
	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;   /* "blackout" < "cluster" */
	return strcmp(delay_name(pl, x), delay_name(pl, y));
}

/* The reasons all tenants of a placed unit share, after each one's own
 * first reason: the dependency, the slot, the delays (at most n_cal + 3). */
static size_t unit_reasons(out_ctx *o, unit *u, const char **out)
{
	planner *pl = o->pl;
	size_t n = 0;
	if (u->push_dep >= 0) {
		/* One text per dependency: unit names are unique and a unit's
		 * wave is final, so no other unit's text can equal it and it
		 * skips the interning table. */
		const char **after = &o->after[u->push_dep];
		if (!*after) {
			const unit *v = &pl->u[u->push_dep];
			char buf[512];
			snprintf(buf, sizeof(buf), "after dependency %s (wave %d)", v->name,
				 pl->wo[v->wave].index);
			*after = ws_arena_strdup(o->a, buf);
		}
		out[n++] = *after;
	}
	if (u->slot_kind == SLOT_POLICY)
		out[n++] = o->slot_policy;
	else if (u->slot_kind == SLOT_NO_WINDOWS)
		out[n++] = o->slot_none;
	/* pl->delays stays NULL in a plan without any delay: NULL + 0 is undefined. */
	delay *dl = u->n_delays ? pl->delays + u->delay_off : NULL;
	if (u->n_delays > 1)
		qsort_r(dl, u->n_delays, sizeof(*dl), delay_cmp, pl);
	for (uint32_t k = 0; k < u->n_delays; k++)
		out[n++] = delay_reason(o, &dl[k]);
	return n;
}

static void fill_tenant(out_ctx *o, ws_plan_tenant *pt, const unit *u, uint32_t ti,
			const char *first, const char **shared, size_t n_shared)
{
	planner *pl = o->pl;
	const ws_tenant *t = &pl->f->tenants[ti];
	pt->slug = ws_arena_strdup(o->a, t->slug);
	if (!o->cluster[t->cluster_index])
		o->cluster[t->cluster_index] = ws_arena_strdup(o->a, t->cluster);
	pt->cluster = o->cluster[t->cluster_index];
	pt->window_start = u->ws;
	pt->window_end = u->we;
	/* In tenant mode the unit's zone is the tenant's, interned already. */
	const char *zone = pl->clusters
		? zone_intern(pl, t->timezone ? t->timezone : "UTC") : u->zone;
	/* A recurring window computed in the tenant's zone knows the offset
	 * already; one-off ranges come back with offset 0. */
	const rec *r = u->rec_id >= 0 ? &pl->rt.v[u->rec_id] : NULL;
	if (r && !r->w->one_off && r->zone == zone)
		pt->offset_start = u->occ_off;
	else
		pt->offset_start = zone_offset(o, zone, u->ws);
	pt->offset_end = zone_offset(o, zone, u->we);
	int own = pl->t_sel[ti];
	bool own_wave = !(pl->clusters && own != u->sel);   /* else `moves with cluster` */
	pt->n_reasons = n_shared + 1;
	if (n_shared == 0 && own_wave) {
		/* Most tenants have this one reason: they share one list
		 * (a plan's lists are read only). */
		pt->reasons = o->only[own];
		return;
	}
	pt->reasons = ws_arena_alloc(o->a, (n_shared + 1) * sizeof(*pt->reasons));
	pt->reasons[0] = own_wave ? o->selected[own] : first;
	memcpy(pt->reasons + 1, shared, n_shared * sizeof(*shared));
}

static int unassigned_cmp(const void *a, const void *b)
{
	const ws_plan_unassigned *x = a, *y = b;
	return strcmp(x->slug, y->slug);
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static ws_plan *build_output(planner *pl, const ws_plan_input *in)
{
	ws_arena *a = ws_arena_new();
	ws_plan *p = ws_arena_alloc(a, sizeof(*p));
	out_ctx o = { .pl = pl, .a = a, .reasons = { .a = a } };
	p->priv = a;
	p->policy = ws_arena_strdup(a, pl->pol->name ? pl->pol->name : "");
	p->release = ws_arena_strdup(a, in->release);
	p->start = pl->start;
	o.selected = xcalloc(pl->n_pw, sizeof(*o.selected));
	o.only = xcalloc(pl->n_pw, sizeof(*o.only));
	for (size_t k = 0; k < pl->n_pw; k++) {
		o.selected[k] = reason(&o, "selected by wave \"%s\"", pl->pol->waves[k].name);
		o.only[k] = ws_arena_alloc(a, sizeof(*o.only[k]));
		o.only[k][0] = o.selected[k];
	}
	o.cluster = xcalloc(pl->f->n_clusters, sizeof(*o.cluster));
	o.after = xcalloc(pl->n_u, sizeof(*o.after));
	o.slot_policy = reason(&o, "slot from wave start");
	o.slot_none = reason(&o, "no maintenance windows: slot from wave start");

	size_t nw = 0;
	for (int k = 0; k < pl->n_waves; k++)
		nw += pl->wo[k].n > 0;
	p->waves = ws_arena_alloc(a, nw * sizeof(*p->waves));
	const char **shared = xmalloc((pl->n_cal + 4) * sizeof(*shared));
	for (int k = 0; k < pl->n_waves; k++) {
		const wave_out *w = &pl->wo[k];
		if (!w->n)
			continue;
		ws_plan_wave *pw = &p->waves[p->n_waves++];
		char buf[40];
		const ws_wave_settings *s = wave_settings(pl, k);
		pw->index = w->index;
		pw->name = ws_arena_strdup(a, wave_name(pl, k, buf, sizeof(buf)));
		pw->start = w->start;
		pw->end = w->end;
		pw->soak_s = s->soak_s;
		pw->settings = s;
		size_t nt = 0;
		for (uint32_t j = 0; j < w->n; j++)
			nt += pl->u[pl->placed[w->off + j]].n_mem;
		pw->tenants = ws_arena_alloc(a, nt * sizeof(*pw->tenants));
		for (uint32_t j = 0; j < w->n; j++) {
			/* The tenants come in placement order, scattered over the
			 * fleet: their records and slugs are fetched a few units
			 * ahead so that copying a slug rarely waits for memory. */
			const uint32_t *ahead = pl->placed + w->off + j;
			if (j + 16 < w->n)
				__builtin_prefetch(&pl->f->tenants[unit_tenant(pl, &pl->u[ahead[16]], 0)]);
			if (j + 8 < w->n)
				__builtin_prefetch(pl->f->tenants[unit_tenant(pl, &pl->u[ahead[8]], 0)].slug);
			unit *u = &pl->u[pl->placed[w->off + j]];
			size_t ns = unit_reasons(&o, u, shared);
			const char *moves = pl->clusters ? reason(&o, "moves with cluster %s", u->name) : NULL;
			for (uint32_t m = 0; m < u->n_mem; m++)
				fill_tenant(&o, &pw->tenants[pw->n_tenants++], u, unit_tenant(pl, u, m),
					    moves, shared, ns);
		}
	}
	free(shared);

	/* Units are in name order, so in tenant mode this is slug order. */
	size_t nu = 0;
	for (size_t i = 0; i < pl->n_u; i++)
		if (pl->u[i].state == U_UNASSIGNED)
			nu += pl->u[i].n_mem;
	p->unassigned = ws_arena_alloc(a, nu * sizeof(*p->unassigned));
	const char *nomatch = reason(&o, "matched no wave");
	const char *full = reason(&o, "no wave with room (max_tenants)");
	const char *horizon = reason(&o, "no window within horizon");
	/* `depends on unassigned v`: one text per v, as for `after`. */
	memset(o.after, 0, pl->n_u * sizeof(*o.after));
	for (size_t i = 0; i < pl->n_u; i++) {
		/* Slugs copied below are fetched ahead, as for the waves. */
		if (i + 8 < pl->n_u && pl->u[i + 8].state == U_UNASSIGNED)
			__builtin_prefetch(pl->f->tenants[unit_tenant(pl, &pl->u[i + 8], 0)].slug);
		const unit *u = &pl->u[i];
		if (u->state != U_UNASSIGNED)
			continue;
		const char *why = u->why == WHY_NOMATCH ? nomatch : u->why == WHY_FULL ? full
			: u->why == WHY_HORIZON ? horizon : NULL;
		if (!why) {
			const char **dep = &o.after[u->why_ref];
			if (!*dep) {
				char buf[512];
				snprintf(buf, sizeof(buf), "depends on unassigned %s", pl->u[u->why_ref].name);
				*dep = ws_arena_strdup(a, buf);
			}
			why = *dep;
		}
		for (uint32_t m = 0; m < u->n_mem; m++) {
			ws_plan_unassigned *x = &p->unassigned[p->n_unassigned++];
			x->slug = ws_arena_strdup(a, pl->f->tenants[unit_tenant(pl, u, m)].slug);
			x->reason = why;
		}
	}
	if (pl->clusters && p->n_unassigned > 1)
		qsort(p->unassigned, p->n_unassigned, sizeof(*p->unassigned), unassigned_cmp);

	if (pl->n_warn > 1)
		qsort(pl->warn, pl->n_warn, sizeof(*pl->warn), str_cmp);
	p->warnings = ws_arena_alloc(a, pl->n_warn * sizeof(*p->warnings));
	for (size_t i = 0; i < pl->n_warn; i++)
		if (i == 0 || strcmp(pl->warn[i], pl->warn[i - 1]) != 0)
			p->warnings[p->n_warnings++] = ws_arena_strdup(a, pl->warn[i]);
	strset_free(&o.reasons);
	free(o.selected);
	free(o.only);
	free(o.cluster);
	free(o.after);
	free(o.dt);
	free(o.oc);
	return p;
}

static void planner_free(planner *pl)
{
	for (size_t i = 0; i < pl->n_warn; i++)
		free(pl->warn[i]);
	free(pl->warn);
	for (size_t c = 0; c < pl->n_cal; c++)
		calidx_free(&pl->cal[c]);
	free(pl->cal);
	rectab_free(&pl->rt);
	for (int i = 0; pl->pw && i < PLACERS; i++) {
		placer *pw = &pl->pw[i];
		if (pw->rt && pw->rt != &pl->rt) {
			rectab_free(pw->rt);
			free(pw->rt);
		}
		free(pw->pool.n);
		free(pw->st);
		free(pw->local);
		free(pw->touched);
		free(pw->delays);
		free(pw->units);
	}
	free(pl->pw);
	free(pl->cl_placer);
	free(pl->cl_count);
	free(pl->cl_wave_n);
	free(pl->root);
	free(pl->delays);
	free(pl->placed);
	free(pl->wo);
	free(pl->cand);
	free(pl->t_unit);
	free(pl->t_sel);
	free(pl->u);
	free(pl->deps);
	free(pl->dependents);
	free(pl->dependents_off);
	free(pl->recs);
	free(pl->cals);
	free(pl->members);
	strset_free(&pl->zones);
	ptrmap_free(&pl->zone_names);
	ws_arena_free(pl->tmp);
}

/* Warns about units pushed past the last wave, once windows are placed:
 * a unit that step 5 left unassigned is in no overflow wave, and saying it
 * is would name a wave the plan does not have. */
static void warn_overflow(planner *pl)
{
	for (size_t i = 0; i < pl->n_u; i++) {
		const unit *u = &pl->u[i];
		if (u->state != U_PLACED || (size_t)u->wave < pl->n_pw || u->push_dep < 0)
			continue;
		char buf[40];
		warn_take(pl, xasprintf("%s %s pushed past the last wave into %s (after dependency %s)",
					pl->clusters ? "cluster" : "tenant", u->name,
					wave_name(pl, u->wave, buf, sizeof(buf)), pl->u[u->push_dep].name));
	}
}

ws_plan *plan_build(const ws_plan_input *in, ws_diags *d)
{
	if (!in || !in->fleet || !in->policy || !in->release) {
		ws_diag_add(d, NULL, 0, 0, "plan: a fleet, a policy and a release version are required");
		return NULL;
	}
	planner pl = {
		.f = in->fleet,
		.pol = in->policy,
		.d = d,
		.clusters = in->policy->unit == WS_UNIT_CLUSTER,
		.start = in->start,
		.slot = in->policy->slot_s > 0 ? in->policy->slot_s : PLAN_DEFAULT_SLOT_S,
		.n_pw = in->policy->n_waves,
		.tmp = ws_arena_new(),
		.threads = in->threads,
		.parallel_min_units = in->parallel_min_units ? in->parallel_min_units : PARALLEL_MIN_UNITS,
	};
	pl.zones.a = pl.tmp;
	int64_t horizon = in->policy->horizon_s > 0 ? in->policy->horizon_s : PLAN_DEFAULT_HORIZON_S;
	pl.horizon_end = in->start > INT64_MAX - horizon ? INT64_MAX : in->start + horizon;
	ws_plan *p = NULL;

	if (check_inputs(&pl, in) != 0)
		goto done;
	collect_candidates(&pl, in->release);
	choose_waves(&pl);
	build_units(&pl);
	build_graph(&pl);
	if (resolve_dependencies(&pl) != 0 || pl.errors)
		goto done;
	collect_windows(&pl);
	schedule_waves(&pl);
	warn_overflow(&pl);
	p = build_output(&pl, in);
done:
	planner_free(&pl);
	return p;
}

void plan_free(ws_plan *p)
{
	if (p)
		ws_arena_free(p->priv);   /* p itself lives in the arena */
}

/* JSON ----------------------------------------------------------------------- */

static json_t *time_json(int64_t t, int offset, bool utc_z)
{
	char buf[40];
	ws_time_format(t, offset, utc_z, buf, sizeof(buf));
	return json_string(buf);
}

json_t *plan_to_json(const ws_plan *p)
{
	if (!p)
		return NULL;
	json_t *o = json_object();
	json_object_set_new(o, "policy", json_string(p->policy));
	json_object_set_new(o, "release", json_string(p->release));
	json_object_set_new(o, "start", time_json(p->start, 0, true));
	json_t *waves = json_array();
	for (size_t i = 0; i < p->n_waves; i++) {
		const ws_plan_wave *w = &p->waves[i];
		json_t *jw = json_object();
		json_object_set_new(jw, "index", json_integer(w->index));
		json_object_set_new(jw, "name", json_string(w->name));
		json_object_set_new(jw, "start", time_json(w->start, 0, true));
		json_object_set_new(jw, "end", time_json(w->end, 0, true));
		json_object_set_new(jw, "soak_seconds", json_integer(w->soak_s));
		json_t *ts = json_array();
		for (size_t j = 0; j < w->n_tenants; j++) {
			const ws_plan_tenant *t = &w->tenants[j];
			json_t *jt = json_object();
			json_object_set_new(jt, "slug", json_string(t->slug));
			json_object_set_new(jt, "cluster", json_string(t->cluster));
			json_object_set_new(jt, "window_start", time_json(t->window_start, t->offset_start, false));
			json_object_set_new(jt, "window_end", time_json(t->window_end, t->offset_end, false));
			json_t *rs = json_array();
			for (size_t k = 0; k < t->n_reasons; k++)
				json_array_append_new(rs, json_string(t->reasons[k]));
			json_object_set_new(jt, "reasons", rs);
			json_array_append_new(ts, jt);
		}
		json_object_set_new(jw, "tenants", ts);
		json_array_append_new(waves, jw);
	}
	json_object_set_new(o, "waves", waves);
	json_t *un = json_array();
	for (size_t i = 0; i < p->n_unassigned; i++) {
		json_t *x = json_object();
		json_object_set_new(x, "slug", json_string(p->unassigned[i].slug));
		json_object_set_new(x, "reason", json_string(p->unassigned[i].reason));
		json_array_append_new(un, x);
	}
	json_object_set_new(o, "unassigned", un);
	json_t *ws = json_array();
	for (size_t i = 0; i < p->n_warnings; i++)
		json_array_append_new(ws, json_string(p->warnings[i]));
	json_object_set_new(o, "warnings", ws);
	return o;
}

/*
 * Streaming JSON ---------------------------------------------------------------
 *
 * plan_write_json writes what json_dumps(plan_to_json(p), WS_PLAN_JSON_FLAGS)
 * returns, byte for byte, without the tree: for a 100,000-tenant fleet the
 * tree and the dumped string cost several times the ~39 MB they print.  The
 * rules below are jansson 2.14's (dump.c, utf.c) for exactly our flags:
 *
 *   - a container opens with "{" or "[", then each member on its own line
 *     ("\n" and two spaces per level), members separated by ","; a
 *     non-empty container closes on a new line at its own level, an empty
 *     one right away ("[]");
 *   - a key is followed by ": ";
 *   - in strings, '"' and '\\' are escaped, \b \f \n \r \t by name, the
 *     other bytes below 0x20 as \u00XX (upper-case hex); '/' and non-ASCII
 *     are written as they are;
 *   - json_string() refuses NULL and invalid UTF-8, and setting or appending
 *     the resulting NULL fails silently, so such a member is left out.
 *
 * Output goes through a fixed buffer so that the cost per token is a memcpy;
 * the first failed write is remembered and everything after it is skipped.
 */

#define JSON_OUT_BUF 16384

/*
 * What repeats in a plan is written once and then copied: the few strings
 * that need escapes (the shared `selected by wave "W"` reasons), by
 * address, and window times, by (instant, offset).  Direct-mapped, so a
 * collision merely writes the value again.
 */
#define JSON_MEMO 64
#define JSON_TIME_MEMO 256
#define JSON_MEMO_MAX 512        /* longer escaped strings are not kept */

typedef struct json_out {
	FILE *f;
	bool failed;
	size_t len;
	unsigned long spills;    /* times bytes left buf (a flush or a long write) */
	char buf[JSON_OUT_BUF];
	struct json_memo {
		const char *s;   /* NULL: empty */
		char *text;      /* quoted and escaped, malloc'd */
		size_t len;
	} memo[JSON_MEMO];
	struct json_time_memo {
		int64_t t;
		int offset;
		bool utc_z, used;
		size_t len;
		char text[40];
	} tmemo[JSON_TIME_MEMO];
} json_out;

static void json_out_flush(json_out *o)
{
	if (!o->failed && o->len && fwrite(o->buf, 1, o->len, o->f) != o->len)
		o->failed = true;
	o->len = 0;
	o->spills++;
}

static void json_out_write(json_out *o, const char *s, size_t n)
{
	if (o->failed)
		return;
	if (n > sizeof(o->buf) - o->len)
		json_out_flush(o);
	if (n >= sizeof(o->buf)) {
		if (!o->failed && fwrite(s, 1, n, o->f) != n)
			o->failed = true;
		o->spills++;
		return;
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
}

static void json_out_indent(json_out *o, int depth)
{
	static const char spaces[] = "                                ";
	json_out_write(o, "\n", 1);
	for (size_t n = (size_t)depth * 2; n > 0;) {
		size_t k = n < sizeof(spaces) - 1 ? n : sizeof(spaces) - 1;
		json_out_write(o, spaces, k);
		n -= k;
	}
}

/* Length of the UTF-8 sequence at s as jansson's utf8_check_first and
 * utf8_check_full judge it (no overlong forms, no surrogates, nothing
 * above U+10FFFF), or 0 when it is invalid.  s is NUL-terminated, so a
 * truncated sequence stops at the NUL, which is not a continuation byte. */
static size_t json_utf8_len(const unsigned char *s)
{
	unsigned char u = s[0];
	size_t n;
	uint32_t v;
	if (u < 0x80)
		return 1;
	if (u >= 0xC2 && u <= 0xDF) {
		n = 2;
		v = u & 0x1F;
	} else if (u >= 0xE0 && u <= 0xEF) {
		n = 3;
		v = u & 0x0F;
	} else if (u >= 0xF0 && u <= 0xF4) {
		n = 4;
		v = u & 0x07;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 0;
		v = (v << 6) | (s[i] & 0x3F);
	}
	if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF) ||
	    (n == 3 && v < 0x800) || (n == 4 && v < 0x10000))
		return 0;
	return n;
}

/* Whether json_string(s) would give a string (see above). */
static bool json_string_ok(const char *s)
{
	if (!s)
		return false;
	for (const unsigned char *u = (const unsigned char *)s; *u;) {
		size_t n = json_utf8_len(u);
		if (n == 0)
			return false;
		u += n;
	}
	return true;
}

/* A string json_string_ok accepted, quoted and escaped.  Runs of bytes that
 * need no escape (everything from 0x20 up but '"' and '\\', UTF-8 included)
 * are copied in one write. */
static void json_out_string(json_out *o, const char *s)
{
	json_out_write(o, "\"", 1);
	const char *run = s;
	for (const char *c = s; *c; c++) {
		unsigned char u = (unsigned char)*c;
		if (u >= 0x20 && u != '"' && u != '\\')
			continue;
		json_out_write(o, run, (size_t)(c - run));
		run = c + 1;
		char seq[8];
		const char *text = seq;
		switch (u) {
		case '"': text = "\\\""; break;
		case '\\': text = "\\\\"; break;
		case '\b': text = "\\b"; break;
		case '\f': text = "\\f"; break;
		case '\n': text = "\\n"; break;
		case '\r': text = "\\r"; break;
		case '\t': text = "\\t"; break;
		default: snprintf(seq, sizeof(seq), "\\u%04X", (unsigned)u); break;
		}
		json_out_write(o, text, strlen(text));
	}
	json_out_write(o, run, strlen(run));
	json_out_write(o, "\"", 1);
}

/*
 * The length of `s` when every byte of it is printable ASCII needing no
 * escape, else SIZE_MAX.  Nearly every string of a plan is such (slugs,
 * cluster names, times, reasons): one pass then does what json_string_ok,
 * json_out_string and strlen would do in three, with the same bytes.
 */
static size_t json_plain_len(const char *s)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0;
	for (; u[i]; i++)
		if (u[i] < 0x20 || u[i] >= 0x80 || u[i] == '"' || u[i] == '\\')
			return SIZE_MAX;
	return i;
}

/* A string json_plain_len measured, quoted. */
static void json_out_plain(json_out *o, const char *s, size_t len)
{
	if (len + 2 <= sizeof(o->buf) - o->len && !o->failed) {
		char *p = o->buf + o->len;
		p[0] = '"';
		memcpy(p + 1, s, len);
		p[len + 1] = '"';
		o->len += len + 2;
		return;
	}
	json_out_write(o, "\"", 1);
	json_out_write(o, s, len);
	json_out_write(o, "\"", 1);
}

/* Starts the next member of a container at `depth` of which `*n` members
 * are written; `key` NULL for an array element (keys are this file's
 * constants, all plain). */
static void json_out_next(json_out *o, int depth, size_t *n, const char *key)
{
	if ((*n)++)
		json_out_write(o, ",", 1);
	json_out_indent(o, depth + 1);
	if (key) {
		json_out_plain(o, key, strlen(key));
		json_out_write(o, ": ", 2);
	}
}

static void json_out_close(json_out *o, int depth, size_t n, char c)
{
	if (n)
		json_out_indent(o, depth);
	json_out_write(o, &c, 1);
}

/* A string member or element; left out as json_string() would leave it. */
static void json_out_str(json_out *o, int depth, size_t *n, const char *key, const char *v)
{
	size_t len = v ? json_plain_len(v) : SIZE_MAX;
	if (len != SIZE_MAX) {
		json_out_next(o, depth, n, key);
		json_out_plain(o, v, len);
		return;
	}
	if (!v)
		return;
	struct json_memo *m = &o->memo[hash_ptr(HASH_SEED, v) % JSON_MEMO];
	if (m->s == v) {
		json_out_next(o, depth, n, key);
		json_out_write(o, m->text, m->len);
		return;
	}
	if (!json_string_ok(v))
		return;
	json_out_next(o, depth, n, key);
	/* Kept when its bytes are still together in buf. */
	size_t before = o->len;
	unsigned long spills = o->spills;
	json_out_string(o, v);
	size_t w = o->len - before;
	char *text;
	if (o->spills == spills && !o->failed && w <= JSON_MEMO_MAX && (text = malloc(w))) {
		memcpy(text, o->buf + before, w);
		free(m->text);
		*m = (struct json_memo){ v, text, w };
	}
}

static void json_out_int(json_out *o, int depth, size_t *n, const char *key, json_int_t v)
{
	char buf[32];
	int len = snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, v);
	json_out_next(o, depth, n, key);
	json_out_write(o, buf, (size_t)len);
}

static void json_out_time(json_out *o, int depth, size_t *n, const char *key, int64_t t,
			  int offset, bool utc_z)
{
	uint64_t h = hash_u64(hash_u64(HASH_SEED, (uint64_t)t), (uint64_t)(uint32_t)offset << 1 | utc_z);
	struct json_time_memo *m = &o->tmemo[h % JSON_TIME_MEMO];
	if (!(m->used && m->t == t && m->offset == offset && m->utc_z == utc_z)) {
		ws_time_format(t, offset, utc_z, m->text, sizeof(m->text));
		m->t = t;
		m->offset = offset;
		m->utc_z = utc_z;
		m->used = true;
		m->len = json_plain_len(m->text);   /* digits and signs: always plain */
	}
	if (m->len == SIZE_MAX) {
		json_out_str(o, depth, n, key, m->text);
		return;
	}
	json_out_next(o, depth, n, key);
	json_out_plain(o, m->text, m->len);
}

/* The depths follow plan_to_json: plan 0, waves 1, a wave 2, its tenants 3,
 * a tenant 4, its reasons 5; unassigned and warnings 1, an unassigned 2. */
int plan_write_json(const ws_plan *p, FILE *out)
{
	if (!p || !out)
		return WS_EINVAL;
	/* Large (buffer and memos): on the heap, not the caller's stack. */
	json_out *o = xcalloc(1, sizeof(*o));
	o->f = out;

	size_t n = 0;
	json_out_write(o, "{", 1);
	json_out_str(o, 0, &n, "policy", p->policy);
	json_out_str(o, 0, &n, "release", p->release);
	json_out_time(o, 0, &n, "start", p->start, 0, true);

	json_out_next(o, 0, &n, "waves");
	json_out_write(o, "[", 1);
	size_t nw = 0;
	for (size_t i = 0; i < p->n_waves; i++) {
		const ws_plan_wave *w = &p->waves[i];
		json_out_next(o, 1, &nw, NULL);
		json_out_write(o, "{", 1);
		size_t m = 0;
		json_out_int(o, 2, &m, "index", w->index);
		json_out_str(o, 2, &m, "name", w->name);
		json_out_time(o, 2, &m, "start", w->start, 0, true);
		json_out_time(o, 2, &m, "end", w->end, 0, true);
		json_out_int(o, 2, &m, "soak_seconds", w->soak_s);
		json_out_next(o, 2, &m, "tenants");
		json_out_write(o, "[", 1);
		size_t nt = 0;
		for (size_t j = 0; j < w->n_tenants; j++) {
			const ws_plan_tenant *t = &w->tenants[j];
			json_out_next(o, 3, &nt, NULL);
			json_out_write(o, "{", 1);
			size_t k = 0;
			json_out_str(o, 4, &k, "slug", t->slug);
			json_out_str(o, 4, &k, "cluster", t->cluster);
			json_out_time(o, 4, &k, "window_start", t->window_start, t->offset_start, false);
			json_out_time(o, 4, &k, "window_end", t->window_end, t->offset_end, false);
			json_out_next(o, 4, &k, "reasons");
			json_out_write(o, "[", 1);
			size_t nr = 0;
			for (size_t r = 0; r < t->n_reasons; r++)
				json_out_str(o, 5, &nr, NULL, t->reasons[r]);
			json_out_close(o, 5, nr, ']');
			json_out_close(o, 4, k, '}');
		}
		json_out_close(o, 3, nt, ']');
		json_out_close(o, 2, m, '}');
	}
	json_out_close(o, 1, nw, ']');

	json_out_next(o, 0, &n, "unassigned");
	json_out_write(o, "[", 1);
	size_t nu = 0;
	for (size_t i = 0; i < p->n_unassigned; i++) {
		json_out_next(o, 1, &nu, NULL);
		json_out_write(o, "{", 1);
		size_t m = 0;
		json_out_str(o, 2, &m, "slug", p->unassigned[i].slug);
		json_out_str(o, 2, &m, "reason", p->unassigned[i].reason);
		json_out_close(o, 2, m, '}');
	}
	json_out_close(o, 1, nu, ']');

	json_out_next(o, 0, &n, "warnings");
	json_out_write(o, "[", 1);
	size_t nwarn = 0;
	for (size_t i = 0; i < p->n_warnings; i++)
		json_out_str(o, 1, &nwarn, NULL, p->warnings[i]);
	json_out_close(o, 1, nwarn, ']');
	json_out_close(o, 0, n, '}');

	json_out_flush(o);
	bool failed = o->failed;
	for (size_t i = 0; i < JSON_MEMO; i++)
		free(o->memo[i].text);
	free(o);
	return failed || fflush(out) != 0 ? WS_EIO : 0;
}
