/*
 * diag.c - diagnostics lists (see include/wavesched/diag.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "wavesched/diag.h"

void ws_diags_init(ws_diags *d)
{
	memset(d, 0, sizeof(*d));
}

void ws_diags_free(ws_diags *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->len; i++) {
		free(d->items[i].file);
		free(d->items[i].message);
	}
	free(d->items);
	memset(d, 0, sizeof(*d));
}

void ws_diag_addv(ws_diags *d, const char *file, int line, int column,
		  const char *fmt, va_list ap)
{
	if (!d)
		return;
	if (d->len == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 8;
		ws_diag *items = realloc(d->items, cap * sizeof(*items));
		if (!items)
			return;   /* out of memory: the diagnostic is lost, not the process */
		d->items = items;
		d->cap = cap;
	}
	char *msg = NULL;
	if (vasprintf(&msg, fmt, ap) < 0)
		return;
	ws_diag *g = &d->items[d->len++];
	g->file = file ? strdup(file) : NULL;
	g->line = line;
	g->column = column;
	g->message = msg;
}

void ws_diag_add(ws_diags *d, const char *file, int line, int column, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	ws_diag_addv(d, file, line, column, fmt, ap);
	va_end(ap);
}

static int diag_cmp(const void *a, const void *b)
{
	const ws_diag *x = a, *y = b;
	int c = strcmp(x->file ? x->file : "", y->file ? y->file : "");
	if (c)
		return c;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	if (x->column != y->column)
		return x->column < y->column ? -1 : 1;
	return strcmp(x->message, y->message);
}

void ws_diags_sort(ws_diags *d)
{
	if (d->len > 1)
		qsort(d->items, d->len, sizeof(*d->items), diag_cmp);
}

char *ws_diag_format(const ws_diag *g)
{
	char *out = NULL;
	int rc;
	if (g->file && g->line > 0)
		rc = asprintf(&out, "%s:%d:%d: %s", g->file, g->line, g->column, g->message);
	else if (g->file)
		rc = asprintf(&out, "%s: %s", g->file, g->message);
	else
		rc = asprintf(&out, "%s", g->message);
	return rc < 0 ? NULL : out;
}

const char *ws_strerror(int code)
{
	switch (code) {
	case WS_OK: return "success";
	case WS_EINVAL: return "invalid input";
	case WS_ENOMEM: return "out of memory";
	case WS_EIO: return "input/output error";
	case WS_ENOTFOUND: return "not found";
	case WS_ECONFLICT: return "conflict";
	case WS_ETOOBIG: return "too large";
	case WS_ETIMEDOUT: return "timed out";
	case WS_EDB: return "database error";
	case WS_EAUTH: return "not authenticated";
	case WS_EFORBIDDEN: return "forbidden";
	case WS_EUNAVAIL: return "unavailable";
	default: return "unknown error";
	}
}
