/*
 * policy_test.h - helpers shared by the policy unit tests (cmocka).
 *
 * As in the fleet tests, diagnostics are compared as one string, one
 * "FILE:LINE:COLUMN: message" per line, so a test states the complete
 * expected output: an extra or a missing message fails it too.
 * WS_FIXTURES is the project's source root (examples/ lives there).
 */
#ifndef WS_POLICY_TEST_H
#define WS_POLICY_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <libical/ical.h>
#include "wavesched/fleet.h"
#include "wavesched/policy.h"

/* Lines 1-5 of every inline policy. */
#define PT_HEAD "apiVersion: wavesched/v1\nkind: WavePolicy\nmetadata:\n  name: p\nspec:\n"

/* All diagnostics, one per line, in a new string. */
static inline char *pt_diags_text(const ws_diags *d)
{
	size_t cap = 1, len = 0;
	char *out = calloc(1, 1);
	assert_non_null(out);
	for (size_t i = 0; i < d->len; i++) {
		char *line = ws_diag_format(&d->items[i]);
		assert_non_null(line);
		size_t n = strlen(line);
		cap += n + 1;
		out = realloc(out, cap);
		assert_non_null(out);
		if (len)
			out[len++] = '\n';
		memcpy(out + len, line, n + 1);
		len += n;
		free(line);
	}
	return out;
}

/* Parses `yaml` as "p.yaml", which must fail with exactly `expected`. */
static inline void pt_expect_errors(const char *yaml, const char *expected)
{
	ws_diags d;
	ws_diags_init(&d);
	ws_policy *p = policy_parse("p.yaml", yaml, strlen(yaml), &d);
	char *got = pt_diags_text(&d);
	policy_free(p);
	assert_string_equal(got, expected);
	assert_null(p);
	free(got);
	ws_diags_free(&d);
}

/* Parses `yaml`, which must be valid. */
static inline ws_policy *pt_parse_ok(const char *yaml)
{
	ws_diags d;
	ws_diags_init(&d);
	ws_policy *p = policy_parse("p.yaml", yaml, strlen(yaml), &d);
	char *got = pt_diags_text(&d);
	assert_string_equal(got, "");
	free(got);
	ws_diags_free(&d);
	assert_non_null(p);
	return p;
}

static inline char *pt_path(const char *rel)
{
	const char *root = getenv("WS_FIXTURES");
	assert_non_null(root);
	char *p = NULL;
	assert_true(asprintf(&p, "%s/%s", root, rel) > 0);
	return p;
}

/* An example policy (examples/policies/NAME), which must be valid. */
static inline ws_policy *pt_example(const char *name)
{
	char *rel = NULL;
	assert_true(asprintf(&rel, "examples/policies/%s", name) > 0);
	char *path = pt_path(rel);
	ws_diags d;
	ws_diags_init(&d);
	ws_policy *p = policy_parse_file(path, &d);
	char *got = pt_diags_text(&d);
	assert_string_equal(got, "");
	free(got);
	ws_diags_free(&d);
	free(path);
	free(rel);
	assert_non_null(p);
	return p;
}

static inline ws_fleet *pt_example_fleet(void)
{
	char *path = pt_path("examples/fleet.yaml");
	ws_diags d;
	ws_diags_init(&d);
	ws_fleet *f = fleet_parse_file(path, &d);
	char *got = pt_diags_text(&d);
	assert_string_equal(got, "");
	free(got);
	ws_diags_free(&d);
	free(path);
	assert_non_null(f);
	return f;
}

static inline const ws_wave *pt_wave(const ws_policy *p, const char *name)
{
	const ws_wave *w = policy_wave(p, name);
	assert_non_null(w);
	return w;
}

/* libical keeps the zones it loaded for the process (the fleet parser
 * loads some); free them at the end so LeakSanitizer sees a clean exit. */
static inline int pt_teardown_ical(void **state)
{
	(void)state;
	icaltimezone_free_builtin_timezones();
	return 0;
}

#endif
