/*
 * fuzz_fleet.c - fleet_parse on arbitrary bytes (YAML or JSON).
 *
 * Beyond "no crash, no leak": fleet.h promises that the canonical JSON is a
 * fixed point (parse(to_json(f)) == f), so an accepted document is exported
 * as JSON and as YAML (ws_json_to_yaml, what export prints), parsed back,
 * and must give the same canonical JSON.
 */
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "fuzz.h"
#include "wavesched/fleet.h"

/* Parses `text` and checks its canonical JSON equals `want`. */
static void check_reparse(const char *what, const char *text, size_t len, const json_t *want)
{
	ws_diags d;
	ws_diags_init(&d);
	ws_fleet *f = fleet_parse(what, text, len, &d);
	if (!f) {
		fprintf(stderr, "--- %s ---\n%.*s\n", what, (int)len, text);
		fuzz_fail("an exported fleet does not parse back", &d);
	}
	json_t *again = fleet_to_json(f);
	if (!json_equal(again, want)) {
		char *a = json_dumps(want, JSON_INDENT(1) | JSON_SORT_KEYS);
		char *b = json_dumps(again, JSON_INDENT(1) | JSON_SORT_KEYS);
		fprintf(stderr, "--- first ---\n%s\n--- after %s ---\n%s\n", a, what, b);
		fuzz_fail("the canonical JSON is not a fixed point", NULL);
	}
	json_decref(again);
	fleet_free(f);
	ws_diags_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ws_diags d;
	ws_diags_init(&d);
	ws_fleet *f = fleet_parse("fuzz.yaml", (const char *)data, size, &d);
	if (!f) {
		if (d.len == 0)
			fuzz_fail("a refused fleet without any diagnostic", NULL);
		ws_diags_free(&d);
		return 0;
	}
	ws_diags_free(&d);
	/* Lookups by every name the fleet has. */
	for (size_t i = 0; i < f->n_tenants; i++)
		if (fleet_tenant(f, f->tenants[i].slug) != &f->tenants[i])
			fuzz_fail("fleet_tenant does not find a tenant by its slug", NULL);
	json_t *doc = fleet_to_json(f);
	if (!doc)
		fuzz_fail("fleet_to_json failed on a valid fleet", NULL);
	char *text = json_dumps(doc, JSON_COMPACT);
	if (!text)
		fuzz_fail("the canonical JSON cannot be dumped", NULL);
	check_reparse("export.json", text, strlen(text), doc);
	free(text);
	size_t ylen = 0;
	char *yaml = ws_json_to_yaml(doc, &ylen);
	if (!yaml)
		fuzz_fail("ws_json_to_yaml failed on a canonical fleet", NULL);
	check_reparse("export.yaml", yaml, ylen, doc);
	free(yaml);
	json_decref(doc);
	fleet_free(f);
	return 0;
}
