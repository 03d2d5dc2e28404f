/*
 * policy.c - reading and validating a wave policy into a ws_policy
 * (spec/policy.md; model in include/wavesched/policy.h), checking it
 * against a fleet, and its one-line summary.
 *
 * One pass over the tree, in the order a reader meets the file: header,
 * metadata, then spec (release kinds and unit first, because the rules for
 * break_glass and max_tenants depend on them), defaults, and the waves,
 * each starting from the effective defaults (policy_settings.c).  As in
 * the fleet parser every problem is reported at the node a user has to
 * change and the pass never stops early; a policy with any problem is
 * thrown away whole.
 *
 * Decisions where spec/policy.md is silent:
 *   - an explicit null is the same as leaving an optional key out;
 *   - `deferral` present means tenant owners may defer: `max` is required,
 *     `per_tenant` defaults to 1;
 *   - a backup gate needs a `max_age` (written in the block that turns the
 *     gate on, or inherited from defaults): there is no safe default;
 *   - a backup gate with `source: http` needs a `url` template holding
 *     {slug} (the status is per tenant); `url` with the catalog is refused,
 *     and a block writing `source: catalog` drops an inherited url;
 *   - approval `roles` must be non-empty and name roles that can approve;
 *   - wave names follow the slug rule, and `deferred` and `overflow-<digits>`
 *     are kept for the planner's own waves;
 *   - a plain `0` is accepted as a zero duration (`soak: 0`).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "policy_internal.h"

typedef struct policy_priv {
	ws_arena *arena;
	int *blackout_line;      /* parallel to p->blackouts, for policy_check_fleet */
	int *blackout_column;
} policy_priv;

typedef struct pctx {
	wsv v;
	ws_policy *p;
	policy_priv *priv;
	const ynode **wave_name_at;   /* parallel to p->waves */
} pctx;

static const char *const top_keys[] = { "apiVersion", "kind", "metadata", "spec", NULL };
static const char *const metadata_keys[] = { "name", "description", NULL };
static const char *const spec_keys[] = {
	"release_kinds", "unit", "unmatched", "schedule", "deferral", "defaults", "waves", NULL,
};
static const char *const schedule_keys[] = {
	"respect_windows", "slot", "horizon", "blackouts", "break_glass", "deploy_estimate", NULL,
};
static const char *const deferral_keys[] = { "max", "per_tenant", NULL };
static const char *const defaults_keys[] = { POLICY_SETTINGS_KEYS, NULL };
static const char *const wave_keys[] = {
	"name", "select", "max_tenants", POLICY_SETTINGS_KEYS, NULL,
};

#define NAME_RULE "expected 1 to 63 characters a-z, 0-9 or -"
#define MAX_TENANTS_LIMIT 1000000
#define DEFAULT_SLOT_S (30 * 60)
#define DEFAULT_HORIZON_S (120 * 86400)
#define DEFAULT_DEPLOY_ESTIMATE_S ((int64_t)15 * 60)

const char *ws_release_kind_name(ws_release_kind k)
{
	return k == WS_RELEASE_URGENT ? "urgent" : "standard";
}

int ws_release_kind_parse(const char *s, ws_release_kind *out)
{
	if (s && strcmp(s, "standard") == 0)
		*out = WS_RELEASE_STANDARD;
	else if (s && strcmp(s, "urgent") == 0)
		*out = WS_RELEASE_URGENT;
	else
		return WS_EINVAL;
	return 0;
}

/* The key node of `key` in `map` (for problems with a key's presence). */
static const ynode *key_node(const ynode *map, const char *key)
{
	for (size_t i = 0; map && map->kind == YNODE_MAP && i < map->len; i++)
		if (map->keys[i]->kind == YNODE_SCALAR && strcmp(map->keys[i]->value, key) == 0)
			return map->keys[i];
	return NULL;
}

/* An optional mapping under `key`, or NULL (reported when not a mapping). */
static const ynode *opt_map(wsv *v, const ynode *parent, const char *key)
{
	const ynode *x = wsv_get(v, parent, key, false, NULL);
	return x && wsv_map(v, x, key) ? x : NULL;
}

/* Repeats ------------------------------------------------------------------ */

typedef struct name_ref {
	const char *name;
	size_t idx;
} name_ref;

static int name_ref_cmp(const void *a, const void *b)
{
	const name_ref *x = a, *y = b;
	int r = strcmp(x->name, y->name);
	if (r)
		return r;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/*
 * For each of `n` names (NULL ones are skipped), the index of the first
 * item with the same name when that is an earlier one, else SIZE_MAX.
 * Sorting by (name, position) finds every repeat in n log n, so a hostile
 * list of a million names costs no more than reading it.  malloc'd.
 */
static size_t *first_occurrences(const char *const *names, size_t n)
{
	size_t *first = malloc((n ? n : 1) * sizeof(*first));
	name_ref *refs = malloc((n ? n : 1) * sizeof(*refs));
	if (!first || !refs)
		abort();
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		first[i] = SIZE_MAX;
		if (names[i])
			refs[m++] = (name_ref){ names[i], i };
	}
	qsort(refs, m, sizeof(*refs), name_ref_cmp);
	for (size_t i = 1, head = 0; i < m; i++) {
		if (strcmp(refs[i].name, refs[head].name) != 0)
			head = i;
		else
			first[refs[i].idx] = refs[head].idx;
	}
	free(refs);
	return first;
}

/* Header and metadata ----------------------------------------------------- */

static void read_header(wsv *v, const ynode *root)
{
	const ynode *x;
	if ((x = wsv_get(v, root, "apiVersion", true, "policy"))) {
		const char *s = wsv_text(v, x, "apiVersion");
		if (s && strcmp(s, "wavesched/v1") != 0)
			wsv_error(v, x, "invalid apiVersion \"%s\" (expected \"wavesched/v1\")", s);
	}
	if ((x = wsv_get(v, root, "kind", true, "policy"))) {
		const char *s = wsv_text(v, x, "kind");
		if (s && strcmp(s, "WavePolicy") != 0)
			wsv_error(v, x, "invalid kind \"%s\" (expected \"WavePolicy\")", s);
	}
}

static void read_metadata(pctx *c, const ynode *n)
{
	wsv *v = &c->v;
	if (!wsv_map(v, n, "metadata"))
		return;
	wsv_keys(v, n, metadata_keys, "metadata");
	const ynode *x;
	if ((x = wsv_get(v, n, "name", true, "metadata")) && (c->p->name = wsv_text(v, x, "name")) &&
	    !ws_name_valid(c->p->name))
		wsv_error(v, x, "invalid policy name \"%s\" (" NAME_RULE ")", c->p->name);
	if ((x = wsv_get(v, n, "description", false, NULL)))
		c->p->description = wsv_text(v, x, "description");
}

/* Spec -------------------------------------------------------------------- */

static void read_release_kinds(pctx *c, const ynode *n)
{
	wsv *v = &c->v;
	if (!wsv_seq(v, n, "release_kinds"))
		return;
	if (n->len == 0) {
		wsv_error(v, n, "release_kinds must not be empty (expected standard, urgent or both)");
		return;
	}
	for (size_t i = 0; i < n->len; i++) {
		const char *t = wsv_text_in(v, n->items[i], "release_kinds");
		ws_release_kind k;
		if (!t)
			continue;
		if (ws_release_kind_parse(t, &k) != 0)
			wsv_error(v, n->items[i], "unknown release kind \"%s\" (expected standard or urgent)", t);
		else if (c->p->release_kinds & (unsigned)k)
			wsv_error(v, n->items[i], "duplicate release kind \"%s\"", t);
		else
			c->p->release_kinds |= (unsigned)k;
	}
}

/* A keyword out of two; `*second` is set when it is the second. */
static void read_choice(wsv *v, const ynode *map, const char *key, const char *first,
			const char *second, bool *is_second)
{
	const ynode *x = wsv_get(v, map, key, false, NULL);
	const char *t = x ? wsv_text(v, x, key) : NULL;
	if (!t)
		return;
	if (strcmp(t, first) == 0)
		*is_second = false;
	else if (strcmp(t, second) == 0)
		*is_second = true;
	else
		wsv_error(v, x, "invalid %s \"%s\" (expected %s or %s)", key, t, first, second);
}

static void read_blackouts(pctx *c, const ynode *n)
{
	wsv *v = &c->v;
	ws_policy *p = c->p;
	if (!wsv_seq(v, n, "blackouts"))
		return;
	const char **names = ws_arena_alloc(v->a, n->len * sizeof(*names));
	for (size_t i = 0; i < n->len; i++) {
		names[i] = wsv_text_in(v, n->items[i], "blackouts");
		if (names[i] && !*names[i]) {
			wsv_error(v, n->items[i], "calendar names must not be empty");
			names[i] = NULL;
		}
	}
	size_t *first = first_occurrences(names, n->len);
	p->blackouts = ws_arena_alloc(v->a, n->len * sizeof(*p->blackouts));
	c->priv->blackout_line = ws_arena_alloc(v->a, n->len * sizeof(int));
	c->priv->blackout_column = ws_arena_alloc(v->a, n->len * sizeof(int));
	for (size_t i = 0; i < n->len; i++) {
		const ynode *item = n->items[i];
		if (!names[i])
			continue;
		if (first[i] != SIZE_MAX) {
			wsv_error(v, item, "duplicate calendar \"%s\" in blackouts", names[i]);
			continue;
		}
		c->priv->blackout_line[p->n_blackouts] = item->line;
		c->priv->blackout_column[p->n_blackouts] = item->column;
		p->blackouts[p->n_blackouts++] = names[i];
	}
	free(first);
}

static void read_schedule(pctx *c, const ynode *n)
{
	wsv *v = &c->v;
	ws_policy *p = c->p;
	wsv_keys(v, n, schedule_keys, "schedule");
	const ynode *x;
	if ((x = wsv_get(v, n, "respect_windows", false, NULL)))
		wsv_bool(v, x, "respect_windows", &p->respect_windows);
	if ((x = wsv_get(v, n, "slot", false, NULL)))
		policy_duration(v, x, "slot", false, &p->slot_s);
	if ((x = wsv_get(v, n, "horizon", false, NULL)))
		policy_duration(v, x, "horizon", false, &p->horizon_s);
	if ((x = wsv_get(v, n, "deploy_estimate", false, NULL)))
		policy_duration(v, x, "deploy_estimate", false, &p->deploy_estimate_s);
	if ((x = wsv_get(v, n, "blackouts", false, NULL)))
		read_blackouts(c, x);
	if ((x = wsv_get(v, n, "break_glass", false, NULL)) &&
	    wsv_bool(v, x, "break_glass", &p->break_glass) && p->break_glass &&
	    (p->release_kinds & WS_RELEASE_STANDARD))
		/* Overriding soft blackouts is an emergency measure: a policy a
		 * standard release may use must never carry it. */
		wsv_error(v, x, "break_glass is only allowed for policies that allow only urgent "
			  "releases");
}

static void read_deferral(pctx *c, const ynode *n)
{
	wsv *v = &c->v;
	ws_policy *p = c->p;
	wsv_keys(v, n, deferral_keys, "deferral");
	p->deferral_allowed = true;
	p->deferral_per_tenant = 1;
	const ynode *x;
	long long k;
	if ((x = wsv_get(v, n, "max", true, "deferral")))
		policy_duration(v, x, "max", false, &p->deferral_max_s);
	if ((x = wsv_get(v, n, "per_tenant", false, NULL)) &&
	    policy_int_range(v, x, "per_tenant", 1, 100, &k))
		p->deferral_per_tenant = (int)k;
}

/* Waves ------------------------------------------------------------------- */

/* Names the planner gives its own waves: `overflow-1`, `overflow-2`, ...
 * (dependencies pushed past the last wave) and `deferred`. */
static bool wave_name_reserved(const char *s)
{
	if (strcmp(s, "deferred") == 0)
		return true;
	if (strncmp(s, "overflow-", 9) != 0 || !s[9])
		return false;
	for (s += 9; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

static void read_wave(pctx *c, const ynode *n, size_t idx)
{
	wsv *v = &c->v;
	ws_policy *p = c->p;
	ws_wave *w = &p->waves[idx];
	w->s = p->defaults;
	if (!wsv_map(v, n, NULL))
		return;
	w->line = n->line;
	w->column = n->column;
	wsv_keys(v, n, wave_keys, "wave");
	const ynode *x;
	if ((x = wsv_get(v, n, "name", true, "wave")) && (w->name = wsv_text(v, x, "name"))) {
		if (!ws_name_valid(w->name))
			wsv_error(v, x, "invalid wave name \"%s\" (" NAME_RULE ")", w->name);
		else if (wave_name_reserved(w->name))
			wsv_error(v, x, "wave name \"%s\" is reserved for the planner's own waves", w->name);
		else
			c->wave_name_at[idx] = x;
	}
	if ((x = wsv_get(v, n, "select", true, "wave")))
		w->select = selector_parse_v(v, x);
	if ((x = wsv_get(v, n, "max_tenants", false, NULL))) {
		long long m;
		if (p->unit == WS_UNIT_CLUSTER)
			wsv_error(v, key_node(n, "max_tenants"), "max_tenants is not allowed with "
				  "unit: cluster (a cluster's tenants move together)");
		else if (policy_int_range(v, x, "max_tenants", 1, MAX_TENANTS_LIMIT, &m))
			w->max_tenants = (int)m;
	}
	policy_settings_read(v, n, &w->s);
}

/* Reports every wave whose name an earlier wave has, against that first
 * wave. */
static void check_duplicate_waves(pctx *c)
{
	const ws_policy *p = c->p;
	const char **names = ws_arena_alloc(c->v.a, p->n_waves * sizeof(*names));
	for (size_t i = 0; i < p->n_waves; i++)
		names[i] = c->wave_name_at[i] ? p->waves[i].name : NULL;
	size_t *first = first_occurrences(names, p->n_waves);
	for (size_t i = 0; i < p->n_waves; i++) {
		if (first[i] == SIZE_MAX)
			continue;
		const ws_wave *w0 = &p->waves[first[i]];
		wsv_error(&c->v, c->wave_name_at[i], "duplicate wave name \"%s\" (first defined at %d:%d)",
			  names[i], w0->line, w0->column);
	}
	free(first);
}

static void read_waves(pctx *c, const ynode *n)
{
	wsv *v = &c->v;
	ws_policy *p = c->p;
	if (!wsv_seq(v, n, "waves"))
		return;
	if (n->len == 0) {
		wsv_error(v, n, "the wave list is empty (a policy needs at least one wave)");
		return;
	}
	p->n_waves = n->len;
	p->waves = ws_arena_alloc(v->a, n->len * sizeof(*p->waves));
	c->wave_name_at = ws_arena_alloc(v->a, n->len * sizeof(*c->wave_name_at));
	for (size_t i = 0; i < n->len; i++)
		read_wave(c, n->items[i], i);
	check_duplicate_waves(c);
}

static void read_spec(pctx *c, const ynode *n)
{
	wsv *v = &c->v;
	ws_policy *p = c->p;
	if (!wsv_map(v, n, "spec"))
		return;
	wsv_keys(v, n, spec_keys, "spec");
	const ynode *x;
	if ((x = wsv_get(v, n, "release_kinds", true, "spec")))
		read_release_kinds(c, x);
	bool cluster = false;
	read_choice(v, n, "unit", "tenant", "cluster", &cluster);
	p->unit = cluster ? WS_UNIT_CLUSTER : WS_UNIT_TENANT;
	read_choice(v, n, "unmatched", "error", "skip", &p->unmatched_skip);
	if ((x = opt_map(v, n, "schedule")))
		read_schedule(c, x);
	if ((x = opt_map(v, n, "deferral")))
		read_deferral(c, x);
	if ((x = opt_map(v, n, "defaults"))) {
		wsv_keys(v, x, defaults_keys, "defaults");
		policy_settings_read(v, x, &p->defaults);
	}
	if ((x = wsv_get(v, n, "waves", true, "spec")))
		read_waves(c, x);
}

static void policy_read(pctx *c, const ynode *root)
{
	wsv *v = &c->v;
	if (!root) {
		wsv_error(v, NULL, "the document is empty (expected a WavePolicy)");
		return;
	}
	if (!wsv_map(v, root, NULL))
		return;
	wsv_keys(v, root, top_keys, "policy");
	read_header(v, root);
	const ynode *x;
	if ((x = wsv_get(v, root, "metadata", true, "policy")))
		read_metadata(c, x);
	if ((x = wsv_get(v, root, "spec", true, "policy")))
		read_spec(c, x);
}

static ws_policy *policy_build(const ydoc *doc, ws_diags *d)
{
	ws_arena *a = ws_arena_new();
	ws_policy *p = ws_arena_alloc(a, sizeof(*p));
	policy_priv *priv = ws_arena_alloc(a, sizeof(*priv));
	priv->arena = a;
	p->priv = priv;
	p->unit = WS_UNIT_TENANT;
	p->respect_windows = true;
	p->slot_s = DEFAULT_SLOT_S;
	p->horizon_s = DEFAULT_HORIZON_S;
	p->deploy_estimate_s = DEFAULT_DEPLOY_ESTIMATE_S;
	pctx c = { .v = { .file = ydoc_name(doc), .d = d, .errors = 0, .a = a }, .p = p,
		   .priv = priv };
	policy_settings_init(&c.v, &p->defaults);
	policy_read(&c, ydoc_root(doc));
	if (d)
		ws_diags_sort(d);
	if (c.v.errors) {
		policy_free(p);
		return NULL;
	}
	/* The estimate is a schedule rule, but each wave's settings carry it
	 * so that a rollout's views can say what the engine will expect
	 * without the policy text at hand. */
	p->defaults.deploy_estimate_s = p->deploy_estimate_s;
	for (size_t i = 0; i < p->n_waves; i++)
		p->waves[i].s.deploy_estimate_s = p->deploy_estimate_s;
	return p;
}

ws_policy *policy_parse(const char *name, const char *buf, size_t len, ws_diags *d)
{
	ydoc *doc = ydoc_parse(name, buf, len, NULL, d);
	if (!doc)
		return NULL;
	ws_policy *p = policy_build(doc, d);
	ydoc_free(doc);
	return p;
}

ws_policy *policy_parse_file(const char *path, ws_diags *d)
{
	ydoc *doc = ydoc_parse_file(path, NULL, d);
	if (!doc)
		return NULL;
	ws_policy *p = policy_build(doc, d);
	ydoc_free(doc);
	return p;
}

void policy_free(ws_policy *p)
{
	if (!p)
		return;
	policy_priv *priv = p->priv;
	ws_arena_free(priv->arena);   /* p itself lives in the arena */
}

const ws_wave *policy_wave(const ws_policy *p, const char *name)
{
	for (size_t i = 0; p && name && i < p->n_waves; i++)
		if (strcmp(p->waves[i].name, name) == 0)
			return &p->waves[i];
	return NULL;
}

/* Against a fleet --------------------------------------------------------- */

/* "a, b, c" of the fleet's calendars in document order, or "none"; malloc'd. */
static char *calendar_list(const ws_fleet *f)
{
	char *s = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&s, &len);
	if (!fp)
		abort();
	for (size_t i = 0; i < f->n_calendars; i++)
		fprintf(fp, "%s%s", i ? ", " : "", f->calendars[i].name);
	if (f->n_calendars == 0)
		fputs("none", fp);
	if (fclose(fp) != 0)
		abort();
	return s;
}

int policy_check_fleet(const ws_policy *p, const char *name, const ws_fleet *f, ws_diags *d)
{
	const policy_priv *priv = p->priv;
	int errors = 0;
	char *have = NULL;
	for (size_t i = 0; i < p->n_blackouts; i++) {
		bool found = false;
		for (size_t j = 0; j < f->n_calendars && !found; j++)
			found = strcmp(f->calendars[j].name, p->blackouts[i]) == 0;
		if (found)
			continue;
		if (!have)
			have = calendar_list(f);
		ws_diag_add(d, name, priv->blackout_line[i], priv->blackout_column[i],
			    "unknown calendar \"%s\" (the fleet has: %s)", p->blackouts[i], have);
		errors++;
	}
	free(have);
	/* Frozen tenants count: a wave written for them is not a mistake, it
	 * is just empty for as long as they stay frozen. */
	for (size_t i = 0; i < p->n_waves; i++) {
		const ws_wave *w = &p->waves[i];
		bool any = false;
		for (size_t j = 0; j < f->n_tenants && !any; j++)
			any = selector_match(w->select, f, &f->tenants[j]);
		if (!any) {
			ws_diag_add(d, name, w->line, w->column,
				    "wave \"%s\" selects no tenant of the fleet", w->name);
			errors++;
		}
	}
	if (d)
		ws_diags_sort(d);
	return errors ? WS_EINVAL : 0;
}

/* Summary ----------------------------------------------------------------- */

char *policy_summary(const ws_policy *p)
{
	char *s = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&s, &len);
	if (!fp)
		return NULL;
	fprintf(fp, "policy \"%s\": %zu wave%s (", p->name, p->n_waves, p->n_waves == 1 ? "" : "s");
	for (size_t i = 0; i < p->n_waves; i++)
		fprintf(fp, "%s%s", i ? ", " : "", p->waves[i].name);
	fprintf(fp, "), unit %s, releases ", p->unit == WS_UNIT_CLUSTER ? "cluster" : "tenant");
	const char *sep = "";
	static const ws_release_kind kinds[] = { WS_RELEASE_STANDARD, WS_RELEASE_URGENT };
	for (size_t i = 0; i < 2; i++) {
		if (p->release_kinds & (unsigned)kinds[i]) {
			fprintf(fp, "%s%s", sep, ws_release_kind_name(kinds[i]));
			sep = ", ";
		}
	}
	if (p->n_blackouts == 0)
		fputs(", no blackouts", fp);
	for (size_t i = 0; i < p->n_blackouts; i++)
		fprintf(fp, "%s%s", i ? ", " : ", blackouts ", p->blackouts[i]);
	if (fclose(fp) != 0) {
		free(s);
		return NULL;
	}
	return s;
}
