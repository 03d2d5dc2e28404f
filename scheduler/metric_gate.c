/*
 * metric_gate.c - the pure parts of the metric gate (see metric_gate.h):
 * query templates, query URLs, Prometheus answers, bounds, and the
 * per-rollout cache of results.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include "metric_gate.h"
#include "wavesched/window.h"

#define US 1000000LL

/* A value put inside a PromQL string literal: `tenant="{slug}"` must stay
 * one literal whatever the slug holds. */
static void put_literal(FILE *fp, const char *s)
{
	for (; s && *s; s++) {
		if (*s == '\\' || *s == '"' || *s == '\'')
			fputc('\\', fp);
		fputc(*s, fp);
	}
}

char *metric_query_expand(const char *tmpl, const char *slug, const char *cluster,
			  const char *version)
{
	static const struct { const char *name; size_t len; } vars[] = {
		{ "{slug}", 6 }, { "{cluster}", 9 }, { "{version}", 9 },
	};
	const char *vals[] = { slug, cluster, version };
	char *out = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&out, &len);
	if (!fp)
		return NULL;
	for (const char *c = tmpl ? tmpl : ""; *c;) {
		size_t i = 0;
		while (i < 3 && strncmp(c, vars[i].name, vars[i].len) != 0)
			i++;
		if (i < 3) {
			put_literal(fp, vals[i]);
			c += vars[i].len;
		} else {
			fputc(*c++, fp);
		}
	}
	if (fclose(fp) != 0) {
		free(out);
		return NULL;
	}
	return out;
}

char *metric_query_url(const char *base, const char *query)
{
	size_t bl = strlen(base);
	while (bl > 0 && base[bl - 1] == '/')
		bl--;
	char *q = curl_easy_escape(NULL, query ? query : "", 0);
	if (!q)
		return NULL;
	size_t n = bl + strlen("/api/v1/query?query=") + strlen(q) + 1;
	char *url = malloc(n);
	if (url)
		snprintf(url, n, "%.*s/api/v1/query?query=%s", (int)bl, base, q);
	curl_free(q);
	return url;
}

/* Prometheus's [unix_time, "value"] pair: the value string, or NULL. */
static json_t *pair_value(json_t *pair)
{
	json_t *v = json_array_get(pair, 1);
	return json_is_array(pair) && json_array_size(pair) == 2 &&
	       json_is_number(json_array_get(pair, 0)) && json_is_string(v) ? v : NULL;
}

static int parse_data(json_t *data, json_t *out, char *why, size_t n)
{
	const char *type = json_string_value(json_object_get(data, "resultType"));
	json_t *result = json_object_get(data, "result");
	if (!type) {
		snprintf(why, n, "no resultType in the answer");
		return -1;
	}
	if (strcmp(type, "scalar") == 0) {
		json_t *v = pair_value(result);
		if (!v) {
			snprintf(why, n, "the scalar result is not [time, \"value\"]");
			return -1;
		}
		json_array_append_new(out, json_pack("{s:O}", "value", v));
		return 0;
	}
	if (strcmp(type, "vector") != 0) {
		snprintf(why, n, "resultType \"%.32s\" (expected vector or scalar)", type);
		return -1;
	}
	if (!json_is_array(result)) {
		snprintf(why, n, "the vector result is not an array");
		return -1;
	}
	size_t i;
	json_t *s;
	json_array_foreach(result, i, s) {
		json_t *labels = json_object_get(s, "metric");
		json_t *v = pair_value(json_object_get(s, "value"));
		if (!json_is_object(s) || (labels && !json_is_object(labels))) {
			snprintf(why, n, "sample %zu is not {metric, value}", i + 1);
			return -1;
		}
		if (!v) {
			snprintf(why, n, "sample %zu has no [time, \"value\"]", i + 1);
			return -1;
		}
		json_t *o = json_pack("{s:O}", "value", v);
		json_object_set_new(o, "metric", labels ? json_incref(labels) : json_object());
		json_array_append_new(out, o);
	}
	return 0;
}

int metric_answer_parse(const char *body, size_t len, json_t **samples, char *why, size_t n)
{
	json_error_t jerr;
	json_t *doc = json_loadb(body ? body : "", body ? len : 0, JSON_REJECT_DUPLICATES, &jerr);
	if (!doc) {
		snprintf(why, n, "not JSON: %s at line %d, column %d", jerr.text, jerr.line,
			 jerr.column);
		return -1;
	}
	int rc = -1;
	json_t *out = NULL;
	const char *status = json_string_value(json_object_get(doc, "status"));
	json_t *data = json_object_get(doc, "data");
	if (!json_is_object(doc)) {
		snprintf(why, n, "not a JSON object");
	} else if (!status) {
		snprintf(why, n, "no status in the answer");
	} else if (strcmp(status, "success") != 0) {
		const char *et = json_string_value(json_object_get(doc, "errorType"));
		const char *er = json_string_value(json_object_get(doc, "error"));
		snprintf(why, n, "status \"%.32s\": %.40s: %.200s", status, et ? et : "-",
			 er ? er : "no error given");
	} else if (!json_is_object(data)) {
		snprintf(why, n, "no data in the answer");
	} else if (!(out = json_array())) {
		snprintf(why, n, "out of memory");
	} else if (parse_data(data, out, why, n) == 0) {
		*samples = out;
		out = NULL;
		rc = 0;
	}
	json_decref(out);
	json_decref(doc);
	return rc;
}

/* `{k="v",...}` of a sample, for messages: which series was wrong. */
static void labels_text(const json_t *s, char *buf, size_t n)
{
	const json_t *m = json_object_get(s, "metric");
	size_t at = 0;
	const char *k;
	json_t *v;
	buf[0] = '\0';
	if (!json_is_object(m))
		return;
	at += (size_t)snprintf(buf, n, "{");
	bool first = true;
	json_object_foreach((json_t *)m, k, v) {
		if (at >= n)
			break;
		at += (size_t)snprintf(buf + at, n - at, "%s%s=\"%s\"", first ? "" : ",", k,
				       json_is_string(v) ? json_string_value(v) : "?");
		first = false;
	}
	if (at < n)
		snprintf(buf + at, n - at, "}");
}

bool metric_samples_judge(const json_t *samples, bool has_min, double min, bool has_max,
			  double max, char *why, size_t n)
{
	if (json_array_size(samples) == 0) {
		snprintf(why, n, "empty result (no series matched)");
		return false;
	}
	size_t i;
	json_t *s;
	json_array_foreach((json_t *)samples, i, s) {
		char lab[160];
		labels_text(s, lab, sizeof(lab));
		const char *text = json_string_value(json_object_get(s, "value"));
		char *end;
		double v = text ? strtod(text, &end) : 0;
		if (!text || end == text || *end) {
			snprintf(why, n, "sample %s value \"%.40s\" is not a number", lab[0] ? lab : "",
				 text ? text : "");
			return false;
		}
		if (isnan(v) || isinf(v)) {
			snprintf(why, n, "sample %s is %s", lab[0] ? lab : "(scalar)",
				 isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf");
			return false;
		}
		if (has_min && v < min) {
			snprintf(why, n, "sample %s = %s is below min %g", lab[0] ? lab : "(scalar)", text,
				 min);
			return false;
		}
		if (has_max && v > max) {
			snprintf(why, n, "sample %s = %s is above max %g", lab[0] ? lab : "(scalar)", text,
				 max);
			return false;
		}
	}
	return true;
}

/* Cache ---------------------------------------------------------------------- */

typedef struct mentry {
	int64_t dep_id;
	char *name;
	em_metric_status st;     /* reason points to an owned copy */
	json_t *evidence;
} mentry;

typedef struct mrecord {
	int64_t dep_id;
	const char *result;      /* a literal */
} mrecord;

struct metric_cache {
	mentry *e;
	size_t n, cap;
	mrecord *r;
	size_t nr, capr;
};

static mentry *find(const metric_cache *c, int64_t dep_id, const char *name)
{
	for (size_t i = 0; c && i < c->n; i++)
		if (c->e[i].dep_id == dep_id && strcmp(c->e[i].name, name) == 0)
			return &c->e[i];
	return NULL;
}

static json_t *time_json(int64_t us)
{
	char b[40];
	if (us == EM_NONE)
		return json_null();
	ws_time_format(us / US, 0, true, b, sizeof(b));
	return json_string(b);
}

bool metric_cache_put(metric_cache **cp, int64_t dep_id, const char *name, int64_t at, bool ok,
		      const char *reason, const json_t *evidence, int64_t max_gap_us)
{
	if (!*cp && !(*cp = calloc(1, sizeof(**cp))))
		return false;
	metric_cache *c = *cp;
	mentry *m = find(c, dep_id, name);
	bool unbroken = m && m->st.ok && m->st.ok_since != EM_NONE &&
			(max_gap_us <= 0 || at - m->st.checked_at <= max_gap_us);
	int64_t since = ok ? (unbroken ? m->st.ok_since : at) : EM_NONE;
	char *why = reason && !ok ? strdup(reason) : NULL;
	json_t *ev = evidence ? json_deep_copy(evidence) : json_object();
	if ((reason && !ok && !why) || !ev)
		goto oom;
	if (!m) {
		if (c->n == c->cap) {
			size_t cap = c->cap ? c->cap * 2 : 8;
			mentry *e = realloc(c->e, cap * sizeof(*e));
			if (!e)
				goto oom;
			c->e = e;
			c->cap = cap;
		}
		char *nm = strdup(name);
		if (!nm)
			goto oom;
		m = &c->e[c->n++];
		memset(m, 0, sizeof(*m));
		m->dep_id = dep_id;
		m->name = nm;
	}
	json_object_set_new(ev, "ok", json_boolean(ok));
	json_object_set_new(ev, "checked_at", time_json(at));
	json_object_set_new(ev, "ok_since", time_json(since));
	if (why)
		json_object_set_new(ev, "reason", json_string(why));
	free((char *)m->st.reason);
	json_decref(m->evidence);
	m->st = (em_metric_status){ .checked_at = at, .ok = ok, .ok_since = since, .reason = why };
	m->evidence = ev;
	return true;
oom:
	free(why);
	json_decref(ev);
	return false;
}

const em_metric_status *metric_cache_get(const metric_cache *c, int64_t dep_id, const char *name)
{
	mentry *m = find(c, dep_id, name);
	return m ? &m->st : NULL;
}

const json_t *metric_cache_evidence(const metric_cache *c, int64_t dep_id, const char *name)
{
	mentry *m = find(c, dep_id, name);
	return m ? m->evidence : NULL;
}

const char *metric_cache_recorded(const metric_cache *c, int64_t dep_id)
{
	for (size_t i = 0; c && i < c->nr; i++)
		if (c->r[i].dep_id == dep_id)
			return c->r[i].result;
	return NULL;
}

void metric_cache_set_recorded(metric_cache *c, int64_t dep_id, const char *result)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nr; i++)
		if (c->r[i].dep_id == dep_id) {
			c->r[i].result = result;
			return;
		}
	if (c->nr == c->capr) {
		size_t cap = c->capr ? c->capr * 2 : 8;
		mrecord *r = realloc(c->r, cap * sizeof(*r));
		if (!r)
			return;   /* a second row for the same verdict at worst */
		c->r = r;
		c->capr = cap;
	}
	c->r[c->nr++] = (mrecord){ .dep_id = dep_id, .result = result };
}

void metric_cache_free(metric_cache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++) {
		free(c->e[i].name);
		free((char *)c->e[i].st.reason);
		json_decref(c->e[i].evidence);
	}
	free(c->e);
	free(c->r);
	free(c);
}

/* Judging --------------------------------------------------------------------- */

int metric_gate_judge(const json_t *metrics,
		      const em_metric_status *(*lookup)(void *arg, const char *name), void *arg,
		      int64_t at, char *why, size_t n)
{
	size_t i;
	json_t *m;
	json_array_foreach((json_t *)metrics, i, m) {
		const char *name = json_string_value(json_object_get(m, "name"));
		if (!name || !lookup || !lookup(arg, name)) {
			snprintf(why, n, "metric %s: not evaluated yet", name ? name : "?");
			return -1;
		}
	}
	json_array_foreach((json_t *)metrics, i, m) {
		const char *name = json_string_value(json_object_get(m, "name"));
		const em_metric_status *st = lookup(arg, name);
		int64_t for_s = json_integer_value(json_object_get(m, "for_s"));
		if (!st->ok) {
			snprintf(why, n, "%s", st->reason ? st->reason : "not ok");
			return 0;
		}
		if (st->ok_since == EM_NONE || at - st->ok_since < for_s * US) {
			char held[32], need[32];
			int64_t h = st->ok_since == EM_NONE || at < st->ok_since ? 0
				    : (at - st->ok_since) / US;
			ws_duration_format(h, held, sizeof(held));
			ws_duration_format(for_s, need, sizeof(need));
			snprintf(why, n, "metric %s: within bounds for %s of the %s it must hold", name,
				 h ? held : "0s", need);
			return 0;
		}
	}
	return 1;
}
