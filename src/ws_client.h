/*
 * ws_client.h: pollbridge's own WebSocket client (RFC 6455) on the
 * daemon's libuv loop, for the upstream links of plain ws:// routes without
 * `deflate`. wss:// and `deflate` routes stay on libwebsockets
 * (upstream.c), which dispatches every link operation to one or the other:
 * the session core sees only upstream.h.
 *
 * Two layers: pb_ws_rx is the receive side without I/O (bytes in, whole
 * messages and control frames out; what the unit tests drive with hostile
 * input), and struct pb_wsc is a link (resolve, connect, handshake, reads
 * into one buffer per context, masked writes, pings, the close handshake)
 * keeping the contract of struct pb_upstream_handler exactly.
 */
#ifndef PB_WS_CLIENT_H
#define PB_WS_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "upstream.h"

/* Both kinds of link begin with one of these, so upstream.c can tell them
 * apart behind the one struct pb_upstream pointer the session core holds. */
enum pb_link_kind {
	PB_LINK_LWS = 1,        /* libwebsockets (upstream.c) */
	PB_LINK_OWN = 2,        /* struct pb_wsc (ws_client.c) */
};

/* ---- the receive side ---------------------------------------------------- */

/* What pb_ws_rx_feed() reports. Each returns nothing; the link stops the
 * parser (pb_ws_rx.stop) from inside when it must not go on (paused,
 * closed). Pointers are valid during the call only. */
struct pb_ws_rx_handler {
	/* A whole message (a text one is valid UTF-8). */
	void (*message)(void *arg, int binary, const unsigned char *data, size_t len);
	/* A ping (payload at most 125 bytes) and a pong. */
	void (*ping)(void *arg, const unsigned char *data, size_t len);
	void (*pong)(void *arg);
	/* A valid close frame: code (1005 for an empty one) and reason. The
	 * parser reads nothing more afterwards. */
	void (*close)(void *arg, int code, const unsigned char *reason, size_t len);
};

/* The receive state of one link; zero it, then set max_message_bytes. */
struct pb_ws_rx {
	size_t max_message_bytes;
	struct pb_buf part;     /* part.data[at..len) is not parsed yet: an
				   incomplete frame, or what followed a stop;
				   freed when all is parsed */
	size_t at;
	struct pb_buf msg;      /* fragments of a message being reassembled */
	size_t need;            /* part must hold this much for its first frame */
	uint64_t skip;          /* payload bytes still to discard (drain) */
	uint8_t msg_op;         /* opcode of the message being reassembled, 0: none */
	uint8_t stop;           /* set by the link: parse no further for now */
	uint8_t drain;          /* our close is sent: only a close frame matters */
	uint8_t done;           /* a close frame was read, or an error: read no more */
};

/* Parse data[0..len) after whatever rx kept from earlier calls (data may be
 * NULL with len 0: go on after a stop). Whole messages and control frames
 * go to h; bytes of an incomplete frame, or everything after a stop, are
 * kept in rx->part. 0, or the close code the connection fails with (1002
 * protocol error, 1007 bad UTF-8, 1009 message over max_message_bytes, 1011
 * out of memory) with a reason (a static string) in *why; rx is then done. */
int pb_ws_rx_feed(struct pb_ws_rx *rx, const unsigned char *data, size_t len,
		  const struct pb_ws_rx_handler *h, void *arg, const char **why);

/* Release what rx holds. */
void pb_ws_rx_free(struct pb_ws_rx *rx);

/* 1 if code may be sent in a close frame (RFC 6455 section 7.4). */
int pb_ws_close_code_valid(unsigned code);

/* Write a masked client frame (FIN set, opcode op) of data[0..len) to out,
 * which must have room for len + 14 bytes. Returns the frame's length. */
size_t pb_ws_frame_masked(unsigned char *out, int op, const unsigned char *data, size_t len,
			  const unsigned char mask[4]);

/* ---- links ---------------------------------------------------------------- */

struct pb_wsc_ctx;
struct pb_wsc;

/* The links of one loop. NULL on allocation failure. */
struct pb_wsc_ctx *pb_wsc_ctx_new(uv_loop_t *loop);

/* Close every link still there (silently) and the context's handles; the
 * loop must run afterwards for their close callbacks. NULL is ignored. */
void pb_wsc_ctx_free(struct pb_wsc_ctx *ctx);

/* Keepalive pings of links dialled afterwards (see upstream.h). */
void pb_wsc_ctx_set_ping(struct pb_wsc_ctx *ctx, unsigned secs);

/* Links not yet freed (closing ones included). */
size_t pb_wsc_ctx_live(const struct pb_wsc_ctx *ctx);

/* As pb_upstream_dial() and friends, for a ws:// route. */
struct pb_wsc *pb_wsc_dial(struct pb_wsc_ctx *ctx, const struct pb_upstream_dial *d,
			   const struct pb_upstream_handler *h, void *arg, int *err);
void pb_wsc_want_write(struct pb_wsc *l);
void pb_wsc_pause(struct pb_wsc *l, int paused);
int pb_wsc_written(const struct pb_wsc *l);
void pb_wsc_close(struct pb_wsc *l, int code, const char *reason);

#endif
