/*
 * arena.h - many allocations with one lifetime, released together.
 *
 * Memory grouped by lifetime, as PostgreSQL does with memory contexts: a
 * parsed document (ydoc) keeps its tree in one, a fleet keeps everything it
 * owns in one, selector_parse() allocates the selector it returns in the
 * caller's.  Nothing is freed individually; ws_arena_free() releases it all.
 *
 * Allocations are zeroed and aligned for any type.  Running out of memory
 * in ws_arena_new() or ws_arena_alloc() aborts the process with a message (a
 * validator has nothing sensible to do without memory); code whose sizes
 * come from untrusted input and must survive, like the YAML parser, uses
 * ws_arena_try_alloc() and reports the failure itself.
 */
#ifndef WAVESCHED_ARENA_H
#define WAVESCHED_ARENA_H

#include <stddef.h>
#include "wavesched/diag.h"

typedef struct ws_arena ws_arena;

WS_API ws_arena *ws_arena_new(void);
WS_API void *ws_arena_alloc(ws_arena *a, size_t size);
/* Like ws_arena_alloc, but returns NULL when memory runs out. */
WS_API void *ws_arena_try_alloc(ws_arena *a, size_t size);
/* A copy of s in the arena; NULL for NULL. */
WS_API char *ws_arena_strdup(ws_arena *a, const char *s);
WS_API void ws_arena_free(ws_arena *a);   /* NULL is fine */

#endif
