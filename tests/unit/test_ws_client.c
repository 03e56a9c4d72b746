/*
 * test_ws_client.c: unit tests for the receive side of pollbridge's own
 * WebSocket client (src/ws_client.c, pb_ws_rx) on hostile input, each case
 * fed whole, one byte at a time and split at every position: truncated
 * headers, 16- and 64-bit lengths (the top bit set), masked server frames,
 * reserved bits, unknown opcodes, control frames too long or fragmented,
 * continuations without a start, bad UTF-8 split across fragments, close
 * frames of one byte, invalid close codes and bad reasons, the size limit,
 * stopping in the middle of a buffer (pause), draining after our close,
 * and that an idle parser holds no buffer; then the masked frame writer,
 * and random input (no crash, checked further under the sanitizers).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "tap.h"
#include "ws_client.h"

/* What the parser reported, as text: "T:data" "B:len" "PING:len" "PONG"
 * "CLOSE:code:reason" "ERR:code:why", separated by '|'. */
struct rec {
	char log[4096];
	struct pb_ws_rx *rx;
	int stop_after;         /* set rx->stop after this many messages (0: never) */
	int messages;
};

static void rec_add(struct rec *r, const char *fmt, const char *s, size_t n, long v)
{
	size_t at = strlen(r->log);

	if (at)
		at += (size_t)snprintf(r->log + at, sizeof(r->log) - at, "|");
	if (s)
		snprintf(r->log + at, sizeof(r->log) - at, fmt, (int)n, s);
	else
		snprintf(r->log + at, sizeof(r->log) - at, fmt, v);
}

static void on_message(void *arg, int binary, const unsigned char *data, size_t len)
{
	struct rec *r = arg;

	if (binary || len > 200)
		rec_add(r, binary ? "B:%ld" : "T#%ld", NULL, 0, (long)len);
	else
		rec_add(r, "T:%.*s", (const char *)data, len, 0);
	if (r->stop_after && ++r->messages == r->stop_after)
		r->rx->stop = 1;
}

static void on_ping(void *arg, const unsigned char *data, size_t len)
{
	(void)data;
	rec_add(arg, "PING:%ld", NULL, 0, (long)len);
}

static void on_pong(void *arg)
{
	rec_add(arg, "PONG", NULL, 0, 0);
}

static void on_close(void *arg, int code, const unsigned char *reason, size_t len)
{
	char b[160];

	snprintf(b, sizeof(b), "CLOSE:%d:%.*s", code, (int)len, (const char *)reason);
	rec_add(arg, "%.*s", b, strlen(b), 0);
}

static const struct pb_ws_rx_handler H = { on_message, on_ping, on_pong, on_close };

static size_t unhex(const char *hex, unsigned char *out)
{
	size_t n = 0;

	for (; hex[0] && hex[1]; hex += 2) {
		unsigned v;

		if (hex[0] == ' ') {
			hex--;
			continue;
		}
		sscanf(hex, "%2x", &v);
		out[n++] = (unsigned char)v;
	}
	return n;
}

/* Feed in[0..n) in pieces of `step` bytes (0: whole; -1: split once at
 * `at`); the log in r. Returns the failure code (0: none). */
static int feed(struct rec *r, struct pb_ws_rx *rx, const unsigned char *in, size_t n, long step,
		size_t at)
{
	const char *why = NULL;
	size_t off = 0;
	int code = 0;

	memset(r->log, 0, sizeof(r->log));
	r->rx = rx;
	r->messages = 0;
	while (off < n && !code) {
		size_t take = step > 0 ? (size_t)step : step < 0 ? (off ? n - off : at) : n;

		if (take > n - off)
			take = n - off;
		code = pb_ws_rx_feed(rx, in + off, take, &H, r, &why);
		off += take;
	}
	if (code)
		rec_add(r, "ERR:%.*s", why, strlen(why), 0), rec_add(r, "%ld", NULL, 0, code);
	return code;
}

/* Feed hex with max_message_bytes max, whole, bytewise and split at every
 * position: every way must log want. */
static void check(const char *name, const char *hex, size_t max, const char *want)
{
	static unsigned char in[200000];
	size_t n = unhex(hex, in);
	int same = 1;
	char first[4096] = "";

	for (long mode = 0; mode <= (long)n + 1; mode++) {
		struct pb_ws_rx rx;
		struct rec r = { 0 };

		memset(&rx, 0, sizeof(rx));
		rx.max_message_bytes = max;
		if (mode == 0)
			feed(&r, &rx, in, n, 0, 0);
		else if (mode == 1)
			feed(&r, &rx, in, n, 1, 0);
		else
			feed(&r, &rx, in, n, -1, (size_t)mode - 1);
		if (mode == 0) {
			snprintf(first, sizeof(first), "%s", r.log);
		} else if (strcmp(first, r.log) != 0 && same) {
			tap_diag("%s: split %ld gives '%s'", name, mode, r.log);
			same = 0;
		}
		pb_ws_rx_free(&rx);
	}
	tap_is_str(first, want, "%s", name);
	tap_ok(same, "%s: the same whichever way it is split", name);
}

/* Frames larger than fit a hex literal. */
static void check_lengths(void)
{
	unsigned char *in = malloc(200000);
	struct pb_ws_rx rx;
	struct rec r = { 0 };
	size_t n;

	/* 300 bytes with a 16-bit length, 70000 with a 64-bit one, bytewise
	 * and in 1000-byte reads. */
	for (long step = 1; step <= 1000; step += 999) {
		memset(&rx, 0, sizeof(rx));
		rx.max_message_bytes = 100000;
		n = 0;
		in[n++] = 0x81;
		in[n++] = 126;
		in[n++] = 300 >> 8;
		in[n++] = 300 & 0xFF;
		memset(in + n, 'a', 300);
		n += 300;
		in[n++] = 0x82;
		in[n++] = 127;
		for (int i = 0; i < 8; i++)
			in[n++] = (unsigned char)((uint64_t)70000 >> (56 - 8 * i));
		memset(in + n, 0, 70000);
		n += 70000;
		feed(&r, &rx, in, n, step, 0);
		tap_is_str(r.log, "T#300|B:70000", "16- and 64-bit lengths, in reads of %ld", step);
		tap_ok(!rx.part.data && !rx.msg.data, "no buffer held afterwards (%ld)", step);
		pb_ws_rx_free(&rx);
	}
	/* A 64-bit length just over the limit fails before the payload comes. */
	memset(&rx, 0, sizeof(rx));
	rx.max_message_bytes = 65536;
	n = unhex("827f0000000000010001", in);
	feed(&r, &rx, in, n, 0, 0);
	tap_is_str(r.log, "ERR:message too big|1009", "64-bit length over the limit: 1009 at once");
	tap_ok(!rx.part.data, "and nothing of it buffered");
	pb_ws_rx_free(&rx);
	free(in);
}

/* Stopping (a pause) in the middle of a buffer keeps the rest. */
static void check_stop(void)
{
	unsigned char in[64];
	size_t n = unhex("8101618101628101638a00", in);
	struct pb_ws_rx rx;
	struct rec r = { 0 };
	const char *why;

	memset(&rx, 0, sizeof(rx));
	rx.max_message_bytes = 100;
	r.stop_after = 1;
	feed(&r, &rx, in, n, 0, 0);
	tap_is_str(r.log, "T:a", "stop: one message, then nothing");
	tap_is_int((long long)(rx.part.len - rx.at), 8, "stop: the rest kept (8 bytes)");
	/* More bytes arriving while stopped are kept too, after the rest. */
	tap_is_int(pb_ws_rx_feed(&rx, (const unsigned char *)"\x81\x01x", 3, &H, &r, &why), 0,
		   "stop: more bytes while stopped");
	tap_is_str(r.log, "T:a", "stop: still nothing more");
	rx.stop = 0;
	r.stop_after = 0;
	tap_is_int(pb_ws_rx_feed(&rx, NULL, 0, &H, &r, &why), 0, "stop: go on");
	tap_is_str(r.log, "T:a|T:b|T:c|PONG|T:x", "stop: the rest in order");
	tap_ok(!rx.part.data, "stop: nothing held afterwards");
	pb_ws_rx_free(&rx);

	/* Stopped inside a partial frame kept from before. */
	memset(&rx, 0, sizeof(rx));
	rx.max_message_bytes = 100;
	n = unhex("810261", in);
	feed(&r, &rx, in, n, 0, 0);
	r.stop_after = 1;
	r.messages = 0;
	n = unhex("62810163", in);
	tap_is_int(pb_ws_rx_feed(&rx, in, n, &H, &r, &why), 0, "stop in a kept frame");
	tap_is_str(r.log, "T:ab", "stop in a kept frame: the first message");
	rx.stop = 0;
	pb_ws_rx_feed(&rx, NULL, 0, &H, &r, &why);
	tap_is_str(r.log, "T:ab|T:c", "stop in a kept frame: then the second");
	pb_ws_rx_free(&rx);
}

/* After our close: data is skipped (however long), the close is seen. */
static void check_drain(void)
{
	unsigned char *in = malloc(100000);
	struct pb_ws_rx rx;
	struct rec r = { 0 };
	size_t n = 0;

	memset(&rx, 0, sizeof(rx));
	rx.max_message_bytes = 10;
	rx.drain = 1;
	in[n++] = 0x82;
	in[n++] = 127;
	for (int i = 0; i < 8; i++)
		in[n++] = (unsigned char)((uint64_t)50000 >> (56 - 8 * i));
	memset(in + n, 0x88, 50000);    /* bytes that look like close frames */
	n += 50000;
	n += unhex("880203e8", in + n);
	feed(&r, &rx, in, n, 4096, 0);
	tap_is_str(r.log, "CLOSE:1000:", "drain: a long frame skipped, the close seen");
	tap_ok(!rx.part.data, "drain: nothing buffered");
	pb_ws_rx_free(&rx);
	free(in);
}

/* The masked frame writer: the header and the payload unmask back. */
static void check_writer(void)
{
	static const size_t lens[] = { 0, 1, 7, 8, 125, 126, 65535, 65536, 70001 };
	unsigned char *data = malloc(70001), *out = malloc(70001 + 14);
	const unsigned char mask[4] = { 0x12, 0x34, 0x56, 0x78 };

	for (size_t i = 0; i < 70001; i++)
		data[i] = (unsigned char)(i * 7 + 3);
	for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
		size_t len = lens[k], hl = len < 126 ? 2 : len < 65536 ? 4 : 10;
		size_t n = pb_ws_frame_masked(out, 0x2, data, len, mask);
		uint64_t got = out[1] & 0x7F;
		int ok = n == hl + 4 + len && out[0] == 0x82 && (out[1] & 0x80) &&
			 memcmp(out + hl, mask, 4) == 0;

		if (hl == 4)
			got = ((uint64_t)out[2] << 8) | out[3];
		else if (hl == 10)
			for (int i = 0, j = 0; i < 8; i++, j = 1)
				got = (j ? got << 8 : 0) | out[2 + i];
		ok = ok && got == len;
		for (size_t i = 0; ok && i < len; i++)
			ok = (out[hl + 4 + i] ^ mask[i & 3]) == data[i];
		tap_ok(ok, "writer: a masked frame of %zu bytes", len);
	}
	free(data);
	free(out);
}

/* Random bytes in random pieces: no crash, and a failure is final. */
static void check_random(void)
{
	uint64_t s = 0x9E3779B97F4A7C15ULL;
	unsigned char buf[512];
	int ok = 1;

	for (int round = 0; round < 3000; round++) {
		struct pb_ws_rx rx;
		struct rec r = { 0 };
		const char *why;
		int code = 0;

		memset(&rx, 0, sizeof(rx));
		rx.max_message_bytes = 1 + round % 300;
		for (int piece = 0; piece < 8 && !code; piece++) {
			size_t n = 0, len;

			s ^= s << 13, s ^= s >> 7, s ^= s << 17;
			len = s % sizeof(buf);
			while (n < len) {
				s ^= s << 13, s ^= s >> 7, s ^= s << 17;
				/* Mostly plausible headers: clear RSV and MASK often. */
				buf[n] = (unsigned char)s;
				if (n % 3 == 0)
					buf[n] &= 0x8F;
				n++;
			}
			code = pb_ws_rx_feed(&rx, buf, len, &H, &r, &why);
		}
		if (code && (!why || (code != 1002 && code != 1007 && code != 1009)))
			ok = 0;
		if (code && pb_ws_rx_feed(&rx, buf, 10, &H, &r, &why) != 0)
			ok = 0;
		pb_ws_rx_free(&rx);
	}
	tap_ok(ok, "random input: only 1002, 1007 or 1009, and nothing after a failure");
}

int main(void)
{
	/* Good frames. */
	check("text", "810568656c6c6f", 100, "T:hello");
	check("several frames in one read", "8101618202000089028a8a8a00810162", 100,
	      "T:a|B:2|PING:2|PONG|T:b");
	check("empty text", "8100", 100, "T:");
	check("fragments with a ping between", "01026865890000022077800178", 100,
	      "PING:0|T:he wx");
	check("a character split across fragments", "0101ce8001bb", 100, "T:\xce\xbb");
	check("a message of exactly the limit", "810461626364", 4, "T:abcd");
	check("close 1000 bye", "880503e8627965", 100, "CLOSE:1000:bye");
	check("empty close: 1005", "8800", 100, "CLOSE:1005:");
	check("close 3000 and 4999", "88020bb8", 100, "CLOSE:3000:");
	check("close 4999 ok!", "880513876f6b21", 100, "CLOSE:4999:ok!");
	check("nothing after a close", "88020bb88101618101", 100, "CLOSE:3000:");
	check("a 16-bit length of a short frame", "817e000261628100", 100, "T:ab|T:");

	/* Truncated input: nothing yet, and nothing wrong. */
	check("truncated header", "81", 100, "");
	check("truncated 16-bit length", "817e00", 100, "");
	check("truncated 64-bit length", "827f000000", 100, "");
	check("truncated payload", "81056865", 100, "");

	/* Protocol errors: 1002. */
	check("masked server frame", "818561626364000000000000", 100,
	      "ERR:masked frame from the server|1002");
	check("masked frame after a good one", "81016181800000000000", 100,
	      "T:a|ERR:masked frame from the server|1002");
	check("RSV1 (no extension negotiated)", "c10161", 100, "ERR:reserved bits set|1002");
	check("RSV3", "910161", 100, "ERR:reserved bits set|1002");
	check("64-bit length with the top bit set", "827f8000000000000001", 100,
	      "ERR:frame length too large|1002");
	check("64-bit length all ones", "827fffffffffffffffff", 100,
	      "ERR:frame length too large|1002");
	check("control frame too long (126)", "897e007e", 200, "ERR:control frame too long|1002");
	check("control frame too long (127)", "8a7f0000000000000001", 200,
	      "ERR:control frame too long|1002");
	check("fragmented ping", "0900", 100, "ERR:fragmented control frame|1002");
	check("fragmented close", "0802", 100, "ERR:fragmented control frame|1002");
	check("continuation without a start", "800161", 100,
	      "ERR:continuation without a start|1002");
	check("continuation after a whole message", "8101618001 62", 100,
	      "T:a|ERR:continuation without a start|1002");
	check("a new message inside a fragmented one", "0101618101 62", 100,
	      "ERR:expected a continuation frame|1002");
	check("opcode 3", "830161", 100, "ERR:unknown opcode|1002");
	check("opcode 0xB", "8b00", 100, "ERR:unknown opcode|1002");
	check("opcode 0xF, not final", "0f00", 100, "ERR:unknown opcode|1002");

	/* Close frames. */
	check("close of one byte", "880103", 100, "ERR:close frame of one byte|1002");
	check("close 0", "88020000", 100, "ERR:invalid close code|1002");
	check("close 999", "880203e7", 100, "ERR:invalid close code|1002");
	check("close 1004", "880203ec", 100, "ERR:invalid close code|1002");
	check("close 1005", "880203ed", 100, "ERR:invalid close code|1002");
	check("close 1006", "880203ee", 100, "ERR:invalid close code|1002");
	check("close 1012 (as libwebsockets)", "880203f4", 100, "ERR:invalid close code|1002");
	check("close 1015", "880203f7", 100, "ERR:invalid close code|1002");
	check("close 1016", "880203f8", 100, "ERR:invalid close code|1002");
	check("close 2999", "88020bb7", 100, "ERR:invalid close code|1002");
	check("close 5000", "88021388", 100, "ERR:invalid close code|1002");
	check("close 65535", "8802ffff", 100, "ERR:invalid close code|1002");
	check("close reason not UTF-8", "880303e8ff", 100, "ERR:close reason not UTF-8|1007");
	check("close reason with a two-byte character", "880403e8cebb", 100, "CLOSE:1000:\xce\xbb");
	check("close reason truncated character", "880303e8ce", 100,
	      "ERR:close reason not UTF-8|1007");

	/* UTF-8. */
	check("bad UTF-8", "8102c328", 100, "ERR:text message not UTF-8|1007");
	check("bad UTF-8 split across fragments", "0101ce8001ff", 100,
	      "ERR:text message not UTF-8|1007");
	check("a character cut at the end of the message", "0101ce8000", 100,
	      "ERR:text message not UTF-8|1007");
	check("a surrogate", "8103eda080", 100, "ERR:text message not UTF-8|1007");
	check("bad UTF-8 in a binary message is fine", "8202c328", 100, "B:2");

	/* The size limit. */
	check("over the limit in one frame", "810561626364656c", 4, "ERR:message too big|1009");
	check("over the limit across fragments", "010361626380026465", 4,
	      "ERR:message too big|1009");
	check("exactly the limit across fragments", "0103616263800164", 4, "T:abcd");
	check("control frames do not count", "89050102030405810161", 1, "PING:5|T:a");

	check_lengths();
	check_stop();
	check_drain();
	check_writer();
	check_random();
	tap_ok(pb_ws_close_code_valid(1000) && pb_ws_close_code_valid(4999) &&
	       !pb_ws_close_code_valid(1006) && !pb_ws_close_code_valid(5000),
	       "pb_ws_close_code_valid");
	return tap_done();
}
