/*
 * policy_internal.h - what the files of policies/ share and nobody else sees.
 *
 * The policy parser reuses the validation vocabulary of the fleet parser
 * (wsv_*, tenants/fleet_internal.h) so that both kinds of files report
 * problems in the same words: a user who learnt one learnt the other.
 */
#ifndef WAVESCHED_POLICY_INTERNAL_H
#define WAVESCHED_POLICY_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include "../tenants/fleet_internal.h"
#include "wavesched/policy.h"

/* The keys a settings block may hold (`defaults`, and a wave besides its
 * name, select and max_tenants). */
#define POLICY_SETTINGS_KEYS "soak", "max_parallel_per_cluster", "gates", "failure"

/* The built-in settings a policy starts from before its `defaults`: no
 * soak, no cap, every gate off (health fields preset to policy.h's
 * defaults for when a block turns the gate on), approval by 0 of
 * [approver], failure budget 0 with halt.  Arrays go into `v->a`. */
void policy_settings_init(wsv *v, ws_wave_settings *s);

/*
 * Applies the settings written in the mapping `n` (a `defaults` block or a
 * wave) over `s`, field by field and within each gate, and checks what the
 * block changed.  A rule that spans fields (health timeout <= interval, a
 * backup gate needs max_age) is checked on the effective result but
 * reported only at the block that wrote one of its fields, so a mistake in
 * `defaults` is reported once, not once more for every wave.  The caller
 * checks the keys of `n` itself (a wave has more).
 */
void policy_settings_read(wsv *v, const ynode *n, ws_wave_settings *s);

/* A duration at `n` for `key`: positive, or with `zero_ok` at least 0.
 * A plain `0` is read as zero seconds.  Reports and returns false when it
 * is not one. */
bool policy_duration(wsv *v, const ynode *n, const char *key, bool zero_ok, int64_t *out);

/* An integer at `n` for `key` within [lo, hi]. */
bool policy_int_range(wsv *v, const ynode *n, const char *key, long long lo, long long hi,
		      long long *out);

#endif
