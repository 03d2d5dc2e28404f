/*
 * selector.c - tenant selectors (spec/policy.md "Selectors"), shared by
 * fleet calendars (`applies_to`) and policy waves (`select`).
 *
 * All keys must match (AND); a list matches any of its values (OR); `not`
 * negates a nested selector; `{}` matches every tenant.  Lists may also be
 * written as a single value.  An empty list is refused: it would match no
 * tenant, which is never what someone who wrote it meant.
 */
#include <stdlib.h>
#include <string.h>
#include "fleet_internal.h"

static const char *const selector_keys[] = {
	"slugs", "clusters", "hosting", "criticality", "labels", "regions", "not", NULL,
};

/*
 * A list of strings (or one string) under `key`.  Returns the number of
 * valid items, stored in new arena arrays: the texts in *out and, when
 * `at_out` is given, the node of each (for messages about values).
 * `name_kind` ("slug", "cluster name") turns on the [a-z0-9-] check.
 */
static size_t read_list(wsv *v, const ynode *n, const char *key, const char *name_kind,
			const ynode ***at_out, const char ***out)
{
	const ynode *one = n;
	const ynode *const *items;
	size_t len;
	*out = NULL;
	if (at_out)
		*at_out = NULL;
	if (n->kind == YNODE_SCALAR && !ynode_is_null(n)) {
		items = &one;
		len = 1;
	} else if (n->kind == YNODE_SEQ) {
		items = (const ynode *const *)n->items;
		len = n->len;
		if (len == 0) {
			wsv_error(v, n, "empty list for \"%s\" (it would match no tenant)", key);
			return 0;
		}
	} else {
		wsv_error(v, n, "expected a string or a list for \"%s\", got %s", key, wsv_article(n));
		return 0;
	}
	const char **vals = ws_arena_alloc(v->a, len * sizeof(*vals));
	const ynode **at = ws_arena_alloc(v->a, len * sizeof(*at));
	size_t k = 0;
	for (size_t i = 0; i < len; i++) {
		const char *t = wsv_text_in(v, items[i], key);
		if (!t)
			continue;
		if (name_kind && !ws_name_valid(t)) {
			wsv_error(v, items[i], "invalid %s \"%s\" (expected 1 to 63 characters "
				  "a-z, 0-9 or -)", name_kind, t);
			continue;
		}
		at[k] = items[i];
		vals[k++] = t;
	}
	if (at_out)
		*at_out = at;
	*out = vals;
	return k;
}

static void read_labels(wsv *v, const ynode *n, ws_selector *s)
{
	if (!wsv_map(v, n, "labels"))
		return;
	s->labels = ws_arena_alloc(v->a, n->len * sizeof(*s->labels));
	for (size_t i = 0; i < n->len; i++) {
		struct ws_selector_label *l = &s->labels[s->n_labels];
		l->key = n->keys[i]->value ? wsv_str(v, n->keys[i]) : NULL;
		const ynode *val = n->items[i];
		if (val->kind == YNODE_MAP || ynode_is_null(val)) {
			wsv_error(v, val, "expected a string or a list for label \"%s\", got %s",
				  l->key, wsv_article(val));
			continue;
		}
		l->n_values = read_list(v, val, l->key, NULL, NULL, &l->values);
		if (l->n_values)
			s->n_labels++;
	}
}

ws_selector *selector_parse_v(wsv *v, const ynode *n)
{
	if (n->kind != YNODE_MAP) {
		wsv_error(v, n, "expected a mapping for a selector, got %s", wsv_article(n));
		return NULL;
	}
	int before = v->errors;
	ws_selector *s = ws_arena_alloc(v->a, sizeof(*s));
	wsv_keys(v, n, selector_keys, "selector");
	const ynode *x;
	if ((x = ynode_get(n, "slugs"))) {
		s->has_slugs = true;
		s->n_slugs = read_list(v, x, "slugs", "slug", NULL, &s->slugs);
	}
	if ((x = ynode_get(n, "clusters"))) {
		s->has_clusters = true;
		s->n_clusters = read_list(v, x, "clusters", "cluster name", NULL, &s->clusters);
	}
	if ((x = ynode_get(n, "regions"))) {
		s->has_regions = true;
		s->n_regions = read_list(v, x, "regions", NULL, NULL, &s->regions);
	}
	if ((x = ynode_get(n, "hosting"))) {
		const char **vals;
		const ynode **items;
		size_t k = read_list(v, x, "hosting", NULL, &items, &vals);
		s->has_hosting = true;
		for (size_t i = 0; i < k; i++) {
			ws_hosting h;
			if (wsv_hosting(v, items[i], vals[i], &h))
				s->hosting[h] = true;
		}
	}
	if ((x = ynode_get(n, "criticality"))) {
		const char **vals;
		const ynode **items;
		size_t k = read_list(v, x, "criticality", NULL, &items, &vals);
		s->has_criticality = true;
		for (size_t i = 0; i < k; i++) {
			ws_criticality c;
			if (wsv_criticality(v, items[i], vals[i], &c))
				s->criticality[c] = true;
		}
	}
	if ((x = ynode_get(n, "labels")))
		read_labels(v, x, s);
	if ((x = ynode_get(n, "not")))
		s->not_ = selector_parse_v(v, x);
	return v->errors == before ? s : NULL;
}

ws_selector *selector_parse(const ydoc *doc, const ynode *n, void *arena, ws_diags *d)
{
	if (!n || !arena)
		return NULL;
	wsv v = { .file = ydoc_name(doc), .d = d, .errors = 0, .a = arena };
	return selector_parse_v(&v, n);
}

static bool in_list(const char *const *list, size_t n, const char *s)
{
	if (!s)
		return false;
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i], s) == 0)
			return true;
	return false;
}

static const char *tenant_label(const ws_tenant *t, const char *key)
{
	for (size_t i = 0; i < t->n_labels; i++)
		if (strcmp(t->labels[i].key, key) == 0)
			return t->labels[i].value;
	return NULL;
}

bool selector_match(const ws_selector *s, const ws_fleet *f, const ws_tenant *t)
{
	if (!s)
		return true;
	const ws_cluster *c = f && t->cluster_index < f->n_clusters ? &f->clusters[t->cluster_index] : NULL;
	if (s->has_slugs && !in_list(s->slugs, s->n_slugs, t->slug))
		return false;
	if (s->has_clusters && !in_list(s->clusters, s->n_clusters, t->cluster))
		return false;
	if (s->has_regions && !(c && in_list(s->regions, s->n_regions, c->region)))
		return false;
	if (s->has_hosting && !(c && s->hosting[c->hosting]))
		return false;
	if (s->has_criticality && !s->criticality[t->criticality])
		return false;
	for (size_t i = 0; i < s->n_labels; i++) {
		const char *val = tenant_label(t, s->labels[i].key);
		if (!in_list(s->labels[i].values, s->labels[i].n_values, val))
			return false;
	}
	if (s->not_ && selector_match(s->not_, f, t))
		return false;
	return true;
}

static json_t *sorted_array(const char *const *list, size_t n)
{
	size_t k;
	const char **sorted = ws_sorted_strings(list, n, &k);
	json_t *a = json_array();
	for (size_t i = 0; sorted && i < k; i++)
		json_array_append_new(a, json_string(sorted[i]));
	free(sorted);
	return a;
}

static int label_cmp(const void *a, const void *b)
{
	const struct ws_selector_label *x = *(const struct ws_selector_label *const *)a;
	const struct ws_selector_label *y = *(const struct ws_selector_label *const *)b;
	return strcmp(x->key, y->key);
}

/* Canonical form: keys in the order of policy.md, every list a sorted JSON
 * array (hosting and criticality in their documented order), labels sorted
 * by key. */
json_t *selector_to_json(const ws_selector *s)
{
	static const ws_criticality crit_order[] = {
		CRIT_CRITICAL, CRIT_HIGH, CRIT_STANDARD, CRIT_LOW,
	};
	if (!s)
		return NULL;
	json_t *o = json_object();
	if (s->has_slugs)
		json_object_set_new(o, "slugs", sorted_array(s->slugs, s->n_slugs));
	if (s->has_clusters)
		json_object_set_new(o, "clusters", sorted_array(s->clusters, s->n_clusters));
	if (s->has_hosting) {
		json_t *a = json_array();
		for (int h = HOSTING_SHARED; h <= HOSTING_DEDICATED; h++)
			if (s->hosting[h])
				json_array_append_new(a, json_string(ws_hosting_name((ws_hosting)h)));
		json_object_set_new(o, "hosting", a);
	}
	if (s->has_criticality) {
		json_t *a = json_array();
		for (size_t i = 0; i < 4; i++)
			if (s->criticality[crit_order[i]])
				json_array_append_new(a, json_string(ws_criticality_name(crit_order[i])));
		json_object_set_new(o, "criticality", a);
	}
	if (s->n_labels) {
		json_t *l = json_object();
		const struct ws_selector_label **byname = malloc(s->n_labels * sizeof(*byname));
		for (size_t i = 0; byname && i < s->n_labels; i++)
			byname[i] = &s->labels[i];
		if (byname)
			qsort(byname, s->n_labels, sizeof(*byname), label_cmp);
		for (size_t i = 0; byname && i < s->n_labels; i++)
			json_object_set_new(l, byname[i]->key,
					    sorted_array(byname[i]->values, byname[i]->n_values));
		free(byname);
		json_object_set_new(o, "labels", l);
	}
	if (s->has_regions)
		json_object_set_new(o, "regions", sorted_array(s->regions, s->n_regions));
	if (s->not_)
		json_object_set_new(o, "not", selector_to_json(s->not_));
	return o;
}
