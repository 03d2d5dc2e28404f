/*
 * planner_test.h - helpers shared by the planner unit tests (cmocka).
 *
 * Fleets and policies are written as YAML and go through fleet_parse and
 * policy_parse, so every test plans what a user could write.  Expectations
 * are stated as the strings the plan JSON carries: windows in the tenant's
 * offset, wave times in UTC, reasons joined by "; ".
 */
#ifndef WS_PLANNER_TEST_H
#define WS_PLANNER_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "../wstest.h"
#include <libical/ical.h>
#include "wavesched/fleet.h"
#include "wavesched/planner.h"
#include "wavesched/policy.h"
#include "wavesched/window.h"

#define PT_FLEET_HEAD "apiVersion: wavesched/v1\nkind: Fleet\n"
#define PT_POLICY_HEAD "apiVersion: wavesched/v1\nkind: WavePolicy\nmetadata: {name: p}\nspec:\n"
#define PT_RELEASE "2.0"

static inline void pt_expect_no_diags(const ws_diags *d)
{
	char *got = wt_diags_text(d);
	assert_string_equal(got, "");
	free(got);
}

/* A fleet from `body` (everything after kind: Fleet); it must be valid. */
static inline ws_fleet *pt_fleet(const char *body)
{
	char *yaml = NULL;
	assert_true(asprintf(&yaml, "%s%s", PT_FLEET_HEAD, body) > 0);
	ws_diags d;
	ws_diags_init(&d);
	ws_fleet *f = fleet_parse("fleet.yaml", yaml, strlen(yaml), &d);
	pt_expect_no_diags(&d);
	ws_diags_free(&d);
	free(yaml);
	assert_non_null(f);
	return f;
}

/* A policy named "p" from the body of its spec; it must be valid. */
static inline ws_policy *pt_policy(const char *spec)
{
	char *yaml = NULL;
	assert_true(asprintf(&yaml, "%s%s", PT_POLICY_HEAD, spec) > 0);
	ws_diags d;
	ws_diags_init(&d);
	ws_policy *p = policy_parse("policy.yaml", yaml, strlen(yaml), &d);
	pt_expect_no_diags(&d);
	ws_diags_free(&d);
	free(yaml);
	assert_non_null(p);
	return p;
}

static inline int64_t pt_t(const char *s)
{
	int64_t t = 0;
	assert_int_equal(ws_time_parse(s, &t), 0);
	return t;
}

static inline void pt_expect_json_streamed(const ws_plan *p);

static inline ws_plan *pt_plan_release(const ws_fleet *f, const ws_policy *p, const char *release,
				       ws_release_kind kind, const char *start)
{
	ws_plan_input in = { .fleet = f, .policy = p, .release = release, .kind = kind,
			     .start = pt_t(start) };
	ws_diags d;
	ws_diags_init(&d);
	ws_plan *plan = plan_build(&in, &d);
	pt_expect_no_diags(&d);
	ws_diags_free(&d);
	assert_non_null(plan);
	pt_expect_json_streamed(plan);
	return plan;
}

static inline ws_plan *pt_plan(const ws_fleet *f, const ws_policy *p, ws_release_kind kind,
			       const char *start)
{
	return pt_plan_release(f, p, PT_RELEASE, kind, start);
}

/* Plans, which must fail with exactly `expected`. */
static inline void pt_expect_failure(const ws_fleet *f, const ws_policy *p, ws_release_kind kind,
				     const char *start, const char *expected)
{
	ws_plan_input in = { .fleet = f, .policy = p, .release = PT_RELEASE, .kind = kind,
			     .start = pt_t(start) };
	ws_diags d;
	ws_diags_init(&d);
	ws_plan *plan = plan_build(&in, &d);
	char *got = wt_diags_text(&d);
	plan_free(plan);
	assert_null(plan);
	assert_string_equal(got, expected);
	free(got);
	ws_diags_free(&d);
}

/* The placed tenant `slug` (NULL when not placed) and its wave. */
static inline const ws_plan_tenant *pt_find(const ws_plan *p, const char *slug,
					    const ws_plan_wave **wave)
{
	for (size_t i = 0; i < p->n_waves; i++)
		for (size_t j = 0; j < p->waves[i].n_tenants; j++)
			if (strcmp(p->waves[i].tenants[j].slug, slug) == 0) {
				if (wave)
					*wave = &p->waves[i];
				return &p->waves[i].tenants[j];
			}
	return NULL;
}

static inline const char *pt_unassigned(const ws_plan *p, const char *slug)
{
	for (size_t i = 0; i < p->n_unassigned; i++)
		if (strcmp(p->unassigned[i].slug, slug) == 0)
			return p->unassigned[i].reason;
	return NULL;
}

static inline char *pt_time(int64_t t, int offset, bool utc_z)
{
	char buf[64];
	ws_time_format(t, offset, utc_z, buf, sizeof(buf));
	return strdup(buf);
}

/* "START END | reason; reason" of a placed tenant, as the JSON writes them. */
static inline char *pt_describe(const ws_plan_tenant *t)
{
	char *out = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&out, &len);
	assert_non_null(fp);
	char a[64], b[64];
	ws_time_format(t->window_start, t->offset_start, false, a, sizeof(a));
	ws_time_format(t->window_end, t->offset_end, false, b, sizeof(b));
	fprintf(fp, "%s %s |", a, b);
	for (size_t i = 0; i < t->n_reasons; i++)
		fprintf(fp, "%s %s", i ? ";" : "", t->reasons[i]);
	fclose(fp);
	return out;
}

/* Tenant `slug` is in the wave with `index` and reads `expected`
 * ("START END | reasons", see pt_describe). */
static inline void pt_expect_tenant(const ws_plan *p, const char *slug, int index,
				    const char *expected)
{
	const ws_plan_wave *w = NULL;
	const ws_plan_tenant *t = pt_find(p, slug, &w);
	if (!t)
		fail_msg("tenant %s is not placed", slug);
	if (w->index != index)
		fail_msg("tenant %s is in wave %d (%s), expected wave %d", slug, w->index, w->name, index);
	char *got = pt_describe(t);
	assert_string_equal(got, expected);
	free(got);
}

/* Wave `index` is `name`, runs START..END (UTC) with `soak` seconds and
 * holds exactly the tenants `slugs` (space separated, in placement order). */
static inline void pt_expect_wave(const ws_plan *p, int index, const char *name, const char *start,
				  const char *end, int64_t soak, const char *slugs)
{
	assert_true(index >= 1 && (size_t)index <= p->n_waves);
	const ws_plan_wave *w = &p->waves[index - 1];
	assert_int_equal(w->index, index);
	assert_string_equal(w->name, name);
	char *s = pt_time(w->start, 0, true), *e = pt_time(w->end, 0, true);
	assert_string_equal(s, start);
	assert_string_equal(e, end);
	free(s);
	free(e);
	assert_int_equal(w->soak_s, soak);
	char *out = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&out, &len);
	for (size_t i = 0; i < w->n_tenants; i++)
		fprintf(fp, "%s%s", i ? " " : "", w->tenants[i].slug);
	fclose(fp);
	assert_string_equal(out, slugs);
	free(out);
}

/* "slug: reason" lines of the unassigned tenants. */
static inline char *pt_unassigned_text(const ws_plan *p)
{
	char *out = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&out, &len);
	for (size_t i = 0; i < p->n_unassigned; i++)
		fprintf(fp, "%s%s: %s", i ? "\n" : "", p->unassigned[i].slug, p->unassigned[i].reason);
	fclose(fp);
	return out;
}

static inline char *pt_warnings_text(const ws_plan *p)
{
	char *out = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&out, &len);
	for (size_t i = 0; i < p->n_warnings; i++)
		fprintf(fp, "%s%s", i ? "\n" : "", p->warnings[i]);
	fclose(fp);
	return out;
}

static inline void pt_expect_unassigned(const ws_plan *p, const char *expected)
{
	char *got = pt_unassigned_text(p);
	assert_string_equal(got, expected);
	free(got);
}

static inline void pt_expect_warnings(const ws_plan *p, const char *expected)
{
	char *got = pt_warnings_text(p);
	assert_string_equal(got, expected);
	free(got);
}

static inline char *pt_json(const ws_plan *p)
{
	json_t *j = plan_to_json(p);
	assert_non_null(j);
	char *s = json_dumps(j, WS_PLAN_JSON_FLAGS);
	json_decref(j);
	assert_non_null(s);
	return s;
}

/* What plan_write_json writes, in a new string; it must succeed. */
static inline char *pt_json_streamed(const ws_plan *p)
{
	char *out = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&out, &len);
	assert_non_null(fp);
	assert_int_equal(plan_write_json(p, fp), 0);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(strlen(out), len);   /* no NUL inside */
	return out;
}

/* plan_write_json writes the bytes of json_dumps(plan_to_json).  Every plan
 * pt_plan builds goes through this. */
static inline void pt_expect_json_streamed(const ws_plan *p)
{
	char *want = pt_json(p), *got = pt_json_streamed(p);
	assert_string_equal(got, want);
	free(got);
	free(want);
}

/* Whether [s, e) overlaps an occurrence of calendar `name`. */
static inline bool pt_in_calendar(const ws_fleet *f, const char *name, int64_t s, int64_t e);

typedef struct pt_hit {
	bool hit;
} pt_hit;

static inline int pt_hit_cb(void *arg, const ws_interval *iv)
{
	(void)iv;
	((pt_hit *)arg)->hit = true;
	return 1;
}

static inline bool pt_in_calendar(const ws_fleet *f, const char *name, int64_t s, int64_t e)
{
	for (size_t i = 0; i < f->n_calendars; i++) {
		const ws_calendar *c = &f->calendars[i];
		if (strcmp(c->name, name) != 0)
			continue;
		pt_hit h = { false };
		for (size_t k = 0; k < c->n_occurrences && !h.hit; k++)
			assert_int_equal(window_expand(&c->occurrences[k], "UTC", s, e, pt_hit_cb, &h), 0);
		return h.hit;
	}
	fail_msg("no calendar %s", name);
	return false;
}

#endif
