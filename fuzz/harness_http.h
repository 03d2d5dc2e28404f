/*
 * harness_http.h - drives the real HTTP server (scheduler/http.c) with bytes
 * from a fuzz input, without a network: the server adopts one end of a
 * socketpair, a libuv pipe on the other end writes the input and reads the
 * answers, all on a private loop that is closed again before returning.
 */
#ifndef WAVESCHED_FUZZ_HARNESS_HTTP_H
#define WAVESCHED_FUZZ_HARNESS_HTTP_H
#include <stddef.h>
#include "wavesched/http.h"

/* Writes `data` to a fresh server with `lim`, lets it answer what it can,
 * then half-closes, shuts the server down and runs the loop dry.  Aborts
 * (a finding) when a handle is left open on the loop afterwards.  `handler`
 * may answer later from a handle it puts on `loop`: the loop runs until
 * nothing is left.  Returns the bytes of response the client read. */
size_t fuzz_http_run(const char *data, size_t size, const ws_http_limits *lim,
		     void (*setup)(uv_loop_t *loop, void *arg), ws_http_handler_cb handler,
		     void *arg);

#endif
