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
#include "../wstest.h"
#include <libical/ical.h>
#include "wavesched/fleet.h"
#include "wavesched/policy.h"

/* Lines 1-5 of every inline policy. */
#define PT_HEAD "apiVersion: wavesched/v1\nkind: WavePolicy\nmetadata:\n  name: p\nspec:\n"

/* Parses `yaml` as "p.yaml", which must fail with exactly `expected`. */
static inline void pt_expect_errors(const char *yaml, const char *expected)
{
	ws_diags d;
	ws_diags_init(&d);
	ws_policy *p = policy_parse("p.yaml", yaml, strlen(yaml), &d);
	char *got = wt_diags_text(&d);
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
	char *got = wt_diags_text(&d);
	assert_string_equal(got, "");
	free(got);
	ws_diags_free(&d);
	assert_non_null(p);
	return p;
}

/* An example policy (examples/policies/NAME), which must be valid. */
static inline ws_policy *pt_example(const char *name)
{
	char *rel = NULL;
	assert_true(asprintf(&rel, "examples/policies/%s", name) > 0);
	char *path = wt_source_path(rel);
	ws_diags d;
	ws_diags_init(&d);
	ws_policy *p = policy_parse_file(path, &d);
	char *got = wt_diags_text(&d);
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
	char *path = wt_source_path("examples/fleet.yaml");
	ws_diags d;
	ws_diags_init(&d);
	ws_fleet *f = fleet_parse_file(path, &d);
	char *got = wt_diags_text(&d);
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

#endif
