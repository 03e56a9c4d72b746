/*
 * eio_codec.c: the Engine.IO polling wire formats (see eio_codec.h): poll
 * payloads (v4, v3 string, v3 binary), JSONP answers and JSONP form bodies,
 * the open packet rewrite, engine.io's error JSON, and the decoding of
 * posted payloads into upstream frames.
 *
 * Every fact here was read from the client and server libraries' own source
 * (engine.io-parser 5.x and 2.x, engine.io 6.x and 3.x, engine.io-client 3.x)
 * and checked against captures of real clients and servers
 * (notes/eio-captures.md). Encoders leave out as it was when they fail;
 * decoders fill their result only when the whole input is good.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "codec.h"
#include "eio_codec.h"
#include "error.h"

/* The v4 packet separator (ASCII record separator). */
#define EIO_SEP '\x1e'

/* Longest decimal length a payload may state (more is a bad length). */
#define EIO_MAX_LEN_DIGITS 15

static const char *const eio_messages[] = {
	"Transport unknown",
	"Session ID unknown",
	"Bad handshake method",
	"Bad request",
	"Forbidden",
	"Unsupported protocol version",
};

const char *pb_eio_error_message(int code)
{
	if (code < 0 || code >= (int)(sizeof(eio_messages) / sizeof(eio_messages[0])))
		return eio_messages[PB_EIO_ERR_BADREQ];
	return eio_messages[code];
}

/* Cut out back to len bytes (undo a failed encode). */
static void buf_cut(struct pb_buf *out, size_t len)
{
	out->len = len;
	if (out->data)
		out->data[len] = '\0';
}

/* Length of the well-formed UTF-8 sequence at s[0..len), storing its code
 * point in *cp; 0 if the bytes there are ill-formed. */
static size_t utf8_seq(const unsigned char *s, size_t len, unsigned *cp)
{
	unsigned c = s[0];
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n, i;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		c &= 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		c &= 0x0f;
		if (s[0] == 0xe0)
			lo = 0xa0;
		else if (s[0] == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		c &= 0x07;
		if (s[0] == 0xf0)
			lo = 0x90;
		else if (s[0] == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	if (len < n)
		return 0;
	for (i = 1; i < n; i++) {
		if (s[i] < lo || s[i] > hi)
			return 0;
		lo = 0x80;
		hi = 0xbf;
		c = (c << 6) | (s[i] & 0x3f);
	}
	*cp = c;
	return n;
}

size_t pb_eio_utf16_len(const void *p, size_t len)
{
	const unsigned char *s = p;
	size_t i = 0, units = 0, n;
	unsigned cp;

	while (i < len) {
		n = utf8_seq(s + i, len - i, &cp);
		if (n == 0) {
			units++;
			i++;
			continue;
		}
		units += n == 4 ? 2 : 1;
		i += n;
	}
	return units;
}

/* Append s[0..len) as the inside of a JavaScript (and JSON) string literal. */
static int put_js_chars(struct pb_buf *out, const unsigned char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t i = 0, run = 0, n;
	unsigned cp;
	char esc[8];
	int r = 0;

	while (i < len && !r) {
		unsigned char c = s[i];
		const char *e = NULL;
		size_t elen = 2;

		if (c >= 0x20 && c != '"' && c != '\\' && c != '<' && c < 0x80) {
			i++;
			continue;
		}
		n = 1;
		if (c == '"') {
			e = "\\\"";
		} else if (c == '\\') {
			e = "\\\\";
		} else if (c == '\n') {
			e = "\\n";
		} else if (c == '\r') {
			e = "\\r";
		} else if (c == '\t') {
			e = "\\t";
		} else if (c == '\b') {
			e = "\\b";
		} else if (c == '\f') {
			e = "\\f";
		} else if (c < 0x80) {
			/* Other control characters, and '<' (no "</script>"
			 * or "<!--" can appear). */
			esc[0] = '\\';
			esc[1] = 'u';
			esc[2] = '0';
			esc[3] = '0';
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			e = esc;
			elen = 6;
		} else {
			n = utf8_seq(s + i, len - i, &cp);
			if (n == 0) {
				e = "\\ufffd";
				elen = 6;
				n = 1;
			} else if (cp == 0x2028) {
				e = "\\u2028";
				elen = 6;
			} else if (cp == 0x2029) {
				e = "\\u2029";
				elen = 6;
			} else {
				i += n;
				continue;
			}
		}
		if (i > run)
			r = pb_buf_append(out, s + run, i - run);
		if (!r)
			r = pb_buf_append(out, e, elen);
		i += n;
		run = i;
	}
	if (!r && i > run)
		r = pb_buf_append(out, s + run, i - run);
	return r;
}

int pb_eio_put_error(struct pb_buf *out, int code, const char *message)
{
	size_t start = out->len;
	int r;

	if (!message)
		message = pb_eio_error_message(code);
	r = pb_buf_printf(out, "{\"code\":%d,\"message\":\"", code);
	if (!r)
		r = put_js_chars(out, (const unsigned char *)message, strlen(message));
	if (!r)
		r = pb_buf_puts(out, "\"}");
	if (r)
		buf_cut(out, start);
	return r;
}

void pb_eio_enc_init(struct pb_eio_enc *e, struct pb_buf *out, int version, int binary)
{
	e->out = out;
	e->version = version;
	e->binary = version == 3 && binary;
	e->n = 0;
}

/* Append the v3 binary payload header: kind (0 text, 1 binary), the
 * decimal digits of len as bytes 0-9, and 0xff. */
static int put_binary_header(struct pb_buf *out, int kind, size_t len)
{
	char digits[24], hdr[26];
	int nd, i;

	nd = snprintf(digits, sizeof(digits), "%zu", len);
	hdr[0] = (char)kind;
	for (i = 0; i < nd; i++)
		hdr[1 + i] = (char)(digits[i] - '0');
	hdr[1 + nd] = (char)0xff;
	return pb_buf_append(out, hdr, (size_t)nd + 2);
}

int pb_eio_enc_text(struct pb_eio_enc *e, const void *p, size_t len)
{
	size_t start = e->out->len;
	int r;

	if (e->version == 4) {
		r = e->n ? pb_buf_append(e->out, "\x1e", 1) : 0;
	} else if (e->binary) {
		r = put_binary_header(e->out, 0, len);
	} else {
		r = pb_buf_printf(e->out, "%zu:", pb_eio_utf16_len(p, len));
	}
	if (!r)
		r = pb_buf_append(e->out, p, len);
	if (r) {
		buf_cut(e->out, start);
		return r;
	}
	e->n++;
	return 0;
}

int pb_eio_enc_binary(struct pb_eio_enc *e, const void *p, size_t len)
{
	const unsigned char *s = p;
	size_t start = e->out->len, dlen = len;
	int type = 4, r;

	if (e->version == 3 && len >= 1 && s[0] <= 6) {
		type = s[0];
		s++;
		dlen--;
	}
	if (e->version == 4) {
		r = e->n ? pb_buf_append(e->out, "\x1e", 1) : 0;
		if (!r)
			r = pb_buf_append(e->out, "b", 1);
		if (!r)
			r = pb_base64_encode(e->out, s, dlen);
	} else if (e->binary) {
		unsigned char t = (unsigned char)type;

		r = put_binary_header(e->out, 1, dlen + 1);
		if (!r)
			r = pb_buf_append(e->out, &t, 1);
		if (!r)
			r = pb_buf_append(e->out, s, dlen);
	} else {
		/* "b<type><base64>": ASCII, so its length in UTF-16 units is
		 * its length in bytes. */
		r = pb_buf_printf(e->out, "%zu:b%c", 2 + (dlen + 2) / 3 * 4, '0' + type);
		if (!r)
			r = pb_base64_encode(e->out, s, dlen);
	}
	if (r) {
		buf_cut(e->out, start);
		return r;
	}
	e->n++;
	return 0;
}

int pb_eio_enc_msg(struct pb_eio_enc *e, const struct pb_msg *m)
{
	if (m->type == PB_MSG_TEXT)
		return pb_eio_enc_text(e, m->data, m->len);
	if (m->type == PB_MSG_BINARY)
		return pb_eio_enc_binary(e, m->data, m->len);
	return 0;
}

int pb_eio_put_jsonp(struct pb_buf *out, const char *index, const void *p, size_t len)
{
	size_t start = out->len, nd = 0;
	char digits[PB_EIO_MAX_JSONP_INDEX + 1];
	int r;

	for (; index && *index && nd < PB_EIO_MAX_JSONP_INDEX; index++)
		if (*index >= '0' && *index <= '9')
			digits[nd++] = *index;
	digits[nd] = '\0';
	r = pb_buf_printf(out, "___eio[%s](\"", digits);
	if (!r)
		r = put_js_chars(out, p, len);
	if (!r)
		r = pb_buf_puts(out, "\");");
	if (r)
		buf_cut(out, start);
	return r;
}

int pb_eio_rewrite_open(const void *p, size_t len, const char *sid, uint64_t max_payload,
			struct pb_buf *out)
{
	const char *s = p;
	json_t *o, *mp;
	char *txt;
	size_t start = out->len;
	int r = PB_ENOMEM;

	if (len < 3 || s[0] != '0' || s[1] != '{')
		return PB_EBADREQ;
	o = json_loadb(s + 1, len - 1, 0, NULL);
	if (!o)
		return PB_EBADREQ;
	if (!json_is_object(o)) {
		json_decref(o);
		return PB_EBADREQ;
	}
	if (json_object_set_new(o, "sid", json_string(sid)) ||
	    json_object_set_new(o, "upgrades", json_array()))
		goto out;
	if (max_payload) {
		mp = json_object_get(o, "maxPayload");
		if (json_is_integer(mp) && json_integer_value(mp) > 0 &&
		    (uint64_t)json_integer_value(mp) < max_payload)
			max_payload = (uint64_t)json_integer_value(mp);
		if (json_object_set_new(o, "maxPayload", json_integer((json_int_t)max_payload)))
			goto out;
	}
	txt = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (!txt)
		goto out;
	r = pb_buf_append(out, "0", 1);
	if (!r)
		r = pb_buf_puts(out, txt);
	free(txt);
	if (r)
		buf_cut(out, start);
out:
	json_decref(o);
	return r;
}

/* ---- decoding --------------------------------------------------------- */

void pb_eio_in_free(struct pb_eio_in *in)
{
	for (size_t i = 0; i < in->n; i++)
		pb_msg_unref(in->msgs[i]);
	free(in->msgs);
	memset(in, 0, sizeof(*in));
}

/* What one decode is bounded by. */
struct eio_dec {
	struct pb_eio_in *in;
	int version;
	size_t max_msg;
	size_t max_msgs;
	const char **why;
};

/* Fail a decode with err and a reason. */
static int dec_fail(struct eio_dec *d, int err, const char *why)
{
	if (d->why)
		*d->why = why;
	return err;
}

/* Append a new frame of type with data p[0..plen) after the optional
 * prefix byte pre (-1: none). */
static int dec_push(struct eio_dec *d, enum pb_msg_type type, int pre, const void *p, size_t plen)
{
	struct pb_eio_in *in = d->in;
	size_t len = plen + (pre >= 0);
	struct pb_msg *m;

	if (len > d->max_msg)
		return dec_fail(d, PB_ETOOBIG, "a packet is larger than the message limit");
	if (in->n >= d->max_msgs)
		return dec_fail(d, PB_ETOOBIG, "too many packets in one payload");
	if (in->n == in->cap) {
		size_t cap = in->cap ? in->cap * 2 : 8;
		struct pb_msg **t = realloc(in->msgs, cap * sizeof(*t));

		if (!t)
			return dec_fail(d, PB_ENOMEM, NULL);
		in->msgs = t;
		in->cap = cap;
	}
	m = pb_msg_new(type, NULL, len);
	if (!m)
		return dec_fail(d, PB_ENOMEM, NULL);
	if (pre >= 0)
		m->data[0] = (unsigned char)pre;
	if (plen)
		memcpy(m->data + (pre >= 0), p, plen);
	in->msgs[in->n++] = m;
	return 0;
}

/* Decode base64 s[0..len) into a binary frame (with the v3 type byte). */
static int dec_base64(struct eio_dec *d, const char *s, size_t len)
{
	unsigned char *raw;
	size_t rlen;
	int r;

	if (len / 4 * 3 > d->max_msg + 3)
		return dec_fail(d, PB_ETOOBIG, "a packet is larger than the message limit");
	raw = malloc(len / 4 * 3 + 3);
	if (!raw)
		return dec_fail(d, PB_ENOMEM, NULL);
	if (pb_base64_decode(s, len, raw, &rlen)) {
		free(raw);
		return dec_fail(d, PB_EBADREQ, "bad base64 in a binary packet");
	}
	r = dec_push(d, PB_MSG_BINARY, d->version == 3 ? 4 : -1, raw, rlen);
	free(raw);
	return r;
}

/* One text packet p[0..len) (valid UTF-8). Sets *stop on a close packet. */
static int dec_packet(struct eio_dec *d, const char *p, size_t len, int *stop)
{
	if (len == 0)
		return dec_fail(d, PB_EBADREQ, "an empty packet");
	switch (p[0]) {
	case 'b':
		if (d->version == 4)
			return dec_base64(d, p + 1, len - 1);
		if (len < 2 || p[1] != '4')
			return dec_fail(d, PB_EBADREQ, "a binary packet that is not a message");
		return dec_base64(d, p + 2, len - 2);
	case '1':
		d->in->close = 1;
		*stop = 1;
		return 0;
	case '2': case '3': case '4':
		return dec_push(d, PB_MSG_TEXT, -1, p, len);
	case '0': case '5': case '6':
		return 0;       /* open, upgrade, noop: nothing for the upstream */
	default:
		return dec_fail(d, PB_EBADREQ, "an unknown packet type");
	}
}

/* v4: packets joined by 0x1e. */
static int dec_v4(struct eio_dec *d, const char *s, size_t len)
{
	size_t i = 0;
	int stop = 0, r = 0;

	while (!r && !stop) {
		const char *sep = memchr(s + i, EIO_SEP, len - i);
		size_t plen = sep ? (size_t)(sep - (s + i)) : len - i;

		r = dec_packet(d, s + i, plen, &stop);
		if (!sep)
			break;
		i += plen + 1;
	}
	return r;
}

/* Parse a decimal length of at most EIO_MAX_LEN_DIGITS digits from
 * s[*i..len) up to the terminator byte term; *i is left past it. */
static int dec_length(struct eio_dec *d, const unsigned char *s, size_t len, size_t *i,
		      int term, int raw_digits, uint64_t *out)
{
	uint64_t v = 0;
	size_t nd = 0;

	for (;;) {
		unsigned c;

		if (*i >= len)
			return dec_fail(d, PB_EBADREQ, "a truncated length");
		c = s[(*i)++];
		if ((int)c == term)
			break;
		c = raw_digits ? c : c - '0';
		if (c > 9 || ++nd > EIO_MAX_LEN_DIGITS)
			return dec_fail(d, PB_EBADREQ, "a bad packet length");
		v = v * 10 + c;
	}
	if (nd == 0)
		return dec_fail(d, PB_EBADREQ, "a bad packet length");
	*out = v;
	return 0;
}

/* v3 string payload: "<utf16 len>:<packet>"... (s is valid UTF-8). */
static int dec_v3_string(struct eio_dec *d, const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, j, n;
	uint64_t want, units;
	unsigned cp;
	int stop = 0, r = 0;

	while (!r && !stop && i < len) {
		r = dec_length(d, u, len, &i, ':', 0, &want);
		if (r)
			break;
		for (j = i, units = 0; units < want && j < len; j += n) {
			n = utf8_seq(u + j, len - j, &cp);
			if (n == 0)
				n = 1;  /* cannot happen: s is valid UTF-8 */
			units += n == 4 ? 2 : 1;
		}
		if (units != want)
			return dec_fail(d, PB_EBADREQ, units < want ? "a truncated packet" :
					"a length that splits a character");
		if (j > i)      /* "0:" is an empty payload: nothing */
			r = dec_packet(d, s + i, j - i, &stop);
		i = j;
	}
	return r;
}

/* v3 binary payload (application/octet-stream). */
static int dec_v3_binary(struct eio_dec *d, const unsigned char *s, size_t len)
{
	size_t i = 0;
	uint64_t want;
	int stop = 0, r = 0;

	while (!r && !stop && i < len) {
		int kind = s[i++];

		if (kind != 0 && kind != 1)
			return dec_fail(d, PB_EBADREQ, "a binary payload entry that is neither "
					"text nor binary");
		r = dec_length(d, s, len, &i, 0xff, 1, &want);
		if (r)
			break;
		if (want > len - i)
			return dec_fail(d, PB_EBADREQ, "a truncated packet");
		if (want == 0)
			return dec_fail(d, PB_EBADREQ, "an empty packet");
		if (kind == 0) {
			if (!pb_utf8_valid(s + i, (size_t)want))
				return dec_fail(d, PB_EBADREQ, "a text packet that is not UTF-8");
			r = dec_packet(d, (const char *)s + i, (size_t)want, &stop);
		} else if (s[i] != 4) {
			return dec_fail(d, PB_EBADREQ, "a binary packet that is not a message");
		} else {
			r = dec_push(d, PB_MSG_BINARY, -1, s + i, (size_t)want);
		}
		i += (size_t)want;
	}
	return r;
}

int pb_eio_decode(int version, int binary_body, const void *body, size_t len, size_t max_msg,
		  size_t max_msgs, struct pb_eio_in *in, const char **why)
{
	struct eio_dec d = { in, version, max_msg, max_msgs, why };
	int r;

	memset(in, 0, sizeof(*in));
	if (len == 0)
		return dec_fail(&d, PB_EBADREQ, "an empty payload");
	if (version == 3 && binary_body) {
		r = dec_v3_binary(&d, body, len);
	} else if (!pb_utf8_valid(body, len)) {
		r = dec_fail(&d, PB_EBADREQ, "a payload that is not UTF-8");
	} else if (version == 4) {
		r = dec_v4(&d, body, len);
	} else {
		r = dec_v3_string(&d, body, len);
	}
	if (r)
		pb_eio_in_free(in);
	return r;
}

int pb_eio_jsonp_body(const char *body, size_t len, struct pb_buf *out, const char **why)
{
	struct pb_buf key, val;
	const char *p = body, *end = body + len, *unused;
	int r, found = 0;
	size_t i, o;
	char *s;

	if (!why)
		why = &unused;

	pb_buf_init(&key, 0);
	pb_buf_init(&val, out->limit);
	out->len = 0;
	while ((r = pb_form_next(&p, end, &key, &val)) == 1) {
		if (key.len != 1 || key.data[0] != 'd')
			continue;
		if (found++) {
			r = PB_EBADREQ;
			*why = "the d field is given twice";
			goto done;
		}
		/* The client escaped a newline as "\n" and "\n" as "\\n":
		 * first every "\n" not preceded by a backslash becomes a
		 * newline, then every "\\n" becomes "\n" (engine.io's two
		 * passes, in place). */
		s = val.data ? val.data : "";
		for (i = 0, o = 0; i < val.len;) {
			if (s[i] == '\\' && i + 2 < val.len && s[i + 1] == '\\' && s[i + 2] == 'n') {
				memmove(s + o, s + i, 3);
				o += 3;
				i += 3;
			} else if (s[i] == '\\' && i + 1 < val.len && s[i + 1] == 'n') {
				s[o++] = '\n';
				i += 2;
			} else {
				s[o++] = s[i++];
			}
		}
		for (i = 0, val.len = 0; i < o;) {
			if (s[i] == '\\' && i + 2 < o && s[i + 1] == '\\' && s[i + 2] == 'n') {
				s[val.len++] = '\\';
				s[val.len++] = 'n';
				i += 3;
			} else {
				s[val.len++] = s[i++];
			}
		}
		buf_cut(out, 0);
		r = pb_buf_append(out, s, val.len);
		if (r)
			goto done;
	}
	if (r < 0) {
		*why = r == PB_EBADREQ ? "a malformed escape in the form body" : NULL;
		goto done;
	}
	r = 0;
	if (!found) {
		r = PB_EBADREQ;
		*why = "the form body has no d field";
	}
done:
	pb_buf_free(&key);
	pb_buf_free(&val);
	return r;
}
