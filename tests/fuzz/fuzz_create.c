/*
 * fuzz_create.c: libFuzzer target for the two create-request parsers,
 * pb_codec_parse_create_json and pb_codec_parse_create_form. The first
 * input byte selects the parser (even: JSON, odd: form); the rest is the
 * request body. Beyond memory safety it checks what codec.h promises: an
 * accepted route is 1 to PB_MAX_ROUTE_LEN bytes without NUL, the offered
 * protocols are valid, distinct and at most PB_MAX_PROTOCOLS, and a refused
 * request is left empty with a reason.
 */
#include <string.h>

#include "codec.h"
#include "error.h"
#include "fuzz.h"

/* Check the result r of a create parser on req. */
static void check_result(int r, const struct pb_create_req *req, const char *why)
{
	size_t i, j, len;

	if (r) {
		FUZZ_CHECK(r == PB_EBADREQ || r == PB_ENOMEM);
		FUZZ_CHECK(why != NULL && why[0] != '\0');
		FUZZ_CHECK(req->route == NULL && req->nprotocols == 0);
		return;
	}
	FUZZ_CHECK(req->route != NULL);
	len = strlen(req->route);
	FUZZ_CHECK(len >= 1 && len <= PB_MAX_ROUTE_LEN);
	FUZZ_CHECK(req->nprotocols <= PB_MAX_PROTOCOLS);
	for (i = 0; i < req->nprotocols; i++) {
		FUZZ_CHECK(pb_protocol_valid(req->protocols[i], strlen(req->protocols[i])));
		for (j = 0; j < i; j++)
			FUZZ_CHECK(strcmp(req->protocols[i], req->protocols[j]) != 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pb_create_req req;
	const char *body, *why = NULL;
	int r;

	if (size == 0)
		return 0;
	/* An empty request body reaches the parser as (NULL, 0). */
	body = size > 1 ? (const char *)data + 1 : NULL;
	memset(&req, 0xa5, sizeof(req));        /* the parser must reset it */
	if (data[0] & 1)
		r = pb_codec_parse_create_form(body, size - 1, &req, &why);
	else
		r = pb_codec_parse_create_json(body, size - 1, &req, &why);
	check_result(r, &req, why);
	pb_create_req_free(&req);
	return 0;
}
