/*
 * fuzz_numbers.c: libFuzzer target for the small validators of client
 * input that the request router and the endpoints apply to path segments,
 * query values and headers: pb_parse_uint53 (?after=, ?wait=, ?max=,
 * Last-Event-ID, X-Send-Seq, Content-Length), pb_session_id_valid (the
 * {id} path segment), pb_protocol_valid (?protocol=),
 * pb_jsonp_callback_valid (?callback=), and pb_header_value_valid and
 * pb_header_name_valid (forwarded request headers and Origin; the
 * --forward-header names). Each is called on the whole input,
 * and on every piece between '/', '&' and '=' (as the router would cut a
 * path or query), and its answer is compared with the rule of codec.h
 * restated here in the plainest way.
 */
#include <string.h>

#include "codec.h"
#include "error.h"
#include "fuzz.h"

/* The rule of pb_parse_uint53: 1 to n digits with a value <= PB_NUM_MAX. */
static int ref_uint53(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (len == 0)
		return PB_EBADREQ;
	for (i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return PB_EBADREQ;
	for (i = 0; i < len; i++) {
		if (v > (PB_NUM_MAX - (uint64_t)(s[i] - '0')) / 10)
			return PB_EBADREQ;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return 0;
}

/* The rule of pb_session_id_valid: PB_ID_LEN base64url characters. */
static int ref_id(const char *s, size_t len)
{
	static const char set[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t i;

	if (len != PB_ID_LEN)
		return 0;
	for (i = 0; i < len; i++)
		if (!s[i] || !strchr(set, s[i]))
			return 0;
	return 1;
}

/* 1 if s[0..len) is 1 to max RFC 7230 tchars. */
static int ref_token(const char *s, size_t len, size_t max)
{
	static const char set[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
		"!#$%&'*+-.^_`|~";
	size_t i;

	if (len == 0 || len > max)
		return 0;
	for (i = 0; i < len; i++)
		if (!s[i] || !strchr(set, s[i]))
			return 0;
	return 1;
}

/* The rule of pb_header_value_valid: no control character but HTAB. */
static int ref_header_value(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (((unsigned char)s[i] < 0x20 && s[i] != '\t') || s[i] == 0x7f)
			return 0;
	return 1;
}

/* 1 if c may start a JavaScript identifier (in the accepted subset). */
static int ident_start(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '$';
}

/* The rule of pb_jsonp_callback_valid: identifiers joined by single dots,
 * at most PB_MAX_CALLBACK_LEN bytes in all. */
static int ref_callback(const char *s, size_t len)
{
	size_t i = 0;

	if (len == 0 || len > PB_MAX_CALLBACK_LEN)
		return 0;
	for (;;) {
		if (i == len || !ident_start(s[i]))
			return 0;
		for (i++; i < len && (ident_start(s[i]) || (s[i] >= '0' && s[i] <= '9')); i++)
			;
		if (i == len)
			return 1;
		if (s[i] != '.')
			return 0;
		i++;
	}
}

/* Check every validator on s[0..len). */
static void check_all(const char *s, size_t len)
{
	uint64_t got = 0xdeadbeef, want = 0;
	int r = pb_parse_uint53(s, len, &got);

	FUZZ_CHECK(r == 0 || r == PB_EBADREQ);
	FUZZ_CHECK(r == ref_uint53(s, len, &want));
	FUZZ_CHECK(r || (got == want && got <= PB_NUM_MAX));
	FUZZ_CHECK(pb_session_id_valid(s, len) == ref_id(s, len));
	FUZZ_CHECK(pb_protocol_valid(s, len) == ref_token(s, len, PB_MAX_PROTOCOL_LEN));
	FUZZ_CHECK(pb_header_name_valid(s, len) == ref_token(s, len, PB_MAX_HEADER_NAME_LEN));
	FUZZ_CHECK(pb_header_value_valid(s, len) == ref_header_value(s, len));
	FUZZ_CHECK(pb_jsonp_callback_valid(s, len) == ref_callback(s, len));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	size_t start = 0, i, n;
	char *piece;

	/* libFuzzer's buffer is exactly size bytes: overreads are caught. */
	check_all(s, size);
	for (i = 0; i <= size; i++) {
		if (i < size && s[i] != '/' && s[i] != '&' && s[i] != '=')
			continue;
		if (start > 0 || i < size) {
			/* Each piece in its own allocation, for the same reason. */
			n = i - start;
			piece = malloc(n ? n : 1);
			FUZZ_CHECK(piece != NULL);
			if (n)
				memcpy(piece, s + start, n);
			check_all(piece, n);
			free(piece);
		}
		start = i + 1;
	}
	return 0;
}
