/*
 * crypto.c - sha256 and randomness (OpenSSL libcrypto, getrandom).
 */
#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <openssl/evp.h>
#include "wavesched/crypto.h"

void ws_sha256_hex(const void *buf, size_t len, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	static const char hex[] = "0123456789abcdef";
	if (!EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32) {
		out[0] = '\0';
		return;
	}
	for (unsigned i = 0; i < 32; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[64] = '\0';
}

int ws_random_bytes(void *buf, size_t len)
{
	unsigned char *p = buf;
	while (len > 0) {
		ssize_t n = getrandom(p, len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return WS_EIO;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

void ws_base64url(const unsigned char *in, size_t len, char *out)
{
	/* OpenSSL writes standard base64 with padding; map it to the URL-safe
	 * alphabet and drop the padding. */
	int n = EVP_EncodeBlock((unsigned char *)out, in, (int)len);
	while (n > 0 && out[n - 1] == '=')
		n--;
	out[n] = '\0';
	for (int i = 0; i < n; i++) {
		if (out[i] == '+')
			out[i] = '-';
		else if (out[i] == '/')
			out[i] = '_';
	}
}
