/*
 * audit_chain.c - ws_audit_hash of migrations/0003_engine.sql, in C.
 *
 * The text hashed is PostgreSQL 15's jsonb output (JsonbToCString and
 * escape_json in src/backend/utils/adt/jsonb.c and json.c): arrays as
 * "[a, b]", objects as "{"k": v, "k2": v2}" with the keys in jsonb's storage
 * order (shorter first, then memcmp), strings escaped only for '"', '\\',
 * \b \f \n \r \t and other bytes below 0x20 (as \u00xx), UTF-8 left raw.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "wavesched/audit_chain.h"
#include "wavesched/crypto.h"

void ws_audit_json_string(FILE *out, const char *s, size_t len)
{
	fputc('"', out);
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		switch (ch) {
		case '\b': fputs("\\b", out); break;
		case '\f': fputs("\\f", out); break;
		case '\n': fputs("\\n", out); break;
		case '\r': fputs("\\r", out); break;
		case '\t': fputs("\\t", out); break;
		case '"': fputs("\\\"", out); break;
		case '\\': fputs("\\\\", out); break;
		default:
			if (ch < ' ')
				fprintf(out, "\\u%04x", ch);
			else
				fputc(ch, out);
		}
	}
	fputc('"', out);
}

/* The JSON number grammar (RFC 8259 section 6).  Numbers are written as
 * they stand: PostgreSQL wrote them (numeric_out), and any other spelling
 * of the same value is a change the hash must show. */
static bool json_number(const char *s)
{
	const char *p = s;
	if (*p == '-')
		p++;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (*p >= '0' && *p <= '9')
			p++;
	else
		return false;
	if (*p == '.') {
		p++;
		if (!(*p >= '0' && *p <= '9'))
			return false;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!(*p >= '0' && *p <= '9'))
			return false;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	return *p == '\0';
}

/* jsonb's key order (lengthCompareJsonbStringValue), on the indexes of a
 * mapping's pairs. */
static int key_cmp(const void *a, const void *b, void *map)
{
	const ynode *m = map;
	const ynode *x = m->keys[*(const uint32_t *)a], *y = m->keys[*(const uint32_t *)b];
	if (x->value_len != y->value_len)
		return x->value_len < y->value_len ? -1 : 1;
	return memcmp(x->value, y->value, x->value_len);
}

static int node_text(FILE *out, const ydoc *doc, const ynode *n, int depth, ws_diags *d)
{
	const char *name = doc ? ydoc_name(doc) : NULL;
	if (depth > 200) {
		ws_diag_add(d, name, n->line, n->column, "nested too deeply");
		return WS_EINVAL;
	}
	if (n->kind == YNODE_SCALAR) {
		if (n->quoted) {
			if (memchr(n->value, '\0', n->value_len)) {
				ws_diag_add(d, name, n->line, n->column, "a string holds a NUL character, which jsonb cannot");
				return WS_EINVAL;
			}
			ws_audit_json_string(out, n->value, n->value_len);
			return 0;
		}
		if (!strcmp(n->value, "true") || !strcmp(n->value, "false") || !strcmp(n->value, "null") ||
		    json_number(n->value)) {
			fputs(n->value, out);
			return 0;
		}
		ws_diag_add(d, name, n->line, n->column, "\"%s\" is not a JSON value (strings are quoted)", n->value);
		return WS_EINVAL;
	}
	if (n->kind == YNODE_SEQ) {
		fputc('[', out);
		for (uint32_t i = 0; i < n->len; i++) {
			if (i)
				fputs(", ", out);
			int rc = node_text(out, doc, n->items[i], depth + 1, d);
			if (rc)
				return rc;
		}
		fputc(']', out);
		return 0;
	}
	/* A mapping: its pairs in key order.  ydoc has refused duplicate keys
	 * already, so the order is total. */
	uint32_t *order = n->len ? malloc(n->len * sizeof(*order)) : NULL;
	if (n->len && !order)
		return WS_ENOMEM;
	for (uint32_t i = 0; i < n->len; i++) {
		if (n->keys[i]->kind != YNODE_SCALAR || !n->keys[i]->quoted) {
			ws_diag_add(d, name, n->keys[i]->line, n->keys[i]->column, "an object key must be a string");
			free(order);
			return WS_EINVAL;
		}
		order[i] = i;
	}
	if (n->len > 1)
		qsort_r(order, n->len, sizeof(*order), key_cmp, (void *)n);
	fputc('{', out);
	int rc = 0;
	for (uint32_t i = 0; i < n->len && !rc; i++) {
		const ynode *k = n->keys[order[i]];
		if (i)
			fputs(", ", out);
		ws_audit_json_string(out, k->value, k->value_len);
		fputs(": ", out);
		rc = node_text(out, doc, n->items[order[i]], depth + 1, d);
	}
	fputc('}', out);
	free(order);
	return rc;
}

int ws_audit_jsonb_text(FILE *out, const ydoc *doc, const ynode *n, ws_diags *d)
{
	return node_text(out, doc, n, 0, d);
}

int ws_audit_time_us(const char *s, long long *out)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	const char *p = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
	if (!p || strlen(s) != 27 || p != s + 19 || *p != '.')
		return WS_EINVAL;
	long long us = 0;
	for (int i = 1; i <= 6; i++) {
		if (p[i] < '0' || p[i] > '9')
			return WS_EINVAL;
		us = us * 10 + (p[i] - '0');
	}
	if (p[7] != 'Z')
		return WS_EINVAL;
	time_t t = timegm(&tm);
	*out = (long long)t * 1000000 + us;
	return 0;
}

int ws_audit_entry_hash(const ydoc *doc, const ws_audit_fields *f, char out[65], ws_diags *d)
{
	char *text = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&text, &len);
	if (!m)
		return WS_ENOMEM;
	fputc('[', m);
	ws_audit_json_string(m, f->prev_hash, strlen(f->prev_hash));
	fprintf(m, ", %lld, %lld, ", f->id, f->at_us);
	ws_audit_json_string(m, f->actor, strlen(f->actor));
	fputs(", ", m);
	ws_audit_json_string(m, f->action, strlen(f->action));
	fputs(", ", m);
	ws_audit_json_string(m, f->object, strlen(f->object));
	fputs(", ", m);
	int rc = f->details ? ws_audit_jsonb_text(m, doc, f->details, d) : (fputs("{}", m), 0);
	fputc(']', m);
	if (fclose(m) != 0 && !rc)
		rc = WS_ENOMEM;
	if (!rc)
		ws_sha256_hex(text, len, out);
	free(text);
	return rc;
}

char *ws_audit_json_yaml_safe(const char *json, size_t len, size_t *out_len)
{
	char *text = NULL;
	size_t n = 0;
	FILE *m = open_memstream(&text, &n);
	if (!m)
		return NULL;
	const unsigned char *s = (const unsigned char *)json;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == 0x7f) {
			fputs("\\u007f", m);
		} else if (s[i] == 0xc2 && i + 1 < len && s[i + 1] >= 0x80 && s[i + 1] <= 0x9f) {
			fprintf(m, "\\u%04x", s[i + 1]);
			i++;
		} else if (i + 2 < len && ((s[i] == 0xe2 && s[i + 1] == 0x80 && (s[i + 2] == 0xa8 || s[i + 2] == 0xa9)) ||
					   (s[i] == 0xef && s[i + 1] == 0xbf && (s[i + 2] == 0xbe || s[i + 2] == 0xbf)) ||
					   (s[i] == 0xef && s[i + 1] == 0xbb && s[i + 2] == 0xbf))) {
			unsigned cp = ((s[i] & 0x0fu) << 12) | ((s[i + 1] & 0x3fu) << 6) | (s[i + 2] & 0x3fu);
			fprintf(m, "\\u%04x", cp);
			i += 2;
		} else {
			fputc(s[i], m);
		}
	}
	if (fclose(m) != 0) {
		free(text);
		return NULL;
	}
	*out_len = n;
	return text;
}
