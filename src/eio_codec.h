/*
 * eio_codec.h: the wire formats of the Engine.IO polling transport (protocol
 * v3, socket.io-client 1.x/2.x, and v4, socket.io-client 3.x/4.x), with no
 * HTTP library: the payloads a poll answers with, the payloads a client
 * posts, the JSONP wrapping and the JSONP form body, the rewritten open
 * packet, and engine.io's error JSON. engineio.c does the HTTP side.
 *
 * Upstream frames and packets. The upstream is the Engine.IO server's own
 * WebSocket transport, where one frame is one packet: a text frame is the
 * packet's text form ("4hello", "2", "0{...}"), a binary frame is a binary
 * message (v4: the raw data; v3: the packet-type byte 0x04, then the
 * data). The bridge stores those frames as they are (struct pb_msg) and only
 * re-frames them for polling:
 * - v4 payload: packets joined by 0x1e, a binary one as "b<base64>";
 * - v3 string payload: "<len>:<packet>" where len counts UTF-16 code units,
 *   a binary one as "b4<base64>";
 * - v3 binary payload (XHR2 clients that did not ask for b64): per packet
 *   0x00 (text) or 0x01 (binary), the decimal length as bytes 0-9, 0xff,
 *   then the packet (text as UTF-8, its length in bytes; binary with its
 *   type byte, counted).
 */
#ifndef PB_EIO_CODEC_H
#define PB_EIO_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "msg.h"

/* engine.io's error codes (server.js), answered as {"code":N,"message":...}. */
enum pb_eio_errcode {
	PB_EIO_ERR_TRANSPORT = 0,       /* "Transport unknown" */
	PB_EIO_ERR_SID = 1,             /* "Session ID unknown" */
	PB_EIO_ERR_METHOD = 2,          /* "Bad handshake method" */
	PB_EIO_ERR_BADREQ = 3,          /* "Bad request" */
	PB_EIO_ERR_FORBIDDEN = 4,       /* "Forbidden" */
	PB_EIO_ERR_VERSION = 5,         /* "Unsupported protocol version" */
};

/* engine.io's message for code (static), "Bad request" for an unknown one. */
const char *pb_eio_error_message(int code);

/* Append {"code":code,"message":"<message or the standard one>"}. 0 or the
 * pb_buf error. */
int pb_eio_put_error(struct pb_buf *out, int code, const char *message);

/* Number of UTF-16 code units of the UTF-8 text p[0..len) (what a v3 length
 * counts): 2 for a 4-byte sequence, 1 for any other character, and 1 for
 * each byte of an ill-formed sequence (what a decoder replaces with U+FFFD). */
size_t pb_eio_utf16_len(const void *p, size_t len);

/* ---- encoding a poll answer --------------------------------------------- */

/* A payload being built into out (borrowed). */
struct pb_eio_enc {
	struct pb_buf *out;
	int version;                    /* 3 or 4 */
	int binary;                     /* v3 binary payload */
	size_t n;                       /* packets appended */
};

/* Start a payload of protocol version (3 or 4) into out; binary selects the
 * v3 binary payload (ignored for v4). */
void pb_eio_enc_init(struct pb_eio_enc *e, struct pb_buf *out, int version, int binary);

/* Append the text packet p[0..len) (its text form, e.g. "4hello" or "6").
 * 0 or the pb_buf error (out is then as before the call). */
int pb_eio_enc_text(struct pb_eio_enc *e, const void *p, size_t len);

/* Append a binary upstream frame p[0..len) (v4: the data; v3: the type byte
 * and the data; a v3 frame that does not start with a packet type 0-6 is
 * taken as the data of a message). 0 or the pb_buf error. */
int pb_eio_enc_binary(struct pb_eio_enc *e, const void *p, size_t len);

/* Append an upstream frame m as a packet (text or binary by its type; a
 * reopen message is skipped). */
int pb_eio_enc_msg(struct pb_eio_enc *e, const struct pb_msg *m);

/* Longest JSONP index (the digits of j=) kept. */
#define PB_EIO_MAX_JSONP_INDEX 16

/* Append the JSONP answer ___eio[<index>]("<payload as a JS string>"); for
 * the text payload p[0..len). index: the request's j= value, of which only
 * the digits are kept (as engine.io does), at most PB_EIO_MAX_JSONP_INDEX.
 * The string escapes '"', '\\', control characters, U+2028, U+2029 and
 * '<' (so "</script>" cannot end an inline script), and turns ill-formed
 * UTF-8 into U+FFFD. 0 or the pb_buf error. */
int pb_eio_put_jsonp(struct pb_buf *out, const char *index, const void *p, size_t len);

/* Rewrite the upstream's open packet p[0..len) ("0{...}") for the client:
 * "sid" becomes sid, "upgrades" becomes [], and when max_payload is not 0,
 * "maxPayload" becomes min(theirs, max_payload), or max_payload if they
 * sent none; every other key (pingInterval, pingTimeout, ...) is kept.
 * Appends the new packet text to out. 0, PB_EBADREQ (not an open packet
 * with a JSON object) or PB_ENOMEM. */
int pb_eio_rewrite_open(const void *p, size_t len, const char *sid, uint64_t max_payload,
			struct pb_buf *out);

/* ---- decoding a client's POST ------------------------------------------- */

/* What a posted payload asks for: the frames to send upstream, in order,
 * and whether a close packet ended it. */
struct pb_eio_in {
	struct pb_msg **msgs;           /* owned references */
	size_t n;
	size_t cap;
	int close;                      /* a close packet "1" came (anything
					   after it is ignored) */
};

/* Release what in holds and zero it. */
void pb_eio_in_free(struct pb_eio_in *in);

/* Decode a posted payload of protocol version (3 or 4): v4 packets joined
 * by 0x1e; v3 the string payload, or the binary payload when binary_body
 * (application/octet-stream). Message packets ("4...") and pings and pongs
 * ("2...", "3...") become text frames carrying the packet as it is; binary
 * packets become binary frames (v3 with the type byte 0x04 first); open,
 * upgrade and noop packets are dropped; a close packet sets in->close and
 * ends the payload. Text must be valid UTF-8. Each frame is at most
 * max_msg bytes and there are at most max_msgs of them (else PB_ETOOBIG).
 * All or nothing: 0 and in filled, or PB_EBADREQ (with *why: an empty
 * payload, a bad length, a truncated packet, an unknown packet type, bad
 * base64, ill-formed UTF-8), PB_ETOOBIG or PB_ENOMEM with in left empty. */
int pb_eio_decode(int version, int binary_body, const void *body, size_t len, size_t max_msg,
		  size_t max_msgs, struct pb_eio_in *in, const char **why);

/* The payload of a JSONP POST: the form body's "d" field, url-decoded and
 * with the JSONP client's newline escaping undone ("\\n" is a newline,
 * "\\\\n" a backslash and 'n'), into out (reset first). 0, or PB_EBADREQ
 * (no "d", "d" twice, a bad escape) with *why, or the pb_buf error. */
int pb_eio_jsonp_body(const char *body, size_t len, struct pb_buf *out, const char **why);

#endif
