/*
 * fleet_internal.h - what the files of tenants/ share and nobody else sees.
 *
 * wsv is a validation pass over one document: it knows the file name for
 * diagnostics, counts the problems it reported (the caller may pass a NULL
 * diagnostics list, so the count cannot be read from there) and owns no
 * memory: strings it returns are copied into `a`, the model's arena
 * (ws_arena, include/wavesched/arena.h).
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

typedef struct wsv {
	const char *file;
	ws_diags *d;
	int errors;
	ws_arena *a;
} wsv;

void wsv_error(wsv *v, const ynode *at, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
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

#endif
