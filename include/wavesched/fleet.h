/*
 * fleet.h - the fleet model: clusters, tenants, windows, blackout calendars.
 *
 * Glossary (shared by the whole code base):
 *   tenant    one hosted ERP instance, identified by its slug.
 *   cluster   the Kubernetes cluster a tenant runs on (shared or dedicated).
 *   window    a recurring maintenance window (RRULE + local start + duration in
 *             an IANA zone) or a one-off range; deployments happen inside them.
 *   calendar  a named set of blackout occurrences; hard ones bind even urgent
 *             releases, soft ones can be overridden by break-glass.
 *   selector  a predicate over tenants (policy.md "Selectors").
 *
 * A ws_fleet is built by fleet_parse() from a document that passed every rule
 * of spec/fleet.md, and is immutable afterwards.  It owns all its memory
 * (one arena, and the tenants array); fleet_free() releases it.  Immutable,
 * it may be read by several threads at once.  Lists are kept in document order;
 * the canonical JSON (fleet_to_json) sorts them so that export is stable.
 */
#ifndef WAVESCHED_FLEET_H
#define WAVESCHED_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "wavesched/arena.h"   /* ws_arena: fleets and selectors live in one */
#include "wavesched/diag.h"
#include "wavesched/ydoc.h"

typedef enum { HOSTING_SHARED = 0, HOSTING_DEDICATED = 1 } ws_hosting;
/* Ordered low -> critical: the planner sorts on this value. */
typedef enum { CRIT_LOW = 0, CRIT_STANDARD = 1, CRIT_HIGH = 2, CRIT_CRITICAL = 3 } ws_criticality;

WS_API const char *ws_hosting_name(ws_hosting h);
WS_API const char *ws_criticality_name(ws_criticality c);
WS_API int ws_criticality_parse(const char *s, ws_criticality *out);

typedef struct ws_label {
	const char *key;
	const char *value;
} ws_label;

/* A recurring window or a one-off range. */
typedef struct ws_window {
	bool one_off;
	/* recurring */
	const char *rrule;      /* RFC 5545 RRULE without DTSTART, as written */
	int start_minute;       /* local wall time of each occurrence, minutes after 00:00 */
	const char *start_text; /* "HH:MM" as written, normalised */
	int64_t duration_s;     /* > 0 */
	const char *timezone;   /* explicit zone, or NULL: inherit (tenant/cluster/UTC) */
	const char *anchor;     /* "YYYY-MM-DD" or NULL (default 2000-01-01) */
	/* one-off */
	int64_t from_utc, to_utc;   /* unix seconds; to > from */
	const char *from_text, *to_text; /* RFC 3339 as written */
	int line, column;       /* where it was declared */
} ws_window;

/* A selector (policy.md).  A NULL list means "no constraint on this key". */
typedef struct ws_selector ws_selector;
struct ws_selector {
	const char **slugs;     size_t n_slugs;     bool has_slugs;
	const char **clusters;  size_t n_clusters;  bool has_clusters;
	const char **regions;   size_t n_regions;   bool has_regions;
	bool has_hosting;       bool hosting[2];              /* indexed by ws_hosting */
	bool has_criticality;   bool criticality[4];          /* indexed by ws_criticality */
	/* labels: each key must match one of its values */
	struct ws_selector_label {
		const char *key;
		const char **values;
		size_t n_values;
	} *labels;
	size_t n_labels;
	ws_selector *not_;      /* NULL when absent */
};

typedef struct ws_cluster {
	const char *name;
	ws_hosting hosting;
	const char *region;     /* may be NULL */
	int max_parallel;       /* 0 = no cap */
	const char *timezone;   /* never NULL: default "UTC" */
	ws_label *labels; size_t n_labels;
	ws_window *windows; size_t n_windows;
	json_t *deploy;         /* validated deploy settings (object), or NULL; owned */
	int line, column;
} ws_cluster;

typedef struct ws_tenant {
	const char *slug;
	const char *name;       /* never NULL: defaults to the slug */
	const char *cluster;
	size_t cluster_index;   /* index into fleet->clusters */
	ws_criticality criticality;
	const char *timezone;   /* never NULL: defaults to the cluster's zone */
	ws_label *labels; size_t n_labels;
	const char **depends_on; size_t n_depends_on;
	size_t *depends_on_index;   /* indexes into fleet->tenants */
	const char *health_url; /* may be NULL */
	const char *version;    /* may be NULL */
	ws_window *windows; size_t n_windows;
	bool frozen;
	int line, column;
} ws_tenant;

typedef struct ws_calendar {
	const char *name;
	bool hard;
	ws_selector *applies_to;   /* NULL: every tenant */
	ws_window *occurrences; size_t n_occurrences;
	int line, column;
} ws_calendar;

typedef struct ws_fleet {
	ws_cluster *clusters; size_t n_clusters;
	ws_tenant *tenants; size_t n_tenants;
	ws_calendar *calendars; size_t n_calendars;
	/* private: arena, indexes */
	void *priv;
} ws_fleet;

/* Parses and validates a fleet document (YAML or JSON).  On any problem
 * returns NULL with every problem in `d` as FILE:LINE:COLUMN: message. */
WS_API ws_fleet *fleet_parse(const char *name, const char *buf, size_t len, ws_diags *d);
WS_API ws_fleet *fleet_parse_file(const char *path, ws_diags *d);
WS_API void fleet_free(ws_fleet *f);

WS_API const ws_tenant *fleet_tenant(const ws_fleet *f, const char *slug);
/* The tenant indexes in slug order (strcmp), n_tenants of them; NULL for a
 * fleet not built by the parser. */
WS_API const size_t *fleet_tenants_by_slug(const ws_fleet *f);
WS_API const ws_cluster *fleet_cluster(const ws_fleet *f, const char *name);

/* Selector parsing and matching (shared with policies).
 * selector_parse: `arena` is a ws_arena * that owns the result (it stays
 * valid until ws_arena_free).  Returns NULL, with every problem in `d`, when
 * the selector is invalid.  `n` is the selector mapping ({} matches all).
 * selector_match: `f` gives the tenant's cluster (hosting, regions); with a
 * NULL `f` the keys `hosting` and `regions` never match. */
WS_API ws_selector *selector_parse(const ydoc *doc, const ynode *n, void *arena, ws_diags *d);
WS_API bool selector_match(const ws_selector *s, const ws_fleet *f, const ws_tenant *t);
WS_API json_t *selector_to_json(const ws_selector *s);

/*
 * The canonical JSON form of a fleet: the fleet.md shape with every default
 * made explicit (criticality, timezone, frozen, name, labels, depends_on,
 * windows), optional absent fields omitted, durations normalised ("4h",
 * "90m", "1d", "90s"), clusters sorted by name, tenants by slug, calendars by
 * name, depends_on sorted.  It is what the database stores and what export
 * prints, so parse(to_json(f)) == f and export is a fixed point.
 * Returns a new reference.
 */
WS_API json_t *fleet_to_json(const ws_fleet *f);
/* The canonical JSON of one tenant / cluster / calendar (as in fleet_to_json). */
WS_API json_t *fleet_tenant_to_json(const ws_fleet *f, const ws_tenant *t);
WS_API json_t *fleet_cluster_to_json(const ws_cluster *c);
WS_API json_t *fleet_calendar_to_json(const ws_calendar *c);
WS_API json_t *fleet_window_to_json(const ws_window *w);

/* Emits a JSON value as a block-style YAML document (libyaml's emitter).
 * Strings that would read back as another type are quoted.  Returns a new
 * malloc'd NUL-terminated string, or NULL on failure. */
WS_API char *ws_json_to_yaml(const json_t *doc, size_t *len_out);

/* Durations: "90s", "30m", "4h", "1d", "2w" or ISO 8601 "PT4H", "P1DT2H".
 * Returns 0 and seconds, or WS_EINVAL. */
WS_API int ws_duration_parse(const char *s, int64_t *seconds);
/* Formats with the largest unit that divides exactly: 86400 -> "1d". */
WS_API void ws_duration_format(int64_t seconds, char *buf, size_t size);

#endif
