/*
 * arena.c - the lifetime allocator (see include/wavesched/arena.h).
 *
 * Allocations are bumped out of chained chunks.  An allocation larger than a
 * chunk gets a chunk of its own, placed behind the current one so small
 * allocations keep filling that.
 *
 * Every chunk has a serial number, increasing in the order chunks are taken,
 * so that ws_arena_restore() can tell the chunks taken after a mark: they
 * are at the front of the chain, or (the large ones) right behind the chunk
 * that was current when the mark was saved.  One released chunk is kept as
 * a spare, because a loop that saves and restores tends to cross the same
 * chunk boundary again and again.
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
	unsigned long serial;
	max_align_t data[];
} arena_chunk;

struct ws_arena {
	arena_chunk *head;
	arena_chunk *spare;      /* a released ARENA_CHUNK-sized chunk, or NULL */
	unsigned long serial;    /* of the last chunk taken */
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

/* A new chunk for `size` bytes, linked in; NULL when memory runs out. */
static arena_chunk *arena_grow(ws_arena *a, size_t size)
{
	if (size > SIZE_MAX - sizeof(arena_chunk))
		return NULL;
	size_t cap = size > ARENA_CHUNK ? size : ARENA_CHUNK;
	arena_chunk *c;
	if (cap == ARENA_CHUNK && a->spare) {
		c = a->spare;
		a->spare = NULL;
	} else if (!(c = malloc(sizeof(*c) + cap))) {
		return NULL;
	}
	c->cap = cap;
	c->used = 0;
	c->serial = ++a->serial;
	if (a->head && size > ARENA_CHUNK) {
		c->next = a->head->next;
		a->head->next = c;
	} else {
		c->next = a->head;
		a->head = c;
	}
	return c;
}

void *ws_arena_try_alloc_aligned(ws_arena *a, size_t size, size_t align)
{
	if (align == 0 || align > sizeof(max_align_t) || (align & (align - 1)))
		align = sizeof(max_align_t);
	if (size == 0)
		size = 1;
	arena_chunk *c = a->head;
	size_t off = c ? (c->used + align - 1) & ~(align - 1) : 0;
	if (!c || off > c->cap || c->cap - off < size) {
		if (!(c = arena_grow(a, size)))
			return NULL;
		off = 0;
	}
	void *p = (char *)c->data + off;
	c->used = off + size;
	memset(p, 0, size);
	return p;
}

void *ws_arena_try_alloc(ws_arena *a, size_t size)
{
	return ws_arena_try_alloc_aligned(a, size, sizeof(max_align_t));
}

void *ws_arena_alloc(ws_arena *a, size_t size)
{
	void *p = ws_arena_try_alloc(a, size);
	if (!p)
		arena_oom(size);
	return p;
}

char *ws_arena_try_strndup(ws_arena *a, const char *s, size_t n)
{
	if (n == SIZE_MAX)
		return NULL;
	char *p = ws_arena_try_alloc_aligned(a, n + 1, 1);
	if (p && n)
		memcpy(p, s, n);
	return p;   /* the terminating NUL is there: allocations are zeroed */
}

char *ws_arena_strdup(ws_arena *a, const char *s)
{
	if (!s)
		return NULL;
	size_t n = strlen(s);
	char *p = ws_arena_try_strndup(a, s, n);
	if (!p)
		arena_oom(n + 1);
	return p;
}

ws_arena_mark ws_arena_save(const ws_arena *a)
{
	ws_arena_mark m = { 0, 0 };
	if (a->head) {
		m.serial = a->head->serial;
		m.used = a->head->used;
	}
	return m;
}

static void arena_release(ws_arena *a, arena_chunk *c)
{
	if (c->cap == ARENA_CHUNK && !a->spare) {
		a->spare = c;
		return;
	}
	free(c);
}

void ws_arena_restore(ws_arena *a, ws_arena_mark m)
{
	/* Chunks taken since the mark: the front of the chain... */
	while (a->head && a->head->serial > m.serial) {
		arena_chunk *c = a->head;
		a->head = c->next;
		arena_release(a, c);
	}
	if (!a->head)
		return;
	/* ...and large ones put behind the chunk that was current. */
	while (a->head->next && a->head->next->serial > m.serial) {
		arena_chunk *c = a->head->next;
		a->head->next = c->next;
		arena_release(a, c);
	}
	if (a->head->serial == m.serial && m.used <= a->head->used)
		a->head->used = m.used;
}

void ws_arena_free(ws_arena *a)
{
	if (!a)
		return;
	for (arena_chunk *c = a->head, *next; c; c = next) {
		next = c->next;
		free(c);
	}
	free(a->spare);
	free(a);
}
