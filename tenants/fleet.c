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
 * Large fleets (issue 3: 100,000 tenants must parse about as fast as
 * libyaml can scan the file): tenants are read as the parser finishes each
 * one, so the tree never holds more than one tenant (see fleet_parse_doc);
 * the model points at the parser's interned text instead of copying it;
 * each mapping's keys are matched in one pass (fields_read); and libical
 * is asked once per distinct zone, rule and window shape (window_cache).
 *
 * Decisions where spec/fleet.md is silent:
 *   - an explicit null (`region:` or `region: ~`) is the same as leaving an
 *     optional key out;
 *   - strings may be written as YAML numbers or booleans (`version: 17.0`
 *     reads as "17.0"): the text as written is kept;
 *   - a one-off window takes no `timezone` (its times carry offsets);
 *   - a calendar's `applies_to` must name existing tenants and clusters.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fleet_internal.h"

typedef struct fleet_priv {
	ws_arena *arena;
	size_t *tenant_order;    /* tenant indexes sorted by slug */
	size_t *cluster_order;   /* cluster indexes sorted by name */
} fleet_priv;

/* Where something was written.  Tenants are read while the document is
 * parsed and their nodes are gone by the time the checks that need the
 * whole list run, so positions are kept, not nodes.  line 0: nowhere. */
typedef struct ypos {
	int line, column;
} ypos;

static ypos pos_of(const ynode *n)
{
	return (ypos){ .line = n->line, .column = n->column };
}

/* Where a tenant's names were written, for checks that run after the
 * whole list is read. */
typedef struct tenant_src {
	ypos slug;
	ypos *deps;              /* parallel to ws_tenant.depends_on (model arena) */
} tenant_src;

typedef struct fctx {
	wsv v;
	ws_fleet *f;
	ypos *cluster_name_at;
	ypos *calendar_name_at;
	tenant_src *tsrc;        /* malloc'd, parallel to f->tenants */
	size_t tenants_cap;      /* of f->tenants and tsrc */
	size_t *cluster_order;   /* sorted by name, for lookups while reading */
	size_t n_cluster_order;
	size_t *tenant_order;
	size_t n_tenant_order;
	/* Streaming (see fleet_parse_doc). */
	bool clusters_done;      /* clusters read and indexed */
	const ynode *tenants_key;   /* the root key of the first tenants list */
	bool tenants_streamed;   /* its items were read as they were parsed */
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
static const char *const gitops_keys[] = {
	"executor", "repo", "branch", "path", "sync", "status_url", "token_env", "timeout", NULL,
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

/* Keys -------------------------------------------------------------------- */

/* Indexes into tenant_keys, cluster_keys and window_keys. */
enum { T_SLUG, T_NAME, T_CLUSTER, T_CRITICALITY, T_TIMEZONE, T_LABELS, T_DEPENDS_ON,
       T_HEALTH_URL, T_VERSION, T_WINDOWS, T_FROZEN };
enum { C_NAME, C_HOSTING, C_REGION, C_MAX_PARALLEL, C_TIMEZONE, C_LABELS, C_WINDOWS,
       C_DEPLOY };
enum { W_RRULE, W_START, W_DURATION, W_TIMEZONE, W_ANCHOR, W_FROM, W_TO };

#define MAX_FIELDS 12
#define N_KEYS(list) (sizeof(list) / sizeof((list)[0]) - 1)
_Static_assert(N_KEYS(tenant_keys) == T_FROZEN + 1 && N_KEYS(tenant_keys) <= MAX_FIELDS,
	       "tenant_keys and T_* disagree");
_Static_assert(N_KEYS(cluster_keys) == C_DEPLOY + 1, "cluster_keys and C_* disagree");
_Static_assert(N_KEYS(window_keys) == W_TO + 1, "window_keys and W_* disagree");

/*
 * A mapping's keys and values for a fixed list of key names, found in one
 * pass over the mapping (a tenant is read 100,000 times in a large fleet;
 * a search per name would compare every key with every name).
 */
typedef struct fields {
	const ynode *map;
	const char *what;
	const char *const *names;
	const ynode *key[MAX_FIELDS], *val[MAX_FIELDS];
} fields;

/*
 * Which of a list of names each key text is, remembered by the text's
 * address: the parser interns key text, so the same few addresses come
 * back for every tenant, and the model's arena keeps every text at its
 * address until the parse is over.  Direct-mapped; a miss just compares.
 */
#define KEY_MEMO 64

typedef struct key_memo {
	struct {
		const char *text;
		const char *const *names;
		size_t j;
	} slot[KEY_MEMO];
} key_memo;

/* The index of `text` in `names`, or that of its NULL terminator. */
static size_t key_index(key_memo *km, const char *const *names, const char *text)
{
	size_t h = ((uintptr_t)text >> 3 ^ (uintptr_t)text >> 11) % KEY_MEMO;
	if (km && km->slot[h].text == text && km->slot[h].names == names)
		return km->slot[h].j;
	size_t j = 0;
	while (names[j] && !(names[j][0] == text[0] && strcmp(names[j], text) == 0))
		j++;
	if (km) {
		km->slot[h].text = text;
		km->slot[h].names = names;
		km->slot[h].j = j;
	}
	return j;
}

/* Reads the keys of `map` against `names` (NULL-terminated, at most
 * MAX_FIELDS): the first value of each known key is kept, and unknown keys
 * are reported by wsv_keys, with its message. */
static void fields_read(wsv *v, const ynode *map, const char *const *names, const char *what,
			fields *fl)
{
	*fl = (fields){ .map = map, .what = what, .names = names };
	bool unknown = false;
	for (size_t i = 0; i < map->len; i++) {
		const ynode *k = map->keys[i];
		if (k->kind != YNODE_SCALAR)
			continue;   /* ydoc already refused it */
		size_t j = key_index(v->km, names, k->value);
		if (!names[j])
			unknown = true;
		else if (!fl->key[j]) {
			fl->key[j] = k;
			fl->val[j] = map->items[i];
		}
	}
	if (unknown)
		wsv_keys(v, map, names, what);
}

/* wsv_get for field j: NULL when absent or null (an explicit null means
 * "not set"); a missing required key is reported against the mapping. */
static const ynode *field(wsv *v, const fields *fl, size_t j, bool required)
{
	const ynode *n = fl->val[j];
	if (n && !required && ynode_is_null(n))
		return NULL;
	if (!n && required)
		wsv_error(v, fl->map, "missing required key \"%s\" in %s", fl->names[j], fl->what);
	return n;
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

static void parse_one_off(wsv *v, const fields *fl, ws_window *w)
{
	w->one_off = true;
	const ynode *tz = fl->key[W_TIMEZONE];
	if (tz)
		wsv_error(v, tz, "a one-off window takes no timezone (from and to carry their offsets)");
	const ynode *from = field(v, fl, W_FROM, true);
	const ynode *to = field(v, fl, W_TO, true);
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
static void parse_recurring(wsv *v, const fields *fl, const char *zone, ws_window *w)
{
	int before = v->errors;
	const ynode *x;
	const char *zone_in_force = zone;
	if ((x = field(v, fl, W_RRULE, true)) && (w->rrule = wsv_text(v, x, "rrule"))) {
		char why[200];
		if (!window_cache_rrule_valid(v->wc, w->rrule, why, sizeof(why)))
			wsv_error(v, x, "invalid RRULE \"%s\": %s", w->rrule, why);
	}
	if ((x = field(v, fl, W_START, true))) {
		const char *t = wsv_text(v, x, "start");
		if (t && !parse_start(t, &w->start_minute)) {
			wsv_error(v, x, "invalid start time \"%s\" (expected HH:MM from 00:00 to 23:59)", t);
		} else if (t && strlen(t) == 5) {
			w->start_text = t;   /* "HH:MM" is already normal */
		} else if (t) {
			char buf[24];
			snprintf(buf, sizeof(buf), "%02d:%02d", w->start_minute / 60, w->start_minute % 60);
			w->start_text = ws_arena_strdup(v->a, buf);
		}
	}
	if ((x = field(v, fl, W_DURATION, true)))
		parse_positive_duration(v, x, "duration", &w->duration_s);
	if ((x = field(v, fl, W_TIMEZONE, false)) &&
	    (w->timezone = wsv_text(v, x, "timezone"))) {
		zone_in_force = w->timezone;
		if (!window_cache_tz_valid(v->wc, w->timezone))
			wsv_error(v, x, "unknown time zone \"%s\"", w->timezone);
	}
	if ((x = field(v, fl, W_ANCHOR, false))) {
		int y, m, d;
		w->anchor = wsv_text(v, x, "anchor");
		if (w->anchor && !ws_date_parse(w->anchor, &y, &m, &d))
			wsv_error(v, x, "invalid anchor \"%s\" (expected a date YYYY-MM-DD)", w->anchor);
	}
	/* Only a rule that passed every check above, in a known zone, can be
	 * expanded to see whether it occurs at all. */
	char why[200];
	if (v->errors == before && zone_in_force &&
	    !window_cache_occurs(v->wc, w, zone, why, sizeof(why)))
		wsv_error(v, fl->val[W_RRULE], "invalid RRULE \"%s\": %s", w->rrule, why);
}

static void parse_window(wsv *v, const ynode *n, const char *zone, ws_window *w)
{
	if (!wsv_map(v, n, NULL))
		return;
	w->line = n->line;
	w->column = n->column;
	fields fl;
	fields_read(v, n, window_keys, "window", &fl);
	bool recurring = fl.val[W_RRULE] || fl.val[W_START] || fl.val[W_DURATION] ||
			 fl.val[W_ANCHOR];
	bool one_off = fl.val[W_FROM] || fl.val[W_TO];
	if (recurring && one_off)
		wsv_error(v, n, "a window has either rrule, start and duration, or from and to, not both");
	else if (!recurring && !one_off)
		wsv_error(v, n, "a window needs rrule, start and duration, or from and to");
	else if (one_off)
		parse_one_off(v, &fl, w);
	else
		parse_recurring(v, &fl, zone, w);
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
		l->key = wsv_str(v, k);
		l->value = wsv_str(v, val);
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

/* A gitops `path` template: {slug}, {cluster} and {version} only, and it
 * must name a file inside the working tree -- an absolute path, a ".."
 * component or a ".git" component would let a fleet file write outside the
 * clone or into git's own metadata. */
static bool gitops_path_valid(wsv *v, const ynode *x, const char *t)
{
	static const char *const names[] = { "slug", "cluster", "version", NULL };
	for (const char *s = t; *s; s++) {
		if ((s[0] == '{' || s[0] == '}') && s[1] == s[0]) {
			s++;
			continue;
		}
		if (*s != '{')
			continue;
		const char *end = strchr(s, '}');
		if (!end) {
			wsv_error(v, x, "unclosed \"{\" in path \"%s\"", t);
			return false;
		}
		size_t n = (size_t)(end - s - 1), i;
		for (i = 0; names[i]; i++)
			if (strlen(names[i]) == n && strncmp(names[i], s + 1, n) == 0)
				break;
		if (!names[i]) {
			wsv_error(v, x, "unknown placeholder \"{%.*s}\" in path \"%s\" (expected "
				  "{slug}, {cluster} or {version})", (int)n, s + 1, t);
			return false;
		}
		s = end;
	}
	if (t[0] == '/') {
		wsv_error(v, x, "path \"%s\" must be relative to the repository (no leading \"/\")", t);
		return false;
	}
	size_t len = strlen(t);
	if (t[len - 1] == '/') {
		wsv_error(v, x, "path \"%s\" must name a file, not a directory", t);
		return false;
	}
	for (const char *c = t; *c;) {
		size_t n = strcspn(c, "/");
		if ((n == 2 && strncmp(c, "..", 2) == 0) || (n == 4 && strncmp(c, ".git", 4) == 0)) {
			wsv_error(v, x, "path \"%s\" must stay inside the repository (no \"%.*s\" "
				  "component)", t, (int)n, c);
			return false;
		}
		c += n;
		if (*c == '/')
			c++;
	}
	return true;
}

/* A branch name git would take as a plain branch: not an option, no
 * revision syntax, no control characters (git-check-ref-format(1), the
 * subset a fleet file has any use for). */
static bool branch_valid(const char *t)
{
	size_t len = strlen(t);
	if (t[0] == '-' || t[0] == '/' || t[len - 1] == '/' || t[len - 1] == '.' || strstr(t, "..") ||
	    strstr(t, "//") || strstr(t, "@{") || (len >= 5 && strcmp(t + len - 5, ".lock") == 0))
		return false;
	for (const unsigned char *c = (const unsigned char *)t; *c; c++)
		if (*c <= ' ' || *c == 0x7f || strchr("~^:?*[\\", *c))
			return false;
	return true;
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
	if (strcmp(key, "repo") == 0 && t[0] == '-') {
		/* git would read it as an option */
		wsv_error(v, x, "invalid repository \"%s\" for \"repo\" (expected a path or a "
			  "file, https or ssh URL)", t);
		return NULL;
	}
	if (strcmp(key, "branch") == 0 && !branch_valid(t)) {
		wsv_error(v, x, "invalid branch name \"%s\"", t);
		return NULL;
	}
	if (strcmp(key, "path") == 0 && !gitops_path_valid(v, x, t))
		return NULL;
	if (strcmp(key, "sync") == 0 && strcmp(t, "health") != 0 && strcmp(t, "status_url") != 0) {
		wsv_error(v, x, "invalid sync \"%s\" (expected health or status_url)", t);
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
	const char *required, *also_required = NULL;
	if (strcmp(executor, "webhook") == 0) {
		keys = webhook_keys;
		required = "url";
	} else if (strcmp(executor, "kubernetes") == 0) {
		keys = kubernetes_keys;
		required = "api_url";
	} else if (strcmp(executor, "command") == 0) {
		keys = command_keys;
		required = "argv";
	} else if (strcmp(executor, "gitops") == 0) {
		keys = gitops_keys;
		required = "repo";
		also_required = "path";
	} else {
		wsv_error(v, ex, "invalid executor \"%s\" (expected one of: webhook, kubernetes, "
			  "command, gitops)", executor);
		return NULL;
	}
	int before = v->errors;
	wsv_keys(v, n, keys, "deploy");
	/* Built in the order of the key list so the canonical form is stable. */
	json_t *o = json_object();
	json_object_set_new(o, "executor", json_string(executor));
	for (size_t i = 1; keys[i]; i++) {
		bool req = strcmp(keys[i], required) == 0 ||
			   (also_required && strcmp(keys[i], also_required) == 0);
		const ynode *x = wsv_get(v, n, keys[i], req, "deploy");
		json_t *val = x ? deploy_value(v, x, keys[i]) : NULL;
		if (val)
			json_object_set_new(o, keys[i], val);
	}
	bool gitops = strcmp(executor, "gitops") == 0;
	if (gitops && v->errors == before && !json_object_get(o, "timeout"))
		/* A sync is awaited, not just a call: the default is said in
		 * the canonical form rather than left to the engine's. */
		json_object_set_new(o, "timeout", json_string("10m"));
	if (gitops && v->errors == before) {
		/* gitops: the status URL is how `sync: status_url` observes, and
		 * is read by nothing else. */
		const char *sync = json_string_value(json_object_get(o, "sync"));
		bool by_status = sync && strcmp(sync, "status_url") == 0;
		bool has_url = json_object_get(o, "status_url") != NULL;
		if (by_status && !has_url)
			wsv_error(v, n, "sync: status_url needs \"status_url\" in deploy");
		else if (!by_status && has_url)
			wsv_error(v, wsv_get(v, n, "status_url", false, "deploy"),
				  "\"status_url\" is only read with sync: status_url");
		else if (!by_status && json_object_get(o, "token_env"))
			wsv_error(v, wsv_get(v, n, "token_env", false, "deploy"),
				  "\"token_env\" is only read with sync: status_url");
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
	fields fl;
	fields_read(v, n, cluster_keys, "cluster", &fl);
	const ynode *x;
	if ((x = field(v, &fl, C_NAME, true)) && (cl->name = wsv_text(v, x, "name"))) {
		c->cluster_name_at[idx] = pos_of(x);
		if (!ws_name_valid(cl->name))
			wsv_error(v, x, "invalid cluster name \"%s\" (" NAME_RULE ")", cl->name);
	}
	if ((x = field(v, &fl, C_HOSTING, true))) {
		const char *t = wsv_text(v, x, "hosting");
		if (t)
			wsv_hosting(v, x, t, &cl->hosting);
	}
	if ((x = field(v, &fl, C_REGION, false)))
		cl->region = wsv_text(v, x, "region");
	if ((x = field(v, &fl, C_MAX_PARALLEL, false))) {
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
	if ((x = field(v, &fl, C_TIMEZONE, false))) {
		const char *t = wsv_text(v, x, "timezone");
		if (t && window_cache_tz_valid(v->wc, t)) {
			cl->timezone = t;
		} else {
			zone_ok = false;
			if (t)
				wsv_error(v, x, "unknown time zone \"%s\"", t);
		}
	}
	if ((x = field(v, &fl, C_LABELS, false)))
		parse_labels(v, x, &cl->labels, &cl->n_labels);
	if ((x = field(v, &fl, C_WINDOWS, false)))
		parse_windows(v, x, "windows", zone_ok ? cl->timezone : NULL, &cl->windows,
			      &cl->n_windows);
	if ((x = field(v, &fl, C_DEPLOY, false)))
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
	const ypos *name_at;       /* where each name was written; line 0: no name */
	const int *line, *column;  /* the first entry's position fields */
	size_t stride;             /* sizeof the struct holding line and column */
} named_list;

/* A name and the index of what carries it. */
typedef struct named_idx {
	const char *name;
	size_t i;
} named_idx;

/* A merge sort: stable, so among equal names the first in the document comes
 * first (it is the one "first defined").  It sorts (name, index) pairs, so
 * a comparison reads two adjacent pairs rather than two tenants scattered
 * over the model: O(n log n) and cache-friendly for 100,000 tenants. */
static void sort_named(named_idx *v, named_idx *tmp, size_t n)
{
	if (n < 2)
		return;
	size_t h = n / 2;
	sort_named(v, tmp, h);
	sort_named(v + h, tmp, n - h);
	if (strcmp(v[h].name, v[h - 1].name) >= 0)
		return;   /* already in order, as slugs often are */
	size_t i = 0, j = h, k = 0;
	while (i < h && j < n)
		tmp[k++] = strcmp(v[j].name, v[i].name) < 0 ? v[j++] : v[i++];
	while (i < h)
		tmp[k++] = v[i++];
	while (j < n)
		tmp[k++] = v[j++];
	memcpy(v, tmp, n * sizeof(*v));
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
	named_idx *v = malloc((n ? n : 1) * 2 * sizeof(*v));
	if (!v)
		abort();
	size_t m = 0;
	for (size_t i = 0; i < n; i++)
		if (l->name_at[i].line)
			v[m++] = (named_idx){ .name = l->name(c->f, i), .i = i };
	sort_named(v, v + n, m);
	size_t k = 0;
	for (size_t i = 0; i < m; i++) {
		if (k > 0 && strcmp(v[k - 1].name, v[i].name) == 0) {
			size_t first = v[k - 1].i;
			int line = *(const int *)((const char *)l->line + first * l->stride);
			int col = *(const int *)((const char *)l->column + first * l->stride);
			ypos at = l->name_at[v[i].i];
			wsv_error_at(&c->v, at.line, at.column, "duplicate %s \"%s\" (first defined at %d:%d)",
				     l->what, v[i].name, line, col);
			continue;
		}
		v[k++] = v[i];
	}
	for (size_t i = 0; i < k; i++)
		idx[i] = v[i].i;
	free(v);
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
	/* Zeroed here rather than when the array grows, so that memory is
	 * touched only for tenants that exist. */
	memset(t, 0, sizeof(*t));
	memset(src, 0, sizeof(*src));
	t->criticality = CRIT_STANDARD;
	t->timezone = "UTC";
	t->cluster_index = SIZE_MAX;
	if (!wsv_map(v, n, NULL))
		return;
	t->line = n->line;
	t->column = n->column;
	fields fl;
	fields_read(v, n, tenant_keys, "tenant", &fl);
	const ynode *x;
	if ((x = field(v, &fl, T_SLUG, true)) && (t->slug = wsv_text(v, x, "slug"))) {
		src->slug = pos_of(x);
		if (!ws_name_valid(t->slug))
			wsv_error(v, x, "invalid slug \"%s\" (" NAME_RULE ")", t->slug);
	}
	t->name = t->slug;
	if ((x = field(v, &fl, T_NAME, false))) {
		const char *name = wsv_text(v, x, "name");
		if (name && !*name)
			wsv_error(v, x, "\"name\" must not be empty");
		else if (name)
			t->name = name;
	}
	if ((x = field(v, &fl, T_CLUSTER, true)) && (t->cluster = wsv_text(v, x, "cluster"))) {
		t->cluster_index = find_index(c->f, c->cluster_order, c->n_cluster_order,
					      cluster_name_of, t->cluster);
		if (t->cluster_index == SIZE_MAX)
			wsv_error(v, x, "unknown cluster \"%s\"", t->cluster);
		else
			t->timezone = c->f->clusters[t->cluster_index].timezone;
	}
	if ((x = field(v, &fl, T_CRITICALITY, false))) {
		const char *s = wsv_text(v, x, "criticality");
		if (s)
			wsv_criticality(v, x, s, &t->criticality);
	}
	bool zone_ok = true;
	if ((x = field(v, &fl, T_TIMEZONE, false))) {
		const char *s = wsv_text(v, x, "timezone");
		if (s && window_cache_tz_valid(v->wc, s)) {
			t->timezone = s;
		} else {
			zone_ok = false;
			if (s)
				wsv_error(v, x, "unknown time zone \"%s\"", s);
		}
	}
	if ((x = field(v, &fl, T_LABELS, false)))
		parse_labels(v, x, &t->labels, &t->n_labels);
	if ((x = field(v, &fl, T_DEPENDS_ON, false)) && wsv_seq(v, x, "depends_on")) {
		t->depends_on = ws_arena_alloc(v->a, x->len * sizeof(*t->depends_on));
		t->depends_on_index = ws_arena_alloc(v->a, x->len * sizeof(*t->depends_on_index));
		src->deps = ws_arena_alloc(v->a, x->len * sizeof(*src->deps));
		for (size_t i = 0; i < x->len; i++) {
			const char *s = wsv_text_in(v, x->items[i], "depends_on");
			if (!s)
				continue;
			src->deps[t->n_depends_on] = pos_of(x->items[i]);
			t->depends_on_index[t->n_depends_on] = SIZE_MAX;
			t->depends_on[t->n_depends_on++] = s;
		}
	}
	if ((x = field(v, &fl, T_HEALTH_URL, false))) {
		const char *s = wsv_text(v, x, "health_url");
		if (s && !ws_url_valid(s))
			wsv_error(v, x, "invalid URL \"%s\" for \"health_url\" (expected an http or "
				  "https URL)", s);
		else
			t->health_url = s;
	}
	if ((x = field(v, &fl, T_VERSION, false)))
		t->version = wsv_text(v, x, "version");
	if ((x = field(v, &fl, T_WINDOWS, false)))
		parse_windows(v, x, "windows", zone_ok ? t->timezone : NULL, &t->windows,
			      &t->n_windows);
	if ((x = field(v, &fl, T_FROZEN, false)))
		wsv_bool(v, x, "frozen", &t->frozen);
}

/* Slugs to tenant indexes, for resolving depends_on: one probe instead of
 * a binary search whose every step reads a tenant far from the last (45,000
 * dependencies in a fleet of 100,000).  Built from tenant_order, so a slug
 * defined twice finds its first definition, as find_index does. */
typedef struct slug_table {
	uint32_t *slot;          /* tenant index + 1; 0: empty */
	size_t mask;
} slug_table;

static uint32_t slug_hash(const char *s)
{
	uint32_t h = 2166136261u;   /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h ^ (h >> 15);
}

static bool slug_table_init(slug_table *st, const ws_fleet *f, const size_t *order, size_t n)
{
	size_t cap = 16;
	while (cap < 2 * n)
		cap *= 2;
	if (n >= UINT32_MAX || !(st->slot = calloc(cap, sizeof(*st->slot))))
		return false;
	st->mask = cap - 1;
	for (size_t i = 0; i < n; i++) {
		size_t j = slug_hash(f->tenants[order[i]].slug) & st->mask;
		while (st->slot[j])
			j = (j + 1) & st->mask;
		st->slot[j] = (uint32_t)order[i] + 1;
	}
	return true;
}

static size_t slug_table_find(const slug_table *st, const ws_fleet *f, const char *slug)
{
	for (size_t j = slug_hash(slug) & st->mask; st->slot[j]; j = (j + 1) & st->mask)
		if (strcmp(f->tenants[st->slot[j] - 1].slug, slug) == 0)
			return st->slot[j] - 1;
	return SIZE_MAX;
}

/* Resolves depends_on; self-references, repeats and unknown slugs are
 * reported and left out of the graph (index SIZE_MAX). */
static void resolve_dependencies(fctx *c)
{
	ws_fleet *f = c->f;
	slug_table st;
	if (!slug_table_init(&st, f, c->tenant_order, c->n_tenant_order))
		abort();
	for (size_t i = 0; i < f->n_tenants; i++) {
		ws_tenant *t = &f->tenants[i];
		for (size_t j = 0; j < t->n_depends_on; j++) {
			const char *dep = t->depends_on[j];
			ypos at = c->tsrc[i].deps[j];
			bool repeated = false;
			for (size_t k = 0; k < j && !repeated; k++)
				repeated = strcmp(t->depends_on[k], dep) == 0;
			if (t->slug && strcmp(dep, t->slug) == 0)
				wsv_error_at(&c->v, at.line, at.column, "tenant \"%s\" depends on itself", dep);
			else if (repeated)
				wsv_error_at(&c->v, at.line, at.column, "duplicate \"%s\" in depends_on", dep);
			else if ((t->depends_on_index[j] = slug_table_find(&st, f, dep)) == SIZE_MAX)
				wsv_error_at(&c->v, at.line, at.column, "unknown tenant \"%s\" in depends_on",
					     dep);
		}
	}
	free(st.slot);
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
	ypos at = { 0, 0 };
	for (size_t j = 0; j < t->n_depends_on && !at.line; j++)
		if (t->depends_on_index[j] == next)
			at = c->tsrc[first].deps[j];
	wsv_error_at(&c->v, at.line, at.column, "%s", b.s);
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
			c->calendar_name_at[idx] = pos_of(x);
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

/* The list under a key of the root mapping, given its value (NULL when the
 * key is absent): NULL when absent or null, reported when not a sequence. */
static const ynode *top_list(wsv *v, const ynode *x, const char *key)
{
	if (!x || ynode_is_null(x))
		return NULL;
	return wsv_seq(v, x, key) ? x : NULL;
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

/* Reads the clusters (`x` is the value of "clusters", or NULL) and indexes
 * them by name, which tenants need. */
static void read_clusters(fctx *c, const ynode *x)
{
	wsv *v = &c->v;
	ws_fleet *f = c->f;
	const ynode *list = top_list(v, x, "clusters");
	c->clusters_done = true;
	if (list) {
		f->n_clusters = list->len;
		f->clusters = ws_arena_alloc(v->a, list->len * sizeof(*f->clusters));
		c->cluster_name_at = ws_arena_alloc(v->a, list->len * sizeof(*c->cluster_name_at));
		for (size_t i = 0; i < list->len; i++)
			parse_cluster(c, list->items[i], i);
	}
	named_list clusters = {
		.name = cluster_name_of, .what = "cluster name", .name_at = c->cluster_name_at,
		.line = f->clusters ? &f->clusters[0].line : NULL,
		.column = f->clusters ? &f->clusters[0].column : NULL, .stride = sizeof(ws_cluster),
	};
	c->cluster_order = index_unique(c, f->n_clusters, &clusters, &c->n_cluster_order);
}

/* Room for n tenants.  f->tenants is one malloc'd array (fleet_free frees
 * it): while streaming, the count is known only at the end. */
static void tenants_reserve(fctx *c, size_t n)
{
	if (n <= c->tenants_cap)
		return;
	size_t cap = c->tenants_cap ? c->tenants_cap * 2 : 1024;
	if (cap < n)
		cap = n;
	ws_tenant *t = realloc(c->f->tenants, cap * sizeof(*t));
	tenant_src *src = realloc(c->tsrc, cap * sizeof(*src));
	if (t)
		c->f->tenants = t;
	if (src)
		c->tsrc = src;
	if (!t || !src) {
		fprintf(stderr, "wavesched: out of memory reading %zu tenants\n", n);
		abort();
	}
	c->tenants_cap = cap;
}

/* The checks that need every tenant, once all are read. */
static void check_tenants(fctx *c)
{
	ws_fleet *f = c->f;
	ypos *slug_at = ws_arena_alloc(c->v.a, (f->n_tenants ? f->n_tenants : 1) * sizeof(*slug_at));
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
}

/* Reads what the parse did not stream: everything, or all but the
 * clusters and tenants. */
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

	if (!c->clusters_done)
		read_clusters(c, ynode_get(root, "clusters"));
	const ynode *list;
	if (!c->tenants_streamed && (list = top_list(v, ynode_get(root, "tenants"), "tenants"))) {
		tenants_reserve(c, list->len);
		f->n_tenants = list->len;
		for (size_t i = 0; i < list->len; i++)
			parse_tenant(c, list->items[i], i);
	}
	check_tenants(c);

	if ((list = top_list(v, ynode_get(root, "calendars"), "calendars"))) {
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

/*
 * Streaming.  A fleet file is mostly its tenants list; rather than hold
 * the whole document as a tree (millions of nodes), each tenant is read
 * into the model as soon as the parser has it, and its nodes are reused
 * for the next.  A tenant needs the clusters (its zone and cluster come
 * from there), so tenants stream only when the clusters list came first,
 * as in every file export writes; otherwise the tenants stay in the tree
 * and are read at the end like the rest.  What is read while streaming is
 * exactly what fleet_read would read, in the same way, so the diagnostics
 * are the same either way.
 */
static void stream_value_cb(void *arg, const ydoc *doc, const ynode *key, const ynode *value)
{
	fctx *c = arg;
	c->v.file = ydoc_name(doc);
	/* ynode_get finds the first "clusters"; a second one makes the
	 * document a duplicate key and it is refused. */
	if (!c->clusters_done && key->kind == YNODE_SCALAR && strcmp(key->value, "clusters") == 0)
		read_clusters(c, value);
}

static bool stream_item_cb(void *arg, const ydoc *doc, const ynode *key, size_t index,
			   const ynode *item)
{
	fctx *c = arg;
	c->v.file = ydoc_name(doc);
	if (key != c->tenants_key && (key->kind != YNODE_SCALAR || strcmp(key->value, "tenants") != 0))
		return false;
	if (!c->tenants_key) {
		c->tenants_key = key;
		c->tenants_streamed = c->clusters_done;
	}
	if (key != c->tenants_key)
		return true;   /* a second "tenants": refused as a duplicate key */
	if (!c->tenants_streamed)
		return false;
	tenants_reserve(c, index + 1);
	c->f->n_tenants = index + 1;
	parse_tenant(c, item, index);
	return true;
}

/* Moves every diagnostic of `from` to the end of `to`. */
static void diags_move(ws_diags *to, ws_diags *from)
{
	if (to && from->len) {
		size_t need = to->len + from->len;
		if (need > to->cap) {
			ws_diag *items = realloc(to->items, need * sizeof(*items));
			if (!items)
				abort();
			to->items = items;
			to->cap = need;
		}
		memcpy(to->items + to->len, from->items, from->len * sizeof(*from->items));
		to->len = need;
		from->len = 0;
	}
	ws_diags_free(from);
}

/*
 * Parses a document (from `path`, or from buf/len named `name`) and builds
 * the fleet.  The scalar text goes straight into the model's arena
 * (interned), so the model points at it instead of copying it, and the
 * tree is freed as soon as the model is built.  Problems found while
 * streaming are held back until the parse has succeeded: a document that
 * does not parse gets only its syntax errors, as before streaming.
 */
static ws_fleet *fleet_parse_doc(const char *path, const char *name, const char *buf,
				 size_t len, ws_diags *d)
{
	ws_arena *a = ws_arena_new();
	ws_fleet *f = ws_arena_alloc(a, sizeof(*f));
	fleet_priv *priv = ws_arena_alloc(a, sizeof(*priv));
	priv->arena = a;
	f->priv = priv;
	ws_diags mine;
	ws_diags_init(&mine);
	key_memo km = { 0 };
	fctx c = {
		.v = { .file = path ? path : name ? name : "<input>", .d = d ? &mine : NULL,
		       .errors = 0, .a = a, .text_in_arena = true, .wc = window_cache_new(),
		       .km = &km },
		.f = f,
	};
	ydoc_stream s = { .arg = &c, .value = stream_value_cb, .item = stream_item_cb, .strings = a };
	ydoc *doc = path ? ydoc_parse_file_stream(path, NULL, &s, d)
			 : ydoc_parse_stream(name, buf, len, NULL, &s, d);
	if (doc) {
		c.v.file = ydoc_name(doc);
		fleet_read(&c, ydoc_root(doc));
		ydoc_free(doc);
		diags_move(d, &mine);
		if (d)
			ws_diags_sort(d);
	}
	ws_diags_free(&mine);
	window_cache_free(c.v.wc);
	free(c.tsrc);
	if (!doc || c.v.errors) {
		fleet_free(f);
		return NULL;
	}
	priv->cluster_order = c.cluster_order;
	priv->tenant_order = c.tenant_order;
	return f;
}

ws_fleet *fleet_parse(const char *name, const char *buf, size_t len, ws_diags *d)
{
	return fleet_parse_doc(NULL, name, buf, len, d);
}

ws_fleet *fleet_parse_file(const char *path, ws_diags *d)
{
	return fleet_parse_doc(path, NULL, NULL, 0, d);
}

void fleet_free(ws_fleet *f)
{
	if (!f)
		return;
	fleet_priv *priv = f->priv;
	for (size_t i = 0; i < f->n_clusters; i++)
		json_decref(f->clusters[i].deploy);
	free(f->tenants);
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

const size_t *fleet_tenants_by_slug(const ws_fleet *f)
{
	if (!f || !f->priv)
		return NULL;
	const fleet_priv *priv = f->priv;
	return priv->tenant_order;
}

const ws_cluster *fleet_cluster(const ws_fleet *f, const char *name)
{
	if (!f || !name)
		return NULL;
	const fleet_priv *priv = f->priv;
	size_t i = find_index(f, priv->cluster_order, f->n_clusters, cluster_name_of, name);
	return i == SIZE_MAX ? NULL : &f->clusters[i];
}
