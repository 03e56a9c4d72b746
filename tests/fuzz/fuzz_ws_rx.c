/*
 * fuzz_ws_rx.c: libFuzzer target for pb_ws_rx_feed, the receive side of
 * pollbridge's own WebSocket client (src/ws_client.h), which parses every
 * byte a plain ws:// upstream sends. The first input byte picks the
 * message size limit and how the rest is cut; the rest is the byte stream
 * from the upstream. It is parsed twice, whole and in pieces, and:
 *
 *  - both runs must report the same events (messages, pings, pongs, the
 *    close) and end with the same close code and reason: TCP may cut the
 *    stream anywhere;
 *  - every text message is valid UTF-8, no message is over the limit, no
 *    ping over 125 bytes, and a close code is 1005 or one that may be sent.
 *
 * Any mismatch aborts, so libFuzzer keeps the input.
 */
#include <string.h>

#include "buf.h"
#include "codec.h"
#include "fuzz.h"
#include "ws_client.h"

/* One run: the limit, and the events as bytes (kind, length, data). */
struct run {
	size_t max;
	struct pb_buf log;
};

static void log_event(struct run *r, char kind, const unsigned char *p, size_t n)
{
	FUZZ_CHECK(pb_buf_append(&r->log, &kind, 1) == 0);
	FUZZ_CHECK(pb_buf_append(&r->log, &n, sizeof(n)) == 0);
	FUZZ_CHECK(!n || pb_buf_append(&r->log, p, n) == 0);
}

static void on_message(void *arg, int binary, const unsigned char *data, size_t len)
{
	struct run *r = arg;

	FUZZ_CHECK(len <= r->max);
	FUZZ_CHECK(binary || pb_utf8_valid((const char *)data, len));
	log_event(r, binary ? 'b' : 't', data, len);
}

static void on_ping(void *arg, const unsigned char *data, size_t len)
{
	FUZZ_CHECK(len <= 125);
	log_event(arg, 'p', data, len);
}

static void on_pong(void *arg)
{
	log_event(arg, 'o', NULL, 0);
}

static void on_close(void *arg, int code, const unsigned char *reason, size_t len)
{
	unsigned char c[2] = { (unsigned char)(code >> 8), (unsigned char)code };

	FUZZ_CHECK(code == 1005 || pb_ws_close_code_valid((unsigned)code));
	FUZZ_CHECK(len <= 123);
	log_event(arg, 'c', c, 2);
	log_event(arg, 'r', reason, len);
}

static const struct pb_ws_rx_handler handler = { on_message, on_ping, on_pong, on_close };

/* Parse p[0..n) in pieces of step bytes (0: whole); the result code and
 * reason go to the log too. */
static void parse(struct run *r, const unsigned char *p, size_t n, size_t step)
{
	struct pb_ws_rx rx;
	const char *why = "";
	int code = 0;
	size_t at = 0;

	memset(&rx, 0, sizeof(rx));
	rx.max_message_bytes = r->max;
	do {
		size_t take = step && n - at > step ? step : n - at;

		code = pb_ws_rx_feed(&rx, p + at, take, &handler, r, &why);
		at += take;
		/* the next piece grows, so long inputs are cut unevenly */
		if (step)
			step = step % 13 + 1;
	} while (!code && !rx.done && at < n);
	log_event(r, 'e', (const unsigned char *)&code, sizeof(code));
	if (code)
		log_event(r, 'w', (const unsigned char *)why, strlen(why));
	pb_ws_rx_free(&rx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t limits[4] = { 0, 16, 1000, 1 << 20 };
	struct run whole, cut;

	if (!size)
		return 0;
	whole.max = cut.max = limits[data[0] & 3];
	pb_buf_init(&whole.log, 0);
	pb_buf_init(&cut.log, 0);
	parse(&whole, data + 1, size - 1, 0);
	parse(&cut, data + 1, size - 1, (size_t)(data[0] >> 2) + 1);
	FUZZ_CHECK(whole.log.len == cut.log.len);
	FUZZ_CHECK(!whole.log.len || memcmp(whole.log.data, cut.log.data, whole.log.len) == 0);
	pb_buf_free(&whole.log);
	pb_buf_free(&cut.log);
	return 0;
}
