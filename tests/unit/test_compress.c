/*
 * test_compress.c: unit tests for src/compress.c: Accept-Encoding and its
 * q-values, the threshold rule, one-shot round trips (empty, small,
 * large, incompressible), the streaming context's flush boundaries (each
 * sync flush makes everything so far inflatable, without the rest), the
 * finished member's trailer, and the errors (a buffer limit, writing after
 * the end). Inflating is done here with zlib itself.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "buf.h"
#include "compress.h"
#include "error.h"
#include "tap.h"

/* An incremental gunzip: feed it compressed bytes as they come. */
struct gunzip {
	z_stream zs;
	struct pb_buf out;
	int end;        /* the member's trailer was read and checked */
	int err;        /* zlib reported an error */
};

/* Start an incremental gunzip. */
static void gunzip_init(struct gunzip *g)
{
	memset(g, 0, sizeof(*g));
	if (inflateInit2(&g->zs, 15 + 16) != Z_OK)
		tap_bail("inflateInit2");
	pb_buf_init(&g->out, 0);
}

/* Inflate in[0..len), appending to g->out. */
static void gunzip_feed(struct gunzip *g, const void *in, size_t len)
{
	unsigned char tmp[4096];

	g->zs.next_in = (Bytef *)(uintptr_t)in;
	g->zs.avail_in = (uInt)len;
	while (!g->end && !g->err) {
		int zr;

		g->zs.next_out = tmp;
		g->zs.avail_out = sizeof(tmp);
		zr = inflate(&g->zs, Z_SYNC_FLUSH);
		if (pb_buf_append(&g->out, tmp, sizeof(tmp) - g->zs.avail_out))
			tap_bail("out of memory");
		if (zr == Z_STREAM_END)
			g->end = 1;
		else if (zr == Z_BUF_ERROR)
			break;  /* needs more input */
		else if (zr != Z_OK)
			g->err = 1;
		else if (g->zs.avail_in == 0 && g->zs.avail_out != 0)
			break;
	}
}

/* Release a gunzip. */
static void gunzip_free(struct gunzip *g)
{
	inflateEnd(&g->zs);
	pb_buf_free(&g->out);
}

/* Gunzip a whole member into out; 0 if it is valid and complete. */
static int gunzip_all(const void *in, size_t len, struct pb_buf *out)
{
	struct gunzip g;
	int r;

	gunzip_init(&g);
	gunzip_feed(&g, in, len);
	r = g.end && !g.err && g.zs.avail_in == 0 ? 0 : -1;
	if (!r) {
		*out = g.out;
		pb_buf_init(&g.out, 0);
	}
	gunzip_free(&g);
	return r;
}

/* Accept-Encoding values and whether they accept gzip. */
static void test_accepts(void)
{
	static const struct {
		const char *v;
		int want;
	} cases[] = {
		{ NULL, 0 },
		{ "", 0 },
		{ "gzip", 1 },
		{ "GZip", 1 },
		{ "x-gzip", 1 },
		{ "gzip, deflate, br", 1 },
		{ "deflate, br", 0 },
		{ "br;q=1.0, gzip;q=0.8, *;q=0.1", 1 },
		{ "gzip;q=0", 0 },
		{ "gzip; q=0", 0 },
		{ "gzip;Q=0.000", 0 },
		{ "gzip;q=0.001", 1 },
		{ "gzip;q=1", 1 },
		{ "gzip;q=1.000", 1 },
		{ "*", 1 },
		{ "*;q=0", 0 },
		{ "identity;q=1, *;q=0.5", 1 },
		{ "*, gzip;q=0", 0 },           /* named beats * */
		{ "gzip;q=0, *", 0 },
		{ "*;q=0, gzip", 1 },
		{ "identity", 0 },
		{ "gzipx", 0 },
		{ "gzip;q=1.5", 0 },            /* malformed: unacceptable */
		{ "gzip;q=2", 0 },
		{ "gzip;q=", 0 },
		{ "gzip;q", 0 },
		{ "gzip;q=0.5000", 0 },         /* at most three decimals */
		{ "gzip;q=abc", 0 },
		{ " , ,gzip , ", 1 },
		{ "deflate;q=0.5 , gzip ;q=0.5", 1 },
		{ "gzip;level=9", 1 },          /* unknown parameters are ignored */
		{ "gzip;level=9;q=0", 0 },
		{ ",,,", 0 },
		{ "\t*\t", 1 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		tap_is_int(pb_gzip_accepts(cases[i].v), cases[i].want, "Accept-Encoding '%s'",
			   cases[i].v ? cases[i].v : "(absent)");
}

/* The threshold: at least min bytes, and 0 disables. */
static void test_worth(void)
{
	tap_is_int(pb_gzip_worth(1023, 1024), 0, "1023 < 1024: not compressed");
	tap_is_int(pb_gzip_worth(1024, 1024), 1, "1024 >= 1024: compressed");
	tap_is_int(pb_gzip_worth(1 << 20, 0), 0, "min 0 disables");
	tap_is_int(pb_gzip_worth(0, 1), 0, "empty body, min 1");
	tap_is_int(pb_gzip_worth(1, 1), 1, "1 byte, min 1");
}

/* A JSON chat batch of n messages, as the poll answer encodes it. */
static void chat_batch(struct pb_buf *b, int n)
{
	pb_buf_puts(b, "{\"messages\":[");
	for (int i = 1; i <= n; i++)
		pb_buf_printf(b, "%s{\"seq\":%d,\"type\":\"text\",\"data\":\"{\\\"user\\\":"
			      "\\\"user%d\\\",\\\"room\\\":\\\"lobby\\\",\\\"text\\\":\\\"message "
			      "number %d says hello to everyone here\\\",\\\"ts\\\":%d}\"}",
			      i > 1 ? "," : "", i, i % 7, i, 1700000000 + i);
	pb_buf_puts(b, "],\"closed\":false}");
}

/* One-shot round trips. */
static void test_oneshot(void)
{
	struct pb_buf in, z, back;
	unsigned char *rnd;
	uint64_t s = 88172645463325252ULL;

	/* Empty input: a valid 20-byte member of nothing. */
	pb_buf_init(&z, 0);
	tap_is_int(pb_gzip_buf(&z, "", 0), 0, "empty: ok");
	tap_is_int(z.len, 20, "empty: 20 bytes (header, empty block, trailer)");
	tap_ok(z.len >= 2 && (unsigned char)z.data[0] == 0x1f && (unsigned char)z.data[1] == 0x8b,
	       "empty: gzip magic");
	tap_ok(gunzip_all(z.data, z.len, &back) == 0 && back.len == 0, "empty: inflates to nothing");
	pb_buf_free(&back);
	pb_buf_free(&z);

	/* A small and a large chat batch: smaller, and the same bytes back. */
	for (int n = 1; n <= 1000; n *= 10) {
		pb_buf_init(&in, 0);
		pb_buf_init(&z, 0);
		chat_batch(&in, n);
		tap_is_int(pb_gzip_buf(&z, in.data, in.len), 0, "%d messages: ok", n);
		tap_ok(gunzip_all(z.data, z.len, &back) == 0 && back.len == in.len &&
		       memcmp(back.data, in.data, in.len) == 0, "%d messages: round trip", n);
		tap_ok(n == 1 || z.len < in.len / 3, "%d messages: %zu -> %zu bytes", n, in.len, z.len);
		tap_is_int(z.data[z.len], '\0', "%d messages: out stays NUL-terminated", n);
		pb_buf_free(&back);
		pb_buf_free(&in);
		pb_buf_free(&z);
	}

	/* Incompressible input: larger by a bounded amount, still exact. */
	rnd = malloc(100000);
	if (!rnd)
		tap_bail("out of memory");
	for (size_t i = 0; i < 100000; i++) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		rnd[i] = (unsigned char)s;
	}
	pb_buf_init(&z, 0);
	tap_is_int(pb_gzip_buf(&z, rnd, 100000), 0, "random 100000: ok");
	tap_ok(z.len < 100000 + 100, "random 100000: %zu bytes, bounded growth", z.len);
	tap_ok(gunzip_all(z.data, z.len, &back) == 0 && back.len == 100000 &&
	       memcmp(back.data, rnd, 100000) == 0, "random 100000: round trip");
	pb_buf_free(&back);
	pb_buf_free(&z);

	/* Appending keeps what out held. */
	pb_buf_init(&z, 0);
	pb_buf_puts(&z, "prefix");
	tap_is_int(pb_gzip_buf(&z, "abc", 3), 0, "append: ok");
	tap_ok(memcmp(z.data, "prefix", 6) == 0, "append: prefix kept");
	tap_ok(gunzip_all(z.data + 6, z.len - 6, &back) == 0 && back.len == 3 &&
	       memcmp(back.data, "abc", 3) == 0, "append: round trip");
	pb_buf_free(&back);
	pb_buf_free(&z);

	/* A limit too small: PB_ETOOBIG, out unchanged. */
	pb_buf_init(&z, 10);
	pb_buf_puts(&z, "ab");
	tap_is_int(pb_gzip_buf(&z, rnd, 1000), PB_ETOOBIG, "limit: PB_ETOOBIG");
	tap_ok(z.len == 2 && memcmp(z.data, "ab", 3) == 0, "limit: out unchanged");
	pb_buf_free(&z);

	/* pb_gzip_body replaces the body, or leaves it on error. */
	pb_buf_init(&in, 0);
	chat_batch(&in, 20);
	{
		struct pb_buf orig;

		pb_buf_init(&orig, 0);
		pb_buf_append(&orig, in.data, in.len);
		tap_is_int(pb_gzip_body(&in), 0, "body: ok");
		tap_ok(gunzip_all(in.data, in.len, &back) == 0 && back.len == orig.len &&
		       memcmp(back.data, orig.data, orig.len) == 0, "body: replaced by its gzip");
		pb_buf_free(&back);
		pb_buf_free(&in);
		pb_buf_init(&in, 40);
		pb_buf_append(&in, rnd, 40);
		tap_is_int(pb_gzip_body(&in), PB_ETOOBIG, "body over its limit: PB_ETOOBIG");
		tap_ok(in.len == 40 && memcmp(in.data, rnd, 40) == 0, "body over its limit: unchanged");
		pb_buf_free(&orig);
	}
	pb_buf_free(&in);
	free(rnd);
}

/* Streaming: each sync flush delivers everything so far, nothing later. */
static void test_stream(void)
{
	struct pb_gzip *z = pb_gzip_new();
	struct gunzip g;
	struct pb_buf out, all;
	char ev[256];
	size_t total_in = 0, sent = 0;
	int ok_each = 1, exact_each = 1;

	if (!tap_ok(z != NULL, "stream: created"))
		return;
	gunzip_init(&g);
	pb_buf_init(&out, 0);
	pb_buf_init(&all, 0);
	for (int i = 1; i <= 200; i++) {
		int n = snprintf(ev, sizeof(ev), "id: %d\ndata: {\"seq\":%d,\"type\":\"text\","
				 "\"data\":\"hello number %d\"}\n\n", i, i, i);

		pb_buf_append(&all, ev, (size_t)n);
		total_in += (size_t)n;
		if (pb_gzip_write(z, &out, ev, (size_t)n, PB_GZIP_SYNC))
			ok_each = 0;
		/* Feed only what this flush produced: it must inflate to all
		 * events so far, exactly. */
		gunzip_feed(&g, out.data + sent, out.len - sent);
		sent = out.len;
		if (g.err || g.out.len != all.len || memcmp(g.out.data, all.data, all.len) != 0)
			exact_each = 0;
	}
	tap_ok(ok_each, "stream: 200 sync-flushed writes ok");
	tap_ok(exact_each, "stream: each flush inflates to exactly the events so far");
	tap_ok(!g.end, "stream: no trailer before the finish");
	tap_is_int(pb_gzip_in(z), total_in, "stream: bytes in counted");
	tap_is_int(pb_gzip_out(z), out.len, "stream: bytes out counted");
	tap_ok(out.len < total_in / 3, "stream: %zu -> %zu bytes with a flush per event", total_in,
	       out.len);

	/* Without a flush, zlib may hold everything back. */
	{
		size_t before = out.len;

		tap_is_int(pb_gzip_write(z, &out, "data: x\n\n", 9, PB_GZIP_NONE), 0,
			   "stream: unflushed write ok");
		pb_buf_append(&all, "data: x\n\n", 9);
		gunzip_feed(&g, out.data + sent, out.len - sent);
		sent = out.len;
		tap_ok(g.out.len < all.len, "stream: an unflushed event is not yet readable "
		       "(%zu new bytes)", out.len - before);
		/* An empty sync write delivers it. */
		tap_is_int(pb_gzip_write(z, &out, NULL, 0, PB_GZIP_SYNC), 0, "stream: empty flush ok");
		gunzip_feed(&g, out.data + sent, out.len - sent);
		sent = out.len;
		tap_ok(g.out.len == all.len && memcmp(g.out.data, all.data, all.len) == 0,
		       "stream: the empty flush delivered it");
		/* Two flushes in a row: the second adds a marker or nothing. */
		before = out.len;
		tap_is_int(pb_gzip_write(z, &out, NULL, 0, PB_GZIP_SYNC), 0, "stream: second flush ok");
		tap_ok(out.len - before <= 5, "stream: a redundant flush costs at most 5 bytes");
		gunzip_feed(&g, out.data + sent, out.len - sent);
		sent = out.len;
	}

	/* A large event larger than the chunk and the window. */
	{
		struct pb_buf big;

		pb_buf_init(&big, 0);
		for (int i = 0; i < 5000; i++)
			pb_buf_printf(&big, "line %d of a large event\n", i);
		tap_is_int(pb_gzip_write(z, &out, big.data, big.len, PB_GZIP_SYNC), 0,
			   "stream: large event ok");
		pb_buf_append(&all, big.data, big.len);
		gunzip_feed(&g, out.data + sent, out.len - sent);
		sent = out.len;
		tap_ok(g.out.len == all.len && memcmp(g.out.data, all.data, all.len) == 0,
		       "stream: large event inflates at once");
		pb_buf_free(&big);
	}

	/* Finish: the trailer checks the CRC and length. */
	tap_is_int(pb_gzip_write(z, &out, NULL, 0, PB_GZIP_FINISH), 0, "stream: finish ok");
	tap_ok(pb_gzip_finished(z), "stream: finished");
	gunzip_feed(&g, out.data + sent, out.len - sent);
	tap_ok(g.end && !g.err, "stream: trailer read and checked");
	tap_ok(g.out.len == all.len && memcmp(g.out.data, all.data, all.len) == 0,
	       "stream: the whole member inflates to every byte");
	tap_is_int(pb_gzip_write(z, &out, "x", 1, PB_GZIP_SYNC), PB_EBADREQ,
		   "stream: writing after the finish is refused");
	pb_gzip_free(z);
	gunzip_free(&g);
	pb_buf_free(&out);
	pb_buf_free(&all);

	/* An empty stream, finished at once, is a valid empty member. */
	z = pb_gzip_new();
	pb_buf_init(&out, 0);
	tap_is_int(pb_gzip_write(z, &out, NULL, 0, PB_GZIP_FINISH), 0, "empty stream: finish ok");
	tap_ok(gunzip_all(out.data, out.len, &all) == 0 && all.len == 0,
	       "empty stream: inflates to nothing");
	pb_buf_free(&all);
	pb_buf_free(&out);
	pb_gzip_free(z);

	/* An output limit: PB_ETOOBIG, out unchanged, the context refuses more. */
	z = pb_gzip_new();
	pb_buf_init(&out, 64);
	pb_buf_puts(&out, "keep");
	tap_is_int(pb_gzip_write(z, &out, "abc", 3, PB_GZIP_SYNC), PB_ETOOBIG,
		   "limited out: PB_ETOOBIG");
	tap_ok(out.len == 4 && memcmp(out.data, "keep", 5) == 0, "limited out: unchanged");
	pb_buf_init(&all, 0);
	tap_is_int(pb_gzip_write(z, &all, "abc", 3, PB_GZIP_SYNC), PB_EBADREQ,
		   "limited out: the context is unusable afterwards");
	pb_buf_free(&all);
	pb_buf_free(&out);
	pb_gzip_free(z);
	pb_gzip_free(NULL);
	tap_ok(1, "pb_gzip_free(NULL) is fine");
}

int main(void)
{
	test_accepts();
	test_worth();
	test_oneshot();
	test_stream();
	return tap_done();
}
