/*
 * test_eio_codec.c: unit tests for src/eio_codec.c, the Engine.IO polling
 * wire formats. The vectors are the bytes captured between real clients and
 * servers (socket.io 4.8 / engine.io 6.6 for v4, socket.io 2.5 / engine.io
 * 3.6 for v3; notes in eio-captures.md): every encoder must reproduce what
 * the real server sent, every decoder must accept what the real client sent.
 * Hostile inputs (bad lengths, truncation, bad base64, huge counts) must be
 * clear errors. JSONP strings are re-parsed with jansson, an independent
 * implementation, to check that every payload round-trips.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "eio_codec.h"
#include "error.h"
#include "msg.h"
#include "tap.h"

#define S(lit) (lit), (sizeof(lit) - 1)

/* 1 if b holds exactly the n bytes of want. */
static int buf_is(const struct pb_buf *b, const void *want, size_t n)
{
	return b->len == n && (n == 0 || memcmp(b->data, want, n) == 0);
}

/* 1 if message m has type and bytes p[0..n). */
static int msg_is(const struct pb_msg *m, int type, const void *p, size_t n)
{
	return m && m->type == type && m->len == n && (n == 0 || memcmp(m->data, p, n) == 0);
}

/* Error JSON, messages and UTF-16 lengths. */
static void test_basics(void)
{
	struct pb_buf b;

	pb_buf_init(&b, 0);
	tap_ok(pb_eio_put_error(&b, PB_EIO_ERR_SID, NULL) == 0 &&
	   buf_is(&b, S("{\"code\":1,\"message\":\"Session ID unknown\"}")),
	   "error 1 as engine.io sends it (captured)");
	b.len = 0;
	pb_eio_put_error(&b, PB_EIO_ERR_TRANSPORT, NULL);
	tap_ok(buf_is(&b, S("{\"code\":0,\"message\":\"Transport unknown\"}")), "error 0 (captured)");
	b.len = 0;
	pb_eio_put_error(&b, PB_EIO_ERR_METHOD, NULL);
	tap_ok(buf_is(&b, S("{\"code\":2,\"message\":\"Bad handshake method\"}")), "error 2 (captured)");
	b.len = 0;
	pb_eio_put_error(&b, PB_EIO_ERR_VERSION, NULL);
	tap_ok(buf_is(&b, S("{\"code\":5,\"message\":\"Unsupported protocol version\"}")), "error 5");
	b.len = 0;
	pb_eio_put_error(&b, PB_EIO_ERR_BADREQ, "say \"no\"");
	tap_ok(buf_is(&b, S("{\"code\":3,\"message\":\"say \\\"no\\\"\"}")), "a custom message is escaped");
	tap_is_str(pb_eio_error_message(99), "Bad request", "an unknown code reads as Bad request");
	tap_is_str(pb_eio_error_message(-1), "Bad request", "a negative code too");
	pb_buf_free(&b);

	tap_is_int(pb_eio_utf16_len(S("abc")), 3, "ASCII counts bytes");
	tap_is_int(pb_eio_utf16_len(S("\xc3\xa9")), 1, "a 2-byte character is one unit");
	tap_is_int(pb_eio_utf16_len(S("\xe2\x80\xa8")), 1, "a 3-byte character is one unit");
	tap_is_int(pb_eio_utf16_len(S("\xf0\x9f\x98\x80")), 2, "a 4-byte character is two units");
	tap_is_int(pb_eio_utf16_len(S("\xff\xfe")), 2, "each ill-formed byte is one unit");
	tap_is_int(pb_eio_utf16_len(S("\xf0\x9f\x98")), 3, "a truncated sequence: one per byte");
	tap_is_int(pb_eio_utf16_len(S("\xed\xa0\x80")), 3, "an encoded surrogate: one per byte");
	/* The example: a 66-byte packet of multi-byte text is "61:". */
	tap_is_int(pb_eio_utf16_len(S("42[\"m\",\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\"]")),
	       15, "multi-byte text counts characters, not bytes");
}

/* The v4 payload a poll answers with (captured from engine.io 6.6). */
static void test_encode_v4(void)
{
	static const unsigned char bin[] = { 1, 2, 3, 255 };
	struct pb_buf b;
	struct pb_eio_enc e;
	struct pb_msg *m;

	pb_buf_init(&b, 0);
	pb_eio_enc_init(&e, &b, 4, 1);
	tap_ok(pb_eio_enc_text(&e, S("451-[\"bin\",{\"_placeholder\":true,\"num\":0}]")) == 0 &&
	   pb_eio_enc_binary(&e, bin, sizeof(bin)) == 0 &&
	   pb_eio_enc_text(&e, S("430[\"acked\"]")) == 0, "v4 encode");
	tap_ok(buf_is(&b, S("451-[\"bin\",{\"_placeholder\":true,\"num\":0}]\x1e" "bAQID/w==\x1e"
			"430[\"acked\"]")),
	   "v4: packets joined by 0x1e, binary as b<base64> (captured)");
	tap_is_int(e.n, 3, "three packets");

	b.len = 0;
	pb_eio_enc_init(&e, &b, 4, 0);
	pb_eio_enc_text(&e, S("6"));
	pb_eio_enc_text(&e, S("1"));
	tap_ok(buf_is(&b, S("6\x1e" "1")), "noop then close, as engine.io answers a closing poll");

	b.len = 0;
	pb_eio_enc_init(&e, &b, 4, 0);
	m = pb_msg_new(PB_MSG_REOPEN, NULL, 0);
	tap_ok(pb_eio_enc_msg(&e, m) == 0 && b.len == 0 && e.n == 0, "a reopen message is skipped");
	pb_msg_unref(m);
	m = pb_msg_new(PB_MSG_BINARY, "", 0);
	tap_ok(pb_eio_enc_msg(&e, m) == 0 && buf_is(&b, S("b")), "an empty binary message is \"b\"");
	pb_msg_unref(m);
	pb_buf_free(&b);

	/* A failed append leaves the buffer as it was. */
	pb_buf_init(&b, 8);
	pb_eio_enc_init(&e, &b, 4, 0);
	pb_eio_enc_text(&e, S("4abc"));
	tap_is_int(pb_eio_enc_text(&e, S("4defgh")), PB_ETOOBIG, "over the buffer limit");
	tap_ok(buf_is(&b, S("4abc")) && e.n == 1, "nothing partial is left behind");
	tap_is_int(pb_eio_enc_binary(&e, bin, sizeof(bin)), PB_ETOOBIG, "binary over the limit");
	tap_ok(buf_is(&b, S("4abc")), "still nothing partial");
	pb_buf_free(&b);
}

/* The v3 string and binary payloads (captured from engine.io 3.6). */
static void test_encode_v3(void)
{
	static const unsigned char frame[] = { 4, 1, 2, 3, 255 };
	static const char txt[] = "42[\"txt\",\"h\xc3\xa9llo \xf0\x9f\x98\x80 \\\"q\\\" \\\\ \\n end\"]";
	static const char txt2[] = "42[\"txt\",\"\xc3\xa9\xf0\x9f\x98\x80 \xe2\x80\xa8 </script> "
				   "\\\"\\\\ \\u0000\"]";
	static const char ph[] = "451-[\"bin\",{\"_placeholder\":true,\"num\":0}]";
	struct pb_buf b, want;
	struct pb_eio_enc e;

	pb_buf_init(&b, 0);
	pb_eio_enc_init(&e, &b, 3, 0);
	pb_eio_enc_text(&e, S("0{\"sid\":\"lUcr62ZuH3_WIChKAAAA\",\"upgrades\":[],"
			      "\"pingInterval\":25000,\"pingTimeout\":20000}"));
	pb_eio_enc_text(&e, S("40"));
	tap_ok(buf_is(&b, S("86:0{\"sid\":\"lUcr62ZuH3_WIChKAAAA\",\"upgrades\":[],"
			"\"pingInterval\":25000,\"pingTimeout\":20000}2:40")),
	   "v3 handshake payload (captured)");

	b.len = 0;
	pb_eio_enc_init(&e, &b, 3, 0);
	pb_eio_enc_text(&e, S(txt));
	pb_eio_enc_text(&e, S(ph));
	pb_eio_enc_binary(&e, frame, sizeof(frame));
	pb_eio_enc_text(&e, S("430[\"acked\"]"));
	tap_ok(buf_is(&b, S("36:42[\"txt\",\"h\xc3\xa9llo \xf0\x9f\x98\x80 \\\"q\\\" \\\\ \\n end\"]"
			"41:451-[\"bin\",{\"_placeholder\":true,\"num\":0}]10:b4AQID/w==12:430[\"acked\"]")),
	   "v3 string payload: UTF-16 lengths, b4<base64> (captured)");

	/* The binary payload, for XHR2 clients without b64. */
	b.len = 0;
	pb_eio_enc_init(&e, &b, 3, 1);
	pb_eio_enc_text(&e, S(txt2));
	pb_eio_enc_text(&e, S(ph));
	pb_eio_enc_binary(&e, frame, sizeof(frame));
	pb_buf_init(&want, 0);
	pb_buf_append(&want, "\x00\x04\x04\xff", 4);
	pb_buf_append(&want, txt2, sizeof(txt2) - 1);
	pb_buf_append(&want, "\x00\x04\x01\xff", 4);
	pb_buf_append(&want, ph, sizeof(ph) - 1);
	pb_buf_append(&want, "\x01\x05\xff\x04\x01\x02\x03\xff", 8);
	tap_is_int(sizeof(txt2) - 1, 44, "the captured text packet is 44 bytes");
	tap_ok(b.len == want.len && memcmp(b.data, want.data, b.len) == 0,
	   "v3 binary payload: byte lengths as digit bytes, 0xff, type byte kept (captured)");
	pb_buf_free(&want);

	/* A v3 binary frame that does not start with a type byte. */
	b.len = 0;
	pb_eio_enc_init(&e, &b, 3, 0);
	pb_eio_enc_binary(&e, "\x09\x08", 2);
	tap_ok(buf_is(&b, S("6:b4CQg=")), "a frame without a type byte is a message's data");
	b.len = 0;
	pb_eio_enc_init(&e, &b, 3, 0);
	pb_eio_enc_text(&e, S("6"));
	tap_ok(buf_is(&b, S("1:6")), "v3 noop");
	pb_buf_free(&b);
}

/* Reparse a JSONP answer's string with jansson; 1 if it equals p[0..n). */
static int jsonp_roundtrip(const struct pb_buf *b, const char *idx, const void *p, size_t n)
{
	char head[64];
	size_t hl;
	json_t *j;
	int good;

	hl = (size_t)snprintf(head, sizeof(head), "___eio[%s](", idx);
	if (b->len < hl + 2 || memcmp(b->data, head, hl) != 0 ||
	    memcmp(b->data + b->len - 2, ");", 2) != 0)
		return 0;
	j = json_loadb(b->data + hl, b->len - hl - 2, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	good = json_is_string(j) && json_string_length(j) == n &&
	       memcmp(json_string_value(j), p, n) == 0;
	json_decref(j);
	return good;
}

/* 1 if b holds no raw U+2028/2029, no control byte and no '<'. */
static int jsonp_safe(const struct pb_buf *b)
{
	for (size_t i = 0; i < b->len; i++) {
		unsigned char c = (unsigned char)b->data[i];

		if (c < 0x20 || c == '<')
			return 0;
		if (c == 0xe2 && i + 2 < b->len && (unsigned char)b->data[i + 1] == 0x80 &&
		    ((unsigned char)b->data[i + 2] == 0xa8 || (unsigned char)b->data[i + 2] == 0xa9))
			return 0;
	}
	return 1;
}

/* JSONP answers. */
static void test_jsonp(void)
{
	static const char pay[] = "39:42[\"txt\",\"\xc3\xa9\xf0\x9f\x98\x80 \xe2\x80\xa8 </script> "
				  "\\\"\\\\ \\u0000\"]";
	static const char *const specials[] = {
		"\"", "\\", "\xe2\x80\xa8", "\xe2\x80\xa9", "</script>", "<!--", "\n", "\r", "\t",
		"\b", "\f", "\x01", "\x1f", "\x7f", "'", "\xc3\xa9", "\xf0\x9f\x98\x80", "a", " ",
		"\\u0041", "\\n", "${x}", "`",
	};
	struct pb_buf b;
	unsigned seed = 7;
	int bad = 0, unsafe = 0;

	pb_buf_init(&b, 0);
	tap_ok(pb_eio_put_jsonp(&b, "0", S("86:0{\"sid\":\"kp9txyLgg83kZe4vAAAB\",\"upgrades\":[],"
				       "\"pingInterval\":25000,\"pingTimeout\":20000}2:40")) == 0 &&
	   buf_is(&b, S("___eio[0](\"86:0{\\\"sid\\\":\\\"kp9txyLgg83kZe4vAAAB\\\",\\\"upgrades"
			"\\\":[],\\\"pingInterval\\\":25000,\\\"pingTimeout\\\":20000}2:40\");")),
	   "JSONP handshake answer as engine.io 3 sends it (captured)");

	b.len = 0;
	pb_eio_put_jsonp(&b, "1", S(pay));
	tap_ok(jsonp_roundtrip(&b, "1", S(pay)), "the captured payload round-trips");
	tap_ok(jsonp_safe(&b), "no raw U+2028, control byte or '<' in the answer");
	tap_ok(strstr(b.data, "\\u2028") && strstr(b.data, "\\u003c/script>"),
	   "U+2028 and '<' escaped");

	b.len = 0;
	pb_eio_put_jsonp(&b, "12<script>34", S("x"));
	tap_ok(buf_is(&b, S("___eio[1234](\"x\");")), "only the digits of j= are kept");
	b.len = 0;
	pb_eio_put_jsonp(&b, "", S(""));
	tap_ok(buf_is(&b, S("___eio[](\"\");")), "an empty index and payload");
	b.len = 0;
	pb_eio_put_jsonp(&b, "12345678901234567890", S("x"));
	tap_ok(buf_is(&b, S("___eio[1234567890123456](\"x\");")), "the index is bounded");
	b.len = 0;
	pb_eio_put_jsonp(&b, "0", S("a\xff" "b\xc3"));
	tap_ok(buf_is(&b, S("___eio[0](\"a\\ufffdb\\ufffd\");")), "ill-formed UTF-8 becomes U+FFFD");
	b.len = 0;
	pb_eio_put_jsonp(&b, "0", "a\0b", 3);
	tap_ok(jsonp_roundtrip(&b, "0", "a\0b", 3) && jsonp_safe(&b), "a NUL round-trips");

	/* Random strings of the dangerous pieces: every one round-trips. */
	for (int t = 0; t < 2000; t++) {
		char s[512];
		size_t n = 0;
		int k = (int)((seed = seed * 1103515245u + 12345u) >> 16) % 24;

		for (int i = 0; i < k; i++) {
			const char *piece;
			size_t pl;

			seed = seed * 1103515245u + 12345u;
			piece = specials[(seed >> 16) % (sizeof(specials) / sizeof(specials[0]))];
			pl = strlen(piece);
			if ((seed >> 8) % 17 == 0) {
				s[n++] = '\0';
				continue;
			}
			memcpy(s + n, piece, pl);
			n += pl;
		}
		b.len = 0;
		if (pb_eio_put_jsonp(&b, "3", s, n) || !jsonp_roundtrip(&b, "3", s, n))
			bad++;
		if (!jsonp_safe(&b))
			unsafe++;
	}
	tap_is_int(bad, 0, "2000 random payloads of quotes, backslashes, U+2028/9, </script>, NUL "
	       "round-trip through JSONP");
	tap_is_int(unsafe, 0, "and none leaves a raw line terminator, control byte or '<'");
	pb_buf_free(&b);
}

/* The open packet rewrite. */
static void test_open(void)
{
	static const char v4[] = "0{\"sid\":\"Hw2ue9BEXcMBpk6TAAAA\",\"upgrades\":[\"websocket\"],"
				 "\"pingInterval\":25000,\"pingTimeout\":20000,\"maxPayload\":1000000}";
	struct pb_buf b;

	pb_buf_init(&b, 0);
	tap_ok(pb_eio_rewrite_open(S(v4), "SID", 65536, &b) == 0 &&
	   buf_is(&b, S("0{\"sid\":\"SID\",\"upgrades\":[],\"pingInterval\":25000,"
			"\"pingTimeout\":20000,\"maxPayload\":65536}")),
	   "v4: sid replaced, no upgrades, maxPayload lowered to ours, pings kept");
	b.len = 0;
	tap_ok(pb_eio_rewrite_open(S(v4), "SID", 2000000, &b) == 0 &&
	   strstr(b.data, "\"maxPayload\":1000000}"), "their smaller maxPayload is kept");
	b.len = 0;
	tap_ok(pb_eio_rewrite_open(S("0{\"sid\":\"x\",\"upgrades\":[],\"pingTimeout\":5000,"
				 "\"pingInterval\":25000}"), "SID", 4096, &b) == 0 &&
	   buf_is(&b, S("0{\"sid\":\"SID\",\"upgrades\":[],\"pingTimeout\":5000,"
			"\"pingInterval\":25000,\"maxPayload\":4096}")),
	   "no maxPayload (Flask-SocketIO): the bridge states its own");
	b.len = 0;
	tap_ok(pb_eio_rewrite_open(S("0{\"sid\":\"x\",\"upgrades\":[],\"pingInterval\":25000,"
				 "\"pingTimeout\":20000}"), "SID", 0, &b) == 0 &&
	   buf_is(&b, S("0{\"sid\":\"SID\",\"upgrades\":[],\"pingInterval\":25000,"
			"\"pingTimeout\":20000}")),
	   "v3 (max 0): no maxPayload added");
	b.len = 0;
	tap_ok(pb_eio_rewrite_open(S("0{\"upgrades\":[\"websocket\"],\"maxPayload\":\"big\"}"), "S",
			       100, &b) == 0 &&
	   buf_is(&b, S("0{\"upgrades\":[],\"maxPayload\":100,\"sid\":\"S\"}")),
	   "a missing sid is added, a non-number maxPayload replaced");
	tap_is_int(pb_eio_rewrite_open(S("40"), "S", 1, &b), PB_EBADREQ, "not an open packet");
	tap_is_int(pb_eio_rewrite_open(S("0[1]"), "S", 1, &b), PB_EBADREQ, "not an object");
	tap_is_int(pb_eio_rewrite_open(S("0{\"sid\":"), "S", 1, &b), PB_EBADREQ, "truncated JSON");
	tap_is_int(pb_eio_rewrite_open(S("0"), "S", 1, &b), PB_EBADREQ, "a bare 0");
	tap_is_int(pb_eio_rewrite_open(S("0{} x"), "S", 1, &b), PB_EBADREQ, "trailing bytes");
	pb_buf_free(&b);
}

/* Decoding what real clients post. */
static void test_decode(void)
{
	static const char hello[] = "420[\"hello\",\"w\xc3\xb6rld \xf0\x9f\x98\x80\"]";
	struct pb_eio_in in;
	struct pb_buf body;
	const char *why = NULL;

	/* v4 (captured from socket.io-client 4.8). */
	tap_ok(pb_eio_decode(4, 0, S(hello), 1000, 100, &in, &why) == 0 && in.n == 1 &&
	   msg_is(in.msgs[0], PB_MSG_TEXT, S(hello)) && !in.close, "v4 text packet (captured)");
	pb_eio_in_free(&in);
	tap_ok(pb_eio_decode(4, 0, S("bCQgH"), 1000, 100, &in, &why) == 0 && in.n == 1 &&
	   msg_is(in.msgs[0], PB_MSG_BINARY, "\x09\x08\x07", 3), "v4 binary packet: raw frame (captured)");
	pb_eio_in_free(&in);
	tap_ok(pb_eio_decode(4, 0, S("1"), 1000, 100, &in, &why) == 0 && in.n == 0 && in.close,
	   "v4 close packet (captured)");
	pb_eio_in_free(&in);
	tap_ok(pb_eio_decode(4, 0, S("3\x1e" "42[\"a\"]\x1e" "6\x1e" "bAA==\x1e" "1\x1e" "4after"), 1000, 100,
			 &in, &why) == 0 && in.n == 3 && in.close &&
	   msg_is(in.msgs[0], PB_MSG_TEXT, S("3")) &&
	   msg_is(in.msgs[1], PB_MSG_TEXT, S("42[\"a\"]")) &&
	   msg_is(in.msgs[2], PB_MSG_BINARY, "\0", 1),
	   "v4: pong, message, noop dropped, binary, close ends the payload");
	pb_eio_in_free(&in);

	/* v3 string (captured from socket.io-client 2.5, b64=1). */
	tap_ok(pb_eio_decode(3, 0, S("23:420[\"hello\",\"w\xc3\xb6rld \xf0\x9f\x98\x80\"]"), 1000, 100,
			 &in, &why) == 0 && in.n == 1 && msg_is(in.msgs[0], PB_MSG_TEXT, S(hello)),
	   "v3 length in UTF-16 units (captured)");
	pb_eio_in_free(&in);
	tap_ok(pb_eio_decode(3, 0, S("6:b4CQgH"), 1000, 100, &in, &why) == 0 && in.n == 1 &&
	   msg_is(in.msgs[0], PB_MSG_BINARY, "\x04\x09\x08\x07", 4),
	   "v3 b4<base64>: a binary frame with the type byte 0x04 (captured)");
	pb_eio_in_free(&in);
	tap_ok(pb_eio_decode(3, 0, S("1:1"), 1000, 100, &in, &why) == 0 && in.close && in.n == 0,
	   "v3 close (captured)");
	pb_eio_in_free(&in);
	tap_ok(pb_eio_decode(3, 0, S("1:22:400:"), 1000, 100, &in, &why) == 0 && in.n == 2 &&
	   msg_is(in.msgs[0], PB_MSG_TEXT, S("2")) && msg_is(in.msgs[1], PB_MSG_TEXT, S("40")),
	   "v3 client ping, a packet, and an empty 0:");
	pb_eio_in_free(&in);

	/* v3 binary payload (what the XHR2 client posts; the real server took it). */
	pb_buf_init(&body, 0);
	pb_buf_append(&body, "\x00\x03\x09\xff", 4);
	pb_buf_puts(&body, "451-[\"m\",{\"_placeholder\":true,\"num\":0}]");
	pb_buf_append(&body, "\x01\x04\xff\x04\x07\x08\x09", 7);
	tap_ok(pb_eio_decode(3, 1, body.data, body.len, 1000, 100, &in, &why) == 0 && in.n == 2 &&
	   msg_is(in.msgs[0], PB_MSG_TEXT, S("451-[\"m\",{\"_placeholder\":true,\"num\":0}]")) &&
	   msg_is(in.msgs[1], PB_MSG_BINARY, "\x04\x07\x08\x09", 4),
	   "v3 binary payload: text and binary entries");
	pb_eio_in_free(&in);
	body.len = 0;
	pb_buf_append(&body, "\x00\x03\xff" "4:1", 6);
	tap_ok(pb_eio_decode(3, 1, body.data, body.len, 1000, 100, &in, &why) == 0 && in.n == 1 &&
	   msg_is(in.msgs[0], PB_MSG_TEXT, S("4:1")),
	   "a v3 binary entry holds one packet, not a string payload");
	pb_eio_in_free(&in);
	body.len = 0;
	pb_buf_append(&body, "\x00\x01\xff" "1" "\x00\x01\xff" "4", 8);
	tap_ok(pb_eio_decode(3, 1, body.data, body.len, 1000, 100, &in, &why) == 0 && in.close &&
	   in.n == 0, "v3 binary payload close");
	pb_eio_in_free(&in);
	pb_buf_free(&body);
}

/* One hostile input: decode must fail with err. */
static void bad(int version, int binary, const char *p, size_t n, int err, const char *name)
{
	struct pb_eio_in in;
	const char *why = NULL;
	int r = pb_eio_decode(version, binary, p, n, 64, 4, &in, &why);

	tap_ok(r == err && in.n == 0 && in.msgs == NULL && (err != PB_EBADREQ || why),
	   "%s: %d (%s)", name, r, why ? why : "-");
	pb_eio_in_free(&in);
}

/* Hostile inputs: all are clear errors, nothing is left half-filled. */
static void test_hostile(void)
{
	char big[200];

	bad(4, 0, "", 0, PB_EBADREQ, "v4 empty body");
	bad(3, 0, "", 0, PB_EBADREQ, "v3 empty body");
	bad(3, 1, "", 0, PB_EBADREQ, "v3 empty binary body");
	bad(4, 0, S("7x"), PB_EBADREQ, "v4 unknown type");
	bad(4, 0, S("4a\x1e"), PB_EBADREQ, "v4 trailing separator");
	bad(4, 0, S("\x1e" "4a"), PB_EBADREQ, "v4 empty first packet");
	bad(4, 0, S("b!!!!"), PB_EBADREQ, "v4 bad base64");
	bad(4, 0, S("bAQ=x"), PB_EBADREQ, "v4 base64 with junk after padding");
	bad(4, 0, S("4\xff"), PB_EBADREQ, "v4 ill-formed UTF-8");
	bad(4, 0, S("4\xed\xa0\x80"), PB_EBADREQ, "v4 encoded surrogate");
	bad(4, 0, S("4a\x1e" "4b\x1e" "4c\x1e" "4d\x1e" "4e"), PB_ETOOBIG, "v4 too many packets");
	memset(big, 'x', sizeof(big));
	big[0] = '4';
	bad(4, 0, big, sizeof(big), PB_ETOOBIG, "v4 packet over the message limit");
	big[0] = 'b';
	memset(big + 1, 'A', sizeof(big) - 1);
	bad(4, 0, big, 97, PB_ETOOBIG, "v4 binary over the message limit");
	bad(3, 0, S("abc"), PB_EBADREQ, "v3 no length");
	bad(3, 0, S(":4a"), PB_EBADREQ, "v3 empty length");
	bad(3, 0, S("99:4abc"), PB_EBADREQ, "v3 truncated packet");
	bad(3, 0, S("3:4ab2"), PB_EBADREQ, "v3 length without its colon at the end");
	bad(3, 0, S("2:4\xf0\x9f\x98\x80"), PB_EBADREQ, "v3 length splitting a surrogate pair");
	bad(3, 0, S("999999999999999999999999:4"), PB_EBADREQ, "v3 huge length");
	bad(3, 0, S("18446744073709551617:4"), PB_EBADREQ, "v3 length past 2^64");
	bad(3, 0, S("-1:4"), PB_EBADREQ, "v3 negative length");
	bad(3, 0, S("1:7"), PB_EBADREQ, "v3 unknown type");
	bad(3, 0, S("3:b2A"), PB_EBADREQ, "v3 binary packet that is not a message");
	bad(3, 0, S("4:b4A!"), PB_EBADREQ, "v3 bad base64");
	bad(3, 0, S("2:4a2:4b2:4c2:4d2:4e"), PB_ETOOBIG, "v3 too many packets");
	bad(3, 1, S("\x00\x01"), PB_EBADREQ, "v3 binary: no 0xff");
	bad(3, 1, S("\x00\x0a\xff" "4"), PB_EBADREQ, "v3 binary: a length byte above 9");
	bad(3, 1, S("\x00\x09\xff" "4"), PB_EBADREQ, "v3 binary: truncated");
	bad(3, 1, S("\x00\xff" "4"), PB_EBADREQ, "v3 binary: no length digits");
	bad(3, 1, S("\x00\x00\xff"), PB_EBADREQ, "v3 binary: length 0");
	bad(3, 1, S("\x02\x01\xff" "4"), PB_EBADREQ, "v3 binary: unknown entry kind");
	bad(3, 1, S("\x00\x02\xff" "4\xff"), PB_EBADREQ, "v3 binary: text not UTF-8");
	bad(3, 1, S("\x01\x02\xff\x02\x00"), PB_EBADREQ, "v3 binary: binary entry not a message");
	bad(3, 1, S("\x00\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09\xff"),
	    PB_EBADREQ, "v3 binary: huge length");
	bad(3, 1, S("\x00\x01\xff" "4\x00\x01\xff" "4\x00\x01\xff" "4\x00\x01\xff" "4\x00\x01\xff" "4"),
	    PB_ETOOBIG, "v3 binary: too many packets");
}

/* The JSONP POST body: the form field d with the client's escaping. */
static void test_jsonp_body(void)
{
	struct pb_buf out;
	const char *why = NULL;

	pb_buf_init(&out, 0);
	/* engine.io-client 3: '\n' in the data becomes "\n" (backslash, n), a
	 * "\n" already in the data becomes "\\n"; the form is url-encoded. */
	tap_ok(pb_eio_jsonp_body(S("d=11%3A42%5B%22a%5Cnb%22%5D"), &out, &why) == 0 &&
	   buf_is(&out, S("11:42[\"a\nb\"]")), "an escaped newline becomes a newline");
	tap_ok(pb_eio_jsonp_body(S("d=12%3A42%5B%22a%5C%5Cnb%22%5D"), &out, &why) == 0 &&
	   buf_is(&out, S("12:42[\"a\\nb\"]")), "an escaped backslash-n becomes backslash-n");
	tap_ok(pb_eio_jsonp_body(S("x=1&d=3:4a+b&y=2"), &out, &why) == 0 && buf_is(&out, S("3:4a b")),
	   "'+' is a space, other fields are ignored");
	tap_ok(pb_eio_jsonp_body(S("d=%5C%5C%5Cn"), &out, &why) == 0 && buf_is(&out, S("\\\\n")),
	   "three backslashes and n: as engine.io's two passes do it");
	tap_ok(pb_eio_jsonp_body(S("d="), &out, &why) == 0 && out.len == 0, "an empty d");
	tap_is_int(pb_eio_jsonp_body(S("e=1"), &out, &why), PB_EBADREQ, "no d field");
	tap_is_int(pb_eio_jsonp_body(S(""), &out, &why), PB_EBADREQ, "an empty body");
	tap_is_int(pb_eio_jsonp_body(S("d=1&d=2"), &out, &why), PB_EBADREQ, "d twice");
	tap_is_int(pb_eio_jsonp_body(S("d=%zz"), &out, &why), PB_EBADREQ, "a malformed escape");
	tap_is_int(pb_eio_jsonp_body(S("d=%4"), &out, &why), PB_EBADREQ, "a truncated escape");
	pb_buf_free(&out);
}

/* A pseudo-random number (deterministic). */
static uint32_t rnd(uint32_t *s)
{
	*s = *s * 1103515245u + 12345u;
	return *s >> 8;
}

/* Random frames encoded in each format decode back to the same frames, and
 * random bytes never make the decoder misbehave. */
static void test_random(void)
{
	static const char *const pieces[] = { "a", "\xc3\xa9", "\xf0\x9f\x98\x80", ":", "\x1e",
					      "1", "b", "\\", "\"", "\n", "\xe2\x80\xa8", "0" };
	uint32_t seed = 42;
	int mismatch = 0, weird = 0;

	for (int t = 0; t < 3000; t++) {
		int version = t % 3 == 0 ? 4 : 3, binary = t % 3 == 2, nf = 1 + (int)(rnd(&seed) % 6);
		struct pb_msg *frames[8];
		struct pb_eio_enc e;
		struct pb_eio_in in;
		struct pb_buf b;
		const char *why;

		pb_buf_init(&b, 0);
		pb_eio_enc_init(&e, &b, version, binary);
		for (int i = 0; i < nf; i++) {
			unsigned char d[64];
			size_t n = 0;

			if (rnd(&seed) % 3 == 0) {
				size_t len = rnd(&seed) % 40;

				if (version == 3)
					d[n++] = 4;
				for (size_t k = 0; k < len; k++)
					d[n++] = (unsigned char)rnd(&seed);
				frames[i] = pb_msg_new(PB_MSG_BINARY, d, n);
			} else {
				int k = (int)(rnd(&seed) % 8);

				d[n++] = "234"[rnd(&seed) % 3];
				while (k-- > 0) {
					const char *p = pieces[rnd(&seed) % 12];

					memcpy(d + n, p, strlen(p));
					n += strlen(p);
				}
				/* A v4 text packet cannot hold the separator. */
				for (size_t k2 = 0; version == 4 && k2 < n; k2++)
					if (d[k2] == 0x1e)
						d[k2] = 'x';
				frames[i] = pb_msg_new(PB_MSG_TEXT, d, n);
			}
			pb_eio_enc_msg(&e, frames[i]);
		}
		if (pb_eio_decode(version, binary, b.data, b.len, 1000, 100, &in, &why) ||
		    in.n != (size_t)nf) {
			mismatch++;
		} else {
			for (int i = 0; i < nf; i++)
				if (!msg_is(in.msgs[i], frames[i]->type, frames[i]->data, frames[i]->len))
					mismatch++;
		}
		pb_eio_in_free(&in);
		for (int i = 0; i < nf; i++)
			pb_msg_unref(frames[i]);

		/* Random bytes, and a random cut of the good payload. */
		for (int k = 0; k < 2; k++) {
			unsigned char junk[48];
			size_t jl = rnd(&seed) % sizeof(junk), cut = b.len ? rnd(&seed) % b.len : 0;
			int r;

			for (size_t i = 0; i < jl; i++)
				junk[i] = rnd(&seed) % 4 ?
					  (unsigned char)"0123456789:b4\x1e\xff\x00\x01"[rnd(&seed) % 16] :
					  (unsigned char)rnd(&seed);
			r = k ? pb_eio_decode(version, binary, b.data, cut, 1000, 100, &in, &why) :
				pb_eio_decode(version, binary, junk, jl, 1000, 100, &in, &why);
			if (r != 0 && r != PB_EBADREQ && r != PB_ETOOBIG)
				weird++;
			if (r != 0 && (in.n || in.msgs))
				weird++;
			pb_eio_in_free(&in);
		}
		pb_buf_free(&b);
	}
	tap_is_int(mismatch, 0, "3000 random batches in every format decode back to their frames");
	tap_is_int(weird, 0, "random bytes and cut payloads: a clear result every time");
}

int main(void)
{
	test_basics();
	test_encode_v4();
	test_encode_v3();
	test_jsonp();
	test_open();
	test_decode();
	test_hostile();
	test_jsonp_body();
	test_random();
	return tap_done();
}
