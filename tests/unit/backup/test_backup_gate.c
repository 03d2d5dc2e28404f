/*
 * test_backup_gate.c - the pure parts of the backup gate's http source
 * (scheduler/backup_gate.c): every way a status answer can be wrong gives a
 * message saying what, the template is filled and escaped, and the cache
 * keeps the latest status per deployment with its own copies.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "backup_gate.h"

#define US 1000000LL

static void test_url_expand(void **state)
{
	(void)state;
	char *u = backup_url_expand("https://b.example/{cluster}/{slug}/status?t={slug}", "acme-1",
				    "eu-1");
	assert_string_equal(u, "https://b.example/eu-1/acme-1/status?t=acme-1");
	free(u);
	/* values cannot leave their segment or add a query */
	u = backup_url_expand("http://b/{slug}", "a/../b?x=1 &", "c");
	assert_string_equal(u, "http://b/a%2F..%2Fb%3Fx%3D1%20%26");
	free(u);
	u = backup_url_expand("http://b/{slu}/{slug", "a", "c");
	assert_string_equal(u, "http://b/{slu}/{slug");
	free(u);
}

static void expect_bad(const char *body, const char *why_prefix)
{
	char why[300] = "";
	int64_t at = 42, restore = 43;
	assert_int_equal(backup_status_parse(body, body ? strlen(body) : 0, &at, &restore, why,
					     sizeof(why)), -1);
	if (strncmp(why, why_prefix, strlen(why_prefix)) != 0)
		fail_msg("expected \"%s...\", got \"%s\"", why_prefix, why);
	assert_int_equal(at, 42);   /* untouched */
	assert_int_equal(restore, 43);
}

static void test_status_parse(void **state)
{
	(void)state;
	char why[300];
	int64_t at = 0, restore = 0;
	const char *ok = "{\"tenant\": \"a\", \"last_success\": \"2026-12-01T01:30:00Z\", \"x\": [1]}";
	assert_int_equal(backup_status_parse(ok, strlen(ok), &at, &restore, why, sizeof(why)), 0);
	assert_int_equal(at, 1796088600LL * US);
	assert_true(restore == EM_NONE);
	const char *off = "{\"last_success\": \"2026-12-01T02:30:00+01:00\"}";
	assert_int_equal(backup_status_parse(off, strlen(off), &at, &restore, why, sizeof(why)), 0);
	assert_int_equal(at, 1796088600LL * US);
	const char *rv = "{\"last_success\": \"2026-12-01T01:30:00Z\", "
			 "\"restore_verified_at\": \"2026-11-30T01:30:00Z\"}";
	assert_int_equal(backup_status_parse(rv, strlen(rv), &at, &restore, why, sizeof(why)), 0);
	assert_int_equal(restore, (1796088600LL - 86400) * US);
	const char *rnull = "{\"last_success\": \"2026-12-01T01:30:00Z\", \"restore_verified_at\": null}";
	assert_int_equal(backup_status_parse(rnull, strlen(rnull), &at, &restore, why, sizeof(why)), 0);
	assert_true(restore == EM_NONE);
	expect_bad("{\"last_success\": \"2026-12-01T01:30:00Z\", \"restore_verified_at\": 5}",
		   "restore_verified_at is not a string");
	expect_bad("{\"last_success\": \"2026-12-01T01:30:00Z\", \"restore_verified_at\": \"last week\"}",
		   "invalid restore_verified_at \"last week\"");
	expect_bad("", "not JSON: ");
	expect_bad(NULL, "not JSON: ");
	expect_bad("<html>OK</html>", "not JSON: ");
	expect_bad("{\"last_success\": \"2026-12-01T01:30:00Z\"", "not JSON: ");
	expect_bad("[\"2026-12-01T01:30:00Z\"]", "not a JSON object");
	expect_bad("{}", "no last_success in the answer");
	expect_bad("{\"last_success\": null}", "no last_success in the answer");
	expect_bad("{\"last_success\": 1796088600}", "last_success is not a string");
	expect_bad("{\"last_success\": \"yesterday\"}",
		   "invalid last_success \"yesterday\" (expected RFC 3339)");
	expect_bad("{\"last_success\": \"2026-13-01T00:00:00Z\"}", "invalid last_success");
	expect_bad("{\"last_success\": \"2026-12-01T01:30:00Z\", \"last_success\": \"2020-01-01T00:00:00Z\"}",
		   "not JSON: duplicate object key");
}

static void test_cache(void **state)
{
	(void)state;
	backup_cache *c = NULL;
	assert_null(backup_cache_get(c, 1));
	char url[] = "http://b/a";
	em_backup_status st = { .checked_at = 5, .last_success = 3, .http_status = 200, .url = url };
	assert_true(backup_cache_put(&c, 1, &st));
	url[0] = 'X';   /* the cache has its own copy */
	for (int64_t id = 2; id < 20; id++) {
		em_backup_status other = { .checked_at = id, .last_success = EM_NONE, .url = "u",
					   .error = "HTTP 500" };
		assert_true(backup_cache_put(&c, id, &other));
	}
	const em_backup_status *got = backup_cache_get(c, 1);
	assert_non_null(got);
	assert_string_equal(got->url, "http://b/a");
	assert_null(got->error);
	assert_int_equal(got->last_success, 3);
	/* the latest replaces the one before */
	em_backup_status later = { .checked_at = 9, .last_success = EM_NONE, .http_status = 0,
				   .url = "http://b/a", .error = "timed out" };
	assert_true(backup_cache_put(&c, 1, &later));
	got = backup_cache_get(c, 1);
	assert_int_equal(got->checked_at, 9);
	assert_string_equal(got->error, "timed out");
	assert_int_equal(backup_cache_get(c, 19)->checked_at, 19);
	assert_null(backup_cache_get(c, 20));
	backup_cache_free(c);
	backup_cache_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_expand),
		cmocka_unit_test(test_status_parse),
		cmocka_unit_test(test_cache),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
