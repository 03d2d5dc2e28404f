/*
 * sim_fault.c - fault specs (validated JSON) and the simulator's clock.
 *
 * A fault spec comes from the control API or from --scenario.  Validation
 * is strict, like the fleet parser's: an unknown key (a typo such as
 * "latncy_ms") is an error, not something silently ignored, because a test
 * that believes it set a fault and did not would pass for the wrong reason.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "sim.h"
#include "wavesched/window.h"

#define DEFAULT_STALE_AGE_S (48 * 3600)
#define MAX_LATENCY_MS (10 * 60 * 1000)
#define MAX_FACTOR 1000.0

int64_t sim_clock_now_ms(const sim_clock *c)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t wall = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	return c->origin_ms + (int64_t)((double)(wall - c->origin_ms) * c->scale);
}

uint64_t sim_clock_real_ms(const sim_clock *c, int64_t sched_ms)
{
	double ms = (double)sched_ms / c->scale;
	return ms < 1.0 ? 1 : (uint64_t)ms;
}

void sim_format_time(int64_t unix_ms, char buf[40])
{
	int64_t s = unix_ms >= 0 ? unix_ms / 1000 : -((-unix_ms + 999) / 1000);
	ws_time_format(s, 0, true, buf, 40);
}

static const char *const fault_keys[] = {
	"unhealthy_after_version", "latency_ms", "latency_factor", "latency_after_version",
	"hang", "http_500", "flap_every", "deploy_fail", "deploy_reject", "backup",
	"backup_age", "queue_backlog", NULL,
};

static const char *json_kind(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	default: return "null";
	}
}

#define FAIL(f, ...) do { *field = (f); snprintf(msg, msg_size, __VA_ARGS__); goto fail; } while (0)

static bool get_int(const json_t *v, int64_t min, int64_t max, int64_t *out)
{
	if (!json_is_integer(v))
		return false;
	json_int_t n = json_integer_value(v);
	if (n < min || n > max)
		return false;
	*out = n;
	return true;
}

int sim_fault_parse(const json_t *spec, sim_fault *out, const char **field, char *msg,
		    size_t msg_size)
{
	sim_fault f = { .latency_factor = 1.0, .backup_age_s = -1 };
	const char *key;
	json_t *v;
	if (!json_is_object(spec)) {
		*field = "(body)";
		snprintf(msg, msg_size, "a fault spec must be a JSON object, got %s",
			 spec ? json_kind(spec) : "nothing");
		return WS_EINVAL;
	}
	json_object_foreach((json_t *)spec, key, v) {
		size_t i;
		for (i = 0; fault_keys[i] && strcmp(fault_keys[i], key) != 0; i++)
			;
		if (!fault_keys[i])
			FAIL(key, "unknown fault field \"%s\" (expected one of: unhealthy_after_version, "
			     "latency_ms, latency_factor, latency_after_version, hang, http_500, "
			     "flap_every, deploy_fail, deploy_reject, backup, backup_age, "
			     "queue_backlog)", key);
	}
	if ((v = json_object_get(spec, "unhealthy_after_version"))) {
		if (!json_is_string(v) || !json_string_length(v) ||
		    json_string_length(v) > SIM_MAX_VERSION_LEN)
			FAIL("unhealthy_after_version", "fault field \"unhealthy_after_version\": expected "
			     "a version string (1 to %d characters), got %s", SIM_MAX_VERSION_LEN,
			     json_kind(v));
		f.unhealthy_after_version = strdup(json_string_value(v));
	}
	if ((v = json_object_get(spec, "latency_after_version"))) {
		if (!json_is_string(v) || !json_string_length(v) ||
		    json_string_length(v) > SIM_MAX_VERSION_LEN)
			FAIL("latency_after_version", "fault field \"latency_after_version\": expected "
			     "a version string (1 to %d characters), got %s", SIM_MAX_VERSION_LEN,
			     json_kind(v));
		f.latency_after_version = strdup(json_string_value(v));
	}
	if ((v = json_object_get(spec, "latency_ms")) && !get_int(v, 0, MAX_LATENCY_MS, &f.latency_ms))
		FAIL("latency_ms", "fault field \"latency_ms\": expected an integer from 0 to %d, got %s",
		     MAX_LATENCY_MS, json_kind(v));
	if ((v = json_object_get(spec, "latency_factor"))) {
		double x = json_is_number(v) ? json_number_value(v) : NAN;
		if (!(x > 0.0 && x <= MAX_FACTOR))
			FAIL("latency_factor", "fault field \"latency_factor\": expected a number "
			     "above 0 and at most %g, got %s", MAX_FACTOR, json_kind(v));
		f.latency_factor = x;
	}
	if (f.latency_after_version && !json_object_get(spec, "latency_factor"))
		FAIL("latency_after_version", "fault field \"latency_after_version\" needs "
		     "\"latency_factor\"");
	static const struct { const char *name; size_t off; } flags[] = {
		{ "hang", offsetof(sim_fault, hang) },
		{ "http_500", offsetof(sim_fault, http_500) },
		{ "deploy_fail", offsetof(sim_fault, deploy_fail) },
		{ "deploy_reject", offsetof(sim_fault, deploy_reject) },
	};
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
		if (!(v = json_object_get(spec, flags[i].name)))
			continue;
		if (!json_is_boolean(v))
			FAIL(flags[i].name, "fault field \"%s\": expected true or false, got %s",
			     flags[i].name, json_kind(v));
		*(bool *)((char *)&f + flags[i].off) = json_is_true(v);
	}
	if ((v = json_object_get(spec, "flap_every")) && !get_int(v, 1, 1000000, &f.flap_every))
		FAIL("flap_every", "fault field \"flap_every\": expected an integer from 1 to 1000000, "
		     "got %s", json_kind(v));
	if ((v = json_object_get(spec, "queue_backlog")) &&
	    !get_int(v, 0, INT64_C(1) << 50, &f.queue_backlog))
		FAIL("queue_backlog", "fault field \"queue_backlog\": expected a non-negative "
		     "integer, got %s", json_kind(v));
	if ((v = json_object_get(spec, "backup"))) {
		const char *b = json_string_value(v);
		if (b && strcmp(b, "fresh") == 0)
			f.backup = SIM_BACKUP_FRESH;
		else if (b && strcmp(b, "stale") == 0)
			f.backup = SIM_BACKUP_STALE;
		else if (b && strcmp(b, "missing") == 0)
			f.backup = SIM_BACKUP_MISSING;
		else if (b)
			FAIL("backup", "fault field \"backup\": invalid value \"%.64s\" (expected one of: "
			     "fresh, stale, missing)", b);
		else
			FAIL("backup", "fault field \"backup\": expected \"fresh\", \"stale\" or "
			     "\"missing\", got %s", json_kind(v));
	}
	if ((v = json_object_get(spec, "backup_age"))) {
		int64_t s = -1;
		if (json_is_string(v)) {
			if (ws_duration_parse(json_string_value(v), &s) != 0)
				s = -1;
		} else if (!get_int(v, 0, INT64_C(1) << 40, &s)) {
			s = -1;
		}
		if (s < 0)
			FAIL("backup_age", "fault field \"backup_age\": expected a duration such as "
			     "\"48h\" or a number of seconds, got %s%s%.64s%s", json_kind(v),
			     json_is_string(v) ? " \"" : "", json_is_string(v) ? json_string_value(v) : "",
			     json_is_string(v) ? "\"" : "");
		f.backup_age_s = s;
	}
	if (f.backup_age_s < 0)
		f.backup_age_s = f.backup == SIM_BACKUP_STALE ? DEFAULT_STALE_AGE_S : 0;
	f.spec = json_deep_copy(spec);
	if ((json_object_get(spec, "unhealthy_after_version") && !f.unhealthy_after_version) ||
	    (json_object_get(spec, "latency_after_version") && !f.latency_after_version) || !f.spec)
		FAIL("(body)", "out of memory");
	*out = f;
	return 0;
fail:
	sim_fault_clear(&f);
	return WS_EINVAL;
}

void sim_fault_clear(sim_fault *f)
{
	free(f->unhealthy_after_version);
	free(f->latency_after_version);
	json_decref(f->spec);
	*f = (sim_fault){ .latency_factor = 1.0 };
}
