/*
 * fleet_internal.h - what the files of tenants/ share and nobody else sees.
 *
 * wsv is a validation pass over one document: it knows the file name for
 * diagnostics, counts the problems it reported (the caller may pass a NULL
 * diagnostics list, so the count cannot be read from there) and owns no
 * memory: strings it returns are in `a`, the model's arena (ws_arena,
 * include/wavesched/arena.h) -- copied there, or already there when the
 * parser put the document's text in it (text_in_arena).  Its caches belong
 * to the one pass, so passes on different threads share nothing.
 */
#ifndef WAVESCHED_FLEET_INTERNAL_H
#define WAVESCHED_FLEET_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include "wavesched/arena.h"
#include "wavesched/fleet.h"
#include "wavesched/window.h"
#include "wavesched/ydoc.h"

#define WS_NAME_MAX 63

typedef struct window_cache window_cache;

typedef struct wsv {
	const char *file;
	ws_diags *d;
	int errors;
	ws_arena *a;
	/* The document's scalar text already lives in `a` (fleet_parse has
	 * the parser put it there): wsv_text and wsv_str return it as it is
	 * instead of copying it. */
	bool text_in_arena;
	/* libical answers remembered for this pass, or NULL (window.c). */
	window_cache *wc;
	/* Which known key each key text is, remembered for this pass, or
	 * NULL (fleet.c). */
	struct key_memo *km;
} wsv;

void wsv_error(wsv *v, const ynode *at, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The same at a position remembered from a node that is gone (line 0: no
 * position). */
void wsv_error_at(wsv *v, int line, int column, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* "a mapping", "an integer", "null", ... for messages. */
const char *wsv_article(const ynode *n);
/* Reports every key of `map` that is not in the NULL-terminated `allowed`
 * list, as `unknown key "k" in WHAT (expected one of: ...)`. */
void wsv_keys(wsv *v, const ynode *map, const char *const *allowed, const char *what);
/* The value of `key`, or NULL when it is absent or null (an explicit null
 * means "not set").  A missing required key is reported against `map`. */
const ynode *wsv_get(wsv *v, const ynode *map, const char *key, bool required,
		     const char *what);
/* Type checks: report `expected a mapping for "key", got a sequence` (or,
 * with a NULL key, `expected a mapping, got a sequence`) and return false. */
bool wsv_map(wsv *v, const ynode *n, const char *key);
bool wsv_seq(wsv *v, const ynode *n, const char *key);
/* The text of a scalar (numbers and booleans as written), copied into the
 * arena; NULL after reporting when `n` is not a non-null scalar. */
const char *wsv_text(wsv *v, const ynode *n, const char *key);
/* The same for an item of the list `list` ("expected a string in ..."). */
const char *wsv_text_in(wsv *v, const ynode *n, const char *list);
/* The text of a scalar known to be one, in the arena (no checks). */
const char *wsv_str(wsv *v, const ynode *n);
bool wsv_bool(wsv *v, const ynode *n, const char *key, bool *out);
bool wsv_int(wsv *v, const ynode *n, const char *key, long long *out);
/* http:// or https:// followed by a host, no spaces or control characters. */
bool ws_url_valid(const char *s);
/* [a-z0-9-]{1,63}: slugs and cluster names. */
bool ws_name_valid(const char *s);

/* Enumerations with the one message each (`invalid hosting "x" ...`). */
bool wsv_hosting(wsv *v, const ynode *at, const char *text, ws_hosting *out);
bool wsv_criticality(wsv *v, const ynode *at, const char *text, ws_criticality *out);

/* A sorted, duplicate-free malloc'd copy of a string list (free() it). */
const char **ws_sorted_strings(const char *const *in, size_t n, size_t *n_out);

/* Selector parsing with a validation pass (selector.c). */
ws_selector *selector_parse_v(wsv *v, const ynode *n);

/* window.c */
/* "YYYY-MM-DD" with a real calendar date. */
bool ws_date_parse(const char *s, int *year, int *month, int *day);
/* Whether a validated recurring window yields at least one occurrence from
 * its anchor; fills `why` when it does not. */
bool window_occurs(const ws_window *w, const char *zone, char *why, size_t why_size);

/*
 * The checks above and ws_tz_valid/ws_rrule_valid, remembering each answer
 * for the distinct input that gave it: a fleet repeats a handful of zones
 * and rules across thousands of tenants, and each libical call costs tens
 * of microseconds (a recurrence iterator opens an ICU calendar).  The
 * answers are libical's, computed once.  A cache belongs to one parse and
 * is not thread-safe (the service parses on several threads, each with its
 * own).  A NULL cache computes every time.
 */
window_cache *window_cache_new(void);
void window_cache_free(window_cache *wc);
bool window_cache_tz_valid(window_cache *wc, const char *tzid);
bool window_cache_rrule_valid(window_cache *wc, const char *rrule, char *why, size_t why_size);
bool window_cache_occurs(window_cache *wc, const ws_window *w, const char *zone, char *why,
			 size_t why_size);

#endif
