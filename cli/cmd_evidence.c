/*
 * cmd_evidence.c - wavectl evidence ID (the bundle, from the service) and
 * wavectl evidence verify FILE (offline: no service, no database).
 *
 * The verifier trusts nothing in the file that it can recompute: every
 * audit entry's hash from its fields (audit_chain.c, the same text
 * PostgreSQL hashed), the links between entries, the policy's and the
 * plans' sha256 from their texts; and then it checks that what the bundle
 * says happened -- the rollout's creation, each approval, each executor
 * call and its result, the state of the rollout, of each wave and each
 * deployment -- is what the audit entries recorded.  The file is
 * read with ydoc, which keeps numbers as written (jsonb printed them that
 * way and the hashes cover that text).
 *
 * What it cannot see alone: entries cut from the end of the bundle, or the
 * log rewritten wholesale from some entry on (the chain is unkeyed).  The
 * summary prints the bundle's last entry and the log's head for
 * `wavectl audit verify --known`, which compares them with the live log.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "wavectl.h"
#include "wavesched/audit_chain.h"
#include "wavesched/crypto.h"

static const char usage_evidence[] =
	"usage: wavectl evidence ID > bundle.json\n"
	"       wavectl evidence verify FILE\n"
	"\n"
	"ID      prints the evidence bundle of rollout ID: release, policy text and\n"
	"        sha256, plans with their diffs, waves with approvals, gate results\n"
	"        with their evidence, executor calls, and the rollout's audit entries\n"
	"        with the service's check of the whole chain and its head.\n"
	"verify  offline: recomputes every audit entry's hash from its fields and\n"
	"        follows the links between them, checks the policy's and the plans'\n"
	"        sha256 against their texts, and checks that the rollout's creation,\n"
	"        its approvals, its executor calls and the states of the rollout, its\n"
	"        waves and deployments are the ones the audit entries recorded; each\n"
	"        release attestation's document matches its sha256 and is bound to the\n"
	"        release digest.\n"
	"        Prints a summary, or names the first problem.\n"
	"\n"
	"Exit codes: 0 done (verify: the bundle is consistent), 1 refused, or the\n"
	"bundle has a problem, 2 usage error, 3 service unreachable.\n";

/* ---- reading the tree --------------------------------------------------- */

typedef struct vctx {
	const ydoc *doc;
	long long rollout;
	char object[64];        /* "rollout/ID" */
	const ynode **full;     /* the whole audit entries, in file order */
	const ynode **sorted;   /* the same, by (object, action, id) */
	size_t n_full;
	char problem[1024];
} vctx;

static bool fail(vctx *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(vctx *v, const char *fmt, ...)
{
	if (!v->problem[0]) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(v->problem, sizeof(v->problem), fmt, ap);
		va_end(ap);
	}
	return false;
}

/* A string field (a quoted scalar), or NULL. */
static const char *sval(const ynode *map, const char *key)
{
	const ynode *n = ynode_get(map, key);
	return n && n->kind == YNODE_SCALAR && n->quoted ? n->value : NULL;
}

/* An integer field (a plain scalar). */
static bool ival(const ynode *map, const char *key, long long *out)
{
	const ynode *n = ynode_get(map, key);
	return n && n->kind == YNODE_SCALAR && !n->quoted && ynode_int(n, out) == 0;
}

static bool seq(const ynode *n)
{
	return n && n->kind == YNODE_SEQ;
}

static bool is_map(const ynode *n)
{
	return n && n->kind == YNODE_MAP;
}

static bool hex64(const char *s)
{
	return s && strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

static bool eq(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

/* The jsonb text of a node ("null" for an absent one), for comparing two
 * JSON values the way the database would.  Caller frees; NULL on error. */
static char *jtext(vctx *v, const ynode *n)
{
	char *text = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&text, &len);
	if (!m)
		return NULL;
	ws_diags d;
	ws_diags_init(&d);
	int rc = n ? ws_audit_jsonb_text(m, v->doc, n, &d) : (fputs("null", m), 0);
	fclose(m);
	if (rc) {
		char *msg = d.len ? ws_diag_format(&d.items[0]) : NULL;
		fail(v, "%s", msg ? msg : "a JSON value cannot be read");
		free(msg);
		free(text);
		text = NULL;
	}
	ws_diags_free(&d);
	return text;
}

static bool same_json(vctx *v, const ynode *a, const ynode *b)
{
	char *x = jtext(v, a), *y = jtext(v, b);
	bool same = x && y && strcmp(x, y) == 0;
	free(x);
	free(y);
	return same;
}

/* ---- the parts ------------------------------------------------------------ */

static bool check_policy_and_plans(vctx *v, const ynode *root, int *n_plans)
{
	const ynode *ro = ynode_get(root, "rollout"), *pol = ynode_get(root, "policy");
	if (!is_map(ro) || !ival(ro, "id", &v->rollout) || v->rollout <= 0)
		return fail(v, "rollout: no id");
	snprintf(v->object, sizeof(v->object), "rollout/%lld", v->rollout);
	const char *text = sval(pol, "text"), *sha = sval(pol, "sha256");
	if (!is_map(pol) || !text || !hex64(sha))
		return fail(v, "policy: text and sha256 are required");
	char got[65];
	ws_sha256_hex(text, ynode_get(pol, "text")->value_len, got);
	if (strcmp(got, sha) != 0)
		return fail(v, "policy %s: sha256 does not match the policy text (sha256 of the text is %s)",
			    sval(pol, "name") ? sval(pol, "name") : "?", got);
	if (!eq(sval(ro, "policy_sha256"), sha))
		return fail(v, "rollout %lld: policy_sha256 is not the sha256 of the bundle's policy", v->rollout);
	const ynode *plans = ynode_get(root, "plans");
	long long current = 0;
	if (!seq(plans) || plans->len == 0 || !ival(ro, "plan_version", &current))
		return fail(v, "plans: at least one plan and the rollout's plan_version are required");
	bool found = false;
	for (uint32_t i = 0; i < plans->len; i++) {
		const ynode *p = plans->items[i];
		long long ver = 0;
		const char *ptext = sval(p, "plan"), *psha = sval(p, "sha256");
		if (!ival(p, "version", &ver) || !ptext || !hex64(psha))
			return fail(v, "plans[%u]: version, plan and sha256 are required", i);
		ws_sha256_hex(ptext, ynode_get(p, "plan")->value_len, got);
		if (strcmp(got, psha) != 0)
			return fail(v, "plan version %lld: sha256 does not match the plan text", ver);
		found = found || ver == current;
	}
	if (!found)
		return fail(v, "rollout %lld: its plan version %lld is not among the plans", v->rollout, current);
	*n_plans = (int)plans->len;
	return true;
}

/* Whole entries ordered by (object, action, id), so that the entries of
 * one object and action are found by binary search: a rollout of many
 * tenants has many executor calls to look up. */
static int by_object_action(const void *a, const void *b)
{
	const ynode *x = *(const ynode *const *)a, *y = *(const ynode *const *)b;
	int c = strcmp(sval(x, "object"), sval(y, "object"));
	if (!c)
		c = strcmp(sval(x, "action"), sval(y, "action"));
	long long i = 0, j = 0;
	ival(x, "id", &i);
	ival(y, "id", &j);
	return c ? c : (i > j) - (i < j);
}

/* The hash of a whole entry, recomputed with `id` in place of its own. */
static bool entry_hash(vctx *v, const ynode *e, long long id, char out[65])
{
	ws_audit_fields f = { .prev_hash = sval(e, "prev_hash"), .id = id, .actor = sval(e, "actor"),
			      .action = sval(e, "action"), .object = sval(e, "object"),
			      .details = ynode_get(e, "details") };
	if (!f.actor || !f.action || !f.object || !f.details || ws_audit_time_us(sval(e, "at"), &f.at_us) != 0)
		return fail(v, "audit entry %lld: actor, action, object, details and at (with microseconds) are required",
			    id);
	ws_diags d;
	ws_diags_init(&d);
	int rc = ws_audit_entry_hash(v->doc, &f, out, &d);
	if (rc) {
		char *msg = d.len ? ws_diag_format(&d.items[0]) : NULL;
		fail(v, "audit entry %lld: details cannot be hashed: %s", id, msg ? msg : "out of memory");
		free(msg);
	}
	ws_diags_free(&d);
	return rc == 0;
}

/* The entries: ids rising, every whole entry's hash from its fields, and
 * each entry's prev_hash the hash of the element before it. */
static bool check_chain(vctx *v, const ynode *entries, size_t *n_links)
{
	if (!seq(entries) || entries->len == 0)
		return fail(v, "audit: no entries (a rollout has at least its rollout.create entry)");
	v->full = calloc(entries->len, sizeof(*v->full));
	if (!v->full)
		return fail(v, "out of memory");
	long long prev_id = 0;
	const char *prev_hash = NULL;
	for (uint32_t i = 0; i < entries->len; i++) {
		const ynode *e = entries->items[i];
		long long id = 0;
		const char *ph = sval(e, "prev_hash"), *h = sval(e, "hash");
		if (!is_map(e) || !ival(e, "id", &id) || !hex64(ph) || !hex64(h))
			return fail(v, "audit.entries[%u]: id, prev_hash and hash (64 hex digits) are required", i);
		if (i > 0 && id <= prev_id)
			return fail(v, "audit entry %lld: stored after entry %lld (reordered)", id, prev_id);
		if (ynode_get(e, "actor")) {
			const char *obj = sval(e, "object");
			size_t ol = strlen(v->object);
			if (!obj || (strcmp(obj, v->object) != 0 && !(strncmp(obj, v->object, ol) == 0 && obj[ol] == '/')))
				return fail(v, "audit entry %lld: its object is not rollout %lld or part of it", id, v->rollout);
			char got[65];
			if (!entry_hash(v, e, id, got))
				return false;
			if (strcmp(got, h) != 0) {
				/* The fields of another entry, moved here? */
				for (uint32_t j = 0; j < entries->len; j++) {
					long long other = 0;
					if (j != i && ival(entries->items[j], "id", &other) && entry_hash(v, e, other, got) &&
					    strcmp(got, h) == 0)
						return fail(v, "audit entry %lld: holds the entry written as entry %lld (reordered)",
							    id, other);
				}
				return fail(v, "audit entry %lld: hash does not match its fields (edited)", id);
			}
			v->full[v->n_full++] = e;
		} else {
			(*n_links)++;
		}
		if (prev_hash && strcmp(ph, prev_hash) != 0) {
			for (uint32_t j = 0; j < entries->len; j++) {
				long long other = 0;
				if (j != i && eq(sval(entries->items[j], "hash"), ph) && ival(entries->items[j], "id", &other))
					return fail(v, "audit entry %lld: was written after entry %lld, which the file stores "
						    "elsewhere (reordered)", id, other);
			}
			return fail(v, "audit entry %lld: does not follow entry %lld; an entry between them was removed "
				    "(deleted)", id, prev_id);
		}
		prev_id = id;
		prev_hash = h;
	}
	v->sorted = calloc(v->n_full ? v->n_full : 1, sizeof(*v->sorted));
	if (!v->sorted)
		return fail(v, "out of memory");
	memcpy(v->sorted, v->full, v->n_full * sizeof(*v->sorted));
	qsort(v->sorted, v->n_full, sizeof(*v->sorted), by_object_action);
	return true;
}

/* The first whole entry (in id order) with this action and object, and
 * actor when given, for which match() holds, or NULL. */
typedef bool (*entry_match)(vctx *v, const ynode *entry, const ynode *thing);
static const ynode *find_entry(vctx *v, const char *action, const char *object, const char *actor,
			       entry_match match, const ynode *thing)
{
	size_t lo = 0, hi = v->n_full;
	while (lo < hi) {   /* the first entry not before (object, action) */
		size_t mid = lo + (hi - lo) / 2;
		const ynode *e = v->sorted[mid];
		int c = strcmp(sval(e, "object"), object);
		if (!c)
			c = strcmp(sval(e, "action"), action);
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = lo; i < v->n_full; i++) {
		const ynode *e = v->sorted[i];
		if (!eq(sval(e, "object"), object) || !eq(sval(e, "action"), action))
			break;
		if ((!actor || eq(sval(e, "actor"), actor)) && (!match || match(v, e, thing)))
			return e;
	}
	return NULL;
}

static bool check_creation(vctx *v, const ynode *root)
{
	const ynode *e = find_entry(v, "rollout.create", v->object, NULL, NULL, NULL);
	if (!e)
		return fail(v, "audit: no rollout.create entry for rollout %lld", v->rollout);
	long long id = 0;
	ival(e, "id", &id);
	const ynode *det = ynode_get(e, "details"), *plans = ynode_get(root, "plans");
	const char *release = sval(ynode_get(root, "release"), "version");
	if (!eq(sval(det, "release"), release))
		return fail(v, "audit entry %lld (rollout.create): records release %s, the bundle names %s", id,
			    sval(det, "release") ? sval(det, "release") : "none", release ? release : "none");
	if (!eq(sval(det, "policy_sha256"), sval(ynode_get(root, "policy"), "sha256")))
		return fail(v, "audit entry %lld (rollout.create): records another policy sha256 than the bundle's policy",
			    id);
	for (uint32_t i = 0; i < plans->len; i++) {
		long long ver = 0;
		if (ival(plans->items[i], "version", &ver) && ver == 1 &&
		    !eq(sval(det, "plan_sha256"), sval(plans->items[i], "sha256")))
			return fail(v, "audit entry %lld (rollout.create): records another plan sha256 than plan version 1",
				    id);
	}
	return true;
}

static bool approval_matches(vctx *v, const ynode *e, const ynode *a)
{
	(void)v;
	const ynode *det = ynode_get(e, "details");
	return eq(sval(det, "role"), sval(a, "role")) && eq(sval(det, "comment"), sval(a, "comment"));
}

/* Each approval in the waves is an audit entry, and each decision the
 * audit entries record is an approval in the waves. */
static bool check_approvals(vctx *v, const ynode *root, int *n_approvals)
{
	const ynode *waves = ynode_get(root, "waves");
	if (!seq(waves))
		return fail(v, "waves: a list is required");
	int listed = 0;
	for (uint32_t i = 0; i < waves->len; i++) {
		long long idx = 0;
		const ynode *appr = ynode_get(waves->items[i], "approvals");
		if (!ival(waves->items[i], "index", &idx) || !seq(appr))
			return fail(v, "waves[%u]: index and approvals are required", i);
		char object[96], action[64];
		snprintf(object, sizeof(object), "%s/wave/%lld", v->object, idx);
		for (uint32_t k = 0; k < appr->len; k++) {
			const ynode *a = appr->items[k];
			const char *actor = sval(a, "actor"), *decision = sval(a, "decision");
			if (!actor || !decision)
				return fail(v, "wave %lld: approvals[%u] needs actor and decision", idx, k);
			snprintf(action, sizeof(action), "wave.%.50s", decision);
			if (!find_entry(v, action, object, actor, approval_matches, a))
				return fail(v, "wave %lld: the %s by %s (role %s, comment \"%.200s\") matches no audit entry",
					    idx, decision, actor, sval(a, "role") ? sval(a, "role") : "?",
					    sval(a, "comment") ? sval(a, "comment") : "");
			listed++;
		}
	}
	for (size_t i = 0; i < v->n_full; i++) {
		const ynode *e = v->full[i];
		const char *action = sval(e, "action"), *obj = sval(e, "object");
		if (!eq(action, "wave.approve") && !eq(action, "wave.reject"))
			continue;
		const char *w = strstr(obj, "/wave/");
		long long idx = w ? atoll(w + 6) : -1, id = 0;
		ival(e, "id", &id);
		bool found = false;
		for (uint32_t k = 0; k < waves->len && !found; k++) {
			long long wi = 0;
			const ynode *appr = ynode_get(waves->items[k], "approvals");
			if (!ival(waves->items[k], "index", &wi) || wi != idx)
				continue;
			for (uint32_t j = 0; j < appr->len && !found; j++)
				found = eq(sval(appr->items[j], "actor"), sval(e, "actor")) &&
					eq(action + 5, sval(appr->items[j], "decision"));
		}
		if (!found)
			return fail(v, "audit entry %lld: the decision of %s on wave %lld is missing from the bundle's approvals",
				    id, sval(e, "actor"), idx);
	}
	*n_approvals = listed;
	return true;
}

static bool intent_matches(vctx *v, const ynode *e, const ynode *call)
{
	(void)v;
	const ynode *det = ynode_get(e, "details");
	const ynode *o = ynode_get(det, "outbox"), *id = ynode_get(call, "id");
	return o && id && !o->quoted && !id->quoted && strcmp(o->value, id->value) == 0 &&
	       eq(sval(det, "key"), sval(call, "idempotency_key"));
}

static bool result_matches(vctx *v, const ynode *e, const ynode *call)
{
	const ynode *det = ynode_get(e, "details"), *res = ynode_get(call, "result");
	if (res && res->kind == YNODE_SCALAR && ynode_is_null(res))
		res = NULL;   /* jsonb_strip_nulls left it out of the entry */
	return eq(sval(det, "key"), sval(call, "idempotency_key")) && same_json(v, ynode_get(det, "result"), res);
}

/* The state the newest transition entry of `object` moved it to (details
 * "to"; `action_prefix` such as "deployment." tells transitions from the
 * other entries about the same object), `initial` when there is none;
 * *entry gets that entry's id (0 for none). */
static const char *last_state(vctx *v, const char *object, const char *action_prefix, const char *initial,
			      long long *entry)
{
	size_t lo = 0, hi = v->n_full;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(sval(v->sorted[mid], "object"), object) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	const char *to = initial;
	long long best = 0;
	for (size_t i = lo; i < v->n_full && eq(sval(v->sorted[i], "object"), object); i++) {
		const ynode *e = v->sorted[i];
		const char *t = sval(ynode_get(e, "details"), "to");
		long long id = 0;
		if (t && strncmp(sval(e, "action"), action_prefix, strlen(action_prefix)) == 0 && ival(e, "id", &id) &&
		    id > best) {
			best = id;
			to = t;
		}
	}
	*entry = best;
	return to;
}

static bool state_matches(vctx *v, const char *what, const char *state, const char *object,
			  const char *action_prefix, const char *initial)
{
	long long entry = 0;
	const char *want = last_state(v, object, action_prefix, initial, &entry);
	if (eq(state, want))
		return true;
	if (entry)
		return fail(v, "%s: state %s, but its last audit entry (%lld) moved it to %s", what,
			    state ? state : "missing", entry, want);
	return fail(v, "%s: state %s, but no audit entry moved it from %s", what, state ? state : "missing", want);
}

/* The states the bundle shows are where the audited transitions left the
 * rollout, each wave and each deployment: every transition is audited in
 * its transaction (ws_engine_tx, ws_rollout_command). */
static bool check_states(vctx *v, const ynode *root, int *n_states)
{
	char what[160], object[160];
	if (!state_matches(v, v->object, sval(ynode_get(root, "rollout"), "state"), v->object, "rollout.", "planned"))
		return false;
	int n = 1;
	const ynode *waves = ynode_get(root, "waves"), *deps = ynode_get(root, "deployments");
	for (uint32_t i = 0; i < waves->len; i++) {
		long long idx = 0;
		ival(waves->items[i], "index", &idx);
		snprintf(what, sizeof(what), "wave %lld", idx);
		snprintf(object, sizeof(object), "%s/wave/%lld", v->object, idx);
		if (!state_matches(v, what, sval(waves->items[i], "state"), object, "wave.", "pending"))
			return false;
		n++;
	}
	if (!seq(deps))
		return fail(v, "deployments: a list is required");
	for (uint32_t i = 0; i < deps->len; i++) {
		const char *tenant = sval(deps->items[i], "tenant");
		if (!tenant)
			return fail(v, "deployments[%u]: tenant is required", i);
		snprintf(what, sizeof(what), "deployment of %.80s", tenant);
		snprintf(object, sizeof(object), "%s/tenant/%.80s", v->object, tenant);
		if (!state_matches(v, what, sval(deps->items[i], "state"), object, "deployment.", "scheduled"))
			return false;
		n++;
	}
	*n_states = n;
	return true;
}

/* Each call to an executor: its intent and, once done, its result are
 * what the audit entries recorded. */
static bool check_calls(vctx *v, const ynode *root, int *n_calls)
{
	const ynode *calls = ynode_get(root, "executor_calls");
	if (!seq(calls))
		return fail(v, "executor_calls: a list is required");
	for (uint32_t i = 0; i < calls->len; i++) {
		const ynode *c = calls->items[i];
		long long id = 0;
		const char *kind = sval(c, "kind"), *tenant = sval(c, "tenant"), *state = sval(c, "state");
		if (!ival(c, "id", &id) || !kind || !tenant || !state)
			return fail(v, "executor_calls[%u]: id, kind, tenant and state are required", i);
		char action[64], object[160];
		snprintf(action, sizeof(action), "outbox.%.40s", kind);
		snprintf(object, sizeof(object), "%s/tenant/%.80s", v->object, tenant);
		if (!find_entry(v, action, object, NULL, intent_matches, c))
			return fail(v, "executor call %lld (%s of %s): no audit entry records this intent", id, kind, tenant);
		if (strcmp(state, "pending") == 0)
			continue;
		snprintf(action, sizeof(action), "outbox.%.40s", state);
		snprintf(object, sizeof(object), "%s/outbox/%lld", v->object, id);
		if (!find_entry(v, action, object, NULL, result_matches, c))
			return v->problem[0] ? false
			       : fail(v, "executor call %lld (%s of %s): its result is not the one the audit entries recorded",
				      id, kind, tenant);
	}
	*n_calls = (int)calls->len;
	return true;
}

/* ---- the commands ------------------------------------------------------------ */

/* Release attestations (issue 7): each document's sha256 is recomputed from
 * the document as the bundle carries it -- the jsonb text the service
 * hashed (migrations/0021), the same rendering as the audit entries' --
 * and each must be bound to the release's digest.  The attestation gate
 * results of the waves may only name attestations of the bundle, with the
 * same sha256 and result. */
static bool check_attestations(vctx *v, const ynode *root, int *n_att)
{
	const ynode *atts = ynode_get(root, "attestations"), *gates = ynode_get(root, "attestation_gates");
	const char *digest = sval(ynode_get(root, "release"), "digest");
	*n_att = 0;
	if (!atts && !gates)
		return true;   /* a bundle from before attestations */
	if (!seq(atts))
		return fail(v, "attestations: must be a list");
	for (uint32_t i = 0; i < atts->len; i++) {
		const ynode *a = atts->items[i];
		const char *name = sval(a, "name"), *sha = sval(a, "sha256");
		long long id = 0;
		if (!is_map(a) || !ival(a, "id", &id) || !name || !hex64(sha) || !is_map(ynode_get(a, "document")))
			return fail(v, "attestations[%u]: id, name, sha256 and document (an object) are required", i);
		char *text = jtext(v, ynode_get(a, "document"));
		if (!text)
			return false;
		char got[65];
		ws_sha256_hex(text, strlen(text), got);
		free(text);
		if (strcmp(got, sha) != 0)
			return fail(v, "attestations[%u] (%s, id %lld): document does not match its sha256 %s "
				    "(sha256 of the document is %s)", i, name, id, sha, got);
		if (!eq(sval(a, "digest"), digest))
			return fail(v, "attestations[%u] (%s, id %lld): bound to digest %s, not the release's %s", i,
				    name, id, sval(a, "digest") ? sval(a, "digest") : "(none)",
				    digest ? digest : "(none)");
	}
	for (uint32_t w = 0; seq(gates) && w < gates->len; w++) {
		const ynode *res = ynode_get(gates->items[w], "results");
		for (uint32_t j = 0; seq(res) && j < res->len; j++) {
			const ynode *list = ynode_get(ynode_get(res->items[j], "evidence"), "attestations");
			for (uint32_t k = 0; seq(list) && k < list->len; k++) {
				const ynode *e = list->items[k];
				long long id = 0;
				if (!ival(e, "id", &id))
					continue;   /* a missing one names no attestation */
				const ynode *found = NULL;
				for (uint32_t i = 0; i < atts->len && !found; i++) {
					long long aid = 0;
					if (ival(atts->items[i], "id", &aid) && aid == id)
						found = atts->items[i];
				}
				if (!found || !eq(sval(found, "sha256"), sval(e, "sha256")) ||
				    !eq(sval(found, "result"), sval(e, "result")))
					return fail(v, "attestation_gates[%u].results[%u].evidence.attestations[%u]: "
						    "attestation %lld is not in the bundle with that sha256 and result",
						    w, j, k, id);
			}
		}
	}
	*n_att = (int)atts->len;
	return true;
}

static int evidence_verify(const char *path)
{
	char *text = NULL;
	size_t len = 0;
	int rc = read_file(path, &text, &len);
	if (rc)
		return rc;
	ws_diags d;
	ws_diags_init(&d);
	ydoc *doc = ydoc_parse(path, text, len, NULL, &d);
	free(text);
	if (!doc) {
		for (size_t i = 0; i < d.len; i++) {
			char *msg = ws_diag_format(&d.items[i]);
			fprintf(stderr, "wavectl: %s\n", msg ? msg : d.items[i].message);
			free(msg);
		}
		ws_diags_free(&d);
		return EXIT_REFUSED;
	}
	ws_diags_free(&d);
	vctx v = { .doc = doc };
	const ynode *root = ydoc_root(doc), *audit = ynode_get(root, "audit");
	const ynode *check = ynode_get(audit, "check");
	int n_plans = 0, n_approvals = 0, n_calls = 0, n_states = 0, n_att = 0;
	size_t n_links = 0;
	bool ok = is_map(root) && eq(sval(root, "format"), "wavesched-evidence/1");
	if (!ok)
		fail(&v, "not an evidence bundle (format wavesched-evidence/1)");
	ok = ok && check_policy_and_plans(&v, root, &n_plans) &&
	     check_chain(&v, ynode_get(audit, "entries"), &n_links) && check_creation(&v, root) &&
	     check_approvals(&v, root, &n_approvals) && check_calls(&v, root, &n_calls) &&
	     check_states(&v, root, &n_states) && check_attestations(&v, root, &n_att);
	if (ok && !(is_map(check) && ynode_get(check, "ok") && !ynode_get(check, "ok")->quoted &&
		    strcmp(ynode_get(check, "ok")->value, "true") == 0)) {
		const char *msg = sval(ynode_get(check, "first_broken"), "message");
		ok = fail(&v, "the service found the audit log broken when it made this bundle: %s",
			  msg ? msg : "no check recorded");
	}
	if (!ok) {
		fprintf(stderr, "wavectl: %s: %s\n", path, v.problem);
		free(v.full);
		free(v.sorted);
		ydoc_free(doc);
		return EXIT_REFUSED;
	}
	const ynode *entries = ynode_get(audit, "entries"), *last = entries->items[entries->len - 1];
	const ynode *head = ynode_get(check, "head");
	const ynode *gates = ynode_get(root, "gate_results");
	long long last_id = 0, head_id = 0;
	ival(last, "id", &last_id);
	ival(head, "id", &head_id);
	printf("evidence for rollout %lld (release %s, policy %s): consistent\n", v.rollout,
	       sval(ynode_get(root, "release"), "version") ? sval(ynode_get(root, "release"), "version") : "?",
	       sval(ynode_get(root, "policy"), "name") ? sval(ynode_get(root, "policy"), "name") : "?");
	printf("  policy sha256 matches its text; %d plan version(s) match their sha256\n", n_plans);
	printf("  %zu audit entries hash-checked from their fields, linked through %zu other entries\n", v.n_full,
	       n_links);
	printf("  the rollout's creation, %d approval(s) and %d executor call(s) match the audit entries\n",
	       n_approvals, n_calls);
	printf("  the states of the rollout, its waves and deployments (%d) are where the audited transitions left them\n",
	       n_states);
	if (ynode_get(root, "attestations"))
		printf("  %d attestation(s) of the release: each document matches its sha256 and is bound to "
		       "the release digest\n", n_att);
	printf("  %u gate result(s) included (the audit entries do not record gate results)\n",
	       seq(gates) ? gates->len : 0);
	printf("  the service's check of this stretch of the log: ok; the log's head then: %lld:%s\n", head_id,
	       sval(head, "hash") ? sval(head, "hash") : "?");
	printf("  to compare with the live log: wavectl audit verify --known %lld:%s\n", last_id, sval(last, "hash"));
	free(v.full);
	free(v.sorted);
	ydoc_free(doc);
	return 0;
}

static int evidence_get(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n > 18 || strspn(id, "0123456789") != n) {
		fprintf(stderr, "wavectl: evidence takes a rollout id (a positive integer), not \"%s\"\n%s", id,
			usage_evidence);
		return EXIT_USAGE;
	}
	char path[64];
	snprintf(path, sizeof(path), "/v1/rollouts/%s/evidence", id);
	response r;
	int rc = http_call("GET", path, NULL, NULL, 0, "application/json", &r);
	if (rc)
		return rc;
	if (r.status != 200) {
		rc = report_error(&r);
	} else if (fwrite(r.body.data, 1, r.body.len, stdout) != r.body.len || fputc('\n', stdout) == EOF ||
		   fflush(stdout) != 0) {
		fprintf(stderr, "wavectl: cannot write the bundle: %m\n");
		rc = EXIT_REFUSED;
	}
	free(r.body.data);
	return rc;
}

int cmd_evidence(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(usage_evidence, argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : 0;
	}
	if (strcmp(argv[1], "verify") == 0) {
		if (argc == 3 && strcmp(argv[2], "--help") == 0) {
			fputs(usage_evidence, stdout);
			return 0;
		}
		if (argc != 3) {
			fprintf(stderr, "wavectl: evidence verify takes one FILE\n%s", usage_evidence);
			return EXIT_USAGE;
		}
		return evidence_verify(argv[2]);
	}
	if (argc != 2) {
		fprintf(stderr, "wavectl: evidence takes one rollout ID\n%s", usage_evidence);
		return EXIT_USAGE;
	}
	return evidence_get(argv[1]);
}
