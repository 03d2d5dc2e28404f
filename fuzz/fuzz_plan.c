/*
 * fuzz_plan.c - the planner on a fuzzed fleet and policy.
 *
 * The input is a fleet document, a line "%%", and a policy document.  When
 * both parse, the policy is checked against the fleet and planned, twice:
 * on one thread and with every wave split over two threads (planner.h: the
 * plan is the same either way).  Properties: both plans are identical, and
 * plan_write_json streams exactly the bytes of json_dumps(plan_to_json).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz.h"
#include "wavesched/planner.h"

#define SEPARATOR "\n%%\n"

/* The plan's JSON text both ways, which must agree; the caller frees it. */
static char *plan_text(const ws_plan *p)
{
	json_t *doc = plan_to_json(p);
	char *want = doc ? json_dumps(doc, WS_PLAN_JSON_FLAGS) : NULL;
	json_decref(doc);
	if (!want)
		fuzz_fail("plan_to_json/json_dumps failed on a plan", NULL);
	char *got = NULL;
	size_t got_len = 0;
	FILE *out = open_memstream(&got, &got_len);
	if (!out)
		abort();
	if (plan_write_json(p, out) != 0)
		fuzz_fail("plan_write_json failed on a memory stream", NULL);
	fclose(out);
	if (got_len != strlen(want) || memcmp(got, want, got_len) != 0) {
		fprintf(stderr, "--- plan_to_json ---\n%s\n--- plan_write_json ---\n%.*s\n", want,
			(int)got_len, got);
		fuzz_fail("plan_write_json differs from json_dumps(plan_to_json)", NULL);
	}
	free(got);
	return want;
}

static ws_plan *plan_once(const ws_fleet *f, const ws_policy *p, int threads, size_t min_units,
			  ws_diags *d)
{
	ws_plan_input in = {
		.fleet = f,
		.policy = p,
		.release = "2026.11.0",
		.kind = (p->release_kinds & WS_RELEASE_STANDARD) ? WS_RELEASE_STANDARD
									  : WS_RELEASE_URGENT,
		.start = 1793491200,   /* 2026-11-01T00:00:00Z */
		.threads = threads,
		.parallel_min_units = min_units,
	};
	return plan_build(&in, d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	const char *sep = memmem(buf, size, SEPARATOR, strlen(SEPARATOR));
	if (!sep)
		return 0;
	size_t flen = (size_t)(sep - buf) + 1;
	const char *pbuf = sep + strlen(SEPARATOR);
	size_t plen = size - (size_t)(pbuf - buf);

	ws_diags d;
	ws_diags_init(&d);
	ws_fleet *f = fleet_parse("fleet.yaml", buf, flen, &d);
	ws_policy *p = f ? policy_parse("policy.yaml", pbuf, plen, &d) : NULL;
	if (!f || !p)
		goto out;
	(void)policy_check_fleet(p, "policy.yaml", f, &d);
	ws_diags_free(&d);
	ws_diags_init(&d);
	ws_plan *one = plan_once(f, p, 1, 0, &d);
	ws_diags d2;
	ws_diags_init(&d2);
	ws_plan *two = plan_once(f, p, 0, 1, &d2);
	if (!one != !two)
		fuzz_fail("one thread and two threads disagree on whether a plan exists",
			  one ? &d2 : &d);
	if (!one && d.len == 0)
		fuzz_fail("plan_build failed without a diagnostic", NULL);
	if (one) {
		char *a = plan_text(one), *b = plan_text(two);
		if (strcmp(a, b) != 0) {
			fprintf(stderr, "--- one thread ---\n%s\n--- two threads ---\n%s\n", a, b);
			fuzz_fail("the plan depends on the number of threads", NULL);
		}
		free(a);
		free(b);
	}
	plan_free(one);
	plan_free(two);
	ws_diags_free(&d2);
out:
	ws_diags_free(&d);
	policy_free(p);
	fleet_free(f);
	return 0;
}
