/*
 * validate.c - the small vocabulary every validator of a ydoc tree uses:
 * report a problem at a node, check the keys of a mapping, read a typed
 * value.  Messages follow one pattern so users learn it once:
 *   unknown key "critcality" in tenant (expected one of: slug, name, ...)
 *   missing required key "cluster" in tenant
 *   expected a string for "region", got a mapping
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "fleet_internal.h"

void wsv_error(wsv *v, const ynode *at, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	ws_diag_addv(v->d, v->file, at ? at->line : 0, at ? at->column : 0, fmt, ap);
	va_end(ap);
	v->errors++;
}

void wsv_error_at(wsv *v, int line, int column, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	ws_diag_addv(v->d, v->file, line, column, fmt, ap);
	va_end(ap);
	v->errors++;
}

const char *wsv_article(const ynode *n)
{
	const char *k = ynode_kind_name(n);
	if (strcmp(k, "null") == 0 || strcmp(k, "nothing") == 0)
		return k;
	if (strcmp(k, "integer") == 0)
		return "an integer";
	if (strcmp(k, "mapping") == 0)
		return "a mapping";
	if (strcmp(k, "sequence") == 0)
		return "a sequence";
	if (strcmp(k, "boolean") == 0)
		return "a boolean";
	if (strcmp(k, "number") == 0)
		return "a number";
	return "a string";
}

void wsv_keys(wsv *v, const ynode *map, const char *const *allowed, const char *what)
{
	if (!map || map->kind != YNODE_MAP)
		return;
	for (size_t i = 0; i < map->len; i++) {
		const ynode *k = map->keys[i];
		if (k->kind != YNODE_SCALAR)
			continue;   /* ydoc already refused it */
		bool ok = false;
		for (size_t j = 0; allowed[j] && !ok; j++)
			ok = strcmp(k->value, allowed[j]) == 0;
		if (ok)
			continue;
		char list[512];
		size_t off = 0;
		list[0] = '\0';
		for (size_t j = 0; allowed[j]; j++) {
			int w = snprintf(list + off, sizeof(list) - off, "%s%s", j ? ", " : "", allowed[j]);
			if (w < 0 || (size_t)w >= sizeof(list) - off)
				break;
			off += (size_t)w;
		}
		wsv_error(v, k, "unknown key \"%s\" in %s (expected one of: %s)", k->value, what, list);
	}
}

const ynode *wsv_get(wsv *v, const ynode *map, const char *key, bool required, const char *what)
{
	const ynode *n = ynode_get(map, key);
	if (n && ynode_is_null(n) && !required)
		return NULL;
	if (!n && required)
		wsv_error(v, map, "missing required key \"%s\" in %s", key, what);
	return n;
}

static bool wsv_kind(wsv *v, const ynode *n, ynode_kind kind, const char *key)
{
	if (n->kind == kind)
		return true;
	const char *want = kind == YNODE_MAP ? "a mapping" : kind == YNODE_SEQ ? "a sequence" : "a string";
	if (key)
		wsv_error(v, n, "expected %s for \"%s\", got %s", want, key, wsv_article(n));
	else
		wsv_error(v, n, "expected %s, got %s", want, wsv_article(n));
	return false;
}

bool wsv_map(wsv *v, const ynode *n, const char *key)
{
	return wsv_kind(v, n, YNODE_MAP, key);
}

bool wsv_seq(wsv *v, const ynode *n, const char *key)
{
	return wsv_kind(v, n, YNODE_SEQ, key);
}

const char *wsv_text(wsv *v, const ynode *n, const char *key)
{
	if (n->kind != YNODE_SCALAR || ynode_is_null(n)) {
		wsv_error(v, n, "expected a string for \"%s\", got %s", key, wsv_article(n));
		return NULL;
	}
	return wsv_str(v, n);
}

const char *wsv_text_in(wsv *v, const ynode *n, const char *list)
{
	if (n->kind != YNODE_SCALAR || ynode_is_null(n)) {
		wsv_error(v, n, "expected a string in \"%s\", got %s", list, wsv_article(n));
		return NULL;
	}
	return wsv_str(v, n);
}

const char *wsv_str(wsv *v, const ynode *n)
{
	return v->text_in_arena ? n->value : ws_arena_strdup(v->a, n->value);
}

bool wsv_bool(wsv *v, const ynode *n, const char *key, bool *out)
{
	if (ynode_bool(n, out) == 0)
		return true;
	wsv_error(v, n, "expected a boolean for \"%s\", got %s", key, wsv_article(n));
	return false;
}

bool wsv_int(wsv *v, const ynode *n, const char *key, long long *out)
{
	if (ynode_int(n, out) == 0)
		return true;
	wsv_error(v, n, "expected an integer for \"%s\", got %s", key, wsv_article(n));
	return false;
}

bool ws_url_valid(const char *s)
{
	size_t skip;
	if (strncasecmp(s, "http://", 7) == 0)
		skip = 7;
	else if (strncasecmp(s, "https://", 8) == 0)
		skip = 8;
	else
		return false;
	const char *host = s + skip;
	if (*host == '\0' || *host == '/' || *host == '?' || *host == '#')
		return false;
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			return false;
	return true;
}

bool ws_name_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > WS_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
	return true;
}

bool wsv_hosting(wsv *v, const ynode *at, const char *text, ws_hosting *out)
{
	if (strcmp(text, "shared") == 0)
		*out = HOSTING_SHARED;
	else if (strcmp(text, "dedicated") == 0)
		*out = HOSTING_DEDICATED;
	else {
		wsv_error(v, at, "invalid hosting \"%s\" (expected shared or dedicated)", text);
		return false;
	}
	return true;
}

bool wsv_criticality(wsv *v, const ynode *at, const char *text, ws_criticality *out)
{
	if (ws_criticality_parse(text, out) == 0)
		return true;
	wsv_error(v, at, "invalid criticality \"%s\" (expected one of: critical, high, "
		  "standard, low)", text);
	return false;
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

const char **ws_sorted_strings(const char *const *in, size_t n, size_t *n_out)
{
	const char **out = malloc((n ? n : 1) * sizeof(*out));
	if (!out) {
		*n_out = 0;
		return NULL;
	}
	if (n)
		memcpy(out, in, n * sizeof(*out));
	qsort(out, n, sizeof(*out), str_cmp);
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (k == 0 || strcmp(out[k - 1], out[i]) != 0)
			out[k++] = out[i];
	*n_out = k;
	return out;
}
