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
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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

/* The tree lives in the arena; input-driven sizes use ws_arena_try_alloc
 * so that running out of memory is reported, not fatal. */
struct ydoc {
	char *name;
	ynode *root;
	ws_arena *arena;
};

/* One open collection while the tree is being built. */
typedef struct yframe {
	ynode *node;
	ynode **kids;      /* malloc'd while open; copied to the arena at the end */
	size_t n, cap;
} yframe;

typedef struct ybuild {
	ydoc *doc;
	ws_diags *d;
	const char *buf;
	size_t len;
	ydoc_limits lim;
	yframe *stack;
	int depth, stack_cap;
	size_t nodes;
	bool failed;     /* a problem was reported; keep going only to find more */
	bool fatal;      /* stop consuming events */
	bool have_root;
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

static ynode *yb_node(ybuild *b, ynode_kind kind, const yaml_mark_t *mark)
{
	if (++b->nodes > b->lim.max_nodes) {
		yb_error(b, (int)mark->line + 1, (int)mark->column + 1,
			 "document has more than %zu nodes", b->lim.max_nodes);
		b->fatal = true;
		return NULL;
	}
	ynode *n = ws_arena_try_alloc(b->doc->arena, sizeof(*n));
	if (!n) {
		yb_error(b, (int)mark->line + 1, (int)mark->column + 1, "out of memory");
		b->fatal = true;
		return NULL;
	}
	n->kind = kind;
	n->line = (int)mark->line + 1;
	n->column = (int)mark->column + 1;
	return n;
}

/* Attaches a finished node to the collection being built, or makes it the
 * root. */
static void yb_attach(ybuild *b, ynode *n)
{
	if (b->depth == 0) {
		b->doc->root = n;
		b->have_root = true;
		return;
	}
	yframe *f = &b->stack[b->depth - 1];
	if (f->node->kind == YNODE_MAP && f->n % 2 == 0 && n->kind != YNODE_SCALAR)
		yb_error(b, n->line, n->column, "mapping keys must be scalars");
	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 8;
		ynode **kids = realloc(f->kids, cap * sizeof(*kids));
		if (!kids) {
			yb_error(b, n->line, n->column, "out of memory");
			b->fatal = true;
			return;
		}
		f->kids = kids;
		f->cap = cap;
	}
	f->kids[f->n++] = n;
}

static bool yb_refuse_anchor(ybuild *b, const yaml_char_t *anchor, const yaml_mark_t *m)
{
	if (!anchor)
		return false;
	yb_error(b, (int)m->line + 1, (int)m->column + 1,
		 "anchors are not allowed (&%s)", (const char *)anchor);
	b->fatal = true;
	return true;
}

static void yb_push(ybuild *b, ynode_kind kind, const yaml_event_t *ev)
{
	const yaml_char_t *anchor = kind == YNODE_MAP ? ev->data.mapping_start.anchor
						      : ev->data.sequence_start.anchor;
	if (yb_refuse_anchor(b, anchor, &ev->start_mark))
		return;
	if (b->depth >= b->lim.max_depth) {
		yb_error(b, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
			 "nesting deeper than %d levels", b->lim.max_depth);
		b->fatal = true;
		return;
	}
	ynode *n = yb_node(b, kind, &ev->start_mark);
	if (!n)
		return;
	if (b->depth == b->stack_cap) {
		int cap = b->stack_cap ? b->stack_cap * 2 : 16;
		yframe *s = realloc(b->stack, (size_t)cap * sizeof(*s));
		if (!s) {
			yb_error(b, n->line, n->column, "out of memory");
			b->fatal = true;
			return;
		}
		b->stack = s;
		b->stack_cap = cap;
	}
	b->stack[b->depth++] = (yframe){ .node = n };
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

/* Reports every key that repeats an earlier one in the same mapping. */
static void yb_check_duplicates(ybuild *b, ynode *map)
{
	if (map->len < 2)
		return;
	ynode **sorted = malloc(map->len * sizeof(*sorted));
	if (!sorted)
		return;
	memcpy(sorted, map->keys, map->len * sizeof(*sorted));
	qsort(sorted, map->len, sizeof(*sorted), key_cmp);
	for (size_t i = 1, first = 0; i < map->len; i++) {
		if (sorted[i]->kind != YNODE_SCALAR || sorted[first]->kind != YNODE_SCALAR ||
		    strcmp(sorted[i]->value, sorted[first]->value) != 0) {
			first = i;
			continue;
		}
		yb_error(b, sorted[i]->line, sorted[i]->column,
			 "duplicate key \"%s\" (first defined at %d:%d)", sorted[i]->value,
			 sorted[first]->line, sorted[first]->column);
	}
	free(sorted);
}

static void yb_pop(ybuild *b)
{
	yframe *f = &b->stack[b->depth - 1];
	ynode *n = f->node;
	if (n->kind == YNODE_MAP) {
		n->len = f->n / 2;
		n->keys = ws_arena_try_alloc(b->doc->arena, n->len * sizeof(ynode *));
		n->items = ws_arena_try_alloc(b->doc->arena, n->len * sizeof(ynode *));
		if (!n->keys || !n->items) {
			yb_error(b, n->line, n->column, "out of memory");
			b->fatal = true;
		} else {
			for (size_t i = 0; i < n->len; i++) {
				n->keys[i] = f->kids[2 * i];
				n->items[i] = f->kids[2 * i + 1];
			}
			yb_check_duplicates(b, n);
		}
	} else {
		n->len = f->n;
		n->items = ws_arena_try_alloc(b->doc->arena, n->len * sizeof(ynode *));
		if (!n->items) {
			yb_error(b, n->line, n->column, "out of memory");
			b->fatal = true;
		} else if (n->len) {
			memcpy(n->items, f->kids, n->len * sizeof(ynode *));
		}
	}
	free(f->kids);
	b->depth--;
	if (!b->fatal)
		yb_attach(b, n);
}

static void yb_scalar(ybuild *b, const yaml_event_t *ev)
{
	const yaml_mark_t *m = &ev->start_mark;
	if (yb_refuse_anchor(b, ev->data.scalar.anchor, m))
		return;
	const char *tag = (const char *)ev->data.scalar.tag;
	bool quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE &&
		      ev->data.scalar.style != YAML_ANY_SCALAR_STYLE;
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
	size_t len = ev->data.scalar.length;
	if (memchr(ev->data.scalar.value, '\0', len))
		yb_error(b, (int)m->line + 1, (int)m->column + 1,
			 "strings must not contain NUL characters");
	ynode *n = yb_node(b, YNODE_SCALAR, m);
	if (!n)
		return;
	char *v = ws_arena_try_alloc(b->doc->arena, len + 1);
	if (!v) {
		yb_error(b, n->line, n->column, "out of memory");
		b->fatal = true;
		return;
	}
	memcpy(v, ev->data.scalar.value, len);
	v[len] = '\0';
	n->value = v;
	n->value_len = len;
	n->quoted = quoted;
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

static void yb_parser_error(ybuild *b, const yaml_parser_t *p)
{
	int line, col;
	if (p->error == YAML_READER_ERROR) {
		offset_position(b->buf, b->len, p->problem_offset, &line, &col);
	} else {
		line = (int)p->problem_mark.line + 1;
		col = (int)p->problem_mark.column + 1;
	}
	const char *problem = p->problem ? p->problem : "cannot parse the document";
	if (p->error == YAML_MEMORY_ERROR)
		problem = "out of memory";
	if (p->context)
		yb_error(b, line, col, "%s %s", problem, p->context);
	else
		yb_error(b, line, col, "%s", problem);
}

ydoc *ydoc_parse(const char *name, const char *buf, size_t len,
		 const ydoc_limits *limits, ws_diags *d)
{
	if (!name)
		name = "<input>";
	if (!buf) {
		buf = "";
		len = 0;
	}
	ybuild b = { .d = d, .buf = buf, .len = len };
	b.lim.max_bytes = limits && limits->max_bytes ? limits->max_bytes : YDOC_DEFAULT_MAX_BYTES;
	b.lim.max_depth = limits && limits->max_depth > 0 ? limits->max_depth : YDOC_DEFAULT_MAX_DEPTH;
	b.lim.max_nodes = limits && limits->max_nodes ? limits->max_nodes : YDOC_DEFAULT_MAX_NODES;

	ydoc *doc = calloc(1, sizeof(*doc));
	if (!doc || !(doc->name = strdup(name))) {
		free(doc);
		ws_diag_add(d, name, 0, 0, "out of memory");
		return NULL;
	}
	doc->arena = ws_arena_new();
	b.doc = doc;
	if (len > b.lim.max_bytes) {
		yb_error(&b, 0, 0, "document is too large (%zu bytes, the limit is %zu)",
			 len, b.lim.max_bytes);
		ydoc_free(doc);
		return NULL;
	}

	yaml_parser_t parser;
	if (!yaml_parser_initialize(&parser)) {
		yb_error(&b, 0, 0, "out of memory");
		ydoc_free(doc);
		return NULL;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	int documents = 0;
	bool done = false;
	while (!done && !b.fatal) {
		yaml_event_t ev;
		if (!yaml_parser_parse(&parser, &ev)) {
			yb_parser_error(&b, &parser);
			break;
		}
		const yaml_mark_t *m = &ev.start_mark;
		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
			done = true;
			break;
		case YAML_DOCUMENT_START_EVENT:
			if (++documents > 1) {
				yb_error(&b, (int)m->line + 1, (int)m->column + 1,
					 "expected a single document, found another one");
				b.fatal = true;
			}
			break;
		case YAML_ALIAS_EVENT:
			yb_error(&b, (int)m->line + 1, (int)m->column + 1,
				 "aliases are not allowed (*%s)", (const char *)ev.data.alias.anchor);
			b.fatal = true;
			break;
		case YAML_SCALAR_EVENT:
			yb_scalar(&b, &ev);
			break;
		case YAML_SEQUENCE_START_EVENT:
			yb_push(&b, YNODE_SEQ, &ev);
			break;
		case YAML_MAPPING_START_EVENT:
			yb_push(&b, YNODE_MAP, &ev);
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			if (b.depth > 0)
				yb_pop(&b);
			break;
		default:
			break;
		}
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&parser);
	for (int i = 0; i < b.depth; i++)
		free(b.stack[i].kids);
	free(b.stack);
	if (b.failed) {
		ydoc_free(doc);
		return NULL;
	}
	return doc;
}

ydoc *ydoc_parse_file(const char *path, const ydoc_limits *limits, ws_diags *d)
{
	size_t max = limits && limits->max_bytes ? limits->max_bytes : YDOC_DEFAULT_MAX_BYTES;
	FILE *fp = fopen(path, "rb");
	if (!fp) {
		ws_diag_add(d, path, 0, 0, "cannot open: %s", strerror(errno));
		return NULL;
	}
	size_t cap = 0, len = 0;
	char *buf = NULL;
	ydoc *doc = NULL;
	for (;;) {
		if (len == cap) {
			/* Read one byte past the cap so an oversized file is
			 * reported as such rather than silently truncated. */
			if (cap > max) {
				ws_diag_add(d, path, 0, 0,
					    "document is too large (the limit is %zu bytes)", max);
				goto out;
			}
			size_t ncap = cap ? cap * 2 : 8192;
			if (ncap > max + 1)
				ncap = max + 1;
			if (ncap <= cap)
				ncap = cap + 1;
			char *nb = realloc(buf, ncap);
			if (!nb) {
				ws_diag_add(d, path, 0, 0, "out of memory");
				goto out;
			}
			buf = nb;
			cap = ncap;
		}
		size_t got = fread(buf + len, 1, cap - len, fp);
		len += got;
		if (got == 0) {
			if (ferror(fp)) {
				ws_diag_add(d, path, 0, 0, "cannot read: %s", strerror(errno));
				goto out;
			}
			break;
		}
	}
	if (len > max) {
		ws_diag_add(d, path, 0, 0, "document is too large (the limit is %zu bytes)", max);
		goto out;
	}
	doc = ydoc_parse(path, buf ? buf : "", len, limits, d);
out:
	free(buf);
	fclose(fp);
	return doc;
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
	free(doc->name);
	free(doc);
}

const ynode *ynode_get(const ynode *map, const char *key)
{
	if (!map || map->kind != YNODE_MAP)
		return NULL;
	for (size_t i = 0; i < map->len; i++) {
		const ynode *k = map->keys[i];
		if (k->kind == YNODE_SCALAR && strcmp(k->value, key) == 0)
			return map->items[i];
	}
	return NULL;
}

bool ynode_is_null(const ynode *n)
{
	if (!n || n->kind != YNODE_SCALAR || n->quoted)
		return false;
	return n->value_len == 0 || strcmp(n->value, "~") == 0 || strcmp(n->value, "null") == 0 ||
	       strcmp(n->value, "Null") == 0 || strcmp(n->value, "NULL") == 0;
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
