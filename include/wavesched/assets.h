/*
 * assets.h - files shipped inside the binary (scripts/embed.py): the web
 * page of api.md and the OpenAPI document.  No build step at run time and
 * no file to install beside the binary.
 */
#ifndef WAVESCHED_ASSETS_H
#define WAVESCHED_ASSETS_H

#include <stddef.h>

typedef struct ws_asset {
	const char *path;          /* the URL path it is served at */
	const char *content_type;
	const unsigned char *data;
	size_t len;
	const char *etag;          /* quoted, from the content */
} ws_asset;

/* Ends with an entry whose path is NULL. */
extern const ws_asset ws_assets[];

#endif
