/*
 * server.h - `wavesched serve`.
 */
#ifndef WAVESCHED_SERVER_H
#define WAVESCHED_SERVER_H

#include "wavesched/config.h"

/* Runs until SIGTERM/SIGINT has drained everything.  Returns 0 on a clean
 * stop, or a negative code with the reason in `d` when it cannot start. */
WS_API int ws_serve(const ws_config *cfg, ws_diags *d);

#endif
