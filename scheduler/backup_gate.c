/*
 * backup_gate.c - the pure parts of the backup gate's http source (see
 * backup_gate.h): expanding the status URL, reading an answer, and the
 * per-rollout cache of fetched statuses.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include <jansson.h>
#include "backup_gate.h"
#include "wavesched/window.h"

#define US 1000000LL

/* `s` percent-encoded, appended to `fp`.  curl_easy_escape leaves only
 * RFC 3986's unreserved characters as they are. */
static bool put_escaped(FILE *fp, const char *s)
{
	char *e = curl_easy_escape(NULL, s ? s : "", 0);
	if (!e)
		return false;
	fputs(e, fp);
	curl_free(e);
	return true;
}

char *backup_url_expand(const char *tmpl, const char *slug, const char *cluster)
{
	char *out = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&out, &len);
	if (!fp)
		return NULL;
	bool ok = true;
	for (const char *c = tmpl; *c && ok; c++) {
		if (strncmp(c, "{slug}", 6) == 0) {
			ok = put_escaped(fp, slug);
			c += 5;
		} else if (strncmp(c, "{cluster}", 9) == 0) {
			ok = put_escaped(fp, cluster);
			c += 8;
		} else {
			fputc(*c, fp);
		}
	}
	if (fclose(fp) != 0 || !ok) {
		free(out);
		return NULL;
	}
	return out;
}

/* An RFC 3339 time of the answer, in microseconds; -1 with `why` filled. */
static int status_time(const json_t *v, const char *key, int64_t *out_us, char *why, size_t n)
{
	int64_t t;
	if (!json_is_string(v))
		snprintf(why, n, "%s is not a string", key);
	else if (ws_time_parse(json_string_value(v), &t) != 0)
		snprintf(why, n, "invalid %s \"%.64s\" (expected RFC 3339)", key, json_string_value(v));
	else if (t > INT64_MAX / US || t < INT64_MIN / US)
		snprintf(why, n, "%s \"%.64s\" is out of range", key, json_string_value(v));
	else {
		*out_us = t * US;
		return 0;
	}
	return -1;
}

int backup_status_parse(const char *body, size_t len, int64_t *out_us, int64_t *restore_us,
			char *why, size_t n)
{
	json_error_t jerr;
	/* JSON_REJECT_DUPLICATES: two last_success keys are two answers, and
	 * we would not know which one the backup system meant. */
	json_t *doc = json_loadb(body ? body : "", body ? len : 0, JSON_REJECT_DUPLICATES, &jerr);
	int rc = -1;
	if (!doc) {
		snprintf(why, n, "not JSON: %s at line %d, column %d", jerr.text, jerr.line,
			 jerr.column);
		return -1;
	}
	json_t *v = json_object_get(doc, "last_success");
	json_t *r = json_object_get(doc, "restore_verified_at");
	int64_t last, restore = EM_NONE;
	if (!json_is_object(doc))
		snprintf(why, n, "not a JSON object");
	else if (!v || json_is_null(v))
		snprintf(why, n, "no last_success in the answer");
	else if (status_time(v, "last_success", &last, why, n) != 0)
		;
	/* A restore time that cannot be read makes the whole answer
	 * unusable: it may be the one a require_restore_verified gate needs. */
	else if (r && !json_is_null(r) && status_time(r, "restore_verified_at", &restore, why, n) != 0)
		;
	else {
		*out_us = last;
		*restore_us = restore;
		rc = 0;
	}
	json_decref(doc);
	return rc;
}

/* Cache ---------------------------------------------------------------------- */

typedef struct bentry {
	int64_t dep_id;
	em_backup_status st;     /* url and error point to owned copies */
} bentry;

struct backup_cache {
	bentry *e;
	size_t n, cap;
};

static void entry_clear(bentry *b)
{
	free((char *)b->st.url);
	free((char *)b->st.error);
	b->st.url = b->st.error = NULL;
}

bool backup_cache_put(backup_cache **cp, int64_t dep_id, const em_backup_status *st)
{
	if (!*cp && !(*cp = calloc(1, sizeof(**cp))))
		return false;
	backup_cache *c = *cp;
	char *url = st->url ? strdup(st->url) : NULL;
	char *error = st->error ? strdup(st->error) : NULL;
	if ((st->url && !url) || (st->error && !error))
		goto oom;
	bentry *b = NULL;
	for (size_t i = 0; i < c->n && !b; i++)
		if (c->e[i].dep_id == dep_id)
			b = &c->e[i];
	if (!b) {
		if (c->n == c->cap) {
			size_t cap = c->cap ? c->cap * 2 : 8;
			bentry *e = realloc(c->e, cap * sizeof(*e));
			if (!e)
				goto oom;
			c->e = e;
			c->cap = cap;
		}
		b = &c->e[c->n++];
		memset(b, 0, sizeof(*b));
		b->dep_id = dep_id;
	}
	entry_clear(b);
	b->st = *st;
	b->st.url = url;
	b->st.error = error;
	return true;
oom:
	free(url);
	free(error);
	return false;
}

const em_backup_status *backup_cache_get(const backup_cache *c, int64_t dep_id)
{
	for (size_t i = 0; c && i < c->n; i++)
		if (c->e[i].dep_id == dep_id)
			return &c->e[i].st;
	return NULL;
}

void backup_cache_free(backup_cache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++)
		entry_clear(&c->e[i]);
	free(c->e);
	free(c);
}
