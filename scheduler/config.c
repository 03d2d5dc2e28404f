/*
 * config.c - configuration from a YAML file and the environment.
 *
 * The file is parsed with the same positioned YAML tree as fleet files, so a
 * typo in a key is reported as FILE:LINE:COLUMN instead of being ignored.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "ws_config.h"
#include "wavesched/config.h"
#include "wavesched/fleet.h"
#include "wavesched/ratelimit.h"
#include "wavesched/ydoc.h"

static void set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = v ? strdup(v) : NULL;
}

static int parse_size(const char *s, size_t *out)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (end == s)
		return WS_EINVAL;
	if (strcmp(end, "") == 0 || strcmp(end, "B") == 0)
		;
	else if (strcmp(end, "KiB") == 0 || strcmp(end, "k") == 0)
		v <<= 10;
	else if (strcmp(end, "MiB") == 0 || strcmp(end, "M") == 0)
		v <<= 20;
	else
		return WS_EINVAL;
	if (v == 0)
		return WS_EINVAL;
	*out = (size_t)v;
	return 0;
}

static int parse_ms(const char *s, uint64_t *out)
{
	int64_t sec;
	if (ws_duration_parse(s, &sec) != 0 || sec <= 0)
		return WS_EINVAL;
	*out = (uint64_t)sec * 1000;
	return 0;
}

/* Applies one setting by its file key; `what` names the source for errors. */
static int apply(ws_config *c, const char *key, const char *val)
{
	if (strcmp(key, "listen") == 0)
		set_str(&c->listen, val);
	else if (strcmp(key, "database_url") == 0)
		set_str(&c->database_url, val);
	else if (strcmp(key, "redis_url") == 0)
		set_str(&c->redis_url, val);
	else if (strcmp(key, "log_format") == 0) {
		if (strcmp(val, "text") && strcmp(val, "json"))
			return WS_EINVAL;
		set_str(&c->log_format, val);
	} else if (strcmp(key, "log_level") == 0) {
		if (strcmp(val, "debug") && strcmp(val, "info") && strcmp(val, "warn") &&
		    strcmp(val, "error") && strcmp(val, "off"))
			return WS_EINVAL;
		set_str(&c->log_level, val);
	} else if (strcmp(key, "outbound_allow") == 0)
		set_str(&c->outbound_allow, val);
	else if (strcmp(key, "outbound_deny") == 0)
		set_str(&c->outbound_deny, val);
	else if (strcmp(key, "lease_ttl") == 0)
		return parse_ms(val, &c->lease_ttl_ms);
	else if (strcmp(key, "review_window") == 0)
		return parse_ms(val, &c->review_window_ms);
	else if (strcmp(key, "notify_lead") == 0)
		return parse_ms(val, &c->notify_lead_ms);
	else if (strcmp(key, "notify_backoff") == 0)
		return parse_ms(val, &c->notify_backoff_ms);
	else if (strcmp(key, "notify_backoff_max") == 0)
		return parse_ms(val, &c->notify_backoff_max_ms);
	else if (strcmp(key, "notify_max_attempts") == 0) {
		char *end;
		long v = strtol(val, &end, 10);
		if (*val == '\0' || *end || v < 1 || v > 100)
			return WS_EINVAL;
		c->notify_max_attempts = (unsigned)v;
	} else if (strcmp(key, "rate_limit") == 0)
		return ws_ratelimit_parse(val, &c->rate_limit);
	else if (strcmp(key, "rate_burst") == 0) {
		char *end;
		long v = strtol(val, &end, 10);
		if (*val == '\0' || *end || v < 1 || v > 1000000)
			return WS_EINVAL;
		c->rate_burst = (unsigned)v;
	} else if (strcmp(key, "prometheus_url") == 0) {
		/* Checked here so that a typo fails at start, not at the first gate. */
		if (strncmp(val, "http://", 7) != 0 && strncmp(val, "https://", 8) != 0)
			return WS_EINVAL;
		set_str(&c->prometheus_url, val);
	} else if (strcmp(key, "metric_interval") == 0) {
		int64_t sec;
		if (ws_duration_parse(val, &sec) != 0 || sec <= 0)
			return WS_EINVAL;
		c->metric_interval_s = sec;
	} else if (strcmp(key, "migrations_dir") == 0)
		set_str(&c->migrations_dir, val);
	else if (strcmp(key, "state_dir") == 0) {
		/* git runs with other working directories: a relative path
		 * would name another place for each of them. */
		if (val[0] != '/')
			return WS_EINVAL;
		set_str(&c->state_dir, val);
	}
	else if (strcmp(key, "db_pool_size") == 0) {
		char *end;
		long v = strtol(val, &end, 10);
		if (*val == '\0' || *end || v < 1 || v > 64)
			return WS_EINVAL;
		c->db_pool_size = (int)v;
	} else if (strcmp(key, "query_timeout") == 0)
		return parse_ms(val, &c->query_timeout_ms);
	else if (strcmp(key, "idle_timeout") == 0)
		return parse_ms(val, &c->idle_timeout_ms);
	else if (strcmp(key, "shutdown_grace") == 0)
		return parse_ms(val, &c->shutdown_grace_ms);
	else if (strcmp(key, "max_body_bytes") == 0)
		return parse_size(val, &c->max_body_bytes);
	else if (strcmp(key, "max_header_bytes") == 0)
		return parse_size(val, &c->max_header_bytes);
	else
		return WS_ENOTFOUND;
	return 0;
}

static const char *const keys[] = {
	"listen", "database_url", "redis_url", "log_format", "log_level", "outbound_allow",
	"outbound_deny", "lease_ttl", "review_window", "rate_limit", "rate_burst", "migrations_dir", "state_dir", "db_pool_size", "query_timeout", "idle_timeout", "shutdown_grace",
	"max_body_bytes", "max_header_bytes",
	"notify_lead", "notify_max_attempts", "notify_backoff", "notify_backoff_max",
	"prometheus_url", "metric_interval",
};
#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

int ws_config_load(ws_config *c, const char *path, ws_diags *d)
{
	memset(c, 0, sizeof(*c));
	set_str(&c->listen, "127.0.0.1:8480");
	set_str(&c->log_format, "text");
	set_str(&c->log_level, "info");
	set_str(&c->state_dir, "/var/lib/wavesched");
	c->db_pool_size = 4;
	c->query_timeout_ms = 30000;
	c->max_body_bytes = 8u << 20;
	c->max_header_bytes = 16u << 10;
	c->idle_timeout_ms = 60000;
	c->shutdown_grace_ms = 10000;
	c->time_scale = 1.0;
	c->lease_ttl_ms = 10000;
	c->review_window_ms = 24ull * 3600 * 1000;
	c->rate_limit = 50;
	c->rate_burst = 100;
	c->notify_lead_ms = 24ull * 3600 * 1000;
	c->notify_max_attempts = 8;
	c->notify_backoff_ms = 2000;
	c->notify_backoff_max_ms = 600000;
	c->metric_interval_s = 30;
	int rc = 0;

	if (path) {
		ydoc *doc = ydoc_parse_file(path, NULL, d);
		if (!doc)
			return WS_EINVAL;
		const ynode *root = ydoc_root(doc);
		if (root && root->kind != YNODE_MAP) {
			ws_diag_add(d, path, root->line, root->column,
				    "expected a mapping of settings, got a %s", ynode_kind_name(root));
			rc = WS_EINVAL;
		}
		for (size_t i = 0; root && root->kind == YNODE_MAP && i < root->len; i++) {
			const ynode *k = root->keys[i], *v = root->items[i];
			if (v->kind != YNODE_SCALAR) {
				ws_diag_add(d, path, v->line, v->column,
					    "expected a string for \"%s\", got a %s", k->value,
					    ynode_kind_name(v));
				rc = WS_EINVAL;
				continue;
			}
			int r = apply(c, k->value, v->value);
			if (r == WS_ENOTFOUND) {
				char allowed[512] = "";
				for (size_t j = 0; j < N_KEYS; j++) {
					strcat(allowed, j ? ", " : "");
					strcat(allowed, keys[j]);
				}
				ws_diag_add(d, path, k->line, k->column,
					    "unknown setting \"%s\" (expected one of: %s)", k->value, allowed);
				rc = WS_EINVAL;
			} else if (r) {
				ws_diag_add(d, path, v->line, v->column, "invalid value \"%s\" for \"%s\"",
					    v->value, k->value);
				rc = WS_EINVAL;
			}
		}
		ydoc_free(doc);
	}

	/* The environment wins over the file. */
	for (size_t j = 0; j < N_KEYS; j++) {
		char name[64] = "WAVESCHED_";
		size_t n = strlen(name);
		for (const char *p = keys[j]; *p && n < sizeof(name) - 1; p++)
			name[n++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
		name[n] = '\0';
		const char *v = getenv(name);
		if (!v)
			continue;
		if (apply(c, keys[j], v)) {
			ws_diag_add(d, NULL, 0, 0, "invalid value \"%s\" in environment variable %s", v, name);
			rc = WS_EINVAL;
		}
	}
	return rc;
}

void ws_config_free(ws_config *c)
{
	free(c->listen);
	free(c->database_url);
	free(c->redis_url);
	free(c->log_format);
	free(c->log_level);
	free(c->outbound_allow);
	free(c->outbound_deny);
	free(c->migrations_dir);
	free(c->state_dir);
	free(c->prometheus_url);
	memset(c, 0, sizeof(*c));
}

static int is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

const char *ws_config_migrations_dir(const ws_config *c)
{
	if (c->migrations_dir)
		return c->migrations_dir;
	/* A binary run from its build tree uses the tree's migrations; an
	 * installed one (no source tree on the machine) uses the installed copy. */
	if (is_dir(WS_MIGRATIONS_SOURCE))
		return WS_MIGRATIONS_SOURCE;
	return WS_MIGRATIONS_INSTALLED;
}
