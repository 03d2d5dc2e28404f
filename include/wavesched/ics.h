/*
 * ics.h - a tenant's maintenance windows as an RFC 5545 calendar feed,
 * built with libical (api.md: GET /v1/tenants/{slug}/windows.ics).
 *
 * The input is the windows document of ws_tenant_windows()
 * (migrations/0011_windows.sql), the same one GET .../windows answers, so
 * the feed and the JSON view cannot disagree.  One VEVENT per window:
 *   UID       rollout-<id>-tenant-<slug>@wavesched (stable: a subscribed
 *             calendar updates the event in place when the window moves)
 *   DTSTART/DTEND in UTC (exact instants; every client shows them in its
 *             own zone, and no VTIMEZONE has to be shipped)
 *   SEQUENCE  the document's "sequence" (moves and status steps)
 *   STATUS    TENTATIVE, CONFIRMED or CANCELLED
 *   SUMMARY, DESCRIPTION in words a tenant owner reads, with the window in
 *             the tenant's own zone, the reasons and every move
 *   DTSTAMP   the document's generated_at; LAST-MODIFIED its updated_at.
 */
#ifndef WAVESCHED_ICS_H
#define WAVESCHED_ICS_H

#include <stddef.h>
#include "wavesched/diag.h"

struct json_t;

/*
 * Renders the calendar.  Returns the text (CRLF line ends, lines folded at
 * 75 octets, TEXT values escaped by libical), malloc'd, the caller frees it;
 * *len is its length.  A window without a start or an end cannot be placed
 * in a calendar and is left out.  On a document that is not of the
 * expected shape returns NULL and writes into `err` which field is wrong
 * and how ("windows[2].window_start_utc: not an RFC 3339 time"); nothing is
 * rendered then.  Safe to call from any one thread at a time.
 */
WS_API char *ics_windows_render(const struct json_t *doc, size_t *len, char *err, size_t err_size);

#endif
