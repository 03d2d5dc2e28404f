/*
 * policy_settings.c - the settings a wave inherits from `defaults` and may
 * override: soak, the per-cluster cap, the gates and the failure budget
 * (spec/policy.md, spec/engine.md "Gates").
 *
 * Inheritance is field by field, within a gate too: a wave that writes
 * `gates: {approval: {min: 2}}` keeps the default roles, and a wave that
 * writes `health: {interval: 60s}` keeps every other health field.  A gate
 * is on when `defaults` or the wave names it; nothing turns it off again
 * (a wave cannot quietly drop a backup gate the policy asked for).
 *
 * The two lists (attestations, metrics) are fields too: a wave that writes
 * one replaces the inherited list whole, so that a wave can name exactly
 * the attestations it needs.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "policy_internal.h"

#define MAX_PARALLEL_LIMIT 10000
#define MAX_FAILED_LIMIT 100000
#define APPROVAL_MIN_LIMIT 20

static const char *const gates_keys[] = {
	"backup", "health", "approval", "attestations", "metrics", NULL,
};
static const char *const backup_keys[] = {
	"max_age", "require_restore_verified", "source", "url", NULL,
};
static const char *const health_keys[] = {
	"interval", "timeout", "consecutive_successes", "max_consecutive_failures",
	"max_latency_ms", "latency_regression", NULL,
};
static const char *const approval_keys[] = { "min", "roles", NULL };
static const char *const failure_keys[] = { "max_failed", "action", NULL };
static const char *const metric_keys[] = { "name", "query", "min", "max", "for", NULL };

/* The roles of api.md that may approve a wave; `tenant` and `viewer` are
 * read-only and never can. */
static const char *const approver_roles[] = { "admin", "platform", "security", "approver", NULL };
#define APPROVER_ROLES "admin, platform, security, approver"

bool policy_duration(wsv *v, const ynode *n, const char *key, bool zero_ok, int64_t *out)
{
	const char *t = wsv_text(v, n, key);
	if (!t)
		return false;
	int64_t s;
	if (strcmp(t, "0") == 0 && !n->quoted)
		s = 0;
	else if (ws_duration_parse(t, &s) != 0) {
		wsv_error(v, n, "invalid duration \"%s\" (expected e.g. 90s, 30m, 4h, 1d or PT4H)", t);
		return false;
	}
	if (zero_ok && s < 0) {
		wsv_error(v, n, "%s must not be negative", key);
		return false;
	}
	if (!zero_ok && s <= 0) {
		wsv_error(v, n, "%s must be positive", key);
		return false;
	}
	*out = s;
	return true;
}

bool policy_int_range(wsv *v, const ynode *n, const char *key, long long lo, long long hi,
		      long long *out)
{
	long long x;
	if (!wsv_int(v, n, key, &x))
		return false;
	if (x < lo || x > hi) {
		wsv_error(v, n, "%s must be between %lld and %lld, got %lld", key, lo, hi, x);
		return false;
	}
	*out = x;
	return true;
}

static void read_int(wsv *v, const ynode *map, const char *key, long long lo, long long hi,
		     int *out)
{
	const ynode *x = wsv_get(v, map, key, false, NULL);
	long long val;
	if (x && policy_int_range(v, x, key, lo, hi, &val))
		*out = (int)val;
}

/* A plain YAML number (integer or decimal), finite. */
static bool read_number(wsv *v, const ynode *n, const char *key, double *out)
{
	const char *kind = ynode_kind_name(n);
	if (strcmp(kind, "integer") != 0 && strcmp(kind, "number") != 0) {
		wsv_error(v, n, "expected a number for \"%s\", got %s", key, wsv_article(n));
		return false;
	}
	char *end;
	double d = strtod(n->value, &end);
	if (*end || !isfinite(d)) {
		wsv_error(v, n, "expected a finite number for \"%s\", got \"%s\"", key, n->value);
		return false;
	}
	*out = d;
	return true;
}

/* Gates ------------------------------------------------------------------- */

const char *ws_backup_source_name(ws_backup_source s)
{
	return s == WS_BACKUP_HTTP ? "http" : "catalog";
}

#define BACKUP_URL_MAX 2048

/*
 * A status URL template: http or https, {slug} somewhere (the status is per
 * tenant: a URL without it would give every tenant the same answer), no
 * other placeholder than {slug} and {cluster}, no blanks or control
 * characters.  Whether the rest parses as a URL is the outbound layer's
 * business, which refuses it per call with the URL named.
 */
static void check_backup_url(wsv *v, const ynode *n, const char *url)
{
	size_t len = strlen(url);
	if (len > BACKUP_URL_MAX) {
		wsv_error(v, n, "backup url is %zu characters long (at most %d)", len, BACKUP_URL_MAX);
		return;
	}
	if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
		wsv_error(v, n, "invalid backup url \"%s\" (expected http:// or https://)", url);
		return;
	}
	bool slug = false;
	for (const char *c = url; *c; c++) {
		if ((unsigned char)*c <= ' ' || *c == 0x7f) {
			wsv_error(v, n, "invalid backup url \"%s\" (blank or control character at "
				  "offset %zu)", url, (size_t)(c - url));
			return;
		}
		if (*c == '{') {
			if (strncmp(c, "{slug}", 6) == 0) {
				slug = true;
				c += 5;
				continue;
			}
			if (strncmp(c, "{cluster}", 9) == 0) {
				c += 8;
				continue;
			}
		}
		if (*c == '{' || *c == '}') {
			wsv_error(v, n, "invalid backup url \"%s\" (unknown placeholder at offset %zu; "
				  "expected {slug} or {cluster})", url, (size_t)(c - url));
			return;
		}
	}
	if (!slug)
		wsv_error(v, n, "invalid backup url \"%s\" (expected {slug}: the status is per tenant)",
			  url);
}

static void read_backup(wsv *v, const ynode *n, ws_gate_backup *g)
{
	if (!wsv_map(v, n, "backup"))
		return;
	wsv_keys(v, n, backup_keys, "backup gate");
	g->enabled = true;
	const ynode *x = wsv_get(v, n, "max_age", false, NULL);
	if (x)
		policy_duration(v, x, "max_age", false, &g->max_age_s);
	else if (g->max_age_s == 0)
		/* Neither this block nor `defaults` says how fresh a backup must be,
		 * and there is no safe default for that. */
		wsv_error(v, n, "missing required key \"max_age\" in backup gate");
	if ((x = wsv_get(v, n, "require_restore_verified", false, NULL)))
		policy_duration(v, x, "require_restore_verified", false, &g->restore_max_age_s);
	const ynode *src = wsv_get(v, n, "source", false, NULL);
	bool src_ok = true;
	if (src) {
		const char *t = wsv_text(v, src, "source");
		if (t && strcmp(t, "catalog") == 0) {
			g->source = WS_BACKUP_CATALOG;
			g->url = NULL;   /* a wave going back to the catalog drops the template */
		} else if (t && strcmp(t, "http") == 0) {
			g->source = WS_BACKUP_HTTP;
		} else {
			if (t)
				wsv_error(v, src, "invalid backup source \"%s\" (expected catalog or http)", t);
			src_ok = false;
		}
	}
	const ynode *url = wsv_get(v, n, "url", false, NULL);
	if (url) {
		const char *t = wsv_text(v, url, "url");
		if (!t)
			return;
		if (src_ok && g->source != WS_BACKUP_HTTP) {
			wsv_error(v, url, "url is only used with source: http (this backup gate reads "
				  "the catalog)");
			return;
		}
		int before = v->errors;
		check_backup_url(v, url, t);
		if (v->errors == before)
			g->url = t;
		return;
	}
	if (src && src_ok && g->source == WS_BACKUP_HTTP && !g->url)
		wsv_error(v, src, "missing required key \"url\" in backup gate (source: http reads "
			  "a status URL per tenant)");
}

static void read_health(wsv *v, const ynode *n, ws_gate_health *g)
{
	if (!wsv_map(v, n, "health"))
		return;
	wsv_keys(v, n, health_keys, "health gate");
	g->enabled = true;
	int before = v->errors;
	const ynode *interval = wsv_get(v, n, "interval", false, NULL);
	const ynode *timeout = wsv_get(v, n, "timeout", false, NULL);
	if (interval)
		policy_duration(v, interval, "interval", false, &g->interval_s);
	if (timeout)
		policy_duration(v, timeout, "timeout", false, &g->timeout_s);
	/* A probe that may take longer than the interval between probes would
	 * overlap the next one.  Checked on the effective values, at the field
	 * this block wrote (timeout first: it is usually the one too long). */
	if (v->errors == before && (interval || timeout) && g->timeout_s > g->interval_s) {
		char t[32], i[32];
		ws_duration_format(g->timeout_s, t, sizeof(t));
		ws_duration_format(g->interval_s, i, sizeof(i));
		wsv_error(v, timeout ? timeout : interval,
			  "timeout (%s) must not be longer than interval (%s)", t, i);
	}
	read_int(v, n, "consecutive_successes", 1, 100, &g->consecutive_successes);
	read_int(v, n, "max_consecutive_failures", 1, 100, &g->max_consecutive_failures);
	read_int(v, n, "max_latency_ms", 1, 600000, &g->max_latency_ms);
	const ynode *x = wsv_get(v, n, "latency_regression", false, NULL);
	double r;
	if (x && read_number(v, x, "latency_regression", &r)) {
		if (r < 1.0 || r > 100.0)
			wsv_error(v, x, "latency_regression must be between 1 and 100, got %s", x->value);
		else
			g->latency_regression = r;
	}
}

static void read_approval(wsv *v, const ynode *n, ws_gate_approval *g)
{
	if (!wsv_map(v, n, "approval"))
		return;
	wsv_keys(v, n, approval_keys, "approval gate");
	read_int(v, n, "min", 0, APPROVAL_MIN_LIMIT, &g->min);
	const ynode *x = wsv_get(v, n, "roles", false, NULL);
	if (!x || !wsv_seq(v, x, "roles"))
		return;
	if (x->len == 0) {
		wsv_error(v, x, "roles must not be empty (nobody could approve)");
		return;
	}
	const char **roles = ws_arena_alloc(v->a, x->len * sizeof(*roles));
	size_t k = 0;
	for (size_t i = 0; i < x->len; i++) {
		const char *r = wsv_text_in(v, x->items[i], "roles");
		if (!r)
			continue;
		bool known = false, repeated = false;
		for (size_t j = 0; approver_roles[j] && !known; j++)
			known = strcmp(r, approver_roles[j]) == 0;
		for (size_t j = 0; j < k && !repeated; j++)
			repeated = strcmp(r, roles[j]) == 0;
		if (strcmp(r, "tenant") == 0 || strcmp(r, "viewer") == 0)
			wsv_error(v, x->items[i], "role \"%s\" cannot approve (expected one of: "
				  APPROVER_ROLES ")", r);
		else if (!known)
			wsv_error(v, x->items[i], "unknown role \"%s\" (expected one of: "
				  APPROVER_ROLES ")", r);
		else if (repeated)
			wsv_error(v, x->items[i], "duplicate role \"%s\" in roles", r);
		else
			roles[k++] = r;
	}
	g->roles = roles;
	g->n_roles = k;
}

#define ATTESTATION_NAME_MAX 63
#define METRIC_QUERY_MAX 4096

/* Attestation and metric names are words a reason and an API path can
 * carry as they are: [a-z0-9-], like wave names. */
static bool gate_name_ok(const char *t)
{
	size_t n = strlen(t);
	if (n == 0 || n > ATTESTATION_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= '0' && t[i] <= '9') || t[i] == '-'))
			return false;
	return true;
}

static void read_attestations(wsv *v, const ynode *n, ws_wave_settings *s)
{
	if (!wsv_seq(v, n, "attestations"))
		return;
	const char **names = ws_arena_alloc(v->a, (n->len ? n->len : 1) * sizeof(*names));
	size_t k = 0;
	for (size_t i = 0; i < n->len; i++) {
		const char *t = wsv_text_in(v, n->items[i], "attestations");
		if (!t)
			continue;
		bool repeated = false;
		for (size_t j = 0; j < k && !repeated; j++)
			repeated = strcmp(t, names[j]) == 0;
		if (!gate_name_ok(t))
			wsv_error(v, n->items[i], "invalid attestation name \"%s\" (expected 1 to %d "
				  "characters of a-z, 0-9 and -)", t, ATTESTATION_NAME_MAX);
		else if (repeated)
			wsv_error(v, n->items[i], "duplicate attestation \"%s\"", t);
		else
			names[k++] = t;
	}
	s->attestations = names;
	s->n_attestations = k;
}

static bool read_metric(wsv *v, const ynode *n, ws_gate_metric *m)
{
	if (!wsv_map(v, n, NULL))
		return false;
	int before = v->errors;
	wsv_keys(v, n, metric_keys, "metric");
	memset(m, 0, sizeof(*m));
	const ynode *x;
	if ((x = wsv_get(v, n, "name", true, "metric")) && (m->name = wsv_text(v, x, "name")) &&
	    !gate_name_ok(m->name))
		wsv_error(v, x, "invalid metric name \"%s\" (expected 1 to %d characters of a-z, "
			  "0-9 and -)", m->name, ATTESTATION_NAME_MAX);
	if ((x = wsv_get(v, n, "query", true, "metric")) && (m->query = wsv_text(v, x, "query"))) {
		size_t len = strlen(m->query);
		if (len == 0)
			wsv_error(v, x, "query must not be empty");
		else if (len > METRIC_QUERY_MAX)
			wsv_error(v, x, "query is %zu characters long (at most %d)", len, METRIC_QUERY_MAX);
	}
	if ((x = wsv_get(v, n, "min", false, NULL)))
		m->has_min = read_number(v, x, "min", &m->min);
	const ynode *xmax = wsv_get(v, n, "max", false, NULL);
	if (xmax)
		m->has_max = read_number(v, xmax, "max", &m->max);
	if ((x = wsv_get(v, n, "for", false, NULL)))
		policy_duration(v, x, "for", true, &m->for_s);
	if (v->errors == before && !m->has_min && !m->has_max)
		wsv_error(v, n, "metric \"%s\" needs min or max (a check with neither always passes)",
			  m->name ? m->name : "");
	else if (m->has_min && m->has_max && m->min > m->max)
		wsv_error(v, xmax, "max (%s) is below min", xmax->value);
	return v->errors == before;
}

static void read_metrics(wsv *v, const ynode *n, ws_wave_settings *s)
{
	if (!wsv_seq(v, n, "metrics"))
		return;
	ws_gate_metric *ms = ws_arena_alloc(v->a, (n->len ? n->len : 1) * sizeof(*ms));
	size_t k = 0;
	for (size_t i = 0; i < n->len; i++) {
		if (!read_metric(v, n->items[i], &ms[k]))
			continue;
		bool repeated = false;
		for (size_t j = 0; j < k && !repeated; j++)
			repeated = strcmp(ms[k].name, ms[j].name) == 0;
		if (repeated)
			wsv_error(v, n->items[i], "duplicate metric \"%s\"", ms[k].name);
		else
			k++;
	}
	s->metrics = ms;
	s->n_metrics = k;
}

static void read_gates(wsv *v, const ynode *n, ws_wave_settings *s)
{
	if (!wsv_map(v, n, "gates"))
		return;
	wsv_keys(v, n, gates_keys, "gates");
	const ynode *x;
	if ((x = wsv_get(v, n, "backup", false, NULL)))
		read_backup(v, x, &s->backup);
	if ((x = wsv_get(v, n, "health", false, NULL)))
		read_health(v, x, &s->health);
	if ((x = wsv_get(v, n, "approval", false, NULL)))
		read_approval(v, x, &s->approval);
	if ((x = wsv_get(v, n, "attestations", false, NULL)))
		read_attestations(v, x, s);
	if ((x = wsv_get(v, n, "metrics", false, NULL)))
		read_metrics(v, x, s);
}

/* Failure budget ---------------------------------------------------------- */

static void read_failure(wsv *v, const ynode *n, ws_wave_settings *s)
{
	if (!wsv_map(v, n, "failure"))
		return;
	wsv_keys(v, n, failure_keys, "failure");
	read_int(v, n, "max_failed", 0, MAX_FAILED_LIMIT, &s->max_failed);
	const ynode *x = wsv_get(v, n, "action", false, NULL);
	const char *t = x ? wsv_text(v, x, "action") : NULL;
	if (!t)
		return;
	static const ws_failure_action all[] = { WS_FAIL_HALT, WS_FAIL_ROLLBACK_WAVE, WS_FAIL_CONTINUE };
	for (size_t i = 0; i < 3; i++) {
		if (strcmp(t, ws_failure_action_name(all[i])) == 0) {
			s->failure_action = all[i];
			return;
		}
	}
	wsv_error(v, x, "invalid failure action \"%s\" (expected one of: halt, rollback_wave, "
		  "continue)", t);
}

/* The block --------------------------------------------------------------- */

const char *ws_failure_action_name(ws_failure_action a)
{
	switch (a) {
	case WS_FAIL_HALT: return "halt";
	case WS_FAIL_ROLLBACK_WAVE: return "rollback_wave";
	case WS_FAIL_CONTINUE: return "continue";
	}
	return "halt";
}

void policy_settings_init(wsv *v, ws_wave_settings *s)
{
	memset(s, 0, sizeof(*s));
	s->health.interval_s = 30;
	s->health.timeout_s = 5;
	s->health.consecutive_successes = 3;
	s->health.max_consecutive_failures = 3;
	s->health.max_latency_ms = 2000;
	s->health.latency_regression = 1.5;
	const char **roles = ws_arena_alloc(v->a, sizeof(*roles));
	roles[0] = ws_arena_strdup(v->a, "approver");
	s->approval.roles = roles;
	s->approval.n_roles = 1;
	s->failure_action = WS_FAIL_HALT;
}

void policy_settings_read(wsv *v, const ynode *n, ws_wave_settings *s)
{
	const ynode *x;
	if ((x = wsv_get(v, n, "soak", false, NULL)))
		policy_duration(v, x, "soak", true, &s->soak_s);
	read_int(v, n, "max_parallel_per_cluster", 1, MAX_PARALLEL_LIMIT, &s->max_parallel_per_cluster);
	if ((x = wsv_get(v, n, "gates", false, NULL)))
		read_gates(v, x, s);
	if ((x = wsv_get(v, n, "failure", false, NULL)))
		read_failure(v, x, s);
}
