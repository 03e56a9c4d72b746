/*
 * buf.h: a growable byte buffer with a hard size limit.
 *
 * Used to accumulate request bodies and to encode responses straight into
 * one allocation. The buffer keeps a NUL after the data so it can be used as
 * a C string, but the data itself may contain NULs.
 */
#ifndef PB_BUF_H
#define PB_BUF_H

#include <stddef.h>
#include <stdint.h>

struct pb_buf {
	char *data;     /* owned; NULL until the first append */
	size_t len;
	size_t cap;
	size_t limit;   /* appends that would pass it fail with PB_ETOOBIG */
};

/* Initialise an empty buffer that may grow up to limit bytes (0: no limit). */
void pb_buf_init(struct pb_buf *b, size_t limit);

/* Release the storage; the buffer is empty and reusable afterwards. */
void pb_buf_free(struct pb_buf *b);

/* Make room for n more bytes. 0, PB_ETOOBIG or PB_ENOMEM. */
int pb_buf_reserve(struct pb_buf *b, size_t n);

/* Append n bytes. 0, PB_ETOOBIG or PB_ENOMEM; on error b is unchanged. */
int pb_buf_append(struct pb_buf *b, const void *p, size_t n);

/* Append a C string. */
int pb_buf_puts(struct pb_buf *b, const char *s);

/* Append the decimal form of v. */
int pb_buf_put_u64(struct pb_buf *b, uint64_t v);

/* Append printf-formatted text. */
int pb_buf_printf(struct pb_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Hand the storage to the caller (who must free() it); b becomes empty.
 * Never NULL on success: an empty buffer yields an allocated "". */
char *pb_buf_steal(struct pb_buf *b, size_t *len);

#endif
