/*
 * fuzz.h - what the fuzz targets share with fuzz/replay.c.
 *
 * Each target is one LLVMFuzzerTestOneInput that frees everything it makes
 * (a leak is a finding) and abort()s when a property the code promises
 * fails, so that libFuzzer keeps the input like any crash.  The same file
 * links into a libFuzzer binary (clang, scripts/fuzz) and into replay_<t>
 * (the normal compiler), which runs the seeds and the kept crashers as a
 * regression test.
 */
#ifndef WAVESCHED_FUZZ_H
#define WAVESCHED_FUZZ_H
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Prints what broke, and the problems of `d` if given, then aborts. */
struct ws_diags;
__attribute__((noreturn)) void fuzz_fail(const char *what, const struct ws_diags *d);

#endif
