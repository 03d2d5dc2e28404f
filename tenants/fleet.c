/*
 * fleet.c - reading and validating a fleet document into a ws_fleet
 * (spec/fleet.md; model in include/wavesched/fleet.h).
 *
 * One pass over the tree reads clusters, then tenants (which refer to
 * clusters), then calendars (whose selectors refer to both).  Checks that
 * need the whole list -- duplicates, depends_on, dependency cycles -- run
 * after each list is read.  Every problem is reported at the node a user has
 * to change (an unknown key at the key, a bad value at the value) and the
 * pass never stops early, so one run lists everything; only then is the
 * half-built model thrown away.
 *
 * Decisions where spec/fleet.md is silent:
 *   - an explicit null (`region:` or `region: ~`) is the same as leaving an
 *     optional key out;
 *   - strings may be written as YAML numbers or booleans (`version: 17.0`
 *     reads as "17.0"): the text as written is kept;
 *   - a one-off window takes no `timezone` (its times carry offsets);
 *   - a calendar's `applies_to` must name existing tenants and clusters.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fleet_internal.h"

typedef struct fleet_priv {
	ws_arena *arena;
	size_t *tenant_order;    /* tenant indexes sorted by slug */
	size_t *cluster_order;   /* cluster indexes sorted by name */
} fleet_priv;

/* Where things were written, for checks that run after a whole list is
 * read.  Lives in the arena with the model and dies with it. */
typedef struct tenant_src {
	const ynode *slug;
	const ynode **deps;      /* parallel to ws_tenant.depends_on */
} tenant_src;

typedef struct fctx {
	wsv v;
	ws_fleet *f;
	const ynode **cluster_name_at;
	const ynode **calendar_name_at;
	tenant_src *tsrc;
	size_t *cluster_order;   /* sorted by name, for lookups while reading */
	size_t n_cluster_order;
	size_t *tenant_order;
	size_t n_tenant_order;
} fctx;

static const char *const top_keys[] = {
	"apiVersion", "kind", "clusters", "tenants", "calendars", NULL,
};
static const char *const cluster_keys[] = {
	"name", "hosting", "region", "max_parallel", "timezone", "labels", "windows", "deploy", NULL,
};
static const char *const tenant_keys[] = {
	"slug", "name", "cluster", "criticality", "timezone", "labels", "depends_on",
	"health_url", "version", "windows", "frozen", NULL,
};
static const char *const calendar_keys[] = {
	"name", "hard", "applies_to", "occurrences", NULL,
};
static const char *const window_keys[] = {
	"rrule", "start", "duration", "timezone", "anchor", "from", "to", NULL,
};
static const char *const webhook_keys[] = {
	"executor", "url", "token_env", "status_url", "timeout", NULL,
};
static const char *const kubernetes_keys[] = {
	"executor", "api_url", "namespace", "deployment", "container", "image", "token_env",
	"timeout", NULL,
};
static const char *const command_keys[] = {
	"executor", "argv", "timeout", NULL,
};

#define NAME_RULE "expected 1 to 63 characters a-z, 0-9 or -"
#define MAX_PARALLEL_LIMIT 10000

const char *ws_hosting_name(ws_hosting h)
{
	return h == HOSTING_DEDICATED ? "dedicated" : "shared";
}

const char *ws_criticality_name(ws_criticality c)
{
	switch (c) {
	case CRIT_LOW: return "low";
	case CRIT_STANDARD: return "standard";
	case CRIT_HIGH: return "high";
	case CRIT_CRITICAL: return "critical";
	}
	return "standard";
}

int ws_criticality_parse(const char *s, ws_criticality *out)
{
	static const ws_criticality all[] = { CRIT_LOW, CRIT_STANDARD, CRIT_HIGH, CRIT_CRITICAL };
	for (size_t i = 0; s && i < 4; i++) {
		if (strcmp(s, ws_criticality_name(all[i])) == 0) {
			*out = all[i];
			return 0;
		}
	}
	return WS_EINVAL;
}

/* The key node of `key` in `map` (unknown-key style messages point there). */
static const ynode *key_node(const ynode *map, const char *key)
{
	for (size_t i = 0; map && map->kind == YNODE_MAP && i < map->len; i++)
		if (map->keys[i]->kind == YNODE_SCALAR && strcmp(map->keys[i]->value, key) == 0)
			return map->keys[i];
	return NULL;
}

/* Windows ----------------------------------------------------------------- */

/* "HH:MM" (or "H:MM") from 00:00 to 23:59. */
static bool parse_start(const char *s, int *minute)
{
	size_t n = strlen(s);
	if (n != 4 && n != 5)
		return false;
	const char *colon = s + n - 3;
	if (*colon != ':')
		return false;
	int h = 0, m = 0;
	for (const char *p = s; p < colon; p++) {
		if (*p < '0' || *p > '9')
			return false;
		h = h * 10 + (*p - '0');
	}
	for (int i = 1; i <= 2; i++) {
		if (colon[i] < '0' || colon[i] > '9')
			return false;
		m = m * 10 + (colon[i] - '0');
	}
	if (h > 23 || m > 59)
		return false;
	*minute = h * 60 + m;
	return true;
}

/* A duration that must be > 0; `key` names it in messages. */
static bool parse_positive_duration(wsv *v, const ynode *n, const char *key, int64_t *out)
{
	const char *t = wsv_text(v, n, key);
	if (!t)
		return false;
	if (ws_duration_parse(t, out) != 0) {
		wsv_error(v, n, "invalid duration \"%s\" (expected e.g. 90s, 30m, 4h, 1d or PT4H)", t);
		return false;
	}
	if (*out <= 0) {
		wsv_error(v, n, "%s must be positive", key);
		return false;
	}
	return true;
}

static bool parse_time_value(wsv *v, const ynode *n, const char *key, int64_t *out,
			     const char **text)
{
	const char *t = wsv_text(v, n, key);
	if (!t)
		return false;
	if (ws_time_parse(t, out) != 0) {
		wsv_error(v, n, "invalid time \"%s\" for \"%s\" (expected RFC 3339, e.g. "
			  "2026-12-24T00:00:00Z)", t, key);
		return false;
	}
	*text = t;
	return true;
}

static void parse_one_off(wsv *v, const ynode *n, ws_window *w)
{
	w->one_off = true;
	const ynode *tz = key_node(n, "timezone");
	if (tz)
		wsv_error(v, tz, "a one-off window takes no timezone (from and to carry their offsets)");
	const ynode *from = wsv_get(v, n, "from", true, "window");
	const ynode *to = wsv_get(v, n, "to", true, "window");
	bool ok_from = from && parse_time_value(v, from, "from", &w->from_utc, &w->from_text);
	bool ok_to = to && parse_time_value(v, to, "to", &w->to_utc, &w->to_text);
	if (ok_from && ok_to && w->to_utc <= w->from_utc)
		wsv_error(v, to, "\"to\" must be after \"from\"");
}

/*
 * `zone` is the zone the window inherits (NULL when that zone is itself
 * invalid, which was reported already): it is needed to check that the
 * rule occurs at all.
 */
static void parse_recurring(wsv *v, const ynode *n, const char *zone, ws_window *w)
{
	int before = v->errors;
	const ynode *x;
	const char *zone_in_force = zone;
	if ((x = wsv_get(v, n, "rrule", true, "window")) && (w->rrule = wsv_text(v, x, "rrule"))) {
		char why[200];
		if (!ws_rrule_valid(w->rrule, why, sizeof(why)))
			wsv_error(v, x, "invalid RRULE \"%s\": %s", w->rrule, why);
	}
	if ((x = wsv_get(v, n, "start", true, "window"))) {
		const char *t = wsv_text(v, x, "start");
		if (t && !parse_start(t, &w->start_minute)) {
			wsv_error(v, x, "invalid start time \"%s\" (expected HH:MM from 00:00 to 23:59)", t);
		} else if (t) {
			char buf[24];
			snprintf(buf, sizeof(buf), "%02d:%02d", w->start_minute / 60, w->start_minute % 60);
			w->start_text = ws_arena_strdup(v->a, buf);
		}
	}
	if ((x = wsv_get(v, n, "duration", true, "window")))
		parse_positive_duration(v, x, "duration", &w->duration_s);
	if ((x = wsv_get(v, n, "timezone", false, "window")) &&
	    (w->timezone = wsv_text(v, x, "timezone"))) {
		zone_in_force = w->timezone;
		if (!ws_tz_valid(w->timezone))
			wsv_error(v, x, "unknown time zone \"%s\"", w->timezone);
	}
	if ((x = wsv_get(v, n, "anchor", false, "window"))) {
		int y, m, d;
		w->anchor = wsv_text(v, x, "anchor");
		if (w->anchor && !ws_date_parse(w->anchor, &y, &m, &d))
			wsv_error(v, x, "invalid anchor \"%s\" (expected a date YYYY-MM-DD)", w->anchor);
	}
	/* Only a rule that passed every check above, in a known zone, can be
	 * expanded to see whether it occurs at all. */
	char why[200];
	if (v->errors == before && zone_in_force && !window_occurs(w, zone, why, sizeof(why)))
		wsv_error(v, ynode_get(n, "rrule"), "invalid RRULE \"%s\": %s", w->rrule, why);
}

static void parse_window(wsv *v, const ynode *n, const char *zone, ws_window *w)
{
	if (!wsv_map(v, n, NULL))
		return;
	w->line = n->line;
	w->column = n->column;
	wsv_keys(v, n, window_keys, "window");
	bool recurring = ynode_get(n, "rrule") || ynode_get(n, "start") ||
			 ynode_get(n, "duration") || ynode_get(n, "anchor");
	bool one_off = ynode_get(n, "from") || ynode_get(n, "to");
	if (recurring && one_off)
		wsv_error(v, n, "a window has either rrule, start and duration, or from and to, not both");
	else if (!recurring && !one_off)
		wsv_error(v, n, "a window needs rrule, start and duration, or from and to");
	else if (one_off)
		parse_one_off(v, n, w);
	else
		parse_recurring(v, n, zone, w);
}

static void parse_windows(wsv *v, const ynode *n, const char *key, const char *zone,
			  ws_window **out, size_t *n_out)
{
	if (!wsv_seq(v, n, key))
		return;
	*out = ws_arena_alloc(v->a, n->len * sizeof(**out));
	*n_out = n->len;
	for (size_t i = 0; i < n->len; i++)
		parse_window(v, n->items[i], zone, &(*out)[i]);
}

/* Labels, deploy ---------------------------------------------------------- */

static void parse_labels(wsv *v, const ynode *n, ws_label **out, size_t *n_out)
{
	if (!wsv_map(v, n, "labels"))
		return;
	*out = ws_arena_alloc(v->a, n->len * sizeof(**out));
	for (size_t i = 0; i < n->len; i++) {
		const ynode *k = n->keys[i], *val = n->items[i];
		if (k->value_len == 0) {
			wsv_error(v, k, "label keys must not be empty");
			continue;
		}
		if (val->kind != YNODE_SCALAR || ynode_is_null(val)) {
			wsv_error(v, val, "expected a string for label \"%s\", got %s", k->value,
				  wsv_article(val));
			continue;
		}
		ws_label *l = &(*out)[(*n_out)++];
		l->key = ws_arena_strdup(v->a, k->value);
		l->value = ws_arena_strdup(v->a, val->value);
	}
}

static bool env_name_valid(const char *s)
{
	if (!*s || (*s >= '0' && *s <= '9'))
		return false;
	for (; *s; s++)
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		      (*s >= '0' && *s <= '9') || *s == '_'))
			return false;
	return true;
}

static bool url_key(const char *key)
{
	return strcmp(key, "url") == 0 || strcmp(key, "status_url") == 0 ||
	       strcmp(key, "api_url") == 0;
}

/* One deploy setting, checked, as its canonical JSON value. */
static json_t *deploy_value(wsv *v, const ynode *x, const char *key)
{
	if (strcmp(key, "argv") == 0) {
		if (!wsv_seq(v, x, key))
			return NULL;
		if (x->len == 0) {
			wsv_error(v, x, "argv must not be empty");
			return NULL;
		}
		json_t *a = json_array();
		for (size_t i = 0; i < x->len; i++) {
			const char *t = wsv_text_in(v, x->items[i], "argv");
			if (t)
				json_array_append_new(a, json_string(t));
		}
		return a;
	}
	const char *t = wsv_text(v, x, key);
	if (!t)
		return NULL;
	if (strcmp(key, "timeout") == 0) {
		int64_t s;
		char buf[32];
		if (!parse_positive_duration(v, x, "timeout", &s))
			return NULL;
		ws_duration_format(s, buf, sizeof(buf));
		return json_string(buf);
	}
	if (url_key(key) && !ws_url_valid(t)) {
		wsv_error(v, x, "invalid URL \"%s\" for \"%s\" (expected an http or https URL)", t, key);
		return NULL;
	}
	if (strcmp(key, "token_env") == 0 && !env_name_valid(t)) {
		wsv_error(v, x, "invalid environment variable name \"%s\" for \"token_env\"", t);
		return NULL;
	}
	if (t[0] == '\0') {
		wsv_error(v, x, "\"%s\" must not be empty", key);
		return NULL;
	}
	return json_string(t);
}

static json_t *parse_deploy(wsv *v, const ynode *n)
{
	if (!wsv_map(v, n, "deploy"))
		return NULL;
	const ynode *ex = wsv_get(v, n, "executor", true, "deploy");
	const char *executor = ex ? wsv_text(v, ex, "executor") : NULL;
	if (!executor)
		return NULL;
	const char *const *keys;
	const char *required;
	if (strcmp(executor, "webhook") == 0) {
		keys = webhook_keys;
		required = "url";
	} else if (strcmp(executor, "kubernetes") == 0) {
		keys = kubernetes_keys;
		required = "api_url";
	} else if (strcmp(executor, "command") == 0) {
		keys = command_keys;
		required = "argv";
	} else {
		wsv_error(v, ex, "invalid executor \"%s\" (expected one of: webhook, kubernetes, command)",
			  executor);
		return NULL;
	}
	int before = v->errors;
	wsv_keys(v, n, keys, "deploy");
	/* Built in the order of the key list so the canonical form is stable. */
	json_t *o = json_object();
	json_object_set_new(o, "executor", json_string(executor));
	for (size_t i = 1; keys[i]; i++) {
		const ynode *x = wsv_get(v, n, keys[i], strcmp(keys[i], required) == 0, "deploy");
		json_t *val = x ? deploy_value(v, x, keys[i]) : NULL;
		if (val)
			json_object_set_new(o, keys[i], val);
	}
	if (v->errors != before) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* Clusters ---------------------------------------------------------------- */

static void parse_cluster(fctx *c, const ynode *n, size_t idx)
{
	wsv *v = &c->v;
	ws_cluster *cl = &c->f->clusters[idx];
	cl->timezone = "UTC";
	if (!wsv_map(v, n, NULL))
		return;
	cl->line = n->line;
	cl->column = n->column;
	wsv_keys(v, n, cluster_keys, "cluster");
	const ynode *x;
	if ((x = wsv_get(v, n, "name", true, "cluster")) && (cl->name = wsv_text(v, x, "name"))) {
		c->cluster_name_at[idx] = x;
		if (!ws_name_valid(cl->name))
			wsv_error(v, x, "invalid cluster name \"%s\" (" NAME_RULE ")", cl->name);
	}
	if ((x = wsv_get(v, n, "hosting", true, "cluster"))) {
		const char *t = wsv_text(v, x, "hosting");
		if (t)
			wsv_hosting(v, x, t, &cl->hosting);
	}
	if ((x = wsv_get(v, n, "region", false, "cluster")))
		cl->region = wsv_text(v, x, "region");
	if ((x = wsv_get(v, n, "max_parallel", false, "cluster"))) {
		long long mp;
		if (wsv_int(v, x, "max_parallel", &mp)) {
			if (mp < 1 || mp > MAX_PARALLEL_LIMIT)
				wsv_error(v, x, "max_parallel must be between 1 and %d, got %lld",
					  MAX_PARALLEL_LIMIT, mp);
			else
				cl->max_parallel = (int)mp;
		}
	}
	bool zone_ok = true;
	if ((x = wsv_get(v, n, "timezone", false, "cluster"))) {
		const char *t = wsv_text(v, x, "timezone");
		if (t && ws_tz_valid(t)) {
			cl->timezone = t;
		} else {
			zone_ok = false;
			if (t)
				wsv_error(v, x, "unknown time zone \"%s\"", t);
		}
	}
	if ((x = wsv_get(v, n, "labels", false, "cluster")))
		parse_labels(v, x, &cl->labels, &cl->n_labels);
	if ((x = wsv_get(v, n, "windows", false, "cluster")))
		parse_windows(v, x, "windows", zone_ok ? cl->timezone : NULL, &cl->windows,
			      &cl->n_windows);
	if ((x = wsv_get(v, n, "deploy", false, "cluster")))
		cl->deploy = parse_deploy(v, x);
}

/* Lookups ----------------------------------------------------------------- */

typedef const char *(*name_of_fn)(const ws_fleet *f, size_t i);

static const char *cluster_name_of(const ws_fleet *f, size_t i)
{
	return f->clusters[i].name ? f->clusters[i].name : "";
}

static const char *tenant_slug_of(const ws_fleet *f, size_t i)
{
	return f->tenants[i].slug ? f->tenants[i].slug : "";
}

static const char *calendar_name_of(const ws_fleet *f, size_t i)
{
	return f->calendars[i].name ? f->calendars[i].name : "";
}

/* A list of named things: how to get the name and where each was defined. */
typedef struct named_list {
	name_of_fn name;
	const char *what;          /* "cluster name" */
	const ynode **name_at;     /* the name's value node; NULL: no name */
	const int *line, *column;  /* the first entry's position fields */
	size_t stride;             /* sizeof the struct holding line and column */
} named_list;

/* A merge sort: stable, so among equal names the first in the document comes
 * first (it is the one "first defined"), and it needs no context argument,
 * which qsort lacks.  O(n log n) for fleets of tens of thousands. */
static void sort_indexes(const ws_fleet *f, name_of_fn name, size_t *idx, size_t *tmp, size_t n)
{
	if (n < 2)
		return;
	size_t h = n / 2;
	sort_indexes(f, name, idx, tmp, h);
	sort_indexes(f, name, idx + h, tmp, n - h);
	size_t i = 0, j = h, k = 0;
	while (i < h && j < n)
		tmp[k++] = strcmp(name(f, idx[j]), name(f, idx[i])) < 0 ? idx[j++] : idx[i++];
	while (i < h)
		tmp[k++] = idx[i++];
	while (j < n)
		tmp[k++] = idx[j++];
	memcpy(idx, tmp, n * sizeof(*idx));
}

/*
 * Sorts 0..n-1 by name into a new arena array, reports every repeated name
 * against the repeat ("first defined at" the first entry), and returns the
 * array with the repeats removed (count in *n_out).  Items without a name
 * are left out.
 */
static size_t *index_unique(fctx *c, size_t n, const named_list *l, size_t *n_out)
{
	size_t *idx = ws_arena_alloc(c->v.a, (n ? n : 1) * sizeof(*idx));
	size_t *tmp = malloc((n ? n : 1) * sizeof(*tmp));
	if (!tmp)
		abort();
	size_t m = 0;
	for (size_t i = 0; i < n; i++)
		if (l->name_at[i])
			idx[m++] = i;
	sort_indexes(c->f, l->name, idx, tmp, m);
	free(tmp);
	size_t k = 0;
	for (size_t i = 0; i < m; i++) {
		if (k > 0 && strcmp(l->name(c->f, idx[k - 1]), l->name(c->f, idx[i])) == 0) {
			size_t first = idx[k - 1];
			int line = *(const int *)((const char *)l->line + first * l->stride);
			int col = *(const int *)((const char *)l->column + first * l->stride);
			wsv_error(&c->v, l->name_at[idx[i]], "duplicate %s \"%s\" (first defined at %d:%d)",
				  l->what, l->name(c->f, idx[i]), line, col);
			continue;
		}
		idx[k++] = idx[i];
	}
	*n_out = k;
	return idx;
}

static size_t find_index(const ws_fleet *f, const size_t *order, size_t n, name_of_fn name,
			 const char *key)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int cmp = strcmp(name(f, order[mid]), key);
		if (cmp == 0)
			return order[mid];
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return SIZE_MAX;
}

/* Tenants ----------------------------------------------------------------- */

static void parse_tenant(fctx *c, const ynode *n, size_t idx)
{
	wsv *v = &c->v;
	ws_tenant *t = &c->f->tenants[idx];
	tenant_src *src = &c->tsrc[idx];
	t->criticality = CRIT_STANDARD;
	t->timezone = "UTC";
	t->cluster_index = SIZE_MAX;
	if (!wsv_map(v, n, NULL))
		return;
	t->line = n->line;
	t->column = n->column;
	wsv_keys(v, n, tenant_keys, "tenant");
	const ynode *x;
	if ((x = wsv_get(v, n, "slug", true, "tenant")) && (t->slug = wsv_text(v, x, "slug"))) {
		src->slug = x;
		if (!ws_name_valid(t->slug))
			wsv_error(v, x, "invalid slug \"%s\" (" NAME_RULE ")", t->slug);
	}
	t->name = t->slug;
	if ((x = wsv_get(v, n, "name", false, "tenant"))) {
		const char *name = wsv_text(v, x, "name");
		if (name && !*name)
			wsv_error(v, x, "\"name\" must not be empty");
		else if (name)
			t->name = name;
	}
	if ((x = wsv_get(v, n, "cluster", true, "tenant")) && (t->cluster = wsv_text(v, x, "cluster"))) {
		t->cluster_index = find_index(c->f, c->cluster_order, c->n_cluster_order,
					      cluster_name_of, t->cluster);
		if (t->cluster_index == SIZE_MAX)
			wsv_error(v, x, "unknown cluster \"%s\"", t->cluster);
		else
			t->timezone = c->f->clusters[t->cluster_index].timezone;
	}
	if ((x = wsv_get(v, n, "criticality", false, "tenant"))) {
		const char *s = wsv_text(v, x, "criticality");
		if (s)
			wsv_criticality(v, x, s, &t->criticality);
	}
	bool zone_ok = true;
	if ((x = wsv_get(v, n, "timezone", false, "tenant"))) {
		const char *s = wsv_text(v, x, "timezone");
		if (s && ws_tz_valid(s)) {
			t->timezone = s;
		} else {
			zone_ok = false;
			if (s)
				wsv_error(v, x, "unknown time zone \"%s\"", s);
		}
	}
	if ((x = wsv_get(v, n, "labels", false, "tenant")))
		parse_labels(v, x, &t->labels, &t->n_labels);
	if ((x = wsv_get(v, n, "depends_on", false, "tenant")) && wsv_seq(v, x, "depends_on")) {
		t->depends_on = ws_arena_alloc(v->a, x->len * sizeof(*t->depends_on));
		t->depends_on_index = ws_arena_alloc(v->a, x->len * sizeof(*t->depends_on_index));
		src->deps = ws_arena_alloc(v->a, x->len * sizeof(*src->deps));
		for (size_t i = 0; i < x->len; i++) {
			const char *s = wsv_text_in(v, x->items[i], "depends_on");
			if (!s)
				continue;
			src->deps[t->n_depends_on] = x->items[i];
			t->depends_on_index[t->n_depends_on] = SIZE_MAX;
			t->depends_on[t->n_depends_on++] = s;
		}
	}
	if ((x = wsv_get(v, n, "health_url", false, "tenant"))) {
		const char *s = wsv_text(v, x, "health_url");
		if (s && !ws_url_valid(s))
			wsv_error(v, x, "invalid URL \"%s\" for \"health_url\" (expected an http or "
				  "https URL)", s);
		else
			t->health_url = s;
	}
	if ((x = wsv_get(v, n, "version", false, "tenant")))
		t->version = wsv_text(v, x, "version");
	if ((x = wsv_get(v, n, "windows", false, "tenant")))
		parse_windows(v, x, "windows", zone_ok ? t->timezone : NULL, &t->windows,
			      &t->n_windows);
	if ((x = wsv_get(v, n, "frozen", false, "tenant")))
		wsv_bool(v, x, "frozen", &t->frozen);
}

/* Resolves depends_on; self-references, repeats and unknown slugs are
 * reported and left out of the graph (index SIZE_MAX). */
static void resolve_dependencies(fctx *c)
{
	ws_fleet *f = c->f;
	for (size_t i = 0; i < f->n_tenants; i++) {
		ws_tenant *t = &f->tenants[i];
		for (size_t j = 0; j < t->n_depends_on; j++) {
			const char *dep = t->depends_on[j];
			const ynode *at = c->tsrc[i].deps[j];
			bool repeated = false;
			for (size_t k = 0; k < j && !repeated; k++)
				repeated = strcmp(t->depends_on[k], dep) == 0;
			if (t->slug && strcmp(dep, t->slug) == 0)
				wsv_error(&c->v, at, "tenant \"%s\" depends on itself", dep);
			else if (repeated)
				wsv_error(&c->v, at, "duplicate \"%s\" in depends_on", dep);
			else if ((t->depends_on_index[j] = find_index(f, c->tenant_order,
								      c->n_tenant_order,
								      tenant_slug_of, dep)) == SIZE_MAX)
				wsv_error(&c->v, at, "unknown tenant \"%s\" in depends_on", dep);
		}
	}
}

/* A growing string for cycle messages. */
typedef struct sbuf {
	char *s;
	size_t len, cap;
} sbuf;

static void sbuf_add(sbuf *b, const char *s)
{
	size_t n = strlen(s);
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->s, cap);
		if (!p)
			abort();
		b->s = p;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n + 1);
	b->len += n;
}

/*
 * Reports the cycle path[0] -> ... -> path[len-1] -> path[0], rotated to
 * start at its smallest slug, unless that same cycle was reported already.
 */
static void report_cycle(fctx *c, const size_t *path, size_t len, char ***seen, size_t *n_seen)
{
	const ws_fleet *f = c->f;
	size_t m = 0;
	for (size_t i = 1; i < len; i++)
		if (strcmp(f->tenants[path[i]].slug, f->tenants[path[m]].slug) < 0)
			m = i;
	sbuf b = { 0 };
	sbuf_add(&b, "dependency cycle: ");
	for (size_t i = 0; i <= len; i++) {
		if (i)
			sbuf_add(&b, " -> ");
		sbuf_add(&b, f->tenants[path[(m + i) % len]].slug);
	}
	for (size_t i = 0; i < *n_seen; i++) {
		if (strcmp((*seen)[i], b.s) == 0) {
			free(b.s);
			return;
		}
	}
	char **grown = realloc(*seen, (*n_seen + 1) * sizeof(**seen));
	if (!grown)
		abort();
	*seen = grown;
	(*seen)[(*n_seen)++] = b.s;
	/* At the entry of the first tenant's depends_on that starts the cycle. */
	size_t first = path[m], next = path[(m + 1) % len];
	const ws_tenant *t = &f->tenants[first];
	const ynode *at = NULL;
	for (size_t j = 0; j < t->n_depends_on && !at; j++)
		if (t->depends_on_index[j] == next)
			at = c->tsrc[first].deps[j];
	wsv_error(&c->v, at, "%s", b.s);
}

/*
 * Depth-first search over depends_on edges, iterative so that a long chain
 * of tenants cannot overflow the stack.  Every edge that leads back to a
 * tenant on the current path closes a cycle.
 */
static void find_cycles(fctx *c)
{
	const ws_fleet *f = c->f;
	size_t n = f->n_tenants;
	if (n == 0)
		return;
	unsigned char *color = calloc(n, 1);          /* 0 new, 1 on path, 2 done */
	size_t *path = malloc(n * sizeof(*path));
	size_t *next_edge = malloc(n * sizeof(*next_edge));
	size_t *pos = malloc(n * sizeof(*pos));       /* index of a tenant in path */
	if (!color || !path || !next_edge || !pos)
		abort();
	char **seen = NULL;
	size_t n_seen = 0;
	for (size_t root = 0; root < n; root++) {
		if (color[root] || !f->tenants[root].slug)
			continue;
		size_t depth = 0;
		path[depth] = root;
		next_edge[depth] = 0;
		pos[root] = depth++;
		color[root] = 1;
		while (depth > 0) {
			size_t u = path[depth - 1];
			const ws_tenant *t = &f->tenants[u];
			if (next_edge[depth - 1] == t->n_depends_on) {
				color[u] = 2;
				depth--;
				continue;
			}
			size_t w = t->depends_on_index[next_edge[depth - 1]++];
			if (w == SIZE_MAX || color[w] == 2)
				continue;
			if (color[w] == 1) {
				report_cycle(c, path + pos[w], depth - pos[w], &seen, &n_seen);
				continue;
			}
			color[w] = 1;
			pos[w] = depth;
			path[depth] = w;
			next_edge[depth++] = 0;
		}
	}
	for (size_t i = 0; i < n_seen; i++)
		free(seen[i]);
	free(seen);
	free(pos);
	free(next_edge);
	free(path);
	free(color);
}

/* Calendars --------------------------------------------------------------- */

/* Every slug and cluster a calendar's selector names must exist: a typo
 * would silently take a tenant out of a blackout. */
static void check_selector_refs(fctx *c, const ynode *sel)
{
	static const struct { const char *key; bool tenants; } refs[] = {
		{ "slugs", true }, { "clusters", false },
	};
	for (size_t r = 0; r < 2; r++) {
		const ynode *x = ynode_get(sel, refs[r].key);
		if (!x)
			continue;
		const ynode *one = x;
		const ynode *const *items = x->kind == YNODE_SEQ ? (const ynode *const *)x->items : &one;
		size_t len = x->kind == YNODE_SEQ ? x->len : 1;
		for (size_t i = 0; i < len; i++) {
			const char *s = items[i]->value;
			bool found = refs[r].tenants
				? find_index(c->f, c->tenant_order, c->n_tenant_order, tenant_slug_of, s) != SIZE_MAX
				: find_index(c->f, c->cluster_order, c->n_cluster_order, cluster_name_of, s) != SIZE_MAX;
			if (!found)
				wsv_error(&c->v, items[i], "unknown %s \"%s\"",
					  refs[r].tenants ? "tenant" : "cluster", s);
		}
	}
	const ynode *not_ = ynode_get(sel, "not");
	if (not_)
		check_selector_refs(c, not_);
}

static void parse_calendar(fctx *c, const ynode *n, size_t idx)
{
	wsv *v = &c->v;
	ws_calendar *cal = &c->f->calendars[idx];
	if (!wsv_map(v, n, NULL))
		return;
	cal->line = n->line;
	cal->column = n->column;
	wsv_keys(v, n, calendar_keys, "calendar");
	const ynode *x;
	if ((x = wsv_get(v, n, "name", true, "calendar")) && (cal->name = wsv_text(v, x, "name"))) {
		if (!*cal->name)
			wsv_error(v, x, "calendar name must not be empty");
		else
			c->calendar_name_at[idx] = x;
	}
	if ((x = wsv_get(v, n, "hard", false, "calendar")))
		wsv_bool(v, x, "hard", &cal->hard);
	if ((x = wsv_get(v, n, "applies_to", false, "calendar"))) {
		cal->applies_to = selector_parse_v(v, x);
		if (cal->applies_to)
			check_selector_refs(c, x);
	}
	if ((x = wsv_get(v, n, "occurrences", false, "calendar")))
		parse_windows(v, x, "occurrences", "UTC", &cal->occurrences, &cal->n_occurrences);
}

/* The fleet --------------------------------------------------------------- */

/* Reads the list under `key` (a sequence) and returns it, or NULL. */
static const ynode *top_list(wsv *v, const ynode *root, const char *key)
{
	const ynode *x = wsv_get(v, root, key, false, "fleet");
	return x && wsv_seq(v, x, key) ? x : NULL;
}

static void check_header(wsv *v, const ynode *root)
{
	const ynode *x;
	if ((x = wsv_get(v, root, "apiVersion", true, "fleet"))) {
		const char *s = wsv_text(v, x, "apiVersion");
		if (s && strcmp(s, "wavesched/v1") != 0)
			wsv_error(v, x, "invalid apiVersion \"%s\" (expected \"wavesched/v1\")", s);
	}
	if ((x = wsv_get(v, root, "kind", true, "fleet"))) {
		const char *s = wsv_text(v, x, "kind");
		if (s && strcmp(s, "Fleet") != 0)
			wsv_error(v, x, "invalid kind \"%s\" (expected \"Fleet\")", s);
	}
}

static void fleet_read(fctx *c, const ynode *root)
{
	wsv *v = &c->v;
	ws_fleet *f = c->f;
	ws_arena *a = v->a;
	if (!root) {
		wsv_error(v, NULL, "the document is empty (expected a Fleet)");
		return;
	}
	if (!wsv_map(v, root, NULL))
		return;
	wsv_keys(v, root, top_keys, "fleet");
	check_header(v, root);

	const ynode *list;
	if ((list = top_list(v, root, "clusters"))) {
		f->n_clusters = list->len;
		f->clusters = ws_arena_alloc(a, list->len * sizeof(*f->clusters));
		c->cluster_name_at = ws_arena_alloc(a, list->len * sizeof(*c->cluster_name_at));
		for (size_t i = 0; i < list->len; i++)
			parse_cluster(c, list->items[i], i);
	}
	named_list clusters = {
		.name = cluster_name_of, .what = "cluster name", .name_at = c->cluster_name_at,
		.line = f->clusters ? &f->clusters[0].line : NULL,
		.column = f->clusters ? &f->clusters[0].column : NULL, .stride = sizeof(ws_cluster),
	};
	c->cluster_order = index_unique(c, f->n_clusters, &clusters, &c->n_cluster_order);

	if ((list = top_list(v, root, "tenants"))) {
		f->n_tenants = list->len;
		f->tenants = ws_arena_alloc(a, list->len * sizeof(*f->tenants));
		c->tsrc = ws_arena_alloc(a, list->len * sizeof(*c->tsrc));
		for (size_t i = 0; i < list->len; i++)
			parse_tenant(c, list->items[i], i);
	}
	const ynode **slug_at = ws_arena_alloc(a, (f->n_tenants ? f->n_tenants : 1) * sizeof(*slug_at));
	for (size_t i = 0; i < f->n_tenants; i++)
		slug_at[i] = c->tsrc[i].slug;
	named_list tenants = {
		.name = tenant_slug_of, .what = "tenant slug", .name_at = slug_at,
		.line = f->tenants ? &f->tenants[0].line : NULL,
		.column = f->tenants ? &f->tenants[0].column : NULL, .stride = sizeof(ws_tenant),
	};
	c->tenant_order = index_unique(c, f->n_tenants, &tenants, &c->n_tenant_order);
	resolve_dependencies(c);
	find_cycles(c);

	if ((list = top_list(v, root, "calendars"))) {
		f->n_calendars = list->len;
		f->calendars = ws_arena_alloc(a, list->len * sizeof(*f->calendars));
		c->calendar_name_at = ws_arena_alloc(a, list->len * sizeof(*c->calendar_name_at));
		for (size_t i = 0; i < list->len; i++)
			parse_calendar(c, list->items[i], i);
		named_list calendars = {
			.name = calendar_name_of, .what = "calendar name", .name_at = c->calendar_name_at,
			.line = &f->calendars[0].line, .column = &f->calendars[0].column,
			.stride = sizeof(ws_calendar),
		};
		size_t n_unique;
		index_unique(c, f->n_calendars, &calendars, &n_unique);
	}
}

static ws_fleet *fleet_build(const ydoc *doc, ws_diags *d)
{
	ws_arena *a = ws_arena_new();
	ws_fleet *f = ws_arena_alloc(a, sizeof(*f));
	fleet_priv *priv = ws_arena_alloc(a, sizeof(*priv));
	priv->arena = a;
	f->priv = priv;
	fctx c = { .v = { .file = ydoc_name(doc), .d = d, .errors = 0, .a = a }, .f = f };
	fleet_read(&c, ydoc_root(doc));
	if (d)
		ws_diags_sort(d);
	if (c.v.errors) {
		fleet_free(f);
		return NULL;
	}
	priv->cluster_order = c.cluster_order;
	priv->tenant_order = c.tenant_order;
	return f;
}

ws_fleet *fleet_parse(const char *name, const char *buf, size_t len, ws_diags *d)
{
	ydoc *doc = ydoc_parse(name, buf, len, NULL, d);
	if (!doc)
		return NULL;
	ws_fleet *f = fleet_build(doc, d);
	ydoc_free(doc);
	return f;
}

ws_fleet *fleet_parse_file(const char *path, ws_diags *d)
{
	ydoc *doc = ydoc_parse_file(path, NULL, d);
	if (!doc)
		return NULL;
	ws_fleet *f = fleet_build(doc, d);
	ydoc_free(doc);
	return f;
}

void fleet_free(ws_fleet *f)
{
	if (!f)
		return;
	fleet_priv *priv = f->priv;
	for (size_t i = 0; i < f->n_clusters; i++)
		json_decref(f->clusters[i].deploy);
	ws_arena_free(priv->arena);   /* f itself lives in the arena */
}

const ws_tenant *fleet_tenant(const ws_fleet *f, const char *slug)
{
	if (!f || !slug)
		return NULL;
	const fleet_priv *priv = f->priv;
	size_t i = find_index(f, priv->tenant_order, f->n_tenants, tenant_slug_of, slug);
	return i == SIZE_MAX ? NULL : &f->tenants[i];
}

const ws_cluster *fleet_cluster(const ws_fleet *f, const char *name)
{
	if (!f || !name)
		return NULL;
	const fleet_priv *priv = f->priv;
	size_t i = find_index(f, priv->cluster_order, f->n_clusters, cluster_name_of, name);
	return i == SIZE_MAX ? NULL : &f->clusters[i];
}
