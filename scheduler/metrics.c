/*
 * metrics.c - a small Prometheus registry (see include/wavesched/metrics.h).
 *
 * Families live in an array kept sorted by name, and each family's series in
 * an array kept sorted by label string, so lookups are binary searches and
 * rendering is deterministic without a sort.  The registry is capped
 * (families, series per family, name/label/help lengths, buckets) so that a
 * label with unbounded values cannot eat the process; what exceeds a cap is
 * dropped with a warning.
 *
 * Text format 0.0.4: "# HELP", "# TYPE", then one line per sample; a
 * histogram renders cumulative `_bucket{...,le="..."}` lines ending with
 * le="+Inf", then `_sum` and `_count`.
 */
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "wavesched/metrics.h"
#include "wavesched/log.h"

#define METRICS_SUBSYS "metrics"
#define METRICS_MAX_FAMILIES 1024
#define METRICS_MAX_SERIES 10000
#define METRICS_MAX_NAME 200
#define METRICS_MAX_LABELS 1024
#define METRICS_MAX_HELP 1024
#define METRICS_MAX_BUCKETS 64

typedef enum { M_COUNTER, M_GAUGE, M_HISTOGRAM } metric_type;

static const char *const metric_type_names[] = { "counter", "gauge", "histogram" };

typedef struct series {
	char *labels;
	double value;        /* counter, gauge */
	double sum;          /* histogram */
	uint64_t count;      /* histogram */
	uint64_t *buckets;   /* histogram: cumulative counts, one per bound */
} series;

typedef struct family {
	char *name;
	char *help;
	metric_type type;
	double *bounds;
	size_t n_bounds;
	series *series;
	size_t n_series;
	size_t cap_series;
	bool full_warned;
} family;

struct ws_metrics {
	family *fams;
	size_t n_fams;
	size_t cap_fams;
};

ws_metrics *ws_metrics_new(void)
{
	return calloc(1, sizeof(ws_metrics));
}

static void family_free(family *f)
{
	for (size_t i = 0; i < f->n_series; i++) {
		free(f->series[i].labels);
		free(f->series[i].buckets);
	}
	free(f->series);
	free(f->bounds);
	free(f->name);
	free(f->help);
}

void ws_metrics_free(ws_metrics *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n_fams; i++)
		family_free(&m->fams[i]);
	free(m->fams);
	free(m);
}

static bool name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > METRICS_MAX_NAME)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		bool alpha = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' ||
			     ch == ':';
		if (!alpha && (i == 0 || ch < '0' || ch > '9'))
			return false;
	}
	return true;
}

/* Labels arrive rendered ("a=\"x\",b=\"y\""); we only refuse what would
 * break the line structure of the exposition. */
/* A label string such as `route="/v1/tenants/{slug}",status="200"`: no
 * newline, and braces only inside quoted values (where the exposition
 * format allows anything but an unescaped quote, backslash or newline). */
static bool labels_ok(const char *s)
{
	if (strlen(s) > METRICS_MAX_LABELS)
		return false;
	bool quoted = false;
	for (const char *p = s; *p; p++) {
		if (*p == '\n')
			return false;
		if (quoted && *p == '\\' && p[1]) {
			p++;
			continue;
		}
		if (*p == '"')
			quoted = !quoted;
		else if (!quoted && (*p == '{' || *p == '}'))
			return false;
	}
	return !quoted;
}

/* Binary search in an array of `n` structs of `size` bytes sorted by the
 * string each holds at `key_off`; returns the index where `key` is or would
 * be inserted.  Families and series are both kept this way. */
static size_t find_sorted(const void *base, size_t n, size_t size, size_t key_off,
			  const char *key, bool *found)
{
	const char *p = base;
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const char *k;
		memcpy(&k, p + mid * size + key_off, sizeof(k));
		int c = strcmp(k, key);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static size_t find_family(const ws_metrics *m, const char *name, bool *found)
{
	return find_sorted(m->fams, m->n_fams, sizeof(*m->fams), offsetof(family, name), name, found);
}

static size_t find_series(const family *f, const char *labels, bool *found)
{
	return find_sorted(f->series, f->n_series, sizeof(*f->series), offsetof(series, labels),
			   labels, found);
}

/* Room for one more of `n` elements of `size` bytes in `arr` (capacity
 * *cap, doubled from `first`): returns the array, moved or not, or NULL when
 * memory runs out (then `arr` is still valid and unchanged). */
static void *grow_for_one(void *arr, size_t n, size_t *cap, size_t size, size_t first)
{
	if (n < *cap)
		return arr;
	size_t ncap = *cap ? *cap * 2 : first;
	void *p = realloc(arr, ncap * size);
	if (p)
		*cap = ncap;
	return p;
}

/* Finds or creates the family; NULL (with a warning) when the name or the
 * label string is unusable, so nothing is created for a refused sample. */
static family *get_family(ws_metrics *m, const char *name, const char *help,
			  const char *labels, metric_type type)
{
	if (!m || !name || !name_ok(name)) {
		ws_warn(METRICS_SUBSYS, "invalid metric name \"%s\"; ignored", name ? name : "(null)");
		return NULL;
	}
	if (!labels_ok(labels)) {
		ws_warn(METRICS_SUBSYS, "metric %s: invalid or too long label string; ignored", name);
		return NULL;
	}
	bool found;
	size_t i = find_family(m, name, &found);
	if (found) {
		if (m->fams[i].type != type) {
			ws_warn(METRICS_SUBSYS, "metric %s is a %s, not a %s; ignored", name,
				metric_type_names[m->fams[i].type], metric_type_names[type]);
			return NULL;
		}
		return &m->fams[i];
	}
	if (m->n_fams >= METRICS_MAX_FAMILIES) {
		ws_warn(METRICS_SUBSYS, "more than %d metric families; %s ignored",
			METRICS_MAX_FAMILIES, name);
		return NULL;
	}
	family *fams = grow_for_one(m->fams, m->n_fams, &m->cap_fams, sizeof(*fams), 16);
	if (!fams)
		return NULL;
	m->fams = fams;
	family f = { 0 };
	f.type = type;
	f.name = strdup(name);
	f.help = strndup(help ? help : "", METRICS_MAX_HELP);
	if (!f.name || !f.help) {
		free(f.name);
		free(f.help);
		return NULL;
	}
	memmove(&m->fams[i + 1], &m->fams[i], (m->n_fams - i) * sizeof(*m->fams));
	m->fams[i] = f;
	m->n_fams++;
	return &m->fams[i];
}

static series *get_series(family *f, const char *labels)
{
	bool found;
	size_t i = find_series(f, labels, &found);
	if (found)
		return &f->series[i];
	if (f->n_series >= METRICS_MAX_SERIES) {
		if (!f->full_warned)
			ws_warn(METRICS_SUBSYS, "metric %s: more than %d series; new ones dropped",
				f->name, METRICS_MAX_SERIES);
		f->full_warned = true;
		return NULL;
	}
	series *grown = grow_for_one(f->series, f->n_series, &f->cap_series, sizeof(*grown), 8);
	if (!grown)
		return NULL;
	f->series = grown;
	series s = { 0 };
	s.labels = strdup(labels);
	if (!s.labels)
		return NULL;
	if (f->type == M_HISTOGRAM && f->n_bounds > 0) {
		s.buckets = calloc(f->n_bounds, sizeof(*s.buckets));
		if (!s.buckets) {
			free(s.labels);
			return NULL;
		}
	}
	memmove(&f->series[i + 1], &f->series[i], (f->n_series - i) * sizeof(*f->series));
	f->series[i] = s;
	f->n_series++;
	return &f->series[i];
}

void ws_metrics_counter_add(ws_metrics *m, const char *name, const char *help,
			    const char *labels, double v)
{
	if (!(v >= 0)) {   /* also refuses NaN */
		ws_warn(METRICS_SUBSYS, "counter %s: cannot add %g; ignored", name ? name : "", v);
		return;
	}
	labels = labels ? labels : "";
	family *f = get_family(m, name, help, labels, M_COUNTER);
	series *s = f ? get_series(f, labels) : NULL;
	if (s)
		s->value += v;
}

void ws_metrics_gauge_set(ws_metrics *m, const char *name, const char *help, const char *labels,
			  double v)
{
	labels = labels ? labels : "";
	family *f = get_family(m, name, help, labels, M_GAUGE);
	series *s = f ? get_series(f, labels) : NULL;
	if (s)
		s->value = v;
}

static bool bounds_ok(const double *b, size_t n)
{
	if (n > METRICS_MAX_BUCKETS || (n > 0 && !b))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!isfinite(b[i]) || (i > 0 && !(b[i] > b[i - 1])))
			return false;
	}
	return true;
}

/* The series of a histogram family, the family made on first use with
 * `buckets` (then fixed). */
static series *histogram_series(ws_metrics *m, const char *name, const char *help, const char *labels,
				const double *buckets, size_t n_buckets, const family **fam)
{
	bool found = false;
	if (m && name)
		find_family(m, name, &found);
	if (!found && !bounds_ok(buckets, n_buckets)) {
		ws_warn(METRICS_SUBSYS,
			"histogram %s: buckets must be ascending finite numbers (at most %d); ignored",
			name ? name : "", METRICS_MAX_BUCKETS);
		return NULL;
	}
	family *f = get_family(m, name, help, labels, M_HISTOGRAM);
	if (!f)
		return NULL;
	if (!found && n_buckets > 0) {
		f->bounds = malloc(n_buckets * sizeof(*f->bounds));
		if (!f->bounds)
			return NULL;
		memcpy(f->bounds, buckets, n_buckets * sizeof(*f->bounds));
		f->n_bounds = n_buckets;
	}
	*fam = f;
	return get_series(f, labels);
}

void ws_metrics_histogram_observe(ws_metrics *m, const char *name, const char *help,
				  const char *labels, const double *buckets, size_t n_buckets,
				  double v)
{
	if (isnan(v))
		return;
	const family *f = NULL;
	series *s = histogram_series(m, name, help, labels ? labels : "", buckets, n_buckets, &f);
	if (!s)
		return;
	for (size_t i = 0; i < f->n_bounds; i++) {
		if (v <= f->bounds[i])
			s->buckets[i]++;
	}
	s->count++;
	s->sum += v;
}

void ws_metrics_histogram_set(ws_metrics *m, const char *name, const char *help, const char *labels,
			      const double *buckets, size_t n_buckets, const uint64_t *cumulative,
			      uint64_t count, double sum)
{
	const family *f = NULL;
	series *s = histogram_series(m, name, help, labels ? labels : "", buckets, n_buckets, &f);
	if (!s)
		return;
	if (f->n_bounds != n_buckets) {
		ws_warn(METRICS_SUBSYS, "histogram %s: set with %zu buckets, the family has %zu; ignored",
			name, n_buckets, f->n_bounds);
		return;
	}
	memcpy(s->buckets, cumulative, n_buckets * sizeof(*s->buckets));
	s->count = count;
	s->sum = sum;
}

void ws_metrics_counter_set(ws_metrics *m, const char *name, const char *help, const char *labels,
			    double v)
{
	if (!(v >= 0)) {
		ws_warn(METRICS_SUBSYS, "counter %s: cannot be %g; ignored", name ? name : "", v);
		return;
	}
	labels = labels ? labels : "";
	family *f = get_family(m, name, help, labels, M_COUNTER);
	series *s = f ? get_series(f, labels) : NULL;
	if (s)
		s->value = v;
}

/* Shortest text that reads back as the same double; Prometheus spellings
 * for the special values. */
static void fmt_double(char *buf, size_t size, double v)
{
	if (isnan(v)) {
		snprintf(buf, size, "NaN");
	} else if (isinf(v)) {
		snprintf(buf, size, v > 0 ? "+Inf" : "-Inf");
	} else {
		snprintf(buf, size, "%.15g", v);
		if (strtod(buf, NULL) != v)
			snprintf(buf, size, "%.17g", v);
	}
}

static void put_help(FILE *out, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\\\", out);
		else if (*s == '\n')
			fputs("\\n", out);
		else
			fputc(*s, out);
	}
}

static void put_family(FILE *out, const family *f)
{
	char num[64];
	fprintf(out, "# HELP %s ", f->name);
	put_help(out, f->help);
	fprintf(out, "\n# TYPE %s %s\n", f->name, metric_type_names[f->type]);
	for (size_t i = 0; i < f->n_series; i++) {
		const series *s = &f->series[i];
		const char *l = s->labels;
		bool has = l[0] != '\0';
		if (f->type != M_HISTOGRAM) {
			fmt_double(num, sizeof(num), s->value);
			if (has)
				fprintf(out, "%s{%s} %s\n", f->name, l, num);
			else
				fprintf(out, "%s %s\n", f->name, num);
			continue;
		}
		for (size_t b = 0; b <= f->n_bounds; b++) {
			char le[64];
			uint64_t n = b < f->n_bounds ? s->buckets[b] : s->count;
			if (b < f->n_bounds)
				fmt_double(le, sizeof(le), f->bounds[b]);
			else
				snprintf(le, sizeof(le), "+Inf");
			fprintf(out, "%s_bucket{%s%sle=\"%s\"} %" PRIu64 "\n", f->name, l,
				has ? "," : "", le, n);
		}
		fmt_double(num, sizeof(num), s->sum);
		if (has) {
			fprintf(out, "%s_sum{%s} %s\n", f->name, l, num);
			fprintf(out, "%s_count{%s} %" PRIu64 "\n", f->name, l, s->count);
		} else {
			fprintf(out, "%s_sum %s\n", f->name, num);
			fprintf(out, "%s_count %" PRIu64 "\n", f->name, s->count);
		}
	}
}

char *ws_metrics_render(const ws_metrics *m, size_t *len)
{
	char *buf = NULL;
	size_t n = 0;
	FILE *out = open_memstream(&buf, &n);
	if (!out)
		goto fail;
	for (size_t i = 0; m && i < m->n_fams; i++)
		put_family(out, &m->fams[i]);
	if (ferror(out)) {
		fclose(out);
		goto fail;
	}
	if (fclose(out) != 0)
		goto fail;
	if (len)
		*len = n;
	return buf;

fail:
	free(buf);
	if (len)
		*len = 0;
	return NULL;
}

void ws_metrics_escape(const char *in, char *buf, size_t size)
{
	if (!buf || size == 0)
		return;
	size_t j = 0;
	for (; in && *in; in++) {
		const char *rep = NULL;
		char one[2] = { *in, '\0' };
		if (*in == '\\')
			rep = "\\\\";
		else if (*in == '"')
			rep = "\\\"";
		else if (*in == '\n')
			rep = "\\n";
		else
			rep = one;
		size_t rl = strlen(rep);
		if (j + rl >= size)
			break;   /* never split an escape */
		memcpy(buf + j, rep, rl);
		j += rl;
	}
	buf[j] = '\0';
}
