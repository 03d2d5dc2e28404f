/*
 * fleet_test.h - helpers shared by the fleet unit tests (cmocka).
 *
 * Diagnostics are compared as one string, every line formatted
 * "FILE:LINE:COLUMN: message", so a test states the complete expected
 * output: an extra or missing message fails it too.
 */
#ifndef WS_FLEET_TEST_H
#define WS_FLEET_TEST_H

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
#include "wavesched/window.h"
#include "wavesched/ydoc.h"

#define FT_HEAD "apiVersion: wavesched/v1\nkind: Fleet\n"

/* Parses `yaml` as "t.yaml", which must fail with exactly `expected`. */
static inline void ft_expect_errors(const char *yaml, const char *expected)
{
	ws_diags d;
	ws_diags_init(&d);
	ws_fleet *f = fleet_parse("t.yaml", yaml, strlen(yaml), &d);
	char *got = wt_diags_text(&d);
	if (f)
		fleet_free(f);
	assert_null(f);
	assert_string_equal(got, expected);
	free(got);
	ws_diags_free(&d);
}

/* Parses `yaml`, which must be valid. */
static inline ws_fleet *ft_parse_ok(const char *yaml)
{
	ws_diags d;
	ws_diags_init(&d);
	ws_fleet *f = fleet_parse("t.yaml", yaml, strlen(yaml), &d);
	char *got = wt_diags_text(&d);
	assert_string_equal(got, "");
	free(got);
	ws_diags_free(&d);
	assert_non_null(f);
	return f;
}

static inline char *ft_read_fixture(const char *rel, size_t *len)
{
	char *path = wt_source_path(rel);
	FILE *fp = fopen(path, "rb");
	assert_non_null(fp);
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	long n = ftell(fp);
	assert_true(n > 0);
	rewind(fp);
	char *buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
	buf[n] = '\0';
	fclose(fp);
	free(path);
	if (len)
		*len = (size_t)n;
	return buf;
}

static inline ws_fleet *ft_example_fleet(void)
{
	ws_diags d;
	ws_diags_init(&d);
	char *path = wt_source_path("examples/fleet.yaml");
	ws_fleet *f = fleet_parse_file(path, &d);
	char *got = wt_diags_text(&d);
	assert_string_equal(got, "");
	free(got);
	free(path);
	ws_diags_free(&d);
	assert_non_null(f);
	return f;
}

/* Unix seconds of an RFC 3339 literal (the literal must be valid). */
static inline int64_t ft_t(const char *s)
{
	int64_t t = 0;
	assert_int_equal(ws_time_parse(s, &t), 0);
	return t;
}

#endif
