/*
 * sockjs_codec.h: the SockJS wire format (sockjs-client 1.x), with no HTTP
 * library: the door's URL shapes, the frames (o, h, a[...], c[code,
 * "reason"]) with SockJS's string quoting, each receiving transport's
 * framing and prelude (xhr, xhr_streaming, eventsource, htmlfile, jsonp),
 * the /info document, the iframe page and its ETag, the bodies of
 * xhr_send and jsonp_send, and the bridge's session id for a client's
 * SockJS ids.
 *
 * Pure functions over memory (gnutls for hashing only). Every input is
 * (pointer, length) and may be hostile: nothing here aborts on it.
 */
#ifndef PB_SOCKJS_CODEC_H
#define PB_SOCKJS_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "codec.h"
#include "msg.h"

/* Seconds between heartbeat frames ("h") on an idle receiving request. */
#define PB_SOCKJS_HEARTBEAT 25
/* Frame bytes one streaming response carries before it ends (the client
 * then opens the next one), as sockjs-node's response_limit. */
#define PB_SOCKJS_RESPONSE_LIMIT (128 * 1024)
/* How long OPTIONS answers and the iframe page may be cached (one year). */
#define PB_SOCKJS_CACHE_SECS 31536000
/* Longest htmlfile/jsonp callback name. */
#define PB_SOCKJS_MAX_CALLBACK 64
/* An ETag as written: '"' + 32 hex digits + '"' and a NUL. */
#define PB_SOCKJS_ETAG_LEN 34

/* What a path under the door's prefix names. */
enum pb_sockjs_kind {
	PB_SOCKJS_NOT_FOUND = 0,
	PB_SOCKJS_GREETING,             /* PREFIX or PREFIX/ */
	PB_SOCKJS_INFO,                 /* PREFIX/info */
	PB_SOCKJS_IFRAME,               /* PREFIX/iframe[0-9a-z._-]*.html */
	PB_SOCKJS_RAW_WEBSOCKET,        /* PREFIX/websocket (not offered) */
	PB_SOCKJS_SESSION,              /* PREFIX/<server>/<session>/<transport> */
};

/* The transports of a session URL. */
enum pb_sockjs_transport {
	PB_SOCKJS_XHR = 0,
	PB_SOCKJS_XHR_SEND,
	PB_SOCKJS_XHR_STREAMING,
	PB_SOCKJS_EVENTSOURCE,
	PB_SOCKJS_HTMLFILE,
	PB_SOCKJS_JSONP,
	PB_SOCKJS_JSONP_SEND,
	PB_SOCKJS_WEBSOCKET,            /* not offered: 404 */
};

/* A parsed path; server and session point into the parsed string. */
struct pb_sockjs_path {
	enum pb_sockjs_kind kind;
	enum pb_sockjs_transport transport;     /* with PB_SOCKJS_SESSION */
	const char *server;
	size_t server_len;
	const char *session;
	size_t session_len;
};

/* Classify sub[0..len), the decoded path after the door's prefix ("" or
 * "/..."). One trailing '/' is allowed everywhere. server and session are
 * non-empty and hold neither '/' nor '.'; anything else is NOT_FOUND. */
void pb_sockjs_parse_path(const char *sub, size_t len, struct pb_sockjs_path *p);

/* 1 if t is a receiving transport (it reads the session's messages). */
int pb_sockjs_receiving(enum pb_sockjs_transport t);

/* 1 if t streams (several frames per response). */
int pb_sockjs_streaming(enum pb_sockjs_transport t);

/* Write the bridge's session id for a SockJS session: the base64url of
 * the first 16 bytes of SHA-256 over route, NUL, session, NUL,
 * client_addr, with its last (22nd) character replaced by '.', so that no
 * /v1 id check ever accepts it. The client's server id is not part of it
 * (the protocol says servers must ignore it). 0 or PB_ENOMEM (hashing
 * failed). */
int pb_sockjs_session_id(const char *route, const char *session, size_t session_len,
			 const char *client_addr, char out[PB_ID_LEN + 1]);

/* 1 if s[0..len) may be an htmlfile/jsonp callback: JavaScript
 * identifiers joined by single dots (as sockjs-client's "_jp.abc123"), at
 * most PB_SOCKJS_MAX_CALLBACK bytes. */
int pb_sockjs_callback_valid(const char *s, size_t len);

/* Append s[0..len) as a JSON string quoted the SockJS way: '"' and '\\'
 * escaped, \b \f \n \r \t by name, and \uhhhh (lower-case hex) for the
 * other characters below U+0020 and for U+200C-U+200F, U+2028-U+202F,
 * U+2060-U+206F and U+FFF0-U+FFFF, which browsers mangle; invalid UTF-8
 * becomes U+FFFD (escaped). Everything else is copied. */
int pb_sockjs_quote(struct pb_buf *out, const void *s, size_t len);

/* Append a[...] for the text messages of msgs[0..n) (others are skipped;
 * the door deals with them). */
int pb_sockjs_frame_messages(struct pb_buf *out, struct pb_msg *const *msgs, size_t n);

/* Append c[code,"reason"]. */
int pb_sockjs_frame_close(struct pb_buf *out, int code, const char *reason, size_t reason_len);

/* Append frame[0..len) framed for transport t:
 *   xhr, xhr_streaming: frame "\n"
 *   eventsource:        "data: " frame "\r\n\r\n", with '%', CR, LF and NUL
 *                       percent-encoded (the client decodeURI()s the data)
 *   htmlfile:           "<script>\np(" JS string ");\n</script>\r\n"
 *   jsonp:              "/" "**" "/" callback "(" JS string ");\r\n"
 * The JS string escapes '<', '>', '&', quotes, controls, U+2028 and U+2029,
 * so no frame can end the script element or the statement early.
 * callback is used by jsonp only (validated by the caller). */
int pb_sockjs_wrap(struct pb_buf *out, enum pb_sockjs_transport t, const char *frame,
		   size_t len, const char *callback);

/* Append what a streaming transport writes before its first frame:
 * xhr_streaming 2048 'h' and "\n"; eventsource "\r\n"; htmlfile the page
 * that hands frames to parent.<callback> (padded past 1 KiB); nothing for
 * the others. */
int pb_sockjs_prelude(struct pb_buf *out, enum pb_sockjs_transport t, const char *callback);

/* Append the /info document: {"websocket":false,"origins":["*:*"],
 * "cookie_needed":<cookie_needed>,"entropy":<entropy>}. */
int pb_sockjs_info(struct pb_buf *out, int cookie_needed, uint32_t entropy);

/* Append the iframe page that loads sockjs-client from sockjs_url (which
 * is HTML-escaped) and write its ETag (a strong one, from the page's
 * SHA-256) to etag. 0, PB_ENOMEM, or the pb_buf error. */
int pb_sockjs_iframe(struct pb_buf *out, const char *sockjs_url, char etag[PB_SOCKJS_ETAG_LEN + 1]);

/* The reasons of a refused send body (the SockJS wording). */
#define PB_SOCKJS_PAYLOAD_EXPECTED "Payload expected."
#define PB_SOCKJS_BROKEN_JSON "Broken JSON encoding."

/* Parse a send body into text messages: a JSON array of strings (xhr_send,
 * and jsonp_send with a raw body), or with form set a form body whose "d"
 * field holds that array (jsonp_send). \u escapes are decoded, a lone
 * surrogate becomes U+FFFD (what a browser WebSocket would send). An empty
 * body, an empty or absent "d", valid JSON that is not an array of strings:
 * PB_EBADREQ with *why PB_SOCKJS_PAYLOAD_EXPECTED; anything else that is
 * not JSON: PB_EBADREQ with PB_SOCKJS_BROKEN_JSON. More than max_msgs
 * messages or one longer than max_msg_bytes: PB_ETOOBIG. All or nothing:
 * on error req is left empty. An empty array gives no messages. */
int pb_sockjs_parse_send(const char *body, size_t len, int form, size_t max_msg_bytes,
			 size_t max_msgs, struct pb_send_req *req, const char **why);

#endif
