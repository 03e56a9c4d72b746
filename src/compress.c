/*
 * compress.c: gzip with zlib for answer bodies and event streams, and the
 * Accept-Encoding rule (see compress.h). This is the only file that
 * includes <zlib.h>.
 *
 * A one-shot body gets a window no larger than itself (a 2 KiB body
 * compresses the same with a 2 KiB window as with 32 KiB, with a smaller
 * state), from compressors kept for reuse. A stream keeps one deflate
 * state for its whole life, with an 8 KiB window: events repeat their
 * neighbours' field names, and many streams may be open at once.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>

#include "compress.h"
#include "error.h"

/* windowBits + 16 asks zlib for a gzip header and trailer. */
#define GZ_WRAP 16
/* zlib 1.2.9 and later refuse a gzip window below 9 bits. */
#define GZ_MIN_WBITS 9
#define GZ_MAX_WBITS 15
/* The stream context: 8 KiB window, 2^12 hash heads. */
#define GZ_STREAM_WBITS 13
#define GZ_STREAM_MEMLEVEL 5
/* Output reserved per deflate() call of a stream write. */
#define GZ_CHUNK 4096

/* The one-shot compressors, one per window size, kept from answer to
 * answer: deflateReset() costs a fraction of a microsecond where
 * deflateInit2() and deflateEnd() cost tens (allocating and zeroing the
 * state). The daemon runs one thread; so does every caller of this file. */
static z_stream gz_oneshot[GZ_MAX_WBITS + 1];
static unsigned char gz_oneshot_ready[GZ_MAX_WBITS + 1];

struct pb_gzip {
	z_stream zs;
	int finished;
	int broken;             /* an earlier call failed: only free it */
	size_t in, out;
};

/* 1 if c is optional white space (RFC 9110 OWS). */
static int gz_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* Parse a qvalue ("0", "0.5", "1.000"; RFC 9110 section 12.4.2) from
 * s[0..n) into thousandths. -1 if malformed. */
static int gz_qvalue(const char *s, size_t n)
{
	int v, scale = 100;

	if (n == 0 || (s[0] != '0' && s[0] != '1'))
		return -1;
	v = (s[0] - '0') * 1000;
	if (n == 1)
		return v;
	if (s[1] != '.' || n > 5)
		return -1;
	for (size_t i = 2; i < n; i++, scale /= 10) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v += (s[i] - '0') * scale;
	}
	return v > 1000 ? -1 : v;
}

/* The weight of one list element e[0..n) ("coding;q=0.5;other=x") in
 * thousandths, with the coding's name in *name and *namelen. A malformed
 * q-value weighs 0. */
static int gz_element(const char *e, size_t n, const char **name, size_t *namelen)
{
	size_t i = 0;
	int q = 1000;

	while (i < n && !gz_ows(e[i]) && e[i] != ';')
		i++;
	*name = e;
	*namelen = i;
	while (i < n) {
		const char *p, *v;
		size_t plen, vlen;

		while (i < n && (gz_ows(e[i]) || e[i] == ';'))
			i++;
		p = e + i;
		while (i < n && e[i] != '=' && e[i] != ';' && !gz_ows(e[i]))
			i++;
		plen = (size_t)(e + i - p);
		while (i < n && gz_ows(e[i]))
			i++;
		if (i >= n || e[i] != '=') {
			if (plen == 1 && (*p == 'q' || *p == 'Q'))
				return 0;       /* "q" without a value */
			continue;
		}
		i++;
		while (i < n && gz_ows(e[i]))
			i++;
		v = e + i;
		while (i < n && e[i] != ';' && !gz_ows(e[i]))
			i++;
		vlen = (size_t)(e + i - v);
		if (plen == 1 && (*p == 'q' || *p == 'Q')) {
			q = gz_qvalue(v, vlen);
			if (q < 0)
				q = 0;
		}
	}
	return q;
}

int pb_gzip_accepts(const char *ae)
{
	int gzip_q = -1, star_q = -1;
	const char *p = ae;

	if (!ae)
		return 0;
	while (*p) {
		size_t n = strcspn(p, ","), namelen;
		const char *e = p, *name;
		int q;

		p += n;
		if (*p == ',')
			p++;
		while (n && gz_ows(*e)) {
			e++;
			n--;
		}
		while (n && gz_ows(e[n - 1]))
			n--;
		if (!n)
			continue;
		q = gz_element(e, n, &name, &namelen);
		if ((namelen == 4 && strncasecmp(name, "gzip", 4) == 0) ||
		    (namelen == 6 && strncasecmp(name, "x-gzip", 6) == 0)) {
			if (q > gzip_q)
				gzip_q = q;
		} else if (namelen == 1 && name[0] == '*') {
			if (q > star_q)
				star_q = q;
		}
	}
	return gzip_q >= 0 ? gzip_q > 0 : star_q > 0;
}

int pb_gzip_worth(size_t len, size_t min_bytes)
{
	return min_bytes > 0 && len >= min_bytes;
}

/* The smallest window (in bits) that holds len bytes, within zlib's range. */
static int gz_wbits_for(size_t len)
{
	int w = GZ_MIN_WBITS;

	while (w < GZ_MAX_WBITS && ((size_t)1 << w) < len)
		w++;
	return w;
}

/* The kept compressor for windows of wbits bits, reset; NULL when out of
 * memory. */
static z_stream *gz_oneshot_get(int wbits)
{
	z_stream *zs = &gz_oneshot[wbits];

	if (gz_oneshot_ready[wbits])
		return deflateReset(zs) == Z_OK ? zs : NULL;
	memset(zs, 0, sizeof(*zs));
	/* The hash grows with the window: memLevel 8 (zlib's default) at 15
	 * bits, 2 at 9 bits. */
	if (deflateInit2(zs, PB_GZIP_LEVEL, Z_DEFLATED, wbits + GZ_WRAP, wbits - 7,
			 Z_DEFAULT_STRATEGY) != Z_OK)
		return NULL;
	gz_oneshot_ready[wbits] = 1;
	return zs;
}

int pb_gzip_buf(struct pb_buf *out, const void *in, size_t len)
{
	z_stream *zs;
	uLong bound;
	int r;

	if (len > UINT_MAX)
		return PB_ETOOBIG;      /* one deflate() call takes a uInt */
	zs = gz_oneshot_get(gz_wbits_for(len));
	if (!zs)
		return PB_ENOMEM;
	bound = deflateBound(zs, (uLong)len);
	r = bound > UINT_MAX ? PB_ETOOBIG : pb_buf_reserve(out, (size_t)bound);
	if (r)
		return r;
	zs->next_in = (Bytef *)(uintptr_t)in;
	zs->avail_in = (uInt)len;
	zs->next_out = (Bytef *)out->data + out->len;
	zs->avail_out = (uInt)bound;
	/* deflateBound() is an upper bound: only a broken zlib ends short. */
	if (deflate(zs, Z_FINISH) != Z_STREAM_END)
		return PB_ENOMEM;
	out->len += zs->total_out;
	out->data[out->len] = '\0';
	return 0;
}

int pb_gzip_body(struct pb_buf *b)
{
	struct pb_buf z;
	int r;

	pb_buf_init(&z, b->limit);
	r = pb_gzip_buf(&z, b->data ? b->data : "", b->len);
	if (r) {
		pb_buf_free(&z);
		return r;
	}
	pb_buf_free(b);
	*b = z;
	return 0;
}

struct pb_gzip *pb_gzip_new(void)
{
	struct pb_gzip *z = calloc(1, sizeof(*z));

	if (!z)
		return NULL;
	if (deflateInit2(&z->zs, PB_GZIP_LEVEL, Z_DEFLATED, GZ_STREAM_WBITS + GZ_WRAP,
			 GZ_STREAM_MEMLEVEL, Z_DEFAULT_STRATEGY) != Z_OK) {
		free(z);
		return NULL;
	}
	return z;
}

int pb_gzip_write(struct pb_gzip *z, struct pb_buf *out, const void *in, size_t len,
		  enum pb_gzip_flush flush)
{
	int mode = flush == PB_GZIP_FINISH ? Z_FINISH :
		   flush == PB_GZIP_SYNC ? Z_SYNC_FLUSH : Z_NO_FLUSH;
	size_t start = out->len;
	int r = 0;

	if (z->broken || z->finished)
		return PB_EBADREQ;
	if (len > UINT_MAX) {
		z->broken = 1;
		return PB_ETOOBIG;
	}
	z->zs.next_in = (Bytef *)(uintptr_t)(in ? in : "");
	z->zs.avail_in = (uInt)len;
	for (;;) {
		size_t room;
		int zr;

		r = pb_buf_reserve(out, GZ_CHUNK);
		if (r)
			break;
		room = out->cap - out->len - 1;
		if (room > UINT_MAX)
			room = UINT_MAX;
		z->zs.next_out = (Bytef *)out->data + out->len;
		z->zs.avail_out = (uInt)room;
		zr = deflate(&z->zs, mode);
		out->len += room - z->zs.avail_out;
		if (zr == Z_STREAM_END) {
			z->finished = 1;
			break;
		}
		if (zr != Z_OK && zr != Z_BUF_ERROR) {
			r = PB_ENOMEM;
			break;
		}
		/* Done once the input is used and, for a sync flush, zlib had
		 * room to spare (it filled the buffer: it may hold more); a
		 * finish is done at Z_STREAM_END. */
		if (mode != Z_FINISH && z->zs.avail_in == 0 &&
		    (mode == Z_NO_FLUSH || z->zs.avail_out > 0))
			break;
	}
	if (r) {
		/* zlib consumed input we cannot give back: the member is lost. */
		out->len = start;
		if (out->data)
			out->data[start] = '\0';
		z->broken = 1;
		return r;
	}
	out->data[out->len] = '\0';
	z->in += len;
	z->out += out->len - start;
	return 0;
}

size_t pb_gzip_in(const struct pb_gzip *z)
{
	return z->in;
}

size_t pb_gzip_out(const struct pb_gzip *z)
{
	return z->out;
}

int pb_gzip_finished(const struct pb_gzip *z)
{
	return z->finished;
}

void pb_gzip_free(struct pb_gzip *z)
{
	if (!z)
		return;
	deflateEnd(&z->zs);
	free(z);
}
