/*
 * auth.c - tokens and the role table of api.md.
 */
#include <stdlib.h>
#include <string.h>
#include "wavesched/auth.h"
#include "wavesched/crypto.h"

static const char *const role_names[WS_ROLE__COUNT] = {
	"admin", "platform", "security", "approver", "tenant", "viewer",
};

/* The one place that says who may do what.  Approvers read everything: they
 * cannot sign off a wave they are not allowed to look at. */
static const bool may[WS_ROLE__COUNT][4] = {
	/*                 FLEET_WRITE READ_FLEET READ_TENANT TOKENS */
	[WS_ROLE_ADMIN]    = { true,  true,  true,  true },
	[WS_ROLE_PLATFORM] = { true,  true,  true,  false },
	[WS_ROLE_SECURITY] = { true,  true,  true,  false },
	[WS_ROLE_APPROVER] = { false, true,  true,  false },
	[WS_ROLE_TENANT]   = { false, false, true,  false },
	[WS_ROLE_VIEWER]   = { false, true,  true,  false },
};

const char *ws_role_name(ws_role r)
{
	return (unsigned)r < WS_ROLE__COUNT ? role_names[r] : "unknown";
}

int ws_role_parse(const char *s, ws_role *out)
{
	for (int i = 0; i < WS_ROLE__COUNT; i++) {
		if (strcmp(s, role_names[i]) == 0) {
			*out = (ws_role)i;
			return 0;
		}
	}
	return WS_EINVAL;
}

bool ws_role_may(ws_role r, ws_perm p)
{
	return (unsigned)r < WS_ROLE__COUNT && (unsigned)p < 4 && may[r][p];
}

bool ws_principal_sees_tenant(const ws_principal *p, const char *slug)
{
	if (p->role != WS_ROLE_TENANT)
		return ws_role_may(p->role, WS_PERM_READ_TENANT);
	for (size_t i = 0; i < p->n_tenants; i++)
		if (strcmp(p->tenants[i], slug) == 0)
			return true;
	return false;
}

void ws_principal_clear(ws_principal *p)
{
	free(p->name);
	for (size_t i = 0; i < p->n_tenants; i++)
		free(p->tenants[i]);
	free(p->tenants);
	memset(p, 0, sizeof(*p));
}

int ws_token_generate(char secret[WS_TOKEN_LEN + 1], char hash[65])
{
	unsigned char raw[32];
	char enc[45];
	if (ws_random_bytes(raw, sizeof(raw)) != 0)
		return WS_EIO;
	ws_base64url(raw, sizeof(raw), enc);
	memcpy(secret, WS_TOKEN_PREFIX, 4);
	memcpy(secret + 4, enc, 43);
	secret[WS_TOKEN_LEN] = '\0';
	ws_sha256_hex(secret, WS_TOKEN_LEN, hash);
	return 0;
}

int ws_token_hash(const char *secret, char hash[65])
{
	if (strlen(secret) != WS_TOKEN_LEN || strncmp(secret, WS_TOKEN_PREFIX, 4) != 0)
		return WS_EAUTH;
	for (const char *p = secret + 4; *p; p++) {
		char ch = *p;
		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
			return WS_EAUTH;
	}
	ws_sha256_hex(secret, WS_TOKEN_LEN, hash);
	return 0;
}
