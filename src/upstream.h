/*
 * upstream.h: the upstream link: one client WebSocket per session to a
 * configured route, on the daemon's libuv loop: pollbridge's own client
 * (ws_client.c) for ws:// routes without `deflate`, libwebsockets for
 * wss:// and `deflate` routes. Both keep the contract below.
 *
 * It dials (handshake headers, subprotocols, TLS), reassembles fragmented
 * messages into one pb_msg each (pings, pongs and close frames are never
 * messages), writes outbound messages one frame per WRITEABLE, pauses
 * reading on request (backpressure), and reports the close code and reason.
 * It knows nothing of HTTP clients or stores: the session core drives it
 * through the handler below.
 */
#ifndef PB_UPSTREAM_H
#define PB_UPSTREAM_H

#include <stddef.h>
#include <uv.h>

#include "config.h"
#include "headers.h"
#include "msg.h"

struct pb_upstream_ctx;
struct pb_upstream;

/* What the link reports to its owner. Each is called on the loop thread,
 * never from inside pb_upstream_dial(). After pb_upstream_close(), or after
 * failed() or closed() has been called, no callback fires again. */
struct pb_upstream_handler {
	/* The handshake completed; protocol is the chosen subprotocol or NULL. */
	void (*opened)(void *arg, const char *protocol);
	/* The dial failed (refused, HTTP error, TLS): PB_EUPSTREAM, and a reason. */
	void (*failed)(void *arg, int err, const char *why);
	/* A complete message arrived; ownership of m passes to the callee. */
	void (*message)(void *arg, struct pb_msg *m);
	/* The connection ended after opening: the peer's close code (1006 when
	 * it vanished without one, 1009 for a message over the size limit) and
	 * reason (not NUL-terminated). */
	void (*closed)(void *arg, int code, const char *reason, size_t reason_len);
	/* The socket can take a message: return the next one (a reference the
	 * link takes over) or NULL when there is nothing to write. */
	struct pb_msg *(*next_out)(void *arg);
};

/* Everything needed to dial one session's upstream. Borrowed during the call. */
struct pb_upstream_dial {
	const struct pb_route *route;
	const char *protocols;          /* comma-separated offer, or NULL */
	const char *origin;             /* Origin header to send, or NULL */
	const struct pb_headers *headers;       /* added to the handshake (at most
						   PB_MAX_HEADERS), or NULL: none */
	size_t max_message_bytes;
	int eio;                        /* 0, or dial the route's path with the
					   query parameter EIO=<eio> (Engine.IO) */
};

/* The route path (a path with an optional query) with the query parameter
 * EIO=<eio>: an existing EIO= value is replaced, else "EIO=<eio>" is
 * appended after '?' (no query yet) or '&'. Malloc'd; NULL on allocation
 * failure. */
char *pb_upstream_eio_path(const char *path, int eio);

/* A context for both kinds of link on loop. wss:// upstreams must verify
 * against the PEM bundle ca_file, or the system's CAs if it is NULL. NULL
 * on failure, with a reason in err. */
struct pb_upstream_ctx *pb_upstream_ctx_new(uv_loop_t *loop, const char *ca_file, char *err,
					    size_t errlen);

/* Destroy the context. Call it last, once every link is closed and every
 * other handle on the loop has been closed: it runs the loop until
 * libwebsockets has let go of it. NULL is ignored. */
void pb_upstream_ctx_free(struct pb_upstream_ctx *ctx);

/* Ping every link that has been silent for secs seconds and close it (the
 * owner sees closed() with 1006) when no answer came within secs more.
 * 0 disables keepalives. Applies to links dialled afterwards. */
void pb_upstream_ctx_set_ping(struct pb_upstream_ctx *ctx, unsigned secs);

/* Number of links not yet freed, of both kinds (closing ones included). */
size_t pb_upstream_ctx_live(const struct pb_upstream_ctx *ctx);

/* Start dialling. On success returns the link; exactly one of opened() or
 * failed() follows later (unless the link is closed first). NULL with
 * *err set (PB_EUPSTREAM, PB_ENOMEM, PB_EBADREQ for a header name or value
 * that may not be sent) if it failed at once. Headers that do not fit the
 * handshake buffer fail the dial (failed(), PB_EUPSTREAM). */
struct pb_upstream *pb_upstream_dial(struct pb_upstream_ctx *ctx, const struct pb_upstream_dial *d,
				     const struct pb_upstream_handler *h, void *arg, int *err);

/* There is something to write: next_out() will be called when the socket
 * is writable. */
void pb_upstream_want_write(struct pb_upstream *up);

/* Pause (1) or resume (0) reading messages from the upstream. */
void pb_upstream_pause(struct pb_upstream *up, int paused);

/* 1 if every message next_out() handed over has left this process (the
 * kernel has all of it), 0 if the link still holds part of one. */
int pb_upstream_written(struct pb_upstream *up);

/* The link operations the session core uses, as a table, so that the
 * core's tests can drive it with a fake link (tests/unit/test_pump.c). */
struct pb_link_ops {
	struct pb_upstream *(*dial)(void *ctx, const struct pb_upstream_dial *d,
				    const struct pb_upstream_handler *h, void *arg, int *err);
	void (*want_write)(struct pb_upstream *up);
	void (*pause)(struct pb_upstream *up, int paused);
	void (*close)(struct pb_upstream *up, int code, const char *reason);
	int (*written)(struct pb_upstream *up);
};

/* The real links: ctx is a struct pb_upstream_ctx. */
extern const struct pb_link_ops pb_upstream_link_ops;

/* After failed() or closed() the link is gone: do not use it again.
 *
 * Detach the owner and close: an open link sends a close frame with code
 * and reason, one still dialling is abandoned. No callback fires after this
 * returns; the link frees itself later (once libwebsockets, or libuv for
 * the own client, is done with it). */
void pb_upstream_close(struct pb_upstream *up, int code, const char *reason);

#endif
