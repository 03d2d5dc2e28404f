/*
 * sim_map.c - a string map that remembers insertion order.
 *
 * The order matters: control answers and metrics list tenants and keys in
 * the order they were first seen, so two runs of the same test print the
 * same documents.  Entries live in an array; an open-addressing table of
 * indexes (power of two, at most half full) finds them.  Nothing is removed
 * one by one: the simulator only ever clears a whole map.
 */
#include <stdlib.h>
#include <string.h>
#include "sim.h"

typedef struct entry {
	char *key;
	void *val;
	uint64_t hash;
} entry;

struct sim_map {
	entry *items;
	size_t len, cap;
	uint32_t *slots;      /* index + 1; 0 = empty */
	size_t n_slots;
};

/* FNV-1a: cheap and good enough for slugs and keys. */
static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

sim_map *sim_map_new(void)
{
	return calloc(1, sizeof(sim_map));
}

void sim_map_clear(sim_map *m, void (*free_val)(void *))
{
	for (size_t i = 0; i < m->len; i++) {
		if (free_val)
			free_val(m->items[i].val);
		free(m->items[i].key);
	}
	free(m->items);
	free(m->slots);
	memset(m, 0, sizeof(*m));
}

void sim_map_free(sim_map *m, void (*free_val)(void *))
{
	if (!m)
		return;
	sim_map_clear(m, free_val);
	free(m);
}

static size_t find_slot(const sim_map *m, const char *key, uint64_t h)
{
	size_t mask = m->n_slots - 1;
	for (size_t i = h & mask;; i = (i + 1) & mask) {
		uint32_t s = m->slots[i];
		if (s == 0)
			return i;
		const entry *e = &m->items[s - 1];
		if (e->hash == h && strcmp(e->key, key) == 0)
			return i;
	}
}

void *sim_map_get(const sim_map *m, const char *key)
{
	if (!m->n_slots)
		return NULL;
	uint32_t s = m->slots[find_slot(m, key, hash_str(key))];
	return s ? m->items[s - 1].val : NULL;
}

static int grow_slots(sim_map *m)
{
	size_t n = m->n_slots ? m->n_slots * 2 : 64;
	uint32_t *slots = calloc(n, sizeof(*slots));
	if (!slots)
		return WS_ENOMEM;
	free(m->slots);
	m->slots = slots;
	m->n_slots = n;
	for (size_t i = 0; i < m->len; i++)
		m->slots[find_slot(m, m->items[i].key, m->items[i].hash)] = (uint32_t)(i + 1);
	return 0;
}

int sim_map_add(sim_map *m, const char *key, void *val)
{
	if (m->len >= UINT32_MAX - 1)
		return WS_ETOOBIG;
	if ((m->len + 1) * 2 > m->n_slots && grow_slots(m))
		return WS_ENOMEM;
	if (m->len == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 16;
		entry *items = realloc(m->items, cap * sizeof(*items));
		if (!items)
			return WS_ENOMEM;
		m->items = items;
		m->cap = cap;
	}
	char *k = strdup(key);
	if (!k)
		return WS_ENOMEM;
	uint64_t h = hash_str(key);
	m->items[m->len] = (entry){ .key = k, .val = val, .hash = h };
	m->slots[find_slot(m, key, h)] = (uint32_t)(m->len + 1);
	m->len++;
	return 0;
}

size_t sim_map_len(const sim_map *m)
{
	return m->len;
}

const char *sim_map_key_at(const sim_map *m, size_t i)
{
	return m->items[i].key;
}

void *sim_map_val_at(const sim_map *m, size_t i)
{
	return m->items[i].val;
}
