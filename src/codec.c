/*
 * codec.c: the byte-level formats of the API (see codec.h): number syntax,
 * UTF-8 validation, base64 and base64url, session ids, the hand-written JSON
 * encoders of the poll path, form decoding, and the create and send request
 * parsers.
 *
 * Decoding of client JSON is left to jansson; encoding is done here, straight
 * into the caller's pb_buf, because it runs once per delivered message.
 * Encoders copy unescaped spans with one append and, on failure, cut the
 * buffer back to where they started, so a failed encode leaves no partial
 * output. Parsers fill their request only when the whole input is good.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <jansson.h>

#include "codec.h"
#include "error.h"

static const char b64_std[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Standard base64 digit values of ASCII bytes; -1 for anything else. */
static const signed char b64_val[128] = {
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 62, -1, -1, -1, 63,
	52, 53, 54, 55, 56, 57, 58, 59, 60, 61, -1, -1, -1, -1, -1, -1,
	-1,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14,
	15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, -1, -1, -1, -1, -1,
	-1, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
	41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, -1, -1, -1, -1, -1,
};

/* How each ASCII byte goes into a JSON string: 0 copied as is, 'u' as
 * \u00XX, any other letter as a backslash and that letter. */
static const char json_esc[128] = {
	'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'b', 't', 'n', 'u', 'f', 'r', 'u', 'u',
	'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
	['"'] = '"',
	['\\'] = '\\',
	[0x7f] = 'u',
};

static const char hex_digits[] = "0123456789abcdef";

/* Cut b back to len bytes, undoing a partial encode. */
static void buf_truncate(struct pb_buf *b, size_t len)
{
	b->len = len;
	if (b->data)
		b->data[len] = '\0';
}

/* Empty b, keeping its storage. */
static void buf_reset(struct pb_buf *b)
{
	buf_truncate(b, 0);
}

/* Store text in *why (if wanted) and return err. */
static int fail(const char **why, const char *text, int err)
{
	if (why)
		*why = text;
	return err;
}

int pb_parse_uint53(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (len == 0)
		return PB_EBADREQ;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return PB_EBADREQ;
		/* PB_NUM_MAX * 10 + 9 still fits in 64 bits, so this cannot wrap. */
		v = v * 10 + (uint64_t)(s[i] - '0');
		if (v > PB_NUM_MAX)
			return PB_EBADREQ;
	}
	*out = v;
	return 0;
}

/*
 * Length (2 to 4) of the well-formed UTF-8 sequence at p[0..n), whose first
 * byte is not ASCII; or 0 with *bad set to the length of the ill-formed
 * prefix (its "maximal subpart", at least 1) that one U+FFFD replaces.
 */
static size_t utf8_seq(const unsigned char *p, size_t n, size_t *bad)
{
	unsigned char c = p[0], lo = 0x80, hi = 0xbf;
	size_t need, i;

	if (c >= 0xc2 && c <= 0xdf) {
		need = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		need = 3;
		if (c == 0xe0)
			lo = 0xa0;      /* overlong */
		else if (c == 0xed)
			hi = 0x9f;      /* surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		need = 4;
		if (c == 0xf0)
			lo = 0x90;      /* overlong */
		else if (c == 0xf4)
			hi = 0x8f;      /* above U+10FFFF */
	} else {
		*bad = 1;
		return 0;
	}
	for (i = 1; i < need; i++) {
		if (i >= n || p[i] < lo || p[i] > hi) {
			*bad = i;
			return 0;
		}
		lo = 0x80;
		hi = 0xbf;
	}
	return need;
}

/* Word-at-a-time byte tests (each is exact for "some byte of w"): the
 * delivery path scans every message's text, mostly ASCII, 8 bytes a step. */
#define ONES ((uint64_t)0x0101010101010101ULL)
#define HIGHS (ONES * 0x80)
/* some byte of w is zero */
#define HAS_ZERO(w) (((w) - ONES) & ~(w) & HIGHS)
/* some byte of w is below n (n <= 128) */
#define HAS_LESS(w, n) (((w) - ONES * (n)) & ~(w) & HIGHS)
/* some byte of w is above n (n <= 127) */
#define HAS_MORE(w, n) ((((w) + ONES * (127 - (n))) | (w)) & HIGHS)

/* Load 8 bytes from p, any alignment. */
static uint64_t load8(const unsigned char *p)
{
	uint64_t w;

	memcpy(&w, p, sizeof(w));
	return w;
}

/* Length of the ASCII prefix of s[0..len), found 8 bytes at a time (at
 * most 7 ASCII bytes before the first non-ASCII one are left to the
 * caller's byte loop). */
static size_t ascii_words(const unsigned char *s, size_t len)
{
	size_t i = 0;

	while (len - i >= 8 && !(load8(s + i) & HIGHS))
		i += 8;
	return i;
}

/* Length of the prefix of s[0..len) that goes into a JSON string as it
 * is: printable ASCII other than '"' and '\\' (json_esc 0). At least 1 if
 * s[0] is such a byte. */
static size_t json_plain_span(const unsigned char *s, size_t len)
{
	size_t i = 0;

	for (; len - i >= 8; i += 8) {
		uint64_t w = load8(s + i);

		if (HAS_LESS(w, 0x20) || HAS_MORE(w, 0x7e) || HAS_ZERO(w ^ (ONES * '"')) ||
		    HAS_ZERO(w ^ (ONES * '\\')))
			break;
	}
	while (i < len && s[i] < 0x80 && !json_esc[s[i]])
		i++;
	return i;
}

size_t pb_json_plain_span(const void *s, size_t len)
{
	return json_plain_span(s, len);
}

int pb_utf8_valid(const void *p, size_t len)
{
	const unsigned char *s = p;
	size_t i = 0, n, bad;

	while (i < len) {
		if (s[i] < 0x80) {
			i += 1 + ascii_words(s + i + 1, len - i - 1);
			continue;
		}
		n = utf8_seq(s + i, len - i, &bad);
		if (!n)
			return 0;
		i += n;
	}
	return 1;
}

/* Write the base64 of in[0..len) with alphabet to out (padded if pad);
 * returns the number of characters written. */
static size_t b64_encode(const char *alphabet, int pad, const unsigned char *in,
			 size_t len, char *out)
{
	char *o = out;
	uint32_t v;

	for (; len >= 3; in += 3, len -= 3) {
		v = (uint32_t)in[0] << 16 | (uint32_t)in[1] << 8 | in[2];
		*o++ = alphabet[v >> 18];
		*o++ = alphabet[v >> 12 & 63];
		*o++ = alphabet[v >> 6 & 63];
		*o++ = alphabet[v & 63];
	}
	if (len) {
		v = (uint32_t)in[0] << 16 | (len == 2 ? (uint32_t)in[1] << 8 : 0);
		*o++ = alphabet[v >> 18];
		*o++ = alphabet[v >> 12 & 63];
		if (len == 2)
			*o++ = alphabet[v >> 6 & 63];
		else if (pad)
			*o++ = '=';
		if (pad)
			*o++ = '=';
	}
	return (size_t)(o - out);
}

int pb_base64_encode(struct pb_buf *out, const void *data, size_t len)
{
	size_t n;
	int r;

	if (len > (SIZE_MAX - 2) / 4 * 3)
		return PB_ETOOBIG;
	n = (len + 2) / 3 * 4;
	r = pb_buf_reserve(out, n);
	if (r)
		return r;
	b64_encode(b64_std, 1, data, len, out->data + out->len);
	out->len += n;
	out->data[out->len] = '\0';
	return 0;
}

/* Check the length and padding of standard base64 in[0..len); set *digits
 * to the number of digits before the padding and *outlen to the decoded
 * size. The digits themselves are checked while decoding. */
static int b64_shape(const char *in, size_t len, size_t *digits, size_t *outlen)
{
	size_t d = len;

	if (len % 4 == 0 && len > 0 && in[len - 1] == '=') {
		d--;
		if (in[len - 2] == '=')
			d--;
	}
	if (d % 4 == 1)
		return PB_EBADREQ;
	*digits = d;
	*outlen = d / 4 * 3 + (d % 4 ? d % 4 - 1 : 0);
	return 0;
}

/* Decode the d base64 digits at in into out (which has room for exactly
 * the decoded size): PB_EBADREQ for a non-digit or non-zero unused bits. */
static int b64_decode_digits(const char *in, size_t d, unsigned char *out)
{
	const unsigned char *s = (const unsigned char *)in;
	uint32_t v = 0;
	size_t i;
	int x;

	for (i = 0; i < d; i++) {
		x = s[i] < 128 ? b64_val[s[i]] : -1;
		if (x < 0)
			return PB_EBADREQ;
		v = v << 6 | (uint32_t)x;
		if (i % 4 == 3) {
			*out++ = (unsigned char)(v >> 16);
			*out++ = (unsigned char)(v >> 8);
			*out++ = (unsigned char)v;
			v = 0;
		}
	}
	switch (d % 4) {
	case 2:
		if (v & 0x0f)
			return PB_EBADREQ;
		*out = (unsigned char)(v >> 4);
		break;
	case 3:
		if (v & 0x03)
			return PB_EBADREQ;
		*out++ = (unsigned char)(v >> 10);
		*out = (unsigned char)(v >> 2);
		break;
	}
	return 0;
}

int pb_base64_decode(const char *in, size_t len, unsigned char *out, size_t *outlen)
{
	size_t d, n;
	int r;

	r = b64_shape(in, len, &d, &n);
	if (r)
		return r;
	r = b64_decode_digits(in, d, out);
	if (r)
		return r;
	*outlen = n;
	return 0;
}

void pb_base64url_encode(const void *data, size_t len, char *out)
{
	out[b64_encode(b64_url, 0, data, len, out)] = '\0';
}

int pb_session_id_new(char out[PB_ID_LEN + 1])
{
	unsigned char raw[PB_ID_BYTES];
	size_t got = 0;
	ssize_t n;

	while (got < sizeof(raw)) {
		n = getrandom(raw + got, sizeof(raw) - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return PB_ENOMEM;
		}
		got += (size_t)n;
	}
	pb_base64url_encode(raw, sizeof(raw), out);
	return 0;
}

int pb_session_id_valid(const char *s, size_t len)
{
	/* The base64url alphabet as a bitmap of the 128 ASCII codes: '-' (45)
	 * and '0'-'9' (48-57) in the low word; 'A'-'Z' (65-90), '_' (95) and
	 * 'a'-'z' (97-122) in the high one. */
	static const uint64_t ok[2] = { 0x03ff200000000000ull, 0x07fffffe87fffffeull };
	unsigned char c;

	if (len != PB_ID_LEN)
		return 0;
	for (size_t i = 0; i < len; i++) {
		c = (unsigned char)s[i];
		if (c >= 128 || !(ok[c >> 6] >> (c & 63) & 1))
			return 0;
	}
	return 1;
}

/* Append the pending unescaped span s[run..i), if any. */
static int put_span(struct pb_buf *out, const unsigned char *s, size_t run, size_t i)
{
	return i > run ? pb_buf_append(out, s + run, i - run) : 0;
}

/* Append the JSON escape for the ASCII byte c, whose json_esc entry is e. */
static int json_put_escape(struct pb_buf *out, unsigned char c, char e)
{
	char tmp[6] = { '\\', e, '0', '0', hex_digits[c >> 4], hex_digits[c & 15] };

	return pb_buf_append(out, tmp, e == 'u' ? 6 : 2);
}

int pb_json_put_string(struct pb_buf *out, const void *p, size_t len)
{
	const unsigned char *s = p;
	size_t start = out->len, i = 0, run = 0, n, bad;
	int r;

	/* The output is never shorter than the input plus quotes. */
	if (len > SIZE_MAX - 2)
		return PB_ETOOBIG;
	r = pb_buf_reserve(out, len + 2);
	if (r)
		return r;
	out->data[out->len++] = '"';
	while (i < len) {
		if (s[i] < 0x80) {
			if (!json_esc[s[i]]) {
				i += json_plain_span(s + i, len - i);
				continue;
			}
			r = put_span(out, s, run, i);
			if (!r)
				r = json_put_escape(out, s[i], json_esc[s[i]]);
			if (r)
				goto out;
			run = ++i;
			continue;
		}
		n = utf8_seq(s + i, len - i, &bad);
		if (n == 3 && s[i] == 0xe2 && s[i + 1] == 0x80 &&
		    (s[i + 2] == 0xa8 || s[i + 2] == 0xa9)) {
			r = put_span(out, s, run, i);
			if (!r)
				r = pb_buf_puts(out, s[i + 2] == 0xa8 ? "\\u2028" : "\\u2029");
			if (r)
				goto out;
			i += 3;
			run = i;
		} else if (n) {
			i += n;
		} else {
			r = put_span(out, s, run, i);
			if (!r)
				r = pb_buf_append(out, "\xef\xbf\xbd", 3);
			if (r)
				goto out;
			i += bad;
			run = i;
		}
	}
	r = put_span(out, s, run, i);
	if (!r)
		r = pb_buf_append(out, "\"", 1);
out:
	if (r)
		buf_truncate(out, start);
	return r;
}

/* The fixed start of a message object up to its data: sep (a ',' or
 * nothing), {"seq":N,"type":"..." and, for data, ,"data": (and the opening
 * quote of base64). One append instead of one per piece. */
static int put_message_head(struct pb_buf *out, const struct pb_msg *m, const char *sep)
{
	static const char *const types[] = {
		[PB_MSG_TEXT] = ",\"type\":\"text\",\"data\":",
		[PB_MSG_BINARY] = ",\"type\":\"binary\",\"data\":\"",
		[PB_MSG_REOPEN] = ",\"type\":\"reopen\"",
	};
	char head[80], digits[24];
	size_t n, d = sizeof(digits), tlen;
	uint64_t v = m->seq;

	if (m->type > PB_MSG_REOPEN)
		return PB_ENOMEM;       /* a corrupt message: our error, not the client's */
	do {
		digits[--d] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	n = strlen(sep);
	memcpy(head, sep, n);
	memcpy(head + n, "{\"seq\":", 7);
	n += 7;
	memcpy(head + n, digits + d, sizeof(digits) - d);
	n += sizeof(digits) - d;
	tlen = strlen(types[m->type]);
	memcpy(head + n, types[m->type], tlen);
	return pb_buf_append(out, head, n + tlen);
}

/* One message object, after sep. */
static int put_message(struct pb_buf *out, const struct pb_msg *m, const char *sep)
{
	size_t start = out->len;
	int r = put_message_head(out, m, sep);

	if (r)
		return r;
	switch (m->type) {
	case PB_MSG_TEXT:
		if (json_plain_span(m->data, m->len) == m->len) {
			/* Nothing to escape (the usual case): copy it whole. */
			r = pb_buf_reserve(out, m->len + 3);
			if (r)
				break;
			out->data[out->len++] = '"';
			memcpy(out->data + out->len, m->data, m->len);
			out->len += m->len;
			memcpy(out->data + out->len, "\"}", 3);   /* with the NUL */
			out->len += 2;
			return 0;
		}
		r = pb_json_put_string(out, m->data, m->len);
		break;
	case PB_MSG_BINARY:
		r = pb_base64_encode(out, m->data, m->len);
		if (!r)
			r = pb_buf_append(out, "\"", 1);
		break;
	default:
		break;
	}
	if (!r)
		r = pb_buf_append(out, "}", 1);
	if (r)
		buf_truncate(out, start);
	return r;
}

int pb_codec_put_message(struct pb_buf *out, const struct pb_msg *m)
{
	return put_message(out, m, "");
}

int pb_codec_put_sse_message(struct pb_buf *out, const struct pb_msg *m)
{
	static const char *const names[] = { "text", "binary", "reopen" };
	size_t start = out->len;
	int r;

	if (m->type > PB_MSG_REOPEN)
		return PB_ENOMEM;
	r = pb_buf_printf(out, "id: %llu\nevent: %s\ndata: ", (unsigned long long)m->seq,
			  names[m->type]);
	if (!r)
		r = pb_codec_put_message(out, m);
	if (!r)
		r = pb_buf_append(out, "\n\n", 2);
	if (r)
		buf_truncate(out, start);
	return r;
}

int pb_codec_put_sse_close(struct pb_buf *out, const struct pb_close_info *close)
{
	size_t start = out->len;
	int r;

	r = pb_buf_printf(out, "event: close\ndata: {\"type\":\"close\",\"code\":%d,\"reason\":",
			  close->code);
	if (!r)
		r = pb_json_put_string(out, close->reason ? close->reason : "", close->reason_len);
	if (!r)
		r = pb_buf_append(out, "}\n\n", 3);
	if (r)
		buf_truncate(out, start);
	return r;
}

int pb_jsonp_callback_valid(const char *s, size_t len)
{
	int start = 1;

	if (len == 0 || len > PB_MAX_CALLBACK_LEN)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '$';

		if (c == '.') {
			if (start)
				return 0;
			start = 1;
		} else if (alpha || (!start && c >= '0' && c <= '9')) {
			start = 0;
		} else {
			return 0;
		}
	}
	return !start;
}

/* How many messages ahead the batch encoder asks for their bytes. */
#define PB_ENCODE_PREFETCH 4

int pb_codec_encode_batch(struct pb_buf *out, struct pb_msg *const *msgs, size_t n,
			  const struct pb_close_info *close)
{
	size_t start = out->len, i, hint = 64;
	int r;

	/* Room for the whole answer at once when its messages need no escapes
	 * (a hint: the appends below still check and grow). */
	for (i = 0; i < n; i++)
		hint += msgs[i]->len + 48;
	if (!out->limit || hint <= out->limit - out->len)
		(void)pb_buf_reserve(out, hint);
	r = pb_buf_puts(out, "{\"messages\":[");
	for (i = 0; !r && i < n; i++) {
		/* Queued messages are cold: ask for the bytes of one a few
		 * ahead (its header is warm from the hint loop above). */
		if (i + PB_ENCODE_PREFETCH < n) {
			const struct pb_msg *a = msgs[i + PB_ENCODE_PREFETCH];

			__builtin_prefetch(a->data);
			__builtin_prefetch(a->data + (a->len < 64 ? a->len : 64));
		}
		r = put_message(out, msgs[i], i ? "," : "");
	}
	if (r)
		goto out;
	if (close && close->closed) {
		r = pb_buf_printf(out, "],\"state\":\"closed\",\"close\":{\"code\":%d,\"reason\":",
				  close->code);
		if (!r)
			r = pb_json_put_string(out, close->reason, close->reason_len);
		if (!r)
			r = pb_buf_puts(out, "}}");
	} else {
		r = pb_buf_puts(out, "],\"state\":\"open\"}");
	}
out:
	if (r)
		buf_truncate(out, start);
	return r;
}

int pb_codec_encode_error(struct pb_buf *out, const char *code, const char *message)
{
	size_t start = out->len;
	int r;

	r = pb_buf_puts(out, "{\"error\":");
	if (!r)
		r = pb_json_put_string(out, code, strlen(code));
	if (!r)
		r = pb_buf_puts(out, ",\"message\":");
	if (!r)
		r = pb_json_put_string(out, message, strlen(message));
	if (!r)
		r = pb_buf_append(out, "}", 1);
	if (r)
		buf_truncate(out, start);
	return r;
}

/* Value of the hex digit c, or -1. */
static int hex_val(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode the escape "%XX" at s[0..n) into *c. 0, or PB_EBADREQ if it is
 * cut short or XX is not two hex digits. */
static int pct_escape(const char *s, size_t n, unsigned char *c)
{
	int hi = n >= 3 ? hex_val(s[1]) : -1, lo = n >= 3 ? hex_val(s[2]) : -1;

	if (hi < 0 || lo < 0)
		return PB_EBADREQ;
	*c = (unsigned char)(hi << 4 | lo);
	return 0;
}

int pb_percent_decode(const char *s, size_t len, char *out, size_t size)
{
	size_t i = 0, n = 0;
	unsigned char c;

	if (!size)
		return PB_ETOOBIG;
	while (i < len) {
		c = (unsigned char)s[i];
		if (c == '%') {
			if (pct_escape(s + i, len - i, &c) || c == 0)
				return PB_EBADREQ;
			i += 3;
		} else {
			i++;
		}
		if (n + 1 >= size)
			return PB_ETOOBIG;
		out[n++] = (char)c;
	}
	out[n] = '\0';
	return 0;
}

/* Append the form-decoded s[0..n) to b ('+' is a space, %XX a byte). */
static int form_decode(struct pb_buf *b, const char *s, size_t n)
{
	size_t i = 0, run = 0;
	unsigned char c;
	int r;

	while (i < n) {
		if (s[i] != '+' && s[i] != '%') {
			i++;
			continue;
		}
		r = i > run ? pb_buf_append(b, s + run, i - run) : 0;
		if (r)
			return r;
		if (s[i] == '+') {
			c = ' ';
			i++;
		} else {
			if (pct_escape(s + i, n - i, &c))
				return PB_EBADREQ;
			i += 3;
		}
		r = pb_buf_append(b, &c, 1);
		if (r)
			return r;
		run = i;
	}
	return i > run ? pb_buf_append(b, s + run, i - run) : 0;
}

int pb_form_next(const char **p, const char *end, struct pb_buf *key, struct pb_buf *val)
{
	const char *s = *p, *amp, *eq;
	int r;

	buf_reset(key);
	buf_reset(val);
	while (s < end && *s == '&')
		s++;
	if (s == end) {
		*p = s;
		return 0;
	}
	amp = memchr(s, '&', (size_t)(end - s));
	if (!amp)
		amp = end;
	eq = memchr(s, '=', (size_t)(amp - s));
	r = form_decode(key, s, (size_t)((eq ? eq : amp) - s));
	if (!r && eq)
		r = form_decode(val, eq + 1, (size_t)(amp - eq - 1));
	if (r)
		return r;
	*p = amp;
	return 1;
}

/* 1 if c is an RFC 7230 tchar. */
static int is_tchar(unsigned char c)
{
	if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
		return 1;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

int pb_protocol_valid(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > PB_MAX_PROTOCOL_LEN)
		return 0;
	for (i = 0; i < len; i++)
		if (!is_tchar((unsigned char)s[i]))
			return 0;
	return 1;
}

int pb_header_name_valid(const char *s, size_t len)
{
	if (len == 0 || len > PB_MAX_HEADER_NAME_LEN)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!is_tchar((unsigned char)s[i]))
			return 0;
	return 1;
}

int pb_header_value_valid(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return 0;
	}
	return 1;
}

/* A NUL-terminated malloc'd copy of s[0..len), or NULL. */
static char *dup_bytes(const char *s, size_t len)
{
	char *p = malloc(len + 1);

	if (!p)
		return NULL;
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

void pb_create_req_free(struct pb_create_req *req)
{
	size_t i;

	free(req->route);
	for (i = 0; i < req->nprotocols; i++)
		free(req->protocols[i]);
	memset(req, 0, sizeof(*req));
}

/* Give req the route s[0..len) after checking it. */
int pb_create_req_set_route(struct pb_create_req *req, const char *s, size_t len,
			    const char **why)
{
	if (req->route)
		return fail(why, "route given more than once", PB_EBADREQ);
	if (len == 0)
		return fail(why, "route is empty", PB_EBADREQ);
	if (len > PB_MAX_ROUTE_LEN)
		return fail(why, "route is too long", PB_EBADREQ);
	if (memchr(s, '\0', len))
		return fail(why, "route contains a NUL byte", PB_EBADREQ);
	req->route = dup_bytes(s, len);
	if (!req->route)
		return fail(why, "out of memory", PB_ENOMEM);
	return 0;
}

/* Add the protocol s[0..len) to req after checking it. */
int pb_create_req_add_protocol(struct pb_create_req *req, const char *s, size_t len,
			       const char **why)
{
	size_t i;

	if (!pb_protocol_valid(s, len))
		return fail(why, "invalid protocol name", PB_EBADREQ);
	for (i = 0; i < req->nprotocols; i++)
		if (strlen(req->protocols[i]) == len && !memcmp(req->protocols[i], s, len))
			return fail(why, "protocol listed twice", PB_EBADREQ);
	if (req->nprotocols == PB_MAX_PROTOCOLS)
		return fail(why, "too many protocols", PB_EBADREQ);
	req->protocols[req->nprotocols] = dup_bytes(s, len);
	if (!req->protocols[req->nprotocols])
		return fail(why, "out of memory", PB_ENOMEM);
	req->nprotocols++;
	return 0;
}

/* Parse a JSON request body that must be an object; NULL and the error
 * in *r on failure. The caller owns the result. */
static json_t *json_load_object(const char *body, size_t len, int *r, const char **why)
{
	json_error_t jerr;
	json_t *root;

	if (!len)
		body = "";
	root = json_loadb(body, len, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		switch (json_error_code(&jerr)) {
		case json_error_out_of_memory:
			*r = fail(why, "out of memory", PB_ENOMEM);
			break;
		case json_error_invalid_utf8:
			*r = fail(why, "body is not valid UTF-8", PB_EBADREQ);
			break;
		case json_error_duplicate_key:
			*r = fail(why, "duplicate key in JSON object", PB_EBADREQ);
			break;
		default:
			*r = fail(why, "malformed JSON", PB_EBADREQ);
			break;
		}
		return NULL;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		*r = fail(why, "JSON body is not an object", PB_EBADREQ);
		return NULL;
	}
	return root;
}

/* An optional member of obj: NULL when absent or null. */
static json_t *json_get_opt(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	return json_is_null(v) ? NULL : v;
}

int pb_codec_parse_create_json(const char *body, size_t len, struct pb_create_req *req,
			       const char **why)
{
	json_t *root, *v, *p;
	size_t i;
	int r;

	memset(req, 0, sizeof(*req));
	root = json_load_object(body, len, &r, why);
	if (!root)
		return r;
	v = json_object_get(root, "route");
	if (!v) {
		r = fail(why, "route is missing", PB_EBADREQ);
		goto out;
	}
	if (!json_is_string(v)) {
		r = fail(why, "route is not a string", PB_EBADREQ);
		goto out;
	}
	r = pb_create_req_set_route(req, json_string_value(v), json_string_length(v), why);
	if (r)
		goto out;
	v = json_get_opt(root, "protocols");
	if (v && !json_is_array(v)) {
		r = fail(why, "protocols is not an array", PB_EBADREQ);
		goto out;
	}
	json_array_foreach(v, i, p) {
		if (!json_is_string(p)) {
			r = fail(why, "protocol is not a string", PB_EBADREQ);
			goto out;
		}
		r = pb_create_req_add_protocol(req, json_string_value(p), json_string_length(p), why);
		if (r)
			goto out;
	}
out:
	json_decref(root);
	if (r)
		pb_create_req_free(req);
	return r;
}

/* Map an error of pb_form_next to its explanation and return it. */
static int form_fail(int r, const char **why)
{
	if (r == PB_EBADREQ)
		return fail(why, "malformed %-escape in form body", r);
	if (r == PB_ETOOBIG)
		return fail(why, "form field is too large", r);
	return fail(why, "out of memory", r);
}

/* 1 if the decoded form key b is name. */
static int key_is(const struct pb_buf *b, const char *name)
{
	size_t n = strlen(name);

	return b->len == n && !memcmp(b->data, name, n);
}

int pb_codec_parse_create_form(const char *body, size_t len, struct pb_create_req *req,
			       const char **why)
{
	const char *p, *end;
	struct pb_buf key, val;
	int r;

	memset(req, 0, sizeof(*req));
	if (!len)
		body = "";
	p = body;
	end = body + len;
	pb_buf_init(&key, 0);
	pb_buf_init(&val, 0);
	while ((r = pb_form_next(&p, end, &key, &val)) == 1) {
		if (key_is(&key, "route"))
			r = pb_create_req_set_route(req, val.data ? val.data : "", val.len, why);
		else if (key_is(&key, "protocol"))
			r = pb_create_req_add_protocol(req, val.data ? val.data : "", val.len, why);
		else
			r = 0;
		if (r)
			goto out;
	}
	if (r) {
		r = form_fail(r, why);
		goto out;
	}
	if (!req->route)
		r = fail(why, "route is missing", PB_EBADREQ);
out:
	pb_buf_free(&key);
	pb_buf_free(&val);
	if (r)
		pb_create_req_free(req);
	return r;
}

void pb_send_req_free(struct pb_send_req *req)
{
	size_t i;

	for (i = 0; i < req->n; i++)
		pb_msg_unref(req->msgs[i]);
	free(req->msgs);
	memset(req, 0, sizeof(*req));
}

/* A new text message of s[0..len), checked against the limit and UTF-8. */
static int send_text(const char *s, size_t len, size_t max_msg_bytes, struct pb_msg **out,
		     const char **why)
{
	if (len > max_msg_bytes)
		return fail(why, "message is too large", PB_ETOOBIG);
	if (!pb_utf8_valid(s, len))
		return fail(why, "text message is not valid UTF-8", PB_EBADREQ);
	*out = pb_msg_new(PB_MSG_TEXT, s, len);
	if (!*out)
		return fail(why, "out of memory", PB_ENOMEM);
	return 0;
}

/* A new binary message decoded from the base64 s[0..len). */
static int send_binary(const char *s, size_t len, size_t max_msg_bytes,
		       struct pb_msg **out, const char **why)
{
	struct pb_msg *m;
	size_t d, n;

	if (b64_shape(s, len, &d, &n))
		return fail(why, "binary data is not valid base64", PB_EBADREQ);
	if (n > max_msg_bytes)
		return fail(why, "message is too large", PB_ETOOBIG);
	m = pb_msg_new(PB_MSG_BINARY, NULL, n);
	if (!m)
		return fail(why, "out of memory", PB_ENOMEM);
	if (b64_decode_digits(s, d, m->data)) {
		pb_msg_unref(m);
		return fail(why, "binary data is not valid base64", PB_EBADREQ);
	}
	*out = m;
	return 0;
}

/* Parse one element of a JSON "messages" array into a new message. */
static int send_json_msg(json_t *item, size_t max_msg_bytes, struct pb_msg **out,
			 const char **why)
{
	json_t *type, *data;
	const char *t = "text";
	size_t tlen = 4;

	if (!json_is_object(item))
		return fail(why, "message is not an object", PB_EBADREQ);
	type = json_get_opt(item, "type");
	if (type) {
		if (!json_is_string(type))
			return fail(why, "message type is not a string", PB_EBADREQ);
		t = json_string_value(type);
		tlen = json_string_length(type);
	}
	data = json_object_get(item, "data");
	if (!json_is_string(data))
		return fail(why, "message data is missing or not a string", PB_EBADREQ);
	if (tlen == 4 && !memcmp(t, "text", 4))
		return send_text(json_string_value(data), json_string_length(data),
				 max_msg_bytes, out, why);
	if (tlen == 6 && !memcmp(t, "binary", 6))
		return send_binary(json_string_value(data), json_string_length(data),
				   max_msg_bytes, out, why);
	return fail(why, "unknown message type", PB_EBADREQ);
}

int pb_codec_parse_send_json(const char *body, size_t len, size_t max_msg_bytes,
			     size_t max_msgs, struct pb_send_req *req, const char **why)
{
	struct pb_send_req tmp = { 0 };
	json_t *root, *msgs, *seq;
	json_int_t s;
	size_t i, n;
	int r;

	memset(req, 0, sizeof(*req));
	root = json_load_object(body, len, &r, why);
	if (!root)
		return r;
	seq = json_get_opt(root, "seq");
	if (seq) {
		s = json_is_integer(seq) ? json_integer_value(seq) : 0;
		if (s < 1 || (uint64_t)s > PB_NUM_MAX) {
			r = fail(why, "seq must be an integer from 1 to 2^53-1", PB_EBADREQ);
			goto out;
		}
		tmp.seq = (uint64_t)s;
	}
	msgs = json_object_get(root, "messages");
	if (!json_is_array(msgs)) {
		r = fail(why, "messages is missing or not an array", PB_EBADREQ);
		goto out;
	}
	n = json_array_size(msgs);
	if (n > max_msgs) {
		r = fail(why, "too many messages", PB_ETOOBIG);
		goto out;
	}
	if (n) {
		tmp.msgs = calloc(n, sizeof(*tmp.msgs));
		if (!tmp.msgs) {
			r = fail(why, "out of memory", PB_ENOMEM);
			goto out;
		}
	}
	for (i = 0; i < n; i++) {
		r = send_json_msg(json_array_get(msgs, i), max_msg_bytes, &tmp.msgs[i], why);
		if (r)
			goto out;
		tmp.n++;
	}
	*req = tmp;
	r = 0;
out:
	json_decref(root);
	if (r)
		pb_send_req_free(&tmp);
	return r;
}

int pb_codec_parse_send_form(const char *body, size_t len, size_t max_msg_bytes,
			     size_t max_msgs, struct pb_send_req *req, const char **why)
{
	struct pb_send_req tmp = { 0 };
	const char *p, *end;
	struct pb_buf key, val;
	struct pb_msg **grown;
	size_t cap = 0;
	int r;

	memset(req, 0, sizeof(*req));
	if (!len)
		body = "";
	p = body;
	end = body + len;
	pb_buf_init(&key, 0);
	pb_buf_init(&val, 0);
	while ((r = pb_form_next(&p, end, &key, &val)) == 1) {
		if (!key_is(&key, "data"))
			continue;
		if (tmp.n == max_msgs) {
			r = fail(why, "too many messages", PB_ETOOBIG);
			goto out;
		}
		if (tmp.n == cap) {
			cap = cap ? cap * 2 : 4;
			if (cap > max_msgs)
				cap = max_msgs;
			grown = realloc(tmp.msgs, cap * sizeof(*tmp.msgs));
			if (!grown) {
				r = fail(why, "out of memory", PB_ENOMEM);
				goto out;
			}
			tmp.msgs = grown;
		}
		r = send_text(val.data ? val.data : "", val.len, max_msg_bytes,
			      &tmp.msgs[tmp.n], why);
		if (r)
			goto out;
		tmp.n++;
	}
	if (r) {
		r = form_fail(r, why);
		goto out;
	}
	if (!tmp.n) {
		r = fail(why, "no data field", PB_EBADREQ);
		goto out;
	}
	*req = tmp;
out:
	pb_buf_free(&key);
	pb_buf_free(&val);
	if (r)
		pb_send_req_free(&tmp);
	return r;
}
