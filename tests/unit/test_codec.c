/*
 * test_codec.c: unit tests for src/codec.c: number syntax, UTF-8, base64,
 * ids, JSON string escaping, the batch and error encoders, form decoding,
 * and the create and send request parsers. Encoder output is re-parsed with
 * jansson, an independent implementation, rather than only compared with
 * strings written by hand.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "codec.h"
#include "error.h"
#include "tap.h"

#define S(lit) (lit), (sizeof(lit) - 1)

/* A deterministic xorshift64 generator, so failures are reproducible. */
struct rng {
	uint64_t s;
};

/* The next pseudo-random 64 bits from r. */
static uint64_t rng_next(struct rng *r)
{
	r->s ^= r->s << 13;
	r->s ^= r->s >> 7;
	r->s ^= r->s << 17;
	return r->s;
}

/* Fill p[0..n) with pseudo-random bytes. */
static void rng_fill(struct rng *r, unsigned char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (unsigned char)rng_next(r);
}

/* Render s[0..len) printably into out (size outsz) for a test name. */
static const char *vis(const char *s, size_t len, char *out, size_t outsz)
{
	size_t i, o = 0;
	unsigned char c;

	for (i = 0; i < len && o + 5 < outsz; i++) {
		c = (unsigned char)s[i];
		if (c >= 0x20 && c < 0x7f && c != '\\')
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, outsz - o, "\\x%02x", c);
	}
	out[o] = '\0';
	return out;
}

/* Parse b's contents as JSON (NULs allowed); NULL if they are not JSON. */
static json_t *parse_buf(const struct pb_buf *b)
{
	json_error_t err;

	return json_loadb(b->data ? b->data : "", b->len,
			  JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &err);
}

/* 1 if the JSON string v holds exactly p[0..len). */
static int json_str_is(const json_t *v, const void *p, size_t len)
{
	return json_is_string(v) && json_string_length(v) == len &&
	       !memcmp(json_string_value(v), p, len);
}

/* 1 if the JSON value v is the integer want. */
static int json_int_is(const json_t *v, long long want)
{
	return json_is_integer(v) && json_integer_value(v) == want;
}

static void test_uint53(void)
{
	static const struct {
		const char *s;
		int ok;
		uint64_t v;
	} cases[] = {
		{ "", 0, 0 },
		{ "0", 1, 0 },
		{ "1", 1, 1 },
		{ "42", 1, 42 },
		{ "-1", 0, 0 },
		{ "+1", 0, 0 },
		{ " 1", 0, 0 },
		{ "1 ", 0, 0 },
		{ "1.0", 0, 0 },
		{ "0x10", 0, 0 },
		{ "1e3", 0, 0 },
		{ "a", 0, 0 },
		{ "9007199254740991", 1, 9007199254740991ULL },
		{ "9007199254740992", 0, 0 },
		{ "9999999999999999", 0, 0 },
		{ "18446744073709551615", 0, 0 },
		{ "18446744073709551616", 0, 0 },
		{ "99999999999999999999999999999999999999999999999999", 0, 0 },
		{ "007", 1, 7 },
		{ "0000000000000000000000000000000000000000000001", 1, 1 },
		{ "00009007199254740991", 1, 9007199254740991ULL },
	};
	uint64_t v;
	size_t i;
	int r;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		v = 12345;
		r = pb_parse_uint53(cases[i].s, strlen(cases[i].s), &v);
		if (cases[i].ok)
			tap_ok(r == 0 && v == cases[i].v, "uint53 \"%s\" = %llu", cases[i].s,
			       (unsigned long long)cases[i].v);
		else
			tap_ok(r == PB_EBADREQ && v == 12345, "uint53 \"%s\" rejected, out untouched",
			       cases[i].s);
	}
	tap_is_int(pb_parse_uint53("1\0", 2, &v), PB_EBADREQ, "uint53 with a NUL rejected");
	tap_is_int(pb_parse_uint53("12", 1, &v), 0, "uint53 reads only len bytes");
	tap_is_int(v, 1, "uint53 prefix value");
}

static void test_utf8(void)
{
	static const struct {
		const char *s;
		size_t len;
		int ok;
		const char *name;
	} cases[] = {
		{ S(""), 1, "empty" },
		{ S("hello"), 1, "ASCII" },
		{ S("a\0b"), 1, "NUL byte" },
		{ S("\xc2\x80"), 1, "U+0080" },
		{ S("\xc3\xa9"), 1, "U+00E9" },
		{ S("\xdf\xbf"), 1, "U+07FF" },
		{ S("\xe0\xa0\x80"), 1, "U+0800" },
		{ S("\xe2\x82\xac"), 1, "U+20AC" },
		{ S("\xed\x9f\xbf"), 1, "U+D7FF" },
		{ S("\xee\x80\x80"), 1, "U+E000" },
		{ S("\xef\xbf\xbf"), 1, "U+FFFF" },
		{ S("\xf0\x90\x80\x80"), 1, "U+10000" },
		{ S("\xf0\x9f\x98\x80"), 1, "U+1F600" },
		{ S("\xf4\x8f\xbf\xbf"), 1, "U+10FFFF" },
		{ S("a\xc3\xa9z\xe2\x82\xac!"), 1, "mixed" },
		{ S("\xc0\x80"), 0, "overlong C0 80" },
		{ S("\xc1\xbf"), 0, "overlong C1 BF" },
		{ S("\xe0\x80\x80"), 0, "overlong E0 80 80" },
		{ S("\xe0\x9f\xbf"), 0, "overlong E0 9F BF" },
		{ S("\xf0\x80\x80\x80"), 0, "overlong F0 80 80 80" },
		{ S("\xf0\x8f\xbf\xbf"), 0, "overlong F0 8F BF BF" },
		{ S("\xed\xa0\x80"), 0, "surrogate ED A0 80" },
		{ S("\xed\xbf\xbf"), 0, "surrogate ED BF BF" },
		{ S("\xf4\x90\x80\x80"), 0, "above U+10FFFF" },
		{ S("\xf5\x80\x80\x80"), 0, "lead F5" },
		{ S("\xf8\x88\x80\x80\x80"), 0, "5-byte form" },
		{ S("\xfe"), 0, "FE" },
		{ S("\xff"), 0, "FF" },
		{ S("\xc3"), 0, "truncated 2-byte" },
		{ S("\xe2\x82"), 0, "truncated 3-byte" },
		{ S("\xf0\x9f\x98"), 0, "truncated 4-byte" },
		{ S("ab\xe2\x82"), 0, "truncated at end" },
		{ S("\x80"), 0, "stray continuation" },
		{ S("\xbf"), 0, "stray BF" },
		{ S("a\x80z"), 0, "stray in the middle" },
		{ S("\xc3\xa9\xa9"), 0, "extra continuation" },
		{ S("\xc3\xc3\xa9"), 0, "lead then lead" },
		{ S("\xe2\x28\xa1"), 0, "bad second byte" },
		{ S("\xe2\x82\x28"), 0, "bad third byte" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		tap_is_int(pb_utf8_valid(cases[i].s, cases[i].len), cases[i].ok, "utf8 %s: %s",
			   cases[i].ok ? "valid" : "invalid", cases[i].name);
	tap_is_int(pb_utf8_valid("\xc3\xa9", 1), 0, "utf8 respects len (cut sequence)");
}

/* Cross-check pb_utf8_valid against jansson's own UTF-8 check on random
 * byte strings rich in interesting bytes. */
static void test_utf8_vs_jansson(struct rng *r)
{
	static const unsigned char pool[] = {
		'a', 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0,
		0xe1, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff,
	};
	unsigned char s[16], doc[24];
	size_t i, j, n, mismatches = 0;
	json_error_t err;
	json_t *v;
	int want;

	for (i = 0; i < 20000; i++) {
		n = rng_next(r) % 9;
		for (j = 0; j < n; j++)
			s[j] = pool[rng_next(r) % sizeof(pool)];
		doc[0] = '[';
		doc[1] = '"';
		memcpy(doc + 2, s, n);
		doc[n + 2] = '"';
		doc[n + 3] = ']';
		v = json_loadb((const char *)doc, n + 4, 0, &err);
		want = v != NULL;
		json_decref(v);
		if (pb_utf8_valid(s, n) != want)
			mismatches++;
	}
	tap_is_int(mismatches, 0, "utf8 agrees with jansson on 20000 random strings");
}

/* Encode p[0..len) with pb_base64_encode into a fresh string (caller frees). */
static char *b64(const void *p, size_t len)
{
	struct pb_buf b;

	pb_buf_init(&b, 0);
	if (pb_base64_encode(&b, p, len))
		tap_bail("pb_base64_encode failed");
	return pb_buf_steal(&b, NULL);
}

static void test_base64(struct rng *rng)
{
	static const struct {
		const char *plain, *enc, *unpadded;
	} rfc[] = {
		{ "", "", "" },
		{ "f", "Zg==", "Zg" },
		{ "fo", "Zm8=", "Zm8" },
		{ "foo", "Zm9v", "Zm9v" },
		{ "foob", "Zm9vYg==", "Zm9vYg" },
		{ "fooba", "Zm9vYmE=", "Zm9vYmE" },
		{ "foobar", "Zm9vYmFy", "Zm9vYmFy" },
	};
	static const char *const bad[] = {
		"Z", "Zm9vY", "=", "==", "====", "Z===", "Zg=", "Zg===", "Zm8==",
		"Zg==Zg==", "Zm=9", "Zm9v\n", "Zm 9v", " Zm9v", "Zm9v-_8=", "Zm9\x80",
		"Zm9v!", "Zh==", "Zh", "Zm9=", "Zm9", "QR==", "QUF=",
	};
	unsigned char raw[64], out[64 / 4 * 3 + 3 + 16];
	char name[64];
	struct pb_buf b;
	size_t i, n, olen;
	char *enc, *nopad;
	int r, ok;

	for (i = 0; i < sizeof(rfc) / sizeof(rfc[0]); i++) {
		enc = b64(rfc[i].plain, strlen(rfc[i].plain));
		tap_is_str(enc, rfc[i].enc, "base64 encode \"%s\"", rfc[i].plain);
		free(enc);
		olen = 999;
		r = pb_base64_decode(rfc[i].enc, strlen(rfc[i].enc), out, &olen);
		tap_ok(r == 0 && olen == strlen(rfc[i].plain) &&
		       !memcmp(out, rfc[i].plain, olen), "base64 decode \"%s\"", rfc[i].enc);
		olen = 999;
		r = pb_base64_decode(rfc[i].unpadded, strlen(rfc[i].unpadded), out, &olen);
		tap_ok(r == 0 && olen == strlen(rfc[i].plain) &&
		       !memcmp(out, rfc[i].plain, olen), "base64 decode unpadded \"%s\"",
		       rfc[i].unpadded);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		tap_is_int(pb_base64_decode(bad[i], strlen(bad[i]), out, &olen), PB_EBADREQ,
			   "base64 rejects \"%s\"", vis(bad[i], strlen(bad[i]), name, sizeof(name)));
	tap_is_int(pb_base64_decode("Zg\0=", 4, out, &olen), PB_EBADREQ, "base64 rejects a NUL");
	r = pb_base64_decode("QQ", 2, out, &olen);
	tap_ok(r == 0 && olen == 1 && out[0] == 'A', "base64 \"QQ\" is \"A\"");
	r = pb_base64_decode("+/+/", 4, out, &olen);
	tap_ok(r == 0 && olen == 3 && out[0] == 0xfb && out[1] == 0xff && out[2] == 0xbf,
	       "base64 decodes + and /");

	for (n = 0; n <= 64; n++) {
		rng_fill(rng, raw, n);
		enc = b64(raw, n);
		ok = strlen(enc) == (n + 2) / 3 * 4 && strspn(enc, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
			"abcdefghijklmnopqrstuvwxyz0123456789+/") == strlen(enc) - (3 - n % 3) % 3;
		memset(out, 0xaa, sizeof(out));
		ok = ok && pb_base64_decode(enc, strlen(enc), out, &olen) == 0 && olen == n &&
		     !memcmp(out, raw, n);
		nopad = strdup(enc);
		nopad[strcspn(nopad, "=")] = '\0';
		ok = ok && pb_base64_decode(nopad, strlen(nopad), out, &olen) == 0 &&
		     olen == n && !memcmp(out, raw, n);
		tap_ok(ok, "base64 round trip of %zu random bytes (%s)", n, enc);
		free(nopad);
		free(enc);
	}

	pb_buf_init(&b, 0);
	pb_buf_puts(&b, "x:");
	r = pb_base64_encode(&b, "foo", 3);
	tap_ok(r == 0 && !strcmp(b.data, "x:Zm9v"), "base64 appends to the buffer");
	pb_buf_free(&b);
	pb_buf_init(&b, 7);
	pb_buf_puts(&b, "x:");
	r = pb_base64_encode(&b, "foobar", 6);
	tap_ok(r == PB_ETOOBIG && b.len == 2 && !strcmp(b.data, "x:"),
	       "base64 over the limit: PB_ETOOBIG, buffer unchanged");
	pb_buf_free(&b);
}

static void test_ids(void)
{
	char out[64], ids[100][PB_ID_LEN + 1];
	unsigned char zero[PB_ID_BYTES] = { 0 };
	size_t i, j;
	int ok;

	pb_base64url_encode("\xfb\xff\xbf", 3, out);
	tap_is_str(out, "-_-_", "base64url uses - and _");
	pb_base64url_encode("\xfb\xff", 2, out);
	tap_is_str(out, "-_8", "base64url has no padding (2 bytes)");
	pb_base64url_encode("f", 1, out);
	tap_is_str(out, "Zg", "base64url has no padding (1 byte)");
	pb_base64url_encode("", 0, out);
	tap_is_str(out, "", "base64url of nothing");
	pb_base64url_encode(zero, sizeof(zero), out);
	tap_is_str(out, "AAAAAAAAAAAAAAAAAAAAAA", "base64url of 16 zero bytes is 22 chars");

	ok = 1;
	for (i = 0; i < 100; i++) {
		memset(ids[i], '#', sizeof(ids[i]));
		ok = ok && pb_session_id_new(ids[i]) == 0 && strlen(ids[i]) == PB_ID_LEN &&
		     strspn(ids[i], "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			    "0123456789-_") == PB_ID_LEN &&
		     pb_session_id_valid(ids[i], strlen(ids[i]));
	}
	tap_ok(ok, "100 ids: 22 chars of the base64url alphabet, and valid");
	tap_ok(strcmp(ids[0], ids[1]) != 0, "two ids differ (%s, %s)", ids[0], ids[1]);
	ok = 1;
	for (i = 0; i < 100; i++)
		for (j = i + 1; j < 100; j++)
			ok = ok && strcmp(ids[i], ids[j]) != 0;
	tap_ok(ok, "100 ids are distinct");

	tap_is_int(pb_session_id_valid(S("AAAAAAAAAAAAAAAAAAAAAA")), 1, "id valid: all A");
	tap_is_int(pb_session_id_valid(S("abcXYZ0129-_abcXYZ0129")), 1, "id valid: mixed");
	tap_is_int(pb_session_id_valid(S("AAAAAAAAAAAAAAAAAAAAA")), 0, "id invalid: 21 chars");
	tap_is_int(pb_session_id_valid(S("AAAAAAAAAAAAAAAAAAAAAAA")), 0, "id invalid: 23 chars");
	tap_is_int(pb_session_id_valid(S("")), 0, "id invalid: empty");
	tap_is_int(pb_session_id_valid(S("AAAAAAAAAAAAAAAAAAAAA+")), 0, "id invalid: +");
	tap_is_int(pb_session_id_valid(S("AAAAAAAAAAAAAAAAAAAAA/")), 0, "id invalid: /");
	tap_is_int(pb_session_id_valid(S("AAAAAAAAAAAAAAAAAAAAA=")), 0, "id invalid: =");
	tap_is_int(pb_session_id_valid(S("AAAAAAAAAA AAAAAAAAAAA")), 0, "id invalid: space");
	tap_is_int(pb_session_id_valid(S("AAAAAAAAAA\0AAAAAAAAAAA")), 0, "id invalid: NUL");
	tap_is_int(pb_session_id_valid(S("AAAAAAAAAA.AAAAAAAAAAA")), 0, "id invalid: .");
	tap_is_int(pb_session_id_valid(S("AAAAAAAAAA\xc3\xa9""AAAAAAAAAA")), 0,
		   "id invalid: non-ASCII");
	{
		/* Every byte value in every position, against the alphabet
		 * spelled out. */
		static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
					     "0123456789-_";
		char id[PB_ID_LEN];
		int wrong = 0;

		for (int pos = 0; pos < PB_ID_LEN; pos++)
			for (int c = 0; c < 256; c++) {
				memset(id, 'A', sizeof(id));
				id[pos] = (char)c;
				if (pb_session_id_valid(id, sizeof(id)) !=
				    (c && strchr(b64url, c) != NULL))
					wrong++;
			}
		tap_is_int(wrong, 0, "id valid: exactly the base64url bytes, in every position");
	}
}

/* Escape p[0..len) with pb_json_put_string and compare with want. */
static void check_escape(const char *p, size_t len, const char *want, const char *name)
{
	struct pb_buf b;
	int r;

	pb_buf_init(&b, 0);
	r = pb_json_put_string(&b, p, len);
	tap_ok(r == 0 && b.len == strlen(want) && !memcmp(b.data, want, b.len),
	       "json escape %s", name);
	if (r == 0 && strcmp(b.data, want))
		tap_diag("  got %s, want %s", b.data, want);
	pb_buf_free(&b);
}

/* Escape s, re-parse with jansson and compare the result with s. Returns
 * 1 when the output is valid JSON (and equal to s when equal is set). */
static int escape_reparses(const unsigned char *s, size_t len, int equal)
{
	struct pb_buf b;
	json_t *v;
	size_t i;
	int ok;

	pb_buf_init(&b, 0);
	pb_buf_append(&b, "[", 1);
	ok = pb_json_put_string(&b, s, len) == 0 && pb_buf_append(&b, "]", 1) == 0;
	v = ok ? parse_buf(&b) : NULL;
	ok = v && json_array_size(v) == 1 && json_is_string(json_array_get(v, 0));
	if (ok && equal)
		ok = json_str_is(json_array_get(v, 0), s, len);
	/* Safe inside JavaScript too: no raw controls, DEL or U+2028/9. */
	for (i = 0; ok && i < b.len; i++)
		ok = (unsigned char)b.data[i] >= 0x20 && b.data[i] != 0x7f;
	if (ok)
		ok = !memmem(b.data, b.len, "\xe2\x80\xa8", 3) &&
		     !memmem(b.data, b.len, "\xe2\x80\xa9", 3);
	json_decref(v);
	pb_buf_free(&b);
	return ok;
}

/* The scans that look at 8 bytes at a time (pb_utf8_valid's ASCII runs,
 * the JSON encoder's unescaped runs): every byte value at every position
 * of a 24-byte string, and a two-byte character after ASCII runs of every
 * length, judged as the one-byte rules say. */
static void test_word_scans(void)
{
	unsigned char s[24];
	size_t bad_utf8 = 0, bad_json = 0;
	char want[64];

	for (unsigned v = 0; v < 256; v++) {
		for (size_t at = 0; at < sizeof(s); at++) {
			struct pb_buf b;
			size_t wl;

			memset(s, 'a', sizeof(s));
			s[at] = (unsigned char)v;
			if (pb_utf8_valid(s, sizeof(s)) != (v < 0x80))
				bad_utf8++;
			/* want: the a's, then the byte as JSON says (a lone byte
			 * >= 0x80 is ill-formed: U+FFFD), then the a's. */
			wl = 0;
			want[wl++] = '"';
			memset(want + wl, 'a', at);
			wl += at;
			if (v == '"' || v == '\\')
				wl += (size_t)sprintf(want + wl, "\\%c", v);
			else if (v == '\n')
				wl += (size_t)sprintf(want + wl, "\\n");
			else if (v == '\r')
				wl += (size_t)sprintf(want + wl, "\\r");
			else if (v == '\t')
				wl += (size_t)sprintf(want + wl, "\\t");
			else if (v == '\b')
				wl += (size_t)sprintf(want + wl, "\\b");
			else if (v == '\f')
				wl += (size_t)sprintf(want + wl, "\\f");
			else if (v < 0x20 || v == 0x7f)
				wl += (size_t)sprintf(want + wl, "\\u%04x", v);
			else if (v >= 0x80)
				wl += (size_t)sprintf(want + wl, "\xef\xbf\xbd");
			else
				want[wl++] = (char)v;
			memset(want + wl, 'a', sizeof(s) - at - 1);
			wl += sizeof(s) - at - 1;
			want[wl++] = '"';
			pb_buf_init(&b, 0);
			if (pb_json_put_string(&b, s, sizeof(s)) || b.len != wl ||
			    memcmp(b.data, want, wl))
				bad_json++;
			pb_buf_free(&b);
		}
	}
	tap_is_int(bad_utf8, 0, "utf8: every byte at every position of a 24-byte string");
	tap_is_int(bad_json, 0, "json escape: every byte at every position of a 24-byte string");
	bad_utf8 = 0;
	for (size_t at = 0; at + 2 <= sizeof(s); at++) {
		memset(s, 'a', sizeof(s));
		s[at] = 0xc3;
		s[at + 1] = 0xa9;
		if (!pb_utf8_valid(s, sizeof(s)) || pb_utf8_valid(s, at + 1))
			bad_utf8++;
	}
	tap_is_int(bad_utf8, 0, "utf8: U+00E9 after every ASCII run length, and cut by len");
}

static void test_json_escape(struct rng *rng)
{
	static const unsigned char pool[] = {
		'a', 'z', ' ', '"', '\\', '/', 0, '\n', '\r', '\t', 0x01, 0x1f, 0x7f,
		0x80, 0xa8, 0xa9, 0xbf, 0xc0, 0xc3, 0xe2, 0xed, 0xa0, 0xf0, 0xf4, 0x90, 0xff,
	};
	static const char *const seqs[] = {
		"\xe2\x80\xa8", "\xe2\x80\xa9", "\xc3\xa9", "\xf0\x9f\x98\x80", "\xed\xa0\x80",
	};
	unsigned char s[256];
	size_t i, j, n, bad_valid = 0, bad_any = 0, nvalid = 0;
	struct pb_buf b;
	int r;

	check_escape(S(""), "\"\"", "empty");
	check_escape(S("hello"), "\"hello\"", "plain");
	check_escape(S("a\"b\\c/d"), "\"a\\\"b\\\\c/d\"", "quote, backslash, slash");
	check_escape(S("\n\r\t\b\f"), "\"\\n\\r\\t\\b\\f\"", "named controls");
	check_escape(S("\x01\x1f\x0b"), "\"\\u0001\\u001f\\u000b\"", "other controls");
	check_escape(S("a\0b"), "\"a\\u0000b\"", "NUL");
	check_escape(S("\x7f"), "\"\\u007f\"", "DEL");
	check_escape(S("x\xe2\x80\xa8y\xe2\x80\xa9z"), "\"x\\u2028y\\u2029z\"", "U+2028/2029");
	check_escape(S("\xe2\x80\xa7\xe2\x80\xaa"), "\"\xe2\x80\xa7\xe2\x80\xaa\"",
		     "U+2027/202A untouched");
	check_escape(S("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"),
		     "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"", "multibyte untouched");
	check_escape(S("\xff"), "\"\xef\xbf\xbd\"", "FF replaced");
	check_escape(S("a\x80z"), "\"a\xef\xbf\xbdz\"", "stray continuation replaced");
	check_escape(S("a\xc3"), "\"a\xef\xbf\xbd\"", "truncated 2-byte replaced");
	check_escape(S("\xe2\x82z"), "\"\xef\xbf\xbdz\"", "truncated 3-byte: one U+FFFD");
	check_escape(S("\xf0\x9f\x98"), "\"\xef\xbf\xbd\"", "truncated 4-byte: one U+FFFD");
	check_escape(S("\xc0\x80"), "\"\xef\xbf\xbd\xef\xbf\xbd\"", "overlong C0 80");
	check_escape(S("\xe0\x80\x80"), "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"",
		     "overlong E0 80 80");
	check_escape(S("\xed\xa0\x80"), "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"",
		     "surrogate ED A0 80");
	check_escape(S("\xf4\x90\x80\x80"),
		     "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"", "above U+10FFFF");
	check_escape(S("\"\xff\n"), "\"\\\"\xef\xbf\xbd\\n\"", "escape, replace, escape");

	/* Random strings: output is always JSON, and the same text when valid. */
	for (i = 0; i < 5000; i++) {
		n = 0;
		while (n < 48 && rng_next(rng) % 10) {
			if (rng_next(rng) % 4 == 0) {
				const char *q = seqs[rng_next(rng) % (sizeof(seqs) / sizeof(seqs[0]))];

				memcpy(s + n, q, strlen(q));
				n += strlen(q);
			} else {
				s[n++] = pool[rng_next(rng) % sizeof(pool)];
			}
		}
		if (pb_utf8_valid(s, n)) {
			nvalid++;
			if (!escape_reparses(s, n, 1))
				bad_valid++;
		} else if (!escape_reparses(s, n, 0)) {
			bad_any++;
		}
	}
	tap_diag("%zu of 5000 random strings were valid UTF-8", nvalid);
	tap_ok(nvalid > 100, "the random strings include valid ones");
	tap_is_int(bad_valid, 0, "valid random strings re-parse to themselves");
	tap_is_int(bad_any, 0, "invalid random strings still give valid, JS-safe JSON");
	for (j = 0, i = 0; i < 256; i++)
		s[j++] = (unsigned char)i;
	tap_ok(escape_reparses(s, 128, 1), "all ASCII bytes round-trip");
	tap_ok(escape_reparses(s, 256, 0), "all 256 bytes give valid JSON");

	pb_buf_init(&b, 10);
	pb_buf_puts(&b, "ab");
	r = pb_json_put_string(&b, S("\n\n\n\n"));
	tap_ok(r == PB_ETOOBIG && b.len == 2 && !strcmp(b.data, "ab"),
	       "json escape over the limit: PB_ETOOBIG, buffer unchanged");
	r = pb_json_put_string(&b, S("123456"));
	tap_ok(r == 0 && !strcmp(b.data, "ab\"123456\""), "json escape up to the limit exactly");
	pb_buf_free(&b);
}

/* A message with the given type, seq and data. */
static struct pb_msg *mk(enum pb_msg_type type, uint64_t seq, const void *p, size_t len)
{
	struct pb_msg *m = pb_msg_new(type, p, len);

	if (!m)
		tap_bail("pb_msg_new failed");
	m->seq = seq;
	return m;
}

static void test_encode(void)
{
	static const unsigned char bin[] = { 0, 1, 2, 0xff, 0xfe };
	struct pb_close_info open = { 0 }, closed = { 1, 1000, "bye", 3 };
	struct pb_close_info badreason = { 1, 4001, "x\xff\"", 3 };
	struct pb_close_info noreason = { 1, 1006, NULL, 0 };
	struct pb_msg *msgs[4];
	unsigned char dec[16];
	json_t *v, *a, *e;
	struct pb_buf b;
	size_t i, dlen;
	int r;

	msgs[0] = mk(PB_MSG_TEXT, 7, S("hi \"there\"\n\xe2\x80\xa8"));
	msgs[1] = mk(PB_MSG_BINARY, 8, bin, sizeof(bin));
	msgs[2] = mk(PB_MSG_REOPEN, 9, NULL, 0);
	msgs[3] = mk(PB_MSG_TEXT, 9007199254740991ULL, S("a\0b"));

	pb_buf_init(&b, 0);
	r = pb_codec_encode_batch(&b, NULL, 0, &open);
	tap_ok(r == 0 && !strcmp(b.data, "{\"messages\":[],\"state\":\"open\"}"),
	       "empty open batch");
	pb_buf_free(&b);

	r = pb_codec_encode_batch(&b, NULL, 0, NULL);
	tap_ok(r == 0 && !strcmp(b.data, "{\"messages\":[],\"state\":\"open\"}"),
	       "NULL close info is open");
	pb_buf_free(&b);

	r = pb_codec_encode_batch(&b, msgs + 2, 1, &open);
	tap_is_str(b.data, "{\"messages\":[{\"seq\":9,\"type\":\"reopen\"}],\"state\":\"open\"}",
		   "reopen batch, exact bytes");
	pb_buf_free(&b);

	r = pb_codec_put_message(&b, msgs[1]);
	tap_is_str(b.data, "{\"seq\":8,\"type\":\"binary\",\"data\":\"AAEC//4=\"}",
		   "binary message, exact bytes");
	pb_buf_free(&b);

	r = pb_codec_encode_batch(&b, msgs, 4, &open);
	tap_is_int(r, 0, "open batch of four encodes");
	v = parse_buf(&b);
	tap_ok(v && json_is_object(v) && json_object_size(v) == 2, "open batch is a 2-key object");
	tap_ok(json_str_is(json_object_get(v, "state"), S("open")), "open batch: state open");
	tap_ok(!json_object_get(v, "close"), "open batch: no close");
	a = json_object_get(v, "messages");
	tap_ok(json_is_array(a) && json_array_size(a) == 4, "open batch: four messages");
	e = json_array_get(a, 0);
	tap_ok(json_object_size(e) == 3 && json_int_is(json_object_get(e, "seq"), 7) &&
	       json_str_is(json_object_get(e, "type"), S("text")) &&
	       json_str_is(json_object_get(e, "data"), S("hi \"there\"\n\xe2\x80\xa8")),
	       "message 0: text, seq 7, data intact");
	e = json_array_get(a, 1);
	tap_ok(json_object_size(e) == 3 && json_int_is(json_object_get(e, "seq"), 8) &&
	       json_str_is(json_object_get(e, "type"), S("binary")), "message 1: binary, seq 8");
	e = json_object_get(e, "data");
	tap_ok(json_is_string(e) && pb_base64_decode(json_string_value(e), json_string_length(e),
						     dec, &dlen) == 0 &&
	       dlen == sizeof(bin) && !memcmp(dec, bin, dlen), "message 1: base64 data decodes");
	e = json_array_get(a, 2);
	tap_ok(json_object_size(e) == 2 && json_int_is(json_object_get(e, "seq"), 9) &&
	       json_str_is(json_object_get(e, "type"), S("reopen")),
	       "message 2: reopen, seq 9, no data");
	e = json_array_get(a, 3);
	tap_ok(json_int_is(json_object_get(e, "seq"), 9007199254740991LL) &&
	       json_str_is(json_object_get(e, "data"), S("a\0b")),
	       "message 3: seq 2^53-1, NUL in text");
	json_decref(v);
	pb_buf_free(&b);

	r = pb_codec_encode_batch(&b, msgs, 1, &closed);
	v = r ? NULL : parse_buf(&b);
	tap_ok(v && json_object_size(v) == 3, "closed batch is a 3-key object");
	tap_ok(json_str_is(json_object_get(v, "state"), S("closed")), "closed batch: state");
	tap_is_int(json_array_size(json_object_get(v, "messages")), 1, "closed batch: 1 message");
	e = json_object_get(v, "close");
	tap_ok(json_object_size(e) == 2 && json_int_is(json_object_get(e, "code"), 1000) &&
	       json_str_is(json_object_get(e, "reason"), S("bye")), "closed batch: code, reason");
	json_decref(v);
	pb_buf_free(&b);

	r = pb_codec_encode_batch(&b, NULL, 0, &noreason);
	tap_is_str(b.data, "{\"messages\":[],\"state\":\"closed\",\"close\":"
		   "{\"code\":1006,\"reason\":\"\"}}", "empty closed batch, NULL reason");
	pb_buf_free(&b);

	r = pb_codec_encode_batch(&b, NULL, 0, &badreason);
	v = r ? NULL : parse_buf(&b);
	e = json_object_get(v, "close");
	tap_ok(json_int_is(json_object_get(e, "code"), 4001) &&
	       json_str_is(json_object_get(e, "reason"), S("x\xef\xbf\xbd\"")),
	       "closed batch: invalid reason bytes replaced");
	json_decref(v);
	pb_buf_free(&b);

	pb_buf_init(&b, 0);
	pb_buf_puts(&b, "cb(");
	r = pb_codec_encode_batch(&b, msgs + 2, 1, &open);
	tap_ok(r == 0 && !strncmp(b.data, "cb({\"messages\":", 15), "batch appends after a prefix");
	pb_buf_free(&b);

	pb_buf_init(&b, 60);
	pb_buf_puts(&b, "cb(");
	r = pb_codec_encode_batch(&b, msgs, 4, &closed);
	tap_ok(r == PB_ETOOBIG && b.len == 3 && !strcmp(b.data, "cb("),
	       "batch over the limit: PB_ETOOBIG, buffer cut back");
	r = pb_codec_put_message(&b, msgs[1]);
	dlen = 3 + strlen("{\"seq\":8,\"type\":\"binary\",\"data\":\"AAEC//4=\"}");
	tap_ok(r == 0 && b.len == dlen, "a message that fits still encodes after a failure");
	r = pb_codec_put_message(&b, msgs[0]);
	tap_ok(r == PB_ETOOBIG && b.len == dlen && b.data[dlen] == '\0',
	       "put_message over the limit leaves the buffer");
	pb_buf_free(&b);

	pb_buf_init(&b, 0);
	r = pb_codec_encode_error(&b, "bad_request", "say \"hi\"\n");
	tap_is_str(b.data, "{\"error\":\"bad_request\",\"message\":\"say \\\"hi\\\"\\n\"}",
		   "error object, exact bytes");
	v = parse_buf(&b);
	tap_ok(v && json_object_size(v) == 2 &&
	       json_str_is(json_object_get(v, "error"), S("bad_request")) &&
	       json_str_is(json_object_get(v, "message"), S("say \"hi\"\n")),
	       "error object re-parses");
	json_decref(v);
	pb_buf_free(&b);

	for (i = 0; i < 4; i++)
		pb_msg_unref(msgs[i]);
}

/* Read the next form pair from *p and check it is key=val. */
static void check_pair(const char **p, const char *end, const char *key, size_t klen,
		       const char *val, size_t vlen, const char *name)
{
	struct pb_buf k, v;
	int r;

	pb_buf_init(&k, 0);
	pb_buf_init(&v, 0);
	r = pb_form_next(p, end, &k, &v);
	tap_ok(r == 1 && k.len == klen && (!klen || !memcmp(k.data, key, klen)) &&
	       v.len == vlen && (!vlen || !memcmp(v.data, val, vlen)), "form %s", name);
	pb_buf_free(&k);
	pb_buf_free(&v);
}

/* Check that the form at *p has no pairs left. */
static void check_form_end(const char **p, const char *end, const char *name)
{
	struct pb_buf k, v;
	int r;

	pb_buf_init(&k, 0);
	pb_buf_init(&v, 0);
	r = pb_form_next(p, end, &k, &v);
	tap_ok(r == 0 && *p == end, "form %s: end", name);
	pb_buf_free(&k);
	pb_buf_free(&v);
}

/* The result of pb_form_next on the first pair of s. */
static int form_first(const char *s)
{
	const char *p = s;
	struct pb_buf k, v;
	int r;

	pb_buf_init(&k, 0);
	pb_buf_init(&v, 0);
	r = pb_form_next(&p, s + strlen(s), &k, &v);
	pb_buf_free(&k);
	pb_buf_free(&v);
	return r;
}

static void test_form(void)
{
	const char *s, *p, *end;
	struct pb_buf k, v;
	int r;

#define FORM(str) (s = (str), p = s, end = s + strlen(s))
	FORM("a=1&b=2");
	check_pair(&p, end, S("a"), S("1"), "a=1");
	check_pair(&p, end, S("b"), S("2"), "b=2");
	check_form_end(&p, end, "a=1&b=2");

	FORM("a+b=c+d%20e");
	check_pair(&p, end, S("a b"), S("c d e"), "+ and %20");
	check_form_end(&p, end, "+ and %20");

	FORM("&&a=1&&&b=&&");
	check_pair(&p, end, S("a"), S("1"), "empty pairs skipped before");
	check_pair(&p, end, S("b"), S(""), "empty value");
	check_form_end(&p, end, "empty pairs skipped after");

	FORM("key&=v&k2=");
	check_pair(&p, end, S("key"), S(""), "key without =");
	check_pair(&p, end, S(""), S("v"), "empty key");
	check_pair(&p, end, S("k2"), S(""), "key with = and no value");
	check_form_end(&p, end, "key without =");

	FORM("d=1&d=2&d=3");
	check_pair(&p, end, S("d"), S("1"), "repeated key 1");
	check_pair(&p, end, S("d"), S("2"), "repeated key 2");
	check_pair(&p, end, S("d"), S("3"), "repeated key 3");
	check_form_end(&p, end, "repeated keys");

	FORM("a=b=c&%3D=%26%2b%41%4a%4A%c3%A9%00");
	check_pair(&p, end, S("a"), S("b=c"), "second = is data");
	check_pair(&p, end, S("="), S("&+AJJ\xc3\xa9\0"), "escapes, both hex cases, %00");
	check_form_end(&p, end, "escapes");

	FORM("");
	check_form_end(&p, end, "empty body");
	FORM("&&&");
	check_form_end(&p, end, "only &");

	tap_is_int(form_first("a=%zz"), PB_EBADREQ, "form %%zz rejected");
	tap_is_int(form_first("a=%"), PB_EBADREQ, "form %% at end rejected");
	tap_is_int(form_first("a=%4"), PB_EBADREQ, "form %%4 at end rejected");
	tap_is_int(form_first("a=%4&b=1"), PB_EBADREQ, "form %%4& rejected");
	tap_is_int(form_first("%g0=1"), PB_EBADREQ, "form bad escape in key rejected");
	tap_is_int(form_first("a=%+1"), PB_EBADREQ, "form %%+1 rejected");

	/* The end pointer is respected: nothing past it is read. */
	s = "a=1&b=2";
	p = s;
	pb_buf_init(&k, 0);
	pb_buf_init(&v, 0);
	r = pb_form_next(&p, s + 2, &k, &v);
	tap_ok(r == 1 && k.len == 1 && v.len == 0 && p == s + 2, "form stops at end");
	s = "a=%41";
	p = s;
	r = pb_form_next(&p, s + 4, &k, &v);
	tap_is_int(r, PB_EBADREQ, "form escape cut by end rejected");
	pb_buf_free(&k);
	pb_buf_free(&v);

	pb_buf_init(&k, 0);
	pb_buf_init(&v, 4);
	s = "k=12345";
	p = s;
	r = pb_form_next(&p, s + strlen(s), &k, &v);
	tap_is_int(r, PB_ETOOBIG, "form value over the buffer limit: PB_ETOOBIG");
	pb_buf_free(&k);
	pb_buf_free(&v);
#undef FORM
}

/* Percent-decoding into a C string: '+' kept, %00 and bad escapes
 * refused, the output size respected, nothing read past len. */
static void test_percent_decode(void)
{
	char out[16];

	tap_ok(pb_percent_decode(S("p%40ss%2Fw+x"), out, sizeof(out)) == 0 &&
	       !strcmp(out, "p@ss/w+x"), "percent: escapes decoded, '+' kept (%s)", out);
	tap_ok(pb_percent_decode(S(""), out, sizeof(out)) == 0 && !out[0], "percent: empty");
	tap_ok(pb_percent_decode(S("%c3%A9"), out, sizeof(out)) == 0 &&
	       !strcmp(out, "\xc3\xa9"), "percent: both hex cases");
	tap_ok(pb_percent_decode(S("12345678901234%35"), out, sizeof(out)) == 0 &&
	       !strcmp(out, "123456789012345"), "percent: exactly fills the output");
	tap_is_int(pb_percent_decode(S("1234567890123456"), out, sizeof(out)), PB_ETOOBIG,
		   "percent: one byte too many: PB_ETOOBIG");
	tap_is_int(pb_percent_decode(S("a"), out, 0), PB_ETOOBIG, "percent: no room at all");
	tap_is_int(pb_percent_decode(S("a%00b"), out, sizeof(out)), PB_EBADREQ,
		   "percent: %%00 refused");
	tap_is_int(pb_percent_decode(S("a%zz"), out, sizeof(out)), PB_EBADREQ,
		   "percent: %%zz refused");
	tap_is_int(pb_percent_decode(S("a%4"), out, sizeof(out)), PB_EBADREQ,
		   "percent: %%4 at the end refused");
	tap_is_int(pb_percent_decode("a%41", 3, out, sizeof(out)), PB_EBADREQ,
		   "percent: an escape cut by len refused");
}

static void test_protocol_valid(void)
{
	char long64[66];

	memset(long64, 'p', 65);
	long64[65] = '\0';
	tap_is_int(pb_protocol_valid(S("chat")), 1, "protocol chat");
	tap_is_int(pb_protocol_valid(S("v1.chat+json")), 1, "protocol v1.chat+json");
	tap_is_int(pb_protocol_valid(S("!#$%&'*+-.^_`|~09AZaz")), 1, "protocol all tchar kinds");
	tap_is_int(pb_protocol_valid(long64, 64), 1, "protocol of 64 chars");
	tap_is_int(pb_protocol_valid(long64, 65), 0, "protocol of 65 chars");
	tap_is_int(pb_protocol_valid(S("")), 0, "protocol empty");
	tap_is_int(pb_protocol_valid(S("a b")), 0, "protocol with space");
	tap_is_int(pb_protocol_valid(S("a,b")), 0, "protocol with comma");
	tap_is_int(pb_protocol_valid(S("a/b")), 0, "protocol with slash");
	tap_is_int(pb_protocol_valid(S("(x)")), 0, "protocol with parens");
	tap_is_int(pb_protocol_valid(S("a\"b")), 0, "protocol with quote");
	tap_is_int(pb_protocol_valid(S("a\0b")), 0, "protocol with NUL");
	tap_is_int(pb_protocol_valid(S("\xc3\xa9")), 0, "protocol non-ASCII");
	tap_is_int(pb_protocol_valid(S("a\x7f")), 0, "protocol with DEL");
}

/* Header names (--forward-header) are tokens; values forwarded on the
 * upstream handshake never carry CR, LF or other control characters. */
static void test_header_valid(void)
{
	char long65[66];
	char one[2] = { 0, 0 };
	int bad = 0;

	memset(long65, 'h', 65);
	long65[65] = '\0';
	tap_is_int(pb_header_name_valid(S("Cookie")), 1, "header name Cookie");
	tap_is_int(pb_header_name_valid(S("X-Request-Id")), 1, "header name X-Request-Id");
	tap_is_int(pb_header_name_valid(S("!#$%&'*+-.^_`|~09AZaz")), 1, "header name all tchars");
	tap_is_int(pb_header_name_valid(long65, 64), 1, "header name of 64 chars");
	tap_is_int(pb_header_name_valid(long65, 65), 0, "header name of 65 chars");
	tap_is_int(pb_header_name_valid(S("")), 0, "header name empty");
	tap_is_int(pb_header_name_valid(S("X-A:")), 0, "header name with colon");
	tap_is_int(pb_header_name_valid(S("X A")), 0, "header name with space");
	tap_is_int(pb_header_name_valid(S("X-A\r\nX-B")), 0, "header name with CRLF");
	tap_is_int(pb_header_name_valid(S("X\0A")), 0, "header name with NUL");
	tap_is_int(pb_header_name_valid(S("\xc3\xa9")), 0, "header name non-ASCII");

	tap_is_int(pb_header_value_valid(S("")), 1, "header value empty");
	tap_is_int(pb_header_value_valid(S("a=1; b=2")), 1, "header value with spaces");
	tap_is_int(pb_header_value_valid(S("a\tb")), 1, "header value with HTAB");
	tap_is_int(pb_header_value_valid(S("Bearer abc/+=~\"(),;")), 1, "header value punctuation");
	tap_is_int(pb_header_value_valid(S("caf\xc3\xa9")), 1, "header value with UTF-8 bytes");
	tap_is_int(pb_header_value_valid(S("a\rb")), 0, "header value with CR");
	tap_is_int(pb_header_value_valid(S("a\nb")), 0, "header value with LF");
	tap_is_int(pb_header_value_valid(S("a\r\nX-Evil: 1")), 0, "header value with CRLF");
	tap_is_int(pb_header_value_valid(S("a\r\n b")), 0, "header value folded");
	tap_is_int(pb_header_value_valid(S("a\0b")), 0, "header value with NUL");
	tap_is_int(pb_header_value_valid(S("a\x7f")), 0, "header value with DEL");
	tap_is_int(pb_header_value_valid(S("\r")), 0, "header value only CR");
	tap_is_int(pb_header_value_valid(S("ok\n")), 0, "header value ending in LF");
	/* Every byte alone: only 0x00-0x1f but HTAB, and 0x7f, are refused. */
	for (int c = 0; c < 256; c++) {
		int want = !((c < 0x20 && c != '\t') || c == 0x7f);

		one[0] = (char)c;
		if (pb_header_value_valid(one, 1) != want) {
			bad++;
			tap_diag("header value byte 0x%02x: got %d", c, !want);
		}
	}
	tap_is_int(bad, 0, "header value: each of the 256 bytes judged right");
}

/* A create request parser (JSON or form). */
typedef int (*create_fn)(const char *, size_t, struct pb_create_req *, const char **);

/* Parse body with fn, expecting failure with want; req must be left empty. */
static void create_bad(create_fn fn, const char *body, size_t len, int want, const char *name)
{
	struct pb_create_req req;
	const char *why = NULL;
	int r;

	memset(&req, 0x5a, sizeof(req));
	r = fn(body, len, &req, &why);
	tap_ok(r == want && !req.route && req.nprotocols == 0 && why && *why,
	       "create rejects %s (%s)", name, why ? why : "no reason");
	if (r != want)
		tap_diag("  got %d, want %d", r, want);
	pb_create_req_free(&req);
}

/* Parse body with fn, expecting route and the protocols in protos (a
 * space-separated list, "" for none). */
static void create_good(create_fn fn, const char *body, size_t len, const char *route,
			const char *protos, const char *name)
{
	struct pb_create_req req;
	const char *why = NULL;
	struct pb_buf got;
	size_t i;
	int r;

	r = fn(body, len, &req, &why);
	pb_buf_init(&got, 0);
	pb_buf_puts(&got, "");
	for (i = 0; r == 0 && i < req.nprotocols; i++)
		pb_buf_printf(&got, "%s%s", i ? " " : "", req.protocols[i]);
	tap_ok(r == 0 && req.route && !strcmp(req.route, route) && !strcmp(got.data, protos),
	       "create accepts %s", name);
	if (r)
		tap_diag("  failed: %d (%s)", r, why ? why : "no reason");
	pb_buf_free(&got);
	pb_create_req_free(&req);
	tap_ok(!req.route && req.nprotocols == 0, "create_req_free empties %s", name);
}

/* A JSON create body with n protocols p0..p(n-1), into b. */
static void json_protocols(struct pb_buf *b, size_t n)
{
	size_t i;

	pb_buf_puts(b, "{\"route\":\"r\",\"protocols\":[");
	for (i = 0; i < n; i++)
		pb_buf_printf(b, "%s\"p%zu\"", i ? "," : "", i);
	pb_buf_puts(b, "]}");
}

static void test_create(void)
{
	create_fn js = pb_codec_parse_create_json, fm = pb_codec_parse_create_form;
	char name64[65], body[256];
	struct pb_buf b;
	size_t i;

	memset(name64, 'r', 64);
	name64[64] = '\0';

	create_good(js, S("{\"route\":\"echo\"}"), "echo", "", "JSON route only");
	create_good(js, S("{\"route\":\"echo\",\"protocols\":[\"chat\",\"v2.x\"]}"), "echo",
		    "chat v2.x", "JSON with protocols, in order");
	create_good(js, S("{\"protocols\":[],\"route\":\"e\"}"), "e", "", "JSON empty protocols");
	create_good(js, S("{\"route\":\"e\",\"protocols\":null}"), "e", "", "JSON null protocols");
	create_good(js, S(" {\"route\":\"e\",\"other\":[1,{}],\"x\":null} \n"), "e", "",
		    "JSON other keys, whitespace");
	snprintf(body, sizeof(body), "{\"route\":\"%s\"}", name64);
	create_good(js, body, strlen(body), name64, "", "JSON route of 64 bytes");
	pb_buf_init(&b, 0);
	json_protocols(&b, 16);
	create_good(js, b.data, b.len, "r", "p0 p1 p2 p3 p4 p5 p6 p7 p8 p9 p10 p11 p12 p13 p14 p15",
		    "JSON 16 protocols");
	pb_buf_free(&b);
	snprintf(body, sizeof(body), "{\"route\":\"e\",\"protocols\":[\"%s\"]}", name64);
	create_good(js, body, strlen(body), "e", name64, "JSON protocol of 64 chars");

	create_bad(js, S("{\"route\":\"\"}"), PB_EBADREQ, "JSON empty route");
	create_bad(js, S("{}"), PB_EBADREQ, "JSON missing route");
	create_bad(js, S("{\"protocols\":[\"chat\"]}"), PB_EBADREQ, "JSON only protocols");
	create_bad(js, S("{\"route\":5}"), PB_EBADREQ, "JSON route a number");
	create_bad(js, S("{\"route\":null}"), PB_EBADREQ, "JSON route null");
	create_bad(js, S("{\"route\":[\"echo\"]}"), PB_EBADREQ, "JSON route an array");
	create_bad(js, S("{\"route\":\"ec\\u0000ho\"}"), PB_EBADREQ, "JSON route with NUL");
	snprintf(body, sizeof(body), "{\"route\":\"%sr\"}", name64);
	create_bad(js, body, strlen(body), PB_EBADREQ, "JSON route of 65 bytes");
	create_bad(js, S("{\"route\":\"e\",\"protocols\":\"chat\"}"), PB_EBADREQ,
		   "JSON protocols a string");
	create_bad(js, S("{\"route\":\"e\",\"protocols\":[5]}"), PB_EBADREQ,
		   "JSON protocol a number");
	create_bad(js, S("{\"route\":\"e\",\"protocols\":[\"a b\"]}"), PB_EBADREQ,
		   "JSON protocol \"a b\"");
	create_bad(js, S("{\"route\":\"e\",\"protocols\":[\"\"]}"), PB_EBADREQ,
		   "JSON protocol \"\"");
	create_bad(js, S("{\"route\":\"e\",\"protocols\":[\"ok\",\"a\\u0000\"]}"), PB_EBADREQ,
		   "JSON protocol with NUL");
	create_bad(js, S("{\"route\":\"e\",\"protocols\":[\"chat\",\"x\",\"chat\"]}"),
		   PB_EBADREQ, "JSON duplicate protocols");
	snprintf(body, sizeof(body), "{\"route\":\"e\",\"protocols\":[\"%sp\"]}", name64);
	create_bad(js, body, strlen(body), PB_EBADREQ, "JSON protocol of 65 chars");
	pb_buf_init(&b, 0);
	json_protocols(&b, 17);
	create_bad(js, b.data, b.len, PB_EBADREQ, "JSON 17 protocols");
	pb_buf_free(&b);
	create_bad(js, S(""), PB_EBADREQ, "JSON empty body");
	create_bad(js, NULL, 0, PB_EBADREQ, "JSON NULL body");
	create_bad(js, S("{\"route\":"), PB_EBADREQ, "malformed JSON (cut)");
	create_bad(js, S("{route:\"e\"}"), PB_EBADREQ, "malformed JSON (bare key)");
	create_bad(js, S("{\"route\":\"e\"} x"), PB_EBADREQ, "JSON with trailing garbage");
	create_bad(js, S("{\"route\":\"e\"}{}"), PB_EBADREQ, "two JSON values");
	create_bad(js, S("[\"echo\"]"), PB_EBADREQ, "non-object JSON (array)");
	create_bad(js, S("\"echo\""), PB_EBADREQ, "non-object JSON (string)");
	create_bad(js, S("null"), PB_EBADREQ, "non-object JSON (null)");
	create_bad(js, S("{\"route\":\"a\",\"route\":\"b\"}"), PB_EBADREQ, "JSON duplicate key");
	create_bad(js, S("{\"route\":\"\xff\"}"), PB_EBADREQ, "JSON invalid UTF-8");
	create_bad(js, S("{\"route\":\"e\"}\0"), PB_EBADREQ, "JSON with trailing NUL");

	create_good(fm, S("route=echo"), "echo", "", "form route only");
	create_good(fm, S("route=echo&protocol=chat&protocol=x"), "echo", "chat x",
		    "form repeated protocol");
	create_good(fm, S("protocol=chat&other=1&route=e%63ho&&"), "echo", "chat",
		    "form any order, other fields, escapes");
	create_bad(fm, S("protocol=chat"), PB_EBADREQ, "form missing route");
	create_bad(fm, S(""), PB_EBADREQ, "form empty body");
	create_bad(fm, NULL, 0, PB_EBADREQ, "form NULL body");
	create_bad(fm, S("route="), PB_EBADREQ, "form empty route");
	create_bad(fm, S("route"), PB_EBADREQ, "form route without =");
	create_bad(fm, S("route=a&route=b"), PB_EBADREQ, "form repeated route");
	create_bad(fm, S("route=ec%00ho"), PB_EBADREQ, "form route with NUL");
	create_bad(fm, S("route=e%zz"), PB_EBADREQ, "form bad escape");
	create_bad(fm, S("route=e&protocol=a+b"), PB_EBADREQ, "form protocol \"a b\"");
	create_bad(fm, S("route=e&protocol="), PB_EBADREQ, "form protocol \"\"");
	create_bad(fm, S("route=e&protocol=a&protocol=a"), PB_EBADREQ, "form duplicate protocols");
	snprintf(body, sizeof(body), "route=%sr", name64);
	create_bad(fm, body, strlen(body), PB_EBADREQ, "form route of 65 bytes");
	pb_buf_init(&b, 0);
	pb_buf_puts(&b, "route=r");
	for (i = 0; i < 17; i++)
		pb_buf_printf(&b, "&protocol=p%zu", i);
	create_bad(fm, b.data, b.len, PB_EBADREQ, "form 17 protocols");
	pb_buf_free(&b);
}

/* A send request parser (JSON or form). */
typedef int (*send_fn)(const char *, size_t, size_t, size_t, struct pb_send_req *,
		       const char **);

/* Parse body with fn and the limits, expecting failure with want and an
 * empty req. */
static void send_bad(send_fn fn, const char *body, size_t len, size_t max_bytes,
		     size_t max_msgs, int want, const char *name)
{
	struct pb_send_req req;
	const char *why = NULL;
	int r;

	memset(&req, 0x5a, sizeof(req));
	r = fn(body, len, max_bytes, max_msgs, &req, &why);
	tap_ok(r == want && req.n == 0 && !req.msgs && req.seq == 0 && why && *why,
	       "send rejects %s (%s)", name, why ? why : "no reason");
	if (r != want)
		tap_diag("  got %d, want %d", r, want);
	pb_send_req_free(&req);
}

/* 1 if m is a message of type with data p[0..len). */
static int msg_is(const struct pb_msg *m, enum pb_msg_type type, const void *p, size_t len)
{
	return m && m->type == type && m->len == len && !memcmp(m->data, p, len) &&
	       m->data[len] == '\0' && m->refs == 1 && m->seq == 0;
}

static void test_send_json(void)
{
	send_fn js = pb_codec_parse_send_json;
	struct pb_send_req req;
	const char *why;
	int r;

#define PARSE(body, maxb, maxn) \
	(why = NULL, r = js(S(body), (maxb), (maxn), &req, &why))
	PARSE("{\"messages\":[{\"type\":\"text\",\"data\":\"hi\"}]}", 100, 10);
	tap_ok(r == 0 && req.n == 1 && msg_is(req.msgs[0], PB_MSG_TEXT, S("hi")) && req.seq == 0,
	       "send JSON one text message, no seq");
	pb_send_req_free(&req);
	tap_ok(req.n == 0 && !req.msgs, "send_req_free empties");

	PARSE("{\"messages\":[{\"type\":\"binary\",\"data\":\"AAEC/w==\"}]}", 100, 10);
	tap_ok(r == 0 && req.n == 1 && msg_is(req.msgs[0], PB_MSG_BINARY, S("\0\1\2\xff")),
	       "send JSON binary message decoded");
	pb_send_req_free(&req);

	PARSE("{\"messages\":[{\"type\":\"binary\",\"data\":\"\"},{\"data\":\"\"}]}", 100, 10);
	tap_ok(r == 0 && req.n == 2 && msg_is(req.msgs[0], PB_MSG_BINARY, S("")) &&
	       msg_is(req.msgs[1], PB_MSG_TEXT, S("")), "send JSON empty binary and text");
	pb_send_req_free(&req);

	PARSE("{\"messages\":[{\"data\":\"x\"},{\"type\":null,\"data\":\"y\"}]}", 100, 10);
	tap_ok(r == 0 && req.n == 2 && msg_is(req.msgs[0], PB_MSG_TEXT, S("x")) &&
	       msg_is(req.msgs[1], PB_MSG_TEXT, S("y")), "send JSON type defaults to text");
	pb_send_req_free(&req);

	PARSE("{\"seq\":3,\"messages\":[{\"data\":\"a\"},{\"type\":\"binary\",\"data\":\"Yg\"},"
	      "{\"type\":\"text\",\"data\":\"c\\u0000\\u00e9\\ud83d\\ude00\"}],\"x\":1}", 100, 3);
	tap_ok(r == 0 && req.n == 3 && req.seq == 3 && msg_is(req.msgs[0], PB_MSG_TEXT, S("a")) &&
	       msg_is(req.msgs[1], PB_MSG_BINARY, S("b")) &&
	       msg_is(req.msgs[2], PB_MSG_TEXT, S("c\0\xc3\xa9\xf0\x9f\x98\x80")),
	       "send JSON three in order, seq 3, NUL and pairs in text");
	pb_send_req_free(&req);

	PARSE("{\"messages\":[]}", 100, 10);
	tap_ok(r == 0 && req.n == 0 && req.seq == 0, "send JSON empty messages array");
	pb_send_req_free(&req);

	PARSE("{\"messages\":[],\"seq\":9007199254740991}", 100, 10);
	tap_ok(r == 0 && req.seq == 9007199254740991ULL, "send JSON seq 2^53-1");
	pb_send_req_free(&req);

	PARSE("{\"messages\":[],\"seq\":1}", 100, 0);
	tap_ok(r == 0 && req.seq == 1, "send JSON seq 1, empty array with max_msgs 0");
	pb_send_req_free(&req);

	PARSE("{\"messages\":[],\"seq\":null}", 100, 10);
	tap_ok(r == 0 && req.seq == 0, "send JSON seq null is no seq");
	pb_send_req_free(&req);

	PARSE("{\"messages\":[{\"data\":\"abcd\"},{\"type\":\"binary\",\"data\":\"YWJjZA==\"}]}",
	      4, 2);
	tap_ok(r == 0 && req.n == 2, "send JSON at the limits exactly (4 bytes, 2 messages)");
	pb_send_req_free(&req);
#undef PARSE

	send_bad(js, S("{\"messages\":[],\"seq\":0}"), 100, 10, PB_EBADREQ, "seq 0");
	send_bad(js, S("{\"messages\":[],\"seq\":-1}"), 100, 10, PB_EBADREQ, "seq -1");
	send_bad(js, S("{\"messages\":[],\"seq\":1.5}"), 100, 10, PB_EBADREQ, "seq 1.5");
	send_bad(js, S("{\"messages\":[],\"seq\":1.0}"), 100, 10, PB_EBADREQ, "seq 1.0");
	send_bad(js, S("{\"messages\":[],\"seq\":1e3}"), 100, 10, PB_EBADREQ, "seq 1e3");
	send_bad(js, S("{\"messages\":[],\"seq\":\"1\"}"), 100, 10, PB_EBADREQ, "seq a string");
	send_bad(js, S("{\"messages\":[],\"seq\":true}"), 100, 10, PB_EBADREQ, "seq true");
	send_bad(js, S("{\"messages\":[],\"seq\":9007199254740992}"), 100, 10, PB_EBADREQ,
		 "seq 2^53");
	send_bad(js, S("{\"messages\":[],\"seq\":9223372036854775807}"), 100, 10, PB_EBADREQ,
		 "seq 2^63-1");
	send_bad(js, S("{\"messages\":[],\"seq\":99999999999999999999999}"), 100, 10,
		 PB_EBADREQ, "seq huge");
	send_bad(js, S("{\"messages\":[{\"type\":\"reopen\",\"data\":\"\"}]}"), 100, 10,
		 PB_EBADREQ, "type reopen");
	send_bad(js, S("{\"messages\":[{\"type\":\"Text\",\"data\":\"x\"}]}"), 100, 10,
		 PB_EBADREQ, "type Text");
	send_bad(js, S("{\"messages\":[{\"type\":\"text\\u0000\",\"data\":\"x\"}]}"), 100, 10,
		 PB_EBADREQ, "type text with NUL");
	send_bad(js, S("{\"messages\":[{\"type\":1,\"data\":\"x\"}]}"), 100, 10, PB_EBADREQ,
		 "type a number");
	send_bad(js, S("{\"messages\":[{\"type\":\"text\"}]}"), 100, 10, PB_EBADREQ,
		 "missing data");
	send_bad(js, S("{\"messages\":[{\"data\":5}]}"), 100, 10, PB_EBADREQ, "data a number");
	send_bad(js, S("{\"messages\":[\"hi\"]}"), 100, 10, PB_EBADREQ, "message a string");
	send_bad(js, S("{\"messages\":[{\"type\":\"binary\",\"data\":\"A\"}]}"), 100, 10,
		 PB_EBADREQ, "bad base64 length");
	send_bad(js, S("{\"messages\":[{\"type\":\"binary\",\"data\":\"@@@@\"}]}"), 100, 10,
		 PB_EBADREQ, "bad base64 chars");
	send_bad(js, S("{\"messages\":[{\"type\":\"binary\",\"data\":\"Zg=\"}]}"), 100, 10,
		 PB_EBADREQ, "bad base64 padding");
	send_bad(js, S("{\"messages\":[{\"type\":\"binary\",\"data\":\"Zh==\"}]}"), 100, 10,
		 PB_EBADREQ, "base64 trailing bits");
	send_bad(js, S("{\"messages\":[{\"type\":\"binary\",\"data\":\"Zm9v\\n\"}]}"), 100, 10,
		 PB_EBADREQ, "base64 with newline");
	send_bad(js, S("{\"messages\":[{\"data\":\"\\ud800\"}]}"), 100, 10, PB_EBADREQ,
		 "lone surrogate escape");
	send_bad(js, S("{\"messages\":[{\"data\":\"\xed\xa0\x80\"}]}"), 100, 10, PB_EBADREQ,
		 "raw surrogate bytes");
	send_bad(js, S("{\"messages\":[{\"data\":\"\xff\"}]}"), 100, 10, PB_EBADREQ,
		 "raw invalid UTF-8");
	send_bad(js, S("{\"messages\":[{\"data\":\"abcde\"}]}"), 4, 10, PB_ETOOBIG,
		 "text over max_msg_bytes");
	send_bad(js, S("{\"messages\":[{\"type\":\"binary\",\"data\":\"YWJjZGU=\"}]}"), 4, 10,
		 PB_ETOOBIG, "binary over max_msg_bytes");
	send_bad(js, S("{\"messages\":[{\"data\":\"\\u00e9\\u00e9\\u00e9\"}]}"), 5, 10,
		 PB_ETOOBIG, "text over max_msg_bytes in UTF-8 bytes");
	send_bad(js, S("{\"messages\":[{\"data\":\"a\"},{\"data\":\"b\"},{\"data\":\"c\"}]}"),
		 100, 2, PB_ETOOBIG, "too many messages");
	send_bad(js, S("{\"messages\":[{\"data\":\"a\"}]}"), 100, 0, PB_ETOOBIG,
		 "one message with max_msgs 0");
	send_bad(js, S("{\"messages\":{}}"), 100, 10, PB_EBADREQ, "messages an object");
	send_bad(js, S("{\"messages\":\"hi\"}"), 100, 10, PB_EBADREQ, "messages a string");
	send_bad(js, S("{\"messages\":null}"), 100, 10, PB_EBADREQ, "messages null");
	send_bad(js, S("{\"seq\":1}"), 100, 10, PB_EBADREQ, "messages missing");
	send_bad(js, S("[]"), 100, 10, PB_EBADREQ, "non-object JSON");
	send_bad(js, S("{\"messages\":["), 100, 10, PB_EBADREQ, "malformed JSON");
	send_bad(js, S(""), 100, 10, PB_EBADREQ, "empty body");
	send_bad(js, S("{\"messages\":[],\"messages\":[]}"), 100, 10, PB_EBADREQ,
		 "duplicate messages key");
	send_bad(js, S("{\"messages\":[{\"data\":\"ok\"},{\"data\":\"fine\"},"
		       "{\"type\":\"bogus\",\"data\":\"x\"}]}"), 100, 10, PB_EBADREQ,
		 "all or nothing: bad third message");
	send_bad(js, S("{\"seq\":4,\"messages\":[{\"data\":\"ok\"},{\"type\":\"binary\","
		       "\"data\":\"AAAAAAAA\"}]}"), 5, 10, PB_ETOOBIG,
		 "all or nothing: big second message");
	send_bad(js, S("{\"messages\":[{\"data\":\"ok\"},{\"data\":\"ok\"}],\"seq\":0}"), 100,
		 10, PB_EBADREQ, "all or nothing: bad seq after good messages");
}

static void test_send_form(void)
{
	send_fn fm = pb_codec_parse_send_form;
	struct pb_send_req req;
	const char *why = NULL;
	struct pb_buf b;
	char want[8];
	size_t i;
	int r, ok;

	r = fm(S("data=hello+world"), 100, 10, &req, &why);
	tap_ok(r == 0 && req.n == 1 && msg_is(req.msgs[0], PB_MSG_TEXT, S("hello world")) &&
	       req.seq == 0, "send form one data field");
	pb_send_req_free(&req);

	r = fm(S("data=a&x=1&data=b%20c&&data=&data=%C3%A9%00"), 100, 10, &req, &why);
	tap_ok(r == 0 && req.n == 4 && msg_is(req.msgs[0], PB_MSG_TEXT, S("a")) &&
	       msg_is(req.msgs[1], PB_MSG_TEXT, S("b c")) &&
	       msg_is(req.msgs[2], PB_MSG_TEXT, S("")) &&
	       msg_is(req.msgs[3], PB_MSG_TEXT, S("\xc3\xa9\0")),
	       "send form several data fields in order");
	pb_send_req_free(&req);

	r = fm(S("data=%41%42%43%44"), 4, 1, &req, &why);
	tap_ok(r == 0 && req.n == 1 && msg_is(req.msgs[0], PB_MSG_TEXT, S("ABCD")),
	       "send form limit counts decoded bytes");
	pb_send_req_free(&req);

	pb_buf_init(&b, 0);
	for (i = 0; i < 100; i++)
		pb_buf_printf(&b, "%sdata=%zu", i ? "&" : "", i);
	r = fm(b.data, b.len, 100, 100, &req, &why);
	ok = r == 0 && req.n == 100;
	for (i = 0; ok && i < 100; i++) {
		snprintf(want, sizeof(want), "%zu", i);
		ok = msg_is(req.msgs[i], PB_MSG_TEXT, want, strlen(want));
	}
	tap_ok(ok, "send form 100 data fields at max_msgs, in order");
	pb_send_req_free(&req);
	send_bad(fm, b.data, b.len, 100, 99, PB_ETOOBIG, "form 100 fields with max_msgs 99");
	pb_buf_free(&b);

	send_bad(fm, S("data=%ff"), 100, 10, PB_EBADREQ, "form invalid UTF-8 %ff");
	send_bad(fm, S("data=ok&data=%ed%a0%80"), 100, 10, PB_EBADREQ, "form surrogate");
	send_bad(fm, S("data=%c3"), 100, 10, PB_EBADREQ, "form truncated UTF-8");
	send_bad(fm, S("x=1&datax=2&dat=3"), 100, 10, PB_EBADREQ, "form no data field");
	send_bad(fm, S(""), 100, 10, PB_EBADREQ, "form empty body");
	send_bad(fm, NULL, 0, 100, 10, PB_EBADREQ, "form NULL body");
	send_bad(fm, S("data=ok&data=%zz"), 100, 10, PB_EBADREQ, "form bad escape");
	send_bad(fm, S("data=ok&x=%"), 100, 10, PB_EBADREQ, "form bad escape in other field");
	send_bad(fm, S("data=abcde"), 4, 10, PB_ETOOBIG, "form too big message");
	send_bad(fm, S("data=a&data=abcde"), 4, 10, PB_ETOOBIG, "form all or nothing: big second");
	send_bad(fm, S("data=a&data=b&data=c"), 100, 2, PB_ETOOBIG, "form too many messages");
	send_bad(fm, S("data=a"), 100, 0, PB_ETOOBIG, "form one message with max_msgs 0");
}

int main(void)
{
	struct rng rng = { 0x9e3779b97f4a7c15ULL };

	test_uint53();
	test_utf8();
	test_utf8_vs_jansson(&rng);
	test_base64(&rng);
	test_ids();
	test_word_scans();
	test_json_escape(&rng);
	test_encode();
	test_form();
	test_percent_decode();
	test_protocol_valid();
	test_header_valid();
	test_create();
	test_send_json();
	test_send_form();
	return tap_done();
}
