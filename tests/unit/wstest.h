/*
 * wstest.h - helpers every cmocka suite of the project shares.
 *
 * Diagnostics are compared as one string, every line formatted
 * "FILE:LINE:COLUMN: message", so a test states the complete expected
 * output: an extra or missing message fails it too.  Include after
 * <cmocka.h>.
 */
#ifndef WS_WSTEST_H
#define WS_WSTEST_H

#include <stdio.h>
#include <stdlib.h>
#include <libical/ical.h>
#include "wavesched/diag.h"

/* All diagnostics, one per line, in a new string ("" when none). */
static inline char *wt_diags_text(const ws_diags *d)
{
	char *out = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&out, &len);
	assert_non_null(fp);
	for (size_t i = 0; i < d->len; i++) {
		char *line = ws_diag_format(&d->items[i]);
		assert_non_null(line);
		fprintf(fp, "%s%s", i ? "\n" : "", line);
		free(line);
	}
	fclose(fp);
	return out;
}

/* A path under the source root, from WS_FIXTURES (set by meson). */
static inline char *wt_source_path(const char *rel)
{
	const char *root = getenv("WS_FIXTURES");
	assert_non_null(root);
	char *p = NULL;
	assert_true(asprintf(&p, "%s/%s", root, rel) > 0);
	return p;
}

/* libical keeps the zones it loaded for the process; free them at the end
 * so LeakSanitizer sees a clean exit. */
static inline int wt_teardown_ical(void **state)
{
	(void)state;
	icaltimezone_free_builtin_timezones();
	return 0;
}

#endif
