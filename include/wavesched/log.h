/*
 * log.h - one line per event on stderr, as text for people or JSON lines for
 * machines.  Cheap when the level is off: the level check happens before any
 * formatting.  Every line names its subsystem; objects go in key=value
 * fields ("rollout=... tenant=...").
 */
#ifndef WAVESCHED_LOG_H
#define WAVESCHED_LOG_H

#include <stdbool.h>
#include "wavesched/diag.h"

typedef enum { WS_LOG_DEBUG = 0, WS_LOG_INFO, WS_LOG_WARN, WS_LOG_ERROR, WS_LOG_OFF } ws_log_level;

WS_API extern ws_log_level ws_log_min_level;
WS_API int ws_log_set_level(const char *name);   /* debug|info|warn|error|off */
WS_API int ws_log_set_format(const char *name);  /* text|json */

WS_API void ws_log_write(ws_log_level lvl, const char *subsys, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define ws_log(lvl, subsys, ...) \
	do { if ((lvl) >= ws_log_min_level) ws_log_write((lvl), (subsys), __VA_ARGS__); } while (0)
#define ws_debug(sub, ...) ws_log(WS_LOG_DEBUG, sub, __VA_ARGS__)
#define ws_info(sub, ...)  ws_log(WS_LOG_INFO, sub, __VA_ARGS__)
#define ws_warn(sub, ...)  ws_log(WS_LOG_WARN, sub, __VA_ARGS__)
#define ws_error(sub, ...) ws_log(WS_LOG_ERROR, sub, __VA_ARGS__)

#endif
