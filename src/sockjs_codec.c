/*
 * sockjs_codec.c: the SockJS wire format: URL shapes, frames and their
 * quoting, per-transport framing and preludes, /info, the iframe page,
 * send bodies and the bridge-side session id (see sockjs_codec.h).
 *
 * Two string encoders live here. pb_sockjs_quote() is the inner one, the
 * JSON of a message inside a frame, escaping what sockjs-client expects
 * escaped. js_string() is the outer one for the transports that carry a
 * frame inside JavaScript (htmlfile, jsonp): it also escapes '<', '>' and
 * '&', so that "</script>", "<!--" or a frame look-alike inside a message
 * can never end the script element the browser is parsing.
 */
#include "sockjs_codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <jansson.h>

#include "codec.h"
#include "error.h"

/* Decode one UTF-8 sequence at s[0..len) (len > 0): the code point in *cp
 * and its length, or 0 if the sequence is invalid (overlong, a surrogate,
 * above U+10FFFF, truncated). */
static size_t utf8_next(const unsigned char *s, size_t len, unsigned *cp)
{
	unsigned c = s[0], v, min;
	size_t n, i;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		v = c & 0x1f;
		min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		v = c & 0x0f;
		min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		v = c & 0x07;
		min = 0x10000;
	} else {
		return 0;
	}
	if (len < n)
		return 0;
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		v = (v << 6) | (s[i] & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return n;
}

/* Append "\uhhhh" (lower-case hex) for cp <= 0xffff. */
static int put_u(struct pb_buf *out, unsigned cp)
{
	char b[8];

	snprintf(b, sizeof(b), "\\u%04x", cp & 0xffff);
	return pb_buf_append(out, b, 6);
}

/* The short escape of a control character, or NULL. */
static const char *named_escape(unsigned c)
{
	switch (c) {
	case '\b': return "\\b";
	case '\f': return "\\f";
	case '\n': return "\\n";
	case '\r': return "\\r";
	case '\t': return "\\t";
	default: return NULL;
	}
}

/* 1 if sockjs-client wants cp escaped inside a frame's JSON. */
static int sockjs_escapable(unsigned cp)
{
	return cp < 0x20 || (cp >= 0x200c && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202f) ||
	       (cp >= 0x2060 && cp <= 0x206f) || (cp >= 0xfff0 && cp <= 0xffff);
}

/* 1 if cp must be a \uhhhh escape in a string of the outer, HTML-safe
 * kind (js_string). */
static int html_escapable(unsigned cp)
{
	return cp < 0x20 || cp == 0x7f || cp == '<' || cp == '>' || cp == '&' || cp == '\'' ||
	       cp == 0x2028 || cp == 0x2029;
}

/* The length of the run at s[0..len) that quote_with() copies as it is:
 * printable ASCII other than '"' and '\\' (pb_json_plain_span, eight
 * bytes at a time), cut at the first byte escapable() picks (none for
 * sockjs_escapable; '<', '>', '&' and '\'' for html_escapable). */
static size_t plain_run(const unsigned char *s, size_t len, int (*escapable)(unsigned))
{
	size_t n = pb_json_plain_span(s, len), i;

	if (escapable == sockjs_escapable)
		return n;
	for (i = 0; i < n && !escapable(s[i]); i++)
		;
	return i;
}

/* Append s[0..len) as a double-quoted string: quote and backslash escaped,
 * the named control escapes, \uhhhh for every code point escapable()
 * picks, invalid UTF-8 as U+FFFD, the rest copied (plain runs whole). On
 * error out is left as it was. */
static int quote_with(struct pb_buf *out, const unsigned char *s, size_t len,
		      int (*escapable)(unsigned))
{
	size_t start = out->len, i = 0, n;
	unsigned cp;
	int r;

	r = pb_buf_reserve(out, len + 2);
	if (!r)
		r = pb_buf_append(out, "\"", 1);
	while (!r && i < len) {
		n = plain_run(s + i, len - i, escapable);
		if (n) {
			r = pb_buf_append(out, s + i, n);
			i += n;
			continue;
		}
		n = utf8_next(s + i, len - i, &cp);
		if (!n) {
			r = put_u(out, 0xfffd);
			i++;
			continue;
		}
		if (cp == '"') {
			r = pb_buf_append(out, "\\\"", 2);
		} else if (cp == '\\') {
			r = pb_buf_append(out, "\\\\", 2);
		} else if (named_escape(cp)) {
			r = pb_buf_append(out, named_escape(cp), 2);
		} else if (escapable(cp)) {
			r = put_u(out, cp);
		} else {
			r = pb_buf_append(out, s + i, n);
		}
		i += n;
	}
	if (!r)
		r = pb_buf_append(out, "\"", 1);
	if (r)
		out->len = start;
	return r;
}

int pb_sockjs_quote(struct pb_buf *out, const void *str, size_t len)
{
	return quote_with(out, str, len, sockjs_escapable);
}

/* Append s[0..len) as a double-quoted JavaScript string that is also safe
 * inside an HTML <script> element (see the top of the file). */
static int js_string(struct pb_buf *out, const char *str, size_t len)
{
	return quote_with(out, (const unsigned char *)str, len, html_escapable);
}

/* 1 if seg[0..len) names a session or server: non-empty, no '/' or '.'. */
static int id_segment_ok(const char *seg, size_t len)
{
	return len > 0 && !memchr(seg, '.', len) && !memchr(seg, '/', len);
}

/* 1 if name[0..len) is "iframe" [0-9a-z._-]* ".html". */
static int iframe_name(const char *name, size_t len)
{
	size_t i;

	if (len < 11 || memcmp(name, "iframe", 6) || memcmp(name + len - 5, ".html", 5))
		return 0;
	for (i = 6; i < len - 5; i++) {
		char c = name[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == '.' || c == '-' ||
		      c == '_'))
			return 0;
	}
	return 1;
}

/* The transports by their URL names. */
static const struct {
	const char *name;
	enum pb_sockjs_transport t;
} transports[] = {
	{ "xhr", PB_SOCKJS_XHR },
	{ "xhr_send", PB_SOCKJS_XHR_SEND },
	{ "xhr_streaming", PB_SOCKJS_XHR_STREAMING },
	{ "eventsource", PB_SOCKJS_EVENTSOURCE },
	{ "htmlfile", PB_SOCKJS_HTMLFILE },
	{ "jsonp", PB_SOCKJS_JSONP },
	{ "jsonp_send", PB_SOCKJS_JSONP_SEND },
	{ "websocket", PB_SOCKJS_WEBSOCKET },
};

void pb_sockjs_parse_path(const char *sub, size_t len, struct pb_sockjs_path *p)
{
	const char *seg[4];
	size_t seglen[4], nseg = 0, i, start;

	memset(p, 0, sizeof(*p));
	p->kind = PB_SOCKJS_NOT_FOUND;
	if (len == 0 || (len == 1 && sub[0] == '/')) {
		p->kind = PB_SOCKJS_GREETING;
		return;
	}
	if (sub[0] != '/')
		return;
	sub++;
	len--;
	if (len > 0 && sub[len - 1] == '/')
		len--;
	/* Split into at most 4 segments (more is not found anyway). */
	start = 0;
	for (i = 0; i <= len; i++) {
		if (i == len || sub[i] == '/') {
			if (nseg == 4)
				return;
			seg[nseg] = sub + start;
			seglen[nseg] = i - start;
			nseg++;
			start = i + 1;
		}
	}
	if (nseg == 1) {
		if (seglen[0] == 4 && !memcmp(seg[0], "info", 4))
			p->kind = PB_SOCKJS_INFO;
		else if (seglen[0] == 9 && !memcmp(seg[0], "websocket", 9))
			p->kind = PB_SOCKJS_RAW_WEBSOCKET;
		else if (iframe_name(seg[0], seglen[0]))
			p->kind = PB_SOCKJS_IFRAME;
		return;
	}
	if (nseg != 3 || !id_segment_ok(seg[0], seglen[0]) || !id_segment_ok(seg[1], seglen[1]))
		return;
	for (i = 0; i < sizeof(transports) / sizeof(transports[0]); i++) {
		if (strlen(transports[i].name) == seglen[2] &&
		    !memcmp(transports[i].name, seg[2], seglen[2])) {
			p->kind = PB_SOCKJS_SESSION;
			p->transport = transports[i].t;
			p->server = seg[0];
			p->server_len = seglen[0];
			p->session = seg[1];
			p->session_len = seglen[1];
			return;
		}
	}
}

int pb_sockjs_receiving(enum pb_sockjs_transport t)
{
	return t == PB_SOCKJS_XHR || t == PB_SOCKJS_XHR_STREAMING || t == PB_SOCKJS_EVENTSOURCE ||
	       t == PB_SOCKJS_HTMLFILE || t == PB_SOCKJS_JSONP;
}

int pb_sockjs_streaming(enum pb_sockjs_transport t)
{
	return t == PB_SOCKJS_XHR_STREAMING || t == PB_SOCKJS_EVENTSOURCE ||
	       t == PB_SOCKJS_HTMLFILE;
}

int pb_sockjs_session_id(const char *route, const char *session, size_t session_len,
			 const char *client_addr, char out[PB_ID_LEN + 1])
{
	struct pb_buf in;
	unsigned char digest[32];
	int r;

	pb_buf_init(&in, 0);
	r = pb_buf_puts(&in, route);
	if (!r)
		r = pb_buf_append(&in, "", 1);
	if (!r)
		r = pb_buf_append(&in, session, session_len);
	if (!r)
		r = pb_buf_append(&in, "", 1);
	if (!r)
		r = pb_buf_puts(&in, client_addr);
	if (!r && gnutls_hash_fast(GNUTLS_DIG_SHA256, in.data, in.len, digest) < 0)
		r = PB_ENOMEM;
	pb_buf_free(&in);
	if (r)
		return r;
	pb_base64url_encode(digest, PB_ID_BYTES, out);
	out[PB_ID_LEN - 1] = '.';
	out[PB_ID_LEN] = '\0';
	return 0;
}

int pb_sockjs_callback_valid(const char *s, size_t len)
{
	return len <= PB_SOCKJS_MAX_CALLBACK && pb_jsonp_callback_valid(s, len);
}

int pb_sockjs_frame_messages(struct pb_buf *out, struct pb_msg *const *msgs, size_t n)
{
	size_t start = out->len, i;
	int r, first = 1;

	r = pb_buf_append(out, "a[", 2);
	for (i = 0; !r && i < n; i++) {
		if (msgs[i]->type != PB_MSG_TEXT)
			continue;
		if (!first)
			r = pb_buf_append(out, ",", 1);
		if (!r)
			r = pb_sockjs_quote(out, msgs[i]->data, msgs[i]->len);
		first = 0;
	}
	if (!r)
		r = pb_buf_append(out, "]", 1);
	if (r)
		out->len = start;
	return r;
}

int pb_sockjs_frame_close(struct pb_buf *out, int code, const char *reason, size_t reason_len)
{
	size_t start = out->len;
	int r;

	r = pb_buf_printf(out, "c[%d,", code);
	if (!r)
		r = pb_sockjs_quote(out, reason ? reason : "", reason ? reason_len : 0);
	if (!r)
		r = pb_buf_append(out, "]", 1);
	if (r)
		out->len = start;
	return r;
}

/* Append frame for eventsource: '%', CR, LF and NUL percent-encoded. */
static int put_event_data(struct pb_buf *out, const char *frame, size_t len)
{
	size_t i;
	int r = 0;

	for (i = 0; !r && i < len; i++) {
		unsigned char c = (unsigned char)frame[i];

		if (c == '%' || c == '\r' || c == '\n' || c == '\0')
			r = pb_buf_printf(out, "%%%02X", c);
		else
			r = pb_buf_append(out, &frame[i], 1);
	}
	return r;
}

int pb_sockjs_wrap(struct pb_buf *out, enum pb_sockjs_transport t, const char *frame,
		   size_t len, const char *callback)
{
	size_t start = out->len;
	int r;

	switch (t) {
	case PB_SOCKJS_EVENTSOURCE:
		r = pb_buf_puts(out, "data: ");
		if (!r)
			r = put_event_data(out, frame, len);
		if (!r)
			r = pb_buf_puts(out, "\r\n\r\n");
		break;
	case PB_SOCKJS_HTMLFILE:
		r = pb_buf_puts(out, "<script>\np(");
		if (!r)
			r = js_string(out, frame, len);
		if (!r)
			r = pb_buf_puts(out, ");\n</script>\r\n");
		break;
	case PB_SOCKJS_JSONP:
		r = pb_buf_puts(out, "/**/");
		if (!r)
			r = pb_buf_puts(out, callback ? callback : "");
		if (!r)
			r = pb_buf_append(out, "(", 1);
		if (!r)
			r = js_string(out, frame, len);
		if (!r)
			r = pb_buf_puts(out, ");\r\n");
		break;
	default:
		r = pb_buf_append(out, frame, len);
		if (!r)
			r = pb_buf_append(out, "\n", 1);
		break;
	}
	if (r)
		out->len = start;
	return r;
}

/* The htmlfile page up to its callback, and after it. The page is padded
 * past 1 KiB: old browsers render nothing of a stream before that. */
static const char htmlfile_head[] =
	"<!DOCTYPE html>\n"
	"<html><head>\n"
	"<meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n"
	"<meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n"
	"</head><body><p>SockJS htmlfile stream</p>\n"
	"<script>\n"
	"  try { document.domain = document.domain; } catch (e) {}\n"
	"  var c = parent.";
static const char htmlfile_tail[] =
	";\n"
	"  c.start();\n"
	"  function p(d) { c.message(d); }\n"
	"  window.onload = function () { c.stop(); };\n"
	"</script>";
#define HTMLFILE_PAD 1024

int pb_sockjs_prelude(struct pb_buf *out, enum pb_sockjs_transport t, const char *callback)
{
	size_t start = out->len;
	int r = 0;

	switch (t) {
	case PB_SOCKJS_XHR_STREAMING:
		r = pb_buf_reserve(out, 2049);
		if (!r) {
			memset(out->data + out->len, 'h', 2048);
			out->len += 2048;
			r = pb_buf_append(out, "\n", 1);
		}
		break;
	case PB_SOCKJS_EVENTSOURCE:
		r = pb_buf_puts(out, "\r\n");
		break;
	case PB_SOCKJS_HTMLFILE:
		r = pb_buf_puts(out, htmlfile_head);
		if (!r)
			r = pb_buf_puts(out, callback ? callback : "");
		if (!r)
			r = pb_buf_puts(out, htmlfile_tail);
		while (!r && out->len - start < HTMLFILE_PAD)
			r = pb_buf_append(out, " ", 1);
		if (!r)
			r = pb_buf_puts(out, "\r\n\r\n");
		break;
	default:
		break;
	}
	if (r)
		out->len = start;
	return r;
}

int pb_sockjs_info(struct pb_buf *out, int cookie_needed, uint32_t entropy)
{
	return pb_buf_printf(out,
			     "{\"websocket\":false,\"origins\":[\"*:*\"],\"cookie_needed\":%s,"
			     "\"entropy\":%lu}",
			     cookie_needed ? "true" : "false", (unsigned long)entropy);
}

/* Append s with the HTML attribute specials escaped. */
static int put_html_attr(struct pb_buf *out, const char *s)
{
	int r = 0;

	for (; !r && *s; s++) {
		switch (*s) {
		case '&': r = pb_buf_puts(out, "&amp;"); break;
		case '"': r = pb_buf_puts(out, "&quot;"); break;
		case '\'': r = pb_buf_puts(out, "&#39;"); break;
		case '<': r = pb_buf_puts(out, "&lt;"); break;
		case '>': r = pb_buf_puts(out, "&gt;"); break;
		default: r = pb_buf_append(out, s, 1); break;
		}
	}
	return r;
}

int pb_sockjs_iframe(struct pb_buf *out, const char *sockjs_url, char etag[PB_SOCKJS_ETAG_LEN + 1])
{
	size_t start = out->len, i;
	unsigned char digest[32];
	int r;

	r = pb_buf_puts(out,
			"<!DOCTYPE html>\n"
			"<html>\n"
			"<head>\n"
			"  <meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n"
			"  <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n"
			"  <script src=\"");
	if (!r)
		r = put_html_attr(out, sockjs_url ? sockjs_url : "");
	if (!r)
		r = pb_buf_puts(out,
				"\"></script>\n"
				"  <script>\n"
				"    try { document.domain = document.domain; } catch (e) {}\n"
				"    SockJS.bootstrap_iframe();\n"
				"  </script>\n"
				"</head>\n"
				"<body>\n"
				"  <p>SockJS iframe of pollbridge: it relays the page's SockJS "
				"session from this origin.</p>\n"
				"</body>\n"
				"</html>\n");
	if (!r && gnutls_hash_fast(GNUTLS_DIG_SHA256, out->data + start, out->len - start,
				   digest) < 0)
		r = PB_ENOMEM;
	if (r) {
		out->len = start;
		return r;
	}
	etag[0] = '"';
	for (i = 0; i < 16; i++)
		snprintf(etag + 1 + 2 * i, 3, "%02x", digest[i]);
	etag[33] = '"';
	etag[34] = '\0';
	return 0;
}

/* ---- send bodies ---------------------------------------------------------- */

/* What a strict parse of an array of strings found. */
enum { ARR_OK = 0, ARR_NOT = 1 };

/* Skip JSON whitespace from *i. */
static void skip_ws(const char *s, size_t len, size_t *i)
{
	while (*i < len && (s[*i] == ' ' || s[*i] == '\t' || s[*i] == '\n' || s[*i] == '\r'))
		(*i)++;
}

/* Four hex digits at s[0..4) into *v; 0 or -1. */
static int hex4(const char *s, unsigned *v)
{
	unsigned x = 0;
	int k;

	for (k = 0; k < 4; k++) {
		char c = s[k];

		x <<= 4;
		if (c >= '0' && c <= '9')
			x |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			x |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			x |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*v = x;
	return 0;
}

/* Append cp as UTF-8. */
static int put_utf8(struct pb_buf *b, unsigned cp)
{
	unsigned char u[4];
	size_t n;

	if (cp < 0x80) {
		u[0] = (unsigned char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (unsigned char)(0xc0 | (cp >> 6));
		u[1] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (unsigned char)(0xe0 | (cp >> 12));
		u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (unsigned char)(0xf0 | (cp >> 18));
		u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	return pb_buf_append(b, u, n);
}

/* Parse the JSON string starting at s[*i] == '"' into b (decoded UTF-8);
 * *i ends past the closing quote. 0, ARR_NOT (malformed), or the pb_buf
 * error (PB_ETOOBIG past b's limit, PB_ENOMEM). */
static int parse_string(const char *s, size_t len, size_t *i, struct pb_buf *b)
{
	size_t p = *i + 1, n;
	unsigned cp, lo;
	int r = 0;

	b->len = 0;
	while (!r) {
		if (p >= len)
			return ARR_NOT;
		unsigned char c = (unsigned char)s[p];

		if (c == '"') {
			*i = p + 1;
			return 0;
		}
		if (c < 0x20)
			return ARR_NOT;
		if (c != '\\') {
			n = utf8_next((const unsigned char *)s + p, len - p, &cp);
			if (!n)
				return ARR_NOT;
			r = pb_buf_append(b, s + p, n);
			p += n;
			continue;
		}
		if (p + 1 >= len)
			return ARR_NOT;
		switch (s[p + 1]) {
		case '"': r = pb_buf_append(b, "\"", 1); p += 2; continue;
		case '\\': r = pb_buf_append(b, "\\", 1); p += 2; continue;
		case '/': r = pb_buf_append(b, "/", 1); p += 2; continue;
		case 'b': r = pb_buf_append(b, "\b", 1); p += 2; continue;
		case 'f': r = pb_buf_append(b, "\f", 1); p += 2; continue;
		case 'n': r = pb_buf_append(b, "\n", 1); p += 2; continue;
		case 'r': r = pb_buf_append(b, "\r", 1); p += 2; continue;
		case 't': r = pb_buf_append(b, "\t", 1); p += 2; continue;
		case 'u': break;
		default: return ARR_NOT;
		}
		if (p + 6 > len || hex4(s + p + 2, &cp))
			return ARR_NOT;
		p += 6;
		if (cp >= 0xd800 && cp <= 0xdbff && p + 6 <= len && s[p] == '\\' && s[p + 1] == 'u' &&
		    !hex4(s + p + 2, &lo) && lo >= 0xdc00 && lo <= 0xdfff) {
			cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			p += 6;
		} else if (cp >= 0xd800 && cp <= 0xdfff) {
			cp = 0xfffd;    /* a lone surrogate, as a browser sends it */
		}
		r = put_utf8(b, cp);
	}
	return r;
}

/* Parse s[0..len) as a JSON array of strings into req. 0, ARR_NOT, or
 * PB_ETOOBIG / PB_ENOMEM. */
static int parse_array(const char *s, size_t len, size_t max_msg_bytes, size_t max_msgs,
		       struct pb_send_req *req)
{
	struct pb_buf str;
	struct pb_msg *m, **grown;
	size_t i = 0, cap = 0;
	int r = 0;

	pb_buf_init(&str, max_msg_bytes ? max_msg_bytes : 0);
	skip_ws(s, len, &i);
	if (i >= len || s[i] != '[') {
		r = ARR_NOT;
		goto out;
	}
	i++;
	skip_ws(s, len, &i);
	if (i < len && s[i] == ']') {
		i++;
		goto end;
	}
	for (;;) {
		if (i >= len || s[i] != '"') {
			r = ARR_NOT;
			goto out;
		}
		r = parse_string(s, len, &i, &str);
		if (r)
			goto out;
		if (max_msgs && req->n == max_msgs) {
			r = PB_ETOOBIG;
			goto out;
		}
		if (req->n == cap) {
			cap = cap ? cap * 2 : 8;
			grown = realloc(req->msgs, cap * sizeof(*grown));
			if (!grown) {
				r = PB_ENOMEM;
				goto out;
			}
			req->msgs = grown;
		}
		m = pb_msg_new(PB_MSG_TEXT, str.data ? str.data : "", str.len);
		if (!m) {
			r = PB_ENOMEM;
			goto out;
		}
		req->msgs[req->n++] = m;
		skip_ws(s, len, &i);
		if (i < len && s[i] == ',') {
			i++;
			skip_ws(s, len, &i);
			continue;
		}
		if (i < len && s[i] == ']') {
			i++;
			break;
		}
		r = ARR_NOT;
		goto out;
	}
end:
	skip_ws(s, len, &i);
	if (i != len)
		r = ARR_NOT;
out:
	pb_buf_free(&str);
	return r;
}

/* Parse a JSON array-of-strings body; the SockJS error wording. */
static int parse_json_body(const char *s, size_t len, size_t max_msg_bytes, size_t max_msgs,
			   struct pb_send_req *req, const char **why)
{
	json_t *j;
	int r;

	if (len == 0) {
		*why = PB_SOCKJS_PAYLOAD_EXPECTED;
		return PB_EBADREQ;
	}
	r = parse_array(s, len, max_msg_bytes, max_msgs, req);
	if (r == 0)
		return 0;
	pb_send_req_free(req);
	if (r == PB_ETOOBIG) {
		*why = "Message too large.";
		return r;
	}
	if (r != ARR_NOT) {
		*why = "Out of memory.";
		return r;
	}
	/* Not an array of strings: valid JSON of another shape, or not JSON. */
	j = json_loadb(s, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	*why = j ? PB_SOCKJS_PAYLOAD_EXPECTED : PB_SOCKJS_BROKEN_JSON;
	json_decref(j);
	return PB_EBADREQ;
}

int pb_sockjs_parse_send(const char *body, size_t len, int form, size_t max_msg_bytes,
			 size_t max_msgs, struct pb_send_req *req, const char **why)
{
	struct pb_buf key, val;
	const char *p = body, *end = body + len;
	int r = 0, found = 0;
	const char *dummy;

	if (!why)
		why = &dummy;
	memset(req, 0, sizeof(*req));
	if (!body)
		len = 0;
	if (!form)
		return parse_json_body(body, len, max_msg_bytes, max_msgs, req, why);
	pb_buf_init(&key, len + 1);
	pb_buf_init(&val, len + 1);
	while (len && (r = pb_form_next(&p, end, &key, &val)) == 1) {
		if (key.len == 1 && key.data[0] == 'd') {
			found = 1;
			break;
		}
	}
	if (len && r < 0 && r != 1) {
		*why = r == PB_EBADREQ ? PB_SOCKJS_BROKEN_JSON : "Out of memory.";
		if (r != PB_EBADREQ)
			r = PB_ENOMEM;
		goto out;
	}
	if (!found || val.len == 0) {
		*why = PB_SOCKJS_PAYLOAD_EXPECTED;
		r = PB_EBADREQ;
		goto out;
	}
	r = parse_json_body(val.data, val.len, max_msg_bytes, max_msgs, req, why);
out:
	pb_buf_free(&key);
	pb_buf_free(&val);
	return r;
}
