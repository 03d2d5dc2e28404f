/*
 * test_planner_json.c - plan_write_json streams exactly the bytes of
 * json_dumps(plan_to_json(p), WS_PLAN_JSON_FLAGS), which the service sends
 * and `wavectl plan --format json` must match byte for byte.
 *
 * Most plans here are built by hand (ws_plan is a public struct) so that
 * strings can hold what no fleet or policy file would pass: every byte, bad
 * UTF-8 and NULL, which jansson leaves out of the tree and so must be left
 * out of the stream.  The planner's own plans are compared in every other
 * planner test (pt_plan_release) and for every property-test seed.
 */
#include "planner_test.h"

#define S "2027-01-04T00:00:00Z"

/* A plan of one wave with one tenant, one unassigned tenant and one warning,
 * every string `s`; the caller may change any member afterwards. */
typedef struct hand {
	const char *reasons[3];
	ws_plan_tenant tenant;
	ws_plan_wave wave;
	ws_plan_unassigned unassigned;
	const char *warnings[2];
	ws_plan plan;
} hand;

static void hand_init(hand *h, const char *s)
{
	memset(h, 0, sizeof(*h));
	h->reasons[0] = s;
	h->reasons[1] = "second";
	h->reasons[2] = s;
	h->tenant = (ws_plan_tenant){ .slug = s, .cluster = s, .window_start = 1800000000,
				      .window_end = 1800003600, .offset_start = -21600,
				      .offset_end = 19800, .reasons = h->reasons, .n_reasons = 3 };
	h->wave = (ws_plan_wave){ .index = 1, .name = s, .start = 1799999000, .end = 1800003600,
				  .soak_s = 7200, .tenants = &h->tenant, .n_tenants = 1 };
	h->unassigned = (ws_plan_unassigned){ .slug = s, .reason = s };
	h->warnings[0] = s;
	h->warnings[1] = "last";
	h->plan = (ws_plan){ .policy = s, .release = s, .start = 1799999000, .waves = &h->wave,
			     .n_waves = 1, .unassigned = &h->unassigned, .n_unassigned = 1,
			     .warnings = h->warnings, .n_warnings = 2 };
}

/* The stream matches jansson and, when `want` is given, reads `want`. */
static void expect_json(const ws_plan *p, const char *want)
{
	pt_expect_json_streamed(p);
	if (want) {
		char *got = pt_json_streamed(p);
		assert_string_equal(got, want);
		free(got);
	}
}

/* The escapes jansson writes: \" \\ \b \f \n \r \t by name, other control
 * bytes as upper-case \u00XX; '/', DEL and UTF-8 as they are. */
static void test_escapes(void **state)
{
	(void)state;
	const char *s = "q\"b\\n\nc\x01\x1f\x7f\b\f\r\t/Z\xc3\xbcrich \xe2\x80\x94 \xe6\x9d\xb1\xe4\xba\xac "
			"\xf0\x9f\x98\x80\xe2\x80\xa8";
	hand h;
	hand_init(&h, s);
	h.wave.n_tenants = 0;
	h.plan.n_unassigned = 0;
	h.plan.n_warnings = 1;
	const char *e = "\"q\\\"b\\\\n\\nc\\u0001\\u001F\x7f\\b\\f\\r\\t/Z\xc3\xbcrich \xe2\x80\x94 "
			"\xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x98\x80\xe2\x80\xa8\"";
	char *want = NULL;
	assert_true(asprintf(&want,
		"{\n  \"policy\": %s,\n  \"release\": %s,\n  \"start\": \"2027-01-15T07:43:20Z\",\n"
		"  \"waves\": [\n    {\n      \"index\": 1,\n      \"name\": %s,\n"
		"      \"start\": \"2027-01-15T07:43:20Z\",\n      \"end\": \"2027-01-15T09:00:00Z\",\n"
		"      \"soak_seconds\": 7200,\n      \"tenants\": []\n    }\n  ],\n"
		"  \"unassigned\": [],\n  \"warnings\": [\n    %s\n  ]\n}", e, e, e, e) > 0);
	expect_json(&h.plan, want);
	free(want);
	/* The same strings in every other place: tenants, reasons, unassigned. */
	hand_init(&h, s);
	expect_json(&h.plan, NULL);
}

/*
 * Every byte alone and every pair of bytes, then the UTF-8 edges jansson
 * checks (overlong forms, surrogates, beyond U+10FFFF, truncated and stray
 * continuation bytes), as warnings of one plan: the stream escapes and
 * leaves out exactly what jansson does.
 */
static void test_every_byte(void **state)
{
	(void)state;
	static const char *const edges[] = {
		"\xc0\x80", "\xc1\xbf", "\xc2\x80", "\xdf\xbf", "\xe0\x80\x80", "\xe0\x9f\xbf",
		"\xe0\xa0\x80", "\xed\x9f\xbf", "\xed\xa0\x80", "\xed\xbf\xbf", "\xee\x80\x80",
		"\xef\xbf\xbf", "\xf0\x8f\xbf\xbf", "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf",
		"\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xf8\x88\x80\x80\x80", "\xff", "\x80",
		"\xbf", "a\xc3", "a\xe2\x82", "a\xf0\x9f\x98", "\xe2\x82\xac", "\xe2\x28\xa1",
		"\xc3\x28", "\xf0\x28\x8c\xbc", "x\xc3\xa9\x80",
	};
	size_t n = 255 + 255 * 255 + sizeof(edges) / sizeof(edges[0]);
	char(*buf)[4] = calloc(255 + 255 * 255, sizeof(*buf));
	const char **w = calloc(n, sizeof(*w));
	assert_non_null(buf);
	assert_non_null(w);
	size_t k = 0;
	for (int a = 1; a < 256; a++, k++) {
		buf[k][0] = (char)a;
		w[k] = buf[k];
	}
	for (int a = 1; a < 256; a++)
		for (int b = 1; b < 256; b++, k++) {
			buf[k][0] = (char)a;
			buf[k][1] = (char)b;
			w[k] = buf[k];
		}
	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
		w[k++] = edges[i];
	assert_int_equal(k, n);
	ws_plan p = { .policy = "p", .release = "r", .warnings = w, .n_warnings = n };
	expect_json(&p, NULL);
	/* The same strings as reasons of one tenant (deeper, other indent). */
	ws_plan_tenant t = { .slug = "t", .cluster = "k", .reasons = w, .n_reasons = n };
	ws_plan_wave wave = { .index = 1, .name = "w", .tenants = &t, .n_tenants = 1 };
	ws_plan q = { .policy = "p", .release = "r", .waves = &wave, .n_waves = 1 };
	expect_json(&q, NULL);
	free(w);
	free(buf);
}

/* Random strings of random bytes, most of them bad UTF-8, a few good. */
static void test_random_strings(void **state)
{
	(void)state;
	enum { N = 20000 };
	char(*buf)[16] = calloc(N, sizeof(*buf));
	const char **w = calloc(N, sizeof(*w));
	assert_non_null(buf);
	assert_non_null(w);
	uint64_t x = 88172645463325252ULL;
	for (size_t i = 0; i < N; i++) {
		size_t len = i % 15;
		for (size_t j = 0; j < len; j++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			/* Mostly ASCII and a few lead/continuation bytes, so that
			 * some strings are valid UTF-8 with escapes. */
			unsigned v = (unsigned)(x >> 32);
			buf[i][j] = (char)(v % 4 ? 1 + v % 127 : 0x80 + v % 0x78);
		}
		w[i] = buf[i];
	}
	ws_plan p = { .policy = "p", .release = "r", .warnings = w, .n_warnings = N };
	expect_json(&p, NULL);
	free(w);
	free(buf);
}

/* What jansson leaves out (a NULL or bad UTF-8 string) is left out, down to
 * empty objects and arrays; times that do not fit say "invalid-time";
 * integers take their full range. */
static void test_left_out(void **state)
{
	(void)state;
	hand h;
	hand_init(&h, NULL);
	h.reasons[1] = "\xff";
	h.warnings[1] = "\xc3";
	h.wave.index = -7;
	h.wave.soak_s = INT64_MIN;
	h.wave.end = INT64_MAX;
	h.tenant.window_start = INT64_MAX / 2;   /* far beyond what struct tm holds */
	expect_json(&h.plan,
		"{\n  \"start\": \"2027-01-15T07:43:20Z\",\n  \"waves\": [\n    {\n"
		"      \"index\": -7,\n      \"start\": \"2027-01-15T07:43:20Z\",\n"
		"      \"end\": \"invalid-time\",\n      \"soak_seconds\": -9223372036854775808,\n"
		"      \"tenants\": [\n        {\n          \"window_start\": \"invalid-time\",\n"
		"          \"window_end\": \"2027-01-15T14:30:00+05:30\",\n"
		"          \"reasons\": []\n        }\n      ]\n    }\n  ],\n"
		"  \"unassigned\": [\n    {}\n  ],\n  \"warnings\": []\n}");
	/* Left out in the middle: the commas still come out right. */
	hand_init(&h, "s");
	h.tenant.cluster = NULL;
	h.reasons[1] = "\xed\xa0\x80";
	h.unassigned.slug = "\xc0\xaf";
	h.warnings[0] = NULL;
	expect_json(&h.plan, NULL);
	/* An empty plan. */
	ws_plan empty = { 0 };
	expect_json(&empty, "{\n  \"start\": \"1970-01-01T00:00:00Z\",\n  \"waves\": [],\n"
			    "  \"unassigned\": [],\n  \"warnings\": []\n}");
}

/*
 * A plan from the planner whose release (free text on the command line and
 * in the API) needs escapes; it shows in "release" only.  Many waves and
 * tenants so that the output is larger than plan_write_json's buffer.
 */
static void test_planned_release_with_escapes(void **state)
{
	(void)state;
	char *body = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&body, &len);
	assert_non_null(fp);
	fputs("clusters:\n  - {name: k, hosting: shared, max_parallel: 1000}\ntenants:\n", fp);
	for (int i = 0; i < 400; i++)
		fprintf(fp, "  - {slug: t%03d, cluster: k, version: \"1.0\", labels: {n: \"%d\"}}\n", i,
			i % 4);
	fclose(fp);
	ws_fleet *f = pt_fleet(body);
	free(body);
	ws_policy *p = pt_policy("  release_kinds: [standard]\n  waves:\n"
				 "    - {name: zero, select: {labels: {n: \"0\"}}}\n"
				 "    - {name: one, select: {labels: {n: \"1\"}}}\n"
				 "    - {name: rest, select: {}}\n");
	ws_plan *plan = pt_plan_release(f, p, "2.0 \"rc\\1\"\n\x01/\xc3\xa9", WS_RELEASE_STANDARD, S);
	char *got = pt_json_streamed(plan);
	assert_true(strlen(got) > 16384 * 4);
	assert_non_null(strstr(got, "\n  \"release\": \"2.0 \\\"rc\\\\1\\\"\\n\\u0001/\xc3\xa9\",\n"));
	free(got);
	pt_expect_json_streamed(plan);
	plan_free(plan);
	policy_free(p);
	fleet_free(f);
}

/* A failed write or flush is WS_EIO; what fitted before it is the start of
 * the right output.  NULL arguments are WS_EINVAL. */
static void test_write_errors(void **state)
{
	(void)state;
	hand h;
	hand_init(&h, "a string long enough to need a few writes");
	char *want = pt_json(&h.plan);

	/* A buffer too small: fmemopen fails the flush. */
	char small[64];
	FILE *fp = fmemopen(small, sizeof(small), "w");
	assert_non_null(fp);
	assert_int_equal(plan_write_json(&h.plan, fp), WS_EIO);
	fclose(fp);
	assert_memory_equal(small, want, 32);

	/* Larger than the internal buffer, so the failure comes from a
	 * fwrite in the middle of the plan rather than the final flush. */
	enum { NW = 4000 };
	const char **w = calloc(NW, sizeof(*w));
	assert_non_null(w);
	for (size_t i = 0; i < NW; i++)
		w[i] = "warning";
	ws_plan big = { .policy = "p", .release = "r", .warnings = w, .n_warnings = NW };
	char *big_want = pt_json(&big);
	assert_true(strlen(big_want) > 2 * 16384);
	char *mem = calloc(1, 20000);
	fp = fmemopen(mem, 20000, "w");
	assert_non_null(fp);
	setvbuf(fp, NULL, _IONBF, 0);
	assert_int_equal(plan_write_json(&big, fp), WS_EIO);
	fclose(fp);
	assert_memory_equal(mem, big_want, 16384);
	free(mem);
	free(big_want);
	free(w);

	/* A device that is always full. */
	fp = fopen("/dev/full", "w");
	if (fp) {
		assert_int_equal(plan_write_json(&h.plan, fp), WS_EIO);
		fclose(fp);
	}

	/* A stream opened for reading only. */
	fp = fopen("/dev/null", "r");
	assert_non_null(fp);
	assert_int_equal(plan_write_json(&h.plan, fp), WS_EIO);
	fclose(fp);

	/* Enough room: the whole document and nothing else. */
	size_t n = strlen(want);
	char *exact = calloc(1, n + 1);
	fp = fmemopen(exact, n + 1, "w");
	assert_non_null(fp);
	assert_int_equal(plan_write_json(&h.plan, fp), 0);
	assert_int_equal(ftell(fp), (long)n);
	fclose(fp);
	assert_string_equal(exact, want);
	free(exact);

	assert_int_equal(plan_write_json(NULL, stdout), WS_EINVAL);
	assert_int_equal(plan_write_json(&h.plan, NULL), WS_EINVAL);
	free(want);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_every_byte),
		cmocka_unit_test(test_random_strings),
		cmocka_unit_test(test_left_out),
		cmocka_unit_test(test_planned_release_with_escapes),
		cmocka_unit_test(test_write_errors),
	};
	return cmocka_run_group_tests(tests, NULL, wt_teardown_ical);
}
