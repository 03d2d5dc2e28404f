/*
 * ydoc.h - a YAML (or JSON) document as a tree that remembers positions.
 *
 * libyaml parses; this only builds a tree from its events so validators can
 * say FILE:LINE:COLUMN for every node.  JSON is read through the same path
 * (it is YAML flow syntax), so a JSON body gets the same positions.
 *
 * Caps (a hostile document must not exhaust memory): input size, nesting
 * depth and node count; aliases and anchors are refused outright.  A tree
 * lives in one arena and is freed with ydoc_free().
 *
 * Scalar text is interned: within one document, repeated short scalars
 * share one NUL-terminated copy, so a fleet that repeats the same zone,
 * rule and key names across 100,000 tenants stores each once.  Compare
 * text with strcmp all the same: two equal scalars need not share a copy.
 */
#ifndef WAVESCHED_YDOC_H
#define WAVESCHED_YDOC_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include "wavesched/arena.h"
#include "wavesched/diag.h"

typedef enum { YNODE_SCALAR, YNODE_MAP, YNODE_SEQ } ynode_kind;

/* 48 bytes: a large fleet is millions of nodes. */
typedef struct ynode ynode;
struct ynode {
	const char *value;    /* scalar: NUL-terminated, never NULL; NULL otherwise */
	/* map: keys[i] -> items[i]; seq: items[i].  One arena array holds
	 * both halves of a map (keys first). */
	ynode **keys;
	ynode **items;
	uint32_t value_len;   /* scalar: bytes in value */
	uint32_t len;         /* map: pairs; seq: items; scalar: 0 */
	int line, column;     /* 1-based position of the node's first character */
	ynode_kind kind;
	bool quoted;          /* single- or double-quoted (also block scalars and !!str):
	                         never null/bool/number */
	uint8_t interned_;    /* private to ydoc.c */
};

typedef struct ydoc ydoc;

typedef struct ydoc_limits {
	size_t max_bytes;   /* default 1 GiB (uploads are capped first by the HTTP body limit) */
	int max_depth;      /* default 64 */
	size_t max_nodes;   /* default 60,000,000 */
	/* Threads: 0 lets a large document be parsed on several (see ydoc.c,
	 * "in chunks"), 1 parses on the calling thread only.  chunk_bytes is
	 * the size of those chunks (default 512 KiB; documents of at least
	 * two chunks are cut): tests set it small to cut everywhere. */
	int max_threads;
	size_t chunk_bytes;
} ydoc_limits;

/* Parses one document.  On a syntax error or a cap, returns NULL and adds a
 * diagnostic naming the position.  `name` is used in diagnostics. */
WS_API ydoc *ydoc_parse(const char *name, const char *buf, size_t len,
			const ydoc_limits *limits /* NULL = defaults */, ws_diags *d);
WS_API ydoc *ydoc_parse_file(const char *path, const ydoc_limits *limits, ws_diags *d);

/*
 * Streaming.  A large document is mostly one long list under a key of the
 * root mapping (a fleet's `tenants`).  With a ydoc_stream the reader sees
 * each item of such a list as soon as the item is complete, and can take
 * it out of the tree: the memory of a taken item is reused for the next
 * one, so the tree never holds more than one.  The callbacks run only
 * while the document has no problem so far; a problem found later still
 * makes the parse return NULL, so a reader must hold what it learnt from
 * the callbacks until the parse has succeeded.
 */
typedef struct ydoc_stream {
	void *arg;
	/* The value of a key of the root mapping is complete. */
	void (*value)(void *arg, const ydoc *doc, const ynode *key, const ynode *value);
	/* Item number `index` of a sequence that is the value of `key` in the
	 * root mapping is complete.  Returning true takes it out of the tree
	 * (the sequence's len counts only the items kept); its nodes are
	 * reused once the callback returns, its scalar text is not. */
	bool (*item)(void *arg, const ydoc *doc, const ynode *key, size_t index, const ynode *item);
	/* When set, scalar text is allocated in this arena instead of the
	 * document's, so it outlives the tree (a model built from the
	 * document can point at it instead of copying it). */
	ws_arena *strings;
} ydoc_stream;

WS_API ydoc *ydoc_parse_stream(const char *name, const char *buf, size_t len,
			       const ydoc_limits *limits, const ydoc_stream *stream,
			       ws_diags *d);
WS_API ydoc *ydoc_parse_file_stream(const char *path, const ydoc_limits *limits,
				    const ydoc_stream *stream, ws_diags *d);

WS_API const ynode *ydoc_root(const ydoc *doc);   /* NULL for an empty document */
WS_API const char *ydoc_name(const ydoc *doc);
WS_API void ydoc_free(ydoc *doc);

/* Helpers for validators. */
WS_API const ynode *ynode_get(const ynode *map, const char *key);
WS_API bool ynode_is_null(const ynode *n);   /* plain ~, null, Null, NULL or empty */
/* YAML 1.1/1.2 booleans true/false (any case) and yes/no are accepted. */
WS_API int ynode_bool(const ynode *n, bool *out);
WS_API int ynode_int(const ynode *n, long long *out);
WS_API const char *ynode_kind_name(const ynode *n); /* "string", "mapping", ... */

#endif
