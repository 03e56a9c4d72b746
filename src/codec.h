/*
 * codec.h: every byte-level format pollbridge reads or writes, in one place:
 * the API's number syntax, UTF-8 validation, base64 (standard and url-safe),
 * session ids, JSON string escaping, the poll batch and error encoders,
 * percent-decoding and x-www-form-urlencoded parsing, and the create and
 * send request bodies.
 *
 * Pure functions over memory: no I/O, no event loop, no global state (except
 * the OS CSPRNG for ids). Parsers of client input never trust lengths or
 * NUL termination: every input is (pointer, length).
 */
#ifndef PB_CODEC_H
#define PB_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "msg.h"

/* Largest number the API accepts: 2^53-1. */
#define PB_NUM_MAX ((uint64_t)9007199254740991ULL)

/* Session ids: 16 random bytes, base64url without padding. */
#define PB_ID_BYTES 16
#define PB_ID_LEN 22

/* Limits on create requests. */
#define PB_MAX_PROTOCOLS 16
#define PB_MAX_PROTOCOL_LEN 64
#define PB_MAX_ROUTE_LEN 64

/* Parse an API number: one or more ASCII digits, no sign, no spaces, value
 * at most PB_NUM_MAX. 0 and *out set, or PB_EBADREQ (empty, other chars,
 * too large). */
int pb_parse_uint53(const char *s, size_t len, uint64_t *out);

/* The length of the prefix of s[0..len) that a JSON string carries as it
 * is: printable ASCII (0x20 to 0x7e) other than '"' and '\\'. Eight bytes
 * at a time: for encoders that copy such runs whole. */
size_t pb_json_plain_span(const void *s, size_t len);

/* 1 if p[0..len) is well-formed UTF-8 (no overlong forms, no surrogates,
 * nothing above U+10FFFF), else 0. NUL bytes are valid. */
int pb_utf8_valid(const void *p, size_t len);

/* Append the standard base64 (RFC 4648 section 4, with '=' padding) of
 * data to out. 0 or the pb_buf error. */
int pb_base64_encode(struct pb_buf *out, const void *data, size_t len);

/* Decode standard base64. Padding is optional, but if present must be
 * correct; no whitespace; unused trailing bits must be zero. out must have
 * room for len / 4 * 3 + 3 bytes. 0 and *outlen set, or PB_EBADREQ. */
int pb_base64_decode(const char *in, size_t len, unsigned char *out, size_t *outlen);

/* Write the unpadded base64url form of data[0..len) plus a NUL to out,
 * which must have room for (len * 4 + 2) / 3 + 1 bytes. */
void pb_base64url_encode(const void *data, size_t len, char *out);

/* Fill out with a new session id (PB_ID_LEN chars and a NUL) from the OS
 * CSPRNG (getrandom). 0, or PB_ENOMEM if the kernel gave no randomness. */
int pb_session_id_new(char out[PB_ID_LEN + 1]);

/* 1 if s[0..len) has the shape of a session id: exactly PB_ID_LEN chars
 * of [A-Za-z0-9_-]. */
int pb_session_id_valid(const char *s, size_t len);

/* Append s[0..len) as a quoted JSON string. Escapes '"', '\\', every
 * control character below 0x20 (\n \r \t \b \f by name, others \u00XX),
 * 0x7f as \u007f, and U+2028/U+2029 as \u2028/\u2029 (so the output is also
 * safe inside JavaScript). Invalid UTF-8 sequences are replaced by U+FFFD,
 * so the output is always valid JSON. */
int pb_json_put_string(struct pb_buf *out, const void *s, size_t len);

/* How a poll batch ends: open, or closed with the upstream's close. */
struct pb_close_info {
	int closed;             /* 0: "state":"open" */
	int code;               /* WebSocket close code, when closed */
	const char *reason;     /* UTF-8 (invalid bytes are replaced), may be "" */
	size_t reason_len;
};

/* Append one message object: {"seq":7,"type":"text","data":"hi"};
 * binary data in standard base64; a reopen message has no "data". */
int pb_codec_put_message(struct pb_buf *out, const struct pb_msg *m);

/* Append a whole poll response:
 * {"messages":[<message>,...],"state":"open"} or
 * {"messages":[...],"state":"closed","close":{"code":1000,"reason":"bye"}}. */
int pb_codec_encode_batch(struct pb_buf *out, struct pb_msg *const *msgs, size_t n,
			  const struct pb_close_info *close);

/* Append one Server-Sent Event for m: "id: <seq>\nevent: <type>\ndata:
 * <message object>\n\n" (the object is one line: newlines are escaped). */
int pb_codec_put_sse_message(struct pb_buf *out, const struct pb_msg *m);

/* Append the closing event: "event: close\ndata: {"type":"close",
 * "code":N,"reason":"..."}\n\n" (no id: it acknowledges nothing). */
int pb_codec_put_sse_close(struct pb_buf *out, const struct pb_close_info *close);

/* Longest JSONP callback name accepted. */
#define PB_MAX_CALLBACK_LEN 128

/* 1 if s[0..len) is a safe JSONP callback: JavaScript identifiers of
 * [A-Za-z_$][A-Za-z0-9_$]* joined by single dots, at most
 * PB_MAX_CALLBACK_LEN bytes. */
int pb_jsonp_callback_valid(const char *s, size_t len);

/* Append {"error":"<code>","message":"<message>"}. */
int pb_codec_encode_error(struct pb_buf *out, const char *code, const char *message);

/* Read the next key=value pair of an application/x-www-form-urlencoded
 * string. *p is the read position, advanced past the pair; end is one past
 * the last byte. key and val are reset and receive the decoded bytes
 * ('+' is a space, %XX a byte; a pair without '=' has an empty value).
 * Empty pairs ("&&") are skipped. Returns 1 for a pair, 0 at the end,
 * PB_EBADREQ for a malformed escape (% not followed by two hex digits),
 * PB_ETOOBIG/PB_ENOMEM from the buffers. */
int pb_form_next(const char **p, const char *end, struct pb_buf *key, struct pb_buf *val);

/* Percent-decode s[0..len) into out (size bytes, NUL-terminated), for text
 * that must stay a C string, such as the password of a URL: "%XX" is the
 * byte XX, every other byte ('+' included) stands for itself. 0, or
 * PB_EBADREQ for a malformed escape or "%00", PB_ETOOBIG if out is too
 * small. */
int pb_percent_decode(const char *s, size_t len, char *out, size_t size);

/* 1 if s[0..len) is a valid WebSocket subprotocol name: 1 to
 * PB_MAX_PROTOCOL_LEN characters of the RFC 7230 token set. */
int pb_protocol_valid(const char *s, size_t len);

/* Longest request header name --forward-header accepts. */
#define PB_MAX_HEADER_NAME_LEN 64

/* 1 if s[0..len) is an HTTP header name: 1 to PB_MAX_HEADER_NAME_LEN
 * characters of the RFC 7230 token set. */
int pb_header_name_valid(const char *s, size_t len);

/* 1 if s[0..len) may be written as an HTTP header value: no control
 * characters except HTAB (so no CR, LF or NUL that could end the header
 * or the request early). */
int pb_header_value_valid(const char *s, size_t len);

/* The front door a session came through (metrics label door="v1",
 * "engineio", "sockjs"; an adopter closes ENGINEIO sessions instead of
 * re-dialling them). */
enum pb_door {
	PB_DOOR_V1 = 0,                         /* /v1/sessions */
	PB_DOOR_ENGINEIO,
	PB_DOOR_SOCKJS,
	PB_DOOR_COUNT
};

/* A parsed create request. The /v1 parsers leave door, eio and fixed_id
 * zero (a /v1 session, dialled at the route's URL, with a minted id). */
struct pb_create_req {
	char *route;                            /* owned, NUL-terminated */
	char *protocols[PB_MAX_PROTOCOLS];      /* owned, NUL-terminated */
	size_t nprotocols;
	enum pb_door door;
	int eio;                                /* 0, or 3/4: dial the route with
						   EIO=<eio> in its query */
	char fixed_id[PB_ID_LEN + 1];           /* "": mint an id; else this id
						   (PB_ID_LEN chars of
						   [A-Za-z0-9_.-]), PB_EEXIST if
						   taken or a tombstone */
};

/* Release what a create request owns and zero it (door, eio and fixed_id
 * included). */
void pb_create_req_free(struct pb_create_req *req);

/* Set req's route from s[0..len): non-empty, at most PB_MAX_ROUTE_LEN
 * bytes, no NUL, not set before. 0, or PB_EBADREQ/PB_ENOMEM with *why. */
int pb_create_req_set_route(struct pb_create_req *req, const char *s, size_t len,
			    const char **why);

/* Add the subprotocol s[0..len) to req: a valid name, not offered yet, at
 * most PB_MAX_PROTOCOLS in all. 0, or PB_EBADREQ/PB_ENOMEM with *why. */
int pb_create_req_add_protocol(struct pb_create_req *req, const char *s, size_t len,
			       const char **why);

/* Parse {"route":"echo","protocols":["chat",...]} ("protocols" optional;
 * other keys ignored). The route must be a non-empty string of at most
 * PB_MAX_ROUTE_LEN bytes; protocols an array of valid, distinct protocol
 * names, at most PB_MAX_PROTOCOLS. On error req is left empty and *why (if
 * not NULL) points to a static explanation. 0 or PB_EBADREQ/PB_ENOMEM. */
int pb_codec_parse_create_json(const char *body, size_t len, struct pb_create_req *req,
			       const char **why);

/* The same for a form body "route=echo&protocol=chat&protocol=x". Other
 * fields are ignored; a repeated route is an error. */
int pb_codec_parse_create_form(const char *body, size_t len, struct pb_create_req *req,
			       const char **why);

/* A parsed send request: the messages in order, and the optional request
 * sequence number. */
struct pb_send_req {
	struct pb_msg **msgs;   /* owned array of owned references */
	size_t n;
	uint64_t seq;           /* 0: none given */
};

/* Release what a send request owns and zero it. */
void pb_send_req_free(struct pb_send_req *req);

/* Parse {"messages":[{"type":"text","data":"..."},{"type":"binary","data":
 * "<base64>"}],"seq":N}. "type" defaults to "text"; "seq" is optional and
 * must be an integer from 1 to PB_NUM_MAX; an empty "messages" array is
 * allowed. At most max_msgs messages (else PB_ETOOBIG); a decoded message
 * longer than max_msg_bytes is PB_ETOOBIG; bad JSON, a missing or non-array
 * "messages", an unknown type, bad base64 and text that is not valid UTF-8
 * are PB_EBADREQ. All or nothing: on error req is left empty. */
int pb_codec_parse_send_json(const char *body, size_t len, size_t max_msg_bytes,
			     size_t max_msgs, struct pb_send_req *req, const char **why);

/* Parse a form body whose "data" fields (one or more) are text messages;
 * other fields are ignored; no "data" field is PB_EBADREQ. Same limits and
 * errors as the JSON form. */
int pb_codec_parse_send_form(const char *body, size_t len, size_t max_msg_bytes,
			     size_t max_msgs, struct pb_send_req *req, const char **why);

#endif
