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
 */
#ifndef WAVESCHED_YDOC_H
#define WAVESCHED_YDOC_H

#include <stddef.h>
#include <stdbool.h>
#include "wavesched/diag.h"

typedef enum { YNODE_SCALAR, YNODE_MAP, YNODE_SEQ } ynode_kind;

typedef struct ynode ynode;
struct ynode {
	ynode_kind kind;
	int line, column;     /* 1-based position of the node's first character */
	/* scalar */
	const char *value;    /* NUL-terminated; never NULL for scalars */
	size_t value_len;
	bool quoted;          /* single- or double-quoted (also block scalars and !!str):
	                         never null/bool/number */
	/* map: keys[i] -> items[i]; seq: items[i] */
	size_t len;
	ynode **keys;
	ynode **items;
};

typedef struct ydoc ydoc;

typedef struct ydoc_limits {
	size_t max_bytes;   /* default 1 GiB (uploads are capped first by the HTTP body limit) */
	int max_depth;      /* default 64 */
	size_t max_nodes;   /* default 60,000,000 */
} ydoc_limits;

/* Parses one document.  On a syntax error or a cap, returns NULL and adds a
 * diagnostic naming the position.  `name` is used in diagnostics. */
WS_API ydoc *ydoc_parse(const char *name, const char *buf, size_t len,
			const ydoc_limits *limits /* NULL = defaults */, ws_diags *d);
WS_API ydoc *ydoc_parse_file(const char *path, const ydoc_limits *limits, ws_diags *d);
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
