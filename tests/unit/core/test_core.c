/*
 * test_core.c - configuration, tokens and roles, migration files, diagnostics.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "wavesched/auth.h"
#include "wavesched/config.h"
#include "wavesched/crypto.h"
#include "wavesched/migrate.h"

static char *write_temp(const char *text)
{
	char *path = strdup("/tmp/ws-core-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

static void clear_env(void)
{
	unsetenv("WAVESCHED_LISTEN");
	unsetenv("WAVESCHED_DATABASE_URL");
	unsetenv("WAVESCHED_LOG_LEVEL");
	unsetenv("WAVESCHED_MAX_BODY_BYTES");
	unsetenv("WAVESCHED_DB_POOL_SIZE");
}

static void test_config_defaults_file_and_env(void **state)
{
	(void)state;
	clear_env();
	char *path = write_temp("listen: 127.0.0.1:9999\ndatabase_url: postgresql:///a\n"
				"max_body_bytes: 1MiB\nquery_timeout: 5s\n");
	setenv("WAVESCHED_LISTEN", "127.0.0.1:7777", 1);
	ws_config c;
	ws_diags d;
	ws_diags_init(&d);
	assert_int_equal(ws_config_load(&c, path, &d), 0);
	assert_int_equal(d.len, 0);
	assert_string_equal(c.listen, "127.0.0.1:7777");    /* the environment wins */
	assert_string_equal(c.database_url, "postgresql:///a");
	assert_int_equal(c.max_body_bytes, 1u << 20);
	assert_int_equal(c.query_timeout_ms, 5000);
	assert_int_equal(c.db_pool_size, 4);
	assert_string_equal(c.log_level, "info");
	ws_config_free(&c);
	ws_diags_free(&d);
	unlink(path);
	free(path);
	clear_env();
}

static void test_config_errors_have_positions(void **state)
{
	(void)state;
	clear_env();
	char *path = write_temp("listen: 127.0.0.1:1\nlisen: x\nlog_level: loud\ndb_pool_size: [1]\n");
	ws_config c;
	ws_diags d;
	ws_diags_init(&d);
	assert_int_equal(ws_config_load(&c, path, &d), WS_EINVAL);
	assert_int_equal(d.len, 3);
	char *m0 = ws_diag_format(&d.items[0]);
	char *m1 = ws_diag_format(&d.items[1]);
	char *m2 = ws_diag_format(&d.items[2]);
	char want[512];
	snprintf(want, sizeof(want), "%s:2:1: unknown setting \"lisen\"", path);
	assert_memory_equal(m0, want, strlen(want));
	snprintf(want, sizeof(want), "%s:3:12: invalid value \"loud\" for \"log_level\"", path);
	assert_string_equal(m1, want);
	snprintf(want, sizeof(want), "%s:4:15: expected a string for \"db_pool_size\", got a sequence", path);
	assert_string_equal(m2, want);
	free(m0);
	free(m1);
	free(m2);
	ws_config_free(&c);
	ws_diags_free(&d);
	unlink(path);
	free(path);

	setenv("WAVESCHED_DB_POOL_SIZE", "0", 1);
	ws_diags_init(&d);
	assert_int_equal(ws_config_load(&c, NULL, &d), WS_EINVAL);
	assert_int_equal(d.len, 1);
	assert_string_equal(d.items[0].message,
			    "invalid value \"0\" in environment variable WAVESCHED_DB_POOL_SIZE");
	ws_config_free(&c);
	ws_diags_free(&d);
	clear_env();
}

static void test_tokens(void **state)
{
	(void)state;
	char s1[WS_TOKEN_LEN + 1], s2[WS_TOKEN_LEN + 1], h1[65], h2[65], again[65];
	assert_int_equal(ws_token_generate(s1, h1), 0);
	assert_int_equal(ws_token_generate(s2, h2), 0);
	assert_int_equal(strlen(s1), 47);
	assert_memory_equal(s1, "wst_", 4);
	assert_string_not_equal(s1, s2);
	assert_int_equal(ws_token_hash(s1, again), 0);
	assert_string_equal(again, h1);
	assert_int_equal(strlen(h1), 64);
	assert_int_equal(ws_token_hash("wst_short", again), WS_EAUTH);
	char bad[WS_TOKEN_LEN + 1];
	memcpy(bad, s1, sizeof(bad));
	bad[10] = '*';
	assert_int_equal(ws_token_hash(bad, again), WS_EAUTH);
	char hex[65];
	ws_sha256_hex("abc", 3, hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	char b64[8];
	ws_base64url((const unsigned char *)"\xfb\xff", 2, b64);
	assert_string_equal(b64, "-_8");
}

static void test_roles(void **state)
{
	(void)state;
	ws_role r;
	assert_int_equal(ws_role_parse("approver", &r), 0);
	assert_int_equal(r, WS_ROLE_APPROVER);
	assert_int_equal(ws_role_parse("root", &r), WS_EINVAL);
	assert_true(ws_role_may(WS_ROLE_ADMIN, WS_PERM_TOKENS));
	assert_false(ws_role_may(WS_ROLE_PLATFORM, WS_PERM_TOKENS));
	assert_true(ws_role_may(WS_ROLE_SECURITY, WS_PERM_FLEET_WRITE));
	assert_false(ws_role_may(WS_ROLE_VIEWER, WS_PERM_FLEET_WRITE));
	assert_false(ws_role_may(WS_ROLE_TENANT, WS_PERM_READ_FLEET));
	assert_true(ws_role_may(WS_ROLE_TENANT, WS_PERM_READ_TENANT));
	char *slugs[] = { (char *)"a", (char *)"b" };
	ws_principal p = { .role = WS_ROLE_TENANT, .tenants = slugs, .n_tenants = 2 };
	assert_true(ws_principal_sees_tenant(&p, "b"));
	assert_false(ws_principal_sees_tenant(&p, "c"));
	p.role = WS_ROLE_VIEWER;
	assert_true(ws_principal_sees_tenant(&p, "c"));
}

static void test_migration_files(void **state)
{
	(void)state;
	char dir[] = "/tmp/ws-mig-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[300];
	const char *files[] = { "0002_b.sql", "0001_a.sql", "0010_c.sql", "notes.txt" };
	for (size_t i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		FILE *f = fopen(path, "w");
		assert_non_null(f);
		fputs("SELECT 1;\n", f);
		fclose(f);
	}
	ws_migration_set set;
	ws_diags d;
	ws_diags_init(&d);
	assert_int_equal(ws_migrations_load(dir, &set, &d), 0);
	assert_int_equal(set.len, 3);
	assert_string_equal(set.items[0].name, "0001_a.sql");
	assert_string_equal(set.items[1].name, "0002_b.sql");
	assert_int_equal(set.items[2].version, 10);
	assert_int_equal(strlen(set.items[0].sha256), 64);
	ws_migrations_free(&set);

	snprintf(path, sizeof(path), "%s/0002_dup.sql", dir);
	FILE *f = fopen(path, "w");
	fputs("SELECT 2;\n", f);
	fclose(f);
	assert_int_equal(ws_migrations_load(dir, &set, &d), WS_EINVAL);
	assert_int_equal(d.len, 1);
	assert_non_null(strstr(d.items[0].message, "have the same number"));
	ws_diags_free(&d);
	for (size_t i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	snprintf(path, sizeof(path), "%s/0002_dup.sql", dir);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_defaults_file_and_env),
		cmocka_unit_test(test_config_errors_have_positions),
		cmocka_unit_test(test_tokens),
		cmocka_unit_test(test_roles),
		cmocka_unit_test(test_migration_files),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
