/*
 * log.c - stderr logging, text or JSON lines (see include/wavesched/log.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jansson.h>
#include "wavesched/log.h"

ws_log_level ws_log_min_level = WS_LOG_INFO;
static bool log_json;

static const char *const level_names[] = { "debug", "info", "warn", "error", "off" };

int ws_log_set_level(const char *name)
{
	for (int i = 0; i <= WS_LOG_OFF; i++) {
		if (strcmp(name, level_names[i]) == 0) {
			ws_log_min_level = (ws_log_level)i;
			return 0;
		}
	}
	return WS_EINVAL;
}

int ws_log_set_format(const char *name)
{
	if (strcmp(name, "text") == 0)
		log_json = false;
	else if (strcmp(name, "json") == 0)
		log_json = true;
	else
		return WS_EINVAL;
	return 0;
}

void ws_log_write(ws_log_level lvl, const char *subsys, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char when[40];
	size_t n = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(when + n, sizeof(when) - n, ".%03ldZ", ts.tv_nsec / 1000000);

	if (log_json) {
		json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "time", when, "level",
				      level_names[lvl], "subsystem", subsys, "message", msg);
		char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
		if (line)
			fprintf(stderr, "%s\n", line);
		free(line);
		json_decref(o);
	} else {
		fprintf(stderr, "%s %-5s %s: %s\n", when, level_names[lvl], subsys, msg);
	}
}
