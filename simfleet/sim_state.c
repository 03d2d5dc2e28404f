/*
 * sim_state.c - the simulated world: tenants, deploy records by
 * idempotency key, and Kubernetes Deployments.
 *
 * A deploy record exists per idempotency key and counts every call that
 * carried the key (`calls`) apart from the times the simulator acted on it
 * (`deploys`).  Tests read both through /_sim/calls to prove that a retried
 * or re-issued call never deployed twice for the same attempt.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "sim.h"
#include "wavesched/log.h"

const char *sim_dep_state_name(sim_dep_state s)
{
	switch (s) {
	case SIM_DEP_PENDING: return "pending";
	case SIM_DEP_DONE: return "done";
	case SIM_DEP_FAILED: return "failed";
	default: return "rejected";
	}
}

bool sim_slug_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
	return true;
}

static void tenant_free(void *p)
{
	sim_tenant *t = p;
	free(t->slug);
	free(t->initial_version);
	free(t->version);
	json_decref(t->scenario);
	json_decref(t->keys);
	sim_fault_clear(&t->fault);
	free(t);
}

static sim_tenant *tenant_add(sim_state *s, const char *slug, const char *version, bool from_fleet)
{
	sim_tenant *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->slug = strdup(slug);
	t->initial_version = strdup(version);
	t->version = strdup(version);
	t->keys = json_array();
	t->from_fleet = from_fleet;
	t->fault = (sim_fault){ .latency_factor = 1.0 };
	if (!t->slug || !t->initial_version || !t->version || !t->keys ||
	    sim_map_add(s->tenants, slug, t) != 0) {
		tenant_free(t);
		return NULL;
	}
	return t;
}

static void k8s_free(void *p)
{
	sim_k8s *k = p;
	free(k->ns);
	free(k->name);
	free(k->tenant);
	free(k->container);
	free(k->image);
	free(k);
}

sim_state *sim_state_new(uv_loop_t *loop, const ws_fleet *fleet, const sim_clock *clock,
			 uint64_t converge_ms)
{
	sim_state *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->loop = loop;
	s->clock = *clock;
	s->converge_ms = converge_ms;
	s->fleet = fleet;
	s->tenants = sim_map_new();
	s->deploys = sim_map_new();
	s->k8s = sim_map_new();
	if (!s->tenants || !s->deploys || !s->k8s)
		goto fail;
	for (size_t i = 0; fleet && i < fleet->n_tenants; i++) {
		const ws_tenant *ft = &fleet->tenants[i];
		if (!tenant_add(s, ft->slug, ft->version ? ft->version : "0", true))
			goto fail;
	}
	return s;
fail:
	sim_state_free(s);
	return NULL;
}

sim_tenant *sim_tenant_get(sim_state *s, const char *slug, bool create)
{
	sim_tenant *t = sim_map_get(s->tenants, slug);
	if (t || !create || s->fleet || !sim_slug_valid(slug))
		return t;
	if (sim_map_len(s->tenants) >= SIM_MAX_TENANTS) {
		ws_warn(SIM_SUBSYS, "tenant=%s refused: already %d tenants", slug, SIM_MAX_TENANTS);
		return NULL;
	}
	return tenant_add(s, slug, "0", false);
}

int sim_tenant_set_fault(sim_tenant *t, const sim_fault *f)
{
	sim_fault_clear(&t->fault);
	t->fault = *f;
	t->probes = 0;
	return 0;
}

int sim_state_scenario(sim_state *s, const json_t *doc, const char *name, ws_diags *d)
{
	size_t before = d->len;
	json_t *tenants = json_object_get(doc, "tenants");
	const char *key;
	json_t *v;
	if (!json_is_object(doc)) {
		ws_diag_add(d, name, 0, 0, "a scenario must be a JSON object {\"tenants\": {...}}");
		return WS_EINVAL;
	}
	json_object_foreach((json_t *)doc, key, v) {
		if (strcmp(key, "tenants") != 0)
			ws_diag_add(d, name, 0, 0, "unknown key \"%s\" (expected \"tenants\")", key);
	}
	if (!json_is_object(tenants)) {
		ws_diag_add(d, name, 0, 0, "\"tenants\" must be an object of slug -> fault spec");
		return WS_EINVAL;
	}
	json_object_foreach(tenants, key, v) {
		sim_fault f;
		const char *field;
		char msg[512];
		if (!sim_slug_valid(key))
			ws_diag_add(d, name, 0, 0, "tenants.%.80s: invalid slug (expected 1 to 63 "
				    "characters a-z, 0-9 or -)", key);
		else if (s->fleet && !sim_map_get(s->tenants, key))
			ws_diag_add(d, name, 0, 0, "tenants.%s: unknown tenant (not in the fleet)", key);
		else if (sim_fault_parse(v, &f, &field, msg, sizeof(msg)) != 0)
			ws_diag_add(d, name, 0, 0, "tenants.%s.%s: %s", key, field, msg);
		else
			sim_fault_clear(&f);
	}
	if (d->len != before)
		return WS_EINVAL;
	json_object_foreach(tenants, key, v) {
		sim_tenant *t = sim_tenant_get(s, key, true);
		sim_fault f;
		const char *field;
		char msg[512];
		if (!t || sim_fault_parse(v, &f, &field, msg, sizeof(msg)) != 0) {
			ws_diag_add(d, name, 0, 0, "tenants.%s: cannot be added (out of memory)", key);
			return WS_ENOMEM;
		}
		json_decref(t->scenario);
		t->scenario = json_incref(v);
		sim_tenant_set_fault(t, &f);
	}
	return 0;
}

static void deploy_closed_cb(uv_handle_t *h)
{
	sim_deploy *d = h->data;
	free(d->key);
	free(d->tenant);
	free(d->version);
	free(d->previous_version);
	free(d);
}

static void deploy_discard(void *p)
{
	sim_deploy *d = p;
	if (uv_is_active((uv_handle_t *)&d->timer))
		d->sim->pending_deploys--;
	uv_close((uv_handle_t *)&d->timer, deploy_closed_cb);
}

void sim_state_close(sim_state *s)
{
	sim_map_clear(s->deploys, deploy_discard);
}

void sim_state_free(sim_state *s)
{
	if (!s)
		return;
	if (s->deploys)
		sim_map_free(s->deploys, deploy_discard);
	sim_map_free(s->tenants, tenant_free);
	sim_map_free(s->k8s, k8s_free);
	free(s);
}

void sim_state_reset(sim_state *s)
{
	sim_map_clear(s->deploys, deploy_discard);
	sim_map_clear(s->k8s, k8s_free);
	s->anon_keys = 0;
	for (size_t i = 0; i < sim_map_len(s->tenants); i++) {
		sim_tenant *t = sim_map_val_at(s->tenants, i);
		char *v = strdup(t->initial_version);
		if (v) {
			free(t->version);
			t->version = v;
		}
		json_array_clear(t->keys);
		t->health_requests = t->probes = t->deploys = 0;
		t->odoo_queue_backlog = t->odoo_db_lock_waits = 0;
		sim_fault f = { .latency_factor = 1.0 };
		const char *field;
		char msg[256];
		/* The scenario spec was validated at start-up, so it parses again. */
		if (t->scenario && sim_fault_parse(t->scenario, &f, &field, msg, sizeof(msg)) != 0)
			f = (sim_fault){ .latency_factor = 1.0 };
		sim_tenant_set_fault(t, &f);
	}
	ws_info(SIM_SUBSYS, "reset: %zu tenants back to their initial versions",
		sim_map_len(s->tenants));
}

bool sim_tenant_healthy(const sim_tenant *t, uint64_t probe_index)
{
	const sim_fault *f = &t->fault;
	if (f->hang || f->http_500)
		return false;
	if (f->unhealthy_after_version && strcmp(t->version, f->unhealthy_after_version) == 0)
		return false;
	if (f->flap_every > 0 && (probe_index / (uint64_t)f->flap_every) % 2 == 1)
		return false;
	return true;
}

int64_t sim_tenant_latency_ms(const sim_tenant *t)
{
	const sim_fault *f = &t->fault;
	double ms = (double)f->latency_ms;
	if (!f->latency_after_version || strcmp(t->version, f->latency_after_version) == 0)
		ms *= f->latency_factor;
	return (int64_t)(ms + 0.5);
}

sim_deploy *sim_deploy_record(sim_state *s, const char *key, const char *tenant,
			      const char *executor, bool *is_new)
{
	sim_deploy *d = sim_map_get(s->deploys, key);
	*is_new = false;
	if (!d) {
		d = calloc(1, sizeof(*d));
		if (!d)
			return NULL;
		d->sim = s;
		d->key = strdup(key);
		d->tenant = strdup(tenant);
		d->executor = executor;
		d->state = SIM_DEP_REJECTED;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		d->first_at_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
		uv_timer_init(s->loop, &d->timer);
		d->timer.data = d;
		if (!d->key || !d->tenant || sim_map_add(s->deploys, key, d) != 0) {
			uv_close((uv_handle_t *)&d->timer, deploy_closed_cb);
			return NULL;
		}
		sim_tenant *t = sim_map_get(s->tenants, tenant);
		if (t)
			json_array_append_new(t->keys, json_string(key));
		*is_new = true;
	}
	d->calls++;
	return d;
}

static void deploy_converged_cb(uv_timer_t *timer)
{
	sim_deploy *d = timer->data;
	sim_state *s = d->sim;
	s->pending_deploys--;
	sim_tenant *t = sim_map_get(s->tenants, d->tenant);
	/* Without its version (memory ran out when it was accepted) a deploy
	 * cannot have succeeded. */
	d->state = d->will_fail || !d->version ? SIM_DEP_FAILED : SIM_DEP_DONE;
	if (d->state == SIM_DEP_DONE && t) {
		char *v = strdup(d->version);
		if (v) {
			free(t->version);
			t->version = v;
		}
		t->deploys++;
	}
	sim_k8s *k = d->k8s;
	if (k && k->generation == d->k8s_generation) {
		k->observed_generation = k->generation;
		k->failed = d->will_fail;
		k->updated_replicas = d->will_fail ? 0 : k->replicas;
		k->available_replicas = d->will_fail ? k->replicas - 1 : k->replicas;
	}
	ws_info(SIM_SUBSYS, "tenant=%s key=%s executor=%s version=%s deploy %s", d->tenant, d->key,
		d->executor, d->version ? d->version : "-", sim_dep_state_name(d->state));
}

void sim_deploy_start(sim_deploy *d, sim_tenant *t, const char *version,
		      const char *previous_version)
{
	free(d->version);
	free(d->previous_version);
	d->version = strdup(version);
	d->previous_version = previous_version ? strdup(previous_version) : NULL;
	d->will_fail = t->fault.deploy_fail;
	d->state = SIM_DEP_PENDING;
	d->deploys++;
	if (!uv_is_active((uv_handle_t *)&d->timer))
		d->sim->pending_deploys++;
	uv_timer_start(&d->timer, deploy_converged_cb, d->sim->converge_ms, 0);
	ws_info(SIM_SUBSYS, "tenant=%s key=%s executor=%s version=%s deploy accepted%s", d->tenant,
		d->key, d->executor, version, d->will_fail ? " (will fail: deploy_fail)" : "");
}
