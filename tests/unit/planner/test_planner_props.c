/*
 * test_planner_props.c - the planner's invariants on seeded random fleets
 * and policies (seeds 1..200, always the same).
 *
 * Each case is written as YAML and parsed, so it is a fleet and a policy a
 * user could write.  The checks do not reuse the planner's code: they
 * recompute from the fleet with window_expand and selector_match.
 *   - every candidate appears exactly once, placed or unassigned; nobody
 *     else appears;
 *   - a dependency (on a candidate, across units) is in a strictly earlier
 *     wave;
 *   - waves are numbered 1..n, none empty, the first starts at the plan's
 *     start, each next one at the previous end plus its soak, and a wave
 *     ends with its last window;
 *   - a window is a real occurrence of the unit's windows (or a slot of the
 *     wave) starting at or after its wave's start and before the horizon,
 *     carrying the tenant's offsets;
 *   - no window meets an applicable blocking blackout;
 *   - per cluster and wave, the cap holds at every instant;
 *   - greedy order: replaying each wave in placement order, every candidate
 *     before the chosen one was blocked (blackout or cap) and the chosen
 *     one was not;
 *   - plan_to_json is byte-identical across two builds, and plan_write_json
 *     streams the same bytes.
 * A failing plan must be an `unmatched: error` listing (checked against a
 * recomputation of step 2) or a real cluster cycle.
 */
#include "planner_test.h"

#define N_SEEDS 200
#define RELEASE "2.0"

typedef struct rng {
	uint64_t s;
} rng;

static uint64_t rnd_next(rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static int rnd(rng *r, int n)
{
	return (int)(rnd_next(r) % (uint64_t)n);
}

static const char *pick(rng *r, const char *const *v, int n)
{
	return v[rnd(r, n)];
}

static const char *const zones[] = { "UTC", "America/Chicago", "Europe/Berlin" };
static const char *const crits[] = { "low", "standard", "high", "critical" };

/* A window: recurring (possibly in its own zone) or one-off near `base`. */
static void gen_window(rng *r, FILE *y, int64_t base)
{
	static const char *const rules[] = {
		"FREQ=DAILY", "FREQ=DAILY", "FREQ=WEEKLY;BYDAY=SA", "FREQ=WEEKLY;BYDAY=MO,TH",
		"FREQ=DAILY;INTERVAL=2",
	};
	static const char *const durs[] = { "30m", "1h", "2h", "4h", "26h" };
	if (rnd(r, 5) == 0) {
		int64_t from = base + (int64_t)rnd(r, 10 * 48) * 1800;
		int64_t to = from + (int64_t)(1 + rnd(r, 8)) * 1800;
		char a[64], b[64];
		ws_time_format(from, 0, true, a, sizeof(a));
		ws_time_format(to, 0, true, b, sizeof(b));
		fprintf(y, "{from: \"%s\", to: \"%s\"}", a, b);
		return;
	}
	fprintf(y, "{rrule: \"%s\", start: \"%02d:%02d\", duration: %s", pick(r, rules, 5), rnd(r, 24),
		rnd(r, 2) * 30, pick(r, durs, 5));
	if (rnd(r, 4) == 0)
		fprintf(y, ", timezone: %s", pick(r, zones, 3));
	fprintf(y, "}");
}

typedef struct gen {
	char *fleet, *policy;
	int64_t start;
	ws_release_kind kind;
} gen;

static void gen_case(uint64_t seed, gen *g)
{
	rng r = { seed * 7919 };
	static const char *const bases[] = {
		"2026-10-23T00:00:00Z", "2027-03-12T00:00:00Z", "2027-01-04T00:00:00Z",
	};
	int64_t base = pt_t(pick(&r, bases, 3));
	g->start = base + (int64_t)rnd(&r, 96) * 1800;

	size_t len;
	FILE *y = open_memstream(&g->fleet, &len);
	int nc = 1 + rnd(&r, 3), nt = 2 + rnd(&r, 15), ncal = rnd(&r, 4);
	fprintf(y, PT_FLEET_HEAD "clusters:\n");
	for (int c = 0; c < nc; c++) {
		fprintf(y, "  - {name: k%d, hosting: %s", c, rnd(&r, 2) ? "shared" : "dedicated");
		if (rnd(&r, 4))
			fprintf(y, ", max_parallel: %d", 1 + rnd(&r, 2));
		if (rnd(&r, 2))
			fprintf(y, ", timezone: %s", pick(&r, zones, 3));
		if (rnd(&r, 2)) {
			fprintf(y, ", windows: [");
			gen_window(&r, y, base);
			fprintf(y, "]");
		}
		fprintf(y, "}\n");
	}
	fprintf(y, "tenants:\n");
	for (int t = 0; t < nt; t++) {
		fprintf(y, "  - {slug: t%d, cluster: k%d, criticality: %s", t, rnd(&r, nc), pick(&r, crits, 4));
		if (rnd(&r, 2))
			fprintf(y, ", timezone: %s", pick(&r, zones, 3));
		int lab = rnd(&r, 3);
		if (lab)
			fprintf(y, ", labels: {env: %s}", lab == 1 ? "a" : "b");
		int ver = rnd(&r, 5);
		if (ver == 0)
			fprintf(y, ", version: \"" RELEASE "\"");
		else if (ver > 1)
			fprintf(y, ", version: \"1.0\"");
		if (rnd(&r, 10) == 0)
			fprintf(y, ", frozen: true");
		int nw = rnd(&r, 4) ? 1 + rnd(&r, 2) : 0;
		if (nw) {
			fprintf(y, ", windows: [");
			for (int w = 0; w < nw; w++) {
				if (w)
					fprintf(y, ", ");
				gen_window(&r, y, base);
			}
			fprintf(y, "]");
		}
		int nd = 0;
		for (int d = 0; d < t && nd < 2; d++) {
			if (rnd(&r, 5) == 0)
				fprintf(y, "%st%d", nd++ ? ", " : ", depends_on: [", d);
		}
		fprintf(y, "%s}\n", nd ? "]" : "");
	}
	if (ncal)
		fprintf(y, "calendars:\n");
	for (int c = 0; c < ncal; c++) {
		fprintf(y, "  - {name: cal%d, hard: %s", c, rnd(&r, 2) ? "true" : "false");
		int sel = rnd(&r, 3);
		if (sel == 1)
			fprintf(y, ", applies_to: {criticality: [high, critical]}");
		else if (sel == 2)
			fprintf(y, ", applies_to: {labels: {env: a}}");
		fprintf(y, ", occurrences: [");
		int no = 1 + rnd(&r, 2);
		for (int o = 0; o < no; o++) {
			if (o)
				fprintf(y, ", ");
			gen_window(&r, y, base);
		}
		fprintf(y, "]}\n");
	}
	fclose(y);

	y = open_memstream(&g->policy, &len);
	bool cluster = rnd(&r, 10) < 3;
	int kinds = rnd(&r, 3);   /* 0 [standard], 1 [standard, urgent], 2 [urgent] */
	g->kind = kinds == 2 ? WS_RELEASE_URGENT : WS_RELEASE_STANDARD;
	static const char *const kind_text[] = { "[standard]", "[standard, urgent]", "[urgent]" };
	static const char *const slots[] = { "30m", "1h", "90m" };
	static const char *const horizons[] = { "2d", "5d", "14d", "14d" };
	static const char *const soaks[] = { "0", "30m", "2h" };
	fprintf(y, PT_POLICY_HEAD "  release_kinds: %s\n", kind_text[kinds]);
	fprintf(y, "  unit: %s\n  unmatched: %s\n", cluster ? "cluster" : "tenant",
		rnd(&r, 5) ? "skip" : "error");
	fprintf(y, "  schedule: {respect_windows: %s, slot: %s, horizon: %s",
		rnd(&r, 10) < 7 ? "true" : "false", pick(&r, slots, 3), pick(&r, horizons, 4));
	int nb = 0;
	for (int c = 0; c < ncal; c++)
		if (rnd(&r, 3))
			fprintf(y, "%scal%d", nb++ ? ", " : ", blackouts: [", c);
	fprintf(y, "%s", nb ? "]" : "");
	if (kinds == 2 && rnd(&r, 2))
		fprintf(y, ", break_glass: true");
	fprintf(y, "}\n  defaults: {soak: %s", pick(&r, soaks, 3));
	if (rnd(&r, 2))
		fprintf(y, ", max_parallel_per_cluster: %d", 1 + rnd(&r, 2));
	fprintf(y, "}\n  waves:\n");
	static const char *const sels[] = {
		"{}", "{labels: {env: a}}", "{criticality: [low, standard]}", "{not: {labels: {env: b}}}",
		"{hosting: shared}",
	};
	int nwv = 1 + rnd(&r, 3);
	for (int w = 0; w < nwv; w++) {
		/* Mostly a catch-all last wave, so that most tenants are placed. */
		const char *sel = w == nwv - 1 && rnd(&r, 10) < 6 ? "{}" : pick(&r, sels, 5);
		fprintf(y, "    - {name: w%d, select: %s", w, sel);
		if (!cluster && rnd(&r, 10) < 3)
			fprintf(y, ", max_tenants: %d", 1 + rnd(&r, 3));
		if (rnd(&r, 3) == 0)
			fprintf(y, ", soak: %s", pick(&r, soaks, 3));
		fprintf(y, "}\n");
	}
	fclose(y);
}

/* Occurrences ------------------------------------------------------------- */

typedef struct ivs {
	ws_interval *v;
	size_t n, cap;
} ivs;

static int ivs_cb(void *arg, const ws_interval *iv)
{
	ivs *x = arg;
	if (x->n == x->cap) {
		x->cap = x->cap ? x->cap * 2 : 16;
		x->v = realloc(x->v, x->cap * sizeof(*x->v));
		assert_non_null(x->v);
	}
	x->v[x->n++] = *iv;
	return 0;
}

/* The occurrences of `w` starting in [from, until), sorted by start. */
static void occurrences(const ws_window *w, const char *zone, int64_t from, int64_t until, ivs *out)
{
	ivs all = { 0 };
	assert_int_equal(window_expand(w, zone, from, until, ivs_cb, &all), 0);
	for (size_t i = 0; i < all.n; i++)
		if (all.v[i].start >= from)
			ivs_cb(out, &all.v[i]);
	free(all.v);
}

static bool blocked_by_calendar(const ws_calendar *c, int64_t s, int64_t e)
{
	ivs x = { 0 };
	for (size_t i = 0; i < c->n_occurrences; i++)
		assert_int_equal(window_expand(&c->occurrences[i], "UTC", s, e, ivs_cb, &x), 0);
	free(x.v);
	return x.n > 0;
}

/* The model -------------------------------------------------------------- */

typedef struct tstate {
	bool candidate;
	int placed;              /* times placed */
	int unassigned;          /* times listed unassigned */
	int wave;                /* 1-based */
	const ws_plan_tenant *pt;
} tstate;

typedef struct check {
	const ws_fleet *f;
	const ws_policy *p;
	const ws_plan *plan;
	int64_t start, horizon_end, slot;
	bool clusters;
	tstate *ts;
} check;

static size_t tenant_index(const check *c, const char *slug)
{
	const ws_tenant *t = fleet_tenant(c->f, slug);
	if (!t)
		fail_msg("unknown tenant %s in the plan", slug);
	return (size_t)(t - c->f->tenants);
}

/* Whether calendar `cal` binds the unit of tenant `ti`. */
static bool calendar_binds(const check *c, const ws_calendar *cal, size_t ti)
{
	if (!cal->hard && c->p->break_glass)
		return false;
	if (!cal->applies_to)
		return true;
	const ws_tenant *t = &c->f->tenants[ti];
	if (!c->clusters)
		return selector_match(cal->applies_to, c->f, t);
	for (size_t i = 0; i < c->f->n_tenants; i++)
		if (c->ts[i].candidate && c->f->tenants[i].cluster_index == t->cluster_index &&
		    selector_match(cal->applies_to, c->f, &c->f->tenants[i]))
			return true;
	return false;
}

static const ws_calendar *policy_calendar(const check *c, size_t k)
{
	for (size_t i = 0; i < c->f->n_calendars; i++)
		if (strcmp(c->f->calendars[i].name, c->p->blackouts[k]) == 0)
			return &c->f->calendars[i];
	fail_msg("policy names unknown calendar %s", c->p->blackouts[k]);
	return NULL;
}

static bool blackout_blocks(const check *c, size_t ti, int64_t s, int64_t e)
{
	for (size_t k = 0; k < c->p->n_blackouts; k++) {
		const ws_calendar *cal = policy_calendar(c, k);
		if (calendar_binds(c, cal, ti) && blocked_by_calendar(cal, s, e))
			return true;
	}
	return false;
}

static int cap_of(const check *c, const ws_plan_wave *w, size_t cluster)
{
	int a = w->settings->max_parallel_per_cluster, b = c->f->clusters[cluster].max_parallel;
	if (a > 0 && b > 0)
		return a < b ? a : b;
	return a > 0 ? a : b;
}

typedef struct span {
	int64_t s, e;
	size_t cluster;
} span;

/* The most spans of `cluster` in progress at any instant of [s, e), plus
 * one for [s, e) itself. */
static int load_with(const span *v, size_t n, size_t cluster, int64_t s, int64_t e)
{
	int best = 0;
	for (size_t i = 0; i <= n; i++) {
		int64_t t = i == n ? s : v[i].s;
		if (i < n && (v[i].cluster != cluster || t < s || t >= e))
			continue;
		int k = 0;
		for (size_t j = 0; j < n; j++)
			k += v[j].cluster == cluster && v[j].s <= t && t < v[j].e;
		if (k > best)
			best = k;
	}
	return best + 1;
}

/* The unit's windows: NULL with *n 0 means slots. */
static const ws_window *unit_windows(const check *c, size_t ti, size_t *n, const char **zone)
{
	const ws_tenant *t = &c->f->tenants[ti];
	const ws_cluster *cl = &c->f->clusters[t->cluster_index];
	const ws_window *w = c->clusters ? cl->windows : t->windows;
	*n = c->clusters ? cl->n_windows : t->n_windows;
	*zone = c->clusters ? cl->timezone : t->timezone;
	if (!c->p->respect_windows)
		*n = 0;
	return *n ? w : NULL;
}

/* Every candidate window of the unit of `ti` starting in [from, until). */
static void candidates(const check *c, size_t ti, int64_t wave_start, int64_t from, int64_t until,
		       ivs *out)
{
	size_t n;
	const char *zone;
	const ws_window *w = unit_windows(c, ti, &n, &zone);
	if (!w) {
		for (int64_t s = wave_start; s < until; s += c->slot)
			if (s >= from) {
				ws_interval iv = { s, s + c->slot, 0 };
				ivs_cb(out, &iv);
			}
		return;
	}
	for (size_t k = 0; k < n; k++)
		occurrences(&w[k], zone, from, until, out);
}

static void check_window(const check *c, const ws_plan_wave *w, const ws_plan_tenant *t, size_t ti)
{
	const ws_tenant *ft = &c->f->tenants[ti];
	assert_true(t->window_start >= w->start);
	assert_true(t->window_start < c->horizon_end);
	assert_true(t->window_end > t->window_start);
	assert_true(t->window_end <= w->end);
	assert_int_equal(t->offset_start, ws_tz_offset(ft->timezone, t->window_start));
	assert_int_equal(t->offset_end, ws_tz_offset(ft->timezone, t->window_end));
	ivs x = { 0 };
	candidates(c, ti, w->start, t->window_start, t->window_start + 1, &x);
	bool real = false;
	for (size_t i = 0; i < x.n; i++)
		real |= x.v[i].start == t->window_start && x.v[i].end == t->window_end;
	free(x.v);
	if (!real)
		fail_msg("%s: its window is not a candidate window", t->slug);
	size_t n;
	const char *zone;
	bool slot = unit_windows(c, ti, &n, &zone) == NULL;
	bool says_slot = false;
	for (size_t i = 0; i < t->n_reasons; i++)
		says_slot |= strstr(t->reasons[i], "slot from wave start") != NULL;
	assert_int_equal(slot, says_slot);
	if (blackout_blocks(c, ti, t->window_start, t->window_end))
		fail_msg("%s: its window meets a blocking blackout", t->slug);
	char first[256];
	snprintf(first, sizeof(first), "moves with cluster %s", ft->cluster);
	bool ok = c->clusters && strcmp(t->reasons[0], first) == 0;
	for (size_t k = 0; k < c->p->n_waves && !ok; k++) {
		snprintf(first, sizeof(first), "selected by wave \"%s\"", c->p->waves[k].name);
		ok = strcmp(t->reasons[0], first) == 0;
	}
	if (!ok)
		fail_msg("%s: unexpected first reason %s", t->slug, t->reasons[0]);
}

/* Replays a wave in placement order: each unit's window must be its first
 * candidate that is neither blacked out nor over the cap, given the units
 * placed before it. */
static void check_greedy(const check *c, const ws_plan_wave *w)
{
	span *placed = calloc(w->n_tenants + 1, sizeof(*placed));
	size_t np = 0;
	for (size_t j = 0; j < w->n_tenants; j++) {
		const ws_plan_tenant *t = &w->tenants[j];
		size_t ti = tenant_index(c, t->slug);
		size_t cl = c->f->tenants[ti].cluster_index;
		if (c->clusters && j > 0 && c->f->tenants[tenant_index(c, w->tenants[j - 1].slug)].cluster_index == cl) {
			/* The same unit: the same window. */
			assert_int_equal(t->window_start, w->tenants[j - 1].window_start);
			assert_int_equal(t->window_end, w->tenants[j - 1].window_end);
			continue;
		}
		int cap = c->clusters ? 0 : cap_of(c, w, cl);
		ivs x = { 0 };
		candidates(c, ti, w->start, w->start, t->window_start, &x);
		for (size_t i = 0; i < x.n; i++) {
			bool black = blackout_blocks(c, ti, x.v[i].start, x.v[i].end);
			bool full = cap > 0 && load_with(placed, np, cl, x.v[i].start, x.v[i].end) > cap;
			if (!black && !full)
				fail_msg("%s: an earlier candidate at %lld was free", t->slug,
					 (long long)x.v[i].start);
		}
		free(x.v);
		if (cap > 0 && load_with(placed, np, cl, t->window_start, t->window_end) > cap)
			fail_msg("%s: over the cap of its cluster", t->slug);
		placed[np++] = (span){ t->window_start, t->window_end, cl };
	}
	free(placed);
}

/* Step 2 again, simply: which candidates no wave with room selects. */
static char *unmatched_listing(const check *c)
{
	const ws_fleet *f = c->f;
	size_t n = f->n_tenants;
	size_t *order = calloc(n + 1, sizeof(*order));
	size_t k = 0;
	for (int crit = 0; crit < 4; crit++) {
		size_t first = k;
		for (size_t i = 0; i < n; i++)
			if (c->ts[i].candidate && (int)f->tenants[i].criticality == crit)
				order[k++] = i;
		for (size_t a = first; a < k; a++)   /* by slug */
			for (size_t b = a + 1; b < k; b++)
				if (strcmp(f->tenants[order[b]].slug, f->tenants[order[a]].slug) < 0) {
					size_t tmp = order[a];
					order[a] = order[b];
					order[b] = tmp;
				}
	}
	int *taken = calloc(c->p->n_waves + 1, sizeof(*taken));
	/* 0: placed; 1: no selector matched; 2: matched, but every such wave was full. */
	int *unmatched = calloc(n + 1, sizeof(*unmatched));
	for (size_t i = 0; i < k; i++) {
		bool found = false, full = false;
		for (size_t w = 0; w < c->p->n_waves && !found; w++) {
			const ws_wave *wv = &c->p->waves[w];
			if (!selector_match(wv->select, f, &f->tenants[order[i]]))
				continue;
			if (wv->max_tenants && taken[w] >= wv->max_tenants) {
				full = true;
				continue;
			}
			taken[w]++;
			found = true;
		}
		unmatched[order[i]] = found ? 0 : full ? 2 : 1;
	}
	/* In slug order, as the planner lists them. */
	size_t *names = calloc(n + 1, sizeof(*names));
	size_t nn = 0;
	for (size_t i = 0; i < n; i++)
		if (unmatched[i])
			names[nn++] = i;
	for (size_t a = 0; a < nn; a++)
		for (size_t b = a + 1; b < nn; b++)
			if (strcmp(f->tenants[names[b]].slug, f->tenants[names[a]].slug) < 0) {
				size_t tmp = names[a];
				names[a] = names[b];
				names[b] = tmp;
			}
	char *out = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&out, &len);
	for (size_t i = 0; i < nn; i++)
		fprintf(fp, "%stenant \"%s\" matches no wave%s (unmatched: error)", i ? "\n" : "",
			f->tenants[names[i]].slug, unmatched[names[i]] == 2 ? " with room" : "");
	fclose(fp);
	free(names);
	free(unmatched);
	free(taken);
	free(order);
	return out;
}

/* Whether cluster a has a tenant depending on a candidate of cluster b. */
static bool cluster_edge(const check *c, const char *a, const char *b)
{
	const ws_fleet *f = c->f;
	for (size_t i = 0; i < f->n_tenants; i++) {
		const ws_tenant *t = &f->tenants[i];
		if (!c->ts[i].candidate || strcmp(t->cluster, a) != 0)
			continue;
		for (size_t j = 0; j < t->n_depends_on; j++) {
			size_t d = t->depends_on_index[j];
			if (c->ts[d].candidate && strcmp(f->tenants[d].cluster, b) == 0)
				return true;
		}
	}
	return false;
}

/* Whether the clusters' dependencies form a cycle (transitive closure;
 * the cases have at most three clusters). */
static bool has_cluster_cycle(const check *c)
{
	size_t n = c->f->n_clusters;
	bool *reach = calloc(n * n + 1, sizeof(*reach));
	for (size_t a = 0; a < n; a++)
		for (size_t b = 0; b < n; b++)
			reach[a * n + b] = a != b && cluster_edge(c, c->f->clusters[a].name,
								c->f->clusters[b].name);
	for (size_t k = 0; k < n; k++)
		for (size_t a = 0; a < n; a++)
			for (size_t b = 0; b < n; b++)
				reach[a * n + b] |= reach[a * n + k] && reach[k * n + b];
	bool cycle = false;
	for (size_t a = 0; a < n; a++)
		cycle |= reach[a * n + a];
	free(reach);
	return cycle;
}

/* "cluster dependency cycle: a -> b -> a": every step must be an edge. */
static void check_cycle_message(const check *c, const char *msg)
{
	const char *prefix = "cluster dependency cycle: ";
	assert_true(c->clusters);
	assert_int_equal(strncmp(msg, prefix, strlen(prefix)), 0);
	char *copy = strdup(msg + strlen(prefix));
	char *names[64];
	int n = 0;
	for (char *save = NULL, *tok = strtok_r(copy, " ->", &save); tok && n < 64;
	     tok = strtok_r(NULL, " ->", &save))
		names[n++] = tok;
	assert_true(n >= 3);
	assert_string_equal(names[0], names[n - 1]);
	for (int i = 0; i + 1 < n; i++)
		if (!cluster_edge(c, names[i], names[i + 1]))
			fail_msg("%s: no dependency %s -> %s", msg, names[i], names[i + 1]);
	free(copy);
}

typedef struct stats {
	int plans, failed_unmatched, failed_cycle, placed, unassigned, waves, delayed, cluster_plans;
} stats;

static void check_case(uint64_t seed, stats *st)
{
	gen g;
	gen_case(seed, &g);
	ws_diags d;
	ws_diags_init(&d);
	ws_fleet *f = fleet_parse("fleet.yaml", g.fleet, strlen(g.fleet), &d);
	ws_policy *p = policy_parse("policy.yaml", g.policy, strlen(g.policy), &d);
	if (!f || !p) {
		char *txt = wt_diags_text(&d);
		fail_msg("seed %llu: generated documents are invalid:\n%s\n%s\n%s",
			 (unsigned long long)seed, txt, g.fleet, g.policy);
	}
	check c = {
		.f = f, .p = p, .start = g.start, .horizon_end = g.start + p->horizon_s,
		.slot = p->slot_s, .clusters = p->unit == WS_UNIT_CLUSTER,
		.ts = calloc(f->n_tenants + 1, sizeof(*c.ts)),
	};
	for (size_t i = 0; i < f->n_tenants; i++)
		c.ts[i].candidate = !f->tenants[i].frozen &&
				    !(f->tenants[i].version && strcmp(f->tenants[i].version, RELEASE) == 0);

	ws_plan_input in = { .fleet = f, .policy = p, .release = RELEASE, .kind = g.kind, .start = g.start,
			     .threads = 1 };
	ws_plan *plan = plan_build(&in, &d);
	/* A plan fails exactly when unmatched: error leaves tenants
	 * unmatched or clusters depend on each other in a cycle. */
	char *want = p->unmatched_skip ? strdup("") : unmatched_listing(&c);
	bool cycle = c.clusters && has_cluster_cycle(&c);
	if (!plan) {
		char *out = NULL;
		size_t len = 0;
		FILE *fp = open_memstream(&out, &len);
		int cycles = 0;
		for (size_t i = 0; i < d.len; i++) {
			const char *m = d.items[i].message;
			if (strncmp(m, "cluster dependency cycle: ", 26) == 0) {
				check_cycle_message(&c, m);
				cycles++;
			} else {
				fprintf(fp, "%s%s", ftell(fp) ? "\n" : "", m);
			}
		}
		fclose(fp);
		if (strcmp(out, want) != 0 || (cycles > 0) != cycle || (!*want && !cycle))
			fail_msg("seed %llu: unexpected failure:\n%s\nexpected:\n%s%s\n%s\n%s",
				 (unsigned long long)seed, out, want, cycle ? "\n(and a cycle)" : "",
				 g.fleet, g.policy);
		st->failed_unmatched += *want != 0;
		st->failed_cycle += cycles > 0;
		free(out);
		free(want);
		goto done;
	}
	if (*want || cycle)
		fail_msg("seed %llu: planned although %s", (unsigned long long)seed,
			 cycle ? "clusters form a cycle" : want);
	free(want);
	pt_expect_no_diags(&d);
	c.plan = plan;
	st->plans++;
	st->cluster_plans += c.clusters;

	/* Every candidate exactly once; the waves in sequence. */
	for (size_t i = 0; i < plan->n_waves; i++) {
		const ws_plan_wave *w = &plan->waves[i];
		assert_int_equal(w->index, (int)i + 1);
		assert_true(w->n_tenants > 0);
		assert_int_equal(w->soak_s, w->settings->soak_s);
		assert_int_equal(w->start, i == 0 ? g.start : plan->waves[i - 1].end + plan->waves[i - 1].soak_s);
		int64_t end = INT64_MIN;
		for (size_t j = 0; j < w->n_tenants; j++) {
			size_t ti = tenant_index(&c, w->tenants[j].slug);
			c.ts[ti].placed++;
			c.ts[ti].wave = w->index;
			c.ts[ti].pt = &w->tenants[j];
			if (w->tenants[j].window_end > end)
				end = w->tenants[j].window_end;
			for (size_t k = 0; k < w->tenants[j].n_reasons; k++)
				st->delayed += strstr(w->tenants[j].reasons[k], " until ") != NULL;
		}
		assert_int_equal(w->end, end);
		st->placed += (int)w->n_tenants;
	}
	for (size_t i = 0; i < plan->n_unassigned; i++) {
		size_t ti = tenant_index(&c, plan->unassigned[i].slug);
		c.ts[ti].unassigned++;
		if (i)
			assert_true(strcmp(plan->unassigned[i - 1].slug, plan->unassigned[i].slug) < 0);
		const char *why = plan->unassigned[i].reason;
		assert_true(strcmp(why, "matched no wave") == 0 ||
			    strcmp(why, "no wave with room (max_tenants)") == 0 ||
			    strcmp(why, "no window within horizon") == 0 ||
			    strncmp(why, "depends on unassigned ", 22) == 0);
		if (strcmp(why, "matched no wave") == 0 || strncmp(why, "no wave with room", 17) == 0)
			assert_true(p->unmatched_skip);
	}
	st->unassigned += (int)plan->n_unassigned;
	st->waves += (int)plan->n_waves;
	for (size_t i = 0; i < f->n_tenants; i++) {
		if (c.ts[i].candidate && c.ts[i].placed + c.ts[i].unassigned != 1)
			fail_msg("seed %llu: candidate %s placed %d times, unassigned %d times",
				 (unsigned long long)seed, f->tenants[i].slug, c.ts[i].placed, c.ts[i].unassigned);
		if (!c.ts[i].candidate && c.ts[i].placed + c.ts[i].unassigned != 0)
			fail_msg("seed %llu: non-candidate %s in the plan", (unsigned long long)seed,
				 f->tenants[i].slug);
	}
	/* Dependencies strictly earlier (within a cluster unit: together). */
	for (size_t i = 0; i < f->n_tenants; i++) {
		const ws_tenant *t = &f->tenants[i];
		if (!c.ts[i].placed)
			continue;
		for (size_t j = 0; j < t->n_depends_on; j++) {
			size_t di = t->depends_on_index[j];
			if (!c.ts[di].candidate)
				continue;
			bool same = c.clusters && f->tenants[di].cluster_index == t->cluster_index;
			if (!c.ts[di].placed)
				fail_msg("seed %llu: %s placed, its dependency %s not", (unsigned long long)seed,
					 t->slug, f->tenants[di].slug);
			if (same ? c.ts[di].wave != c.ts[i].wave : c.ts[di].wave >= c.ts[i].wave)
				fail_msg("seed %llu: %s in wave %d, its dependency %s in wave %d",
					 (unsigned long long)seed, t->slug, c.ts[i].wave, f->tenants[di].slug,
					 c.ts[di].wave);
		}
	}
	/* Windows, blackouts, caps and the greedy order, wave by wave. */
	for (size_t i = 0; i < plan->n_waves; i++) {
		const ws_plan_wave *w = &plan->waves[i];
		for (size_t j = 0; j < w->n_tenants; j++)
			check_window(&c, w, &w->tenants[j], tenant_index(&c, w->tenants[j].slug));
		check_greedy(&c, w);
	}
	/* Byte-identical JSON, again, and with every wave split between two
	 * threads (large waves are, in production). */
	ws_plan *again = plan_build(&in, &d);
	assert_non_null(again);
	char *ja = pt_json(plan), *jb = pt_json(again);
	assert_string_equal(ja, jb);
	ws_plan_input two = in;
	two.threads = 0;
	two.parallel_min_units = 1;
	ws_plan *split = plan_build(&two, &d);
	assert_non_null(split);
	char *jc = pt_json(split);
	assert_string_equal(ja, jc);
	free(jc);
	plan_free(split);
	/* And plan_write_json streams those bytes. */
	char *js = pt_json_streamed(plan);
	assert_string_equal(js, ja);
	free(js);
	free(ja);
	free(jb);
	plan_free(again);
	plan_free(plan);
done:
	free(c.ts);
	ws_diags_free(&d);
	policy_free(p);
	fleet_free(f);
	free(g.fleet);
	free(g.policy);
}

static void test_invariants(void **state)
{
	(void)state;
	stats st = { 0 };
	/* PT_SEEDS runs more cases when hunting for a bug; CI runs N_SEEDS. */
	uint64_t n = getenv("PT_SEEDS") ? strtoull(getenv("PT_SEEDS"), NULL, 10) : N_SEEDS;
	for (uint64_t seed = 1; seed <= n; seed++)
		check_case(seed, &st);
	print_message("%d plans (%d cluster), %d unmatched failures, %d cycle failures; "
		      "%d waves, %d placed, %d unassigned, %d delay reasons\n",
		      st.plans, st.cluster_plans, st.failed_unmatched, st.failed_cycle, st.waves,
		      st.placed, st.unassigned, st.delayed);
	/* The cases must exercise the planner, not just fail or place nothing. */
	assert_true(st.plans >= N_SEEDS / 2);
	assert_true(st.cluster_plans >= 20);
	assert_true(st.placed >= 4 * N_SEEDS / 2);
	assert_true(st.delayed >= 50);
	assert_true(st.unassigned >= 20);
	assert_true(st.failed_unmatched >= 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_invariants),
	};
	return cmocka_run_group_tests(tests, NULL, wt_teardown_ical);
}
