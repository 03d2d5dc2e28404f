/* fuzz_common.c - helpers shared by the fuzz targets (fuzz.h). */
#include <stdio.h>
#include <stdlib.h>
#include "fuzz.h"
#include "wavesched/diag.h"

void fuzz_fail(const char *what, const struct ws_diags *d)
{
	fprintf(stderr, "fuzz: property broken: %s\n", what);
	for (size_t i = 0; d && i < d->len; i++) {
		char *line = ws_diag_format(&d->items[i]);
		fprintf(stderr, "  %s\n", line ? line : d->items[i].message);
		free(line);
	}
	abort();
}
