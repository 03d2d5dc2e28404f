/*
 * diag.h - the one error convention of wavesched.
 *
 * Functions that can fail return 0 or a negative WS_E* code and, when given a
 * ws_diags list, append one diagnostic per problem.  A diagnostic names where
 * (FILE:LINE:COLUMN, a URL, a tenant) and what, in a sentence a user can act
 * on.  Validators collect every problem before returning so a user fixes a
 * file in one pass; I/O paths usually stop at the first.
 *
 * Ownership: a ws_diags owns its messages; ws_diags_free() releases them.
 */
#ifndef WAVESCHED_DIAG_H
#define WAVESCHED_DIAG_H

#include <stddef.h>
#include <stdarg.h>

#define WS_API __attribute__((visibility("default")))

enum {
	WS_OK = 0,
	WS_EINVAL = -1,    /* invalid input: validation failed */
	WS_ENOMEM = -2,
	WS_EIO = -3,       /* cannot read a file or reach a peer */
	WS_ENOTFOUND = -4,
	WS_ECONFLICT = -5,
	WS_ETOOBIG = -6,   /* a size cap was hit */
	WS_ETIMEDOUT = -7,
	WS_EDB = -8,       /* the database refused or failed */
	WS_EAUTH = -9,
	WS_EFORBIDDEN = -10,
	WS_EUNAVAIL = -11, /* a dependency is down; retry later */
};

typedef struct ws_diag {
	char *file;     /* may be NULL when there is no source position */
	int line;       /* 1-based; 0 when unknown */
	int column;     /* 1-based; 0 when unknown */
	char *message;
} ws_diag;

typedef struct ws_diags {
	ws_diag *items;
	size_t len;
	size_t cap;
} ws_diags;

WS_API void ws_diags_init(ws_diags *d);
WS_API void ws_diags_free(ws_diags *d);
/* Appends "file:line:column: message" (position omitted when line is 0). */
WS_API void ws_diag_add(ws_diags *d, const char *file, int line, int column,
			const char *fmt, ...) __attribute__((format(printf, 5, 6)));
WS_API void ws_diag_addv(ws_diags *d, const char *file, int line, int column,
			 const char *fmt, va_list ap);
/* Sorts by (file, line, column, message) so output is stable. */
WS_API void ws_diags_sort(ws_diags *d);
/* Formats one diagnostic as "FILE:LINE:COLUMN: message" into a new string. */
WS_API char *ws_diag_format(const ws_diag *g);
/* Short name of a WS_E* code, e.g. "invalid input". */
WS_API const char *ws_strerror(int code);

#endif
