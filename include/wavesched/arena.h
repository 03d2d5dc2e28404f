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
/* Like ws_arena_try_alloc with a smaller alignment (a power of two, at most
 * that of max_align_t): arrays of pointers need 8, strings 1, and packing
 * them saves the padding.  Zeroed too. */
WS_API void *ws_arena_try_alloc_aligned(ws_arena *a, size_t size, size_t align);
/* A copy of s in the arena; NULL for NULL. */
WS_API char *ws_arena_strdup(ws_arena *a, const char *s);
/* A NUL-terminated copy of s[0..n), packed (no alignment); NULL when
 * memory runs out. */
WS_API char *ws_arena_try_strndup(ws_arena *a, const char *s, size_t n);
WS_API void ws_arena_free(ws_arena *a);   /* NULL is fine */

/*
 * Marks: ws_arena_restore() releases everything allocated since the
 * matching ws_arena_save(), so a loop can build something, use it and
 * throw it away without growing the arena (the YAML parser does this for
 * each item of a streamed list).  Marks nest like a stack; restoring one
 * invalidates the marks saved after it.
 */
typedef struct ws_arena_mark {
	unsigned long serial;   /* the chunk that was current */
	size_t used;            /* and how much of it was used */
} ws_arena_mark;

WS_API ws_arena_mark ws_arena_save(const ws_arena *a);
WS_API void ws_arena_restore(ws_arena *a, ws_arena_mark m);

#endif
