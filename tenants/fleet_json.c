/*
 * fleet_json.c - the canonical JSON of a fleet, and JSON -> YAML.
 *
 * The canonical form (described in fleet.h) is what the database stores and
 * what export prints, so it must be a fixed point: reading it back and
 * writing it again gives the same bytes.  Objects are built in the key
 * order of spec/fleet.md (jansson keeps insertion order), so the YAML that
 * ws_json_to_yaml emits reads like the spec's example; labels and lists
 * that have no meaningful order are sorted.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>
#include "fleet_internal.h"

json_t *fleet_window_to_json(const ws_window *w)
{
	json_t *o = json_object();
	char buf[64];
	if (w->one_off) {
		ws_time_format(w->from_utc, 0, true, buf, sizeof(buf));
		json_object_set_new(o, "from", json_string(buf));
		ws_time_format(w->to_utc, 0, true, buf, sizeof(buf));
		json_object_set_new(o, "to", json_string(buf));
		return o;
	}
	json_object_set_new(o, "rrule", json_string(w->rrule));
	json_object_set_new(o, "start", json_string(w->start_text));
	ws_duration_format(w->duration_s, buf, sizeof(buf));
	json_object_set_new(o, "duration", json_string(buf));
	if (w->timezone)
		json_object_set_new(o, "timezone", json_string(w->timezone));
	if (w->anchor)
		json_object_set_new(o, "anchor", json_string(w->anchor));
	return o;
}

static json_t *windows_json(const ws_window *w, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, fleet_window_to_json(&w[i]));
	return a;
}

static int label_cmp(const void *a, const void *b)
{
	return strcmp(((const ws_label *)a)->key, ((const ws_label *)b)->key);
}

static json_t *labels_json(const ws_label *labels, size_t n)
{
	json_t *o = json_object();
	ws_label *sorted = malloc((n ? n : 1) * sizeof(*sorted));
	if (!sorted)
		return o;
	if (n)
		memcpy(sorted, labels, n * sizeof(*sorted));
	qsort(sorted, n, sizeof(*sorted), label_cmp);
	for (size_t i = 0; i < n; i++)
		json_object_set_new(o, sorted[i].key, json_string(sorted[i].value));
	free(sorted);
	return o;
}

json_t *fleet_cluster_to_json(const ws_cluster *c)
{
	json_t *o = json_object();
	json_object_set_new(o, "name", json_string(c->name));
	json_object_set_new(o, "hosting", json_string(ws_hosting_name(c->hosting)));
	if (c->region)
		json_object_set_new(o, "region", json_string(c->region));
	if (c->max_parallel > 0)
		json_object_set_new(o, "max_parallel", json_integer(c->max_parallel));
	json_object_set_new(o, "timezone", json_string(c->timezone));
	json_object_set_new(o, "labels", labels_json(c->labels, c->n_labels));
	json_object_set_new(o, "windows", windows_json(c->windows, c->n_windows));
	if (c->deploy)
		json_object_set_new(o, "deploy", json_deep_copy(c->deploy));
	return o;
}

json_t *fleet_tenant_to_json(const ws_fleet *f, const ws_tenant *t)
{
	(void)f;   /* every field is in the tenant; kept for future derived fields */
	json_t *o = json_object();
	json_object_set_new(o, "slug", json_string(t->slug));
	json_object_set_new(o, "name", json_string(t->name));
	json_object_set_new(o, "cluster", json_string(t->cluster));
	json_object_set_new(o, "criticality", json_string(ws_criticality_name(t->criticality)));
	json_object_set_new(o, "timezone", json_string(t->timezone));
	json_object_set_new(o, "labels", labels_json(t->labels, t->n_labels));
	size_t n;
	const char **deps = ws_sorted_strings(t->depends_on, t->n_depends_on, &n);
	json_t *a = json_array();
	for (size_t i = 0; deps && i < n; i++)
		json_array_append_new(a, json_string(deps[i]));
	free(deps);
	json_object_set_new(o, "depends_on", a);
	if (t->health_url)
		json_object_set_new(o, "health_url", json_string(t->health_url));
	if (t->version)
		json_object_set_new(o, "version", json_string(t->version));
	json_object_set_new(o, "windows", windows_json(t->windows, t->n_windows));
	json_object_set_new(o, "frozen", json_boolean(t->frozen));
	return o;
}

json_t *fleet_calendar_to_json(const ws_calendar *c)
{
	json_t *o = json_object();
	json_object_set_new(o, "name", json_string(c->name));
	json_object_set_new(o, "hard", json_boolean(c->hard));
	if (c->applies_to)
		json_object_set_new(o, "applies_to", selector_to_json(c->applies_to));
	json_object_set_new(o, "occurrences", windows_json(c->occurrences, c->n_occurrences));
	return o;
}

/* Index arrays sorted by a name, for the canonical order of each list. */
typedef struct name_idx {
	const char *name;
	size_t i;
} name_idx;

static int name_idx_cmp(const void *a, const void *b)
{
	const name_idx *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	return c ? c : (x->i > y->i) - (x->i < y->i);
}

static name_idx *sorted_by_name(size_t n, const void *base, size_t stride, size_t name_off)
{
	name_idx *idx = malloc((n ? n : 1) * sizeof(*idx));
	if (!idx)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		idx[i].name = *(const char *const *)((const char *)base + i * stride + name_off);
		idx[i].i = i;
	}
	qsort(idx, n, sizeof(*idx), name_idx_cmp);
	return idx;
}

json_t *fleet_to_json(const ws_fleet *f)
{
	json_t *o = json_object();
	json_object_set_new(o, "apiVersion", json_string("wavesched/v1"));
	json_object_set_new(o, "kind", json_string("Fleet"));

	json_t *a = json_array();
	name_idx *idx = sorted_by_name(f->n_clusters, f->clusters, sizeof(ws_cluster),
				       offsetof(ws_cluster, name));
	for (size_t i = 0; idx && i < f->n_clusters; i++)
		json_array_append_new(a, fleet_cluster_to_json(&f->clusters[idx[i].i]));
	free(idx);
	json_object_set_new(o, "clusters", a);

	a = json_array();
	idx = sorted_by_name(f->n_tenants, f->tenants, sizeof(ws_tenant), offsetof(ws_tenant, slug));
	for (size_t i = 0; idx && i < f->n_tenants; i++)
		json_array_append_new(a, fleet_tenant_to_json(f, &f->tenants[idx[i].i]));
	free(idx);
	json_object_set_new(o, "tenants", a);

	a = json_array();
	idx = sorted_by_name(f->n_calendars, f->calendars, sizeof(ws_calendar),
			     offsetof(ws_calendar, name));
	for (size_t i = 0; idx && i < f->n_calendars; i++)
		json_array_append_new(a, fleet_calendar_to_json(&f->calendars[idx[i].i]));
	free(idx);
	json_object_set_new(o, "calendars", a);
	return o;
}

/* JSON -> YAML ------------------------------------------------------------ */

/*
 * Whether a string can be written as a plain scalar and still read back as
 * the same string by any YAML 1.1 or 1.2 reader.  Deliberately narrow:
 * letters first, then letters, digits, spaces and a few punctuation marks
 * that mean nothing in block context, and none of the words that resolve
 * to null or a boolean.  Everything else is double-quoted.
 */
static bool plain_safe(const char *s, size_t len)
{
	static const char *const words[] = {
		"null", "true", "false", "yes", "no", "on", "off", "y", "n", NULL,
	};
	if (len == 0 || len != strlen(s))
		return false;
	unsigned char c0 = (unsigned char)s[0];
	if (!((c0 >= 'a' && c0 <= 'z') || (c0 >= 'A' && c0 <= 'Z') || c0 == '_'))
		return false;
	if (s[len - 1] == ' ')
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == ' ' || c == '_' || c == '-' ||
			  c == '.' || c == '/' || c == '(' || c == ')' || c == ',';
		if (!ok)
			return false;
	}
	for (size_t i = 0; words[i]; i++)
		if (strcasecmp(s, words[i]) == 0)
			return false;
	return true;
}

typedef struct ybuf {
	char *s;
	size_t len, cap;
	bool failed;
} ybuf;

static int ybuf_write(void *data, unsigned char *buffer, size_t size)
{
	ybuf *b = data;
	if (b->len + size + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + size + 1)
			cap *= 2;
		char *p = realloc(b->s, cap);
		if (!p) {
			b->failed = true;
			return 0;
		}
		b->s = p;
		b->cap = cap;
	}
	memcpy(b->s + b->len, buffer, size);
	b->len += size;
	b->s[b->len] = '\0';
	return 1;
}

static bool emit_scalar(yaml_emitter_t *e, const char *text, size_t len, bool quote)
{
	yaml_event_t ev;
	yaml_scalar_style_t style = quote ? YAML_DOUBLE_QUOTED_SCALAR_STYLE : YAML_PLAIN_SCALAR_STYLE;
	if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)text, (int)len, 1, 1, style))
		return false;
	return yaml_emitter_emit(e, &ev) != 0;
}

static bool emit_string(yaml_emitter_t *e, const char *s, size_t len)
{
	return emit_scalar(e, s, len, !plain_safe(s, len));
}

static bool emit_value(yaml_emitter_t *e, const json_t *v)
{
	yaml_event_t ev;
	char buf[64];
	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		if (!yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE) ||
		    !yaml_emitter_emit(e, &ev))
			return false;
		const char *key;
		json_t *val;
		json_object_foreach((json_t *)v, key, val) {
			if (!emit_string(e, key, strlen(key)) || !emit_value(e, val))
				return false;
		}
		return yaml_mapping_end_event_initialize(&ev) && yaml_emitter_emit(e, &ev);
	}
	case JSON_ARRAY: {
		if (!yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE) ||
		    !yaml_emitter_emit(e, &ev))
			return false;
		size_t i;
		json_t *val;
		json_array_foreach(v, i, val) {
			if (!emit_value(e, val))
				return false;
		}
		return yaml_sequence_end_event_initialize(&ev) && yaml_emitter_emit(e, &ev);
	}
	case JSON_STRING:
		return emit_string(e, json_string_value(v), json_string_length(v));
	case JSON_INTEGER:
		snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return emit_scalar(e, buf, strlen(buf), false);
	case JSON_REAL: {
		/* Shortest text that reads back as the same double, and still
		 * looks like a real rather than an integer. */
		double d = json_real_value(v);
		for (int prec = 15; prec <= 17; prec++) {
			snprintf(buf, sizeof(buf), "%.*g", prec, d);
			if (strtod(buf, NULL) == d)
				break;
		}
		if (!strpbrk(buf, ".eEn"))
			strncat(buf, ".0", sizeof(buf) - strlen(buf) - 1);
		return emit_scalar(e, buf, strlen(buf), false);
	}
	case JSON_TRUE:
		return emit_scalar(e, "true", 4, false);
	case JSON_FALSE:
		return emit_scalar(e, "false", 5, false);
	case JSON_NULL:
		return emit_scalar(e, "null", 4, false);
	}
	return false;
}

char *ws_json_to_yaml(const json_t *doc, size_t *len_out)
{
	if (!doc)
		return NULL;
	yaml_emitter_t e;
	yaml_event_t ev;
	ybuf b = { 0 };
	if (!yaml_emitter_initialize(&e))
		return NULL;
	yaml_emitter_set_output(&e, ybuf_write, &b);
	yaml_emitter_set_unicode(&e, 1);
	yaml_emitter_set_width(&e, -1);
	yaml_emitter_set_indent(&e, 2);
	bool ok = yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) &&
		  yaml_emitter_emit(&e, &ev) &&
		  yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) &&
		  yaml_emitter_emit(&e, &ev) &&
		  emit_value(&e, doc) &&
		  yaml_document_end_event_initialize(&ev, 1) &&
		  yaml_emitter_emit(&e, &ev) &&
		  yaml_stream_end_event_initialize(&ev) &&
		  yaml_emitter_emit(&e, &ev) &&
		  yaml_emitter_flush(&e);
	yaml_emitter_delete(&e);
	if (!ok || b.failed || !b.s) {
		free(b.s);
		return NULL;
	}
	if (len_out)
		*len_out = b.len;
	return b.s;
}
