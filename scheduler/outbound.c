/*
 * outbound.c - outgoing HTTP calls: libcurl multi on the libuv loop (the
 * contract is in include/wavesched/outbound.h).
 *
 * How it hangs together.  One CURLM; curl tells us which sockets to watch
 * (socket_fn: one uv_poll_t per socket, found again with curl_multi_assign)
 * and when to wake it (timer_fn: one uv_timer_t).  After every
 * curl_multi_socket_action the finished transfers are drained with
 * curl_multi_info_read and their callbacks run there.
 *
 * Completions that do not come from curl -- a URL refused before it reached
 * curl, a cancelled call -- wait in the `deferred` list and are delivered from
 * the `kick` timer, so no public function ever runs a user callback before it
 * returns.  Closing cancels everything, and the teardown itself (curl cleanup,
 * handle closes) also runs from the kick timer: a user callback may close the
 * client while we are still inside curl_multi_info_read's loop.
 *
 * libcurl's errors become ours (ws_outbound_reason plus a sentence naming the
 * URL) in exactly one place, finish_curl().
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <curl/curl.h>
#include <uv.h>
#include "ws_config.h"
#include "wavesched/log.h"
#include "wavesched/outbound.h"

#define OUT_DEFAULT_MAX_CONNECTIONS 4096
#define OUT_ERR_MAX 512

/* ---- the address policy ------------------------------------------------- */

typedef struct cidr {
	int family;          /* AF_INET or AF_INET6 */
	uint8_t addr[16];    /* 4 bytes used for AF_INET */
	int prefix;
} cidr;

struct ws_outbound_policy {
	cidr *allow;
	size_t n_allow;
	cidr *deny;
	size_t n_deny;
};

/* An address reduced to what the rules judge: IPv4-mapped and NAT64 IPv6
 * addresses become the IPv4 address inside them, because that is where the
 * packets end up. */
typedef struct addr_key {
	int family;
	uint8_t b[16];
} addr_key;

static const uint8_t v4mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
static const uint8_t nat64_prefix[12] = { 0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0 };

static void key_normalise(addr_key *k)
{
	if (k->family == AF_INET6 &&
	    (memcmp(k->b, v4mapped_prefix, 12) == 0 || memcmp(k->b, nat64_prefix, 12) == 0)) {
		memmove(k->b, k->b + 12, 4);
		memset(k->b + 4, 0, 12);
		k->family = AF_INET;
	}
}

static bool key_from_sockaddr(const struct sockaddr *sa, addr_key *k)
{
	memset(k, 0, sizeof(*k));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		k->family = AF_INET;
		memcpy(k->b, &in->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		k->family = AF_INET6;
		memcpy(k->b, &in6->sin6_addr, 16);
		key_normalise(k);
	} else {
		return false;
	}
	return true;
}

static bool cidr_match(const cidr *c, const addr_key *k)
{
	if (c->family != k->family)
		return false;
	int full = c->prefix / 8, rest = c->prefix % 8;
	if (memcmp(c->addr, k->b, (size_t)full) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (c->addr[full] & mask) == (k->b[full] & mask);
}

static bool list_match(const cidr *l, size_t n, const addr_key *k)
{
	for (size_t i = 0; i < n; i++)
		if (cidr_match(&l[i], k))
			return true;
	return false;
}

/* The fixed ranges of the rules (outbound.h). */
static const cidr never_ranges[] = {
	{ AF_INET, { 169, 254 }, 16 },                                        /* 169.254.0.0/16 */
	{ AF_INET6, { 0xfe, 0x80 }, 10 },                                     /* fe80::/10 */
	{ AF_INET6, { 0xfd, 0x00, 0x0e, 0xc2, [14] = 0x02, [15] = 0x54 }, 128 }, /* fd00:ec2::254 */
};
static const cidr loopback_ranges[] = {
	{ AF_INET, { 127 }, 8 },                                              /* 127.0.0.0/8 */
	{ AF_INET6, { [15] = 1 }, 128 },                                      /* ::1 */
	{ AF_INET, { 0 }, 8 },                                                /* 0.0.0.0/8 */
	{ AF_INET6, { 0 }, 128 },                                             /* :: */
};
#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

WS_API bool ws_outbound_policy_allows(const ws_outbound_policy *p, const struct sockaddr *sa,
				      const char **why)
{
	const char *dummy;
	if (!why)
		why = &dummy;
	addr_key k;
	if (!key_from_sockaddr(sa, &k)) {
		*why = "not an IP address";
		return false;
	}
	if (list_match(never_ranges, N_OF(never_ranges), &k)) {
		*why = "link-local or cloud metadata address";
		return false;
	}
	if (p && list_match(p->deny, p->n_deny, &k)) {
		*why = "in the deny list";
		return false;
	}
	if (p && list_match(p->allow, p->n_allow, &k))
		return true;
	if (list_match(loopback_ranges, N_OF(loopback_ranges), &k)) {
		*why = "loopback address not in the allow list";
		return false;
	}
	return true;
}

/* One item of a list; on a problem, says what is wrong in `err`. */
static bool cidr_parse(const char *item, cidr *out, char *err, size_t errsz)
{
	char ip[INET6_ADDRSTRLEN + 8];
	const char *slash = strchr(item, '/');
	size_t iplen = slash ? (size_t)(slash - item) : strlen(item);
	if (iplen >= sizeof(ip)) {
		snprintf(err, errsz, "not an IP address");
		return false;
	}
	memcpy(ip, item, iplen);
	ip[iplen] = '\0';
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, ip, out->addr) == 1) {
		out->family = AF_INET;
	} else if (inet_pton(AF_INET6, ip, out->addr) == 1) {
		out->family = AF_INET6;
	} else {
		snprintf(err, errsz, "\"%s\" is not an IPv4 or IPv6 address", ip);
		return false;
	}
	int max = out->family == AF_INET ? 32 : 128;
	out->prefix = max;
	if (slash) {
		const char *s = slash + 1;
		char *end;
		if (*s < '0' || *s > '9') {
			snprintf(err, errsz, "the prefix length must be a number from 0 to %d", max);
			return false;
		}
		errno = 0;
		long v = strtol(s, &end, 10);
		if (*end || errno || v < 0 || v > max) {
			snprintf(err, errsz, "the prefix length must be a number from 0 to %d", max);
			return false;
		}
		out->prefix = (int)v;
	}
	/* Host bits set usually mean a typo ("10.0.0.1/8"); say so rather than
	 * guess which network was meant. */
	for (int bit = out->prefix; bit < max; bit++) {
		if (out->addr[bit / 8] & (0x80 >> (bit % 8))) {
			snprintf(err, errsz, "host bits are set after the /%d prefix", out->prefix);
			return false;
		}
	}
	/* Judged like the addresses they describe (see key_normalise). */
	if (out->family == AF_INET6 && out->prefix >= 96 &&
	    (memcmp(out->addr, v4mapped_prefix, 12) == 0 || memcmp(out->addr, nat64_prefix, 12) == 0)) {
		memmove(out->addr, out->addr + 12, 4);
		memset(out->addr + 4, 0, 12);
		out->family = AF_INET;
		out->prefix -= 96;
	}
	return true;
}

static int list_parse(const char *csv, const char *name, cidr **out, size_t *n_out, ws_diags *d)
{
	*out = NULL;
	*n_out = 0;
	if (!csv)
		return 0;
	size_t cap = 1;
	for (const char *s = csv; *s; s++)
		cap += *s == ',';
	*out = calloc(cap, sizeof(**out));
	if (!*out)
		return WS_ENOMEM;
	int rc = 0, index = 0;
	const char *s = csv;
	while (*s) {
		const char *e = strchr(s, ',');
		if (!e)
			e = s + strlen(s);
		index++;
		while (s < e && (*s == ' ' || *s == '\t'))
			s++;
		const char *t = e;
		while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
			t--;
		if (t > s) {
			char item[128], err[160];
			size_t len = (size_t)(t - s);
			if (len >= sizeof(item)) {
				ws_diag_add(d, NULL, 0, 0, "%s list item %d \"%.40s...\": too long", name,
					    index, s);
				rc = WS_EINVAL;
			} else {
				memcpy(item, s, len);
				item[len] = '\0';
				if (cidr_parse(item, &(*out)[*n_out], err, sizeof(err)))
					(*n_out)++;
				else {
					ws_diag_add(d, NULL, 0, 0, "%s list item %d \"%s\": %s", name,
						    index, item, err);
					rc = WS_EINVAL;
				}
			}
		}
		s = *e ? e + 1 : e;
	}
	return rc;
}

WS_API ws_outbound_policy *ws_outbound_policy_parse(const char *allow_csv, const char *deny_csv,
						    ws_diags *d)
{
	ws_outbound_policy *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	int a = list_parse(allow_csv, "outbound allow", &p->allow, &p->n_allow, d);
	int b = list_parse(deny_csv, "outbound deny", &p->deny, &p->n_deny, d);
	if (a || b) {
		ws_outbound_policy_free(p);
		return NULL;
	}
	return p;
}

WS_API void ws_outbound_policy_free(ws_outbound_policy *p)
{
	if (!p)
		return;
	free(p->allow);
	free(p->deny);
	free(p);
}

/* ---- the client --------------------------------------------------------- */

typedef struct sockw {
	uv_poll_t poll;
	ws_outbound *o;
	curl_socket_t fd;
	struct sockw *prev, *next;
} sockw;

struct ws_outbound_call {
	ws_outbound *o;
	CURL *easy;
	struct curl_slist *headers;
	char method[8];
	char *url;
	ws_outbound_cb cb;
	void *arg;
	char *body;           /* the response, NUL-terminated */
	size_t len, cap, max;
	bool too_large;
	bool in_multi;
	uint64_t timeout_ms;
	uint64_t start_ns;
	char refused[160];    /* why open_fn refused an address, "" if it did not */
	char errbuf[CURL_ERROR_SIZE];
	/* Set for a completion that does not come from curl (deferred). */
	ws_outbound_reason pre_reason;
	char *pre_error;
	struct ws_outbound_call *prev, *next;   /* o->active or o->deferred */
};

typedef struct call_list {
	ws_outbound_call *head, *tail;
} call_list;

struct ws_outbound {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t timer;        /* curl's time-outs */
	uv_timer_t kick;         /* deferred completions and the teardown */
	ws_outbound_policy *policy;
	call_list active;        /* in curl */
	call_list deferred;      /* waiting for the kick */
	sockw *socks;
	ws_outbound_stats stats;
	bool run_timeouts;       /* the kick also runs curl's expired timers */
	bool closing;
	bool torn_down;
	int handles_open;
	void (*close_cb)(void *arg);
	void *close_arg;
};

static int global_users;

WS_API const char *ws_outbound_reason_name(ws_outbound_reason r)
{
	static const char *const names[WS_OUT__COUNT] = {
		[WS_OUT_OK] = "ok", [WS_OUT_REFUSED] = "refused", [WS_OUT_TIMEOUT] = "timeout",
		[WS_OUT_DNS] = "dns", [WS_OUT_CONNECT] = "connect", [WS_OUT_TLS] = "tls",
		[WS_OUT_TOO_LARGE] = "too_large", [WS_OUT_BAD_SCHEME] = "bad_scheme",
		[WS_OUT_BAD_URL] = "bad_url", [WS_OUT_REDIRECTS] = "redirects",
		[WS_OUT_CANCELLED] = "cancelled", [WS_OUT_PROTOCOL] = "protocol",
	};
	return (unsigned)r < WS_OUT__COUNT ? names[r] : "unknown";
}

static int reason_code(ws_outbound_reason r)
{
	switch (r) {
	case WS_OUT_OK: return 0;
	case WS_OUT_REFUSED: return WS_EFORBIDDEN;
	case WS_OUT_TIMEOUT: return WS_ETIMEDOUT;
	case WS_OUT_TOO_LARGE: return WS_ETOOBIG;
	case WS_OUT_BAD_SCHEME: case WS_OUT_BAD_URL: case WS_OUT_REDIRECTS: return WS_EINVAL;
	case WS_OUT_CANCELLED: return WS_EUNAVAIL;
	default: return WS_EIO;
	}
}

static void list_push(call_list *l, ws_outbound_call *c)
{
	c->next = NULL;
	c->prev = l->tail;
	if (l->tail)
		l->tail->next = c;
	else
		l->head = c;
	l->tail = c;
}

static void list_remove(call_list *l, ws_outbound_call *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		l->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		l->tail = c->prev;
	c->prev = c->next = NULL;
}

static void call_free(ws_outbound_call *c)
{
	if (c->easy)
		curl_easy_cleanup(c->easy);
	curl_slist_free_all(c->headers);
	free(c->url);
	free(c->body);
	free(c->pre_error);
	free(c);
}

/* Runs the callback, then frees the call: the result lives until the
 * callback returns. */
static void call_deliver(ws_outbound_call *c, ws_outbound_reason reason, long status,
			 uint64_t latency_us, int redirects, const char *error)
{
	ws_outbound *o = c->o;
	if (reason == WS_OUT_OK)
		o->stats.answered++;
	else
		o->stats.failures[reason]++;
	o->stats.in_flight--;
	ws_outbound_res res = {
		.reason = reason,
		.code = reason_code(reason),
		.status = status,
		.body = c->body ? c->body : "",
		.body_len = c->body ? c->len : 0,
		.latency_us = latency_us,
		.redirects = redirects,
		.error = reason == WS_OUT_OK ? NULL : error,
	};
	if (reason != WS_OUT_OK)
		ws_debug("outbound", "%s", error);
	c->cb(c->arg, &res);
	call_free(c);
}

static void kick_cb(uv_timer_t *t);

static void kick(ws_outbound *o)
{
	uv_timer_start(&o->kick, kick_cb, 0, 0);
}

static void call_defer(ws_outbound_call *c, ws_outbound_reason reason, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void call_defer(ws_outbound_call *c, ws_outbound_reason reason, const char *fmt, ...)
{
	char why[OUT_ERR_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	free(c->pre_error);
	c->pre_error = NULL;
	if (asprintf(&c->pre_error, "%s %s: %s", c->method, c->url, why) < 0)
		c->pre_error = NULL;
	c->pre_reason = reason;
	list_push(&c->o->deferred, c);
	kick(c->o);
}

static bool is_tls_error(CURLcode rc)
{
	switch (rc) {
	case CURLE_SSL_CONNECT_ERROR: case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM: case CURLE_SSL_CIPHER: case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ENGINE_NOTFOUND: case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_SSL_SHUTDOWN_FAILED: case CURLE_SSL_CRL_BADFILE: case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH: case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_USE_SSL_FAILED: case CURLE_SSL_CLIENTCERT:
		return true;
	default:
		return false;
	}
}

/* A finished transfer: curl's verdict becomes ours. */
static void finish_curl(ws_outbound_call *c, CURLcode rc)
{
	ws_outbound *o = c->o;
	list_remove(&o->active, c);
	curl_multi_remove_handle(o->multi, c->easy);
	c->in_multi = false;
	long status = 0, redirects = 0;
	curl_off_t total_us = 0;
	curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(c->easy, CURLINFO_REDIRECT_COUNT, &redirects);
	uint64_t latency = (uv_hrtime() - c->start_ns) / 1000u;
	if (rc == CURLE_OK && curl_easy_getinfo(c->easy, CURLINFO_TOTAL_TIME_T, &total_us) == CURLE_OK &&
	    total_us > 0)
		latency = (uint64_t)total_us;
	const char *detail = c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc);
	char why[OUT_ERR_MAX];
	ws_outbound_reason reason;
	/* A write error is ours: the cap, or (rarely) no memory for the body. */
	if (rc == CURLE_WRITE_ERROR && !c->too_large)
		rc = CURLE_OUT_OF_MEMORY;
	switch (rc) {
	case CURLE_OK:
		reason = WS_OUT_OK;
		why[0] = '\0';
		break;
	case CURLE_OPERATION_TIMEDOUT:
		reason = WS_OUT_TIMEOUT;
		snprintf(why, sizeof(why), "timed out after %llu ms", (unsigned long long)c->timeout_ms);
		break;
	case CURLE_COULDNT_RESOLVE_HOST:
		reason = WS_OUT_DNS;
		snprintf(why, sizeof(why), "cannot resolve the host name (%s)", detail);
		break;
	case CURLE_COULDNT_CONNECT:
		if (c->refused[0]) {
			reason = WS_OUT_REFUSED;
			snprintf(why, sizeof(why), "%s", c->refused);
		} else {
			reason = WS_OUT_CONNECT;
			snprintf(why, sizeof(why), "cannot connect (%s)", detail);
		}
		break;
	case CURLE_FILESIZE_EXCEEDED:
	case CURLE_WRITE_ERROR:
		reason = WS_OUT_TOO_LARGE;
		snprintf(why, sizeof(why), "response larger than %zu bytes", c->max);
		break;
	case CURLE_UNSUPPORTED_PROTOCOL:
		reason = WS_OUT_BAD_SCHEME;
		snprintf(why, sizeof(why), "%s to a URL that is not http or https (%s)",
			 redirects ? "redirected" : "scheme refused", detail);
		break;
	case CURLE_TOO_MANY_REDIRECTS:
		reason = WS_OUT_REDIRECTS;
		snprintf(why, sizeof(why), "more than %d redirects", WS_OUTBOUND_MAX_REDIRECTS);
		break;
	case CURLE_URL_MALFORMAT:
		reason = WS_OUT_BAD_URL;
		snprintf(why, sizeof(why), "malformed URL (%s)", detail);
		break;
	default:
		reason = is_tls_error(rc) ? WS_OUT_TLS : WS_OUT_PROTOCOL;
		snprintf(why, sizeof(why), "%s (%s)", reason == WS_OUT_TLS ? "TLS failure" : "failed",
			 detail);
		break;
	}
	char *err = NULL;
	if (reason != WS_OUT_OK && asprintf(&err, "%s %s: %s", c->method, c->url, why) < 0)
		err = NULL;
	call_deliver(c, reason, reason == WS_OUT_OK ? status : 0, latency, (int)redirects,
		     err ? err : "outgoing call failed");
	free(err);
}

static void check_info(ws_outbound *o)
{
	CURLMsg *m;
	int pending;
	while (o->multi && (m = curl_multi_info_read(o->multi, &pending))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		char *priv = NULL;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
		finish_curl((ws_outbound_call *)priv, m->data.result);
	}
}

static void teardown(ws_outbound *o);

static void kick_cb(uv_timer_t *t)
{
	ws_outbound *o = t->data;
	if (o->run_timeouts && o->multi) {
		int running;
		o->run_timeouts = false;
		curl_multi_socket_action(o->multi, CURL_SOCKET_TIMEOUT, 0, &running);
		check_info(o);
	}
	ws_outbound_call *c;
	while ((c = o->deferred.head)) {
		list_remove(&o->deferred, c);
		call_deliver(c, c->pre_reason, 0, (uv_hrtime() - c->start_ns) / 1000u, 0,
			     c->pre_error ? c->pre_error : "outgoing call failed");
	}
	if (o->closing && !o->active.head && !o->torn_down)
		teardown(o);
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
	sockw *w = h->data;
	ws_outbound *o = w->o;
	int flags = 0;
	if (status < 0)
		flags = CURL_CSELECT_ERR;
	else {
		if (events & UV_READABLE)
			flags |= CURL_CSELECT_IN;
		if (events & UV_WRITABLE)
			flags |= CURL_CSELECT_OUT;
	}
	int running;
	curl_multi_socket_action(o->multi, w->fd, flags, &running);
	check_info(o);
}

/* Every handle's close ends here; the last one after the teardown frees
 * the client and reports the close. */
static void handle_closed(ws_outbound *o)
{
	if (--o->handles_open > 0 || !o->torn_down)
		return;
	void (*cb)(void *) = o->close_cb;
	void *arg = o->close_arg;
	ws_outbound_policy_free(o->policy);
	free(o);
	if (--global_users == 0)
		curl_global_cleanup();
	if (cb)
		cb(arg);
}

static void sockw_close_cb(uv_handle_t *h)
{
	sockw *w = h->data;
	ws_outbound *o = w->o;
	free(w);
	handle_closed(o);
}

static void sockw_close(ws_outbound *o, sockw *w)
{
	uv_poll_stop(&w->poll);
	if (w->prev)
		w->prev->next = w->next;
	else
		o->socks = w->next;
	if (w->next)
		w->next->prev = w->prev;
	o->stats.sockets--;
	uv_close((uv_handle_t *)&w->poll, sockw_close_cb);
}

static int socket_fn(CURL *easy, curl_socket_t s, int action, void *userp, void *socketp)
{
	(void)easy;
	ws_outbound *o = userp;
	sockw *w = socketp;
	if (action == CURL_POLL_REMOVE) {
		if (w) {
			sockw_close(o, w);
			curl_multi_assign(o->multi, s, NULL);
		}
		return 0;
	}
	if (!w) {
		/* Returning an error here would make curl abort every transfer;
		 * without a watcher only this one stalls, until its time-out. */
		w = calloc(1, sizeof(*w));
		int rc = w ? uv_poll_init_socket(o->loop, &w->poll, s) : UV_ENOMEM;
		if (rc != 0) {
			ws_warn("outbound", "cannot watch socket %d: %s", (int)s, uv_strerror(rc));
			free(w);
			return 0;
		}
		w->o = o;
		w->fd = s;
		w->poll.data = w;
		w->next = o->socks;
		if (o->socks)
			o->socks->prev = w;
		o->socks = w;
		o->handles_open++;
		o->stats.sockets++;
		curl_multi_assign(o->multi, s, w);
	}
	int events = 0;
	if (action == CURL_POLL_IN || action == CURL_POLL_INOUT)
		events |= UV_READABLE;
	if (action == CURL_POLL_OUT || action == CURL_POLL_INOUT)
		events |= UV_WRITABLE;
	uv_poll_start(&w->poll, events, poll_cb);
	return 0;
}

static void timer_cb(uv_timer_t *t)
{
	ws_outbound *o = t->data;
	int running;
	curl_multi_socket_action(o->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_info(o);
}

/* curl asks to be woken after timeout_ms; calling back into curl from here
 * is not allowed, so the timer does it. */
static int timer_fn(CURLM *multi, long timeout_ms, void *userp)
{
	(void)multi;
	ws_outbound *o = userp;
	if (timeout_ms < 0)
		uv_timer_stop(&o->timer);
	else
		uv_timer_start(&o->timer, timer_cb, (uint64_t)timeout_ms, 0);
	return 0;
}

/* Every connection passes here with its resolved address before a socket
 * exists: the one place the address policy is enforced. */
static curl_socket_t open_fn(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
	ws_outbound_call *c = clientp;
	(void)purpose;
	const char *why;
	if (!ws_outbound_policy_allows(c->o->policy, &a->addr, &why)) {
		char ip[INET6_ADDRSTRLEN] = "?";
		if (a->family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)&a->addr)->sin_addr, ip, sizeof(ip));
		else if (a->family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&a->addr)->sin6_addr, ip, sizeof(ip));
		snprintf(c->refused, sizeof(c->refused), "refused address %s (%s)", ip, why);
		return CURL_SOCKET_BAD;
	}
	/* Close-on-exec: the command executor spawns children, which must not
	 * inherit our connections. */
	return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

static size_t write_fn(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	ws_outbound_call *c = userdata;
	size_t n = size * nmemb;
	if (n > c->max - c->len) {
		c->too_large = true;
		return 0;
	}
	if (c->len + n + 1 > c->cap) {
		size_t cap = c->cap ? c->cap : 4096;
		while (cap < c->len + n + 1)
			cap *= 2;
		if (cap > c->max + 1)
			cap = c->max + 1;
		char *b = realloc(c->body, cap);
		if (!b)
			return 0;
		c->body = b;
		c->cap = cap;
	}
	memcpy(c->body + c->len, ptr, n);
	c->len += n;
	c->body[c->len] = '\0';
	return n;
}

WS_API ws_outbound *ws_outbound_new(uv_loop_t *loop, ws_outbound_policy *policy_take,
				    const ws_outbound_opts *opts, ws_diags *d)
{
	const curl_version_info_data *vi = curl_version_info(CURLVERSION_NOW);
	/* CURLOPT_PROTOCOLS_STR came with 7.85; without an asynchronous resolver
	 * every DNS lookup would block the loop. */
	if (vi->version_num < 0x075500) {
		ws_diag_add(d, NULL, 0, 0, "libcurl %s is too old: 7.85 or newer is needed", vi->version);
		ws_outbound_policy_free(policy_take);
		return NULL;
	}
	if (!(vi->features & CURL_VERSION_ASYNCHDNS)) {
		ws_diag_add(d, NULL, 0, 0, "libcurl %s has no asynchronous resolver", vi->version);
		ws_outbound_policy_free(policy_take);
		return NULL;
	}
	ws_outbound *o = calloc(1, sizeof(*o));
	if (!o) {
		ws_outbound_policy_free(policy_take);
		return NULL;
	}
	if (global_users++ == 0 && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		global_users--;
		ws_diag_add(d, NULL, 0, 0, "cannot initialise libcurl");
		ws_outbound_policy_free(policy_take);
		free(o);
		return NULL;
	}
	o->loop = loop;
	o->policy = policy_take;
	o->multi = curl_multi_init();
	if (!o->multi) {
		ws_diag_add(d, NULL, 0, 0, "cannot create a libcurl multi handle");
		ws_outbound_policy_free(policy_take);
		free(o);
		if (--global_users == 0)
			curl_global_cleanup();
		return NULL;
	}
	long maxconn = opts && opts->max_connections ? (long)opts->max_connections
						       : OUT_DEFAULT_MAX_CONNECTIONS;
	curl_multi_setopt(o->multi, CURLMOPT_SOCKETFUNCTION, socket_fn);
	curl_multi_setopt(o->multi, CURLMOPT_SOCKETDATA, o);
	curl_multi_setopt(o->multi, CURLMOPT_TIMERFUNCTION, timer_fn);
	curl_multi_setopt(o->multi, CURLMOPT_TIMERDATA, o);
	curl_multi_setopt(o->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, maxconn);
	curl_multi_setopt(o->multi, CURLMOPT_MAXCONNECTS, maxconn);
	if (opts && opts->max_host_connections)
		curl_multi_setopt(o->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
				  (long)opts->max_host_connections);
	uv_timer_init(loop, &o->timer);
	uv_timer_init(loop, &o->kick);
	o->timer.data = o->kick.data = o;
	o->handles_open = 2;
	return o;
}

static void timer_close_cb(uv_handle_t *h)
{
	handle_closed(h->data);
}

static void teardown(ws_outbound *o)
{
	o->torn_down = true;
	curl_multi_cleanup(o->multi);
	o->multi = NULL;
	while (o->socks)
		sockw_close(o, o->socks);
	uv_close((uv_handle_t *)&o->timer, timer_close_cb);
	uv_close((uv_handle_t *)&o->kick, timer_close_cb);
}

WS_API void ws_outbound_close(ws_outbound *o, void (*cb)(void *arg), void *arg)
{
	if (o->closing)
		return;
	o->closing = true;
	o->close_cb = cb;
	o->close_arg = arg;
	while (o->active.head)
		ws_outbound_cancel(o->active.head);
	kick(o);
}

static bool method_known(const char *m)
{
	static const char *const known[] = { "GET", "POST", "PATCH", "PUT", "DELETE", "HEAD", NULL };
	for (size_t i = 0; known[i]; i++)
		if (strcmp(m, known[i]) == 0)
			return true;
	return false;
}

/* The scheme as curl itself will read it, so that what we check is what
 * curl would use. */
static ws_outbound_reason url_check(const char *url, char *why, size_t whysz)
{
	CURLU *u = curl_url();
	if (!u) {
		snprintf(why, whysz, "out of memory");
		return WS_OUT_PROTOCOL;
	}
	char *scheme = NULL;
	ws_outbound_reason r = WS_OUT_OK;
	CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
	if (uc != CURLUE_OK) {
		snprintf(why, whysz, "malformed URL (%s)", curl_url_strerror(uc));
		r = WS_OUT_BAD_URL;
	} else if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK) {
		snprintf(why, whysz, "malformed URL (no scheme)");
		r = WS_OUT_BAD_URL;
	} else if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
		snprintf(why, whysz, "scheme \"%s\" refused: only http and https are allowed", scheme);
		r = WS_OUT_BAD_SCHEME;
	}
	curl_free(scheme);
	curl_url_cleanup(u);
	return r;
}

static int easy_setup(ws_outbound_call *c, const ws_outbound_req *req)
{
	CURL *e = c->easy;
	int bad = 0;
#define SET(opt, val) bad |= curl_easy_setopt(e, opt, val) != CURLE_OK
	SET(CURLOPT_URL, c->url);
	SET(CURLOPT_PRIVATE, (char *)c);
	SET(CURLOPT_ERRORBUFFER, c->errbuf);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
	SET(CURLOPT_CONNECTTIMEOUT_MS, (long)c->timeout_ms);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_FOLLOWLOCATION, req->no_redirects ? 0L : 1L);
	SET(CURLOPT_MAXREDIRS, (long)WS_OUTBOUND_MAX_REDIRECTS);
	SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max);
	SET(CURLOPT_WRITEFUNCTION, write_fn);
	SET(CURLOPT_WRITEDATA, c);
	SET(CURLOPT_OPENSOCKETFUNCTION, open_fn);
	SET(CURLOPT_OPENSOCKETDATA, c);
	SET(CURLOPT_PROXY, "");   /* never a proxy from the environment */
	SET(CURLOPT_USERAGENT, "wavesched/" WS_VERSION);
	if (strcmp(c->method, "GET") == 0) {
		SET(CURLOPT_HTTPGET, 1L);
	} else if (strcmp(c->method, "HEAD") == 0) {
		SET(CURLOPT_NOBODY, 1L);
	} else {
		if (strcmp(c->method, "POST") != 0)
			SET(CURLOPT_CUSTOMREQUEST, c->method);
		if (req->body || strcmp(c->method, "POST") == 0) {
			SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
			SET(CURLOPT_COPYPOSTFIELDS, req->body ? req->body : "");
		}
	}
#undef SET
	/* "Expect: 100-continue" would add a round trip to every large POST. */
	struct curl_slist *h = curl_slist_append(NULL, "Expect:");
	if (!h)
		return WS_ENOMEM;
	c->headers = h;
	for (size_t i = 0; req->headers && req->headers[i]; i++) {
		h = curl_slist_append(c->headers, req->headers[i]);
		if (!h)
			return WS_ENOMEM;
		c->headers = h;
	}
	bad |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers) != CURLE_OK;
	return bad ? WS_EINVAL : 0;
}

WS_API int ws_outbound_request(ws_outbound *o, const ws_outbound_req *req, ws_outbound_cb cb,
			       void *arg, ws_outbound_call **call_out)
{
	if (o->closing)
		return WS_EUNAVAIL;
	const char *method = req->method ? req->method : "GET";
	if (!req->url || !cb || !method_known(method))
		return WS_EINVAL;
	ws_outbound_call *c = calloc(1, sizeof(*c));
	if (!c || !(c->url = strdup(req->url))) {
		free(c);
		return WS_ENOMEM;
	}
	snprintf(c->method, sizeof(c->method), "%s", method);
	c->o = o;
	c->cb = cb;
	c->arg = arg;
	c->max = req->max_bytes ? req->max_bytes : WS_OUTBOUND_DEFAULT_MAX_BYTES;
	c->timeout_ms = req->timeout_ms ? req->timeout_ms : WS_OUTBOUND_DEFAULT_TIMEOUT_MS;
	c->start_ns = uv_hrtime();
	o->stats.requests++;
	o->stats.in_flight++;
	if (call_out)
		*call_out = c;
	char why[OUT_ERR_MAX];
	ws_outbound_reason r = url_check(c->url, why, sizeof(why));
	if (r != WS_OUT_OK) {
		call_defer(c, r, "%s", why);
		return 0;
	}
	c->easy = curl_easy_init();
	int rc = c->easy ? easy_setup(c, req) : WS_ENOMEM;
	if (rc == 0 && curl_multi_add_handle(o->multi, c->easy) != CURLM_OK)
		rc = WS_ENOMEM;
	if (rc != 0) {
		o->stats.requests--;
		o->stats.in_flight--;
		call_free(c);
		if (call_out)
			*call_out = NULL;
		return rc;
	}
	c->in_multi = true;
	list_push(&o->active, c);
	/* curl 7.88 does not always announce the timer of a newly added handle
	 * (the CURLMOPT_TIMERFUNCTION is skipped when its deadline equals the
	 * last one announced), which leaves the call waiting for nothing.  Running
	 * curl's timers once from the loop starts it either way; our timer,
	 * which curl still drives, is left alone. */
	o->run_timeouts = true;
	kick(o);
	return 0;
}

WS_API void ws_outbound_cancel(ws_outbound_call *c)
{
	ws_outbound *o = c->o;
	if (c->in_multi) {
		list_remove(&o->active, c);
		curl_multi_remove_handle(o->multi, c->easy);
		c->in_multi = false;
		call_defer(c, WS_OUT_CANCELLED, "cancelled");
		return;
	}
	/* Already deferred: a cancel wins over the failure it was waiting to
	 * report only in name; the callback fires once either way. */
	if (c->pre_reason != WS_OUT_CANCELLED) {
		list_remove(&o->deferred, c);
		call_defer(c, WS_OUT_CANCELLED, "cancelled");
	}
}

WS_API void ws_outbound_stats_get(const ws_outbound *o, ws_outbound_stats *out)
{
	*out = o->stats;
}
