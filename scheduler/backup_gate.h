/*
 * backup_gate.h - the backup gate's `source: http` (spec engine.md "backup
 * gate"): the status URL of a tenant, reading its answer, and the statuses
 * fetched per rollout that the decision (engine_decide.c) judges.
 *
 * The GET itself is an effect of the engine (engine_fx.c, EM_FX_BACKUP)
 * through the outbound layer; what is here does no I/O, so every way an
 * answer can be wrong is unit-tested (tests/unit/backup).
 */
#ifndef WAVESCHED_BACKUP_GATE_H
#define WAVESCHED_BACKUP_GATE_H

#include <stddef.h>
#include <stdint.h>
#include "engine_model.h"

/* Status answers are one small JSON object: anything larger is not one. */
#define BACKUP_STATUS_MAX_BYTES ((size_t)64 * 1024)

/* The template with {slug} and {cluster} replaced by the tenant's values,
 * percent-encoded (they become one path segment or query value whatever
 * they hold).  malloc'd; NULL when out of memory. */
char *backup_url_expand(const char *tmpl, const char *slug, const char *cluster);

/*
 * Reads a status answer `{"last_success": "RFC3339", "restore_verified_at"?:
 * "RFC3339"}` (other keys are ignored).  Returns 0 with the times (unix
 * microseconds; the restore EM_NONE when absent or null), or -1 with what
 * is wrong in `why` ("not JSON: ...", "no last_success", "last_success is
 * not a string", "invalid restore_verified_at \"...\"").  Judging the ages
 * is the decision's business.
 */
int backup_status_parse(const char *body, size_t len, int64_t *out_us, int64_t *restore_us,
			char *why, size_t why_size);

/* The statuses fetched for one rollout, by deployment id; the latest per
 * deployment replaces the one before.  Strings are copied. */
typedef struct backup_cache backup_cache;

/* Stores `st` (creating the cache in `*c` when NULL); false when out of
 * memory (the status is then fetched again at the next decision). */
bool backup_cache_put(backup_cache **c, int64_t dep_id, const em_backup_status *st);
/* The status of `dep_id`, or NULL; valid until the next put or free. */
const em_backup_status *backup_cache_get(const backup_cache *c, int64_t dep_id);
void backup_cache_free(backup_cache *c);

#endif
