/*
 * buf.c: growable, bounded byte buffer (see buf.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"

void pb_buf_init(struct pb_buf *b, size_t limit)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->limit = limit;
}

void pb_buf_free(struct pb_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

int pb_buf_reserve(struct pb_buf *b, size_t n)
{
	size_t need, cap;
	char *p;

	if (n > SIZE_MAX - b->len - 1)
		return PB_ETOOBIG;
	need = b->len + n;
	if (b->limit && need > b->limit)
		return PB_ETOOBIG;
	if (need + 1 <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 256;
	while (cap < need + 1)
		cap = cap > SIZE_MAX / 2 ? need + 1 : cap * 2;
	p = realloc(b->data, cap);
	if (!p)
		return PB_ENOMEM;
	p[b->len] = '\0';      /* a fresh allocation must read as a C string too */
	b->data = p;
	b->cap = cap;
	return 0;
}

int pb_buf_append(struct pb_buf *b, const void *p, size_t n)
{
	int r = pb_buf_reserve(b, n);

	if (r)
		return r;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int pb_buf_puts(struct pb_buf *b, const char *s)
{
	return pb_buf_append(b, s, strlen(s));
}

int pb_buf_put_u64(struct pb_buf *b, uint64_t v)
{
	char tmp[24];
	size_t i = sizeof(tmp);

	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return pb_buf_append(b, tmp + i, sizeof(tmp) - i);
}

int pb_buf_printf(struct pb_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n, r;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return PB_ENOMEM;
	r = pb_buf_reserve(b, (size_t)n);
	if (r)
		return r;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

char *pb_buf_steal(struct pb_buf *b, size_t *len)
{
	char *p;

	if (!b->data && pb_buf_reserve(b, 0))
		return NULL;
	p = b->data;
	if (len)
		*len = b->len;
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	return p;
}
