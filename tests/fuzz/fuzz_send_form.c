/*
 * fuzz_send_form.c: libFuzzer target for pb_codec_parse_send_form, the
 * parser of an x-www-form-urlencoded send body (data=...&data=...). The
 * input is the request body; send_check.h parses it under several limits
 * and checks the results against each other. Here, on top of that, an
 * accepted body is walked again with pb_form_next: the messages must be
 * exactly its "data" values, in order, all text.
 */
#include <string.h>

#include "buf.h"
#include "codec.h"
#include "fuzz.h"
#include "send_check.h"

/* Check that req holds the "data" fields of body[0..size), in order. */
static void check_fields(const char *body, size_t size, const struct pb_send_req *req)
{
	const char *p = body, *end = body + size;
	struct pb_buf key, val;
	size_t i = 0;

	pb_buf_init(&key, 0);
	pb_buf_init(&val, 0);
	while (pb_form_next(&p, end, &key, &val) == 1) {
		if (key.len != 4 || memcmp(key.data, "data", 4))
			continue;
		FUZZ_CHECK(i < req->n);
		FUZZ_CHECK(req->msgs[i]->type == PB_MSG_TEXT);
		FUZZ_CHECK(req->msgs[i]->len == val.len);
		FUZZ_CHECK(!val.len || !memcmp(req->msgs[i]->data, val.data, val.len));
		i++;
	}
	FUZZ_CHECK(p == end && i == req->n);
	pb_buf_free(&key);
	pb_buf_free(&val);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pb_send_req req;

	if (send_check_all(pb_codec_parse_send_form, data, size, &req) == 0) {
		FUZZ_CHECK(req.n > 0 && req.seq == 0);
		check_fields((const char *)data, size, &req);
	}
	pb_send_req_free(&req);
	return 0;
}
