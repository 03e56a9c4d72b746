/*
 * ws_client.c: pollbridge's own WebSocket client for plain ws:// upstream
 * links (see ws_client.h): the frame parser (pb_ws_rx), the masked frame
 * writer, and the links themselves on libuv.
 *
 * Why not libwebsockets here: its client parser walks every payload byte
 * through a state machine, and it keeps a receive buffer per connection.
 * This one reads into one 64 KiB buffer per loop (libuv calls alloc_cb then
 * read_cb synchronously, so links can share it), parses frame headers and
 * hands payload runs over in place; only an incomplete frame's bytes are
 * copied into the link, so an idle link holds no receive buffer.
 *
 * Lifetime: a link is freed only once its TCP handle is closed and no
 * name resolution is in flight (refs). The owner may detach earlier
 * (pb_wsc_close, or after failed()/closed()); nothing is reported after
 * that. Callbacks to the owner come only from loop callbacks, never from
 * inside a call the owner made.
 */
#include <ctype.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "codec.h"
#include "error.h"
#include "log.h"
#include "ws_client.h"

#define WS_OP_CONT 0x0
#define WS_OP_TEXT 0x1
#define WS_OP_BINARY 0x2
#define WS_OP_CLOSE 0x8
#define WS_OP_PING 0x9
#define WS_OP_PONG 0xA

#define WS_CLOSE_PROTOCOL_ERROR 1002
#define WS_CLOSE_NO_STATUS 1005
#define WS_CLOSE_ABNORMAL 1006
#define WS_CLOSE_INVALID_DATA 1007
#define WS_CLOSE_TOO_BIG 1009
#define WS_CLOSE_INTERNAL 1011

/* The shared read buffer of a context. */
#define WSC_READ_BUF 65536
/* Bounds of the handshake: what we send (as libwebsockets' handshake
 * buffer did) and the response head we accept. */
#define WSC_MAX_REQUEST 16384
#define WSC_MAX_RESPONSE 16384
/* How long a link waits for the peer's close frame after sending its own. */
#define WSC_CLOSE_WAIT_MS 3000
/* The housekeeping tick (pings, close waits). */
#define WSC_TICK_MS 250
/* Messages written per turn while the socket takes them at once. */
#define WSC_WRITES_PER_TURN 64

/* ==== the receive side ==================================================== */

/* 1 if code may be sent in a close frame (RFC 6455 section 7.4): the
 * codes IANA has registered for use on the wire (1000-1003, 1007-1014),
 * those for libraries and frameworks (3000-3999) and private ones
 * (4000-4999). 1004-1006 and 1015 are reserved and never sent; below 1000,
 * 1016-2999 unassigned, and 5000 and up are not defined. */
int pb_ws_close_code_valid(unsigned code)
{
	return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
	       (code >= 3000 && code <= 4999);
}

/* Fail the connection: rx reads nothing more. */
static int rx_fail(struct pb_ws_rx *rx, int code, const char *reason, const char **why)
{
	rx->done = 1;
	*why = reason;
	return code;
}

/* One complete frame whose header checks passed. 0 or a close code. */
static int rx_frame(struct pb_ws_rx *rx, int fin, int op, const unsigned char *p, size_t n,
		    const struct pb_ws_rx_handler *h, void *arg, const char **why)
{
	int binary;

	switch (op) {
	case WS_OP_PING:
		h->ping(arg, p, n);
		return 0;
	case WS_OP_PONG:
		h->pong(arg);
		return 0;
	case WS_OP_CLOSE: {
		unsigned code;

		rx->done = 1;
		if (n == 0) {
			h->close(arg, WS_CLOSE_NO_STATUS, p, 0);
			return 0;
		}
		if (n == 1)
			return rx_fail(rx, WS_CLOSE_PROTOCOL_ERROR, "close frame of one byte", why);
		code = ((unsigned)p[0] << 8) | p[1];
		/* 1012-1014 were registered after RFC 6455: libwebsockets 4.1
		 * refuses them (1002), and so does this client, so that a
		 * session sees the same codes whichever kind of link it has
		 * (tests/e2e/test_close.c, raw c1012). */
		if (!pb_ws_close_code_valid(code) || (code >= 1012 && code <= 1014))
			return rx_fail(rx, WS_CLOSE_PROTOCOL_ERROR, "invalid close code", why);
		if (!pb_utf8_valid(p + 2, n - 2))
			return rx_fail(rx, WS_CLOSE_INVALID_DATA, "close reason not UTF-8", why);
		h->close(arg, (int)code, p + 2, n - 2);
		return 0;
	}
	default:
		break;
	}
	if (rx->drain)
		return 0;
	if (op != WS_OP_CONT && fin) {
		/* A whole message in one frame: handed over in place. */
		binary = op == WS_OP_BINARY;
		if (!binary && !pb_utf8_valid(p, n))
			return rx_fail(rx, WS_CLOSE_INVALID_DATA, "text message not UTF-8", why);
		h->message(arg, binary, p, n);
		return 0;
	}
	if (op != WS_OP_CONT)
		rx->msg_op = (uint8_t)op;
	if (pb_buf_append(&rx->msg, p, n))
		return rx_fail(rx, WS_CLOSE_INTERNAL, "out of memory", why);
	if (!fin)
		return 0;
	/* A text message must be UTF-8 as a whole (a fragment may end inside
	 * a character). */
	binary = rx->msg_op == WS_OP_BINARY;
	rx->msg_op = 0;
	if (!binary && !pb_utf8_valid(rx->msg.data, rx->msg.len))
		return rx_fail(rx, WS_CLOSE_INVALID_DATA, "text message not UTF-8", why);
	h->message(arg, binary, (const unsigned char *)rx->msg.data, rx->msg.len);
	pb_buf_free(&rx->msg);
	return 0;
}

/* Parse whole frames from p[0..n) until one is incomplete (rx->need says
 * how many bytes it needs from its start), the link stops the parser, or
 * the connection is done. Returns the bytes consumed; *code gets 0 or the
 * close code of a failure. */
static size_t rx_frames(struct pb_ws_rx *rx, const unsigned char *p, size_t n,
			const struct pb_ws_rx_handler *h, void *arg, int *code, const char **why)
{
	size_t off = 0;

	*code = 0;
	while (off < n && !rx->stop && !rx->done) {
		const unsigned char *f = p + off;
		size_t avail = n - off, hl = 2;
		uint64_t len;
		int fin, op;

		if (rx->skip) {
			size_t take = rx->skip < avail ? (size_t)rx->skip : avail;

			rx->skip -= take;
			off += take;
			continue;
		}
		if (avail < 2) {
			rx->need = 2;
			break;
		}
		fin = f[0] >> 7;
		op = f[0] & 0x0F;
		len = f[1] & 0x7F;
		if (f[0] & 0x70) {
			*code = rx_fail(rx, WS_CLOSE_PROTOCOL_ERROR, "reserved bits set", why);
			break;
		}
		if (f[1] & 0x80) {
			*code = rx_fail(rx, WS_CLOSE_PROTOCOL_ERROR, "masked frame from the server",
					why);
			break;
		}
		if (op >= 0x8) {
			if (op > WS_OP_PONG) {
				*code = rx_fail(rx, WS_CLOSE_PROTOCOL_ERROR, "unknown opcode", why);
				break;
			}
			if (!fin) {
				*code = rx_fail(rx, WS_CLOSE_PROTOCOL_ERROR, "fragmented control frame",
						why);
				break;
			}
			if (len > 125) {
				*code = rx_fail(rx, WS_CLOSE_PROTOCOL_ERROR, "control frame too long",
						why);
				break;
			}
		} else if (op > WS_OP_BINARY) {
			*code = rx_fail(rx, WS_CLOSE_PROTOCOL_ERROR, "unknown opcode", why);
			break;
		}
		if (len == 126)
			hl = 4;
		else if (len == 127)
			hl = 10;
		if (avail < hl) {
			rx->need = hl;
			break;
		}
		if (hl == 4) {
			len = ((uint64_t)f[2] << 8) | f[3];
		} else if (hl == 10) {
			len = 0;
			for (int i = 2; i < 10; i++)
				len = (len << 8) | f[i];
			if (len >> 63) {
				*code = rx_fail(rx, WS_CLOSE_PROTOCOL_ERROR, "frame length too large", why);
				break;
			}
		}
		if (op < 0x8 && rx->drain) {
			/* Closing: data is discarded unread. */
			off += hl;
			rx->skip = len;
			continue;
		}
		if (op == WS_OP_CONT && !rx->msg_op) {
			*code = rx_fail(rx, WS_CLOSE_PROTOCOL_ERROR, "continuation without a start", why);
			break;
		}
		if ((op == WS_OP_TEXT || op == WS_OP_BINARY) && rx->msg_op) {
			*code = rx_fail(rx, WS_CLOSE_PROTOCOL_ERROR, "expected a continuation frame",
					why);
			break;
		}
		if (op < 0x8 && len > rx->max_message_bytes - rx->msg.len) {
			/* The API's rule: a message over the limit ends the session with 1009. */
			*code = rx_fail(rx, WS_CLOSE_TOO_BIG, "message too big", why);
			break;
		}
		if (avail - hl < len) {
			rx->need = hl + (size_t)len;
			break;
		}
		off += hl + (size_t)len;
		*code = rx_frame(rx, fin, op, f + hl, (size_t)len, h, arg, why);
		if (*code)
			break;
	}
	return off;
}

/* Append data[0..len) to what rx keeps, first moving what is still
 * unparsed to the front. 0 or a pb_buf error. */
static int rx_keep(struct pb_ws_rx *rx, const unsigned char *data, size_t len)
{
	if (rx->at) {
		rx->part.len -= rx->at;
		memmove(rx->part.data, rx->part.data + rx->at, rx->part.len);
		rx->at = 0;
	}
	return pb_buf_append(&rx->part, data, len);
}

int pb_ws_rx_feed(struct pb_ws_rx *rx, const unsigned char *data, size_t len,
		  const struct pb_ws_rx_handler *h, void *arg, const char **why)
{
	int code = 0;
	size_t c;

	/* First whatever is left from before: top it up to one whole frame
	 * from data, parse, repeat. Parsing moves rx->at, never the bytes, so
	 * resuming after many stops costs no copying. */
	while (rx->part.len > rx->at && !rx->stop && !rx->done) {
		if (rx->part.len - rx->at < rx->need) {
			size_t take = rx->need - (rx->part.len - rx->at);

			if (!len)
				return 0;
			if (take > len)
				take = len;
			if (rx_keep(rx, data, take))
				return rx_fail(rx, WS_CLOSE_INTERNAL, "out of memory", why);
			data += take;
			len -= take;
			if (rx->part.len - rx->at < rx->need)
				return 0;
		}
		rx->need = 0;
		c = rx_frames(rx, (const unsigned char *)rx->part.data + rx->at,
			      rx->part.len - rx->at, h, arg, &code, why);
		if (code)
			return code;
		rx->at += c;
		if (rx->at == rx->part.len) {
			pb_buf_free(&rx->part);
			rx->at = 0;
		}
	}
	if (rx->done)
		return 0;
	if (len && rx->part.len == rx->at && !rx->stop) {
		rx->need = 0;
		c = rx_frames(rx, data, len, h, arg, &code, why);
		if (code)
			return code;
		data += c;
		len -= c;
	}
	if (len && !rx->done && rx_keep(rx, data, len))
		return rx_fail(rx, WS_CLOSE_INTERNAL, "out of memory", why);
	if (rx->stop)
		rx->need = 0;   /* what follows a stop may hold whole frames */
	return 0;
}

void pb_ws_rx_free(struct pb_ws_rx *rx)
{
	pb_buf_free(&rx->part);
	rx->at = 0;
	pb_buf_free(&rx->msg);
}

/* XOR n bytes of src with the mask into dst, eight bytes at a time. */
static void ws_mask(unsigned char *dst, const unsigned char *src, size_t n,
		    const unsigned char mask[4])
{
	unsigned char m8[8];
	uint64_t m, w;
	size_t i = 0;

	memcpy(m8, mask, 4);
	memcpy(m8 + 4, mask, 4);
	memcpy(&m, m8, 8);
	for (; i + 8 <= n; i += 8) {
		memcpy(&w, src + i, 8);
		w ^= m;
		memcpy(dst + i, &w, 8);
	}
	for (; i < n; i++)
		dst[i] = src[i] ^ mask[i & 3];
}

size_t pb_ws_frame_masked(unsigned char *out, int op, const unsigned char *data, size_t len,
			  const unsigned char mask[4])
{
	size_t hl;

	out[0] = (unsigned char)(0x80 | op);
	if (len < 126) {
		out[1] = (unsigned char)(0x80 | len);
		hl = 2;
	} else if (len < 65536) {
		out[1] = 0x80 | 126;
		out[2] = (unsigned char)(len >> 8);
		out[3] = (unsigned char)len;
		hl = 4;
	} else {
		out[1] = 0x80 | 127;
		for (int i = 0; i < 8; i++)
			out[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
		hl = 10;
	}
	memcpy(out + hl, mask, 4);
	ws_mask(out + hl + 4, data, len, mask);
	return hl + 4 + len;
}

/* ==== links =============================================================== */

enum wsc_state {
	WSC_RESOLVING,
	WSC_CONNECTING,
	WSC_REDIAL,             /* the handle closes, for the next address */
	WSC_HANDSHAKE,          /* request sent, reading the response head */
	WSC_OPEN,
	WSC_CLOSING,            /* our close frame is sent: waiting for the peer */
	WSC_DONE,               /* the handle is closing */
};

/* What only a dial needs; freed once the link is open. */
struct wsc_dial {
	uv_getaddrinfo_t gai;
	uv_connect_t conn;
	struct addrinfo *ai, *ai_next;  /* the resolved addresses, the next to try */
	struct addrinfo numeric;        /* a numeric host's one address */
	struct sockaddr_storage addr;
	struct pb_buf req;              /* the handshake request */
	struct pb_buf resp;             /* the response head so far */
	char accept[32];                /* the Sec-WebSocket-Accept expected */
	char *offer;                    /* offered subprotocols, or NULL */
	char host[256];
	char port[8];
	char why[160];                  /* a failure reason built here */
	const char *fail;               /* failure reported from the next turn */
};

struct pb_wsc_ctx {
	uv_loop_t *loop;
	uv_idle_t turn;                 /* deferred work of links on `pending` */
	uv_timer_t tick;                /* pings and close waits */
	struct pb_wsc *links;           /* every link not yet freed */
	struct pb_wsc *pending;         /* links with deferred work */
	size_t live;
	int handles;                    /* of turn and tick, not yet closed */
	int freeing;                    /* pb_wsc_ctx_free() was called */
	unsigned ping_secs;
	unsigned char rnd[256];         /* random bytes for masks */
	size_t rnd_pos;
	unsigned char rbuf[WSC_READ_BUF];
};

struct pb_wsc {
	enum pb_link_kind kind;         /* PB_LINK_OWN: first, see ws_client.h */
	struct pb_wsc_ctx *ctx;
	struct pb_wsc *next, *prev;     /* ctx->links */
	struct pb_wsc *pend_next;       /* ctx->pending */
	uv_tcp_t tcp;
	const struct pb_upstream_handler *h;
	void *arg;                      /* NULL once detached: report nothing more */
	struct wsc_dial *dial;
	struct pb_ws_rx rx;
	uint64_t last_rx_ms, ping_ms, close_ms;
	unsigned ping_secs;
	unsigned writes;                /* uv_write requests in flight */
	uint8_t state;                  /* enum wsc_state */
	uint8_t refs;                   /* the handle, a name resolution in flight */
	uint8_t pending;                /* on ctx->pending */
	uint8_t want_write;             /* the owner has something to write */
	uint8_t rx_again;               /* parse what rx kept, from the next turn */
	uint8_t paused;
	uint8_t ping_out;               /* a ping is unanswered */
	uint8_t close_after_writes;     /* close the socket once writes are done */
	uint8_t peer_code_set;
	uint8_t resolving;              /* a name resolution is in flight */
	int peer_code;
	size_t peer_reason_len;
	char peer_reason[124];
};

struct wsc_write {
	uv_write_t req;
	struct pb_wsc *link;
	size_t len;
	unsigned char data[];
};

static void wsc_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

/* n random bytes (masks, keys) from a pool refilled from GnuTLS. */
static void wsc_random(struct pb_wsc_ctx *ctx, unsigned char *out, size_t n)
{
	if (ctx->rnd_pos + n > sizeof(ctx->rnd)) {
		if (gnutls_rnd(GNUTLS_RND_NONCE, ctx->rnd, sizeof(ctx->rnd)) < 0) {
			/* Never expected; masks need not be secret, only varied. */
			for (size_t i = 0; i < sizeof(ctx->rnd); i++)
				ctx->rnd[i] = (unsigned char)(ctx->rnd[i] * 31u + i + uv_hrtime());
		}
		ctx->rnd_pos = 0;
	}
	memcpy(out, ctx->rnd + ctx->rnd_pos, n);
	ctx->rnd_pos += n;
}

/* Stop reporting to the owner. */
static void wsc_detach(struct pb_wsc *l)
{
	l->arg = NULL;
}

static void wsc_dial_free(struct pb_wsc *l)
{
	struct wsc_dial *d = l->dial;

	if (!d)
		return;
	if (d->ai)
		uv_freeaddrinfo(d->ai);
	pb_buf_free(&d->req);
	pb_buf_free(&d->resp);
	free(d->offer);
	free(d);
	l->dial = NULL;
}

/* Drop a reference; the last frees the link. */
static void wsc_unref(struct pb_wsc *l)
{
	struct pb_wsc_ctx *ctx = l->ctx;

	if (--l->refs)
		return;
	if (l->prev)
		l->prev->next = l->next;
	else
		ctx->links = l->next;
	if (l->next)
		l->next->prev = l->prev;
	if (l->pending) {
		struct pb_wsc **pp = &ctx->pending;

		while (*pp && *pp != l)
			pp = &(*pp)->pend_next;
		if (*pp)
			*pp = l->pend_next;
	}
	ctx->live--;
	wsc_dial_free(l);
	pb_ws_rx_free(&l->rx);
	free(l);
	if (ctx->freeing && !ctx->live && !ctx->handles)
		free(ctx);
}

static void wsc_closed_handle(uv_handle_t *hd)
{
	wsc_unref(hd->data);
}

/* Close the socket; the link frees itself once libuv lets go. Silent. */
static void wsc_finish(struct pb_wsc *l)
{
	int redial = l->state == WSC_REDIAL;

	wsc_detach(l);
	if (l->state == WSC_DONE)
		return;
	if (l->resolving)
		uv_cancel((uv_req_t *)&l->dial->gai);
	l->state = WSC_DONE;
	if (!redial)    /* else the handle is closing already */
		uv_close((uv_handle_t *)&l->tcp, wsc_closed_handle);
}

/* The dial failed: tell the owner, then close. */
static void wsc_fail_dial(struct pb_wsc *l, const char *why)
{
	void *arg = l->arg;

	pb_log_debug("upstream: ws dial failed: %s", why);
	wsc_detach(l);
	if (arg)
		l->h->failed(arg, PB_EUPSTREAM, why);
	wsc_finish(l);
}

/* The connection ended after opening: tell the owner (once). */
static void wsc_report_closed(struct pb_wsc *l, int code, const char *reason, size_t len)
{
	void *arg = l->arg;

	wsc_detach(l);
	if (arg)
		l->h->closed(arg, code, reason, len);
}

static void wsc_turn(uv_idle_t *t);

/* Run the link's deferred work from the next loop turn. */
static void wsc_defer(struct pb_wsc *l)
{
	if (l->pending || l->state == WSC_DONE)
		return;
	l->pending = 1;
	l->pend_next = l->ctx->pending;
	l->ctx->pending = l;
	uv_idle_start(&l->ctx->turn, wsc_turn);
}

static void wsc_write_done(uv_write_t *req, int status);

/* Queue a frame already built in w (w->len bytes); try writing it at once
 * when nothing is queued. 0, or -1 when the connection broke. */
static int wsc_send(struct pb_wsc *l, struct wsc_write *w)
{
	uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)w->len);
	int n;

	if (l->writes == 0) {
		n = uv_try_write((uv_stream_t *)&l->tcp, &b, 1);
		if (n == (int)w->len) {
			free(w);
			return 0;
		}
		if (n > 0) {
			b.base += n;
			b.len -= (size_t)n;
		} else if (n != UV_EAGAIN) {
			free(w);
			return -1;
		}
	}
	w->link = l;
	if (uv_write(&w->req, (uv_stream_t *)&l->tcp, &b, 1, wsc_write_done)) {
		free(w);
		return -1;
	}
	l->writes++;
	return 0;
}

/* A new write of a frame of payload len (header room included). */
static struct wsc_write *wsc_write_new(size_t len)
{
	return malloc(sizeof(struct wsc_write) + len + 14);
}

/* Send a control frame. -1 when the connection broke. */
static int wsc_send_control(struct pb_wsc *l, int op, const unsigned char *p, size_t n)
{
	struct wsc_write *w = wsc_write_new(n);
	unsigned char mask[4];

	if (!w)
		return -1;
	wsc_random(l->ctx, mask, 4);
	w->len = pb_ws_frame_masked(w->data, op, p, n, mask);
	return wsc_send(l, w);
}

/* The connection is gone or broken while open: 1006 (or the peer's code
 * if its close frame came), then close. */
static void wsc_lost(struct pb_wsc *l)
{
	if (l->peer_code_set)
		wsc_report_closed(l, l->peer_code, l->peer_reason, l->peer_reason_len);
	else
		wsc_report_closed(l, WS_CLOSE_ABNORMAL, "", 0);
	wsc_finish(l);
}

/* Send our close frame (code and reason), then wait for the peer's. */
static void wsc_start_close(struct pb_wsc *l, int code, const char *reason)
{
	unsigned char p[125];
	size_t rlen = strlen(reason);

	if (rlen > sizeof(p) - 2)
		rlen = sizeof(p) - 2;
	p[0] = (unsigned char)(code >> 8);
	p[1] = (unsigned char)code;
	memcpy(p + 2, reason, rlen);
	l->state = WSC_CLOSING;
	l->want_write = 0;
	l->rx.drain = 1;
	l->close_ms = uv_now(l->ctx->loop);
	if (wsc_send_control(l, WS_OP_CLOSE, p, 2 + rlen))
		wsc_finish(l);
}

/* Write outbound messages while the owner has some and the socket takes
 * them at once; one queued write at most. */
static void wsc_write_more(struct pb_wsc *l)
{
	for (int i = 0; i < WSC_WRITES_PER_TURN; i++) {
		struct wsc_write *w;
		struct pb_msg *m;
		unsigned char mask[4];

		if (l->state != WSC_OPEN || !l->want_write || l->writes || !l->arg)
			return;
		m = l->h->next_out(l->arg);
		if (!m) {
			l->want_write = 0;
			return;
		}
		if (l->state != WSC_OPEN) {
			/* Closed from inside next_out(): the message is not sent. */
			pb_msg_unref(m);
			return;
		}
		w = wsc_write_new(m->len);
		if (!w) {
			pb_msg_unref(m);
			wsc_lost(l);
			return;
		}
		wsc_random(l->ctx, mask, 4);
		w->len = pb_ws_frame_masked(w->data, m->type == PB_MSG_BINARY ? WS_OP_BINARY :
					    WS_OP_TEXT, m->data, m->len, mask);
		pb_msg_unref(m);
		if (wsc_send(l, w)) {
			wsc_lost(l);
			return;
		}
	}
	if (l->want_write && !l->writes)
		wsc_defer(l);
}

static void wsc_write_done(uv_write_t *req, int status)
{
	struct wsc_write *w = (struct wsc_write *)req;
	struct pb_wsc *l = w->link;

	free(w);
	l->writes--;
	if (l->state == WSC_DONE)
		return;
	if (status < 0) {
		if (l->state == WSC_OPEN)
			wsc_lost(l);
		else if (l->state == WSC_HANDSHAKE)
			wsc_fail_dial(l, "connection closed during the handshake");
		else
			wsc_finish(l);
		return;
	}
	if (l->writes == 0 && l->close_after_writes) {
		wsc_finish(l);
		return;
	}
	if (l->writes == 0)
		wsc_write_more(l);
}

/* ---- receive events -------------------------------------------------------- */

static void wsc_on_message(void *arg, int binary, const unsigned char *data, size_t len)
{
	struct pb_wsc *l = arg;
	struct pb_msg *m;

	if (!l->arg)
		return;
	m = pb_msg_new(binary ? PB_MSG_BINARY : PB_MSG_TEXT, data, len);
	if (!m) {
		wsc_report_closed(l, WS_CLOSE_INTERNAL, "out of memory", 13);
		wsc_start_close(l, WS_CLOSE_INTERNAL, "out of memory");
		return;
	}
	l->h->message(l->arg, m);
}

static void wsc_on_ping(void *arg, const unsigned char *data, size_t len)
{
	struct pb_wsc *l = arg;

	if (l->state == WSC_OPEN && wsc_send_control(l, WS_OP_PONG, data, len))
		l->close_after_writes = 1;      /* broken: wsc_read sees it end */
}

static void wsc_on_pong(void *arg)
{
	struct pb_wsc *l = arg;

	l->ping_out = 0;
}

static void wsc_on_close(void *arg, int code, const unsigned char *reason, size_t len)
{
	struct pb_wsc *l = arg;
	unsigned char p[125];

	if (l->state != WSC_OPEN) {
		/* The answer to our own close: done. */
		wsc_finish(l);
		return;
	}
	/* Answer with the same code and reason (none for an empty frame),
	 * report, and close the socket once the answer is written. */
	l->state = WSC_CLOSING;
	l->want_write = 0;
	l->peer_code = code;
	l->peer_code_set = 1;
	l->peer_reason_len = len < sizeof(l->peer_reason) ? len : sizeof(l->peer_reason);
	memcpy(l->peer_reason, reason, l->peer_reason_len);
	if (code != WS_CLOSE_NO_STATUS) {
		p[0] = (unsigned char)(code >> 8);
		p[1] = (unsigned char)code;
		memcpy(p + 2, reason, len);
	}
	wsc_report_closed(l, code, l->peer_reason, l->peer_reason_len);
	if (wsc_send_control(l, WS_OP_CLOSE, p, code == WS_CLOSE_NO_STATUS ? 0 : 2 + len) ||
	    l->writes == 0)
		wsc_finish(l);
	else
		l->close_after_writes = 1;
}

static const struct pb_ws_rx_handler wsc_rx_handler = {
	.message = wsc_on_message,
	.ping = wsc_on_ping,
	.pong = wsc_on_pong,
	.close = wsc_on_close,
};

/* Parse received bytes (NULL, 0: what the link kept) and act on failures. */
static void wsc_feed(struct pb_wsc *l, const unsigned char *p, size_t n)
{
	const char *why = NULL;
	int code = pb_ws_rx_feed(&l->rx, p, n, &wsc_rx_handler, l, &why);

	if (!code)
		return;
	pb_log_debug("upstream: ws link fails with %d: %s", code, why);
	if (l->state == WSC_OPEN) {
		wsc_report_closed(l, code, why, strlen(why));
		wsc_start_close(l, code, why);
	} else if (l->state == WSC_CLOSING) {
		wsc_finish(l);
	}
}

/* ---- the handshake --------------------------------------------------------- */

/* 1 if the comma-separated list has the token tok (case-insensitively). */
static int has_token(const char *list, size_t len, const char *tok)
{
	size_t tl = strlen(tok), i = 0;

	while (i < len) {
		size_t s, e;

		while (i < len && (list[i] == ' ' || list[i] == '\t' || list[i] == ','))
			i++;
		s = i;
		while (i < len && list[i] != ',')
			i++;
		e = i;
		while (e > s && (list[e - 1] == ' ' || list[e - 1] == '\t'))
			e--;
		if (e - s == tl && strncasecmp(list + s, tok, tl) == 0)
			return 1;
	}
	return 0;
}

/* 1 if the comma-separated offer has exactly p[0..n). */
static int offered(const char *offer, const char *p, size_t n)
{
	while (offer && *offer) {
		size_t s = strspn(offer, " \t,"), e;

		offer += s;
		e = strcspn(offer, ",");
		while (e && (offer[e - 1] == ' ' || offer[e - 1] == '\t'))
			e--;
		if (e && e == n && memcmp(offer, p, n) == 0)
			return 1;
		offer += strcspn(offer, ",");
	}
	return 0;
}

/* Check the response head h[0..n) (up to and without the blank line).
 * NULL if good (the subprotocol, possibly empty, in proto), else why. */
static const char *wsc_check_response(struct pb_wsc *l, const char *h, size_t n, char *proto,
				      size_t protolen)
{
	struct wsc_dial *d = l->dial;
	const char *line = h, *end = h + n;
	int status, upgrade = 0, connection = 0, accept = 0;

	proto[0] = '\0';
	if (n < 12 || memcmp(h, "HTTP/1.", 7) != 0 || h[8] != ' ' || !isdigit((unsigned char)h[9]) ||
	    !isdigit((unsigned char)h[10]) || !isdigit((unsigned char)h[11]))
		return "handshake: not an HTTP response";
	status = (h[9] - '0') * 100 + (h[10] - '0') * 10 + (h[11] - '0');
	if (status != 101) {
		snprintf(d->why, sizeof(d->why), "handshake: HTTP %d instead of 101", status);
		return d->why;
	}
	while (line < end) {
		const char *eol = memchr(line, '\r', (size_t)(end - line)), *colon, *v, *ve;

		if (!eol)
			eol = end;
		if (line != h) {
			colon = memchr(line, ':', (size_t)(eol - line));
			if (!colon)
				return "handshake: malformed response header";
			v = colon + 1;
			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			ve = eol;
			while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
				ve--;
#define IS(name) ((size_t)(colon - line) == sizeof(name) - 1 && \
		  strncasecmp(line, name, sizeof(name) - 1) == 0)
			if (IS("upgrade")) {
				upgrade = ve - v == 9 && strncasecmp(v, "websocket", 9) == 0;
			} else if (IS("connection")) {
				connection = has_token(v, (size_t)(ve - v), "upgrade");
			} else if (IS("sec-websocket-accept")) {
				accept = (size_t)(ve - v) == strlen(d->accept) &&
					 memcmp(v, d->accept, (size_t)(ve - v)) == 0;
			} else if (IS("sec-websocket-protocol")) {
				if (!offered(d->offer, v, (size_t)(ve - v)) ||
				    (size_t)(ve - v) >= protolen)
					return "handshake: a subprotocol that was not offered";
				memcpy(proto, v, (size_t)(ve - v));
				proto[ve - v] = '\0';
			} else if (IS("sec-websocket-extensions")) {
				if (ve > v)
					return "handshake: an extension that was not offered";
			}
#undef IS
		}
		line = eol + 2;
	}
	if (!upgrade)
		return "handshake: no Upgrade: websocket";
	if (!connection)
		return "handshake: no Connection: Upgrade";
	if (!accept)
		return "handshake: wrong Sec-WebSocket-Accept";
	return NULL;
}

/* Bytes read during the handshake. */
static void wsc_handshake_read(struct pb_wsc *l, const unsigned char *p, size_t n)
{
	struct wsc_dial *d = l->dial;
	char proto[128];
	const char *why, *head, *eoh;
	size_t hlen, rest_at;
	void *arg;

	if (pb_buf_append(&d->resp, p, n)) {
		wsc_fail_dial(l, "out of memory");
		return;
	}
	head = d->resp.data;
	eoh = memmem(head, d->resp.len, "\r\n\r\n", 4);
	if (!eoh) {
		if (d->resp.len > WSC_MAX_RESPONSE)
			wsc_fail_dial(l, "handshake: response head too large");
		return;
	}
	hlen = (size_t)(eoh - head);
	if (hlen > WSC_MAX_RESPONSE) {
		wsc_fail_dial(l, "handshake: response head too large");
		return;
	}
	why = wsc_check_response(l, head, hlen, proto, sizeof(proto));
	if (why) {
		wsc_fail_dial(l, why);
		return;
	}
	/* Open. The bytes after the head are frames: they go to the parser
	 * (in the link's own buffer, as the dial state goes now). */
	rest_at = hlen + 4;
	if (rest_at < d->resp.len &&
	    pb_buf_append(&l->rx.part, d->resp.data + rest_at, d->resp.len - rest_at)) {
		wsc_fail_dial(l, "out of memory");
		return;
	}
	wsc_dial_free(l);
	l->state = WSC_OPEN;
	l->last_rx_ms = uv_now(l->ctx->loop);
	arg = l->arg;
	if (arg)
		l->h->opened(arg, proto[0] ? proto : NULL);
	if (l->state == WSC_OPEN && l->rx.part.len > l->rx.at)
		wsc_feed(l, NULL, 0);
}

/* Build the handshake request. 0, PB_ENOMEM or PB_EBADREQ. */
static int wsc_build_request(struct pb_wsc *l, const struct pb_upstream_dial *dl)
{
	struct wsc_dial *d = l->dial;
	const struct pb_route *r = dl->route;
	const struct pb_headers *fh = dl->headers;
	unsigned char key[16], digest[20];
	struct pb_buf k, a;
	char *path = NULL;
	int rc;

	wsc_random(l->ctx, key, sizeof(key));
	pb_buf_init(&k, 0);
	pb_buf_init(&a, 0);
	rc = pb_base64_encode(&k, key, sizeof(key));
	rc = rc ? rc : pb_buf_puts(&k, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
	if (!rc && gnutls_hash_fast(GNUTLS_DIG_SHA1, k.data, k.len, digest) < 0)
		rc = PB_ENOMEM;
	rc = rc ? rc : pb_base64_encode(&a, digest, sizeof(digest));
	if (!rc && a.len < sizeof(d->accept))
		memcpy(d->accept, a.data, a.len + 1);
	pb_buf_free(&a);
	if (rc) {
		pb_buf_free(&k);
		return rc;
	}
	k.len -= 36;    /* the key alone */
	if (dl->eio) {
		path = pb_upstream_eio_path(r->path, dl->eio);
		if (!path) {
			pb_buf_free(&k);
			return PB_ENOMEM;
		}
	}
	rc = pb_buf_printf(&d->req, "GET %s HTTP/1.1\r\nHost: %s%s%s:%d\r\n"
			   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
			   "Sec-WebSocket-Key: %.*s\r\nSec-WebSocket-Version: 13\r\n",
			   path ? path : r->path, strchr(r->host, ':') ? "[" : "", r->host,
			   strchr(r->host, ':') ? "]" : "", r->port, (int)k.len, k.data);
	free(path);
	pb_buf_free(&k);
	if (!rc && dl->origin)
		rc = pb_buf_printf(&d->req, "Origin: %s\r\n", dl->origin);
	if (!rc && dl->protocols && dl->protocols[0])
		rc = pb_buf_printf(&d->req, "Sec-WebSocket-Protocol: %s\r\n", dl->protocols);
	if (!rc && fh && fh->n > PB_MAX_HEADERS)
		return PB_EBADREQ;
	for (size_t i = 0; !rc && fh && i < fh->n; i++) {
		size_t nlen = strlen(fh->name[i]), vlen = strlen(fh->value[i]), at = d->req.len;

		if (!pb_header_name_valid(fh->name[i], nlen) ||
		    !pb_header_value_valid(fh->value[i], vlen))
			return PB_EBADREQ;
		rc = pb_buf_printf(&d->req, "%s: %s\r\n", fh->name[i], fh->value[i]);
		for (size_t j = at; !rc && j < at + nlen; j++)
			d->req.data[j] = (char)tolower((unsigned char)d->req.data[j]);
	}
	rc = rc ? rc : pb_buf_puts(&d->req, "\r\n");
	if (rc)
		return rc;
	if (d->req.len > WSC_MAX_REQUEST) {
		pb_log_info("upstream: forwarded headers do not fit the handshake (%zu bytes)",
			    d->req.len);
		d->fail = "forwarded headers do not fit the handshake";
	}
	if (dl->protocols && dl->protocols[0]) {
		d->offer = strdup(dl->protocols);
		if (!d->offer)
			return PB_ENOMEM;
	}
	return 0;
}

/* ---- connecting ------------------------------------------------------------ */

static void wsc_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
	struct pb_wsc *l = hd->data;

	(void)suggested;
	buf->base = (char *)l->ctx->rbuf;
	buf->len = sizeof(l->ctx->rbuf);
}

static void wsc_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct pb_wsc *l = s->data;
	const unsigned char *p = (const unsigned char *)buf->base;

	if (n == 0 || l->state == WSC_DONE)
		return;
	if (n < 0) {
		if (l->state == WSC_HANDSHAKE)
			wsc_fail_dial(l, "connection closed during the handshake");
		else if (l->state == WSC_OPEN)
			wsc_lost(l);
		else
			wsc_finish(l);
		return;
	}
	l->last_rx_ms = uv_now(l->ctx->loop);
	l->ping_out = 0;
	if (l->state == WSC_HANDSHAKE)
		wsc_handshake_read(l, p, (size_t)n);
	else if (l->state == WSC_OPEN || l->state == WSC_CLOSING)
		wsc_feed(l, p, (size_t)n);
}

static void wsc_connect_next(struct pb_wsc *l);

/* The failed connection's handle is closed: a new one for the next address. */
static void wsc_redial_closed(uv_handle_t *hd)
{
	struct pb_wsc *l = hd->data;

	if (l->state == WSC_DONE) {
		wsc_unref(l);   /* abandoned meanwhile */
		return;
	}
	uv_tcp_init(l->ctx->loop, &l->tcp);
	l->tcp.data = l;
	wsc_connect_next(l);
}

static void wsc_connected(uv_connect_t *req, int status)
{
	struct pb_wsc *l = req->data;
	struct wsc_dial *d = l->dial;
	struct wsc_write *w;

	if (l->state != WSC_CONNECTING)
		return;         /* abandoned */
	if (status < 0) {
		if (d->ai_next) {
			/* Another address of the name, on a fresh handle. */
			l->state = WSC_REDIAL;
			uv_close((uv_handle_t *)&l->tcp, wsc_redial_closed);
			return;
		}
		snprintf(d->why, sizeof(d->why), "connect to %.100s:%s: %s", d->host, d->port,
			 uv_strerror(status));
		wsc_fail_dial(l, d->why);
		return;
	}
	uv_tcp_nodelay(&l->tcp, 1);
	l->state = WSC_HANDSHAKE;
	w = wsc_write_new(d->req.len);
	if (!w) {
		wsc_fail_dial(l, "out of memory");
		return;
	}
	memcpy(w->data, d->req.data, d->req.len);
	w->len = d->req.len;
	if (uv_read_start((uv_stream_t *)&l->tcp, wsc_alloc, wsc_read)) {
		free(w);
		wsc_fail_dial(l, "connection closed during the handshake");
		return;
	}
	if (wsc_send(l, w))
		wsc_fail_dial(l, "connection closed during the handshake");
}

/* Start connecting to the next resolved address. 0 or a libuv error. */
static int wsc_connect_start(struct pb_wsc *l)
{
	struct wsc_dial *d = l->dial;
	struct addrinfo *ai = d->ai_next;

	d->ai_next = ai->ai_next;
	l->state = WSC_CONNECTING;
	d->conn.data = l;
	return uv_tcp_connect(&d->conn, &l->tcp, ai->ai_addr, wsc_connected);
}

/* Connect to the next resolved address, or fail the dial. */
static void wsc_connect_next(struct pb_wsc *l)
{
	struct wsc_dial *d = l->dial;
	int r = wsc_connect_start(l);

	if (r) {
		snprintf(d->why, sizeof(d->why), "connect to %.100s:%s: %s", d->host, d->port,
			 uv_strerror(r));
		wsc_fail_dial(l, d->why);
	}
}

static void wsc_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct pb_wsc *l = req->data;
	struct wsc_dial *d = l->dial;

	l->resolving = 0;
	if (l->state != WSC_RESOLVING) {
		uv_freeaddrinfo(res);
		wsc_unref(l);
		return;
	}
	d->ai = res;
	d->ai_next = res;
	if (status < 0 || !res) {
		snprintf(d->why, sizeof(d->why), "resolving %.100s: %s", d->host, uv_strerror(status));
		wsc_fail_dial(l, d->why);
	} else {
		wsc_connect_next(l);
	}
	wsc_unref(l);
}

/* ---- the context's turn and tick ------------------------------------------- */

/* Deferred work: writes, parsing resumed after a pause. */
static void wsc_turn(uv_idle_t *t)
{
	struct pb_wsc_ctx *ctx = t->data;
	struct pb_wsc *list = ctx->pending;

	ctx->pending = NULL;
	uv_idle_stop(t);
	while (list) {
		struct pb_wsc *l = list;

		list = l->pend_next;
		l->pending = 0;
		l->refs++;      /* kept across the callbacks below */
		if (l->state == WSC_RESOLVING && l->dial && l->dial->fail)
			wsc_fail_dial(l, l->dial->fail);
		if (l->rx_again && l->state == WSC_OPEN && !l->paused) {
			/* After a pause: what the parser kept first, then read
			 * again (unless that paused the link anew), so that what
			 * it keeps never grows past one read. */
			l->rx_again = 0;
			wsc_feed(l, NULL, 0);
			if (l->state == WSC_OPEN && !l->paused)
				uv_read_start((uv_stream_t *)&l->tcp, wsc_alloc, wsc_read);
		}
		wsc_write_more(l);
		wsc_unref(l);
	}
}

/* Pings and close waits, every WSC_TICK_MS. */
static void wsc_tick(uv_timer_t *t)
{
	struct pb_wsc_ctx *ctx = t->data;
	uint64_t now = uv_now(ctx->loop);
	struct pb_wsc *l, *next;

	for (l = ctx->links; l; l = next) {
		next = l->next;
		if (l->state == WSC_CLOSING && now - l->close_ms >= WSC_CLOSE_WAIT_MS) {
			wsc_finish(l);
			continue;
		}
		if (l->state != WSC_OPEN || !l->ping_secs || l->paused)
			continue;
		if (l->ping_out && now - l->ping_ms >= (uint64_t)l->ping_secs * 1000) {
			pb_log_debug("upstream: no answer to a ping: closing");
			wsc_lost(l);
		} else if (!l->ping_out && now - l->last_rx_ms >= (uint64_t)l->ping_secs * 1000) {
			l->ping_out = 1;
			l->ping_ms = now;
			if (wsc_send_control(l, WS_OP_PING, NULL, 0))
				wsc_lost(l);
		}
	}
}

struct pb_wsc_ctx *pb_wsc_ctx_new(uv_loop_t *loop)
{
	struct pb_wsc_ctx *ctx = calloc(1, sizeof(*ctx));

	if (!ctx)
		return NULL;
	ctx->loop = loop;
	ctx->rnd_pos = sizeof(ctx->rnd);
	uv_idle_init(loop, &ctx->turn);
	ctx->turn.data = ctx;
	uv_timer_init(loop, &ctx->tick);
	ctx->tick.data = ctx;
	uv_unref((uv_handle_t *)&ctx->tick);
	uv_timer_start(&ctx->tick, wsc_tick, WSC_TICK_MS, WSC_TICK_MS);
	ctx->handles = 2;
	return ctx;
}

/* The context goes once its handles and every link are gone. */
static void wsc_ctx_closed(uv_handle_t *hd)
{
	struct pb_wsc_ctx *ctx = hd->data;

	if (--ctx->handles == 0 && !ctx->live)
		free(ctx);
}

void pb_wsc_ctx_free(struct pb_wsc_ctx *ctx)
{
	if (!ctx)
		return;
	ctx->freeing = 1;
	for (struct pb_wsc *l = ctx->links; l; l = l->next)
		wsc_finish(l);
	uv_close((uv_handle_t *)&ctx->turn, wsc_ctx_closed);
	uv_close((uv_handle_t *)&ctx->tick, wsc_ctx_closed);
}

void pb_wsc_ctx_set_ping(struct pb_wsc_ctx *ctx, unsigned secs)
{
	ctx->ping_secs = secs;
}

size_t pb_wsc_ctx_live(const struct pb_wsc_ctx *ctx)
{
	return ctx->live;
}

/* ---- the link operations ---------------------------------------------------- */

struct pb_wsc *pb_wsc_dial(struct pb_wsc_ctx *ctx, const struct pb_upstream_dial *dl,
			   const struct pb_upstream_handler *h, void *arg, int *err)
{
	struct pb_wsc *l = calloc(1, sizeof(*l));
	struct addrinfo hints;
	struct wsc_dial *d;
	int r;

	if (!l || !(l->dial = d = calloc(1, sizeof(*d)))) {
		free(l);
		*err = PB_ENOMEM;
		return NULL;
	}
	l->kind = PB_LINK_OWN;
	l->ctx = ctx;
	l->h = h;
	l->arg = arg;
	l->ping_secs = ctx->ping_secs;
	l->rx.max_message_bytes = dl->max_message_bytes;
	pb_buf_init(&d->req, 0);
	pb_buf_init(&d->resp, 0);
	snprintf(d->host, sizeof(d->host), "%s", dl->route->host);
	snprintf(d->port, sizeof(d->port), "%d", dl->route->port);
	*err = wsc_build_request(l, dl);
	if (*err) {
		wsc_dial_free(l);
		free(l);
		return NULL;
	}
	uv_tcp_init(ctx->loop, &l->tcp);
	l->tcp.data = l;
	l->refs = 1;
	l->next = ctx->links;
	if (l->next)
		l->next->prev = l;
	ctx->links = l;
	ctx->live++;
	l->state = WSC_RESOLVING;
	if (d->fail) {
		/* Reported from the next turn, never from inside the dial. */
		wsc_defer(l);
		return l;
	}
	if (!uv_ip4_addr(d->host, dl->route->port, (struct sockaddr_in *)&d->addr) ||
	    !uv_ip6_addr(d->host, dl->route->port, (struct sockaddr_in6 *)&d->addr)) {
		/* A numeric address: no resolver thread. */
		d->numeric.ai_addr = (struct sockaddr *)&d->addr;
		d->ai_next = &d->numeric;
		if (wsc_connect_start(l)) {
			wsc_finish(l);
			*err = PB_EUPSTREAM;
			return NULL;
		}
		return l;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	d->gai.data = l;
	r = uv_getaddrinfo(ctx->loop, &d->gai, wsc_resolved, d->host, d->port, &hints);
	if (r) {
		wsc_finish(l);
		*err = PB_EUPSTREAM;
		return NULL;
	}
	l->resolving = 1;
	l->refs++;
	return l;
}

void pb_wsc_want_write(struct pb_wsc *l)
{
	if (l->state != WSC_OPEN)
		return;
	l->want_write = 1;
	if (!l->writes)
		wsc_defer(l);
}

int pb_wsc_written(const struct pb_wsc *l)
{
	return l->writes == 0;  /* no frame waits in libuv's write queue */
}

void pb_wsc_pause(struct pb_wsc *l, int paused)
{
	if (l->state != WSC_OPEN || l->paused == !!paused)
		return;
	l->paused = (uint8_t)!!paused;
	l->rx.stop = l->paused;
	if (paused) {
		uv_read_stop((uv_stream_t *)&l->tcp);
		return;
	}
	l->last_rx_ms = uv_now(l->ctx->loop);
	if (l->rx.part.len > l->rx.at) {
		/* Parse what was kept from the next turn; read after that. */
		l->rx_again = 1;
		wsc_defer(l);
	} else {
		uv_read_start((uv_stream_t *)&l->tcp, wsc_alloc, wsc_read);
	}
}

void pb_wsc_close(struct pb_wsc *l, int code, const char *reason)
{
	wsc_detach(l);
	if (l->state == WSC_OPEN)
		wsc_start_close(l, code ? code : 1000, reason ? reason : "");
	else if (l->state != WSC_CLOSING)
		wsc_finish(l);
}
