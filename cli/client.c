/*
 * client.c - wavectl's HTTP client (libcurl easy interface: a short-lived
 * command, not the service's loop) and file helpers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include "ws_config.h"
#include "wavectl.h"
#include "wavesched/diag.h"

/* ---- HTTP ------------------------------------------------------------- */

static size_t write_cb(char *ptr, size_t size, size_t n, void *arg)
{
	buf *b = arg;
	size_t add = size * n;
	if (b->len + add > MAX_RESPONSE) {
		b->overflow = true;
		return 0;
	}
	char *p = realloc(b->data, b->len + add + 1);
	if (!p)
		return 0;
	memcpy(p + b->len, ptr, add);
	b->data = p;
	b->len += add;
	b->data[b->len] = '\0';
	return add;
}

int http_call(const char *method, const char *path, const char *ctype,
		     const char *body, size_t body_len, const char *accept, response *out)
{
	const char *base = getenv("WAVESCHED_URL");
	const char *token = getenv("WAVESCHED_TOKEN");
	if (!base || !*base)
		base = "http://127.0.0.1:8480";
	memset(out, 0, sizeof(*out));
	char *url = NULL, *auth = NULL, *ct = NULL, *acc = NULL;
	size_t blen = strlen(base);
	if (asprintf(&url, "%.*s%s", (int)(blen && base[blen - 1] == '/' ? blen - 1 : blen), base, path) < 0)
		return EXIT_UNREACHABLE;
	CURL *h = curl_easy_init();
	struct curl_slist *hdrs = NULL;
	if (token && *token && asprintf(&auth, "Authorization: Bearer %s", token) >= 0)
		hdrs = curl_slist_append(hdrs, auth);
	if (ctype && asprintf(&ct, "Content-Type: %s", ctype) >= 0)
		hdrs = curl_slist_append(hdrs, ct);
	if (asprintf(&acc, "Accept: %s", accept ? accept : "application/json") >= 0)
		hdrs = curl_slist_append(hdrs, acc);
	hdrs = curl_slist_append(hdrs, "Expect:");
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &out->body);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 300000L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "wavectl/" WS_VERSION);
	if (body) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
	}
	CURLcode cc = curl_easy_perform(h);
	int rc = 0;
	if (cc != CURLE_OK) {
		if (out->body.overflow)
			fprintf(stderr, "wavectl: %s: the answer is larger than %u bytes\n", url, MAX_RESPONSE);
		else
			fprintf(stderr, "wavectl: cannot reach the service at %s: %s\n", base,
				curl_easy_strerror(cc));
		rc = EXIT_UNREACHABLE;
	} else {
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
	}
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	free(url);
	if (auth) {
		explicit_bzero(auth, strlen(auth));
		free(auth);
	}
	free(ct);
	free(acc);
	return rc;
}

/* Prints an error answer of the api.md shape; returns the exit code that
 * goes with the status. */
int report_error(const response *r)
{
	json_error_t je;
	json_t *doc = r->body.data ? json_loads(r->body.data, 0, &je) : NULL;
	json_t *err = json_object_get(doc, "error");
	const char *msg = json_string_value(json_object_get(err, "message"));
	fprintf(stderr, "wavectl: %s (HTTP %ld)\n", msg ? msg : "the service refused the request", r->status);
	size_t i;
	json_t *d;
	json_array_foreach(json_object_get(err, "details"), i, d) {
		const char *m = json_string_value(json_object_get(d, "message"));
		if (m)
			fprintf(stderr, "wavectl: %s\n", m);
	}
	json_decref(doc);
	return r->status == 503 ? EXIT_UNREACHABLE : EXIT_REFUSED;
}

json_t *parse_ok(const response *r)
{
	json_error_t je;
	json_t *doc = json_loads(r->body.data ? r->body.data : "", 0, &je);
	if (!doc)
		fprintf(stderr, "wavectl: the service sent an unreadable answer (line %d: %s)\n", je.line, je.text);
	return doc;
}

int read_file(const char *path, char **out, size_t *len)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "wavectl: %s: cannot open: %m\n", path);
		return EXIT_REFUSED;
	}
	/* Grow as needed: files are read whole, up to MAX_FILE. */
	size_t cap = 1 << 16, n = 0;
	char *b = malloc(cap + 1);
	while (b) {
		n += fread(b + n, 1, cap - n, f);
		if (n < cap || cap > MAX_FILE)
			break;
		char *nb = realloc(b, cap * 2 + 1);
		if (!nb) {
			free(b);
			b = NULL;
			break;
		}
		b = nb;
		cap *= 2;
	}
	int err = ferror(f);
	if (f != stdin)
		fclose(f);
	if (!b || err || n > MAX_FILE) {
		fprintf(stderr, "wavectl: %s: %s\n", path, !b ? "out of memory" : err ? "read error"
			: "larger than 1 GiB");
		free(b);
		return EXIT_REFUSED;
	}
	b[n] = '\0';
	*out = b;
	*len = n;
	return 0;
}

void print_diags(const ws_diags *d)
{
	for (size_t i = 0; i < d->len; i++) {
		char *s = ws_diag_format(&d->items[i]);
		fprintf(stderr, "%s\n", s ? s : d->items[i].message);
		free(s);
	}
}
