/*
 * watch.c - `wavectl rollout status ID [--watch]`: a rollout's waves, and
 * with --watch their progress live from GET /v1/events until it ends.
 *
 * The picture is built from the rollout as GET /v1/rollouts/ID shows it,
 * then the rollout's events from the first one on (?rollout=ID&since=0):
 * replaying them in seq order ends where the rollout stands, whatever
 * happened between the two requests.  If the stream drops, it resumes with
 * Last-Event-ID.  On a terminal, one line per wave redrawn in place; when
 * stdout is not one, one plain line per change (logs, CI).
 *
 * Exit: 0 when the rollout completes; 1 when it halts, is aborted or rolled
 * back (a gate failed beyond its budget ends that way); 3 when the service
 * cannot be reached for WATCH_GIVE_UP_S.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <curl/curl.h>
#include <jansson.h>
#include "ws_config.h"
#include "wavectl.h"

/* One SSE line may not be longer (an event is a few hundred bytes). */
#define WATCH_LINE_MAX (1u << 20)
#define WATCH_GIVE_UP_S 60
/* The service sends a comment every 15 s: silence this long is a dead link. */
#define WATCH_SILENCE_S 45L
#define BAR_WIDTH 20

/* cmd_rollout.c dispatches `rollout status` here. */

typedef struct w_tenant {
	char *slug;
	char *state;
} w_tenant;

typedef struct w_wave {
	long long index;
	char *name;
	char *state;
	w_tenant *tenants;
	size_t n_tenants;
} w_wave;

typedef struct watch {
	long long id;
	char *state;
	w_wave *waves;
	size_t n_waves;
	bool tty;
	int drawn;              /* lines of the last drawing, to redraw over */
	int result;             /* -1 while the rollout goes on, else the exit code */
	long long last_id;      /* for Last-Event-ID; -1 before any */
	/* the SSE reader */
	char *line;
	size_t line_len;
	bool after_cr;
	long long ev_id;        /* id: of the message being read; -1 none */
	char *data;
	size_t data_len;
	bool bad;               /* a protocol error: stop reading */
	CURL *h;                /* the connection being read */
	long status;            /* its HTTP status, once known */
	buf err;                /* the body of an answer that is not a stream */
} watch;

static void set_str(char **dst, const char *s)
{
	free(*dst);
	*dst = strdup(s ? s : "?");
}

static const char *jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "?";
}

/* completed -> 0; halted, aborted, rolled_back -> 1; otherwise -1. */
static int rollout_outcome(const char *state)
{
	if (strcmp(state, "completed") == 0)
		return EXIT_OK;
	if (strcmp(state, "halted") == 0 || strcmp(state, "aborted") == 0 || strcmp(state, "rolled_back") == 0)
		return EXIT_REFUSED;
	return -1;
}

static w_wave *find_wave(watch *w, long long index)
{
	for (size_t i = 0; i < w->n_waves; i++)
		if (w->waves[i].index == index)
			return &w->waves[i];
	return NULL;
}

static w_tenant *find_tenant(watch *w, const char *slug, w_wave **wave)
{
	for (size_t i = 0; i < w->n_waves; i++)
		for (size_t k = 0; k < w->waves[i].n_tenants; k++)
			if (strcmp(w->waves[i].tenants[k].slug, slug) == 0) {
				if (wave)
					*wave = &w->waves[i];
				return &w->waves[i].tenants[k];
			}
	return NULL;
}

static void add_tenant(w_wave *wv, const char *slug, const char *state)
{
	w_tenant *t = realloc(wv->tenants, (wv->n_tenants + 1) * sizeof(*t));
	if (!t)
		return;
	wv->tenants = t;
	t[wv->n_tenants].slug = strdup(slug);
	t[wv->n_tenants].state = strdup(state);
	wv->n_tenants++;
}

static void watch_free(watch *w)
{
	for (size_t i = 0; i < w->n_waves; i++) {
		for (size_t k = 0; k < w->waves[i].n_tenants; k++) {
			free(w->waves[i].tenants[k].slug);
			free(w->waves[i].tenants[k].state);
		}
		free(w->waves[i].tenants);
		free(w->waves[i].name);
		free(w->waves[i].state);
	}
	free(w->waves);
	free(w->state);
	free(w->line);
	free(w->data);
	free(w->err.data);
}

static int load(watch *w, json_t *doc)
{
	set_str(&w->state, jstr(doc, "state"));
	json_t *waves = json_object_get(doc, "waves");
	w->waves = calloc(json_array_size(waves) + 1, sizeof(*w->waves));
	if (!w->waves)
		return -1;
	size_t i;
	json_t *wv;
	json_array_foreach(waves, i, wv) {
		w_wave *x = &w->waves[w->n_waves++];
		x->index = json_integer_value(json_object_get(wv, "index"));
		set_str(&x->name, jstr(wv, "name"));
		set_str(&x->state, jstr(wv, "state"));
		size_t k;
		json_t *t;
		json_array_foreach(json_object_get(wv, "tenants"), k, t)
			add_tenant(x, jstr(t, "slug"), jstr(t, "state"));
	}
	return 0;
}

static size_t count_state(const w_wave *wv, const char *state)
{
	size_t n = 0;
	for (size_t k = 0; k < wv->n_tenants; k++)
		n += strcmp(wv->tenants[k].state, state) == 0;
	return n;
}

/* One line per wave: index, name, a bar of healthy tenants, counts, state. */
static void wave_line(const w_wave *wv, char *out, size_t size)
{
	size_t healthy = count_state(wv, "healthy"), total = wv->n_tenants;
	char bar[BAR_WIDTH + 1];
	size_t fill = total ? healthy * BAR_WIDTH / total : (strcmp(wv->state, "passed") == 0 ? BAR_WIDTH : 0);
	for (size_t i = 0; i < BAR_WIDTH; i++)
		bar[i] = i < fill ? '#' : '-';
	bar[BAR_WIDTH] = '\0';
	size_t failed = count_state(wv, "failed") + count_state(wv, "rolled_back") + count_state(wv, "rolling_back");
	size_t skipped = count_state(wv, "skipped");
	int n = snprintf(out, size, "wave %-2lld %-18.18s [%s] %3zu/%-3zu healthy  %s", wv->index, wv->name, bar,
			 healthy, total, wv->state);
	if (n > 0 && (size_t)n < size && (failed || skipped))
		snprintf(out + n, size - (size_t)n, " (%zu failed, %zu skipped)", failed, skipped);
}

static void draw(watch *w)
{
	if (!w->tty)
		return;
	/* Back to the first line of the previous drawing, each line cleared
	 * before it is written again. */
	if (w->drawn)
		printf("\033[%dA", w->drawn);
	printf("\r\033[2Krollout %lld: %s\n", w->id, w->state);
	for (size_t i = 0; i < w->n_waves; i++) {
		char line[256];
		wave_line(&w->waves[i], line, sizeof(line));
		printf("\r\033[2K%s\n", line);
	}
	w->drawn = (int)w->n_waves + 1;
	fflush(stdout);
}

static void plain(watch *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void plain(watch *w, const char *fmt, ...)
{
	if (w->tty)
		return;
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

/* One event of the rollout: the picture moves, and tells. */
static void apply(watch *w, json_t *ev)
{
	const char *kind = jstr(ev, "kind");
	const char *at = jstr(ev, "at");
	json_t *p = json_object_get(ev, "payload");
	const char *tenant = json_string_value(json_object_get(ev, "tenant"));
	if (strcmp(kind, "rollout.state") == 0) {
		set_str(&w->state, jstr(p, "to"));
		const char *reason = json_string_value(json_object_get(p, "reason"));
		plain(w, "%s rollout %lld: %s%s%s%s", at, w->id, w->state, reason ? " (" : "", reason ? reason : "",
		      reason ? ")" : "");
		w->result = rollout_outcome(w->state);
	} else if (strcmp(kind, "wave.state") == 0) {
		w_wave *wv = find_wave(w, json_integer_value(json_object_get(p, "wave")));
		if (!wv)
			return;
		set_str(&wv->state, jstr(p, "to"));
		char line[256];
		wave_line(wv, line, sizeof(line));
		plain(w, "%s %s", at, line);
	} else if (strcmp(kind, "deployment.state") == 0 && tenant) {
		w_wave *wv = NULL;
		w_tenant *t = find_tenant(w, tenant, &wv);
		if (!t)
			return;
		set_str(&t->state, jstr(p, "to"));
		const char *reason = json_string_value(json_object_get(p, "reason"));
		plain(w, "%s tenant %s (wave %lld): %s%s%s", at, tenant, wv->index, t->state, reason ? ": " : "",
		      reason ? reason : "");
	} else if (strcmp(kind, "deployment.scheduled") == 0 && tenant) {
		w_wave *wv = find_wave(w, json_integer_value(json_object_get(p, "wave")));
		if (wv && !find_tenant(w, tenant, NULL))
			add_tenant(wv, tenant, "scheduled");
	} else if (strcmp(kind, "wave.decision") == 0) {
		plain(w, "%s wave %lld: %s by %s", at, (long long)json_integer_value(json_object_get(p, "wave")),
		      jstr(p, "decision"), jstr(p, "actor"));
	}
	draw(w);
}

/* ---- the SSE reader ------------------------------------------------------ */

/* A blank line ends a message: its data is one event of the rollout. */
static void dispatch(watch *w)
{
	if (w->data_len && w->ev_id >= 0) {
		json_error_t je;
		json_t *ev = json_loadb(w->data, w->data_len, 0, &je);
		if (!json_is_object(ev)) {
			fprintf(stderr, "wavectl: event %lld from the service is not a JSON object (line %d: %s)\n",
				w->ev_id, je.line, je.text);
			w->bad = true;
		} else {
			apply(w, ev);
		}
		json_decref(ev);
		w->last_id = w->ev_id;
	}
	w->ev_id = -1;
	w->data_len = 0;
}

static void sse_line(watch *w, const char *line, size_t len)
{
	if (len == 0) {
		dispatch(w);
		return;
	}
	if (line[0] == ':')
		return;   /* a comment: the heartbeat */
	const char *colon = memchr(line, ':', len);
	size_t flen = colon ? (size_t)(colon - line) : len;
	const char *v = colon ? colon + 1 : line + len;
	size_t vlen = (size_t)(line + len - v);
	if (vlen && *v == ' ') {
		v++;
		vlen--;
	}
	if (flen == 2 && memcmp(line, "id", 2) == 0) {
		char num[24];
		char *end;
		if (vlen == 0 || vlen >= sizeof(num)) {
			w->ev_id = -1;
			return;
		}
		memcpy(num, v, vlen);
		num[vlen] = '\0';
		errno = 0;
		long long id = strtoll(num, &end, 10);
		w->ev_id = (*end || errno || id < 0) ? -1 : id;
	} else if (flen == 4 && memcmp(line, "data", 4) == 0) {
		char *d = realloc(w->data, w->data_len + vlen + 2);
		if (!d) {
			w->bad = true;
			return;
		}
		w->data = d;
		if (w->data_len)
			w->data[w->data_len++] = '\n';
		memcpy(w->data + w->data_len, v, vlen);
		w->data_len += vlen;
		w->data[w->data_len] = '\0';
	}
	/* event:, retry: and unknown fields are not used. */
}

/* Splits what curl hands over into lines (LF, CRLF or CR, as SSE says). */
static size_t stream_cb(char *ptr, size_t size, size_t n, void *arg)
{
	watch *w = arg;
	size_t len = size * n;
	if (!w->status)
		curl_easy_getinfo(w->h, CURLINFO_RESPONSE_CODE, &w->status);
	if (w->status != 200) {
		/* An error answer (api.md shape), kept for report_error. */
		if (w->err.len + len > 65536)
			return 0;
		char *p = realloc(w->err.data, w->err.len + len + 1);
		if (!p)
			return 0;
		memcpy(p + w->err.len, ptr, len);
		w->err.data = p;
		w->err.len += len;
		p[w->err.len] = '\0';
		return len;
	}
	for (size_t i = 0; i < len; i++) {
		char ch = ptr[i];
		if (w->after_cr && ch == '\n') {
			w->after_cr = false;
			continue;
		}
		w->after_cr = ch == '\r';
		if (ch == '\n' || ch == '\r') {
			sse_line(w, w->line ? w->line : "", w->line_len);
			w->line_len = 0;
		} else {
			if (w->line_len + 1 >= WATCH_LINE_MAX) {
				fprintf(stderr, "wavectl: a line of the event stream is longer than %u bytes\n",
					WATCH_LINE_MAX);
				w->bad = true;
				return 0;
			}
			if (!w->line && !(w->line = malloc(WATCH_LINE_MAX))) {
				w->bad = true;
				return 0;
			}
			w->line[w->line_len++] = ch;
		}
		if (w->bad || w->result >= 0)
			return 0;   /* done (or unreadable): curl stops here */
	}
	return len;
}

/* One connection to the stream.  0 when it ended normally or the rollout
 * ended; EXIT_UNREACHABLE when it could not be made; EXIT_REFUSED when the
 * service refused it (printed). */
static int follow_once(watch *w, const char *base, const char *token)
{
	char *url = NULL, *auth = NULL, last[64];
	size_t blen = strlen(base);
	if (asprintf(&url, "%.*s/v1/events?rollout=%lld%s", (int)(blen && base[blen - 1] == '/' ? blen - 1 : blen),
		     base, w->id, w->last_id < 0 ? "&since=0" : "") < 0)
		return EXIT_UNREACHABLE;
	CURL *h = curl_easy_init();
	struct curl_slist *hdrs = curl_slist_append(NULL, "Accept: text/event-stream");
	if (token && *token && asprintf(&auth, "Authorization: Bearer %s", token) >= 0)
		hdrs = curl_slist_append(hdrs, auth);
	if (w->last_id >= 0) {
		snprintf(last, sizeof(last), "Last-Event-ID: %lld", w->last_id);
		hdrs = curl_slist_append(hdrs, last);
	}
	w->h = h;
	w->status = 0;
	free(w->err.data);
	w->err = (buf){ 0 };
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, stream_cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, w);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, WATCH_SILENCE_S);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "wavectl/" WS_VERSION);
	curl_easy_setopt(h, CURLOPT_FAILONERROR, 0L);
	w->line_len = 0;
	w->after_cr = false;
	w->ev_id = -1;
	w->data_len = 0;
	CURLcode cc = curl_easy_perform(h);
	long status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	int rc = 0;
	if (w->result >= 0 || w->bad) {
		rc = 0;
	} else if (status && status != 200) {
		response r = { .status = status, .body = w->err };
		rc = report_error(&r);
	} else if (cc != CURLE_OK) {
		if (!w->tty)
			fprintf(stderr, "wavectl: event stream: %s; resuming after event %lld\n", curl_easy_strerror(cc),
				w->last_id);
		rc = EXIT_UNREACHABLE;
	} else if (!w->tty) {
		/* The service ended it (a restart, a slow read): not an error. */
		fprintf(stderr, "wavectl: the event stream ended; resuming after event %lld\n", w->last_id);
	}
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	free(url);
	if (auth) {
		explicit_bzero(auth, strlen(auth));
		free(auth);
	}
	return rc;
}

static int watch_follow(watch *w)
{
	const char *base = getenv("WAVESCHED_URL");
	const char *token = getenv("WAVESCHED_TOKEN");
	if (!base || !*base)
		base = "http://127.0.0.1:8480";
	time_t down_since = 0;
	draw(w);
	for (;;) {
		int rc = follow_once(w, base, token);
		if (w->bad)
			return EXIT_UNREACHABLE;
		if (w->result >= 0)
			return w->result;
		if (rc == EXIT_REFUSED)
			return rc;
		/* Dropped (the service restarted, a proxy closed it, the client
		 * was too slow): resume after what we have seen. */
		time_t now = time(NULL);
		if (rc == EXIT_UNREACHABLE) {
			if (!down_since)
				down_since = now;
			else if (now - down_since > WATCH_GIVE_UP_S) {
				fprintf(stderr, "wavectl: cannot reach the event stream at %s for %d s; giving up\n",
					base, WATCH_GIVE_UP_S);
				return EXIT_UNREACHABLE;
			}
		} else {
			down_since = 0;
		}
		sleep(1);
	}
}

/* ---- the command ------------------------------------------------------------ */

static const char usage_status[] =
	"usage: wavectl rollout status ID [--watch]\n"
	"\n"
	"The rollout's waves: state, tenants healthy/total and window times.  With\n"
	"--watch, per-wave progress live from the event stream until the rollout\n"
	"ends (redrawn in place on a terminal, one line per change otherwise).\n"
	"\n"
	"Exit codes: 0 done (with --watch: the rollout completed), 1 refused, or with\n"
	"--watch the rollout halted, was aborted or rolled back; 2 usage error;\n"
	"3 service unreachable.\n";

static void print_status(json_t *doc)
{
	printf("rollout %lld: %s, release %s, policy %s\n", (long long)json_integer_value(json_object_get(doc, "id")),
	       jstr(doc, "state"), jstr(doc, "release"), jstr(doc, "policy"));
	size_t i;
	json_t *wv;
	json_array_foreach(json_object_get(doc, "waves"), i, wv) {
		size_t total = json_array_size(json_object_get(wv, "tenants")), healthy = 0, k;
		json_t *t;
		json_array_foreach(json_object_get(wv, "tenants"), k, t)
			healthy += strcmp(jstr(t, "state"), "healthy") == 0;
		printf("wave %-2lld %-18s %-12s %3zu/%-3zu healthy  %s .. %s\n",
		       (long long)json_integer_value(json_object_get(wv, "index")), jstr(wv, "name"), jstr(wv, "state"),
		       healthy, total, jstr(wv, "start"), jstr(wv, "end"));
	}
}

int rollout_status(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "watch", no_argument, NULL, 'w' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	bool follow = false;
	int o;
	optind = 1;
	while ((o = getopt_long(argc, argv, "wh", opts, NULL)) != -1) {
		switch (o) {
		case 'w': follow = true; break;
		case 'h': fputs(usage_status, stdout); return 0;
		default: fputs(usage_status, stderr); return EXIT_USAGE;
		}
	}
	const char *id = optind < argc ? argv[optind] : "";
	size_t n = strlen(id);
	bool ok = argc - optind == 1 && n > 0 && n <= 18 && strspn(id, "0123456789") == n;
	if (!ok) {
		fprintf(stderr, "wavectl: rollout status takes one rollout ID (a number)\n%s", usage_status);
		return EXIT_USAGE;
	}
	char path[64];
	snprintf(path, sizeof(path), "/v1/rollouts/%s", id);
	json_t *doc = NULL;
	int rc = api_json("GET", path, NULL, &doc);
	if (rc)
		return rc;
	if (!follow) {
		print_status(doc);
		json_decref(doc);
		return 0;
	}
	watch w = { .id = atoll(id), .result = -1, .last_id = -1, .ev_id = -1, .tty = isatty(STDOUT_FILENO) == 1 };
	if (load(&w, doc) != 0) {
		json_decref(doc);
		watch_free(&w);
		fprintf(stderr, "wavectl: out of memory\n");
		return EXIT_UNREACHABLE;
	}
	json_decref(doc);
	/* Already over: nothing to wait for. */
	w.result = rollout_outcome(w.state);
	if (w.result >= 0) {
		draw(&w);
		plain(&w, "rollout %lld: %s", w.id, w.state);
		rc = w.result;
	} else {
		rc = watch_follow(&w);
	}
	watch_free(&w);
	return rc;
}
