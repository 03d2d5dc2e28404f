/*
 * audit_chain.h - the audit log's hash, computed outside the database.
 *
 * An audit entry's hash is ws_audit_hash of migrations/0003_engine.sql:
 * sha256 over the text PostgreSQL prints for the jsonb array
 *   [prev_hash, id, at in integer microseconds, actor, action, object, details]
 * This reproduces that text byte for byte, so an evidence bundle can be
 * checked with no database at hand (`wavectl evidence verify`).
 *
 * The details come from a ydoc tree, not from jansson: jsonb prints a number
 * as the numeric it stored ("1.50" stays "1.50"), which a parser that turns
 * numbers into doubles cannot give back; ydoc keeps every scalar's text.
 */
#ifndef WAVESCHED_AUDIT_CHAIN_H
#define WAVESCHED_AUDIT_CHAIN_H

#include <stdio.h>
#include "wavesched/diag.h"
#include "wavesched/ydoc.h"

#define WS_AUDIT_ZERO_HASH "0000000000000000000000000000000000000000000000000000000000000000"

/* Writes `s` (len bytes) as PostgreSQL's escape_json writes a JSON string. */
WS_API void ws_audit_json_string(FILE *out, const char *s, size_t len);

/* Writes the node as jsonb::text would: object keys sorted shorter first,
 * then bytewise; ", " and ": " between items; strings escaped as above;
 * numbers, true, false and null as written.  0, or WS_EINVAL with a
 * diagnostic naming the node (a plain scalar that is not a JSON value, a
 * key that is not a string, a string holding NUL). */
WS_API int ws_audit_jsonb_text(FILE *out, const ydoc *doc, const ynode *n, ws_diags *d);

/* "YYYY-MM-DDTHH:MM:SS.ffffffZ" (the entries' "at") -> microseconds since
 * 1970.  0 or WS_EINVAL. */
WS_API int ws_audit_time_us(const char *s, long long *out);

typedef struct ws_audit_fields {
	const char *prev_hash;
	long long id;
	long long at_us;
	const char *actor, *action, *object;
	const ynode *details;   /* NULL: {} */
} ws_audit_fields;

/* The entry's hash (64 lowercase hex digits and NUL) into out.  0, or
 * WS_EINVAL as ws_audit_jsonb_text, or WS_ENOMEM. */
WS_API int ws_audit_entry_hash(const ydoc *doc, const ws_audit_fields *f, char out[65], ws_diags *d);

/* A copy of a JSON text in which the characters YAML reads differently
 * from JSON -- DEL, the C1 controls, U+2028, U+2029, U+FEFF, U+FFFE, U+FFFF, which
 * PostgreSQL leaves raw inside strings -- are written as \uXXXX escapes.
 * The JSON value is the same; ydoc can then read it.  NUL-terminated,
 * length in *out_len; caller frees; NULL when out of memory. */
WS_API char *ws_audit_json_yaml_safe(const char *json, size_t len, size_t *out_len);

#endif
