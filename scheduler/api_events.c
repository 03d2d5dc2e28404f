/*
 * api_events.c - GET /v1/events: Server-Sent Events of state changes
 * (api.md), filtered by the token's scope, resuming after Last-Event-ID.
 *
 * The handler checks the request and hands it to the process's event hub
 * (events.c), which owns the stream from then on.
 */
#include <stdlib.h>
#include <string.h>
#include "api_internal.h"
#include "wavesched/events.h"

void ws_api_set_events(ws_api *a, ws_events *ev)
{
	if (a)
		a->events = ev;
}

/* A seq or id: digits only, at most 18 of them (fits int64). */
static bool parse_seq(const char *s, int64_t *out)
{
	size_t n = strlen(s);
	if (n == 0 || n > 18)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	*out = strtoll(s, NULL, 10);
	return true;
}

void h_events(api_call *c)
{
	ws_events *ev = c->api->events;
	if (!ev) {
		reply_error(c, 503, "unavailable", "events are not served by this process", NULL);
		return;
	}
	/* An EventSource that reconnects sends Last-Event-ID; ?since= is for the
	 * first connection.  The header wins: it is the newer of the two. */
	int64_t since = -1;
	const char *from = ws_http_req_header(c->req, "Last-Event-ID");
	const char *field = "Last-Event-ID header";
	if (!from || !*from) {
		from = ws_http_req_query_param(c->req, "since");
		field = "since";
	}
	if (from && !parse_seq(from, &since)) {
		json_t *details = json_array();
		field_error(details, field, "%s must be an event id (a number 0 or more), not \"%.40s\"", field, from);
		reply_error(c, 400, "validation_failed", "invalid resume point", details);
		return;
	}
	ws_events_filter f = { 0 };
	const char *rollout = ws_http_req_query_param(c->req, "rollout");
	if (rollout && (!parse_seq(rollout, &f.rollout) || f.rollout == 0)) {
		json_t *details = json_array();
		field_error(details, "rollout", "rollout must be a rollout id (a positive number), not \"%.40s\"",
			    rollout);
		reply_error(c, 400, "validation_failed", "invalid rollout filter", details);
		return;
	}
	if (c->who.role == WS_ROLE_TENANT) {
		f.scoped = true;
		f.tenants = c->who.tenants;
		f.n_tenants = c->who.n_tenants;
	}
	if (strcmp(ws_http_req_method(c->req), "HEAD") == 0) {
		/* A stream with no body would hold the connection for nothing. */
		ws_http_add_header(c->req, "Cache-Control", "no-store");
		ws_http_respond(c->req, 200, "text/event-stream", "", 0);
		call_finish(c);
		return;
	}
	/* From here the hub answers the request, even when it refuses it. */
	ws_events_attach(ev, c->req, since, &f);
	call_finish(c);
}
