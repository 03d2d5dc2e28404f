/*
 * test_sim.c - unit tests of simfleet's map and fault specs (the HTTP
 * surface is tested end to end by tests/integration/test_simfleet.py).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "sim.h"

/* Enough keys to grow the index many times; order and lookups must hold. */
static void test_map_keeps_insertion_order(void **state)
{
	(void)state;
	sim_map *m = sim_map_new();
	char key[32];
	for (long i = 0; i < 100000; i++) {
		snprintf(key, sizeof(key), "t-%ld", (i * 7919) % 100000);
		assert_int_equal(sim_map_add(m, key, (void *)(i + 1)), 0);
	}
	assert_int_equal(sim_map_len(m), 100000);
	for (long i = 0; i < 100000; i += 997) {
		snprintf(key, sizeof(key), "t-%ld", (i * 7919) % 100000);
		assert_ptr_equal(sim_map_get(m, key), (void *)(i + 1));
		assert_string_equal(sim_map_key_at(m, (size_t)i), key);
	}
	assert_null(sim_map_get(m, "t-100000"));
	sim_map_clear(m, NULL);
	assert_int_equal(sim_map_len(m), 0);
	assert_null(sim_map_get(m, "t-1"));
	assert_int_equal(sim_map_add(m, "again", m), 0);
	assert_ptr_equal(sim_map_get(m, "again"), m);
	sim_map_free(m, NULL);
}

static json_t *spec(const char *text)
{
	json_t *j = json_loads(text, 0, NULL);
	assert_non_null(j);
	return j;
}

static void test_fault_defaults_and_values(void **state)
{
	(void)state;
	sim_fault f;
	const char *field = NULL;
	char msg[512];
	json_t *j = spec("{\"backup\": \"stale\", \"latency_ms\": 20, \"latency_factor\": 2.5,"
			 " \"latency_after_version\": \"2.0\", \"flap_every\": 3}");
	assert_int_equal(sim_fault_parse(j, &f, &field, msg, sizeof(msg)), 0);
	assert_int_equal(f.backup, SIM_BACKUP_STALE);
	assert_int_equal(f.backup_age_s, 48 * 3600);
	assert_int_equal(f.latency_ms, 20);
	assert_true(f.latency_factor == 2.5);
	assert_string_equal(f.latency_after_version, "2.0");
	assert_int_equal(f.flap_every, 3);
	assert_true(json_equal(f.spec, j));
	sim_fault_clear(&f);
	json_decref(j);

	j = spec("{\"backup\": \"fresh\", \"backup_age\": \"90m\"}");
	assert_int_equal(sim_fault_parse(j, &f, &field, msg, sizeof(msg)), 0);
	assert_int_equal(f.backup_age_s, 5400);
	sim_fault_clear(&f);
	json_decref(j);
}

static void test_fault_errors_name_the_field(void **state)
{
	(void)state;
	static const struct { const char *spec, *field, *says; } cases[] = {
		{ "{\"hang\": 1}", "hang", "expected true or false, got an integer" },
		{ "{\"latency_ms\": 600001}", "latency_ms", "from 0 to 600000" },
		{ "{\"latency_factor\": -1}", "latency_factor", "above 0" },
		{ "{\"backup\": \"old\"}", "backup", "invalid value \"old\"" },
		{ "{\"backup_age\": \"-3h\"}", "backup_age", "\"-3h\"" },
		{ "{\"flap_evry\": 2}", "flap_evry", "unknown fault field" },
		{ "[]", "(body)", "must be a JSON object" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		sim_fault f = { .latency_factor = 7 };
		const char *field = NULL;
		char msg[512];
		json_t *j = spec(cases[i].spec);
		assert_int_equal(sim_fault_parse(j, &f, &field, msg, sizeof(msg)), WS_EINVAL);
		assert_string_equal(field, cases[i].field);
		if (!strstr(msg, cases[i].says))
			fail_msg("%s: \"%s\" does not say \"%s\"", cases[i].spec, msg, cases[i].says);
		assert_true(f.latency_factor == 7);   /* untouched */
		json_decref(j);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_map_keeps_insertion_order),
		cmocka_unit_test(test_fault_defaults_and_values),
		cmocka_unit_test(test_fault_errors_name_the_field),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
