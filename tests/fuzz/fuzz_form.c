/*
 * fuzz_form.c: libFuzzer target for pb_form_next, the
 * x-www-form-urlencoded reader under both form bodies (create and send).
 * The input is a form body, read to its end twice: with unlimited key and
 * value buffers, whose pairs are compared with a straightforward second
 * decoder written here, and with buffers limited to a few bytes, which must
 * fail cleanly with PB_ETOOBIG where a field does not fit. The loop must
 * always make progress and stop inside the input.
 */
#include <string.h>

#include "buf.h"
#include "codec.h"
#include "error.h"
#include "fuzz.h"

/* Value of the hex digit c, or -1. */
static int hex(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode s[0..n) into out (room for n bytes); the decoded length, or -1
 * for a bad %-escape. */
static long ref_decode(const unsigned char *s, size_t n, unsigned char *out)
{
	size_t i, o = 0;

	for (i = 0; i < n; i++) {
		if (s[i] == '+') {
			out[o++] = ' ';
		} else if (s[i] == '%') {
			if (n - i < 3 || hex(s[i + 1]) < 0 || hex(s[i + 2]) < 0)
				return -1;
			out[o++] = (unsigned char)(hex(s[i + 1]) << 4 | hex(s[i + 2]));
			i += 2;
		} else {
			out[o++] = s[i];
		}
	}
	return (long)o;
}

/* Check a decoded buffer against the reference decoding of s[0..n). */
static void check_field(const struct pb_buf *b, const unsigned char *s, size_t n,
			unsigned char *tmp)
{
	long len = ref_decode(s, n, tmp);

	FUZZ_CHECK(len >= 0 && (size_t)len == b->len);
	FUZZ_CHECK(!b->len || !memcmp(b->data, tmp, b->len));
	FUZZ_CHECK(!b->data || b->data[b->len] == '\0');
}

/* Read the whole form with buffers limited to limit bytes (0: none). With
 * no limit, compare every pair with the reference decoder. */
static void read_form(const char *body, size_t size, size_t limit, unsigned char *tmp)
{
	const char *p = body, *end = body + size, *prev, *s, *amp, *eq;
	struct pb_buf key, val;
	int r;

	pb_buf_init(&key, limit);
	pb_buf_init(&val, limit);
	for (;;) {
		prev = p;
		r = pb_form_next(&p, end, &key, &val);
		FUZZ_CHECK(p >= prev && p <= end);
		/* Where the pair starts and ends, found independently. */
		for (s = prev; s < end && *s == '&'; s++)
			;
		amp = s < end ? memchr(s, '&', (size_t)(end - s)) : NULL;
		if (!amp)
			amp = end;
		eq = s < amp ? memchr(s, '=', (size_t)(amp - s)) : NULL;
		if (r == 0) {
			FUZZ_CHECK(s == end && p == end);
			FUZZ_CHECK(key.len == 0 && val.len == 0);
			break;
		}
		if (r < 0) {
			FUZZ_CHECK(r == PB_EBADREQ || (limit && r == PB_ETOOBIG));
			/* A malformed escape must really be there. */
			if (r == PB_EBADREQ)
				FUZZ_CHECK(ref_decode((const unsigned char *)s,
						      (size_t)((eq ? eq : amp) - s), tmp) < 0 ||
					   (eq && ref_decode((const unsigned char *)eq + 1,
							     (size_t)(amp - eq - 1), tmp) < 0));
			break;
		}
		FUZZ_CHECK(r == 1 && p == amp && p > prev);
		FUZZ_CHECK(!limit || (key.len <= limit && val.len <= limit));
		if (!limit) {
			check_field(&key, (const unsigned char *)s, (size_t)((eq ? eq : amp) - s), tmp);
			if (eq)
				check_field(&val, (const unsigned char *)eq + 1, (size_t)(amp - eq - 1), tmp);
			else
				FUZZ_CHECK(val.len == 0);
		}
	}
	pb_buf_free(&key);
	pb_buf_free(&val);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *tmp = malloc(size + 1);

	FUZZ_CHECK(tmp != NULL);
	read_form((const char *)data, size, 0, tmp);
	read_form((const char *)data, size, 4, tmp);
	free(tmp);
	return 0;
}
