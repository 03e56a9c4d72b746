/*
 * compress.h: gzip for HTTP answers (zlib), and the Accept-Encoding rule
 * that decides whether a client gets it.
 *
 * Two shapes: a one-shot compressor for a whole answer body, and a
 * streaming context for event streams, which flushes (Z_SYNC_FLUSH) each
 * time its caller hands bytes to the client, so that every event can be
 * inflated the moment it arrives. Only this file's .c includes <zlib.h>;
 * libmicrohttpd stays in front.c, which reads the request header and sets
 * the response headers.
 */
#ifndef PB_COMPRESS_H
#define PB_COMPRESS_H

#include <stddef.h>

#include "buf.h"

/* --compress-min-bytes' default: smaller bodies gain too little. */
#define PB_DEFAULT_COMPRESS_MIN_BYTES 1024

/* The zlib level of both shapes: 6 is zlib's own default and its usual
 * best size for the time on small JSON. */
#define PB_GZIP_LEVEL 6

/* 1 if an Accept-Encoding value (NULL: the header is absent) accepts gzip:
 * "gzip" or "x-gzip" with a q-value above 0, or, when neither is named,
 * "*" with a q-value above 0 (RFC 9110 section 12.5.3). A malformed
 * q-value makes its element unacceptable; an absent header accepts
 * nothing but the identity. */
int pb_gzip_accepts(const char *accept_encoding);

/* 1 if a body of len bytes is worth compressing under --compress-min-bytes
 * min_bytes (0 disables compression). */
int pb_gzip_worth(size_t len, size_t min_bytes);

/* Append the gzip member (RFC 1952) of in[0..len) to out. 0, PB_ENOMEM,
 * or PB_ETOOBIG (out's limit); on error out is unchanged. len may be 0
 * (a valid member of an empty input: 20 bytes). */
int pb_gzip_buf(struct pb_buf *out, const void *in, size_t len);

/* Replace the body b with its gzip member. 0, or PB_ENOMEM/PB_ETOOBIG with
 * b unchanged. */
int pb_gzip_body(struct pb_buf *b);

/* A streaming gzip member (one per event stream). */
struct pb_gzip;

/* How a pb_gzip_write() ends. */
enum pb_gzip_flush {
	PB_GZIP_NONE,           /* keep what zlib buffers: more input follows */
	PB_GZIP_SYNC,           /* Z_SYNC_FLUSH: everything so far can be inflated */
	PB_GZIP_FINISH,         /* the member's end: the deflate end and the trailer */
};

/* A new stream context, NULL when out of memory. It holds about 70 KiB (an
 * 8 KiB window and a smaller hash than zlib's default of 256 KiB: one
 * lives per open compressed stream). */
struct pb_gzip *pb_gzip_new(void);

/* Compress in[0..len) (len may be 0) and append what zlib produces to out,
 * then flush as asked. The gzip header comes with the first output.
 * 0, PB_ENOMEM, PB_ETOOBIG (out's limit; out unchanged), or PB_EBADREQ if
 * the member is already finished or an earlier call failed: after an
 * error the context only accepts pb_gzip_free(). */
int pb_gzip_write(struct pb_gzip *z, struct pb_buf *out, const void *in, size_t len,
		  enum pb_gzip_flush flush);

/* Bytes given to z so far, and bytes it produced (for metrics and tests). */
size_t pb_gzip_in(const struct pb_gzip *z);
size_t pb_gzip_out(const struct pb_gzip *z);

/* 1 once a PB_GZIP_FINISH write succeeded. */
int pb_gzip_finished(const struct pb_gzip *z);

/* Release z (NULL is fine). */
void pb_gzip_free(struct pb_gzip *z);

#endif
