/*
 * ydoc.c - YAML (and JSON) documents as trees with positions (see
 * include/wavesched/ydoc.h).
 *
 * libyaml does the parsing; we consume its event stream and build a small
 * tree whose every node knows its line and column, so validators can point
 * at the exact character a user has to fix.  Everything a tree holds lives
 * in one arena owned by the ydoc, freed at once by ydoc_free().
 *
 * A hostile or broken document must not take the process down: the input
 * size, the nesting depth and the node count are capped, and anchors and
 * aliases (the "billion laughs" vector, and a feature no fleet or policy
 * needs) are refused outright.  Duplicate mapping keys are refused too:
 * YAML forbids them and silently keeping one of the two values would hide
 * a mistake.
 *
 * Building costs little next to libyaml itself: nodes come from slabs of
 * the arena; the children of the open collections wait on one shared stack
 * and are copied into a single arena array when their collection closes;
 * scalar text is interned (a fleet repeats the same keys, zones and rules
 * on every tenant), which also lets the duplicate-key check compare two
 * interned keys by address; a streamed list item (ydoc_stream) is dropped
 * by rolling the arena back to where it began; a small file is parsed as
 * it is read; and a large document is parsed in chunks on several threads
 * (libyaml's own events tell whether each cut was good: see "in chunks").
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <yaml.h>
#include "wavesched/arena.h"
#include "wavesched/ydoc.h"

/* Defaults sized for real fleets (a 100,000-tenant fleet file is ~30 MB and
 * ~3 million nodes).  Documents from the network are bounded long before
 * this by the HTTP body limit (max_body_bytes); these caps stop a runaway
 * file or stored document, not a hostile client. */
#define YDOC_DEFAULT_MAX_BYTES ((size_t)1 << 30)
#define YDOC_DEFAULT_MAX_DEPTH 64
#define YDOC_DEFAULT_MAX_NODES ((size_t)60000000)

/* Scalars up to this long are interned; longer ones are rarely repeated
 * and are copied as they come. */
#define INTERN_MAX 64
/* Text is interned from its second sighting on: a fleet's unique scalars
 * (slugs, URLs) would fill the table, and cost a cache miss each, while
 * what a document repeats (keys, zones, rules, cluster names, versions)
 * shows up again soon.  A first sighting leaves its hash in a small
 * direct-mapped array (SEEN_BITS); a collision there only delays or
 * hastens interning.  The table stops growing at INTERN_SLOTS_MAX slots
 * (16 MiB); past that, new text is copied. */
#define SEEN_BITS 16
#define INTERN_SLOTS_MAX ((size_t)1 << 20)
/* Mappings up to this size are checked for duplicate keys pairwise. */
#define SMALL_MAP 16
/* Nodes are taken from the arena this many at a time. */
#define NODE_SLAB 64

/* The tree lives in `arena`; input-driven sizes use ws_arena_try_alloc so
 * that running out of memory is reported, not fatal.  Scalar text lives in
 * `strings`: the tree's arena, a separate one of ours when streamed items
 * are dropped (rolling back the tree's arena must not take interned text
 * with it), or the caller's (ydoc_stream.strings). */
struct ydoc {
	char *name;
	ynode *root;
	ws_arena *arena;
	ws_arena *own_strings;   /* NULL when the text is in `arena` or the caller's */
};

/* One open collection while the tree is being built.  Its children are
 * kids[base..] of the builder's shared stack. */
typedef struct yframe {
	ynode *node;
	size_t base;
	bool stream;             /* items are offered to ydoc_stream.item */
	size_t index;            /* stream: items seen so far */
	/* stream: the arena and the node slab before the current item */
	ws_arena_mark mark;
	ynode *slab;
	size_t slab_left;
} yframe;

/* The intern table: open addressing, at most half full. */
typedef struct yslot {
	const char *s;
	uint32_t hash, len;
} yslot;

/* Where the text comes from: a buffer, or a file read while it is parsed
 * (a 30 MB fleet file need not be in memory twice). */
typedef struct ysource {
	const char *buf;
	size_t len;
	FILE *fp;
	size_t max, read;        /* file: the size cap, bytes read so far */
	size_t size;             /* file: its size when it was opened */
	bool too_large;
	int read_errno;          /* file: why a read failed, or 0 */
} ysource;

typedef struct ybuild {
	ydoc *doc;
	ws_diags *d;
	ysource *src;
	ydoc_limits lim;
	const ydoc_stream *stream;   /* NULL: build the whole tree */
	ws_arena *strings;
	yframe *stack;
	int depth, stack_cap;
	ynode **kids;
	size_t n_kids, kids_cap;
	yslot *slots;
	size_t slots_cap, n_interned;
	uint32_t *seen;          /* hashes of text seen once (see SEEN_BITS) */
	ynode *slab;             /* nodes not handed out yet */
	size_t slab_left;
	size_t nodes;
	bool failed;     /* a problem was reported; keep going only to find more */
	bool fatal;      /* stop consuming events */
} ybuild;

static void yb_error(ybuild *b, int line, int col, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void yb_error(ybuild *b, int line, int col, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	ws_diag_addv(b->d, b->doc->name, line, col, fmt, ap);
	va_end(ap);
	b->failed = true;
}

static void yb_oom(ybuild *b, int line, int col)
{
	yb_error(b, line, col, "out of memory");
	b->fatal = true;
}

/* Interning ----------------------------------------------------------- */

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* A hash of s[0..n), eight bytes at a time; *has_nul tells whether one of
 * the bytes is NUL (found on the way: a word has a zero byte exactly when
 * (w - ONES) & ~w & HIGHS is not 0). */
static uint32_t text_hash(const char *s, size_t n, bool *has_nul)
{
	uint64_t h = 0x9E3779B97F4A7C15ull ^ n, zero = 0;
	while (n >= 8) {
		uint64_t w;
		memcpy(&w, s, 8);
		zero |= (w - ONES) & ~w & HIGHS;
		h = (h ^ w) * 0xff51afd7ed558ccdull;
		h ^= h >> 29;
		s += 8;
		n -= 8;
	}
	if (n) {
		/* The last 1 to 7 bytes, without a byte loop: two overlapping
		 * 4-byte loads cover 4 to 7 bytes, and bytes 0, n/2 and n-1
		 * cover 1 to 3.  Every byte is looked at for NUL; the hash needs
		 * only be a function of the text (its length is mixed in). */
		uint64_t w;
		if (n >= 4) {
			uint32_t lo, hi;
			memcpy(&lo, s, 4);
			memcpy(&hi, s + n - 4, 4);
			w = (uint64_t)hi << 32 | lo;
			zero |= (w - ONES) & ~w & HIGHS;
		} else {
			uint64_t a = (unsigned char)s[0], m = (unsigned char)s[n / 2],
				 z = (unsigned char)s[n - 1];
			w = a | m << 8 | z << 16;
			zero |= (uint64_t)(a == 0 || m == 0 || z == 0) << 7;
		}
		h = (h ^ w) * 0xff51afd7ed558ccdull;
	}
	*has_nul = zero != 0;
	/* murmur3's finaliser: every input bit reaches the low 32 bits */
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return (uint32_t)h;
}

static bool intern_grow(ybuild *b)
{
	size_t cap = b->slots_cap ? b->slots_cap * 2 : 1024;
	yslot *slots = calloc(cap, sizeof(*slots));
	if (!slots)
		return false;
	for (size_t i = 0; i < b->slots_cap; i++) {
		const yslot *s = &b->slots[i];
		if (!s->s)
			continue;
		size_t j = s->hash & (cap - 1);
		while (slots[j].s)
			j = (j + 1) & (cap - 1);
		slots[j] = *s;
	}
	free(b->slots);
	b->slots = slots;
	b->slots_cap = cap;
	return true;
}

/* The text of a scalar in the strings arena: the one copy of it when it is
 * short enough to intern (sets *interned), else a copy of its own.  Tells
 * whether the text has a NUL byte.  NULL when memory runs out. */
static const char *yb_text(ybuild *b, const char *s, size_t n, bool *has_nul, bool *interned)
{
	*interned = false;
	if (n > INTERN_MAX) {
		*has_nul = memchr(s, '\0', n) != NULL;
		return ws_arena_try_strndup(b->strings, s, n);
	}
	uint32_t h = text_hash(s, n, has_nul);
	if (*has_nul)
		return ws_arena_try_strndup(b->strings, s, n);
	bool full = (b->n_interned + 1) * 2 > b->slots_cap;
	if (full && b->slots_cap < INTERN_SLOTS_MAX) {
		if (!intern_grow(b))
			return NULL;
		full = false;
	}
	size_t mask = b->slots_cap - 1, i = h & mask;
	for (; b->slots[i].s; i = (i + 1) & mask) {
		const yslot *e = &b->slots[i];
		if (e->hash == h && e->len == n && memcmp(e->s, s, n) == 0) {
			*interned = true;
			return e->s;
		}
	}
	char *copy = ws_arena_try_strndup(b->strings, s, n);
	if (!copy || full)
		return copy;   /* not interned: the table is as large as it gets */
	if (!b->seen && !(b->seen = calloc((size_t)1 << SEEN_BITS, sizeof(*b->seen))))
		return NULL;
	uint32_t *seen = &b->seen[(h * 0x9E3779B1u) >> (32 - SEEN_BITS)];
	if (*seen != h) {
		*seen = h;   /* a first sighting, as far as we know */
		return copy;
	}
	b->slots[i] = (yslot){ .s = copy, .hash = h, .len = (uint32_t)n };
	b->n_interned++;
	*interned = true;
	return copy;
}

/* Building -------------------------------------------------------------- */

/* What the builder needs of a libyaml event.  Its strings point into the
 * event itself, or into a batch of the parser thread (yb_run_pipelined). */
typedef struct yev {
	yaml_event_type_t type;
	yaml_scalar_style_t style;
	yaml_mark_t mark;
	const char *anchor, *tag, *value;
	size_t length;
} yev;

static void yev_from(yev *e, const yaml_event_t *ev)
{
	*e = (yev){ .type = ev->type, .mark = ev->start_mark };
	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		e->anchor = (const char *)ev->data.scalar.anchor;
		e->tag = (const char *)ev->data.scalar.tag;
		e->value = (const char *)ev->data.scalar.value;
		e->length = ev->data.scalar.length;
		e->style = ev->data.scalar.style;
		break;
	case YAML_ALIAS_EVENT:
		e->anchor = (const char *)ev->data.alias.anchor;
		break;
	case YAML_MAPPING_START_EVENT:
		e->anchor = (const char *)ev->data.mapping_start.anchor;
		break;
	case YAML_SEQUENCE_START_EVENT:
		e->anchor = (const char *)ev->data.sequence_start.anchor;
		break;
	default:
		break;
	}
}

static ynode *yb_node(ybuild *b, ynode_kind kind, const yaml_mark_t *mark)
{
	int line = (int)mark->line + 1, col = (int)mark->column + 1;
	if (++b->nodes > b->lim.max_nodes) {
		yb_error(b, line, col, "document has more than %zu nodes", b->lim.max_nodes);
		b->fatal = true;
		return NULL;
	}
	/* The first node of a streamed item: remember where the arena and
	 * the slab were, to roll back to when the item is dropped. */
	if (b->depth > 0 && b->stack[b->depth - 1].stream) {
		yframe *f = &b->stack[b->depth - 1];
		f->mark = ws_arena_save(b->doc->arena);
		f->slab = b->slab;
		f->slab_left = b->slab_left;
	}
	if (b->slab_left == 0) {
		b->slab = ws_arena_try_alloc_aligned(b->doc->arena, NODE_SLAB * sizeof(ynode),
						     _Alignof(ynode));
		if (!b->slab) {
			yb_oom(b, line, col);
			return NULL;
		}
		b->slab_left = NODE_SLAB;
	}
	ynode *n = b->slab++;
	b->slab_left--;
	*n = (ynode){ .kind = kind, .line = line, .column = col };
	return n;
}

/* Offers a finished item of a streamed list to the reader.  Returns true
 * when it is to be dropped: taken by the reader, or not worth keeping
 * because the document is already refused. */
static bool yb_offer(ybuild *b, yframe *f, ynode *n)
{
	size_t index = f->index++;
	if (b->failed)
		return true;
	/* The list's key is the last child of the root mapping. */
	const ynode *key = b->kids[f->base - 1];
	return b->stream->item(b->stream->arg, b->doc, key, index, n);
}

/* Attaches a finished node to the collection being built, or makes it the
 * root. */
static void yb_attach(ybuild *b, ynode *n)
{
	if (b->depth == 0) {
		b->doc->root = n;
		return;
	}
	yframe *f = &b->stack[b->depth - 1];
	size_t count = b->n_kids - f->base;
	if (f->node->kind == YNODE_MAP && count % 2 == 0 && n->kind != YNODE_SCALAR)
		yb_error(b, n->line, n->column, "mapping keys must be scalars");
	if (f->stream && yb_offer(b, f, n)) {
		ws_arena_restore(b->doc->arena, f->mark);
		b->slab = f->slab;
		b->slab_left = f->slab_left;
		return;
	}
	if (count >= UINT32_MAX) {
		yb_error(b, n->line, n->column, "more than %u items in one collection", UINT32_MAX / 2);
		b->fatal = true;
		return;
	}
	if (b->n_kids == b->kids_cap) {
		size_t cap = b->kids_cap ? b->kids_cap * 2 : 256;
		ynode **kids = realloc(b->kids, cap * sizeof(*kids));
		if (!kids) {
			yb_oom(b, n->line, n->column);
			return;
		}
		b->kids = kids;
		b->kids_cap = cap;
	}
	b->kids[b->n_kids++] = n;
	/* A value of the root mapping is complete. */
	if (b->depth == 1 && f->node->kind == YNODE_MAP && count % 2 == 1 && b->stream &&
	    b->stream->value && !b->failed)
		b->stream->value(b->stream->arg, b->doc, b->kids[b->n_kids - 2], n);
}

static bool yb_refuse_anchor(ybuild *b, const char *anchor, const yaml_mark_t *m)
{
	if (!anchor)
		return false;
	yb_error(b, (int)m->line + 1, (int)m->column + 1,
		 "anchors are not allowed (&%s)", anchor);
	b->fatal = true;
	return true;
}

static void yb_push(ybuild *b, ynode_kind kind, const yev *ev)
{
	if (yb_refuse_anchor(b, ev->anchor, &ev->mark))
		return;
	if (b->depth >= b->lim.max_depth) {
		yb_error(b, (int)ev->mark.line + 1, (int)ev->mark.column + 1,
			 "nesting deeper than %d levels", b->lim.max_depth);
		b->fatal = true;
		return;
	}
	ynode *n = yb_node(b, kind, &ev->mark);
	if (!n)
		return;
	if (b->depth == b->stack_cap) {
		int cap = b->stack_cap ? b->stack_cap * 2 : 16;
		yframe *s = realloc(b->stack, (size_t)cap * sizeof(*s));
		if (!s) {
			yb_oom(b, n->line, n->column);
			return;
		}
		b->stack = s;
		b->stack_cap = cap;
	}
	/* A sequence that is the value of a key of the root mapping. */
	bool stream = kind == YNODE_SEQ && b->depth == 1 && b->stream && b->stream->item &&
		      b->stack[0].node->kind == YNODE_MAP && (b->n_kids - b->stack[0].base) % 2 == 1;
	b->stack[b->depth++] = (yframe){ .node = n, .base = b->n_kids, .stream = stream };
}

/* Whether two scalar keys have the same text.  Interned text is shared, so
 * two interned keys are equal exactly when they point at the same copy. */
static bool same_text(const ynode *x, const ynode *y)
{
	if (x->value == y->value)
		return true;
	if (x->interned_ && y->interned_)
		return false;
	return strcmp(x->value, y->value) == 0;
}

static int key_cmp(const void *x, const void *y)
{
	const ynode *a = *(ynode *const *)x, *b = *(ynode *const *)y;
	int c = strcmp(a->value ? a->value : "", b->value ? b->value : "");
	if (c)
		return c;
	if (a->line != b->line)
		return a->line < b->line ? -1 : 1;
	return a->column < b->column ? -1 : a->column > b->column;
}

typedef struct ydup {
	const ynode *key, *first;
} ydup;

static int dup_cmp(const void *x, const void *y)
{
	const ydup *a = x, *b = y;
	return key_cmp(&a->key, &b->key);
}

static void yb_report_duplicate(ybuild *b, const ynode *key, const ynode *first)
{
	yb_error(b, key->line, key->column, "duplicate key \"%s\" (first defined at %d:%d)",
		 key->value, first->line, first->column);
}

/*
 * Reports every key that repeats an earlier one in the same mapping, in
 * the order of the keys' text and then position.  Small mappings (every
 * mapping of a fleet but the lists' parents) are checked pair by pair
 * without allocating; large ones are sorted.
 */
static void yb_check_duplicates(ybuild *b, ynode *map)
{
	size_t n = map->len;
	if (n < 2)
		return;
	if (n <= SMALL_MAP) {
		ydup dups[SMALL_MAP];
		size_t n_dups = 0;
		for (size_t i = 1; i < n; i++) {
			const ynode *k = map->keys[i];
			if (k->kind != YNODE_SCALAR)
				continue;
			for (size_t j = 0; j < i; j++) {
				const ynode *e = map->keys[j];
				if (e->kind == YNODE_SCALAR && same_text(e, k)) {
					dups[n_dups++] = (ydup){ .key = k, .first = e };
					break;
				}
			}
		}
		if (n_dups > 1)
			qsort(dups, n_dups, sizeof(*dups), dup_cmp);
		for (size_t i = 0; i < n_dups; i++)
			yb_report_duplicate(b, dups[i].key, dups[i].first);
		return;
	}
	ynode **sorted = malloc(n * sizeof(*sorted));
	if (!sorted)
		return;
	memcpy(sorted, map->keys, n * sizeof(*sorted));
	qsort(sorted, n, sizeof(*sorted), key_cmp);
	for (size_t i = 1, first = 0; i < n; i++) {
		if (sorted[i]->kind != YNODE_SCALAR || sorted[first]->kind != YNODE_SCALAR ||
		    strcmp(sorted[i]->value, sorted[first]->value) != 0) {
			first = i;
			continue;
		}
		yb_report_duplicate(b, sorted[i], sorted[first]);
	}
	free(sorted);
}

static void yb_pop(ybuild *b)
{
	yframe *f = &b->stack[b->depth - 1];
	ynode *n = f->node;
	size_t count = b->n_kids - f->base;
	/* No child was ever pushed in an empty document's only collection
	 * ("[]"): b->kids is still NULL, and NULL + 0 is undefined. */
	ynode **kids = count ? b->kids + f->base : NULL;
	ynode **arr = ws_arena_try_alloc_aligned(b->doc->arena, (count ? count : 1) * sizeof(*arr),
						 _Alignof(ynode *));
	if (!arr) {
		yb_oom(b, n->line, n->column);
	} else if (n->kind == YNODE_MAP) {
		size_t len = count / 2;
		n->len = (uint32_t)len;
		n->keys = arr;
		n->items = arr + len;
		for (size_t i = 0; i < len; i++) {
			n->keys[i] = kids[2 * i];
			n->items[i] = kids[2 * i + 1];
		}
		yb_check_duplicates(b, n);
	} else {
		n->len = (uint32_t)count;
		n->items = arr;
		if (count)
			memcpy(arr, kids, count * sizeof(*arr));
	}
	b->n_kids = f->base;
	b->depth--;
	if (!b->fatal)
		yb_attach(b, n);
}

static void yb_scalar(ybuild *b, const yev *ev)
{
	const yaml_mark_t *m = &ev->mark;
	if (yb_refuse_anchor(b, ev->anchor, m))
		return;
	const char *tag = ev->tag;
	bool quoted = ev->style != YAML_PLAIN_SCALAR_STYLE && ev->style != YAML_ANY_SCALAR_STYLE;
	/* On the two errors below the node is still added so that the rest of
	 * the document keeps its shape and later problems are found too. */
	if (tag) {
		/* Only the core schema's tags mean something to us; `!!str 5`
		 * is a way to write the string "5". */
		if (strcmp(tag, YAML_STR_TAG) == 0)
			quoted = true;
		else if (strncmp(tag, "tag:yaml.org,2002:", 18) != 0)
			yb_error(b, (int)m->line + 1, (int)m->column + 1,
				 "unsupported tag \"%s\"", tag);
	}
	size_t len = ev->length;
	const char *text = ev->value;
	if (len > UINT32_MAX) {
		yb_error(b, (int)m->line + 1, (int)m->column + 1,
			 "a scalar is longer than %u bytes", UINT32_MAX);
		b->fatal = true;
		return;
	}
	bool has_nul, interned;
	const char *value = yb_text(b, text, len, &has_nul, &interned);
	if (!value) {
		yb_oom(b, (int)m->line + 1, (int)m->column + 1);
		return;
	}
	if (has_nul)
		yb_error(b, (int)m->line + 1, (int)m->column + 1,
			 "strings must not contain NUL characters");
	ynode *n = yb_node(b, YNODE_SCALAR, m);
	if (!n)
		return;
	n->value = value;
	n->value_len = (uint32_t)len;
	n->quoted = quoted;
	n->interned_ = interned;
	yb_attach(b, n);
}

/* libyaml's reader errors carry a byte offset, not a mark: turn it into a
 * line and column (counted in characters, as libyaml does). */
static void offset_position(const char *buf, size_t len, size_t off, int *line, int *col)
{
	int l = 1, c = 1;
	for (size_t i = 0; i < off && i < len; i++) {
		if (buf[i] == '\n') {
			l++;
			c = 1;
		} else if (((unsigned char)buf[i] & 0xC0) != 0x80) {
			c++;
		}
	}
	*line = l;
	*col = c;
}

/* offset_position for a file, read again from the start. */
static void file_offset_position(FILE *fp, size_t off, int *line, int *col)
{
	int l = 1, c = 1;
	char chunk[8192];
	size_t pos = 0, got;
	rewind(fp);
	while (pos < off && (got = fread(chunk, 1, sizeof(chunk), fp)) > 0) {
		for (size_t i = 0; i < got && pos < off; i++, pos++) {
			if (chunk[i] == '\n') {
				l++;
				c = 1;
			} else if (((unsigned char)chunk[i] & 0xC0) != 0x80) {
				c++;
			}
		}
	}
	*line = l;
	*col = c;
}

/* A parse error of libyaml, taken out of its parser: a chunk parsed on
 * another thread (yb_run_split) reports it later, moved to where the chunk
 * is in the document. */
typedef struct yperr {
	yaml_error_type_t error;
	const char *problem, *context;   /* libyaml's static strings */
	size_t line, column;             /* problem_mark, 0-based */
	size_t offset;                   /* reader errors: problem_offset, in bytes */
} yperr;

static yperr yperr_of(const yaml_parser_t *p)
{
	return (yperr){ .error = p->error, .problem = p->problem, .context = p->context,
			.line = p->problem_mark.line, .column = p->problem_mark.column,
			.offset = p->problem_offset };
}

static void yb_report_error(ybuild *b, const yperr *e)
{
	int line, col;
	ysource *src = b->src;
	if (e->error == YAML_READER_ERROR && src->too_large) {
		yb_error(b, 0, 0, "document is too large (the limit is %zu bytes)", src->max);
		return;
	}
	if (e->error == YAML_READER_ERROR && src->read_errno) {
		yb_error(b, 0, 0, "cannot read: %s", strerror(src->read_errno));
		return;
	}
	if (e->error == YAML_READER_ERROR && src->fp) {
		file_offset_position(src->fp, e->offset, &line, &col);
	} else if (e->error == YAML_READER_ERROR) {
		offset_position(src->buf, src->len, e->offset, &line, &col);
	} else {
		line = (int)e->line + 1;
		col = (int)e->column + 1;
	}
	const char *problem = e->problem ? e->problem : "cannot parse the document";
	if (e->error == YAML_MEMORY_ERROR)
		problem = "out of memory";
	if (e->context)
		yb_error(b, line, col, "%s %s", problem, e->context);
	else
		yb_error(b, line, col, "%s", problem);
}

static void yb_parser_error(ybuild *b, const yaml_parser_t *p)
{
	yperr e = yperr_of(p);
	yb_report_error(b, &e);
}

/* Hands one event to the builder; true at the end of the stream. */
static bool yb_event(ybuild *b, const yev *ev, int *documents)
{
	const yaml_mark_t *m = &ev->mark;
	switch (ev->type) {
	case YAML_STREAM_END_EVENT:
		return true;
	case YAML_DOCUMENT_START_EVENT:
		if (++*documents > 1) {
			yb_error(b, (int)m->line + 1, (int)m->column + 1,
				 "expected a single document, found another one");
			b->fatal = true;
		}
		break;
	case YAML_ALIAS_EVENT:
		yb_error(b, (int)m->line + 1, (int)m->column + 1,
			 "aliases are not allowed (*%s)", ev->anchor);
		b->fatal = true;
		break;
	case YAML_SCALAR_EVENT:
		yb_scalar(b, ev);
		break;
	case YAML_SEQUENCE_START_EVENT:
		yb_push(b, YNODE_SEQ, ev);
		break;
	case YAML_MAPPING_START_EVENT:
		yb_push(b, YNODE_MAP, ev);
		break;
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		if (b->depth > 0)
			yb_pop(b);
		break;
	default:
		break;
	}
	return false;
}

/* Feeds libyaml's events to the builder until the end or a fatal problem. */
static void yb_run(ybuild *b, yaml_parser_t *parser)
{
	int documents = 0;
	bool done = false;
	while (!done && !b->fatal) {
		yaml_event_t ev;
		if (!yaml_parser_parse(parser, &ev)) {
			yb_parser_error(b, parser);
			break;
		}
		yev e;
		yev_from(&e, &ev);
		done = yb_event(b, &e, &documents);
		yaml_event_delete(&ev);
	}
}

/*
 * A large document is parsed on two threads: libyaml's scanner and parser
 * run on a second thread, which copies what the builder needs of each event
 * into a batch and frees the event at once (memory freed where it was
 * allocated stays cheap), while this thread builds the tree and runs the
 * stream callback.  The two halves cost about the same, so a big fleet file
 * is read in little more than the time libyaml alone takes.  The events
 * reach the builder in the same order, and a parse error is reported after
 * every event before it, so the result and the diagnostics are yb_run's.
 */
#define PIPE_MIN_BYTES ((size_t)1 << 20)
#define PIPE_BATCH 4096
#define PIPE_DEPTH 4
#define NO_TEXT SIZE_MAX

typedef struct pev {
	yaml_event_type_t type;
	yaml_scalar_style_t style;
	yaml_mark_t mark;
	size_t anchor, tag, value, length;   /* offsets into the batch text */
} pev;

typedef struct pbatch {
	pev ev[PIPE_BATCH];
	size_t n;
	char *text;
	size_t text_len, text_cap;
	bool oom;
} pbatch;

typedef struct ypipe {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	yaml_parser_t *parser;
	pbatch batch[PIPE_DEPTH];
	size_t head, tail;       /* batches [head, tail) are full, mod PIPE_DEPTH */
	bool stop;               /* the builder wants no more */
	bool ended;              /* the parser thread is done */
	bool error;              /* ... because of a parse error */
	bool waiting;            /* the builder sleeps for a batch */
} ypipe;

static size_t pbatch_text(pbatch *pb, const char *s, size_t n)
{
	if (!s)
		return NO_TEXT;
	if (pb->text_len + n + 1 > pb->text_cap) {
		size_t cap = pb->text_cap ? pb->text_cap : 64 * 1024;
		while (cap < pb->text_len + n + 1)
			cap *= 2;
		char *t = realloc(pb->text, cap);
		if (!t) {
			pb->oom = true;
			return NO_TEXT;
		}
		pb->text = t;
		pb->text_cap = cap;
	}
	size_t off = pb->text_len;
	memcpy(pb->text + off, s, n);
	pb->text[off + n] = '\0';
	pb->text_len += n + 1;
	return off;
}

static void pbatch_add(pbatch *pb, const yaml_event_t *ev)
{
	yev e;
	yev_from(&e, ev);
	pev *p = &pb->ev[pb->n++];
	*p = (pev){ .type = e.type, .style = e.style, .mark = e.mark, .length = e.length };
	p->anchor = pbatch_text(pb, e.anchor, e.anchor ? strlen(e.anchor) : 0);
	p->tag = pbatch_text(pb, e.tag, e.tag ? strlen(e.tag) : 0);
	p->value = pbatch_text(pb, e.value, e.length);
}

static void *ypipe_main(void *arg)
{
	ypipe *p = arg;
	bool more = true, error = false;
	while (more) {
		pthread_mutex_lock(&p->mu);
		while (!p->stop && p->tail - p->head == PIPE_DEPTH)
			pthread_cond_wait(&p->cv, &p->mu);
		bool stop = p->stop;
		pbatch *pb = &p->batch[p->tail % PIPE_DEPTH];
		pthread_mutex_unlock(&p->mu);
		if (stop)
			break;
		/* The batch is this thread's until it is published. */
		pb->n = 0;
		pb->text_len = 0;
		while (pb->n < PIPE_BATCH && !pb->oom) {
			yaml_event_t ev;
			if (!yaml_parser_parse(p->parser, &ev)) {
				error = true;
				more = false;
				break;
			}
			pbatch_add(pb, &ev);
			bool end = ev.type == YAML_STREAM_END_EVENT;
			yaml_event_delete(&ev);
			if (end) {
				more = false;
				break;
			}
		}
		if (pb->oom)
			more = false;
		pthread_mutex_lock(&p->mu);
		p->tail++;
		if (p->waiting)
			pthread_cond_signal(&p->cv);
		pthread_mutex_unlock(&p->mu);
	}
	pthread_mutex_lock(&p->mu);
	p->ended = true;
	p->error = error;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static const char *pbatch_str(const pbatch *pb, size_t off)
{
	return off == NO_TEXT ? NULL : pb->text + off;
}

/* yb_run on two threads; false when the thread could not be started (then
 * nothing was consumed and yb_run can take over). */
static bool yb_run_pipelined(ybuild *b, yaml_parser_t *parser)
{
	ypipe *p = calloc(1, sizeof(*p));
	if (!p)
		return false;
	p->parser = parser;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	pthread_t th;
	if (pthread_create(&th, NULL, ypipe_main, p) != 0) {
		pthread_cond_destroy(&p->cv);
		pthread_mutex_destroy(&p->mu);
		free(p);
		return false;
	}
	int documents = 0;
	bool done = false, oom = false;
	for (;;) {
		pthread_mutex_lock(&p->mu);
		while (p->head == p->tail && !p->ended) {
			p->waiting = true;
			pthread_cond_wait(&p->cv, &p->mu);
			p->waiting = false;
		}
		bool empty = p->head == p->tail;
		pbatch *pb = &p->batch[p->head % PIPE_DEPTH];
		pthread_mutex_unlock(&p->mu);
		if (empty)
			break;
		for (size_t i = 0; i < pb->n && !done && !b->fatal; i++) {
			const pev *x = &pb->ev[i];
			yev e = { .type = x->type, .style = x->style, .mark = x->mark,
				  .anchor = pbatch_str(pb, x->anchor), .tag = pbatch_str(pb, x->tag),
				  .value = pbatch_str(pb, x->value), .length = x->length };
			done = yb_event(b, &e, &documents);
		}
		if (pb->oom && !done && !b->fatal) {
			oom = true;
			yb_oom(b, 0, 0);
			b->fatal = true;
		}
		pthread_mutex_lock(&p->mu);
		bool was_full = p->tail - p->head == PIPE_DEPTH;
		p->head++;
		if (b->fatal || done)
			p->stop = true;
		if (was_full || p->stop)
			pthread_cond_signal(&p->cv);
		pthread_mutex_unlock(&p->mu);
	}
	pthread_join(th, NULL);
	if (p->error && !done && !b->fatal && !oom)
		yb_parser_error(b, parser);
	for (size_t i = 0; i < PIPE_DEPTH; i++)
		free(p->batch[i].text);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
	return true;
}

/*
 * A large document in memory is parsed in chunks, on several threads at
 * once ("in chunks"): libyaml alone takes most of the time of reading a big fleet, and
 * one parser cannot use a second core.  libyaml still parses every byte; we
 * only choose where to cut, speculatively, and libyaml's own events tell
 * whether the cut was good.
 *
 * A cut is made at the start of a line of exactly C spaces followed by
 * "- ", C being the indentation of the first such line of the document (in
 * a fleet: the entries of `clusters` and `tenants`).  At such a line the
 * state of a parse is fully known if it is "inside a block sequence at
 * column C that is the value of a key of a block mapping at column 0 (the
 * root)": the line closes every deeper collection and scalar (the indents
 * of libyaml's scanner unroll to C, plain and block scalars end at a
 * column that low; a quoted scalar or flow collection still open would be
 * an error at the end of its chunk), so what follows parses the same
 * whatever came before.  That state is what the two lines "x:" and "  - "
 * (C spaces) leave, so chunk i > 0 is parsed as the text "x:\n" followed
 * by its bytes, and its first five events (stream, document, mapping,
 * scalar "x", sequence) are dropped.
 *
 * A chunk is good when it parses without error and, at its end, libyaml
 * closes exactly that state: its last four events are the end of a block
 * sequence at column C, opened at depth 1, then the end of a block mapping
 * at column 0, of the document and of the stream; those four are dropped
 * too.  Chunk 0 is the start of the real document; it must also declare no
 * %TAG directive (tag handles do not carry over to the other chunks).  By
 * induction every good chunk's events are exactly those a single parse of
 * the whole document gives for its bytes; their marks are moved by the
 * lines of the chunks before it (counted by libyaml: the stream end's mark
 * of each chunk).
 *
 * When a chunk is not good (a cut inside a multi-line quoted scalar or
 * flow collection, a second root key between two cuts, a syntax error),
 * the chunks before it are kept and the state at its start is known: it is
 * parsed again together with the next chunk, on this thread while the
 * workers go on (one long scalar across one cut); if that is not good
 * either, the rest of the document is parsed in one piece from there,
 * which gives the single parse's events and errors.  If chunk 0 is not
 * good, nothing was consumed and the caller parses the document as before.
 * The last chunk runs to the end of the input and may hold anything (more
 * root keys, a second document); an error in it is the document's.
 *
 * Workers take chunks in order and stay at most SPLIT_AHEAD chunks ahead
 * of the builder, which consumes each whole chunk once it is verified.
 *
 * One difference remains, in documents that are refused anyway: libyaml's
 * reader decodes up to 16 KiB ahead of its parser, so in one piece bad
 * UTF-8 (or a control character) is reported before problems in the text
 * just before it, which a chunk ending earlier does report.  Either way
 * the document is refused and no problem is placed past the reader's
 * (tests/unit/fleet/test_ydoc.c and fuzz/fuzz_yaml.c check both).
 */
#define SPLIT_CHUNK ((size_t)512 << 10)
#define SPLIT_MAX_CHUNKS ((size_t)1 << 16)
#define SPLIT_MAX_COLUMN 64
#define SPLIT_WORKERS 2
#define SPLIT_AHEAD 4
#define SPLIT_PREFIX "x:\n"
#define SPLIT_PREFIX_LEN (sizeof(SPLIT_PREFIX) - 1)
#define SPLIT_PREFIX_EVENTS 5
#define SPLIT_CLOSING_EVENTS 4

typedef enum { CHUNK_WAITING, CHUNK_GOOD, CHUNK_BAD, CHUNK_ERROR } chunk_state;

typedef struct ychunk {
	size_t start, end;       /* bytes of the document; the last ends at its end */
	pbatch **batches;        /* its events, in order */
	size_t n_batches, cap_batches;
	size_t lines;            /* line breaks in [start, end), as libyaml counts them */
	yperr err;               /* CHUNK_ERROR: the error after its events */
	chunk_state state;       /* under ysplit.mu once the chunk is taken */
} ychunk;

typedef struct ysplit {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	const char *buf;
	size_t len;
	size_t column;
	size_t chunk;            /* bytes per chunk, about */
	ychunk *chunks;
	size_t n;
	size_t next;             /* the next chunk to parse */
	size_t consumed;         /* chunks the builder is done with */
	bool stop;
	pbatch **spare;          /* batches to reuse */
	size_t n_spare, cap_spare;
} ysplit;

/* libyaml's read handler for a chunk: the prefix, then the chunk's bytes. */
typedef struct creader {
	const char *pre, *buf;
	size_t pre_len, len;
} creader;

static int chunk_read_cb(void *data, unsigned char *buffer, size_t size, size_t *size_read)
{
	creader *r = data;
	size_t n = r->pre_len < size ? r->pre_len : size;
	memcpy(buffer, r->pre, n);
	r->pre += n;
	r->pre_len -= n;
	size_t m = r->len < size - n ? r->len : size - n;
	if (m) {
		memcpy(buffer + n, r->buf, m);
		r->buf += m;
		r->len -= m;
	}
	*size_read = n + m;
	return 1;
}

/* The column of the document's first line of spaces then "- ", or 0 when
 * there is none this side of SPLIT_MAX_COLUMN (0 is not used: an
 * indentless sequence is parsed in one piece). */
static size_t split_column(const char *buf, size_t len)
{
	for (size_t i = 0; i < len;) {
		const char *nl = memchr(buf + i, '\n', len - i);
		size_t end = nl ? (size_t)(nl - buf) : len, c = i;
		while (c < end && buf[c] == ' ' && c - i < SPLIT_MAX_COLUMN)
			c++;
		if (c > i && c + 1 < end && buf[c] == '-' && buf[c + 1] == ' ')
			return c - i;
		i = end + 1;
	}
	return 0;
}

/* Cuts the document into chunks of about SPLIT_CHUNK bytes; false when it
 * has fewer than two. */
static bool split_plan(ysplit *s)
{
	char pat[SPLIT_MAX_COLUMN + 3];
	pat[0] = '\n';
	memset(pat + 1, ' ', s->column);
	memcpy(pat + 1 + s->column, "- ", 2);
	size_t pat_len = s->column + 3;
	size_t want = s->len / s->chunk;
	if (want > SPLIT_MAX_CHUNKS)
		want = SPLIT_MAX_CHUNKS;
	if (want < 2)
		return false;
	s->chunks = calloc(want, sizeof(*s->chunks));
	if (!s->chunks)
		return false;
	size_t prev = 0;
	s->n = 1;
	for (size_t k = 1; k < want; k++) {
		size_t from = k * (s->len / want);
		if (from <= prev)
			from = prev;
		const char *hit = memmem(s->buf + from, s->len - from, pat, pat_len);
		if (!hit)
			break;
		size_t cut = (size_t)(hit - s->buf) + 1;
		if (cut <= prev)
			continue;
		s->chunks[s->n - 1].end = cut;
		s->chunks[s->n++].start = cut;
		prev = cut;
	}
	s->chunks[s->n - 1].end = s->len;
	return s->n >= 2;
}

static pbatch *split_batch(ysplit *s)
{
	pthread_mutex_lock(&s->mu);
	pbatch *pb = s->n_spare ? s->spare[--s->n_spare] : NULL;
	pthread_mutex_unlock(&s->mu);
	if (!pb)
		pb = calloc(1, sizeof(*pb));
	if (pb) {
		pb->n = 0;
		pb->text_len = 0;
		pb->oom = false;
	}
	return pb;
}

/* Gives a chunk's batches back for reuse (freed when there is no room). */
static void split_release(ysplit *s, ychunk *c)
{
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < c->n_batches; i++) {
		pbatch *pb = c->batches[i];
		if (s->n_spare == s->cap_spare) {
			size_t cap = s->cap_spare ? s->cap_spare * 2 : 16;
			pbatch **sp = realloc(s->spare, cap * sizeof(*sp));
			if (!sp) {
				free(pb->text);
				free(pb);
				continue;
			}
			s->spare = sp;
			s->cap_spare = cap;
		}
		s->spare[s->n_spare++] = pb;
	}
	pthread_mutex_unlock(&s->mu);
	free(c->batches);
	c->batches = NULL;
	c->n_batches = c->cap_batches = 0;
}

static bool chunk_push(ychunk *c, pbatch *pb)
{
	if (c->n_batches == c->cap_batches) {
		size_t cap = c->cap_batches ? c->cap_batches * 2 : 16;
		pbatch **bs = realloc(c->batches, cap * sizeof(*bs));
		if (!bs)
			return false;
		c->batches = bs;
		c->cap_batches = cap;
	}
	c->batches[c->n_batches++] = pb;
	return true;
}

/* What a chunk's events say about its end (see the comment above). */
typedef struct chunk_check {
	size_t count;            /* events so far */
	size_t depth;
	bool root_ok;            /* depth 0 is a block mapping at column 0 */
	bool seq_ok;             /* depth 1 is a block sequence at the split column */
	size_t closed_at;        /* the last event that closed depth 1, or SIZE_MAX */
	bool closed_ok;          /* ... and it closed that sequence in that mapping */
	yaml_event_type_t last[SPLIT_CLOSING_EVENTS];
	bool directives;         /* chunk 0 declares %TAG handles */
	size_t end_line, end_column;   /* the stream end's mark */
} chunk_check;

static void check_event(chunk_check *k, const yaml_event_t *ev, size_t column)
{
	switch (ev->type) {
	case YAML_MAPPING_START_EVENT:
	case YAML_SEQUENCE_START_EVENT:
		if (k->depth == 0)
			k->root_ok = ev->type == YAML_MAPPING_START_EVENT &&
				     ev->data.mapping_start.style == YAML_BLOCK_MAPPING_STYLE &&
				     ev->start_mark.column == 0;
		else if (k->depth == 1)
			k->seq_ok = ev->type == YAML_SEQUENCE_START_EVENT &&
				    ev->data.sequence_start.style == YAML_BLOCK_SEQUENCE_STYLE &&
				    ev->start_mark.column == column;
		k->depth++;
		break;
	case YAML_MAPPING_END_EVENT:
	case YAML_SEQUENCE_END_EVENT:
		if (k->depth > 0 && --k->depth == 1) {
			k->closed_at = k->count;
			k->closed_ok = k->root_ok && k->seq_ok;
		}
		break;
	case YAML_DOCUMENT_START_EVENT:
		if (ev->data.document_start.tag_directives.start !=
		    ev->data.document_start.tag_directives.end)
			k->directives = true;
		break;
	case YAML_STREAM_END_EVENT:
		k->end_line = ev->start_mark.line;
		k->end_column = ev->start_mark.column;
		break;
	default:
		break;
	}
	memmove(k->last, k->last + 1, (SPLIT_CLOSING_EVENTS - 1) * sizeof(k->last[0]));
	k->last[SPLIT_CLOSING_EVENTS - 1] = ev->type;
	k->count++;
}

static const yaml_event_type_t prefix_events[SPLIT_PREFIX_EVENTS] = {
	YAML_STREAM_START_EVENT, YAML_DOCUMENT_START_EVENT, YAML_MAPPING_START_EVENT,
	YAML_SCALAR_EVENT, YAML_SEQUENCE_START_EVENT,
};
static const yaml_event_type_t closing_events[SPLIT_CLOSING_EVENTS] = {
	YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT, YAML_DOCUMENT_END_EVENT,
	YAML_STREAM_END_EVENT,
};

/* Parses the bytes [c->start, c->end) into c's batches and says what they
 * are: the document's first chunk when !i, the last one when `last`. */
static chunk_state chunk_parse(ysplit *s, ychunk *c, size_t i, bool last)
{
	creader rd = { .pre = i ? SPLIT_PREFIX : "", .pre_len = i ? SPLIT_PREFIX_LEN : 0,
		       .buf = s->buf + c->start, .len = c->end - c->start };
	yaml_parser_t parser;
	if (!yaml_parser_initialize(&parser))
		return CHUNK_BAD;
	yaml_parser_set_input(&parser, chunk_read_cb, &rd);
	chunk_check k = { .closed_at = SIZE_MAX };
	pbatch *pb = NULL;
	chunk_state st = CHUNK_BAD;
	for (;;) {
		yaml_event_t ev;
		if (!yaml_parser_parse(&parser, &ev)) {
			if (last) {
				c->err = yperr_of(&parser);
				st = CHUNK_ERROR;
			}
			break;
		}
		size_t at = k.count;
		check_event(&k, &ev, s->column);
		bool end = ev.type == YAML_STREAM_END_EVENT, keep = true;
		if (i && at < SPLIT_PREFIX_EVENTS) {
			keep = false;
			if (ev.type != prefix_events[at]) {
				yaml_event_delete(&ev);
				break;
			}
		}
		if (keep && (!pb || pb->n == PIPE_BATCH)) {
			if (pb && !chunk_push(c, pb)) {
				free(pb->text);
				free(pb);
				pb = NULL;
				yaml_event_delete(&ev);
				break;
			}
			if (!(pb = split_batch(s))) {
				yaml_event_delete(&ev);
				break;
			}
		}
		if (keep)
			pbatch_add(pb, &ev);
		yaml_event_delete(&ev);
		if (pb && pb->oom)
			break;
		if (end) {
			st = CHUNK_GOOD;
			break;
		}
		/* The builder has what it needs: stop early. */
		if ((k.count & 1023) == 0 && __atomic_load_n(&s->stop, __ATOMIC_RELAXED))
			break;
	}
	yaml_parser_delete(&parser);
	if (pb && !chunk_push(c, pb)) {
		free(pb->text);
		free(pb);
		st = CHUNK_BAD;
	}
	if (st != CHUNK_GOOD || last)
		return st;
	/* Not the last: it must end in the state it began with. */
	if (k.count < SPLIT_CLOSING_EVENTS + (i ? SPLIT_PREFIX_EVENTS : 0) ||
	    k.closed_at != k.count - SPLIT_CLOSING_EVENTS || !k.closed_ok ||
	    memcmp(k.last, closing_events, sizeof(closing_events)) != 0 ||
	    k.end_column != 0 || (i == 0 && k.directives))
		return CHUNK_BAD;
	c->lines = k.end_line - (i ? 1 : 0);
	/* Drop the closing events: they belong to the end of the chunk, not of
	 * the document. */
	for (size_t left = SPLIT_CLOSING_EVENTS; left > 0;) {
		if (!c->n_batches)
			return CHUNK_BAD;
		pbatch *tail = c->batches[c->n_batches - 1];
		size_t drop = tail->n < left ? tail->n : left;
		tail->n -= drop;
		left -= drop;
		if (tail->n == 0) {
			c->n_batches--;
			free(tail->text);
			free(tail);
		}
	}
	return CHUNK_GOOD;
}

static void *split_main(void *arg)
{
	ysplit *s = arg;
	pthread_mutex_lock(&s->mu);
	for (;;) {
		while (!__atomic_load_n(&s->stop, __ATOMIC_RELAXED) && s->next < s->n &&
		       s->next >= s->consumed + SPLIT_AHEAD)
			pthread_cond_wait(&s->cv, &s->mu);
		if (__atomic_load_n(&s->stop, __ATOMIC_RELAXED) || s->next >= s->n)
			break;
		size_t i = s->next++;
		pthread_mutex_unlock(&s->mu);
		chunk_state st = chunk_parse(s, &s->chunks[i], i, i + 1 == s->n);
		pthread_mutex_lock(&s->mu);
		s->chunks[i].state = st;
		pthread_cond_broadcast(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

/* Feeds a chunk's events to the builder, their lines moved by `delta`;
 * true at the end of the stream. */
static bool split_feed(ybuild *b, const ychunk *c, size_t delta, int *documents)
{
	for (size_t j = 0; j < c->n_batches; j++) {
		const pbatch *pb = c->batches[j];
		for (size_t i = 0; i < pb->n; i++) {
			const pev *x = &pb->ev[i];
			yev e = { .type = x->type, .style = x->style, .mark = x->mark,
				  .anchor = pbatch_str(pb, x->anchor), .tag = pbatch_str(pb, x->tag),
				  .value = pbatch_str(pb, x->value), .length = x->length };
			e.mark.line += delta;
			if (yb_event(b, &e, documents) || b->fatal)
				return true;
		}
	}
	return false;
}

/* Reports a parse error of the chunk input that starts at byte `start`,
 * line `line` (0-based) of the document, after the prefix line. */
static void yb_chunk_error(ybuild *b, yperr e, size_t start, size_t line)
{
	e.line += line - 1;
	e.offset = e.offset >= SPLIT_PREFIX_LEN ? start + e.offset - SPLIT_PREFIX_LEN : start;
	yb_report_error(b, &e);
}

/* The rest of the document from `start` (a cut whose state is known), on
 * this thread: the events and errors of a single parse. */
static void split_finish(ybuild *b, const char *buf, size_t len, size_t start, size_t line,
			 int *documents)
{
	creader rd = { .pre = SPLIT_PREFIX, .pre_len = SPLIT_PREFIX_LEN, .buf = buf + start,
		       .len = len - start };
	yaml_parser_t parser;
	if (!yaml_parser_initialize(&parser)) {
		yb_oom(b, 0, 0);
		return;
	}
	yaml_parser_set_input(&parser, chunk_read_cb, &rd);
	size_t delta = line - 1;
	for (size_t n = 0; !b->fatal; n++) {
		yaml_event_t ev;
		if (!yaml_parser_parse(&parser, &ev)) {
			yb_chunk_error(b, yperr_of(&parser), start, line);
			break;
		}
		bool done = false;
		if (n >= SPLIT_PREFIX_EVENTS) {
			yev e;
			yev_from(&e, &ev);
			e.mark.line += delta;
			done = yb_event(b, &e, documents);
		}
		yaml_event_delete(&ev);
		if (done)
			break;
	}
	yaml_parser_delete(&parser);
}

static void split_free(ysplit *s)
{
	for (size_t i = 0; i < s->n; i++) {
		ychunk *c = &s->chunks[i];
		for (size_t j = 0; j < c->n_batches; j++) {
			free(c->batches[j]->text);
			free(c->batches[j]);
		}
		free(c->batches);
	}
	for (size_t i = 0; i < s->n_spare; i++) {
		free(s->spare[i]->text);
		free(s->spare[i]);
	}
	free(s->spare);
	free(s->chunks);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

/* Parses b->src (a buffer) in chunks; false when it cannot be cut, or its
 * first chunk is not good: then nothing was consumed. */
static bool yb_run_split(ybuild *b)
{
	const char *buf = b->src->buf;
	size_t len = b->src->len;
	/* A BOM other than UTF-8's makes libyaml read UTF-16, which the
	 * chunks (read as UTF-8 after their ASCII prefix) would not. */
	if (len < 2 * b->lim.chunk_bytes || (unsigned char)buf[0] == 0xFE ||
	    (unsigned char)buf[0] == 0xFF || buf[0] == 0 || buf[1] == 0)
		return false;
	ysplit *s = calloc(1, sizeof(*s));
	if (!s)
		return false;
	s->buf = buf;
	s->len = len;
	s->chunk = b->lim.chunk_bytes;
	s->column = split_column(buf, len);
	if (s->column == 0 || !split_plan(s)) {
		free(s->chunks);
		free(s);
		return false;
	}
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	pthread_t th[SPLIT_WORKERS];
	size_t n_th = 0;
	while (n_th < SPLIT_WORKERS && pthread_create(&th[n_th], NULL, split_main, s) == 0)
		n_th++;
	if (n_th == 0) {
		split_free(s);
		return false;
	}

	int documents = 0;
	size_t line = 0, resume = SIZE_MAX;
	bool done = false;
	for (size_t i = 0; i < s->n && !done; i++) {
		ychunk *c = &s->chunks[i];
		pthread_mutex_lock(&s->mu);
		while (c->state == CHUNK_WAITING)
			pthread_cond_wait(&s->cv, &s->mu);
		chunk_state st = c->state;
		pthread_mutex_unlock(&s->mu);
		ychunk merged;
		size_t next = i + 1;
		if (st == CHUNK_BAD && i > 0 && next < s->n) {
			/* A bad cut is most often one long scalar or flow
			 * collection across it: this chunk and the next, as one,
			 * here while the workers go on. */
			merged = (ychunk){ .start = c->start, .end = s->chunks[next].end };
			c = &merged;
			next++;
			st = chunk_parse(s, c, i, next == s->n);
		}
		if (st == CHUNK_BAD) {
			if (c == &merged)
				split_release(s, c);
			resume = i;
			break;
		}
		done = split_feed(b, c, i ? line - 1 : 0, &documents);
		if (st == CHUNK_ERROR && !done) {
			yb_chunk_error(b, c->err, c->start, line);
			done = true;
		}
		line += c->lines;
		split_release(s, c);
		pthread_mutex_lock(&s->mu);
		s->consumed = next;
		pthread_cond_broadcast(&s->cv);
		pthread_mutex_unlock(&s->mu);
		i = next - 1;
	}
	pthread_mutex_lock(&s->mu);
	__atomic_store_n(&s->stop, true, __ATOMIC_RELAXED);
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	for (size_t t = 0; t < n_th; t++)
		pthread_join(th[t], NULL);
	size_t start = resume != SIZE_MAX ? s->chunks[resume].start : 0;
	split_free(s);
	if (resume == 0)
		return false;
	if (resume != SIZE_MAX && !b->fatal)
		split_finish(b, buf, len, start, line, &documents);
	return true;
}

/* libyaml's read handler for a file: counts the bytes against the cap. */
static int file_read_cb(void *data, unsigned char *buffer, size_t size, size_t *size_read)
{
	ysource *src = data;
	size_t got = fread(buffer, 1, size, src->fp);
	if (got == 0 && ferror(src->fp)) {
		src->read_errno = errno ? errno : EIO;
		return 0;
	}
	src->read += got;
	if (src->read > src->max) {
		src->too_large = true;
		return 0;
	}
	*size_read = got;
	return 1;
}

static ydoc *ydoc_build(const char *name, ysource *src, const ydoc_limits *limits,
			const ydoc_stream *stream, ws_diags *d)
{
	ybuild b = { .d = d, .src = src, .stream = stream };
	b.lim.max_bytes = limits && limits->max_bytes ? limits->max_bytes : YDOC_DEFAULT_MAX_BYTES;
	b.lim.max_depth = limits && limits->max_depth > 0 ? limits->max_depth : YDOC_DEFAULT_MAX_DEPTH;
	b.lim.max_nodes = limits && limits->max_nodes ? limits->max_nodes : YDOC_DEFAULT_MAX_NODES;
	b.lim.max_threads = limits ? limits->max_threads : 0;
	b.lim.chunk_bytes = limits && limits->chunk_bytes ? limits->chunk_bytes : SPLIT_CHUNK;

	ydoc *doc = calloc(1, sizeof(*doc));
	if (!doc || !(doc->name = strdup(name))) {
		free(doc);
		ws_diag_add(d, name, 0, 0, "out of memory");
		return NULL;
	}
	doc->arena = ws_arena_new();
	if (stream && stream->strings)
		b.strings = stream->strings;
	else if (stream && stream->item)
		b.strings = doc->own_strings = ws_arena_new();
	else
		b.strings = doc->arena;
	b.doc = doc;
	if (!src->fp && src->len > b.lim.max_bytes) {
		yb_error(&b, 0, 0, "document is too large (%zu bytes, the limit is %zu)",
			 src->len, b.lim.max_bytes);
		ydoc_free(doc);
		return NULL;
	}

	yaml_parser_t parser;
	if (!yaml_parser_initialize(&parser)) {
		yb_error(&b, 0, 0, "out of memory");
		ydoc_free(doc);
		return NULL;
	}
	if (src->fp)
		yaml_parser_set_input(&parser, file_read_cb, src);
	else
		yaml_parser_set_input_string(&parser, (const unsigned char *)src->buf, src->len);
	size_t size = src->fp ? src->size : src->len;
	if (b.lim.max_threads == 1)
		yb_run(&b, &parser);
	else if (src->fp || !yb_run_split(&b)) {
		if (size < PIPE_MIN_BYTES || !yb_run_pipelined(&b, &parser))
			yb_run(&b, &parser);
	}
	yaml_parser_delete(&parser);
	free(b.stack);
	free(b.kids);
	free(b.slots);
	free(b.seen);
	if (b.failed) {
		ydoc_free(doc);
		return NULL;
	}
	return doc;
}

ydoc *ydoc_parse_stream(const char *name, const char *buf, size_t len,
			const ydoc_limits *limits, const ydoc_stream *stream, ws_diags *d)
{
	ysource src = { .buf = buf ? buf : "", .len = buf ? len : 0 };
	return ydoc_build(name ? name : "<input>", &src, limits, stream, d);
}

ydoc *ydoc_parse(const char *name, const char *buf, size_t len,
		 const ydoc_limits *limits, ws_diags *d)
{
	return ydoc_parse_stream(name, buf, len, limits, NULL, d);
}

/* Reads all of a stream that is not a regular file (a pipe), refusing
 * more than `max` bytes: one byte past the cap is read so an oversized
 * input is reported as such rather than silently truncated. */
static char *read_all(FILE *fp, const char *path, size_t max, size_t *len_out, ws_diags *d)
{
	size_t cap = 0, len = 0;
	char *buf = NULL;
	for (;;) {
		if (len == cap) {
			if (cap > max) {
				ws_diag_add(d, path, 0, 0,
					    "document is too large (the limit is %zu bytes)", max);
				goto fail;
			}
			size_t ncap = cap ? cap * 2 : 8192;
			if (ncap > max + 1)
				ncap = max + 1;
			if (ncap <= cap)
				ncap = cap + 1;
			char *nb = realloc(buf, ncap);
			if (!nb) {
				ws_diag_add(d, path, 0, 0, "out of memory");
				goto fail;
			}
			buf = nb;
			cap = ncap;
		}
		size_t got = fread(buf + len, 1, cap - len, fp);
		len += got;
		if (got == 0) {
			if (ferror(fp)) {
				ws_diag_add(d, path, 0, 0, "cannot read: %s", strerror(errno));
				goto fail;
			}
			break;
		}
	}
	if (len > max) {
		ws_diag_add(d, path, 0, 0, "document is too large (the limit is %zu bytes)", max);
		goto fail;
	}
	*len_out = len;
	return buf;
fail:
	free(buf);
	return NULL;
}

/* A small regular file is parsed as it is read; one of two chunks or more
 * is read whole, to be parsed in chunks on several threads; one over the
 * cap is refused before reading.  Anything else (a pipe) is read whole
 * first, to be capped the same way. */
ydoc *ydoc_parse_file_stream(const char *path, const ydoc_limits *limits,
			     const ydoc_stream *stream, ws_diags *d)
{
	size_t max = limits && limits->max_bytes ? limits->max_bytes : YDOC_DEFAULT_MAX_BYTES;
	FILE *fp = fopen(path, "rb");
	if (!fp) {
		ws_diag_add(d, path, 0, 0, "cannot open: %s", strerror(errno));
		return NULL;
	}
	ydoc *doc = NULL;
	struct stat st;
	bool regular = fstat(fileno(fp), &st) == 0 && S_ISREG(st.st_mode);
	size_t chunk = limits && limits->chunk_bytes ? limits->chunk_bytes : SPLIT_CHUNK;
	if (regular && (uint64_t)st.st_size > max) {
		ws_diag_add(d, path, 0, 0, "document is too large (the limit is %zu bytes)", max);
	} else if (regular && ((size_t)st.st_size < 2 * chunk ||
			       (limits && limits->max_threads == 1))) {
		ysource src = { .fp = fp, .max = max, .size = (size_t)st.st_size };
		doc = ydoc_build(path, &src, limits, stream, d);
	} else {
		/* A pipe, or a file to be parsed in chunks on several threads
		 * (yb_run_split), which needs the whole text at hand. */
		size_t len;
		char *buf = read_all(fp, path, max, &len, d);
		if (buf) {
			ysource src = { .buf = buf, .len = len };
			doc = ydoc_build(path, &src, limits, stream, d);
			free(buf);
		}
	}
	fclose(fp);
	return doc;
}

ydoc *ydoc_parse_file(const char *path, const ydoc_limits *limits, ws_diags *d)
{
	return ydoc_parse_file_stream(path, limits, NULL, d);
}

const ynode *ydoc_root(const ydoc *doc)
{
	return doc ? doc->root : NULL;
}

const char *ydoc_name(const ydoc *doc)
{
	return doc ? doc->name : NULL;
}

void ydoc_free(ydoc *doc)
{
	if (!doc)
		return;
	ws_arena_free(doc->arena);
	ws_arena_free(doc->own_strings);
	free(doc->name);
	free(doc);
}

/* Key lookups compare lengths first: most keys differ in length from the
 * one looked for, and scalars carry theirs. */
const ynode *ynode_get(const ynode *map, const char *key)
{
	if (!map || map->kind != YNODE_MAP)
		return NULL;
	size_t n = strlen(key);
	for (size_t i = 0; i < map->len; i++) {
		const ynode *k = map->keys[i];
		if (k->kind == YNODE_SCALAR && k->value_len == n && memcmp(k->value, key, n) == 0)
			return map->items[i];
	}
	return NULL;
}

bool ynode_is_null(const ynode *n)
{
	if (!n || n->kind != YNODE_SCALAR || n->quoted)
		return false;
	const char *s = n->value;
	switch (n->value_len) {
	case 0:
		return true;
	case 1:
		return s[0] == '~';
	case 4:
		return strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
	default:
		return false;
	}
}

int ynode_bool(const ynode *n, bool *out)
{
	if (!n || n->kind != YNODE_SCALAR || n->quoted)
		return WS_EINVAL;
	if (strcasecmp(n->value, "true") == 0 || strcasecmp(n->value, "yes") == 0) {
		*out = true;
		return 0;
	}
	if (strcasecmp(n->value, "false") == 0 || strcasecmp(n->value, "no") == 0) {
		*out = false;
		return 0;
	}
	return WS_EINVAL;
}

int ynode_int(const ynode *n, long long *out)
{
	if (!n || n->kind != YNODE_SCALAR || n->quoted || n->value_len == 0)
		return WS_EINVAL;
	const char *s = n->value;
	size_t i = (s[0] == '+' || s[0] == '-') ? 1 : 0;
	if (!s[i])
		return WS_EINVAL;
	for (size_t j = i; s[j]; j++)
		if (!isdigit((unsigned char)s[j]))
			return WS_EINVAL;
	errno = 0;
	char *end;
	long long v = strtoll(s, &end, 10);
	if (errno == ERANGE || *end)
		return WS_EINVAL;
	*out = v;
	return 0;
}

/* A plain scalar that reads as a floating-point number in YAML 1.2's core
 * schema (used only to name the type in messages). */
static bool plain_is_number(const char *s)
{
	if (strcasecmp(s, ".inf") == 0 || strcasecmp(s, "+.inf") == 0 ||
	    strcasecmp(s, "-.inf") == 0 || strcasecmp(s, ".nan") == 0)
		return true;
	if (*s == '+' || *s == '-')
		s++;
	bool digits = false;
	while (isdigit((unsigned char)*s)) {
		s++;
		digits = true;
	}
	if (*s == '.') {
		s++;
		while (isdigit((unsigned char)*s)) {
			s++;
			digits = true;
		}
	}
	if (!digits)
		return false;
	if (*s == 'e' || *s == 'E') {
		s++;
		if (*s == '+' || *s == '-')
			s++;
		if (!isdigit((unsigned char)*s))
			return false;
		while (isdigit((unsigned char)*s))
			s++;
	}
	return *s == '\0';
}

const char *ynode_kind_name(const ynode *n)
{
	if (!n)
		return "nothing";
	switch (n->kind) {
	case YNODE_MAP:
		return "mapping";
	case YNODE_SEQ:
		return "sequence";
	case YNODE_SCALAR:
		break;
	}
	if (n->quoted)
		return "string";
	bool b;
	long long i;
	if (ynode_is_null(n))
		return "null";
	if (ynode_bool(n, &b) == 0)
		return "boolean";
	if (ynode_int(n, &i) == 0)
		return "integer";
	if (plain_is_number(n->value))
		return "number";
	return "string";
}
