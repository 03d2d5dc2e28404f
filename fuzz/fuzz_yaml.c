/*
 * fuzz_yaml.c - ydoc's parse in chunks against the parse in one piece: on
 * any bytes, cut into chunks of a few bytes (so that every line like an
 * entry is a cut), the tree, its positions and the diagnostics must be the
 * same.  The one allowed difference is libyaml's reader, which reports bad
 * UTF-8 or a control character while decoding ahead of the parser, before
 * problems earlier in the text: then the chunked parse must refuse the
 * document too, with no problem placed past the reader's (see
 * test_chunks_match_one_parse in tests/unit/fleet/test_ydoc.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz.h"
#include "wavesched/diag.h"
#include "wavesched/ydoc.h"

static void dump_node(FILE *fp, const ynode *n)
{
	fprintf(fp, "(%d %d:%d", (int)n->kind, n->line, n->column);
	if (n->kind == YNODE_SCALAR) {
		fprintf(fp, " %d %u ", n->quoted, n->value_len);
		fwrite(n->value, 1, n->value_len, fp);
	}
	for (uint32_t i = 0; i < n->len; i++) {
		if (n->kind == YNODE_MAP)
			dump_node(fp, n->keys[i]);
		dump_node(fp, n->items[i]);
	}
	fputc(')', fp);
}

/* libyaml's reader problems (a diagnostic's whole message). */
static const char *const reader_problems[] = {
	"invalid leading UTF-8 octet", "invalid trailing UTF-8 octet",
	"incomplete UTF-8 octet sequence", "invalid length of a UTF-8 sequence",
	"invalid Unicode character", "control characters are not allowed",
	"incomplete UTF-16 character", "unexpected low surrogate area",
	"incomplete UTF-16 surrogate pair", "input is too long",
};

static bool is_reader_problem(const char *message)
{
	for (size_t i = 0; i < sizeof(reader_problems) / sizeof(reader_problems[0]); i++)
		if (strcmp(message, reader_problems[i]) == 0)
			return true;
	return false;
}

typedef struct parsed {
	char *dump;
	bool failed;
	long reader, last;   /* line * 2^20 + column: a reader problem, the last problem; or -1 */
} parsed;

static parsed parse_dump(const uint8_t *data, size_t size, const ydoc_limits *lim)
{
	ws_diags d;
	ws_diags_init(&d);
	ydoc *doc = ydoc_parse("f.yaml", (const char *)data, size, lim, &d);
	parsed r = { .failed = !doc, .reader = -1, .last = -1 };
	size_t len = 0;
	FILE *fp = open_memstream(&r.dump, &len);
	if (!fp)
		abort();
	if (!doc)
		fputs("no document", fp);
	else if (ydoc_root(doc))
		dump_node(fp, ydoc_root(doc));
	for (size_t i = 0; i < d.len; i++) {
		const ws_diag *g = &d.items[i];
		fprintf(fp, "\n%d:%d: %s", g->line, g->column, g->message);
		long at = (long)g->line << 20 | g->column;
		if (at > r.last)
			r.last = at;
		if (r.reader < 0 && is_reader_problem(g->message))
			r.reader = at;
	}
	fclose(fp);
	ydoc_free(doc);
	ws_diags_free(&d);
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t chunks[] = { 5, 24, 97 };
	const ydoc_limits one = { .max_threads = 1 };
	parsed want = parse_dump(data, size, &one);
	for (size_t k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
		const ydoc_limits cut = { .chunk_bytes = chunks[k] };
		parsed got = parse_dump(data, size, &cut);
		bool same = want.reader >= 0 ? got.failed && got.last >= 0 && got.last <= want.reader
					     : strcmp(got.dump, want.dump) == 0;
		if (!same) {
			fprintf(stderr, "chunks of %zu bytes:\n%s\n--- in one piece:\n%s\n", chunks[k],
				got.dump, want.dump);
			fuzz_fail("the parse in chunks differs from the parse in one piece", NULL);
		}
		free(got.dump);
	}
	free(want.dump);
	return 0;
}
