/*
 * fuzz_utf8_json.c: libFuzzer target for pb_utf8_valid and
 * pb_json_put_string, which check the text clients send and escape the
 * text (and close reasons) they receive. For any input:
 *
 *  - pb_utf8_valid must agree with jansson's own UTF-8 check (json_stringn
 *    refuses exactly what is not well-formed);
 *  - the output of pb_json_put_string must parse with jansson's json_loadb
 *    as one string, hold no raw control character, DEL, U+2028 or U+2029,
 *    and, for valid UTF-8 input, decode back to the input bytes;
 *  - appending to a buffer one byte too small must fail and leave it as it
 *    was, and exactly enough room must give the same output.
 *
 * Any violation aborts, so libFuzzer keeps the input.
 */
#include <string.h>

#include <jansson.h>

#include "buf.h"
#include "codec.h"
#include "error.h"
#include "fuzz.h"

/* Check that out[0..len) holds no byte a JavaScript string literal or a
 * JSON string may not hold raw. */
static void check_safe(const unsigned char *out, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		FUZZ_CHECK(out[i] >= 0x20 && out[i] != 0x7f);
		FUZZ_CHECK(!(i + 2 < len && out[i] == 0xe2 && out[i + 1] == 0x80 &&
			     (out[i + 2] == 0xa8 || out[i + 2] == 0xa9)));
	}
}

/* Encode into a buffer already holding "ab" and limited to room more
 * bytes; check the result against want[0..wantlen). */
static void check_limited(const uint8_t *data, size_t size, size_t room,
			  const char *want, size_t wantlen)
{
	struct pb_buf b;
	int r;

	pb_buf_init(&b, 2 + room);
	FUZZ_CHECK(pb_buf_append(&b, "ab", 2) == 0);
	r = pb_json_put_string(&b, data, size);
	if (room >= wantlen) {
		FUZZ_CHECK(r == 0);
		FUZZ_CHECK(b.len == 2 + wantlen && !memcmp(b.data + 2, want, wantlen));
	} else {
		FUZZ_CHECK(r == PB_ETOOBIG);
		FUZZ_CHECK(b.len == 2 && !memcmp(b.data, "ab", 3));
	}
	pb_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int valid = pb_utf8_valid(data, size);
	json_error_t jerr;
	struct pb_buf out;
	json_t *s;

	/* jansson validates the UTF-8 of json_stringn's argument. */
	s = json_stringn((const char *)data, size);
	FUZZ_CHECK(valid == (s != NULL));
	json_decref(s);

	pb_buf_init(&out, 0);
	FUZZ_CHECK(pb_json_put_string(&out, data, size) == 0);
	FUZZ_CHECK(out.len >= size + 2 && out.data[0] == '"' && out.data[out.len - 1] == '"');
	FUZZ_CHECK(out.data[out.len] == '\0');
	check_safe((const unsigned char *)out.data, out.len);
	s = json_loadb(out.data, out.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
	if (!s)
		fprintf(stderr, "jansson: %s at %d\n", jerr.text, jerr.position);
	FUZZ_CHECK(json_is_string(s));
	if (valid)
		FUZZ_CHECK(json_string_length(s) == size &&
			   !memcmp(json_string_value(s), data, size));
	else
		/* Every ill-formed sequence became at least one U+FFFD. */
		FUZZ_CHECK(strstr(out.data, "\xef\xbf\xbd") != NULL);
	json_decref(s);

	check_limited(data, size, out.len, out.data, out.len);
	check_limited(data, size, out.len - 1, out.data, out.len);
	pb_buf_free(&out);
	return 0;
}
