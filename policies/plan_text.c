/*
 * plan_text.c - plans rendered for people (see plan_text.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "wavesched/plan_text.h"
#include "wavesched/window.h"

/* "Sat 2026-12-05 02:00" in the given offset. */
static void local_stamp(int64_t t, int offset, char *buf, size_t size, bool with_date)
{
	time_t lt = (time_t)(t + offset);
	struct tm tm;
	gmtime_r(&lt, &tm);
	strftime(buf, size, with_date ? "%a %Y-%m-%d %H:%M" : "%H:%M", &tm);
}

static void offset_text(int offset, char *buf, size_t size)
{
	/* UTC offsets are within +-18:00 (RFC 3339), so the hours are two
	 * digits; the clamp tells the compiler so too. */
	unsigned a = (unsigned)(offset < 0 ? -offset : offset) % (24 * 3600);
	snprintf(buf, size, "%c%02u:%02u", offset < 0 ? '-' : '+', a / 3600, (a % 3600) / 60);
}

/* A window in the tenant's local time: "Sat 2026-12-05 02:00-06:00 -06:00",
 * the end's date written only when it is another day. */
static void window_text(const ws_plan_tenant *t, char *buf, size_t size)
{
	char s[40], e[40], off[16];
	local_stamp(t->window_start, t->offset_start, s, sizeof(s), true);
	time_t ls = (time_t)(t->window_start + t->offset_start), le = (time_t)(t->window_end + t->offset_end);
	struct tm a, b;
	gmtime_r(&ls, &a);
	gmtime_r(&le, &b);
	bool same_day = a.tm_year == b.tm_year && a.tm_yday == b.tm_yday;
	local_stamp(t->window_end, t->offset_end, e, sizeof(e), !same_day);
	offset_text(t->offset_start, off, sizeof(off));
	snprintf(buf, size, "%s-%s %s", s, same_day ? e : e + 4, off);
}

static void utc_text(int64_t t, char *buf, size_t size)
{
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(buf, size, "%Y-%m-%d %H:%MZ", &tm);
}

static void join_reasons(const ws_plan_tenant *t, FILE *out)
{
	for (size_t i = 0; i < t->n_reasons; i++)
		fprintf(out, "%s%s", i ? "; " : "", t->reasons[i]);
}

char *plan_render_text(const ws_plan *p)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	if (!out)
		return NULL;
	size_t placed = 0;
	for (size_t w = 0; w < p->n_waves; w++)
		placed += p->waves[w].n_tenants;
	char start[40], dur[16];
	ws_time_format(p->start, 0, true, start, sizeof(start));
	fprintf(out, "Plan for release %s with policy %s, starting %s\n", p->release, p->policy, start);
	fprintf(out, "%zu wave%s, %zu tenant%s scheduled, %zu unassigned, %zu warning%s\n",
		p->n_waves, p->n_waves == 1 ? "" : "s", placed, placed == 1 ? "" : "s",
		p->n_unassigned, p->n_warnings, p->n_warnings == 1 ? "" : "s");
	for (size_t w = 0; w < p->n_waves; w++) {
		const ws_plan_wave *wv = &p->waves[w];
		char ws[32], we[32];
		utc_text(wv->start, ws, sizeof(ws));
		utc_text(wv->end, we, sizeof(we));
		ws_duration_format(wv->soak_s, dur, sizeof(dur));
		fprintf(out, "\nWave %d  %s  %s -> %s  %zu tenant%s, soak %s\n", wv->index, wv->name, ws, we,
			wv->n_tenants, wv->n_tenants == 1 ? "" : "s", wv->soak_s ? dur : "none");
		fprintf(out, "  %-24s %-22s %-36s %s\n", "TENANT", "CLUSTER", "WINDOW (tenant's local time)",
			"REASONS");
		for (size_t i = 0; i < wv->n_tenants; i++) {
			const ws_plan_tenant *t = &wv->tenants[i];
			char win[96];
			window_text(t, win, sizeof(win));
			fprintf(out, "  %-24s %-22s %-36s ", t->slug, t->cluster, win);
			join_reasons(t, out);
			fputc('\n', out);
		}
	}
	if (p->n_unassigned) {
		fprintf(out, "\nUnassigned\n");
		for (size_t i = 0; i < p->n_unassigned; i++)
			fprintf(out, "  %-24s %s\n", p->unassigned[i].slug, p->unassigned[i].reason);
	}
	if (p->n_warnings) {
		fprintf(out, "\nWarnings\n");
		for (size_t i = 0; i < p->n_warnings; i++)
			fprintf(out, "  - %s\n", p->warnings[i]);
	}
	fclose(out);
	return buf;
}

/* Where one tenant ended up in a plan. */
typedef struct slot_ref {
	const char *slug;
	const ws_plan_wave *wave;      /* NULL: unassigned */
	const ws_plan_tenant *t;
	const char *unassigned_reason;
} slot_ref;

static int ref_cmp(const void *x, const void *y)
{
	return strcmp(((const slot_ref *)x)->slug, ((const slot_ref *)y)->slug);
}

static slot_ref *plan_refs(const ws_plan *p, size_t *n)
{
	size_t total = p->n_unassigned;
	for (size_t w = 0; w < p->n_waves; w++)
		total += p->waves[w].n_tenants;
	slot_ref *r = calloc(total ? total : 1, sizeof(*r));
	if (!r)
		return NULL;
	size_t k = 0;
	for (size_t w = 0; w < p->n_waves; w++)
		for (size_t i = 0; i < p->waves[w].n_tenants; i++)
			r[k++] = (slot_ref){ p->waves[w].tenants[i].slug, &p->waves[w], &p->waves[w].tenants[i], NULL };
	for (size_t i = 0; i < p->n_unassigned; i++)
		r[k++] = (slot_ref){ p->unassigned[i].slug, NULL, NULL, p->unassigned[i].reason };
	qsort(r, total, sizeof(*r), ref_cmp);
	*n = total;
	return r;
}

static void where_text(const slot_ref *r, char *wave, size_t wsz, char *win, size_t winsz)
{
	if (!r) {
		snprintf(wave, wsz, "-");
		snprintf(win, winsz, "not a candidate");
	} else if (!r->wave) {
		snprintf(wave, wsz, "unassigned");
		snprintf(win, winsz, "-");
	} else {
		snprintf(wave, wsz, "%d %s", r->wave->index, r->wave->name);
		window_text(r->t, win, winsz);
	}
}

static bool same_place(const slot_ref *a, const slot_ref *b)
{
	if (!a || !b)
		return !a && !b;
	if (!a->wave || !b->wave)
		return !a->wave && !b->wave;
	return a->wave->index == b->wave->index && strcmp(a->wave->name, b->wave->name) == 0 &&
	       a->t->window_start == b->t->window_start && a->t->window_end == b->t->window_end;
}

char *plan_render_diff(const ws_plan *a, const ws_plan *b, size_t *changed)
{
	size_t na = 0, nb = 0;
	slot_ref *ra = plan_refs(a, &na), *rb = plan_refs(b, &nb);
	char *buf = NULL;
	size_t len = 0;
	FILE *out = (ra && rb) ? open_memstream(&buf, &len) : NULL;
	if (!out) {
		free(ra);
		free(rb);
		return NULL;
	}
	fprintf(out, "Plan diff for release %s: policy %s (A) -> policy %s (B)\n", b->release, a->policy,
		b->policy);
	fprintf(out, "%-24s %-26s %-26s %-36s %-36s %s\n", "TENANT", "WAVE A", "WAVE B", "WINDOW A",
		"WINDOW B", "WHY (B)");
	size_t i = 0, j = 0, n = 0;
	while (i < na || j < nb) {
		int c = i == na ? 1 : j == nb ? -1 : strcmp(ra[i].slug, rb[j].slug);
		const slot_ref *x = c <= 0 ? &ra[i] : NULL, *y = c >= 0 ? &rb[j] : NULL;
		i += c <= 0;
		j += c >= 0;
		if (same_place(x, y))
			continue;
		n++;
		char wa[80], wb[80], wina[96], winb[96];
		where_text(x, wa, sizeof(wa), wina, sizeof(wina));
		where_text(y, wb, sizeof(wb), winb, sizeof(winb));
		fprintf(out, "%-24s %-26s %-26s %-36s %-36s ", x ? x->slug : y->slug, wa, wb, wina, winb);
		if (y && y->t)
			join_reasons(y->t, out);
		else if (y)
			fputs(y->unassigned_reason, out);
		else
			fputs("not a candidate for this policy", out);
		fputc('\n', out);
	}
	fprintf(out, "%zu tenant%s change%s\n", n, n == 1 ? "" : "s", n == 1 ? "s" : "");
	fclose(out);
	free(ra);
	free(rb);
	if (changed)
		*changed = n;
	return buf;
}
