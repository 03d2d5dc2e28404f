/*
 * plan_text.h - plans for people: the table of `wavectl plan --format text`
 * and the tenant-by-tenant comparison of `wavectl plan --diff`.
 */
#ifndef WAVESCHED_PLAN_TEXT_H
#define WAVESCHED_PLAN_TEXT_H

#include "wavesched/planner.h"

/* The plan as a table: a header line, one block per wave (dates of the
 * wave in UTC, each tenant's window in the tenant's own local time),
 * unassigned tenants and warnings.  Returns a malloc'd string. */
WS_API char *plan_render_text(const ws_plan *p);

/* The tenants whose wave or window differs between plan a and plan b (or
 * that are placed in one and unassigned in the other), each with b's
 * reasons; `*changed` gets their number.  Returns a malloc'd string. */
WS_API char *plan_render_diff(const ws_plan *a, const ws_plan *b, size_t *changed);

#endif
