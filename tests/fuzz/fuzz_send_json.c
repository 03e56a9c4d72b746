/*
 * fuzz_send_json.c: libFuzzer target for pb_codec_parse_send_json, the
 * parser of a JSON send body ({"messages":[...],"seq":N}). The input is the
 * request body; send_check.h parses it under several limits and checks the
 * results against each other. Here, on top of that, an accepted body is
 * re-read with jansson directly: it must be an object whose "messages"
 * array has as many elements as the parser returned messages.
 */
#include <jansson.h>

#include "codec.h"
#include "fuzz.h"
#include "send_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pb_send_req req;
	json_t *root;

	if (send_check_all(pb_codec_parse_send_json, data, size, &req) == 0) {
		root = json_loadb((const char *)data, size, JSON_ALLOW_NUL, NULL);
		FUZZ_CHECK(json_is_object(root));
		FUZZ_CHECK(json_array_size(json_object_get(root, "messages")) == req.n);
		json_decref(root);
	}
	pb_send_req_free(&req);
	return 0;
}
