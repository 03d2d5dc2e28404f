/*
 * outbound.h - every outgoing HTTP call of the daemon (health probes, deploy
 * webhooks, status polls, Kubernetes API calls) goes through one ws_outbound:
 * libcurl's multi interface driven by the libuv loop.
 *
 * The URLs come from fleet files, so they are untrusted (engine.md "Outgoing
 * calls"):
 *   - only http and https, for the first URL and for every redirect, and at
 *     most WS_OUTBOUND_MAX_REDIRECTS redirects;
 *   - a per-call time-out covering the whole call (queueing in the multi
 *     handle included) and a cap on the response body (default 1 MiB);
 *   - the *resolved* address of every connection is checked before the socket
 *     is opened (CURLOPT_OPENSOCKETFUNCTION), so a name that resolves to a
 *     forbidden address is refused however it was spelt:
 *       1. 169.254.0.0/16, fe80::/10 and fd00:ec2::254 (link-local and cloud
 *          metadata) are always refused, whatever the allow list says;
 *       2. an address in the deny list is refused;
 *       3. an address in the allow list is allowed;
 *       4. loopback (127.0.0.0/8, ::1, and 0.0.0.0/8 and :: which Linux
 *          connects to the local host) is refused;
 *       5. any other address is allowed.
 *     IPv4-mapped (::ffff:a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) IPv6
 *     addresses are judged as the IPv4 address they carry.  Proxies from the
 *     environment are not used (a proxy would hide the real destination).
 *
 * One handle serves the whole process so connections are reused and the DNS
 * cache is shared between all calls (10,000 concurrent probes resolve a host
 * once).  Connections are capped (opts.max_connections); calls beyond the cap
 * wait inside curl, within their time-out.
 *
 * Callbacks: each accepted call's callback fires exactly once, always from
 * the loop and never before ws_outbound_request()/ws_outbound_cancel()
 * return.  A function that returns an error never calls the callback.
 */
#ifndef WAVESCHED_OUTBOUND_H
#define WAVESCHED_OUTBOUND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>
#include "wavesched/diag.h"

#define WS_OUTBOUND_MAX_REDIRECTS 3
#define WS_OUTBOUND_DEFAULT_MAX_BYTES ((size_t)1 << 20)
#define WS_OUTBOUND_DEFAULT_TIMEOUT_MS 10000

typedef struct ws_outbound ws_outbound;
typedef struct ws_outbound_call ws_outbound_call;
typedef struct ws_outbound_policy ws_outbound_policy;

/* Why a call failed; WS_OUT_OK when an HTTP answer arrived (whatever its
 * status: judging the status is the caller's business). */
typedef enum {
	WS_OUT_OK = 0,
	WS_OUT_REFUSED,      /* the address policy refused the resolved address */
	WS_OUT_TIMEOUT,
	WS_OUT_DNS,          /* the name did not resolve */
	WS_OUT_CONNECT,      /* connection refused, unreachable, reset */
	WS_OUT_TLS,          /* handshake or certificate problem */
	WS_OUT_TOO_LARGE,    /* the response body exceeded the cap */
	WS_OUT_BAD_SCHEME,   /* not http/https (first URL or a redirect) */
	WS_OUT_BAD_URL,      /* the URL does not parse */
	WS_OUT_REDIRECTS,    /* more than WS_OUTBOUND_MAX_REDIRECTS */
	WS_OUT_CANCELLED,
	WS_OUT_PROTOCOL,     /* a malformed HTTP answer, or any other curl error */
	WS_OUT__COUNT
} ws_outbound_reason;

/* "ok", "refused", "timeout", "dns", ...: stable, for metrics labels. */
WS_API const char *ws_outbound_reason_name(ws_outbound_reason r);

/* ---- the address policy ------------------------------------------------ */

/* Parses comma-separated CIDR lists ("127.0.0.0/8, ::1, 10.1.0.0/16"; a bare
 * address is a /32 or /128; empty items are ignored; either list may be NULL).
 * Returns NULL, with one message per bad item naming the list, the item and
 * what is wrong, when an item is not a CIDR or has host bits set. */
WS_API ws_outbound_policy *ws_outbound_policy_parse(const char *allow_csv, const char *deny_csv,
						    ws_diags *d);
WS_API void ws_outbound_policy_free(ws_outbound_policy *p);
/* Judges one resolved address by the rules above.  Returns true when allowed;
 * otherwise, when `why` is given, a static phrase saying which rule refused
 * it ("link-local or cloud metadata address", "in the deny list", "loopback
 * address not in the allow list"). */
WS_API bool ws_outbound_policy_allows(const ws_outbound_policy *p, const struct sockaddr *sa,
				      const char **why);

/* ---- the client --------------------------------------------------------- */

typedef struct ws_outbound_opts {
	size_t max_connections;        /* open at once; default 4096 */
	size_t max_host_connections;   /* per host; default 0 = no limit */
} ws_outbound_opts;

/* Creates the client.  Takes ownership of `policy` (NULL: the default policy,
 * no allow or deny list).  `opts` may be NULL.  Returns NULL when libcurl
 * cannot be initialised or lacks a feature we rely on (reason in `d`). */
WS_API ws_outbound *ws_outbound_new(uv_loop_t *loop, ws_outbound_policy *policy_take,
				    const ws_outbound_opts *opts, ws_diags *d);
/* Cancels every call in flight (their callbacks fire with WS_OUT_CANCELLED),
 * closes every handle, calls `cb` once (may be NULL), then frees the client.
 * May be called from a request callback. */
WS_API void ws_outbound_close(ws_outbound *o, void (*cb)(void *arg), void *arg);

typedef struct ws_outbound_req {
	const char *method;          /* "GET" (default), "POST", "PATCH", "PUT", "DELETE", "HEAD" */
	const char *url;             /* http:// or https:// */
	const char *const *headers;  /* "Name: value" strings, NULL-terminated; may be NULL */
	const char *body;            /* may be NULL */
	size_t body_len;
	uint64_t timeout_ms;         /* whole call; 0 = WS_OUTBOUND_DEFAULT_TIMEOUT_MS */
	size_t max_bytes;            /* response body cap; 0 = WS_OUTBOUND_DEFAULT_MAX_BYTES */
	bool no_redirects;           /* answer 3xx as is instead of following */
} ws_outbound_req;

typedef struct ws_outbound_res {
	ws_outbound_reason reason;   /* WS_OUT_OK: an HTTP answer arrived */
	int code;                    /* 0, or a WS_E* code matching reason */
	long status;                 /* HTTP status of the last answer; 0 when none */
	const char *body;            /* NUL-terminated, never NULL ("" when none) */
	size_t body_len;
	uint64_t latency_us;         /* from the call's start to its end */
	int redirects;               /* redirects followed */
	/* NULL when reason is WS_OUT_OK; otherwise "GET http://x/health: <why>"
	 * naming the URL and the reason in words. */
	const char *error;
} ws_outbound_res;

/* `res` and everything it points to live until the callback returns. */
typedef void (*ws_outbound_cb)(void *arg, const ws_outbound_res *res);

/* Starts a call; every field of `req` is copied.  Returns 0 (and the call in
 * `*call_out` when given, valid until its callback has started) or WS_ENOMEM,
 * WS_EINVAL (no URL, unknown method), WS_EUNAVAIL (the client is closing).
 * A URL that does not parse or has another scheme is not an error here: the
 * callback reports it (WS_OUT_BAD_URL, WS_OUT_BAD_SCHEME) like any other
 * failure of the call. */
WS_API int ws_outbound_request(ws_outbound *o, const ws_outbound_req *req, ws_outbound_cb cb,
			       void *arg, ws_outbound_call **call_out);
/* Stops a call that has not completed; its callback then fires (later, from
 * the loop) with WS_OUT_CANCELLED.  Must not be called once the callback has
 * started. */
WS_API void ws_outbound_cancel(ws_outbound_call *c);

typedef struct ws_outbound_stats {
	uint64_t requests;                   /* calls accepted */
	uint64_t answered;                   /* completed with an HTTP answer */
	uint64_t failures[WS_OUT__COUNT];    /* by reason; failures[WS_OUT_OK] stays 0 */
	uint64_t in_flight;
	uint64_t sockets;                    /* sockets watched on the loop now */
} ws_outbound_stats;
WS_API void ws_outbound_stats_get(const ws_outbound *o, ws_outbound_stats *out);

#endif
