/*
 * upstream.c: client WebSockets to the configured routes (see upstream.h).
 * Plain ws:// routes without `deflate` go to pollbridge's own client
 * (ws_client.c: faster, and no receive buffer per idle link); wss:// and
 * `deflate` routes run on libwebsockets over the daemon's own libuv loop,
 * here. Every link operation dispatches on the link's first member (enum
 * pb_link_kind). This is the only file that includes <libwebsockets.h>.
 *
 * Lifetime: a link is allocated by pb_upstream_dial() and handed to
 * libwebsockets as the connection's user data; it is freed only in
 * LWS_CALLBACK_WSI_DESTROY, when libwebsockets is done with the
 * connection. The owner may detach earlier (pb_upstream_close), after
 * which the link keeps living silently until then.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>

#include "buf.h"
#include "codec.h"
#include "error.h"
#include "log.h"
#include "upstream.h"
#include "ws_client.h"

_Static_assert(LWS_PRE <= PB_MSG_HEADROOM, "pb_msg headroom too small for LWS_PRE");

/* The close opcode of lws_write(): libwebsockets 4.1 keeps it out of its
 * public enum (between CONTINUATION and PING) but accepts it. */
#define PB_LWS_WRITE_CLOSE ((enum lws_write_protocol)4)

/* The buffer libwebsockets builds a handshake in (its default is 4096).
 * Forwarded headers (cookies above all) need room. It is one per loop,
 * shared by every link. */
#define PB_LWS_SERV_BUF 16384

/* The receive buffer of each link (the protocol's rx_buffer_size):
 * libwebsockets 4.1 mallocs it per connection when the upgrade completes
 * and keeps it until the link closes, so it is paid by every idle session
 * (4 KiB of the RSS of a held poll). It also bounds what one read() takes
 * from the upstream socket: at 512 bytes the peer benchmark delivered a
 * third of what it does at 4096 to 100 clients (more system calls per
 * message), so it stays at 4096. A frame larger than this arrives in
 * pieces, which up_receive() reassembles. */
#define PB_LWS_RX_BUFFER 4096

/* libwebsockets' own deadlines for the TCP connect, the TLS handshake and
 * the HTTP upgrade (its default is 5 s for the upgrade, 20 s to connect).
 * The session core's connect timer (--connect-timeout, at most 600 s) is
 * the only deadline a dial has: these lie beyond any value it can take,
 * and the core closes the link when its timer fires. */
#define PB_LWS_DIAL_TIMEOUT_SECS 630
_Static_assert(PB_LWS_DIAL_TIMEOUT_SECS > 600, "lws dial timeouts must outlast --connect-timeout");

/* Close codes of our own making, and their reasons (sent to the upstream
 * and reported to the owner alike). */
#define PB_CLOSE_PROTOCOL_ERROR 1002
#define PB_CLOSE_NO_STATUS 1005
#define PB_CLOSE_ABNORMAL 1006
#define PB_CLOSE_INVALID_DATA 1007

struct pb_upstream_ctx {
	struct lws_context *lws;
	struct pb_wsc_ctx *own;         /* the links of ws:// routes */
	uv_loop_t *loop;
	size_t live;            /* links not yet destroyed by libwebsockets */
	lws_retry_bo_t keepalive;       /* ping policy of every link (lws keeps a pointer) */
};

struct pb_upstream {
	enum pb_link_kind kind;         /* PB_LINK_LWS: first, see ws_client.h */
	struct pb_upstream_ctx *ctx;
	struct lws *wsi;
	const struct pb_upstream_handler *h;
	void *arg;              /* NULL once detached: report nothing more */
	size_t max_message_bytes;
	int in_dial;            /* inside lws_client_connect_via_info() */
	int failed_in_dial;
	int destroyed_in_dial;
	int established;
	int close_code;         /* ours to send, once the owner closed */
	int close_sent;
	char close_reason[64];  /* at most 123 bytes fit a close frame */
	int peer_code;          /* from the peer's close frame, 0: none */
	char peer_reason[124];
	size_t peer_reason_len;
	char protocol[128];     /* the subprotocol the upstream chose */
	struct pb_buf rx;       /* a fragmented message being reassembled */
	int rx_binary;
	int deflate;            /* offer permessage-deflate (the route's `deflate`) */
	/* The last message written on a deflate link: libwebsockets compresses
	 * a large one over several POLLOUTs, reading from the buffer given to
	 * lws_write(), so it lives until the next WRITEABLE. */
	struct pb_msg *tx_hold;
	/* Forwarded request headers, "name:\0value\0" each (name lowercased,
	 * as lws_add_http_header_by_name() wants it), until the handshake
	 * is done. */
	struct pb_buf hs;
	char *path;             /* the dialled path when it differs from the
				   route's (EIO=), else NULL */
};

/* Stop reporting to the owner. */
static void up_detach(struct pb_upstream *up)
{
	up->arg = NULL;
}

/* The dial failed: tell the owner, or note it while still inside
 * pb_upstream_dial() (which then reports it). */
static void up_fail(struct pb_upstream *up, const char *why)
{
	if (up->in_dial)
		up->failed_in_dial = 1;
	else if (up->arg)
		up->h->failed(up->arg, PB_EUPSTREAM, why);
	up_detach(up);
}

/* Copy the forwarded headers into the link. 0, PB_EBADREQ or PB_ENOMEM. */
static int up_copy_headers(struct pb_upstream *up, const struct pb_headers *fh)
{
	if (!fh)
		return 0;
	if (fh->n > PB_MAX_HEADERS)
		return PB_EBADREQ;
	for (size_t i = 0; i < fh->n; i++) {
		size_t nlen = strlen(fh->name[i]), vlen = strlen(fh->value[i]);
		size_t at = up->hs.len;
		int r;

		if (!pb_header_name_valid(fh->name[i], nlen) ||
		    !pb_header_value_valid(fh->value[i], vlen))
			return PB_EBADREQ;
		r = pb_buf_append(&up->hs, fh->name[i], nlen);
		r = r ? r : pb_buf_append(&up->hs, ":", 2);
		r = r ? r : pb_buf_append(&up->hs, fh->value[i], vlen + 1);
		if (r)
			return r;
		for (size_t k = at; k < at + nlen; k++)
			up->hs.data[k] = (char)tolower((unsigned char)up->hs.data[k]);
	}
	return 0;
}

/* Write the forwarded headers into the handshake being built at *in (len
 * bytes of room). -1 fails the dial. */
static int up_append_headers(struct pb_upstream *up, struct lws *wsi, void *in, size_t len)
{
	unsigned char **p = in, *end = *p + len;
	const char *h = up->hs.data, *hend = h + up->hs.len;

	while (h && h < hend) {
		const char *value = h + strlen(h) + 1;
		size_t vlen = strlen(value);

		if (lws_add_http_header_by_name(wsi, (const unsigned char *)h,
						(const unsigned char *)value, (int)vlen, p, end)) {
			pb_log_info("upstream: forwarded headers do not fit the handshake "
				    "(%zu bytes)", up->hs.len);
			up_fail(up, "forwarded headers do not fit the handshake");
			return -1;
		}
		h = value + vlen + 1;
	}
	return 0;
}

/* Fail the connection: close it with code and why (a static string) on
 * the wire, and report the same to the owner. Returns -1, for
 * libwebsockets to close the connection. */
static int up_fail_ws(struct pb_upstream *up, struct lws *wsi, int code, const char *why)
{
	size_t n = strlen(why);

	lws_close_reason(wsi, (enum lws_close_status)code, (unsigned char *)why, n);
	if (up->arg)
		up->h->closed(up->arg, code, why, n);
	up_detach(up);
	return -1;
}

/* Fail the connection from LWS_CALLBACK_CLIENT_RECEIVE: report code and
 * why (a static string) to the owner now, and send the close frame from
 * the next WRITEABLE (as pb_upstream_close does). Returns 0: told -1 from
 * RECEIVE in the middle of a frame larger than PB_LWS_RX_BUFFER,
 * libwebsockets 4.1.6 goes on storing the rest of the bytes it has
 * already read into the connection's receive buffer and writes past its
 * end (valgrind: invalid write, then a crash; tests/e2e/test_close.c,
 * "big: 12000 bytes"). up_receive() drops whatever still arrives. */
static int up_fail_rx(struct pb_upstream *up, struct lws *wsi, int code, const char *why)
{
	if (up->arg)
		up->h->closed(up->arg, code, why, strlen(why));
	up_detach(up);
	up->close_code = code;
	snprintf(up->close_reason, sizeof(up->close_reason), "%s", why);
	pb_buf_free(&up->rx);
	lws_callback_on_writable(wsi);
	return 0;
}

/* The peer's close frame (payload in[0..len)): note its code and reason
 * for the owner, or fail the connection if the frame is not valid. 0 lets
 * libwebsockets answer it with the same payload, -1 closes. */
static int up_peer_close(struct pb_upstream *up, struct lws *wsi, const unsigned char *in,
			 size_t len)
{
	unsigned code;

	if (len == 0) {
		/* No code: reported as 1005, as browsers do. */
		up->peer_code = PB_CLOSE_NO_STATUS;
		return 0;
	}
	if (len == 1)
		return up_fail_ws(up, wsi, PB_CLOSE_PROTOCOL_ERROR, "close frame of one byte");
	/* libwebsockets 4.1 has already turned codes below 1000, 1004-1006
	 * and 1012-2999 into 1002 (1012-1014 too, though IANA registered
	 * them since); 5000 and up are caught here. */
	code = ((unsigned)in[0] << 8) | in[1];
	if (!pb_ws_close_code_valid(code))
		return up_fail_ws(up, wsi, PB_CLOSE_PROTOCOL_ERROR, "invalid close code");
	if (!pb_utf8_valid(in + 2, len - 2))
		return up_fail_ws(up, wsi, PB_CLOSE_INVALID_DATA, "close reason not UTF-8");
	up->peer_code = (int)code;
	up->peer_reason_len = len - 2 < sizeof(up->peer_reason) ? len - 2 :
			      sizeof(up->peer_reason);
	memcpy(up->peer_reason, in + 2, up->peer_reason_len);
	return 0;
}

/* Handle a received frame chunk: reassemble and report whole messages.
 * Always 0 (see up_fail_rx). */
static int up_receive(struct pb_upstream *up, struct lws *wsi, const void *in, size_t len)
{
	int first = lws_is_first_fragment(wsi), final = lws_is_final_fragment(wsi);
	const void *data;
	size_t dlen;
	struct pb_msg *m;

	if (up->close_code)
		return 0;       /* closing (ours or the owner's): nothing more is read */
	if (first) {
		up->rx.len = 0;
		up->rx_binary = lws_frame_is_binary(wsi);
	}
	if (up->rx.len + len > up->max_message_bytes) {
		/* The API's rule: a message over the limit ends the session with 1009. */
		return up_fail_rx(up, wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "message too big");
	}
	if (first && final) {
		data = in;
		dlen = len;
	} else {
		if (pb_buf_append(&up->rx, in, len))
			return up_fail_rx(up, wsi, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION,
					  "out of memory");
		if (!final)
			return 0;
		data = up->rx.data;
		dlen = up->rx.len;
	}
	/* A text message must be UTF-8 as a whole (a fragment may end inside
	 * a character): otherwise 1007, on the wire and for the owner. */
	if (!up->rx_binary && !pb_utf8_valid(data, dlen))
		return up_fail_rx(up, wsi, PB_CLOSE_INVALID_DATA, "text message not UTF-8");
	m = pb_msg_new(up->rx_binary ? PB_MSG_BINARY : PB_MSG_TEXT, data, dlen);
	if (data == up->rx.data) {
		up->rx.len = 0;
		if (up->rx.cap > 65536)
			pb_buf_free(&up->rx);
	}
	if (!m)
		return up_fail_rx(up, wsi, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
	if (up->arg)
		up->h->message(up->arg, m);
	else
		pb_msg_unref(m);
	return 0;
}

/* Write the next outbound message, if any. -1 closes the connection. */
static int up_writeable(struct pb_upstream *up, struct lws *wsi)
{
	struct pb_msg *m;
	int n;

	/* libwebsockets says WRITEABLE only once it has drained the extension
	 * (lws_write() with permessage-deflate): the held message is done. */
	pb_msg_unref(up->tx_hold);
	up->tx_hold = NULL;
	if (up->close_code) {
		unsigned char frame[LWS_PRE + 125];
		size_t rlen = strlen(up->close_reason);

		if (up->close_sent)
			return 0;
		/* Write the close frame ourselves: libwebsockets 4.1 drops the
		 * close_reason of a client connection closed by returning -1.
		 * Then wait (bounded) for the peer's close in reply. */
		frame[LWS_PRE] = (unsigned char)(up->close_code >> 8);
		frame[LWS_PRE + 1] = (unsigned char)up->close_code;
		memcpy(frame + LWS_PRE + 2, up->close_reason, rlen);
		up->close_sent = 1;
		if (lws_write(wsi, frame + LWS_PRE, 2 + rlen, PB_LWS_WRITE_CLOSE) < 0)
			return -1;
		lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_ACK, 3);
		return 0;
	}
	if (!up->arg)
		return -1;
	m = up->h->next_out(up->arg);
	if (!m)
		return 0;
	/* Client frames are masked in place: an outbound message is written
	 * once, then released. */
	n = lws_write(wsi, m->data, m->len,
		      m->type == PB_MSG_BINARY ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
	if (up->deflate && n >= 0)
		up->tx_hold = m;
	else
		pb_msg_unref(m);
	if (n < 0)
		return -1;
	lws_callback_on_writable(wsi);
	return 0;
}

/* The one protocol callback: translate libwebsockets events for the owner. */
static int up_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
		       void *in, size_t len)
{
	struct pb_upstream *up = lws_wsi_user(wsi);

	/* Asked per link and per extension while the handshake is built:
	 * nonzero leaves the extension out, so only the links of `deflate`
	 * routes offer permessage-deflate, though the context has it. */
	if (reason == LWS_CALLBACK_CLIENT_CONFIRM_EXTENSION_SUPPORTED)
		return !(up && up->deflate && in && strcmp(in, "permessage-deflate") == 0);
	if (!up)
		return 0;
	switch (reason) {
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		up_fail(up, in ? (const char *)in : "connection failed");
		break;
	case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
		return up_append_headers(up, wsi, in, len);
	case LWS_CALLBACK_WS_EXT_DEFAULTS:
		/* permessage-deflate was negotiated: our compressor gets zlib
		 * memLevel 4 instead of libwebsockets' 8, a link then holds
		 * about 40 KiB instead of 105 (tests/e2e/test_compress.c
		 * measures it) for a ratio a few percent worse. */
		if (in && len && user && strcmp(user, "permessage-deflate") == 0)
			snprintf(in, len, "mem_level=4");
		break;
	case LWS_CALLBACK_CLIENT_FILTER_PRE_ESTABLISH:
		/* The response headers are still there: note the subprotocol. */
		if (lws_hdr_copy(wsi, up->protocol, sizeof(up->protocol), WSI_TOKEN_PROTOCOL) <= 0)
			up->protocol[0] = '\0';
		break;
	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		up->established = 1;
		pb_buf_free(&up->hs);
		if (up->close_code) {
			lws_callback_on_writable(wsi);
			break;
		}
		if (up->arg)
			up->h->opened(up->arg, up->protocol[0] ? up->protocol : NULL);
		break;
	case LWS_CALLBACK_CLIENT_RECEIVE:
		return up_receive(up, wsi, in, len);
	case LWS_CALLBACK_CLIENT_WRITEABLE:
		return up_writeable(up, wsi);
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		/* The answer to our own close: done, do not echo it back. */
		if (up->close_sent)
			return -1;
		return up_peer_close(up, wsi, in, len);
	case LWS_CALLBACK_CLIENT_CLOSED:
		if (up->arg)
			up->h->closed(up->arg, up->peer_code ? up->peer_code : PB_CLOSE_ABNORMAL,
				      up->peer_reason, up->peer_reason_len);
		up_detach(up);
		break;
	case LWS_CALLBACK_WSI_DESTROY:
		if (up->in_dial) {
			up->destroyed_in_dial = 1;
			break;
		}
		/* Some endings (a peer that hangs up during the handshake: lws
		 * says CLOSED_CLIENT_HTTP) reach no other case: the owner must
		 * still hear of it before the link is gone. */
		if (up->arg) {
			void *arg = up->arg;

			up_detach(up);
			if (up->established)
				up->h->closed(arg, up->peer_code ? up->peer_code : PB_CLOSE_ABNORMAL,
					      up->peer_reason, up->peer_reason_len);
			else
				up->h->failed(arg, PB_EUPSTREAM, "connection closed during the handshake");
		}
		up->ctx->live--;
		pb_msg_unref(up->tx_hold);
		pb_buf_free(&up->rx);
		pb_buf_free(&up->hs);
		free(up->path);
		free(up);
		break;
	default:
		break;
	}
	return 0;
}

static const struct lws_protocols up_protocols[] = {
	{ "pb-upstream", up_callback, 0, PB_LWS_RX_BUFFER, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

/* permessage-deflate (RFC 7692), libwebsockets' own implementation. The
 * offer lets the server pick our window (client_max_window_bits); up_callback
 * leaves it out of the handshake of links whose route lacks `deflate`. */
static const struct lws_extension up_extensions[] = {
	{ "permessage-deflate", lws_extension_callback_pm_deflate,
	  "permessage-deflate; client_max_window_bits" },
	{ NULL, NULL, NULL }
};

/* Route libwebsockets' own log lines into ours, at debug level. */
static void up_lws_log(int level, const char *line)
{
	size_t n = strlen(line);

	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		n--;
	pb_log_debug("lws: %.*s", (int)n, line);
}

struct pb_upstream_ctx *pb_upstream_ctx_new(uv_loop_t *loop, const char *ca_file, char *err,
					    size_t errlen)
{
	struct lws_context_creation_info info;
	struct pb_upstream_ctx *ctx = calloc(1, sizeof(*ctx));
	void *loops[1] = { loop };

	if (!ctx || !(ctx->own = pb_wsc_ctx_new(loop))) {
		free(ctx);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	lws_set_log_level(pb_log_enabled(PB_LOG_DEBUG) ? LLL_ERR | LLL_WARN | LLL_NOTICE : 0,
			  up_lws_log);
	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = up_protocols;
	info.extensions = up_extensions;
	/* No LWS_SERVER_OPTION_VALIDATE_UTF8: libwebsockets would fail bad
	 * UTF-8 without telling us why (the owner would see 1006); up_receive()
	 * and up_peer_close() check it and report 1007. */
	info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT |
		       LWS_SERVER_OPTION_JUST_USE_RAW_ORIGIN |
		       LWS_SERVER_OPTION_UV_NO_SIGSEGV_SIGFPE_SPIN;
	info.timeout_secs = PB_LWS_DIAL_TIMEOUT_SECS;
	info.connect_timeout_secs = PB_LWS_DIAL_TIMEOUT_SECS;
	info.foreign_loops = loops;
	info.pt_serv_buf_size = PB_LWS_SERV_BUF;
	if (ca_file) {
		/* This bundle instead of the system's, not on top of it. */
		info.client_ssl_ca_filepath = ca_file;
		info.options |= LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS;
	}
	info.gid = -1;
	info.uid = -1;
	info.user = ctx;
	info.pcontext = &ctx->lws;
	ctx->loop = loop;
	ctx->lws = lws_create_context(&info);
	if (!ctx->lws) {
		snprintf(err, errlen, "libwebsockets context creation failed "
			 "(is libwebsockets-evlib-uv installed?)");
		pb_wsc_ctx_free(ctx->own);
		uv_run(loop, UV_RUN_NOWAIT);
		free(ctx);
		return NULL;
	}
	return ctx;
}

void pb_upstream_ctx_free(struct pb_upstream_ctx *ctx)
{
	if (!ctx)
		return;
	pb_wsc_ctx_free(ctx->own);      /* its handles close in the run below */
	/* On a foreign loop libwebsockets 4.1 destroys its context in two
	 * steps: the first call closes its loop handles, the loop must then
	 * run their close callbacks, and a second call frees the rest (it
	 * clears ctx->lws through info.pcontext when done). */
	lws_context_destroy(ctx->lws);
	uv_run(ctx->loop, UV_RUN_DEFAULT);
	if (ctx->lws)
		lws_context_destroy(ctx->lws);
	if (ctx->lws)
		pb_log_warn("libwebsockets context not fully destroyed");
	free(ctx);
}

void pb_upstream_ctx_set_ping(struct pb_upstream_ctx *ctx, unsigned secs)
{
	/* libwebsockets pings a link that showed no sign of life for secs,
	 * and hangs up when nothing (a pong) came back within secs more. */
	pb_wsc_ctx_set_ping(ctx->own, secs);
	memset(&ctx->keepalive, 0, sizeof(ctx->keepalive));
	ctx->keepalive.secs_since_valid_ping = (uint16_t)(secs > 30000 ? 30000 : secs);
	ctx->keepalive.secs_since_valid_hangup = (uint16_t)(secs > 30000 ? 60000 : 2 * secs);
}

size_t pb_upstream_ctx_live(const struct pb_upstream_ctx *ctx)
{
	return ctx->live + pb_wsc_ctx_live(ctx->own);
}

char *pb_upstream_eio_path(const char *path, int eio)
{
	const char *q = strchr(path, '?'), *p, *end;
	struct pb_buf b;
	char *out;
	int r;

	pb_buf_init(&b, 0);
	if (!q) {
		r = pb_buf_printf(&b, "%s?EIO=%d", path, eio);
		out = r ? NULL : pb_buf_steal(&b, NULL);
		pb_buf_free(&b);
		return out;
	}
	/* Find a parameter named exactly EIO among the '&'-separated ones. */
	for (p = q + 1; *p; p = *end ? end + 1 : end) {
		end = p + strcspn(p, "&");
		if (end - p >= 3 && strncmp(p, "EIO", 3) == 0 && (p + 3 == end || p[3] == '='))
			break;
	}
	if (*p)
		r = pb_buf_printf(&b, "%.*sEIO=%d%s", (int)(p - path), path, eio, end);
	else
		r = pb_buf_printf(&b, "%s%sEIO=%d", path,
				  q[1] && path[strlen(path) - 1] != '&' ? "&" : "", eio);
	out = r ? NULL : pb_buf_steal(&b, NULL);
	pb_buf_free(&b);
	return out;
}

struct pb_upstream *pb_upstream_dial(struct pb_upstream_ctx *ctx, const struct pb_upstream_dial *d,
				     const struct pb_upstream_handler *h, void *arg, int *err)
{
	struct lws_client_connect_info i;
	const struct pb_route *r = d->route;
	struct pb_upstream *up;
	char host[300];
	struct lws *wsi;

	if (!r->tls && !r->deflate)
		return (struct pb_upstream *)(void *)pb_wsc_dial(ctx->own, d, h, arg, err);
	up = calloc(1, sizeof(*up));
	if (!up) {
		*err = PB_ENOMEM;
		return NULL;
	}
	up->kind = PB_LINK_LWS;
	up->ctx = ctx;
	up->h = h;
	up->arg = arg;
	up->max_message_bytes = d->max_message_bytes;
	up->deflate = r->deflate;
	pb_buf_init(&up->rx, 0);
	pb_buf_init(&up->hs, 0);
	*err = up_copy_headers(up, d->headers);
	if (*err) {
		pb_buf_free(&up->hs);
		free(up);
		return NULL;
	}
	if (strchr(r->host, ':'))
		snprintf(host, sizeof(host), "[%s]:%d", r->host, r->port);
	else
		snprintf(host, sizeof(host), "%s:%d", r->host, r->port);
	if (d->eio) {
		up->path = pb_upstream_eio_path(r->path, d->eio);
		if (!up->path) {
			pb_buf_free(&up->hs);
			free(up);
			*err = PB_ENOMEM;
			return NULL;
		}
	}
	memset(&i, 0, sizeof(i));
	i.context = ctx->lws;
	i.address = r->host;
	i.port = r->port;
	i.path = up->path ? up->path : r->path;
	i.host = host;
	i.origin = d->origin;
	i.protocol = d->protocols;
	i.local_protocol_name = up_protocols[0].name;
	i.userdata = up;
	i.pwsi = &up->wsi;
	if (ctx->keepalive.secs_since_valid_ping)
		i.retry_and_idle_policy = &ctx->keepalive;
	if (r->tls) {
		i.ssl_connection = LCCSCF_USE_SSL;
		if (r->insecure)
			i.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED |
					    LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
					    LCCSCF_ALLOW_EXPIRED | LCCSCF_ALLOW_INSECURE;
	}
	up->in_dial = 1;
	wsi = lws_client_connect_via_info(&i);
	up->in_dial = 0;
	if (!wsi || up->failed_in_dial || up->destroyed_in_dial) {
		/* Failed at once: libwebsockets no longer refers to up, unless
		 * the connection object survived the failure. */
		if (wsi && !up->destroyed_in_dial) {
			up_detach(up);
			ctx->live++;
			lws_set_timeout(wsi, PENDING_TIMEOUT_AWAITING_PROXY_RESPONSE,
					LWS_TO_KILL_ASYNC);
		} else {
			pb_buf_free(&up->rx);
			pb_buf_free(&up->hs);
			free(up->path);
			free(up);
		}
		*err = PB_EUPSTREAM;
		return NULL;
	}
	up->wsi = wsi;
	ctx->live++;
	return up;
}

/* The link as pollbridge's own client's, or NULL if it is a libwebsockets one. */
static struct pb_wsc *own_link(struct pb_upstream *up)
{
	return *(const enum pb_link_kind *)(const void *)up == PB_LINK_OWN ?
	       (struct pb_wsc *)(void *)up : NULL;
}

void pb_upstream_want_write(struct pb_upstream *up)
{
	if (own_link(up)) {
		pb_wsc_want_write(own_link(up));
		return;
	}
	if (up->established && up->wsi)
		lws_callback_on_writable(up->wsi);
}

void pb_upstream_pause(struct pb_upstream *up, int paused)
{
	if (own_link(up)) {
		pb_wsc_pause(own_link(up), paused);
		return;
	}
	if (up->established && up->wsi)
		lws_rx_flow_control(up->wsi, !paused);
}

int pb_upstream_written(struct pb_upstream *up)
{
	if (own_link(up))
		return pb_wsc_written(own_link(up));
	/* A message held for permessage-deflate may still be in the
	 * extension; otherwise lws_write() either sent all of it or kept
	 * the rest (lws_partial_buffered). */
	return up->established && up->wsi && !up->tx_hold && !lws_partial_buffered(up->wsi);
}

void pb_upstream_close(struct pb_upstream *up, int code, const char *reason)
{
	if (own_link(up)) {
		pb_wsc_close(own_link(up), code, reason);
		return;
	}
	up_detach(up);
	if (up->close_code)
		return;
	up->close_code = code ? code : 1000;
	snprintf(up->close_reason, sizeof(up->close_reason), "%s", reason ? reason : "");
	if (up->established) {
		lws_callback_on_writable(up->wsi);
	} else {
		lws_set_timeout(up->wsi, PENDING_TIMEOUT_AWAITING_PROXY_RESPONSE, LWS_TO_KILL_ASYNC);
	}
}

/* pb_upstream_dial with the context as an opaque pointer. */
static struct pb_upstream *upstream_link_dial(void *ctx, const struct pb_upstream_dial *d,
					      const struct pb_upstream_handler *h, void *arg,
					      int *err)
{
	return pb_upstream_dial(ctx, d, h, arg, err);
}

const struct pb_link_ops pb_upstream_link_ops = {
	.dial = upstream_link_dial,
	.want_write = pb_upstream_want_write,
	.pause = pb_upstream_pause,
	.close = pb_upstream_close,
	.written = pb_upstream_written,
};
