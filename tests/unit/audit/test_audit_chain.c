/*
 * test_audit_chain.c - the jsonb text and entry hash of audit_chain.c on
 * rows whose hashes PostgreSQL 15 computed (SELECT ws_audit_hash(...)), and
 * the helpers around them.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "wavesched/audit_chain.h"

/* Renders `json` (parsed with ydoc) as jsonb text. */
static char *render(const char *json, int *rc_out)
{
	ws_diags d;
	ws_diags_init(&d);
	size_t safe_len;
	char *safe = ws_audit_json_yaml_safe(json, strlen(json), &safe_len);
	assert_non_null(safe);
	ydoc *doc = ydoc_parse("t.json", safe, safe_len, NULL, &d);
	free(safe);
	if (!doc) {
		ws_diags_free(&d);
		*rc_out = -100;
		return NULL;
	}
	char *text = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&text, &len);
	*rc_out = ws_audit_jsonb_text(m, doc, ydoc_root(doc), &d);
	fclose(m);
	ydoc_free(doc);
	ws_diags_free(&d);
	return text;
}

static void expect_render(const char *in, const char *want)
{
	int rc;
	char *got = render(in, &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(got, want);
	free(got);
}

static void test_jsonb_text(void **state)
{
	(void)state;
	/* Each "want" is what PostgreSQL 15 printed for '<in>'::jsonb::text. */
	expect_render("{}", "{}");
	expect_render("[]", "[]");
	expect_render("{\"bb\":1,\"a\":2,\"ccc\":{\"z\":[],\"y\":null,\"xx\":true},\"B\":false}",
		      "{\"B\": false, \"a\": 2, \"bb\": 1, \"ccc\": {\"y\": null, \"z\": [], \"xx\": true}}");
	expect_render("{\"n\": 1.50, \"big\": 123456789012345678901234567890, \"neg\": -0.0010}",
		      "{\"n\": 1.50, \"big\": 123456789012345678901234567890, \"neg\": -0.0010}");
	expect_render("{\"s\": \"q\\\"b\\\\n\\n t\\t\\u0001 \\u00e9 \\u2713\"}",
		      "{\"s\": \"q\\\"b\\\\n\\n t\\t\\u0001 \xc3\xa9 \xe2\x9c\x93\"}");
	/* Raw U+2028 and U+0085 inside a string (PostgreSQL leaves them raw):
	 * YAML would fold them as line breaks without the escaping pass. */
	expect_render("{\"s\": \"a\xe2\x80\xa8" "b\xc2\x85" "c\xef\xbb\xbf" "d\x7f\"}",
		      "{\"s\": \"a\xe2\x80\xa8" "b\xc2\x85" "c\xef\xbb\xbf" "d\x7f\"}");
	expect_render("[1, [2, [3, {\"k\": \"v\"}]], \"x\"]", "[1, [2, [3, {\"k\": \"v\"}]], \"x\"]");
}

static void test_jsonb_text_refuses(void **state)
{
	(void)state;
	int rc;
	char *got = render("{\"a\": yes}", &rc);
	assert_int_equal(rc, WS_EINVAL);
	free(got);
	got = render("{\"a\": 1.}", &rc);
	assert_int_equal(rc, WS_EINVAL);
	free(got);
	got = render("{a: 1}", &rc);
	assert_int_equal(rc, WS_EINVAL);
	free(got);
}

static void test_time(void **state)
{
	(void)state;
	long long us;
	assert_int_equal(ws_audit_time_us("2026-11-27T03:51:41.127043Z", &us), 0);
	assert_true(us == 1795751501127043LL);
	assert_int_equal(ws_audit_time_us("1970-01-01T00:00:00.000001Z", &us), 0);
	assert_true(us == 1);
	assert_int_equal(ws_audit_time_us("2026-11-27T03:51:41Z", &us), WS_EINVAL);
	assert_int_equal(ws_audit_time_us("2026-11-27T03:51:41.12704Z", &us), WS_EINVAL);
	assert_int_equal(ws_audit_time_us("2026-11-27T03:51:41.127043+01:00", &us), WS_EINVAL);
	assert_int_equal(ws_audit_time_us("2026-11-27 03:51:41.127043Z", &us), WS_EINVAL);
}

/* Hashes PostgreSQL computed with
 *   SELECT ws_audit_hash(repeat('0', 64), 1, '2026-11-27T03:51:41.127043Z', 'a', 'x', 'o/1', '{}')
 * and the same with details {"n": 1.50, "s": "é\n", "bb": [1, {}]}. */
static void test_known_rows(void **state)
{
	(void)state;
	ws_diags d;
	ws_diags_init(&d);
	ws_audit_fields f = { WS_AUDIT_ZERO_HASH, 1, 1795751501127043LL, "a", "x", "o/1", NULL };
	char h[65];
	assert_int_equal(ws_audit_entry_hash(NULL, &f, h, &d), 0);
	assert_string_equal(h, "dbd3cb01ce1239bb6f77d5afc14a6368806735aefc7b45a6f9b027a135a6234c");
	const char *json = "{\"n\": 1.50, \"s\": \"\xc3\xa9\\n\", \"bb\": [1, {}]}";
	ydoc *doc = ydoc_parse("t.json", json, strlen(json), NULL, &d);
	assert_non_null(doc);
	f.details = ydoc_root(doc);
	assert_int_equal(ws_audit_entry_hash(doc, &f, h, &d), 0);
	assert_string_equal(h, "186687cf93ced9abafdccb9ea42971e2d604d6b03e4e2453d016da82f5fa775d");
	ydoc_free(doc);
	ws_diags_free(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_jsonb_text),
		cmocka_unit_test(test_jsonb_text_refuses),
		cmocka_unit_test(test_time),
		cmocka_unit_test(test_known_rows),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
