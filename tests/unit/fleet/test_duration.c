/*
 * test_duration.c - ws_duration_parse / ws_duration_format.
 */
#include "fleet_test.h"

static int64_t dur(const char *s)
{
	int64_t v = -12345;
	if (ws_duration_parse(s, &v) != 0)
		print_error("refused \"%s\"\n", s);
	assert_int_equal(ws_duration_parse(s, &v), 0);
	return v;
}

static void test_short_forms(void **state)
{
	(void)state;
	assert_int_equal(dur("90s"), 90);
	assert_int_equal(dur("30m"), 1800);
	assert_int_equal(dur("4h"), 14400);
	assert_int_equal(dur("1d"), 86400);
	assert_int_equal(dur("2w"), 1209600);
	assert_int_equal(dur("24h"), 86400);
	assert_int_equal(dur("1h30m"), 5400);
	assert_int_equal(dur("1d2h3m4s"), 93784);
	assert_int_equal(dur("0s"), 0);
	assert_int_equal(dur("-2h"), -7200);
	assert_int_equal(dur("+5m"), 300);
}

static void test_iso_forms(void **state)
{
	(void)state;
	assert_int_equal(dur("PT4H"), 14400);
	assert_int_equal(dur("P1DT2H"), 93600);
	assert_int_equal(dur("PT90M"), 5400);
	assert_int_equal(dur("PT1H30M15S"), 5415);
	assert_int_equal(dur("P2D"), 172800);
	assert_int_equal(dur("P2W"), 1209600);
	assert_int_equal(dur("pt4h"), 14400);
	assert_int_equal(dur("PT0S"), 0);
	assert_int_equal(dur("-PT1H"), -3600);
}

static void test_garbage(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"", "h", "4", "3600", "4 h", " 4h", "4h ", "4x", "1.5h", "4H", "1M",
		"30m1h", "1h1h", "P", "PT", "P1Y", "P1M", "P1DT", "PT1D", "P1H", "PT1H2H",
		"P1W2D", "PT1.5H", "soon", "-", "--1h", "99999999999999999999s",
		"9999999999999999w",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int64_t v = 7;
		if (ws_duration_parse(bad[i], &v) != WS_EINVAL)
			print_error("accepted \"%s\"\n", bad[i]);
		assert_int_equal(ws_duration_parse(bad[i], &v), WS_EINVAL);
		assert_int_equal(v, 7);
	}
	int64_t v;
	assert_int_equal(ws_duration_parse(NULL, &v), WS_EINVAL);
}

static void test_format(void **state)
{
	(void)state;
	static const struct { int64_t s; const char *text; } cases[] = {
		{ 0, "0s" }, { 1, "1s" }, { 90, "90s" }, { 120, "2m" }, { 5400, "90m" },
		{ 14400, "4h" }, { 86400, "1d" }, { 93600, "26h" }, { 1209600, "14d" },
		{ 93784, "93784s" }, { -7200, "-2h" },
	};
	char buf[32];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ws_duration_format(cases[i].s, buf, sizeof(buf));
		assert_string_equal(buf, cases[i].text);
		/* What is formatted parses back to the same value. */
		assert_int_equal(dur(buf), cases[i].s);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_short_forms),
		cmocka_unit_test(test_iso_forms),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_format),
	};
	return cmocka_run_group_tests_name("fleet/duration", tests, NULL, NULL);
}
