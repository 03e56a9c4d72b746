/*
 * headers.h: a short list of HTTP request headers (name/value pairs) that
 * one module gathers and another sends. The front end gathers a create's
 * forwarded headers into it, the session core keeps them for a re-dial,
 * and the upstream link adds them to the WebSocket handshake. It is its
 * own header so that none of the three has to include another's.
 */
#ifndef PB_HEADERS_H
#define PB_HEADERS_H

#include <stddef.h>

#include "config.h"

/* Most request headers one upstream handshake carries for the client: the
 * configured ones (--forward-header) and X-Forwarded-For. */
#define PB_MAX_HEADERS (PB_MAX_FORWARD_HEADERS + 1)

/* Request headers ("Cookie", "a=1"), in the order they are sent: names are
 * HTTP tokens in any case, values hold no control characters but HTAB.
 * The strings are borrowed: whoever is handed a list copies what it keeps. */
struct pb_headers {
	const char *name[PB_MAX_HEADERS];
	const char *value[PB_MAX_HEADERS];
	size_t n;
};

#endif
