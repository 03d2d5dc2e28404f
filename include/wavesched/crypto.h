/*
 * crypto.h - the few primitives wavesched needs, from OpenSSL's libcrypto.
 */
#ifndef WAVESCHED_CRYPTO_H
#define WAVESCHED_CRYPTO_H

#include <stddef.h>
#include "wavesched/diag.h"

/* Lowercase hex sha256 of buf into out (65 bytes with the NUL). */
WS_API void ws_sha256_hex(const void *buf, size_t len, char out[65]);
/* Fills buf with cryptographically secure random bytes; 0 or WS_EIO. */
WS_API int ws_random_bytes(void *buf, size_t len);
/* base64url without padding; out must hold 4 * ceil(len / 3) + 1 bytes. */
WS_API void ws_base64url(const unsigned char *in, size_t len, char *out);

#endif
