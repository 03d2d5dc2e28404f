/*
 * arena.c - the lifetime allocator (see include/wavesched/arena.h).
 *
 * Allocations are bumped out of chained chunks.  An allocation larger than a
 * chunk gets a chunk of its own, placed behind the current one so small
 * allocations keep filling that.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "wavesched/arena.h"

#define ARENA_CHUNK ((size_t)32 << 10)

typedef struct arena_chunk {
	struct arena_chunk *next;
	size_t used, cap;
	max_align_t data[];
} arena_chunk;

struct ws_arena {
	arena_chunk *head;
};

/* Out of memory in the middle of building a model leaves nothing useful to
 * do; fail loudly like redis' zmalloc rather than return half a fleet. */
static void arena_oom(size_t size)
{
	fprintf(stderr, "wavesched: out of memory allocating %zu bytes\n", size);
	abort();
}

ws_arena *ws_arena_new(void)
{
	ws_arena *a = calloc(1, sizeof(*a));
	if (!a)
		arena_oom(sizeof(*a));
	return a;
}

void *ws_arena_try_alloc(ws_arena *a, size_t size)
{
	const size_t align = sizeof(max_align_t);
	if (size > SIZE_MAX - align - sizeof(arena_chunk))
		return NULL;
	size = size ? (size + align - 1) / align * align : align;
	arena_chunk *c = a->head;
	if (!c || c->cap - c->used < size) {
		size_t cap = size > ARENA_CHUNK ? size : ARENA_CHUNK;
		c = malloc(sizeof(*c) + cap);
		if (!c)
			return NULL;
		c->cap = cap;
		c->used = 0;
		if (a->head && size > ARENA_CHUNK) {
			c->next = a->head->next;
			a->head->next = c;
		} else {
			c->next = a->head;
			a->head = c;
		}
	}
	void *p = (char *)c->data + c->used;
	c->used += size;
	memset(p, 0, size);
	return p;
}

void *ws_arena_alloc(ws_arena *a, size_t size)
{
	void *p = ws_arena_try_alloc(a, size);
	if (!p)
		arena_oom(size);
	return p;
}

char *ws_arena_strdup(ws_arena *a, const char *s)
{
	if (!s)
		return NULL;
	size_t n = strlen(s);
	char *p = ws_arena_alloc(a, n + 1);
	memcpy(p, s, n + 1);
	return p;
}

void ws_arena_free(ws_arena *a)
{
	if (!a)
		return;
	for (arena_chunk *c = a->head, *next; c; c = next) {
		next = c->next;
		free(c);
	}
	free(a);
}
