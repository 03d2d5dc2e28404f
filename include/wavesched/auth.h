/*
 * auth.h - bearer tokens, roles and what each role may do (api.md).
 *
 * A token is "wst_" + 43 base64url characters (256 random bits).  Only its
 * sha256 is stored; the secret is shown once at creation.
 */
#ifndef WAVESCHED_AUTH_H
#define WAVESCHED_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include "wavesched/diag.h"

typedef enum {
	WS_ROLE_ADMIN = 0,
	WS_ROLE_PLATFORM,
	WS_ROLE_SECURITY,
	WS_ROLE_APPROVER,
	WS_ROLE_TENANT,
	WS_ROLE_VIEWER,
	WS_ROLE__COUNT
} ws_role;

/* What an endpoint needs.  Read access is split in two: READ_FLEET is the
 * whole inventory (never for tenant tokens), READ_TENANT is data about one
 * tenant, which a tenant token has only for its own slugs. */
typedef enum {
	WS_PERM_FLEET_WRITE = 0,   /* PUT /v1/fleet, policies, releases, rollouts */
	WS_PERM_READ_FLEET,        /* GET /v1/fleet and unfiltered lists */
	WS_PERM_READ_TENANT,       /* GET /v1/tenants[/{slug}] (filtered for tenant tokens) */
	WS_PERM_TOKENS,            /* /v1/tokens */
} ws_perm;

#define WS_TOKEN_PREFIX "wst_"
#define WS_TOKEN_LEN (4 + 43)
/* The longest lifetime a token may be given: ten years. */
#define WS_TOKEN_MAX_LIFETIME_S (3650LL * 86400)

typedef struct ws_principal {
	char id[40];          /* token id (uuid) */
	char *name;           /* token name, used as the actor in records */
	ws_role role;
	char **tenants;       /* slugs, for role tenant */
	size_t n_tenants;
} ws_principal;

WS_API const char *ws_role_name(ws_role r);
WS_API int ws_role_parse(const char *s, ws_role *out);
WS_API bool ws_role_may(ws_role r, ws_perm p);
WS_API bool ws_principal_sees_tenant(const ws_principal *p, const char *slug);
WS_API void ws_principal_clear(ws_principal *p);

/* Generates a new secret (NUL-terminated, WS_TOKEN_LEN chars) and its hash. */
WS_API int ws_token_generate(char secret[WS_TOKEN_LEN + 1], char hash[65]);
/* Hashes a presented secret; returns WS_EAUTH when it is not well formed
 * (so malformed tokens never reach the database). */
WS_API int ws_token_hash(const char *secret, char hash[65]);

#endif
