/*
 * fuzz_policy.c - policy_parse on arbitrary bytes (YAML or JSON), then the
 * summary and the per-wave lookup of what it accepted.
 */
#include <stdlib.h>
#include "fuzz.h"
#include "wavesched/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ws_diags d;
	ws_diags_init(&d);
	ws_policy *p = policy_parse("fuzz.yaml", (const char *)data, size, &d);
	if (!p) {
		if (d.len == 0)
			fuzz_fail("a refused policy without any diagnostic", NULL);
		ws_diags_free(&d);
		return 0;
	}
	ws_diags_free(&d);
	if (p->n_waves == 0)
		fuzz_fail("an accepted policy without waves", NULL);
	for (size_t i = 0; i < p->n_waves; i++)
		if (!p->waves[i].select || !policy_wave(p, p->waves[i].name))
			fuzz_fail("a wave without selector, or not found by its name", NULL);
	free(policy_summary(p));
	policy_free(p);
	return 0;
}
