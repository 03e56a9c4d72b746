/*
 * fuzz_base64.c: libFuzzer target for pb_base64_decode, which decodes the
 * "data" of binary messages a client sends. The input is used twice:
 *
 *  - as base64 text: decoded into a buffer of exactly the size codec.h asks
 *    for; when accepted, it is encoded again and decoded again, which must
 *    give the same bytes, and since decoding accepts only canonical base64
 *    (zero unused bits) the new encoding must be the input itself, give or
 *    take the optional padding;
 *  - as bytes: encoded (standard and url-safe) and decoded back, which must
 *    give the input.
 *
 * Any mismatch aborts, so libFuzzer keeps the input.
 */
#include <string.h>

#include "buf.h"
#include "codec.h"
#include "error.h"
#include "fuzz.h"

/* Decode in[0..len) into a new exactly-sized buffer (*out, freed by the
 * caller). The decoder's result. */
static int decode(const char *in, size_t len, unsigned char **out, size_t *outlen)
{
	size_t room = len / 4 * 3 + 3;
	int r;

	*out = malloc(room);
	FUZZ_CHECK(*out != NULL);
	*outlen = (size_t)-1;
	r = pb_base64_decode(in, len, *out, outlen);
	FUZZ_CHECK(r == 0 || r == PB_EBADREQ);
	FUZZ_CHECK(r || *outlen <= room);
	return r;
}

/* Length of s[0..len) without its trailing '=' characters. */
static size_t unpadded(const char *s, size_t len)
{
	while (len && s[len - 1] == '=')
		len--;
	return len;
}

/* Encode p[0..n) to standard base64 in b, checking the length. */
static void encode(struct pb_buf *b, const void *p, size_t n)
{
	pb_buf_init(b, 0);
	FUZZ_CHECK(pb_base64_encode(b, p, n) == 0);
	FUZZ_CHECK(b->len == (n + 2) / 3 * 4);
	FUZZ_CHECK(b->len == 0 || b->data[b->len] == '\0');
}

/* The input is base64 text. */
static void text_round_trip(const char *in, size_t len)
{
	unsigned char *bytes, *again;
	size_t n, n2;
	struct pb_buf b;

	if (decode(in, len, &bytes, &n)) {
		free(bytes);
		return;
	}
	encode(&b, bytes, n);
	FUZZ_CHECK(unpadded(b.data ? b.data : "", b.len) == unpadded(in, len));
	FUZZ_CHECK(!b.len || !memcmp(b.data, in, unpadded(in, len)));
	FUZZ_CHECK(decode(b.data ? b.data : "", b.len, &again, &n2) == 0);
	FUZZ_CHECK(n2 == n && (!n || !memcmp(again, bytes, n)));
	free(again);
	free(bytes);
	pb_buf_free(&b);
}

/* The input is bytes. */
static void bytes_round_trip(const unsigned char *in, size_t len)
{
	size_t urllen = (len * 4 + 2) / 3, i, n;
	unsigned char *back;
	struct pb_buf b;
	char *url;

	encode(&b, in, len);
	FUZZ_CHECK(decode(b.data ? b.data : "", b.len, &back, &n) == 0);
	FUZZ_CHECK(n == len && (!len || !memcmp(back, in, len)));
	free(back);
	/* base64url (session ids): the same digits with - and _, no padding. */
	url = malloc(urllen + 1);
	FUZZ_CHECK(url != NULL);
	pb_base64url_encode(in, len, url);
	FUZZ_CHECK(strlen(url) == urllen && unpadded(b.data ? b.data : "", b.len) == urllen);
	for (i = 0; i < urllen; i++) {
		char c = b.data[i] == '+' ? '-' : b.data[i] == '/' ? '_' : b.data[i];

		FUZZ_CHECK(url[i] == c);
	}
	free(url);
	pb_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	text_round_trip((const char *)data, size);
	bytes_round_trip(data, size);
	return 0;
}
